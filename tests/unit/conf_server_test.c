/*
 * Unit tests of the 'server' directive of an origin (conf/core.c):
 * HOST:PORT, http://HOST[:PORT] and https://HOST[:PORT] (default ports,
 * IP literals, a trailing '/'), and the exact error messages: unknown
 * schemes, paths, ports, and origins that mix https:// and plain servers.
 * The TLS settings of an origin (tls on, tls_ca, ...) belong to the tls
 * module: tests/unit/tls_origin_test.c.
 */
#include "conf/conf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static struct conf *
load(const char *text)
{
    struct conf_err err = {{0}};
    struct conf *c = conf_load_string("edge.conf", text, strlen(text), &err);

    if (c == NULL)
        fail_msg("conf refused: %s\n--- conf:\n%s", err.msg, text);
    return c;
}

static const char *
load_err(const char *text)
{
    static struct conf_err err;
    struct conf *c;

    memset(&err, 0, sizeof(err));
    c = conf_load_string("edge.conf", text, strlen(text), &err);
    if (c != NULL) {
        conf_unref(c);
        fail_msg("conf accepted, expected an error:\n%s", text);
    }
    return err.msg;
}

/* The one server of "origin app { server ARG; }". */
static void
check_server(const char *arg, const char *host, unsigned port, bool is_ip, enum conf_scheme scheme)
{
    char text[512];
    struct conf *c;
    const struct conf_server *s;

    snprintf(text, sizeof(text), "origin app { server %s; }\n", arg);
    c = load(text);
    assert_int_equal(c->norigins, 1);
    assert_int_equal(c->origins[0].nservers, 1);
    s = &c->origins[0].servers[0];
    if (strcmp(s->host, host) != 0 || s->port != port || s->is_ip != is_ip || s->scheme != scheme)
        fail_msg("server %s: got host '%s' port %u is_ip %d scheme %d", arg, s->host,
                 (unsigned)s->port, s->is_ip, (int)s->scheme);
    conf_unref(c);
}

static void
test_server_forms(void **state)
{
    (void)state;
    check_server("app.internal:9000", "app.internal", 9000, false, CONF_SCHEME_NONE);
    check_server("https://app.internal:8443", "app.internal", 8443, false, CONF_SCHEME_HTTPS);
    check_server("https://app.internal", "app.internal", 443, false, CONF_SCHEME_HTTPS);
    check_server("https://app.internal/", "app.internal", 443, false, CONF_SCHEME_HTTPS);
    check_server("HTTPS://App.Internal:444/", "App.Internal", 444, false, CONF_SCHEME_HTTPS);
    check_server("https://app.internal.", "app.internal.", 443, false, CONF_SCHEME_HTTPS);
    check_server("https://127.0.0.1:8443", "127.0.0.1", 8443, true, CONF_SCHEME_HTTPS);
    check_server("https://127.0.0.1", "127.0.0.1", 443, true, CONF_SCHEME_HTTPS);
    check_server("https://[::1]:8443", "::1", 8443, true, CONF_SCHEME_HTTPS);
    check_server("https://[::1]", "::1", 443, true, CONF_SCHEME_HTTPS);
    check_server("https://[::1]/", "::1", 443, true, CONF_SCHEME_HTTPS);
    check_server("http://app.internal", "app.internal", 80, false, CONF_SCHEME_HTTP);
    check_server("http://app.internal:8080/", "app.internal", 8080, false, CONF_SCHEME_HTTP);
    check_server("http://[::1]", "::1", 80, true, CONF_SCHEME_HTTP);
}

static void
test_server_options_and_servers(void **state)
{
    struct conf *c;
    const struct conf_origin *o;
    (void)state;

    c = load("origin app {\n"
             "  server https://a.internal weight=3;\n"
             "  server https://b.internal:8443 backup;\n"
             "}\n"
             "origin plain {\n"
             "  server a.internal:80;\n"
             "  server http://b.internal;\n"
             "}\n");
    o = conf_origin_find(c, "app", 3);
    assert_non_null(o);
    assert_int_equal(o->nservers, 2);
    assert_int_equal(o->servers[0].weight, 3);
    assert_int_equal(o->servers[0].port, 443);
    assert_true(o->servers[1].backup);
    assert_int_equal(o->servers[1].scheme, CONF_SCHEME_HTTPS);
    /* HOST:PORT and http:// are both plain: not mixed */
    o = conf_origin_find(c, "plain", 5);
    assert_non_null(o);
    assert_int_equal(o->servers[0].scheme, CONF_SCHEME_NONE);
    assert_int_equal(o->servers[1].scheme, CONF_SCHEME_HTTP);
    assert_int_equal(o->servers[1].port, 80);
    conf_unref(c);
}

static const struct {
    const char *text;
    const char *msg;
} error_cases[] = {
    {"origin app { server ftp://a.internal; }",
     "edge.conf:1:21: 'server': unknown scheme in 'ftp://a.internal' (expected http:// or "
     "https://)"},
    {"origin app { server ://a.internal; }",
     "edge.conf:1:21: 'server': unknown scheme in '://a.internal' (expected http:// or https://)"},
    {"origin app { server https://a.internal/api; }",
     "edge.conf:1:21: 'server': 'https://a.internal/api' has a path (expected "
     "https://HOST[:PORT]: requests keep their own path)"},
    {"origin app { server http://a.internal//; }",
     "edge.conf:1:21: 'server': 'http://a.internal//' has a path (expected http://HOST[:PORT]: "
     "requests keep their own path)"},
    {"origin app { server https://; }", "edge.conf:1:21: 'server': '' is not a valid host name"},
    {"origin app { server https://a_b.internal; }",
     "edge.conf:1:21: 'server': 'a_b.internal' is not a valid host name"},
    {"origin app { server https://user@a.internal; }",
     "edge.conf:1:21: 'server': 'user@a.internal' is not a valid host name"},
    {"origin app { server https://a.internal:; }",
     "edge.conf:1:21: 'server' port must be from 1 to 65535 in 'https://a.internal:'"},
    {"origin app { server https://a.internal:0; }",
     "edge.conf:1:21: 'server' port must be from 1 to 65535 in 'https://a.internal:0'"},
    {"origin app { server https://a.internal:https; }",
     "edge.conf:1:21: 'server' port must be from 1 to 65535 in 'https://a.internal:https'"},
    {"origin app { server https://::1; }",
     "edge.conf:1:21: 'server': write IPv6 addresses in brackets, as [::1]:9000, not "
     "'https://::1'"},
    {"origin app { server https://[::1]x; }",
     "edge.conf:1:21: 'server' expects HOST:PORT, not 'https://[::1]x'"},
    {"origin app { server https://[zz]; }",
     "edge.conf:1:21: 'server': 'zz' is not a valid IPv6 address"},
    {"origin app { server [::1]; }", "edge.conf:1:21: 'server' expects HOST:PORT, not '[::1]'"},
    {"origin app { server a.internal; }",
     "edge.conf:1:21: 'server' expects HOST:PORT (the port is required), not 'a.internal'"},
    {"origin app { server https://a.internal heavy; }",
     "edge.conf:1:40: 'server': unknown option 'heavy' (expected weight=N or backup)"},
    /* one origin, one scheme */
    {"origin app {\n  server https://a.internal;\n  server b.internal:80;\n}",
     "edge.conf:3:10: origin 'app' mixes https:// and plain servers (the server at "
     "edge.conf:2:3 is https://, this one is plain): an origin speaks TLS to all its servers or "
     "to none"},
    {"origin app {\n  server http://a.internal;\n  server https://b.internal backup;\n}",
     "edge.conf:3:10: origin 'app' mixes https:// and plain servers (the server at "
     "edge.conf:2:3 is plain, this one is https://): an origin speaks TLS to all its servers or "
     "to none"},
    {"origin app { server b.internal:80; server c.internal:80; server https://a.internal; }",
     "edge.conf:1:65: origin 'app' mixes https:// and plain servers (the server at "
     "edge.conf:1:14 is plain, this one is https://): an origin speaks TLS to all its servers or "
     "to none"},
    {"origin app { server https://a.internal backup; }",
     "edge.conf:1:1: origin 'app' has only backup servers"},
};

static void
test_server_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const char *got = load_err(error_cases[i].text);
        if (strcmp(got, error_cases[i].msg) != 0)
            fail_msg("case %zu:\n  conf: %s\n  want: %s\n  got:  %s", i, error_cases[i].text,
                     error_cases[i].msg, got);
    }
}

/* Without the tls module registered, its origin directives do not exist:
 * the core alone knows nothing of TLS settings. */
static void
test_tls_directives_belong_to_the_tls_module(void **state)
{
    (void)state;
    assert_string_equal(load_err("origin app { server https://a.internal; tls_ca x.pem; }"),
                        "edge.conf:1:41: unknown directive 'tls_ca'");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_forms),
        cmocka_unit_test(test_server_options_and_servers),
        cmocka_unit_test(test_server_errors),
        cmocka_unit_test(test_tls_directives_belong_to_the_tls_module),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
