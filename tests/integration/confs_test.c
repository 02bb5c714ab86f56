/*
 * Every shipped conf passes `edge -t`; a conf with a mistake fails it with
 * file:line:col and exit status 1 — through the real binary, so every
 * module's directives (cache, …) are registered as in production.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/integration/harness.h"

/* Runs build/edge -t -c path; returns the exit status, output in out. */
static int
edge_check(const char *path, char *out, size_t n)
{
    char cmd[1024];
    FILE *p;
    size_t got = 0;
    int st;

    snprintf(cmd, sizeof(cmd), "%s/edge -t -c '%s' 2>&1", h_build_dir(), path);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (got < n - 1) {
        size_t r = fread(out + got, 1, n - 1 - got, p);
        if (r == 0)
            break;
        got += r;
    }
    out[got] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_shipped_confs_pass(void **state)
{
    glob_t g;
    char out[4096];
    (void)state;
    assert_int_equal(edge_check("conf/edge.conf", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "is ok"));
    assert_int_equal(glob("conf/examples/*.conf", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 3);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        int rc = edge_check(g.gl_pathv[i], out, sizeof(out));
        if (rc != 0)
            fail_msg("%s: %s", g.gl_pathv[i], out);
    }
    globfree(&g);
}

static void
test_typo_fails_with_position(void **state)
{
    char out[4096];
    (void)state;
    const char *path = h_write_file("typo.conf", "listen 8080;\nsite * {\n    rout / { return 200; }\n}\n");
    assert_int_equal(edge_check(path, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "typo.conf:3:5: unknown directive 'rout' (did you mean 'route'?)"));
    path = h_write_file("cache.conf", "listen 8080;\nsite * { route / { return 200; cache on tll=5m; } }\n");
    assert_int_equal(edge_check(path, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "cache.conf:2:"));
    assert_non_null(strstr(out, "did you mean 'ttl='?"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_confs_pass),
        cmocka_unit_test(test_typo_fails_with_position),
    };
    return H_RUN(tests, NULL, NULL);
}
