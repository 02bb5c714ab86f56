/*
 * r6: an answer the edge gives while dispatching a request head (404 no
 * site or route, 400 bad path, 421/403 for client certificates) frees the
 * request from inside llhttp's on_headers_complete; llhttp then called
 * on_message_complete on the freed request: the engine crashed (SIGSEGV)
 * after writing the answer on plain connections, before writing it on TLS
 * ones. Found while wiring TLS (issue 6).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/edge.h"

static struct h_edge edge;

static int
setup(void **state)
{
    char conf[1024];
    int port = h_free_port();
    (void)state;
    snprintf(conf, sizeof(conf),
             "workers 1;\n"
             "listen 127.0.0.1:%d;\n"
             "access_log off;\n"
             "site a.test { route /x { return 200 \"x\\n\"; } }\n",
             port);
    return h_edge_start(&edge, port, 0, conf);
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(h_edge_stop(&edge), 0);
    return 0;
}

static void
get(const char *path, const char *host, long want, const char *body_has)
{
    struct h_resp r;
    struct h_opts o = {.path_as_is = true, .timeout_ms = 5000};
    struct h_client *cl = h_client_new();
    char u[256], hh[128];
    const char *hdrs[] = {hh, NULL};

    snprintf(u, sizeof(u), "%s%s", edge.url, path);
    snprintf(hh, sizeof(hh), "Host: %s", host);
    assert_non_null(cl);
    assert_int_equal(h_client_http_opts(cl, &r, &o, "GET", u, NULL, 0, hdrs), 0);
    assert_int_equal(r.status, want);
    assert_non_null(strstr(r.body, body_has));
    h_resp_free(&r);
    h_client_free(cl);
}

static void
test_dispatch_errors_keep_the_engine(void **state)
{
    pid_t engine = h_child_pid(edge.proc.pid);
    (void)state;
    /* the supervisor listens before it forks the engine */
    for (int i = 0; i < 200 && engine <= 0; i++) {
        h_sleep_ms(10);
        engine = h_child_pid(edge.proc.pid);
    }
    assert_true(engine > 0);
    for (int i = 0; i < 3; i++) {
        get("/y", "a.test", 404, "no route matches");
        get("/x", "b.test", 404, "no site matches");
        get("/%2e%2e/", "a.test", 400, "bad request path");
    }
    get("/x", "a.test", 200, "x\n");
    h_sleep_ms(50); /* a crash shows as a new engine */
    assert_int_equal(h_child_pid(edge.proc.pid), engine);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_errors_keep_the_engine),
    };
    return H_RUN(tests, setup, teardown);
}
