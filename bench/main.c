/*
 * edge-bench: flags → workload → one run, or alternating DIRECT/EDGE phases → reports.
 */
#include "bench/bench.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void
on_signal(int sig)
{
    (void)sig;
    bench_run_interrupt();
    signal(SIGINT, SIG_DFL); /* a second ^C kills */
}

/* Fills w from o; target t gets the URL (or the first URL of --urls). Usage errors: -1. */
static int
workload_setup(struct bench_workload *w, const struct bench_opts *o, const char *url,
               struct bench_target *t, char *desc, size_t desclen, char *err, size_t errlen)
{
    char origin[300] = "";

    if (bench_mix_parse(&w->mix, o->mix, err, errlen) < 0)
        return -1;
    if (o->urls_file != NULL &&
        bench_workload_load_list(w, o->urls_file, origin, sizeof(origin), err, errlen) < 0)
        return -1;
    if (url == NULL)
        url = origin;
    if (url[0] == '\0') {
        snprintf(err, errlen, "--urls %s has only paths: give the target URL too", o->urls_file);
        return -1;
    }
    if (bench_target_parse(t, url, err, errlen) < 0)
        return -1;
    if (o->zipf_s > 0) {
        if (bench_workload_set_template(w, o->path_template, err, errlen) < 0)
            return -1;
        w->zipf = bench_zipf_new(o->paths, o->zipf_s);
        if (w->zipf == NULL) {
            snprintf(err, errlen, "--zipf: cannot build the table (out of memory?)");
            return -1;
        }
        w->kind = BENCH_SRC_ZIPF;
    } else if (o->urls_file == NULL) {
        w->kind = BENCH_SRC_ONE;
        snprintf(w->one, sizeof(w->one), "%s", t->path);
    }
    for (unsigned i = 0; i < o->nheaders; i++) {
        size_t hl = strlen(o->headers[i]);
        if (w->extra_len + hl + 2 > sizeof(w->extra_headers)) {
            snprintf(err, errlen, "--header: too much header text");
            return -1;
        }
        memcpy(w->extra_headers + w->extra_len, o->headers[i], hl);
        memcpy(w->extra_headers + w->extra_len + hl, "\r\n", 2);
        w->extra_len += hl + 2;
    }
    if (o->cfg.new_conn) {
        /* HTTP/1.1: the server closes after each answer too (HTTP/2 drops this field) */
        static const char cc[] = "Connection: close\r\n";
        if (w->extra_len + sizeof(cc) - 1 > sizeof(w->extra_headers)) {
            snprintf(err, errlen, "--header: too much header text");
            return -1;
        }
        memcpy(w->extra_headers + w->extra_len, cc, sizeof(cc) - 1);
        w->extra_len += sizeof(cc) - 1;
    }
    bool bodies = false;
    for (unsigned i = 0; i < w->mix.n; i++)
        bodies = bodies || w->mix.method[i] == BENCH_POST || w->mix.method[i] == BENCH_PUT;
    w->body_size = bodies ? o->body_size : 0;
    if (w->body_size > 0) {
        w->body = malloc(w->body_size);
        if (w->body == NULL) {
            snprintf(err, errlen, "--body-size: out of memory");
            return -1;
        }
        for (size_t i = 0; i < w->body_size; i++)
            w->body[i] = (char)('a' + i % 26);
    }
    /* the longest head must fit the connection's request buffer */
    size_t longest = strlen(w->one);
    for (size_t i = 0; i < w->nlist; i++)
        if (strlen(w->list[i]) > longest)
            longest = strlen(w->list[i]);
    if (w->kind == BENCH_SRC_ZIPF)
        longest = strlen(w->tmpl_pre) + strlen(w->tmpl_post) + 20;
    if (longest + strlen(t->hostport) + w->extra_len + 200 > 8192) {
        snprintf(err, errlen, "request head too long (path + headers must stay under 8 KiB)");
        return -1;
    }
    int off = 0;
    switch (w->kind) {
    case BENCH_SRC_ONE:
        off = snprintf(desc, desclen, "%s", w->one);
        break;
    case BENCH_SRC_LIST:
        off = snprintf(desc, desclen, "%zu paths from %s, uniform", w->nlist, o->urls_file);
        break;
    case BENCH_SRC_ZIPF:
        off = snprintf(desc, desclen, "Zipf s=%g over %llu paths %s", o->zipf_s,
                       (unsigned long long)o->paths, o->path_template);
        break;
    }
    if (off >= 0 && (size_t)off < desclen)
        snprintf(desc + off, desclen - (size_t)off, ", mix %s%s", o->mix,
                 w->body_size ? " (bodies)" : "");
    return 0;
}

/* --h2 and --h2c name the transport: the URL's scheme must agree. */
static int
check_scheme(const struct bench_opts *o, const struct bench_target *t, char *err, size_t errlen)
{
    if (o->cfg.proto == BENCH_PROTO_H2 && t->scheme != BENCH_HTTPS) {
        snprintf(err, errlen, "%s: --h2 is HTTP/2 over TLS and needs an https:// URL (--h2c for "
                 "HTTP/2 over plain http)", t->base);
        return -1;
    }
    if (o->cfg.proto == BENCH_PROTO_H2C && t->scheme != BENCH_HTTP) {
        snprintf(err, errlen, "%s: --h2c is HTTP/2 over plain TCP and needs an http:// URL (--h2 "
                 "for https)", t->base);
        return -1;
    }
    return 0;
}

static int
write_report(const char *path, const struct bench_report *rep,
             int (*fn)(FILE *, const struct bench_report *))
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "edge-bench: %s: cannot write\n", path);
        return -1;
    }
    int rc = fn(f, rep);
    if (fclose(f) != 0)
        rc = -1;
    if (rc < 0)
        fprintf(stderr, "edge-bench: %s: write error\n", path);
    return rc;
}

int
main(int argc, char **argv)
{
    static struct bench_opts o;
    static struct bench_report rep;
    struct bench_workload w;
    struct bench_target tgt[2];
    char err[1024], desc[1400], stats_url[400] = "";
    char label[64];
    int rc = 2;

    memset(&w, 0, sizeof(w));
    if (bench_opts_parse(&o, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "edge-bench: %s\n", err);
        goto out;
    }
    if (o.help) {
        bench_opts_usage(stdout);
        rc = 0;
        goto out;
    }
    const char *first = o.compare[0] != NULL ? o.compare[0] : o.url;
    if (workload_setup(&w, &o, first, &tgt[0], desc, sizeof(desc), err, sizeof(err)) < 0) {
        fprintf(stderr, "edge-bench: %s\n", err);
        goto out;
    }
    if (o.compare[0] != NULL && bench_target_parse(&tgt[1], o.compare[1], err, sizeof(err)) < 0) {
        fprintf(stderr, "edge-bench: %s\n", err);
        goto out;
    }
    for (unsigned s = 0; s < (o.compare[0] != NULL ? 2u : 1u); s++) {
        if (check_scheme(&o, &tgt[s], err, sizeof(err)) < 0) {
            fprintf(stderr, "edge-bench: %s\n", err);
            goto out;
        }
    }
    if (o.origin_stats != NULL) {
        struct bench_target st;
        if (bench_target_parse(&st, o.origin_stats, err, sizeof(err)) < 0) {
            fprintf(stderr, "edge-bench: --origin-stats: %s\n", err);
            goto out;
        }
        snprintf(stats_url, sizeof(stats_url), "%s", o.origin_stats);
    } else if (o.compare[0] != NULL) {
        snprintf(stats_url, sizeof(stats_url), "%s/_stats", tgt[0].base);
    }
    rc = 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN); /* TLS writes through OpenSSL's socket BIO, without MSG_NOSIGNAL */

    rep.cfg = &o.cfg;
    rep.w = &w;
    rep.workload_desc = desc;
    rep.compare = o.compare[0] != NULL;
    rep.nsides = rep.compare ? 2 : 1;
    rep.nphases = rep.compare ? o.phases : 1;
    rep.side_name[0] = rep.compare ? "direct" : "target";
    rep.side_name[1] = "edge";
    rep.side_url[0] = rep.compare ? o.compare[0] : tgt[0].base;
    rep.side_url[1] = o.compare[1];
    for (unsigned s = 0; s < rep.nsides; s++)
        bench_result_init(&rep.side[s]);

    bool stats_ok = stats_url[0] != '\0';
    uint64_t edge_sent = 0;
    int64_t edge_origin = 0;
    for (unsigned p = 0; p < rep.nphases; p++) {
        if (p > 0 && bench_run_interrupted()) {
            rep.nphases = p; /* Ctrl-C: report the phases that ran, start no other */
            break;
        }
        bool cut = false;
        for (unsigned s = 0; s < rep.nsides && !cut; s++) {
            struct bench_result *res = &rep.phase[s][p];
            if (s > 0 && p > 0 && bench_run_interrupted()) {
                cut = true; /* a half phase would compare unlike runs: drop it */
                break;
            }
            struct bench_cfg cfg = o.cfg;
            /* each phase draws a new sequence (both sides of a phase the same
             * one): a later phase must not replay an earlier one, or the hit
             * ratio would depend on the number of phases */
            cfg.seed = o.cfg.seed + p;
            if (rep.compare) {
                snprintf(label, sizeof(label), "%s %u/%u", rep.side_name[s], p + 1, rep.nphases);
                cfg.label = label;
            }
            int64_t before = stats_url[0] ? bench_origin_requests(stats_url) : -1;
            if (bench_run(&cfg, &w, &tgt[s], res, err, sizeof(err)) < 0) {
                fprintf(stderr, "edge-bench: %s\n", err);
                goto out;
            }
            int64_t after = stats_url[0] ? bench_origin_requests(stats_url) : -1;
            if (before >= 0 && after >= before) {
                res->origin_requests = after - before;
            } else {
                res->origin_requests = -1;
                stats_ok = false;
            }
        }
        if (cut || (p > 0 && bench_run_interrupted())) {
            rep.nphases = p; /* Ctrl-C during this phase: report the whole ones before it */
            break;
        }
        for (unsigned s = 0; s < rep.nsides; s++) {
            struct bench_result *res = &rep.phase[s][p];
            if (s == 1) {
                edge_sent += res->sent;
                edge_origin += res->origin_requests;
            }
            bench_result_merge(&rep.side[s], res);
        }
    }
    if (rep.compare && stats_ok && edge_sent > 0) {
        rep.have_offload = true;
        rep.offload = 1.0 - (double)edge_origin / (double)edge_sent;
    }
    for (unsigned s = 0; s < rep.nsides; s++)
        rep.side[s].max_conns = 0;
    for (unsigned s = 0; s < rep.nsides; s++)
        for (unsigned p = 0; p < rep.nphases; p++)
            if (rep.phase[s][p].max_conns > rep.side[s].max_conns)
                rep.side[s].max_conns = rep.phase[s][p].max_conns;

    bench_report_table(stdout, &rep);
    fflush(stdout);
    rc = 0;
    if (o.json != NULL && write_report(o.json, &rep, bench_report_json) < 0)
        rc = 1;
    if (o.html != NULL && write_report(o.html, &rep, bench_report_html) < 0)
        rc = 1;
out:
    bench_workload_fini(&w);
    return rc;
}
