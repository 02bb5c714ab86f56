/*
 * HTTP/2 <-> HTTP/1.1 message mapping for the h2 client side (proxy/h2.c).
 * Pure functions over (ptr, len) views and evbuffers, without nghttp2, so
 * that tests/unit/proxy_h2_test.c can drive them directly.
 *
 * An h2 stream enters the pipeline as an HTTP/1.1 request written into a
 * bufferevent pair (see ARCHITECTURE.md "HTTP/2 to clients"): this file
 * turns the stream's header fields into that request head, and the
 * pipeline's response head back into h2 fields.
 *
 * Return convention: int functions give 0, or the HTTP status the stream is
 * answered with instead (400, 414, 431); proxy_h2_preface is tri-state.
 */
#ifndef EDGE_PROXY_H2_H
#define EDGE_PROXY_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/internal.h"

struct evbuffer;

/* The client connection preface of RFC 9113 3.4 (prior knowledge). */
#define PROXY_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PROXY_H2_PREFACE_LEN 24

/* 1: p starts with the whole preface; 0: p is a proper prefix of it (wait
 * for more bytes); -1: not HTTP/2 (an HTTP/1.x client). */
int proxy_h2_preface(const void *p, size_t n);

/* One request head under construction, fed field by field (pseudo-header
 * fields first, as nghttp2 guarantees). Limits are those of HTTP/1.1:
 * max_head counts the target and every name and value (as head.c does),
 * max_headers the fields of the head written (with Host, the joined Cookie
 * and Transfer-Encoding), max_uri the :path. */
struct proxy_h2_req {
    size_t max_head, max_headers, max_uri;
    struct evbuffer *fields; /* "name: value\r\n" of the regular fields */
    struct evbuffer *cookie; /* crumbs joined with "; " (RFC 9113 8.2.3) */
    char method[24];
    size_t method_len;
    char authority[256];
    size_t authority_len;
    char *path; /* malloc'd, path_len bytes */
    size_t path_len;
    size_t head_bytes, nfields;
    int64_t content_length; /* -1 when absent */
    bool has_host;
    bool head_method; /* HEAD: the response has no body */
    bool chunked;     /* the body goes with chunked framing (no content-length) */
    int status;       /* first refusal (400 / 414 / 431), 0 while fine */
};

int proxy_h2_req_init(struct proxy_h2_req *q, size_t max_head, size_t max_headers, size_t max_uri);
/* Empties q for another request, keeping its buffers (a stream's free list). */
void proxy_h2_req_reset(struct proxy_h2_req *q, size_t max_head, size_t max_headers, size_t max_uri);
void proxy_h2_req_fini(struct proxy_h2_req *q);
/* One field as nghttp2 delivers it (names lower-case, validated). Once a
 * field is refused the others are ignored and the same status returned. */
int proxy_h2_req_field(struct proxy_h2_req *q, const char *name, size_t nlen, const char *value,
                       size_t vlen);
/* Writes the HTTP/1.1 request head to out. end_stream: the HEADERS frame
 * ended the stream (no body). A body without content-length gets
 * "Transfer-Encoding: chunked" and q->chunked is set. */
int proxy_h2_req_finish(struct proxy_h2_req *q, bool end_stream, struct evbuffer *out);
/* Frames one piece of request body for the head written by finish. */
void proxy_h2_req_body(const struct proxy_h2_req *q, struct evbuffer *out, const void *p, size_t n);
/* The end of the request body. */
void proxy_h2_req_end(const struct proxy_h2_req *q, struct evbuffer *out);

/* The response head's fields for HEADERS: hop-by-hop ones (and those
 * Connection names) are left out; names are lower-cased in place in the
 * head's buffer, as h2 requires. Returns how many were written to out
 * (at most cap). */
size_t proxy_h2_resp_fields(struct proxy_head *h, struct proxy_hdr *out, size_t cap);

/* Counting events in a fixed window: true when this event is the
 * (max + 1)th within window_ms of the window's first one. */
struct proxy_h2_ratelim {
    uint64_t start_ms;
    uint64_t count;
};
bool proxy_h2_ratelim_over(struct proxy_h2_ratelim *rl, uint64_t now_ms, uint64_t max,
                           uint64_t window_ms);

#endif /* EDGE_PROXY_H2_H */
