/*
 * hello — answers JSON at the edge with a per-path visit counter kept in KV.
 *
 *     function hello [greeting=TEXT];
 *
 * GET /x -> 200 {"hello":"world","path":"/x","visits":N}
 * The counter is KV key "visits:<path without query>" (INCR). A KV failure
 * or timeout returns EFN_ERROR: the route's on_error policy decides.
 *
 * The smallest complete example of the ABI: args, arena, KV with PAUSE.
 */
#include "compute/edgefn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELLO_MAGIC 0x48454c4fu /* "HELO" */
#define HELLO_GREETING_MAX 256

struct hello {
    unsigned magic;
    size_t greeting_len;
    char greeting[HELLO_GREETING_MAX];
};

static const struct efn_host *host;

static int
hello_init(const struct efn_host *h, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    host = h;
    return 0;
}

static int
hello_instance_new(const efn_arg *args, size_t nargs, void **inst, char *err, size_t errlen)
{
    struct hello *hl;
    size_t i;

    hl = calloc(1, sizeof(*hl));
    if (hl == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    hl->magic = HELLO_MAGIC;
    memcpy(hl->greeting, "world", 5);
    hl->greeting_len = 5;
    for (i = 0; i < nargs; i++) {
        const efn_arg *a = &args[i];
        if (a->key.len == 8 && memcmp(a->key.ptr, "greeting", 8) == 0) {
            if (a->value.len == 0 || a->value.len >= HELLO_GREETING_MAX) {
                snprintf(err, errlen, "greeting= must be 1-%d bytes", HELLO_GREETING_MAX - 1);
                goto fail;
            }
            memcpy(hl->greeting, a->value.ptr, a->value.len);
            hl->greeting_len = a->value.len;
        } else {
            snprintf(err, errlen, "unknown argument '%.*s' (hello takes greeting=)",
                     (int)a->key.len, a->key.ptr);
            goto fail;
        }
    }
    *inst = hl;
    return 0;
fail:
    free(hl);
    return -1;
}

static void
hello_instance_free(void *inst)
{
    struct hello *hl = inst;

    if (hl == NULL)
        return;
    hl->magic = 0;
    free(hl);
}

/* Appends s JSON-escaped at *pos; returns 0, or -1 when out would overflow. */
static int
json_put(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[6];
        size_t el = 0;
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            el = 2;
        } else if (c < 0x20) {
            memcpy(e, "\\u00", 4);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            el = 6;
        } else {
            e[0] = (char)c;
            el = 1;
        }
        if (cap - *pos < el)
            return -1;
        memcpy(out + *pos, e, el);
        *pos += el;
    }
    return 0;
}

static int
raw_put(char *out, size_t cap, size_t *pos, const char *s)
{
    size_t n = strlen(s);

    if (cap - *pos < n)
        return -1;
    memcpy(out + *pos, s, n);
    *pos += n;
    return 0;
}

static size_t
path_only_len(efn_str p)
{
    const char *q = memchr(p.ptr, '?', p.len);

    return q != NULL ? (size_t)(q - p.ptr) : p.len;
}

static efn_action
hello_counted(efn_req *r, void *inst, void *ud, const efn_kv_reply *rep)
{
    const struct hello *hl = inst;
    efn_str path = host->path(r);
    size_t plen = path_only_len(path), cap, pos = 0;
    char num[32], *body;
    efn_hdr h[2] = {{EFN_STR("Content-Type"), EFN_STR("application/json")},
                    {EFN_STR("Cache-Control"), EFN_STR("no-store")}};

    (void)ud;
    if (hl == NULL || hl->magic != HELLO_MAGIC)
        return EFN_ERROR;
    if (rep->status != EFN_OK) {
        host->log(r, EFN_LOG_WARN, "visit counter: KV status %d", rep->status);
        return EFN_ERROR;
    }
    /* worst case: every byte escaped to \u00XX */
    cap = 64 + 6 * (hl->greeting_len + plen) + sizeof(num);
    body = host->alloc(r, cap);
    if (body == NULL)
        return EFN_ERROR;
    snprintf(num, sizeof(num), "%lld", (long long)rep->integer);
    if (raw_put(body, cap, &pos, "{\"hello\":\"") < 0 ||
        json_put(body, cap, &pos, hl->greeting, hl->greeting_len) < 0 ||
        raw_put(body, cap, &pos, "\",\"path\":\"") < 0 ||
        json_put(body, cap, &pos, path.ptr, plen) < 0 ||
        raw_put(body, cap, &pos, "\",\"visits\":") < 0 || raw_put(body, cap, &pos, num) < 0 ||
        raw_put(body, cap, &pos, "}\n") < 0)
        return EFN_ERROR;
    if (host->respond(r, 200, h, 2, (efn_str){body, pos}) != EFN_OK)
        return EFN_ERROR;
    return EFN_DONE;
}

static efn_action
hello_request(efn_req *r, void *inst)
{
    efn_str path = host->path(r);
    size_t plen = path_only_len(path);
    char *key;
    int rc;

    (void)inst;
    key = host->alloc(r, 7 + plen);
    if (key == NULL)
        return EFN_ERROR;
    memcpy(key, "visits:", 7);
    memcpy(key + 7, path.ptr, plen);
    rc = host->kv_incr(r, (efn_str){key, 7 + plen}, 1, hello_counted, NULL);
    if (rc != EFN_OK) {
        host->log(r, EFN_LOG_WARN, "visit counter: kv_incr failed (%d)", rc);
        return EFN_ERROR;
    }
    return EFN_PAUSE;
}

EFN_PLUGIN(.name = "hello", .version = "1.0.0", .init = hello_init,
           .instance_new = hello_instance_new, .instance_free = hello_instance_free,
           .on_request = hello_request);
