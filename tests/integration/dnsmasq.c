#include "tests/integration/dnsmasq.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

int
h_dns_write_hosts(const struct h_dns *d, const char *hosts)
{
    const char *base = strrchr(d->hosts, '/');
    return (base != NULL && h_write_file(base + 1, "%s", hosts) != NULL) ? 0 : -1;
}

int
h_dns_log_count(const struct h_dns *d, const char *needle)
{
    char line[1024];
    int n = 0;
    FILE *f = fopen(d->log, "r");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, needle) != NULL)
            n++;
    fclose(f);
    return n;
}

int
h_dns_set_hosts(struct h_dns *d, const char *hosts)
{
    char reread[600];
    int before;

    snprintf(reread, sizeof(reread), "read %s ", d->hosts);
    before = h_dns_log_count(d, reread);
    if (h_dns_write_hosts(d, hosts) < 0 || h_kill(&d->proc, SIGHUP) < 0)
        return -1;
    for (int i = 0; i < 200; i++) {
        if (h_dns_log_count(d, reread) > before)
            return 0;
        h_sleep_ms(10);
    }
    return -1;
}

int
h_dns_start(struct h_dns *d, const char *tag, const char *hosts, const char *const extra[])
{
    char name[64], a_port[32], a_hosts[600], a_log[600], a_pid[600];
    const char *argv[40] = {"dnsmasq",
                            "--no-daemon",
                            "--keep-in-foreground",
                            "--conf-file=/dev/null",
                            a_port,
                            "--listen-address=127.0.0.1",
                            "--bind-interfaces",
                            "--no-resolv",
                            "--no-hosts",
                            a_hosts,
                            "--local-ttl=0",
                            "--local=/edge.test/",
                            "--user=root",
                            "--group=root",
                            a_pid,
                            "--log-queries",
                            a_log};
    size_t argc = 17;
    const char *path;

    for (size_t i = 0; extra != NULL && extra[i] != NULL && argc < 39; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    memset(d, 0, sizeof(*d));
    snprintf(name, sizeof(name), "%s.hosts", tag);
    path = h_write_file(name, "%s", hosts);
    if (path == NULL)
        return -1;
    snprintf(d->hosts, sizeof(d->hosts), "%s", path);
    snprintf(d->log, sizeof(d->log), "%s/%s.queries", h_tmpdir(), tag);
    snprintf(a_hosts, sizeof(a_hosts), "--addn-hosts=%s", d->hosts);
    snprintf(a_log, sizeof(a_log), "--log-facility=%s", d->log);
    snprintf(a_pid, sizeof(a_pid), "--pid-file=%s/%s.pid", h_tmpdir(), tag);
    snprintf(name, sizeof(name), "dnsmasq-%s", tag);
    for (int attempt = 0; attempt < 3; attempt++) {
        int port = h_free_port(); /* TCP-free; dnsmasq binds UDP too, hence the retry */
        if (port <= 0)
            return -1;
        d->port = (uint16_t)port;
        snprintf(a_port, sizeof(a_port), "--port=%d", port);
        if (h_spawn(&d->proc, name, argv) != 0)
            return -1;
        if (h_wait_proc_port(&d->proc, "127.0.0.1", port, 3000) == 0)
            return 0;
        if (h_alive(&d->proc))
            h_stop(&d->proc);
    }
    return -1;
}

int
h_dns_stop(struct h_dns *d)
{
    return h_stop(&d->proc);
}
