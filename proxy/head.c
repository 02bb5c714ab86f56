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

int
proxy_head_init(struct proxy_head *h, size_t cap, size_t max_headers)
{
    memset(h, 0, sizeof(*h));
    h->buf = malloc(cap);
    if (h->buf == NULL)
        return -1;
    h->cap = cap;
    h->max_headers = max_headers;
    return 0;
}

void
proxy_head_reset(struct proxy_head *h)
{
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

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "proxy-authorization", NULL,
};

bool
proxy_hdr_hop_by_hop(const struct proxy_hdr *h, const struct proxy_head *all)
{
    struct proxy_hdr x;
    char name[128];

    for (size_t i = 0; hop_by_hop[i] != NULL; i++)
        if (proxy_hdr_is(h, hop_by_hop[i]))
            return true;
    if (h->nlen >= sizeof(name))
        return false;
    memcpy(name, h->name, h->nlen);
    name[h->nlen] = '\0';
    for (size_t i = 0; i < all->n; i++) {
        proxy_head_get(all, i, &x);
        if (proxy_hdr_is(&x, "connection") && proxy_token_in_list(x.value, x.vlen, name))
            return true;
    }
    return false;
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

