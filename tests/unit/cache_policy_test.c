/*
 * Unit tests of the cache policy (RFC 9111 / 5861 / 9213 / 9211): table-driven
 * Cache-Control and date parsing, storability, freshness, age arithmetic,
 * reuse decisions, stored/updated header fields, Cache-Status.
 */
#include "cache/cache.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------------------------- */

#define MAXH 32

/* Parses "Name: value\n..." into views into 'text' (which must outlive them). */
static size_t
hdrs(const char *text, struct cache_hdr *h)
{
    size_t n = 0;
    const char *p = text;

    while (*p != '\0' && n < MAXH) {
        const char *eol = strchr(p, '\n');
        const char *colon = strchr(p, ':');
        const char *v;
        if (eol == NULL)
            eol = p + strlen(p);
        assert_non_null(colon);
        assert_true(colon < eol);
        h[n].name = p;
        h[n].nlen = (size_t)(colon - p);
        v = colon + 1;
        while (*v == ' ')
            v++;
        h[n].value = v;
        h[n].vlen = (size_t)(eol - v);
        n++;
        p = *eol != '\0' ? eol + 1 : eol;
    }
    return n;
}

static void
resp(const char *text, int status, struct cache_resp_info *ri)
{
    struct cache_hdr h[MAXH];
    size_t n = hdrs(text, h);

    cache_resp_parse(h, n, status, ri);
}

static void
req(const char *text, struct cache_req_info *rq)
{
    struct cache_hdr h[MAXH];
    size_t n = hdrs(text, h);

    cache_req_parse(h, n, rq);
}

#define T0 784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */

/* ---- Cache-Control --------------------------------------------------------------------------- */

static void
test_cc_table(void **state)
{
    static const struct {
        const char *in;
        uint32_t flags;
        int64_t max_age, s_maxage, swr, sie, max_stale, min_fresh;
    } t[] = {
        {"", 0, 0, 0, 0, 0, 0, 0},
        {"max-age=60", CACHE_CC_MAX_AGE, 60, 0, 0, 0, 0, 0},
        {"MAX-AGE=60", CACHE_CC_MAX_AGE, 60, 0, 0, 0, 0, 0},
        {"max-age=\"60\"", CACHE_CC_MAX_AGE, 60, 0, 0, 0, 0, 0},
        {"max-age = 60", 0, 0, 0, 0, 0, 0, 0}, /* bad syntax: ignored */
        {"max-age=abc", CACHE_CC_MAX_AGE, 0, 0, 0, 0, 0, 0},
        {"max-age=-1", CACHE_CC_MAX_AGE, 0, 0, 0, 0, 0, 0},
        {"max-age=1.5", CACHE_CC_MAX_AGE, 0, 0, 0, 0, 0, 0},
        {"max-age", CACHE_CC_MAX_AGE, 0, 0, 0, 0, 0, 0},
        {"max-age=99999999999999999999", CACHE_CC_MAX_AGE, CACHE_DELTA_MAX, 0, 0, 0, 0, 0},
        {"max-age=10, max-age=20", CACHE_CC_MAX_AGE, 10, 0, 0, 0, 0, 0},
        {"s-maxage=5,max-age=10", CACHE_CC_MAX_AGE | CACHE_CC_S_MAXAGE, 10, 5, 0, 0, 0, 0},
        {"no-store", CACHE_CC_NO_STORE, 0, 0, 0, 0, 0, 0},
        {"no-cache", CACHE_CC_NO_CACHE, 0, 0, 0, 0, 0, 0},
        {"no-cache=\"set-cookie, x-a\"", CACHE_CC_NO_CACHE_FIELDS, 0, 0, 0, 0, 0, 0},
        {"no-cache=set-cookie", CACHE_CC_NO_CACHE_FIELDS, 0, 0, 0, 0, 0, 0},
        {"no-cache=\"\"", CACHE_CC_NO_CACHE, 0, 0, 0, 0, 0, 0},
        {"no-cache=\"a\\b\"", CACHE_CC_NO_CACHE, 0, 0, 0, 0, 0, 0},
        {"private", CACHE_CC_PRIVATE, 0, 0, 0, 0, 0, 0},
        {"private=\"x-user\"", CACHE_CC_PRIVATE_FIELDS, 0, 0, 0, 0, 0, 0},
        {"private=\"a,b,c,d,e,f,g,h,i\"", CACHE_CC_PRIVATE, 0, 0, 0, 0, 0, 0}, /* too many */
        {"public, must-revalidate, proxy-revalidate, immutable, no-transform",
         CACHE_CC_PUBLIC | CACHE_CC_MUST_REVALIDATE | CACHE_CC_PROXY_REVALIDATE |
             CACHE_CC_IMMUTABLE | CACHE_CC_NO_TRANSFORM,
         0, 0, 0, 0, 0, 0},
        {"max-age=600, stale-while-revalidate=30, stale-if-error=86400",
         CACHE_CC_MAX_AGE | CACHE_CC_SWR | CACHE_CC_SIE, 600, 0, 30, 86400, 0, 0},
        {"stale-while-revalidate=x", 0, 0, 0, 0, 0, 0, 0},
        {"max-stale", CACHE_CC_MAX_STALE, 0, 0, 0, 0, CACHE_DELTA_MAX, 0},
        {"max-stale=5", CACHE_CC_MAX_STALE, 0, 0, 0, 0, 5, 0},
        {"max-stale=x", 0, 0, 0, 0, 0, 0, 0},
        {"min-fresh=7, only-if-cached", CACHE_CC_MIN_FRESH | CACHE_CC_ONLY_IF_CACHED, 0, 0, 0, 0, 0,
         7},
        {"foo=\"a,max-age=5\", max-age=3", CACHE_CC_MAX_AGE, 3, 0, 0, 0, 0, 0},
        {",,, max-age=3 ,,", CACHE_CC_MAX_AGE, 3, 0, 0, 0, 0, 0},
        {"max-age=3 garbage, no-store", CACHE_CC_NO_STORE, 0, 0, 0, 0, 0, 0},
        {"max-age=\"3", 0, 0, 0, 0, 0, 0, 0},
        {"ext=\"q\\\"x\", public", CACHE_CC_PUBLIC, 0, 0, 0, 0, 0, 0},
        {"\t public \t", CACHE_CC_PUBLIC, 0, 0, 0, 0, 0, 0},
        {"no-store, Must-Understand", CACHE_CC_NO_STORE | CACHE_CC_MUST_UNDERSTAND, 0, 0, 0, 0, 0,
         0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cache_cc cc;
        memset(&cc, 0, sizeof(cc));
        assert_true(cache_cc_parse(t[i].in, strlen(t[i].in), false, &cc));
        if (cc.flags != t[i].flags)
            fail_msg("'%s': flags %#x, want %#x", t[i].in, cc.flags, t[i].flags);
        if ((cc.flags & CACHE_CC_MAX_AGE) && cc.max_age != t[i].max_age)
            fail_msg("'%s': max_age %lld", t[i].in, (long long)cc.max_age);
        if ((cc.flags & CACHE_CC_S_MAXAGE) && cc.s_maxage != t[i].s_maxage)
            fail_msg("'%s': s_maxage %lld", t[i].in, (long long)cc.s_maxage);
        if ((cc.flags & CACHE_CC_SWR) && cc.swr != t[i].swr)
            fail_msg("'%s': swr", t[i].in);
        if ((cc.flags & CACHE_CC_SIE) && cc.sie != t[i].sie)
            fail_msg("'%s': sie", t[i].in);
        if ((cc.flags & CACHE_CC_MAX_STALE) && cc.max_stale != t[i].max_stale)
            fail_msg("'%s': max_stale", t[i].in);
        if ((cc.flags & CACHE_CC_MIN_FRESH) && cc.min_fresh != t[i].min_fresh)
            fail_msg("'%s': min_fresh", t[i].in);
    }
}

static void
test_cc_fields(void **state)
{
    struct cache_cc cc;
    const char *s = "no-cache=\"Set-Cookie, X-A\", private=x-user";

    (void)state;
    memset(&cc, 0, sizeof(cc));
    cache_cc_parse(s, strlen(s), false, &cc);
    assert_int_equal(cc.n_nc_fields, 2);
    assert_int_equal(cc.nc_fields[0].len, 10);
    assert_memory_equal(cc.nc_fields[0].p, "Set-Cookie", 10);
    assert_memory_equal(cc.nc_fields[1].p, "X-A", 3);
    assert_int_equal(cc.n_priv_fields, 1);
    assert_memory_equal(cc.priv_fields[0].p, "x-user", 6);
}

static void
test_cc_strict(void **state)
{
    static const struct {
        const char *in;
        bool ok;
    } t[] = {
        {"max-age=60", true},
        {"max-age=60, no-store", true},
        {"s-maxage=1;x=2, public", true},
        {"Max-Age=60", false},
        {"max-age=\"60", false},
        {"max-age=60 x", false},
        {"max-age=", false},
        {"=5", false},
        {"", true},
        /* RFC 8941 syntax */
        {"max-age =10", false},
        {"max-age= 10", false},
        {"MaX-aGe=3600", false},
        {"max-age=10, &&&&&", false},
        {"max-age=5,", false},
        {"max-age=5 , \tpublic", true},
        {"max-age=1234567890123456", false}, /* Integers have at most 15 digits */
        {"max-age=1.2345", false},
        {"max-age=1.", false},
        {"a=\"\\x\"", false}, /* only \" and \\ escape */
        {"a=\"\x01\"", false},
        {"a=?2", false},
        {"a=:YWJj:, b=(x \"y\" 1);p, c=*tok/x:y, d=-1.5, e=?0;q=1", true},
        {"a=(x", false},
        {"a=:Y!:", false},
        {"a;", false},
    };
    static const struct {
        const char *in;
        uint32_t flags;
        int64_t max_age;
    } v[] = {
        /* a value of the wrong type is not consumed (RFC 9213 2.1) */
        {"max-age=\"60\"", 0, 0},
        {"max-age=60.0", 0, 0},
        {"max-age=-1", 0, 0},
        {"max-age=abc", 0, 0},
        {"max-age", 0, 0},
        {"max-age=60;x=1", CACHE_CC_MAX_AGE, 60},
        {"max-age=99999999999", CACHE_CC_MAX_AGE, CACHE_DELTA_MAX},
        /* a Dictionary: the last member with a key wins */
        {"max-age=1, max-age=2", CACHE_CC_MAX_AGE, 2},
        {"max-age=1, max-age=\"2\"", 0, 0},
        {"no-store, no-store=?0", 0, 0},
        {"no-store=?1, public", CACHE_CC_NO_STORE | CACHE_CC_PUBLIC, 0},
        {"no-store=5", 0, 0},
        {"private=\"set-cookie\"", CACHE_CC_PRIVATE_FIELDS, 0},
        {"private", CACHE_CC_PRIVATE, 0},
        {"private=(a b)", 0, 0},
        {"no-cache=\"a\", no-cache", CACHE_CC_NO_CACHE, 0},
        {"foobar, max-age=3600", CACHE_CC_MAX_AGE, 3600},
        {"s-maxage=0", CACHE_CC_S_MAXAGE, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cache_cc cc;
        memset(&cc, 0, sizeof(cc));
        if (cache_cc_parse(t[i].in, strlen(t[i].in), true, &cc) != t[i].ok)
            fail_msg("strict '%s': want %d", t[i].in, t[i].ok);
    }
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct cache_cc cc;
        memset(&cc, 0, sizeof(cc));
        if (!cache_cc_parse(v[i].in, strlen(v[i].in), true, &cc))
            fail_msg("strict '%s': refused", v[i].in);
        if (cc.flags != v[i].flags)
            fail_msg("strict '%s': flags %#x, want %#x", v[i].in, cc.flags, v[i].flags);
        if ((cc.flags & CACHE_CC_MAX_AGE) && cc.max_age != v[i].max_age)
            fail_msg("strict '%s': max_age %lld", v[i].in, (long long)cc.max_age);
    }
}

/* ---- dates ----------------------------------------------------------------------------------- */

static void
test_dates(void **state)
{
    static const struct {
        const char *in;
        bool ok;
        int64_t t;
    } t[] = {
        /* RFC 9110 5.6.7's three examples */
        {"Sun, 06 Nov 1994 08:49:37 GMT", true, T0},
        {"Sunday, 06-Nov-94 08:49:37 GMT", true, T0},
        {"Sun Nov  6 08:49:37 1994", true, T0},
        {"  Sun, 06 Nov 1994 08:49:37 GMT \t", true, T0},
        {"Thu, 01 Jan 1970 00:00:00 GMT", true, 0},
        {"Wed, 31 Dec 1969 23:59:59 GMT", true, -1},
        {"Tue, 29 Feb 2000 12:00:00 GMT", true, 951825600},
        {"Thu, 01 Jan 2037 00:00:00 GMT", true, 2114380800},
        {"Fri, 31 Dec 9999 23:59:59 GMT", true, 253402300799LL},
        {"Thursday, 01-Jan-37 00:00:00 GMT", true, 2114380800},
        {"Thu Jan  1 00:00:00 1970", true, 0},
        {"Sat Dec 31 23:59:60 2016", true, 1483228799},
        {"Sun, 06 Nov 1994 08:49:37 gMT", true, T0},
        {"SUN, 06 NOV 1994 08:49:37 GMT", true, T0},
        {"sunday, 06-nov-94 08:49:37 gmt", true, T0},
        {"Thu, 18 Aug 2050 02:01:18 AEST", false, 0},
        {"Thu, 18 Aug 50 02:01:18 GMT", false, 0},
        {"Thu 18 Aug 2050 02:01:18 GMT", false, 0},
        {"Thu, 18  Aug  2050 02:01:18 GMT", false, 0},
        {"Thu, 18-Aug-2050 02:01:18 GMT", false, 0},
        {"Thu, 18 Aug 2050 02.01.18 GMT", false, 0},
        {"Thu, 18 Aug 2050 2:01:18 GMT", false, 0},
        {"Sun, 06 Nov 1994 08:49:37 UTC", false, 0},
        {"Sun, 06 Nov 1994 08:49:37", false, 0},
        {"Sun, 6 Nov 1994 08:49:37 GMT", false, 0},
        {"Sun, 31 Nov 1994 08:49:37 GMT", false, 0},
        {"Sun, 29 Feb 1900 08:49:37 GMT", false, 0},
        {"Sun, 06 Foo 1994 08:49:37 GMT", false, 0},
        {"Sun, 06 Nov 1994 24:49:37 GMT", false, 0},
        {"Sun, 06 Nov 1994 08:60:37 GMT", false, 0},
        {"Sun, 06 Nov 1994 08:49:61 GMT", false, 0},
        {"Xyz, 06 Nov 1994 08:49:37 GMT", false, 0},
        {"Sunday, 06-Nov-1994 08:49:37 GMT", false, 0},
        {"Sun Nov 6 08:49:37 1994", false, 0},
        {"0", false, 0},
        {"", false, 0},
        {"Sun", false, 0},
        {"Sun,", false, 0},
        {"Sun, 06 Nov 1994 08:49:37 GMTx", false, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int64_t v = 12345;
        bool ok = cache_http_date_parse(t[i].in, strlen(t[i].in), &v);
        if (ok != t[i].ok)
            fail_msg("'%s': ok=%d", t[i].in, ok);
        if (ok && v != t[i].t)
            fail_msg("'%s': %lld, want %lld", t[i].in, (long long)v, (long long)t[i].t);
    }
}

static void
test_date_format(void **state)
{
    char buf[40];
    int64_t t, back;

    (void)state;
    assert_int_equal(cache_http_date_format(T0, buf, sizeof(buf)), 29);
    assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(cache_http_date_format(0, buf, sizeof(buf)), 29);
    assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_int_equal(cache_http_date_format(T0, buf, 29), 0);
    for (t = -86400 * 400; t < 4102444800LL; t += 86400 * 37 + 3607) {
        assert_int_equal(cache_http_date_format(t, buf, sizeof(buf)), 29);
        assert_true(cache_http_date_parse(buf, 29, &back));
        assert_int_equal(back, t);
    }
}

/* ---- response / request parsing -------------------------------------------------------------- */

static void
test_resp_parse(void **state)
{
    struct cache_resp_info ri;

    (void)state;
    resp("Date: Sun, 06 Nov 1994 08:49:37 GMT\n"
         "Expires: Sun, 06 Nov 1994 09:49:37 GMT\n"
         "Age: 12\n"
         "Last-Modified: Sun, 06 Nov 1994 08:00:00 GMT\n"
         "ETag: \"abc\"\n"
         "Cache-Control: public\n"
         "cache-control: max-age=30\n"
         "Vary: Accept-Encoding\n",
         200, &ri);
    assert_int_equal(ri.date, T0);
    assert_int_equal(ri.expires, T0 + 3600);
    assert_int_equal(ri.age, 12);
    assert_int_equal(ri.last_modified, T0 - 2977);
    assert_int_equal(ri.etag.len, 5);
    assert_true(ri.cc.flags & CACHE_CC_PUBLIC);
    assert_int_equal(ri.cc.max_age, 30);
    assert_true(ri.has_vary);
    assert_false(ri.vary_star);
    assert_false(ri.cdn_cc);

    resp("Expires: 0\nAge: -5\nVary: a, *\n", 200, &ri);
    assert_int_equal(ri.expires, 0); /* invalid = in the past */
    assert_true(ri.age == CACHE_UNSET);
    assert_true(ri.vary_star);
    assert_true(ri.date == CACHE_UNSET);

    resp("Age: 10, 20\nAge: 30\n", 200, &ri);
    assert_int_equal(ri.age, 10);
    resp("Age: 1.5\n", 200, &ri);
    assert_true(ri.age == CACHE_UNSET);

    /* RFC 9213: CDN-Cache-Control replaces Cache-Control and Expires */
    resp("Cache-Control: no-store\nExpires: Sun, 06 Nov 1994 09:49:37 GMT\n"
         "CDN-Cache-Control: max-age=600\n",
         200, &ri);
    assert_true(ri.cdn_cc);
    assert_int_equal(ri.cc.flags, CACHE_CC_MAX_AGE);
    assert_int_equal(ri.cc.max_age, 600);
    assert_true(ri.expires == CACHE_UNSET);
    /* an invalid CDN-Cache-Control is ignored as a whole */
    resp("Cache-Control: max-age=5\nCDN-Cache-Control: max-age=600, Bad\n", 200, &ri);
    assert_false(ri.cdn_cc);
    assert_int_equal(ri.cc.max_age, 5);
    resp("CDN-Cache-Control: no-store\n", 200, &ri);
    assert_true(ri.cdn_cc);
    assert_true(ri.cc.flags & CACHE_CC_NO_STORE);
    /* an empty one is ignored too (RFC 9213 2.1), also among other lines */
    resp("Cache-Control: max-age=5\nCDN-Cache-Control: \n", 200, &ri);
    assert_false(ri.cdn_cc);
    assert_int_equal(ri.cc.max_age, 5);
    resp("Cache-Control: max-age=5\nCDN-Cache-Control: max-age=9\nCDN-Cache-Control: \n", 200, &ri);
    assert_false(ri.cdn_cc);
    /* lines of one Dictionary: the last max-age wins */
    resp("CDN-Cache-Control: max-age=9\nCDN-Cache-Control: max-age=7, public\n", 200, &ri);
    assert_true(ri.cdn_cc);
    assert_int_equal(ri.cc.max_age, 7);
    /* valid, but its only directive has the wrong type: no freshness, and
     * Cache-Control is still replaced */
    resp("Cache-Control: no-store\nCDN-Cache-Control: max-age=\"10000\"\n", 200, &ri);
    assert_true(ri.cdn_cc);
    assert_int_equal(ri.cc.flags, 0);
}

/* Surrogate-Control: after CDN-Cache-Control, before Cache-Control and Expires */
static void
test_surrogate_control(void **state)
{
    static const struct {
        const char *in;
        bool used;
        uint32_t flags;
        int64_t max_age;
    } t[] = {
        {"Surrogate-Control: max-age=3600\n", true, CACHE_CC_MAX_AGE, 3600},
        {"Surrogate-Control: MaX-aGe=3600\n", true, CACHE_CC_MAX_AGE, 3600},
        {"Surrogate-Control: foobar, max-age=3600\n", true, CACHE_CC_MAX_AGE, 3600},
        {"Surrogate-Control: max-age=99999999999\n", true, CACHE_CC_MAX_AGE, CACHE_DELTA_MAX},
        {"Surrogate-Control: max-age=60+600\n", true, CACHE_CC_MAX_AGE, 60},
        {"Surrogate-Control: max-age=abc\n", true, CACHE_CC_MAX_AGE, 0},
        /* shorter or longer than Cache-Control: it wins either way */
        {"Cache-Control: max-age=3600\nSurrogate-Control: max-age=1\n", true, CACHE_CC_MAX_AGE, 1},
        {"Cache-Control: no-store\nSurrogate-Control: max-age=600\n", true, CACHE_CC_MAX_AGE, 600},
        {"Cache-Control: max-age=60\nSurrogate-Control: no-store\n", true, CACHE_CC_NO_STORE, 0},
        {"Surrogate-Control: no-store-remote\n", true, CACHE_CC_NO_STORE, 0},
        /* targeted: ours, someone else's */
        {"Surrogate-Control: max-age=3600;edge\n", true, CACHE_CC_MAX_AGE, 3600},
        {"Cache-Control: max-age=5\nSurrogate-Control: max-age=3600;not-for-you\n", false,
         CACHE_CC_MAX_AGE, 5},
        {"Surrogate-Control: max-age=60, max-age=600;edge\n", true, CACHE_CC_MAX_AGE, 600},
        {"Surrogate-Control: max-age=60\nSurrogate-Control: no-store;edge\n", true,
         CACHE_CC_MAX_AGE | CACHE_CC_NO_STORE, 60},
        /* nothing for a cache in it, or not parseable: Cache-Control decides */
        {"Cache-Control: max-age=5\nSurrogate-Control: content=\"ESI/1.0\"\n", false,
         CACHE_CC_MAX_AGE, 5},
        {"Cache-Control: max-age=1\nSurrogate-Control: max-age =100\n", false, CACHE_CC_MAX_AGE, 1},
        {"Cache-Control: max-age=1\nSurrogate-Control: max-age= 100\n", false, CACHE_CC_MAX_AGE, 1},
        {"Cache-Control: max-age=1\nSurrogate-Control: max-age=5;\n", false, CACHE_CC_MAX_AGE, 1},
        /* CDN-Cache-Control is first */
        {"CDN-Cache-Control: max-age=7\nSurrogate-Control: max-age=600\n", false, CACHE_CC_MAX_AGE,
         7},
    };
    size_t i;
    struct cache_resp_info ri;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        resp(t[i].in, 200, &ri);
        if (ri.surrogate != t[i].used || ri.cc.flags != t[i].flags ||
            ((ri.cc.flags & CACHE_CC_MAX_AGE) && ri.cc.max_age != t[i].max_age))
            fail_msg("'%s': used %d flags %#x max-age %lld", t[i].in, ri.surrogate, ri.cc.flags,
                     (long long)ri.cc.max_age);
    }
    /* it replaces Expires too */
    resp("Expires: Sun, 06 Nov 1994 09:49:37 GMT\nDate: Sun, 06 Nov 1994 08:49:37 GMT\n"
         "Surrogate-Control: max-age=0\n",
         200, &ri);
    assert_true(ri.surrogate);
    assert_true(ri.expires == CACHE_UNSET);
    assert_int_equal(cache_freshness(&ri, NULL, T0), 0);
    resp("Expires: Sun, 06 Nov 1994 09:49:37 GMT\nDate: Sun, 06 Nov 1994 08:49:37 GMT\n"
         "Surrogate-Control: max-age=60\nSet-Cookie: a=b\n",
         200, &ri);
    assert_int_equal(cache_freshness(&ri, NULL, T0), 60);
    /* a lifetime set for this cache declares the response shared, as
     * CDN-Cache-Control's does (the Set-Cookie rule of cache_storable) */
    assert_int_equal(cache_storable("GET", 3, NULL, &ri, NULL), CACHE_STORE_OK);
}

static void
test_req_parse(void **state)
{
    struct cache_req_info rq;

    (void)state;
    req("Pragma: no-cache\n", &rq);
    assert_true(rq.cc.flags & CACHE_CC_NO_CACHE);
    req("Pragma: no-cache\nCache-Control: max-age=5\n", &rq);
    assert_false(rq.cc.flags & CACHE_CC_NO_CACHE); /* CC wins over Pragma */
    assert_int_equal(rq.cc.max_age, 5);
    req("Authorization: Basic x\nRange: bytes=0-1\nIf-None-Match: \"a\"\n", &rq);
    assert_true(rq.authorization);
    assert_true(rq.range);
    assert_true(rq.conditional);
    req("Cache-Control: max-stale, min-fresh=3, only-if-cached, no-store\n", &rq);
    assert_int_equal(rq.cc.flags, CACHE_CC_MAX_STALE | CACHE_CC_MIN_FRESH |
                                      CACHE_CC_ONLY_IF_CACHED | CACHE_CC_NO_STORE);
}

/* ---- storable -------------------------------------------------------------------------------- */

static void
test_storable(void **state)
{
    static const struct {
        const char *method;
        int status;
        const char *req, *resp;
        int64_t route_ttl;
        enum cache_store_verdict want;
    } t[] = {
        {"GET", 200, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_OK},
        {"HEAD", 200, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_NO_METHOD},
        {"POST", 200, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_NO_METHOD},
        {"get", 200, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_NO_METHOD},
        {"GET", 206, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_NO_STATUS},
        {"GET", 304, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_NO_STATUS},
        {"GET", 100, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_NO_STATUS},
        /* Content-Range means nothing in a 200 (RFC 9110 14.4): stored as is... */
        {"GET", 200, "", "Cache-Control: max-age=60\nContent-Range: bytes 0-1/2\n", CACHE_UNSET,
         CACHE_STORE_OK},
        /* ...but a request with Range stores only a plain 200 */
        {"GET", 200, "Range: bytes=0-1\n",
         "Cache-Control: max-age=60\nContent-Range: bytes 0-1/2\n", CACHE_UNSET,
         CACHE_STORE_NO_STATUS},
        {"GET", 416, "Range: bytes=9-\n", "Cache-Control: max-age=60\nContent-Range: bytes */2\n",
         CACHE_UNSET, CACHE_STORE_NO_STATUS},
        {"GET", 416, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 200, "Range: bytes=0-1\n", "Cache-Control: max-age=60\n", CACHE_UNSET,
         CACHE_STORE_OK},
        /* any status with explicit freshness */
        {"GET", 500, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 302, "", "Expires: Sun, 06 Nov 1994 09:49:37 GMT\n", CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 302, "", "ETag: \"a\"\n", CACHE_UNSET, CACHE_STORE_NO_FRESHNESS},
        {"GET", 302, "", "Cache-Control: public\nETag: \"a\"\n", CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 599, "", "Cache-Control: s-maxage=1\n", CACHE_UNSET, CACHE_STORE_OK},
        /* heuristically cacheable statuses need a validator or route ttl= */
        {"GET", 200, "", "", CACHE_UNSET, CACHE_STORE_NO_FRESHNESS},
        {"GET", 200, "", "", 60, CACHE_STORE_OK},
        {"GET", 500, "", "", 60, CACHE_STORE_NO_FRESHNESS},
        {"GET", 404, "", "Last-Modified: Sun, 06 Nov 1994 08:00:00 GMT\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 200, "", "ETag: \"x\"\n", CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 200, "", "Cache-Control: no-cache\n", CACHE_UNSET, CACHE_STORE_NO_FRESHNESS},
        {"GET", 200, "", "Cache-Control: no-cache\nETag: \"x\"\n", CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 200, "", "Cache-Control: no-store, max-age=60\n", CACHE_UNSET,
         CACHE_STORE_NO_STORE},
        {"GET", 200, "Cache-Control: no-store\n", "Cache-Control: max-age=60\n", CACHE_UNSET,
         CACHE_STORE_NO_STORE},
        {"GET", 200, "", "Cache-Control: private, max-age=60\n", CACHE_UNSET, CACHE_STORE_PRIVATE},
        {"GET", 200, "", "Cache-Control: private=\"x-u\", max-age=60\n", CACHE_UNSET,
         CACHE_STORE_OK},
        /* RFC 9111 3.5 */
        {"GET", 200, "Authorization: x\n", "Cache-Control: max-age=60\n", CACHE_UNSET,
         CACHE_STORE_AUTHORIZATION},
        {"GET", 200, "Authorization: x\n", "Cache-Control: max-age=60, public\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 200, "Authorization: x\n", "Cache-Control: s-maxage=60\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 200, "Authorization: x\n", "Cache-Control: max-age=60, must-revalidate\n",
         CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 200, "", "Cache-Control: max-age=60\nVary: *\n", CACHE_UNSET,
         CACHE_STORE_VARY_STAR},
        /* CDN-Cache-Control overrides */
        {"GET", 200, "", "Cache-Control: no-store\nCDN-Cache-Control: max-age=60\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 200, "", "Cache-Control: max-age=60\nCDN-Cache-Control: no-store\n", CACHE_UNSET,
         CACHE_STORE_NO_STORE},
        {"GET", 200, "", "Cache-Control: private\nCDN-Cache-Control: max-age=60\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 200, "", "Expires: Sun, 06 Nov 1994 09:49:37 GMT\nCDN-Cache-Control: public\n",
         CACHE_UNSET, CACHE_STORE_NO_FRESHNESS},
        /* Set-Cookie: only when declared shared (cache.h) */
        {"GET", 200, "", "Cache-Control: max-age=60\nSet-Cookie: s=1\n", CACHE_UNSET,
         CACHE_STORE_SET_COOKIE},
        {"GET", 200, "", "ETag: \"x\"\nset-cookie: s=1\n", CACHE_UNSET, CACHE_STORE_SET_COOKIE},
        {"GET", 200, "", "Expires: Sun, 06 Nov 1994 09:49:37 GMT\nSet-Cookie: s=1\n", CACHE_UNSET,
         CACHE_STORE_SET_COOKIE},
        {"GET", 200, "", "Cache-Control: max-age=60, public\nSet-Cookie: s=1\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 200, "", "Cache-Control: s-maxage=60\nSet-Cookie: s=1\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 200, "", "Cache-Control: max-age=60\nSet-Cookie: s=1\n", 30, CACHE_STORE_OK},
        {"GET", 200, "", "Set-Cookie: s=1\n", 30, CACHE_STORE_OK},
        {"GET", 200, "",
         "Cache-Control: max-age=60\nCDN-Cache-Control: max-age=60\nSet-Cookie: a\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 200, "", "Cache-Control: max-age=60, private=\"Set-Cookie\"\nSet-Cookie: s=1\n",
         CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 200, "", "Cache-Control: max-age=60, no-cache=\"x, set-cookie\"\nSet-Cookie: a\n",
         CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 200, "", "Cache-Control: max-age=60, private=\"x-user\"\nSet-Cookie: s=1\n",
         CACHE_UNSET, CACHE_STORE_SET_COOKIE},
        /* must-understand: a known status ignores no-store, an unknown one is not stored */
        {"GET", 200, "", "Cache-Control: max-age=60, no-store, must-understand\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 404, "", "Cache-Control: max-age=60, no-store, must-understand\n", CACHE_UNSET,
         CACHE_STORE_OK},
        {"GET", 599, "", "Cache-Control: max-age=60, no-store, must-understand\n", CACHE_UNSET,
         CACHE_STORE_NO_STATUS},
        {"GET", 599, "", "Cache-Control: max-age=60, must-understand\n", CACHE_UNSET,
         CACHE_STORE_NO_STATUS},
        {"GET", 299, "", "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_STORE_OK},
        {"GET", 200, "Cache-Control: no-store\n",
         "Cache-Control: max-age=60, no-store, must-understand\n", CACHE_UNSET,
         CACHE_STORE_NO_STORE},
        {"GET", 200, "", "Cache-Control: no-store\nCDN-Cache-Control: must-understand, max-age=9\n",
         CACHE_UNSET, CACHE_STORE_OK},
        /* the stronger verdicts come first */
        {"GET", 200, "", "Cache-Control: private, max-age=60\nSet-Cookie: s=1\n", CACHE_UNSET,
         CACHE_STORE_PRIVATE},
        {"GET", 200, "", "Cache-Control: no-store\nSet-Cookie: s=1\n", 30, CACHE_STORE_NO_STORE},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cache_resp_info ri;
        struct cache_req_info rq;
        struct cache_route rt;
        enum cache_store_verdict v;
        cache_route_init(&rt);
        rt.ttl = t[i].route_ttl;
        resp(t[i].resp, t[i].status, &ri);
        req(t[i].req, &rq);
        v = cache_storable(t[i].method, strlen(t[i].method), &rq, &ri, &rt);
        if (v != t[i].want)
            fail_msg("#%zu %s %d [%s]: %s, want %s", i, t[i].method, t[i].status, t[i].resp,
                     cache_store_verdict_str(v), cache_store_verdict_str(t[i].want));
    }
    {
        struct cache_resp_info ri;
        struct cache_route rt;
        cache_route_init(&rt);
        rt.enabled = false;
        resp("Cache-Control: max-age=60\n", 200, &ri);
        assert_int_equal(cache_storable("GET", 3, NULL, &ri, &rt), CACHE_STORE_DISABLED);
        assert_int_equal(cache_storable("GET", 3, NULL, &ri, NULL), CACHE_STORE_OK);
        assert_string_equal(cache_store_verdict_str(CACHE_STORE_PRIVATE), "private");
        assert_string_equal(cache_store_verdict_str(CACHE_STORE_SET_COOKIE), "set-cookie");
    }
}

/* ---- freshness ------------------------------------------------------------------------------- */

static void
test_freshness(void **state)
{
    static const struct {
        int status;
        const char *resp;
        int64_t ttl, max_ttl, want;
    } t[] = {
        {200, "Cache-Control: max-age=60\n", CACHE_UNSET, CACHE_UNSET, 60},
        {200, "Cache-Control: max-age=60, s-maxage=10\n", CACHE_UNSET, CACHE_UNSET, 10},
        {200, "Cache-Control: s-maxage=100, max-age=10\n", CACHE_UNSET, CACHE_UNSET, 100},
        {200, "Cache-Control: max-age=60\nExpires: Sun, 06 Nov 1994 08:49:38 GMT\n", CACHE_UNSET,
         CACHE_UNSET, 60},
        {200, "Date: Sun, 06 Nov 1994 08:49:37 GMT\nExpires: Sun, 06 Nov 1994 09:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 3600},
        /* no Date: the response time stands in */
        {200, "Expires: Sun, 06 Nov 1994 08:59:37 GMT\n", CACHE_UNSET, CACHE_UNSET, 600},
        {200, "Date: Sun, 06 Nov 1994 08:49:37 GMT\nExpires: Sun, 06 Nov 1994 07:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 0},
        {200, "Expires: 0\n", CACHE_UNSET, CACHE_UNSET, 0},
        /* heuristic: 10% of Date - Last-Modified, capped at a day */
        {200, "Date: Sun, 06 Nov 1994 08:49:37 GMT\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 360},
        {200, "Date: Sun, 06 Nov 1994 08:49:37 GMT\nLast-Modified: Sun, 06 Nov 1984 07:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, CACHE_HEURISTIC_MAX},
        {500, "Date: Sun, 06 Nov 1994 08:49:37 GMT\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 0},
        {500,
         "Cache-Control: public\nDate: Sun, 06 Nov 1994 08:49:37 GMT\n"
         "Last-Modified: Sun, 06 Nov 1994 07:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 360},
        {200, "Date: Sun, 06 Nov 1994 08:49:37 GMT\nLast-Modified: Sun, 06 Nov 1994 09:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 0},
        /* route ttl= replaces the heuristic, never explicit freshness */
        {200, "Last-Modified: Sun, 06 Nov 1994 07:49:37 GMT\n", 3600, CACHE_UNSET, 3600},
        {200, "Cache-Control: max-age=5\n", 3600, CACHE_UNSET, 5},
        {200, "", 3600, CACHE_UNSET, 3600},
        {200, "Cache-Control: max-age=5000\n", CACHE_UNSET, 100, 100},
        {200, "Cache-Control: no-cache, max-age=5000\n", CACHE_UNSET, CACHE_UNSET, 0},
        {200, "Cache-Control: max-age=x\n", CACHE_UNSET, CACHE_UNSET, 0},
        {200, "CDN-Cache-Control: max-age=50\nCache-Control: max-age=5\n", CACHE_UNSET, CACHE_UNSET,
         50},
        {200, "CDN-Cache-Control: public\nExpires: Sun, 06 Nov 1994 09:49:37 GMT\n", 7, CACHE_UNSET,
         7},
        /* the extremes: no overflow, no wrap-around to "fresh" */
        {200, "Cache-Control: max-age=99999999999999999999999999\n", CACHE_UNSET, CACHE_UNSET,
         CACHE_DELTA_MAX},
        {200, "Cache-Control: s-maxage=-1, max-age=60\n", CACHE_UNSET, CACHE_UNSET, 0},
        {200, "Date: Thu, 01 Jan 1970 00:00:00 GMT\nExpires: Fri, 31 Dec 9999 23:59:59 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 253402300799LL},
        {200, "Date: Fri, 31 Dec 9999 23:59:59 GMT\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 0},
        {200, "Date: Fri, 31 Dec 9999 23:59:59 GMT\nLast-Modified: Thu, 01 Jan 1970 00:00:00 GMT\n",
         CACHE_UNSET, CACHE_UNSET, CACHE_HEURISTIC_MAX},
        {200, "Expires: Wed, 31 Dec 1969 23:59:59 GMT\n", CACHE_UNSET, CACHE_UNSET, 0},
        /* heuristics only for statuses cacheable by default */
        {203, "Date: Sun, 06 Nov 1994 08:49:37 GMT\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 360},
        {302, "Date: Sun, 06 Nov 1994 08:49:37 GMT\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 0},
        {201, "Date: Sun, 06 Nov 1994 08:49:37 GMT\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 0},
        /* Surrogate-Control's max-age, like CDN-Cache-Control's, replaces Expires */
        {200,
         "Surrogate-Control: max-age=30\nDate: Sun, 06 Nov 1994 08:49:37 GMT\n"
         "Expires: Sun, 06 Nov 1994 09:49:37 GMT\n",
         CACHE_UNSET, CACHE_UNSET, 30},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cache_resp_info ri;
        struct cache_route rt;
        int64_t got;
        cache_route_init(&rt);
        rt.ttl = t[i].ttl;
        rt.max_ttl = t[i].max_ttl;
        resp(t[i].resp, t[i].status, &ri);
        got = cache_freshness(&ri, &rt, T0);
        if (got != t[i].want)
            fail_msg("#%zu [%s]: %lld, want %lld", i, t[i].resp, (long long)got,
                     (long long)t[i].want);
    }
}

/* RFC 9111 4.2.3 arithmetic */
static void
test_age(void **state)
{
    struct cache_resp_info ri;

    (void)state;
    /* Date 10 s before the response arrived, upstream Age 3, 2 s round trip:
     * apparent 10, corrected 3 + 2 = 5 -> 10 */
    resp("Date: Sun, 06 Nov 1994 08:49:27 GMT\nAge: 3\n", 200, &ri);
    assert_int_equal(cache_initial_age(&ri, T0 - 2, T0), 10);
    /* Age dominates */
    resp("Date: Sun, 06 Nov 1994 08:49:37 GMT\nAge: 100\n", 200, &ri);
    assert_int_equal(cache_initial_age(&ri, T0 - 2, T0), 102);
    /* Date in the future: apparent age 0 */
    resp("Date: Sun, 06 Nov 1994 09:49:37 GMT\n", 200, &ri);
    assert_int_equal(cache_initial_age(&ri, T0, T0), 0);
    resp("", 200, &ri);
    assert_int_equal(cache_initial_age(&ri, T0 - 1, T0), 1);
    assert_int_equal(cache_current_age(10, T0, T0 + 50), 60);
    assert_int_equal(cache_current_age(10, T0, T0 - 50), 10);
    /* the largest Age, a slow origin, a very old Date: no overflow */
    resp("Date: Thu, 01 Jan 1970 00:00:00 GMT\nAge: 999999999999999999999\n", 200, &ri);
    assert_int_equal(ri.age, CACHE_DELTA_MAX);
    assert_int_equal(cache_initial_age(&ri, T0 - 100, T0), CACHE_DELTA_MAX + 100);
    resp("Date: Thu, 01 Jan 1970 00:00:00 GMT\n", 200, &ri);
    assert_int_equal(cache_initial_age(&ri, T0 - 100, T0), T0);
    resp("Age: 2147483648\n", 200, &ri);
    assert_int_equal(cache_initial_age(&ri, T0 - 100, T0), CACHE_DELTA_MAX + 100);
    /* Age junk is ignored (RFC 9111 5.1): the list's first member counts */
    static const char *const junk[] = {"abc", "-1", "1.5", "7200;foo=bar", "", " , 5", "0x10"};
    for (size_t k = 0; k < sizeof(junk) / sizeof(junk[0]); k++) {
        struct cache_hdr h = {"Age", 3, junk[k], strlen(junk[k])};
        cache_resp_parse(&h, 1, 200, &ri);
        if (ri.age != CACHE_UNSET)
            fail_msg("Age '%s' gave %lld", junk[k], (long long)ri.age);
    }
    resp("Age:  42 , 7\n", 200, &ri);
    assert_int_equal(ri.age, 42);
}

/* ---- decisions ------------------------------------------------------------------------------- */

static void
policy(const char *resp_text, const struct cache_route *rt, struct cache_policy *p)
{
    struct cache_resp_info ri;

    resp(resp_text, 200, &ri);
    cache_policy_from_resp(&ri, rt, T0, T0, p);
}

static void
test_decide(void **state)
{
    static const struct {
        const char *resp, *req;
        int64_t elapsed, route_swr, route_sie;
        enum cache_use use;
        bool revalidate, sie;
        int64_t ttl;
    } t[] = {
        {"Cache-Control: max-age=60\nETag: \"a\"\n", "", 10, CACHE_UNSET, CACHE_UNSET,
         CACHE_USE_FRESH, false, false, 50},
        {"Cache-Control: max-age=60\nETag: \"a\"\n", "", 60, CACHE_UNSET, CACHE_UNSET,
         CACHE_REVALIDATE, false, false, 0},
        {"Cache-Control: max-age=60\n", "", 61, CACHE_UNSET, CACHE_UNSET, CACHE_MUST_MISS, false,
         false, -1},
        /* stale-while-revalidate */
        {"Cache-Control: max-age=60, stale-while-revalidate=30\n", "", 80, CACHE_UNSET, CACHE_UNSET,
         CACHE_USE_STALE, true, false, -20},
        {"Cache-Control: max-age=60, stale-while-revalidate=30\n", "", 91, CACHE_UNSET, CACHE_UNSET,
         CACHE_MUST_MISS, false, false, -31},
        {"Cache-Control: max-age=60\n", "", 80, 30, CACHE_UNSET, CACHE_USE_STALE, true, false, -20},
        {"Cache-Control: max-age=60, stale-while-revalidate=5\n", "", 80, 30, CACHE_UNSET,
         CACHE_MUST_MISS, false, false, -20},
        {"Cache-Control: max-age=60, stale-while-revalidate=30, must-revalidate\n", "", 80,
         CACHE_UNSET, CACHE_UNSET, CACHE_MUST_MISS, false, false, -20},
        {"Cache-Control: s-maxage=60, stale-while-revalidate=30\n", "", 80, CACHE_UNSET,
         CACHE_UNSET, CACHE_MUST_MISS, false, false, -20},
        {"Cache-Control: max-age=60, proxy-revalidate, stale-if-error=100\n", "", 80, CACHE_UNSET,
         CACHE_UNSET, CACHE_MUST_MISS, false, false, -20},
        /* stale-if-error */
        {"Cache-Control: max-age=60, stale-if-error=100\nETag: \"a\"\n", "", 80, CACHE_UNSET,
         CACHE_UNSET, CACHE_REVALIDATE, false, true, -20},
        {"Cache-Control: max-age=60, stale-if-error=100\n", "", 161, CACHE_UNSET, CACHE_UNSET,
         CACHE_MUST_MISS, false, false, -101},
        {"Cache-Control: max-age=60\n", "", 100, CACHE_UNSET, 3600, CACHE_MUST_MISS, false, true,
         -40},
        {"Cache-Control: max-age=60, stale-if-error=10\n", "", 10, CACHE_UNSET, 3600,
         CACHE_USE_FRESH, false, true, 50},
        /* ... also when the request asks for it (RFC 5861 4) */
        {"Cache-Control: max-age=0\n", "Cache-Control: stale-if-error=3600\n", 100, CACHE_UNSET,
         CACHE_UNSET, CACHE_MUST_MISS, false, true, -100},
        {"Cache-Control: max-age=0\n", "Cache-Control: stale-if-error=1\n", 3, CACHE_UNSET,
         CACHE_UNSET, CACHE_MUST_MISS, false, false, -3},
        {"Cache-Control: max-age=0, stale-if-error=1\n", "Cache-Control: stale-if-error=60\n", 3,
         CACHE_UNSET, CACHE_UNSET, CACHE_MUST_MISS, false, true, -3},
        {"Cache-Control: max-age=0, stale-if-error=60\n", "Cache-Control: stale-if-error=1\n", 3,
         CACHE_UNSET, CACHE_UNSET, CACHE_MUST_MISS, false, true, -3},
        {"Cache-Control: max-age=0, must-revalidate\n", "Cache-Control: stale-if-error=60\n", 3,
         CACHE_UNSET, CACHE_UNSET, CACHE_MUST_MISS, false, false, -3},
        /* no-cache forbids a stale answer on error as well (RFC 9111 4.2.4) */
        {"Cache-Control: max-age=1, no-cache, stale-if-error=60\n", "", 3, CACHE_UNSET, CACHE_UNSET,
         CACHE_MUST_MISS, false, false, -3},
        {"Cache-Control: no-cache\nETag: \"a\"\n", "", 3, CACHE_UNSET, 3600, CACHE_REVALIDATE,
         false, false, -3},
        /* request directives */
        {"Cache-Control: max-age=60\nETag: \"a\"\n", "Cache-Control: no-cache\n", 1, CACHE_UNSET,
         CACHE_UNSET, CACHE_REVALIDATE, false, false, 59},
        {"Cache-Control: max-age=60\n", "Pragma: no-cache\n", 1, CACHE_UNSET, CACHE_UNSET,
         CACHE_MUST_MISS, false, false, 59},
        {"Cache-Control: max-age=60\nETag: \"a\"\n", "Cache-Control: max-age=5\n", 10, CACHE_UNSET,
         CACHE_UNSET, CACHE_REVALIDATE, false, false, 50},
        {"Cache-Control: max-age=60\nETag: \"a\"\n", "Cache-Control: max-age=10\n", 10, CACHE_UNSET,
         CACHE_UNSET, CACHE_USE_FRESH, false, false, 50},
        {"Cache-Control: max-age=60\nETag: \"a\"\n", "Cache-Control: min-fresh=55\n", 10,
         CACHE_UNSET, CACHE_UNSET, CACHE_REVALIDATE, false, false, 50},
        {"Cache-Control: max-age=60\nETag: \"a\"\n", "Cache-Control: min-fresh=50\n", 10,
         CACHE_UNSET, CACHE_UNSET, CACHE_USE_FRESH, false, false, 50},
        {"Cache-Control: max-age=60\n", "Cache-Control: max-stale\n", 1000, CACHE_UNSET,
         CACHE_UNSET, CACHE_USE_STALE, false, false, -940},
        {"Cache-Control: max-age=60\n", "Cache-Control: max-stale=10\n", 70, CACHE_UNSET,
         CACHE_UNSET, CACHE_USE_STALE, false, false, -10},
        {"Cache-Control: max-age=60\n", "Cache-Control: max-stale=10\n", 71, CACHE_UNSET,
         CACHE_UNSET, CACHE_MUST_MISS, false, false, -11},
        {"Cache-Control: max-age=60, must-revalidate\n", "Cache-Control: max-stale\n", 70,
         CACHE_UNSET, CACHE_UNSET, CACHE_MUST_MISS, false, false, -10},
        {"Cache-Control: max-age=60, stale-while-revalidate=30\n", "Cache-Control: max-age=5\n", 70,
         CACHE_UNSET, CACHE_UNSET, CACHE_MUST_MISS, false, false, -10},
        /* response no-cache: always revalidate, even when "fresh" */
        {"Cache-Control: no-cache, max-age=60\nETag: \"a\"\n", "", 1, CACHE_UNSET, CACHE_UNSET,
         CACHE_REVALIDATE, false, false, -1},
        {"Cache-Control: no-cache\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\n",
         "Cache-Control: max-stale\n", 1, CACHE_UNSET, CACHE_UNSET, CACHE_REVALIDATE, false, false,
         -1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cache_route rt;
        struct cache_policy p;
        struct cache_req_info rq;
        struct cache_decision d;
        cache_route_init(&rt);
        rt.swr = t[i].route_swr;
        rt.sie = t[i].route_sie;
        policy(t[i].resp, &rt, &p);
        req(t[i].req, &rq);
        cache_decide(&p, &rq, &rt, T0 + t[i].elapsed, &d);
        if (d.use != t[i].use || d.revalidate != t[i].revalidate || d.stale_if_error != t[i].sie ||
            d.ttl != t[i].ttl)
            fail_msg("#%zu [%s][%s]+%lld: use %d rev %d sie %d ttl %lld", i, t[i].resp, t[i].req,
                     (long long)t[i].elapsed, d.use, d.revalidate, d.stale_if_error,
                     (long long)d.ttl);
        assert_int_equal(d.age, t[i].elapsed);
    }
}

static void
test_decide_soft_purge_and_only_if_cached(void **state)
{
    struct cache_policy p;
    struct cache_req_info rq;
    struct cache_decision d;
    struct cache_route rt;

    (void)state;
    cache_route_init(&rt);
    policy("Cache-Control: max-age=600, stale-if-error=60\nETag: \"a\"\n", &rt, &p);
    p.flags |= CACHE_POL_SOFT_PURGED;
    req("", &rq);
    cache_decide(&p, &rq, &rt, T0 + 5, &d);
    assert_int_equal(d.use, CACHE_REVALIDATE);
    assert_true(d.stale_if_error);
    req("Cache-Control: max-stale\n", &rq);
    cache_decide(&p, &rq, &rt, T0 + 5, &d);
    assert_int_equal(d.use, CACHE_REVALIDATE);
    /* soft purge + swr: serve stale while revalidating */
    policy("Cache-Control: max-age=600, stale-while-revalidate=60\nETag: \"a\"\n", &rt, &p);
    p.flags |= CACHE_POL_SOFT_PURGED;
    req("", &rq);
    cache_decide(&p, &rq, &rt, T0 + 5, &d);
    assert_int_equal(d.use, CACHE_USE_STALE);
    assert_true(d.revalidate);

    req("Cache-Control: only-if-cached\n", &rq);
    policy("Cache-Control: max-age=1\n", &rt, &p);
    cache_decide(&p, &rq, &rt, T0 + 5, &d);
    assert_true(d.only_if_cached);
    assert_int_equal(d.use, CACHE_MUST_MISS);
}

/* The Age header value across an Age-carrying store and resident time. */
static void
test_age_in_decision(void **state)
{
    struct cache_resp_info ri;
    struct cache_policy p;
    struct cache_decision d;

    (void)state;
    resp("Cache-Control: max-age=100\nAge: 30\nDate: Sun, 06 Nov 1994 08:49:37 GMT\n", 200, &ri);
    cache_policy_from_resp(&ri, NULL, T0 - 1, T0, &p);
    assert_int_equal(p.initial_age, 31);
    cache_decide(&p, NULL, NULL, T0 + 9, &d);
    assert_int_equal(d.age, 40);
    assert_int_equal(d.ttl, 60);
    assert_int_equal(d.use, CACHE_USE_FRESH);
    cache_decide(&p, NULL, NULL, T0 + 69, &d);
    assert_int_equal(d.use, CACHE_MUST_MISS);
}

/* ---- header fields --------------------------------------------------------------------------- */

static void
test_hdr_storable_updatable(void **state)
{
    struct cache_hdr h[MAXH];
    struct cache_resp_info ri;
    const char *text = "Connection: close, X-Hop\n"
                       "X-Hop: 1\n"
                       "Keep-Alive: 5\n"
                       "Transfer-Encoding: chunked\n"
                       "Age: 4\n"
                       "Content-Length: 10\n"
                       "Content-Encoding: gzip\n"
                       "Set-Cookie: a=b\n"
                       "X-User: me\n"
                       "ETag: \"v\"\n"
                       "Cache-Control: private=\"x-user\", no-cache=\"set-cookie\", max-age=9\n"
                       "Upgrade: h2c\n"
                       "Proxy-Authenticate: Basic\n"
                       "Proxy-Authentication-Info: nextnonce=\"x\"\n"
                       "Proxy-Authorization: Basic y\n"
                       "Proxy-Connection: keep-alive\n"
                       "TE: trailers\n"
                       "Trailer: X-Sum\n"
                       "Content-Range: bytes 0-1/2\n"
                       "Content-Type: text/plain\n";
    static const struct {
        const char *name;
        bool store, update;
    } want[] = {
        {"Connection", false, false},
        {"X-Hop", false, false},
        {"Keep-Alive", false, false},
        {"Transfer-Encoding", false, false},
        {"Age", false, false},
        {"Content-Length", true, false},
        {"Content-Encoding", true, true},
        {"Set-Cookie", false, false},
        {"X-User", false, false},
        {"ETag", true, true},
        {"Cache-Control", true, true},
        {"Upgrade", false, false},
        {"Proxy-Authenticate", false, false},
        {"Proxy-Authentication-Info", false, false},
        {"Proxy-Authorization", false, false},
        {"Proxy-Connection", false, false},
        {"TE", false, false},
        {"Trailer", false, false},
        {"Content-Range", true, false},
        {"Content-Type", true, true},
    };
    size_t n = hdrs(text, h), i;

    (void)state;
    cache_resp_parse(h, n, 200, &ri);
    assert_int_equal(n, sizeof(want) / sizeof(want[0]));
    /* what a 304 from the cache leaves out (RFC 9110 15.4.5) */
    for (i = 0; i < n; i++) {
        bool meta = strcmp(want[i].name, "Content-Type") == 0 ||
                    strcmp(want[i].name, "Content-Encoding") == 0 ||
                    strcmp(want[i].name, "Content-Range") == 0;
        if (cache_hdr_in_304(&h[i]) == meta)
            fail_msg("%s: in a 304", want[i].name);
    }
    for (i = 0; i < n; i++) {
        if (cache_hdr_storable(&h[i], h, n, &ri.cc) != want[i].store)
            fail_msg("%s: storable", want[i].name);
        if (cache_hdr_updatable(&h[i], h, n, &ri.cc) != want[i].update)
            fail_msg("%s: updatable", want[i].name);
    }
}

/* ---- Cache-Status ---------------------------------------------------------------------------- */

static void
test_cache_status(void **state)
{
    char buf[128];
    struct cache_status s = {.name = "edge", .ttl = CACHE_UNSET};

    (void)state;
    s.ttl = 42;
    assert_int_equal(cache_status_format(&s, buf, sizeof(buf)), strlen("edge; hit; ttl=42"));
    assert_string_equal(buf, "edge; hit; ttl=42");
    s = (struct cache_status){
        .name = "edge", .fwd = CACHE_FWD_MISS, .ttl = CACHE_UNSET, .stored = true};
    cache_status_format(&s, buf, sizeof(buf));
    assert_string_equal(buf, "edge; fwd=miss; stored");
    s = (struct cache_status){.fwd = CACHE_FWD_STALE, .fwd_status = 304, .ttl = -5};
    cache_status_format(&s, buf, sizeof(buf));
    assert_string_equal(buf, "edge; fwd=stale; fwd-status=304; ttl=-5");
    s = (struct cache_status){.name = "e",
                              .fwd = CACHE_FWD_URI_MISS,
                              .ttl = CACHE_UNSET,
                              .collapsed = true,
                              .key = {"http://a/\"x\\\x01", 13}};
    cache_status_format(&s, buf, sizeof(buf));
    assert_string_equal(buf, "e; fwd=uri-miss; collapsed; key=\"http://a/\\\"x\\\\%01\"");
    s = (struct cache_status){
        .name = "e", .fwd = CACHE_FWD_VARY_MISS, .ttl = CACHE_UNSET, .detail = {"disk full", 9}};
    cache_status_format(&s, buf, sizeof(buf));
    assert_string_equal(buf, "e; fwd=vary-miss; detail=disk-full");
    s = (struct cache_status){.name = "edge", .fwd = CACHE_FWD_BYPASS, .ttl = CACHE_UNSET};
    cache_status_format(&s, buf, sizeof(buf));
    assert_string_equal(buf, "edge; fwd=bypass");
    s.fwd = CACHE_FWD_REQUEST;
    cache_status_format(&s, buf, sizeof(buf));
    assert_string_equal(buf, "edge; fwd=request");
    /* too small: 0 and an empty string */
    assert_int_equal(cache_status_format(&s, buf, 10), 0);
    assert_string_equal(buf, "");
    assert_int_equal(cache_status_format(&s, buf, 0), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cc_table),
        cmocka_unit_test(test_cc_fields),
        cmocka_unit_test(test_cc_strict),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_date_format),
        cmocka_unit_test(test_resp_parse),
        cmocka_unit_test(test_surrogate_control),
        cmocka_unit_test(test_req_parse),
        cmocka_unit_test(test_storable),
        cmocka_unit_test(test_freshness),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_decide_soft_purge_and_only_if_cached),
        cmocka_unit_test(test_age_in_decision),
        cmocka_unit_test(test_hdr_storable_updatable),
        cmocka_unit_test(test_cache_status),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
