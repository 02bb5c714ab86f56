/*
 * The conf arena: a chunked bump allocator. A tree or a snapshot lives in one
 * arena and is freed in one shot. Also small string helpers shared by the
 * module (edit distance for "did you mean", strerror).
 */
#include "conf/conf-int.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (16 * 1024)
#define ARENA_ALIGN (alignof(max_align_t))

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

struct conf_arena {
    struct arena_chunk *head;
};

struct conf_arena *
conf_arena_new(void)
{
    return calloc(1, sizeof(struct conf_arena));
}

void *
conf_arena_alloc(struct conf_arena *a, size_t n)
{
    struct arena_chunk *c = a->head;
    size_t need = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    void *p;

    if (need < n)
        return NULL;
    if (need == 0)
        need = ARENA_ALIGN;
    if (c == NULL || c->cap - c->used < need) {
        size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
        if (cap > SIZE_MAX - sizeof(*c))
            return NULL;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->used = 0;
        c->cap = cap;
        /* a big one-off block goes behind the current chunk so the rest of
         * the current chunk stays usable */
        if (a->head != NULL && need > ARENA_CHUNK) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    p = c->data + c->used;
    c->used += need;
    memset(p, 0, n);
    return p;
}

char *
conf_arena_strndup(struct conf_arena *a, const char *s, size_t n)
{
    char *p;

    if (n == SIZE_MAX)
        return NULL;
    p = conf_arena_alloc(a, n + 1);
    if (p == NULL)
        return NULL;
    if (n != 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void
conf_arena_free(struct conf_arena *a)
{
    struct arena_chunk *c, *next;

    if (a == NULL)
        return;
    for (c = a->head; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

/* ---- string map ---------------------------------------------------------------------------- */

static uint64_t
hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

int
conf_strmap_init(struct conf_arena *a, struct conf_strmap *m, size_t n)
{
    size_t cap = 8;

    while (cap <= 2 * n) {
        if (cap > SIZE_MAX / 4 / sizeof(*m->t))
            return -1;
        cap *= 2;
    }
    m->t = conf_arena_alloc(a, cap * sizeof(*m->t));
    m->cap = m->t != NULL ? cap : 0;
    return m->t != NULL ? 0 : -1;
}

static struct conf_strmap_ent *
strmap_slot(const struct conf_strmap *m, const char *key, size_t len)
{
    size_t i = (size_t)hash_bytes(key, len) & (m->cap - 1);

    for (;;) {
        struct conf_strmap_ent *e = &m->t[i];
        if (e->key == NULL || (e->len == len && memcmp(e->key, key, len) == 0))
            return e;
        i = (i + 1) & (m->cap - 1);
    }
}

const void *
conf_strmap_get(const struct conf_strmap *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return NULL;
    return strmap_slot(m, key, len)->val;
}

const void *
conf_strmap_put(struct conf_strmap *m, const char *key, size_t len, const void *val)
{
    struct conf_strmap_ent *e = strmap_slot(m, key, len);

    if (e->key != NULL)
        return e->val;
    e->key = key;
    e->len = len;
    e->val = val;
    return NULL;
}

/* ---- helpers --------------------------------------------------------------------------- */

static char
lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

size_t
conf_edit_distance(const char *a, size_t alen, const char *b, size_t blen, size_t cap)
{
    size_t row[64];
    size_t i, j;

    if (alen >= 64 || blen >= 64)
        return cap + 1;
    if ((alen > blen ? alen - blen : blen - alen) > cap)
        return cap + 1;
    for (j = 0; j <= blen; j++)
        row[j] = j;
    for (i = 1; i <= alen; i++) {
        size_t diag = row[0], rowmin;
        row[0] = i;
        rowmin = row[0];
        for (j = 1; j <= blen; j++) {
            size_t up = row[j];
            size_t best = diag + (lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
            if (best < rowmin)
                rowmin = best;
        }
        if (rowmin > cap)
            return cap + 1;
    }
    return row[blen] > cap ? cap + 1 : row[blen];
}

bool
conf_suggestable(const char *word, size_t wlen, const char *cand, size_t *best)
{
    /* short words only tolerate one edit, else everything looks alike */
    size_t cap = wlen <= 3 ? 1 : 2;
    size_t d = conf_edit_distance(word, wlen, cand, strlen(cand), cap);

    if (d > cap || d >= *best)
        return false;
    *best = d;
    return true;
}

const char *
conf_strerror(int e, char *buf, size_t len)
{
    /* GNU strerror_r: returns a message, maybe not in buf */
    const char *s = strerror_r(e, buf, len);

    return s != NULL ? s : "unknown error";
}
