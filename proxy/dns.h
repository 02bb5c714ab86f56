/*
 * proxy/dns — the asynchronous resolver of one worker (c-ares driven by the
 * worker's libevent event_base), with a per-worker answer cache.
 *
 * One struct proxy_dns per worker thread; every call is made on that thread
 * and every callback runs on its event_base. Nothing here is thread-safe and
 * nothing needs to be: there are no locks.
 *
 * Usage on the request path:
 *
 *     if (proxy_dns_lookup_cached(d, host, port, &addrs))
 *         connect to addrs now;
 *     else
 *         r->dnsq = proxy_dns_resolve(d, host, port, on_resolved, r);
 *
 * and proxy_dns_cancel(r->dnsq) when the request dies first.
 *
 * Answers: IP literals ("10.0.0.1", "::1", "[::1]") and "localhost" (plus
 * names under ".localhost") never reach DNS. Other names are looked up with
 * ares_getaddrinfo (A and AAAA) and cached by name: positive answers for the
 * smallest record TTL clamped to [ttl_min_ms, ttl_max_ms], NXDOMAIN / no data
 * for negative_ttl_ms. When an expired answer cannot be refreshed because the
 * resolver timed out or failed (not NXDOMAIN), the expired answer is served
 * (status 0) for up to stale_ttl_ms past its expiry; after such a failure the
 * stale answer is given without asking again for ttl_min_ms (1 s when 0), so
 * a dead resolver does not delay every request. Concurrent lookups of a name
 * join the one query in flight. At most 4096 names are cached per resolver
 * (least recently used evicted). Timeouts (PROXY_DNS_E_TIMEOUT) and failures
 * are not cached.
 *
 * A lookup gives up after timeout_ms × attempts × number of servers, whatever
 * c-ares' own (exponential) retry schedule; an answer arriving later still
 * fills the cache.
 */
#ifndef EDGE_PROXY_DNS_H
#define EDGE_PROXY_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct conf_resolver;
struct proxy_dns;
struct proxy_dns_query;

/* Status codes given to callbacks: 0 ok, else one of these (negative). */
enum {
    PROXY_DNS_E_NXDOMAIN = -1, /* no such name, or no A/AAAA data for it; also an invalid name */
    /* no server answered usefully: timeout, port unreachable, and — c-ares 1.18
     * does not tell them apart — SERVFAIL / REFUSED from every server */
    PROXY_DNS_E_TIMEOUT = -2,
    PROXY_DNS_E_FAIL = -3, /* anything else: bad reply, out of memory, ... */
};

#define PROXY_DNS_MAX_ADDRS 16

/* An answer: addresses in the resolver's order, each with the requested port. */
struct proxy_dns_addrs {
    size_t n;
    struct sockaddr_storage addr[PROXY_DNS_MAX_ADDRS];
    socklen_t len[PROXY_DNS_MAX_ADDRS];
};

/* Counters of one resolver (plain integers: read them on the owning thread).
 * Answers are counted when they are made, even if the query is then cancelled. */
struct proxy_dns_stats {
    uint64_t lookups;       /* proxy_dns_resolve calls + proxy_dns_lookup_cached calls that hit */
    uint64_t cache_hits;    /* answered from a fresh cached answer (either call) */
    uint64_t failures;      /* answers with a non-zero status */
    uint64_t stale_served;  /* expired answers given because the refresh failed */
    uint64_t negative_hits; /* answered from a cached NXDOMAIN / no data */
    uint64_t queries;       /* DNS lookups started (one per name, A and AAAA together) */
    uint64_t joined;        /* proxy_dns_resolve calls that joined a lookup in flight */
};

/*
 * A resolver on 'base' configured by 'rc' (NULL = all defaults, system
 * resolver). 'resolver system' uses c-ares' defaults (/etc/resolv.conf,
 * search domains, /etc/hosts); with explicit server addresses only those
 * servers are asked, names are taken as absolute (no search list) and
 * /etc/hosts is not read. NULL with a message in err on failure.
 */
struct proxy_dns *proxy_dns_new(struct event_base *base, const struct conf_resolver *rc, char *err,
                                size_t errlen);
/* Cancels every pending query (their callbacks are not called) and frees
 * everything. Allowed from inside a proxy_dns callback. */
void proxy_dns_free(struct proxy_dns *d);

/*
 * The fast path: 1 with *out filled when an IP literal, localhost or a fresh
 * cached answer (positive) is at hand; 0 otherwise (then use
 * proxy_dns_resolve, which also answers cached NXDOMAIN and stale answers).
 * Never starts a query.
 */
int proxy_dns_lookup_cached(struct proxy_dns *d, const char *host, uint16_t port,
                            struct proxy_dns_addrs *out);

/* status: 0 (addrs has n >= 1) or PROXY_DNS_E_*. addrs (NULL on error) is
 * valid only during the call. The query handle is freed when the callback
 * returns; cancelling it from inside its own callback is a harmless no-op. */
typedef void (*proxy_dns_cb)(void *arg, int status, const struct proxy_dns_addrs *addrs);

/*
 * Resolves host; cb is called exactly once, later, from the event loop —
 * never from inside this call, even when the answer is cached or a literal.
 * NULL when out of memory (cb will not be called).
 */
struct proxy_dns_query *proxy_dns_resolve(struct proxy_dns *d, const char *host, uint16_t port,
                                          proxy_dns_cb cb, void *arg);
/* The callback of q will not be called; q is freed. q must be pending (or be
 * the query whose callback is running). */
void proxy_dns_cancel(struct proxy_dns_query *q);

/* "no such name", "resolver timeout", "resolver failure", "ok", "unknown error". */
const char *proxy_dns_strerror(int status);

void proxy_dns_stats(const struct proxy_dns *d, struct proxy_dns_stats *out);

#endif /* EDGE_PROXY_DNS_H */
