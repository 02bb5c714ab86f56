/*
 * A configurable test plugin for tests/unit/compute_*_test.c, compiled at
 * test time with `cc -shared -fPIC -I. -DTF_NAME='"x"' -DTF_MODE=N`:
 *   0 good (init/fini/instance_new log through the host; arg fail=1 fails)
 *   1 ABI major 2        2 ABI minor ahead       3 descriptor too small
 *   4 no efn_plugin_v1   5 init fails            6 unresolved symbol (RTLD_NOW)
 *   7 declares another name
 * and, for tests/integration/fn_test.c (on the real request path):
 *   8 spin: on_request burns 20 ms of CPU, then answers 200 "spun"
 *   9 crash: on_request dereferences NULL (a segfaulting function)
 *  10 kv: on_request GETs KV "k" and PAUSEs; the callback answers 200
 *     "gen=TF_GEN value=<v>" (or 503 on a KV error)
 *  15 whoami: on_request answers 200 with the request's X-Client-Cert-Subject
 *     as the function sees it ("none" when absent)
 *  14 resp-kv: on_response GETs KV "k" and PAUSEs; the callback sets
 *     X-KV: <value> on the response (on hits and misses)
 *  13 body: on_request upper-cases the request body (body_get/body_set);
 *     a body it may not see (EFN_E_LIMIT) goes on unchanged
 *  12 forever: on_request never returns (burns CPU until the watchdog)
 *  11 phases: on_origin sets request header X-Origin-Phase: TF_GEN; on_response
 *     sets X-Resp-Phase: <status> and removes Server
 */
#define _POSIX_C_SOURCE 200809L
#include "compute/edgefn.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#ifndef TF_GEN
#define TF_GEN "1"
#endif

#ifndef TF_NAME
#define TF_NAME "testfn"
#endif
#ifndef TF_MODE
#define TF_MODE 0
#endif

static const struct efn_host *host;

static int
tf_init(const struct efn_host *h, char *err, size_t errlen)
{
    host = h;
    host->log(NULL, EFN_LOG_INFO, "init " TF_NAME);
    if (TF_MODE == 5) {
        snprintf(err, errlen, "no license for %s", TF_NAME);
        return -1;
    }
    return 0;
}

static void
tf_fini(void)
{
    host->log(NULL, EFN_LOG_INFO, "fini " TF_NAME);
}

static int
tf_instance_new(const efn_arg *args, size_t nargs, void **inst, char *err, size_t errlen)
{
    static int token;
    size_t i;

    for (i = 0; i < nargs; i++)
        if (args[i].key.len == 4 && memcmp(args[i].key.ptr, "fail", 4) == 0) {
            snprintf(err, errlen, "fail requested (%.*s)", (int)args[i].value.len,
                     args[i].value.ptr);
            return -1;
        }
    host->log(NULL, EFN_LOG_INFO, "instance " TF_NAME " nargs=%zu", nargs);
    *inst = &token;
    return 0;
}

#if TF_MODE == 10
static efn_action
tf_kv_cb(efn_req *r, void *inst, void *ud, const efn_kv_reply *rep)
{
    char body[256];
    int n;

    (void)inst;
    (void)ud;
    if (rep->status != EFN_OK && rep->status != EFN_E_NOTFOUND) {
        host->respond(r, 503, NULL, 0, EFN_STR("kv error\n"));
        return EFN_DONE;
    }
    n = snprintf(body, sizeof(body), "gen=" TF_GEN " value=%.*s\n", (int)rep->value.len,
                 rep->value.ptr ? rep->value.ptr : "");
    host->respond(r, 200, NULL, 0, (efn_str){body, (size_t)n});
    return EFN_DONE;
}
#endif

static efn_action
tf_request(efn_req *r, void *inst)
{
    (void)r;
    (void)inst;
#if TF_MODE == 8
    {
        struct timespec t0, t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        do
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 20000000L);
        host->respond(r, 200, NULL, 0, EFN_STR("spun\n"));
        return EFN_DONE;
    }
#elif TF_MODE == 9
    {
        volatile int *volatile p = NULL;
        *p = 1;
    }
#elif TF_MODE == 12
    {
        volatile unsigned long n = 0;
        for (;;)
            n++;
    }
#elif TF_MODE == 15
    {
        efn_str v;
        if (host->hdr_get(r, EFN_MSG_REQ, EFN_STR("X-Client-Cert-Subject"), 0, &v) != EFN_OK)
            v = EFN_STR("none");
        host->respond(r, 200, NULL, 0, v);
        return EFN_DONE;
    }
#elif TF_MODE == 13
    {
        efn_str b;
        char *up;
        int rc = host->body_get(r, EFN_MSG_REQ, &b);
        if (rc == EFN_E_LIMIT)
            return EFN_CONTINUE;
        if (rc != EFN_OK || (up = host->alloc(r, b.len + 1)) == NULL)
            return EFN_ERROR;
        for (size_t i = 0; i < b.len; i++)
            up[i] = (b.ptr[i] >= 'a' && b.ptr[i] <= 'z') ? (char)(b.ptr[i] - 32) : b.ptr[i];
        return host->body_set(r, EFN_MSG_REQ, (efn_str){up, b.len}) == EFN_OK ? EFN_CONTINUE
                                                                              : EFN_ERROR;
    }
#elif TF_MODE == 10
    if (host->kv_get(r, EFN_STR("k"), tf_kv_cb, NULL) != EFN_OK)
        return EFN_ERROR;
    return EFN_PAUSE;
#endif
    return EFN_CONTINUE;
}

#if TF_MODE == 14
static efn_action
tf_resp_kv_cb(efn_req *r, void *inst, void *ud, const efn_kv_reply *rep)
{
    (void)inst;
    (void)ud;
    if (rep->status != EFN_OK)
        return EFN_ERROR;
    return host->hdr_set(r, EFN_MSG_RESP, EFN_STR("X-KV"), rep->value) == EFN_OK ? EFN_CONTINUE
                                                                               : EFN_ERROR;
}

static efn_action
tf_resp_kv(efn_req *r, void *inst)
{
    (void)inst;
    if (host->kv_get(r, EFN_STR("k"), tf_resp_kv_cb, NULL) != EFN_OK)
        return EFN_ERROR;
    return EFN_PAUSE;
}
#endif

#if TF_MODE == 11
static efn_action
tf_origin(efn_req *r, void *inst)
{
    (void)inst;
    return host->hdr_set(r, EFN_MSG_REQ, EFN_STR("X-Origin-Phase"), EFN_STR(TF_GEN)) == EFN_OK
               ? EFN_CONTINUE
               : EFN_ERROR;
}

static efn_action
tf_response(efn_req *r, void *inst)
{
    char st[16];
    int n = snprintf(st, sizeof(st), "%d", host->status(r));

    (void)inst;
    host->hdr_del(r, EFN_MSG_RESP, EFN_STR("Server"));
    return host->hdr_set(r, EFN_MSG_RESP, EFN_STR("X-Resp-Phase"), (efn_str){st, (size_t)n}) ==
                   EFN_OK
               ? EFN_CONTINUE
               : EFN_ERROR;
}
#endif

#if TF_MODE == 6
extern int tf_no_such_symbol(void);
int tf_use(void);
int
tf_use(void)
{
    return tf_no_such_symbol();
}
#endif

#if TF_MODE == 4
EFN_EXPORT const struct efn_plugin efn_plugin_v2 = {
#else
EFN_EXPORT extern const struct efn_plugin efn_plugin_v1;
EFN_EXPORT const struct efn_plugin efn_plugin_v1 = {
#endif
    .abi_major = TF_MODE == 1 ? 2 : EFN_ABI_MAJOR,
    .abi_minor = TF_MODE == 2 ? EFN_ABI_MINOR + 1 : EFN_ABI_MINOR,
    .size = TF_MODE == 3 ? 16 : sizeof(struct efn_plugin),
    .name = TF_MODE == 7 ? "other" : TF_NAME,
    .version = "test",
    .init = tf_init,
    .fini = tf_fini,
    .instance_new = tf_instance_new,
    .on_request = tf_request,
#if TF_MODE == 11
    .on_origin = tf_origin,
    .on_response = tf_response,
#endif
#if TF_MODE == 14
    .on_response = tf_resp_kv,
#endif
};
