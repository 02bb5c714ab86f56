/*
 * Unit tests of compute/conf.c: the compute directives, loading functions at
 * conf load (bundled ones from build/functions, test plugins built at run
 * time from tests/plugins/testfn.c), exact error messages, budget
 * inheritance, KV namespaces, build reuse across loads and release. Run from
 * the repository root after `make all` (EDGE_BUILD selects the build dir of
 * the bundled functions; default build).
 */
#include "compute/compute.h"

#include "conf/conf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/plugins/testfn_build.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[128];   /* test plugins: ${TD} */
static char fndir[256]; /* bundled functions: ${FD} */
static struct efn_host host;

static int
setup(void **state)
{
    const char *b = getenv("EDGE_BUILD");
    struct stat st;

    (void)state;
    snprintf(fndir, sizeof(fndir), "%s/functions", b != NULL && b[0] != '\0' ? b : "build");
    if (stat(fndir, &st) < 0) /* e.g. the ASan test binary run before its functions exist */
        snprintf(fndir, sizeof(fndir), "build/functions");
    snprintf(dir, sizeof(dir), "/tmp/compute_conf_test.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    setenv("TD", dir, 1);
    setenv("FD", fndir, 1);
    host = *compute_host_stub();
    host.log = tf_count_log;
    compute_set_host(&host);
    tf_build(dir, "good", 0, NULL);
    tf_build(dir, "other", 0, NULL);
    tf_build(dir, "abi2", 1, NULL);
    tf_build(dir, "nosym", 4, NULL);
    tf_build(dir, "initfail", 5, NULL);
    tf_build(dir, "unres", 6, NULL);
    if (compute_conf_register() != 0)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    char cmd[256];

    (void)state;
    compute_conf_shutdown();
    compute_set_host(NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct conf *
load_ok(const char *text)
{
    struct conf_err err = {{0}};
    struct conf *c = conf_load_string("edge.conf", text, strlen(text), &err);

    if (c == NULL)
        fail_msg("conf refused: %s\n--\n%s", err.msg, text);
    return c;
}

static void
expect_err(const char *text, const char *want)
{
    struct conf_err err = {{0}};
    struct conf *c = conf_load_string("edge.conf", text, strlen(text), &err);

    if (c != NULL) {
        conf_unref(c);
        fail_msg("conf accepted, wanted: %s\n--\n%s", want, text);
    }
    if (strcmp(err.msg, want) != 0)
        fail_msg("got  '%s'\nwant '%s'\n--\n%s", err.msg, want, text);
}

static const struct conf_route *
route_at(const struct conf *c, size_t site, size_t route)
{
    assert_true(site < c->nsites);
    assert_true(route < c->sites[site].nroutes);
    return &c->sites[site].routes[route];
}

static void
assert_prefix(const struct compute_entry *e, const char *want)
{
    assert_int_equal(e->kv_prefix.len, strlen(want));
    assert_memory_equal(e->kv_prefix.ptr, want, e->kv_prefix.len);
    assert_int_equal(e->kv_prefix.ptr[e->kv_prefix.len], '\0');
}

#define TP "function_dir ${TD}; function_run_dir ${TD}/run;\n" /* line 1 */
#define FP "function_dir ${FD}; function_run_dir ${TD}/run;\n"

/* ---- registration and defaults ---- */

static void
test_register_idempotent(void **state)
{
    struct conf *c;
    const struct compute_main *cm;

    (void)state;
    assert_int_equal(compute_conf_register(), 0);
    assert_int_equal(compute_conf_register(), 0);
    c = load_ok("site * { route / { return 200; } }");
    cm = compute_conf_main(c);
    assert_non_null(cm);
    assert_string_equal(cm->function_dir, "build/functions");
    assert_string_equal(cm->run_dir, "var/run/efn");
    assert_false(cm->redis_set);
    assert_string_equal(cm->redis.host, "127.0.0.1");
    assert_int_equal(cm->redis.port, 6379);
    assert_int_equal(cm->redis.timeout_ms, 50);
    assert_int_equal(cm->budgets.cpu_ms, 5);
    assert_int_equal(cm->budgets.kv_timeout_ms, 50);
    assert_int_equal(cm->budgets.pause_timeout_ms, 1000);
    assert_int_equal(cm->budgets.arena_max, 64 * 1024);
    assert_int_equal(cm->budgets.body_max, 1024 * 1024);
    assert_null(compute_route_chain(route_at(c, 0, 0)));
    conf_unref(c);
}

/* A reload keeps a worker's Redis connection when `redis` did not change:
 * the comparison is by field, whatever a struct copy did to padding. */
static void
test_redis_conf_equal(void **state)
{
    struct conf *a, *b, *d;
    struct kv_conf copy;

    (void)state;
    a = load_ok("redis cache.local:6380 password=s3cret db=2;\n");
    b = load_ok("redis cache.local:6380 password=s3cret db=2;\n");
    d = load_ok("redis cache.local:6381 password=s3cret db=2;\n");
    memset(&copy, 0xa5, sizeof(copy));
    copy = compute_conf_main(a)->redis;
    assert_true(kv_conf_equal(&compute_conf_main(a)->redis, &compute_conf_main(b)->redis));
    assert_true(kv_conf_equal(&copy, &compute_conf_main(b)->redis));
    assert_false(kv_conf_equal(&compute_conf_main(a)->redis, &compute_conf_main(d)->redis));
    conf_unref(a);
    conf_unref(b);
    conf_unref(d);
}

static void
test_redis(void **state)
{
    struct conf *c;
    const struct compute_main *cm;

    (void)state;
    c = load_ok("redis cache.local:6380 password=s3cret db=2 timeout=250ms;\n"
                "kv_timeout 20ms;\n");
    cm = compute_conf_main(c);
    assert_true(cm->redis_set);
    assert_false(cm->redis.is_unix);
    assert_string_equal(cm->redis.host, "cache.local");
    assert_int_equal(cm->redis.port, 6380);
    assert_string_equal(cm->redis.password, "s3cret");
    assert_int_equal(cm->redis.db, 2);
    assert_int_equal(cm->redis.connect_timeout_ms, 250);
    assert_int_equal(cm->redis.timeout_ms, 20);
    assert_int_equal(cm->redis.max_inflight, 8);
    conf_unref(c);

    c = load_ok("redis unix:/run/redis.sock db=1;");
    cm = compute_conf_main(c);
    assert_true(cm->redis.is_unix);
    assert_string_equal(cm->redis.path, "/run/redis.sock");
    assert_int_equal(cm->redis.db, 1);
    assert_int_equal(cm->redis.connect_timeout_ms, 1000);
    conf_unref(c);

    c = load_ok("redis [::1]:7000;");
    cm = compute_conf_main(c);
    assert_string_equal(cm->redis.host, "::1");
    assert_int_equal(cm->redis.port, 7000);
    conf_unref(c);
}

static void
test_redis_errors(void **state)
{
    (void)state;
    expect_err("redis localhost;",
               "edge.conf:1:7: 'redis' expects HOST:PORT or unix:/path, not 'localhost'");
    expect_err("redis :6379;", "edge.conf:1:7: 'redis' expects HOST:PORT or unix:/path, not "
                               "':6379'");
    expect_err("redis ::1:6379;",
               "edge.conf:1:7: 'redis' expects HOST:PORT or unix:/path, not '::1:6379'");
    expect_err("redis [::1]6379;",
               "edge.conf:1:7: 'redis' expects HOST:PORT or unix:/path, not '[::1]6379'");
    expect_err("redis host:99999;",
               "edge.conf:1:7: 'redis': bad port in 'host:99999' (expected 1-65535)");
    expect_err("redis host:;", "edge.conf:1:7: 'redis': bad port in 'host:' (expected 1-65535)");
    expect_err("redis unix:run/r.sock;",
               "edge.conf:1:7: 'redis': unix socket path must be absolute, not 'run/r.sock'");
    expect_err(
        "redis unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;",
        "edge.conf:1:7: 'redis': unix socket path longer than 107 bytes");
    expect_err("redis h:1 pass=x;", "edge.conf:1:11: 'redis': unknown option 'pass=x' (expected "
                                    "password=, db= or timeout=)");
    expect_err("redis h:1 tls;", "edge.conf:1:11: 'redis': unknown option 'tls' (expected "
                                 "password=, db= or timeout=)");
    expect_err("redis h:1 db=x;", "edge.conf:1:11: 'redis db=' expects a whole number, not 'x'");
    expect_err("redis h:1 db=70000;",
               "edge.conf:1:11: 'redis db=' expects a number from 0 to 65535, not 70000");
    expect_err("redis h:1 timeout=soon;",
               "edge.conf:1:11: 'redis timeout=' expects a duration like 500ms, 30s, 5m, 1h or "
               "7d, not 'soon'");
    expect_err("redis h:1 timeout=0;",
               "edge.conf:1:11: 'redis' timeout= must be from 1ms to 60s, not '0'");
    expect_err("redis h:1 password=;", "edge.conf:1:11: 'redis' password= must be 1-127 bytes");
    expect_err("redis;", "edge.conf:1:1: 'redis' expects HOST:PORT or unix:/path, then "
                         "password=, db=, timeout=");
    expect_err("redis h:1;\nredis h:2;", "edge.conf:2:1: 'redis' is duplicate (first set at "
                                         "edge.conf:1)");
}

/* ---- budgets ---- */

static void
test_budgets_inherit(void **state)
{
    struct conf *c;
    const struct compute_route *a, *b;

    (void)state;
    c = load_ok(TP "function_cpu_budget 10ms; kv_timeout 30ms; function_pause_timeout 2s;\n"
                   "function_arena_max 128k; function_body_max 0;\n"
                   "site * {\n"
                   "  route /a { function good; }\n"
                   "  route /b { function good; function_cpu_budget 2ms; kv_timeout 1s;\n"
                   "             function_pause_timeout 500ms; function_arena_max 1m;\n"
                   "             function_body_max 2m; on_error open; }\n"
                   "}\n");
    a = compute_route_chain(route_at(c, 0, 0));
    b = compute_route_chain(route_at(c, 0, 1));
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->budgets.cpu_ms, 10);
    assert_int_equal(a->budgets.kv_timeout_ms, 30);
    assert_int_equal(a->budgets.pause_timeout_ms, 2000);
    assert_int_equal(a->budgets.arena_max, 128 * 1024);
    assert_int_equal(a->budgets.body_max, 0);
    assert_int_equal(a->on_error, COMPUTE_ON_ERROR_CLOSED);
    assert_int_equal(b->budgets.cpu_ms, 2);
    assert_int_equal(b->budgets.kv_timeout_ms, 1000);
    assert_int_equal(b->budgets.pause_timeout_ms, 500);
    assert_int_equal(b->budgets.arena_max, 1024 * 1024);
    assert_int_equal(b->budgets.body_max, 2 * 1024 * 1024);
    assert_int_equal(b->on_error, COMPUTE_ON_ERROR_OPEN);
    assert_int_equal(compute_conf_main(c)->redis.timeout_ms, 30);
    conf_unref(c);

    /* budgets alone on a route: inherited values, but no chain */
    c = load_ok("site * { route / { return 200; kv_timeout 5ms; on_error open; } }");
    assert_null(compute_route_chain(route_at(c, 0, 0)));
    conf_unref(c);
}

static void
test_budget_errors(void **state)
{
    (void)state;
    expect_err("function_quarantine_crashes 0;",
               "edge.conf:1:29: 'function_quarantine_crashes' must be from 1 to 100, not '0'");
    expect_err("function_quarantine_window 100ms;",
               "edge.conf:1:28: 'function_quarantine_window' must be from 1s to 1d, not '100ms'");
    expect_err("function_cpu_budget 0;",
               "edge.conf:1:21: 'function_cpu_budget' must be from 1ms to 200ms, not '0'");
    expect_err("function_cpu_budget 1s;",
               "edge.conf:1:21: 'function_cpu_budget' must be from 1ms to 200ms, not '1s'");
    expect_err("function_cpu_budget fast;",
               "edge.conf:1:21: 'function_cpu_budget' expects a duration like 500ms, 30s, 5m, "
               "1h or 7d, not 'fast'");
    expect_err("kv_timeout 0ms;", "edge.conf:1:12: 'kv_timeout' must be from 1ms to 60s, not "
                                  "'0ms'");
    expect_err("kv_timeout 2m;", "edge.conf:1:12: 'kv_timeout' must be from 1ms to 60s, not "
                                 "'2m'");
    expect_err("function_pause_timeout 1h;",
               "edge.conf:1:24: 'function_pause_timeout' must be from 1ms to 5m, not '1h'");
    expect_err("function_arena_max 512;",
               "edge.conf:1:20: 'function_arena_max' must be from 1k to 256m, not '512'");
    expect_err("function_arena_max 1t;",
               "edge.conf:1:20: 'function_arena_max' expects a size like 512, 64k, 10m or 2g, "
               "not '1t'");
    expect_err("function_body_max 2g;",
               "edge.conf:1:19: 'function_body_max' must be from 0 to 1g, not '2g'");
    expect_err("kv_timeout 1s;\nkv_timeout 2s;",
               "edge.conf:2:1: 'kv_timeout' is duplicate (first set at edge.conf:1)");
    expect_err("site * { route / { return 200; function_cpu_budget 300ms; } }",
               "edge.conf:1:52: 'function_cpu_budget' must be from 1ms to 200ms, not '300ms'");
    expect_err("site * { kv_timeout 1s; }",
               "edge.conf:1:10: 'kv_timeout' is not allowed here (it belongs at the top level or "
               "in a 'route' block)");
    expect_err("kv_timeout;", "edge.conf:1:1: 'kv_timeout' expects a duration");
}

/* ---- directive contexts and route directives ---- */

static void
test_context_errors(void **state)
{
    (void)state;
    expect_err("function hello;", "edge.conf:1:1: 'function' is not allowed here (it belongs in "
                                  "a 'route' block)");
    expect_err("on_error open;", "edge.conf:1:1: 'on_error' is not allowed here (it belongs in "
                                 "a 'route' block)");
    expect_err("site * { route / { redis h:1; } }",
               "edge.conf:1:20: 'redis' is not allowed here (it belongs at the top level)");
    expect_err("site * { function_dir /x; }", "edge.conf:1:10: 'function_dir' is not allowed here "
                                              "(it belongs at the top level)");
    expect_err("site * { route / { kv_namespace a; kv_namespace b; return 200; } }",
               "edge.conf:1:36: 'kv_namespace' is duplicate (first set at edge.conf:1)");
    expect_err("site * { route / { functon hello; } }",
               "edge.conf:1:20: unknown directive 'functon' (did you mean 'function'?)");
    expect_err("site * { route / { function; } }",
               "edge.conf:1:20: 'function' expects a function name and key=value arguments");
    expect_err("function_dir a b;", "edge.conf:1:1: 'function_dir' expects a directory path");
    expect_err("function_dir '';", "edge.conf:1:14: 'function_dir' expects a directory path");
}

static void
test_route_errors(void **state)
{
    (void)state;
    expect_err("site * { route / { on_error maybe; return 200; } }",
               "edge.conf:1:29: 'on_error' expects 'open' or 'closed', not 'maybe'");
    expect_err("site * { route / { on_error; } }",
               "edge.conf:1:20: 'on_error' expects 'open' or 'closed'");
    expect_err("site * { route / { on_error open; on_error closed; return 200; } }",
               "edge.conf:1:35: 'on_error' is duplicate (first set at edge.conf:1)");
    expect_err("site * { route / { kv_namespace a:b; return 200; } }",
               "edge.conf:1:33: 'kv_namespace' expects 1-64 of A-Z a-z 0-9 _ . -, not 'a:b'");
    expect_err("site * { route / { function good instance=a/b; } }",
               "edge.conf:1:34: 'function': instance= must be 1-64 of A-Z a-z 0-9 _ . -, not "
               "'a/b'");
    expect_err("site * { route / { function good instance=; } }",
               "edge.conf:1:34: 'function': instance= must be 1-64 of A-Z a-z 0-9 _ . -, not "
               "''");
    expect_err("site * { route / { function good instance; } }",
               "edge.conf:1:34: 'function': instance= needs an id");
    expect_err("site * { route / { function good instance=a instance=b; } }",
               "edge.conf:1:45: 'function': instance= given twice");
    /* without a function the route still needs origin or return */
    expect_err("site * { route /x { on_error open; } }",
               "edge.conf:1:10: route '/x' has no 'origin' or 'return'");
}

/* ---- loading: refusals ---- */

static void
test_load_errors(void **state)
{
    char want[1024];

    (void)state;
    snprintf(want, sizeof(want), "edge.conf:2:20: function 'nope': %s/nope.so: no such file", dir);
    expect_err(TP "site * { route / { function nope; } }", want);
    expect_err(TP "site * { route / { function abi2; } }",
               "edge.conf:2:20: function 'abi2': built for ABI 2.0, edge has 1.0");
    snprintf(want, sizeof(want),
             "edge.conf:2:20: function 'nosym': %s/nosym.so has no symbol 'efn_plugin_v1' (not an "
             "edge function?)",
             dir);
    expect_err(TP "site * { route / { function nosym; } }", want);
    expect_err(TP "site * { route / { function initfail; } }",
               "edge.conf:2:20: function 'initfail': init failed: no license for initfail");
    expect_err(TP "site * { route / { function 'bad name'; } }",
               "edge.conf:2:20: function 'bad name': bad name (1-64 of A-Z a-z 0-9 _ -)");
    /* testfn's message names no argument: the directive is blamed */
    expect_err(TP "site * { route / { function good fail=yes; } }",
               "edge.conf:2:20: function 'good': fail requested (yes)");
    /* a failure in the second route after the first loaded: released cleanly */
    expect_err(TP "site * {\n route /a { function good; }\n route /b { function good;\n"
                  "   function other fail=1; }\n}",
               "edge.conf:5:4: function 'other': fail requested (1)");
}

static void
test_unresolved_symbol(void **state)
{
    struct conf_err err = {{0}};
    const char *text = TP "site * { route / { function unres; } }";

    (void)state;
    assert_null(conf_load_string("edge.conf", text, strlen(text), &err));
    /* dlerror's wording is libc's: check our part and the symbol */
    assert_non_null(strstr(err.msg, "edge.conf:2:20: function 'unres': dlopen: "));
    assert_non_null(strstr(err.msg, "tf_no_such_symbol"));
}

static void
test_bundled_arg_errors(void **state)
{
    (void)state;
    expect_err(FP "site * { route / { function rate_limit window=1s; } }",
               "edge.conf:2:20: function 'rate_limit': rate_limit needs limit=N and "
               "window=DURATION");
    expect_err(FP "site * { route / { function rate_limit limit=0 window=1s; } }",
               "edge.conf:2:40: function 'rate_limit': limit= must be a number from 1 to "
               "1000000000, not '0'");
    expect_err(FP "site * { route / { function rate_limit limit=5 window=1s burst=2; } }",
               "edge.conf:2:58: function 'rate_limit': unknown argument 'burst' (rate_limit "
               "takes limit=, window=, key=)");
    expect_err(FP "site * { route / { function hello colour=red; } }",
               "edge.conf:2:35: function 'hello': unknown argument 'colour' (hello takes "
               "greeting=)");
    expect_err(FP "site * { route / { function headers; } }",
               "edge.conf:2:20: function 'headers': headers needs at least one set=, add= or "
               "remove=");
    expect_err(FP "site * { route / { function ab_split cookie=ab; } }",
               "edge.conf:2:20: function 'ab_split': ab_split needs buckets=NAME:WEIGHT,...");
}

static void
test_run_dir_errors(void **state)
{
    char want[1024], path[256];
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "%s/plainfile", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(want, sizeof(want),
             "edge.conf:1:38: function run dir %s/plainfile/run: Not a directory", dir);
    expect_err("function_dir ${TD}; function_run_dir ${TD}/plainfile/run;\n"
               "site * { route / { function good; } }",
               want);
    /* without function_run_dir the error points at the function */
    snprintf(want, sizeof(want), "edge.conf:2:20: function run dir var/run/efn: Not a directory");
    {
        char cwd[512], tmp[256];
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        snprintf(tmp, sizeof(tmp), "%s/cwd", dir);
        assert_int_equal(mkdir(tmp, 0755), 0);
        assert_int_equal(chdir(tmp), 0);
        f = fopen("var", "w");
        assert_non_null(f);
        fclose(f);
        expect_err("function_dir ${TD};\nsite * { route / { function good; } }", want);
        assert_int_equal(chdir(cwd), 0);
    }
    /* no function anywhere: the run dir is neither needed nor created */
    {
        struct conf *c = load_ok("function_run_dir ${TD}/never/made;\n"
                                 "site * { route / { return 204; } }");
        struct stat st;
        snprintf(path, sizeof(path), "%s/never", dir);
        assert_int_equal(stat(path, &st), -1);
        conf_unref(c);
    }
}

/* ---- loading: success ---- */

static void
test_bundled_load(void **state)
{
    struct conf *c;
    const struct compute_route *cr;
    const struct compute_entry *e;
    struct stat st;
    char path[256];

    (void)state;
    c = load_ok("redis 127.0.0.1:6379;\n" FP "site example.com {\n"
                "  route = /hello { function hello greeting=edge; }\n"
                "  route /api {\n"
                "    function auth_key header=X-Api-Key instance=keys;\n"
                "    function rate_limit limit=10 window=1s;\n"
                "    function headers set=req:X-Edge:1 remove=resp:Server;\n"
                "    function ab_split buckets=a:50,b:50 cookie=ab;\n"
                "    on_error open;\n"
                "  }\n"
                "}\n");
    cr = compute_route_chain(route_at(c, 0, 0));
    assert_non_null(cr);
    assert_int_equal(cr->nentries, 1);
    e = &cr->entries[0];
    assert_string_equal(e->name, "hello");
    assert_non_null(e->plugin);
    assert_string_equal(e->plugin->name, "hello");
    assert_non_null(e->inst);
    assert_non_null(e->build);
    assert_int_equal(e->nargs, 1);
    assert_int_equal(e->pos->line, 4);
    assert_int_equal(e->pos->col, 20);
    assert_prefix(e, "efn:hello:example.com=/hello:");
    /* a route answered by functions needs no origin/return */
    assert_null(route_at(c, 0, 0)->origin);
    assert_int_equal(route_at(c, 0, 0)->return_status, 0);

    cr = compute_route_chain(route_at(c, 0, 1));
    assert_non_null(cr);
    assert_int_equal(cr->nentries, 4);
    assert_int_equal(cr->on_error, COMPUTE_ON_ERROR_OPEN);
    assert_string_equal(cr->entries[0].name, "auth_key");
    assert_string_equal(cr->entries[1].name, "rate_limit");
    assert_string_equal(cr->entries[2].name, "headers");
    assert_string_equal(cr->entries[3].name, "ab_split");
    /* instance= is the host's: not passed to the plugin */
    assert_int_equal(cr->entries[0].nargs, 1);
    assert_memory_equal(cr->entries[0].args[0].key.ptr, "header", 6);
    assert_memory_equal(cr->entries[0].args[0].value.ptr, "X-Api-Key", 9);
    assert_prefix(&cr->entries[0], "efn:auth_key:keys:");
    assert_prefix(&cr->entries[1], "efn:rate_limit:example.com/api:");
    assert_int_equal(cr->entries[2].nargs, 2);
    assert_memory_equal(cr->entries[2].args[0].value.ptr, "req:X-Edge:1", 12);
    conf_unref(c);

    snprintf(path, sizeof(path), "%s/run", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

static void
test_kv_namespaces(void **state)
{
    struct conf *c;
    const struct compute_route *a, *b, *x, *y, *z, *w;

    (void)state;
    c = load_ok(FP "site shop.example.com www.shop.example.com {\n"
                   "  route /a { function rate_limit limit=1 window=1s; }\n"
                   "  route /b { function rate_limit limit=1 window=1s; }\n"
                   "  route /x { function rate_limit limit=1 window=1s instance=shared; }\n"
                   "  route /y { function rate_limit limit=1 window=1s instance=shared;\n"
                   "             function rate_limit limit=9 window=1m;\n"
                   "             function rate_limit limit=99 window=1h; }\n"
                   "  route ~* \"^/z:[0-9] x\" { kv_namespace zz;\n"
                   "             function rate_limit limit=1 window=1s;\n"
                   "             function hello; }\n"
                   "  route ^~ /w%: { function hello; }\n"
                   "}\n"
                   "site * { route /a { function rate_limit limit=1 window=1s; } }\n");
    a = compute_route_chain(route_at(c, 0, 0));
    b = compute_route_chain(route_at(c, 0, 1));
    x = compute_route_chain(route_at(c, 0, 2));
    y = compute_route_chain(route_at(c, 0, 3));
    z = compute_route_chain(route_at(c, 0, 4));
    w = compute_route_chain(route_at(c, 0, 5));
    /* different routes: different counters by default */
    assert_prefix(&a->entries[0], "efn:rate_limit:shop.example.com/a:");
    assert_prefix(&b->entries[0], "efn:rate_limit:shop.example.com/b:");
    /* the same instance= shares them */
    assert_prefix(&x->entries[0], "efn:rate_limit:shared:");
    assert_prefix(&y->entries[0], "efn:rate_limit:shared:");
    /* the same function twice in a chain: second and third get their own */
    assert_prefix(&y->entries[1], "efn:rate_limit:shop.example.com/y:");
    assert_prefix(&y->entries[2], "efn:rate_limit:shop.example.com/y#2:");
    /* kv_namespace names the route's id for each of its functions */
    assert_string_equal(z->kv_namespace, "zz");
    assert_prefix(&z->entries[0], "efn:rate_limit:zz:");
    assert_prefix(&z->entries[1], "efn:hello:zz:");
    /* ':' '%' and spaces are escaped; the match type is part of the id */
    assert_prefix(&w->entries[0], "efn:hello:shop.example.com^~/w%25%3A:");
    assert_prefix(&compute_route_chain(route_at(c, 1, 0))->entries[0], "efn:rate_limit:*/a:");
    conf_unref(c);

    c = load_ok(FP "site * { route ~ \"^/z:[0-9] x\" { function hello; } }\n");
    assert_prefix(&compute_route_chain(route_at(c, 0, 0))->entries[0],
                  "efn:hello:*~^/z%3A[0-9]%20x:");
    conf_unref(c);
}

static void
test_long_route_id(void **state)
{
    char text[2048], pat[400];
    struct conf *c;
    const struct compute_entry *e, *e2;
    const char *id;

    (void)state;
    memset(pat, 'p', sizeof(pat) - 1);
    pat[0] = '/';
    pat[sizeof(pat) - 1] = '\0';
    snprintf(text, sizeof(text),
             FP "site * {\n route %s { function hello; }\n route %sq { function hello; }\n}\n", pat,
             pat);
    c = load_ok(text);
    e = &compute_route_chain(route_at(c, 0, 0))->entries[0];
    e2 = &compute_route_chain(route_at(c, 0, 1))->entries[0];
    /* "efn:hello:" + 120 bytes of the id + "~" + 16 hex + ":" */
    assert_int_equal(e->kv_prefix.len, 10 + 120 + 1 + 16 + 1);
    id = e->kv_prefix.ptr + 10;
    assert_memory_equal(id, "*/ppp", 5);
    assert_int_equal(id[120], '~');
    assert_int_equal(e2->kv_prefix.len, e->kv_prefix.len);
    assert_memory_not_equal(e->kv_prefix.ptr, e2->kv_prefix.ptr, e->kv_prefix.len);
    conf_unref(c);
}

/* ---- generations: reuse and release ---- */

static void
test_reuse_across_loads(void **state)
{
    const char *text = TP "site * {\n route /a { function good k=v; }\n"
                          " route /b { function good; function good x; }\n}\n";
    struct conf *c1, *c2, *c3;
    const struct compute_entry *e1, *e2;
    int init0, fini0, inst0;

    (void)state;
    init0 = tf_n_init, fini0 = tf_n_fini, inst0 = tf_n_inst;
    c1 = load_ok(text);
    assert_int_equal(tf_n_init - init0, 1); /* one build for three entries */
    assert_int_equal(tf_n_inst - inst0, 3);
    e1 = &compute_route_chain(route_at(c1, 0, 0))->entries[0];
    assert_int_equal(compute_build_inits(e1->build), 1);
    assert_ptr_equal(e1->build, compute_route_chain(route_at(c1, 0, 1))->entries[1].build);

    c2 = load_ok(text); /* a reload: same sha, no second init; new instances */
    assert_int_equal(tf_n_init - init0, 1);
    assert_int_equal(tf_n_inst - inst0, 6);
    e2 = &compute_route_chain(route_at(c2, 0, 0))->entries[0];
    assert_ptr_equal(e1->build, e2->build);
    assert_int_equal(compute_build_inits(e2->build), 1);

    conf_unref(c1); /* the old generation goes; the build stays for c2 */
    assert_int_equal(tf_n_fini - fini0, 0);
    assert_int_equal(compute_build_inits(e2->build), 1);

    tf_build(dir, "good", 0, "-DTF_CHANGED=1 -O1"); /* a changed .so: a fresh build */
    c3 = load_ok(text);
    assert_int_equal(tf_n_init - init0, 2);
    assert_ptr_not_equal(compute_route_chain(route_at(c3, 0, 0))->entries[0].build, e2->build);
    conf_unref(c2); /* last user of the old build: fini */
    assert_int_equal(tf_n_fini - fini0, 1);
    conf_unref(c3);
    assert_int_equal(tf_n_fini - fini0, 2);
}

static void
test_release_partial(void **state)
{
    int init0, fini0;

    (void)state;
    init0 = tf_n_init, fini0 = tf_n_fini;
    /* 'good' loads and gets an instance, 'other' loads but instance_new
     * fails, the third entry is never reached: all of it released */
    expect_err(TP "site * { route / { function good; function other fail=now; "
                  "function good; } }",
               "edge.conf:2:35: function 'other': fail requested (now)");
    assert_int_equal(tf_n_init - init0, 2);
    assert_int_equal(tf_n_fini - fini0, 2);
    /* a failure after every route finished (core validation) */
    init0 = tf_n_init, fini0 = tf_n_fini;
    expect_err(TP "site * { route / { function good; origin nope; } }",
               "edge.conf:2:42: unknown origin 'nope'");
    assert_int_equal(tf_n_fini - fini0, tf_n_init - init0);
}

static void *
unref_thread(void *arg)
{
    conf_unref(arg);
    return NULL;
}

static void
test_release_on_worker_thread(void **state)
{
    /* the last conf_unref may come from a worker: instance_free, unref,
     * fini + dlclose run there */
    const char *text = TP "site * { route / { function good; function other; } }";
    struct conf *c1, *c2;
    pthread_t t;
    int fini0;

    (void)state;
    c1 = load_ok(text);
    c2 = load_ok(text);
    fini0 = tf_n_fini;
    assert_int_equal(pthread_create(&t, NULL, unref_thread, c2), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(tf_n_fini, fini0); /* c1 still holds both builds */
    assert_int_equal(pthread_create(&t, NULL, unref_thread, c1), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(tf_n_fini, fini0 + 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_idempotent),
        cmocka_unit_test(test_redis),
        cmocka_unit_test(test_redis_conf_equal),
        cmocka_unit_test(test_redis_errors),
        cmocka_unit_test(test_budgets_inherit),
        cmocka_unit_test(test_budget_errors),
        cmocka_unit_test(test_context_errors),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_unresolved_symbol),
        cmocka_unit_test(test_bundled_arg_errors),
        cmocka_unit_test(test_run_dir_errors),
        cmocka_unit_test(test_bundled_load),
        cmocka_unit_test(test_kv_namespaces),
        cmocka_unit_test(test_long_route_id),
        cmocka_unit_test(test_reuse_across_loads),
        cmocka_unit_test(test_release_partial),
        cmocka_unit_test(test_release_on_worker_thread),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
