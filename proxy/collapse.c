/*
 * Request collapsing: concurrent cache misses for one key, on any worker,
 * send one request to the origin. The first miss leads; later ones wait
 * (event-driven: no polling). Once the leader's response head is known to
 * be stored, its entry holds the fill (cachepath.c): parked waiters are
 * resumed and read the response from its temp file while it arrives, and
 * so do misses that come later. Those a fill does not fit (another Vary
 * variant, a RESPONSE function, a no-cache request) wait until the
 * leader's copy is stored and are answered from the cache. A response that
 * turns out uncacheable releases the waiters at once (they go to the
 * origin themselves) and the key remembers "pass" for a short while so
 * later requests do not queue.
 *
 * The table is shared by the workers (one mutex; it is touched once per
 * miss, once when the head is known and once per completion, never per
 * byte). Waiters stay on their own worker: the leader posts the key to
 * each waiting worker's queue and wakes it through its eventfd.
 */
#include "proxy/internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#define COLLAPSE_BUCKETS 1024
#define COLLAPSE_PASS_MS 5000

struct collapse_entry {
    struct collapse_entry *next;
    uint64_t hash;
    uint64_t workers; /* bit per worker with waiters */
    bool in_flight;   /* a leader is fetching */
    uint64_t pass_until_ms;
    uint64_t refresh_until_ms; /* a background revalidation runs (stale-while-revalidate) */
    struct proxy_fill *fill;   /* the leader's response, readable while stored (a reference) */
    size_t klen;
    char key[]; /* NUL-terminated */
};

struct proxy_collapse {
    pthread_mutex_t lock;
    struct collapse_entry *b[COLLAPSE_BUCKETS];
};

static uint64_t
hash_key(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ull;
    }
    return h;
}

struct proxy_collapse *
proxy_collapse_new(void)
{
    struct proxy_collapse *t = calloc(1, sizeof(*t));
    if (t != NULL)
        pthread_mutex_init(&t->lock, NULL);
    return t;
}

void
proxy_collapse_free(struct proxy_collapse *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < COLLAPSE_BUCKETS; i++) {
        struct collapse_entry *e = t->b[i], *n;
        for (; e != NULL; e = n) {
            n = e->next;
            proxy_fill_unref(e->fill);
            free(e);
        }
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static struct collapse_entry **
find(struct proxy_collapse *t, const char *k, size_t n, uint64_t h)
{
    struct collapse_entry **pp = &t->b[h % COLLAPSE_BUCKETS];
    for (; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == n && memcmp((*pp)->key, k, n) == 0)
            return pp;
    return pp;
}

/* See internal.h. Only a GET leads: a HEAD waits for a GET in flight, or
 * goes to the origin itself. */
int
proxy_collapse_join(struct proxy_req *r, struct proxy_fill **fill)
{
    struct proxy_worker *w = r->w;
    struct proxy_collapse *t = w->e->collapse;
    uint64_t h, now = proxy_now_ms();
    struct collapse_entry **pp, *e;
    bool may_lead = r->method == HTTP_GET;
    int rc = 0;

    if (fill != NULL)
        *fill = NULL;
    if (t == NULL || r->cache_key == NULL || w->id >= 64)
        return 0;
    h = hash_key(r->cache_key, r->cache_key_len);
    pthread_mutex_lock(&t->lock);
    pp = find(t, r->cache_key, r->cache_key_len, h);
    e = *pp;
    if (e == NULL) {
        e = may_lead ? calloc(1, sizeof(*e) + r->cache_key_len + 1) : NULL;
        if (e != NULL) {
            e->hash = h;
            e->klen = r->cache_key_len;
            memcpy(e->key, r->cache_key, r->cache_key_len + 1);
            e->in_flight = true;
            *pp = e;
            r->collapse_leader = true;
        }
    } else if (!e->in_flight) {
        if (e->pass_until_ms > now || !may_lead) {
            rc = 0; /* uncacheable lately: no queueing */
        } else {
            e->in_flight = true; /* the pass expired: lead again */
            e->pass_until_ms = 0;
            r->collapse_leader = true;
        }
    } else if (fill != NULL && e->fill != NULL) {
        atomic_fetch_add(&e->fill->refs, 1);
        *fill = e->fill;
        rc = 2;
    } else {
        e->workers |= 1ull << w->id;
        rc = 1;
    }
    pthread_mutex_unlock(&t->lock);
    if (rc != 0 && !r->collapse_counted) {
        r->collapse_counted = true; /* once, though a waiter may join again */
        STAT_INC(w, cache_collapsed);
    }
    if (rc == 1) {
        r->collapse_waiting = true;
        TAILQ_INSERT_TAIL(&w->collapse_waiters, r, collapse_link);
    }
    return rc;
}

void
proxy_worker_fill_wake(struct proxy_worker *w)
{
    uint64_t one = 1;

    if (!atomic_exchange(&w->fill_wake, true)) {
        ssize_t n = write(w->notify_fd, &one, sizeof(one));
        (void)n;
    }
}

static void
post(struct proxy_worker *w, const char *key, size_t klen)
{
    char *copy = malloc(klen + 1);
    uint64_t one = 1;

    if (copy == NULL)
        return;
    memcpy(copy, key, klen + 1);
    pthread_mutex_lock(&w->cq_lock);
    if (w->ncq == w->cqcap) {
        size_t cap = w->cqcap ? w->cqcap * 2 : 16;
        char **p = realloc(w->cq, cap * sizeof(*p));
        if (p == NULL) {
            pthread_mutex_unlock(&w->cq_lock);
            free(copy);
            return;
        }
        w->cq = p;
        w->cqcap = cap;
    }
    w->cq[w->ncq++] = copy;
    pthread_mutex_unlock(&w->cq_lock);
    ssize_t n = write(w->notify_fd, &one, sizeof(one));
    (void)n;
}

static void post_mask(struct proxy_worker *w, uint64_t mask, const char *key, size_t klen);

void
proxy_collapse_set_fill(struct proxy_req *r, struct proxy_fill *f)
{
    struct proxy_worker *w = r->w;
    struct proxy_collapse *t = w->e->collapse;
    struct collapse_entry *e;
    uint64_t mask = 0;

    if (!r->collapse_leader || t == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    e = *find(t, r->cache_key, r->cache_key_len, hash_key(r->cache_key, r->cache_key_len));
    if (e != NULL && e->in_flight && e->fill == NULL) {
        atomic_fetch_add(&f->refs, 1);
        e->fill = f;
        mask = e->workers; /* they look again: those it does not fit park again */
        e->workers = 0;
    }
    pthread_mutex_unlock(&t->lock);
    post_mask(w, mask, r->cache_key, r->cache_key_len);
}

/* The leader is done: stored (waiters are answered from the cache), or not
 * (pass: waiters and later requests go to the origin for a while; failed:
 * the waiters retry and one of them leads). */
void
proxy_collapse_release(struct proxy_req *r, enum proxy_collapse_outcome how)
{
    struct proxy_worker *w = r->w;
    struct proxy_collapse *t = w->e->collapse;
    struct collapse_entry **pp, *e;
    struct proxy_fill *fill = NULL;
    uint64_t mask = 0;

    if (!r->collapse_leader || t == NULL)
        return;
    r->collapse_leader = false;
    pthread_mutex_lock(&t->lock);
    pp = find(t, r->cache_key, r->cache_key_len, hash_key(r->cache_key, r->cache_key_len));
    e = *pp;
    if (e != NULL) {
        mask = e->workers;
        e->workers = 0;
        e->in_flight = false;
        fill = e->fill; /* its readers go on with their own references */
        e->fill = NULL;
        if (how == COLLAPSE_PASS) {
            e->pass_until_ms = proxy_now_ms() + COLLAPSE_PASS_MS;
        } else if (e->refresh_until_ms <= proxy_now_ms()) {
            *pp = e->next;
            free(e);
        }
    }
    pthread_mutex_unlock(&t->lock);
    proxy_fill_unref(fill);
    post_mask(w, mask, r->cache_key, r->cache_key_len);
}

static void
post_mask(struct proxy_worker *w, uint64_t mask, const char *key, size_t klen)
{
    for (unsigned i = 0; i < w->e->nworkers && mask != 0; i++)
        if (mask & (1ull << i))
            post(&w->e->workers[i], key, klen);
}

/* Worker side: keys whose leader finished, or whose response can be read
 * while it is stored; resume their waiters here. */
void
proxy_collapse_run_queue(struct proxy_worker *w)
{
    char **keys;
    size_t n;

    pthread_mutex_lock(&w->cq_lock);
    keys = w->cq;
    n = w->ncq;
    w->cq = NULL;
    w->ncq = w->cqcap = 0;
    pthread_mutex_unlock(&w->cq_lock);
    for (size_t i = 0; i < n; i++) {
        struct proxy_req *r, *next;
        size_t klen = strlen(keys[i]);
        for (r = TAILQ_FIRST(&w->collapse_waiters); r != NULL; r = next) {
            next = TAILQ_NEXT(r, collapse_link);
            if (r->cache_key_len == klen && memcmp(r->cache_key, keys[i], klen) == 0) {
                TAILQ_REMOVE(&w->collapse_waiters, r, collapse_link);
                r->collapse_waiting = false;
                proxy_cache_resume(r);
            }
        }
        free(keys[i]);
    }
    free(keys);
}

/* A waiting request that ends (client gone) leaves the queue. */
void
proxy_collapse_forget(struct proxy_req *r)
{
    if (r->collapse_waiting) {
        TAILQ_REMOVE(&r->w->collapse_waiters, r, collapse_link);
        r->collapse_waiting = false;
    }
    if (r->collapse_leader)
        proxy_collapse_release(r, COLLAPSE_FAILED);
}

void
proxy_collapse_worker_fini(struct proxy_worker *w)
{
    for (size_t i = 0; i < w->ncq; i++)
        free(w->cq[i]);
    free(w->cq);
    w->cq = NULL;
    w->ncq = w->cqcap = 0;
    pthread_mutex_destroy(&w->cq_lock);
}

/* One background revalidation per key, engine-wide: true when the caller
 * may start one (it must call proxy_refresh_release when it is over). */
bool
proxy_refresh_claim(struct proxy_engine *en, const char *key, size_t klen)
{
    struct proxy_collapse *t = en->collapse;
    uint64_t h = hash_key(key, klen), now = proxy_now_ms();
    struct collapse_entry **pp, *e;
    bool ok = false;

    if (t == NULL)
        return false;
    pthread_mutex_lock(&t->lock);
    pp = find(t, key, klen, h);
    e = *pp;
    if (e == NULL) {
        e = calloc(1, sizeof(*e) + klen + 1);
        if (e != NULL) {
            e->hash = h;
            e->klen = klen;
            memcpy(e->key, key, klen);
            *pp = e;
        }
    }
    if (e != NULL && e->refresh_until_ms <= now) {
        e->refresh_until_ms = now + 300 * 1000; /* a crashed refresh cannot block forever */
        ok = true;
    }
    pthread_mutex_unlock(&t->lock);
    return ok;
}

void
proxy_refresh_release(struct proxy_engine *en, const char *key, size_t klen)
{
    struct proxy_collapse *t = en->collapse;
    struct collapse_entry **pp, *e;

    if (t == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    pp = find(t, key, klen, hash_key(key, klen));
    e = *pp;
    if (e != NULL) {
        e->refresh_until_ms = 0;
        if (!e->in_flight && e->pass_until_ms <= proxy_now_ms()) {
            *pp = e->next;
            free(e);
        }
    }
    pthread_mutex_unlock(&t->lock);
}
