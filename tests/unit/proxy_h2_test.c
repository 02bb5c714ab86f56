/*
 * Unit tests of proxy/h2msg.c: the h2c preface, h2 fields -> HTTP/1.1
 * request head (limits, smuggling guards, Host, cookies, framing), the
 * response head -> h2 fields, and the reset-rate window.
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

#include <event2/buffer.h>

/* ---- helpers ---------------------------------------------------------------------------- */

static struct proxy_h2_req q;
static struct evbuffer *out;

static int
setup(void **state)
{
    (void)state;
    out = evbuffer_new();
    return proxy_h2_req_init(&q, 4096, 20, 1024) < 0 || out == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    (void)state;
    proxy_h2_req_fini(&q);
    evbuffer_free(out);
    return 0;
}

static int
field(const char *name, const char *value)
{
    return proxy_h2_req_field(&q, name, strlen(name), value, strlen(value));
}

/* The evbuffer's text (static buffer, NUL-terminated). */
static const char *
text(struct evbuffer *b)
{
    static char buf[16384];
    size_t n = evbuffer_get_length(b);
    assert_true(n < sizeof(buf));
    evbuffer_copyout(b, buf, n);
    buf[n] = '\0';
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
    assert_int_equal(proxy_h2_req_finish(&q, true, out), 0);
    assert_string_equal(text(out), "GET /a/b?c=d HTTP/1.1\r\n"
                                   "Host: example.com:8080\r\n"
                                   "user-agent: t/1\r\n"
                                   "accept: */*\r\n"
                                   "\r\n");
    assert_false(q.chunked);
    assert_false(q.head_method);
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
    assert_int_equal(proxy_h2_req_finish(&q, true, out), 0);
    assert_string_equal(text(out), "HEAD / HTTP/1.1\r\n"
                                   "host: h.example\r\n"
                                   "Cookie: a=1; b=2; c=3\r\n"
                                   "\r\n");
    assert_true(q.head_method);
}

static void
test_req_bodies(void **state)
{
    (void)state;
    /* a body without content-length: chunked */
    assert_int_equal(field(":method", "POST"), 0);
    assert_int_equal(field(":path", "/up"), 0);
    assert_int_equal(field(":authority", "x"), 0);
    assert_int_equal(field("expect", "100-continue"), 0); /* dropped: the body streams at once */
    assert_int_equal(proxy_h2_req_finish(&q, false, out), 0);
    assert_true(q.chunked);
    proxy_h2_req_body(&q, out, "hello", 5);
    proxy_h2_req_body(&q, out, "", 0); /* an empty DATA frame is not the last chunk */
    proxy_h2_req_body(&q, out, "0123456789abcdefX", 17);
    proxy_h2_req_end(&q, out);
    assert_string_equal(text(out), "POST /up HTTP/1.1\r\n"
                                   "Host: x\r\n"
                                   "Transfer-Encoding: chunked\r\n"
                                   "\r\n"
                                   "5\r\nhello\r\n"
                                   "11\r\n0123456789abcdefX\r\n"
                                   "0\r\n\r\n");
    proxy_h2_req_fini(&q);
    evbuffer_drain(out, evbuffer_get_length(out));

    /* with content-length: passed on, the body as is */
    assert_int_equal(proxy_h2_req_init(&q, 4096, 20, 1024), 0);
    assert_int_equal(field(":method", "PUT"), 0);
    assert_int_equal(field(":path", "/up"), 0);
    assert_int_equal(field(":authority", "x"), 0);
    assert_int_equal(field("content-length", "5"), 0);
    assert_int_equal(field("content-length", "5"), 0); /* the same twice: once */
    assert_int_equal(proxy_h2_req_finish(&q, false, out), 0);
    assert_false(q.chunked);
    assert_int_equal(q.content_length, 5);
    proxy_h2_req_body(&q, out, "hello", 5);
    proxy_h2_req_end(&q, out);
    assert_string_equal(text(out), "PUT /up HTTP/1.1\r\n"
                                   "Host: x\r\n"
                                   "content-length: 5\r\n"
                                   "\r\n"
                                   "hello");
}

static void
test_req_connect(void **state)
{
    (void)state;
    /* CONNECT has no :path; the pipeline answers it (405) */
    assert_int_equal(field(":method", "CONNECT"), 0);
    assert_int_equal(field(":authority", "db.internal:5432"), 0);
    assert_int_equal(proxy_h2_req_finish(&q, false, out), 0);
    assert_string_equal(text(out), "CONNECT db.internal:5432 HTTP/1.1\r\n"
                                   "Host: db.internal:5432\r\n"
                                   "Transfer-Encoding: chunked\r\n"
                                   "\r\n");
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
    {{{":method", "GET"}, {":path", "/"}, {"x a", "1"}}, 400},
    {{{":method", "GET"}, {":path", "/"}, {"x:a", "1"}}, 400},
    {{{":method", "GET"}, {":authority", "a b"}, {":path", "/"}}, 400},
    {{{":method", "GET"}, {":authority", "a\r\nb"}, {":path", "/"}}, 400},
    /* bad pseudo fields */
    {{{":method", "GET"}, {":path", ""}}, 400},
    {{{":method", "GET"}, {":protocol", "websocket"}, {":path", "/"}}, 400},
    {{{":method", "GET"}, {":path", "/"}, {":path", "/again"}}, 400},
    {{{":method", "AVERYLONGMETHODNAMETHATISTOOLONG"}, {":path", "/"}}, 400},
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
        proxy_h2_req_fini(&q);
        assert_int_equal(proxy_h2_req_init(&q, 4096, 20, 1024), 0);
        for (size_t j = 0; j < 8 && refusals[i].f[j][0] != NULL && rc == 0; j++)
            rc = field(refusals[i].f[j][0], refusals[i].f[j][1]);
        if (rc == 0)
            rc = proxy_h2_req_finish(&q, true, out);
        if (rc != refusals[i].status)
            fail_msg("case %zu: got %d, expected %d", i, rc, refusals[i].status);
        /* once refused, the rest is ignored and nothing is written */
        assert_int_equal(field("x-later", "1"), refusals[i].status);
        assert_int_equal(proxy_h2_req_finish(&q, true, out), refusals[i].status);
        assert_int_equal(evbuffer_get_length(out), 0);
    }
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
    proxy_h2_req_fini(&q);
    assert_int_equal(proxy_h2_req_init(&q, 4096, 20, 1024), 0);
    get_fields();
    big[1000] = '\0';
    assert_int_equal(field("x-1", big), 0);
    assert_int_equal(field("x-2", big), 0);
    assert_int_equal(field("x-3", big), 0);
    assert_int_equal(field("x-4", big), 0);   /* 8 + 4 + 16 + 4 * 1003 = 4040 */
    assert_int_equal(field("x-5", big), 431); /* 5043 > 4096 */

    /* a crumb at a time, too */
    proxy_h2_req_fini(&q);
    assert_int_equal(proxy_h2_req_init(&q, 4096, 20, 1024), 0);
    get_fields();
    big[500] = '\0';
    int rc = 0;
    for (int i = 0; i < 10 && rc == 0; i++)
        rc = field("cookie", big);
    assert_int_equal(rc, 431);

    /* more fields than max_headers (Host and Transfer-Encoding count) */
    proxy_h2_req_fini(&q);
    assert_int_equal(proxy_h2_req_init(&q, 4096, 20, 1024), 0);
    get_fields();
    for (int i = 0; i < 19; i++) {
        char name[16];
        snprintf(name, sizeof(name), "x-%d", i);
        assert_int_equal(field(name, "v"), 0);
    }
    assert_int_equal(proxy_h2_req_finish(&q, true, out), 0); /* 19 + Host = 20 */
    proxy_h2_req_fini(&q);
    evbuffer_drain(out, evbuffer_get_length(out));
    assert_int_equal(proxy_h2_req_init(&q, 4096, 20, 1024), 0);
    get_fields();
    for (int i = 0; i < 19; i++) {
        char name[16];
        snprintf(name, sizeof(name), "x-%d", i);
        assert_int_equal(field(name, "v"), 0);
    }
    assert_int_equal(proxy_h2_req_finish(&q, false, out), 431); /* + Transfer-Encoding */
    assert_int_equal(evbuffer_get_length(out), 0);
}

/* ---- response heads ---------------------------------------------------------------------- */

static void
test_resp_fields(void **state)
{
    static const char *const h[][2] = {
        {"Content-Type", "text/plain"},
        {"Connection", "close, X-Hop"},
        {"X-Hop", "secret"},
        {"Keep-Alive", "timeout=5"},
        {"Transfer-Encoding", "chunked"},
        {"Set-Cookie", "a=1"},
        {"Set-Cookie", "b=2"},
        {"Upgrade", "h2c"},
        {"Cache-Status", "edge; hit"},
        {"TE", "trailers"},
        {"Trailer", "X-T"},
        {"Via", "1.1 edge"},
    };
    static const char *const want[][2] = {
        {"content-type", "text/plain"}, {"set-cookie", "a=1"}, {"set-cookie", "b=2"},
        {"cache-status", "edge; hit"},  {"via", "1.1 edge"},
    };
    struct proxy_head head;
    struct proxy_hdr f[16];
    size_t n;
    (void)state;

    assert_int_equal(proxy_head_init(&head, 4096, 64), 0);
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
        assert_int_equal(proxy_head_field(&head, h[i][0], strlen(h[i][0])), 0);
        assert_int_equal(proxy_head_value(&head, h[i][1], strlen(h[i][1])), 0);
    }
    n = proxy_h2_resp_fields(&head, f, 16);
    assert_int_equal(n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(f[i].nlen, strlen(want[i][0]));
        assert_memory_equal(f[i].name, want[i][0], f[i].nlen);
        assert_int_equal(f[i].vlen, strlen(want[i][1]));
        assert_memory_equal(f[i].value, want[i][1], f[i].vlen);
    }
    /* capped at the room given */
    assert_int_equal(proxy_h2_resp_fields(&head, f, 2), 2);
    proxy_head_fini(&head);
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
        cmocka_unit_test_setup_teardown(test_req_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_limits, setup, teardown),
        cmocka_unit_test(test_resp_fields),
        cmocka_unit_test(test_ratelim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
