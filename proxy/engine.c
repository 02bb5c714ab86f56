/*
 * The engine process: N worker threads (one event_base each, SO_REUSEPORT
 * listeners handed over by the supervisor), and a main thread that owns the
 * signals, the admin listener, reloads and the drain at stop.
 *
 * The event bases are not thread-safe (no evthread locking: measurably
 * cheaper); threads talk through eventfds: the main thread wakes a worker
 * (conf swap, drain, forced stop) and workers wake the main thread when
 * they finish.
 *
 * Conf swaps: the main thread parses and validates; on success it posts a
 * reference to every worker (pending_conf + its eventfd) and each worker
 * swaps its own pointer on its own thread. A request holds its own
 * reference, so in-flight requests finish on the snapshot they started with.
 */
#include "proxy/internal.h"
#include "proxy/dns.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

uint64_t
proxy_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
proxy_reqid_make(struct proxy_worker *w, char *out, size_t n)
{
    /* xorshift64*: unique enough per worker, seeded from getrandom */
    uint64_t a, b;
    uint64_t x = w->reqid_state;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    a = x * 0x2545F4914F6CDD1Dull;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    b = x * 0x2545F4914F6CDD1Dull;
    w->reqid_state = x;
    if (n < 33) {
        snprintf(out, n, "%016llx", (unsigned long long)a);
        return;
    }
    for (int i = 15; i >= 0; i--, a >>= 4)
        out[i] = "0123456789abcdef"[a & 15];
    for (int i = 31; i >= 16; i--, b >>= 4)
        out[i] = "0123456789abcdef"[b & 15];
    out[32] = '\0';
}

static void
wake(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof(one));
    (void)n; /* EAGAIN means a wake-up is already pending: fine */
}

static void
drain_wake(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct proxy_worker *w = arg;
    unsigned flags = 0;

    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i] == l)
            flags = w->listen_flags[i];
    proxy_conn_accept(w, fd, sa, salen, flags);
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
    static struct proxy_log_rl rl;
    struct proxy_worker *w = arg;
    int err = EVUTIL_SOCKET_ERROR();
    uint64_t dropped;

    (void)l;
    if (proxy_log_rl_pass(&rl, 60000, &dropped))
        log_err("worker %u: accept failed: %s (%llu more suppressed)", w->id,
                evutil_socket_error_to_string(err), (unsigned long long)dropped);
}

static void
worker_stop_listening(struct proxy_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i] != NULL) {
            evconnlistener_free(w->listeners[i]);
            w->listeners[i] = NULL;
        }
    }
}

void
proxy_worker_conn_gone(struct proxy_worker *w)
{
    if (w->draining && w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

static void
worker_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    struct proxy_engine *e = w->e;
    struct conf *next;

    (void)what;
    drain_wake(fd);
    if (atomic_load(&w->force_stop)) {
        event_base_loopbreak(w->base);
        return;
    }
    proxy_collapse_run_queue(w);
    proxy_cache_fill_run(w);
    pthread_mutex_lock(&e->lock);
    next = e->pending_conf[w->id];
    e->pending_conf[w->id] = NULL;
    pthread_mutex_unlock(&e->lock);
    if (next != NULL) {
        conf_unref(w->conf);
        w->conf = next;
        proxy_fn_worker_conf(w);
        proxy_h2_worker_reloaded(w);
    }
    if (atomic_load(&e->draining) && !w->draining) {
        struct proxy_conn *c, *tmp;
        w->draining = true;
        worker_stop_listening(w);
        for (c = TAILQ_FIRST(&w->conns); c != NULL; c = tmp) {
            tmp = TAILQ_NEXT(c, link);
            proxy_conn_drain(c);
        }
        proxy_h2_worker_drain(w); /* h2: GOAWAY, in-flight streams finish */
        proxy_worker_conn_gone(w);
    }
}

static void *
worker_main(void *arg)
{
    struct proxy_worker *w = arg;
    struct proxy_engine *e = w->e;

    proxy_fn_worker_slot(w->id);
    proxy_fn_worker_watchdog();
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    atomic_fetch_add(&e->workers_done, 1);
    wake(e->notify_fd);
    return NULL;
}

static int
worker_init(struct proxy_engine *e, struct proxy_worker *w, unsigned id)
{
    char err[256];

    w->id = id;
    w->e = e;
    TAILQ_INIT(&w->conns);
    TAILQ_INIT(&w->srvs);
    TAILQ_INIT(&w->collapse_waiters);
    TAILQ_INIT(&w->fill_leaders);
    TAILQ_INIT(&w->fill_readers);
    pthread_mutex_init(&w->cq_lock, NULL);
    w->access_fd = e->access_fd;
    if (getrandom(&w->reqid_state, sizeof(w->reqid_state), 0) != sizeof(w->reqid_state))
        w->reqid_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20) ^ id;
    w->reqid_state |= 1;
    w->base = event_base_new();
    if (w->base == NULL || proxy_worker_pools_init(w) < 0)
        return -1;
    w->conf = conf_ref(e->conf);
    w->listen_conf = conf_ref(e->conf);
    w->dns = proxy_dns_new(w->base, &w->conf->resolver, err, sizeof(err));
    if (w->dns == NULL) {
        log_err("worker %u: resolver: %s", id, err);
        return -1;
    }
    proxy_fn_worker_conf(w);
    w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->notify_fd < 0)
        return -1;
    w->notify = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, worker_notify_cb, w);
    if (w->notify == NULL || event_add(w->notify, NULL) < 0)
        return -1;
    w->nlisteners = e->fds->nlistens;
    w->listeners = calloc(w->nlisteners ? w->nlisteners : 1, sizeof(*w->listeners));
    w->listen_flags = calloc(w->nlisteners ? w->nlisteners : 1, sizeof(*w->listen_flags));
    if (w->notify == NULL || w->listeners == NULL || w->listen_flags == NULL)
        return -1;
    for (size_t i = 0; i < w->nlisteners; i++) {
        int fd = e->fds->fds[id * e->fds->nlistens + i];
        /* what the listener is stays as at start, as its address does */
        if (i < w->conf->nlistens)
            w->listen_flags[i] = (w->conf->listens[i].tls ? PROXY_LISTEN_TLS : 0) |
                                 (w->conf->listens[i].h2 ? PROXY_LISTEN_H2 : 0);
        w->listeners[i] = evconnlistener_new(w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE, -1, fd);
        if (w->listeners[i] == NULL)
            return -1;
        e->fds->fds[id * e->fds->nlistens + i] = -1; /* the listener owns it now */
        evconnlistener_set_error_cb(w->listeners[i], accept_error_cb);
    }
    return 0;
}

/* First pass at exit: every worker's connections (their requests may post
 * to other workers' queues, which must still exist). */
static void
worker_free_conns(struct proxy_worker *w)
{
    struct proxy_conn *c;

    if (w->base == NULL)
        return;
    proxy_h2_worker_free(w); /* h2 sessions first: they free their streams' conns */
    while ((c = TAILQ_FIRST(&w->conns)) != NULL)
        proxy_conn_free(c);
}

static void
worker_fini(struct proxy_worker *w)
{
    worker_free_conns(w);
    proxy_worker_pools_fini(w);
    free(w->hv);
    free(w->fields.v);
    proxy_fn_worker_fini(w);
    proxy_collapse_worker_fini(w);
    proxy_worker_srvs_free(w);
    if (w->listeners != NULL) {
        worker_stop_listening(w);
        free(w->listeners);
    }
    free(w->listen_flags);
    if (w->dns != NULL)
        proxy_dns_free(w->dns);
    if (w->notify != NULL)
        event_free(w->notify);
    if (w->notify_fd > 0)
        close(w->notify_fd);
    if (w->conf != NULL)
        conf_unref(w->conf);
    if (w->listen_conf != NULL)
        conf_unref(w->listen_conf);
    if (w->base != NULL)
        event_base_free(w->base);
}

static bool
listens_equal(const struct conf *a, const struct conf *b)
{
    if (a->nlistens != b->nlistens || a->workers != b->workers)
        return false;
    for (size_t i = 0; i < a->nlistens; i++)
        if (strcmp(a->listens[i].addr.text, b->listens[i].addr.text) != 0 ||
            a->listens[i].tls != b->listens[i].tls || a->listens[i].h2 != b->listens[i].h2)
            return false;
    if ((a->admin == NULL) != (b->admin == NULL))
        return false;
    if (a->admin != NULL && strcmp(a->admin->text, b->admin->text) != 0)
        return false;
    return true;
}

int
proxy_engine_reload(struct proxy_engine *e, char *err, size_t errlen)
{
    struct conf_err cerr;
    struct conf *next = conf_load(e->conf_path, &cerr);

    if (next == NULL) {
        e->reload_failures++;
        snprintf(e->last_reload_error, sizeof(e->last_reload_error), "%s", cerr.msg);
        snprintf(err, errlen, "%s", cerr.msg);
        log_err("reload failed, keeping the running configuration: %s", cerr.msg);
        return -1;
    }
    if (!listens_equal(e->conf, next))
        log_warn("reload: changes to 'listen', 'admin' or 'workers' take effect at restart");
    proxy_upstream_conf_warn(next);
    {
        const struct cache_main *a = cache_conf_main(e->conf), *b = cache_conf_main(next);
        const char *da = a ? a->dir : NULL, *db = b ? b->dir : NULL;
        if ((da == NULL) != (db == NULL) || (da != NULL && strcmp(da, db) != 0) ||
            (a != NULL && b != NULL &&
             (a->max_size != b->max_size || a->max_object != b->max_object || a->mem != b->mem ||
              a->mem_object != b->mem_object)))
            log_warn("reload: changes to 'cache_dir' take effect at restart");
    }
    pthread_mutex_lock(&e->lock);
    for (unsigned i = 0; i < e->nworkers; i++) {
        if (e->pending_conf[i] != NULL)
            conf_unref(e->pending_conf[i]);
        e->pending_conf[i] = conf_ref(next);
    }
    pthread_mutex_unlock(&e->lock);
    for (unsigned i = 0; i < e->nworkers; i++)
        wake(e->workers[i].notify_fd);
    conf_unref(e->conf);
    e->conf = next;
    e->reloads++;
    e->last_reload_error[0] = '\0';
    log_info("reloaded %s", e->conf_path);
    proxy_fn_quarantine_clear();
    /* tell the supervisor, so that a restarted engine starts from this one */
    kill(getppid(), SIGUSR2);
    if (errlen > 0)
        err[0] = '\0';
    return 0;
}

static void
drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_engine *e = arg;
    (void)fd;
    (void)what;
    log_warn("shutdown_timeout reached: closing the remaining connections");
    for (unsigned i = 0; i < e->nworkers; i++) {
        atomic_store(&e->workers[i].force_stop, true);
        wake(e->workers[i].notify_fd);
    }
}

static struct event *drain_timer;

static void
engine_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct proxy_engine *e = arg;
    char err[CONF_ERR_MAX];

    (void)what;
    if (sig == SIGHUP) {
        proxy_engine_reload(e, err, sizeof(err));
        return;
    }
    if (atomic_load(&e->draining))
        return;
    log_info("stopping: draining in-flight requests (up to %llu ms)",
             (unsigned long long)e->conf->limits.shutdown_timeout_ms);
    atomic_store(&e->draining, true); /* /healthz now answers 503 draining */
    for (unsigned i = 0; i < e->nworkers; i++)
        wake(e->workers[i].notify_fd);
    drain_timer = evtimer_new(e->base, drain_deadline_cb, e);
    if (drain_timer != NULL) {
        uint64_t ms = e->conf->limits.shutdown_timeout_ms;
        struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
                             .tv_usec = (suseconds_t)(ms % 1000) * 1000};
        event_add(drain_timer, &tv);
    }
}

static void
engine_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_engine *e = arg;
    (void)what;
    drain_wake(fd);
    if (atomic_load(&e->workers_done) == e->nworkers)
        event_base_loopexit(e->base, NULL);
}

int
proxy_engine_run(const char *conf_path, struct conf *initial, struct proxy_listen_fds *fds)
{
    struct proxy_engine *e = calloc(1, sizeof(*e));
    struct event *sigs[4] = {0};
    static const int signums[4] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT};
    pthread_t *threads = NULL;
    unsigned started = 0;
    int rc = 1;

    if (e == NULL)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    proxy_fn_install_fault_handler();
    pthread_mutex_init(&e->lock, NULL);
    e->conf_path = conf_path;
    e->conf = conf_ref(initial);
    e->fds = fds;
    e->nworkers = fds->nworkers;
    e->start_ms = proxy_now_ms();
    e->access_fd = -1;
    if (e->nworkers > 64)
        e->nworkers = 64;
    if (e->conf->access_log == CONF_LOG_STDOUT)
        e->access_fd = 1;
    else if (e->conf->access_log == CONF_LOG_FILE) {
        e->access_fd = open(e->conf->access_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (e->access_fd < 0)
            log_err("access_log %s: %s (logging disabled)", e->conf->access_log_path,
                    strerror(errno));
    }
    {
        const struct cache_main *cm = cache_conf_main(e->conf);
        if (cm != NULL && cm->dir != NULL) {
            char err[256];
            e->cache = cache_new(cm, err, sizeof(err));
            if (e->cache == NULL)
                log_err("cache_dir %s: %s; serving uncached", cm->dir, err);
            else
                e->collapse = proxy_collapse_new();
        }
    }
    e->base = event_base_new();
    e->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->notify = (e->base && e->notify_fd >= 0)
                    ? event_new(e->base, e->notify_fd, EV_READ | EV_PERSIST, engine_notify_cb, e)
                    : NULL;
    if (e->notify != NULL)
        event_add(e->notify, NULL);
    e->workers = calloc(e->nworkers, sizeof(*e->workers));
    threads = calloc(e->nworkers, sizeof(*threads));
    if (e->base == NULL || e->notify == NULL || e->workers == NULL || threads == NULL)
        goto out;
    for (int i = 0; i < 4; i++) {
        sigs[i] = evsignal_new(e->base, signums[i], engine_signal_cb, e);
        if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) < 0)
            goto out;
    }
    {
        /* the supervisor forked us with its signals blocked: handlers are in
         * place now (the worker threads created below inherit this mask) */
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
    }
    for (unsigned i = 0; i < e->nworkers; i++)
        if (worker_init(e, &e->workers[i], i) < 0)
            goto out;
    if (proxy_admin_start(e) < 0)
        goto out;
    for (; started < e->nworkers; started++)
        if (pthread_create(&threads[started], NULL, worker_main, &e->workers[started]) != 0)
            goto out;
    log_info("engine %d serving with %u workers", (int)getpid(), e->nworkers);
    event_base_dispatch(e->base);
    rc = 0;
out:
    {
        /* From here the signal events go away and libevent restores the
         * default actions: a late SIGTERM (the supervisor forwards the one
         * the group got) must not kill a clean exit. Only this thread is
         * left once the workers are joined. */
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGQUIT);
        sigaddset(&stop, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &stop, NULL);
    }
    if (rc != 0) {
        log_err("engine failed to start");
        atomic_store(&e->draining, true);
        for (unsigned i = 0; i < started; i++) {
            atomic_store(&e->workers[i].force_stop, true);
            wake(e->workers[i].notify_fd);
        }
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    proxy_admin_stop(e);
    for (unsigned i = 0; e->workers != NULL && i < e->nworkers; i++)
        worker_free_conns(&e->workers[i]);
    for (unsigned i = 0; e->workers != NULL && i < e->nworkers; i++)
        worker_fini(&e->workers[i]);
    proxy_collapse_free(e->collapse);
    for (unsigned i = 0; i < 64; i++)
        if (e->pending_conf[i] != NULL)
            conf_unref(e->pending_conf[i]);
    for (int i = 0; i < 4; i++)
        if (sigs[i] != NULL)
            event_free(sigs[i]);
    if (drain_timer != NULL)
        event_free(drain_timer);
    if (e->notify != NULL)
        event_free(e->notify);
    if (e->notify_fd >= 0)
        close(e->notify_fd);
    if (e->base != NULL)
        event_base_free(e->base);
    if (e->access_fd > 2)
        close(e->access_fd);
    if (e->cache != NULL)
        cache_free(e->cache);
    conf_unref(e->conf);
    free(e->workers);
    free(threads);
    pthread_mutex_destroy(&e->lock);
    free(e);
    libevent_global_shutdown();
    return rc;
}
