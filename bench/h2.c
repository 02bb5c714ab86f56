/*
 * HTTP/2 over the engine's connections: one nghttp2 client session per connection, over TLS
 * (ALPN h2, tls.c) or plain TCP with prior knowledge (h2c). A connection has net->streams
 * request slots (struct bench_stream); closed loop keeps every slot busy, open loop treats a
 * connection with a free slot as idle. Each request is measured, classified and counted as an
 * HTTP/1.1 one is (latency from its intended send time, status class, Cache-Status from the
 * response headers or trailers, body bytes), so the reports do not change shape.
 *
 * I/O: nghttp2 serialises frames into the connection's out buffer (on_send; WOULDBLOCK when it
 * is full, so memory stays bounded) which goes to the transport; received bytes go from the
 * worker's receive buffer to nghttp2_session_mem_recv. Callbacks only record; connections are
 * closed and requests submitted outside nghttp2 calls (pump), never from inside a callback.
 *
 * Failures: a stream reset by the server counts "reset", a malformed response "bad_response",
 * a stream past --timeout "timeout" (and is cancelled with RST_STREAM; when every stream of a
 * connection timed out, the connection is replaced). Requests the server refused unprocessed
 * after a GOAWAY are sent again on a new connection and not counted as errors; a request lost
 * with its connection counts once.
 */
#include "bench/internal.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

/* ---- request fields and the h2c answer (pure, unit-tested) ------------------------------------ */

static bool
name_is(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

int
bench_h2_fields(const char *text, size_t len, char *names, size_t cap, struct bench_field *out,
                size_t max, struct bench_field *host)
{
    const char *p = text, *end = text + len;
    size_t used = 0;
    int n = 0;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol != NULL ? eol + 1 : end;
        const char *le = eol != NULL ? eol : end;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p) {
            p = next;
            continue;
        }
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon == NULL || colon == p)
            return -1;
        const char *ne = colon, *v = colon + 1, *ve = le;
        while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
            ne--;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t nl = (size_t)(ne - p), vl = (size_t)(ve - v);
        p = next;
        if (name_is(ne - nl, nl, "host")) {
            *host = (struct bench_field){"host", 4, v, vl};
            continue;
        }
        if (name_is(ne - nl, nl, "connection") || name_is(ne - nl, nl, "keep-alive") ||
            name_is(ne - nl, nl, "proxy-connection") ||
            name_is(ne - nl, nl, "transfer-encoding") || name_is(ne - nl, nl, "upgrade") ||
            (name_is(ne - nl, nl, "te") && !name_is(v, vl, "trailers")))
            continue; /* connection-specific: not allowed in HTTP/2 (RFC 9113 §8.2.2) */
        if ((size_t)n == max || nl > cap - used)
            return -1;
        for (size_t i = 0; i < nl; i++)
            names[used + i] = (char)tolower((unsigned char)(ne - nl)[i]);
        out[n++] = (struct bench_field){names + used, nl, v, vl};
        used += nl;
    }
    return n;
}

int
bench_h2c_reply_check(const unsigned char *buf, size_t n, char *err, size_t errlen)
{
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        size_t l = 0;
        while (l < n && l < 40 && buf[l] >= 0x20 && buf[l] < 0x7f)
            l++;
        snprintf(err, errlen, "it answered \"%.*s\" (HTTP/1.x) to the HTTP/2 preface", (int)l,
                 (const char *)buf);
        return -1;
    }
    if (n == 0) {
        snprintf(err, errlen, "it closed the connection after the HTTP/2 preface");
        return -1;
    }
    if (n < 9) {
        snprintf(err, errlen, "it sent %zu bytes, not an HTTP/2 frame", n);
        return -1;
    }
    uint32_t flen = (uint32_t)buf[0] << 16 | (uint32_t)buf[1] << 8 | buf[2];
    uint32_t sid = ((uint32_t)buf[5] & 0x7f) << 24 | (uint32_t)buf[6] << 16 |
                   (uint32_t)buf[7] << 8 | buf[8];
    if (buf[3] != NGHTTP2_SETTINGS || (buf[4] & NGHTTP2_FLAG_ACK) != 0 || sid != 0 ||
        flen % 6 != 0) {
        snprintf(err, errlen, "its first frame is not SETTINGS (type %u, length %u)", buf[3],
                 flen);
        return -1;
    }
    return 0;
}

/* ---- slots ---------------------------------------------------------------------------------- */

static struct bench_h2 *
h2_alloc(unsigned streams)
{
    size_t sz = sizeof(struct bench_h2) + streams * sizeof(struct bench_stream) +
                streams * sizeof(unsigned);
    struct bench_h2 *h = calloc(1, sz);
    if (h == NULL)
        return NULL;
    h->st = (struct bench_stream *)(h + 1);
    h->free_slots = (unsigned *)(h->st + streams);
    return h;
}

static struct bench_stream *
stream_find(struct bconn *c, int32_t id)
{
    struct bench_h2 *h = c->h2;
    struct bench_stream *st = nghttp2_session_get_stream_user_data(h->s, id);

    if (st != NULL) {
        if (st->magic != BENCH_STREAM_MAGIC)
            abort(); /* BUG: stream data that is not ours */
        return st->id == id ? st : NULL;
    }
    /* a request whose HEADERS never left has no nghttp2 stream yet */
    for (unsigned i = 0; i < c->w->net->streams; i++)
        if (h->st[i].id == id)
            return &h->st[i];
    return NULL;
}

static void
slot_release(struct bconn *c, struct bench_stream *st)
{
    struct bench_h2 *h = c->h2;

    st->id = 0;
    h->free_slots[h->nfree++] = (unsigned)(st - h->st);
    h->nactive--;
    c->w->inflight--;
}

/* A request that never reached the server goes out again (not counted as sent). */
static void
requeue(struct bconn *c, struct bench_stream *st)
{
    struct worker *w = c->w;

    w->res.sent--;
    if (w->open_loop)
        bench_backlog_unpop(w, st->t_intended);
    else if (w->limited)
        w->remaining++;
    slot_release(c, st);
}

static void
count_error(struct worker *w, enum bench_err e)
{
    w->res.errors[e]++;
    atomic_fetch_add_explicit(&w->prog_fail, 1, memory_order_relaxed);
}

static void
stream_done(struct worker *w, const struct bench_stream *st)
{
    uint64_t now = bench_now_ns();
    unsigned s = st->status;

    w->res.responses++;
    bench_hist_record(&w->res.hist, (now - st->t_intended) / 1000);
    w->res.status[s >= 100 && s < 600 ? s / 100 : 0]++;
    w->res.cache[st->cache]++;
    w->res.body_bytes += st->body_bytes;
    atomic_store_explicit(&w->prog_resp, w->res.responses, memory_order_relaxed);
    if (s >= 400)
        atomic_fetch_add_explicit(&w->prog_fail, 1, memory_order_relaxed);
}

/* ---- nghttp2 callbacks: record only ---------------------------------------------------------- */

static ssize_t
on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct bench_h2 *h = bench_conn_of(ud)->h2;
    size_t room = sizeof(h->out) - h->out_len;
    (void)s;
    (void)flags;
    if (room == 0)
        return NGHTTP2_ERR_WOULDBLOCK;
    size_t k = len < room ? len : room;
    memcpy(h->out + h->out_len, data, k);
    h->out_len += k;
    return (ssize_t)k;
}

static int
on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
          const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct bench_stream *st = stream_find(bench_conn_of(ud), f->hd.stream_id);
    if (st == NULL)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        unsigned v = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            v = v * 10 + (unsigned)(value[i] - '0');
        st->status = valuelen == 3 ? v : 0;
        st->cache = BENCH_CACHE_ABSENT; /* a new response head (after a 1xx) */
    } else if (namelen == 12 && memcmp(name, "cache-status", 12) == 0) {
        /* also in trailers, as llhttp reports chunked trailers for HTTP/1.1 */
        st->cache = bench_cache_status_parse((const char *)value, valuelen);
    }
    (void)s;
    return 0;
}

static int
on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)s;
    (void)flags;
    (void)data;
    struct bench_stream *st = stream_find(bench_conn_of(ud), id);
    if (st != NULL)
        st->body_bytes += len;
    return 0;
}

static int
on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct bconn *c = bench_conn_of(ud);
    (void)s;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            struct bench_stream *st = stream_find(c, f->hd.stream_id);
            if (st != NULL)
                st->remote_end = true;
        }
        break;
    case NGHTTP2_GOAWAY:
        c->h2->no_more = true; /* streams past last-stream-id come back REFUSED_STREAM */
        break;
    default:
        break;
    }
    return 0;
}

static int
on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    struct bconn *c = bench_conn_of(ud);
    struct worker *w = c->w;
    struct bench_stream *st = stream_find(c, id);
    (void)s;
    if (st == NULL)
        return 0;
    if (st->timed_out) {
        /* counted when it timed out */
    } else if (st->remote_end && st->status >= 200) {
        stream_done(w, st);
    } else if (error_code == NGHTTP2_REFUSED_STREAM && c->h2->no_more) {
        requeue(c, st);
        return 0;
    } else {
        /* NO_ERROR without a complete response, or reset by nghttp2 for a malformed one, is a
         * bad response; any other code came in the server's RST_STREAM */
        count_error(w, error_code == NGHTTP2_NO_ERROR || error_code == NGHTTP2_PROTOCOL_ERROR
                           ? BENCH_ERR_BAD_RESPONSE
                           : BENCH_ERR_RESET);
    }
    slot_release(c, st);
    return 0;
}

static int
on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud)
{
    struct bconn *c = bench_conn_of(ud);
    (void)s;
    (void)lib_error;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct bench_stream *st = stream_find(c, f->hd.stream_id);
    if (st == NULL)
        return 0;
    /* the session is going away (GOAWAY) before this request left: send it elsewhere */
    c->h2->no_more = true;
    requeue(c, st);
    return 0;
}

static ssize_t
body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *data_flags,
          nghttp2_data_source *src, void *ud)
{
    struct bench_stream *st = src->ptr;
    struct bconn *c = bench_conn_of(ud);
    (void)s;
    (void)id;
    if (st == NULL || st->magic != BENCH_STREAM_MAGIC)
        abort(); /* BUG */
    size_t left = st->body_len - st->body_off;
    size_t k = left < len ? left : len;
    memcpy(buf, c->w->wl->body + st->body_off, k);
    st->body_off += k;
    if (st->body_off == st->body_len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)k;
}

nghttp2_session_callbacks *
bench_h2_callbacks_new(void)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
    return cbs;
}

void
bench_h2_callbacks_free(nghttp2_session_callbacks *cbs)
{
    nghttp2_session_callbacks_del(cbs); /* NULL is fine */
}

/* ---- submitting and pumping ------------------------------------------------------------------ */

#define NV(nm, nml, v, vl)                                                                         \
    ((nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(v), (nml), (vl), NGHTTP2_NV_FLAG_NONE})

static void
arm_timer(struct bconn *c, uint64_t after_ns)
{
    struct timeval tv = {(time_t)(after_ns / 1000000000ULL),
                         (suseconds_t)(after_ns % 1000000000ULL / 1000)};
    event_add(&c->tmo, &tv);
}

/* One request in a free slot. -1 when the session takes no more (the draw is given back). */
static int
submit(struct bconn *c, uint64_t intended)
{
    struct worker *w = c->w;
    const struct bench_net *net = w->net;
    struct bench_h2 *h = c->h2;
    char path[BENCH_REQ_CAP], clen[24];
    nghttp2_nv nv[8 + BENCH_FIELDS_MAX];
    size_t n = 0;
    enum bench_method m;

    size_t pl = bench_request_target(w->wl, &w->rng, path, sizeof(path), &m);
    if (pl == 0)
        abort(); /* checked at start-up for the longest path: cannot happen */
    struct bench_stream *st = &h->st[h->free_slots[--h->nfree]];
    st->magic = BENCH_STREAM_MAGIC;
    st->c = c;
    st->head_req = m == BENCH_HEAD;
    st->remote_end = st->timed_out = false;
    st->status = 0;
    st->cache = BENCH_CACHE_ABSENT;
    st->t_intended = intended;
    st->t_sent = bench_now_ns();
    st->body_bytes = 0;
    st->body_off = 0;
    st->body_len = (m == BENCH_POST || m == BENCH_PUT) ? w->wl->body_size : 0;
    const char *mn = bench_method_name(m);
    nv[n++] = NV(":method", 7, mn, strlen(mn));
    nv[n++] = NV(":scheme", 7, net->scheme, strlen(net->scheme));
    nv[n++] = NV(":authority", 10, net->authority, net->authority_len);
    nv[n++] = NV(":path", 5, path, pl);
    nv[n++] = NV("user-agent", 10, "edge-bench", 10);
    for (size_t i = 0; i < net->nfields; i++)
        nv[n++] = NV(net->fields[i].name, net->fields[i].namelen, net->fields[i].value,
                     net->fields[i].valuelen);
    if (m == BENCH_POST || m == BENCH_PUT) {
        int cl = snprintf(clen, sizeof(clen), "%zu", st->body_len);
        nv[n++] = NV("content-length", 14, clen, (size_t)cl);
        nv[n++] = NV("content-type", 12, "application/octet-stream", 24);
    }
    nghttp2_data_provider prd = {.source = {.ptr = st}, .read_callback = body_read};
    int32_t id = nghttp2_submit_request(h->s, NULL, nv, n, st->body_len > 0 ? &prd : NULL, st);
    if (id < 0) {
        /* stream ids used up (or out of memory): finish what is in flight, then reconnect */
        h->free_slots[h->nfree++] = (unsigned)(st - h->st);
        if (w->open_loop)
            bench_backlog_unpop(w, intended);
        else if (w->limited)
            w->remaining++;
        h->no_more = true;
        return -1;
    }
    st->id = id;
    h->nactive++;
    h->submitted++;
    w->res.sent++;
    w->inflight++;
    if (!event_pending(&c->tmo, EV_TIMEOUT, NULL))
        arm_timer(c, w->timeout_ns);
    return 0;
}

bool
bench_h2_has_slot(const struct bconn *c)
{
    const struct bench_h2 *h = c->h2;
    return h != NULL && h->s != NULL && h->nfree > 0 && !h->no_more;
}

/* Fills free slots: the budget (closed loop) or the backlog (open loop). */
static unsigned
fill(struct bconn *c)
{
    struct worker *w = c->w;
    const struct bench_net *net = w->net;
    struct bench_h2 *h = c->h2;
    unsigned n = 0;

    while (h->nfree > 0 && !h->no_more) {
        uint64_t t;
        if (net->new_conn && h->submitted >= net->streams) {
            h->no_more = true; /* its share is sent: close when answered */
            break;
        }
        if (w->open_loop) {
            if (!bench_backlog_pop(w, &t))
                break;
        } else {
            if (!bench_take_budget(w))
                break;
            /* --new-conn: the latency includes the connect and handshake */
            t = net->new_conn ? c->t_connect : bench_now_ns();
        }
        if (submit(c, t) < 0)
            break;
        n++;
    }
    if (w->open_loop && bench_h2_has_slot(c))
        bench_idle_push(c);
    return n;
}

/* Frames to the socket until nghttp2 has nothing more or the socket would block. -1 when the
 * connection failed (and was closed). */
static int
flush(struct bconn *c)
{
    struct bench_h2 *h = c->h2;

    for (;;) {
        if (h->out_off == h->out_len) {
            h->out_off = h->out_len = 0;
            if (nghttp2_session_send(h->s) != 0) {
                bench_conn_fail(c, BENCH_ERR_BAD_RESPONSE);
                return -1;
            }
            if (h->out_len == 0)
                break;
        }
        struct iovec iov = {h->out + h->out_off, h->out_len - h->out_off};
        ssize_t k = c->io->writev(c, &iov, 1);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                event_add(&c->wr, NULL);
                return 0;
            }
            bench_conn_fail(c, BENCH_ERR_RESET);
            return -1;
        }
        h->out_off += (size_t)k;
    }
    event_del(&c->wr);
    return 0;
}

/* GOAWAY(NO_ERROR), best effort, before closing a connection with nothing in flight. */
static void
goodbye(struct bconn *c)
{
    struct bench_h2 *h = c->h2;

    if (nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR) != 0)
        return;
    if (h->out_off == h->out_len) {
        h->out_off = h->out_len = 0;
        if (nghttp2_session_send(h->s) != 0)
            return;
    }
    if (h->out_len > h->out_off) {
        struct iovec iov = {h->out + h->out_off, h->out_len - h->out_off};
        (void)c->io->writev(c, &iov, 1);
    }
}

/* After any event: new requests into free slots, frames out, and the connection's fate. */
static void
pump(struct bconn *c)
{
    struct worker *w = c->w;
    struct bench_h2 *h = c->h2;

    if (c->st != C_H2 || h->s == NULL)
        return;
    fill(c);
    if (flush(c) < 0)
        return;
    /* sending may close streams (a reset, an upload cut short): refill once */
    if (fill(c) > 0 && flush(c) < 0)
        return;
    if (h->nactive == 0)
        event_del(&c->tmo);
    if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s)) {
        /* the session ended (GOAWAY both ways, or a connection error) */
        if (h->nactive > 0)
            bench_conn_fail(c, BENCH_ERR_BAD_RESPONSE);
        else
            bench_conn_recycle(c);
        return;
    }
    if (h->no_more && h->nactive == 0) {
        goodbye(c);
        bench_conn_recycle(c);
        return;
    }
    bench_worker_check_done(w);
}

void
bench_h2_start(struct bconn *c)
{
    struct worker *w = c->w;
    unsigned streams = w->net->streams;
    struct bench_h2 *h = c->h2;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        /* large windows: a benchmark reads as fast as it can, WINDOW_UPDATE round trips
         * would only throttle big bodies */
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 24},
    };

    c->st = C_H2;
    if (h == NULL) {
        h = c->h2 = h2_alloc(streams);
        if (h == NULL) {
            bench_conn_fail(c, BENCH_ERR_CONNECT);
            return;
        }
    }
    h->nactive = 0;
    h->submitted = 0;
    h->no_more = false;
    h->out_off = h->out_len = 0;
    h->nfree = streams;
    for (unsigned i = 0; i < streams; i++) {
        h->st[i].magic = BENCH_STREAM_MAGIC;
        h->st[i].id = 0;
        h->free_slots[i] = streams - 1 - i;
    }
    if (nghttp2_session_client_new(&h->s, w->h2_cbs, c) != 0) {
        h->s = NULL;
        bench_conn_fail(c, BENCH_ERR_CONNECT);
        return;
    }
    if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, 1 << 30) != 0) {
        bench_conn_fail(c, BENCH_ERR_CONNECT);
        return;
    }
    pump(c);
}

void
bench_h2_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bconn *c = bench_conn_of(arg);
    struct worker *w = c->w;
    (void)fd;
    (void)what;

    if (c->st == C_HANDSHAKE) {
        bench_tls_handshake(c);
        return;
    }
    if (c->st != C_H2 || c->h2->s == NULL)
        return;
    do {
        ssize_t n = c->io->read(c, w->rbuf, sizeof(w->rbuf));
        if (n > 0) {
            ssize_t rv = nghttp2_session_mem_recv(c->h2->s, (const uint8_t *)w->rbuf, (size_t)n);
            if (rv < 0) {
                bench_conn_fail(c, BENCH_ERR_BAD_RESPONSE);
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        /* end of stream or error: requests in flight are lost, else just reconnect */
        if (c->h2->nactive > 0)
            bench_conn_fail(c, BENCH_ERR_RESET);
        else
            bench_conn_recycle(c);
        return;
    } while (bench_tls_pending(c));
    pump(c);
}

void
bench_h2_writable(struct bconn *c)
{
    pump(c);
}

void
bench_h2_dispatch(struct bconn *c, uint64_t intended)
{
    submit(c, intended);
    pump(c);
}

void
bench_h2_timeout(struct bconn *c)
{
    struct worker *w = c->w;
    struct bench_h2 *h = c->h2;
    uint64_t now = bench_now_ns(), next = UINT64_MAX;
    unsigned live = 0, expired = 0;

    if (h == NULL || h->s == NULL)
        return;
    for (unsigned i = 0; i < w->net->streams; i++) {
        struct bench_stream *st = &h->st[i];
        if (st->id == 0 || st->timed_out)
            continue;
        if (now - st->t_sent >= w->timeout_ns) {
            st->timed_out = true;
            count_error(w, BENCH_ERR_TIMEOUT);
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
            expired++;
        } else {
            live++;
            if (st->t_sent + w->timeout_ns < next)
                next = st->t_sent + w->timeout_ns;
        }
    }
    if (expired > 0 && live == 0) {
        /* nothing on it answers in time: a new connection, as HTTP/1.1 would */
        bench_conn_recycle(c);
        return;
    }
    if (next != UINT64_MAX)
        arm_timer(c, next - now);
    pump(c);
}

unsigned
bench_h2_drop(struct bconn *c)
{
    struct bench_h2 *h = c->h2;
    unsigned lost = 0;

    if (h == NULL || h->s == NULL)
        return 0;
    for (unsigned i = 0; i < c->w->net->streams; i++) {
        struct bench_stream *st = &h->st[i];
        if (st->id == 0)
            continue;
        if (!st->timed_out)
            lost++;
        st->id = 0;
    }
    c->w->inflight -= h->nactive;
    h->nactive = 0;
    h->nfree = 0; /* bench_h2_start resets the slots */
    nghttp2_session_del(h->s);
    h->s = NULL;
    return lost;
}

void
bench_h2_free(struct bconn *c)
{
    if (c->h2 == NULL)
        return;
    if (c->h2->s != NULL)
        nghttp2_session_del(c->h2->s);
    free(c->h2);
    c->h2 = NULL;
}
