/*
 * Edge functions on the real request path: edge with the bundled functions
 * and test plugins (tests/plugins/testfn.c), a private redis-server,
 * origin-sim behind, curl in front.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/integration/edge.h"

static struct h_osim osim;
static struct h_redis redis;
static struct h_edge edge;
static char fn_dir[600];
static bool log_has(const char *needle); /* in the edge's log */

/* Retries GET path every 100 ms until it answers want (at most 5 s); the last status. */
static long get(const char *path, const char *const *hdrs, char *body, size_t blen,
                struct h_resp *keep);
static long
wait_status(const char *path, long want)
{
    long st = -1;
    for (int i = 0; i < 50 && st != want; i++) {
        h_sleep_ms(100);
        st = get(path, NULL, NULL, 0, NULL);
    }
    return st;
}

/* tests/plugins/testfn.c as fn_dir/NAME.so */
static void
build_plugin(const char *name, int mode, const char *gen)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "${CC:-cc} -std=c11 -shared -fPIC -I. -DTF_NAME='\"%s\"' -DTF_MODE=%d "
             "-DTF_GEN='\"%s\"' tests/plugins/testfn.c -o %s/%s.so.tmp && mv %s/%s.so.tmp %s/%s.so",
             name, mode, gen, fn_dir, name, fn_dir, name, fn_dir, name);
    if (system(cmd) != 0)
        fail_msg("cannot build test plugin: %s", cmd);
}

static void
copy_bundled(const char *name)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp %s/functions/%s.so %s/%s.so", h_build_dir(), name, fn_dir,
             name);
    if (system(cmd) != 0)
        fail_msg("cannot copy %s", cmd);
}

static void
conf_text(char *out, size_t n, const char *extra_routes)
{
    snprintf(out, n,
             "workers 2;\nlisten 127.0.0.1:%d h2;\nadmin 127.0.0.1:%d;\naccess_log off;\n"
             "redis 127.0.0.1:%d;\nkv_timeout 300ms;\n"
             "function_quarantine_crashes 2; function_quarantine_window 5m;\n"
             "function_dir %s;\nfunction_run_dir %s/run;\n"
             "cache_dir %s/cache max_size=64m;\n"
             "origin app { server 127.0.0.1:%d; retries 0; }\n"
             "site phases.test { route / { function phases; origin app; cache on ttl=60s; } }\n"
             "site respkv.test { route / { function respkv; kv_namespace rk; origin app;\n"
             "                             cache on ttl=60s; } }\n"
             "site * {\n"
             "  route = /hello { function hello; kv_namespace demo; }\n"
             "  route = /headers { function auth_key; kv_namespace keys; origin app; }\n"
             "  route /limited/ { function rate_limit limit=5 window=60s; kv_namespace rl;\n"
             "                    return 200 \"ok\\n\"; }\n"
             "  route = /chain { function auth_key; function hello; kv_namespace chain; }\n"
             "  route = /open { function hello; kv_namespace open; on_error open;\n"
             "                  return 200 \"no function needed\\n\"; }\n"
             "  route = /spin { function spin; function_cpu_budget 5ms;\n"
             "                  function_breaker_threshold 3; function_breaker_window 10s;\n"
             "                  function_breaker_cooldown 1500ms; }\n"
             "  route = /crash { function crash; }\n"
             "  route = /forever { function forever; function_cpu_hard_limit 100ms; }\n"
             "  route = /echo { function body; function_body_max 1k; function_arena_max 8k;\n"
             "                  origin app; }\n"
             "  route = /kvp { function kvp; kv_timeout 5s; function_pause_timeout 8s; }\n"
             "%s"
             "  route / { origin app; }\n"
             "}\n",
             edge.port, edge.admin_port, redis.port, fn_dir, h_tmpdir(), h_tmpdir(), osim.port,
             extra_routes);
}

static int
setup(void **state)
{
    char conf[8192];
    (void)state;
    snprintf(fn_dir, sizeof(fn_dir), "%s/functions", h_tmpdir());
    mkdir(fn_dir, 0755);
    copy_bundled("hello");
    copy_bundled("auth_key");
    copy_bundled("rate_limit");
    build_plugin("phases", 11, "1");
    build_plugin("spin", 8, "1");
    build_plugin("crash", 9, "1");
    build_plugin("forever", 12, "1");
    build_plugin("body", 13, "1");
    build_plugin("respkv", 14, "1");
    build_plugin("kvp", 10, "1");
    if (h_osim_start(&osim, NULL) < 0 || h_redis_start(&redis) < 0)
        return -1;
    edge.port = h_free_port();
    edge.admin_port = h_free_port();
    conf_text(conf, sizeof(conf), "");
    return h_edge_start(&edge, edge.port, edge.admin_port, conf);
}

static int
teardown(void **state)
{
    (void)state;
    int a = h_edge_stop(&edge);
    h_redis_stop(&redis);
    h_osim_stop(&osim);
    return a == 0 ? 0 : -1;
}

static long
get(const char *path, const char *const *hdrs, char *body, size_t blen, struct h_resp *keep)
{
    struct h_resp r;
    char url[512];
    long st;

    snprintf(url, sizeof(url), "%s%s", edge.url, path);
    if (h_http(&r, "GET", url, NULL, 0, hdrs) < 0) {
        h_resp_free(&r);
        return -1;
    }
    st = r.status;
    if (body != NULL)
        snprintf(body, blen, "%s", r.body ? r.body : "");
    if (keep != NULL)
        *keep = r;
    else
        h_resp_free(&r);
    return st;
}


static void
test_hello_counts_in_redis(void **state)
{
    char body[512], out[128];
    (void)state;
    for (int i = 1; i <= 3; i++) {
        char want[64];
        assert_int_equal(get("/hello", NULL, body, sizeof(body), NULL), 200);
        snprintf(want, sizeof(want), "\"visits\":%d", i);
        assert_non_null(strstr(body, want));
    }
    /* the key is there under the function's namespace */
    assert_int_equal(h_redis_cmd(&redis, "GET efn:hello:demo:visits:/hello", out, sizeof(out)), 0);
    assert_string_equal(out, "$1");
    assert_true(h_edge_metric_series(&edge, "edge_function_calls_total{function=\"hello\",namespace=\"hello:demo\"} ") >= 6);
    assert_true(h_edge_metric(&edge, "edge_kv_calls_total") >= 3);
}

static void
test_auth_key_via_admin_api(void **state)
{
    const char *hdrs[] = {"X-Api-Key: k-test-1", "X-Api-Owner: mallory", NULL};
    char body[2048], url[256];
    struct h_resp r;
    (void)state;

    assert_int_equal(get("/headers", hdrs, body, sizeof(body), NULL), 401);
    assert_non_null(strstr(body, "unknown"));
    snprintf(url, sizeof(url), "%s/kv/auth_key:keys/k-test-1", edge.admin_url);
    assert_int_equal(h_http(&r, "PUT", url, "alice", 5, NULL), 0);
    assert_int_equal(r.status, 204);
    h_resp_free(&r);
    assert_int_equal(get("/headers", hdrs, body, sizeof(body), NULL), 200);
    /* the origin got the owner from KV, never the client's forged one */
    assert_non_null(strstr(body, "\"x-api-owner\":\"alice\""));
    assert_null(strstr(body, "mallory"));
    /* the admin API reads and lists what it wrote */
    assert_int_equal(h_http(&r, "GET", url, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "alice");
    h_resp_free(&r);
    snprintf(url, sizeof(url), "%s/kv/auth_key:keys?prefix=k-test", edge.admin_url);
    assert_int_equal(h_http(&r, "GET", url, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"k-test-1\""));
    h_resp_free(&r);
    snprintf(url, sizeof(url), "%s/kv/auth_key:keys/k-test-1", edge.admin_url);
    assert_int_equal(h_http(&r, "DELETE", url, NULL, 0, NULL), 0);
    assert_non_null(strstr(r.body, "\"deleted\":1"));
    h_resp_free(&r);
    assert_int_equal(get("/headers", hdrs, body, sizeof(body), NULL), 401);
}

#define RL_N 14

static void
test_rate_limit_exact_under_concurrency(void **state)
{
    struct h_bg bg[RL_N];
    int ok = 0, limited = 0;
    char remaining[32];
    (void)state;

    for (int i = 0; i < RL_N; i++)
        h_bg_start(&bg[i], edge.url, "/limited/x");
    for (int i = 0; i < RL_N; i++) {
        h_bg_join(&bg[i]);
        if (bg[i].r.status == 200)
            ok++;
        else if (bg[i].r.status == 429) {
            limited++;
            assert_non_null(h_header(&bg[i].r, "Retry-After", remaining, sizeof(remaining)));
            assert_non_null(h_header(&bg[i].r, "RateLimit-Remaining", remaining,
                                     sizeof(remaining)));
            assert_string_equal(remaining, "0");
        }
        h_resp_free(&bg[i].r);
    }
    assert_int_equal(ok, 5);
    assert_int_equal(limited, RL_N - 5);
}

static void
test_first_answer_stops_the_chain(void **state)
{
    char out[128];
    (void)state;
    assert_int_equal(get("/chain", NULL, NULL, 0, NULL), 401);
    /* hello (second in the chain) never ran: no counter */
    assert_int_equal(h_redis_cmd(&redis, "GET efn:hello:chain:visits:/chain", out, sizeof(out)), 0);
    assert_string_equal(out, "$-1");
}

static void
test_origin_and_response_phases_on_miss_and_hit(void **state)
{
    struct h_resp r;
    char v[256], body[2048];
    const char *hdrs[] = {"Host: phases.test", NULL};
    long before;
    (void)state;

    /* miss: ORIGIN edits what the origin gets, RESPONSE what the client gets */
    assert_int_equal(get("/headers", hdrs, body, sizeof(body), &r), 200);
    assert_non_null(strstr(body, "\"x-origin-phase\":\"1\""));
    assert_non_null(h_header(&r, "X-Resp-Phase", v, sizeof(v)));
    assert_string_equal(v, "200");
    assert_null(h_header(&r, "Server", v, sizeof(v)));
    assert_non_null(h_header(&r, "Cache-Status", v, sizeof(v)));
    assert_non_null(strstr(v, "fwd=uri-miss"));
    h_resp_free(&r);
    before = h_stats_int(osim.url, "requests");
    /* hit: no origin fetch (so no ORIGIN phase), RESPONSE still edits */
    assert_int_equal(get("/headers", hdrs, body, sizeof(body), &r), 200);
    assert_non_null(h_header(&r, "Cache-Status", v, sizeof(v)));
    assert_non_null(strstr(v, "hit"));
    assert_non_null(h_header(&r, "X-Resp-Phase", v, sizeof(v)));
    assert_string_equal(v, "200");
    assert_null(h_header(&r, "Server", v, sizeof(v)));
    h_resp_free(&r);
    assert_int_equal(h_stats_int(osim.url, "requests"), before);
    /* RESPONSE edits are not stored: the stored copy still has Server */
    assert_non_null(strstr(body, "\"x-origin-phase\":\"1\""));
}

/* RESPONSE waiting on KV: on a miss the origin's body is held (parser
 * paused) and then streams whole; on a hit the object waits; HEAD too. */
static void
test_response_phase_pauses_on_kv(void **state)
{
    const char *hdrs[] = {"Host: respkv.test", NULL};
    struct h_resp r;
    char v[256], url[256], out[64];
    (void)state;
    assert_int_equal(h_redis_cmd(&redis, "SET efn:respkv:rk:k from-kv", out, sizeof(out)), 0);
    for (int i = 0; i < 2; i++) { /* miss (body streams after the pause), then hit */
        assert_int_equal(get("/bytes/300000", hdrs, NULL, 0, &r), 200);
        assert_int_equal(r.len, 300000);
        assert_non_null(h_header(&r, "X-KV", v, sizeof(v)));
        assert_string_equal(v, "from-kv");
        assert_non_null(h_header(&r, "Cache-Status", v, sizeof(v)));
        assert_non_null(strstr(v, i == 0 ? "fwd=uri-miss" : "hit"));
        h_resp_free(&r);
    }
    snprintf(url, sizeof(url), "%s/bytes/1234?x=head", edge.url);
    assert_int_equal(h_http(&r, "HEAD", url, NULL, 0, hdrs), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(h_header(&r, "X-KV", v, sizeof(v)));
    h_resp_free(&r);
    /* a keep-alive connection goes on after a HEAD that paused */
    assert_int_equal(get("/bytes/10?x=after", hdrs, NULL, 0, &r), 200);
    assert_int_equal(r.len, 10);
    h_resp_free(&r);
}

/* One request over HTTP/2 (h2c), on a connection of its own (libcurl 7.88
 * does not reuse prior-knowledge connections). */
static int
h2_req(struct h_resp *r, const char *method, const char *path, const char *const *hdrs)
{
    struct h_client *cl = h_client_new();
    struct h_opts o = {.timeout_ms = 10000, .h2c = true};
    char url[256];
    int rc;

    snprintf(url, sizeof(url), "%s%s", edge.url, path);
    rc = h_client_http_opts(cl, r, &o, method, url, NULL, 0, hdrs);
    h_client_free(cl);
    if (rc != 0)
        fail_msg("%s %s over h2: curl %d %s", method, path, r->curl_code, r->error);
    return rc;
}

/* The same phases over HTTP/2 (h2c): a REQUEST phase that pauses on KV
 * and answers, a RESPONSE phase that pauses on a miss (the origin's body
 * held meanwhile) and on a hit, and on HEAD. */
static void
test_h2_phases_pause(void **state)
{
    const char *hdrs[] = {"Host: respkv.test", NULL};
    struct h_resp r;
    char v[256], out[64];
    (void)state;

    assert_int_equal(h_redis_cmd(&redis, "SET efn:kvp:*=/kvp:k h2v", out, sizeof(out)), 0);
    h2_req(&r, "GET", "/kvp", NULL);
    assert_int_equal(r.http_version, 20);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, " value=h2v\n"));
    h_resp_free(&r);

    assert_int_equal(h_redis_cmd(&redis, "SET efn:respkv:rk:k from-kv", out, sizeof(out)), 0);
    for (int i = 0; i < 2; i++) { /* miss, then hit */
        h2_req(&r, "GET", "/bytes/200000?x=h2", hdrs);
        assert_int_equal(r.http_version, 20);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 200000);
        assert_non_null(h_header(&r, "x-kv", v, sizeof(v)));
        assert_string_equal(v, "from-kv");
        assert_non_null(h_header(&r, "cache-status", v, sizeof(v)));
        assert_non_null(strstr(v, i == 0 ? "fwd=uri-miss" : "hit"));
        h_resp_free(&r);
    }
    h2_req(&r, "HEAD", "/bytes/1234?x=h2head", hdrs);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    assert_non_null(h_header(&r, "x-kv", v, sizeof(v)));
    h_resp_free(&r);
}

static void
test_redis_down_then_back(void **state)
{
    char body[512];
    double t0;
    int port = redis.port;
    (void)state;

    assert_int_equal(get("/hello", NULL, NULL, 0, NULL), 200);
    h_redis_stop(&redis);
    t0 = h_now_ms();
    assert_int_equal(get("/hello", NULL, body, sizeof(body), NULL), 503); /* on_error closed */
    assert_true(h_now_ms() - t0 < 1000); /* within kv_timeout (300 ms) and then some */
    assert_int_equal(get("/open", NULL, body, sizeof(body), NULL), 200); /* on_error open */
    assert_string_equal(body, "no function needed\n");
    assert_int_equal(get("/status/204", NULL, NULL, 0, NULL), 204); /* other routes */
    assert_true(h_edge_metric(&edge, "edge_kv_connected_workers") == 0);
    /* back: the workers reconnect (backoff tops out at 2 s) */
    assert_int_equal(h_redis_start_on(&redis, port), 0);
    assert_int_equal(wait_status("/hello", 200), 200);
}

static void
test_bad_plugins_refused_by_check(void **state)
{
    char conf[8192], cmd[2048], out[16384];
    FILE *f;
    (void)state;
    build_plugin("abi2", 1, "1");
    build_plugin("nosym", 4, "1");
    for (int k = 0; k < 2; k++) {
        const char *name = k == 0 ? "abi2" : "nosym";
        char route[256], path[700];
        snprintf(route, sizeof(route), "  route = /bad { function %s; }\n", name);
        conf_text(conf, sizeof(conf), route);
        snprintf(path, sizeof(path), "%s/bad-%s.conf", h_tmpdir(), name);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(conf, f);
        fclose(f);
        snprintf(cmd, sizeof(cmd), "%s/edge -t -c %s 2>&1", h_build_dir(), path);
        f = popen(cmd, "r");
        assert_non_null(f);
        size_t n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        assert_int_not_equal(pclose(f), 0);
        assert_non_null(strstr(out, name));
        if (k == 0)
            assert_non_null(strstr(out, "ABI 2.0"));
        else
            assert_non_null(strstr(out, "efn_plugin_v1"));
    }
}

static void
test_spinning_function_breaks_open(void **state)
{
    char body[256];
    const char *series = "edge_function_breaker_open{function=\"spin\",";
    (void)state;

    /* over budget every time: answered, counted, and after 3 the breaker opens */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get("/spin", NULL, body, sizeof(body), NULL), 200);
        assert_string_equal(body, "spun\n");
    }
    assert_int_equal(get("/spin", NULL, body, sizeof(body), NULL), 503);
    assert_non_null(strstr(body, "breaker"));
    {
        struct h_resp r;
        char url[128];
        snprintf(url, sizeof(url), "%s/metrics", edge.admin_url);
        assert_int_equal(h_http(&r, "GET", url, NULL, 0, NULL), 0);
        const char *p = strstr(r.body, series);
        assert_non_null(p);
        assert_non_null(strstr(p, "} 1"));
        p = strstr(r.body, "edge_function_over_budget_total{function=\"spin\"");
        assert_non_null(p);
        assert_true(strtol(strchr(p, '}') + 1, NULL, 10) >= 3);
        h_resp_free(&r);
    }
    /* the cool-down ends: it runs again */
    assert_int_equal(wait_status("/spin", 200), 200);
}

static void
test_crashing_function_is_quarantined(void **state)
{
    char body[512];
    long st = 0;
    (void)state;

    /* each call takes the engine down; the supervisor restarts it; the
     * second crash (function_quarantine_crashes 2) quarantines the build */
    for (int i = 0; i < 2; i++) {
        st = get("/crash", NULL, NULL, 0, NULL);
        assert_true(st == -1 || st == 502 || st == 503);
        assert_int_equal(wait_status("/status/204", 204), 204); /* the new engine */
    }
    st = get("/crash", NULL, body, sizeof(body), NULL);
    assert_int_equal(st, 503);
    assert_non_null(strstr(body, "quarantined"));
    assert_int_equal(get("/status/204", NULL, NULL, 0, NULL), 204); /* others serve */
    assert_int_equal(get("/hello", NULL, NULL, 0, NULL), 200);
    assert_int_equal(h_edge_metric(&edge, "edge_functions_quarantined"), 1);
    /* the crash log names the function */
    assert_true(log_has("while running function 'crash'"));
    assert_true(log_has("'crash' (build"));
    assert_true(log_has("is quarantined until the next reload"));
}

static bool
log_has(const char *needle)
{
    static char logbuf[1 << 20];
    FILE *f = fopen(edge.proc.log, "r");
    size_t n;
    if (f == NULL)
        return false;
    n = fread(logbuf, 1, sizeof(logbuf) - 1, f);
    logbuf[n] = '\0';
    fclose(f);
    return strstr(logbuf, needle) != NULL;
}

static void
test_runaway_function_stopped_by_watchdog(void **state)
{
    double t0 = h_now_ms();
    long st;
    (void)state;
    st = get("/forever", NULL, NULL, 0, NULL);
    assert_true(st == -1 || st == 502);
    assert_true(h_now_ms() - t0 < 3000);
    assert_int_equal(wait_status("/status/204", 204), 204); /* the new engine */
    assert_true(log_has("watchdog: function 'forever' ran past function_cpu_hard_limit"));
    assert_true(log_has("while running function 'forever'"));
}

static void
test_function_reads_and_rewrites_request_body(void **state)
{
    struct h_resp r;
    char url[256], big[4096];
    const char *hdrs[] = {"Expect: 100-continue", NULL};
    (void)state;
    snprintf(url, sizeof(url), "%s/echo", edge.url);
    assert_int_equal(h_http(&r, "POST", url, "hello edge", 10, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "HELLO EDGE");
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "POST", url, "with expect", 11, hdrs), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "WITH EXPECT");
    h_resp_free(&r);
    /* over function_body_max (1k): streamed, not shown to the function */
    memset(big, 'a', sizeof(big));
    assert_int_equal(h_http(&r, "POST", url, big, sizeof(big), NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, sizeof(big));
    assert_int_equal(r.body[0], 'a');
    h_resp_free(&r);
}

static void
test_reload_while_paused_on_kv(void **state)
{
    struct h_bg bg;
    char out[64], body[256], url[128];
    struct h_resp r;
    (void)state;

    assert_int_equal(h_redis_cmd(&redis, "SET efn:kvp:*=/kvp:k v1", out, sizeof(out)), 0);
    assert_int_equal(get("/kvp", NULL, body, sizeof(body), NULL), 200);
    assert_string_equal(body, "gen=1 value=v1\n");
    /* Redis holds every command for 1.5 s: the request pauses on its GET */
    assert_int_equal(h_redis_cmd(&redis, "CLIENT PAUSE 1500 ALL", out, sizeof(out)), 0);
    h_bg_start(&bg, edge.url, "/kvp");
    h_sleep_ms(200);
    build_plugin("kvp", 10, "2"); /* a changed .so: loaded as a fresh copy */
    snprintf(url, sizeof(url), "%s/reload", edge.admin_url);
    assert_int_equal(h_http(&r, "POST", url, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    h_bg_join(&bg);
    assert_int_equal(bg.r.status, 200);
    assert_string_equal(bg.r.body, "gen=1 value=v1\n"); /* the generation it started with */
    h_resp_free(&bg.r);
    assert_int_equal(get("/kvp", NULL, body, sizeof(body), NULL), 200);
    assert_string_equal(body, "gen=2 value=v1\n");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_counts_in_redis),
        cmocka_unit_test(test_auth_key_via_admin_api),
        cmocka_unit_test(test_rate_limit_exact_under_concurrency),
        cmocka_unit_test(test_first_answer_stops_the_chain),
        cmocka_unit_test(test_origin_and_response_phases_on_miss_and_hit),
        cmocka_unit_test(test_h2_phases_pause),
        cmocka_unit_test(test_bad_plugins_refused_by_check),
        cmocka_unit_test(test_spinning_function_breaks_open),
        cmocka_unit_test(test_function_reads_and_rewrites_request_body),
        cmocka_unit_test(test_reload_while_paused_on_kv),
        cmocka_unit_test(test_response_phase_pauses_on_kv),
        cmocka_unit_test(test_redis_down_then_back),
        cmocka_unit_test(test_runaway_function_stopped_by_watchdog),
        cmocka_unit_test(test_crashing_function_is_quarantined),
    };
    return h_finish(cmocka_run_group_tests(tests, setup, teardown));
}
