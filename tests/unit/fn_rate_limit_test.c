/*
 * Unit tests of compute/functions/rate_limit.c against the fake host.
 */
#include "compute/functions/rate_limit.c"

#include "tests/unit/fn_fakehost.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void *
mk(const char *const *kv, size_t n)
{
    char err[256];
    void *inst;

    assert_int_equal(fh_init(), 0);
    if (fh_instance(&inst, err, sizeof(err), kv, n) != 0)
        fail_msg("instance_new: %s", err);
    return inst;
}

/* One full request: REQUEST phase, then RESPONSE when it passed. */
static efn_action
one(void *inst, const char *ip, const char *hdr, struct efn_req **out)
{
    struct efn_req *r = fh_req_new("GET", "/");
    efn_action a;

    if (ip != NULL) {
        free(r->client_ip);
        r->client_ip = fh_strndup(ip, strlen(ip));
    }
    if (hdr != NULL)
        fh_hdr_add(r, EFN_MSG_REQ, "X-User", hdr);
    a = fh_run(r, FH_REQUEST, inst);
    if (a == EFN_CONTINUE) {
        fh_set_response(r, 200);
        assert_int_equal(fh_run(r, FH_RESPONSE, inst), EFN_CONTINUE);
    }
    *out = r;
    return a;
}

static void
test_limit_then_429(void **state)
{
    const char *args[] = {"limit=3", "window=10s"};
    void *inst = mk(args, 2);
    struct efn_req *r;
    int i;

    (void)state;
    for (i = 1; i <= 3; i++) {
        char want[8];
        assert_int_equal(one(inst, NULL, NULL, &r), EFN_CONTINUE);
        snprintf(want, sizeof(want), "%d", 3 - i);
        assert_string_equal(fh_hdr(r, EFN_MSG_RESP, "RateLimit-Limit", 0), "3");
        assert_string_equal(fh_hdr(r, EFN_MSG_RESP, "RateLimit-Remaining", 0), want);
        assert_string_equal(fh_hdr(r, EFN_MSG_RESP, "RateLimit-Reset", 0), "10");
        fh_req_free(r);
    }
    fh.now_ms += 2500; /* 7.5 s left: Reset rounds up */
    assert_int_equal(one(inst, NULL, NULL, &r), EFN_DONE);
    assert_int_equal(r->responded, 429);
    assert_string_equal(fh_resp_hdr(r, "RateLimit-Limit"), "3");
    assert_string_equal(fh_resp_hdr(r, "RateLimit-Remaining"), "0");
    assert_string_equal(fh_resp_hdr(r, "RateLimit-Reset"), "8");
    assert_string_equal(fh_resp_hdr(r, "Retry-After"), "8");
    assert_non_null(strstr(r->resp_body, "too many requests"));
    fh_req_free(r);
    /* another client has its own counter */
    assert_int_equal(one(inst, "198.51.100.1", NULL, &r), EFN_CONTINUE);
    assert_string_equal(fh_hdr(r, EFN_MSG_RESP, "RateLimit-Remaining", 0), "2");
    fh_req_free(r);
    assert_string_equal(fh_kv_get(FH_PREFIX "c:192.0.2.7"), "4");
    /* the window ends: a new one starts */
    fh.now_ms += 7500;
    assert_int_equal(one(inst, NULL, NULL, &r), EFN_CONTINUE);
    assert_string_equal(fh_hdr(r, EFN_MSG_RESP, "RateLimit-Remaining", 0), "2");
    fh_req_free(r);
    rl_instance_free(inst);
    fh_kv_reset();
}

static void
test_header_key(void **state)
{
    const char *args[] = {"limit=1", "window=1m", "key=header:X-User"};
    void *inst = mk(args, 3);
    struct efn_req *r;
    char longid[300];

    (void)state;
    assert_int_equal(one(inst, NULL, "alice", &r), EFN_CONTINUE);
    assert_string_equal(fh_hdr(r, EFN_MSG_RESP, "RateLimit-Reset", 0), "60");
    fh_req_free(r);
    assert_int_equal(one(inst, NULL, "alice", &r), EFN_DONE);
    fh_req_free(r);
    assert_int_equal(one(inst, NULL, "bob", &r), EFN_CONTINUE);
    fh_req_free(r);
    /* no header: counted by client address */
    assert_int_equal(one(inst, NULL, NULL, &r), EFN_CONTINUE);
    fh_req_free(r);
    assert_non_null(fh_kv_get(FH_PREFIX "h:alice"));
    assert_non_null(fh_kv_get(FH_PREFIX "c:192.0.2.7"));
    /* long ids are hashed into a bounded key */
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(one(inst, NULL, longid, &r), EFN_CONTINUE);
    fh_req_free(r);
    assert_int_equal(one(inst, NULL, longid, &r), EFN_DONE);
    fh_req_free(r);
    rl_instance_free(inst);
    fh_kv_reset();
}

static void
test_kv_errors_and_arena(void **state)
{
    const char *args[] = {"limit=5", "window=500ms"};
    void *inst = mk(args, 2);
    struct efn_req *r;

    (void)state;
    fh.kv_fail = EFN_E_TIMEOUT;
    fh.kv_fail_count = 1;
    r = fh_req_new("GET", "/");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    /* on_error open: the response phase still runs and adds nothing */
    fh_set_response(r, 200);
    assert_int_equal(fh_run(r, FH_RESPONSE, inst), EFN_CONTINUE);
    assert_null(fh_hdr(r, EFN_MSG_RESP, "RateLimit-Limit", 0));
    fh_req_free(r);
    fh.kv_fail = EFN_E_KV;
    fh.kv_fail_count = 1;
    r = fh_req_new("GET", "/");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    fh_req_free(r);
    fh.kv_down = true;
    r = fh_req_new("GET", "/");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    assert_int_equal(r->nops, 0);
    fh_req_free(r);
    fh.kv_down = false;
    /* arena exhausted before or after the KV call */
    r = fh_req_new("GET", "/");
    r->arena_cap = 4;
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    fh_req_free(r);
    r = fh_req_new("GET", "/");
    r->arena_cap = 20; /* the key fits, the state does not */
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    fh_req_free(r);
    rl_instance_free(inst);
    fh_kv_reset();
}

static void
test_bad_args(void **state)
{
    static const struct fh_bad cases[] = {
        {{"limit=0", "window=1s"}, 2, "limit= must be"},
        {{"limit=x", "window=1s"}, 2, "limit= must be"},
        {{"limit=1", "window=1d"}, 2, "window= must be"},
        {{"limit=1", "window=0s"}, 2, "window= must be"},
        {{"limit=1"}, 1, "needs limit=N and window="},
        {{"limit=1", "window=1s", "key=cookie"}, 3, "key= must be"},
        {{"limit=1", "window=1s", "key=header:"}, 3, "key= must be"},
        {{"limit=1", "window=1s", "burst=2"}, 3, "unknown argument 'burst'"},
    };

    (void)state;
    assert_int_equal(fh_init(), 0);
    assert_int_equal(fh_expect_bad_args(cases, sizeof(cases) / sizeof(cases[0])), 0);
    fh_kv_reset();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_then_429),
        cmocka_unit_test(test_header_key),
        cmocka_unit_test(test_kv_errors_and_arena),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
