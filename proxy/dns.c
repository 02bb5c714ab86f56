/*
 * proxy/dns — c-ares on a worker's event_base, with a per-worker cache.
 *
 * Objects:
 *   struct proxy_dns        the resolver: c-ares channel, its socket events and
 *                           timer, the cache, the pending queries.
 *   struct dns_entry        one cached name: addresses (port 0) + expiry, or a
 *                           negative answer; the lookup in flight for it.
 *   struct dns_lookup       one ares_getaddrinfo in flight (A + AAAA) and the
 *                           queries waiting on it; has its own deadline.
 *   struct proxy_dns_query  one caller's request.
 *
 * Callers' callbacks run only from each query's own event (activated when its
 * answer is ready), never from inside c-ares or from inside a call into this
 * file: a callback may resolve, cancel or even free the resolver.
 *
 * Timeouts: c-ares doubles the per-try timeout on each round through the
 * servers, so its own give-up time is longer than timeout × attempts. Each
 * lookup therefore has a deadline of timeout × attempts × servers; at the
 * deadline its waiters get PROXY_DNS_E_TIMEOUT (or a stale answer) and the
 * lookup is detached from its name, so the next caller starts a new one. A
 * detached lookup that answers later still refreshes the cache.
 */
#include "proxy/dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <ares.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "proxy/internal.h"
#include "proxy/log.h"

#define DNS_MAGIC 0x446e7352u        /* "DnsR" */
#define DNS_QUERY_MAGIC 0x446e7351u  /* "DnsQ" */
#define DNS_LOOKUP_MAGIC 0x446e734cu /* "DnsL" */

#define DNS_CACHE_MAX 4096    /* names per worker; the least recently used goes first */
#define DNS_HASH_BUCKETS 8192 /* power of two */
#define DNS_NAME_MAX 253      /* without the trailing dot */
#define DNS_LABEL_MAX 63
#define DNS_DEFAULT_PORT 53
#define DNS_DEFAULT_TIMEOUT_MS 2000
#define DNS_DEFAULT_ATTEMPTS 2
#define DNS_DEFAULT_TTL_MIN_MS 1000
#define DNS_DEFAULT_TTL_MAX_MS 3600000
#define DNS_DEFAULT_NEG_TTL_MS 5000
#define DNS_DEFAULT_STALE_TTL_MS 3600000
#define DNS_STALE_RETRY_MIN_MS 1000 /* retry backoff after a failed refresh when ttl_min is 0 */

union dns_sa {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

struct dns_lookup;

struct dns_entry {
    struct dns_entry *hnext;
    TAILQ_ENTRY(dns_entry) lru;
    struct dns_lookup *lookup; /* in flight for this name, or NULL */
    uint64_t expires_ms;       /* answer fresh until; 0 = no answer yet */
    uint64_t stale_until_ms;   /* positive answers: usable after a failed refresh until */
    uint64_t retry_ms;         /* after a failed refresh: serve stale without asking until */
    bool negative;
    size_t naddrs;
    union dns_sa *addrs; /* naddrs, port 0 */
    uint32_t hash;
    char host[]; /* normalised: lower case, no trailing dot */
};

struct dns_lookup {
    uint32_t magic;
    struct proxy_dns *d;
    struct dns_entry *e;    /* NULL once detached (deadline passed) */
    struct event *deadline; /* NULL once fired */
    TAILQ_HEAD(, proxy_dns_query) waiters;
    TAILQ_ENTRY(dns_lookup) link; /* d->lookups */
    char host[];
};

enum dns_qstate { DNS_Q_NEW, DNS_Q_WAITING, DNS_Q_READY, DNS_Q_CALLING };

struct proxy_dns_query {
    uint32_t magic;
    enum dns_qstate state;
    struct proxy_dns *d;
    struct dns_lookup *l; /* DNS_Q_WAITING: the lookup waited on */
    struct event *ev;     /* activated when the answer is ready */
    proxy_dns_cb cb;
    void *arg;
    uint16_t port;
    int status;
    TAILQ_ENTRY(proxy_dns_query) wlink; /* l->waiters */
    TAILQ_ENTRY(proxy_dns_query) dlink; /* d->queries (waiting or ready) */
    struct proxy_dns_addrs res;
};

struct dns_sock {
    ares_socket_t fd;
    short what;
    struct event *ev;
    LIST_ENTRY(dns_sock) link;
};

struct proxy_dns {
    uint32_t magic;
    struct event_base *base;
    ares_channel channel;
    bool channel_ok;
    bool destroying;
    struct event *timer; /* c-ares timeouts (ares_timeout) */
    LIST_HEAD(, dns_sock) socks;

    uint64_t timeout_ms;
    unsigned attempts;
    unsigned nservers;
    uint64_t deadline_ms;
    uint64_t ttl_min_ms, ttl_max_ms, negative_ttl_ms, stale_ttl_ms;

    struct dns_entry **buckets;
    TAILQ_HEAD(, dns_entry) lru; /* head = least recently used */
    size_t nentries;
    TAILQ_HEAD(, dns_lookup) lookups;
    TAILQ_HEAD(, proxy_dns_query) queries;

    struct proxy_dns_stats stats;
};

static pthread_once_t dns_lib_once = PTHREAD_ONCE_INIT;
static int dns_lib_status = ARES_SUCCESS;

static void
dns_lib_init(void)
{
    dns_lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* ---- names and literals --------------------------------------------------------------- */

static uint32_t
dns_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

/* Lower-cases host into out (DNS_NAME_MAX + 1 bytes), drops one trailing dot
 * and checks the syntax (letters, digits, '-', '_', non-empty labels of at
 * most 63). Returns the length, or 0 when the name is not valid. */
static size_t
dns_name_norm(const char *host, char *out)
{
    size_t len = strnlen(host, DNS_NAME_MAX + 2);
    size_t label = 0;

    if (len > 1 && host[len - 1] == '.')
        len--;
    if (len == 0 || len > DNS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (isalnum(c) || c == '-' || c == '_') {
            if (++label > DNS_LABEL_MAX)
                return 0;
        } else {
            return 0;
        }
        out[i] = (char)tolower(c);
    }
    out[len] = '\0';
    return len;
}

static bool
dns_is_localhost(const char *name, size_t len)
{
    static const char lh[] = "localhost";
    const size_t lhlen = sizeof(lh) - 1;

    if (len == lhlen)
        return memcmp(name, lh, lhlen) == 0;
    return len > lhlen + 1 && name[len - lhlen - 1] == '.' &&
           memcmp(name + len - lhlen, lh, lhlen) == 0;
}

static void
dns_addrs_set(struct proxy_dns_addrs *out, const union dns_sa *sa, size_t n, uint16_t port)
{
    out->n = 0;
    for (size_t i = 0; i < n && i < PROXY_DNS_MAX_ADDRS; i++) {
        struct sockaddr_storage *ss = &out->addr[i];
        if (sa[i].sa.sa_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)ss;
            memcpy(sin, &sa[i].v4, sizeof(*sin));
            sin->sin_port = htons(port);
            out->len[i] = sizeof(*sin);
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
            memcpy(sin6, &sa[i].v6, sizeof(*sin6));
            sin6->sin6_port = htons(port);
            out->len[i] = sizeof(*sin6);
        }
        out->n++;
    }
}

/* IP literals ("1.2.3.4", "::1", "[::1]") and localhost: fills sa (2 slots)
 * and returns the count, or 0 when host needs DNS. */
static size_t
dns_literal(const char *host, const char *name, size_t namelen, union dns_sa sa[2])
{
    char buf[INET6_ADDRSTRLEN + 1];
    size_t len = strnlen(host, sizeof(buf) + 2);

    memset(sa, 0, 2 * sizeof(*sa));
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len > 0 && len < sizeof(buf)) {
        memcpy(buf, host, len);
        buf[len] = '\0';
        if (inet_pton(AF_INET, buf, &sa[0].v4.sin_addr) == 1) {
            sa[0].v4.sin_family = AF_INET;
            return 1;
        }
        if (inet_pton(AF_INET6, buf, &sa[0].v6.sin6_addr) == 1) {
            sa[0].v6.sin6_family = AF_INET6;
            return 1;
        }
    }
    if (namelen > 0 && dns_is_localhost(name, namelen)) {
        sa[0].v4.sin_family = AF_INET;
        sa[0].v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa[1].v6.sin6_family = AF_INET6;
        sa[1].v6.sin6_addr = in6addr_loopback;
        return 2;
    }
    return 0;
}

/* ---- cache -------------------------------------------------------------------------------- */

static struct dns_entry *
dns_entry_find(struct proxy_dns *d, const char *name, size_t len, uint32_t hash)
{
    for (struct dns_entry *e = d->buckets[hash & (DNS_HASH_BUCKETS - 1)]; e; e = e->hnext)
        if (e->hash == hash && strncmp(e->host, name, len) == 0 && e->host[len] == '\0')
            return e;
    return NULL;
}

static void
dns_entry_touch(struct proxy_dns *d, struct dns_entry *e)
{
    TAILQ_REMOVE(&d->lru, e, lru);
    TAILQ_INSERT_TAIL(&d->lru, e, lru);
}

static void
dns_entry_clear(struct dns_entry *e)
{
    free(e->addrs);
    e->addrs = NULL;
    e->naddrs = 0;
    e->negative = false;
    e->expires_ms = 0;
    e->stale_until_ms = 0;
    e->retry_ms = 0;
}

static void
dns_entry_remove(struct proxy_dns *d, struct dns_entry *e)
{
    struct dns_entry **pp = &d->buckets[e->hash & (DNS_HASH_BUCKETS - 1)];

    BUG_ON(e->lookup != NULL);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    TAILQ_REMOVE(&d->lru, e, lru);
    d->nentries--;
    dns_entry_clear(e);
    free(e);
}

static struct dns_entry *
dns_entry_add(struct proxy_dns *d, const char *name, size_t len, uint32_t hash)
{
    struct dns_entry *e;

    if (d->nentries >= DNS_CACHE_MAX) {
        /* evict the least recently used name that has no query in flight */
        TAILQ_FOREACH(e, &d->lru, lru)
        {
            if (e->lookup == NULL) {
                dns_entry_remove(d, e);
                break;
            }
        }
    }
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->host, name, len);
    e->host[len] = '\0';
    e->hash = hash;
    e->hnext = d->buckets[hash & (DNS_HASH_BUCKETS - 1)];
    d->buckets[hash & (DNS_HASH_BUCKETS - 1)] = e;
    TAILQ_INSERT_TAIL(&d->lru, e, lru);
    d->nentries++;
    return e;
}

/* True when the entry holds an expired positive answer that may stand in. */
static bool
dns_entry_stale_ok(const struct dns_entry *e, uint64_t now)
{
    return !e->negative && e->naddrs > 0 && now < e->stale_until_ms;
}

static uint64_t
dns_ttl_clamp(const struct proxy_dns *d, uint64_t ttl_ms)
{
    if (ttl_ms > d->ttl_max_ms)
        ttl_ms = d->ttl_max_ms;
    if (ttl_ms < d->ttl_min_ms)
        ttl_ms = d->ttl_min_ms;
    return ttl_ms;
}

/* Stores a positive answer (takes 'addrs', malloc'ed) or, with n == 0, a negative one. */
static void
dns_entry_store(struct proxy_dns *d, struct dns_entry *e, union dns_sa *addrs, size_t n,
                uint64_t ttl_ms, uint64_t now)
{
    dns_entry_clear(e);
    if (n == 0) {
        free(addrs);
        e->negative = true;
        e->expires_ms = now + d->negative_ttl_ms;
        return;
    }
    e->addrs = addrs;
    e->naddrs = n;
    e->expires_ms = now + dns_ttl_clamp(d, ttl_ms);
    e->stale_until_ms = e->expires_ms + d->stale_ttl_ms;
}

/* ---- queries -------------------------------------------------------------------------------- */

static void
dns_query_free(struct proxy_dns_query *q)
{
    if (q->ev != NULL)
        event_free(q->ev);
    q->magic = PROXY_DEAD_MAGIC;
    free(q);
}

/* The query's event: its answer is ready. */
static void
dns_query_fire(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_dns_query *q = arg;

    (void)fd;
    (void)what;
    CHECK_MAGIC(q, DNS_QUERY_MAGIC);
    BUG_ON(q->state != DNS_Q_READY);
    /* Unlinked first: the callback may free the resolver. */
    TAILQ_REMOVE(&q->d->queries, q, dlink);
    q->d = NULL;
    q->state = DNS_Q_CALLING;
    q->cb(q->arg, q->status, q->status == 0 ? &q->res : NULL);
    dns_query_free(q);
}

/* Hands an answer to a query; its callback runs from the event loop. */
static void
dns_query_ready(struct proxy_dns_query *q, int status, const union dns_sa *sa, size_t n)
{
    if (status == 0 && n == 0)
        status = PROXY_DNS_E_NXDOMAIN;
    q->status = status;
    if (status == 0)
        dns_addrs_set(&q->res, sa, n, q->port);
    else
        q->d->stats.failures++;
    q->l = NULL;
    q->state = DNS_Q_READY;
    event_active(q->ev, EV_TIMEOUT, 1);
}

static struct proxy_dns_query *
dns_query_new(struct proxy_dns *d, uint16_t port, proxy_dns_cb cb, void *arg)
{
    struct proxy_dns_query *q = malloc(sizeof(*q));

    if (q == NULL)
        return NULL;
    memset(q, 0, offsetof(struct proxy_dns_query, res));
    q->res.n = 0;
    q->magic = DNS_QUERY_MAGIC;
    q->d = d;
    q->cb = cb;
    q->arg = arg;
    q->port = port;
    q->ev = event_new(d->base, -1, 0, dns_query_fire, q);
    if (q->ev == NULL) {
        free(q);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&d->queries, q, dlink);
    return q;
}

void
proxy_dns_cancel(struct proxy_dns_query *q)
{
    if (q == NULL)
        return;
    CHECK_MAGIC(q, DNS_QUERY_MAGIC);
    if (q->state == DNS_Q_CALLING)
        return; /* freed when its callback returns */
    if (q->state == DNS_Q_WAITING)
        TAILQ_REMOVE(&q->l->waiters, q, wlink);
    TAILQ_REMOVE(&q->d->queries, q, dlink);
    dns_query_free(q);
}

/* ---- lookups -------------------------------------------------------------------------------- */

static void
dns_lookup_free(struct dns_lookup *l)
{
    BUG_ON(!TAILQ_EMPTY(&l->waiters));
    if (l->e != NULL && l->e->lookup == l)
        l->e->lookup = NULL;
    if (l->deadline != NULL)
        event_free(l->deadline);
    TAILQ_REMOVE(&l->d->lookups, l, link);
    l->magic = PROXY_DEAD_MAGIC;
    free(l);
}

/* Addresses of a c-ares answer, in its order, without duplicates; *ttl_ms is
 * the smallest record TTL. Returns the count (0 = no data); *out malloc'ed. */
static size_t
dns_extract(const struct ares_addrinfo *res, union dns_sa **out, uint64_t *ttl_ms)
{
    union dns_sa tmp[PROXY_DNS_MAX_ADDRS];
    size_t n = 0;
    uint64_t ttl = UINT64_MAX;

    *out = NULL;
    for (const struct ares_addrinfo_node *ai = res ? res->nodes : NULL;
         ai != NULL && n < PROXY_DNS_MAX_ADDRS; ai = ai->ai_next) {
        union dns_sa sa;
        size_t i;
        memset(&sa, 0, sizeof(sa));
        if (ai->ai_family == AF_INET && ai->ai_addr != NULL &&
            ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
            memcpy(&sa.v4, ai->ai_addr, sizeof(sa.v4));
            sa.v4.sin_port = 0;
        } else if (ai->ai_family == AF_INET6 && ai->ai_addr != NULL &&
                   ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
            memcpy(&sa.v6, ai->ai_addr, sizeof(sa.v6));
            sa.v6.sin6_port = 0;
            sa.v6.sin6_flowinfo = 0;
        } else {
            continue;
        }
        for (i = 0; i < n; i++)
            if (memcmp(&tmp[i], &sa, sizeof(sa)) == 0)
                break;
        if (i < n)
            continue;
        tmp[n++] = sa;
        uint64_t t = ai->ai_ttl > 0 ? (uint64_t)ai->ai_ttl * 1000 : 0;
        if (t < ttl)
            ttl = t;
    }
    *ttl_ms = n ? ttl : 0;
    if (n == 0)
        return 0;
    *out = malloc(n * sizeof(**out));
    if (*out == NULL)
        return 0;
    memcpy(*out, tmp, n * sizeof(**out));
    return n;
}

static int
dns_status_map(int ares_status)
{
    switch (ares_status) {
    case ARES_SUCCESS: return 0;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
    case ARES_EBADNAME: return PROXY_DNS_E_NXDOMAIN;
    case ARES_ETIMEOUT:
    /* c-ares 1.18 also ends with ECONNREFUSED when every try got port
     * unreachable, SERVFAIL, REFUSED or NOTIMP: no server answered usefully */
    case ARES_ECONNREFUSED: return PROXY_DNS_E_TIMEOUT;
    default: return PROXY_DNS_E_FAIL;
    }
}

/*
 * A lookup is over, or its deadline passed (res NULL, status TIMEOUT):
 * update the cache and answer the waiters. Does not free the lookup.
 */
static void
dns_lookup_done(struct dns_lookup *l, int status, const struct ares_addrinfo *res)
{
    struct proxy_dns *d = l->d;
    struct dns_entry *e = l->e;
    struct proxy_dns_query *q;
    union dns_sa *addrs = NULL;
    const union dns_sa *answer = NULL;
    size_t n = 0, nanswer = 0;
    uint64_t ttl_ms = 0, now = proxy_now_ms();
    bool stale = false;

    if (status == 0) {
        n = dns_extract(res, &addrs, &ttl_ms);
        if (n == 0 && res != NULL && res->nodes != NULL)
            status = PROXY_DNS_E_FAIL; /* out of memory */
        else if (n == 0)
            status = PROXY_DNS_E_NXDOMAIN;
    }
    if (e != NULL) {
        e->lookup = NULL;
        l->e = NULL;
    } else if (status == 0 || status == PROXY_DNS_E_NXDOMAIN) {
        /* detached at its deadline: a late answer still refreshes the cache */
        e = dns_entry_find(d, l->host, strlen(l->host), dns_hash(l->host, strlen(l->host)));
        if (e == NULL)
            e = dns_entry_add(d, l->host, strlen(l->host), dns_hash(l->host, strlen(l->host)));
    }

    if (e != NULL && (status == 0 || status == PROXY_DNS_E_NXDOMAIN)) {
        dns_entry_store(d, e, addrs, n, ttl_ms, now);
        addrs = NULL;
        answer = e->addrs;
        nanswer = e->naddrs;
    } else if (e != NULL && e->expires_ms > now) {
        /* a late answer of an earlier, detached lookup is fresher than this failure */
        status = e->negative ? PROXY_DNS_E_NXDOMAIN : 0;
        answer = e->addrs;
        nanswer = e->naddrs;
    } else if (e != NULL && dns_entry_stale_ok(e, now)) {
        /* the refresh failed: the expired answer stands in, and is served
         * without asking again for a while */
        stale = true;
        answer = e->addrs;
        nanswer = e->naddrs;
        e->retry_ms = now + (d->ttl_min_ms ? d->ttl_min_ms : DNS_STALE_RETRY_MIN_MS);
    } else if (status == 0) {
        answer = addrs; /* no entry (out of memory): answer anyway */
        nanswer = n;
    }

    while ((q = TAILQ_FIRST(&l->waiters)) != NULL) {
        TAILQ_REMOVE(&l->waiters, q, wlink);
        if (stale)
            d->stats.stale_served++;
        dns_query_ready(q, stale ? 0 : status, answer, nanswer);
    }
    free(addrs);

    /* a failed lookup leaves no empty or useless entry behind */
    if (e != NULL && e->lookup == NULL && !stale && status != 0 && status != PROXY_DNS_E_NXDOMAIN &&
        !(e->expires_ms > now) && !dns_entry_stale_ok(e, now))
        dns_entry_remove(d, e);
}

static void
dns_ares_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct dns_lookup *l = arg;

    (void)timeouts;
    CHECK_MAGIC(l, DNS_LOOKUP_MAGIC);
    /* While proxy_dns_free runs (ARES_EDESTRUCTION, or an answer c-ares had
     * half collected) there is no one left to answer. */
    if (!l->d->destroying && status != ARES_EDESTRUCTION)
        dns_lookup_done(l, dns_status_map(status), res);
    if (res != NULL)
        ares_freeaddrinfo(res);
    dns_lookup_free(l);
}

static void
dns_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns_lookup *l = arg;

    (void)fd;
    (void)what;
    CHECK_MAGIC(l, DNS_LOOKUP_MAGIC);
    event_free(l->deadline);
    l->deadline = NULL;
    log_debug("dns: %s: no answer within %llums", l->host, (unsigned long long)l->d->deadline_ms);
    /* detaches the lookup: c-ares keeps it until it gives up or answers */
    dns_lookup_done(l, PROXY_DNS_E_TIMEOUT, NULL);
}

/* ---- c-ares on libevent -------------------------------------------------------------------- */

static void
dns_timer_rearm(struct proxy_dns *d)
{
    struct timeval tv, *tvp;

    tvp = ares_timeout(d->channel, NULL, &tv);
    if (tvp != NULL)
        evtimer_add(d->timer, tvp);
    else
        evtimer_del(d->timer);
}

static void
dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_dns *d = arg;

    (void)fd;
    (void)what;
    CHECK_MAGIC(d, DNS_MAGIC);
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_timer_rearm(d);
}

static void
dns_sock_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_dns *d = arg;

    CHECK_MAGIC(d, DNS_MAGIC);
    ares_process_fd(d->channel, (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD);
    dns_timer_rearm(d);
}

static void
dns_sock_free(struct dns_sock *s)
{
    LIST_REMOVE(s, link);
    event_free(s->ev);
    free(s);
}

/* c-ares opens, closes or changes interest in one of its sockets. */
static void
dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct proxy_dns *d = data;
    struct dns_sock *s;
    short what = EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

    CHECK_MAGIC(d, DNS_MAGIC);
    LIST_FOREACH(s, &d->socks, link)
    {
        if (s->fd == fd)
            break;
    }
    if (!readable && !writable) {
        if (s != NULL)
            dns_sock_free(s);
        return;
    }
    if (s != NULL && s->what == what)
        return;
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            goto oom;
        s->fd = fd;
        LIST_INSERT_HEAD(&d->socks, s, link);
    } else {
        event_free(s->ev);
    }
    s->what = what;
    s->ev = event_new(d->base, fd, what, dns_sock_cb, d);
    if (s->ev != NULL && event_add(s->ev, NULL) == 0)
        return;
    if (s->ev != NULL)
        event_free(s->ev);
    LIST_REMOVE(s, link);
    free(s);
oom:
    /* the socket goes unwatched: its queries end at c-ares' timeout */
    log_err("dns: cannot watch resolver socket %d: out of memory", (int)fd);
}

/* ---- public ------------------------------------------------------------------------------- */

static void __attribute__((format(printf, 3, 4)))
dns_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int
dns_set_servers(struct proxy_dns *d, const struct conf_resolver *rc)
{
    struct ares_addr_port_node *nodes;
    int rv;

    nodes = calloc(rc->nservers, sizeof(*nodes));
    if (nodes == NULL)
        return ARES_ENOMEM;
    for (size_t i = 0; i < rc->nservers; i++) {
        const struct sockaddr_storage *ss = &rc->servers[i].ss;
        int port = 0;
        if (ss->ss_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
            nodes[i].family = AF_INET;
            memcpy(&nodes[i].addr.addr4, &sin->sin_addr, sizeof(sin->sin_addr));
            port = ntohs(sin->sin_port);
        } else if (ss->ss_family == AF_INET6) {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
            nodes[i].family = AF_INET6;
            memcpy(&nodes[i].addr.addr6, &sin6->sin6_addr, sizeof(sin6->sin6_addr));
            port = ntohs(sin6->sin6_port);
        } else {
            free(nodes);
            return ARES_EBADFAMILY;
        }
        nodes[i].udp_port = nodes[i].tcp_port = port ? port : DNS_DEFAULT_PORT;
        nodes[i].next = i + 1 < rc->nservers ? &nodes[i + 1] : NULL;
    }
    rv = ares_set_servers_ports(d->channel, nodes);
    free(nodes);
    return rv;
}

static unsigned
dns_count_servers(struct proxy_dns *d)
{
    struct ares_addr_node *list = NULL;
    unsigned n = 0;

    if (ares_get_servers(d->channel, &list) != ARES_SUCCESS)
        return 1;
    for (struct ares_addr_node *p = list; p != NULL; p = p->next)
        n++;
    ares_free_data(list);
    return n ? n : 1;
}

struct proxy_dns *
proxy_dns_new(struct event_base *base, const struct conf_resolver *rc, char *err, size_t errlen)
{
    static char lookups_dns_only[] = "b";
    static char no_resolv_conf[] = "/dev/null";
    struct proxy_dns *d = NULL;
    struct ares_options opts;
    int optmask, rv;
    bool system = rc == NULL || rc->system || rc->nservers == 0;

    pthread_once(&dns_lib_once, dns_lib_init);
    if (dns_lib_status != ARES_SUCCESS) {
        dns_errf(err, errlen, "c-ares: %s", ares_strerror(dns_lib_status));
        return NULL;
    }
    if (rc != NULL && !rc->system && rc->nservers == 0) {
        dns_errf(err, errlen, "resolver: %s", "no server address");
        return NULL;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        goto oom;
    d->magic = DNS_MAGIC;
    d->base = base;
    LIST_INIT(&d->socks);
    TAILQ_INIT(&d->lru);
    TAILQ_INIT(&d->lookups);
    TAILQ_INIT(&d->queries);
    d->timeout_ms = rc && rc->timeout_ms ? rc->timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
    if (d->timeout_ms > INT32_MAX)
        d->timeout_ms = INT32_MAX;
    d->attempts = rc && rc->attempts ? rc->attempts : DNS_DEFAULT_ATTEMPTS;
    if (d->attempts > 100)
        d->attempts = 100;
    d->ttl_min_ms = rc ? rc->ttl_min_ms : DNS_DEFAULT_TTL_MIN_MS;
    d->ttl_max_ms = rc ? rc->ttl_max_ms : DNS_DEFAULT_TTL_MAX_MS;
    d->negative_ttl_ms = rc ? rc->negative_ttl_ms : DNS_DEFAULT_NEG_TTL_MS;
    d->stale_ttl_ms = rc ? rc->stale_ttl_ms : DNS_DEFAULT_STALE_TTL_MS;

    d->buckets = calloc(DNS_HASH_BUCKETS, sizeof(*d->buckets));
    d->timer = evtimer_new(base, dns_timer_cb, d);
    if (d->buckets == NULL || d->timer == NULL)
        goto oom;

    memset(&opts, 0, sizeof(opts));
    opts.sock_state_cb = dns_sock_state_cb;
    opts.sock_state_cb_data = d;
    opts.timeout = (int)d->timeout_ms;
    opts.tries = (int)d->attempts;
    optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    if (!system) {
        /* only the configured servers, absolute names, nothing from /etc */
        opts.lookups = lookups_dns_only;
        opts.domains = NULL;
        opts.ndomains = 0;
        opts.ndots = 1;
        opts.resolvconf_path = no_resolv_conf;
        optmask |= ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS | ARES_OPT_NDOTS | ARES_OPT_RESOLVCONF;
    }
    rv = ares_init_options(&d->channel, &opts, optmask);
    if (rv != ARES_SUCCESS) {
        dns_errf(err, errlen, "c-ares init: %s", ares_strerror(rv));
        goto fail;
    }
    d->channel_ok = true;
    if (!system) {
        rv = dns_set_servers(d, rc);
        if (rv != ARES_SUCCESS) {
            dns_errf(err, errlen, "c-ares servers: %s", ares_strerror(rv));
            goto fail;
        }
        d->nservers = (unsigned)rc->nservers;
    } else {
        d->nservers = dns_count_servers(d);
    }
    d->deadline_ms = d->timeout_ms * d->attempts * d->nservers;
    return d;

oom:
    dns_errf(err, errlen, "resolver: %s", "out of memory");
fail:
    proxy_dns_free(d);
    return NULL;
}

void
proxy_dns_free(struct proxy_dns *d)
{
    struct proxy_dns_query *q;
    struct dns_lookup *l;
    struct dns_sock *s;

    if (d == NULL)
        return;
    CHECK_MAGIC(d, DNS_MAGIC);
    d->destroying = true;
    while ((q = TAILQ_FIRST(&d->queries)) != NULL)
        proxy_dns_cancel(q);
    /* c-ares ends each lookup with ARES_EDESTRUCTION; dns_ares_cb frees it */
    if (d->channel_ok)
        ares_destroy(d->channel);
    while ((l = TAILQ_FIRST(&d->lookups)) != NULL)
        dns_lookup_free(l);
    while ((s = LIST_FIRST(&d->socks)) != NULL)
        dns_sock_free(s);
    if (d->timer != NULL)
        event_free(d->timer);
    while (!TAILQ_EMPTY(&d->lru))
        dns_entry_remove(d, TAILQ_FIRST(&d->lru));
    free(d->buckets);
    d->magic = PROXY_DEAD_MAGIC;
    free(d);
}

int
proxy_dns_lookup_cached(struct proxy_dns *d, const char *host, uint16_t port,
                        struct proxy_dns_addrs *out)
{
    char name[DNS_NAME_MAX + 1];
    union dns_sa lit[2];
    size_t len, n;
    struct dns_entry *e;

    CHECK_MAGIC(d, DNS_MAGIC);
    len = dns_name_norm(host, name);
    n = dns_literal(host, name, len, lit);
    if (n > 0) {
        d->stats.lookups++;
        dns_addrs_set(out, lit, n, port);
        return 1;
    }
    if (len == 0)
        return 0;
    e = dns_entry_find(d, name, len, dns_hash(name, len));
    if (e == NULL || e->negative || e->naddrs == 0 || e->expires_ms <= proxy_now_ms())
        return 0;
    dns_entry_touch(d, e);
    d->stats.lookups++;
    d->stats.cache_hits++;
    dns_addrs_set(out, e->addrs, e->naddrs, port);
    return 1;
}

struct proxy_dns_query *
proxy_dns_resolve(struct proxy_dns *d, const char *host, uint16_t port, proxy_dns_cb cb, void *arg)
{
    char name[DNS_NAME_MAX + 1];
    union dns_sa lit[2];
    struct ares_addrinfo_hints hints;
    struct proxy_dns_query *q;
    struct dns_lookup *l;
    struct dns_entry *e;
    size_t len, n;
    uint32_t hash;
    uint64_t now;

    CHECK_MAGIC(d, DNS_MAGIC);
    BUG_ON(cb == NULL);
    q = dns_query_new(d, port, cb, arg);
    if (q == NULL)
        return NULL;
    d->stats.lookups++;
    len = dns_name_norm(host, name);
    n = dns_literal(host, name, len, lit);
    if (n > 0) {
        dns_query_ready(q, 0, lit, n);
        return q;
    }
    if (len == 0) {
        dns_query_ready(q, PROXY_DNS_E_NXDOMAIN, NULL, 0);
        return q;
    }

    hash = dns_hash(name, len);
    now = proxy_now_ms();
    e = dns_entry_find(d, name, len, hash);
    if (e != NULL) {
        dns_entry_touch(d, e);
        if (e->expires_ms > now) {
            if (e->negative)
                d->stats.negative_hits++;
            else
                d->stats.cache_hits++;
            dns_query_ready(q, e->negative ? PROXY_DNS_E_NXDOMAIN : 0, e->addrs, e->naddrs);
            return q;
        }
        if (e->lookup == NULL && now < e->retry_ms && dns_entry_stale_ok(e, now)) {
            d->stats.stale_served++;
            dns_query_ready(q, 0, e->addrs, e->naddrs);
            return q;
        }
        if (e->lookup != NULL) {
            d->stats.joined++;
            q->l = e->lookup;
            q->state = DNS_Q_WAITING;
            TAILQ_INSERT_TAIL(&e->lookup->waiters, q, wlink);
            return q;
        }
    } else {
        e = dns_entry_add(d, name, len, hash);
        if (e == NULL)
            goto oom;
    }

    l = calloc(1, sizeof(*l) + len + 1);
    if (l == NULL)
        goto oom;
    l->magic = DNS_LOOKUP_MAGIC;
    l->d = d;
    memcpy(l->host, name, len + 1);
    TAILQ_INIT(&l->waiters);
    l->deadline = evtimer_new(d->base, dns_deadline_cb, l);
    if (l->deadline == NULL) {
        free(l);
        goto oom;
    }
    TAILQ_INSERT_TAIL(&d->lookups, l, link);
    struct timeval tv = {.tv_sec = (time_t)(d->deadline_ms / 1000),
                         .tv_usec = (suseconds_t)(d->deadline_ms % 1000) * 1000};
    evtimer_add(l->deadline, &tv);
    l->e = e;
    e->lookup = l;
    q->l = l;
    q->state = DNS_Q_WAITING;
    TAILQ_INSERT_TAIL(&l->waiters, q, wlink);
    d->stats.queries++;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NOSORT;
    /* may call dns_ares_cb before returning (and free l): q is answered then */
    ares_getaddrinfo(d->channel, name, NULL, &hints, dns_ares_cb, l);
    dns_timer_rearm(d);
    return q;

oom:
    if (e != NULL && e->lookup == NULL && e->expires_ms == 0)
        dns_entry_remove(d, e);
    proxy_dns_cancel(q);
    return NULL;
}

const char *
proxy_dns_strerror(int status)
{
    switch (status) {
    case 0: return "ok";
    case PROXY_DNS_E_NXDOMAIN: return "no such name";
    case PROXY_DNS_E_TIMEOUT: return "resolver timeout";
    case PROXY_DNS_E_FAIL: return "resolver failure";
    default: return "unknown error";
    }
}

void
proxy_dns_stats(const struct proxy_dns *d, struct proxy_dns_stats *out)
{
    CHECK_MAGIC(d, DNS_MAGIC);
    *out = d->stats;
}
