/*
 * For tests that load tests/plugins/testfn.c: build it as NAME.so in a
 * directory (run from the repo root, with $CC or cc), and count the init /
 * fini / instance lines it logs through the host table. Include after
 * <cmocka.h>.
 */
#ifndef EDGE_TESTS_TESTFN_BUILD_H
#define EDGE_TESTS_TESTFN_BUILD_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/edgefn.h"

static int tf_n_init, tf_n_fini, tf_n_inst;

static void
tf_count_log(efn_req *r, int level, const char *fmt, ...)
{
    (void)r;
    (void)level;
    if (strncmp(fmt, "init ", 5) == 0)
        tf_n_init++;
    else if (strncmp(fmt, "fini ", 5) == 0)
        tf_n_fini++;
    else if (strncmp(fmt, "instance ", 9) == 0)
        tf_n_inst++;
}

/* testfn.c as dir/name.so, behaving as TF_MODE mode; extra: more cc flags. */
static void
tf_build(const char *dir, const char *name, int mode, const char *extra)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd),
             "${CC:-cc} -std=c11 -shared -fPIC -I. -DTF_NAME='\"%s\"' -DTF_MODE=%d %s "
             "tests/plugins/testfn.c -o %s/%s.so",
             name, mode, extra != NULL ? extra : "", dir, name);
    if (system(cmd) != 0)
        fail_msg("cannot build test plugin: %s", cmd);
}

#endif
