/*
 * Unit tests of compute/functions/jwt.c against the fake host: HS256 and
 * RS256 (a key generated here, published in a JWKS file), exp/nbf with
 * leeway, claims to headers, algorithm confusion, malformed tokens.
 */
#include "compute/functions/jwt.c"

#include "tests/unit/fn_fakehost.h"

#include <openssl/rsa.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <unistd.h>

static EVP_PKEY *rsa_key;
static char jwks_path[64];

static void
b64url(const unsigned char *in, size_t n, char *out, size_t cap)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i, o = 0;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        out[o++] = a[in[i] >> 2];
        out[o++] = a[(in[i] & 3) << 4];
    } else if (n - i == 2) {
        out[o++] = a[in[i] >> 2];
        out[o++] = a[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        out[o++] = a[(in[i + 1] & 15) << 2];
    }
    assert_true(o < cap);
    out[o] = '\0';
}

/* header.payload.signature; alg "HS256" signs with secret, "RS256" with
 * rsa_key, anything else gets a junk signature. */
static char *
token(const char *header, const char *payload, const char *secret)
{
    static char out[8192];
    unsigned char sig[1024];
    size_t sigl = sizeof(sig), n;
    char sigb[2048];

    b64url((const unsigned char *)header, strlen(header), out, sizeof(out));
    n = strlen(out);
    out[n++] = '.';
    b64url((const unsigned char *)payload, strlen(payload), out + n, sizeof(out) - n);
    n = strlen(out);
    if (strstr(header, "HS256") != NULL) {
        unsigned int l = 0;
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)out, n, sig, &l);
        sigl = l;
    } else if (strstr(header, "RS256") != NULL && rsa_key != NULL) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, rsa_key), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &sigl, (unsigned char *)out, n), 1);
        EVP_MD_CTX_free(md);
    } else {
        memset(sig, 'x', 32);
        sigl = 32;
    }
    b64url(sig, sigl, sigb, sizeof(sigb));
    snprintf(out + n, sizeof(out) - n, ".%s", sigb);
    return out;
}

static efn_action
run(void *inst, const char *auth, struct efn_req **out)
{
    struct efn_req *r = fh_req_new("GET", "/");
    efn_action a;

    if (auth != NULL)
        fh_hdr_add(r, EFN_MSG_REQ, "Authorization", auth);
    fh_hdr_add(r, EFN_MSG_REQ, "X-Jwt-Sub", "forged");
    a = fh_run(r, FH_REQUEST, inst);
    *out = r;
    return a;
}

static void *
mk(const char *const *kv, size_t n)
{
    char err[256];
    void *inst;

    assert_int_equal(fh_init(), 0);
    if (fh_instance(&inst, err, sizeof(err), kv, n) != 0)
        fail_msg("instance_new: %s", err);
    return inst;
}

static char *
bearer(const char *h, const char *p, const char *secret)
{
    static char buf[8300];

    snprintf(buf, sizeof(buf), "Bearer %s", token(h, p, secret));
    return buf;
}

static const char *
reason(struct efn_req *r)
{
    const char *p = r->resp_body != NULL ? strstr(r->resp_body, "\"reason\":\"") : NULL;
    return p != NULL ? p + 10 : "";
}

static void
test_hs256(void **state)
{
    const char *args[] = {"secret=s3cret", "claims=sub,email,role,n"};
    const char *h = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    void *inst = mk(args, 2);
    struct efn_req *r;
    char p[256];
    long now = (long)time(NULL);

    (void)state;
    snprintf(p, sizeof(p),
             "{\"sub\":\"alice\",\"email\":\"a@x.io\",\"n\":42,\"role\":\"a\\\"b\",\"exp\":%ld,"
             "\"nested\":{\"a\":[1,2,{\"b\":null}]}}", now + 300);
    assert_int_equal(run(inst, bearer(h, p, "s3cret"), &r), EFN_CONTINUE);
    assert_int_equal(fh_hdr_count(r, EFN_MSG_REQ, "X-Jwt-Sub"), 1);
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-Jwt-Sub", 0), "alice");
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-Jwt-Email", 0), "a@x.io");
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-Jwt-N", 0), "42");
    assert_null(fh_hdr(r, EFN_MSG_REQ, "X-Jwt-Role", 0)); /* escapes: not passed */
    fh_req_free(r);
    /* wrong secret */
    assert_int_equal(run(inst, bearer(h, p, "other"), &r), EFN_DONE);
    assert_int_equal(r->responded, 401);
    assert_non_null(strstr(reason(r), "bad signature"));
    assert_string_equal(fh_resp_hdr(r, "WWW-Authenticate"), "Bearer error=\"invalid_token\"");
    assert_null(fh_hdr(r, EFN_MSG_REQ, "X-Jwt-Sub", 0)); /* the forged one is gone */
    fh_req_free(r);
    /* tampered payload */
    {
        char t[8300], *dot;
        snprintf(t, sizeof(t), "%s", bearer(h, p, "s3cret"));
        dot = strchr(t, '.');
        dot[2] = dot[2] == 'A' ? 'B' : 'A';
        assert_int_equal(run(inst, t, &r), EFN_DONE);
        assert_int_equal(r->responded, 401);
        fh_req_free(r);
    }
    jwt_instance_free(inst);
    fh_kv_reset();
}

static void
test_times(void **state)
{
    const char *args[] = {"secret=k", "leeway=30"};
    const char *h = "{\"alg\":\"HS256\"}";
    void *inst = mk(args, 2);
    struct efn_req *r;
    char p[256];
    long now = (long)time(NULL);

    (void)state;
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":%ld}", now - 10); /* within leeway */
    assert_int_equal(run(inst, bearer(h, p, "k"), &r), EFN_CONTINUE);
    fh_req_free(r);
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":%ld}", now - 100);
    assert_int_equal(run(inst, bearer(h, p, "k"), &r), EFN_DONE);
    assert_non_null(strstr(reason(r), "expired"));
    fh_req_free(r);
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":%ld,\"nbf\":%ld}", now + 500, now + 100);
    assert_int_equal(run(inst, bearer(h, p, "k"), &r), EFN_DONE);
    assert_non_null(strstr(reason(r), "not yet valid"));
    fh_req_free(r);
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":%ld,\"nbf\":%ld}", now + 500, now + 10);
    assert_int_equal(run(inst, bearer(h, p, "k"), &r), EFN_CONTINUE);
    fh_req_free(r);
    assert_int_equal(run(inst, bearer(h, "{\"sub\":\"a\"}", "k"), &r), EFN_DONE);
    assert_non_null(strstr(reason(r), "exp"));
    fh_req_free(r);
    assert_int_equal(run(inst, bearer(h, "{\"sub\":\"a\",\"exp\":\"soon\"}", "k"), &r), EFN_DONE);
    fh_req_free(r);
    jwt_instance_free(inst);
    fh_kv_reset();
}

static void
test_malformed_and_confusion(void **state)
{
    const char *args[] = {"secret=k", "iss=me", "aud=api"};
    void *inst = mk(args, 3);
    struct efn_req *r;
    char p[256];
    long now = (long)time(NULL);
    const char *bad[] = {NULL, "Basic abc", "Bearer ", "Bearer a.b", "Bearer a.b.c.d",
                         "Bearer !!.e30.AAAA", "Bearer e30.e30.", "Bearer e30.bm90anNvbg.AAAA"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(run(inst, bad[i], &r), EFN_DONE);
        assert_int_equal(r->responded, 401);
        fh_req_free(r);
    }
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"iss\":\"me\",\"aud\":\"api\",\"exp\":%ld}", now + 60);
    assert_int_equal(run(inst, bearer("{\"alg\":\"HS256\"}", p, "k"), &r), EFN_CONTINUE);
    fh_req_free(r);
    assert_int_equal(run(inst, bearer("{\"alg\":\"none\"}", p, "k"), &r), EFN_DONE);
    assert_non_null(strstr(reason(r), "unexpected algorithm"));
    fh_req_free(r);
    assert_int_equal(run(inst, bearer("{\"alg\":\"RS256\"}", p, "k"), &r), EFN_DONE);
    assert_non_null(strstr(reason(r), "unexpected algorithm"));
    fh_req_free(r);
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"iss\":\"you\",\"aud\":\"api\",\"exp\":%ld}", now + 60);
    assert_int_equal(run(inst, bearer("{\"alg\":\"HS256\"}", p, "k"), &r), EFN_DONE);
    assert_non_null(strstr(reason(r), "issuer"));
    fh_req_free(r);
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"iss\":\"me\",\"exp\":%ld}", now + 60);
    assert_int_equal(run(inst, bearer("{\"alg\":\"HS256\"}", p, "k"), &r), EFN_DONE);
    assert_non_null(strstr(reason(r), "audience"));
    fh_req_free(r);
    assert_int_equal(run(inst, bearer("{\"alg\":\"HS256\"}", "[1,2]", "k"), &r), EFN_DONE);
    assert_non_null(strstr(reason(r), "claims"));
    fh_req_free(r);
    /* arena exhausted: ERROR, not a crash */
    r = fh_req_new("GET", "/");
    r->arena_cap = 8;
    fh_hdr_add(r, EFN_MSG_REQ, "Authorization", bearer("{\"alg\":\"HS256\"}", p, "k"));
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    fh_req_free(r);
    jwt_instance_free(inst);
    fh_kv_reset();
}

static void
write_jwks(void)
{
    BIGNUM *n = NULL, *e = NULL;
    unsigned char nb[600], eb[8];
    char ns[900], es[16];
    FILE *f;
    int fd;

    rsa_key = EVP_RSA_gen(2048);
    assert_non_null(rsa_key);
    assert_int_equal(EVP_PKEY_get_bn_param(rsa_key, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(rsa_key, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    b64url(nb, (size_t)BN_bn2bin(n, nb), ns, sizeof(ns));
    b64url(eb, (size_t)BN_bn2bin(e, eb), es, sizeof(es));
    snprintf(jwks_path, sizeof(jwks_path), "/tmp/fn_jwt_test.XXXXXX");
    fd = mkstemp(jwks_path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fprintf(f, "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"ec1\",\"x\":\"AA\"},\n"
               "  {\"kty\":\"RSA\",\"kid\":\"k1\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"},\n"
               "  {\"kty\":\"RSA\",\"kid\":\"k2\",\"n\":\"%s\",\"e\":\"%s\"}]}\n",
            ns, es, ns, "Aw");
    fclose(f);
    BN_free(n);
    BN_free(e);
}

static void
test_rs256(void **state)
{
    char arg[128];
    const char *args[1];
    void *inst;
    struct efn_req *r;
    char p[256];
    long now = (long)time(NULL);

    (void)state;
    write_jwks();
    snprintf(arg, sizeof(arg), "jwks_file=%s", jwks_path);
    args[0] = arg;
    inst = mk(args, 1);
    snprintf(p, sizeof(p), "{\"sub\":\"bob\",\"exp\":%ld}", now + 60);
    assert_int_equal(run(inst, bearer("{\"alg\":\"RS256\",\"kid\":\"k1\"}", p, NULL), &r),
                     EFN_CONTINUE);
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-Jwt-Sub", 0), "bob");
    fh_req_free(r);
    /* k2 has another exponent: the signature does not verify */
    assert_int_equal(run(inst, bearer("{\"alg\":\"RS256\",\"kid\":\"k2\"}", p, NULL), &r),
                     EFN_DONE);
    assert_non_null(strstr(reason(r), "bad signature"));
    fh_req_free(r);
    assert_int_equal(run(inst, bearer("{\"alg\":\"RS256\",\"kid\":\"zz\"}", p, NULL), &r),
                     EFN_DONE);
    assert_non_null(strstr(reason(r), "unknown key"));
    fh_req_free(r);
    /* no kid with two keys: ambiguous */
    assert_int_equal(run(inst, bearer("{\"alg\":\"RS256\"}", p, NULL), &r), EFN_DONE);
    fh_req_free(r);
    /* HS256 signed with the public modulus text as a secret: refused by alg */
    assert_int_equal(run(inst, bearer("{\"alg\":\"HS256\",\"kid\":\"k1\"}", p, "x"), &r),
                     EFN_DONE);
    assert_non_null(strstr(reason(r), "unexpected algorithm"));
    fh_req_free(r);
    jwt_instance_free(inst);
    EVP_PKEY_free(rsa_key);
    unlink(jwks_path);
    fh_kv_reset();
}

static void
test_bad_args(void **state)
{
    static const struct fh_bad cases[] = {
        {{"leeway=5"}, 1, "exactly one of secret= or jwks_file="},
        {{"secret=a", "jwks_file=/nonexistent"}, 2, "cannot open"},
        {{"jwks_file=/nonexistent"}, 1, "jwks_file=/nonexistent: cannot open"},
        {{"secret="}, 1, "not empty"},
        {{"secret=a", "leeway=x"}, 2, "leeway="},
        {{"secret=a", "claims=a,,b"}, 2, "claims="},
        {{"secret=a", "claims=a b"}, 2, "bad claim name"},
        {{"secret=a", "require_exp=yes"}, 2, "require_exp="},
        {{"secret=a", "alg=HS512"}, 2, "unknown argument 'alg'"},
        {{"jwks_file=/etc/hostname"}, 1, "not a JWKS"},
    };

    (void)state;
    assert_int_equal(fh_init(), 0);
    assert_int_equal(fh_expect_bad_args(cases, sizeof(cases) / sizeof(cases[0])), 0);
    fh_kv_reset();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hs256),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_malformed_and_confusion),
        cmocka_unit_test(test_rs256),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
