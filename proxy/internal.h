/*
 * proxy internals shared by the files of proxy/ (private to the module).
 *
 * Threads: one engine process runs N workers. Each worker owns an
 * event_base, its listeners, the client connections it accepted, its
 * upstream pools, its DNS resolver and its counters. Nothing on the request
 * path is shared between workers except the immutable conf snapshot (each
 * worker holds its own reference, swapped on reload by a message from the
 * engine's main thread) and the counters (written by their worker with
 * relaxed atomics, summed by the admin thread).
 */
#ifndef EDGE_PROXY_INTERNAL_H
#define EDGE_PROXY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <llhttp.h>

#include "cache/cache.h"
#include "compute/compute.h"
#include "conf/conf.h"
#include "proxy/log.h"

struct event_base;
struct event;
struct evbuffer;
struct bufferevent;
struct evconnlistener;
struct proxy_dns;
struct proxy_dns_query;
struct proxy_engine;
struct ssl_st;
struct tls_sessions;
struct proxy_worker;
struct proxy_h2; /* h2.c: one HTTP/2 client connection */

/* A TLS response up to this size is made one chunk before it is written:
 * the OpenSSL bufferevent makes one record (and one send) per chunk. */
#define PROXY_TLS_COALESCE 16000
/* A plain response of at least this many bytes is written corked (TCP_CORK). */
#define PROXY_CORK_MIN (256 * 1024)

/* BUG_ON: always on; logs where and aborts. For impossible states only. */
#define BUG_ON(cond)                                                                               \
    do {                                                                                           \
        if (__builtin_expect(!!(cond), 0)) {                                                       \
            proxy_log(LOG_LVL_ERR, "BUG at %s:%d: %s", __FILE__, __LINE__, #cond);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Objects that travel through void * carry a magic (miniobj style). */
#define CHECK_MAGIC(p, m) BUG_ON((p) == NULL || (p)->magic != (m))
#define PROXY_CONN_MAGIC 0x436f6e6eu   /* "Conn" */
#define PROXY_UPCONN_MAGIC 0x5570436eu /* "UpCn" */
#define PROXY_REQ_MAGIC 0x52657175u    /* "Requ" */
#define PROXY_DEAD_MAGIC 0xdeadbeefu

/* ---- counters ---------------------------------------------------------------------- */

#define PROXY_TLS_VERSIONS 3 /* TLSv1.2, TLSv1.3, other */
#define PROXY_TLS_CIPHERS 12 /* tls.c's table, "other" last */

/* Request duration buckets (seconds) for the Prometheus histogram. */
#define PROXY_HIST_BUCKETS 14
extern const double proxy_hist_bounds[PROXY_HIST_BUCKETS];

struct proxy_stats {
    _Atomic uint64_t requests;
    _Atomic uint64_t status_class[6]; /* [1]=1xx … [5]=5xx, [0] other */
    _Atomic uint64_t conns_accepted;
    _Atomic uint64_t conns_active;
    _Atomic uint64_t conns_rejected; /* over max_connections */
    _Atomic uint64_t bytes_in;       /* from clients */
    _Atomic uint64_t bytes_out;      /* to clients */
    _Atomic uint64_t upstream_requests;
    _Atomic uint64_t upstream_connects;
    _Atomic uint64_t upstream_connect_failures;
    _Atomic uint64_t upstream_reused;
    _Atomic uint64_t upstream_retries;
    _Atomic uint64_t upstream_timeouts;
    _Atomic uint64_t upstream_resets;
    _Atomic uint64_t dns_failures;
    _Atomic uint64_t client_errors[8]; /* 400 408 413 414 431 404, see proxy_err_index */
    _Atomic uint64_t tunnels;
    _Atomic uint64_t cache_hits, cache_misses, cache_stores, cache_store_errors,
        cache_revalidated, cache_collapsed, cache_bg_refreshes;
    /* h2.c: HTTP/2 client sessions, streams, RST_STREAMs received, GOAWAYs
     * sent, sessions closed for flooding (ENHANCE_YOUR_CALM) */
    _Atomic uint64_t h2_sessions, h2_streams, h2_resets, h2_goaways, h2_floods;
    _Atomic uint64_t hist[PROXY_HIST_BUCKETS + 1]; /* last = +Inf */
    _Atomic uint64_t hist_sum_us;
    /* tls.c: handshakes by version and cipher (indexes in its tables) */
    _Atomic uint64_t tls_handshakes[PROXY_TLS_VERSIONS];
    _Atomic uint64_t tls_ciphers[PROXY_TLS_CIPHERS];
    _Atomic uint64_t tls_handshake_failures, tls_resumed;
    /* upstream.c: TLS to origins */
    _Atomic uint64_t upstream_tls_handshakes, upstream_tls_resumed, upstream_tls_failures;
};

#define STAT_ADD(w, field, n) atomic_fetch_add_explicit(&(w)->stats.field, (n), memory_order_relaxed)
#define STAT_INC(w, field) STAT_ADD(w, field, 1)
#define STAT_DEC(w, field) atomic_fetch_sub_explicit(&(w)->stats.field, 1, memory_order_relaxed)

int proxy_err_index(int status); /* index into client_errors, or -1 */

/* ---- free lists ------------------------------------------------------------------------ */

/* A per-worker stack of free objects of one type (STYLE 15): requests,
 * connections and h2 streams come and go by the thousand per second, and
 * malloc/free of them (and of the buffers they keep) showed as a fifth of
 * an h2 profile. An object in the stack keeps its buffers; the owner type
 * resets what it reuses. Bounded: past 'cap' the object is freed. */
struct proxy_pool {
    void **v;
    size_t n, cap;
};

int proxy_pool_init(struct proxy_pool *p, size_t cap);
/* Frees what is left with free_one (at worker exit). */
void proxy_pool_fini(struct proxy_pool *p, void (*free_one)(void *));

static inline void *
proxy_pool_get(struct proxy_pool *p)
{
    return p->n > 0 ? p->v[--p->n] : NULL;
}

/* false: the stack is full (or was never made): the caller frees o. */
static inline bool
proxy_pool_put(struct proxy_pool *p, void *o)
{
    if (p->n == p->cap)
        return false;
    p->v[p->n++] = o;
    return true;
}

/* ---- header lists ------------------------------------------------------------------ */

struct proxy_hdr {
    const char *name;
    size_t nlen;
    const char *value;
    size_t vlen;
};

/* A message head being parsed: bytes are copied into 'buf' (max 'cap'),
 * headers index into it until the head is complete. A head made with
 * proxy_head_init_grow starts smaller and doubles up to 'cap' (buf moves:
 * only for heads nobody keeps pointers into while they are appended to). */
struct proxy_head {
    char *buf;
    size_t len, cap;
    size_t size; /* bytes allocated at buf (== cap unless growing) */
    size_t url_off, url_len;     /* request target */
    size_t reason_off, reason_len; /* response reason phrase */
    struct {
        size_t noff, nlen, voff, vlen;
    } *idx;
    size_t n, ncap, max_headers;
    bool in_value; /* last callback was a value piece */
    int overflow;  /* 0, or the status to answer (414, 431) */
    /* tokens of the Connection header(s), found once per head */
    bool conn_scanned;
    size_t nconn;
    struct {
        size_t off, len;
    } conn[8];
};

/* A response or request head written into a stack buffer and handed to
 * the evbuffer in one piece: evbuffer_add runs the bufferevent's callbacks
 * on every call, and printf-style formatting showed in profiles. */
struct proxy_hb {
    struct evbuffer *out;
    size_t len;
    char buf[8192];
};
void proxy_hb_flush(struct proxy_hb *b);
void proxy_hb_big(struct proxy_hb *b, const void *p, size_t n);
static inline void
proxy_hb_add(struct proxy_hb *b, const void *p, size_t n)
{
    if (n > sizeof(b->buf) - b->len) {
        proxy_hb_flush(b);
        if (n > sizeof(b->buf)) {
            proxy_hb_flush(b);
            proxy_hb_big(b, p, n);
            return;
        }
    }
    __builtin_memcpy(b->buf + b->len, p, n);
    b->len += n;
}
#define proxy_hb_lit(b, s) proxy_hb_add((b), (s), sizeof(s) - 1)
void proxy_hb_str(struct proxy_hb *b, const char *s);
void proxy_hb_u64(struct proxy_hb *b, uint64_t v);
void proxy_hb_hdr(struct proxy_hb *b, const char *name, size_t nlen, const char *value,
                  size_t vlen);

int proxy_head_init(struct proxy_head *h, size_t cap, size_t max_headers);
int proxy_head_init_grow(struct proxy_head *h, size_t initial, size_t cap, size_t max_headers);
void proxy_head_reset(struct proxy_head *h);
void proxy_head_fini(struct proxy_head *h);
int proxy_head_url(struct proxy_head *h, const char *at, size_t len, size_t max_uri);
int proxy_head_reason(struct proxy_head *h, const char *at, size_t len);
int proxy_head_field(struct proxy_head *h, const char *at, size_t len);
int proxy_head_value(struct proxy_head *h, const char *at, size_t len);
/* Fills the view array (allocated in the head) once the head is complete. */
size_t proxy_head_get(const struct proxy_head *h, size_t i, struct proxy_hdr *out);
bool proxy_head_find(const struct proxy_head *h, const char *name, struct proxy_hdr *out);

bool proxy_hdr_is(const struct proxy_hdr *h, const char *name);
/* Percent-decodes a path for matching (a decoded NUL or '/' stays encoded). */
size_t proxy_path_decode(const char *in, size_t n, char *out, size_t cap);
/* Resolves '.' and '..' and merges slashes; 0 when the path escapes the root. */
size_t proxy_path_normalize(const char *in, size_t n, char *out, size_t cap);
bool proxy_token_in_list(const char *list, size_t len, const char *token);
/* Finds the Connection header's tokens (call once the head is complete). */
void proxy_head_scan_connection(struct proxy_head *h);
/* Hop-by-hop: Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding, Upgrade, and any header named in Connection. */
bool proxy_hdr_hop_by_hop(const struct proxy_hdr *h, const struct proxy_head *all);

/* ---- requests ---------------------------------------------------------------------- */

/* ---- responses: what the pipeline hands to the client side --------------------------- */

struct proxy_req;
struct proxy_upconn;

/* A response head: end-to-end fields only (no hop-by-hop ones; Content-
 * Length is a field when the answer has one), and what framing needs. */
struct proxy_resp {
    int status;
    const char *reason; /* the origin's reason phrase (HTTP/1.1); NULL: the standard one */
    size_t reason_len;
    const struct proxy_hdr *f;
    size_t nf;
    int64_t length;      /* body bytes that follow; -1 unknown (HTTP/1.1: chunked, or close) */
    bool nobody;         /* no body follows (HEAD, 1xx, 204, 304, 416 from cache) */
    bool edge;           /* made by edge (an answer or a cache hit), not an origin's */
    const char *upgrade; /* 101: the origin's Upgrade (HTTP/1.1) */
    size_t upgrade_len;
    bool complete;       /* the whole response: the body (if any) is here, nothing follows */
    const void *body;
    size_t body_len;
};

/* A request's way back to its client: HTTP/1.1 text on the connection
 * (http1.c) or HTTP/2 frames on a stream (h2.c). Everything in the
 * pipeline that answers goes through these; the pipeline keeps r->status,
 * resp_started, resp_done and resp_bytes, the sink only writes.
 *   head         the response head; with resp->complete the body and the end too
 *   data         a piece of body (copied)
 *   data_ref     a piece of body held by reference: unref(p, n, arg) once sent
 *                (also on failure: false, the response cannot be completed)
 *   data_file    a range of a file (the sink dups fd if it keeps it); false on failure
 *   end          the body is complete
 *   abort        the head went out and the rest cannot follow: cut it
 *   congested    the client is not taking what was written: stop reading the origin
 *   interim      an origin's 1xx (not 100, not 101) before the head: forwarded
 *                (RFC 9110 15.2); NULL or a no-op where the client cannot take it
 *   cont         100 Continue (a body the pipeline reads before answering)
 *   body_wanted  the origin took request body: the client side may read more
 *   check_done   the response may be complete: end the request when it is (the
 *                owner frees it; r may be gone afterwards) */
struct proxy_sink {
    void (*head)(struct proxy_req *r, const struct proxy_resp *resp);
    void (*data)(struct proxy_req *r, const void *p, size_t n);
    bool (*data_ref)(struct proxy_req *r, const void *p, size_t n,
                     void (*unref)(const void *p, size_t n, void *arg), void *arg);
    bool (*data_file)(struct proxy_req *r, int fd, uint64_t off, uint64_t len);
    void (*end)(struct proxy_req *r);
    void (*abort)(struct proxy_req *r);
    bool (*congested)(const struct proxy_req *r);
    void (*cont)(struct proxy_req *r);
    void (*interim)(struct proxy_req *r, int status, const struct proxy_hdr *f, size_t nf);
    void (*body_wanted)(struct proxy_req *r);
    void (*check_done)(struct proxy_req *r);
};

/* The fields of the response being written, in a per-worker array (one
 * response at a time on a thread, like the head builder). A field that
 * does not fit (out of memory) sets oom; the writer checks it. */
struct proxy_fields {
    struct proxy_hdr *v;
    size_t n, cap;
    bool oom;
};
void proxy_fields_grow(struct proxy_fields *f);
static inline void
proxy_fields_add(struct proxy_fields *f, const char *name, size_t nlen, const char *value,
                 size_t vlen)
{
    if (f->n == f->cap) {
        proxy_fields_grow(f);
        if (f->n == f->cap)
            return;
    }
    f->v[f->n++] = (struct proxy_hdr){name, nlen, value, vlen};
}
/* Decimal text of v at the end of buf (PROXY_U64_TEXT bytes); *len set. */
#define PROXY_U64_TEXT 24
const char *proxy_u64_text(char *buf, uint64_t v, size_t *len);

enum proxy_err_kind { PROXY_FAIL_NONE, PROXY_FAIL_DNS, PROXY_FAIL_CONNECT, PROXY_FAIL_RESET,
                      PROXY_FAIL_TIMEOUT, PROXY_FAIL_PROTOCOL, PROXY_FAIL_UNAVAILABLE,
                      PROXY_FAIL_TLS /* origin TLS handshake or verification: connect phase */ };

struct proxy_upconn;
struct proxy_srv;
struct efn_req; /* fn.c: the request's edge-function state */

struct proxy_tls; /* tls.c */

struct proxy_req {
    uint32_t magic;
    const struct proxy_sink *sink; /* how the answer reaches the client */
    void *sink_arg;                /* the sink's: the h2 stream */
    struct proxy_conn *c; /* HTTP/1.1: the connection (NULL for an h2 stream; http1.c only) */
    struct proxy_worker *w;
    struct proxy_head *head;     /* the request head (the connection's, or the h2 stream's) */
    const char *peer;            /* client IP as text (its connection or session owns it) */
    const struct proxy_tls *tls; /* the client's TLS handshake; NULL on plain HTTP */
    bool https;                  /* scheme: cache keys, X-Forwarded-Proto */
    bool internal;               /* made by edge itself (a background refresh) */
    struct conf *conf; /* reference held for the request's life */
    const struct conf_site *site;
    const struct conf_route *route;

    uint8_t method; /* llhttp_method */
    const char *method_name;
    uint8_t http_major, http_minor;
    const char *target; /* in head buf */
    size_t target_len;
    const char *path; /* origin-form path (without query) */
    size_t path_len;
    const char *query; /* after '?', may be NULL */
    size_t query_len;

    int64_t content_length; /* -1 when absent */
    bool chunked;
    bool expect_continue;
    bool upgrade;
    bool keepalive; /* client wants the connection kept */
    bool body_done; /* client's request message fully parsed */
    uint64_t body_bytes;
    struct evbuffer *body; /* request body not yet written upstream */
    bool body_retained;    /* whole body still in 'body_copy' for a retry */
    struct evbuffer *body_copy;

    /* upstream exchange */
    const struct conf_origin *origin;
    struct proxy_upconn *up;
    struct proxy_dns_query *dnsq;
    struct proxy_srv *srv;
    unsigned tries;
    bool up_sent_any;   /* any request byte written to an upstream */
    bool resp_started;  /* status line sent to the client */
    bool resp_done;
    bool resp_chunked;  /* we frame the client response with chunks */
    bool resp_close;    /* client connection closes after this response */
    bool resp_nobody;
    int status;
    uint64_t resp_bytes;
    enum proxy_err_kind fail;
    /* cache (cachepath.c) */
    const struct cache_route *cache_route;
    char *cache_key; /* NUL-terminated, when the route caches */
    size_t cache_key_len;
    bool cache_lookup;      /* GET/HEAD looked up: the response may be stored */
    bool cache_serve_after; /* answer from cache_obj when the origin's response ends */
    int cache_fwd;          /* enum cache_fwd of Cache-Status */
    struct cache_obj *cache_obj; /* stale object being revalidated / kept for errors */
    struct cache_writer *cache_w;
    struct efn_req *fx;      /* fn.c: the route's functions, NULL when it has none */
    bool fx_replaced;        /* RESPONSE phase answered: the origin's body is not sent */
    bool fx_body_wait;       /* the REQUEST phase waits for the whole body (body_get) */
    int64_t fx_age;          /* cachepath.c: Age of the object a paused RESPONSE phase serves */
    int64_t cache_req_time;
    size_t cache_cond_len;
    bool cache_collapsed;   /* answered after waiting on another request's fetch */
    bool collapse_leader;   /* collapse.c: this request fetches for the waiters */
    bool collapse_waiting;  /* collapse.c: parked until the leader is done */
    bool collapse_counted; /* collapse.c: in edge_cache_collapsed_total */
    TAILQ_ENTRY(proxy_req) collapse_link;
    /* cachepath.c: a response read from its cache file while it is stored */
    struct proxy_fill *fill; /* a reference while fill_lead or fill_read */
    bool fill_lead;          /* this request's origin response is the fill (w->fill_leaders) */
    bool fill_read;          /* the client gets the fill's body from the file (w->fill_readers) */
    bool fill_self;          /* fill_read of the leader itself: its client fell behind */
    bool fill_refused;       /* a fill did not fit this request: wait for the stored copy */
    uint64_t fill_sent;      /* body bytes of the fill queued to the client */
    TAILQ_ENTRY(proxy_req) fill_lead_link, fill_read_link;
    void *_tried; /* upstream.c: (server, address) pairs tried */
    unsigned ntried;

    uint64_t t_start_us, t_up_start_us, t_up_head_us, t_end_us;

    /* Large buffers last: a new request zeroes only what comes before
     * 'host' (proxy_req_new); each of these is set before it is read. */
    char host[256]; /* lower-cased, without port */
    char authority[280];
    char request_id[72];
    char upstream_addr[64];
    char up_last_why[256];  /* upstream.c: the failure a retry follows (proxy_upstream_start) */
    char cache_status[256]; /* Cache-Status value, "" when the route does not cache */
    char cache_cond[512];   /* our If-None-Match / If-Modified-Since (cache_cond_len) */
    struct cache_req_info cache_rq; /* set by cache_req_parse when cache_lookup */
    struct cache_decision cache_d;  /* set by cache_decide (read only with cache_obj) */
};

/* ---- client connections -------------------------------------------------------------- */

enum proxy_conn_state { CONN_IDLE, CONN_HEAD, CONN_BUSY, CONN_TUNNEL, CONN_CLOSING };

/* What a listener is (struct proxy_worker.listen_flags, as at start). */
#define PROXY_LISTEN_TLS (1u << 0)
#define PROXY_LISTEN_H2 (1u << 1)

struct proxy_conn {
    uint32_t magic;
    struct proxy_worker *w;
    struct bufferevent *bev;
    int fd;
    enum proxy_conn_state state;
    llhttp_t parser;
    struct proxy_head head;
    struct proxy_req *req;
    struct event *timer; /* head / keep-alive timer */
    struct event *defer; /* deferred work: free, resume parsing */
    char peer[64];       /* client IP as text */
    bool parser_paused;
    bool want_free;
    bool want_resume;
    bool reading_blocked; /* backpressure: upstream busy */
    bool flush_wanted;    /* output waits for the deferred flush */
    bool in_parser;       /* inside llhttp_execute: the request must outlive the callbacks */
    int parse_error;      /* status to answer after llhttp_execute */
    unsigned requests;
    TAILQ_ENTRY(proxy_conn) link;
    struct bufferevent *tunnel; /* CONN_TUNNEL: the upstream side */
    struct proxy_tls *tls; /* tls.c: the handshake and its results; NULL on plain connections */
    bool https;            /* scheme of the requests: a TLS connection, or an internal
                              request made for one (cache keys, X-Forwarded-Proto) */
    unsigned listen_flags; /* PROXY_LISTEN_* of the listener that accepted it */
    /* h2 (h2.c): a plain listener marked h2 looks for the h2c preface first */
    bool h2_sniff;
    /* The client went while its request leads a fill that others read: the
     * request runs on, what it writes is discarded (http1.c conn_orphan). */
    bool orphan;
};

/* ---- upstream ------------------------------------------------------------------------ */

#define PROXY_SRV_ADDRS 16

/* Per-worker state of one origin server "host:port" (kept across reloads). */
struct proxy_srv {
    char key[300]; /* "host:port" */
    char host[256];
    uint16_t port;
    bool is_ip;
    unsigned fails; /* consecutive */
    uint64_t down_until_ms;
    unsigned addr_rr;
    int cw; /* smooth weighted round-robin current weight */
    struct {
        struct sockaddr_storage ss;
        socklen_t len;
        unsigned fails;
        uint64_t down_until_ms;
    } addrs[PROXY_SRV_ADDRS];
    size_t naddrs; /* health records in use */
    /* TLS: servers are told apart by their TLS settings too (tls_origin_id),
     * so pooled connections and sessions only serve what they were made for */
    bool tls;
    uint64_t tls_id;
    struct tls_sessions *tls_sess; /* the last session, offered to new connections */
    TAILQ_HEAD(proxy_srv_idle_head, proxy_upconn) idle;
    size_t nidle;
    TAILQ_ENTRY(proxy_srv) link;
};

/* Per-worker round-robin state of one origin of the current conf. */
struct proxy_origin_rr {
    const struct conf_origin *origin;
    struct proxy_srv **srv; /* parallel to origin->servers */
    int *cw;                /* smooth weighted round-robin current weights */
};

enum proxy_up_state { UP_CONNECTING, UP_SENDING, UP_WAITING, UP_READING, UP_IDLE, UP_TUNNEL };

struct proxy_upconn {
    uint32_t magic;
    struct proxy_worker *w;
    struct proxy_srv *srv;
    struct bufferevent *bev;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    size_t addr_idx;
    char addr_text[64];
    enum proxy_up_state state;
    llhttp_t parser;
    struct proxy_head head;
    struct proxy_req *req; /* owner while busy; NULL when pooled */
    struct event *timer;
    unsigned served;
    bool got_bytes; /* any response byte for the current request */
    bool head_done;
    bool msg_done;
    bool reusable;
    bool interim; /* a 1xx is being skipped */
    bool fx_wait; /* the parser is paused while the RESPONSE phase waits on KV */
    struct ssl_st *ssl; /* TLS origin: owned by bev (freed with it); NULL when plain */
    bool tls_up;        /* the handshake finished */
    bool tls_quiet;     /* the peer closed or the connection failed: no close_notify */
    uint64_t idle_timeout_ms;
    TAILQ_ENTRY(proxy_upconn) link;
};

/* ---- workers and engine ------------------------------------------------------------ */

struct proxy_listen_fds {
    int *fds; /* [worker * nlistens + i] */
    size_t nlistens;
    unsigned nworkers;
    int admin_fd; /* -1 when no admin */
};

struct proxy_worker {
    unsigned id;
    struct proxy_engine *e;
    struct event_base *base;
    struct conf *conf; /* the worker's reference to the current snapshot */
    struct evconnlistener **listeners;
    unsigned *listen_flags; /* per listener: PROXY_LISTEN_* */
    size_t nlisteners;
    struct event *notify; /* on notify_fd, written by the main thread: conf swap, drain */
    int notify_fd;        /* eventfd */
    _Atomic bool force_stop;
    TAILQ_HEAD(, proxy_req) collapse_waiters; /* collapse.c: parked requests */
    pthread_mutex_t cq_lock;                  /* guards cq: keys posted by other workers */
    char **cq;
    size_t ncq, cqcap;
    /* cachepath.c: fills this worker's requests lead, requests reading a
     * fill, and the flag that coalesces wake-ups for them (notify_fd) */
    TAILQ_HEAD(, proxy_req) fill_leaders;
    TAILQ_HEAD(, proxy_req) fill_readers;
    _Atomic bool fill_wake;
    struct proxy_dns *dns;
    struct kv_client *kv;     /* fn.c: this worker's Redis connection (NULL: no functions) */
    struct kv_client *kv_old; /* replaced by a reload, freed when its last handle is */
    struct kv_stats kv_stats; /* what this worker's KV clients counted */
    TAILQ_HEAD(, proxy_conn) conns;
    uint64_t nconns;    /* conns, internal ones included, and h2 sessions */
    uint64_t ninternal; /* conns on a bufferevent pair (background refreshes): not clients */
    LIST_HEAD(, proxy_h2) h2s; /* h2.c: HTTP/2 client sessions */
    struct proxy_pool req_pool;  /* free struct proxy_req */
    struct proxy_pool conn_pool; /* free struct proxy_conn, with their head buffers and events */
    struct proxy_pool h2_pool;   /* h2.c: free streams, with their buffers */
    struct conf *listen_conf;  /* the conf the listening sockets came from (listen flags) */
    TAILQ_HEAD(, proxy_srv) srvs;
    struct proxy_origin_rr *rr; /* conf->norigins entries, rebuilt on conf swap */
    struct conf *rr_conf;
    bool draining;
    int access_fd;
    struct proxy_stats stats;
    uint64_t reqid_state;
    struct proxy_hb hb; /* scratch for writing heads (one at a time, on this thread) */
    struct proxy_fields fields; /* scratch: the fields of the response being written */
    struct cache_hdr *hv; /* cachepath.c: a request's headers as cache views (scratch) */
    size_t nhv;
};

struct proxy_engine {
    const char *conf_path;
    struct conf *conf; /* main thread's reference to the newest snapshot */
    struct proxy_worker *workers;
    unsigned nworkers;
    struct proxy_listen_fds *fds;
    struct event_base *base; /* main thread: signals, admin, reload */
    struct event *notify;    /* workers -> main: a worker finished (on notify_fd) */
    int notify_fd;
    _Atomic unsigned workers_done;
    pthread_mutex_t lock;     /* guards pending_conf */
    struct conf *pending_conf[64];
    _Atomic bool draining;
    uint64_t start_ms;
    uint64_t reloads, reload_failures;
    char last_reload_error[CONF_ERR_MAX];
    void *admin; /* struct evhttp * */
    struct cache *cache; /* the cache_dir, or NULL; shared by every worker (thread-safe) */
    struct proxy_collapse *collapse; /* collapse.c: misses in flight, by key */
    int access_fd;
};

static inline struct proxy_fields *
proxy_fields_begin(struct proxy_worker *w)
{
    w->fields.n = 0;
    w->fields.oom = false;
    return &w->fields;
}

/* engine.c */
int proxy_engine_run(const char *conf_path, struct conf *initial, struct proxy_listen_fds *fds);
int proxy_engine_reload(struct proxy_engine *e, char *err, size_t errlen);

/* http1.c — client side */
void proxy_conn_accept(struct proxy_worker *w, int fd, const struct sockaddr *sa, int salen,
                       unsigned listen_flags);
void proxy_conn_drain(struct proxy_conn *c); /* close when idle */
void proxy_conn_free(struct proxy_conn *c);
int proxy_bev_flush(struct bufferevent *bev);
void proxy_conn_want_flush(struct proxy_conn *c);
void proxy_worker_conn_gone(struct proxy_worker *w); /* engine.c: drain bookkeeping */
/* The worker's free lists (requests, connections, h2 streams): made at
 * worker start, emptied at exit once every connection is freed. */
int proxy_worker_pools_init(struct proxy_worker *w);
void proxy_worker_pools_fini(struct proxy_worker *w);
/* Hands c's socket to a new HTTP/2 session (c is freed): after the h2c
 * preface, or when ALPN chose "h2". c must have no request yet. */
void proxy_conn_to_h2(struct proxy_conn *c);
void proxy_req_tunnel(struct proxy_req *r, struct proxy_upconn *u); /* after a 101 (HTTP/1.1) */

/* req.c — a request through the pipeline, whichever client side made it.
 * proxy_req_new: a request on w (NULL on OOM); the owner sets sink (and
 * sink_arg), head, peer, tls, https, internal, the method and version, the
 * body framing, then calls proxy_req_dispatch once the head is complete. */
struct proxy_req *proxy_req_new(struct proxy_worker *w);
void proxy_req_free(struct proxy_req *r);
void proxy_req_dispatch(struct proxy_req *r); /* route, functions, cache, origin */
/* Request body: a piece (0, or 413 when over the route's limit), or a whole
 * evbuffer's worth (drained), and its end. Discarded once answered. */
int proxy_req_body(struct proxy_req *r, const char *at, size_t len);
int proxy_req_body_buf(struct proxy_req *r, struct evbuffer *in);
void proxy_req_body_end(struct proxy_req *r);
void proxy_req_log_done(struct proxy_req *r); /* counted and logged, once */
void proxy_chunk_head(struct evbuffer *out, size_t n); /* "<hex>\r\n" of a chunk */
void proxy_req_gone(struct proxy_req *r);     /* the client left: 499 if unanswered; freed */
/* A complete answer made by edge. */
void proxy_req_respond(struct proxy_req *r, int status, const struct proxy_hdr *h, size_t nh,
                       const char *body, size_t len);
/* Called by the upstream side. */
int proxy_resp_head(struct proxy_req *r, struct proxy_upconn *u);
void proxy_resp_interim(struct proxy_req *r, struct proxy_upconn *u); /* an origin's 1xx */
int proxy_resp_body(struct proxy_req *r, const char *at, size_t len);
void proxy_resp_end(struct proxy_req *r);
void proxy_resp_error(struct proxy_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void proxy_req_body_wanted(struct proxy_req *r); /* upstream can take more body */
bool proxy_client_congested(const struct proxy_req *r);

/* h2.c — HTTP/2 to clients (nghttp2 server sessions). Each stream is a
 * request of this same pipeline, answered through an HTTP/2 sink.
 * proxy_h2_start: serves HTTP/2 on bev (a socket, or a TLS bufferevent
 * whose ALPN chose "h2"), which it takes over with tls (the handshake's
 * state, NULL for h2c), for a client at 'peer'. Bytes already in bev's
 * input (the preface) are read first. The session counts as a client
 * connection (nconns, connections_active) but not as an accepted one: the
 * caller's accept did that. 0, or -1 (bev and tls freed). */
int proxy_h2_start(struct proxy_worker *w, struct bufferevent *bev, const char *peer,
                   struct proxy_tls *tls);
/* The h2c preface on a plain listener: 1 yes, 0 need more bytes, -1 no. */
int proxy_h2_sniff(struct evbuffer *in);
void proxy_h2_worker_drain(struct proxy_worker *w); /* GOAWAY; close once streams end */
/* After a reload: the same GOAWAY, so that clients reconnect to the new
 * certificates and SETTINGS; in-flight streams finish. */
void proxy_h2_worker_reloaded(struct proxy_worker *w);
void proxy_h2_worker_free(struct proxy_worker *w);  /* at exit, before the conns */
void proxy_h2_pool_fini(struct proxy_worker *w);    /* frees the streams of w->h2_pool */

/* upstream.c */
void proxy_upstream_start(struct proxy_req *r);
void proxy_upstream_abort(struct proxy_req *r); /* client went away */
void proxy_upstream_push_body(struct proxy_req *r); /* new body bytes in r->body */
void proxy_upstream_resume(struct proxy_req *r);    /* client drained: read more */
void proxy_worker_srvs_free(struct proxy_worker *w);
void proxy_worker_rr_rebuild(struct proxy_worker *w);
struct bufferevent *proxy_upconn_detach_bev(struct proxy_upconn *u); /* for tunnels */
/* Logs what a conf does that weakens security (tls_verify off), at start and reload. */
void proxy_upstream_conf_warn(const struct conf *c);

/* ---- a response streamed to collapsed requests while it is stored ---------------------- */

enum proxy_fill_state { FILL_RUNNING, FILL_DONE, FILL_FAILED };

/* cachepath.c, collapse.c: the cacheable response a collapse leader is
 * storing, read from its temp file while it grows by the requests that
 * waited for it, on any worker. Set before it is shared and then read
 * only, but for the atomics. References: the leader's request, the
 * collapse table's entry while the leader runs, each reader. */
struct proxy_fill {
    _Atomic unsigned refs;
    _Atomic int state;         /* enum proxy_fill_state: stored after the last avail */
    _Atomic uint64_t avail;    /* body bytes in the file */
    _Atomic unsigned nreaders; /* requests reading it (fill_read) */
    _Atomic uint64_t workers;  /* bit per worker that had readers: woken on progress */
    _Atomic bool want_flush;   /* the leader is to write out what its writer buffers */
    struct proxy_worker *leader_w;
    struct cache_obj *obj; /* the object being written (cache_writer_view) */
    int64_t length;        /* of the body; -1 when the origin did not say (chunked) */
    int64_t ttl;           /* Cache-Status ttl= */
    char *vary_names;      /* cache_writer_vary_names(), NULL when it does not vary */
    size_t vary_names_len;
};
void proxy_fill_unref(struct proxy_fill *f);

/* collapse.c */
enum proxy_collapse_outcome { COLLAPSE_STORED, COLLAPSE_PASS, COLLAPSE_FAILED };
struct proxy_collapse;
struct proxy_collapse *proxy_collapse_new(void);
void proxy_collapse_free(struct proxy_collapse *t);
/* A cacheable miss (GET, or a HEAD that only waits). 0: go to the origin
 * (as the leader, or because the key is in "pass"); 1: parked until the
 * leader is done; 2: the leader's response is being stored: *fill (a
 * reference) can be read now (fill == NULL: park instead). */
int proxy_collapse_join(struct proxy_req *r, struct proxy_fill **fill);
/* The leader's response can be read while it is stored: parked waiters
 * are resumed to read it, later misses read it at once. */
void proxy_collapse_set_fill(struct proxy_req *r, struct proxy_fill *f);
/* Wakes w for its fills (coalesced): it runs proxy_cache_fill_run. */
void proxy_worker_fill_wake(struct proxy_worker *w);
void proxy_collapse_release(struct proxy_req *r, enum proxy_collapse_outcome how);
void proxy_collapse_run_queue(struct proxy_worker *w);
void proxy_collapse_forget(struct proxy_req *r);
void proxy_collapse_worker_fini(struct proxy_worker *w);
bool proxy_refresh_claim(struct proxy_engine *e, const char *key, size_t klen);
void proxy_refresh_release(struct proxy_engine *e, const char *key, size_t klen);

/* https: the request is made for one that came over TLS (same cache key). */
int proxy_internal_request(struct proxy_worker *w, const char *text, size_t len, bool https,
                           void (*done)(void *arg), void *arg);
/* The head of r's answer goes out through its sink: the status and
 * resp_started follow from it. */
static inline void
proxy_req_head(struct proxy_req *r, const struct proxy_resp *p)
{
    r->status = p->status;
    r->resp_started = true;
    r->sink->head(r, p);
}

/* req.c: ends the request if its response is complete (r->sink->check_done) */
void proxy_req_check_done(struct proxy_req *r);

/* cachepath.c */
void proxy_cache_resume(struct proxy_req *r);
int proxy_cache_request(struct proxy_req *r);
int proxy_cache_response_head(struct proxy_req *r, struct proxy_upconn *u);
void proxy_cache_body(struct proxy_req *r, const char *at, size_t len);
int proxy_cache_response_done(struct proxy_req *r);
int proxy_cache_upstream_failed(struct proxy_req *r);
bool proxy_cache_cond(const struct proxy_req *r, const char **hdrs, size_t *len);
void proxy_cache_req_free(struct proxy_req *r);
/* Fills: the worker was woken (leaders write out, readers feed their clients) */
void proxy_cache_fill_run(struct proxy_worker *w);
/* r reads a fill and its client's output drained: add more of the file */
void proxy_cache_fill_drained(struct proxy_req *r);
/* The client of r went: true when r must run on without it (it leads a
 * fill that others read); http1.c then orphans the connection. */
bool proxy_cache_fill_orphan(struct proxy_req *r);
/* upstream.c: the leader's client is congested; true when it now reads the
 * fill from the file instead, so that the origin is read at the pace of the
 * file, not of that client (u_on_body then skips it: r->fill_self). */
bool proxy_cache_fill_decouple(struct proxy_req *r);

/* fn.c — edge functions on the request path */
enum proxy_fx_phase { FX_REQUEST, FX_ORIGIN, FX_RESPONSE };
enum proxy_fx_result { FX_PAUSED = -1, FX_CONTINUE = 0, FX_ANSWER = 1, FX_FAIL = 2 };
/* Called with the phase's result when it ended after a pause. */
typedef void (*proxy_fx_cont)(struct proxy_req *r, int result);
struct compute_route;
struct efn_host;
extern const struct efn_host proxy_efn_host;
int proxy_fx_new(struct proxy_req *r, const struct compute_route *chain);
void proxy_fx_free(struct proxy_req *r);
bool proxy_fx_has_phase(const struct proxy_req *r, enum proxy_fx_phase ph);
/* Runs a phase: FX_CONTINUE / FX_ANSWER / FX_FAIL now, or FX_PAUSED and
 * cont(r, result) later (from a KV callback or the pause timer). */
int proxy_fx_run(struct proxy_req *r, enum proxy_fx_phase ph, proxy_fx_cont cont);
/* RESPONSE phase: the status and the headers the function sees and edits. */
void proxy_fx_set_response(struct proxy_req *r, int status,
                           bool (*next)(void *ctx, size_t *pos, struct proxy_hdr *out), void *ctx);
int proxy_fx_fail_status(const struct proxy_req *r, const char **why);
void proxy_fx_answer(const struct proxy_req *r, int *status, const struct proxy_hdr **h,
                     size_t *nh, const char **body, size_t *len);
/* Header edits (msg: EFN_MSG_REQ 0, EFN_MSG_RESP 1) as an overlay: a base
 * header is dropped when hidden, then the added ones follow. */
bool proxy_fx_edited(const struct proxy_req *r, int msg);
bool proxy_fx_hides(const struct proxy_req *r, int msg, const char *name, size_t nlen);
bool proxy_fx_next_added(const struct proxy_req *r, int msg, size_t *pos, struct proxy_hdr *out);
const struct conf_origin *proxy_fx_origin(const struct proxy_req *r);
bool proxy_fx_cache_key(const struct proxy_req *r, const char **key, size_t *len);
void proxy_fx_cache_route(struct proxy_req *r); /* applies set_cache_ttl to r->cache_route */
/* req.c: the function's answer (respond()) goes out as the response */
void proxy_fx_respond(struct proxy_req *r);
void proxy_fx_respond_result(struct proxy_req *r, int result); /* ANSWER or FAIL */
/* req.c: RESPONSE phase + head for an origin response; 1 = paused */
int proxy_resp_head_fx(struct proxy_req *r, struct proxy_upconn *u);
/* upstream.c: the RESPONSE phase ended after a pause: parse on */
void proxy_upstream_fx_resumed(struct proxy_req *r);
/* the rest of the request path after the REQUEST phase / before the origin */
void proxy_req_to_origin(struct proxy_req *r);

/* Crash containment: one marker per worker in memory shared with the
 * supervisor (mapped before the first fork), naming the function a worker
 * is running. After the engine dies the supervisor counts a crash against
 * it; function_quarantine_crashes within function_quarantine_window quarantine it (by name and
 * build) in the supervisor's list, which every engine it forks inherits.
 * A reload clears the list. */
#define PROXY_FN_SLOTS 64
struct proxy_fn_mark {
    _Atomic int busy;
    int phase;
    const void *entry; /* the engine's last entry here (only compared) */
    char name[64];
    char sha[20];
    char where[160];
};
struct proxy_fn_shared {
    _Atomic int faulting; /* worker slot + 1 of the thread that took the fault signal */
    struct proxy_fn_mark w[PROXY_FN_SLOTS];
};
extern struct proxy_fn_shared *proxy_fn_shm;
int proxy_fn_shared_init(void);            /* supervisor, before the first fork */
void proxy_fn_worker_slot(unsigned id);    /* each worker thread, at start */
void proxy_fn_worker_watchdog(void);       /* each worker thread, at start: CPU watchdog */
void proxy_fn_install_fault_handler(void); /* engine */
void proxy_fn_after_crash(const struct conf *c); /* supervisor, after the engine died */
void proxy_fn_quarantine_clear(void);      /* on reload (supervisor and engine) */
/* fn.c: per-worker KV client lifecycle */
void proxy_fn_worker_conf(struct proxy_worker *w); /* after a conf swap (and at start) */
void proxy_fn_worker_fini(struct proxy_worker *w);
void proxy_fn_metrics(struct proxy_engine *e, struct evbuffer *out);

/* tls.c — TLS to clients (the SSL_CTX set comes from tls/tls.h) */
/* A bufferevent doing the server side of a handshake on fd, with the
 * certificates of the worker's current conf. Takes fd (closed on failure);
 * NULL when the connection cannot be served. */
struct bufferevent *proxy_tls_bev_new(struct proxy_worker *w, int fd, unsigned listen_flags,
                                      struct proxy_tls **out);
void proxy_tls_discard(struct proxy_tls *t); /* a connection that never started */
/* The end of a connection's (or h2 session's) TLS, before its bufferevent is
 * freed: close_notify unless it failed, counters; t is freed. */
void proxy_tls_close(struct proxy_tls *t, struct proxy_worker *w, bool failed);
/* Before the bufferevent is freed: close_notify when clean, counters. */
void proxy_tls_conn_free(struct proxy_conn *c);
/* Events of a TLS connection's bufferevent: true when consumed (handshake done). */
bool proxy_tls_event(struct proxy_conn *c, short what);
/* After the site is known: 0 go on, -1 answered (421/403: the connection was
 * not verified for this site's client certificates). */
int proxy_tls_check_site(struct proxy_req *r);
/* The verified client certificate subject for this request's site, or NULL
 * (what X-Client-Cert-Subject carries; for edge functions too). */
const char *proxy_tls_client_subject(const struct proxy_req *r);
void proxy_tls_origin_headers(const struct proxy_req *r, struct proxy_hb *b);
void proxy_tls_log_fields(const struct proxy_tls *t, struct evbuffer *b);
void proxy_tls_metrics_render(struct proxy_engine *e, struct evbuffer *out);

static inline const char *
proxy_req_scheme(const struct proxy_req *r)
{
    return r->https ? "https" : "http";
}

/* accesslog.c / metrics.c */
void proxy_access_log(struct proxy_req *r);
void proxy_stats_observe(struct proxy_worker *w, int status, uint64_t dur_us);
struct evbuffer;
void proxy_metrics_render(struct proxy_engine *e, struct evbuffer *out);
void proxy_json_str(struct evbuffer *out, const char *s, size_t n); /* escaped, no quotes */
void proxy_status_render(struct proxy_engine *e, struct evbuffer *out);
int proxy_admin_start(struct proxy_engine *e);
struct evhttp_request;
/* adminkv.c: /kv... on the admin listener; false when path is not /kv */
bool proxy_admin_kv(struct proxy_engine *e, struct evhttp_request *req, const char *path,
                    int cmd);
void proxy_admin_kv_fini(void);
void proxy_admin_stop(struct proxy_engine *e);

uint64_t proxy_now_us(void);
const char *proxy_status_reason(int status);
void proxy_reqid_make(struct proxy_worker *w, char *out, size_t n);

#endif
