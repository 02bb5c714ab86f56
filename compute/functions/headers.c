/*
 * headers — request and response header edits.
 *
 *     function headers set=req:X-A:value add=resp:X-B:value remove=req:Cookie ...;
 *
 * Each argument is one edit, applied in the order written:
 *   set=WHERE:NAME:VALUE   replace every NAME with one VALUE
 *   add=WHERE:NAME:VALUE   append NAME: VALUE (keeps existing ones)
 *   remove=WHERE:NAME      remove every NAME
 * WHERE is `req` (applied in the REQUEST phase, so the cache key, the
 * origin and later functions see it) or `resp` (RESPONSE phase, on hits and
 * misses; not stored). VALUE is everything after the second ':' (it may
 * hold ':'), may be empty, and must not hold CR, LF or NUL. At most 32 edits.
 */
#include "compute/edgefn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDRS_MAGIC 0x48445253u /* "HDRS" */
#define HDRS_MAX 32

enum hdrs_op { HDRS_SET, HDRS_ADD, HDRS_REMOVE };

struct hdrs_edit {
    enum hdrs_op op;
    efn_msg where;
    char *name; /* malloc'd, owned by the instance */
    size_t name_len;
    char *value;
    size_t value_len;
};

struct headers {
    unsigned magic;
    size_t n;
    struct hdrs_edit e[HDRS_MAX];
};

static const struct efn_host *host;

static int
hdrs_init(const struct efn_host *h, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    host = h;
    return 0;
}

static void
hdrs_instance_free(void *inst)
{
    struct headers *hs = inst;
    size_t i;

    if (hs == NULL)
        return;
    for (i = 0; i < hs->n; i++) {
        free(hs->e[i].name);
        free(hs->e[i].value);
    }
    hs->magic = 0;
    free(hs);
}

static int
tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static char *
dup(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p != NULL) {
        if (n > 0)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static int
parse_edit(const efn_arg *a, struct hdrs_edit *e, char *err, size_t errlen)
{
    const char *p = a->value.ptr, *end = a->value.ptr + a->value.len, *c;
    size_t i;

    if (a->key.len == 3 && memcmp(a->key.ptr, "set", 3) == 0)
        e->op = HDRS_SET;
    else if (a->key.len == 3 && memcmp(a->key.ptr, "add", 3) == 0)
        e->op = HDRS_ADD;
    else if (a->key.len == 6 && memcmp(a->key.ptr, "remove", 6) == 0)
        e->op = HDRS_REMOVE;
    else {
        snprintf(err, errlen, "unknown argument '%.*s' (headers takes set=, add=, remove=)",
                 (int)a->key.len, a->key.ptr);
        return -1;
    }
    if (a->value.len >= 4 && memcmp(p, "req:", 4) == 0) {
        e->where = EFN_MSG_REQ;
        p += 4;
    } else if (a->value.len >= 5 && memcmp(p, "resp:", 5) == 0) {
        e->where = EFN_MSG_RESP;
        p += 5;
    } else {
        snprintf(err, errlen, "%.*s=%.*s: must start with 'req:' or 'resp:'", (int)a->key.len,
                 a->key.ptr, (int)a->value.len, a->value.ptr);
        return -1;
    }
    c = memchr(p, ':', (size_t)(end - p));
    if (e->op == HDRS_REMOVE && c != NULL) {
        snprintf(err, errlen, "remove=%.*s: takes no value", (int)a->value.len, a->value.ptr);
        return -1;
    }
    if (e->op != HDRS_REMOVE && c == NULL) {
        snprintf(err, errlen, "%.*s=%.*s: expected WHERE:NAME:VALUE", (int)a->key.len, a->key.ptr,
                 (int)a->value.len, a->value.ptr);
        return -1;
    }
    if (c == NULL)
        c = end;
    e->name_len = (size_t)(c - p);
    for (i = 0; i < e->name_len; i++)
        if (!tchar(p[i]))
            break;
    if (e->name_len == 0 || i < e->name_len) {
        snprintf(err, errlen, "%.*s=%.*s: bad header name", (int)a->key.len, a->key.ptr,
                 (int)a->value.len, a->value.ptr);
        return -1;
    }
    e->name = dup(p, e->name_len);
    if (c < end) {
        c++;
        e->value_len = (size_t)(end - c);
        for (i = 0; i < e->value_len; i++)
            if (c[i] == '\r' || c[i] == '\n' || c[i] == '\0') {
                snprintf(err, errlen, "%.*s=: the value of %s holds CR, LF or NUL",
                         (int)a->key.len, a->key.ptr, e->name != NULL ? e->name : "?");
                return -1;
            }
        e->value = dup(c, e->value_len);
    } else {
        e->value = dup("", 0);
    }
    if (e->name == NULL || e->value == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int
hdrs_instance_new(const efn_arg *args, size_t nargs, void **inst, char *err, size_t errlen)
{
    struct headers *hs;
    size_t i;

    if (nargs == 0) {
        snprintf(err, errlen, "headers needs at least one set=, add= or remove=");
        return -1;
    }
    if (nargs > HDRS_MAX) {
        snprintf(err, errlen, "headers takes at most %d edits", HDRS_MAX);
        return -1;
    }
    hs = calloc(1, sizeof(*hs));
    if (hs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    hs->magic = HDRS_MAGIC;
    for (i = 0; i < nargs; i++) {
        hs->n++; /* counted first: a half-parsed edit is freed with the rest */
        if (parse_edit(&args[i], &hs->e[i], err, errlen) < 0) {
            hdrs_instance_free(hs);
            return -1;
        }
    }
    *inst = hs;
    return 0;
}

static efn_action
apply(efn_req *r, const struct headers *hs, efn_msg where)
{
    size_t i;

    if (hs == NULL || hs->magic != HDRS_MAGIC)
        return EFN_ERROR;
    for (i = 0; i < hs->n; i++) {
        const struct hdrs_edit *e = &hs->e[i];
        efn_str n = {e->name, e->name_len}, v = {e->value, e->value_len};
        int rc = EFN_OK;
        if (e->where != where)
            continue;
        switch (e->op) {
        case HDRS_SET: rc = host->hdr_set(r, where, n, v); break;
        case HDRS_ADD: rc = host->hdr_add(r, where, n, v); break;
        case HDRS_REMOVE: rc = host->hdr_del(r, where, n); break;
        }
        if (rc != EFN_OK) {
            host->log(r, EFN_LOG_WARN, "edit of %s failed (%d)", e->name, rc);
            return EFN_ERROR;
        }
    }
    return EFN_CONTINUE;
}

static efn_action
hdrs_request(efn_req *r, void *inst)
{
    return apply(r, inst, EFN_MSG_REQ);
}

static efn_action
hdrs_response(efn_req *r, void *inst)
{
    return apply(r, inst, EFN_MSG_RESP);
}

EFN_PLUGIN(.name = "headers", .version = "1.0.0", .init = hdrs_init,
           .instance_new = hdrs_instance_new, .instance_free = hdrs_instance_free,
           .on_request = hdrs_request, .on_response = hdrs_response);
