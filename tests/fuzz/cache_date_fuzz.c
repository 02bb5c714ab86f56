/*
 * libFuzzer target: HTTP-date parsing (IMF-fixdate, RFC 850, asctime).
 * A date that parses must format back to an IMF-fixdate that parses to the
 * same instant.
 */
#include "cache/cache.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t t, back;
    char buf[40];

    if (!cache_http_date_parse((const char *)data, size, &t))
        return 0;
    if (cache_http_date_format(t, buf, sizeof(buf)) != 29)
        abort();
    if (!cache_http_date_parse(buf, 29, &back) || back != t)
        abort();
    return 0;
}
