/*
 * The admin listener (engine main thread, libevent's evhttp: not on the
 * request path): GET /healthz, GET /metrics, GET /status, POST /reload,
 * POST /purge, and the KV API (adminkv.c).
 */
#include "proxy/internal.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static void
reply(struct evhttp_request *req, int code, const char *ctype, struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, code, NULL, body);
}

/* The cache settings of the route a URL goes to (site by host, route by
 * the decoded, normalised path, as for a request): its key= template,
 * ignore_query and sort_query shape the key. NULL: the default key form. */
static const struct cache_route *
purge_route(struct proxy_engine *e, const char *host, struct cache_str path)
{
    char lower[256], decoded[8192], norm[8192];
    size_t hl = strlen(host), dlen, nlen;
    const struct conf_site *site;
    const struct conf_route *route;

    if (hl >= sizeof(lower))
        return NULL;
    for (size_t i = 0; i < hl; i++)
        lower[i] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] + 32 : host[i]);
    lower[hl] = '\0';
    site = conf_site_match(e->conf, lower, hl);
    if (site == NULL)
        return NULL;
    dlen = proxy_path_decode(path.p, path.len, decoded, sizeof(decoded));
    nlen = proxy_path_normalize(decoded, dlen, norm, sizeof(norm));
    route = nlen > 0 ? conf_route_match(site, norm, nlen) : NULL;
    return route != NULL ? cache_route_conf(route) : NULL;
}

/* POST /purge?url=URL | prefix=URL-PREFIX | tag=TAG [&soft=1] (query or
 * form body). url= builds the key the way the URL's route does (its key=
 * template, ignore_query, sort_query; request headers a template names are
 * empty); prefix= and tag= match stored keys and tags as they are. */
static void
admin_purge(struct proxy_engine *e, struct evhttp_request *req, enum evhttp_cmd_type cmd,
            struct evbuffer *body)
{
    struct evkeyvalq q;
    const char *uri = evhttp_request_get_uri(req);
    const char *qs = strchr(uri, '?');
    char form[4096];
    const char *url, *prefix, *tag, *soft;
    bool is_soft;
    int n = -1;

    if (cmd != EVHTTP_REQ_POST) {
        evbuffer_add_printf(body, "{\"error\":\"use POST /purge\"}\n");
        reply(req, 405, "application/json", body);
        return;
    }
    if (e->cache == NULL) {
        evbuffer_add_printf(body, "{\"error\":\"no cache_dir is configured\"}\n");
        reply(req, 409, "application/json", body);
        return;
    }
    TAILQ_INIT(&q);
    if (qs != NULL) {
        evhttp_parse_query_str(qs + 1, &q);
    } else {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        if (len >= sizeof(form))
            len = sizeof(form) - 1;
        evbuffer_copyout(in, form, len);
        form[len] = '\0';
        evhttp_parse_query_str(form, &q);
    }
    url = evhttp_find_header(&q, "url");
    prefix = evhttp_find_header(&q, "prefix");
    tag = evhttp_find_header(&q, "tag");
    soft = evhttp_find_header(&q, "soft");
    is_soft = soft != NULL && (strcmp(soft, "1") == 0 || strcmp(soft, "true") == 0);
    if (url != NULL) {
        char key[CACHE_KEY_MAX];
        size_t klen;
        struct evhttp_uri *u = evhttp_uri_parse(url);
        const char *host = u ? evhttp_uri_get_host(u) : NULL;
        if (u != NULL && host != NULL) {
            char hostport[300];
            int port = evhttp_uri_get_port(u);
            const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
            const char *scheme = evhttp_uri_get_scheme(u);
            if (port > 0)
                snprintf(hostport, sizeof(hostport), "%s:%d", host, port);
            else
                snprintf(hostport, sizeof(hostport), "%s", host);
            struct cache_key_parts parts = {
                .scheme = {scheme ? scheme : "http", strlen(scheme ? scheme : "http")},
                .host = {hostport, strlen(hostport)},
                .path = {(path && *path) ? path : "/", strlen((path && *path) ? path : "/")},
                .query = {query, query ? strlen(query) : 0},
            };
            if (cache_key_build(purge_route(e, host, parts.path), &parts, NULL, 0, key,
                                sizeof(key), &klen) == 0)
                n = cache_purge_key(e->cache, key, klen, is_soft);
        }
        if (u != NULL)
            evhttp_uri_free(u);
    } else if (prefix != NULL) {
        n = cache_purge_prefix(e->cache, prefix, strlen(prefix), is_soft);
    } else if (tag != NULL) {
        n = cache_purge_tag(e->cache, tag, strlen(tag), is_soft);
    } else {
        evbuffer_add_printf(body, "{\"error\":\"give url=, prefix= or tag= (and soft=1)\"}\n");
        reply(req, 400, "application/json", body);
        evhttp_clear_headers(&q);
        return;
    }
    if (n < 0) {
        evbuffer_add_printf(body, "{\"error\":\"purge failed or bad url\"}\n");
        reply(req, 400, "application/json", body);
    } else {
        evbuffer_add_printf(body, "{\"purged\":%d,\"soft\":%s}\n", n,
                            is_soft ? "true" : "false");
        reply(req, 200, "application/json", body);
    }
    evhttp_clear_headers(&q);
}

static void
admin_cb(struct evhttp_request *req, void *arg)
{
    struct proxy_engine *e = arg;
    const char *uri = evhttp_request_get_uri(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct evbuffer *body = evbuffer_new();
    char path[256];
    size_t n;

    if (body == NULL) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    n = strcspn(uri, "?");
    snprintf(path, sizeof(path), "%.*s", (int)(n < sizeof(path) ? n : sizeof(path) - 1), uri);
    if (strcmp(path, "/healthz") == 0 && (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)) {
        bool draining = atomic_load(&e->draining);
        evbuffer_add_printf(body, draining ? "draining\n" : "ok\n");
        reply(req, draining ? 503 : 200, "text/plain", body);
    } else if (strcmp(path, "/metrics") == 0 && cmd == EVHTTP_REQ_GET) {
        proxy_metrics_render(e, body);
        reply(req, 200, "text/plain; version=0.0.4", body);
    } else if (strcmp(path, "/status") == 0 && cmd == EVHTTP_REQ_GET) {
        proxy_status_render(e, body);
        reply(req, 200, "application/json", body);
    } else if (proxy_admin_kv(e, req, path, (int)cmd)) {
        evbuffer_free(body);
        return;
    } else if (strcmp(path, "/purge") == 0) {
        admin_purge(e, req, cmd, body);
        evbuffer_free(body);
        return;
    } else if (strcmp(path, "/reload") == 0) {
        if (cmd != EVHTTP_REQ_POST) {
            evbuffer_add_printf(body, "{\"error\":\"use POST /reload\"}\n");
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
            reply(req, 405, "application/json", body);
        } else {
            char err[CONF_ERR_MAX];
            if (proxy_engine_reload(e, err, sizeof(err)) == 0) {
                evbuffer_add_printf(body, "{\"status\":\"reloaded\",\"reloads\":%llu}\n",
                                    (unsigned long long)e->reloads);
                reply(req, 200, "application/json", body);
            } else {
                evbuffer_add_printf(body, "{\"status\":\"error\",\"error\":\"");
                proxy_json_str(body, err, strlen(err));
                evbuffer_add_printf(body, "\"}\n");
                reply(req, 400, "application/json", body);
            }
        }
    } else {
        evbuffer_add_printf(body, "{\"error\":\"not found\",\"endpoints\":[\"GET /healthz\","
                                  "\"GET /metrics\",\"GET /status\",\"POST /purge\","
                                  "\"POST /reload\",\"GET|PUT|DELETE /kv/NS/KEY\","
                                  "\"GET /kv/NS?prefix=&cursor=\"]}\n");
        reply(req, 404, "application/json", body);
    }
    evbuffer_free(body);
}

int
proxy_admin_start(struct proxy_engine *e)
{
    struct evhttp *http;

    if (e->fds->admin_fd < 0)
        return 0;
    http = evhttp_new(e->base);
    if (http == NULL)
        return -1;
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_timeout(http, 10);
    evhttp_set_max_body_size(http, 1 << 20);
    evhttp_set_gencb(http, admin_cb, e);
    if (evhttp_accept_socket(http, e->fds->admin_fd) < 0) {
        evhttp_free(http);
        return -1;
    }
    e->fds->admin_fd = -1; /* evhttp owns it */
    e->admin = http;
    return 0;
}

void
proxy_admin_stop(struct proxy_engine *e)
{
    if (e->admin != NULL) {
        evhttp_free(e->admin);
        e->admin = NULL;
    }
    proxy_admin_kv_fini();
}
