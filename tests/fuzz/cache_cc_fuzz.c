/*
 * libFuzzer target: Cache-Control / CDN-Cache-Control parsing, then the whole
 * response/request parsers and decisions on the input split into header
 * lines ("Name: value\n"). Checks the invariants the callers rely on.
 */
#include "cache/cache.h"

#include <stdlib.h>
#include <string.h>

#define MAXH 32

static void
check_cc(const struct cache_cc *cc, const char *s, size_t len)
{
    size_t i;

    if ((cc->flags & CACHE_CC_MAX_AGE) && (cc->max_age < 0 || cc->max_age > CACHE_DELTA_MAX))
        abort();
    if ((cc->flags & CACHE_CC_S_MAXAGE) && (cc->s_maxage < 0 || cc->s_maxage > CACHE_DELTA_MAX))
        abort();
    if (cc->n_nc_fields > CACHE_CC_FIELDS_MAX || cc->n_priv_fields > CACHE_CC_FIELDS_MAX)
        abort();
    for (i = 0; i < cc->n_nc_fields; i++)
        if (cc->nc_fields[i].p < s || cc->nc_fields[i].p + cc->nc_fields[i].len > s + len ||
            cc->nc_fields[i].len == 0)
            abort();
    for (i = 0; i < cc->n_priv_fields; i++)
        if (cc->priv_fields[i].p < s || cc->priv_fields[i].p + cc->priv_fields[i].len > s + len)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct cache_cc cc;
    struct cache_hdr h[MAXH];
    struct cache_resp_info ri;
    struct cache_req_info rq;
    struct cache_policy p;
    struct cache_decision d;
    struct cache_route rt;
    char buf[256];
    size_t n = 0, i = 0;

    memset(&cc, 0, sizeof(cc));
    cache_cc_parse(s, size, false, &cc);
    check_cc(&cc, s, size);
    memset(&cc, 0, sizeof(cc));
    cache_cc_parse(s, size, true, &cc);
    check_cc(&cc, s, size);

    /* as header lines */
    while (i < size && n < MAXH) {
        size_t start = i, colon = (size_t)-1;
        while (i < size && data[i] != '\n') {
            if (data[i] == ':' && colon == (size_t)-1)
                colon = i;
            i++;
        }
        if (colon != (size_t)-1) {
            h[n].name = s + start;
            h[n].nlen = colon - start;
            h[n].value = s + colon + 1;
            h[n].vlen = i - colon - 1;
            n++;
        }
        i++;
    }
    cache_resp_parse(h, n, size > 0 ? 100 + data[0] * 2 : 200, &ri);
    cache_req_parse(h, n, &rq);
    cache_route_init(&rt);
    if (size > 1 && (data[1] & 1))
        rt.ttl = data[1];
    (void)cache_storable("GET", 3, &rq, &ri, &rt);
    cache_policy_from_resp(&ri, &rt, 1000000, 1000001, &p);
    if (p.lifetime < 0 || p.initial_age < 0)
        abort();
    cache_decide(&p, &rq, &rt, 1000000 + (size > 2 ? data[2] * 10 : 0), &d);
    for (i = 0; i < n; i++) {
        (void)cache_hdr_storable(&h[i], h, n, &ri.cc);
        (void)cache_hdr_updatable(&h[i], h, n, &ri.cc);
    }
    {
        struct cache_status st = {.name = "edge",
                                  .fwd = CACHE_FWD_MISS,
                                  .ttl = d.ttl,
                                  .key = {s, size},
                                  .detail = {s, size > 8 ? 8 : size}};
        size_t len = cache_status_format(&st, buf, sizeof(buf));
        if (len >= sizeof(buf) || (len > 0 && strlen(buf) != len))
            abort();
    }
    return 0;
}
