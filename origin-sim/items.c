/*
 * The items API: an in-memory table store shaped like DynamoDB.
 *
 *   PUT    /api/tables/T/items/PK[/SK]   body = JSON object; If-Match / If-None-Match: *
 *   GET    /api/tables/T/items/PK[/SK]
 *   DELETE /api/tables/T/items/PK[/SK]   If-Match
 *   GET    /api/tables/T/items/PK?begins_with=&limit=&cursor=   query a partition
 *
 * Storage: a hash table of partitions keyed by (table, pk); each partition
 * holds its items in an array sorted by sort key (byte order), so a get is a
 * binary search and a query is a binary search plus a scan. Inserting out of
 * order moves the tail of one partition's array (pointers-sized entries).
 */
#include "origin-sim/osim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#define ITEMS_KEY_MAX 1024
#define ITEMS_LIMIT_DEFAULT 100
#define ITEMS_LIMIT_MAX 1000

struct osim_item {
    char *sk; /* "" for an item without a sort key */
    size_t sklen;
    uint64_t version;
    json_t *obj; /* owned reference */
};

struct osim_part {
    struct osim_part *next; /* hash chain */
    uint64_t hash;
    char *key; /* table '\0' pk */
    size_t klen, tlen;
    struct osim_item *items; /* sorted by sk */
    size_t n, cap;
};

struct osim_items {
    struct osim_part **buckets;
    size_t nbuckets, nparts;
};

struct osim_items *
osim_items_new(void)
{
    struct osim_items *it = calloc(1, sizeof(*it));

    if (it == NULL)
        return NULL;
    it->nbuckets = 1024;
    it->buckets = calloc(it->nbuckets, sizeof(*it->buckets));
    if (it->buckets == NULL) {
        free(it);
        return NULL;
    }
    return it;
}

static void
part_free(struct osim_part *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].sk);
        json_decref(p->items[i].obj);
    }
    free(p->items);
    free(p->key);
    free(p);
}

void
osim_items_free(struct osim_items *it)
{
    if (it == NULL)
        return;
    for (size_t b = 0; b < it->nbuckets; b++) {
        struct osim_part *p = it->buckets[b];
        while (p != NULL) {
            struct osim_part *next = p->next;
            part_free(p);
            p = next;
        }
    }
    free(it->buckets);
    free(it);
}

static uint64_t
fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static struct osim_part *
part_find(struct osim_items *it, const char *key, size_t klen, uint64_t h)
{
    for (struct osim_part *p = it->buckets[h & (it->nbuckets - 1)]; p != NULL; p = p->next)
        if (p->hash == h && p->klen == klen && memcmp(p->key, key, klen) == 0)
            return p;
    return NULL;
}

static void
items_grow(struct osim_items *it)
{
    size_t nb = it->nbuckets * 2;
    struct osim_part **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return; /* keep the longer chains */
    for (size_t i = 0; i < it->nbuckets; i++) {
        struct osim_part *p = it->buckets[i];
        while (p != NULL) {
            struct osim_part *next = p->next;
            p->next = b[p->hash & (nb - 1)];
            b[p->hash & (nb - 1)] = p;
            p = next;
        }
    }
    free(it->buckets);
    it->buckets = b;
    it->nbuckets = nb;
}

static struct osim_part *
part_create(struct osim_items *it, const char *key, size_t klen, size_t tlen, uint64_t h)
{
    struct osim_part *p = calloc(1, sizeof(*p));

    if (p == NULL || (p->key = malloc(klen)) == NULL) {
        free(p);
        return NULL;
    }
    memcpy(p->key, key, klen);
    p->klen = klen;
    p->tlen = tlen;
    p->hash = h;
    if (it->nparts >= it->nbuckets)
        items_grow(it);
    p->next = it->buckets[h & (it->nbuckets - 1)];
    it->buckets[h & (it->nbuckets - 1)] = p;
    it->nparts++;
    return p;
}

static void
part_remove(struct osim_items *it, struct osim_part *p)
{
    struct osim_part **pp = &it->buckets[p->hash & (it->nbuckets - 1)];

    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    it->nparts--;
    part_free(p);
}

static int
skcmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r != 0)
        return r;
    return alen < blen ? -1 : alen > blen;
}

/* First index whose sort key is >= (sk, len). */
static size_t
lower_bound(const struct osim_part *p, const char *sk, size_t len)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (skcmp(p->items[mid].sk, p->items[mid].sklen, sk, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct osim_item *
item_find(struct osim_part *p, const char *sk, size_t len)
{
    size_t i;

    if (p == NULL)
        return NULL;
    i = lower_bound(p, sk, len);
    if (i < p->n && skcmp(p->items[i].sk, p->items[i].sklen, sk, len) == 0)
        return &p->items[i];
    return NULL;
}

/* ---- HTTP side ---- */

struct key {
    char buf[3 * ITEMS_KEY_MAX]; /* table '\0' pk, then sk */
    size_t tlen, pklen, sklen;
    const char *table, *pk, *sk;
    bool has_sk;
};

static void
reply_json(struct osim_conn *c, int status, json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

    json_decref(j);
    if (s == NULL) {
        osim_reply_text(c, 500, "out of memory\n");
        return;
    }
    osim_reply(c, status, "application/json", s, strlen(s));
    free(s);
}

static void
reply_error(struct osim_conn *c, int status, const char *error, const char *reason)
{
    json_t *j = json_pack("{s:s}", "error", error);
    if (j != NULL && reason != NULL)
        json_object_set_new(j, "reason", json_string(reason));
    reply_json(c, status, j);
}

/* Decodes one path segment into k->buf at *o; 0 or -1. */
static int
take_segment(struct key *k, size_t *o, const char *s, size_t len, size_t *outlen)
{
    long n = osim_pct_decode(s, len, k->buf + *o, ITEMS_KEY_MAX, false);

    if (n <= 0)
        return -1;
    /* only UTF-8 can be echoed as a JSON string */
    json_t *probe = json_stringn(k->buf + *o, (size_t)n);
    if (probe == NULL)
        return -1;
    json_decref(probe);
    *outlen = (size_t)n;
    *o += (size_t)n + 1; /* keep the NUL */
    return 0;
}

/* "/api/tables/T/items/PK[/SK]" */
static int
parse_key(struct key *k, const char *path, size_t plen)
{
    const char *seg[5];
    size_t seglen[5], nseg = 0, i = 5, o = 0; /* skip "/api/" */

    while (i <= plen && nseg < 5) {
        size_t e = i;
        while (e < plen && path[e] != '/')
            e++;
        seg[nseg] = path + i;
        seglen[nseg++] = e - i;
        i = e + 1;
    }
    if (i <= plen || nseg < 4 || seglen[0] != 6 || memcmp(seg[0], "tables", 6) != 0 ||
        seglen[2] != 5 || memcmp(seg[2], "items", 5) != 0)
        return -1;
    if (take_segment(k, &o, seg[1], seglen[1], &k->tlen) < 0)
        return -1;
    k->table = k->buf;
    k->pk = k->buf + o;
    if (take_segment(k, &o, seg[3], seglen[3], &k->pklen) < 0)
        return -1;
    k->has_sk = nseg == 5;
    k->sk = k->buf + o;
    k->sklen = 0;
    k->buf[o] = '\0';
    if (k->has_sk && take_segment(k, &o, seg[4], seglen[4], &k->sklen) < 0)
        return -1;
    return 0;
}

static json_t *
envelope(const struct key *k, const struct osim_item *item)
{
    json_t *j = json_object();

    if (j == NULL)
        return NULL;
    json_object_set_new(j, "table", json_stringn(k->table, k->tlen));
    json_object_set_new(j, "pk", json_stringn(k->pk, k->pklen));
    if (item->sklen > 0)
        json_object_set_new(j, "sk", json_stringn(item->sk, item->sklen));
    json_object_set_new(j, "version", json_integer((json_int_t)item->version));
    json_object_set_new(j, "item", json_incref(item->obj));
    return j;
}

static void
set_etag(struct osim_conn *c, uint64_t version)
{
    osim_resp_header(c, "ETag", "\"v%llu\"", (unsigned long long)version);
}

/* RFC 9110 If-Match: '*' or a strong match of the current version. */
static bool
if_match_ok(struct osim_conn *c, const struct osim_item *cur)
{
    size_t vlen;
    const char *v = osim_req_header(c, "If-Match", &vlen);
    char etag[32];

    if (v == NULL)
        return true;
    if (cur == NULL)
        return false;
    int n = snprintf(etag, sizeof(etag), "\"v%llu\"", (unsigned long long)cur->version);
    return osim_etag_list_match_strong(v, vlen, etag, (size_t)n);
}

static bool
if_none_match_hit(struct osim_conn *c, const struct osim_item *cur)
{
    size_t vlen;
    const char *v = osim_req_header(c, "If-None-Match", &vlen);
    char etag[32];

    if (v == NULL || cur == NULL)
        return false;
    int n = snprintf(etag, sizeof(etag), "\"v%llu\"", (unsigned long long)cur->version);
    return osim_etag_list_match(v, vlen, etag, (size_t)n);
}

static void
reply_precondition(struct osim_conn *c, const struct osim_item *cur)
{
    json_t *j = json_pack("{s:s}", "error", "precondition_failed");
    if (j != NULL && cur != NULL) {
        json_object_set_new(j, "version", json_integer((json_int_t)cur->version));
        set_etag(c, cur->version);
    }
    reply_json(c, 412, j);
}

static void
do_put(struct osim_conn *c, struct osim_items *it, const struct key *k, struct osim_part *p,
       uint64_t h)
{
    json_error_t jerr;
    size_t blen = evbuffer_get_length(c->body);
    const char *body = (const char *)evbuffer_pullup(c->body, -1);
    struct osim_item *cur = item_find(p, k->sk, k->sklen);
    json_t *obj = json_loadb(body != NULL ? body : "", blen, JSON_REJECT_DUPLICATES, &jerr);
    bool created = cur == NULL;

    if (obj == NULL || !json_is_object(obj)) {
        char reason[256];
        if (obj == NULL)
            snprintf(reason, sizeof(reason), "line %d column %d: %s", jerr.line, jerr.column,
                     jerr.text);
        else
            snprintf(reason, sizeof(reason), "the body must be a JSON object");
        json_decref(obj);
        reply_error(c, 400, "bad_json", reason);
        return;
    }
    if (if_none_match_hit(c, cur) || !if_match_ok(c, cur)) {
        json_decref(obj);
        reply_precondition(c, cur);
        return;
    }
    if (cur != NULL) {
        json_decref(cur->obj);
        cur->obj = obj;
        cur->version++;
    } else {
        if (p == NULL && (p = part_create(it, k->buf, k->tlen + 1 + k->pklen, k->tlen, h)) == NULL)
            goto oom;
        if (p->n == p->cap) {
            size_t ncap = p->cap ? p->cap * 2 : 4;
            struct osim_item *ni = realloc(p->items, ncap * sizeof(*ni));
            if (ni == NULL)
                goto oom;
            p->items = ni;
            p->cap = ncap;
        }
        char *sk = malloc(k->sklen + 1);
        if (sk == NULL)
            goto oom;
        memcpy(sk, k->sk, k->sklen + 1);
        size_t i = lower_bound(p, k->sk, k->sklen);
        memmove(&p->items[i + 1], &p->items[i], (p->n - i) * sizeof(p->items[0]));
        p->items[i] = (struct osim_item){.sk = sk, .sklen = k->sklen, .version = 1, .obj = obj};
        p->n++;
        cur = &p->items[i];
    }
    set_etag(c, cur->version);
    reply_json(c, created ? 201 : 200, envelope(k, cur));
    return;
oom:
    json_decref(obj);
    if (p != NULL && p->n == 0)
        part_remove(it, p);
    reply_error(c, 500, "out_of_memory", NULL);
}

static void
do_delete(struct osim_conn *c, struct osim_items *it, const struct key *k, struct osim_part *p)
{
    struct osim_item *cur = item_find(p, k->sk, k->sklen);

    if (!if_match_ok(c, cur)) {
        reply_precondition(c, cur);
        return;
    }
    if (cur == NULL) {
        reply_error(c, 404, "not_found", NULL);
        return;
    }
    json_t *j = envelope(k, cur);
    if (j != NULL)
        json_object_set_new(j, "deleted", json_true());
    size_t i = (size_t)(cur - p->items);
    free(cur->sk);
    json_decref(cur->obj);
    memmove(&p->items[i], &p->items[i + 1], (p->n - i - 1) * sizeof(p->items[0]));
    p->n--;
    if (p->n == 0)
        part_remove(it, p);
    reply_json(c, 200, j);
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

static void
do_query(struct osim_conn *c, const struct key *k, struct osim_part *p, const char *q, size_t qlen)
{
    char prefix[ITEMS_KEY_MAX], cur[2 * ITEMS_KEY_MAX + 2], after[ITEMS_KEY_MAX], v[32];
    size_t plen = 0, clen = 0, alen = 0, vlen;
    uint64_t limit = ITEMS_LIMIT_DEFAULT;
    int rc;

    if (osim_query_get(q, qlen, "begins_with", prefix, sizeof(prefix), &plen) < 0) {
        reply_error(c, 400, "bad_request", "begins_with is badly encoded or too long");
        return;
    }
    rc = osim_query_get(q, qlen, "limit", v, sizeof(v), &vlen);
    if (rc < 0 || (rc == 1 && (osim_parse_u64(v, vlen, &limit) < 0 || limit == 0))) {
        reply_error(c, 400, "bad_request", "limit must be a positive integer");
        return;
    }
    if (limit > ITEMS_LIMIT_MAX)
        limit = ITEMS_LIMIT_MAX;
    rc = osim_query_get(q, qlen, "cursor", cur, sizeof(cur), &clen);
    if (rc == 1 && clen > 0) {
        /* cursor = "c" + hex(last returned sort key) */
        if (cur[0] != 'c' || clen % 2 != 1) {
            reply_error(c, 400, "bad_request", "bad cursor");
            return;
        }
        for (size_t i = 1; i < clen; i += 2) {
            int hi = hexval(cur[i]), lo = hexval(cur[i + 1]);
            if (hi < 0 || lo < 0) {
                reply_error(c, 400, "bad_request", "bad cursor");
                return;
            }
            after[alen++] = (char)(hi * 16 + lo);
        }
    } else if (rc < 0) {
        reply_error(c, 400, "bad_request", "bad cursor");
        return;
    }

    json_t *arr = json_array();
    json_t *root = json_object();
    size_t i = 0, count = 0;
    if (arr == NULL || root == NULL) {
        json_decref(arr);
        json_decref(root);
        reply_error(c, 500, "out_of_memory", NULL);
        return;
    }
    if (p != NULL) {
        i = lower_bound(p, prefix, plen);
        if (rc == 1 && clen > 0) {
            size_t j = lower_bound(p, after, alen);
            if (j < p->n && skcmp(p->items[j].sk, p->items[j].sklen, after, alen) == 0)
                j++;
            if (j > i)
                i = j;
        }
        for (; i < p->n && count < limit; i++) {
            const struct osim_item *item = &p->items[i];
            if (item->sklen < plen || memcmp(item->sk, prefix, plen) != 0)
                break;
            json_array_append_new(arr, envelope(k, item));
            count++;
        }
    }
    json_object_set_new(root, "items", arr);
    json_object_set_new(root, "count", json_integer((json_int_t)count));
    if (p != NULL && count > 0 && i < p->n && p->items[i].sklen >= plen &&
        memcmp(p->items[i].sk, prefix, plen) == 0) {
        const struct osim_item *last = &p->items[i - 1];
        char *hex = malloc(2 * last->sklen + 2);
        if (hex != NULL) {
            static const char digits[] = "0123456789abcdef";
            hex[0] = 'c';
            for (size_t b = 0; b < last->sklen; b++) {
                hex[1 + 2 * b] = digits[(uint8_t)last->sk[b] >> 4];
                hex[2 + 2 * b] = digits[(uint8_t)last->sk[b] & 15];
            }
            hex[1 + 2 * last->sklen] = '\0';
            json_object_set_new(root, "cursor", json_string(hex));
            free(hex);
        }
    }
    reply_json(c, 200, root);
}

void
osim_items_handle(struct osim_conn *c, const char *path, size_t plen, const char *query,
                  size_t qlen)
{
    struct osim_items *it = c->srv->items;
    struct key k;
    struct osim_part *p;
    uint64_t h;

    if (parse_key(&k, path, plen) < 0) {
        reply_error(c, 404, "not_found",
                    "paths are /api/tables/T/items/PK[/SK] (UTF-8, non-empty segments)");
        return;
    }
    h = fnv1a(k.buf, k.tlen + 1 + k.pklen);
    p = part_find(it, k.buf, k.tlen + 1 + k.pklen, h);
    switch (c->method) {
    case HTTP_GET:
    case HTTP_HEAD: {
        struct osim_item *cur = item_find(p, k.sk, k.sklen);
        /* PK alone is a query unless a PK-only item exists and no query string is given */
        if (!k.has_sk && (qlen > 0 || cur == NULL)) {
            do_query(c, &k, p, query, qlen);
            return;
        }
        if (cur == NULL) {
            reply_error(c, 404, "not_found", NULL);
            return;
        }
        set_etag(c, cur->version);
        if (if_none_match_hit(c, cur)) {
            osim_reply(c, 304, NULL, NULL, 0);
            return;
        }
        reply_json(c, 200, envelope(&k, cur));
        return;
    }
    case HTTP_PUT: do_put(c, it, &k, p, h); return;
    case HTTP_DELETE: do_delete(c, it, &k, p); return;
    default:
        osim_resp_header(c, "Allow", "GET, HEAD, PUT, DELETE");
        reply_error(c, 405, "method_not_allowed", NULL);
        return;
    }
}
