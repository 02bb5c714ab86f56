/*
 * HTTP/2 to clients: one nghttp2 server session per connection; each
 * stream is a request of the pipeline (req.c), a peer of the HTTP/1.1
 * connection's requests:
 *
 *   client ══ h2 frames ══ proxy_h2 (nghttp2) ── stream ── struct proxy_req ── pipeline
 *
 * A stream's header fields are checked and written into its request head
 * (h2msg.c) as llhttp would for HTTP/1.1; its DATA frames feed the
 * request's body; the pipeline answers through the stream's sink (h2_sink
 * below): the head becomes HEADERS (connection-specific fields left out),
 * the body a queue of pieces (bytes, memory-tier references, file ranges
 * read with pread) that a data provider hands to nghttp2, deferring while
 * the queue is empty.
 *
 * Flow control and backpressure. Downloads: nghttp2 is asked for frames
 * only while the socket's output holds less than H2_OUT_HIGH; the sink is
 * congested (the pipeline stops reading the origin, as for a slow HTTP/1.1
 * client) while more than H2_RESP_HIGH bytes of the stream wait for
 * nghttp2, and the origin is read again once they drain. Uploads: window
 * updates are ours (no auto window update): DATA is given back to flow
 * control only while the request's body waiting for the origin is under
 * H2_BODY_HIGH, so a client can have at most a window's worth buffered
 * here. send_timeout (a stream whose window stays shut) and
 * client_body_timeout (a body that stops coming) are per stream, as they
 * are per connection for HTTP/1.1.
 *
 * Floods (CVE-2023-44487 and kin): streams start only after the frames of
 * one read are processed, so HEADERS + RST_STREAM in one read never reach
 * the pipeline; every RST_STREAM received (and every stream refused over
 * http2_max_concurrent_streams) is counted per connection in a fixed window
 * (http2_max_resets COUNT/WINDOW); over it the session ends with
 * GOAWAY(ENHANCE_YOUR_CALM). nghttp2 itself bounds SETTINGS/PING floods and
 * CONTINUATION runs; header lists are bounded by max_header_size and
 * max_headers as in HTTP/1.1.
 *
 * Lifetimes: everything runs on the worker's thread. nghttp2 is called only
 * from this file's libevent callbacks and from the sink (submit and resume
 * calls, never mem_recv/mem_send); nghttp2 callbacks only set flags and
 * move bytes, and "h2_pump" acts on them afterwards (starts requests,
 * feeds bodies, gives back window, resumes origins), so the pipeline never
 * runs inside nghttp2. A request ends on its own once answered (the sink's
 * check_done frees it; the stream sends what is queued), or when its
 * stream closes first (a reset, the session's end): logged as 499 when
 * unanswered, its origin fetch cancelled.
 */
#include "proxy/h2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#define PROXY_H2_MAGIC 0x48325365u  /* "H2Se" */
#define H2_STREAM_MAGIC 0x48325374u /* "H2St" */

#define H2_STREAM_WINDOW (256 * 1024) /* request body in flight per stream (our SETTINGS) */
#define H2_CONN_WINDOW (1024 * 1024)  /* ... and per connection */
#define H2_OUT_HIGH (64 * 1024)       /* socket output: no more frames above this */
#define H2_RESP_HIGH (64 * 1024)      /* response bytes waiting for nghttp2: congested above */
#define H2_BODY_HIGH (64 * 1024)      /* request body waiting for the origin: window held back */
#define H2_REQ_HEAD_MIN 2048          /* the request head starts here, grows to max_header_size */
#define H2_NV_LOCAL 64                /* response fields on the stack; more are malloc'd */
#define H2_PIECES 40                  /* a response body in pieces (multipart: 2 per range) */
#define H2_FLOOD_LINGER_MS 1000       /* a flooder gets this long to read its GOAWAY */

/* A piece of a response body: 'len' bytes of the stream's 'out' buffer
 * (fd < 0), or of a file from 'off' (fd owned by the piece). */
struct h2_piece {
    int fd;
    uint64_t off, len;
};

struct h2_stream {
    uint32_t magic;
    struct proxy_h2 *s;
    int32_t id;
    TAILQ_ENTRY(h2_stream) link;
    struct proxy_h2_req q;  /* the fields, checked into 'head' */
    struct proxy_head head; /* the request head (the request's r->head) */
    struct proxy_req *req;  /* the pipeline's request; NULL before start and once it ended */
    struct evbuffer *in;    /* request DATA not yet handed to the pipeline */
    struct evbuffer *out;   /* response bytes not yet taken by nghttp2 */
    struct h2_piece piece[H2_PIECES]; /* the response body, in order: a ring */
    unsigned p0, np;
    struct event *timer;  /* client_body_timeout, send_timeout */
    uint64_t unconsumed;  /* request DATA not yet given back to flow control */
    uint64_t last_in_ms;  /* the last request DATA (client_body_timeout) */
    uint64_t last_out_ms; /* the last response bytes nghttp2 took (send_timeout) */
    int refused;          /* the fields were refused: answer this status (400/414/431) */
    bool ready;           /* head complete: start after this read's frames */
    bool started;         /* the request was made */
    bool req_done;        /* END_STREAM from the client */
    bool end_given;       /* ... and the pipeline was told */
    bool head_sent;       /* response HEADERS submitted */
    bool resp_done;       /* the whole response is queued */
    bool deferred;        /* the data provider waits for more */
    bool want_resume;     /* room in 'out' again: read the origin */
    bool want_rst;        /* answered before the request ended: RST_STREAM(NO_ERROR) */
    bool failed;          /* RST_STREAM submitted: nothing more is sent */
};

struct proxy_h2 {
    uint32_t magic;
    struct proxy_worker *w;
    struct bufferevent *bev;
    nghttp2_session *ng;
    struct event *defer; /* runs h2_pump (or the free) from the loop */
    struct event *idle;  /* no stream for keepalive_timeout; the flood linger */
    LIST_ENTRY(proxy_h2) link;
    TAILQ_HEAD(, h2_stream) streams;
    size_t nstreams;
    uint64_t conn_unconsumed; /* DATA of freed streams, for the connection window */
    struct proxy_h2_ratelim resets;
    uint64_t max_resets, reset_window_ms;
    struct proxy_tls *tls; /* the TLS handshake (ALPN h2), NULL for h2c; the requests see it */
    bool goaway;     /* graceful GOAWAY submitted */
    bool flooded;    /* over the reset budget: terminate */
    bool terminated; /* GOAWAY(ENHANCE_YOUR_CALM) submitted */
    bool closing;    /* no more nghttp2 calls: flushing, then free */
    bool want_free;
    bool dead;
    bool io_failed; /* a socket or TLS error: no close_notify */
    bool https;     /* over TLS (ALPN h2): the streams' requests are https */
    char peer[64];
};

static void h2_pump(struct proxy_h2 *s);
static void h2_close(struct proxy_h2 *s);
static void st_timer_cb(evutil_socket_t fd, short what, void *arg);

static void
h2_schedule(struct proxy_h2 *s)
{
    if (!s->dead)
        event_active(s->defer, EV_TIMEOUT, 0);
}

static void
timer_ms(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    event_add(ev, &tv);
}

int
proxy_h2_sniff(struct evbuffer *in)
{
    unsigned char buf[PROXY_H2_PREFACE_LEN];
    ev_ssize_t n = evbuffer_copyout(in, buf, sizeof(buf));

    return n <= 0 ? 0 : proxy_h2_preface(buf, (size_t)n);
}

/* ---- stream objects --------------------------------------------------------------------- */

static struct h2_stream *
st_of(struct proxy_h2 *s, int32_t id)
{
    struct h2_stream *st = id > 0 ? nghttp2_session_get_stream_user_data(s->ng, id) : NULL;

    if (st != NULL)
        CHECK_MAGIC(st, H2_STREAM_MAGIC);
    return st;
}

/* Frees a stream object and its buffers for good. */
static void
st_destroy(void *arg)
{
    struct h2_stream *st = arg;

    proxy_h2_req_fini(&st->q);
    proxy_head_fini(&st->head);
    if (st->in != NULL)
        evbuffer_free(st->in);
    if (st->out != NULL)
        evbuffer_free(st->out);
    if (st->timer != NULL)
        event_free(st->timer);
    free(st);
}

/* A stream object with empty buffers: from the worker's free list, or new.
 * The request head starts small and grows to max_header_size. NULL when
 * out of memory. */
static struct h2_stream *
st_get(struct proxy_h2 *s)
{
    const struct conf_limits *lim = &s->w->conf->limits;
    struct h2_stream *st = proxy_pool_get(&s->w->h2_pool);

    if (st != NULL) {
        struct proxy_h2_req q = st->q;
        struct proxy_head head = st->head;
        struct evbuffer *in = st->in, *out = st->out;
        struct event *timer = st->timer;

        memset(st, 0, sizeof(*st));
        st->q = q;
        st->head = head;
        st->in = in;
        st->out = out;
        st->timer = timer;
        proxy_head_reset(&st->head);
        st->head.max_headers = lim->max_headers;
        if (st->head.cap != lim->max_header_size) {
            proxy_head_fini(&st->head);
            if (proxy_head_init_grow(&st->head, H2_REQ_HEAD_MIN, lim->max_header_size,
                                     lim->max_headers) < 0) {
                st_destroy(st);
                return NULL;
            }
        }
    } else {
        if ((st = calloc(1, sizeof(*st))) == NULL)
            return NULL;
        if (proxy_head_init_grow(&st->head, H2_REQ_HEAD_MIN, lim->max_header_size,
                                 lim->max_headers) < 0 ||
            proxy_h2_req_init(&st->q, &st->head, lim->max_uri_length) < 0 ||
            (st->in = evbuffer_new()) == NULL || (st->out = evbuffer_new()) == NULL ||
            (st->timer = evtimer_new(s->w->base, st_timer_cb, st)) == NULL) {
            st_destroy(st);
            return NULL;
        }
    }
    proxy_h2_req_reset(&st->q, &st->head, lim->max_uri_length);
    return st;
}

/* Drops what the response had queued (fds closed, references released). */
static void
st_drop_pieces(struct h2_stream *st)
{
    for (unsigned i = 0; i < st->np; i++) {
        struct h2_piece *p = &st->piece[(st->p0 + i) % H2_PIECES];
        if (p->fd >= 0)
            close(p->fd);
    }
    st->np = 0;
    st->p0 = 0;
    evbuffer_drain(st->out, evbuffer_get_length(st->out));
}

static void
st_free(struct h2_stream *st)
{
    struct proxy_h2 *s = st->s;
    struct proxy_req *r = st->req;

    CHECK_MAGIC(st, H2_STREAM_MAGIC);
    TAILQ_REMOVE(&s->streams, st, link);
    s->nstreams--;
    if (r != NULL) {
        st->req = NULL;
        proxy_req_gone(r); /* a reset, or the session's end: 499 when unanswered */
    }
    s->conn_unconsumed += st->unconsumed; /* the connection window still counts them */
    event_del(st->timer);
    st_drop_pieces(st);
    evbuffer_drain(st->in, evbuffer_get_length(st->in));
    st->magic = PROXY_DEAD_MAGIC;
    if (!proxy_pool_put(&s->w->h2_pool, st))
        st_destroy(st);
}

void
proxy_h2_pool_fini(struct proxy_worker *w)
{
    proxy_pool_fini(&w->h2_pool, st_destroy);
}

/* RST_STREAM(INTERNAL_ERROR): the answer cannot be completed (or never
 * started). The request, if any, ends when nghttp2 closes the stream. */
static void
st_fail(struct h2_stream *st)
{
    if (st->failed)
        return;
    st->failed = true;
    st_drop_pieces(st);
    nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    h2_schedule(st->s);
}

/* Something for nghttp2 to send: resume the data provider, pump from the loop. */
static void
st_more(struct h2_stream *st)
{
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(st->s->ng, st->id);
    }
    h2_schedule(st->s);
}

/* ---- the response: data provider -------------------------------------------------------- */

static ssize_t
st_data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
             nghttp2_data_source *src, void *ud)
{
    struct h2_stream *st = src->ptr;
    size_t n = 0;

    (void)ng;
    (void)id;
    (void)ud;
    CHECK_MAGIC(st, H2_STREAM_MAGIC);
    while (n < length && st->np > 0) {
        struct h2_piece *p = &st->piece[st->p0];
        size_t want = length - n < p->len ? length - n : (size_t)p->len;
        ssize_t k;

        if (p->fd < 0) {
            k = evbuffer_remove(st->out, buf + n, want);
        } else {
            do
                k = pread(p->fd, buf + n, want, (off_t)p->off);
            while (k < 0 && errno == EINTR);
            if (k == 0)
                errno = EIO; /* the file is shorter than its object said */
        }
        if (k <= 0) {
            log_warn("h2 %s stream %d: reading the answer's body: %s", st->s->peer, st->id,
                     strerror(errno));
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
        }
        p->off += (uint64_t)k;
        p->len -= (uint64_t)k;
        n += (size_t)k;
        if (p->len == 0) {
            if (p->fd >= 0)
                close(p->fd);
            st->p0 = (st->p0 + 1) % H2_PIECES;
            st->np--;
        }
    }
    if (n > 0)
        st->last_out_ms = proxy_now_ms();
    if (st->np == 0 && st->resp_done) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = true; /* resumed by st_more when the pipeline queues more */
        return NGHTTP2_ERR_DEFERRED;
    }
    if (st->req != NULL && (st->req->up != NULL || st->req->fill_read) &&
        evbuffer_get_length(st->out) <= H2_RESP_HIGH / 4)
        st->want_resume = true; /* the origin (or a cache file being written) waits for us */
    return (ssize_t)n;
}

/* Appends a piece: bytes already added to 'out' merge with a last piece of
 * bytes. false when the ring is full (a multipart answer of too many parts
 * from a file; the caller aborts). */
static bool
st_piece(struct h2_stream *st, int fd, uint64_t off, uint64_t len)
{
    struct h2_piece *last = st->np > 0 ? &st->piece[(st->p0 + st->np - 1) % H2_PIECES] : NULL;

    if (st->np == 0)
        st->last_out_ms = proxy_now_ms(); /* send_timeout counts from here */
    if (fd < 0 && last != NULL && last->fd < 0) {
        last->len += len;
        return true;
    }
    if (st->np == H2_PIECES)
        return false;
    st->piece[(st->p0 + st->np) % H2_PIECES] = (struct h2_piece){fd, off, len};
    st->np++;
    return true;
}

/* ---- the sink: the pipeline's answer on this stream ----------------------------------------- */

static struct h2_stream *
st_of_req(const struct proxy_req *r)
{
    struct h2_stream *st = r->sink_arg;

    CHECK_MAGIC(st, H2_STREAM_MAGIC);
    return st;
}

/* HEADERS: :status and the fields HTTP/2 may carry (nghttp2 copies them
 * and lower-cases the names); a data provider unless nothing follows. */
static void
h2s_head(struct proxy_req *r, const struct proxy_resp *p)
{
    struct h2_stream *st = st_of_req(r);
    nghttp2_nv local[H2_NV_LOCAL], *nv = local;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = st_data_read};
    bool nodata = p->nobody || (p->complete && p->body_len == 0);
    char code[4];
    size_t n = 0;
    int rc;

    if (st->failed)
        return;
    if (p->nf + 1 > H2_NV_LOCAL && (nv = malloc((p->nf + 1) * sizeof(*nv))) == NULL) {
        st_fail(st);
        return;
    }
    code[0] = (char)('0' + p->status / 100 % 10);
    code[1] = (char)('0' + p->status / 10 % 10);
    code[2] = (char)('0' + p->status % 10);
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < p->nf; i++)
        if (proxy_h2_resp_field_ok(p->f[i].name, p->f[i].nlen))
            nv[n++] = (nghttp2_nv){(uint8_t *)p->f[i].name, (uint8_t *)p->f[i].value, p->f[i].nlen,
                                   p->f[i].vlen, NGHTTP2_NV_FLAG_NONE};
    if (p->complete && !nodata) {
        evbuffer_add(st->out, p->body, p->body_len);
        st_piece(st, -1, 0, p->body_len);
    }
    if (p->complete)
        st->resp_done = true;
    rc = nghttp2_submit_response(st->s->ng, st->id, nv, n, nodata ? NULL : &prd);
    if (nv != local)
        free(nv);
    if (rc != 0) {
        st_fail(st);
        return;
    }
    st->head_sent = true;
    h2_schedule(st->s);
}

static void
h2s_data(struct proxy_req *r, const void *p, size_t n)
{
    struct h2_stream *st = st_of_req(r);

    if (st->failed || n == 0)
        return;
    evbuffer_add(st->out, p, n);
    st_piece(st, -1, 0, n);
    st_more(st);
}

static bool
h2s_data_ref(struct proxy_req *r, const void *p, size_t n,
             void (*unref)(const void *p, size_t n, void *arg), void *arg)
{
    struct h2_stream *st = st_of_req(r);

    if (st->failed || evbuffer_add_reference(st->out, p, n, unref, arg) < 0) {
        unref(p, n, arg);
        return false;
    }
    st_piece(st, -1, 0, n);
    st_more(st);
    return true;
}

/* Read with pread as frames go out: a file's pages are not mapped (as an
 * evbuffer_add_file into a buffer that does not drain to a socket would)
 * and nothing is buffered ahead of the window. */
static bool
h2s_data_file(struct proxy_req *r, int fd, uint64_t off, uint64_t len)
{
    struct h2_stream *st = st_of_req(r);
    int dfd;

    if (st->failed || (dfd = dup(fd)) < 0)
        return false;
    if (!st_piece(st, dfd, off, len)) {
        close(dfd);
        return false;
    }
    st_more(st);
    return true;
}

static void
h2s_end(struct proxy_req *r)
{
    struct h2_stream *st = st_of_req(r);

    st->resp_done = true;
    if (!st->failed)
        st_more(st);
}

static void
h2s_abort(struct proxy_req *r)
{
    st_fail(st_of_req(r));
}

static bool
h2s_congested(const struct proxy_req *r)
{
    const struct h2_stream *st = st_of_req(r);
    uint64_t queued = evbuffer_get_length(st->out);

    /* file pieces count too (a cache file being written is read in pieces
     * while the stream is not congested), and the ring must keep room */
    if (st->np + 2 >= H2_PIECES)
        return true;
    for (unsigned i = 0; i < st->np && queued <= H2_RESP_HIGH; i++) {
        const struct h2_piece *p = &st->piece[(st->p0 + i) % H2_PIECES];
        if (p->fd >= 0)
            queued += p->len;
    }
    return queued > H2_RESP_HIGH;
}

static void
h2s_cont(struct proxy_req *r)
{
    (void)r; /* Expect is not passed on: the body streams at once */
}

static void
h2s_body_wanted(struct proxy_req *r)
{
    h2_schedule(st_of_req(r)->s); /* st_window gives back what the origin took */
}

/* The answer is complete (all of it queued, or cut): counted, logged, and
 * the request goes once the origin side has let go of it. The stream
 * sends what is queued on its own. */
static void
h2s_check_done(struct proxy_req *r)
{
    struct h2_stream *st = st_of_req(r);

    if (!r->resp_done)
        return;
    proxy_req_log_done(r);
    if (r->up != NULL || r->dnsq != NULL)
        return; /* the upstream side still owns it; it calls back */
    st->req = NULL;
    proxy_req_free(r);
    h2_schedule(st->s); /* window for a body nobody reads any more */
}

/* An origin's interim answer: a HEADERS frame without END_STREAM before
 * the response's (RFC 9113 8.1). */
static void
h2s_interim(struct proxy_req *r, int status, const struct proxy_hdr *f, size_t nf)
{
    struct h2_stream *st = st_of_req(r);
    nghttp2_nv nv[H2_NV_LOCAL];
    char code[4];
    size_t n = 0;

    if (st->failed || st->head_sent)
        return;
    code[0] = (char)('0' + status / 100 % 10);
    code[1] = (char)('0' + status / 10 % 10);
    code[2] = (char)('0' + status % 10);
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < nf && n < H2_NV_LOCAL; i++)
        if (proxy_h2_resp_field_ok(f[i].name, f[i].nlen))
            nv[n++] = (nghttp2_nv){(uint8_t *)f[i].name, (uint8_t *)f[i].value, f[i].nlen,
                                   f[i].vlen, NGHTTP2_NV_FLAG_NONE};
    if (nghttp2_submit_headers(st->s->ng, NGHTTP2_FLAG_NONE, st->id, NULL, nv, n, NULL) == 0)
        h2_schedule(st->s); /* nghttp2 copied the fields */
}

static const struct proxy_sink h2_sink = {
    .head = h2s_head,
    .data = h2s_data,
    .data_ref = h2s_data_ref,
    .data_file = h2s_data_file,
    .end = h2s_end,
    .abort = h2s_abort,
    .congested = h2s_congested,
    .cont = h2s_cont,
    .interim = h2s_interim,
    .body_wanted = h2s_body_wanted,
    .check_done = h2s_check_done,
};

/* ---- the request: start, body, timeouts ----------------------------------------------------- */

static const char *
refusal_text(int status)
{
    switch (status) {
    case 431: return "request header block is over the limit";
    case 414: return "request URI is over the limit";
    case 413: return "request body is over the limit";
    case 503: return "out of memory";
    default: return "malformed request";
    }
}

/* Answers the request instead of the pipeline (fields refused, a body
 * over the limit or too slow), as http1.c's conn_fail does; the rest of
 * the request body is not wanted. */
static void
st_refuse(struct h2_stream *st, int status, const char *why)
{
    struct proxy_req *r = st->req;

    if (r->request_id[0] == '\0')
        proxy_reqid_make(r->w, r->request_id, sizeof(r->request_id));
    if (r->method_name == NULL)
        r->method_name = "-";
    r->body_done = true;
    if (r->up != NULL || r->dnsq != NULL)
        proxy_upstream_abort(r);
    if (!r->resp_started) {
        proxy_resp_error(r, status, "%s", why);
    } else {
        r->resp_done = true;
        r->sink->abort(r);
        proxy_req_check_done(r);
    }
}

static void
st_start(struct h2_stream *st)
{
    struct proxy_h2 *s = st->s;
    struct proxy_req *r;

    st->ready = false;
    if ((r = proxy_req_new(s->w)) == NULL) {
        st_fail(st);
        return;
    }
    st->req = r;
    st->started = true;
    st->last_in_ms = proxy_now_ms();
    r->sink = &h2_sink;
    r->sink_arg = st;
    r->head = &st->head;
    r->peer = s->peer;
    r->tls = s->tls;
    r->https = s->https;
    r->http_major = 2;
    r->keepalive = true; /* the session decides about the connection */
    if (st->refused) {
        if (st->q.method >= 0)
            r->method = (uint8_t)st->q.method;
        r->method_name = st->q.method >= 0 ? llhttp_method_name(st->q.method) : NULL;
        st_refuse(st, st->refused, refusal_text(st->refused));
        return;
    }
    r->method = (uint8_t)st->q.method;
    r->method_name = llhttp_method_name(st->q.method);
    r->content_length = st->q.content_length;
    /* a body of unknown length goes to the origin chunked */
    r->chunked = !st->req_done && st->q.content_length < 0;
    proxy_req_dispatch(r); /* r may be gone: answered at once */
}

/* Hands the request DATA received so far, and its end, to the pipeline. */
static void
st_feed(struct h2_stream *st)
{
    struct proxy_req *r = st->req;
    int rc;

    if (evbuffer_get_length(st->in) > 0) {
        if ((rc = proxy_req_body_buf(r, st->in)) != 0) {
            evbuffer_drain(st->in, evbuffer_get_length(st->in));
            st->end_given = true; /* nothing more of this body is wanted */
            st_refuse(st, rc, refusal_text(rc));
            return;
        }
        if ((r = st->req) == NULL) /* answered (and ended) meanwhile */
            return;
    }
    if (st->req_done && !st->end_given) {
        st->end_given = true;
        proxy_req_body_end(r);
    }
}

/* Gives request DATA back to flow control once the pipeline has taken it
 * (or nobody wants it any more). */
static bool
st_window(struct h2_stream *st)
{
    struct proxy_req *r = st->req;

    if (st->unconsumed == 0 || (!st->started && !st->failed))
        return false;
    if (r != NULL && !r->resp_done && r->body != NULL && !r->fx_body_wait &&
        evbuffer_get_length(r->body) + evbuffer_get_length(st->in) > H2_BODY_HIGH)
        return false;
    nghttp2_session_consume(st->s->ng, st->id, st->unconsumed);
    st->unconsumed = 0;
    st->last_in_ms = proxy_now_ms(); /* the client may send again from now */
    return true;
}

/* What the stream waits for from its client: more body (client_body_timeout)
 * while the window is open and the answer is not complete, or taking
 * queued bytes (send_timeout). */
static bool
st_reading(const struct h2_stream *st)
{
    return st->req != NULL && !st->req->resp_done && !st->req_done && !st->failed &&
           st->unconsumed == 0;
}

static bool
st_writing(const struct h2_stream *st)
{
    return st->np > 0 && !st->failed;
}

static void
st_timer_arm(struct h2_stream *st)
{
    const struct conf_limits *lim = &st->s->w->conf->limits;
    uint64_t now = proxy_now_ms(), next = UINT64_MAX;

    if (st_writing(st))
        next = st->last_out_ms + lim->send_timeout_ms;
    if (st_reading(st) && st->last_in_ms + lim->client_body_timeout_ms < next)
        next = st->last_in_ms + lim->client_body_timeout_ms;
    if (next == UINT64_MAX)
        return;
    timer_ms(st->timer, next > now ? next - now : 0);
}

static void
st_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h2_stream *st = arg;
    const struct conf_limits *lim;
    uint64_t now = proxy_now_ms();

    (void)fd;
    (void)what;
    CHECK_MAGIC(st, H2_STREAM_MAGIC);
    lim = &st->s->w->conf->limits;
    if (st_writing(st) && now - st->last_out_ms >= lim->send_timeout_ms) {
        /* the client does not take this stream's answer: as a write timeout
         * ends an HTTP/1.1 connection (the request is logged 499 at close) */
        st_fail(st);
    } else if (st_reading(st) && now - st->last_in_ms >= lim->client_body_timeout_ms) {
        st_refuse(st, 408, "client sent the body too slowly");
    } else {
        st_timer_arm(st);
        return;
    }
    h2_schedule(st->s);
}

/* ---- nghttp2 callbacks: flags and bytes only, h2_pump acts ------------------------------ */

static void
h2_count_reset(struct proxy_h2 *s)
{
    static struct proxy_log_rl rl;
    uint64_t dropped;

    if (s->flooded)
        return;
    if (!proxy_h2_ratelim_over(&s->resets, proxy_now_ms(), s->max_resets, s->reset_window_ms))
        return;
    s->flooded = true;
    STAT_INC(s->w, h2_floods);
    if (proxy_log_rl_pass(&rl, 10000, &dropped))
        log_warn("h2: client %s reset more than %llu streams within %llu ms: GOAWAY "
                 "(ENHANCE_YOUR_CALM) and close (%llu more suppressed)",
                 s->peer, (unsigned long long)s->max_resets, (unsigned long long)s->reset_window_ms,
                 (unsigned long long)dropped);
}

static int
cb_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct proxy_h2 *s = ud;
    struct h2_stream *st;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if ((st = st_get(s)) == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    st->magic = H2_STREAM_MAGIC;
    st->s = s;
    st->id = f->hd.stream_id;
    TAILQ_INSERT_TAIL(&s->streams, st, link);
    s->nstreams++;
    nghttp2_session_set_stream_user_data(ng, st->id, st);
    STAT_INC(s->w, h2_streams);
    event_del(s->idle);
    return 0;
}

static int
cb_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
          const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    struct h2_stream *st = st_of(ud, f->hd.stream_id);

    (void)ng;
    (void)flags;
    if (st == NULL || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers are not passed on */
    proxy_h2_req_field(&st->q, (const char *)name, nlen, (const char *)value, vlen);
    return 0;
}

static int
cb_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct proxy_h2 *s = ud;
    struct h2_stream *st = st_of(s, f->hd.stream_id);
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    (void)ng;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (st == NULL)
            break;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            st->refused = proxy_h2_req_finish(&st->q);
            st->ready = true; /* started once this read's frames are processed */
        }
        if (end)
            st->req_done = true; /* (after trailers, too) */
        break;
    case NGHTTP2_DATA:
        if (st != NULL && end)
            st->req_done = true;
        break;
    case NGHTTP2_RST_STREAM:
        STAT_INC(s->w, h2_resets);
        h2_count_reset(s);
        break;
    default: break;
    }
    return 0;
}

static int
cb_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
              void *ud)
{
    struct proxy_h2 *s = ud;
    struct h2_stream *st = st_of(s, id);

    (void)ng;
    (void)flags;
    if (st == NULL) {
        s->conn_unconsumed += len;
        return 0;
    }
    /* kept for the request (until it starts, or while it wants its body);
     * given back to flow control by st_window either way */
    if (!st->failed && !st->end_given && (!st->started || st->req != NULL))
        evbuffer_add(st->in, data, len);
    st->unconsumed += len;
    st->last_in_ms = proxy_now_ms();
    return 0;
}

static int
cb_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct proxy_h2 *s = ud;
    struct h2_stream *st;

    (void)ng;
    switch (f->hd.type) {
    case NGHTTP2_GOAWAY: STAT_INC(s->w, h2_goaways); break;
    case NGHTTP2_RST_STREAM:
        /* streams the client made us refuse count like the ones it reset */
        if (f->rst_stream.error_code == NGHTTP2_REFUSED_STREAM ||
            f->rst_stream.error_code == NGHTTP2_PROTOCOL_ERROR)
            h2_count_reset(s);
        break;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        st = st_of(s, f->hd.stream_id);
        /* answered in full while the client still sends: ask it to stop
         * (RFC 9113 8.1) */
        if (st != NULL && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !st->req_done)
            st->want_rst = true;
        break;
    default: break;
    }
    return 0;
}

static int
cb_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
    struct proxy_h2 *s = ud;
    struct h2_stream *st = st_of(s, id);

    (void)error_code;
    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    st_free(st);
    if (s->nstreams == 0 && !s->closing)
        timer_ms(s->idle, s->w->conf->limits.keepalive_timeout_ms);
    return 0;
}

/* ---- the session -------------------------------------------------------------------- */

/* One stream's pending work; true when it may have given nghttp2 something. */
static bool
st_tick(struct proxy_h2 *s, struct h2_stream *st)
{
    bool did = false;

    if (st->ready) {
        st->ready = false;
        if (!s->flooded)
            st_start(st);
        else
            st_fail(st); /* a flooder's stream: never started */
        did = true;
    }
    if (st->req != NULL && (evbuffer_get_length(st->in) > 0 || (st->req_done && !st->end_given))) {
        st_feed(st);
        did = true;
    }
    if (st->want_resume) {
        st->want_resume = false;
        if (st->req != NULL && st->req->up != NULL)
            proxy_upstream_resume(st->req); /* may queue more, or end the request */
        else if (st->req != NULL && st->req->fill_read)
            proxy_cache_fill_drained(st->req); /* more of a cache file being written */
        did = true;
    }
    if (st_window(st))
        did = true;
    if (st->want_rst) {
        st->want_rst = false;
        if (!st->req_done)
            nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
        did = true;
    }
    return did;
}

/* Acts on what the callbacks flagged, frames what nghttp2 has to send and
 * ends the session when nghttp2 is done with it. */
static void
h2_pump(struct proxy_h2 *s)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);

    for (int round = 0; round < 16 && !s->closing; round++) {
        struct h2_stream *st;
        bool did = false;

        if (s->flooded && !s->terminated) {
            s->terminated = true;
            nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
            did = true;
        }
        if (s->conn_unconsumed > 0) {
            nghttp2_session_consume_connection(s->ng, s->conn_unconsumed);
            s->conn_unconsumed = 0;
        }
        TAILQ_FOREACH(st, &s->streams, link)
        {
            did |= st_tick(s, st);
        }
        while (evbuffer_get_length(out) < H2_OUT_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(s->ng, &data);
            if (n < 0) {
                log_debug("h2 %s: %s", s->peer, nghttp2_strerror((int)n));
                h2_close(s);
                return;
            }
            if (n == 0)
                break;
            evbuffer_add(out, data, (size_t)n);
            did = true;
        }
        if (!did)
            break;
    }
    if (s->tls != NULL) {
        /* over TLS the bufferevent makes one record, and one send, per
         * chain of its output: what the pumps framed goes as one when small */
        size_t len = evbuffer_get_length(out);
        if (len > 0 && len <= PROXY_TLS_COALESCE)
            evbuffer_pullup(out, -1);
    }
    if (s->closing)
        return;
    if (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng)) {
        h2_close(s); /* GOAWAY went out and no stream is left */
        return;
    }
    /* streams still waiting on their client get their timer (not before
     * the frames went out: most answers are gone by now) */
    struct h2_stream *st;
    TAILQ_FOREACH(st, &s->streams, link)
    {
        if ((st_writing(st) || st_reading(st)) && !evtimer_pending(st->timer, NULL))
            st_timer_arm(st);
    }
}

static void
h2_recv(struct proxy_h2 *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);

    while (!s->closing && !s->flooded) {
        struct evbuffer_iovec v;
        ssize_t n;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        n = nghttp2_session_mem_recv(s->ng, v.iov_base, v.iov_len);
        if (n < 0) {
            if (n == NGHTTP2_ERR_FLOODED)
                STAT_INC(s->w, h2_floods);
            log_debug("h2 %s: %s", s->peer, nghttp2_strerror((int)n));
            h2_close(s);
            return;
        }
        evbuffer_drain(in, (size_t)n);
        STAT_ADD(s->w, bytes_in, (uint64_t)n);
    }
    if (s->flooded)
        evbuffer_drain(in, evbuffer_get_length(in)); /* read on, but only to discard */
}

static void
h2_free(struct proxy_h2 *s)
{
    struct proxy_worker *w = s->w;
    struct h2_stream *st;

    CHECK_MAGIC(s, PROXY_H2_MAGIC);
    s->dead = true;
    while ((st = TAILQ_FIRST(&s->streams)) != NULL)
        st_free(st);
    nghttp2_session_del(s->ng);
    if (s->tls != NULL)
        proxy_tls_close(s->tls, w, s->io_failed); /* close_notify when clean */
    bufferevent_free(s->bev);
    event_free(s->defer);
    event_free(s->idle);
    LIST_REMOVE(s, link);
    w->nconns--;
    STAT_DEC(w, conns_active);
    s->magic = PROXY_DEAD_MAGIC;
    free(s);
    proxy_worker_conn_gone(w);
}

/* No more nghttp2 calls from here: streams end, what is queued is flushed
 * (bounded by send_timeout, or a second for a flooder), then free. */
static void
h2_close(struct proxy_h2 *s)
{
    struct h2_stream *st;

    if (s->closing)
        return;
    s->closing = true;
    while ((st = TAILQ_FIRST(&s->streams)) != NULL)
        st_free(st);
    /* reading goes on (and discards) until the close: a socket closed with
     * unread bytes sends RST, and the client could lose our GOAWAY */
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
        s->want_free = true;
        h2_schedule(s);
        return;
    }
    bufferevent_enable(s->bev, EV_WRITE);
    timer_ms(s->idle, s->flooded ? H2_FLOOD_LINGER_MS : s->w->conf->limits.send_timeout_ms);
}

/* Graceful: GOAWAY naming the last stream taken; those finish, then close. */
static void
h2_drain(struct proxy_h2 *s)
{
    if (s->goaway || s->closing)
        return;
    s->goaway = true;
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_schedule(s);
}

static void
h2_readcb(struct bufferevent *bev, void *arg)
{
    struct proxy_h2 *s = arg;

    CHECK_MAGIC(s, PROXY_H2_MAGIC);
    if (s->closing) {
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        return;
    }
    h2_recv(s);
    h2_pump(s);
}

static void
h2_writecb(struct bufferevent *bev, void *arg)
{
    struct proxy_h2 *s = arg;

    CHECK_MAGIC(s, PROXY_H2_MAGIC);
    if (s->closing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            s->want_free = true;
            h2_schedule(s);
        }
        return;
    }
    h2_pump(s);
}

static void
h2_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_h2 *s = arg;

    (void)bev;
    CHECK_MAGIC(s, PROXY_H2_MAGIC);
    /* EOF, error, or the client did not read for send_timeout */
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        s->io_failed = true;
    s->want_free = true;
    h2_schedule(s);
}

static void
h2_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_h2 *s = arg;

    (void)fd;
    (void)what;
    CHECK_MAGIC(s, PROXY_H2_MAGIC);
    if (s->want_free) {
        h2_free(s);
        return;
    }
    h2_recv(s); /* bytes read before the session existed (the preface) */
    h2_pump(s);
}

static void
h2_idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_h2 *s = arg;

    (void)fd;
    (void)what;
    CHECK_MAGIC(s, PROXY_H2_MAGIC);
    if (s->closing) {
        h2_free(s); /* the client did not take its last frames */
        return;
    }
    if (s->nstreams == 0) {
        h2_drain(s); /* keepalive_timeout without a stream */
        h2_pump(s);
    }
}

int
proxy_h2_start(struct proxy_worker *w, struct bufferevent *bev, const char *peer,
               struct proxy_tls *tls)
{
    const struct conf_limits *lim = &w->conf->limits;
    struct timeval wtv = {.tv_sec = (time_t)(lim->send_timeout_ms / 1000),
                          .tv_usec = (suseconds_t)(lim->send_timeout_ms % 1000) * 1000};
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[5] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)lim->http2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)lim->max_header_size},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, (uint32_t)lim->http2_hpack_table_size},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    struct proxy_h2 *s = calloc(1, sizeof(*s));

    if (s == NULL)
        goto fail;
    s->magic = PROXY_H2_MAGIC;
    s->w = w;
    s->bev = bev;
    s->tls = tls;
    s->https = tls != NULL;
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    TAILQ_INIT(&s->streams);
    s->max_resets = lim->http2_max_resets;
    s->reset_window_ms = lim->http2_reset_window_ms;
    s->defer = event_new(w->base, -1, 0, h2_defer_cb, s);
    s->idle = evtimer_new(w->base, h2_idle_cb, s);
    if (s->defer == NULL || s->idle == NULL || nghttp2_session_callbacks_new(&cbs) != 0 ||
        nghttp2_option_new(&opt) != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, cb_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, lim->http2_hpack_table_size);
    /* http2_max_resets is the limit: nghttp2's own reset limiter (1000 burst,
     * 33/s) would close first, without our counters, when it is set higher */
    nghttp2_option_set_stream_reset_rate_limit(opt, (uint64_t)1 << 40, (uint64_t)1 << 20);
    if (nghttp2_session_server_new2(&s->ng, cbs, s, opt) != 0)
        goto fail;
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    cbs = NULL;
    opt = NULL;
    if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0) {
        nghttp2_session_del(s->ng);
        goto fail;
    }
    bufferevent_setcb(bev, h2_readcb, h2_writecb, h2_eventcb, s);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_setwatermark(bev, EV_WRITE, H2_OUT_HIGH / 4, 0);
    bufferevent_set_timeouts(bev, NULL, &wtv);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    LIST_INSERT_HEAD(&w->h2s, s, link);
    w->nconns++;
    STAT_INC(w, conns_active);
    STAT_INC(w, h2_sessions);
    timer_ms(s->idle, lim->keepalive_timeout_ms);
    if (w->draining)
        h2_drain(s);
    h2_schedule(s); /* our SETTINGS, and whatever the client sent already */
    return 0;
fail:
    if (cbs != NULL)
        nghttp2_session_callbacks_del(cbs);
    if (opt != NULL)
        nghttp2_option_del(opt);
    if (s != NULL) {
        if (s->defer != NULL)
            event_free(s->defer);
        if (s->idle != NULL)
            event_free(s->idle);
        free(s);
    }
    if (tls != NULL)
        proxy_tls_close(tls, w, true);
    bufferevent_free(bev);
    return -1;
}

void
proxy_h2_worker_drain(struct proxy_worker *w)
{
    struct proxy_h2 *s;

    LIST_FOREACH(s, &w->h2s, link)
    {
        h2_drain(s);
    }
}

void
proxy_h2_worker_reloaded(struct proxy_worker *w)
{
    /* An HTTP/1.1 connection takes the new conf with its next request; an
     * h2 session would keep its SETTINGS, reset budget and certificate for
     * as long as the client keeps it open (browsers keep them for hours).
     * GOAWAY(NO_ERROR) with the last stream processed: those finish, the
     * client opens a new connection for the next ones (RFC 9113 6.8). */
    proxy_h2_worker_drain(w);
}

void
proxy_h2_worker_free(struct proxy_worker *w)
{
    struct proxy_h2 *s;

    while ((s = LIST_FIRST(&w->h2s)) != NULL)
        h2_free(s);
}
