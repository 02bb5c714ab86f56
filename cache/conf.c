/*
 * The cache conf module: 'cache_dir' (MAIN) and 'cache' (SITE and ROUTE).
 * The language is documented in cache.h ("5. Conf").
 *
 * Every context object gets a struct cache_ctx in its mod[] slot: the
 * public struct cache_route first (what cache_route_conf() hands out), then
 * what the module needs privately. A route without its own 'cache' copies
 * its site's settings whole in the ROUTE finish hook; the key template is
 * then shared, and only the context that compiled it (own_key) frees it, in
 * the release hook.
 */
#include "cache/cache.h"

#include "conf/conf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_LEN 3000                        /* the store builds paths below it */
#define DEFAULT_MAX_OBJECT (64ull * 1024 * 1024) /* as cache_new() */
#define DEFAULT_MEM_OBJECT (64ull * 1024)        /* as cache_new() */
#define SECONDS_MAX (365LL * 24 * 3600)          /* ttl= and friends: at most 365d */

struct cache_ctx {
    struct cache_route pub;        /* first: cache_route_conf() returns &pub */
    const struct conf_node *node;  /* this context's 'cache' directive, NULL: inherited */
    struct cache_key_tpl *own_key; /* compiled here; freed by the release hook */
};

struct cache_main_ctx {
    struct cache_main pub;
    const struct conf_node *node; /* 'cache_dir', NULL when absent */
};

static struct conf_module cache_module;
static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static int register_rc = -1;
static bool registered;

/* ---- helpers -------------------------------------------------------------------------------- */

static bool
key_is(const char *key, size_t klen, const char *want)
{
    return strlen(want) == klen && memcmp(key, want, klen) == 0;
}

/* The value part of "key=value" as an argument of its own (for the
 * conf_parse_* helpers: messages then point at the argument). */
static struct conf_arg
kv_value(const struct conf_arg *a, const char *val)
{
    struct conf_arg v = *a;

    v.s = val;
    v.len = a->len - (size_t)(val - a->s);
    return v;
}

static char
lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Levenshtein distance, case-insensitive, bounded (cap + 1 = "too far"). */
static size_t
edit_distance(const char *a, size_t alen, const char *b, size_t blen, size_t cap)
{
    size_t row[40], i, j;

    if (alen >= 40 || blen >= 40 || (alen > blen ? alen - blen : blen - alen) > cap)
        return cap + 1;
    for (j = 0; j <= blen; j++)
        row[j] = j;
    for (i = 1; i <= alen; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (j = 1; j <= blen; j++) {
            size_t up = row[j], best = diag + (lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[blen] > cap ? cap + 1 : row[blen];
}

/* An option of 'cache' / 'cache_dir': its name and whether it takes "=value". */
struct opt {
    const char *name;
    bool value;
};

/* The option closest to (key, klen) as conf does it for directives: one
 * edit for words of up to 3 characters, else two; NULL when none is close. */
static const struct opt *
opt_suggest(const struct opt *opts, size_t n, const char *key, size_t klen)
{
    size_t cap = klen <= 3 ? 1 : 2, best = cap + 1, i;
    const struct opt *found = NULL;

    for (i = 0; i < n; i++) {
        size_t d = edit_distance(key, klen, opts[i].name, strlen(opts[i].name), cap);
        if (d < best) {
            best = d;
            found = &opts[i];
        }
    }
    return found;
}

/* "'cache': unknown option 'tll=5m' (did you mean 'ttl='?)" or the list of
 * options. */
static int
unknown_option(const char *dname, const struct opt *opts, size_t n, const struct conf_arg *a,
               const char *key, size_t klen, struct conf_err *err)
{
    const struct opt *s = opt_suggest(opts, n, key, klen);
    char list[256];
    size_t used = 0, i;

    if (s != NULL)
        return conf_errf(err, &a->pos, "'%s': unknown option '%s' (did you mean '%s%s'?)", dname,
                         a->s, s->name, s->value ? "=" : "");
    list[0] = '\0';
    for (i = 0; i < n; i++) {
        int k = snprintf(list + used, sizeof(list) - used, "%s%s%s",
                         i == 0       ? ""
                         : i + 1 == n ? " or "
                                      : ", ",
                         opts[i].name, opts[i].value ? "=" : "");
        if (k < 0 || (size_t)k >= sizeof(list) - used)
            break;
        used += (size_t)k;
    }
    return conf_errf(err, &a->pos, "'%s': unknown option '%s' (expected %s)", dname, a->s, list);
}

/* Which option an argument is; -1 when none. *val: the value (NULL for a
 * bare word). Refuses a value on a flag and a flag without its value. */
static int
opt_match(const char *dname, const struct opt *opts, size_t n, const struct conf_arg *a,
          const char **val, struct conf_err *err)
{
    const char *key = a->s;
    size_t klen = a->len, i;

    *val = NULL;
    if (conf_arg_kv(a, &key, &klen, val)) {
        /* key and *val set */
    } else {
        key = a->s;
        klen = a->len;
    }
    for (i = 0; i < n; i++) {
        if (!key_is(key, klen, opts[i].name))
            continue;
        if (opts[i].value && *val == NULL)
            return conf_errf(err, &a->pos, "'%s': %s= needs a value", dname, opts[i].name);
        if (!opts[i].value && *val != NULL)
            return conf_errf(err, &a->pos, "'%s': %s takes no value (not '%s')", dname,
                             opts[i].name, a->s);
        return (int)i;
    }
    unknown_option(dname, opts, n, a, key, klen, err);
    return -1;
}

static const char *
route_prefix(enum conf_match m)
{
    switch (m) {
    case CONF_MATCH_EXACT: return "= ";
    case CONF_MATCH_PREFIX: return "";
    case CONF_MATCH_REGEX: return "~ ";
    case CONF_MATCH_REGEX_CI: return "~* ";
    case CONF_MATCH_PREFIX_NOREGEX: return "^~ ";
    }
    return "";
}

static struct cache_main_ctx *
main_of(const struct conf *c)
{
    return c->mod[cache_module.index];
}

/* ---- MAIN: cache_dir ------------------------------------------------------------------------ */

enum { DIR_MAX_SIZE, DIR_MAX_OBJECT, DIR_FSYNC, DIR_MEM, DIR_MEM_OBJECT, DIR_NOPTS };
static const struct opt dir_opts[DIR_NOPTS] = {
    [DIR_MAX_SIZE] = {"max_size", true},     [DIR_MAX_OBJECT] = {"max_object", true},
    [DIR_FSYNC] = {"fsync", true},           [DIR_MEM] = {"mem", true},
    [DIR_MEM_OBJECT] = {"mem_object", true},
};

static int
set_cache_dir(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct cache_main_ctx *mc = main_of(parent);
    const struct conf_arg *path = &n->args[0], *size_arg = NULL, *obj_arg = NULL;
    const struct conf_arg *mem_arg = NULL, *mobj_arg = NULL;
    const struct conf_arg *seen[DIR_NOPTS] = {NULL};
    const char *key, *val;
    size_t klen, i;

    (void)b;
    if (mc == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (conf_arg_kv(path, &key, &klen, &val))
        for (i = 0; i < DIR_NOPTS; i++)
            if (key_is(key, klen, dir_opts[i].name))
                return conf_errf(err, &path->pos,
                                 "'cache_dir' expects a directory path first, not '%s'", path->s);
    if (path->len == 0)
        return conf_errf(err, &path->pos, "'cache_dir' expects a directory path");
    if (path->len > PATH_MAX_LEN)
        return conf_errf(err, &path->pos, "'cache_dir': path longer than %d bytes", PATH_MAX_LEN);
    for (i = 1; i < n->nargs; i++) {
        const struct conf_arg *a = &n->args[i];
        struct conf_arg v;
        int k = opt_match("cache_dir", dir_opts, DIR_NOPTS, a, &val, err);

        if (k < 0)
            return -1;
        if (seen[k] != NULL)
            return conf_errf(err, &a->pos, "'cache_dir': %s= given twice", dir_opts[k].name);
        seen[k] = a;
        v = kv_value(a, val);
        switch (k) {
        case DIR_MAX_SIZE:
            if (conf_parse_size(&v, "cache_dir max_size=", &mc->pub.max_size, err) < 0)
                return -1;
            if (mc->pub.max_size == 0)
                return conf_errf(err, &a->pos, "'cache_dir' max_size= must be more than 0");
            size_arg = a;
            break;
        case DIR_MAX_OBJECT:
            if (conf_parse_size(&v, "cache_dir max_object=", &mc->pub.max_object, err) < 0)
                return -1;
            if (mc->pub.max_object == 0)
                return conf_errf(err, &a->pos, "'cache_dir' max_object= must be more than 0");
            obj_arg = a;
            break;
        case DIR_FSYNC:
            if (conf_parse_flag(&v, "cache_dir fsync=", &mc->pub.fsync, err) < 0)
                return -1;
            break;
        case DIR_MEM:
            if (conf_parse_size(&v, "cache_dir mem=", &mc->pub.mem, err) < 0)
                return -1;
            mem_arg = a;
            break;
        case DIR_MEM_OBJECT:
            if (conf_parse_size(&v, "cache_dir mem_object=", &mc->pub.mem_object, err) < 0)
                return -1;
            if (mc->pub.mem_object == 0)
                return conf_errf(err, &a->pos, "'cache_dir' mem_object= must be more than 0");
            mobj_arg = a;
            break;
        }
    }
    if (size_arg == NULL)
        return conf_errf(err, &n->pos,
                         "'cache_dir' needs max_size=SIZE (the most the cache keeps)");
    if (obj_arg != NULL && mc->pub.max_object > mc->pub.max_size)
        return conf_errf(err, &obj_arg->pos, "'cache_dir': %s is more than %s", obj_arg->s,
                         size_arg->s);
    if (obj_arg == NULL)
        mc->pub.max_object =
            mc->pub.max_size / 8 < DEFAULT_MAX_OBJECT ? mc->pub.max_size / 8 : DEFAULT_MAX_OBJECT;
    if (mc->pub.max_object == 0)
        mc->pub.max_object = 1;
    /* the memory tier: a subset of what is on disk, off with mem=0 (the default) */
    if (mem_arg != NULL && mc->pub.mem > mc->pub.max_size)
        return conf_errf(err, &mem_arg->pos, "'cache_dir': %s is more than %s", mem_arg->s,
                         size_arg->s);
    if (mobj_arg != NULL && mc->pub.mem == 0)
        return conf_errf(err, &mobj_arg->pos,
                         "'cache_dir': %s needs mem=SIZE (the memory tier is off without it)",
                         mobj_arg->s);
    if (mobj_arg != NULL && mc->pub.mem_object > mc->pub.mem)
        return conf_errf(err, &mobj_arg->pos, "'cache_dir': %s is more than %s", mobj_arg->s,
                         mem_arg->s);
    if (mobj_arg != NULL && mc->pub.mem_object > mc->pub.max_object)
        return conf_errf(err, &mobj_arg->pos,
                         "'cache_dir': %s is more than max_object= (%llu bytes): larger objects "
                         "are not stored at all",
                         mobj_arg->s, (unsigned long long)mc->pub.max_object);
    if (mobj_arg == NULL && mc->pub.mem > 0) {
        mc->pub.mem_object = DEFAULT_MEM_OBJECT;
        if (mc->pub.mem_object > mc->pub.mem)
            mc->pub.mem_object = mc->pub.mem;
        if (mc->pub.mem_object > mc->pub.max_object)
            mc->pub.mem_object = mc->pub.max_object;
    }
    mc->pub.dir = path->s; /* the tree lives as long as the conf */
    mc->node = n;
    return 0;
}

/* ---- SITE and ROUTE: cache ------------------------------------------------------------------ */

enum {
    OPT_TTL,
    OPT_MAX_TTL,
    OPT_SWR,
    OPT_SIE,
    OPT_KEY,
    OPT_IGNORE_QUERY,
    OPT_SORT_QUERY,
    OPT_COUNT
};
static const struct opt cache_opts[OPT_COUNT] = {
    [OPT_TTL] = {"ttl", true},
    [OPT_MAX_TTL] = {"max_ttl", true},
    [OPT_SWR] = {"stale_while_revalidate", true},
    [OPT_SIE] = {"stale_if_error", true},
    [OPT_KEY] = {"key", true},
    [OPT_IGNORE_QUERY] = {"ignore_query", true},
    [OPT_SORT_QUERY] = {"sort_query", false},
};

/* A duration option in whole seconds, 0 to 365d. */
static int
parse_seconds(const struct conf_arg *a, const char *val, int k, int64_t *out, struct conf_err *err)
{
    struct conf_arg v = kv_value(a, val);
    char what[64];
    uint64_t ms;

    snprintf(what, sizeof(what), "cache %s=", cache_opts[k].name);
    if (conf_parse_duration(&v, what, &ms, err) < 0)
        return -1;
    if (ms % 1000 != 0)
        return conf_errf(err, &a->pos, "'cache' %s= must be whole seconds, not '%s'",
                         cache_opts[k].name, val);
    if (ms / 1000 > (uint64_t)SECONDS_MAX)
        return conf_errf(err, &a->pos, "'cache' %s= must be at most 365d, not '%s'",
                         cache_opts[k].name, val);
    *out = (int64_t)(ms / 1000);
    return 0;
}

static int
parse_ignore_query(struct cache_route *r, const struct conf_arg *a, const char *val,
                   struct conf_err *err)
{
    const char *p = val, *end = a->s + a->len;

    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma != NULL ? comma : end;
        size_t len = (size_t)(stop - p);

        if (len == 0)
            return conf_errf(err, &a->pos,
                             "'cache' ignore_query= expects names separated by ',', with none "
                             "empty, not '%s'",
                             val);
        if (memchr(p, '=', len) != NULL || memchr(p, '&', len) != NULL)
            return conf_errf(err, &a->pos,
                             "'cache' ignore_query=: '%.*s' is not a parameter name (no '=' or "
                             "'&')",
                             (int)len, p);
        if (r->n_ignore_query == CACHE_IGNORE_QUERY_MAX)
            return conf_errf(err, &a->pos, "'cache' ignore_query= names more than %d parameters",
                             CACHE_IGNORE_QUERY_MAX);
        r->ignore_query[r->n_ignore_query].p = p;
        r->ignore_query[r->n_ignore_query].len = len;
        r->n_ignore_query++;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

static int
set_cache(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err,
          struct cache_ctx *cc)
{
    const struct conf_arg *seen[OPT_COUNT] = {NULL};
    struct cache_route *r;
    char why[256];
    bool on;
    size_t i;

    (void)b;
    (void)parent;
    if (cc == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    r = &cc->pub;
    if (conf_parse_flag(&n->args[0], "cache", &on, err) < 0)
        return -1;
    cc->node = n;
    r->enabled = on;
    if (!on && n->nargs > 1)
        return conf_errf(err, &n->args[1].pos, "'cache off' takes no options");
    for (i = 1; i < n->nargs; i++) {
        const struct conf_arg *a = &n->args[i];
        const char *val;
        int k = opt_match("cache", cache_opts, OPT_COUNT, a, &val, err);

        if (k < 0)
            return -1;
        if (seen[k] != NULL)
            return conf_errf(err, &a->pos, "'cache': %s%s given twice", cache_opts[k].name,
                             cache_opts[k].value ? "=" : "");
        seen[k] = a;
        switch (k) {
        case OPT_TTL:
            if (parse_seconds(a, val, k, &r->ttl, err) < 0)
                return -1;
            break;
        case OPT_MAX_TTL:
            if (parse_seconds(a, val, k, &r->max_ttl, err) < 0)
                return -1;
            break;
        case OPT_SWR:
            if (parse_seconds(a, val, k, &r->swr, err) < 0)
                return -1;
            break;
        case OPT_SIE:
            if (parse_seconds(a, val, k, &r->sie, err) < 0)
                return -1;
            break;
        case OPT_KEY:
            cc->own_key = cache_key_tpl_new(val, a->len - 4, why, sizeof(why));
            if (cc->own_key == NULL)
                return conf_errf(err, &a->pos, "'cache' key=: %s", why);
            r->key = cc->own_key;
            break;
        case OPT_IGNORE_QUERY:
            if (parse_ignore_query(r, a, val, err) < 0)
                return -1;
            break;
        case OPT_SORT_QUERY: r->sort_query = true; break;
        }
    }
    if (seen[OPT_TTL] != NULL && seen[OPT_MAX_TTL] != NULL && r->ttl > r->max_ttl)
        return conf_errf(err, &seen[OPT_TTL]->pos, "'cache': %s is more than %s", seen[OPT_TTL]->s,
                         seen[OPT_MAX_TTL]->s);
    return 0;
}

static int
set_cache_site(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf_site *s = parent;

    return set_cache(b, n, parent, err, s->mod[cache_module.index]);
}

static int
set_cache_route(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf_route *r = parent;

    return set_cache(b, n, parent, err, r->mod[cache_module.index]);
}

/* ---- hooks ---------------------------------------------------------------------------------- */

static void *
cache_create(struct conf_build *b, enum conf_ctx ctx, void *obj)
{
    struct cache_main_ctx *mc;
    struct cache_ctx *cc;

    (void)obj;
    switch (ctx) {
    case CONF_CTX_MAIN:
        /* zeroed: dir NULL (no cache_dir), fsync off */
        mc = conf_alloc(b, sizeof(*mc));
        return mc;
    case CONF_CTX_SITE:
    case CONF_CTX_ROUTE:
        cc = conf_alloc(b, sizeof(*cc));
        if (cc == NULL)
            return NULL;
        cache_route_init(&cc->pub);
        cc->pub.enabled = false; /* off unless 'cache on' (here or, for a route, its site) */
        return cc;
    case CONF_CTX_ORIGIN: break;
    }
    return NULL;
}

static int
cache_finish(struct conf_build *b, enum conf_ctx ctx, void *obj, void *outer, struct conf_err *err)
{
    struct cache_main_ctx *mc = main_of(conf_build_conf(b));
    struct cache_ctx *cc, *site = outer;
    struct conf_site *s;
    struct conf_route *r;

    switch (ctx) {
    case CONF_CTX_MAIN:
        if (mc == NULL)
            return conf_errf(err, NULL, "%s: out of memory", conf_build_conf(b)->path);
        return 0;
    case CONF_CTX_SITE:
        s = obj;
        cc = s->mod[cache_module.index];
        if (cc == NULL || mc == NULL)
            return conf_errf(err, &s->pos, "out of memory");
        if (cc->pub.enabled && mc->pub.dir == NULL)
            return conf_errf(err, &cc->node->pos,
                             "site '%s': 'cache on' needs a 'cache_dir' at the top level",
                             s->nhosts > 0 ? s->hosts[0] : "");
        return 0;
    case CONF_CTX_ROUTE:
        r = obj;
        cc = r->mod[cache_module.index];
        if (cc == NULL || mc == NULL || site == NULL)
            return conf_errf(err, &r->pos, "out of memory");
        if (cc->node == NULL) {
            /* no 'cache' here: the site's, whole (its key template stays the site's) */
            cc->pub = site->pub;
            return 0;
        }
        if (cc->pub.enabled && mc->pub.dir == NULL)
            return conf_errf(err, &cc->node->pos,
                             "route '%s%s': 'cache on' needs a 'cache_dir' at the top level",
                             route_prefix(r->match), r->pattern);
        return 0;
    case CONF_CTX_ORIGIN: break;
    }
    return 0;
}

/* Also runs for a conf that failed midway: a context not reached has no
 * slot, a failed template left own_key NULL. */
static void
cache_release(struct conf *c)
{
    size_t i, j;

    for (i = 0; i < c->nsites; i++) {
        struct conf_site *s = &c->sites[i];
        struct cache_ctx *cc = s->mod[cache_module.index];

        if (cc != NULL) {
            cache_key_tpl_free(cc->own_key);
            cc->own_key = NULL;
            cc->pub.key = NULL;
        }
        for (j = 0; j < s->nroutes; j++) {
            cc = s->routes[j].mod[cache_module.index];
            if (cc == NULL)
                continue;
            cache_key_tpl_free(cc->own_key);
            cc->own_key = NULL;
            cc->pub.key = NULL;
        }
    }
}

/* ---- the table ------------------------------------------------------------------------------ */

#define M CONF_CTX_MAIN
#define S CONF_CTX_SITE
#define R CONF_CTX_ROUTE
#define U CONF_F_UNIQUE
#define ANY CONF_ARGS_ANY

/* Unbounded argument counts: too many arguments means a repeated option,
 * which set_* reports at the argument ("given twice"). */
static const struct conf_directive cache_directives[] = {
    {"cache_dir", M, U, 1, ANY,
     "a directory path, then max_size=SIZE [max_object=SIZE] [fsync=on|off] [mem=SIZE] "
     "[mem_object=SIZE]",
     set_cache_dir},
    {"cache", S, U, 1, ANY, "'on' or 'off', then options", set_cache_site},
    {"cache", R, U, 1, ANY, "'on' or 'off', then options", set_cache_route},
};

static struct conf_module cache_module = {
    .name = "cache",
    .directives = cache_directives,
    .ndirectives = sizeof(cache_directives) / sizeof(cache_directives[0]),
    .create = cache_create,
    .finish = cache_finish,
    .release = cache_release,
};

static void
register_once_fn(void)
{
    register_rc = conf_module_register(&cache_module);
    registered = register_rc == 0;
}

int
cache_conf_register(void)
{
    pthread_once(&register_once, register_once_fn);
    return register_rc;
}

const struct cache_route *
cache_route_conf(const struct conf_route *r)
{
    const struct cache_ctx *cc;

    if (!registered || r == NULL)
        return NULL;
    cc = r->mod[cache_module.index];
    return cc != NULL && cc->pub.enabled ? &cc->pub : NULL;
}

const struct cache_main *
cache_conf_main(const struct conf *c)
{
    const struct cache_main_ctx *mc;

    if (!registered || c == NULL)
        return NULL;
    mc = c->mod[cache_module.index];
    return mc != NULL && mc->pub.dir != NULL ? &mc->pub : NULL;
}
