/*
 * The proxy's own request-head handling on top of llhttp: bounded head
 * buffer and header index (proxy/head.c), hop-by-hop filtering, token
 * lists, and the path decoding and normalisation used for routing.
 */
#include <stdint.h>
#include <string.h>

#include "proxy/internal.h"

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
    return proxy_head_url(p->data, at, len, 2048) < 0 ? HPE_USER : 0;
}

static int
on_field(llhttp_t *p, const char *at, size_t len)
{
    return proxy_head_field(p->data, at, len) < 0 ? HPE_USER : 0;
}

static int
on_value(llhttp_t *p, const char *at, size_t len)
{
    return proxy_head_value(p->data, at, len) < 0 ? HPE_USER : 0;
}

static int
on_headers_complete(llhttp_t *p)
{
    struct proxy_head *h = p->data;
    struct proxy_hdr x;
    char dec[4096], norm[4096];

    for (size_t i = 0; proxy_head_get(h, i, &x); i++) {
        (void)proxy_hdr_hop_by_hop(&x, h);
        (void)proxy_token_in_list(x.value, x.vlen, "close");
    }
    size_t d = proxy_path_decode(h->buf + h->url_off, h->url_len, dec, sizeof(dec));
    size_t n = proxy_path_normalize(dec, d, norm, sizeof(norm));
    if (n > 0 && (norm[0] != '/' || n >= sizeof(norm)))
        __builtin_trap();
    return 0;
}

static int
on_message_begin(llhttp_t *p)
{
    proxy_head_reset(p->data);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static llhttp_settings_t s;
    struct proxy_head h;
    llhttp_t parser;

    llhttp_settings_init(&s);
    s.on_message_begin = on_message_begin;
    s.on_url = on_url;
    s.on_header_field = on_field;
    s.on_header_value = on_value;
    s.on_headers_complete = on_headers_complete;
    if (proxy_head_init(&h, 8192, 64) < 0)
        return 0;
    llhttp_init(&parser, HTTP_REQUEST, &s);
    parser.data = &h;
    /* in two pieces, to exercise values split across reads */
    size_t cut = size / 2;
    if (llhttp_execute(&parser, (const char *)data, cut) == HPE_OK)
        llhttp_execute(&parser, (const char *)data + cut, size - cut);
    proxy_head_fini(&h);
    return 0;
}
