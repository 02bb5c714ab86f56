/*
 * The SNI index: certificate names (exact, and "*.suffix" wildcards kept by
 * their suffix) in two sorted arrays, searched with bsearch. A wildcard
 * covers exactly one label (RFC 6125 6.4.3): "*.example.com" matches
 * "a.example.com", neither "example.com" nor "a.b.example.com".
 */
#include "tls/tls-int.h"

#include <stdlib.h>
#include <string.h>

static char
lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

size_t
tls_host_norm(const char *in, size_t len, char *out, size_t cap)
{
    size_t i, label = 0;

    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > TLS_NAME_MAX || len + 1 > cap)
        return 0;
    for (i = 0; i < len; i++) {
        char c = lower(in[i]);
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (!label_char(c) || ++label > 63) {
            return 0;
        }
        out[i] = c;
    }
    if (label == 0)
        return 0;
    out[len] = '\0';
    return len;
}

/* An all-digit last label: IPv4 text, which SNI never carries (RFC 6066 3). */
static bool
ip_text(const char *s, size_t len)
{
    size_t i = len;

    while (i > 0 && s[i - 1] != '.')
        i--;
    for (; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int
push(struct tls_name **arr, size_t *n, size_t *cap, const char *name, size_t len, size_t cert)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct tls_name *p = realloc(*arr, ncap * sizeof(*p));
        if (p == NULL)
            return -1;
        *arr = p;
        *cap = ncap;
    }
    (*arr)[*n].name = malloc(len + 1);
    if ((*arr)[*n].name == NULL)
        return -1;
    memcpy((*arr)[*n].name, name, len + 1);
    (*arr)[*n].len = len;
    (*arr)[*n].cert = cert;
    (*n)++;
    return 1;
}

int
tls_names_add(struct tls_names *n, const char *pattern, size_t len, size_t cert)
{
    char norm[TLS_NAME_MAX + 1];
    size_t nlen;
    bool wild = len > 2 && pattern[0] == '*' && pattern[1] == '.';

    if (wild) {
        nlen = tls_host_norm(pattern + 2, len - 2, norm, sizeof(norm));
        if (nlen == 0 || memchr(norm, '.', nlen) == NULL)
            return 0; /* "*.com": too wide to be a name */
        return push(&n->wild, &n->nwild, &n->capwild, norm, nlen, cert);
    }
    nlen = tls_host_norm(pattern, len, norm, sizeof(norm));
    if (nlen == 0 || ip_text(norm, nlen))
        return 0; /* partial wildcards ("w*.example.com") and odd names are not served */
    return push(&n->exact, &n->nexact, &n->capexact, norm, nlen, cert);
}

static int
name_cmp(const void *a, const void *b)
{
    const struct tls_name *x = a, *y = b;
    int c;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    c = memcmp(x->name, y->name, x->len);
    if (c != 0)
        return c;
    return x->cert < y->cert ? -1 : x->cert > y->cert;
}

static void
sort_dedup(struct tls_name *arr, size_t *n)
{
    size_t i, out = 0;

    if (*n == 0)
        return;
    qsort(arr, *n, sizeof(*arr), name_cmp);
    for (i = 0; i < *n; i++) {
        if (out > 0 && arr[out - 1].len == arr[i].len &&
            memcmp(arr[out - 1].name, arr[i].name, arr[i].len) == 0) {
            free(arr[i].name); /* sorted by cert too: the first certificate keeps it */
            continue;
        }
        arr[out++] = arr[i];
    }
    *n = out;
}

void
tls_names_finish(struct tls_names *n)
{
    sort_dedup(n->exact, &n->nexact);
    sort_dedup(n->wild, &n->nwild);
}

static long
find(const struct tls_name *arr, size_t n, const char *name, size_t len)
{
    struct tls_name key = {.name = (char *)name, .len = len, .cert = 0};
    size_t lo = 0, hi = n;

    /* lower bound of (len, name): the cert part of the order does not matter
     * once duplicates are gone */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct tls_name probe = arr[mid];
        probe.cert = 0;
        if (name_cmp(&probe, &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < n && arr[lo].len == len && memcmp(arr[lo].name, name, len) == 0)
        return (long)arr[lo].cert;
    return -1;
}

long
tls_names_find(const struct tls_names *n, const char *host, size_t len)
{
    const char *dot;
    long i = find(n->exact, n->nexact, host, len);

    if (i >= 0)
        return i;
    dot = memchr(host, '.', len);
    if (dot == NULL || dot == host)
        return -1;
    return find(n->wild, n->nwild, dot + 1, len - (size_t)(dot + 1 - host));
}

void
tls_names_fini(struct tls_names *n)
{
    size_t i;

    for (i = 0; i < n->nexact; i++)
        free(n->exact[i].name);
    for (i = 0; i < n->nwild; i++)
        free(n->wild[i].name);
    free(n->exact);
    free(n->wild);
    memset(n, 0, sizeof(*n));
}
