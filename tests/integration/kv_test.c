/*
 * Integration test of the KV client (compute/kv.c) against a real
 * redis-server: ops and replies, the key namespace, per-op timeouts by our
 * own timer (redis SIGSTOPped), Redis down → a status within the timeout,
 * restart → works again, cancel, the in-flight limit, and exact counts for
 * 2 x 100 concurrent INCRs / incr_window from two event loops on two threads.
 */
#include "compute/compute.h"
#include "tests/integration/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PFX EFN_STR("efn:test:default:")

static struct h_redis redis;

struct waiter {
    int calls;
    efn_kv_reply rep;
    char value[256];
    double at_ms;
    struct event_base *base;
    int want; /* break the loop once calls reaches it */
};

static void
on_rep(void *ud, const efn_kv_reply *rep)
{
    struct waiter *w = ud;

    w->calls++;
    w->rep = *rep;
    w->at_ms = h_now_ms();
    if (rep->value.len > 0 && rep->value.len < sizeof(w->value)) {
        memcpy(w->value, rep->value.ptr, rep->value.len);
        w->value[rep->value.len] = '\0';
        w->rep.value.ptr = w->value;
    }
    if (w->calls >= w->want)
        event_base_loopbreak(w->base);
}

/* Runs the loop until the waiter has `want` calls or ms pass. */
static void
run_for(struct event_base *base, struct waiter *w, int want, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    w->want = want;
    w->base = base;
    if (w->calls >= want)
        return;
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static struct kv_client *
client(struct event_base *base, uint64_t timeout_ms)
{
    struct kv_conf kc;
    struct kv_client *c;
    double t0 = h_now_ms();

    kv_conf_defaults(&kc);
    kc.port = (uint16_t)redis.port;
    kc.timeout_ms = timeout_ms;
    c = kv_client_new(base, &kc);
    assert_non_null(c);
    while (!kv_client_connected(c) && h_now_ms() - t0 < 3000)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    return c;
}

static int
redis_respawn(struct h_redis *r)
{
    char port[16], name[32];
    const char *argv[] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", r->dir, "--daemonize", "no",
                          "--logfile", "", NULL};

    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(name, sizeof(name), "redis-%d-again", r->port);
    if (h_spawn(&r->proc, name, argv) < 0)
        return -1;
    return h_wait_proc_port(&r->proc, "127.0.0.1", r->port, 5000);
}

static void
test_ops_and_namespace(void **state)
{
    struct event_base *base = event_base_new();
    struct kv_client *c = client(base, 500);
    struct kv_handle *h = kv_handle_new(c);
    struct waiter w = {0};
    char out[128];

    (void)state;
    assert_true(kv_client_connected(c));
    assert_int_equal(kv_op_set(h, PFX, EFN_STR("k"), EFN_STR("v1"), 0, on_rep, &w), EFN_OK);
    assert_int_equal(w.calls, 0); /* never from inside the call */
    run_for(base, &w, 1, 2000);
    assert_int_equal(w.rep.status, EFN_OK);
    assert_int_equal(h_redis_cmd(&redis, "EXISTS efn:test:default:k", out, sizeof(out)), 0);
    assert_string_equal(out, ":1");
    assert_int_equal(kv_op_get(h, PFX, EFN_STR("k"), on_rep, &w), EFN_OK);
    run_for(base, &w, 2, 2000);
    assert_int_equal(w.rep.status, EFN_OK);
    assert_string_equal(w.value, "v1");
    assert_int_equal(kv_op_get(h, PFX, EFN_STR("nope"), on_rep, &w), EFN_OK);
    run_for(base, &w, 3, 2000);
    assert_int_equal(w.rep.status, EFN_E_NOTFOUND);
    assert_int_equal(kv_op_incr(h, PFX, EFN_STR("n"), 5, on_rep, &w), EFN_OK);
    assert_int_equal(kv_op_incr(h, PFX, EFN_STR("n"), -2, on_rep, &w), EFN_OK);
    run_for(base, &w, 5, 2000);
    assert_int_equal(w.rep.integer, 3);
    assert_int_equal(kv_op_incr(h, PFX, EFN_STR("k"), 1, on_rep, &w), EFN_OK); /* not a number */
    run_for(base, &w, 6, 2000);
    assert_int_equal(w.rep.status, EFN_E_KV);
    assert_int_equal(kv_op_expire(h, PFX, EFN_STR("n"), 60000, on_rep, &w), EFN_OK);
    run_for(base, &w, 7, 2000);
    assert_int_equal(w.rep.integer, 1);
    assert_int_equal(h_redis_cmd(&redis, "PTTL efn:test:default:n", out, sizeof(out)), 0);
    assert_true(strtol(out + 1, NULL, 10) > 50000);
    assert_int_equal(kv_op_set(h, PFX, EFN_STR("t"), EFN_STR("x"), 30000, on_rep, &w), EFN_OK);
    run_for(base, &w, 8, 2000);
    assert_int_equal(h_redis_cmd(&redis, "PTTL efn:test:default:t", out, sizeof(out)), 0);
    assert_true(strtol(out + 1, NULL, 10) > 20000);
    assert_int_equal(kv_op_del(h, PFX, EFN_STR("k"), on_rep, &w), EFN_OK);
    run_for(base, &w, 9, 2000);
    assert_int_equal(w.rep.integer, 1);
    assert_int_equal(kv_op_incr_window(h, PFX, EFN_STR("w"), 1, 10000, on_rep, &w), EFN_OK);
    run_for(base, &w, 10, 2000);
    assert_int_equal(w.rep.status, EFN_OK);
    assert_int_equal(w.rep.integer, 1);
    assert_true(w.rep.ttl_ms > 9000 && w.rep.ttl_ms <= 10000);
    assert_int_equal(kv_op_incr_window(h, PFX, EFN_STR("w"), 1, 10000, on_rep, &w), EFN_OK);
    run_for(base, &w, 11, 2000);
    assert_int_equal(w.rep.integer, 2);
    /* bad arguments */
    assert_int_equal(kv_op_get(h, PFX, EFN_STR(""), on_rep, &w), EFN_E_INVAL);
    assert_int_equal(kv_op_incr_window(h, PFX, EFN_STR("w"), 1, 0, on_rep, &w), EFN_E_INVAL);
    /* fire-and-forget */
    assert_int_equal(kv_op_set(h, PFX, EFN_STR("ff"), EFN_STR("1"), 0, NULL, NULL), EFN_OK);
    assert_int_equal(kv_handle_pending(h), 0);
    kv_handle_free(h);
    kv_client_free(c);
    event_base_free(base);
}

static void
test_limit_and_cancel(void **state)
{
    struct event_base *base = event_base_new();
    struct kv_client *c = client(base, 500);
    struct kv_handle *h = kv_handle_new(c);
    struct waiter w = {0};
    int i;

    (void)state;
    for (i = 0; i < 8; i++)
        assert_int_equal(kv_op_incr(h, PFX, EFN_STR("lim"), 1, on_rep, &w), EFN_OK);
    assert_int_equal(kv_op_incr(h, PFX, EFN_STR("lim"), 1, on_rep, &w), EFN_E_LIMIT);
    assert_int_equal(kv_handle_pending(h), 8);
    kv_handle_cancel(h);
    assert_int_equal(kv_handle_pending(h), 0);
    run_for(base, &w, 1, 300);
    assert_int_equal(w.calls, 0); /* replies came and were dropped */
    assert_int_equal(kv_op_get(h, PFX, EFN_STR("lim"), on_rep, &w), EFN_OK);
    run_for(base, &w, 1, 2000);
    assert_string_equal(w.value, "8");
    /* free with ops in flight: no callback later, no leak */
    assert_int_equal(kv_op_get(h, PFX, EFN_STR("lim"), on_rep, &w), EFN_OK);
    kv_handle_free(h);
    run_for(base, &w, 2, 300);
    assert_int_equal(w.calls, 1);
    kv_client_free(c);
    event_base_free(base);
}

static void
test_timeout_then_late_reply(void **state)
{
    struct event_base *base = event_base_new();
    struct kv_client *c = client(base, 150);
    struct kv_handle *h = kv_handle_new(c);
    struct waiter w = {0};
    double t0;

    (void)state;
    assert_int_equal(h_kill(&redis.proc, SIGSTOP), 0);
    t0 = h_now_ms();
    assert_int_equal(kv_op_incr(h, PFX, EFN_STR("slow"), 1, on_rep, &w), EFN_OK);
    run_for(base, &w, 1, 2000);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.rep.status, EFN_E_TIMEOUT);
    assert_true(w.at_ms - t0 >= 140 && w.at_ms - t0 < 1000);
    assert_int_equal(kv_handle_pending(h), 0);
    assert_int_equal(h_kill(&redis.proc, SIGCONT), 0);
    run_for(base, &w, 2, 500); /* the late reply arrives and is dropped */
    assert_int_equal(w.calls, 1);
    /* the connection survived (no hiredis timeout dropped it) */
    assert_true(kv_client_connected(c));
    assert_int_equal(kv_op_get(h, PFX, EFN_STR("slow"), on_rep, &w), EFN_OK);
    run_for(base, &w, 2, 2000);
    assert_int_equal(w.rep.status, EFN_OK);
    assert_string_equal(w.value, "1");
    kv_handle_free(h);
    kv_client_free(c);
    event_base_free(base);
}

static void
test_down_then_restarted(void **state)
{
    struct event_base *base = event_base_new();
    struct kv_client *c = client(base, 200);
    struct kv_handle *h = kv_handle_new(c);
    struct waiter w = {0};
    double t0;
    int rc, ok = 0;

    (void)state;
    assert_int_equal(kv_op_incr(h, PFX, EFN_STR("pending"), 1, on_rep, &w), EFN_OK);
    h_redis_stop(&redis);
    /* an op in flight when the server goes: EFN_OK (answered first) or
     * EFN_E_KV (connection lost) — either way within the timeout */
    t0 = h_now_ms();
    run_for(base, &w, 1, 2000);
    assert_int_equal(w.calls, 1);
    assert_true(w.rep.status == EFN_OK || w.rep.status == EFN_E_KV);
    /* while down: every op fails, synchronously or by callback, fast */
    for (int i = 0; i < 5; i++) {
        int before = w.calls;
        t0 = h_now_ms();
        rc = kv_op_get(h, PFX, EFN_STR("x"), on_rep, &w);
        if (rc == EFN_OK) {
            run_for(base, &w, before + 1, 2000);
            assert_int_equal(w.calls, before + 1);
            assert_true(w.rep.status == EFN_E_KV || w.rep.status == EFN_E_TIMEOUT);
        } else {
            assert_int_equal(rc, EFN_E_KV);
        }
        assert_true(h_now_ms() - t0 < 500);
        run_for(base, &w, 1000, 100);
    }
    assert_false(kv_client_connected(c));
    /* same port again: the client reconnects by itself (backoff <= 2 s) */
    assert_int_equal(redis_respawn(&redis), 0);
    t0 = h_now_ms();
    while (h_now_ms() - t0 < 5000 && !ok) {
        int before = w.calls;
        rc = kv_op_incr(h, PFX, EFN_STR("again"), 1, on_rep, &w);
        if (rc == EFN_OK) {
            run_for(base, &w, before + 1, 1000);
            ok = w.calls > before && w.rep.status == EFN_OK;
        }
        if (!ok)
            run_for(base, &w, 1000, 100);
    }
    assert_true(ok);
    assert_true(kv_client_connected(c));
    kv_handle_free(h);
    kv_client_free(c);
    event_base_free(base);
}

/* ---- two event loops on two threads ---- */

#define PER_THREAD 100

struct worker {
    pthread_t tid;
    bool window;
    int64_t got[PER_THREAD];
    int64_t ttl[PER_THREAD];
    int n, errors;
    struct event_base *base;
};

static void
on_count(void *ud, const efn_kv_reply *rep)
{
    struct worker *wk = ud;

    if (rep->status != EFN_OK) {
        wk->errors++;
    } else {
        wk->ttl[wk->n] = rep->ttl_ms;
        wk->got[wk->n] = rep->integer;
    }
    if (++wk->n == PER_THREAD)
        event_base_loopbreak(wk->base);
}

static void *
worker_main(void *arg)
{
    struct worker *wk = arg;
    struct kv_conf kc;
    struct kv_client *c;
    struct kv_handle *hs[PER_THREAD / 5];
    struct timeval tv = {10, 0};
    int i;

    wk->base = event_base_new();
    kv_conf_defaults(&kc);
    kc.port = (uint16_t)redis.port;
    kc.timeout_ms = 2000;
    c = kv_client_new(wk->base, &kc);
    while (!kv_client_connected(c))
        event_base_loop(wk->base, EVLOOP_ONCE);
    /* 20 "requests" of 5 ops each, all in flight at once (pipelined) */
    for (i = 0; i < PER_THREAD; i++) {
        int rc;
        if (i % 5 == 0)
            hs[i / 5] = kv_handle_new(c);
        if (wk->window)
            rc = kv_op_incr_window(hs[i / 5], PFX, EFN_STR("rl"), 1, 60000, on_count, wk);
        else
            rc = kv_op_incr(hs[i / 5], PFX, EFN_STR("cnt"), 1, on_count, wk);
        if (rc != EFN_OK)
            wk->errors++;
    }
    event_base_loopexit(wk->base, &tv);
    event_base_dispatch(wk->base);
    for (i = 0; i < PER_THREAD / 5; i++)
        kv_handle_free(hs[i]);
    kv_client_free(c);
    event_base_free(wk->base);
    return NULL;
}

static int
cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void
concurrent(bool window)
{
    struct worker wk[2];
    int64_t all[2 * PER_THREAD];
    int i;

    memset(wk, 0, sizeof(wk));
    for (i = 0; i < 2; i++) {
        wk[i].window = window;
        assert_int_equal(pthread_create(&wk[i].tid, NULL, worker_main, &wk[i]), 0);
    }
    for (i = 0; i < 2; i++)
        pthread_join(wk[i].tid, NULL);
    for (i = 0; i < 2; i++) {
        assert_int_equal(wk[i].errors, 0);
        assert_int_equal(wk[i].n, PER_THREAD);
        memcpy(all + i * PER_THREAD, wk[i].got, sizeof(wk[i].got));
    }
    /* every count from 1 to 200 exactly once: no lost or doubled increment */
    qsort(all, 2 * PER_THREAD, sizeof(all[0]), cmp64);
    for (i = 0; i < 2 * PER_THREAD; i++)
        assert_int_equal(all[i], i + 1);
    if (window)
        for (i = 0; i < PER_THREAD; i++)
            assert_true(wk[0].ttl[i] > 0 && wk[0].ttl[i] <= 60000);
}

static void
test_concurrent_incr(void **state)
{
    char out[64];

    (void)state;
    concurrent(false);
    assert_int_equal(h_redis_cmd(&redis, "INCRBY efn:test:default:cnt 0", out, sizeof(out)), 0);
    assert_string_equal(out, ":200");
}

static void
test_concurrent_incr_window(void **state)
{
    char out[64];

    (void)state;
    concurrent(true);
    assert_int_equal(h_redis_cmd(&redis, "PTTL efn:test:default:rl", out, sizeof(out)), 0);
    assert_true(strtol(out + 1, NULL, 10) > 50000);
}

static int
setup(void **state)
{
    (void)state;
    return h_redis_start(&redis);
}

static int
teardown(void **state)
{
    (void)state;
    h_redis_stop(&redis);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_and_namespace),
        cmocka_unit_test(test_limit_and_cancel),
        cmocka_unit_test(test_timeout_then_late_reply),
        cmocka_unit_test(test_concurrent_incr),
        cmocka_unit_test(test_concurrent_incr_window),
        cmocka_unit_test(test_down_then_restarted),
    };
    return H_RUN(tests, setup, teardown);
}
