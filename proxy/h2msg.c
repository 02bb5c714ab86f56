/*
 * HTTP/2 fields -> the request's head, and which response fields HTTP/2
 * may carry (see proxy/h2.h). Everything a client sends is checked again
 * here even though nghttp2 validated it: the origin gets these fields as
 * HTTP/1.1, so CR, LF, NUL or a space in the wrong place would be request
 * smuggling.
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
proxy_h2_req_init(struct proxy_h2_req *q, struct proxy_head *head, size_t max_uri)
{
    memset(q, 0, sizeof(*q));
    if ((q->cookie = evbuffer_new()) == NULL)
        return -1;
    proxy_h2_req_reset(q, head, max_uri);
    return 0;
}

void
proxy_h2_req_reset(struct proxy_h2_req *q, struct proxy_head *head, size_t max_uri)
{
    struct evbuffer *cookie = q->cookie;

    evbuffer_drain(cookie, evbuffer_get_length(cookie));
    memset(q, 0, sizeof(*q));
    q->cookie = cookie;
    q->head = head;
    q->max_uri = max_uri;
    q->method = -1;
    q->content_length = -1;
}

void
proxy_h2_req_fini(struct proxy_h2_req *q)
{
    if (q->cookie != NULL)
        evbuffer_free(q->cookie);
    q->cookie = NULL;
}

static int
refuse(struct proxy_h2_req *q, int status)
{
    if (q->status == 0)
        q->status = status;
    return q->status;
}

/* A failed append to the head: the status head.c chose (414, 431; 500 is
 * its out of memory) */
static int
refuse_head(struct proxy_h2_req *q)
{
    int st = q->head->overflow;
    return refuse(q, st == 0 ? 431 : st == 500 ? 503 : st);
}

/* name is the literal lit (a constant-length compare, run for every field) */
#define IS(name, nlen, lit)                                                                        \
    ((nlen) == sizeof(lit) - 1 && memcmp((name), (lit), sizeof(lit) - 1) == 0)

/* RFC 9110 5.6.2 tchar, as a table: every byte of every field name goes
 * through it */
/* clang-format off */
static const bool tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};
/* clang-format on */

static bool
token_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!tchar[(unsigned char)s[i]])
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

/* name: value into the head (one field, as llhttp would hand it over). */
static int
add(struct proxy_h2_req *q, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (proxy_head_field(q->head, name, nlen) < 0 || proxy_head_value(q->head, value, vlen) < 0)
        return refuse_head(q);
    return 0;
}

static const struct {
    const char *name;
    size_t len;
    int method;
} methods[] = {
#define XX(num, name, string) {#string, sizeof(#string) - 1, num},
    HTTP_METHOD_MAP(XX)
#undef XX
};

int
proxy_h2_method(const char *m, size_t n)
{
    if (n == 3 && memcmp(m, "GET", 3) == 0)
        return HTTP_GET;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (methods[i].len == n && memcmp(methods[i].name, m, n) == 0)
            return methods[i].method;
    return -1;
}

static int
pseudo(struct proxy_h2_req *q, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (IS(name, nlen, ":method")) {
        if (!token_ok(value, vlen) || q->method >= 0 ||
            (q->method = proxy_h2_method(value, vlen)) < 0)
            return refuse(q, 400);
    } else if (IS(name, nlen, ":path")) {
        if (vlen > q->max_uri)
            return refuse(q, 414);
        if (vlen == 0 || !visible_ok(value, vlen) || q->has_path)
            return refuse(q, 400);
        if (proxy_head_url(q->head, value, vlen, q->max_uri) < 0)
            return refuse_head(q);
        q->has_path = true;
    } else if (IS(name, nlen, ":authority")) {
        if (vlen == 0 || vlen >= 256 || !visible_ok(value, vlen) || q->has_authority)
            return refuse(q, 400);
        q->has_authority = true;
        return add(q, "host", 4, value, vlen); /* the Host the pipeline routes by */
    } else if (!IS(name, nlen, ":scheme")) {
        return refuse(q, 400); /* :protocol (extended CONNECT) is not offered */
    }
    return 0;
}

/* Fields that are about one HTTP/1.1 connection and not the request, and
 * Expect (the body is streamed at once: nobody waits for a 100). */
static bool
dropped(const char *name, size_t nlen)
{
    switch (nlen) {
    case 2: return IS(name, nlen, "te");
    case 6: return IS(name, nlen, "expect");
    case 7: return IS(name, nlen, "upgrade");
    case 10: return IS(name, nlen, "connection") || IS(name, nlen, "keep-alive");
    case 14: return IS(name, nlen, "http2-settings");
    case 16: return IS(name, nlen, "proxy-connection");
    case 17: return IS(name, nlen, "transfer-encoding");
    default: return false;
    }
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
    if (IS(name, nlen, "host") && q->has_authority)
        return 0; /* :authority wins (RFC 9113 8.3.1) */
    if (IS(name, nlen, "content-length")) {
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
    if (IS(name, nlen, "cookie")) {
        /* joined at finish; counted against the head's size as it comes */
        size_t have = evbuffer_get_length(q->cookie);
        if (have > 0 && evbuffer_add(q->cookie, "; ", 2) < 0)
            return refuse(q, 503);
        if (evbuffer_add(q->cookie, value, vlen) < 0)
            return refuse(q, 503);
        if (q->head->len + 6 + evbuffer_get_length(q->cookie) > q->head->cap)
            return refuse(q, 431);
        return 0;
    }
    return add(q, name, nlen, value, vlen);
}

int
proxy_h2_req_finish(struct proxy_h2_req *q)
{
    size_t n = evbuffer_get_length(q->cookie);

    if (q->status != 0)
        return q->status;
    if (n > 0) {
        const char *v = (const char *)evbuffer_pullup(q->cookie, -1);
        if (v == NULL)
            return refuse(q, 503);
        if (add(q, "cookie", 6, v, n) != 0)
            return q->status;
    }
    if (q->method < 0)
        return refuse(q, 400);
    if (!q->has_path) {
        struct proxy_hdr host;
        /* CONNECT names its target in :authority (the pipeline answers 405) */
        if (q->method != HTTP_CONNECT || !proxy_head_find(q->head, "host", &host))
            return refuse(q, 400);
        if (proxy_head_url(q->head, host.value, host.vlen, q->max_uri) < 0)
            return refuse_head(q);
    }
    return 0;
}

/* The hop-by-hop fields of head.c's list: Connection, Keep-Alive,
 * Proxy-Connection, Transfer-Encoding and Upgrade are connection-specific
 * (a client treats a response carrying them as malformed); TE, Trailer and
 * Proxy-Authorization are not passed on either. */
bool
proxy_h2_resp_field_ok(const char *name, size_t nlen)
{
    struct proxy_hdr h = {name, nlen, "", 0};

    switch (nlen) {
    case 2:
    case 7:
    case 10:
    case 16:
    case 17:
    case 19: break;
    default: return true;
    }
    return !(proxy_hdr_is(&h, "te") || proxy_hdr_is(&h, "trailer") || proxy_hdr_is(&h, "upgrade") ||
             proxy_hdr_is(&h, "connection") || proxy_hdr_is(&h, "keep-alive") ||
             proxy_hdr_is(&h, "proxy-connection") || proxy_hdr_is(&h, "transfer-encoding") ||
             proxy_hdr_is(&h, "proxy-authorization"));
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
