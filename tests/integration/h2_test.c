/*
 * HTTP/2 to clients, end to end: prior-knowledge h2c on a plain listener
 * marked h2 (libcurl), the same answers and cache behaviour as HTTP/1.1
 * (HEAD, 304, ranges and multipart ranges from the memory tier and from
 * files), HTTP/1.1 on the same listener, request bodies, 100 concurrent
 * streams on one connection, a 64 MiB download to a slow reader with
 * bounded RSS, an origin cut mid-body (that stream reset, the connection
 * going on), per-stream send_timeout and client_body_timeout, a rapid-reset
 * flood cut off with GOAWAY (raw frames), and a graceful stop that lets an
 * in-flight stream finish after GOAWAY.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <nghttp2/nghttp2.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "tests/integration/edge.h"

static struct h_osim osim;
static struct h_osim cut; /* cuts every answer mid-body (--reset-rate 1) */
static struct h_edge edge;
static char cache_dir[600];

static const char *
make_conf(char *buf, size_t n, int port, int admin, const char *extra)
{
    snprintf(buf, n,
             "workers 1;\n"
             "listen 127.0.0.1:%d h2;\n"
             "admin 127.0.0.1:%d;\n"
             "access_log off;\n"
             "max_header_size 4k;\n"
             "max_headers 30;\n"
             "shutdown_timeout 10s;\n"
             "cache_dir %s max_size=64m mem=8m;\n"
             "http2_max_resets 50/10s;\n"
             "%s\n"
             "origin app { server 127.0.0.1:%d; keepalive 32; response_timeout 10s; }\n"
             "origin cut { server 127.0.0.1:%d; retries 0; }\n"
             "site cut.test {\n"
             "  route = /hello { return 200 \"hello from edge\\n\"; }\n"
             "  route / { origin cut; }\n"
             "}\n"
             "site * {\n"
             "  route = /hello { return 200 \"hello from edge\\n\"; }\n"
             "  route /resp { origin app; cache on; }\n"
             "  route = /small { max_body_size 1k; origin app; }\n"
             "  route / { origin app; }\n"
             "}\n",
             port, admin, cache_dir, extra ? extra : "", osim.port, cut.port);
    return buf;
}

/* The RSS test reads the engine's growth: a small ASan quarantine
 * (h_edge_start_lean). */
static int
start_edge(struct h_edge *e, const char *extra)
{
    char conf[4096];
    int port = h_free_port(), admin = h_free_port();

    return h_edge_start_lean(e, port, admin, make_conf(conf, sizeof(conf), port, admin, extra));
}

static int
setup(void **state)
{
    (void)state;
    snprintf(cache_dir, sizeof(cache_dir), "%s/cache", h_tmpdir());
    static const char *const cut_args[] = {"--reset-rate", "1", NULL};
    if (h_osim_start(&osim, NULL) < 0 || h_osim_start(&cut, cut_args) < 0)
        return -1;
    return start_edge(&edge, NULL);
}

static int
teardown(void **state)
{
    (void)state;
    int rc = h_edge_stop(&edge);
    int orc = h_stop(&osim.proc);
    int crc = h_stop(&cut.proc);
    assert_int_equal(rc, 0);
    assert_int_equal(orc, 0);
    assert_int_equal(crc, 0);
    return 0;
}

/* One request over HTTP/2 (prior knowledge) or HTTP/1.1. */
static int
req(struct h_resp *r, bool h2, const char *method, const char *path, const char *body, size_t len,
    const char *const *hdrs)
{
    struct h_client *cl = h_client_new();
    struct h_opts o = {.timeout_ms = 10000, .h2c = h2};
    char u[512];
    int rc;

    snprintf(u, sizeof(u), "%s%s", edge.url, path);
    rc = h_client_http_opts(cl, r, &o, method, u, body, len, hdrs);
    h_client_free(cl);
    return rc;
}

/* ---- the same answers as HTTP/1.1 ------------------------------------------------------ */

static void
test_h2_same_answers_as_h1(void **state)
{
    static const char *const paths[] = {"/hello",      "/bytes/5000", "/chunked?n=3&size=1000",
                                        "/status/404", "/status/503", "/nothing/here"};
    char b1[256], b2[256];
    long s0 = h_edge_metric(&edge, "edge_h2_sessions_total");
    (void)state;

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct h_resp r1, r2;
        assert_int_equal(req(&r1, false, "GET", paths[i], NULL, 0, NULL), 0);
        assert_int_equal(req(&r2, true, "GET", paths[i], NULL, 0, NULL), 0);
        assert_int_equal(r1.http_version, 11);
        assert_int_equal(r2.http_version, 20);
        assert_int_equal(r2.status, r1.status);
        assert_int_equal(r2.len, r1.len);
        assert_memory_equal(r2.body, r1.body, r1.len);
        /* hop-by-hop fields stay on the HTTP/1.1 side */
        assert_null(h_header(&r2, "connection", b2, sizeof(b2)));
        assert_null(h_header(&r2, "transfer-encoding", b2, sizeof(b2)));
        assert_null(h_header(&r2, "keep-alive", b2, sizeof(b2)));
        assert_non_null(h_header(&r2, "x-request-id", b2, sizeof(b2)));
        if (h_header(&r1, "via", b1, sizeof(b1)) != NULL)
            assert_string_equal(h_header(&r2, "via", b2, sizeof(b2)), b1);
        h_resp_free(&r1);
        h_resp_free(&r2);
    }

    struct h_resp r;
    assert_int_equal(req(&r, true, "HEAD", "/bytes/1000", NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    assert_string_equal(h_header(&r, "content-length", b2, sizeof(b2)), "1000");
    h_resp_free(&r);
    /* a client X-Request-Id is kept, as over HTTP/1.1 */
    const char *id[] = {"X-Request-Id: h2-id-42", NULL};
    assert_int_equal(req(&r, true, "GET", "/headers", NULL, 0, id), 0);
    assert_string_equal(h_header(&r, "x-request-id", b2, sizeof(b2)), "h2-id-42");
    assert_non_null(strstr(r.body, "\"x-forwarded-for\":\"127.0.0.1\""));
    assert_non_null(strstr(r.body, "\"version\":\"1.1\""));
    assert_non_null(strstr(r.body, "\"via\":\"2 edge\"")); /* what came in was HTTP/2 */
    h_resp_free(&r);
    assert_true(h_edge_metric(&edge, "edge_h2_sessions_total") >= s0 + 7);

    /* an origin's 103 Early Hints: a HEADERS frame before the response's
     * (curl itself: the harness keeps the final block only) */
    char out[4096];
    const char *e, *f;
    assert_int_equal(h_sh(out, sizeof(out),
                          "curl -s -i --http2-prior-knowledge --max-time 10 "
                          "'http://127.0.0.1:%d/resp?interim=103&k=h2early'",
                          edge.port),
                     0);
    e = strstr(out, "HTTP/2 103");
    f = strstr(out, "HTTP/2 200");
    assert_non_null(e);
    assert_non_null(f);
    assert_true(e < f);
    assert_non_null(strstr(e, "link: </style.css>; rel=preload; as=style"));
    assert_null(strstr(f, "link:"));
}

static void
test_h2_cache_miss_then_hit(void **state)
{
    char b[256];
    struct h_resp r1, r2, r3;
    (void)state;

    /* first over h2: a miss, stored; then a hit over h2 and over HTTP/1.1 */
    const char *p = "/resp?cc=max-age%3D60&size=3000&k=h2first";
    assert_int_equal(req(&r1, true, "GET", p, NULL, 0, NULL), 0);
    assert_int_equal(r1.status, 200);
    assert_non_null(strstr(h_header(&r1, "cache-status", b, sizeof(b)), "fwd=uri-miss"));
    assert_non_null(strstr(b, "stored"));
    assert_int_equal(req(&r2, true, "GET", p, NULL, 0, NULL), 0);
    assert_int_equal(r2.status, 200);
    assert_non_null(strstr(h_header(&r2, "cache-status", b, sizeof(b)), "hit"));
    assert_non_null(h_header(&r2, "age", b, sizeof(b)));
    assert_int_equal(req(&r3, false, "GET", p, NULL, 0, NULL), 0);
    assert_non_null(strstr(h_header(&r3, "cache-status", b, sizeof(b)), "hit"));
    assert_int_equal(r1.len, 3000);
    assert_int_equal(r2.len, 3000);
    assert_memory_equal(r1.body, r2.body, 3000);
    assert_memory_equal(r1.body, r3.body, 3000);
    h_resp_free(&r1);
    h_resp_free(&r2);
    h_resp_free(&r3);

    /* first over HTTP/1.1, then a hit over h2; a conditional hit is a 304 */
    p = "/resp?cc=max-age%3D60&size=10&etag=v1&k=h1first";
    assert_int_equal(req(&r1, false, "GET", p, NULL, 0, NULL), 0);
    assert_non_null(strstr(h_header(&r1, "cache-status", b, sizeof(b)), "fwd=uri-miss"));
    assert_int_equal(req(&r2, true, "GET", p, NULL, 0, NULL), 0);
    assert_non_null(strstr(h_header(&r2, "cache-status", b, sizeof(b)), "hit"));
    const char *inm[] = {"If-None-Match: \"v1\"", NULL};
    assert_int_equal(req(&r3, true, "GET", p, NULL, 0, inm), 0);
    assert_int_equal(r3.status, 304);
    assert_int_equal(r3.len, 0);
    h_resp_free(&r1);
    h_resp_free(&r2);
    h_resp_free(&r3);
}

/* One request with a fixed X-Request-Id (a multipart boundary carries it)
 * and maybe a Range; h2 or HTTP/1.1. */
static int
req_range(struct h_resp *r, bool h2, const char *method, const char *path, const char *range)
{
    char rh[128];
    const char *hdrs[] = {"X-Request-Id: range-test", range != NULL ? rh : NULL, NULL};

    if (range != NULL)
        snprintf(rh, sizeof(rh), "Range: %s", range);
    return req(r, h2, method, path, NULL, 0, hdrs);
}

/* Hits from the memory tier (5000 bytes) and from the file (300000, over
 * mem_object): the whole body, HEAD, 304, one range, a suffix, several
 * ranges (multipart/byteranges), one not satisfiable - the same answers
 * over h2 as over HTTP/1.1. */
static void
test_h2_cache_head_304_ranges(void **state)
{
    static const char *const ranges[] = {NULL, "bytes=10-19", "bytes=-7", "bytes=0-1,100-110,4990-",
                                         "bytes=999999-"};
    static const int want[] = {200, 206, 206, 206, 416};
    static const char *const same[] = {"content-range", "content-type", "content-length", "etag",
                                       "cache-status"};
    static const size_t sizes[] = {5000, 300000};
    char p[256], b1[256], b2[256];
    struct h_resp r1, r2;
    (void)state;

    for (size_t k = 0; k < 2; k++) {
        snprintf(p, sizeof(p), "/resp?cc=max-age%%3D60&size=%zu&etag=rg%zu&k=ranges", sizes[k], k);
        for (int i = 0; i < 2; i++) { /* the miss stores; the first hit loads the memory tier */
            assert_int_equal(req(&r1, false, "GET", p, NULL, 0, NULL), 0);
            assert_int_equal(r1.status, 200);
            h_resp_free(&r1);
        }
        for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
            assert_int_equal(req_range(&r1, false, "GET", p, ranges[i]), 0);
            assert_int_equal(req_range(&r2, true, "GET", p, ranges[i]), 0);
            assert_int_equal(r2.http_version, 20);
            if (r2.status != want[i] || r1.status != want[i])
                fail_msg("size %zu range %s: h1 %ld, h2 %ld", sizes[k], ranges[i], r1.status,
                         r2.status);
            assert_int_equal(r2.len, r1.len);
            assert_memory_equal(r2.body, r1.body, r1.len);
            for (size_t j = 0; j < sizeof(same) / sizeof(same[0]); j++) {
                const char *v1 = h_header(&r1, same[j], b1, sizeof(b1));
                const char *v2 = h_header(&r2, same[j], b2, sizeof(b2));
                assert_true((v1 == NULL) == (v2 == NULL));
                if (v1 != NULL)
                    assert_string_equal(v2, v1);
            }
            assert_non_null(strstr(h_header(&r2, "cache-status", b2, sizeof(b2)), "hit"));
            h_resp_free(&r1);
            h_resp_free(&r2);
        }
        /* HEAD: the length without the body */
        assert_int_equal(req(&r2, true, "HEAD", p, NULL, 0, NULL), 0);
        assert_int_equal(r2.status, 200);
        assert_int_equal(r2.len, 0);
        assert_int_equal(strtol(h_header(&r2, "content-length", b2, sizeof(b2)), NULL, 10),
                         (long)sizes[k]);
        assert_non_null(strstr(h_header(&r2, "cache-status", b2, sizeof(b2)), "hit"));
        h_resp_free(&r2);
        /* a conditional hit */
        snprintf(b1, sizeof(b1), "If-None-Match: \"rg%zu\"", k);
        const char *inm[] = {b1, NULL};
        assert_int_equal(req(&r2, true, "GET", p, NULL, 0, inm), 0);
        assert_int_equal(r2.status, 304);
        assert_int_equal(r2.len, 0);
        assert_null(h_header(&r2, "content-length", b2, sizeof(b2)));
        h_resp_free(&r2);
    }
}

/* ---- request bodies, fields, limits ------------------------------------------------------ */

struct upload {
    const char *p;
    size_t len, off;
};

static size_t
upload_read(char *buf, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t k = size * n;
    if (k > u->len - u->off)
        k = u->len - u->off;
    if (k > 7000)
        k = 7000; /* many small DATA frames */
    memcpy(buf, u->p + u->off, k);
    u->off += k;
    return k;
}

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
    struct h_resp *r = arg;
    char *nb = realloc(r->body, r->len + size * n + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + r->len, p, size * n);
    r->body = nb;
    r->len += size * n;
    r->body[r->len] = '\0';
    return size * n;
}

static void
test_h2_request_bodies_and_fields(void **state)
{
    size_t n = 1024 * 1024 + 13;
    char *body = malloc(n);
    struct h_resp r;
    (void)state;

    for (size_t i = 0; i < n; i++)
        body[i] = (char)('a' + (i * 7) % 26);
    /* with content-length */
    assert_int_equal(req(&r, true, "POST", "/echo", body, n, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, n);
    assert_memory_equal(r.body, body, n);
    h_resp_free(&r);

    /* without: DATA frames until END_STREAM (chunked towards the origin) */
    CURL *c = curl_easy_init();
    struct upload up = {body, 300001, 0};
    char u[256];
    memset(&r, 0, sizeof(r));
    snprintf(u, sizeof(u), "%s/echo", edge.url);
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "POST");
    curl_easy_setopt(c, CURLOPT_READFUNCTION, upload_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &up);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, up.len);
    assert_memory_equal(r.body, body, up.len);
    free(r.body);
    free(body);

    /* cookie crumbs are joined into one Cookie (RFC 9113 8.2.3) */
    const char *ck[] = {"Cookie: a=1", "Cookie: b=2", NULL};
    assert_int_equal(req(&r, true, "GET", "/headers", NULL, 0, ck), 0);
    assert_non_null(strstr(r.body, "\"cookie\":\"a=1; b=2\""));
    assert_non_null(strstr(r.body, "\"host\":\"127.0.0.1:"));
    h_resp_free(&r);

    /* the HTTP/1.1 limits hold: a header block over max_header_size, too many fields */
    char big[5000];
    memset(big, 'x', sizeof(big));
    memcpy(big, "X-Big: ", 7);
    big[sizeof(big) - 1] = '\0';
    const char *bh[] = {big, NULL};
    assert_int_equal(req(&r, true, "GET", "/hello", NULL, 0, bh), 0);
    assert_int_equal(r.status, 431);
    h_resp_free(&r);
    char names[40][32];
    const char *many[41];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "X-F%d: %d", i, i);
        many[i] = names[i];
    }
    many[40] = NULL;
    assert_int_equal(req(&r, true, "GET", "/hello", NULL, 0, many), 0);
    assert_int_equal(r.status, 431);
    h_resp_free(&r);
    /* and the connection-level answer goes on working */
    assert_int_equal(req(&r, true, "GET", "/hello", NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
}

static void
test_h1_on_the_h2_listener(void **state)
{
    char out[4096];
    struct h_resp r;
    long s0 = h_edge_metric(&edge, "edge_h2_sessions_total");
    (void)state;

    assert_int_equal(req(&r, false, "GET", "/hello", NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.http_version, 11);
    h_resp_free(&r);
    /* a request line that starts like the preface ("P…") is still HTTP/1.1 */
    assert_int_equal(req(&r, false, "PUT", "/api/tables/t/items/h2k", "{\"a\":1}", 7, NULL), 0);
    assert_true(r.status == 200 || r.status == 201);
    h_resp_free(&r);
    static const char raw[] = "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_true(h_raw("127.0.0.1", edge.port, raw, sizeof(raw) - 1, out, sizeof(out), 3000) > 0);
    assert_memory_equal(out, "HTTP/1.1 200 OK", 15);
    assert_int_equal(h_edge_metric(&edge, "edge_h2_sessions_total"), s0);
}

/* ---- 100 concurrent streams on one connection ------------------------------------------- */

/* An HTTP/2 client on nghttp2's client session over a blocking socket:
 * libcurl 7.88 cannot multiplex prior-knowledge connections (curl#10634). */
struct h2cli_stream {
    int32_t id;
    int status;
    size_t len;
    bool closed;
    uint32_t error;
};

struct h2cli {
    int fd;
    int open;
    struct h2cli_stream *st;
};

static ssize_t
h2cli_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct h2cli *c = ud;
    (void)ng;
    (void)flags;
    ssize_t n = write(c->fd, data, len);
    return n < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : n;
}

static int
h2cli_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
             const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    struct h2cli_stream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    char v[8];
    (void)flags;
    (void)ud;
    if (st != NULL && nlen == 7 && memcmp(name, ":status", 7) == 0 && vlen < sizeof(v)) {
        memcpy(v, value, vlen);
        v[vlen] = '\0';
        st->status = (int)strtol(v, NULL, 10);
    }
    return 0;
}

static int
h2cli_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
           void *ud)
{
    struct h2cli_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    (void)flags;
    (void)data;
    (void)ud;
    if (st != NULL)
        st->len += len;
    return 0;
}

static int
h2cli_close(nghttp2_session *ng, int32_t id, uint32_t error, void *ud)
{
    struct h2cli *c = ud;
    struct h2cli_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st != NULL) {
        st->closed = true;
        st->error = error;
        c->open--;
    }
    return 0;
}

static int raw_connect(int port);

/* GETs every path at once on one connection (authority NULL: the
 * address); 0 when all streams closed within timeout_ms. */
static int
h2cli_get_all(int port, const char *authority, const char *const *paths, int n,
              struct h2cli_stream *st, int timeout_ms)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_session *ng;
    struct h2cli c = {.fd = raw_connect(port), .open = n, .st = st};
    double end = h_now_ms() + timeout_ms;
    char auth[64];

    if (authority != NULL)
        snprintf(auth, sizeof(auth), "%s", authority);
    else
        snprintf(auth, sizeof(auth), "127.0.0.1:%d", port);
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, h2cli_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2cli_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2cli_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2cli_close);
    nghttp2_session_client_new(&ng, cbs, &c);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, NULL, 0);
    for (int i = 0; i < n; i++) {
        nghttp2_nv nv[] = {
            {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
            {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
            {(uint8_t *)":authority", (uint8_t *)auth, 10, strlen(auth), 0},
            {(uint8_t *)":path", (uint8_t *)paths[i], 5, strlen(paths[i]), 0},
        };
        memset(&st[i], 0, sizeof(st[i]));
        st[i].id = nghttp2_submit_request(ng, NULL, nv, 4, NULL, &st[i]);
    }
    while (c.open > 0 && h_now_ms() < end) {
        struct pollfd pfd = {.fd = c.fd, .events = POLLIN};
        uint8_t buf[16384];
        if (nghttp2_session_send(ng) != 0)
            break;
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t k = read(c.fd, buf, sizeof(buf));
        if (k <= 0 || nghttp2_session_mem_recv(ng, buf, (size_t)k) < 0)
            break;
    }
    nghttp2_session_del(ng);
    close(c.fd);
    return c.open == 0 ? 0 : -1;
}

static void
test_h2_100_concurrent_streams(void **state)
{
    enum { N = 100 };
    struct h2cli_stream st[N];
    char pathbuf[N][40];
    const char *paths[N];
    long s0 = h_edge_metric(&edge, "edge_h2_sessions_total");
    long st0 = h_edge_metric(&edge, "edge_h2_streams_total");
    (void)state;

    for (int i = 0; i < N; i++) {
        snprintf(pathbuf[i], sizeof(pathbuf[i]), "/slow?ms=800&i=%d", i);
        paths[i] = pathbuf[i];
    }
    double t0 = h_now_ms();
    assert_int_equal(h2cli_get_all(edge.port, NULL, paths, N, st, 15000), 0);
    double took = h_now_ms() - t0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(st[i].error, 0);
        assert_int_equal(st[i].status, 200);
        assert_int_equal(st[i].len, 5); /* "slow\n" */
    }
    print_message("100 streams of 800 ms on one connection: %.0f ms\n", took);
    /* one connection, every stream at once (one after the other: 80 s) */
    assert_int_equal(h_edge_metric(&edge, "edge_h2_sessions_total"), s0 + 1);
    assert_int_equal(h_edge_metric(&edge, "edge_h2_streams_total"), st0 + N);
    assert_true(took < 6000);
}

/* ---- an origin that dies mid-body ------------------------------------------------------- */

/* The answer's head went out: only that stream is reset (INTERNAL_ERROR),
 * the other stream of the connection is answered. */
static void
test_h2_origin_cut_mid_body_resets_stream(void **state)
{
    static const char *const paths[] = {"/bytes/200000", "/hello"};
    struct h2cli_stream st[2];
    long s0 = h_edge_metric(&edge, "edge_h2_sessions_total");
    (void)state;

    assert_int_equal(h2cli_get_all(edge.port, "cut.test", paths, 2, st, 10000), 0);
    assert_int_equal(st[0].status, 200);
    assert_int_equal(st[0].error, NGHTTP2_INTERNAL_ERROR);
    assert_true(st[0].len < 200000);
    assert_int_equal(st[1].status, 200);
    assert_int_equal(st[1].error, 0);
    assert_int_equal(st[1].len, 16); /* "hello from edge\n" */
    assert_int_equal(h_edge_metric(&edge, "edge_h2_sessions_total"), s0 + 1);
}

/* ---- a slow reader of a 64 MiB body --------------------------------------------------------- */

struct slow_reader {
    uint64_t bytes, sum;
    pid_t engine;
    long rss0, rss_paused;
    bool paused;
};

static int
slow_body(const void *data, size_t len, void *arg)
{
    struct slow_reader *s = arg;
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i += 4096)
        s->sum = s->sum * 31 + p[i];
    s->bytes += len;
    if (!s->paused && s->bytes >= (1u << 20)) {
        /* stop reading for 2 s: everything behind us has time to pile up */
        s->paused = true;
        h_sleep_ms(2000);
        s->rss_paused = h_rss_kb(s->engine);
    }
    return 0;
}

static void
test_h2_slow_reader_64mib_bounded_rss(void **state)
{
    struct h_client *cl = h_client_new();
    struct slow_reader s = {0};
    struct h_opts o = {.timeout_ms = 30000, .on_body = slow_body, .arg = &s, .h2c = true};
    struct h_resp r;
    char u[256];
    (void)state;

    s.engine = h_child_pid(edge.proc.pid);
    s.rss0 = h_rss_kb(s.engine);
    snprintf(u, sizeof(u), "%s/bytes/67108864", edge.url);
    assert_int_equal(h_client_http_opts(cl, &r, &o, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.http_version, 20);
    assert_true(s.bytes == 67108864ull);
    h_resp_free(&r);
    h_client_free(cl);
    print_message("64 MiB over h2, reader paused 2 s: engine RSS %ld KiB -> %ld KiB\n", s.rss0,
                  s.rss_paused);
    /* bounded: the origin is paused, edge holds at most a few windows */
    assert_true(s.rss_paused > 0 && s.rss_paused - s.rss0 < 24 * 1024);
}

/* ---- raw frames (flood, GOAWAY) ---------------------------------------------------------------
 */

static int
raw_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static size_t
frame(uint8_t *out, uint8_t type, uint8_t flags, uint32_t sid, const void *payload, size_t len)
{
    out[0] = (uint8_t)(len >> 16);
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    out[3] = type;
    out[4] = flags;
    out[5] = (uint8_t)(sid >> 24 & 0x7f);
    out[6] = (uint8_t)(sid >> 16);
    out[7] = (uint8_t)(sid >> 8);
    out[8] = (uint8_t)sid;
    if (len > 0)
        memcpy(out + 9, payload, len);
    return 9 + len;
}

/* HPACK for GET http://127.0.0.1/path: static-table entries and literals
 * without indexing (RFC 7541 6.2.2), short enough for 7-bit lengths. */
static size_t
hpack_get(uint8_t *out, const char *path)
{
    size_t n = 0, pl = strlen(path);
    out[n++] = 0x82; /* :method GET */
    out[n++] = 0x86; /* :scheme http */
    out[n++] = 0x04; /* :path, literal */
    out[n++] = (uint8_t)pl;
    memcpy(out + n, path, pl);
    n += pl;
    out[n++] = 0x01; /* :authority, literal */
    out[n++] = 9;
    memcpy(out + n, "127.0.0.1", 9);
    return n + 9;
}

/* HPACK for POST /small with content-length: 5000000 (no body sent). */
static size_t
hpack_post_small(uint8_t *out)
{
    size_t n = hpack_get(out, "/small");
    out[0] = 0x83;   /* :method POST */
    out[n++] = 0x0f; /* content-length (static 28), literal without indexing */
    out[n++] = 0x0d;
    out[n++] = 7;
    memcpy(out + n, "5000000", 7);
    return n + 7;
}

static size_t
preface(uint8_t *out)
{
    memcpy(out, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    return 24 + frame(out + 24, 4 /* SETTINGS */, 0, 0, NULL, 0);
}

/* Reads one frame within timeout_ms: its type, flags, stream and payload
 * (up to cap bytes kept). -1 on EOF, error or timeout. */
static int
read_frame(int fd, int timeout_ms, uint8_t *type, uint8_t *flags, uint32_t *sid, uint8_t *payload,
           size_t cap, size_t *len)
{
    uint8_t hd[9];
    size_t need = 9, got = 0, plen = 0;
    double end = h_now_ms() + timeout_ms;
    bool in_payload = false;

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        uint8_t tmp[16384];
        size_t want = need - got;
        if (want == 0) {
            if (in_payload)
                break;
            plen = (size_t)hd[0] << 16 | (size_t)hd[1] << 8 | hd[2];
            *type = hd[3];
            *flags = hd[4];
            *sid = ((uint32_t)hd[5] & 0x7f) << 24 | (uint32_t)hd[6] << 16 | (uint32_t)hd[7] << 8 |
                   hd[8];
            in_payload = true;
            need = plen;
            got = 0;
            if (plen == 0)
                break;
            continue;
        }
        int left = (int)(end - h_now_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return -1;
        if (want > sizeof(tmp))
            want = sizeof(tmp);
        ssize_t n = read(fd, tmp, want);
        if (n <= 0)
            return -1;
        if (!in_payload) {
            memcpy(hd + got, tmp, (size_t)n);
        } else {
            for (ssize_t i = 0; i < n; i++)
                if (got + (size_t)i < cap)
                    payload[got + (size_t)i] = tmp[i];
        }
        got += (size_t)n;
    }
    *len = plen;
    return 0;
}

static uint32_t
be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
test_h2_rapid_reset_flood_gets_goaway(void **state)
{
    enum { STREAMS = 400 };
    uint8_t *buf = malloc(STREAMS * 64 + 64), hb[64], pl[256];
    static const uint8_t cancel[4] = {0, 0, 0, 8};
    size_t n = 0, len;
    uint8_t type, flags;
    uint32_t sid, goaway_code = 0xffffffff;
    bool closed = false;
    struct h_bg other;
    struct h_resp r;
    long floods0 = h_edge_metric(&edge, "edge_h2_floods_total");
    long resets0 = h_edge_metric(&edge, "edge_h2_resets_total");
    (void)state;

    h_bg_start(&other, edge.url, "/slow?ms=700"); /* another client, in flight meanwhile */
    h_sleep_ms(100);
    int fd = raw_connect(edge.port);
    n = preface(buf);
    for (uint32_t i = 0; i < STREAMS; i++) {
        size_t hl = hpack_get(hb, "/bytes/10");
        n += frame(buf + n, 1 /* HEADERS */, 0x5 /* END_STREAM|END_HEADERS */, 2 * i + 1, hb, hl);
        n += frame(buf + n, 3 /* RST_STREAM */, 0, 2 * i + 1, cancel, 4);
    }
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    free(buf);
    for (int i = 0; i < 2000; i++) {
        if (read_frame(fd, 3000, &type, &flags, &sid, pl, sizeof(pl), &len) < 0) {
            closed = true;
            break;
        }
        if (type == 7 /* GOAWAY */ && len >= 8)
            goaway_code = be32(pl + 4);
    }
    close(fd);
    assert_int_equal(goaway_code, 0xb); /* ENHANCE_YOUR_CALM */
    assert_true(closed);
    assert_int_equal(h_edge_metric(&edge, "edge_h2_floods_total"), floods0 + 1);
    assert_true(h_edge_metric(&edge, "edge_h2_resets_total") >= resets0 + 50);

    /* the other client was served, and new ones are */
    h_bg_join(&other);
    assert_int_equal(other.rc, 0);
    assert_int_equal(other.r.status, 200);
    h_resp_free(&other.r);
    assert_int_equal(req(&r, true, "GET", "/hello", NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
}

/* An answer before the body (413 on content-length): the whole response,
 * then RST_STREAM(NO_ERROR) so that the client stops sending (RFC 9113 8.1). */
static void
test_h2_early_answer_then_rst_no_error(void **state)
{
    uint8_t buf[256], hb[64], pl[512];
    size_t n, len;
    uint8_t type, flags;
    uint32_t sid;
    bool head = false, end = false, rst = false;
    uint32_t rst_code = 0xffffffff;
    (void)state;

    int fd = raw_connect(edge.port);
    n = preface(buf);
    n += frame(buf + n, 1, 0x4 /* END_HEADERS only: a body would follow */, 1, hb,
               hpack_post_small(hb));
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    for (int i = 0; i < 20 && !rst; i++) {
        if (read_frame(fd, 3000, &type, &flags, &sid, pl, sizeof(pl), &len) < 0)
            break;
        if (type == 1 && sid == 1) {
            head = true;
        } else if (type == 0 && sid == 1) {
            assert_true(head);
            if (len > 0)
                assert_non_null(memmem(pl, len < sizeof(pl) ? len : sizeof(pl), "413", 3));
            end = (flags & 0x1) != 0;
        } else if (type == 3 && sid == 1) {
            assert_true(end); /* after the complete response */
            rst = true;
            rst_code = be32(pl);
        }
    }
    close(fd);
    assert_true(head && end && rst);
    assert_int_equal(rst_code, 0); /* NO_ERROR */
}

/* ---- per-stream timeouts ----------------------------------------------------------------------
 */

/* HPACK for a POST of path with content-length cl (no body sent here). */
static size_t
hpack_post(uint8_t *out, const char *path, const char *cl)
{
    size_t n = hpack_get(out, path), l = strlen(cl);
    out[0] = 0x83;   /* :method POST */
    out[n++] = 0x0f; /* content-length (static 28), literal without indexing */
    out[n++] = 0x0d;
    out[n++] = (uint8_t)l;
    memcpy(out + n, cl, l);
    return n + l;
}

/* send_timeout: a stream whose window the client never opens is reset
 * after it; client_body_timeout: a body that stops coming is answered 408.
 * Neither ends the connection: a third stream is answered after both. */
static void
test_h2_stream_timeouts(void **state)
{
    struct h_edge e;
    uint8_t buf[512], hb[128], pl[4096];
    static const uint8_t win[6] = {0, 4, 0, 0, 0x03, 0xe8}; /* INITIAL_WINDOW_SIZE 1000 */
    size_t n, len;
    uint8_t type, flags;
    uint32_t sid, rst1 = 0xffffffff, rst3 = 0xffffffff;
    bool head3 = false, saw408 = false, hello = false, sent5 = false;
    size_t data1 = 0;
    double t0, t_rst1 = 0;
    (void)state;

    assert_int_equal(start_edge(&e, "send_timeout 1s;\nclient_body_timeout 1s;\n"), 0);
    int fd = raw_connect(e.port);
    memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24 + frame(buf + 24, 4 /* SETTINGS */, 0, 0, win, sizeof(win));
    n += frame(buf + n, 1, 0x5, 1, hb, hpack_get(hb, "/bytes/100000"));
    n += frame(buf + n, 1, 0x4 /* END_HEADERS: a body follows */, 3, hb,
               hpack_post(hb, "/echo", "10"));
    n += frame(buf + n, 0 /* DATA */, 0, 3, "12345", 5); /* half of it, then nothing */
    t0 = h_now_ms();
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    for (int i = 0; i < 200 && !hello; i++) {
        if (read_frame(fd, 6000, &type, &flags, &sid, pl, sizeof(pl), &len) < 0)
            break;
        if (type == 0 && sid == 1)
            data1 += len;
        else if (type == 3 && sid == 1) {
            rst1 = be32(pl);
            t_rst1 = h_now_ms() - t0;
        } else if (type == 1 && sid == 3)
            head3 = true;
        else if (type == 0 && sid == 3 && len >= 3 && memcmp(pl, "408", 3) == 0)
            saw408 = true;
        else if (type == 3 && sid == 3)
            rst3 = be32(pl);
        else if (type == 0 && sid == 5 && len == 16 && memcmp(pl, "hello from edge\n", 16) == 0)
            hello = true;
        if (rst1 != 0xffffffff && rst3 != 0xffffffff && !sent5) {
            /* both timed out: the connection still serves */
            sent5 = true;
            n = frame(buf, 1, 0x5, 5, hb, hpack_get(hb, "/hello"));
            assert_int_equal(write(fd, buf, n), (ssize_t)n);
        }
    }
    close(fd);
    print_message("stream 1: %zu bytes then RST_STREAM(%u) after %.0f ms\n", data1, rst1, t_rst1);
    assert_true(data1 <= 1000);
    assert_int_equal(rst1, NGHTTP2_INTERNAL_ERROR);
    assert_true(t_rst1 >= 900 && t_rst1 < 5000);
    assert_true(head3 && saw408);
    assert_int_equal(rst3, NGHTTP2_NO_ERROR); /* answered before its body ended */
    assert_true(hello);
    assert_int_equal(h_edge_stop(&e), 0);
}

/* ---- graceful stop ------------------------------------------------------------------------------
 */

/* SIGTERM (stop) or SIGHUP (reload): GOAWAY(NO_ERROR) naming the stream in
 * flight comes first, that stream finishes, then the connection closes;
 * after a reload edge goes on serving. */
static void
graceful_goaway(int sig)
{
    struct h_edge e;
    uint8_t buf[256], hb[64], pl[256];
    size_t n, len, hl;
    uint8_t type, flags;
    uint32_t sid;
    bool goaway = false, head = false, done = false, closed = false;
    uint32_t goaway_code = 0xffffffff, last_sid = 0;
    char body[64] = "";
    size_t blen = 0;

    assert_int_equal(start_edge(&e, NULL), 0);
    long before = h_stats_int(osim.url, "requests");
    int fd = raw_connect(e.port);
    n = preface(buf);
    hl = hpack_get(hb, "/slow?ms=1500");
    n += frame(buf + n, 1, 0x5, 1, hb, hl);
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    /* stop once the stream is surely in flight (the origin has it), not
     * after a fixed sleep: on a loaded machine the engine may not have read
     * the HEADERS yet, and GOAWAY would then name stream 0 */
    for (int i = 0; i < 500 && h_stats_int(osim.url, "requests") <= before; i++)
        h_sleep_ms(10);
    assert_true(h_stats_int(osim.url, "requests") > before);
    double t0 = h_now_ms();
    assert_int_equal(h_kill(&e.proc, sig), 0);
    for (int i = 0; i < 100; i++) {
        if (read_frame(fd, 5000, &type, &flags, &sid, pl, sizeof(pl), &len) < 0) {
            closed = true;
            break;
        }
        if (type == 7 && len >= 8) {
            goaway = true;
            last_sid = be32(pl) & 0x7fffffff;
            goaway_code = be32(pl + 4);
            assert_false(head); /* GOAWAY comes first, at the start of the drain */
        } else if (type == 1 && sid == 1) {
            head = true;
            assert_int_equal(pl[0], 0x88); /* :status 200 (static table) */
        } else if (type == 0 && sid == 1) {
            if (blen + len < sizeof(body)) {
                memcpy(body + blen, pl, len);
                blen += len;
            }
            if (flags & 0x1)
                done = true;
        }
    }
    close(fd);
    double took = h_now_ms() - t0;
    assert_true(goaway);
    assert_int_equal(goaway_code, 0);
    assert_int_equal(last_sid, 1);
    assert_true(head);
    assert_true(done);
    assert_string_equal(body, "slow\n");
    assert_true(closed);
    if (sig == SIGHUP) {
        /* a new connection gets answers from the new conf's workers */
        struct h_client *cl = h_client_new();
        struct h_opts o = {.h2c = true};
        struct h_resp r;
        char url[96];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello", e.port);
        assert_int_equal(h_client_http_opts(cl, &r, &o, "GET", url, NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
        h_client_free(cl);
    }
    assert_int_equal(h_edge_stop(&e), 0);
    if (!(took >= 500 && took < 6000))
        fprintf(stderr, "graceful %s took %.0f ms\n", sig == SIGHUP ? "reload" : "stop", took);
    assert_true(took >= 500 && took < 6000);
}

static void
test_h2_graceful_stop_finishes_stream(void **state)
{
    (void)state;
    graceful_goaway(SIGTERM);
}

static void
test_h2_graceful_reload_finishes_stream(void **state)
{
    (void)state;
    graceful_goaway(SIGHUP);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h2_same_answers_as_h1),
        cmocka_unit_test(test_h2_cache_miss_then_hit),
        cmocka_unit_test(test_h2_cache_head_304_ranges),
        cmocka_unit_test(test_h2_request_bodies_and_fields),
        cmocka_unit_test(test_h1_on_the_h2_listener),
        cmocka_unit_test(test_h2_100_concurrent_streams),
        cmocka_unit_test(test_h2_origin_cut_mid_body_resets_stream),
        cmocka_unit_test(test_h2_slow_reader_64mib_bounded_rss),
        cmocka_unit_test(test_h2_rapid_reset_flood_gets_goaway),
        cmocka_unit_test(test_h2_early_answer_then_rst_no_error),
        cmocka_unit_test(test_h2_stream_timeouts),
        cmocka_unit_test(test_h2_graceful_stop_finishes_stream),
        cmocka_unit_test(test_h2_graceful_reload_finishes_stream),
    };
    return H_RUN(tests, setup, teardown);
}
