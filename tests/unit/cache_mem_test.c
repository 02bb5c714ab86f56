/*
 * Unit tests of the memory tier (cache/mem.c through the public API): a hit
 * from memory, and that memory never serves what the disk tier would not —
 * after a hard or soft purge by URL, prefix or tag, an invalidation, a
 * replacement by a newer store, a 304 refresh, an eviction, a restart, a
 * body that fails its CRC; Vary variants; the byte cap (LRU); objects and
 * body references that outlive their entry; and threads opening, storing and
 * purging at once (the generation check of a load racing a change).
 */
#include "cache/cache.h"

#include "cache/cache-int.h" /* cache_mem_open / cache_mem_load: the race, step by step */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 1700000000

static char dir[64];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cache_mem_test.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int
teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static struct cache *
open_cache(uint64_t max_size, uint64_t max_object, uint64_t mem, uint64_t mem_object)
{
    struct cache_main mc = {.dir = dir,
                            .max_size = max_size,
                            .max_object = max_object,
                            .mem = mem,
                            .mem_object = mem_object};
    char err[256];
    struct cache *c = cache_new(&mc, err, sizeof(err));

    if (c == NULL)
        fail_msg("%s", err);
    cache_wait_ready(c);
    return c;
}

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static int
store_as(struct cache *c, const char *key, const struct cache_hdr *req, size_t nreq,
         const struct cache_hdr *resp, size_t nresp, const char *body, size_t blen)
{
    struct cache_resp_info ri;
    struct cache_writer *w;
    int rc = 0;

    cache_resp_parse(resp, nresp, 200, &ri);
    w = cache_writer_new(c,
                         &(struct cache_store_args){.key = key,
                                                    .key_len = strlen(key),
                                                    .req = req,
                                                    .nreq = nreq,
                                                    .resp = resp,
                                                    .nresp = nresp,
                                                    .ri = &ri,
                                                    .request_time = T0,
                                                    .response_time = T0,
                                                    .content_length = -1},
                         &rc);
    if (w == NULL)
        return rc;
    if ((rc = cache_writer_write(w, body, blen)) < 0) {
        cache_writer_abort(w);
        return rc;
    }
    return cache_writer_commit(w);
}

static const struct cache_hdr basic[] = {
    H("Cache-Control", "max-age=60"),
    H("ETag", "\"v1\""),
    H("Content-Type", "text/plain"),
    H("Surrogate-Key", "news sport"),
};
#define NBASIC (sizeof(basic) / sizeof(basic[0]))

static int
store(struct cache *c, const char *key, const char *body)
{
    return store_as(c, key, NULL, 0, basic, NBASIC, body, strlen(body));
}

/* The body of o, wherever it is. */
static void
body_is(const struct cache_obj *o, const char *want)
{
    char buf[4096];

    assert_int_equal(o->body_len, strlen(want));
    if (o->body != NULL) {
        assert_int_equal(o->fd, -1);
        assert_memory_equal(o->body, want, o->body_len);
        return;
    }
    assert_true(o->fd >= 0);
    assert_int_equal(pread(o->fd, buf, o->body_len, (off_t)o->body_off), (ssize_t)o->body_len);
    assert_memory_equal(buf, want, o->body_len);
}

static uint64_t
mem_hits(struct cache *c)
{
    struct cache_counters n;

    cache_counters_get(c, &n);
    return n.mem_hits;
}

/* Opens key; asserts a hit with body want, from memory (true) or disk (false). */
static void
hit_from(struct cache *c, const char *key, const struct cache_hdr *req, size_t nreq,
         const char *want, bool memory)
{
    struct cache_obj *o = NULL;
    uint64_t before = mem_hits(c);

    assert_int_equal(cache_open(c, key, strlen(key), req, nreq, &o), CACHE_OK);
    body_is(o, want);
    assert_int_equal(mem_hits(c) - before, memory ? 1 : 0);
    cache_obj_free(o);
}

static void
miss(struct cache *c, const char *key, const struct cache_hdr *req, size_t nreq, int want)
{
    struct cache_obj *o = NULL;

    assert_int_equal(cache_open(c, key, strlen(key), req, nreq, &o), want);
    assert_null(o);
}

/* In memory: a disk hit loads it, the next one is from memory. */
static void
warm(struct cache *c, const char *key, const char *body)
{
    hit_from(c, key, NULL, 0, body, false);
    hit_from(c, key, NULL, 0, body, true);
}

static bool
has_header(const struct cache_obj *o, const char *name, const char *value)
{
    struct cache_hdr h;
    size_t pos = 0;

    while (cache_obj_header_next(o, &pos, &h))
        if (h.nlen == strlen(name) && strncasecmp(h.name, name, h.nlen) == 0 &&
            (value == NULL || (h.vlen == strlen(value) && memcmp(h.value, value, h.vlen) == 0)))
            return true;
    return false;
}

static void
test_hit_from_memory(void **state)
{
    struct cache *c = open_cache(1 << 20, 0, 1 << 20, 0);
    struct cache_counters n;
    struct cache_obj *o;
    struct cache_decision d;
    char cond[256];

    (void)state;
    miss(c, "http://h/a", NULL, 0, CACHE_MISS);
    assert_int_equal(store(c, "http://h/a", "hello"), 0);
    hit_from(c, "http://h/a", NULL, 0, "hello", false); /* from disk: loaded */
    assert_int_equal(cache_open(c, "http://h/a", 10, NULL, 0, &o), CACHE_OK);
    assert_non_null(o->body);
    assert_int_equal(o->fd, -1);
    assert_int_equal(o->status, 200);
    assert_int_equal(o->key_len, 10);
    assert_memory_equal(o->key, "http://h/a", 10);
    assert_true(has_header(o, "ETag", "\"v1\""));
    assert_true(has_header(o, "Content-Type", "text/plain"));
    assert_int_equal(o->policy.lifetime, 60);
    cache_decide(&o->policy, NULL, NULL, T0 + 10, &d);
    assert_int_equal(d.use, CACHE_USE_FRESH);
    assert_int_equal(cache_obj_verify_body(c, o), 0);
    assert_true(cache_conditional_headers(o, cond, sizeof(cond)) > 0);
    assert_non_null(strstr(cond, "If-None-Match: \"v1\""));
    cache_obj_free(o);
    cache_counters_get(c, &n);
    assert_int_equal(n.hits, 2);
    assert_int_equal(n.mem_hits, 1);
    assert_int_equal(n.mem_objects, 1);
    assert_true(n.mem_bytes > 5);
    /* an empty body is an object too */
    assert_int_equal(store(c, "http://h/empty", ""), 0);
    warm(c, "http://h/empty", "");
    cache_free(c);
}

static void
test_mem_object_limit_and_off(void **state)
{
    char big[2050];
    struct cache *c = open_cache(1 << 20, 0, 1 << 20, 2048);
    struct cache_obj *o;

    (void)state;
    memset(big, 'b', sizeof(big) - 1); /* 2049 bytes: one over mem_object */
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(store(c, "http://h/big", big), 0);
    hit_from(c, "http://h/big", NULL, 0, big, false);
    hit_from(c, "http://h/big", NULL, 0, big, false); /* over mem_object: never in memory */
    big[2048] = '\0';
    assert_int_equal(store(c, "http://h/fits", big), 0);
    warm(c, "http://h/fits", big);
    assert_int_equal(cache_open(c, "http://h/big", 12, NULL, 0, &o), CACHE_OK);
    assert_null(o->body);
    assert_null(cache_obj_body_ref(o));
    cache_obj_free(o);
    cache_free(c);
    /* mem=0: off */
    c = open_cache(1 << 20, 0, 0, 0);
    hit_from(c, "http://h/fits", NULL, 0, big, false);
    hit_from(c, "http://h/fits", NULL, 0, big, false);
    cache_free(c);
}

static void
test_purges(void **state)
{
    struct cache *c = open_cache(1 << 20, 0, 1 << 20, 0);
    struct cache_obj *o;
    struct cache_decision d;
    char u[64];

    (void)state;
    /* hard, by URL */
    assert_int_equal(store(c, "http://h/p", "x"), 0);
    warm(c, "http://h/p", "x");
    assert_int_equal(cache_purge_key(c, "http://h/p", 10, false), 1);
    miss(c, "http://h/p", NULL, 0, CACHE_MISS);
    /* soft, by URL: back from disk with the flag, then from memory with it */
    assert_int_equal(store(c, "http://h/p", "x"), 0);
    warm(c, "http://h/p", "x");
    assert_int_equal(cache_purge_key(c, "http://h/p", 10, true), 1);
    for (int i = 0; i < 2; i++) {
        uint64_t before = mem_hits(c);
        assert_int_equal(cache_open(c, "http://h/p", 10, NULL, 0, &o), CACHE_OK);
        assert_int_equal(mem_hits(c) - before, (uint64_t)i);
        assert_true(o->policy.flags & CACHE_POL_SOFT_PURGED);
        cache_decide(&o->policy, NULL, NULL, T0 + 1, &d);
        assert_int_equal(d.use, CACHE_REVALIDATE);
        cache_obj_free(o);
    }
    /* by prefix and by tag, hard and soft */
    for (int soft = 0; soft < 2; soft++) {
        for (int i = 0; i < 3; i++) {
            snprintf(u, sizeof(u), "http://h/pre/%d", i);
            assert_int_equal(store(c, u, "y"), 0);
            warm(c, u, "y");
        }
        assert_int_equal(cache_purge_prefix(c, "http://h/pre/", 13, soft), 3);
        for (int i = 0; i < 3; i++) {
            snprintf(u, sizeof(u), "http://h/pre/%d", i);
            if (!soft) {
                miss(c, u, NULL, 0, CACHE_MISS);
                continue;
            }
            assert_int_equal(cache_open(c, u, strlen(u), NULL, 0, &o), CACHE_OK);
            assert_true(o->policy.flags & CACHE_POL_SOFT_PURGED);
            cache_obj_free(o);
        }
        assert_int_equal(store(c, "http://h/tagged", "z"), 0);
        warm(c, "http://h/tagged", "z");
        /* hard: /p (soft-purged above) and /tagged; soft: /pre/0-2 and /tagged */
        assert_int_equal(cache_purge_tag(c, "sport", 5, soft), soft ? 4 : 2);
        if (!soft) {
            miss(c, "http://h/tagged", NULL, 0, CACHE_MISS);
            miss(c, "http://h/p", NULL, 0, CACHE_MISS);
        } else {
            assert_int_equal(cache_open(c, "http://h/tagged", 15, NULL, 0, &o), CACHE_OK);
            assert_true(o->policy.flags & CACHE_POL_SOFT_PURGED);
            cache_obj_free(o);
        }
    }
    cache_free(c);
}

static void
test_invalidate_replace_refresh(void **state)
{
    static const struct cache_hdr r304[] = {H("Cache-Control", "max-age=600"), H("X-New", "yes")};
    struct cache *c = open_cache(1 << 20, 0, 1 << 20, 0);
    struct cache_obj *o, *o2;

    (void)state;
    /* an unsafe method's invalidation */
    assert_int_equal(store(c, "http://h/i", "x"), 0);
    warm(c, "http://h/i", "x");
    assert_int_equal(cache_invalidate_key(c, "http://h/i", 10), 1);
    miss(c, "http://h/i", NULL, 0, CACHE_MISS);
    /* a newer store replaces it at once */
    assert_int_equal(store(c, "http://h/r", "old"), 0);
    warm(c, "http://h/r", "old");
    assert_int_equal(store(c, "http://h/r", "new!"), 0);
    hit_from(c, "http://h/r", NULL, 0, "new!", false);
    hit_from(c, "http://h/r", NULL, 0, "new!", true);
    /* a 304 refresh of a memory-backed object: new head and policy, same body */
    assert_int_equal(cache_open(c, "http://h/r", 10, NULL, 0, &o), CACHE_OK);
    assert_non_null(o->body);
    assert_int_equal(cache_refresh(c, o, r304, 2, NULL, T0 + 100, T0 + 101, &o2), 0);
    body_is(o2, "new!");
    assert_true(has_header(o2, "X-New", "yes"));
    assert_int_equal(o2->policy.lifetime, 600);
    cache_obj_free(o2);
    body_is(o, "new!"); /* the old object is still whole */
    assert_false(has_header(o, "X-New", NULL));
    cache_obj_free(o);
    for (int i = 0; i < 2; i++) {
        uint64_t before = mem_hits(c);
        assert_int_equal(cache_open(c, "http://h/r", 10, NULL, 0, &o), CACHE_OK);
        assert_int_equal(mem_hits(c) - before, 1); /* the refresh's reopen loaded it */
        assert_true(has_header(o, "X-New", "yes"));
        assert_int_equal(o->policy.lifetime, 600);
        assert_int_equal(o->policy.response_time, T0 + 101);
        body_is(o, "new!");
        cache_obj_free(o);
    }
    /* a refresh started before an invalidation does not bring it back */
    assert_int_equal(cache_open(c, "http://h/r", 10, NULL, 0, &o), CACHE_OK);
    assert_int_equal(cache_invalidate_key(c, "http://h/r", 10), 1);
    assert_int_equal(cache_refresh(c, o, r304, 2, NULL, T0, T0, &o2), CACHE_EPURGED);
    cache_obj_free(o);
    miss(c, "http://h/r", NULL, 0, CACHE_MISS);
    cache_free(c);
}

static void
test_vary(void **state)
{
    static const struct cache_hdr resp[] = {H("Cache-Control", "max-age=60"),
                                            H("Vary", "Accept-Encoding")};
    static const struct cache_hdr resp2[] = {H("Cache-Control", "max-age=60"),
                                             H("Vary", "Accept-Language")};
    static const struct cache_hdr r304[] = {H("Cache-Control", "max-age=600")};
    static const struct cache_hdr gz[] = {H("Accept-Encoding", "gzip")};
    static const struct cache_hdr br[] = {H("Accept-Encoding", "br")};
    static const struct cache_hdr en[] = {H("Accept-Language", "en"), H("Accept-Encoding", "br")};
    struct cache *c = open_cache(1 << 20, 0, 1 << 20, 0);
    struct cache_obj *o, *o2;

    (void)state;
    assert_int_equal(store_as(c, "http://h/v", gz, 1, resp, 2, "GZ", 2), 0);
    assert_int_equal(store_as(c, "http://h/v", br, 1, resp, 2, "BR", 2), 0);
    assert_int_equal(store_as(c, "http://h/v", NULL, 0, resp, 2, "ID", 2), 0);
    hit_from(c, "http://h/v", gz, 1, "GZ", false);
    hit_from(c, "http://h/v", gz, 1, "GZ", true);
    hit_from(c, "http://h/v", br, 1, "BR", false); /* the stub is in memory, this variant not yet */
    hit_from(c, "http://h/v", br, 1, "BR", true);
    hit_from(c, "http://h/v", gz, 1, "GZ", true);
    hit_from(c, "http://h/v", NULL, 0, "ID", false);
    hit_from(c, "http://h/v", NULL, 0, "ID", true);
    /* a 304 refresh of one variant reopens that variant, not another */
    assert_int_equal(cache_open(c, "http://h/v", 10, br, 1, &o), CACHE_OK);
    assert_int_equal(cache_refresh(c, o, r304, 1, NULL, T0 + 100, T0 + 101, &o2), 0);
    body_is(o2, "BR");
    assert_int_equal(o2->policy.lifetime, 600);
    cache_obj_free(o2);
    cache_obj_free(o);
    hit_from(c, "http://h/v", br, 1, "BR", false); /* the refresh forgot the key */
    hit_from(c, "http://h/v", gz, 1, "GZ", false);
    hit_from(c, "http://h/v", gz, 1, "GZ", true);
    /* the response now varies on another field: the old variants go */
    assert_int_equal(store_as(c, "http://h/v", en, 2, resp2, 2, "EN", 2), 0);
    hit_from(c, "http://h/v", en, 2, "EN", false);
    hit_from(c, "http://h/v", en, 2, "EN", true);
    miss(c, "http://h/v", gz, 1, CACHE_VARY_MISS);
    /* a purge takes the stub and every variant out of memory (on disk: the
     * three older variants and the new one) */
    assert_int_equal(cache_purge_key(c, "http://h/v", 10, false), 4);
    miss(c, "http://h/v", en, 2, CACHE_MISS);
    cache_free(c);
}

static void
test_eviction_and_restart(void **state)
{
    struct cache *c;
    struct cache_counters n;
    char key[32], body[200];
    int i;

    (void)state;
    memset(body, 'e', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    c = open_cache(4000, 1000, 4000, 1000);
    assert_int_equal(store(c, "http://h/e0", body), 0);
    warm(c, "http://h/e0", body);
    /* evicted from disk (least recently used there): memory follows */
    for (i = 1; i < 40; i++) {
        snprintf(key, sizeof(key), "http://h/e%d", i);
        assert_int_equal(store(c, key, body), 0);
    }
    cache_counters_get(c, &n);
    assert_true(n.evictions > 0);
    miss(c, "http://h/e0", NULL, 0, CACHE_MISS);
    hit_from(c, "http://h/e39", NULL, 0, body, false);
    hit_from(c, "http://h/e39", NULL, 0, body, true);
    cache_free(c);
    /* a restart starts with nothing in memory */
    c = open_cache(4000, 1000, 4000, 1000);
    cache_counters_get(c, &n);
    assert_int_equal(n.mem_objects, 0);
    assert_int_equal(n.mem_bytes, 0);
    hit_from(c, "http://h/e39", NULL, 0, body, false);
    hit_from(c, "http://h/e39", NULL, 0, body, true);
    cache_free(c);
}

/* Path of the plain file of key. */
static void
file_of(const char *key, char *path, size_t cap)
{
    uint8_t id[CACHE_ID_LEN];
    char hex[CACHE_ID_HEX + 1];

    cache_key_id(key, strlen(key), id);
    cache_id_hex(id, hex);
    snprintf(path, cap, "%s/%.2s/%.2s/%s", dir, hex, hex + 2, hex);
}

static void
test_corrupt_body_not_loaded(void **state)
{
    struct cache *c = open_cache(1 << 20, 0, 1 << 20, 0);
    struct cache_counters n;
    char path[256];
    struct stat st;
    int fd;

    (void)state;
    assert_int_equal(store(c, "http://h/c", "body"), 0);
    file_of("http://h/c", path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "B", 1, st.st_size - 1), 1);
    close(fd);
    /* loading reads the body and checks its CRC: a miss, the file removed */
    miss(c, "http://h/c", NULL, 0, CACHE_MISS);
    assert_int_equal(stat(path, &st), -1);
    cache_counters_get(c, &n);
    assert_int_equal(n.corrupt, 1);
    assert_int_equal(n.mem_objects, 0);
    cache_free(c);
}

static void
test_lru_cap(void **state)
{
    /* 16 KiB, objects up to 1 KiB: one shard of 16 KiB */
    struct cache *c = open_cache(1 << 20, 0, 16 << 10, 1 << 10);
    struct cache_counters n;
    char key[32], body[1001];
    int i;

    (void)state;
    memset(body, 'l', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    for (i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "http://h/l%d", i);
        assert_int_equal(store(c, key, body), 0);
        warm(c, key, body);
        /* l0 stays the most recently used */
        hit_from(c, "http://h/l0", NULL, 0, body, true);
        cache_counters_get(c, &n);
        assert_true(n.mem_bytes <= 16 << 10);
    }
    cache_counters_get(c, &n);
    assert_true(n.mem_objects >= 8 && n.mem_objects < 16);
    hit_from(c, "http://h/l0", NULL, 0, body, true);
    hit_from(c, "http://h/l39", NULL, 0, body, true);
    hit_from(c, "http://h/l1", NULL, 0, body, false); /* gone from memory, still on disk */
    cache_free(c);
}

static void
test_refs_outlive_entries(void **state)
{
    struct cache *c = open_cache(1 << 20, 0, 1 << 20, 0);
    struct cache_obj *o;
    struct cache_body *b;
    struct cache_counters n;
    const char *p;

    (void)state;
    assert_int_equal(store(c, "http://h/ref", "still here"), 0);
    warm(c, "http://h/ref", "still here");
    assert_int_equal(cache_open(c, "http://h/ref", 12, NULL, 0, &o), CACHE_OK);
    b = cache_obj_body_ref(o);
    assert_non_null(b);
    p = o->body;
    /* purged while a response is being sent from it */
    assert_int_equal(cache_purge_key(c, "http://h/ref", 12, false), 1);
    cache_counters_get(c, &n);
    assert_int_equal(n.mem_objects, 0);
    body_is(o, "still here");
    cache_obj_free(o);
    assert_memory_equal(p, "still here", 10); /* ASan: not freed while b holds it */
    cache_body_unref(b);
    /* and across the cache's end */
    assert_int_equal(store(c, "http://h/ref", "again"), 0);
    warm(c, "http://h/ref", "again");
    assert_int_equal(cache_open(c, "http://h/ref", 12, NULL, 0, &o), CACHE_OK);
    b = cache_obj_body_ref(o);
    cache_obj_free(o);
    cache_free(c);
    cache_body_unref(b);
}

/* The race of mem.c's comment, one step at a time: a reader misses memory
 * and reads the file; the object changes (a new store, an invalidation);
 * then the reader tries to put what it read into memory. It must not. */
static void
test_load_racing_a_change(void **state)
{
    struct cache *c = open_cache(1 << 20, 0, 1 << 20, 0);
    struct cache_main mc = {.dir = dir, .max_size = 1 << 20};
    struct cache_mem_probe p;
    struct cache_obj *o = NULL, *old;
    struct cache *disk;
    char err[128];

    (void)state;
    disk = cache_new(&mc, err, sizeof(err)); /* the same files, no memory tier */
    assert_non_null(disk);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(store(c, "http://h/race", "v1"), 0);
        assert_int_equal(cache_mem_open(c, "http://h/race", 13, NULL, 0, &p, &o), CACHE_MISS);
        assert_int_equal(cache_open(disk, "http://h/race", 13, NULL, 0, &old), CACHE_OK);
        body_is(old, "v1");
        if (round == 0)
            assert_int_equal(store(c, "http://h/race", "v2"), 0);
        else
            assert_int_equal(cache_invalidate_key(c, "http://h/race", 13), 1);
        assert_int_equal(cache_mem_load(c, &p, old, NULL, 0), 0);
        body_is(old, "v1"); /* the reader itself serves what it read, from memory */
        cache_obj_free(old);
        if (round == 0) {
            hit_from(c, "http://h/race", NULL, 0, "v2", false);
            hit_from(c, "http://h/race", NULL, 0, "v2", true);
        } else {
            miss(c, "http://h/race", NULL, 0, CACHE_MISS);
        }
    }
    cache_free(disk);
    cache_free(c);
}

/* Threads: readers open keys all the time (loading them into memory) while
 * a writer replaces, invalidates and purges them. Once the writer's call has
 * returned, nobody may see an older version. */
#define RKEYS 4
#define RROUNDS 300
struct race {
    struct cache *c;
    atomic_int version[RKEYS]; /* newest version published; -1: removed */
    atomic_bool stop;
    atomic_int bad;
};

static void
key_of(int k, char *buf, size_t cap)
{
    snprintf(buf, cap, "http://h/race%d", k);
}

/* The version number a body holds. */
static int
version_of(const struct cache_obj *o)
{
    char buf[32] = {0};
    size_t n = o->body_len < sizeof(buf) - 1 ? (size_t)o->body_len : sizeof(buf) - 1;

    if (o->body != NULL)
        memcpy(buf, o->body, n);
    else if (pread(o->fd, buf, n, (off_t)o->body_off) != (ssize_t)n)
        return -2;
    return (int)strtol(buf, NULL, 10);
}

static void *
reader(void *arg)
{
    struct race *r = arg;
    char key[32];
    unsigned i = 0;

    while (!atomic_load(&r->stop)) {
        int k = (int)(i++ % RKEYS);
        int v0 = atomic_load(&r->version[k]);
        struct cache_obj *o = NULL;
        key_of(k, key, sizeof(key));
        if (cache_open(r->c, key, strlen(key), NULL, 0, &o) == CACHE_OK) {
            /* at least the version published before the open */
            if (v0 >= 0 && version_of(o) < v0)
                atomic_fetch_add(&r->bad, 1);
            cache_obj_free(o);
        }
    }
    return NULL;
}

static void
test_threads(void **state)
{
    struct race r = {0};
    pthread_t t[3];
    char key[32], body[32];
    int i, k;

    (void)state;
    r.c = open_cache(1 << 20, 0, 1 << 20, 0);
    for (k = 0; k < RKEYS; k++)
        atomic_init(&r.version[k], -1);
    for (i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader, &r), 0);
    for (i = 0; i < RROUNDS; i++) {
        struct cache_obj *o = NULL;
        k = i % RKEYS;
        key_of(k, key, sizeof(key));
        snprintf(body, sizeof(body), "%d", i);
        if (i % 7 == 3) { /* removed: nobody may hit it afterwards (until stored again) */
            if (i % 2)
                assert_true(cache_invalidate_key(r.c, key, strlen(key)) >= 0);
            else
                assert_true(cache_purge_key(r.c, key, strlen(key), false) >= 0);
            atomic_store(&r.version[k], -1);
            if (cache_open(r.c, key, strlen(key), NULL, 0, &o) != CACHE_MISS)
                fail_msg("round %d: %s served after its removal", i, key);
            continue;
        }
        assert_int_equal(store(r.c, key, body), 0);
        atomic_store(&r.version[k], i);
        /* the writer itself must see what it just published */
        assert_int_equal(cache_open(r.c, key, strlen(key), NULL, 0, &o), CACHE_OK);
        if (version_of(o) != i)
            fail_msg("round %d: %s is not the version just stored", i, key);
        cache_obj_free(o);
    }
    atomic_store(&r.stop, true);
    for (i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.bad), 0);
    assert_true(mem_hits(r.c) > 0);
    cache_free(r.c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hit_from_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mem_object_limit_and_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidate_replace_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_body_not_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refs_outlive_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_racing_a_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
