/*
 * A fake host table for unit tests of edge functions (STYLE §35): every
 * efn_host call over an in-memory request, an arena with a cap, and an
 * in-memory KV whose callbacks are queued and delivered later by
 * fh_drain()/fh_run(), so PAUSE/resume paths run as they do in the edge.
 *
 * Test-only; included by tests/unit/fn_*_test.c, which also #include the
 * function's .c (so its static hooks and its efn_plugin_v1 are visible).
 *
 *     struct fh_req *r = fh_req_new("GET", "/a?b=1");
 *     fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Key", "k1");
 *     assert_int_equal(fh_run(r, EFN_PHASE_REQUEST, inst), EFN_CONTINUE);
 *     fh_req_free(r);
 *
 * Knobs (global `fh`): fh.kv_down (calls return EFN_E_KV), fh.kv_fail
 * (the next callbacks carry this status, e.g. EFN_E_TIMEOUT or EFN_E_KV;
 * fh.kv_fail_count of them), fh.now_ms (fake clock for TTLs).
 */
#ifndef EDGE_TESTS_FN_FAKEHOST_H
#define EDGE_TESTS_FN_FAKEHOST_H

#include "compute/edgefn.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FH_FN static __attribute__((unused))
#define FH_MAGIC 0x46484551u /* "FHEQ" */
#define FH_MAX_OPS 8
#define FH_PREFIX "efn:test:default:"

enum fh_phase { FH_REQUEST, FH_ORIGIN, FH_RESPONSE };

struct fh_hdr {
    char *name, *value;
};

struct fh_hdrs {
    struct fh_hdr *v;
    size_t n;
};

struct fh_chunk {
    struct fh_chunk *next;
    max_align_t data[];
};

enum fh_op_kind { FH_GET, FH_SET, FH_INCR, FH_DEL, FH_EXPIRE, FH_INCRW };

struct fh_op {
    enum fh_op_kind kind;
    char *key, *val;
    size_t vlen;
    int64_t n;
    uint32_t ms;
    efn_kv_cb cb;
    void *ud;
};

struct efn_req {
    uint32_t magic;
    enum fh_phase phase;
    void *inst;
    char method[16];
    char *path, *authority, *client_ip;
    struct fh_hdrs hdrs[2]; /* EFN_MSG_REQ, EFN_MSG_RESP */
    int status;             /* response status (on_response) */
    /* results */
    int responded; /* status given to respond(), 0 = none */
    struct fh_hdrs resp_hdrs;
    char *resp_body;
    size_t resp_body_len;
    char *cache_key, *origin;
    int32_t cache_ttl; /* -1 = not set */
    /* arena */
    struct fh_chunk *chunks;
    size_t arena_used, arena_cap;
    void *slot;
    /* queued KV ops (callbacks pending) */
    struct fh_op ops[FH_MAX_OPS];
    size_t nops;
    size_t inflight; /* ops with a callback, counted against FH_MAX_OPS */
    int logs;        /* lines logged */
    char last_log[512];
};

struct fh_kv {
    char *key, *val;
    size_t vlen;
    int64_t expire_at; /* fake ms; 0 = never */
};

struct fh_state {
    struct fh_kv *kv;
    size_t nkv;
    bool kv_down;
    int kv_fail;
    int kv_fail_count;
    int64_t now_ms;
    size_t kv_calls;
    int log_stderr;
};

static struct fh_state fh;

FH_FN char *
fh_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p == NULL)
        abort();
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- headers ---- */

FH_FN void
fh_hdrs_add(struct fh_hdrs *h, const char *name, size_t nlen, const char *val, size_t vlen)
{
    h->v = realloc(h->v, (h->n + 1) * sizeof(*h->v));
    if (h->v == NULL)
        abort();
    h->v[h->n].name = fh_strndup(name, nlen);
    h->v[h->n].value = fh_strndup(val, vlen);
    h->n++;
}

FH_FN void
fh_hdrs_del(struct fh_hdrs *h, const char *name, size_t nlen)
{
    size_t i = 0;

    while (i < h->n) {
        if (strlen(h->v[i].name) == nlen && strncasecmp(h->v[i].name, name, nlen) == 0) {
            free(h->v[i].name);
            free(h->v[i].value);
            memmove(&h->v[i], &h->v[i + 1], (h->n - i - 1) * sizeof(*h->v));
            h->n--;
        } else {
            i++;
        }
    }
}

FH_FN void
fh_hdrs_clear(struct fh_hdrs *h)
{
    size_t i;

    for (i = 0; i < h->n; i++) {
        free(h->v[i].name);
        free(h->v[i].value);
    }
    free(h->v);
    h->v = NULL;
    h->n = 0;
}

/* The idx-th value of name (NUL-terminated), or NULL. */
FH_FN const char *
fh_hdr(struct efn_req *r, efn_msg m, const char *name, size_t idx)
{
    struct fh_hdrs *h = &r->hdrs[m];
    size_t i;

    for (i = 0; i < h->n; i++)
        if (strcasecmp(h->v[i].name, name) == 0 && idx-- == 0)
            return h->v[i].value;
    return NULL;
}

FH_FN size_t
fh_hdr_count(struct efn_req *r, efn_msg m, const char *name)
{
    size_t n = 0;

    while (fh_hdr(r, m, name, n) != NULL)
        n++;
    return n;
}

FH_FN void
fh_hdr_add(struct efn_req *r, efn_msg m, const char *name, const char *val)
{
    fh_hdrs_add(&r->hdrs[m], name, strlen(name), val, strlen(val));
}

/* A header of the respond() answer, or NULL. */
FH_FN const char *
fh_resp_hdr(struct efn_req *r, const char *name)
{
    size_t i;

    for (i = 0; i < r->resp_hdrs.n; i++)
        if (strcasecmp(r->resp_hdrs.v[i].name, name) == 0)
            return r->resp_hdrs.v[i].value;
    return NULL;
}

/* ---- KV store ---- */

FH_FN struct fh_kv *
fh_kv_find(const char *key)
{
    size_t i;

    for (i = 0; i < fh.nkv; i++) {
        if (strcmp(fh.kv[i].key, key) != 0)
            continue;
        if (fh.kv[i].expire_at != 0 && fh.kv[i].expire_at <= fh.now_ms) {
            free(fh.kv[i].key);
            free(fh.kv[i].val);
            fh.kv[i] = fh.kv[--fh.nkv];
            return NULL;
        }
        return &fh.kv[i];
    }
    return NULL;
}

/* Sets a key by its full name (with FH_PREFIX if the plugin is to see it). */
FH_FN struct fh_kv *
fh_kv_put(const char *key, const char *val, size_t vlen)
{
    struct fh_kv *e = fh_kv_find(key);

    if (e == NULL) {
        fh.kv = realloc(fh.kv, (fh.nkv + 1) * sizeof(*fh.kv));
        if (fh.kv == NULL)
            abort();
        e = &fh.kv[fh.nkv++];
        e->key = fh_strndup(key, strlen(key));
        e->val = NULL;
    }
    free(e->val);
    e->val = fh_strndup(val, vlen);
    e->vlen = vlen;
    e->expire_at = 0;
    return e;
}

/* Value of a full key, NUL-terminated, or NULL. */
FH_FN const char *
fh_kv_get(const char *key)
{
    struct fh_kv *e = fh_kv_find(key);

    return e != NULL ? e->val : NULL;
}

FH_FN void
fh_kv_reset(void)
{
    size_t i;

    for (i = 0; i < fh.nkv; i++) {
        free(fh.kv[i].key);
        free(fh.kv[i].val);
    }
    free(fh.kv);
    memset(&fh, 0, sizeof(fh));
    fh.now_ms = 1000000;
}

/* ---- requests ---- */

FH_FN struct efn_req *
fh_req_new(const char *method, const char *path)
{
    struct efn_req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        abort();
    r->magic = FH_MAGIC;
    snprintf(r->method, sizeof(r->method), "%s", method);
    r->path = fh_strndup(path, strlen(path));
    r->authority = fh_strndup("example.com", 11);
    r->client_ip = fh_strndup("192.0.2.7", 9);
    r->cache_ttl = -1;
    r->arena_cap = 64 * 1024;
    return r;
}

FH_FN void
fh_req_free(struct efn_req *r)
{
    struct fh_chunk *c, *next;
    size_t i;

    if (r == NULL)
        return;
    for (c = r->chunks; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    for (i = 0; i < r->nops; i++) {
        free(r->ops[i].key);
        free(r->ops[i].val);
    }
    fh_hdrs_clear(&r->hdrs[0]);
    fh_hdrs_clear(&r->hdrs[1]);
    fh_hdrs_clear(&r->resp_hdrs);
    free(r->path);
    free(r->authority);
    free(r->client_ip);
    free(r->resp_body);
    free(r->cache_key);
    free(r->origin);
    r->magic = 0xdeadbeefu;
    free(r);
}

static struct efn_req *
fh_check(efn_req *r)
{
    if (r == NULL || r->magic != FH_MAGIC)
        abort();
    return r;
}

/* ---- the host calls ---- */

static void
fh_log(efn_req *r, int level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (r != NULL) {
        fh_check(r)->logs++;
        snprintf(r->last_log, sizeof(r->last_log), "%s", buf);
    }
    if (fh.log_stderr)
        fprintf(stderr, "fakehost log %d: %s\n", level, buf);
}

static efn_str
fh_str(const char *s)
{
    return (efn_str){s, s != NULL ? strlen(s) : 0};
}

static efn_str
fh_method(efn_req *r)
{
    return fh_str(fh_check(r)->method);
}

static efn_str
fh_path(efn_req *r)
{
    return fh_str(fh_check(r)->path);
}

static efn_str
fh_authority(efn_req *r)
{
    return fh_str(fh_check(r)->authority);
}

static efn_str
fh_client_ip(efn_req *r)
{
    return fh_str(fh_check(r)->client_ip);
}

static int
fh_status(efn_req *r)
{
    return fh_check(r)->status;
}

static int
fh_msg_ok(efn_req *r, efn_msg m)
{
    if (m != EFN_MSG_REQ && m != EFN_MSG_RESP)
        return EFN_E_INVAL;
    if (m == EFN_MSG_RESP && r->phase != FH_RESPONSE)
        return EFN_E_PHASE;
    if (m == EFN_MSG_REQ && r->phase == FH_RESPONSE)
        return EFN_E_PHASE; /* the request has left */
    return EFN_OK;
}

static int
fh_name_ok(efn_str s)
{
    size_t i;

    if (s.len == 0 || s.ptr == NULL)
        return 0;
    for (i = 0; i < s.len; i++)
        if (s.ptr[i] <= ' ' || s.ptr[i] == ':' || (unsigned char)s.ptr[i] >= 0x7f)
            return 0;
    return 1;
}

static int
fh_value_ok(efn_str s)
{
    size_t i;

    for (i = 0; i < s.len; i++)
        if (s.ptr[i] == '\r' || s.ptr[i] == '\n' || s.ptr[i] == '\0')
            return 0;
    return 1;
}

static int
fh_hdr_get(efn_req *r, efn_msg m, efn_str name, size_t idx, efn_str *out)
{
    struct fh_hdrs *h;
    size_t i;

    fh_check(r);
    if (m != EFN_MSG_REQ && m != EFN_MSG_RESP)
        return EFN_E_INVAL;
    if (m == EFN_MSG_RESP && r->phase != FH_RESPONSE)
        return EFN_E_PHASE;
    h = &r->hdrs[m];
    for (i = 0; i < h->n; i++) {
        if (strlen(h->v[i].name) == name.len &&
            strncasecmp(h->v[i].name, name.ptr, name.len) == 0 && idx-- == 0) {
            *out = fh_str(h->v[i].value);
            return EFN_OK;
        }
    }
    return EFN_E_NOTFOUND;
}

static int
fh_hdr_add_call(efn_req *r, efn_msg m, efn_str name, efn_str value)
{
    int rc = fh_msg_ok(fh_check(r), m);

    if (rc != EFN_OK)
        return rc;
    if (!fh_name_ok(name) || !fh_value_ok(value))
        return EFN_E_INVAL;
    fh_hdrs_add(&r->hdrs[m], name.ptr, name.len, value.ptr, value.len);
    return EFN_OK;
}

static int
fh_hdr_del_call(efn_req *r, efn_msg m, efn_str name)
{
    int rc = fh_msg_ok(fh_check(r), m);

    if (rc != EFN_OK)
        return rc;
    if (!fh_name_ok(name))
        return EFN_E_INVAL;
    fh_hdrs_del(&r->hdrs[m], name.ptr, name.len);
    return EFN_OK;
}

static int
fh_hdr_set_call(efn_req *r, efn_msg m, efn_str name, efn_str value)
{
    int rc = fh_msg_ok(fh_check(r), m);

    if (rc != EFN_OK)
        return rc;
    if (!fh_name_ok(name) || !fh_value_ok(value))
        return EFN_E_INVAL;
    fh_hdrs_del(&r->hdrs[m], name.ptr, name.len);
    fh_hdrs_add(&r->hdrs[m], name.ptr, name.len, value.ptr, value.len);
    return EFN_OK;
}

static int
fh_set_path(efn_req *r, efn_str p)
{
    if (fh_check(r)->phase == FH_RESPONSE)
        return EFN_E_PHASE;
    if (p.len == 0 || p.ptr[0] != '/')
        return EFN_E_INVAL;
    free(r->path);
    r->path = fh_strndup(p.ptr, p.len);
    return EFN_OK;
}

static int
fh_set_authority(efn_req *r, efn_str a)
{
    if (fh_check(r)->phase == FH_RESPONSE)
        return EFN_E_PHASE;
    free(r->authority);
    r->authority = fh_strndup(a.ptr, a.len);
    return EFN_OK;
}

static int
fh_set_origin(efn_req *r, efn_str name)
{
    if (fh_check(r)->phase == FH_RESPONSE)
        return EFN_E_PHASE;
    if (name.len != 3 || memcmp(name.ptr, "app", 3) != 0) /* the only origin "declared" */
        return EFN_E_NOTFOUND;
    free(r->origin);
    r->origin = fh_strndup(name.ptr, name.len);
    return EFN_OK;
}

static int
fh_set_cache_key(efn_req *r, efn_str key)
{
    if (fh_check(r)->phase != FH_REQUEST)
        return EFN_E_PHASE;
    free(r->cache_key);
    r->cache_key = fh_strndup(key.ptr, key.len);
    return EFN_OK;
}

static int
fh_set_cache_ttl(efn_req *r, int32_t secs)
{
    if (fh_check(r)->phase == FH_RESPONSE)
        return EFN_E_PHASE;
    if (secs < 0)
        return EFN_E_INVAL;
    r->cache_ttl = secs;
    return EFN_OK;
}

static int
fh_body_get(efn_req *r, efn_msg m, efn_str *out)
{
    (void)fh_check(r);
    (void)m;
    (void)out;
    return EFN_E_LIMIT;
}

static int
fh_body_set(efn_req *r, efn_msg m, efn_str body)
{
    (void)fh_check(r);
    (void)m;
    (void)body;
    return EFN_E_LIMIT;
}

static int
fh_respond(efn_req *r, int status, const efn_hdr *h, size_t nh, efn_str body)
{
    size_t i;

    fh_check(r);
    if (status < 100 || status > 599 || (nh > 0 && h == NULL))
        return EFN_E_INVAL;
    for (i = 0; i < nh; i++)
        if (!fh_name_ok(h[i].name) || !fh_value_ok(h[i].value))
            return EFN_E_INVAL;
    fh_hdrs_clear(&r->resp_hdrs);
    for (i = 0; i < nh; i++)
        fh_hdrs_add(&r->resp_hdrs, h[i].name.ptr, h[i].name.len, h[i].value.ptr, h[i].value.len);
    free(r->resp_body);
    r->resp_body = fh_strndup(body.ptr, body.len);
    r->resp_body_len = body.len;
    r->responded = status;
    return EFN_OK;
}

static void *
fh_alloc(efn_req *r, size_t n)
{
    struct fh_chunk *c;

    fh_check(r);
    if (n > r->arena_cap || r->arena_used > r->arena_cap - n) {
        fh_log(r, EFN_LOG_WARN, "arena cap reached");
        return NULL;
    }
    c = malloc(sizeof(*c) + (n > 0 ? n : 1));
    if (c == NULL)
        return NULL;
    c->next = r->chunks;
    r->chunks = c;
    r->arena_used += n;
    return c->data;
}

static void **
fh_slot(efn_req *r)
{
    return &fh_check(r)->slot;
}

static int
fh_queue(efn_req *r, enum fh_op_kind kind, efn_str key, const char *val, size_t vlen, int64_t n,
         uint32_t ms, efn_kv_cb cb, void *ud)
{
    struct fh_op *op;
    char *full;

    fh_check(r);
    fh.kv_calls++;
    if (key.len == 0 || key.ptr == NULL)
        return EFN_E_INVAL;
    if (fh.kv_down)
        return EFN_E_KV;
    if (cb != NULL && r->inflight >= FH_MAX_OPS)
        return EFN_E_LIMIT;
    if (r->nops >= FH_MAX_OPS)
        return EFN_E_LIMIT;
    full = malloc(sizeof(FH_PREFIX) + key.len);
    if (full == NULL)
        abort();
    memcpy(full, FH_PREFIX, sizeof(FH_PREFIX) - 1);
    memcpy(full + sizeof(FH_PREFIX) - 1, key.ptr, key.len);
    full[sizeof(FH_PREFIX) - 1 + key.len] = '\0';
    op = &r->ops[r->nops++];
    *op = (struct fh_op){kind, full, val != NULL ? fh_strndup(val, vlen) : NULL, vlen, n, ms,
                         cb, ud};
    if (cb != NULL)
        r->inflight++;
    return EFN_OK;
}

static int
fh_kv_get_call(efn_req *r, efn_str key, efn_kv_cb cb, void *ud)
{
    return fh_queue(r, FH_GET, key, NULL, 0, 0, 0, cb, ud);
}

static int
fh_kv_set_call(efn_req *r, efn_str key, efn_str val, uint32_t ttl_ms, efn_kv_cb cb, void *ud)
{
    return fh_queue(r, FH_SET, key, val.ptr != NULL ? val.ptr : "", val.len, 0, ttl_ms, cb, ud);
}

static int
fh_kv_incr_call(efn_req *r, efn_str key, int64_t delta, efn_kv_cb cb, void *ud)
{
    return fh_queue(r, FH_INCR, key, NULL, 0, delta, 0, cb, ud);
}

static int
fh_kv_del_call(efn_req *r, efn_str key, efn_kv_cb cb, void *ud)
{
    return fh_queue(r, FH_DEL, key, NULL, 0, 0, 0, cb, ud);
}

static int
fh_kv_expire_call(efn_req *r, efn_str key, uint32_t ttl_ms, efn_kv_cb cb, void *ud)
{
    return fh_queue(r, FH_EXPIRE, key, NULL, 0, 0, ttl_ms, cb, ud);
}

static int
fh_kv_incr_window_call(efn_req *r, efn_str key, int64_t delta, uint32_t window_ms, efn_kv_cb cb,
                       void *ud)
{
    if (window_ms == 0)
        return EFN_E_INVAL;
    return fh_queue(r, FH_INCRW, key, NULL, 0, delta, window_ms, cb, ud);
}

static const struct efn_host fh_host = {
    .abi_major = EFN_ABI_MAJOR,
    .abi_minor = EFN_ABI_MINOR,
    .size = sizeof(struct efn_host),
    .log = fh_log,
    .method = fh_method,
    .path = fh_path,
    .authority = fh_authority,
    .client_ip = fh_client_ip,
    .status = fh_status,
    .hdr_get = fh_hdr_get,
    .hdr_set = fh_hdr_set_call,
    .hdr_add = fh_hdr_add_call,
    .hdr_del = fh_hdr_del_call,
    .set_path = fh_set_path,
    .set_authority = fh_set_authority,
    .set_origin = fh_set_origin,
    .set_cache_key = fh_set_cache_key,
    .set_cache_ttl = fh_set_cache_ttl,
    .body_get = fh_body_get,
    .body_set = fh_body_set,
    .respond = fh_respond,
    .alloc = fh_alloc,
    .slot = fh_slot,
    .kv_get = fh_kv_get_call,
    .kv_set = fh_kv_set_call,
    .kv_incr = fh_kv_incr_call,
    .kv_del = fh_kv_del_call,
    .kv_expire = fh_kv_expire_call,
    .kv_incr_window = fh_kv_incr_window_call,
};

/* Executes one queued op against the store; returns its reply (value points
 * into a static buffer that lives until the next call). */
static efn_kv_reply
fh_exec(const struct fh_op *op)
{
    static char vbuf[4096];
    efn_kv_reply rep = {EFN_OK, 0, -1, {NULL, 0}};
    struct fh_kv *e = fh_kv_find(op->key);
    char num[32];
    int64_t v;

    if (fh.kv_fail_count > 0) {
        fh.kv_fail_count--;
        rep.status = fh.kv_fail;
        return rep;
    }
    switch (op->kind) {
    case FH_GET:
        if (e == NULL) {
            rep.status = EFN_E_NOTFOUND;
        } else {
            size_t n = e->vlen < sizeof(vbuf) ? e->vlen : sizeof(vbuf);
            memcpy(vbuf, e->val, n);
            rep.value = (efn_str){vbuf, n};
        }
        break;
    case FH_SET:
        e = fh_kv_put(op->key, op->val, op->vlen);
        e->expire_at = op->ms ? fh.now_ms + op->ms : 0;
        break;
    case FH_INCR:
    case FH_INCRW: {
        int64_t exp = e != NULL ? e->expire_at : 0;
        char *end;
        v = 0;
        if (e != NULL) {
            v = strtoll(e->val, &end, 10);
            if (*end != '\0' || e->vlen == 0) {
                rep.status = EFN_E_KV; /* "not an integer" */
                break;
            }
        }
        v += op->n;
        snprintf(num, sizeof(num), "%lld", (long long)v);
        e = fh_kv_put(op->key, num, strlen(num));
        e->expire_at = exp;
        if (op->kind == FH_INCRW) {
            if (e->expire_at == 0)
                e->expire_at = fh.now_ms + op->ms;
            rep.ttl_ms = e->expire_at - fh.now_ms;
        }
        rep.integer = v;
        break;
    }
    case FH_DEL:
        if (e != NULL) {
            e->expire_at = fh.now_ms; /* found expired and dropped on next lookup */
            (void)fh_kv_find(op->key);
            rep.integer = 1;
        }
        break;
    case FH_EXPIRE:
        if (e != NULL) {
            e->expire_at = fh.now_ms + op->ms;
            rep.integer = 1;
        }
        break;
    }
    return rep;
}

/* Delivers queued ops in order (fire-and-forget ones are executed too). The
 * first callback returning non-PAUSE ends the pause: the remaining callbacks
 * are dropped (their ops still execute, as Redis would). Returns that action;
 * EFN_ERROR when every callback paused and nothing is left (a plugin bug the
 * edge also turns into ERROR). */
FH_FN efn_action
fh_drain(struct efn_req *r)
{
    efn_action act = EFN_PAUSE;

    while (r->nops > 0) {
        struct fh_op op = r->ops[0];
        efn_kv_reply rep;

        memmove(&r->ops[0], &r->ops[1], (r->nops - 1) * sizeof(r->ops[0]));
        r->nops--;
        if (op.cb != NULL)
            r->inflight--;
        rep = fh_exec(&op);
        if (op.cb != NULL && act == EFN_PAUSE)
            act = op.cb(r, r->inst, op.ud, &rep);
        free(op.key);
        free(op.val);
    }
    return act == EFN_PAUSE ? EFN_ERROR : act;
}

/* Runs one hook as the edge would: on PAUSE, checks a callback is pending
 * and drains. */
FH_FN efn_action
fh_run(struct efn_req *r, enum fh_phase phase, void *inst)
{
    efn_action (*hook)(efn_req *, void *) = NULL;
    efn_action act;

    r->phase = phase;
    r->inst = inst;
    switch (phase) {
    case FH_REQUEST: hook = efn_plugin_v1.on_request; break;
    case FH_ORIGIN: hook = efn_plugin_v1.on_origin; break;
    case FH_RESPONSE: hook = efn_plugin_v1.on_response; break;
    }
    if (hook == NULL)
        return EFN_CONTINUE;
    act = hook(r, inst);
    if (act == EFN_PAUSE) {
        if (r->inflight == 0)
            return EFN_ERROR;
        act = fh_drain(r);
    }
    if (act == EFN_DONE && r->responded == 0)
        return EFN_ERROR;
    return act;
}

/* Moves the request to the response phase with a status from the origin. */
FH_FN void
fh_set_response(struct efn_req *r, int status)
{
    r->status = status;
    r->phase = FH_RESPONSE;
}

/* Plugin init + instance_new from "k=v" strings; fails the test on error
 * unless want_err is given (then the message is copied there and NULL
 * returned). */
FH_FN int
fh_instance(void **inst, char *err, size_t errlen, const char *const *kv, size_t n)
{
    efn_arg args[16];
    size_t i;

    if (n > 16)
        abort();
    for (i = 0; i < n; i++) {
        const char *eq = strchr(kv[i], '=');
        if (eq == NULL) {
            args[i].key = fh_str(kv[i]);
            args[i].value = (efn_str){"", 0};
        } else {
            args[i].key = (efn_str){kv[i], (size_t)(eq - kv[i])};
            args[i].value = fh_str(eq + 1);
        }
    }
    err[0] = '\0';
    *inst = NULL;
    return efn_plugin_v1.instance_new(args, n, inst, err, errlen);
}

/* A table of argument lists instance_new must refuse, each with a piece of
 * the message it must give. */
struct fh_bad {
    const char *a[4];
    size_t n;
    const char *msg;
};

/* 0 when every case is refused with its message; else -1 (said on stderr). */
FH_FN int
fh_expect_bad_args(const struct fh_bad *cases, size_t ncases)
{
    char err[256];
    void *inst;

    for (size_t i = 0; i < ncases; i++) {
        if (fh_instance(&inst, err, sizeof(err), cases[i].a, cases[i].n) == 0) {
            fprintf(stderr, "case %zu: accepted\n", i);
            return -1;
        }
        if (strstr(err, cases[i].msg) == NULL) {
            fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, err, cases[i].msg);
            return -1;
        }
    }
    return 0;
}

FH_FN int
fh_init(void)
{
    char err[256] = "";

    fh_kv_reset();
    if (efn_plugin_v1.init == NULL)
        return 0;
    return efn_plugin_v1.init(&fh_host, err, sizeof(err));
}

#endif /* EDGE_TESTS_FN_FAKEHOST_H */
