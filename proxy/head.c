/*
 * Message heads: the request or response head is copied into one buffer of
 * bounded size as llhttp hands it over in pieces (pieces can straddle
 * socket reads), with an index of (name, value) offsets. Views into the
 * buffer stay valid until the head is reset.
 */
#include "proxy/internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

int
proxy_head_init(struct proxy_head *h, size_t cap, size_t max_headers)
{
    return proxy_head_init_grow(h, cap, cap, max_headers);
}

int
proxy_head_init_grow(struct proxy_head *h, size_t initial, size_t cap, size_t max_headers)
{
    memset(h, 0, sizeof(*h));
    if (initial > cap || initial == 0)
        initial = cap;
    h->buf = malloc(initial);
    if (h->buf == NULL)
        return -1;
    h->size = initial;
    h->cap = cap;
    h->max_headers = max_headers;
    return 0;
}

void
proxy_head_reset(struct proxy_head *h)
{
    h->conn_scanned = false;
    h->nconn = 0;
    h->len = 0;
    h->url_off = h->url_len = 0;
    h->reason_off = h->reason_len = 0;
    h->n = 0;
    h->in_value = false;
    h->overflow = 0;
}

void
proxy_head_fini(struct proxy_head *h)
{
    free(h->buf);
    free(h->idx);
    memset(h, 0, sizeof(*h));
}

static int
append(struct proxy_head *h, const char *at, size_t len, int status)
{
    if (len > h->cap - h->len) {
        h->overflow = status;
        return -1;
    }
    if (len > h->size - h->len) {
        size_t size = h->size;
        char *p;
        while (size - h->len < len)
            size = size > h->cap / 2 ? h->cap : size * 2;
        if ((p = realloc(h->buf, size)) == NULL) {
            h->overflow = 500;
            return -1;
        }
        h->buf = p;
        h->size = size;
    }
    memcpy(h->buf + h->len, at, len);
    h->len += len;
    return 0;
}

int
proxy_head_url(struct proxy_head *h, const char *at, size_t len, size_t max_uri)
{
    if (h->url_len == 0)
        h->url_off = h->len;
    if (h->url_len + len > max_uri) {
        h->overflow = 414;
        return -1;
    }
    if (append(h, at, len, 414) < 0)
        return -1;
    h->url_len += len;
    return 0;
}

int
proxy_head_reason(struct proxy_head *h, const char *at, size_t len)
{
    if (h->reason_len == 0)
        h->reason_off = h->len;
    if (append(h, at, len, 502) < 0)
        return -1;
    h->reason_len += len;
    return 0;
}

int
proxy_head_field(struct proxy_head *h, const char *at, size_t len)
{
    if (h->n == 0 || h->in_value) {
        /* a new header starts */
        if (h->n >= h->max_headers) {
            h->overflow = 431;
            return -1;
        }
        if (h->n == h->ncap) {
            size_t ncap = h->ncap ? h->ncap * 2 : 32;
            void *p = realloc(h->idx, ncap * sizeof(*h->idx));
            if (p == NULL) {
                h->overflow = 500;
                return -1;
            }
            h->idx = p;
            h->ncap = ncap;
        }
        h->idx[h->n].noff = h->len;
        h->idx[h->n].nlen = 0;
        h->idx[h->n].voff = h->len;
        h->idx[h->n].vlen = 0;
        h->n++;
        h->in_value = false;
    }
    if (append(h, at, len, 431) < 0)
        return -1;
    h->idx[h->n - 1].nlen += len;
    return 0;
}

int
proxy_head_value(struct proxy_head *h, const char *at, size_t len)
{
    if (h->n == 0)
        return -1;
    if (!h->in_value) {
        h->idx[h->n - 1].voff = h->len;
        h->idx[h->n - 1].vlen = 0;
        h->in_value = true;
    }
    if (append(h, at, len, 431) < 0)
        return -1;
    h->idx[h->n - 1].vlen += len;
    return 0;
}

size_t
proxy_head_get(const struct proxy_head *h, size_t i, struct proxy_hdr *out)
{
    if (i >= h->n)
        return 0;
    out->name = h->buf + h->idx[i].noff;
    out->nlen = h->idx[i].nlen;
    out->value = h->buf + h->idx[i].voff;
    out->vlen = h->idx[i].vlen;
    /* llhttp leaves trailing whitespace of values to us (OWS) */
    while (out->vlen > 0 && (out->value[out->vlen - 1] == ' ' || out->value[out->vlen - 1] == '\t'))
        out->vlen--;
    return 1;
}

bool
proxy_hdr_is(const struct proxy_hdr *h, const char *name)
{
    size_t n = strlen(name);
    return h->nlen == n && strncasecmp(h->name, name, n) == 0;
}

bool
proxy_head_find(const struct proxy_head *h, const char *name, struct proxy_hdr *out)
{
    struct proxy_hdr x;
    for (size_t i = 0; i < h->n; i++) {
        proxy_head_get(h, i, &x);
        if (proxy_hdr_is(&x, name)) {
            *out = x;
            return true;
        }
    }
    return false;
}

/* Is 'token' one of the comma-separated, case-insensitive tokens of list? */
bool
proxy_token_in_list(const char *list, size_t len, const char *token)
{
    size_t tl = strlen(token), i = 0;

    while (i < len) {
        while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        size_t s = i;
        while (i < len && list[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (list[e - 1] == ' ' || list[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(list + s, token, tl) == 0)
            return true;
    }
    return false;
}

void
proxy_head_scan_connection(struct proxy_head *h)
{
    struct proxy_hdr x;

    h->nconn = 0;
    h->conn_scanned = true;
    for (size_t i = 0; proxy_head_get(h, i, &x); i++) {
        if (!proxy_hdr_is(&x, "connection"))
            continue;
        size_t j = 0;
        while (j < x.vlen) {
            while (j < x.vlen && (x.value[j] == ' ' || x.value[j] == '\t' || x.value[j] == ','))
                j++;
            size_t st = j;
            while (j < x.vlen && x.value[j] != ',')
                j++;
            size_t e = j;
            while (e > st && (x.value[e - 1] == ' ' || x.value[e - 1] == '\t'))
                e--;
            if (e > st && h->nconn < sizeof(h->conn) / sizeof(h->conn[0])) {
                h->conn[h->nconn].off = (size_t)(x.value - h->buf) + st;
                h->conn[h->nconn].len = e - st;
                h->nconn++;
            }
        }
    }
}

static bool
ieq(const char *a, size_t alen, const char *lit, size_t llen)
{
    return alen == llen && strncasecmp(a, lit, llen) == 0;
}

bool
proxy_hdr_hop_by_hop(const struct proxy_hdr *h, const struct proxy_head *all)
{
    const char *n = h->name;
    size_t l = h->nlen;

    switch (l) {
    case 2: if (ieq(n, l, "te", 2)) return true; break;
    case 7: if (ieq(n, l, "trailer", 7) || ieq(n, l, "upgrade", 7)) return true; break;
    case 10: if (ieq(n, l, "connection", 10) || ieq(n, l, "keep-alive", 10)) return true; break;
    case 16: if (ieq(n, l, "proxy-connection", 16)) return true; break;
    case 17: if (ieq(n, l, "transfer-encoding", 17)) return true; break;
    case 19: if (ieq(n, l, "proxy-authorization", 19)) return true; break;
    default: break;
    }
    if (!all->conn_scanned)
        proxy_head_scan_connection((struct proxy_head *)all); /* lazily, once */
    for (size_t i = 0; i < all->nconn; i++)
        if (ieq(n, l, all->buf + all->conn[i].off, all->conn[i].len))
            return true;
    return false;
}

/* ---- free lists ---- */

int
proxy_pool_init(struct proxy_pool *p, size_t cap)
{
    p->n = 0;
    p->v = calloc(cap, sizeof(*p->v));
    p->cap = p->v != NULL ? cap : 0; /* without the array nothing is kept */
    return p->v != NULL ? 0 : -1;
}

void
proxy_pool_fini(struct proxy_pool *p, void (*free_one)(void *))
{
    while (p->n > 0)
        free_one(p->v[--p->n]);
    free(p->v);
    p->v = NULL;
    p->cap = 0;
}

/* ---- head builder ---- */

void
proxy_hb_flush(struct proxy_hb *b)
{
    if (b->len > 0)
        evbuffer_add(b->out, b->buf, b->len);
    b->len = 0;
}

void
proxy_hb_big(struct proxy_hb *b, const void *p, size_t n)
{
    evbuffer_add(b->out, p, n);
}

void
proxy_hb_str(struct proxy_hb *b, const char *s)
{
    proxy_hb_add(b, s, strlen(s));
}

void
proxy_hb_u64(struct proxy_hb *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    proxy_hb_add(b, tmp + i, sizeof(tmp) - i);
}

void
proxy_hb_hdr(struct proxy_hb *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
    /* one room check for the whole line: every field of every head the
     * sinks and send_head write comes through here */
    if (nlen + vlen + 4 <= sizeof(b->buf) - b->len) {
        char *p = b->buf + b->len;
        memcpy(p, name, nlen);
        p += nlen;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, value, vlen);
        p += vlen;
        *p++ = '\r';
        *p++ = '\n';
        b->len = (size_t)(p - b->buf);
        return;
    }
    proxy_hb_add(b, name, nlen);
    proxy_hb_lit(b, ": ");
    proxy_hb_add(b, value, vlen);
    proxy_hb_lit(b, "\r\n");
}

/* ---- request paths (for route matching) ---- */

/* Resolves "." and ".." segments and merges slashes, for route matching only
 * (the origin receives the target as the client sent it). Returns the
 * length, or 0 when the path escapes the root. */
size_t
proxy_path_normalize(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0, i = 0;

    if (n == 0 || in[0] != '/' || cap < 2)
        return 0;
    while (i < n) {
        while (i < n && in[i] == '/')
            i++;
        size_t s = i;
        while (i < n && in[i] != '/')
            i++;
        size_t len = i - s;
        if (len == 0)
            break;
        if (len == 1 && in[s] == '.')
            continue;
        if (len == 2 && in[s] == '.' && in[s + 1] == '.') {
            if (o == 0)
                return 0;
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            continue;
        }
        if (o + 1 + len >= cap)
            return 0;
        out[o++] = '/';
        memcpy(out + o, in + s, len);
        o += len;
    }
    if (o == 0 || (n > 0 && in[n - 1] == '/' && out[o - 1] != '/')) {
        if (o + 1 >= cap)
            return 0;
        out[o++] = '/';
    }
    return o;
}

static int
hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes for matching; a decoded NUL or '/' is kept encoded. */
size_t
proxy_path_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (in[i] == '%' && i + 2 < n && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            int v = hexval(in[i + 1]) * 16 + hexval(in[i + 2]);
            if (v != 0 && v != '/') {
                out[o++] = (char)v;
                i += 2;
                continue;
            }
        }
        out[o++] = in[i];
    }
    return o;
}

