/*
 * edge-bench over TLS and HTTP/2, black box, against servers started here on 127.0.0.1:
 * - a CA, a server certificate for DNS name "localhost" only (so https://127.0.0.1 must fail
 *   hostname verification) and an unrelated CA, made with the openssl CLI in the temp dir;
 * - nghttpd (Debian nghttp2-server): HTTP/2 over TLS, and h2c on another port, serving a docroot
 *   with a "cache-status: edge; hit" trailer on every response with a body;
 * - openssl s_server -HTTP for HTTPS/1.1: the file it serves is a whole response with
 *   Connection: close, so every request is a new connection and, after the first, a resumed
 *   TLS handshake.
 * Figures come back from --json; messages from the run's log. About 4 s in all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/bench_cli.h"
#include "tests/integration/harness.h"

static struct h_proc ng_tls, ng_plain, s_srv;
static char port_h2[8], port_h2c[8], port_h1[8];
/* "PREFIX:PORT/PATH" in a static rotating buffer (4 slots). */
static const char *
u(const char *prefix, const char *port, const char *path)
{
    static char bufs[4][256];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s:%s%s", prefix, port, path);
    return b;
}

static int
start(struct h_proc *p, const char *name, const char *const argv[], int port)
{
    if (h_spawn(p, name, argv) < 0)
        return -1;
    return h_wait_proc_port(p, "127.0.0.1", port, 5000);
}

static int
group_setup(void **state)
{
    const char *d = h_tmpdir();
    const char *nghttpd = access("/usr/sbin/nghttpd", X_OK) == 0 ? "/usr/sbin/nghttpd" : "nghttpd";
    char cmd[4096], www[600], key[600], cert[600], blob[1001];
    (void)state;

    /* certificates: P-256 keys are quick to make */
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && { "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
             "-keyout ca.key -out ca.pem -subj /CN=edge-bench-test-CA && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key "
             "-out srv.csr -subj /CN=localhost && "
             "printf 'subjectAltName=DNS:localhost\\n' >ext.cnf && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
             "-extfile ext.cnf -out srv.pem && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
             "-keyout wrong.key -out wrong.pem -subj /CN=some-other-CA; } >certs.log 2>&1",
             d);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_tls_test: certificate generation failed, see %s/certs.log\n", d);
        return -1;
    }
    memset(blob, 'b', 1000);
    blob[1000] = '\0';
    if (h_write_file("www/blob", "%s", blob) == NULL ||
        h_write_file("www/resp.txt",
                     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Status: edge; fwd=miss; "
                     "stored\r\nConnection: close\r\n\r\nhello") == NULL)
        return -1;
    snprintf(www, sizeof(www), "%s/www", d);
    snprintf(key, sizeof(key), "%s/srv.key", d);
    snprintf(cert, sizeof(cert), "%s/srv.pem", d);
    int p_h2 = h_free_port(), p_h2c = h_free_port(), p_h1 = h_free_port();
    snprintf(port_h2, sizeof(port_h2), "%d", p_h2);
    snprintf(port_h2c, sizeof(port_h2c), "%d", p_h2c);
    snprintf(port_h1, sizeof(port_h1), "%d", p_h1);

    const char *tls[] = {nghttpd, "-a", "127.0.0.1", "-d", www, "--trailer",
                         "cache-status: edge; hit", port_h2, key, cert, NULL};
    const char *plain[] = {nghttpd, "-a", "127.0.0.1", "--no-tls", "-d", www, "--trailer",
                           "cache-status: edge; hit", port_h2c, NULL};
    const char *ss[] = {"/bin/sh", "-c",
                        "cd \"$0\" && exec openssl s_server -quiet -accept \"127.0.0.1:$1\" "
                        "-cert ../srv.pem -key ../srv.key -HTTP",
                        www, port_h1, NULL};
    if (start(&ng_tls, "nghttpd-tls", tls, p_h2) < 0 ||
        start(&ng_plain, "nghttpd-h2c", plain, p_h2c) < 0 || start(&s_srv, "s_server", ss, p_h1) < 0)
        return -1;
    return 0;
}

/* These servers have no SIGTERM handler: dying of it is their normal stop. */
static void
stop_quiet(struct h_proc *p)
{
    if (p->pid <= 0)
        return;
    h_kill(p, SIGTERM);
    for (int i = 0; i < 300 && h_alive(p); i++)
        h_sleep_ms(10);
}

static int
group_teardown(void **state)
{
    (void)state;
    stop_quiet(&ng_tls);
    stop_quiet(&ng_plain);
    stop_quiet(&s_srv);
    h_stop_all(); /* whatever did not stop (loudly) */
    return 0;
}

static json_t *
run0(json_t *j)
{
    json_t *r = json_array_get(json_object_get(j, "runs"), 0);
    assert_non_null(r);
    return r;
}

static const char *
str(json_t *obj, const char *a, const char *b)
{
    json_t *v = json_object_get(obj, a);
    if (b != NULL)
        v = json_object_get(v, b);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void
log_has(const char *name, const char *needle)
{
    char file[64];
    snprintf(file, sizeof(file), "%s.log", name);
    char *log = bt_slurp(bt_tmp(file));
    assert_non_null(log);
    if (strstr(log, needle) == NULL)
        fail_msg("%s.log lacks '%s':\n%s", name, needle, log);
    free(log);
}

/* HTTPS/1.1: verified against --cacert with SNI "localhost"; one connection per response (the
 * server closes), so handshakes = responses, all resumed but the first one per connection. */
static void
test_https_h1(void **state)
{
    (void)state;
    const char *args[] = {"-d", "1s", "-c", "2", "-t", "1", "--cacert", bt_tmp("ca.pem"),
                          "--json", bt_tmp("h1.json"),
                          u("https://localhost", port_h1, "/resp.txt"), NULL};
    assert_int_equal(bt_run("h1", args, 8000, 0), 0);
    json_t *j = bt_json("h1.json");
    json_t *r = run0(j);
    double resp = bt_num(r, "responses");
    if (resp < 20)
        fail_msg("only %.0f responses in 1 s", resp);
    assert_true(bt_num(r, "requests") == resp);
    assert_true(bt_num(r, "errors.total") == 0);
    assert_true(bt_num(r, "status.2xx") == resp);
    assert_true(bt_num(r, "cache.miss") == resp);
    assert_true(bt_num(r, "body_bytes") == 5 * resp);
    assert_string_equal(str(r, "protocol", NULL), "http/1.1");
    assert_non_null(str(r, "tls", "version"));
    assert_memory_equal(str(r, "tls", "version"), "TLSv1.", 6);
    double hs = bt_num(r, "tls.handshakes"), resumed = bt_num(r, "tls.resumed");
    if (hs < resp || resumed < hs - 3)
        fail_msg("%.0f responses, %.0f handshakes, %.0f resumed", resp, hs, resumed);
    json_decref(j);
    log_has("h1", "HTTP/1.1 TLSv1.");
}

/* HTTP/2 over TLS, 4 streams on each of 2 connections: 2 handshakes for the whole run,
 * Cache-Status read from the trailers, bodies counted. */
static void
test_h2_tls(void **state)
{
    (void)state;
    const char *args[] = {"-d", "1s", "-c", "2", "-t", "2", "--h2", "--streams", "4",
                          "--cacert", bt_tmp("ca.pem"), "--json", bt_tmp("h2.json"),
                          u("https://localhost", port_h2, "/blob"), NULL};
    assert_int_equal(bt_run("h2", args, 8000, 0), 0);
    json_t *j = bt_json("h2.json");
    json_t *r = run0(j);
    double resp = bt_num(r, "responses");
    if (resp < 100)
        fail_msg("only %.0f responses in 1 s", resp);
    assert_true(bt_num(r, "requests") == resp);
    assert_true(bt_num(r, "errors.total") == 0);
    assert_true(bt_num(r, "status.2xx") == resp);
    assert_true(bt_num(r, "cache.hit") == resp);
    assert_true(bt_num(r, "body_bytes") == 1000 * resp);
    assert_true(bt_num(r, "connections_opened") == 2);
    assert_true(bt_num(r, "tls.handshakes") == 2);
    assert_string_equal(str(r, "protocol", NULL), "h2");
    assert_true(bt_num(json_object_get(j, "config"), "streams") == 4);
    json_decref(j);
    log_has("h2", "h2 TLSv1.");
    log_has("h2", "4 streams per connection");
}

/* h2c with prior knowledge, GET and HEAD: the trailer (so Cache-Status) only comes with a
 * body, and every request is accounted for. */
static void
test_h2c(void **state)
{
    (void)state;
    const char *args[] = {"-n", "400", "-c", "2", "-t", "1", "--h2c", "--streams", "8",
                          "--mix", "GET:3,HEAD:1", "--json", bt_tmp("h2c.json"),
                          u("http://127.0.0.1", port_h2c, "/blob"), NULL};
    assert_int_equal(bt_run("h2c", args, 8000, 0), 0);
    json_t *j = bt_json("h2c.json");
    json_t *r = run0(j);
    assert_true(bt_num(r, "responses") == 400);
    assert_true(bt_num(r, "requests") == 400);
    assert_true(bt_num(r, "errors.total") == 0);
    assert_true(bt_num(r, "status.2xx") == 400);
    double hit = bt_num(r, "cache.hit"), absent = bt_num(r, "cache.absent");
    assert_true(hit + absent == 400);
    assert_true(hit > 200 && absent > 50); /* 3:1 */
    assert_true(bt_num(r, "body_bytes") == 1000 * hit);
    assert_string_equal(str(r, "protocol", NULL), "h2c");
    assert_true(json_is_null(json_object_get(r, "tls")));
    json_decref(j);
}

/* --new-conn over h2: a connection and a handshake per request, resumed after the first. */
static void
test_new_conn(void **state)
{
    (void)state;
    const char *args[] = {"-n", "30", "-c", "2", "-t", "1", "--h2", "--new-conn", "--cacert",
                          bt_tmp("ca.pem"), "--json", bt_tmp("nc.json"),
                          u("https://localhost", port_h2, "/blob"), NULL};
    assert_int_equal(bt_run("nc", args, 8000, 0), 0);
    json_t *j = bt_json("nc.json");
    json_t *r = run0(j);
    assert_true(bt_num(r, "responses") == 30);
    assert_true(bt_num(r, "errors.total") == 0);
    double hs = bt_num(r, "tls.handshakes"), resumed = bt_num(r, "tls.resumed");
    if (hs < 30 || resumed < hs - 3)
        fail_msg("30 requests, %.0f handshakes, %.0f resumed", hs, resumed);
    assert_true(bt_num(r, "connections_opened") >= 30);
    json_decref(j);
    log_has("nc", "a new connection per request");
}

/* Verification: an unrelated CA, the system store (which does not know ours) and a URL host
 * the certificate does not name all stop the run with a clear message; --insecure passes. */
static void
test_verification(void **state)
{
    (void)state;
    const char *wrong[] = {"-n", "5", "--cacert", bt_tmp("wrong.pem"),
                           u("https://localhost", port_h2, "/blob"), NULL};
    assert_int_equal(bt_run("wrong_ca", wrong, 8000, 1), 1);
    log_has("wrong_ca", "TLS handshake failed: certificate verify failed: unable to get local "
                        "issuer certificate (trust its CA with --cacert FILE");

    const char *sys[] = {"-n", "5", u("https://localhost", port_h1, "/resp.txt"), NULL};
    assert_int_equal(bt_run("system_store", sys, 8000, 1), 1);
    log_has("system_store", "certificate verify failed");

    const char *ip[] = {"-n", "5", "--h2", "--cacert", bt_tmp("ca.pem"),
                        u("https://127.0.0.1", port_h2, "/blob"), NULL};
    assert_int_equal(bt_run("ip_mismatch", ip, 8000, 1), 1);
    log_has("ip_mismatch", "certificate verify failed: IP address mismatch");

    const char *k[] = {"-n", "20", "-c", "2", "--h2", "-k", "--json", bt_tmp("k.json"),
                       u("https://127.0.0.1", port_h2, "/blob"), NULL};
    assert_int_equal(bt_run("insecure", k, 8000, 0), 0);
    json_t *j = bt_json("k.json");
    assert_true(bt_num(run0(j), "responses") == 20);
    assert_true(bt_num(run0(j), "errors.total") == 0);
    json_decref(j);
}

/* A server without h2 (ALPN), an h2c client on a TLS port and a TLS client on an h2c port: each
 * refused at start with what went wrong. */
static void
test_protocol_refused(void **state)
{
    (void)state;
    const char *h2[] = {"-n", "5", "--h2", "--cacert", bt_tmp("ca.pem"),
                        u("https://localhost", port_h1, "/resp.txt"), NULL};
    assert_int_equal(bt_run("no_h2", h2, 8000, 1), 1);
    log_has("no_h2", "the server did not select h2 in ALPN");

    const char *h2c[] = {"-n", "5", "--h2c", u("http://127.0.0.1", port_h2, "/blob"), NULL};
    assert_int_equal(bt_run("no_h2c", h2c, 8000, 1), 1);
    log_has("no_h2c", "does not speak HTTP/2 with prior knowledge");

    const char *tls[] = {"-n", "5", "-k", u("https://127.0.0.1", port_h2c, "/blob"), NULL};
    assert_int_equal(bt_run("no_tls", tls, 8000, 1), 1);
    log_has("no_tls", "TLS handshake failed");

    const char *scheme[] = {"-n", "5", "--h2", u("http://127.0.0.1", port_h2c, "/"), NULL};
    assert_int_equal(bt_run("h2_http", scheme, 8000, 2), 2);
    log_has("h2_http", "--h2 is HTTP/2 over TLS and needs an https:// URL");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_h1),     cmocka_unit_test(test_h2_tls),
        cmocka_unit_test(test_h2c),          cmocka_unit_test(test_new_conn),
        cmocka_unit_test(test_verification), cmocka_unit_test(test_protocol_refused),
    };
    return H_RUN(tests, group_setup, group_teardown);
}
