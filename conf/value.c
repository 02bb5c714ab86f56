/*
 * Typed values of the conf language: durations, sizes, integers, flags,
 * key=value arguments, and the "file:line:col: message" error formatter.
 * Pure functions; origin-sim links this file alone for its flags.
 */
#include "conf/conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
conf_errf(struct conf_err *err, const struct conf_pos *pos, const char *fmt, ...)
{
    va_list ap;
    int n = 0;

    if (err == NULL)
        return -1;
    if (pos != NULL && pos->file != NULL)
        n = snprintf(err->msg, sizeof(err->msg), "%s:%u:%u: ", pos->file, (unsigned)pos->line,
                     (unsigned)pos->col);
    if (n < 0 || (size_t)n >= sizeof(err->msg))
        n = 0;
    va_start(ap, fmt);
    vsnprintf(err->msg + n, sizeof(err->msg) - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Parses the decimal number at s[*i]; 0 ok, -1 no digits or overflow. */
static int
take_number(const char *s, size_t len, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    size_t start = *i;

    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        unsigned d = (unsigned)(s[*i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        (*i)++;
    }
    if (*i == start)
        return -1;
    *out = v;
    return 0;
}

static int
mul_add(uint64_t *acc, uint64_t v, uint64_t unit)
{
    if (unit != 0 && v > UINT64_MAX / unit)
        return -1;
    v *= unit;
    if (*acc > UINT64_MAX - v)
        return -1;
    *acc += v;
    return 0;
}

/* "500ms", "30s", "5m", "1h", "7d", "1m30s"; a bare number means seconds. */
int
conf_duration_from_str(const char *s, size_t len, uint64_t *ms)
{
    uint64_t total = 0;
    size_t i = 0;

    if (len == 0)
        return -1;
    while (i < len) {
        uint64_t v, unit;
        if (take_number(s, len, &i, &v) < 0)
            return -1;
        if (i == len) {
            if (total != 0) /* "1m30" is ambiguous */
                return -1;
            unit = 1000;
        } else if (len - i >= 2 && s[i] == 'm' && s[i + 1] == 's') {
            unit = 1, i += 2;
        } else {
            switch (s[i]) {
            case 's': unit = 1000; break;
            case 'm': unit = 60 * 1000; break;
            case 'h': unit = 3600 * 1000; break;
            case 'd': unit = 86400 * 1000; break;
            default: return -1;
            }
            i++;
        }
        if (mul_add(&total, v, unit) < 0)
            return -1;
    }
    *ms = total;
    return 0;
}

/* "512", "64k", "10m", "2g" (also upper case); binary units. */
int
conf_size_from_str(const char *s, size_t len, uint64_t *bytes)
{
    uint64_t v, unit = 1;
    size_t i = 0;

    if (take_number(s, len, &i, &v) < 0)
        return -1;
    if (i < len) {
        switch (s[i]) {
        case 'k': case 'K': unit = 1024; break;
        case 'm': case 'M': unit = 1024 * 1024; break;
        case 'g': case 'G': unit = 1024ull * 1024 * 1024; break;
        default: return -1;
        }
        i++;
    }
    if (i != len)
        return -1;
    *bytes = 0;
    return mul_add(bytes, v, unit);
}

int
conf_parse_duration(const struct conf_arg *a, const char *what, uint64_t *ms, struct conf_err *err)
{
    if (conf_duration_from_str(a->s, a->len, ms) < 0)
        return conf_errf(err, &a->pos,
                         "'%s' expects a duration like 500ms, 30s, 5m, 1h or 7d, not '%s'", what,
                         a->s);
    return 0;
}

int
conf_parse_size(const struct conf_arg *a, const char *what, uint64_t *bytes, struct conf_err *err)
{
    if (conf_size_from_str(a->s, a->len, bytes) < 0)
        return conf_errf(err, &a->pos, "'%s' expects a size like 512, 64k, 10m or 2g, not '%s'",
                         what, a->s);
    return 0;
}

int
conf_parse_uint(const struct conf_arg *a, const char *what, uint64_t min, uint64_t max,
                uint64_t *out, struct conf_err *err)
{
    uint64_t v;
    size_t i = 0;

    if (take_number(a->s, a->len, &i, &v) < 0 || i != a->len)
        return conf_errf(err, &a->pos, "'%s' expects a whole number, not '%s'", what, a->s);
    if (v < min || v > max)
        return conf_errf(err, &a->pos, "'%s' expects a number from %llu to %llu, not %llu", what,
                         (unsigned long long)min, (unsigned long long)max,
                         (unsigned long long)v);
    *out = v;
    return 0;
}

int
conf_parse_flag(const struct conf_arg *a, const char *what, bool *out, struct conf_err *err)
{
    if (strcmp(a->s, "on") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(a->s, "off") == 0) {
        *out = false;
        return 0;
    }
    return conf_errf(err, &a->pos, "'%s' expects 'on' or 'off', not '%s'", what, a->s);
}

bool
conf_arg_kv(const struct conf_arg *a, const char **key, size_t *klen, const char **val)
{
    const char *eq = memchr(a->s, '=', a->len);

    if (eq == NULL || eq == a->s)
        return false;
    *key = a->s;
    *klen = (size_t)(eq - a->s);
    *val = eq + 1;
    return true;
}

/* A TCP port 1..65535 in decimal; false otherwise. */
bool
conf_port_from_str(const char *s, size_t len, uint16_t *port)
{
    unsigned v = 0;

    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}
