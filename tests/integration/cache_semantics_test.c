/*
 * RFC 9111 (and RFC 5861, RFC 9213, Surrogate-Control) as a client sees it,
 * end to end: edge in front of origin-sim, whose /resp answers with the
 * header lines each step scripts (h=NAME:VALUE, '@N' = the HTTP-date N
 * seconds from now), and numbers every answer (X-Osim-Seq): a step is a
 * hit when it shows a number this case saw before, and went to the origin
 * when the number is new. The origin echoes the validators it was asked
 * with (X-Osim-INM / X-Osim-IMS), so a revalidation shows too.
 *
 * The edge's route keys on the k= parameter only, so one case is one key
 * however its steps script the origin. Each case runs in its own thread,
 * so their pauses (to let a 1 s lifetime run out) overlap; a function
 * reports every case that failed, then fails. docs/conformance.md maps the
 * cases to the external suite this grew from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tests/integration/edge.h"

/* Long enough for a max-age=1 response to be stale by 2 s whatever second
 * boundaries fall where (ages are whole seconds) on a busy machine. */
#define PAUSE_MS 3100
#define STEPS 4
#define ERR_MAX 512

static struct h_osim osim;
static struct h_edge edge;

enum expect {
    ANY,         /* not checked */
    HIT,         /* answered from the cache: an origin answer this case saw */
    MISS,        /* the origin answered (or nobody did: an error of edge's own) */
    REVALIDATED, /* the origin was asked with a validator */
};

struct step {
    const char *q;        /* the origin's script "name=value|..." (NULL: no more steps) */
    bool idle;            /* no request: only the pause (to order steps across cases) */
    const char *method;   /* NULL: GET */
    const char *req[5];   /* request header lines ("Foo;" sends Foo empty) */
    const char *req_body; /* a body for unsafe methods */
    bool pause;           /* wait PAUSE_MS after this step */
    enum expect x;        /* where the answer came from */
    long status;          /* 0: not checked */
    const char *has[4];   /* "Name: value" ("Name: *" = present) */
    const char *lacks[4]; /* field names */
    const char *body;     /* exact body */
    bool same_date;       /* Date as in this case's first answer */
    long min_age;         /* Age >= this (0: not checked) */
};

struct tcase {
    const char *name; /* the behaviour; also the key (k=name) */
    struct step s[STEPS];
};

struct run {
    pthread_t t;
    const struct tcase *c;
    char err[ERR_MAX];
};

/* "name=value|name=value" to a query string, values percent-encoded;
 * "{edge}" in a value becomes the edge's base URL. */
static void
query(const char *script, char *out, size_t cap)
{
    size_t o = strlen(out);

    for (const char *p = script; *p != '\0' && o + 8 < cap;) {
        const char *end = strchr(p, '|'), *eq = strchr(p, '=');
        if (end == NULL)
            end = p + strlen(p);
        if (eq == NULL || eq > end)
            eq = end;
        out[o++] = '&';
        memcpy(out + o, p, (size_t)(eq - p));
        o += (size_t)(eq - p);
        out[o++] = '=';
        for (const char *v = eq < end ? eq + 1 : end; v < end && o + 8 < cap; v++) {
            unsigned char ch = (unsigned char)*v;
            if (strncmp(v, "{edge}", 6) == 0) {
                o += (size_t)snprintf(out + o, cap - o, "%s", edge.url);
                v += 5;
            } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                       (ch >= '0' && ch <= '9') || strchr("-_.~", ch) != NULL) {
                out[o++] = (char)ch;
            } else {
                o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
            }
        }
        p = *end == '|' ? end + 1 : end;
    }
    out[o < cap ? o : cap - 1] = '\0';
}

#define FAIL_STEP(...)                                                                             \
    do {                                                                                           \
        size_t l_ = strlen(run->err);                                                              \
        snprintf(run->err + l_, ERR_MAX - l_, "%s step %d: ", c->name, i + 1);                     \
        l_ = strlen(run->err);                                                                     \
        snprintf(run->err + l_, ERR_MAX - l_, __VA_ARGS__);                                        \
        goto out;                                                                                  \
    } while (0)

static void *
case_main(void *arg)
{
    struct run *run = arg;
    const struct tcase *c = run->c;
    long seen[STEPS];
    size_t nseen = 0;
    char date0[64] = "";
    struct h_resp r;
    int i;

    memset(&r, 0, sizeof(r));
    for (i = 0; i < STEPS && c->s[i].q != NULL; i++) {
        const struct step *s = &c->s[i];
        const char *hdrs[6];
        char url[4096], v[512], cs[256];
        long seq = -1;
        bool old = false;
        int n = 0;

        if (s->idle) {
            h_sleep_ms(PAUSE_MS);
            continue;
        }
        snprintf(url, sizeof(url), "%s/resp?k=%s", edge.url, c->name);
        query(s->q, url, sizeof(url));
        for (; n < 5 && s->req[n] != NULL; n++)
            hdrs[n] = s->req[n];
        hdrs[n] = NULL;
        if (h_http(&r, s->method != NULL ? s->method : "GET", url, s->req_body,
                   s->req_body != NULL ? strlen(s->req_body) : 0, hdrs) < 0)
            FAIL_STEP("transport error: %s", r.error);
        if (h_header(&r, "cache-status", cs, sizeof(cs)) == NULL)
            snprintf(cs, sizeof(cs), "-");
        if (h_header(&r, "x-osim-seq", v, sizeof(v)) != NULL)
            seq = strtol(v, NULL, 10);
        for (size_t k = 0; seq >= 0 && k < nseen; k++)
            old = old || seen[k] == seq;
        switch (s->x) {
        case ANY: break;
        case HIT:
            if (!old)
                FAIL_STEP("not from the cache (%ld, %s)", r.status, cs);
            break;
        case MISS:
            if (old)
                FAIL_STEP("from the cache (%ld, %s)", r.status, cs);
            break;
        case REVALIDATED:
            if (old || (h_header(&r, "x-osim-inm", v, sizeof(v)) == NULL &&
                        h_header(&r, "x-osim-ims", v, sizeof(v)) == NULL))
                FAIL_STEP("not revalidated (%ld, %s)", r.status, cs);
            break;
        }
        if (s->status != 0 && r.status != s->status)
            FAIL_STEP("status %ld, want %ld (%s)", r.status, s->status, cs);
        for (int k = 0; k < 4 && s->has[k] != NULL; k++) {
            const char *colon = strchr(s->has[k], ':');
            char name[128];
            snprintf(name, sizeof(name), "%.*s", (int)(colon - s->has[k]), s->has[k]);
            const char *want = colon + 2;
            if (h_header(&r, name, v, sizeof(v)) == NULL)
                FAIL_STEP("no %s (%s)", name, cs);
            if (strcmp(want, "*") != 0 && strcmp(v, want) != 0)
                FAIL_STEP("%s: '%s', want '%s' (%s)", name, v, want, cs);
        }
        for (int k = 0; k < 4 && s->lacks[k] != NULL; k++)
            if (h_header(&r, s->lacks[k], v, sizeof(v)) != NULL)
                FAIL_STEP("%s: '%s' should not be there (%s)", s->lacks[k], v, cs);
        if (s->body != NULL && (r.len != strlen(s->body) || memcmp(r.body, s->body, r.len) != 0))
            FAIL_STEP("body '%.*s', want '%s'", (int)(r.len < 40 ? r.len : 40), r.body, s->body);
        if (s->same_date && (h_header(&r, "date", v, sizeof(v)) == NULL || strcmp(v, date0) != 0))
            FAIL_STEP("Date '%s', want '%s'", v, date0);
        if (s->min_age > 0 &&
            (h_header(&r, "age", v, sizeof(v)) == NULL || strtol(v, NULL, 10) < s->min_age))
            FAIL_STEP("Age '%s', want >= %ld", v, s->min_age);
        if (i == 0 && h_header(&r, "date", date0, sizeof(date0)) == NULL)
            date0[0] = '\0';
        if (seq >= 0 && !old && nseen < STEPS)
            seen[nseen++] = seq;
        h_resp_free(&r);
        if (s->pause)
            h_sleep_ms(PAUSE_MS);
    }
    return NULL;
out:
    h_resp_free(&r);
    return NULL;
}

/* Runs every case at once (one thread each) and fails with the list of
 * those that did not behave. */
static void
run_cases(const struct tcase *cs, size_t n)
{
    struct run *runs = calloc(n, sizeof(*runs));
    int failed = 0;

    assert_non_null(runs);
    for (size_t i = 0; i < n; i++) {
        runs[i].c = &cs[i];
        assert_int_equal(pthread_create(&runs[i].t, NULL, case_main, &runs[i]), 0);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(runs[i].t, NULL);
    for (size_t i = 0; i < n; i++) {
        if (runs[i].err[0] != '\0') {
            print_message("  %s\n", runs[i].err);
            failed++;
        }
    }
    free(runs);
    if (failed > 0)
        fail_msg("%d of %zu cases failed", failed, n);
}

#define RUN(cases) run_cases(cases, sizeof(cases) / sizeof(cases[0]))

/* ---- freshness: where the lifetime comes from, and the age ---------------------------------- */

/* RFC 9111 4.2.1-4.2.3, 5.1, 5.2.2.9/10, 5.3, 1.2.2; RFC 9110 5.6.7 and 15.1 */
static void
test_freshness_lifetime_and_age(void **state)
{
    static const struct tcase cases[] = {
        {"f-none", {{.q = "", .pause = true}, {.q = "", .x = MISS}}},
        {"f-max-age", {{.q = "h=Cache-Control:max-age=3600", .pause = true}, {.q = "", .x = HIT}}},
        {"f-max-age-case", {{.q = "h=Cache-Control:MaX-aGe=3600"}, {.q = "", .x = HIT}}},
        {"f-max-age-ext", {{.q = "h=Cache-Control:foobar, max-age=3600"}, {.q = "", .x = HIT}}},
        {"f-max-age-expired",
         {{.q = "h=Cache-Control:max-age=1", .pause = true}, {.q = "", .x = MISS}}},
        {"f-max-age-0", {{.q = "h=Cache-Control:max-age=0"}, {.q = "", .x = MISS}}},
        {"f-max-age-leading-zeros", {{.q = "h=Cache-Control:max-age=003600"}, {.q = "", .x = HIT}}},
        {"f-max-age-negative", {{.q = "h=Cache-Control:max-age=-3600"}, {.q = "", .x = MISS}}},
        {"f-max-age-single-quoted",
         {{.q = "h=Cache-Control:max-age='3600'"}, {.q = "", .x = MISS}}},
        {"f-max-age-quoted", {{.q = "h=Cache-Control:max-age=\"3600\""}, {.q = "", .x = HIT}}},
        /* junk makes it stale (4.2.1), it does not make it 3600 */
        {"f-max-age-trailing-junk", {{.q = "h=Cache-Control:max-age=3600a"}, {.q = "", .x = MISS}}},
        {"f-max-age-decimal", {{.q = "h=Cache-Control:max-age=3600.5"}, {.q = "", .x = MISS}}},
        {"f-max-age-space-before-equals",
         {{.q = "h=Cache-Control:max-age =3600"}, {.q = "", .x = MISS}}},
        {"f-max-age-in-quoted-string",
         {{.q = "h=Cache-Control:extension=\"max-age=3600\", max-age=1", .pause = true},
          {.q = "", .x = MISS}}},
        /* 2^31 and beyond: the largest delta, not an overflow (1.2.2) */
        {"f-max-age-2-31", {{.q = "h=Cache-Control:max-age=2147483648"}, {.q = "", .x = HIT}}},
        {"f-max-age-huge", {{.q = "h=Cache-Control:max-age=99999999999"}, {.q = "", .x = HIT}}},
        /* the first of two wins, on one line or two */
        {"f-max-age-first-wins",
         {{.q = "h=Cache-Control:max-age=1800, max-age=1", .pause = true}, {.q = "", .x = HIT}}},
        {"f-max-age-first-line-wins",
         {{.q = "h=Cache-Control:max-age=1800|h=Cache-Control:max-age=1", .pause = true},
          {.q = "", .x = HIT}}},
        /* s-maxage is the shared cache's (5.2.2.10), both ways */
        {"f-s-maxage-shorter",
         {{.q = "h=Cache-Control:max-age=3600, s-maxage=1", .pause = true}, {.q = "", .x = MISS}}},
        {"f-s-maxage-shorter-two-lines",
         {{.q = "h=Cache-Control:max-age=3600|h=Cache-Control:s-maxage=1", .pause = true},
          {.q = "", .x = MISS}}},
        {"f-s-maxage-longer",
         {{.q = "h=Cache-Control:max-age=1, s-maxage=3600", .pause = true}, {.q = "", .x = HIT}}},
        {"f-s-maxage-past-expires",
         {{.q = "h=Expires:@-10|h=Cache-Control:max-age=0, s-maxage=3600"}, {.q = "", .x = HIT}}},
        /* Age from upstream counts (4.2.3) */
        {"f-age-over-lifetime",
         {{.q = "h=Date:@0|h=Cache-Control:max-age=3600|h=Age:7200"}, {.q = "", .x = MISS}}},
        {"f-age-date-in-the-past",
         {{.q = "h=Date:@-7200|h=Cache-Control:max-age=3600"}, {.q = "", .x = MISS}}},
        {"f-age-junk-ignored",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:abc"}, {.q = "", .x = HIT}}},
        {"f-age-negative-ignored",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:-7200"}, {.q = "", .x = HIT}}},
        {"f-age-float-ignored",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:7200.0"}, {.q = "", .x = HIT}}},
        {"f-age-2-31",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:2147483648"}, {.q = "", .x = MISS}}},
        {"f-age-list-first-member",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:7200, 0"}, {.q = "", .x = MISS}}},
        {"f-age-list-first-member-fresh",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:0, 7200"}, {.q = "", .x = HIT}}},
        {"f-age-first-line",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:7200|h=Age:0"}, {.q = "", .x = MISS}}},
        {"f-age-first-line-fresh",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:0|h=Age:7200"}, {.q = "", .x = HIT}}},
        /* Expires - Date (5.3, 4.2.1) */
        {"f-expires-future", {{.q = "h=Expires:@2592000|h=Date:@0"}, {.q = "", .x = HIT}}},
        {"f-expires-past", {{.q = "h=Expires:@-2592000|h=Date:@0"}, {.q = "", .x = MISS}}},
        {"f-expires-equals-date", {{.q = "h=Expires:@0|h=Date:@0"}, {.q = "", .x = MISS}}},
        {"f-expires-before-date", {{.q = "h=Expires:@300|h=Date:@400"}, {.q = "", .x = MISS}}},
        {"f-expires-invalid-is-past", {{.q = "h=Expires:0|h=Date:@0"}, {.q = "", .x = MISS}}},
        {"f-expires-invalid-date-header", {{.q = "h=Date:foo|h=Expires:@10"}, {.q = "", .x = HIT}}},
        {"f-expires-age-over", {{.q = "h=Date:@-10|h=Expires:@10|h=Age:25"}, {.q = "", .x = MISS}}},
        {"f-expires-after-2038",
         {{.q = "h=Expires:Tue, 19 Jan 2038 14:14:08 GMT"}, {.q = "", .x = HIT}}},
        {"f-expires-year-2286",
         {{.q = "h=Expires:Sun, 21 Nov 2286 04:46:39 GMT"}, {.q = "", .x = HIT}}},
        {"f-expires-rfc850",
         {{.q = "h=Expires:Thursday, 18-Aug-50 02:01:18 GMT"}, {.q = "", .x = HIT}}},
        {"f-expires-asctime", {{.q = "h=Expires:Thu Aug  8 02:01:18 2050"}, {.q = "", .x = HIT}}},
        {"f-expires-any-case",
         {{.q = "h=Expires:THU, 18 AUG 2050 02:01:18 gMT"}, {.q = "", .x = HIT}}},
        {"f-expires-utc", {{.q = "h=Expires:Thu, 18 Aug 2050 02:01:18 UTC"}, {.q = "", .x = MISS}}},
        {"f-expires-two-digit-year",
         {{.q = "h=Expires:Thu, 18 Aug 50 02:01:18 GMT"}, {.q = "", .x = MISS}}},
        {"f-expires-one-digit-hour",
         {{.q = "h=Expires:Thu, 18 Aug 2050 2:01:18 GMT"}, {.q = "", .x = MISS}}},
        {"f-max-age-over-past-expires",
         {{.q = "h=Cache-Control:max-age=3600|h=Expires:@-7200|h=Date:@0"}, {.q = "", .x = HIT}}},
        {"f-max-age-0-over-future-expires",
         {{.q = "h=Expires:@3600|h=Cache-Control:max-age=0|h=Date:@0"}, {.q = "", .x = MISS}}},
        /* heuristic freshness only for statuses cacheable by default (RFC
         * 9110 15.1) or 'public' (4.2.2) */
        {"f-heuristic-200",
         {{.q = "h=Last-Modified:@-86400|h=Date:@0|body=x"}, {.q = "", .x = HIT}}},
        {"f-heuristic-204",
         {{.q = "status=204|h=Last-Modified:@-86400"}, {.q = "", .x = HIT, .status = 204}}},
        {"f-heuristic-404",
         {{.q = "status=404|h=Last-Modified:@-86400|body=x"}, {.q = "", .x = HIT, .status = 404}}},
        {"f-heuristic-201-not",
         {{.q = "status=201|h=Last-Modified:@-86400"},
          {.q = "status=201", .x = MISS, .status = 201}}},
        {"f-heuristic-403-not",
         {{.q = "status=403|h=Last-Modified:@-86400"},
          {.q = "status=403", .x = MISS, .status = 403}}},
        {"f-heuristic-502-not",
         {{.q = "status=502|h=Last-Modified:@-86400"},
          {.q = "status=502", .x = MISS, .status = 502}}},
        {"f-heuristic-599-not",
         {{.q = "status=599|h=Last-Modified:@-86400"},
          {.q = "status=599", .x = MISS, .status = 599}}},
        {"f-heuristic-599-public",
         {{.q = "status=599|h=Last-Modified:@-86400|h=Cache-Control:public"},
          {.q = "", .x = HIT, .status = 599}}},
        /* any status may be stored with explicit freshness */
        {"f-explicit-302",
         {{.q = "status=302|h=Cache-Control:max-age=3600"}, {.q = "", .x = HIT, .status = 302}}},
        {"f-explicit-500",
         {{.q = "status=500|h=Cache-Control:max-age=3600"}, {.q = "", .x = HIT, .status = 500}}},
        {"f-explicit-599",
         {{.q = "status=599|h=Cache-Control:max-age=3600"}, {.q = "", .x = HIT, .status = 599}}},
        {"f-stale-302", {{.q = "status=302|h=Expires:@-5000|h=Date:@0"}, {.q = "", .x = MISS}}},
        /* must-understand (5.2.2.3) */
        {"f-must-understand-known",
         {{.q = "h=Cache-Control:max-age=3600, no-store, must-understand"}, {.q = "", .x = HIT}}},
        {"f-must-understand-unknown",
         {{.q = "status=599|h=Cache-Control:max-age=3600, no-store, must-understand"},
          {.q = "status=599", .x = MISS}}},
        /* what a hit says about time (5.1, RFC 9110 6.6.1) */
        {"f-hit-age-grows",
         {{.q = "h=Cache-Control:max-age=3600", .pause = true}, {.q = "", .x = HIT, .min_age = 3}}},
        {"f-hit-age-from-upstream",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:30|h=Date:@0", .pause = true},
          {.q = "", .x = HIT, .min_age = 33}}},
        {"f-hit-keeps-date",
         {{.q = "h=Expires:@2592000|h=Date:@-5", .pause = true},
          {.q = "", .x = HIT, .same_date = true}}},
        {"f-hit-adds-missing-date",
         {{.q = "nodate=1|h=Cache-Control:max-age=3600", .has = {"Date: *"}},
          {.q = "", .x = HIT, .has = {"Date: *"}}}},
        /* an interim answer neither is stored nor lends its fields */
        {"f-interim-103",
         {{.q = "interim=103|h=Cache-Control:max-age=3600", .lacks = {"Link"}},
          {.q = "", .x = HIT, .lacks = {"Link"}}}},
    };
    (void)state;
    RUN(cases);
}

/* ---- directives and the fields that target this cache --------------------------------------- */

/* RFC 9111 3, 3.5, 5.2.1, 5.2.2, 5.4; RFC 9213; Surrogate-Control */
static void
test_directives_and_targeted_fields(void **state)
{
    static const struct tcase cases[] = {
        {"d-no-store", {{.q = "h=Cache-Control:No-StOrE"}, {.q = "", .x = MISS}}},
        {"d-no-store-fresh",
         {{.q = "h=Cache-Control:max-age=10000, no-store|h=Expires:@10000"}, {.q = "", .x = MISS}}},
        {"d-private", {{.q = "h=Cache-Control:private, max-age=3600"}, {.q = "", .x = MISS}}},
        {"d-private-fields",
         {{.q = "h=Cache-Control:private=\"a\", max-age=3600|h=a:1|h=b:2"},
          {.q = "", .x = HIT, .has = {"b: 2"}, .lacks = {"a"}}}},
        {"d-no-cache-fields",
         {{.q = "h=Cache-Control:no-cache=\"a, b\"|h=a:1|h=b:2|h=c:3|h=Cache-Control:max-age=3600"},
          {.q = "", .x = HIT, .has = {"c: 3"}, .lacks = {"a", "b"}}}},
        {"d-no-cache", {{.q = "h=Cache-Control:max-age=10000, No-CaChE"}, {.q = "", .x = MISS}}},
        {"d-no-cache-revalidates",
         {{.q = "h=Cache-Control:max-age=10000, no-cache|etag=abcd"},
          {.q = "h=Cache-Control:max-age=10000, no-cache|etag=abcd",
           .x = REVALIDATED,
           .has = {"X-Osim-INM: \"abcd\""}}}},
        {"d-must-revalidate-fresh",
         {{.q = "h=Cache-Control:max-age=10000, must-revalidate|etag=abcd"}, {.q = "", .x = HIT}}},
        {"d-must-revalidate-stale",
         {{.q = "h=Cache-Control:max-age=1, must-revalidate|etag=abcd", .pause = true},
          {.q = "h=Cache-Control:max-age=1, must-revalidate|etag=abcd", .x = REVALIDATED}}},
        /* Authorization (3.5) */
        {"d-authorization",
         {{.q = "h=Cache-Control:max-age=3600", .req = {"Authorization: FOO"}},
          {.q = "", .x = MISS}}},
        {"d-authorization-public",
         {{.q = "h=Cache-Control:max-age=3600, public", .req = {"Authorization: FOO"}},
          {.q = "", .x = HIT}}},
        {"d-authorization-s-maxage",
         {{.q = "h=Cache-Control:s-maxage=3600", .req = {"Authorization: FOO"}},
          {.q = "", .x = HIT}}},
        {"d-authorization-must-revalidate",
         {{.q = "h=Cache-Control:max-age=3600, must-revalidate", .req = {"Authorization: FOO"}},
          {.q = "", .x = HIT}}},
        /* Set-Cookie: stored only when declared shared (docs/conformance.md) */
        {"d-set-cookie-private-by-default",
         {{.q = "h=Cache-Control:max-age=3600|h=Set-Cookie:a=b"}, {.q = "", .x = MISS}}},
        {"d-set-cookie-public",
         {{.q = "h=Cache-Control:max-age=3600, public|h=Set-Cookie:a=b"},
          {.q = "", .x = HIT, .has = {"Set-Cookie: a=b"}}}},
        /* request directives (5.2.1), Pragma (5.4) */
        /* the client wants an answer at most this old: age 0 is fine for
         * max-age=0 (5.2.1.1), so the stored one first ages */
        {"d-req-max-age-0",
         {{.q = "h=Cache-Control:max-age=3600", .pause = true},
          {.q = "", .req = {"Cache-Control: max-age=0"}, .x = MISS}}},
        {"d-req-max-age-vs-age",
         {{.q = "h=Cache-Control:max-age=3600|h=Age:1800"},
          {.q = "", .req = {"Cache-Control: max-age=600"}, .x = MISS}}},
        {"d-req-min-fresh",
         {{.q = "h=Cache-Control:max-age=1500|h=Age:1000"},
          {.q = "", .req = {"Cache-Control: min-fresh=1000"}, .x = MISS}}},
        {"d-req-max-stale",
         {{.q = "h=Cache-Control:max-age=1", .pause = true},
          {.q = "", .req = {"Cache-Control: max-stale=1000"}, .x = HIT}}},
        {"d-req-no-cache",
         {{.q = "h=Cache-Control:max-age=3600|etag=abc"},
          {.q = "etag=abc", .req = {"Cache-Control: no-cache"}, .x = REVALIDATED}}},
        {"d-req-unknown-directive",
         {{.q = "h=Cache-Control:max-age=3600"},
          {.q = "", .req = {"Cache-Control: nothing-to-see-here", "Pragma: foo"}, .x = HIT}}},
        {"d-req-only-if-cached-miss",
         {{.q = "", .req = {"Cache-Control: only-if-cached"}, .status = 504}}},
        {"d-req-only-if-cached-hit",
         {{.q = "h=Cache-Control:max-age=3600"},
          {.q = "", .req = {"Cache-Control: only-if-cached"}, .x = HIT, .status = 200}}},
        {"d-pragma-no-cache",
         {{.q = "h=Cache-Control:max-age=3600"},
          {.q = "", .req = {"Pragma: no-cache"}, .x = MISS}}},
        {"d-pragma-with-cache-control",
         {{.q = "h=Cache-Control:max-age=3600"},
          {.q = "", .req = {"Pragma: no-cache", "Cache-Control: max-stale"}, .x = HIT}}},
        {"d-pragma-response-ignored",
         {{.q = "h=Cache-Control:max-age=3600|h=Pragma:no-cache"}, {.q = "", .x = HIT}}},
        /* CDN-Cache-Control (RFC 9213) */
        {"t-cdn-longer",
         {{.q = "h=Cache-Control:max-age=1|h=CDN-Cache-Control:max-age=3600", .pause = true},
          {.q = "", .x = HIT, .has = {"CDN-Cache-Control: max-age=3600"}}}},
        {"t-cdn-shorter",
         {{.q = "h=Cache-Control:max-age=3600|h=CDN-Cache-Control:max-age=1", .pause = true},
          {.q = "", .x = MISS}}},
        {"t-cdn-over-no-store",
         {{.q = "h=Cache-Control:no-store|h=CDN-Cache-Control:max-age=10000"},
          {.q = "", .x = HIT}}},
        {"t-cdn-no-store",
         {{.q = "h=Cache-Control:max-age=10000|h=CDN-Cache-Control:no-store"},
          {.q = "", .x = MISS}}},
        {"t-cdn-private",
         {{.q = "h=CDN-Cache-Control:private|h=Cache-Control:max-age=10000"},
          {.q = "", .x = MISS}}},
        {"t-cdn-max-age-0-future-expires",
         {{.q = "h=CDN-Cache-Control:max-age=0|h=Expires:@10000|h=Date:@0"}, {.q = "", .x = MISS}}},
        {"t-cdn-age",
         {{.q = "h=Date:@0|h=CDN-Cache-Control:max-age=3600|h=Age:7200"}, {.q = "", .x = MISS}}},
        {"t-cdn-invalid-ignored",
         {{.q = "h=CDN-Cache-Control:max-age=10000, &&&&&|h=Cache-Control:no-store"},
          {.q = "", .x = MISS}}},
        {"t-cdn-wrong-type",
         {{.q = "h=CDN-Cache-Control:max-age=\"10000\"|h=Cache-Control:no-store"},
          {.q = "", .x = MISS}}},
        {"t-cdn-uppercase-key-invalid",
         {{.q = "h=Cache-Control:max-age=1|h=CDN-Cache-Control:MaX-aGe=3600", .pause = true},
          {.q = "", .x = MISS}}},
        {"t-cdn-empty-ignored",
         {{.q = "h=Cache-Control:max-age=3600|h=CDN-Cache-Control:"}, {.q = "", .x = HIT}}},
        /* Surrogate-Control */
        {"t-sc-longer",
         {{.q = "h=Cache-Control:max-age=1|h=Surrogate-Control:max-age=3600", .pause = true},
          {.q = "", .x = HIT}}},
        {"t-sc-shorter",
         {{.q = "h=Cache-Control:max-age=3600|h=Surrogate-Control:max-age=1", .pause = true},
          {.q = "", .x = MISS}}},
        {"t-sc-no-store",
         {{.q = "h=Cache-Control:max-age=10000|h=Surrogate-Control:no-store"},
          {.q = "", .x = MISS}}},
        {"t-sc-over-no-store",
         {{.q = "h=Cache-Control:no-store|h=Surrogate-Control:max-age=10000;edge"},
          {.q = "", .x = HIT}}},
        {"t-sc-max-age-0-future-expires",
         {{.q = "h=Surrogate-Control:max-age=0|h=Expires:@10000|h=Date:@0"}, {.q = "", .x = MISS}}},
        {"t-sc-other-device",
         {{.q = "h=Cache-Control:max-age=1|h=Surrogate-Control:max-age=3600;not-for-you",
           .pause = true},
          {.q = "", .x = MISS}}},
        {"t-cdn-over-sc",
         {{.q = "h=CDN-Cache-Control:max-age=1|h=Surrogate-Control:max-age=3600", .pause = true},
          {.q = "", .x = MISS}}},
    };
    (void)state;
    RUN(cases);
}

/* ---- Vary, stored and updated fields, validation --------------------------------------------- */

/* RFC 9111 3.1, 3.2, 4.1, 4.3, 4.3.4, 4.3.5; RFC 9110 13.1, 14, 15.4.5 */
static void
test_vary_fields_and_validation(void **state)
{
#define VARY_FOO "h=Cache-Control:max-age=5000|h=Vary:Foo"
    static const struct tcase cases[] = {
        {"v-match", {{.q = VARY_FOO, .req = {"Foo: 1"}}, {.q = "", .req = {"Foo: 1"}, .x = HIT}}},
        {"v-no-match",
         {{.q = VARY_FOO, .req = {"Foo: 1"}}, {.q = "", .req = {"Foo: 2"}, .x = MISS}}},
        {"v-omitted-now", {{.q = VARY_FOO, .req = {"Foo: 1"}}, {.q = "", .x = MISS}}},
        {"v-omitted-then", {{.q = VARY_FOO}, {.q = "", .req = {"Foo: 1"}, .x = MISS}}},
        {"v-absent-is-not-empty", {{.q = VARY_FOO}, {.q = "", .req = {"Foo;"}, .x = MISS}}},
        {"v-other-fields-ignored",
         {{.q = VARY_FOO, .req = {"Foo: 1", "Other: 2"}},
          {.q = "", .req = {"Foo: 1", "Other: 3"}, .x = HIT}}},
        {"v-two-variants",
         {{.q = VARY_FOO "|body=foo1", .req = {"Foo: 1"}},
          {.q = VARY_FOO "|body=foo2", .req = {"Foo: 2"}, .x = MISS},
          {.q = "", .req = {"Foo: 1"}, .x = HIT, .body = "foo1"},
          {.q = "", .req = {"Foo: 2"}, .x = HIT, .body = "foo2"}}},
        {"v-three-fields",
         {{.q = "h=Cache-Control:max-age=5000|h=Vary:Foo, Bar, Baz",
           .req = {"Foo: 1", "Bar: abc", "Baz: 789"}},
          {.q = "", .req = {"Foo: 1", "Baz: 789", "Bar: abcde"}, .x = MISS},
          {.q = "", .req = {"Baz: 789", "Foo: 1", "Bar: abc"}, .x = HIT}}},
        {"v-lines-combined",
         {{.q = VARY_FOO, .req = {"Foo: 1, 2"}}, {.q = "", .req = {"Foo: 1", "Foo: 2"}, .x = HIT}}},
        {"v-list-whitespace",
         {{.q = VARY_FOO, .req = {"Foo: 1,2"}}, {.q = "", .req = {"Foo:  1 , 2 "}, .x = HIT}}},
        {"v-quoted-kept",
         {{.q = VARY_FOO, .req = {"Foo: \"1, 2\""}},
          {.q = "", .req = {"Foo: \"1,2\""}, .x = MISS}}},
        {"v-language-case",
         {{.q = "h=Cache-Control:max-age=5000|h=Vary:Accept-Language",
           .req = {"Accept-Language: en, de"}},
          {.q = "", .req = {"Accept-Language: eN,De"}, .x = HIT}}},
        {"v-star", {{.q = "h=Cache-Control:max-age=5000|h=Vary:*"}, {.q = "", .x = MISS}}},
        {"v-star-among",
         {{.q = "h=Cache-Control:max-age=5000|h=Vary:Foo, *"}, {.q = "", .x = MISS}}},
        {"v-star-second-line",
         {{.q = "h=Cache-Control:max-age=5000|h=Vary:|h=Vary:*"}, {.q = "", .x = MISS}}},
        {"v-revalidation-sends-varied",
         {{.q = "h=Cache-Control:max-age=1|h=Vary:Foo|etag=abcdef",
           .req = {"Foo: 1"},
           .pause = true},
          {.q = "h=Cache-Control:max-age=1|h=Vary:Foo|etag=abcdef",
           .req = {"Foo: 1"},
           .x = REVALIDATED}}},
        /* fields not stored (3.1) */
        {"s-connection-listed",
         {{.q = "h=Cache-Control:max-age=3600|h=Connection:a, b|h=a:1|h=b:2|h=c:3"},
          {.q = "", .x = HIT, .has = {"c: 3"}, .lacks = {"a", "b", "Connection"}}}},
        {"s-proxy-fields",
         {{.q = "h=Cache-Control:max-age=3600|h=Proxy-Authentication-Info:x|h=Proxy-Authenticate:y"
                "|h=Keep-Alive:timeout=5"},
          {.q = "",
           .x = HIT,
           .lacks = {"Proxy-Authentication-Info", "Proxy-Authenticate", "Keep-Alive"}}}},
        {"s-everything-else",
         {{.q = "h=Cache-Control:max-age=3600|h=Content-Range:junk|h=Content-MD5:rL0Y20zC+"
                "Fzt72VPzMSk2A="
                "="
                "|h=Clear-Site-Data:cache|h=X-Test-Header:1"},
          {.q = "",
           .x = HIT,
           .has = {"Content-Range: junk", "Content-MD5: rL0Y20zC+Fzt72VPzMSk2A==",
                   "Clear-Site-Data: cache", "X-Test-Header: 1"}}}},
        /* a 304 updates the stored fields (3.2, 4.3.4) */
        {"u-304-keeps-omitted",
         {{.q = "h=Cache-Control:max-age=1|lm=Wed, 01 Jan 2020 00:00:00 GMT|h=Test-Header:A",
           .pause = true},
          {.q = "lm=Wed, 01 Jan 2020 00:00:00 GMT", .x = REVALIDATED, .has = {"Test-Header: A"}}}},
        {"u-304-replaces",
         {{.q = "h=Cache-Control:max-age=1|etag=u1|h=Test-Header:A|h=Content-Encoding:x-a",
           .pause = true},
          {.q = "h=Cache-Control:max-age=3600|etag=u1|h=Test-Header:B|h=Content-Encoding:x-b",
           .x = REVALIDATED,
           .has = {"Test-Header: B", "Content-Encoding: x-b"}},
          {.q = "", .x = HIT, .has = {"Test-Header: B", "Cache-Control: max-age=3600"}}}},
        {"u-304-new-etag",
         {{.q = "h=Cache-Control:max-age=1|etag=abcdef", .pause = true},
          {.q = "nm=1|h=ETag:\"ghijkl\"|h=Cache-Control:max-age=3600",
           .x = REVALIDATED,
           .has = {"ETag: \"ghijkl\""}},
          {.q = "", .x = HIT, .has = {"ETag: \"ghijkl\""}}}},
        {"u-304-not-content-length",
         {{.q = "h=Cache-Control:max-age=1|etag=cl|size=5", .pause = true},
          {.q = "nm=1|etag=cl|h=Content-Length:10",
           .x = REVALIDATED,
           .has = {"Content-Length: 5"}}}},
        /* a 204 or 304 has no body whatever its Content-Length (RFC 9112 6.3) */
        {"u-204-with-length",
         {{.q = "status=204|h=Content-Length:7|h=Cache-Control:max-age=3600", .status = 204},
          {.q = "", .x = HIT, .status = 204}}},
        /* a 200 to a HEAD (4.3.5) */
        {"u-head-freshens",
         {{.q = "h=Cache-Control:max-age=1|h=Template-A:1", .pause = true},
          {.q = "h=Cache-Control:max-age=1000|h=Template-B:2",
           .method = "HEAD",
           .has = {"Template-A: 1", "Template-B: 2"}},
          {.q = "", .x = HIT, .has = {"Template-A: 1", "Template-B: 2"}}}},
        {"u-head-new-validator-invalidates",
         {{.q = "h=Cache-Control:max-age=1|etag=h1", .pause = true},
          {.q = "h=Cache-Control:max-age=1000|etag=h2", .method = "HEAD"},
          {.q = "h=Cache-Control:max-age=1000|etag=h2", .x = MISS, .has = {"ETag: \"h2\""}}}},
        /* answering a client's conditional from the cache (RFC 9110 13.1, 15.4.5) */
        {"c-inm-304",
         {{.q = "h=Cache-Control:max-age=3600|etag=abcdef|ctype=text/plain|size=4"},
          {.q = "",
           .req = {"If-None-Match: \"abcdef\""},
           .x = HIT,
           .status = 304,
           .has = {"ETag: \"abcdef\""},
           .lacks = {"Content-Type", "Content-Length"}}}},
        {"c-inm-list",
         {{.q = "h=Cache-Control:max-age=3600|etag=abcdef"},
          {.q = "",
           .req = {"If-None-Match: \"1234\", \"abcdef\", \"5678\""},
           .x = HIT,
           .status = 304}}},
        {"c-inm-weak",
         {{.q = "h=Cache-Control:max-age=3600|etag=W/\"abcdef\""},
          {.q = "", .req = {"If-None-Match: W/\"abcdef\""}, .x = HIT, .status = 304}}},
        {"c-inm-no-match",
         {{.q = "h=Cache-Control:max-age=3600|etag=abcdef"},
          {.q = "", .req = {"If-None-Match: \"other\""}, .x = HIT, .status = 200}}},
        {"c-inm-over-ims",
         {{.q = "h=Cache-Control:max-age=3600|etag=abcdef|lm=Wed, 01 Jan 2020 00:00:00 GMT"},
          {.q = "",
           .req = {"If-None-Match: \"abcdef\"", "If-Modified-Since: Tue, 31 Dec 2019 00:00:00 GMT"},
           .x = HIT,
           .status = 304}}},
        {"c-ims",
         {{.q = "h=Cache-Control:max-age=3600|lm=Wed, 01 Jan 2020 00:00:00 GMT"},
          {.q = "",
           .req = {"If-Modified-Since: Wed, 01 Jan 2020 00:00:00 GMT"},
           .x = HIT,
           .status = 304}}},
        {"c-stale-ims-revalidated",
         {{.q = "h=Cache-Control:max-age=1|lm=Wed, 01 Jan 2020 00:00:00 GMT", .pause = true},
          {.q = "lm=Wed, 01 Jan 2020 00:00:00 GMT",
           .req = {"If-Modified-Since: Wed, 01 Jan 2020 00:00:00 GMT"},
           .x = REVALIDATED,
           .status = 304}}},
        /* ranges from a stored 200 (RFC 9110 14) */
        {"r-range-from-stored",
         {{.q = "h=Cache-Control:max-age=3600|h=A:1|h=Content-Range:junk|body=01234567890"},
          {.q = "",
           .req = {"Range: bytes=0-1"},
           .x = HIT,
           .status = 206,
           .body = "01",
           .has = {"A: 1", "Content-Range: bytes 0-1/11"}}}},
        {"r-range-suffix",
         {{.q = "h=Cache-Control:max-age=3600|body=0123456789A"},
          {.q = "", .req = {"Range: bytes=-1"}, .x = HIT, .status = 206, .body = "A"}}},
        {"r-range-open",
         {{.q = "h=Cache-Control:max-age=3600|body=01234567890"},
          {.q = "", .req = {"Range: bytes=1-"}, .x = HIT, .status = 206, .body = "1234567890"}}},
        /* a Range request keeps only a plain 200: its 416 is not the resource
         * (the next GET gets the origin's 200, or the whole object the
         * range miss fetched in the background) */
        {"r-416-not-stored",
         {{.q = "h=Cache-Control:max-age=3600|size=4", .req = {"Range: bytes=9-"}, .status = 416},
          {.q = "h=Cache-Control:max-age=3600|size=4", .status = 200}}},
    };
#undef VARY_FOO
    (void)state;
    RUN(cases);
}

/* ---- invalidation and stale answers ------------------------------------------------------------
 */

/* RFC 9111 4.2.4, 4.4, 5.2.2.2/8/10; RFC 5861 */
static void
test_invalidation_and_stale_answers(void **state)
{
#define FRESH "h=Cache-Control:max-age=100000"
#define LOCATIONS                                                                                  \
    "h=Location:{edge}/resp?k=i-location-target|h=Content-Location:/resp?k=i-cl-target"
    static const struct tcase cases[] = {
        {"i-post",
         {{.q = FRESH}, {.q = "", .method = "POST", .req_body = "abc"}, {.q = "", .x = MISS}}},
        {"i-put",
         {{.q = FRESH}, {.q = "", .method = "PUT", .req_body = "abc"}, {.q = "", .x = MISS}}},
        {"i-delete", {{.q = FRESH}, {.q = "", .method = "DELETE"}, {.q = "", .x = MISS}}},
        {"i-unknown-method",
         {{.q = FRESH}, {.q = "", .method = "M-SEARCH", .req_body = "abc"}, {.q = "", .x = MISS}}},
        {"i-failed-post-keeps",
         {{.q = FRESH},
          {.q = "status=500", .method = "POST", .req_body = "abc", .status = 500},
          {.q = "", .x = HIT}}},
        {"i-options-keeps", {{.q = FRESH}, {.q = "", .method = "OPTIONS"}, {.q = "", .x = HIT}}},
        /* the Location and Content-Location of a successful unsafe request,
         * same host: the targets are stored and checked, then (a pause later)
         * i-locations' PUT names them, then (another pause) they are gone;
         * a Location on another host names nothing here */
        {"i-location-target",
         {{.q = FRESH},
          {.q = "", .x = HIT, .pause = true},
          {.q = "", .idle = true},
          {.q = "", .x = MISS}}},
        {"i-cl-target",
         {{.q = FRESH},
          {.q = "", .x = HIT, .pause = true},
          {.q = "", .idle = true},
          {.q = "", .x = MISS}}},
        {"i-foreign-target",
         {{.q = FRESH},
          {.q = "", .x = HIT, .pause = true},
          {.q = "", .idle = true},
          {.q = "", .x = HIT}}},
        {"i-locations",
         {{.q = "", .idle = true}, {.q = LOCATIONS, .method = "PUT", .req_body = "abc"}}},
        {"i-foreign-location",
         {{.q = "", .idle = true},
          {.q = "h=Location:http://elsewhere.test/resp?k=i-foreign-target",
           .method = "POST",
           .req_body = "abc"}}},
        /* stale answers need permission (4.2.4) */
        {"x-origin-gone-no-permission",
         {{.q = "h=Cache-Control:max-age=1", .pause = true},
          {.q = "drop=1", .x = MISS, .status = 502}}},
        {"x-must-revalidate",
         {{.q = "h=Cache-Control:max-age=1, must-revalidate, stale-if-error=60", .pause = true},
          {.q = "drop=1", .status = 502, .lacks = {"X-Osim-Seq"}}}},
        {"x-proxy-revalidate",
         {{.q = "h=Cache-Control:max-age=1, proxy-revalidate, stale-if-error=60", .pause = true},
          {.q = "drop=1", .status = 502, .lacks = {"X-Osim-Seq"}}}},
        {"x-s-maxage",
         {{.q = "h=Cache-Control:s-maxage=1, stale-if-error=60", .pause = true},
          {.q = "drop=1", .status = 502, .lacks = {"X-Osim-Seq"}}}},
        {"x-no-cache",
         {{.q = "h=Cache-Control:max-age=1, no-cache, stale-if-error=60", .pause = true},
          {.q = "drop=1", .status = 502, .lacks = {"X-Osim-Seq"}}}},
        /* stale-if-error (RFC 5861 4): the response's, the request's, and its window */
        {"x-sie-origin-gone",
         {{.q = "h=Cache-Control:max-age=1, stale-if-error=60", .pause = true},
          {.q = "drop=1", .x = HIT, .status = 200}}},
        {"x-sie-origin-503",
         {{.q = "h=Cache-Control:max-age=1, stale-if-error=60", .pause = true},
          {.q = "status=503", .x = HIT, .status = 200}}},
        {"x-sie-window-passed",
         {{.q = "h=Cache-Control:max-age=0, stale-if-error=1", .pause = true},
          {.q = "status=500", .x = MISS, .status = 500}}},
        {"x-sie-request",
         {{.q = "h=Cache-Control:max-age=0"},
          {.q = "status=500",
           .req = {"Cache-Control: stale-if-error=3600"},
           .x = HIT,
           .status = 200}}},
        {"x-sie-request-window-passed",
         {{.q = "h=Cache-Control:max-age=0", .pause = true},
          {.q = "status=500",
           .req = {"Cache-Control: stale-if-error=1"},
           .x = MISS,
           .status = 500}}},
        /* stale-while-revalidate (RFC 5861 3) */
        {"x-swr-within",
         {{.q = "h=Cache-Control:max-age=1, stale-while-revalidate=3600|etag=abc", .pause = true},
          {.q = "", .x = HIT}}},
        {"x-swr-window-passed",
         {{.q = "h=Cache-Control:max-age=1, stale-while-revalidate=1", .pause = true},
          {.q = "", .x = MISS}}},
    };
#undef FRESH
#undef LOCATIONS
    (void)state;
    RUN(cases);
}

static int
setup(void **state)
{
    char conf[1024];
    int port = h_free_port(), admin = h_free_port();
    struct h_resp r;

    (void)state;
    if (h_osim_start(&osim, NULL) < 0)
        return -1;
    /* the key is the k= parameter alone: every step of a case scripts the
     * origin's answer in its query and still names the same object; the
     * origins that drop requests on purpose must not get the server marked
     * down for the cases running beside them */
    snprintf(conf, sizeof(conf),
             "workers 2;\nlisten 127.0.0.1:%d;\nadmin 127.0.0.1:%d;\naccess_log off;\n"
             "cache_dir %s/cache max_size=64m;\n"
             "origin app { server 127.0.0.1:%d; retries 0; connect_timeout 1s; max_fails 1000; }\n"
             "site * { route / { origin app; cache on 'key=$scheme://$host$path?$arg_k'; } }\n",
             port, admin, h_tmpdir(), osim.port);
    if (h_edge_start(&edge, port, admin, conf) < 0)
        return -1;
    /* libcurl's global init, once, before the cases' threads use it */
    h_http(&r, "GET", osim.url, NULL, 0, NULL);
    h_resp_free(&r);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    int a = h_edge_stop(&edge), b = h_osim_stop(&osim);
    return a == 0 && b == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_freshness_lifetime_and_age),
        cmocka_unit_test(test_directives_and_targeted_fields),
        cmocka_unit_test(test_vary_fields_and_validation),
        cmocka_unit_test(test_invalidation_and_stale_answers),
    };
    return H_RUN(tests, setup, teardown);
}
