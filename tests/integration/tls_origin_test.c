/*
 * TLS to origins, end to end, all on loopback: a "back" edge with a
 * `listen … tls` listener in front of origin-sim plays the https origin,
 * and the "front" edge under test reaches it through origins written
 * `server https://…`. Certificates are made at test time with the openssl
 * CLI: a test CA, an origin certificate for origin.test and 127.0.0.1 that
 * it signed, a self-signed one (SNI self.test on the back edge) and a CA
 * the front does not trust.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/edge.h"

static struct h_osim osim;
static struct h_edge back, front;
static int back_tls, stall_port, stall_fd = -1, dead_port;
static char dir[512];
static char edge_bin[4096];

static const char gen_sh[] =
    "set -e\n"
    "k='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
    "leaf='-addext basicConstraints=critical,CA:FALSE'\n"
    "openssl req -x509 $k -keyout ca.key -out ca.crt -days 30 -subj '/CN=edge test CA'\n"
    "openssl req -x509 $k -keyout other.key -out other.crt -days 30 -subj '/CN=other CA'\n"
    "openssl req -x509 -CA ca.crt -CAkey ca.key $k $leaf -keyout origin.key -out origin.crt \\\n"
    "    -days 30 -subj '/CN=origin.test' -addext subjectAltName=DNS:origin.test,IP:127.0.0.1\n"
    "openssl req -x509 $k $leaf -keyout self.key -out self.crt -days 30 -subj '/CN=self.test' \\\n"
    "    -addext subjectAltName=DNS:self.test\n";


/* A TCP listener that never accepts: connects succeed (the kernel's
 * backlog), handshakes never get an answer. */
static int
stall_listen(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int
start_back(void)
{
    char conf[4096];
    int port = h_free_port(), admin = h_free_port();

    back_tls = h_free_port();
    snprintf(conf, sizeof(conf),
             "workers 2;\n"
             "listen 127.0.0.1:%d;\n"
             "listen 127.0.0.1:%d tls;\n"
             "admin 127.0.0.1:%d;\n"
             "tls_certificate %s/origin.crt %s/origin.key default;\n"
             "origin sim { server 127.0.0.1:%d; }\n"
             "site self.test {\n"
             "  tls_certificate %s/self.crt %s/self.key;\n"
             "  route / { origin sim; }\n"
             "}\n"
             "site * { route / { origin sim; } }\n",
             port, back_tls, admin, dir, dir, osim.port, dir, dir);
    if (h_edge_start(&back, port, admin, conf) < 0)
        return -1;
    return h_wait_port("127.0.0.1", back_tls, 5000);
}

static int
start_front(void)
{
    char conf[16384];
    int port = h_free_port(), admin = h_free_port();
    int b = back_tls;

    snprintf(conf, sizeof(conf),
             "workers 1;\n"
             "listen 127.0.0.1:%d;\n"
             "admin 127.0.0.1:%d;\n"
             "cache_dir %s/cache max_size=64m;\n"
             "origin plain { server 127.0.0.1:%d; }\n"
             /* verified by name (SNI origin.test) against the test CA */
             "origin ok { server https://127.0.0.1:%d; tls_ca %s/ca.crt;\n"
             "            tls_server_name origin.test; }\n"
             /* verified by IP (no SNI); a new connection per request */
             "origin fresh { server https://127.0.0.1:%d; tls_ca %s/ca.crt; keepalive 0; }\n"
             "origin untrusted { server https://127.0.0.1:%d; tls_ca %s/other.crt;\n"
             "                   tls_server_name origin.test; }\n"
             "origin mismatch { server https://127.0.0.1:%d; tls_ca %s/ca.crt;\n"
             "                  tls_server_name wrong.test; }\n"
             "origin self { server https://127.0.0.1:%d; tls_ca %s/ca.crt;\n"
             "              tls_server_name self.test; }\n"
             "origin insecure { server 127.0.0.1:%d; tls on; tls_verify off;\n"
             "                  tls_server_name self.test; }\n"
             /* origin-sim speaks plain HTTP: the handshake fails */
             "origin notls { server https://127.0.0.1:%d; }\n"
             /* the first server fails its handshake: retried on the second */
             "origin retry { server https://127.0.0.1:%d; server https://127.0.0.1:%d;\n"
             "               tls_ca %s/ca.crt; tls_server_name origin.test; max_fails 100; }\n"
             "origin stall { server https://127.0.0.1:%d; connect_timeout 300ms; retries 0; }\n"
             "origin dead { server https://127.0.0.1:%d; }\n"
             "site plain.test { route / { origin plain; cache on; } }\n"
             "site ok.test { route / { origin ok; cache on; } }\n"
             "site okn.test { route / { origin ok; } }\n"
             "site fresh.test { route / { origin fresh; } }\n"
             "site untrusted.test { route / { origin untrusted; } }\n"
             "site mismatch.test { route / { origin mismatch; } }\n"
             "site self.test { route / { origin self; } }\n"
             "site insecure.test { route / { origin insecure; } }\n"
             "site notls.test { route / { origin notls; } }\n"
             "site retry.test { route / { origin retry; } }\n"
             "site stall.test { route / { origin stall; } }\n"
             "site dead.test { route / { origin dead; } }\n",
             port, admin, dir, osim.port, b, dir, b, dir, b, dir, b, dir, b, dir, b, osim.port,
             osim.port, b, dir, stall_port, dead_port);
    return h_edge_start(&front, port, admin, conf);
}

static int
setup(void **state)
{
    char out[4096];

    (void)state;
    snprintf(dir, sizeof(dir), "%s", h_tmpdir());
    if (realpath(h_build_path("edge"), edge_bin) == NULL)
        return -1;
    if (h_write_file("gen.sh", "%s", gen_sh) == NULL)
        return -1;
    if (h_sh(out, sizeof(out), "sh gen.sh") != 0) {
        fprintf(stderr, "certificate generation failed:\n%s\n", out);
        return -1;
    }
    stall_port = h_free_port();
    dead_port = h_free_port(); /* nothing listens there */
    if ((stall_fd = stall_listen(stall_port)) < 0)
        return -1;
    if (h_osim_start(&osim, NULL) < 0 || start_back() < 0 || start_front() < 0)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(h_edge_stop(&front), 0);
    assert_int_equal(h_edge_stop(&back), 0);
    assert_int_equal(h_stop(&osim.proc), 0);
    close(stall_fd);
    return 0;
}

/* GET http://front/path with Host: host. */
static void
get(struct h_resp *r, const char *host, const char *path)
{
    char u[512], hdr[300];
    const char *hdrs[] = {hdr, NULL};

    snprintf(u, sizeof(u), "%s%s", front.url, path);
    snprintf(hdr, sizeof(hdr), "Host: %s", host);
    if (h_http(r, "GET", u, NULL, 0, hdrs) != 0)
        fail_msg("GET %s (Host: %s): %s", path, host, r->error);
}

static long
fmetric(const char *name)
{
    return h_edge_metric(&front, name);
}

/* ---- (1) an https origin answers as a plain one, and is cached --------------------------- */

static void
test_https_origin_like_plain(void **state)
{
    struct h_resp p, r;
    char b[256], u[256];
    const char *path = "/resp?cc=max-age%3D60&size=30000";
    long h0 = fmetric("edge_upstream_tls_handshakes_total");
    size_t size = 3 * 1024 * 1024 + 7;
    char *body = malloc(size);
    const char *hdrs[] = {"Host: okn.test", NULL};
    (void)state;

    /* a streamed body bigger than every buffer on the way, through both TLS hops */
    get(&p, "plain.test", "/bytes/4000000");
    get(&r, "ok.test", "/bytes/4000000");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 4000000);
    assert_int_equal(r.len, p.len);
    assert_memory_equal(r.body, p.body, p.len);
    h_resp_free(&r);
    h_resp_free(&p);

    /* miss, then hit: the cache does not care how the origin was reached */
    get(&p, "plain.test", path);
    get(&r, "ok.test", path);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 30000);
    assert_memory_equal(r.body, p.body, p.len);
    assert_non_null(strstr(h_header(&r, "cache-status", b, sizeof(b)), "fwd=uri-miss"));
    h_resp_free(&r);
    get(&r, "ok.test", path);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, p.body, p.len);
    assert_non_null(strstr(h_header(&r, "cache-status", b, sizeof(b)), "hit"));
    h_resp_free(&r);
    h_resp_free(&p);

    /* a request body, and a chunked answer */
    assert_non_null(body);
    for (size_t i = 0; i < size; i++)
        body[i] = (char)('a' + (i * 7) % 26);
    snprintf(u, sizeof(u), "%s/echo", front.url);
    assert_int_equal(h_http(&r, "POST", u, body, size, hdrs), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, size);
    assert_memory_equal(r.body, body, size);
    h_resp_free(&r);
    free(body);
    get(&r, "okn.test", "/chunked?n=20&size=5000");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 100000);
    h_resp_free(&r);

    /* verified by IP address (the certificate has IP:127.0.0.1; no SNI) */
    get(&r, "fresh.test", "/status/200");
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_true(fmetric("edge_upstream_tls_handshakes_total") > h0);
    assert_int_equal(fmetric("edge_upstream_tls_failures_total"), 0);
}

/* ---- (2) verification failures: 502 naming TLS and the reason ------------------------------- */

static void
check_502(const char *host, const char *want)
{
    struct h_resp r;
    char full[512];

    get(&r, host, "/status/200");
    assert_int_equal(r.status, 502);
    snprintf(full, sizeof(full), "%s", want);
    if (strstr(r.body, full) == NULL)
        fail_msg("%s: want '%s' in the body, got: %s", host, full, r.body);
    h_resp_free(&r);
}

static void
test_verification_failures(void **state)
{
    char want[512];
    long f0 = fmetric("edge_upstream_tls_failures_total");
    long c0 = fmetric("edge_upstream_connect_failures_total");
    (void)state;

    snprintf(want, sizeof(want),
             "origin 'untrusted': tls error: certificate verify failed (unable to get local "
             "issuer certificate) from 127.0.0.1:%d",
             back_tls);
    check_502("untrusted.test", want);
    snprintf(want, sizeof(want),
             "origin 'mismatch': tls error: certificate verify failed (hostname mismatch) from "
             "127.0.0.1:%d",
             back_tls);
    check_502("mismatch.test", want);
    check_502("self.test", "origin 'self': tls error: certificate verify failed (self");
    snprintf(want, sizeof(want),
             "origin 'notls': tls error: wrong version number from 127.0.0.1:%d", osim.port);
    check_502("notls.test", want);
    /* one server each: tried once, counted once */
    assert_int_equal(fmetric("edge_upstream_tls_failures_total"), f0 + 4);
    assert_int_equal(fmetric("edge_upstream_connect_failures_total"), c0 + 4);
    /* a refused TCP connect is a connect failure, not a TLS one */
    snprintf(want, sizeof(want),
             "origin 'dead': connect error: connect to 127.0.0.1:%d failed: Connection refused",
             dead_port);
    check_502("dead.test", want);
    assert_int_equal(fmetric("edge_upstream_tls_failures_total"), f0 + 4);
    assert_int_equal(fmetric("edge_upstream_connect_failures_total"), c0 + 5);
}

/* A failed handshake is a connect-phase failure: the next server is tried. */
static void
test_retried_on_another_server(void **state)
{
    struct h_resp r;
    long f0 = fmetric("edge_upstream_tls_failures_total");
    (void)state;

    for (int i = 0; i < 4; i++) {
        get(&r, "retry.test", "/status/200");
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    assert_true(fmetric("edge_upstream_tls_failures_total") >= f0 + 1);
}

/* The connect timeout covers the handshake. */
static void
test_handshake_timeout(void **state)
{
    struct h_resp r;
    char want[256];
    double t0 = h_now_ms();
    (void)state;

    get(&r, "stall.test", "/status/200");
    assert_int_equal(r.status, 504);
    snprintf(want, sizeof(want),
             "origin 'stall': timeout error: TLS handshake with 127.0.0.1:%d timed out after "
             "300 ms",
             stall_port);
    if (strstr(r.body, want) == NULL)
        fail_msg("want '%s', got: %s", want, r.body);
    assert_true(h_now_ms() - t0 < 2000);
    h_resp_free(&r);
}

/* ---- (3) tls_verify off -----------------------------------------------------------------------
 */

static void
test_verify_off(void **state)
{
    struct h_resp r;
    char out[8192];
    (void)state;

    get(&r, "insecure.test", "/status/200");
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    /* and it was said at start, naming the origin */
    assert_int_equal(h_sh(out, sizeof(out), "cat '%s'", front.proc.log), 0);
    assert_non_null(strstr(out, "warn: origin 'insecure': tls_verify off"));
    assert_null(strstr(out, "origin 'ok': tls_verify off"));
}

/* ---- (4) keep-alive and session resumption ----------------------------------------------------
 */

static void
test_keepalive_reuses_tls_connections(void **state)
{
    struct h_resp r;
    char path[64];
    long c0, h0, u0;
    (void)state;

    get(&r, "okn.test", "/status/200"); /* warm: a pooled connection exists after this */
    h_resp_free(&r);
    c0 = fmetric("edge_upstream_connects_total");
    h0 = fmetric("edge_upstream_tls_handshakes_total");
    u0 = fmetric("edge_upstream_reused_total");
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof(path), "/resp?size=%d", 100 + i);
        get(&r, "okn.test", path);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 100 + i);
        h_resp_free(&r);
    }
    assert_int_equal(fmetric("edge_upstream_connects_total"), c0);
    assert_int_equal(fmetric("edge_upstream_tls_handshakes_total"), h0);
    assert_int_equal(fmetric("edge_upstream_reused_total"), u0 + 5);
}

static void
test_sessions_resumed_on_new_connections(void **state)
{
    struct h_resp r;
    long h0, r0, c0, br0;
    (void)state;

    get(&r, "fresh.test", "/status/200"); /* a session to resume (keepalive 0: then closed) */
    h_resp_free(&r);
    h0 = fmetric("edge_upstream_tls_handshakes_total");
    r0 = fmetric("edge_upstream_tls_resumed_total");
    c0 = fmetric("edge_upstream_connects_total");
    br0 = h_edge_metric(&back, "edge_tls_resumed_total");
    for (int i = 0; i < 4; i++) {
        get(&r, "fresh.test", "/status/200");
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    /* a new connection each time, and each one resumed (the back edge agrees) */
    assert_int_equal(fmetric("edge_upstream_connects_total"), c0 + 4);
    assert_int_equal(fmetric("edge_upstream_tls_handshakes_total"), h0 + 4);
    assert_int_equal(fmetric("edge_upstream_tls_resumed_total"), r0 + 4);
    assert_int_equal(h_edge_metric(&back, "edge_tls_resumed_total"), br0 + 4);
}

/* A reload keeps the pool and the sessions of unchanged settings. */
static void
test_reload_keeps_pool_and_sessions(void **state)
{
    struct h_resp r;
    long reloads = fmetric("edge_reloads_total"), c0, r0;
    (void)state;

    get(&r, "okn.test", "/status/200");
    h_resp_free(&r);
    assert_int_equal(h_kill(&front.proc, SIGHUP), 0);
    for (int i = 0; i < 100 && fmetric("edge_reloads_total") == reloads; i++)
        h_sleep_ms(20);
    assert_int_equal(fmetric("edge_reloads_total"), reloads + 1);
    h_sleep_ms(50);
    c0 = fmetric("edge_upstream_connects_total");
    r0 = fmetric("edge_upstream_tls_resumed_total");
    get(&r, "okn.test", "/status/200"); /* the pooled connection */
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(fmetric("edge_upstream_connects_total"), c0);
    get(&r, "fresh.test", "/status/200"); /* a new connection, the kept session */
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(fmetric("edge_upstream_tls_resumed_total"), r0 + 1);
}

/* ---- (5) edge -t
 * ------------------------------------------------------------------------------------ */

static void
check_refused(const char *name, const char *body, const char *want1, const char *want2)
{
    char out[4096];
    const char *path =
        h_write_file(name, "listen 127.0.0.1:1;\n%ssite * { route / { return 200; } }\n", body);

    assert_non_null(path);
    assert_int_equal(h_sh(out, sizeof(out), "'%s' -t -c '%s'", edge_bin, path), 1);
    if (strstr(out, want1) == NULL || strstr(out, want2) == NULL)
        fail_msg("%s: want '%s' and '%s' in:\n%s", name, want1, want2, out);
}

static void
test_conf_check(void **state)
{
    char body[1024], want[1024], out[4096];
    const char *path;
    (void)state;

    snprintf(body, sizeof(body),
             "origin app {\n  server https://a.test;\n  tls_ca %s/nope.crt;\n}\n", dir);
    snprintf(want, sizeof(want), "'tls_ca': cannot read '%s/nope.crt': No such file or directory",
             dir);
    check_refused("o1.conf", body, "o1.conf:4:10: ", want);
    snprintf(body, sizeof(body), "origin app { server https://a.test; tls_ca %s/origin.key; }\n",
             dir);
    check_refused("o2.conf", body, "o2.conf:2:44: 'tls_ca': no PEM certificate in", "origin.key'");
    check_refused("o3.conf", "origin app {\n  server https://a.test;\n  server b.test:80;\n}\n",
                  "o3.conf:4:10: origin 'app' mixes https:// and plain servers", "the server at ");
    check_refused("o4.conf", "origin app { server http://a.test; tls on; }\n",
                  "o4.conf:2:36: 'tls on' contradicts the http:// server", "o4.conf:2:14");
    /* accepted, with the warning */
    path = h_write_file("o5.conf", "listen 127.0.0.1:1;\n"
                                   "origin app { server https://a.test; tls_verify off; }\n"
                                   "site * { route / { origin app; } }\n");
    assert_non_null(path);
    assert_int_equal(h_sh(out, sizeof(out), "'%s' -t -c '%s'", edge_bin, path), 0);
    assert_non_null(strstr(out, "origin 'app': tls_verify off"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_origin_like_plain),
        cmocka_unit_test(test_verification_failures),
        cmocka_unit_test(test_retried_on_another_server),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_verify_off),
        cmocka_unit_test(test_keepalive_reuses_tls_connections),
        cmocka_unit_test(test_sessions_resumed_on_new_connections),
        cmocka_unit_test(test_reload_keeps_pool_and_sessions),
        cmocka_unit_test(test_conf_check),
    };
    return H_RUN(tests, setup, teardown);
}
