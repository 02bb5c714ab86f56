/*
 * TLS to origins: the effective settings of an origin (its directives are
 * recorded by conf.c), its client SSL_CTX, the SSL of one connection, the
 * sessions kept for resumption, and why a handshake failed.
 *
 * One SSL_CTX per TLS origin and conf snapshot, outside the arena: the
 * release hook drops the conf's reference and every SSL holds its own
 * (OpenSSL counts them), so a pooled connection outlives a reload safely.
 * Origins that verify against the system store share one X509_STORE per
 * conf (it holds every root certificate: made once, not per origin).
 *
 * Sessions: SSL_SESS_CACHE_CLIENT without OpenSSL's internal store; the
 * new-session callback hands each session (a TLS 1.2 session at the end of
 * the handshake, every TLS 1.3 ticket when it arrives, after it) to the
 * struct tls_sessions the SSL was made with, which keeps the newest. A
 * session is only offered again to connections made under the same
 * settings: the caller keeps one tls_sessions per (thread, server, id).
 * Every new connection gets a copy of the newest one, used or not: a TLS
 * 1.3 ticket is reused until the server sends another (RFC 8446 C.4 asks
 * clients not to, for the privacy of users that a network observer could
 * link; an edge talking to its origin has none to protect, and an origin
 * that accepts a ticket once answers its reuse with a full handshake).
 */
#include "tls/tls-int.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define CA_FILE_MAX (8 * 1024 * 1024) /* a CA bundle: the system one is ~200 KiB */
#define VERIFY_DEPTH 10

/* Sessions travel through OpenSSL's ex_data (void *). */
#define SESSIONS_MAGIC 0x544c5343u /* "TLSC" */
#define SESSIONS_DEAD 0xdeadbeefu

struct tls_sessions {
    uint32_t magic;
    _Atomic int refs; /* the owner's, plus one per SSL made with it */
    SSL_SESSION *last;
};

static int sess_idx = -1; /* SSL: struct tls_sessions * (a reference) */
static pthread_once_t sess_once = PTHREAD_ONCE_INIT;

static void
check_sessions(const struct tls_sessions *s)
{
    if (s == NULL || s->magic != SESSIONS_MAGIC) {
        fprintf(stderr, "BUG at %s:%d: bad tls_sessions %p\n", __FILE__, __LINE__, (const void *)s);
        abort();
    }
}

static struct tls_sessions *
sessions_ref(struct tls_sessions *s)
{
    check_sessions(s);
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

static void
sessions_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (ptr != NULL)
        tls_sessions_unref(ptr);
}

static void
sess_idx_init(void)
{
    sess_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, sessions_ex_free);
}

struct tls_sessions *
tls_sessions_new(void)
{
    struct tls_sessions *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->magic = SESSIONS_MAGIC;
    atomic_init(&s->refs, 1);
    return s;
}

void
tls_sessions_unref(struct tls_sessions *s)
{
    if (s == NULL)
        return;
    check_sessions(s);
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    SSL_SESSION_free(s->last);
    s->magic = SESSIONS_DEAD;
    free(s);
}

/* OpenSSL gives us a reference: keep it (1) or let OpenSSL drop it (0). */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_sessions *s = sess_idx >= 0 ? SSL_get_ex_data(ssl, sess_idx) : NULL;

    if (s == NULL || !SSL_SESSION_is_resumable(sess))
        return 0;
    check_sessions(s);
    SSL_SESSION_free(s->last);
    s->last = sess;
    return 1;
}

/* ---- settings and the SSL_CTX --------------------------------------------------------------- */

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

/* The CA certificates of 'tls_ca' into the SSL_CTX's store; the file's
 * bytes are handed back for the id. */
static int
load_ca(SSL_CTX *ctx, const struct conf_arg *a, unsigned char **bytes, size_t *len,
        struct conf_err *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    char why[256];
    BIO *bio;
    X509 *x;
    int n = 0;

    if (tls_read_file(a->s, CA_FILE_MAX, bytes, len, why, sizeof(why)) < 0)
        return conf_errf(err, &a->pos, "'tls_ca': cannot read '%s': %s", a->s, why);
    bio = BIO_new_mem_buf(*bytes, (int)*len);
    if (bio == NULL)
        return conf_errf(err, &a->pos, "out of memory");
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int ok = X509_STORE_add_cert(store, x);
        X509_free(x);
        if (!ok) {
            BIO_free(bio);
            return conf_errf(err, &a->pos, "'tls_ca': '%s': %s", a->s, ossl_why(why, sizeof(why)));
        }
        n++;
    }
    BIO_free(bio);
    if (n == 0 || ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
        ERR_clear_error();
        return conf_errf(err, &a->pos, "'tls_ca': %s in '%s'",
                         n == 0 ? "no PEM certificate" : "a damaged certificate", a->s);
    }
    ERR_clear_error();
    return 0;
}

/* SHA-256 of what decides whether a connection (or a session) made under
 * these settings may serve another origin's requests: verification, the
 * CA bytes (or the system store) and the server name. */
static int
origin_id(const struct tls_origin *t, const unsigned char *ca, size_t calen, uint64_t *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char head[3] = {'o', t->verifies, ca != NULL};
    const char *name = t->name != NULL ? t->name : "";
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int ok = h != NULL && EVP_DigestInit_ex(h, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(h, head, sizeof(head)) &&
             EVP_DigestUpdate(h, name, strlen(name) + 1) &&
             (ca == NULL || EVP_DigestUpdate(h, ca, calen)) && EVP_DigestFinal_ex(h, md, &mdlen) &&
             mdlen >= sizeof(*out);

    EVP_MD_CTX_free(h);
    if (!ok)
        return -1;
    memcpy(out, md, sizeof(*out));
    return 0;
}

static const struct conf_server *
first_with(const struct conf_origin *o, enum conf_scheme scheme)
{
    for (size_t i = 0; i < o->nservers; i++)
        if (o->servers[i].scheme == scheme)
            return &o->servers[i];
    return NULL;
}

int
tls_origin_finish(struct tls_origin *t, const struct conf_origin *o, void **store,
                  struct conf_err *err)
{
    const struct conf_server *https = first_with(o, CONF_SCHEME_HTTPS);
    const struct conf_server *http = first_with(o, CONF_SCHEME_HTTP);
    const struct conf_node *extra;
    unsigned char *ca = NULL;
    size_t calen = 0;
    char why[256];
    SSL_CTX *ctx;

    if (t->tls != NULL && t->tls_on && http != NULL)
        return conf_errf(err, &t->tls->pos,
                         "'tls on' contradicts the http:// server at %s:%u:%u (write it as "
                         "HOST:PORT or https://HOST[:PORT])",
                         http->pos.file, (unsigned)http->pos.line, (unsigned)http->pos.col);
    if (t->tls != NULL && !t->tls_on && https != NULL)
        return conf_errf(err, &t->tls->pos, "'tls off' contradicts the https:// server at %s:%u:%u",
                         https->pos.file, (unsigned)https->pos.line, (unsigned)https->pos.col);
    t->enabled = https != NULL || (t->tls != NULL && t->tls_on);
    if (!t->enabled) {
        extra = t->ca != NULL ? t->ca : t->verify != NULL ? t->verify : t->server_name;
        if (extra != NULL)
            return conf_errf(err, &extra->pos,
                             "'%s': origin '%s' does not speak TLS (write its servers as "
                             "https://HOST[:PORT], or add 'tls on;')",
                             extra->name, o->name);
        return 0;
    }
    t->verifies = t->verify != NULL ? t->verify_on : true;
    if (!t->verifies && t->ca != NULL)
        return conf_errf(err, &t->ca->pos, "'tls_ca' has no effect with 'tls_verify off'");

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return conf_errf(err, &o->pos, "origin '%s': cannot create a TLS context: %s", o->name,
                         ossl_why(why, sizeof(why)));
    t->ctx = ctx; /* freed by the release hook from here on */
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9) != 0)
        return conf_errf(err, &o->pos, "origin '%s': cannot set up a TLS context: %s", o->name,
                         ossl_why(why, sizeof(why)));
    /* an origin closing without close_notify is an EOF, as on plain TCP */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* pooled idle connections stay small */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    SSL_CTX_set_verify(ctx, t->verifies ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_verify_depth(ctx, VERIFY_DEPTH);
    if (t->verifies && t->ca != NULL) {
        if (load_ca(ctx, &t->ca->args[0], &ca, &calen, err) < 0) {
            free(ca);
            return -1;
        }
    } else if (t->verifies) {
        if (*store == NULL) {
            X509_STORE *s = X509_STORE_new();
            if (s == NULL || !X509_STORE_set_default_paths(s)) {
                X509_STORE_free(s);
                return conf_errf(err, &o->pos, "origin '%s': cannot load the system CA store: %s",
                                 o->name, ossl_why(why, sizeof(why)));
            }
            *store = s;
        }
        SSL_CTX_set1_cert_store(ctx, *store);
    }
    if (origin_id(t, ca, calen, &t->id) < 0) {
        free(ca);
        return conf_errf(err, &o->pos, "origin '%s': %s", o->name, ossl_why(why, sizeof(why)));
    }
    free(ca);
    return 0;
}

void
tls_origin_release(struct tls_origin *t)
{
    if (t != NULL && t->ctx != NULL) {
        SSL_CTX_free(t->ctx);
        t->ctx = NULL;
    }
}

void
tls_origin_store_free(void *store)
{
    X509_STORE_free(store);
}

uint64_t
tls_origin_id(const struct tls_origin *t)
{
    return t->id;
}

bool
tls_origin_verifies(const struct tls_origin *t)
{
    return t->verifies;
}

/* ---- connections ---------------------------------------------------------------------------- */

struct ssl_st *
tls_client_new(const struct tls_origin *t, const char *host, bool is_ip, struct tls_sessions *sess)
{
    const char *name = t->name != NULL ? t->name : host;
    bool ip = t->name != NULL ? t->name_is_ip : is_ip;
    char norm[TLS_NAME_MAX + 1];
    size_t len = strlen(name);
    SSL *s;

    pthread_once(&sess_once, sess_idx_init);
    if (t->ctx == NULL || sess_idx < 0)
        return NULL;
    if (!ip && len > 1 && name[len - 1] == '.' && len - 1 < sizeof(norm)) {
        /* neither SNI nor the certificate carries the root's dot */
        memcpy(norm, name, len - 1);
        norm[len - 1] = '\0';
        name = norm;
    }
    s = SSL_new(t->ctx);
    if (s == NULL)
        goto fail;
    if (!ip && !SSL_set_tlsext_host_name(s, name)) /* no SNI for IP literals (RFC 6066 3) */
        goto fail;
    if (t->verifies) {
        if (ip) {
            if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), name))
                goto fail;
        } else {
            SSL_set_hostflags(s, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (!SSL_set1_host(s, name))
                goto fail;
        }
    }
    if (sess != NULL) {
        if (!SSL_set_ex_data(s, sess_idx, sessions_ref(sess))) {
            tls_sessions_unref(sess); /* not stored: SSL_free will not drop it */
            goto fail;
        }
        if (sess->last != NULL) {
            /* a copy: OpenSSL marks the TLS 1.3 session it resumed with as
             * used, and servers (edge itself among them) need not send a new
             * ticket after a resumption, so the kept one is offered again */
            SSL_SESSION *copy = SSL_SESSION_dup(sess->last);
            if (copy != NULL) {
                SSL_set_session(s, copy); /* a failure only means a full handshake */
                SSL_SESSION_free(copy);
            }
        }
    }
    ERR_clear_error();
    return s;
fail:
    SSL_free(s);
    ERR_clear_error();
    return NULL;
}

bool
tls_client_started(struct ssl_st *ssl)
{
    BIO *w = ssl != NULL ? SSL_get_wbio(ssl) : NULL;

    return w != NULL && BIO_number_written(w) > 0;
}

size_t
tls_client_why(struct ssl_st *ssl, const unsigned long *errs, size_t n, char *out, size_t cap)
{
    unsigned long e = 0;
    const char *r;
    int len;

    if (cap == 0)
        return 0;
    /* libevent also queues SSL_get_error() values (library 0): skip them */
    for (size_t i = 0; i < n && e == 0; i++)
        if (ERR_GET_LIB(errs[i]) != 0)
            e = errs[i];
    if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
        ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && ssl != NULL &&
        SSL_get_verify_result(ssl) != X509_V_OK)
        len = snprintf(out, cap, "certificate verify failed (%s)",
                       X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
    else if (e != 0 && (r = ERR_reason_error_string(e)) != NULL)
        len = snprintf(out, cap, "%s", r);
    else if (e != 0)
        len = snprintf(out, cap, "error %lx", e);
    else
        len = snprintf(out, cap, "connection closed during the handshake");
    if (len < 0)
        len = 0;
    return (size_t)len < cap ? (size_t)len : cap - 1;
}

void
tls_client_info_get(struct ssl_st *ssl, struct tls_client_info *out)
{
    out->version = SSL_get_version(ssl);
    out->resumed = SSL_session_reused(ssl) == 1;
}

void
tls_client_close(struct ssl_st *ssl, bool peer_closed)
{
    if (ssl == NULL)
        return;
    if (peer_closed)
        SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    else
        SSL_shutdown(ssl); /* one non-blocking try; the flag is set either way */
    ERR_clear_error();
}
