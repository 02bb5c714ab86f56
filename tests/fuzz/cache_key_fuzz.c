/*
 * libFuzzer target: key templates (cache_key_tpl_new) and cache_key_build,
 * with the default key and with the template, query options and request
 * headers taken from the input.
 *
 * Input: one flag byte, then '\n'-separated fields:
 *     TEMPLATE \n HOST \n PATH \n QUERY \n IGNORE,LIST \n Name: value \n ...
 * flags: bit 0 sort_query, bit 1 https, bit 2 no query at all, bit 3 no
 * template (default key).
 *
 * Invariants checked: a template error names a column inside the template;
 * a built key is NUL-terminated at *outlen, shorter than cap, not empty, the
 * same when built twice, built identically with exactly len + 1 bytes of room
 * and refused (CACHE_ETOOBIG) with len bytes; errors leave "" and 0. The
 * request's "Vary" lines name a Vary list: its secondary key has one line
 * per name, is the same when built from the normalised names, and
 * normalising a value twice changes nothing.
 */
#include "cache/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXH 16
#define FIELDS 5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_vary(const struct cache_hdr *h, size_t nh)
{
    static char names[CACHE_VARY_KEY_MAX], a[CACHE_VARY_KEY_MAX], b[CACHE_VARY_KEY_MAX];
    size_t nl, al, bl, lines = 0, i;
    int rc;

    rc = cache_vary_names(h, nh, names, sizeof(names), &nl);
    if (rc < 0) {
        if (rc != CACHE_EINVAL && rc != CACHE_ETOOBIG)
            abort();
        return;
    }
    for (i = 0; i < nl; i++)
        lines += names[i] == '\n';
    rc = cache_vary_key(names, nl, h, nh, a, sizeof(a), &al);
    if (rc < 0) {
        if (rc != CACHE_ETOOBIG)
            abort();
        return;
    }
    if (al >= sizeof(a) || a[al] != '\0')
        abort();
    for (i = 0; i < al; i++)
        lines -= a[i] == '\n';
    if (lines != 0)
        abort(); /* request values hold no '\n' here: one line per name */
    if (cache_vary_key(names, nl, h, nh, b, sizeof(b), &bl) != 0 || bl != al ||
        memcmp(a, b, al) != 0)
        abort();
}

static void
check_built(const struct cache_route *rt, const struct cache_key_parts *parts,
            const struct cache_hdr *h, size_t nh)
{
    static char a[CACHE_KEY_MAX + 1], b[CACHE_KEY_MAX + 1];
    size_t alen = 12345, blen = 12345;
    int rc, rc2;

    rc = cache_key_build(rt, parts, h, nh, a, sizeof(a), &alen);
    if (rc < 0) {
        if ((rc != CACHE_EINVAL && rc != CACHE_ETOOBIG) || alen != 0 || a[0] != '\0')
            abort();
        return;
    }
    if (rc != 0 || alen == 0 || alen >= sizeof(a) || strlen(a) != alen)
        abort();
    /* deterministic, and exact about the room it needs */
    rc2 = cache_key_build(rt, parts, h, nh, b, alen + 1, &blen);
    if (rc2 != 0 || blen != alen || memcmp(a, b, alen + 1) != 0)
        abort();
    rc2 = cache_key_build(rt, parts, h, nh, b, alen, &blen);
    if (rc2 != CACHE_ETOOBIG || blen != 0 || (alen > 0 && b[0] != '\0'))
        abort();
    {
        uint8_t id[CACHE_ID_LEN];
        char hex[CACHE_ID_HEX + 1];

        cache_key_id(a, alen, id);
        cache_id_hex(id, hex);
        if (strlen(hex) != CACHE_ID_HEX)
            abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *field[FIELDS] = {""};
    size_t flen[FIELDS] = {0}, nf = 0, i, nh = 0;
    struct cache_hdr h[MAXH];
    struct cache_key_parts parts;
    struct cache_route rt;
    struct cache_key_tpl *tpl = NULL;
    char err[256];
    unsigned flags;

    if (size < 1 || size > 8192)
        return 0;
    flags = data[0];
    i = 1;
    /* the fields, then header lines */
    while (i <= size && (nf < FIELDS || nh < MAXH)) {
        size_t start = i;
        while (i < size && data[i] != '\n')
            i++;
        if (nf < FIELDS) {
            field[nf] = s + start;
            flen[nf] = i - start;
            nf++;
        } else {
            const char *colon = memchr(s + start, ':', i - start);
            if (colon != NULL) {
                h[nh].name = s + start;
                h[nh].nlen = (size_t)(colon - (s + start));
                h[nh].value = colon + 1;
                h[nh].vlen = i - start - h[nh].nlen - 1;
                nh++;
            }
        }
        if (i >= size)
            break;
        i++;
    }

    cache_route_init(&rt);
    rt.sort_query = flags & 1;
    /* ignore_query= names, as the conf splits them */
    if (nf > 4) {
        const char *p = field[4], *end = field[4] + flen[4];
        while (p < end && rt.n_ignore_query < CACHE_IGNORE_QUERY_MAX) {
            const char *c = memchr(p, ',', (size_t)(end - p));
            const char *stop = c != NULL ? c : end;
            if (stop > p) {
                rt.ignore_query[rt.n_ignore_query].p = p;
                rt.ignore_query[rt.n_ignore_query].len = (size_t)(stop - p);
                rt.n_ignore_query++;
            }
            p = stop + 1;
        }
    }
    parts.scheme = (flags & 2) ? (struct cache_str){"https", 5} : (struct cache_str){"http", 4};
    parts.host = (struct cache_str){nf > 1 ? field[1] : NULL, nf > 1 ? flen[1] : 0};
    parts.path = (struct cache_str){nf > 2 ? field[2] : NULL, nf > 2 ? flen[2] : 0};
    parts.query = (flags & 4) ? (struct cache_str){NULL, 0}
                              : (struct cache_str){nf > 3 ? field[3] : NULL, nf > 3 ? flen[3] : 0};

    if (!(flags & 8)) {
        err[0] = '\0';
        tpl = cache_key_tpl_new(field[0], flen[0], err, sizeof(err));
        if (tpl == NULL) {
            /* "column N: ..." with 1 <= N <= max(len, 1) */
            unsigned long col = 0;
            if (sscanf(err, "column %lu:", &col) != 1 || col < 1 ||
                col > (flen[0] > 0 ? flen[0] : 1))
                abort();
        }
        rt.key = tpl;
    }
    check_built(&rt, &parts, h, nh);
    /* the default key, and no route at all */
    rt.key = NULL;
    check_built(&rt, &parts, h, nh);
    check_built(NULL, &parts, h, nh);
    check_vary(h, nh);
    cache_key_tpl_free(tpl);
    return 0;
}
