/*
 * Command-line flags: "--flag VALUE", "--flag=VALUE" and a few short forms. Every problem is one
 * message naming the flag; main exits 2 on it.
 */
#include "bench/bench.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"

void
bench_opts_usage(FILE *f)
{
    fputs(
        "usage: edge-bench [flags] URL\n"
        "       edge-bench [flags] --compare DIRECT_URL EDGE_URL\n"
        "       edge-bench [flags] --urls FILE\n"
        "\n"
        "A load generator for HTTP/1.1 keep-alive servers, over TCP or TLS, and HTTP/2.\n"
        "Latency goes into a log-linear histogram (microseconds up to 71 minutes, relative\n"
        "error under 0.4%); the report shows p50 p90 p99 p99.9 max, requests/s, failures by\n"
        "kind, and the cache outcome of every response from its Cache-Status header.\n"
        "\n"
        "Load:\n"
        "  -c, --connections N      closed loop: N connections, each sending its next request\n"
        "                           when the previous answer is in (default 10); open loop: the\n"
        "                           connections opened at start\n"
        "  -r, --rate R[/s]         open loop: R requests per second on a fixed schedule;\n"
        "                           latency counts from each request's intended send time, so\n"
        "                           waiting for a connection shows (no coordinated omission)\n"
        "      --max-connections N  open loop: connections grow up to N when all are busy\n"
        "                           (default 1024); requests that found none free are counted\n"
        "                           'late', those never sent 'dropped'\n"
        "  -d, --duration D         run for D (500ms, 10s, 2m; default 10s)\n"
        "  -n, --requests N         or send N requests then stop\n"
        "  -t, --threads T          T threads, one event loop each, connections split (default 2)\n"
        "      --timeout D          per request (and connect, and TLS handshake) timeout\n"
        "                           (default 10s)\n"
        "      --new-conn           a new connection (and TLS handshake) per request, with\n"
        "                           Connection: close: measures connection setup; closed-loop\n"
        "                           latency then counts from connect (HTTP/2: one connection per\n"
        "                           --streams requests)\n"
        "\n"
        "Protocol (the report says which one ran):\n"
        "  https://...              HTTP/1.1 over TLS (ALPN http/1.1, SNI = the URL host unless it\n"
        "                           is an IP); the certificate is verified against the system CA\n"
        "                           store and the URL host; TLS sessions are resumed across the\n"
        "                           run's connections\n"
        "      --cacert FILE        trust only the CA certificates in FILE (PEM)\n"
        "  -k, --insecure           do not verify the certificate\n"
        "      --h2                 HTTP/2 over TLS (https:// URLs): ALPN h2, the run fails if\n"
        "                           the server does not select it\n"
        "      --h2c                HTTP/2 with prior knowledge over plain TCP (http:// URLs)\n"
        "      --streams N          HTTP/2: requests in flight per connection (default 1; closed\n"
        "                           loop keeps N busy on each; open loop uses a free one)\n"
        "\n"
        "Workload:\n"
        "  URL                      one URL, http[s]://host[:port]/path?query\n"
        "      --urls FILE          one URL or /path per line ('#' comments), drawn uniformly;\n"
        "                           full URLs contribute their path only; the first one is the\n"
        "                           target when no URL is given\n"
        "      --zipf S             Zipf popularity (exponent S in (0, 3]) over --paths paths\n"
        "      --paths M            number of distinct paths for --zipf (default 1000)\n"
        "      --path-template T    path for --zipf, %d replaced by the rank 1..M (default\n"
        "                           '/resp?cc=max-age%3D60&size=1024&k=%d'); the URL gives host\n"
        "      --mix M              method mix, e.g. GET:90,PUT:10 (GET HEAD POST PUT DELETE;\n"
        "                           default GET)\n"
        "      --body-size SIZE     body of POST and PUT requests (1k, 64k; default 1k)\n"
        "  -H, --header 'N: V'      extra request header (repeatable, up to 16)\n"
        "      --seed N             seed of the random draws (default 1): same seed, same paths\n"
        "\n"
        "Compare:\n"
        "      --compare DIRECT EDGE  run the same workload (same seed) against the origin\n"
        "                           directly and through edge, alternating phases DIRECT EDGE\n"
        "                           DIRECT EDGE...; reports the reduction at each percentile,\n"
        "                           the hit ratio and the origin offload; -d/-n apply per phase\n"
        "      --phases N           phases per side (default 2, at most 16)\n"
        "      --origin-stats URL   origin-sim style /_stats (top-level \"requests\") read\n"
        "                           before and after each phase for the offload (default\n"
        "                           DIRECT's scheme://host:port/_stats; n/a when unreachable);\n"
        "                           in a single run, reports the origin requests\n"
        "\n"
        "Output:\n"
        "      --json FILE          every figure, machine-readable\n"
        "      --html FILE          a self-contained page: latency by percentile (SVG) + table\n"
        "  -q, --quiet              no progress line (otherwise one a second on stderr during\n"
        "                           runs longer than 3 s)\n"
        "  -h, --help               this text\n"
        "\n"
        "Exit status: 0 done (even with failed requests), 1 run error, 2 bad usage.\n",
        f);
}

static int
errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int
parse_u64(const char *flag, const char *v, uint64_t min, uint64_t max, uint64_t *out, char *err,
          size_t errlen)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*v == '\0' || *v == '-' || *end != '\0' || errno != 0 || x < min || x > max)
        return errf(err, errlen, "%s '%s': expected an integer in %llu..%llu", flag, v,
                    (unsigned long long)min, (unsigned long long)max);
    *out = x;
    return 0;
}

static int
parse_dur(const char *flag, const char *v, uint64_t *us, char *err, size_t errlen)
{
    uint64_t ms;
    if (conf_duration_from_str(v, strlen(v), &ms) < 0 || ms == 0)
        return errf(err, errlen, "%s '%s': expected a duration such as 500ms, 10s, 2m", flag, v);
    *us = ms * 1000;
    return 0;
}

/* Flags that take a value; the rest are switches. */
static const char *const valued[] = {
    "--connections", "--rate",  "--max-connections", "--duration", "--requests",
    "--threads",     "--timeout", "--urls",          "--zipf",     "--paths",
    "--path-template", "--mix", "--body-size",       "--header",   "--seed",
    "--phases",      "--origin-stats", "--json",     "--html",     "--streams",
    "--cacert",      NULL,
};

/* Flags without a value. */
static const char *const switches[] = {"--quiet", "--insecure", "--h2", "--h2c", "--new-conn",
                                       NULL};

static const char *
long_of(const char *a)
{
    static const char *const shorts[][2] = {
        {"-c", "--connections"}, {"-r", "--rate"}, {"-d", "--duration"}, {"-n", "--requests"},
        {"-t", "--threads"},     {"-H", "--header"}, {"-q", "--quiet"},  {"-h", "--help"},
        {"-k", "--insecure"},
    };
    for (size_t i = 0; i < sizeof(shorts) / sizeof(shorts[0]); i++)
        if (strcmp(a, shorts[i][0]) == 0)
            return shorts[i][1];
    return a;
}

int
bench_opts_parse(struct bench_opts *o, int argc, char **argv, char *err, size_t errlen)
{
    bool have_dur = false, have_req = false, have_conns = false, h2 = false, h2c = false;

    memset(o, 0, sizeof(*o));
    o->cfg.threads = 2;
    o->cfg.connections = 10;
    o->cfg.max_connections = 1024;
    o->cfg.duration_us = 10000000;
    o->cfg.timeout_us = 10000000;
    o->cfg.seed = 1;
    o->phases = 2;
    o->paths = 1000;
    o->path_template = "/resp?cc=max-age%3D60&size=1024&k=%d";
    o->mix = "GET";
    o->body_size = 1024;
    o->cfg.streams = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char name[64];
        const char *v = NULL;

        if (a[0] != '-' || a[1] == '\0') {
            if (o->url != NULL)
                return errf(err, errlen, "unexpected argument '%s' (one URL at most)", a);
            o->url = a;
            continue;
        }
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq != NULL) {
            size_t nl = (size_t)(eq - a);
            if (nl >= sizeof(name))
                return errf(err, errlen, "unknown flag '%s' (see --help)", a);
            memcpy(name, a, nl);
            name[nl] = '\0';
            v = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", long_of(a));
        }
        const char *f = name;
        if (strcmp(f, "--help") == 0) {
            o->help = true;
            return 0;
        }
        bool sw = false;
        for (int k = 0; switches[k]; k++)
            sw = sw || strcmp(switches[k], f) == 0;
        if (sw) {
            if (v != NULL)
                return errf(err, errlen, "%s takes no value", f);
            if (strcmp(f, "--quiet") == 0)
                o->quiet = true;
            else if (strcmp(f, "--insecure") == 0)
                o->cfg.insecure = true;
            else if (strcmp(f, "--h2") == 0)
                h2 = true;
            else if (strcmp(f, "--h2c") == 0)
                h2c = true;
            else if (strcmp(f, "--new-conn") == 0)
                o->cfg.new_conn = true;
            continue;
        }
        if (strcmp(f, "--compare") == 0) {
            if (v != NULL || i + 2 >= argc)
                return errf(err, errlen, "--compare needs two URLs: --compare DIRECT_URL EDGE_URL");
            o->compare[0] = argv[++i];
            o->compare[1] = argv[++i];
            continue;
        }
        bool known = false;
        for (int k = 0; valued[k]; k++)
            known = known || strcmp(valued[k], f) == 0;
        if (!known)
            return errf(err, errlen, "unknown flag '%s' (see --help)", a);
        if (v == NULL) {
            if (i + 1 >= argc)
                return errf(err, errlen, "%s needs a value (see --help)", f);
            v = argv[++i];
        }
        uint64_t u;
        if (strcmp(f, "--connections") == 0) {
            if (parse_u64(f, v, 1, 100000, &u, err, errlen) < 0)
                return -1;
            o->cfg.connections = (unsigned)u;
            have_conns = true;
        } else if (strcmp(f, "--max-connections") == 0) {
            if (parse_u64(f, v, 1, 100000, &u, err, errlen) < 0)
                return -1;
            o->cfg.max_connections = (unsigned)u;
        } else if (strcmp(f, "--threads") == 0) {
            if (parse_u64(f, v, 1, 256, &u, err, errlen) < 0)
                return -1;
            o->cfg.threads = (unsigned)u;
        } else if (strcmp(f, "--requests") == 0) {
            if (parse_u64(f, v, 1, UINT64_MAX / 2, &o->cfg.requests, err, errlen) < 0)
                return -1;
            have_req = true;
        } else if (strcmp(f, "--duration") == 0) {
            if (parse_dur(f, v, &o->cfg.duration_us, err, errlen) < 0)
                return -1;
            have_dur = true;
        } else if (strcmp(f, "--timeout") == 0) {
            if (parse_dur(f, v, &o->cfg.timeout_us, err, errlen) < 0)
                return -1;
        } else if (strcmp(f, "--rate") == 0) {
            char *end;
            errno = 0;
            double r = strtod(v, &end);
            if (strcmp(end, "/s") == 0)
                end += 2;
            if (end == v || *end != '\0' || errno != 0 || !(r > 0) || r > 10000000 || isnan(r))
                return errf(err, errlen, "--rate '%s': expected requests per second, e.g. 500 "
                            "or 500/s", v);
            o->cfg.rate = r;
        } else if (strcmp(f, "--urls") == 0) {
            o->urls_file = v;
        } else if (strcmp(f, "--zipf") == 0) {
            char *end;
            errno = 0;
            double s = strtod(v, &end);
            if (end == v || *end != '\0' || errno != 0 || !(s > 0) || s > 3)
                return errf(err, errlen, "--zipf '%s': expected an exponent in (0, 3]", v);
            o->zipf_s = s;
        } else if (strcmp(f, "--paths") == 0) {
            if (parse_u64(f, v, 1, BENCH_ZIPF_MAX_N, &o->paths, err, errlen) < 0)
                return -1;
        } else if (strcmp(f, "--path-template") == 0) {
            o->path_template = v;
        } else if (strcmp(f, "--mix") == 0) {
            o->mix = v;
        } else if (strcmp(f, "--body-size") == 0) {
            if (conf_size_from_str(v, strlen(v), &o->body_size) < 0 || o->body_size > (64u << 20))
                return errf(err, errlen, "--body-size '%s': expected a size up to 64m (1k, 64k)",
                            v);
        } else if (strcmp(f, "--header") == 0) {
            const char *colon = strchr(v, ':');
            if (colon == NULL || colon == v || strpbrk(v, "\r\n") != NULL)
                return errf(err, errlen, "--header '%s': expected 'Name: value'", v);
            if (o->nheaders == sizeof(o->headers) / sizeof(o->headers[0]))
                return errf(err, errlen, "--header: at most 16");
            o->headers[o->nheaders++] = v;
        } else if (strcmp(f, "--seed") == 0) {
            if (parse_u64(f, v, 0, UINT64_MAX, &o->cfg.seed, err, errlen) < 0)
                return -1;
        } else if (strcmp(f, "--phases") == 0) {
            if (parse_u64(f, v, 1, BENCH_MAX_PHASES, &u, err, errlen) < 0)
                return -1;
            o->phases = (unsigned)u;
        } else if (strcmp(f, "--origin-stats") == 0) {
            o->origin_stats = v;
        } else if (strcmp(f, "--json") == 0) {
            o->json = v;
        } else if (strcmp(f, "--html") == 0) {
            o->html = v;
        } else if (strcmp(f, "--streams") == 0) {
            if (parse_u64(f, v, 1, BENCH_MAX_STREAMS, &u, err, errlen) < 0)
                return -1;
            o->cfg.streams = (unsigned)u;
        } else if (strcmp(f, "--cacert") == 0) {
            o->cfg.cacert = v;
        }
    }
    if (h2 && h2c)
        return errf(err, errlen, "--h2 (over TLS) and --h2c (over plain TCP) exclude each other");
    o->cfg.proto = h2 ? BENCH_PROTO_H2 : h2c ? BENCH_PROTO_H2C : BENCH_PROTO_H1;
    if (o->cfg.streams > 1 && o->cfg.proto == BENCH_PROTO_H1)
        return errf(err, errlen, "--streams needs --h2 or --h2c (HTTP/1.1 has one request in "
                    "flight per connection: use more --connections)");
    if (o->cfg.insecure && o->cfg.cacert != NULL)
        return errf(err, errlen, "--cacert and --insecure exclude each other");
    if (have_dur && have_req)
        return errf(err, errlen, "--duration and --requests exclude each other");
    if (have_req)
        o->cfg.duration_us = 0;
    if (o->compare[0] != NULL && o->url != NULL)
        return errf(err, errlen, "give either a URL or --compare DIRECT EDGE, not both");
    if (o->compare[0] == NULL && o->url == NULL && o->urls_file == NULL)
        return errf(err, errlen, "no target: give a URL, --urls FILE or --compare (see --help)");
    if (o->zipf_s > 0 && o->urls_file != NULL)
        return errf(err, errlen, "--zipf and --urls exclude each other");
    if (o->cfg.rate > 0 && !have_conns)
        o->cfg.connections = o->cfg.max_connections < 8 ? o->cfg.max_connections : 8;
    if (o->cfg.rate > 0 && o->cfg.max_connections < o->cfg.connections)
        o->cfg.max_connections = o->cfg.connections;
    o->cfg.progress = !o->quiet;
    return 0;
}
