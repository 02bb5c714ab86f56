/*
 * Unit tests of compute/functions/ab_split.c against the fake host.
 */
#include "compute/functions/ab_split.c"

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
test_new_visitor_gets_cookie(void **state)
{
    const char *args[] = {"buckets=a:50,b:50", "cookie=exp", "header=X-Variant", "max_age=60"};
    void *inst = mk(args, 4);
    int seen_a = 0, seen_b = 0, i;

    (void)state;
    for (i = 0; i < 400; i++) {
        struct efn_req *r = fh_req_new("GET", "/");
        const char *v, *sc;
        char want[128];
        fh_hdr_add(r, EFN_MSG_REQ, "X-Variant", "forged");
        assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_CONTINUE);
        assert_int_equal(fh_hdr_count(r, EFN_MSG_REQ, "X-Variant"), 1);
        v = fh_hdr(r, EFN_MSG_REQ, "X-Variant", 0);
        assert_true(strcmp(v, "a") == 0 || strcmp(v, "b") == 0);
        seen_a += v[0] == 'a';
        seen_b += v[0] == 'b';
        fh_set_response(r, 200);
        assert_int_equal(fh_run(r, FH_RESPONSE, inst), EFN_CONTINUE);
        sc = fh_hdr(r, EFN_MSG_RESP, "Set-Cookie", 0);
        assert_non_null(sc);
        snprintf(want, sizeof(want), "exp=%s; Path=/; Max-Age=60; SameSite=Lax", v);
        assert_string_equal(sc, want);
        fh_req_free(r);
    }
    assert_true(seen_a > 120 && seen_b > 120);
    ab_instance_free(inst);
    fh_kv_reset();
}

static void
test_sticky(void **state)
{
    const char *args[] = {"buckets=a:1,b:1,c:0"};
    void *inst = mk(args, 1);
    struct efn_req *r;

    (void)state;
    r = fh_req_new("GET", "/");
    fh_hdr_add(r, EFN_MSG_REQ, "Cookie", "x=1; ab=b ; y=2");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_CONTINUE);
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-Bucket", 0), "b");
    fh_set_response(r, 200);
    assert_int_equal(fh_run(r, FH_RESPONSE, inst), EFN_CONTINUE);
    assert_null(fh_hdr(r, EFN_MSG_RESP, "Set-Cookie", 0)); /* already has one */
    fh_req_free(r);
    /* second Cookie header line */
    r = fh_req_new("GET", "/");
    fh_hdr_add(r, EFN_MSG_REQ, "Cookie", "x=1");
    fh_hdr_add(r, EFN_MSG_REQ, "Cookie", "ab=a");
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_CONTINUE);
    assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-Bucket", 0), "a");
    fh_req_free(r);
    /* unknown, disabled (weight 0) or look-alike values: re-picked, never c */
    {
        const char *cookies[] = {"ab=zz", "ab=c", "xab=a", "ab=", "ab"};
        size_t i;
        for (i = 0; i < 5; i++) {
            r = fh_req_new("GET", "/");
            fh_hdr_add(r, EFN_MSG_REQ, "Cookie", cookies[i]);
            assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_CONTINUE);
            assert_string_not_equal(fh_hdr(r, EFN_MSG_REQ, "X-Bucket", 0), "c");
            assert_non_null(*fh_slot(r));
            fh_req_free(r);
        }
    }
    ab_instance_free(inst);
    fh_kv_reset();
}

static void
test_weights_and_arena(void **state)
{
    const char *args[] = {"buckets=only:5,never:0"};
    void *inst = mk(args, 1);
    struct efn_req *r;
    int i;

    (void)state;
    for (i = 0; i < 50; i++) {
        r = fh_req_new("GET", "/");
        assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_CONTINUE);
        assert_string_equal(fh_hdr(r, EFN_MSG_REQ, "X-Bucket", 0), "only");
        fh_req_free(r);
    }
    r = fh_req_new("GET", "/");
    r->arena_cap = 0;
    assert_int_equal(fh_run(r, FH_REQUEST, inst), EFN_ERROR);
    fh_req_free(r);
    ab_instance_free(inst);
    fh_kv_reset();
}

static void
test_bad_args(void **state)
{
    static const struct fh_bad cases[] = {
        {{"cookie=x"}, 1, "needs buckets="},
        {{"buckets=a"}, 1, "is not NAME:WEIGHT"},
        {{"buckets=a:"}, 1, "is not NAME:WEIGHT"},
        {{"buckets=a:x"}, 1, "must be 0-1000000"},
        {{"buckets=a:2000000"}, 1, "must be 0-1000000"},
        {{"buckets=a:0,b:0"}, 1, "weight > 0"},
        {{"buckets=a:1,a:2"}, 1, "appears twice"},
        {{"buckets=a:1,"}, 1, "trailing"},
        {{"buckets=a b:1"}, 1, "is not NAME:WEIGHT"},
        {{"buckets=a:1", "cookie=a;b"}, 2, "cookie= must be"},
        {{"buckets=a:1", "max_age=-1"}, 2, "max_age= must be"},
        {{"buckets=a:1", "sticky=1"}, 2, "unknown argument 'sticky'"},
        {{"buckets=a:1", "buckets=b:1"}, 2, "given twice"},
        {{"buckets=a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1,j:1,k:1,l:1,m:1,n:1,o:1,p:1,q:1"}, 1,
         "at most 16"},
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
        cmocka_unit_test(test_new_visitor_gets_cookie),
        cmocka_unit_test(test_sticky),
        cmocka_unit_test(test_weights_and_arena),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
