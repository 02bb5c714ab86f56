/*
 * Unit tests of the disk store and index: write/commit/open, abort and
 * max_object, Vary variants, corrupt and truncated files, 304 refresh and
 * HEAD freshening, persistence across reopen (and a crash's tmp files),
 * eviction, purges (key, prefix, tag, soft) with no resurrection after reopen, a purge
 * racing a writer, and RFC 9111 4.4 invalidation (variants, writers that
 * started before it, a commit racing it), and reading an object while it
 * is written.
 */
#include "cache/cache.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 1700000000

static char dir[64];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cache_store_test.XXXXXX");
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
open_cache(uint64_t max_size, uint64_t max_object)
{
    struct cache_main mc = {.dir = dir, .max_size = max_size, .max_object = max_object};
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

/* Stores key with the given response headers and body. */
static int
store(struct cache *c, const char *key, const struct cache_hdr *req, size_t nreq,
      const struct cache_hdr *resp, size_t nresp, const char *body)
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
    if ((rc = cache_writer_write(w, body, strlen(body))) < 0) {
        cache_writer_abort(w);
        return rc;
    }
    return cache_writer_commit(w);
}

static void
body_is(const struct cache_obj *o, const char *want)
{
    char buf[256];

    assert_int_equal(o->body_len, strlen(want));
    assert_int_equal(pread(o->fd, buf, o->body_len, (off_t)o->body_off), (ssize_t)o->body_len);
    assert_memory_equal(buf, want, o->body_len);
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

static const struct cache_hdr basic[] = {
    H("Cache-Control", "max-age=60"),
    H("ETag", "\"v1\""),
    H("Content-Type", "text/plain"),
    H("Connection", "close"),
    H("Age", "5"),
    H("Surrogate-Key", "news  sport,front"),
    H("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
};
#define NBASIC (sizeof(basic) / sizeof(basic[0]))

static void
test_store_and_open(void **state)
{
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_obj *o = NULL;
    struct cache_counters n;
    struct cache_decision d;
    char cond[256];

    (void)state;
    assert_int_equal(cache_open(c, "http://h/a", 10, NULL, 0, &o), CACHE_MISS);
    assert_int_equal(store(c, "http://h/a", NULL, 0, basic, NBASIC, "hello"), 0);
    assert_int_equal(cache_open(c, "http://h/a", 10, NULL, 0, &o), CACHE_OK);
    assert_int_equal(o->status, 200);
    assert_int_equal(o->key_len, 10);
    assert_memory_equal(o->key, "http://h/a", 10);
    body_is(o, "hello");
    assert_true(has_header(o, "ETag", "\"v1\""));
    assert_true(has_header(o, "Content-Type", "text/plain"));
    assert_false(has_header(o, "Connection", NULL)); /* hop-by-hop not stored */
    assert_false(has_header(o, "Age", NULL));        /* recomputed on serve */
    assert_int_equal(o->policy.lifetime, 60);
    assert_int_equal(o->policy.initial_age, 5);
    cache_decide(&o->policy, NULL, NULL, T0 + 10, &d);
    assert_int_equal(d.use, CACHE_USE_FRESH);
    assert_int_equal(d.age, 15);
    assert_int_equal(cache_obj_verify_body(c, o), 0);
    assert_int_equal(cache_conditional_headers(o, cond, sizeof(cond)),
                     strlen("If-None-Match: \"v1\"\r\n"
                            "If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n"));
    assert_string_equal(cond, "If-None-Match: \"v1\"\r\n"
                              "If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n");
    assert_int_equal(cache_conditional_headers(o, cond, 10), 0);
    cache_obj_free(o);
    /* another key: miss; the same key replaced */
    assert_int_equal(cache_open(c, "http://h/b", 10, NULL, 0, &o), CACHE_MISS);
    assert_int_equal(store(c, "http://h/a", NULL, 0, basic, NBASIC, "world!"), 0);
    assert_int_equal(cache_open(c, "http://h/a", 10, NULL, 0, &o), CACHE_OK);
    body_is(o, "world!");
    cache_obj_free(o);
    cache_counters_get(c, &n);
    assert_int_equal(n.stores, 2);
    assert_int_equal(n.hits, 2);
    assert_int_equal(n.misses, 2);
    assert_int_equal(n.objects, 1);
    cache_free(c);
}

static void
test_abort_and_limits(void **state)
{
    struct cache *c = open_cache(1 << 20, 8);
    struct cache_resp_info ri;
    struct cache_writer *w;
    struct cache_obj *o;
    struct dirent *de;
    char tmp[128];
    DIR *d;
    int rc = 0, files = 0;

    (void)state;
    cache_resp_parse(basic, NBASIC, 200, &ri);
    w = cache_writer_new(
        c,
        &(struct cache_store_args){"http://h/x", 10, NULL, 0, basic, NBASIC, &ri, NULL, T0, T0, -1},
        &rc);
    assert_non_null(w);
    assert_int_equal(cache_writer_write(w, "part", 4), 0);
    cache_writer_abort(w); /* origin died mid-body */
    assert_int_equal(cache_open(c, "http://h/x", 10, NULL, 0, &o), CACHE_MISS);
    /* max_object: by Content-Length up front, or while streaming */
    assert_null(cache_writer_new(
        c,
        &(struct cache_store_args){"http://h/x", 10, NULL, 0, basic, NBASIC, &ri, NULL, T0, T0, 9},
        &rc));
    assert_int_equal(rc, CACHE_ETOOBIG);
    assert_int_equal(store(c, "http://h/x", NULL, 0, basic, NBASIC, "123456789"), CACHE_ETOOBIG);
    assert_int_equal(cache_open(c, "http://h/x", 10, NULL, 0, &o), CACHE_MISS);
    assert_int_equal(store(c, "http://h/x", NULL, 0, basic, NBASIC, "12345678"), 0);
    /* nothing left in tmp/ */
    snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
    d = opendir(tmp);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        files += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(files, 0);
    cache_free(c);
}

static void
test_vary(void **state)
{
    static const struct cache_hdr resp[] = {H("Cache-Control", "max-age=60"),
                                            H("Vary", "Accept-Encoding")};
    static const struct cache_hdr gz[] = {H("Accept-Encoding", "gzip")};
    static const struct cache_hdr br[] = {H("Accept-Encoding", "br")};
    static const struct cache_hdr none[] = {H("X-Other", "1")};
    static const struct cache_hdr star[] = {H("Cache-Control", "max-age=60"), H("Vary", "*")};
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_obj *o;

    (void)state;
    assert_int_equal(store(c, "http://h/v", gz, 1, resp, 2, "GZ"), 0);
    assert_int_equal(cache_open(c, "http://h/v", 10, gz, 1, &o), CACHE_OK);
    body_is(o, "GZ");
    cache_obj_free(o);
    assert_int_equal(cache_open(c, "http://h/v", 10, br, 1, &o), CACHE_VARY_MISS);
    assert_int_equal(cache_open(c, "http://h/v", 10, none, 1, &o), CACHE_VARY_MISS);
    assert_int_equal(store(c, "http://h/v", br, 1, resp, 2, "BR"), 0);
    assert_int_equal(store(c, "http://h/v", none, 1, resp, 2, "ID"), 0);
    assert_int_equal(cache_open(c, "http://h/v", 10, br, 1, &o), CACHE_OK);
    body_is(o, "BR");
    cache_obj_free(o);
    assert_int_equal(cache_open(c, "http://h/v", 10, gz, 1, &o), CACHE_OK);
    body_is(o, "GZ");
    cache_obj_free(o);
    assert_int_equal(cache_open(c, "http://h/v", 10, NULL, 0, &o), CACHE_OK);
    body_is(o, "ID");
    cache_obj_free(o);
    /* purging the URL removes every variant */
    assert_int_equal(cache_purge_key(c, "http://h/v", 10, false), 3);
    assert_int_equal(cache_open(c, "http://h/v", 10, gz, 1, &o), CACHE_MISS);
    {
        int rc = 0;
        struct cache_resp_info ri;
        cache_resp_parse(star, 2, 200, &ri);
        assert_null(cache_writer_new(
            c,
            &(struct cache_store_args){"http://h/s", 10, NULL, 0, star, 2, &ri, NULL, T0, T0, -1},
            &rc));
        assert_int_equal(rc, CACHE_EINVAL);
    }
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
test_corrupt_and_truncated(void **state)
{
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_obj *o;
    struct cache_counters n;
    char path[256];
    struct stat st;
    int fd;

    (void)state;
    /* a flipped byte in the header block */
    assert_int_equal(store(c, "http://h/c", NULL, 0, basic, NBASIC, "body"), 0);
    file_of("http://h/c", path, sizeof(path));
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, 130), 1);
    close(fd);
    assert_int_equal(cache_open(c, "http://h/c", 10, NULL, 0, &o), CACHE_MISS);
    assert_int_equal(stat(path, &st), -1); /* removed */
    /* truncated */
    assert_int_equal(store(c, "http://h/c", NULL, 0, basic, NBASIC, "body"), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 1), 0);
    assert_int_equal(cache_open(c, "http://h/c", 10, NULL, 0, &o), CACHE_MISS);
    assert_int_equal(stat(path, &st), -1);
    /* garbage / empty file */
    assert_int_equal(store(c, "http://h/c", NULL, 0, basic, NBASIC, "body"), 0);
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(cache_open(c, "http://h/c", 10, NULL, 0, &o), CACHE_MISS);
    /* a corrupt body: found by verify_body */
    assert_int_equal(store(c, "http://h/c", NULL, 0, basic, NBASIC, "body"), 0);
    assert_int_equal(stat(path, &st), 0);
    fd = open(path, O_WRONLY);
    assert_int_equal(pwrite(fd, "B", 1, st.st_size - 1), 1);
    close(fd);
    assert_int_equal(cache_open(c, "http://h/c", 10, NULL, 0, &o), CACHE_OK);
    assert_int_equal(cache_obj_verify_body(c, o), CACHE_ECORRUPT);
    cache_obj_free(o);
    assert_int_equal(cache_open(c, "http://h/c", 10, NULL, 0, &o), CACHE_MISS);
    cache_counters_get(c, &n);
    assert_int_equal(n.corrupt, 4);
    cache_free(c);
}

static void
test_refresh_304(void **state)
{
    static const struct cache_hdr r304[] = {
        H("Cache-Control", "max-age=600"),
        H("ETag", "\"v1\""),
        H("X-New", "yes"),
        H("Content-Length", "0"),
        H("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
    };
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_obj *o, *o2;
    struct cache_decision d;

    (void)state;
    assert_int_equal(store(c, "http://h/r", NULL, 0, basic, NBASIC, "keep me"), 0);
    assert_int_equal(cache_open(c, "http://h/r", 10, NULL, 0, &o), CACHE_OK);
    cache_decide(&o->policy, NULL, NULL, T0 + 100, &d);
    assert_int_equal(d.use, CACHE_REVALIDATE);
    assert_int_equal(cache_refresh(c, o, r304, 5, NULL, T0 + 100, T0 + 101, &o2), 0);
    body_is(o2, "keep me");
    assert_true(has_header(o2, "Cache-Control", "max-age=600"));
    assert_false(has_header(o2, "Cache-Control", "max-age=60"));
    assert_true(has_header(o2, "X-New", "yes"));
    assert_true(has_header(o2, "Content-Type", "text/plain"));
    assert_false(has_header(o2, "Content-Length", "0"));
    assert_int_equal(o2->policy.lifetime, 600);
    assert_int_equal(o2->policy.response_time, T0 + 101);
    cache_decide(&o2->policy, NULL, NULL, T0 + 200, &d);
    assert_int_equal(d.use, CACHE_USE_FRESH);
    assert_int_equal(cache_obj_verify_body(c, o2), 0);
    body_is(o, "keep me"); /* the old handle still reads */
    cache_obj_free(o);
    cache_obj_free(o2);
    cache_free(c);
}

/* RFC 9111 4.3.5: which 200s to a HEAD may freshen the stored GET response,
 * and what the refresh keeps. */
static void
test_head_matches(void **state)
{
    static const struct {
        struct cache_hdr h[3];
        size_t n;
        bool match;
    } t[] = {
        {{H("X-Other", "1")}, 1, true}, /* no validator, no length: nothing disagrees */
        {{H("ETag", "\"v1\"")}, 1, true},
        {{H("ETag", " \"v1\" ")}, 1, true},
        {{H("ETag", "\"v2\"")}, 1, false},
        {{H("ETag", "W/\"v1\"")}, 1, false},
        {{H("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")}, 1, true},
        {{H("Last-Modified", "Tuesday, 14-Nov-23 22:13:20 GMT")}, 1, true},
        {{H("Last-Modified", "Tue, 14 Nov 2023 22:13:21 GMT")}, 1, false},
        {{H("Content-Length", "7")}, 1, true},
        {{H("Content-Length", "8")}, 1, false},
        {{H("Content-Length", "7x")}, 1, false},
        {{H("ETag", "\"v1\""), H("Content-Length", "70")}, 2, false},
        {{H("ETag", "\"v1\""), H("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
          H("Content-Length", "7")},
         3,
         true},
    };
    static const struct cache_hdr head[] = {H("Cache-Control", "max-age=600"), H("X-New", "yes"),
                                            H("Content-Length", "7"), H("ETag", "\"v1\"")};
    static const struct cache_hdr nolm[] = {H("Cache-Control", "max-age=60")};
    static const struct cache_hdr lm[] = {H("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")};
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_obj *o, *o2;
    size_t i;

    (void)state;
    assert_int_equal(store(c, "http://h/head", NULL, 0, basic, NBASIC, "keep me"), 0);
    assert_int_equal(cache_open(c, "http://h/head", 13, NULL, 0, &o), CACHE_OK);
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (cache_head_matches(o, t[i].h, t[i].n) != t[i].match)
            fail_msg("#%zu: want %d", i, t[i].match);
    /* the refresh a match leads to: the HEAD's fields merged, the body kept */
    assert_true(cache_head_matches(o, head, 4));
    assert_int_equal(cache_refresh(c, o, head, 4, NULL, T0 + 100, T0 + 101, &o2), 0);
    body_is(o2, "keep me");
    assert_true(has_header(o2, "X-New", "yes"));
    assert_true(has_header(o2, "Content-Type", "text/plain"));
    assert_int_equal(o2->policy.lifetime, 600);
    cache_obj_free(o2);
    cache_obj_free(o);
    /* a validator the stored response does not have is a mismatch */
    assert_int_equal(store(c, "http://h/nolm", NULL, 0, nolm, 1, "x"), 0);
    assert_int_equal(cache_open(c, "http://h/nolm", 13, NULL, 0, &o), CACHE_OK);
    assert_false(cache_head_matches(o, lm, 1));
    cache_obj_free(o);
    cache_free(c);
}

/* A 304 for one variant refreshes and returns that variant, also when a
 * variant for requests without the Vary fields exists (the refresh has no
 * request headers at hand; it must not pick that one). */
static void
test_refresh_304_variant(void **state)
{
    static const struct cache_hdr resp[] = {H("Cache-Control", "max-age=60"),
                                            H("Vary", "Accept-Encoding")};
    static const struct cache_hdr gz[] = {H("Accept-Encoding", "gzip")};
    static const struct cache_hdr r304[] = {H("Cache-Control", "max-age=600")};
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_obj *o, *o2;

    (void)state;
    assert_int_equal(store(c, "http://h/rv", gz, 1, resp, 2, "GZ"), 0);
    assert_int_equal(store(c, "http://h/rv", NULL, 0, resp, 2, "IDENTITY"), 0);
    assert_int_equal(cache_open(c, "http://h/rv", 11, gz, 1, &o), CACHE_OK);
    assert_int_equal(cache_refresh(c, o, r304, 1, NULL, T0 + 100, T0 + 101, &o2), 0);
    body_is(o2, "GZ");
    assert_int_equal(o2->policy.lifetime, 600);
    cache_obj_free(o2);
    cache_obj_free(o);
    assert_int_equal(cache_open(c, "http://h/rv", 11, NULL, 0, &o), CACHE_OK);
    body_is(o, "IDENTITY");
    assert_int_equal(o->policy.lifetime, 60); /* not refreshed */
    cache_obj_free(o);
    cache_free(c);
}

static void
test_persist_and_tmp_cleanup(void **state)
{
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_counters n;
    struct cache_obj *o;
    char path[256];
    int fd;

    (void)state;
    assert_int_equal(store(c, "http://h/p1", NULL, 0, basic, NBASIC, "one"), 0);
    assert_int_equal(store(c, "http://h/p2", NULL, 0, basic, NBASIC, "two"), 0);
    cache_free(c);
    /* a crash's leftovers: a tmp file, and junk in the tree */
    snprintf(path, sizeof(path), "%s/tmp/123.4", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "half", 4), 4);
    close(fd);
    c = open_cache(1 << 20, 0);
    assert_int_equal(access(path, F_OK), -1);
    cache_counters_get(c, &n);
    assert_int_equal(n.objects, 2);
    assert_true(n.bytes > 0);
    assert_int_equal(cache_open(c, "http://h/p2", 11, NULL, 0, &o), CACHE_OK);
    body_is(o, "two");
    cache_obj_free(o);
    /* the rebuilt index knows the keys: prefix purge works after a restart */
    assert_int_equal(cache_purge_prefix(c, "http://h/p", 10, false), 2);
    cache_free(c);
    c = open_cache(1 << 20, 0);
    assert_int_equal(cache_open(c, "http://h/p1", 11, NULL, 0, &o), CACHE_MISS);
    cache_counters_get(c, &n);
    assert_int_equal(n.objects, 0);
    cache_free(c);
}

static void
test_eviction(void **state)
{
    struct cache *c;
    struct cache_counters n;
    struct cache_obj *o;
    char key[32], body[200];
    int i;

    (void)state;
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    c = open_cache(4000, 1000);
    for (i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "http://h/e%d", i);
        assert_int_equal(store(c, key, NULL, 0, basic, NBASIC, body), 0);
        /* never the object just stored (the least recently used goes) */
        if (cache_open(c, key, strlen(key), NULL, 0, &o) != CACHE_OK)
            fail_msg("%s was evicted by its own store", key);
        cache_obj_free(o);
        /* keep e0 hot */
        if (cache_open(c, "http://h/e0", 11, NULL, 0, &o) == CACHE_OK)
            cache_obj_free(o);
    }
    cache_counters_get(c, &n);
    assert_true(n.bytes <= 4000);
    assert_true(n.evictions > 0);
    assert_int_equal(n.objects + n.evictions, 40);
    assert_int_equal(cache_open(c, "http://h/e39", 12, NULL, 0, &o), CACHE_OK);
    cache_obj_free(o);
    assert_int_equal(cache_open(c, "http://h/e1", 11, NULL, 0, &o), CACHE_MISS);
    cache_free(c);
    /* the files are gone too: a restart finds the same total */
    c = open_cache(1 << 20, 0);
    cache_counters_get(c, &n);
    assert_true(n.bytes <= 4000);
    cache_free(c);
}

static void
test_purge(void **state)
{
    static const struct cache_hdr tagged[] = {H("Cache-Control", "max-age=60"),
                                              H("Cache-Tag", "red, blue"), H("ETag", "\"t\"")};
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_obj *o;
    struct cache_decision d;
    struct cache_resp_info ri;
    struct cache_writer *w;
    int rc = 0;

    (void)state;
    assert_int_equal(store(c, "http://h/t1", NULL, 0, tagged, 3, "1"), 0);
    assert_int_equal(store(c, "http://h/t2", NULL, 0, basic, NBASIC, "2"), 0);
    assert_int_equal(store(c, "http://h/t3", NULL, 0, tagged, 3, "3"), 0);
    assert_int_equal(cache_purge_tag(c, "re", 2, false), 0); /* whole tags only */
    assert_int_equal(cache_purge_tag(c, "sport", 5, false), 1);
    assert_int_equal(cache_open(c, "http://h/t2", 11, NULL, 0, &o), CACHE_MISS);
    /* soft: still there, but must revalidate */
    assert_int_equal(cache_purge_tag(c, "blue", 4, true), 2);
    assert_int_equal(cache_open(c, "http://h/t1", 11, NULL, 0, &o), CACHE_OK);
    cache_decide(&o->policy, NULL, NULL, T0 + 1, &d);
    assert_int_equal(d.use, CACHE_REVALIDATE);
    cache_obj_free(o);
    /* soft purge survives a restart */
    cache_free(c);
    c = open_cache(1 << 20, 0);
    assert_int_equal(cache_open(c, "http://h/t3", 11, NULL, 0, &o), CACHE_OK);
    assert_true(o->policy.flags & CACHE_POL_SOFT_PURGED);
    cache_obj_free(o);
    assert_int_equal(cache_purge_key(c, "http://h/t3", 11, false), 1);
    assert_int_equal(cache_purge_key(c, "http://h/t3", 11, false), 0);
    assert_int_equal(cache_purge_tag(c, "red", 3, false), 1);
    assert_int_equal(cache_purge_prefix(c, "", 0, false), CACHE_EINVAL);
    /* a writer open across a purge does not publish */
    cache_resp_parse(basic, NBASIC, 200, &ri);
    w = cache_writer_new(
        c,
        &(struct cache_store_args){"http://h/w", 10, NULL, 0, basic, NBASIC, &ri, NULL, T0, T0, -1},
        &rc);
    assert_non_null(w);
    assert_int_equal(cache_writer_write(w, "old", 3), 0);
    assert_int_equal(cache_purge_key(c, "http://h/w", 10, false), 0);
    assert_int_equal(cache_writer_commit(w), CACHE_EPURGED);
    assert_int_equal(cache_open(c, "http://h/w", 10, NULL, 0, &o), CACHE_MISS);
    cache_free(c);
    c = open_cache(1 << 20, 0);
    assert_int_equal(cache_open(c, "http://h/t1", 11, NULL, 0, &o), CACHE_MISS);
    assert_int_equal(cache_open(c, "http://h/t2", 11, NULL, 0, &o), CACHE_MISS);
    cache_free(c);
}

static struct cache_writer *
writer_for(struct cache *c, const char *key, const struct cache_hdr *req, size_t nreq,
           const struct cache_hdr *resp, size_t nresp, struct cache_resp_info *ri)
{
    int rc = 0;
    struct cache_writer *w;

    cache_resp_parse(resp, nresp, 200, ri);
    w = cache_writer_new(
        c,
        &(struct cache_store_args){key, strlen(key), req, nreq, resp, nresp, ri, NULL, T0, T0, -1},
        &rc);
    if (w == NULL)
        fail_msg("cache_writer_new: %d", rc);
    return w;
}

static void
test_invalidate(void **state)
{
    static const struct cache_hdr resp[] = {H("Cache-Control", "max-age=60"),
                                            H("Vary", "Accept-Encoding")};
    static const struct cache_hdr gz[] = {H("Accept-Encoding", "gzip")};
    static const struct cache_hdr br[] = {H("Accept-Encoding", "br")};
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_counters n;
    struct cache_resp_info ri, ri2;
    struct cache_writer *w, *w2;
    struct cache_obj *o, *held;
    char path[256];
    struct stat st;

    (void)state;
    /* a plain object */
    assert_int_equal(store(c, "http://h/i", NULL, 0, basic, NBASIC, "x"), 0);
    assert_int_equal(cache_open(c, "http://h/i", 10, NULL, 0, &held), CACHE_OK);
    assert_int_equal(cache_invalidate_key(c, "http://h/i", 10), 1);
    assert_int_equal(cache_open(c, "http://h/i", 10, NULL, 0, &o), CACHE_MISS);
    file_of("http://h/i", path, sizeof(path));
    assert_int_equal(stat(path, &st), -1);
    body_is(held, "x"); /* an object being served keeps its fd */
    cache_obj_free(held);
    assert_int_equal(cache_invalidate_key(c, "http://h/i", 10), 0);
    assert_int_equal(cache_invalidate_key(c, "http://h/never", 14), 0);
    assert_int_equal(cache_invalidate_key(c, "", 0), CACHE_EINVAL);
    cache_counters_get(c, &n);
    assert_int_equal(n.invalidations, 1);
    assert_int_equal(n.objects, 0);
    assert_int_equal(n.bytes, 0);

    /* Vary: the stub and every variant go */
    assert_int_equal(store(c, "http://h/v", gz, 1, resp, 2, "GZ"), 0);
    assert_int_equal(store(c, "http://h/v", br, 1, resp, 2, "BR"), 0);
    assert_int_equal(cache_invalidate_key(c, "http://h/v", 10), 2);
    assert_int_equal(cache_open(c, "http://h/v", 10, gz, 1, &o), CACHE_MISS);
    /* a new variant brings no old one back */
    assert_int_equal(store(c, "http://h/v", gz, 1, resp, 2, "GZ2"), 0);
    assert_int_equal(cache_open(c, "http://h/v", 10, br, 1, &o), CACHE_VARY_MISS);
    assert_int_equal(cache_open(c, "http://h/v", 10, gz, 1, &o), CACHE_OK);
    body_is(o, "GZ2");
    cache_obj_free(o);

    /* a writer that started before the invalidation does not publish; one of
     * another key does, and so does one started after it */
    w = writer_for(c, "http://h/w", NULL, 0, basic, NBASIC, &ri);
    w2 = writer_for(c, "http://h/other", NULL, 0, basic, NBASIC, &ri2);
    assert_int_equal(cache_writer_write(w, "old", 3), 0);
    assert_int_equal(cache_writer_write(w2, "o", 1), 0);
    assert_int_equal(cache_invalidate_key(c, "http://h/w", 10), 0);
    assert_int_equal(cache_writer_commit(w), CACHE_EPURGED);
    assert_int_equal(cache_writer_commit(w2), 0);
    assert_int_equal(cache_open(c, "http://h/w", 10, NULL, 0, &o), CACHE_MISS);
    assert_int_equal(store(c, "http://h/w", NULL, 0, basic, NBASIC, "new"), 0);
    assert_int_equal(cache_open(c, "http://h/w", 10, NULL, 0, &o), CACHE_OK);
    body_is(o, "new");
    cache_obj_free(o);
    /* a 304 refresh that started before is dropped too */
    assert_int_equal(cache_open(c, "http://h/w", 10, NULL, 0, &held), CACHE_OK);
    assert_int_equal(cache_invalidate_key(c, "http://h/w", 10), 1);
    {
        static const struct cache_hdr h304[] = {H("Cache-Control", "max-age=120")};
        assert_int_equal(cache_refresh(c, held, h304, 1, NULL, T0, T0, &o), CACHE_EPURGED);
        assert_null(o);
    }
    cache_obj_free(held);
    assert_int_equal(cache_open(c, "http://h/w", 10, NULL, 0, &o), CACHE_MISS);
    /* the same for a hard purge between the open and the 304 */
    assert_int_equal(store(c, "http://h/w", NULL, 0, basic, NBASIC, "new"), 0);
    assert_int_equal(cache_open(c, "http://h/w", 10, NULL, 0, &held), CACHE_OK);
    assert_int_equal(cache_purge_key(c, "http://h/w", 10, false), 1);
    {
        static const struct cache_hdr h304[] = {H("Cache-Control", "max-age=120")};
        assert_int_equal(cache_refresh(c, held, h304, 1, NULL, T0, T0, &o), CACHE_EPURGED);
    }
    cache_obj_free(held);
    assert_int_equal(cache_open(c, "http://h/w", 10, NULL, 0, &o), CACHE_MISS);
    cache_counters_get(c, &n);
    assert_int_equal(n.purges, 1);
    assert_int_equal(n.invalidations, 4);
    cache_free(c);
}

/* A commit racing an invalidation: whatever the interleaving, an object
 * whose writer started before cache_invalidate_key() was called is gone once
 * both have returned (the commit re-checks after its rename). */
struct race {
    pthread_barrier_t go;
    struct cache *c;
    int invalidated;
};

static void *
race_invalidate(void *arg)
{
    struct race *r = arg;

    pthread_barrier_wait(&r->go);
    r->invalidated = cache_invalidate_key(r->c, "http://h/race", 13);
    return NULL;
}

static void
test_invalidate_race(void **state)
{
    static const struct cache_hdr resp[] = {H("Cache-Control", "max-age=60"),
                                            H("Vary", "Accept-Encoding")};
    static const struct cache_hdr gz[] = {H("Accept-Encoding", "gzip")};
    struct race r;
    int i, published = 0;

    (void)state;
    r.c = open_cache(1 << 20, 0);
    for (i = 0; i < 300; i++) {
        struct cache_resp_info ri;
        struct cache_writer *w;
        struct cache_obj *o = NULL;
        pthread_t t;
        int rc;
        bool vary = i % 2 == 1;

        w = vary ? writer_for(r.c, "http://h/race", gz, 1, resp, 2, &ri)
                 : writer_for(r.c, "http://h/race", NULL, 0, basic, NBASIC, &ri);
        assert_int_equal(cache_writer_write(w, "body", 4), 0);
        assert_int_equal(pthread_barrier_init(&r.go, NULL, 2), 0);
        assert_int_equal(pthread_create(&t, NULL, race_invalidate, &r), 0);
        pthread_barrier_wait(&r.go);
        rc = cache_writer_commit(w);
        pthread_join(t, NULL);
        pthread_barrier_destroy(&r.go);
        assert_true(rc == 0 || rc == CACHE_EPURGED);
        published += rc == 0;
        assert_true(r.invalidated >= 0);
        rc = cache_open(r.c, "http://h/race", 13, vary ? gz : NULL, vary ? 1 : 0, &o);
        if (rc != CACHE_MISS)
            fail_msg("iteration %d: the object survived its invalidation (rc %d)", i, rc);
    }
    (void)published; /* either outcome is fine; the point is what is visible after */
    cache_free(r.c);
}

/* A purge is durable before it returns: a child purges and is SIGKILLed at
 * once; the parent reopens the store and must not find the object. */
static void
test_purge_then_kill(void **state)
{
    struct cache *c = open_cache(1 << 20, 0);
    struct cache_obj *o;
    int pipefd[2], status;
    pid_t pid;
    char ch;

    (void)state;
    assert_int_equal(store(c, "http://h/k", NULL, 0, basic, NBASIC, "x"), 0);
    cache_free(c);
    assert_int_equal(pipe(pipefd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct cache_main mc = {.dir = dir, .max_size = 1 << 20};
        char err[128];
        struct cache *cc = cache_new(&mc, err, sizeof(err));
        if (cc != NULL && cache_purge_key(cc, "http://h/k", 10, false) == 1)
            (void)!write(pipefd[1], "p", 1);
        pause(); /* killed here, with no cleanup */
        _exit(0);
    }
    close(pipefd[1]);
    assert_int_equal(read(pipefd[0], &ch, 1), 1);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(pipefd[0]);
    c = open_cache(1 << 20, 0);
    assert_int_equal(cache_open(c, "http://h/k", 10, NULL, 0, &o), CACHE_MISS);
    cache_free(c);
}

/* A writer read while it writes (request collapsing streams from it): the
 * view has the head at once; body bytes are in the file after a flush (the
 * writer buffers up to 256 KiB); the view outlives commit and abort; a purge
 * marks it. Bodies larger than the buffer are written in aligned pieces and
 * read back whole. */
static void
test_writer_view(void **state)
{
    struct cache *c = open_cache(64 << 20, 16 << 20);
    struct cache_hdr resp[] = {H("Cache-Control", "max-age=60"), H("Vary", "Accept"),
                               H("Content-Type", "text/plain")};
    struct cache_hdr req[] = {H("Accept", "text/plain")};
    struct cache_resp_info ri;
    struct cache_writer *w;
    struct cache_obj *v = NULL, *o = NULL;
    static char big[600000], back[600000];
    const char *names;
    size_t nlen;
    int rc = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7 + i / 4096);
    cache_resp_parse(resp, 3, 200, &ri);
    w = cache_writer_new(c,
                         &(struct cache_store_args){.key = "http://h/view",
                                                    .key_len = 13,
                                                    .req = req,
                                                    .nreq = 1,
                                                    .resp = resp,
                                                    .nresp = 3,
                                                    .ri = &ri,
                                                    .request_time = T0,
                                                    .response_time = T0,
                                                    .content_length = -1},
                         &rc);
    assert_non_null(w);
    assert_int_equal(cache_writer_view(w, &v), 0);
    assert_int_equal(v->status, 200);
    assert_true(has_header(v, "content-type", "text/plain"));
    assert_int_equal(v->body_len, 0);
    /* the vary block is the request's secondary key */
    assert_memory_equal(v->key + v->key_len, "accept: text/plain\n", 19);
    names = cache_writer_vary_names(w, &nlen);
    assert_int_equal(nlen, 7);
    assert_memory_equal(names, "accept\n", 7);
    assert_false(cache_obj_purged(c, v));

    assert_int_equal(cache_writer_write(w, big, 1000), 0);
    assert_int_equal(cache_writer_body_written(w), 0); /* buffered */
    assert_int_equal(cache_writer_flush(w), 0);
    assert_int_equal(cache_writer_body_written(w), 1000);
    assert_int_equal(pread(v->fd, back, 1000, (off_t)v->body_off), 1000);
    assert_memory_equal(back, big, 1000);
    assert_int_equal(cache_writer_view(w, &o), CACHE_EINVAL); /* too late: written */
    assert_int_equal(cache_writer_write(w, big + 1000, sizeof(big) - 1000), 0);
    assert_true(cache_writer_body_written(w) > 1000); /* full pieces went out */
    assert_int_equal(cache_writer_commit(w), 0);
    assert_int_equal(pread(v->fd, back, sizeof(back), (off_t)v->body_off), (ssize_t)sizeof(back));
    assert_memory_equal(back, big, sizeof(back));
    cache_obj_free(v);

    /* what was stored reads back the same */
    assert_int_equal(cache_open(c, "http://h/view", 13, req, 1, &o), CACHE_OK);
    assert_int_equal(o->body_len, sizeof(big));
    assert_int_equal(pread(o->fd, back, sizeof(back), (off_t)o->body_off), (ssize_t)sizeof(back));
    assert_memory_equal(back, big, sizeof(back));
    cache_obj_free(o);

    /* an aborted writer's view still reads what was flushed; a purge marks it */
    w = cache_writer_new(c,
                         &(struct cache_store_args){.key = "http://h/view2",
                                                    .key_len = 14,
                                                    .resp = resp + 2,
                                                    .nresp = 1,
                                                    .ri = &ri,
                                                    .request_time = T0,
                                                    .response_time = T0,
                                                    .content_length = 5},
                         &rc);
    assert_non_null(w);
    assert_int_equal(cache_writer_view(w, &v), 0);
    assert_null(cache_writer_vary_names(w, &nlen));
    assert_int_equal(cache_writer_write(w, "hello", 5), 0);
    assert_int_equal(cache_writer_flush(w), 0);
    assert_int_equal(cache_purge_key(c, "http://h/other", 14, false), 0);
    assert_true(cache_obj_purged(c, v));
    cache_writer_abort(w);
    assert_int_equal(pread(v->fd, back, 5, (off_t)v->body_off), 5);
    assert_memory_equal(back, "hello", 5);
    cache_obj_free(v);
    cache_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_and_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_and_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_304, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_304_variant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_matches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_and_tmp_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_then_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidate_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_view, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
