/*
 * ab_split — sticky A/B bucket per visitor.
 *
 *     function ab_split buckets=a:50,b:50 [cookie=ab] [header=X-Bucket] [max_age=2592000];
 *
 * buckets: NAME:WEIGHT,... (1-16 buckets; NAME 1-32 of A-Z a-z 0-9 _ -;
 * WEIGHT 0-1000000, at least one > 0). A request whose `cookie` names a
 * bucket with weight > 0 keeps it; any other gets a weighted random bucket
 * and the response carries `Set-Cookie: NAME=BUCKET; Path=/; Max-Age=...;
 * SameSite=Lax` (on_response). The bucket goes to the origin in `header`
 * (client-sent values are replaced), so the origin can answer
 * `Vary: X-Bucket` and the cache keeps one variant per bucket.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include "compute/edgefn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AB_MAGIC 0x41425350u /* "ABSP" */
#define AB_STATE_MAGIC 0x41425354u
#define AB_MAX 16
#define AB_NAME_MAX 33
#define AB_HDR_MAX 64

struct ab_bucket {
    char name[AB_NAME_MAX];
    size_t len;
    uint32_t weight;
};

struct ab_split {
    unsigned magic;
    struct ab_bucket b[AB_MAX];
    size_t n;
    uint64_t total;
    char cookie[AB_HDR_MAX], header[AB_HDR_MAX];
    size_t cookie_len, header_len;
    uint32_t max_age;
};

struct ab_state { /* per request: the bucket to set as a cookie */
    unsigned magic;
    const struct ab_bucket *set;
};

static const struct efn_host *host;
static _Thread_local uint64_t rng; /* per worker thread; instances stay read-only */

static int
ab_init(const struct efn_host *h, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    host = h;
    return 0;
}

static uint64_t
ab_random(void)
{
    if (rng == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
        rng |= 1;
    }
    /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static int
key_is(efn_str k, const char *s)
{
    return k.len == strlen(s) && memcmp(k.ptr, s, k.len) == 0;
}

static int
word_ok(const char *s, size_t n, size_t max)
{
    size_t i;

    if (n == 0 || n >= max)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static int
parse_buckets(struct ab_split *ab, efn_str v, char *err, size_t errlen)
{
    const char *p = v.ptr, *end = v.ptr + v.len;

    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p)), *colon;
        const char *item_end = comma != NULL ? comma : end;
        struct ab_bucket *b;
        uint64_t w = 0;
        size_t i;

        if (ab->n == AB_MAX) {
            snprintf(err, errlen, "buckets=: at most %d buckets", AB_MAX);
            return -1;
        }
        colon = memchr(p, ':', (size_t)(item_end - p));
        if (colon == NULL || colon + 1 == item_end ||
            !word_ok(p, (size_t)(colon - p), AB_NAME_MAX)) {
            snprintf(err, errlen, "buckets=: '%.*s' is not NAME:WEIGHT", (int)(item_end - p), p);
            return -1;
        }
        for (i = 1; colon + i < item_end; i++) {
            char c = colon[i];
            if (c < '0' || c > '9' || w > 1000000) {
                w = UINT64_MAX;
                break;
            }
            w = w * 10 + (uint64_t)(c - '0');
        }
        if (w > 1000000) {
            snprintf(err, errlen, "buckets=: weight of '%.*s' must be 0-1000000",
                     (int)(colon - p), p);
            return -1;
        }
        b = &ab->b[ab->n];
        b->len = (size_t)(colon - p);
        memcpy(b->name, p, b->len);
        for (i = 0; i < ab->n; i++)
            if (ab->b[i].len == b->len && memcmp(ab->b[i].name, p, b->len) == 0) {
                snprintf(err, errlen, "buckets=: '%.*s' appears twice", (int)b->len, p);
                return -1;
            }
        b->weight = (uint32_t)w;
        ab->total += w;
        ab->n++;
        p = comma != NULL ? comma + 1 : end;
        if (comma != NULL && p == end) {
            snprintf(err, errlen, "buckets=: trailing ','");
            return -1;
        }
    }
    if (ab->n == 0 || ab->total == 0) {
        snprintf(err, errlen, "buckets=: needs at least one bucket with a weight > 0");
        return -1;
    }
    return 0;
}

static int
ab_instance_new(const efn_arg *args, size_t nargs, void **inst, char *err, size_t errlen)
{
    struct ab_split *ab = calloc(1, sizeof(*ab));
    int have_buckets = 0;
    size_t i;

    if (ab == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ab->magic = AB_MAGIC;
    ab->cookie_len = (size_t)snprintf(ab->cookie, sizeof(ab->cookie), "ab");
    ab->header_len = (size_t)snprintf(ab->header, sizeof(ab->header), "X-Bucket");
    ab->max_age = 30 * 86400;
    for (i = 0; i < nargs; i++) {
        const efn_arg *a = &args[i];
        if (key_is(a->key, "buckets")) {
            if (have_buckets++) {
                snprintf(err, errlen, "buckets= given twice");
                goto fail;
            }
            if (parse_buckets(ab, a->value, err, errlen) < 0)
                goto fail;
        } else if (key_is(a->key, "cookie") || key_is(a->key, "header")) {
            int is_cookie = key_is(a->key, "cookie");
            char *dst = is_cookie ? ab->cookie : ab->header;
            if (!word_ok(a->value.ptr, a->value.len, AB_HDR_MAX)) {
                snprintf(err, errlen, "%s= must be 1-%d of A-Z a-z 0-9 - _",
                         is_cookie ? "cookie" : "header", AB_HDR_MAX - 1);
                goto fail;
            }
            memcpy(dst, a->value.ptr, a->value.len);
            dst[a->value.len] = '\0';
            *(is_cookie ? &ab->cookie_len : &ab->header_len) = a->value.len;
        } else if (key_is(a->key, "max_age")) {
            uint64_t v = 0;
            size_t j;
            for (j = 0; j < a->value.len && v <= 0x7fffffff; j++) {
                if (a->value.ptr[j] < '0' || a->value.ptr[j] > '9')
                    break;
                v = v * 10 + (uint64_t)(a->value.ptr[j] - '0');
            }
            if (a->value.len == 0 || j < a->value.len || v > 0x7fffffff) {
                snprintf(err, errlen, "max_age= must be seconds (0-2147483647)");
                goto fail;
            }
            ab->max_age = (uint32_t)v;
        } else {
            snprintf(err, errlen,
                     "unknown argument '%.*s' (ab_split takes buckets=, cookie=, header=, "
                     "max_age=)", (int)a->key.len, a->key.ptr);
            goto fail;
        }
    }
    if (!have_buckets) {
        snprintf(err, errlen, "ab_split needs buckets=NAME:WEIGHT,...");
        goto fail;
    }
    *inst = ab;
    return 0;
fail:
    free(ab);
    return -1;
}

static void
ab_instance_free(void *inst)
{
    struct ab_split *ab = inst;

    if (ab == NULL)
        return;
    ab->magic = 0;
    free(ab);
}

/* The bucket named by our cookie in any Cookie header, or NULL. */
static const struct ab_bucket *
from_cookie(efn_req *r, const struct ab_split *ab)
{
    efn_str c;
    size_t idx, i;

    for (idx = 0; host->hdr_get(r, EFN_MSG_REQ, EFN_STR("Cookie"), idx, &c) == EFN_OK; idx++) {
        const char *p = c.ptr, *end = c.ptr + c.len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p)), *e, *eq;
            e = semi != NULL ? semi : end;
            while (p < e && (*p == ' ' || *p == '\t'))
                p++;
            eq = memchr(p, '=', (size_t)(e - p));
            if (eq != NULL && (size_t)(eq - p) == ab->cookie_len &&
                memcmp(p, ab->cookie, ab->cookie_len) == 0) {
                const char *v = eq + 1, *ve = e;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                for (i = 0; i < ab->n; i++)
                    if (ab->b[i].weight > 0 && ab->b[i].len == (size_t)(ve - v) &&
                        memcmp(ab->b[i].name, v, ab->b[i].len) == 0)
                        return &ab->b[i];
            }
            p = e + 1;
        }
    }
    return NULL;
}

static const struct ab_bucket *
pick(const struct ab_split *ab)
{
    uint64_t x = ab_random() % ab->total;
    size_t i;

    for (i = 0; i < ab->n; i++) {
        if (x < ab->b[i].weight)
            return &ab->b[i];
        x -= ab->b[i].weight;
    }
    return &ab->b[ab->n - 1];
}

static efn_action
ab_request(efn_req *r, void *inst)
{
    const struct ab_split *ab = inst;
    const struct ab_bucket *b;
    struct ab_state *st;

    if (ab == NULL || ab->magic != AB_MAGIC)
        return EFN_ERROR;
    b = from_cookie(r, ab);
    if (b == NULL) {
        b = pick(ab);
        st = host->alloc(r, sizeof(*st));
        if (st == NULL)
            return EFN_ERROR;
        st->magic = AB_STATE_MAGIC;
        st->set = b;
        *host->slot(r) = st;
    }
    if (host->hdr_set(r, EFN_MSG_REQ, (efn_str){ab->header, ab->header_len},
                      (efn_str){b->name, b->len}) != EFN_OK)
        return EFN_ERROR;
    return EFN_CONTINUE;
}

static efn_action
ab_response(efn_req *r, void *inst)
{
    const struct ab_split *ab = inst;
    struct ab_state *st = *host->slot(r);
    char v[AB_HDR_MAX + AB_NAME_MAX + 64];
    int n;

    if (ab == NULL || ab->magic != AB_MAGIC)
        return EFN_ERROR;
    if (st == NULL || st->magic != AB_STATE_MAGIC)
        return EFN_CONTINUE;
    n = snprintf(v, sizeof(v), "%s=%s; Path=/; Max-Age=%u; SameSite=Lax", ab->cookie,
                 st->set->name, (unsigned)ab->max_age);
    if (n < 0 || (size_t)n >= sizeof(v))
        return EFN_ERROR;
    if (host->hdr_add(r, EFN_MSG_RESP, EFN_STR("Set-Cookie"), (efn_str){v, (size_t)n}) != EFN_OK)
        return EFN_ERROR;
    return EFN_CONTINUE;
}

EFN_PLUGIN(.name = "ab_split", .version = "1.0.0", .init = ab_init,
           .instance_new = ab_instance_new, .instance_free = ab_instance_free,
           .on_request = ab_request, .on_response = ab_response);
