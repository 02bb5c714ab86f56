/*
 * The engine: T threads, each with its own event_base and its share of the connections; nothing
 * is shared between threads on the request path (results are merged after join, progress
 * counters are relaxed atomics).
 *
 * Connections are plain non-blocking sockets driven by libevent events (event_assign'ed into
 * the connection, so no allocation per request). A request head is assembled into the
 * connection's own buffer, written with writev together with the shared read-only body, and the
 * response is read into the thread's one receive buffer and parsed there by llhttp: body bytes
 * are counted, never copied. Only Cache-Status is copied (into a small fixed buffer).
 *
 * Closed loop: each connection sends its next request as soon as the previous answer is in;
 * latency counts from the send.
 *
 * Open loop (--rate): a per-thread schedule of intended send times, one every T/R seconds
 * (threads offset by a fraction of the interval). At each intended time an idle connection
 * sends; when none is idle the intended time goes into a backlog (counted "late") that the next
 * connection to become free takes first, and one more connection is opened while the backlog
 * is longer than the number of connections being opened, up to the cap. Latency always counts
 * from the intended time, so time spent waiting for a connection (coordinated omission) shows in
 * the tail instead of vanishing. Backlog overflow and what is still waiting at the end are
 * "dropped".
 *
 * Transport and protocol (internal.h): struct bench_io is the transport seam (plain TCP here,
 * TLS in tls.c, with a handshake state between connect and use); HTTP/2 (h2.c) replaces the
 * llhttp request state with nghttp2 stream slots. Each connection's read callback is picked
 * once at connect for its transport and protocol, so plain HTTP/1.1 runs the same code as it
 * did before the seam. TLS and h2c runs first probe the target (tls.c: bench_probe) so that a
 * bad certificate or a server without HTTP/2 fails the run at once with a clear message.
 */
#include "bench/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

static atomic_bool interrupted;

void
bench_run_interrupt(void)
{
    atomic_store(&interrupted, true);
}

bool
bench_run_interrupted(void)
{
    return atomic_load(&interrupted);
}

static struct timeval
tv_of_ns(uint64_t ns)
{
    struct timeval tv = {(time_t)(ns / 1000000000ULL), (suseconds_t)(ns % 1000000000ULL / 1000)};
    return tv;
}

/* ---- plain TCP ------------------------------------------------------------------------------ */

static ssize_t
plain_read(struct bconn *c, void *buf, size_t len)
{
    return recv(c->fd, buf, len, 0);
}

static ssize_t
plain_writev(struct bconn *c, const struct iovec *iov, int n)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    return sendmsg(c->fd, &m, MSG_NOSIGNAL);
}

static const struct bench_io plain_io = {plain_read, plain_writev};

/* ---- forward declarations -------------------------------------------------------------------- */

static void conn_ready(struct bconn *c);

/* ---- llhttp callbacks --------------------------------------------------------------------- */

static int
on_message_begin(llhttp_t *p)
{
    struct bconn *c = p->data;
    c->cache = BENCH_CACHE_ABSENT;
    c->body_bytes = 0;
    c->hname_len = c->hval_len = 0;
    c->hdr_is_cs = false;
    return 0;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct bconn *c = p->data;
    size_t room = sizeof(c->hname) - c->hname_len;
    size_t n = len < room ? len : room;
    memcpy(c->hname + c->hname_len, at, n);
    c->hname_len += len; /* may exceed the buffer: then it is not a name we want */
    return 0;
}

static int
on_header_field_complete(llhttp_t *p)
{
    struct bconn *c = p->data;
    c->hdr_is_cs = c->hname_len == 12 && strncasecmp(c->hname, "cache-status", 12) == 0;
    c->hval_len = 0;
    return 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct bconn *c = p->data;
    if (c->hdr_is_cs) {
        size_t room = sizeof(c->hval) - c->hval_len;
        size_t n = len < room ? len : room;
        memcpy(c->hval + c->hval_len, at, n);
        c->hval_len += n;
    }
    return 0;
}

static int
on_header_value_complete(llhttp_t *p)
{
    struct bconn *c = p->data;
    if (c->hdr_is_cs)
        c->cache = bench_cache_status_parse(c->hval, c->hval_len);
    c->hname_len = 0;
    c->hdr_is_cs = false;
    return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
    struct bconn *c = p->data;
    return c->head_req ? 1 : 0; /* 1: no body follows */
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
    struct bconn *c = p->data;
    (void)at;
    c->body_bytes += len;
    return 0;
}

static int
on_message_complete(llhttp_t *p)
{
    struct bconn *c = p->data;
    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
        return 0; /* interim response: the real one follows */
    c->complete = true;
    c->keep_alive = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- budget and scheduling ----------------------------------------------------------------- */

bool
bench_take_budget(struct worker *w)
{
    if (w->ending)
        return false;
    if (w->limited) {
        if (w->remaining == 0)
            return false;
        w->remaining--;
    }
    return true;
}

static void
worker_end(struct worker *w)
{
    if (w->ending)
        return;
    w->ending = true;
    w->res.dropped += w->bl_len;
    w->bl_len = 0;
    event_del(&w->tick);
    event_del(&w->end);
    bench_worker_check_done(w);
}

void
bench_worker_check_done(struct worker *w)
{
    /* done: stopped by time or signal, or the --requests budget is spent and nothing waits */
    bool finished = w->ending || (w->limited && w->remaining == 0 && w->bl_len == 0);
    if (finished && w->inflight == 0)
        event_base_loopbreak(w->base);
}

void
bench_idle_push(struct bconn *c)
{
    if (c->in_idle)
        return;
    c->in_idle = true;
    c->next_idle = c->w->idle;
    c->w->idle = c;
}

static struct bconn *
idle_pop(struct worker *w)
{
    while (w->idle != NULL) {
        struct bconn *c = w->idle;
        w->idle = c->next_idle;
        c->in_idle = false;
        c->next_idle = NULL;
        if (c->st == C_IDLE || (c->st == C_H2 && bench_h2_has_slot(c)))
            return c;
    }
    return NULL;
}

bool
bench_backlog_pop(struct worker *w, uint64_t *t)
{
    if (w->ending || w->bl_len == 0)
        return false;
    *t = w->backlog[w->bl_head];
    w->bl_head = (w->bl_head + 1) % BENCH_BACKLOG_CAP;
    w->bl_len--;
    return true;
}

void
bench_backlog_unpop(struct worker *w, uint64_t t)
{
    if (w->ending || w->bl_len == BENCH_BACKLOG_CAP) {
        w->res.dropped++;
        return;
    }
    w->bl_head = (w->bl_head + BENCH_BACKLOG_CAP - 1) % BENCH_BACKLOG_CAP;
    w->backlog[w->bl_head] = t;
    w->bl_len++;
}

/* ---- sending --------------------------------------------------------------------------------- */

static void
conn_write(struct bconn *c)
{
    struct worker *w = c->w;
    while (c->req_off < c->req_len || c->body_off < c->body_len) {
        struct iovec iov[2];
        int n = 0;
        if (c->req_off < c->req_len) {
            iov[n].iov_base = c->req + c->req_off;
            iov[n++].iov_len = c->req_len - c->req_off;
        }
        if (c->body_off < c->body_len) {
            iov[n].iov_base = w->wl->body + c->body_off;
            iov[n++].iov_len = c->body_len - c->body_off;
        }
        ssize_t k = c->io->writev(c, iov, n);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                event_add(&c->wr, NULL);
                return;
            }
            bench_conn_fail(c, BENCH_ERR_RESET);
            return;
        }
        size_t left = (size_t)k;
        size_t h = c->req_len - c->req_off;
        if (left <= h) {
            c->req_off += left;
        } else {
            c->req_off = c->req_len;
            c->body_off += left - h;
        }
    }
    event_del(&c->wr);
}

static void
conn_send(struct bconn *c, uint64_t intended_ns)
{
    struct worker *w = c->w;
    enum bench_method m;

    c->req_len = bench_request_build(w->wl, w->t, &w->rng, c->req, sizeof(c->req), &m);
    if (c->req_len == 0) {
        /* checked at start-up for the longest path: cannot happen */
        abort();
    }
    c->req_off = 0;
    c->body_off = 0;
    c->body_len = (m == BENCH_POST || m == BENCH_PUT) ? w->wl->body_size : 0;
    c->head_req = m == BENCH_HEAD;
    c->complete = false;
    llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
    c->parser.data = c;
    c->t_intended = intended_ns;
    c->t_sent = bench_now_ns();
    c->st = C_BUSY;
    w->res.sent++;
    w->inflight++;
    event_add(&c->tmo, w->tv_timeout);
    conn_write(c);
}

/* A connection is connected and has nothing in flight. */
static void
conn_ready(struct bconn *c)
{
    struct worker *w = c->w;

    c->st = C_IDLE;
    if (w->open_loop) {
        if (!w->ending && w->bl_len > 0) {
            uint64_t t = w->backlog[w->bl_head];
            w->bl_head = (w->bl_head + 1) % BENCH_BACKLOG_CAP;
            w->bl_len--;
            conn_send(c, t);
            return;
        }
        bench_idle_push(c);
        bench_worker_check_done(w);
        return;
    }
    if (bench_take_budget(w)) {
        /* --new-conn: the request's latency includes its connect and handshake */
        conn_send(c, w->new_conn ? c->t_connect : bench_now_ns());
        return;
    }
    bench_worker_check_done(w);
}

void
bench_conn_usable(struct bconn *c)
{
    struct worker *w = c->w;

    event_del(&c->tmo);
    w->nconnecting--;
    if (w->net->h2)
        bench_h2_start(c);
    else
        conn_ready(c);
}

void
bench_conn_recycle(struct bconn *c)
{
    struct worker *w = c->w;

    bench_conn_close(c);
    if (!w->ending)
        bench_conn_connect(c);
    bench_worker_check_done(w);
}

static void
open_loop_dispatch(struct worker *w, uint64_t intended)
{
    struct bconn *c = idle_pop(w);
    if (c != NULL) {
        if (c->st == C_H2)
            bench_h2_dispatch(c, intended);
        else
            conn_send(c, intended);
        return;
    }
    if (w->bl_len == BENCH_BACKLOG_CAP) {
        w->res.dropped++;
        return;
    }
    w->backlog[(w->bl_head + w->bl_len) % BENCH_BACKLOG_CAP] = intended;
    w->bl_len++;
    w->res.late++;
    if (w->bl_len > w->nconnecting * w->net->streams && w->nopen < w->nconns_max) {
        for (unsigned i = 0; i < w->nconns_max; i++) {
            if (w->conns[i].st == C_CLOSED) {
                bench_conn_connect(&w->conns[i]);
                break;
            }
        }
    }
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    uint64_t now = bench_now_ns();
    while (!w->ending && w->next_ns <= now) {
        if (w->limited) {
            if (w->remaining == 0)
                break;
            w->remaining--;
        }
        open_loop_dispatch(w, w->next_ns);
        w->next_ns += w->interval_ns;
    }
    if (w->ending || (w->limited && w->remaining == 0)) {
        bench_worker_check_done(w); /* schedule exhausted: the backlog and in-flight finish */
        return;
    }
    struct timeval tv = tv_of_ns(w->next_ns > now ? w->next_ns - now : 0);
    event_add(&w->tick, &tv);
}

static void
end_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_end(arg);
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    if (atomic_load_explicit(&interrupted, memory_order_relaxed))
        worker_end(w);
}

/* ---- receiving ------------------------------------------------------------------------------ */

static void
conn_complete(struct bconn *c)
{
    struct worker *w = c->w;
    uint64_t now = bench_now_ns();
    unsigned st = c->parser.status_code;

    event_del(&c->tmo);
    w->inflight--;
    w->res.responses++;
    bench_hist_record(&w->res.hist, (now - c->t_intended) / 1000);
    w->res.status[st >= 100 && st < 600 ? st / 100 : 0]++;
    w->res.cache[c->cache]++;
    w->res.body_bytes += c->body_bytes;
    atomic_store_explicit(&w->prog_resp, w->res.responses, memory_order_relaxed);
    if (st >= 400)
        atomic_fetch_add_explicit(&w->prog_fail, 1, memory_order_relaxed);
    if (!c->keep_alive || w->new_conn) {
        bench_conn_close(c);
        if (!w->ending)
            bench_conn_connect(c);
        bench_worker_check_done(w);
        return;
    }
    conn_ready(c);
}

static void
conn_parse(struct bconn *c, const char *buf, size_t n)
{
    enum llhttp_errno e = llhttp_execute(&c->parser, buf, n);
    if (e == HPE_PAUSED && c->complete) {
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - buf);
        if (used < n)
            c->keep_alive = false; /* unsolicited bytes: do not trust this connection */
        conn_complete(c);
        return;
    }
    if (e != HPE_OK)
        bench_conn_fail(c, BENCH_ERR_BAD_RESPONSE);
}

static inline void
conn_on_read(struct bconn *c)
{
    struct worker *w = c->w;
    ssize_t n = c->io->read(c, w->rbuf, sizeof(w->rbuf));
    if (n > 0) {
        if (c->st != C_BUSY) {
            /* bytes nobody asked for */
            bench_conn_close(c);
            if (!w->ending)
                bench_conn_connect(c);
            return;
        }
        conn_parse(c, w->rbuf, (size_t)n);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (c->st == C_BUSY) {
        if (n == 0 && llhttp_finish(&c->parser) == HPE_OK && c->complete) {
            c->keep_alive = false;
            conn_complete(c); /* body delimited by the close */
            return;
        }
        if (n == 0 && c->complete) {
            c->keep_alive = false;
            conn_complete(c);
            return;
        }
        bench_conn_fail(c, BENCH_ERR_RESET);
        return;
    }
    /* the server closed an idle keep-alive connection: open another, no error */
    bench_conn_close(c);
    if (!w->ending)
        bench_conn_connect(c);
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_on_read(bench_conn_of(arg));
}

/* HTTP/1.1 over TLS: the handshake first; then, as for plain, but OpenSSL may hold decrypted
 * bytes that no socket event will announce. */
static void
tls_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bconn *c = bench_conn_of(arg);
    (void)fd;
    (void)what;
    if (c->st == C_HANDSHAKE) {
        bench_tls_handshake(c);
        return;
    }
    do {
        conn_on_read(c);
    } while (c->ssl != NULL && (c->st == C_BUSY || c->st == C_IDLE) && bench_tls_pending(c));
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bconn *c = bench_conn_of(arg);
    (void)what;
    if (c->st == C_CONNECTING) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
            bench_conn_fail(c, BENCH_ERR_CONNECT);
            return;
        }
        event_del(&c->wr);
        event_add(&c->rd, NULL);
        if (c->io != &plain_io)
            bench_tls_start(c);
        else
            bench_conn_usable(c);
        return;
    }
    switch (c->st) {
    case C_BUSY:
        conn_write(c);
        break;
    case C_HANDSHAKE:
        bench_tls_handshake(c);
        break;
    case C_H2:
        bench_h2_writable(c);
        break;
    default:
        event_del(&c->wr);
    }
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bconn *c = bench_conn_of(arg);
    (void)fd;
    (void)what;
    if (c->st == C_BACKOFF) {
        c->st = C_CLOSED;
        if (!c->w->ending)
            bench_conn_connect(c);
        else
            bench_worker_check_done(c->w);
        return;
    }
    if (c->st == C_H2) {
        bench_h2_timeout(c);
        return;
    }
    if (c->st == C_HANDSHAKE) {
        if (c->w->tls_err[0] == '\0')
            snprintf(c->w->tls_err, sizeof(c->w->tls_err), "TLS handshake timed out");
        bench_conn_fail(c, BENCH_ERR_TLS);
        return;
    }
    bench_conn_fail(c, c->st == C_CONNECTING ? BENCH_ERR_CONNECT : BENCH_ERR_TIMEOUT);
}

/* ---- connection lifecycle ------------------------------------------------------------------ */

void
bench_conn_close(struct bconn *c)
{
    struct worker *w = c->w;
    event_del(&c->rd);
    event_del(&c->wr);
    event_del(&c->tmo);
    if (c->st == C_CONNECTING || c->st == C_HANDSHAKE)
        w->nconnecting--;
    if (c->h2 != NULL)
        bench_h2_drop(c); /* callers that count lost requests did so first */
    if (c->ssl != NULL)
        bench_tls_close(c);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
        w->nopen--;
    }
    c->st = C_CLOSED;
}

/* Counts e, closes, and reconnects after a pause when the connection could not be set up (so a
 * dead target is not hammered). */
void
bench_conn_fail(struct bconn *c, enum bench_err e)
{
    struct worker *w = c->w;
    bool busy = c->st == C_BUSY;
    bool setup = e == BENCH_ERR_CONNECT || e == BENCH_ERR_TLS;
    uint64_t lost = busy;

    if (c->st == C_H2)
        lost = bench_h2_drop(c); /* every request in flight on it */
    if (lost == 0)
        lost = 1;
    w->res.errors[e] += lost;
    atomic_fetch_add_explicit(&w->prog_fail, lost, memory_order_relaxed);
    bench_conn_close(c);
    if (busy) {
        w->inflight--;
    } else if (setup && !w->open_loop) {
        /* closed loop: a failed connect stands for the request it would have carried */
        if (w->limited && w->remaining > 0)
            w->remaining--;
    }
    if (!w->ending) {
        struct timeval tv = {0, BENCH_RECONNECT_MS * 1000};
        if (setup) {
            c->st = C_BACKOFF;
            event_add(&c->tmo, &tv);
        } else {
            bench_conn_connect(c);
        }
    }
    bench_worker_check_done(w);
}

void
bench_conn_connect(struct bconn *c)
{
    struct worker *w = c->w;
    int one = 1;

    if (w->ending)
        return;
    c->fd = socket(w->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        w->res.errors[BENCH_ERR_CONNECT]++;
        c->st = C_BACKOFF;
        struct timeval tv = {0, BENCH_RECONNECT_MS * 1000};
        event_add(&c->tmo, &tv);
        return;
    }
    w->nopen++;
    w->res.connects++;
    if (w->nopen > w->res.max_conns)
        w->res.max_conns = w->nopen;
    c->t_connect = bench_now_ns();
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    event_assign(&c->rd, w->base, c->fd, EV_READ | EV_PERSIST, w->read_fn, c);
    event_assign(&c->wr, w->base, c->fd, EV_WRITE | EV_PERSIST, write_cb, c);
    c->st = C_CONNECTING;
    w->nconnecting++;
    if (connect(c->fd, w->addr, w->alen) < 0 && errno != EINPROGRESS) {
        bench_conn_fail(c, BENCH_ERR_CONNECT);
        return;
    }
    event_add(&c->wr, NULL);
    event_add(&c->tmo, w->tv_timeout);
}

/* ---- threads -------------------------------------------------------------------------------- */

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    const struct bench_cfg *cfg = w->cfg;

    w->start_ns = bench_now_ns();
    for (unsigned i = 0; i < w->nconns_init; i++)
        bench_conn_connect(&w->conns[i]);
    if (cfg->duration_us > 0) {
        struct timeval tv = tv_of_ns(cfg->duration_us * 1000);
        event_add(&w->end, &tv);
    }
    if (w->open_loop) {
        struct timeval tv = tv_of_ns(w->next_ns > w->start_ns ? w->next_ns - w->start_ns : 0);
        event_add(&w->tick, &tv);
    }
    struct timeval ptv = {0, 100000};
    event_add(&w->poll, &ptv);
    if (!(w->limited && w->remaining == 0))
        event_base_dispatch(w->base);
    for (unsigned i = 0; i < w->nconns_max; i++) {
        struct bconn *c = &w->conns[i];
        if (c->st == C_BUSY)
            w->inflight--; /* interrupted */
        bench_conn_close(c);
    }
    event_del(&w->tick);
    event_del(&w->end);
    event_del(&w->poll);
    w->res.dropped += w->bl_len;
    w->bl_len = 0;
    atomic_store(&w->done, true);
    return NULL;
}

static int
worker_init(struct worker *w, unsigned idx, unsigned nthreads, const struct bench_cfg *cfg,
            const struct bench_workload *wl, const struct bench_net *net)
{
    struct event_config *ec = NULL;
    int rc = -1;

    w->idx = idx;
    w->cfg = cfg;
    w->wl = wl;
    w->t = net->t;
    w->net = net;
    w->addr = net->addr;
    w->alen = net->alen;
    w->open_loop = cfg->rate > 0;
    w->new_conn = net->new_conn;
    w->timeout_ns = cfg->timeout_us * 1000;
    w->read_fn = net->h2 ? bench_h2_read_cb : net->ssl_ctx != NULL ? tls_read_cb : read_cb;
    bench_result_init(&w->res);
    bench_rng_seed(&w->rng, cfg->seed * 0x9e3779b97f4a7c15ULL + idx);
    unsigned share = cfg->connections / nthreads + (idx < cfg->connections % nthreads);
    w->nconns_init = share;
    w->nconns_max = share;
    if (w->open_loop) {
        unsigned mx = cfg->max_connections / nthreads + (idx < cfg->max_connections % nthreads);
        w->nconns_max = mx > share ? mx : share;
        if (w->nconns_max == 0)
            w->nconns_max = 1;
    }
    if (cfg->requests > 0) {
        w->limited = true;
        w->remaining = cfg->requests / nthreads + (idx < cfg->requests % nthreads);
    }
    ec = event_config_new();
    if (ec == NULL)
        goto out;
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER | EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(ec);
    if (w->base == NULL)
        goto out;
    struct timeval tmo = tv_of_ns(cfg->timeout_us * 1000);
    w->tv_timeout = event_base_init_common_timeout(w->base, &tmo);
    if (net->h2) {
        w->h2_cbs = bench_h2_callbacks_new();
        if (w->h2_cbs == NULL)
            goto out;
    }
    w->conns = calloc(w->nconns_max, sizeof(*w->conns));
    if (w->conns == NULL)
        goto out;
    for (unsigned i = 0; i < w->nconns_max; i++) {
        struct bconn *c = &w->conns[i];
        c->magic = BENCH_CONN_MAGIC;
        c->w = w;
        c->io = net->ssl_ctx != NULL ? &bench_tls_io : &plain_io;
        c->fd = -1;
        c->st = C_CLOSED;
        /* assigned once so that event_del is always legal; re-assigned with the fd */
        event_assign(&c->rd, w->base, -1, 0, read_cb, c);
        event_assign(&c->wr, w->base, -1, 0, write_cb, c);
        event_assign(&c->tmo, w->base, -1, 0, timeout_cb, c);
    }
    event_assign(&w->tick, w->base, -1, 0, tick_cb, w);
    event_assign(&w->end, w->base, -1, 0, end_cb, w);
    event_assign(&w->poll, w->base, -1, EV_PERSIST, poll_cb, w);
    if (w->open_loop) {
        w->backlog = malloc(BENCH_BACKLOG_CAP * sizeof(*w->backlog));
        if (w->backlog == NULL)
            goto out;
        double per = cfg->rate / nthreads;
        w->interval_ns = (uint64_t)(1e9 / per);
        if (w->interval_ns == 0)
            w->interval_ns = 1;
        /* spread the threads' schedules over one interval */
        w->next_ns = bench_now_ns() + w->interval_ns * idx / nthreads;
    }
    rc = 0;
out:
    if (ec != NULL)
        event_config_free(ec);
    return rc;
}

static void
worker_fini(struct worker *w)
{
    if (w->conns != NULL) {
        for (unsigned i = 0; i < w->nconns_max; i++) {
            event_del(&w->conns[i].tmo);
            bench_h2_free(&w->conns[i]);
            w->conns[i].magic = BENCH_CONN_DEAD;
        }
    }
    free(w->conns);
    w->conns = NULL;
    bench_h2_callbacks_free(w->h2_cbs);
    w->h2_cbs = NULL;
    bench_tls_sessions_free(w);
    free(w->backlog);
    w->backlog = NULL;
    if (w->base != NULL)
        event_base_free(w->base);
    w->base = NULL;
}

static void
progress_line(const struct bench_cfg *cfg, struct worker *ws, unsigned n, double secs,
              uint64_t *last, bool tty)
{
    uint64_t resp = 0, fail = 0;
    for (unsigned i = 0; i < n; i++) {
        resp += atomic_load_explicit(&ws[i].prog_resp, memory_order_relaxed);
        fail += atomic_load_explicit(&ws[i].prog_fail, memory_order_relaxed);
    }
    fprintf(stderr, "%s%s%s%5.0fs  %llu responses  %llu/s  %llu failed%s", tty ? "\r\033[K" : "",
            cfg->label ? cfg->label : "", cfg->label ? "  " : "", secs, (unsigned long long)resp,
            (unsigned long long)(resp - *last), (unsigned long long)fail, tty ? "" : "\n");
    fflush(stderr);
    *last = resp;
}

static bool
is_ip_literal(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* The run-wide, read-only part: protocol, TLS context, HTTP/2 request fields. */
static int
net_init(struct bench_net *net, const struct bench_cfg *cfg, const struct bench_workload *wl,
         const struct bench_target *t, struct bench_result *res, char *err, size_t errlen)
{
    bool tls = t->scheme == BENCH_HTTPS;

    if (cfg->proto == BENCH_PROTO_H2 && !tls) {
        snprintf(err, errlen, "%s: --h2 is HTTP/2 over TLS and needs an https:// URL (--h2c "
                 "for HTTP/2 over plain http)", t->base);
        return -1;
    }
    if (cfg->proto == BENCH_PROTO_H2C && tls) {
        snprintf(err, errlen, "%s: --h2c is HTTP/2 over plain TCP and needs an http:// URL "
                 "(--h2 for https)", t->base);
        return -1;
    }
    net->t = t;
    net->h2 = cfg->proto != BENCH_PROTO_H1;
    net->new_conn = cfg->new_conn;
    net->streams = net->h2 && cfg->streams > 0 ? cfg->streams : 1;
    net->ip_host = is_ip_literal(t->host);
    snprintf(res->protocol, sizeof(res->protocol), "%s",
             !net->h2 ? "http/1.1" : tls ? "h2" : "h2c");
    if (net->h2) {
        struct bench_field host = {NULL, 0, NULL, 0};
        int nf = bench_h2_fields(wl->extra_headers, wl->extra_len, net->names, sizeof(net->names),
                                 net->fields, BENCH_FIELDS_MAX, &host);
        if (nf < 0) {
            snprintf(err, errlen, "--header: at most %d fields, names up to 4 KiB in all, for "
                     "HTTP/2", BENCH_FIELDS_MAX);
            return -1;
        }
        net->nfields = (size_t)nf;
        net->scheme = tls ? "https" : "http";
        net->authority = host.value != NULL ? host.value : t->hostport;
        net->authority_len = host.value != NULL ? host.valuelen : strlen(t->hostport);
    }
    if (tls) {
        net->ssl_ctx = bench_tls_ctx_new(cfg, t, net->ip_host, err, errlen);
        if (net->ssl_ctx == NULL)
            return -1;
    }
    return 0;
}

int
bench_run(const struct bench_cfg *cfg, const struct bench_workload *wl,
          const struct bench_target *t, struct bench_result *res, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    const struct addrinfo *use;
    struct bench_net *net = NULL;
    struct worker *ws = NULL;
    unsigned n = cfg->threads ? cfg->threads : 1;
    uint64_t t0 = 0;
    int rc = -1;

    bench_result_init(res);
    if (cfg->rate <= 0 && cfg->connections < n)
        n = cfg->connections; /* every thread needs a connection */
    if (cfg->rate > 0 && cfg->max_connections < n)
        n = cfg->max_connections;
    if (n == 0) {
        snprintf(err, errlen, "no connections");
        return -1;
    }
    net = calloc(1, sizeof(*net));
    if (net == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (net_init(net, cfg, wl, t, res, err, errlen) < 0)
        goto out;
    int gai = getaddrinfo(t->host, t->port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "%s: %s", t->host, gai_strerror(gai));
        goto out;
    }
    use = ai;
    if ((net->ssl_ctx != NULL || net->h2) &&
        bench_probe(cfg, t, net->ssl_ctx, net->ip_host, ai, &use, res, err, errlen) < 0)
        goto out;
    net->addr = use->ai_addr;
    net->alen = use->ai_addrlen;
    ws = calloc(n, sizeof(*ws));
    if (ws == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        if (worker_init(&ws[i], i, n, cfg, wl, net) < 0) {
            snprintf(err, errlen, "cannot set up thread %u (event base or memory)", i);
            goto out;
        }
    }
    t0 = bench_now_ns();
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
            snprintf(err, errlen, "cannot start thread %u", i);
            bench_run_interrupt();
            goto out;
        }
        ws[i].started = true;
    }
    bool tty = isatty(STDERR_FILENO);
    bool show = cfg->progress && (cfg->duration_us == 0 || cfg->duration_us > 3000000);
    uint64_t last = 0, next_print = t0 + 1000000000ULL;
    bool printed = false;
    for (;;) {
        bool all = true;
        for (unsigned i = 0; i < n; i++)
            all = all && atomic_load(&ws[i].done);
        if (all)
            break;
        poll(NULL, 0, 50);
        uint64_t now = bench_now_ns();
        if (show && now >= next_print) {
            double secs = (double)(now - t0) / 1e9;
            if (cfg->duration_us > 0 || secs > 3.0) {
                progress_line(cfg, ws, n, secs, &last, tty);
                printed = true;
            } else {
                uint64_t r = 0;
                for (unsigned i = 0; i < n; i++)
                    r += atomic_load_explicit(&ws[i].prog_resp, memory_order_relaxed);
                last = r;
            }
            next_print += 1000000000ULL;
        }
    }
    if (printed && tty)
        fputc('\n', stderr);
    rc = 0;
out:
    if (ws != NULL) {
        uint64_t t_end, conns = 0;
        const char *tls_err = NULL;
        for (unsigned i = 0; i < n; i++) {
            if (ws[i].started)
                pthread_join(ws[i].th, NULL);
        }
        t_end = bench_now_ns();
        for (unsigned i = 0; i < n; i++) {
            if (rc == 0) {
                bench_result_merge(res, &ws[i].res);
                conns += ws[i].res.max_conns;
                if (tls_err == NULL && ws[i].tls_err[0] != '\0')
                    tls_err = ws[i].tls_err;
            }
        }
        if (rc == 0) {
            res->elapsed_s = (double)(t_end - t0) / 1e9;
            res->max_conns = conns;
            if (res->errors[BENCH_ERR_TLS] > 0)
                fprintf(stderr, "edge-bench: %s: %llu TLS handshakes failed, the first: %s\n",
                        t->base, (unsigned long long)res->errors[BENCH_ERR_TLS],
                        tls_err != NULL ? tls_err : "?");
        }
        for (unsigned i = 0; i < n; i++)
            worker_fini(&ws[i]);
    }
    free(ws);
    if (ai != NULL)
        freeaddrinfo(ai);
    if (net != NULL)
        bench_tls_ctx_free(net->ssl_ctx);
    free(net);
    return rc;
}

/* ---- origin /_stats -------------------------------------------------------------------------- */

int64_t
bench_origin_requests(const char *url)
{
    struct bench_target t;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char msg[256], req[2600];
    char *resp = NULL;
    size_t len = 0, cap = 1 << 16;
    json_t *j = NULL;
    int fd = -1;
    int64_t out = -1;

    if (bench_target_parse(&t, url, msg, sizeof(msg)) < 0 || t.scheme != BENCH_HTTP)
        return -1;
    if (getaddrinfo(t.host, t.port, &hints, &ai) != 0)
        return -1;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto out;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        goto out;
    int rl = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: edge-bench\r\n"
                      "Connection: close\r\n\r\n",
                      t.path, t.hostport);
    if (rl < 0 || (size_t)rl >= sizeof(req) || send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl)
        goto out;
    resp = malloc(cap + 1);
    if (resp == NULL)
        goto out;
    for (;;) {
        ssize_t k = recv(fd, resp + len, cap - len, 0);
        if (k < 0)
            goto out;
        if (k == 0)
            break;
        len += (size_t)k;
        if (len == cap)
            goto out; /* /_stats is small; refuse a giant answer */
    }
    resp[len] = '\0';
    if (strncmp(resp, "HTTP/1.", 7) != 0 || len < 12 || strncmp(resp + 9, "200", 3) != 0)
        goto out;
    const char *body = strstr(resp, "\r\n\r\n");
    if (body == NULL)
        goto out;
    body += 4;
    /* origin-sim answers with Content-Length; a chunked answer would fail to parse here */
    j = json_loadb(body, len - (size_t)(body - resp), 0, NULL);
    json_t *r = j ? json_object_get(j, "requests") : NULL;
    if (r != NULL && json_is_integer(r))
        out = (int64_t)json_integer_value(r);
out:
    if (j != NULL)
        json_decref(j);
    free(resp);
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return out;
}
