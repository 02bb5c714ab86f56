/*
 * Origins by name, through edge: a private dnsmasq on loopback is the only
 * resolver edge asks. Unknown name -> 502 dns; dead resolver -> 502 dns
 * within the resolver timeout; a name that moves is followed once its TTL
 * expires; a name with two addresses, one down, is served by the other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/dnsmasq.h"
#include "tests/integration/edge.h"

static struct h_dns dns;
static struct h_osim osim;      /* 127.0.0.1:P */
static struct h_proc osim4;     /* 127.0.0.4:P, the same port */
static char osim4_url[64];

static const char HOSTS[] = "127.0.0.1 app.edge.test\n"
                            "127.0.0.2 two.edge.test\n"
                            "127.0.0.1 two.edge.test\n"
                            "127.0.0.1 moving.edge.test\n";

static int
setup(void **state)
{
    char listen[64], bin[512];
    (void)state;
    if (h_dns_start(&dns, "edge", HOSTS, NULL) < 0 || h_osim_start(&osim, NULL) < 0)
        return -1;
    snprintf(listen, sizeof(listen), "127.0.0.4:%d", osim.port);
    snprintf(bin, sizeof(bin), "%s/origin-sim", h_build_dir());
    const char *argv[] = {bin, "--listen", listen, NULL};
    if (h_spawn(&osim4, "osim4", argv) < 0 ||
        h_wait_proc_port(&osim4, "127.0.0.4", osim.port, 5000) < 0)
        return -1;
    snprintf(osim4_url, sizeof(osim4_url), "http://127.0.0.4:%d", osim.port);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    int a = h_stop(&osim4), b = h_osim_stop(&osim), c = h_dns_stop(&dns);
    return a == 0 && b == 0 && c == 0 ? 0 : -1;
}

static int
start_edge(struct h_edge *e, int dns_port, const char *server)
{
    char conf[2048];
    int port = h_free_port(), admin = h_free_port();
    snprintf(conf, sizeof(conf),
             "workers 1;\nlisten 127.0.0.1:%d;\nadmin 127.0.0.1:%d;\naccess_log off;\n"
             "resolver 127.0.0.1:%d timeout=200ms attempts=2 ttl_min=1s ttl_max=1s;\n"
             "origin app { server %s:%d; retries 1; keepalive 0; max_fails 1; "
             "fail_timeout 30s; }\n"
             "site * { route / { origin app; } }\n",
             port, admin, dns_port, server, osim.port);
    return h_edge_start(e, port, admin, conf);
}

static long
get(const struct h_edge *e, const char *path, char *body, size_t n)
{
    struct h_resp r;
    char u[256];
    long st;
    snprintf(u, sizeof(u), "%s%s", e->url, path);
    if (h_http(&r, "GET", u, NULL, 0, NULL) != 0) {
        h_resp_free(&r);
        return -1;
    }
    st = r.status;
    if (body != NULL)
        snprintf(body, n, "%s", r.body ? r.body : "");
    h_resp_free(&r);
    return st;
}

static void
test_name_resolves(void **state)
{
    struct h_edge e;
    (void)state;
    assert_int_equal(start_edge(&e, dns.port, "app.edge.test"), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(get(&e, "/bytes/10", NULL, 0), 200);
    assert_true(h_dns_log_count(&dns, "query[A] app.edge.test") >= 1);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_unknown_name_502_dns(void **state)
{
    struct h_edge e;
    char body[512];
    (void)state;
    assert_int_equal(start_edge(&e, dns.port, "nope.edge.test"), 0);
    assert_int_equal(get(&e, "/bytes/10", body, sizeof(body)), 502);
    assert_non_null(strstr(body, "dns error"));
    assert_non_null(strstr(body, "nope.edge.test"));
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_dead_resolver_502_dns_in_time(void **state)
{
    struct h_edge e;
    char body[512];
    int dead = h_free_port(); /* nothing listens there */
    (void)state;
    assert_int_equal(start_edge(&e, dead, "app.edge.test"), 0);
    double t0 = h_now_ms();
    assert_int_equal(get(&e, "/bytes/10", body, sizeof(body)), 502);
    double took = h_now_ms() - t0;
    assert_non_null(strstr(body, "dns error"));
    /* timeout=200ms x attempts=2, one retry of the lookup at most */
    assert_true(took < 1500);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_moving_name_followed_after_ttl(void **state)
{
    struct h_edge e;
    char u[128];
    struct h_resp r;
    (void)state;
    assert_int_equal(start_edge(&e, dns.port, "moving.edge.test"), 0);
    snprintf(u, sizeof(u), "%s/_stats/reset", osim4_url);
    h_http(&r, "POST", u, "", 0, NULL);
    h_resp_free(&r);
    assert_int_equal(get(&e, "/bytes/10", NULL, 0), 200);
    assert_int_equal(h_stats_int(osim4_url, "requests"), 0);
    /* the name now points at 127.0.0.4 */
    assert_int_equal(h_dns_set_hosts(&dns, "127.0.0.4 moving.edge.test\n"
                                           "127.0.0.1 app.edge.test\n"
                                           "127.0.0.2 two.edge.test\n"
                                           "127.0.0.1 two.edge.test\n"), 0);
    h_sleep_ms(1300); /* past the 1 s TTL */
    assert_int_equal(get(&e, "/bytes/10", NULL, 0), 200);
    assert_int_equal(h_stats_int(osim4_url, "requests"), 1);
    assert_int_equal(h_dns_set_hosts(&dns, HOSTS), 0);
    assert_int_equal(h_edge_stop(&e), 0);
}

static void
test_two_addresses_one_down(void **state)
{
    struct h_edge e;
    char u[256];
    (void)state;
    assert_int_equal(start_edge(&e, dns.port, "two.edge.test"), 0);
    /* 127.0.0.2:P refuses; every request still succeeds, and once the dead
     * address is marked down, it is skipped without a retry */
    for (int i = 0; i < 10; i++)
        assert_int_equal(get(&e, "/bytes/10", NULL, 0), 200);
    snprintf(u, sizeof(u), "%s/metrics", e.admin_url);
    struct h_resp r;
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    const char *f = strstr(r.body, "\nedge_upstream_connect_failures_total ");
    assert_non_null(f);
    long fails = strtol(f + strlen("\nedge_upstream_connect_failures_total "), NULL, 10);
    assert_true(fails >= 1 && fails <= 2);
    h_resp_free(&r);
    assert_int_equal(h_edge_stop(&e), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_resolves),
        cmocka_unit_test(test_unknown_name_502_dns),
        cmocka_unit_test(test_dead_resolver_502_dns_in_time),
        cmocka_unit_test(test_moving_name_followed_after_ttl),
        cmocka_unit_test(test_two_addresses_one_down),
    };
    return H_RUN(tests, setup, teardown);
}
