/*
 * The cache on the request path (cache/ does the RFC 9111 work; this file
 * decides when to call it and turns its answers into responses):
 *
 *   lookup   GET/HEAD on a route with 'cache on': build the key, open the
 *            object, decide (fresh / stale allowed / revalidate / miss).
 *            Fresh (or stale within stale-while-revalidate): answered here,
 *            the head in one piece, the body from the memory tier (copied
 *            or by reference) or by sendfile. Revalidate: the origin gets
 *            our validators.
 *   store    the origin's answer to a miss is teed into a cache writer while
 *            it streams to the client; published when complete, dropped when
 *            the origin fails mid-body.
 *   304      refreshes the stored object and the client gets it from cache.
 *   errors   a stale object within stale-if-error answers instead of 502/504.
 *   unsafe   a successful POST/PUT/DELETE/PATCH invalidates the target's key.
 */
#include "proxy/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

/* Disk full or write errors: served uncached, counted, logged at most once a minute. */
static void
store_error(struct proxy_req *r, const char *what, int rc)
{
    static struct proxy_log_rl rl;
    uint64_t dropped = 0;

    STAT_INC(r->w, cache_store_errors);
    if (proxy_log_rl_pass(&rl, 60000, &dropped))
        log_warn("cache: %s failed (%d) for %.*s; serving uncached (%llu more since last said)",
                 what, rc, (int)(r->cache_key_len > 200 ? 200 : r->cache_key_len), r->cache_key,
                 (unsigned long long)dropped);
}

static int64_t
unix_now(void)
{
    return (int64_t)time(NULL);
}

/* The request's headers as cache views, in a per-connection array. */
static size_t
req_views(struct proxy_req *r, const struct cache_hdr **out)
{
    struct proxy_worker *w = r->w;
    struct proxy_hdr h;
    size_t n = r->head->n, k = 0, pos = 0;
    bool edited = proxy_fx_edited(r, 0); /* a function's request header edits */

    if (edited)
        while (proxy_fx_next_added(r, 0, &pos, &h))
            n++;
    if (n > w->nhv) {
        void *p = realloc(w->hv, n * sizeof(*w->hv));
        if (p == NULL) {
            *out = NULL;
            return 0;
        }
        w->hv = p;
        w->nhv = n;
    }
    for (size_t i = 0; proxy_head_get(r->head, i, &h); i++) {
        if (edited && proxy_fx_hides(r, 0, h.name, h.nlen))
            continue;
        w->hv[k].name = h.name;
        w->hv[k].nlen = h.nlen;
        w->hv[k].value = h.value;
        w->hv[k].vlen = h.vlen;
        k++;
    }
    for (pos = 0; edited && proxy_fx_next_added(r, 0, &pos, &h); k++) {
        w->hv[k].name = h.name;
        w->hv[k].nlen = h.nlen;
        w->hv[k].value = h.value;
        w->hv[k].vlen = h.vlen;
    }
    *out = w->hv;
    return k;
}

/* The upstream response's headers as views (valid while u->head is). */
static size_t
resp_views(struct proxy_upconn *u, struct cache_hdr *out, size_t cap)
{
    struct proxy_hdr h;
    size_t n = 0;
    for (size_t i = 0; n < cap && proxy_head_get(&u->head, i, &h); i++) {
        out[n].name = h.name;
        out[n].nlen = h.nlen;
        out[n].value = h.value;
        out[n].vlen = h.vlen;
        n++;
    }
    return n;
}

static void
status_text(struct proxy_req *r, enum cache_fwd fwd, int fwd_status, int64_t ttl, bool stored)
{
    r->cache_fwd = (int)fwd;
    struct cache_status st = {.name = "edge",
                              .fwd = fwd,
                              .fwd_status = fwd_status,
                              .ttl = ttl,
                              .stored = stored,
                              .collapsed = r->cache_collapsed};
    if (cache_status_format(&st, r->cache_status, sizeof(r->cache_status)) == 0)
        r->cache_status[0] = '\0';
}

static void fill_detach(struct proxy_req *r);

void
proxy_cache_req_free(struct proxy_req *r)
{
    fill_detach(r);
    proxy_collapse_forget(r);
    if (r->cache_w != NULL) {
        cache_writer_abort(r->cache_w);
        r->cache_w = NULL;
    }
    if (r->cache_obj != NULL) {
        cache_obj_free(r->cache_obj);
        r->cache_obj = NULL;
    }
    free(r->cache_key);
    r->cache_key = NULL;
}

/* Weak comparison of an If-None-Match list with an entity tag. */
static bool
etag_matches(const char *list, size_t llen, const char *etag, size_t elen)
{
    size_t i = 0;
    if (elen > 2 && etag[0] == 'W' && etag[1] == '/')
        etag += 2, elen -= 2;
    while (i < llen) {
        while (i < llen && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        if (i < llen && list[i] == '*')
            return true;
        size_t s = i;
        if (llen - i > 2 && list[i] == 'W' && list[i + 1] == '/')
            s = i + 2;
        i = s;
        if (i < llen && list[i] == '"') {
            i++;
            while (i < llen && list[i] != '"')
                i++;
            if (i < llen)
                i++;
        } else {
            while (i < llen && list[i] != ',')
                i++;
        }
        if (i - s == elen && memcmp(list + s, etag, elen) == 0)
            return true;
    }
    return false;
}

/* What the client's head asks of a stored response, found in one pass
 * (the first field of each name counts, as proxy_head_find() would). */
struct req_conds {
    bool inm, ims, range, if_range;
    struct proxy_hdr h_inm, h_ims, h_range;
};

static bool
name_is(const struct proxy_hdr *h, const char *lower, size_t n)
{
    return h->nlen == n && strncasecmp(h->name, lower, n) == 0;
}

static void
req_conds_scan(struct proxy_req *r, struct req_conds *q)
{
    struct proxy_hdr h;

    memset(q, 0, sizeof(*q));
    for (size_t i = 0; proxy_head_get(r->head, i, &h); i++) {
        switch (h.nlen) {
        case 5:
            if (!q->range && name_is(&h, "range", 5)) {
                q->range = true;
                q->h_range = h;
            }
            break;
        case 8:
            if (name_is(&h, "if-range", 8))
                q->if_range = true;
            break;
        case 13:
            if (!q->inm && name_is(&h, "if-none-match", 13)) {
                q->inm = true;
                q->h_inm = h;
            }
            break;
        case 17:
            if (!q->ims && name_is(&h, "if-modified-since", 17)) {
                q->ims = true;
                q->h_ims = h;
            }
            break;
        }
    }
}

/* RFC 9110 13.1.2 / 13.1.3 against the stored object: true = answer 304. */
static bool
client_not_modified(const struct req_conds *q, const struct cache_obj *o)
{
    struct cache_hdr sh;
    size_t pos = 0;
    const char *etag = NULL;
    size_t elen = 0;
    int64_t lm = CACHE_UNSET, since;

    if (o->status != 200 || (!q->inm && !q->ims))
        return false;
    while (cache_obj_header_next(o, &pos, &sh)) {
        if (sh.nlen == 4 && strncasecmp(sh.name, "etag", 4) == 0) {
            etag = sh.value;
            elen = sh.vlen;
        } else if (sh.nlen == 13 && strncasecmp(sh.name, "last-modified", 13) == 0) {
            if (!cache_http_date_parse(sh.value, sh.vlen, &lm))
                lm = CACHE_UNSET;
        }
    }
    if (q->inm)
        return etag != NULL && etag_matches(q->h_inm.value, q->h_inm.vlen, etag, elen);
    if (q->ims && lm != CACHE_UNSET && cache_http_date_parse(q->h_ims.value, q->h_ims.vlen, &since))
        return lm <= since;
    return false;
}

/* Stored fields the edge writes itself (or drops) when it serves a hit. */
static bool
skip_stored(const struct cache_hdr *h)
{
    switch (h->nlen) {
    case 3: return strncasecmp(h->name, "age", 3) == 0 || strncasecmp(h->name, "via", 3) == 0;
    case 10:
        return strncasecmp(h->name, "connection", 10) == 0 ||
               strncasecmp(h->name, "keep-alive", 10) == 0;
    case 12: return strncasecmp(h->name, "x-request-id", 12) == 0;
    case 14: return strncasecmp(h->name, "content-length", 14) == 0;
    case 17: return strncasecmp(h->name, "transfer-encoding", 17) == 0;
    }
    return false;
}

#define RANGES_MAX 16

struct byte_range {
    uint64_t start, len;
};

/* RFC 9110 14.1.2 byte ranges of a representation of 'total' bytes.
 * Returns the number of satisfiable ranges (0: none satisfiable -> 416),
 * or -1 when the header is to be ignored (syntax, not bytes, too many). */
static int
parse_ranges(const char *v, size_t n, uint64_t total, struct byte_range *out)
{
    size_t i = 0;
    int count = 0, seen = 0;

    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    if (n - i < 6 || strncasecmp(v + i, "bytes=", 6) != 0)
        return -1;
    i += 6;
    while (i < n) {
        uint64_t a = 0, b = 0;
        bool has_a = false, has_b = false;
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i >= n)
            break;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            if (a > (UINT64_MAX - 9) / 10)
                return -1;
            a = a * 10 + (uint64_t)(v[i++] - '0');
            has_a = true;
        }
        if (i >= n || v[i] != '-')
            return -1;
        i++;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            if (b > (UINT64_MAX - 9) / 10)
                return -1;
            b = b * 10 + (uint64_t)(v[i++] - '0');
            has_b = true;
        }
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i < n && v[i] != ',')
            return -1;
        if (!has_a && !has_b)
            return -1;
        if (has_a && has_b && b < a)
            return -1;
        if (++seen > RANGES_MAX)
            return -1; /* a pathological list: ignore it, answer 200 */
        if (!has_a) { /* suffix: the last b bytes */
            if (b == 0 || total == 0)
                continue;
            out[count].start = b >= total ? 0 : total - b;
            out[count].len = total - out[count].start;
            count++;
        } else if (a < total) {
            uint64_t end = (!has_b || b >= total) ? total - 1 : b;
            out[count].start = a;
            out[count].len = end - a + 1;
            count++;
        }
    }
    return seen == 0 ? -1 : count;
}

static void serve_obj_write(struct proxy_req *r, struct cache_obj *o, int64_t age);

static bool
obj_hdr_next(void *ctx, size_t *pos, struct proxy_hdr *out)
{
    struct cache_obj *o = ctx;
    struct cache_hdr h;
    while (cache_obj_header_next(o, pos, &h)) {
        if (skip_stored(&h))
            continue;
        out->name = h.name;
        out->nlen = h.nlen;
        out->value = h.value;
        out->vlen = h.vlen;
        return true;
    }
    return false;
}

static void
serve_after_fx(struct proxy_req *r, int result)
{
    if (result == FX_CONTINUE)
        serve_obj_write(r, r->cache_obj, r->fx_age);
    else
        proxy_fx_respond_result(r, result);
    proxy_req_check_done(r);
}

/* Answers the request from o (owned by r->cache_obj): complete afterwards,
 * unless a function's RESPONSE phase paused (it ends the request then). */
static void
serve_obj(struct proxy_req *r, struct cache_obj *o, int64_t age)
{
    int rc;

    BUG_ON(o != r->cache_obj);
    if (r->fx == NULL || !proxy_fx_has_phase(r, FX_RESPONSE)) {
        serve_obj_write(r, o, age);
        return;
    }
    r->fx_age = age;
    {
        struct req_conds q;
        req_conds_scan(r, &q);
        proxy_fx_set_response(r, client_not_modified(&q, o) ? 304 : o->status, obj_hdr_next, o);
    }
    rc = proxy_fx_run(r, FX_RESPONSE, serve_after_fx);
    if (rc == FX_PAUSED)
        return;
    if (rc == FX_CONTINUE)
        serve_obj_write(r, o, age);
    else
        proxy_fx_respond_result(r, rc);
}

/* The head of one part of a multipart/byteranges body (RFC 9110 14.6)
 * into buf (PART_HEAD_MAX bytes: the boundary is at most 37 and the type
 * 255); its length. */
#define PART_HEAD_MAX 512

static size_t
put(char *buf, size_t n, const void *p, size_t len)
{
    memcpy(buf + n, p, len);
    return n + len;
}

static size_t
put_u64(char *buf, size_t n, uint64_t v)
{
    char num[PROXY_U64_TEXT];
    size_t l;
    const char *t = proxy_u64_text(num, v, &l);
    return put(buf, n, t, l);
}

static size_t
part_head(char *buf, const char *boundary, size_t blen, const char *ctype, size_t clen,
          const struct byte_range *rg, uint64_t total)
{
    size_t n = put(buf, 0, "\r\n--", 4);
    n = put(buf, n, boundary, blen);
    n = put(buf, n, "\r\nContent-Type: ", 16);
    n = put(buf, n, ctype, clen);
    n = put(buf, n, "\r\nContent-Range: bytes ", 23);
    n = put_u64(buf, n, rg->start);
    n = put(buf, n, "-", 1);
    n = put_u64(buf, n, rg->start + rg->len - 1);
    n = put(buf, n, "/", 1);
    n = put_u64(buf, n, total);
    return put(buf, n, "\r\n\r\n", 4);
}

static size_t
digits(uint64_t v)
{
    size_t n = 1;

    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Bytes of part_head()'s output. */
static uint64_t
part_head_len(size_t blen, size_t clen, const struct byte_range *rg, uint64_t total)
{
    return sizeof("\r\n--") - 1 + blen + sizeof("\r\nContent-Type: ") - 1 + clen +
           sizeof("\r\nContent-Range: bytes ") - 1 + digits(rg->start) + 1 +
           digits(rg->start + rg->len - 1) + 1 + digits(total) + sizeof("\r\n\r\n") - 1;
}

/* A body in memory up to this size is copied (behind the head when it is
 * the whole answer: one buffer, one iovec); a larger one is sent by
 * reference. */
#define BODY_COPY_MAX 2048

static void
body_unref(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    cache_body_unref(arg);
}

/* Hands a byte range of o's body to the client: from the memory tier by
 * copy or by reference (held until it is sent), else from the file (the
 * sink sends it by sendfile where it can). false: the response cannot be
 * completed (the head is out: the caller aborts it). */
static bool
body_range(struct proxy_req *r, struct cache_obj *o, const struct byte_range *rg)
{
    if (o->body != NULL && rg->len <= BODY_COPY_MAX) {
        r->sink->data(r, o->body + rg->start, (size_t)rg->len);
        return true;
    }
    if (o->body != NULL)
        return r->sink->data_ref(r, o->body + rg->start, (size_t)rg->len, body_unref,
                                 cache_obj_body_ref(o));
    return r->sink->data_file(r, o->fd, o->body_off + rg->start, rg->len);
}

/* Writes the answer from o through the request's sink. Fields: the stored
 * ones (less those skip_stored() names and those a RESPONSE function hid,
 * plus those it added), then Content-Range / multipart Content-Type,
 * Content-Length, Age, Cache-Status, X-Request-Id, Via. A whole body of up
 * to BODY_COPY_MAX bytes in memory goes with the head (one piece). */
static void
serve_obj_write(struct proxy_req *r, struct cache_obj *o, int64_t age)
{
    struct proxy_fields *f = proxy_fields_begin(r->w);
    struct cache_hdr h;
    size_t pos = 0;
    struct req_conds q;
    bool not_modified;
    int status;
    bool body, one_piece, have_date = false;
    char date_s[32];
    struct byte_range rg[RANGES_MAX];
    int nr = -1;
    const char *ctype = "application/octet-stream";
    size_t ctype_len = sizeof("application/octet-stream") - 1, blen = 0;
    char boundary[64], crange[96], clen_s[PROXY_U64_TEXT], age_s[PROXY_U64_TEXT];
    const char *t;
    size_t n;
    uint64_t clen = o->body_len;

    req_conds_scan(r, &q);
    not_modified = client_not_modified(&q, o);
    status = not_modified ? 304 : o->status;
    body = !not_modified && r->method != HTTP_HEAD && o->body_len > 0;
    /* Range on a stored 200 (an If-Range makes us send it all: allowed) */
    if (!not_modified && o->status == 200 && q.range && !q.if_range) {
        nr = parse_ranges(q.h_range.value, q.h_range.vlen, o->body_len, rg);
        if (nr == 0)
            status = 416;
        else if (nr > 0)
            status = 206;
    }
    if (status == 416) {
        body = false;
        clen = 0;
    } else if (status == 206 && nr == 1) {
        clen = rg[0].len;
    } else if (status == 206) {
        /* the parts carry the stored Content-Type (its first 255 bytes) */
        while (cache_obj_header_next(o, &pos, &h))
            if (h.nlen == 12 && strncasecmp(h.name, "content-type", 12) == 0) {
                ctype = h.value;
                ctype_len = h.vlen > 255 ? 255 : h.vlen;
            }
        pos = 0;
        memcpy(boundary, "edge-", 5);
        blen = strnlen(r->request_id, 32);
        memcpy(boundary + 5, r->request_id, blen);
        blen += 5;
        clen = 0;
        for (int i = 0; i < nr; i++)
            clen += part_head_len(blen, ctype_len, &rg[i], o->body_len) + rg[i].len;
        clen += sizeof("\r\n--") - 1 + blen + sizeof("--\r\n") - 1;
    }

    while (cache_obj_header_next(o, &pos, &h)) {
        if (skip_stored(&h))
            continue;
        if (h.nlen == 4 && strncasecmp(h.name, "date", 4) == 0)
            have_date = true;
        if (status == 206 && nr > 1 && h.nlen == 12 && strncasecmp(h.name, "content-type", 12) == 0)
            continue; /* the parts carry it */
        if ((status == 206 || status == 416) && h.nlen == 13 &&
            strncasecmp(h.name, "content-range", 13) == 0)
            continue; /* a stored 200's own (meaningless there) would contradict ours */
        if (not_modified && !cache_hdr_in_304(&h))
            continue;
        if (r->fx != NULL && proxy_fx_hides(r, 1, h.name, h.nlen))
            continue;
        proxy_fields_add(f, h.name, h.nlen, h.value, h.vlen);
    }
    if (r->fx != NULL) {
        struct proxy_hdr ph;
        size_t apos = 0;
        while (proxy_fx_next_added(r, 1, &apos, &ph)) {
            if (proxy_hdr_is(&ph, "date"))
                have_date = true;
            proxy_fields_add(f, ph.name, ph.nlen, ph.value, ph.vlen);
        }
    }
    if (!have_date) {
        /* RFC 9110 6.6.1: an origin that sent no Date gets one from the cache
         * that stores it: the time the response was received, the same on
         * every hit (Age counts from it) */
        size_t dn = cache_http_date_format(o->policy.date, date_s, sizeof(date_s));
        if (dn > 0)
            proxy_fields_add(f, "Date", 4, date_s, dn);
    }
    if (status == 206 && nr == 1) {
        n = put(crange, 0, "bytes ", 6);
        n = put_u64(crange, n, rg[0].start);
        n = put(crange, n, "-", 1);
        n = put_u64(crange, n, rg[0].start + rg[0].len - 1);
        n = put(crange, n, "/", 1);
        n = put_u64(crange, n, o->body_len);
        proxy_fields_add(f, "Content-Range", 13, crange, n);
    } else if (status == 206) {
        n = put(crange, 0, "multipart/byteranges; boundary=", 31);
        n = put(crange, n, boundary, blen);
        proxy_fields_add(f, "Content-Type", 12, crange, n);
    } else if (status == 416) {
        n = put(crange, 0, "bytes */", 8);
        n = put_u64(crange, n, o->body_len);
        proxy_fields_add(f, "Content-Range", 13, crange, n);
    }
    if (!not_modified) {
        t = proxy_u64_text(clen_s, clen, &n);
        proxy_fields_add(f, "Content-Length", 14, t, n);
    }
    t = proxy_u64_text(age_s, age < 0 ? 0 : (uint64_t)age, &n);
    proxy_fields_add(f, "Age", 3, t, n);
    proxy_fields_add(f, "Cache-Status", 12, r->cache_status, strlen(r->cache_status));
    proxy_fields_add(f, "X-Request-Id", 12, r->request_id, strlen(r->request_id));
    proxy_fields_add(f, "Via", 3, "1.1 edge", 8);
    if (f->oom) {
        static const char oom[] = "503 Service Unavailable: out of memory\n";
        proxy_req_respond(r, 503, NULL, 0, oom, sizeof(oom) - 1);
        return;
    }

    struct byte_range whole = {0, o->body_len};
    struct byte_range *parts = status == 206 ? rg : &whole;
    int np = status == 206 ? nr : 1;
    one_piece = body && np == 1 && o->body != NULL && parts[0].len <= BODY_COPY_MAX;
    proxy_req_head(r, &(struct proxy_resp){
                          .status = status,
                          .f = f->v,
                          .nf = f->n,
                          .length = not_modified ? -1 : (int64_t)clen,
                          .nobody = !body,
                          .edge = true,
                          .complete = !body || one_piece,
                          .body = one_piece ? o->body + parts[0].start : NULL,
                          .body_len = one_piece ? (size_t)parts[0].len : 0,
                      });
    if (one_piece) {
        r->resp_bytes += parts[0].len;
    } else if (body) {
        bool ok = true;
        for (int i = 0; i < np && ok; i++) {
            if (np > 1) {
                char ph[PART_HEAD_MAX];
                r->sink->data(
                    r, ph, part_head(ph, boundary, blen, ctype, ctype_len, &parts[i], o->body_len));
            }
            if ((ok = body_range(r, o, &parts[i])))
                r->resp_bytes += parts[i].len;
        }
        if (!ok) {
            r->sink->abort(r); /* the head is out: cut rather than lie */
        } else {
            if (np > 1) {
                char tail[PART_HEAD_MAX];
                n = put(tail, 0, "\r\n--", 4);
                n = put(tail, n, boundary, blen);
                r->sink->data(r, tail, put(tail, n, "--\r\n", 4));
            }
            r->sink->end(r);
        }
    }
    STAT_INC(r->w, cache_hits);
    r->resp_done = true;
}

/* ---- streaming a response to collapsed requests while it is stored ------------------------ */

/*
 * The leader of a collapsed miss stores the origin's response through a
 * cache writer; once the head is known to be stored, a fill (struct
 * proxy_fill) lets the requests that wait for the key read the response
 * from the writer's temp file as it grows, on their own workers:
 *
 *   leader   proxy_cache_body: the writer buffers; when the fill has
 *            readers the leader's worker is woken (w->fill_wake, eventfd)
 *            and, after the current callback, writes out what is buffered,
 *            publishes how many body bytes are in the file (avail) and wakes
 *            the workers of the readers. Done: the last avail, then DONE;
 *            the origin failed or the writer did: FAILED.
 *   reader   gets the stored head at once (Content-Length when the origin
 *            gave one, else chunked), then the body from the file: by
 *            sendfile (evbuffer_add_file) on plain connections, in pieces of
 *            STREAM_CHUNK elsewhere (TLS, h2 streams), each time only
 *            while the request's sink is not congested: a reader that does
 *            not read costs no memory. Woken
 *            by the leader's progress and by its own client draining.
 *            FAILED cuts the connection (the head is out).
 *   leader's client  falls behind while others read: it reads the file too
 *            (fill_self), so the origin is read at the pace of the disk,
 *            not of that client. Goes away while others read: the request
 *            runs on without it (proxy_cache_fill_orphan) until the
 *            response is stored.
 */
#define STREAM_CHUNK (256 * 1024)

void
proxy_fill_unref(struct proxy_fill *f)
{
    if (f == NULL || atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    cache_obj_free(f->obj);
    free(f->vary_names);
    free(f);
}

static void
fill_wake_readers(struct proxy_engine *e, struct proxy_fill *f)
{
    uint64_t mask = atomic_load(&f->workers);

    for (unsigned i = 0; i < e->nworkers && mask != 0; i++)
        if (mask & (1ull << i))
            proxy_worker_fill_wake(&e->workers[i]);
}

/* Asks the leader's worker to write out what the writer buffers (after the
 * callback it is in, when it is the caller's own). */
static void
fill_want_flush(struct proxy_fill *f)
{
    if (!atomic_exchange(&f->want_flush, true))
        proxy_worker_fill_wake(f->leader_w);
}

/* r stops reading the fill; drops r's reference unless it still leads it. */
static void
stream_stop(struct proxy_req *r)
{
    struct proxy_fill *f = r->fill;

    if (!r->fill_read)
        return;
    TAILQ_REMOVE(&r->w->fill_readers, r, fill_read_link);
    r->fill_read = false;
    r->fill_self = false;
    atomic_fetch_sub(&f->nreaders, 1);
    if (!r->fill_lead) {
        r->fill = NULL;
        proxy_fill_unref(f);
    }
}

/* The leader is done with its fill: the last avail is published (DONE) or
 * it never will be (FAILED). */
static void
fill_end(struct proxy_req *r, enum proxy_fill_state state)
{
    struct proxy_fill *f = r->fill;
    struct proxy_worker *w = r->w;

    if (!r->fill_lead)
        return;
    r->fill_lead = false;
    TAILQ_REMOVE(&w->fill_leaders, r, fill_lead_link);
    atomic_store(&f->state, (int)state);
    fill_wake_readers(w->e, f);
    if (!r->fill_read) {
        r->fill = NULL;
        proxy_fill_unref(f);
    }
}

/* The writer failed: served uncached; the fill's readers are cut. */
static void
store_fail(struct proxy_req *r, const char *what, int rc)
{
    if (rc != CACHE_ETOOBIG)
        store_error(r, what, rc);
    cache_writer_abort(r->cache_w);
    r->cache_w = NULL;
    proxy_collapse_release(r, COLLAPSE_FAILED);
    fill_end(r, FILL_FAILED);
}

/* Leader: what was written so far becomes readable. */
static void
fill_publish(struct proxy_req *r)
{
    int rc;

    if (r->cache_w == NULL || !r->fill_lead)
        return;
    if ((rc = cache_writer_flush(r->cache_w)) < 0) {
        store_fail(r, "writing a cache file", rc);
        return;
    }
    atomic_store(&r->fill->avail, cache_writer_body_written(r->cache_w));
    fill_wake_readers(r->w->e, r->fill);
}

/* In proxy_cache_response_head: the leader's response is stored through
 * r->cache_w; from here on waiters read it. length: of the body, or -1. */
static void
fill_start(struct proxy_req *r, int64_t length, int64_t ttl)
{
    struct proxy_worker *w = r->w;
    struct proxy_fill *f;
    const char *names;
    size_t nlen;

    if (!r->collapse_leader || (f = calloc(1, sizeof(*f))) == NULL)
        return; /* waiters are answered after completion, as without fills */
    if (cache_writer_view(r->cache_w, &f->obj) != 0)
        goto fail;
    names = cache_writer_vary_names(r->cache_w, &nlen);
    if (names != NULL && nlen > 0) {
        if ((f->vary_names = malloc(nlen)) == NULL)
            goto fail;
        memcpy(f->vary_names, names, nlen);
        f->vary_names_len = nlen;
    }
    atomic_init(&f->refs, 1);
    atomic_init(&f->state, FILL_RUNNING);
    f->leader_w = w;
    f->length = length;
    f->ttl = ttl;
    r->fill = f;
    r->fill_lead = true;
    TAILQ_INSERT_TAIL(&w->fill_leaders, r, fill_lead_link);
    proxy_collapse_set_fill(r, f);
    return;
fail:
    cache_obj_free(f->obj);
    free(f);
}

/* Would r get this response from the stored copy? A GET or HEAD without
 * Range, for the same Vary variant, fresh for its Cache-Control, not purged
 * since the fetch began, and no RESPONSE function to run on the head
 * (those wait for the stored copy). */
static bool
fill_fits(struct proxy_req *r, const struct proxy_fill *f)
{
    struct cache_decision d;

    if ((r->method != HTTP_GET && r->method != HTTP_HEAD) || r->cache_rq.range)
        return false;
    if (r->fx != NULL && proxy_fx_has_phase(r, FX_RESPONSE))
        return false;
    if (cache_obj_purged(r->w->e->cache, f->obj))
        return false; /* purged meanwhile: it will not be stored; wait, then fetch */
    cache_decide(&f->obj->policy, &r->cache_rq, r->cache_route, unix_now(), &d);
    if (d.use != CACHE_USE_FRESH)
        return false; /* no-cache, max-age=0 …: revalidated once stored */
    if (f->vary_names != NULL) {
        const struct cache_hdr *hv;
        size_t nh = req_views(r, &hv), vlen;
        const char *mine = f->obj->key + f->obj->key_len;
        size_t mlen = (size_t)(f->obj->headers - mine);
        char vkey[CACHE_VARY_KEY_MAX];

        if ((hv == NULL && nh > 0) ||
            cache_vary_key(f->vary_names, f->vary_names_len, hv, nh, vkey, sizeof(vkey), &vlen) !=
                0 ||
            vlen != mlen || memcmp(vkey, mine, vlen) != 0)
            return false;
    }
    return true;
}

/* The head for a reader of f, from the stored fields like serve_obj_write,
 * framed for a body that is still arriving: with the origin's length, else
 * as an origin's answer without one (the sink chunks it, or closes). */
static void
stream_head(struct proxy_req *r, const struct proxy_fill *f, int status, bool body)
{
    struct proxy_fields *fl = proxy_fields_begin(r->w);
    const struct cache_obj *o = f->obj;
    struct cache_hdr h;
    size_t pos = 0, n;
    int64_t age = cache_current_age(o->policy.initial_age, o->policy.response_time, unix_now());
    char clen_s[PROXY_U64_TEXT], age_s[PROXY_U64_TEXT];
    const char *t;

    while (cache_obj_header_next(o, &pos, &h))
        if (!skip_stored(&h) && (status != 304 || cache_hdr_in_304(&h)))
            proxy_fields_add(fl, h.name, h.nlen, h.value, h.vlen);
    if (status != 304 && f->length >= 0) {
        t = proxy_u64_text(clen_s, (uint64_t)f->length, &n);
        proxy_fields_add(fl, "Content-Length", 14, t, n);
    }
    t = proxy_u64_text(age_s, age < 0 ? 0 : (uint64_t)age, &n);
    proxy_fields_add(fl, "Age", 3, t, n);
    proxy_fields_add(fl, "Cache-Status", 12, r->cache_status, strlen(r->cache_status));
    proxy_fields_add(fl, "X-Request-Id", 12, r->request_id, strlen(r->request_id));
    proxy_fields_add(fl, "Via", 3, "1.1 edge", 8);
    proxy_req_head(r, &(struct proxy_resp){
                          .status = status,
                          .f = fl->v,
                          .nf = fl->n,
                          .length = body ? f->length : -1,
                          .nobody = !body,
                          /* with no length the sink frames it as an origin's */
                          .edge = !body || f->length >= 0,
                          .complete = !body,
                      });
}

/* A miss reads f (whose reference it is given): the head now, the body as
 * it comes. 0, or -1 when f failed already (the caller waits or fetches). */
static int
stream_start(struct proxy_req *r, struct proxy_fill *f)
{
    struct proxy_worker *w = r->w;
    struct req_conds q;
    bool not_modified, body;
    int status;

    if (atomic_load(&f->state) == FILL_FAILED)
        return -1;
    r->cache_collapsed = true;
    if (r->cache_obj != NULL) { /* the stale copy the leader revalidates */
        cache_obj_free(r->cache_obj);
        r->cache_obj = NULL;
    }
    status_text(r, (enum cache_fwd)r->cache_fwd, f->obj->status, f->ttl, false);
    req_conds_scan(r, &q);
    not_modified = client_not_modified(&q, f->obj);
    status = not_modified ? 304 : f->obj->status;
    body =
        !not_modified && r->method != HTTP_HEAD && f->length != 0 && status >= 200 && status != 204;
    stream_head(r, f, status, body);
    STAT_INC(w, cache_hits); /* answered without a fetch of its own */
    if (!body) {
        r->resp_done = true;
        proxy_fill_unref(f);
        return 0;
    }
    r->fill = f;
    r->fill_read = true;
    r->fill_sent = 0;
    TAILQ_INSERT_TAIL(&w->fill_readers, r, fill_read_link);
    atomic_fetch_or(&f->workers, 1ull << w->id);
    atomic_fetch_add(&f->nreaders, 1);
    fill_want_flush(f);        /* what the leader buffered becomes readable */
    proxy_worker_fill_wake(w); /* the body starts from the loop, not this stack */
    return 0;
}

/* Adds what the client can take of the readable body. 1: the response is
 * complete (the caller ends it: proxy_req_check_done); 0: more later; -1:
 * the fill failed and the connection is cut (r may be gone). */
static int
stream_feed(struct proxy_req *r)
{
    struct proxy_fill *f = r->fill;
    /* sendfile on plain HTTP/1.1 connections; elsewhere the file is mapped
     * or read in pieces, so a piece at a time */
    bool sendfile_ok = r->c != NULL && r->c->fd >= 0 && r->tls == NULL;
    uint64_t avail;
    int state;

    if (!r->fill_read || (r->c != NULL && r->c->orphan))
        return 0;
    state = atomic_load(&f->state); /* before avail: DONE means avail is the last */
    avail = atomic_load(&f->avail);
    if (state == FILL_FAILED) {
        stream_stop(r);
        proxy_resp_error(r, 502, "origin failed while the response was streamed");
        return -1;
    }
    /* only while the client takes it: a reader that stops costs no memory;
     * its sink's drain (h1 write callback, h2 window) calls back here */
    while (r->fill_sent < avail && !r->sink->congested(r)) {
        struct byte_range rg = {r->fill_sent, avail - r->fill_sent};
        if (!sendfile_ok && rg.len > STREAM_CHUNK)
            rg.len = STREAM_CHUNK;
        if (!body_range(r, f->obj, &rg)) {
            stream_stop(r);
            proxy_resp_error(r, 502, "cannot read the cache file being written");
            return -1;
        }
        r->fill_sent += rg.len;
        r->resp_bytes += rg.len;
    }
    if (r->fill_sent < avail || state != FILL_DONE)
        return 0;
    stream_stop(r);
    r->sink->end(r);
    r->resp_done = true;
    return 1; /* proxy_req_check_done flushes */
}

void
proxy_cache_fill_drained(struct proxy_req *r)
{
    if (stream_feed(r) > 0)
        proxy_req_check_done(r);
}

void
proxy_cache_fill_run(struct proxy_worker *w)
{
    struct proxy_req *r, *next;

    if (!atomic_exchange(&w->fill_wake, false))
        return;
    for (r = TAILQ_FIRST(&w->fill_leaders); r != NULL; r = next) {
        next = TAILQ_NEXT(r, fill_lead_link);
        if (!atomic_exchange(&r->fill->want_flush, false))
            continue;
        fill_publish(r);
        /* A reader came while the origin waits for this leader's client
         * to drain (which may be never): read on for the reader. r may be
         * done after this; next is another request. */
        if (r->fill_lead && !r->fill_self && r->up != NULL && proxy_client_congested(r) &&
            proxy_cache_fill_decouple(r))
            proxy_upstream_resume(r);
    }
    for (r = TAILQ_FIRST(&w->fill_readers); r != NULL; r = next) {
        next = TAILQ_NEXT(r, fill_read_link);
        proxy_cache_fill_drained(r);
    }
}

bool
proxy_cache_fill_decouple(struct proxy_req *r)
{
    struct proxy_worker *w = r->w;
    struct proxy_fill *f = r->fill;

    if (r->fill_self)
        return true;
    if (!r->fill_lead || r->cache_w == NULL || r->fx_replaced || r->resp_nobody || (r->c != NULL && r->c->orphan) ||
        atomic_load(&f->nreaders) == 0)
        return false;
    /* every body byte the client got went to the writer first */
    r->fill_self = true;
    r->fill_read = true;
    r->fill_sent = r->resp_bytes;
    TAILQ_INSERT_TAIL(&w->fill_readers, r, fill_read_link);
    atomic_fetch_or(&f->workers, 1ull << w->id);
    atomic_fetch_add(&f->nreaders, 1);
    fill_publish(r);
    return true;
}

bool
proxy_cache_fill_orphan(struct proxy_req *r)
{
    struct proxy_fill *f = r->fill;

    if (!r->fill_lead || r->cache_w == NULL || r->up == NULL)
        return false;
    if (atomic_load(&f->nreaders) <= (r->fill_self ? 1u : 0u))
        return false; /* nobody else reads it: abort as before */
    stream_stop(r);   /* the origin's body goes to the file alone */
    r->status = 499;  /* logged as a client that went away */
    return true;
}

/* The request ends: it stops reading, and a fill it still leads failed. */
static void
fill_detach(struct proxy_req *r)
{
    if (r->fill == NULL)
        return;
    stream_stop(r);
    fill_end(r, FILL_FAILED);
}

/* A miss that may wait for another request's fetch of its key: read the
 * response while it is stored (1), wait until it is stored (1), or go to
 * the origin (0). */
static int
collapse(struct proxy_req *r)
{
    struct proxy_fill *f = NULL;
    int rc;

    if ((r->method != HTTP_GET && r->method != HTTP_HEAD) || r->cache_rq.range)
        return 0;
    rc = proxy_collapse_join(r, r->fill_refused ? NULL : &f);
    if (rc != 2)
        return rc;
    if (fill_fits(r, f) && stream_start(r, f) == 0)
        return 1;
    proxy_fill_unref(f);
    r->fill_refused = true;
    return proxy_collapse_join(r, NULL);
}

struct refresh {
    struct proxy_engine *e;
    size_t klen;
    char key[];
};

static void
refresh_done(void *arg)
{
    struct refresh *rf = arg;
    proxy_refresh_release(rf->e, rf->key, rf->klen);
    free(rf);
}

static bool
refresh_skips(const struct proxy_hdr *h)
{
    static const char *const skip[] = {"host",          "cache-control",   "pragma",
                                       "connection",    "keep-alive",      "te",
                                       "upgrade",       "transfer-encoding", "content-length",
                                       "expect",        "range",           "if-none-match",
                                       "if-modified-since", "if-match",    "if-unmodified-since",
                                       "if-range",      "x-request-id",    NULL};
    for (size_t i = 0; skip[i] != NULL; i++)
        if (proxy_hdr_is(h, skip[i]))
            return true;
    return false;
}

/* One request per key (engine-wide) to the origin in the background, an
 * internal request through the whole path with the client's headers minus
 * Range and conditionals:
 *   revalidate  stale-while-revalidate: the client got the stale copy; marked
 *               no-cache so that it revalidates (a 304 refreshes, a 200 replaces)
 *   fill        a Range request missed: the client's range comes from the
 *               origin as asked, the whole object is fetched and stored so
 *               later ranges are hits. */
static void
start_background_fetch(struct proxy_req *r, bool revalidate)
{
    struct proxy_engine *e = r->w->e;
    struct evbuffer *b;
    struct proxy_hdr h;
    struct refresh *rf;
    size_t len;
    char *text;

    if (!proxy_refresh_claim(e, r->cache_key, r->cache_key_len))
        return; /* one is already under way */
    rf = malloc(sizeof(*rf) + r->cache_key_len + 1);
    b = evbuffer_new();
    if (rf == NULL || b == NULL)
        goto fail;
    rf->e = e;
    rf->klen = r->cache_key_len;
    memcpy(rf->key, r->cache_key, r->cache_key_len + 1);
    evbuffer_add_printf(b, "GET %.*s HTTP/1.1\r\nHost: %s\r\n", (int)r->target_len, r->target,
                        r->authority);
    for (size_t i = 0; proxy_head_get(r->head, i, &h); i++) {
        if (refresh_skips(&h))
            continue;
        evbuffer_add(b, h.name, h.nlen);
        evbuffer_add(b, ": ", 2);
        evbuffer_add(b, h.value, h.vlen);
        evbuffer_add(b, "\r\n", 2);
    }
    if (revalidate)
        evbuffer_add_printf(b, "Cache-Control: no-cache\r\n"
                               "X-Edge-Refresh: stale-while-revalidate\r\n");
    else
        evbuffer_add_printf(b, "X-Edge-Fill: range\r\n");
    evbuffer_add_printf(b, "Connection: close\r\n\r\n");
    len = evbuffer_get_length(b);
    text = (char *)evbuffer_pullup(b, -1);
    if (text == NULL || proxy_internal_request(r->w, text, len, r->https, refresh_done, rf) < 0)
        goto fail;
    evbuffer_free(b);
    STAT_INC(r->w, cache_bg_refreshes);
    return;
fail:
    if (b != NULL)
        evbuffer_free(b);
    free(rf);
    proxy_refresh_release(e, r->cache_key, r->cache_key_len);
}

/* Opens and judges the stored object. 1: answered (or parked behind another
 * request's fetch); 0: go to the origin. */
static int
lookup(struct proxy_req *r)
{
    struct proxy_engine *e = r->w->e;
    const struct cache_hdr *hv;
    size_t nh = req_views(r, &hv);
    struct cache_obj *o = NULL;
    int rc;

    r->cache_req_time = unix_now();
    rc = cache_open(e->cache, r->cache_key, r->cache_key_len, hv, nh, &o);
    if (rc != CACHE_OK) {
        status_text(r, rc == CACHE_VARY_MISS ? CACHE_FWD_VARY_MISS : CACHE_FWD_URI_MISS, 0,
                    CACHE_UNSET, false);
        if (r->cache_rq.cc.flags & CACHE_CC_ONLY_IF_CACHED) {
            proxy_resp_error(r, 504, "only-if-cached and not in the cache");
            return 1;
        }
        if (collapse(r))
            return 1; /* reading another request's fetch, or parked: proxy_cache_resume() goes on */
        if (r->method == HTTP_GET && r->cache_rq.range)
            start_background_fetch(r, false); /* the whole object, for the next ranges */
        STAT_INC(r->w, cache_misses);
        return 0;
    }
    cache_decide(&o->policy, &r->cache_rq, r->cache_route, unix_now(), &r->cache_d);
    switch (r->cache_d.use) {
    case CACHE_USE_FRESH:
    case CACHE_USE_STALE:
        status_text(r, r->cache_d.use == CACHE_USE_FRESH ? CACHE_FWD_NONE : CACHE_FWD_STALE, 0,
                    r->cache_d.ttl, false);
        r->cache_obj = o; /* kept until the request ends (a RESPONSE phase may pause) */
        serve_obj(r, o, r->cache_d.age);
        if (r->cache_d.use == CACHE_USE_STALE && r->cache_d.revalidate)
            start_background_fetch(r, true);
        return 1;
    case CACHE_REVALIDATE:
        r->cache_obj = o;
        r->cache_cond_len = cache_conditional_headers(o, r->cache_cond, sizeof(r->cache_cond));
        status_text(r, CACHE_FWD_STALE, 0, r->cache_d.ttl, false);
        break;
    case CACHE_MUST_MISS:
    default:
        if (r->cache_d.stale_if_error || r->method == HTTP_HEAD)
            r->cache_obj = o; /* kept in case the origin fails, or for a HEAD's 200 */
        else
            cache_obj_free(o);
        status_text(r, CACHE_FWD_STALE, 0, r->cache_d.ttl, false);
        break;
    }
    if (r->cache_d.only_if_cached) {
        proxy_resp_error(r, 504, "only-if-cached and the stored response is not usable");
        return 1;
    }
    if (collapse(r))
        return 1;
    STAT_INC(r->w, cache_misses);
    return 0;
}

/* In conn_dispatch, once the route is known and goes to an origin.
 * 1: answered (from cache, or 504 for only-if-cached); 0: go to the origin. */
int
proxy_cache_request(struct proxy_req *r)
{
    struct proxy_engine *e = r->w->e;
    const struct cache_route *cr = cache_route_conf(r->route);
    const struct cache_hdr *hv;
    size_t nh;
    char key[CACHE_KEY_MAX];
    size_t klen;
    struct cache_key_parts parts;

    if (e->cache == NULL || cr == NULL || !cr->enabled)
        return 0;
    nh = req_views(r, &hv);
    if (hv == NULL && nh > 0)
        return 0;
    parts.scheme = (struct cache_str){proxy_req_scheme(r), strlen(proxy_req_scheme(r))};
    parts.host = (struct cache_str){r->authority, strlen(r->authority)};
    parts.path = (struct cache_str){r->path, r->path_len};
    parts.query = (struct cache_str){r->query, r->query ? r->query_len : 0};
    if (cache_key_build(cr, &parts, hv, nh, key, sizeof(key), &klen) != 0) {
        status_text(r, CACHE_FWD_BYPASS, 0, CACHE_UNSET, false);
        return 0;
    }
    {
        const char *fk;
        size_t fklen;
        if (proxy_fx_cache_key(r, &fk, &fklen)) { /* a function's set_cache_key */
            memcpy(key, fk, fklen);
            key[fklen] = '\0';
            klen = fklen;
        }
    }
    r->cache_key = malloc(klen + 1);
    if (r->cache_key == NULL)
        return 0;
    memcpy(r->cache_key, key, klen + 1);
    r->cache_key_len = klen;
    r->cache_route = cr;
    proxy_fx_cache_route(r); /* a function's set_cache_ttl */
    if (r->method != HTTP_GET && r->method != HTTP_HEAD)
        return 0; /* unsafe methods invalidate on success (proxy_cache_response_done) */
    cache_req_parse(hv, nh, &r->cache_rq);
    r->cache_lookup = true;
    return lookup(r); /* a Range is served from a stored full response (serve_obj) */
}

/* A collapsed request whose leader finished: look again (a hit now, or go
 * to the origin when the leader's answer was not stored). */
void
proxy_cache_resume(struct proxy_req *r)
{
    r->cache_collapsed = true;
    if (r->cache_obj != NULL) {
        cache_obj_free(r->cache_obj);
        r->cache_obj = NULL;
    }
    r->cache_cond_len = 0;
    if (lookup(r) == 1) {
        proxy_req_check_done(r);
        return;
    }
    proxy_upstream_start(r);
}

/* The key of a Location / Content-Location value when it names the same
 * host (a path, or an absolute URL with the request's authority). */
static bool
same_host_key(struct proxy_req *r, const char *v, size_t n, char *key, size_t cap, size_t *klen)
{
    struct cache_key_parts parts;
    const char *path = v, *q, *scheme = proxy_req_scheme(r);
    size_t plen = n, sl = n > 8 && strncasecmp(v, "https://", 8) == 0  ? 8
                          : n > 7 && strncasecmp(v, "http://", 7) == 0 ? 7
                                                                       : 0;

    if (sl > 0) {
        const char *a = v + sl, *slash = memchr(a, '/', n - sl);
        size_t alen = slash ? (size_t)(slash - a) : n - sl;
        scheme = sl == 8 ? "https" : "http";
        if (alen != strlen(r->authority) || strncasecmp(a, r->authority, alen) != 0)
            return false;
        path = slash ? slash : "/";
        plen = slash ? n - (size_t)(slash - v) : 1;
    } else if (n == 0 || v[0] != '/') {
        return false; /* another host, or a relative reference we do not resolve */
    }
    q = memchr(path, '?', plen);
    parts.scheme = (struct cache_str){scheme, strlen(scheme)};
    parts.host = (struct cache_str){r->authority, strlen(r->authority)};
    parts.path = (struct cache_str){path, q ? (size_t)(q - path) : plen};
    parts.query = (struct cache_str){q ? q + 1 : NULL, q ? plen - (size_t)(q - path) - 1 : 0};
    return cache_key_build(r->cache_route, &parts, NULL, 0, key, cap, klen) == 0;
}

/* RFC 9111 4.4: a non-error answer to an unsafe method invalidates the
 * target, and the Location / Content-Location URIs of the same host. */
static void
invalidate_unsafe(struct proxy_req *r, struct proxy_upconn *u)
{
    struct cache *c = r->w->e->cache;
    static const char *const names[] = {"location", "content-location"};
    char key[CACHE_KEY_MAX];
    size_t klen;
    struct proxy_hdr h;

    if (r->method == HTTP_GET || r->method == HTTP_HEAD || r->method == HTTP_OPTIONS ||
        r->method == HTTP_TRACE)
        return;
    cache_invalidate_key(c, r->cache_key, r->cache_key_len);
    for (size_t i = 0; i < 2; i++)
        if (proxy_head_find(&u->head, names[i], &h) &&
            same_host_key(r, h.value, h.vlen, key, sizeof(key), &klen))
            cache_invalidate_key(c, key, klen);
}

/*
 * The origin's response head arrived. Returns:
 *   0  forward it (a writer may have been opened to store it)
 *   1  swallow it: the client is answered from cache when the response ends
 *      (a 304 that refreshed the object, or an error covered by stale-if-error)
 */
/* The origin confirmed the stored copy (a 304, or a 200 to a HEAD that
 * agrees with it): its stored headers and freshness are refreshed and the
 * client is answered from it when the response ends. */
static void
refresh_stored(struct proxy_req *r, const struct cache_hdr *hv, size_t n, int64_t now, int status)
{
    struct cache_obj *fresh = NULL;

    if (cache_refresh(r->w->e->cache, r->cache_obj, hv, n, r->cache_route, r->cache_req_time, now,
                      &fresh) == CACHE_OK &&
        fresh != NULL) {
        cache_obj_free(r->cache_obj);
        r->cache_obj = fresh;
    }
    STAT_INC(r->w, cache_revalidated);
    status_text(r, CACHE_FWD_STALE, status, r->cache_obj->policy.lifetime, true);
    r->cache_serve_after = true;
}

int
proxy_cache_response_head(struct proxy_req *r, struct proxy_upconn *u)
{
    struct proxy_engine *e = r->w->e;
    struct cache_hdr hv[256];
    const struct cache_hdr *reqv;
    size_t n, nreq;
    int status = llhttp_get_status_code(&u->parser);
    struct cache_resp_info ri;
    enum cache_store_verdict v;
    int64_t now = unix_now(), body_len = -1;

    if (e->cache == NULL)
        return 0;
    if (!r->cache_lookup) {
        if (r->cache_key != NULL && status >= 200 && status < 400)
            invalidate_unsafe(r, u);
        return 0;
    }
    n = resp_views(u, hv, 256);
    nreq = req_views(r, &reqv);
    if (r->cache_obj != NULL && status == 304 && r->cache_cond_len > 0) {
        refresh_stored(r, hv, n, now, 304);
        proxy_collapse_release(r, COLLAPSE_STORED);
        return 1;
    }
    if (r->cache_obj != NULL && status == 200 && r->method == HTTP_HEAD) {
        /* RFC 9111 4.3.5: a 200 to a HEAD freshens the stored GET response when
         * its validators and length agree with it (the client is then answered
         * from the refreshed copy, as after a 304), else that copy is out of
         * date: it goes */
        if (cache_head_matches(r->cache_obj, hv, n)) {
            refresh_stored(r, hv, n, now, 200);
            return 1;
        }
        cache_invalidate_key(e->cache, r->cache_key, r->cache_key_len);
        cache_obj_free(r->cache_obj);
        r->cache_obj = NULL;
        return 0;
    }
    if (r->cache_obj != NULL && status >= 500 && r->cache_d.stale_if_error) {
        status_text(r, CACHE_FWD_STALE, status, r->cache_d.ttl, false);
        r->cache_serve_after = true;
        proxy_collapse_release(r, COLLAPSE_FAILED);
        return 1;
    }
    cache_resp_parse(hv, n, status, &ri);
    v = cache_storable(r->method_name, strlen(r->method_name), &r->cache_rq, &ri,
                       r->cache_route);
    if (v == CACHE_STORE_OK && r->method == HTTP_GET) {
        struct proxy_hdr cl;
        struct cache_store_args a = {
            .key = r->cache_key,
            .key_len = r->cache_key_len,
            .req = reqv,
            .nreq = nreq,
            .resp = hv,
            .nresp = n,
            .ri = &ri,
            .route = r->cache_route,
            .request_time = r->cache_req_time,
            .response_time = now,
            .content_length = -1,
        };
        int rc = 0;
        if (proxy_head_find(&u->head, "content-length", &cl)) {
            char num[32];
            snprintf(num, sizeof(num), "%.*s", (int)(cl.vlen < 31 ? cl.vlen : 31), cl.value);
            a.content_length = strtoll(num, NULL, 10);
        }
        body_len = a.content_length;
        r->cache_w = cache_writer_new(e->cache, &a, &rc);
        if (r->cache_w == NULL && rc != CACHE_ETOOBIG)
            store_error(r, "opening a cache file", rc);
    }
    if (r->cache_w == NULL) /* not stored: waiters go to the origin themselves, now */
        proxy_collapse_release(r, v == CACHE_STORE_OK ? COLLAPSE_FAILED : COLLAPSE_PASS);
    {
        struct cache_decision d;
        struct cache_policy pol;
        cache_policy_from_resp(&ri, r->cache_route, r->cache_req_time, now, &pol);
        cache_decide(&pol, &r->cache_rq, r->cache_route, now, &d);
        status_text(r, (enum cache_fwd)r->cache_fwd, status,
                    r->cache_w != NULL ? d.ttl : CACHE_UNSET, r->cache_w != NULL);
        if (r->cache_w != NULL) {
            /* the body's length as the leader's client gets it (proxy_resp_head) */
            int64_t length = -1;
            if (status == 204 || status == 304 || status < 200)
                length = 0;
            else if (!(u->parser.flags & F_CHUNKED))
                length = body_len;
            fill_start(r, length, d.ttl);
        }
    }
    if (r->cache_obj != NULL) {
        /* a new full response replaces the stale object */
        cache_obj_free(r->cache_obj);
        r->cache_obj = NULL;
    }
    return 0;
}

/* A piece of the origin's body (sent on to the client next, unless it
 * reads the file: fill_self). */
void
proxy_cache_body(struct proxy_req *r, const char *at, size_t len)
{
    int rc;

    if (r->cache_w == NULL)
        return;
    if ((rc = cache_writer_write(r->cache_w, at, len)) < 0) {
        store_fail(r, "writing a cache file", rc);
        return;
    }
    if (r->fill_lead && atomic_load(&r->fill->nreaders) > 0)
        fill_want_flush(r->fill); /* once this read is through (proxy_cache_fill_run) */
}

/* The origin's response ended. 1: the client was answered from cache here. */
int
proxy_cache_response_done(struct proxy_req *r)
{
    if (r->cache_w != NULL) {
        /* the fill's readers have the whole body once it is in the file,
         * whether or not the object is then published */
        bool whole = r->fill_lead && cache_writer_flush(r->cache_w) == 0;
        if (whole)
            atomic_store(&r->fill->avail, cache_writer_body_written(r->cache_w));
        int rc = cache_writer_commit(r->cache_w);
        r->cache_w = NULL;
        if (rc == CACHE_OK)
            STAT_INC(r->w, cache_stores);
        else if (rc != CACHE_EPURGED)
            store_error(r, "publishing a cache file", rc);
        proxy_collapse_release(r, rc == CACHE_OK ? COLLAPSE_STORED : COLLAPSE_FAILED);
        fill_end(r, whole ? FILL_DONE : FILL_FAILED);
    }
    if (r->fill_self)
        return 1; /* its client reads the rest from the file (stream_feed ends it) */
    if (r->cache_serve_after && r->cache_obj != NULL && !r->resp_started) {
        int64_t age = cache_current_age(r->cache_obj->policy.initial_age,
                                        r->cache_obj->policy.response_time, unix_now());
        serve_obj(r, r->cache_obj, age);
        return 1;
    }
    return 0;
}

/* The origin failed (dns, connect, reset, timeout) before the response head
 * went out. 1: a stale object within stale-if-error answered instead. */
int
proxy_cache_upstream_failed(struct proxy_req *r)
{
    if (r->cache_w != NULL) {
        cache_writer_abort(r->cache_w); /* nothing half-written is ever published */
        r->cache_w = NULL;
    }
    proxy_collapse_release(r, COLLAPSE_FAILED);
    fill_end(r, FILL_FAILED); /* its readers are cut: their heads are out */
    if (r->cache_obj == NULL || r->resp_started || !r->cache_d.stale_if_error)
        return 0;
    status_text(r, CACHE_FWD_STALE, 0, r->cache_d.ttl, false);
    snprintf(r->cache_status + strlen(r->cache_status),
             sizeof(r->cache_status) - strlen(r->cache_status), "; detail=origin-error");
    serve_obj(r, r->cache_obj, r->cache_d.age);
    return 1;
}

/* Conditional headers to send instead of the client's (revalidation). */
bool
proxy_cache_cond(const struct proxy_req *r, const char **hdrs, size_t *len)
{
    if (r->cache_obj == NULL || r->cache_cond_len == 0)
        return false;
    *hdrs = r->cache_cond;
    *len = r->cache_cond_len;
    return true;
}
