/*
 * edge-bench, black box: spawned as a process against origin-sim with a fixed latency; figures
 * read back from its --json file and origin-sim's /_stats; the --html page checked for its chart
 * and figures. About 7 s in all; everything on 127.0.0.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/integration/harness.h"

static struct h_osim osim;  /* --latency 20ms */
static struct h_osim osim2; /* no latency: stands in for edge in --compare */

static int
group_setup(void **state)
{
    const char *args[] = {"--latency", "20ms", NULL};
    (void)state;
    if (h_osim_start(&osim, args) < 0)
        return -1;
    return h_osim_start(&osim2, NULL);
}

static int
group_teardown(void **state)
{
    int rc = 0;
    (void)state;
    if (osim.proc.pid != 0 && h_osim_stop(&osim) != 0)
        rc = -1;
    if (osim2.proc.pid != 0 && h_osim_stop(&osim2) != 0)
        rc = -1;
    return rc;
}

static const char *
tmp_path(const char *name)
{
    static char bufs[4][600];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s/%s", h_tmpdir(), name);
    return b;
}

/* Runs edge-bench with args (NULL-terminated) through sh so that its exit status lands in a
 * file; waits up to timeout_ms. Returns the exit status, or -1. */
static int
run_bench(const char *name, const char *const args[], int timeout_ms)
{
    const char *argv[48];
    char rcname[64];
    int n = 0;

    snprintf(rcname, sizeof(rcname), "%s.rc", name);
    const char *rcfile = tmp_path(rcname);
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
    if (rc != 0 && rc != 2) /* 2: usage errors, which tests provoke */
        h_dump_log(&p, 2000);
    return rc;
}

static json_t *
load_json(const char *name)
{
    json_error_t e;
    json_t *j = json_load_file(tmp_path(name), 0, &e);
    if (j == NULL)
        fail_msg("%s: %s (line %d)", name, e.text, e.line);
    return j;
}

static double
num(json_t *obj, const char *path)
{
    /* "a.b.c" */
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

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b != NULL) {
        size_t got = fread(b, 1, (size_t)n, f);
        b[got] = '\0';
    }
    fclose(f);
    return b;
}

/* Closed loop, 2 s: the p50 is origin-sim's 20 ms, and every request is accounted for. */
static void
test_closed_loop_latency(void **state)
{
    (void)state;
    long before = h_stats_int(osim.url, "requests");
    char url[128];
    snprintf(url, sizeof(url), "%s/bytes/100", osim.url);
    const char *args[] = {"-d", "2s", "-c", "4", "-t", "2", "--json", tmp_path("closed.json"),
                          url, NULL};
    assert_int_equal(run_bench("closed", args, 8000), 0);
    long after = h_stats_int(osim.url, "requests");
    json_t *j = load_json("closed.json");
    json_t *run = json_array_get(json_object_get(j, "runs"), 0);
    assert_non_null(run);
    double p50 = num(run, "latency_ms.p50");
    if (p50 < 18.0 || p50 > 35.0)
        fail_msg("p50 %.2f ms, origin latency 20 ms", p50);
    double resp = num(run, "responses"), sent = num(run, "requests");
    /* 4 connections x ~2 s / ~21 ms */
    assert_true(resp > 200 && resp < 450);
    assert_true(sent == resp);
    assert_true(num(run, "errors.total") == 0);
    assert_true(num(run, "status.2xx") == resp);
    assert_true(num(run, "cache.absent") == resp);
    assert_true(json_is_null(json_object_get(run, "hit_ratio")));
    if ((double)(after - before) != resp)
        fail_msg("origin-sim counted %ld requests, edge-bench %.0f", after - before, resp);
    assert_true(num(run, "body_bytes") == 100 * resp);
    assert_true(num(run, "latency_ms.max") >= num(run, "latency_ms.p99.9"));
    json_decref(j);
}

/* Open loop at 200/s with a 20 ms origin: the rate holds and nothing is late. */
static void
test_open_loop_rate(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "%s/bytes/10", osim.url);
    const char *args[] = {"--rate", "200/s", "-d", "1500ms", "-t", "2", "--json",
                          tmp_path("open.json"), url, NULL};
    assert_int_equal(run_bench("open", args, 6000), 0);
    json_t *j = load_json("open.json");
    json_t *run = json_array_get(json_object_get(j, "runs"), 0);
    double rps = num(run, "rps"), sent = num(run, "requests");
    if (rps < 180 || rps > 220)
        fail_msg("open loop at 200/s measured %.1f/s", rps);
    if (sent < 270 || sent > 330)
        fail_msg("open loop sent %.0f requests in 1.5 s at 200/s", sent);
    assert_true(num(run, "dropped") == 0);
    assert_true(num(run, "responses") == sent);
    double p50 = num(run, "latency_ms.p50");
    assert_true(p50 >= 18.0 && p50 <= 35.0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "config"), "mode")),
                        "open");
    json_decref(j);
}

/* --compare with origin-sim as DIRECT and a second one as EDGE: the edge phases never reach
 * the origin (offload 100%), the direct phases all do; reductions are positive (20 ms vs ~0). */
static void
test_compare(void **state)
{
    (void)state;
    long before2 = h_stats_int(osim2.url, "requests");
    const char *args[] = {"-d", "500ms", "--phases", "2", "-c", "2", "-t", "1", "--zipf", "1.0",
                          "--paths", "50", "--json", tmp_path("cmp.json"), "--html",
                          tmp_path("cmp.html"), "--compare", osim.url, osim2.url, NULL};
    assert_int_equal(run_bench("compare", args, 8000), 0);
    long after2 = h_stats_int(osim2.url, "requests");
    json_t *j = load_json("cmp.json");
    json_t *runs = json_object_get(j, "runs");
    json_t *direct = json_array_get(runs, 0), *edge = json_array_get(runs, 1);
    assert_non_null(edge);
    assert_string_equal(json_string_value(json_object_get(edge, "name")), "edge");
    assert_int_equal(json_array_size(json_object_get(j, "phases")), 4);
    assert_true(num(direct, "origin_requests") == num(direct, "requests"));
    assert_true(num(edge, "origin_requests") == 0);
    assert_true((double)(after2 - before2) == num(edge, "requests"));
    json_t *cmp = json_object_get(j, "compare");
    assert_true(num(cmp, "offload") == 1.0);
    assert_true(json_is_null(json_object_get(cmp, "hit_ratio"))); /* no Cache-Status */
    double red50 = num(cmp, "reduction.p50");
    if (red50 < 0.5 || red50 > 1.0)
        fail_msg("p50 reduction %.3f: direct 20 ms vs a zero-latency 'edge'", red50);
    assert_true(num(direct, "latency_ms.p50") >= 18.0);

    char *html = slurp(tmp_path("cmp.html"));
    assert_non_null(html);
    assert_non_null(strstr(html, "<svg"));
    assert_non_null(strstr(html, "<polyline"));
    assert_non_null(strstr(html, "latency (ms)"));
    assert_non_null(strstr(html, "percentile"));
    assert_non_null(strstr(html, "origin offload"));
    assert_non_null(strstr(html, "100.0%"));
    assert_non_null(strstr(html, "<td>p99</td>"));
    assert_null(strstr(html, "http-equiv"));
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "<link"));
    /* the direct p50 figure of the JSON appears in the table, as "20.xx ms" style text */
    char fig[32];
    snprintf(fig, sizeof(fig), "%.2f ms", num(direct, "latency_ms.p50"));
    if (strstr(html, fig) == NULL)
        fail_msg("HTML lacks the direct p50 '%s'", fig);
    free(html);
    json_decref(j);
}

/* The same server as both sides: nothing is offloaded. */
static void
test_compare_same_origin(void **state)
{
    (void)state;
    const char *args[] = {"-n", "40", "--phases", "1", "-c", "2", "-t", "1", "--json",
                          tmp_path("same.json"), "--compare", osim.url, osim.url, NULL};
    assert_int_equal(run_bench("same", args, 6000), 0);
    json_t *j = load_json("same.json");
    json_t *cmp = json_object_get(j, "compare");
    assert_true(num(cmp, "offload") == 0.0);
    json_t *edge = json_array_get(json_object_get(j, "runs"), 1);
    assert_true(num(edge, "requests") == 40);
    assert_true(num(edge, "origin_requests") == 40);
    json_decref(j);
}

static void
test_usage(void **state)
{
    (void)state;
    const char *bad[] = {"--bogus", NULL};
    assert_int_equal(run_bench("bad", bad, 3000), 2);
    const char *bad2[] = {"--zipf", "4", "http://127.0.0.1:1/", NULL};
    assert_int_equal(run_bench("bad2", bad2, 3000), 2);
    const char *help[] = {"--help", NULL};
    assert_int_equal(run_bench("help", help, 3000), 0);
    char *log = slurp(tmp_path("help.log"));
    assert_non_null(log);
    assert_non_null(strstr(log, "--compare"));
    assert_non_null(strstr(log, "--rate"));
    free(log);
    /* nobody listening: connect errors, still exits 0 with a report */
    const char *dead[] = {"-n", "3", "-c", "1", "-t", "1", "--json", tmp_path("dead.json"),
                          "http://127.0.0.1:1/", NULL};
    assert_int_equal(run_bench("dead", dead, 5000), 0);
    json_t *j = load_json("dead.json");
    json_t *run = json_array_get(json_object_get(j, "runs"), 0);
    assert_true(num(run, "errors.connect") == 3);
    json_decref(j);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_loop_latency), cmocka_unit_test(test_open_loop_rate),
        cmocka_unit_test(test_compare),             cmocka_unit_test(test_compare_same_origin),
        cmocka_unit_test(test_usage),
    };
    return H_RUN(tests, group_setup, group_teardown);
}
