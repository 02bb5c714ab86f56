/*
 * libFuzzer target for the conf language: lexer, parser, registry, core
 * directives, regex compilation and index building. The text is anonymous
 * (name NULL), so 'include' is refused and nothing is read from disk.
 * A snapshot that loads is also matched against, then released.
 */
#include "conf/conf.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conf_err err;
    struct conf *c = conf_load_string(NULL, (const char *)data, size, &err);
    size_t i;

    if (c == NULL)
        return 0;
    for (i = 0; i < c->nsites; i++) {
        (void)conf_route_match(&c->sites[i], "/", 1);
        (void)conf_route_match(&c->sites[i], "/api/v1/x.png", 13);
    }
    (void)conf_site_match(c, "www.example.com:8080", 20);
    (void)conf_site_match(c, "[::1]", 5);
    conf_unref(c);
    return 0;
}
