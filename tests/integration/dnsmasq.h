/*
 * A private DNS server for tests: dnsmasq on a free loopback port, serving
 * a hosts file the test writes, authoritative for edge.test (every other
 * edge.test name is NXDOMAIN), answering with TTL 0 unless a record says
 * otherwise, logging every query. Tests never use the machine's resolver.
 */
#ifndef EDGE_TESTS_DNSMASQ_H
#define EDGE_TESTS_DNSMASQ_H

#include <stdint.h>

#include "tests/integration/harness.h"

struct h_dns {
    struct h_proc proc;
    uint16_t port;
    char hosts[512]; /* the hosts file it serves (re-read on SIGHUP) */
    char log[512];   /* its --log-queries output */
};

/* tag names its files; hosts is the text of a hosts file; extra is a
 * NULL-terminated list of more dnsmasq arguments (may be NULL). */
int h_dns_start(struct h_dns *d, const char *tag, const char *hosts, const char *const extra[]);
/* Rewrites the hosts file (no signal). */
int h_dns_write_hosts(const struct h_dns *d, const char *hosts);
/* Rewrites the hosts file and makes dnsmasq re-read it (waits until it did). */
int h_dns_set_hosts(struct h_dns *d, const char *hosts);
/* Lines of the query log that contain needle. */
int h_dns_log_count(const struct h_dns *d, const char *needle);
int h_dns_stop(struct h_dns *d);

#endif
