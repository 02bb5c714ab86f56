/*
 * Unit tests of compute/functions/auth_key.c against the fake host.
 */
#include "compute/functions/auth_key.c"

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
    fh_kv_put(FH_PREFIX "k-alice", "alice", 5);
    return inst;
}

static void
test_known_key_passes_owner(void **state)
{
    void *inst = mk(NULL, 0);
    struct efn_req *r = fh_req_new("GET", "/api");

    (void)state;
    fh_hdr_add(r, EFN_MSG_REQ, "x-api-key", "k-alice");
    fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Owner", "mallory"); /* forged */
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_CONTINUE);
    assert_int_equal(r->responded, 0);
    assert_int_equal(fh_hdr_count(r, EFN_MSG_REQ, "X-Api-Owner"), 1);
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-Api-Owner", 0), "alice");
    fh_req_free(r);
    auth_instance_free(inst);
    fh_kv_reset();
}

static void
test_missing_unknown_malformed(void **state)
{
    void *inst = mk(NULL, 0);
    struct efn_req *r;

    (void)state;
    r = fh_req_new("GET", "/api");
    fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Owner", "mallory");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
    assert_int_equal(r->responded, 401);
    assert_non_null(strstr(r->resp_body, "\"reason\":\"missing API key\""));
    assert_string_equal(fh_resp_hdr(r, "Content-Type"), "application/json");
    assert_non_null(fh_resp_hdr(r, "WWW-Authenticate"));
    assert_int_equal(fh_hdr_count(r, EFN_MSG_REQ, "X-Api-Owner"), 0);
    assert_int_equal(fh.kv_calls, 0);
    fh_req_free(r);

    r = fh_req_new("GET", "/api");
    fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Key", "k-bob");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
    assert_int_equal(r->responded, 401);
    assert_non_null(strstr(r->resp_body, "\"reason\":\"unknown API key\""));
    fh_req_free(r);

    r = fh_req_new("GET", "/api");
    fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Key", "k alice");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
    assert_non_null(strstr(r->resp_body, "malformed"));
    fh_req_free(r);

    r = fh_req_new("GET", "/api");
    fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Key", "k-alice");
    fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Key", "k-alice");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
    assert_non_null(strstr(r->resp_body, "more than one"));
    fh_req_free(r);

    r = fh_req_new("GET", "/api");
    fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Key", "");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
    assert_non_null(strstr(r->resp_body, "missing"));
    fh_req_free(r);
    auth_instance_free(inst);
    fh_kv_reset();
}

static void
test_custom_headers_and_bad_record(void **state)
{
    const char *args[] = {"header=Token", "owner_header=X-User"};
    void *inst = mk(args, 2);
    struct efn_req *r;

    (void)state;
    r = fh_req_new("GET", "/api");
    fh_hdr_add(r, EFN_MSG_REQ, "Token", "k-alice");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_CONTINUE);
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-User", 0), "alice");
    fh_req_free(r);
    /* an owner value that cannot be a header value is refused, not forwarded */
    fh_kv_put(FH_PREFIX "k-evil", "a\r\nb", 4);
    r = fh_req_new("GET", "/api");
    fh_hdr_add(r, EFN_MSG_REQ, "Token", "k-evil");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_DONE);
    assert_int_equal(r->responded, 401);
    assert_int_equal(fh_hdr_count(r, EFN_MSG_REQ, "X-User"), 0);
    fh_req_free(r);
    auth_instance_free(inst);
    fh_kv_reset();
}

static void
test_kv_errors(void **state)
{
    void *inst = mk(NULL, 0);
    struct efn_req *r;
    const int fails[] = {EFN_E_TIMEOUT, EFN_E_KV};
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        fh.kv_fail = fails[i];
        fh.kv_fail_count = 1;
        r = fh_req_new("GET", "/api");
        fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Key", "k-alice");
        assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
        assert_int_equal(r->responded, 0);
        assert_int_equal(fh_hdr_count(r, EFN_MSG_REQ, "X-Api-Owner"), 0);
        fh_req_free(r);
    }
    fh.kv_down = true;
    r = fh_req_new("GET", "/api");
    fh_hdr_add(r, EFN_MSG_REQ, "X-Api-Key", "k-alice");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    fh_req_free(r);
    auth_instance_free(inst);
    fh_kv_reset();
}

static void
test_bad_args(void **state)
{
    const char *a1[] = {"header=X Bad"};
    const char *a2[] = {"color=red"};
    const char *a3[] = {"owner_header="};
    char err[256];
    void *inst;

    (void)state;
    assert_int_equal(fh_init(), 0);
    assert_int_not_equal(fh_instance(&inst, err, sizeof(err), a1, 1), 0);
    assert_non_null(strstr(err, "header= must be a header name"));
    assert_int_not_equal(fh_instance(&inst, err, sizeof(err), a2, 1), 0);
    assert_non_null(strstr(err, "unknown argument 'color'"));
    assert_int_not_equal(fh_instance(&inst, err, sizeof(err), a3, 1), 0);
    fh_kv_reset();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_key_passes_owner),
        cmocka_unit_test(test_missing_unknown_malformed),
        cmocka_unit_test(test_custom_headers_and_bad_record),
        cmocka_unit_test(test_kv_errors),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
