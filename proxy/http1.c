/*
 * HTTP/1.1 client side: one struct proxy_conn per accepted connection, llhttp
 * in request mode, one request in flight at a time. Pipelined requests wait
 * in the input buffer: the parser pauses at the end of every message and
 * resumes when that message's response is done, so answers go out in order.
 * Each request runs through the pipeline (req.c) and is answered through
 * this file's sink (h1_sink): HTTP/1.1 text on the connection.
 *
 * Bodies stream both ways with backpressure: the client is not read while
 * the request body waits for the upstream, and the upstream is not read while
 * the client's output buffer is above PROXY_HIGH_WATER (see upstream.c).
 */
#include "proxy/internal.h"

#include "compute/compute.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/tcp.h>

#define PROXY_HIGH_WATER (256 * 1024)
#define PROXY_FEED_MAX (64 * 1024)

static void conn_readcb(struct bufferevent *bev, void *arg);
static void conn_writecb(struct bufferevent *bev, void *arg);
static void conn_eventcb(struct bufferevent *bev, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_defer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_feed(struct proxy_conn *c);
static void req_maybe_finish(struct proxy_req *r);
static void conn_close_after_flush(struct proxy_conn *c);

static int on_message_begin(llhttp_t *p);
static int on_url(llhttp_t *p, const char *at, size_t len);
static int on_header_field(llhttp_t *p, const char *at, size_t len);
static int on_header_value(llhttp_t *p, const char *at, size_t len);
static int on_headers_complete(llhttp_t *p);
static int on_body(llhttp_t *p, const char *at, size_t len);
static int on_message_complete(llhttp_t *p);

static llhttp_settings_t req_settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static void
settings_init(void)
{
    llhttp_settings_init(&req_settings);
    req_settings.on_message_begin = on_message_begin;
    req_settings.on_url = on_url;
    req_settings.on_header_field = on_header_field;
    req_settings.on_header_value = on_header_value;
    req_settings.on_headers_complete = on_headers_complete;
    req_settings.on_body = on_body;
    req_settings.on_message_complete = on_message_complete;
}

static const struct conf_limits *
limits(const struct proxy_conn *c)
{
    return &c->w->conf->limits;
}

static void
timer_arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    event_add(ev, &tv);
}

/* The client-side timeouts: 'reading' adds client_body_timeout on reads;
 * writes always have send_timeout (it only runs while a write waits, that
 * is, while the client does not read). */
static void
conn_timeouts(struct proxy_conn *c, bool reading)
{
    const struct conf_limits *lim = &c->w->conf->limits;
    struct timeval rtv = {.tv_sec = (time_t)(lim->client_body_timeout_ms / 1000),
                          .tv_usec = (suseconds_t)(lim->client_body_timeout_ms % 1000) * 1000};
    struct timeval wtv = {.tv_sec = (time_t)(lim->send_timeout_ms / 1000),
                          .tv_usec = (suseconds_t)(lim->send_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, reading ? &rtv : NULL, &wtv);
}

static void
conn_defer(struct proxy_conn *c)
{
    event_active(c->defer, EV_TIMEOUT, 0);
}

/*
 * Writes go out directly (writev from the evbuffer) instead of waiting for a
 * write event: EV_WRITE stays disabled unless a write could not finish, which
 * saves two epoll_ctl calls per response. Returns -1 on a write error (the
 * write event is then enabled so the bufferevent reports it).
 */
int
proxy_bev_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    int fd = bufferevent_getfd(bev);

    if (fd < 0 || bufferevent_openssl_get_ssl(bev) != NULL) {
        /* a pair (internal request), or TLS: only the bufferevent's own
         * write path may move it (SSL_write makes the records; tls.c) */
        size_t len = evbuffer_get_length(out);
        if (len > 0 && fd >= 0 && len <= PROXY_TLS_COALESCE)
            evbuffer_pullup(out, -1); /* one SSL_write: one record, one send */
        if (len > 0)
            bufferevent_enable(bev, EV_WRITE);
        return 0;
    }
    /* a large answer (a head then a file by sendfile): corked, the head
     * leaves in the body's first full segments instead of a packet of its own */
    bool cork = evbuffer_get_length(out) >= PROXY_CORK_MIN;
    int on = 1, off = 0;
    if (cork)
        setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
    while (evbuffer_get_length(out) > 0) {
        int n;
        /* a socket bufferevent keeps its output's start frozen so that only
         * its own write path drains it; we are that write path here */
        evbuffer_unfreeze(out, 1);
        errno = 0;
        n = evbuffer_write(out, fd);
        evbuffer_freeze(out, 1);
        if (n < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (cork)
                setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
            bufferevent_enable(bev, EV_WRITE); /* an error is then reported by the bev */
            return (e == EAGAIN || e == EWOULDBLOCK) ? 0 : -1;
        }
        if (n == 0)
            break;
    }
    if (cork)
        setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off)); /* what is left goes now */
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(bev, EV_WRITE);
    return 0;
}

/* Flushes the client's output once the current callback is done, so that a
 * head and its body leave in one writev. */
void
proxy_conn_want_flush(struct proxy_conn *c)
{
    if (!c->flush_wanted) {
        c->flush_wanted = true;
        conn_defer(c);
    }
}

static struct proxy_conn *conn_new(struct proxy_worker *w, struct bufferevent *bev, int fd,
                                   const char *peer);

void
proxy_conn_accept(struct proxy_worker *w, int fd, const struct sockaddr *sa, int salen,
                  unsigned listen_flags)
{
    const struct conf_limits *lim = &w->conf->limits;
    struct bufferevent *bev;
    struct proxy_tls *tls = NULL;
    struct proxy_conn *c;
    char peer[64];
    int one = 1;

    (void)salen;
    pthread_once(&settings_once, settings_init);
    if (w->draining || w->nconns - w->ninternal >= lim->max_connections) {
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 28\r\nConnection: close\r\n\r\n"
                                   "503 too many connections\r\n\r\n";
        STAT_INC(w, conns_rejected);
        if (!(listen_flags & PROXY_LISTEN_TLS)) { /* no plaintext answer on a TLS port */
            ssize_t n = write(fd, busy, sizeof(busy) - 1);
            (void)n;
        }
        close(fd);
        return;
    }
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, peer, sizeof(peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, peer, sizeof(peer));
    else
        snprintf(peer, sizeof(peer), "unix");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (listen_flags & PROXY_LISTEN_TLS) {
        bev = proxy_tls_bev_new(w, fd, listen_flags, &tls); /* takes fd */
        if (bev == NULL)
            return;
    } else {
        bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            close(fd);
            return;
        }
    }
    c = conn_new(w, bev, fd, peer);
    if (c == NULL) {
        proxy_tls_discard(tls);
        return;
    }
    c->tls = tls;
    c->https = tls != NULL;
    c->listen_flags = listen_flags;
    /* h2: prior-knowledge h2c on a plain listener marked h2 (TLS ones use ALPN) */
    if ((listen_flags & PROXY_LISTEN_H2) && !(listen_flags & PROXY_LISTEN_TLS))
        c->h2_sniff = true;
}

static void conn_destroy(void *arg);

/* A connection object from the worker's free list (its head buffer, cache
 * views and events kept; the head remade when the limits changed), or a new
 * one. NULL when out of memory. */
static struct proxy_conn *
conn_get(struct proxy_worker *w)
{
    const struct conf_limits *lim = &w->conf->limits;
    struct proxy_conn *c = proxy_pool_get(&w->conn_pool);

    if (c != NULL) {
        struct proxy_head head = c->head;
        struct event *timer = c->timer, *defer = c->defer;

        memset(c, 0, sizeof(*c));
        c->head = head;
        c->timer = timer;
        c->defer = defer;
        c->w = w;
        proxy_head_reset(&c->head);
        c->head.max_headers = lim->max_headers;
        if (c->head.cap == lim->max_header_size)
            return c;
        proxy_head_fini(&c->head);
        if (proxy_head_init(&c->head, lim->max_header_size, lim->max_headers) == 0)
            return c;
        conn_destroy(c);
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || proxy_head_init(&c->head, lim->max_header_size, lim->max_headers) < 0) {
        free(c);
        return NULL;
    }
    c->w = w;
    c->timer = evtimer_new(w->base, conn_timer_cb, c);
    c->defer = event_new(w->base, -1, 0, conn_defer_cb, c);
    if (c->timer == NULL || c->defer == NULL) {
        conn_destroy(c);
        return NULL;
    }
    return c;
}

/* Frees a connection object for good (conn_get's pool at worker exit). */
static void
conn_destroy(void *arg)
{
    struct proxy_conn *c = arg;

    if (c->timer != NULL)
        event_free(c->timer);
    if (c->defer != NULL)
        event_free(c->defer);
    proxy_head_fini(&c->head);
    free(c);
}

static void
req_destroy(void *arg)
{
    free(arg);
}

int
proxy_worker_pools_init(struct proxy_worker *w)
{
    if (proxy_pool_init(&w->req_pool, 256) < 0 || proxy_pool_init(&w->conn_pool, 64) < 0 ||
        proxy_pool_init(&w->h2_pool, 128) < 0)
        return -1;
    return 0;
}

/* After every connection and session of w is freed. */
void
proxy_worker_pools_fini(struct proxy_worker *w)
{
    proxy_pool_fini(&w->req_pool, req_destroy);
    proxy_pool_fini(&w->conn_pool, conn_destroy);
    proxy_h2_pool_fini(w);
}

/* A connection on bev (a socket, or one end of a pair for internal
 * requests); takes bev. NULL when out of memory (bev freed). */
static struct proxy_conn *
conn_new(struct proxy_worker *w, struct bufferevent *bev, int fd, const char *peer)
{
    const struct conf_limits *lim = &w->conf->limits;
    struct proxy_conn *c;

    pthread_once(&settings_once, settings_init);
    if ((c = conn_get(w)) == NULL) {
        bufferevent_free(bev);
        return NULL;
    }
    c->magic = PROXY_CONN_MAGIC;
    c->fd = fd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->bev = bev;
    llhttp_init(&c->parser, HTTP_REQUEST, &req_settings);
    c->parser.data = c;
    /* libevent caps one read/write at 16 KiB by default: a 4 MiB cache hit
     * would take 256 writes once the socket buffer is full */
    bufferevent_set_max_single_read(c->bev, PROXY_FEED_MAX);
    bufferevent_set_max_single_write(c->bev, 4 * 1024 * 1024);
    bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, PROXY_FEED_MAX);
    bufferevent_setwatermark(c->bev, EV_WRITE, PROXY_HIGH_WATER / 4, 0);
    bufferevent_disable(c->bev, EV_WRITE); /* only while a write is pending */
    conn_timeouts(c, false);
    bufferevent_enable(c->bev, EV_READ);
    TAILQ_INSERT_TAIL(&w->conns, c, link);
    w->nconns++;
    if (fd >= 0) {
        STAT_INC(w, conns_accepted);
        STAT_INC(w, conns_active);
    } else {
        w->ninternal++; /* a pair (a background refresh): not a client connection */
    }
    c->state = CONN_IDLE;
    /* the first request gets the header timeout from the accept on */
    timer_arm(c->timer, lim->client_header_timeout_ms);
    return c;
}

void
proxy_conn_to_h2(struct proxy_conn *c)
{
    struct bufferevent *bev = c->bev;

    CHECK_MAGIC(c, PROXY_CONN_MAGIC);
    BUG_ON(c->req != NULL || bev == NULL);
    /* the socket (and what was read of it) moves to the session; this
     * connection object goes away from the loop */
    struct proxy_tls *tls = c->tls; /* the session owns the handshake's state now */

    c->bev = NULL;
    c->tls = NULL;
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    event_del(c->timer);
    c->want_free = true;
    conn_defer(c);
    proxy_h2_start(c->w, bev, c->peer, tls);
}

/* ---- internal requests (background refresh) ------------------------------------------- */

struct internal_client {
    struct bufferevent *bev;
    struct event *guard;
    void (*done)(void *arg);
    void *arg;
};

static void
internal_end(struct internal_client *ic)
{
    if (ic->done != NULL)
        ic->done(ic->arg);
    bufferevent_free(ic->bev);
    event_free(ic->guard);
    free(ic);
}

static void
internal_readcb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in)); /* the answer itself is not needed */
}

static void
internal_eventcb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    internal_end(arg);
}

static void
internal_guard_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    internal_end(arg);
}

/* Runs the request 'text' through this worker as if a client had sent it
 * (routing, cache, origin): the background revalidation of
 * stale-while-revalidate. done(arg) is called once, when it is over. */
int
proxy_internal_request(struct proxy_worker *w, const char *text, size_t len, bool https,
                       void (*done)(void *arg), void *arg)
{
    struct bufferevent *pair[2];
    struct internal_client *ic = calloc(1, sizeof(*ic));
    struct timeval tv = {.tv_sec = 300};
    struct proxy_conn *c;

    if (ic == NULL)
        return -1;
    if (bufferevent_pair_new(w->base, BEV_OPT_CLOSE_ON_FREE, pair) < 0) {
        free(ic);
        return -1;
    }
    ic->bev = pair[1];
    ic->done = done;
    ic->arg = arg;
    ic->guard = evtimer_new(w->base, internal_guard_cb, ic);
    if (ic->guard == NULL || (c = conn_new(w, pair[0], -1, "internal")) == NULL) {
        if (ic->guard != NULL)
            event_free(ic->guard);
        bufferevent_free(pair[1]);
        free(ic);
        return -1;
    }
    c->https = https;
    event_add(ic->guard, &tv); /* the origin's timeouts end it long before */
    bufferevent_setcb(pair[1], internal_readcb, NULL, internal_eventcb, ic);
    bufferevent_enable(pair[1], EV_READ | EV_WRITE);
    bufferevent_write(pair[1], text, len);
    return 0;
}

void
proxy_conn_free(struct proxy_conn *c)
{
    CHECK_MAGIC(c, PROXY_CONN_MAGIC);
    if (c->req != NULL) {
        struct proxy_req *r = c->req;
        c->req = NULL;
        proxy_req_gone(r); /* logged as 499 when the answer was not complete */
    }
    if (c->tunnel != NULL)
        bufferevent_free(c->tunnel);
    proxy_tls_conn_free(c);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->w != NULL && c->magic == PROXY_CONN_MAGIC && c->state != (enum proxy_conn_state)-1) {
        struct proxy_worker *w = c->w;
        if (c->link.tqe_prev != NULL) {
            TAILQ_REMOVE(&w->conns, c, link);
            w->nconns--;
            if (c->fd >= 0)
                STAT_DEC(w, conns_active);
            else
                w->ninternal--;
            proxy_worker_conn_gone(w);
        }
    }
    c->magic = PROXY_DEAD_MAGIC;
    /* back to the worker's free list with its buffers and (idle) events */
    if (c->timer != NULL && c->defer != NULL) {
        event_del(c->timer);
        event_del(c->defer);
        if (proxy_pool_put(&c->w->conn_pool, c))
            return;
    }
    conn_destroy(c);
}

/* Closes an idle connection now, a busy one after its current response. */
void
proxy_conn_drain(struct proxy_conn *c)
{
    if (c->state == CONN_IDLE) {
        c->want_free = true;
        conn_defer(c);
    } else if (c->req != NULL) {
        c->req->resp_close = true;
    }
}

/* ---- the HTTP/1.1 sink: responses as text on the connection -------------------------- */

static struct evbuffer *
conn_out(struct proxy_conn *c)
{
    return bufferevent_get_output(c->bev);
}

/* The head in one piece (the worker's head builder), with the body behind
 * it for a complete answer. Framing and the Connection field are decided
 * here: chunked for a 1.1 client when the length is unknown, close for 1.0
 * (origin answers); close when the client did not ask to keep the
 * connection, when draining, and for an answer made without reading a
 * large request body. */
static void
h1_head(struct proxy_req *r, const struct proxy_resp *p)
{
    struct proxy_conn *c = r->c;
    struct proxy_hb *b = &c->w->hb;

    if (!r->keepalive || c->w->draining)
        r->resp_close = true;
    if (p->edge) {
        if (!r->body_done && (r->chunked || r->content_length > 65536))
            r->resp_close = true; /* not worth reading a large body we will not use */
        r->resp_chunked = false;
    } else {
        if (r->upgrade && p->status != 101)
            r->resp_close = true; /* the parser stopped at the upgrade: no next request */
        if (!p->nobody && p->length < 0) {
            /* the origin streams without a length: chunk it to 1.1 clients, close for 1.0 */
            if (r->http_major == 1 && r->http_minor >= 1)
                r->resp_chunked = true;
            else
                r->resp_close = true;
        }
    }
    b->out = conn_out(c);
    b->len = 0;
    proxy_hb_lit(b, "HTTP/1.1 ");
    proxy_hb_u64(b, (uint64_t)p->status);
    proxy_hb_lit(b, " ");
    if (p->reason != NULL)
        proxy_hb_add(b, p->reason, p->reason_len);
    else
        proxy_hb_str(b, proxy_status_reason(p->status));
    proxy_hb_lit(b, "\r\n");
    for (size_t i = 0; i < p->nf; i++)
        proxy_hb_hdr(b, p->f[i].name, p->f[i].nlen, p->f[i].value, p->f[i].vlen);
    if (p->status == 101) {
        if (p->upgrade != NULL)
            proxy_hb_hdr(b, "Upgrade", 7, p->upgrade, p->upgrade_len);
        proxy_hb_lit(b, "Connection: upgrade\r\n");
    } else {
        if (r->resp_chunked)
            proxy_hb_lit(b, "Transfer-Encoding: chunked\r\n");
        if (r->resp_close)
            proxy_hb_lit(b, "Connection: close\r\n");
        else if (!p->edge && r->http_minor == 0)
            proxy_hb_lit(b, "Connection: keep-alive\r\n");
    }
    proxy_hb_lit(b, "\r\n");
    if (p->complete && p->body_len > 0)
        proxy_hb_add(b, p->body, p->body_len);
    proxy_hb_flush(b);
    proxy_conn_want_flush(c);
}

static void
h1_data(struct proxy_req *r, const void *p, size_t n)
{
    struct evbuffer *out = conn_out(r->c);

    if (r->resp_chunked) {
        proxy_chunk_head(out, n);
        evbuffer_add(out, p, n);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, p, n);
    }
    proxy_conn_want_flush(r->c);
}

static bool
h1_data_ref(struct proxy_req *r, const void *p, size_t n,
            void (*unref)(const void *p, size_t n, void *arg), void *arg)
{
    struct evbuffer *out = conn_out(r->c);

    if (r->resp_chunked)
        proxy_chunk_head(out, n);
    if (evbuffer_add_reference(out, p, n, unref, arg) < 0) {
        unref(p, n, arg);
        return false;
    }
    if (r->resp_chunked)
        evbuffer_add(out, "\r\n", 2);
    proxy_conn_want_flush(r->c);
    return true;
}

/* By sendfile on plain connections (libevent maps the range for TLS and
 * for pairs, whose output does not drain to a socket). */
static bool
h1_data_file(struct proxy_req *r, int fd, uint64_t off, uint64_t len)
{
    struct evbuffer *out = conn_out(r->c);
    int dfd = dup(fd);

    if (r->resp_chunked)
        proxy_chunk_head(out, (size_t)len);
    if (dfd < 0 || evbuffer_add_file(out, dfd, (ev_off_t)off, (ev_off_t)len) < 0) {
        if (dfd >= 0)
            close(dfd);
        return false;
    }
    if (r->resp_chunked)
        evbuffer_add(out, "\r\n", 2);
    proxy_conn_want_flush(r->c);
    return true;
}

static void
h1_end(struct proxy_req *r)
{
    if (r->resp_chunked)
        evbuffer_add(conn_out(r->c), "0\r\n\r\n", 5);
    proxy_conn_want_flush(r->c);
}

/* The head is out: cutting the connection is the only honest signal left. */
static void
h1_abort(struct proxy_req *r)
{
    r->resp_close = true;
    r->c->want_free = true;
    conn_defer(r->c);
}

static bool
h1_congested(const struct proxy_req *r)
{
    if (r->c->orphan)
        return false; /* its output is discarded */
    return evbuffer_get_length(bufferevent_get_output(r->c->bev)) > PROXY_HIGH_WATER;
}

static void
h1_cont(struct proxy_req *r)
{
    evbuffer_add(conn_out(r->c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    proxy_conn_want_flush(r->c);
}

static void
h1_body_wanted(struct proxy_req *r)
{
    struct proxy_conn *c = r->c;
    if (c->reading_blocked && evbuffer_get_length(r->body) <= PROXY_HIGH_WATER / 2) {
        c->reading_blocked = false;
        bufferevent_enable(c->bev, EV_READ);
        c->want_resume = true;
        conn_defer(c);
    }
}

static void
h1_check_done(struct proxy_req *r)
{
    proxy_conn_want_flush(r->c);
    req_maybe_finish(r);
}

/* An origin's interim answer (103 Early Hints, 102 Processing): HTTP/1.0
 * clients must not get one (RFC 9110 15.2). */
static void
h1_interim(struct proxy_req *r, int status, const struct proxy_hdr *f, size_t nf)
{
    struct proxy_hb *b = &r->w->hb;

    if (r->http_major != 1 || r->http_minor < 1)
        return;
    b->out = conn_out(r->c);
    b->len = 0;
    proxy_hb_lit(b, "HTTP/1.1 ");
    proxy_hb_u64(b, (uint64_t)status);
    proxy_hb_lit(b, " ");
    proxy_hb_str(b, proxy_status_reason(status));
    proxy_hb_lit(b, "\r\n");
    for (size_t i = 0; i < nf; i++)
        proxy_hb_hdr(b, f[i].name, f[i].nlen, f[i].value, f[i].vlen);
    proxy_hb_lit(b, "\r\n");
    proxy_hb_flush(b);
    proxy_conn_want_flush(r->c);
}

static const struct proxy_sink h1_sink = {
    .head = h1_head,
    .data = h1_data,
    .data_ref = h1_data_ref,
    .data_file = h1_data_file,
    .end = h1_end,
    .abort = h1_abort,
    .congested = h1_congested,
    .cont = h1_cont,
    .interim = h1_interim,
    .body_wanted = h1_body_wanted,
    .check_done = h1_check_done,
};

/* ---- llhttp callbacks -------------------------------------------------------------- */

static int
on_message_begin(llhttp_t *p)
{
    struct proxy_conn *c = p->data;
    struct proxy_req *r;

    BUG_ON(c->req != NULL);
    proxy_head_reset(&c->head);
    if ((r = proxy_req_new(c->w)) == NULL) {
        c->parse_error = 503;
        return HPE_USER;
    }
    r->sink = &h1_sink;
    r->c = c;
    r->head = &c->head;
    r->peer = c->peer;
    r->tls = c->tls;
    r->https = c->https;
    r->internal = c->fd < 0; /* a pair: a background refresh */
    c->req = r;
    c->requests++;
    if (c->state == CONN_IDLE) {
        c->state = CONN_HEAD;
        timer_arm(c->timer, limits(c)->client_header_timeout_ms);
    }
    return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
    struct proxy_conn *c = p->data;
    if (proxy_head_url(&c->head, at, len, limits(c)->max_uri_length) < 0) {
        c->parse_error = c->head.overflow;
        return HPE_USER;
    }
    return 0;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct proxy_conn *c = p->data;
    if (proxy_head_field(&c->head, at, len) < 0) {
        c->parse_error = c->head.overflow;
        return HPE_USER;
    }
    return 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct proxy_conn *c = p->data;
    if (proxy_head_value(&c->head, at, len) < 0) {
        c->parse_error = c->head.overflow ? c->head.overflow : 400;
        return HPE_USER;
    }
    return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
    struct proxy_conn *c = p->data;
    struct proxy_req *r = c->req;

    event_del(c->timer);
    c->state = CONN_BUSY;
    r->method = llhttp_get_method(p);
    r->method_name = llhttp_method_name((llhttp_method_t)r->method);
    r->http_major = llhttp_get_http_major(p);
    r->http_minor = llhttp_get_http_minor(p);
    r->keepalive = llhttp_should_keep_alive(p);
    r->chunked = (p->flags & F_CHUNKED) != 0;
    if (p->flags & F_CONTENT_LENGTH)
        r->content_length = (int64_t)p->content_length;
    r->upgrade = (p->flags & F_UPGRADE) != 0 || p->upgrade;
    if (r->content_length > 0 || r->chunked)
        conn_timeouts(c, true);
    proxy_req_dispatch(r);
    return 0; /* for Upgrade requests llhttp stops with HPE_PAUSED_UPGRADE after the head */
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
    struct proxy_conn *c = p->data;
    struct proxy_req *r = c->req;
    int rc;

    if (r == NULL)
        return HPE_PAUSED; /* answered and freed from on_headers_complete: closing */
    if ((rc = proxy_req_body(r, at, len)) != 0) {
        c->parse_error = rc; /* 413 */
        return HPE_USER;
    }
    return 0;
}

static int
on_message_complete(llhttp_t *p)
{
    struct proxy_conn *c = p->data;
    struct proxy_req *r = c->req;

    if (r == NULL)
        return HPE_PAUSED; /* answered and freed from on_headers_complete: closing */
    conn_timeouts(c, false);
    proxy_req_body_end(r);
    return HPE_PAUSED;
}

/* ---- feeding the parser --------------------------------------------------------------- */

static void
conn_fail(struct proxy_conn *c, int status, const char *why)
{
    struct proxy_req *r = c->req;

    if (r == NULL) {
        /* error before a request object existed: answer on the bare connection */
        if (on_message_begin(&c->parser) != 0 || c->req == NULL) {
            c->want_free = true;
            conn_defer(c);
            return;
        }
        r = c->req;
    }
    if (r->request_id[0] == '\0')
        proxy_reqid_make(c->w, r->request_id, sizeof(r->request_id));
    if (r->method_name == NULL)
        r->method_name = "-";
    r->resp_close = true;
    r->body_done = true;
    if (r->up != NULL || r->dnsq != NULL)
        proxy_upstream_abort(r);
    if (!r->resp_started)
        proxy_resp_error(r, status, "%s", why);
    else {
        r->resp_done = true;
        req_maybe_finish(r);
    }
}

static const char *
parse_error_text(int status)
{
    switch (status) {
    case 413: return "request body is over the limit";
    case 414: return "request URI is over the limit";
    case 431: return "request header block is over the limit";
    default: return "malformed request";
    }
}

static void
conn_feed(struct proxy_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while (!c->parser_paused && !c->want_free && c->state != CONN_CLOSING &&
           c->state != CONN_TUNNEL) {
        struct evbuffer_iovec v;
        size_t avail = evbuffer_get_length(in), len, used;
        enum llhttp_errno err;
        struct proxy_req *r = c->req;

        if (avail == 0)
            break;
        if (r != NULL && r->body != NULL && !r->resp_done && !r->fx_body_wait &&
            evbuffer_get_length(r->body) > PROXY_HIGH_WATER) {
            /* upstream is not taking the body as fast: stop reading the client */
            c->reading_blocked = true;
            bufferevent_disable(c->bev, EV_READ);
            break;
        }
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        len = v.iov_len;
        if (len > PROXY_FEED_MAX)
            len = PROXY_FEED_MAX;
        c->in_parser = true;
        err = llhttp_execute(&c->parser, v.iov_base, len);
        c->in_parser = false;
        used = len;
        if (err != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            if (pos != NULL && pos >= (const char *)v.iov_base &&
                pos <= (const char *)v.iov_base + len)
                used = (size_t)(pos - (const char *)v.iov_base);
        }
        evbuffer_drain(in, used);
        if (c->fd >= 0) /* an internal connection's bytes were counted where they came in */
            STAT_ADD(c->w, bytes_in, used);
        if (err == HPE_PAUSED) {
            c->parser_paused = true;
        } else if (err == HPE_PAUSED_UPGRADE) {
            c->parser_paused = true;
            if (c->req != NULL)
                c->req->body_done = true;
        } else if (err != HPE_OK) {
            int status = c->parse_error ? c->parse_error : 400;
            const char *why = parse_error_text(status);
            if (status == 400 && c->parse_error == 0)
                why = llhttp_get_error_reason(&c->parser);
            c->parse_error = 0;
            conn_fail(c, status, why ? why : "malformed request");
            return;
        }
    }
    if (c->req != NULL)
        req_maybe_finish(c->req);
}

/* The client went while its request leads a response that other requests
 * read from the cache file as it is written (proxy_cache_fill_orphan): the
 * request runs on to store it, without a client; what it writes is
 * discarded and the connection is freed when the request ends. */
static void
conn_orphan(struct proxy_conn *c)
{
    c->orphan = true;
    c->want_free = false;
    c->req->resp_close = true;
    event_del(c->timer);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    evbuffer_drain(conn_out(c), evbuffer_get_length(conn_out(c)));
    proxy_upstream_resume(c->req); /* it may have paused for that client */
}

static void
conn_close_after_flush(struct proxy_conn *c)
{
    if (c->orphan) {
        evbuffer_drain(conn_out(c), evbuffer_get_length(conn_out(c)));
        c->want_free = true;
        conn_defer(c);
        return;
    }
    c->state = CONN_CLOSING;
    event_del(c->timer);
    bufferevent_disable(c->bev, EV_READ);
    conn_timeouts(c, false);
    if (proxy_bev_flush(c->bev) < 0) {
        c->want_free = true;
        conn_defer(c);
        return;
    }
    if (evbuffer_get_length(conn_out(c)) == 0) {
        c->want_free = true;
        conn_defer(c);
    } else {
        bufferevent_enable(c->bev, EV_WRITE); /* send_timeout bounds a client that does not read */
    }
}

static void
req_maybe_finish(struct proxy_req *r)
{
    struct proxy_conn *c = r->c;

    if (!r->resp_done || c->state == CONN_TUNNEL)
        return;
    if (c->in_parser)
        return; /* answered from a parser callback: conn_feed finishes it after llhttp returns */
    if (!r->body_done) {
        /* answered before the body was read (error, early origin answer) */
        r->resp_close = true;
    }
    proxy_req_log_done(r);
    if (r->up != NULL || r->dnsq != NULL)
        return; /* the upstream side still owns a reference; it calls back */
    c->req = NULL;
    bool close = r->resp_close || c->w->draining;
    proxy_req_free(r);
    if (close) {
        conn_close_after_flush(c);
        return;
    }
    /* keep-alive: wait for the next request */
    c->state = CONN_IDLE;
    conn_timeouts(c, false);
    timer_arm(c->timer, limits(c)->keepalive_timeout_ms);
    if (c->parser_paused) {
        c->parser_paused = false;
        llhttp_resume(&c->parser);
    }
    if (c->reading_blocked) {
        c->reading_blocked = false;
    }
    bufferevent_enable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        c->want_resume = true; /* pipelined bytes are waiting: parse them outside this stack */
        conn_defer(c);
    }
}

/* ---- tunnels (Upgrade: websocket) --------------------------------------------------- */

static void
tunnel_pump(struct bufferevent *from, struct bufferevent *to)
{
    struct evbuffer *out = bufferevent_get_output(to);
    evbuffer_add_buffer(out, bufferevent_get_input(from));
    if (evbuffer_get_length(out) > PROXY_HIGH_WATER)
        bufferevent_disable(from, EV_READ);
}

static void
tunnel_readcb(struct bufferevent *bev, void *arg)
{
    struct proxy_conn *c = arg;
    if (bev == c->bev)
        tunnel_pump(c->bev, c->tunnel);
    else
        tunnel_pump(c->tunnel, c->bev);
}

static void
tunnel_writecb(struct bufferevent *bev, void *arg)
{
    struct proxy_conn *c = arg;
    struct bufferevent *other = bev == c->bev ? c->tunnel : c->bev;

    if (c->want_free) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_defer(c);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_output(bev)) <= PROXY_HIGH_WATER / 4)
        bufferevent_enable(other, EV_READ);
}

static void
tunnel_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_conn *c = arg;
    struct bufferevent *other = bev == c->bev ? c->tunnel : c->bev;

    (void)what;
    /* one side is gone: flush what we have to the other, then close both */
    tunnel_pump(bev, other);
    bufferevent_disable(bev, EV_READ);
    c->want_free = true;
    if (evbuffer_get_length(bufferevent_get_output(other)) == 0)
        conn_defer(c);
}

void
proxy_req_tunnel(struct proxy_req *r, struct proxy_upconn *u)
{
    struct proxy_conn *c = r->c;
    struct bufferevent *ubev = proxy_upconn_detach_bev(u);
    struct evbuffer *uin;

    BUG_ON(c == NULL || r->sink != &h1_sink);
    STAT_INC(c->w, tunnels);
    r->up = NULL;
    r->resp_done = true;
    proxy_req_log_done(r);
    c->req = NULL;
    proxy_req_free(r);
    c->state = CONN_TUNNEL;
    c->tunnel = ubev;
    event_del(c->timer);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    bufferevent_set_timeouts(ubev, NULL, NULL);
    bufferevent_setwatermark(ubev, EV_READ, 0, PROXY_FEED_MAX);
    bufferevent_setwatermark(ubev, EV_WRITE, PROXY_HIGH_WATER / 4, 0);
    bufferevent_setcb(c->bev, tunnel_readcb, tunnel_writecb, tunnel_eventcb, c);
    bufferevent_setcb(ubev, tunnel_readcb, tunnel_writecb, tunnel_eventcb, c);
    /* bytes that came right behind the heads belong to the tunnel */
    uin = bufferevent_get_input(ubev);
    if (evbuffer_get_length(uin) > 0)
        tunnel_pump(ubev, c->bev);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        tunnel_pump(c->bev, ubev);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    bufferevent_enable(ubev, EV_READ | EV_WRITE);
}

/* ---- libevent callbacks ------------------------------------------------------------------ */

static void
conn_readcb(struct bufferevent *bev, void *arg)
{
    struct proxy_conn *c = arg;
    (void)bev;
    CHECK_MAGIC(c, PROXY_CONN_MAGIC);
    if (c->state == CONN_CLOSING) {
        evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
        return;
    }
    if (c->h2_sniff) {
        /* h2: a listener marked h2 serves HTTP/1.1 too; the preface decides */
        int h2 = proxy_h2_sniff(bufferevent_get_input(c->bev));
        if (h2 == 0)
            return; /* a prefix of the preface so far */
        c->h2_sniff = false;
        if (h2 > 0) {
            proxy_conn_to_h2(c);
            return;
        }
    }
    conn_feed(c);
}

static void
conn_writecb(struct bufferevent *bev, void *arg)
{
    struct proxy_conn *c = arg;
    size_t left = evbuffer_get_length(bufferevent_get_output(bev));

    CHECK_MAGIC(c, PROXY_CONN_MAGIC);
    if (c->state == CONN_CLOSING || c->want_free) {
        if (left == 0) {
            c->want_free = true;
            conn_defer(c);
        }
        return;
    }
    if (left == 0)
        bufferevent_disable(bev, EV_WRITE); /* back to direct writes */
    if (c->req != NULL && c->req->up != NULL && left <= PROXY_HIGH_WATER / 4)
        proxy_upstream_resume(c->req);
    if (c->req != NULL && c->req->fill_read)
        proxy_cache_fill_drained(c->req); /* more of the cache file being written */
}

static void
conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_conn *c = arg;
    struct proxy_req *r = c->req;

    (void)bev;
    CHECK_MAGIC(c, PROXY_CONN_MAGIC);
    if (c->tls != NULL && proxy_tls_event(c, what))
        return; /* handshake done */
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && r != NULL &&
        !r->resp_started) {
        conn_fail(c, 408, "client sent the body too slowly");
        return;
    }
    if ((what & BEV_EVENT_EOF) && r != NULL && r->body_done && !r->resp_done &&
        c->state == CONN_BUSY) {
        /* half-close after a complete request: answer, then close */
        r->resp_close = true;
        bufferevent_disable(c->bev, EV_READ);
        return;
    }
    /* error, EOF or write timeout: the client is gone */
    c->want_free = true;
    conn_defer(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *c = arg;

    (void)fd;
    (void)what;
    CHECK_MAGIC(c, PROXY_CONN_MAGIC);
    if (c->state == CONN_HEAD || (c->state == CONN_IDLE && c->requests == 0 &&
                                  evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)) {
        conn_fail(c, 408, "client did not send the request head in time");
        return;
    }
    if (c->state == CONN_IDLE) {
        /* keep-alive expired, or a connection that never sent a byte */
        c->want_free = true;
        conn_defer(c);
    }
}

static void
conn_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *c = arg;

    (void)fd;
    (void)what;
    CHECK_MAGIC(c, PROXY_CONN_MAGIC);
    if (c->want_free) {
        if (c->req != NULL && !c->orphan && proxy_cache_fill_orphan(c->req)) {
            conn_orphan(c);
            return;
        }
        proxy_conn_free(c);
        return;
    }
    if (c->flush_wanted) {
        c->flush_wanted = false;
        if (c->orphan) {
            evbuffer_drain(conn_out(c), evbuffer_get_length(conn_out(c)));
        } else if (c->state != CONN_TUNNEL && proxy_bev_flush(c->bev) < 0) {
            c->want_free = true;
            conn_defer(c);
            return;
        }
        /* a response paused on this client's backlog may go on */
        if (c->req != NULL && c->req->up != NULL &&
            evbuffer_get_length(conn_out(c)) <= PROXY_HIGH_WATER / 4)
            proxy_upstream_resume(c->req);
        if (c->req != NULL && c->req->fill_read)
            proxy_cache_fill_drained(c->req); /* one sendfile pump: feed, flush, feed */
    }
    if (c->want_resume) {
        c->want_resume = false;
        conn_feed(c);
    }
}
