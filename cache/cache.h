/*
 * cache — the disk cache of edge: RFC 9111 semantics, keys, on-disk objects.
 *
 * ONE public header; the other files of cache/ are private.
 *
 * ==== Layers ==========================================================================
 *
 *  1. Policy (policy.c) — pure functions, no I/O, no clock: the caller passes
 *     'now' (Unix seconds). Parse response/request header arrays into
 *     struct cache_resp_info / struct cache_req_info, then ask:
 *       cache_storable()        may this response be stored? (RFC 9111 3, 3.5)
 *       cache_freshness()       its freshness lifetime        (4.2.1, 4.2.2)
 *       cache_decide()          on a lookup: fresh / stale-ok / revalidate (4.2, 4.2.4,
 *                               5.2.1, RFC 5861)
 *       cache_status_format()   the Cache-Status value        (RFC 9211)
 *     CDN-Cache-Control (RFC 9213), when present and parseable, replaces
 *     Cache-Control and Expires for every decision of this cache; without
 *     it, so does Surrogate-Control (W3C Edge Architecture) when it has a
 *     max-age / no-store / no-store-remote for every surrogate or for the
 *     device "edge" ("max-age=60;edge"; another device's are ignored).
 *
 *  2. Keys (key.c) — "scheme://host/path?query" normalised (host lower-cased,
 *     default port dropped, percent-escapes normalised, query params dropped /
 *     sorted per route), or a per-route template. The object id is the first
 *     128 bits of SHA-256(key). Vary: the secondary key is built from the
 *     request's values of the named headers (see cache_vary_key()).
 *
 *  3. Storage (store.c) — one file per object at cache_dir/ab/cd/<32 hex id>;
 *     a Vary'ed response stores a small "vary stub" at the id's path (the Vary
 *     names) and each variant at <id>-<16 hex of SHA-256(secondary key)>.
 *     Writes go to cache_dir/tmp/ and are published with rename(): a reader
 *     never sees a half-written object; abort (or a crash) leaves only a tmp
 *     file, deleted at the next start. Layout of a file (all integers in host
 *     byte order — the cache is local to one machine; the version field
 *     rejects files of another layout):
 *
 *        struct cache_meta (fixed size, see below; magic "EDGC", version)
 *        key            meta.key_len bytes (the full primary key, compared on read)
 *        vary block     meta.vary_len bytes: stub: the Vary names "a\nb\n";
 *                       variant: its secondary key ("accept-encoding: gzip\n")
 *        header block   meta.headers_len bytes: "Name: value\r\n" lines of the
 *                       stored response (hop-by-hop, Age, private=/no-cache=
 *                       fields removed), no status line
 *        body           meta.body_len bytes (identity of what the origin sent,
 *                       after transfer decoding; content coding untouched)
 *
 *     Integrity: meta.head_crc = CRC-32C over meta (with both crc fields 0),
 *     key, vary block and header block: checked on every open (a few hundred
 *     bytes, cheap). Truncation is caught by comparing the file size with the
 *     sizes in meta. meta.body_crc = CRC-32C of the body, computed while
 *     writing, checked by cache_obj_verify_body() (a scrubber / the rebuild may
 *     call it; the hit path does not read the body before sendfile). A file
 *     that fails a check is a miss and is unlinked.
 *
 *  4. Index + store handle (index.c) — struct cache: the in-memory index
 *     (id -> size, expiry, last use, tags, key), striped locks, LRU eviction
 *     to max_size, rebuild from the files in a background thread, counters,
 *     purge. Thread-safe: every worker thread calls it directly.
 *
 *  4b. Memory tier (mem.c), when cache_dir has mem=: objects whose body is at
 *     most mem_object bytes are kept in memory, with their parsed head, after
 *     the first hit that reads them from disk (their body CRC is checked
 *     then). cache_open() looks there first: a hit costs no system call, no
 *     checksum and no SHA-256 (entries are found by a keyed SipHash of the
 *     key), and the object's body is a pointer (cache_obj.body) that the
 *     proxy sends with evbuffer_add_reference (cache_obj_body_ref()) or
 *     copies. Shared by every thread: sharded locks, an LRU per shard, a
 *     byte cap (mem=), reference-counted entries. It never serves what the
 *     disk tier would not: every change of a key's files (a store or 304
 *     refresh published, a purge of any kind, an invalidation, an eviction,
 *     a file found corrupt) drops the key from memory once it is on disk,
 *     and a shard generation keeps a load that read the file before the
 *     change from inserting it after (see the top of mem.c). A restart
 *     starts empty.
 *
 *  5. Conf (conf.c) — cache_conf_register(): 'cache_dir' (MAIN) and 'cache'
 *     (SITE, ROUTE); the proxy reads them with cache_conf_main() and
 *     cache_route_conf(). The language:
 *
 *       cache_dir PATH max_size=SIZE [max_object=SIZE] [fsync=on|off]
 *                      [mem=SIZE] [mem_object=SIZE];
 *           top level, at most once. max_size= is required (> 0); max_object=
 *           defaults to min(64m, max_size / 8) and may not exceed max_size=;
 *           fsync= (fdatasync each object before publishing it) defaults to
 *           off. mem= turns on the memory tier (section 4b) with that many
 *           bytes (0, the default: off; at most max_size=); mem_object= is
 *           the largest body it keeps (> 0, at most mem= and max_object=;
 *           default min(64k, mem=); refused without mem=). PATH is used as
 *           written (relative = to the working directory); it is created
 *           at start-up.
 *       cache on|off [ttl=D] [max_ttl=D] [stale_while_revalidate=D]
 *                    [stale_if_error=D] [key=TEMPLATE] [ignore_query=a,b]
 *                    [sort_query];
 *           in a 'site' or a 'route', at most once each. Off by default. A
 *           route without 'cache' takes its site's 'cache' whole (options are
 *           not merged: a route's own 'cache' replaces every option). 'cache
 *           off' takes no options. Durations are whole seconds from 0s to
 *           365d; ttl= may not exceed max_ttl=. key= is a template (section 2;
 *           write "${name}" forms in single quotes, else the conf's ${ENV}
 *           substitution takes them); ignore_query= names at most
 *           CACHE_IGNORE_QUERY_MAX parameters. 'cache on' without a
 *           'cache_dir' is an error (naming the site or route).
 *     Errors are "file:line:col: message" at the offending argument, e.g.
 *       edge.conf:7:18: 'cache': unknown option 'tll=5m' (did you mean 'ttl='?)
 *       edge.conf:7:18: 'cache' key=: column 9: unknown variable in key template (...)
 *       edge.conf:9:9: route '/api': 'cache on' needs a 'cache_dir' at the top level
 *
 * ==== How the proxy calls it ============================================================
 *
 *  At start-up: cache_conf_register() before conf_load(). After the conf is
 *  loaded: c = cache_new(&main_conf, &err) (rebuild starts in the background;
 *  lookups work during the rebuild, straight from disk).
 *
 *  On a request (GET/HEAD) whose route has cache on:
 *    1. cache_req_parse(req_hdrs, n, &rq)
 *    2. cache_key_build(&route->key, &parts, req_hdrs, n, keybuf, sizeof keybuf, &klen)
 *       — on error: bypass the cache (Cache-Status fwd=bypass).
 *    3. rc = cache_open(c, keybuf, klen, req_hdrs, n, &obj)
 *         CACHE_MISS / CACHE_VARY_MISS: go to the origin (fwd=uri-miss / vary-miss).
 *         CACHE_OK: cache_decide(&obj->meta, &rq, route, now, &d):
 *           CACHE_USE_FRESH     serve obj: status obj->meta.status, headers from
 *                               obj->headers (+ "Age: d.age", Cache-Status hit;ttl=d.ttl),
 *                               body from memory when obj->body != NULL (a copy, or
 *                               evbuffer_add_reference with cache_obj_body_ref()), else
 *                               by sendfile(obj->fd, obj->body_off, obj->body_len)
 *                               (evbuffer_add_file with a dup()ed fd).
 *           CACHE_USE_STALE     serve obj the same way (fwd=stale for a SWR serve) and
 *                               start ONE background revalidation (d.revalidate).
 *           CACHE_REVALIDATE    send a conditional request: cache_conditional_headers()
 *                               gives If-None-Match / If-Modified-Since from obj. On
 *                               304: cache_refresh(c, obj, hdrs304, …) then serve obj's
 *                               new version (cache_open again or use the returned obj).
 *                               On 5xx / network error and d.stale_if_error: serve obj.
 *                               On a 200: store it as a miss (it replaces obj).
 *           CACHE_MUST_MISS     (no validators, or request no-cache without validators):
 *                               forward unconditionally.
 *         d.only_if_cached and not usable: answer 504 (RFC 9111 5.2.1.7).
 *       cache_obj_free(obj) when the response is sent (the object keeps its fd;
 *       the file may be unlinked meanwhile — the open fd stays valid).
 *  On the origin's response to a miss:
 *    4. cache_resp_parse(resp_hdrs, n, status, &ri);
 *       if cache_storable(method, &rq, &ri, route) == CACHE_STORE_OK:
 *       w = cache_writer_new(c, &(struct cache_store_args){…}, &err)  (NULL: serve uncached)
 *       tee each body chunk: cache_writer_write(w, p, len) (<0: abort, keep streaming to client)
 *       end of body: cache_writer_commit(w); origin error mid-body: cache_writer_abort(w).
 *  Unsafe method that succeeded (2xx/3xx): cache_invalidate_key(c, key, klen) for the
 *    target (and Location / Content-Location of the same host) — RFC 9111 4.4.
 *  Purge (admin): cache_purge_key / cache_purge_prefix / cache_purge_tag, soft or hard;
 *    they return once the purge is durable (see index.c).
 *
 * Return conventions: int functions return 0 (or a positive enum) on success and
 * a negative CACHE_E* on error; bool functions are predicates; size_t formatters
 * return the length written (0 when the buffer is too small).
 */
#ifndef EDGE_CACHE_H
#define EDGE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf;
struct conf_route;

/* ---- errors ---------------------------------------------------------------------------------- */

enum {
    CACHE_OK = 0,
    CACHE_MISS = 1,      /* cache_open: no object for the key */
    CACHE_VARY_MISS = 2, /* cache_open: the key has variants, not this request's */
    CACHE_EINVAL = -1,   /* bad argument / malformed input */
    CACHE_ETOOBIG = -2,  /* over a limit (key length, max_object, header block) */
    CACHE_EIO = -3,      /* file system error (errno kept in err where given) */
    CACHE_ECORRUPT = -4, /* a stored file failed a check (it was removed) */
    CACHE_ENOMEM = -5,
    CACHE_EPURGED = -6, /* the key was purged while this writer was open */
};

/* ---- header views ---------------------------------------------------------------------------- */

/* A header field as the proxy parsed it; nothing is copied. Same layout as the
 * proxy's struct proxy_hdr. Names compare case-insensitively; a field that
 * appears on several lines is several entries (combined as "a, b" where the
 * RFC allows, e.g. Cache-Control, Vary). */
struct cache_hdr {
    const char *name;
    size_t nlen;
    const char *value;
    size_t vlen;
};

/* ---- 1. RFC 9111 policy ---------------------------------------------------------------------- */

/* Sentinel for "absent" in every int64_t time / seconds field below. */
#define CACHE_UNSET INT64_MIN
/* RFC 9111 1.2.2: a delta-seconds too large to represent is 2^31. */
#define CACHE_DELTA_MAX 2147483648LL
/* Heuristic freshness: this fraction (1/10) of Date - Last-Modified, at most a day. */
#define CACHE_HEURISTIC_DIV 10
#define CACHE_HEURISTIC_MAX (24 * 3600)
/* Field names kept per qualified no-cache= / private=; more = unqualified. */
#define CACHE_CC_FIELDS_MAX 8

enum cache_cc_flag {
    CACHE_CC_NO_STORE = 1u << 0,
    CACHE_CC_NO_CACHE = 1u << 1, /* unqualified: always revalidate */
    CACHE_CC_PRIVATE = 1u << 2,  /* unqualified: a shared cache does not store */
    CACHE_CC_PUBLIC = 1u << 3,
    CACHE_CC_MUST_REVALIDATE = 1u << 4,
    CACHE_CC_PROXY_REVALIDATE = 1u << 5,
    CACHE_CC_IMMUTABLE = 1u << 6,
    CACHE_CC_MAX_AGE = 1u << 7,         /* max_age valid */
    CACHE_CC_S_MAXAGE = 1u << 8,        /* s_maxage valid */
    CACHE_CC_SWR = 1u << 9,             /* stale_while_revalidate valid */
    CACHE_CC_SIE = 1u << 10,            /* stale_if_error valid */
    CACHE_CC_MAX_STALE = 1u << 11,      /* request: max_stale valid (CACHE_DELTA_MAX: any) */
    CACHE_CC_MIN_FRESH = 1u << 12,      /* request */
    CACHE_CC_ONLY_IF_CACHED = 1u << 13, /* request */
    CACHE_CC_NO_TRANSFORM = 1u << 14,
    CACHE_CC_NO_CACHE_FIELDS = 1u << 15, /* no-cache="a, b": fields in nc_fields */
    CACHE_CC_PRIVATE_FIELDS = 1u << 16,  /* private="a, b": fields in priv_fields */
    CACHE_CC_MUST_UNDERSTAND = 1u << 17, /* RFC 9111 5.2.2.3 */
};

struct cache_str {
    const char *p;
    size_t len;
};

/* A parsed Cache-Control (or CDN-Cache-Control). Durations in seconds,
 * capped at CACHE_DELTA_MAX. Cache-Control: the first occurrence of a
 * directive wins (RFC 9111 4.2.1), and a max-age / s-maxage with an invalid
 * value ("3600a", "1.5", "-1") counts as 0 (4.2.1: treat as stale).
 * CDN-Cache-Control: the last member with a key wins (a Dictionary), and a
 * value of the wrong type is not used at all (RFC 9213 2.1). Views point
 * into the parsed header values. */
struct cache_cc {
    uint32_t flags; /* enum cache_cc_flag */
    int64_t max_age, s_maxage, swr, sie, max_stale, min_fresh;
    struct cache_str nc_fields[CACHE_CC_FIELDS_MAX];
    size_t n_nc_fields;
    struct cache_str priv_fields[CACHE_CC_FIELDS_MAX];
    size_t n_priv_fields;
};

/* Parses one field value and merges it into cc (call once per header line;
 * start from a zeroed struct). strict: a Structured-Field Dictionary (RFC
 * 8941 4.2.2, as RFC 9213 2.1 reads CDN-Cache-Control; parameters are
 * parsed and ignored, delta-seconds must be Integers >= 0, no-cache /
 * private take a Boolean or a String of field names): returns false on a
 * syntax error, and the caller must ignore the whole field (an empty one
 * too). Lenient mode (Cache-Control) skips what it cannot parse and always
 * returns true. */
bool cache_cc_parse(const char *s, size_t len, bool strict, struct cache_cc *cc);

/* HTTP-date (RFC 9110 5.6.7): IMF-fixdate, RFC 850 (two-digit year: 00-69 =
 * 20xx) and asctime. Surrounding whitespace is allowed. true + *t (Unix
 * seconds) on success. */
bool cache_http_date_parse(const char *s, size_t len, int64_t *t);
/* IMF-fixdate of t into buf (at least 30 bytes); returns 29, or 0 if cap < 30. */
size_t cache_http_date_format(int64_t t, char *buf, size_t cap);

/* Everything the policy needs from a response head. */
struct cache_resp_info {
    int status;
    struct cache_cc cc;    /* the effective one: CDN-Cache-Control when used, else CC */
    bool cdn_cc;           /* CDN-Cache-Control was present and valid, and is used */
    bool surrogate;        /* else Surrogate-Control had a directive for us, and is used */
    bool has_cc;           /* some Cache-Control (or the CDN one) was present */
    int64_t date;          /* CACHE_UNSET when absent/invalid */
    int64_t expires;       /* CACHE_UNSET absent; invalid / "0" = 0 (the past) */
    int64_t age;           /* upstream Age, CACHE_UNSET when absent/invalid */
    int64_t last_modified; /* CACHE_UNSET when absent/invalid */
    struct cache_str etag; /* first ETag value, {NULL,0} when absent */
    bool vary_star;        /* Vary: * (never reused: not stored) */
    bool has_vary;         /* a non-empty Vary other than '*' */
    bool set_cookie;
    bool content_range; /* Content-Range present (a partial response when status is 206) */
};
void cache_resp_parse(const struct cache_hdr *h, size_t n, int status, struct cache_resp_info *out);

/* Everything the policy needs from a request head. Pragma: no-cache counts as
 * Cache-Control: no-cache only when the request has no Cache-Control. */
struct cache_req_info {
    struct cache_cc cc;
    bool authorization;
    bool range;
    bool conditional; /* If-None-Match / If-Modified-Since / If-Match / … present */
};
void cache_req_parse(const struct cache_hdr *h, size_t n, struct cache_req_info *out);

/* Per-route settings ('cache' of the route or its site: cache_route_conf()).
 * Durations in seconds; CACHE_UNSET = not set. */
struct cache_key_tpl; /* a compiled key template (key.c) */
#define CACHE_IGNORE_QUERY_MAX 32
struct cache_route {
    bool enabled;                    /* 'cache on' (default off) */
    int64_t ttl;                     /* ttl=: lifetime when the response has no explicit one */
    int64_t max_ttl;                 /* max_ttl=: cap on any lifetime */
    int64_t swr;                     /* stale_while_revalidate=: when the response has none */
    int64_t sie;                     /* stale_if_error=: when the response has none */
    const struct cache_key_tpl *key; /* key=TEMPLATE or NULL (the default key) */
    struct cache_str ignore_query[CACHE_IGNORE_QUERY_MAX]; /* ignore_query=a,b */
    size_t n_ignore_query;
    bool sort_query;
    /* A lifetime that overrides the response's (an edge function's
     * set_cache_ttl): > 0 stores for that long even without freshness
     * information (no-store, private, Authorization and Vary: * still
     * win); 0 = do not store. CACHE_UNSET (the default) = the response decides. */
    int64_t ttl_force;
};
/* A route struct with every field unset and enabled = on (tests, defaults). */
void cache_route_init(struct cache_route *r);

enum cache_store_verdict {
    CACHE_STORE_OK = 0,
    CACHE_STORE_NO_METHOD,     /* not GET */
    CACHE_STORE_NO_STATUS,     /* 1xx, 206, 304, not understood, or not a plain 200 to a
                                  request with Range */
    CACHE_STORE_NO_STORE,      /* no-store in the request or the response */
    CACHE_STORE_PRIVATE,       /* unqualified private */
    CACHE_STORE_AUTHORIZATION, /* request Authorization without public/s-maxage/must-rev. */
    CACHE_STORE_VARY_STAR,
    CACHE_STORE_NO_FRESHNESS, /* no explicit freshness, no validator, no route ttl= */
    CACHE_STORE_DISABLED,     /* route cache off */
    CACHE_STORE_SET_COOKIE,   /* Set-Cookie without public / s-maxage / route ttl= (below) */
};
/* method: the request method (ptr,len). route may be NULL (all defaults).
 *
 * Set-Cookie (a deliberate choice, stricter than RFC 9111, which lets a
 * shared cache store such a response and serve its Set-Cookie to everyone):
 * a response with Set-Cookie is not stored (CACHE_STORE_SET_COOKIE) unless
 * the origin or the operator says it is shared anyway: the response has
 * 'public' or 's-maxage' (or a CDN-Cache-Control or Surrogate-Control
 * max-age, which targets this cache), or the route sets ttl=. A response
 * whose Cache-Control names Set-Cookie in private="..." or no-cache="..." is
 * storable as usual: that field is dropped from the stored copy. This is
 * what Varnish's built-in VCL and most CDNs do by default, and it keeps one
 * user's session cookie from being handed to the next when an origin
 * forgets Cache-Control: private. */
enum cache_store_verdict cache_storable(const char *method, size_t mlen,
                                        const struct cache_req_info *rq,
                                        const struct cache_resp_info *ri,
                                        const struct cache_route *route);
const char *cache_store_verdict_str(enum cache_store_verdict v);

/* RFC 9110 15.1: statuses cacheable by default (heuristically). */
bool cache_status_heuristic(int status);
/* The final statuses whose caching rules this cache implements (those of
 * RFC 9110, but 206 and 304, which it never stores): a response with
 * must-understand is stored only with one of these, and then its no-store
 * is ignored (RFC 9111 5.2.2.3). */
bool cache_status_understood(int status);
/* Explicit freshness present (s-maxage, max-age, or Expires unless CDN-CC used). */
bool cache_has_explicit_freshness(const struct cache_resp_info *ri);

/* Freshness lifetime in seconds (RFC 9111 4.2.1/4.2.2), with the route's ttl= as
 * the lifetime of responses without explicit freshness (instead of the
 * heuristic) and max_ttl= as a cap. response_time stands in for a missing Date.
 * no-cache (unqualified) yields 0. */
int64_t cache_freshness(const struct cache_resp_info *ri, const struct cache_route *route,
                        int64_t response_time);

/* RFC 9111 4.2.3: the corrected initial age of a response received at
 * response_time for a request sent at request_time (store it); the current age
 * is that + (now - response_time). */
int64_t cache_initial_age(const struct cache_resp_info *ri, int64_t request_time,
                          int64_t response_time);
int64_t cache_current_age(int64_t initial_age, int64_t response_time, int64_t now);

/* The policy facts of a stored object (part of the on-disk meta). */
enum cache_pol_flag {
    CACHE_POL_NO_STALE = 1u << 0, /* must-revalidate / proxy-revalidate / s-maxage */
    CACHE_POL_NO_CACHE = 1u << 1, /* always revalidate before use */
    CACHE_POL_IMMUTABLE = 1u << 2,
    CACHE_POL_SOFT_PURGED = 1u << 3, /* treated as stale: revalidate next time */
    CACHE_POL_HAS_ETAG = 1u << 4,
    CACHE_POL_HAS_LM = 1u << 5,
};
struct cache_policy {
    uint32_t flags; /* enum cache_pol_flag */
    int64_t request_time, response_time;
    int64_t initial_age;   /* corrected initial age (RFC 9111 4.2.3) */
    int64_t lifetime;      /* freshness lifetime */
    int64_t swr, sie;      /* windows in seconds, CACHE_UNSET = none (route ones applied) */
    int64_t date;          /* stored Date (or response_time) */
    int64_t last_modified; /* CACHE_UNSET when none */
};
/* Fills the policy of a response about to be stored. */
void cache_policy_from_resp(const struct cache_resp_info *ri, const struct cache_route *route,
                            int64_t request_time, int64_t response_time, struct cache_policy *out);

enum cache_use {
    CACHE_USE_FRESH,  /* serve it */
    CACHE_USE_STALE,  /* serve it stale now, revalidate in the background (SWR or
                         the request's max-stale) */
    CACHE_REVALIDATE, /* conditional request; serve it on 304 (or on error when
                         stale_if_error) */
    CACHE_MUST_MISS,  /* unusable and no validator: unconditional request, but
                         stale_if_error may still allow serving it on error */
};
struct cache_decision {
    enum cache_use use;
    int64_t age;         /* current age: the Age header value */
    int64_t ttl;         /* lifetime - age (negative when stale): Cache-Status ttl= */
    bool revalidate;     /* USE_STALE: start a background revalidation */
    bool stale_if_error; /* the stale object may be served if the origin fails (the
                            response's, the route's or the request's stale-if-error) */
    bool only_if_cached; /* request only-if-cached: if not FRESH/STALE, answer 504 */
};
void cache_decide(const struct cache_policy *p, const struct cache_req_info *rq,
                  const struct cache_route *route, int64_t now, struct cache_decision *out);

/* Header names a stored response keeps (RFC 9111 3.1): false for hop-by-hop
 * fields, those named by the response's Connection, the proxy's own
 * (Proxy-Authenticate, Proxy-Authentication-Info, Proxy-Authorization), Age
 * (recomputed on serve), and private= / no-cache= fields of cc. */
bool cache_hdr_storable(const struct cache_hdr *h, const struct cache_hdr *all, size_t n,
                        const struct cache_cc *cc);
/* RFC 9111 3.2: may a field of a 304 (or of a 200 to a HEAD) replace the
 * stored ones? false for the fields not stored (above), Content-Length and
 * Content-Range; everything else is updated, Content-Encoding and ETag
 * included (the stored body is the origin's bytes, never decoded). */
bool cache_hdr_updatable(const struct cache_hdr *h, const struct cache_hdr *all, size_t n,
                         const struct cache_cc *cc);

/* Is a stored field sent with a 304 answered from the cache (a client's
 * If-None-Match / If-Modified-Since matched)? false for representation
 * metadata (Content-Type, -Encoding, -Language, -Range, -MD5): RFC 9110
 * 15.4.5. */
bool cache_hdr_in_304(const struct cache_hdr *h);

/* RFC 9111 4.3.5: may a 200 response to a HEAD request (its fields h, n)
 * update the stored GET response o? True when each validator it carries
 * (ETag, Last-Modified) equals o's and its Content-Length, if any, is o's
 * body length; then cache_refresh() merges its fields as for a 304.
 * Otherwise the stored response is out of date. */
struct cache_obj;
bool cache_head_matches(const struct cache_obj *o, const struct cache_hdr *h, size_t n);

/* Cache-Status (RFC 9211) of one response. */
enum cache_fwd {
    CACHE_FWD_NONE = 0, /* a hit */
    CACHE_FWD_BYPASS,
    CACHE_FWD_METHOD,
    CACHE_FWD_URI_MISS,
    CACHE_FWD_VARY_MISS,
    CACHE_FWD_MISS,
    CACHE_FWD_REQUEST,
    CACHE_FWD_STALE,
    CACHE_FWD_PARTIAL,
};
struct cache_status {
    const char *name;   /* cache identifier token, e.g. "edge" */
    enum cache_fwd fwd; /* NONE: "hit" */
    int fwd_status;     /* 0: omitted */
    int64_t ttl;        /* CACHE_UNSET: omitted */
    bool stored, collapsed;
    struct cache_str key;    /* {NULL,0}: omitted; escaped as an sf-string */
    struct cache_str detail; /* token-ish text; {NULL,0}: omitted */
};
/* "edge; hit; ttl=42" / "edge; fwd=miss; stored" …; 0 when cap is too small. */
size_t cache_status_format(const struct cache_status *s, char *buf, size_t cap);

/* ---- 2. keys --------------------------------------------------------------------------------- */

#define CACHE_KEY_MAX 4096
#define CACHE_ID_LEN 16 /* bytes of the object id (128 bits) */
#define CACHE_ID_HEX (2 * CACHE_ID_LEN)
#define CACHE_VARY_KEY_MAX 4096

/* What the key is made of: views into the request (path without the query). */
struct cache_key_parts {
    struct cache_str scheme; /* "http" / "https" */
    struct cache_str host;   /* Host header or authority, may carry :port */
    struct cache_str path;   /* origin-form path, without '?' */
    struct cache_str query;  /* after '?', without it; {NULL,0} when none */
};

/*
 * Key templates (route 'cache key=TEMPLATE'): literal text with variables
 *   $scheme  "http"/"https"          $host   lower-cased host, default port dropped
 *   $path    normalised path          $query  normalised query (ignore_query/sort_query
 *   $uri     $path, then "?"$query       applied), empty when none
 *            when the query is non-empty
 *   $arg_NAME   value of query parameter NAME (first one, raw), empty when absent
 *   $http_NAME  value of request header NAME ('_' matches '-', any case; several
 *               lines joined with ","), trimmed, empty when absent
 * A name runs over [A-Za-z0-9_]; ${name} delimits it ("${host}x"); "$$" is a '$'.
 * Anything else after '$' is an error. The default key is "$scheme://$host$uri".
 */
/* Compiles a template; NULL with a message in err (cap errlen) naming the
 * offending column (1-based). free with cache_key_tpl_free(). */
struct cache_key_tpl *cache_key_tpl_new(const char *s, size_t len, char *err, size_t errlen);
void cache_key_tpl_free(struct cache_key_tpl *t);

/* Builds the key into out (cap bytes, NUL-terminated); *outlen = its length.
 * route may be NULL (default key, no query options). 0, or CACHE_ETOOBIG /
 * CACHE_EINVAL (no host, path not starting with '/', an empty key, or a
 * control byte (0x00-0x1f, 0x7f) anywhere in the key, e.g. from a header
 * value: keys are C strings and Cache-Status values). Templates with a
 * control byte are refused by cache_key_tpl_new(). */
int cache_key_build(const struct cache_route *route, const struct cache_key_parts *parts,
                    const struct cache_hdr *req, size_t nreq, char *out, size_t cap,
                    size_t *outlen);

/* id = SHA-256(key)[0..16); hex of an id (CACHE_ID_HEX chars + NUL). */
void cache_key_id(const char *key, size_t len, uint8_t id[CACHE_ID_LEN]);
void cache_id_hex(const uint8_t id[CACHE_ID_LEN], char hex[CACHE_ID_HEX + 1]);

/* Vary secondary key: for each name of the Vary list (vary, vlen: the joined
 * Vary value(s) or the stored "a\nb\n" list), lower-cased, de-duplicated and
 * sorted, a line "name: value\n" where value is the request's field lines of
 * that name joined with ",", normalised (RFC 9111 4.1): outside quoted
 * strings, whitespace next to a comma removed, other runs collapsed to one
 * space, ends trimmed, and Accept-Language / Accept-Encoding lower-cased.
 * A field the request does not have is the line "name\n" (absent does not
 * match empty). 0, CACHE_ETOOBIG, or CACHE_EINVAL for "*". */
int cache_vary_key(const char *vary, size_t vlen, const struct cache_hdr *req, size_t nreq,
                   char *out, size_t cap, size_t *outlen);
/* The normalised Vary name list "a\nb\n" (lower-cased, sorted, unique) of a
 * response's Vary header lines. 0 / CACHE_ETOOBIG / CACHE_EINVAL for "*". */
int cache_vary_names(const struct cache_hdr *h, size_t n, char *out, size_t cap, size_t *outlen);

/* ---- 3. storage and 4. the index ------------------------------------------------------------- */

#define CACHE_HEADERS_MAX (64 * 1024) /* stored header block */

/* 'cache_dir PATH max_size=SIZE [max_object=SIZE] [fsync=on|off] [mem=SIZE]
 * [mem_object=SIZE];' — cache_conf_main(). */
struct cache_main {
    const char *dir;     /* NULL: no cache_dir (every route's cache is a no-op) */
    uint64_t max_size;   /* bytes of objects kept (files' sizes); LRU beyond */
    uint64_t max_object; /* default: min(64 MiB, max_size / 8) */
    bool fsync;          /* fdatasync each object before publishing it (default off) */
    uint64_t mem;        /* memory tier: bytes of hot objects kept in memory; 0 = off */
    uint64_t mem_object; /* memory tier: largest body kept there (default min(64 KiB, mem)) */
};

struct cache;        /* a cache_dir: index + files; thread-safe */
struct cache_writer; /* one object being written (one thread at a time) */

/* Opens (creates) the cache directory, deletes leftover tmp files and starts
 * the index rebuild in a background thread. NULL + message on error. */
struct cache *cache_new(const struct cache_main *mc, char *err, size_t errlen);
/* Stops the rebuild / eviction threads; no writer or object may be live. */
void cache_free(struct cache *c);
/* Waits for the background rebuild to finish (tests; purges call it). */
void cache_wait_ready(struct cache *c);

struct cache_counters {
    uint64_t hits, misses, stores, store_refused, evictions, write_errors, corrupt, purges,
        refreshes, invalidations;
    uint64_t bytes, objects;         /* current */
    uint64_t mem_hits;               /* hits answered by the memory tier (part of hits) */
    uint64_t mem_bytes, mem_objects; /* current, in the memory tier (Vary stubs count) */
};
void cache_counters_get(struct cache *c, struct cache_counters *out);

/* A response about to be stored. Everything is read during cache_writer_new
 * (nothing is kept), except that the writer copies what it needs. */
struct cache_store_args {
    const char *key;
    size_t key_len;
    const struct cache_hdr *req; /* the request's headers (Vary secondary key) */
    size_t nreq;
    const struct cache_hdr *resp; /* the response's headers */
    size_t nresp;
    const struct cache_resp_info *ri;    /* cache_resp_parse(resp) */
    const struct cache_route *route;     /* may be NULL */
    int64_t request_time, response_time; /* Unix seconds */
    int64_t content_length;              /* -1 when unknown */
};
/* NULL + *rc (CACHE_ETOOBIG: over max_object / header limit; CACHE_EIO: disk;
 * CACHE_EINVAL: Vary: *). The caller has checked cache_storable(). */
struct cache_writer *cache_writer_new(struct cache *c, const struct cache_store_args *a, int *rc);
/* Appends body bytes. 0, or <0 (over max_object, write error): the writer is
 * then dead — call cache_writer_abort(). */
int cache_writer_write(struct cache_writer *w, const void *data, size_t len);
/* Publishes the object (rename) and indexes it; frees w in every case.
 * 0, CACHE_EIO, or CACHE_EPURGED (a purge ran while writing: dropped). */
int cache_writer_commit(struct cache_writer *w);
/* Drops the object (unlinks the tmp file); frees w. NULL is fine. */
void cache_writer_abort(struct cache_writer *w);

/* Reading an object while it is written (the proxy streams a response to
 * collapsed requests from the file as it grows). The writer buffers what it
 * is given (large aligned writes keep the page cache in large folios);
 * cache_writer_flush() puts everything given so far into the file, and
 * cache_writer_body_written() says how many body bytes are there. 0, or <0
 * (the writer is then dead: cache_writer_abort()). */
int cache_writer_flush(struct cache_writer *w);
uint64_t cache_writer_body_written(const struct cache_writer *w);
/* An object for what w writes: status, policy, headers, the Vary secondary
 * key (the vary block, between key and headers) and an fd of its own, read
 * only, on the temp file. It stays valid after w is committed or aborted
 * (the file is renamed or unlinked, never truncated) and may be used and
 * freed (cache_obj_free()) on any thread. body_len is 0: what is readable
 * is cache_writer_body_written(). Call it before the first
 * cache_writer_write(). 0, CACHE_EINVAL (too late), CACHE_ENOMEM, CACHE_EIO. */
struct cache_obj;
int cache_writer_view(struct cache_writer *w, struct cache_obj **out);
/* True when a purge or an invalidation that may cover o's key ran since o
 * was opened (for a cache_writer_view: since the writer started, which then
 * does not publish): o is not to be served to requests that come now. */
bool cache_obj_purged(struct cache *c, const struct cache_obj *o);
/* The response's Vary names as cache_vary_key() takes them ("a\nb\n"), or
 * NULL (*len 0) when it does not vary. Valid while w is. */
const char *cache_writer_vary_names(const struct cache_writer *w, size_t *len);

/* An opened object (a hit). Its body is either in memory (body != NULL: the
 * memory tier) or in a file (fd, at body_off). Both stay valid after the
 * object is replaced, purged or evicted. Single-threaded use; free with
 * cache_obj_free(). */
struct cache_mem_ent;
struct cache_obj {
    int status;
    struct cache_policy policy; /* feed to cache_decide() */
    const char *key;            /* (key, key_len): not NUL-terminated */
    size_t key_len;
    const char *headers; /* "Name: value\r\n" lines, no status line */
    size_t headers_len;
    const char *body;            /* body_len bytes in memory, or NULL: in fd */
    int fd;                      /* O_RDONLY, owned by the object; -1 when body != NULL */
    uint64_t body_off, body_len; /* for sendfile / evbuffer_add_file */
    /* private */
    uint8_t _id[CACHE_ID_LEN];
    uint64_t _variant;
    uint32_t _body_crc;
    uint64_t _purge_seq; /* c->purge_seq and c->inval_gen[slot] before the open: */
    uint32_t _inval_gen; /* a refresh of o must not outlive a purge / invalidation */
    char *_buf;
    struct cache_mem_ent *_mem; /* memory tier entry (a reference), or NULL */
};
/* Looks a key up (req: the request's headers, for Vary), in memory first
 * (4b). CACHE_OK + *out, CACHE_MISS, CACHE_VARY_MISS, or <0 (a corrupt file
 * — a bad head, or, when it is loaded into memory, a body that fails its
 * CRC — is removed and reported as CACHE_MISS; CACHE_EIO for other errors). */
int cache_open(struct cache *c, const char *key, size_t klen, const struct cache_hdr *req,
               size_t nreq, struct cache_obj **out);
void cache_obj_free(struct cache_obj *o);
/* A reference on the memory that holds o->body, for sending it without a
 * copy after o is freed (evbuffer_add_reference, whose cleanup calls
 * cache_body_unref()); NULL when the body is not in memory. Any thread may
 * drop it. */
struct cache_body;
struct cache_body *cache_obj_body_ref(const struct cache_obj *o);
void cache_body_unref(struct cache_body *b);
/* Iterates the stored header fields: *pos starts at 0; false at the end. */
bool cache_obj_header_next(const struct cache_obj *o, size_t *pos, struct cache_hdr *out);
/* Reads the whole body and checks its CRC (0, or CACHE_ECORRUPT and the file
 * is removed). For scrubbers and tests: the hit path does not call it. */
int cache_obj_verify_body(struct cache *c, struct cache_obj *o);
/* "If-None-Match: <etag>\r\nIf-Modified-Since: <date>\r\n" as applicable;
 * returns the length (0: no validator, or cap too small). */
size_t cache_conditional_headers(const struct cache_obj *o, char *buf, size_t cap);

/* After a 304 for o: merges the 304's fields into the stored ones (RFC 9111
 * 3.2: cache_hdr_updatable), recomputes the policy with request/response
 * times of the revalidation, and writes a new file whose body is copied from
 * o's file (copy_file_range: a reflink or in-kernel copy, no user-space pass),
 * published with rename() like any write. *out: the refreshed object (open).
 * o stays valid and must still be freed. CACHE_EPURGED when o's key was
 * purged or invalidated since o was opened (the refreshed copy would bring
 * it back). */
int cache_refresh(struct cache *c, const struct cache_obj *o, const struct cache_hdr *resp304,
                  size_t n, const struct cache_route *route, int64_t request_time,
                  int64_t response_time, struct cache_obj **out);

/* ---- 5. purge -------------------------------------------------------------------------------- */

/* Each returns the number of objects purged (variants count one each), or <0.
 * Hard: files unlinked and their directories fsynced before returning, so a
 * purged object is never served again, even after SIGKILL. soft: the objects
 * stay but are marked stale (CACHE_POL_SOFT_PURGED, written in place and
 * fdatasync'ed): the next use revalidates. A writer open during a purge does
 * not publish (CACHE_EPURGED). prefix and tag purges wait for the rebuild. */
int cache_purge_key(struct cache *c, const char *key, size_t klen, bool soft);
int cache_purge_prefix(struct cache *c, const char *prefix, size_t plen, bool soft);
/* Tags come from the stored Surrogate-Key and Cache-Tag fields (space or
 * comma separated); exact, case-sensitive match. */
int cache_purge_tag(struct cache *c, const char *tag, size_t tlen, bool soft);

/* RFC 9111 4.4 invalidation, for the hot path (a successful unsafe request):
 * removes the object of the key, or its Vary stub and every variant, and
 * makes writers of that key that started before the call drop their object
 * instead of publishing it. From return on, this process never serves them
 * again. Unlike cache_purge_key() it does not fsync the directory: after a
 * crash (power loss, kernel panic — not a process kill, whose unlinks the
 * kernel keeps) an invalidated object may reappear. RFC 9111 4.4 does not ask
 * invalidation to survive a crash, and a stale copy is then served only
 * within its own freshness rules; an operator who needs that guarantee
 * purges (durable). Count of objects removed (0: nothing stored), or
 * CACHE_EINVAL / CACHE_EIO. */
int cache_invalidate_key(struct cache *c, const char *key, size_t klen);

/* ---- 6. conf --------------------------------------------------------------------------------- */

/* Registers the 'cache_dir' and 'cache' directives (section 5 of the comment
 * at the top) with the conf registry. Idempotent; call at start-up before
 * the first conf_load(). 0, or -1 when the registry refuses the module. */
int cache_conf_register(void);
/* The cache_dir settings of a loaded conf; NULL when it has no 'cache_dir'
 * (or the module is not registered). Valid as long as the conf. */
const struct cache_main *cache_conf_main(const struct conf *c);
/* The cache settings of a route (its own 'cache' or its site's); NULL when
 * caching is off for it. A non-NULL result has enabled == true. Valid as
 * long as the conf. */
const struct cache_route *cache_route_conf(const struct conf_route *r);

#endif /* EDGE_CACHE_H */
