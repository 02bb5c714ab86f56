/*
 * The TLS transport: OpenSSL straight over the engine's non-blocking sockets (an SSL with a
 * socket BIO on c->fd, no bufferevent), so TLS connections use the same events, receive buffer
 * and write path as plain ones and differ only in struct bench_io and a handshake state.
 *
 * - Verification is on by default: the system store, or only the --cacert file; the URL host is
 *   checked against the certificate (DNS name, or IP address for an IP literal). --insecure
 *   turns verification off. SNI carries the host unless it is an IP literal (RFC 6066 §3).
 * - ALPN offers "h2" for --h2 and "http/1.1" otherwise; --h2 requires the server to select h2.
 * - Resumption: the context hands new client sessions to the thread's pool (worker->sess, no
 *   lock) and every new connection offers one, so after the first handshakes a run with
 *   --new-conn or reconnects measures resumed handshakes, as a returning browser would
 *   (result.tls_resumed counts them). A TLS 1.3 ticket is used by one connection while others
 *   are in the pool (RFC 8446 §C.4; servers with stateful tickets accept each once, and send
 *   two per handshake, so the pool refills); the last one, or a TLS 1.2 session, is shared.
 * - Reads use read-ahead (one recv per socket read instead of two per record) and return after
 *   the first record when OpenSSL holds nothing more; bench_tls_pending() tells the callers to
 *   read again when it does, since no socket event would announce those bytes.
 * - Renegotiation is refused (SSL_OP_NO_RENEGOTIATION), so a write never waits for a read; an
 *   unexpected EOF is an ordinary end of stream (close-delimited bodies end that way).
 */
#include "bench/internal.h"

#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* ---- I/O ------------------------------------------------------------------------------------- */

static ssize_t
tls_read(struct bconn *c, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        size_t k = 0;
        int r = SSL_read_ex(c->ssl, (char *)buf + got, len - got, &k);
        if (r == 1) {
            got += k;
            if (!SSL_has_pending(c->ssl))
                break; /* the socket may have more: its event says so */
            continue;
        }
        switch (SSL_get_error(c->ssl, r)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            if (got > 0)
                return (ssize_t)got;
            errno = EAGAIN;
            return -1;
        case SSL_ERROR_ZERO_RETURN: /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
            c->tls_clean = false;
            return (ssize_t)got; /* the next read gives 0 again */
        default:
            c->tls_clean = false;
            ERR_clear_error();
            errno = ECONNRESET;
            return -1;
        }
    }
    return (ssize_t)got;
}

/* One SSL_write per iovec piece (and per record: partial writes are on). A retry after
 * EAGAIN starts at the same byte with at least as much data, as OpenSSL requires. */
static ssize_t
tls_writev(struct bconn *c, const struct iovec *iov, int n)
{
    size_t done = 0;

    for (int i = 0; i < n; i++) {
        const char *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left > 0) {
            size_t k = 0;
            int r = SSL_write_ex(c->ssl, p, left, &k);
            if (r == 1) {
                done += k;
                p += k;
                left -= k;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                if (done > 0)
                    return (ssize_t)done;
                errno = EAGAIN;
                return -1;
            }
            c->tls_clean = false;
            ERR_clear_error();
            if (done > 0)
                return (ssize_t)done; /* the caller writes again and gets the error */
            errno = EPIPE;
            return -1;
        }
    }
    return (ssize_t)done;
}

const struct bench_io bench_tls_io = {tls_read, tls_writev};

bool
bench_tls_pending(const struct bconn *c)
{
    return c->ssl != NULL && SSL_has_pending(c->ssl);
}

/* ---- context ------------------------------------------------------------------------------- */

static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    void *arg = SSL_get_app_data(ssl);
    if (arg == NULL)
        return 0; /* the probe's connection: OpenSSL keeps it */
    struct worker *w = bench_conn_of(arg)->w;
    if (w->nsess == BENCH_TLS_SESSIONS) {
        SSL_SESSION_free(w->sess[0]); /* the oldest */
        memmove(w->sess, w->sess + 1, (BENCH_TLS_SESSIONS - 1) * sizeof(w->sess[0]));
        w->nsess--;
    }
    w->sess[w->nsess++] = sess;
    return 1; /* the reference is ours */
}

/* The newest session for a new connection (which takes its own reference). */
static void
offer_session(struct worker *w, SSL *ssl)
{
    if (w->nsess == 0)
        return;
    SSL_SESSION *s = w->sess[w->nsess - 1];
    SSL_set_session(ssl, s);
    if (w->nsess > 1 && SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION) {
        SSL_SESSION_free(s); /* a TLS 1.3 ticket is for one connection */
        w->nsess--;
    }
}

void
bench_tls_sessions_free(struct worker *w)
{
    for (unsigned i = 0; i < w->nsess; i++)
        SSL_SESSION_free(w->sess[i]);
    w->nsess = 0;
}

static const char *
err_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_last_error());
    return r != NULL ? r : "unknown error";
}

SSL_CTX *
bench_tls_ctx_new(const struct bench_cfg *cfg, const struct bench_target *t, bool ip_host,
                  char *err, size_t errlen)
{
    static const unsigned char alpn_h2[] = "\x02h2";
    static const unsigned char alpn_h1[] = "\x08http/1.1";
    bool h2 = cfg->proto == BENCH_PROTO_H2;
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create a TLS context: %s", err_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    if (SSL_CTX_set_alpn_protos(ctx, h2 ? alpn_h2 : alpn_h1,
                                h2 ? sizeof(alpn_h2) - 1 : sizeof(alpn_h1) - 1) != 0) {
        snprintf(err, errlen, "cannot set ALPN: %s", err_reason());
        goto fail;
    }
    if (cfg->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cfg->cacert != NULL) {
        if (access(cfg->cacert, R_OK) != 0) {
            snprintf(err, errlen, "--cacert %s: %s", cfg->cacert, strerror(errno));
            goto fail;
        }
        if (SSL_CTX_load_verify_locations(ctx, cfg->cacert, NULL) != 1) {
            snprintf(err, errlen, "--cacert %s: no PEM certificate could be loaded (%s)",
                     cfg->cacert, err_reason());
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "cannot load the system CA store: %s", err_reason());
        goto fail;
    }
    X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = ip_host ? X509_VERIFY_PARAM_set1_ip_asc(vp, t->host)
                     : X509_VERIFY_PARAM_set1_host(vp, t->host, 0);
    if (ok != 1) {
        snprintf(err, errlen, "%s: cannot verify certificates for this host", t->host);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

void
bench_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx); /* NULL is fine */
}

/* ---- handshake ------------------------------------------------------------------------------ */

/* Why a handshake failed, for humans; clears OpenSSL's error queue. */
static void
handshake_reason(SSL *ssl, int r, char *buf, size_t n)
{
    int saved = errno;
    int e = SSL_get_error(ssl, r);
    long vr = SSL_get_verify_result(ssl);
    unsigned long q = ERR_peek_last_error();

    if (vr != X509_V_OK)
        snprintf(buf, n, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
    else if (q != 0)
        snprintf(buf, n, "%s", err_reason());
    else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        snprintf(buf, n, "TLS handshake timed out");
    else if (e == SSL_ERROR_SYSCALL && saved != 0)
        snprintf(buf, n, "%s during the TLS handshake", strerror(saved));
    else
        snprintf(buf, n, "the server closed the connection during the TLS handshake");
    ERR_clear_error();
}

static bool
alpn_is_h2(const SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

static void
note_failure(struct worker *w, const char *why)
{
    if (w->tls_err[0] == '\0')
        snprintf(w->tls_err, sizeof(w->tls_err), "%s", why);
}

void
bench_tls_start(struct bconn *c)
{
    struct worker *w = c->w;
    SSL *ssl = SSL_new(w->net->ssl_ctx);

    if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        note_failure(w, "cannot create a TLS session (out of memory?)");
        bench_conn_fail(c, BENCH_ERR_TLS);
        return;
    }
    SSL_set_connect_state(ssl);
    SSL_set_app_data(ssl, c);
    if (!w->net->ip_host)
        SSL_set_tlsext_host_name(ssl, w->t->host);
    offer_session(w, ssl);
    c->ssl = ssl;
    c->tls_clean = false;
    c->st = C_HANDSHAKE;
    bench_tls_handshake(c);
}

void
bench_tls_handshake(struct bconn *c)
{
    struct worker *w = c->w;
    char why[200];

    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        event_del(&c->wr);
        w->res.tls_handshakes++;
        if (SSL_session_reused(c->ssl))
            w->res.tls_resumed++;
        if (w->net->h2 && !alpn_is_h2(c->ssl)) {
            note_failure(w, "the server did not select h2 in ALPN");
            bench_conn_fail(c, BENCH_ERR_TLS);
            return;
        }
        c->tls_clean = true;
        bench_conn_usable(c);
        return;
    }
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        event_del(&c->wr);
        return;
    case SSL_ERROR_WANT_WRITE:
        event_add(&c->wr, NULL);
        return;
    default:
        handshake_reason(c->ssl, r, why, sizeof(why));
        note_failure(w, why);
        bench_conn_fail(c, BENCH_ERR_TLS);
    }
}

void
bench_tls_close(struct bconn *c)
{
    /* OpenSSL drops the session (shared through worker->sess) when an SSL is freed without a
     * shutdown sent. The peer closed cleanly (close_notify, or EOF, accepted as one): mark ours
     * done without writing into a closed socket. Else send close_notify, best effort (the
     * socket is non-blocking), unless the connection died of an error. */
    if (SSL_get_shutdown(c->ssl) & SSL_RECEIVED_SHUTDOWN)
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    else if (c->tls_clean)
        SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->tls_clean = false;
    ERR_clear_error();
}

/* ---- the start-up probe ---------------------------------------------------------------------- */

static int
probe_tls(const struct bench_cfg *cfg, const struct bench_target *t, SSL_CTX *ctx, bool ip_host,
          int fd, struct bench_result *res, char *err, size_t errlen)
{
    char why[200];
    int rc = -1;
    SSL *ssl = SSL_new(ctx);

    ERR_clear_error();
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        snprintf(err, errlen, "cannot create a TLS session: %s", err_reason());
        goto out;
    }
    if (!ip_host)
        SSL_set_tlsext_host_name(ssl, t->host);
    int r = SSL_connect(ssl);
    if (r != 1) {
        unsigned long q = ERR_peek_last_error();
        bool no_alpn = ERR_GET_LIB(q) == ERR_LIB_SSL &&
                       ERR_GET_REASON(q) == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL;
        bool verify = SSL_get_verify_result(ssl) != X509_V_OK;
        bool plain = ERR_GET_LIB(q) == ERR_LIB_SSL &&
                     ERR_GET_REASON(q) == SSL_R_WRONG_VERSION_NUMBER;
        handshake_reason(ssl, r, why, sizeof(why));
        if (verify)
            snprintf(err, errlen, "%s: TLS handshake failed: %s (trust its CA with --cacert "
                     "FILE, or skip verification with --insecure)", t->base, why);
        else if (no_alpn && cfg->proto == BENCH_PROTO_H2)
            snprintf(err, errlen, "%s: the server refused ALPN h2 (%s): it does not speak "
                     "HTTP/2 over TLS; drop --h2 for HTTP/1.1", t->base, why);
        else if (plain)
            snprintf(err, errlen, "%s: TLS handshake failed: %s (a plain HTTP server? then "
                     "http://)", t->base, why);
        else
            snprintf(err, errlen, "%s: TLS handshake failed: %s", t->base, why);
        goto out;
    }
    snprintf(res->tls_version, sizeof(res->tls_version), "%s", SSL_get_version(ssl));
    if (cfg->proto == BENCH_PROTO_H2 && !alpn_is_h2(ssl)) {
        const unsigned char *p = NULL;
        unsigned len = 0;
        SSL_get0_alpn_selected(ssl, &p, &len);
        snprintf(err, errlen, "%s: the server did not select h2 in ALPN (it selected %s%.*s%s): "
                 "it does not speak HTTP/2 over TLS; drop --h2 for HTTP/1.1", t->base,
                 len ? "\"" : "none", (int)len, len ? (const char *)p : "", len ? "\"" : "");
        goto out;
    }
    SSL_shutdown(ssl);
    rc = 0;
out:
    SSL_free(ssl);
    ERR_clear_error();
    return rc;
}

static int
probe_h2c(const struct bench_target *t, int fd, char *err, size_t errlen)
{
    /* the client preface and an empty SETTINGS frame (RFC 9113 §3.4) */
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                  "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    unsigned char buf[64];
    size_t got = 0;
    char why[160];

    if (send(fd, preface, sizeof(preface) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(preface) - 1)) {
        snprintf(err, errlen, "%s: cannot send the HTTP/2 preface: %s", t->base, strerror(errno));
        return -1;
    }
    while (got < 9) {
        ssize_t k = recv(fd, buf + got, sizeof(buf) - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            snprintf(err, errlen, "%s: no answer to the HTTP/2 preface (timed out): the server "
                     "does not speak HTTP/2 with prior knowledge (drop --h2c)", t->base);
            return -1;
        }
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    if (bench_h2c_reply_check(buf, got, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s: the server does not speak HTTP/2 with prior knowledge "
                 "(drop --h2c)", t->base, why);
        return -1;
    }
    return 0;
}

int
bench_probe(const struct bench_cfg *cfg, const struct bench_target *t, SSL_CTX *ctx,
            bool ip_host, const struct addrinfo *ai, const struct addrinfo **chosen,
            struct bench_result *res, char *err, size_t errlen)
{
    const struct addrinfo *a;
    struct timeval tv = {(time_t)(cfg->timeout_us / 1000000),
                         (suseconds_t)(cfg->timeout_us % 1000000)};
    int fd = -1, rc;

    *chosen = ai;
    for (a = ai; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        return 0; /* nothing accepts: the run counts the connect errors */
    *chosen = a;
    if (ctx != NULL)
        rc = probe_tls(cfg, t, ctx, ip_host, fd, res, err, errlen);
    else
        rc = probe_h2c(t, fd, err, errlen);
    close(fd);
    return rc;
}
