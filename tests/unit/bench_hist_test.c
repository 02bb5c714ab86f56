/*
 * bench/hist.c: percentiles against known distributions within the documented relative error,
 * bucket geometry, merge, max, empty.
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

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* exact percentile with the same rank rule as the histogram: ceil(q * n)-th smallest */
static uint64_t
exact(const uint64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

static void
check_against(const uint64_t *vals, size_t n)
{
    static const double qs[] = {0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999};
    struct bench_hist *h = malloc(sizeof(*h));
    uint64_t *s = malloc(n * sizeof(*s));
    assert_non_null(h);
    assert_non_null(s);
    bench_hist_init(h);
    for (size_t i = 0; i < n; i++)
        bench_hist_record(h, vals[i]);
    memcpy(s, vals, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_u64);
    assert_int_equal(h->count, n);
    assert_int_equal(bench_hist_percentile(h, 1.0), s[n - 1]);
    assert_int_equal(bench_hist_percentile(h, 0.0), s[0]);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        double want = (double)exact(s, n, qs[i]);
        double got = (double)bench_hist_percentile(h, qs[i]);
        /* half a bucket, rounded to whole microseconds */
        double tol = want * BENCH_HIST_REL_ERR + 1.0;
        if (fabs(got - want) > tol)
            fail_msg("q=%g: got %.0f want %.0f (tol %.1f)", qs[i], got, want, tol);
    }
    free(s);
    free(h);
}

static void
test_uniform(void **state)
{
    const size_t n = 200000;
    uint64_t *v = malloc(n * sizeof(*v));
    struct bench_rng r;
    (void)state;
    bench_rng_seed(&r, 42);
    for (size_t i = 0; i < n; i++)
        v[i] = 1000 + bench_rng_below(&r, 99000); /* 1 ms .. 100 ms */
    check_against(v, n);
    free(v);
}

static void
test_exponential(void **state)
{
    const size_t n = 200000;
    uint64_t *v = malloc(n * sizeof(*v));
    struct bench_rng r;
    (void)state;
    bench_rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++) {
        double u = bench_rng_double(&r);
        v[i] = (uint64_t)(-log(1.0 - u) * 20000.0); /* mean 20 ms: long tail, small values */
    }
    check_against(v, n);
    free(v);
}

static void
test_wide_range(void **state)
{
    /* log-uniform from 1 us to 10 minutes */
    const size_t n = 100000;
    uint64_t *v = malloc(n * sizeof(*v));
    struct bench_rng r;
    (void)state;
    bench_rng_seed(&r, 9);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)exp(bench_rng_double(&r) * log(600e6));
    check_against(v, n);
    free(v);
}

static void
test_geometry(void **state)
{
    (void)state;
    /* exact below 256, contiguous, monotone, each bucket <= 1/128 of its low end wide */
    uint64_t prev_hi = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        uint64_t lo, hi;
        bench_hist_bucket_range(i, &lo, &hi);
        if (i > 0)
            assert_int_equal(lo, prev_hi + 1);
        assert_int_equal(bench_hist_index(lo), i);
        assert_int_equal(bench_hist_index(hi), i);
        if (lo >= 256)
            assert_true((double)(hi - lo + 1) <= (double)lo / 128.0);
        else
            assert_int_equal(lo, hi);
        prev_hi = hi;
    }
    assert_int_equal(prev_hi, BENCH_HIST_MAX_US - 1);
    /* minutes are in range; beyond the top clamps */
    assert_true(bench_hist_index(10ULL * 60 * 1000000) < BENCH_HIST_BUCKETS);
    assert_int_equal(bench_hist_index(UINT64_MAX), BENCH_HIST_BUCKETS - 1);
}

static void
test_empty_and_max(void **state)
{
    struct bench_hist *h = malloc(sizeof(*h));
    (void)state;
    bench_hist_init(h);
    assert_int_equal(bench_hist_percentile(h, 0.5), 0);
    assert_int_equal(bench_hist_percentile(h, 1.0), 0);
    assert_true(bench_hist_mean(h) == 0.0);
    bench_hist_record(h, 12345);
    assert_int_equal(bench_hist_percentile(h, 0.5), 12345); /* clamped to the exact extremes */
    assert_int_equal(bench_hist_percentile(h, 1.0), 12345);
    bench_hist_record(h, 987654321);
    assert_int_equal(bench_hist_percentile(h, 1.0), 987654321); /* exact max */
    assert_int_equal(h->min, 12345);
    bench_hist_record(h, UINT64_MAX); /* saturates, but max stays exact */
    assert_int_equal(h->saturated, 1);
    assert_int_equal(bench_hist_percentile(h, 1.0), UINT64_MAX);
    free(h);
}

static void
test_merge(void **state)
{
    struct bench_hist *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *all = malloc(sizeof(*all));
    struct bench_rng r;
    (void)state;
    bench_hist_init(a);
    bench_hist_init(b);
    bench_hist_init(all);
    bench_rng_seed(&r, 3);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = bench_rng_below(&r, 1000000);
        bench_hist_record(i % 3 ? a : b, v);
        bench_hist_record(all, v);
    }
    bench_hist_merge(a, b);
    assert_int_equal(a->count, all->count);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_memory_equal(a->buckets, all->buckets, sizeof(a->buckets));
    for (double q = 0.05; q < 1.0; q += 0.05)
        assert_int_equal(bench_hist_percentile(a, q), bench_hist_percentile(all, q));
    /* merging an empty one changes nothing, into an empty one copies */
    struct bench_hist *e = malloc(sizeof(*e));
    bench_hist_init(e);
    bench_hist_merge(a, e);
    assert_int_equal(a->count, all->count);
    bench_hist_merge(e, all);
    assert_int_equal(e->min, all->min);
    assert_int_equal(bench_hist_percentile(e, 0.99), bench_hist_percentile(all, 0.99));
    free(a);
    free(b);
    free(all);
    free(e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry),     cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_exponential),  cmocka_unit_test(test_wide_range),
        cmocka_unit_test(test_empty_and_max), cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
