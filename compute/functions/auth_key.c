/*
 * auth_key — API keys stored in KV.
 *
 *     function auth_key [header=X-Api-Key] [owner_header=X-Api-Owner];
 *
 * The key sent in `header` is looked up in KV (the key itself, under this
 * instance's namespace; the value is the owner's name, e.g.
 * `SET efn:auth_key:default:k123 alice`). Missing or unknown key: 401 with a
 * JSON reason. Known key: the request goes on with `owner_header: <owner>`
 * (any client-sent owner_header is removed first, so it cannot be forged).
 * KV failure/timeout: EFN_ERROR (the route's on_error decides: `closed`
 * refuses, `open` lets the request through WITHOUT an owner header).
 */
#include "compute/edgefn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_MAGIC 0x41555448u /* "AUTH" */
#define AUTH_NAME_MAX 64
#define AUTH_KEY_MAX 256

struct auth_key {
    unsigned magic;
    char header[AUTH_NAME_MAX];
    size_t header_len;
    char owner[AUTH_NAME_MAX];
    size_t owner_len;
};

static const struct efn_host *host;

static int
auth_init(const struct efn_host *h, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    host = h;
    return 0;
}

static int
name_ok(efn_str s)
{
    size_t i;

    if (s.len == 0 || s.len >= AUTH_NAME_MAX)
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
key_is(efn_str k, const char *s)
{
    return k.len == strlen(s) && memcmp(k.ptr, s, k.len) == 0;
}

static int
auth_instance_new(const efn_arg *args, size_t nargs, void **inst, char *err, size_t errlen)
{
    struct auth_key *a = calloc(1, sizeof(*a));
    size_t i;

    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->magic = AUTH_MAGIC;
    a->header_len = (size_t)snprintf(a->header, sizeof(a->header), "X-Api-Key");
    a->owner_len = (size_t)snprintf(a->owner, sizeof(a->owner), "X-Api-Owner");
    for (i = 0; i < nargs; i++) {
        const efn_arg *g = &args[i];
        char *dst;
        size_t *dlen;
        if (key_is(g->key, "header")) {
            dst = a->header;
            dlen = &a->header_len;
        } else if (key_is(g->key, "owner_header")) {
            dst = a->owner;
            dlen = &a->owner_len;
        } else {
            snprintf(err, errlen, "unknown argument '%.*s' (auth_key takes header=, owner_header=)",
                     (int)g->key.len, g->key.ptr);
            goto fail;
        }
        if (!name_ok(g->value)) {
            snprintf(err, errlen, "%.*s= must be a header name (1-%d of A-Z a-z 0-9 - _)",
                     (int)g->key.len, g->key.ptr, AUTH_NAME_MAX - 1);
            goto fail;
        }
        memcpy(dst, g->value.ptr, g->value.len);
        dst[g->value.len] = '\0';
        *dlen = g->value.len;
    }
    *inst = a;
    return 0;
fail:
    free(a);
    return -1;
}

static void
auth_instance_free(void *inst)
{
    struct auth_key *a = inst;

    if (a == NULL)
        return;
    a->magic = 0;
    free(a);
}

static efn_action
deny(efn_req *r, const struct auth_key *a, const char *reason)
{
    char body[256], www[128];
    int n = snprintf(body, sizeof(body), "{\"error\":\"unauthorized\",\"reason\":\"%s\","
                                         "\"header\":\"%s\"}\n", reason, a->header);
    int wn = snprintf(www, sizeof(www), "ApiKey header=\"%s\"", a->header);
    efn_hdr h[3] = {{EFN_STR("Content-Type"), EFN_STR("application/json")},
                    {EFN_STR("Cache-Control"), EFN_STR("no-store")},
                    {EFN_STR("WWW-Authenticate"), {www, (size_t)wn}}};

    if (n < 0 || (size_t)n >= sizeof(body) || wn < 0 || (size_t)wn >= sizeof(www))
        return EFN_ERROR;
    if (host->respond(r, 401, h, 3, (efn_str){body, (size_t)n}) != EFN_OK)
        return EFN_ERROR;
    return EFN_DONE;
}

static efn_action
auth_found(efn_req *r, void *inst, void *ud, const efn_kv_reply *rep)
{
    const struct auth_key *a = inst;
    size_t i;

    (void)ud;
    if (a == NULL || a->magic != AUTH_MAGIC)
        return EFN_ERROR;
    if (rep->status == EFN_E_NOTFOUND)
        return deny(r, a, "unknown API key");
    if (rep->status != EFN_OK) {
        host->log(r, EFN_LOG_WARN, "key lookup failed: KV status %d", rep->status);
        return EFN_ERROR;
    }
    for (i = 0; i < rep->value.len; i++)
        if (rep->value.ptr[i] == '\r' || rep->value.ptr[i] == '\n' || rep->value.ptr[i] == '\0')
            break;
    if (rep->value.len == 0 || i < rep->value.len) {
        host->log(r, EFN_LOG_ERR, "key record has an invalid owner value");
        return deny(r, a, "unknown API key");
    }
    if (host->hdr_set(r, EFN_MSG_REQ, (efn_str){a->owner, a->owner_len}, rep->value) != EFN_OK)
        return EFN_ERROR;
    return EFN_CONTINUE;
}

static efn_action
auth_request(efn_req *r, void *inst)
{
    const struct auth_key *a = inst;
    efn_str key, extra;
    size_t i;
    int rc;

    if (a == NULL || a->magic != AUTH_MAGIC)
        return EFN_ERROR;
    /* never let a client choose its owner */
    if (host->hdr_del(r, EFN_MSG_REQ, (efn_str){a->owner, a->owner_len}) != EFN_OK)
        return EFN_ERROR;
    if (host->hdr_get(r, EFN_MSG_REQ, (efn_str){a->header, a->header_len}, 0, &key) != EFN_OK ||
        key.len == 0)
        return deny(r, a, "missing API key");
    if (host->hdr_get(r, EFN_MSG_REQ, (efn_str){a->header, a->header_len}, 1, &extra) == EFN_OK)
        return deny(r, a, "more than one API key");
    if (key.len > AUTH_KEY_MAX)
        return deny(r, a, "malformed API key");
    for (i = 0; i < key.len; i++)
        if ((unsigned char)key.ptr[i] <= ' ' || (unsigned char)key.ptr[i] >= 0x7f)
            return deny(r, a, "malformed API key");
    rc = host->kv_get(r, key, auth_found, NULL);
    if (rc != EFN_OK) {
        host->log(r, EFN_LOG_WARN, "key lookup failed: kv_get %d", rc);
        return EFN_ERROR;
    }
    return EFN_PAUSE;
}

EFN_PLUGIN(.name = "auth_key", .version = "1.0.0", .init = auth_init,
           .instance_new = auth_instance_new, .instance_free = auth_instance_free,
           .on_request = auth_request);
