/*
 * Unit tests of tls/ctx.c internals: which names a certificate serves
 * (DNS subjectAltNames, the CN only without them) and the parsing of the
 * ClientHello's server_name extension. Certificates are made in memory.
 */
#include "tls/ctx.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static EVP_PKEY *key;

static int
setup(void **state)
{
    (void)state;
    key = EVP_EC_gen("P-256");
    return key != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(key);
    return 0;
}

/* A self-signed certificate with subject CN=cn (NULL: none) and the
 * subjectAltName san ("DNS:a.test,IP:127.0.0.1"; NULL: none). */
static X509 *
make_cert(const char *cn, const char *san)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    X509V3_CTX v3;

    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    if (cn != NULL)
        assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
                                               -1, -1, 0));
    assert_true(X509_set_subject_name(x, name));
    assert_true(X509_set_issuer_name(x, name));
    X509_NAME_free(name);
    assert_true(X509_set_pubkey(x, key));
    if (san != NULL) {
        X509_EXTENSION *ext;
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        assert_non_null(ext);
        assert_true(X509_add_ext(x, ext, -1));
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static long
lookup(struct tls_set *set, const char *host)
{
    return tls_names_find(&set->names, host, strlen(host));
}

static void
test_names_from_san_then_cn(void **state)
{
    struct tls_set set = {0};
    X509 *a = make_cert("ignored.test", "DNS:a.test,DNS:*.B.test,IP:127.0.0.1,email:x@a.test");
    X509 *b = make_cert("cn-only.test", NULL);
    X509 *c = make_cert("cn-fallback.test", "IP:127.0.0.2");
    X509 *d = make_cert(NULL, NULL);
    X509 *e = make_cert("a.test", "DNS:a.test,DNS:second.test");
    (void)state;

    assert_int_equal(add_names(&set, a, 0), 0);
    assert_int_equal(add_names(&set, b, 1), 0);
    assert_int_equal(add_names(&set, c, 2), 0);
    assert_int_equal(add_names(&set, d, 3), 0);
    assert_int_equal(add_names(&set, e, 4), 0);
    tls_names_finish(&set.names);

    assert_int_equal(lookup(&set, "a.test"), 0); /* first certificate wins a shared name */
    assert_int_equal(lookup(&set, "x.b.test"), 0);
    assert_int_equal(lookup(&set, "ignored.test"), -1); /* SAN present: the CN is not a name */
    assert_int_equal(lookup(&set, "cn-only.test"), 1);
    assert_int_equal(lookup(&set, "cn-fallback.test"), 2); /* no DNS SAN: the CN counts */
    assert_int_equal(lookup(&set, "second.test"), 4);
    assert_int_equal(set.names.nexact + set.names.nwild, 5);
    tls_names_fini(&set.names);
    X509_free(a);
    X509_free(b);
    X509_free(c);
    X509_free(d);
    X509_free(e);
}

static void
test_sni_parse(void **state)
{
    char out[TLS_NAME_MAX + 1];
    /* list length 14: type 0, length 11, "Www.A.Test." */
    static const unsigned char ok[] = {0,   14,  0,   0,   11,  'W', 'w', 'w',
                                       '.', 'A', '.', 'T', 'e', 's', 't', '.'};
    /* an unknown name type first, then the host name */
    static const unsigned char two[] = {0, 11, 9, 0, 2, 'x', 'y', 0, 0, 3, 'a', '.', 'b'};
    static const unsigned char badlist[] = {0,   15,  0,   0,   11,  'W', 'w', 'w',
                                            '.', 'A', '.', 'T', 'e', 's', 't', '.'};
    static const unsigned char truncated[] = {0, 5, 0, 0, 9, 'a', 'b'};
    static const unsigned char junk[] = {0, 6, 0, 0, 3, 'a', '/', 'b'};
    (void)state;

    assert_int_equal(sni_parse(ok, sizeof(ok), out, sizeof(out)), 10);
    assert_string_equal(out, "www.a.test");
    assert_int_equal(sni_parse(two, sizeof(two), out, sizeof(out)), 3);
    assert_string_equal(out, "a.b");
    assert_int_equal(sni_parse(badlist, sizeof(badlist), out, sizeof(out)), 0);
    assert_int_equal(sni_parse(truncated, sizeof(truncated), out, sizeof(out)), 0);
    assert_int_equal(sni_parse(junk, sizeof(junk), out, sizeof(out)), 0);
    assert_int_equal(sni_parse(ok, 1, out, sizeof(out)), 0);
    assert_int_equal(sni_parse(ok, 0, out, sizeof(out)), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_from_san_then_cn),
        cmocka_unit_test(test_sni_parse),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
