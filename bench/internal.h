/*
 * What the engine's parts share, private to bench/: run.c (threads, scheduling, connections,
 * HTTP/1.1), tls.c (the TLS transport) and h2.c (HTTP/2). Everything here runs on one worker
 * thread but for struct bench_net, which is built before the threads start and read-only after.
 *
 * Layering. A connection (struct bconn) has a transport, struct bench_io (plain TCP or TLS),
 * and a protocol: HTTP/1.1 (llhttp, one request in flight, the state in the connection) or
 * HTTP/2 (nghttp2, up to net->streams requests in flight, each in a struct bench_stream slot).
 * Plain HTTP/1.1 uses the same code as before the seam existed: its read callback, write path
 * and request state are untouched; TLS and HTTP/2 get their own read callbacks (chosen once per
 * connection in bench_conn_connect), so the plain path pays no extra branch per request but one
 * predictable test for --new-conn.
 *
 * Conventions: functions named bench_* here are internal to bench/ (the prefix only keeps the
 * static library's namespace clean). Callbacks that receive a connection or stream through
 * void * check its magic (BUG on mismatch).
 */
#ifndef EDGE_BENCH_INTERNAL_H
#define EDGE_BENCH_INTERNAL_H

#include "bench/bench.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <llhttp.h>

struct ssl_st;          /* OpenSSL's SSL */
struct ssl_ctx_st;      /* SSL_CTX */
struct ssl_session_st;  /* SSL_SESSION */
struct nghttp2_session; /* nghttp2 */
struct nghttp2_session_callbacks;
struct addrinfo;

#define BENCH_CONN_MAGIC 0xbe7c0a11u
#define BENCH_CONN_DEAD 0xdeadc0a1u
#define BENCH_STREAM_MAGIC 0xbe7c5721u
#define BENCH_REQ_CAP 8192
#define BENCH_RBUF_CAP 65536
#define BENCH_BACKLOG_CAP 65536
#define BENCH_RECONNECT_MS 100
#define BENCH_H2_OUT_CAP 32768   /* per HTTP/2 connection: frames waiting for the socket */
#define BENCH_FIELDS_MAX 16       /* -H fields carried over to HTTP/2 */
#define BENCH_TLS_SESSIONS 8      /* per thread: resumable sessions kept (newest last) */

enum cstate {
    C_CLOSED,
    C_CONNECTING, /* TCP connect in progress */
    C_HANDSHAKE,  /* TLS handshake in progress */
    C_IDLE,       /* HTTP/1.1: connected, nothing in flight */
    C_BUSY,       /* HTTP/1.1: one request in flight */
    C_H2,         /* HTTP/2 session up: 0..streams requests in flight */
    C_BACKOFF,    /* waiting before a reconnect */
};

struct bconn;

/* The transport seam. Both return like recv/sendmsg: > 0 bytes, 0 end of stream (read), < 0
 * with errno EAGAIN when the socket would block, other errno values for a dead connection. */
struct bench_io {
    ssize_t (*read)(struct bconn *c, void *buf, size_t len);
    ssize_t (*writev)(struct bconn *c, const struct iovec *iov, int n);
};

/* One "Name: value" request field for HTTP/2 (name lowercased), views into caller buffers. */
struct bench_field {
    const char *name;
    size_t namelen;
    const char *value;
    size_t valuelen;
};

/* Per run, shared read-only by the threads. */
struct bench_net {
    const struct bench_target *t;
    const struct sockaddr *addr;
    socklen_t alen;
    struct ssl_ctx_st *ssl_ctx; /* NULL: plain TCP */
    bool ip_host;               /* the URL host is an IP literal: no SNI (RFC 6066 §3) */
    bool h2;
    bool new_conn;
    unsigned streams; /* request slots per connection: 1 for HTTP/1.1 */
    /* HTTP/2 requests: :scheme, :authority and the -H fields (hop-by-hop ones dropped) */
    const char *scheme;
    const char *authority;
    size_t authority_len;
    struct bench_field fields[BENCH_FIELDS_MAX];
    size_t nfields;
    char names[4096]; /* the lowercased field names */
};

/* One HTTP/2 request slot. */
struct bench_stream {
    uint32_t magic;
    int32_t id; /* 0: free */
    struct bconn *c;
    bool head_req, remote_end, timed_out;
    unsigned status;
    enum bench_cache cache;
    uint64_t t_intended, t_sent; /* ns */
    uint64_t body_bytes;
    size_t body_off, body_len; /* request body sent so far / to send */
};

struct bench_h2 {
    struct nghttp2_session *s; /* NULL when the connection is not up */
    struct bench_stream *st;   /* [net->streams] */
    unsigned *free_slots;      /* stack of free indices into st */
    unsigned nfree;
    unsigned nactive;
    uint64_t submitted; /* requests on this connection (--new-conn: at most streams) */
    bool no_more;       /* GOAWAY seen, stream ids exhausted, or --new-conn quota: drain, close */
    size_t out_off, out_len;
    char out[BENCH_H2_OUT_CAP];
};

struct worker;

struct bconn {
    uint32_t magic;
    struct worker *w;
    const struct bench_io *io;
    int fd;
    enum cstate st;
    bool in_idle, head_req, complete, keep_alive, hdr_is_cs;
    bool tls_clean; /* handshake done and no fatal TLS error: close_notify on close */
    struct event rd, wr, tmo;
    llhttp_t parser;
    struct bconn *next_idle;
    uint64_t t_intended, t_sent; /* ns */
    uint64_t t_connect;          /* ns: connect() started (--new-conn latency base) */
    size_t req_len, req_off, body_len, body_off;
    uint64_t body_bytes;
    enum bench_cache cache;
    size_t hname_len, hval_len;
    struct ssl_st *ssl;  /* TLS: the session on fd */
    struct bench_h2 *h2; /* HTTP/2: allocated at the first connect, kept across reconnects */
    char hname[16];
    char hval[256];
    char req[BENCH_REQ_CAP];
};

struct worker {
    unsigned idx;
    pthread_t th;
    bool started;
    const struct bench_cfg *cfg;
    const struct bench_workload *wl;
    const struct bench_target *t;
    const struct bench_net *net;
    const struct sockaddr *addr;
    socklen_t alen;
    struct event_base *base;
    const struct timeval *tv_timeout; /* common timeout */
    uint64_t timeout_ns;
    event_callback_fn read_fn; /* the read callback of this run's transport + protocol */
    struct nghttp2_session_callbacks *h2_cbs;
    struct ssl_session_st *sess[BENCH_TLS_SESSIONS]; /* TLS: sessions to resume (tls.c) */
    unsigned nsess;
    struct bconn *conns;
    unsigned nconns_init, nconns_max, nopen, nconnecting;
    struct bconn *idle;
    unsigned inflight;
    struct bench_rng rng;
    struct bench_result res;
    bool limited, ending, open_loop, new_conn;
    uint64_t remaining;
    uint64_t interval_ns, next_ns, start_ns;
    uint64_t *backlog;
    size_t bl_head, bl_len;
    struct event tick, end, poll;
    atomic_uint_fast64_t prog_resp, prog_fail;
    atomic_bool done;
    char tls_err[200]; /* the first TLS handshake failure, for the end-of-run note */
    char rbuf[BENCH_RBUF_CAP];
};

static inline uint64_t
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline struct bconn *
bench_conn_of(void *arg)
{
    struct bconn *c = arg;
    if (c == NULL || c->magic != BENCH_CONN_MAGIC)
        abort(); /* BUG: callback on a freed or foreign object */
    return c;
}

/* ---- run.c ------------------------------------------------------------------------------ */

void bench_conn_connect(struct bconn *c);
void bench_conn_close(struct bconn *c);
/* Counts e (once per request lost with the connection, at least once), closes, reconnects
 * (after a pause for connect and TLS failures). */
void bench_conn_fail(struct bconn *c, enum bench_err e);
/* Transport ready (TCP connected, TLS handshake done): start the protocol. */
void bench_conn_usable(struct bconn *c);
/* Closes and opens a new connection at once, no error counted (server closed, GOAWAY...). */
void bench_conn_recycle(struct bconn *c);
bool bench_take_budget(struct worker *w);
void bench_worker_check_done(struct worker *w);
void bench_idle_push(struct bconn *c);
/* Open loop: the oldest waiting intended send time; false when none. */
bool bench_backlog_pop(struct worker *w, uint64_t *t);
/* Open loop: puts t back at the head (a request refused unprocessed goes out again). */
void bench_backlog_unpop(struct worker *w, uint64_t t);

/* ---- tls.c ------------------------------------------------------------------------------ */

extern const struct bench_io bench_tls_io;
/* The run's client context: verification (system store, cafile, or none), the hostname or IP
 * to verify, ALPN ("h2" or "http/1.1"), client session cache feeding worker->sess. NULL with a
 * message in err. */
struct ssl_ctx_st *bench_tls_ctx_new(const struct bench_cfg *cfg, const struct bench_target *t,
                                     bool ip_host, char *err, size_t errlen);
void bench_tls_ctx_free(struct ssl_ctx_st *ctx);
/* After the TCP connect: creates the SSL on c->fd (SNI, the worker's session) and runs the
 * first handshake step. Ends in bench_conn_usable or bench_conn_fail(BENCH_ERR_TLS). */
void bench_tls_start(struct bconn *c);
/* A read or write event during C_HANDSHAKE. */
void bench_tls_handshake(struct bconn *c);
/* Bytes decrypted and waiting inside OpenSSL (no socket event will announce them). */
bool bench_tls_pending(const struct bconn *c);
/* Frees c->ssl, sending close_notify first when the connection is clean. */
void bench_tls_close(struct bconn *c);
void bench_tls_sessions_free(struct worker *w);

/* Before the threads start, for TLS or h2c targets: connects (trying each address of ai in
 * turn; *chosen gets the first that accepted, or ai), handshakes, checks ALPN (h2) or the h2c
 * preface answer; fills res->tls_version. Returns 0 (also when nothing accepted: the run then
 * counts connect errors), or -1 with a message in err when no request could succeed. */
int bench_probe(const struct bench_cfg *cfg, const struct bench_target *t,
                struct ssl_ctx_st *ctx, bool ip_host, const struct addrinfo *ai,
                const struct addrinfo **chosen, struct bench_result *res, char *err,
                size_t errlen);

/* ---- h2.c ------------------------------------------------------------------------------- */

/* Splits "Name: value\r\n"... (-H text) into HTTP/2 fields: names lowercased into names (cap
 * bytes), values trimmed of spaces and tabs, pointing into text. Connection-specific fields
 * (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, TE but "trailers")
 * are dropped; Host goes to *host (its last value) instead of out. Returns the number of fields,
 * or -1 when more than max, names does not fit, or a line lacks its colon. */
int bench_h2_fields(const char *text, size_t len, char *names, size_t cap,
                    struct bench_field *out, size_t max, struct bench_field *host);
/* The first bytes an h2c server sent after our preface: 0 when they start a SETTINGS frame,
 * else -1 with the reason in err ("answered HTTP/1.1 ..." etc.). */
int bench_h2c_reply_check(const unsigned char *buf, size_t n, char *err, size_t errlen);

struct nghttp2_session_callbacks *bench_h2_callbacks_new(void);
void bench_h2_callbacks_free(struct nghttp2_session_callbacks *cbs);
/* Transport ready: a client session, SETTINGS, then as many requests as slots and budget. */
void bench_h2_start(struct bconn *c);
void bench_h2_read_cb(evutil_socket_t fd, short what, void *arg);
void bench_h2_writable(struct bconn *c);
void bench_h2_timeout(struct bconn *c);
/* Open loop: one request at intended (c has a free slot). */
void bench_h2_dispatch(struct bconn *c, uint64_t intended);
bool bench_h2_has_slot(const struct bconn *c);
/* The connection is going away with its streams: returns how many were in flight and not yet
 * counted (timed-out ones are), takes them off w->inflight, frees the session. */
unsigned bench_h2_drop(struct bconn *c);
void bench_h2_free(struct bconn *c);

#endif /* EDGE_BENCH_INTERNAL_H */
