/*
 * Integration-test helpers for running build/edge (on top of harness.h).
 */
#ifndef EDGE_TESTS_EDGE_H
#define EDGE_TESTS_EDGE_H

#include <pthread.h>
#include <sys/types.h>

#include "tests/integration/harness.h"

struct h_edge {
    struct h_proc proc;
    int port, admin_port;
    char url[64];       /* http://127.0.0.1:PORT */
    char admin_url[64]; /* http://127.0.0.1:ADMIN */
    char conf_path[512];
};

/* Writes conf_text to a file in h_tmpdir(), starts build/edge -c on it and
 * waits until both ports accept (5 s). The conf must listen on 127.0.0.1:port
 * (and admin on 127.0.0.1:admin_port when admin_port > 0). 0 or -1. */
int h_edge_start(struct h_edge *e, int port, int admin_port, const char *conf_text);
/* The same for tests that measure the engine's RSS: under ASan freed chunks
 * wait in a quarantine (256 MiB by default) before reuse, which would read
 * as growth; this edge gets a 4 MiB one, so the figure is about edge. */
int h_edge_start_lean(struct h_edge *e, int port, int admin_port, const char *conf_text);
/* Rewrites the conf file (not signalled). */
int h_edge_write_conf(struct h_edge *e, const char *conf_text);
/* SIGTERM, waits for the drain; returns the exit status (0 = clean). */
int h_edge_stop(struct h_edge *e);
/* The first child process of pid (the engine of an edge supervisor), or -1. */
pid_t h_child_pid(pid_t pid);
/* A counter or gauge without labels from the edge's admin /metrics; -1 when absent. */
long h_edge_metric(const struct h_edge *e, const char *name);
/* A labelled series: the text of its line up to the value, e.g.
 * "edge_function_calls_total{function=\"hello\",namespace=\"hello:x\"} ". */
long h_edge_metric_series(const struct h_edge *e, const char *series);

/* A GET running in its own thread (for requests in flight during a reload,
 * a stop, ...): h_bg_start, then h_bg_join; free bg->r with h_resp_free. */
struct h_bg {
    pthread_t t;
    char url[512];
    struct h_resp r;
    int rc;
};
void h_bg_start(struct h_bg *b, const char *base, const char *path);
void h_bg_join(struct h_bg *b);

#endif
