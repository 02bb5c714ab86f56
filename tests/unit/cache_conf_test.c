/*
 * Unit tests of cache/conf.c: 'cache_dir' and 'cache' parsing, defaults,
 * site -> route inheritance, key templates compiled at load, exact
 * "file:line:col: message" errors, and the release hook (run under ASan to
 * see that every template is freed, also when a load fails midway).
 */
#include "cache/cache.h"

#include "conf/conf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ORIGIN "origin app { server 127.0.0.1:9000; }\n"
#define DIR "cache_dir /var/cache/edge max_size=1g;\n"

static int
setup(void **state)
{
    (void)state;
    return cache_conf_register() == 0 ? 0 : -1;
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
        fail_msg("wrong message\n got: %s\nwant: %s\n--\n%s", err.msg, want, text);
}

static const struct conf_route *
route_at(const struct conf *c, const char *host, const char *path)
{
    const struct conf_site *s = conf_site_match(c, host, strlen(host));

    assert_non_null(s);
    return conf_route_match(s, path, strlen(path));
}

/* The key a route builds for GET http://Example.com/p?q */
static void
key_is(const struct cache_route *r, const char *path, const char *query, const struct cache_hdr *h,
       size_t nh, const char *want)
{
    struct cache_key_parts parts = {
        .scheme = {"http", 4},
        .host = {"Example.com", 11},
        .path = {path, strlen(path)},
        .query = {query, query != NULL ? strlen(query) : 0},
    };
    char buf[512];
    size_t len = 0;

    assert_int_equal(cache_key_build(r, &parts, h, nh, buf, sizeof(buf), &len), 0);
    assert_string_equal(buf, want);
    assert_int_equal(len, strlen(want));
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void
test_register_idempotent(void **state)
{
    (void)state;
    assert_int_equal(cache_conf_register(), 0);
    assert_int_equal(cache_conf_register(), 0);
}

static void
test_no_cache(void **state)
{
    struct conf *c = load_ok(ORIGIN "site * { route / { origin app; } }\n");

    (void)state;
    assert_null(cache_conf_main(c));
    assert_null(cache_route_conf(route_at(c, "x", "/")));
    assert_null(cache_route_conf(NULL));
    assert_null(cache_conf_main(NULL));
    conf_unref(c);
}

static void
test_cache_dir(void **state)
{
    struct conf *c;
    const struct cache_main *m;

    (void)state;
    c = load_ok(ORIGIN DIR "site * { route / { origin app; } }\n");
    m = cache_conf_main(c);
    assert_non_null(m);
    assert_string_equal(m->dir, "/var/cache/edge");
    assert_int_equal(m->max_size, 1ull << 30);
    assert_int_equal(m->max_object, 64ull << 20); /* min(64m, max_size / 8) */
    assert_false(m->fsync);
    /* a cache_dir alone enables no route */
    assert_null(cache_route_conf(route_at(c, "x", "/")));
    conf_unref(c);

    c = load_ok(ORIGIN "cache_dir 'var/c' max_size=80m fsync=on;\n");
    m = cache_conf_main(c);
    assert_string_equal(m->dir, "var/c");
    assert_int_equal(m->max_size, 80ull << 20);
    assert_int_equal(m->max_object, 10ull << 20);
    assert_true(m->fsync);
    conf_unref(c);

    c = load_ok("cache_dir /c fsync=off max_object=1m max_size=2m;\n");
    m = cache_conf_main(c);
    assert_int_equal(m->max_size, 2ull << 20);
    assert_int_equal(m->max_object, 1ull << 20);
    assert_false(m->fsync);
    conf_unref(c);

    c = load_ok("cache_dir /c max_size=4;\n"); /* tiny: max_object at least 1 byte */
    assert_int_equal(cache_conf_main(c)->max_object, 1);
    conf_unref(c);

    /* the memory tier: off by default and with mem=0; mem_object= defaults to
     * min(64k, mem=, max_object) */
    c = load_ok(DIR);
    assert_int_equal(cache_conf_main(c)->mem, 0);
    assert_int_equal(cache_conf_main(c)->mem_object, 0);
    conf_unref(c);
    c = load_ok("cache_dir /c max_size=1g mem=0;\n");
    assert_int_equal(cache_conf_main(c)->mem, 0);
    conf_unref(c);
    c = load_ok("cache_dir /c max_size=1g mem=64m;\n");
    m = cache_conf_main(c);
    assert_int_equal(m->mem, 64ull << 20);
    assert_int_equal(m->mem_object, 64ull << 10);
    conf_unref(c);
    c = load_ok("cache_dir /c mem_object=1m mem=256m max_size=1g;\n");
    m = cache_conf_main(c);
    assert_int_equal(m->mem, 256ull << 20);
    assert_int_equal(m->mem_object, 1ull << 20);
    conf_unref(c);
    c = load_ok("cache_dir /c max_size=1g mem=16k;\n");
    assert_int_equal(cache_conf_main(c)->mem_object, 16ull << 10);
    conf_unref(c);
    c = load_ok("cache_dir /c max_size=1g max_object=8k mem=1m;\n");
    assert_int_equal(cache_conf_main(c)->mem_object, 8ull << 10);
    conf_unref(c);
}

static void
test_route_options(void **state)
{
    static const struct cache_hdr h[] = {{"X-Device", 8, " mobile ", 8}};
    struct conf *c;
    const struct cache_route *r;

    (void)state;
    c = load_ok(ORIGIN DIR
                "site * {\n"
                "  route / { origin app; cache on; }\n"
                "  route /all { origin app;\n"
                "    cache on ttl=5m max_ttl=1h stale_while_revalidate=30s stale_if_error=1d\n"
                "          key=$host$path|$arg_v|$http_x_device|$$ ignore_query=utm_source,fbclid\n"
                "          sort_query;\n"
                "  }\n"
                "  route /q { origin app; cache on ignore_query=b sort_query; }\n"
                "  route /z { origin app; cache on ttl=0s max_ttl=0s; }\n"
                "}\n");
    r = cache_route_conf(route_at(c, "x", "/"));
    assert_non_null(r);
    assert_true(r->enabled);
    assert_int_equal(r->ttl, CACHE_UNSET);
    assert_int_equal(r->max_ttl, CACHE_UNSET);
    assert_int_equal(r->swr, CACHE_UNSET);
    assert_int_equal(r->sie, CACHE_UNSET);
    assert_null(r->key);
    assert_int_equal(r->n_ignore_query, 0);
    assert_false(r->sort_query);
    key_is(r, "/p", "b=1&a=2", NULL, 0, "http://example.com/p?b=1&a=2");

    r = cache_route_conf(route_at(c, "x", "/all/x"));
    assert_non_null(r);
    assert_int_equal(r->ttl, 300);
    assert_int_equal(r->max_ttl, 3600);
    assert_int_equal(r->swr, 30);
    assert_int_equal(r->sie, 86400);
    assert_non_null(r->key);
    assert_int_equal(r->n_ignore_query, 2);
    assert_int_equal(r->ignore_query[0].len, 10);
    assert_memory_equal(r->ignore_query[0].p, "utm_source", 10);
    assert_int_equal(r->ignore_query[1].len, 6);
    assert_memory_equal(r->ignore_query[1].p, "fbclid", 6);
    assert_true(r->sort_query);
    key_is(r, "/all/x", "v=3&utm_source=z", h, 1, "example.com/all/x|3|mobile|$");

    r = cache_route_conf(route_at(c, "x", "/q"));
    key_is(r, "/q", "c=1&b=2&a=3", NULL, 0, "http://example.com/q?a=3&c=1");

    r = cache_route_conf(route_at(c, "x", "/z"));
    assert_int_equal(r->ttl, 0);
    assert_int_equal(r->max_ttl, 0);
    conf_unref(c);
}

static void
test_inheritance(void **state)
{
    struct conf *c;
    const struct cache_route *site_r, *r;

    (void)state;
    c = load_ok(ORIGIN DIR "site a.example {\n"
                           "  cache on ttl=60s key=$host$path;\n"
                           "  route / { origin app; }\n"
                           "  route /off { origin app; cache off; }\n"
                           "  route /own { origin app; cache on ttl=5s; }\n"
                           "  route ~ \\.png$ { origin app; }\n"
                           "}\n"
                           "site b.example {\n"
                           "  cache off;\n"
                           "  route / { origin app; }\n"
                           "  route /on { origin app; cache on sort_query; }\n"
                           "}\n"
                           "site c.example { route / { origin app; } }\n");
    site_r = cache_route_conf(route_at(c, "a.example", "/"));
    assert_non_null(site_r);
    assert_int_equal(site_r->ttl, 60);
    assert_non_null(site_r->key);
    key_is(site_r, "/x", "q=1", NULL, 0, "example.com/x");
    r = cache_route_conf(route_at(c, "a.example", "/img/a.png"));
    assert_non_null(r);
    assert_ptr_not_equal(r, site_r);
    assert_ptr_equal(r->key, site_r->key); /* shared, freed once */
    assert_int_equal(r->ttl, 60);
    assert_null(cache_route_conf(route_at(c, "a.example", "/off")));
    /* a route's own 'cache' replaces the site's whole: no key= from the site */
    r = cache_route_conf(route_at(c, "a.example", "/own"));
    assert_non_null(r);
    assert_int_equal(r->ttl, 5);
    assert_null(r->key);

    assert_null(cache_route_conf(route_at(c, "b.example", "/")));
    r = cache_route_conf(route_at(c, "b.example", "/on"));
    assert_non_null(r);
    assert_true(r->sort_query);
    assert_int_equal(r->ttl, CACHE_UNSET);
    assert_null(cache_route_conf(route_at(c, "c.example", "/")));
    conf_unref(c);
}

static void
test_errors(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        /* cache_dir */
        {"cache_dir;\n", "edge.conf:1:1: 'cache_dir' expects a directory path, then "
                         "max_size=SIZE [max_object=SIZE] [fsync=on|off] [mem=SIZE] "
                         "[mem_object=SIZE]"},
        {"cache_dir /c;\n",
         "edge.conf:1:1: 'cache_dir' needs max_size=SIZE (the most the cache keeps)"},
        {"cache_dir max_size=1g;\n",
         "edge.conf:1:11: 'cache_dir' expects a directory path first, not 'max_size=1g'"},
        {"cache_dir '' max_size=1g;\n", "edge.conf:1:11: 'cache_dir' expects a directory path"},
        {"cache_dir /c max_sise=1g;\n",
         "edge.conf:1:14: 'cache_dir': unknown option 'max_sise=1g' (did you mean 'max_size='?)"},
        {"cache_dir /c max_size=1g bogus;\n",
         "edge.conf:1:26: 'cache_dir': unknown option 'bogus' (expected max_size=, max_object=, "
         "fsync=, mem= or mem_object=)"},
        {"cache_dir /c max_size=1g mem_objet=1k;\n",
         "edge.conf:1:26: 'cache_dir': unknown option 'mem_objet=1k' (did you mean "
         "'mem_object='?)"},
        {"cache_dir /c max_size=1g mem;\n", "edge.conf:1:26: 'cache_dir': mem= needs a value"},
        {"cache_dir /c max_size=1g mem=lots;\n",
         "edge.conf:1:26: 'cache_dir mem=' expects a size like 512, 64k, 10m or 2g, not 'lots'"},
        {"cache_dir /c max_size=1m mem=2m;\n",
         "edge.conf:1:26: 'cache_dir': mem=2m is more than max_size=1m"},
        {"cache_dir /c max_size=1g mem=64m mem=32m;\n",
         "edge.conf:1:34: 'cache_dir': mem= given twice"},
        {"cache_dir /c max_size=1g mem=64m mem_object=0;\n",
         "edge.conf:1:34: 'cache_dir' mem_object= must be more than 0"},
        {"cache_dir /c max_size=1g mem_object=64k;\n",
         "edge.conf:1:26: 'cache_dir': mem_object=64k needs mem=SIZE (the memory tier is off "
         "without it)"},
        {"cache_dir /c max_size=1g mem=0 mem_object=64k;\n",
         "edge.conf:1:32: 'cache_dir': mem_object=64k needs mem=SIZE (the memory tier is off "
         "without it)"},
        {"cache_dir /c max_size=1g mem=64k mem_object=1m;\n",
         "edge.conf:1:34: 'cache_dir': mem_object=1m is more than mem=64k"},
        {"cache_dir /c max_size=1g max_object=4k mem=1m mem_object=8k;\n",
         "edge.conf:1:47: 'cache_dir': mem_object=8k is more than max_object= (4096 bytes): "
         "larger objects are not stored at all"},
        {"cache_dir /c max_size=1g fsync;\n", "edge.conf:1:26: 'cache_dir': fsync= needs a value"},
        {"cache_dir /c max_size=1g fsync=yes;\n",
         "edge.conf:1:26: 'cache_dir fsync=' expects 'on' or 'off', not 'yes'"},
        {"cache_dir /c max_size=lots;\n",
         "edge.conf:1:14: 'cache_dir max_size=' expects a size like 512, 64k, 10m or 2g, not "
         "'lots'"},
        {"cache_dir /c max_size=0;\n", "edge.conf:1:14: 'cache_dir' max_size= must be more than 0"},
        {"cache_dir /c max_size=1g max_object=0;\n",
         "edge.conf:1:26: 'cache_dir' max_object= must be more than 0"},
        {"cache_dir /c max_size=1g max_size=2g;\n",
         "edge.conf:1:26: 'cache_dir': max_size= given twice"},
        {"cache_dir /c max_size=1m max_object=2m;\n",
         "edge.conf:1:26: 'cache_dir': max_object=2m is more than max_size=1m"},
        {"cache_dir /c max_size=1g;\ncache_dir /d max_size=1g;\n",
         "edge.conf:2:1: 'cache_dir' is duplicate (first set at edge.conf:1)"},
        {"site * { cache_dir /c max_size=1g; }\n",
         "edge.conf:1:10: 'cache_dir' is not allowed here (it belongs at the top level)"},
        /* cache */
        {"cache on;\n",
         "edge.conf:1:1: 'cache' is not allowed here (it belongs in a 'site' block or in a "
         "'route' block)"},
        {ORIGIN DIR "site * { route / { origin app; cache; } }\n",
         "edge.conf:3:32: 'cache' expects 'on' or 'off', then options"},
        {ORIGIN DIR "site * { route / { origin app; cache yes; } }\n",
         "edge.conf:3:38: 'cache' expects 'on' or 'off', not 'yes'"},
        {ORIGIN DIR "site * { route / { origin app; cache off ttl=1s; } }\n",
         "edge.conf:3:42: 'cache off' takes no options"},
        {ORIGIN DIR "site * { route / { origin app; cache on tll=5m; } }\n",
         "edge.conf:3:41: 'cache': unknown option 'tll=5m' (did you mean 'ttl='?)"},
        {ORIGIN DIR "site * { route / { origin app; cache on stale_while_revalidat=5s; } }\n",
         "edge.conf:3:41: 'cache': unknown option 'stale_while_revalidat=5s' (did you mean "
         "'stale_while_revalidate='?)"},
        {ORIGIN DIR "site * { route / { origin app; cache on sortquery; } }\n",
         "edge.conf:3:41: 'cache': unknown option 'sortquery' (did you mean 'sort_query'?)"},
        {ORIGIN DIR "site * { route / { origin app; cache on foo=1; } }\n",
         "edge.conf:3:41: 'cache': unknown option 'foo=1' (expected ttl=, max_ttl=, "
         "stale_while_revalidate=, stale_if_error=, key=, ignore_query= or sort_query)"},
        {ORIGIN DIR "site * { route / { origin app; cache on ttl; } }\n",
         "edge.conf:3:41: 'cache': ttl= needs a value"},
        {ORIGIN DIR "site * { route / { origin app; cache on sort_query=on; } }\n",
         "edge.conf:3:41: 'cache': sort_query takes no value (not 'sort_query=on')"},
        {ORIGIN DIR "site * { route / { origin app; cache on ttl=5x; } }\n",
         "edge.conf:3:41: 'cache ttl=' expects a duration like 500ms, 30s, 5m, 1h or 7d, not "
         "'5x'"},
        {ORIGIN DIR "site * { route / { origin app; cache on max_ttl=1500ms; } }\n",
         "edge.conf:3:41: 'cache' max_ttl= must be whole seconds, not '1500ms'"},
        {ORIGIN DIR "site * { route / { origin app; cache on stale_if_error=366d; } }\n",
         "edge.conf:3:41: 'cache' stale_if_error= must be at most 365d, not '366d'"},
        {ORIGIN DIR "site * { route / { origin app; cache on ttl=1s ttl=2s; } }\n",
         "edge.conf:3:48: 'cache': ttl= given twice"},
        {ORIGIN DIR "site * { route / { origin app; cache on sort_query sort_query; } }\n",
         "edge.conf:3:52: 'cache': sort_query given twice"},
        {ORIGIN DIR "site * { route / { origin app; cache on ttl=2h max_ttl=1h; } }\n",
         "edge.conf:3:41: 'cache': ttl=2h is more than max_ttl=1h"},
        {ORIGIN DIR "site * { route / { origin app; cache on; cache off; } }\n",
         "edge.conf:3:42: 'cache' is duplicate (first set at edge.conf:3)"},
        {ORIGIN DIR "site * { route / { origin app; cache on key=; } }\n",
         "edge.conf:3:41: 'cache' key=: column 1: empty key template"},
        {ORIGIN DIR "site * { route / { origin app; cache on key=$host$nope; } }\n",
         "edge.conf:3:41: 'cache' key=: column 6: unknown variable in key template (expected "
         "$scheme, $host, $path, $query, $uri, $arg_NAME or $http_NAME)"},
        {ORIGIN DIR "site * { route / { origin app; cache on 'key=${host'; } }\n",
         "edge.conf:3:41: 'cache' key=: column 1: unterminated '${' in key template"},
        {ORIGIN DIR "site * { route / { origin app; cache on \"key=$host\\t\"; } }\n",
         "edge.conf:3:41: 'cache' key=: column 6: control character in key template"},
        {ORIGIN DIR "site * { route / { origin app; cache on key=a$; } }\n",
         "edge.conf:3:41: 'cache' key=: column 2: '$' must be followed by a variable name (or "
         "'$$')"},
        {ORIGIN DIR "site * { route / { origin app; cache on ignore_query=a,,b; } }\n",
         "edge.conf:3:41: 'cache' ignore_query= expects names separated by ',', with none "
         "empty, not 'a,,b'"},
        {ORIGIN DIR "site * { route / { origin app; cache on ignore_query=; } }\n",
         "edge.conf:3:41: 'cache' ignore_query= expects names separated by ',', with none "
         "empty, not ''"},
        {ORIGIN DIR "site * { route / { origin app; cache on ignore_query=a,b&c; } }\n",
         "edge.conf:3:41: 'cache' ignore_query=: 'b&c' is not a parameter name (no '=' or '&')"},
        {ORIGIN DIR "site * { route / { origin app; cache on ignore_query=a=b; } }\n",
         "edge.conf:3:41: 'cache' ignore_query=: 'a=b' is not a parameter name (no '=' or '&')"},
        /* cache on without cache_dir */
        {ORIGIN "site * {\n  route /api { origin app;\n    cache on; } }\n",
         "edge.conf:4:5: route '/api': 'cache on' needs a 'cache_dir' at the top level"},
        {ORIGIN "site * {\n  route ~* \\.js$ { origin app;\n    cache on ttl=1s; } }\n",
         "edge.conf:4:5: route '~* \\.js$': 'cache on' needs a 'cache_dir' at the top level"},
        {ORIGIN "site www.example.com *.example.com {\n  cache on;\n  route / { origin app; }\n}\n",
         "edge.conf:3:3: site 'www.example.com': 'cache on' needs a 'cache_dir' at the top "
         "level"},
        /* off does not need a directory */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_err(cases[i].text, cases[i].want);
}

static void
test_off_needs_no_dir(void **state)
{
    struct conf *c = load_ok(ORIGIN "site * { cache off; route / { origin app; cache off; } }\n");

    (void)state;
    assert_null(cache_route_conf(route_at(c, "x", "/")));
    conf_unref(c);
}

static void
test_too_many_ignore_query(void **state)
{
    char text[2048];
    size_t used;
    int i;

    (void)state;
    used = (size_t)snprintf(text, sizeof(text),
                            ORIGIN DIR "site * { route / { origin app; cache on ignore_query=");
    for (i = 0; i <= CACHE_IGNORE_QUERY_MAX; i++)
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%sp%d", i ? "," : "", i);
    snprintf(text + used, sizeof(text) - used, "; } }\n");
    expect_err(text, "edge.conf:3:41: 'cache' ignore_query= names more than 32 parameters");
    /* exactly the maximum is fine */
    used = (size_t)snprintf(text, sizeof(text),
                            ORIGIN DIR "site * { route / { origin app; cache on ignore_query=");
    for (i = 0; i < CACHE_IGNORE_QUERY_MAX; i++)
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%sp%d", i ? "," : "", i);
    snprintf(text + used, sizeof(text) - used, "; } }\n");
    {
        struct conf *c = load_ok(text);
        assert_int_equal(cache_route_conf(route_at(c, "x", "/"))->n_ignore_query,
                         CACHE_IGNORE_QUERY_MAX);
        conf_unref(c);
    }
}

/* Templates are malloc'd outside the arena: every one must be freed, on
 * conf_unref and when a load fails after some were compiled (ASan: leaks). */
static void
test_release(void **state)
{
    struct conf *c, *c2;

    (void)state;
    c = load_ok(ORIGIN DIR "site a { cache on key=$host$uri;\n"
                           "  route / { origin app; }\n"
                           "  route /b { origin app; cache on key=$path; }\n"
                           "  route /c { origin app; cache on 'key=${host}x'; }\n"
                           "}\n"
                           "site b { route / { origin app; cache on key=$uri; } }\n");
    c2 = conf_ref(c);
    conf_unref(c);
    key_is(cache_route_conf(route_at(c2, "a", "/c")), "/c", NULL, NULL, 0, "example.comx");
    conf_unref(c2);
    /* failures at each stage, after templates were compiled */
    expect_err(ORIGIN DIR "site a { cache on key=$host;\n"
                          "  route / { origin app; cache on key=$path; }\n"
                          "  route /x { origin app; cache on key=$bad; }\n"
                          "}\n",
               "edge.conf:5:35: 'cache' key=: column 1: unknown variable in key template "
               "(expected $scheme, $host, $path, $query, $uri, $arg_NAME or $http_NAME)");
    expect_err(ORIGIN DIR "site a { cache on key=$host;\n"
                          "  route / { origin app; cache on key=$path ttl=1w; }\n"
                          "}\n",
               "edge.conf:4:44: 'cache ttl=' expects a duration like 500ms, 30s, 5m, 1h or 7d, "
               "not '1w'");
    expect_err(ORIGIN DIR "site a { cache on key=$host;\n"
                          "  route / { origin nope; cache on key=$path; }\n"
                          "}\n",
               "edge.conf:4:20: unknown origin 'nope'");
    expect_err(ORIGIN "site a { route / { origin app; cache on key=$path; } }\n"
                      "site b { cache on key=$host; route / { origin app; } }\n",
               "edge.conf:2:32: route '/': 'cache on' needs a 'cache_dir' at the top level");
    expect_err(ORIGIN DIR "site a { cache on key=$host;\n"
                          "  route / { cache on key=$path; }\n"
                          "}\n",
               "edge.conf:4:3: route '/' has no 'origin' or 'return'");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_idempotent),
        cmocka_unit_test(test_no_cache),
        cmocka_unit_test(test_cache_dir),
        cmocka_unit_test(test_route_options),
        cmocka_unit_test(test_inheritance),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_off_needs_no_dir),
        cmocka_unit_test(test_too_many_ignore_query),
        cmocka_unit_test(test_release),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
