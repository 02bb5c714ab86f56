/*
 * The cache on the request path, end to end: origin-sim's scripted /resp
 * drives Cache-Control, ETag, Vary and tags; its /_stats proves what reached
 * the origin. The edge runs with the memory tier on (mem=, bodies up to
 * 16 KiB), so every test below also checks that it follows purges,
 * replacements, 304 refreshes, invalidations and evictions at once; the
 * test_memory_* ones make sure the object was in memory first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/integration/edge.h"

static struct h_osim osim;
static struct h_edge edge;
static char cache_dir[600];

static int
write_conf(char *conf, size_t n, int port, int admin)
{
    return snprintf(conf, n,
                    "workers 2;\nlisten 127.0.0.1:%d;\nadmin 127.0.0.1:%d;\naccess_log off;\n"
                    "cache_dir %s max_size=64m mem=8m mem_object=16k;\n"
                    "origin app { server 127.0.0.1:%d; retries 0; connect_timeout 300ms; }\n"
                    "site tpl.test { route / { origin app; cache on ignore_query=utm sort_query; } }\n"
                    "site * {\n"
                    "  route /nocache/ { origin app; }\n"
                    "  route / { origin app; cache on; }\n"
                    "}\n"
                    /* one key for any etag= or size=: a new ETag replaces the stored
                     * object; Vary variants of different sizes share a key */
                    "site mem.test { route / { origin app; cache on ignore_query=etag,size; } "
                    "}\n",
                    port, admin, cache_dir, osim.port);
}

static int
setup(void **state)
{
    char conf[2048];
    int port, admin;
    (void)state;
    if (h_osim_start(&osim, NULL) < 0)
        return -1;
    snprintf(cache_dir, sizeof(cache_dir), "%s/cache", h_tmpdir());
    port = h_free_port();
    admin = h_free_port();
    write_conf(conf, sizeof(conf), port, admin);
    return h_edge_start(&edge, port, admin, conf);
}

static int
teardown(void **state)
{
    (void)state;
    int a = h_edge_stop(&edge), b = h_osim_stop(&osim);
    return a == 0 && b == 0 ? 0 : -1;
}

static long
origin_requests(void)
{
    return h_stats_int(osim.url, "requests");
}

struct got {
    long status;
    char cs[256], age[32], etag[128];
    size_t len;
    char body[4096];
};

static void
get(const char *path, const char *const *hdrs, struct got *g)
{
    struct h_resp r;
    char u[512];
    snprintf(u, sizeof(u), "%s%s", edge.url, path);
    memset(g, 0, sizeof(*g));
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, hdrs), 0);
    g->status = r.status;
    if (h_header(&r, "cache-status", g->cs, sizeof(g->cs)) == NULL)
        g->cs[0] = '\0';
    if (h_header(&r, "age", g->age, sizeof(g->age)) == NULL)
        g->age[0] = '\0';
    if (h_header(&r, "etag", g->etag, sizeof(g->etag)) == NULL)
        g->etag[0] = '\0';
    g->len = r.len;
    memcpy(g->body, r.body, r.len < sizeof(g->body) ? r.len : sizeof(g->body));
    h_resp_free(&r);
}

static void
test_miss_then_hit(void **state)
{
    struct got a, b;
    (void)state;
    long before = origin_requests();
    get("/resp?cc=max-age%3D60&size=1000&k=hit", NULL, &a);
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.cs, "fwd=uri-miss"));
    assert_non_null(strstr(a.cs, "stored"));
    get("/resp?cc=max-age%3D60&size=1000&k=hit", NULL, &b);
    assert_int_equal(b.status, 200);
    assert_non_null(strstr(b.cs, "edge; hit"));
    assert_true(b.age[0] != '\0');
    assert_int_equal(b.len, 1000);
    assert_memory_equal(a.body, b.body, 1000);
    assert_int_equal(origin_requests() - before, 1);
}

static void
test_no_store_private_not_stored(void **state)
{
    struct got g;
    (void)state;
    long before = origin_requests();
    for (int i = 0; i < 2; i++) {
        get("/resp?cc=no-store&k=ns", NULL, &g);
        assert_int_equal(g.status, 200);
        get("/resp?cc=private%2C%20max-age%3D60&k=pv", NULL, &g);
        assert_int_equal(g.status, 200);
        assert_null(strstr(g.cs, "hit"));
    }
    assert_int_equal(origin_requests() - before, 4);
}

static void
test_s_maxage_wins_for_shared_cache(void **state)
{
    struct got g;
    (void)state;
    long before = origin_requests();
    get("/resp?cc=max-age%3D0%2C%20s-maxage%3D60&k=smax", NULL, &g);
    get("/resp?cc=max-age%3D0%2C%20s-maxage%3D60&k=smax", NULL, &g);
    assert_non_null(strstr(g.cs, "hit"));
    assert_int_equal(origin_requests() - before, 1);
}

static void
test_expiry_revalidates_with_304(void **state)
{
    struct got g;
    (void)state;
    long before = origin_requests();
    get("/resp?cc=max-age%3D2&etag=v1&k=exp", NULL, &g);
    assert_int_equal(g.status, 200);
    h_sleep_ms(3100); /* whole seconds: past the 2 s lifetime for sure */
    get("/resp?cc=max-age%3D2&etag=v1&k=exp", NULL, &g);
    assert_int_equal(g.status, 200);
    assert_non_null(strstr(g.cs, "fwd=stale"));
    assert_non_null(strstr(g.cs, "fwd-status=304"));
    assert_int_equal(origin_requests() - before, 2);
    /* refreshed: a hit again */
    get("/resp?cc=max-age%3D2&etag=v1&k=exp", NULL, &g);
    assert_non_null(strstr(g.cs, "hit"));
    assert_int_equal(origin_requests() - before, 2);
}

static void
test_vary_variants(void **state)
{
    struct got g;
    const char *en[] = {"Accept-Language: en", NULL};
    const char *fr[] = {"Accept-Language: fr", NULL};
    (void)state;
    long before = origin_requests();
    get("/resp?cc=max-age%3D60&vary=Accept-Language&k=vary", en, &g);
    get("/resp?cc=max-age%3D60&vary=Accept-Language&k=vary", fr, &g);
    assert_null(strstr(g.cs, "hit"));
    get("/resp?cc=max-age%3D60&vary=Accept-Language&k=vary", en, &g);
    assert_non_null(strstr(g.cs, "hit"));
    get("/resp?cc=max-age%3D60&vary=Accept-Language&k=vary", fr, &g);
    assert_non_null(strstr(g.cs, "hit"));
    assert_int_equal(origin_requests() - before, 2);
}

static void
test_head_and_conditional_from_cache(void **state)
{
    struct got g;
    struct h_resp r;
    char u[256], b[64];
    (void)state;
    get("/resp?cc=max-age%3D60&etag=abc&size=500&k=head", NULL, &g);
    long before = origin_requests();
    snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D60&etag=abc&size=500&k=head", edge.url);
    assert_int_equal(h_http(&r, "HEAD", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    assert_string_equal(h_header(&r, "content-length", b, sizeof(b)), "500");
    h_resp_free(&r);
    const char *inm[] = {"If-None-Match: \"abc\"", NULL};
    get("/resp?cc=max-age%3D60&etag=abc&size=500&k=head", inm, &g);
    assert_int_equal(g.status, 304);
    assert_int_equal(g.len, 0);
    assert_int_equal(origin_requests() - before, 0);
}

static void
test_unsafe_method_invalidates(void **state)
{
    struct got g;
    struct h_resp r;
    char u[256];
    (void)state;
    get("/resp?cc=max-age%3D60&k=post", NULL, &g);
    get("/resp?cc=max-age%3D60&k=post", NULL, &g);
    assert_non_null(strstr(g.cs, "hit"));
    snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D60&k=post", edge.url);
    assert_int_equal(h_http(&r, "POST", u, "x", 1, NULL), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    get("/resp?cc=max-age%3D60&k=post", NULL, &g);
    assert_null(strstr(g.cs, "hit"));
    /* the Location of a successful POST, same host, is invalidated too */
    get("/resp?cc=max-age%3D60&k=loc", NULL, &g);
    get("/resp?cc=max-age%3D60&k=loc", NULL, &g);
    assert_non_null(strstr(g.cs, "hit"));
    snprintf(u, sizeof(u), "%s/resp?status=201&loc=%%2Fresp%%3Fcc%%3Dmax-age%%253D60%%26k%%3Dloc",
             edge.url);
    assert_int_equal(h_http(&r, "POST", u, "x", 1, NULL), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
    get("/resp?cc=max-age%3D60&k=loc", NULL, &g);
    assert_null(strstr(g.cs, "hit"));
}

static long
purge(const char *what)
{
    struct h_resp r;
    char u[512];
    long n = -1;
    snprintf(u, sizeof(u), "%s/purge?%s", edge.admin_url, what);
    if (h_http(&r, "POST", u, "", 0, NULL) == 0 && r.status == 200) {
        const char *p = strstr(r.body, "\"purged\":");
        if (p != NULL)
            n = strtol(p + 9, NULL, 10);
    }
    h_resp_free(&r);
    return n;
}

/* url= purges the key the URL's route builds (ignore_query, sort_query here). */
static void
test_purge_url_uses_route_key(void **state)
{
    const char *hdrs[] = {"Host: tpl.test", NULL};
    struct got g;
    (void)state;
    get("/resp?cc=max-age%3D60&k=tpl&utm=a", hdrs, &g);
    assert_non_null(strstr(g.cs, "stored"));
    get("/resp?k=tpl&cc=max-age%3D60&utm=b", hdrs, &g); /* same key: order and utm ignored */
    assert_non_null(strstr(g.cs, "hit"));
    assert_int_equal(purge("url=http://tpl.test/resp%3Futm%3Dz%26k%3Dtpl%26cc%3Dmax-age%253D60"), 1);
    get("/resp?cc=max-age%3D60&k=tpl&utm=a", hdrs, &g);
    assert_null(strstr(g.cs, "hit"));
}

static void
test_purge_url_prefix_tag_soft(void **state)
{
    struct got g;
    char q[512];
    (void)state;
    get("/resp?cc=max-age%3D60&k=pu", NULL, &g);
    snprintf(q, sizeof(q), "url=http://127.0.0.1:%d/resp%%3Fcc%%3Dmax-age%%253D60%%26k%%3Dpu",
             edge.port);
    assert_int_equal(purge(q), 1);
    get("/resp?cc=max-age%3D60&k=pu", NULL, &g);
    assert_null(strstr(g.cs, "hit"));

    get("/resp?cc=max-age%3D60&tag=red&k=t1", NULL, &g);
    get("/resp?cc=max-age%3D60&tag=red&k=t2", NULL, &g);
    assert_int_equal(purge("tag=red"), 2);
    get("/resp?cc=max-age%3D60&tag=red&k=t1", NULL, &g);
    assert_null(strstr(g.cs, "hit"));
    /* a purge answered is durable: no resurrection after the engine is killed */
    get("/resp?cc=max-age%3D600&tag=blue&k=dur", NULL, &g);
    assert_int_equal(purge("tag=blue"), 1);
    pid_t engine = h_child_pid(edge.proc.pid);
    kill(engine, SIGKILL);
    for (int i = 0; i < 100 && h_child_pid(edge.proc.pid) == engine; i++)
        h_sleep_ms(10);
    h_sleep_ms(200);
    get("/resp?cc=max-age%3D600&tag=blue&k=dur", NULL, &g);
    assert_null(strstr(g.cs, "hit"));

    get("/resp?cc=max-age%3D60&etag=s1&k=soft", NULL, &g);
    assert_int_equal(purge("tag=nothing"), 0);
    snprintf(q, sizeof(q), "prefix=http://127.0.0.1:%d/resp&soft=1", edge.port);
    assert_true(purge(q) >= 1);
    long before = origin_requests();
    get("/resp?cc=max-age%3D60&etag=s1&k=soft", NULL, &g);
    /* soft: stale, revalidated with the origin (304) */
    assert_non_null(strstr(g.cs, "fwd=stale"));
    assert_int_equal(origin_requests() - before, 1);
}

static void
test_survives_engine_sigkill(void **state)
{
    struct got g;
    (void)state;
    get("/resp?cc=max-age%3D600&k=persist", NULL, &g);
    pid_t engine = h_child_pid(edge.proc.pid);
    kill(engine, SIGKILL);
    for (int i = 0; i < 100 && h_child_pid(edge.proc.pid) == engine; i++)
        h_sleep_ms(10);
    h_sleep_ms(200);
    long before = origin_requests();
    get("/resp?cc=max-age%3D600&k=persist", NULL, &g);
    assert_non_null(strstr(g.cs, "hit"));
    assert_int_equal(origin_requests() - before, 0);
}

/* Two lower-case hex digits: the cache's fan-out directory names (and
 * never "." or ".."). */
static bool
fanout_name(const char *n)
{
    return strlen(n) == 2 && strchr("0123456789abcdef", n[0]) != NULL && n[0] != '\0' &&
           strchr("0123456789abcdef", n[1]) != NULL && n[1] != '\0';
}

static int
truncate_objects(const char *dir)
{
    /* truncate every object file under dir (two levels: ab/cd/<hex>) */
    char p1[1024], p2[1400], p3[1800];
    int n = 0;
    DIR *d1 = opendir(dir);
    struct dirent *a, *b, *c;
    if (d1 == NULL)
        return 0;
    while ((a = readdir(d1)) != NULL) {
        if (!fanout_name(a->d_name))
            continue;
        snprintf(p1, sizeof(p1), "%s/%s", dir, a->d_name);
        DIR *d2 = opendir(p1);
        while (d2 != NULL && (b = readdir(d2)) != NULL) {
            if (!fanout_name(b->d_name))
                continue;
            snprintf(p2, sizeof(p2), "%s/%s", p1, b->d_name);
            DIR *d3 = opendir(p2);
            while (d3 != NULL && (c = readdir(d3)) != NULL) {
                if (c->d_name[0] == '.' || strlen(c->d_name) < 32)
                    continue; /* only object files: <32 hex>[-<16 hex>] */
                snprintf(p3, sizeof(p3), "%s/%s", p2, c->d_name);
                if (truncate(p3, 10) == 0)
                    n++;
            }
            if (d3 != NULL)
                closedir(d3);
        }
        if (d2 != NULL)
            closedir(d2);
    }
    closedir(d1);
    return n;
}

static void
test_corrupt_file_is_a_miss(void **state)
{
    struct got g;
    (void)state;
    get("/resp?cc=max-age%3D600&k=corrupt", NULL, &g);
    assert_true(truncate_objects(cache_dir) >= 1);
    long before = origin_requests();
    get("/resp?cc=max-age%3D600&k=corrupt", NULL, &g);
    assert_int_equal(g.status, 200);
    assert_null(strstr(g.cs, "hit"));
    assert_int_equal(origin_requests() - before, 1);
    get("/resp?cc=max-age%3D600&k=corrupt", NULL, &g);
    assert_non_null(strstr(g.cs, "hit"));
}

static void
test_stale_if_error_when_origin_is_down(void **state)
{
    struct got g;
    (void)state;
    get("/resp?cc=max-age%3D1%2C%20stale-if-error%3D600&k=sie", NULL, &g);
    assert_int_equal(g.status, 200);
    h_sleep_ms(2100);
    assert_int_equal(h_osim_stop(&osim), 0);
    get("/resp?cc=max-age%3D1%2C%20stale-if-error%3D600&k=sie", NULL, &g);
    assert_int_equal(g.status, 200);
    assert_non_null(strstr(g.cs, "fwd=stale"));
    /* without a stored copy: 502 */
    get("/nocache/x", NULL, &g);
    assert_int_equal(g.status, 502);
    /* origin back on the same port for the teardown */
    char listen[64], bin[512];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", osim.port);
    snprintf(bin, sizeof(bin), "%s/origin-sim", h_build_dir());
    const char *argv[] = {bin, "--listen", listen, NULL};
    assert_int_equal(h_spawn(&osim.proc, "osim-again", argv), 0);
    assert_int_equal(h_wait_proc_port(&osim.proc, "127.0.0.1", osim.port, 5000), 0);
}

static void
test_stale_while_revalidate_background(void **state)
{
    struct got g;
    (void)state;
    const char *path = "/resp?cc=max-age%3D3%2C%20stale-while-revalidate%3D60&etag=w1"
                       "&delay=1s&k=swr";
    get(path, NULL, &g);
    assert_int_equal(g.status, 200);
    h_sleep_ms(4100); /* stale now (whole seconds), within stale-while-revalidate */
    long before = origin_requests();
    double t0 = h_now_ms();
    get(path, NULL, &g);
    double took = h_now_ms() - t0;
    assert_int_equal(g.status, 200);
    assert_non_null(strstr(g.cs, "fwd=stale"));
    print_message("stale-while-revalidate answer in %.1f ms (origin delay 1 s)\n", took);
    assert_true(took < 300);
    /* the background revalidation (a 304 after 1 s) refreshed the copy */
    for (int i = 0; i < 40 && origin_requests() - before < 1; i++)
        h_sleep_ms(50);
    h_sleep_ms(1300);
    assert_int_equal(origin_requests() - before, 1);
    get(path, NULL, &g);
    assert_non_null(strstr(g.cs, "hit"));
    assert_int_equal(origin_requests() - before, 1);
}

static void
test_range_from_cache(void **state)
{
    struct got full;
    struct h_resp r;
    char u[256], b[128];
    (void)state;
    get("/resp?cc=max-age%3D60&size=1000&k=range", NULL, &full);
    assert_int_equal(full.len, 1000);
    long before = origin_requests();
    snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D60&size=1000&k=range", edge.url);
    const char *one[] = {"Range: bytes=10-19", NULL};
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, one), 0);
    assert_int_equal(r.status, 206);
    assert_string_equal(h_header(&r, "content-range", b, sizeof(b)), "bytes 10-19/1000");
    assert_int_equal(r.len, 10);
    assert_memory_equal(r.body, full.body + 10, 10);
    h_resp_free(&r);
    const char *suffix[] = {"Range: bytes=-5", NULL};
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, suffix), 0);
    assert_int_equal(r.status, 206);
    assert_string_equal(h_header(&r, "content-range", b, sizeof(b)), "bytes 995-999/1000");
    assert_memory_equal(r.body, full.body + 995, 5);
    h_resp_free(&r);
    const char *bad[] = {"Range: bytes=2000-3000", NULL};
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, bad), 0);
    assert_int_equal(r.status, 416);
    assert_string_equal(h_header(&r, "content-range", b, sizeof(b)), "bytes */1000");
    h_resp_free(&r);
    const char *two[] = {"Range: bytes=0-1,5-6", NULL};
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, two), 0);
    assert_int_equal(r.status, 206);
    assert_non_null(strstr(h_header(&r, "content-type", b, sizeof(b)), "multipart/byteranges"));
    assert_non_null(strstr(r.body, "Content-Range: bytes 0-1/1000"));
    assert_non_null(strstr(r.body, "Content-Range: bytes 5-6/1000"));
    char cl[32];
    assert_int_equal(strtoul(h_header(&r, "content-length", cl, sizeof(cl)), NULL, 10), r.len);
    h_resp_free(&r);
    assert_int_equal(origin_requests() - before, 0);
}

/* A Range miss: the client gets the origin's 206, the whole object is
 * fetched in the background, and the next range is a hit. */
static void
test_range_miss_fills_the_cache(void **state)
{
    struct h_resp r;
    char u[256], b[256];
    const char *first[] = {"Range: bytes=0-9", NULL}, *next[] = {"Range: bytes=10-19", NULL};
    long before;
    (void)state;
    snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D60&size=1000&k=rmiss", edge.url);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, first), 0);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.len, 10);
    assert_non_null(strstr(h_header(&r, "cache-status", b, sizeof(b)), "fwd=uri-miss"));
    h_resp_free(&r);
    for (int i = 0; i < 40; i++) { /* the fill is in the background */
        struct got g;
        h_sleep_ms(50);
        before = origin_requests();
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, next), 0);
        bool hit = strstr(h_header(&r, "cache-status", b, sizeof(b)), "hit") != NULL;
        if (hit) {
            assert_int_equal(r.status, 206);
            assert_string_equal(h_header(&r, "content-range", b, sizeof(b)), "bytes 10-19/1000");
            assert_int_equal(origin_requests(), before);
            h_resp_free(&r);
            get("/resp?cc=max-age%3D60&size=1000&k=rmiss", NULL, &g);
            assert_int_equal(g.len, 1000);
            assert_non_null(strstr(g.cs, "hit"));
            return;
        }
        h_resp_free(&r);
    }
    fail_msg("the Range miss never filled the cache");
}

struct par {
    pthread_t t;
    const char *path;
    struct got g;
};

static void *
par_main(void *arg)
{
    struct par *p = arg;
    struct h_resp r;
    char u[512];
    snprintf(u, sizeof(u), "%s%s", edge.url, p->path);
    if (h_http(&r, "GET", u, NULL, 0, NULL) == 0) {
        p->g.status = r.status;
        if (h_header(&r, "cache-status", p->g.cs, sizeof(p->g.cs)) == NULL)
            p->g.cs[0] = '\0';
        p->g.len = r.len;
    }
    h_resp_free(&r);
    return NULL;
}

static double
parallel_get(const char *path, int n, struct par *ps)
{
    double t0 = h_now_ms();
    for (int i = 0; i < n; i++) {
        memset(&ps[i], 0, sizeof(ps[i]));
        ps[i].path = path;
        assert_int_equal(pthread_create(&ps[i].t, NULL, par_main, &ps[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(ps[i].t, NULL);
    return h_now_ms() - t0;
}

static void
test_collapse_50_misses_one_origin_request(void **state)
{
    static struct par ps[50];
    (void)state;
    long before = origin_requests();
    parallel_get("/resp?cc=max-age%3D60&delay=500ms&size=2000&k=collapse", 50, ps);
    int collapsed = 0;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(ps[i].g.status, 200);
        assert_int_equal(ps[i].g.len, 2000);
        if (strstr(ps[i].g.cs, "collapsed") != NULL)
            collapsed++;
    }
    assert_int_equal(origin_requests() - before, 1);
    assert_true(collapsed >= 40); /* the rest came after the store: plain hits */
}

static void
test_uncacheable_releases_waiters_at_once(void **state)
{
    static struct par ps[10];
    (void)state;
    long before = origin_requests();
    double took = parallel_get("/resp?cc=no-store&delay=400ms&k=pass", 10, ps);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ps[i].g.status, 200);
    assert_int_equal(origin_requests() - before, 10);
    /* not one after another (that would be 10 x 400 ms): about two rounds */
    if (took >= 2500)
        print_message("10 uncacheable requests took %.0f ms\n", took);
    assert_true(took < 2500);
}

static long
mem_hits(void)
{
    return h_edge_metric(&edge, "edge_cache_memory_hits_total");
}

/* GETs path until it is a hit from memory (the first hit loads it). */
static void
warm_memory(const char *path, const char *const *hdrs, struct got *g)
{
    long before = mem_hits();
    for (int i = 0; i < 3 && mem_hits() == before; i++)
        get(path, hdrs, g);
    assert_true(mem_hits() > before);
    assert_non_null(strstr(g->cs, "hit"));
}

static void
test_memory_hits_bodies_head_and_ranges(void **state)
{
    /* 0 bytes, copied behind the head, sent by reference, over mem_object (sendfile) */
    static const int sizes[] = {0, 1000, 10000, 20000};
    struct got first, g;
    struct h_resp r;
    char path[128], u[256], b[128];
    (void)state;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        snprintf(path, sizeof(path), "/resp?cc=max-age%%3D600&size=%d&etag=m%d&k=memsize", sizes[k],
                 sizes[k]);
        get(path, NULL, &first);
        assert_int_equal(first.len, (size_t)sizes[k]);
        get(path, NULL, &g); /* a disk hit: loads it when it fits */
        long before = mem_hits(), origin = origin_requests();
        for (int i = 0; i < 3; i++) {
            get(path, NULL, &g);
            assert_int_equal(g.status, 200);
            assert_non_null(strstr(g.cs, "edge; hit"));
            assert_int_equal(g.len, (size_t)sizes[k]);
            assert_memory_equal(g.body, first.body,
                                sizes[k] < (int)sizeof(g.body) ? sizes[k] : (int)sizeof(g.body));
            assert_true(g.age[0] != '\0');
        }
        assert_int_equal(mem_hits() - before, sizes[k] <= 16384 ? 3 : 0);
        snprintf(u, sizeof(u), "%s%s", edge.url, path);
        /* HEAD from memory */
        assert_int_equal(h_http(&r, "HEAD", u, NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 0);
        snprintf(b, sizeof(b), "%d", sizes[k]);
        char cl[32];
        assert_string_equal(h_header(&r, "content-length", cl, sizeof(cl)), b);
        h_resp_free(&r);
        /* 304 from memory */
        snprintf(b, sizeof(b), "If-None-Match: \"m%d\"", sizes[k]);
        const char *inm[] = {b, NULL};
        get(path, inm, &g);
        assert_int_equal(g.status, 304);
        assert_int_equal(g.len, 0);
        if (sizes[k] < 100)
            continue;
        /* one range, several ranges, and an unsatisfiable one */
        const char *one[] = {"Range: bytes=50-99", NULL};
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, one), 0);
        assert_int_equal(r.status, 206);
        snprintf(b, sizeof(b), "bytes 50-99/%d", sizes[k]);
        char cr[128];
        assert_string_equal(h_header(&r, "content-range", cr, sizeof(cr)), b);
        assert_int_equal(r.len, 50);
        assert_memory_equal(r.body, first.body + 50, 50);
        h_resp_free(&r);
        const char *two[] = {"Range: bytes=0-1,90-99", NULL};
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, two), 0);
        assert_int_equal(r.status, 206);
        assert_non_null(
            strstr(h_header(&r, "content-type", cr, sizeof(cr)), "multipart/byteranges"));
        assert_int_equal(strtoul(h_header(&r, "content-length", cl, sizeof(cl)), NULL, 10), r.len);
        h_resp_free(&r);
        const char *bad[] = {"Range: bytes=999999-", NULL};
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, bad), 0);
        assert_int_equal(r.status, 416);
        h_resp_free(&r);
        assert_int_equal(origin_requests(), origin);
    }
}

static void
test_memory_follows_purge_replace_refresh(void **state)
{
    struct got g;
    char q[512];
    const char *host[] = {"Host: mem.test", NULL};
    const char *nocache[] = {"Host: mem.test", "Cache-Control: no-cache", NULL};
    (void)state;
    /* a purge by URL: the next request goes to the origin */
    warm_memory("/resp?cc=max-age%3D600&size=500&k=mpurge", NULL, &g);
    snprintf(q, sizeof(q),
             "url=http://127.0.0.1:%d/resp%%3Fcc%%3Dmax-age%%253D600%%26size%%3D500%%26k%%3Dmpurge",
             edge.port);
    assert_int_equal(purge(q), 1);
    long before = origin_requests();
    get("/resp?cc=max-age%3D600&size=500&k=mpurge", NULL, &g);
    assert_null(strstr(g.cs, "hit"));
    assert_int_equal(origin_requests() - before, 1);
    /* by tag, soft: revalidated at once (a 304 from the origin) */
    warm_memory("/resp?cc=max-age%3D600&etag=ms&tag=memsoft&k=msoft", NULL, &g);
    assert_int_equal(purge("tag=memsoft&soft=1"), 1);
    before = origin_requests();
    get("/resp?cc=max-age%3D600&etag=ms&tag=memsoft&k=msoft", NULL, &g);
    assert_non_null(strstr(g.cs, "fwd=stale"));
    assert_non_null(strstr(g.cs, "fwd-status=304"));
    assert_int_equal(origin_requests() - before, 1);
    /* a newer response replaces it: ETag "one", then a no-cache request
     * brings "two" (etag= is not part of this site's key) */
    warm_memory("/resp?cc=max-age%3D600&size=300&etag=one&k=mrepl", host, &g);
    assert_string_equal(g.etag, "\"one\"");
    get("/resp?cc=max-age%3D600&size=300&etag=two&k=mrepl", nocache, &g);
    assert_string_equal(g.etag, "\"two\"");
    before = origin_requests();
    get("/resp?cc=max-age%3D600&size=300&etag=one&k=mrepl", host, &g);
    assert_non_null(strstr(g.cs, "hit"));
    assert_string_equal(g.etag, "\"two\"");
    assert_int_equal(origin_requests(), before);
    /* a 304 refresh: the refreshed copy (fresh again) is what memory serves
     * next; the stale one would go to the origin once more */
    warm_memory("/resp?cc=max-age%3D1&etag=r1&size=200&k=mrefresh", NULL, &g);
    h_sleep_ms(2100);
    before = origin_requests();
    get("/resp?cc=max-age%3D1&etag=r1&size=200&k=mrefresh", NULL, &g);
    assert_non_null(strstr(g.cs, "fwd-status=304"));
    assert_int_equal(g.len, 200);
    get("/resp?cc=max-age%3D1&etag=r1&size=200&k=mrefresh", NULL, &g);
    assert_non_null(strstr(g.cs, "edge; hit"));
    assert_int_equal(g.len, 200);
    assert_int_equal(origin_requests() - before, 1);
    /* an unsafe method invalidates it */
    warm_memory("/resp?cc=max-age%3D600&k=mpost", NULL, &g);
    struct h_resp r;
    char u[256];
    snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D600&k=mpost", edge.url);
    assert_int_equal(h_http(&r, "DELETE", u, NULL, 0, NULL), 0);
    h_resp_free(&r);
    get("/resp?cc=max-age%3D600&k=mpost", NULL, &g);
    assert_null(strstr(g.cs, "hit"));
}

static void
test_memory_vary(void **state)
{
    struct got g;
    const char *en[] = {"Host: mem.test", "Accept-Language: en", NULL};
    const char *fr[] = {"Host: mem.test", "Accept-Language: fr", NULL};
    const char *de[] = {"Host: mem.test", "Accept-Language: de", NULL};
    (void)state;
    long before = origin_requests();
    /* two variants of one key (size= is not in this site's key), told apart by length */
    get("/resp?cc=max-age%3D60&vary=Accept-Language&size=100&k=mvary", en, &g);
    get("/resp?cc=max-age%3D60&vary=Accept-Language&size=200&k=mvary", fr, &g);
    warm_memory("/resp?cc=max-age%3D60&vary=Accept-Language&k=mvary", en, &g);
    assert_int_equal(g.len, 100);
    warm_memory("/resp?cc=max-age%3D60&vary=Accept-Language&k=mvary", fr, &g);
    assert_int_equal(g.len, 200);
    for (int i = 0; i < 3; i++) {
        get("/resp?cc=max-age%3D60&vary=Accept-Language&k=mvary", i % 2 ? fr : en, &g);
        assert_non_null(strstr(g.cs, "hit"));
        assert_int_equal(g.len, i % 2 ? 200 : 100);
    }
    assert_int_equal(origin_requests() - before, 2);
    /* a third language is not either of them */
    get("/resp?cc=max-age%3D60&vary=Accept-Language&size=300&k=mvary", de, &g);
    assert_non_null(strstr(g.cs, "fwd=vary-miss"));
    assert_int_equal(g.len, 300);
}

static int
small_edge(struct h_edge *e, int origin_port, const char *size, const char *dir)
{
    char conf[2048];
    int port = h_free_port(), admin = h_free_port();
    snprintf(conf, sizeof(conf),
             "workers 1;\nlisten 127.0.0.1:%d;\nadmin 127.0.0.1:%d;\naccess_log off;\n"
             "cache_dir %s max_size=%s mem=64k mem_object=16k;\n"
             "origin app { server 127.0.0.1:%d; retries 0; }\n"
             "site * { route / { origin app; cache on; } }\n",
             port, admin, dir, size, origin_port);
    return h_edge_start(e, port, admin, conf);
}

static void
test_eviction_keeps_max_size(void **state)
{
    struct h_edge e;
    struct h_resp r;
    char dir[700], u[256];
    (void)state;
    snprintf(dir, sizeof(dir), "%s/small-cache", h_tmpdir());
    assert_int_equal(small_edge(&e, osim.port, "256k", dir), 0);
    /* ev0 in memory first: its eviction from disk must take it from there */
    snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D600&size=16384&k=ev0", e.url);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
        h_resp_free(&r);
    }
    assert_int_equal(h_edge_metric(&e, "edge_cache_memory_hits_total"), 1);
    for (int i = 0; i < 40; i++) {
        snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D600&size=16384&k=ev%d", e.url, i);
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    long bytes = h_edge_metric(&e, "edge_cache_bytes");
    long evicted = h_edge_metric(&e, "edge_cache_evictions_total");
    print_message("cache bytes %ld (max 262144), evictions %ld\n", bytes, evicted);
    assert_true(bytes > 0 && bytes <= 262144);
    assert_true(evicted >= 20);
    /* the oldest went first; the newest is still there */
    snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D600&size=16384&k=ev39", e.url);
    char cs[256];
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_non_null(strstr(h_header(&r, "cache-status", cs, sizeof(cs)), "hit"));
    h_resp_free(&r);
    snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D600&size=16384&k=ev0", e.url);
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_null(strstr(h_header(&r, "cache-status", cs, sizeof(cs)), "hit"));
    h_resp_free(&r);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_origin_dying_mid_body_caches_nothing(void **state)
{
    struct h_osim bad;
    struct h_edge e;
    struct h_resp r;
    char dir[700], u[256];
    const char *args[] = {"--reset-rate", "1", NULL};
    (void)state;
    assert_int_equal(h_osim_start(&bad, args), 0);
    snprintf(dir, sizeof(dir), "%s/reset-cache", h_tmpdir());
    assert_int_equal(small_edge(&e, bad.port, "16m", dir), 0);
    snprintf(u, sizeof(u), "%s/resp?cc=max-age%%3D600&size=100000&k=cut", e.url);
    for (int i = 0; i < 2; i++) {
        int rc = h_http(&r, "GET", u, NULL, 0, NULL);
        assert_true(rc != 0 || r.len < 100000); /* the client sees the cut */
        h_resp_free(&r);
    }
    assert_int_equal(h_stats_int(bad.url, "requests"), 2); /* nothing was served from cache */
    assert_int_equal(h_edge_metric(&e, "edge_cache_stores_total"), 0);
    assert_int_equal(h_edge_stop(&e), 0);
    assert_int_equal(h_osim_stop(&bad), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_then_hit),
        cmocka_unit_test(test_no_store_private_not_stored),
        cmocka_unit_test(test_s_maxage_wins_for_shared_cache),
        cmocka_unit_test(test_expiry_revalidates_with_304),
        cmocka_unit_test(test_vary_variants),
        cmocka_unit_test(test_head_and_conditional_from_cache),
        cmocka_unit_test(test_range_from_cache),
        cmocka_unit_test(test_range_miss_fills_the_cache),
        cmocka_unit_test(test_stale_while_revalidate_background),
        cmocka_unit_test(test_unsafe_method_invalidates),
        cmocka_unit_test(test_purge_url_prefix_tag_soft),
        cmocka_unit_test(test_purge_url_uses_route_key),
        cmocka_unit_test(test_collapse_50_misses_one_origin_request),
        cmocka_unit_test(test_uncacheable_releases_waiters_at_once),
        cmocka_unit_test(test_survives_engine_sigkill),
        cmocka_unit_test(test_eviction_keeps_max_size),
        cmocka_unit_test(test_origin_dying_mid_body_caches_nothing),
        cmocka_unit_test(test_corrupt_file_is_a_miss),
        cmocka_unit_test(test_stale_if_error_when_origin_is_down),
        cmocka_unit_test(test_memory_hits_bodies_head_and_ranges),
        cmocka_unit_test(test_memory_follows_purge_replace_refresh),
        cmocka_unit_test(test_memory_vary),
    };
    return H_RUN(tests, setup, teardown);
}
