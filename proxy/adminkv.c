/*
 * The KV admin API on the admin listener (engine main thread): what edge
 * functions keep in Redis, by the namespace they see it under.
 *
 *   GET    /kv                          the namespaces of the current conf's functions
 *   GET    /kv/NS/KEY                   the value (200, raw bytes) or 404
 *   PUT    /kv/NS/KEY[?ttl=30s]         body = value; 204
 *   DELETE /kv/NS/KEY                   {"deleted":0|1}
 *   GET    /kv/NS[?prefix=P&cursor=C]   {"keys":[...],"cursor":"C"}: one SCAN step;
 *                                       cursor "0" = done
 *
 * NS is what sits between "efn:" and the last ':' of a function's KV prefix
 * ("efn:<function>:<id>:"), e.g. auth_key:keys, %-encoded in the URL
 * (route ids hold '/'). Redis down: 503; no answer within kv_timeout: 504.
 */
#include "proxy/internal.h"

#include "compute/compute.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define NS_MAX 512
#define KEY_MAX 1024

enum kv_verb { V_GET, V_PUT, V_DEL, V_LIST };

struct pending {
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    struct kv_handle *h;
    enum kv_verb verb;
    size_t plen; /* length of the prefix, stripped from listed keys */
};

static struct kv_client *admin_kv;
static struct kv_client *admin_kv_old;

static void
send_json(struct evhttp_request *req, int code, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, NULL, b);
    evbuffer_free(b);
}

/* A quoted JSON string. */
static void
json_str(struct evbuffer *out, const char *s, size_t n)
{
    evbuffer_add(out, "\"", 1);
    proxy_json_str(out, s, n);
    evbuffer_add(out, "\"", 1);
}

static void
pending_end(struct pending *p)
{
    evhttp_connection_set_closecb(p->conn, NULL, NULL);
    kv_handle_free(p->h);
    free(p);
}

/* The admin client went away before the answer: drop the op. */
static void
conn_closed(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    pending_end(arg);
}

static int
status_code(int st)
{
    return st == EFN_E_TIMEOUT ? 504 : st == EFN_E_NOTFOUND ? 404 : 503;
}

static const char *
status_text(int st)
{
    switch (st) {
    case EFN_E_TIMEOUT: return "{\"error\":\"the KV store did not answer in time\"}\n";
    case EFN_E_NOTFOUND: return "{\"error\":\"no such key\"}\n";
    default: return "{\"error\":\"the KV store is unavailable\"}\n";
    }
}

static void
on_reply(void *ud, const efn_kv_reply *rep)
{
    struct pending *p = ud;
    struct evhttp_request *req = p->req;
    struct evbuffer *b;

    if (rep->status != EFN_OK) {
        send_json(req, status_code(rep->status), status_text(rep->status));
        pending_end(p);
        return;
    }
    switch (p->verb) {
    case V_GET:
        b = evbuffer_new();
        if (b == NULL) {
            evhttp_send_error(req, 503, NULL);
            break;
        }
        evbuffer_add(b, rep->value.ptr, rep->value.len);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "application/octet-stream");
        evhttp_send_reply(req, 200, NULL, b);
        evbuffer_free(b);
        break;
    case V_PUT: evhttp_send_reply(req, 204, NULL, NULL); break;
    case V_DEL:
        send_json(req, 200, rep->integer > 0 ? "{\"deleted\":1}\n" : "{\"deleted\":0}\n");
        break;
    case V_LIST: break;
    }
    pending_end(p);
}

static void
on_scan(void *ud, int status, const char *cursor, const efn_str *keys, size_t n)
{
    struct pending *p = ud;
    struct evbuffer *b;

    if (status != EFN_OK) {
        send_json(p->req, status_code(status), status_text(status));
        pending_end(p);
        return;
    }
    b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(p->req, 503, NULL);
        pending_end(p);
        return;
    }
    evbuffer_add_printf(b, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            evbuffer_add(b, ",", 1);
        if (keys[i].len >= p->plen)
            json_str(b, keys[i].ptr + p->plen, keys[i].len - p->plen);
    }
    evbuffer_add_printf(b, "],\"cursor\":");
    json_str(b, cursor, strlen(cursor));
    evbuffer_add_printf(b, "}\n");
    evhttp_add_header(evhttp_request_get_output_headers(p->req), "Content-Type",
                      "application/json");
    evhttp_send_reply(p->req, 200, NULL, b);
    evbuffer_free(b);
    pending_end(p);
}

static struct kv_client *
client(struct proxy_engine *e)
{
    const struct compute_main *cm = compute_conf_main(e->conf);

    if (cm == NULL)
        return NULL;
    if (admin_kv_old != NULL && kv_client_handles(admin_kv_old) == 0) {
        kv_client_free(admin_kv_old);
        admin_kv_old = NULL;
    }
    if (admin_kv != NULL && !kv_conf_equal(kv_client_conf(admin_kv), &cm->redis) &&
        admin_kv_old == NULL) {
        admin_kv_old = admin_kv; /* the conf moved Redis: a new connection */
        admin_kv = NULL;
    }
    if (admin_kv == NULL)
        admin_kv = kv_client_new(e->base, &cm->redis);
    return admin_kv;
}

/* GET /kv: the namespaces in use. */
static void
list_namespaces(struct proxy_engine *e, struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    const struct conf *c = e->conf;
    bool first = true;

    if (b == NULL) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    evbuffer_add_printf(b, "{\"namespaces\":[");
    for (size_t i = 0; i < c->nsites; i++) {
        for (size_t j = 0; j < c->sites[i].nroutes; j++) {
            const struct compute_route *cr = compute_route_chain(&c->sites[i].routes[j]);
            for (size_t k = 0; cr != NULL && k < cr->nentries; k++) {
                const efn_str *pf = &cr->entries[k].kv_prefix;
                if (pf->len < 5)
                    continue;
                evbuffer_add_printf(b, "%s{\"function\":", first ? "" : ",");
                json_str(b, cr->entries[k].name, strlen(cr->entries[k].name));
                evbuffer_add_printf(b, ",\"namespace\":");
                json_str(b, pf->ptr + 4, pf->len - 5);
                evbuffer_add_printf(b, ",\"prefix\":");
                json_str(b, pf->ptr, pf->len);
                evbuffer_add_printf(b, "}");
                first = false;
            }
        }
    }
    evbuffer_add_printf(b, "]}\n");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, NULL, b);
    evbuffer_free(b);
}

/* "/kv/NS/KEY" or "/kv/NS" (path without the query), decoded. */
static bool
split_path(const char *path, char *ns, char *key, bool *has_key)
{
    const char *a = path + 4, *slash = strchr(a, '/');
    size_t nlen = slash ? (size_t)(slash - a) : strlen(a);
    char *dec;
    size_t dlen;

    if (nlen == 0 || nlen >= NS_MAX)
        return false;
    memcpy(ns, a, nlen);
    ns[nlen] = '\0';
    dec = evhttp_uridecode(ns, 0, &dlen);
    if (dec == NULL || dlen == 0 || dlen >= NS_MAX || memchr(dec, '\0', dlen) != NULL) {
        free(dec);
        return false;
    }
    memcpy(ns, dec, dlen + 1);
    free(dec);
    *has_key = slash != NULL && slash[1] != '\0';
    key[0] = '\0';
    if (!*has_key)
        return true;
    dec = evhttp_uridecode(slash + 1, 0, &dlen);
    if (dec == NULL || dlen == 0 || dlen >= KEY_MAX) {
        free(dec);
        return false;
    }
    memcpy(key, dec, dlen);
    key[dlen] = '\0';
    free(dec);
    return true;
}

bool
proxy_admin_kv(struct proxy_engine *e, struct evhttp_request *req, const char *path,
               int cmd)
{
    char ns[NS_MAX], key[KEY_MAX], prefix[NS_MAX + 8];
    struct evkeyvalq q;
    const char *uri = evhttp_request_get_uri(req), *qs = strchr(uri, '?');
    struct kv_client *kc;
    struct pending *p;
    bool has_key;
    int rc;

    if (strcmp(path, "/kv") != 0 && strncmp(path, "/kv/", 4) != 0)
        return false;
    if (strcmp(path, "/kv") == 0 || strcmp(path, "/kv/") == 0) {
        if (cmd != EVHTTP_REQ_GET)
            send_json(req, 405, "{\"error\":\"use GET /kv\"}\n");
        else
            list_namespaces(e, req);
        return true;
    }
    if (!split_path(path, ns, key, &has_key)) {
        send_json(req, 400, "{\"error\":\"expected /kv/NAMESPACE[/KEY]\"}\n");
        return true;
    }
    if (!has_key && cmd != EVHTTP_REQ_GET) {
        send_json(req, 405, "{\"error\":\"a namespace can only be listed (GET)\"}\n");
        return true;
    }
    if (has_key && cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_PUT && cmd != EVHTTP_REQ_DELETE) {
        send_json(req, 405, "{\"error\":\"use GET, PUT or DELETE on a key\"}\n");
        return true;
    }
    kc = client(e);
    if (kc == NULL) {
        send_json(req, 503, "{\"error\":\"no KV store is configured\"}\n");
        return true;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->h = kv_handle_new(kc)) == NULL) {
        free(p);
        evhttp_send_error(req, 503, NULL);
        return true;
    }
    p->req = req;
    p->conn = evhttp_request_get_connection(req);
    snprintf(prefix, sizeof(prefix), "efn:%s:", ns);
    p->plen = strlen(prefix);
    TAILQ_INIT(&q);
    if (qs != NULL)
        evhttp_parse_query_str(qs + 1, &q);
    efn_str pf = {prefix, strlen(prefix)}, k = {key, strlen(key)};
    if (!has_key) {
        const char *mp = evhttp_find_header(&q, "prefix"), *cur = evhttp_find_header(&q, "cursor");
        p->verb = V_LIST;
        rc = kv_op_scan(p->h, pf, (efn_str){mp ? mp : "", mp ? strlen(mp) : 0},
                        cur && *cur ? cur : "0", 200, on_scan, p);
    } else if (cmd == EVHTTP_REQ_GET) {
        p->verb = V_GET;
        rc = kv_op_get(p->h, pf, k, on_reply, p);
    } else if (cmd == EVHTTP_REQ_DELETE) {
        p->verb = V_DEL;
        rc = kv_op_del(p->h, pf, k, on_reply, p);
    } else {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        const char *ttl = evhttp_find_header(&q, "ttl");
        uint64_t ttl_ms = 0;
        if (ttl != NULL && conf_duration_from_str(ttl, strlen(ttl), &ttl_ms) < 0) {
            send_json(req, 400, "{\"error\":\"ttl= expects a duration like 30s or 1h\"}\n");
            evhttp_clear_headers(&q);
            kv_handle_free(p->h);
            free(p);
            return true;
        }
        p->verb = V_PUT;
        rc = kv_op_set(p->h, pf, k, (efn_str){(const char *)evbuffer_pullup(in, -1), len},
                       ttl_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ttl_ms, on_reply, p);
    }
    evhttp_clear_headers(&q);
    if (rc != EFN_OK) {
        send_json(req, rc == EFN_E_INVAL ? 400 : 503,
                  rc == EFN_E_INVAL ? "{\"error\":\"bad key\"}\n" : status_text(rc));
        kv_handle_free(p->h);
        free(p);
        return true;
    }
    evhttp_connection_set_closecb(p->conn, conn_closed, p);
    return true;
}

void
proxy_admin_kv_fini(void)
{
    kv_client_free(admin_kv_old);
    kv_client_free(admin_kv);
    admin_kv = admin_kv_old = NULL;
}
