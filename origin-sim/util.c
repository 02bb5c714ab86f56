/*
 * origin-sim helpers: PRNG, HTTP dates, query strings, entity-tag lists.
 */
#include "origin-sim/osim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* splitmix64, to spread a small seed over the xorshift128+ state. */
static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void
osim_rng_seed(struct osim_server *srv, uint64_t seed)
{
    uint64_t x = seed;
    srv->rng[0] = splitmix64(&x);
    srv->rng[1] = splitmix64(&x);
    if ((srv->rng[0] | srv->rng[1]) == 0)
        srv->rng[0] = 1;
}

uint64_t
osim_rng_next(struct osim_server *srv)
{
    uint64_t s1 = srv->rng[0];
    const uint64_t s0 = srv->rng[1];
    srv->rng[0] = s0;
    s1 ^= s1 << 23;
    srv->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return srv->rng[1] + s0;
}

double
osim_rng_unit(struct osim_server *srv)
{
    return (double)(osim_rng_next(srv) >> 11) * 0x1.0p-53;
}

double
osim_rng_normal(struct osim_server *srv)
{
    /* Box-Muller; u1 in (0, 1] so log() is finite. */
    double u1 = 1.0 - osim_rng_unit(srv);
    double u2 = osim_rng_unit(srv);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void
osim_http_date(time_t t, char *buf, size_t n)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(buf, n, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

const char *
osim_date_now(struct osim_server *srv)
{
    time_t now = time(NULL);

    if (now != srv->date_at) {
        srv->date_at = now;
        osim_http_date(now, srv->date, sizeof(srv->date));
    }
    return srv->date;
}

/* IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), RFC 850 ("Sunday, 06-Nov-94
 * 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994"), as RFC 9110 asks. */
int
osim_parse_http_date(const char *s, size_t len, time_t *out)
{
    static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                       "%a %b %e %H:%M:%S %Y"};
    char buf[64];
    struct tm tm;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(buf, fmts[i], &tm);
        if (end != NULL && *end == '\0') {
            *out = timegm(&tm);
            return 0;
        }
    }
    return -1;
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

long
osim_pct_decode(const char *src, size_t len, char *dst, size_t cap, bool plus)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        char ch = src[i];
        if (ch == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = hexval(src[i + 1]);
            lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus) {
            ch = ' ';
        }
        if (o + 1 >= cap)
            return -1;
        dst[o++] = ch;
    }
    if (cap > 0)
        dst[o] = '\0';
    return (long)o;
}

int
osim_query_get(const char *q, size_t qlen, const char *name, char *dst, size_t cap, size_t *outlen)
{
    size_t pos = 0;

    return osim_query_next(q, qlen, &pos, name, dst, cap, outlen);
}

int
osim_query_next(const char *q, size_t qlen, size_t *pos, const char *name, char *dst, size_t cap,
                size_t *outlen)
{
    size_t nlen = strlen(name);
    size_t i = *pos;

    while (i < qlen) {
        size_t end = i;
        while (end < qlen && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        size_t klen = eq != NULL ? (size_t)(eq - (q + i)) : end - i;
        if (klen == nlen && memcmp(q + i, name, nlen) == 0) {
            const char *v = eq != NULL ? eq + 1 : q + end;
            long n = osim_pct_decode(v, (size_t)(q + end - v), dst, cap, true);
            *pos = end + 1;
            if (n < 0)
                return -1;
            if (outlen != NULL)
                *outlen = (size_t)n;
            return 1;
        }
        i = end + 1;
    }
    *pos = qlen;
    return 0;
}

int
osim_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 19)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

bool
osim_ieq(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

/* Compares etag with each entity-tag of a comma-separated list (weak or
 * strong comparison, RFC 9110 8.8.3.2); a '*' member matches anything. */
static bool
etag_list_scan(const char *list, size_t len, const char *etag, size_t elen, bool strong)
{
    bool ew = elen >= 2 && etag[0] == 'W' && etag[1] == '/';
    const char *eo = ew ? etag + 2 : etag; /* opaque-tag incl. quotes */
    size_t eolen = ew ? elen - 2 : elen;
    size_t i = 0;

    while (i < len) {
        while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        if (i >= len)
            break;
        if (list[i] == '*')
            return true;
        bool w = false;
        if (len - i >= 2 && list[i] == 'W' && list[i + 1] == '/') {
            w = true;
            i += 2;
        }
        if (i >= len || list[i] != '"')
            return false; /* malformed list: no match */
        size_t start = i++;
        while (i < len && list[i] != '"')
            i++;
        if (i >= len)
            return false;
        i++;
        size_t tlen = i - start;
        if (tlen == eolen && memcmp(list + start, eo, tlen) == 0 && (!strong || (!w && !ew)))
            return true;
    }
    return false;
}

bool
osim_etag_list_match(const char *list, size_t len, const char *etag, size_t elen)
{
    return etag_list_scan(list, len, etag, elen, false);
}

bool
osim_etag_list_match_strong(const char *list, size_t len, const char *etag, size_t elen)
{
    return etag_list_scan(list, len, etag, elen, true);
}
