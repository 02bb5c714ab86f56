/*
 * The compute conf module: redis, function_dir, function_run_dir, budgets
 * (MAIN, and per ROUTE with inheritance), and per route the function chain,
 * on_error and kv_namespace. Its ROUTE finish hook loads every function and
 * builds its instance, so `edge -t` fails on anything the loader or the
 * plugin refuses; its release hook frees instances and drops build refs.
 * The language is documented in compute.h.
 *
 * The loader registry outlives conf generations (that is what lets a reload
 * reuse an unchanged build without a second init); it is created at the
 * first route with a function and replaced when function_run_dir or the
 * host table changes.
 */
#include "compute/compute.h"

#include "conf/conf.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_FUNCTION_DIR "build/functions"
#define DEFAULT_RUN_DIR "var/run/efn"
#define ROUTE_ID_MAX 160 /* longer route ids are cut and suffixed with a hash */
#define ROUTE_ID_KEEP 120

enum budget_kind { B_CPU, B_KV, B_PAUSE, B_ARENA, B_BODY, B_BRK_N, B_BRK_WIN, B_BRK_COOL,
                   B_HARD, B_QCRASH, B_QWIN, B_COUNT };
enum budget_unit { U_MS, U_BYTES, U_NUM };

static const struct budget_spec {
    const char *name;
    enum budget_unit unit;
    uint64_t min, max, def;
    const char *range;
} budget_specs[B_COUNT] = {
    [B_CPU] = {"function_cpu_budget", U_MS, 1, 200, 5, "from 1ms to 200ms"},
    [B_KV] = {"kv_timeout", U_MS, 1, 60 * 1000, 50, "from 1ms to 60s"},
    [B_PAUSE] = {"function_pause_timeout", U_MS, 1, 300 * 1000, 1000, "from 1ms to 5m"},
    [B_ARENA] = {"function_arena_max", U_BYTES, 1024, 256u << 20, 64 * 1024, "from 1k to 256m"},
    [B_BODY] = {"function_body_max", U_BYTES, 0, 1u << 30, 1024 * 1024, "from 0 to 1g"},
    [B_BRK_N] = {"function_breaker_threshold", U_NUM, 1, 1000, 5, "from 1 to 1000"},
    [B_BRK_WIN] = {"function_breaker_window", U_MS, 1000, 3600 * 1000, 10 * 1000,
                   "from 1s to 1h"},
    [B_BRK_COOL] = {"function_breaker_cooldown", U_MS, 100, 3600 * 1000, 30 * 1000,
                    "from 100ms to 1h"},
    [B_HARD] = {"function_cpu_hard_limit", U_MS, 10, 10 * 1000, 200, "from 10ms to 10s"},
    [B_QCRASH] = {"function_quarantine_crashes", U_NUM, 1, 100, 3, "from 1 to 100"},
    [B_QWIN] = {"function_quarantine_window", U_MS, 1000, 24 * 3600 * 1000, 60 * 1000,
                "from 1s to 1d"},
};

const double compute_cpu_bounds[COMPUTE_CPU_BUCKETS] = {0.00001, 0.00005, 0.0001, 0.00025, 0.0005,
                                                       0.001,   0.0025,  0.005,  0.025,   0.1};

static struct conf_module compute_module;

/* The default function_dir: "functions" beside the running binary when that
 * directory exists (build/edge -> build/functions, build/san/edge ->
 * build/san/functions), else DEFAULT_FUNCTION_DIR. */
static char exe_fn_dir[4096];
static pthread_once_t exe_fn_once = PTHREAD_ONCE_INIT;

static void
exe_fn_dir_init(void)
{
    char exe[4000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    struct stat st;
    char *slash;

    if (n <= 0)
        return;
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash == NULL)
        return;
    *slash = '\0';
    snprintf(exe_fn_dir, sizeof(exe_fn_dir), "%s/functions", exe);
    if (stat(exe_fn_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        exe_fn_dir[0] = '\0';
}

static const char *
default_function_dir(void)
{
    pthread_once(&exe_fn_once, exe_fn_dir_init);
    return exe_fn_dir[0] != '\0' ? exe_fn_dir : DEFAULT_FUNCTION_DIR;
}
static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static int register_rc = -1;
static bool registered;

/* The registry kept between loads; main thread only. */
static struct compute_loader *cur_loader;
static char *cur_run_dir;
static const struct efn_host *cur_host;

/* The SITE data: just the site, for route ids (a ROUTE finish gets it as 'outer'). */
struct compute_site {
    const struct conf_site *site;
};

static uint64_t *
budget_field(struct compute_budgets *bu, enum budget_kind k)
{
    switch (k) {
    case B_CPU: return &bu->cpu_ms;
    case B_KV: return &bu->kv_timeout_ms;
    case B_PAUSE: return &bu->pause_timeout_ms;
    case B_ARENA: return &bu->arena_max;
    case B_BODY: return &bu->body_max;
    case B_BRK_N: return &bu->breaker_threshold;
    case B_BRK_WIN: return &bu->breaker_window_ms;
    case B_BRK_COOL: return &bu->breaker_cooldown_ms;
    case B_HARD: return &bu->cpu_hard_ms;
    case B_QCRASH: return &bu->quarantine_crashes;
    case B_QWIN: return &bu->quarantine_window_ms;
    case B_COUNT: break;
    }
    abort();
}

static struct compute_main *
main_of(const struct conf *c)
{
    return c->mod[compute_module.index];
}

static struct compute_route *
route_of(struct conf_build *b, struct conf_route *r)
{
    struct compute_route *cr = r->mod[compute_module.index];

    if (cr == NULL && b != NULL) {
        cr = conf_alloc(b, sizeof(*cr));
        r->mod[compute_module.index] = cr;
    }
    return cr;
}

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

static bool
id_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > COMPUTE_ID_MAX)
        return false;
    for (i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

/* ---- MAIN ----------------------------------------------------------------------------------- */

/* HOST:PORT, [IPv6]:PORT or unix:/path into kc. */
static int
redis_addr(const struct conf_arg *a, struct kv_conf *kc, struct conf_err *err)
{
    const char *s = a->s, *hostp, *colon;
    size_t len = a->len, hlen;

    if (len > 5 && memcmp(s, "unix:", 5) == 0) {
        if (s[5] != '/')
            return conf_errf(err, &a->pos, "'redis': unix socket path must be absolute, not '%s'",
                             s + 5);
        if (len - 5 >= sizeof(kc->path))
            return conf_errf(err, &a->pos, "'redis': unix socket path longer than %zu bytes",
                             sizeof(kc->path) - 1);
        kc->is_unix = true;
        memcpy(kc->path, s + 5, len - 5 + 1);
        return 0;
    }
    if (len > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb == NULL || rb == s + 1 || (size_t)(rb - s) + 1 >= len || rb[1] != ':')
            goto bad;
        hostp = s + 1;
        hlen = (size_t)(rb - s) - 1;
        colon = rb + 1;
    } else {
        colon = memchr(s, ':', len);
        if (colon == NULL || colon == s ||
            memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) != NULL)
            goto bad;
        hostp = s;
        hlen = (size_t)(colon - s);
    }
    if (!conf_port_from_str(colon + 1, len - (size_t)(colon - s) - 1, &kc->port))
        return conf_errf(err, &a->pos, "'redis': bad port in '%s' (expected 1-65535)", s);
    if (hlen >= sizeof(kc->host))
        return conf_errf(err, &a->pos, "'redis': host name longer than %zu bytes",
                         sizeof(kc->host) - 1);
    kc->is_unix = false;
    memcpy(kc->host, hostp, hlen);
    kc->host[hlen] = '\0';
    return 0;
bad:
    return conf_errf(err, &a->pos, "'redis' expects HOST:PORT or unix:/path, not '%s'", s);
}

static int
set_redis(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct compute_main *cm = main_of(parent);
    struct kv_conf kc;
    size_t i;

    (void)b;
    if (cm == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    kv_conf_defaults(&kc);
    if (redis_addr(&n->args[0], &kc, err) < 0)
        return -1;
    for (i = 1; i < n->nargs; i++) {
        const struct conf_arg *a = &n->args[i];
        const char *key, *val;
        size_t klen;
        struct conf_arg v;
        uint64_t num;

        if (!conf_arg_kv(a, &key, &klen, &val))
            goto unknown;
        v = kv_value(a, val);
        if (key_is(key, klen, "password")) {
            if (v.len == 0 || v.len >= sizeof(kc.password))
                return conf_errf(err, &a->pos, "'redis' password= must be 1-%zu bytes",
                                 sizeof(kc.password) - 1);
            memcpy(kc.password, v.s, v.len + 1);
        } else if (key_is(key, klen, "db")) {
            if (conf_parse_uint(&v, "redis db=", 0, 65535, &num, err) < 0)
                return -1;
            kc.db = (unsigned)num;
        } else if (key_is(key, klen, "timeout")) {
            if (conf_parse_duration(&v, "redis timeout=", &num, err) < 0)
                return -1;
            if (num == 0 || num > 60 * 1000)
                return conf_errf(err, &a->pos, "'redis' timeout= must be from 1ms to 60s, not '%s'",
                                 v.s);
            kc.connect_timeout_ms = num;
        } else {
            goto unknown;
        }
        continue;
    unknown:
        return conf_errf(err, &a->pos,
                         "'redis': unknown option '%s' (expected password=, db= or timeout=)",
                         a->s);
    }
    cm->redis = kc;
    cm->redis_set = true;
    return 0;
}

static int
set_function_dir(struct conf_build *b, const struct conf_node *n, void *parent,
                 struct conf_err *err)
{
    struct compute_main *cm = main_of(parent);
    const struct conf_arg *a = &n->args[0];

    (void)b;
    if (cm == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (a->len == 0)
        return conf_errf(err, &a->pos, "'%s' expects a directory path", n->name);
    if (a->len > 3000)
        return conf_errf(err, &a->pos, "'%s': path too long", n->name);
    if (strcmp(n->name, "function_dir") == 0) {
        cm->function_dir = a->s; /* the tree lives as long as the conf */
    } else {
        cm->run_dir = a->s;
        cm->_run_dir_node = n;
    }
    return 0;
}

static enum budget_kind
budget_kind_of(const char *name)
{
    int k;

    for (k = 0; k < B_COUNT; k++)
        if (strcmp(budget_specs[k].name, name) == 0)
            return (enum budget_kind)k;
    abort(); /* only registered for the names above */
}

static int
parse_budget(const struct conf_node *n, struct compute_budgets *bu, unsigned *set,
             struct conf_err *err)
{
    enum budget_kind k = budget_kind_of(n->name);
    const struct budget_spec *sp = &budget_specs[k];
    const struct conf_arg *a = &n->args[0];
    uint64_t v;
    int rc;

    switch (sp->unit) {
    case U_BYTES: rc = conf_parse_size(a, sp->name, &v, err); break;
    case U_NUM: rc = conf_parse_uint(a, sp->name, 0, UINT64_MAX, &v, err); break;
    default: rc = conf_parse_duration(a, sp->name, &v, err); break;
    }
    if (rc < 0)
        return -1;
    if (v < sp->min || v > sp->max)
        return conf_errf(err, &a->pos, "'%s' must be %s, not '%s'", sp->name, sp->range, a->s);
    *budget_field(bu, k) = v;
    if (set != NULL)
        *set |= 1u << k;
    return 0;
}

static int
set_budget_main(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct compute_main *cm = main_of(parent);

    (void)b;
    if (cm == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    return parse_budget(n, &cm->budgets, NULL, err);
}

/* ---- ROUTE ---------------------------------------------------------------------------------- */

static int
set_budget_route(struct conf_build *b, const struct conf_node *n, void *parent,
                 struct conf_err *err)
{
    struct compute_route *cr = route_of(b, parent);

    if (cr == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    return parse_budget(n, &cr->budgets, &cr->_set, err);
}

static int
set_function(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct compute_route *cr = route_of(b, parent);
    struct compute_entry *entries, *e;
    efn_arg *args = NULL;
    size_t i, nargs = 0;

    if (cr == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    /* a fresh array per entry: chains are short, and nothing points into it yet */
    entries = conf_alloc(b, (cr->nentries + 1) * sizeof(*entries));
    if (entries == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (cr->nentries > 0)
        memcpy(entries, cr->entries, cr->nentries * sizeof(*entries));
    e = &entries[cr->nentries];
    if (n->nargs > 1) {
        args = conf_alloc(b, (n->nargs - 1) * sizeof(*args));
        if (args == NULL)
            return conf_errf(err, &n->pos, "out of memory");
    }
    e->name = n->args[0].s;
    e->pos = &n->pos;
    e->_node = n;
    for (i = 1; i < n->nargs; i++) {
        const struct conf_arg *a = &n->args[i];
        const char *key, *val;
        size_t klen;

        if (!conf_arg_kv(a, &key, &klen, &val)) {
            if (strcmp(a->s, "instance") == 0)
                return conf_errf(err, &a->pos, "'function': instance= needs an id");
            args[nargs++] = (efn_arg){{a->s, a->len}, {"", 0}};
            continue;
        }
        if (key_is(key, klen, "instance")) {
            if (e->_instance != NULL)
                return conf_errf(err, &a->pos, "'function': instance= given twice");
            if (!id_ok(val, a->len - klen - 1))
                return conf_errf(err, &a->pos,
                                 "'function': instance= must be 1-%d of A-Z a-z 0-9 _ . -, "
                                 "not '%s'",
                                 COMPUTE_ID_MAX, val);
            e->_instance = val;
            continue;
        }
        args[nargs++] = (efn_arg){{key, klen}, {val, a->len - klen - 1}};
    }
    e->args = args;
    e->nargs = nargs;
    cr->entries = entries;
    cr->nentries++;
    return 0;
}

static int
set_on_error(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct compute_route *cr = route_of(b, parent);
    const struct conf_arg *a = &n->args[0];

    if (cr == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (strcmp(a->s, "open") == 0)
        cr->on_error = COMPUTE_ON_ERROR_OPEN;
    else if (strcmp(a->s, "closed") == 0)
        cr->on_error = COMPUTE_ON_ERROR_CLOSED;
    else
        return conf_errf(err, &a->pos, "'on_error' expects 'open' or 'closed', not '%s'", a->s);
    return 0;
}

static int
set_kv_namespace(struct conf_build *b, const struct conf_node *n, void *parent,
                 struct conf_err *err)
{
    struct compute_route *cr = route_of(b, parent);
    const struct conf_arg *a = &n->args[0];

    if (cr == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (!id_ok(a->s, a->len))
        return conf_errf(err, &a->pos, "'kv_namespace' expects 1-%d of A-Z a-z 0-9 _ . -, not '%s'",
                         COMPUTE_ID_MAX, a->s);
    cr->kv_namespace = a->s;
    return 0;
}

/* ---- loading -------------------------------------------------------------------------------- */

/* The registry for run_dir with the current host table, created on demand. */
static struct compute_loader *
loader_get(const struct compute_main *cm, const struct conf_pos *pos, struct conf_err *err)
{
    const struct efn_host *host = compute_host_current();
    char why[COMPUTE_ERR_MAX];
    struct compute_loader *l;
    char *dir;

    if (cur_loader != NULL && cur_host == host && strcmp(cur_run_dir, cm->run_dir) == 0)
        return cur_loader;
    dir = strdup(cm->run_dir);
    if (dir == NULL) {
        conf_errf(err, pos, "out of memory");
        return NULL;
    }
    l = compute_loader_new(cm->run_dir, host, why, sizeof(why));
    if (l == NULL) {
        free(dir);
        if (cm->_run_dir_node != NULL)
            pos = &cm->_run_dir_node->args[0].pos;
        conf_errf(err, pos, "%s", why);
        return NULL;
    }
    /* the old registry lives on until the builds it holds are released */
    compute_loader_free(cur_loader);
    free(cur_run_dir);
    cur_loader = l;
    cur_run_dir = dir;
    cur_host = host;
    return l;
}

static void
hex_of(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Appends s[0..len) %-escaped; returns the new length (may exceed cap: cut). */
static size_t
id_append(char *out, size_t used, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch > 0x20 && ch < 0x7f && ch != '%' && ch != ':') {
            if (used + 1 < cap)
                out[used] = (char)ch;
            used++;
        } else {
            if (used + 3 < cap) {
                out[used] = '%';
                out[used + 1] = hex[ch >> 4];
                out[used + 2] = hex[ch & 15];
            }
            used += 3;
        }
    }
    return used;
}

/* The route part of a default KV id: host + match type + pattern, escaped. */
static void
route_id(const struct conf_site *s, const struct conf_route *r, char *out, size_t cap)
{
    static const char *const mods[] = {
        [CONF_MATCH_EXACT] = "=",     [CONF_MATCH_PREFIX] = "",           [CONF_MATCH_REGEX] = "~",
        [CONF_MATCH_REGEX_CI] = "~*", [CONF_MATCH_PREFIX_NOREGEX] = "^~",
    };
    const char *host = s != NULL && s->nhosts > 0 ? s->hosts[0] : "";
    const char *mod = mods[r->match];
    char full[ROUTE_ID_MAX * 4];
    size_t used = 0;

    used = id_append(full, used, sizeof(full), host, strlen(host));
    used = id_append(full, used, sizeof(full), mod, strlen(mod));
    used = id_append(full, used, sizeof(full), r->pattern, r->pattern_len);
    if (used < ROUTE_ID_MAX && used < cap) {
        memcpy(out, full, used);
        out[used] = '\0';
        return;
    }
    {
        /* too long for a readable key: a prefix of it and a hash of the whole */
        unsigned char md[32];
        unsigned int mdl = 0;
        char hex[17];
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();

        memset(md, 0, sizeof(md));
        if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
            EVP_DigestUpdate(ctx, host, strlen(host)) == 1 &&
            EVP_DigestUpdate(ctx, mod, strlen(mod) + 1) == 1 &&
            EVP_DigestUpdate(ctx, r->pattern, r->pattern_len) == 1)
            EVP_DigestFinal_ex(ctx, md, &mdl);
        EVP_MD_CTX_free(ctx);
        hex_of(md, 8, hex);
        snprintf(out, cap, "%.*s~%s", ROUTE_ID_KEEP, full, hex);
    }
}

static int
entry_prefix(struct conf_build *b, const struct compute_route *cr, size_t idx,
             const struct conf_site *s, const struct conf_route *r, struct conf_err *err)
{
    struct compute_entry *e = &cr->entries[idx];
    char id[ROUTE_ID_MAX + 32], *p;
    size_t i, nth = 1;
    int n;

    if (e->_instance != NULL) {
        snprintf(id, sizeof(id), "%s", e->_instance);
    } else if (cr->kv_namespace != NULL) {
        snprintf(id, sizeof(id), "%s", cr->kv_namespace);
    } else {
        route_id(s, r, id, sizeof(id));
        for (i = 0; i < idx; i++)
            if (cr->entries[i]._instance == NULL && strcmp(cr->entries[i].name, e->name) == 0)
                nth++;
        if (nth > 1) {
            size_t used = strlen(id);
            snprintf(id + used, sizeof(id) - used, "#%zu", nth);
        }
    }
    n = snprintf(NULL, 0, "efn:%s:%s:", e->name, id);
    p = n > 0 ? conf_alloc(b, (size_t)n + 1) : NULL;
    if (p == NULL)
        return conf_errf(err, e->pos, "out of memory");
    snprintf(p, (size_t)n + 1, "efn:%s:%s:", e->name, id);
    e->kv_prefix = (efn_str){p, (size_t)n};
    return 0;
}

/* Where an instance_new message points: the first argument it names
 * ("limit= must be ...", "unknown argument 'foo'"), else the directive. */
static const struct conf_pos *
blame(const struct compute_entry *e, const char *msg)
{
    const struct conf_node *n = e->_node;
    char pat[80];
    size_t i, s;

    for (s = 0; s < 2; s++) {
        for (i = 1; i < n->nargs; i++) {
            const struct conf_arg *a = &n->args[i];
            const char *eq = memchr(a->s, '=', a->len);
            size_t klen = eq != NULL && eq != a->s ? (size_t)(eq - a->s) : a->len;
            if (klen > 60)
                continue;
            if (s == 0)
                snprintf(pat, sizeof(pat), ": %.*s=", (int)klen, a->s);
            else
                snprintf(pat, sizeof(pat), "'%.*s'", (int)klen, a->s);
            if (strstr(msg, pat) != NULL)
                return &a->pos;
        }
    }
    return &n->pos;
}

static int
finish_route(struct conf_build *b, struct conf_route *r, const struct compute_site *site,
             struct conf_err *err)
{
    struct compute_route *cr = route_of(NULL, r);
    struct compute_main *cm = main_of(conf_build_conf(b));
    struct compute_loader *l;
    char why[COMPUTE_ERR_MAX];
    size_t i;
    int k;

    if (cr == NULL)
        return 0;
    if (cm == NULL || site == NULL)
        return conf_errf(err, &r->pos, "out of memory");
    for (k = 0; k < B_COUNT; k++)
        if (!(cr->_set & (1u << k)))
            *budget_field(&cr->budgets, (enum budget_kind)k) =
                *budget_field(&cm->budgets, (enum budget_kind)k);
    if (cr->nentries == 0)
        return 0;
    l = loader_get(cm, cr->entries[0].pos, err);
    if (l == NULL)
        return -1;
    for (i = 0; i < cr->nentries; i++) {
        struct compute_entry *e = &cr->entries[i];

        e->build = compute_build_load(l, cm->function_dir, e->name, why, sizeof(why));
        if (e->build == NULL)
            return conf_errf(err, e->pos, "%s", why);
        e->plugin = compute_build_plugin(e->build);
        e->live = conf_alloc(b, sizeof(*e->live));
        if (e->live == NULL)
            return conf_errf(err, e->pos, "out of memory");
        if (entry_prefix(b, cr, i, site->site, r, err) < 0)
            return -1;
        if (compute_instance_new(e->build, e->args, e->nargs, &e->inst, why, sizeof(why)) < 0)
            return conf_errf(err, blame(e, why), "%s", why);
    }
    conf_route_set_handled(r);
    return 0;
}

/* ---- hooks ---------------------------------------------------------------------------------- */

static void *
compute_create(struct conf_build *b, enum conf_ctx ctx, void *obj)
{
    struct compute_main *cm;
    struct compute_site *cs;
    int k;

    switch (ctx) {
    case CONF_CTX_MAIN:
        cm = conf_alloc(b, sizeof(*cm));
        if (cm == NULL)
            return NULL;
        kv_conf_defaults(&cm->redis);
        cm->function_dir = default_function_dir();
        cm->run_dir = DEFAULT_RUN_DIR;
        for (k = 0; k < B_COUNT; k++)
            *budget_field(&cm->budgets, (enum budget_kind)k) = budget_specs[k].def;
        return cm;
    case CONF_CTX_SITE:
        cs = conf_alloc(b, sizeof(*cs));
        if (cs != NULL)
            cs->site = obj;
        return cs;
    case CONF_CTX_ORIGIN:
    case CONF_CTX_ROUTE: break; /* routes: allocated by their first directive */
    }
    return NULL;
}

static int
compute_finish(struct conf_build *b, enum conf_ctx ctx, void *obj, void *outer,
               struct conf_err *err)
{
    struct compute_main *cm;

    switch (ctx) {
    case CONF_CTX_MAIN:
        cm = main_of(obj);
        if (cm == NULL)
            return conf_errf(err, NULL, "%s: out of memory", conf_build_conf(b)->path);
        cm->redis.timeout_ms = cm->budgets.kv_timeout_ms;
        return 0;
    case CONF_CTX_ROUTE: return finish_route(b, obj, outer, err);
    case CONF_CTX_ORIGIN:
    case CONF_CTX_SITE: break;
    }
    return 0;
}

/* Also runs for a conf that failed midway: entries not loaded yet have
 * build == NULL, a failed instance_new left inst == NULL. */
static void
compute_release(struct conf *c)
{
    size_t i, j, k;

    for (i = 0; i < c->nsites; i++) {
        const struct conf_site *s = &c->sites[i];
        for (j = 0; j < s->nroutes; j++) {
            struct compute_route *cr = route_of(NULL, &s->routes[j]);
            if (cr == NULL)
                continue;
            for (k = cr->nentries; k > 0; k--) {
                struct compute_entry *e = &cr->entries[k - 1];
                if (e->inst != NULL)
                    compute_instance_free(e->build, e->inst);
                e->inst = NULL;
                compute_build_unref(e->build); /* fini + dlclose at zero */
                e->build = NULL;
                e->plugin = NULL;
            }
        }
    }
}

/* ---- the table ------------------------------------------------------------------------------ */

#define M CONF_CTX_MAIN
#define R CONF_CTX_ROUTE
#define U CONF_F_UNIQUE
#define ANY CONF_ARGS_ANY

static const struct conf_directive compute_directives[] = {
    {"redis", M, U, 1, 4, "HOST:PORT or unix:/path, then password=, db=, timeout=", set_redis},
    {"function_dir", M, U, 1, 1, "a directory path", set_function_dir},
    {"function_run_dir", M, U, 1, 1, "a directory path", set_function_dir},
    {"function_cpu_budget", M, U, 1, 1, "a duration", set_budget_main},
    {"kv_timeout", M, U, 1, 1, "a duration", set_budget_main},
    {"function_pause_timeout", M, U, 1, 1, "a duration", set_budget_main},
    {"function_arena_max", M, U, 1, 1, "a size", set_budget_main},
    {"function_body_max", M, U, 1, 1, "a size", set_budget_main},
    {"function_breaker_threshold", M, U, 1, 1, "a number", set_budget_main},
    {"function_breaker_window", M, U, 1, 1, "a duration", set_budget_main},
    {"function_breaker_cooldown", M, U, 1, 1, "a duration", set_budget_main},
    {"function_cpu_hard_limit", M, U, 1, 1, "a duration", set_budget_main},
    {"function_quarantine_crashes", M, U, 1, 1, "a number", set_budget_main},
    {"function_quarantine_window", M, U, 1, 1, "a duration", set_budget_main},
    {"function_cpu_budget", R, U, 1, 1, "a duration", set_budget_route},
    {"kv_timeout", R, U, 1, 1, "a duration", set_budget_route},
    {"function_pause_timeout", R, U, 1, 1, "a duration", set_budget_route},
    {"function_arena_max", R, U, 1, 1, "a size", set_budget_route},
    {"function_body_max", R, U, 1, 1, "a size", set_budget_route},
    {"function_breaker_threshold", R, U, 1, 1, "a number", set_budget_route},
    {"function_breaker_window", R, U, 1, 1, "a duration", set_budget_route},
    {"function_breaker_cooldown", R, U, 1, 1, "a duration", set_budget_route},
    {"function_cpu_hard_limit", R, U, 1, 1, "a duration", set_budget_route},
    {"function", R, 0, 1, ANY, "a function name and key=value arguments", set_function},
    {"on_error", R, U, 1, 1, "'open' or 'closed'", set_on_error},
    {"kv_namespace", R, U, 1, 1, "a namespace id", set_kv_namespace},
};

static struct conf_module compute_module = {
    .name = "compute",
    .directives = compute_directives,
    .ndirectives = sizeof(compute_directives) / sizeof(compute_directives[0]),
    .create = compute_create,
    .finish = compute_finish,
    .release = compute_release,
};

static void
register_once_fn(void)
{
    register_rc = conf_module_register(&compute_module);
    registered = register_rc == 0;
}

int
compute_conf_register(void)
{
    pthread_once(&register_once, register_once_fn);
    return register_rc;
}

void
compute_conf_shutdown(void)
{
    compute_loader_free(cur_loader);
    free(cur_run_dir);
    cur_loader = NULL;
    cur_run_dir = NULL;
    cur_host = NULL;
}

const struct compute_route *
compute_route_chain(const struct conf_route *r)
{
    const struct compute_route *cr;

    if (!registered)
        return NULL;
    cr = r->mod[compute_module.index];
    return cr != NULL && cr->nentries > 0 ? cr : NULL;
}

const struct compute_main *
compute_conf_main(const struct conf *c)
{
    return registered ? c->mod[compute_module.index] : NULL;
}
