/*
 * TLS to clients, the proxy side. A socket accepted on 'listen … tls' is
 * wrapped in an OpenSSL bufferevent (BUFFEREVENT_SSL_ACCEPTING) holding an
 * SSL made from the worker's current conf (tls/): a reload changes what new
 * handshakes get, while a connection keeps its SSL, which keeps its SSL_CTX
 * set alive. From there the connection is an ordinary HTTP/1.1 one
 * (http1.c): the bufferevent's buffers hold plaintext.
 *
 * Two things differ, both because only the bufferevent's own write path
 * turns output into TLS records (SSL_write):
 *  - proxy_bev_flush never writes a TLS connection's output to the socket
 *    directly; it enables EV_WRITE instead;
 *  - cache hits added with evbuffer_add_file are not sendfile'd: the output
 *    buffer of an OpenSSL bufferevent does not drain to an fd, so libevent
 *    maps the file segment (mmap, else read) and SSL_write encrypts it.
 *
 * The handshake must finish within client_header_timeout, like the first
 * request head (the connection's timer is armed at accept). A handshake
 * that started (bytes came) and did not finish is counted as a failure.
 *
 * HTTP/2: ALPN offers h2 when the listener says 'h2'; when the client picks
 * it, the handshake callback hands the connection, with its struct
 * proxy_tls, to an h2 session (proxy_conn_to_h2): its streams' requests see
 * the same TLS state (client certificate checks and subject, the access
 * log's fields) as an HTTP/1.1 connection's.
 */
#include "proxy/internal.h"
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define PROXY_H2_READY 1 /* listeners marked h2 offer it by ALPN (proxy/h2.c) */
#define SUBJECT_MAX 1024

struct proxy_tls {
    SSL *ssl;    /* owned by the bufferevent (BEV_OPT_CLOSE_ON_FREE) */
    bool done;   /* handshake finished */
    bool failed; /* a TLS or socket error: no close_notify */
    struct tls_info info;
    char *subject; /* verified client certificate, RFC 2253; NULL when none */
};

static const char *const versions[PROXY_TLS_VERSIONS] = {"TLSv1.2", "TLSv1.3", "other"};

/* The ciphers the defaults allow, then "other" (tls_ciphers may allow more). */
static const char *const ciphers[PROXY_TLS_CIPHERS] = {
    "TLS_AES_128_GCM_SHA256",       "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",  "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",  "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",  "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",     "other",
};

static int
table_index(const char *const *t, size_t n, const char *s)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (t[i] != NULL && s != NULL && strcmp(t[i], s) == 0)
            return (int)i;
    return (int)n - 1;
}

struct bufferevent *
proxy_tls_bev_new(struct proxy_worker *w, int fd, unsigned listen_flags, struct proxy_tls **out)
{
    static struct proxy_log_rl rl;
    struct tls_set *set = tls_conf_set(w->conf);
    unsigned flags = (PROXY_H2_READY && (listen_flags & PROXY_LISTEN_H2)) ? TLS_ALPN_H2 : 0;
    struct proxy_tls *t = calloc(1, sizeof(*t));
    struct bufferevent *bev;
    uint64_t dropped;
    SSL *ssl = NULL;

    *out = NULL;
    if (t == NULL || set == NULL || (ssl = tls_server_new(set, flags)) == NULL) {
        /* no certificate: a reload dropped them while the listener (fixed
         * until a restart) still says tls */
        STAT_INC(w, tls_handshake_failures);
        if (proxy_log_rl_pass(&rl, 60000, &dropped))
            log_err("worker %u: TLS connection refused: %s (%llu more suppressed)", w->id,
                    t == NULL     ? "out of memory"
                    : set == NULL ? "the configuration has no tls_certificate"
                                  : "cannot create the TLS session",
                    (unsigned long long)dropped);
        free(t);
        close(fd);
        return NULL;
    }
    bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        /* only out of memory; libevent's failure path may or may not have
         * freed the SSL and closed fd: leaking both beats a double close */
        free(t);
        return NULL;
    }
    /* a client closing without close_notify is an EOF, as on plain TCP
     * (also needed for the half-close after a complete request) */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    t->ssl = ssl;
    *out = t;
    return bev;
}

void
proxy_tls_discard(struct proxy_tls *t)
{
    if (t != NULL) {
        free(t->subject);
        free(t);
    }
}

void
proxy_tls_close(struct proxy_tls *t, struct proxy_worker *w, bool failed)
{
    if (!t->done) {
        /* a client that connected and never sent a byte is not a failed handshake */
        BIO *rbio = SSL_get_rbio(t->ssl);
        if (rbio != NULL && BIO_number_read(rbio) > 0)
            STAT_INC(w, tls_handshake_failures);
    } else if (!t->failed && !failed) {
        /* close_notify (one non-blocking try); it also keeps the session
         * in the cache: OpenSSL drops sessions of connections freed without */
        SSL_shutdown(t->ssl);
    }
    ERR_clear_error();
    proxy_tls_discard(t);
}

void
proxy_tls_conn_free(struct proxy_conn *c)
{
    if (c->tls == NULL)
        return;
    proxy_tls_close(c->tls, c->w, false);
    c->tls = NULL;
}

static void
handshake_done(struct proxy_conn *c)
{
    struct proxy_tls *t = c->tls;
    struct proxy_worker *w = c->w;
    char subject[SUBJECT_MAX];

    t->done = true;
    tls_info_get(t->ssl, &t->info);
    STAT_INC(w, tls_handshakes[table_index(versions, PROXY_TLS_VERSIONS, t->info.version)]);
    STAT_INC(w, tls_ciphers[table_index(ciphers, PROXY_TLS_CIPHERS, t->info.cipher)]);
    if (t->info.resumed)
        STAT_INC(w, tls_resumed);
    if (t->info.peer_verified && tls_peer_subject(t->ssl, subject, sizeof(subject)) > 0)
        t->subject = strdup(subject); /* NULL on OOM: the origin just does not get it */
    log_debug("conn %s: %s %s%s%s%s", c->peer, t->info.version, t->info.cipher,
              t->info.resumed ? " resumed" : "", t->subject ? " client-cert" : "",
              t->info.alpn == TLS_PROTO_H2 ? " h2" : "");
    if (t->info.alpn == TLS_PROTO_H2) {
        /* an h2 session (proxy/h2.c) takes the connection, its SSL (owned
         * by the bufferevent) and this handshake's results from here; this
         * connection object goes */
        proxy_conn_to_h2(c);
    }
}

bool
proxy_tls_event(struct proxy_conn *c, short what)
{
    struct proxy_tls *t = c->tls;

    if (what & BEV_EVENT_CONNECTED) {
        handshake_done(c);
        return true;
    }
    if (what & BEV_EVENT_ERROR) {
        t->failed = true;
        if (!t->done && proxy_log_level() >= LOG_LVL_DEBUG) {
            unsigned long e = bufferevent_get_openssl_error(c->bev);
            char buf[256];
            ERR_error_string_n(e, buf, sizeof(buf));
            log_debug("conn %s: TLS handshake failed: %s", c->peer, e ? buf : "socket error");
        }
    }
    return false;
}

const char *
proxy_tls_client_subject(const struct proxy_req *r)
{
    const struct proxy_tls *t = r->tls;

    /* proxy_tls_check_site let the request through: the verification the
     * handshake did is the one this site asks for */
    if (t == NULL || t->subject == NULL || r->site == NULL ||
        tls_conf_site_verify(r->conf, r->site) == NULL)
        return NULL;
    return t->subject;
}

int
proxy_tls_check_site(struct proxy_req *r)
{
    const struct tls_verify_conf *want = tls_conf_site_verify(r->conf, r->site);
    const struct proxy_tls *t = r->tls;

    if (want == NULL)
        return 0;
    if (t == NULL) {
        if (want->mode == TLS_VERIFY_OPTIONAL || r->internal)
            return 0; /* plain, certificate optional; or an internal request */
        r->resp_close = true;
        proxy_resp_error(r, 403, "site '%s' requires a client certificate (use https)", r->host);
        return -1;
    }
    if (t->done && t->info.verify.mode == want->mode &&
        memcmp(t->info.verify.id, want->id, sizeof(want->id)) == 0)
        return 0;
    /* SNI chose a certificate that verifies differently from the site the
     * Host header names: a new connection with the right name is needed */
    r->resp_close = true;
    proxy_resp_error(r, 421,
                     "this connection was not set up for '%s' (its client certificates are "
                     "checked differently): connect with that name as SNI",
                     r->host);
    return -1;
}

void
proxy_tls_origin_headers(const struct proxy_req *r, struct proxy_hb *b)
{
    const char *s = proxy_tls_client_subject(r);

    if (s != NULL) {
        proxy_hb_lit(b, "X-Client-Cert-Subject: ");
        proxy_hb_str(b, s);
        proxy_hb_lit(b, "\r\n");
    }
}

void
proxy_tls_log_fields(const struct proxy_tls *t, struct evbuffer *b)
{

    if (t != NULL && t->done)
        evbuffer_add_printf(b, "\"tls\":\"%s\",\"cipher\":\"%s\",", t->info.version,
                            t->info.cipher);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static uint64_t
sum(struct proxy_engine *e, size_t off)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < e->nworkers; i++)
        t += LOAD(*(_Atomic uint64_t *)((char *)&e->workers[i].stats + off));
    return t;
}

#define SUM(e, field) sum(e, offsetof(struct proxy_stats, field))

void
proxy_tls_metrics_render(struct proxy_engine *e, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP edge_tls_handshakes_total TLS handshakes completed with "
                             "clients, by protocol version.\n"
                             "# TYPE edge_tls_handshakes_total counter\n");
    for (int i = 0; i < PROXY_TLS_VERSIONS; i++)
        evbuffer_add_printf(out, "edge_tls_handshakes_total{version=\"%s\"} %llu\n", versions[i],
                            (unsigned long long)SUM(e, tls_handshakes[i]));
    evbuffer_add_printf(out, "# HELP edge_tls_ciphers_total TLS handshakes completed with "
                             "clients, by cipher.\n"
                             "# TYPE edge_tls_ciphers_total counter\n");
    for (int i = 0; i < PROXY_TLS_CIPHERS; i++) {
        uint64_t v = SUM(e, tls_ciphers[i]);
        if (v > 0)
            evbuffer_add_printf(out, "edge_tls_ciphers_total{cipher=\"%s\"} %llu\n", ciphers[i],
                                (unsigned long long)v);
    }
    evbuffer_add_printf(out,
                        "# HELP edge_tls_handshake_failures_total TLS handshakes with clients that "
                        "started and did not finish (bad ClientHello, protocol or certificate "
                        "refused, timeout, reset).\n"
                        "# TYPE edge_tls_handshake_failures_total counter\n"
                        "edge_tls_handshake_failures_total %llu\n",
                        (unsigned long long)SUM(e, tls_handshake_failures));
    evbuffer_add_printf(out,
                        "# HELP edge_tls_resumed_total TLS handshakes that resumed a session "
                        "(ticket or session cache).\n"
                        "# TYPE edge_tls_resumed_total counter\n"
                        "edge_tls_resumed_total %llu\n",
                        (unsigned long long)SUM(e, tls_resumed));
}
