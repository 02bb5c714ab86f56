/*
 * edgefn.h — the edge function ABI, version 1.0. The whole contract between
 * the edge and a function shared object; nothing else of the project is
 * visible to a plugin. C99, includes only <stddef.h> and <stdint.h>.
 *
 * A plugin is one .so exporting one const descriptor:
 *
 *     #include "edgefn.h"
 *     static const struct efn_host *host;
 *     static int my_init(const struct efn_host *h, char *err, size_t errlen)
 *     { host = h; (void)err; (void)errlen; return 0; }
 *     ...
 *     EFN_PLUGIN(.name = "hello", .version = "1.0", .init = my_init, ...);
 *
 * LIFECYCLE (all on the main thread, at conf load or reload)
 *   init          once per loaded build (a build = one sha256 of the .so);
 *                 an unchanged build is reused across reloads without a second
 *                 init. The host table pointer stays valid until fini returns.
 *   instance_new  once per `function NAME k=v ...;` entry of a route; the
 *                 instance is then READ-ONLY and shared by all worker threads.
 *                 Mutable shared state belongs in KV.
 *   instance_free when the conf generation holding it is released (no request
 *                 uses it any more).
 *   fini          when no generation uses the build any more, before dlclose.
 *
 * PHASES (hooks; NULL = the phase is skipped for this plugin)
 *   on_request    before the cache lookup: rewrite path/host/headers, cache
 *                 key, origin, TTL, respond.
 *   on_origin     on a miss or revalidation, before the origin request:
 *                 request headers, origin, TTL.
 *   on_response   hits and misses, before the response head goes out:
 *                 response headers, respond (replaces the response). Edits
 *                 here are not stored in the cache.
 *   A setter called in a phase where it makes no sense returns EFN_E_PHASE.
 *
 * ACTIONS returned by hooks and KV callbacks
 *   EFN_CONTINUE  go on with the next function of the chain.
 *   EFN_DONE      respond() was called: the chain stops, cache and origin are
 *                 skipped (in on_response the answer replaces the response).
 *                 DONE without a respond() is treated as EFN_ERROR.
 *   EFN_ERROR     the route's on_error policy applies (open: go on as if the
 *                 function were absent; closed: 500/503).
 *   EFN_PAUSE     wait for KV: needs >= 1 pending KV op with a callback, else
 *                 it is EFN_ERROR. Each callback returns an action; the FIRST
 *                 non-PAUSE one resumes the request with that action and the
 *                 remaining callbacks of that pause are dropped (never
 *                 called). A callback may issue new KV ops and return PAUSE.
 *                 function_pause_timeout bounds the whole pause (then
 *                 on_error applies).
 *
 * THREADS: hooks and callbacks run on the worker thread owning the request;
 * the host table may be used only there, inside a hook or a KV callback of
 * that same efn_req (log may also be called with r == NULL from init,
 * instance_new and fini). No host calls from plugin-made threads.
 *
 * MEMORY: plugins never malloc per request. alloc() hands out memory from a
 * per-request arena, freed in one shot when the request ends (no destructor
 * hook); it returns NULL past function_arena_max (the host logs it) — handle
 * it like any other error. Strings the host hands out (efn_str) are valid
 * until the hook or callback that received them returns; copy them into
 * alloc() memory to keep them. Strings the plugin hands to the host are
 * copied by the host before the call returns (the plugin may pass stack or
 * arena memory).
 *
 * ERRORS: every int host call returns EFN_OK (0) or a negative EFN_E_*.
 *
 * GROWTH: append-only. New host calls / hooks go at the end of their struct
 * and bump EFN_ABI_MINOR; `size` tells each side what the other has. A
 * plugin that uses a call added in minor N checks host->abi_minor >= N (or
 * EFN_HOST_HAS(host, field)) first. Anything incompatible bumps MAJOR.
 */
#ifndef EDGE_EFN_H
#define EDGE_EFN_H

#include <stddef.h>
#include <stdint.h>

#define EFN_ABI_MAJOR 1 /* bump on any incompatible change                 */
#define EFN_ABI_MINOR 0 /* bump when appending fields to efn_host/efn_plugin */

/* The exported symbol's name, the same for every plugin. */
#define EFN_PLUGIN_SYMBOL "efn_plugin_v1"

#if defined(__GNUC__)
#define EFN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define EFN_EXPORT __attribute__((visibility("default")))
#else
#define EFN_PRINTF(f, a)
#define EFN_EXPORT
#endif

/* A (ptr, len) view. Never NUL-terminated as far as the ABI is concerned;
 * ptr may be NULL when len is 0. */
typedef struct {
    const char *ptr;
    size_t len;
} efn_str;

#define EFN_STR(lit) ((efn_str){(lit), sizeof(lit) - 1}) /* from a string literal */

typedef struct {
    efn_str name, value;
} efn_hdr;

/* One `key=value` argument of a `function NAME key=value ...;` entry. A bare
 * word `flag` arrives as key "flag" with an empty value. The array and its
 * strings are valid only during instance_new: copy what you keep. */
typedef struct {
    efn_str key, value;
} efn_arg;

/* The request being served: opaque, owned by the host, valid only inside a
 * hook or KV callback for it. */
typedef struct efn_req efn_req;

typedef enum { EFN_MSG_REQ = 0, EFN_MSG_RESP = 1 } efn_msg;

typedef enum { EFN_CONTINUE = 0, EFN_PAUSE = 1, EFN_DONE = 2, EFN_ERROR = -1 } efn_action;

enum {
    EFN_OK = 0,
    EFN_E_INVAL = -1,    /* bad argument (bad header name, status out of range, ...)   */
    EFN_E_PHASE = -2,    /* not allowed in this phase                                   */
    EFN_E_NOMEM = -3,    /* arena cap or allocation failure                             */
    EFN_E_NOTFOUND = -4, /* no such header / key (KV nil)                               */
    EFN_E_LIMIT = -5,    /* too many KV ops in flight for this request (max 8), body
                            not buffered, ...                                          */
    EFN_E_TIMEOUT = -6,  /* KV op not answered within kv_timeout                        */
    EFN_E_KV = -7,       /* KV unavailable (Redis down, reconnecting) or error reply    */
};

enum { EFN_LOG_ERR = 0, EFN_LOG_WARN = 1, EFN_LOG_INFO = 2, EFN_LOG_DEBUG = 3 };

/* A KV answer, host-owned, valid only during the callback (copy `value` to
 * keep it).
 *   status   EFN_OK, EFN_E_NOTFOUND (GET of a missing key), EFN_E_TIMEOUT,
 *            EFN_E_KV.
 *   integer  INCR / incr_window: the new value; DEL: keys removed (0/1);
 *            EXPIRE: 1 when the key existed; SET: 0.
 *   ttl_ms   kv_incr_window: milliseconds left in the window; else -1.
 *   value    GET: the payload (binary-safe); else empty. */
typedef struct {
    int status;
    int64_t integer;
    int64_t ttl_ms;
    efn_str value;
} efn_kv_reply;

/* `inst` is the instance the op was issued for, `ud` what the plugin passed
 * (typically a pointer into its alloc() state). The return value is an action
 * as described under EFN_PAUSE above. Called at most once, on the request's
 * thread, never after the request ended and never from inside the kv_* call
 * that issued the op. */
typedef efn_action (*efn_kv_cb)(efn_req *r, void *inst, void *ud, const efn_kv_reply *rep);

/* The host table: filled by the host, read-only for the plugin, valid from
 * init until fini returns. Append-only. */
struct efn_host {
    uint32_t abi_major, abi_minor; /* the host's EFN_ABI_MAJOR / MINOR */
    uint32_t size;                 /* sizeof(struct efn_host) of the host */

    /* Logs one line with the plugin and request id prepended; r may be NULL
     * outside requests. */
    void (*log)(efn_req *r, int level, const char *fmt, ...) EFN_PRINTF(3, 4);

    /* Request line and connection; strings valid until the hook returns. */
    efn_str (*method)(efn_req *r);
    efn_str (*path)(efn_req *r); /* origin-form, includes the query */
    efn_str (*authority)(efn_req *r);
    efn_str (*client_ip)(efn_req *r); /* textual address of the client */
    int (*status)(efn_req *r);        /* response status; 0 before a response exists */

    /* Headers. m = EFN_MSG_REQ or EFN_MSG_RESP (EFN_MSG_RESP: on_response
     * only, else EFN_E_PHASE). Names are case-insensitive. hdr_get copies
     * the idx-th (0-based) value of `name` into *out (EFN_E_NOTFOUND past
     * the last). hdr_set replaces all values; hdr_add appends; hdr_del
     * removes all (EFN_OK even when absent). */
    int (*hdr_get)(efn_req *r, efn_msg m, efn_str name, size_t idx, efn_str *out);
    int (*hdr_set)(efn_req *r, efn_msg m, efn_str name, efn_str value);
    int (*hdr_add)(efn_req *r, efn_msg m, efn_str name, efn_str value);
    int (*hdr_del)(efn_req *r, efn_msg m, efn_str name);

    /* Routing: on_request (set_path/authority also on_origin). */
    int (*set_path)(efn_req *r, efn_str path);      /* origin-form, with query */
    int (*set_authority)(efn_req *r, efn_str host); /* Host sent to the origin */
    int (*set_origin)(efn_req *r, efn_str name);    /* an origin declared in conf, by name;
                                                       EFN_E_NOTFOUND when unknown */
    int (*set_cache_key)(efn_req *r, efn_str key);  /* on_request only */
    int (*set_cache_ttl)(efn_req *r, int32_t secs); /* on_request/on_origin; 0 = do not store */

    /* Bodies. A request body with a Content-Length of at most the route's
     * function_body_max is read whole before the chain runs, so on_request
     * and on_origin can read it and body_set can replace it (the origin gets
     * the new length; at most function_body_max). Chunked or larger request
     * bodies stream past the functions, and response bodies are not
     * buffered: EFN_E_LIMIT. A request without a body reads as empty. */
    int (*body_get)(efn_req *r, efn_msg m, efn_str *out);
    int (*body_set)(efn_req *r, efn_msg m, efn_str body);

    /* Answers the request (status 100-599 else EFN_E_INVAL): the host copies
     * the headers and body. The hook then returns EFN_DONE. */
    int (*respond)(efn_req *r, int status, const efn_hdr *h, size_t nh, efn_str body);

    /* Request arena: n bytes aligned for any type, uninitialised; NULL at
     * function_arena_max. Freed when the request ends; no free. */
    void *(*alloc)(efn_req *r, size_t n);
    /* Per-request state of THIS function entry: a pointer the plugin may set
     * (typically to alloc() memory). Starts NULL; the same slot is seen by
     * every phase and every KV callback of this entry for this request. */
    void **(*slot)(efn_req *r);

    /* KV (Redis). Keys are prefixed by the host with this instance's
     * namespace ("efn:<plugin>:<instance>:" unless overridden in conf); key
     * and value bytes are copied before the call returns.
     * Return: EFN_OK = issued, `cb` (if not NULL) will be called exactly
     * once unless the request ends first or an earlier callback of the same
     * pause resumed it; EFN_E_LIMIT (8 ops in flight), EFN_E_KV (Redis not
     * connected), EFN_E_INVAL, EFN_E_PHASE: not issued, cb never called.
     * cb == NULL = fire-and-forget (allowed in any phase, not counted by
     * PAUSE). Any phase may issue ops with a callback and return PAUSE. */
    int (*kv_get)(efn_req *r, efn_str key, efn_kv_cb cb, void *ud);
    /* ttl_ms 0 = no expiry */
    int (*kv_set)(efn_req *r, efn_str key, efn_str val, uint32_t ttl_ms, efn_kv_cb cb, void *ud);
    int (*kv_incr)(efn_req *r, efn_str key, int64_t delta, efn_kv_cb cb, void *ud);
    int (*kv_del)(efn_req *r, efn_str key, efn_kv_cb cb, void *ud);
    int (*kv_expire)(efn_req *r, efn_str key, uint32_t ttl_ms, efn_kv_cb cb, void *ud);
    /* Fixed-window counter, ATOMIC in Redis (one server-side script):
     * INCRBY key delta; when the key has no expiry yet (new window, or an
     * expiry lost), PEXPIRE key window_ms. Reply: integer = the count in this
     * window including this call, ttl_ms = what is left of the window.
     * Exact across threads and processes sharing the Redis server. */
    int (*kv_incr_window)(efn_req *r, efn_str key, int64_t delta, uint32_t window_ms,
                          efn_kv_cb cb, void *ud);
};

/* True when the host table has `field` (a host of an older minor may not). */
#define EFN_HOST_HAS(h, field)                                                                     \
    ((h)->size >= offsetof(struct efn_host, field) + sizeof((h)->field) && (h)->field != NULL)

/* Size of struct efn_host / efn_plugin in ABI 1.0: the minimum either side
 * accepts. */
#define EFN_HOST_SIZE_V1_0 (offsetof(struct efn_host, kv_incr_window) + sizeof(void (*)(void)))
#define EFN_PLUGIN_SIZE_V1_0 (offsetof(struct efn_plugin, on_response) + sizeof(void (*)(void)))

/* The plugin descriptor, exported as `const struct efn_plugin efn_plugin_v1`
 * (use EFN_PLUGIN below). Static, read-only; every pointer in it must stay
 * valid while the .so is loaded. */
struct efn_plugin {
    uint32_t abi_major, abi_minor, size; /* must stay first; EFN_PLUGIN fills them */
    const char *name;    /* the name used in `function NAME` */
    const char *version; /* build id, printed in logs and crash reports */

    /* Once per loaded build. `host` stays valid until fini returns. On
     * failure return non-zero with a message in err (NUL-terminated,
     * truncated to errlen); the conf is refused. May be NULL. */
    int (*init)(const struct efn_host *host, char *err, size_t errlen);
    void (*fini)(void); /* may be NULL */

    /* Builds an instance from args (see efn_arg; copy what you keep, with
     * malloc: this is not a request). *inst may stay NULL. Non-zero + err
     * refuses the conf, the message naming the argument. */
    int (*instance_new)(const efn_arg *args, size_t nargs, void **inst, char *err,
                        size_t errlen);
    void (*instance_free)(void *inst); /* may be NULL */

    efn_action (*on_request)(efn_req *r, void *inst);
    efn_action (*on_origin)(efn_req *r, void *inst);
    efn_action (*on_response)(efn_req *r, void *inst);
};

/* Declares the exported descriptor with designated initialisers:
 *     EFN_PLUGIN(.name = "hello", .version = "1", .on_request = hello_request);
 */
#define EFN_PLUGIN(...)                                                                            \
    EFN_EXPORT extern const struct efn_plugin efn_plugin_v1;                                       \
    EFN_EXPORT const struct efn_plugin efn_plugin_v1 = {                                           \
        .abi_major = EFN_ABI_MAJOR,                                                                \
        .abi_minor = EFN_ABI_MINOR,                                                                \
        .size = sizeof(struct efn_plugin),                                                         \
        __VA_ARGS__}

#endif /* EDGE_EFN_H */
