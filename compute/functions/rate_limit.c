/*
 * rate_limit — fixed-window request limit, atomic in Redis.
 *
 *     function rate_limit limit=N window=D [key=client|header:NAME];
 *
 * N: 1..1000000000. D: a duration (500ms, 10s, 1m, 1h; a bare number is
 * seconds), 1ms..24d. key: who is counted — the client address (default) or
 * the value of a request header (requests without it are counted by client
 * address).
 *
 * Each request does ONE host->kv_incr_window(): Redis increments the
 * window's counter and starts its expiry in a single server-side script, so
 * the count is exact across worker threads and across edge processes
 * sharing the Redis server (no read-then-write race, no counter left
 * without an expiry). The window starts with the first request that sees
 * no counter.
 *
 * Over the limit: 429 with RateLimit-Limit, RateLimit-Remaining: 0,
 * RateLimit-Reset (seconds left) and Retry-After. Under it: the request goes
 * on and the response gets the three RateLimit-* headers (on_response).
 * KV failure/timeout: EFN_ERROR (on_error open = allow, closed = refuse).
 */
#include "compute/edgefn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_MAGIC 0x524c494du /* "RLIM" */
#define RL_STATE_MAGIC 0x524c5354u
#define RL_NAME_MAX 64
#define RL_ID_MAX 128 /* longer ids are hashed */

struct rate_limit {
    unsigned magic;
    uint64_t limit;
    uint32_t window_ms;
    size_t header_len; /* 0 = key by client address */
    char header[RL_NAME_MAX];
};

/* per request, in the arena (slot) */
struct rl_state {
    unsigned magic;
    uint64_t limit, remaining, reset_s;
};

static const struct efn_host *host;

static int
rl_init(const struct efn_host *h, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    host = h;
    return 0;
}

static int
key_is(efn_str k, const char *s)
{
    return k.len == strlen(s) && memcmp(k.ptr, s, k.len) == 0;
}

/* Parses an unsigned decimal of s[0..n); -1 on junk or overflow. */
static int
parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (n == 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int
parse_duration_ms(efn_str v, uint64_t *ms)
{
    size_t n = 0;
    uint64_t num, mul = 1000;

    while (n < v.len && v.ptr[n] >= '0' && v.ptr[n] <= '9')
        n++;
    if (parse_u64(v.ptr, n, &num) < 0)
        return -1;
    if (n == v.len || (v.len - n == 1 && v.ptr[n] == 's'))
        mul = 1000;
    else if (v.len - n == 2 && memcmp(v.ptr + n, "ms", 2) == 0)
        mul = 1;
    else if (v.len - n == 1 && v.ptr[n] == 'm')
        mul = 60000;
    else if (v.len - n == 1 && v.ptr[n] == 'h')
        mul = 3600000;
    else
        return -1;
    if (num > UINT64_MAX / mul)
        return -1;
    *ms = num * mul;
    return 0;
}

static int
name_ok(efn_str s)
{
    size_t i;

    if (s.len == 0 || s.len >= RL_NAME_MAX)
        return 0;
    for (i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static int
rl_instance_new(const efn_arg *args, size_t nargs, void **inst, char *err, size_t errlen)
{
    struct rate_limit *rl = calloc(1, sizeof(*rl));
    int have_limit = 0, have_window = 0;
    uint64_t v;
    size_t i;

    if (rl == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rl->magic = RL_MAGIC;
    for (i = 0; i < nargs; i++) {
        const efn_arg *a = &args[i];
        if (key_is(a->key, "limit")) {
            if (parse_u64(a->value.ptr, a->value.len, &v) < 0 || v < 1 || v > 1000000000) {
                snprintf(err, errlen, "limit= must be a number from 1 to 1000000000, not '%.*s'",
                         (int)a->value.len, a->value.ptr);
                goto fail;
            }
            rl->limit = v;
            have_limit = 1;
        } else if (key_is(a->key, "window")) {
            if (parse_duration_ms(a->value, &v) < 0 || v < 1 || v > 24ull * 86400 * 1000) {
                snprintf(err, errlen,
                         "window= must be a duration from 1ms to 24d (500ms, 10s, 1m, 1h), "
                         "not '%.*s'", (int)a->value.len, a->value.ptr);
                goto fail;
            }
            rl->window_ms = (uint32_t)v;
            have_window = 1;
        } else if (key_is(a->key, "key")) {
            if (key_is(a->value, "client")) {
                rl->header_len = 0;
            } else if (a->value.len > 7 && memcmp(a->value.ptr, "header:", 7) == 0 &&
                       name_ok((efn_str){a->value.ptr + 7, a->value.len - 7})) {
                rl->header_len = a->value.len - 7;
                memcpy(rl->header, a->value.ptr + 7, rl->header_len);
            } else {
                snprintf(err, errlen, "key= must be 'client' or 'header:NAME', not '%.*s'",
                         (int)a->value.len, a->value.ptr);
                goto fail;
            }
        } else {
            snprintf(err, errlen,
                     "unknown argument '%.*s' (rate_limit takes limit=, window=, key=)",
                     (int)a->key.len, a->key.ptr);
            goto fail;
        }
    }
    if (!have_limit || !have_window) {
        snprintf(err, errlen, "rate_limit needs limit=N and window=DURATION");
        goto fail;
    }
    *inst = rl;
    return 0;
fail:
    free(rl);
    return -1;
}

static void
rl_instance_free(void *inst)
{
    struct rate_limit *rl = inst;

    if (rl == NULL)
        return;
    rl->magic = 0;
    free(rl);
}

static efn_action
rl_counted(efn_req *r, void *inst, void *ud, const efn_kv_reply *rep)
{
    const struct rate_limit *rl = inst;
    struct rl_state *st;
    uint64_t count, reset_ms;
    char lim[24], rem[24], rst[24];
    int ln, rn, sn;

    (void)ud;
    if (rl == NULL || rl->magic != RL_MAGIC)
        return EFN_ERROR;
    if (rep->status != EFN_OK) {
        host->log(r, EFN_LOG_WARN, "rate counter: KV status %d", rep->status);
        return EFN_ERROR;
    }
    count = rep->integer > 0 ? (uint64_t)rep->integer : 0;
    reset_ms = rep->ttl_ms > 0 ? (uint64_t)rep->ttl_ms : rl->window_ms;
    st = host->alloc(r, sizeof(*st));
    if (st == NULL)
        return EFN_ERROR;
    st->magic = RL_STATE_MAGIC;
    st->limit = rl->limit;
    st->remaining = count >= rl->limit ? 0 : rl->limit - count;
    st->reset_s = (reset_ms + 999) / 1000;
    if (count <= rl->limit) {
        *host->slot(r) = st;
        return EFN_CONTINUE;
    }
    ln = snprintf(lim, sizeof(lim), "%llu", (unsigned long long)st->limit);
    rn = snprintf(rem, sizeof(rem), "0");
    sn = snprintf(rst, sizeof(rst), "%llu", (unsigned long long)st->reset_s);
    {
        static const char body[] = "{\"error\":\"too many requests\"}\n";
        efn_hdr h[6] = {{EFN_STR("Content-Type"), EFN_STR("application/json")},
                        {EFN_STR("Cache-Control"), EFN_STR("no-store")},
                        {EFN_STR("RateLimit-Limit"), {lim, (size_t)ln}},
                        {EFN_STR("RateLimit-Remaining"), {rem, (size_t)rn}},
                        {EFN_STR("RateLimit-Reset"), {rst, (size_t)sn}},
                        {EFN_STR("Retry-After"), {rst, (size_t)sn}}};
        if (host->respond(r, 429, h, 6, EFN_STR(body)) != EFN_OK)
            return EFN_ERROR;
    }
    return EFN_DONE;
}

static uint64_t
fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static efn_action
rl_request(efn_req *r, void *inst)
{
    const struct rate_limit *rl = inst;
    efn_str id = {NULL, 0};
    char *key, hashed[20];
    size_t klen;
    int rc;

    if (rl == NULL || rl->magic != RL_MAGIC)
        return EFN_ERROR;
    if (rl->header_len == 0 ||
        host->hdr_get(r, EFN_MSG_REQ, (efn_str){rl->header, rl->header_len}, 0, &id) != EFN_OK ||
        id.len == 0) {
        id = host->client_ip(r);
        klen = 2;
        key = host->alloc(r, 3 + id.len);
        if (key == NULL)
            return EFN_ERROR;
        memcpy(key, "c:", 2);
    } else {
        klen = 2;
        if (id.len > RL_ID_MAX) {
            int n = snprintf(hashed, sizeof(hashed), "#%016llx",
                             (unsigned long long)fnv1a(id.ptr, id.len));
            id = (efn_str){hashed, (size_t)n};
        }
        key = host->alloc(r, 3 + id.len);
        if (key == NULL)
            return EFN_ERROR;
        memcpy(key, "h:", 2);
    }
    memcpy(key + klen, id.ptr, id.len);
    klen += id.len;
    rc = host->kv_incr_window(r, (efn_str){key, klen}, 1, rl->window_ms, rl_counted, NULL);
    if (rc != EFN_OK) {
        host->log(r, EFN_LOG_WARN, "rate counter: kv_incr_window failed (%d)", rc);
        return EFN_ERROR;
    }
    return EFN_PAUSE;
}

static efn_action
rl_response(efn_req *r, void *inst)
{
    struct rl_state *st = *host->slot(r);
    char v[24];
    int n;

    (void)inst;
    if (st == NULL || st->magic != RL_STATE_MAGIC)
        return EFN_CONTINUE; /* answered by us, or the counter failed */
    n = snprintf(v, sizeof(v), "%llu", (unsigned long long)st->limit);
    if (host->hdr_set(r, EFN_MSG_RESP, EFN_STR("RateLimit-Limit"), (efn_str){v, (size_t)n}) < 0)
        return EFN_ERROR;
    n = snprintf(v, sizeof(v), "%llu", (unsigned long long)st->remaining);
    if (host->hdr_set(r, EFN_MSG_RESP, EFN_STR("RateLimit-Remaining"), (efn_str){v, (size_t)n}) <
        0)
        return EFN_ERROR;
    n = snprintf(v, sizeof(v), "%llu", (unsigned long long)st->reset_s);
    if (host->hdr_set(r, EFN_MSG_RESP, EFN_STR("RateLimit-Reset"), (efn_str){v, (size_t)n}) < 0)
        return EFN_ERROR;
    return EFN_CONTINUE;
}

EFN_PLUGIN(.name = "rate_limit", .version = "1.0.0", .init = rl_init,
           .instance_new = rl_instance_new, .instance_free = rl_instance_free,
           .on_request = rl_request, .on_response = rl_response);
