/*
 * origin-sim internals: one event loop, a small HTTP/1.1 server on
 * bufferevents + llhttp, and the endpoint handlers.
 *
 * A connection parses one request at a time: on_message_complete pauses
 * llhttp, the request is dispatched (after the injected latency), and the
 * parser is resumed once the whole response is queued, so pipelined requests
 * are answered in order. Large bodies are streamed from a static table by
 * reference, refilled from the write callback when the output drains below a
 * watermark (see conn.c).
 *
 * Return convention: int functions return 0 on success and -1 on error,
 * unless stated otherwise.
 */
#ifndef EDGE_OSIM_H
#define EDGE_OSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <llhttp.h>

struct event_base;
struct event;
struct bufferevent;
struct evbuffer;
struct evconnlistener;
struct osim_items;

#define OSIM_URL_MAX 8192
#define OSIM_HEAD_MAX 16384 /* URL + header names and values */
#define OSIM_HDRS_MAX 100
#define OSIM_BODY_MAX (64u << 20) /* kept request bodies (/echo, /api) */
#define OSIM_RHDR_MAX 8192        /* extra response header lines */
#define OSIM_LISTEN_MAX 16
#define OSIM_METHODS_MAX 64

enum osim_class {
    OSIM_C_BYTES,
    OSIM_C_RESP,
    OSIM_C_STATIC,
    OSIM_C_API,
    OSIM_C_CHUNKED,
    OSIM_C_SLOW,
    OSIM_C_ECHO,
    OSIM_C_HEADERS,
    OSIM_C_STATUS,
    OSIM_C_WS,
    OSIM_C_OTHER,
    OSIM_C_COUNT, /* classes above are counted in /_stats */
    OSIM_C_STATS = OSIM_C_COUNT,
};

extern const char *const osim_class_names[OSIM_C_COUNT];

struct osim_opts {
    const char *listen[OSIM_LISTEN_MAX];
    size_t nlisten;
    uint64_t latency_ms, jitter_ms;
    bool jitter_lognormal;
    double error_rate, reset_rate;
    uint64_t seed;
    bool seed_set;
    const char *root;
    const char *static_cc;
    bool log;
};

struct osim_stats {
    uint64_t epoch; /* bumped by reset; a connection is counted once per epoch */
    uint64_t requests, connections, accepted, bytes_sent;
    uint64_t by_method[OSIM_METHODS_MAX];
    uint64_t by_class[OSIM_C_COUNT];
};

struct osim_conn;

struct osim_server {
    struct event_base *base;
    struct osim_opts opts;
    struct osim_stats stats;
    struct evconnlistener *listeners[OSIM_LISTEN_MAX];
    size_t nlisteners;
    struct osim_conn *conns; /* all open connections, freed at shutdown */
    uint64_t open_conns;
    uint64_t rng[2]; /* xorshift128+ state */
    struct osim_items *items;
    char *root_real; /* realpath(--root) or NULL */
    time_t date_at;
    char date[40]; /* cached IMF-fixdate of date_at */
};

struct osim_hdr {
    uint32_t name_off, name_len, value_off, value_len; /* into conn->head */
};

enum osim_state {
    OSIM_S_READ,    /* parsing; no response in progress */
    OSIM_S_WAIT,    /* request complete, latency timer pending */
    OSIM_S_STREAM,  /* response body being generated on write events */
    OSIM_S_CLOSING, /* flush the output, then close */
    OSIM_S_RESET,   /* flush the partial body, then close with RST */
    OSIM_S_ECHO,    /* upgraded (/ws): every byte read is written back */
};

struct osim_stream {
    uint64_t off, end; /* payload offsets in the byte sequence: [off, end) left */
    uint64_t cut;      /* stop (and reset) at this offset; == end when not resetting */
    bool chunked;
    bool chunk_pieces; /* chunked: each piece added is a chunk (no chunk_size) */
    uint64_t chunk_size, chunk_left, chunks_left;
    /* drip: [start, end) is spread evenly over drip_ms from t0, a piece
     * every OSIM_DRIP_TICK_MS (a slow origin, for streaming tests) */
    uint64_t drip_ms, start;
    struct timespec t0;
};

/* How a generated body is sent (osim_reply_paced); zero = at once, whole. */
struct osim_pace {
    uint64_t drip_ms; /* spread the body over this long */
    uint64_t cut;     /* reset the connection after this many body bytes (0: no) */
    bool chunked;     /* chunked framing (HTTP/1.1 clients) */
};

#define OSIM_CONN_MAGIC 0x6f73636eu /* "oscn" */

struct osim_conn {
    uint32_t magic;
    struct osim_server *srv;
    struct osim_conn *next, *prev;
    struct bufferevent *bev;
    struct event *timer; /* latency, close-soon and reset polling */
    llhttp_t parser;
    enum osim_state state;
    uint64_t counted_epoch;
    bool in_process, peer_eof;
    int reset_polls;

    /* the request being parsed / answered */
    uint8_t method, vmajor, vminor;
    bool keep_alive, head_req, keep_body, in_field, counted, inject_error, reset;
    int err_status;
    enum osim_class cls;
    char head[OSIM_HEAD_MAX]; /* URL at 0..url_len, then header names and values */
    size_t head_len, url_len;
    struct osim_hdr hdrs[OSIM_HDRS_MAX];
    size_t nhdrs;
    struct evbuffer *body; /* kept request body */
    struct timespec t0;

    /* the response */
    int status;
    char rhdr[OSIM_RHDR_MAX];
    size_t rhdr_len;
    bool rhdr_over;
    bool rhdr_date; /* a scripted Date line replaces the automatic one */
    struct osim_stream st;
};

/* ---- conn.c: the HTTP/1.1 server ---- */
int osim_server_listen(struct osim_server *srv, const char *hostport, char *bound, size_t boundlen);
void osim_server_close_all(struct osim_server *srv);

const char *osim_reason(int status); /* reason phrase, "Status" when unknown */

/* Request accessors. */
const char *osim_req_header(const struct osim_conn *c, const char *name, size_t *len);
void osim_req_path(const struct osim_conn *c, const char **path, size_t *plen, const char **query,
                   size_t *qlen);
const char *osim_req_method_name(const struct osim_conn *c);

/* Appends "Name: value\r\n" to the response being built (values checked for CR/LF). */
void osim_resp_header(struct osim_conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An interim (1xx) response head with the given header lines ("Name: v\r\n"
 * each, may be empty), queued before the final answer. */
void osim_reply_interim(struct osim_conn *c, int status, const char *lines);
/* Closes the connection without answering (an origin that drops requests). */
void osim_reply_drop(struct osim_conn *c);

/* Complete answers. A HEAD request gets the same head without the body;
 * 1xx/204/304 carry neither body nor Content-Length. ctype may be NULL. */
void osim_reply(struct osim_conn *c, int status, const char *ctype, const void *body, size_t len);
void osim_reply_text(struct osim_conn *c, int status, const char *text);
/* Moves the content of buf (left empty). */
void osim_reply_evbuf(struct osim_conn *c, int status, const char *ctype, struct evbuffer *buf);
/* len bytes of the deterministic sequence starting at off, streamed. */
void osim_reply_bytes(struct osim_conn *c, int status, const char *ctype, uint64_t off,
                      uint64_t len);
/* n chunks of size bytes each (sequence bytes 0..n*size), chunked framing. */
/* osim_reply_bytes, paced: dripping, cut, or chunked (see struct osim_pace). */
void osim_reply_paced(struct osim_conn *c, int status, const char *ctype, uint64_t off,
                      uint64_t len, const struct osim_pace *pace);
void osim_reply_chunked(struct osim_conn *c, int status, const char *ctype, uint64_t n,
                        uint64_t size);
/* len bytes of fd from off (sendfile); takes ownership of fd. */
void osim_reply_file(struct osim_conn *c, int status, const char *ctype, int fd, uint64_t off,
                     uint64_t len);

/* ---- routes.c ---- */
enum osim_class osim_classify(const char *path, size_t len);
uint64_t osim_route_delay_ms(struct osim_conn *c); /* /slow?ms=, /resp?delay= */
void osim_route(struct osim_conn *c);              /* answers the request */
void osim_stats_reply(struct osim_conn *c);        /* /_stats and /_stats/reset */
/* conn.c: answers an Upgrade: websocket request with 101 and echoes from then on. */
void osim_upgrade_echo(struct osim_conn *c);

/* ---- items.c ---- */
struct osim_items *osim_items_new(void);
void osim_items_free(struct osim_items *it);
void osim_items_handle(struct osim_conn *c, const char *path, size_t plen, const char *query,
                       size_t qlen);

/* ---- util.c ---- */
void osim_rng_seed(struct osim_server *srv, uint64_t seed);
uint64_t osim_rng_next(struct osim_server *srv);
double osim_rng_unit(struct osim_server *srv); /* [0, 1) */
double osim_rng_normal(struct osim_server *srv);

const char *osim_date_now(struct osim_server *srv); /* cached per second */
void osim_http_date(time_t t, char *buf, size_t n);
int osim_parse_http_date(const char *s, size_t len, time_t *out);

/* Percent-decodes src into dst (cap bytes); '+' becomes ' ' when plus is set.
 * Returns the decoded length or -1 (bad escape or too long). */
long osim_pct_decode(const char *src, size_t len, char *dst, size_t cap, bool plus);
/* Finds name in a query string and decodes its value into dst (NUL-terminated).
 * 1 found, 0 absent, -1 undecodable or too long. */
int osim_query_get(const char *q, size_t qlen, const char *name, char *dst, size_t cap,
                   size_t *outlen);
/* The same for repeated parameters: looks from *pos on and moves *pos past
 * the one found. Start with *pos = 0. */
int osim_query_next(const char *q, size_t qlen, size_t *pos, const char *name, char *dst,
                    size_t cap, size_t *outlen);
int osim_parse_u64(const char *s, size_t len, uint64_t *out);
bool osim_ieq(const char *a, size_t alen, const char *b); /* case-insensitive, b NUL-terminated */
/* RFC 9110 If-None-Match: weak comparison against a list or '*'. */
bool osim_etag_list_match(const char *list, size_t len, const char *etag, size_t elen);
/* Strong comparison for If-Match (list or '*'; weak tags never match). */
bool osim_etag_list_match_strong(const char *list, size_t len, const char *etag, size_t elen);

/* ---- main.c ---- */
extern const uint8_t *osim_table; /* OSIM_BYTES_PERIOD + 64 KiB bytes of the sequence */

#endif /* EDGE_OSIM_H */
