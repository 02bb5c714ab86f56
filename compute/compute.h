/*
 * compute — edge functions: loader (dlopen of function .so files), the KV
 * client plugins reach through the host table, and the conf directives.
 * The public header of the module for the proxy; plugins see only
 * compute/edgefn.h.
 *
 * HOW THE PROXY USES IT
 *
 *   start-up (main thread, before the first conf_load):
 *       compute_conf_register();                  registers the directives
 *       compute_set_host(&proxy_efn_host);        the real host table (else a
 *                                                 stub is used: fine for edge -t)
 *   conf load (conf_load / reload): the module's finish hooks load every
 *   `function` (copy to run dir, dlopen, version check, init — once per
 *   build) and build one instance per entry; any failure refuses the conf
 *   with "file:line:col: function 'NAME': reason". The conf release hook
 *   frees instances and unrefs builds (fini + dlclose at zero), so
 *   a request pinning its conf generation pins its functions too.
 *
 *   per request: compute_route_chain(route) gives the route's chain (NULL:
 *   no function on this route) — entries in conf order, each with its
 *   plugin descriptor, instance and KV prefix, plus the route's on_error and
 *   budgets. The proxy's host table implementation runs, per phase, each
 *   entry's hook (efn_plugin.on_request/on_origin/on_response) with
 *   entry->inst; on EFN_PAUSE it waits for the KV callbacks it issued for
 *   that entry (kv_op_* below with entry->kv_prefix, one struct kv_handle per
 *   request, kv_handle_set_timeout(h, budgets.kv_timeout_ms)), arming
 *   budgets.pause_timeout_ms; the first non-PAUSE callback action resumes;
 *   then kv_handle_cancel() before moving on if the action ends the chain,
 *   and always kv_handle_free() when the request ends. A route whose chain
 *   exists but that has neither 'origin' nor 'return' is valid (the module
 *   marks it handled); when every function of such a route continues, the
 *   proxy has nothing to forward to and answers by itself (its choice).
 *
 *   per worker thread: kv_client_new(worker_base, &compute_conf_main(conf)->redis)
 *   after the base exists; kv_client_free() at worker exit (after every
 *   request).
 *
 *   exit (main thread, after the last conf_unref): compute_conf_shutdown().
 *
 * Return conventions: int functions give 0 / negative (EFN_E_* for KV calls,
 * -1 + err text for the loader); pointer functions give NULL + err text.
 */
#ifndef EDGE_COMPUTE_H
#define EDGE_COMPUTE_H

#include "compute/edgefn.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct conf_route;
struct conf;
struct conf_pos;
struct conf_node;

#define COMPUTE_ERR_MAX 512

/* ---- loader ------------------------------------------------------------------------------- */

/* One loaded build of a function: a .so copied to `<run_dir>/<name>-<sha256>.so`
 * and dlopened from there (RTLD_NOW|RTLD_LOCAL), version-checked and
 * initialised once. Refcounted: owners are the conf generations holding
 * instances of it; the last unref calls fini and dlclose. */
struct compute_build;
/* The registry of loaded builds: main thread for loads; unref may come from
 * any thread (the one dropping the last conf ref); internally locked. */
struct compute_loader;

/* run_dir is created (mkdir -p) if needed. host must outlive the loader. */
struct compute_loader *compute_loader_new(const char *run_dir, const struct efn_host *host,
                                          char *err, size_t errlen);
/* Frees the registry; builds still referenced stay loaded until unref'd. */
void compute_loader_free(struct compute_loader *l);

/* Loads function_dir/NAME.so, or returns the already loaded build with the
 * same sha256 (a new ref, no second init). err: "function 'NAME': reason"
 * for a missing file, a dlopen failure, a missing efn_plugin_v1 symbol, an
 * ABI mismatch ("built for ABI 2.0, edge has 1.0"), a name mismatch or init
 * failing ("init failed: <plugin text>"). */
struct compute_build *compute_build_load(struct compute_loader *l, const char *function_dir,
                                         const char *name, char *err, size_t errlen);
struct compute_build *compute_build_ref(struct compute_build *b);
void compute_build_unref(struct compute_build *b);
const struct efn_plugin *compute_build_plugin(const struct compute_build *b);
const char *compute_build_sha256(const struct compute_build *b); /* 64 hex chars */
const char *compute_build_path(const struct compute_build *b);   /* the copy in run_dir */
unsigned compute_build_inits(const struct compute_build *b);     /* times init ran (1) */

/* plugin->instance_new with the error text prefixed "function 'NAME': ". */
int compute_instance_new(struct compute_build *b, const efn_arg *args, size_t nargs, void **inst,
                         char *err, size_t errlen);
void compute_instance_free(struct compute_build *b, void *inst);

/* The host table given to plugins' init. Set before the first conf load;
 * default: a stub whose request calls fail with EFN_E_PHASE (edge -t). */
void compute_set_host(const struct efn_host *host);
const struct efn_host *compute_host_stub(void);
const struct efn_host *compute_host_current(void); /* the one set, else the stub */


/* ---- KV client (Redis) -------------------------------------------------------------------- */

/* Where Redis is: `redis HOST:PORT [password=] [db=] [timeout=];` or
 * `redis unix:/path ...;` */
struct kv_conf {
    bool is_unix;
    char host[256]; /* TCP */
    uint16_t port;
    char path[108]; /* unix socket */
    char password[128]; /* "" = no AUTH */
    unsigned db;          /* SELECT when > 0 */
    uint64_t timeout_ms;  /* per op (kv_timeout); default 100 ms */
    uint64_t connect_timeout_ms; /* default 1 s */
    unsigned max_inflight; /* per request handle; default 8 */
};
void kv_conf_defaults(struct kv_conf *kc);
/* Field by field (a struct copy need not copy padding, so not memcmp). */
bool kv_conf_equal(const struct kv_conf *a, const struct kv_conf *b);

/* One per worker thread, on that worker's event_base: one hiredis async
 * connection, pipelined; connects at once and reconnects with backoff (50 ms
 * doubling to 2 s) whenever the connection fails or drops. Not thread-safe:
 * use only on the base's thread. */
struct kv_client;
struct kv_client *kv_client_new(struct event_base *base, const struct kv_conf *kc);
unsigned kv_client_handles(const struct kv_client *c); /* kv_handles not yet freed */
const struct kv_conf *kv_client_conf(const struct kv_client *c);

/* Counters of one client, written on its thread, readable from any (relaxed
 * atomics). lat: round trip issue -> reply, buckets kv_latency_bounds
 * (seconds) then +Inf. */
#define KV_LAT_BUCKETS 12
extern const double kv_latency_bounds[KV_LAT_BUCKETS];
struct kv_stats {
    _Atomic uint64_t calls;      /* ops sent */
    _Atomic uint64_t errors;     /* error replies, lost connection, not connected */
    _Atomic uint64_t timeouts;   /* no reply within the op's timeout */
    _Atomic uint64_t reconnects; /* successful connects (the first included) */
    _Atomic uint64_t lat[KV_LAT_BUCKETS + 1];
    _Atomic uint64_t lat_sum_us;
    _Atomic int up; /* connected now */
};
void kv_stats_read(const struct kv_stats *st, struct kv_stats *out);
/* Counts into st (owned by the caller, outliving the client) instead of the
 * client's own; NULL = back to its own. */
void kv_client_set_stats(struct kv_client *c, struct kv_stats *st);
/* Every kv_handle of it must be freed first. Pending replies are dropped. */
void kv_client_free(struct kv_client *c);
bool kv_client_connected(const struct kv_client *c);

/* One per request (or per caller): bounds the ops in flight and cancels
 * them all at once. */
struct kv_handle;
struct kv_handle *kv_handle_new(struct kv_client *c); /* NULL on OOM */
/* Drops every pending op of the handle: their callbacks are never called
 * (late replies are orphaned and discarded). The handle stays usable. */
void kv_handle_cancel(struct kv_handle *h);
void kv_handle_free(struct kv_handle *h); /* cancel + free; NULL ok */
/* Per-op timeout of the ops issued on this handle from now on (the route's
 * kv_timeout); 0 = the client's kv_conf.timeout_ms. */
void kv_handle_set_timeout(struct kv_handle *h, uint64_t timeout_ms);
unsigned kv_handle_pending(const struct kv_handle *h);

/* Called exactly once per op issued with EFN_OK and a callback, on the
 * client's thread, never inside the kv_op_* call and never after
 * kv_handle_cancel/free: status EFN_OK, EFN_E_NOTFOUND (GET nil),
 * EFN_E_TIMEOUT (no reply within timeout_ms: our own timer; the late reply
 * is dropped), EFN_E_KV (error reply, connection lost). rep is valid only
 * during the call. */
typedef void (*kv_cb)(void *ud, const efn_kv_reply *rep);

/* The key sent is prefix + key (prefix e.g. "efn:hello:default:"; the two
 * together at most 1024 bytes, else EFN_E_INVAL). Returns EFN_OK (issued),
 * EFN_E_LIMIT (max_inflight ops with a callback pending on this handle),
 * EFN_E_KV (not connected: fails fast while Redis is down), EFN_E_INVAL,
 * EFN_E_NOMEM. cb == NULL: fire-and-forget, not tied to the handle. */
int kv_op_get(struct kv_handle *h, efn_str prefix, efn_str key, kv_cb cb, void *ud);
int kv_op_set(struct kv_handle *h, efn_str prefix, efn_str key, efn_str val, uint32_t ttl_ms,
              kv_cb cb, void *ud);
int kv_op_incr(struct kv_handle *h, efn_str prefix, efn_str key, int64_t delta, kv_cb cb,
               void *ud);
int kv_op_del(struct kv_handle *h, efn_str prefix, efn_str key, kv_cb cb, void *ud);
int kv_op_expire(struct kv_handle *h, efn_str prefix, efn_str key, uint32_t ttl_ms, kv_cb cb,
                 void *ud);
/* SCAN cursor MATCH <prefix><match_prefix>* COUNT count (glob characters
 * escaped). cb gets EFN_OK with the next cursor ("0" at the end) and the
 * keys, whole (with prefix), valid during the call; or an error status with
 * no keys. Same handle rules as the other ops (cb is required). */
typedef void (*kv_scan_cb)(void *ud, int status, const char *cursor, const efn_str *keys,
                           size_t nkeys);
int kv_op_scan(struct kv_handle *h, efn_str prefix, efn_str match_prefix, const char *cursor,
               unsigned count, kv_scan_cb cb, void *ud);

/* Atomic fixed-window counter (one EVAL): INCRBY; PEXPIRE window_ms when the
 * key has no expiry; replies integer = count, ttl_ms = window left. */
int kv_op_incr_window(struct kv_handle *h, efn_str prefix, efn_str key, int64_t delta,
                      uint32_t window_ms, kv_cb cb, void *ud);

/* ---- conf directives ---------------------------------------------------------------------- */

/* MAIN (top level):
 *   redis HOST:PORT [password=P] [db=N] [timeout=D];    HOST: name, IPv4 or [IPv6]
 *   redis unix:/path [password=P] [db=N] [timeout=D];
 *       where the KV lives (default 127.0.0.1:6379, db 0, no AUTH). timeout=
 *       bounds connecting + AUTH/SELECT (default 1s); the per-op timeout is
 *       kv_timeout below.
 *   function_dir PATH;       where `function NAME` finds NAME.so (default:
 *                            "functions" beside the edge binary when it
 *                            exists, e.g. build/functions; else build/functions)
 *   function_run_dir PATH;   where the loader copies the .so files (default
 *                            var/run/efn; created when missing, at the first
 *                            route that has a function)
 *       Relative paths resolve against the process's working directory at
 *       conf load (not the conf file's directory).
 * MAIN or ROUTE (a route inherits each one it does not set from MAIN):
 *   function_cpu_budget D;     CPU time per hook/callback       1ms-200ms, default 5ms
 *   kv_timeout D;              per KV op                        1ms-60s,   default 50ms
 *   function_pause_timeout D;  a whole EFN_PAUSE                1ms-5m,    default 1s
 *   function_arena_max SIZE;   request arena cap                1k-256m,   default 64k
 *   function_body_max SIZE;    body a function may buffer       0-1g,      default 1m
 *   function_breaker_threshold N;  over-budget calls that open     1-1000,    default 5
 *   function_breaker_window D;     ... counted within this window  1s-1h,     default 10s
 *   function_breaker_cooldown D;   the breaker stays open this long 100ms-1h, default 30s
 *       While an entry's breaker is open its hooks are not called: the route
 *       follows on_error as if the function had failed.
 * MAIN:
 *   function_quarantine_crashes N;  engine crashes while one build     1-100, default 3
 *   function_quarantine_window D;   ... runs, within this window,     1s-1d, default 60s
 *       quarantine that build until the next reload (its routes follow on_error)
 * MAIN or ROUTE:
 *   function_cpu_hard_limit D;     one call using more CPU than this 10ms-10s, default 200ms
 *       is stopped by the engine's watchdog: the engine aborts, the
 *       supervisor restarts it and counts a crash against the function.
 * ROUTE:
 *   function NAME [key=value | word ...];   repeatable: the chain, in order
 *   on_error open|closed;      default closed
 *   kv_namespace NAME;         the KV instance id of the route's functions
 *
 * Loading: at conf load each `function` is loaded (compute_build_load from
 * function_dir; an unchanged build is shared with the previous generation,
 * no second init) and gets its instance (instance_new with its arguments);
 * any failure refuses the conf with "file:line:col: function 'NAME': reason"
 * at the directive, or at the argument the plugin's message names. A route
 * with a function needs no 'origin' or 'return'.
 *
 * KV namespace: entry->kv_prefix = "efn:<function>:<id>:" where <id> is
 *   1. the entry's `instance=ID` argument (taken by the host, never passed to
 *      the plugin), else
 *   2. the route's `kv_namespace ID;`, else
 *   3. the route itself: its site's first host name, the match type
 *      ("", "=", "~", "~*", "^~") and the pattern, with '%', ':' and bytes
 *      outside 0x21-0x7e %-escaped (long ones cut and suffixed with a hash),
 *      plus "#N" for the N-th (N >= 2) entry of the same function in the
 *      chain: e.g. "efn:rate_limit:example.com/api:".
 *   IDs given in conf are 1-64 of A-Z a-z 0-9 _ . - , so they never collide
 *   with route ids (which always hold '/', '=', '~' or '^'). So two
 *   rate_limit entries share counters only when they name the same id, and
 *   counters survive reloads as long as the route keeps its host and pattern.
 *
 * Threads: compute_conf_register, conf loads and compute_conf_shutdown on the
 * main thread; the release hook (instance_free, build unref, fini + dlclose at
 * zero) runs wherever the last conf_unref happens, a worker thread included.
 */

#define COMPUTE_ID_MAX 64 /* instance= and kv_namespace */

/* Registers the module's directives with conf/. Call before the first
 * conf_load; idempotent. 0, or -1 when conf/ refused the table. */
int compute_conf_register(void);
/* Frees the loader registry kept between conf loads. Builds still held by
 * live confs stay loaded until those are released. Main thread; the next
 * conf load with functions starts a new registry. */
void compute_conf_shutdown(void);

enum compute_on_error {
    COMPUTE_ON_ERROR_CLOSED = 0, /* a failing function answers 500 (503 for KV/timeouts) */
    COMPUTE_ON_ERROR_OPEN = 1,   /* go on as if the function had returned EFN_CONTINUE */
};

struct compute_budgets {
    uint64_t cpu_ms;           /* function_cpu_budget    */
    uint64_t kv_timeout_ms;    /* kv_timeout             */
    uint64_t pause_timeout_ms; /* function_pause_timeout */
    uint64_t arena_max;        /* function_arena_max, bytes */
    uint64_t body_max;         /* function_body_max, bytes; 0 = bodies not buffered */
    uint64_t breaker_threshold;   /* function_breaker_threshold: over-budget calls ...  */
    uint64_t breaker_window_ms;   /* function_breaker_window: ... within this window ...  */
    uint64_t breaker_cooldown_ms; /* function_breaker_cooldown: ... open it this long */
    uint64_t cpu_hard_ms;         /* function_cpu_hard_limit: one call past it kills the engine */
    uint64_t quarantine_crashes;  /* MAIN only: function_quarantine_crashes ... */
    uint64_t quarantine_window_ms; /* ... within function_quarantine_window quarantine a build */
};

/* CPU time per hook/callback, buckets in seconds then +Inf. */
#define COMPUTE_CPU_BUCKETS 10
extern const double compute_cpu_bounds[COMPUTE_CPU_BUCKETS];

/* Host-side live state of one entry, shared by the workers (relaxed
 * atomics): counters for /metrics and the CPU breaker. Lives as long as the
 * entry's conf generation, so a reload starts it afresh. */
struct compute_entry_live {
    _Atomic uint64_t calls;        /* hooks and KV callbacks run */
    _Atomic uint64_t errors;       /* EFN_ERROR, bad DONE, pause failures */
    _Atomic uint64_t pauses;       /* EFN_PAUSE taken */
    _Atomic uint64_t over_budget;  /* calls over function_cpu_budget */
    _Atomic uint64_t breaker_opens;
    _Atomic uint64_t cpu_ns;       /* total */
    _Atomic uint64_t cpu_hist[COMPUTE_CPU_BUCKETS + 1];
    _Atomic uint64_t window_start_ms; /* breaker: current counting window */
    _Atomic uint64_t window_over;     /* over-budget calls in it */
    _Atomic uint64_t open_until_ms;   /* breaker open until (monotonic ms), 0 = closed */
};

/* One `function` of a route's chain. Everything lives as long as the conf
 * generation (owner of the instance and of one build ref). */
struct compute_entry {
    const char *name;                 /* as in `function NAME` */
    const struct efn_plugin *plugin;  /* the build's descriptor */
    void *inst;                       /* from instance_new; may be NULL */
    efn_str kv_prefix;                /* "efn:<name>:<id>:" (also NUL-terminated) */
    const efn_arg *args;              /* as given to instance_new: instance= removed */
    size_t nargs;
    const struct conf_pos *pos;       /* of the directive, for logs */
    struct compute_build *build;      /* one ref, dropped by the conf release hook */
    const struct conf_node *_node;
    const char *_instance;            /* instance= value or NULL */
    struct compute_entry_live *live;  /* never NULL once loaded */
};

/* The route's data (route->mod[module index]). */
struct compute_route {
    struct compute_entry *entries; /* conf order */
    size_t nentries;
    enum compute_on_error on_error;
    struct compute_budgets budgets; /* inherited from MAIN where not set */
    const char *kv_namespace;       /* NULL unless set */
    unsigned _set;                  /* budgets set in the route */
};

/* The MAIN data (conf->mod[module index]). */
struct compute_main {
    struct kv_conf redis; /* timeout_ms = the MAIN kv_timeout */
    bool redis_set;       /* a 'redis' directive was given */
    const char *function_dir;
    const char *run_dir;
    struct compute_budgets budgets;
    const struct conf_node *_run_dir_node;
};

/* The route's chain, NULL when the route has no function (or the module is
 * not registered). Thread-safe (read-only). */
const struct compute_route *compute_route_chain(const struct conf_route *r);
/* The MAIN data, NULL when the module is not registered. Never NULL for a
 * conf loaded after compute_conf_register. */
const struct compute_main *compute_conf_main(const struct conf *c);

#endif /* EDGE_COMPUTE_H */
