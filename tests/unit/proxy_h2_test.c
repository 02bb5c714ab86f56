/*
 * Unit tests of proxy/h2msg.c: the h2c preface, h2 fields -> the request
 * head (limits, smuggling guards, Host, cookies, methods), which response
 * fields HTTP/2 carries, and the reset-rate window.
 */
#include "proxy/h2.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------------------- */

static struct proxy_h2_req q;
static struct proxy_head head;

/* A fresh request on a head of max_header_size 4096, max_headers 20,
 * max_uri_length 1024. */
static int
setup(void **state)
{
    (void)state;
    if (proxy_head_init_grow(&head, 64, 4096, 20) < 0)
        return -1;
    return proxy_h2_req_init(&q, &head, 1024);
}

static int
teardown(void **state)
{
    (void)state;
    proxy_h2_req_fini(&q);
    proxy_head_fini(&head);
    return 0;
}

static void
again(void)
{
    proxy_head_reset(&head);
    proxy_h2_req_reset(&q, &head, 1024);
}

static int
field(const char *name, const char *value)
{
    return proxy_h2_req_field(&q, name, strlen(name), value, strlen(value));
}

/* The head as the pipeline sees it, written like an HTTP/1.1 head:
 * "<target>\n" then "name: value\n" per field (static buffer). */
static const char *
text(void)
{
    static char buf[16384];
    struct proxy_hdr h;
    size_t n =
        (size_t)snprintf(buf, sizeof(buf), "%.*s\n", (int)head.url_len, head.buf + head.url_off);

    for (size_t i = 0; proxy_head_get(&head, i, &h); i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%.*s: %.*s\n", (int)h.nlen, h.name,
                              (int)h.vlen, h.value);
    return buf;
}

static void
get_fields(void)
{
    assert_int_equal(field(":method", "GET"), 0);
    assert_int_equal(field(":scheme", "http"), 0);
    assert_int_equal(field(":authority", "example.com:8080"), 0);
    assert_int_equal(field(":path", "/a/b?c=d"), 0);
}

/* ---- preface ---------------------------------------------------------------------------- */

static void
test_preface(void **state)
{
    static const char pri[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04";
    (void)state;
    assert_int_equal(proxy_h2_preface(pri, 24), 1);
    assert_int_equal(proxy_h2_preface(pri, sizeof(pri) - 1), 1);
    assert_int_equal(proxy_h2_preface(pri, 1), 0);
    assert_int_equal(proxy_h2_preface(pri, 23), 0);
    assert_int_equal(proxy_h2_preface("POST / HTTP/1.1\r\n", 17), -1);
    assert_int_equal(proxy_h2_preface("PRI * HTTP/1.1\r\n\r\n", 18), -1);
    assert_int_equal(proxy_h2_preface("GET", 3), -1);
    assert_int_equal(proxy_h2_preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r", 23), 0);
    assert_int_equal(proxy_h2_preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\rX", 24), -1);
}

/* ---- request heads -------------------------------------------------------------------------- */

static void
test_req_get(void **state)
{
    (void)state;
    get_fields();
    assert_int_equal(field("user-agent", "t/1"), 0);
    assert_int_equal(field("host", "ignored.example"), 0); /* :authority wins */
    assert_int_equal(field("te", "trailers"), 0);          /* dropped */
    assert_int_equal(field("accept", "*/*"), 0);
    assert_int_equal(proxy_h2_req_finish(&q), 0);
    assert_string_equal(text(), "/a/b?c=d\n"
                                "host: example.com:8080\n"
                                "user-agent: t/1\n"
                                "accept: */*\n");
    assert_int_equal(q.method, HTTP_GET);
    assert_int_equal(q.content_length, -1);
}

static void
test_req_host_without_authority_and_cookies(void **state)
{
    (void)state;
    assert_int_equal(field(":method", "HEAD"), 0);
    assert_int_equal(field(":scheme", "http"), 0);
    assert_int_equal(field(":path", "/"), 0);
    assert_int_equal(field("cookie", "a=1"), 0);
    assert_int_equal(field("host", "h.example"), 0);
    assert_int_equal(field("cookie", "b=2"), 0);
    assert_int_equal(field("cookie", "c=3"), 0);
    assert_int_equal(proxy_h2_req_finish(&q), 0);
    assert_string_equal(text(), "/\n"
                                "host: h.example\n"
                                "cookie: a=1; b=2; c=3\n");
    assert_int_equal(q.method, HTTP_HEAD);
}

static void
test_req_bodies(void **state)
{
    (void)state;
    /* Expect is dropped: the body streams at once, nobody waits for a 100 */
    assert_int_equal(field(":method", "POST"), 0);
    assert_int_equal(field(":path", "/up"), 0);
    assert_int_equal(field(":authority", "x"), 0);
    assert_int_equal(field("expect", "100-continue"), 0);
    assert_int_equal(proxy_h2_req_finish(&q), 0);
    assert_string_equal(text(), "/up\nhost: x\n");
    assert_int_equal(q.content_length, -1);

    /* content-length: passed on, once */
    again();
    assert_int_equal(field(":method", "PUT"), 0);
    assert_int_equal(field(":path", "/up"), 0);
    assert_int_equal(field(":authority", "x"), 0);
    assert_int_equal(field("content-length", "5"), 0);
    assert_int_equal(field("content-length", "5"), 0); /* the same twice: once */
    assert_int_equal(proxy_h2_req_finish(&q), 0);
    assert_int_equal(q.content_length, 5);
    assert_int_equal(q.method, HTTP_PUT);
    assert_string_equal(text(), "/up\nhost: x\ncontent-length: 5\n");
}

static void
test_req_connect(void **state)
{
    (void)state;
    /* CONNECT has no :path: its target is :authority (the pipeline answers 405) */
    assert_int_equal(field(":method", "CONNECT"), 0);
    assert_int_equal(field(":authority", "db.internal:5432"), 0);
    assert_int_equal(proxy_h2_req_finish(&q), 0);
    assert_string_equal(text(), "db.internal:5432\nhost: db.internal:5432\n");
    assert_int_equal(q.method, HTTP_CONNECT);
}

static void
test_methods(void **state)
{
    (void)state;
    assert_int_equal(proxy_h2_method("GET", 3), HTTP_GET);
    assert_int_equal(proxy_h2_method("DELETE", 6), HTTP_DELETE);
    assert_int_equal(proxy_h2_method("M-SEARCH", 8), HTTP_MSEARCH);
    assert_int_equal(proxy_h2_method("PATCH", 5), HTTP_PATCH);
    assert_int_equal(proxy_h2_method("get", 3), -1);      /* methods are case-sensitive */
    assert_int_equal(proxy_h2_method("PRI", 3), -1);      /* the preface's, not a request's */
    assert_int_equal(proxy_h2_method("DESCRIBE", 8), -1); /* RTSP */
    assert_int_equal(proxy_h2_method("BREW", 4), -1);
}

/* Each case: fields in order (pseudo first), then the status refused. */
static const struct {
    const char *f[8][2];
    int status;
} refusals[] = {
    /* what would split or smuggle an HTTP/1.1 head */
    {{{":method", "GET"}, {":path", "/a b"}}, 400},
    {{{":method", "GET"}, {":path", "/a\r\nX: y"}}, 400},
    {{{":method", "G ET"}, {":path", "/"}}, 400},
    {{{":method", "GET\r\n"}, {":path", "/"}}, 400},
    {{{":method", "GET"}, {":path", "/"}, {"x-a", "1\r\nX-Injected: 1"}}, 400},
    {{{":method", "GET"}, {":path", "/"}, {"x-a", "a\nb"}}, 400},
    {{{":method", "GET"}, {":path", "/"}, {"x-a", "a\0b"}}, 0}, /* (strlen stops at the NUL) */
    {{{":method", "GET"}, {":path", "/"}, {"x a", "1"}}, 400},
    {{{":method", "GET"}, {":path", "/"}, {"x:a", "1"}}, 400},
    {{{":method", "GET"}, {":authority", "a b"}, {":path", "/"}}, 400},
    {{{":method", "GET"}, {":authority", "a\r\nb"}, {":path", "/"}}, 400},
    /* bad pseudo fields, methods llhttp would not take */
    {{{":method", "GET"}, {":path", ""}}, 400},
    {{{":method", "GET"}, {":protocol", "websocket"}, {":path", "/"}}, 400},
    {{{":method", "GET"}, {":path", "/"}, {":path", "/again"}}, 400},
    {{{":method", "AVERYLONGMETHODNAMETHATISTOOLONG"}, {":path", "/"}}, 400},
    {{{":method", "BREW"}, {":path", "/"}}, 400},
    {{{":path", "/"}}, 400},
    {{{":method", "GET"}}, 400},
    /* content-length */
    {{{":method", "POST"}, {":path", "/"}, {"content-length", "1x"}}, 400},
    {{{":method", "POST"}, {":path", "/"}, {"content-length", "5"}, {"content-length", "6"}}, 400},
    {{{":method", "POST"}, {":path", "/"}, {"content-length", ""}}, 400},
};

static void
test_req_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        int rc = 0;
        again();
        for (size_t j = 0; j < 8 && refusals[i].f[j][0] != NULL && rc == 0; j++)
            rc = field(refusals[i].f[j][0], refusals[i].f[j][1]);
        if (rc == 0)
            rc = proxy_h2_req_finish(&q);
        if (rc != refusals[i].status)
            fail_msg("case %zu: got %d, expected %d", i, rc, refusals[i].status);
        if (rc == 0)
            continue;
        /* once refused, the rest is ignored */
        assert_int_equal(field("x-later", "1"), refusals[i].status);
        assert_int_equal(proxy_h2_req_finish(&q), refusals[i].status);
    }
    /* a NUL inside a value (strlen above cannot say it) */
    again();
    assert_int_equal(field(":method", "GET"), 0);
    assert_int_equal(field(":path", "/"), 0);
    assert_int_equal(proxy_h2_req_field(&q, "x-a", 3, "a\0b", 3), 400);
}

static void
test_req_limits(void **state)
{
    char big[1100];
    (void)state;

    /* :path over max_uri_length: 414 */
    memset(big, 'a', sizeof(big));
    big[0] = '/';
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(field(":method", "GET"), 0);
    assert_int_equal(field(":path", big), 414);

    /* the head over max_header_size: 431 (target + names + values, as head.c counts) */
    again();
    get_fields();
    big[1000] = '\0';
    assert_int_equal(field("x-1", big), 0);
    assert_int_equal(field("x-2", big), 0);
    assert_int_equal(field("x-3", big), 0);
    assert_int_equal(field("x-4", big), 0);   /* 8 + 4 + 16 + 4 * 1003 = 4040 */
    assert_int_equal(field("x-5", big), 431); /* 5043 > 4096 */

    /* a crumb at a time, too */
    again();
    get_fields();
    big[500] = '\0';
    int rc = 0;
    for (int i = 0; i < 10 && rc == 0; i++)
        rc = field("cookie", big);
    assert_int_equal(rc, 431);

    /* more fields than max_headers (Host and the joined Cookie count) */
    again();
    get_fields();
    for (int i = 0; i < 19; i++) {
        char name[16];
        snprintf(name, sizeof(name), "x-%d", i);
        assert_int_equal(field(name, "v"), 0);
    }
    assert_int_equal(proxy_h2_req_finish(&q), 0); /* 19 + Host = 20 */
    again();
    get_fields();
    for (int i = 0; i < 19; i++) {
        char name[16];
        snprintf(name, sizeof(name), "x-%d", i);
        assert_int_equal(field(name, "v"), 0);
    }
    assert_int_equal(field("cookie", "a=1"), 0);
    assert_int_equal(proxy_h2_req_finish(&q), 431); /* + Cookie */
}

/* ---- response fields ---------------------------------------------------------------------- */

static void
test_resp_fields(void **state)
{
    static const char *const no[] = {
        "Connection",       "connection",        "Keep-Alive",         "TE", "Trailer", "Upgrade",
        "Proxy-Connection", "transfer-encoding", "Proxy-Authorization"};
    static const char *const yes[] = {"Content-Type", "Set-Cookie", "Cache-Status",   "Via",
                                      "X-Hop",        "te-x",       "Content-Length", "Age"};
    (void)state;

    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (proxy_h2_resp_field_ok(no[i], strlen(no[i])))
            fail_msg("%s passes", no[i]);
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!proxy_h2_resp_field_ok(yes[i], strlen(yes[i])))
            fail_msg("%s is dropped", yes[i]);
}

/* ---- the reset window ------------------------------------------------------------------------ */

static void
test_ratelim(void **state)
{
    struct proxy_h2_ratelim rl = {0};
    (void)state;

    /* 3 per 1000 ms: the 4th within the window is over */
    assert_false(proxy_h2_ratelim_over(&rl, 5000, 3, 1000));
    assert_false(proxy_h2_ratelim_over(&rl, 5100, 3, 1000));
    assert_false(proxy_h2_ratelim_over(&rl, 5999, 3, 1000));
    assert_true(proxy_h2_ratelim_over(&rl, 5999, 3, 1000));
    /* a new window starts 1000 ms after the first event of the last one */
    assert_false(proxy_h2_ratelim_over(&rl, 6000, 3, 1000));
    assert_false(proxy_h2_ratelim_over(&rl, 6001, 3, 1000));
    assert_false(proxy_h2_ratelim_over(&rl, 6002, 3, 1000));
    assert_true(proxy_h2_ratelim_over(&rl, 6003, 3, 1000));
    assert_false(proxy_h2_ratelim_over(&rl, 100000, 3, 1000));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preface),
        cmocka_unit_test_setup_teardown(test_req_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_host_without_authority_and_cookies, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_req_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_connect, setup, teardown),
        cmocka_unit_test(test_methods),
        cmocka_unit_test_setup_teardown(test_req_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_limits, setup, teardown),
        cmocka_unit_test(test_resp_fields),
        cmocka_unit_test(test_ratelim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
