/*
 * Collapsed misses read the leader's response while it is stored: origin-sim
 * drips a body (/resp?drip=), cuts it (cut=) or chunks it (te=chunked); the
 * clients are curl (HTTP/1.1, HTTP/1.0, h2c, HTTPS with h1 and h2) and raw
 * sockets that stop reading. /_stats proves how many requests reached the origin, /metrics
 * what was stored, /proc the engine's memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "origin-sim/origin-sim.h"
#include "tests/integration/edge.h"

static struct h_osim osim;
static struct h_edge edge;
static int tls_port; /* listen tls h2: a self-signed certificate for 127.0.0.1 */

static int
setup(void **state)
{
    char conf[2048], out[4096];
    int port, admin;
    (void)state;
    if (h_osim_start(&osim, NULL) < 0)
        return -1;
    if (h_sh(out, sizeof(out),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
             "srv.key -out srv.crt -days 30 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1") != 0) {
        fprintf(stderr, "certificate generation failed:\n%s\n", out);
        return -1;
    }
    port = h_free_port();
    admin = h_free_port();
    tls_port = h_free_port();
    /* h2 on the listener: HTTP/1.1 and h2c clients share one authority, so one key */
    snprintf(conf, sizeof(conf),
             "workers 2;\nlisten 127.0.0.1:%d h2;\nlisten 127.0.0.1:%d tls h2;\n"
             "admin 127.0.0.1:%d;\naccess_log off;\n"
             "tls_certificate %s/srv.crt %s/srv.key;\n"
             "cache_dir %s/cache max_size=1g mem=8m mem_object=16k;\n"
             "origin app { server 127.0.0.1:%d; retries 0; }\n"
             "site * { route / { origin app; cache on; } }\n",
             port, tls_port, admin, h_tmpdir(), h_tmpdir(), h_tmpdir(), osim.port);
    /* the memory tests read the engine's growth: a small ASan quarantine */
    return h_edge_start_lean(&edge, port, admin, conf);
}

static int
teardown(void **state)
{
    (void)state;
    int a = h_edge_stop(&edge), b = h_osim_stop(&osim);
    return a == 0 && b == 0 ? 0 : -1;
}

static long
origin_requests(void)
{
    return h_stats_int(osim.url, "requests");
}

/* ---- clients in threads ------------------------------------------------------------------- */

struct cl {
    pthread_t t;
    const char *path;
    const char *hdrs[3];
    struct h_opts o;
    const char *method;
    h_body_fn body_fn; /* default cl_body */
    bool tls;          /* https:// to the tls listener (its own key: the scheme) */
    int pause_ms;      /* stop reading this long after the first body byte */
    /* results */
    int rc;
    long status;
    char cs[256];
    double t_start, t_first, t_end; /* ms: request sent, first body byte, done */
    uint64_t bytes;
    long long bad_at; /* first byte that differs from the sequence, -1: none */
};

static int
cl_body(const void *data, size_t len, void *arg)
{
    struct cl *c = arg;

    if (c->bytes == 0) {
        c->t_first = h_now_ms();
        if (c->pause_ms > 0)
            h_sleep_ms(c->pause_ms);
    }
    if (c->bad_at < 0) {
        long long k = osim_bytes_check(data, c->bytes, len);
        if (k >= 0)
            c->bad_at = (long long)c->bytes + k;
    }
    c->bytes += len;
    return 0;
}

static void *
cl_main(void *arg)
{
    struct cl *c = arg;
    struct h_client *hc = h_client_new();
    struct h_resp r;
    char u[512];

    if (c->tls)
        snprintf(u, sizeof(u), "https://127.0.0.1:%d%s", tls_port, c->path);
    else
        snprintf(u, sizeof(u), "%s%s", edge.url, c->path);
    c->o.on_body = c->body_fn != NULL ? c->body_fn : cl_body;
    c->o.arg = c;
    if (c->o.timeout_ms == 0)
        c->o.timeout_ms = 20000;
    c->t_start = h_now_ms();
    c->rc = h_client_http_opts(hc, &r, &c->o, c->method ? c->method : "GET", u, NULL, 0,
                               c->hdrs[0] ? c->hdrs : NULL);
    c->t_end = h_now_ms();
    c->status = r.status;
    if (h_header(&r, "cache-status", c->cs, sizeof(c->cs)) == NULL)
        c->cs[0] = '\0';
    h_resp_free(&r);
    h_client_free(hc);
    return NULL;
}

static void
cl_start(struct cl *c, const char *path)
{
    c->path = path;
    c->bad_at = -1;
    assert_int_equal(pthread_create(&c->t, NULL, cl_main, c), 0);
}

static void
cl_join(struct cl *c)
{
    pthread_join(c->t, NULL);
}

/* ---- the goal: waiters get the body while it arrives ------------------------------------- */

#define DRIP_SIZE 400000

static void
test_waiters_stream_a_dripping_body(void **state)
{
    static struct cl c[20];
    const char *path = "/resp?cc=max-age%3D60&size=400000&drip=2s&k=drip";
    long before = origin_requests();
    int collapsed = 0;
    (void)state;

    memset(c, 0, sizeof(c));
    cl_start(&c[0], path); /* the leader */
    h_sleep_ms(150);
    for (int i = 1; i < 20; i++) {
        c[i].o.h2c = i % 4 == 0; /* some over h2c: internal connections read too */
        c[i].o.http10 = i == 5;  /* and one HTTP/1.0 client */
        cl_start(&c[i], path);
    }
    for (int i = 0; i < 20; i++)
        cl_join(&c[i]);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_int_equal(c[i].status, 200);
        assert_int_equal(c[i].bytes, DRIP_SIZE);
        assert_int_equal(c[i].bad_at, -1); /* all bodies identical: the sequence */
        if (i > 0 && strstr(c[i].cs, "collapsed") != NULL)
            collapsed++;
    }
    assert_int_equal(origin_requests() - before, 1);
    assert_int_equal(collapsed, 19);
    /* the leader's body takes 2 s; each waiter had its first body byte long
     * before that was over (after completion would be >= 1.8 s from its start) */
    for (int i = 1; i < 20; i++) {
        double first = c[i].t_first - c[i].t_start, leader_done = c[0].t_end - c[i].t_start;
        if (first > 1000)
            print_message("waiter %d: first body byte after %.0f ms (leader done at %.0f)\n", i,
                          first, leader_done);
        assert_true(first < 1000 && leader_done > 1500);
    }
    /* and the object was stored once: the next request is a hit */
    {
        struct cl h = {0};
        cl_start(&h, path);
        cl_join(&h);
        assert_int_equal(h.bytes, DRIP_SIZE);
        assert_non_null(strstr(h.cs, "hit"));
        assert_int_equal(origin_requests() - before, 1);
    }
}

/* A chunked origin: the waiters get chunks; HEAD and a matching
 * If-None-Match are answered as soon as the head is known. */
static void
test_waiters_chunked_head_and_conditional(void **state)
{
    static struct cl c[6];
    const char *path = "/resp?cc=max-age%3D60&size=300000&drip=1500ms&te=chunked&etag=v1&k=chunk";
    long before = origin_requests();
    (void)state;

    memset(c, 0, sizeof(c));
    cl_start(&c[0], path);
    h_sleep_ms(150);
    cl_start(&c[1], path); /* HTTP/1.1: chunked */
    c[2].o.http10 = true;  /* HTTP/1.0: until the close */
    cl_start(&c[2], path);
    c[3].method = "HEAD";
    c[3].o.timeout_ms = 20000;
    cl_start(&c[3], path);
    c[4].hdrs[0] = "If-None-Match: \"v1\"";
    cl_start(&c[4], path);
    c[5].o.h2c = true;
    cl_start(&c[5], path);
    for (int i = 0; i < 6; i++)
        cl_join(&c[i]);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_int_equal(c[i].bad_at, -1);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].status, 200);
        assert_int_equal(c[i].bytes, 300000);
    }
    assert_int_equal(c[5].bytes, 300000);
    assert_int_equal(c[3].status, 200);
    assert_int_equal(c[3].bytes, 0);
    assert_int_equal(c[4].status, 304);
    assert_int_equal(c[4].bytes, 0);
    for (int i = 1; i < 6; i++)
        assert_non_null(strstr(c[i].cs, "collapsed"));
    /* HEAD and 304: no need to wait for the body */
    assert_true(c[3].t_end - c[3].t_start < 800);
    assert_true(c[4].t_end - c[4].t_start < 800);
    assert_int_equal(origin_requests() - before, 1);
}

/* ---- failures ------------------------------------------------------------------------------ */

/* The origin dies mid-body: every reader is cut (their heads are out) and
 * nothing is stored: the next request goes to the origin. */
static void
test_origin_dies_mid_body_cuts_readers(void **state)
{
    static struct cl c[6];
    const char *path = "/resp?cc=max-age%3D60&size=400000&drip=1s&cut=200000&k=cut";
    long before = origin_requests(), stores = h_edge_metric(&edge, "edge_cache_stores_total");
    (void)state;

    memset(c, 0, sizeof(c));
    cl_start(&c[0], path);
    h_sleep_ms(150);
    for (int i = 1; i < 6; i++) {
        c[i].o.h2c = i == 3;
        cl_start(&c[i], path);
    }
    for (int i = 0; i < 6; i++)
        cl_join(&c[i]);
    for (int i = 0; i < 6; i++) {
        assert_true(c[i].rc != 0);         /* the transfer failed ... */
        assert_true(c[i].bytes < 400000);  /* ... short */
        assert_int_equal(c[i].bad_at, -1); /* what came was right */
        if (i > 0)
            assert_true(c[i].bytes > 0); /* streamed before the cut */
    }
    assert_int_equal(origin_requests() - before, 1);
    assert_int_equal(h_edge_metric(&edge, "edge_cache_stores_total"), stores);
    {
        struct cl n = {0};
        n.o.timeout_ms = 300; /* a new fetch, not a hit: it drips and we give up */
        cl_start(&n, path);
        cl_join(&n);
        assert_null(strstr(n.cs, "hit"));
        assert_int_equal(origin_requests() - before, 2);
    }
}

/* The leader's client gives up: the fill goes on for the waiters, the
 * object is stored. */
static void
test_leader_client_leaves_fill_goes_on(void **state)
{
    static struct cl c[4];
    const char *path = "/resp?cc=max-age%3D60&size=400000&drip=1s&k=leave";
    long before = origin_requests(), stores = h_edge_metric(&edge, "edge_cache_stores_total");
    (void)state;

    memset(c, 0, sizeof(c));
    c[0].o.timeout_ms = 400;
    cl_start(&c[0], path);
    h_sleep_ms(150);
    c[2].o.h2c = true;
    for (int i = 1; i < 4; i++)
        cl_start(&c[i], path);
    for (int i = 0; i < 4; i++)
        cl_join(&c[i]);
    assert_true(c[0].rc != 0); /* timed out */
    for (int i = 1; i < 4; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_int_equal(c[i].bytes, 400000);
        assert_int_equal(c[i].bad_at, -1);
    }
    assert_int_equal(origin_requests() - before, 1);
    assert_int_equal(h_edge_metric(&edge, "edge_cache_stores_total"), stores + 1);
}

/* Readers that go away mid-body (HTTP/1.1 and h2c) leave the others, the
 * leader and the store alone. */
static void
test_reader_leaves(void **state)
{
    static struct cl c[5];
    const char *path = "/resp?cc=max-age%3D60&size=400000&drip=1s&k=readerleaves";
    long before = origin_requests(), stores = h_edge_metric(&edge, "edge_cache_stores_total");
    (void)state;

    memset(c, 0, sizeof(c));
    cl_start(&c[0], path);
    h_sleep_ms(150);
    for (int i = 1; i < 5; i++) {
        c[i].o.h2c = i == 2;
        if (i <= 2)
            c[i].o.timeout_ms = 400; /* gone mid-body */
        cl_start(&c[i], path);
    }
    for (int i = 0; i < 5; i++)
        cl_join(&c[i]);
    for (int i = 1; i <= 2; i++) {
        assert_true(c[i].rc != 0);
        assert_true(c[i].bytes > 0 && c[i].bytes < 400000);
    }
    for (int i = 0; i < 5; i++) {
        if (i == 1 || i == 2)
            continue;
        assert_int_equal(c[i].rc, 0);
        assert_int_equal(c[i].bytes, 400000);
        assert_int_equal(c[i].bad_at, -1);
    }
    assert_int_equal(origin_requests() - before, 1);
    assert_int_equal(h_edge_metric(&edge, "edge_cache_stores_total"), stores + 1);
}

/* ---- slow clients ------------------------------------------------------------------------- */

static int
raw_get(const char *path)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)edge.port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), small = 32 * 1024;
    char req[512];
    int n;

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", path,
                 edge.port);
    assert_int_equal(write(fd, req, (size_t)n), n);
    return fd;
}

/* Reads one response with a Content-Length; returns its body length, or
 * -1; checks the body against the sequence. */
static long long
raw_read_response(int fd)
{
    static char buf[1 << 16];
    size_t have = 0;
    char *end = NULL;
    long long cl = -1, got;
    struct timeval tv = {.tv_sec = 20};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (end == NULL) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            return -1;
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    {
        const char *h = strcasestr(buf, "\r\ncontent-length:");
        if (h == NULL || h > end)
            return -1;
        cl = strtoll(h + 17, NULL, 10);
    }
    got = (long long)(have - (size_t)(end + 4 - buf));
    if (got > 0 && osim_bytes_check(end + 4, 0, (size_t)got) >= 0)
        return -1;
    while (got < cl) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            return -1;
        if (osim_bytes_check(buf, (uint64_t)got, (size_t)n) >= 0)
            return -1;
        got += n;
    }
    return got;
}

/* A waiter that does not read while 48 MiB arrive costs no memory: the
 * body comes from the file as its socket drains, not through a buffer.
 * The leader's client reads normally. */
static void
test_slow_waiter_bounded_memory(void **state)
{
    static struct cl leader;
    const char *path = "/resp?cc=max-age%3D60&size=50331648&drip=1500ms&k=slow";
    pid_t engine = h_child_pid(edge.proc.pid);
    long rss0, rss_max = 0;
    int fd;
    (void)state;

    rss0 = h_rss_kb(engine);
    memset(&leader, 0, sizeof(leader));
    cl_start(&leader, path);
    h_sleep_ms(150);
    fd = raw_get(path);            /* sends the request, reads nothing yet */
    for (int i = 0; i < 25; i++) { /* 2.5 s: the fill completes meanwhile */
        long kb = h_rss_kb(engine);
        if (kb > rss_max)
            rss_max = kb;
        h_sleep_ms(100);
    }
    cl_join(&leader);
    assert_int_equal(leader.rc, 0);
    assert_int_equal(leader.bytes, 50331648);
    assert_int_equal(raw_read_response(fd), 50331648);
    close(fd);
    print_message("48 MiB to a waiter that stopped reading: engine RSS %ld KiB, at most %ld KiB\n",
                  rss0, rss_max);
    assert_true(rss_max - rss0 < 16 * 1024);
}

/* The leader's own client is slow: once others read the file it reads the
 * file too, so the origin is read at the pace of the disk and the waiters
 * are not held back by it. One leader reads slowly, another stops. */
static int
slow_body(const void *data, size_t len, void *arg)
{
    cl_body(data, len, arg);
    h_sleep_ms(2); /* pieces of ~16 KiB: a few MiB/s at most */
    return 0;
}

static void
slow_leader(const char *path, bool stop)
{
    static struct cl c[3];
    long before = origin_requests();

    memset(c, 0, sizeof(c));
    c[0].o.timeout_ms = 60000;
    if (stop)
        c[0].pause_ms = 3000; /* reads its first piece, then nothing for 3 s */
    else
        c[0].body_fn = slow_body;
    cl_start(&c[0], path);
    h_sleep_ms(300);
    cl_start(&c[1], path);
    c[2].o.h2c = true;
    cl_start(&c[2], path);
    for (int i = 0; i < 3; i++)
        cl_join(&c[i]);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_int_equal(c[i].bytes, 16777216);
        assert_int_equal(c[i].bad_at, -1);
    }
    for (int i = 1; i < 3; i++) {
        assert_non_null(strstr(c[i].cs, "collapsed"));
        if (c[i].t_end > c[0].t_end - 500)
            print_message("waiter %d done %.0f ms before the slow leader\n", i,
                          c[0].t_end - c[i].t_end);
        assert_true(c[i].t_end < c[0].t_end - 500);
    }
    assert_int_equal(origin_requests() - before, 1);
}

static void
test_slow_leader_client_does_not_hold_waiters(void **state)
{
    (void)state;
    slow_leader("/resp?cc=max-age%3D60&size=16777216&k=slowlead", false);
    slow_leader("/resp?cc=max-age%3D60&size=16777216&k=stoplead", true);
}

/* TLS: no sendfile; the readers get the file in bounded pieces (one of
 * them stops reading for 1.5 s without the engine growing). */
static void
test_tls_waiters(void **state)
{
    static struct cl c[4];
    const char *path = "/resp?cc=max-age%3D60&size=16777216&drip=1500ms&k=tls";
    pid_t engine = h_child_pid(edge.proc.pid);
    long before = origin_requests(), rss0 = h_rss_kb(engine), rss_max = 0;
    (void)state;

    memset(c, 0, sizeof(c));
    for (int i = 0; i < 4; i++) {
        c[i].tls = true;
        c[i].o.h2 = i == 2; /* h2 over TLS as well */
        c[i].o.timeout_ms = 30000;
    }
    c[3].pause_ms = 1500;
    cl_start(&c[0], path);
    h_sleep_ms(150);
    for (int i = 1; i < 4; i++)
        cl_start(&c[i], path);
    for (int i = 0; i < 20; i++) {
        long kb = h_rss_kb(engine);
        if (kb > rss_max)
            rss_max = kb;
        h_sleep_ms(100);
    }
    for (int i = 0; i < 4; i++)
        cl_join(&c[i]);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_int_equal(c[i].status, 200);
        assert_int_equal(c[i].bytes, 16777216);
        assert_int_equal(c[i].bad_at, -1);
        if (i > 0) {
            assert_non_null(strstr(c[i].cs, "collapsed"));
            assert_true(c[i].t_first - c[i].t_start < 1000);
        }
    }
    assert_int_equal(origin_requests() - before, 1);
    print_message("16 MiB over TLS, a reader paused 1.5 s: engine RSS %ld KiB, at most %ld KiB\n",
                  rss0, rss_max);
    assert_true(rss_max - rss0 < 16 * 1024);
}

/* ---- Vary --------------------------------------------------------------------------------- */

/* A waiter of the same variant reads the fill; one of another variant
 * waits for the stored copy (then misses its variant and fetches it). */
static void
test_vary_waiter_reads_only_its_variant(void **state)
{
    static struct cl c[3];
    const char *path = "/resp?cc=max-age%3D60&size=200000&drip=1s&vary=Accept-Encoding&k=vary";
    long before = origin_requests();
    (void)state;

    memset(c, 0, sizeof(c));
    c[0].hdrs[0] = "Accept-Encoding: gzip";
    cl_start(&c[0], path);
    h_sleep_ms(150);
    c[1].hdrs[0] = "Accept-Encoding: gzip";
    cl_start(&c[1], path);
    c[2].hdrs[0] = "Accept-Encoding: br";
    cl_start(&c[2], path);
    for (int i = 0; i < 3; i++)
        cl_join(&c[i]);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_int_equal(c[i].bytes, 200000);
        assert_int_equal(c[i].bad_at, -1);
    }
    assert_non_null(strstr(c[1].cs, "fwd=uri-miss"));
    assert_non_null(strstr(c[1].cs, "collapsed"));
    assert_non_null(strstr(c[2].cs, "fwd=vary-miss")); /* its own fetch, after the first */
    assert_true(c[2].t_end > c[0].t_end);
    assert_int_equal(origin_requests() - before, 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_waiters_stream_a_dripping_body),
        cmocka_unit_test(test_waiters_chunked_head_and_conditional),
        cmocka_unit_test(test_origin_dies_mid_body_cuts_readers),
        cmocka_unit_test(test_leader_client_leaves_fill_goes_on),
        cmocka_unit_test(test_reader_leaves),
        cmocka_unit_test(test_slow_waiter_bounded_memory),
        cmocka_unit_test(test_slow_leader_client_does_not_hold_waiters),
        cmocka_unit_test(test_tls_waiters),
        cmocka_unit_test(test_vary_waiter_reads_only_its_variant),
    };
    return H_RUN(tests, setup, teardown);
}
