/*
 * A request through the pipeline, whichever protocol brought it: routing,
 * edge functions, the cache, the origin, and the answers edge makes itself.
 * The client side owns the request's head and its connection or stream; it
 * starts a request (proxy_req_new, then proxy_req_dispatch once the head is
 * complete), feeds its body (proxy_req_body*) and is told about the answer
 * through the request's sink (struct proxy_sink: HTTP/1.1 text in http1.c,
 * HTTP/2 frames in h2.c). Nothing here writes protocol bytes.
 *
 * Who writes a response (each through r->sink, keeping r->status,
 * resp_started, resp_done and resp_bytes):
 *   proxy_req_respond      answers edge makes (return, errors, respond())
 *   proxy_resp_head/...    an origin's response (upstream.c)
 *   serve_obj_write        an answer from the cache (cachepath.c)
 */
#include "proxy/internal.h"

#include "compute/compute.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

/* ---- the request object ------------------------------------------------------------------ */

struct proxy_req *
proxy_req_new(struct proxy_worker *w)
{
    struct proxy_req *r = proxy_pool_get(&w->req_pool);

    if (r == NULL && (r = malloc(sizeof(*r))) == NULL)
        return NULL;
    /* the large buffers at the end are set before they are read */
    memset(r, 0, offsetof(struct proxy_req, host));
    r->host[0] = r->authority[0] = r->request_id[0] = '\0';
    r->upstream_addr[0] = r->cache_status[0] = r->cache_cond[0] = '\0';
    memset(&r->cache_d, 0, sizeof(r->cache_d));
    r->magic = PROXY_REQ_MAGIC;
    r->w = w;
    r->conf = conf_ref(w->conf);
    r->content_length = -1;
    r->t_start_us = proxy_now_us();
    return r;
}

void
proxy_req_free(struct proxy_req *r)
{
    struct proxy_worker *w;

    if (r == NULL)
        return;
    CHECK_MAGIC(r, PROXY_REQ_MAGIC);
    w = r->w;
    if (r->up != NULL || r->dnsq != NULL)
        proxy_upstream_abort(r);
    if (r->body != NULL)
        evbuffer_free(r->body);
    if (r->body_copy != NULL)
        evbuffer_free(r->body_copy);
    proxy_cache_req_free(r);
    proxy_fx_free(r);
    free(r->_tried);
    if (r->conf != NULL)
        conf_unref(r->conf);
    r->magic = PROXY_DEAD_MAGIC;
    if (!proxy_pool_put(&w->req_pool, r))
        free(r);
}

/* The answer is complete: counted and logged, once. */
void
proxy_req_log_done(struct proxy_req *r)
{
    if (r->t_end_us != 0)
        return;
    r->t_end_us = proxy_now_us();
    STAT_INC(r->w, requests);
    proxy_stats_observe(r->w, r->status, r->t_end_us - r->t_start_us);
    proxy_access_log(r);
}

/* The client went away (connection closed, stream reset): an unanswered
 * request is logged as 499, as nginx does; then it goes. */
void
proxy_req_gone(struct proxy_req *r)
{
    CHECK_MAGIC(r, PROXY_REQ_MAGIC);
    if (!r->resp_done && r->t_end_us == 0) {
        r->t_end_us = proxy_now_us();
        if (r->status == 0)
            r->status = 499;
        proxy_access_log(r);
    }
    proxy_req_free(r);
}

void
proxy_req_check_done(struct proxy_req *r)
{
    r->sink->check_done(r);
}

void
proxy_req_body_wanted(struct proxy_req *r)
{
    r->sink->body_wanted(r);
}

bool
proxy_client_congested(const struct proxy_req *r)
{
    return r->sink->congested(r);
}

/* ---- request bodies ------------------------------------------------------------------------ */

static uint64_t
max_body(const struct proxy_req *r)
{
    return (r->route && r->route->max_body_size) ? r->route->max_body_size
                                                 : r->w->conf->limits.max_body_size;
}

void
proxy_chunk_head(struct evbuffer *out, size_t n)
{
    char hex[24];
    size_t i = sizeof(hex) - 2;

    hex[sizeof(hex) - 2] = '\r';
    hex[sizeof(hex) - 1] = '\n';
    do {
        hex[--i] = "0123456789abcdef"[n & 15];
        n >>= 4;
    } while (n != 0);
    evbuffer_add(out, hex + i, sizeof(hex) - i);
}

int
proxy_req_body(struct proxy_req *r, const char *at, size_t len)
{
    r->body_bytes += len;
    if (r->body_bytes > max_body(r))
        return 413;
    if (r->body == NULL || r->resp_done || len == 0)
        return 0; /* answered without the body: discard it */
    if (r->chunked) {
        proxy_chunk_head(r->body, len);
        evbuffer_add(r->body, at, len);
        evbuffer_add(r->body, "\r\n", 2);
    } else {
        evbuffer_add(r->body, at, len);
    }
    proxy_upstream_push_body(r);
    return 0;
}

int
proxy_req_body_buf(struct proxy_req *r, struct evbuffer *in)
{
    size_t len = evbuffer_get_length(in);

    r->body_bytes += len;
    if (r->body_bytes > max_body(r))
        return 413;
    if (r->body == NULL || r->resp_done || len == 0) {
        evbuffer_drain(in, len);
        return 0;
    }
    if (r->chunked) {
        proxy_chunk_head(r->body, len);
        evbuffer_add_buffer(r->body, in);
        evbuffer_add(r->body, "\r\n", 2);
    } else {
        evbuffer_add_buffer(r->body, in);
    }
    proxy_upstream_push_body(r);
    return 0;
}

static void run_request_phase(struct proxy_req *r);
static void after_request(struct proxy_req *r, int result);
static void dispatch_forward(struct proxy_req *r);

void
proxy_req_body_end(struct proxy_req *r)
{
    r->body_done = true;
    if (r->fx_body_wait) {
        r->fx_body_wait = false; /* the whole body is in r->body: the functions can run */
        run_request_phase(r);
        return;
    }
    if (r->body != NULL && !r->resp_done) {
        if (r->chunked)
            evbuffer_add(r->body, "0\r\n\r\n", 5);
        proxy_upstream_push_body(r);
    }
}

/* ---- response fields ----------------------------------------------------------------------- */

void
proxy_fields_grow(struct proxy_fields *f)
{
    size_t cap = f->cap ? f->cap * 2 : 64;
    struct proxy_hdr *v = realloc(f->v, cap * sizeof(*v));

    if (v == NULL) {
        f->oom = true;
        return;
    }
    f->v = v;
    f->cap = cap;
}

const char *
proxy_u64_text(char *buf, uint64_t v, size_t *len)
{
    size_t i = PROXY_U64_TEXT;

    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    *len = PROXY_U64_TEXT - i;
    return buf + i;
}

/* RFC 9110 15 reason phrases (llhttp only knows its enum names). */
const char *
proxy_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- answers made by edge ------------------------------------------------------------ */

/* A complete response made by the edge (its own answers, a function's
 * respond()): the given headers, X-Request-Id unless given, Content-Length
 * (none for 204/304), the body unless HEAD. */
void
proxy_req_respond(struct proxy_req *r, int status, const struct proxy_hdr *h, size_t nh,
                  const char *body, size_t len)
{
    struct proxy_fields *f = proxy_fields_begin(r->w);
    bool have_reqid = false, nobody = status == 204 || status == 304;
    char num[PROXY_U64_TEXT];
    size_t nl = 0;
    const char *n = proxy_u64_text(num, len, &nl);

    BUG_ON(r->resp_started);
    for (size_t i = 0; i < nh; i++) {
        if (proxy_hdr_is(&h[i], "x-request-id"))
            have_reqid = true;
        proxy_fields_add(f, h[i].name, h[i].nlen, h[i].value, h[i].vlen);
    }
    if (!have_reqid)
        proxy_fields_add(f, "X-Request-Id", 12, r->request_id, strlen(r->request_id));
    if (!nobody)
        proxy_fields_add(f, "Content-Length", 14, n, nl);
    if (f->oom) {
        /* the fields did not fit (out of memory): the bare answer */
        f = proxy_fields_begin(r->w);
        if (!nobody)
            proxy_fields_add(f, "Content-Length", 14, n, nl);
    }
    proxy_req_head(r, &(struct proxy_resp){
                          .status = status,
                          .f = f->v,
                          .nf = f->n,
                          .length = nobody ? -1 : (int64_t)len,
                          .nobody = nobody || r->method == HTTP_HEAD,
                          .edge = true,
                          .complete = true,
                          .body = body,
                          .body_len = nobody || r->method == HTTP_HEAD ? 0 : len,
                      });
    r->resp_bytes += nobody ? 0 : len;
    r->resp_done = true;
}

static void
respond_simple(struct proxy_req *r, int status, const char *ctype, const char *body, size_t len)
{
    struct proxy_hdr ct = {"Content-Type", 12, ctype, strlen(ctype)};
    proxy_req_respond(r, status, &ct, 1, body, len);
}

/* The error answer, without ending the request (the caller does). */
static void __attribute__((format(printf, 3, 0)))
resp_error_v(struct proxy_req *r, int status, const char *fmt, va_list ap)
{
    char body[512];
    int n;

    if (r->resp_started) {
        /* the head is out: the only honest signal left is to cut the response */
        r->status = r->status ? r->status : status;
        r->resp_done = true;
        r->sink->abort(r);
        return;
    }
    n = snprintf(body, sizeof(body), "%d %s: ", status, proxy_status_reason(status));
    n += vsnprintf(body + n, sizeof(body) - (size_t)n - 2, fmt, ap);
    if ((size_t)n > sizeof(body) - 2)
        n = (int)sizeof(body) - 2;
    body[n++] = '\n';
    body[n] = '\0';
    respond_simple(r, status, "text/plain; charset=utf-8", body, (size_t)n);
}

static void __attribute__((format(printf, 3, 4)))
resp_error_nofinish(struct proxy_req *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    resp_error_v(r, status, fmt, ap);
    va_end(ap);
}

void
proxy_resp_error(struct proxy_req *r, int status, const char *fmt, ...)
{
    va_list ap;

    CHECK_MAGIC(r, PROXY_REQ_MAGIC);
    va_start(ap, fmt);
    resp_error_v(r, status, fmt, ap);
    va_end(ap);
    proxy_req_check_done(r);
}

/* A function's respond(): the answer goes out as the response. */
void
proxy_fx_respond(struct proxy_req *r)
{
    const struct proxy_hdr *h;
    const char *body;
    size_t nh, len;
    int status;

    proxy_fx_answer(r, &status, &h, &nh, &body, &len);
    proxy_req_respond(r, status, h, nh, body, len);
}

/* A phase's answer (ANSWER) or failure (FAIL), without ending the request. */
void
proxy_fx_respond_result(struct proxy_req *r, int result)
{
    const char *why;
    int status;

    if (result == FX_ANSWER) {
        proxy_fx_respond(r);
        return;
    }
    status = proxy_fx_fail_status(r, &why);
    resp_error_nofinish(r, status, "%s", why);
}

/* ---- an origin's response -------------------------------------------------------------- */

static bool
status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* An origin's 1xx other than 100 and 101 (103 Early Hints, 102), without
 * its hop-by-hop fields: RFC 9110 15.2 has a proxy forward them. A 100 is
 * the origin's answer to an Expect edge handles itself (sink cont). */
void
proxy_resp_interim(struct proxy_req *r, struct proxy_upconn *u)
{
    struct proxy_fields *f;
    struct proxy_hdr h;
    int status = llhttp_get_status_code(&u->parser);

    if (status == 100 || r->resp_started || r->sink->interim == NULL || r->internal)
        return;
    f = proxy_fields_begin(r->w);
    for (size_t i = 0; proxy_head_get(&u->head, i, &h); i++)
        if (!proxy_hdr_hop_by_hop(&h, &u->head))
            proxy_fields_add(f, h.name, h.nlen, h.value, h.vlen);
    if (!f->oom)
        r->sink->interim(r, status, f->v, f->n);
}

/* The origin's head, as the client gets it: hop-by-hop fields out (and
 * Content-Length when the origin chunked), a function's edits applied,
 * X-Request-Id, Cache-Status and Via added. */
int
proxy_resp_head(struct proxy_req *r, struct proxy_upconn *u)
{
    struct proxy_fields *f = proxy_fields_begin(r->w);
    struct proxy_hdr h, up = {0};
    bool have_reqid = false, have_date = false;
    char date[32];
    int status = llhttp_get_status_code(&u->parser);
    bool chunked_up = (u->parser.flags & F_CHUNKED) != 0;
    bool have_cl = !chunked_up && (u->parser.flags & F_CONTENT_LENGTH) != 0;

    r->status = status;
    r->resp_started = true;
    r->resp_nobody = r->method == HTTP_HEAD || !status_has_body(status) || status == 101;
    for (size_t i = 0; proxy_head_get(&u->head, i, &h); i++) {
        if (proxy_hdr_hop_by_hop(&h, &u->head))
            continue;
        if (chunked_up && !r->resp_nobody && proxy_hdr_is(&h, "content-length"))
            continue; /* the framing the client gets is not the origin's */
        if (r->fx != NULL && proxy_fx_hides(r, 1, h.name, h.nlen))
            continue;
        if (!have_reqid && proxy_hdr_is(&h, "x-request-id"))
            have_reqid = true;
        if (!have_date && proxy_hdr_is(&h, "date"))
            have_date = true;
        proxy_fields_add(f, h.name, h.nlen, h.value, h.vlen);
    }
    if (r->fx != NULL) {
        size_t pos = 0;
        while (proxy_fx_next_added(r, 1, &pos, &h)) {
            if (proxy_hdr_is(&h, "x-request-id"))
                have_reqid = true;
            if (proxy_hdr_is(&h, "date"))
                have_date = true;
            proxy_fields_add(f, h.name, h.nlen, h.value, h.vlen);
        }
    }
    if (!have_date && status >= 200) {
        /* RFC 9110 6.6.1: a recipient with a clock forwards a response that
         * has no Date with the time it was received (a stored copy gets the
         * same time from the cache: serve_obj_write) */
        size_t dn = cache_http_date_format((int64_t)time(NULL), date, sizeof(date));
        if (dn > 0)
            proxy_fields_add(f, "Date", 4, date, dn);
    }
    if (!have_reqid)
        proxy_fields_add(f, "X-Request-Id", 12, r->request_id, strlen(r->request_id));
    if (r->cache_status[0] != '\0')
        proxy_fields_add(f, "Cache-Status", 12, r->cache_status, strlen(r->cache_status));
    proxy_fields_add(f, "Via", 3, "1.1 edge", 8);
    if (status == 101)
        proxy_head_find(&u->head, "upgrade", &up);
    if (f->oom) {
        /* out of memory for the fields: the head cannot be written as it is */
        r->resp_done = true;
        r->sink->abort(r);
        return -1;
    }
    r->sink->head(r, &(struct proxy_resp){
                         .status = status,
                         .reason = u->head.reason_len > 0 ? u->head.buf + u->head.reason_off : NULL,
                         .reason_len = u->head.reason_len,
                         .f = f->v,
                         .nf = f->n,
                         .length = have_cl ? (int64_t)u->parser.content_length : -1,
                         .nobody = r->resp_nobody,
                         .upgrade = up.value,
                         .upgrade_len = up.vlen,
                     });
    return 0;
}

int
proxy_resp_body(struct proxy_req *r, const char *at, size_t len)
{
    if (r->resp_nobody || len == 0 || r->resp_done)
        return 0;
    r->sink->data(r, at, len);
    r->resp_bytes += len;
    return 0;
}

void
proxy_resp_end(struct proxy_req *r)
{
    CHECK_MAGIC(r, PROXY_REQ_MAGIC);
    if (!r->resp_done)
        r->sink->end(r);
    r->resp_done = true;
    proxy_req_check_done(r);
}

/* ---- routing ---------------------------------------------------------------------------- */

static bool
reqid_valid(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '-' && ch != '_' && ch != '.' && ch != ':')
            return false;
    }
    return true;
}

void
proxy_req_dispatch(struct proxy_req *r)
{
    struct proxy_hdr h;
    const struct conf_limits *lim = &r->w->conf->limits;
    char decoded[8192], norm[8192];
    size_t hosts = 0, dlen, nlen;
    const char *host = NULL;
    size_t host_len = 0;
    const struct compute_route *chain;

    /* target forms: origin-form "/p?q", absolute-form "http://h/p", asterisk "*" */
    r->target = r->head->buf + r->head->url_off;
    r->target_len = r->head->url_len;
    if (r->method == HTTP_CONNECT) {
        proxy_resp_error(r, 405, "CONNECT is not supported");
        r->resp_close = true;
        return;
    }
    if (r->target_len > 7 && strncasecmp(r->target, "http://", 7) == 0) {
        const char *a = r->target + 7, *end = r->target + r->target_len;
        const char *p = memchr(a, '/', (size_t)(end - a));
        if (p == NULL)
            p = end;
        host = a;
        host_len = (size_t)(p - a);
        r->path = p;
        r->path_len = (size_t)(end - p);
        if (r->path_len == 0) {
            r->path = "/";
            r->path_len = 1;
        }
    } else {
        r->path = r->target;
        r->path_len = r->target_len;
    }
    const char *q = memchr(r->path, '?', r->path_len);
    if (q != NULL) {
        r->query = q + 1;
        r->query_len = r->path_len - (size_t)(q - r->path) - 1;
        r->path_len = (size_t)(q - r->path);
    }
    for (size_t i = 0; proxy_head_get(r->head, i, &h); i++) {
        if (proxy_hdr_is(&h, "host")) {
            hosts++;
            if (host == NULL || hosts > 1) {
                host = h.value;
                host_len = h.vlen;
            }
        } else if (proxy_hdr_is(&h, "x-request-id") && reqid_valid(h.value, h.vlen)) {
            snprintf(r->request_id, sizeof(r->request_id), "%.*s", (int)h.vlen, h.value);
        } else if (proxy_hdr_is(&h, "expect")) {
            if (h.vlen == 12 && strncasecmp(h.value, "100-continue", 12) == 0)
                r->expect_continue = true;
            else {
                proxy_resp_error(r, 417, "unsupported Expect: %.*s", (int)h.vlen, h.value);
                return;
            }
        }
    }
    if (r->request_id[0] == '\0')
        proxy_reqid_make(r->w, r->request_id, sizeof(r->request_id));
    if (hosts > 1) {
        r->resp_close = true;
        proxy_resp_error(r, 400, "more than one Host header");
        return;
    }
    if (host == NULL && (r->http_major > 1 || r->http_minor >= 1)) {
        r->resp_close = true;
        proxy_resp_error(r, 400, "missing Host header");
        return;
    }
    if (host != NULL) {
        size_t hl = host_len;
        size_t al = host_len < sizeof(r->authority) - 1 ? host_len : sizeof(r->authority) - 1;
        memcpy(r->authority, host, al);
        r->authority[al] = '\0';
        if (hl > 0 && host[0] == '[') {
            const char *rb = memchr(host, ']', hl);
            hl = rb ? (size_t)(rb - host) + 1 : hl;
        } else {
            const char *colon = memchr(host, ':', hl);
            if (colon != NULL)
                hl = (size_t)(colon - host);
        }
        if (hl >= sizeof(r->host)) {
            r->resp_close = true;
            proxy_resp_error(r, 400, "Host header too long");
            return;
        }
        for (size_t i = 0; i < hl; i++)
            r->host[i] = (char)tolower((unsigned char)host[i]);
        r->host[hl] = '\0';
    }
    r->site = conf_site_match(r->conf, r->host, strlen(r->host));
    if (r->site == NULL) {
        proxy_resp_error(r, 404, "no site matches host '%s'", r->host);
        return;
    }
    if (proxy_tls_check_site(r) < 0)
        return; /* 421/403: client certificates */
    dlen = proxy_path_decode(r->path, r->path_len, decoded, sizeof(decoded));
    nlen = proxy_path_normalize(decoded, dlen, norm, sizeof(norm));
    if (nlen == 0) {
        if (r->path_len == 1 && r->path[0] == '*') {
            proxy_resp_error(r, 404, "no route matches '*'");
            return;
        }
        r->resp_close = true;
        proxy_resp_error(r, 400, "bad request path");
        return;
    }
    r->route = conf_route_match(r->site, norm, nlen);
    if (r->route == NULL) {
        proxy_resp_error(r, 404, "no route matches path '%.*s'", (int)nlen, norm);
        return;
    }
    uint64_t max_body = r->route->max_body_size ? r->route->max_body_size : lim->max_body_size;
    if (r->content_length >= 0 && (uint64_t)r->content_length > max_body) {
        r->resp_close = true;
        proxy_resp_error(r, 413, "request body of %lld bytes is over the limit of %llu",
                         (long long)r->content_length, (unsigned long long)max_body);
        return;
    }
    chain = compute_route_chain(r->route);
    if (chain != NULL) {
        if (proxy_fx_new(r, chain) < 0 || (r->body = evbuffer_new()) == NULL) {
            proxy_resp_error(r, 503, "out of memory");
            return;
        }
        if (!r->chunked && r->content_length > 0 &&
            (uint64_t)r->content_length <= chain->budgets.body_max) {
            /* a body the functions may read (body_get): the chain runs once it is in */
            r->fx_body_wait = true;
            if (r->expect_continue) {
                r->sink->cont(r);
                r->expect_continue = false;
            }
            return;
        }
        run_request_phase(r);
        return;
    }
    dispatch_forward(r);
}

static void
run_request_phase(struct proxy_req *r)
{
    int rc = proxy_fx_has_phase(r, FX_REQUEST) ? proxy_fx_run(r, FX_REQUEST, after_request)
                                               : FX_CONTINUE;
    if (rc != FX_PAUSED)
        after_request(r, rc);
}

/* After the REQUEST phase (at once, or from a KV callback after a pause). */
static void
after_request(struct proxy_req *r, int result)
{
    if (result == FX_CONTINUE) {
        dispatch_forward(r);
        return;
    }
    proxy_fx_respond_result(r, result);
    proxy_req_check_done(r);
}

/* The route's own answer, the cache, or the origin. Ends the request when
 * it answers (outside a parser callback; see req_maybe_finish). */
static void
dispatch_forward(struct proxy_req *r)
{
    if (r->route->return_status != 0) {
        respond_simple(r, r->route->return_status, "text/plain; charset=utf-8",
                       r->route->return_body ? r->route->return_body : "",
                       r->route->return_body ? r->route->return_body_len : 0);
        proxy_req_check_done(r);
        return;
    }
    r->origin = proxy_fx_origin(r) != NULL ? proxy_fx_origin(r) : r->route->origin;
    if (r->origin == NULL) {
        if (r->fx != NULL)
            proxy_resp_error(r, 500, "no function of the route answered and it has no origin");
        else
            proxy_resp_error(r, 500, "route has nothing to serve");
        return;
    }
    if (r->body == NULL && (r->body = evbuffer_new()) == NULL) {
        proxy_resp_error(r, 503, "out of memory");
        return;
    }
    if (proxy_cache_request(r)) {
        proxy_req_check_done(r); /* answered from the cache (or parked behind a fetch) */
        return;
    }
    if (r->expect_continue && (r->content_length > 0 || r->chunked))
        r->sink->cont(r);
    proxy_req_to_origin(r);
}

/* After the ORIGIN phase. */
static void
after_origin(struct proxy_req *r, int result)
{
    if (result == FX_CONTINUE) {
        proxy_upstream_start(r);
        return;
    }
    proxy_collapse_release(r, COLLAPSE_FAILED); /* waiters go to the origin themselves */
    proxy_fx_respond_result(r, result);
    proxy_req_check_done(r);
}

void
proxy_req_to_origin(struct proxy_req *r)
{
    int rc;

    if (r->fx == NULL || !proxy_fx_has_phase(r, FX_ORIGIN)) {
        proxy_upstream_start(r);
        return;
    }
    rc = proxy_fx_run(r, FX_ORIGIN, after_origin);
    if (rc != FX_PAUSED)
        after_origin(r, rc);
}

/* ---- RESPONSE phase on an origin's response ----------------------------------------------- */

static bool
up_hdr_next(void *ctx, size_t *pos, struct proxy_hdr *out)
{
    struct proxy_upconn *u = ctx;
    while (proxy_head_get(&u->head, *pos, out)) {
        (*pos)++;
        if (!proxy_hdr_hop_by_hop(out, &u->head))
            return true;
    }
    return false;
}

static void
resp_after_fx(struct proxy_req *r, struct proxy_upconn *u, int result)
{
    if (result == FX_CONTINUE) {
        proxy_resp_head(r, u);
        return;
    }
    /* replaced: the origin's body still feeds the cache, not the client */
    proxy_fx_respond_result(r, result);
    r->fx_replaced = true;
}

static void
resp_after_fx_async(struct proxy_req *r, int result)
{
    struct proxy_upconn *u = r->up;

    BUG_ON(u == NULL);
    resp_after_fx(r, u, result);
    proxy_upstream_fx_resumed(r);
}

/* The origin's head arrived: run the RESPONSE phase, then write the head.
 * 1 when the phase paused (the upstream parser waits for it). */
int
proxy_resp_head_fx(struct proxy_req *r, struct proxy_upconn *u)
{
    int status = llhttp_get_status_code(&u->parser), rc;

    if (r->fx == NULL || status == 101 || !proxy_fx_has_phase(r, FX_RESPONSE)) {
        proxy_resp_head(r, u);
        return 0;
    }
    proxy_fx_set_response(r, status, up_hdr_next, u);
    rc = proxy_fx_run(r, FX_RESPONSE, resp_after_fx_async);
    if (rc == FX_PAUSED)
        return 1;
    resp_after_fx(r, u, rc);
    return 0;
}
