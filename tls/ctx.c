/*
 * The SSL_CTX set of a conf snapshot: one SSL_CTX per 'tls_certificate'
 * (its chain, key, client verification and OCSP response), the SNI index
 * of their names, and the callbacks every SSL_CTX of the set shares:
 *
 *   ClientHello  picks the certificate by SNI (SSL_set_SSL_CTX), before
 *                OpenSSL looks at sessions, so a session only resumes under
 *                the SSL_CTX whose session id context made it (each one's is
 *                a hash of its certificate and verification);
 *   ALPN         http/1.1, and h2 first when the connection allows it;
 *   tickets      keys from the process's ring (tickets.c);
 *   OCSP status  the stapled response of the chosen certificate.
 *
 * A set is refcounted: the conf holds one reference (released with it),
 * every SSL made by tls_server_new() another (ex_data, dropped by
 * SSL_free), so callbacks always find their set alive, whatever reloads
 * happened since the handshake started.
 */
#include "tls/tls-int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define FILE_MAX (1024 * 1024) /* certificates, keys, CA bundles, OCSP responses */
#define SESSION_CACHE_SIZE 20480
#define VERIFY_DEPTH 10

/* Mozilla's "intermediate" TLS 1.2 list: ECDHE with AEAD only. TLS 1.3
 * keeps OpenSSL's default suites (all AEAD). */
#define DEFAULT_CIPHERS                                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tls_cert {
    SSL_CTX *ctx;
    struct tls_verify_conf verify;
    unsigned char *ocsp; /* DER response to staple, or NULL */
    size_t ocsp_len;
};

/* Sets travel through OpenSSL's void * (callback args, ex_data). */
#define TLS_SET_MAGIC 0x544c5353u /* "TLSS" */
#define TLS_DEAD_MAGIC 0xdeadbeefu
#define CHECK_SET(s)                                                                               \
    do {                                                                                           \
        if ((s) == NULL || (s)->magic != TLS_SET_MAGIC) {                                          \
            fprintf(stderr, "BUG at %s:%d: bad tls_set %p\n", __FILE__, __LINE__, (void *)(s));   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct tls_set {
    uint32_t magic;
    _Atomic int refs;
    struct tls_cert *certs;
    size_t ncerts;
    size_t def; /* for clients without SNI, or with a name no certificate has */
    struct tls_names names;
    uint64_t rotate_ms;
};

static int ssl_set_idx = -1;   /* SSL: struct tls_set * (a reference) */
static int ssl_flags_idx = -1; /* SSL: TLS_ALPN_* flags */
static int ctx_cert_idx = -1;  /* SSL_CTX: struct tls_cert * */
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void
set_ref_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (ptr != NULL)
        tls_set_unref(ptr);
}

static void
idx_init(void)
{
    ssl_set_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, set_ref_free);
    ssl_flags_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ctx_cert_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The reason of OpenSSL's last error, then the queue cleared. */
static const char *
ossl_why(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    if (r != NULL)
        snprintf(buf, n, "%s", r);
    else if (e != 0)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "unknown error");
    ERR_clear_error();
    return buf;
}

int
tls_read_file(const char *path, size_t max, unsigned char **buf, size_t *len, char *why,
              size_t whylen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *p = NULL;
    size_t n = 0, cap = 0;
    char ebuf[128];

    *buf = NULL;
    *len = 0;
    if (f == NULL) {
        snprintf(why, whylen, "%s", strerror_r(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    for (;;) {
        size_t got;
        if (n == cap) {
            unsigned char *q;
            if (cap > max) {
                snprintf(why, whylen, "larger than %zu bytes", max);
                goto fail;
            }
            cap = cap ? cap * 2 : 4096;
            q = realloc(p, cap + 1);
            if (q == NULL) {
                snprintf(why, whylen, "out of memory");
                goto fail;
            }
            p = q;
        }
        got = fread(p + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                snprintf(why, whylen, "read error");
                goto fail;
            }
            break;
        }
    }
    if (n > max) {
        snprintf(why, whylen, "larger than %zu bytes", max);
        goto fail;
    }
    fclose(f);
    if (p == NULL && (p = malloc(1)) == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    p[n] = '\0';
    *buf = p;
    *len = n;
    return 0;
fail:
    fclose(f);
    free(p);
    return -1;
}

int
tls_verify_id(enum tls_verify mode, const char *ca_path, unsigned char *id, char *why,
              size_t whylen)
{
    unsigned char *buf, m = (unsigned char)mode;
    size_t len;
    unsigned int out = 0;
    EVP_MD_CTX *md;
    int ok;

    if (tls_read_file(ca_path, FILE_MAX, &buf, &len, why, whylen) < 0)
        return -1;
    md = EVP_MD_CTX_new();
    ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, &m, 1) &&
         EVP_DigestUpdate(md, buf, len) && EVP_DigestFinal_ex(md, id, &out) &&
         out == TLS_VERIFY_ID_LEN;
    EVP_MD_CTX_free(md);
    free(buf);
    if (!ok) {
        ossl_why(why, whylen);
        return -1;
    }
    return 0;
}

/* ---- refcount ------------------------------------------------------------------------------- */

struct tls_set *
tls_set_ref(struct tls_set *s)
{
    CHECK_SET(s);
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void
tls_set_unref(struct tls_set *s)
{
    if (s == NULL)
        return;
    CHECK_SET(s);
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->ncerts; i++) {
        SSL_CTX_free(s->certs[i].ctx);
        free(s->certs[i].ocsp);
    }
    free(s->certs);
    tls_names_fini(&s->names);
    s->magic = TLS_DEAD_MAGIC;
    free(s);
}

/* ---- callbacks ------------------------------------------------------------------------------ */

/* The first host_name of a server_name extension (RFC 6066 3), normalised. */
static size_t
sni_parse(const unsigned char *p, size_t len, char *out, size_t cap)
{
    size_t list;

    if (len < 2)
        return 0;
    list = (size_t)p[0] << 8 | p[1];
    p += 2;
    len -= 2;
    if (list != len)
        return 0;
    while (len >= 3) {
        unsigned type = p[0];
        size_t n = (size_t)p[1] << 8 | p[2];
        if (n > len - 3)
            return 0;
        if (type == TLSEXT_NAMETYPE_host_name)
            return tls_host_norm((const char *)p + 3, n, out, cap);
        p += 3 + n;
        len -= 3 + n;
    }
    return 0;
}

static int
client_hello_cb(SSL *s, int *al, void *arg)
{
    struct tls_set *set = arg;
    const unsigned char *p;
    size_t len, hlen;
    char host[TLS_NAME_MAX + 1];
    struct tls_cert *c = &set->certs[set->def];
    SSL_CTX *ctx;

    CHECK_SET(set);
    if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_server_name, &p, &len) == 1 &&
        (hlen = sni_parse(p, len, host, sizeof(host))) > 0) {
        long i = tls_names_find(&set->names, host, hlen);
        if (i >= 0)
            c = &set->certs[i];
    }
    ctx = c->ctx;
    if (SSL_get_SSL_CTX(s) != ctx) {
        /* SSL_set_SSL_CTX moves the certificate and the session id context;
         * the verification is the SSL's own: copy it (the options and
         * protocol versions are the same on every SSL_CTX of a set) */
        if (SSL_set_SSL_CTX(s, ctx) == NULL) {
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
        SSL_set_verify(s, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
        SSL_set_verify_depth(s, SSL_CTX_get_verify_depth(ctx));
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* The seam for HTTP/2: h2 is offered only when the proxy passed TLS_ALPN_H2. */
static int
alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
        unsigned int inlen, void *arg)
{
    static const unsigned char h2_h1[] = "\x02h2\x08http/1.1";
    static const unsigned char h1[] = "\x08http/1.1";
    uintptr_t flags = (uintptr_t)SSL_get_ex_data(s, ssl_flags_idx);
    const unsigned char *srv = (flags & TLS_ALPN_H2) ? h2_h1 : h1;
    unsigned int srvlen = (flags & TLS_ALPN_H2) ? sizeof(h2_h1) - 1 : sizeof(h1) - 1;
    unsigned char *sel = NULL;

    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, srv, srvlen, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301 3.2: no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* AES-256-CBC fetched from the default provider once: EVP_aes_256_cbc() is a
 * legacy handle that makes every EVP_EncryptInit_ex look the cipher up again
 * (a locked property query), twice per full handshake (two TLS 1.3 tickets). */
static EVP_CIPHER *ticket_aes;
static pthread_once_t ticket_aes_once = PTHREAD_ONCE_INIT;

static void
ticket_cipher_fetch(void)
{
    ticket_aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
}

static const EVP_CIPHER *
ticket_cipher(void)
{
    pthread_once(&ticket_aes_once, ticket_cipher_fetch);
    return ticket_aes != NULL ? ticket_aes : EVP_aes_256_cbc();
}

static int
ticket_cb(SSL *s, unsigned char *key_name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
          EVP_MAC_CTX *hctx, int enc)
{
    struct tls_set *set = SSL_get_ex_data(s, ssl_set_idx);
    uint64_t period = set != NULL ? set->rotate_ms : 3600 * 1000;
    const EVP_CIPHER *cipher = ticket_cipher();
    struct tls_ticket_key k;
    OSSL_PARAM params[3];
    int rc;

    if (set != NULL)
        CHECK_SET(set);
    if (enc) {
        if (tls_ticket_ring_enc(&tls_tickets, mono_ms(), period, &k) < 0)
            return 0; /* no ticket this time */
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(cipher)) != 1 ||
            !EVP_EncryptInit_ex(cctx, cipher, NULL, k.aes, iv)) {
            OPENSSL_cleanse(&k, sizeof(k));
            return -1;
        }
        memcpy(key_name, k.name, TLS_TICKET_NAME_LEN);
        rc = 1;
    } else {
        rc = tls_ticket_ring_dec(&tls_tickets, mono_ms(), period, key_name, &k);
        if (rc == 0)
            return 0; /* unknown or expired key: a full handshake */
        if (!EVP_DecryptInit_ex(cctx, cipher, NULL, k.aes, iv)) {
            OPENSSL_cleanse(&k, sizeof(k));
            return -1;
        }
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"sha256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (!EVP_MAC_CTX_set_params(hctx, params))
        rc = -1;
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

static int
status_cb(SSL *s, void *arg)
{
    const struct tls_cert *c = arg;
    unsigned char *copy;

    if (c == NULL || c->ocsp == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    copy = OPENSSL_memdup(c->ocsp, c->ocsp_len);
    if (copy == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (!SSL_set_tlsext_status_ocsp_resp(s, copy, (long)c->ocsp_len)) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Keys with a passphrase would block on a prompt: refuse them. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (u != NULL)
        *(bool *)u = true;
    return 0;
}

/* ---- building ------------------------------------------------------------------------------- */

static SSL_CTX *
ctx_new(struct tls_set *set, const struct tls_main_conf *m, struct conf_err *err,
        const struct conf_pos *pos)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char why[256];

    if (ctx == NULL) {
        conf_errf(err, pos, "cannot create a TLS context: %s", ossl_why(why, sizeof(why)));
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, m->min_proto) ||
        !SSL_CTX_set_max_proto_version(ctx, m->max_proto) ||
        !SSL_CTX_set_cipher_list(ctx, m->ciphers ? m->ciphers->args[0].s : DEFAULT_CIPHERS) ||
        (m->ciphersuites != NULL && !SSL_CTX_set_ciphersuites(ctx, m->ciphersuites->args[0].s))) {
        conf_errf(err, pos, "cannot set up a TLS context: %s", ossl_why(why, sizeof(why)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE_SIZE);
    SSL_CTX_set_timeout(ctx, (long)(m->rotate_ms / 1000));
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, set);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    return ctx;
}

/* The chain file: the leaf first, then intermediates. Returns the leaf
 * (a reference the caller frees) or NULL + err. */
static X509 *
load_chain(SSL_CTX *ctx, const struct conf_arg *a, struct conf_err *err)
{
    unsigned char *buf;
    size_t len;
    char why[256];
    BIO *bio;
    X509 *leaf = NULL, *x;

    if (tls_read_file(a->s, FILE_MAX, &buf, &len, why, sizeof(why)) < 0) {
        conf_errf(err, &a->pos, "'tls_certificate': cannot read certificate '%s': %s", a->s, why);
        return NULL;
    }
    bio = BIO_new_mem_buf(buf, (int)len);
    if (bio == NULL || (leaf = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL)) == NULL) {
        conf_errf(err, &a->pos, "'tls_certificate': no PEM certificate in '%s' (%s)", a->s,
                  ossl_why(why, sizeof(why)));
        goto fail;
    }
    if (!SSL_CTX_use_certificate(ctx, leaf)) {
        conf_errf(err, &a->pos, "'tls_certificate': certificate '%s' refused: %s", a->s,
                  ossl_why(why, sizeof(why)));
        goto fail;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        if (!SSL_CTX_add0_chain_cert(ctx, x)) {
            X509_free(x);
            conf_errf(err, &a->pos, "'tls_certificate': chain of '%s' refused: %s", a->s,
                      ossl_why(why, sizeof(why)));
            goto fail;
        }
    }
    /* the loop ends on "no start line" at the end of the file: anything else is damage */
    if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
        conf_errf(err, &a->pos, "'tls_certificate': bad certificate in the chain of '%s' (%s)",
                  a->s, ossl_why(why, sizeof(why)));
        goto fail;
    }
    ERR_clear_error();
    BIO_free(bio);
    free(buf);
    return leaf;
fail:
    X509_free(leaf);
    BIO_free(bio);
    free(buf);
    return NULL;
}

static int
load_key(SSL_CTX *ctx, const struct conf_arg *cert, const struct conf_arg *a, struct conf_err *err)
{
    unsigned char *buf;
    size_t len;
    char why[256];
    bool asked = false;
    BIO *bio;
    EVP_PKEY *key = NULL;
    int rc = -1;

    if (tls_read_file(a->s, FILE_MAX, &buf, &len, why, sizeof(why)) < 0)
        return conf_errf(err, &a->pos, "'tls_certificate': cannot read key '%s': %s", a->s, why);
    bio = BIO_new_mem_buf(buf, (int)len);
    if (bio != NULL)
        key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, &asked);
    if (key == NULL) {
        if (asked)
            conf_errf(err, &a->pos,
                      "'tls_certificate': key '%s' is encrypted (keys with a passphrase are not "
                      "supported)",
                      a->s);
        else
            conf_errf(err, &a->pos, "'tls_certificate': no PEM private key in '%s' (%s)", a->s,
                      ossl_why(why, sizeof(why)));
        goto out;
    }
    if (!SSL_CTX_use_PrivateKey(ctx, key) || !SSL_CTX_check_private_key(ctx)) {
        conf_errf(err, &a->pos, "'tls_certificate': key '%s' does not match certificate '%s' (%s)",
                  a->s, cert->s, ossl_why(why, sizeof(why)));
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    EVP_PKEY_free(key);
    BIO_free(bio);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return rc;
}

static int
load_client_ca(SSL_CTX *ctx, const struct tls_verify_conf *v, const struct conf_node *ca,
               struct conf_err *err)
{
    const struct conf_arg *a = &ca->args[0];
    unsigned char *buf;
    size_t len;
    char why[256];
    BIO *bio;
    X509 *x;
    int n = 0, rc = -1;

    if (tls_read_file(a->s, FILE_MAX, &buf, &len, why, sizeof(why)) < 0)
        return conf_errf(err, &a->pos, "'tls_client_ca': cannot read '%s': %s", a->s, why);
    bio = BIO_new_mem_buf(buf, (int)len);
    while (bio != NULL && (x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        int ok =
            X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x) && SSL_CTX_add_client_CA(ctx, x);
        X509_free(x);
        if (!ok) {
            conf_errf(err, &a->pos, "'tls_client_ca': '%s': %s", a->s, ossl_why(why, sizeof(why)));
            goto out;
        }
        n++;
    }
    if (n == 0 || ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
        conf_errf(err, &a->pos, "'tls_client_ca': %s in '%s'",
                  n == 0 ? "no PEM certificate" : "a damaged certificate", a->s);
        goto out;
    }
    SSL_CTX_set_verify(
        ctx, SSL_VERIFY_PEER | (v->mode == TLS_VERIFY_ON ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        NULL);
    SSL_CTX_set_verify_depth(ctx, VERIFY_DEPTH);
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(bio);
    free(buf);
    return rc;
}

/* The response must be a successful one about this certificate (matched by
 * serial number: the issuer may not be in the file), not revoked, and
 * current. */
static int
load_ocsp(struct tls_cert *tc, X509 *leaf, const struct conf_node *n, const struct conf_arg *cert,
          struct conf_err *err)
{
    const struct conf_arg *a = &n->args[0];
    unsigned char *buf;
    const unsigned char *p;
    size_t len;
    char why[256];
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = NULL;
    int rc = -1, status = -1, found = 0;
    ASN1_GENERALIZEDTIME *thisupd = NULL, *nextupd = NULL;

    if (tls_read_file(a->s, FILE_MAX, &buf, &len, why, sizeof(why)) < 0)
        return conf_errf(err, &a->pos, "'tls_ocsp': cannot read '%s': %s", a->s, why);
    p = buf;
    resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    if (resp == NULL || p != buf + len) {
        conf_errf(err, &a->pos, "'tls_ocsp': '%s' is not a DER OCSP response", a->s);
        goto out;
    }
    if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        conf_errf(err, &a->pos, "'tls_ocsp': '%s' is an unsuccessful response (%s)", a->s,
                  OCSP_response_status_str(OCSP_response_status(resp)));
        goto out;
    }
    bs = OCSP_response_get1_basic(resp);
    for (int i = 0; bs != NULL && i < OCSP_resp_count(bs); i++) {
        OCSP_SINGLERESP *sr = OCSP_resp_get0(bs, i);
        ASN1_INTEGER *serial = NULL;
        int reason;
        ASN1_GENERALIZEDTIME *rev;

        if (!OCSP_id_get0_info(NULL, NULL, NULL, &serial,
                               (OCSP_CERTID *)OCSP_SINGLERESP_get0_id(sr)) ||
            ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(leaf)) != 0)
            continue;
        status = OCSP_single_get0_status(sr, &reason, &rev, &thisupd, &nextupd);
        found = 1;
        break;
    }
    if (!found) {
        conf_errf(err, &a->pos, "'tls_ocsp': '%s' has no answer about certificate '%s'", a->s,
                  cert->s);
        goto out;
    }
    if (status == V_OCSP_CERTSTATUS_REVOKED) {
        conf_errf(err, &a->pos, "'tls_ocsp': '%s' says certificate '%s' is revoked", a->s, cert->s);
        goto out;
    }
    if (!OCSP_check_validity(thisupd, nextupd, 300, -1)) {
        conf_errf(err, &a->pos, "'tls_ocsp': '%s' is outside its validity period", a->s);
        goto out;
    }
    tc->ocsp = buf;
    tc->ocsp_len = len;
    buf = NULL;
    SSL_CTX_set_tlsext_status_cb(tc->ctx, status_cb);
    SSL_CTX_set_tlsext_status_arg(tc->ctx, tc);
    rc = 0;
out:
    ERR_clear_error();
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    free(buf);
    return rc;
}

/* The names SNI may ask for: DNS subjectAltNames, else the subject CN. */
static int
add_names(struct tls_set *set, X509 *leaf, size_t idx)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int ndns = 0, rc = 0;

    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const unsigned char *d;
        int l;

        if (g->type != GEN_DNS)
            continue;
        ndns++;
        d = ASN1_STRING_get0_data(g->d.dNSName);
        l = ASN1_STRING_length(g->d.dNSName);
        if (l <= 0 || memchr(d, '\0', (size_t)l) != NULL)
            continue;
        if (tls_names_add(&set->names, (const char *)d, (size_t)l, idx) < 0) {
            rc = -1;
            break;
        }
    }
    GENERAL_NAMES_free(gens);
    if (ndns == 0 && rc == 0) {
        X509_NAME *subj = X509_get_subject_name(leaf);
        int pos = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
        unsigned char *cn = NULL;
        int l;

        if (pos >= 0 &&
            (l = ASN1_STRING_to_UTF8(
                 &cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, pos)))) > 0 &&
            memchr(cn, '\0', (size_t)l) == NULL &&
            tls_names_add(&set->names, (char *)cn, (size_t)l, idx) < 0)
            rc = -1;
        OPENSSL_free(cn);
    }
    ERR_clear_error();
    return rc;
}

/* Session id context: the certificate and the verification, so a session
 * never resumes under another certificate or other client-CA settings. */
static int
set_sid_ctx(SSL_CTX *ctx, X509 *leaf, const struct tls_verify_conf *v)
{
    unsigned char md[EVP_MAX_MD_SIZE], *der = NULL;
    unsigned int mdlen = 0;
    unsigned char mode = (unsigned char)v->mode;
    int dlen = i2d_X509(leaf, &der);
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int ok = dlen > 0 && h != NULL && EVP_DigestInit_ex(h, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(h, der, (size_t)dlen) && EVP_DigestUpdate(h, &mode, 1) &&
             EVP_DigestUpdate(h, v->id, sizeof(v->id)) && EVP_DigestFinal_ex(h, md, &mdlen) &&
             SSL_CTX_set_session_id_context(
                 ctx, md, mdlen < SSL_MAX_SID_CTX_LENGTH ? mdlen : SSL_MAX_SID_CTX_LENGTH);

    EVP_MD_CTX_free(h);
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

static int
build_cert(struct tls_set *set, size_t idx, const struct tls_cert_conf *cc,
           const struct tls_ctx_conf *ctxc, const struct tls_main_conf *m, struct conf_err *err)
{
    struct tls_cert *tc = &set->certs[idx];
    const struct conf_node *n = cc->node;
    char why[256];
    X509 *leaf;
    int rc = -1;

    tc->ctx = ctx_new(set, m, err, &n->pos);
    if (tc->ctx == NULL)
        return -1;
    set->ncerts = idx + 1; /* freed with the set from here on */
    tc->verify = ctxc->eff;
    SSL_CTX_set_ex_data(tc->ctx, ctx_cert_idx, tc);
    leaf = load_chain(tc->ctx, &n->args[0], err);
    if (leaf == NULL)
        return -1;
    if (load_key(tc->ctx, &n->args[0], &n->args[1], err) < 0)
        goto out;
    if (ctxc->eff.mode != TLS_VERIFY_OFF &&
        load_client_ca(tc->ctx, &tc->verify, ctxc->eff_ca, err) < 0)
        goto out;
    if (ctxc->ocsp != NULL && load_ocsp(tc, leaf, ctxc->ocsp, &n->args[0], err) < 0)
        goto out;
    if (set_sid_ctx(tc->ctx, leaf, &tc->verify) < 0) {
        conf_errf(err, &n->pos, "'tls_certificate': %s", ossl_why(why, sizeof(why)));
        goto out;
    }
    if (add_names(set, leaf, idx) < 0) {
        conf_errf(err, &n->pos, "out of memory");
        goto out;
    }
    rc = 0;
out:
    X509_free(leaf);
    return rc;
}

int
tls_set_build(const struct conf *c, struct tls_main_conf *m, struct tls_ctx_conf **sites,
              struct tls_set **out, struct conf_err *err)
{
    size_t n = m->ctx.ncerts, idx = 0;
    const struct conf_node *def = NULL;
    struct tls_set *set;

    *out = NULL;
    pthread_once(&idx_once, idx_init);
    if (ssl_set_idx < 0 || ssl_flags_idx < 0 || ctx_cert_idx < 0)
        return conf_errf(err, NULL, "%s: OpenSSL ex_data indexes unavailable", c->path);
    for (size_t i = 0; i < c->nsites; i++)
        n += sites[i] != NULL ? sites[i]->ncerts : 0;
    if (n == 0)
        return 0;
    set = calloc(1, sizeof(*set));
    if (set == NULL || (set->certs = calloc(n, sizeof(*set->certs))) == NULL) {
        free(set);
        return conf_errf(err, NULL, "%s: out of memory", c->path);
    }
    set->magic = TLS_SET_MAGIC;
    atomic_init(&set->refs, 1);
    set->rotate_ms = m->rotate_ms;
    /* top level first: without a 'default', its first certificate is the default */
    for (size_t s = 0; s <= c->nsites; s++) {
        const struct tls_ctx_conf *ctxc = s == 0 ? &m->ctx : sites[s - 1];
        for (const struct tls_cert_conf *cc = ctxc ? ctxc->certs : NULL; cc != NULL;
             cc = cc->next, idx++) {
            if (cc->is_default) {
                if (def != NULL) {
                    conf_errf(err, &cc->node->args[2].pos,
                              "'tls_certificate ... default': the default is already %s (%s:%u)",
                              def->args[0].s, def->pos.file, (unsigned)def->pos.line);
                    goto fail;
                }
                def = cc->node;
                set->def = idx;
            }
            if (build_cert(set, idx, cc, ctxc, m, err) < 0)
                goto fail;
        }
    }
    tls_names_finish(&set->names);
    *out = set;
    return 0;
fail:
    tls_set_unref(set);
    return -1;
}

/* ---- connections ---------------------------------------------------------------------------- */

struct ssl_st *
tls_server_new(struct tls_set *set, unsigned flags)
{
    SSL *s;

    if (set == NULL || set->ncerts == 0)
        return NULL;
    s = SSL_new(set->certs[set->def].ctx);
    if (s == NULL) {
        ERR_clear_error();
        return NULL;
    }
    if (!SSL_set_ex_data(s, ssl_flags_idx, (void *)(uintptr_t)flags))
        goto fail;
    if (!SSL_set_ex_data(s, ssl_set_idx, tls_set_ref(set))) {
        tls_set_unref(set); /* not stored: SSL_free will not drop it */
        goto fail;
    }
    return s;
fail:
    SSL_free(s);
    ERR_clear_error();
    return NULL;
}

void
tls_info_get(struct ssl_st *ssl, struct tls_info *out)
{
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    const struct tls_cert *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_cert_idx);
    const unsigned char *alpn = NULL;
    unsigned int alen = 0;

    memset(out, 0, sizeof(*out));
    out->version = SSL_get_version(ssl);
    out->cipher = cipher != NULL ? SSL_CIPHER_get_name(cipher) : "-";
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    if (alen == 8 && memcmp(alpn, "http/1.1", 8) == 0)
        out->alpn = TLS_PROTO_HTTP1;
    else if (alen == 2 && memcmp(alpn, "h2", 2) == 0)
        out->alpn = TLS_PROTO_H2;
    out->resumed = SSL_session_reused(ssl) == 1;
    if (c != NULL)
        out->verify = c->verify;
    out->peer_verified =
        SSL_get0_peer_certificate(ssl) != NULL && SSL_get_verify_result(ssl) == X509_V_OK;
}

size_t
tls_peer_subject(struct ssl_st *ssl, char *out, size_t cap)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    BIO *bio;
    int n;

    if (cap == 0)
        return 0;
    out[0] = '\0';
    if (peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return 0;
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return 0;
    /* RFC 2253 with ASN1_STRFLGS_ESC_MSB/CTRL: printable ASCII, escapes kept */
    if (X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) < 0) {
        BIO_free(bio);
        ERR_clear_error();
        return 0;
    }
    n = BIO_read(bio, out, (int)cap - 1);
    BIO_free(bio);
    if (n <= 0)
        return 0;
    for (int i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] >= 0x7f)
            out[i] = '?';
    out[n] = '\0';
    return (size_t)n;
}

const char *
tls_sni(struct ssl_st *ssl)
{
    return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}
