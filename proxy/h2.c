/*
 * HTTP/2 to clients: one nghttp2 server session per connection, each stream
 * an HTTP/1.1 request through the one pipeline the h1 side uses (routing,
 * functions, cache, origin) — nothing here knows about any of those.
 *
 *   client ══ h2 frames ══ proxy_h2 (nghttp2) ── stream ── bufferevent pair ── proxy_conn (http1.c)
 *
 * A stream's header fields become an HTTP/1.1 request head (h2msg.c)
 * written into its end of a bufferevent pair; the other end is an internal
 * proxy_conn with the client's real address, so X-Forwarded-For, the
 * access log and functions' client_ip see the client. Request DATA frames
 * stream into the pair (chunked when there is no content-length). The
 * response coming back is parsed with llhttp in response mode: its head
 * becomes HEADERS (hop-by-hop fields left out), its body DATA through a
 * data provider that defers while nothing is buffered.
 *
 * Flow control and backpressure. Downloads: nghttp2 is asked for frames only
 * while the socket's output holds less than H2_OUT_HIGH; a stream parses its
 * response only while less than H2_RESP_HIGH of body waits for nghttp2;
 * the pair's read side stops taking bytes at H2_PAIR_HIGH, so the
 * internal connection's output grows and the pipeline stops reading the
 * origin (proxy_client_congested), exactly as with a slow h1 client.
 * Uploads: window updates are ours (no auto window update): DATA is given
 * back to flow control only once the pair has taken it below H2_BODY_HIGH,
 * so a client can have at most a window's worth buffered here.
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
 * from this file's libevent callbacks (never from inside a pair callback of
 * the internal connection, which libevent defers anyway); nghttp2 callbacks
 * only set flags and move bytes, and "h2_pump" acts on them afterwards. A
 * stream is freed when nghttp2 closes it; its internal connection is then
 * aborted from the loop (proxy_conn_abort). An internal connection that
 * goes first (error, timeout) tells its stream through its gone hook.
 */
#include "proxy/h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#define PROXY_H2_MAGIC 0x48325365u  /* "H2Se" */
#define H2_STREAM_MAGIC 0x48325374u /* "H2St" */

#define H2_STREAM_WINDOW (256 * 1024) /* request body in flight per stream (our SETTINGS) */
#define H2_CONN_WINDOW (1024 * 1024)  /* ... and per connection */
#define H2_OUT_HIGH (64 * 1024)       /* socket output: no more frames above this */
#define H2_RESP_HIGH (64 * 1024)      /* response body parsed, waiting for nghttp2 */
#define H2_PAIR_HIGH (64 * 1024)      /* response bytes in the pair, not parsed yet */
#define H2_BODY_HIGH (64 * 1024)      /* request body in the pair: window held back above */
#define H2_RESP_HEAD_MAX (64 * 1024)  /* the pipeline's response head (as upstream.c) */
#define H2_RESP_FIELDS 256
#define H2_FLOOD_LINGER_MS 1000 /* a flooder gets this long to read its GOAWAY */

struct h2_stream {
    uint32_t magic;
    struct proxy_h2 *s;
    int32_t id;
    TAILQ_ENTRY(h2_stream) link;
    struct proxy_h2_req req;  /* the request head under construction */
    struct evbuffer *pending; /* request head and body until the stream starts */
    struct bufferevent *bev;  /* our end of the pair */
    struct proxy_conn *conn;  /* the pipeline's end; NULL once it is gone */
    llhttp_t parser;          /* the response, as the pipeline writes it */
    struct proxy_head head;
    struct evbuffer *body; /* response body not yet taken by nghttp2 */
    uint64_t unconsumed;   /* request DATA not yet given back to flow control */
    bool ready;            /* head complete: start after this read's frames */
    bool started;          /* the pair and its connection exist */
    bool req_done;         /* END_STREAM from the client */
    bool interim;          /* a 1xx is being skipped */
    bool head_sent;        /* response HEADERS submitted */
    bool resp_done;        /* the whole response body is in 'body' */
    bool deferred;         /* the data provider waits for body */
    bool want_parse;       /* room for more response: parse the pair's input */
    bool want_rst;         /* answered before the request ended: RST_STREAM(NO_ERROR) */
    bool conn_gone;        /* the internal connection was freed */
    bool failed;           /* RST_STREAM(INTERNAL_ERROR) submitted */
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
    bool goaway;     /* graceful GOAWAY submitted */
    bool flooded;    /* over the reset budget: terminate */
    bool terminated; /* GOAWAY(ENHANCE_YOUR_CALM) submitted */
    bool closing;    /* no more nghttp2 calls: flushing, then free */
    bool want_free;
    bool dead;
    bool https; /* over TLS (ALPN h2): the streams' requests are https */
    char peer[64];
};

static llhttp_settings_t resp_settings;
static pthread_once_t resp_once = PTHREAD_ONCE_INIT;

static void h2_pump(struct proxy_h2 *s);
static void h2_close(struct proxy_h2 *s);
static void st_parse(struct h2_stream *st);

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

/* ---- streams ------------------------------------------------------------------------ */

static struct h2_stream *
st_of(struct proxy_h2 *s, int32_t id)
{
    struct h2_stream *st = id > 0 ? nghttp2_session_get_stream_user_data(s->ng, id) : NULL;

    if (st != NULL)
        CHECK_MAGIC(st, H2_STREAM_MAGIC);
    return st;
}

/* Detaches the internal connection: freed from the loop (or now, at exit). */
static void
st_drop_conn(struct h2_stream *st, bool now)
{
    struct proxy_conn *c = st->conn;

    if (c == NULL)
        return;
    st->conn = NULL;
    if (now) {
        c->gone = NULL;
        proxy_conn_free(c);
    } else {
        proxy_conn_abort(c);
    }
}

/* Frees a stream object and its buffers for good. */
static void
st_destroy(void *arg)
{
    struct h2_stream *st = arg;

    proxy_h2_req_fini(&st->req);
    if (st->pending != NULL)
        evbuffer_free(st->pending);
    if (st->body != NULL)
        evbuffer_free(st->body);
    proxy_head_fini(&st->head);
    free(st);
}

/* A stream object with empty buffers: from the worker's free list, or new.
 * The response head starts small and grows to H2_RESP_HEAD_MAX: a stream
 * used to cost a 64 KiB malloc and free. NULL when out of memory. */
static struct h2_stream *
st_get(struct proxy_h2 *s)
{
    const struct conf_limits *lim = &s->w->conf->limits;
    struct h2_stream *st = proxy_pool_get(&s->w->h2_pool);

    if (st != NULL) {
        struct proxy_h2_req req = st->req;
        struct evbuffer *pending = st->pending, *body = st->body;
        struct proxy_head head = st->head;

        memset(st, 0, sizeof(*st));
        st->req = req;
        st->pending = pending;
        st->body = body;
        st->head = head;
        proxy_head_reset(&st->head);
        proxy_h2_req_reset(&st->req, lim->max_header_size, lim->max_headers,
                           lim->max_uri_length);
        return st;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    if (proxy_h2_req_init(&st->req, lim->max_header_size, lim->max_headers,
                          lim->max_uri_length) < 0 ||
        (st->pending = evbuffer_new()) == NULL || (st->body = evbuffer_new()) == NULL ||
        proxy_head_init_grow(&st->head, 2048, H2_RESP_HEAD_MAX, H2_RESP_FIELDS) < 0) {
        st_destroy(st);
        return NULL;
    }
    return st;
}

static void
st_free(struct h2_stream *st, bool now)
{
    struct proxy_h2 *s = st->s;

    CHECK_MAGIC(st, H2_STREAM_MAGIC);
    TAILQ_REMOVE(&s->streams, st, link);
    s->nstreams--;
    st_drop_conn(st, now);
    if (st->bev != NULL)
        bufferevent_free(st->bev);
    s->conn_unconsumed += st->unconsumed; /* the connection window still counts them */
    st->magic = PROXY_DEAD_MAGIC;
    evbuffer_drain(st->pending, evbuffer_get_length(st->pending));
    evbuffer_drain(st->body, evbuffer_get_length(st->body));
    if (!proxy_pool_put(&s->w->h2_pool, st))
        st_destroy(st);
}

void
proxy_h2_pool_fini(struct proxy_worker *w)
{
    proxy_pool_fini(&w->h2_pool, st_destroy);
}

/* Something for nghttp2 to send (or the stream is over): pump from the loop. */
static void
st_more(struct h2_stream *st)
{
    struct proxy_h2 *s = st->s;

    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(s->ng, st->id);
    }
    h2_schedule(s);
}

static void
st_fail(struct h2_stream *st)
{
    if (st->failed)
        return;
    st->failed = true;
    st_drop_conn(st, false);
    nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    h2_schedule(st->s);
}

static ssize_t
st_data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
             nghttp2_data_source *src, void *ud)
{
    struct h2_stream *st = src->ptr;
    int n;

    (void)ng;
    (void)id;
    (void)ud;
    CHECK_MAGIC(st, H2_STREAM_MAGIC);
    n = evbuffer_remove(st->body, buf, length);
    if (n < 0)
        n = 0;
    if (st->resp_done && evbuffer_get_length(st->body) == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return n;
    }
    if (n == 0) {
        st->deferred = true; /* resumed by st_more when the pipeline writes more */
        st->want_parse = st->bev != NULL && evbuffer_get_length(bufferevent_get_input(st->bev));
        return NGHTTP2_ERR_DEFERRED;
    }
    if (evbuffer_get_length(st->body) < H2_RESP_HIGH / 2)
        st->want_parse = true;
    return n;
}

/* Submits the response head; the body follows through st_data_read. */
static int
st_submit(struct h2_stream *st, int status, const struct proxy_hdr *f, size_t nf)
{
    nghttp2_nv nv[H2_RESP_FIELDS + 1];
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = st_data_read};
    char code[8];
    bool nobody = st->req.head_method || status == 204 || status == 304;

    snprintf(code, sizeof(code), "%03d", status);
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < nf && i < H2_RESP_FIELDS; i++)
        nv[i + 1] = (nghttp2_nv){(uint8_t *)f[i].name, (uint8_t *)f[i].value, f[i].nlen, f[i].vlen,
                                 NGHTTP2_NV_FLAG_NONE};
    if (nghttp2_submit_response(st->s->ng, st->id, nv, nf + 1, nobody ? NULL : &prd) != 0)
        return -1;
    st->head_sent = true;
    h2_schedule(st->s);
    return 0;
}

/* An answer made here, before the pipeline: a header block over the limits
 * or malformed (what head.c and llhttp answer for HTTP/1.1). */
static void
st_answer(struct h2_stream *st, int status)
{
    struct proxy_worker *w = st->s->w;
    struct proxy_hdr f[2];
    char len[24];
    const char *why = status == 431   ? "request header block is over the limit"
                      : status == 414 ? "request URI is over the limit"
                      : status == 503 ? "out of memory"
                                      : "malformed request";

    evbuffer_add_printf(st->body, "%d %s: %s\n", status, proxy_status_reason(status), why);
    snprintf(len, sizeof(len), "%zu", evbuffer_get_length(st->body));
    f[0] = (struct proxy_hdr){"content-type", 12, "text/plain; charset=utf-8", 25};
    f[1] = (struct proxy_hdr){"content-length", 14, len, strlen(len)};
    st->resp_done = true;
    if (st_submit(st, status, f, 2) < 0) {
        st_fail(st);
        return;
    }
    STAT_INC(w, requests);
    proxy_stats_observe(w, status, 0);
}

/* Where request bytes go: the pending buffer, the pair, or nowhere (the
 * request was answered without the pipeline, or its connection is gone). */
static struct evbuffer *
st_req_out(struct h2_stream *st)
{
    if (st->failed || st->conn_gone || st->req.status != 0)
        return NULL;
    if (st->started)
        return st->bev != NULL ? bufferevent_get_output(st->bev) : NULL;
    return st->pending;
}

/* Gives request DATA back to flow control once the pipeline has taken it. */
static bool
st_window(struct h2_stream *st)
{
    struct evbuffer *out = st_req_out(st);

    if (st->unconsumed == 0)
        return false;
    if (out != NULL && (!st->started || evbuffer_get_length(out) > H2_BODY_HIGH))
        return false;
    nghttp2_session_consume(st->s->ng, st->id, st->unconsumed);
    st->unconsumed = 0;
    return true;
}

static void
st_conn_gone(void *arg)
{
    struct h2_stream *st = arg;

    CHECK_MAGIC(st, H2_STREAM_MAGIC);
    st->conn = NULL;
    st->conn_gone = true;
    st->want_parse = true; /* what is in the pair is the rest of the answer */
    h2_schedule(st->s);
}

static void
st_readcb(struct bufferevent *bev, void *arg)
{
    struct h2_stream *st = arg;

    (void)bev;
    CHECK_MAGIC(st, H2_STREAM_MAGIC);
    st_parse(st);
}

static void
st_writecb(struct bufferevent *bev, void *arg)
{
    struct h2_stream *st = arg;

    (void)bev;
    CHECK_MAGIC(st, H2_STREAM_MAGIC);
    if (st_window(st))
        h2_schedule(st->s);
}

static void
st_start(struct h2_stream *st)
{
    struct proxy_h2 *s = st->s;
    struct bufferevent *pair[2];

    st->ready = false;
    if (bufferevent_pair_new(s->w->base, BEV_OPT_CLOSE_ON_FREE, pair) < 0) {
        st_fail(st);
        return;
    }
    st->conn = proxy_conn_new_internal(s->w, pair[0], s->peer, st_conn_gone, st);
    if (st->conn != NULL)
        st->conn->https = s->https; /* cache keys, X-Forwarded-Proto */
    if (st->conn == NULL) { /* pair[0] was freed with it */
        bufferevent_free(pair[1]);
        st_fail(st);
        return;
    }
    st->bev = pair[1];
    st->started = true;
    llhttp_init(&st->parser, HTTP_RESPONSE, &resp_settings);
    st->parser.data = st;
    bufferevent_setcb(st->bev, st_readcb, st_writecb, NULL, st);
    bufferevent_setwatermark(st->bev, EV_READ, 0, H2_PAIR_HIGH);
    bufferevent_setwatermark(st->bev, EV_WRITE, H2_BODY_HIGH / 2, 0);
    bufferevent_enable(st->bev, EV_READ | EV_WRITE);
    evbuffer_add_buffer(bufferevent_get_output(st->bev), st->pending);
}

/* Parses what the pipeline wrote back, while nghttp2 has room for it. */
static void
st_parse(struct h2_stream *st)
{
    struct evbuffer *in;

    st->want_parse = false;
    if (st->bev == NULL || st->failed || st->resp_done)
        return;
    in = bufferevent_get_input(st->bev);
    while (evbuffer_get_length(st->body) < H2_RESP_HIGH && !st->resp_done) {
        struct evbuffer_iovec v;
        size_t len, used;
        enum llhttp_errno err;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        len = v.iov_len < H2_RESP_HIGH ? v.iov_len : H2_RESP_HIGH;
        err = llhttp_execute(&st->parser, v.iov_base, len);
        used = len;
        if (err != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&st->parser);
            if (pos != NULL && pos >= (const char *)v.iov_base &&
                pos <= (const char *)v.iov_base + len)
                used = (size_t)(pos - (const char *)v.iov_base);
        }
        evbuffer_drain(in, used);
        if (err == HPE_PAUSED)
            break; /* the message is complete */
        if (err != HPE_OK) {
            log_debug("h2 %s stream %d: bad response from the pipeline: %s", st->s->peer, st->id,
                      llhttp_errno_name(err));
            st_fail(st);
            return;
        }
    }
    if (st->conn_gone && !st->resp_done && evbuffer_get_length(in) == 0) {
        if (llhttp_message_needs_eof(&st->parser))
            llhttp_finish(&st->parser);
        if (!st->resp_done)
            st_fail(st); /* cut mid-answer (origin died, timeout): say so */
    }
}

/* ---- the pipeline's response (llhttp, response mode) ------------------------------------ */

static int
r_on_message_begin(llhttp_t *p)
{
    struct h2_stream *st = p->data;
    proxy_head_reset(&st->head);
    return 0;
}

static int
r_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct h2_stream *st = p->data;
    return proxy_head_field(&st->head, at, len) < 0 ? HPE_USER : 0;
}

static int
r_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct h2_stream *st = p->data;
    return proxy_head_value(&st->head, at, len) < 0 ? HPE_USER : 0;
}

static int
r_on_headers_complete(llhttp_t *p)
{
    struct h2_stream *st = p->data;
    struct proxy_hdr f[H2_RESP_FIELDS];
    int status = llhttp_get_status_code(p);
    size_t nf;

    if (status < 200) {
        st->interim = true; /* no 1xx is forwarded (Expect is not passed on) */
        return 0;
    }
    nf = proxy_h2_resp_fields(&st->head, f, H2_RESP_FIELDS);
    if (st_submit(st, status, f, nf) < 0)
        return HPE_USER;
    return st->req.head_method ? 1 : 0; /* a HEAD answer has no body */
}

static int
r_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct h2_stream *st = p->data;
    evbuffer_add(st->body, at, len);
    st_more(st);
    return 0;
}

static int
r_on_message_complete(llhttp_t *p)
{
    struct h2_stream *st = p->data;

    if (st->interim) {
        st->interim = false;
        return 0;
    }
    st->resp_done = true;
    st_more(st);
    return HPE_PAUSED;
}

static void
resp_settings_init(void)
{
    llhttp_settings_init(&resp_settings);
    resp_settings.on_message_begin = r_on_message_begin;
    resp_settings.on_header_field = r_on_header_field;
    resp_settings.on_header_value = r_on_header_value;
    resp_settings.on_headers_complete = r_on_headers_complete;
    resp_settings.on_body = r_on_body;
    resp_settings.on_message_complete = r_on_message_complete;
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
    proxy_h2_req_field(&st->req, (const char *)name, nlen, (const char *)value, vlen);
    return 0;
}

/* The client's END_STREAM. */
static void
st_req_end(struct h2_stream *st)
{
    struct evbuffer *out;

    if (st->req_done)
        return;
    st->req_done = true;
    if ((out = st_req_out(st)) != NULL)
        proxy_h2_req_end(&st->req, out);
}

static void
st_headers_done(struct h2_stream *st, bool end_stream)
{
    int rc;

    st->req_done = end_stream;
    rc = proxy_h2_req_finish(&st->req, end_stream, st->pending);
    if (rc != 0) {
        st_answer(st, rc);
        return;
    }
    st->ready = true; /* started once this read's frames are processed */
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
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
            st_headers_done(st, end);
        else if (end)
            st_req_end(st); /* after trailers */
        break;
    case NGHTTP2_DATA:
        if (st != NULL && end)
            st_req_end(st);
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
    struct evbuffer *out;

    (void)flags;
    if (st == NULL) {
        s->conn_unconsumed += len;
        return 0;
    }
    (void)ng;
    out = st_req_out(st);
    if (out != NULL)
        proxy_h2_req_body(&st->req, out, data, len);
    st->unconsumed += len; /* given back by st_window once the pair took it */
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

    (void)ng;
    (void)error_code;
    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    st_free(st, false);
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

    if (st->ready && !s->flooded) {
        st_start(st);
        did = true;
    } else if (st->ready) {
        st->ready = false; /* a flooder's stream: never started */
        st_fail(st);
        did = true;
    }
    if (st->want_parse) {
        st_parse(st);
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
    if (!s->closing && !nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng))
        h2_close(s); /* GOAWAY went out and no stream is left */
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
h2_free(struct proxy_h2 *s, bool now)
{
    struct proxy_worker *w = s->w;
    struct h2_stream *st;

    CHECK_MAGIC(s, PROXY_H2_MAGIC);
    s->dead = true;
    while ((st = TAILQ_FIRST(&s->streams)) != NULL)
        st_free(st, now);
    nghttp2_session_del(s->ng);
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
        st_free(st, false);
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
    (void)what;
    CHECK_MAGIC(s, PROXY_H2_MAGIC);
    /* EOF, error, or the client did not read for send_timeout */
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
        h2_free(s, false);
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
        h2_free(s, false); /* the client did not take its last frames */
        return;
    }
    if (s->nstreams == 0) {
        h2_drain(s); /* keepalive_timeout without a stream */
        h2_pump(s);
    }
}

int
proxy_h2_start(struct proxy_worker *w, struct bufferevent *bev, const char *peer, bool https)
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

    pthread_once(&resp_once, resp_settings_init);
    if (s == NULL)
        goto fail;
    s->magic = PROXY_H2_MAGIC;
    s->w = w;
    s->bev = bev;
    s->https = https;
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
proxy_h2_worker_free(struct proxy_worker *w)
{
    struct proxy_h2 *s;

    while ((s = LIST_FIRST(&w->h2s)) != NULL)
        h2_free(s, true);
}
