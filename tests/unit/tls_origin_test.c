/*
 * Unit tests of TLS to origins in the tls module (tls/origin.c and the
 * origin directives of tls/conf.c): which origins speak TLS, the exact
 * conf errors, the ids that tell settings apart, what an SSL is made with
 * (SNI, the name or IP verified), the sessions kept for resumption and
 * the reasons given for failed handshakes. CA files are made in memory
 * and written to a temp dir.
 */
#include "tls/origin.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <unistd.h>

static char dir[64];
static char ca_a[128], ca_b[128], not_pem[128];

static void
write_pem_ca(const char *path, const char *cn)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    FILE *f;

    assert_non_null(key);
    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    assert_true(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0));
    assert_true(X509_set_subject_name(x, name));
    assert_true(X509_set_issuer_name(x, name));
    assert_true(X509_set_pubkey(x, key));
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_true(PEM_write_X509(f, x));
    assert_int_equal(fclose(f), 0);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(key);
}

static int
setup(void **state)
{
    FILE *f;

    (void)state;
    if (tls_conf_register() < 0)
        return -1;
    snprintf(dir, sizeof(dir), "/tmp/edge-tls-origin-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(ca_a, sizeof(ca_a), "%s/a.pem", dir);
    snprintf(ca_b, sizeof(ca_b), "%s/b.pem", dir);
    snprintf(not_pem, sizeof(not_pem), "%s/not.pem", dir);
    write_pem_ca(ca_a, "CA a");
    write_pem_ca(ca_b, "CA b");
    f = fopen(not_pem, "w");
    if (f == NULL)
        return -1;
    fputs("this is not a certificate\n", f);
    fclose(f);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    unlink(ca_a);
    unlink(ca_b);
    unlink(not_pem);
    rmdir(dir);
    return 0;
}

static struct conf *
load(const char *text)
{
    struct conf_err err = {{0}};
    struct conf *c = conf_load_string("edge.conf", text, strlen(text), &err);

    if (c == NULL)
        fail_msg("conf refused: %s\n--- conf:\n%s", err.msg, text);
    return c;
}

static const char *
load_err(const char *text)
{
    static struct conf_err err;
    struct conf *c;

    memset(&err, 0, sizeof(err));
    c = conf_load_string("edge.conf", text, strlen(text), &err);
    if (c != NULL) {
        conf_unref(c);
        fail_msg("conf accepted, expected an error:\n%s", text);
    }
    return err.msg;
}

static const struct tls_origin *
origin(const struct conf *c, const char *name)
{
    const struct conf_origin *o = conf_origin_find(c, name, strlen(name));

    assert_non_null(o);
    return tls_conf_origin(c, o);
}

/* ---- which origins speak TLS ------------------------------------------------------------------
 */

static void
test_which_origins_speak_tls(void **state)
{
    char text[2048];
    struct conf *c;
    const struct tls_origin *t;
    (void)state;

    snprintf(text, sizeof(text),
             "origin plain { server a.internal:80; }\n"
             "origin plain2 { server http://a.internal; tls off; }\n"
             "origin https { server https://a.internal; }\n"
             "origin on { server a.internal:443; server b.internal:443; tls on; }\n"
             "origin ca { server https://127.0.0.1:8443; tls_ca %s; }\n"
             "origin off { server https://a.internal; tls on; tls_verify off; }\n"
             "origin named { server https://10.0.0.1; tls_server_name Origin.Example.; }\n"
             "origin named_ip { server https://a.internal; tls_server_name ::1; }\n",
             ca_a);
    c = load(text);
    assert_null(origin(c, "plain"));
    assert_null(origin(c, "plain2"));
    t = origin(c, "https");
    assert_non_null(t);
    assert_true(tls_origin_verifies(t));
    assert_null(t->name);
    assert_non_null(origin(c, "on"));
    assert_non_null(origin(c, "ca"));
    t = origin(c, "off");
    assert_non_null(t);
    assert_false(tls_origin_verifies(t));
    t = origin(c, "named");
    assert_string_equal(t->name, "origin.example");
    assert_false(t->name_is_ip);
    t = origin(c, "named_ip");
    assert_string_equal(t->name, "::1");
    assert_true(t->name_is_ip);
    conf_unref(c);
}

/* ---- conf errors -------------------------------------------------------------------------------
 */

static void
test_conf_errors(void **state)
{
    char text[1024], want[1024];
    (void)state;

    assert_string_equal(
        load_err("origin app {\n  server http://a.internal;\n  tls on;\n}"),
        "edge.conf:3:3: 'tls on' contradicts the http:// server at edge.conf:2:3 (write it as "
        "HOST:PORT or https://HOST[:PORT])");
    assert_string_equal(load_err("origin app { server https://a.internal; tls off; }"),
                        "edge.conf:1:41: 'tls off' contradicts the https:// server at "
                        "edge.conf:1:14");
    assert_string_equal(load_err("origin app { server a.internal:80; tls_ca ca.pem; }"),
                        "edge.conf:1:36: 'tls_ca': origin 'app' does not speak TLS (write its "
                        "servers as https://HOST[:PORT], or add 'tls on;')");
    assert_string_equal(load_err("origin app { server a.internal:80; tls_verify off; }"),
                        "edge.conf:1:36: 'tls_verify': origin 'app' does not speak TLS (write "
                        "its servers as https://HOST[:PORT], or add 'tls on;')");
    assert_string_equal(
        load_err("origin app { server a.internal:80; tls off; tls_server_name a.internal; }"),
        "edge.conf:1:45: 'tls_server_name': origin 'app' does not speak TLS (write its servers "
        "as https://HOST[:PORT], or add 'tls on;')");
    snprintf(text, sizeof(text),
             "origin app { server https://a.internal; tls_verify off; tls_ca %s; }", ca_a);
    assert_string_equal(load_err(text),
                        "edge.conf:1:57: 'tls_ca' has no effect with 'tls_verify off'");
    assert_string_equal(load_err("origin app { server https://a.internal; tls maybe; }"),
                        "edge.conf:1:45: 'tls' expects 'on' or 'off', not 'maybe'");
    assert_string_equal(load_err("origin app { server https://a.internal; tls_verify 1; }"),
                        "edge.conf:1:52: 'tls_verify' expects 'on' or 'off', not '1'");
    assert_string_equal(
        load_err("origin app { server https://a.internal; tls_server_name 'a b'; }"),
        "edge.conf:1:57: 'tls_server_name': 'a b' is not a host name or an IP address");
    assert_string_equal(load_err("origin app { server https://a.internal; tls_ca ''; }"),
                        "edge.conf:1:48: 'tls_ca': empty file name");
    assert_string_equal(load_err("origin app { server https://a.internal; tls on; tls on; }"),
                        "edge.conf:1:49: 'tls' is duplicate (first set at edge.conf:1)");
    assert_string_equal(load_err("site * { tls_ca x.pem; }"),
                        "edge.conf:1:10: 'tls_ca' is not allowed here (it belongs in an 'origin' "
                        "block)");
    /* the CA file is read at load: edge -t refuses a missing or bad one, naming it */
    snprintf(text, sizeof(text),
             "origin app {\n  server https://a.internal;\n  tls_ca %s/nope.pem;\n}", dir);
    snprintf(want, sizeof(want),
             "edge.conf:3:10: 'tls_ca': cannot read '%s/nope.pem': No such file or directory", dir);
    assert_string_equal(load_err(text), want);
    snprintf(text, sizeof(text), "origin app { server https://a.internal; tls_ca %s; }", not_pem);
    snprintf(want, sizeof(want), "edge.conf:1:48: 'tls_ca': no PEM certificate in '%s'", not_pem);
    assert_string_equal(load_err(text), want);
}

/* ---- ids
 * ------------------------------------------------------------------------------------------ */

static void
test_ids_tell_settings_apart(void **state)
{
    char text[2048];
    struct conf *c, *c2;
    (void)state;

    snprintf(text, sizeof(text),
             "origin a { server https://x.internal; }\n"
             "origin a2 { server https://y.internal:8443; keepalive 2; }\n"
             "origin name { server https://x.internal; tls_server_name n.internal; }\n"
             "origin off { server https://x.internal; tls_verify off; }\n"
             "origin ca { server https://x.internal; tls_ca %s; }\n"
             "origin cb { server https://x.internal; tls_ca %s; }\n",
             ca_a, ca_b);
    c = load(text);
    c2 = load(text);
    /* the same settings, even in another snapshot (a reload): the same id */
    assert_true(tls_origin_id(origin(c, "a")) == tls_origin_id(origin(c, "a2")));
    assert_true(tls_origin_id(origin(c, "ca")) == tls_origin_id(origin(c2, "ca")));
    /* a server name, verification or CA bytes of their own: another id */
    assert_true(tls_origin_id(origin(c, "a")) != tls_origin_id(origin(c, "name")));
    assert_true(tls_origin_id(origin(c, "a")) != tls_origin_id(origin(c, "off")));
    assert_true(tls_origin_id(origin(c, "a")) != tls_origin_id(origin(c, "ca")));
    assert_true(tls_origin_id(origin(c, "ca")) != tls_origin_id(origin(c, "cb")));
    /* origins on the system store share one X509_STORE */
    assert_ptr_equal(SSL_CTX_get_cert_store(origin(c, "a")->ctx),
                     SSL_CTX_get_cert_store(origin(c, "name")->ctx));
    assert_ptr_not_equal(SSL_CTX_get_cert_store(origin(c, "a")->ctx),
                         SSL_CTX_get_cert_store(origin(c, "ca")->ctx));
    conf_unref(c2);
    conf_unref(c);
}

/* ---- the SSL of a connection
 * ------------------------------------------------------------------------- */

static void
test_client_ssl(void **state)
{
    struct conf *c = load("origin a { server https://x.internal; }\n"
                          "origin name { server https://10.0.0.1; tls_server_name n.internal; }\n"
                          "origin off { server https://x.internal; tls_verify off; }\n");
    struct tls_sessions *sess = tls_sessions_new();
    SSL *s;
    (void)state;

    assert_non_null(sess);
    /* a name: SNI and the name checked (the root's dot dropped) */
    s = tls_client_new(origin(c, "a"), "app.internal.", false, sess);
    assert_non_null(s);
    assert_string_equal(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name), "app.internal");
    assert_string_equal(X509_VERIFY_PARAM_get0_host(SSL_get0_param(s), 0), "app.internal");
    assert_int_equal(SSL_get_verify_mode(s), SSL_VERIFY_PEER);
    assert_int_equal(atomic_load(&sess->refs), 2); /* the SSL holds one */
    assert_false(tls_client_started(s));
    SSL_free(s);
    assert_int_equal(atomic_load(&sess->refs), 1);
    /* an IP literal: no SNI, the address checked */
    s = tls_client_new(origin(c, "a"), "127.0.0.1", true, NULL);
    assert_non_null(s);
    assert_null(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name));
    assert_null(X509_VERIFY_PARAM_get0_host(SSL_get0_param(s), 0));
    {
        char *ip = X509_VERIFY_PARAM_get1_ip_asc(SSL_get0_param(s));
        assert_string_equal(ip, "127.0.0.1");
        OPENSSL_free(ip);
    }
    SSL_free(s);
    /* tls_server_name replaces the server's host, IP or not */
    s = tls_client_new(origin(c, "name"), "10.0.0.1", true, NULL);
    assert_non_null(s);
    assert_string_equal(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name), "n.internal");
    SSL_free(s);
    /* tls_verify off */
    s = tls_client_new(origin(c, "off"), "x.internal", false, NULL);
    assert_non_null(s);
    assert_int_equal(SSL_get_verify_mode(s), SSL_VERIFY_NONE);
    assert_string_equal(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name), "x.internal");
    SSL_free(s);
    tls_sessions_unref(sess);
    conf_unref(c);
}

/* A session reaches the sessions object through the callback and is
 * offered (a copy) to the next SSL. */
static void
test_sessions_kept_and_offered(void **state)
{
    struct conf *c = load("origin a { server https://x.internal; }\n");
    struct tls_sessions *sess = tls_sessions_new();
    SSL_SESSION *made = SSL_SESSION_new(), *offered;
    const unsigned char id[4] = {1, 2, 3, 4};
    SSL *s;
    (void)state;

    assert_non_null(made);
    s = tls_client_new(origin(c, "a"), "x.internal", false, sess);
    assert_non_null(s);
    /* a session without an id or ticket is not resumable: not kept */
    assert_int_equal(new_session_cb(s, made), 0);
    assert_null(sess->last);
    assert_true(SSL_SESSION_set1_id(made, id, sizeof(id)));
    assert_true(SSL_SESSION_set_protocol_version(made, TLS1_2_VERSION));
    assert_true(
        SSL_SESSION_set_cipher(made, SSL_CIPHER_find(s, (const unsigned char *)"\xc0\x2b")));
    assert_int_equal(new_session_cb(s, made), 1); /* the callback's reference is kept */
    assert_ptr_equal(sess->last, made);
    SSL_free(s);
    s = tls_client_new(origin(c, "a"), "x.internal", false, sess);
    assert_non_null(s);
    offered = SSL_get_session(s);
    assert_non_null(offered);
    assert_ptr_not_equal(offered, made); /* a copy: OpenSSL may mark the one it resumed */
    {
        unsigned int len;
        const unsigned char *got = SSL_SESSION_get_id(offered, &len);
        assert_int_equal(len, sizeof(id));
        assert_memory_equal(got, id, sizeof(id));
    }
    SSL_free(s);
    tls_sessions_unref(sess); /* frees the kept session too (ASan checks) */
    conf_unref(c);
}

/* ---- why a handshake failed
 * -------------------------------------------------------------------------- */

static void
test_client_why(void **state)
{
    struct conf *c = load("origin a { server https://x.internal; }\n");
    SSL *s = tls_client_new(origin(c, "a"), "x.internal", false, NULL);
    char out[256];
    unsigned long errs[3];
    (void)state;

    assert_non_null(s);
    /* nothing usable: libevent's SSL_get_error() values (library 0) are skipped */
    errs[0] = SSL_ERROR_SYSCALL;
    tls_client_why(s, errs, 1, out, sizeof(out));
    assert_string_equal(out, "connection closed during the handshake");
    tls_client_why(s, NULL, 0, out, sizeof(out));
    assert_string_equal(out, "connection closed during the handshake");
    /* an OpenSSL reason */
    errs[0] = SSL_ERROR_SSL;
    errs[1] = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_WRONG_VERSION_NUMBER);
    tls_client_why(s, errs, 2, out, sizeof(out));
    assert_string_equal(out, "wrong version number");
    /* a verification failure names the certificate's problem */
    SSL_set_verify_result(s, X509_V_ERR_HOSTNAME_MISMATCH);
    errs[1] = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_CERTIFICATE_VERIFY_FAILED);
    tls_client_why(s, errs, 2, out, sizeof(out));
    assert_string_equal(out, "certificate verify failed (hostname mismatch)");
    /* truncated, still terminated */
    assert_int_equal(tls_client_why(s, errs, 2, out, 12), 11);
    assert_string_equal(out, "certificate");
    SSL_free(s);
    conf_unref(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_which_origins_speak_tls),   cmocka_unit_test(test_conf_errors),
        cmocka_unit_test(test_ids_tell_settings_apart),   cmocka_unit_test(test_client_ssl),
        cmocka_unit_test(test_sessions_kept_and_offered), cmocka_unit_test(test_client_why),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
