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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/integration/bench_cli.h"
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

/* Closed loop, 2 s: the p50 is origin-sim's 20 ms, and every request is accounted for. */
static void
test_closed_loop_latency(void **state)
{
    (void)state;
    long before = h_stats_int(osim.url, "requests");
    char url[128];
    snprintf(url, sizeof(url), "%s/bytes/100", osim.url);
    const char *args[] = {"-d", "2s", "-c", "4", "-t", "2", "--json", bt_tmp("closed.json"),
                          url, NULL};
    assert_int_equal(bt_run("closed", args, 8000, 0), 0);
    long after = h_stats_int(osim.url, "requests");
    json_t *j = bt_json("closed.json");
    json_t *run = json_array_get(json_object_get(j, "runs"), 0);
    assert_non_null(run);
    double p50 = bt_num(run, "latency_ms.p50");
    if (p50 < 18.0 || p50 > 35.0)
        fail_msg("p50 %.2f ms, origin latency 20 ms", p50);
    double resp = bt_num(run, "responses"), sent = bt_num(run, "requests");
    /* 4 connections x ~2 s / ~21 ms */
    assert_true(resp > 200 && resp < 450);
    assert_true(sent == resp);
    assert_true(bt_num(run, "errors.total") == 0);
    assert_true(bt_num(run, "status.2xx") == resp);
    assert_true(bt_num(run, "cache.absent") == resp);
    assert_true(json_is_null(json_object_get(run, "hit_ratio")));
    if ((double)(after - before) != resp)
        fail_msg("origin-sim counted %ld requests, edge-bench %.0f", after - before, resp);
    assert_true(bt_num(run, "body_bytes") == 100 * resp);
    assert_true(bt_num(run, "latency_ms.max") >= bt_num(run, "latency_ms.p99.9"));
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
                          bt_tmp("open.json"), url, NULL};
    assert_int_equal(bt_run("open", args, 6000, 0), 0);
    json_t *j = bt_json("open.json");
    json_t *run = json_array_get(json_object_get(j, "runs"), 0);
    double rps = bt_num(run, "rps"), sent = bt_num(run, "requests");
    if (rps < 180 || rps > 220)
        fail_msg("open loop at 200/s measured %.1f/s", rps);
    if (sent < 270 || sent > 330)
        fail_msg("open loop sent %.0f requests in 1.5 s at 200/s", sent);
    assert_true(bt_num(run, "dropped") == 0);
    assert_true(bt_num(run, "responses") == sent);
    double p50 = bt_num(run, "latency_ms.p50");
    assert_true(p50 >= 18.0 && p50 <= 35.0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "config"), "mode")),
                        "open");
    json_decref(j);
}

/* Ctrl-C during --compare: no further phase starts, the phase it cut is
 * dropped, and the phases that ran both sides are reported. */
static void
test_compare_interrupted(void **state)
{
    (void)state;
    const char *argv[] = {h_build_path("edge-bench"), "-q", "-d", "600ms", "--phases", "4",
                          "-c", "2", "-t", "1", "--json", bt_tmp("int.json"), "--compare",
                          osim.url, osim2.url, NULL};
    struct h_proc p;
    assert_int_equal(h_spawn(&p, "interrupted", argv), 0);
    h_sleep_ms(1700); /* phase 1 (both sides, 1.2 s) is over, phase 2 is running */
    double t0 = h_now_ms();
    assert_int_equal(h_kill(&p, SIGINT), 0);
    while (h_alive(&p) && h_now_ms() - t0 < 3000)
        h_sleep_ms(20);
    assert_false(h_alive(&p)); /* the two phases left never started */
    json_t *j = bt_json("int.json");
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "phases")), 2); /* phase 1, both sides */
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
                          "--paths", "50", "--json", bt_tmp("cmp.json"), "--html",
                          bt_tmp("cmp.html"), "--compare", osim.url, osim2.url, NULL};
    assert_int_equal(bt_run("compare", args, 8000, 0), 0);
    long after2 = h_stats_int(osim2.url, "requests");
    json_t *j = bt_json("cmp.json");
    json_t *runs = json_object_get(j, "runs");
    json_t *direct = json_array_get(runs, 0), *edge = json_array_get(runs, 1);
    assert_non_null(edge);
    assert_string_equal(json_string_value(json_object_get(edge, "name")), "edge");
    assert_int_equal(json_array_size(json_object_get(j, "phases")), 4);
    assert_true(bt_num(direct, "origin_requests") == bt_num(direct, "requests"));
    assert_true(bt_num(edge, "origin_requests") == 0);
    assert_true((double)(after2 - before2) == bt_num(edge, "requests"));
    json_t *cmp = json_object_get(j, "compare");
    assert_true(bt_num(cmp, "offload") == 1.0);
    assert_true(json_is_null(json_object_get(cmp, "hit_ratio"))); /* no Cache-Status */
    double red50 = bt_num(cmp, "reduction.p50");
    if (red50 < 0.5 || red50 > 1.0)
        fail_msg("p50 reduction %.3f: direct 20 ms vs a zero-latency 'edge'", red50);
    assert_true(bt_num(direct, "latency_ms.p50") >= 18.0);

    char *html = bt_slurp(bt_tmp("cmp.html"));
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
    snprintf(fig, sizeof(fig), "%.2f ms", bt_num(direct, "latency_ms.p50"));
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
                          bt_tmp("same.json"), "--compare", osim.url, osim.url, NULL};
    assert_int_equal(bt_run("same", args, 6000, 0), 0);
    json_t *j = bt_json("same.json");
    json_t *cmp = json_object_get(j, "compare");
    assert_true(bt_num(cmp, "offload") == 0.0);
    json_t *edge = json_array_get(json_object_get(j, "runs"), 1);
    assert_true(bt_num(edge, "requests") == 40);
    assert_true(bt_num(edge, "origin_requests") == 40);
    json_decref(j);
}

static void
test_usage(void **state)
{
    (void)state;
    const char *bad[] = {"--bogus", NULL};
    assert_int_equal(bt_run("bad", bad, 3000, 2), 2);
    const char *bad2[] = {"--zipf", "4", "http://127.0.0.1:1/", NULL};
    assert_int_equal(bt_run("bad2", bad2, 3000, 2), 2);
    const char *help[] = {"--help", NULL};
    assert_int_equal(bt_run("help", help, 3000, 0), 0);
    char *log = bt_slurp(bt_tmp("help.log"));
    assert_non_null(log);
    assert_non_null(strstr(log, "--compare"));
    assert_non_null(strstr(log, "--rate"));
    free(log);
    /* nobody listening: connect errors, still exits 0 with a report */
    const char *dead[] = {"-n", "3", "-c", "1", "-t", "1", "--json", bt_tmp("dead.json"),
                          "http://127.0.0.1:1/", NULL};
    assert_int_equal(bt_run("dead", dead, 5000, 0), 0);
    json_t *j = bt_json("dead.json");
    json_t *run = json_array_get(json_object_get(j, "runs"), 0);
    assert_true(bt_num(run, "errors.connect") == 3);
    json_decref(j);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_loop_latency), cmocka_unit_test(test_open_loop_rate),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_compare_interrupted),             cmocka_unit_test(test_compare_same_origin),
        cmocka_unit_test(test_usage),
    };
    return H_RUN(tests, group_setup, group_teardown);
}
