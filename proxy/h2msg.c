/*
 * HTTP/2 fields <-> HTTP/1.1 heads (see proxy/h2.h). Everything a client
 * sends is checked again here even though nghttp2 validated it: the bytes
 * become an HTTP/1.1 head, so CR, LF, NUL or a space in the wrong place
 * would be request smuggling.
 */
#include "proxy/h2.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

int
proxy_h2_preface(const void *p, size_t n)
{
    size_t k = n < PROXY_H2_PREFACE_LEN ? n : PROXY_H2_PREFACE_LEN;

    if (memcmp(p, PROXY_H2_PREFACE, k) != 0)
        return -1;
    return k == PROXY_H2_PREFACE_LEN ? 1 : 0;
}

int
proxy_h2_req_init(struct proxy_h2_req *q, size_t max_head, size_t max_headers, size_t max_uri)
{
    memset(q, 0, sizeof(*q));
    q->max_head = max_head;
    q->max_headers = max_headers;
    q->max_uri = max_uri;
    q->content_length = -1;
    q->fields = evbuffer_new();
    q->cookie = evbuffer_new();
    if (q->fields == NULL || q->cookie == NULL) {
        proxy_h2_req_fini(q);
        return -1;
    }
    return 0;
}

void
proxy_h2_req_reset(struct proxy_h2_req *q, size_t max_head, size_t max_headers, size_t max_uri)
{
    struct evbuffer *fields = q->fields, *cookie = q->cookie;

    free(q->path);
    evbuffer_drain(fields, evbuffer_get_length(fields));
    evbuffer_drain(cookie, evbuffer_get_length(cookie));
    memset(q, 0, sizeof(*q));
    q->fields = fields;
    q->cookie = cookie;
    q->max_head = max_head;
    q->max_headers = max_headers;
    q->max_uri = max_uri;
    q->content_length = -1;
}

void
proxy_h2_req_fini(struct proxy_h2_req *q)
{
    if (q->fields != NULL)
        evbuffer_free(q->fields);
    if (q->cookie != NULL)
        evbuffer_free(q->cookie);
    free(q->path);
    q->fields = q->cookie = NULL;
    q->path = NULL;
}

static int
refuse(struct proxy_h2_req *q, int status)
{
    if (q->status == 0)
        q->status = status;
    return q->status;
}

static bool
is(const char *name, size_t nlen, const char *lit)
{
    size_t l = strlen(lit);
    return nlen == l && memcmp(name, lit, l) == 0;
}

/* RFC 9110 5.6.2 tchar */
static bool
tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
token_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* No CTLs but HTAB, no DEL: what may sit in an HTTP/1.1 field value. */
static bool
value_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Visible ASCII and obs-text only: no space, no CTL (a target or a host). */
static bool
visible_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

static int
pseudo(struct proxy_h2_req *q, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (is(name, nlen, ":method")) {
        if (!token_ok(value, vlen) || vlen >= sizeof(q->method))
            return refuse(q, 400);
        memcpy(q->method, value, vlen);
        q->method_len = vlen;
        q->head_method = vlen == 4 && memcmp(value, "HEAD", 4) == 0;
    } else if (is(name, nlen, ":path")) {
        if (vlen > q->max_uri)
            return refuse(q, 414);
        if (vlen == 0 || !visible_ok(value, vlen) || q->path != NULL)
            return refuse(q, 400);
        q->path = malloc(vlen);
        if (q->path == NULL)
            return refuse(q, 503);
        memcpy(q->path, value, vlen);
        q->path_len = vlen;
        q->head_bytes += vlen;
    } else if (is(name, nlen, ":authority")) {
        if (vlen == 0 || vlen >= sizeof(q->authority) || !visible_ok(value, vlen))
            return refuse(q, 400);
        memcpy(q->authority, value, vlen);
        q->authority_len = vlen;
        q->head_bytes += 4 + vlen; /* it becomes Host */
    } else if (!is(name, nlen, ":scheme")) {
        return refuse(q, 400); /* :protocol (extended CONNECT) is not offered */
    }
    return q->head_bytes > q->max_head ? refuse(q, 431) : 0;
}

/* Fields that are about one HTTP/1.1 connection and not the request, and
 * Expect (the body is streamed at once: nobody waits for a 100). */
static bool
dropped(const char *name, size_t nlen)
{
    return is(name, nlen, "te") || is(name, nlen, "expect") || is(name, nlen, "connection") ||
           is(name, nlen, "keep-alive") || is(name, nlen, "proxy-connection") ||
           is(name, nlen, "transfer-encoding") || is(name, nlen, "upgrade") ||
           is(name, nlen, "http2-settings");
}

int
proxy_h2_req_field(struct proxy_h2_req *q, const char *name, size_t nlen, const char *value,
                   size_t vlen)
{
    if (q->status != 0)
        return q->status;
    if (nlen == 0 || !value_ok(value, vlen))
        return refuse(q, 400);
    if (name[0] == ':')
        return pseudo(q, name, nlen, value, vlen);
    if (!token_ok(name, nlen))
        return refuse(q, 400);
    if (dropped(name, nlen))
        return 0;
    if (is(name, nlen, "host")) {
        if (q->authority_len > 0)
            return 0; /* :authority wins (RFC 9113 8.3.1) */
        q->has_host = true;
    }
    if (is(name, nlen, "content-length")) {
        int64_t v = 0;
        if (vlen == 0 || vlen > 18)
            return refuse(q, 400);
        for (size_t i = 0; i < vlen; i++) {
            if (value[i] < '0' || value[i] > '9')
                return refuse(q, 400);
            v = v * 10 + (value[i] - '0');
        }
        if (q->content_length >= 0 && q->content_length != v)
            return refuse(q, 400);
        if (q->content_length >= 0)
            return 0; /* the same value twice: once is enough */
        q->content_length = v;
    }
    q->head_bytes += nlen + vlen;
    if (q->head_bytes > q->max_head)
        return refuse(q, 431);
    if (is(name, nlen, "cookie")) {
        if (evbuffer_get_length(q->cookie) > 0) {
            evbuffer_add(q->cookie, "; ", 2);
            q->head_bytes += 2;
        } else if (++q->nfields > q->max_headers) {
            return refuse(q, 431);
        }
        evbuffer_add(q->cookie, value, vlen);
        return 0;
    }
    if (++q->nfields > q->max_headers)
        return refuse(q, 431);
    evbuffer_add(q->fields, name, nlen);
    evbuffer_add(q->fields, ": ", 2);
    evbuffer_add(q->fields, value, vlen);
    evbuffer_add(q->fields, "\r\n", 2);
    return 0;
}

int
proxy_h2_req_finish(struct proxy_h2_req *q, bool end_stream, struct evbuffer *out)
{
    bool connect = q->method_len == 7 && memcmp(q->method, "CONNECT", 7) == 0;
    size_t n;

    if (q->status != 0)
        return q->status;
    if (q->method_len == 0 || (q->path == NULL && !connect))
        return refuse(q, 400);
    q->chunked = !end_stream && q->content_length < 0;
    n = q->nfields + (q->authority_len > 0) + q->chunked;
    if (n > q->max_headers || q->head_bytes + (q->chunked ? 24 : 0) > q->max_head)
        return refuse(q, 431);
    evbuffer_add(out, q->method, q->method_len);
    evbuffer_add(out, " ", 1);
    if (q->path != NULL)
        evbuffer_add(out, q->path, q->path_len);
    else
        evbuffer_add(out, q->authority, q->authority_len);
    evbuffer_add(out, " HTTP/1.1\r\n", 11);
    if (q->authority_len > 0) {
        evbuffer_add(out, "Host: ", 6);
        evbuffer_add(out, q->authority, q->authority_len);
        evbuffer_add(out, "\r\n", 2);
    }
    evbuffer_add_buffer(out, q->fields);
    if (evbuffer_get_length(q->cookie) > 0) {
        evbuffer_add(out, "Cookie: ", 8);
        evbuffer_add_buffer(out, q->cookie);
        evbuffer_add(out, "\r\n", 2);
    }
    if (q->chunked)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    evbuffer_add(out, "\r\n", 2);
    return 0;
}

void
proxy_h2_req_body(const struct proxy_h2_req *q, struct evbuffer *out, const void *p, size_t n)
{
    if (n == 0)
        return; /* an empty DATA frame; as a chunk it would end the body */
    if (q->chunked) {
        char hex[24];
        size_t i = sizeof(hex) - 2;
        hex[sizeof(hex) - 2] = '\r';
        hex[sizeof(hex) - 1] = '\n';
        size_t v = n;
        do {
            hex[--i] = "0123456789abcdef"[v & 15];
            v >>= 4;
        } while (v != 0);
        evbuffer_add(out, hex + i, sizeof(hex) - i);
        evbuffer_add(out, p, n);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, p, n);
    }
}

void
proxy_h2_req_end(const struct proxy_h2_req *q, struct evbuffer *out)
{
    if (q->chunked)
        evbuffer_add(out, "0\r\n\r\n", 5);
}

size_t
proxy_h2_resp_fields(struct proxy_head *h, struct proxy_hdr *out, size_t cap)
{
    struct proxy_hdr x;
    size_t k = 0;

    proxy_head_scan_connection(h);
    for (size_t i = 0; k < cap && proxy_head_get(h, i, &x); i++) {
        if (x.nlen == 0 || proxy_hdr_hop_by_hop(&x, h))
            continue;
        char *name = h->buf + h->idx[i].noff;
        for (size_t j = 0; j < x.nlen; j++)
            if (name[j] >= 'A' && name[j] <= 'Z')
                name[j] = (char)(name[j] - 'A' + 'a');
        out[k++] = x;
    }
    return k;
}

bool
proxy_h2_ratelim_over(struct proxy_h2_ratelim *rl, uint64_t now_ms, uint64_t max,
                      uint64_t window_ms)
{
    if (rl->count == 0 || now_ms - rl->start_ms >= window_ms) {
        rl->start_ms = now_ms;
        rl->count = 0;
    }
    rl->count++;
    return rl->count > max;
}
