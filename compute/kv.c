/*
 * KV client: one hiredis async connection per worker on its event_base,
 * pipelined; per-op timeouts by our own timers; reconnect with backoff.
 * See compute.h.
 *
 * Op lifetime: an op is owned by hiredis from redisAsyncCommandArgv until
 * its reply callback runs (with a reply, or NULL when the connection dies or
 * is freed). A timeout or a cancel only detaches it (cb = NULL, h = NULL):
 * the late reply then finds an orphan and just recycles it. So user
 * callbacks run at most once and never after the request's handle let go,
 * and we never use hiredis' command timeout (which would fail every pending
 * op and drop the connection).
 */
#include "compute/compute.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KV_CLIENT_MAGIC 0x4b56434cu /* "KVCL" */
#define KV_HANDLE_MAGIC 0x4b56484eu /* "KVHN" */
#define KV_OP_MAGIC 0x4b564f50u     /* "KVOP" */
#define KV_POISON 0xdeadbeefu
#define KV_KEY_MAX 1024
#define KV_BACKOFF_MIN_MS 50
#define KV_BACKOFF_MAX_MS 2000

/* INCRBY, and an expiry when the key has none (new window or a lost
 * PEXPIRE): one script, so atomic in Redis. Returns {count, pttl}. */
static const char incr_window_lua[] =
    "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
    "local t = redis.call('PTTL', KEYS[1]) "
    "if t < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) t = tonumber(ARGV[2]) end "
    "return {v, t}";

enum kv_kind { KV_GET, KV_SET, KV_INT, KV_WINDOW, KV_SCAN };

const double kv_latency_bounds[KV_LAT_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                  0.005,  0.01,    0.025,  0.05,  0.1,
                                                  0.25,   1.0};
enum kv_state { KV_DOWN, KV_CONNECTING, KV_UP };

struct kv_op {
    unsigned magic;
    struct kv_client *c;
    struct kv_handle *h; /* NULL: orphan or fire-and-forget */
    kv_cb cb;            /* NULL: nobody waits */
    kv_scan_cb scan_cb;  /* KV_SCAN instead of cb */
    void *ud;
    enum kv_kind kind;
    uint64_t t_issue_us;
    struct event timer; /* assigned once per pooled op */
    bool timer_on;
    struct kv_op *prev, *next; /* in h->ops, or the client's free list (next) */
};

struct kv_handle {
    unsigned magic;
    struct kv_client *c;
    struct kv_op *ops;
    unsigned n;
    uint64_t timeout_ms; /* per op; 0 = the client's kv_conf.timeout_ms */
};

struct kv_client {
    unsigned magic;
    struct event_base *base;
    struct kv_conf conf;
    redisAsyncContext *ac; /* NULL while down */
    enum kv_state state;
    struct event *retry, *connect_timer;
    uint64_t backoff_ms;
    struct kv_op *free_ops; /* pool (STYLE §15) */
    unsigned handles;
    bool freeing;
    struct kv_stats stats;
    struct kv_stats *st; /* &stats, or the owner's (kv_client_set_stats) */
};

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#define KV_STAT_ADD(c, f, n) atomic_fetch_add_explicit(&(c)->st->f, (n), memory_order_relaxed)

static void
stat_latency(struct kv_client *c, uint64_t us)
{
    size_t i = 0;
    while (i < KV_LAT_BUCKETS && (double)us / 1e6 > kv_latency_bounds[i])
        i++;
    KV_STAT_ADD(c, lat[i], 1);
    KV_STAT_ADD(c, lat_sum_us, us);
}


void
kv_stats_read(const struct kv_stats *st, struct kv_stats *out)
{
    out->calls = atomic_load_explicit(&st->calls, memory_order_relaxed);
    out->errors = atomic_load_explicit(&st->errors, memory_order_relaxed);
    out->timeouts = atomic_load_explicit(&st->timeouts, memory_order_relaxed);
    out->reconnects = atomic_load_explicit(&st->reconnects, memory_order_relaxed);
    out->lat_sum_us = atomic_load_explicit(&st->lat_sum_us, memory_order_relaxed);
    for (size_t i = 0; i <= KV_LAT_BUCKETS; i++)
        out->lat[i] = atomic_load_explicit(&st->lat[i], memory_order_relaxed);
    out->up = atomic_load_explicit(&st->up, memory_order_relaxed);
}

void
kv_client_set_stats(struct kv_client *c, struct kv_stats *st)
{
    c->st = st != NULL ? st : &c->stats;
    atomic_store_explicit(&c->st->up, c->state == KV_UP, memory_order_relaxed);
}

unsigned
kv_client_handles(const struct kv_client *c)
{
    return c->handles;
}

const struct kv_conf *
kv_client_conf(const struct kv_client *c)
{
    return &c->conf;
}

bool
kv_conf_equal(const struct kv_conf *a, const struct kv_conf *b)
{
    return a->is_unix == b->is_unix && strcmp(a->host, b->host) == 0 && a->port == b->port &&
           strcmp(a->path, b->path) == 0 && strcmp(a->password, b->password) == 0 &&
           a->db == b->db && a->timeout_ms == b->timeout_ms &&
           a->connect_timeout_ms == b->connect_timeout_ms && a->max_inflight == b->max_inflight;
}

void
kv_conf_defaults(struct kv_conf *kc)
{
    memset(kc, 0, sizeof(*kc));
    snprintf(kc->host, sizeof(kc->host), "127.0.0.1");
    kc->port = 6379;
    kc->timeout_ms = 100;
    kc->connect_timeout_ms = 1000;
    kc->max_inflight = 8;
}

static void kv_connect(struct kv_client *c);

static struct timeval
tv_ms(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

static void
schedule_retry(struct kv_client *c)
{
    struct timeval tv = tv_ms(c->backoff_ms);

    c->state = KV_DOWN;
    atomic_store_explicit(&c->st->up, 0, memory_order_relaxed);
    if (c->freeing)
        return;
    evtimer_add(c->retry, &tv);
    c->backoff_ms = c->backoff_ms * 2 > KV_BACKOFF_MAX_MS ? KV_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct kv_client *c = arg;

    (void)fd;
    (void)what;
    if (c->magic != KV_CLIENT_MAGIC)
        abort();
    kv_connect(c);
}

static void
on_connected(const redisAsyncContext *ac, int status)
{
    struct kv_client *c = ac->data;

    if (c == NULL || c->magic != KV_CLIENT_MAGIC)
        return;
    evtimer_del(c->connect_timer);
    if (status != REDIS_OK) {
        c->ac = NULL; /* hiredis frees it after this callback */
        schedule_retry(c);
        return;
    }
    c->state = KV_UP;
    c->backoff_ms = KV_BACKOFF_MIN_MS;
    KV_STAT_ADD(c, reconnects, 1);
    atomic_store_explicit(&c->st->up, 1, memory_order_relaxed);
}

static void
on_disconnected(const redisAsyncContext *ac, int status)
{
    struct kv_client *c = ac->data;

    (void)status;
    if (c == NULL || c->magic != KV_CLIENT_MAGIC)
        return;
    c->ac = NULL;
    schedule_retry(c);
}

static void
on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct kv_client *c = arg;
    redisAsyncContext *ac = c->ac;

    (void)fd;
    (void)what;
    if (c->state != KV_CONNECTING || ac == NULL)
        return;
    c->ac = NULL;
    ac->data = NULL; /* no callback of ours for this context any more */
    redisAsyncFree(ac); /* pending ops get NULL replies: EFN_E_KV */
    schedule_retry(c);
}

static void
on_setup_reply(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;

    (void)priv;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "kv: redis refused AUTH/SELECT: %.*s\n", (int)reply->len, reply->str);
        redisAsyncDisconnect(ac);
    }
}

static void
kv_connect(struct kv_client *c)
{
    redisAsyncContext *ac;
    struct timeval tv = tv_ms(c->conf.connect_timeout_ms);

    if (c->conf.is_unix)
        ac = redisAsyncConnectUnix(c->conf.path);
    else
        ac = redisAsyncConnect(c->conf.host, c->conf.port);
    if (ac == NULL || ac->err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    ac->data = c;
    if (redisLibeventAttach(ac, c->base) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connected);
    redisAsyncSetDisconnectCallback(ac, on_disconnected);
    c->ac = ac;
    c->state = KV_CONNECTING;
    evtimer_add(c->connect_timer, &tv);
    /* queued first, so every later command runs authenticated and selected */
    if (c->conf.password[0] != '\0')
        redisAsyncCommand(ac, on_setup_reply, NULL, "AUTH %s", c->conf.password);
    if (c->conf.db > 0)
        redisAsyncCommand(ac, on_setup_reply, NULL, "SELECT %u", c->conf.db);
}

struct kv_client *
kv_client_new(struct event_base *base, const struct kv_conf *kc)
{
    struct kv_client *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->magic = KV_CLIENT_MAGIC;
    c->base = base;
    c->st = &c->stats;
    c->conf = *kc;
    if (c->conf.max_inflight == 0)
        c->conf.max_inflight = 8;
    if (c->conf.timeout_ms == 0)
        c->conf.timeout_ms = 100;
    if (c->conf.connect_timeout_ms == 0)
        c->conf.connect_timeout_ms = 1000;
    c->backoff_ms = KV_BACKOFF_MIN_MS;
    c->retry = evtimer_new(base, on_retry, c);
    c->connect_timer = evtimer_new(base, on_connect_timeout, c);
    if (c->retry == NULL || c->connect_timer == NULL) {
        if (c->retry != NULL)
            event_free(c->retry);
        if (c->connect_timer != NULL)
            event_free(c->connect_timer);
        free(c);
        return NULL;
    }
    kv_connect(c);
    return c;
}

void
kv_client_free(struct kv_client *c)
{
    struct kv_op *op;

    if (c == NULL)
        return;
    if (c->magic != KV_CLIENT_MAGIC || c->handles != 0)
        abort(); /* BUG: handles must be freed first */
    c->freeing = true;
    event_free(c->retry);
    event_free(c->connect_timer);
    if (c->ac != NULL) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        redisAsyncFree(ac); /* every pending op comes back (NULL reply) to the pool */
    }
    while ((op = c->free_ops) != NULL) {
        c->free_ops = op->next;
        op->magic = KV_POISON;
        free(op);
    }
    c->magic = KV_POISON;
    free(c);
}

bool
kv_client_connected(const struct kv_client *c)
{
    return c->state == KV_UP;
}

/* ---- ops ---- */

static void on_timeout(evutil_socket_t fd, short what, void *arg);

static struct kv_op *
op_get(struct kv_client *c)
{
    struct kv_op *op = c->free_ops;

    if (op != NULL) {
        c->free_ops = op->next;
    } else {
        op = calloc(1, sizeof(*op));
        if (op == NULL)
            return NULL;
        event_assign(&op->timer, c->base, -1, 0, on_timeout, op);
    }
    op->magic = KV_OP_MAGIC;
    op->c = c;
    op->h = NULL;
    op->cb = NULL;
    op->scan_cb = NULL;
    op->ud = NULL;
    op->prev = op->next = NULL;
    op->timer_on = false;
    op->t_issue_us = now_us();
    return op;
}

/* Unlinks from its handle and stops its timer; the op stays allocated. */
static void
op_detach(struct kv_op *op)
{
    struct kv_handle *h = op->h;

    if (op->timer_on) {
        evtimer_del(&op->timer);
        op->timer_on = false;
    }
    if (h != NULL) {
        if (op->prev != NULL)
            op->prev->next = op->next;
        else
            h->ops = op->next;
        if (op->next != NULL)
            op->next->prev = op->prev;
        h->n--;
        op->h = NULL;
    }
    op->prev = op->next = NULL;
    op->cb = NULL;
    op->scan_cb = NULL;
}

static void
op_put(struct kv_op *op)
{
    struct kv_client *c = op->c;

    op_detach(op);
    op->magic = 0;
    op->next = c->free_ops;
    c->free_ops = op;
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct kv_op *op = arg;
    efn_kv_reply rep = {EFN_E_TIMEOUT, 0, -1, {NULL, 0}};
    kv_cb cb;
    kv_scan_cb scb;
    void *ud;

    (void)fd;
    (void)what;
    if (op->magic != KV_OP_MAGIC)
        abort();
    op->timer_on = false;
    cb = op->cb;
    scb = op->scan_cb;
    ud = op->ud;
    KV_STAT_ADD(op->c, timeouts, 1);
    op_detach(op); /* an orphan now: hiredis still owns it until the reply */
    if (cb != NULL)
        cb(ud, &rep);
    else if (scb != NULL)
        scb(ud, EFN_E_TIMEOUT, NULL, NULL, 0);
}

/* SCAN's reply: [cursor, [key, ...]] */
static void
scan_reply(kv_scan_cb scb, void *ud, const redisReply *reply)
{
    efn_str keys[256];
    size_t n = 0;
    const redisReply *ks;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        scb(ud, EFN_E_KV, NULL, NULL, 0);
        return;
    }
    ks = reply->element[1];
    for (size_t i = 0; i < ks->elements && n < 256; i++)
        if (ks->element[i]->type == REDIS_REPLY_STRING)
            keys[n++] = (efn_str){ks->element[i]->str, ks->element[i]->len};
    scb(ud, EFN_OK, reply->element[0]->str, keys, n);
}

static void
on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct kv_op *op = priv;
    redisReply *reply = r;
    efn_kv_reply rep = {EFN_OK, 0, -1, {NULL, 0}};
    kv_cb cb;
    kv_scan_cb scb;
    void *ud;

    (void)ac;
    if (op == NULL || op->magic != KV_OP_MAGIC)
        abort();
    cb = op->cb;
    scb = op->scan_cb;
    ud = op->ud;
    if (op->c->freeing)
        cb = NULL, scb = NULL;
    stat_latency(op->c, now_us() - op->t_issue_us);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        rep.status = EFN_E_KV;
        KV_STAT_ADD(op->c, errors, 1);
    } else if (op->kind == KV_SCAN) {
        if (scb != NULL)
            scan_reply(scb, ud, reply);
        op_put(op);
        return;
    } else {
        switch (op->kind) {
        case KV_GET:
            if (reply->type == REDIS_REPLY_NIL)
                rep.status = EFN_E_NOTFOUND;
            else if (reply->type == REDIS_REPLY_STRING)
                rep.value = (efn_str){reply->str, reply->len};
            else
                rep.status = EFN_E_KV;
            break;
        case KV_SET:
            if (reply->type != REDIS_REPLY_STATUS)
                rep.status = EFN_E_KV;
            break;
        case KV_INT:
            if (reply->type == REDIS_REPLY_INTEGER)
                rep.integer = reply->integer;
            else
                rep.status = EFN_E_KV;
            break;
        case KV_WINDOW:
            if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
                reply->element[0]->type == REDIS_REPLY_INTEGER &&
                reply->element[1]->type == REDIS_REPLY_INTEGER) {
                rep.integer = reply->element[0]->integer;
                rep.ttl_ms = reply->element[1]->integer;
            } else {
                rep.status = EFN_E_KV;
            }
            break;
        case KV_SCAN: /* handled above */
            break;
        }
    }
    op_put(op);
    if (cb != NULL)
        cb(ud, &rep);
    else if (scb != NULL)
        scb(ud, EFN_E_KV, NULL, NULL, 0);
}

/* Issues argv; argv[kidx] is set here to prefix + key. */
static int
op_issue2(struct kv_handle *h, enum kv_kind kind, efn_str prefix, efn_str key, int kidx, int argc,
          const char **argv, size_t *argvlen, kv_cb cb, kv_scan_cb scb, void *ud)
{
    struct kv_client *c;
    struct kv_op *op;
    char full[KV_KEY_MAX];
    struct timeval tv;

    if (h == NULL || h->magic != KV_HANDLE_MAGIC)
        abort();
    c = h->c;
    if (key.len == 0 || prefix.len + key.len > KV_KEY_MAX)
        return EFN_E_INVAL;
    if (c->state == KV_DOWN || c->ac == NULL) {
        KV_STAT_ADD(c, errors, 1);
        return EFN_E_KV;
    }
    if ((cb != NULL || scb != NULL) && h->n >= c->conf.max_inflight)
        return EFN_E_LIMIT;
    KV_STAT_ADD(c, calls, 1);
    if (prefix.len > 0)
        memcpy(full, prefix.ptr, prefix.len);
    memcpy(full + prefix.len, key.ptr, key.len);
    argv[kidx] = full;
    argvlen[kidx] = prefix.len + key.len;
    op = op_get(c);
    if (op == NULL)
        return EFN_E_NOMEM;
    op->kind = kind;
    if (redisAsyncCommandArgv(c->ac, on_reply, op, argc, argv, argvlen) != REDIS_OK) {
        op_put(op);
        return EFN_E_KV;
    }
    if (cb == NULL && scb == NULL)
        return EFN_OK; /* fire-and-forget: no handle, no timer */
    op->cb = cb;
    op->scan_cb = scb;
    op->ud = ud;
    op->h = h;
    op->next = h->ops;
    if (h->ops != NULL)
        h->ops->prev = op;
    h->ops = op;
    h->n++;
    tv = tv_ms(h->timeout_ms != 0 ? h->timeout_ms : c->conf.timeout_ms);
    evtimer_add(&op->timer, &tv);
    op->timer_on = true;
    return EFN_OK;
}

static int
op_issue(struct kv_handle *h, enum kv_kind kind, efn_str prefix, efn_str key, int kidx, int argc,
         const char **argv, size_t *argvlen, kv_cb cb, void *ud)
{
    return op_issue2(h, kind, prefix, key, kidx, argc, argv, argvlen, cb, NULL, ud);
}

int
kv_op_scan(struct kv_handle *h, efn_str prefix, efn_str match_prefix, const char *cursor,
           unsigned count, kv_scan_cb cb, void *ud)
{
    char pat[KV_KEY_MAX * 2 + 2], cnt[16];
    size_t n = 0;
    const char *argv[6] = {"SCAN", cursor, "MATCH", pat, "COUNT", cnt};
    size_t len[6] = {4, strlen(cursor), 5, 0, 5, 0};

    if (cb == NULL || prefix.len + match_prefix.len > KV_KEY_MAX)
        return EFN_E_INVAL;
    /* the pattern: prefix and match_prefix with glob characters escaped, then '*' */
    for (size_t part = 0; part < 2; part++) {
        efn_str s = part == 0 ? prefix : match_prefix;
        for (size_t i = 0; i < s.len; i++) {
            if (s.ptr[i] == '*' || s.ptr[i] == '?' || s.ptr[i] == '[' || s.ptr[i] == ']' ||
                s.ptr[i] == '\\')
                pat[n++] = '\\';
            pat[n++] = s.ptr[i];
        }
    }
    pat[n++] = '*';
    len[3] = n;
    len[5] = (size_t)snprintf(cnt, sizeof(cnt), "%u", count ? count : 100);
    /* op_issue2 puts prefix+key at argv[kidx]: use the cursor's slot for it */
    argv[1] = NULL;
    return op_issue2(h, KV_SCAN, (efn_str){NULL, 0}, (efn_str){cursor, strlen(cursor)}, 1, 6,
                     argv, len, NULL, cb, ud);
}

int
kv_op_get(struct kv_handle *h, efn_str prefix, efn_str key, kv_cb cb, void *ud)
{
    const char *argv[2] = {"GET", NULL};
    size_t len[2] = {3, 0};

    return op_issue(h, KV_GET, prefix, key, 1, 2, argv, len, cb, ud);
}

int
kv_op_set(struct kv_handle *h, efn_str prefix, efn_str key, efn_str val, uint32_t ttl_ms,
          kv_cb cb, void *ud)
{
    char ms[16];
    const char *argv[5] = {"SET", NULL, val.ptr != NULL ? val.ptr : "", "PX", ms};
    size_t len[5] = {3, 0, val.len, 2, 0};

    len[4] = (size_t)snprintf(ms, sizeof(ms), "%u", (unsigned)ttl_ms);
    return op_issue(h, KV_SET, prefix, key, 1, ttl_ms > 0 ? 5 : 3, argv, len, cb, ud);
}

int
kv_op_incr(struct kv_handle *h, efn_str prefix, efn_str key, int64_t delta, kv_cb cb, void *ud)
{
    char d[24];
    const char *argv[3] = {"INCRBY", NULL, d};
    size_t len[3] = {6, 0, 0};

    len[2] = (size_t)snprintf(d, sizeof(d), "%lld", (long long)delta);
    return op_issue(h, KV_INT, prefix, key, 1, 3, argv, len, cb, ud);
}

int
kv_op_del(struct kv_handle *h, efn_str prefix, efn_str key, kv_cb cb, void *ud)
{
    const char *argv[2] = {"DEL", NULL};
    size_t len[2] = {3, 0};

    return op_issue(h, KV_INT, prefix, key, 1, 2, argv, len, cb, ud);
}

int
kv_op_expire(struct kv_handle *h, efn_str prefix, efn_str key, uint32_t ttl_ms, kv_cb cb,
             void *ud)
{
    char ms[16];
    const char *argv[3] = {"PEXPIRE", NULL, ms};
    size_t len[3] = {7, 0, 0};

    if (ttl_ms == 0)
        return EFN_E_INVAL;
    len[2] = (size_t)snprintf(ms, sizeof(ms), "%u", (unsigned)ttl_ms);
    return op_issue(h, KV_INT, prefix, key, 1, 3, argv, len, cb, ud);
}

int
kv_op_incr_window(struct kv_handle *h, efn_str prefix, efn_str key, int64_t delta,
                  uint32_t window_ms, kv_cb cb, void *ud)
{
    char d[24], ms[16];
    const char *argv[6] = {"EVAL", incr_window_lua, "1", NULL, d, ms};
    size_t len[6] = {4, sizeof(incr_window_lua) - 1, 1, 0, 0, 0};

    if (window_ms == 0)
        return EFN_E_INVAL;
    len[4] = (size_t)snprintf(d, sizeof(d), "%lld", (long long)delta);
    len[5] = (size_t)snprintf(ms, sizeof(ms), "%u", (unsigned)window_ms);
    return op_issue(h, KV_WINDOW, prefix, key, 3, 6, argv, len, cb, ud);
}

/* ---- handles ---- */

struct kv_handle *
kv_handle_new(struct kv_client *c)
{
    struct kv_handle *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->magic = KV_HANDLE_MAGIC;
    h->c = c;
    c->handles++;
    return h;
}

void
kv_handle_set_timeout(struct kv_handle *h, uint64_t timeout_ms)
{
    if (h->magic != KV_HANDLE_MAGIC)
        abort();
    h->timeout_ms = timeout_ms;
}

void
kv_handle_cancel(struct kv_handle *h)
{
    if (h->magic != KV_HANDLE_MAGIC)
        abort();
    while (h->ops != NULL)
        op_detach(h->ops); /* orphans: recycled when their replies come */
}

void
kv_handle_free(struct kv_handle *h)
{
    if (h == NULL)
        return;
    kv_handle_cancel(h);
    h->c->handles--;
    h->magic = KV_POISON;
    free(h);
}

unsigned
kv_handle_pending(const struct kv_handle *h)
{
    return h->n;
}
