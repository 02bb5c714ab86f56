/*
 * origin-sim endpoints: /bytes, /resp, /static, /chunked, /slow, /echo,
 * /headers, /status, /_stats (the items API is in items.c).
 */
#include "origin-sim/osim.h"

#include "conf/conf.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#define PARAM_MAX 2048
#define BYTES_MAX (1ull << 50) /* a sane upper bound for generated bodies */

const char *const osim_class_names[OSIM_C_COUNT] = {
    "bytes", "resp", "static", "api", "chunked", "slow", "echo", "headers", "status", "ws", "other",
};

static bool
has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

static bool
is(const char *s, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

enum osim_class
osim_classify(const char *p, size_t len)
{
    if (has_prefix(p, len, "/bytes/"))
        return OSIM_C_BYTES;
    if (is(p, len, "/resp"))
        return OSIM_C_RESP;
    if (has_prefix(p, len, "/static/") || is(p, len, "/static"))
        return OSIM_C_STATIC;
    if (has_prefix(p, len, "/api/"))
        return OSIM_C_API;
    if (is(p, len, "/chunked"))
        return OSIM_C_CHUNKED;
    if (is(p, len, "/slow"))
        return OSIM_C_SLOW;
    if (is(p, len, "/echo"))
        return OSIM_C_ECHO;
    if (is(p, len, "/headers"))
        return OSIM_C_HEADERS;
    if (has_prefix(p, len, "/status/"))
        return OSIM_C_STATUS;
    if (is(p, len, "/ws"))
        return OSIM_C_WS;
    if (is(p, len, "/_stats") || is(p, len, "/_stats/reset"))
        return OSIM_C_STATS;
    return OSIM_C_OTHER;
}

/* A duration in a query value: "250ms", "2s", or a bare number of milliseconds. */
static int
param_ms(const char *v, size_t len, uint64_t *ms)
{
    if (osim_parse_u64(v, len, ms) == 0)
        return 0;
    return conf_duration_from_str(v, len, ms);
}

uint64_t
osim_route_delay_ms(struct osim_conn *c)
{
    const char *path, *q;
    size_t plen, qlen, vlen;
    char v[64];
    uint64_t ms = 0;
    const char *name = c->cls == OSIM_C_SLOW ? "ms" : c->cls == OSIM_C_RESP ? "delay" : NULL;

    if (name == NULL)
        return 0;
    osim_req_path(c, &path, &plen, &q, &qlen);
    if (osim_query_get(q, qlen, name, v, sizeof(v), &vlen) == 1 && param_ms(v, vlen, &ms) < 0)
        ms = 0; /* the handler reports the bad value */
    return ms;
}

/* ---- shared pieces ---- */

enum range_kind { RANGE_NONE, RANGE_ONE, RANGE_BAD };

/* Single byte range of a representation of total bytes (RFC 9110 14.2).
 * Invalid syntax and multiple ranges are ignored (full 200 answer). */
static enum range_kind
parse_range(struct osim_conn *c, uint64_t total, uint64_t *off, uint64_t *len)
{
    size_t vlen;
    const char *v = osim_req_header(c, "Range", &vlen);
    uint64_t a = 0, b = 0;
    size_t i = 6, start;

    if (v == NULL || (c->method != HTTP_GET && c->method != HTTP_HEAD))
        return RANGE_NONE;
    if (vlen < 7 || strncasecmp(v, "bytes=", 6) != 0 || memchr(v, ',', vlen) != NULL)
        return RANGE_NONE;
    while (i < vlen && v[i] == ' ')
        i++;
    start = i;
    while (i < vlen && v[i] >= '0' && v[i] <= '9')
        i++;
    bool has_a = i > start;
    if (has_a && osim_parse_u64(v + start, i - start, &a) < 0)
        return RANGE_NONE;
    if (i >= vlen || v[i] != '-')
        return RANGE_NONE;
    start = ++i;
    while (i < vlen && v[i] >= '0' && v[i] <= '9')
        i++;
    bool has_b = i > start;
    if (has_b && osim_parse_u64(v + start, i - start, &b) < 0)
        return RANGE_NONE;
    while (i < vlen && v[i] == ' ')
        i++;
    if (i != vlen || (!has_a && !has_b))
        return RANGE_NONE;
    if (!has_a) { /* suffix: the last b bytes */
        if (b == 0 || total == 0)
            return RANGE_BAD;
        *len = b < total ? b : total;
        *off = total - *len;
        return RANGE_ONE;
    }
    if (has_b && b < a)
        return RANGE_NONE;
    if (a >= total)
        return RANGE_BAD;
    if (!has_b || b >= total)
        b = total - 1;
    *off = a;
    *len = b - a + 1;
    return RANGE_ONE;
}

static void
reply_unsatisfiable(struct osim_conn *c, uint64_t total)
{
    osim_resp_header(c, "Content-Range", "bytes */%llu", (unsigned long long)total);
    osim_reply_text(c, 416, "range not satisfiable\n");
}

/* RFC 9110 13.2.2: If-None-Match first; If-Modified-Since only without it
 * and only for GET/HEAD. True when the answer is 304. */
static bool
not_modified(struct osim_conn *c, const char *etag, size_t elen, bool has_lm, time_t lm)
{
    size_t vlen;
    const char *v;
    time_t ims;

    if (c->method != HTTP_GET && c->method != HTTP_HEAD)
        return false;
    v = osim_req_header(c, "If-None-Match", &vlen);
    if (v != NULL)
        return etag != NULL && osim_etag_list_match(v, vlen, etag, elen);
    v = osim_req_header(c, "If-Modified-Since", &vlen);
    if (v == NULL || !has_lm || osim_parse_http_date(v, vlen, &ims) < 0)
        return false;
    return lm <= ims;
}

/* ---- /bytes/N ---- */

static void
route_bytes(struct osim_conn *c, const char *path, size_t plen)
{
    uint64_t n, off, len;

    if (osim_parse_u64(path + 7, plen - 7, &n) < 0 || n > BYTES_MAX) {
        osim_reply_text(c, 400, "usage: /bytes/N with N a byte count\n");
        return;
    }
    osim_resp_header(c, "Accept-Ranges", "bytes");
    switch (parse_range(c, n, &off, &len)) {
    case RANGE_BAD: reply_unsatisfiable(c, n); return;
    case RANGE_ONE:
        osim_resp_header(c, "Content-Range", "bytes %llu-%llu/%llu", (unsigned long long)off,
                         (unsigned long long)(off + len - 1), (unsigned long long)n);
        osim_reply_bytes(c, 206, "application/octet-stream", off, len);
        return;
    case RANGE_NONE: osim_reply_bytes(c, 200, "application/octet-stream", 0, n); return;
    }
}

/* ---- /resp ---- */

struct resp_params {
    char cc[PARAM_MAX], etag[PARAM_MAX], lm[PARAM_MAX], vary[PARAM_MAX], tag[PARAM_MAX];
    char ctype[PARAM_MAX], loc[PARAM_MAX], body[PARAM_MAX], h[PARAM_MAX], v[64];
    bool has_cc, has_etag, has_lm, has_vary, has_tag, has_ctype, has_loc, has_body;
};

/* The h=NAME:VALUE parameters, in order, as response header lines. A value
 * "@N" (N a signed integer) is the HTTP-date N seconds from now, so that a
 * test can script Date, Expires or Last-Modified relative to the origin's
 * clock. A scripted Date replaces the automatic one. Returns a message for
 * a malformed parameter, NULL when all went in. */
static const char *
scripted_headers(struct osim_conn *c, const char *q, size_t qlen, char *h, size_t cap)
{
    size_t pos = 0, n;
    int rc;

    while ((rc = osim_query_next(q, qlen, &pos, "h", h, cap, &n)) != 0) {
        char *colon = rc > 0 ? memchr(h, ':', n) : NULL;
        const char *v;
        char date[64];
        if (colon == NULL || colon == h || memchr(h, '\0', n) != NULL)
            return "h= must be NAME:VALUE";
        *colon = '\0';
        v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (v[0] == '@' && (v[1] == '-' || v[1] == '+' || (v[1] >= '0' && v[1] <= '9'))) {
            char *end;
            long long off = strtoll(v + 1, &end, 10);
            if (*end != '\0' || off < -(1LL << 40) || off > (1LL << 40))
                return "h=NAME:@N needs N, a number of seconds";
            osim_http_date(time(NULL) + (time_t)off, date, sizeof(date));
            v = date;
        }
        osim_resp_header(c, h, "%s", v);
    }
    return NULL;
}

static int
getp(const char *q, size_t qlen, const char *name, char *dst, size_t cap, bool *has)
{
    size_t n;
    int rc = osim_query_get(q, qlen, name, dst, cap, &n);
    if (rc < 0)
        return -1;
    *has = rc == 1;
    if (*has && memchr(dst, '\0', n) != NULL)
        return -1;
    return 0;
}

static void
route_resp(struct osim_conn *c, const char *q, size_t qlen)
{
    struct resp_params params; /* ~12 KiB on the stack: no allocation per request */
    struct resp_params *p = &params;
    uint64_t status = 200, size = 0, off, len, delay, interim = 0;
    struct osim_pace pace = {0};
    size_t vlen;
    time_t lm = 0;
    char etag[PARAM_MAX + 4], lmbuf[64];
    const char *lmstr = lmbuf;
    size_t elen = 0;
    const char *bad = NULL;

    if (osim_query_get(q, qlen, "status", p->v, sizeof(p->v), &vlen) == 1 &&
        (osim_parse_u64(p->v, vlen, &status) < 0 || status < 200 || status > 599))
        bad = "status must be 200..599";
    if (osim_query_get(q, qlen, "size", p->v, sizeof(p->v), &vlen) == 1 &&
        (osim_parse_u64(p->v, vlen, &size) < 0 || size > BYTES_MAX))
        bad = "size must be a byte count";
    if (osim_query_get(q, qlen, "delay", p->v, sizeof(p->v), &vlen) == 1 &&
        param_ms(p->v, vlen, &delay) < 0)
        bad = "delay must be a duration (250ms, 2s) or milliseconds";
    if (osim_query_get(q, qlen, "drip", p->v, sizeof(p->v), &vlen) == 1 &&
        param_ms(p->v, vlen, &pace.drip_ms) < 0)
        bad = "drip must be a duration (250ms, 2s) or milliseconds";
    if (osim_query_get(q, qlen, "cut", p->v, sizeof(p->v), &vlen) == 1 &&
        (osim_parse_u64(p->v, vlen, &pace.cut) < 0 || pace.cut == 0))
        bad = "cut must be a byte count > 0";
    if (osim_query_get(q, qlen, "te", p->v, sizeof(p->v), &vlen) == 1) {
        if (vlen == 7 && memcmp(p->v, "chunked", 7) == 0)
            pace.chunked = true;
        else
            bad = "te must be chunked";
    }
    if (getp(q, qlen, "cc", p->cc, PARAM_MAX, &p->has_cc) < 0 ||
        getp(q, qlen, "etag", p->etag, PARAM_MAX, &p->has_etag) < 0 ||
        getp(q, qlen, "lm", p->lm, PARAM_MAX, &p->has_lm) < 0 ||
        getp(q, qlen, "vary", p->vary, PARAM_MAX, &p->has_vary) < 0 ||
        getp(q, qlen, "tag", p->tag, PARAM_MAX, &p->has_tag) < 0 ||
        getp(q, qlen, "ctype", p->ctype, PARAM_MAX, &p->has_ctype) < 0 ||
        getp(q, qlen, "loc", p->loc, PARAM_MAX, &p->has_loc) < 0 ||
        getp(q, qlen, "body", p->body, PARAM_MAX, &p->has_body) < 0)
        bad = "a query value is badly percent-encoded or too long";
    if (osim_query_get(q, qlen, "interim", p->v, sizeof(p->v), &vlen) == 1 &&
        (osim_parse_u64(p->v, vlen, &interim) < 0 || interim < 100 || interim > 199))
        bad = "interim must be 100..199";
    if (bad == NULL && p->has_etag) {
        bool quoted = p->etag[0] == '"' || (p->etag[0] == 'W' && p->etag[1] == '/');
        elen = (size_t)snprintf(etag, sizeof(etag), quoted ? "%s" : "\"%s\"", p->etag);
    }
    if (bad == NULL && p->has_lm) {
        uint64_t secs;
        if (osim_parse_u64(p->lm, strlen(p->lm), &secs) == 0 && secs < (1ull << 40)) {
            lm = (time_t)secs;
            osim_http_date(lm, lmbuf, sizeof(lmbuf));
        } else if (osim_parse_http_date(p->lm, strlen(p->lm), &lm) == 0) {
            lmstr = p->lm;
        } else {
            bad = "lm must be unix seconds or an HTTP-date";
        }
    }
    if (bad == NULL)
        bad = scripted_headers(c, q, qlen, p->h, PARAM_MAX);
    if (bad != NULL) {
        char msg[128];
        c->rhdr_len = 0;
        c->rhdr_date = false;
        snprintf(msg, sizeof(msg), "bad /resp query: %s\n", bad);
        osim_reply_text(c, 400, msg);
        goto out;
    }
    if (osim_query_get(q, qlen, "nodate", p->v, sizeof(p->v), &vlen) == 1)
        c->rhdr_date = true; /* no Date at all: what does a cache downstream add? */
    if (osim_query_get(q, qlen, "drop", p->v, sizeof(p->v), &vlen) == 1) {
        osim_reply_drop(c);
        goto out;
    }
    if (interim > 0)
        osim_reply_interim(c, (int)interim, "Link: </style.css>; rel=preload; as=style\r\n");
    /* what reached the origin: its request count, and the validators asked with */
    osim_resp_header(c, "X-Osim-Seq", "%llu", (unsigned long long)c->srv->stats.requests);
    {
        const char *cv = osim_req_header(c, "If-None-Match", &vlen);
        if (cv != NULL)
            osim_resp_header(c, "X-Osim-INM", "%.*s", (int)vlen, cv);
        cv = osim_req_header(c, "If-Modified-Since", &vlen);
        if (cv != NULL)
            osim_resp_header(c, "X-Osim-IMS", "%.*s", (int)vlen, cv);
    }

    if (p->has_etag)
        osim_resp_header(c, "ETag", "%s", etag);
    if (p->has_cc)
        osim_resp_header(c, "Cache-Control", "%s", p->cc);
    if (p->has_lm)
        osim_resp_header(c, "Last-Modified", "%s", lmstr);
    if (p->has_vary)
        osim_resp_header(c, "Vary", "%s", p->vary);
    if (p->has_tag)
        osim_resp_header(c, "Surrogate-Key", "%s", p->tag);
    if (p->has_loc)
        osim_resp_header(c, "Location", "%s", p->loc);
    /* nm=1: 304 to any conditional request, whatever the validators (a test
     * scripting the origin's answer, e.g. a 304 that carries a new ETag) */
    bool force_nm = osim_query_get(q, qlen, "nm", p->v, sizeof(p->v), &vlen) == 1 &&
                    (osim_req_header(c, "If-None-Match", &vlen) != NULL ||
                     osim_req_header(c, "If-Modified-Since", &vlen) != NULL);
    if (status / 100 == 2 &&
        (force_nm || not_modified(c, p->has_etag ? etag : NULL, elen, p->has_lm, lm))) {
        osim_reply(c, 304, NULL, NULL, 0);
        goto out;
    }
    const char *ctype = p->has_ctype ? p->ctype : "application/octet-stream";
    if (p->has_body) {
        osim_reply(c, (int)status, ctype, p->body, strlen(p->body));
        goto out;
    }
    if (status == 200) {
        osim_resp_header(c, "Accept-Ranges", "bytes");
        switch (parse_range(c, size, &off, &len)) {
        case RANGE_BAD: reply_unsatisfiable(c, size); goto out;
        case RANGE_ONE:
            osim_resp_header(c, "Content-Range", "bytes %llu-%llu/%llu", (unsigned long long)off,
                             (unsigned long long)(off + len - 1), (unsigned long long)size);
            osim_reply_bytes(c, 206, ctype, off, len);
            goto out;
        case RANGE_NONE: break;
        }
    }
    osim_reply_paced(c, (int)status, ctype, 0, size, &pace);
out:
    return;
}

/* ---- /static ---- */

static const char *
mime_type(const char *path)
{
    static const char *const map[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
        {".xml", "application/xml"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".webp", "image/webp"},
        {".ico", "image/x-icon"},
        {".wasm", "application/wasm"},
        {".woff2", "font/woff2"},
        {".pdf", "application/pdf"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');

    if (dot != NULL && (slash == NULL || dot > slash))
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
            if (strcasecmp(dot, map[i][0]) == 0)
                return map[i][1];
    return "application/octet-stream";
}

/* True when a decoded relative path has a "." or ".." segment or a NUL. */
static bool
bad_segments(const char *rel, size_t len)
{
    size_t i = 0;

    if (memchr(rel, '\0', len) != NULL || memchr(rel, '\\', len) != NULL)
        return true;
    while (i < len) {
        size_t e = i;
        while (e < len && rel[e] != '/')
            e++;
        if ((e - i == 1 && rel[i] == '.') || (e - i == 2 && rel[i] == '.' && rel[i + 1] == '.'))
            return true;
        i = e + 1;
    }
    return false;
}

static void
route_static(struct osim_conn *c, const char *path, size_t plen)
{
    char rel[PATH_MAX], full[PATH_MAX], *real = NULL;
    const char *root = c->srv->root_real;
    struct stat sb;
    int fd = -1;
    long n;
    size_t rootlen;

    if (root == NULL) {
        osim_reply_text(c, 404, "not found (origin-sim runs without --root)\n");
        return;
    }
    if (plen <= 8) { /* "/static" or "/static/" */
        path = "/static/index.html";
        plen = strlen(path);
    }
    n = osim_pct_decode(path + 8, plen - 8, rel, sizeof(rel), false);
    if (n < 0 || bad_segments(rel, (size_t)n)) {
        osim_reply_text(c, 400, "bad static path\n");
        return;
    }
    bool dir = n == 0 || rel[n - 1] == '/';
    if (snprintf(full, sizeof(full), "%s/%s%s", root, rel, dir ? "index.html" : "") >=
        (int)sizeof(full)) {
        osim_reply_text(c, 414, "path too long\n");
        return;
    }
    /* symlinks may point anywhere: the resolved path must stay under the root */
    real = realpath(full, NULL);
    rootlen = strlen(root);
    if (real == NULL || strncmp(real, root, rootlen) != 0 || real[rootlen] != '/' ||
        (fd = open(real, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        osim_reply_text(c, 404, "not found\n");
        goto out;
    }

    char etag[64], lm[64];
    int elen = snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)sb.st_size,
                        (unsigned long long)sb.st_mtime);
    osim_http_date(sb.st_mtime, lm, sizeof(lm));
    osim_resp_header(c, "ETag", "%s", etag);
    osim_resp_header(c, "Last-Modified", "%s", lm);
    osim_resp_header(c, "Cache-Control", "%s", c->srv->opts.static_cc);
    if (not_modified(c, etag, (size_t)elen, true, sb.st_mtime)) {
        osim_reply(c, 304, NULL, NULL, 0);
        goto out;
    }
    osim_resp_header(c, "Accept-Ranges", "bytes");
    uint64_t total = (uint64_t)sb.st_size, off, len;
    switch (parse_range(c, total, &off, &len)) {
    case RANGE_BAD: reply_unsatisfiable(c, total); goto out;
    case RANGE_ONE:
        osim_resp_header(c, "Content-Range", "bytes %llu-%llu/%llu", (unsigned long long)off,
                         (unsigned long long)(off + len - 1), (unsigned long long)total);
        osim_reply_file(c, 206, mime_type(real), fd, off, len);
        fd = -1;
        goto out;
    case RANGE_NONE:
        osim_reply_file(c, 200, mime_type(real), fd, 0, total);
        fd = -1;
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    free(real);
}

/* ---- /chunked, /slow, /echo, /headers, /status ---- */

static void
route_chunked(struct osim_conn *c, const char *q, size_t qlen)
{
    uint64_t n = 4, size = 1024;
    char v[32];
    size_t vlen;

    if ((osim_query_get(q, qlen, "n", v, sizeof(v), &vlen) == 1 &&
         osim_parse_u64(v, vlen, &n) < 0) ||
        (osim_query_get(q, qlen, "size", v, sizeof(v), &vlen) == 1 &&
         osim_parse_u64(v, vlen, &size) < 0) ||
        (size > 0 && n > BYTES_MAX / size)) {
        osim_reply_text(c, 400, "usage: /chunked?n=CHUNKS&size=BYTES\n");
        return;
    }
    osim_reply_chunked(c, 200, "application/octet-stream", n, size);
}

static void
route_slow(struct osim_conn *c, const char *q, size_t qlen)
{
    char v[64];
    size_t vlen;
    uint64_t ms;

    if (osim_query_get(q, qlen, "ms", v, sizeof(v), &vlen) != 0 && param_ms(v, vlen, &ms) < 0) {
        osim_reply_text(c, 400, "usage: /slow?ms=MILLISECONDS\n");
        return;
    }
    osim_reply_text(c, 200, "slow\n");
}

static void
route_echo(struct osim_conn *c)
{
    size_t vlen;
    const char *ct = osim_req_header(c, "Content-Type", &vlen);
    char ctype[256];

    if (ct != NULL && vlen < sizeof(ctype)) {
        memcpy(ctype, ct, vlen);
        ctype[vlen] = '\0';
    } else {
        snprintf(ctype, sizeof(ctype), "application/octet-stream");
    }
    osim_reply_evbuf(c, 200, ctype, c->body);
}

/* Sends a JSON value (consumed). */
static void
reply_json(struct osim_conn *c, int status, json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

    json_decref(j);
    if (s == NULL) {
        osim_reply_text(c, 500, "out of memory\n");
        return;
    }
    osim_reply(c, status, "application/json", s, strlen(s));
    free(s);
}

static void
route_headers(struct osim_conn *c)
{
    json_t *h = json_object();
    char name[256], ver[8];

    for (size_t i = 0; h != NULL && i < c->nhdrs; i++) {
        const struct osim_hdr *hd = &c->hdrs[i];
        size_t nl = hd->name_len < sizeof(name) - 1 ? hd->name_len : sizeof(name) - 1;
        for (size_t k = 0; k < nl; k++) {
            char ch = c->head[hd->name_off + k];
            name[k] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        name[nl] = '\0';
        json_t *prev = json_object_get(h, name);
        json_t *v = NULL;
        if (prev != NULL) {
            /* repeated field: combine as a list, RFC 9110 5.3 */
            char *joined = malloc(json_string_length(prev) + 2 + hd->value_len + 1);
            if (joined != NULL) {
                size_t pl = json_string_length(prev);
                memcpy(joined, json_string_value(prev), pl);
                memcpy(joined + pl, ", ", 2);
                memcpy(joined + pl + 2, c->head + hd->value_off, hd->value_len);
                v = json_stringn(joined, pl + 2 + hd->value_len);
                free(joined);
            }
        } else {
            v = json_stringn(c->head + hd->value_off, hd->value_len);
        }
        if (v != NULL) /* NULL: not UTF-8, left out */
            json_object_set_new(h, name, v);
    }
    snprintf(ver, sizeof(ver), "%u.%u", c->vmajor, c->vminor);
    json_t *root = json_object();
    if (root != NULL) {
        json_object_set_new(root, "method", json_string(osim_req_method_name(c)));
        json_object_set_new(root, "url", json_stringn(c->head, c->url_len));
        json_object_set_new(root, "version", json_string(ver));
        json_object_set_new(root, "headers", h);
    } else {
        json_decref(h);
    }
    reply_json(c, 200, root);
}

static void
route_status(struct osim_conn *c, const char *path, size_t plen)
{
    uint64_t st;
    char msg[96];

    if (osim_parse_u64(path + 8, plen - 8, &st) < 0 || st < 200 || st > 599) {
        osim_reply_text(c, 400, "usage: /status/N with N in 200..599\n");
        return;
    }
    snprintf(msg, sizeof(msg), "%d %s\n", (int)st, osim_reason((int)st));
    osim_reply_text(c, (int)st, msg);
}

/* ---- /_stats ---- */

void
osim_stats_reply(struct osim_conn *c)
{
    struct osim_server *srv = c->srv;
    struct osim_stats *s = &srv->stats;
    const char *path, *q;
    size_t plen, qlen;
    struct evbuffer *b;

    osim_req_path(c, &path, &plen, &q, &qlen);
    if (is(path, plen, "/_stats/reset")) {
        if (c->method != HTTP_POST) {
            osim_resp_header(c, "Allow", "POST");
            osim_reply_text(c, 405, "POST /_stats/reset\n");
            return;
        }
        uint64_t epoch = s->epoch;
        memset(s, 0, sizeof(*s));
        s->epoch = epoch + 1;
        osim_reply(c, 200, "application/json", "{\"reset\":true}", 14);
        return;
    }
    if (c->method != HTTP_GET && c->method != HTTP_HEAD) {
        osim_resp_header(c, "Allow", "GET, HEAD");
        osim_reply_text(c, 405, "GET /_stats\n");
        return;
    }
    b = evbuffer_new();
    if (b == NULL) {
        osim_reply_text(c, 500, "out of memory\n");
        return;
    }
    evbuffer_add_printf(b,
                        "{\"requests\":%llu,\"connections\":%llu,\"accepted\":%llu,"
                        "\"open\":%llu,\"bytes_sent\":%llu,\"by_method\":{",
                        (unsigned long long)s->requests, (unsigned long long)s->connections,
                        (unsigned long long)s->accepted, (unsigned long long)srv->open_conns,
                        (unsigned long long)s->bytes_sent);
    const char *sep = "";
    for (int m = 0; m < OSIM_METHODS_MAX; m++) {
        if (s->by_method[m] == 0)
            continue;
        evbuffer_add_printf(b, "%s\"%s\":%llu", sep, llhttp_method_name((llhttp_method_t)m),
                            (unsigned long long)s->by_method[m]);
        sep = ",";
    }
    evbuffer_add_printf(b, "},\"by_path\":{");
    for (int k = 0; k < OSIM_C_COUNT; k++)
        evbuffer_add_printf(b, "%s\"%s\":%llu", k ? "," : "", osim_class_names[k],
                            (unsigned long long)s->by_class[k]);
    evbuffer_add_printf(b, "}}\n");
    osim_reply_evbuf(c, 200, "application/json", b);
    evbuffer_free(b);
}

/* ---- router ---- */

void
osim_route(struct osim_conn *c)
{
    const char *path, *q;
    size_t plen, qlen;

    osim_req_path(c, &path, &plen, &q, &qlen);
    switch (c->cls) {
    case OSIM_C_BYTES: route_bytes(c, path, plen); break;
    case OSIM_C_RESP: route_resp(c, q, qlen); break;
    case OSIM_C_STATIC: route_static(c, path, plen); break;
    case OSIM_C_API: osim_items_handle(c, path, plen, q, qlen); break;
    case OSIM_C_CHUNKED: route_chunked(c, q, qlen); break;
    case OSIM_C_SLOW: route_slow(c, q, qlen); break;
    case OSIM_C_ECHO: route_echo(c); break;
    case OSIM_C_HEADERS: route_headers(c); break;
    case OSIM_C_STATUS: route_status(c, path, plen); break;
    case OSIM_C_STATS: osim_stats_reply(c); break;
    case OSIM_C_WS: osim_upgrade_echo(c); break;
    case OSIM_C_OTHER:
    default: osim_reply_text(c, 404, "not found\n"); break;
    }
}
