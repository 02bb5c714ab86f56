/*
 * conf — the edge conf language: lexer, parser, directive registry, validation.
 *
 * Text goes in (conf_load), one immutable, checked, refcounted snapshot comes
 * out (struct conf). Nothing else in the program parses conf text.
 *
 * Shape of the language (nginx-like):
 *     directive arg ...;
 *     block arg ... { directive ...; }
 * '#' comments to end of line; "double" and 'single' quoted strings with
 * escapes (\" \' \\ \n \t \r \$ and \xHH in double quotes); ${ENV} substitution
 * in bare words and double-quoted strings (unset variable = error); durations
 * (500ms 30s 5m 1h 7d, combinable: 1m30s); sizes (512 64k 10m 2g);
 * include GLOB (relative to the including file; sorted; a glob matching
 * nothing is fine, a plain path that does not exist is an error; include
 * depth limited to catch cycles). Unknown escapes in double quotes are kept
 * as written (so "\.png$" reaches PCRE2 intact). Limits: a file may hold at
 * most 16 MiB, all files of one conf 64 MiB, blocks nest 32 deep, includes 16.
 *
 * Extension: every module declares its directives in a table
 * (struct conf_directive) inside a struct conf_module and registers it with
 * conf_module_register() before the first conf_load(); the parser is generic
 * and needs no change for new directives. The core module (listen, origin,
 * site, route, limits, …) is registered by conf itself.
 *
 * Errors: every error message is "file:line:col: message" naming what was
 * expected, e.g.
 *     edge.conf:3:5: unknown directive 'rout' (did you mean 'route'?)
 *     edge.conf:2:1: 'listen' expects an address or port
 *     edge.conf:20:1: duplicate origin 'app' (first defined at edge.conf:12)
 *
 * Return convention: functions returning int give 0 on success and -1 on
 * error with err->msg filled in; functions returning pointers give NULL on
 * error with err->msg filled in.
 */
#ifndef EDGE_CONF_H
#define EDGE_CONF_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONF_ERR_MAX 512
struct conf_err {
    char msg[CONF_ERR_MAX]; /* "file:line:col: message", NUL-terminated */
};

/* ---- generic syntax tree ---------------------------------------------------- */

struct conf_pos {
    const char *file; /* path as given / as resolved for includes; owned by the tree */
    uint32_t line, col; /* 1-based */
};

struct conf_arg {
    const char *s; /* NUL-terminated after unquoting, escapes and ${ENV} */
    size_t len;
    bool quoted;
    struct conf_pos pos;
};

struct conf_node {
    const char *name;
    struct conf_pos pos;
    struct conf_arg *args;
    size_t nargs;
    bool block; /* had a { } body (possibly empty) */
    struct conf_node *children;
    size_t nchildren;
};

/* The whole parsed tree of a file and its includes (includes are spliced in).
 * conf_tree_parse_string: 'name' as for conf_load_string (NULL: "<string>",
 * include refused). */
struct conf_tree;
struct conf_tree *conf_tree_parse_file(const char *path, struct conf_err *err);
struct conf_tree *conf_tree_parse_string(const char *name, const char *text, size_t len,
                                         struct conf_err *err);
const struct conf_node *conf_tree_root(const struct conf_tree *t); /* pseudo-node, children = top */
void conf_tree_free(struct conf_tree *t);

/* ---- values -------------------------------------------------------------------- */

/* Helpers that directive handlers use on an argument. All report errors at
 * the argument's position, naming the directive ('what'). */
int conf_parse_duration(const struct conf_arg *a, const char *what, uint64_t *ms,
                        struct conf_err *err);
int conf_parse_size(const struct conf_arg *a, const char *what, uint64_t *bytes,
                    struct conf_err *err);
int conf_parse_uint(const struct conf_arg *a, const char *what, uint64_t min, uint64_t max,
                    uint64_t *out, struct conf_err *err);
int conf_parse_flag(const struct conf_arg *a, const char *what, bool *out, struct conf_err *err);
/* "key=value": splits at the first '='; returns false when there is none. */
bool conf_arg_kv(const struct conf_arg *a, const char **key, size_t *klen, const char **val);
/* Pure string forms (for flags like --latency in origin-sim): 0 ok, -1 bad. */
int conf_duration_from_str(const char *s, size_t len, uint64_t *ms);
int conf_size_from_str(const char *s, size_t len, uint64_t *bytes);
/* A TCP port, 1..65535, in decimal. */
bool conf_port_from_str(const char *s, size_t len, uint16_t *port);

/* Formats err->msg as "file:line:col: <fmt>". Always returns -1. */
int conf_errf(struct conf_err *err, const struct conf_pos *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the checked snapshot ------------------------------------------------------------ */

enum conf_ctx {
    CONF_CTX_MAIN = 1u << 0,
    CONF_CTX_ORIGIN = 1u << 1,
    CONF_CTX_SITE = 1u << 2,
    CONF_CTX_ROUTE = 1u << 3,
};

#define CONF_MODULES_MAX 16

struct conf_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[80]; /* "127.0.0.1:8080", "[::1]:8080", "*:8080" */
};

struct conf_listen {
    struct conf_pos pos;
    struct conf_addr addr; /* "8080" and "*:8080" = 0.0.0.0:8080 */
    bool tls, h2, is_default;
    int backlog; /* default 511 */
};

/* How a 'server' was written: HOST:PORT, http://HOST[:PORT] or
 * https://HOST[:PORT] (the servers of one origin all speak TLS or none
 * does; 'tls on;' in the origin makes HOST:PORT servers speak TLS too). */
enum conf_scheme { CONF_SCHEME_NONE, CONF_SCHEME_HTTP, CONF_SCHEME_HTTPS };

struct conf_server {
    struct conf_pos pos;
    const char *host; /* name or IP literal as written, without brackets */
    uint16_t port;    /* required without a scheme; default 80 (http://), 443 (https://) */
    bool is_ip; /* an IP literal: no DNS needed */
    unsigned weight; /* default 1 */
    bool backup;
    enum conf_scheme scheme;
};

struct conf_origin {
    const char *name;
    struct conf_pos pos;
    size_t index; /* position in conf->origins */
    struct conf_server *servers;
    size_t nservers;
    unsigned keepalive;           /* idle pooled connections per worker; default 32 */
    uint64_t connect_timeout_ms;  /* default 2s   */
    uint64_t response_timeout_ms; /* first byte of the response head; default 30s */
    uint64_t idle_timeout_ms;     /* pooled connection idle / between body bytes; default 60s */
    unsigned retries;             /* extra tries on other servers; default 1 */
    unsigned max_fails;           /* passive health: consecutive failures; default 3 */
    uint64_t fail_timeout_ms;     /* how long a failed server is skipped; default 10s */
    void *mod[CONF_MODULES_MAX];
};

enum conf_match {
    CONF_MATCH_EXACT,    /* route = /path   */
    CONF_MATCH_PREFIX,   /* route /path     */
    CONF_MATCH_REGEX,    /* route ~ regex   (PCRE2) */
    CONF_MATCH_REGEX_CI, /* route ~* regex  (PCRE2, caseless) */
    CONF_MATCH_PREFIX_NOREGEX, /* route ^~ /path (a prefix that, when longest, skips regexes) */
};

struct conf_route {
    struct conf_pos pos;
    enum conf_match match;
    const char *pattern;
    size_t pattern_len;
    void *regex; /* pcre2_code *, compiled at load; NULL unless a regex route */
    const struct conf_origin *origin; /* 'origin NAME;' or NULL */
    int return_status;                /* 'return STATUS [BODY];' or 0 */
    const char *return_body;          /* may be NULL */
    size_t return_body_len;
    uint64_t max_body_size; /* inherited from the site (then main) when not set here */
    void *mod[CONF_MODULES_MAX];
    bool _handled; /* a module answers this route: see conf_route_set_handled() */
};

struct conf_site {
    struct conf_pos pos;
    const char **hosts; /* lower-cased: "example.com", "*.example.com", "*" */
    size_t nhosts;
    struct conf_route *routes; /* in conf order */
    size_t nroutes;
    uint64_t max_body_size; /* 'max_body_size' in the site, else inherited from main */
    void *mod[CONF_MODULES_MAX];
    /* private: match order, built at load */
    void *_index;
};

struct conf_resolver {
    bool system;                 /* 'resolver system;' (default): /etc/resolv.conf */
    struct conf_addr *servers;   /* 'resolver ADDR[:PORT]…' (port default 53) */
    size_t nservers;
    uint64_t timeout_ms;         /* per try; default 2s  (timeout=) */
    unsigned attempts;           /* default 2            (attempts=) */
    uint64_t ttl_min_ms;         /* floor on cached answers; default 1s   (ttl_min=) */
    uint64_t ttl_max_ms;         /* cap on cached answers; default 1h     (ttl_max=) */
    uint64_t negative_ttl_ms;    /* NXDOMAIN/no data cached; default 5s   (negative_ttl=) */
    uint64_t stale_ttl_ms;       /* how long an expired answer may be reused when the
                                    resolver fails; default 1h             (stale_ttl=) */
};

struct conf_limits {
    uint64_t max_header_size;       /* request head bytes; default 16k  -> 431 */
    uint64_t max_headers;           /* header field count; default 100  -> 431 */
    uint64_t max_uri_length;        /* default 8k                       -> 414 */
    uint64_t max_body_size;         /* default 100m                     -> 413 */
    uint64_t client_header_timeout_ms; /* whole head must arrive; default 10s -> 408 */
    uint64_t client_body_timeout_ms;   /* between body reads; default 30s     -> 408 */
    uint64_t keepalive_timeout_ms;     /* idle between requests; default 60s  */
    uint64_t send_timeout_ms;          /* client not reading; default 60s     */
    uint64_t max_connections;          /* per worker; default 10000           */
    uint64_t shutdown_timeout_ms;      /* drain deadline on SIGTERM; default 30s */
    /* HTTP/2 to clients (proxy/h2.c) */
    uint64_t http2_max_concurrent_streams; /* per connection; default 100 */
    uint64_t http2_max_resets;             /* RST_STREAMs per window; default 200 */
    uint64_t http2_reset_window_ms;        /* ... of this length; default 10s -> GOAWAY */
    uint64_t http2_hpack_table_size;       /* HPACK dynamic table, each way; default 4k */
};

enum conf_log_kind { CONF_LOG_OFF, CONF_LOG_STDOUT, CONF_LOG_FILE };

struct conf {
    /* private */
    int _refs; /* atomic (__atomic builtins); owners: whoever called conf_load/conf_ref */
    void *_arena;
    struct conf_tree *_tree;
    void *_hosts; /* host -> site index, built at load */

    const char *path;  /* the file conf_load was given */
    unsigned workers;  /* 'workers N|auto;' (1-1024) — auto = the core count; default auto */
    struct conf_listen *listens;
    size_t nlistens;
    struct conf_addr *admin; /* 'admin ADDR;' or NULL */
    struct conf_resolver resolver;
    struct conf_limits limits;
    enum conf_log_kind access_log; /* default CONF_LOG_OFF */
    const char *access_log_path; /* CONF_LOG_FILE */
    const char *pid_file;        /* 'pid FILE;' or NULL */
    struct conf_origin *origins;
    size_t norigins;
    struct conf_site *sites;
    size_t nsites;
    void *mod[CONF_MODULES_MAX];
};

/* Parses, validates and builds a snapshot; refs = 1. NULL + err on any error.
 * conf_load_string: 'name' is the file name used in messages and the base of
 * relative includes (its directory part; "edge.conf" = the current
 * directory). With name NULL the text is anonymous ("<string>" in messages)
 * and 'include' is refused: nothing is read from disk (fuzzing, admin input). */
struct conf *conf_load(const char *path, struct conf_err *err);
struct conf *conf_load_string(const char *name, const char *text, size_t len,
                              struct conf_err *err);
struct conf *conf_ref(struct conf *c);     /* atomic; returns c */
void conf_unref(struct conf *c);           /* atomic; frees at zero (module release hooks run) */

const struct conf_origin *conf_origin_find(const struct conf *c, const char *name, size_t len);
/* Host matching: exact name, then the longest "*.suffix", then "*". The host
 * may carry a ":port" and any case; NULL when no site matches. */
const struct conf_site *conf_site_match(const struct conf *c, const char *host, size_t len);
/* nginx order: an '=' exact route; else the longest prefix is remembered
 * and, when it is '^~', chosen; else the first regex route (conf order) that
 * matches; else the remembered prefix; else NULL. path is the path part only
 * (no query). Thread-safe and allocation-free except for PCRE2 match data. */
const struct conf_route *conf_route_match(const struct conf_site *s, const char *path,
                                          size_t len);

/* ---- the directive registry ----------------------------------------------------------- */

struct conf_build; /* the snapshot under construction (arena, tree, module state) */

/* Allocation inside the snapshot's arena (freed with the snapshot). */
void *conf_alloc(struct conf_build *b, size_t n);          /* zeroed; NULL on OOM */
char *conf_strndup(struct conf_build *b, const char *s, size_t n);
struct conf *conf_build_conf(struct conf_build *b);         /* the snapshot being built */

enum {
    CONF_F_BLOCK = 1u << 0,   /* takes a { } body */
    CONF_F_UNIQUE = 1u << 1,  /* at most once per context ("'workers' is duplicate …") */
};

#define CONF_ARGS_ANY (-1)

struct conf_directive {
    const char *name;
    unsigned ctx;   /* enum conf_ctx bitmask: where it may appear */
    unsigned flags; /* CONF_F_* */
    int min_args, max_args; /* max CONF_ARGS_ANY = unbounded */
    const char *expects; /* "an address or port": message is "'NAME' expects <expects>" */
    /* Called in conf order. 'parent' is the object of the context the node
     * sits in: struct conf * (MAIN), struct conf_origin * (ORIGIN),
     * struct conf_site * (SITE), struct conf_route * (ROUTE). Returns 0/-1. */
    int (*set)(struct conf_build *b, const struct conf_node *n, void *parent,
               struct conf_err *err);
};

struct conf_module {
    const char *name;
    const struct conf_directive *directives;
    size_t ndirectives;
    /* Optional. Called when a context object is created; the result goes in
     * that object's mod[index] (allocate with conf_alloc). */
    void *(*create)(struct conf_build *b, enum conf_ctx ctx, void *obj);
    /* Optional. Called once every directive of the whole conf is set,
     * outermost contexts first (MAIN, then each ORIGIN, each SITE, then the
     * ROUTEs of each site), so 'outer' — the enclosing context's mod[index],
     * NULL for MAIN — is already finished: fill defaults, inherit, cross-check.
     * A ROUTE hook may call conf_route_set_handled(). 0/-1. */
    int (*finish)(struct conf_build *b, enum conf_ctx ctx, void *obj, void *outer,
                  struct conf_err *err);
    /* Optional. Called at conf_unref(…) == 0 for resources outside the arena;
     * also when a load fails midway, so it must accept a partly built conf
     * (missing objects are absent from the arrays, unset pointers NULL). */
    void (*release)(struct conf *c);
    int index; /* assigned by conf_module_register: slot in mod[] */
};

/* Registers a module (not thread-safe; call at start-up). 0, or -1 when the
 * table is full or a directive clashes with one already registered (same
 * name with an overlapping ctx; one name may have entries for disjoint
 * contexts, as 'origin' has a MAIN block and a ROUTE directive). */
int conf_module_register(struct conf_module *m);

/* For a module's ROUTE finish hook: this route is answered by the module, so
 * it needs neither 'origin' nor 'return' (otherwise the conf is refused with
 * "route '/x' has no 'origin' or 'return'"). */
void conf_route_set_handled(struct conf_route *r);

#endif /* EDGE_CONF_H */
