/*
 * Unit tests of compute/loader.c with test plugins built at run time from
 * tests/plugins/testfn.c (cc -shared -fPIC): good, wrong ABI, missing
 * symbol, init failing, unresolved symbols, name mismatch; sha-named copies,
 * reuse without a second init, refcounts with fini at zero. Run from the
 * repository root.
 */
#include "compute/compute.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/plugins/testfn_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[128];      /* function_dir */
static char run_dir[160];  /* run dir */
static struct efn_host host;

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/compute_loader_test.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(run_dir, sizeof(run_dir), "%s/run/efn", dir);
    host = *compute_host_stub();
    host.log = tf_count_log;
    tf_build(dir, "good", 0, NULL);
    tf_build(dir, "abi2", 1, NULL);
    tf_build(dir, "minor", 2, NULL);
    tf_build(dir, "small", 3, NULL);
    tf_build(dir, "nosym", 4, NULL);
    tf_build(dir, "initfail", 5, NULL);
    tf_build(dir, "unres", 6, NULL);
    tf_build(dir, "misnamed", 7, NULL);
    return 0;
}

static int
teardown(void **state)
{
    char cmd[256];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
expect_refused(struct compute_loader *l, const char *name, const char *want)
{
    char err[COMPUTE_ERR_MAX];
    struct compute_build *b = compute_build_load(l, dir, name, err, sizeof(err));

    if (b != NULL)
        fail_msg("'%s' was loaded", name);
    if (strstr(err, want) == NULL)
        fail_msg("'%s': error '%s' lacks '%s'", name, err, want);
    if (strncmp(err, "function '", 10) != 0 || strstr(err, name) == NULL)
        fail_msg("'%s': error '%s' does not name the plugin", name, err);
}

static void
test_refusals(void **state)
{
    char err[COMPUTE_ERR_MAX];
    struct compute_loader *l;

    (void)state;
    l = compute_loader_new(run_dir, &host, err, sizeof(err));
    assert_non_null(l);
    tf_n_init = tf_n_fini = 0;
    expect_refused(l, "missing", "missing.so: no such file");
    expect_refused(l, "abi2", "built for ABI 2.0, edge has 1.0");
    expect_refused(l, "minor", "built for ABI 1.1, edge has 1.0");
    expect_refused(l, "small", "descriptor size 16 is smaller than ABI 1.0");
    expect_refused(l, "nosym", "has no symbol 'efn_plugin_v1'");
    expect_refused(l, "initfail", "init failed: no license for initfail");
    expect_refused(l, "unres", "tf_no_such_symbol");
    expect_refused(l, "misnamed", "declares name 'other'");
    expect_refused(l, "../good", "bad name");
    expect_refused(l, "", "bad name");
    assert_int_equal(tf_n_init, 1); /* only initfail got as far as init */
    compute_loader_free(l);
}

static void
test_load_reuse_refcount(void **state)
{
    char err[COMPUTE_ERR_MAX], want[512];
    struct compute_loader *l;
    struct compute_build *b1, *b2, *b3;
    const efn_arg args[] = {{{"a", 1}, {"1", 1}}, {{"fail", 4}, {"yes", 3}}};
    void *inst = NULL;
    struct stat st;

    (void)state;
    tf_n_init = tf_n_fini = tf_n_inst = 0;
    l = compute_loader_new(run_dir, &host, err, sizeof(err));
    assert_non_null(l);
    b1 = compute_build_load(l, dir, "good", err, sizeof(err));
    if (b1 == NULL)
        fail_msg("%s", err);
    assert_int_equal(tf_n_init, 1);
    assert_string_equal(compute_build_plugin(b1)->name, "good");
    assert_int_equal(strlen(compute_build_sha256(b1)), 64);
    snprintf(want, sizeof(want), "%s/good-%s.so", run_dir, compute_build_sha256(b1));
    assert_string_equal(compute_build_path(b1), want);
    assert_int_equal(stat(want, &st), 0);
    /* unchanged file: same build, no second init */
    b2 = compute_build_load(l, dir, "good", err, sizeof(err));
    assert_ptr_equal(b1, b2);
    assert_int_equal(tf_n_init, 1);
    assert_int_equal(compute_build_inits(b1), 1);
    /* instances */
    assert_int_equal(compute_instance_new(b1, args, 1, &inst, err, sizeof(err)), 0);
    assert_non_null(inst);
    assert_int_equal(tf_n_inst, 1);
    compute_instance_free(b1, inst);
    assert_int_equal(compute_instance_new(b1, args, 2, &inst, err, sizeof(err)), -1);
    assert_null(inst);
    assert_string_equal(err, "function 'good': fail requested (yes)");
    /* a changed build: a fresh copy and a second init while the old one lives */
    tf_build(dir, "good", 0, "-DTF_CHANGED=1 -O1");
    b3 = compute_build_load(l, dir, "good", err, sizeof(err));
    assert_non_null(b3);
    assert_ptr_not_equal(b3, b1);
    assert_string_not_equal(compute_build_sha256(b3), compute_build_sha256(b1));
    assert_int_equal(tf_n_init, 2);
    /* refcounts: fini only at zero */
    compute_build_unref(b2);
    assert_int_equal(tf_n_fini, 0);
    compute_build_unref(b1);
    assert_int_equal(tf_n_fini, 1);
    compute_loader_free(l); /* b3 still referenced: freed with it */
    assert_ptr_equal(compute_build_ref(b3), b3);
    compute_build_unref(b3);
    assert_int_equal(tf_n_fini, 1);
    compute_build_unref(b3);
    assert_int_equal(tf_n_fini, 2);
}

static void
test_real_functions(void **state)
{
    static const char *names[] = {"hello", "auth_key", "rate_limit", "ab_split", "headers"};
    char err[COMPUTE_ERR_MAX], cmd[512];
    struct compute_loader *l;
    size_t i;

    (void)state;
    l = compute_loader_new(run_dir, &host, err, sizeof(err));
    assert_non_null(l);
    for (i = 0; i < 5; i++) {
        struct compute_build *b;
        snprintf(cmd, sizeof(cmd),
                 "${CC:-cc} -std=c11 -shared -fPIC -I. compute/functions/%s.c -o %s/%s.so",
                 names[i], dir, names[i]);
        assert_int_equal(system(cmd), 0);
        b = compute_build_load(l, dir, names[i], err, sizeof(err));
        if (b == NULL)
            fail_msg("%s", err);
        compute_build_unref(b);
    }
    compute_loader_free(l);
}

static void
test_bad_run_dir(void **state)
{
    char err[COMPUTE_ERR_MAX];

    (void)state;
    assert_null(compute_loader_new("/proc/nope/efn", &host, err, sizeof(err)));
    assert_non_null(strstr(err, "/proc/nope/efn"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_load_reuse_refcount),
        cmocka_unit_test(test_real_functions),
        cmocka_unit_test(test_bad_run_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
