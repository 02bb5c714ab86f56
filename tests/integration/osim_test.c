/*
 * origin-sim, black box: a shared instance for the plain endpoints, and one
 * per test where flags matter (latency, error/reset rates, seeds, stats).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "origin-sim/origin-sim.h"
#include "tests/integration/harness.h"

static struct h_osim shared;
static char www[512];

static const char *
url(const struct h_osim *o, const char *path)
{
    static char bufs[4][2048];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s%s", o->url, path);
    return b;
}

static long
get_status(const char *u, const char *const *hdrs)
{
    struct h_resp r;
    long st = h_http(&r, "GET", u, NULL, 0, hdrs) == 0 ? r.status : -1;
    h_resp_free(&r);
    return st;
}

/* An IMF-fixdate to Unix seconds. */
static int
osim_test_date(const char *s, time_t *out)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof(tm));
    if (s == NULL || (end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm)) == NULL || *end != '\0')
        return -1;
    *out = timegm(&tm);
    return 0;
}

static json_t *
json_body(const struct h_resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->len, 0, &e);
    if (j == NULL)
        fail_msg("bad JSON body (%s): %.*s", e.text, (int)r->len, r->body);
    return j;
}

static int
group_setup(void **state)
{
    (void)state;
    const char *p = h_write_file("www/a.txt", "hello static\n");
    h_write_file("www/sub/index.html", "<p>index</p>\n");
    h_write_file("secret.txt", "top secret\n");
    if (p == NULL)
        return -1;
    snprintf(www, sizeof(www), "%s/www", h_tmpdir());
    char link[600], target[600];
    snprintf(link, sizeof(link), "%s/link.txt", www);
    snprintf(target, sizeof(target), "%s/secret.txt", h_tmpdir());
    if (symlink(target, link) < 0)
        return -1;
    const char *args[] = {"--root", www, "--seed", "1", NULL};
    return h_osim_start(&shared, args);
}

static int
group_teardown(void **state)
{
    (void)state;
    if (shared.proc.pid != 0 && h_osim_stop(&shared) != 0)
        return -1;
    return 0;
}

/* ---- latency ---- */

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void
test_latency(void **state)
{
    struct h_osim o;
    const char *args[] = {"--latency", "50ms", NULL};
    double ms[5];

    (void)state;
    assert_int_equal(h_osim_start(&o, args), 0);
    for (int i = 0; i < 5; i++) {
        struct h_resp r;
        assert_int_equal(h_http(&r, "GET", url(&o, "/bytes/100"), NULL, 0, NULL), 0);
        assert_int_equal(r.status, 200);
        ms[i] = r.total_ms;
        h_resp_free(&r);
    }
    qsort(ms, 5, sizeof(ms[0]), cmp_double);
    if (ms[2] < 50.0 || ms[2] > 120.0)
        fail_msg("p50 %.1f ms not in [50, 120] (min %.1f max %.1f)", ms[2], ms[0], ms[4]);
    assert_int_equal(h_osim_stop(&o), 0);
}

static void
test_slow(void **state)
{
    struct h_resp r;

    (void)state;
    assert_int_equal(h_http(&r, "GET", url(&shared, "/slow?ms=120"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.total_ms >= 120.0);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", url(&shared, "/resp?delay=80ms&size=3"), NULL, 0, NULL), 0);
    assert_true(r.total_ms >= 80.0);
    assert_int_equal(r.len, 3);
    h_resp_free(&r);
}

/* ---- conditional requests ---- */

static void
test_etag_304(void **state)
{
    const char *u = url(&shared, "/resp?etag=abc&cc=max-age%3D60&size=10&vary=Accept&tag=t1%20t2");
    struct h_resp r;
    char b[128];

    (void)state;
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_header(&r, "ETag", b, sizeof(b)), "\"abc\"");
    assert_string_equal(h_header(&r, "Cache-Control", b, sizeof(b)), "max-age=60");
    assert_string_equal(h_header(&r, "Vary", b, sizeof(b)), "Accept");
    assert_string_equal(h_header(&r, "Surrogate-Key", b, sizeof(b)), "t1 t2");
    assert_non_null(h_header(&r, "Date", b, sizeof(b)));
    assert_int_equal(r.len, 10);
    assert_true(osim_bytes_check(r.body, 0, r.len) == -1);
    h_resp_free(&r);

    static const char *const matching[] = {"If-None-Match: \"abc\"", "If-None-Match: W/\"abc\"",
                                           "If-None-Match: \"x\", \"abc\"", "If-None-Match: *"};
    for (size_t i = 0; i < 4; i++) {
        const char *h[] = {matching[i], NULL};
        assert_int_equal(h_http(&r, "GET", u, NULL, 0, h), 0);
        if (r.status != 304)
            fail_msg("%s gave %ld", matching[i], r.status);
        assert_int_equal(r.len, 0);
        assert_string_equal(h_header(&r, "ETag", b, sizeof(b)), "\"abc\"");
        assert_string_equal(h_header(&r, "Cache-Control", b, sizeof(b)), "max-age=60");
        assert_non_null(h_header(&r, "Date", b, sizeof(b)));
        h_resp_free(&r);
    }
    const char *miss[] = {"If-None-Match: \"abcd\", W/\"x\"", NULL};
    assert_int_equal(get_status(u, miss), 200);
    /* a quoted etag parameter is kept as is */
    assert_int_equal(h_http(&r, "GET", url(&shared, "/resp?etag=W/%22w1%22"), NULL, 0, NULL), 0);
    assert_string_equal(h_header(&r, "ETag", b, sizeof(b)), "W/\"w1\"");
    h_resp_free(&r);
}

static void
test_ims_304(void **state)
{
    const char *u = url(&shared, "/resp?lm=1700000000&size=4");
    struct h_resp r;
    char b[128];

    (void)state;
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_header(&r, "Last-Modified", b, sizeof(b)),
                        "Tue, 14 Nov 2023 22:13:20 GMT");
    h_resp_free(&r);
    const char *same[] = {"If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT", NULL};
    const char *later[] = {"If-Modified-Since: Wed, 15 Nov 2023 00:00:00 GMT", NULL};
    const char *earlier[] = {"If-Modified-Since: Tue, 14 Nov 2023 22:13:19 GMT", NULL};
    assert_int_equal(h_http(&r, "GET", u, NULL, 0, same), 0);
    assert_int_equal(r.status, 304);
    assert_string_equal(h_header(&r, "Last-Modified", b, sizeof(b)),
                        "Tue, 14 Nov 2023 22:13:20 GMT");
    h_resp_free(&r);
    assert_int_equal(get_status(u, later), 304);
    assert_int_equal(get_status(u, earlier), 200);
    /* lm given as an HTTP-date */
    assert_int_equal(
        get_status(url(&shared, "/resp?lm=Tue,%2014%20Nov%202023%2022:13:20%20GMT"), same), 304);
    /* If-None-Match takes precedence over If-Modified-Since */
    const char *both[] = {"If-None-Match: \"other\"",
                          "If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT", NULL};
    assert_int_equal(get_status(url(&shared, "/resp?lm=1700000000&etag=e1"), both), 200);
    /* no conditional answer for non-2xx */
    assert_int_equal(get_status(url(&shared, "/resp?status=404&lm=1700000000"), same), 404);
}

/* The /resp parameters cache conformance tests script answers with. */
static void
test_resp_scripted(void **state)
{
    struct h_resp r;
    char b[256], raw[4096];
    long n;

    (void)state;
    /* h= lines in order, twice the same name, an empty value, @N dates, a
     * scripted Date instead of origin-sim's, body= */
    assert_int_equal(h_http(&r, "GET",
                            url(&shared, "/resp?h=Date:@-7200&h=Expires:@3600&h=A:1&h=A:2&h=Vary:"
                                         "&h=X-Plain:a%2C%20b&body=hello"),
                            NULL, 0, NULL),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 5);
    assert_string_equal(r.body, "hello");
    assert_non_null(strstr(r.headers, "\r\nA: 1\r\nA: 2\r\n"));
    assert_non_null(strstr(r.headers, "\r\nVary: \r\n"));
    assert_string_equal(h_header(&r, "X-Plain", b, sizeof(b)), "a, b");
    time_t date, exp;
    assert_int_equal(osim_test_date(h_header(&r, "Date", b, sizeof(b)), &date), 0);
    assert_true(labs((long)(time(NULL) - 7200 - date)) <= 2);
    assert_int_equal(osim_test_date(h_header(&r, "Expires", b, sizeof(b)), &exp), 0);
    assert_true(labs((long)(exp - date - 10800)) <= 1);
    const char *d = strstr(r.headers, "Date:");
    assert_null(strstr(d + 1, "Date:")); /* only the scripted one */
    long seq = strtol(h_header(&r, "X-Osim-Seq", b, sizeof(b)), NULL, 10);
    assert_true(seq > 0);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", url(&shared, "/resp?nodate=1"), NULL, 0, NULL), 0);
    assert_null(h_header(&r, "Date", b, sizeof(b)));
    h_resp_free(&r);
    assert_int_equal(get_status(url(&shared, "/resp?h=nocolon"), NULL), 400);
    assert_int_equal(get_status(url(&shared, "/resp?h=Expires:@12x"), NULL), 400);

    /* the sequence number moves with every request; validators are echoed */
    const char *inm[] = {"If-None-Match: \"zz\"",
                         "If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT", NULL};
    assert_int_equal(h_http(&r, "GET", url(&shared, "/resp?size=1"), NULL, 0, inm), 0);
    assert_int_equal(r.status, 200);
    assert_true(strtol(h_header(&r, "X-Osim-Seq", b, sizeof(b)), NULL, 10) > seq);
    assert_string_equal(h_header(&r, "X-Osim-INM", b, sizeof(b)), "\"zz\"");
    assert_string_equal(h_header(&r, "X-Osim-IMS", b, sizeof(b)), "Tue, 14 Nov 2023 22:13:20 GMT");
    h_resp_free(&r);
    /* nm=1: a 304 to any conditional request, with the h= lines */
    assert_int_equal(h_http(&r, "GET", url(&shared, "/resp?nm=1&h=ETag:%22new%22"), NULL, 0, inm),
                     0);
    assert_int_equal(r.status, 304);
    assert_string_equal(h_header(&r, "ETag", b, sizeof(b)), "\"new\"");
    h_resp_free(&r);
    assert_int_equal(get_status(url(&shared, "/resp?nm=1"), NULL), 200);

    /* interim=103 comes first; drop=1 closes without a byte */
    static const char req[] = "GET /resp?interim=103&body=x HTTP/1.1\r\nHost: a\r\n"
                              "Connection: close\r\n\r\n";
    n = h_raw("127.0.0.1", shared.port, req, sizeof(req) - 1, raw, sizeof(raw), 3000);
    assert_true(n > 0);
    static const char early[] = "HTTP/1.1 103 Early Hints\r\nLink: ";
    assert_true(strncmp(raw, early, sizeof(early) - 1) == 0);
    assert_non_null(strstr(raw, "\r\n\r\nHTTP/1.1 200 OK\r\n"));
    static const char drop[] = "GET /resp?drop=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    n = h_raw("127.0.0.1", shared.port, drop, sizeof(drop) - 1, raw, sizeof(raw), 3000);
    assert_int_equal(n, 0);
}

/* ---- /bytes ---- */

static void
test_bytes_exact(void **state)
{
    struct h_resp r;
    char b[64];

    (void)state;
    assert_int_equal(h_http(&r, "GET", url(&shared, "/bytes/100000"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 100000);
    assert_true(osim_bytes_check(r.body, 0, r.len) == -1);
    assert_string_equal(h_header(&r, "Content-Length", b, sizeof(b)), "100000");
    h_resp_free(&r);
    /* the formula of the header, spelled out */
    assert_int_equal(osim_byte(0), 7);
    assert_int_equal(osim_byte(1), 38);
    assert_int_equal(osim_byte(256), (uint8_t)((256 * 31 + 7) ^ 1));
    assert_int_equal(osim_byte(OSIM_BYTES_PERIOD), 7);

    assert_int_equal(h_http(&r, "HEAD", url(&shared, "/bytes/12345"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    assert_string_equal(h_header(&r, "Content-Length", b, sizeof(b)), "12345");
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", url(&shared, "/bytes/0"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    h_resp_free(&r);
    assert_int_equal(get_status(url(&shared, "/bytes/12x"), NULL), 400);
}

static void
expect_range(const char *range, long status, uint64_t off, size_t len, const char *cr)
{
    char hdr[128], b[128];
    const char *h[] = {hdr, NULL};
    struct h_resp r;

    snprintf(hdr, sizeof(hdr), "Range: %s", range);
    assert_int_equal(h_http(&r, "GET", url(&shared, "/bytes/1000"), NULL, 0, h), 0);
    if (r.status != status)
        fail_msg("Range %s: status %ld, want %ld", range, r.status, status);
    if (status != 416) {
        assert_int_equal(r.len, len);
        assert_true(osim_bytes_check(r.body, off, r.len) == -1);
    }
    if (cr != NULL)
        assert_string_equal(h_header(&r, "Content-Range", b, sizeof(b)), cr);
    else
        assert_null(h_header(&r, "Content-Range", b, sizeof(b)));
    h_resp_free(&r);
}

static void
test_bytes_range(void **state)
{
    (void)state;
    expect_range("bytes=10-19", 206, 10, 10, "bytes 10-19/1000");
    expect_range("bytes=990-", 206, 990, 10, "bytes 990-999/1000");
    expect_range("bytes=-5", 206, 995, 5, "bytes 995-999/1000");
    expect_range("bytes=900-5000", 206, 900, 100, "bytes 900-999/1000");
    expect_range("bytes=1000-", 416, 0, 0, "bytes */1000");
    expect_range("bytes=-0", 416, 0, 0, "bytes */1000");
    expect_range("bytes=0-1,5-6", 200, 0, 1000, NULL); /* multiple ranges: full answer */
    expect_range("bytes=9-3", 200, 0, 1000, NULL);     /* invalid: ignored */
    expect_range("items=0-1", 200, 0, 1000, NULL);
}

struct stream_check {
    uint64_t off;
    long long bad;
    long max_rss_kb;
    pid_t pid;
    uint64_t next_sample;
};

static int
on_stream(const void *data, size_t len, void *arg)
{
    struct stream_check *s = arg;
    long long bad = osim_bytes_check(data, s->off, len);

    if (bad >= 0 && s->bad < 0)
        s->bad = (long long)s->off + bad;
    s->off += len;
    if (s->off >= s->next_sample) {
        long kb = h_rss_kb(s->pid);
        if (kb > s->max_rss_kb)
            s->max_rss_kb = kb;
        s->next_sample += 8u << 20;
    }
    return 0;
}

static void
test_bytes_large_rss(void **state)
{
    const uint64_t n = 256ull << 20;
    struct stream_check s = {.bad = -1, .pid = shared.proc.pid};
    struct h_opts o = {.on_body = on_stream, .arg = &s, .timeout_ms = 60000};
    struct h_client *cl = h_client_new();
    struct h_resp r;
    char u[64];

    (void)state;
    snprintf(u, sizeof(u), "/bytes/%llu", (unsigned long long)n);
    assert_int_equal(h_client_http_opts(cl, &r, &o, "GET", url(&shared, u), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_true(s.off == n);
    if (s.bad >= 0)
        fail_msg("first wrong byte at %lld", s.bad);
    if (s.max_rss_kb <= 0 || s.max_rss_kb > 64 * 1024)
        fail_msg("origin-sim VmRSS peaked at %ld KiB", s.max_rss_kb);
    print_message("    256 MiB in %.0f ms, origin-sim VmRSS max %ld KiB\n", r.total_ms,
                  s.max_rss_kb);
    h_resp_free(&r);
    h_client_free(cl);
}

/* ---- items API ---- */

static json_t *
api(const char *method, const char *path, const char *body, const char *hdr, long want)
{
    const char *h[] = {hdr, NULL};
    struct h_resp r;
    json_t *j = NULL;

    assert_int_equal(
        h_http(&r, method, url(&shared, path), body, body ? strlen(body) : 0, hdr ? h : NULL), 0);
    if (r.status != want)
        fail_msg("%s %s: %ld, want %ld: %.*s", method, path, r.status, want, (int)r.len, r.body);
    if (r.status != 304)
        j = json_body(&r);
    h_resp_free(&r);
    return j;
}

static void
test_items_crud(void **state)
{
    const char *p = "/api/tables/users/items/u1/profile";
    json_t *j;

    (void)state;
    j = api("PUT", p, "{\"name\":\"ada\"}", NULL, 201);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "pk")), "u1");
    assert_string_equal(json_string_value(json_object_get(j, "sk")), "profile");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "item"), "name")),
                        "ada");
    json_decref(j);
    j = api("PUT", p, "{\"name\":\"ada\",\"age\":36}", NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 2);
    json_decref(j);

    struct h_resp r;
    char b[64];
    assert_int_equal(h_http(&r, "GET", url(&shared, p), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_header(&r, "ETag", b, sizeof(b)), "\"v2\"");
    j = json_body(&r);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "item"), "age")), 36);
    json_decref(j);
    h_resp_free(&r);
    assert_null(api("GET", p, NULL, "If-None-Match: \"v2\"", 304));

    /* items without a sort key; percent-encoded keys */
    json_decref(api("PUT", "/api/tables/kv/items/caf%C3%A9", "{\"v\":1}", NULL, 201));
    j = api("GET", "/api/tables/kv/items/caf%C3%A9", NULL, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(j, "pk")), "caf\xc3\xa9");
    assert_null(json_object_get(j, "sk"));
    json_decref(j);

    j = api("DELETE", p, NULL, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "deleted")));
    json_decref(j);
    j = api("GET", p, NULL, NULL, 404);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "not_found");
    json_decref(j);
    json_decref(api("DELETE", p, NULL, NULL, 404));

    j = api("PUT", p, "{\"name\":", NULL, 400);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "bad_json");
    assert_non_null(json_string_value(json_object_get(j, "reason")));
    json_decref(j);
    json_decref(api("PUT", p, "[1,2]", NULL, 400));
    json_decref(api("PUT", "/api/tables/users/nope/u1", "{}", NULL, 404));
    json_decref(api("POST", p, "{}", NULL, 405));
}

static void
test_items_conditional(void **state)
{
    const char *p = "/api/tables/orders/items/o1/line1";
    json_t *j;

    (void)state;
    json_decref(api("PUT", p, "{\"qty\":1}", "If-None-Match: *", 201));
    j = api("PUT", p, "{\"qty\":2}", "If-None-Match: *", 412); /* create-only: exists */
    assert_string_equal(json_string_value(json_object_get(j, "error")), "precondition_failed");
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 1);
    json_decref(j);
    json_decref(api("PUT", p, "{\"qty\":2}", "If-Match: \"v1\"", 200));
    json_decref(api("PUT", p, "{\"qty\":3}", "If-Match: \"v1\"", 412)); /* lost update caught */
    json_decref(api("PUT", p, "{\"qty\":3}", "If-Match: \"v2\"", 200));
    json_decref(api("PUT", "/api/tables/orders/items/o1/none", "{}", "If-Match: \"v1\"", 412));
    json_decref(api("DELETE", p, NULL, "If-Match: \"v2\"", 412));
    j = api("DELETE", p, NULL, "If-Match: \"v3\"", 200);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 3);
    json_decref(j);
    /* recreated: versions start again at 1 */
    j = api("PUT", p, "{}", NULL, 201);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 1);
    json_decref(j);
}

static void
put_item(struct h_client *cl, const char *table, const char *pk, const char *sk, int n)
{
    char path[256], body[64];
    struct h_resp r;

    snprintf(path, sizeof(path), "/api/tables/%s/items/%s/%s", table, pk, sk);
    snprintf(body, sizeof(body), "{\"n\":%d}", n);
    assert_int_equal(h_client_http(cl, &r, "PUT", url(&shared, path), body, strlen(body), NULL), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
}

/* Follows cursors; returns the number of pages, fills sks (joined by ','). */
static int
query_all(const char *base, char *sks, size_t cap, size_t *total)
{
    char path[512], cursor[256] = "";
    int pages = 0;

    sks[0] = '\0';
    *total = 0;
    for (;;) {
        snprintf(path, sizeof(path), "%s%s%s", base, cursor[0] ? "&cursor=" : "", cursor);
        json_t *j = api("GET", path, NULL, NULL, 200);
        json_t *items = json_object_get(j, "items");
        size_t i;
        json_t *it;
        pages++;
        assert_int_equal(json_integer_value(json_object_get(j, "count")), json_array_size(items));
        json_array_foreach(items, i, it)
        {
            size_t used = strlen(sks);
            snprintf(sks + used, cap - used, "%s%s", used ? "," : "",
                     json_string_value(json_object_get(it, "sk")));
            (*total)++;
        }
        json_t *c = json_object_get(j, "cursor");
        if (c == NULL) {
            json_decref(j);
            return pages;
        }
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(c));
        json_decref(j);
        if (pages > 100)
            fail_msg("cursor loop");
    }
}

static void
test_items_query(void **state)
{
    struct h_client *cl = h_client_new();
    char sks[4096], sk[16];
    size_t total;

    (void)state;
    /* inserted out of order: the partition must come back sorted */
    for (int i = 24; i >= 0; i--) {
        snprintf(sk, sizeof(sk), "a%03d", (i * 7) % 25);
        put_item(cl, "events", "p1", sk, i);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(sk, sizeof(sk), "b%03d", i);
        put_item(cl, "events", "p1", sk, i);
    }
    put_item(cl, "events", "p2", "a000", 0); /* another partition */

    assert_int_equal(
        query_all("/api/tables/events/items/p1?begins_with=a&limit=10", sks, sizeof(sks), &total),
        3);
    assert_int_equal(total, 25);
    assert_true(strncmp(sks, "a000,a001,a002,", 15) == 0);
    assert_non_null(strstr(sks, "a023,a024"));
    assert_null(strstr(sks, "b"));

    assert_int_equal(query_all("/api/tables/events/items/p1?limit=7", sks, sizeof(sks), &total), 5);
    assert_int_equal(total, 30);
    assert_non_null(strstr(sks, "a024,b000"));
    assert_int_equal(
        query_all("/api/tables/events/items/p1?begins_with=b00", sks, sizeof(sks), &total), 1);
    assert_int_equal(total, 5);
    assert_int_equal(query_all("/api/tables/events/items/none?limit=5", sks, sizeof(sks), &total),
                     1);
    assert_int_equal(total, 0);
    json_decref(api("GET", "/api/tables/events/items/p1?cursor=zz", NULL, NULL, 400));
    json_decref(api("GET", "/api/tables/events/items/p1?limit=0", NULL, NULL, 400));

    /* a bigger partition: 2500 items, limit capped at 1000 */
    double t0 = h_now_ms();
    for (int i = 0; i < 2500; i++) {
        snprintf(sk, sizeof(sk), "k%05d", (i * 7919) % 2500);
        put_item(cl, "big", "p", sk, i);
    }
    double put_ms = h_now_ms() - t0;
    json_t *j = api("GET", "/api/tables/big/items/p?limit=5000", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 1000);
    assert_non_null(json_object_get(j, "cursor"));
    json_decref(j);
    static char bigsks[2500 * 8];
    assert_int_equal(
        query_all("/api/tables/big/items/p?limit=1000", bigsks, sizeof(bigsks), &total), 3);
    assert_int_equal(total, 2500);
    print_message("    2500 PUTs on one keep-alive connection: %.0f ms\n", put_ms);
    h_client_free(cl);
}

/* ---- /_stats ---- */

static void
test_stats(void **state)
{
    struct h_osim o;
    struct h_client *cl = h_client_new();
    struct h_resp r;

    (void)state;
    assert_int_equal(h_osim_start(&o, NULL), 0);
    assert_int_equal(h_stats_int(o.url, "requests"), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(h_client_http(cl, &r, "GET", url(&o, "/bytes/10"), NULL, 0, NULL), 0);
        h_resp_free(&r);
    }
    assert_int_equal(h_client_http(cl, &r, "PUT", url(&o, "/echo"), "xyz", 3, NULL), 0);
    h_resp_free(&r);
    assert_int_equal(h_stats_int(o.url, "requests"), 6);
    assert_int_equal(h_stats_int(o.url, "connections"), 1); /* keep-alive reuse */
    assert_int_equal(h_stats_int(o.url, "by_path.bytes"), 5);
    assert_int_equal(h_stats_int(o.url, "by_path.echo"), 1);
    assert_int_equal(h_stats_int(o.url, "by_path.api"), 0);
    assert_int_equal(h_stats_int(o.url, "by_method.GET"), 5);
    assert_int_equal(h_stats_int(o.url, "by_method.PUT"), 1);
    assert_true(h_stats_int(o.url, "bytes_sent") > 6 * 10);

    assert_int_equal(get_status(url(&o, "/nope"), NULL), 404); /* a second connection */
    assert_int_equal(h_stats_int(o.url, "connections"), 2);
    assert_int_equal(h_stats_int(o.url, "by_path.other"), 1);

    assert_int_equal(h_http(&r, "POST", url(&o, "/_stats/reset"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(h_stats_int(o.url, "requests"), 0);
    assert_int_equal(h_stats_int(o.url, "connections"), 0);
    assert_int_equal(h_stats_int(o.url, "bytes_sent"), 0);
    /* the kept-alive connection counts again after a reset */
    assert_int_equal(h_client_http(cl, &r, "GET", url(&o, "/bytes/1"), NULL, 0, NULL), 0);
    h_resp_free(&r);
    assert_int_equal(h_stats_int(o.url, "connections"), 1);
    h_client_free(cl);
    assert_int_equal(h_osim_stop(&o), 0);
}

/* ---- framing: chunked, pipelining, HTTP/1.0, bodies ---- */

static void
test_chunked(void **state)
{
    struct h_resp r;
    char b[64], raw[4096];

    (void)state;
    assert_int_equal(h_http(&r, "GET", url(&shared, "/chunked?n=5&size=100"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_header(&r, "Transfer-Encoding", b, sizeof(b)), "chunked");
    assert_null(h_header(&r, "Content-Length", b, sizeof(b)));
    assert_int_equal(r.len, 500);
    assert_true(osim_bytes_check(r.body, 0, r.len) == -1);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", url(&shared, "/chunked?n=0"), NULL, 0, NULL), 0);
    assert_int_equal(r.len, 0);
    h_resp_free(&r);

    const char req[] = "GET /chunked?n=2&size=16 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    long n = h_raw("127.0.0.1", shared.port, req, sizeof(req) - 1, raw, sizeof(raw), 3000);
    assert_true(n > 0);
    char *body = strstr(raw, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    assert_true(strncmp(body, "10\r\n", 4) == 0);
    assert_true(raw + n - body == 4 + 16 + 2 + 4 + 16 + 2 + 5);
    assert_true(memcmp(raw + n - 5, "0\r\n\r\n", 5) == 0);
}

/* /resp?drip= spreads the body over time, cut= resets it part way,
 * te=chunked frames it in chunks (Content-Length for HTTP/1.0). */
struct drip {
    double t0, first, last;
    size_t len;
};

static int
drip_body(const void *data, size_t len, void *arg)
{
    struct drip *d = arg;
    double now = h_now_ms();

    if (d->len == 0)
        d->first = now;
    d->last = now;
    if (osim_bytes_check(data, d->len, len) != -1)
        return 1;
    d->len += len;
    return 0;
}

static void
test_resp_drip_cut_chunked(void **state)
{
    struct h_client *cl = h_client_new();
    struct drip d = {0};
    struct h_opts o = {.on_body = drip_body, .arg = &d};
    struct h_resp r;
    char b[64];

    (void)state;
    d.t0 = h_now_ms();
    assert_int_equal(h_client_http_opts(cl, &r, &o, "GET",
                                        url(&shared, "/resp?size=200000&drip=600ms&te=chunked"),
                                        NULL, 0, NULL),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(h_header(&r, "Transfer-Encoding", b, sizeof(b)), "chunked");
    assert_int_equal(d.len, 200000);
    assert_true(d.first - d.t0 < 300); /* the first piece comes early ... */
    assert_true(d.last - d.t0 >= 550); /* ... the last one after the drip */
    h_resp_free(&r);

    memset(&d, 0, sizeof(d));
    o.http10 = true;
    assert_int_equal(h_client_http_opts(cl, &r, &o, "GET",
                                        url(&shared, "/resp?size=1000&te=chunked"), NULL, 0, NULL),
                     0);
    assert_string_equal(h_header(&r, "Content-Length", b, sizeof(b)), "1000");
    assert_int_equal(d.len, 1000);
    h_resp_free(&r);

    memset(&d, 0, sizeof(d));
    o.http10 = false;
    assert_int_equal(h_client_http_opts(cl, &r, &o, "GET",
                                        url(&shared, "/resp?size=100000&drip=300ms&cut=40000"),
                                        NULL, 0, NULL),
                     -1);
    assert_int_equal(r.status, 200);
    assert_int_equal(d.len, 40000); /* the bytes before the cut, then RST */
    h_resp_free(&r);
    h_client_free(cl);
    assert_int_equal(get_status(url(&shared, "/resp?drip=x"), NULL), 400);
    assert_int_equal(get_status(url(&shared, "/resp?cut=0"), NULL), 400);
    assert_int_equal(get_status(url(&shared, "/resp?te=gzip"), NULL), 400);
}

static void
test_pipelining(void **state)
{
    const char req[] = "GET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nping"
                       "GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                       "GET /resp?size=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char out[8192];
    long n;

    (void)state;
    n = h_raw("127.0.0.1", shared.port, req, sizeof(req) - 1, out, sizeof(out), 3000);
    assert_true(n > 0);
    const char *want[] = {"HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 201 Created",
                          "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"};
    const char *p = out;
    for (int i = 0; i < 5; i++) {
        p = strstr(p, "HTTP/1.1 ");
        assert_non_null(p);
        if (strncmp(p, want[i], strlen(want[i])) != 0)
            fail_msg("response %d: %.40s", i, p);
        p++;
    }
    assert_null(strstr(p, "HTTP/1.1 "));
    assert_non_null(strstr(out, "\r\n\r\nping"));
    assert_non_null(strstr(out, "\r\n\r\nabcde"));
    assert_non_null(strstr(out, "Connection: close"));

    /* HTTP/1.0: Content-Length framing, then close */
    const char r10[] = "GET /chunked?n=2&size=3 HTTP/1.0\r\n\r\n";
    n = h_raw("127.0.0.1", shared.port, r10, sizeof(r10) - 1, out, sizeof(out), 3000);
    assert_true(n > 0);
    assert_non_null(strstr(out, "Content-Length: 6\r\n"));
    assert_null(strstr(out, "Transfer-Encoding"));

    /* garbage: 400 and close */
    const char bad[] = "HELLO\r\n\r\n";
    n = h_raw("127.0.0.1", shared.port, bad, sizeof(bad) - 1, out, sizeof(out), 3000);
    assert_true(n > 0);
    assert_true(strncmp(out, "HTTP/1.1 400 ", 13) == 0);
}

static void
test_echo_headers(void **state)
{
    struct h_resp r;
    size_t big = 3u << 20;
    char *body = malloc(big);
    const char *h[] = {"X-Test: one", "Content-Type: text/x-test", NULL};

    (void)state;
    assert_non_null(body);
    osim_bytes_fill((uint8_t *)body, 7, big);
    assert_int_equal(h_http(&r, "POST", url(&shared, "/echo"), body, big, h), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, big);
    assert_memory_equal(r.body, body, big);
    char b[64];
    assert_string_equal(h_header(&r, "Content-Type", b, sizeof(b)), "text/x-test");
    h_resp_free(&r);
    free(body);

    const char *h2[] = {"X-Test: one", "X-Test: two", NULL};
    assert_int_equal(h_http(&r, "GET", url(&shared, "/headers?q=1"), NULL, 0, h2), 0);
    json_t *j = json_body(&r);
    json_t *hs = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(hs, "x-test")), "one, two");
    assert_string_equal(json_string_value(json_object_get(j, "url")), "/headers?q=1");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
    json_decref(j);
    h_resp_free(&r);
}

static void
test_status_and_404(void **state)
{
    struct h_resp r;
    char b[64];

    (void)state;
    assert_int_equal(get_status(url(&shared, "/status/418"), NULL), 418);
    assert_int_equal(h_http(&r, "POST", url(&shared, "/status/500"), "x", 1, NULL), 0);
    assert_int_equal(r.status, 500);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", url(&shared, "/status/204"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.len, 0);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", url(&shared, "/no/such/thing"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(h_header(&r, "Content-Length", b, sizeof(b)));
    assert_true(r.len > 0);
    assert_non_null(h_header(&r, "Date", b, sizeof(b)));
    h_resp_free(&r);
}

/* Sends req, half-closes, reads until the server closes. */
static long
raw_half_close(int port, const char *req, char *out, size_t outlen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 3};
    size_t got = 0;
    ssize_t n;

    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
        return -1;
    shutdown(fd, SHUT_WR);
    while (got < outlen - 1 && (n = recv(fd, out + got, outlen - 1 - got, 0)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(fd);
    return (long)got;
}

static int
count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void
test_half_close_and_limits(void **state)
{
    char out[8192];
    static char big[20000];

    (void)state;
    /* the client half-closes after pipelining: every request is still answered */
    const char req[] = "GET /bytes/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /slow?ms=30 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /status/202 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(raw_half_close(shared.port, req, out, sizeof(out)) > 0);
    assert_int_equal(count(out, "HTTP/1.1 20"), 3);
    assert_non_null(strstr(out, "HTTP/1.1 202 Accepted"));

    /* head limits: 414, 431, 413, and CL+TE smuggling refused */
    snprintf(big, sizeof(big), "GET /%09000d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    assert_true(h_raw("127.0.0.1", shared.port, big, strlen(big), out, sizeof(out), 3000) > 0);
    assert_true(strncmp(out, "HTTP/1.1 414 ", 13) == 0);
    int n = snprintf(big, sizeof(big), "GET /bytes/1 HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 17000);
    memcpy(big + n + 17000, "\r\n\r\n", 5);
    assert_true(h_raw("127.0.0.1", shared.port, big, strlen(big), out, sizeof(out), 3000) > 0);
    assert_true(strncmp(out, "HTTP/1.1 431 ", 13) == 0);
    const char huge[] = "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n";
    assert_true(h_raw("127.0.0.1", shared.port, huge, sizeof(huge) - 1, out, sizeof(out), 3000) >
                0);
    assert_true(strncmp(out, "HTTP/1.1 413 ", 13) == 0);
    const char smug[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_true(h_raw("127.0.0.1", shared.port, smug, sizeof(smug) - 1, out, sizeof(out), 3000) >
                0);
    assert_true(strncmp(out, "HTTP/1.1 400 ", 13) == 0);
    /* CR/LF in a scripted header value is refused, not injected */
    assert_int_equal(get_status(url(&shared, "/resp?cc=a%0d%0aX-Inj:%201"), NULL), 500);
}

/* ---- injected faults and seeds ---- */

static void
test_error_rate(void **state)
{
    struct h_osim o;
    const char *args[] = {"--error-rate", "1.0", NULL};

    (void)state;
    assert_int_equal(h_osim_start(&o, args), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(get_status(url(&o, "/bytes/10"), NULL), 503);
    assert_int_equal(h_stats_int(o.url, "requests"), 3); /* /_stats is never failed */
    assert_int_equal(h_osim_stop(&o), 0);
}

static void
test_reset_rate(void **state)
{
    struct h_osim o;
    const char *args[] = {"--reset-rate", "1.0", NULL};
    struct h_resp r;

    (void)state;
    assert_int_equal(h_osim_start(&o, args), 0);
    assert_int_equal(h_http(&r, "GET", url(&o, "/bytes/1000000"), NULL, 0, NULL), -1);
    assert_int_equal(r.status, 200); /* headers arrived */
    assert_true(r.len < 1000000);
    assert_true(r.curl_code != 0);
    print_message("    cut after %zu bytes: %s\n", r.len, r.error);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", url(&o, "/resp?size=1000"), NULL, 0, NULL), -1);
    assert_true(r.len < 1000);
    h_resp_free(&r);
    assert_int_equal(h_http(&r, "GET", url(&o, "/chunked?n=10&size=1000"), NULL, 0, NULL), -1);
    assert_true(r.len < 10000);
    h_resp_free(&r);
    assert_int_equal(h_osim_stop(&o), 0);
}

static void
status_sequence(const char *seed, char *out, size_t n)
{
    struct h_osim o;
    const char *args[] = {"--seed", seed, "--error-rate", "0.5", "--jitter", "2ms", NULL};
    struct h_client *cl = h_client_new();

    assert_int_equal(h_osim_start(&o, args), 0);
    for (size_t i = 0; i + 1 < n; i++) {
        struct h_resp r;
        assert_int_equal(h_client_http(cl, &r, "GET", url(&o, "/bytes/1"), NULL, 0, NULL), 0);
        out[i] = r.status == 503 ? 'E' : r.status == 200 ? '.' : '?';
        h_resp_free(&r);
    }
    out[n - 1] = '\0';
    h_client_free(cl);
    assert_int_equal(h_osim_stop(&o), 0);
}

static void
test_seed(void **state)
{
    char a[41], b[41], c[41];

    (void)state;
    status_sequence("42", a, sizeof(a));
    status_sequence("42", b, sizeof(b));
    status_sequence("43", c, sizeof(c));
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_non_null(strchr(a, 'E'));
    assert_non_null(strchr(a, '.'));
}

/* ---- /static ---- */

static void
test_static(void **state)
{
    struct h_resp r;
    char etag[64], lm[64], b[128], hdr[160], out[2048];

    (void)state;
    assert_int_equal(h_http(&r, "GET", url(&shared, "/static/a.txt"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello static\n");
    assert_string_equal(h_header(&r, "Cache-Control", b, sizeof(b)), "public, max-age=60");
    assert_string_equal(h_header(&r, "Content-Type", b, sizeof(b)), "text/plain; charset=utf-8");
    assert_non_null(h_header(&r, "ETag", etag, sizeof(etag)));
    assert_non_null(h_header(&r, "Last-Modified", lm, sizeof(lm)));
    assert_true(strncmp(etag, "\"d-", 3) == 0); /* size 13 in hex, then mtime */
    h_resp_free(&r);

    snprintf(hdr, sizeof(hdr), "If-None-Match: %s", etag);
    const char *h1[] = {hdr, NULL};
    assert_int_equal(h_http(&r, "GET", url(&shared, "/static/a.txt"), NULL, 0, h1), 0);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.len, 0);
    assert_string_equal(h_header(&r, "ETag", b, sizeof(b)), etag);
    h_resp_free(&r);
    snprintf(hdr, sizeof(hdr), "If-Modified-Since: %s", lm);
    assert_int_equal(get_status(url(&shared, "/static/a.txt"), h1), 304);

    const char *rh[] = {"Range: bytes=6-11", NULL};
    assert_int_equal(h_http(&r, "GET", url(&shared, "/static/a.txt"), NULL, 0, rh), 0);
    assert_int_equal(r.status, 206);
    assert_string_equal(r.body, "static");
    h_resp_free(&r);

    assert_int_equal(h_http(&r, "GET", url(&shared, "/static/sub/"), NULL, 0, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "<p>index</p>\n");
    h_resp_free(&r);
    assert_int_equal(get_status(url(&shared, "/static/missing.txt"), NULL), 404);
    assert_int_equal(get_status(url(&shared, "/static/link.txt"), NULL), 404); /* leaves root */

    static const char *const traversal[] = {
        "GET /static/../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /static/%2e%2e/secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /static/sub/..%2f..%2fsecret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    };
    for (size_t i = 0; i < 3; i++) {
        long n = h_raw("127.0.0.1", shared.port, traversal[i], strlen(traversal[i]), out,
                       sizeof(out), 3000);
        assert_true(n > 0);
        if (strncmp(out, "HTTP/1.1 400 ", 13) != 0 && strncmp(out, "HTTP/1.1 404 ", 13) != 0)
            fail_msg("traversal %zu answered %.30s", i, out);
        assert_null(strstr(out, "top secret"));
    }
}

static void
test_static_cc_flag(void **state)
{
    struct h_osim o;
    const char *args[] = {"--root", www, "--static-cc", "no-store", "--log", NULL};
    struct h_resp r;
    char b[64];

    (void)state;
    assert_int_equal(h_osim_start(&o, args), 0);
    assert_int_equal(h_http(&r, "GET", url(&o, "/static/a.txt"), NULL, 0, NULL), 0);
    assert_string_equal(h_header(&r, "Cache-Control", b, sizeof(b)), "no-store");
    h_resp_free(&r);
    assert_int_equal(h_osim_stop(&o), 0);
}

/* ---- harness: redis ---- */

static void
test_harness_redis(void **state)
{
    struct h_redis rd;
    char out[128];

    (void)state;
    if (access("/usr/bin/redis-server", X_OK) != 0)
        skip();
    assert_int_equal(h_redis_start(&rd), 0);
    assert_int_equal(h_redis_cmd(&rd, "SET k hello", out, sizeof(out)), 0);
    assert_string_equal(out, "+OK");
    assert_int_equal(h_redis_cmd(&rd, "GET k", out, sizeof(out)), 0);
    assert_string_equal(out, "$5");
    assert_int_equal(h_redis_stop(&rd), 0);
}

/* Last: the shared instance must exit 0 on SIGTERM (under ASan: no leaks). */
static void
test_shared_clean_exit(void **state)
{
    (void)state;
    assert_int_equal(h_osim_stop(&shared), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency),
        cmocka_unit_test(test_slow),
        cmocka_unit_test(test_etag_304),
        cmocka_unit_test(test_ims_304),
        cmocka_unit_test(test_resp_scripted),
        cmocka_unit_test(test_bytes_exact),
        cmocka_unit_test(test_bytes_range),
        cmocka_unit_test(test_bytes_large_rss),
        cmocka_unit_test(test_items_crud),
        cmocka_unit_test(test_items_conditional),
        cmocka_unit_test(test_items_query),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_echo_headers),
        cmocka_unit_test(test_status_and_404),
        cmocka_unit_test(test_half_close_and_limits),
        cmocka_unit_test(test_error_rate),
        cmocka_unit_test(test_reset_rate),
        cmocka_unit_test(test_resp_drip_cut_chunked),
        cmocka_unit_test(test_seed),
        cmocka_unit_test(test_static),
        cmocka_unit_test(test_static_cc_flag),
        cmocka_unit_test(test_harness_redis),
        cmocka_unit_test(test_shared_clean_exit),
    };
    return H_RUN(tests, group_setup, group_teardown);
}
