/*
 * origin-sim: the public part, for tests and benchmarks that check bodies.
 *
 * Every generated body (/bytes/N, /resp?size=, /chunked) is the prefix of one
 * endless deterministic byte sequence; byte i (0-based, from the start of the
 * full body, so a Range a-b carries bytes a..b) is
 *
 *     j = i % 65521                     (65521: the largest prime < 2^16)
 *     byte(i) = ((j * 31 + 7) ^ (j >> 8)) & 0xff
 *
 * The period is a prime, so a body shifted by any power-of-two amount (a lost
 * or repeated 4 KiB / 64 KiB block) never compares equal; the server streams
 * it zero-copy from one 128 KiB table.
 */
#ifndef EDGE_ORIGIN_SIM_H
#define EDGE_ORIGIN_SIM_H

#include <stddef.h>
#include <stdint.h>

#define OSIM_BYTES_PERIOD 65521u

static inline uint8_t
osim_byte(uint64_t i)
{
    uint32_t j = (uint32_t)(i % OSIM_BYTES_PERIOD);
    return (uint8_t)(((j * 31u + 7u) ^ (j >> 8)) & 0xffu);
}

/* Writes bytes off .. off+n-1 of the sequence to dst. */
static inline void
osim_bytes_fill(uint8_t *dst, uint64_t off, size_t n)
{
    uint32_t j = (uint32_t)(off % OSIM_BYTES_PERIOD);
    for (size_t k = 0; k < n; k++) {
        dst[k] = (uint8_t)(((j * 31u + 7u) ^ (j >> 8)) & 0xffu);
        if (++j == OSIM_BYTES_PERIOD)
            j = 0;
    }
}

/* Index of the first byte of data[0..n) that differs from the sequence
 * starting at off, or -1 when all match. */
static inline long long
osim_bytes_check(const void *data, uint64_t off, size_t n)
{
    const uint8_t *p = data;
    uint32_t j = (uint32_t)(off % OSIM_BYTES_PERIOD);
    for (size_t k = 0; k < n; k++) {
        if (p[k] != (uint8_t)(((j * 31u + 7u) ^ (j >> 8)) & 0xffu))
            return (long long)k;
        if (++j == OSIM_BYTES_PERIOD)
            j = 0;
    }
    return -1;
}

#endif /* EDGE_ORIGIN_SIM_H */
