/*
 * Site and route matching. Indexes are built once per snapshot, in its
 * arena; lookups only read them, so any number of worker threads may match
 * at once. Regex routes use PCRE2; the compiled code lives outside the arena
 * and is freed by the core module's release hook.
 */
#include "conf/conf-int.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define HOST_MAX 255
/* Bound the work one regex may do on one request path. */
#define REGEX_MATCH_LIMIT 100000
#define REGEX_DEPTH_LIMIT 10000

struct host_ent {
    const char *name; /* lower case; wildcards stored as ".suffix" */
    size_t len;
    const struct conf_site *site;
};

struct host_index {
    struct host_ent *exact; /* sorted by host_cmp */
    size_t nexact;
    struct host_ent *wild; /* sorted by host_cmp */
    size_t nwild;
    const struct conf_site *any; /* site '*' */
};

struct route_index {
    const struct conf_route **exact; /* '=' routes, sorted by pattern */
    size_t nexact;
    const struct conf_route **prefix; /* prefix and '^~' routes, longest first */
    size_t nprefix;
    const struct conf_route **regex; /* '~' and '~*' routes, conf order */
    size_t nregex;
};

static pthread_once_t mctx_once = PTHREAD_ONCE_INIT;
static pcre2_match_context *mctx; /* shared, read-only once built; lives for the process */

static void
mctx_init(void)
{
    mctx = pcre2_match_context_create(NULL);
    if (mctx != NULL) {
        pcre2_set_match_limit(mctx, REGEX_MATCH_LIMIT);
        pcre2_set_depth_limit(mctx, REGEX_DEPTH_LIMIT);
    }
}

/* ---- host names ---------------------------------------------------------------------------- */

static bool
is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool
conf_hostname_valid(const char *s, size_t len)
{
    size_t i, label = 0;

    if (len == 0 || len > 253)
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!is_alnum(c) && c != '-')
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return label != 0 && s[len - 1] != '-';
}

static char
lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

size_t
conf_match_host_norm(const char *in, size_t len, char *out, size_t cap)
{
    size_t i;

    if (len > 1 && in[len - 1] == '.')
        len--;
    if (len == 0 || len >= cap)
        return 0;
    for (i = 0; i < len; i++)
        out[i] = lower(in[i]);
    out[len] = '\0';
    if (len == 1 && out[0] == '*')
        return len;
    if (len > 2 && out[0] == '*' && out[1] == '.')
        return conf_hostname_valid(out + 2, len - 2) ? len : 0;
    return conf_hostname_valid(out, len) ? len : 0;
}

static int
host_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);

    if (r != 0)
        return r;
    return alen < blen ? -1 : alen > blen;
}

static int
host_ent_cmp(const void *x, const void *y)
{
    const struct host_ent *a = x, *b = y;
    return host_cmp(a->name, a->len, b->name, b->len);
}

static const struct conf_site *
host_find(const struct host_ent *v, size_t n, const char *name, size_t len)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = host_cmp(name, len, v[mid].name, v[mid].len);
        if (r == 0)
            return v[mid].site;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct conf_site *
conf_site_match(const struct conf *c, const char *host, size_t len)
{
    const struct host_index *idx = c->_hosts;
    const struct conf_site *s;
    char buf[HOST_MAX + 1];
    size_t n, i;

    if (idx == NULL)
        return NULL;
    if (len > 0 && host[0] == '[') {
        const char *rb = memchr(host, ']', len);
        n = rb != NULL ? (size_t)(rb - host) + 1 : len;
    } else {
        const char *colon = memchr(host, ':', len);
        n = colon != NULL ? (size_t)(colon - host) : len;
    }
    if (n > 1 && host[n - 1] == '.')
        n--;
    if (n == 0 || n > HOST_MAX)
        return idx->any;
    for (i = 0; i < n; i++)
        buf[i] = lower(host[i]);
    s = host_find(idx->exact, idx->nexact, buf, n);
    if (s != NULL)
        return s;
    /* leftmost dot first = longest suffix */
    for (i = 0; i < n; i++) {
        if (buf[i] != '.')
            continue;
        s = host_find(idx->wild, idx->nwild, buf + i, n - i);
        if (s != NULL)
            return s;
    }
    return idx->any;
}

/* ---- routes --------------------------------------------------------------------------------- */

int
conf_match_compile(struct conf_route *r, const struct conf_arg *a, struct conf_err *err)
{
    PCRE2_UCHAR msg[160];
    PCRE2_SIZE off;
    uint32_t opts = r->match == CONF_MATCH_REGEX_CI ? PCRE2_CASELESS : 0;
    int ec;

    r->regex = pcre2_compile((PCRE2_SPTR)a->s, a->len, opts, &ec, &off, NULL);
    if (r->regex == NULL) {
        if (pcre2_get_error_message(ec, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", ec);
        return conf_errf(err, &a->pos, "'route': bad regex '%s': %s (at offset %zu)", a->s,
                         (const char *)msg, (size_t)off);
    }
    return 0;
}

void
conf_match_free_regex(struct conf_route *r)
{
    pcre2_code_free(r->regex);
    r->regex = NULL;
}

static int
route_pat_cmp(const struct conf_route *a, const char *p, size_t len)
{
    return host_cmp(a->pattern, a->pattern_len, p, len);
}

static int
exact_cmp(const void *x, const void *y)
{
    const struct conf_route *a = *(const struct conf_route *const *)x;
    const struct conf_route *b = *(const struct conf_route *const *)y;
    return route_pat_cmp(a, b->pattern, b->pattern_len);
}

static int
prefix_cmp(const void *x, const void *y)
{
    const struct conf_route *a = *(const struct conf_route *const *)x;
    const struct conf_route *b = *(const struct conf_route *const *)y;

    if (a->pattern_len != b->pattern_len)
        return a->pattern_len > b->pattern_len ? -1 : 1;
    return a < b ? -1 : a > b; /* stable: conf order */
}

static int
route_index_build(struct conf_build *b, struct conf_site *s)
{
    struct route_index *ri = conf_alloc(b, sizeof(*ri));
    size_t i;

    if (ri == NULL)
        return -1;
    if (s->nroutes != 0) {
        ri->exact = conf_alloc(b, s->nroutes * sizeof(*ri->exact));
        ri->prefix = conf_alloc(b, s->nroutes * sizeof(*ri->prefix));
        ri->regex = conf_alloc(b, s->nroutes * sizeof(*ri->regex));
        if (ri->exact == NULL || ri->prefix == NULL || ri->regex == NULL)
            return -1;
    }
    for (i = 0; i < s->nroutes; i++) {
        const struct conf_route *r = &s->routes[i];
        switch (r->match) {
        case CONF_MATCH_EXACT: ri->exact[ri->nexact++] = r; break;
        case CONF_MATCH_PREFIX:
        case CONF_MATCH_PREFIX_NOREGEX: ri->prefix[ri->nprefix++] = r; break;
        case CONF_MATCH_REGEX:
        case CONF_MATCH_REGEX_CI: ri->regex[ri->nregex++] = r; break;
        }
    }
    if (ri->nexact > 1)
        qsort(ri->exact, ri->nexact, sizeof(*ri->exact), exact_cmp);
    if (ri->nprefix > 1)
        qsort(ri->prefix, ri->nprefix, sizeof(*ri->prefix), prefix_cmp);
    s->_index = ri;
    return 0;
}

static bool
regex_matches(const struct conf_route *r, const char *path, size_t len, pcre2_match_data *md)
{
    return pcre2_match(r->regex, (PCRE2_SPTR)path, len, 0, 0, md, mctx) >= 0;
}

const struct conf_route *
conf_route_match(const struct conf_site *s, const char *path, size_t len)
{
    const struct route_index *ri = s->_index;
    const struct conf_route *best = NULL;
    pcre2_match_data *md;
    size_t lo, hi, i;

    if (ri == NULL)
        return NULL;
    lo = 0;
    hi = ri->nexact;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = route_pat_cmp(ri->exact[mid], path, len);
        if (r == 0)
            return ri->exact[mid];
        if (r > 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    for (i = 0; i < ri->nprefix; i++) {
        const struct conf_route *r = ri->prefix[i];
        if (r->pattern_len <= len && memcmp(r->pattern, path, r->pattern_len) == 0) {
            best = r;
            break;
        }
    }
    if ((best != NULL && best->match == CONF_MATCH_PREFIX_NOREGEX) || ri->nregex == 0)
        return best;
    /* one ovector pair is enough to learn whether it matched */
    md = pcre2_match_data_create(1, NULL);
    if (md == NULL)
        return best;
    for (i = 0; i < ri->nregex; i++) {
        if (regex_matches(ri->regex[i], path, len, md)) {
            best = ri->regex[i];
            break;
        }
    }
    pcre2_match_data_free(md);
    return best;
}

/* ---- index building ------------------------------------------------------------------------- */

int
conf_match_build(struct conf_build *b, struct conf_err *err)
{
    struct conf *c = conf_build_conf(b);
    struct host_index *hi;
    size_t i, j, total = 0;

    pthread_once(&mctx_once, mctx_init);
    hi = conf_alloc(b, sizeof(*hi));
    if (hi == NULL)
        goto oom;
    for (i = 0; i < c->nsites; i++)
        total += c->sites[i].nhosts;
    if (total != 0) {
        hi->exact = conf_alloc(b, total * sizeof(*hi->exact));
        hi->wild = conf_alloc(b, total * sizeof(*hi->wild));
        if (hi->exact == NULL || hi->wild == NULL)
            goto oom;
    }
    for (i = 0; i < c->nsites; i++) {
        struct conf_site *s = &c->sites[i];
        for (j = 0; j < s->nhosts; j++) {
            const char *h = s->hosts[j];
            size_t len = strlen(h);
            if (len == 1 && h[0] == '*')
                hi->any = s;
            else if (h[0] == '*')
                hi->wild[hi->nwild++] = (struct host_ent){h + 1, len - 1, s};
            else
                hi->exact[hi->nexact++] = (struct host_ent){h, len, s};
        }
        if (route_index_build(b, s) < 0)
            goto oom;
    }
    if (hi->nexact > 1)
        qsort(hi->exact, hi->nexact, sizeof(*hi->exact), host_ent_cmp);
    if (hi->nwild > 1)
        qsort(hi->wild, hi->nwild, sizeof(*hi->wild), host_ent_cmp);
    c->_hosts = hi;
    return 0;
oom:
    return conf_errf(err, NULL, "%s: out of memory", c->path);
}
