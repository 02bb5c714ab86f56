/*
 * Unit tests of compute/functions/headers.c against the fake host.
 */
#include "compute/functions/headers.c"

#include "tests/unit/fn_fakehost.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void
test_edits_in_order(void **state)
{
    const char *args[] = {"set=req:X-A:one", "add=req:X-A:two", "remove=req:Cookie",
                          "set=resp:Server:edge", "add=resp:Link:<https://x>; rel=preload",
                          "remove=resp:X-Powered-By", "set=req:X-Empty:"};
    struct efn_req *r;
    char err[256];
    void *inst;

    (void)state;
    assert_int_equal(fh_init(), 0);
    assert_int_equal(fh_instance(&inst, err, sizeof(err), args, 7), 0);
    r = fh_req_new("GET", "/");
    fh_hdr_add(r, EFN_MSG_REQ, "x-a", "client");
    fh_hdr_add(r, EFN_MSG_REQ, "Cookie", "a=1");
    fh_hdr_add(r, EFN_MSG_REQ, "cookie", "b=2");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_CONTINUE);
    assert_int_equal(fh_hdr_count(r, EFN_MSG_REQ, "X-A"), 2);
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-A", 0), "one");
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-A", 1), "two");
    assert_int_equal(fh_hdr_count(r, EFN_MSG_REQ, "Cookie"), 0);
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-Empty", 0), "");
    assert_int_equal(fh_hdr_count(r, EFN_MSG_REQ, "Server"), 0); /* resp edits wait */
    fh_set_response(r, 200);
    fh_hdr_add(r, EFN_MSG_RESP, "Server", "origin");
    fh_hdr_add(r, EFN_MSG_RESP, "X-Powered-By", "php");
    assert_int_equal(fh_run(r, FH_RESPONSE, inst), EFN_CONTINUE);
    assert_int_equal(fh_hdr_count(r, EFN_MSG_RESP, "Server"), 1);
    assert_string_equal(fh_hdr(r, EFN_MSG_RESP, "Server", 0), "edge");
    assert_string_equal(fh_hdr(r, EFN_MSG_RESP, "Link", 0), "<https://x>; rel=preload");
    assert_int_equal(fh_hdr_count(r, EFN_MSG_RESP, "X-Powered-By"), 0);
    fh_req_free(r);
    hdrs_instance_free(inst);
    fh_kv_reset();
}

static void
test_bad_args(void **state)
{
    static const struct {
        const char *arg;
        const char *msg;
    } cases[] = {
        {"set=X-A:1", "must start with 'req:' or 'resp:'"},
        {"set=req:X-A", "expected WHERE:NAME:VALUE"},
        {"remove=req:X-A:1", "takes no value"},
        {"set=req::v", "bad header name"},
        {"set=req:X A:v", "bad header name"},
        {"add=resp:X-A:a\r\nb", "CR, LF or NUL"},
        {"rename=req:A", "unknown argument 'rename'"},
    };
    char err[256];
    void *inst;
    size_t i;

    (void)state;
    assert_int_equal(fh_init(), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_not_equal(fh_instance(&inst, err, sizeof(err), &cases[i].arg, 1), 0);
        if (strstr(err, cases[i].msg) == NULL)
            fail_msg("'%s': '%s' lacks '%s'", cases[i].arg, err, cases[i].msg);
    }
    assert_int_not_equal(fh_instance(&inst, err, sizeof(err), NULL, 0), 0);
    assert_non_null(strstr(err, "at least one"));
    assert_int_not_equal(efn_plugin_v1.instance_new(NULL, 33, &inst, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "at most 32"));
    /* a failure after some edits were parsed frees them (ASan) */
    {
        const char *mixed[] = {"set=req:A:1", "add=resp:B:2", "set=bogus"};
        assert_int_not_equal(fh_instance(&inst, err, sizeof(err), mixed, 3), 0);
    }
    fh_kv_reset();
}

static void
test_host_refuses(void **state)
{
    const char *args[] = {"set=resp:X-A:1"};
    struct efn_req *r;
    char err[256];
    void *inst;

    (void)state;
    assert_int_equal(fh_init(), 0);
    assert_int_equal(fh_instance(&inst, err, sizeof(err), args, 1), 0);
    /* a response edit the host refuses (wrong phase) turns into ERROR */
    r = fh_req_new("GET", "/");
    r->phase = FH_REQUEST;
    assert_int_equal(apply(r, inst, EFN_MSG_RESP), EFN_ERROR);
    assert_non_null(strstr(r->last_log, "X-A"));
    fh_req_free(r);
    assert_int_equal(apply(NULL, NULL, EFN_MSG_REQ), EFN_ERROR);
    hdrs_instance_free(inst);
    fh_kv_reset();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edits_in_order),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_host_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
