/*
 * libFuzzer target: the SNI side of certificate choice (tls/names.c).
 * Input: certificate names, one per line, then the client's server name on
 * the last line. Checks what the handshake relies on:
 *  - a normalised name is lower case, has no trailing dot, at most 253
 *    bytes, and normalises to itself;
 *  - a name found in the index names a certificate that was added, and
 *    that certificate's pattern matches the name (exactly, or a wildcard
 *    covering exactly its first label).
 */
#include "tls/tls-int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_NAMES 64

static bool
matches(const char *pattern, size_t plen, const char *host, size_t hlen)
{
    char norm[TLS_NAME_MAX + 1];
    size_t n;

    if (plen > 2 && pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = memchr(host, '.', hlen);
        n = tls_host_norm(pattern + 2, plen - 2, norm, sizeof(norm));
        return dot != NULL && n > 0 && (size_t)(host + hlen - dot - 1) == n &&
               memcmp(dot + 1, norm, n) == 0;
    }
    n = tls_host_norm(pattern, plen, norm, sizeof(norm));
    return n == hlen && memcmp(norm, host, n) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size, *last = p;
    const char *pat[MAX_NAMES];
    size_t plen[MAX_NAMES], npat = 0;
    struct tls_names names;
    char host[TLS_NAME_MAX + 1], again[TLS_NAME_MAX + 1];
    size_t hlen;
    long i;

    memset(&names, 0, sizeof(names));
    for (const char *nl; (nl = memchr(last, '\n', (size_t)(end - last))) != NULL; last = nl + 1) {
        if (npat == MAX_NAMES)
            break;
        pat[npat] = last;
        plen[npat] = (size_t)(nl - last);
        if (tls_names_add(&names, last, plen[npat], npat) < 0)
            abort(); /* out of memory */
        npat++;
    }
    tls_names_finish(&names);

    hlen = tls_host_norm(last, (size_t)(end - last), host, sizeof(host));
    if (hlen > 0) {
        if (hlen > TLS_NAME_MAX || host[hlen] != '\0' || host[hlen - 1] == '.')
            abort();
        for (size_t k = 0; k < hlen; k++)
            if (isupper((unsigned char)host[k]))
                abort();
        if (tls_host_norm(host, hlen, again, sizeof(again)) != hlen || memcmp(host, again, hlen))
            abort();
        i = tls_names_find(&names, host, hlen);
        if (i >= (long)npat)
            abort();
        if (i >= 0 && !matches(pat[i], plen[i], host, hlen))
            abort();
    }
    tls_names_fini(&names);
    return 0;
}
