/*
 * TLS to clients, end to end: a real edge with a TLS listener in front of
 * origin-sim, certificates made at test time with the openssl CLI, libcurl
 * and `openssl s_client` as clients. Names are pinned to 127.0.0.1 with
 * CURLOPT_RESOLVE / -connect: no DNS is asked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/edge.h"

static struct h_osim osim;
static struct h_edge edge;
static char repo[512]; /* the repository (tests run from its root) */
static int tls_port, tls_h2_port; /* listen tls, listen tls h2 */
static char dir[512];
static char ca[600];
static char edge_bin[4096]; /* absolute: commands run in the temp dir */

/* CA "edge test CA"; leaf certificates signed by it; a client CA and two
 * client certificates (one from the wrong CA); an OCSP response for b.test. */
static const char gen_sh[] =
    "set -e\n"
    "k='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
    "leaf='-addext basicConstraints=critical,CA:FALSE'\n"
    "openssl req -x509 $k -keyout ca.key -out ca.crt -days 30 -subj '/CN=edge test CA'\n"
    "openssl req -x509 $k -keyout cca.key -out cca.crt -days 30 -subj '/CN=client CA'\n"
    "cert() { openssl req -x509 -CA \"$4\".crt -CAkey \"$4\".key $k $leaf -keyout \"$1\".key \\\n"
    "    -out \"$1\".crt -days 30 -subj \"$2\" ${3:+-addext subjectAltName=$3}; }\n"
    "cert default '/CN=default.test' DNS:default.test ca\n"
    "cert a '/O=gen1/CN=a.test' 'DNS:a.test,DNS:*.a.test' ca\n"
    "cert a2 '/O=gen2/CN=a.test' 'DNS:a.test,DNS:*.a.test' ca\n"
    "cert b '/CN=b.test' DNS:b.test ca\n"
    "cert secure '/CN=secure.test' DNS:secure.test ca\n"
    "cert alice '/O=Acme, Inc./CN=alice' '' cca\n"
    "cert mallory '/CN=mallory' '' ca\n"
    "serial=$(openssl x509 -in b.crt -noout -serial | cut -d= -f2)\n"
    "printf 'V\\t350101000000Z\\t\\t%s\\tunknown\\t/CN=b.test\\n' \"$serial\" > index.txt\n"
    "openssl ocsp -issuer ca.crt -cert b.crt -no_nonce -reqout ocsp-req.der\n"
    "openssl ocsp -index index.txt -rsigner ca.crt -rkey ca.key -CA ca.crt -reqin ocsp-req.der \\\n"
    "    -respout b.ocsp -ndays 1 >/dev/null\n";


/* openssl s_client to the TLS port, sending an HTTP request for host when
 * host is given (then waiting for the answer: tickets arrive meanwhile). */
static int
s_client(char *out, size_t n, const char *host, const char *args)
{
    if (host == NULL)
        return h_sh(out, n, "timeout 5 openssl s_client -connect 127.0.0.1:%d %s </dev/null",
                  tls_port, args);
    return h_sh(out, n,
              "printf 'GET /hello HTTP/1.1\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n' | "
              "timeout 5 openssl s_client -connect 127.0.0.1:%d -servername %s -ign_eof %s",
              host, tls_port, host, args);
}

static void
conf_text(char *buf, size_t n, int port, int admin)
{
    snprintf(buf, n,
             "workers 2;\n"
             "listen 127.0.0.1:%d;\n"
             "listen 127.0.0.1:%d tls;\n"
             "listen 127.0.0.1:%d tls h2;\n"
             "admin 127.0.0.1:%d;\n"
             "access_log %s/access.log;\n"
             "client_header_timeout 1s;\n"
             "shutdown_timeout 5s;\n"
             "cache_dir %s/cache max_size=64m;\n"
             "function_dir %s/functions;\nfunction_run_dir %s/run;\n"
             "tls_certificate %s/a.crt %s/a.key;\n"
             "tls_certificate %s/default.crt %s/default.key default;\n"
             "origin app { server 127.0.0.1:%d; }\n"
             "site b.test {\n"
             "  tls_certificate %s/b.crt %s/b.key;\n"
             "  tls_ocsp %s/b.ocsp;\n"
             "  route / { origin app; cache on; }\n"
             "}\n"
             "site secure.test {\n"
             "  tls_certificate %s/secure.crt %s/secure.key;\n"
             "  tls_client_ca %s/cca.crt;\n"
             "  tls_verify_client on;\n"
             "  route = /whoami { function whoami; }\n"
             "  route / { origin app; }\n"
             "}\n"
             "site * {\n"
             "  route = /hello { return 200 \"hello\\n\"; }\n"
             "  route = /whoami { function whoami; }\n"
             "  route / { origin app; cache on; }\n"
             "}\n",
             port, tls_port, tls_h2_port, admin, dir, dir, dir, dir, dir, dir, dir, dir, osim.port, dir, dir, dir, dir,
             dir, dir);
}

static int
setup(void **state)
{
    char conf[16384], out[4096];
    int port = h_free_port(), admin = h_free_port();

    (void)state;
    snprintf(dir, sizeof(dir), "%s", h_tmpdir());
    if (getcwd(repo, sizeof(repo)) == NULL)
        return -1;
    if (realpath(h_build_path("edge"), edge_bin) == NULL)
        return -1;
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    if (h_write_file("gen.sh", "%s", gen_sh) == NULL)
        return -1;
    if (h_sh(out, sizeof(out), "sh gen.sh") != 0) {
        fprintf(stderr, "certificate generation failed:\n%s\n", out);
        return -1;
    }
    if (h_sh(out, sizeof(out),
             "mkdir -p functions && ${CC:-cc} -std=c11 -shared -fPIC -I'%s' -DTF_NAME='\"whoami\"' "
             "-DTF_MODE=15 '%s/tests/plugins/testfn.c' -o functions/whoami.so",
             repo, repo) != 0) {
        fprintf(stderr, "cannot build the whoami test plugin:\n%s\n", out);
        return -1;
    }
    if (h_osim_start(&osim, NULL) < 0)
        return -1;
    tls_port = h_free_port();
    tls_h2_port = h_free_port();
    conf_text(conf, sizeof(conf), port, admin);
    if (h_edge_start(&edge, port, admin, conf) < 0)
        return -1;
    return h_wait_port("127.0.0.1", tls_port, 5000);
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(h_edge_stop(&edge), 0);
    assert_int_equal(h_stop(&osim.proc), 0);
    return 0;
}

/* GET https://host:TLS/path with the test CA; host pinned to 127.0.0.1. */
static int
tls_get(struct h_client *cl, struct h_resp *r, const char *host, const char *path,
        const struct h_opts *extra, const char *const *hdrs)
{
    struct h_opts o = {.timeout_ms = 5000, .cainfo = ca};
    char url[512], res[300];
    struct h_client *own = cl != NULL ? NULL : h_client_new();
    int rc;

    if (extra != NULL)
        o = *extra;
    if (o.cainfo == NULL && !o.no_verify_host)
        o.cainfo = ca;
    if (o.timeout_ms == 0)
        o.timeout_ms = 5000;
    snprintf(url, sizeof(url), "https://%s:%d%s", host, tls_port, path);
    snprintf(res, sizeof(res), "%s:%d:127.0.0.1", host, tls_port);
    o.resolve = res;
    rc = h_client_http_opts(cl != NULL ? cl : own, r, &o, "GET", url, NULL, 0, hdrs);
    h_client_free(own);
    return rc;
}

static long
metric(const char *name_and_labels)
{
    struct h_resp r;
    char u[128], key[200];
    long v = -1;

    snprintf(u, sizeof(u), "%s/metrics", edge.admin_url);
    snprintf(key, sizeof(key), "\n%s ", name_and_labels);
    if (h_http(&r, "GET", u, NULL, 0, NULL) == 0 && r.body != NULL) {
        const char *p = strstr(r.body, key);
        v = p != NULL ? strtol(p + strlen(key), NULL, 10) : 0;
    }
    h_resp_free(&r);
    return v;
}

/* ---- same bodies and cache behaviour as plain HTTP ---------------------------------- */

static void
test_bodies_and_cache_like_plain(void **state)
{
    struct h_resp r, p;
    char u[256], b[256];
    const char *path = "/resp?cc=max-age%3D60&size=300000";
    (void)state;

    /* the same object over plain HTTP, as the reference */
    snprintf(u, sizeof(u), "%s%s", edge.url, path);
    assert_int_equal(h_http(&p, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(p.status, 200);
    assert_int_equal(p.len, 300000);

    /* over TLS: a miss (its own key: https), then a hit served from the file */
    assert_int_equal(tls_get(NULL, &r, "a.test", path, NULL, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.http_version, 11);
    assert_memory_equal(r.body, p.body, p.len);
    assert_non_null(strstr(h_header(&r, "cache-status", b, sizeof(b)), "fwd=uri-miss"));
    h_resp_free(&r);
    assert_int_equal(tls_get(NULL, &r, "a.test", path, NULL, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, p.len);
    assert_memory_equal(r.body, p.body, p.len);
    assert_non_null(strstr(h_header(&r, "cache-status", b, sizeof(b)), "hit"));
    h_resp_free(&r);
    h_resp_free(&p);

    /* a hit with a Range, an empty stored body, a streamed (chunked) answer */
    {
        const char *hdrs[] = {"Range: bytes=100-199", NULL};
        assert_int_equal(tls_get(NULL, &r, "a.test", path, NULL, hdrs), 0);
        assert_int_equal(r.status, 206);
        assert_int_equal(r.len, 100);
        h_resp_free(&r);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tls_get(NULL, &r, "a.test", "/resp?cc=max-age%3D60&size=0", NULL, NULL),
                         0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 0);
        h_resp_free(&r);
    }
    assert_int_equal(tls_get(NULL, &r, "a.test", "/chunked?n=20&size=5000", NULL, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 100000);
    h_resp_free(&r);

    /* answered by the edge; a 404 from dispatch reaches the client too (r6) */
    assert_int_equal(tls_get(NULL, &r, "a.test", "/hello", NULL, NULL), 0);
    assert_string_equal(r.body, "hello\n");
    h_resp_free(&r);
    {
        const char *hdrs[] = {"Host: nowhere.test", NULL};
        assert_int_equal(tls_get(NULL, &r, "b.test", "/x", NULL, hdrs), 0);
        assert_int_equal(r.status, 404);
        h_resp_free(&r);
    }

    /* the origin learns the scheme */
    assert_int_equal(tls_get(NULL, &r, "a.test", "/headers", NULL, NULL), 0);
    assert_non_null(strstr(r.body, "\"x-forwarded-proto\":\"https\""));
    h_resp_free(&r);
}

static void
test_large_download_and_tunnel(void **state)
{
    struct h_resp r, p;
    char u[256], out[16384];
    (void)state;

    /* streamed from the origin, not cached: the proxied path with backpressure */
    snprintf(u, sizeof(u), "%s/bytes/8000000", edge.url);
    assert_int_equal(h_http(&p, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(p.len, 8000000);
    assert_int_equal(tls_get(NULL, &r, "a.test", "/bytes/8000000", NULL, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, p.len);
    assert_memory_equal(r.body, p.body, p.len);
    h_resp_free(&r);
    h_resp_free(&p);

    /* an upgraded connection (origin-sim's /ws echoes) tunnels through TLS */
    assert_int_equal(
        h_sh(out, sizeof(out),
           "(printf 'GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n'; sleep 0.3; printf 'ping-through-tls'; "
           "sleep 0.3) | timeout 5 openssl s_client -quiet -no_ign_eof -connect 127.0.0.1:%d "
           "-servername a.test",
           tls_port),
        0);
    assert_non_null(strstr(out, "HTTP/1.1 101"));
    assert_non_null(strstr(out, "ping-through-tls"));
}

static void
test_request_body_and_keepalive(void **state)
{
    struct h_client *cl = h_client_new();
    struct h_resp r;
    struct h_opts o = {.timeout_ms = 10000, .cainfo = ca, .resolve = NULL};
    char url[256], res[300];
    size_t size = 3 * 1024 * 1024 + 5;
    char *body = malloc(size);
    (void)state;

    assert_non_null(body);
    for (size_t i = 0; i < size; i++)
        body[i] = (char)('a' + (i * 13) % 26);
    snprintf(url, sizeof(url), "https://a.test:%d/echo", tls_port);
    snprintf(res, sizeof(res), "a.test:%d:127.0.0.1", tls_port);
    o.resolve = res;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h_client_http_opts(cl, &r, &o, "POST", url, body, size, NULL), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, size);
        assert_memory_equal(r.body, body, size);
        assert_int_equal(r.new_conns, i == 0 ? 1 : 0); /* one connection, kept alive */
        h_resp_free(&r);
    }
    free(body);
    h_client_free(cl);
}

/* ---- SNI ------------------------------------------------------------------------------ */

static void
check_subject(const char *host, const char *want)
{
    struct h_resp r;
    struct h_opts o = {.cainfo = ca};

    assert_int_equal(tls_get(NULL, &r, host, "/status/200", &o, NULL), 0);
    assert_int_equal(r.status, 200);
    if (strstr(r.cert_subject, want) == NULL)
        fail_msg("SNI %s: got certificate '%s', want '%s'", host, r.cert_subject, want);
    h_resp_free(&r);
}

static void
test_sni_picks_the_certificate(void **state)
{
    char out[16384];
    struct h_resp r;
    struct h_opts o = {.cainfo = ca, .no_verify_host = true};
    (void)state;

    check_subject("a.test", "CN = a.test");
    check_subject("www.a.test", "CN = a.test"); /* wildcard */
    check_subject("b.test", "CN = b.test");
    /* a name no certificate has, and no SNI at all: the 'default' one */
    assert_int_equal(tls_get(NULL, &r, "unknown.test", "/hello", &o, NULL), 0);
    assert_non_null(strstr(r.cert_subject, "CN = default.test"));
    h_resp_free(&r);
    assert_int_equal(s_client(out, sizeof(out), NULL, "-noservername"), 0);
    assert_non_null(strstr(out, "subject=CN = default.test"));
    assert_int_equal(s_client(out, sizeof(out), NULL, "-servername b.test"), 0);
    assert_non_null(strstr(out, "subject=CN = b.test"));
    /* ALPN: http/1.1 (h2 is not offered yet) */
    assert_non_null(strstr(out, "No ALPN negotiated"));
    assert_int_equal(s_client(out, sizeof(out), NULL, "-servername b.test -alpn h2,http/1.1"), 0);
    assert_non_null(strstr(out, "ALPN protocol: http/1.1"));
}

/* ---- HTTP/2 by ALPN ------------------------------------------------------------------- */

/* A TLS listener marked h2: ALPN picks h2, the streams go through the same
 * path (cache, X-Forwarded-Proto https); a client without h2 gets HTTP/1.1. */
static void
test_alpn_h2(void **state)
{
    struct h_opts o = {.timeout_ms = 5000, .cainfo = ca, .h2 = true};
    struct h_client *cl = h_client_new();
    struct h_resp r;
    char url[256], res[128], b[256], out[8192];
    const char *path = "/resp?cc=max-age%3D60&size=5000&k=alpn";
    (void)state;
    snprintf(res, sizeof(res), "a.test:%d:127.0.0.1", tls_h2_port);
    o.resolve = res;
    for (int i = 0; i < 2; i++) {
        snprintf(url, sizeof(url), "https://a.test:%d%s", tls_h2_port, path);
        assert_int_equal(h_client_http_opts(cl, &r, &o, "GET", url, NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.http_version, 20);
        assert_int_equal(r.len, 5000);
        assert_non_null(strstr(h_header(&r, "cache-status", b, sizeof(b)),
                               i == 0 ? "fwd=uri-miss" : "hit"));
        h_resp_free(&r);
    }
    snprintf(url, sizeof(url), "https://a.test:%d/headers", tls_h2_port);
    assert_int_equal(h_client_http_opts(cl, &r, &o, "GET", url, NULL, 0, NULL), 0);
    assert_int_equal(r.http_version, 20);
    assert_non_null(strstr(r.body, "\"x-forwarded-proto\":\"https\""));
    h_resp_free(&r);
    o.h2 = false; /* offers only http/1.1 */
    snprintf(url, sizeof(url), "https://a.test:%d%s", tls_h2_port, path);
    assert_int_equal(h_client_http_opts(cl, &r, &o, "GET", url, NULL, 0, NULL), 0);
    assert_int_equal(r.http_version, 11);
    assert_non_null(strstr(h_header(&r, "cache-status", b, sizeof(b)), "hit"));
    h_resp_free(&r);
    assert_int_equal(h_sh(out, sizeof(out),
                        "timeout 5 openssl s_client -connect 127.0.0.1:%d -servername a.test "
                        "-alpn h2,http/1.1 </dev/null",
                        tls_h2_port),
                     0);
    assert_non_null(strstr(out, "ALPN protocol: h2"));
    h_client_free(cl);
}

/* ---- protocol versions, handshake failures ------------------------------------------- */

static void
test_old_protocols_refused(void **state)
{
    char out[16384];
    struct h_resp r;
    struct h_opts o = {.cainfo = ca, .tls12 = true};
    long v12 = metric("edge_tls_handshakes_total{version=\"TLSv1.2\"}");
    (void)state;

    /* SECLEVEL=0 so that the client really offers TLS 1.1 */
    assert_int_not_equal(
        s_client(out, sizeof(out), NULL, "-servername a.test -tls1_1 -cipher DEFAULT@SECLEVEL=0"),
        0);
    if (strstr(out, "alert protocol version") == NULL &&
        strstr(out, "unsupported protocol") == NULL)
        fail_msg("TLS 1.1 was not refused by the server:\n%s", out);
    assert_int_equal(tls_get(NULL, &r, "a.test", "/hello", &o, NULL), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_true(metric("edge_tls_handshakes_total{version=\"TLSv1.2\"}") >= v12 + 1);
    assert_true(metric("edge_tls_handshakes_total{version=\"TLSv1.3\"}") > 0);
}

static void
test_garbage_is_closed_and_counted(void **state)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    static const char hello[] = "\x16\x03\x01\x00\x30garbage garbage garbage garbage garbage gar";
    char out[4096];
    long before = h_edge_metric(&edge, "edge_tls_handshake_failures_total");
    double t0;
    long n;
    struct h_resp r;
    (void)state;

    /* plain HTTP to the TLS port: closed at once, no plaintext answer */
    t0 = h_now_ms();
    n = h_raw("127.0.0.1", tls_port, http, sizeof(http) - 1, out, sizeof(out), 3000);
    assert_true(h_now_ms() - t0 < 1500);
    assert_true(n <= 0 || strstr(out, "HTTP/1.1") == NULL);
    /* a ClientHello that is not one */
    t0 = h_now_ms();
    n = h_raw("127.0.0.1", tls_port, hello, sizeof(hello) - 1, out, sizeof(out), 3000);
    assert_true(h_now_ms() - t0 < 1500);
    /* a handshake that stalls halfway: closed at client_header_timeout (1s) */
    t0 = h_now_ms();
    n = h_raw("127.0.0.1", tls_port, "\x16\x03\x01", 3, out, sizeof(out), 4000);
    assert_true(h_now_ms() - t0 >= 900 && h_now_ms() - t0 < 3500);
    for (int i = 0;
         i < 50 && h_edge_metric(&edge, "edge_tls_handshake_failures_total") < before + 3; i++)
        h_sleep_ms(20);
    assert_int_equal(h_edge_metric(&edge, "edge_tls_handshake_failures_total"), before + 3);
    /* and the edge goes on serving */
    if (tls_get(NULL, &r, "a.test", "/hello", NULL, NULL) != 0)
        fail_msg("after the garbage: %s", r.error);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
}

/* ---- session resumption ---------------------------------------------------------------- */

static void
resume(const char *version_args, const char *tag)
{
    char out[16384], args[256];

    snprintf(args, sizeof(args), "%s -sess_out sess-%s", version_args, tag);
    assert_int_equal(s_client(out, sizeof(out), "a.test", args), 0);
    assert_non_null(strstr(out, "\nNew, "));
    assert_non_null(strstr(out, "hello\n"));
    /* twice: each time on whichever worker takes it (the ticket keys are shared) */
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof(args), "%s -sess_in sess-%s", version_args, tag);
        assert_int_equal(s_client(out, sizeof(out), "a.test", args), 0);
        if (strstr(out, "\nReused, ") == NULL)
            fail_msg("%s: session not resumed:\n%s", tag, out);
    }
    /* not under another certificate */
    snprintf(args, sizeof(args), "%s -sess_in sess-%s", version_args, tag);
    assert_int_equal(s_client(out, sizeof(out), "b.test", args), 0);
    assert_non_null(strstr(out, "\nNew, "));
}

static void
test_session_resumption(void **state)
{
    long before = h_edge_metric(&edge, "edge_tls_resumed_total");
    (void)state;

    resume("-tls1_3", "tls13");         /* ticket */
    resume("-tls1_2", "tls12");         /* ticket */
    resume("-tls1_2 -no_ticket", "id"); /* session id: the server cache */
    assert_int_equal(h_edge_metric(&edge, "edge_tls_resumed_total"), before + 6);
}

/* ---- client certificates, OCSP, access log ---------------------------------------------- */

static void
test_client_certificates(void **state)
{
    struct h_resp r;
    char alice_crt[600], alice_key[600], mal_crt[600], mal_key[600], u[256];
    struct h_opts with = {.cainfo = ca, .cert = alice_crt, .key = alice_key};
    struct h_opts wrong = {.cainfo = ca, .cert = mal_crt, .key = mal_key};
    const char *spoof[] = {"X-Client-Cert-Subject: CN=admin", NULL};
    const char *spoof_host[] = {"X-Client-Cert-Subject: CN=admin", "Host: secure.test", NULL};
    (void)state;

    snprintf(alice_crt, sizeof(alice_crt), "%s/alice.crt", dir);
    snprintf(alice_key, sizeof(alice_key), "%s/alice.key", dir);
    snprintf(mal_crt, sizeof(mal_crt), "%s/mallory.crt", dir);
    snprintf(mal_key, sizeof(mal_key), "%s/mallory.key", dir);

    /* verified: the origin gets the subject, never the client's own header */
    assert_int_equal(tls_get(NULL, &r, "secure.test", "/headers", &with, spoof), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"x-client-cert-subject\":\"CN=alice,O=Acme\\\\, Inc.\""));
    assert_null(strstr(r.body, "CN=admin"));
    h_resp_free(&r);
    /* no certificate, or one from another CA: no handshake */
    assert_int_not_equal(tls_get(NULL, &r, "secure.test", "/headers", NULL, NULL), 0);
    h_resp_free(&r);
    assert_int_not_equal(tls_get(NULL, &r, "secure.test", "/headers", &wrong, NULL), 0);
    h_resp_free(&r);
    /* the handshake for a.test does not open secure.test: 421 */
    assert_int_equal(tls_get(NULL, &r, "a.test", "/headers", NULL, spoof_host), 0);
    assert_int_equal(r.status, 421);
    h_resp_free(&r);
    /* nor does plain HTTP: 403; and the spoofed header never reaches the origin */
    snprintf(u, sizeof(u), "%s/headers", edge.url);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, spoof_host), 0);
    assert_int_equal(r.status, 403);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, spoof), 0);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "x-client-cert-subject"));
    h_resp_free(&r);
    assert_int_equal(tls_get(NULL, &r, "a.test", "/headers", &with, spoof), 0);
    assert_null(strstr(r.body, "x-client-cert-subject"));
    h_resp_free(&r);
    /* edge functions see the verified subject the same way, never a forged one */
    assert_int_equal(tls_get(NULL, &r, "secure.test", "/whoami", &with, spoof), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "CN=alice,O=Acme\\, Inc.");
    h_resp_free(&r);
    assert_int_equal(tls_get(NULL, &r, "a.test", "/whoami", NULL, spoof), 0);
    assert_string_equal(r.body, "none");
    h_resp_free(&r);
}

/* Over h2 (ALPN) the same: a stream's request sees its session's
 * handshake, so a connection verified for a.test does not open
 * secure.test (421: the client must not coalesce them), and the subject
 * reaches the origin and functions. */
static void
test_client_certificates_over_h2(void **state)
{
    struct h_resp r;
    char alice_crt[600], alice_key[600], url[256], res[128];
    struct h_opts with = {.timeout_ms = 5000, .cainfo = ca, .h2 = true, .resolve = res};
    struct h_opts none = {.timeout_ms = 5000, .cainfo = ca, .h2 = true, .resolve = res};
    const char *spoof[] = {"X-Client-Cert-Subject: CN=admin", NULL};
    const char *spoof_host[] = {"X-Client-Cert-Subject: CN=admin", "Host: secure.test", NULL};
    struct h_client *cl;
    (void)state;

    snprintf(alice_crt, sizeof(alice_crt), "%s/alice.crt", dir);
    snprintf(alice_key, sizeof(alice_key), "%s/alice.key", dir);
    with.cert = alice_crt;
    with.key = alice_key;

    snprintf(res, sizeof(res), "secure.test:%d:127.0.0.1", tls_h2_port);
    snprintf(url, sizeof(url), "https://secure.test:%d/headers", tls_h2_port);
    cl = h_client_new();
    assert_int_equal(h_client_http_opts(cl, &r, &with, "GET", url, NULL, 0, spoof), 0);
    h_client_free(cl);
    assert_int_equal(r.http_version, 20);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"x-client-cert-subject\":\"CN=alice,O=Acme\\\\, Inc.\""));
    assert_null(strstr(r.body, "CN=admin"));
    h_resp_free(&r);
    snprintf(url, sizeof(url), "https://secure.test:%d/whoami", tls_h2_port);
    cl = h_client_new();
    assert_int_equal(h_client_http_opts(cl, &r, &with, "GET", url, NULL, 0, spoof), 0);
    h_client_free(cl);
    assert_int_equal(r.http_version, 20);
    assert_string_equal(r.body, "CN=alice,O=Acme\\, Inc.");
    h_resp_free(&r);

    snprintf(res, sizeof(res), "a.test:%d:127.0.0.1", tls_h2_port);
    snprintf(url, sizeof(url), "https://a.test:%d/headers", tls_h2_port);
    cl = h_client_new();
    assert_int_equal(h_client_http_opts(cl, &r, &none, "GET", url, NULL, 0, spoof_host), 0);
    h_client_free(cl);
    assert_int_equal(r.http_version, 20);
    assert_int_equal(r.status, 421);
    h_resp_free(&r);
}

static void
test_ocsp_stapled(void **state)
{
    char out[16384];
    (void)state;

    assert_int_equal(s_client(out, sizeof(out), NULL, "-servername b.test -status"), 0);
    assert_non_null(strstr(out, "OCSP Response Status: successful"));
    assert_non_null(strstr(out, "Cert Status: good"));
    assert_int_equal(s_client(out, sizeof(out), NULL, "-servername a.test -status"), 0);
    assert_non_null(strstr(out, "OCSP response: no response sent"));
}

static void
test_access_log_and_metrics(void **state)
{
    char out[65536];
    (void)state;

    h_sleep_ms(50);
    assert_int_equal(h_sh(out, sizeof(out), "cat access.log"), 0);
    assert_non_null(strstr(out, "\"tls\":\"TLSv1.3\",\"cipher\":\"TLS_"));
    assert_non_null(strstr(out, "\"tls\":\"TLSv1.2\",\"cipher\":\"ECDHE-ECDSA-"));
    assert_true(metric("edge_tls_ciphers_total{cipher=\"TLS_AES_256_GCM_SHA384\"}") > 0);
}

/* ---- reload ---------------------------------------------------------------------------------- */

static void
test_reload_swaps_the_certificate(void **state)
{
    struct h_client *cl = h_client_new();
    struct h_resp r;
    long reloads = h_edge_metric(&edge, "edge_reloads_total");
    (void)state;

    assert_int_equal(tls_get(cl, &r, "a.test", "/hello", NULL, NULL), 0);
    assert_non_null(strstr(r.cert_subject, "O = gen1"));
    assert_int_equal(r.new_conns, 1);
    h_resp_free(&r);

    assert_int_equal(h_sh(NULL, 0, "cp a2.crt a.crt && cp a2.key a.key"), 0);
    assert_int_equal(h_kill(&edge.proc, SIGHUP), 0);
    for (int i = 0; i < 100 && h_edge_metric(&edge, "edge_reloads_total") == reloads; i++)
        h_sleep_ms(20);
    assert_int_equal(h_edge_metric(&edge, "edge_reloads_total"), reloads + 1);
    h_sleep_ms(50); /* the workers swap on their own threads */

    /* the open keep-alive connection goes on */
    assert_int_equal(tls_get(cl, &r, "a.test", "/hello", NULL, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.new_conns, 0);
    h_resp_free(&r);
    /* a new handshake gets the new certificate */
    assert_int_equal(tls_get(NULL, &r, "a.test", "/hello", NULL, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.cert_subject, "O = gen2"));
    h_resp_free(&r);
    h_client_free(cl);
}

/* ---- edge -t ----------------------------------------------------------------------------- */

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
test_conf_check_refuses_bad_files(void **state)
{
    char body[4096];
    (void)state;

    snprintf(body, sizeof(body), "tls_certificate %s/nope.crt %s/a.key;\n", dir, dir);
    check_refused("t1.conf", body, "t1.conf:2:17: 'tls_certificate'", "nope.crt': No such file");
    snprintf(body, sizeof(body), "tls_certificate %s/a.crt %s/b.key;\n", dir, dir);
    check_refused("t2.conf", body, "t2.conf:2:", "b.key' does not match certificate");
    snprintf(body, sizeof(body), "tls_certificate %s/a.crt %s/a.crt;\n", dir, dir);
    check_refused("t3.conf", body, "t3.conf:2:", "no PEM private key in");
    snprintf(body, sizeof(body), "tls_certificate %s/a.crt %s/a.key;\ntls_ocsp %s/a.crt;\n", dir,
             dir, dir);
    check_refused("t4.conf", body, "t4.conf:3:10: 'tls_ocsp'", "is not a DER OCSP response");
    check_refused("t5.conf", "listen 127.0.0.1:2 tls;\n",
                  "t5.conf:2:1:", "needs a 'tls_certificate'");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bodies_and_cache_like_plain),
        cmocka_unit_test(test_request_body_and_keepalive),
        cmocka_unit_test(test_large_download_and_tunnel),
        cmocka_unit_test(test_sni_picks_the_certificate),
        cmocka_unit_test(test_alpn_h2),
        cmocka_unit_test(test_old_protocols_refused),
        cmocka_unit_test(test_garbage_is_closed_and_counted),
        cmocka_unit_test(test_session_resumption),
        cmocka_unit_test(test_client_certificates),
        cmocka_unit_test(test_client_certificates_over_h2),
        cmocka_unit_test(test_ocsp_stapled),
        cmocka_unit_test(test_access_log_and_metrics),
        cmocka_unit_test(test_reload_swaps_the_certificate),
        cmocka_unit_test(test_conf_check_refuses_bad_files),
    };
    return H_RUN(tests, setup, teardown);
}
