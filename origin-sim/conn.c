/*
 * origin-sim's HTTP/1.1 server: listeners, connections, llhttp parsing,
 * response framing and body streaming.
 *
 * Backpressure: a streamed body (/bytes, /resp?size=, /chunked) is added to
 * the bufferevent's output by reference to the static byte table, 64 KiB at a
 * time, until OSIM_STREAM_HIGH bytes are queued. The write low watermark is
 * OSIM_STREAM_LOW: libevent calls the write callback when the socket has
 * drained the output below it, and the callback refills. Memory per stream is
 * therefore bounded by OSIM_STREAM_HIGH plus a few chain headers, whatever N.
 *
 * While a response is pending (latency timer, stream, close) reading is
 * disabled, so pipelined requests wait in the kernel and input cannot grow.
 */
#include "origin-sim/osim.h"
#include "origin-sim/origin-sim.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define OSIM_STREAM_PIECE (64u * 1024)
#define OSIM_STREAM_HIGH (512u * 1024)
#define OSIM_STREAM_LOW (128u * 1024)
#define OSIM_IDLE_TIMEOUT_S 60  /* keep-alive idle and request head/body */
#define OSIM_WRITE_TIMEOUT_S 60 /* client not reading */
#define OSIM_RESET_POLL_MAX 500 /* x 1 ms: wait for the kernel to send the partial body */
#define OSIM_DRIP_TICK_MS 50

static void conn_process(struct osim_conn *c);
static void conn_free(struct osim_conn *c);

/* ---- output helpers ---- */

static void
out_add(struct osim_conn *c, const void *data, size_t len)
{
    evbuffer_add(bufferevent_get_output(c->bev), data, len);
    if (c->counted)
        c->srv->stats.bytes_sent += len;
}

static void
out_add_ref(struct osim_conn *c, uint64_t off, size_t len)
{
    evbuffer_add_reference(bufferevent_get_output(c->bev), osim_table + off % OSIM_BYTES_PERIOD,
                           len, NULL, NULL);
    if (c->counted)
        c->srv->stats.bytes_sent += len;
}

static size_t
out_len(struct osim_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static double
ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
log_request(struct osim_conn *c, const char *note)
{
    if (!c->srv->opts.log)
        return;
    printf("%s %.*s %d %.1fms%s\n", osim_req_method_name(c), (int)c->url_len, c->head, c->status,
           ms_since(&c->t0), note);
    fflush(stdout);
}

/* ---- state changes ---- */

static void
conn_timer_in(struct osim_conn *c, uint64_t us)
{
    struct timeval tv = {.tv_sec = (time_t)(us / 1000000), .tv_usec = (suseconds_t)(us % 1000000)};
    evtimer_add(c->timer, &tv);
}

static void
conn_close_soon(struct osim_conn *c)
{
    c->state = OSIM_S_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (out_len(c) == 0)
        conn_timer_in(c, 0); /* the write callback will not fire on an empty output */
}

static void
conn_reset_poll(struct osim_conn *c)
{
    int queued = 0;
    evutil_socket_t fd = bufferevent_getfd(c->bev);

    /* RST discards what the kernel has not sent yet; wait until the partial
     * body has left, so the client sees "headers + part of the body + RST". */
    if (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 && c->reset_polls++ < OSIM_RESET_POLL_MAX) {
        conn_timer_in(c, 1000);
        return;
    }
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    conn_free(c);
}

static void
conn_reset_soon(struct osim_conn *c)
{
    log_request(c, " reset");
    c->state = OSIM_S_RESET;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (out_len(c) == 0)
        conn_timer_in(c, 0);
}

/* The whole response is queued. */
static void
resp_done(struct osim_conn *c)
{
    log_request(c, "");
    if (!c->keep_alive) {
        conn_close_soon(c);
        return;
    }
    c->state = OSIM_S_READ;
    bufferevent_setwatermark(c->bev, EV_WRITE, OSIM_STREAM_LOW, 0);
    llhttp_resume(&c->parser);
    bufferevent_enable(c->bev, EV_READ);
    if (!c->in_process)
        conn_process(c);
}

/* ---- response head ---- */

const char *
osim_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

static bool
no_body_status(int status)
{
    return status < 200 || status == 204 || status == 304;
}

/* Queues the status line and headers. clen < 0: chunked framing. */
static void
resp_head(struct osim_conn *c, int status, const char *ctype, long long clen)
{
    char buf[512 + OSIM_RHDR_MAX];
    int n;
    size_t o;

    if (c->rhdr_over) {
        /* a scripted header did not fit or carried CR/LF: answer that instead */
        status = 500;
        ctype = "text/plain";
        clen = 0;
        c->rhdr_len = 0;
        c->head_req = true;
        c->keep_alive = false;
    }
    c->status = status;
    if (c->rhdr_date) /* /resp's h=Date:...: the script's Date (or dates) instead */
        n = snprintf(buf, 512, "HTTP/1.1 %d %s\r\nServer: origin-sim\r\n", status,
                     osim_reason(status));
    else
        n = snprintf(buf, 512, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: origin-sim\r\n", status,
                     osim_reason(status), osim_date_now(c->srv));
    o = (size_t)n;
    if (!no_body_status(status)) {
        if (clen < 0)
            n = snprintf(buf + o, 512 - o, "Transfer-Encoding: chunked\r\n");
        else
            n = snprintf(buf + o, 512 - o, "Content-Length: %lld\r\n", clen);
        o += (size_t)n;
    }
    if (!c->keep_alive)
        n = snprintf(buf + o, 512 - o, "Connection: close\r\n");
    else if (c->vminor == 0)
        n = snprintf(buf + o, 512 - o, "Connection: keep-alive\r\n");
    else
        n = 0;
    o += (size_t)n;
    if (ctype != NULL && !no_body_status(status)) {
        n = snprintf(buf + o, 512 - o, "Content-Type: %s\r\n", ctype);
        o += (size_t)n;
    }
    memcpy(buf + o, c->rhdr, c->rhdr_len);
    o += c->rhdr_len;
    memcpy(buf + o, "\r\n", 2);
    o += 2;
    out_add(c, buf, o);
}

void
osim_resp_header(struct osim_conn *c, const char *name, const char *fmt, ...)
{
    va_list ap;
    size_t room = sizeof(c->rhdr) - c->rhdr_len;
    int n, m;

    if (c->rhdr_over)
        return;
    n = snprintf(c->rhdr + c->rhdr_len, room, "%s: ", name);
    if (n < 0 || (size_t)n >= room)
        goto over;
    va_start(ap, fmt);
    m = vsnprintf(c->rhdr + c->rhdr_len + (size_t)n, room - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)(n + m) + 2 >= room)
        goto over;
    for (int i = n; i < n + m; i++) {
        char ch = c->rhdr[c->rhdr_len + (size_t)i];
        if (ch == '\r' || ch == '\n' || ch == '\0')
            goto over;
    }
    if (strcasecmp(name, "Date") == 0)
        c->rhdr_date = true;
    c->rhdr_len += (size_t)(n + m);
    memcpy(c->rhdr + c->rhdr_len, "\r\n", 2);
    c->rhdr_len += 2;
    return;
over:
    c->rhdr_over = true;
}

/* ---- complete answers ---- */

void
osim_reply_interim(struct osim_conn *c, int status, const char *lines)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\n", status, osim_reason(status));

    out_add(c, buf, (size_t)n);
    out_add(c, lines, strlen(lines));
    out_add(c, "\r\n", 2);
}

void
osim_reply_drop(struct osim_conn *c)
{
    log_request(c, " dropped");
    c->keep_alive = false;
    evbuffer_drain(bufferevent_get_output(c->bev), out_len(c)); /* not even an interim */
    conn_close_soon(c);
}

static bool
sends_body(const struct osim_conn *c, int status)
{
    return !c->head_req && !no_body_status(status);
}

void
osim_reply(struct osim_conn *c, int status, const char *ctype, const void *body, size_t len)
{
    resp_head(c, status, ctype, (long long)len);
    if (!sends_body(c, c->status) || len == 0) {
        resp_done(c);
        return;
    }
    if (c->reset) {
        out_add(c, body, len / 2);
        conn_reset_soon(c);
        return;
    }
    out_add(c, body, len);
    resp_done(c);
}

void
osim_reply_text(struct osim_conn *c, int status, const char *text)
{
    osim_reply(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

void
osim_reply_evbuf(struct osim_conn *c, int status, const char *ctype, struct evbuffer *buf)
{
    size_t len = evbuffer_get_length(buf);
    struct evbuffer *out = bufferevent_get_output(c->bev);

    resp_head(c, status, ctype, (long long)len);
    if (!sends_body(c, c->status) || len == 0) {
        evbuffer_drain(buf, len);
        resp_done(c);
        return;
    }
    if (c->reset) {
        evbuffer_remove_buffer(buf, out, len / 2);
        evbuffer_drain(buf, evbuffer_get_length(buf));
        if (c->counted)
            c->srv->stats.bytes_sent += len / 2;
        conn_reset_soon(c);
        return;
    }
    evbuffer_add_buffer(out, buf);
    if (c->counted)
        c->srv->stats.bytes_sent += len;
    resp_done(c);
}

void
osim_reply_file(struct osim_conn *c, int status, const char *ctype, int fd, uint64_t off,
                uint64_t len)
{
    resp_head(c, status, ctype, (long long)len);
    if (!sends_body(c, c->status) || len == 0) {
        close(fd);
        resp_done(c);
        return;
    }
    uint64_t n = c->reset ? len / 2 : len;
    if (n > 0) {
        evbuffer_add_file(bufferevent_get_output(c->bev), fd, (ev_off_t)off, (ev_off_t)n);
        if (c->counted)
            c->srv->stats.bytes_sent += n;
    } else {
        close(fd);
    }
    if (c->reset)
        conn_reset_soon(c);
    else
        resp_done(c);
}

/* Adds stream bytes until OSIM_STREAM_HIGH are queued; finishes the response
 * (or starts the reset) when the stream is exhausted. */
static void
stream_fill(struct osim_conn *c)
{
    struct osim_stream *st = &c->st;
    char hex[32];
    uint64_t upto = st->cut; /* what may be sent by now */

    if (st->drip_ms > 0) {
        double ms = ms_since(&st->t0);
        uint64_t due =
            ms >= (double)st->drip_ms
                ? st->end
                : st->start + (uint64_t)((double)(st->end - st->start) * ms / (double)st->drip_ms);
        if (due < upto)
            upto = due;
    }
    while (out_len(c) < OSIM_STREAM_HIGH) {
        if (st->chunked && !st->chunk_pieces && st->chunk_left == 0 && st->off < st->cut) {
            if (st->chunks_left == 0)
                break;
            int n = snprintf(hex, sizeof(hex), "%llx\r\n", (unsigned long long)st->chunk_size);
            out_add(c, hex, (size_t)n);
            st->chunk_left = st->chunk_size;
            st->chunks_left--;
        }
        if (st->off >= upto)
            break;
        uint64_t n = upto - st->off;
        if (n > OSIM_STREAM_PIECE)
            n = OSIM_STREAM_PIECE;
        if (st->chunked && st->chunk_pieces) {
            int k = snprintf(hex, sizeof(hex), "%llx\r\n", (unsigned long long)n);
            out_add(c, hex, (size_t)k);
            st->chunk_left = n;
        }
        if (st->chunked && n > st->chunk_left)
            n = st->chunk_left;
        out_add_ref(c, st->off, (size_t)n);
        st->off += n;
        if (st->chunked) {
            st->chunk_left -= n;
            if (st->chunk_left == 0)
                out_add(c, "\r\n", 2);
        }
    }
    if (st->off < st->cut) {
        if (st->off >= upto) /* dripping: the next piece on the timer */
            conn_timer_in(c, OSIM_DRIP_TICK_MS * 1000);
        return; /* more on the next write event */
    }
    if (st->cut < st->end) {
        conn_reset_soon(c);
        return;
    }
    if (st->chunked)
        out_add(c, "0\r\n\r\n", 5);
    resp_done(c);
}

static void
stream_start(struct osim_conn *c)
{
    c->state = OSIM_S_STREAM;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, OSIM_STREAM_LOW, 0);
    stream_fill(c);
}

void
osim_reply_bytes(struct osim_conn *c, int status, const char *ctype, uint64_t off, uint64_t len)
{
    resp_head(c, status, ctype, (long long)len);
    if (!sends_body(c, c->status) || len == 0) {
        resp_done(c);
        return;
    }
    memset(&c->st, 0, sizeof(c->st));
    c->st.off = off;
    c->st.end = off + len;
    c->st.cut = c->reset ? off + len / 2 : c->st.end;
    stream_start(c);
}

void
osim_reply_paced(struct osim_conn *c, int status, const char *ctype, uint64_t off, uint64_t len,
                 const struct osim_pace *pace)
{
    bool chunked = pace->chunked && !(c->vmajor == 1 && c->vminor == 0);

    resp_head(c, status, ctype, chunked ? -1 : (long long)len);
    if (!sends_body(c, c->status)) {
        resp_done(c);
        return;
    }
    memset(&c->st, 0, sizeof(c->st));
    c->st.off = c->st.start = off;
    c->st.end = off + len;
    c->st.cut = c->reset ? off + len / 2 : c->st.end;
    if (pace->cut > 0 && pace->cut < len && off + pace->cut < c->st.cut)
        c->st.cut = off + pace->cut;
    c->st.chunked = chunked;
    c->st.chunk_pieces = chunked;
    c->st.drip_ms = pace->drip_ms;
    clock_gettime(CLOCK_MONOTONIC, &c->st.t0);
    if (len == 0 && !chunked) {
        resp_done(c);
        return;
    }
    stream_start(c);
}

void
osim_reply_chunked(struct osim_conn *c, int status, const char *ctype, uint64_t n, uint64_t size)
{
    if (c->vminor == 0 && c->vmajor == 1) {
        /* HTTP/1.0 has no chunked framing */
        osim_reply_bytes(c, status, ctype, 0, n * size);
        return;
    }
    if (size == 0)
        n = 0;
    resp_head(c, status, ctype, -1);
    if (!sends_body(c, c->status)) {
        resp_done(c);
        return;
    }
    memset(&c->st, 0, sizeof(c->st));
    c->st.chunked = true;
    c->st.chunk_size = size;
    c->st.chunks_left = n;
    c->st.end = n * size;
    c->st.cut = c->reset ? c->st.end / 2 : c->st.end;
    stream_start(c);
}

/* ---- request accessors ---- */

const char *
osim_req_header(const struct osim_conn *c, const char *name, size_t *len)
{
    const char *found = NULL;

    for (size_t i = 0; i < c->nhdrs; i++) {
        const struct osim_hdr *h = &c->hdrs[i];
        if (osim_ieq(c->head + h->name_off, h->name_len, name)) {
            found = c->head + h->value_off;
            *len = h->value_len;
        }
    }
    return found;
}

void
osim_req_path(const struct osim_conn *c, const char **path, size_t *plen, const char **query,
              size_t *qlen)
{
    const char *u = c->head;
    size_t n = c->url_len;

    /* absolute-form (a proxy that forwards the full URL): skip scheme://authority */
    size_t skip = n > 7 && strncasecmp(u, "http://", 7) == 0    ? 7
                  : n > 8 && strncasecmp(u, "https://", 8) == 0 ? 8
                                                                : 0;
    if (skip > 0) {
        const char *s = memchr(u + skip, '/', n - skip);
        if (s == NULL) {
            *path = "/";
            *plen = 1;
            *query = "";
            *qlen = 0;
            return;
        }
        n -= (size_t)(s - u);
        u = s;
    }
    const char *q = memchr(u, '?', n);
    *path = u;
    *plen = q != NULL ? (size_t)(q - u) : n;
    *query = q != NULL ? q + 1 : u + n;
    *qlen = q != NULL ? n - *plen - 1 : 0;
}

const char *
osim_req_method_name(const struct osim_conn *c)
{
    return llhttp_method_name((llhttp_method_t)c->method);
}

/* ---- parser callbacks ---- */

static struct osim_conn *
conn_of(llhttp_t *p)
{
    struct osim_conn *c = p->data;
    if (c == NULL || c->magic != OSIM_CONN_MAGIC)
        abort();
    return c;
}

static int
on_message_begin(llhttp_t *p)
{
    struct osim_conn *c = conn_of(p);

    c->head_len = 0;
    c->url_len = 0;
    c->nhdrs = 0;
    c->in_field = false;
    c->keep_body = false;
    c->err_status = 0;
    c->rhdr_len = 0;
    c->rhdr_over = false;
    c->rhdr_date = false;
    c->counted = false;
    c->inject_error = false;
    c->reset = false;
    c->status = 0;
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    clock_gettime(CLOCK_MONOTONIC, &c->t0);
    return 0;
}

static int
head_append(struct osim_conn *c, const char *at, size_t len, int err)
{
    if (c->head_len + len > sizeof(c->head)) {
        c->err_status = err;
        return -1;
    }
    memcpy(c->head + c->head_len, at, len);
    c->head_len += len;
    return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
    struct osim_conn *c = conn_of(p);

    if (c->url_len + len > OSIM_URL_MAX) {
        c->err_status = 414;
        return -1;
    }
    if (head_append(c, at, len, 414) < 0)
        return -1;
    c->url_len += len;
    return 0;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct osim_conn *c = conn_of(p);

    if (!c->in_field) {
        if (c->nhdrs == OSIM_HDRS_MAX) {
            c->err_status = 431;
            return -1;
        }
        struct osim_hdr *h = &c->hdrs[c->nhdrs++];
        h->name_off = (uint32_t)c->head_len;
        h->name_len = 0;
        h->value_off = (uint32_t)c->head_len;
        h->value_len = 0;
        c->in_field = true;
    }
    if (head_append(c, at, len, 431) < 0)
        return -1;
    c->hdrs[c->nhdrs - 1].name_len += (uint32_t)len;
    return 0;
}

static int
on_header_field_complete(llhttp_t *p)
{
    struct osim_conn *c = conn_of(p);

    c->in_field = false;
    c->hdrs[c->nhdrs - 1].value_off = (uint32_t)c->head_len;
    return 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct osim_conn *c = conn_of(p);

    if (head_append(c, at, len, 431) < 0)
        return -1;
    c->hdrs[c->nhdrs - 1].value_len += (uint32_t)len;
    return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
    struct osim_conn *c = conn_of(p);
    const char *path, *query, *v;
    size_t plen, qlen, vlen;

    c->method = (uint8_t)llhttp_get_method(p);
    c->vmajor = llhttp_get_http_major(p);
    c->vminor = llhttp_get_http_minor(p);
    c->keep_alive = llhttp_should_keep_alive(p) != 0;
    c->head_req = c->method == HTTP_HEAD;
    osim_req_path(c, &path, &plen, &query, &qlen);
    c->cls = osim_classify(path, plen);
    c->keep_body = c->cls == OSIM_C_ECHO || c->cls == OSIM_C_API;
    if (c->keep_body && (p->flags & F_CONTENT_LENGTH) && p->content_length > OSIM_BODY_MAX) {
        c->err_status = 413;
        return -1;
    }
    v = osim_req_header(c, "Expect", &vlen);
    if (v != NULL && osim_ieq(v, vlen, "100-continue") && c->vminor >= 1) {
        const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        evbuffer_add(bufferevent_get_output(c->bev), cont, sizeof(cont) - 1);
    }
    return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
    struct osim_conn *c = conn_of(p);

    if (!c->keep_body)
        return 0;
    if (evbuffer_get_length(c->body) + len > OSIM_BODY_MAX) {
        c->err_status = 413;
        return -1;
    }
    evbuffer_add(c->body, at, len);
    return 0;
}

static int
on_message_complete(llhttp_t *p)
{
    (void)p;
    return HPE_PAUSED; /* dispatch; resumed once the response is queued */
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- dispatch ---- */

static void
handle(struct osim_conn *c)
{
    if (c->inject_error) {
        osim_reply_text(c, 503, "injected error\n");
        return;
    }
    osim_route(c);
}

static void
dispatch(struct osim_conn *c)
{
    struct osim_server *srv = c->srv;
    const struct osim_opts *o = &srv->opts;
    uint64_t delay_us;

    if (c->peer_eof)
        c->keep_alive = false;
    if (c->cls == OSIM_C_STATS) {
        osim_stats_reply(c);
        return;
    }
    c->counted = true;
    srv->stats.requests++;
    srv->stats.by_method[c->method % OSIM_METHODS_MAX]++;
    srv->stats.by_class[c->cls]++;
    if (c->counted_epoch != srv->stats.epoch) {
        c->counted_epoch = srv->stats.epoch;
        srv->stats.connections++;
    }

    /* Draw order is fixed (jitter, error, reset) so --seed replays exactly. */
    delay_us = (o->latency_ms + osim_route_delay_ms(c)) * 1000;
    if (o->jitter_ms > 0) {
        double j;
        if (o->jitter_lognormal) {
            /* median jitter/2 like uniform's mean; long right tail, capped at 10x */
            j = (double)o->jitter_ms * 500.0 * exp(0.6 * osim_rng_normal(srv));
            if (j > (double)o->jitter_ms * 10000.0)
                j = (double)o->jitter_ms * 10000.0;
        } else {
            j = osim_rng_unit(srv) * (double)o->jitter_ms * 1000.0;
        }
        delay_us += (uint64_t)j;
    }
    if (o->error_rate > 0 && osim_rng_unit(srv) < o->error_rate)
        c->inject_error = true;
    if (o->reset_rate > 0 && osim_rng_unit(srv) < o->reset_rate)
        c->reset = true;

    if (delay_us > 0) {
        c->state = OSIM_S_WAIT;
        bufferevent_disable(c->bev, EV_READ);
        conn_timer_in(c, delay_us);
        return;
    }
    handle(c);
}

static void
parse_error(struct osim_conn *c, llhttp_errno_t err)
{
    char msg[160];
    int status = c->err_status != 0 ? c->err_status : 400;

    /* a request we cannot frame: answer and close, whatever the client asked */
    c->keep_alive = false;
    c->head_req = false;
    c->rhdr_len = 0;
    c->rhdr_over = false;
    c->rhdr_date = false;
    c->method = c->url_len > 0 ? (uint8_t)llhttp_get_method(&c->parser) : HTTP_GET;
    snprintf(msg, sizeof(msg), "%d %s (%s)\n", status, osim_reason(status), llhttp_errno_name(err));
    osim_reply_text(c, status, msg);
}

static void
conn_process(struct osim_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    c->in_process = true;
    while (c->state == OSIM_S_READ) {
        size_t n = evbuffer_get_contiguous_space(in);
        if (n == 0)
            break;
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        llhttp_errno_t err = llhttp_execute(&c->parser, data, n);
        if (err == HPE_OK) {
            evbuffer_drain(in, n);
            continue;
        }
        if (err == HPE_PAUSED) {
            evbuffer_drain(in, (size_t)(llhttp_get_error_pos(&c->parser) - data));
            dispatch(c);
            continue;
        }
        evbuffer_drain(in, evbuffer_get_length(in));
        parse_error(c, err);
        break;
    }
    c->in_process = false;
    if (c->state == OSIM_S_READ && c->peer_eof)
        conn_close_soon(c);
}

/* ---- libevent callbacks ---- */

static struct osim_conn *
conn_check(void *arg)
{
    struct osim_conn *c = arg;
    if (c == NULL || c->magic != OSIM_CONN_MAGIC)
        abort();
    return c;
}

/* GET /ws with Upgrade: websocket: a real handshake (Sec-WebSocket-Accept),
 * then every byte read is written back as it came (frames stay masked), which
 * is what a test of a tunnelling proxy needs. */
void
osim_upgrade_echo(struct osim_conn *c)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char sha[SHA_DIGEST_LENGTH], buf[128], acc[64];
    size_t ulen = 0, klen = 0;
    const char *up = osim_req_header(c, "Upgrade", &ulen);
    const char *key = osim_req_header(c, "Sec-WebSocket-Key", &klen);
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (up == NULL || !osim_ieq(up, ulen, "websocket") || key == NULL || klen == 0 ||
        klen > 64) {
        osim_reply_text(c, 426, "this endpoint needs Upgrade: websocket and Sec-WebSocket-Key\n");
        return;
    }
    memcpy(buf, key, klen);
    memcpy(buf + klen, guid, sizeof(guid) - 1);
    SHA1(buf, klen + sizeof(guid) - 1, sha);
    EVP_EncodeBlock(acc, sha, SHA_DIGEST_LENGTH);
    evbuffer_add_printf(out,
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                        (const char *)acc);
    c->status = 101;
    log_request(c, " upgraded");
    c->state = OSIM_S_ECHO;
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    evbuffer_add_buffer(out, bufferevent_get_input(c->bev));
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct osim_conn *c = conn_check(arg);

    if (c->state == OSIM_S_ECHO) {
        evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
        return;
    }
    conn_process(c);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct osim_conn *c = conn_check(arg);

    (void)bev;
    switch (c->state) {
    case OSIM_S_STREAM: stream_fill(c); break;
    case OSIM_S_CLOSING:
        if (out_len(c) == 0)
            conn_free(c);
        break;
    case OSIM_S_RESET:
        if (out_len(c) == 0)
            conn_reset_poll(c);
        break;
    default: break;
    }
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct osim_conn *c = conn_check(arg);

    (void)bev;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_WRITING)) {
        c->peer_eof = true;
        if (c->state == OSIM_S_READ || c->state == OSIM_S_ECHO) {
            /* complete requests were answered by the read callback; their
             * responses may still be queued: flush, then close */
            conn_close_soon(c);
        }
        return;
    }
    conn_free(c); /* error or timeout */
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct osim_conn *c = conn_check(arg);

    (void)fd;
    (void)what;
    switch (c->state) {
    case OSIM_S_WAIT: handle(c); break;
    case OSIM_S_STREAM: stream_fill(c); break; /* dripping */
    case OSIM_S_CLOSING: conn_free(c); break;
    case OSIM_S_RESET: conn_reset_poll(c); break;
    default: break;
    }
}

static void
conn_free(struct osim_conn *c)
{
    struct osim_server *srv = c->srv;

    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    srv->open_conns--;
    event_free(c->timer);
    bufferevent_free(c->bev);
    evbuffer_free(c->body);
    c->magic = 0xdeadbeefu;
    free(c);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct osim_server *srv = arg;
    struct osim_conn *c;
    int one = 1;

    (void)l;
    (void)salen;
    srv->stats.accepted++;
    if (sa->sa_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto fail;
    c->magic = OSIM_CONN_MAGIC;
    c->srv = srv;
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(srv->base, conn_timer_cb, c);
    c->body = evbuffer_new();
    if (c->bev == NULL || c->timer == NULL || c->body == NULL)
        goto fail;
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    c->state = OSIM_S_READ;
    struct timeval rt = {.tv_sec = OSIM_IDLE_TIMEOUT_S}, wt = {.tv_sec = OSIM_WRITE_TIMEOUT_S};
    bufferevent_set_timeouts(c->bev, &rt, &wt);
    bufferevent_setwatermark(c->bev, EV_WRITE, OSIM_STREAM_LOW, 0);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    srv->open_conns++;
    return;
fail:
    if (c != NULL) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c->timer != NULL)
            event_free(c->timer);
        if (c->body != NULL)
            evbuffer_free(c->body);
        free(c);
    } else {
        close(fd);
    }
}

int
osim_server_listen(struct osim_server *srv, const char *hostport, char *bound, size_t boundlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char host[256];
    const char *colon = strrchr(hostport, ':');
    const char *port;
    size_t hlen;
    int rc = -1;

    if (srv->nlisteners == OSIM_LISTEN_MAX || colon == NULL)
        return -1;
    port = colon + 1;
    hlen = (size_t)(colon - hostport);
    if (hlen >= 2 && hostport[0] == '[' && hostport[hlen - 1] == ']') {
        hostport++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host))
        return -1;
    memcpy(host, hostport, hlen);
    host[hlen] = '\0';
    if (getaddrinfo(hlen == 0 || strcmp(host, "*") == 0 ? NULL : host, port, &hints, &res) != 0)
        return -1;
    struct evconnlistener *l = evconnlistener_new_bind(srv->base, accept_cb, srv,
                                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                                       1024, res->ai_addr, (int)res->ai_addrlen);
    if (l == NULL)
        goto out;
    srv->listeners[srv->nlisteners++] = l;

    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(bound, boundlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(bound, boundlen, "%s:%u", ip, ntohs(s4->sin_port));
    }
    rc = 0;
out:
    freeaddrinfo(res);
    return rc;
}

void
osim_server_close_all(struct osim_server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_free(srv->listeners[i]);
    srv->nlisteners = 0;
    while (srv->conns != NULL)
        conn_free(srv->conns);
}
