/*
 * The memory tier: small hot objects (body <= mem_object) with their parsed
 * head, kept in memory and shared by every thread, so that a hit costs no
 * system call and no checksum. Off unless cache_dir has mem=.
 *
 * It is a cache of the disk tier, never a source of its own: an entry is
 * made only from a file that cache_open() has just read and checked (head
 * CRC, and the body's CRC too, which the sendfile path never checks), and
 * every path of store.c / index.c that changes or removes a file calls
 * cache_mem_forget() for its key after the change is on disk (a store or a
 * 304 refresh published, a purge of any kind, an invalidation, an eviction,
 * a file found corrupt). A restart starts empty.
 *
 * The race: a reader that read a file before a change and inserts after
 * cache_mem_forget() ran would bring the old object back. So each shard has
 * a generation, bumped by every forget of one of its keys under the shard
 * lock; a reader samples it before it opens the file (cache_mem_open() does,
 * when it misses) and inserts only if it has not moved (cache_mem_load(), under
 * the same lock). Either the forget sees the entry and unlinks it, or the
 * insert sees the new generation and does not happen.
 *
 * Layout: entries are found by a keyed 64-bit hash (SipHash-1-3) of the key,
 * so a memory hit computes no SHA-256; all entries of one key (the object,
 * or a Vary stub and its variants) share a hash and so a bucket. Shards
 * (a power of two up to CACHE_MEM_SHARDS_MAX, as many as leave room for 16
 * objects of mem_object bytes in each; one when mem= is smaller) each have
 * a mutex, a bucket array, an exact LRU list and a byte cap (mem / shards). Entries are immutable once made
 * and reference-counted: the table holds one reference while an entry is
 * linked, each cache_obj made from it one, and each body reference handed
 * out by cache_obj_body_ref() one, so an entry evicted or forgotten while a
 * response is being sent from it lives until that send is done.
 */
#include "cache/cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache-int.h"

#define MEM_MAGIC 0x4d656d45u /* "EmeM" little-endian */
#define MEM_DEAD 0xdeadbeefu
#define SHARD_MIN_OBJECTS 16 /* a shard holds at least this many of the largest objects */
#define BUCKET_BYTES 512     /* one bucket per this many bytes of cap */
#define BUCKETS_MIN 16
#define BUCKETS_MAX (1u << 16)

/* ---- entries --------------------------------------------------------------------------------- */

struct cache_mem_ent {
    uint32_t magic;   /* MEM_MAGIC; it travels through libevent's void * (body refs) */
    atomic_uint refs; /* see the top of the file */
    uint64_t hash;    /* of the key */
    uint64_t variant; /* 0: a plain object or a Vary stub */
    uint16_t kind;    /* enum cache_kind */
    uint32_t touched; /* monotonic seconds of the last index touch (shard lock) */
    size_t charge;    /* bytes counted against the shard's cap */
    struct cache_mem_ent *hnext;
    TAILQ_ENTRY(cache_mem_ent) lru; /* in its shard's list, most recently used first */
    uint8_t id[CACHE_ID_LEN];
    int status;
    struct cache_policy policy;
    uint32_t body_crc;
    size_t key_len, vary_len, headers_len;
    uint64_t body_len;
    char data[]; /* key, vary block, header block, '\0', body */
};

struct cache_mem_shard {
    pthread_mutex_t mu;
    atomic_uint_fast64_t gen; /* bumped (under mu) by every forget of one of its keys */
    struct cache_mem_ent **buckets;
    size_t nbuckets; /* a power of two */
    TAILQ_HEAD(cache_mem_lru, cache_mem_ent) lru; /* most recently used first */
    uint64_t bytes, cap, objects, hits; /* under mu */
};

struct cache_mem {
    struct cache_mem_shard *shards;
    size_t nshards; /* a power of two */
    uint64_t max_object;
    uint64_t seed[2];
};

static void
ent_free(struct cache_mem_ent *e)
{
    e->magic = MEM_DEAD;
    free(e);
}

static void
ent_unref(struct cache_mem_ent *e)
{
    CACHE_BUG_ON(e == NULL || e->magic != MEM_MAGIC);
    if (atomic_fetch_sub(&e->refs, 1) == 1)
        ent_free(e);
}

static const char *
ent_key(const struct cache_mem_ent *e)
{
    return e->data;
}

static const char *
ent_vary(const struct cache_mem_ent *e)
{
    return e->data + e->key_len;
}

/* A new entry (one reference, the caller's), not linked. */
static struct cache_mem_ent *
ent_new(uint64_t hash, const uint8_t id[CACHE_ID_LEN], uint64_t variant, enum cache_kind kind,
        const char *key, size_t klen, const char *vary, size_t vlen, const char *hdrs, size_t hlen,
        uint64_t body_len)
{
    size_t size = sizeof(struct cache_mem_ent) + klen + vlen + hlen + 1 + (size_t)body_len;
    struct cache_mem_ent *e = malloc(size);

    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->magic = MEM_MAGIC;
    atomic_init(&e->refs, 1);
    e->hash = hash;
    e->variant = variant;
    e->kind = (uint16_t)kind;
    e->charge = size;
    memcpy(e->id, id, CACHE_ID_LEN);
    e->key_len = klen;
    e->vary_len = vlen;
    e->headers_len = hlen;
    e->body_len = body_len;
    memcpy(e->data, key, klen);
    if (vlen > 0)
        memcpy(e->data + klen, vary, vlen);
    if (hlen > 0)
        memcpy(e->data + klen + vlen, hdrs, hlen);
    e->data[klen + vlen + hlen] = '\0';
    return e;
}

/* ---- hashing --------------------------------------------------------------------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

/* SipHash-1-3 with a per-process random key: keys come from clients, and a
 * guessable hash would let them pile entries into one bucket. Words are read
 * in host byte order (the hash never leaves the process). */
static uint64_t
key_hash(const struct cache_mem *m, const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint64_t v0 = 0x736f6d6570736575ull ^ m->seed[0], v1 = 0x646f72616e646f6dull ^ m->seed[1];
    uint64_t v2 = 0x6c7967656e657261ull ^ m->seed[0], v3 = 0x7465646279746573ull ^ m->seed[1];
    uint64_t w, b = (uint64_t)len << 56;
    size_t i, n = len & ~(size_t)7;

    for (i = 0; i < n; i += 8) {
        memcpy(&w, p + i, 8);
        v3 ^= w;
        SIPROUND;
        v0 ^= w;
    }
    for (size_t j = 0; j < (len & 7); j++)
        b |= (uint64_t)p[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static struct cache_mem_shard *
shard_of(const struct cache_mem *m, uint64_t hash)
{
    return &m->shards[hash & (m->nshards - 1)];
}

static struct cache_mem_ent **
bucket_of(struct cache_mem_shard *s, uint64_t hash)
{
    return &s->buckets[(hash >> 32) & (s->nbuckets - 1)];
}

/* ---- the table (shard locked) ---------------------------------------------------------------- */

static bool
same_key(const struct cache_mem_ent *e, uint64_t hash, const char *key, size_t klen)
{
    return e->hash == hash && e->key_len == klen && memcmp(ent_key(e), key, klen) == 0;
}

/* The object or stub of a key (variant 0). */
static struct cache_mem_ent *
find_plain(struct cache_mem_shard *s, uint64_t hash, const char *key, size_t klen)
{
    struct cache_mem_ent *e;

    for (e = *bucket_of(s, hash); e != NULL; e = e->hnext)
        if (e->variant == 0 && same_key(e, hash, key, klen))
            return e;
    return NULL;
}

/* The variant of a key whose secondary key is vkey. */
static struct cache_mem_ent *
find_variant(struct cache_mem_shard *s, uint64_t hash, const char *key, size_t klen,
             const char *vkey, size_t vlen)
{
    struct cache_mem_ent *e;

    for (e = *bucket_of(s, hash); e != NULL; e = e->hnext)
        if (e->variant != 0 && e->kind == CACHE_KIND_OBJECT && same_key(e, hash, key, klen) &&
            e->vary_len == vlen && memcmp(ent_vary(e), vkey, vlen) == 0)
            return e;
    return NULL;
}

/* Removes e from the table; the table's reference goes to the caller. */
static void
unlink_ent(struct cache_mem_shard *s, struct cache_mem_ent *e)
{
    struct cache_mem_ent **pp = bucket_of(s, e->hash);

    while (*pp != NULL && *pp != e)
        pp = &(*pp)->hnext;
    CACHE_BUG_ON(*pp != e);
    *pp = e->hnext;
    e->hnext = NULL;
    TAILQ_REMOVE(&s->lru, e, lru);
    s->bytes -= e->charge;
    s->objects--;
}

/* Links e (the table takes a reference of its own). */
static void
link_ent(struct cache_mem_shard *s, struct cache_mem_ent *e)
{
    struct cache_mem_ent **b = bucket_of(s, e->hash);

    atomic_fetch_add(&e->refs, 1);
    e->hnext = *b;
    *b = e;
    TAILQ_INSERT_HEAD(&s->lru, e, lru);
    s->bytes += e->charge;
    s->objects++;
}

/* Unlinks least recently used entries until the shard is within its cap,
 * stopping at one just inserted (k1, k2); they are chained on *dead (through
 * hnext) for the caller to unreference outside the lock. */
static void
trim(struct cache_mem_shard *s, const struct cache_mem_ent *k1, const struct cache_mem_ent *k2,
     struct cache_mem_ent **dead)
{
    struct cache_mem_ent *e;

    while (s->bytes > s->cap && (e = TAILQ_LAST(&s->lru, cache_mem_lru)) != NULL && e != k1 &&
           e != k2) {
        unlink_ent(s, e);
        e->hnext = *dead;
        *dead = e;
    }
}

static void
unref_chain(struct cache_mem_ent *e)
{
    while (e != NULL) {
        struct cache_mem_ent *next = e->hnext;
        ent_unref(e);
        e = next;
    }
}

/* A hit on e: a reference for the caller, most recently used, counted;
 * true when the disk index should hear of the use (once a second). */
static bool
hit(struct cache_mem_shard *s, struct cache_mem_ent *e)
{
    struct timespec ts;
    uint32_t now;

    atomic_fetch_add(&e->refs, 1);
    if (TAILQ_FIRST(&s->lru) != e) {
        TAILQ_REMOVE(&s->lru, e, lru);
        TAILQ_INSERT_HEAD(&s->lru, e, lru);
    }
    s->hits++;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    now = (uint32_t)ts.tv_sec;
    if (e->touched == now)
        return false;
    e->touched = now;
    return true;
}

/* ---- objects --------------------------------------------------------------------------------- */

/* A cache_obj over e, taking over the caller's reference. */
static struct cache_obj *
obj_of(struct cache_mem_ent *e)
{
    struct cache_obj *o = calloc(1, sizeof(*o));

    if (o == NULL)
        return NULL;
    o->status = e->status;
    o->policy = e->policy;
    o->key = ent_key(e);
    o->key_len = e->key_len;
    o->headers = e->data + e->key_len + e->vary_len;
    o->headers_len = e->headers_len;
    o->fd = -1;
    o->body = o->headers + e->headers_len + 1;
    o->body_off = 0;
    o->body_len = e->body_len;
    memcpy(o->_id, e->id, CACHE_ID_LEN);
    o->_variant = e->variant;
    o->_body_crc = e->body_crc;
    o->_mem = e;
    return o;
}

int
cache_mem_open(struct cache *c, const char *key, size_t klen, const struct cache_hdr *req,
               size_t nreq, struct cache_mem_probe *p, struct cache_obj **out)
{
    struct cache_mem *m = c->mem;
    struct cache_mem_shard *s;
    struct cache_mem_ent *e, *stub;
    char vkey[CACHE_VARY_KEY_MAX];
    size_t vlen;
    bool touch;

    *out = NULL;
    p->hash = key_hash(m, key, klen);
    s = shard_of(m, p->hash);
    pthread_mutex_lock(&s->mu);
    /* sampled before the caller opens the file (see the top) */
    p->gen = atomic_load(&s->gen);
    e = find_plain(s, p->hash, key, klen);
    if (e == NULL || e->kind != CACHE_KIND_OBJECT) {
        if (e == NULL) {
            pthread_mutex_unlock(&s->mu);
            return CACHE_MISS;
        }
        /* a Vary stub: the secondary key is built outside the lock */
        stub = e;
        atomic_fetch_add(&stub->refs, 1);
        pthread_mutex_unlock(&s->mu);
        if (cache_vary_key(ent_vary(stub), stub->vary_len, req, nreq, vkey, sizeof(vkey), &vlen) <
            0) {
            ent_unref(stub);
            return CACHE_MISS;
        }
        pthread_mutex_lock(&s->mu);
        e = find_variant(s, p->hash, key, klen, vkey, vlen);
        if (e == NULL) {
            p->gen = atomic_load(&s->gen);
            pthread_mutex_unlock(&s->mu);
            ent_unref(stub);
            return CACHE_MISS;
        }
        touch = hit(s, e);
        pthread_mutex_unlock(&s->mu);
        ent_unref(stub);
    } else {
        touch = hit(s, e);
        pthread_mutex_unlock(&s->mu);
    }
    *out = obj_of(e);
    if (*out == NULL) {
        ent_unref(e);
        return CACHE_ENOMEM;
    }
    if (touch)
        cache_index_touch(c, e->id, e->variant);
    return CACHE_OK;
}

int
cache_mem_load(struct cache *c, const struct cache_mem_probe *p, struct cache_obj *o,
               const char *stub_vary, size_t stub_vlen)
{
    struct cache_mem *m = c->mem;
    struct cache_mem_shard *s = shard_of(m, p->hash);
    struct cache_mem_ent *e, *st = NULL, *dead = NULL;
    const char *vary = o->key + o->key_len;
    size_t vlen = (size_t)(o->headers - vary);
    char *body;
    size_t off;

    if (o->_mem != NULL || o->fd < 0 || o->body_len > m->max_object)
        return 1;
    e = ent_new(p->hash, o->_id, o->_variant, CACHE_KIND_OBJECT, o->key, o->key_len, vary, vlen,
                o->headers, o->headers_len, o->body_len);
    if (e == NULL)
        return 1;
    e->status = o->status;
    e->policy = o->policy;
    e->body_crc = o->_body_crc;
    body = e->data + e->key_len + e->vary_len + e->headers_len + 1;
    for (off = 0; off < o->body_len;) {
        ssize_t n = pread(o->fd, body + off, (size_t)o->body_len - off, (off_t)(o->body_off + off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ent_free(e);
            return CACHE_ECORRUPT; /* shorter than its meta says */
        }
        off += (size_t)n;
    }
    if (cache_crc32c(0, body, (size_t)o->body_len) != o->_body_crc) {
        ent_free(e);
        return CACHE_ECORRUPT;
    }
    if (o->_variant != 0 && stub_vary != NULL) {
        st = ent_new(p->hash, o->_id, 0, CACHE_KIND_VARY, o->key, o->key_len, stub_vary, stub_vlen,
                     NULL, 0, 0);
        if (st == NULL) {
            ent_free(e);
            return 1;
        }
    }
    pthread_mutex_lock(&s->mu);
    /* nothing when a forget ran since the file was opened (it may be older);
     * what is already there stays (another thread was quicker) */
    if (atomic_load(&s->gen) == p->gen) {
        bool fits = e->charge + (st != NULL ? st->charge : 0) <= s->cap, linked = false;
        if (o->_variant == 0) {
            if (fits && find_plain(s, p->hash, o->key, o->key_len) == NULL) {
                link_ent(s, e);
                linked = true;
            }
        } else {
            struct cache_mem_ent *have = find_plain(s, p->hash, o->key, o->key_len);
            if (have == NULL && st != NULL && fits) {
                link_ent(s, st);
                have = st;
            }
            /* the variant only under the stub it was found through */
            if (fits && have != NULL && have->kind == CACHE_KIND_VARY &&
                have->vary_len == stub_vlen && memcmp(ent_vary(have), stub_vary, stub_vlen) == 0 &&
                find_variant(s, p->hash, o->key, o->key_len, vary, vlen) == NULL) {
                link_ent(s, e);
                linked = true;
            }
        }
        if (linked)
            trim(s, e, st, &dead);
    }
    pthread_mutex_unlock(&s->mu);
    if (st != NULL)
        ent_unref(st); /* the table's reference remains if it was linked */
    unref_chain(dead);
    /* o is served from e from now on (linked or not) */
    close(o->fd);
    o->fd = -1;
    free(o->_buf);
    o->_buf = NULL;
    o->key = ent_key(e);
    o->headers = e->data + e->key_len + e->vary_len;
    o->body = o->headers + e->headers_len + 1;
    o->body_off = 0;
    o->_mem = e;
    return 0;
}

void
cache_mem_forget(struct cache *c, const char *key, size_t klen)
{
    struct cache_mem *m = c->mem;
    struct cache_mem_shard *s;
    struct cache_mem_ent **pp, *e, *dead = NULL;
    uint64_t hash;

    if (m == NULL)
        return;
    hash = key_hash(m, key, klen);
    s = shard_of(m, hash);
    pthread_mutex_lock(&s->mu);
    atomic_fetch_add(&s->gen, 1);
    pp = bucket_of(s, hash);
    while ((e = *pp) != NULL) {
        if (!same_key(e, hash, key, klen)) {
            pp = &e->hnext;
            continue;
        }
        unlink_ent(s, e); /* *pp is now the next one */
        e->hnext = dead;
        dead = e;
    }
    pthread_mutex_unlock(&s->mu);
    unref_chain(dead);
}

void
cache_mem_unref_obj(struct cache_obj *o)
{
    ent_unref(o->_mem);
    o->_mem = NULL;
}

struct cache_body *
cache_obj_body_ref(const struct cache_obj *o)
{
    if (o->_mem == NULL)
        return NULL;
    atomic_fetch_add(&o->_mem->refs, 1);
    return (struct cache_body *)o->_mem;
}

void
cache_body_unref(struct cache_body *b)
{
    ent_unref((struct cache_mem_ent *)b);
}

void
cache_mem_counters(struct cache *c, struct cache_counters *out)
{
    struct cache_mem *m = c->mem;
    size_t i;

    out->mem_hits = out->mem_bytes = out->mem_objects = 0;
    if (m == NULL)
        return;
    for (i = 0; i < m->nshards; i++) {
        struct cache_mem_shard *s = &m->shards[i];
        pthread_mutex_lock(&s->mu);
        out->mem_hits += s->hits;
        out->mem_bytes += s->bytes;
        out->mem_objects += s->objects;
        pthread_mutex_unlock(&s->mu);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static size_t
pow2_floor(uint64_t v)
{
    size_t p = 1;

    while (p <= v / 2)
        p *= 2;
    return p;
}

struct cache_mem *
cache_mem_new(uint64_t cap, uint64_t max_object)
{
    struct cache_mem *m;
    uint64_t per;
    size_t i, nb;

    if (cap == 0 || max_object == 0)
        return NULL;
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->max_object = max_object;
    m->nshards = pow2_floor(cap / (SHARD_MIN_OBJECTS * max_object));
    if (m->nshards > CACHE_MEM_SHARDS_MAX)
        m->nshards = CACHE_MEM_SHARDS_MAX;
    if (getrandom(m->seed, sizeof(m->seed), GRND_NONBLOCK) != (ssize_t)sizeof(m->seed)) {
        m->seed[0] = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)m;
        m->seed[1] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
    }
    m->shards = calloc(m->nshards, sizeof(*m->shards));
    if (m->shards == NULL) {
        free(m);
        return NULL;
    }
    per = cap / m->nshards;
    nb = pow2_floor(per / BUCKET_BYTES);
    nb = nb < BUCKETS_MIN ? BUCKETS_MIN : nb > BUCKETS_MAX ? BUCKETS_MAX : nb;
    for (i = 0; i < m->nshards; i++) {
        struct cache_mem_shard *s = &m->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        TAILQ_INIT(&s->lru);
        atomic_init(&s->gen, 0);
        s->cap = per;
        s->nbuckets = nb;
        s->buckets = calloc(nb, sizeof(*s->buckets));
        if (s->buckets == NULL) {
            m->nshards = i + 1;
            cache_mem_free(m);
            return NULL;
        }
    }
    return m;
}

/* Drops the table's references; entries still referenced by objects or body
 * references live until those go (they do not point back here). */
void
cache_mem_free(struct cache_mem *m)
{
    size_t i, b;

    if (m == NULL)
        return;
    for (i = 0; i < m->nshards; i++) {
        struct cache_mem_shard *s = &m->shards[i];
        for (b = 0; s->buckets != NULL && b < s->nbuckets; b++) {
            struct cache_mem_ent *e = s->buckets[b], *next;
            for (; e != NULL; e = next) {
                next = e->hnext;
                ent_unref(e);
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(m->shards);
    free(m);
}
