/*
 * HTTP/2 message pieces for the h2 client side (proxy/h2.c). Pure
 * functions over (ptr, len) views, without nghttp2, so that
 * tests/unit/proxy_h2_test.c can drive them directly.
 *
 * An h2 stream is a request of the pipeline (see ARCHITECTURE.md "HTTP/2 to
 * clients"): this file checks the stream's header fields and writes them
 * into the request's head (proxy/head.c) as the HTTP/1.1 parser would
 * have, and says which response fields HTTP/2 may carry.
 *
 * Return convention: int functions give 0, or the HTTP status the stream is
 * answered with instead (400, 414, 431, 503); proxy_h2_preface is tri-state.
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

/* One request's fields, fed as nghttp2 delivers them (pseudo-header fields
 * first), written into 'head': :path is the target (:authority for
 * CONNECT), :authority becomes a Host field (a host field is then
 * ignored), cookie crumbs become one Cookie field (RFC 9113 8.2.3), TE,
 * Expect and connection-specific fields are dropped. Every byte is checked
 * again although nghttp2 validated it: the origin gets these fields as
 * HTTP/1.1, where CR, LF, NUL or a space in the wrong place would be
 * request smuggling. The head's limits are those of HTTP/1.1: its size
 * (max_header_size: target, names and values, 431), its fields
 * (max_headers, 431) and max_uri (414). */
struct proxy_h2_req {
    struct proxy_head *head;
    struct evbuffer *cookie; /* crumbs joined with "; " until finish */
    size_t max_uri;
    int method;             /* llhttp_method, -1 until :method */
    int64_t content_length; /* -1 when absent */
    bool has_path, has_authority;
    int status; /* first refusal (400 / 414 / 431 / 503), 0 while fine */
};

/* head: an initialised (empty) head; the request keeps it. */
int proxy_h2_req_init(struct proxy_h2_req *q, struct proxy_head *head, size_t max_uri);
/* Empties q for another request on 'head', keeping its buffer. */
void proxy_h2_req_reset(struct proxy_h2_req *q, struct proxy_head *head, size_t max_uri);
void proxy_h2_req_fini(struct proxy_h2_req *q);
/* One field (names lower-case, as nghttp2 checked). Once a field is
 * refused the others are ignored and the same status returned. */
int proxy_h2_req_field(struct proxy_h2_req *q, const char *name, size_t nlen, const char *value,
                       size_t vlen);
/* The header block is complete: the cookie, and the pseudo-fields checked. */
int proxy_h2_req_finish(struct proxy_h2_req *q);

/* An HTTP method token as llhttp numbers it (HTTP methods only, not PRI
 * nor RTSP's), or -1: the request is refused as HTTP/1.1's parser would. */
int proxy_h2_method(const char *m, size_t n);

/* May a response carry this field over HTTP/2? Not the connection-specific
 * ones (RFC 9113 8.2.2) nor the other hop-by-hop ones. */
bool proxy_h2_resp_field_ok(const char *name, size_t nlen);

/* Counting events in a fixed window: true when this event is the
 * (max + 1)th within window_ms of the window's first one. */
struct proxy_h2_ratelim {
    uint64_t start_ms;
    uint64_t count;
};
bool proxy_h2_ratelim_over(struct proxy_h2_ratelim *rl, uint64_t now_ms, uint64_t max,
                           uint64_t window_ms);

#endif /* EDGE_PROXY_H2_H */
