/*
 * jwt — verifies bearer tokens (HS256 or RS256) with OpenSSL.
 *
 *     function jwt secret=TEXT [options];          HS256, shared secret
 *     function jwt jwks_file=PATH [options];       RS256, RSA keys of a JWKS file
 * options: leeway=SECONDS (default 60) for exp/nbf; claims=sub,email,...
 *          (default sub) passed to the origin as X-Jwt-<Claim> (first letter
 *          upper-cased; client-sent ones are removed first); iss=, aud= when
 *          they must match; require_exp=0 to accept tokens without exp.
 *
 * The algorithm is fixed by the configured key (a secret never verifies
 * RS256 and a JWKS never HS256: no algorithm confusion; "none" never). The
 * token comes from `Authorization: Bearer <token>`. Failures answer 401 with
 * `WWW-Authenticate: Bearer error="invalid_token"` and a JSON reason.
 * Claims whose string values hold JSON escapes or control characters are
 * not passed on (logged). Link: -lcrypto.
 */
#include "compute/edgefn.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define JWT_MAGIC 0x4a575431u /* "JWT1" */
#define JWT_MAX_KEYS 16
#define JWT_MAX_CLAIMS 8
#define JWT_TOKEN_MAX 8192
#define JWT_NAME_MAX 64

struct jwt_key {
    char kid[128];
    size_t kid_len;
    EVP_PKEY *pkey; /* owned */
};

struct jwt {
    unsigned magic;
    unsigned char *secret; /* HS256; owned */
    size_t secret_len;
    struct jwt_key keys[JWT_MAX_KEYS]; /* RS256 */
    size_t nkeys;
    int64_t leeway;
    int require_exp;
    char claims[JWT_MAX_CLAIMS][JWT_NAME_MAX];
    char hdrs[JWT_MAX_CLAIMS][JWT_NAME_MAX + 8];
    size_t nclaims;
    char *iss, *aud; /* owned, NULL = not checked */
};

static const struct efn_host *host;

static int
jwt_init(const struct efn_host *h, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    host = h;
    return 0;
}

/* ---- base64url ---- */

static int
b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes into out (capacity >= n*3/4+3); returns the length or -1. */
static long
b64url_decode(const char *s, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    size_t i, o = 0;
    int bits = 0;

    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    for (i = 0; i < n; i++) {
        int v = b64url_val(s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

/* ---- minimal JSON: spans of top-level members ---- */

static const char *
ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_value(const char *p, const char *e, int depth);

static const char *
skip_string(const char *p, const char *e)
{
    if (p >= e || *p != '"')
        return NULL;
    for (p++; p < e; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }
        if (*p == '"')
            return p + 1;
        if ((unsigned char)*p < 0x20)
            return NULL;
    }
    return NULL;
}

static const char *
skip_container(const char *p, const char *e, int depth, char close)
{
    p = ws(p + 1, e);
    if (p < e && *p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            p = skip_string(p, e);
            if (p == NULL)
                return NULL;
            p = ws(p, e);
            if (p >= e || *p != ':')
                return NULL;
            p = ws(p + 1, e);
        }
        p = skip_value(p, e, depth + 1);
        if (p == NULL)
            return NULL;
        p = ws(p, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        return p < e && *p == close ? p + 1 : NULL;
    }
}

static const char *
skip_value(const char *p, const char *e, int depth)
{
    if (depth > 16 || p >= e)
        return NULL;
    if (*p == '"')
        return skip_string(p, e);
    if (*p == '{')
        return skip_container(p, e, depth, '}');
    if (*p == '[')
        return skip_container(p, e, depth, ']');
    if (*p == '-' || (*p >= '0' && *p <= '9') || *p == 't' || *p == 'f' || *p == 'n') {
        const char *s = p;
        while (p < e && (strchr("+-.eE", *p) != NULL || (*p >= '0' && *p <= '9') ||
                         (*p >= 'a' && *p <= 'z')))
            p++;
        return p > s ? p : NULL;
    }
    return NULL;
}

/* Finds member `name` of the object [p, e); *v = its value span (strings
 * without their quotes, *is_str set). 0 found, -1 absent or bad JSON. */
static int
json_get(const char *p, const char *e, const char *name, const char **v, size_t *vlen, int *is_str)
{
    size_t nl = strlen(name);

    p = ws(p, e);
    if (p >= e || *p != '{')
        return -1;
    p = ws(p + 1, e);
    while (p < e && *p != '}') {
        const char *k = p, *ke = skip_string(p, e), *val, *ve;
        if (ke == NULL)
            return -1;
        p = ws(ke, e);
        if (p >= e || *p != ':')
            return -1;
        val = ws(p + 1, e);
        ve = skip_value(val, e, 1);
        if (ve == NULL)
            return -1;
        if ((size_t)(ke - k) == nl + 2 && memcmp(k + 1, name, nl) == 0) {
            *is_str = *val == '"';
            *v = *is_str ? val + 1 : val;
            *vlen = (size_t)(ve - val) - (*is_str ? 2 : 0);
            return 0;
        }
        p = ws(ve, e);
        if (p < e && *p == ',')
            p = ws(p + 1, e);
    }
    return -1;
}

static int
json_int(const char *p, const char *e, const char *name, int64_t *out)
{
    const char *v;
    size_t n, i;
    int is_str;
    int64_t x = 0;

    if (json_get(p, e, name, &v, &n, &is_str) < 0)
        return -1;
    if (is_str || n == 0)
        return -2;
    for (i = 0; i < n && v[i] != '.' && v[i] != 'e' && v[i] != 'E'; i++) {
        if (v[i] < '0' || v[i] > '9' || x > INT64_MAX / 10 - 10)
            return -2;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return 0;
}

/* ---- keys ---- */

static EVP_PKEY *
rsa_from_jwk(const char *p, const char *e)
{
    const char *nv, *ev;
    size_t nl, el;
    int s1, s2;
    unsigned char *nb = NULL, *eb = NULL;
    long nbl, ebl;
    BIGNUM *n = NULL, *x = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;

    if (json_get(p, e, "n", &nv, &nl, &s1) < 0 || json_get(p, e, "e", &ev, &el, &s2) < 0 ||
        !s1 || !s2)
        return NULL;
    nb = malloc(nl + 4);
    eb = malloc(el + 4);
    if (nb == NULL || eb == NULL)
        goto out;
    nbl = b64url_decode(nv, nl, nb);
    ebl = b64url_decode(ev, el, eb);
    if (nbl <= 0 || ebl <= 0)
        goto out;
    n = BN_bin2bn(nb, (int)nbl, NULL);
    x = BN_bin2bn(eb, (int)ebl, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (n == NULL || x == NULL || bld == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, x))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(x);
    free(nb);
    free(eb);
    return pkey;
}

static int
load_jwks(struct jwt *j, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long len;
    const char *p, *e, *v;
    size_t vl;
    int is_str, rc = -1;

    if (f == NULL) {
        snprintf(err, errlen, "jwks_file=%s: cannot open", path);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || len > (1 << 20) ||
        fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "jwks_file=%s: unreadable or larger than 1 MiB", path);
        goto out;
    }
    buf = malloc((size_t)len + 1);
    if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        snprintf(err, errlen, "jwks_file=%s: read failed", path);
        goto out;
    }
    e = buf + len;
    if (json_get(buf, e, "keys", &v, &vl, &is_str) < 0 || is_str || *v != '[') {
        snprintf(err, errlen, "jwks_file=%s: not a JWKS (no \"keys\" array)", path);
        goto out;
    }
    e = v + vl;
    p = ws(v + 1, e);
    while (p < e && *p != ']') {
        const char *oe = skip_value(p, e, 1), *kv;
        size_t kl;
        if (oe == NULL || *p != '{') {
            snprintf(err, errlen, "jwks_file=%s: bad JSON in \"keys\"", path);
            goto out;
        }
        if (json_get(p, oe, "kty", &kv, &kl, &is_str) == 0 && is_str && kl == 3 &&
            memcmp(kv, "RSA", 3) == 0) {
            struct jwt_key *k;
            if (j->nkeys == JWT_MAX_KEYS) {
                snprintf(err, errlen, "jwks_file=%s: more than %d RSA keys", path, JWT_MAX_KEYS);
                goto out;
            }
            k = &j->keys[j->nkeys];
            k->pkey = rsa_from_jwk(p, oe);
            if (k->pkey == NULL) {
                snprintf(err, errlen, "jwks_file=%s: RSA key %zu has a bad n or e", path,
                         j->nkeys + 1);
                goto out;
            }
            j->nkeys++;
            if (json_get(p, oe, "kid", &kv, &kl, &is_str) == 0 && is_str &&
                kl < sizeof(k->kid)) {
                memcpy(k->kid, kv, kl);
                k->kid_len = kl;
            }
        }
        p = ws(oe, e);
        if (p < e && *p == ',')
            p = ws(p + 1, e);
    }
    if (j->nkeys == 0) {
        snprintf(err, errlen, "jwks_file=%s: no RSA key", path);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* ---- instance ---- */

static int
key_is(efn_str k, const char *s)
{
    return k.len == strlen(s) && memcmp(k.ptr, s, k.len) == 0;
}

static char *
dupz(efn_str s)
{
    char *p = malloc(s.len + 1);

    if (p != NULL) {
        if (s.len > 0)
            memcpy(p, s.ptr, s.len);
        p[s.len] = '\0';
    }
    return p;
}

static void
jwt_instance_free(void *inst)
{
    struct jwt *j = inst;
    size_t i;

    if (j == NULL)
        return;
    if (j->secret != NULL)
        OPENSSL_cleanse(j->secret, j->secret_len);
    free(j->secret);
    for (i = 0; i < j->nkeys; i++)
        EVP_PKEY_free(j->keys[i].pkey);
    free(j->iss);
    free(j->aud);
    j->magic = 0;
    free(j);
}

static int
set_claims(struct jwt *j, efn_str v, char *err, size_t errlen)
{
    const char *p = v.ptr, *end = v.ptr + v.len;

    j->nclaims = 0;
    while (p <= end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t n = (size_t)((c != NULL ? c : end) - p), i;
        if (n == 0 || n >= JWT_NAME_MAX - 8 || j->nclaims == JWT_MAX_CLAIMS) {
            snprintf(err, errlen, "claims= must be 1-%d names of A-Z a-z 0-9 _ -, comma-separated",
                     JWT_MAX_CLAIMS);
            return -1;
        }
        for (i = 0; i < n; i++) {
            char ch = p[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
                snprintf(err, errlen, "claims=: bad claim name '%.*s'", (int)n, p);
                return -1;
            }
        }
        memcpy(j->claims[j->nclaims], p, n);
        j->claims[j->nclaims][n] = '\0';
        memcpy(j->hdrs[j->nclaims], "X-Jwt-", 6);
        memcpy(j->hdrs[j->nclaims] + 6, p, n);
        j->hdrs[j->nclaims][6 + n] = '\0';
        if (p[0] >= 'a' && p[0] <= 'z')
            j->hdrs[j->nclaims][6] = (char)(p[0] - 'a' + 'A');
        j->nclaims++;
        if (c == NULL)
            break;
        p = c + 1;
    }
    return 0;
}

static int
jwt_instance_new(const efn_arg *args, size_t nargs, void **inst, char *err, size_t errlen)
{
    struct jwt *j = calloc(1, sizeof(*j));
    size_t i;

    if (j == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    j->magic = JWT_MAGIC;
    j->leeway = 60;
    j->require_exp = 1;
    if (set_claims(j, EFN_STR("sub"), err, errlen) < 0)
        goto fail;
    for (i = 0; i < nargs; i++) {
        const efn_arg *a = &args[i];
        if (key_is(a->key, "secret")) {
            if (a->value.len == 0 || j->secret != NULL) {
                snprintf(err, errlen, "secret= must be given once, not empty");
                goto fail;
            }
            j->secret = (unsigned char *)dupz(a->value);
            j->secret_len = a->value.len;
            if (j->secret == NULL)
                goto oom;
        } else if (key_is(a->key, "jwks_file")) {
            char *path;
            int rc;
            if (j->nkeys > 0) {
                snprintf(err, errlen, "jwks_file= given twice");
                goto fail;
            }
            path = dupz(a->value);
            if (path == NULL)
                goto oom;
            rc = load_jwks(j, path, err, errlen);
            free(path);
            if (rc < 0)
                goto fail;
        } else if (key_is(a->key, "leeway")) {
            int64_t v = 0;
            size_t k;
            for (k = 0; k < a->value.len && v < 100000; k++) {
                if (a->value.ptr[k] < '0' || a->value.ptr[k] > '9')
                    break;
                v = v * 10 + (a->value.ptr[k] - '0');
            }
            if (a->value.len == 0 || k < a->value.len || v > 3600) {
                snprintf(err, errlen, "leeway= must be seconds, 0-3600");
                goto fail;
            }
            j->leeway = v;
        } else if (key_is(a->key, "claims")) {
            if (set_claims(j, a->value, err, errlen) < 0)
                goto fail;
        } else if (key_is(a->key, "iss") || key_is(a->key, "aud")) {
            char **dst = key_is(a->key, "iss") ? &j->iss : &j->aud;
            free(*dst);
            *dst = dupz(a->value);
            if (*dst == NULL)
                goto oom;
        } else if (key_is(a->key, "require_exp")) {
            if (!key_is(a->value, "0") && !key_is(a->value, "1")) {
                snprintf(err, errlen, "require_exp= must be 0 or 1");
                goto fail;
            }
            j->require_exp = a->value.ptr[0] == '1';
        } else {
            snprintf(err, errlen,
                     "unknown argument '%.*s' (jwt takes secret=, jwks_file=, leeway=, claims=, "
                     "iss=, aud=, require_exp=)", (int)a->key.len, a->key.ptr);
            goto fail;
        }
    }
    if ((j->secret == NULL) == (j->nkeys == 0)) {
        snprintf(err, errlen, "jwt needs exactly one of secret= or jwks_file=");
        goto fail;
    }
    *inst = j;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    jwt_instance_free(j);
    return -1;
}

/* ---- verification ---- */

static efn_action
deny(efn_req *r, const char *reason)
{
    char body[160];
    int n = snprintf(body, sizeof(body), "{\"error\":\"unauthorized\",\"reason\":\"%s\"}\n",
                     reason);
    efn_hdr h[3] = {{EFN_STR("Content-Type"), EFN_STR("application/json")},
                    {EFN_STR("Cache-Control"), EFN_STR("no-store")},
                    {EFN_STR("WWW-Authenticate"), EFN_STR("Bearer error=\"invalid_token\"")}};

    if (n < 0 || (size_t)n >= sizeof(body))
        return EFN_ERROR;
    if (host->respond(r, 401, h, 3, (efn_str){body, (size_t)n}) != EFN_OK)
        return EFN_ERROR;
    return EFN_DONE;
}

static int
verify_hs256(const struct jwt *j, const char *in, size_t inl, const unsigned char *sig,
             size_t sigl)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int macl = 0;

    if (HMAC(EVP_sha256(), j->secret, (int)j->secret_len, (const unsigned char *)in, inl, mac,
             &macl) == NULL)
        return -1;
    return macl == sigl && CRYPTO_memcmp(mac, sig, sigl) == 0 ? 0 : -1;
}

static int
verify_rs256(EVP_PKEY *k, const char *in, size_t inl, const unsigned char *sig, size_t sigl)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    if (md == NULL)
        return -1;
    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
         EVP_DigestVerify(md, sig, sigl, (const unsigned char *)in, inl) == 1;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

static int
str_is(const char *v, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(v, s, n) == 0;
}

static efn_action
jwt_request(efn_req *r, void *inst)
{
    const struct jwt *j = inst;
    efn_str auth;
    const char *tok, *d1, *d2, *end, *v;
    unsigned char *hdr, *pl, *sig;
    long hl, pll, sigl;
    size_t tl, vl, i;
    int is_str;
    int64_t now = (int64_t)time(NULL), t;

    if (j == NULL || j->magic != JWT_MAGIC)
        return EFN_ERROR;
    for (i = 0; i < j->nclaims; i++)
        if (host->hdr_del(r, EFN_MSG_REQ, (efn_str){j->hdrs[i], strlen(j->hdrs[i])}) != EFN_OK)
            return EFN_ERROR;
    if (host->hdr_get(r, EFN_MSG_REQ, EFN_STR("Authorization"), 0, &auth) != EFN_OK)
        return deny(r, "missing bearer token");
    if (auth.len < 8 || strncasecmp(auth.ptr, "Bearer ", 7) != 0)
        return deny(r, "missing bearer token");
    tok = auth.ptr + 7;
    tl = auth.len - 7;
    while (tl > 0 && *tok == ' ') {
        tok++;
        tl--;
    }
    if (tl == 0 || tl > JWT_TOKEN_MAX)
        return deny(r, "malformed token");
    end = tok + tl;
    d1 = memchr(tok, '.', tl);
    d2 = d1 != NULL ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL)
        return deny(r, "malformed token");
    hdr = host->alloc(r, tl + 12);
    if (hdr == NULL)
        return EFN_ERROR;
    /* three decoded parts, each at most 3/4 of its text, fit in tl + 12 */
    hl = b64url_decode(tok, (size_t)(d1 - tok), hdr);
    pl = hl >= 0 ? hdr + hl : hdr;
    pll = hl >= 0 ? b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pl) : -1;
    sig = pll >= 0 ? pl + pll : pl;
    sigl = pll >= 0 ? b64url_decode(d2 + 1, (size_t)(end - d2 - 1), sig) : -1;
    if (hl <= 0 || pll <= 0 || sigl <= 0)
        return deny(r, "malformed token");
    /* header: alg must be the configured one; kid picks the JWKS key */
    if (json_get((char *)hdr, (char *)hdr + hl, "alg", &v, &vl, &is_str) < 0 || !is_str)
        return deny(r, "malformed token");
    if (j->secret != NULL) {
        if (!str_is(v, vl, "HS256"))
            return deny(r, "unexpected algorithm");
        if (verify_hs256(j, tok, (size_t)(d2 - tok), sig, (size_t)sigl) < 0)
            return deny(r, "bad signature");
    } else {
        EVP_PKEY *k = NULL;
        if (!str_is(v, vl, "RS256"))
            return deny(r, "unexpected algorithm");
        if (json_get((char *)hdr, (char *)hdr + hl, "kid", &v, &vl, &is_str) == 0 && is_str) {
            for (i = 0; i < j->nkeys; i++)
                if (j->keys[i].kid_len == vl && memcmp(j->keys[i].kid, v, vl) == 0)
                    k = j->keys[i].pkey;
        } else if (j->nkeys == 1) {
            k = j->keys[0].pkey;
        }
        if (k == NULL)
            return deny(r, "unknown key");
        if (verify_rs256(k, tok, (size_t)(d2 - tok), sig, (size_t)sigl) < 0)
            return deny(r, "bad signature");
    }
    /* claims */
    {
        const char *p = (const char *)pl, *pe = (const char *)pl + pll;
        int rc;
        if (skip_value(ws(p, pe), pe, 0) == NULL || *ws(p, pe) != '{')
            return deny(r, "malformed claims");
        rc = json_int(p, pe, "exp", &t);
        if (rc == -2 || (rc == -1 && j->require_exp))
            return deny(r, "missing or bad exp");
        if (rc == 0 && now > t + j->leeway)
            return deny(r, "token expired");
        rc = json_int(p, pe, "nbf", &t);
        if (rc == -2)
            return deny(r, "bad nbf");
        if (rc == 0 && now + j->leeway < t)
            return deny(r, "token not yet valid");
        if (j->iss != NULL && (json_get(p, pe, "iss", &v, &vl, &is_str) < 0 || !is_str ||
                               !str_is(v, vl, j->iss)))
            return deny(r, "wrong issuer");
        if (j->aud != NULL && (json_get(p, pe, "aud", &v, &vl, &is_str) < 0 || !is_str ||
                               !str_is(v, vl, j->aud)))
            return deny(r, "wrong audience");
        for (i = 0; i < j->nclaims; i++) {
            size_t k;
            if (json_get(p, pe, j->claims[i], &v, &vl, &is_str) < 0 || (!is_str && *v == '{') ||
                *v == '[')
                continue;
            for (k = 0; k < vl; k++)
                if (v[k] == '\\' || (unsigned char)v[k] < 0x20)
                    break;
            if (k < vl) {
                host->log(r, EFN_LOG_INFO, "claim %s not passed (escapes)", j->claims[i]);
                continue;
            }
            if (host->hdr_set(r, EFN_MSG_REQ, (efn_str){j->hdrs[i], strlen(j->hdrs[i])},
                              (efn_str){v, vl}) != EFN_OK)
                return EFN_ERROR;
        }
    }
    return EFN_CONTINUE;
}

EFN_PLUGIN(.name = "jwt", .version = "1.0.0", .init = jwt_init,
           .instance_new = jwt_instance_new, .instance_free = jwt_instance_free,
           .on_request = jwt_request);
