/*
 * proxy/dns against a real DNS server: a private dnsmasq on a free loopback
 * port, serving names under edge.test from a hosts file in a temp dir
 * (--local=/edge.test/ makes every other edge.test name NXDOMAIN). The
 * machine's own resolver is never asked. Queries that reach dnsmasq are
 * counted from its --log-queries log.
 *
 * Dead resolvers: a UDP socket bound and never read (a black hole: queries
 * time out) and a closed UDP port (ICMP port unreachable).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "proxy/dns.h"
#include "proxy/log.h"
#include "tests/integration/dnsmasq.h"

#define TEST_TIMEOUT_MS 200 /* per try */
#define TEST_ATTEMPTS 2
#define TEST_SLACK_MS 250 /* scheduling tolerance on measured times */

/* ---- dnsmasq and sockets (processes through tests/integration/harness) ------------------ */

static struct h_dns g_dm;

static uint64_t
now_ms(void)
{
    return (uint64_t)h_now_ms();
}

/* A bound UDP socket that never reads: queries to it time out. */
static int
blackhole_bind(uint16_t port, uint16_t *out_port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *out_port = ntohs(sin.sin_port);
    return fd;
}

/* Waits (up to 1 s) for at least 'want' matching lines, then a little more
 * for any extra one, and returns the count. */
static int
log_count_settled(const struct h_dns *dm, const char *needle, int want)
{
    for (int i = 0; i < 100 && h_dns_log_count(dm, needle) < want; i++)
        h_sleep_ms(10);
    h_sleep_ms(50);
    return h_dns_log_count(dm, needle);
}

/* ---- resolver helpers ------------------------------------------------------------------------ */

static const char *const dns_extra[] = {"--host-record=cap.edge.test,10.0.3.1,600", NULL};

static const char MAIN_HOSTS[] = "10.0.0.1 two.edge.test\n"
                                 "10.0.0.2 two.edge.test\n"
                                 "fd00::5 six.edge.test\n"
                                 "10.0.0.7 dual.edge.test\n"
                                 "fd00::7 dual.edge.test\n"
                                 "10.0.0.9 many.edge.test\n"
                                 "10.0.0.10 cancel.edge.test\n"
                                 "10.0.1.1 ttl.edge.test\n";

struct fixture {
    struct event_base *base;
    struct conf_addr addr;
    struct conf_resolver rc;
    struct proxy_dns *dns;
    struct event *guard;
    int expect; /* break the loop once this many callbacks ran */
    int calls;
    uint64_t t_start;
};

struct answer {
    struct fixture *fx;
    int called;
    int status;
    uint64_t at_ms;
    struct proxy_dns_addrs addrs;
};

static void
rc_init(struct fixture *fx, uint16_t port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&fx->addr.ss;

    memset(&fx->addr, 0, sizeof(fx->addr));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fx->addr.len = sizeof(*sin);
    snprintf(fx->addr.text, sizeof(fx->addr.text), "127.0.0.1:%u", port);
    memset(&fx->rc, 0, sizeof(fx->rc));
    fx->rc.system = false;
    fx->rc.servers = &fx->addr;
    fx->rc.nservers = 1;
    fx->rc.timeout_ms = TEST_TIMEOUT_MS;
    fx->rc.attempts = TEST_ATTEMPTS;
    fx->rc.ttl_min_ms = 1000;
    fx->rc.ttl_max_ms = 3600000;
    fx->rc.negative_ttl_ms = 5000;
    fx->rc.stale_ttl_ms = 3600000;
}

static void
fx_open(struct fixture *fx)
{
    char err[256] = "";

    fx->dns = proxy_dns_new(fx->base, &fx->rc, err, sizeof(err));
    if (fx->dns == NULL)
        fail_msg("proxy_dns_new: %s", err);
}

static int
fx_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    rc_init(fx, g_dm.port);
    fx->t_start = now_ms();
    *state = fx;
    return 0;
}

static int
fx_teardown(void **state)
{
    struct fixture *fx = *state;

    print_message("(%llu ms)\n", (unsigned long long)(now_ms() - fx->t_start));
    proxy_dns_free(fx->dns);
    if (fx->guard != NULL)
        event_free(fx->guard);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *fx = arg;

    (void)fd;
    (void)what;
    event_base_loopbreak(fx->base);
}

/* Runs the loop until fx->expect callbacks ran (expect 0: the whole time) or ms passed. */
static void
run_loop(struct fixture *fx, int expect, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    if (fx->guard == NULL)
        fx->guard = evtimer_new(fx->base, guard_cb, fx);
    fx->expect = expect;
    fx->calls = 0;
    evtimer_add(fx->guard, &tv);
    if (expect == 0 || fx->calls < expect)
        event_base_dispatch(fx->base);
    evtimer_del(fx->guard);
}

static void
answer_cb(void *arg, int status, const struct proxy_dns_addrs *addrs)
{
    struct answer *a = arg;

    a->called++;
    a->status = status;
    a->at_ms = now_ms();
    if (status == 0) {
        assert_non_null(addrs);
        a->addrs = *addrs;
    } else {
        assert_null(addrs);
    }
    a->fx->calls++;
    if (a->fx->expect > 0 && a->fx->calls >= a->fx->expect)
        event_base_loopbreak(a->fx->base);
}

/* Resolves one name and waits for its answer. */
static void
resolve_wait(struct fixture *fx, const char *host, uint16_t port, struct answer *a)
{
    memset(a, 0, sizeof(*a));
    a->fx = fx;
    assert_non_null(proxy_dns_resolve(fx->dns, host, port, answer_cb, a));
    assert_int_equal(a->called, 0); /* never synchronously */
    run_loop(fx, 1, 5000);
    assert_int_equal(a->called, 1);
}

static bool
has_v4(const struct proxy_dns_addrs *as, const char *ip, uint16_t port)
{
    for (size_t i = 0; i < as->n; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&as->addr[i];
        char buf[INET_ADDRSTRLEN];
        if (sin->sin_family != AF_INET || as->len[i] != sizeof(*sin))
            continue;
        inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
        if (strcmp(buf, ip) == 0 && ntohs(sin->sin_port) == port)
            return true;
    }
    return false;
}

static bool
has_v6(const struct proxy_dns_addrs *as, const char *ip, uint16_t port)
{
    for (size_t i = 0; i < as->n; i++) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&as->addr[i];
        char buf[INET6_ADDRSTRLEN];
        if (sin6->sin6_family != AF_INET6 || as->len[i] != sizeof(*sin6))
            continue;
        inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
        if (strcmp(buf, ip) == 0 && ntohs(sin6->sin6_port) == port)
            return true;
    }
    return false;
}

static struct proxy_dns_stats
stats_of(const struct fixture *fx)
{
    struct proxy_dns_stats st;
    proxy_dns_stats(fx->dns, &st);
    return st;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void
test_two_a_records(void **state)
{
    struct fixture *fx = *state;
    struct answer a;
    struct proxy_dns_addrs out;

    fx_open(fx);
    resolve_wait(fx, "two.edge.test", 8080, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.addrs.n, 2);
    assert_true(has_v4(&a.addrs, "10.0.0.1", 8080));
    assert_true(has_v4(&a.addrs, "10.0.0.2", 8080));

    /* the fast path now has it, with whatever port is asked for; name case and a
     * trailing dot do not matter */
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "TWO.edge.test.", 443, &out), 1);
    assert_int_equal(out.n, 2);
    assert_true(has_v4(&out, "10.0.0.1", 443));
    assert_true(has_v4(&out, "10.0.0.2", 443));
    assert_int_equal(stats_of(fx).cache_hits, 1);
    assert_int_equal(stats_of(fx).queries, 1);
}

static void
test_aaaa(void **state)
{
    struct fixture *fx = *state;
    struct answer a;

    fx_open(fx);
    resolve_wait(fx, "six.edge.test", 443, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.addrs.n, 1);
    assert_true(has_v6(&a.addrs, "fd00::5", 443));

    resolve_wait(fx, "dual.edge.test", 80, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.addrs.n, 2);
    assert_true(has_v4(&a.addrs, "10.0.0.7", 80));
    assert_true(has_v6(&a.addrs, "fd00::7", 80));
}

static void
test_nxdomain_cached(void **state)
{
    struct fixture *fx = *state;
    struct answer a;
    struct proxy_dns_addrs out;
    struct proxy_dns_stats st;

    fx_open(fx);
    resolve_wait(fx, "nx.edge.test", 80, &a);
    assert_int_equal(a.status, PROXY_DNS_E_NXDOMAIN);
    assert_string_equal(proxy_dns_strerror(a.status), "no such name");
    assert_int_equal(log_count_settled(&g_dm, "query[A] nx.edge.test ", 1), 1);

    /* within negative_ttl: answered from the cache, no query */
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "nx.edge.test", 80, &out), 0);
    resolve_wait(fx, "nx.edge.test", 80, &a);
    assert_int_equal(a.status, PROXY_DNS_E_NXDOMAIN);
    st = stats_of(fx);
    assert_int_equal(st.queries, 1);
    assert_int_equal(st.negative_hits, 1);
    assert_int_equal(st.failures, 2);
    assert_int_equal(log_count_settled(&g_dm, "query[A] nx.edge.test ", 1), 1);

    /* outside edge.test this dnsmasq has no upstream: it answers REFUSED, which
     * is no negative answer. c-ares 1.18 reports it as ECONNREFUSED ("could not
     * contact DNS servers": TIMEOUT); later versions as EREFUSED (FAIL). */
    resolve_wait(fx, "www.example.invalid", 80, &a);
    assert_true(a.status == PROXY_DNS_E_TIMEOUT || a.status == PROXY_DNS_E_FAIL);
    assert_int_equal(stats_of(fx).queries, 2);
    resolve_wait(fx, "www.example.invalid", 80, &a);
    assert_int_equal(stats_of(fx).queries, 3); /* failures are not cached */

    /* a syntactically impossible name never becomes a query */
    resolve_wait(fx, "bad name!", 80, &a);
    assert_int_equal(a.status, PROXY_DNS_E_NXDOMAIN);
    resolve_wait(fx, "a..b.edge.test", 80, &a);
    assert_int_equal(a.status, PROXY_DNS_E_NXDOMAIN);
    assert_int_equal(stats_of(fx).queries, 3);
}

static void
test_ttl_expiry(void **state)
{
    struct fixture *fx = *state;
    struct answer a;
    struct proxy_dns_addrs out;
    char hosts[sizeof(MAIN_HOSTS) + 64], reread[600];
    uint64_t t0;
    int nread;

    fx->rc.ttl_max_ms = 1000; /* caps cap.edge.test's 600 s record TTL */
    fx_open(fx);
    t0 = now_ms();
    resolve_wait(fx, "ttl.edge.test", 80, &a);
    assert_int_equal(a.status, 0);
    assert_true(has_v4(&a.addrs, "10.0.1.1", 80));
    resolve_wait(fx, "cap.edge.test", 80, &a);
    assert_int_equal(a.status, 0);
    assert_true(has_v4(&a.addrs, "10.0.3.1", 80));

    /* dnsmasq answers with TTL 0 (--local-ttl=0): the 1 s floor applies */
    snprintf(hosts, sizeof(hosts), "%.*s10.0.1.2 ttl.edge.test\n",
             (int)(sizeof(MAIN_HOSTS) - 1 - strlen("10.0.1.1 ttl.edge.test\n")), MAIN_HOSTS);
    snprintf(reread, sizeof(reread), "read %s ", g_dm.hosts);
    nread = h_dns_log_count(&g_dm, reread);
    assert_int_equal(h_dns_write_hosts(&g_dm, hosts), 0);
    h_kill(&g_dm.proc, SIGHUP);
    for (int i = 0; i < 100 && h_dns_log_count(&g_dm, reread) <= nread; i++)
        h_sleep_ms(10);
    assert_true(h_dns_log_count(&g_dm, reread) > nread);
    assert_true(now_ms() - t0 < 900);
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "ttl.edge.test", 80, &out), 1);
    assert_true(has_v4(&out, "10.0.1.1", 80));

    while (now_ms() - t0 < 1100)
        h_sleep_ms(10);
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "ttl.edge.test", 80, &out), 0);
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "cap.edge.test", 80, &out), 0);
    resolve_wait(fx, "ttl.edge.test", 80, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.addrs.n, 1);
    assert_true(has_v4(&a.addrs, "10.0.1.2", 80));
    assert_int_equal(stats_of(fx).queries, 3);

    assert_int_equal(h_dns_write_hosts(&g_dm, MAIN_HOSTS), 0);
    h_kill(&g_dm.proc, SIGHUP);
}

/* Resolver at a black hole: TIMEOUT after timeout × attempts. */
static void
test_dead_resolver_timeout(void **state)
{
    struct fixture *fx = *state;
    struct answer a;
    uint16_t port;
    int fd = blackhole_bind(0, &port);
    uint64_t t0, took;

    assert_true(fd >= 0);
    rc_init(fx, port);
    fx_open(fx);
    t0 = now_ms();
    resolve_wait(fx, "two.edge.test", 80, &a);
    took = a.at_ms - t0;
    print_message("black hole: timeout after %llu ms (budget %d ms)\n", (unsigned long long)took,
                  TEST_TIMEOUT_MS * TEST_ATTEMPTS);
    assert_int_equal(a.status, PROXY_DNS_E_TIMEOUT);
    assert_string_equal(proxy_dns_strerror(a.status), "resolver timeout");
    assert_true(took >= TEST_TIMEOUT_MS * TEST_ATTEMPTS - 20);
    assert_true(took <= TEST_TIMEOUT_MS * TEST_ATTEMPTS + TEST_SLACK_MS);
    assert_int_equal(stats_of(fx).failures, 1);

    /* a timeout is not cached: the next lookup asks again */
    resolve_wait(fx, "two.edge.test", 80, &a);
    assert_int_equal(a.status, PROXY_DNS_E_TIMEOUT);
    assert_int_equal(stats_of(fx).queries, 2);
    close(fd);
}

/* Resolver at a closed port: no answer either, reported as a timeout, in time. */
static void
test_dead_resolver_closed_port(void **state)
{
    struct fixture *fx = *state;
    struct answer a;
    uint64_t t0, took;

    rc_init(fx, (uint16_t)h_free_port()); /* nothing listens there */
    fx_open(fx);
    t0 = now_ms();
    resolve_wait(fx, "two.edge.test", 80, &a);
    took = a.at_ms - t0;
    print_message("closed port: answer after %llu ms\n", (unsigned long long)took);
    assert_int_equal(a.status, PROXY_DNS_E_TIMEOUT);
    assert_true(took <= TEST_TIMEOUT_MS * TEST_ATTEMPTS + TEST_SLACK_MS);
}

/* An expired answer stands in when the refresh times out. */
static void
test_stale_served(void **state)
{
    struct fixture *fx = *state;
    struct h_dns dm;
    struct answer a;
    struct proxy_dns_stats st;
    int fd = -1;
    uint16_t port;
    uint64_t t0, took;

    assert_int_equal(h_dns_start(&dm, "stale", MAIN_HOSTS, dns_extra), 0);
    rc_init(fx, dm.port);
    fx->rc.ttl_min_ms = 300;
    fx->rc.ttl_max_ms = 300;
    fx->rc.timeout_ms = 100;
    fx->rc.attempts = 1;
    fx->rc.stale_ttl_ms = 10000;
    fx_open(fx);
    resolve_wait(fx, "two.edge.test", 8080, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.addrs.n, 2);

    /* the resolver goes dead: its port becomes a black hole */
    assert_int_equal(h_stop(&dm.proc), 0);
    for (int i = 0; i < 50 && fd < 0; i++) {
        fd = blackhole_bind(dm.port, &port);
        if (fd < 0)
            h_sleep_ms(10);
    }
    assert_true(fd >= 0);
    h_sleep_ms(350); /* past the 300 ms TTL */

    t0 = now_ms();
    resolve_wait(fx, "two.edge.test", 8081, &a);
    took = a.at_ms - t0;
    print_message("stale answer after %llu ms\n", (unsigned long long)took);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.addrs.n, 2);
    assert_true(has_v4(&a.addrs, "10.0.0.1", 8081));
    assert_true(has_v4(&a.addrs, "10.0.0.2", 8081));
    assert_true(took <= 100 + TEST_SLACK_MS);
    st = stats_of(fx);
    assert_int_equal(st.stale_served, 1);
    assert_int_equal(st.queries, 2);

    /* right after a failed refresh the stale answer comes without a query */
    t0 = now_ms();
    resolve_wait(fx, "two.edge.test", 80, &a);
    assert_int_equal(a.status, 0);
    assert_true(has_v4(&a.addrs, "10.0.0.1", 80));
    assert_true(a.at_ms - t0 < 50);
    st = stats_of(fx);
    assert_int_equal(st.stale_served, 2);
    assert_int_equal(st.queries, 2);
    close(fd);
}

/* No server can answer here: every answer must come from a parse. */
static void
test_literals_and_localhost(void **state)
{
    struct fixture *fx = *state;
    struct answer a;
    struct proxy_dns_addrs out;
    uint16_t port;
    int fd = blackhole_bind(0, &port);

    assert_true(fd >= 0);
    rc_init(fx, port);
    fx_open(fx);

    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "10.1.2.3", 81, &out), 1);
    assert_int_equal(out.n, 1);
    assert_true(has_v4(&out, "10.1.2.3", 81));
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "2001:db8::1", 82, &out), 1);
    assert_true(has_v6(&out, "2001:db8::1", 82));
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "[::1]", 83, &out), 1);
    assert_true(has_v6(&out, "::1", 83));
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "LocalHost.", 84, &out), 1);
    assert_int_equal(out.n, 2);
    assert_true(has_v4(&out, "127.0.0.1", 84));
    assert_true(has_v6(&out, "::1", 84));
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "app.localhost", 85, &out), 1);
    assert_int_equal(out.n, 2);
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "two.edge.test", 80, &out), 0);

    resolve_wait(fx, "192.0.2.7", 9000, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.addrs.n, 1);
    assert_true(has_v4(&a.addrs, "192.0.2.7", 9000));
    resolve_wait(fx, "localhost", 9001, &a);
    assert_int_equal(a.status, 0);
    assert_true(has_v4(&a.addrs, "127.0.0.1", 9001));
    assert_true(has_v6(&a.addrs, "::1", 9001));
    resolve_wait(fx, "[fe80::1]", 9002, &a);
    assert_int_equal(a.status, 0);
    assert_true(has_v6(&a.addrs, "fe80::1", 9002));
    assert_int_equal(stats_of(fx).queries, 0);
    close(fd);

    /* the system resolver (c-ares defaults) needs nothing to answer literals either */
    proxy_dns_free(fx->dns);
    fx->dns = proxy_dns_new(fx->base, NULL, NULL, 0);
    assert_non_null(fx->dns);
    resolve_wait(fx, "localhost", 9003, &a);
    assert_int_equal(a.status, 0);
    assert_true(has_v4(&a.addrs, "127.0.0.1", 9003));
    assert_string_equal(proxy_dns_strerror(0), "ok");
    assert_string_equal(proxy_dns_strerror(PROXY_DNS_E_FAIL), "resolver failure");
    assert_string_equal(proxy_dns_strerror(-99), "unknown error");
}

static void
test_cancel(void **state)
{
    struct fixture *fx = *state;
    struct answer a, b, c, lit;
    struct proxy_dns_query *qa, *qb, *qlit;

    fx_open(fx);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    memset(&lit, 0, sizeof(lit));
    a.fx = b.fx = c.fx = lit.fx = fx;

    /* two waiters on one query: the cancelled one is not called, the other is */
    qa = proxy_dns_resolve(fx->dns, "cancel.edge.test", 80, answer_cb, &a);
    qb = proxy_dns_resolve(fx->dns, "cancel.edge.test", 80, answer_cb, &b);
    assert_non_null(qa);
    assert_non_null(qb);
    proxy_dns_cancel(qa);
    /* an answer already ready (a literal) is not delivered once cancelled */
    qlit = proxy_dns_resolve(fx->dns, "127.0.0.2", 80, answer_cb, &lit);
    assert_non_null(qlit);
    proxy_dns_cancel(qlit);
    run_loop(fx, 0, 300);
    assert_int_equal(a.called, 0);
    assert_int_equal(lit.called, 0);
    assert_int_equal(b.called, 1);
    assert_int_equal(b.status, 0);
    assert_true(has_v4(&b.addrs, "10.0.0.10", 80));

    /* all waiters cancelled: nobody is called, the answer still lands in the cache */
    proxy_dns_cancel(proxy_dns_resolve(fx->dns, "many.edge.test", 80, answer_cb, &c));
    run_loop(fx, 0, 300);
    assert_int_equal(c.called, 0);
    struct proxy_dns_addrs out;
    assert_int_equal(proxy_dns_lookup_cached(fx->dns, "many.edge.test", 80, &out), 1);
}

static void
test_free_with_pending(void **state)
{
    struct fixture *fx = *state;
    struct answer a, b, c;
    uint16_t port;
    int fd = blackhole_bind(0, &port);

    assert_true(fd >= 0);
    rc_init(fx, port);
    fx_open(fx);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    a.fx = b.fx = c.fx = fx;
    assert_non_null(proxy_dns_resolve(fx->dns, "pending.edge.test", 80, answer_cb, &a));
    assert_non_null(proxy_dns_resolve(fx->dns, "pending.edge.test", 80, answer_cb, &b));
    assert_non_null(proxy_dns_resolve(fx->dns, "::1", 80, answer_cb, &c));
    run_loop(fx, 0, 50); /* the literal is answered; the query is on the wire */
    assert_int_equal(c.called, 1);
    assert_non_null(proxy_dns_resolve(fx->dns, "10.0.0.1", 80, answer_cb, &c));
    proxy_dns_free(fx->dns);
    fx->dns = NULL;
    run_loop(fx, 0, 500);
    assert_int_equal(a.called, 0);
    assert_int_equal(b.called, 0);
    assert_int_equal(c.called, 1);
    close(fd);
}

static void
free_from_cb(void *arg, int status, const struct proxy_dns_addrs *addrs)
{
    struct answer *a = arg;

    answer_cb(arg, status, addrs);
    proxy_dns_free(a->fx->dns);
    a->fx->dns = NULL;
}

/* The resolver may be freed from inside one of its callbacks. */
static void
test_free_from_callback(void **state)
{
    struct fixture *fx = *state;
    struct answer a, b;

    fx_open(fx);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.fx = b.fx = fx;
    assert_non_null(proxy_dns_resolve(fx->dns, "two.edge.test", 80, free_from_cb, &a));
    assert_non_null(proxy_dns_resolve(fx->dns, "two.edge.test", 80, answer_cb, &b));
    run_loop(fx, 0, 300);
    assert_int_equal(a.called, 1);
    assert_int_equal(b.called, 0);
    assert_null(fx->dns);
}

/* The cache holds 4096 names; the least recently used one goes first. */
static void
test_cache_bounded(void **state)
{
    enum { NAMES = 4097, BATCH = 32 };
    struct fixture *fx = *state;
    struct answer *as = calloc(BATCH, sizeof(*as));
    struct answer a;
    char name[64];
    struct proxy_dns_stats st;
    uint64_t t0 = now_ms();

    assert_non_null(as);
    fx->rc.timeout_ms = 2000; /* 4097 lookups: one slow answer on a loaded machine is no failure */
    fx_open(fx);
    for (int i = 0; i < NAMES; i += BATCH) {
        int n = NAMES - i < BATCH ? NAMES - i : BATCH;
        for (int j = 0; j < n; j++) {
            memset(&as[j], 0, sizeof(as[j]));
            as[j].fx = fx;
            snprintf(name, sizeof(name), "e%d.edge.test", i + j);
            assert_non_null(proxy_dns_resolve(fx->dns, name, 80, answer_cb, &as[j]));
        }
        run_loop(fx, n, 5000);
        for (int j = 0; j < n; j++)
            assert_int_equal(as[j].status, PROXY_DNS_E_NXDOMAIN);
    }
    print_message("%d names resolved in %llu ms\n", NAMES, (unsigned long long)(now_ms() - t0));
    assert_int_equal(stats_of(fx).queries, NAMES);

    /* e1 is the oldest left (e0 made room for the last); touching it makes e2 the oldest */
    resolve_wait(fx, "e1.edge.test", 80, &a);
    st = stats_of(fx);
    assert_int_equal(st.negative_hits, 1);
    assert_int_equal(st.queries, NAMES);
    resolve_wait(fx, "e0.edge.test", 80, &a); /* evicted: asked again, evicts e2 */
    assert_int_equal(stats_of(fx).queries, NAMES + 1);
    resolve_wait(fx, "e1.edge.test", 80, &a);
    assert_int_equal(stats_of(fx).negative_hits, 2);
    resolve_wait(fx, "e2.edge.test", 80, &a);
    assert_int_equal(stats_of(fx).queries, NAMES + 2);
    free(as);
}

#define JOINERS 50

static void
test_concurrent_join(void **state)
{
    struct fixture *fx = *state;
    struct answer *as = calloc(JOINERS, sizeof(*as));
    struct proxy_dns_stats st;

    assert_non_null(as);
    fx_open(fx);
    for (int i = 0; i < JOINERS; i++) {
        as[i].fx = fx;
        assert_non_null(
            proxy_dns_resolve(fx->dns, "many.edge.test", (uint16_t)(1000 + i), answer_cb, &as[i]));
    }
    run_loop(fx, JOINERS, 5000);
    for (int i = 0; i < JOINERS; i++) {
        assert_int_equal(as[i].called, 1);
        assert_int_equal(as[i].status, 0);
        assert_true(has_v4(&as[i].addrs, "10.0.0.9", (uint16_t)(1000 + i)));
    }
    st = stats_of(fx);
    assert_int_equal(st.lookups, JOINERS);
    assert_int_equal(st.queries, 1);
    assert_int_equal(st.joined, JOINERS - 1);
    /* the server saw one A and one AAAA question (plus the one of test_cancel) */
    assert_int_equal(log_count_settled(&g_dm, "query[A] many.edge.test ", 2), 2);
    assert_int_equal(h_dns_log_count(&g_dm, "query[AAAA] many.edge.test "), 2);
    free(as);
}

/* ---- main ------------------------------------------------------------------------------------ */

static int
group_setup(void **state)
{
    (void)state;
    if (h_dns_start(&g_dm, "main", MAIN_HOSTS, dns_extra) != 0) {
        fprintf(stderr, "dns_test: cannot start dnsmasq (see %s)\n", h_tmpdir());
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    return h_stop(&g_dm.proc) == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_a_records, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_aaaa, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_nxdomain_cached, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dead_resolver_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dead_resolver_closed_port, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stale_served, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_literals_and_localhost, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_join, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cache_bounded, fx_setup, fx_teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    proxy_log_set_level(LOG_LVL_WARN);
    return H_RUN(tests, group_setup, group_teardown);
}
