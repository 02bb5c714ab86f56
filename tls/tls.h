/*
 * tls — TLS to clients: the conf directives, the certificates and the
 * SSL_CTX set of one conf snapshot, SNI selection, ALPN, session resumption
 * (rotated ticket keys + a server session cache), OCSP stapling and client
 * certificates. The proxy wraps sockets with what tls_server_new() returns;
 * nothing here knows about connections or HTTP.
 *
 * 1. Conf (conf.c) — tls_conf_register() before the first conf_load():
 *
 *      tls_certificate CERT KEY [default];   MAIN, SITE; may repeat
 *      tls_protocols TLSv1.2 TLSv1.3;         MAIN; default both
 *      tls_ciphers LIST;                      MAIN; TLS 1.2 ciphers, OpenSSL syntax
 *      tls_ciphersuites LIST;                 MAIN; TLS 1.3 suites, OpenSSL syntax
 *      tls_session_ticket_rotate DURATION;    MAIN; default 1h (1s .. 7d)
 *      tls_ocsp FILE;                         MAIN, SITE; DER response stapled
 *      tls_client_ca FILE;                    MAIN, SITE; PEM CA certificates
 *      tls_verify_client on|optional|off;     MAIN, SITE; default off
 *
 *    Paths are relative to the working directory (as cache_dir). Every file
 *    is read when the conf is loaded, so `edge -t` refuses an unreadable or
 *    malformed certificate, a key that does not match it, a bad CA or OCSP
 *    file, at the directive's file:line:col, naming the file. A reload reads
 *    them again: new handshakes use the new set, established connections
 *    keep the one they started with (each SSL holds a reference on its set).
 *
 * 2. SNI: the names of a certificate are the DNS names of its
 *    subjectAltName (its subject CN only when it has no DNS name). A client
 *    name matches an exact name first, then a wildcard "*.example.com"
 *    (one label, leftmost). No SNI, or a name no certificate has: the
 *    certificate marked 'default', else the first top-level one, else the
 *    first one in conf order. Selection runs in the ClientHello callback,
 *    before session resumption, so a session only resumes under the
 *    certificate (and client-certificate settings) it was made with.
 *
 * 3. Client certificates: 'tls_verify_client' and 'tls_client_ca' apply to
 *    the certificates of their context (a site inherits the top level's).
 *    A site that verifies differently from the top level needs its own
 *    'tls_certificate', since SNI picks the verification with the
 *    certificate. tls_conf_site_verify() gives what a site asks for; the
 *    proxy compares it with what the connection's handshake did (same id)
 *    and answers 421 when a request's Host names a site the handshake was
 *    not made for (nginx does the same).
 *
 * 4. Sessions: tickets are encrypted with keys shared by every SSL_CTX and
 *    thread of the process, made lazily (so after the engine's fork) and
 *    rotated every tls_session_ticket_rotate; the previous key still
 *    decrypts (the ticket is then renewed). Sessions live that long. Each
 *    set also has a server-side session cache (TLS 1.2 session ids).
 *
 * 5. Origins (origin.c): TLS to origin servers. In an 'origin' block:
 *
 *      server https://HOST[:PORT];            (conf/core.c) the origin speaks TLS
 *      tls on|off;                            ORIGIN; 'on': HOST:PORT servers speak TLS
 *      tls_ca FILE;                           ORIGIN; PEM CAs; default the system store
 *      tls_verify on|off;                     ORIGIN; default on ('off' is logged at start)
 *      tls_server_name NAME;                  ORIGIN; SNI and the name verified;
 *                                             default each server's host
 *
 *    The finish hook builds one client SSL_CTX per TLS origin (TLS 1.2+,
 *    ALPN http/1.1, verification against tls_ca or the system store, which
 *    the origins of a conf share), so a missing or bad tls_ca fails
 *    `edge -t` at its file:line:col. tls_client_new() makes the SSL of one
 *    connection: SNI (not for IP literals), the name verified (an IP
 *    literal is checked against the certificate's IP addresses), and the
 *    last session of that server offered for resumption. Sessions arrive
 *    through the client session-cache callback (TLS 1.3 tickets come after
 *    the handshake) into a struct tls_sessions the caller owns, one per
 *    server and thread.
 *
 * Return convention: int functions 0 / -1; pointers NULL on failure.
 * Thread-safety: a set is immutable once built and refcounted atomically;
 * the ticket keys take a mutex once per ticket operation.
 */
#ifndef EDGE_TLS_H
#define EDGE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf;
struct conf_site;
struct ssl_st;

/* Registers the directives (thread-safe, idempotent). 0 / -1. */
int tls_conf_register(void);

/* The SSL_CTX set of a conf: NULL when it has no certificate. Valid while
 * the conf is; take a reference to keep it longer. */
struct tls_set;
struct tls_set *tls_conf_set(const struct conf *c);
struct tls_set *tls_set_ref(struct tls_set *s);
void tls_set_unref(struct tls_set *s);

enum tls_verify { TLS_VERIFY_OFF, TLS_VERIFY_ON, TLS_VERIFY_OPTIONAL };

#define TLS_VERIFY_ID_LEN 32
struct tls_verify_conf {
    enum tls_verify mode;
    /* SHA-256 of the mode and the CA file's bytes: equal ids verify alike,
     * across reloads too */
    unsigned char id[TLS_VERIFY_ID_LEN];
};
/* What a site (or, for s NULL, the top level) asks of client certificates;
 * NULL when it does not verify them (or the conf has no TLS). */
const struct tls_verify_conf *tls_conf_site_verify(const struct conf *c, const struct conf_site *s);

/* ---- connections ---- */

enum {
    TLS_ALPN_H2 = 1u << 0, /* h2 may be offered (the listener has h2 and the proxy speaks it) */
};

/* A server-side SSL for a new connection, starting on the set's default
 * certificate. It holds a reference on the set, dropped by SSL_free(). */
struct ssl_st *tls_server_new(struct tls_set *set, unsigned flags);

enum tls_proto { TLS_PROTO_NONE, TLS_PROTO_HTTP1, TLS_PROTO_H2 }; /* what ALPN chose */

/* What a finished handshake was (for the access log, metrics, functions). */
struct tls_info {
    const char *version; /* static, "TLSv1.3" */
    const char *cipher;  /* static (OpenSSL's table), "TLS_AES_128_GCM_SHA256" */
    enum tls_proto alpn;
    bool resumed;
    /* the verification of the certificate SNI chose (mode OFF: none) */
    struct tls_verify_conf verify;
    bool peer_verified; /* a client certificate was presented and verified */
};
void tls_info_get(struct ssl_st *ssl, struct tls_info *out);

/* The verified client certificate's subject, RFC 2253, as a safe header
 * value (escapes kept, no control bytes), NUL-terminated in out. Returns
 * its length; 0 when there is none (or it did not verify). */
size_t tls_peer_subject(struct ssl_st *ssl, char *out, size_t cap);

/* The server name the client sent (normalised), or NULL. */
const char *tls_sni(struct ssl_st *ssl);

/* ---- origins (TLS client) ---- */

struct conf_origin;

/* The TLS settings of an origin; NULL when it speaks plain HTTP. Valid
 * while the conf is (an SSL made from it keeps its SSL_CTX alive). */
struct tls_origin;
const struct tls_origin *tls_conf_origin(const struct conf *c, const struct conf_origin *o);
/* Equal ids, equal settings (verification, CA file bytes, server name),
 * across reloads too: connections and sessions made under one id may be
 * reused under the other. */
uint64_t tls_origin_id(const struct tls_origin *t);
bool tls_origin_verifies(const struct tls_origin *t); /* false: 'tls_verify off' */

/* The last resumable session of one server, on one thread. Refcounted: the
 * owner's reference (tls_sessions_new) and one per SSL using it. */
struct tls_sessions;
struct tls_sessions *tls_sessions_new(void);
void tls_sessions_unref(struct tls_sessions *s);

/* A client SSL for a connection to host (a name or an IP literal, as in
 * the conf; is_ip for a literal). sess (may be NULL) gets the sessions the
 * server sends and its last one is offered. NULL when out of memory. */
struct ssl_st *tls_client_new(const struct tls_origin *t, const char *host, bool is_ip,
                              struct tls_sessions *sess);

/* True once the handshake wrote to the socket (so the TCP connection was
 * made): a failure from then on is TLS's, before it the connect's. */
bool tls_client_started(struct ssl_st *ssl);

/* Why a client handshake failed, for a 502 body: "certificate verify failed
 * (self-signed certificate)", "wrong version number", ... errs are the
 * OpenSSL error codes the connection reported (libevent's
 * bufferevent_get_openssl_error), n of them. Returns the length written. */
size_t tls_client_why(struct ssl_st *ssl, const unsigned long *errs, size_t n, char *out,
                      size_t cap);

/* What a finished client handshake was. */
struct tls_client_info {
    const char *version; /* static */
    bool resumed;
};
void tls_client_info_get(struct ssl_st *ssl, struct tls_client_info *out);

/* Before an SSL of a healthy connection is freed: one non-blocking
 * close_notify (a session OpenSSL sees freed without it is no longer
 * resumable). 'peer_closed': the peer went first, nothing is written. */
void tls_client_close(struct ssl_st *ssl, bool peer_closed);

#endif /* EDGE_TLS_H */
