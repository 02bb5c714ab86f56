/*
 * Cache keys: the normalised default key, key templates, the object id
 * (SHA-256 truncated to 128 bits) and the Vary secondary key.
 */
#include "cache/cache.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/cache-int.h"

#define QUERY_PARAMS_MAX 128
#define VARY_NAMES_MAX 32
#define TPL_PARTS_MAX 64
#define TPL_MAX 1024

/* ---- a bounded output buffer ----------------------------------------------------------------- */

struct kbuf {
    char *p;
    size_t len, cap; /* cap includes room for the NUL */
    bool over;
};

static void
kb_put(struct kbuf *b, const char *s, size_t n)
{
    if (b->over || b->cap - b->len < n + 1) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
kb_ch(struct kbuf *b, char c)
{
    kb_put(b, &c, 1);
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool
unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 6.2.2: %XX of an unreserved char decoded, other escapes upper-cased.
 * Text between escapes is copied in runs (this runs on every lookup). */
static void
kb_pct_norm(struct kbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *pct, *end = s + n;

    while ((pct = memchr(s, '%', (size_t)(end - s))) != NULL) {
        int hi, lo;
        size_t left = (size_t)(end - pct);
        kb_put(b, s, (size_t)(pct - s));
        if (left > 2 && (hi = hexval(pct[1])) >= 0 && (lo = hexval(pct[2])) >= 0) {
            unsigned char c = (unsigned char)(hi * 16 + lo);
            if (unreserved(c)) {
                kb_ch(b, (char)c);
            } else {
                char e[3] = {'%', hex[hi], hex[lo]};
                kb_put(b, e, 3);
            }
            s = pct + 3;
        } else {
            kb_ch(b, '%');
            s = pct + 1;
        }
    }
    kb_put(b, s, (size_t)(end - s));
}

/* s lower-cased (ASCII). */
static void
kb_lower(struct kbuf *b, const char *s, size_t n)
{
    size_t i;

    if (b->over || b->cap - b->len < n + 1) {
        b->over = true;
        return;
    }
    for (i = 0; i < n; i++)
        b->p[b->len + i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
    b->len += n;
    b->p[b->len] = '\0';
}

/* ---- default key pieces ---------------------------------------------------------------------- */

static bool
scheme_https(const struct cache_str *s)
{
    return cache_str_ieq(s->p, s->len, "https");
}

/* Lower-cased host without a default port or a trailing dot. */
static int
kb_host(struct kbuf *b, const struct cache_key_parts *parts)
{
    const char *h = parts->host.p;
    size_t n = parts->host.len, i, hl;
    const char *dflt = scheme_https(&parts->scheme) ? "443" : "80";

    if (h == NULL || n == 0)
        return CACHE_EINVAL;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@')
            return CACHE_EINVAL;
    }
    /* the port: after the last ':' unless it is inside an IPv6 literal */
    hl = n;
    for (i = n; i > 0; i--) {
        if (h[i - 1] == ']')
            break;
        if (h[i - 1] == ':') {
            hl = i - 1;
            break;
        }
    }
    if (hl < n && (hl + 1 == n || cache_str_ieq(h + hl + 1, n - hl - 1, dflt)))
        n = hl; /* "host:" or the scheme's default port */
    i = hl;
    if (hl > 1 && h[hl - 1] == '.')
        hl--;
    if (hl == 0)
        return CACHE_EINVAL;
    kb_lower(b, h, hl);
    if (i < n)
        kb_put(b, h + i, n - i);
    return 0;
}

static int
kb_scheme(struct kbuf *b, const struct cache_key_parts *parts)
{
    kb_put(b, scheme_https(&parts->scheme) ? "https" : "http",
           scheme_https(&parts->scheme) ? 5 : 4);
    return 0;
}

static int
kb_path(struct kbuf *b, const struct cache_key_parts *parts)
{
    if (parts->path.p == NULL || parts->path.len == 0 || parts->path.p[0] != '/')
        return CACHE_EINVAL;
    kb_pct_norm(b, parts->path.p, parts->path.len);
    return 0;
}

/* One query parameter: the raw text and its name part. */
struct qparam {
    const char *p;
    size_t len, nlen;
};

static bool
param_ignored(const struct cache_route *r, const struct qparam *q)
{
    size_t i;

    for (i = 0; r != NULL && i < r->n_ignore_query; i++)
        if (r->ignore_query[i].len == q->nlen && memcmp(r->ignore_query[i].p, q->p, q->nlen) == 0)
            return true;
    return false;
}

static int
qparam_cmp(const struct qparam *a, const struct qparam *b)
{
    size_t n = a->nlen < b->nlen ? a->nlen : b->nlen;
    int c = memcmp(a->p, b->p, n);

    if (c != 0)
        return c;
    return a->nlen < b->nlen ? -1 : a->nlen > b->nlen ? 1 : 0;
}

/* The normalised query: empty params dropped, ignore_query removed, sorted by
 * name (stable) with sort_query, escapes normalised. */
static int
kb_query(struct kbuf *b, const struct cache_route *r, const struct cache_key_parts *parts,
         bool qmark)
{
    struct qparam q[QUERY_PARAMS_MAX];
    const char *s = parts->query.p;
    size_t n = parts->query.len, i = 0, nq = 0, k;
    bool first = true;

    while (s != NULL && i < n) {
        size_t start = i, eq;
        while (i < n && s[i] != '&')
            i++;
        if (i > start) {
            if (nq == QUERY_PARAMS_MAX)
                return CACHE_ETOOBIG;
            q[nq].p = s + start;
            q[nq].len = i - start;
            for (eq = start; eq < i && s[eq] != '='; eq++)
                ;
            q[nq].nlen = eq - start;
            if (!param_ignored(r, &q[nq]))
                nq++;
        }
        i++;
    }
    if (r != NULL && r->sort_query) {
        /* insertion sort: stable, and nq is small */
        for (i = 1; i < nq; i++) {
            struct qparam t = q[i];
            for (k = i; k > 0 && qparam_cmp(&q[k - 1], &t) > 0; k--)
                q[k] = q[k - 1];
            q[k] = t;
        }
    }
    for (i = 0; i < nq; i++) {
        if (!first || qmark)
            kb_ch(b, first ? '?' : '&');
        first = false;
        kb_pct_norm(b, q[i].p, q[i].len);
    }
    return 0;
}

/* ---- templates ------------------------------------------------------------------------------- */

enum tpl_kind { TPL_LIT, TPL_SCHEME, TPL_HOST, TPL_PATH, TPL_QUERY, TPL_URI, TPL_ARG, TPL_HTTP };

struct tpl_part {
    enum tpl_kind kind;
    const char *s; /* literal text or the NAME of $arg_NAME / $http_NAME (in tpl->text) */
    size_t len;
};

struct cache_key_tpl {
    char *text;
    size_t nparts;
    struct tpl_part parts[TPL_PARTS_MAX];
};

static bool
name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static void
tpl_err(char *err, size_t errlen, size_t col, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "column %zu: %s", col, msg);
}

struct cache_key_tpl *
cache_key_tpl_new(const char *s, size_t len, char *err, size_t errlen)
{
    struct cache_key_tpl *t = NULL;
    size_t i = 0;

    if (len == 0 || len > TPL_MAX) {
        tpl_err(err, errlen, 1, len == 0 ? "empty key template" : "key template too long");
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL || (t->text = malloc(len + 1)) == NULL)
        goto oom;
    memcpy(t->text, s, len);
    t->text[len] = '\0';
    s = t->text;
    for (i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            tpl_err(err, errlen, i + 1, "control character in key template");
            goto fail;
        }
    }
    i = 0;
    while (i < len) {
        struct tpl_part *p;
        if (t->nparts == TPL_PARTS_MAX) {
            tpl_err(err, errlen, i + 1, "key template has too many parts");
            goto fail;
        }
        p = &t->parts[t->nparts];
        if (s[i] != '$' || (i + 1 < len && s[i + 1] == '$')) {
            size_t start = i;
            if (s[i] == '$') {
                /* "$$": a literal '$' */
                p->kind = TPL_LIT;
                p->s = s + i + 1;
                p->len = 1;
                i += 2;
                t->nparts++;
                continue;
            }
            while (i < len && s[i] != '$')
                i++;
            p->kind = TPL_LIT;
            p->s = s + start;
            p->len = i - start;
            t->nparts++;
            continue;
        }
        {
            size_t col = i + 1, ns, nl;
            bool braced = i + 1 < len && s[i + 1] == '{';
            i += braced ? 2 : 1;
            ns = i;
            while (i < len && name_char(s[i]))
                i++;
            nl = i - ns;
            if (braced) {
                if (i >= len || s[i] != '}') {
                    tpl_err(err, errlen, col, "unterminated '${' in key template");
                    goto fail;
                }
                i++;
            }
            if (nl == 0) {
                tpl_err(err, errlen, col, "'$' must be followed by a variable name (or '$$')");
                goto fail;
            }
            if (cache_str_ieq(s + ns, nl, "scheme"))
                p->kind = TPL_SCHEME;
            else if (cache_str_ieq(s + ns, nl, "host"))
                p->kind = TPL_HOST;
            else if (cache_str_ieq(s + ns, nl, "path"))
                p->kind = TPL_PATH;
            else if (cache_str_ieq(s + ns, nl, "query"))
                p->kind = TPL_QUERY;
            else if (cache_str_ieq(s + ns, nl, "uri"))
                p->kind = TPL_URI;
            else if (nl > 4 && strncasecmp(s + ns, "arg_", 4) == 0) {
                p->kind = TPL_ARG;
                ns += 4;
                nl -= 4;
            } else if (nl > 5 && strncasecmp(s + ns, "http_", 5) == 0) {
                p->kind = TPL_HTTP;
                ns += 5;
                nl -= 5;
            } else {
                tpl_err(err, errlen, col,
                        "unknown variable in key template (expected $scheme, $host, $path, "
                        "$query, $uri, $arg_NAME or $http_NAME)");
                goto fail;
            }
            p->s = s + ns;
            p->len = nl;
            t->nparts++;
        }
    }
    return t;
oom:
    tpl_err(err, errlen, 1, "out of memory");
fail:
    cache_key_tpl_free(t);
    return NULL;
}

void
cache_key_tpl_free(struct cache_key_tpl *t)
{
    if (t == NULL)
        return;
    free(t->text);
    free(t);
}

/* First raw value of query parameter name. */
static void
kb_arg(struct kbuf *b, const struct cache_key_parts *parts, const char *name, size_t nlen)
{
    const char *s = parts->query.p;
    size_t n = parts->query.len, i = 0;

    while (s != NULL && i < n) {
        size_t start = i;
        while (i < n && s[i] != '&')
            i++;
        if (i - start >= nlen && memcmp(s + start, name, nlen) == 0 &&
            (i - start == nlen || s[start + nlen] == '=')) {
            if (i - start > nlen)
                kb_put(b, s + start + nlen + 1, i - start - nlen - 1);
            return;
        }
        i++;
    }
}

/* Header NAME where '_' matches '-', any case. */
static bool
hdr_matches(const struct cache_hdr *h, const char *name, size_t nlen)
{
    size_t i;

    if (h->nlen != nlen)
        return false;
    for (i = 0; i < nlen; i++) {
        char a = h->name[i], c = name[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a + 32);
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c == '_')
            c = '-';
        if (a != c)
            return false;
    }
    return true;
}

static void
kb_http(struct kbuf *b, const struct cache_hdr *req, size_t nreq, const char *name, size_t nlen)
{
    bool first = true;
    size_t i;

    for (i = 0; i < nreq; i++) {
        const char *v = req[i].value;
        size_t vl = req[i].vlen;
        if (!hdr_matches(&req[i], name, nlen))
            continue;
        cache_trim(&v, &vl);
        if (!first)
            kb_ch(b, ',');
        first = false;
        kb_put(b, v, vl);
    }
}

int
cache_key_build(const struct cache_route *route, const struct cache_key_parts *parts,
                const struct cache_hdr *req, size_t nreq, char *out, size_t cap, size_t *outlen)
{
    struct kbuf b = {out, 0, cap, cap == 0};
    const struct cache_key_tpl *t = route != NULL ? route->key : NULL;
    size_t i;
    int rc = 0;

    if (cap > 0)
        out[0] = '\0';
    if (t == NULL) {
        if ((rc = kb_scheme(&b, parts)) < 0 || (kb_put(&b, "://", 3), 0) ||
            (rc = kb_host(&b, parts)) < 0 || (rc = kb_path(&b, parts)) < 0)
            goto out;
        rc = kb_query(&b, route, parts, true);
        goto out;
    }
    /* the same validity rules as the default key */
    if (parts->host.p == NULL || parts->host.len == 0 || parts->path.p == NULL ||
        parts->path.len == 0 || parts->path.p[0] != '/') {
        rc = CACHE_EINVAL;
        goto out;
    }
    for (i = 0; i < t->nparts && rc == 0; i++) {
        const struct tpl_part *p = &t->parts[i];
        switch (p->kind) {
        case TPL_LIT: kb_put(&b, p->s, p->len); break;
        case TPL_SCHEME: rc = kb_scheme(&b, parts); break;
        case TPL_HOST: rc = kb_host(&b, parts); break;
        case TPL_PATH: rc = kb_path(&b, parts); break;
        case TPL_QUERY: rc = kb_query(&b, route, parts, false); break;
        case TPL_URI:
            if ((rc = kb_path(&b, parts)) == 0)
                rc = kb_query(&b, route, parts, true);
            break;
        case TPL_ARG: kb_arg(&b, parts, p->s, p->len); break;
        case TPL_HTTP: kb_http(&b, req, nreq, p->s, p->len); break;
        }
    }
out:
    if (rc == 0 && b.over)
        rc = CACHE_ETOOBIG;
    if (rc == 0 && b.len == 0)
        rc = CACHE_EINVAL;
    /* keys are also C strings (index, prefix purges) and Cache-Status
     * values: no NUL or other control byte, whatever the request carried */
    for (i = 0; rc == 0 && i < b.len; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            rc = CACHE_EINVAL;
    if (rc < 0) {
        if (cap > 0)
            out[0] = '\0';
        *outlen = 0;
        return rc;
    }
    *outlen = b.len;
    return 0;
}

/* ---- ids ------------------------------------------------------------------------------------- */

/* SHA-256 is fetched from the default provider once: EVP_Digest(..., EVP_sha256())
 * fetches it again on every call (OpenSSL 3), which cost more instructions than
 * hashing a key. Each thread keeps one digest context (freed at thread exit). */
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha_md;
static pthread_key_t sha_key;
static bool sha_key_ok;

static void
sha_ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void
sha_init(void)
{
    sha_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha_key_ok = pthread_key_create(&sha_key, sha_ctx_free) == 0;
}

static EVP_MD_CTX *
sha_ctx(void)
{
    EVP_MD_CTX *ctx;

    pthread_once(&sha_once, sha_init);
    if (sha_md == NULL || !sha_key_ok)
        return NULL;
    ctx = pthread_getspecific(sha_key);
    if (ctx == NULL && (ctx = EVP_MD_CTX_new()) != NULL && pthread_setspecific(sha_key, ctx) != 0) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

void
cache_key_id(const char *key, size_t len, uint8_t id[CACHE_ID_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = sha_ctx();

    if (ctx != NULL && EVP_DigestInit_ex2(ctx, sha_md, NULL) == 1 &&
        EVP_DigestUpdate(ctx, key, len) == 1 && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 &&
        mdlen >= CACHE_ID_LEN) {
        memcpy(id, md, CACHE_ID_LEN);
        return;
    }
    /* no context (out of memory): the slow one-shot */
    if (EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < CACHE_ID_LEN) {
        /* cannot happen with a working libcrypto; never return an uninitialised id */
        memset(id, 0, CACHE_ID_LEN);
        return;
    }
    memcpy(id, md, CACHE_ID_LEN);
}

uint64_t
cache_variant_id(const char *vkey, size_t len)
{
    uint8_t id[CACHE_ID_LEN];
    uint64_t v = 0;
    size_t i;

    cache_key_id(vkey, len, id);
    for (i = 0; i < 8; i++)
        v = (v << 8) | id[i];
    return v == 0 ? 1 : v; /* 0 means "not a variant" */
}

void
cache_id_hex(const uint8_t id[CACHE_ID_LEN], char hex[CACHE_ID_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < CACHE_ID_LEN; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 15];
    }
    hex[CACHE_ID_HEX] = '\0';
}

/* ---- Vary ------------------------------------------------------------------------------------ */

struct vname {
    char s[64];
    size_t len;
};

static int
vname_cmp(const void *a, const void *b)
{
    const struct vname *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);

    return c != 0 ? c : x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
}

/* Collects names from "a, b" or "a\nb\n" text: lower-cased, sorted, unique. */
static int
vary_collect(const char *s, size_t n, struct vname *v, size_t *nv)
{
    size_t i = 0, k;

    while (i < n) {
        const char *tok;
        size_t tl;
        while (i < n && (s[i] == ',' || s[i] == '\n' || s[i] == ' ' || s[i] == '\t'))
            i++;
        tok = s + i;
        while (i < n && s[i] != ',' && s[i] != '\n')
            i++;
        tl = (size_t)(s + i - tok);
        cache_trim(&tok, &tl);
        if (tl == 0)
            continue;
        if (tl == 1 && tok[0] == '*')
            return CACHE_EINVAL;
        if (tl >= sizeof(v[0].s) || *nv == VARY_NAMES_MAX)
            return CACHE_ETOOBIG;
        for (k = 0; k < tl; k++) {
            if (!cache_is_tchar((unsigned char)tok[k]))
                return CACHE_EINVAL;
            v[*nv].s[k] = (char)((tok[k] >= 'A' && tok[k] <= 'Z') ? tok[k] + 32 : tok[k]);
        }
        v[*nv].len = tl;
        for (k = 0; k < *nv; k++)
            if (vname_cmp(&v[k], &v[*nv]) == 0)
                break;
        if (k == *nv)
            (*nv)++;
    }
    qsort(v, *nv, sizeof(*v), vname_cmp);
    return 0;
}

int
cache_vary_names(const struct cache_hdr *h, size_t n, char *out, size_t cap, size_t *outlen)
{
    struct vname v[VARY_NAMES_MAX];
    struct kbuf b = {out, 0, cap, cap == 0};
    size_t nv = 0, i;
    int rc;

    *outlen = 0;
    if (cap > 0)
        out[0] = '\0';
    for (i = 0; i < n; i++) {
        if (!cache_hdr_name_is(&h[i], "vary"))
            continue;
        if ((rc = vary_collect(h[i].value, h[i].vlen, v, &nv)) < 0)
            return rc;
    }
    for (i = 0; i < nv; i++) {
        kb_put(&b, v[i].s, v[i].len);
        kb_ch(&b, '\n');
    }
    if (b.over)
        return CACHE_ETOOBIG;
    *outlen = b.len;
    return 0;
}

/* Fields whose values compare without case (RFC 4647 language ranges, RFC
 * 9110 8.4.1 content codings), so their case is folded in a secondary key. */
static bool
vary_caseless(const struct vname *v)
{
    return (v->len == 15 && memcmp(v->s, "accept-language", 15) == 0) ||
           (v->len == 15 && memcmp(v->s, "accept-encoding", 15) == 0);
}

/* Appends a request field value normalised for a secondary key (RFC 9111
 * 4.1 allows normalising what is semantically the same): outside quoted
 * strings, whitespace next to a comma goes ("1 , 2" = "1,2": list syntax,
 * RFC 9110 5.6.1), other runs become one space, the ends are trimmed, and
 * the case is folded when fold is set; quoted strings are kept as sent. */
static void
kb_normalised(struct kbuf *b, const char *v, size_t vl, bool fold)
{
    size_t i;
    bool sp = false, q = false, after_comma = true;

    for (i = 0; i < vl; i++) {
        char c = v[i];
        if (q) {
            kb_ch(b, c);
            if (c == '\\' && i + 1 < vl)
                kb_ch(b, v[++i]);
            else if (c == '"')
                q = false;
            continue;
        }
        if (c == ' ' || c == '\t') {
            sp = true;
            continue;
        }
        if (sp && !after_comma && c != ',')
            kb_ch(b, ' ');
        sp = false;
        after_comma = c == ',';
        if (c == '"')
            q = true;
        kb_ch(b, fold && c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
    }
}

int
cache_vary_key(const char *vary, size_t vlen, const struct cache_hdr *req, size_t nreq, char *out,
               size_t cap, size_t *outlen)
{
    struct vname v[VARY_NAMES_MAX];
    struct kbuf b = {out, 0, cap, cap == 0};
    size_t nv = 0, i, k;
    int rc;

    *outlen = 0;
    if (cap > 0)
        out[0] = '\0';
    if ((rc = vary_collect(vary, vlen, v, &nv)) < 0)
        return rc;
    for (i = 0; i < nv; i++) {
        bool first = true;
        kb_put(&b, v[i].s, v[i].len);
        /* "name: value" when the request has the field (its lines joined as
         * one list), "name" alone when it does not: an absent field matches
         * only an absent one, not an empty one (RFC 9111 4.1) */
        for (k = 0; k < nreq; k++) {
            if (req[k].nlen != v[i].len || strncasecmp(req[k].name, v[i].s, v[i].len) != 0)
                continue;
            kb_put(&b, first ? ": " : ",", first ? 2 : 1);
            first = false;
            kb_normalised(&b, req[k].value, req[k].vlen, vary_caseless(&v[i]));
        }
        kb_ch(&b, '\n');
    }
    if (b.over)
        return CACHE_ETOOBIG;
    *outlen = b.len;
    return 0;
}
