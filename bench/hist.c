/*
 * Latency histogram, log-linear like HdrHistogram with 2 significant digits: values below 256 µs
 * have a bucket each; above, every power of two [2^e, 2^(e+1)) is split into 128 equal buckets,
 * so a bucket spans at most 1/128 of its smallest value. Recording is a clz, a shift and an
 * increment; merging adds arrays. 3328 buckets cover 1 µs .. 71 min in 26 KiB.
 */
#include "bench/bench.h"

#include <string.h>

#define SUB (1u << BENCH_HIST_SUB_BITS) /* 128 */
#define EXACT (2u * SUB)                /* 256: values below have their own bucket */

void
bench_hist_init(struct bench_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

size_t
bench_hist_index(uint64_t us)
{
    if (us >= BENCH_HIST_MAX_US)
        us = BENCH_HIST_MAX_US - 1;
    if (us < EXACT)
        return (size_t)us;
    unsigned msb = 63u - (unsigned)__builtin_clzll(us); /* >= 8 */
    unsigned shift = msb - BENCH_HIST_SUB_BITS;        /* >= 1 */
    uint64_t sub = us >> shift;                        /* [128, 255] */
    return EXACT + (size_t)(shift - 1) * SUB + (size_t)(sub - SUB);
}

void
bench_hist_bucket_range(size_t idx, uint64_t *lo, uint64_t *hi)
{
    if (idx < EXACT) {
        *lo = *hi = idx;
        return;
    }
    size_t rel = idx - EXACT;
    unsigned shift = (unsigned)(rel / SUB) + 1;
    uint64_t sub = SUB + rel % SUB;
    *lo = sub << shift;
    *hi = ((sub + 1) << shift) - 1;
}

void
bench_hist_record(struct bench_hist *h, uint64_t us)
{
    if (us >= BENCH_HIST_MAX_US)
        h->saturated++;
    h->buckets[bench_hist_index(us)]++;
    h->count++;
    h->sum += (double)us;
    if (us < h->min)
        h->min = us;
    if (us > h->max)
        h->max = us;
}

void
bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    if (src->count == 0)
        return;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->saturated += src->saturated;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t
bench_hist_percentile(const struct bench_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q <= 0.0)
        return h->min;
    if (q >= 1.0)
        return h->max;
    double want = q * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++; /* ceil */
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            bench_hist_bucket_range(i, &lo, &hi);
            uint64_t v = lo + (hi - lo) / 2;
            /* the exact extremes are known: never report beyond them */
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

double
bench_hist_mean(const struct bench_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
