/*
 * Random numbers (xoshiro256**, seeded through splitmix64) and the Zipf sampler.
 *
 * Zipf: the CDF over ranks 1..n is tabulated once (Kahan-summed, normalised so the last entry
 * is exactly 1) and a draw is a binary search for the first entry >= u. That is exact for every
 * exponent, including s = 1 where closed-form inversions need special cases, and costs
 * log2(n) comparisons (23 for ten million paths).
 */
#include "bench/bench.h"

#include <math.h>
#include <stdlib.h>

struct bench_zipf {
    uint64_t n;
    double s;
    double *cdf; /* cdf[k-1] = P(rank <= k) */
};

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void
bench_rng_seed(struct bench_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
bench_rng_next(struct bench_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double
bench_rng_double(struct bench_rng *r)
{
    return (double)(bench_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t
bench_rng_below(struct bench_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift; the bias (< n / 2^64) is irrelevant here */
    return (uint64_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
}

struct bench_zipf *
bench_zipf_new(uint64_t n, double s)
{
    struct bench_zipf *z = NULL;

    if (n == 0 || n > BENCH_ZIPF_MAX_N || !(s > 0.0) || s > 3.0)
        return NULL;
    z = calloc(1, sizeof(*z));
    if (z == NULL)
        goto fail;
    z->cdf = malloc(n * sizeof(double));
    if (z->cdf == NULL)
        goto fail;
    z->n = n;
    z->s = s;
    double sum = 0.0, c = 0.0; /* Kahan */
    for (uint64_t k = 1; k <= n; k++) {
        double y = pow((double)k, -s) - c;
        double t = sum + y;
        c = (t - sum) - y;
        sum = t;
        z->cdf[k - 1] = sum;
    }
    for (uint64_t k = 0; k < n; k++)
        z->cdf[k] /= sum;
    z->cdf[n - 1] = 1.0;
    return z;
fail:
    bench_zipf_free(z);
    return NULL;
}

void
bench_zipf_free(struct bench_zipf *z)
{
    if (z == NULL)
        return;
    free(z->cdf);
    free(z);
}

uint64_t
bench_zipf_sample(const struct bench_zipf *z, struct bench_rng *r)
{
    double u = bench_rng_double(r);
    uint64_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo + 1;
}

double
bench_zipf_prob(const struct bench_zipf *z, uint64_t k)
{
    if (k < 1 || k > z->n)
        return 0.0;
    return k == 1 ? z->cdf[0] : z->cdf[k - 1] - z->cdf[k - 2];
}
