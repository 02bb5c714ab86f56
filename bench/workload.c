/*
 * What is sent: the target (URL parsing), the path source (one URL, a list, Zipf over a
 * template), the method mix, and request heads assembled with memcpy into a caller buffer.
 * Also the small classifiers shared by the engine and the reports.
 */
#include "bench/bench.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- targets ---------------------------------------------------------------------------- */

int
bench_target_parse(struct bench_target *t, const char *url, char *err, size_t errlen)
{
    const char *p;
    size_t hl;

    memset(t, 0, sizeof(*t));
    if (strncasecmp(url, "http://", 7) == 0) {
        t->scheme = BENCH_HTTP;
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        t->scheme = BENCH_HTTPS;
        p = url + 8;
    } else {
        return errf(err, errlen, "'%s': expected http://host[:port][/path]", url);
    }
    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (he == NULL)
            return errf(err, errlen, "'%s': unterminated [IPv6] host", url);
        p = he + 1;
    } else {
        he = p + strcspn(p, ":/?#");
        p = he;
    }
    hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof(t->host))
        return errf(err, errlen, "'%s': missing or too long host", url);
    memcpy(t->host, hs, hl);
    t->host[hl] = '\0';
    const char *defport = t->scheme == BENCH_HTTPS ? "443" : "80";
    if (*p == ':') {
        p++;
        size_t pl = strspn(p, "0123456789");
        unsigned long port = strtoul(p, NULL, 10);
        if (pl == 0 || pl > 5 || port == 0 || port > 65535)
            return errf(err, errlen, "'%s': bad port", url);
        memcpy(t->port, p, pl);
        t->port[pl] = '\0';
        p += pl;
    } else {
        memcpy(t->port, defport, strlen(defport) + 1);
    }
    if (*p != '\0' && *p != '/' && *p != '?')
        return errf(err, errlen, "'%s': unexpected '%c' after the host", url, *p);
    size_t plen = strcspn(p, "#");
    if (plen + 2 > sizeof(t->path))
        return errf(err, errlen, "'%s': path too long", url);
    if (plen == 0) {
        t->path[0] = '/';
        t->path[1] = '\0';
    } else if (*p == '?') {
        t->path[0] = '/';
        memcpy(t->path + 1, p, plen);
        t->path[plen + 1] = '\0';
    } else {
        memcpy(t->path, p, plen);
        t->path[plen] = '\0';
    }
    for (const char *c = t->path; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return errf(err, errlen, "'%s': space or control character in the path", url);
    bool v6 = strchr(t->host, ':') != NULL;
    bool defp = strcmp(t->port, defport) == 0;
    snprintf(t->hostport, sizeof(t->hostport), "%s%s%s%s%s", v6 ? "[" : "", t->host,
             v6 ? "]" : "", defp ? "" : ":", defp ? "" : t->port);
    snprintf(t->base, sizeof(t->base), "%s://%s%s%s:%s",
             t->scheme == BENCH_HTTPS ? "https" : "http", v6 ? "[" : "", t->host, v6 ? "]" : "",
             t->port);
    return 0;
}

/* ---- methods and mix -------------------------------------------------------------------- */

static const char *const method_names[BENCH_METHODS] = {"GET", "HEAD", "POST", "PUT", "DELETE"};

const char *
bench_method_name(enum bench_method m)
{
    return (unsigned)m < BENCH_METHODS ? method_names[m] : "?";
}

int
bench_mix_parse(struct bench_mix *m, const char *s, char *err, size_t errlen)
{
    const char *p = s;
    unsigned total = 0;

    memset(m, 0, sizeof(*m));
    while (*p) {
        size_t tl = strcspn(p, ",");
        size_t nl = strcspn(p, ":,");
        unsigned long wt = 1;
        int mi = -1;
        for (int i = 0; i < BENCH_METHODS; i++)
            if (strlen(method_names[i]) == nl && strncasecmp(p, method_names[i], nl) == 0)
                mi = i;
        if (mi < 0)
            return errf(err, errlen, "--mix '%s': unknown method '%.*s' (GET HEAD POST PUT DELETE)",
                        s, (int)nl, p);
        if (nl < tl) {
            char *end;
            errno = 0;
            wt = strtoul(p + nl + 1, &end, 10);
            if (end == p + nl + 1 || end != p + tl || errno != 0 || wt == 0 || wt > 1000000)
                return errf(err, errlen, "--mix '%s': weight of %.*s must be 1..1000000", s,
                            (int)nl, p);
        }
        if (m->n == BENCH_MIX_MAX)
            return errf(err, errlen, "--mix '%s': at most %d entries", s, BENCH_MIX_MAX);
        total += (unsigned)wt;
        m->method[m->n] = (enum bench_method)mi;
        m->cum[m->n] = total;
        m->n++;
        p += tl;
        if (*p == ',')
            p++;
    }
    if (m->n == 0)
        return errf(err, errlen, "--mix '%s': empty", s);
    return 0;
}

enum bench_method
bench_mix_pick(const struct bench_mix *m, struct bench_rng *r)
{
    if (m->n == 1)
        return m->method[0];
    uint64_t x = bench_rng_below(r, m->cum[m->n - 1]);
    for (unsigned i = 0; i < m->n; i++)
        if (x < m->cum[i])
            return m->method[i];
    return m->method[m->n - 1];
}

/* ---- path sources ------------------------------------------------------------------------ */

int
bench_workload_load_list(struct bench_workload *w, const char *file, char *first_origin,
                         size_t originlen, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    char line[4096];
    size_t cap = 0;
    unsigned long lineno = 0;
    int rc = -1;

    if (f == NULL)
        return errf(err, errlen, "--urls %s: %s", file, strerror(errno));
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            errf(err, errlen, "%s:%lu: line too long", file, lineno);
            goto out;
        }
        while (len > 0 && isspace((unsigned char)line[len - 1]))
            line[--len] = '\0';
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        if (*s == '\0' || *s == '#')
            continue;
        const char *path = s;
        struct bench_target t;
        if (*s != '/') {
            char msg[512];
            if (bench_target_parse(&t, s, msg, sizeof(msg)) < 0) {
                errf(err, errlen, "%s:%lu: %s", file, lineno, msg);
                goto out;
            }
            path = t.path;
            if (first_origin != NULL && first_origin[0] == '\0') {
                /* the URL itself: its base plus a path is fine for bench_target_parse */
                snprintf(first_origin, originlen, "%s", t.base);
            }
        }
        if (strlen(path) >= sizeof(w->one)) {
            errf(err, errlen, "%s:%lu: path too long", file, lineno);
            goto out;
        }
        if (w->nlist == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nl = realloc(w->list, ncap * sizeof(*nl));
            if (nl == NULL) {
                errf(err, errlen, "--urls: out of memory");
                goto out;
            }
            w->list = nl;
            cap = ncap;
        }
        w->list[w->nlist] = strdup(path);
        if (w->list[w->nlist] == NULL) {
            errf(err, errlen, "--urls: out of memory");
            goto out;
        }
        w->nlist++;
    }
    if (w->nlist == 0) {
        errf(err, errlen, "--urls %s: no URL in the file", file);
        goto out;
    }
    w->kind = BENCH_SRC_LIST;
    rc = 0;
out:
    fclose(f);
    return rc;
}

int
bench_workload_set_template(struct bench_workload *w, const char *tmpl, char *err,
                            size_t errlen)
{
    const char *d = strstr(tmpl, "%d");
    if (tmpl[0] != '/')
        return errf(err, errlen, "--path-template '%s': must start with '/'", tmpl);
    if (d == NULL)
        return errf(err, errlen, "--path-template '%s': needs a %%d for the path number", tmpl);
    size_t pre = (size_t)(d - tmpl), post = strlen(d + 2);
    if (pre >= sizeof(w->tmpl_pre) || post >= sizeof(w->tmpl_post))
        return errf(err, errlen, "--path-template: too long");
    memcpy(w->tmpl_pre, tmpl, pre);
    w->tmpl_pre[pre] = '\0';
    memcpy(w->tmpl_post, d + 2, post + 1);
    return 0;
}

void
bench_workload_fini(struct bench_workload *w)
{
    for (size_t i = 0; i < w->nlist; i++)
        free(w->list[i]);
    free(w->list);
    w->list = NULL;
    w->nlist = 0;
    bench_zipf_free(w->zipf);
    w->zipf = NULL;
    free(w->body);
    w->body = NULL;
}

/* ---- request heads ------------------------------------------------------------------------ */

struct wbuf {
    char *p;
    size_t len, cap;
    bool over;
};

static inline void
put(struct wbuf *b, const char *s, size_t n)
{
    if (b->over || n > b->cap - b->len) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static inline void
puts_(struct wbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void
put_u64(struct wbuf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b, tmp + i, sizeof(tmp) - i);
}

/* The path (and query) of the next request, drawn from w with r. */
static inline void
put_target(struct wbuf *b, const struct bench_workload *w, struct bench_rng *r)
{
    switch (w->kind) {
    case BENCH_SRC_ONE:
        puts_(b, w->one);
        break;
    case BENCH_SRC_LIST:
        puts_(b, w->list[w->nlist == 1 ? 0 : bench_rng_below(r, w->nlist)]);
        break;
    case BENCH_SRC_ZIPF:
        puts_(b, w->tmpl_pre);
        put_u64(b, bench_zipf_sample(w->zipf, r));
        puts_(b, w->tmpl_post);
        break;
    }
}

size_t
bench_request_target(const struct bench_workload *w, struct bench_rng *r, char *buf, size_t cap,
                     enum bench_method *method)
{
    struct wbuf b = {buf, 0, cap, false};

    *method = bench_mix_pick(&w->mix, r); /* the method first, as bench_request_build does */
    put_target(&b, w, r);
    return b.over ? 0 : b.len;
}

size_t
bench_request_build(const struct bench_workload *w, const struct bench_target *t,
                    struct bench_rng *r, char *buf, size_t cap, enum bench_method *method)
{
    struct wbuf b = {buf, 0, cap, false};
    enum bench_method m = bench_mix_pick(&w->mix, r);

    puts_(&b, method_names[m]);
    put(&b, " ", 1);
    put_target(&b, w, r);
    puts_(&b, " HTTP/1.1\r\nHost: ");
    puts_(&b, t->hostport);
    puts_(&b, "\r\nUser-Agent: edge-bench\r\n");
    put(&b, w->extra_headers, w->extra_len);
    if (m == BENCH_POST || m == BENCH_PUT) {
        puts_(&b, "Content-Length: ");
        put_u64(&b, w->body_size);
        puts_(&b, "\r\nContent-Type: application/octet-stream\r\n");
    }
    put(&b, "\r\n", 2);
    *method = m;
    return b.over ? 0 : b.len;
}

/* ---- Cache-Status ------------------------------------------------------------------------- */

static const char *const cache_names[BENCH_CACHE_KINDS] = {"hit", "miss", "stale", "other",
                                                           "absent"};

const char *
bench_cache_name(enum bench_cache c)
{
    return (unsigned)c < BENCH_CACHE_KINDS ? cache_names[c] : "?";
}

static bool
tok_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

enum bench_cache
bench_cache_status_parse(const char *v, size_t len)
{
    /* last member: after the last comma outside quotes */
    size_t start = 0;
    bool q = false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '"')
            q = !q;
        else if (v[i] == ',' && !q)
            start = i + 1;
    }
    const char *p = v + start, *end = v + len;
    bool hit = false, neg_ttl = false;
    enum bench_cache fwd = BENCH_CACHE_OTHER;
    bool first = true;
    while (p < end) {
        /* one ';'-separated item: the cache name first, then parameters */
        const char *e = p;
        q = false;
        while (e < end && (q || *e != ';')) {
            if (*e == '"')
                q = !q;
            e++;
        }
        const char *a = p, *z = e;
        while (a < z && (*a == ' ' || *a == '\t'))
            a++;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
            z--;
        if (!first && a < z) {
            const char *eq = memchr(a, '=', (size_t)(z - a));
            size_t kl = eq ? (size_t)(eq - a) : (size_t)(z - a);
            const char *val = eq ? eq + 1 : NULL;
            size_t vl = eq ? (size_t)(z - val) : 0;
            if (tok_eq(a, kl, "hit")) {
                hit = !(val && tok_eq(val, vl, "?0"));
            } else if (tok_eq(a, kl, "ttl") && val && vl > 0 && val[0] == '-') {
                neg_ttl = true;
            } else if (tok_eq(a, kl, "fwd") && val) {
                if (tok_eq(val, vl, "miss") || tok_eq(val, vl, "uri-miss") ||
                    tok_eq(val, vl, "vary-miss"))
                    fwd = BENCH_CACHE_MISS;
                else if (tok_eq(val, vl, "stale"))
                    fwd = BENCH_CACHE_STALE;
            }
        }
        first = false;
        p = e < end ? e + 1 : end;
    }
    if (hit)
        return neg_ttl ? BENCH_CACHE_STALE : BENCH_CACHE_HIT;
    return fwd;
}

/* ---- results ------------------------------------------------------------------------------ */

static const char *const err_names[BENCH_ERRS] = {"connect", "timeout", "reset", "bad_response",
                                                  "tls"};

const char *
bench_err_name(enum bench_err e)
{
    return (unsigned)e < BENCH_ERRS ? err_names[e] : "?";
}

void
bench_result_init(struct bench_result *r)
{
    memset(r, 0, sizeof(*r));
    bench_hist_init(&r->hist);
    r->origin_requests = -1;
}

void
bench_result_merge(struct bench_result *dst, const struct bench_result *src)
{
    bench_hist_merge(&dst->hist, &src->hist);
    dst->sent += src->sent;
    dst->responses += src->responses;
    for (int i = 0; i < 6; i++)
        dst->status[i] += src->status[i];
    for (int i = 0; i < BENCH_ERRS; i++)
        dst->errors[i] += src->errors[i];
    for (int i = 0; i < BENCH_CACHE_KINDS; i++)
        dst->cache[i] += src->cache[i];
    dst->body_bytes += src->body_bytes;
    dst->late += src->late;
    dst->dropped += src->dropped;
    dst->connects += src->connects;
    if (src->max_conns > dst->max_conns)
        dst->max_conns = src->max_conns;
    dst->tls_handshakes += src->tls_handshakes;
    dst->tls_resumed += src->tls_resumed;
    if (dst->protocol[0] == '\0')
        memcpy(dst->protocol, src->protocol, sizeof(dst->protocol));
    if (dst->tls_version[0] == '\0')
        memcpy(dst->tls_version, src->tls_version, sizeof(dst->tls_version));
    dst->elapsed_s += src->elapsed_s;
    if (src->origin_requests >= 0)
        dst->origin_requests =
            (dst->origin_requests < 0 ? 0 : dst->origin_requests) + src->origin_requests;
}

uint64_t
bench_result_failures(const struct bench_result *r)
{
    uint64_t n = r->status[4] + r->status[5];
    for (int i = 0; i < BENCH_ERRS; i++)
        n += r->errors[i];
    return n;
}

double
bench_result_hit_ratio(const struct bench_result *r)
{
    uint64_t with = 0;
    for (int i = 0; i < BENCH_CACHE_KINDS; i++)
        if (i != BENCH_CACHE_ABSENT)
            with += r->cache[i];
    return with ? (double)r->cache[BENCH_CACHE_HIT] / (double)with : -1.0;
}
