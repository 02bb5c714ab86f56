/*
 * The core module: the directives every edge conf has (workers, listen,
 * admin, resolver, logs, limits, origin, site, route, return, ...). It is a
 * module like any other, registered first by the registry.
 */
#include "conf/conf-int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define WORKERS_MAX 1024

/* Core state per context object, in mod[CONF_CORE_INDEX]. The maps keep
 * duplicate checks and name lookups linear on big confs. */
struct core_main {
    struct conf_strmap listens; /* addr.text -> struct conf_listen */
    struct conf_strmap origins; /* name -> struct conf_origin (also conf_origin_find) */
    struct conf_strmap hosts;   /* host -> struct conf_site */
    size_t next_site_routes;    /* route count of the site being created */
};

struct core_site {
    struct conf_strmap routes; /* match class + pattern -> struct conf_route */
    bool max_body_set;
};

struct core_route {
    const struct conf_site *site;  /* the enclosing site */
    const struct conf_arg *origin; /* 'origin NAME;', resolved once every origin is known */
    bool max_body_set;
};

static struct core_main *
core_main_of(const struct conf *c)
{
    return c->mod[CONF_CORE_INDEX];
}

static struct core_site *
core_site_of(const struct conf_site *s)
{
    return s->mod[CONF_CORE_INDEX];
}

static struct core_route *
core_route_of(const struct conf_route *r)
{
    return r->mod[CONF_CORE_INDEX];
}

/* ---- addresses ------------------------------------------------------------------------------ */

/* "1".."65535" -> port; false otherwise. */
static bool
all_digits(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return false;
    for (i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Fills out from an IP literal (no brackets) and a port. */
static bool
addr_set(struct conf_addr *out, const char *ip, size_t iplen, uint16_t port, bool wildcard)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;

    memset(out, 0, sizeof(*out));
    if (wildcard) {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_ANY);
        in4->sin_port = htons(port);
        out->len = sizeof(*in4);
        snprintf(out->text, sizeof(out->text), "*:%u", (unsigned)port);
        return true;
    }
    if (iplen == 0 || iplen >= sizeof(tmp))
        return false;
    memcpy(tmp, ip, iplen);
    tmp[iplen] = '\0';
    if (inet_pton(AF_INET, tmp, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        out->len = sizeof(*in4);
        snprintf(out->text, sizeof(out->text), "%s:%u", tmp, (unsigned)port);
        return true;
    }
    memset(&out->ss, 0, sizeof(out->ss));
    if (inet_pton(AF_INET6, tmp, &in6->sin6_addr) == 1) {
        char canon[INET6_ADDRSTRLEN];
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        out->len = sizeof(*in6);
        if (inet_ntop(AF_INET6, &in6->sin6_addr, canon, sizeof(canon)) == NULL)
            return false;
        snprintf(out->text, sizeof(out->text), "[%s]:%u", canon, (unsigned)port);
        return true;
    }
    return false;
}

enum addr_rc { ADDR_OK, ADDR_BAD, ADDR_BAD_PORT };

/* listen/admin: PORT, *:PORT, IPv4:PORT, [IPv6]:PORT, localhost:PORT. */
static enum addr_rc
parse_listen_addr(const char *s, size_t len, struct conf_addr *out)
{
    const char *colon;
    uint16_t port;
    size_t hlen;

    if (all_digits(s, len)) {
        if (!conf_port_from_str(s, len, &port))
            return ADDR_BAD_PORT;
        return addr_set(out, NULL, 0, port, true) ? ADDR_OK : ADDR_BAD;
    }
    if (len > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb == NULL || (size_t)(rb - s) + 1 >= len || rb[1] != ':')
            return ADDR_BAD;
        if (!conf_port_from_str(rb + 2, len - (size_t)(rb - s) - 2, &port))
            return ADDR_BAD_PORT;
        return addr_set(out, s + 1, (size_t)(rb - s) - 1, port, false) ? ADDR_OK : ADDR_BAD;
    }
    colon = memchr(s, ':', len);
    if (colon == NULL || memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) != NULL)
        return ADDR_BAD;
    hlen = (size_t)(colon - s);
    if (!conf_port_from_str(colon + 1, len - hlen - 1, &port))
        return ADDR_BAD_PORT;
    if (hlen == 1 && s[0] == '*')
        return addr_set(out, NULL, 0, port, true) ? ADDR_OK : ADDR_BAD;
    if (hlen == 9 && strncasecmp(s, "localhost", 9) == 0)
        return addr_set(out, "127.0.0.1", 9, port, false) ? ADDR_OK : ADDR_BAD;
    return addr_set(out, s, hlen, port, false) ? ADDR_OK : ADDR_BAD;
}

/* resolver: IPv4, IPv4:PORT, IPv6, [IPv6], [IPv6]:PORT; port default 53. */
static enum addr_rc
parse_resolver_addr(const char *s, size_t len, struct conf_addr *out)
{
    const char *colon;
    uint16_t port = 53;

    if (len > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        size_t iplen;
        if (rb == NULL)
            return ADDR_BAD;
        iplen = (size_t)(rb - s) - 1;
        if ((size_t)(rb - s) + 1 < len) {
            if (rb[1] != ':')
                return ADDR_BAD;
            if (!conf_port_from_str(rb + 2, len - (size_t)(rb - s) - 2, &port))
                return ADDR_BAD_PORT;
        }
        if (memchr(s + 1, ':', iplen) == NULL)
            return ADDR_BAD; /* brackets are for IPv6 */
        return addr_set(out, s + 1, iplen, port, false) ? ADDR_OK : ADDR_BAD;
    }
    colon = memchr(s, ':', len);
    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) != NULL)
        return addr_set(out, s, len, port, false) ? ADDR_OK : ADDR_BAD; /* bare IPv6 */
    if (colon != NULL) {
        if (!conf_port_from_str(colon + 1, len - (size_t)(colon - s) - 1, &port))
            return ADDR_BAD_PORT;
        len = (size_t)(colon - s);
    }
    if (memchr(s, '.', len) == NULL)
        return ADDR_BAD;
    return addr_set(out, s, len, port, false) ? ADDR_OK : ADDR_BAD;
}

static int
listen_addr_arg(const struct conf_node *n, struct conf_addr *out, struct conf_err *err)
{
    const struct conf_arg *a = &n->args[0];

    switch (parse_listen_addr(a->s, a->len, out)) {
    case ADDR_OK: return 0;
    case ADDR_BAD_PORT:
        return conf_errf(err, &a->pos, "'%s' port must be from 1 to 65535 in '%s'", n->name, a->s);
    case ADDR_BAD: break;
    }
    return conf_errf(err, &a->pos,
                     "'%s' expects an address or port like 8080, *:8080, 127.0.0.1:8080, "
                     "[::1]:8080 or localhost:8080, not '%s'",
                     n->name, a->s);
}

/* A key=value argument's value as an argument of its own, for the value helpers. */
static struct conf_arg
kv_value(const struct conf_arg *a, const char *val)
{
    struct conf_arg v = *a;

    v.s = val;
    v.len = a->len - (size_t)(val - a->s);
    return v;
}

static bool
key_is(const char *key, size_t klen, const char *want)
{
    return strlen(want) == klen && memcmp(key, want, klen) == 0;
}

/* ---- MAIN ----------------------------------------------------------------------------------- */

static unsigned
cpu_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    return cpus < 1 ? 1 : cpus > WORKERS_MAX ? WORKERS_MAX : (unsigned)cpus;
}

static int
set_workers(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf *c = parent;
    const struct conf_arg *a = &n->args[0];
    uint64_t v;

    (void)b;
    if (strcmp(a->s, "auto") == 0) {
        c->workers = cpu_count();
        return 0;
    }
    if (!all_digits(a->s, a->len))
        return conf_errf(err, &a->pos, "'workers' expects a number or 'auto', not '%s'", a->s);
    if (conf_parse_uint(a, "workers", 1, WORKERS_MAX, &v, err) < 0)
        return -1;
    c->workers = (unsigned)v;
    return 0;
}

static int
set_listen(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf *c = parent;
    struct conf_listen *l = &c->listens[c->nlistens];
    const struct conf_listen *first;
    size_t i;

    (void)b;
    if (c->listens == NULL || core_main_of(c) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    l->pos = n->pos;
    l->backlog = 511;
    if (listen_addr_arg(n, &l->addr, err) < 0)
        return -1;
    for (i = 1; i < n->nargs; i++) {
        const struct conf_arg *a = &n->args[i];
        const char *key, *val;
        size_t klen;
        if (strcmp(a->s, "tls") == 0) {
            l->tls = true;
        } else if (strcmp(a->s, "h2") == 0) {
            l->h2 = true;
        } else if (strcmp(a->s, "default") == 0) {
            l->is_default = true;
        } else if (conf_arg_kv(a, &key, &klen, &val) && key_is(key, klen, "backlog")) {
            struct conf_arg v = kv_value(a, val);
            uint64_t bl;
            if (conf_parse_uint(&v, "listen backlog=", 1, 65535, &bl, err) < 0)
                return -1;
            l->backlog = (int)bl;
        } else {
            return conf_errf(err, &a->pos,
                             "'listen': unknown option '%s' (expected tls, h2, default or "
                             "backlog=N)",
                             a->s);
        }
    }
    first = conf_strmap_put(&core_main_of(c)->listens, l->addr.text, strlen(l->addr.text), l);
    if (first != NULL)
        return conf_errf(err, &n->args[0].pos, "duplicate listen address '%s' (first at %s:%u)",
                         l->addr.text, first->pos.file, (unsigned)first->pos.line);
    c->nlistens++;
    return 0;
}

static int
set_admin(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf *c = parent;
    struct conf_addr *a = conf_alloc(b, sizeof(*a));

    if (a == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (listen_addr_arg(n, a, err) < 0)
        return -1;
    c->admin = a;
    return 0;
}

static int
set_resolver(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf *c = parent;
    struct conf_resolver *r = &c->resolver;
    const struct conf_arg *sys = NULL;
    size_t i, naddr = 0;

    for (i = 0; i < n->nargs; i++) {
        const char *key, *val;
        size_t klen;
        /* same test as below: "=x" is not an option but a (bad) address */
        if (!conf_arg_kv(&n->args[i], &key, &klen, &val))
            naddr++;
    }
    r->servers = naddr ? conf_alloc(b, naddr * sizeof(*r->servers)) : NULL;
    if (naddr != 0 && r->servers == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    r->nservers = 0;
    r->system = false;
    for (i = 0; i < n->nargs; i++) {
        const struct conf_arg *a = &n->args[i];
        const char *key, *val;
        size_t klen;
        if (conf_arg_kv(a, &key, &klen, &val)) {
            struct conf_arg v = kv_value(a, val);
            uint64_t num;
            int rc;
            if (key_is(key, klen, "timeout"))
                rc = conf_parse_duration(&v, "resolver timeout=", &r->timeout_ms, err);
            else if (key_is(key, klen, "ttl_min"))
                rc = conf_parse_duration(&v, "resolver ttl_min=", &r->ttl_min_ms, err);
            else if (key_is(key, klen, "ttl_max"))
                rc = conf_parse_duration(&v, "resolver ttl_max=", &r->ttl_max_ms, err);
            else if (key_is(key, klen, "negative_ttl"))
                rc = conf_parse_duration(&v, "resolver negative_ttl=", &r->negative_ttl_ms, err);
            else if (key_is(key, klen, "stale_ttl"))
                rc = conf_parse_duration(&v, "resolver stale_ttl=", &r->stale_ttl_ms, err);
            else if (key_is(key, klen, "attempts")) {
                rc = conf_parse_uint(&v, "resolver attempts=", 1, 16, &num, err);
                r->attempts = (unsigned)num;
            } else
                return conf_errf(err, &a->pos,
                                 "'resolver': unknown option '%s' (expected timeout=, attempts=, "
                                 "ttl_min=, ttl_max=, negative_ttl= or stale_ttl=)",
                                 a->s);
            if (rc < 0)
                return -1;
            continue;
        }
        if (strcmp(a->s, "system") == 0) {
            sys = a;
            r->system = true;
            continue;
        }
        switch (parse_resolver_addr(a->s, a->len, &r->servers[r->nservers])) {
        case ADDR_OK: r->nservers++; break;
        case ADDR_BAD_PORT:
            return conf_errf(err, &a->pos, "'resolver' port must be from 1 to 65535 in '%s'", a->s);
        case ADDR_BAD:
            return conf_errf(err, &a->pos,
                             "'resolver' expects 'system' or IP addresses with an optional "
                             ":PORT (names cannot be resolved yet), not '%s'",
                             a->s);
        }
    }
    if (sys != NULL && r->nservers != 0)
        return conf_errf(err, &sys->pos, "'resolver': 'system' cannot be mixed with addresses");
    if (sys == NULL && r->nservers == 0)
        return conf_errf(err, &n->pos, "'resolver' expects 'system' or server addresses");
    if (r->ttl_min_ms > r->ttl_max_ms)
        return conf_errf(err, &n->pos, "'resolver': ttl_min= is larger than ttl_max=");
    return 0;
}

static int
set_access_log(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf *c = parent;
    const struct conf_arg *a = &n->args[0];

    if (strcmp(a->s, "off") == 0) {
        c->access_log = CONF_LOG_OFF;
    } else if (strcmp(a->s, "stdout") == 0) {
        c->access_log = CONF_LOG_STDOUT;
    } else {
        if (a->len == 0)
            return conf_errf(err, &a->pos, "'access_log' expects off, stdout or a file path");
        c->access_log = CONF_LOG_FILE;
        c->access_log_path = conf_strndup(b, a->s, a->len);
        if (c->access_log_path == NULL)
            return conf_errf(err, &n->pos, "out of memory");
    }
    return 0;
}

static int
set_pid(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf *c = parent;
    const struct conf_arg *a = &n->args[0];

    if (a->len == 0)
        return conf_errf(err, &a->pos, "'pid' expects a file path");
    c->pid_file = conf_strndup(b, a->s, a->len);
    if (c->pid_file == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    return 0;
}

#define LIMIT_SIZE(fn, field)                                                                      \
    static int fn(struct conf_build *b, const struct conf_node *n, void *parent,                   \
                  struct conf_err *err)                                                            \
    {                                                                                              \
        (void)b;                                                                                   \
        return conf_parse_size(&n->args[0], n->name, &((struct conf *)parent)->limits.field, err); \
    }
#define LIMIT_TIME(fn, field)                                                                      \
    static int fn(struct conf_build *b, const struct conf_node *n, void *parent,                   \
                  struct conf_err *err)                                                            \
    {                                                                                              \
        (void)b;                                                                                   \
        return conf_parse_duration(&n->args[0], n->name, &((struct conf *)parent)->limits.field,   \
                                   err);                                                           \
    }
#define LIMIT_UINT(fn, field, lo, hi)                                                              \
    static int fn(struct conf_build *b, const struct conf_node *n, void *parent,                   \
                  struct conf_err *err)                                                            \
    {                                                                                              \
        (void)b;                                                                                   \
        return conf_parse_uint(&n->args[0], n->name, lo, hi,                                       \
                               &((struct conf *)parent)->limits.field, err);                       \
    }

LIMIT_SIZE(set_max_header_size, max_header_size)
LIMIT_UINT(set_max_headers, max_headers, 1, 65535)
LIMIT_SIZE(set_max_uri_length, max_uri_length)
LIMIT_SIZE(set_max_body_size, max_body_size)
LIMIT_TIME(set_client_header_timeout, client_header_timeout_ms)
LIMIT_TIME(set_client_body_timeout, client_body_timeout_ms)
LIMIT_TIME(set_keepalive_timeout, keepalive_timeout_ms)
LIMIT_TIME(set_send_timeout, send_timeout_ms)
LIMIT_UINT(set_max_connections, max_connections, 1, 10000000)
LIMIT_TIME(set_shutdown_timeout, shutdown_timeout_ms)
LIMIT_UINT(set_http2_max_concurrent_streams, http2_max_concurrent_streams, 1, 65535)

static int
set_http2_hpack_table_size(struct conf_build *b, const struct conf_node *n, void *parent,
                           struct conf_err *err)
{
    uint64_t v;

    (void)b;
    if (conf_parse_size(&n->args[0], n->name, &v, err) < 0)
        return -1;
    if (v > 65536)
        return conf_errf(err, &n->args[0].pos, "'%s' must be at most 64k, not '%s'", n->name,
                         n->args[0].s);
    ((struct conf *)parent)->limits.http2_hpack_table_size = v;
    return 0;
}

/* "COUNT/WINDOW": at most COUNT stream resets within WINDOW per connection. */
static int
set_http2_max_resets(struct conf_build *b, const struct conf_node *n, void *parent,
                     struct conf_err *err)
{
    struct conf_limits *lim = &((struct conf *)parent)->limits;
    const struct conf_arg *a = &n->args[0];
    const char *slash = memchr(a->s, '/', a->len);
    char num[32];
    struct conf_arg part = *a;
    size_t nlen;

    (void)b;
    if (slash == NULL || slash == a->s || (size_t)(slash - a->s) >= sizeof(num))
        return conf_errf(err, &a->pos,
                         "'%s' expects COUNT/WINDOW like 200/10s (resets per connection "
                         "within the window), not '%s'",
                         n->name, a->s);
    nlen = (size_t)(slash - a->s);
    memcpy(num, a->s, nlen);
    num[nlen] = '\0';
    part.s = num;
    part.len = nlen;
    if (conf_parse_uint(&part, n->name, 1, 1000000, &lim->http2_max_resets, err) < 0)
        return -1;
    part.s = slash + 1;
    part.len = a->len - nlen - 1;
    if (!a->quoted)
        part.pos.col += (uint32_t)nlen + 1; /* point at the window itself */
    if (conf_parse_duration(&part, n->name, &lim->http2_reset_window_ms, err) < 0)
        return -1;
    if (lim->http2_reset_window_ms == 0)
        return conf_errf(err, &a->pos, "'%s': the window must be longer than 0 in '%s'", n->name,
                         a->s);
    return 0;
}

static size_t
count_children(const struct conf_node *n, const char *name)
{
    size_t i, k = 0;

    for (i = 0; i < n->nchildren; i++)
        if (strcmp(n->children[i].name, name) == 0)
            k++;
    return k;
}

static bool
origin_name_valid(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return false;
    for (i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

static int
set_origin_block(struct conf_build *b, const struct conf_node *n, void *parent,
                 struct conf_err *err)
{
    struct conf *c = parent;
    const struct conf_arg *a = &n->args[0];
    struct conf_origin *o;
    const struct conf_origin *first;
    size_t i;

    if (c->origins == NULL || core_main_of(c) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (!origin_name_valid(a->s, a->len))
        return conf_errf(err, &a->pos,
                         "'origin' name '%s' may only use letters, digits, '_', '-' and '.'", a->s);
    o = &c->origins[c->norigins];
    o->name = conf_strndup(b, a->s, a->len);
    if (o->name == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    o->pos = n->pos;
    first = conf_strmap_put(&core_main_of(c)->origins, o->name, a->len, o);
    if (first != NULL) {
        memset(o, 0, sizeof(*o));
        return conf_errf(err, &n->pos, "duplicate origin '%s' (first defined at %s:%u)", a->s,
                         first->pos.file, (unsigned)first->pos.line);
    }
    i = count_children(n, "server");
    o->servers = i ? conf_alloc(b, i * sizeof(*o->servers)) : NULL;
    if (i != 0 && o->servers == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    o->index = c->norigins;
    o->keepalive = 32;
    o->connect_timeout_ms = 2000;
    o->response_timeout_ms = 30000;
    o->idle_timeout_ms = 60000;
    o->retries = 1;
    o->max_fails = 3;
    o->fail_timeout_ms = 10000;
    c->norigins++;
    return conf_build_enter(b, n, CONF_CTX_ORIGIN, o, err);
}

static int
set_site(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf *c = parent;
    struct conf_site *s = &c->sites[c->nsites];
    const struct conf_site *first;
    size_t i, nroutes = count_children(n, "route");

    if (c->sites == NULL || core_main_of(c) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    s->pos = n->pos;
    s->hosts = conf_alloc(b, n->nargs * sizeof(*s->hosts));
    s->routes = nroutes ? conf_alloc(b, nroutes * sizeof(*s->routes)) : NULL;
    if (s->hosts == NULL || (nroutes != 0 && s->routes == NULL))
        return conf_errf(err, &n->pos, "out of memory");
    for (i = 0; i < n->nargs; i++) {
        const struct conf_arg *a = &n->args[i];
        char host[256];
        size_t len = conf_match_host_norm(a->s, a->len, host, sizeof(host));
        if (len == 0)
            return conf_errf(err, &a->pos,
                             "'site': '%s' is not a valid host name (expected NAME, *.SUFFIX or "
                             "*)",
                             a->s);
        s->hosts[s->nhosts] = conf_strndup(b, host, len);
        if (s->hosts[s->nhosts] == NULL)
            return conf_errf(err, &n->pos, "out of memory");
        first = conf_strmap_put(&core_main_of(c)->hosts, s->hosts[s->nhosts], len, s);
        if (first != NULL)
            return conf_errf(err, &a->pos, "host '%s' is already served by the site at %s:%u", host,
                             first->pos.file, (unsigned)first->pos.line);
        s->nhosts++;
    }
    c->nsites++;
    s->max_body_size = c->limits.max_body_size;
    core_main_of(c)->next_site_routes = nroutes;
    if (conf_build_enter(b, n, CONF_CTX_SITE, s, err) < 0)
        return -1;
    if (core_site_of(s) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    return 0;
}

/* ---- ORIGIN --------------------------------------------------------------------------------- */

static struct conf_origin *
origin_of(void *parent)
{
    return parent;
}

/* "https://" or "http://" (any case) at the start of a server address:
 * the length of the prefix and the scheme; 0 and CONF_SCHEME_NONE when
 * there is no "://"; -1 for another scheme. */
static long
server_scheme(const char *s, size_t len, enum conf_scheme *out)
{
    const char *sep = memmem(s, len, "://", 3);
    size_t n;

    *out = CONF_SCHEME_NONE;
    if (sep == NULL)
        return 0;
    n = (size_t)(sep - s);
    if (n == 5 && strncasecmp(s, "https", 5) == 0)
        *out = CONF_SCHEME_HTTPS;
    else if (n == 4 && strncasecmp(s, "http", 4) == 0)
        *out = CONF_SCHEME_HTTP;
    else
        return -1;
    return (long)n + 3;
}

static int
set_server(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf_origin *o = origin_of(parent);
    struct conf_server *sv = &o->servers[o->nservers];
    const struct conf_arg *a = &n->args[0];
    const char *s = a->s, *end = a->s + a->len, *host, *colon;
    size_t hlen, i;
    uint16_t port;
    unsigned char ipbuf[sizeof(struct in6_addr)];
    char tmp[256];
    enum conf_scheme scheme;
    long skip = server_scheme(a->s, a->len, &scheme);

    if (skip < 0)
        return conf_errf(err, &a->pos,
                         "'server': unknown scheme in '%s' (expected http:// or https://)", a->s);
    if (scheme != CONF_SCHEME_NONE) {
        const char *slash;
        s += skip;
        slash = memchr(s, '/', (size_t)(end - s));
        if (slash != NULL) {
            if (slash + 1 != end)
                return conf_errf(err, &a->pos,
                                 "'server': '%s' has a path (expected %s://HOST[:PORT]: requests "
                                 "keep their own path)",
                                 a->s, scheme == CONF_SCHEME_HTTPS ? "https" : "http");
            end = slash; /* a lone trailing '/' */
        }
    }
    if (end > s && s[0] == '[') {
        const char *rb = memchr(s, ']', (size_t)(end - s));
        if (rb == NULL || (rb + 1 < end && rb[1] != ':') ||
            (rb + 1 == end && scheme == CONF_SCHEME_NONE))
            return conf_errf(err, &a->pos, "'server' expects HOST:PORT, not '%s'", a->s);
        host = s + 1;
        hlen = (size_t)(rb - s) - 1;
        colon = rb + 1 < end ? rb + 1 : NULL;
        if (hlen == 0 || hlen >= sizeof(tmp))
            return conf_errf(err, &a->pos, "'server': '%s' is not a valid IPv6 address", a->s);
        memcpy(tmp, host, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, ipbuf) != 1)
            return conf_errf(err, &a->pos, "'server': '%s' is not a valid IPv6 address", tmp);
        sv->is_ip = true;
    } else {
        host = s;
        colon = memrchr(s, ':', (size_t)(end - s));
        if (colon == NULL && scheme == CONF_SCHEME_NONE)
            return conf_errf(err, &a->pos,
                             "'server' expects HOST:PORT (the port is required), not '%s'", a->s);
        hlen = colon != NULL ? (size_t)(colon - s) : (size_t)(end - s);
        if (memchr(s, ':', hlen) != NULL)
            return conf_errf(err, &a->pos,
                             "'server': write IPv6 addresses in brackets, as [::1]:9000, not "
                             "'%s'",
                             a->s);
        /* a fully qualified name may end with a dot */
        if (hlen >= sizeof(tmp) ||
            !conf_hostname_valid(s, hlen > 1 && s[hlen - 1] == '.' ? hlen - 1 : hlen)) {
            if (hlen >= sizeof(tmp))
                hlen = sizeof(tmp) - 1;
            memcpy(tmp, s, hlen);
            tmp[hlen] = '\0';
            return conf_errf(err, &a->pos, "'server': '%s' is not a valid host name", tmp);
        }
        memcpy(tmp, s, hlen);
        tmp[hlen] = '\0';
        sv->is_ip = inet_pton(AF_INET, tmp, ipbuf) == 1;
    }
    if (colon == NULL)
        port = scheme == CONF_SCHEME_HTTPS ? 443 : 80;
    else if (!conf_port_from_str(colon + 1, (size_t)(end - colon - 1), &port))
        return conf_errf(err, &a->pos, "'server' port must be from 1 to 65535 in '%s'", a->s);
    if (o->nservers > 0 &&
        (o->servers[0].scheme == CONF_SCHEME_HTTPS) != (scheme == CONF_SCHEME_HTTPS)) {
        const struct conf_server *first = &o->servers[0];
        bool first_tls = first->scheme == CONF_SCHEME_HTTPS;
        return conf_errf(err, &a->pos,
                         "origin '%s' mixes https:// and plain servers (the server at %s:%u:%u "
                         "is %s, this one is %s): an origin speaks TLS to all its servers or to "
                         "none",
                         o->name, first->pos.file, (unsigned)first->pos.line,
                         (unsigned)first->pos.col, first_tls ? "https://" : "plain",
                         first_tls ? "plain" : "https://");
    }
    sv->pos = n->pos;
    sv->scheme = scheme;
    sv->host = conf_strndup(b, host, hlen);
    if (sv->host == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    sv->port = port;
    sv->weight = 1;
    for (i = 1; i < n->nargs; i++) {
        const struct conf_arg *o2 = &n->args[i];
        const char *key, *val;
        size_t klen;
        if (strcmp(o2->s, "backup") == 0) {
            sv->backup = true;
        } else if (conf_arg_kv(o2, &key, &klen, &val) && key_is(key, klen, "weight")) {
            struct conf_arg v = kv_value(o2, val);
            uint64_t w;
            if (conf_parse_uint(&v, "server weight=", 1, 1000, &w, err) < 0)
                return -1;
            sv->weight = (unsigned)w;
        } else {
            return conf_errf(err, &o2->pos,
                             "'server': unknown option '%s' (expected weight=N or backup)", o2->s);
        }
    }
    o->nservers++;
    return 0;
}

#define ORIGIN_TIME(fn, field)                                                                     \
    static int fn(struct conf_build *b, const struct conf_node *n, void *parent,                   \
                  struct conf_err *err)                                                            \
    {                                                                                              \
        (void)b;                                                                                   \
        return conf_parse_duration(&n->args[0], n->name, &origin_of(parent)->field, err);          \
    }
#define ORIGIN_UINT(fn, field, lo, hi)                                                             \
    static int fn(struct conf_build *b, const struct conf_node *n, void *parent,                   \
                  struct conf_err *err)                                                            \
    {                                                                                              \
        uint64_t v;                                                                                \
        (void)b;                                                                                   \
        if (conf_parse_uint(&n->args[0], n->name, lo, hi, &v, err) < 0)                            \
            return -1;                                                                             \
        origin_of(parent)->field = (unsigned)v;                                                    \
        return 0;                                                                                  \
    }

ORIGIN_UINT(set_keepalive, keepalive, 0, 100000)
ORIGIN_TIME(set_connect_timeout, connect_timeout_ms)
ORIGIN_TIME(set_response_timeout, response_timeout_ms)
ORIGIN_TIME(set_idle_timeout, idle_timeout_ms)
ORIGIN_UINT(set_retries, retries, 0, 100)
ORIGIN_UINT(set_max_fails, max_fails, 0, 1000)
ORIGIN_TIME(set_fail_timeout, fail_timeout_ms)

/* ---- SITE ----------------------------------------------------------------------------------- */

static void
route_display(const struct conf_route *r, char *out, size_t len)
{
    static const char *const mods[] = {
        [CONF_MATCH_EXACT] = "= ",           [CONF_MATCH_PREFIX] = "",
        [CONF_MATCH_REGEX] = "~ ",           [CONF_MATCH_REGEX_CI] = "~* ",
        [CONF_MATCH_PREFIX_NOREGEX] = "^~ ",
    };
    snprintf(out, len, "%s%s", mods[r->match], r->pattern);
}

static int
match_class(enum conf_match m)
{
    return m == CONF_MATCH_PREFIX_NOREGEX ? CONF_MATCH_PREFIX : (int)m;
}

static int
set_site_max_body_size(struct conf_build *b, const struct conf_node *n, void *parent,
                       struct conf_err *err)
{
    struct conf_site *s = parent;

    (void)b;
    if (core_site_of(s) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    core_site_of(s)->max_body_set = true;
    return conf_parse_size(&n->args[0], n->name, &s->max_body_size, err);
}

static int
set_route(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf_site *s = parent;
    const struct conf_arg *pat = &n->args[n->nargs - 1];
    struct conf_route *r = &s->routes[s->nroutes];
    const struct conf_route *first;
    char shown[160], *key;

    r->match = CONF_MATCH_PREFIX;
    if (n->nargs == 2) {
        const char *m = n->args[0].s;
        if (strcmp(m, "=") == 0)
            r->match = CONF_MATCH_EXACT;
        else if (strcmp(m, "~") == 0)
            r->match = CONF_MATCH_REGEX;
        else if (strcmp(m, "~*") == 0)
            r->match = CONF_MATCH_REGEX_CI;
        else if (strcmp(m, "^~") == 0)
            r->match = CONF_MATCH_PREFIX_NOREGEX;
        else
            return conf_errf(err, &n->args[0].pos,
                             "'route': unknown match type '%s' (expected =, ~, ~* or ^~)", m);
    }
    if (r->match != CONF_MATCH_REGEX && r->match != CONF_MATCH_REGEX_CI && pat->s[0] != '/')
        return conf_errf(err, &pat->pos, "'route' path must start with '/', not '%s'", pat->s);
    r->pos = n->pos;
    r->pattern = conf_strndup(b, pat->s, pat->len);
    if (r->pattern == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    r->pattern_len = pat->len;
    key = conf_alloc(b, pat->len + 1);
    if (key == NULL || core_site_of(s) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    key[0] = (char)('0' + match_class(r->match));
    memcpy(key + 1, pat->s, pat->len);
    first = conf_strmap_put(&core_site_of(s)->routes, key, pat->len + 1, r);
    if (first != NULL) {
        route_display(r, shown, sizeof(shown));
        return conf_errf(err, &n->pos, "duplicate route '%s' (first defined at %s:%u)", shown,
                         first->pos.file, (unsigned)first->pos.line);
    }
    /* counted before compiling, so a failed load still frees the regex */
    s->nroutes++;
    r->max_body_size = s->max_body_size;
    if ((r->match == CONF_MATCH_REGEX || r->match == CONF_MATCH_REGEX_CI) &&
        conf_match_compile(r, pat, err) < 0)
        return -1;
    if (conf_build_enter(b, n, CONF_CTX_ROUTE, r, err) < 0)
        return -1;
    if (core_route_of(r) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    core_route_of(r)->site = s;
    return 0;
}

/* ---- ROUTE ---------------------------------------------------------------------------------- */

static int
set_route_origin(struct conf_build *b, const struct conf_node *n, void *parent,
                 struct conf_err *err)
{
    (void)b;
    if (core_route_of(parent) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    core_route_of(parent)->origin = &n->args[0];
    return 0;
}

static int
set_return(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf_route *r = parent;
    uint64_t status;

    if (conf_parse_uint(&n->args[0], "return", 200, 599, &status, err) < 0)
        return -1;
    r->return_status = (int)status;
    if (n->nargs == 2) {
        r->return_body = conf_strndup(b, n->args[1].s, n->args[1].len);
        if (r->return_body == NULL)
            return conf_errf(err, &n->pos, "out of memory");
        r->return_body_len = n->args[1].len;
    }
    return 0;
}

static int
set_route_max_body_size(struct conf_build *b, const struct conf_node *n, void *parent,
                        struct conf_err *err)
{
    struct conf_route *r = parent;

    (void)b;
    if (core_route_of(r) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    core_route_of(r)->max_body_set = true;
    return conf_parse_size(&n->args[0], n->name, &r->max_body_size, err);
}

/* ---- hooks ---------------------------------------------------------------------------------- */

static void *
core_create(struct conf_build *b, enum conf_ctx ctx, void *obj)
{
    struct conf *c = obj;
    const struct conf_node *root;
    struct core_main *cm;
    struct core_site *cs;
    size_t n, i;

    switch (ctx) {
    case CONF_CTX_MAIN:
        root = conf_tree_root(b->tree);
        c->workers = cpu_count();
        c->access_log = CONF_LOG_OFF;
        c->resolver = (struct conf_resolver){
            .system = true,
            .timeout_ms = 2000,
            .attempts = 2,
            .ttl_min_ms = 1000,
            .ttl_max_ms = 3600 * 1000,
            .negative_ttl_ms = 5000,
            .stale_ttl_ms = 3600 * 1000,
        };
        c->limits = (struct conf_limits){
            .max_header_size = 16 * 1024,
            .max_headers = 100,
            .max_uri_length = 8 * 1024,
            .max_body_size = 100 * 1024 * 1024,
            .client_header_timeout_ms = 10000,
            .client_body_timeout_ms = 30000,
            .keepalive_timeout_ms = 60000,
            .send_timeout_ms = 60000,
            .max_connections = 10000,
            .shutdown_timeout_ms = 30000,
            .http2_max_concurrent_streams = 100,
            .http2_max_resets = 200,
            .http2_reset_window_ms = 10000,
            .http2_hpack_table_size = 4096,
        };
        /* arrays sized from the tree up front: objects never move once created,
         * so modules may keep pointers to them */
        cm = conf_alloc(b, sizeof(*cm));
        if (cm == NULL)
            return NULL;
        n = count_children(root, "listen");
        c->listens = n ? conf_alloc(b, n * sizeof(*c->listens)) : NULL;
        if (conf_strmap_init(b->arena, &cm->listens, n) < 0)
            return NULL;
        n = count_children(root, "origin");
        c->origins = n ? conf_alloc(b, n * sizeof(*c->origins)) : NULL;
        if (conf_strmap_init(b->arena, &cm->origins, n) < 0)
            return NULL;
        n = count_children(root, "site");
        c->sites = n ? conf_alloc(b, n * sizeof(*c->sites)) : NULL;
        for (i = 0, n = 0; i < root->nchildren; i++)
            if (strcmp(root->children[i].name, "site") == 0)
                n += root->children[i].nargs;
        if (conf_strmap_init(b->arena, &cm->hosts, n) < 0)
            return NULL;
        return cm;
    case CONF_CTX_ORIGIN: return NULL;
    case CONF_CTX_SITE:
        cs = conf_alloc(b, sizeof(*cs));
        cm = core_main_of(conf_build_conf(b));
        if (cs == NULL || cm == NULL ||
            conf_strmap_init(b->arena, &cs->routes, cm->next_site_routes) < 0)
            return NULL;
        return cs;
    case CONF_CTX_ROUTE: return conf_alloc(b, sizeof(struct core_route));
    }
    return NULL;
}

static int
core_finish(struct conf_build *b, enum conf_ctx ctx, void *obj, void *outer, struct conf_err *err)
{
    struct conf *c = conf_build_conf(b);
    size_t i;

    (void)outer;
    switch (ctx) {
    case CONF_CTX_MAIN:
        if (c->workers == 0)
            c->workers = 1;
        return 0;
    case CONF_CTX_ORIGIN: {
        struct conf_origin *o = obj;
        bool primary = false;
        if (o->nservers == 0)
            return conf_errf(err, &o->pos, "origin '%s' has no 'server'", o->name);
        for (i = 0; i < o->nservers; i++)
            primary |= !o->servers[i].backup;
        if (!primary)
            return conf_errf(err, &o->pos, "origin '%s' has only backup servers", o->name);
        return 0;
    }
    case CONF_CTX_SITE: {
        struct conf_site *s = obj;
        if (!core_site_of(s)->max_body_set)
            s->max_body_size = c->limits.max_body_size;
        return 0;
    }
    case CONF_CTX_ROUTE: {
        struct conf_route *r = obj;
        struct core_route *cr = core_route_of(r);
        const struct conf_site *s = cr->site;
        if (!cr->max_body_set && s != NULL)
            r->max_body_size = s->max_body_size;
        if (cr->origin != NULL) {
            const struct conf_arg *a = cr->origin;
            const char *best = NULL;
            size_t bestd = (size_t)-1;
            r->origin = conf_origin_find(c, a->s, a->len);
            if (r->origin != NULL)
                return 0;
            for (i = 0; i < c->norigins; i++)
                if (conf_suggestable(a->s, a->len, c->origins[i].name, &bestd))
                    best = c->origins[i].name;
            if (best != NULL)
                return conf_errf(err, &a->pos, "unknown origin '%s' (did you mean '%s'?)", a->s,
                                 best);
            return conf_errf(err, &a->pos, "unknown origin '%s'", a->s);
        }
        return 0;
    }
    }
    return 0;
}

int
conf_core_validate(struct conf_build *b, struct conf_err *err)
{
    struct conf *c = conf_build_conf(b);
    char shown[160];
    size_t i, j;

    for (i = 0; i < c->nsites; i++) {
        for (j = 0; j < c->sites[i].nroutes; j++) {
            const struct conf_route *r = &c->sites[i].routes[j];
            route_display(r, shown, sizeof(shown));
            if (r->origin != NULL && r->return_status != 0)
                return conf_errf(err, &r->pos, "route '%s' has both 'origin' and 'return'", shown);
            if (r->origin == NULL && r->return_status == 0 && !r->_handled)
                return conf_errf(err, &r->pos, "route '%s' has no 'origin' or 'return'", shown);
        }
    }
    return 0;
}

const struct conf_origin *
conf_origin_find(const struct conf *c, const char *name, size_t len)
{
    const struct core_main *cm = core_main_of(c);

    return cm != NULL ? conf_strmap_get(&cm->origins, name, len) : NULL;
}

void
conf_core_release(struct conf *c)
{
    size_t i, j;

    for (i = 0; i < c->nsites; i++)
        for (j = 0; j < c->sites[i].nroutes; j++)
            conf_match_free_regex(&c->sites[i].routes[j]);
}

/* ---- the table ------------------------------------------------------------------------------ */

#define M CONF_CTX_MAIN
#define O CONF_CTX_ORIGIN
#define S CONF_CTX_SITE
#define R CONF_CTX_ROUTE
#define U CONF_F_UNIQUE
#define B CONF_F_BLOCK
#define ANY CONF_ARGS_ANY

static const struct conf_directive core_directives[] = {
    {"workers", M, U, 1, 1, "a number of threads or 'auto'", set_workers},
    {"listen", M, 0, 1, 5, "an address or port", set_listen},
    {"admin", M, U, 1, 1, "an address or port", set_admin},
    {"resolver", M, U, 1, ANY, "'system' or server addresses", set_resolver},
    {"access_log", M, U, 1, 1, "off, stdout or a file path", set_access_log},
    {"pid", M, U, 1, 1, "a file path", set_pid},
    {"max_header_size", M, U, 1, 1, "a size", set_max_header_size},
    {"max_headers", M, U, 1, 1, "a number", set_max_headers},
    {"max_uri_length", M, U, 1, 1, "a size", set_max_uri_length},
    {"max_body_size", M, U, 1, 1, "a size", set_max_body_size},
    {"client_header_timeout", M, U, 1, 1, "a duration", set_client_header_timeout},
    {"client_body_timeout", M, U, 1, 1, "a duration", set_client_body_timeout},
    {"keepalive_timeout", M, U, 1, 1, "a duration", set_keepalive_timeout},
    {"send_timeout", M, U, 1, 1, "a duration", set_send_timeout},
    {"max_connections", M, U, 1, 1, "a number", set_max_connections},
    {"shutdown_timeout", M, U, 1, 1, "a duration", set_shutdown_timeout},
    {"http2_max_concurrent_streams", M, U, 1, 1, "a number", set_http2_max_concurrent_streams},
    {"http2_max_resets", M, U, 1, 1, "COUNT/WINDOW like 200/10s", set_http2_max_resets},
    {"http2_hpack_table_size", M, U, 1, 1, "a size", set_http2_hpack_table_size},
    {"origin", M, B, 1, 1, "a name and a { } block", set_origin_block},
    {"site", M, B, 1, ANY, "host names and a { } block", set_site},
    {"server", O, 0, 1, 3, "HOST:PORT or https://HOST[:PORT], then [weight=N] [backup]",
     set_server},
    {"keepalive", O, U, 1, 1, "a number of idle connections", set_keepalive},
    {"connect_timeout", O, U, 1, 1, "a duration", set_connect_timeout},
    {"response_timeout", O, U, 1, 1, "a duration", set_response_timeout},
    {"idle_timeout", O, U, 1, 1, "a duration", set_idle_timeout},
    {"retries", O, U, 1, 1, "a number", set_retries},
    {"max_fails", O, U, 1, 1, "a number", set_max_fails},
    {"fail_timeout", O, U, 1, 1, "a duration", set_fail_timeout},
    {"route", S, B, 1, 2, "a path (after =, ~, ~* or ^~ if any) and a { } block", set_route},
    {"max_body_size", S, U, 1, 1, "a size", set_site_max_body_size},
    {"origin", R, U, 1, 1, "an origin name", set_route_origin},
    {"return", R, U, 1, 2, "a status code and an optional body", set_return},
    {"max_body_size", R, U, 1, 1, "a size", set_route_max_body_size},
};

struct conf_module conf_core_module = {
    .name = "core",
    .directives = core_directives,
    .ndirectives = sizeof(core_directives) / sizeof(core_directives[0]),
    .create = core_create,
    .finish = core_finish,
    .release = conf_core_release,
};
