/*
 * The latency lab end to end: edge-bench --compare against origin-sim
 * directly and through a caching edge. The hit ratio and the origin
 * offload it reports must match what origin-sim counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/integration/edge.h"

static void
test_compare_through_caching_edge(void **state)
{
    struct h_osim o;
    struct h_edge e;
    struct h_proc bench;
    char conf[1024], bin[512], json[600], direct[64], stats[96];
    const char *osim_args[] = {"--latency", "20ms", NULL};
    int port = h_free_port(), admin = h_free_port();
    (void)state;

    assert_int_equal(h_osim_start(&o, osim_args), 0);
    snprintf(conf, sizeof(conf),
             "workers 1;\nlisten 127.0.0.1:%d;\nadmin 127.0.0.1:%d;\naccess_log off;\n"
             "cache_dir %s/lab-cache max_size=16m;\n"
             "origin app { server 127.0.0.1:%d; }\n"
             "site * { route / { origin app; cache on; } }\n",
             port, admin, h_tmpdir(), o.port);
    assert_int_equal(h_edge_start(&e, port, admin, conf), 0);
    snprintf(bin, sizeof(bin), "%s/edge-bench", h_build_dir());
    snprintf(json, sizeof(json), "%s/lab.json", h_tmpdir());
    snprintf(direct, sizeof(direct), "%s", o.url);
    snprintf(stats, sizeof(stats), "%s/_stats", o.url);
    long before = h_stats_int(o.url, "requests");
    const char *argv[] = {bin, "--compare", direct, e.url, "--rate", "200", "--duration", "1s",
                          "--phases", "2", "--zipf", "1.1", "--paths", "50",
                          "--path-template", "/resp?cc=max-age%3D300&size=512&k=%d",
                          "--origin-stats", stats, "--json", json, "--quiet", NULL};
    assert_int_equal(h_spawn(&bench, "edge-bench", argv), 0);
    bool finished = false;
    for (int i = 0; i < 300 && !finished; i++) {
        finished = !h_alive(&bench); /* reaps it */
        if (!finished)
            h_sleep_ms(50);
    }
    assert_true(finished); /* bounded: 2 x 2 phases of 1 s */
    long after = h_stats_int(o.url, "requests");

    json_error_t jerr;
    json_t *root = json_load_file(json, 0, &jerr);
    assert_non_null(root);
    json_t *runs = json_object_get(root, "runs");
    assert_int_equal(json_array_size(runs), 2);
    json_t *d = json_array_get(runs, 0), *ed = json_array_get(runs, 1);
    long d_req = (long)json_integer_value(json_object_get(d, "responses"));
    long e_req = (long)json_integer_value(json_object_get(ed, "responses"));
    long e_origin = (long)json_integer_value(json_object_get(ed, "origin_requests"));
    json_t *cache = json_object_get(ed, "cache");
    long hits = (long)json_integer_value(json_object_get(cache, "hit"));
    long misses = (long)json_integer_value(json_object_get(cache, "miss"));
    double ratio = json_real_value(json_object_get(ed, "hit_ratio"));
    print_message("direct %ld, edge %ld (hits %ld, misses %ld, ratio %.3f), origin saw %ld for "
                  "edge\n",
                  d_req, e_req, hits, misses, ratio, e_origin);
    assert_true(d_req > 200 && e_req > 200);
    /* what origin-sim counted: every direct request plus edge's misses */
    assert_int_equal(after - before, d_req + e_origin);
    /* each miss reached the origin once (no collapsing needed at this rate) */
    assert_int_equal(e_origin, misses);
    assert_int_equal(hits + misses, e_req);
    assert_true(ratio > 0.7 && ratio < 1.0);
    assert_true(ratio > (double)hits / (double)e_req - 0.001 &&
                ratio < (double)hits / (double)e_req + 0.001);
    json_decref(root);
    assert_int_equal(h_edge_stop(&e), 0);
    assert_int_equal(h_osim_stop(&o), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compare_through_caching_edge),
    };
    return H_RUN(tests, NULL, NULL);
}
