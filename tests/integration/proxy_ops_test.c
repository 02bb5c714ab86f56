/*
 * Proxy operations, end to end: reload (SIGHUP and admin) without dropping
 * in-flight requests, bad reloads, graceful stop, streaming 1 GiB both ways
 * with bounded memory, WebSocket tunnelling, Expect: 100-continue,
 * absolute-form targets, HTTP/1.0, the access log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

static void
make_conf(char *buf, size_t n, int port, int admin, const char *top, const char *routes)
{
    snprintf(buf, n,
             "workers 2;\n"
             "listen 127.0.0.1:%d;\n"
             "admin 127.0.0.1:%d;\n"
             "shutdown_timeout 10s;\n"
             "%s\n"
             "origin app { server 127.0.0.1:%d; keepalive 8; response_timeout 30s; }\n"
             "site * {\n"
             "%s"
             "  route / { origin app; }\n"
             "}\n",
             port, admin, top ? top : "access_log off;", osim.port, routes ? routes : "");
}

static int
start_edge_with(int (*start)(struct h_edge *, int, int, const char *), struct h_edge *e,
                const char *top, const char *routes)
{
    char conf[4096];
    int port = h_free_port(), admin = h_free_port();
    make_conf(conf, sizeof(conf), port, admin, top, routes);
    return start(e, port, admin, conf);
}

static int
start_edge(struct h_edge *e, const char *top, const char *routes)
{
    return start_edge_with(h_edge_start, e, top, routes);
}

/* the memory tests: a small ASan quarantine (h_edge_start_lean) */
static int
start_edge_small_quarantine(struct h_edge *e, const char *top)
{
    return start_edge_with(h_edge_start_lean, e, top, NULL);
}

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

static long
get_status(const char *base, const char *path, char *body, size_t n)
{
    struct h_resp r;
    char u[256];
    long st;
    snprintf(u, sizeof(u), "%s%s", base, path);
    if (h_http(&r, "GET", u, NULL, 0, NULL) != 0) {
        h_resp_free(&r);
        return -1;
    }
    st = r.status;
    if (body != NULL)
        snprintf(body, n, "%s", r.body ? r.body : "");
    h_resp_free(&r);
    return st;
}

static void
test_reload_keeps_inflight_and_bad_conf_keeps_old(void **state)
{
    struct h_edge e;
    struct h_bg slow;
    char conf[4096], body[512], u[256];
    struct h_resp r;
    (void)state;

    assert_int_equal(start_edge(&e, NULL, NULL), 0);
    h_bg_start(&slow, e.url, "/slow?ms=5000");
    h_sleep_ms(300);
    /* a new route, through the admin API */
    make_conf(conf, sizeof(conf), e.port, e.admin_port, NULL,
              "  route = /new { return 200 \"new route\\n\"; }\n");
    assert_int_equal(h_edge_write_conf(&e, conf), 0);
    snprintf(u, sizeof(u), "%s/reload", e.admin_url);
    assert_int_equal(h_http(&r, "POST", u, "", 0, NULL), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(get_status(e.url, "/new", body, sizeof(body)), 200);
    assert_string_equal(body, "new route\n");

    /* a bad conf: refused with file:line:col, the running one stays */
    assert_int_equal(h_edge_write_conf(&e, "workers 2;\nlisten 127.0.0.1:1;\nrout / {}\n"), 0);
    assert_int_equal(h_http(&r, "POST", u, "", 0, NULL), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, ".conf:3:1: unknown directive 'rout'"));
    h_resp_free(&r);
    assert_int_equal(get_status(e.url, "/new", NULL, 0), 200);

    /* SIGHUP to the supervisor works the same */
    make_conf(conf, sizeof(conf), e.port, e.admin_port, NULL,
              "  route = /hup { return 200 \"hup\\n\"; }\n");
    assert_int_equal(h_edge_write_conf(&e, conf), 0);
    h_kill(&e.proc, SIGHUP);
    long st = -1;
    for (int i = 0; i < 50 && st != 200; i++) {
        h_sleep_ms(50);
        st = get_status(e.url, "/hup", NULL, 0);
    }
    assert_int_equal(st, 200);
    assert_int_equal(get_status(e.url, "/new", NULL, 0), 404);

    /* the request that started before all this finished normally */
    h_bg_join(&slow);
    assert_int_equal(slow.rc, 0);
    assert_int_equal(slow.r.status, 200);
    h_resp_free(&slow.r);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_sigterm_drains(void **state)
{
    struct h_edge e;
    struct h_bg slow;
    (void)state;

    assert_int_equal(start_edge(&e, NULL, NULL), 0);
    h_bg_start(&slow, e.url, "/slow?ms=1500");
    h_sleep_ms(300);
    double t0 = h_now_ms();
    assert_int_equal(h_edge_stop(&e), 0); /* waits for the exit */
    double took = h_now_ms() - t0;
    h_bg_join(&slow);
    assert_int_equal(slow.rc, 0);
    assert_int_equal(slow.r.status, 200);
    h_resp_free(&slow.r);
    assert_true(took >= 900 && took < 3000);
}

/* ---- streaming with bounded memory ------------------------------------------------- */

struct sink {
    uint64_t bytes;
    pid_t engine;
    long rss0, rss_max;
    unsigned calls;
};

static int
sink_body(const void *data, size_t len, void *arg)
{
    struct sink *s = arg;
    (void)data;
    s->bytes += len;
    if ((++s->calls & 255) == 0) {
        long rss = h_rss_kb(s->engine);
        if (rss > s->rss_max)
            s->rss_max = rss;
    }
    return 0;
}

static void
test_stream_1gib_download(void **state)
{
    struct h_edge e;
    struct h_client *cl = h_client_new();
    struct h_opts o = {.timeout_ms = 120000, .on_body = sink_body};
    struct sink s = {0};
    struct h_resp r;
    char u[256];
    (void)state;

    assert_int_equal(start_edge_small_quarantine(&e, NULL), 0);
    s.engine = h_child_pid(e.proc.pid);
    s.rss0 = s.rss_max = h_rss_kb(s.engine);
    o.arg = &s;
    snprintf(u, sizeof(u), "%s/bytes/1073741824", e.url);
    assert_int_equal(h_client_http_opts(cl, &r, &o, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_true(s.bytes == 1073741824ull);
    h_resp_free(&r);
    h_client_free(cl);
    print_message("download: engine RSS %ld KiB -> max %ld KiB\n", s.rss0, s.rss_max);
    assert_true(s.rss_max - s.rss0 < 32 * 1024);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_stream_1gib_upload(void **state)
{
    struct h_edge e;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    static char chunk[65536];
    char head[256], out[4096];
    const uint64_t total = 1073741824ull;
    uint64_t sent = 0;
    long rss0, rss_max;
    pid_t engine;
    int fd, n;
    (void)state;

    assert_int_equal(start_edge_small_quarantine(&e, "access_log off; max_body_size 2g;"), 0);
    engine = h_child_pid(e.proc.pid);
    rss0 = rss_max = h_rss_kb(engine);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_port = htons((uint16_t)e.port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    n = snprintf(head, sizeof(head),
                 "POST /status/200 HTTP/1.1\r\nHost: a\r\nContent-Length: %llu\r\n"
                 "Connection: close\r\n\r\n",
                 (unsigned long long)total);
    assert_int_equal(write(fd, head, (size_t)n), n);
    for (unsigned i = 0; sent < total; i++) {
        size_t want = total - sent < sizeof(chunk) ? (size_t)(total - sent) : sizeof(chunk);
        ssize_t w = write(fd, chunk, want);
        assert_true(w > 0);
        sent += (uint64_t)w;
        if ((i & 1023) == 0) {
            long rss = h_rss_kb(engine);
            if (rss > rss_max)
                rss_max = rss;
        }
    }
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t got = read(fd, out, sizeof(out) - 1);
    assert_true(got > 12);
    out[got] = '\0';
    assert_int_equal((int)strtol(out + 9, NULL, 10), 200);
    close(fd);
    print_message("upload: engine RSS %ld KiB -> max %ld KiB\n", rss0, rss_max);
    assert_true(rss_max - rss0 < 32 * 1024);
    assert_int_equal(h_edge_stop(&e), 0);
}

/* ---- protocol corners ---------------------------------------------------------------- */

static void
test_expect_continue_absolute_form_http10(void **state)
{
    struct h_edge e;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char out[4096];
    long n;
    (void)state;

    assert_int_equal(start_edge(&e, NULL, "  route = /hello { return 200 \"hello\\n\"; }\n"), 0);
    /* Expect: 100-continue: the interim answer comes before the body is sent */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_port = htons((uint16_t)e.port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char head[] = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                        "Expect: 100-continue\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(fd, head, sizeof(head) - 1), (ssize_t)sizeof(head) - 1);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t got = read(fd, out, sizeof(out) - 1);
    assert_true(got > 0);
    out[got] = '\0';
    assert_non_null(strstr(out, "HTTP/1.1 100 Continue"));
    assert_int_equal(write(fd, "abcde", 5), 5);
    size_t total = 0;
    while ((got = read(fd, out + total, sizeof(out) - 1 - total)) > 0)
        total += (size_t)got;
    out[total] = '\0';
    assert_non_null(strstr(out, "HTTP/1.1 200"));
    assert_non_null(strstr(out, "abcde"));
    close(fd);

    /* absolute-form target */
    const char abs[] = "GET http://example.com/hello HTTP/1.1\r\nHost: other\r\n"
                       "Connection: close\r\n\r\n";
    n = h_raw("127.0.0.1", e.port, abs, sizeof(abs) - 1, out, sizeof(out), 5000);
    assert_true(n > 0);
    assert_non_null(strstr(out, "HTTP/1.1 200"));
    assert_non_null(strstr(out, "hello"));

    /* HTTP/1.0 without Host: answered, then closed */
    const char h10[] = "GET /bytes/10 HTTP/1.0\r\n\r\n";
    n = h_raw("127.0.0.1", e.port, h10, sizeof(h10) - 1, out, sizeof(out), 5000);
    assert_true(n > 0);
    assert_non_null(strstr(out, " 200 "));
    assert_non_null(strstr(out, "Content-Length: 10"));
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_websocket_tunnel(void **state)
{
    struct h_edge e;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char out[4096];
    (void)state;

    assert_int_equal(start_edge(&e, NULL, NULL), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_port = htons((uint16_t)e.port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char up[] = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_int_equal(write(fd, up, sizeof(up) - 1), (ssize_t)sizeof(up) - 1);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t got = read(fd, out, sizeof(out) - 1);
    assert_true(got > 0);
    out[got] = '\0';
    assert_non_null(strstr(out, "HTTP/1.1 101"));
    assert_non_null(strstr(out, "Upgrade: websocket"));
    /* both ways, several times: origin-sim echoes whatever follows the 101 */
    for (int i = 0; i < 3; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "frame-%d", i);
        assert_int_equal(write(fd, msg, (size_t)len), len);
        size_t total = 0;
        while (total < (size_t)len && (got = read(fd, out + total, sizeof(out) - total)) > 0)
            total += (size_t)got;
        assert_int_equal(total, (size_t)len);
        assert_memory_equal(out, msg, (size_t)len);
    }
    close(fd);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_access_log_json(void **state)
{
    struct h_edge e;
    char top[600], u[256], line[4096];
    const char *hdrs[] = {"X-Request-Id: trace-abc-1", NULL};
    struct h_resp r;
    const char *path = h_write_file("access.log", "%s", "");
    (void)state;

    snprintf(top, sizeof(top), "access_log %s;", path);
    assert_int_equal(start_edge(&e, top, NULL), 0);
    snprintf(u, sizeof(u), "%s/bytes/42?x=1", e.url);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, hdrs), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(h_edge_stop(&e), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_non_null(strstr(line, "\"request_id\":\"trace-abc-1\""));
    assert_non_null(strstr(line, "\"method\":\"GET\""));
    assert_non_null(strstr(line, "\"path\":\"/bytes/42?x=1\""));
    assert_non_null(strstr(line, "\"status\":200"));
    assert_non_null(strstr(line, "\"bytes\":42"));
    assert_non_null(strstr(line, "\"upstream\":\"127.0.0.1:"));
    assert_non_null(strstr(line, "\"route\":\"/\""));
    assert_non_null(strstr(line, "\"client\":\"127.0.0.1\""));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_keeps_inflight_and_bad_conf_keeps_old),
        cmocka_unit_test(test_sigterm_drains),
        cmocka_unit_test(test_stream_1gib_download),
        cmocka_unit_test(test_stream_1gib_upload),
        cmocka_unit_test(test_expect_continue_absolute_form_http10),
        cmocka_unit_test(test_websocket_tunnel),
        cmocka_unit_test(test_access_log_json),
    };
    return H_RUN(tests, setup, teardown);
}
