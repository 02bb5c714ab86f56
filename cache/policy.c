/*
 * RFC 9111 semantics as pure functions: Cache-Control / CDN-Cache-Control
 * parsing, HTTP dates, storability, freshness, age, reuse decisions, the
 * header fields a store keeps and a 304 updates, and Cache-Status.
 * No I/O and no clock: callers pass 'now'.
 */
#include "cache/cache.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cache/cache-int.h"

/* ---- small helpers --------------------------------------------------------------------------- */

bool
cache_hdr_name_is(const struct cache_hdr *h, const char *name)
{
    size_t n = strlen(name);

    return h->nlen == n && strncasecmp(h->name, name, n) == 0;
}

bool
cache_str_ieq(const char *a, size_t alen, const char *b)
{
    size_t n = strlen(b);

    return alen == n && strncasecmp(a, b, n) == 0;
}

static bool
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 5.6.2 tchar */
bool
cache_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

void
cache_trim(const char **s, size_t *len)
{
    while (*len > 0 && is_ows((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((*s)[*len - 1]))
        (*len)--;
}

/* delta-seconds: 1*DIGIT, capped at CACHE_DELTA_MAX. false when not all digits. */
static bool
parse_delta(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;
    size_t i;

    if (len == 0)
        return false;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v < CACHE_DELTA_MAX)
            v = v * 10 + (s[i] - '0');
    }
    *out = v > CACHE_DELTA_MAX ? CACHE_DELTA_MAX : v;
    return true;
}

/* ---- Cache-Control --------------------------------------------------------------------------- */

enum cc_dir {
    CC_UNKNOWN,
    CC_MAX_AGE,
    CC_S_MAXAGE,
    CC_NO_STORE,
    CC_NO_CACHE,
    CC_PRIVATE,
    CC_PUBLIC,
    CC_MUST_REVALIDATE,
    CC_PROXY_REVALIDATE,
    CC_IMMUTABLE,
    CC_SWR,
    CC_SIE,
    CC_MAX_STALE,
    CC_MIN_FRESH,
    CC_ONLY_IF_CACHED,
    CC_NO_TRANSFORM,
    CC_MUST_UNDERSTAND,
};

static const struct {
    const char *name;
    enum cc_dir dir;
} cc_names[] = {
    {"max-age", CC_MAX_AGE},
    {"s-maxage", CC_S_MAXAGE},
    {"no-store", CC_NO_STORE},
    {"no-cache", CC_NO_CACHE},
    {"private", CC_PRIVATE},
    {"public", CC_PUBLIC},
    {"must-revalidate", CC_MUST_REVALIDATE},
    {"proxy-revalidate", CC_PROXY_REVALIDATE},
    {"immutable", CC_IMMUTABLE},
    {"stale-while-revalidate", CC_SWR},
    {"stale-if-error", CC_SIE},
    {"max-stale", CC_MAX_STALE},
    {"min-fresh", CC_MIN_FRESH},
    {"only-if-cached", CC_ONLY_IF_CACHED},
    {"no-transform", CC_NO_TRANSFORM},
    {"must-understand", CC_MUST_UNDERSTAND},
};

static enum cc_dir
cc_lookup(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < sizeof(cc_names) / sizeof(cc_names[0]); i++)
        if (cache_str_ieq(s, len, cc_names[i].name))
            return cc_names[i].dir;
    return CC_UNKNOWN;
}

/* Splits a field-name list ("a, b") into views; false when it does not fit or
 * holds something other than tokens. */
static bool
cc_fields(const char *s, size_t len, struct cache_str *out, size_t *n)
{
    size_t i = 0;

    *n = 0;
    while (i < len) {
        size_t start;
        while (i < len && (is_ows(s[i]) || s[i] == ','))
            i++;
        if (i == len)
            break;
        start = i;
        while (i < len && cache_is_tchar((unsigned char)s[i]))
            i++;
        if (i == start || *n == CACHE_CC_FIELDS_MAX)
            return false;
        out[*n].p = s + start;
        out[(*n)++].len = i - start;
        while (i < len && is_ows(s[i]))
            i++;
        if (i < len && s[i] != ',')
            return false;
    }
    return *n > 0;
}

/* Records a duration directive; invalid values of max-age / s-maxage count as 0. */
static void
cc_delta(struct cache_cc *cc, uint32_t flag, int64_t *field, const char *v, size_t vlen,
         bool has_val, bool zero_if_bad)
{
    int64_t d;

    if (cc->flags & flag)
        return; /* the first occurrence wins */
    if (has_val && parse_delta(v, vlen, &d)) {
        cc->flags |= flag;
        *field = d;
    } else if (zero_if_bad) {
        cc->flags |= flag;
        *field = 0;
    }
}

static void
cc_apply(struct cache_cc *cc, const char *name, size_t nlen, const char *v, size_t vlen,
         bool has_val, bool quoted_escapes)
{
    switch (cc_lookup(name, nlen)) {
    case CC_UNKNOWN: break;
    case CC_MAX_AGE: cc_delta(cc, CACHE_CC_MAX_AGE, &cc->max_age, v, vlen, has_val, true); break;
    case CC_S_MAXAGE: cc_delta(cc, CACHE_CC_S_MAXAGE, &cc->s_maxage, v, vlen, has_val, true); break;
    case CC_SWR: cc_delta(cc, CACHE_CC_SWR, &cc->swr, v, vlen, has_val, false); break;
    case CC_SIE: cc_delta(cc, CACHE_CC_SIE, &cc->sie, v, vlen, has_val, false); break;
    case CC_MIN_FRESH:
        cc_delta(cc, CACHE_CC_MIN_FRESH, &cc->min_fresh, v, vlen, has_val, false);
        break;
    case CC_MAX_STALE:
        if (cc->flags & CACHE_CC_MAX_STALE)
            break;
        if (!has_val) {
            cc->flags |= CACHE_CC_MAX_STALE;
            cc->max_stale = CACHE_DELTA_MAX; /* any staleness */
        } else {
            cc_delta(cc, CACHE_CC_MAX_STALE, &cc->max_stale, v, vlen, true, false);
        }
        break;
    case CC_NO_STORE: cc->flags |= CACHE_CC_NO_STORE; break;
    case CC_NO_CACHE:
        if (has_val && !quoted_escapes && !(cc->flags & CACHE_CC_NO_CACHE_FIELDS) &&
            cc_fields(v, vlen, cc->nc_fields, &cc->n_nc_fields))
            cc->flags |= CACHE_CC_NO_CACHE_FIELDS;
        else
            cc->flags |= CACHE_CC_NO_CACHE; /* unqualified, or a list we cannot honour */
        break;
    case CC_PRIVATE:
        if (has_val && !quoted_escapes && !(cc->flags & CACHE_CC_PRIVATE_FIELDS) &&
            cc_fields(v, vlen, cc->priv_fields, &cc->n_priv_fields))
            cc->flags |= CACHE_CC_PRIVATE_FIELDS;
        else
            cc->flags |= CACHE_CC_PRIVATE;
        break;
    case CC_PUBLIC: cc->flags |= CACHE_CC_PUBLIC; break;
    case CC_MUST_REVALIDATE: cc->flags |= CACHE_CC_MUST_REVALIDATE; break;
    case CC_PROXY_REVALIDATE: cc->flags |= CACHE_CC_PROXY_REVALIDATE; break;
    case CC_IMMUTABLE: cc->flags |= CACHE_CC_IMMUTABLE; break;
    case CC_ONLY_IF_CACHED: cc->flags |= CACHE_CC_ONLY_IF_CACHED; break;
    case CC_NO_TRANSFORM: cc->flags |= CACHE_CC_NO_TRANSFORM; break;
    case CC_MUST_UNDERSTAND: cc->flags |= CACHE_CC_MUST_UNDERSTAND; break;
    }
}

/* Skips to just past the next top-level comma (quotes respected). */
static size_t
skip_member(const char *s, size_t len, size_t i)
{
    bool q = false;

    for (; i < len; i++) {
        if (q && s[i] == '\\' && i + 1 < len)
            i++;
        else if (s[i] == '"')
            q = !q;
        else if (!q && s[i] == ',')
            return i + 1;
    }
    return len;
}

/* Cache-Control (RFC 9111 5.2): #( token [ "=" ( token / quoted-string ) ] ),
 * read leniently: a member that does not parse is skipped, the rest counts. */
static void
cc_parse_lenient(const char *s, size_t len, struct cache_cc *cc)
{
    size_t i = 0;

    while (i < len) {
        const char *name, *v = NULL;
        size_t nlen, vlen = 0;
        bool has_val = false, esc = false;

        while (i < len && (is_ows(s[i]) || s[i] == ','))
            i++;
        if (i == len)
            break;
        name = s + i;
        while (i < len && cache_is_tchar((unsigned char)s[i]))
            i++;
        nlen = (size_t)(s + i - name);
        if (nlen == 0)
            goto bad;
        if (i < len && s[i] == '=') {
            i++;
            has_val = true;
            if (i < len && s[i] == '"') {
                size_t start = ++i;
                while (i < len && s[i] != '"') {
                    if (s[i] == '\\') {
                        esc = true;
                        if (++i == len)
                            break;
                    }
                    i++;
                }
                if (i == len)
                    goto bad; /* unterminated quoted string */
                v = s + start;
                vlen = i - start;
                i++;
            } else {
                /* up to the next comma or space: "max-age=3600a" is one
                 * (invalid) value, not max-age=3600 and some junk */
                v = s + i;
                while (i < len && s[i] != ',' && !is_ows(s[i]))
                    i++;
                vlen = (size_t)(s + i - v);
            }
        }
        while (i < len && is_ows(s[i]))
            i++;
        if (i < len && s[i] != ',')
            goto bad;
        cc_apply(cc, name, nlen, v, vlen, has_val, esc);
        continue;
    bad:
        i = skip_member(s, len, i);
    }
}

/* ---- CDN-Cache-Control: a Structured-Field Dictionary (RFC 9213 2.1, RFC 8941) ----------------
 */

enum sf_type { SF_BOOL, SF_INT, SF_DEC, SF_STR, SF_TOKEN, SF_BYTES, SF_INNER };

struct sf_item {
    enum sf_type type;
    bool b;
    int64_t i;
    const char *p; /* SF_STR: the text between the quotes, escapes included */
    size_t len;
    bool esc; /* SF_STR with a \" or \\ in it */
};

static bool
sf_lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool
sf_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ) */
static bool
sf_key(const char *s, size_t len, size_t *i, const char **k, size_t *klen)
{
    size_t st = *i;

    if (*i == len || !(sf_lcalpha(s[*i]) || s[*i] == '*'))
        return false;
    while (*i < len && (sf_lcalpha(s[*i]) || sf_digit(s[*i]) || strchr("_-.*", s[*i]) != NULL) &&
           s[*i] != '\0')
        (*i)++;
    *k = s + st;
    *klen = *i - st;
    return true;
}

/* RFC 8941 4.2.4: an Integer (at most 15 digits) or a Decimal (at most 12
 * integer and 3 fractional digits). */
static bool
sf_number(const char *s, size_t len, size_t *i, struct sf_item *it)
{
    bool neg = false, dec = false;
    size_t nd = 0, nf = 0;
    int64_t v = 0;

    if (*i < len && s[*i] == '-') {
        neg = true;
        (*i)++;
    }
    if (*i == len || !sf_digit(s[*i]))
        return false;
    for (; *i < len; (*i)++) {
        char c = s[*i];
        if (sf_digit(c)) {
            if (dec) {
                if (++nf > 3)
                    return false;
            } else {
                if (++nd > 15)
                    return false;
                v = v * 10 + (c - '0');
            }
        } else if (c == '.' && !dec) {
            if (nd > 12)
                return false;
            dec = true;
        } else {
            break;
        }
    }
    if (dec && nf == 0)
        return false;
    it->type = dec ? SF_DEC : SF_INT;
    it->i = neg ? -v : v;
    return true;
}

static bool
sf_bare_item(const char *s, size_t len, size_t *i, struct sf_item *it)
{
    char c;

    memset(it, 0, sizeof(*it));
    if (*i == len)
        return false;
    c = s[*i];
    if (c == '-' || sf_digit(c))
        return sf_number(s, len, i, it);
    if (c == '"') {
        size_t st = ++(*i);
        for (; *i < len; (*i)++) {
            c = s[*i];
            if (c == '\\') {
                if (++(*i) == len || (s[*i] != '"' && s[*i] != '\\'))
                    return false;
                it->esc = true;
            } else if (c == '"') {
                it->type = SF_STR;
                it->p = s + st;
                it->len = *i - st;
                (*i)++;
                return true;
            } else if ((unsigned char)c < 0x20 || (unsigned char)c > 0x7e) {
                return false;
            }
        }
        return false; /* unterminated */
    }
    if ((c >= 'A' && c <= 'Z') || sf_lcalpha(c) || c == '*') {
        size_t st = *i;
        while (*i < len && (cache_is_tchar((unsigned char)s[*i]) || s[*i] == ':' || s[*i] == '/'))
            (*i)++;
        it->type = SF_TOKEN;
        it->p = s + st;
        it->len = *i - st;
        return true;
    }
    if (c == ':') {
        for ((*i)++; *i < len && s[*i] != ':'; (*i)++)
            if (!((s[*i] >= 'A' && s[*i] <= 'Z') || sf_lcalpha(s[*i]) || sf_digit(s[*i]) ||
                  s[*i] == '+' || s[*i] == '/' || s[*i] == '='))
                return false;
        if (*i == len)
            return false;
        (*i)++;
        it->type = SF_BYTES;
        return true;
    }
    if (c == '?') {
        if (*i + 1 == len || (s[*i + 1] != '0' && s[*i + 1] != '1'))
            return false;
        it->type = SF_BOOL;
        it->b = s[*i + 1] == '1';
        *i += 2;
        return true;
    }
    return false;
}

/* *( ";" *SP key [ "=" bare-item ] ): parsed and ignored (RFC 9213 2.1). */
static bool
sf_params(const char *s, size_t len, size_t *i)
{
    while (*i < len && s[*i] == ';') {
        const char *k;
        size_t kl;
        struct sf_item v;
        (*i)++;
        while (*i < len && s[*i] == ' ')
            (*i)++;
        if (!sf_key(s, len, i, &k, &kl))
            return false;
        if (*i < len && s[*i] == '=') {
            (*i)++;
            if (!sf_bare_item(s, len, i, &v))
                return false;
        }
    }
    return true;
}

static bool
sf_inner_list(const char *s, size_t len, size_t *i)
{
    struct sf_item v;

    (*i)++; /* '(' */
    for (;;) {
        while (*i < len && s[*i] == ' ')
            (*i)++;
        if (*i == len)
            return false;
        if (s[*i] == ')') {
            (*i)++;
            return sf_params(s, len, i);
        }
        if (!sf_bare_item(s, len, i, &v) || !sf_params(s, len, i))
            return false;
        if (*i == len || (s[*i] != ' ' && s[*i] != ')'))
            return false;
    }
}

/* One dictionary member as a cache directive. RFC 9213 2.1 infers the
 * types: delta-seconds are Integers (>= 0), argument-less directives are
 * Booleans, and no-cache / private take a String of field names; a value of
 * another type is not consumed (the directive counts as absent). As in any
 * Dictionary, a later member with the same key replaces an earlier one. */
static void
sf_apply(struct cache_cc *cc, const char *k, size_t kl, const struct sf_item *it)
{
    enum cc_dir d = cc_lookup(k, kl);
    bool flag = it->type == SF_BOOL && it->b;
    char num[24];
    int n;

    switch (d) {
    case CC_UNKNOWN: return;
    case CC_MAX_AGE: cc->flags &= ~(uint32_t)CACHE_CC_MAX_AGE; break;
    case CC_S_MAXAGE: cc->flags &= ~(uint32_t)CACHE_CC_S_MAXAGE; break;
    case CC_SWR: cc->flags &= ~(uint32_t)CACHE_CC_SWR; break;
    case CC_SIE: cc->flags &= ~(uint32_t)CACHE_CC_SIE; break;
    case CC_MIN_FRESH: cc->flags &= ~(uint32_t)CACHE_CC_MIN_FRESH; break;
    case CC_MAX_STALE: cc->flags &= ~(uint32_t)CACHE_CC_MAX_STALE; break;
    case CC_NO_CACHE:
        cc->flags &= ~(uint32_t)(CACHE_CC_NO_CACHE | CACHE_CC_NO_CACHE_FIELDS);
        cc->n_nc_fields = 0;
        break;
    case CC_PRIVATE:
        cc->flags &= ~(uint32_t)(CACHE_CC_PRIVATE | CACHE_CC_PRIVATE_FIELDS);
        cc->n_priv_fields = 0;
        break;
    default: break;
    }
    switch (d) {
    case CC_MAX_AGE:
    case CC_S_MAXAGE:
    case CC_SWR:
    case CC_SIE:
    case CC_MIN_FRESH:
    case CC_MAX_STALE:
        if (it->type != SF_INT || it->i < 0)
            return;
        n = snprintf(num, sizeof(num), "%lld", (long long)it->i);
        cc_apply(cc, k, kl, num, (size_t)n, true, false);
        return;
    case CC_NO_CACHE:
    case CC_PRIVATE:
        if (it->type == SF_STR)
            cc_apply(cc, k, kl, it->p, it->len, true, it->esc);
        else if (flag)
            cc_apply(cc, k, kl, NULL, 0, false, false);
        return;
    default:
        if (flag)
            cc_apply(cc, k, kl, NULL, 0, false, false);
        else
            switch (d) { /* "no-store=?0": the later member says it is not there */
            case CC_NO_STORE: cc->flags &= ~(uint32_t)CACHE_CC_NO_STORE; break;
            case CC_PUBLIC: cc->flags &= ~(uint32_t)CACHE_CC_PUBLIC; break;
            case CC_MUST_REVALIDATE: cc->flags &= ~(uint32_t)CACHE_CC_MUST_REVALIDATE; break;
            case CC_PROXY_REVALIDATE: cc->flags &= ~(uint32_t)CACHE_CC_PROXY_REVALIDATE; break;
            case CC_IMMUTABLE: cc->flags &= ~(uint32_t)CACHE_CC_IMMUTABLE; break;
            case CC_ONLY_IF_CACHED: cc->flags &= ~(uint32_t)CACHE_CC_ONLY_IF_CACHED; break;
            case CC_NO_TRANSFORM: cc->flags &= ~(uint32_t)CACHE_CC_NO_TRANSFORM; break;
            case CC_MUST_UNDERSTAND: cc->flags &= ~(uint32_t)CACHE_CC_MUST_UNDERSTAND; break;
            default: break;
            }
        return;
    }
}

/* RFC 8941 4.2.2: sf-dictionary = dict-member *( OWS "," OWS dict-member ),
 * dict-member = key ( parameters / ( "=" ( sf-item / inner-list ) ) ). */
static bool
sf_dict_parse(const char *s, size_t len, struct cache_cc *cc)
{
    size_t i = 0;

    while (i < len && s[i] == ' ')
        i++;
    if (i == len)
        return true;
    for (;;) {
        const char *k;
        size_t kl;
        struct sf_item it = {.type = SF_BOOL, .b = true};
        if (!sf_key(s, len, &i, &k, &kl))
            return false;
        if (i < len && s[i] == '=') {
            i++;
            if (i < len && s[i] == '(') {
                if (!sf_inner_list(s, len, &i))
                    return false;
                it.type = SF_INNER;
                it.b = false;
            } else if (!sf_bare_item(s, len, &i, &it) || !sf_params(s, len, &i)) {
                return false;
            }
        } else if (!sf_params(s, len, &i)) {
            return false;
        }
        sf_apply(cc, k, kl, &it);
        while (i < len && is_ows(s[i]))
            i++;
        if (i == len)
            return true;
        if (s[i] != ',')
            return false;
        i++;
        while (i < len && is_ows(s[i]))
            i++;
        if (i == len)
            return false; /* a trailing comma */
    }
}

bool
cache_cc_parse(const char *s, size_t len, bool strict, struct cache_cc *cc)
{
    if (s == NULL)
        return !strict;
    if (strict)
        return sf_dict_parse(s, len, cc);
    cc_parse_lenient(s, len, cc);
    return true;
}

/* ---- Surrogate-Control (W3C Edge Architecture 1.0) ---------------------------------------- */

/* The device token Surrogate-Control directives name this cache with
 * ("max-age=60;edge"); a directive without one is for every surrogate. */
#define SC_DEVICE "edge"

/* One pass over a Surrogate-Control line: the directives targeted at this
 * cache (targeted) or at every surrogate (!targeted), merged into cc. A
 * member is name [ "=" value ] [ ";" device ], value max-age=N[+M] (the +M
 * extension is not used) or a quoted string. Only max-age, no-store and
 * no-store-remote (this cache is a remote surrogate: near the clients, not
 * the origin) mean something here. True when one of those applied. */
static bool
sc_parse(const char *s, size_t len, bool targeted, struct cache_cc *cc)
{
    size_t i = 0;
    bool applied = false;

    while (i < len) {
        const char *name, *v = NULL, *dev = NULL;
        size_t nlen, vlen = 0, dlen = 0;
        enum cc_dir d;

        while (i < len && (is_ows(s[i]) || s[i] == ','))
            i++;
        if (i == len)
            break;
        name = s + i;
        while (i < len && cache_is_tchar((unsigned char)s[i]))
            i++;
        nlen = (size_t)(s + i - name);
        if (nlen == 0)
            goto bad;
        if (i < len && s[i] == '=') {
            v = s + ++i;
            if (i < len && s[i] == '"') {
                for (i++; i < len && s[i] != '"'; i++)
                    if (s[i] == '\\' && i + 1 < len)
                        i++;
                if (i == len)
                    goto bad;
                i++;
            } else {
                while (i < len && s[i] != ',' && s[i] != ';' && !is_ows(s[i]))
                    i++;
            }
            vlen = (size_t)(s + i - v);
            if (vlen == 0)
                goto bad;
        }
        if (i < len && s[i] == ';') {
            dev = s + ++i;
            while (i < len && cache_is_tchar((unsigned char)s[i]))
                i++;
            dlen = (size_t)(s + i - dev);
            if (dlen == 0)
                goto bad;
        }
        while (i < len && is_ows(s[i]))
            i++;
        if (i < len && s[i] != ',')
            goto bad;
        if (targeted != (dev != NULL) || (dev != NULL && !cache_str_ieq(dev, dlen, SC_DEVICE)))
            continue;
        if (cache_str_ieq(name, nlen, "no-store-remote"))
            d = CC_NO_STORE;
        else
            d = cc_lookup(name, nlen);
        if (d == CC_MAX_AGE) {
            const char *plus = v != NULL ? memchr(v, '+', vlen) : NULL;
            cc_delta(cc, CACHE_CC_MAX_AGE, &cc->max_age, v,
                     plus != NULL ? (size_t)(plus - v) : vlen, v != NULL, true);
            applied = true;
        } else if (d == CC_NO_STORE) {
            cc->flags |= CACHE_CC_NO_STORE;
            applied = true;
        }
        continue;
    bad:
        i = skip_member(s, len, i);
    }
    return applied;
}

/* ---- HTTP dates ------------------------------------------------------------------------------ */

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wdays_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                          "Thursday", "Friday", "Saturday"};

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool
is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned
month_days(int64_t y, unsigned m)
{
    static const unsigned md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : md[m - 1];
}

/* A small cursor over the date text. */
struct dcur {
    const char *s;
    size_t len, i;
};

static bool
d_lit(struct dcur *c, const char *lit)
{
    size_t n = strlen(lit);

    if (c->len - c->i < n || memcmp(c->s + c->i, lit, n) != 0)
        return false;
    c->i += n;
    return true;
}

/* The zone: RFC 9110's grammar spells it "GMT", and recipients are asked to
 * be robust with timestamps (5.6.7), so its case does not matter, as for
 * the day and month names; any other zone is an invalid date. */
static bool
d_gmt(struct dcur *c)
{
    if (c->len - c->i < 4 || strncasecmp(c->s + c->i, " GMT", 4) != 0)
        return false;
    c->i += 4;
    return true;
}

static bool
d_num(struct dcur *c, size_t digits, unsigned *out)
{
    unsigned v = 0;
    size_t k;

    if (c->len - c->i < digits)
        return false;
    for (k = 0; k < digits; k++) {
        char ch = c->s[c->i + k];
        if (ch < '0' || ch > '9')
            return false;
        v = v * 10 + (unsigned)(ch - '0');
    }
    c->i += digits;
    *out = v;
    return true;
}

static bool
d_month(struct dcur *c, unsigned *m)
{
    unsigned k;

    if (c->len - c->i < 3)
        return false;
    for (k = 0; k < 12; k++) {
        if (strncasecmp(c->s + c->i, months[k], 3) == 0) {
            c->i += 3;
            *m = k + 1;
            return true;
        }
    }
    return false;
}

/* hh:mm:ss */
static bool
d_time(struct dcur *c, unsigned *h, unsigned *mi, unsigned *se)
{
    return d_num(c, 2, h) && d_lit(c, ":") && d_num(c, 2, mi) && d_lit(c, ":") && d_num(c, 2, se);
}

static bool
d_finish(int64_t y, unsigned mo, unsigned d, unsigned h, unsigned mi, unsigned se, int64_t *t)
{
    if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || se > 60)
        return false;
    if (se == 60)
        se = 59; /* leap second */
    *t = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + se;
    return true;
}

bool
cache_http_date_parse(const char *s, size_t len, int64_t *t)
{
    struct dcur c;
    unsigned d, mo, y, h, mi, se, k;
    size_t wlen;

    if (s == NULL)
        return false;
    cache_trim(&s, &len);
    c = (struct dcur){s, len, 0};
    /* the day name decides the format: "Sun," IMF, "Sunday," RFC 850, "Sun " asctime */
    for (k = 0; k < 7; k++)
        if (len >= 3 && strncasecmp(s, wdays[k], 3) == 0)
            break;
    if (k == 7)
        return false;
    if (len > 3 && s[3] == ',') {
        c.i = 4;
        if (!(d_lit(&c, " ") && d_num(&c, 2, &d) && d_lit(&c, " ") && d_month(&c, &mo) &&
              d_lit(&c, " ") && d_num(&c, 4, &y) && d_lit(&c, " ") && d_time(&c, &h, &mi, &se) &&
              d_gmt(&c) && c.i == len))
            return false;
        return d_finish(y, mo, d, h, mi, se, t);
    }
    if (len > 3 && s[3] == ' ') {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        c.i = 4;
        if (!d_month(&c, &mo) || !d_lit(&c, " "))
            return false;
        if (d_lit(&c, " ")) {
            if (!d_num(&c, 1, &d))
                return false;
        } else if (!d_num(&c, 2, &d)) {
            return false;
        }
        if (!(d_lit(&c, " ") && d_time(&c, &h, &mi, &se) && d_lit(&c, " ") && d_num(&c, 4, &y) &&
              c.i == len))
            return false;
        return d_finish(y, mo, d, h, mi, se, t);
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    wlen = strlen(wdays_long[k]);
    if (len < wlen || strncasecmp(s, wdays_long[k], wlen) != 0)
        return false;
    c.i = wlen;
    if (!(d_lit(&c, ", ") && d_num(&c, 2, &d) && d_lit(&c, "-") && d_month(&c, &mo) &&
          d_lit(&c, "-") && d_num(&c, 2, &y) && d_lit(&c, " ") && d_time(&c, &h, &mi, &se) &&
          d_gmt(&c) && c.i == len))
        return false;
    return d_finish(y < 70 ? 2000 + y : 1900 + y, mo, d, h, mi, se, t);
}

size_t
cache_http_date_format(int64_t t, char *buf, size_t cap)
{
    int64_t days, secs, z, era, y;
    unsigned doe, yoe, doy, mp, d, m, wd;
    char tmp[40];
    int n;

    if (cap < 30)
        return 0;
    days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    secs = t - days * 86400;
    /* civil_from_days (Hinnant) */
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = (int64_t)yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    wd = (unsigned)(((days % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
    if (y < 0 || y > 9999)
        return 0;
    n = snprintf(tmp, sizeof(tmp), "%s, %02u %s %04d %02d:%02d:%02d GMT", wdays[wd], d,
                 months[m - 1], (int)y, (int)(secs / 3600), (int)(secs / 60 % 60),
                 (int)(secs % 60));
    if (n != 29)
        return 0;
    memcpy(buf, tmp, 30);
    return 29;
}

/* ---- response and request heads -------------------------------------------------------------- */

bool
cache_status_heuristic(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501: return true;
    default: return false;
    }
}

bool
cache_status_understood(int status)
{
    switch (status) {
    case 200:
    case 201:
    case 202:
    case 203:
    case 204:
    case 205:
    case 300:
    case 301:
    case 302:
    case 303:
    case 307:
    case 308:
    case 400:
    case 401:
    case 402:
    case 403:
    case 404:
    case 405:
    case 406:
    case 407:
    case 408:
    case 409:
    case 410:
    case 411:
    case 412:
    case 413:
    case 414:
    case 415:
    case 416:
    case 417:
    case 421:
    case 422:
    case 426:
    case 500:
    case 501:
    case 502:
    case 503:
    case 504:
    case 505: return true;
    default: return false;
    }
}

static void
first_date(const struct cache_hdr *h, bool *seen, int64_t *out, bool invalid_is_past)
{
    int64_t t;

    if (*seen)
        return;
    *seen = true;
    if (cache_http_date_parse(h->value, h->vlen, &t))
        *out = t;
    else if (invalid_is_past)
        *out = 0;
}

void
cache_resp_parse(const struct cache_hdr *h, size_t n, int status, struct cache_resp_info *out)
{
    struct cache_cc cdn, sc;
    bool cdn_ok = true, cdn_seen = false, date_seen = false, exp_seen = false, lm_seen = false;
    bool age_seen = false, sc_applies = false;
    size_t i;

    memset(out, 0, sizeof(*out));
    memset(&cdn, 0, sizeof(cdn));
    memset(&sc, 0, sizeof(sc));
    out->status = status;
    out->date = out->expires = out->age = out->last_modified = CACHE_UNSET;
    for (i = 0; i < n; i++) {
        const struct cache_hdr *f = &h[i];
        if (cache_hdr_name_is(f, "cache-control")) {
            out->has_cc = true;
            cache_cc_parse(f->value, f->vlen, false, &out->cc);
        } else if (cache_hdr_name_is(f, "cdn-cache-control")) {
            const char *v = f->value;
            size_t vl = f->vlen;
            /* RFC 9213 2.1: an empty field is ignored, like an invalid one;
             * an empty line among others would make the combined value
             * invalid ("a, , b") */
            cache_trim(&v, &vl);
            cdn_seen = true;
            cdn_ok = cdn_ok && vl > 0 && cache_cc_parse(v, vl, true, &cdn);
        } else if (cache_hdr_name_is(f, "date")) {
            first_date(f, &date_seen, &out->date, false);
        } else if (cache_hdr_name_is(f, "expires")) {
            first_date(f, &exp_seen, &out->expires, true);
        } else if (cache_hdr_name_is(f, "last-modified")) {
            first_date(f, &lm_seen, &out->last_modified, false);
        } else if (cache_hdr_name_is(f, "age")) {
            const char *v = f->value;
            size_t vl = f->vlen, k;
            int64_t a;
            if (age_seen)
                continue;
            age_seen = true;
            cache_trim(&v, &vl);
            for (k = 0; k < vl && v[k] != ','; k++)
                ;
            vl = k;
            cache_trim(&v, &vl);
            if (parse_delta(v, vl, &a))
                out->age = a;
        } else if (cache_hdr_name_is(f, "etag")) {
            const char *v = f->value;
            size_t vl = f->vlen;
            cache_trim(&v, &vl);
            if (out->etag.p == NULL && vl > 0) {
                out->etag.p = v;
                out->etag.len = vl;
            }
        } else if (cache_hdr_name_is(f, "vary")) {
            const char *v = f->value;
            size_t k = 0, vl = f->vlen;
            while (k < vl) {
                const char *tok;
                size_t tl;
                while (k < vl && (is_ows(v[k]) || v[k] == ','))
                    k++;
                tok = v + k;
                while (k < vl && v[k] != ',')
                    k++;
                tl = (size_t)(v + k - tok);
                cache_trim(&tok, &tl);
                if (tl == 1 && tok[0] == '*')
                    out->vary_star = true;
                else if (tl > 0)
                    out->has_vary = true;
            }
        } else if (cache_hdr_name_is(f, "set-cookie")) {
            out->set_cookie = true;
        } else if (cache_hdr_name_is(f, "content-range")) {
            out->content_range = true;
        }
    }
    /* Surrogate-Control: what is addressed to this cache by name first, then
     * what is addressed to every surrogate (the first occurrence wins) */
    for (int pass = 0; pass < 2 && !(cdn_seen && cdn_ok); pass++)
        for (i = 0; i < n; i++)
            if (cache_hdr_name_is(&h[i], "surrogate-control") &&
                sc_parse(h[i].value, h[i].vlen, pass == 0, &sc))
                sc_applies = true;
    if (cdn_seen && cdn_ok) {
        /* RFC 9213 2.2: the targeted field replaces Cache-Control and Expires */
        out->cc = cdn;
        out->cdn_cc = true;
        out->has_cc = true;
        out->expires = CACHE_UNSET;
    } else if (sc_applies) {
        /* Surrogate-Control, older and weaker: the same, when CDN-Cache-Control
         * does not speak, and only when one of its directives is for us */
        out->cc = sc;
        out->surrogate = true;
        out->has_cc = true;
        out->expires = CACHE_UNSET;
    }
}

void
cache_req_parse(const struct cache_hdr *h, size_t n, struct cache_req_info *out)
{
    bool has_cc = false, pragma_nc = false;
    size_t i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < n; i++) {
        const struct cache_hdr *f = &h[i];
        if (cache_hdr_name_is(f, "cache-control")) {
            has_cc = true;
            cache_cc_parse(f->value, f->vlen, false, &out->cc);
        } else if (cache_hdr_name_is(f, "pragma")) {
            struct cache_cc p;
            memset(&p, 0, sizeof(p));
            cache_cc_parse(f->value, f->vlen, false, &p);
            pragma_nc = pragma_nc || (p.flags & (CACHE_CC_NO_CACHE | CACHE_CC_NO_CACHE_FIELDS));
        } else if (cache_hdr_name_is(f, "authorization")) {
            out->authorization = true;
        } else if (cache_hdr_name_is(f, "range")) {
            out->range = true;
        } else if (cache_hdr_name_is(f, "if-none-match") ||
                   cache_hdr_name_is(f, "if-modified-since") || cache_hdr_name_is(f, "if-match") ||
                   cache_hdr_name_is(f, "if-unmodified-since") ||
                   cache_hdr_name_is(f, "if-range")) {
            out->conditional = true;
        }
    }
    /* a qualified no-cache means nothing in a request: treat as plain no-cache */
    if (out->cc.flags & CACHE_CC_NO_CACHE_FIELDS)
        out->cc.flags |= CACHE_CC_NO_CACHE;
    if (!has_cc && pragma_nc)
        out->cc.flags |= CACHE_CC_NO_CACHE; /* RFC 9111 5.4 */
}

/* ---- decisions ------------------------------------------------------------------------------- */

void
cache_route_init(struct cache_route *r)
{
    memset(r, 0, sizeof(*r));
    r->enabled = true;
    r->ttl = r->max_ttl = r->swr = r->sie = r->ttl_force = CACHE_UNSET;
}

bool
cache_has_explicit_freshness(const struct cache_resp_info *ri)
{
    return (ri->cc.flags & (CACHE_CC_S_MAXAGE | CACHE_CC_MAX_AGE)) != 0 ||
           (!ri->cdn_cc && !ri->surrogate && ri->expires != CACHE_UNSET);
}

static bool
has_validator(const struct cache_resp_info *ri)
{
    return ri->etag.p != NULL || ri->last_modified != CACHE_UNSET;
}

/* Set-Cookie named by private="..." or no-cache="...": the field is not
 * stored (cache_hdr_storable), so the rest of the response is shareable. */
static bool
cookie_field_stripped(const struct cache_cc *cc)
{
    size_t i;

    for (i = 0; (cc->flags & CACHE_CC_PRIVATE_FIELDS) && i < cc->n_priv_fields; i++)
        if (cache_str_ieq(cc->priv_fields[i].p, cc->priv_fields[i].len, "set-cookie"))
            return true;
    for (i = 0; (cc->flags & CACHE_CC_NO_CACHE_FIELDS) && i < cc->n_nc_fields; i++)
        if (cache_str_ieq(cc->nc_fields[i].p, cc->nc_fields[i].len, "set-cookie"))
            return true;
    return false;
}

enum cache_store_verdict
cache_storable(const char *method, size_t mlen, const struct cache_req_info *rq,
               const struct cache_resp_info *ri, const struct cache_route *route)
{
    uint32_t f = ri->cc.flags;
    bool explicit_fresh = cache_has_explicit_freshness(ri);
    bool route_ttl = route != NULL && (route->ttl != CACHE_UNSET || route->ttl_force > 0);

    if (route != NULL && !route->enabled)
        return CACHE_STORE_DISABLED;
    if (mlen != 3 || memcmp(method, "GET", 3) != 0)
        return CACHE_STORE_NO_METHOD;
    /* final, understood, complete: partial content and 304 are never stored.
     * Content-Range means something only in a 206 or a 416 (RFC 9110 14.4),
     * so a 200 that carries one is stored like any other (RFC 9111 3.1 keeps
     * the field); but a request with Range stores nothing but a plain 200:
     * its 416 is about that range, not the representation, and a 200 with
     * Content-Range there may well be a partial body under the wrong status. */
    if (ri->status < 200 || ri->status > 599 || ri->status == 206 || ri->status == 304)
        return CACHE_STORE_NO_STATUS;
    if (rq != NULL && rq->range && (ri->status != 200 || ri->content_range))
        return CACHE_STORE_NO_STATUS;
    /* RFC 9111 5.2.2.3: must-understand limits storing to caches that know the
     * status code's caching rules, and those ignore the no-store sent along
     * for the others */
    if ((f & CACHE_CC_MUST_UNDERSTAND) && !cache_status_understood(ri->status))
        return CACHE_STORE_NO_STATUS;
    if (((f & CACHE_CC_NO_STORE) && !(f & CACHE_CC_MUST_UNDERSTAND)) ||
        (rq != NULL && (rq->cc.flags & CACHE_CC_NO_STORE)))
        return CACHE_STORE_NO_STORE;
    if (f & CACHE_CC_PRIVATE)
        return CACHE_STORE_PRIVATE;
    /* RFC 9111 3.5 */
    if (rq != NULL && rq->authorization &&
        !(f & (CACHE_CC_PUBLIC | CACHE_CC_S_MAXAGE | CACHE_CC_MUST_REVALIDATE)))
        return CACHE_STORE_AUTHORIZATION;
    /* Set-Cookie: a deliberate choice beyond RFC 9111, see cache.h */
    if (ri->set_cookie && !(f & (CACHE_CC_PUBLIC | CACHE_CC_S_MAXAGE)) &&
        !((ri->cdn_cc || ri->surrogate) && (f & CACHE_CC_MAX_AGE)) && !route_ttl &&
        !cookie_field_stripped(&ri->cc))
        return CACHE_STORE_SET_COOKIE;
    if (ri->vary_star)
        return CACHE_STORE_VARY_STAR;
    if (route != NULL && route->ttl_force != CACHE_UNSET)
        return route->ttl_force > 0 ? CACHE_STORE_OK : CACHE_STORE_DISABLED;
    if (explicit_fresh)
        return CACHE_STORE_OK;
    /* no explicit freshness: needs something that makes it reusable */
    if (f & CACHE_CC_NO_CACHE)
        return has_validator(ri) ? CACHE_STORE_OK : CACHE_STORE_NO_FRESHNESS;
    if (route_ttl && (cache_status_heuristic(ri->status) || (f & CACHE_CC_PUBLIC)))
        return CACHE_STORE_OK;
    if ((cache_status_heuristic(ri->status) || (f & CACHE_CC_PUBLIC)) && has_validator(ri))
        return CACHE_STORE_OK;
    return CACHE_STORE_NO_FRESHNESS;
}

const char *
cache_store_verdict_str(enum cache_store_verdict v)
{
    switch (v) {
    case CACHE_STORE_OK: return "ok";
    case CACHE_STORE_NO_METHOD: return "method";
    case CACHE_STORE_NO_STATUS: return "status";
    case CACHE_STORE_NO_STORE: return "no-store";
    case CACHE_STORE_PRIVATE: return "private";
    case CACHE_STORE_AUTHORIZATION: return "authorization";
    case CACHE_STORE_VARY_STAR: return "vary-star";
    case CACHE_STORE_NO_FRESHNESS: return "no-freshness";
    case CACHE_STORE_DISABLED: return "disabled";
    case CACHE_STORE_SET_COOKIE: return "set-cookie";
    }
    return "?";
}

int64_t
cache_freshness(const struct cache_resp_info *ri, const struct cache_route *route,
                int64_t response_time)
{
    uint32_t f = ri->cc.flags;
    int64_t life = 0, date = ri->date != CACHE_UNSET ? ri->date : response_time;

    if (route != NULL && route->ttl_force != CACHE_UNSET)
        return route->ttl_force;
    if (f & CACHE_CC_NO_CACHE)
        return 0;
    if (f & CACHE_CC_S_MAXAGE) {
        life = ri->cc.s_maxage;
    } else if (f & CACHE_CC_MAX_AGE) {
        life = ri->cc.max_age;
    } else if (!ri->cdn_cc && !ri->surrogate && ri->expires != CACHE_UNSET) {
        life = ri->expires > date ? ri->expires - date : 0;
    } else if (cache_status_heuristic(ri->status) || (f & CACHE_CC_PUBLIC)) {
        if (route != NULL && route->ttl != CACHE_UNSET) {
            life = route->ttl;
        } else if (ri->last_modified != CACHE_UNSET && ri->last_modified < date) {
            life = (date - ri->last_modified) / CACHE_HEURISTIC_DIV;
            if (life > CACHE_HEURISTIC_MAX)
                life = CACHE_HEURISTIC_MAX;
        }
    }
    if (route != NULL && route->max_ttl != CACHE_UNSET && life > route->max_ttl)
        life = route->max_ttl;
    return life < 0 ? 0 : life;
}

int64_t
cache_initial_age(const struct cache_resp_info *ri, int64_t request_time, int64_t response_time)
{
    int64_t apparent = 0, delay, corrected;

    if (ri->date != CACHE_UNSET && response_time > ri->date)
        apparent = response_time - ri->date;
    delay = response_time > request_time ? response_time - request_time : 0;
    corrected = (ri->age != CACHE_UNSET ? ri->age : 0) + delay;
    return apparent > corrected ? apparent : corrected;
}

int64_t
cache_current_age(int64_t initial_age, int64_t response_time, int64_t now)
{
    int64_t resident = now > response_time ? now - response_time : 0;

    return initial_age + resident;
}

void
cache_policy_from_resp(const struct cache_resp_info *ri, const struct cache_route *route,
                       int64_t request_time, int64_t response_time, struct cache_policy *out)
{
    uint32_t f = ri->cc.flags;

    memset(out, 0, sizeof(*out));
    out->request_time = request_time;
    out->response_time = response_time;
    out->initial_age = cache_initial_age(ri, request_time, response_time);
    out->lifetime = cache_freshness(ri, route, response_time);
    out->date = ri->date != CACHE_UNSET ? ri->date : response_time;
    out->last_modified = ri->last_modified;
    out->swr = (f & CACHE_CC_SWR) ? ri->cc.swr : route != NULL ? route->swr : CACHE_UNSET;
    out->sie = (f & CACHE_CC_SIE) ? ri->cc.sie : route != NULL ? route->sie : CACHE_UNSET;
    if (f & (CACHE_CC_MUST_REVALIDATE | CACHE_CC_PROXY_REVALIDATE | CACHE_CC_S_MAXAGE))
        out->flags |= CACHE_POL_NO_STALE;
    if (f & CACHE_CC_NO_CACHE)
        out->flags |= CACHE_POL_NO_CACHE;
    if (f & CACHE_CC_IMMUTABLE)
        out->flags |= CACHE_POL_IMMUTABLE;
    if (ri->etag.p != NULL)
        out->flags |= CACHE_POL_HAS_ETAG;
    if (ri->last_modified != CACHE_UNSET)
        out->flags |= CACHE_POL_HAS_LM;
}

void
cache_decide(const struct cache_policy *p, const struct cache_req_info *rq,
             const struct cache_route *route, int64_t now, struct cache_decision *out)
{
    uint32_t rf = rq != NULL ? rq->cc.flags : 0;
    bool validators = (p->flags & (CACHE_POL_HAS_ETAG | CACHE_POL_HAS_LM)) != 0;
    bool no_stale = (p->flags & CACHE_POL_NO_STALE) != 0;
    bool fresh, usable_stale = false;
    int64_t staleness, sie;

    (void)route; /* route windows were folded into p at store time */
    memset(out, 0, sizeof(*out));
    out->age = cache_current_age(p->initial_age, p->response_time, now);
    out->ttl = p->lifetime - out->age;
    out->only_if_cached = (rf & CACHE_CC_ONLY_IF_CACHED) != 0;
    fresh = out->ttl > 0 && !(p->flags & (CACHE_POL_SOFT_PURGED | CACHE_POL_NO_CACHE));
    staleness = fresh ? 0 : -out->ttl;
    if (staleness < 0)
        staleness = 0; /* soft-purged or no-cache while within lifetime */

    /* request constraints (RFC 9111 5.2.1) */
    if (fresh && (rf & CACHE_CC_MAX_AGE) && out->age > rq->cc.max_age)
        fresh = false;
    if (fresh && (rf & CACHE_CC_MIN_FRESH) && out->ttl < rq->cc.min_fresh)
        fresh = false;
    if (rf & CACHE_CC_NO_CACHE)
        fresh = false;

    /* stale-if-error (RFC 5861 4), from the response or the route, or from the
     * request: either permission is enough (RFC 9111 4.2.4), unless the
     * response forbids stale use: must-revalidate, proxy-revalidate,
     * s-maxage, and no-cache too (4.2.4 names it; a response that must be
     * validated before each use cannot be used unvalidated on an error) */
    sie = p->sie;
    if ((rf & CACHE_CC_SIE) && (sie == CACHE_UNSET || rq->cc.sie > sie))
        sie = rq->cc.sie;
    out->stale_if_error = !no_stale && !(p->flags & CACHE_POL_NO_CACHE) && sie != CACHE_UNSET &&
                          staleness <= sie && !(rf & CACHE_CC_NO_CACHE);
    if (fresh) {
        out->use = CACHE_USE_FRESH;
        return;
    }
    if (!no_stale && !(p->flags & CACHE_POL_NO_CACHE) && !(rf & CACHE_CC_NO_CACHE)) {
        /* the client accepts staleness (max-stale) */
        if ((rf & CACHE_CC_MAX_STALE) && staleness <= rq->cc.max_stale &&
            !(p->flags & CACHE_POL_SOFT_PURGED))
            usable_stale = true;
        /* stale-while-revalidate (RFC 5861 3); not for requests that bound the age */
        if (p->swr != CACHE_UNSET && staleness <= p->swr &&
            !(rf & (CACHE_CC_MAX_AGE | CACHE_CC_MIN_FRESH))) {
            usable_stale = true;
            out->revalidate = true;
        }
    }
    if (usable_stale) {
        out->use = CACHE_USE_STALE;
        return;
    }
    out->use = validators ? CACHE_REVALIDATE : CACHE_MUST_MISS;
}

/* ---- header fields kept and updated ---------------------------------------------------------- */

/* Never stored (RFC 9111 3.1): hop-by-hop fields (RFC 9110 7.6.1), and the
 * fields that belong to the proxy a request went through (Proxy-Authenticate,
 * Proxy-Authentication-Info, Proxy-Authorization), which the key does not
 * name. */
static const char *const hop_by_hop[] = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-authentication-info",
};

/* Is h's name listed in a Connection header of all? */
static bool
connection_nominated(const struct cache_hdr *h, const struct cache_hdr *all, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const char *v = all[i].value;
        size_t k = 0, vl = all[i].vlen;
        if (!cache_hdr_name_is(&all[i], "connection"))
            continue;
        while (k < vl) {
            const char *tok;
            size_t tl;
            while (k < vl && (is_ows(v[k]) || v[k] == ','))
                k++;
            tok = v + k;
            while (k < vl && v[k] != ',')
                k++;
            tl = (size_t)(v + k - tok);
            cache_trim(&tok, &tl);
            if (tl == h->nlen && tl > 0 && strncasecmp(tok, h->name, tl) == 0)
                return true;
        }
    }
    return false;
}

static bool
in_fields(const struct cache_hdr *h, const struct cache_str *f, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (f[i].len == h->nlen && strncasecmp(f[i].p, h->name, h->nlen) == 0)
            return true;
    return false;
}

bool
cache_hdr_storable(const struct cache_hdr *h, const struct cache_hdr *all, size_t n,
                   const struct cache_cc *cc)
{
    size_t i;

    for (i = 0; i < sizeof(hop_by_hop) / sizeof(hop_by_hop[0]); i++)
        if (cache_hdr_name_is(h, hop_by_hop[i]))
            return false;
    if (cache_hdr_name_is(h, "age"))
        return false;
    if (connection_nominated(h, all, n))
        return false;
    if (cc != NULL && (cc->flags & CACHE_CC_PRIVATE_FIELDS) &&
        in_fields(h, cc->priv_fields, cc->n_priv_fields))
        return false;
    if (cc != NULL && (cc->flags & CACHE_CC_NO_CACHE_FIELDS) &&
        in_fields(h, cc->nc_fields, cc->n_nc_fields))
        return false;
    return true;
}

bool
cache_hdr_updatable(const struct cache_hdr *h, const struct cache_hdr *all, size_t n,
                    const struct cache_cc *cc)
{
    if (!cache_hdr_storable(h, all, n, cc))
        return false;
    /* RFC 9111 3.2: every other field of the 304 replaces the stored ones,
     * except Content-Length (it describes the 304, not the stored body) and
     * the fields an implementation processes away, which it may leave out:
     * Content-Range. Content-Encoding is updated: the exception for it is
     * for caches that decode what they store, and this one keeps the body
     * exactly as the origin sent it. */
    return !cache_hdr_name_is(h, "content-length") && !cache_hdr_name_is(h, "content-range");
}

bool
cache_hdr_in_304(const struct cache_hdr *h)
{
    /* RFC 9110 15.4.5: a 304 carries Cache-Control, Content-Location, Date,
     * ETag, Expires and Vary, and should not carry representation metadata
     * beyond them: the client already has the representation, and fields
     * that describe a body it is not sent invite mistakes (a Content-Type or
     * Content-Encoding of a 304 applied to the wrong bytes). Content-Length
     * and Transfer-Encoding are the writer's to decide. Last-Modified stays:
     * it guides cache updates where there is no ETag. */
    return !cache_hdr_name_is(h, "content-type") && !cache_hdr_name_is(h, "content-encoding") &&
           !cache_hdr_name_is(h, "content-language") && !cache_hdr_name_is(h, "content-range") &&
           !cache_hdr_name_is(h, "content-md5");
}

/* ---- HEAD responses (RFC 9111 4.3.5) --------------------------------------------------------- */

/* The first field of that name in h, trimmed. */
static bool
first_field(const struct cache_hdr *h, size_t n, const char *name, struct cache_str *out)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (cache_hdr_name_is(&h[i], name)) {
            out->p = h[i].value;
            out->len = h[i].vlen;
            cache_trim(&out->p, &out->len);
            return true;
        }
    }
    return false;
}

static bool
same_value(const struct cache_str *a, const struct cache_str *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

bool
cache_head_matches(const struct cache_obj *o, const struct cache_hdr *h, size_t n)
{
    struct cache_hdr sh;
    struct cache_str etag = {NULL, 0}, lm = {NULL, 0}, got;
    size_t pos = 0;
    uint64_t cl = 0;

    while (cache_obj_header_next(o, &pos, &sh)) {
        struct cache_str *dst = cache_hdr_name_is(&sh, "etag")            ? &etag
                                : cache_hdr_name_is(&sh, "last-modified") ? &lm
                                                                          : NULL;
        if (dst != NULL && dst->p == NULL) {
            dst->p = sh.value;
            dst->len = sh.vlen;
            cache_trim(&dst->p, &dst->len);
        }
    }
    /* every validator the HEAD response carries must be the stored one */
    if (first_field(h, n, "etag", &got) && (etag.p == NULL || !same_value(&got, &etag)))
        return false;
    if (first_field(h, n, "last-modified", &got)) {
        int64_t a, b;
        if (lm.p == NULL)
            return false;
        if (!same_value(&got, &lm) && !(cache_http_date_parse(got.p, got.len, &a) &&
                                        cache_http_date_parse(lm.p, lm.len, &b) && a == b))
            return false;
    }
    /* and so must the length it announces */
    if (first_field(h, n, "content-length", &got)) {
        size_t i;
        if (got.len == 0 || got.len > 19)
            return false;
        for (i = 0; i < got.len; i++) {
            if (got.p[i] < '0' || got.p[i] > '9')
                return false;
            cl = cl * 10 + (uint64_t)(got.p[i] - '0');
        }
        if (cl != o->body_len)
            return false;
    }
    return true;
}

/* ---- Cache-Status ---------------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool over;
};

static void
sb_put(struct sbuf *b, const char *s, size_t n)
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
sb_str(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Decimal, without snprintf (every response with Cache-Status formats one). */
static void
sb_int(struct sbuf *b, int64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[--i] = '-';
    sb_put(b, tmp + i, sizeof(tmp) - i);
}

static const char *
fwd_token(enum cache_fwd f)
{
    switch (f) {
    case CACHE_FWD_NONE: return NULL;
    case CACHE_FWD_BYPASS: return "bypass";
    case CACHE_FWD_METHOD: return "method";
    case CACHE_FWD_URI_MISS: return "uri-miss";
    case CACHE_FWD_VARY_MISS: return "vary-miss";
    case CACHE_FWD_MISS: return "miss";
    case CACHE_FWD_REQUEST: return "request";
    case CACHE_FWD_STALE: return "stale";
    case CACHE_FWD_PARTIAL: return "partial";
    }
    return NULL;
}

size_t
cache_status_format(const struct cache_status *s, char *buf, size_t cap)
{
    struct sbuf b = {buf, 0, cap, cap == 0};
    const char *fwd = fwd_token(s->fwd);
    size_t i;

    if (cap > 0)
        buf[0] = '\0';
    sb_str(&b, s->name != NULL ? s->name : "edge");
    if (fwd == NULL) {
        sb_str(&b, "; hit");
    } else {
        sb_str(&b, "; fwd=");
        sb_str(&b, fwd);
    }
    if (s->fwd_status > 0) {
        sb_str(&b, "; fwd-status=");
        sb_int(&b, s->fwd_status);
    }
    if (s->ttl != CACHE_UNSET) {
        sb_str(&b, "; ttl=");
        sb_int(&b, s->ttl);
    }
    if (s->stored)
        sb_str(&b, "; stored");
    if (s->collapsed)
        sb_str(&b, "; collapsed");
    if (s->key.p != NULL) {
        /* sf-string: printable ASCII, with '"' and '\' escaped; others as %XX */
        sb_str(&b, "; key=\"");
        for (i = 0; i < s->key.len; i++) {
            unsigned char ch = (unsigned char)s->key.p[i];
            char esc[4];
            if (ch == '"' || ch == '\\') {
                esc[0] = '\\';
                esc[1] = (char)ch;
                sb_put(&b, esc, 2);
            } else if (ch < 0x20 || ch > 0x7e) {
                snprintf(esc, sizeof(esc), "%%%02X", ch);
                sb_put(&b, esc, 3);
            } else {
                sb_put(&b, (const char *)&ch, 1);
            }
        }
        sb_str(&b, "\"");
    }
    if (s->detail.p != NULL) {
        sb_str(&b, "; detail=");
        for (i = 0; i < s->detail.len; i++) {
            char ch = s->detail.p[i];
            /* a token: anything else becomes '-' */
            if (!cache_is_tchar((unsigned char)ch) && ch != ':' && ch != '/')
                ch = '-';
            sb_put(&b, &ch, 1);
        }
    }
    if (b.over) {
        if (cap > 0)
            buf[0] = '\0';
        return 0;
    }
    return b.len;
}
