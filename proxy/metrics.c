/*
 * Counters, the Prometheus /metrics page, the /status JSON and the access
 * log. Counters are per worker (relaxed atomics, written by their worker)
 * and summed when read.
 */
#include "proxy/internal.h"
#include "proxy/dns.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

const double proxy_hist_bounds[PROXY_HIST_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

static const int err_statuses[8] = {400, 408, 413, 414, 431, 404, 417, 405};

int
proxy_err_index(int status)
{
    for (int i = 0; i < 8; i++)
        if (err_statuses[i] == status)
            return i;
    return -1;
}

void
proxy_stats_observe(struct proxy_worker *w, int status, uint64_t dur_us)
{
    int cls = status / 100;
    int ei = proxy_err_index(status);
    double s = (double)dur_us / 1e6;
    int b = 0;

    if (cls < 1 || cls > 5)
        cls = 0;
    STAT_INC(w, status_class[cls]);
    if (ei >= 0)
        STAT_INC(w, client_errors[ei]);
    while (b < PROXY_HIST_BUCKETS && s > proxy_hist_bounds[b])
        b++;
    STAT_INC(w, hist[b]);
    STAT_ADD(w, hist_sum_us, dur_us);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static uint64_t
sum(struct proxy_engine *e, size_t off)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < e->nworkers; i++)
        t += LOAD(*(_Atomic uint64_t *)((char *)&e->workers[i].stats + off));
    return t;
}

#define SUM(e, field) sum(e, offsetof(struct proxy_stats, field))

static void
counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                        (unsigned long long)v);
}

static void
gauge(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
                        (unsigned long long)v);
}

void
proxy_metrics_render(struct proxy_engine *e, struct evbuffer *out)
{
    static const char *const classes[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    struct proxy_dns_stats ds, dt = {0};
    uint64_t cum = 0;

    for (unsigned i = 0; i < e->nworkers; i++) {
        if (e->workers[i].dns == NULL)
            continue;
        proxy_dns_stats(e->workers[i].dns, &ds);
        dt.lookups += ds.lookups;
        dt.cache_hits += ds.cache_hits;
        dt.failures += ds.failures;
        dt.stale_served += ds.stale_served;
    }
    evbuffer_add_printf(out, "# HELP edge_requests_total Requests answered, by status class.\n"
                             "# TYPE edge_requests_total counter\n");
    for (int c = 1; c <= 5; c++)
        evbuffer_add_printf(out, "edge_requests_total{class=\"%s\"} %llu\n", classes[c],
                            (unsigned long long)SUM(e, status_class[c]));
    evbuffer_add_printf(out, "# HELP edge_client_errors_total Requests refused, by status.\n"
                             "# TYPE edge_client_errors_total counter\n");
    for (int i = 0; i < 8; i++)
        evbuffer_add_printf(out, "edge_client_errors_total{status=\"%d\"} %llu\n",
                            err_statuses[i], (unsigned long long)SUM(e, client_errors[i]));
    gauge(out, "edge_connections_active", "Client connections open now.",
          SUM(e, conns_active));
    counter(out, "edge_connections_accepted_total", "Client connections accepted.",
            SUM(e, conns_accepted));
    counter(out, "edge_connections_rejected_total", "Connections refused over max_connections.",
            SUM(e, conns_rejected));
    counter(out, "edge_bytes_in_total", "Bytes read from clients.", SUM(e, bytes_in));
    counter(out, "edge_bytes_out_total", "Response body bytes sent to clients.",
            SUM(e, bytes_out));
    counter(out, "edge_upstream_requests_total", "Requests sent to origins.",
            SUM(e, upstream_requests));
    counter(out, "edge_upstream_connects_total", "New connections opened to origins.",
            SUM(e, upstream_connects));
    counter(out, "edge_upstream_connect_failures_total",
            "Origin connections that failed (refused, timed out, name not resolved, TLS).",
            SUM(e, upstream_connect_failures));
    counter(out, "edge_upstream_reused_total", "Requests sent on a pooled keep-alive connection.",
            SUM(e, upstream_reused));
    counter(out, "edge_upstream_retries_total", "Requests retried on another server or address.",
            SUM(e, upstream_retries));
    counter(out, "edge_upstream_timeouts_total", "Origin connect, response or idle timeouts.",
            SUM(e, upstream_timeouts));
    counter(out, "edge_upstream_resets_total", "Origin connections closed before the answer ended.",
            SUM(e, upstream_resets));
    counter(out, "edge_upstream_tls_handshakes_total", "TLS handshakes completed with origins.",
            SUM(e, upstream_tls_handshakes));
    counter(out, "edge_upstream_tls_resumed_total",
            "TLS handshakes with origins that resumed a session.", SUM(e, upstream_tls_resumed));
    counter(out, "edge_upstream_tls_failures_total",
            "TLS handshakes with origins that failed (certificate not verified, protocol, "
            "closed).",
            SUM(e, upstream_tls_failures));
    counter(out, "edge_dns_lookups_total", "Origin name lookups.", dt.lookups);
    counter(out, "edge_dns_cache_hits_total", "Lookups answered from the DNS cache.",
            dt.cache_hits);
    counter(out, "edge_dns_failures_total", "Lookups that failed.", dt.failures);
    counter(out, "edge_dns_stale_total", "Expired answers reused while the resolver failed.",
            dt.stale_served);
    counter(out, "edge_tunnels_total", "Upgraded (WebSocket) connections tunnelled.",
            SUM(e, tunnels));
    counter(out, "edge_h2_sessions_total", "HTTP/2 client connections.", SUM(e, h2_sessions));
    counter(out, "edge_h2_streams_total", "HTTP/2 streams (requests) opened by clients.",
            SUM(e, h2_streams));
    counter(out, "edge_h2_resets_total", "RST_STREAM frames received from HTTP/2 clients.",
            SUM(e, h2_resets));
    counter(out, "edge_h2_goaways_total", "GOAWAY frames sent to HTTP/2 clients.",
            SUM(e, h2_goaways));
    counter(out, "edge_h2_floods_total",
            "HTTP/2 connections closed with ENHANCE_YOUR_CALM (rapid reset or another flood).",
            SUM(e, h2_floods));
    counter(out, "edge_cache_hits_total", "Requests answered from the cache (fresh or stale).",
            SUM(e, cache_hits));
    counter(out, "edge_cache_misses_total", "Cacheable requests that went to the origin.",
            SUM(e, cache_misses));
    counter(out, "edge_cache_revalidated_total", "Stored responses refreshed by a 304.",
            SUM(e, cache_revalidated));
    counter(out, "edge_cache_stores_total", "Responses stored.", SUM(e, cache_stores));
    counter(out, "edge_cache_collapsed_total", "Misses that waited for another request's fetch.",
            SUM(e, cache_collapsed));
    counter(out, "edge_cache_background_refreshes_total",
            "Background revalidations started (stale-while-revalidate).",
            SUM(e, cache_bg_refreshes));
    counter(out, "edge_cache_store_errors_total", "Responses not stored: disk or size errors.",
            SUM(e, cache_store_errors));
    if (e->cache != NULL) {
        struct cache_counters cc;
        cache_counters_get(e->cache, &cc);
        gauge(out, "edge_cache_objects", "Objects in the cache.", cc.objects);
        gauge(out, "edge_cache_bytes", "Bytes of objects in the cache.", cc.bytes);
        counter(out, "edge_cache_evictions_total", "Objects evicted to stay under max_size.",
                cc.evictions);
        counter(out, "edge_cache_purges_total", "Objects purged.", cc.purges);
        counter(out, "edge_cache_corrupt_total", "Stored files found corrupt and removed.",
                cc.corrupt);
        counter(out, "edge_cache_memory_hits_total",
                "Hits answered from the memory tier (cache_dir mem=).", cc.mem_hits);
        gauge(out, "edge_cache_memory_objects", "Objects (and Vary stubs) in the memory tier.",
              cc.mem_objects);
        gauge(out, "edge_cache_memory_bytes", "Bytes held by the memory tier.", cc.mem_bytes);
    }
    proxy_tls_metrics_render(e, out);
    counter(out, "edge_reloads_total", "Successful configuration reloads.", e->reloads);
    counter(out, "edge_reload_failures_total", "Reloads refused because the new conf was bad.",
            e->reload_failures);
    evbuffer_add_printf(out, "# HELP edge_request_duration_seconds Time from the first byte of "
                             "a request to the end of its response.\n"
                             "# TYPE edge_request_duration_seconds histogram\n");
    for (int b = 0; b < PROXY_HIST_BUCKETS; b++) {
        cum += SUM(e, hist[b]);
        evbuffer_add_printf(out, "edge_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            proxy_hist_bounds[b], (unsigned long long)cum);
    }
    cum += SUM(e, hist[PROXY_HIST_BUCKETS]);
    evbuffer_add_printf(out, "edge_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                        (unsigned long long)cum);
    evbuffer_add_printf(out, "edge_request_duration_seconds_sum %.6f\n",
                        (double)SUM(e, hist_sum_us) / 1e6);
    evbuffer_add_printf(out, "edge_request_duration_seconds_count %llu\n",
                        (unsigned long long)cum);
    proxy_fn_metrics(e, out);
}

/* JSON string body (without quotes) of s[0..n): quote, backslash and
 * control bytes escaped; other bytes as they are. */
void
proxy_json_str(struct evbuffer *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            evbuffer_add_printf(out, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            evbuffer_add_printf(out, "\\u%04x", ch);
        else
            evbuffer_add(out, &s[i], 1);
    }
}

void
proxy_status_render(struct proxy_engine *e, struct evbuffer *out)
{
    evbuffer_add_printf(out, "{\"pid\":%d,\"uptime_s\":%llu,\"workers\":%u,\"conf\":\"",
                        (int)getpid(),
                        (unsigned long long)((proxy_now_ms() - e->start_ms) / 1000), e->nworkers);
    proxy_json_str(out, e->conf_path, strlen(e->conf_path));
    evbuffer_add_printf(out, "\",\"draining\":%s,\"reloads\":%llu,\"reload_failures\":%llu,",
                        atomic_load(&e->draining) ? "true" : "false",
                        (unsigned long long)e->reloads, (unsigned long long)e->reload_failures);
    evbuffer_add_printf(out, "\"last_reload_error\":\"");
    proxy_json_str(out, e->last_reload_error, strlen(e->last_reload_error));
    evbuffer_add_printf(out, "\",\"connections\":%llu,\"requests\":%llu,\"listen\":[",
                        (unsigned long long)SUM(e, conns_active),
                        (unsigned long long)SUM(e, requests));
    for (size_t i = 0; i < e->conf->nlistens; i++)
        evbuffer_add_printf(out, "%s\"%s\"", i ? "," : "", e->conf->listens[i].addr.text);
    evbuffer_add_printf(out, "],\"origins\":[");
    for (size_t i = 0; i < e->conf->norigins; i++) {
        const struct conf_origin *o = &e->conf->origins[i];
        evbuffer_add_printf(out, "%s{\"name\":\"", i ? "," : "");
        proxy_json_str(out, o->name, strlen(o->name));
        evbuffer_add_printf(out, "\",\"servers\":[");
        for (size_t j = 0; j < o->nservers; j++) {
            evbuffer_add_printf(out, "%s\"", j ? "," : "");
            proxy_json_str(out, o->servers[j].host, strlen(o->servers[j].host));
            evbuffer_add_printf(out, ":%u\"", o->servers[j].port);
        }
        evbuffer_add_printf(out, "]}");
    }
    evbuffer_add_printf(out, "]}\n");
}

void
proxy_access_log(struct proxy_req *r)
{
    struct proxy_worker *w = r->w;
    char line[4096];
    struct evbuffer *b;
    struct timeval tv;
    struct tm tm;
    double total_ms, up_ms = -1;
    size_t n;

    STAT_ADD(w, bytes_out, r->resp_bytes);
    if (w->access_fd < 0)
        return;
    b = evbuffer_new();
    if (b == NULL)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    total_ms = (double)((r->t_end_us ? r->t_end_us : proxy_now_us()) - r->t_start_us) / 1000.0;
    if (r->t_up_start_us != 0)
        up_ms = (double)((r->t_up_head_us ? r->t_up_head_us : proxy_now_us()) - r->t_up_start_us) /
                1000.0;
    evbuffer_add_printf(b,
                        "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"request_id\":\"%s\","
                        "\"client\":\"%s\",\"method\":\"",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                        tm.tm_sec, (int)(tv.tv_usec / 1000), r->request_id, r->peer);
    proxy_json_str(b, r->method_name ? r->method_name : "-",
             strlen(r->method_name ? r->method_name : "-"));
    evbuffer_add_printf(b, "\",\"host\":\"");
    proxy_json_str(b, r->host, strlen(r->host));
    evbuffer_add_printf(b, "\",\"path\":\"");
    if (r->target != NULL)
        proxy_json_str(b, r->target, r->target_len > 2048 ? 2048 : r->target_len);
    evbuffer_add_printf(b, "\",\"status\":%d,\"bytes\":%llu,\"ms\":%.3f,", r->status,
                        (unsigned long long)r->resp_bytes, total_ms);
    if (up_ms >= 0)
        evbuffer_add_printf(b, "\"upstream_ms\":%.3f,\"upstream\":\"%s\",", up_ms,
                            r->upstream_addr);
    else
        evbuffer_add_printf(b, "\"upstream_ms\":null,\"upstream\":null,");
    proxy_tls_log_fields(r->tls, b);
    evbuffer_add_printf(b, "\"route\":");
    if (r->route != NULL) {
        evbuffer_add(b, "\"", 1);
        proxy_json_str(b, r->route->pattern, r->route->pattern_len);
        evbuffer_add(b, "\"", 1);
    } else {
        evbuffer_add_printf(b, "null");
    }
    evbuffer_add_printf(b, "}\n");
    n = evbuffer_remove(b, line, sizeof(line) - 1);
    if (n > 0 && line[n - 1] != '\n')
        line[n - 1] = '\n';
    ssize_t wr = write(w->access_fd, line, n);
    (void)wr;
    evbuffer_free(b);
}
