/*
 * Proxy core, end to end: real edge, real origin-sim, libcurl and raw sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include "tests/integration/edge.h"

static struct h_osim osim;
static struct h_edge edge;

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* The conf of the shared edge: one origin, a returned route, limits small
 * enough to test. */
static const char *
base_conf(char *buf, size_t n, int port, int admin, int origin_port, const char *extra,
          const char *routes)
{
    snprintf(buf, n,
             "workers 1;\n"
             "listen 127.0.0.1:%d;\n"
             "admin 127.0.0.1:%d;\n"
             "access_log off;\n"
             "max_header_size 4k;\n"
             "max_headers 20;\n"
             "max_uri_length 1k;\n"
             "max_body_size 16m;\n"
             "client_header_timeout 1s;\n"
             "client_body_timeout 2s;\n"
             "shutdown_timeout 10s;\n"
             "origin app { server 127.0.0.1:%d; keepalive 8; connect_timeout 1s; "
             "response_timeout 3s; retries 1; }\n"
             "%s\n"
             "site * {\n"
             "  route = /hello { return 200 \"hello from edge\\n\"; }\n"
             "  route = /nothing { return 204; }\n"
             "  route /small/ { max_body_size 1k; origin app; }\n"
             "%s"
             "  route / { origin app; }\n"
             "}\n",
             port, admin, origin_port, extra ? extra : "", routes ? routes : "");
    return buf;
}

static int
setup(void **state)
{
    char conf[4096];
    (void)state;
    if (h_osim_start(&osim, NULL) < 0)
        return -1;
    int port = h_free_port(), admin = h_free_port();
    base_conf(conf, sizeof(conf), port, admin, osim.port, NULL, NULL);
    return h_edge_start(&edge, port, admin, conf);
}

static int
teardown(void **state)
{
    (void)state;
    int rc = h_edge_stop(&edge);
    int orc = h_stop(&osim.proc);
    assert_int_equal(rc, 0);
    assert_int_equal(orc, 0);
    return 0;
}

static void
url(char *out, size_t n, const char *path)
{
    snprintf(out, n, "%s%s", edge.url, path);
}

/* ---- plain proxying ---------------------------------------------------------- */

static void
test_hello_returned_by_edge(void **state)
{
    struct h_resp r;
    char u[256];
    (void)state;
    url(u, sizeof(u), "/hello");
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello from edge\n");
    h_resp_free(&r);
}

/* RFC 9110 15.2: an origin's 103 Early Hints reaches an HTTP/1.1 client
 * before the final answer (its fields not mixed into it); an HTTP/1.0
 * client gets none. (curl itself: the harness keeps the final block only.) */
static void
test_interim_answer_forwarded(void **state)
{
    char u[256], out[4096];
    const char *e, *f;
    (void)state;
    url(u, sizeof(u), "/resp?interim=103&k=early");
    assert_int_equal(h_sh(out, sizeof(out), "curl -s -i --max-time 10 '%s'", u), 0);
    e = strstr(out, "HTTP/1.1 103 Early Hints\r\n");
    f = strstr(out, "HTTP/1.1 200 OK\r\n");
    assert_non_null(e);
    assert_non_null(f);
    assert_true(e < f);
    assert_non_null(strstr(e, "Link: </style.css>; rel=preload; as=style\r\n"));
    assert_null(strstr(f, "Link:")); /* not in the final answer */
    assert_int_equal(h_sh(out, sizeof(out), "curl -s -i --http1.0 --max-time 10 '%s'", u), 0);
    assert_null(strstr(out, " 103 "));
    assert_non_null(strstr(out, " 200 OK\r\n"));
}

static void
check_echo(const char *method, size_t size, bool chunked)
{
    struct h_resp r;
    char u[256];
    char *body = malloc(size ? size : 1);
    const char *chunk_hdrs[] = {"Transfer-Encoding: chunked", NULL};

    for (size_t i = 0; i < size; i++)
        body[i] = (char)('a' + (i * 7) % 26);
    url(u, sizeof(u), "/echo");
    assert_int_equal(h_http(&r, method, u, body, size, chunked ? chunk_hdrs : NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, size);
    assert_memory_equal(r.body, body, size);
    h_resp_free(&r);
    free(body);
}

static void
test_methods_and_bodies(void **state)
{
    static const size_t sizes[] = {0, 1024, 8 * 1024 * 1024};
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        check_echo("POST", sizes[i], false);
        check_echo("PUT", sizes[i], false);
    }
    check_echo("POST", 1024, true);
    check_echo("POST", 3 * 1024 * 1024 + 17, true);
}

static void
test_get_head_delete(void **state)
{
    struct h_resp r;
    char u[256], b[64];
    (void)state;
    url(u, sizeof(u), "/bytes/1024");
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 1024);
    assert_non_null(h_header(&r, "x-request-id", b, sizeof(b)));
    assert_string_equal(h_header(&r, "via", b, sizeof(b)), "1.1 edge");
    h_resp_free(&r);

    assert_int_equal(h_http(&r, "HEAD", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    assert_string_equal(h_header(&r, "content-length", b, sizeof(b)), "1024");
    h_resp_free(&r);

    url(u, sizeof(u), "/api/tables/t/items/k1/s1");
    assert_int_equal(h_http(&r, "PUT", u, "{\"a\":1}", 7, NULL), 0);
    assert_true(r.status == 200 || r.status == 201);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "DELETE", u, NULL, 0, NULL), 0);
    assert_true(r.status == 200 || r.status == 204);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 404);
    h_resp_free(&r);
}

static void
test_chunked_response(void **state)
{
    struct h_resp r;
    char u[256];
    (void)state;
    url(u, sizeof(u), "/chunked?n=10&size=1000");
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 10000);
    h_resp_free(&r);
}

static void
test_header_hygiene(void **state)
{
    struct h_resp r;
    char u[256], b[512];
    const char *hdrs[] = {"X-Request-Id: my-id-123", "X-Custom-Thing: kept",
                          "Connection: close, X-Drop-Me", "X-Drop-Me: secret", NULL};
    (void)state;
    url(u, sizeof(u), "/headers");
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, hdrs), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_header(&r, "x-request-id", b, sizeof(b)), "my-id-123");
    /* what the origin saw */
    assert_non_null(strstr(r.body, "my-id-123"));
    assert_non_null(strstr(r.body, "kept"));
    assert_null(strstr(r.body, "secret"));
    assert_non_null(strstr(r.body, "127.0.0.1")); /* X-Forwarded-For */
    assert_non_null(strstr(r.body, "1.1 edge"));  /* Via */
    h_resp_free(&r);
}

static void
test_keepalive_reuse(void **state)
{
    struct h_resp r;
    char u[256];
    (void)state;
    snprintf(u, sizeof(u), "%s/_stats/reset", osim.url);
    h_http(&r, "POST", u, "", 0, NULL);
    h_resp_free(&r);
    /* separate client connections, one upstream connection */
    for (int i = 0; i < 20; i++) {
        url(u, sizeof(u), "/bytes/100");
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    assert_int_equal(h_stats_int(osim.url, "requests"), 20);
    assert_int_equal(h_stats_int(osim.url, "connections"), 1);
}

static void
test_pipelining_in_order(void **state)
{
    char out[65536];
    const char req[] = "GET /slow?ms=200 HTTP/1.1\r\nHost: a\r\n\r\n"
                       "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
                       "GET /bytes/5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    (void)state;
    int n = h_raw("127.0.0.1", edge.port, req, sizeof(req) - 1, out, sizeof(out) - 1, 5000);
    assert_true(n > 0);
    out[n] = '\0';
    char *a = strstr(out, "HTTP/1.1 200");
    assert_non_null(a);
    char *b = strstr(a + 1, "hello from edge");
    assert_non_null(b);
    char *c = strstr(b, "HTTP/1.1 200");
    assert_non_null(c);
    /* three responses, slow one first */
    int count = 0;
    for (char *p = out; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++)
        count++;
    assert_int_equal(count, 3);
}

/* ---- the failure table ------------------------------------------------------------ */

static int
raw_status(const char *req, size_t len, char *out, size_t outlen)
{
    int n = h_raw("127.0.0.1", edge.port, req, len, out, outlen - 1, 5000);
    if (n < 12)
        return -1;
    out[n] = '\0';
    return (int)strtol(out + 9, NULL, 10);
}

static void
test_cl_te_conflict(void **state)
{
    char out[4096];
    const char req[] = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    (void)state;
    assert_int_equal(raw_status(req, sizeof(req) - 1, out, sizeof(out)), 400);
    assert_non_null(strstr(out, "Connection: close"));
}

static void
test_malformed(void **state)
{
    char out[4096];
    const char req[] = "GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n";
    const char req2[] = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "zz\r\nhello\r\n0\r\n\r\n";
    (void)state;
    assert_int_equal(raw_status(req, sizeof(req) - 1, out, sizeof(out)), 400);
    assert_int_equal(raw_status(req2, sizeof(req2) - 1, out, sizeof(out)), 400);
}

static void
test_limits(void **state)
{
    char out[8192], req[16384];
    int n;
    (void)state;
    /* URI over 1k -> 414 */
    n = snprintf(req, sizeof(req), "GET /%01500d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    assert_int_equal(raw_status(req, (size_t)n, out, sizeof(out)), 414);
    /* header block over 4k -> 431 */
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a\r\nX-Big: %05000d\r\n\r\n", 0);
    assert_int_equal(raw_status(req, (size_t)n, out, sizeof(out)), 431);
    /* more than 20 headers -> 431 */
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 25; i++)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "X-H%d: v\r\n", i);
    n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    assert_int_equal(raw_status(req, (size_t)n, out, sizeof(out)), 431);
    /* body over the route's 1k -> 413 (declared) */
    n = snprintf(req, sizeof(req),
                 "POST /small/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n");
    assert_int_equal(raw_status(req, (size_t)n, out, sizeof(out)), 413);
    /* chunked body over the limit -> 413 */
    n = snprintf(req, sizeof(req),
                 "POST /small/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "800\r\n%02048d\r\n0\r\n\r\n", 0);
    assert_int_equal(raw_status(req, (size_t)n, out, sizeof(out)), 413);
}

static void
test_no_route_no_site(void **state)
{
    char out[4096];
    struct h_resp r;
    char u[256];
    (void)state;
    url(u, sizeof(u), "/hello");
    /* the only site is '*': everything matches a site; check the no-route path */
    const char req[] = "GET nothing HTTP/1.1\r\nHost: a\r\n\r\n";
    int st = raw_status(req, sizeof(req) - 1, out, sizeof(out));
    assert_true(st == 400 || st == 404);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    h_resp_free(&r);
}

/* An error answered from inside the parser (417 here) on a keep-alive
 * connection: the connection stays usable and the engine survives (it used
 * to free the request under llhttp and crash on the next callback). */
static void
test_error_keeps_connection(void **state)
{
    const char req[] = "GET /a HTTP/1.1\r\nHost: a\r\nExpect: tea\r\n\r\n"
                       "GET /b HTTP/1.1\r\nHost: a\r\nExpect: tea\r\n\r\n"
                       "GET /c HTTP/1.1\r\nHost: a\r\nExpect: tea\r\nConnection: close\r\n\r\n";
    char out[8192];
    pid_t engine = h_child_pid(edge.proc.pid);
    const char *p = out;
    int n = 0;
    (void)state;
    assert_true(h_raw("127.0.0.1", edge.port, req, sizeof(req) - 1, out, sizeof(out), 2000) > 0);
    while ((p = strstr(p, "HTTP/1.1 417 Expectation Failed")) != NULL) {
        n++;
        p++;
    }
    assert_int_equal(n, 3);
    assert_int_equal(h_child_pid(edge.proc.pid), engine);
}

/* Edge's own answers: a 204 carries no Content-Length (RFC 9110 8.6), a
 * 200 the length of its body. */
static void
test_own_answers_framing(void **state)
{
    const char a[] = "GET /nothing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    const char b[] = "GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    char out[4096];
    (void)state;
    assert_int_equal(raw_status(a, sizeof(a) - 1, out, sizeof(out)), 204);
    assert_null(strcasestr(out, "content-length"));
    assert_non_null(strstr(out, "X-Request-Id: "));
    assert_int_equal(raw_status(b, sizeof(b) - 1, out, sizeof(out)), 200);
    assert_non_null(strstr(out, "Content-Length: 16\r\n"));
    assert_non_null(strstr(out, "Content-Type: text/plain"));
}

/* Slowloris: a client dribbling its head gets 408, others are served meanwhile. */
static void
test_slowloris_408(void **state)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)edge.port)};
    char out[4096];
    struct h_resp r;
    char u[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    double t0 = now_ms();
    (void)state;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_true(write(fd, "GET / HTTP/1.1\r\n", 16) == 16);
    url(u, sizeof(u), "/hello");
    for (int i = 0; i < 3; i++) {
        assert_true(write(fd, "X-A: b\r\n", 8) == 8);
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
        usleep(200 * 1000);
    }
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t n = read(fd, out, sizeof(out) - 1);
    assert_true(n > 12);
    out[n] = '\0';
    assert_int_equal((int)strtol(out + 9, NULL, 10), 408);
    double took = now_ms() - t0;
    assert_true(took >= 900 && took < 2500); /* client_header_timeout 1s */
    close(fd);
}

static void
test_origin_down_502(void **state)
{
    struct h_edge e2;
    char conf[4096], extra[256];
    struct h_resp r;
    char u[256];
    int dead = h_free_port();
    (void)state;
    int port = h_free_port(), admin = h_free_port();
    snprintf(extra, sizeof(extra), "origin dead { server 127.0.0.1:%d; retries 0; }", dead);
    base_conf(conf, sizeof(conf), port, admin, osim.port, extra, "  route /d/ { origin dead; }\n");
    assert_int_equal(h_edge_start(&e2, port, admin, conf), 0);
    snprintf(u, sizeof(u), "%s/d/x", e2.url);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 502);
    assert_non_null(strstr(r.body, "connect"));
    h_resp_free(&r);
    assert_int_equal(h_edge_stop(&e2), 0);
}

static void
test_origin_timeout_504(void **state)
{
    struct h_resp r;
    char u[256];
    (void)state;
    url(u, sizeof(u), "/slow?ms=4000"); /* response_timeout 3s */
    double t0 = now_ms();
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 504);
    assert_true(now_ms() - t0 < 3800);
    h_resp_free(&r);
}

/* ---- operations ------------------------------------------------------------------- */

static void
test_metrics_and_status(void **state)
{
    struct h_resp r;
    char u[256];
    (void)state;
    snprintf(u, sizeof(u), "%s/metrics", edge.admin_url);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "edge_requests_total{class=\"2xx\"}"));
    assert_non_null(strstr(r.body, "edge_request_duration_seconds_bucket"));
    assert_non_null(strstr(r.body, "edge_upstream_connect_failures_total"));
    h_resp_free(&r);
    snprintf(u, sizeof(u), "%s/status", edge.admin_url);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"workers\":1"));
    h_resp_free(&r);
    snprintf(u, sizeof(u), "%s/healthz", edge.admin_url);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
}

static void
test_engine_restart_after_sigkill(void **state)
{
    struct h_resp r;
    char u[256];
    pid_t engine = h_child_pid(edge.proc.pid);
    (void)state;
    assert_true(engine > 0);
    kill(engine, SIGKILL);
    double t0 = now_ms();
    url(u, sizeof(u), "/hello");
    for (;;) {
        if (h_http(&r, "GET", u, NULL, 0, NULL) == 0 && r.status == 200) {
            h_resp_free(&r);
            break;
        }
        h_resp_free(&r);
        assert_true(now_ms() - t0 < 1000);
        usleep(20 * 1000);
    }
    assert_true(now_ms() - t0 < 1000);
    assert_true(h_child_pid(edge.proc.pid) != engine);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_returned_by_edge),
        cmocka_unit_test(test_get_head_delete),
        cmocka_unit_test(test_methods_and_bodies),
        cmocka_unit_test(test_chunked_response),
        cmocka_unit_test(test_header_hygiene),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_pipelining_in_order),
        cmocka_unit_test(test_cl_te_conflict),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_no_route_no_site),
        cmocka_unit_test(test_interim_answer_forwarded),
        cmocka_unit_test(test_error_keeps_connection),
        cmocka_unit_test(test_own_answers_framing),
        cmocka_unit_test(test_slowloris_408),
        cmocka_unit_test(test_origin_down_502),
        cmocka_unit_test(test_origin_timeout_504),
        cmocka_unit_test(test_metrics_and_status),
        cmocka_unit_test(test_engine_restart_after_sigkill),
    };
    return H_RUN(tests, setup, teardown);
}
