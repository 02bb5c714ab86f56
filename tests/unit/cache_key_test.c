/*
 * Unit tests of cache keys: default normalisation, ignore_query / sort_query,
 * templates (syntax, variables, errors), ids, Vary names and secondary keys.
 */
#include "cache/cache.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static struct cache_str
S(const char *s) {
    return (struct cache_str){s, s != NULL ? strlen(s) : 0};
}

static int
build(const struct cache_route *r, const char *scheme, const char *host, const char *path,
      const char *query, const struct cache_hdr *h, size_t nh, char *out, size_t cap)
{
    struct cache_key_parts p = {S(scheme), S(host), S(path), S(query)};
    size_t len = 0;
    int rc = cache_key_build(r, &p, h, nh, out, cap, &len);

    if (rc == 0)
        assert_int_equal(len, strlen(out));
    return rc;
}

static void
test_default_key(void **state)
{
    static const struct {
        const char *scheme, *host, *path, *query, *want;
    } t[] = {
        {"http", "Example.COM", "/a/b", NULL, "http://example.com/a/b"},
        {"http", "example.com:80", "/", "", "http://example.com/"},
        {"https", "example.com:443", "/", "x=1", "https://example.com/?x=1"},
        {"https", "example.com:80", "/", NULL, "https://example.com:80/"},
        {"http", "example.com:8080", "/", NULL, "http://example.com:8080/"},
        {"http", "example.com.", "/", NULL, "http://example.com/"},
        {"http", "example.com.:81", "/", NULL, "http://example.com:81/"},
        {"http", "example.com:", "/", NULL, "http://example.com/"},
        {"http", "[::1]:80", "/", NULL, "http://[::1]/"},
        {"http", "[::1]", "/", NULL, "http://[::1]/"},
        {"HTTP", "h", "/%7e%41%2f%2F%zz%4", NULL, "http://h/~A%2F%2F%zz%4"},
        {"http", "h", "/", "b=1&&a=2&", "http://h/?b=1&a=2"},
        {"http", "h", "/", "&&", "http://h/"},
        {"http", "h", "/", "q=%7e%3d", "http://h/?q=~%3D"},
    };
    char out[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        assert_int_equal(
            build(NULL, t[i].scheme, t[i].host, t[i].path, t[i].query, NULL, 0, out, sizeof(out)),
            0);
        if (strcmp(out, t[i].want) != 0)
            fail_msg("#%zu: '%s', want '%s'", i, out, t[i].want);
    }
    assert_int_equal(build(NULL, "http", "", "/", NULL, NULL, 0, out, sizeof(out)), CACHE_EINVAL);
    assert_int_equal(build(NULL, "http", NULL, "/", NULL, NULL, 0, out, sizeof(out)), CACHE_EINVAL);
    assert_int_equal(build(NULL, "http", "a b", "/", NULL, NULL, 0, out, sizeof(out)),
                     CACHE_EINVAL);
    assert_int_equal(build(NULL, "http", "a@b", "/", NULL, NULL, 0, out, sizeof(out)),
                     CACHE_EINVAL);
    assert_int_equal(build(NULL, "http", "h", "x", NULL, NULL, 0, out, sizeof(out)), CACHE_EINVAL);
    assert_int_equal(build(NULL, "http", "h", "", NULL, NULL, 0, out, sizeof(out)), CACHE_EINVAL);
    /* the buffer bound: exactly fits, one short */
    assert_int_equal(build(NULL, "http", "h", "/abc", NULL, NULL, 0, out, 13), 0);
    assert_int_equal(build(NULL, "http", "h", "/abc", NULL, NULL, 0, out, 12), CACHE_ETOOBIG);
    assert_int_equal(build(NULL, "http", "h", "/abc", "a", NULL, 0, out, 15), 0);
    assert_int_equal(build(NULL, "http", "h", "/abc", "a", NULL, 0, out, 14), CACHE_ETOOBIG);
    assert_string_equal(out, "");
}

static void
test_query_options(void **state)
{
    struct cache_route r;
    char out[256];

    (void)state;
    cache_route_init(&r);
    r.ignore_query[0] = S("utm_source");
    r.ignore_query[1] = S("fbclid");
    r.n_ignore_query = 2;
    assert_int_equal(build(&r, "http", "h", "/p", "utm_source=x&b=2&fbclid&a=1&utm_sourcex=3", NULL,
                           0, out, sizeof(out)),
                     0);
    assert_string_equal(out, "http://h/p?b=2&a=1&utm_sourcex=3");
    assert_int_equal(build(&r, "http", "h", "/p", "utm_source=x", NULL, 0, out, sizeof(out)), 0);
    assert_string_equal(out, "http://h/p");
    r.sort_query = true;
    assert_int_equal(
        build(&r, "http", "h", "/p", "c=1&a=2&b=3&a=1&ab=0", NULL, 0, out, sizeof(out)), 0);
    assert_string_equal(out, "http://h/p?a=2&a=1&ab=0&b=3&c=1"); /* stable by name */
}

static void
test_templates(void **state)
{
    static const struct cache_hdr h[] = {
        {"X-Device", 8, " mobile ", 8},
        {"Accept-Language", 15, "en", 2},
        {"accept-language", 15, "fr", 2},
    };
    static const struct {
        const char *tpl, *want;
    } t[] = {
        {"$scheme://$host$uri", "https://ex.com/p/x?b=2&a=1"},
        {"${host}x$path", "ex.comx/p/x"},
        {"$host:$query", "ex.com:b=2&a=1"},
        {"k=$arg_a|$arg_b|$arg_zz|", "k=1|2||"},
        {"$http_x_device/$HTTP_ACCEPT_LANGUAGE/$http_none.", "mobile/en,fr/."},
        {"price $$5 ${uri}", "price $5 /p/x?b=2&a=1"},
        {"literal", "literal"},
    };
    char out[256], err[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cache_route r;
        struct cache_key_tpl *tpl = cache_key_tpl_new(t[i].tpl, strlen(t[i].tpl), err, sizeof(err));
        if (tpl == NULL)
            fail_msg("'%s': %s", t[i].tpl, err);
        cache_route_init(&r);
        r.key = tpl;
        assert_int_equal(
            build(&r, "https", "Ex.com:443", "/p/x", "b=2&a=1", h, 3, out, sizeof(out)), 0);
        if (strcmp(out, t[i].want) != 0)
            fail_msg("'%s': '%s', want '%s'", t[i].tpl, out, t[i].want);
        cache_key_tpl_free(tpl);
    }
}

static void
test_template_errors(void **state)
{
    static const struct {
        const char *tpl, *msg;
    } t[] = {
        {"", "column 1: empty key template"},
        {"a$", "column 2: '$' must be followed by a variable name (or '$$')"},
        {"ab${host", "column 3: unterminated '${' in key template"},
        {"$hostx", "column 1: unknown variable in key template (expected $scheme, $host, "
                   "$path, $query, $uri, $arg_NAME or $http_NAME)"},
        {"$arg_", "column 1: unknown variable in key template (expected $scheme, $host, "
                  "$path, $query, $uri, $arg_NAME or $http_NAME)"},
        {"x${}", "column 2: '$' must be followed by a variable name (or '$$')"},
        {"$-", "column 1: '$' must be followed by a variable name (or '$$')"},
        {"$host\t$path", "column 6: control character in key template"},
        {"a\x7f", "column 2: control character in key template"},
    };
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        err[0] = '\0';
        assert_null(cache_key_tpl_new(t[i].tpl, strlen(t[i].tpl), err, sizeof(err)));
        if (strcmp(err, t[i].msg) != 0)
            fail_msg("'%s': '%s'", t[i].tpl, err);
    }
    cache_key_tpl_free(NULL);
}

/* Keys are C strings: a control byte from the request (a NUL in the path
 * or query, a tab or CR in a header value) makes the key invalid (bypass),
 * never a key that a strcmp-based index or a Cache-Status value misreads. */
static void
test_control_bytes(void **state)
{
    static const struct cache_hdr tab[] = {{"X-A", 3, "a\tb", 3}};
    static const struct cache_hdr ok[] = {{"X-A", 3,
                                           "a\x80"
                                           "b",
                                           3}};
    struct cache_key_parts p = {S("http"), S("h"), {"/a\0b", 4}, {NULL, 0}};
    struct cache_key_tpl *tpl = cache_key_tpl_new("$uri|$http_x_a", 14, NULL, 0);
    struct cache_route r;
    char out[128];
    size_t len = 7;

    (void)state;
    assert_non_null(tpl);
    assert_int_equal(cache_key_build(NULL, &p, NULL, 0, out, sizeof(out), &len), CACHE_EINVAL);
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
    p.path = S("/a");
    p.query = (struct cache_str){"x=\0", 3};
    assert_int_equal(cache_key_build(NULL, &p, NULL, 0, out, sizeof(out), &len), CACHE_EINVAL);
    p.query = S("x=%00");
    assert_int_equal(cache_key_build(NULL, &p, NULL, 0, out, sizeof(out), &len), 0);
    assert_string_equal(out, "http://h/a?x=%00");
    cache_route_init(&r);
    r.key = tpl;
    assert_int_equal(build(&r, "http", "h", "/a", NULL, tab, 1, out, sizeof(out)), CACHE_EINVAL);
    assert_int_equal(build(&r, "http", "h", "/a", NULL, ok, 1, out, sizeof(out)), 0);
    assert_string_equal(out, "/a|a\x80"
                             "b");
    assert_int_equal(build(&r, "http", "h", "/a", "\x01", NULL, 0, out, sizeof(out)), CACHE_EINVAL);
    cache_key_tpl_free(tpl);
}

static void
test_ids(void **state)
{
    uint8_t a[CACHE_ID_LEN], b[CACHE_ID_LEN];
    char hex[CACHE_ID_HEX + 1];

    (void)state;
    /* SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 ... */
    cache_key_id("abc", 3, a);
    cache_id_hex(a, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223");
    cache_key_id("abd", 3, b);
    assert_memory_not_equal(a, b, CACHE_ID_LEN);
}

static void
test_vary(void **state)
{
    static const struct cache_hdr resp[] = {
        {"Vary", 4, "Accept-Encoding, accept-language", 32},
        {"vary", 4, "X-A,accept-encoding", 19},
    };
    static const struct cache_hdr req1[] = {
        {"Accept-Encoding", 15, "  gzip,   br ", 13},
        {"X-A", 3, "1", 1},
        {"X-A", 3, "2", 1},
    };
    static const struct cache_hdr req2[] = {
        {"x-a", 3, "1", 1},
        {"ACCEPT-ENCODING", 15, "gzip, br", 8},
        {"x-a", 3, "2", 1},
    };
    static const struct cache_hdr star[] = {{"Vary", 4, "a, *", 4}};
    char names[256], k1[256], k2[256];
    size_t nl, l1, l2;

    (void)state;
    assert_int_equal(cache_vary_names(resp, 2, names, sizeof(names), &nl), 0);
    assert_string_equal(names, "accept-encoding\naccept-language\nx-a\n");
    assert_int_equal(nl, strlen(names));
    assert_int_equal(cache_vary_key(names, nl, req1, 3, k1, sizeof(k1), &l1), 0);
    assert_string_equal(k1, "accept-encoding: gzip,br\naccept-language\nx-a: 1,2\n");
    /* same values, other order/case of names: same key */
    assert_int_equal(cache_vary_key(names, nl, req2, 3, k2, sizeof(k2), &l2), 0);
    assert_string_equal(k1, k2);
    /* the Vary value itself is accepted too */
    assert_int_equal(
        cache_vary_key("X-A, Accept-Encoding, accept-language", 37, req1, 3, k2, sizeof(k2), &l2),
        0);
    assert_string_equal(k1, k2);
    assert_int_equal(cache_vary_names(star, 1, names, sizeof(names), &nl), CACHE_EINVAL);
    assert_int_equal(cache_vary_key("*", 1, req1, 3, k2, sizeof(k2), &l2), CACHE_EINVAL);
    assert_int_equal(cache_vary_key("x-a", 3, req1, 3, k2, 9, &l2), CACHE_ETOOBIG);
    assert_int_equal(cache_vary_key("x-a", 3, req1, 3, k2, 10, &l2), 0);
    assert_int_equal(cache_vary_key("", 0, req1, 3, k2, sizeof(k2), &l2), 0);
    assert_int_equal(l2, 0);
}

/* RFC 9111 4.1: what a secondary key treats as the same request value */
static void
test_vary_normalised(void **state)
{
    static const struct {
        const char *vary;
        struct cache_hdr a[2], b[2];
        size_t na, nb;
        bool same;
    } t[] = {
        /* lines combined, whitespace around commas and at the ends */
        {"Foo", {{"Foo", 3, "1, 2", 4}}, {{"Foo", 3, "1", 1}, {"foo", 3, "2", 1}}, 1, 2, true},
        {"Foo", {{"Foo", 3, "1,2", 3}}, {{"Foo", 3, " 1, 2 ", 6}}, 1, 1, true},
        {"Foo", {{"Foo", 3, "a  b", 4}}, {{"Foo", 3, "a\tb", 3}}, 1, 1, true},
        {"Foo", {{"Foo", 3, "ab", 2}}, {{"Foo", 3, "a b", 3}}, 1, 1, false},
        {"Foo", {{"Foo", 3, "A", 1}}, {{"Foo", 3, "a", 1}}, 1, 1, false},
        /* quoted strings are kept as sent */
        {"Foo", {{"Foo", 3, "\"a, b\"", 6}}, {{"Foo", 3, "\"a,b\"", 5}}, 1, 1, false},
        {"Foo", {{"Foo", 3, "\"a\\\" ,b\"", 8}}, {{"Foo", 3, "\"a\\\",b\"", 7}}, 1, 1, false},
        /* language ranges and codings compare without case */
        {"Accept-Language",
         {{"Accept-Language", 15, "en, de", 6}},
         {{"accept-language", 15, " eN ,   De", 10}},
         1,
         1,
         true},
        {"Accept-Encoding",
         {{"Accept-Encoding", 15, "GZIP", 4}},
         {{"Accept-Encoding", 15, "gzip", 4}},
         1,
         1,
         true},
        {"Accept-Language",
         {{"Accept-Language", 15, "en, de", 6}},
         {{"Accept-Language", 15, "de, en", 6}},
         1,
         1,
         false},
        /* absent and empty are not the same */
        {"Foo", {{"Foo", 3, "", 0}}, {{"Bar", 3, "", 0}}, 1, 1, false},
        {"Foo", {{"Bar", 3, "1", 1}}, {{"Baz", 3, "2", 1}}, 1, 1, true},
    };
    char k1[256], k2[256];
    size_t l1, l2, i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        assert_int_equal(
            cache_vary_key(t[i].vary, strlen(t[i].vary), t[i].a, t[i].na, k1, sizeof(k1), &l1), 0);
        assert_int_equal(
            cache_vary_key(t[i].vary, strlen(t[i].vary), t[i].b, t[i].nb, k2, sizeof(k2), &l2), 0);
        if ((l1 == l2 && memcmp(k1, k2, l1) == 0) != t[i].same)
            fail_msg("#%zu: [%s] [%s] same=%d", i, k1, k2, t[i].same);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_key),
        cmocka_unit_test(test_query_options),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_vary),
        cmocka_unit_test(test_vary_normalised),
        cmocka_unit_test(test_control_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
