/*
 * bench/zipf.c and the workload helpers: Zipf frequencies against theory for s in (0, 3],
 * determinism by seed, method mix, URL parsing, Cache-Status classification.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

/* Theory by direct summation, independent of the sampler's table. */
static double
zipf_p(uint64_t k, uint64_t n, double s)
{
    double h = 0;
    for (uint64_t i = 1; i <= n; i++)
        h += pow((double)i, -s);
    return pow((double)k, -s) / h;
}

static void
check_s(double s, uint64_t n)
{
    const uint64_t draws = 400000;
    struct bench_zipf *z = bench_zipf_new(n, s);
    struct bench_rng r;
    uint64_t c1 = 0, c2 = 0, c10 = 0;

    assert_non_null(z);
    bench_rng_seed(&r, 1234);
    for (uint64_t i = 0; i < draws; i++) {
        uint64_t k = bench_zipf_sample(z, &r);
        if (k < 1 || k > n)
            fail_msg("s=%g: rank %llu out of 1..%llu", s, (unsigned long long)k,
                     (unsigned long long)n);
        c1 += k == 1;
        c2 += k == 2;
        c10 += k == 10;
    }
    uint64_t ks[] = {1, 2, 10};
    uint64_t cs[] = {c1, c2, c10};
    for (int i = 0; i < 3; i++) {
        double p = zipf_p(ks[i], n, s);
        assert_true(fabs(bench_zipf_prob(z, ks[i]) - p) < 1e-9);
        double sd = sqrt((double)draws * p * (1 - p)); /* binomial */
        double diff = fabs((double)cs[i] - (double)draws * p);
        if (diff > 5 * sd + 1)
            fail_msg("s=%g rank %llu: %llu draws, expected %.0f (sd %.1f)", s,
                     (unsigned long long)ks[i], (unsigned long long)cs[i], (double)draws * p, sd);
    }
    bench_zipf_free(z);
}

static void
test_zipf_frequencies(void **state)
{
    (void)state;
    check_s(0.1, 1000);
    check_s(0.5, 1000);
    check_s(0.99, 1000);
    check_s(1.0, 1000);
    check_s(1.2, 10000);
    check_s(2.0, 1000);
    check_s(3.0, 1000);
}

static void
test_zipf_bounds(void **state)
{
    (void)state;
    assert_null(bench_zipf_new(100, 0.0));
    assert_null(bench_zipf_new(100, 3.01));
    assert_null(bench_zipf_new(0, 1.0));
    assert_null(bench_zipf_new(BENCH_ZIPF_MAX_N + 1, 1.0));
    struct bench_zipf *z = bench_zipf_new(1, 1.0);
    struct bench_rng r;
    bench_rng_seed(&r, 1);
    for (int i = 0; i < 100; i++)
        assert_int_equal(bench_zipf_sample(z, &r), 1);
    bench_zipf_free(z);
    /* same seed, same sequence */
    struct bench_rng a, b;
    bench_rng_seed(&a, 99);
    bench_rng_seed(&b, 99);
    z = bench_zipf_new(1000, 1.1);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bench_zipf_sample(z, &a), bench_zipf_sample(z, &b));
    bench_zipf_free(z);
}

static void
test_mix(void **state)
{
    struct bench_mix m;
    struct bench_rng r;
    char err[256];
    unsigned counts[BENCH_METHODS] = {0};
    (void)state;
    assert_int_equal(bench_mix_parse(&m, "GET:90,PUT:10", err, sizeof(err)), 0);
    bench_rng_seed(&r, 5);
    for (int i = 0; i < 100000; i++)
        counts[bench_mix_pick(&m, &r)]++;
    assert_true(counts[BENCH_PUT] > 9400 && counts[BENCH_PUT] < 10600);
    assert_int_equal(counts[BENCH_PUT] + counts[BENCH_GET], 100000);
    assert_int_equal(bench_mix_parse(&m, "head", err, sizeof(err)), 0);
    assert_int_equal(m.method[0], BENCH_HEAD);
    assert_int_equal(bench_mix_parse(&m, "GET:0", err, sizeof(err)), -1);
    assert_int_equal(bench_mix_parse(&m, "FETCH:1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "FETCH"));
    assert_int_equal(bench_mix_parse(&m, "", err, sizeof(err)), -1);
}

static void
test_target_and_request(void **state)
{
    struct bench_target t;
    struct bench_workload w;
    struct bench_rng r;
    char err[256], buf[1024];
    enum bench_method m;
    (void)state;
    assert_int_equal(bench_target_parse(&t, "http://127.0.0.1:9000/a?b=1", err, sizeof(err)), 0);
    assert_string_equal(t.host, "127.0.0.1");
    assert_string_equal(t.port, "9000");
    assert_string_equal(t.path, "/a?b=1");
    assert_string_equal(t.hostport, "127.0.0.1:9000");
    assert_string_equal(t.base, "http://127.0.0.1:9000");
    assert_int_equal(bench_target_parse(&t, "http://[::1]", err, sizeof(err)), 0);
    assert_string_equal(t.hostport, "[::1]");
    assert_string_equal(t.path, "/");
    assert_int_equal(bench_target_parse(&t, "ftp://x", err, sizeof(err)), -1);
    assert_int_equal(bench_target_parse(&t, "http://x:99999/", err, sizeof(err)), -1);
    assert_int_equal(bench_target_parse(&t, "http://x/a b", err, sizeof(err)), -1);

    memset(&w, 0, sizeof(w));
    assert_int_equal(bench_target_parse(&t, "http://h:81/", err, sizeof(err)), 0);
    assert_int_equal(bench_mix_parse(&w.mix, "PUT", err, sizeof(err)), 0);
    assert_int_equal(bench_workload_set_template(&w, "/resp?cc=max-age%3D60&k=%d&x", err,
                                                 sizeof(err)), 0);
    w.kind = BENCH_SRC_ZIPF;
    w.zipf = bench_zipf_new(1, 1.0);
    w.body_size = 5;
    bench_rng_seed(&r, 1);
    size_t n = bench_request_build(&w, &t, &r, buf, sizeof(buf), &m);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_int_equal(m, BENCH_PUT);
    assert_string_equal(buf, "PUT /resp?cc=max-age%3D60&k=1&x HTTP/1.1\r\nHost: h:81\r\n"
                             "User-Agent: edge-bench\r\nContent-Length: 5\r\n"
                             "Content-Type: application/octet-stream\r\n\r\n");
    /* never truncated: too small a buffer gives 0 */
    assert_int_equal(bench_request_build(&w, &t, &r, buf, 40, &m), 0);
    assert_int_equal(bench_workload_set_template(&w, "/no-number", err, sizeof(err)), -1);
    bench_workload_fini(&w);
}

static void
test_cache_status(void **state)
{
#define CS(s) bench_cache_status_parse(s, strlen(s))
    (void)state;
    assert_int_equal(CS("edge; hit"), BENCH_CACHE_HIT);
    assert_int_equal(CS("edge; hit; ttl=30"), BENCH_CACHE_HIT);
    assert_int_equal(CS("edge; hit; ttl=-5"), BENCH_CACHE_STALE);
    assert_int_equal(CS("edge; fwd=miss; stored"), BENCH_CACHE_MISS);
    assert_int_equal(CS("edge; fwd=uri-miss"), BENCH_CACHE_MISS);
    assert_int_equal(CS("edge; fwd=stale; fwd-status=304"), BENCH_CACHE_STALE);
    assert_int_equal(CS("edge; fwd=bypass"), BENCH_CACHE_OTHER);
    assert_int_equal(CS("edge"), BENCH_CACHE_OTHER);
    assert_int_equal(CS(""), BENCH_CACHE_OTHER);
    /* the last member is the cache nearest the client */
    assert_int_equal(CS("origin-cache; hit, edge; fwd=miss"), BENCH_CACHE_MISS);
    assert_int_equal(CS("shield; fwd=miss, edge;hit"), BENCH_CACHE_HIT);
    assert_int_equal(CS("\"a,b\"; fwd=miss"), BENCH_CACHE_MISS);
    assert_int_equal(CS("edge; HIT"), BENCH_CACHE_HIT);
#undef CS
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zipf_frequencies), cmocka_unit_test(test_zipf_bounds),
        cmocka_unit_test(test_mix),              cmocka_unit_test(test_target_and_request),
        cmocka_unit_test(test_cache_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
