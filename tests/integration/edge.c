#include "tests/integration/edge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned edge_seq;

int
h_edge_write_conf(struct h_edge *e, const char *conf_text)
{
    FILE *f = fopen(e->conf_path, "w");
    if (f == NULL)
        return -1;
    fputs(conf_text, f);
    return fclose(f) == 0 ? 0 : -1;
}

int
h_edge_start(struct h_edge *e, int port, int admin_port, const char *conf_text)
{
    char name[32];
    const char *argv[5];
    char bin[512];

    memset(e, 0, sizeof(*e));
    e->port = port;
    e->admin_port = admin_port;
    snprintf(e->url, sizeof(e->url), "http://127.0.0.1:%d", port);
    snprintf(e->admin_url, sizeof(e->admin_url), "http://127.0.0.1:%d", admin_port);
    snprintf(name, sizeof(name), "edge%u", edge_seq++);
    snprintf(e->conf_path, sizeof(e->conf_path), "%s/%s.conf", h_tmpdir(), name);
    if (h_edge_write_conf(e, conf_text) < 0)
        return -1;
    snprintf(bin, sizeof(bin), "%s/edge", h_build_dir());
    argv[0] = bin;
    argv[1] = "-c";
    argv[2] = e->conf_path;
    argv[3] = NULL;
    if (h_spawn(&e->proc, name, argv) < 0)
        return -1;
    if (h_wait_port("127.0.0.1", port, 5000) < 0)
        return -1;
    if (admin_port > 0 && h_wait_port("127.0.0.1", admin_port, 5000) < 0)
        return -1;
    return 0;
}

int
h_edge_start_lean(struct h_edge *e, int port, int admin_port, const char *conf_text)
{
    const char *old = getenv("ASAN_OPTIONS");
    char saved[512], opts[600];
    int rc;

    snprintf(saved, sizeof(saved), "%s", old ? old : "");
    snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4", saved, saved[0] ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    rc = h_edge_start(e, port, admin_port, conf_text);
    if (old != NULL)
        setenv("ASAN_OPTIONS", saved, 1);
    else
        unsetenv("ASAN_OPTIONS");
    return rc;
}

int
h_edge_stop(struct h_edge *e)
{
    return h_stop(&e->proc);
}

pid_t
h_child_pid(pid_t pid)
{
    char path[64], buf[256];
    FILE *f;
    long child = -1;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    if (fgets(buf, sizeof(buf), f) != NULL)
        child = strtol(buf, NULL, 10);
    fclose(f);
    return child > 0 ? (pid_t)child : -1;
}

long
h_edge_metric(const struct h_edge *e, const char *name)
{
    char series[160];
    snprintf(series, sizeof(series), "%s ", name);
    return h_edge_metric_series(e, series);
}

long
h_edge_metric_series(const struct h_edge *e, const char *series)
{
    struct h_resp r;
    char u[128], key[512];
    long v = -1;

    snprintf(u, sizeof(u), "%s/metrics", e->admin_url);
    snprintf(key, sizeof(key), "\n%s", series);
    if (h_http(&r, "GET", u, NULL, 0, NULL) == 0 && r.body != NULL) {
        const char *p = strstr(r.body, key);
        if (p != NULL)
            v = strtol(p + strlen(key), NULL, 10);
    }
    h_resp_free(&r);
    return v;
}

static void *
bg_main(void *arg)
{
    struct h_bg *b = arg;
    b->rc = h_http(&b->r, "GET", b->url, NULL, 0, NULL);
    return NULL;
}

void
h_bg_start(struct h_bg *b, const char *base, const char *path)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->url, sizeof(b->url), "%s%s", base, path);
    if (pthread_create(&b->t, NULL, bg_main, b) != 0)
        b->rc = -1;
}

void
h_bg_join(struct h_bg *b)
{
    pthread_join(b->t, NULL);
}
