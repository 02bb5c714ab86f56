/*
 * conf — private declarations shared by the files of the conf module.
 * Nothing outside conf/ includes this header.
 */
#ifndef EDGE_CONF_INT_H
#define EDGE_CONF_INT_H

#include "conf/conf.h"

/* ---- arena (arena.c) -------------------------------------------------------------- */

/* Chunked bump allocator; everything it hands out is freed at once. */
struct conf_arena;
struct conf_arena *conf_arena_new(void);
void *conf_arena_alloc(struct conf_arena *a, size_t n); /* zeroed, max-aligned; NULL on OOM */
char *conf_arena_strndup(struct conf_arena *a, const char *s, size_t n);
void conf_arena_free(struct conf_arena *a);

/* String -> pointer map in an arena, sized once (open addressing): keeps
 * duplicate checks and name lookups linear on big confs. */
struct conf_strmap_ent {
    const char *key;
    size_t len;
    const void *val;
};
struct conf_strmap {
    struct conf_strmap_ent *t;
    size_t cap; /* power of two, > 2 * the most entries put */
};
int conf_strmap_init(struct conf_arena *a, struct conf_strmap *m, size_t n); /* 0 / -1 OOM */
const void *conf_strmap_get(const struct conf_strmap *m, const char *key, size_t len);
/* Adds key (not copied) unless present; returns the value already there, or NULL. */
const void *conf_strmap_put(struct conf_strmap *m, const char *key, size_t len, const void *val);

/* ---- helpers (arena.c) ------------------------------------------------------------- */

/* Levenshtein distance of two strings, capped: returns cap + 1 once the
 * distance is known to exceed cap. */
size_t conf_edit_distance(const char *a, size_t alen, const char *b, size_t blen, size_t cap);
/* True when 'cand' is close enough to 'word' to be suggested. */
bool conf_suggestable(const char *word, size_t wlen, const char *cand, size_t *best);
/* strerror_r wrapper that always returns a message. */
const char *conf_strerror(int e, char *buf, size_t len);

/* ---- the snapshot under construction (registry.c) ---------------------------------- */

struct conf_build {
    struct conf_arena *arena;
    struct conf *conf;
    struct conf_tree *tree;
};

/* Runs every module's create hook for a new context object, then applies the
 * directives in n's children to it. Block directive handlers call this. */
int conf_build_enter(struct conf_build *b, const struct conf_node *n, enum conf_ctx ctx, void *obj,
                     struct conf_err *err);

/* Index of the core module in mod[] (always 0: registered first). */
#define CONF_CORE_INDEX 0

/* ---- core module (core.c) ---------------------------------------------------------- */

extern struct conf_module conf_core_module;
/* Checks run after every module's finish hooks (routes without a handler). */
int conf_core_validate(struct conf_build *b, struct conf_err *err);
/* Frees what the core keeps outside the arena (compiled regexes). */
void conf_core_release(struct conf *c);

/* ---- matching (match.c) ------------------------------------------------------------ */

/* Compiles a regex route's pattern into r->regex; 0/-1 with err at a's position. */
int conf_match_compile(struct conf_route *r, const struct conf_arg *a, struct conf_err *err);
void conf_match_free_regex(struct conf_route *r);
/* Builds the host index of c and the route index of every site, in the arena. */
int conf_match_build(struct conf_build *b, struct conf_err *err);
/* Lower-cases and checks a 'site' host ("*", "*.suffix" or a name); returns
 * the normalised length (trailing dot dropped) or 0 when invalid. */
size_t conf_match_host_norm(const char *in, size_t len, char *out, size_t cap);
/* RFC 1123 host name syntax (labels of letters, digits and '-', <= 253 bytes). */
bool conf_hostname_valid(const char *s, size_t len);

#endif /* EDGE_CONF_INT_H */
