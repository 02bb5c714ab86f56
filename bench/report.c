/*
 * Reports: one table model (label, one cell per side, change) rendered as the terminal table and
 * as the HTML table; the JSON carries every figure; the HTML page is self-contained (inline CSS,
 * inline SVG percentile spectrum, no script, no external resource).
 */
#include "bench/bench.h"

#include <math.h>
#include <string.h>

const double bench_pcts[BENCH_NPCT] = {0.50, 0.90, 0.99, 0.999, 1.0};
const char *const bench_pct_names[BENCH_NPCT] = {"p50", "p90", "p99", "p99.9", "max"};

/* ---- formatting ------------------------------------------------------------------------------ */

static void
fmt_us(char *b, size_t n, uint64_t us)
{
    if (us < 1000)
        snprintf(b, n, "%llu us", (unsigned long long)us);
    else if (us < 1000000)
        snprintf(b, n, "%.2f ms", (double)us / 1000.0);
    else
        snprintf(b, n, "%.3f s", (double)us / 1e6);
}

static double
rps(const struct bench_result *r)
{
    return r->elapsed_s > 0 ? (double)r->responses / r->elapsed_s : 0.0;
}

static double
reduction(double direct, double edge)
{
    return direct > 0 ? (direct - edge) / direct : NAN;
}

static bool
any_tls(const struct bench_report *rep)
{
    for (unsigned s = 0; s < rep->nsides; s++)
        if (rep->side[s].tls_version[0] != '\0')
            return true;
    return false;
}

/* "HTTP/1.1", "HTTP/1.1 TLSv1.3", "h2 TLSv1.3", "h2c". */
static void
fmt_protocol(char *b, size_t n, const struct bench_result *r)
{
    const char *p = r->protocol;
    if (p[0] == '\0')
        snprintf(b, n, "-");
    else
        snprintf(b, n, "%s%s%s", strcmp(p, "http/1.1") == 0 ? "HTTP/1.1" : p,
                 r->tls_version[0] ? " " : "", r->tls_version);
}

/* ---- the table model ----------------------------------------------------------------------- */

#define MAX_ROWS 40

struct row {
    char label[40];
    char cell[2][48];
    char change[24];
    bool head; /* the column titles */
    bool sub;  /* an indented detail line */
};

static struct row *
row_add(struct row *rows, size_t *n, const char *label)
{
    if (*n == MAX_ROWS)
        return NULL;
    struct row *r = &rows[(*n)++];
    memset(r, 0, sizeof(*r));
    snprintf(r->label, sizeof(r->label), "%s", label);
    return r;
}

static void
row_u64(struct row *rows, size_t *n, const struct bench_report *rep, const char *label,
        size_t off, bool sub)
{
    struct row *r = row_add(rows, n, label);
    if (r == NULL)
        return;
    r->sub = sub;
    for (unsigned s = 0; s < rep->nsides; s++) {
        const uint64_t *v = (const uint64_t *)((const char *)&rep->side[s] + off);
        snprintf(r->cell[s], sizeof(r->cell[s]), "%llu", (unsigned long long)*v);
    }
}

static size_t
build_rows(const struct bench_report *rep, struct row *rows)
{
    size_t n = 0;
    struct row *r;
    bool cmp = rep->nsides == 2;

    r = row_add(rows, &n, "");
    r->head = true;
    for (unsigned s = 0; s < rep->nsides; s++)
        snprintf(r->cell[s], sizeof(r->cell[s]), "%s", rep->side_name[s]);
    if (cmp)
        snprintf(r->change, sizeof(r->change), "reduction");

    r = row_add(rows, &n, "protocol");
    for (unsigned s = 0; s < rep->nsides; s++)
        fmt_protocol(r->cell[s], sizeof(r->cell[s]), &rep->side[s]);
    row_u64(rows, &n, rep, "requests sent", offsetof(struct bench_result, sent), false);
    row_u64(rows, &n, rep, "responses", offsetof(struct bench_result, responses), false);
    r = row_add(rows, &n, "requests/s");
    for (unsigned s = 0; s < rep->nsides; s++)
        snprintf(r->cell[s], sizeof(r->cell[s]), "%.1f", rps(&rep->side[s]));
    if (cmp) {
        double a = rps(&rep->side[0]), b = rps(&rep->side[1]);
        if (a > 0)
            snprintf(r->change, sizeof(r->change), "x%.2f", b / a);
    }
    for (int i = 0; i < BENCH_NPCT; i++) {
        r = row_add(rows, &n, bench_pct_names[i]);
        uint64_t v[2] = {0, 0};
        for (unsigned s = 0; s < rep->nsides; s++) {
            if (rep->side[s].hist.count == 0) {
                snprintf(r->cell[s], sizeof(r->cell[s]), "-");
                continue;
            }
            v[s] = bench_hist_percentile(&rep->side[s].hist, bench_pcts[i]);
            fmt_us(r->cell[s], sizeof(r->cell[s]), v[s]);
        }
        if (cmp && rep->side[0].hist.count && rep->side[1].hist.count) {
            double red = reduction((double)v[0], (double)v[1]);
            if (!isnan(red))
                snprintf(r->change, sizeof(r->change), "%.1f%%", 100.0 * red);
        }
    }
    r = row_add(rows, &n, "failed");
    for (unsigned s = 0; s < rep->nsides; s++)
        snprintf(r->cell[s], sizeof(r->cell[s]), "%llu",
                 (unsigned long long)bench_result_failures(&rep->side[s]));
    bool tls = any_tls(rep);
    r = row_add(rows, &n, tls ? "connect/timeout/reset/bad/tls" : "connect/timeout/reset/bad");
    r->sub = true;
    for (unsigned s = 0; s < rep->nsides; s++) {
        const uint64_t *e = rep->side[s].errors;
        int k = snprintf(r->cell[s], sizeof(r->cell[s]), "%llu/%llu/%llu/%llu",
                         (unsigned long long)e[0], (unsigned long long)e[1],
                         (unsigned long long)e[2], (unsigned long long)e[3]);
        if (tls && k > 0 && (size_t)k < sizeof(r->cell[s]))
            snprintf(r->cell[s] + k, sizeof(r->cell[s]) - (size_t)k, "/%llu",
                     (unsigned long long)e[BENCH_ERR_TLS]);
    }
    r = row_add(rows, &n, "status 2xx/3xx/4xx/5xx");
    r->sub = true;
    for (unsigned s = 0; s < rep->nsides; s++) {
        const uint64_t *st = rep->side[s].status;
        snprintf(r->cell[s], sizeof(r->cell[s]), "%llu/%llu/%llu/%llu",
                 (unsigned long long)st[2], (unsigned long long)st[3], (unsigned long long)st[4],
                 (unsigned long long)st[5]);
    }
    if (tls) {
        r = row_add(rows, &n, "TLS handshakes (resumed)");
        for (unsigned s = 0; s < rep->nsides; s++) {
            const struct bench_result *x = &rep->side[s];
            if (x->tls_version[0] == '\0')
                snprintf(r->cell[s], sizeof(r->cell[s]), "-");
            else
                snprintf(r->cell[s], sizeof(r->cell[s]), "%llu (%llu)",
                         (unsigned long long)x->tls_handshakes,
                         (unsigned long long)x->tls_resumed);
        }
    }
    if (rep->cfg->rate > 0) {
        row_u64(rows, &n, rep, "late (no free connection)", offsetof(struct bench_result, late),
                false);
        row_u64(rows, &n, rep, "dropped (never sent)", offsetof(struct bench_result, dropped),
                false);
        row_u64(rows, &n, rep, "connections (peak)", offsetof(struct bench_result, max_conns),
                false);
    }
    r = row_add(rows, &n, "cache hit/miss/stale/oth/none");
    for (unsigned s = 0; s < rep->nsides; s++) {
        const uint64_t *c = rep->side[s].cache;
        snprintf(r->cell[s], sizeof(r->cell[s]), "%llu/%llu/%llu/%llu/%llu",
                 (unsigned long long)c[0], (unsigned long long)c[1], (unsigned long long)c[2],
                 (unsigned long long)c[3], (unsigned long long)c[4]);
    }
    r = row_add(rows, &n, "hit ratio");
    for (unsigned s = 0; s < rep->nsides; s++) {
        double h = bench_result_hit_ratio(&rep->side[s]);
        if (h < 0)
            snprintf(r->cell[s], sizeof(r->cell[s]), "n/a");
        else
            snprintf(r->cell[s], sizeof(r->cell[s]), "%.1f%%", 100.0 * h);
    }
    r = row_add(rows, &n, "origin requests");
    for (unsigned s = 0; s < rep->nsides; s++) {
        if (rep->side[s].origin_requests < 0)
            snprintf(r->cell[s], sizeof(r->cell[s]), "n/a");
        else
            snprintf(r->cell[s], sizeof(r->cell[s]), "%lld",
                     (long long)rep->side[s].origin_requests);
    }
    if (cmp) {
        r = row_add(rows, &n, "origin offload");
        if (rep->have_offload)
            snprintf(r->cell[1], sizeof(r->cell[1]), "%.1f%%", 100.0 * rep->offload);
        else
            snprintf(r->cell[1], sizeof(r->cell[1]), "n/a");
    }
    return n;
}

static void
describe(FILE *f, const struct bench_report *rep, const char *nl)
{
    const struct bench_cfg *c = rep->cfg;
    if (c->rate > 0)
        fprintf(f, "open loop at %.1f req/s (connections %u..%u)", c->rate, c->connections,
                c->max_connections);
    else
        fprintf(f, "closed loop, %u connections", c->connections);
    if (c->proto != BENCH_PROTO_H1)
        fprintf(f, ", %u stream%s per connection", c->streams, c->streams == 1 ? "" : "s");
    if (c->new_conn)
        fprintf(f, ", a new connection per %s", c->proto != BENCH_PROTO_H1 && c->streams > 1
                                                     ? "--streams requests"
                                                     : "request");
    fprintf(f, ", %u threads, ", c->threads);
    if (c->requests > 0)
        fprintf(f, "%llu requests", (unsigned long long)c->requests);
    else
        fprintf(f, "%.1f s", (double)c->duration_us / 1e6);
    if (rep->compare)
        fprintf(f, " per phase x %u phases (alternating)", rep->nphases);
    fprintf(f, ", timeout %.1f s, seed %llu%s", (double)c->timeout_us / 1e6,
            (unsigned long long)c->seed, nl);
}

void
bench_report_table(FILE *f, const struct bench_report *rep)
{
    struct row rows[MAX_ROWS];
    size_t n = build_rows(rep, rows);

    fprintf(f, "edge-bench: ");
    describe(f, rep, "\n");
    fprintf(f, "workload: %s\n", rep->workload_desc);
    for (unsigned s = 0; s < rep->nsides; s++)
        fprintf(f, "%s: %s\n", rep->side_name[s], rep->side_url[s]);
    fputc('\n', f);
    for (size_t i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        fprintf(f, "%s%-*s", r->sub ? "  " : "", r->sub ? 30 : 32, r->label);
        for (unsigned s = 0; s < rep->nsides; s++)
            fprintf(f, " %22s", r->cell[s]);
        if (rep->nsides == 2)
            fprintf(f, " %12s", r->change);
        fputc('\n', f);
    }
}

/* ---- JSON ------------------------------------------------------------------------------------ */

static void
json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void
json_num(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.6g", v);
}

static void
json_result(FILE *f, const struct bench_result *r)
{
    const struct bench_hist *h = &r->hist;
    fprintf(f, "\"requests\":%llu,\"responses\":%llu,\"elapsed_s\":%.4f,\"rps\":",
            (unsigned long long)r->sent, (unsigned long long)r->responses, r->elapsed_s);
    json_num(f, rps(r));
    fprintf(f, ",\"latency_ms\":{\"count\":%llu,\"min\":", (unsigned long long)h->count);
    json_num(f, h->count ? (double)h->min / 1000.0 : NAN);
    fputs(",\"mean\":", f);
    json_num(f, h->count ? bench_hist_mean(h) / 1000.0 : NAN);
    for (int i = 0; i < BENCH_NPCT; i++) {
        fprintf(f, ",\"%s\":", bench_pct_names[i]);
        json_num(f, h->count ? (double)bench_hist_percentile(h, bench_pcts[i]) / 1000.0 : NAN);
    }
    fprintf(f, "},\"errors\":{");
    for (int i = 0; i < BENCH_ERRS; i++)
        fprintf(f, "\"%s\":%llu,", bench_err_name((enum bench_err)i),
                (unsigned long long)r->errors[i]);
    fprintf(f, "\"4xx\":%llu,\"5xx\":%llu,\"total\":%llu}", (unsigned long long)r->status[4],
            (unsigned long long)r->status[5], (unsigned long long)bench_result_failures(r));
    fprintf(f, ",\"status\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu,"
               "\"other\":%llu}",
            (unsigned long long)r->status[1], (unsigned long long)r->status[2],
            (unsigned long long)r->status[3], (unsigned long long)r->status[4],
            (unsigned long long)r->status[5], (unsigned long long)r->status[0]);
    fprintf(f, ",\"cache\":{");
    for (int i = 0; i < BENCH_CACHE_KINDS; i++)
        fprintf(f, "%s\"%s\":%llu", i ? "," : "", bench_cache_name((enum bench_cache)i),
                (unsigned long long)r->cache[i]);
    fputs("},\"hit_ratio\":", f);
    double hr = bench_result_hit_ratio(r);
    json_num(f, hr < 0 ? NAN : hr);
    fprintf(f, ",\"body_bytes\":%llu,\"connections_opened\":%llu,\"connections_peak\":%llu,"
               "\"late\":%llu,\"dropped\":%llu,\"origin_requests\":",
            (unsigned long long)r->body_bytes, (unsigned long long)r->connects,
            (unsigned long long)r->max_conns, (unsigned long long)r->late,
            (unsigned long long)r->dropped);
    if (r->origin_requests < 0)
        fputs("null", f);
    else
        fprintf(f, "%lld", (long long)r->origin_requests);
    fputs(",\"protocol\":", f);
    json_str(f, r->protocol);
    if (r->tls_version[0] == '\0') {
        fputs(",\"tls\":null", f);
    } else {
        fputs(",\"tls\":{\"version\":", f);
        json_str(f, r->tls_version);
        fprintf(f, ",\"handshakes\":%llu,\"resumed\":%llu}",
                (unsigned long long)r->tls_handshakes, (unsigned long long)r->tls_resumed);
    }
}

int
bench_report_json(FILE *f, const struct bench_report *rep)
{
    const struct bench_cfg *c = rep->cfg;

    fprintf(f, "{\"tool\":\"edge-bench\",\"format\":1,\"config\":{\"mode\":\"%s\",\"threads\":%u,"
               "\"connections\":%u,\"max_connections\":%u,\"rate\":",
            c->rate > 0 ? "open" : "closed", c->threads, c->connections, c->max_connections);
    json_num(f, c->rate);
    fprintf(f, ",\"duration_s\":%.3f,\"requests\":%llu,\"timeout_s\":%.3f,\"seed\":%llu,"
               "\"phases\":%u,\"http2\":%s,\"streams\":%u,\"new_conn\":%s,\"workload\":",
            (double)c->duration_us / 1e6, (unsigned long long)c->requests,
            (double)c->timeout_us / 1e6, (unsigned long long)c->seed, rep->nphases,
            c->proto != BENCH_PROTO_H1 ? "true" : "false", c->streams,
            c->new_conn ? "true" : "false");
    json_str(f, rep->workload_desc);
    fputs("},\n\"runs\":[", f);
    for (unsigned s = 0; s < rep->nsides; s++) {
        fputs(s ? ",\n{\"name\":" : "\n{\"name\":", f);
        json_str(f, rep->side_name[s]);
        fputs(",\"url\":", f);
        json_str(f, rep->side_url[s]);
        fputc(',', f);
        json_result(f, &rep->side[s]);
        fputc('}', f);
    }
    fputs("],\n\"phases\":[", f);
    bool first = true;
    for (unsigned p = 0; rep->compare && p < rep->nphases; p++) {
        for (unsigned s = 0; s < 2; s++) {
            fprintf(f, "%s\n{\"name\":", first ? "" : ",");
            first = false;
            json_str(f, rep->side_name[s]);
            fprintf(f, ",\"phase\":%u,", p + 1);
            json_result(f, &rep->phase[s][p]);
            fputc('}', f);
        }
    }
    fputs("],\n\"compare\":", f);
    if (!rep->compare) {
        fputs("null", f);
    } else {
        fputs("{\"reduction\":{", f);
        for (int i = 0; i < BENCH_NPCT; i++) {
            const struct bench_hist *a = &rep->side[0].hist, *b = &rep->side[1].hist;
            fprintf(f, "%s\"%s\":", i ? "," : "", bench_pct_names[i]);
            json_num(f, a->count && b->count
                            ? reduction((double)bench_hist_percentile(a, bench_pcts[i]),
                                        (double)bench_hist_percentile(b, bench_pcts[i]))
                            : NAN);
        }
        fputs("},\"hit_ratio\":", f);
        double hr = bench_result_hit_ratio(&rep->side[1]);
        json_num(f, hr < 0 ? NAN : hr);
        fputs(",\"offload\":", f);
        json_num(f, rep->have_offload ? rep->offload : NAN);
        fputs(",\"rps_ratio\":", f);
        json_num(f, rps(&rep->side[0]) > 0 ? rps(&rep->side[1]) / rps(&rep->side[0]) : NAN);
        fputc('}', f);
    }
    fputs("}\n", f);
    return ferror(f) ? -1 : 0;
}

/* ---- HTML ------------------------------------------------------------------------------------ */

static void
html_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static double
nice_ceil(double v)
{
    if (v <= 0)
        return 1;
    double e = pow(10, floor(log10(v)));
    double m = v / e;
    double n = m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10;
    return n * e;
}

static const char *const side_color[2] = {"#d9480f", "#1864ab"};

/* Percentile spectrum: x = log10(1 / (1 - p)), so 90% 99% 99.9% are equally spaced. */
static void
html_chart(FILE *f, const struct bench_report *rep)
{
    const double W = 760, H = 400, L = 70, R = 20, T = 30, B = 60;
    const double pw = W - L - R, ph = H - T - B;
    double xmax = 2;
    double ymax = 0;

    for (unsigned s = 0; s < rep->nsides; s++) {
        const struct bench_hist *h = &rep->side[s].hist;
        if (h->count == 0)
            continue;
        double x = floor(log10((double)h->count));
        if (x > xmax)
            xmax = x;
    }
    if (xmax > 5)
        xmax = 5;
    for (unsigned s = 0; s < rep->nsides; s++) {
        const struct bench_hist *h = &rep->side[s].hist;
        if (h->count == 0)
            continue;
        double v = (double)bench_hist_percentile(h, 1.0 - pow(10, -xmax)) / 1000.0;
        if (v > ymax)
            ymax = v;
    }
    ymax = nice_ceil(ymax * 1.05);

    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"latency by percentile\">\n",
            W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\"/>\n", W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"18\" text-anchor=\"middle\" class=\"t\">Latency by "
               "percentile (lower is better)</text>\n",
            L + pw / 2);
    /* y grid and labels */
    for (int i = 0; i <= 5; i++) {
        double v = ymax * i / 5, y = T + ph - ph * i / 5;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"g\"/>", L, y,
                L + pw, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"a\">%g</text>\n",
                L - 6, y + 4, v);
    }
    /* x ticks */
    static const char *const xl[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"};
    for (int k = 0; k <= (int)xmax; k++) {
        double x = L + pw * k / xmax;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"g\"/>", x, T, x,
                T + ph);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"a\">%s</text>\n",
                x, T + ph + 18, xl[k]);
    }
    double x50 = L + pw * log10(2.0) / xmax;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"g\"/>", x50, T, x50,
            T + ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"a\">50%%</text>\n",
            x50, T + ph + 18);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"ax\"/>", L, T + ph,
            L + pw, T + ph);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"ax\"/>\n", L, T, L,
            T + ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"l\">percentile "
               "(log scale of 1/(1-p))</text>\n",
            L + pw / 2, H - 14);
    fprintf(f, "<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" class=\"l\" "
               "transform=\"rotate(-90 16 %.1f)\">latency (ms)</text>\n",
            T + ph / 2, T + ph / 2);
    /* curves */
    for (unsigned s = 0; s < rep->nsides; s++) {
        const struct bench_hist *h = &rep->side[s].hist;
        if (h->count == 0)
            continue;
        double xs = floor(log10((double)h->count) * 100) / 100;
        if (xs > xmax)
            xs = xmax;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                side_color[s]);
        const int N = 240;
        for (int i = 0; i <= N; i++) {
            double xv = xs * i / N;
            double p = 1.0 - pow(10, -xv);
            double v = (double)bench_hist_percentile(h, p) / 1000.0;
            if (v > ymax)
                v = ymax;
            fprintf(f, "%.1f,%.1f ", L + pw * xv / xmax, T + ph - ph * v / ymax);
        }
        fputs("\"/>\n", f);
    }
    /* legend */
    for (unsigned s = 0; s < rep->nsides; s++) {
        double y = T + 14 + 20 * s;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"4\" fill=\"%s\"/>", L + 14,
                y - 6, side_color[s]);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"a\">", L + 36, y);
        html_str(f, rep->side_name[s]);
        fputs(" (", f);
        html_str(f, rep->side_url[s]);
        fputs(")</text>\n", f);
    }
    fputs("</svg>\n", f);
}

int
bench_report_html(FILE *f, const struct bench_report *rep)
{
    struct row rows[MAX_ROWS];
    size_t n = build_rows(rep, rows);

    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<title>edge-bench report</title>\n<style>\n"
          "body{font:15px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;"
          "max-width:900px;color:#222;padding:0 12px}\n"
          "h1{font-size:22px;margin:0 0 4px}p{margin:4px 0}.m{color:#555}\n"
          "table{border-collapse:collapse;margin:16px 0;font-variant-numeric:tabular-nums}\n"
          "td,th{padding:3px 12px;border-bottom:1px solid #ddd;text-align:right}\n"
          "td:first-child,th:first-child{text-align:left}td.s{padding-left:28px;color:#555}\n"
          "svg{border:1px solid #ddd;max-width:100%;height:auto}\n"
          "svg .t{font:bold 15px sans-serif}svg .a{font:12px sans-serif;fill:#333}\n"
          "svg .l{font:13px sans-serif;fill:#222}svg .g{stroke:#e5e5e5;stroke-width:1}\n"
          "svg .ax{stroke:#333;stroke-width:1}\n"
          "</style></head><body>\n<h1>edge-bench report</h1>\n<p class=\"m\">",
          f);
    describe(f, rep, "");
    fputs("</p>\n<p class=\"m\">workload: ", f);
    html_str(f, rep->workload_desc);
    fputs("</p>\n", f);
    html_chart(f, rep);
    fputs("<table>\n", f);
    for (size_t i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        const char *td = r->head ? "th" : "td";
        fprintf(f, "<tr><%s%s>", td, r->sub ? " class=\"s\"" : "");
        html_str(f, r->label);
        fprintf(f, "</%s>", td);
        for (unsigned s = 0; s < rep->nsides; s++) {
            fprintf(f, "<%s>", td);
            html_str(f, r->cell[s]);
            fprintf(f, "</%s>", td);
        }
        if (rep->nsides == 2) {
            fprintf(f, "<%s>", td);
            html_str(f, r->change);
            fprintf(f, "</%s>", td);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n<p class=\"m\">Latency is measured per request from its intended send time "
          "(open loop) or its send time (closed loop), recorded in a log-linear histogram "
          "(relative error under 0.4%). Reduction = 1 - edge / direct at the same percentile. "
          "Origin offload = 1 - origin requests during the edge phases / requests sent to "
          "edge, from the origin's /_stats.</p>\n",
          f);
    for (unsigned s = 0; s < rep->nsides; s++) {
        fputs("<p class=\"m\">", f);
        html_str(f, rep->side_name[s]);
        fputs(": ", f);
        html_str(f, rep->side_url[s]);
        fputs("</p>\n", f);
    }
    fputs("</body></html>\n", f);
    return ferror(f) ? -1 : 0;
}
