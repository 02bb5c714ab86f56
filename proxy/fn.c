/*
 * Edge functions on the request path. compute/ loads the plugins and builds
 * each route's chain; this file runs them:
 *
 *   the host table   (struct efn_host) plugins call, over a proxy_req: request
 *                    line, header edits as an overlay on the parsed head (or on
 *                    the response's headers), routing overrides, respond(),
 *                    the request arena, per-entry slots, KV through the
 *                    worker's kv_client;
 *   the phases       REQUEST (before the cache), ORIGIN (before the origin
 *                    fetch), RESPONSE (before the head goes out), each a run
 *                    of the chain's hooks that may PAUSE on KV and resumes
 *                    from the KV callbacks, bounded by function_pause_timeout;
 *   containment      CPU time of every call (thread CPU clock) against
 *                    function_cpu_budget with a per-entry breaker; a crash
 *                    marker per worker in memory shared with the supervisor,
 *                    which quarantines a function that keeps crashing the
 *                    engine (see proxy_fn_after_crash).
 *
 * Everything here runs on the worker that owns the request, except the
 * crash bookkeeping (supervisor) and the signal handler.
 */
#include "proxy/internal.h"

#include "compute/compute.h"

#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#define FX_MAGIC 0x45666e52u /* "EfnR" */
#define FX_CHUNK 4096

struct fx_chunk {
    struct fx_chunk *next;
    size_t cap, used;
    max_align_t data[];
};

enum fx_op { ED_DEL, ED_SET, ED_ADD };

struct fx_edit {
    enum fx_op op;
    const char *name;
    size_t nlen;
    const char *value;
    size_t vlen;
};

struct fx_edits {
    struct fx_edit *v;
    size_t n, cap;
};

/* One KV op issued with a callback. */
struct fx_kvop {
    struct efn_req *fx;
    size_t entry;
    unsigned pause_seq;
    efn_kv_cb cb;
    void *ud;
};

struct efn_req {
    uint32_t magic;
    struct proxy_req *r;
    struct proxy_worker *w;
    const struct compute_route *chain;
    struct kv_handle *kv;
    struct event *timer; /* pause timeout */
    enum proxy_fx_phase phase;
    size_t idx;       /* entry running, or paused */
    size_t cur;       /* entry whose hook or callback is running (slot, kv prefix) */
    bool in_call;     /* a hook or callback of this request is running */
    bool paused;
    bool kv_failed;   /* the current entry saw a KV error or timeout: a failure is a 503 */
    unsigned pause_seq;
    proxy_fx_cont cont;
    void **slots;
    struct fx_chunk *arena;
    size_t arena_used; /* plugin bytes, against function_arena_max */
    struct fx_edits ed[2]; /* [EFN_MSG_REQ], [EFN_MSG_RESP] */
    /* RESPONSE phase: the headers the edits apply to */
    int resp_status;
    bool (*resp_next)(void *ctx, size_t *pos, struct proxy_hdr *out);
    void *resp_ctx;
    /* respond() */
    int ans_status;
    struct proxy_hdr *ans_h;
    size_t ans_nh;
    const char *ans_body;
    size_t ans_len;
    /* a failure with on_error closed */
    int fail_status;
    char fail_why[160];
    /* overrides */
    const struct conf_origin *origin;
    const char *cache_key;
    size_t cache_key_len;
    int64_t cache_ttl; /* -1: not set */
    struct cache_route cr;
};

/* ---- crash markers and quarantine -------------------------------------------------------------- */

struct proxy_fn_shared *proxy_fn_shm;
static __thread int fn_worker_slot = -1;

#define QUARANTINE_MAX 32

/* The supervisor's list, inherited by each engine it forks. */
static struct {
    char name[64];
    char sha[20];
} quarantine[QUARANTINE_MAX];
static size_t nquarantine;

static struct {
    char name[64];
    char sha[20];
    uint64_t first_ms;
    unsigned count;
} crashes[QUARANTINE_MAX];
static size_t ncrashes;

int
proxy_fn_shared_init(void)
{
    void *p = mmap(NULL, sizeof(*proxy_fn_shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        return -1;
    proxy_fn_shm = p;
    return 0;
}

void
proxy_fn_worker_slot(unsigned id)
{
    fn_worker_slot = id < PROXY_FN_SLOTS ? (int)id : -1;
}

/* The CPU watchdog (FUNCTIONS.md: C cannot be preempted, so a call past the
 * hard limit takes the engine down and the supervisor's crash accounting
 * does the rest): a per-worker timer on the thread's CPU clock ticks every
 * WD_TICK_MS of CPU the worker uses; the tick checks the call in progress. */
#define WD_TICK_MS 50
static __thread volatile sig_atomic_t wd_in_call;
static __thread volatile uint64_t wd_start_ns, wd_limit_ns;
static __thread const char *volatile wd_name;

static void
wd_write(const char *s)
{
    ssize_t rc = write(2, s, strlen(s));
    (void)rc;
}

static void
watchdog_handler(int sig)
{
    struct timespec ts;
    uint64_t now;

    (void)sig;
    if (!wd_in_call)
        return;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (now - wd_start_ns <= wd_limit_ns)
        return;
    if (proxy_fn_shm != NULL && fn_worker_slot >= 0)
        atomic_store(&proxy_fn_shm->faulting, fn_worker_slot + 1);
    wd_write("edge: watchdog: function '");
    wd_write(wd_name != NULL ? wd_name : "?");
    wd_write("' ran past function_cpu_hard_limit; aborting the engine\n");
    abort();
}

void
proxy_fn_worker_watchdog(void)
{
    struct sigevent sev;
    struct itimerspec its = {{0, WD_TICK_MS * 1000000L}, {0, WD_TICK_MS * 1000000L}};
    timer_t t;

    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGXCPU;
    sev._sigev_un._tid = (pid_t)gettid();
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &t) != 0 || timer_settime(t, 0, &its, NULL) != 0)
        log_warn("functions: no CPU watchdog on this worker (timer_create failed)");
}

static void
fault_handler(int sig)
{
    if (proxy_fn_shm != NULL && fn_worker_slot >= 0)
        atomic_store(&proxy_fn_shm->faulting, fn_worker_slot + 1);
    raise(sig); /* SA_RESETHAND: the default action now */
}

void
proxy_fn_install_fault_handler(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fault_handler;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = watchdog_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGXCPU, &sa, NULL);
}

static void
mark_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static const char *const phase_names[] = {"on_request", "on_origin", "on_response"};

static inline void
mark_enter(const struct compute_entry *e, enum proxy_fx_phase ph)
{
    struct proxy_fn_mark *m;

    if (proxy_fn_shm == NULL || fn_worker_slot < 0)
        return;
    m = &proxy_fn_shm->w[fn_worker_slot];
    if (m->entry != (const void *)e) {
        mark_copy(m->name, sizeof(m->name), e->name);
        mark_copy(m->sha, sizeof(m->sha), compute_build_sha256(e->build));
        mark_copy(m->where, sizeof(m->where), e->kv_prefix.ptr);
        m->entry = e;
    }
    m->phase = (int)ph;
    atomic_store_explicit(&m->busy, 1, memory_order_release);
}

static inline void
mark_leave(void)
{
    if (proxy_fn_shm != NULL && fn_worker_slot >= 0)
        atomic_store_explicit(&proxy_fn_shm->w[fn_worker_slot].busy, 0, memory_order_release);
}

static bool
quarantined(const struct compute_entry *e)
{
    if (nquarantine == 0)
        return false;
    const char *sha = compute_build_sha256(e->build);
    for (size_t i = 0; i < nquarantine; i++)
        if (strcmp(quarantine[i].name, e->name) == 0 && strncmp(quarantine[i].sha, sha, 16) == 0)
            return true;
    return false;
}

void
proxy_fn_quarantine_clear(void)
{
    if (nquarantine > 0)
        log_info("functions: %zu quarantined function(s) released by the reload", nquarantine);
    nquarantine = 0;
    ncrashes = 0;
}

static void
crash_count(const struct proxy_fn_mark *m, uint64_t now, unsigned threshold, uint64_t window_ms)
{
    size_t i;

    for (i = 0; i < ncrashes; i++)
        if (strcmp(crashes[i].name, m->name) == 0 && strcmp(crashes[i].sha, m->sha) == 0)
            break;
    if (i == ncrashes) {
        if (ncrashes == QUARANTINE_MAX)
            i = 0; /* forget the oldest slot rather than stop counting */
        else
            ncrashes++;
        mark_copy(crashes[i].name, sizeof(crashes[i].name), m->name);
        mark_copy(crashes[i].sha, sizeof(crashes[i].sha), m->sha);
        crashes[i].count = 0;
        crashes[i].first_ms = now;
    }
    if (now - crashes[i].first_ms > window_ms) {
        crashes[i].count = 0;
        crashes[i].first_ms = now;
    }
    crashes[i].count++;
    log_err("engine crashed while running function '%s' (build %.16s, %s, %s): crash %u of %d "
            "within %d s",
            m->name, m->sha, m->where, phase_names[m->phase % 3], crashes[i].count, threshold,
            (int)(window_ms / 1000));
    if (crashes[i].count >= threshold && nquarantine < QUARANTINE_MAX) {
        mark_copy(quarantine[nquarantine].name, sizeof(quarantine[0].name), m->name);
        mark_copy(quarantine[nquarantine].sha, sizeof(quarantine[0].sha), m->sha);
        nquarantine++;
        crashes[i].count = 0;
        log_err("function '%s' (build %.16s) is quarantined until the next reload: its routes "
                "follow on_error",
                m->name, m->sha);
    }
}

/* Supervisor, after the engine died: which function was running? The
 * faulting thread's marker when the signal handler ran, else every busy one. */
void
proxy_fn_after_crash(const struct conf *c)
{
    const struct compute_main *cm = compute_conf_main(c);
    unsigned threshold = cm != NULL ? (unsigned)cm->budgets.quarantine_crashes : 3;
    uint64_t window_ms = cm != NULL ? cm->budgets.quarantine_window_ms : 60000;
    uint64_t now = proxy_now_ms();
    int f;

    if (proxy_fn_shm == NULL)
        return;
    f = atomic_load(&proxy_fn_shm->faulting);
    if (f > 0 && f <= PROXY_FN_SLOTS && atomic_load(&proxy_fn_shm->w[f - 1].busy)) {
        crash_count(&proxy_fn_shm->w[f - 1], now, threshold, window_ms);
    } else {
        for (size_t i = 0; i < PROXY_FN_SLOTS; i++)
            if (atomic_load(&proxy_fn_shm->w[i].busy))
                crash_count(&proxy_fn_shm->w[i], now, threshold, window_ms);
    }
    memset(proxy_fn_shm, 0, sizeof(*proxy_fn_shm));
}

/* ---- arena ------------------------------------------------------------------------------------- */

static void *
arena_alloc(struct efn_req *fx, size_t n)
{
    struct fx_chunk *c = fx->arena;
    size_t need = (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);

    if (need == 0)
        need = _Alignof(max_align_t);
    if (c == NULL || c->cap - c->used < need) {
        size_t cap = need > FX_CHUNK ? need : FX_CHUNK;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = fx->arena;
        fx->arena = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += need;
    return p;
}

static char *
arena_dup(struct efn_req *fx, const char *s, size_t n)
{
    char *p = arena_alloc(fx, n + 1);
    if (p == NULL)
        return NULL;
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- lifecycle --------------------------------------------------------------------------------- */

static void pause_timeout_cb(evutil_socket_t fd, short what, void *arg);

int
proxy_fx_new(struct proxy_req *r, const struct compute_route *chain)
{
    struct efn_req *fx = calloc(1, sizeof(*fx));

    if (fx == NULL)
        return -1;
    fx->magic = FX_MAGIC;
    fx->r = r;
    fx->w = r->w;
    fx->chain = chain;
    fx->cache_ttl = -1;
    fx->slots = calloc(chain->nentries, sizeof(*fx->slots));
    fx->timer = evtimer_new(fx->w->base, pause_timeout_cb, fx);
    if (fx->slots == NULL || fx->timer == NULL) {
        free(fx->slots);
        if (fx->timer != NULL)
            event_free(fx->timer);
        free(fx);
        return -1;
    }
    r->fx = fx;
    return 0;
}

void
proxy_fx_free(struct proxy_req *r)
{
    struct efn_req *fx = r->fx;

    if (fx == NULL)
        return;
    BUG_ON(fx->magic != FX_MAGIC || fx->in_call);
    r->fx = NULL;
    kv_handle_free(fx->kv); /* no callback of this request runs after this */
    event_free(fx->timer);
    while (fx->arena != NULL) {
        struct fx_chunk *c = fx->arena;
        fx->arena = c->next;
        free(c);
    }
    free(fx->ed[0].v);
    free(fx->ed[1].v);
    free(fx->slots);
    fx->magic = PROXY_DEAD_MAGIC;
    free(fx);
}

bool
proxy_fx_has_phase(const struct proxy_req *r, enum proxy_fx_phase ph)
{
    const struct efn_req *fx = r->fx;
    if (fx == NULL)
        return false;
    for (size_t i = 0; i < fx->chain->nentries; i++) {
        const struct efn_plugin *p = fx->chain->entries[i].plugin;
        if ((ph == FX_REQUEST && p->on_request) || (ph == FX_ORIGIN && p->on_origin) ||
            (ph == FX_RESPONSE && p->on_response))
            return true;
    }
    return false;
}

/* ---- header edits ------------------------------------------------------------------------------ */

static bool
name_eq(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && strncasecmp(a, b, al) == 0;
}

/* A base header named `name` is hidden by a DEL or SET of that name. */
static bool
edits_hide(const struct fx_edits *ed, const char *name, size_t nlen)
{
    for (size_t i = 0; i < ed->n; i++)
        if (ed->v[i].op != ED_ADD && name_eq(ed->v[i].name, ed->v[i].nlen, name, nlen))
            return true;
    return false;
}

/* The *pos-th edit from *pos on that adds a value still alive (no DEL/SET
 * of its name after it). */
static bool
edits_next_added(const struct fx_edits *ed, size_t *pos, struct proxy_hdr *out)
{
    for (size_t i = *pos; i < ed->n; i++) {
        const struct fx_edit *e = &ed->v[i];
        bool alive = e->op != ED_DEL;
        for (size_t j = i + 1; alive && j < ed->n; j++)
            if (ed->v[j].op != ED_ADD && name_eq(ed->v[j].name, ed->v[j].nlen, e->name, e->nlen))
                alive = false;
        if (alive) {
            out->name = e->name;
            out->nlen = e->nlen;
            out->value = e->value;
            out->vlen = e->vlen;
            *pos = i + 1;
            return true;
        }
    }
    *pos = ed->n;
    return false;
}

bool
proxy_fx_hides(const struct proxy_req *r, int msg, const char *name, size_t nlen)
{
    return r->fx != NULL && r->fx->ed[msg].n > 0 && edits_hide(&r->fx->ed[msg], name, nlen);
}

bool
proxy_fx_next_added(const struct proxy_req *r, int msg, size_t *pos, struct proxy_hdr *out)
{
    return r->fx != NULL && edits_next_added(&r->fx->ed[msg], pos, out);
}

bool
proxy_fx_edited(const struct proxy_req *r, int msg)
{
    return r->fx != NULL && r->fx->ed[msg].n > 0;
}

static int
edits_push(struct efn_req *fx, int msg, enum fx_op op, efn_str name, efn_str value)
{
    struct fx_edits *ed = &fx->ed[msg];
    struct fx_edit *e;

    if (ed->n == ed->cap) {
        size_t cap = ed->cap ? ed->cap * 2 : 8;
        void *p;
        if (cap > 1024)
            return EFN_E_LIMIT;
        p = realloc(ed->v, cap * sizeof(*ed->v));
        if (p == NULL)
            return EFN_E_NOMEM;
        ed->v = p;
        ed->cap = cap;
    }
    e = &ed->v[ed->n];
    e->op = op;
    e->name = arena_dup(fx, name.ptr, name.len);
    e->nlen = name.len;
    e->value = op == ED_DEL ? "" : arena_dup(fx, value.ptr, value.len);
    e->vlen = op == ED_DEL ? 0 : value.len;
    if (e->name == NULL || e->value == NULL)
        return EFN_E_NOMEM;
    ed->n++;
    return EFN_OK;
}

/* ---- the host table ---------------------------------------------------------------------------- */

static struct efn_req *
fx_of(efn_req *q)
{
    if (q == NULL || q->magic != FX_MAGIC)
        return NULL;
    if (!q->in_call) {
        static struct proxy_log_rl rl;
        uint64_t dropped;
        if (proxy_log_rl_pass(&rl, 10000, &dropped))
            log_warn("functions: a host call outside the request's hooks was refused");
        return NULL;
    }
    return q;
}

static const struct compute_entry *
cur_entry(const struct efn_req *fx)
{
    return &fx->chain->entries[fx->cur];
}

static __thread const char *log_fn_name; /* the running function, for r == NULL logs */

static void __attribute__((format(printf, 3, 4)))
h_log(efn_req *q, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    int lvl;
    struct efn_req *fx = (q != NULL && q->magic == FX_MAGIC) ? q : NULL;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    switch (level) {
    case EFN_LOG_ERR: lvl = LOG_LVL_ERR; break;
    case EFN_LOG_WARN: lvl = LOG_LVL_WARN; break;
    case EFN_LOG_INFO: lvl = LOG_LVL_INFO; break;
    default: lvl = LOG_LVL_DEBUG; break;
    }
    if (lvl > proxy_log_level())
        return;
    if (fx != NULL)
        proxy_log(lvl, "function '%s' [%s]: %s", cur_entry(fx)->name, fx->r->request_id, msg);
    else if (log_fn_name != NULL)
        proxy_log(lvl, "function '%s': %s", log_fn_name, msg);
    else
        proxy_log(lvl, "functions: %s", msg); /* the loader, or a plugin's init/fini */
}

static efn_str
h_method(efn_req *q)
{
    struct efn_req *fx = fx_of(q);
    if (fx == NULL)
        return (efn_str){"", 0};
    return (efn_str){fx->r->method_name, strlen(fx->r->method_name)};
}

static efn_str
h_path(efn_req *q)
{
    struct efn_req *fx = fx_of(q);
    if (fx == NULL)
        return (efn_str){"", 0};
    struct proxy_req *r = fx->r;
    return (efn_str){r->path, (size_t)(r->target + r->target_len - r->path)};
}

static efn_str
h_authority(efn_req *q)
{
    struct efn_req *fx = fx_of(q);
    if (fx == NULL)
        return (efn_str){"", 0};
    return (efn_str){fx->r->authority, strlen(fx->r->authority)};
}

static efn_str
h_client_ip(efn_req *q)
{
    struct efn_req *fx = fx_of(q);
    if (fx == NULL)
        return (efn_str){"", 0};
    return (efn_str){fx->r->peer, strlen(fx->r->peer)};
}

static int
h_status(efn_req *q)
{
    struct efn_req *fx = fx_of(q);
    return fx != NULL && fx->phase == FX_RESPONSE ? fx->resp_status : 0;
}

static bool
name_ok(efn_str s)
{
    if (s.len == 0 || s.ptr == NULL || s.len > 256)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch <= ' ' || ch >= 0x7f || ch == ':' || ch == '(' || ch == ')' || ch == ',' ||
            ch == '/' || ch == ';' || ch == '<' || ch == '=' || ch == '>' || ch == '?' ||
            ch == '@' || ch == '[' || ch == '\\' || ch == ']' || ch == '{' || ch == '}' ||
            ch == '"')
            return false;
    }
    return true;
}

static bool
value_ok(efn_str s)
{
    if (s.len > 16384 || (s.len > 0 && s.ptr == NULL))
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] == '\r' || s.ptr[i] == '\n' || s.ptr[i] == '\0')
            return false;
    return true;
}

/* Framing and hop-by-hop fields are the proxy's: a function may not edit them. */
static bool
name_reserved(efn_str s)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "connection",
                                        "keep-alive",     "te",                "trailer",
                                        "upgrade",        "proxy-connection",  "host",
                                        "x-client-cert-subject", /* only a verified handshake */
                                        NULL};
    for (size_t i = 0; names[i] != NULL; i++)
        if (name_eq(s.ptr, s.len, names[i], strlen(names[i])))
            return true;
    return false;
}

static int
msg_ok(const struct efn_req *fx, efn_msg m, bool write)
{
    if (m != EFN_MSG_REQ && m != EFN_MSG_RESP)
        return EFN_E_INVAL;
    if (m == EFN_MSG_RESP && fx->phase != FX_RESPONSE)
        return EFN_E_PHASE;
    if (m == EFN_MSG_REQ && write && fx->phase == FX_RESPONSE)
        return EFN_E_PHASE; /* the request has left */
    return EFN_OK;
}

/* The request's headers as a function sees them: the client's, minus any
 * X-Client-Cert-Subject it sent, plus the verified client certificate's
 * subject under that name when the TLS handshake checked one for this site
 * (what the origin gets too). */
static bool
base_next(struct efn_req *fx, efn_msg m, size_t *pos, struct proxy_hdr *out)
{
    if (m == EFN_MSG_REQ) {
        size_t n = fx->r->head->n;
        while (*pos < n) {
            if (!proxy_head_get(fx->r->head, (*pos)++, out))
                return false;
            if (!proxy_hdr_is(out, "x-client-cert-subject"))
                return true;
        }
        if (*pos == n) {
            const char *subj = proxy_tls_client_subject(fx->r);
            (*pos)++;
            if (subj != NULL) {
                out->name = "X-Client-Cert-Subject";
                out->nlen = 21;
                out->value = subj;
                out->vlen = strlen(subj);
                return true;
            }
        }
        return false;
    }
    return fx->resp_next != NULL && fx->resp_next(fx->resp_ctx, pos, out);
}

static int
h_hdr_get(efn_req *q, efn_msg m, efn_str name, size_t idx, efn_str *out)
{
    struct efn_req *fx = fx_of(q);
    struct proxy_hdr h;
    size_t pos = 0;
    int rc;

    if (fx == NULL || out == NULL || name.ptr == NULL)
        return EFN_E_INVAL;
    if ((rc = msg_ok(fx, m, false)) != EFN_OK)
        return rc;
    if (!edits_hide(&fx->ed[m], name.ptr, name.len)) {
        while (base_next(fx, m, &pos, &h)) {
            if (name_eq(h.name, h.nlen, name.ptr, name.len) && idx-- == 0) {
                *out = (efn_str){h.value, h.vlen};
                return EFN_OK;
            }
        }
    }
    pos = 0;
    while (edits_next_added(&fx->ed[m], &pos, &h)) {
        if (name_eq(h.name, h.nlen, name.ptr, name.len) && idx-- == 0) {
            *out = (efn_str){h.value, h.vlen};
            return EFN_OK;
        }
    }
    return EFN_E_NOTFOUND;
}

static int
hdr_edit(efn_req *q, efn_msg m, enum fx_op op, efn_str name, efn_str value)
{
    struct efn_req *fx = fx_of(q);
    int rc;

    if (fx == NULL)
        return EFN_E_INVAL;
    if ((rc = msg_ok(fx, m, true)) != EFN_OK)
        return rc;
    if (!name_ok(name) || name_reserved(name) || (op != ED_DEL && !value_ok(value)))
        return EFN_E_INVAL;
    return edits_push(fx, m, op, name, value);
}

static int
h_hdr_set(efn_req *q, efn_msg m, efn_str name, efn_str value)
{
    return hdr_edit(q, m, ED_SET, name, value);
}

static int
h_hdr_add(efn_req *q, efn_msg m, efn_str name, efn_str value)
{
    return hdr_edit(q, m, ED_ADD, name, value);
}

static int
h_hdr_del(efn_req *q, efn_msg m, efn_str name)
{
    return hdr_edit(q, m, ED_DEL, name, (efn_str){"", 0});
}

static int
h_set_path(efn_req *q, efn_str p)
{
    struct efn_req *fx = fx_of(q);
    struct proxy_req *r;
    char *s;
    const char *qm;

    if (fx == NULL)
        return EFN_E_INVAL;
    if (fx->phase == FX_RESPONSE)
        return EFN_E_PHASE;
    if (p.len == 0 || p.ptr == NULL || p.ptr[0] != '/' || p.len > 8192)
        return EFN_E_INVAL;
    for (size_t i = 0; i < p.len; i++)
        if ((unsigned char)p.ptr[i] <= ' ' || (unsigned char)p.ptr[i] == 0x7f)
            return EFN_E_INVAL;
    if ((s = arena_dup(fx, p.ptr, p.len)) == NULL)
        return EFN_E_NOMEM;
    r = fx->r;
    r->target = r->path = s;
    r->target_len = p.len;
    qm = memchr(s, '?', p.len);
    r->path_len = qm ? (size_t)(qm - s) : p.len;
    r->query = qm ? qm + 1 : NULL;
    r->query_len = qm ? p.len - r->path_len - 1 : 0;
    return EFN_OK;
}

static int
h_set_authority(efn_req *q, efn_str a)
{
    struct efn_req *fx = fx_of(q);

    if (fx == NULL)
        return EFN_E_INVAL;
    if (fx->phase == FX_RESPONSE)
        return EFN_E_PHASE;
    if (a.len == 0 || a.ptr == NULL || a.len >= sizeof(fx->r->authority))
        return EFN_E_INVAL;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char ch = (unsigned char)a.ptr[i];
        if (ch <= ' ' || ch >= 0x7f || ch == '/' || ch == '?' || ch == '#' || ch == '@')
            return EFN_E_INVAL;
    }
    memcpy(fx->r->authority, a.ptr, a.len);
    fx->r->authority[a.len] = '\0';
    return EFN_OK;
}

static int
h_set_origin(efn_req *q, efn_str name)
{
    struct efn_req *fx = fx_of(q);
    const struct conf *c;

    if (fx == NULL)
        return EFN_E_INVAL;
    if (fx->phase == FX_RESPONSE)
        return EFN_E_PHASE;
    c = fx->r->conf;
    for (size_t i = 0; i < c->norigins; i++) {
        if (strlen(c->origins[i].name) == name.len &&
            memcmp(c->origins[i].name, name.ptr, name.len) == 0) {
            fx->origin = &c->origins[i];
            if (fx->phase == FX_ORIGIN)
                fx->r->origin = fx->origin;
            return EFN_OK;
        }
    }
    return EFN_E_NOTFOUND;
}

static int
h_set_cache_key(efn_req *q, efn_str key)
{
    struct efn_req *fx = fx_of(q);

    if (fx == NULL)
        return EFN_E_INVAL;
    if (fx->phase != FX_REQUEST)
        return EFN_E_PHASE;
    if (key.len == 0 || key.ptr == NULL || key.len >= CACHE_KEY_MAX)
        return EFN_E_INVAL;
    if ((fx->cache_key = arena_dup(fx, key.ptr, key.len)) == NULL)
        return EFN_E_NOMEM;
    fx->cache_key_len = key.len;
    return EFN_OK;
}

static void
apply_ttl(struct efn_req *fx)
{
    struct proxy_req *r = fx->r;
    if (fx->cache_ttl < 0 || r->cache_route == NULL)
        return;
    if (r->cache_route != &fx->cr) {
        fx->cr = *r->cache_route;
        r->cache_route = &fx->cr;
    }
    fx->cr.ttl_force = fx->cache_ttl;
}

static int
h_set_cache_ttl(efn_req *q, int32_t secs)
{
    struct efn_req *fx = fx_of(q);

    if (fx == NULL || secs < 0)
        return EFN_E_INVAL;
    if (fx->phase == FX_RESPONSE)
        return EFN_E_PHASE;
    fx->cache_ttl = secs;
    apply_ttl(fx);
    return EFN_OK;
}

/* Request bodies up to function_body_max (with a Content-Length) are read
 * whole before the REQUEST phase, so REQUEST and ORIGIN hooks see them;
 * others stream and are not visible (EFN_E_LIMIT), nor are response bodies. */
static bool
req_body_whole(const struct proxy_req *r)
{
    if (r->chunked || r->body == NULL || r->up != NULL)
        return false;
    if (r->content_length <= 0)
        return true; /* no body: an empty one */
    return r->body_done && evbuffer_get_length(r->body) == (size_t)r->content_length;
}

static int
h_body_get(efn_req *q, efn_msg m, efn_str *out)
{
    struct efn_req *fx = fx_of(q);
    struct proxy_req *r;
    size_t len;

    if (fx == NULL || out == NULL || (m != EFN_MSG_REQ && m != EFN_MSG_RESP))
        return EFN_E_INVAL;
    if (m == EFN_MSG_RESP)
        return fx->phase == FX_RESPONSE ? EFN_E_LIMIT : EFN_E_PHASE;
    if (fx->phase == FX_RESPONSE)
        return EFN_E_PHASE;
    r = fx->r;
    if (!req_body_whole(r))
        return EFN_E_LIMIT;
    len = evbuffer_get_length(r->body);
    *out = (efn_str){len > 0 ? (const char *)evbuffer_pullup(r->body, -1) : "", len};
    return EFN_OK;
}

static int
h_body_set(efn_req *q, efn_msg m, efn_str body)
{
    struct efn_req *fx = fx_of(q);
    struct proxy_req *r;

    if (fx == NULL || (m != EFN_MSG_REQ && m != EFN_MSG_RESP) ||
        (body.len > 0 && body.ptr == NULL))
        return EFN_E_INVAL;
    if (m == EFN_MSG_RESP)
        return fx->phase == FX_RESPONSE ? EFN_E_LIMIT : EFN_E_PHASE;
    if (fx->phase == FX_RESPONSE)
        return EFN_E_PHASE;
    r = fx->r;
    if (!req_body_whole(r) || body.len > fx->chain->budgets.body_max)
        return EFN_E_LIMIT;
    evbuffer_drain(r->body, evbuffer_get_length(r->body));
    if (body.len > 0 && evbuffer_add(r->body, body.ptr, body.len) < 0)
        return EFN_E_NOMEM;
    r->content_length = (int64_t)body.len; /* the origin gets this length */
    return EFN_OK;
}

static int
h_respond(efn_req *q, int status, const efn_hdr *h, size_t nh, efn_str body)
{
    struct efn_req *fx = fx_of(q);
    struct proxy_hdr *hv;

    if (fx == NULL || status < 100 || status > 599 || (nh > 0 && h == NULL) || nh > 256 ||
        (body.len > 0 && body.ptr == NULL))
        return EFN_E_INVAL;
    if (status < 200)
        return EFN_E_INVAL; /* an interim answer is not an answer */
    for (size_t i = 0; i < nh; i++)
        if (!name_ok(h[i].name) || name_reserved(h[i].name) || !value_ok(h[i].value))
            return EFN_E_INVAL;
    hv = nh > 0 ? arena_alloc(fx, nh * sizeof(*hv)) : NULL;
    if (nh > 0 && hv == NULL)
        return EFN_E_NOMEM;
    for (size_t i = 0; i < nh; i++) {
        hv[i].name = arena_dup(fx, h[i].name.ptr, h[i].name.len);
        hv[i].nlen = h[i].name.len;
        hv[i].value = arena_dup(fx, h[i].value.ptr, h[i].value.len);
        hv[i].vlen = h[i].value.len;
        if (hv[i].name == NULL || hv[i].value == NULL)
            return EFN_E_NOMEM;
    }
    fx->ans_body = arena_dup(fx, body.ptr, body.len);
    if (fx->ans_body == NULL)
        return EFN_E_NOMEM;
    fx->ans_len = body.len;
    fx->ans_h = hv;
    fx->ans_nh = nh;
    fx->ans_status = status;
    return EFN_OK;
}

static void *
h_alloc(efn_req *q, size_t n)
{
    struct efn_req *fx = fx_of(q);
    uint64_t cap;

    if (fx == NULL)
        return NULL;
    cap = fx->chain->budgets.arena_max;
    if (n > cap || fx->arena_used > cap - n) {
        static struct proxy_log_rl rl;
        uint64_t dropped;
        if (proxy_log_rl_pass(&rl, 10000, &dropped))
            log_warn("function '%s' [%s]: arena cap of %llu bytes reached", cur_entry(fx)->name,
                     fx->r->request_id, (unsigned long long)cap);
        return NULL;
    }
    fx->arena_used += n;
    return arena_alloc(fx, n);
}

static void **
h_slot(efn_req *q)
{
    static __thread void *dummy;
    struct efn_req *fx = fx_of(q);
    if (fx == NULL) {
        dummy = NULL;
        return &dummy;
    }
    return &fx->slots[fx->cur];
}

/* ---- KV ---------------------------------------------------------------------------------------- */

static void kv_done(void *ud, const efn_kv_reply *rep);

static int
kv_prepare(struct efn_req *fx, efn_kv_cb cb, void *ud, kv_cb *tramp, void **tud)
{
    struct fx_kvop *op;

    if (fx->w->kv == NULL)
        return EFN_E_KV;
    if (fx->kv == NULL) {
        fx->kv = kv_handle_new(fx->w->kv);
        if (fx->kv == NULL)
            return EFN_E_NOMEM;
        kv_handle_set_timeout(fx->kv, fx->chain->budgets.kv_timeout_ms);
    }
    *tramp = NULL;
    *tud = NULL;
    if (cb == NULL)
        return EFN_OK;
    op = arena_alloc(fx, sizeof(*op));
    if (op == NULL)
        return EFN_E_NOMEM;
    op->fx = fx;
    op->entry = fx->cur;
    op->pause_seq = fx->pause_seq;
    op->cb = cb;
    op->ud = ud;
    *tramp = kv_done;
    *tud = op;
    return EFN_OK;
}

static int
kv_result(struct efn_req *fx, int rc)
{
    if (rc == EFN_E_KV || rc == EFN_E_TIMEOUT)
        fx->kv_failed = true;
    return rc;
}

#define KV_CALL(q, cb, ud, call)                                                                   \
    do {                                                                                           \
        struct efn_req *fx = fx_of(q);                                                             \
        kv_cb tramp;                                                                               \
        void *tud;                                                                                 \
        int rc;                                                                                    \
        if (fx == NULL || key.ptr == NULL)                                                         \
            return EFN_E_INVAL;                                                                    \
        if ((rc = kv_prepare(fx, (cb), (ud), &tramp, &tud)) != EFN_OK)                             \
            return kv_result(fx, rc);                                                              \
        efn_str prefix = cur_entry(fx)->kv_prefix;                                                 \
        return kv_result(fx, (call));                                                              \
    } while (0)

static int
h_kv_get(efn_req *q, efn_str key, efn_kv_cb cb, void *ud)
{
    KV_CALL(q, cb, ud, kv_op_get(fx->kv, prefix, key, tramp, tud));
}

static int
h_kv_set(efn_req *q, efn_str key, efn_str val, uint32_t ttl_ms, efn_kv_cb cb, void *ud)
{
    KV_CALL(q, cb, ud, kv_op_set(fx->kv, prefix, key, val, ttl_ms, tramp, tud));
}

static int
h_kv_incr(efn_req *q, efn_str key, int64_t delta, efn_kv_cb cb, void *ud)
{
    KV_CALL(q, cb, ud, kv_op_incr(fx->kv, prefix, key, delta, tramp, tud));
}

static int
h_kv_del(efn_req *q, efn_str key, efn_kv_cb cb, void *ud)
{
    KV_CALL(q, cb, ud, kv_op_del(fx->kv, prefix, key, tramp, tud));
}

static int
h_kv_expire(efn_req *q, efn_str key, uint32_t ttl_ms, efn_kv_cb cb, void *ud)
{
    KV_CALL(q, cb, ud, kv_op_expire(fx->kv, prefix, key, ttl_ms, tramp, tud));
}

static int
h_kv_incr_window(efn_req *q, efn_str key, int64_t delta, uint32_t window_ms, efn_kv_cb cb,
                 void *ud)
{
    KV_CALL(q, cb, ud, kv_op_incr_window(fx->kv, prefix, key, delta, window_ms, tramp, tud));
}

const struct efn_host proxy_efn_host = {
    .abi_major = EFN_ABI_MAJOR,
    .abi_minor = EFN_ABI_MINOR,
    .size = sizeof(struct efn_host),
    .log = h_log,
    .method = h_method,
    .path = h_path,
    .authority = h_authority,
    .client_ip = h_client_ip,
    .status = h_status,
    .hdr_get = h_hdr_get,
    .hdr_set = h_hdr_set,
    .hdr_add = h_hdr_add,
    .hdr_del = h_hdr_del,
    .set_path = h_set_path,
    .set_authority = h_set_authority,
    .set_origin = h_set_origin,
    .set_cache_key = h_set_cache_key,
    .set_cache_ttl = h_set_cache_ttl,
    .body_get = h_body_get,
    .body_set = h_body_set,
    .respond = h_respond,
    .alloc = h_alloc,
    .slot = h_slot,
    .kv_get = h_kv_get,
    .kv_set = h_kv_set,
    .kv_incr = h_kv_incr,
    .kv_del = h_kv_del,
    .kv_expire = h_kv_expire,
    .kv_incr_window = h_kv_incr_window,
};

/* ---- running hooks ----------------------------------------------------------------------------- */

static uint64_t
thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define LIVE_ADD(e, f, n) atomic_fetch_add_explicit(&(e)->live->f, (n), memory_order_relaxed)

/* CPU accounting and the breaker, after each call. */
static void
account(struct efn_req *fx, const struct compute_entry *e, uint64_t ns)
{
    const struct compute_budgets *bu = &fx->chain->budgets;
    size_t i = 0;

    LIVE_ADD(e, calls, 1);
    LIVE_ADD(e, cpu_ns, ns);
    while (i < COMPUTE_CPU_BUCKETS && (double)ns / 1e9 > compute_cpu_bounds[i])
        i++;
    LIVE_ADD(e, cpu_hist[i], 1);
    if (ns <= bu->cpu_ms * 1000000u)
        return;
    LIVE_ADD(e, over_budget, 1);
    uint64_t now = proxy_now_ms();
    uint64_t ws = atomic_load_explicit(&e->live->window_start_ms, memory_order_relaxed);
    if (ws == 0 || now - ws > bu->breaker_window_ms) {
        atomic_store_explicit(&e->live->window_start_ms, now, memory_order_relaxed);
        atomic_store_explicit(&e->live->window_over, 0, memory_order_relaxed);
    }
    uint64_t over = atomic_fetch_add_explicit(&e->live->window_over, 1, memory_order_relaxed) + 1;
    {
        static struct proxy_log_rl rl;
        uint64_t dropped;
        if (proxy_log_rl_pass(&rl, 1000, &dropped))
            log_warn("function '%s' used %.2f ms of CPU in %s, over its budget of %llu ms "
                     "(%llu more over-budget calls not logged)",
                     e->name, (double)ns / 1e6, phase_names[fx->phase],
                     (unsigned long long)bu->cpu_ms, (unsigned long long)dropped);
    }
    if (over >= bu->breaker_threshold) {
        atomic_store_explicit(&e->live->open_until_ms, now + bu->breaker_cooldown_ms,
                              memory_order_relaxed);
        atomic_store_explicit(&e->live->window_over, 0, memory_order_relaxed);
        LIVE_ADD(e, breaker_opens, 1);
        log_warn("function '%s' (%s): breaker open for %llu ms after %llu over-budget calls; "
                 "its routes follow on_error",
                 e->name, e->kv_prefix.ptr, (unsigned long long)bu->breaker_cooldown_ms,
                 (unsigned long long)over);
    }
}

static inline void
wd_enter(const struct efn_req *fx, const struct compute_entry *e, uint64_t t0)
{
    wd_start_ns = t0;
    wd_limit_ns = fx->chain->budgets.cpu_hard_ms * 1000000u;
    wd_name = e->name;
    wd_in_call = 1;
}

static efn_action
call_hook(struct efn_req *fx, size_t idx)
{
    const struct compute_entry *e = &fx->chain->entries[idx];
    efn_action (*hook)(efn_req *, void *) = fx->phase == FX_REQUEST  ? e->plugin->on_request
                                             : fx->phase == FX_ORIGIN ? e->plugin->on_origin
                                                                      : e->plugin->on_response;
    uint64_t t0, t1;
    efn_action act;

    fx->cur = idx;
    fx->in_call = true;
    log_fn_name = e->name;
    mark_enter(e, fx->phase);
    t0 = thread_cpu_ns();
    wd_enter(fx, e, t0);
    act = hook(fx, e->inst);
    wd_in_call = 0;
    t1 = thread_cpu_ns();
    mark_leave();
    log_fn_name = NULL;
    fx->in_call = false;
    account(fx, e, t1 - t0);
    return act;
}

enum step { STEP_NEXT, STEP_WAIT, STEP_ANSWER, STEP_FAIL };

static enum step
fail(struct efn_req *fx, const struct compute_entry *e, int status, const char *why)
{
    LIVE_ADD(e, errors, 1);
    if (fx->chain->on_error == COMPUTE_ON_ERROR_OPEN) {
        fx->ans_status = 0;
        return STEP_NEXT;
    }
    fx->fail_status = status;
    snprintf(fx->fail_why, sizeof(fx->fail_why), "function '%s' %s", e->name, why);
    return STEP_FAIL;
}

static enum step
apply(struct efn_req *fx, efn_action act)
{
    const struct compute_entry *e = &fx->chain->entries[fx->idx];
    int err_status = fx->kv_failed ? 503 : 500;

    switch (act) {
    case EFN_CONTINUE:
        fx->ans_status = 0; /* a respond() without DONE is not an answer */
        return STEP_NEXT;
    case EFN_DONE:
        if (fx->ans_status == 0)
            return fail(fx, e, 500, "returned DONE without an answer");
        return STEP_ANSWER;
    case EFN_PAUSE:
        if (fx->kv == NULL || kv_handle_pending(fx->kv) == 0)
            return fail(fx, e, err_status,
                        fx->kv_failed ? "could not reach the KV store" : "paused with no KV call pending");
        if (!fx->paused) {
            struct timeval tv = {(time_t)(fx->chain->budgets.pause_timeout_ms / 1000),
                                 (suseconds_t)(fx->chain->budgets.pause_timeout_ms % 1000) * 1000};
            fx->paused = true;
            LIVE_ADD(e, pauses, 1);
            evtimer_add(fx->timer, &tv);
        }
        return STEP_WAIT;
    case EFN_ERROR:
    default:
        return fail(fx, e, err_status, fx->kv_failed ? "failed (KV unavailable)" : "failed");
    }
}

/* Runs the chain from fx->idx; returns a proxy_fx_result. */
static int
run(struct efn_req *fx)
{
    const struct compute_route *ch = fx->chain;

    while (fx->idx < ch->nentries) {
        const struct compute_entry *e = &ch->entries[fx->idx];
        const struct efn_plugin *p = e->plugin;
        bool has = fx->phase == FX_REQUEST  ? p->on_request != NULL
                   : fx->phase == FX_ORIGIN ? p->on_origin != NULL
                                            : p->on_response != NULL;
        enum step st;

        if (!has) {
            fx->idx++;
            continue;
        }
        fx->kv_failed = false;
        if (quarantined(e)) {
            st = fail(fx, e, 503, "is quarantined after crashing the engine");
        } else if (atomic_load_explicit(&e->live->open_until_ms, memory_order_relaxed) >
                   proxy_now_ms()) {
            st = fail(fx, e, 503, "is switched off by its CPU breaker");
        } else {
            st = apply(fx, call_hook(fx, fx->idx));
        }
        switch (st) {
        case STEP_NEXT: fx->idx++; break;
        case STEP_WAIT: return FX_PAUSED;
        case STEP_ANSWER: return FX_ANSWER;
        case STEP_FAIL: return FX_FAIL;
        }
    }
    return FX_CONTINUE;
}

static void
resume(struct efn_req *fx, enum step st)
{
    int res;

    fx->paused = false;
    evtimer_del(fx->timer);
    if (fx->kv != NULL)
        kv_handle_cancel(fx->kv); /* the other callbacks of this pause are dropped */
    fx->pause_seq++;
    switch (st) {
    case STEP_NEXT:
        fx->idx++;
        res = run(fx);
        break;
    case STEP_WAIT: return;
    case STEP_ANSWER: res = FX_ANSWER; break;
    default: res = FX_FAIL; break;
    }
    if (res == FX_PAUSED)
        return;
    fx->cont(fx->r, res); /* may end the request: fx is gone after this */
}

static void
kv_done(void *ud, const efn_kv_reply *rep)
{
    struct fx_kvop *op = ud;
    struct efn_req *fx = op->fx;
    const struct compute_entry *e = &fx->chain->entries[op->entry];
    efn_action act;
    uint64_t t0, t1;

    BUG_ON(fx->magic != FX_MAGIC);
    if (rep->status == EFN_E_KV || rep->status == EFN_E_TIMEOUT)
        fx->kv_failed = true;
    fx->cur = op->entry;
    fx->in_call = true;
    log_fn_name = e->name;
    mark_enter(e, fx->phase);
    t0 = thread_cpu_ns();
    wd_enter(fx, e, t0);
    act = op->cb(fx, e->inst, op->ud, rep);
    wd_in_call = 0;
    t1 = thread_cpu_ns();
    mark_leave();
    log_fn_name = NULL;
    fx->in_call = false;
    account(fx, e, t1 - t0);
    if (!fx->paused || op->entry != fx->idx || op->pause_seq != fx->pause_seq)
        return; /* nobody waits on it: its action has no one to steer */
    if (act == EFN_PAUSE && kv_handle_pending(fx->kv) > 0)
        return; /* still waiting */
    resume(fx, apply(fx, act));
}

static void
pause_timeout_cb(evutil_socket_t sock, short what, void *arg)
{
    struct efn_req *fx = arg;
    const struct compute_entry *e = &fx->chain->entries[fx->idx];

    (void)sock;
    (void)what;
    BUG_ON(fx->magic != FX_MAGIC);
    fx->kv_failed = true;
    resume(fx, fail(fx, e, 503, "timed out waiting for the KV store"));
}

int
proxy_fx_run(struct proxy_req *r, enum proxy_fx_phase ph, proxy_fx_cont cont)
{
    struct efn_req *fx = r->fx;

    BUG_ON(fx == NULL || fx->paused);
    fx->phase = ph;
    fx->idx = 0;
    fx->cont = cont;
    fx->ans_status = 0;
    return run(fx);
}

void
proxy_fx_set_response(struct proxy_req *r, int status,
                      bool (*next)(void *ctx, size_t *pos, struct proxy_hdr *out), void *ctx)
{
    r->fx->resp_status = status;
    r->fx->resp_next = next;
    r->fx->resp_ctx = ctx;
}

int
proxy_fx_fail_status(const struct proxy_req *r, const char **why)
{
    *why = r->fx->fail_why;
    return r->fx->fail_status ? r->fx->fail_status : 500;
}

void
proxy_fx_answer(const struct proxy_req *r, int *status, const struct proxy_hdr **h, size_t *nh,
                const char **body, size_t *len)
{
    const struct efn_req *fx = r->fx;
    *status = fx->ans_status;
    *h = fx->ans_h;
    *nh = fx->ans_nh;
    *body = fx->ans_body;
    *len = fx->ans_len;
}

const struct conf_origin *
proxy_fx_origin(const struct proxy_req *r)
{
    return r->fx != NULL ? r->fx->origin : NULL;
}

bool
proxy_fx_cache_key(const struct proxy_req *r, const char **key, size_t *len)
{
    if (r->fx == NULL || r->fx->cache_key == NULL)
        return false;
    *key = r->fx->cache_key;
    *len = r->fx->cache_key_len;
    return true;
}

void
proxy_fx_cache_route(struct proxy_req *r)
{
    if (r->fx != NULL)
        apply_ttl(r->fx);
}

/* ---- the worker's KV client -------------------------------------------------------------------- */

static bool
conf_has_functions(const struct conf *c)
{
    for (size_t i = 0; i < c->nsites; i++)
        for (size_t j = 0; j < c->sites[i].nroutes; j++)
            if (compute_route_chain(&c->sites[i].routes[j]) != NULL)
                return true;
    return false;
}


/* A client for the conf's `redis` when any route has a function (or a
 * `redis` is given, for the admin API); a reload that changes it opens a
 * new one, the old one lives until its last request lets go. */
void
proxy_fn_worker_conf(struct proxy_worker *w)
{
    const struct compute_main *cm = compute_conf_main(w->conf);

    if (w->kv_old != NULL && kv_client_handles(w->kv_old) == 0) {
        kv_client_free(w->kv_old);
        w->kv_old = NULL;
    }
    if (cm == NULL || (!cm->redis_set && !conf_has_functions(w->conf)))
        return; /* keep an existing client: requests of older confs may still use it */
    if (w->kv != NULL && kv_conf_equal(kv_client_conf(w->kv), &cm->redis))
        return;
    if (w->kv != NULL) {
        if (w->kv_old != NULL)
            return; /* two changes in flight: keep the current one until the old drains */
        w->kv_old = w->kv;
        kv_client_set_stats(w->kv_old, NULL);
    }
    w->kv = kv_client_new(w->base, &cm->redis);
    if (w->kv == NULL)
        log_err("worker %u: cannot create the KV client", w->id);
    else
        kv_client_set_stats(w->kv, &w->kv_stats);
}

void
proxy_fn_worker_fini(struct proxy_worker *w)
{
    kv_client_free(w->kv_old);
    kv_client_free(w->kv);
    w->kv = w->kv_old = NULL;
}

/* ---- /metrics ---------------------------------------------------------------------------------- */

static void
label_value(struct evbuffer *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            evbuffer_add(out, "\\", 1);
        if (s[i] == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, &s[i], 1);
    }
}

#define LOADR(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void
fn_labels(struct evbuffer *out, const struct compute_entry *e)
{
    evbuffer_add_printf(out, "function=\"");
    label_value(out, e->name, strlen(e->name));
    evbuffer_add_printf(out, "\",namespace=\"");
    if (e->kv_prefix.len > 5)
        label_value(out, e->kv_prefix.ptr + 4, e->kv_prefix.len - 5);
    evbuffer_add_printf(out, "\"");
}

void
proxy_fn_metrics(struct proxy_engine *e, struct evbuffer *out)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"edge_function_calls_total", "Hooks and KV callbacks run.",
         offsetof(struct compute_entry_live, calls)},
        {"edge_function_errors_total", "Failures: EFN_ERROR, DONE without an answer, KV "
                                       "timeouts, breaker or quarantine.",
         offsetof(struct compute_entry_live, errors)},
        {"edge_function_pauses_total", "Waits on KV (EFN_PAUSE).",
         offsetof(struct compute_entry_live, pauses)},
        {"edge_function_over_budget_total", "Calls over function_cpu_budget.",
         offsetof(struct compute_entry_live, over_budget)},
        {"edge_function_breaker_opens_total", "Times the CPU breaker opened.",
         offsetof(struct compute_entry_live, breaker_opens)},
    };
    const struct conf *c = e->conf;
    struct kv_stats t, ws;
    uint64_t now = proxy_now_ms(), cum = 0;
    unsigned up = 0;

    memset(&t, 0, sizeof(t));
    for (unsigned i = 0; i < e->nworkers; i++) {
        kv_stats_read(&e->workers[i].kv_stats, &ws);
        t.calls += ws.calls;
        t.errors += ws.errors;
        t.timeouts += ws.timeouts;
        t.reconnects += ws.reconnects;
        t.lat_sum_us += ws.lat_sum_us;
        for (size_t b = 0; b <= KV_LAT_BUCKETS; b++)
            t.lat[b] += ws.lat[b];
        up += ws.up ? 1 : 0;
    }
    evbuffer_add_printf(
        out,
        "# HELP edge_kv_calls_total KV operations sent to Redis by edge functions.\n"
        "# TYPE edge_kv_calls_total counter\nedge_kv_calls_total %llu\n"
        "# HELP edge_kv_errors_total KV operations failed: error reply, lost or no connection.\n"
        "# TYPE edge_kv_errors_total counter\nedge_kv_errors_total %llu\n"
        "# HELP edge_kv_timeouts_total KV operations not answered within kv_timeout.\n"
        "# TYPE edge_kv_timeouts_total counter\nedge_kv_timeouts_total %llu\n"
        "# HELP edge_kv_connects_total Connections to Redis made (first and reconnects).\n"
        "# TYPE edge_kv_connects_total counter\nedge_kv_connects_total %llu\n"
        "# HELP edge_kv_connected_workers Workers whose Redis connection is up.\n"
        "# TYPE edge_kv_connected_workers gauge\nedge_kv_connected_workers %u\n"
        "# HELP edge_kv_latency_seconds KV round trip, issue to reply.\n"
        "# TYPE edge_kv_latency_seconds histogram\n",
        (unsigned long long)t.calls, (unsigned long long)t.errors,
        (unsigned long long)t.timeouts, (unsigned long long)t.reconnects, up);
    for (size_t b = 0; b <= KV_LAT_BUCKETS; b++) {
        cum += t.lat[b];
        if (b < KV_LAT_BUCKETS)
            evbuffer_add_printf(out, "edge_kv_latency_seconds_bucket{le=\"%g\"} %llu\n",
                                kv_latency_bounds[b], (unsigned long long)cum);
        else
            evbuffer_add_printf(out, "edge_kv_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                                (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "edge_kv_latency_seconds_sum %.6f\nedge_kv_latency_seconds_count %llu\n",
                        (double)t.lat_sum_us / 1e6, (unsigned long long)cum);
    evbuffer_add_printf(out,
                        "# HELP edge_functions_quarantined Functions quarantined after crashing "
                        "the engine (until the next reload).\n"
                        "# TYPE edge_functions_quarantined gauge\nedge_functions_quarantined %zu\n",
                        nquarantine);

    for (size_t k = 0; k < sizeof(counters) / sizeof(counters[0]); k++) {
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n", counters[k].name,
                            counters[k].help, counters[k].name);
        for (size_t i = 0; i < c->nsites; i++)
            for (size_t j = 0; j < c->sites[i].nroutes; j++) {
                const struct compute_route *cr = compute_route_chain(&c->sites[i].routes[j]);
                for (size_t n = 0; cr != NULL && n < cr->nentries; n++) {
                    const struct compute_entry *en = &cr->entries[n];
                    evbuffer_add_printf(out, "%s{", counters[k].name);
                    fn_labels(out, en);
                    evbuffer_add_printf(
                        out, "} %llu\n",
                        (unsigned long long)LOADR(
                            *(_Atomic uint64_t *)((char *)en->live + counters[k].off)));
                }
            }
    }
    evbuffer_add_printf(out, "# HELP edge_function_breaker_open 1 while the CPU breaker is open.\n"
                             "# TYPE edge_function_breaker_open gauge\n");
    for (size_t i = 0; i < c->nsites; i++)
        for (size_t j = 0; j < c->sites[i].nroutes; j++) {
            const struct compute_route *cr = compute_route_chain(&c->sites[i].routes[j]);
            for (size_t n = 0; cr != NULL && n < cr->nentries; n++) {
                evbuffer_add_printf(out, "edge_function_breaker_open{");
                fn_labels(out, &cr->entries[n]);
                evbuffer_add_printf(out, "} %d\n",
                                    LOADR(cr->entries[n].live->open_until_ms) > now ? 1 : 0);
            }
        }
    evbuffer_add_printf(out, "# HELP edge_function_cpu_seconds CPU time per hook or KV callback.\n"
                             "# TYPE edge_function_cpu_seconds histogram\n");
    for (size_t i = 0; i < c->nsites; i++)
        for (size_t j = 0; j < c->sites[i].nroutes; j++) {
            const struct compute_route *cr = compute_route_chain(&c->sites[i].routes[j]);
            for (size_t n = 0; cr != NULL && n < cr->nentries; n++) {
                const struct compute_entry *en = &cr->entries[n];
                uint64_t cc = 0;
                for (size_t b = 0; b <= COMPUTE_CPU_BUCKETS; b++) {
                    cc += LOADR(en->live->cpu_hist[b]);
                    evbuffer_add_printf(out, "edge_function_cpu_seconds_bucket{");
                    fn_labels(out, en);
                    if (b < COMPUTE_CPU_BUCKETS)
                        evbuffer_add_printf(out, ",le=\"%g\"} %llu\n", compute_cpu_bounds[b],
                                            (unsigned long long)cc);
                    else
                        evbuffer_add_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)cc);
                }
                evbuffer_add_printf(out, "edge_function_cpu_seconds_sum{");
                fn_labels(out, en);
                evbuffer_add_printf(out, "} %.9f\nedge_function_cpu_seconds_count{",
                                    (double)LOADR(en->live->cpu_ns) / 1e9);
                fn_labels(out, en);
                evbuffer_add_printf(out, "} %llu\n", (unsigned long long)cc);
            }
        }
}
