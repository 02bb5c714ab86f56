/*
 * Unit tests of compute/functions/hello.c against the fake host.
 */
#include "compute/functions/hello.c"

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

static void
test_counts_per_path(void **state)
{
    void *inst = mk(NULL, 0);
    struct efn_req *r;
    int i;

    (void)state;
    for (i = 1; i <= 3; i++) {
        char want[128];
        r = fh_req_new("GET", "/a?x=1");
        assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
        assert_int_equal(r->responded, 200);
        snprintf(want, sizeof(want), "{\"hello\":\"world\",\"path\":\"/a\",\"visits\":%d}\n", i);
        assert_string_equal(r->resp_body, want);
        assert_string_equal(fh_resp_hdr(r, "content-type"), "application/json");
        fh_req_free(r);
    }
    r = fh_req_new("GET", "/b");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
    assert_non_null(strstr(r->resp_body, "\"visits\":1}"));
    fh_req_free(r);
    assert_string_equal(fh_kv_get(FH_PREFIX "visits:/a"), "3");
    assert_string_equal(fh_kv_get(FH_PREFIX "visits:/b"), "1");
    hello_instance_free(inst);
    fh_kv_reset();
}

static void
test_greeting_and_escaping(void **state)
{
    const char *args[] = {"greeting=a\"b"};
    void *inst = mk(args, 1);
    struct efn_req *r = fh_req_new("GET", "/q\"\\\x01");

    (void)state;
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
    assert_string_equal(r->resp_body,
                        "{\"hello\":\"a\\\"b\",\"path\":\"/q\\\"\\\\\\u0001\",\"visits\":1}\n");
    fh_req_free(r);
    hello_instance_free(inst);
    fh_kv_reset();
}

static void
test_bad_args(void **state)
{
    const char *a1[] = {"nope=1"};
    const char *a2[] = {"greeting="};
    char err[256];
    void *inst;

    (void)state;
    assert_int_equal(fh_init(), 0);
    assert_int_not_equal(fh_instance(&inst, err, sizeof(err), a1, 1), 0);
    assert_non_null(strstr(err, "unknown argument 'nope'"));
    assert_int_not_equal(fh_instance(&inst, err, sizeof(err), a2, 1), 0);
    assert_non_null(strstr(err, "greeting="));
    fh_kv_reset();
}

static void
test_kv_errors(void **state)
{
    void *inst = mk(NULL, 0);
    struct efn_req *r;

    (void)state;
    /* Redis down: the call itself fails, no pause */
    fh.kv_down = true;
    r = fh_req_new("GET", "/a");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    assert_int_equal(r->responded, 0);
    assert_int_equal(r->nops, 0);
    fh_req_free(r);
    fh.kv_down = false;
    /* timeout and error replies after the pause */
    fh.kv_fail = EFN_E_TIMEOUT;
    fh.kv_fail_count = 1;
    r = fh_req_new("GET", "/a");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    assert_non_null(strstr(r->last_log, "-6"));
    fh_req_free(r);
    fh.kv_fail = EFN_E_KV;
    fh.kv_fail_count = 1;
    r = fh_req_new("GET", "/a");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    fh_req_free(r);
    /* then it works again */
    r = fh_req_new("GET", "/a");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
    assert_non_null(strstr(r->resp_body, "\"visits\":1}"));
    fh_req_free(r);
    hello_instance_free(inst);
    fh_kv_reset();
}

static void
test_arena_exhaustion(void **state)
{
    void *inst = mk(NULL, 0);
    struct efn_req *r;
    size_t cap;

    (void)state;
    /* every cap from 0 up: never crashes, either ERROR or a full answer */
    for (cap = 0; cap < 200; cap++) {
        efn_action a;
        r = fh_req_new("GET", "/some/path");
        r->arena_cap = cap;
        a = fh_run(r, FH_REQUEST, inst);
        assert_true(a == EFN_ERROR || (a == EFN_DONE && r->responded == 200));
        if (a == EFN_ERROR)
            assert_int_equal(r->responded, 0);
        fh_req_free(r);
    }
    r = fh_req_new("GET", "/some/path");
    r->arena_cap = 0;
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    fh_req_free(r);
    hello_instance_free(inst);
    fh_kv_reset();
}

static void
test_descriptor(void **state)
{
    (void)state;
    assert_int_equal(efn_plugin_v1.abi_major, EFN_ABI_MAJOR);
    assert_int_equal(efn_plugin_v1.abi_minor, EFN_ABI_MINOR);
    assert_int_equal(efn_plugin_v1.size, sizeof(struct efn_plugin));
    assert_true(efn_plugin_v1.size >= EFN_PLUGIN_SIZE_V1_0);
    assert_string_equal(efn_plugin_v1.name, "hello");
    assert_true(EFN_HOST_HAS(&fh_host, kv_incr_window));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_per_path),
        cmocka_unit_test(test_greeting_and_escaping),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_kv_errors),
        cmocka_unit_test(test_arena_exhaustion),
        cmocka_unit_test(test_descriptor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
