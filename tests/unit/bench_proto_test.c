/*
 * edge-bench's protocol pieces that need no server: -H fields turned into HTTP/2 fields, the
 * h2c probe's reading of the server's first bytes, the HTTP/2 path draw against the HTTP/1.1
 * head (same seed, same requests), https targets, the protocol flags, and result merging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "bench/internal.h"

/* ---- bench_h2_fields ---------------------------------------------------------------------- */

static void
expect_field(const struct bench_field *f, const char *name, const char *value)
{
    if (f->namelen != strlen(name) || memcmp(f->name, name, f->namelen) != 0 ||
        f->valuelen != strlen(value) || memcmp(f->value, value, f->valuelen) != 0)
        fail_msg("field '%.*s: %.*s', expected '%s: %s'", (int)f->namelen, f->name,
                 (int)f->valuelen, f->value, name, value);
}

static void
test_h2_fields(void **state)
{
    (void)state;
    const char *text = "X-Test: one\r\n"
                       "Accept-Encoding:gzip, br \r\n"
                       "Connection: close\r\n"
                       "Keep-Alive: 5\r\n"
                       "Proxy-Connection: x\r\n"
                       "Transfer-Encoding: chunked\r\n"
                       "Upgrade: websocket\r\n"
                       "TE: gzip\r\n"
                       "te: Trailers\r\n"
                       "Host: a.example\r\n"
                       "\r\n"
                       "HOST:  b.example:8443\t\r\n"
                       "Cookie: k=v; l=w\n"
                       "X-Empty:";
    char names[256];
    struct bench_field f[8];
    struct bench_field host = {NULL, 0, NULL, 0};

    int n = bench_h2_fields(text, strlen(text), names, sizeof(names), f, 8, &host);
    assert_int_equal(n, 5);
    expect_field(&f[0], "x-test", "one");
    expect_field(&f[1], "accept-encoding", "gzip, br");
    expect_field(&f[2], "te", "Trailers");
    expect_field(&f[3], "cookie", "k=v; l=w");
    expect_field(&f[4], "x-empty", "");
    expect_field(&host, "host", "b.example:8443"); /* the last Host wins */

    /* nothing at all */
    host = (struct bench_field){NULL, 0, NULL, 0};
    assert_int_equal(bench_h2_fields("", 0, names, sizeof(names), f, 8, &host), 0);
    assert_null(host.value);
}

static void
test_h2_fields_limits(void **state)
{
    (void)state;
    char names[8];
    struct bench_field f[2];
    struct bench_field host = {NULL, 0, NULL, 0};
    const char *three = "A: 1\r\nB: 2\r\nC: 3\r\n";

    assert_int_equal(bench_h2_fields(three, strlen(three), names, sizeof(names), f, 2, &host), -1);
    const char *longname = "Very-Long-Name: v\r\n"; /* 14 > 8 bytes of names */
    assert_int_equal(
        bench_h2_fields(longname, strlen(longname), names, sizeof(names), f, 2, &host), -1);
    const char *nocolon = "Broken\r\n";
    assert_int_equal(bench_h2_fields(nocolon, strlen(nocolon), names, sizeof(names), f, 2, &host),
                     -1);
    const char *noname = ": v\r\n";
    assert_int_equal(bench_h2_fields(noname, strlen(noname), names, sizeof(names), f, 2, &host),
                     -1);
    /* dropped fields take no room */
    const char *dropped = "Connection: close\r\nUpgrade: h2c\r\nA: 1\r\n";
    assert_int_equal(bench_h2_fields(dropped, strlen(dropped), names, 1, f, 1, &host), 1);
    expect_field(&f[0], "a", "1");
}

/* ---- bench_h2c_reply_check ----------------------------------------------------------------- */

static void
test_h2c_reply(void **state)
{
    (void)state;
    char err[200];
    /* SETTINGS, empty and with one setting (MAX_CONCURRENT_STREAMS = 100) */
    static const unsigned char empty[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    static const unsigned char one[] = {0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100};
    assert_int_equal(bench_h2c_reply_check(empty, sizeof(empty), err, sizeof(err)), 0);
    assert_int_equal(bench_h2c_reply_check(one, sizeof(one), err, sizeof(err)), 0);

    static const char h1[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(bench_h2c_reply_check((const unsigned char *)h1, sizeof(h1) - 1, err,
                                           sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "\"HTTP/1.1 400 Bad Request\""));
    assert_null(strchr(err, '\r'));

    assert_int_equal(bench_h2c_reply_check(empty, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "closed"));
    assert_int_equal(bench_h2c_reply_check(empty, 5, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "5 bytes"));

    static const unsigned char ack[] = {0, 0, 0, 4, 1, 0, 0, 0, 0};
    static const unsigned char goaway[] = {0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char stream1[] = {0, 0, 0, 4, 0, 0, 0, 0, 1};
    static const unsigned char oddlen[] = {0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5};
    static const unsigned char tls_alert[] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46, 0, 0};
    assert_int_equal(bench_h2c_reply_check(ack, sizeof(ack), err, sizeof(err)), -1);
    assert_int_equal(bench_h2c_reply_check(goaway, sizeof(goaway), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "type 7"));
    assert_int_equal(bench_h2c_reply_check(stream1, sizeof(stream1), err, sizeof(err)), -1);
    assert_int_equal(bench_h2c_reply_check(oddlen, sizeof(oddlen), err, sizeof(err)), -1);
    assert_int_equal(bench_h2c_reply_check(tls_alert, sizeof(tls_alert), err, sizeof(err)), -1);
}

/* ---- request draws: HTTP/2 :path and the HTTP/1.1 head agree ----------------------------- */

static void
test_request_target_matches_head(void **state)
{
    (void)state;
    struct bench_workload w;
    struct bench_target t;
    struct bench_rng r1, r2;
    char err[200], head[BENCH_REQ_CAP], path[BENCH_REQ_CAP];

    memset(&w, 0, sizeof(w));
    assert_int_equal(bench_target_parse(&t, "https://h.example/", err, sizeof(err)), 0);
    assert_int_equal(bench_mix_parse(&w.mix, "GET:3,HEAD:1,POST:1", err, sizeof(err)), 0);
    assert_int_equal(bench_workload_set_template(&w, "/o?k=%d&x=1", err, sizeof(err)), 0);
    w.zipf = bench_zipf_new(1000, 1.1);
    assert_non_null(w.zipf);
    w.kind = BENCH_SRC_ZIPF;
    w.body_size = 10;
    bench_rng_seed(&r1, 42);
    bench_rng_seed(&r2, 42);
    for (int i = 0; i < 2000; i++) {
        enum bench_method m1, m2;
        size_t hl = bench_request_build(&w, &t, &r1, head, sizeof(head), &m1);
        size_t pl = bench_request_target(&w, &r2, path, sizeof(path), &m2);
        assert_true(hl > 0 && pl > 0);
        assert_int_equal(m1, m2);
        /* "METHOD SP path SP HTTP/1.1" */
        size_t ml = strlen(bench_method_name(m1));
        assert_memory_equal(head + ml + 1, path, pl);
        assert_int_equal(head[ml + 1 + pl], ' ');
    }
    /* never truncated */
    enum bench_method m;
    assert_int_equal(bench_request_target(&w, &r2, path, 4, &m), 0);
    bench_workload_fini(&w);
}

static void
test_https_target(void **state)
{
    (void)state;
    struct bench_target t;
    char err[200];
    assert_int_equal(bench_target_parse(&t, "https://localhost/x", err, sizeof(err)), 0);
    assert_int_equal(t.scheme, BENCH_HTTPS);
    assert_string_equal(t.port, "443");
    assert_string_equal(t.hostport, "localhost");
    assert_string_equal(t.base, "https://localhost:443");
    assert_int_equal(bench_target_parse(&t, "HTTPS://[::1]:8443", err, sizeof(err)), 0);
    assert_string_equal(t.host, "::1");
    assert_string_equal(t.hostport, "[::1]:8443");
}

/* ---- flags ------------------------------------------------------------------------------------ */

static int
parse(struct bench_opts *o, char *err, size_t errlen, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    argv[argc++] = "edge-bench";
    va_start(ap, errlen);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return bench_opts_parse(o, argc, argv, err, errlen);
}

static void
test_protocol_flags(void **state)
{
    (void)state;
    struct bench_opts o;
    char err[300];

    assert_int_equal(parse(&o, err, sizeof(err), "https://h/", NULL), 0);
    assert_int_equal(o.cfg.proto, BENCH_PROTO_H1);
    assert_int_equal(o.cfg.streams, 1);
    assert_false(o.cfg.insecure);
    assert_false(o.cfg.new_conn);
    assert_null(o.cfg.cacert);

    assert_int_equal(parse(&o, err, sizeof(err), "--h2", "--streams", "16", "--cacert",
                           "/tmp/ca.pem", "--new-conn", "https://h/", NULL),
                     0);
    assert_int_equal(o.cfg.proto, BENCH_PROTO_H2);
    assert_int_equal(o.cfg.streams, 16);
    assert_string_equal(o.cfg.cacert, "/tmp/ca.pem");
    assert_true(o.cfg.new_conn);

    assert_int_equal(parse(&o, err, sizeof(err), "--h2c", "--streams=4", "-k", "http://h/",
                           NULL),
                     0);
    assert_int_equal(o.cfg.proto, BENCH_PROTO_H2C);
    assert_int_equal(o.cfg.streams, 4);
    assert_true(o.cfg.insecure);

    assert_int_equal(parse(&o, err, sizeof(err), "--h2", "--h2c", "https://h/", NULL), -1);
    assert_non_null(strstr(err, "exclude"));
    assert_int_equal(parse(&o, err, sizeof(err), "--streams", "2", "http://h/", NULL), -1);
    assert_non_null(strstr(err, "--streams needs --h2 or --h2c"));
    assert_int_equal(parse(&o, err, sizeof(err), "--h2", "--streams", "0", "https://h/", NULL),
                     -1);
    assert_int_equal(parse(&o, err, sizeof(err), "--h2", "--streams", "1001", "https://h/", NULL),
                     -1);
    assert_int_equal(parse(&o, err, sizeof(err), "-k", "--cacert", "x", "https://h/", NULL), -1);
    assert_int_equal(parse(&o, err, sizeof(err), "--h2=yes", "https://h/", NULL), -1);
    assert_non_null(strstr(err, "takes no value"));
    assert_int_equal(parse(&o, err, sizeof(err), "--cacert", NULL), -1);
    assert_non_null(strstr(err, "needs a value"));
}

/* ---- results ---------------------------------------------------------------------------------- */

static void
test_result_merge(void **state)
{
    (void)state;
    struct bench_result *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    bench_result_init(a);
    bench_result_init(b);
    snprintf(a->protocol, sizeof(a->protocol), "h2");
    snprintf(a->tls_version, sizeof(a->tls_version), "TLSv1.3");
    b->tls_handshakes = 5;
    b->tls_resumed = 4;
    b->errors[BENCH_ERR_TLS] = 2;
    bench_result_merge(a, b);
    bench_result_merge(a, b);
    assert_string_equal(a->protocol, "h2");
    assert_string_equal(a->tls_version, "TLSv1.3");
    assert_int_equal(a->tls_handshakes, 10);
    assert_int_equal(a->tls_resumed, 8);
    assert_int_equal(bench_result_failures(a), 4);
    assert_string_equal(bench_err_name(BENCH_ERR_TLS), "tls");

    struct bench_result *c = malloc(sizeof(*c));
    assert_non_null(c);
    bench_result_init(c);
    bench_result_merge(c, a); /* an empty total takes the protocol of its first part */
    assert_string_equal(c->protocol, "h2");
    free(a);
    free(b);
    free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h2_fields),
        cmocka_unit_test(test_h2_fields_limits),
        cmocka_unit_test(test_h2c_reply),
        cmocka_unit_test(test_request_target_matches_head),
        cmocka_unit_test(test_https_target),
        cmocka_unit_test(test_protocol_flags),
        cmocka_unit_test(test_result_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
