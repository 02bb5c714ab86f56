/*
 * The cache handle: the in-memory index (id -> size, last use, key, tags)
 * in CACHE_STRIPES stripes, each with its own mutex, hash chains and LRU
 * list; eviction to max_size (approximate LRU: the oldest of a few stripes'
 * LRU tails, in bounded slices run by the committing thread); the rebuild
 * from the files in a background thread; counters; purges.
 *
 * Lookups do not consult the index (they open the file by name, or find the
 * object in the memory tier), so the cache serves while the rebuild runs;
 * the index drives eviction and purges, and both tell the memory tier.
 */
#include "cache/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache-int.h"

#define EVICT_SLICE 64     /* objects evicted per call at most */
#define EVICT_CANDIDATES 4 /* stripes' LRU tails compared per victim */
#define DEFAULT_MAX_OBJECT (64ull * 1024 * 1024)
#define DEFAULT_MEM_OBJECT (64ull * 1024)
#define TAGS_MAX 4096

/* ---- index ----------------------------------------------------------------------------------- */

static struct cache_stripe *
stripe_of(struct cache *c, const uint8_t id[CACHE_ID_LEN])
{
    return &c->stripes[id[0] % CACHE_STRIPES];
}

static size_t
bucket_of(const uint8_t id[CACHE_ID_LEN], uint64_t variant)
{
    uint64_t h;

    memcpy(&h, id + 8, sizeof(h));
    return (size_t)((h ^ variant) % CACHE_BUCKETS);
}

static void
ent_free(struct cache_ent *e)
{
    free(e->key);
    free(e->tags);
    free(e);
}

/* Unlinks e from its chain and LRU (stripe locked); the caller frees it. */
static void
ent_unlink(struct cache *c, struct cache_stripe *s, struct cache_ent *e)
{
    struct cache_ent **pp = &s->buckets[bucket_of(e->id, e->variant)];

    while (*pp != NULL && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp == e)
        *pp = e->hnext;
    TAILQ_REMOVE(&s->lru, e, lru);
    atomic_fetch_sub(&c->n.bytes, e->size);
    atomic_fetch_sub(&c->n.objects, 1);
}

/* Unlinks e (stripe locked) and frees it. */
static void
ent_drop(struct cache *c, struct cache_stripe *s, struct cache_ent *e)
{
    ent_unlink(c, s, e);
    ent_free(e);
}

static struct cache_ent *
ent_find(struct cache_stripe *s, const uint8_t id[CACHE_ID_LEN], uint64_t variant)
{
    struct cache_ent *e = s->buckets[bucket_of(id, variant)];

    while (e != NULL && (e->variant != variant || memcmp(e->id, id, CACHE_ID_LEN) != 0))
        e = e->hnext;
    return e;
}

void
cache_index_put(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant, uint64_t size,
                const char *key, size_t klen, char *tags, bool if_absent)
{
    struct cache_stripe *s = stripe_of(c, id);
    struct cache_ent *e, *old;
    size_t b = bucket_of(id, variant);

    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->key = malloc(klen + 1)) == NULL) {
        free(e);
        free(tags);
        return; /* not indexed: never evicted by size, still purgeable by key */
    }
    memcpy(e->id, id, CACHE_ID_LEN);
    e->variant = variant;
    e->size = size;
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    e->tags = tags;
    e->last_use = atomic_fetch_add(&c->clock, 1);
    pthread_mutex_lock(&s->mu);
    old = ent_find(s, id, variant);
    if (old != NULL && if_absent) {
        pthread_mutex_unlock(&s->mu);
        free(e->key);
        free(e->tags);
        free(e);
        return;
    }
    if (old != NULL)
        ent_drop(c, s, old);
    e->hnext = s->buckets[b];
    s->buckets[b] = e;
    TAILQ_INSERT_HEAD(&s->lru, e, lru);
    atomic_fetch_add(&c->n.bytes, size);
    atomic_fetch_add(&c->n.objects, 1);
    pthread_mutex_unlock(&s->mu);
}

void
cache_index_touch(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant)
{
    struct cache_stripe *s = stripe_of(c, id);
    struct cache_ent *e;

    pthread_mutex_lock(&s->mu);
    e = ent_find(s, id, variant);
    if (e != NULL) {
        e->last_use = atomic_fetch_add(&c->clock, 1);
        TAILQ_REMOVE(&s->lru, e, lru);
        TAILQ_INSERT_HEAD(&s->lru, e, lru);
    }
    pthread_mutex_unlock(&s->mu);
}

void
cache_index_remove(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant)
{
    struct cache_stripe *s = stripe_of(c, id);
    struct cache_ent *e;

    pthread_mutex_lock(&s->mu);
    e = ent_find(s, id, variant);
    if (e != NULL)
        ent_drop(c, s, e);
    pthread_mutex_unlock(&s->mu);
}

/* ---- eviction -------------------------------------------------------------------------------- */

void
cache_evict(struct cache *c)
{
    int done;

    for (done = 0; done < EVICT_SLICE && atomic_load(&c->n.bytes) > c->conf.max_size; done++) {
        unsigned start = atomic_fetch_add(&c->evict_cursor, EVICT_CANDIDATES), k, best = 0;
        unsigned seen = 0;
        uint64_t best_use = UINT64_MAX;
        bool found = false;
        struct cache_stripe *s;
        struct cache_ent *e;

        /* the oldest among the LRU tails of EVICT_CANDIDATES non-empty stripes
         * (stopping at the first non-empty stripe once the first few were empty
         * made the victim any object when the cache holds few: even the one
         * just stored) */
        for (k = 0; k < CACHE_STRIPES && seen < EVICT_CANDIDATES; k++) {
            s = &c->stripes[(start + k) % CACHE_STRIPES];
            pthread_mutex_lock(&s->mu);
            if (!TAILQ_EMPTY(&s->lru)) {
                seen++;
                if (TAILQ_LAST(&s->lru, cache_lru_head)->last_use < best_use) {
                    best_use = TAILQ_LAST(&s->lru, cache_lru_head)->last_use;
                    best = (start + k) % CACHE_STRIPES;
                    found = true;
                }
            }
            pthread_mutex_unlock(&s->mu);
        }
        if (!found)
            return;
        s = &c->stripes[best];
        pthread_mutex_lock(&s->mu);
        e = TAILQ_LAST(&s->lru, cache_lru_head);
        if (e == NULL) {
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        ent_unlink(c, s, e);
        pthread_mutex_unlock(&s->mu);
        cache_unlink(c, e->id, e->variant);
        cache_mem_forget(c, e->key, strlen(e->key)); /* after the unlink: see mem.c */
        ent_free(e);
        atomic_fetch_add(&c->n.evictions, 1);
    }
}

/* ---- tags ------------------------------------------------------------------------------------ */

char *
cache_tags_from_headers(const char *h, size_t len)
{
    struct cache_obj view;
    struct cache_hdr f;
    size_t pos = 0, out = 0;
    char buf[TAGS_MAX];
    char *r;

    memset(&view, 0, sizeof(view));
    view.headers = h;
    view.headers_len = len;
    buf[out++] = ' ';
    while (cache_obj_header_next(&view, &pos, &f)) {
        size_t i = 0;
        if (!cache_hdr_name_is(&f, "surrogate-key") && !cache_hdr_name_is(&f, "cache-tag"))
            continue;
        while (i < f.vlen) {
            size_t start;
            while (i < f.vlen && (f.value[i] == ' ' || f.value[i] == ',' || f.value[i] == '\t'))
                i++;
            start = i;
            while (i < f.vlen && f.value[i] != ' ' && f.value[i] != ',' && f.value[i] != '\t')
                i++;
            if (i > start && out + (i - start) + 2 <= sizeof(buf)) {
                memcpy(buf + out, f.value + start, i - start);
                out += i - start;
                buf[out++] = ' ';
            }
        }
    }
    if (out == 1)
        return NULL;
    r = malloc(out + 1);
    if (r == NULL)
        return NULL;
    memcpy(r, buf, out);
    r[out] = '\0';
    return r;
}

/* ---- rebuild --------------------------------------------------------------------------------- */

static bool
hexdigits(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static void
rebuild_file(struct cache *c, const char *rel, const char *name)
{
    struct cache_disk_meta m;
    uint8_t id[CACHE_ID_LEN];
    char path[300], *buf = NULL;
    size_t len = strlen(name), i;
    uint64_t variant = 0;
    int fd, rc;

    if (!(len == CACHE_ID_HEX || (len == CACHE_ID_HEX + 17 && name[CACHE_ID_HEX] == '-')) ||
        !hexdigits(name, CACHE_ID_HEX))
        return;
    snprintf(path, sizeof(path), "%s/%s", rel, name);
    for (i = 0; i < CACHE_ID_LEN; i++) {
        unsigned hi = (unsigned)(name[2 * i] <= '9' ? name[2 * i] - '0' : name[2 * i] - 'a' + 10);
        unsigned lo =
            (unsigned)(name[2 * i + 1] <= '9' ? name[2 * i + 1] - '0' : name[2 * i + 1] - 'a' + 10);
        id[i] = (uint8_t)(hi << 4 | lo);
    }
    if (len > CACHE_ID_HEX)
        variant = strtoull(name + CACHE_ID_HEX + 1, NULL, 16);
    fd = openat(c->dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    rc = cache_file_read_head(fd, &m, &buf);
    close(fd);
    if (rc == CACHE_ECORRUPT || (rc == 0 && m.variant != variant)) {
        atomic_fetch_add(&c->n.corrupt, 1);
        (void)unlinkat(c->dirfd, path, 0);
        if (rc == 0) /* a lookup may have loaded it meanwhile */
            cache_mem_forget(c, buf, m.key_len);
    } else if (rc == 0) {
        cache_index_put(c, id, variant,
                        sizeof(m) + (uint64_t)m.key_len + m.vary_len + m.headers_len + m.body_len,
                        buf, m.key_len,
                        cache_tags_from_headers(buf + m.key_len + m.vary_len, m.headers_len), true);
    }
    free(buf);
}

static void
rebuild_dir(struct cache *c, const char *rel, int depth)
{
    struct dirent *de;
    DIR *d;
    int fd = openat(c->dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return;
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return;
    }
    while (!atomic_load(&c->stop) && (de = readdir(d)) != NULL) {
        char sub[16];
        if (depth < 2) {
            if (strlen(de->d_name) != 2 || !hexdigits(de->d_name, 2))
                continue;
            if (depth == 0)
                snprintf(sub, sizeof(sub), "%.2s", de->d_name);
            else
                snprintf(sub, sizeof(sub), "%.2s/%.2s", rel, de->d_name);
            rebuild_dir(c, sub, depth + 1);
        } else {
            rebuild_file(c, rel, de->d_name);
        }
    }
    closedir(d);
}

static void *
rebuild_main(void *arg)
{
    struct cache *c = arg;

    rebuild_dir(c, ".", 0);
    pthread_mutex_lock(&c->ready_mu);
    c->ready = true;
    pthread_cond_broadcast(&c->ready_cv);
    pthread_mutex_unlock(&c->ready_mu);
    cache_evict(c);
    return NULL;
}

void
cache_wait_ready(struct cache *c)
{
    pthread_mutex_lock(&c->ready_mu);
    while (!c->ready)
        pthread_cond_wait(&c->ready_cv, &c->ready_mu);
    pthread_mutex_unlock(&c->ready_mu);
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static int
mkdir_p(const char *path)
{
    char tmp[4096];
    size_t len = strlen(path), i;

    if (len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, len + 1);
    for (i = 1; i <= len; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char ch = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -1;
            tmp[i] = ch;
        }
    }
    return 0;
}

/* Deletes what a crash left in tmp/. */
static void
clean_tmp(struct cache *c)
{
    struct dirent *de;
    DIR *d;
    int fd = openat(c->dirfd, CACHE_TMP_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return;
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            (void)unlinkat(fd, de->d_name, 0);
    closedir(d);
}

struct cache *
cache_new(const struct cache_main *mc, char *err, size_t errlen)
{
    struct cache *c;
    size_t i;

    if (mc == NULL || mc->dir == NULL) {
        snprintf(err, errlen, "cache: no cache_dir");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->dir = strdup(mc->dir)) == NULL) {
        free(c);
        snprintf(err, errlen, "cache: out of memory");
        return NULL;
    }
    c->conf = *mc;
    c->conf.dir = c->dir;
    if (c->conf.max_object == 0)
        c->conf.max_object =
            mc->max_size / 8 < DEFAULT_MAX_OBJECT ? mc->max_size / 8 : DEFAULT_MAX_OBJECT;
    c->dirfd = -1;
    for (i = 0; i < CACHE_STRIPES; i++) {
        pthread_mutex_init(&c->stripes[i].mu, NULL);
        TAILQ_INIT(&c->stripes[i].lru);
    }
    pthread_mutex_init(&c->ready_mu, NULL);
    pthread_cond_init(&c->ready_cv, NULL);
    pthread_rwlock_init(&c->purge_mu, NULL);
    if (c->conf.mem > 0) {
        if (c->conf.mem_object == 0)
            c->conf.mem_object =
                c->conf.mem < DEFAULT_MEM_OBJECT ? c->conf.mem : DEFAULT_MEM_OBJECT;
        c->mem = cache_mem_new(c->conf.mem, c->conf.mem_object);
        if (c->mem == NULL) {
            snprintf(err, errlen, "cache: out of memory for the memory tier");
            cache_free(c);
            return NULL;
        }
    }
    if (mkdir_p(c->dir) < 0 || (c->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (mkdirat(c->dirfd, CACHE_TMP_DIR, 0755) < 0 && errno != EEXIST)) {
        snprintf(err, errlen, "cache_dir %s: %s", c->dir, strerror(errno));
        cache_free(c);
        return NULL;
    }
    clean_tmp(c);
    if (pthread_create(&c->rebuild_thread, NULL, rebuild_main, c) != 0) {
        snprintf(err, errlen, "cache: cannot start the rebuild thread");
        cache_free(c);
        return NULL;
    }
    c->rebuild_started = true;
    return c;
}

void
cache_free(struct cache *c)
{
    size_t i, b;

    if (c == NULL)
        return;
    atomic_store(&c->stop, true);
    if (c->rebuild_started)
        pthread_join(c->rebuild_thread, NULL);
    for (i = 0; i < CACHE_STRIPES; i++) {
        for (b = 0; b < CACHE_BUCKETS; b++) {
            struct cache_ent *e = c->stripes[i].buckets[b], *next;
            for (; e != NULL; e = next) {
                next = e->hnext;
                free(e->key);
                free(e->tags);
                free(e);
            }
        }
        pthread_mutex_destroy(&c->stripes[i].mu);
    }
    pthread_mutex_destroy(&c->ready_mu);
    pthread_cond_destroy(&c->ready_cv);
    pthread_rwlock_destroy(&c->purge_mu);
    cache_mem_free(c->mem);
    if (c->dirfd >= 0)
        close(c->dirfd);
    free(c->dir);
    free(c);
}

void
cache_counters_get(struct cache *c, struct cache_counters *o)
{
    o->hits = atomic_load(&c->n.hits);
    o->misses = atomic_load(&c->n.misses);
    o->stores = atomic_load(&c->n.stores);
    o->store_refused = atomic_load(&c->n.store_refused);
    o->evictions = atomic_load(&c->n.evictions);
    o->write_errors = atomic_load(&c->n.write_errors);
    o->corrupt = atomic_load(&c->n.corrupt);
    o->purges = atomic_load(&c->n.purges);
    o->refreshes = atomic_load(&c->n.refreshes);
    o->invalidations = atomic_load(&c->n.invalidations);
    o->bytes = atomic_load(&c->n.bytes);
    o->objects = atomic_load(&c->n.objects);
    cache_mem_counters(c, o);
}

/* ---- purge ----------------------------------------------------------------------------------- */

int
cache_purge_key(struct cache *c, const char *key, size_t klen, bool soft)
{
    uint8_t id[CACHE_ID_LEN];
    int n;

    cache_key_id(key, klen, id);
    pthread_rwlock_wrlock(&c->purge_mu);
    atomic_fetch_add(&c->purge_seq, 1);
    n = cache_file_purge_id(c, id, key, klen, soft);
    pthread_rwlock_unlock(&c->purge_mu);
    if (n > 0)
        atomic_fetch_add(&c->n.purges, (uint64_t)n);
    return n;
}

/* RFC 9111 4.4. Cheap: the files go (unlink, index entry) but the directory
 * is not fsynced, and no lock is taken; writers of the id that started
 * earlier notice the generation bump and do not publish. */
int
cache_invalidate_key(struct cache *c, const char *key, size_t klen)
{
    uint8_t id[CACHE_ID_LEN];
    int n;

    if (key == NULL || klen == 0 || klen > CACHE_KEY_MAX)
        return CACHE_EINVAL;
    cache_key_id(key, klen, id);
    /* before the unlinks: a commit that passed its first check re-checks
     * after its rename and takes back what it published */
    atomic_fetch_add(&c->inval_gen[cache_inval_slot(id)], 1);
    n = cache_file_invalidate_id(c, id, key, klen);
    if (n > 0)
        atomic_fetch_add(&c->n.invalidations, (uint64_t)n);
    return n;
}

/* Collects the distinct primary ids (and their keys) of the entries that
 * match, then purges them. */
struct purge_target {
    uint8_t id[CACHE_ID_LEN];
    char *key; /* a copy: the entry may go once the stripe is unlocked */
};

static int
purge_matching(struct cache *c, const char *s, size_t len, bool tag, bool soft)
{
    struct purge_target *ids = NULL;
    size_t nids = 0, cap = 0, i, b, k;
    int total = 0, rc = 0;
    char needle[TAGS_MAX + 2];

    if (len == 0 || (tag && len > TAGS_MAX))
        return CACHE_EINVAL;
    if (tag) {
        needle[0] = ' ';
        memcpy(needle + 1, s, len);
        needle[len + 1] = ' ';
        needle[len + 2] = '\0';
    }
    cache_wait_ready(c);
    pthread_rwlock_wrlock(&c->purge_mu);
    atomic_fetch_add(&c->purge_seq, 1);
    for (i = 0; i < CACHE_STRIPES && rc == 0; i++) {
        struct cache_stripe *st = &c->stripes[i];
        pthread_mutex_lock(&st->mu);
        for (b = 0; b < CACHE_BUCKETS && rc == 0; b++) {
            struct cache_ent *e;
            for (e = st->buckets[b]; e != NULL; e = e->hnext) {
                bool hit = tag ? e->tags != NULL && strstr(e->tags, needle) != NULL
                               : strncmp(e->key, s, len) == 0;
                if (!hit)
                    continue;
                for (k = 0; k < nids && memcmp(ids[k].id, e->id, CACHE_ID_LEN) != 0; k++)
                    ;
                if (k < nids)
                    continue;
                if (nids == cap) {
                    size_t ncap = cap ? cap * 2 : 64;
                    void *p = realloc(ids, ncap * sizeof(*ids));
                    if (p == NULL) {
                        rc = CACHE_ENOMEM;
                        break;
                    }
                    ids = p;
                    cap = ncap;
                }
                if ((ids[nids].key = strdup(e->key)) == NULL) {
                    rc = CACHE_ENOMEM;
                    break;
                }
                memcpy(ids[nids++].id, e->id, CACHE_ID_LEN);
            }
        }
        pthread_mutex_unlock(&st->mu);
    }
    for (k = 0; k < nids && rc == 0; k++) {
        int n = cache_file_purge_id(c, ids[k].id, ids[k].key, strlen(ids[k].key), soft);
        if (n < 0)
            rc = n;
        else
            total += n;
    }
    pthread_rwlock_unlock(&c->purge_mu);
    for (k = 0; k < nids; k++)
        free(ids[k].key);
    free(ids);
    if (total > 0)
        atomic_fetch_add(&c->n.purges, (uint64_t)total);
    return rc < 0 ? rc : total;
}

int
cache_purge_prefix(struct cache *c, const char *prefix, size_t plen, bool soft)
{
    return purge_matching(c, prefix, plen, false, soft);
}

int
cache_purge_tag(struct cache *c, const char *tag, size_t tlen, bool soft)
{
    return purge_matching(c, tag, tlen, true, soft);
}
