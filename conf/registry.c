/*
 * The directive registry and the snapshot builder: modules register their
 * directive tables; conf_load walks the generic tree, dispatching every node
 * to the directive that owns its name in that context, then runs the
 * modules' finish hooks and the final checks, and hands out one refcounted,
 * immutable struct conf living in one arena.
 */
#include "conf/conf-int.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static struct conf_module *modules[CONF_MODULES_MAX];
static size_t nmodules;
static pthread_once_t core_once = PTHREAD_ONCE_INIT;

/* ---- registration ----------------------------------------------------------------------- */

static bool
clashes(const struct conf_directive *d, const struct conf_directive *tab, size_t n,
        const struct conf_directive *stop)
{
    size_t i;

    for (i = 0; i < n && &tab[i] != stop; i++)
        if ((tab[i].ctx & d->ctx) != 0 && strcmp(tab[i].name, d->name) == 0)
            return true;
    return false;
}

static int
module_add(struct conf_module *m)
{
    size_t i, j;

    if (nmodules == CONF_MODULES_MAX)
        return -1;
    for (i = 0; i < nmodules; i++)
        if (modules[i] == m)
            return -1;
    for (j = 0; j < m->ndirectives; j++) {
        const struct conf_directive *d = &m->directives[j];
        if (d->name == NULL || d->set == NULL || strcmp(d->name, "include") == 0)
            return -1;
        if (clashes(d, m->directives, m->ndirectives, d))
            return -1;
        for (i = 0; i < nmodules; i++)
            if (clashes(d, modules[i]->directives, modules[i]->ndirectives, NULL))
                return -1;
    }
    m->index = (int)nmodules;
    modules[nmodules++] = m;
    return 0;
}

static void
core_register(void)
{
    /* first module, so its index is CONF_CORE_INDEX and its hooks run first */
    (void)module_add(&conf_core_module);
}

int
conf_module_register(struct conf_module *m)
{
    pthread_once(&core_once, core_register);
    return module_add(m);
}

/* ---- lookup and suggestions ----------------------------------------------------------------- */

/* The directive for name in ctx (or NULL); *where = every ctx the name is valid in. */
static const struct conf_directive *
directive_find(const char *name, unsigned ctx, unsigned *where, const struct conf_module **owner)
{
    const struct conf_directive *found = NULL;
    size_t i, j;

    *where = 0;
    for (i = 0; i < nmodules; i++) {
        for (j = 0; j < modules[i]->ndirectives; j++) {
            const struct conf_directive *d = &modules[i]->directives[j];
            if (strcmp(d->name, name) != 0)
                continue;
            *where |= d->ctx;
            if ((d->ctx & ctx) != 0 && found == NULL) {
                found = d;
                *owner = modules[i];
            }
        }
    }
    return found;
}

static const char *
directive_suggest(const char *name)
{
    const char *best = NULL;
    size_t bestd = (size_t)-1, i, j, len = strlen(name);

    for (i = 0; i < nmodules; i++)
        for (j = 0; j < modules[i]->ndirectives; j++)
            if (conf_suggestable(name, len, modules[i]->directives[j].name, &bestd))
                best = modules[i]->directives[j].name;
    if (conf_suggestable(name, len, "include", &bestd))
        best = "include";
    return best;
}

/* "at the top level or in a 'route' block" */
static void
describe_ctx(unsigned where, char *out, size_t len)
{
    static const struct {
        unsigned ctx;
        const char *text;
    } names[] = {
        {CONF_CTX_MAIN, "at the top level"},
        {CONF_CTX_ORIGIN, "in an 'origin' block"},
        {CONF_CTX_SITE, "in a 'site' block"},
        {CONF_CTX_ROUTE, "in a 'route' block"},
    };
    size_t i, used = 0;

    out[0] = '\0';
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int n;
        if ((where & names[i].ctx) == 0)
            continue;
        n = snprintf(out + used, len - used, "%s%s", used ? " or " : "", names[i].text);
        if (n < 0 || (size_t)n >= len - used)
            return;
        used += (size_t)n;
    }
}

/* ---- walking the tree ----------------------------------------------------------------------- */

static void **
mod_slots(enum conf_ctx ctx, void *obj)
{
    switch (ctx) {
    case CONF_CTX_MAIN: return ((struct conf *)obj)->mod;
    case CONF_CTX_ORIGIN: return ((struct conf_origin *)obj)->mod;
    case CONF_CTX_SITE: return ((struct conf_site *)obj)->mod;
    case CONF_CTX_ROUTE: return ((struct conf_route *)obj)->mod;
    }
    return NULL;
}

static int
check_shape(const struct conf_node *blk, size_t i, const struct conf_directive *d,
            struct conf_err *err)
{
    const struct conf_node *c = &blk->children[i];
    size_t j;

    if ((d->flags & CONF_F_BLOCK) && !c->block)
        return conf_errf(err, &c->pos, "'%s' expects a { } block", c->name);
    if (!(d->flags & CONF_F_BLOCK) && c->block)
        return conf_errf(err, &c->pos, "'%s' does not take a { } block (expected ';')", c->name);
    if (c->nargs < (size_t)(d->min_args < 0 ? 0 : d->min_args) ||
        (d->max_args != CONF_ARGS_ANY && c->nargs > (size_t)d->max_args)) {
        if (d->expects != NULL)
            return conf_errf(err, &c->pos, "'%s' expects %s", c->name, d->expects);
        return conf_errf(err, &c->pos, "'%s' has the wrong number of arguments", c->name);
    }
    if (d->flags & CONF_F_UNIQUE) {
        for (j = 0; j < i; j++) {
            const struct conf_node *p = &blk->children[j];
            if (strcmp(p->name, c->name) == 0)
                return conf_errf(err, &c->pos, "'%s' is duplicate (first set at %s:%u)", c->name,
                                 p->pos.file, (unsigned)p->pos.line);
        }
    }
    return 0;
}

static int
walk(struct conf_build *b, const struct conf_node *blk, enum conf_ctx ctx, void *obj,
     struct conf_err *err)
{
    size_t i;

    for (i = 0; i < blk->nchildren; i++) {
        const struct conf_node *c = &blk->children[i];
        const struct conf_module *owner = NULL;
        const struct conf_directive *d;
        unsigned where;
        char text[160];

        d = directive_find(c->name, ctx, &where, &owner);
        if (where == 0) {
            const char *s = directive_suggest(c->name);
            if (s != NULL)
                return conf_errf(err, &c->pos, "unknown directive '%s' (did you mean '%s'?)",
                                 c->name, s);
            return conf_errf(err, &c->pos, "unknown directive '%s'", c->name);
        }
        if (d == NULL) {
            describe_ctx(where, text, sizeof(text));
            return conf_errf(err, &c->pos, "'%s' is not allowed here (it belongs %s)", c->name,
                             text);
        }
        if (check_shape(blk, i, d, err) < 0)
            return -1;
        if (d->set(b, c, obj, err) < 0)
            return -1;
    }
    return 0;
}

int
conf_build_enter(struct conf_build *b, const struct conf_node *n, enum conf_ctx ctx, void *obj,
                 struct conf_err *err)
{
    void **slots = mod_slots(ctx, obj);
    size_t i;

    for (i = 0; i < nmodules; i++)
        if (modules[i]->create != NULL)
            slots[modules[i]->index] = modules[i]->create(b, ctx, obj);
    return walk(b, n, ctx, obj, err);
}

static int
finish_one(struct conf_build *b, enum conf_ctx ctx, void *obj, void **outer, struct conf_err *err)
{
    size_t i;

    for (i = 0; i < nmodules; i++) {
        struct conf_module *m = modules[i];
        if (m->finish != NULL &&
            m->finish(b, ctx, obj, outer != NULL ? outer[m->index] : NULL, err) < 0)
            return -1;
    }
    return 0;
}

/* Outermost first, so inheritance sees finished outer values. */
static int
finish_all(struct conf_build *b, struct conf_err *err)
{
    struct conf *c = b->conf;
    size_t i, j;

    if (finish_one(b, CONF_CTX_MAIN, c, NULL, err) < 0)
        return -1;
    for (i = 0; i < c->norigins; i++)
        if (finish_one(b, CONF_CTX_ORIGIN, &c->origins[i], c->mod, err) < 0)
            return -1;
    for (i = 0; i < c->nsites; i++) {
        struct conf_site *s = &c->sites[i];
        if (finish_one(b, CONF_CTX_SITE, s, c->mod, err) < 0)
            return -1;
        for (j = 0; j < s->nroutes; j++)
            if (finish_one(b, CONF_CTX_ROUTE, &s->routes[j], s->mod, err) < 0)
                return -1;
    }
    return 0;
}

/* ---- snapshots ------------------------------------------------------------------------------ */

static void
conf_destroy(struct conf *c)
{
    struct conf_tree *t = c->_tree;
    struct conf_arena *a = c->_arena;
    size_t i;

    for (i = nmodules; i > 0; i--)
        if (modules[i - 1]->release != NULL)
            modules[i - 1]->release(c);
    /* c itself lives in the arena */
    conf_tree_free(t);
    conf_arena_free(a);
}

/* Takes ownership of the tree. */
static struct conf *
build(struct conf_tree *t, const char *path, struct conf_err *err)
{
    struct conf_build b = {.tree = t};
    struct conf *c;

    b.arena = conf_arena_new();
    if (b.arena == NULL)
        goto oom;
    c = conf_arena_alloc(b.arena, sizeof(*c));
    if (c == NULL) {
        conf_arena_free(b.arena);
        goto oom;
    }
    c->_arena = b.arena;
    c->_tree = t;
    c->_refs = 1;
    b.conf = c;
    c->path = conf_arena_strndup(b.arena, path, strlen(path));
    if (c->path == NULL) {
        conf_errf(err, NULL, "%s: out of memory", path);
        goto fail;
    }
    if (conf_build_enter(&b, conf_tree_root(t), CONF_CTX_MAIN, c, err) < 0 ||
        finish_all(&b, err) < 0 || conf_core_validate(&b, err) < 0 || conf_match_build(&b, err) < 0)
        goto fail;
    return c;
fail:
    conf_destroy(c);
    return NULL;
oom:
    conf_errf(err, NULL, "%s: out of memory", path);
    conf_tree_free(t);
    return NULL;
}

struct conf *
conf_load(const char *path, struct conf_err *err)
{
    struct conf_tree *t;

    pthread_once(&core_once, core_register);
    t = conf_tree_parse_file(path, err);
    if (t == NULL)
        return NULL;
    return build(t, path, err);
}

struct conf *
conf_load_string(const char *name, const char *text, size_t len, struct conf_err *err)
{
    struct conf_tree *t;

    pthread_once(&core_once, core_register);
    t = conf_tree_parse_string(name, text, len, err);
    if (t == NULL)
        return NULL;
    return build(t, name != NULL ? name : "<string>", err);
}

struct conf *
conf_ref(struct conf *c)
{
    __atomic_fetch_add(&c->_refs, 1, __ATOMIC_RELAXED);
    return c;
}

void
conf_unref(struct conf *c)
{
    if (c == NULL)
        return;
    if (__atomic_sub_fetch(&c->_refs, 1, __ATOMIC_ACQ_REL) == 0)
        conf_destroy(c);
}

void *
conf_alloc(struct conf_build *b, size_t n)
{
    return conf_arena_alloc(b->arena, n);
}

char *
conf_strndup(struct conf_build *b, const char *s, size_t n)
{
    return conf_arena_strndup(b->arena, s, n);
}

struct conf *
conf_build_conf(struct conf_build *b)
{
    return b->conf;
}

void
conf_route_set_handled(struct conf_route *r)
{
    r->_handled = true;
}
