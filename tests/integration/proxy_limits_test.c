/*
 * Every limit and timeout of the proxy core, each with a small value, end to
 * end: client body / keep-alive / send timeouts, max_connections,
 * shutdown_timeout, origin connect / idle timeouts, passive health and
 * backup servers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "tests/integration/edge.h"

static struct h_osim osim;

static int
setup(void **state)
{
    (void)state;
    return h_osim_start(&osim, NULL);
}

static int
teardown(void **state)
{
    (void)state;
    return h_osim_stop(&osim) == 0 ? 0 : -1;
}

/* An edge with 'top' directives and one origin block 'origin' (NULL = osim). */
static int
start_edge(struct h_edge *e, const char *top, const char *origin)
{
    char conf[4096], def[256];
    int port = h_free_port(), admin = h_free_port();
    if (origin == NULL) {
        snprintf(def, sizeof(def), "origin app { server 127.0.0.1:%d; }", osim.port);
        origin = def;
    }
    snprintf(conf, sizeof(conf),
             "workers 1;\nlisten 127.0.0.1:%d;\nadmin 127.0.0.1:%d;\naccess_log off;\n%s\n%s\n"
             "site * { route = /hello { return 200 \"hi\\n\"; } route / { origin app; } }\n",
             port, admin, top ? top : "", origin);
    return h_edge_start(e, port, admin, conf);
}

static int
connect_to(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF or timeout; returns bytes read, -1 on timeout with nothing. */
static long
read_all(int fd, char *buf, size_t n, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    size_t got = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (got < n - 1) {
        ssize_t r = read(fd, buf + got, n - 1 - got);
        if (r < 0 && got == 0)
            return -1;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    return (long)got;
}

static void
test_client_body_timeout_408(void **state)
{
    struct h_edge e;
    char out[4096];
    (void)state;
    assert_int_equal(start_edge(&e, "client_body_timeout 500ms;", NULL), 0);
    int fd = connect_to(e.port);
    const char head[] = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789";
    double t0 = h_now_ms();
    assert_int_equal(write(fd, head, sizeof(head) - 1), (ssize_t)sizeof(head) - 1);
    assert_true(read_all(fd, out, sizeof(out), 3000) > 12);
    double took = h_now_ms() - t0;
    assert_int_equal((int)strtol(out + 9, NULL, 10), 408);
    assert_true(took >= 400 && took < 1500);
    close(fd);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_keepalive_timeout_closes_idle(void **state)
{
    struct h_edge e;
    char out[4096];
    (void)state;
    assert_int_equal(start_edge(&e, "keepalive_timeout 300ms;", NULL), 0);
    int fd = connect_to(e.port);
    const char req[] = "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t n = read(fd, out, sizeof(out));
    assert_true(n > 0);
    double t0 = h_now_ms();
    n = read(fd, out, sizeof(out)); /* the next read sees the close */
    double took = h_now_ms() - t0;
    assert_int_equal(n, 0);
    assert_true(took >= 200 && took < 1200);
    close(fd);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_max_connections_503(void **state)
{
    struct h_edge e;
    char out[4096];
    (void)state;
    assert_int_equal(start_edge(&e, "max_connections 2;", NULL), 0);
    h_sleep_ms(200); /* the start-up probe's connection must be gone first */
    int a = connect_to(e.port), b = connect_to(e.port);
    h_sleep_ms(100);
    int c = connect_to(e.port);
    long got = read_all(c, out, sizeof(out), 2000);
    if (got <= 12)
        print_message("max_connections: read %ld (%s), errno %d\n", got, got > 0 ? out : "", errno);
    assert_true(got > 12);
    assert_int_equal((int)strtol(out + 9, NULL, 10), 503);
    close(a);
    close(b);
    close(c);
    h_sleep_ms(100);
    assert_true(h_edge_metric(&e, "edge_connections_rejected_total") >= 1);
    /* with room again, requests are served */
    struct h_resp r;
    char u[128];
    snprintf(u, sizeof(u), "%s/hello", e.url);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_send_timeout_drops_client_that_does_not_read(void **state)
{
    struct h_edge e;
    (void)state;
    assert_int_equal(start_edge(&e, "send_timeout 500ms;", NULL), 0);
    int fd = connect_to(e.port);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    const char req[] = "GET /bytes/104857600 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    /* never read: after send_timeout the edge lets go of the connection */
    long active = -1;
    for (int i = 0; i < 40; i++) {
        h_sleep_ms(100);
        active = h_edge_metric(&e, "edge_connections_active");
        if (active == 0)
            break;
    }
    assert_int_equal(active, 0);
    close(fd);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_shutdown_timeout_bounds_the_drain(void **state)
{
    struct h_edge e;
    struct h_bg b;
    (void)state;
    assert_int_equal(start_edge(&e, "shutdown_timeout 500ms;", NULL), 0);
    h_bg_start(&b, e.url, "/slow?ms=5000");
    h_sleep_ms(200);
    double t0 = h_now_ms();
    assert_int_equal(h_edge_stop(&e), 0);
    double took = h_now_ms() - t0;
    assert_true(took >= 400 && took < 2000);
    h_bg_join(&b);
    assert_true(b.rc != 0 || b.r.status != 200); /* cut, not answered */
    h_resp_free(&b.r);
}

static void
test_connect_timeout_504(void **state)
{
    struct h_edge e;
    char origin[256];
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fillers[4];
    (void)state;
    /* a listener that never accepts, its queue full: SYNs are dropped */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    int port = ntohs(sa.sin_port);
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    h_sleep_ms(100);
    snprintf(origin, sizeof(origin),
             "origin app { server 127.0.0.1:%d; connect_timeout 300ms; retries 0; }", port);
    assert_int_equal(start_edge(&e, NULL, origin), 0);
    struct h_resp r;
    char u[128];
    snprintf(u, sizeof(u), "%s/x", e.url);
    double t0 = h_now_ms();
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    double took = h_now_ms() - t0;
    assert_int_equal(r.status, 504);
    assert_non_null(strstr(r.body, "timed out"));
    assert_true(took >= 250 && took < 1500);
    h_resp_free(&r);
    assert_int_equal(h_edge_stop(&e), 0);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(lfd);
}

/* An origin that sends a head and part of the body, then stalls. */
struct staller {
    pthread_t t;
    int lfd, port;
};

static void *
staller_main(void *arg)
{
    struct staller *s = arg;
    char buf[4096];
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof(buf));
    (void)n;
    const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
    n = write(fd, resp, sizeof(resp) - 1);
    h_sleep_ms(3000);
    close(fd);
    return NULL;
}

static void
test_idle_timeout_cuts_stalled_body(void **state)
{
    struct h_edge e;
    struct staller s;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    char origin[256];
    (void)state;
    s.lfd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s.lfd, 8), 0);
    getsockname(s.lfd, (struct sockaddr *)&sa, &len);
    s.port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s.t, NULL, staller_main, &s), 0);
    snprintf(origin, sizeof(origin),
             "origin app { server 127.0.0.1:%d; idle_timeout 400ms; retries 0; }", s.port);
    assert_int_equal(start_edge(&e, NULL, origin), 0);
    struct h_resp r;
    char u[128];
    snprintf(u, sizeof(u), "%s/x", e.url);
    double t0 = h_now_ms();
    int rc = h_http(&r, "GET", u, NULL, 0, NULL);
    double took = h_now_ms() - t0;
    /* the head went out, so the only signal is a cut connection */
    assert_int_equal(rc, -1);
    assert_int_equal(r.len, 10);
    assert_true(took >= 300 && took < 2000);
    h_resp_free(&r);
    assert_true(h_edge_metric(&e, "edge_upstream_timeouts_total") >= 1);
    assert_int_equal(h_edge_stop(&e), 0);
    pthread_join(s.t, NULL);
    close(s.lfd);
}

static void
test_passive_health_and_backup(void **state)
{
    struct h_edge e;
    char origin[512], u[128];
    struct h_resp r;
    int dead = h_free_port();
    (void)state;
    snprintf(origin, sizeof(origin),
             "origin app { server 127.0.0.1:%d; server 127.0.0.1:%d; retries 1; max_fails 1; "
             "fail_timeout 1s; keepalive 0; }",
             dead, osim.port);
    assert_int_equal(start_edge(&e, NULL, origin), 0);
    snprintf(u, sizeof(u), "%s/bytes/1", e.url);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    /* the dead server failed once, then was skipped for fail_timeout */
    assert_int_equal(h_edge_metric(&e, "edge_upstream_connect_failures_total"), 1);
    h_sleep_ms(1200);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    /* probed again once after fail_timeout */
    assert_int_equal(h_edge_metric(&e, "edge_upstream_connect_failures_total"), 2);
    assert_int_equal(h_edge_stop(&e), 0);

    /* a backup serves only when the primary is down */
    snprintf(origin, sizeof(origin),
             "origin app { server 127.0.0.1:%d; server 127.0.0.1:%d backup; retries 1; }", dead,
             osim.port);
    assert_int_equal(start_edge(&e, NULL, origin), 0);
    snprintf(u, sizeof(u), "%s/bytes/1", e.url);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    assert_int_equal(h_edge_stop(&e), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_body_timeout_408),
        cmocka_unit_test(test_keepalive_timeout_closes_idle),
        cmocka_unit_test(test_max_connections_503),
        cmocka_unit_test(test_send_timeout_drops_client_that_does_not_read),
        cmocka_unit_test(test_shutdown_timeout_bounds_the_drain),
        cmocka_unit_test(test_connect_timeout_504),
        cmocka_unit_test(test_idle_timeout_cuts_stalled_body),
        cmocka_unit_test(test_passive_health_and_backup),
    };
    return H_RUN(tests, setup, teardown);
}
