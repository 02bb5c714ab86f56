/*
 * edge-bench: the load generator that shows what edge saves (issue 7).
 *
 * Parts (one file each, all private to bench/ but for this header):
 *   hist.c      latency histogram: log-linear buckets, 2 significant digits, mergeable
 *   zipf.c      PRNG (xoshiro256**) and the Zipf popularity sampler
 *   workload.c  targets (URL parsing), the path source (one URL, a list, Zipf), method mix,
 *               request heads built into a caller buffer without allocation
 *   run.c       the engine: T threads, one event_base each, keep-alive connections,
 *               closed-loop or open-loop (constant rate) scheduling, llhttp response parsing
 *   tls.c       the TLS transport (OpenSSL over the engine's sockets), session resumption,
 *               the start-up probe that fails a run early on a bad certificate or protocol
 *   h2.c        HTTP/2 (nghttp2 client sessions), N streams in flight per connection
 *   internal.h  what run.c, tls.c and h2.c share (connection and worker layouts)
 *   report.c    the terminal table, --json and --html (self-contained, inline SVG)
 *   opts.c      command-line flags
 *
 * Conventions: int functions return 0 on success and -1 on failure (with a message in the
 * caller's buffer where one is taken) unless stated otherwise. Times are microseconds
 * (uint64_t) from CLOCK_MONOTONIC.
 */
#ifndef EDGE_BENCH_H
#define EDGE_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- histogram ------------------------------------------------------------------------- */

/* Values (µs) below 2^BENCH_HIST_SUB_BITS+1 are exact; above, each power of two is cut in
 * 2^BENCH_HIST_SUB_BITS linear buckets, so a bucket is at most 1/128 of its values wide and the
 * midpoint reported for it is within 1/256 (0.4%) of any value in it. Values above
 * BENCH_HIST_MAX_US are clamped to it (and counted as saturated). */
#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_MAX_US (1ULL << 32) /* ~71 minutes */
#define BENCH_HIST_BUCKETS ((2 << BENCH_HIST_SUB_BITS) + (32 - BENCH_HIST_SUB_BITS - 1) * \
                                                           (1 << BENCH_HIST_SUB_BITS))
/* Documented bound on the relative error of bench_hist_percentile() (besides rank rounding). */
#define BENCH_HIST_REL_ERR (1.0 / 256)

struct bench_hist {
    uint64_t count;
    uint64_t min, max; /* exact; min is UINT64_MAX when empty */
    uint64_t saturated;
    double sum;
    uint64_t buckets[BENCH_HIST_BUCKETS];
};

void bench_hist_init(struct bench_hist *h);
void bench_hist_record(struct bench_hist *h, uint64_t us);
/* dst += src */
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* Value at quantile q in [0, 1] (q = 0.99 for p99): the smallest recorded value v such that
 * at least ceil(q * count) values are <= v, up to the bucket resolution; q >= 1 gives the
 * exact max, q <= 0 the exact min. 0 when empty. */
uint64_t bench_hist_percentile(const struct bench_hist *h, double q);
double bench_hist_mean(const struct bench_hist *h);
/* Bucket index of a value and the [lo, hi] range of values mapping to a bucket (for tests). */
size_t bench_hist_index(uint64_t us);
void bench_hist_bucket_range(size_t idx, uint64_t *lo, uint64_t *hi);

/* ---- random numbers and Zipf ---------------------------------------------------------- */

struct bench_rng {
    uint64_t s[4];
};
void bench_rng_seed(struct bench_rng *r, uint64_t seed);
uint64_t bench_rng_next(struct bench_rng *r);
double bench_rng_double(struct bench_rng *r); /* uniform in [0, 1) */
uint64_t bench_rng_below(struct bench_rng *r, uint64_t n); /* uniform in [0, n), n > 0 */

/* Zipf over ranks 1..n: P(k) = k^-s / H(n, s), s in (0, 3]. Sampled by inverting a
 * precomputed CDF (n doubles, binary search): exact for every s, O(log n) per draw. The table
 * is read-only after bench_zipf_new and shared by all threads. */
#define BENCH_ZIPF_MAX_N 10000000
struct bench_zipf;
struct bench_zipf *bench_zipf_new(uint64_t n, double s);
void bench_zipf_free(struct bench_zipf *z);
uint64_t bench_zipf_sample(const struct bench_zipf *z, struct bench_rng *r); /* 1..n */
double bench_zipf_prob(const struct bench_zipf *z, uint64_t k); /* theoretical P(k) */

/* ---- targets and workload -------------------------------------------------------------- */

enum bench_scheme {
    BENCH_HTTP,
    BENCH_HTTPS,
};

struct bench_target {
    enum bench_scheme scheme;
    char host[256];      /* as written, without brackets */
    char port[8];
    char hostport[272];  /* Host header value */
    char base[300];      /* scheme://host:port, for messages and /_stats */
    char path[2048];     /* path+query of the URL (default "/") */
};

/* Parses "http://host[:port][/path]". 0 / -1 with a message in err. */
int bench_target_parse(struct bench_target *t, const char *url, char *err, size_t errlen);

enum bench_method {
    BENCH_GET,
    BENCH_HEAD,
    BENCH_POST,
    BENCH_PUT,
    BENCH_DELETE,
    BENCH_METHODS
};
const char *bench_method_name(enum bench_method m);

#define BENCH_MIX_MAX 8
struct bench_mix {
    unsigned n;
    enum bench_method method[BENCH_MIX_MAX];
    unsigned cum[BENCH_MIX_MAX]; /* cumulative weights */
};
/* "GET:90,PUT:10" (a bare "GET" means weight 1). */
int bench_mix_parse(struct bench_mix *m, const char *s, char *err, size_t errlen);
enum bench_method bench_mix_pick(const struct bench_mix *m, struct bench_rng *r);

enum bench_src_kind {
    BENCH_SRC_ONE,  /* the target's path */
    BENCH_SRC_LIST, /* --urls FILE, uniformly at random */
    BENCH_SRC_ZIPF, /* --zipf S --paths M over --path-template */
};

struct bench_workload {
    enum bench_src_kind kind;
    char one[2048];
    char **list; /* owned */
    size_t nlist;
    struct bench_zipf *zipf; /* owned */
    char tmpl_pre[1024], tmpl_post[1024]; /* path template split at its %d */
    struct bench_mix mix;
    size_t body_size;
    char *body; /* owned: body_size bytes sent with POST/PUT */
    char extra_headers[4096]; /* "Name: value\r\n"... from -H */
    size_t extra_len;
};

/* Reads FILE: one URL or path per line; blank lines and '#' comments skipped. For full URLs only
 * the path+query is kept; the first full URL's origin is copied to first_origin (may be NULL)
 * when that is non-NULL and empty. */
int bench_workload_load_list(struct bench_workload *w, const char *file, char *first_origin,
                             size_t originlen, char *err, size_t errlen);
/* Splits a Zipf path template at its first "%d" (other '%' are literal: URL escapes). */
int bench_workload_set_template(struct bench_workload *w, const char *tmpl, char *err,
                                size_t errlen);
void bench_workload_fini(struct bench_workload *w);

/* Builds one request head (and says whether w->body follows) into buf. The path is drawn
 * from w with r. Returns the head length, or 0 when it does not fit (never truncated). */
size_t bench_request_build(const struct bench_workload *w, const struct bench_target *t,
                           struct bench_rng *r, char *buf, size_t cap, enum bench_method *method);
/* The same draws (method, then path) as bench_request_build, but only the path+query goes into
 * buf (for HTTP/2's :path): a given seed gives the same sequence in both protocols. Returns the
 * length (not NUL-terminated), or 0 when it does not fit. */
size_t bench_request_target(const struct bench_workload *w, struct bench_rng *r, char *buf,
                            size_t cap, enum bench_method *method);

/* ---- Cache-Status (RFC 9211) ---------------------------------------------------------- */

enum bench_cache {
    BENCH_CACHE_HIT,
    BENCH_CACHE_MISS,
    BENCH_CACHE_STALE,
    BENCH_CACHE_OTHER,
    BENCH_CACHE_ABSENT,
    BENCH_CACHE_KINDS
};
/* Classifies a Cache-Status field value by its last member (the cache nearest the client):
 * "hit" → hit (stale when it also has a negative ttl), fwd=stale → stale,
 * fwd=miss|uri-miss|vary-miss → miss, anything else → other. */
enum bench_cache bench_cache_status_parse(const char *v, size_t len);
const char *bench_cache_name(enum bench_cache c);

/* ---- results of one run ---------------------------------------------------------------- */

enum bench_err {
    BENCH_ERR_CONNECT,
    BENCH_ERR_TIMEOUT,
    BENCH_ERR_RESET, /* also an HTTP/2 stream reset by the server */
    BENCH_ERR_BAD_RESPONSE,
    BENCH_ERR_TLS, /* a TLS handshake failed or timed out */
    BENCH_ERRS
};
const char *bench_err_name(enum bench_err e);

struct bench_result {
    struct bench_hist hist;      /* latency of every complete response, any status */
    uint64_t sent;               /* requests written (fully or partly) */
    uint64_t responses;          /* complete responses */
    uint64_t status[6];          /* by class: [1] 1xx .. [5] 5xx, [0] other */
    uint64_t errors[BENCH_ERRS];
    uint64_t cache[BENCH_CACHE_KINDS];
    uint64_t body_bytes;
    uint64_t late;    /* open loop: waited for a free connection past their intended time */
    uint64_t dropped; /* open loop: never sent (backlog full, or still waiting at the end) */
    uint64_t connects; /* connections opened */
    uint64_t max_conns; /* open loop: most connections open at once (summed over threads) */
    uint64_t tls_handshakes; /* completed */
    uint64_t tls_resumed;    /* of which resumed a session */
    double elapsed_s;
    int64_t origin_requests; /* from /_stats, -1 when unknown */
    char protocol[16];       /* "http/1.1", "h2" or "h2c" (ALPN names); "" before a run */
    char tls_version[16];    /* "TLSv1.3" …; "" without TLS */
};

void bench_result_init(struct bench_result *r);
void bench_result_merge(struct bench_result *dst, const struct bench_result *src);
/* Transport errors plus 4xx and 5xx responses. */
uint64_t bench_result_failures(const struct bench_result *r);
/* Hit ratio among responses carrying Cache-Status; negative when none did. */
double bench_result_hit_ratio(const struct bench_result *r);

/* ---- the engine -------------------------------------------------------------------------- */

#define BENCH_MAX_STREAMS 1000 /* --streams cap */

enum bench_proto {
    BENCH_PROTO_H1,  /* HTTP/1.1, over TLS for https:// */
    BENCH_PROTO_H2,  /* --h2: HTTP/2 over TLS, ALPN "h2" (https:// only) */
    BENCH_PROTO_H2C, /* --h2c: HTTP/2 with prior knowledge over TCP (http:// only) */
};

struct bench_cfg {
    unsigned threads;
    unsigned connections;     /* closed loop: fixed; open loop: initial */
    unsigned max_connections; /* open loop cap */
    double rate;              /* requests/s; 0 = closed loop */
    uint64_t duration_us;     /* 0 when --requests */
    uint64_t requests;        /* 0 when --duration */
    uint64_t timeout_us;
    uint64_t seed;
    bool progress; /* progress line on stderr each second once past 3 s */
    const char *label; /* for the progress line */
    enum bench_proto proto;
    unsigned streams;   /* HTTP/2: requests in flight per connection (>= 1) */
    bool new_conn;      /* a new connection (and handshake) per request (per --streams for h2) */
    const char *cacert; /* PEM file of trusted CAs instead of the system store; NULL: system */
    bool insecure;      /* no certificate verification */
};

/* Runs the workload against t with cfg; fills res (initialised here). Returns -1 (message in
 * err) only when the run could not start (threads, event bases, name resolution, --cacert), or
 * when the start-up probe (TLS or h2c targets only) finds that no request could succeed: the
 * certificate does not verify, the TLS handshake fails, the server does not select h2, or an
 * h2c server does not answer the HTTP/2 preface. TLS writes may raise SIGPIPE: the caller
 * ignores it. */
int bench_run(const struct bench_cfg *cfg, const struct bench_workload *w,
              const struct bench_target *t, struct bench_result *res, char *err, size_t errlen);
/* Asks running bench_run calls to stop early (async-signal-safe). */
void bench_run_interrupt(void);
bool bench_run_interrupted(void); /* Ctrl-C came: no further phase starts */

/* GET url (a /_stats URL); returns its top-level "requests", or -1. Blocking, 2 s timeout. */
int64_t bench_origin_requests(const char *url);

/* ---- reports ---------------------------------------------------------------------------- */

#define BENCH_MAX_PHASES 16

struct bench_report {
    const struct bench_cfg *cfg;
    const struct bench_workload *w;
    const char *workload_desc;
    bool compare;
    unsigned nsides;              /* 1, or 2 with compare (0 direct, 1 edge) */
    const char *side_name[2];
    const char *side_url[2];
    struct bench_result side[2];  /* phases merged */
    unsigned nphases;
    struct bench_result phase[2][BENCH_MAX_PHASES];
    bool have_offload;
    double offload; /* 1 - origin requests during edge phases / requests sent to edge */
};

/* The percentiles every report shows. */
#define BENCH_NPCT 5
extern const double bench_pcts[BENCH_NPCT];
extern const char *const bench_pct_names[BENCH_NPCT];

void bench_report_table(FILE *f, const struct bench_report *rep);
int bench_report_json(FILE *f, const struct bench_report *rep);
int bench_report_html(FILE *f, const struct bench_report *rep);

/* ---- flags ------------------------------------------------------------------------------ */

struct bench_opts {
    struct bench_cfg cfg;
    const char *url;          /* single run */
    const char *compare[2];   /* --compare DIRECT EDGE */
    unsigned phases;
    const char *origin_stats; /* NULL = default */
    const char *urls_file;
    double zipf_s;            /* 0 = off */
    uint64_t paths;
    const char *path_template;
    const char *mix;
    uint64_t body_size;
    const char *headers[16];
    unsigned nheaders;
    const char *json, *html;
    bool quiet;
    bool help;
};

/* Parses argv into o. Returns 0, or -1 with a message (bad usage: exit 2). */
int bench_opts_parse(struct bench_opts *o, int argc, char **argv, char *err, size_t errlen);
void bench_opts_usage(FILE *f);

#endif /* EDGE_BENCH_H */
