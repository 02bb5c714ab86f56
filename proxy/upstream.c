/*
 * Upstream side: picking a server of an origin (smooth weighted round-robin,
 * backups, passive health), resolving it (proxy/dns), pooled keep-alive
 * connections per worker, sending the request, parsing the response with
 * llhttp and streaming it to the client side with backpressure, retries.
 *
 * TLS origins (tls/tls.h): the connection is an OpenSSL bufferevent in
 * CONNECTING state on no fd, then bufferevent_socket_connect; libevent runs
 * the handshake once the socket is writable and reports CONNECTED after it,
 * so connect_timeout covers TCP and TLS alike and everything after that is
 * the same code as plain HTTP (the buffers hold plaintext; proxy_bev_flush
 * leaves the writing to the bufferevent). A handshake or verification
 * failure is a connect-phase failure (PROXY_FAIL_TLS: retried on another
 * server, 502 naming TLS). Servers are told apart by their TLS settings,
 * so a pooled connection or a session only serves requests it was made
 * for; each keeps the newest session its server sent, offered to the next
 * new connection.
 */
#include "proxy/internal.h"
#include "proxy/dns.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/tcp.h>

#define UP_HIGH_WATER (256 * 1024)
#define UP_FEED_MAX (64 * 1024)
#define UP_MAX_HEAD (64 * 1024)

static void up_try(struct proxy_req *r);
static void up_readcb(struct bufferevent *bev, void *arg);
static void up_writecb(struct bufferevent *bev, void *arg);
static void up_eventcb(struct bufferevent *bev, short what, void *arg);
static void up_timer_cb(evutil_socket_t fd, short what, void *arg);
static void up_fail(struct proxy_req *r, enum proxy_err_kind kind, const char *detail);
static void up_give_up(struct proxy_req *r, enum proxy_err_kind kind, const char *detail);
static bool up_no_retry(struct proxy_req *r);

static int u_on_message_begin(llhttp_t *p);
static int u_on_status(llhttp_t *p, const char *at, size_t len);
static int u_on_header_field(llhttp_t *p, const char *at, size_t len);
static int u_on_header_value(llhttp_t *p, const char *at, size_t len);
static int u_on_headers_complete(llhttp_t *p);
static int u_on_body(llhttp_t *p, const char *at, size_t len);
static int u_on_message_complete(llhttp_t *p);

static llhttp_settings_t resp_settings;
static pthread_once_t resp_once = PTHREAD_ONCE_INIT;

static void
resp_settings_init(void)
{
    llhttp_settings_init(&resp_settings);
    resp_settings.on_message_begin = u_on_message_begin;
    resp_settings.on_status = u_on_status;
    resp_settings.on_header_field = u_on_header_field;
    resp_settings.on_header_value = u_on_header_value;
    resp_settings.on_headers_complete = u_on_headers_complete;
    resp_settings.on_body = u_on_body;
    resp_settings.on_message_complete = u_on_message_complete;
}

static void
timer_arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    event_add(ev, &tv);
}

static struct timeval
tv_ms(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static bool
method_idempotent(uint8_t m)
{
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_TRACE ||
           m == HTTP_PUT || m == HTTP_DELETE;
}

static void
addr_text(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, n, "?");
    }
}

/* ---- servers and their health --------------------------------------------------------- */

/* The record of server s as the origin's TLS settings (tls, NULL: plain)
 * reach it: the same host:port under other TLS settings is another record. */
static struct proxy_srv *
srv_get(struct proxy_worker *w, const struct conf_server *s, const struct tls_origin *tls)
{
    char key[300];
    struct proxy_srv *srv;
    uint64_t id = tls != NULL ? tls_origin_id(tls) : 0;

    snprintf(key, sizeof(key), "%s:%u", s->host, s->port);
    TAILQ_FOREACH(srv, &w->srvs, link)
        if (srv->tls == (tls != NULL) && srv->tls_id == id && strcmp(srv->key, key) == 0)
            return srv;
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    if (tls != NULL && (srv->tls_sess = tls_sessions_new()) == NULL) {
        free(srv);
        return NULL;
    }
    snprintf(srv->key, sizeof(srv->key), "%s", key);
    snprintf(srv->host, sizeof(srv->host), "%s", s->host);
    srv->port = s->port;
    srv->is_ip = s->is_ip;
    srv->tls = tls != NULL;
    srv->tls_id = id;
    TAILQ_INIT(&srv->idle);
    TAILQ_INSERT_TAIL(&w->srvs, srv, link);
    return srv;
}

static void upconn_free(struct proxy_upconn *u);

void
proxy_worker_srvs_free(struct proxy_worker *w)
{
    struct proxy_srv *srv;
    while ((srv = TAILQ_FIRST(&w->srvs)) != NULL) {
        struct proxy_upconn *u;
        while ((u = TAILQ_FIRST(&srv->idle)) != NULL)
            upconn_free(u);
        TAILQ_REMOVE(&w->srvs, srv, link);
        tls_sessions_unref(srv->tls_sess);
        free(srv);
    }
}

void
proxy_upstream_conf_warn(const struct conf *c)
{
    for (size_t i = 0; i < c->norigins; i++) {
        const struct tls_origin *t = tls_conf_origin(c, &c->origins[i]);
        if (t != NULL && !tls_origin_verifies(t))
            log_warn("origin '%s': tls_verify off: the certificates of its servers are not "
                     "checked (anyone on the path can answer in their name)",
                     c->origins[i].name);
    }
}

void
proxy_worker_rr_rebuild(struct proxy_worker *w)
{
    (void)w; /* round-robin weights live in the per-server records */
}

/* The per-request list of (server, address) pairs already tried. */
#define TRIED_MAX 16
struct tried {
    struct proxy_srv *srv;
    struct sockaddr_storage ss;
};

static struct tried *
tried_list(struct proxy_req *r)
{
    /* kept in the body_copy slot's neighbour: allocated on first retry */
    return (struct tried *)r->_tried;
}

static bool
srv_tried(struct proxy_req *r, struct proxy_srv *srv)
{
    struct tried *t = tried_list(r);
    for (unsigned i = 0; t != NULL && i < r->ntried; i++)
        if (t[i].srv == srv)
            return true;
    return false;
}

static bool
addr_tried(struct proxy_req *r, struct proxy_srv *srv, const struct sockaddr_storage *ss,
           socklen_t len)
{
    struct tried *t = tried_list(r);
    for (unsigned i = 0; t != NULL && i < r->ntried; i++)
        if (t[i].srv == srv && memcmp(&t[i].ss, ss, len) == 0)
            return true;
    return false;
}

static void
mark_tried(struct proxy_req *r, struct proxy_srv *srv, const struct sockaddr_storage *ss)
{
    struct tried *t = tried_list(r);
    if (t == NULL) {
        t = calloc(TRIED_MAX, sizeof(*t));
        if (t == NULL)
            return;
        r->_tried = t;
    }
    if (r->ntried >= TRIED_MAX)
        return;
    t[r->ntried].srv = srv;
    if (ss != NULL)
        t[r->ntried].ss = *ss;
    r->ntried++;
}

/* Smooth weighted round-robin (as nginx) over live servers not yet tried by
 * this request; backups only when no primary is live. When every server is
 * down, the one that went down first is probed. */
static struct proxy_srv *
srv_pick(struct proxy_req *r)
{
    struct proxy_worker *w = r->w;
    const struct conf_origin *o = r->origin;
    const struct tls_origin *tls = tls_conf_origin(r->conf, o);
    uint64_t now = proxy_now_ms();
    struct proxy_srv *best = NULL, *oldest = NULL, *any_untried = NULL;

    for (int pass = 0; pass < 2 && best == NULL; pass++) {
        int total = 0;
        for (size_t i = 0; i < o->nservers; i++) {
            const struct conf_server *s = &o->servers[i];
            struct proxy_srv *srv;
            if (s->backup != (pass == 1))
                continue;
            srv = srv_get(w, s, tls);
            if (srv == NULL)
                continue;
            if (srv_tried(r, srv) && !(srv->naddrs > 1 || !srv->is_ip))
                continue;
            if (!srv_tried(r, srv) && any_untried == NULL)
                any_untried = srv;
            if (srv->down_until_ms > now) {
                if (oldest == NULL || srv->down_until_ms < oldest->down_until_ms)
                    oldest = srv;
                continue;
            }
            if (srv_tried(r, srv))
                continue; /* another address of it may still be tried below */
            srv->cw += (int)s->weight;
            total += (int)s->weight;
            if (best == NULL || srv->cw > best->cw)
                best = srv;
        }
        if (best != NULL)
            best->cw -= total;
    }
    if (best == NULL && r->ntried > 0) {
        /* retry another address of a server already tried (a name with several records) */
        for (unsigned i = 0; i < r->ntried; i++) {
            struct proxy_srv *srv = tried_list(r)[i].srv;
            if (!srv->is_ip)
                return srv;
        }
    }
    if (best == NULL)
        best = oldest != NULL ? oldest : any_untried;
    return best;
}

static void
health_fail(struct proxy_req *r, struct proxy_srv *srv, const struct sockaddr_storage *ss,
            socklen_t len)
{
    const struct conf_origin *o = r->origin;
    uint64_t now = proxy_now_ms();

    srv->fails++;
    if (ss != NULL) {
        for (size_t i = 0; i < srv->naddrs; i++) {
            if (memcmp(&srv->addrs[i].ss, ss, len) == 0) {
                srv->addrs[i].fails++;
                if (srv->addrs[i].fails >= o->max_fails)
                    srv->addrs[i].down_until_ms = now + o->fail_timeout_ms;
                break;
            }
        }
    }
    if (srv->fails >= o->max_fails && srv->down_until_ms <= now) {
        srv->down_until_ms = now + o->fail_timeout_ms;
        log_warn("origin '%s': server %s failed %u times in a row; skipped for %llu ms", o->name,
                 srv->key, srv->fails, (unsigned long long)o->fail_timeout_ms);
    }
}

static void
health_ok(struct proxy_srv *srv, const struct sockaddr_storage *ss, socklen_t len)
{
    srv->fails = 0;
    srv->down_until_ms = 0;
    for (size_t i = 0; i < srv->naddrs; i++) {
        if (memcmp(&srv->addrs[i].ss, ss, len) == 0) {
            srv->addrs[i].fails = 0;
            srv->addrs[i].down_until_ms = 0;
        }
    }
}

/* Picks the address to connect to: round-robin over the records, skipping
 * addresses known down and those this request already tried. */
static int
addr_pick(struct proxy_req *r, struct proxy_srv *srv, const struct proxy_dns_addrs *a,
          struct sockaddr_storage *out, socklen_t *outlen)
{
    uint64_t now = proxy_now_ms();
    int fallback = -1;

    if (a->n == 0)
        return -1;
    /* keep health records for the current records */
    for (size_t i = 0; i < a->n && i < PROXY_SRV_ADDRS; i++) {
        bool known = false;
        for (size_t j = 0; j < srv->naddrs; j++)
            if (memcmp(&srv->addrs[j].ss, &a->addr[i], a->len[i]) == 0)
                known = true;
        if (!known && srv->naddrs < PROXY_SRV_ADDRS) {
            memset(&srv->addrs[srv->naddrs], 0, sizeof(srv->addrs[0]));
            memcpy(&srv->addrs[srv->naddrs].ss, &a->addr[i], a->len[i]);
            srv->addrs[srv->naddrs].len = a->len[i];
            srv->naddrs++;
        }
    }
    for (size_t k = 0; k < a->n; k++) {
        size_t i = (srv->addr_rr + k) % a->n;
        bool down = false;
        if (addr_tried(r, srv, &a->addr[i], a->len[i]))
            continue;
        for (size_t j = 0; j < srv->naddrs; j++)
            if (memcmp(&srv->addrs[j].ss, &a->addr[i], a->len[i]) == 0 &&
                srv->addrs[j].down_until_ms > now)
                down = true;
        if (down) {
            if (fallback < 0)
                fallback = (int)i;
            continue;
        }
        srv->addr_rr = (unsigned)(i + 1);
        memcpy(out, &a->addr[i], a->len[i]);
        *outlen = a->len[i];
        return 0;
    }
    if (fallback < 0)
        return -1;
    memcpy(out, &a->addr[fallback], a->len[fallback]);
    *outlen = a->len[fallback];
    return 0;
}

/* ---- connections ------------------------------------------------------------------ */

static void
upconn_free(struct proxy_upconn *u)
{
    CHECK_MAGIC(u, PROXY_UPCONN_MAGIC);
    if (u->state == UP_IDLE && u->srv != NULL) {
        TAILQ_REMOVE(&u->srv->idle, u, link);
        u->srv->nidle--;
    }
    if (u->bev != NULL && u->ssl != NULL && u->tls_up)
        tls_client_close(u->ssl, u->tls_quiet); /* keeps the session resumable */
    if (u->bev != NULL)
        bufferevent_free(u->bev);
    if (u->timer != NULL)
        event_free(u->timer);
    proxy_head_fini(&u->head);
    u->magic = PROXY_DEAD_MAGIC;
    free(u);
}

struct bufferevent *
proxy_upconn_detach_bev(struct proxy_upconn *u)
{
    struct bufferevent *bev = u->bev;
    u->bev = NULL;
    upconn_free(u);
    return bev;
}

static struct proxy_upconn *
upconn_new(struct proxy_worker *w, struct proxy_srv *srv)
{
    struct proxy_upconn *u = calloc(1, sizeof(*u));

    pthread_once(&resp_once, resp_settings_init);
    if (u == NULL)
        return NULL;
    u->magic = PROXY_UPCONN_MAGIC;
    u->w = w;
    u->srv = srv;
    if (proxy_head_init(&u->head, UP_MAX_HEAD, 256) < 0) {
        free(u);
        return NULL;
    }
    u->timer = evtimer_new(w->base, up_timer_cb, u);
    if (u->timer == NULL) {
        proxy_head_fini(&u->head);
        free(u);
        return NULL;
    }
    llhttp_init(&u->parser, HTTP_RESPONSE, &resp_settings);
    u->parser.data = u;
    return u;
}

static void
pooled_readcb(struct bufferevent *bev, void *arg)
{
    struct proxy_upconn *u = arg;
    (void)bev;
    /* an idle connection has nothing to say: whatever comes, it is unusable */
    upconn_free(u);
}

static void
pooled_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_upconn *u = arg;
    (void)bev;
    (void)what;
    u->tls_quiet = true; /* the origin closed it (or it broke) */
    upconn_free(u);
}

static void
pooled_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    upconn_free(arg);
}

static void
upconn_release(struct proxy_upconn *u, const struct conf_origin *o)
{
    struct proxy_srv *srv = u->srv;

    u->req = NULL;
    if (!u->reusable || o->keepalive == 0 || u->w->draining || srv == NULL) {
        upconn_free(u);
        return;
    }
    while (srv->nidle >= o->keepalive) {
        struct proxy_upconn *old = TAILQ_FIRST(&srv->idle);
        upconn_free(old);
    }
    u->state = UP_IDLE;
    u->served++;
    event_del(u->timer);
    event_assign(u->timer, u->w->base, -1, 0, pooled_timer_cb, u);
    timer_arm(u->timer, o->idle_timeout_ms);
    bufferevent_set_timeouts(u->bev, NULL, NULL);
    bufferevent_setcb(u->bev, pooled_readcb, NULL, pooled_eventcb, u);
    bufferevent_enable(u->bev, EV_READ);
    TAILQ_INSERT_TAIL(&srv->idle, u, link);
    srv->nidle++;
}

static struct proxy_upconn *
pool_take(struct proxy_srv *srv)
{
    struct proxy_upconn *u = TAILQ_LAST(&srv->idle, proxy_srv_idle_head);
    if (u == NULL)
        return NULL;
    TAILQ_REMOVE(&srv->idle, u, link);
    srv->nidle--;
    event_del(u->timer);
    event_assign(u->timer, u->w->base, -1, 0, up_timer_cb, u);
    return u;
}

/* ---- sending ------------------------------------------------------------------------ */

static void
send_head(struct proxy_req *r, struct proxy_upconn *u)
{
    struct proxy_hb *b = &u->w->hb; /* one per worker: this runs to completion */
    struct proxy_hdr h;
    bool had_xff = false, had_via = false;
    const char *cond = NULL;
    size_t cond_len = 0;
    bool revalidating = proxy_cache_cond(r, &cond, &cond_len);
    /* Via names the protocol the request came in with (RFC 9110 7.6.3) */
    const char *via = r->http_major == 2   ? "2 edge\r\n"
                      : r->http_minor == 0 ? "1.0 edge\r\n"
                                           : "1.1 edge\r\n";
    size_t via_len = r->http_major == 2 ? 8 : 10;

    b->out = bufferevent_get_output(u->bev);
    b->len = 0;
    proxy_hb_str(b, r->method_name);
    proxy_hb_lit(b, " ");
    if (r->path != r->target) /* absolute-form: send origin-form */
        proxy_hb_add(b, r->path, (size_t)(r->target + r->target_len - r->path));
    else
        proxy_hb_add(b, r->target, r->target_len);
    proxy_hb_lit(b, " HTTP/1.1\r\nHost: ");
    if (r->authority[0] != '\0') {
        proxy_hb_str(b, r->authority);
    } else {
        proxy_hb_str(b, u->srv->host);
        proxy_hb_lit(b, ":");
        proxy_hb_u64(b, u->srv->port);
    }
    proxy_hb_lit(b, "\r\n");
    for (size_t i = 0; proxy_head_get(r->head, i, &h); i++) {
        if (proxy_hdr_hop_by_hop(&h, r->head) || proxy_hdr_is(&h, "host") ||
            proxy_hdr_is(&h, "expect") || proxy_hdr_is(&h, "content-length") ||
            proxy_hdr_is(&h, "x-request-id") || proxy_hdr_is(&h, "x-forwarded-proto") ||
            proxy_hdr_is(&h, "x-forwarded-host") || proxy_hdr_is(&h, "x-client-cert-subject"))
            continue;
        if (revalidating && (proxy_hdr_is(&h, "if-none-match") ||
                             proxy_hdr_is(&h, "if-modified-since")))
            continue; /* our validators replace the client's */
        if (r->fx != NULL && proxy_fx_hides(r, 0, h.name, h.nlen))
            continue; /* a function replaced or removed it */
        if (proxy_hdr_is(&h, "x-forwarded-for")) {
            proxy_hb_lit(b, "X-Forwarded-For: ");
            proxy_hb_add(b, h.value, h.vlen);
            proxy_hb_lit(b, ", ");
            proxy_hb_str(b, r->peer);
            proxy_hb_lit(b, "\r\n");
            had_xff = true;
            continue;
        }
        if (proxy_hdr_is(&h, "via")) {
            proxy_hb_lit(b, "Via: ");
            proxy_hb_add(b, h.value, h.vlen);
            proxy_hb_lit(b, ", ");
            proxy_hb_add(b, via, via_len);
            had_via = true;
            continue;
        }
        proxy_hb_hdr(b, h.name, h.nlen, h.value, h.vlen);
    }
    if (r->fx != NULL) {
        size_t pos = 0;
        while (proxy_fx_next_added(r, 0, &pos, &h))
            proxy_hb_hdr(b, h.name, h.nlen, h.value, h.vlen);
    }
    if (!had_xff) {
        proxy_hb_lit(b, "X-Forwarded-For: ");
        proxy_hb_str(b, r->peer);
        proxy_hb_lit(b, "\r\n");
    }
    if (!had_via) {
        proxy_hb_lit(b, "Via: ");
        proxy_hb_add(b, via, via_len);
    }
    if (r->https)
        proxy_hb_lit(b, "X-Forwarded-Proto: https\r\n");
    else
        proxy_hb_lit(b, "X-Forwarded-Proto: http\r\n");
    proxy_tls_origin_headers(r, b); /* X-Client-Cert-Subject (the client's own was dropped) */
    if (r->authority[0] != '\0') {
        proxy_hb_lit(b, "X-Forwarded-Host: ");
        proxy_hb_str(b, r->authority);
        proxy_hb_lit(b, "\r\n");
    }
    proxy_hb_lit(b, "X-Request-Id: ");
    proxy_hb_str(b, r->request_id);
    proxy_hb_lit(b, "\r\n");
    if (revalidating)
        proxy_hb_add(b, cond, cond_len);
    if (r->upgrade) {
        struct proxy_hdr up;
        if (proxy_head_find(r->head, "upgrade", &up)) {
            proxy_hb_hdr(b, "Upgrade", 7, up.value, up.vlen);
            proxy_hb_lit(b, "Connection: upgrade\r\n");
        }
    }
    if (r->chunked) {
        proxy_hb_lit(b, "Transfer-Encoding: chunked\r\n");
    } else if (r->content_length >= 0) {
        proxy_hb_lit(b, "Content-Length: ");
        proxy_hb_u64(b, (uint64_t)r->content_length);
        proxy_hb_lit(b, "\r\n");
    }
    proxy_hb_lit(b, "\r\n");
    proxy_hb_flush(b);
}

void
proxy_upstream_push_body(struct proxy_req *r)
{
    struct proxy_upconn *u = r->up;
    struct evbuffer *out;

    if (u == NULL || u->state == UP_CONNECTING || r->body == NULL)
        return;
    out = bufferevent_get_output(u->bev);
    if (evbuffer_get_length(r->body) > 0 && evbuffer_get_length(out) < UP_HIGH_WATER) {
        r->up_sent_any = true;
        evbuffer_add_buffer(out, r->body);
    }
    proxy_bev_flush(u->bev); /* an error surfaces through the event callback */
    proxy_req_body_wanted(r);
}

static void
up_start_exchange(struct proxy_req *r, struct proxy_upconn *u)
{
    const struct conf_origin *o = r->origin;
    struct timeval rt = tv_ms(o->idle_timeout_ms);

    u->req = r;
    r->up = u;
    u->state = UP_WAITING;
    u->got_bytes = false;
    u->head_done = false;
    u->msg_done = false;
    u->reusable = false;
    u->interim = false;
    proxy_head_reset(&u->head);
    llhttp_init(&u->parser, HTTP_RESPONSE, &resp_settings);
    u->parser.data = u;
    memcpy(r->upstream_addr, u->addr_text, sizeof(r->upstream_addr)); /* same size, NUL in */
    r->t_up_start_us = r->t_up_start_us ? r->t_up_start_us : proxy_now_us();
    bufferevent_setcb(u->bev, up_readcb, up_writecb, up_eventcb, u);
    bufferevent_setwatermark(u->bev, EV_READ, 0, UP_FEED_MAX);
    bufferevent_setwatermark(u->bev, EV_WRITE, UP_HIGH_WATER / 4, 0);
    /* sending the body: idle_timeout between writes; the head has its own
     * response_timeout timer, reads get idle_timeout once the head is in */
    bufferevent_set_timeouts(u->bev, NULL, &rt);
    bufferevent_disable(u->bev, EV_WRITE); /* direct writes; see proxy_bev_flush */
    bufferevent_enable(u->bev, EV_READ);
    event_del(u->timer);
    timer_arm(u->timer, o->response_timeout_ms);
    STAT_INC(r->w, upstream_requests);
    send_head(r, u);
    proxy_upstream_push_body(r);
}

static void
up_connect(struct proxy_req *r, const struct sockaddr_storage *ss, socklen_t len)
{
    struct proxy_worker *w = r->w;
    struct proxy_upconn *u = upconn_new(w, r->srv);
    const struct tls_origin *tls = r->srv->tls ? tls_conf_origin(r->conf, r->origin) : NULL;

    if (u == NULL) {
        up_fail(r, PROXY_FAIL_UNAVAILABLE, "out of memory");
        return;
    }
    memcpy(&u->addr, ss, len);
    u->addrlen = len;
    addr_text((const struct sockaddr *)ss, u->addr_text, sizeof(u->addr_text));
    memcpy(r->upstream_addr, u->addr_text, sizeof(r->upstream_addr)); /* same size, NUL in */
    mark_tried(r, r->srv, ss);
    u->req = r;
    r->up = u;
    u->state = UP_CONNECTING;
    STAT_INC(w, upstream_connects);
    if (tls != NULL) {
        struct ssl_st *ssl = tls_client_new(tls, r->srv->host, r->srv->is_ip, r->srv->tls_sess);
        if (ssl == NULL) {
            up_fail(r, PROXY_FAIL_UNAVAILABLE, "out of memory (TLS)");
            return;
        }
        u->bev = bufferevent_openssl_socket_new(w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (u->bev == NULL) {
            /* only out of memory; whether libevent freed the SSL on its
             * failure path is not said: leaking it beats a double free */
            up_fail(r, PROXY_FAIL_UNAVAILABLE, "out of memory");
            return;
        }
        /* an origin closing without close_notify is an EOF, as on plain TCP
         * (a close-delimited body); framed bodies still catch a truncation */
        bufferevent_openssl_set_allow_dirty_shutdown(u->bev, 1);
        u->ssl = ssl;
    } else {
        u->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (u->bev == NULL) {
        up_fail(r, PROXY_FAIL_UNAVAILABLE, "out of memory");
        return;
    }
    bufferevent_set_max_single_read(u->bev, UP_FEED_MAX);
    bufferevent_set_max_single_write(u->bev, 1024 * 1024);
    bufferevent_setcb(u->bev, up_readcb, up_writecb, up_eventcb, u);
    timer_arm(u->timer, r->origin->connect_timeout_ms);
    if (bufferevent_socket_connect(u->bev, (const struct sockaddr *)ss, (int)len) < 0) {
        char why[128];
        snprintf(why, sizeof(why), "connect to %s failed: %s", u->addr_text,
                 strerror(EVUTIL_SOCKET_ERROR()));
        up_fail(r, PROXY_FAIL_CONNECT, why);
        return;
    }
    if (tls != NULL) {
        /* the handshake's flights are small writes: no Nagle delay on them */
        int one = 1;
        setsockopt(bufferevent_getfd(u->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

static void
up_with_addrs(struct proxy_req *r, const struct proxy_dns_addrs *a)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (addr_pick(r, r->srv, a, &ss, &len) < 0) {
        char why[400];
        if (up_no_retry(r))
            return;
        snprintf(why, sizeof(why), "no address left to try for %s", r->srv->key);
        up_fail(r, PROXY_FAIL_CONNECT, why);
        return;
    }
    up_connect(r, &ss, len);
}

static void
up_dns_cb(void *arg, int status, const struct proxy_dns_addrs *addrs)
{
    struct proxy_req *r = arg;
    CHECK_MAGIC(r, PROXY_REQ_MAGIC);
    r->dnsq = NULL;
    if (status != 0) {
        char why[400];
        STAT_INC(r->w, dns_failures);
        snprintf(why, sizeof(why), "cannot resolve '%s': %s", r->srv->host,
                 proxy_dns_strerror(status));
        mark_tried(r, r->srv, NULL);
        up_fail(r, PROXY_FAIL_DNS, why);
        return;
    }
    up_with_addrs(r, addrs);
}

static void
up_try(struct proxy_req *r)
{
    struct proxy_worker *w = r->w;
    struct proxy_srv *srv = srv_pick(r);
    struct proxy_upconn *u;
    struct proxy_dns_addrs a;

    if (srv == NULL) {
        if (!up_no_retry(r))
            up_fail(r, PROXY_FAIL_UNAVAILABLE, "no server available");
        return;
    }
    r->srv = srv;
    /* a warm connection skips DNS and the handshake */
    if (r->ntried == 0 && (u = pool_take(srv)) != NULL) {
        STAT_INC(w, upstream_reused);
        u->srv = srv;
        up_start_exchange(r, u);
        return;
    }
    if (srv->is_ip || proxy_dns_lookup_cached(w->dns, srv->host, srv->port, &a) == 1) {
        if (srv->is_ip) {
            memset(&a, 0, sizeof(a));
            struct sockaddr_in *in = (struct sockaddr_in *)&a.addr[0];
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.addr[0];
            if (inet_pton(AF_INET, srv->host, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons(srv->port);
                a.len[0] = sizeof(*in);
            } else if (inet_pton(AF_INET6, srv->host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(srv->port);
                a.len[0] = sizeof(*in6);
            } else {
                up_fail(r, PROXY_FAIL_DNS, "bad IP literal");
                return;
            }
            a.n = 1;
        }
        up_with_addrs(r, &a);
        return;
    }
    r->dnsq = proxy_dns_resolve(w->dns, srv->host, srv->port, up_dns_cb, r);
    if (r->dnsq == NULL)
        up_fail(r, PROXY_FAIL_DNS, "resolver unavailable");
}

/* Every server of the origin is marked down by passive health checks. */
static bool
origin_down(struct proxy_req *r)
{
    uint64_t now = proxy_now_ms();
    const struct tls_origin *tls = tls_conf_origin(r->conf, r->origin);
    for (size_t i = 0; i < r->origin->nservers; i++) {
        struct proxy_srv *srv = srv_get(r->w, &r->origin->servers[i], tls);
        if (srv == NULL || srv->down_until_ms <= now)
            return false;
    }
    return true;
}

void
proxy_upstream_start(struct proxy_req *r)
{
    r->tries = 0;
    r->fail = PROXY_FAIL_NONE;
    r->up_last_why[0] = '\0';
    /* stale-if-error: no waiting on timeouts for an origin known to be down */
    if (r->cache_obj != NULL && r->cache_d.stale_if_error && origin_down(r) &&
        proxy_cache_upstream_failed(r)) {
        proxy_req_check_done(r);
        return;
    }
    up_try(r);
}

void
proxy_upstream_abort(struct proxy_req *r)
{
    if (r->dnsq != NULL) {
        proxy_dns_cancel(r->dnsq);
        r->dnsq = NULL;
    }
    if (r->up != NULL) {
        struct proxy_upconn *u = r->up;
        r->up = NULL;
        u->req = NULL;
        upconn_free(u);
    }
    free(r->_tried);
    r->_tried = NULL;
    r->ntried = 0;
}

static void up_feed(struct proxy_upconn *u);

void
proxy_upstream_fx_resumed(struct proxy_req *r)
{
    struct proxy_upconn *u = r->up;

    if (u == NULL || !u->fx_wait)
        return;
    u->fx_wait = false;
    llhttp_resume(&u->parser);
    bufferevent_enable(u->bev, EV_READ);
    up_feed(u);
}

void
proxy_upstream_resume(struct proxy_req *r)
{
    struct proxy_upconn *u = r->up;
    if (u == NULL || u->bev == NULL || u->state != UP_READING)
        return;
    bufferevent_enable(u->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_input(u->bev)) > 0)
        up_readcb(u->bev, u);
}

/* ---- failures and retries -------------------------------------------------------------- */

static const char *
fail_name(enum proxy_err_kind k)
{
    switch (k) {
    case PROXY_FAIL_DNS: return "dns";
    case PROXY_FAIL_CONNECT: return "connect";
    case PROXY_FAIL_RESET: return "reset";
    case PROXY_FAIL_TIMEOUT: return "timeout";
    case PROXY_FAIL_PROTOCOL: return "protocol";
    case PROXY_FAIL_UNAVAILABLE: return "unavailable";
    case PROXY_FAIL_TLS: return "tls";
    default: return "none";
    }
}

static void
up_fail(struct proxy_req *r, enum proxy_err_kind kind, const char *detail)
{
    struct proxy_worker *w = r->w;
    struct proxy_upconn *u = r->up;
    bool reused = u != NULL && u->served > 0;
    bool got_bytes = u != NULL && u->got_bytes;
    bool connect_phase = u != NULL && u->state == UP_CONNECTING;
    bool has_body = r->content_length > 0 || r->chunked;

    r->fail = kind;
    if (kind == PROXY_FAIL_CONNECT || kind == PROXY_FAIL_DNS || kind == PROXY_FAIL_TLS ||
        (kind == PROXY_FAIL_TIMEOUT && connect_phase))
        STAT_INC(w, upstream_connect_failures);
    if (kind == PROXY_FAIL_TLS)
        STAT_INC(w, upstream_tls_failures);
    if (kind == PROXY_FAIL_TIMEOUT)
        STAT_INC(w, upstream_timeouts);
    if (kind == PROXY_FAIL_RESET)
        STAT_INC(w, upstream_resets);
    if (u != NULL) {
        if (!(kind == PROXY_FAIL_RESET && reused && !got_bytes))
            health_fail(r, u->srv, &u->addr, u->addrlen); /* a stale pooled conn is no signal */
        r->up = NULL;
        u->req = NULL;
        u->tls_quiet = true; /* no close_notify on a failed connection */
        upconn_free(u);
    } else if (kind == PROXY_FAIL_DNS && r->srv != NULL) {
        health_fail(r, r->srv, NULL, 0);
    }
    /* Retry only what cannot have reached the origin's application: a
     * connect that failed, or a reused connection that died before any
     * response byte (for idempotent requests without a body). */
    bool safe =
        !r->resp_started &&
        (kind == PROXY_FAIL_CONNECT || kind == PROXY_FAIL_DNS || kind == PROXY_FAIL_TLS ||
         (kind == PROXY_FAIL_TIMEOUT && connect_phase) ||
         (kind == PROXY_FAIL_RESET && !got_bytes && method_idempotent(r->method) && !has_body));
    bool free_retry = kind == PROXY_FAIL_RESET && reused && !got_bytes && safe;
    if (safe && (free_retry || r->tries < r->origin->retries)) {
        if (!free_retry)
            r->tries++;
        STAT_INC(w, upstream_retries);
        log_debug("retrying %s %s on origin '%s' after %s: %s", r->method_name, r->request_id,
                  r->origin->name, fail_name(kind), detail);
        /* answered if no server or address is left to try (up_no_retry) */
        snprintf(r->up_last_why, sizeof(r->up_last_why), "%s", detail);
        up_try(r);
        return;
    }
    up_give_up(r, kind, detail);
}

/* The retry found nothing left to try: the failure it followed is the answer
 * (not "no server available", which would hide why). False when this
 * request has not failed before. */
static bool
up_no_retry(struct proxy_req *r)
{
    if (r->fail == PROXY_FAIL_NONE || r->up_last_why[0] == '\0')
        return false;
    up_give_up(r, r->fail, r->up_last_why);
    return true;
}

/* No (more) retry: a stale copy, a cut connection or an error answer. */
static void
up_give_up(struct proxy_req *r, enum proxy_err_kind kind, const char *detail)
{
    int status;

    free(r->_tried);
    r->_tried = NULL;
    r->ntried = 0;
    if (proxy_cache_upstream_failed(r)) {
        if (r->resp_done)
            proxy_resp_end(r); /* a stale copy answered (stale-if-error) */
        return;                /* else a function's RESPONSE phase ends it */
    }
    if (r->resp_started) {
        log_info("origin '%s' failed mid-response (%s: %s); cutting the client connection",
                 r->origin->name, fail_name(kind), detail);
        proxy_resp_error(r, 502, "%s", detail);
        return;
    }
    status = (kind == PROXY_FAIL_TIMEOUT) ? 504 : (kind == PROXY_FAIL_UNAVAILABLE ? 503 : 502);
    proxy_resp_error(r, status, "origin '%s': %s error: %s", r->origin->name, fail_name(kind),
                     detail);
}

/* ---- response parsing ------------------------------------------------------------------ */

static int
u_on_message_begin(llhttp_t *p)
{
    struct proxy_upconn *u = p->data;
    proxy_head_reset(&u->head);
    return 0;
}

static int
u_on_status(llhttp_t *p, const char *at, size_t len)
{
    struct proxy_upconn *u = p->data;
    return proxy_head_reason(&u->head, at, len) < 0 ? HPE_USER : 0;
}

static int
u_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct proxy_upconn *u = p->data;
    return proxy_head_field(&u->head, at, len) < 0 ? HPE_USER : 0;
}

static int
u_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct proxy_upconn *u = p->data;
    return proxy_head_value(&u->head, at, len) < 0 ? HPE_USER : 0;
}

/* RFC 9112 6.3: the answer to a HEAD, and any 1xx, 204 or 304, ends with its
 * header section whatever Content-Length it carries (a 304 often carries
 * the length of the representation it stands for); llhttp is told to skip
 * the body, else it would wait for bytes that never come. */
static bool
resp_has_no_body(const struct proxy_req *r, int status)
{
    return r->method == HTTP_HEAD || (status >= 100 && status < 200) || status == 204 ||
           status == 304;
}

static int
u_on_headers_complete(llhttp_t *p)
{
    struct proxy_upconn *u = p->data;
    struct proxy_req *r = u->req;
    int status = llhttp_get_status_code(p);
    int nobody = resp_has_no_body(r, status) ? 1 : 0;

    if (status >= 100 && status < 200 && status != 101) {
        u->interim = true; /* 100 Continue (edge answers Expect itself), 103 Early Hints */
        proxy_resp_interim(r, u);
        return 1;
    }
    event_del(u->timer);
    {
        struct timeval idle = tv_ms(r->origin->idle_timeout_ms);
        bufferevent_set_timeouts(u->bev, &idle, &idle);
    }
    u->head_done = true;
    u->state = UP_READING;
    r->t_up_head_us = proxy_now_us();
    if (proxy_cache_response_head(r, u))
        return nobody; /* the client is answered from cache at the end */
    if (proxy_resp_head_fx(r, u)) {
        /* a function waits on KV before the head goes out: hold the body */
        u->fx_wait = true;
        if (nobody)
            p->flags |= F_SKIPBODY; /* what returning 1 would have said */
        return HPE_PAUSED;
    }
    if (status == 101)
        return 2;
    return nobody;
}

static int
u_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct proxy_upconn *u = p->data;
    struct proxy_req *r = u->req;
    if (r->cache_serve_after)
        return 0; /* an answer the client does not get (see proxy_cache_response_head) */
    proxy_cache_body(r, at, len);
    if (r->fx_replaced)
        return 0; /* a function answered instead */
    if (r->fill_self)
        return 0; /* the client reads the cache file (proxy_cache_fill_decouple) */
    return proxy_resp_body(r, at, len);
}

static int
u_on_message_complete(llhttp_t *p)
{
    struct proxy_upconn *u = p->data;
    if (u->interim) {
        u->interim = false;
        return 0;
    }
    if (llhttp_get_status_code(p) == 101)
        return 0; /* llhttp then stops with HPE_PAUSED_UPGRADE: the tunnel starts */
    u->msg_done = true;
    return HPE_PAUSED;
}

static void
up_done(struct proxy_upconn *u)
{
    struct proxy_req *r = u->req;
    const struct conf_origin *o = r->origin;

    u->reusable = llhttp_should_keep_alive(&u->parser) && r->body_done &&
                  evbuffer_get_length(r->body) == 0 &&
                  evbuffer_get_length(bufferevent_get_input(u->bev)) == 0 && !r->upgrade;
    health_ok(u->srv, &u->addr, u->addrlen);
    r->up = NULL;
    free(r->_tried);
    r->_tried = NULL;
    r->ntried = 0;
    upconn_release(u, o);
    if (proxy_cache_response_done(r) && !r->resp_done)
        return; /* answered from cache once a function's RESPONSE phase is done */
    if (!r->resp_started) {
        proxy_resp_error(r, 502, "origin '%s' answered nothing usable", o->name);
        return;
    }
    proxy_resp_end(r);
}

static void
up_feed(struct proxy_upconn *u)
{
    struct evbuffer *in = bufferevent_get_input(u->bev);
    struct proxy_req *r = u->req;

    while (u->req != NULL && !u->msg_done) {
        struct evbuffer_iovec v;
        size_t len, used;
        enum llhttp_errno err;

        if (evbuffer_get_length(in) == 0)
            break;
        if (u->fx_wait) {
            bufferevent_disable(u->bev, EV_READ); /* proxy_upstream_fx_resumed goes on */
            return;
        }
        if (u->head_done && proxy_client_congested(r) && !proxy_cache_fill_decouple(r)) {
            bufferevent_disable(u->bev, EV_READ); /* the client write callback resumes us */
            return;
        }
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        len = v.iov_len > UP_FEED_MAX ? UP_FEED_MAX : v.iov_len;
        u->got_bytes = true;
        err = llhttp_execute(&u->parser, v.iov_base, len);
        used = len;
        if (err != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&u->parser);
            if (pos != NULL && pos >= (const char *)v.iov_base &&
                pos <= (const char *)v.iov_base + len)
                used = (size_t)(pos - (const char *)v.iov_base);
        }
        evbuffer_drain(in, used);
        if (err == HPE_PAUSED_UPGRADE) {
            proxy_req_tunnel(r, u);
            return;
        }
        if (err == HPE_PAUSED) {
            if (u->fx_wait) {
                bufferevent_disable(u->bev, EV_READ);
                return;
            }
            break;
        }
        if (err != HPE_OK) {
            char why[200];
            snprintf(why, sizeof(why), "bad response from %s: %s", u->addr_text,
                     llhttp_get_error_reason(&u->parser) ? llhttp_get_error_reason(&u->parser)
                                                         : llhttp_errno_name(err));
            up_fail(r, PROXY_FAIL_PROTOCOL, why);
            return;
        }
    }
    if (u->msg_done)
        up_done(u);
}

/* ---- libevent callbacks -------------------------------------------------------------------- */

static void
up_readcb(struct bufferevent *bev, void *arg)
{
    struct proxy_upconn *u = arg;
    (void)bev;
    CHECK_MAGIC(u, PROXY_UPCONN_MAGIC);
    if (u->req == NULL)
        return;
    if (u->state == UP_WAITING)
        u->state = UP_READING;
    up_feed(u);
}

static void
up_writecb(struct bufferevent *bev, void *arg)
{
    struct proxy_upconn *u = arg;
    CHECK_MAGIC(u, PROXY_UPCONN_MAGIC);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    if (u->req != NULL && u->req->body != NULL)
        proxy_upstream_push_body(u->req);
}

static void
up_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_upconn *u = arg;
    struct proxy_req *r = u->req;
    char why[200];

    CHECK_MAGIC(u, PROXY_UPCONN_MAGIC);
    if (r == NULL) {
        upconn_free(u);
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        event_del(u->timer);
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (u->ssl != NULL) {
            struct tls_client_info ti;
            tls_client_info_get(u->ssl, &ti);
            u->tls_up = true;
            STAT_INC(u->w, upstream_tls_handshakes);
            if (ti.resumed)
                STAT_INC(u->w, upstream_tls_resumed);
            log_debug("origin '%s': %s %s%s", r->origin->name, u->addr_text, ti.version,
                      ti.resumed ? " resumed" : "");
        }
        up_start_exchange(r, u);
        return;
    }
    if (u->state == UP_CONNECTING) {
        int err = EVUTIL_SOCKET_ERROR();
        if (u->ssl != NULL && tls_client_started(u->ssl)) {
            /* TCP was up: the handshake or the verification failed */
            unsigned long errs[8];
            size_t n = 0, len;
            while (n < 8 && (errs[n] = bufferevent_get_openssl_error(bev)) != 0)
                n++;
            len = tls_client_why(u->ssl, errs, n, why, sizeof(why));
            snprintf(why + len, sizeof(why) - len, " from %s", u->addr_text);
            up_fail(r, PROXY_FAIL_TLS, why);
            return;
        }
        snprintf(why, sizeof(why), "connect to %s failed: %s", u->addr_text,
                 err ? evutil_socket_error_to_string(err) : "connection refused");
        up_fail(r, PROXY_FAIL_CONNECT, why);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        u->tls_quiet = true;
    if (what & BEV_EVENT_TIMEOUT) {
        snprintf(why, sizeof(why), "%s idle for longer than %llu ms", u->addr_text,
                 (unsigned long long)r->origin->idle_timeout_ms);
        up_fail(r, PROXY_FAIL_TIMEOUT, why);
        return;
    }
    if ((what & BEV_EVENT_EOF) && u->head_done && llhttp_message_needs_eof(&u->parser)) {
        /* a response delimited by the connection's end */
        up_feed(u);
        if (u->req != NULL && !u->msg_done) {
            if (llhttp_finish(&u->parser) == HPE_OK || u->msg_done) {
                u->msg_done = true;
                u->reusable = false;
                up_done(u);
                return;
            }
        } else {
            return;
        }
    }
    if (what & BEV_EVENT_EOF)
        up_feed(u); /* bytes that came with the FIN */
    if (u->req == NULL || u->msg_done)
        return;
    snprintf(why, sizeof(why), "%s closed the connection %s", u->addr_text,
             u->head_done ? "in the middle of the body" : "before answering");
    up_fail(r, PROXY_FAIL_RESET, why);
}

static void
up_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_upconn *u = arg;
    struct proxy_req *r = u->req;
    char why[200];

    (void)fd;
    (void)what;
    CHECK_MAGIC(u, PROXY_UPCONN_MAGIC);
    if (r == NULL) {
        upconn_free(u);
        return;
    }
    if (u->state == UP_CONNECTING && u->ssl != NULL && tls_client_started(u->ssl))
        snprintf(why, sizeof(why), "TLS handshake with %s timed out after %llu ms", u->addr_text,
                 (unsigned long long)r->origin->connect_timeout_ms);
    else if (u->state == UP_CONNECTING)
        snprintf(why, sizeof(why), "connect to %s timed out after %llu ms", u->addr_text,
                 (unsigned long long)r->origin->connect_timeout_ms);
    else
        snprintf(why, sizeof(why), "%s did not answer within %llu ms", u->addr_text,
                 (unsigned long long)r->origin->response_timeout_ms);
    up_fail(r, PROXY_FAIL_TIMEOUT, why);
}
