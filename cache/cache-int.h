/*
 * cache — private declarations shared by the files of the cache module.
 * Nothing outside cache/ includes this header.
 */
#ifndef EDGE_CACHE_INT_H
#define EDGE_CACHE_INT_H

#include "cache/cache.h"

#include <stdio.h>
#include <stdlib.h>

/* For impossible states: says where, then aborts (always on). */
#define CACHE_BUG_ON(cond)                                                                         \
    do {                                                                                           \
        if (__builtin_expect(!!(cond), 0)) {                                                       \
            fprintf(stderr, "cache: BUG at %s:%d: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- policy.c helpers ------------------------------------------------------------------------ */

bool cache_hdr_name_is(const struct cache_hdr *h, const char *lower_name);
bool cache_str_ieq(const char *a, size_t alen, const char *b);
bool cache_is_tchar(unsigned char c);
void cache_trim(const char **s, size_t *len);

/* ---- key.c ----------------------------------------------------------------------------------- */

/* 64 bits of SHA-256 of a Vary secondary key; never 0 (0 = "not a variant"). */
uint64_t cache_variant_id(const char *vkey, size_t len);

/* ---- crc32c.c -------------------------------------------------------------------------------- */

/* CRC-32C (Castagnoli), slice-by-8 in software. Start with crc = 0. */
uint32_t cache_crc32c(uint32_t crc, const void *data, size_t len);

/* ---- on-disk layout (store.c) ---------------------------------------------------------------- */

#define CACHE_MAGIC 0x43474445u /* "EDGC" read as a little-endian uint32 */
#define CACHE_VERSION 1
#define CACHE_TMP_DIR "tmp"

enum cache_kind { CACHE_KIND_OBJECT = 1, CACHE_KIND_VARY = 2 };

/* The fixed header at offset 0 of every file; host byte order. Zeroed before
 * being filled, so padding is deterministic for the CRC. head_crc covers this
 * struct (head_crc = 0) — tail_crc, inside it, covers key + vary + headers. */
struct cache_disk_meta {
    uint32_t magic;
    uint16_t version;
    uint16_t kind; /* enum cache_kind */
    uint32_t head_crc;
    uint32_t tail_crc;
    uint32_t body_crc;
    uint32_t key_len, vary_len, headers_len;
    uint32_t status;
    uint32_t pol_flags; /* enum cache_pol_flag */
    uint64_t body_len;
    uint64_t variant; /* variant id, 0 for a plain object or a vary stub */
    int64_t request_time, response_time, initial_age, lifetime, swr, sie, date, last_modified;
};

/* ---- the cache (index.c + store.c) ----------------------------------------------------------- */

#include <pthread.h>
#include <sys/queue.h>
#include <stdatomic.h>

#define CACHE_STRIPES 64
#define CACHE_BUCKETS 1024     /* per stripe */
#define CACHE_INVAL_SLOTS 4096 /* invalidation generations, by object id */

struct cache_ent {
    uint8_t id[CACHE_ID_LEN];
    uint64_t variant;
    uint64_t size;     /* file size */
    uint64_t last_use; /* cache->clock tick */
    char *key;         /* owned */
    char *tags;        /* owned: " a b c " (space-delimited, for substring search) or NULL */
    struct cache_ent *hnext;
    TAILQ_ENTRY(cache_ent) lru; /* in its stripe's list, most recently used first */
};

struct cache_stripe {
    pthread_mutex_t mu;
    struct cache_ent *buckets[CACHE_BUCKETS];
    TAILQ_HEAD(cache_lru_head, cache_ent) lru; /* most recently used first */
};

#define CACHE_MEM_SHARDS_MAX 64
struct cache_mem; /* the memory tier (mem.c) */

struct cache {
    char *dir;
    int dirfd;
    struct cache_main conf;
    struct cache_stripe stripes[CACHE_STRIPES];
    atomic_uint_fast64_t clock;     /* LRU ticks */
    atomic_uint_fast64_t purge_seq; /* bumped by every purge (writers compare) */
    atomic_uint evict_cursor;
    atomic_bool stop;
    pthread_t rebuild_thread;
    bool rebuild_started;
    pthread_mutex_t ready_mu;
    pthread_cond_t ready_cv;
    bool ready;
    pthread_rwlock_t purge_mu; /* purges: write; commits (rename): read */
    /* Bumped by cache_invalidate_key() for the ids of a slot (cache_inval_slot()):
     * a writer records its slot's value and does not publish when it moved
     * (checked before and again after the rename, see cache_writer_commit). */
    atomic_uint_fast32_t inval_gen[CACHE_INVAL_SLOTS];
    struct cache_mem *mem; /* NULL: mem=0 */
    struct {
        atomic_uint_fast64_t hits, misses, stores, store_refused, evictions, write_errors, corrupt,
            purges, refreshes, invalidations, bytes, objects;
    } n;
};

static inline size_t
cache_inval_slot(const uint8_t id[CACHE_ID_LEN])
{
    return ((size_t)id[1] << 8 | id[2]) % CACHE_INVAL_SLOTS;
}

/* ---- the memory tier (mem.c; see the comment at its top) ------------------------------------ */

struct cache_mem *cache_mem_new(uint64_t cap, uint64_t max_object);
void cache_mem_free(struct cache_mem *m);
/* What a memory miss hands to the disk path: the key's hash and its shard's
 * generation, sampled before the file is opened. */
struct cache_mem_probe {
    uint64_t hash, gen;
};
/* CACHE_OK + *out (backed by memory), CACHE_MISS (*p filled: go to disk),
 * or CACHE_ENOMEM. Counts nothing in c->n. */
int cache_mem_open(struct cache *c, const char *key, size_t klen, const struct cache_hdr *req,
                   size_t nreq, struct cache_mem_probe *p, struct cache_obj **out);
/* After a disk open with probe p: reads o's body (if <= mem_object), checks
 * its CRC and makes o memory-backed (its fd closed), inserting it, with its
 * Vary stub (stub_vary: the stub's name list, for a variant), into the table
 * unless a forget ran since p was taken. 0: o is memory-backed; 1: not (o
 * unchanged); CACHE_ECORRUPT: the body does not match its CRC (o unchanged). */
int cache_mem_load(struct cache *c, const struct cache_mem_probe *p, struct cache_obj *o,
                   const char *stub_vary, size_t stub_vlen);
/* Every entry of key (object, stub, variants) leaves memory. Call after any
 * change of the key's files is on disk. No-op without a memory tier. */
void cache_mem_forget(struct cache *c, const char *key, size_t klen);
void cache_mem_unref_obj(struct cache_obj *o);
void cache_mem_counters(struct cache *c, struct cache_counters *out);

/* file name "ab/cd/<hex>[-<16 hex>]" of an id (+ variant) into buf (>= 64) */
void cache_path(const uint8_t id[CACHE_ID_LEN], uint64_t variant, char *buf, size_t cap);
/* Reads and checks a file's meta, key, vary and header blocks (into *buf,
 * malloc'd). 0, CACHE_ECORRUPT, CACHE_EIO. */
int cache_file_read_head(int fd, struct cache_disk_meta *m, char **buf);
/* Tags of a header block: " a b " or NULL (malloc'd). */
char *cache_tags_from_headers(const char *h, size_t len);

void cache_index_put(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant,
                     uint64_t size, const char *key, size_t klen, char *tags, bool if_absent);
void cache_index_touch(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant);
void cache_index_remove(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant);
void cache_evict(struct cache *c);
/* Purges every file of a primary id (object, or stub + variants); hard:
 * unlinked and the directory fsynced; soft: marked in place. Count of objects. */
int cache_file_purge_id(struct cache *c, const uint8_t id[CACHE_ID_LEN], const char *key,
                        size_t klen, bool soft);
/* The same as a hard purge without the directory fsync (cache_invalidate_key). */
int cache_file_invalidate_id(struct cache *c, const uint8_t id[CACHE_ID_LEN], const char *key,
                             size_t klen);
/* unlink the file of (id, variant) relative to dirfd, ignoring ENOENT */
void cache_unlink(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant);

#endif /* EDGE_CACHE_INT_H */
