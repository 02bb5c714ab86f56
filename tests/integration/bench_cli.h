/*
 * Driving build/edge-bench as a black box from integration tests (bench_test, bench_tls_test):
 * run it with arguments and read its exit status, its log and its --json file. Static inline
 * helpers on top of harness.h; include <cmocka.h> first (missing JSON fails the test).
 */
#ifndef EDGE_TESTS_BENCH_CLI_H
#define EDGE_TESTS_BENCH_CLI_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

/* h_tmpdir()/name in a static rotating buffer (4 slots). */
static inline const char *
bt_tmp(const char *name)
{
    static char bufs[4][600];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s/%s", h_tmpdir(), name);
    return b;
}

/* Runs edge-bench with args (NULL-terminated) through sh so that its exit status lands in a
 * file; its output goes to h_tmpdir()/name.log. Waits up to timeout_ms. Returns the exit
 * status, or -1; the log tail is printed when the status is not the expected one. */
static inline int
bt_run(const char *name, const char *const args[], int timeout_ms, int expect)
{
    const char *argv[48];
    char rcname[64];
    int n = 0;

    snprintf(rcname, sizeof(rcname), "%s.rc", name);
    const char *rcfile = bt_tmp(rcname);
    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    argv[n++] = "\"$@\"; echo $? >\"$0\"";
    argv[n++] = rcfile;
    argv[n++] = h_build_path("edge-bench");
    for (int i = 0; args[i] != NULL && n < 47; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct h_proc p;
    if (h_spawn(&p, name, argv) < 0)
        return -1;
    double t0 = h_now_ms();
    while (h_alive(&p)) {
        if (h_now_ms() - t0 > timeout_ms) {
            h_stop(&p);
            fprintf(stderr, "edge-bench %s: still running after %d ms\n", name, timeout_ms);
            return -1;
        }
        h_sleep_ms(20);
    }
    FILE *f = fopen(rcfile, "r");
    int rc = -1;
    if (f == NULL || fscanf(f, "%d", &rc) != 1)
        rc = -1;
    if (f != NULL)
        fclose(f);
    if (rc != expect)
        h_dump_log(&p, 2000);
    return rc;
}

/* The whole file, NUL-terminated (malloc'ed), or NULL. */
static inline char *
bt_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b != NULL) {
        size_t got = fread(b, 1, (size_t)n, f);
        b[got] = '\0';
    }
    fclose(f);
    return b;
}

/* h_tmpdir()/name parsed as JSON; a parse error fails the test. */
static inline json_t *
bt_json(const char *name)
{
    json_error_t e;
    json_t *j = json_load_file(bt_tmp(name), 0, &e);
    if (j == NULL)
        fail_msg("%s: %s (line %d)", name, e.text, e.line);
    return j;
}

/* The number at "a.b.c" in obj (a "p99.9" member stays whole); missing fails the test. */
static inline double
bt_num(json_t *obj, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *cur = obj;
    for (char *s = buf, *dot; cur != NULL && s != NULL; s = dot) {
        dot = strchr(s, '.');
        if (dot != NULL && strncmp(s, "p99", 3) != 0)
            *dot++ = '\0';
        else
            dot = NULL;
        cur = json_object_get(cur, s);
    }
    if (cur == NULL || !json_is_number(cur))
        fail_msg("JSON %s: missing or not a number", path);
    return json_number_value(cur);
}

#endif /* EDGE_TESTS_BENCH_CLI_H */
