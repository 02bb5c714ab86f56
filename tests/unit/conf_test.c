/*
 * Unit tests of the conf module: lexer, values, includes, every error
 * message, defaults, inheritance, matching, refcount and the extension API.
 * Run from the repository root (the shipped confs are loaded by path).
 */
#include "conf/conf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static struct conf *
load(const char *text)
{
    struct conf_err err = {{0}};
    struct conf *c = conf_load_string("edge.conf", text, strlen(text), &err);

    if (c == NULL)
        fail_msg("conf refused: %s\n--- conf:\n%s", err.msg, text);
    return c;
}

static const char *
load_err(const char *text)
{
    static struct conf_err err;
    struct conf *c;

    memset(&err, 0, sizeof(err));
    c = conf_load_string("edge.conf", text, strlen(text), &err);
    if (c != NULL) {
        conf_unref(c);
        fail_msg("conf accepted, expected an error:\n%s", text);
    }
    return err.msg;
}

static char tmpdir[64];

static void
write_file(const char *rel, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void
make_dir(const char *rel)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    assert_int_equal(mkdir(path, 0700), 0);
}

/* Two rotating buffers: one call may use two paths. */
static const char *
tmp_path(const char *rel)
{
    static char path[2][512];
    static int which;

    which ^= 1;
    snprintf(path[which], sizeof(path[which]), "%s/%s", tmpdir, rel);
    return path[which];
}

static int
setup_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/conf_test.XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown_tmpdir(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- lexer and tree ------------------------------------------------------------------------- */

static struct conf_tree *
tree(const char *text)
{
    struct conf_err err = {{0}};
    struct conf_tree *t = conf_tree_parse_string("t.conf", text, strlen(text), &err);

    if (t == NULL)
        fail_msg("tree refused: %s", err.msg);
    return t;
}

static void
test_lexer_tokens(void **state)
{
    struct conf_tree *t;
    const struct conf_node *root, *n;

    (void)state;
    t = tree("# comment\n"
             "alpha 1 two;   # trailing comment\n"
             "\tblock x {\n"
             "  inner \"q s\" 'single';\n"
             "  empty {}\n"
             "}\n"
             "tight{a;}last;");
    root = conf_tree_root(t);
    assert_int_equal(root->nchildren, 4);
    n = &root->children[0];
    assert_string_equal(n->name, "alpha");
    assert_int_equal(n->pos.line, 2);
    assert_int_equal(n->pos.col, 1);
    assert_string_equal(n->pos.file, "t.conf");
    assert_int_equal(n->nargs, 2);
    assert_string_equal(n->args[0].s, "1");
    assert_int_equal(n->args[0].pos.col, 7);
    assert_string_equal(n->args[1].s, "two");
    assert_int_equal(n->args[1].len, 3);
    assert_false(n->args[1].quoted);
    assert_false(n->block);

    n = &root->children[1];
    assert_string_equal(n->name, "block");
    assert_int_equal(n->pos.line, 3);
    assert_int_equal(n->pos.col, 2); /* a tab is one column */
    assert_true(n->block);
    assert_int_equal(n->nchildren, 2);
    assert_string_equal(n->children[0].name, "inner");
    assert_string_equal(n->children[0].args[0].s, "q s");
    assert_true(n->children[0].args[0].quoted);
    assert_string_equal(n->children[0].args[1].s, "single");
    assert_int_equal(n->children[0].args[1].pos.line, 4);
    assert_int_equal(n->children[0].args[1].pos.col, 15);
    assert_true(n->children[1].block);
    assert_int_equal(n->children[1].nchildren, 0);

    n = &root->children[2];
    assert_string_equal(n->name, "tight");
    assert_true(n->block);
    assert_int_equal(n->nchildren, 1);
    assert_string_equal(n->children[0].name, "a");
    assert_string_equal(root->children[3].name, "last");
    conf_tree_free(t);
}

static void
test_lexer_escapes(void **state)
{
    struct conf_tree *t;
    const struct conf_node *n;

    (void)state;
    t = tree("d \"a\\\"b\" \"\\n\\t\\r\" \"\\\\\" \"\\$x\" \"\\x41\\x7e\" \"\\.png$\" "
             "'it\\'s' 'a\\\\b' 'raw\\n' \"multi\nline\" a\\.b$ \"\";");
    n = &conf_tree_root(t)->children[0];
    assert_int_equal(n->nargs, 12);
    assert_string_equal(n->args[0].s, "a\"b");
    assert_string_equal(n->args[1].s, "\n\t\r");
    assert_string_equal(n->args[2].s, "\\");
    assert_string_equal(n->args[3].s, "$x");
    assert_string_equal(n->args[4].s, "A~");
    assert_string_equal(n->args[5].s, "\\.png$"); /* unknown escapes kept for regexes */
    assert_string_equal(n->args[6].s, "it's");
    assert_string_equal(n->args[7].s, "a\\b");
    assert_string_equal(n->args[8].s, "raw\\n"); /* no escapes in single quotes */
    assert_string_equal(n->args[9].s, "multi\nline");
    assert_string_equal(n->args[10].s, "a\\.b$"); /* bare words keep backslashes */
    assert_string_equal(n->args[11].s, "");
    assert_int_equal(n->args[11].len, 0);
    assert_true(n->args[11].quoted);
    conf_tree_free(t);
}

static void
test_lexer_env(void **state)
{
    struct conf_tree *t;
    const struct conf_node *n;

    (void)state;
    setenv("EDGE_T_PORT", "8081", 1);
    setenv("EDGE_T_EMPTY", "", 1);
    setenv("EDGE_T_SPACE", "a b;c", 1);
    t = tree("listen ${EDGE_T_PORT} x${EDGE_T_PORT}y \"p=${EDGE_T_PORT}\" '${EDGE_T_PORT}' "
             "\"\\${EDGE_T_PORT}\" ${EDGE_T_EMPTY} ${EDGE_T_SPACE} $x $;");
    n = &conf_tree_root(t)->children[0];
    assert_int_equal(n->nargs, 9);
    assert_string_equal(n->args[0].s, "8081");
    assert_string_equal(n->args[1].s, "x8081y");
    assert_string_equal(n->args[2].s, "p=8081");
    assert_string_equal(n->args[3].s, "${EDGE_T_PORT}"); /* none in single quotes */
    assert_string_equal(n->args[4].s, "${EDGE_T_PORT}");
    assert_string_equal(n->args[5].s, "");
    assert_string_equal(n->args[6].s, "a b;c"); /* a value is never re-lexed */
    assert_string_equal(n->args[7].s, "$x");
    assert_string_equal(n->args[8].s, "$");
    conf_tree_free(t);

    /* substitution reaches typed values */
    {
        struct conf *c = load("listen ${EDGE_T_PORT};");
        assert_string_equal(c->listens[0].addr.text, "*:8081");
        conf_unref(c);
    }
}

/* ---- values -------------------------------------------------------------------------------- */

static void
test_values(void **state)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t ms;
    } durs[] = {
        {"500ms", 0, 500},
        {"30s", 0, 30000},
        {"5m", 0, 300000},
        {"1h", 0, 3600000},
        {"7d", 0, 604800000},
        {"1m30s", 0, 90000},
        {"1h1m1s1ms", 0, 3661001},
        {"10", 0, 10000},
        {"0", 0, 0},
        {"0s", 0, 0},
        {"", -1, 0},
        {"s", -1, 0},
        {"5x", -1, 0},
        {"5 s", -1, 0},
        {"-1s", -1, 0},
        {"1m30", -1, 0},
        {"1.5s", -1, 0},
        {"18446744073709551615ms", 0, UINT64_MAX},
        {"18446744073709551616ms", -1, 0},
        {"99999999999999999d", -1, 0},
        {"18446744073709551615ms1ms", -1, 0},
    };
    static const struct {
        const char *s;
        int rc;
        uint64_t bytes;
    } sizes[] = {
        {"512", 0, 512},
        {"64k", 0, 65536},
        {"64K", 0, 65536},
        {"10m", 0, 10485760},
        {"2g", 0, 2147483648ull},
        {"0", 0, 0},
        {"", -1, 0},
        {"k", -1, 0},
        {"10mb", -1, 0},
        {"10t", -1, 0},
        {"1.5m", -1, 0},
        {"17179869183g", 0, 17179869183ull << 30},
        {"17179869183G", 0, 17179869183ull << 30},
        {"17179869184g", -1, 0}, /* 2^34 GiB = 2^64 bytes overflows */
        {"99999999999999999999", -1, 0},
    };
    struct conf_arg a = {.pos = {"x.conf", 4, 9}};
    struct conf_err err;
    uint64_t v;
    bool f;
    size_t i;
    const char *key, *val;
    size_t klen;

    (void)state;
    for (i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
        v = 12345;
        assert_int_equal(conf_duration_from_str(durs[i].s, strlen(durs[i].s), &v), durs[i].rc);
        if (durs[i].rc == 0 && v != durs[i].ms)
            fail_msg("duration '%s' = %llu", durs[i].s, (unsigned long long)v);
    }
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        v = 12345;
        assert_int_equal(conf_size_from_str(sizes[i].s, strlen(sizes[i].s), &v), sizes[i].rc);
        if (sizes[i].rc == 0 && v != sizes[i].bytes)
            fail_msg("size '%s' = %llu", sizes[i].s, (unsigned long long)v);
    }

    a.s = "5x";
    a.len = 2;
    assert_int_equal(conf_parse_duration(&a, "send_timeout", &v, &err), -1);
    assert_string_equal(err.msg, "x.conf:4:9: 'send_timeout' expects a duration like 500ms, 30s, "
                                 "5m, 1h or 7d, not '5x'");
    assert_int_equal(conf_parse_size(&a, "max_body_size", &v, &err), -1);
    assert_string_equal(err.msg, "x.conf:4:9: 'max_body_size' expects a size like 512, 64k, 10m "
                                 "or 2g, not '5x'");
    assert_int_equal(conf_parse_uint(&a, "retries", 0, 9, &v, &err), -1);
    assert_string_equal(err.msg, "x.conf:4:9: 'retries' expects a whole number, not '5x'");
    a.s = "10";
    a.len = 2;
    assert_int_equal(conf_parse_uint(&a, "retries", 0, 9, &v, &err), -1);
    assert_string_equal(err.msg, "x.conf:4:9: 'retries' expects a number from 0 to 9, not 10");
    assert_int_equal(conf_parse_uint(&a, "retries", 0, 10, &v, &err), 0);
    assert_int_equal(v, 10);
    assert_int_equal(conf_parse_flag(&a, "gzip", &f, &err), -1);
    assert_string_equal(err.msg, "x.conf:4:9: 'gzip' expects 'on' or 'off', not '10'");
    a.s = "on";
    a.len = 2;
    assert_int_equal(conf_parse_flag(&a, "gzip", &f, &err), 0);
    assert_true(f);
    a.s = "off";
    a.len = 3;
    assert_int_equal(conf_parse_flag(&a, "gzip", &f, &err), 0);
    assert_false(f);
    a.s = "ttl=5s=x";
    a.len = 8;
    assert_true(conf_arg_kv(&a, &key, &klen, &val));
    assert_int_equal(klen, 3);
    assert_string_equal(val, "5s=x");
    a.s = "=5";
    a.len = 2;
    assert_false(conf_arg_kv(&a, &key, &klen, &val));
    a.s = "plain";
    a.len = 5;
    assert_false(conf_arg_kv(&a, &key, &klen, &val));
}

/* ---- errors --------------------------------------------------------------------------------- */

#define O_APP "origin app { server 127.0.0.1:9000; }\n"

static const struct {
    const char *text;
    const char *msg;
} error_cases[] = {
    /* syntax */
    {"workers 4", "edge.conf:1:10: unexpected end of file (expected ';' or '{' after 'workers')"},
    {"site * {\n  route / { return 200; }\n",
     "edge.conf:3:1: unexpected end of file (expected '}' to close 'site' from line 1)"},
    {"workers 4;\n}", "edge.conf:2:1: unexpected '}' (no block is open)"},
    {"workers 4;;", "edge.conf:1:11: unexpected ';' (expected a directive name)"},
    {"{ }", "edge.conf:1:1: unexpected '{' (expected a directive name)"},
    {"site * {\n  workers 4\n}", "edge.conf:3:1: expected ';' or '{' after 'workers'"},
    {"pid \"abc;", "edge.conf:1:5: unterminated string (expected a closing \")"},
    {"pid 'abc;", "edge.conf:1:5: unterminated string (expected a closing ')"},
    {"pid \"abc\\", "edge.conf:1:5: unterminated string (expected a closing \")"},
    {"pid \"a\\x4\";", "edge.conf:1:7: bad escape '\\x' (expected two hex digits)"},
    {"pid \"a\\x00\";", "edge.conf:1:7: '\\x00' is not allowed in a string"},
    {"pid \"a\"b;", "edge.conf:1:8: unexpected 'b' after a quoted string (expected a space, ';' "
                    "or '{')"},
    {"pid a\"b\";", "edge.conf:1:6: unexpected quote inside a word (quote the whole word)"},
    {"pid a\001b;", "edge.conf:1:6: unexpected control character 0x01"},
    {"pid \"a\001b\";", "edge.conf:1:7: unexpected control character 0x01"},
    {"\001", "edge.conf:1:1: unexpected control character 0x01"},
    {"pid ${EDGE_T_UNSET_VAR};",
     "edge.conf:1:5: environment variable 'EDGE_T_UNSET_VAR' is not set"},
    {"pid \"x ${EDGE_T_UNSET_VAR}\";",
     "edge.conf:1:8: environment variable 'EDGE_T_UNSET_VAR' is not set"},
    {"pid ${};", "edge.conf:1:5: empty variable name in '${}'"},
    {"pid ${A-B};",
     "edge.conf:1:5: expected '}' to close '${' (variable names are letters, digits and '_')"},
    {"pid ${AB", "edge.conf:1:5: expected '}' to close '${' (variable names are letters, digits "
                 "and '_')"},
    {"include;", "edge.conf:1:1: 'include' expects a file name or glob pattern"},
    {"include a b;", "edge.conf:1:1: 'include' expects a file name or glob pattern"},
    {"include \"\";", "edge.conf:1:1: 'include' expects a file name or glob pattern"},
    {"include a { }", "edge.conf:1:1: 'include' does not take a { } block"},
    {"include /nonexistent/edge-x.conf;",
     "edge.conf:1:1: cannot open included file '/nonexistent/edge-x.conf': No such file or "
     "directory"},
    {"include /;", "edge.conf:1:1: included file '/' is not a regular file"},
    /* registry */
    {"workers 1;\nlisten 8080;\n  rout / { }",
     "edge.conf:3:3: unknown directive 'rout' (did you mean 'route'?)"},
    {"wrokers 2;", "edge.conf:1:1: unknown directive 'wrokers' (did you mean 'workers'?)"},
    {"includ x;", "edge.conf:1:1: unknown directive 'includ' (did you mean 'include'?)"},
    {"frobnicate 2;", "edge.conf:1:1: unknown directive 'frobnicate'"},
    {"xy 2;", "edge.conf:1:1: unknown directive 'xy'"},
    {"server 127.0.0.1:9000;",
     "edge.conf:1:1: 'server' is not allowed here (it belongs in an 'origin' block)"},
    {"route / { }", "edge.conf:1:1: 'route' is not allowed here (it belongs in a 'site' block)"},
    {"site * { origin app; }", "edge.conf:1:10: 'origin' is not allowed here (it belongs at the "
                               "top level or in a 'route' block)"},
    {"site * { route / { workers 2; } }",
     "edge.conf:1:20: 'workers' is not allowed here (it belongs at the top level)"},
    {"origin app;", "edge.conf:1:1: 'origin' expects a { } block"},
    {"workers 4 { }", "edge.conf:1:1: 'workers' does not take a { } block (expected ';')"},
    {"\nlisten;", "edge.conf:2:1: 'listen' expects an address or port"},
    {"listen 1 2 3 4 5 6;", "edge.conf:1:1: 'listen' expects an address or port"},
    {"workers;", "edge.conf:1:1: 'workers' expects a number of threads or 'auto'"},
    {"origin { }", "edge.conf:1:1: 'origin' expects a name and a { } block"},
    {"site { }", "edge.conf:1:1: 'site' expects host names and a { } block"},
    {"workers 1;\nworkers 2;", "edge.conf:2:1: 'workers' is duplicate (first set at edge.conf:1)"},
    /* main */
    {"workers x;", "edge.conf:1:9: 'workers' expects a number or 'auto', not 'x'"},
    {"workers 0;", "edge.conf:1:9: 'workers' expects a number from 1 to 1024, not 0"},
    {"listen foo;", "edge.conf:1:8: 'listen' expects an address or port like 8080, *:8080, "
                    "127.0.0.1:8080, [::1]:8080 or localhost:8080, not 'foo'"},
    {"listen example.com:80;", "edge.conf:1:8: 'listen' expects an address or port like 8080, "
                               "*:8080, 127.0.0.1:8080, [::1]:8080 or localhost:8080, not "
                               "'example.com:80'"},
    {"listen [::1];", "edge.conf:1:8: 'listen' expects an address or port like 8080, *:8080, "
                      "127.0.0.1:8080, [::1]:8080 or localhost:8080, not '[::1]'"},
    {"listen 70000;", "edge.conf:1:8: 'listen' port must be from 1 to 65535 in '70000'"},
    {"listen 0;", "edge.conf:1:8: 'listen' port must be from 1 to 65535 in '0'"},
    {"listen *:;", "edge.conf:1:8: 'listen' port must be from 1 to 65535 in '*:'"},
    {"listen 8080 tsl;", "edge.conf:1:13: 'listen': unknown option 'tsl' (expected tls, h2, "
                         "default or backlog=N)"},
    {"listen 8080 backlog=0;",
     "edge.conf:1:13: 'listen backlog=' expects a number from 1 to 65535, not 0"},
    {"listen 8080;\nlisten *:8080 tls;",
     "edge.conf:2:8: duplicate listen address '*:8080' (first at edge.conf:1)"},
    {"listen localhost:80;\nlisten 127.0.0.1:80;",
     "edge.conf:2:8: duplicate listen address '127.0.0.1:80' (first at edge.conf:1)"},
    {"admin nowhere;", "edge.conf:1:7: 'admin' expects an address or port like 8080, *:8080, "
                       "127.0.0.1:8080, [::1]:8080 or localhost:8080, not 'nowhere'"},
    {"resolver dns.google;", "edge.conf:1:10: 'resolver' expects 'system' or IP addresses with "
                             "an optional :PORT (names cannot be resolved yet), not 'dns.google'"},
    {"resolver 1.1.1.1:0;", "edge.conf:1:10: 'resolver' port must be from 1 to 65535 in "
                            "'1.1.1.1:0'"},
    {"resolver system retries=2;",
     "edge.conf:1:17: 'resolver': unknown option 'retries=2' (expected timeout=, attempts=, "
     "ttl_min=, ttl_max=, negative_ttl= or stale_ttl=)"},
    {"resolver =1.2.3.4;", "edge.conf:1:10: 'resolver' expects 'system' or IP addresses with an "
                           "optional :PORT (names cannot be resolved yet), not '=1.2.3.4'"},
    {"resolver 1.1.1.1 system;",
     "edge.conf:1:18: 'resolver': 'system' cannot be mixed with addresses"},
    {"resolver timeout=1s;", "edge.conf:1:1: 'resolver' expects 'system' or server addresses"},
    {"resolver system ttl_min=2h;", "edge.conf:1:1: 'resolver': ttl_min= is larger than ttl_max="},
    {"resolver system timeout=fast;",
     "edge.conf:1:17: 'resolver timeout=' expects a duration like 500ms, 30s, 5m, 1h or 7d, not "
     "'fast'"},
    {"resolver system attempts=0;",
     "edge.conf:1:17: 'resolver attempts=' expects a number from 1 to 16, not 0"},
    {"access_log \"\";", "edge.conf:1:12: 'access_log' expects off, stdout or a file path"},
    {"pid '';", "edge.conf:1:5: 'pid' expects a file path"},
    {"max_body_size 10x;",
     "edge.conf:1:15: 'max_body_size' expects a size like 512, 64k, 10m or 2g, not '10x'"},
    {"max_header_size 99999999999999999999;",
     "edge.conf:1:17: 'max_header_size' expects a size like 512, 64k, 10m or 2g, not "
     "'99999999999999999999'"},
    {"keepalive_timeout 1y;", "edge.conf:1:19: 'keepalive_timeout' expects a duration like "
                              "500ms, 30s, 5m, 1h or 7d, not '1y'"},
    {"max_headers 0;", "edge.conf:1:13: 'max_headers' expects a number from 1 to 65535, not 0"},
    {"max_connections lots;", "edge.conf:1:17: 'max_connections' expects a whole number, not "
                              "'lots'"},
    {"http2_max_concurrent_streams 0;", "edge.conf:1:30: 'http2_max_concurrent_streams' expects "
                                        "a number from 1 to 65535, not 0"},
    {"http2_max_resets 200;", "edge.conf:1:18: 'http2_max_resets' expects COUNT/WINDOW like "
                              "200/10s (resets per connection within the window), not '200'"},
    {"http2_max_resets /10s;", "edge.conf:1:18: 'http2_max_resets' expects COUNT/WINDOW like "
                               "200/10s (resets per connection within the window), not '/10s'"},
    {"http2_max_resets 0/10s;",
     "edge.conf:1:18: 'http2_max_resets' expects a number from 1 to 1000000, not 0"},
    {"http2_max_resets x/10s;", "edge.conf:1:18: 'http2_max_resets' expects a whole number, not "
                                "'x'"},
    {"http2_max_resets 200/10q;", "edge.conf:1:22: 'http2_max_resets' expects a duration like "
                                  "500ms, 30s, 5m, 1h or 7d, not '10q'"},
    {"http2_max_resets 200/;", "edge.conf:1:22: 'http2_max_resets' expects a duration like "
                               "500ms, 30s, 5m, 1h or 7d, not ''"},
    {"http2_max_resets 200/0s;",
     "edge.conf:1:18: 'http2_max_resets': the window must be longer than 0 in '200/0s'"},
    {"http2_max_resets 1/1s;\nhttp2_max_resets 2/1s;",
     "edge.conf:2:1: 'http2_max_resets' is duplicate (first set at edge.conf:1)"},
    {"http2_hpack_table_size 65537;",
     "edge.conf:1:24: 'http2_hpack_table_size' must be at most 64k, not '65537'"},
    {"http2_hpack_table_size 4q;", "edge.conf:1:24: 'http2_hpack_table_size' expects a size like "
                                   "512, 64k, 10m or 2g, not '4q'"},
    {"site * { route / { http2_max_concurrent_streams 5; return 200; } }",
     "edge.conf:1:20: 'http2_max_concurrent_streams' is not allowed here (it belongs at the top "
     "level)"},
    /* origins */
    {"origin \"a b\" { server x:1; }",
     "edge.conf:1:8: 'origin' name 'a b' may only use letters, digits, '_', '-' and '.'"},
    {"origin app {\n  server 127.0.0.1:9000;\n}\n\norigin app { server 127.0.0.1:9001; }",
     "edge.conf:5:1: duplicate origin 'app' (first defined at edge.conf:1)"},
    {"origin app { keepalive 4; }", "edge.conf:1:1: origin 'app' has no 'server'"},
    {"origin app { server a:1 backup; server b:2 backup; }",
     "edge.conf:1:1: origin 'app' has only backup servers"},
    {"origin app { server example.com; }",
     "edge.conf:1:21: 'server' expects HOST:PORT (the port is required), not 'example.com'"},
    {"origin app { server example.com:0; }",
     "edge.conf:1:21: 'server' port must be from 1 to 65535 in 'example.com:0'"},
    {"origin app { server example.com:http; }",
     "edge.conf:1:21: 'server' port must be from 1 to 65535 in 'example.com:http'"},
    {"origin app { server ::1:80; }", "edge.conf:1:21: 'server': write IPv6 addresses in "
                                      "brackets, as [::1]:9000, not '::1:80'"},
    {"origin app { server a_b.example:80; }",
     "edge.conf:1:21: 'server': 'a_b.example' is not a valid host name"},
    {"origin app { server -a.example:80; }",
     "edge.conf:1:21: 'server': '-a.example' is not a valid host name"},
    {"origin app { server a..b:80; }", "edge.conf:1:21: 'server': 'a..b' is not a valid host "
                                       "name"},
    {"origin app { server :80; }", "edge.conf:1:21: 'server': '' is not a valid host name"},
    {"origin app { server [::1]; }", "edge.conf:1:21: 'server' expects HOST:PORT, not '[::1]'"},
    {"origin app { server [zz]:80; }",
     "edge.conf:1:21: 'server': 'zz' is not a valid IPv6 address"},
    {"origin app { server a:80 heavy; }",
     "edge.conf:1:26: 'server': unknown option 'heavy' (expected weight=N or backup)"},
    {"origin app { server a:80 weight=0; }",
     "edge.conf:1:26: 'server weight=' expects a number from 1 to 1000, not 0"},
    {"origin app { server a:80; keepalive -1; }",
     "edge.conf:1:37: 'keepalive' expects a whole number, not '-1'"},
    {"origin app { server a:80; retries 101; }",
     "edge.conf:1:35: 'retries' expects a number from 0 to 100, not 101"},
    {"origin app { server a:80; connect_timeout 2; connect_timeout 3; }",
     "edge.conf:1:46: 'connect_timeout' is duplicate (first set at edge.conf:1)"},
    /* sites and routes */
    {"site exa_mple.com { }", "edge.conf:1:6: 'site': 'exa_mple.com' is not a valid host name "
                              "(expected NAME, *.SUFFIX or *)"},
    {"site *example.com { }", "edge.conf:1:6: 'site': '*example.com' is not a valid host name "
                              "(expected NAME, *.SUFFIX or *)"},
    {"site a.com { }\nsite b.com A.COM. { }",
     "edge.conf:2:12: host 'a.com' is already served by the site at edge.conf:1"},
    {"site * { }\nsite * { }", "edge.conf:2:6: host '*' is already served by the site at "
                               "edge.conf:1"},
    {"site a.com a.com { }",
     "edge.conf:1:12: host 'a.com' is already served by the site at edge.conf:1"},
    {O_APP "site * { route == /x { origin app; } }",
     "edge.conf:2:16: 'route': unknown match type '==' (expected =, ~, ~* or ^~)"},
    {O_APP "site * { route x { origin app; } }",
     "edge.conf:2:16: 'route' path must start with '/', not 'x'"},
    {O_APP "site * { route = x { origin app; } }",
     "edge.conf:2:18: 'route' path must start with '/', not 'x'"},
    {O_APP "site * {\n  route /a { origin app; }\n  route /a { origin app; }\n}",
     "edge.conf:4:3: duplicate route '/a' (first defined at edge.conf:3)"},
    {O_APP "site * {\n  route /a { origin app; }\n  route ^~ /a { origin app; }\n}",
     "edge.conf:4:3: duplicate route '^~ /a' (first defined at edge.conf:3)"},
    {O_APP "site * {\n  route = /a { origin app; }\n  route = /a { origin app; }\n}",
     "edge.conf:4:3: duplicate route '= /a' (first defined at edge.conf:3)"},
    {O_APP "site * { route ~ \"(abc\" { origin app; } }",
     "edge.conf:2:18: 'route': bad regex '(abc': missing closing parenthesis (at offset 4)"},
    {O_APP "site * { route ~* \"a{2,1}\" { origin app; } }",
     "edge.conf:2:19: 'route': bad regex 'a{2,1}': numbers out of order in {} quantifier (at "
     "offset 5)"},
    {O_APP "site * {\n  route /x { }\n}", "edge.conf:3:3: route '/x' has no 'origin' or 'return'"},
    {O_APP "site * {\n  route ~ ^/x { max_body_size 1k; }\n}",
     "edge.conf:3:3: route '~ ^/x' has no 'origin' or 'return'"},
    {O_APP "site * {\n  route /x { origin app; return 200; }\n}",
     "edge.conf:3:3: route '/x' has both 'origin' and 'return'"},
    {O_APP "site * { route / { origin ap; } }",
     "edge.conf:2:27: unknown origin 'ap' (did you mean 'app'?)"},
    {O_APP "site * { route / { origin backend; } }", "edge.conf:2:27: unknown origin 'backend'"},
    {"site * { route / { return 700; } }",
     "edge.conf:1:27: 'return' expects a number from 200 to 599, not 700"},
    {"site * { route / { return 199; } }",
     "edge.conf:1:27: 'return' expects a number from 200 to 599, not 199"},
    {"site * { route / { return ok; } }",
     "edge.conf:1:27: 'return' expects a whole number, not 'ok'"},
    {"site * { route / { return; } }",
     "edge.conf:1:20: 'return' expects a status code and an optional body"},
    {"site * { route / { return 200 a b; } }",
     "edge.conf:1:20: 'return' expects a status code and an optional body"},
    {"site * { route { return 200; } }", "edge.conf:1:10: 'route' expects a path (after =, ~, ~* "
                                         "or ^~ if any) and a { } block"},
    {"site * { route / { return 200; return 204; } }",
     "edge.conf:1:32: 'return' is duplicate (first set at edge.conf:1)"},
    {"site * { max_body_size 1q; route / { return 200; } }",
     "edge.conf:1:24: 'max_body_size' expects a size like 512, 64k, 10m or 2g, not '1q'"},
    {"site * { route / { return 200; max_body_size big; } }",
     "edge.conf:1:46: 'max_body_size' expects a size like 512, 64k, 10m or 2g, not 'big'"},
};

static void
test_errors(void **state)
{
    size_t i, bad = 0;

    (void)state;
    unsetenv("EDGE_T_UNSET_VAR");
    for (i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const char *got = load_err(error_cases[i].text);
        if (strcmp(got, error_cases[i].msg) != 0) {
            print_error("case %zu:\n--- conf:\n%s\n--- want: %s\n---  got: %s\n", i,
                        error_cases[i].text, error_cases[i].msg, got);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void
test_errors_limits(void **state)
{
    char *text, *big;
    const char *got;
    struct conf_err err;
    size_t i, n;

    (void)state;
    /* 33 nested blocks */
    text = calloc(1, 4 * 40 + 1);
    assert_non_null(text);
    for (i = 0; i < 33; i++)
        memcpy(text + 4 * i, "a { ", 4);
    got = load_err(text);
    assert_string_equal(got, "edge.conf:1:131: blocks nested more than 32 deep");
    free(text);

    /* 32 nested blocks parse (and then fail on the unknown name, not the depth) */
    text = calloc(1, 4 * 32 + 2 * 32 + 1);
    assert_non_null(text);
    for (i = 0; i < 32; i++)
        memcpy(text + 4 * i, "a { ", 4);
    for (i = 0; i < 32; i++)
        memcpy(text + 128 + 2 * i, "} ", 2);
    assert_string_equal(load_err(text), "edge.conf:1:1: unknown directive 'a'");
    free(text);

    /* long variable names and words */
    n = 200;
    text = calloc(1, n + 16);
    assert_non_null(text);
    memcpy(text, "pid ${", 6);
    memset(text + 6, 'A', 129);
    memcpy(text + 6 + 129, "};", 2);
    assert_string_equal(load_err(text), "edge.conf:1:5: variable name is longer than 128 "
                                        "characters");
    free(text);
    big = malloc(600 * 1024 + 1);
    assert_non_null(big);
    memset(big, 'x', 600 * 1024);
    big[600 * 1024] = '\0';
    setenv("EDGE_T_BIG", big, 1);
    free(big);
    assert_string_equal(load_err("pid ${EDGE_T_BIG}${EDGE_T_BIG};"),
                        "edge.conf:1:5: word is longer than 1048576 bytes");
    unsetenv("EDGE_T_BIG");

    /* a string over 16 MiB */
    n = ((size_t)16 << 20) + 1;
    text = malloc(n);
    assert_non_null(text);
    memset(text, ' ', n);
    assert_null(conf_load_string("edge.conf", text, n, &err));
    assert_string_equal(err.msg, "edge.conf: file is larger than 16 MiB");
    free(text);

    /* text without a name cannot include */
    assert_null(conf_load_string(NULL, "include x.conf;", 15, &err));
    assert_string_equal(err.msg, "<string>:1:1: 'include' is not allowed in a conf without a file "
                                 "name");
    /* NUL bytes are control characters */
    assert_null(conf_load_string(NULL, "pid a\0b;", 8, &err));
    assert_string_equal(err.msg, "<string>:1:6: unexpected control character 0x00");

    /* top-level files */
    assert_null(conf_load("/nonexistent/edge.conf", &err));
    assert_string_equal(err.msg, "/nonexistent/edge.conf: cannot open: No such file or directory");
    assert_null(conf_load("/", &err));
    assert_string_equal(err.msg, "/: not a regular file");
}

/* ---- include --------------------------------------------------------------------------------- */

static void
test_include(void **state)
{
    struct conf_err err;
    struct conf *c;
    char text[4096];

    (void)state;
    make_dir("inc");
    make_dir("inc/sites");
    make_dir("inc/empty");
    write_file("inc/main.conf", "listen 8080;\n"
                                "include origins.conf;\n"
                                "include sites/*.conf;\n"
                                "include empty/*.conf;\n"
                                "site * { include routes.inc; }\n");
    write_file("inc/origins.conf", "origin app { server 127.0.0.1:9000; }\n");
    /* sorted: a before b whatever the creation order */
    write_file("inc/sites/b.conf", "site b.example { route / { origin app; } }\n");
    write_file("inc/sites/a.conf", "site a.example { route / { origin app; } }\n"
                                   "include ../more/*.conf;\n");
    make_dir("inc/more");
    write_file("inc/more/c.conf", "site c.example { route / { origin app; } }\n");
    write_file("inc/routes.inc", "route / { return 204; }\n");
    c = conf_load(tmp_path("inc/main.conf"), &err);
    if (c == NULL)
        fail_msg("%s", err.msg);
    assert_int_equal(c->nsites, 4);
    assert_string_equal(c->sites[0].hosts[0], "a.example");
    assert_string_equal(c->sites[1].hosts[0], "c.example");
    assert_string_equal(c->sites[2].hosts[0], "b.example");
    assert_string_equal(c->sites[3].hosts[0], "*");
    assert_int_equal(c->sites[3].routes[0].return_status, 204);
    assert_non_null(strstr(c->sites[3].routes[0].pos.file, "inc/routes.inc"));
    assert_non_null(strstr(c->sites[1].pos.file, "inc/sites/../more/c.conf"));
    assert_ptr_equal(c->sites[0].routes[0].origin, &c->origins[0]);
    conf_unref(c);

    /* errors inside an included file carry that file's name */
    write_file("inc/bad.conf", "\n  wrokers 2;\n");
    snprintf(text, sizeof(text), "include %s;", tmp_path("inc/bad.conf"));
    assert_null(conf_load_string("edge.conf", text, strlen(text), &err));
    snprintf(text, sizeof(text), "%s:2:3: unknown directive 'wrokers' (did you mean 'workers'?)",
             tmp_path("inc/bad.conf"));
    assert_string_equal(err.msg, text);

    /* a braces never spans files */
    write_file("inc/open.conf", "site * {\n");
    write_file("inc/close.conf", "include open.conf;\n}\n");
    assert_null(conf_load(tmp_path("inc/close.conf"), &err));
    snprintf(text, sizeof(text),
             "%s:2:1: unexpected end of file (expected '}' to close 'site' from line 1)",
             tmp_path("inc/open.conf"));
    assert_string_equal(err.msg, text);

    /* a plain path that does not exist is an error, relative to the including file */
    write_file("inc/missing.conf", "include nothere.conf;\n");
    assert_null(conf_load(tmp_path("inc/missing.conf"), &err));
    snprintf(text, sizeof(text),
             "%s:1:1: cannot open included file '%s': No such file or directory",
             tmp_path("inc/missing.conf"), tmp_path("inc/nothere.conf"));
    assert_string_equal(err.msg, text);

    /* cycles stop at the depth limit, naming the file */
    write_file("inc/loop.conf", "include loop.conf;\n");
    assert_null(conf_load(tmp_path("inc/loop.conf"), &err));
    snprintf(text, sizeof(text),
             "%s:1:1: includes nested more than 16 deep at '%s' (is there an include cycle?)",
             tmp_path("inc/loop.conf"), tmp_path("inc/loop.conf"));
    assert_string_equal(err.msg, text);

    /* relative to the directory of a string conf's name */
    snprintf(text, sizeof(text), "%s", tmp_path("inc/x.conf"));
    c = conf_load_string(text, "include origins.conf;", 21, &err);
    if (c == NULL)
        fail_msg("%s", err.msg);
    assert_int_equal(c->norigins, 1);
    conf_unref(c);
}

static void
test_include_too_big(void **state)
{
    struct conf_err err;
    char text[4096];
    int fd;

    (void)state;
    make_dir("big");
    fd = open(tmp_path("big/huge.conf"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, ((off_t)16 << 20) + 1), 0);
    close(fd);
    write_file("big/main.conf", "include huge.conf;\n");
    assert_null(conf_load(tmp_path("big/main.conf"), &err));
    snprintf(text, sizeof(text), "%s:1:1: included file '%s' is larger than 16 MiB",
             tmp_path("big/main.conf"), tmp_path("big/huge.conf"));
    assert_string_equal(err.msg, text);
    assert_null(conf_load(tmp_path("big/huge.conf"), &err));
    snprintf(text, sizeof(text), "%s: file is larger than 16 MiB", tmp_path("big/huge.conf"));
    assert_string_equal(err.msg, text);

    /* 15 MiB of blanks, included five times: over the 64 MiB total */
    {
        FILE *f = fopen(tmp_path("big/blank.conf"), "w");
        char *blank = malloc((size_t)15 << 20);
        assert_non_null(f);
        assert_non_null(blank);
        memset(blank, ' ', (size_t)15 << 20);
        assert_int_equal(fwrite(blank, 1, (size_t)15 << 20, f), (size_t)15 << 20);
        fclose(f);
        free(blank);
    }
    write_file("big/total.conf", "include blank.conf; include blank.conf; include blank.conf;\n"
                                 "include blank.conf; include blank.conf;\n");
    assert_null(conf_load(tmp_path("big/total.conf"), &err));
    snprintf(text, sizeof(text), "%s:1:1: conf is larger than 64 MiB in total (with includes)",
             tmp_path("big/blank.conf"));
    assert_string_equal(err.msg, text);
}

/* ---- snapshot content ------------------------------------------------------------------------ */

static void
test_defaults(void **state)
{
    struct conf *c;
    const struct conf_origin *o;
    const struct conf_route *r;

    (void)state;
    c = load("origin app { server app.internal:9000; }\n"
             "site * { route / { origin app; } }\n");
    assert_string_equal(c->path, "edge.conf");
    assert_int_equal(c->workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    assert_int_equal(c->nlistens, 0);
    assert_null(c->admin);
    assert_true(c->resolver.system);
    assert_int_equal(c->resolver.nservers, 0);
    assert_int_equal(c->resolver.timeout_ms, 2000);
    assert_int_equal(c->resolver.attempts, 2);
    assert_int_equal(c->resolver.ttl_min_ms, 1000);
    assert_int_equal(c->resolver.ttl_max_ms, 3600000);
    assert_int_equal(c->resolver.negative_ttl_ms, 5000);
    assert_int_equal(c->resolver.stale_ttl_ms, 3600000);
    assert_int_equal(c->limits.max_header_size, 16384);
    assert_int_equal(c->limits.max_headers, 100);
    assert_int_equal(c->limits.max_uri_length, 8192);
    assert_int_equal(c->limits.max_body_size, 100 << 20);
    assert_int_equal(c->limits.client_header_timeout_ms, 10000);
    assert_int_equal(c->limits.client_body_timeout_ms, 30000);
    assert_int_equal(c->limits.keepalive_timeout_ms, 60000);
    assert_int_equal(c->limits.send_timeout_ms, 60000);
    assert_int_equal(c->limits.max_connections, 10000);
    assert_int_equal(c->limits.shutdown_timeout_ms, 30000);
    assert_int_equal(c->limits.http2_max_concurrent_streams, 100);
    assert_int_equal(c->limits.http2_max_resets, 200);
    assert_int_equal(c->limits.http2_reset_window_ms, 10000);
    assert_int_equal(c->limits.http2_hpack_table_size, 4096);
    assert_int_equal(c->access_log, CONF_LOG_OFF);
    assert_null(c->access_log_path);
    assert_null(c->pid_file);
    assert_int_equal(c->norigins, 1);
    o = &c->origins[0];
    assert_string_equal(o->name, "app");
    assert_int_equal(o->index, 0);
    assert_int_equal(o->keepalive, 32);
    assert_int_equal(o->connect_timeout_ms, 2000);
    assert_int_equal(o->response_timeout_ms, 30000);
    assert_int_equal(o->idle_timeout_ms, 60000);
    assert_int_equal(o->retries, 1);
    assert_int_equal(o->max_fails, 3);
    assert_int_equal(o->fail_timeout_ms, 10000);
    assert_int_equal(o->nservers, 1);
    assert_string_equal(o->servers[0].host, "app.internal");
    assert_int_equal(o->servers[0].port, 9000);
    assert_false(o->servers[0].is_ip);
    assert_int_equal(o->servers[0].weight, 1);
    assert_false(o->servers[0].backup);
    r = &c->sites[0].routes[0];
    assert_int_equal(r->match, CONF_MATCH_PREFIX);
    assert_string_equal(r->pattern, "/");
    assert_int_equal(r->pattern_len, 1);
    assert_null(r->regex);
    assert_ptr_equal(r->origin, o);
    assert_int_equal(r->return_status, 0);
    assert_null(r->return_body);
    assert_int_equal(r->max_body_size, 100 << 20);
    assert_ptr_equal(conf_origin_find(c, "app", 3), o);
    assert_null(conf_origin_find(c, "ap", 2));
    assert_null(conf_origin_find(c, "appx", 4));
    conf_unref(c);
}

static void
test_main_directives(void **state)
{
    struct conf *c;
    const struct sockaddr_in *in4;
    const struct sockaddr_in6 *in6;
    char ip[INET6_ADDRSTRLEN];

    (void)state;
    c = load("workers 3;\n"
             "listen 8080;\n"
             "listen *:8081 tls h2 default backlog=128;\n"
             "listen 127.0.0.1:8082;\n"
             "listen [::1]:8083 h2;\n"
             "listen LOCALHOST:8084;\n"
             "listen [2001:DB8::0001]:8085;\n"
             "admin [::]:9080;\n"
             "resolver 10.0.0.53 10.0.0.54:5353 [::1] [2001:db8::1]:54 fe80::1 timeout=500ms "
             "attempts=4 ttl_min=0 ttl_max=10m negative_ttl=1s stale_ttl=0;\n"
             "access_log /var/log/edge/access.log;\n"
             "pid \"var/run/edge.pid\";\n"
             "max_header_size 32k; max_headers 50; max_uri_length 4k; max_body_size 1g;\n"
             "client_header_timeout 5s; client_body_timeout 1m; keepalive_timeout 75s;\n"
             "send_timeout 1m30s; max_connections 20000; shutdown_timeout 500ms;\n"
             "http2_max_concurrent_streams 250; http2_max_resets 50/1m30s;\n"
             "http2_hpack_table_size 64k;\n");
    assert_int_equal(c->workers, 3);
    assert_int_equal(c->nlistens, 6);
    assert_string_equal(c->listens[0].addr.text, "*:8080");
    in4 = (const struct sockaddr_in *)&c->listens[0].addr.ss;
    assert_int_equal(in4->sin_family, AF_INET);
    assert_int_equal(ntohs(in4->sin_port), 8080);
    assert_int_equal(in4->sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_equal(c->listens[0].addr.len, sizeof(struct sockaddr_in));
    assert_false(c->listens[0].tls);
    assert_int_equal(c->listens[0].backlog, 511);
    assert_int_equal(c->listens[0].pos.line, 2);
    assert_string_equal(c->listens[1].addr.text, "*:8081");
    assert_true(c->listens[1].tls);
    assert_true(c->listens[1].h2);
    assert_true(c->listens[1].is_default);
    assert_int_equal(c->listens[1].backlog, 128);
    assert_string_equal(c->listens[2].addr.text, "127.0.0.1:8082");
    in4 = (const struct sockaddr_in *)&c->listens[2].addr.ss;
    assert_int_equal(in4->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_string_equal(c->listens[3].addr.text, "[::1]:8083");
    in6 = (const struct sockaddr_in6 *)&c->listens[3].addr.ss;
    assert_int_equal(in6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(in6->sin6_port), 8083);
    assert_int_equal(c->listens[3].addr.len, sizeof(struct sockaddr_in6));
    assert_true(c->listens[3].h2);
    assert_false(c->listens[3].tls);
    assert_string_equal(c->listens[4].addr.text, "127.0.0.1:8084");
    assert_string_equal(c->listens[5].addr.text, "[2001:db8::1]:8085");
    assert_non_null(c->admin);
    assert_string_equal(c->admin->text, "[::]:9080");

    assert_false(c->resolver.system);
    assert_int_equal(c->resolver.nservers, 5);
    assert_string_equal(c->resolver.servers[0].text, "10.0.0.53:53");
    assert_string_equal(c->resolver.servers[1].text, "10.0.0.54:5353");
    assert_string_equal(c->resolver.servers[2].text, "[::1]:53");
    assert_string_equal(c->resolver.servers[3].text, "[2001:db8::1]:54");
    assert_string_equal(c->resolver.servers[4].text, "[fe80::1]:53");
    in6 = (const struct sockaddr_in6 *)&c->resolver.servers[4].ss;
    assert_non_null(inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip)));
    assert_string_equal(ip, "fe80::1");
    assert_int_equal(c->resolver.timeout_ms, 500);
    assert_int_equal(c->resolver.attempts, 4);
    assert_int_equal(c->resolver.ttl_min_ms, 0);
    assert_int_equal(c->resolver.ttl_max_ms, 600000);
    assert_int_equal(c->resolver.negative_ttl_ms, 1000);
    assert_int_equal(c->resolver.stale_ttl_ms, 0);

    assert_int_equal(c->access_log, CONF_LOG_FILE);
    assert_string_equal(c->access_log_path, "/var/log/edge/access.log");
    assert_string_equal(c->pid_file, "var/run/edge.pid");
    assert_int_equal(c->limits.max_header_size, 32768);
    assert_int_equal(c->limits.max_headers, 50);
    assert_int_equal(c->limits.max_uri_length, 4096);
    assert_int_equal(c->limits.max_body_size, 1 << 30);
    assert_int_equal(c->limits.client_header_timeout_ms, 5000);
    assert_int_equal(c->limits.client_body_timeout_ms, 60000);
    assert_int_equal(c->limits.keepalive_timeout_ms, 75000);
    assert_int_equal(c->limits.send_timeout_ms, 90000);
    assert_int_equal(c->limits.max_connections, 20000);
    assert_int_equal(c->limits.shutdown_timeout_ms, 500);
    assert_int_equal(c->limits.http2_max_concurrent_streams, 250);
    assert_int_equal(c->limits.http2_max_resets, 50);
    assert_int_equal(c->limits.http2_reset_window_ms, 90000);
    assert_int_equal(c->limits.http2_hpack_table_size, 65536);
    conf_unref(c);

    c = load("workers auto; access_log stdout;");
    assert_int_equal(c->workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    assert_int_equal(c->access_log, CONF_LOG_STDOUT);
    conf_unref(c);
    c = load("access_log off; resolver system;");
    assert_int_equal(c->access_log, CONF_LOG_OFF);
    assert_true(c->resolver.system);
    conf_unref(c);
}

static void
test_origin_directives(void **state)
{
    struct conf *c;
    const struct conf_origin *o;

    (void)state;
    c = load("site * { route / { origin b; } }\n" /* origins may come after the site */
             "origin a { server 10.0.0.1:80; }\n"
             "origin b {\n"
             "  server 10.0.0.1:8080 weight=5;\n"
             "  server [fe80::1]:81 backup;\n"
             "  server Backend-1.Example.COM.:65535 backup weight=2;\n"
             "  keepalive 0; connect_timeout 500ms; response_timeout 1m; idle_timeout 5s;\n"
             "  retries 0; max_fails 10; fail_timeout 1h;\n"
             "}\n");
    assert_int_equal(c->norigins, 2);
    o = &c->origins[1];
    assert_string_equal(o->name, "b");
    assert_int_equal(o->index, 1);
    assert_int_equal(o->pos.line, 3);
    assert_int_equal(o->nservers, 3);
    assert_string_equal(o->servers[0].host, "10.0.0.1");
    assert_true(o->servers[0].is_ip);
    assert_int_equal(o->servers[0].weight, 5);
    assert_string_equal(o->servers[1].host, "fe80::1");
    assert_int_equal(o->servers[1].port, 81);
    assert_true(o->servers[1].is_ip);
    assert_true(o->servers[1].backup);
    assert_string_equal(o->servers[2].host, "Backend-1.Example.COM.");
    assert_false(o->servers[2].is_ip);
    assert_int_equal(o->servers[2].port, 65535);
    assert_int_equal(o->servers[2].weight, 2);
    assert_true(o->servers[2].backup);
    assert_int_equal(o->keepalive, 0);
    assert_int_equal(o->connect_timeout_ms, 500);
    assert_int_equal(o->response_timeout_ms, 60000);
    assert_int_equal(o->idle_timeout_ms, 5000);
    assert_int_equal(o->retries, 0);
    assert_int_equal(o->max_fails, 10);
    assert_int_equal(o->fail_timeout_ms, 3600000);
    assert_ptr_equal(c->sites[0].routes[0].origin, o);
    conf_unref(c);
}

static void
test_inheritance(void **state)
{
    struct conf *c;

    (void)state;
    c = load("site a.example {\n"
             "  route /r { return 200; max_body_size 5k; }\n"
             "  route /s { return 200; }\n"
             "  max_body_size 2k;\n" /* after the routes: still inherited */
             "}\n"
             "site b.example { route / { return 200 \"body\"; } }\n"
             "max_body_size 1m;\n"); /* main, set last */
    assert_int_equal(c->limits.max_body_size, 1 << 20);
    assert_int_equal(c->sites[0].max_body_size, 2048);
    assert_int_equal(c->sites[0].routes[0].max_body_size, 5120);
    assert_int_equal(c->sites[0].routes[1].max_body_size, 2048);
    assert_int_equal(c->sites[1].max_body_size, 1 << 20);
    assert_int_equal(c->sites[1].routes[0].max_body_size, 1 << 20);
    assert_int_equal(c->sites[1].routes[0].return_status, 200);
    assert_string_equal(c->sites[1].routes[0].return_body, "body");
    assert_int_equal(c->sites[1].routes[0].return_body_len, 4);
    conf_unref(c);

    /* fuzz regression: a site without routes before one with routes (UBSan: offset on NULL) */
    c = load("site a.example { }\nsite * { max_body_size 1k; route / { return 200; } }");
    assert_int_equal(c->sites[0].nroutes, 0);
    assert_int_equal(c->sites[1].routes[0].max_body_size, 1024);
    conf_unref(c);
}

/* ---- matching ------------------------------------------------------------------------------- */

static void
test_site_match(void **state)
{
    static const struct {
        const char *host;
        int site; /* index in c->sites, -1 = none */
    } cases[] = {
        {"example.com", 0},       {"EXAMPLE.com", 0},
        {"example.com:8080", 0},  {"example.com.", 0},
        {"example.com.:443", 0},  {"www.example.com", 0},
        {"a.example.com", 1},     {"A.B.Example.Com", 1},
        {"x.api.example.com", 2}, /* longest suffix wins */
        {"api.example.com", 1},   /* *.api.example.com does not match api.example.com */
        {"other.org", 3},         {"", 3},
        {"[::1]:8080", 3},        {"example.co", 3},
        {"xexample.com", 3},      {"localhost", 4},
        {"LocalHost:80", 4},
    };
    struct conf *c;
    size_t i;

    (void)state;
    c = load("site example.com www.example.com { route / { return 200; } }\n"
             "site *.example.com { route / { return 200; } }\n"
             "site *.api.example.com { route / { return 200; } }\n"
             "site * { route / { return 200; } }\n"
             "site localhost { route / { return 200; } }\n");
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct conf_site *s = conf_site_match(c, cases[i].host, strlen(cases[i].host));
        const struct conf_site *want = cases[i].site < 0 ? NULL : &c->sites[cases[i].site];
        if (s != want)
            fail_msg("host '%s': got site %d, want %d", cases[i].host, s ? (int)(s - c->sites) : -1,
                     cases[i].site);
    }
    /* a too long host still gets the default site */
    {
        char lng[400];
        memset(lng, 'a', sizeof(lng));
        assert_ptr_equal(conf_site_match(c, lng, sizeof(lng)), &c->sites[3]);
    }
    conf_unref(c);

    /* without '*', unknown hosts match nothing */
    c = load("site a.example { route / { return 200; } }");
    assert_null(conf_site_match(c, "b.example", 9));
    assert_ptr_equal(conf_site_match(c, "A.example", 9), &c->sites[0]);
    assert_int_equal(c->sites[0].nhosts, 1);
    conf_unref(c);
    c = load("listen 80;");
    assert_null(conf_site_match(c, "a", 1));
    conf_unref(c);
}

static const char *route_conf =
    "site * {\n"
    "  route / { return 200 root; }\n"                     /* 0 */
    "  route /images/ { return 200 images; }\n"            /* 1 */
    "  route ^~ /static/ { return 200 static; }\n"         /* 2 */
    "  route = /exact { return 200 exact; }\n"             /* 3 */
    "  route ~ \\.php$ { return 200 php; }\n"              /* 4 */
    "  route ~* \"\\.(gif|jpe?g)$\" { return 200 img; }\n" /* 5 */
    "  route ~ ^/images/.*\\.gif$ { return 200 gif2; }\n"  /* 6: shadowed by 5 */
    "  route /exact/ { return 200 exactdir; }\n"           /* 7 */
    "  route = / { return 200 home; }\n"                   /* 8 */
    "  route /api { return 200 api; }\n"                   /* 9 */
    "}\n";

static void
test_route_match(void **state)
{
    static const struct {
        const char *path;
        const char *want; /* return body, NULL = no match */
    } cases[] = {
        {"/", "home"},
        {"/x", "root"},
        {"/exact", "exact"},
        {"/exact/", "exactdir"},
        {"/exactly", "root"},
        {"/images/a.png", "images"},
        {"/images/a.GIF", "img"},    /* regex beats the longest prefix */
        {"/images/a.gif", "img"},    /* first regex in conf order */
        {"/static/a.gif", "static"}, /* ^~ stops regexes */
        {"/static", "root"},
        {"/index.php", "php"},
        {"/index.PHP", "root"}, /* ~ is case-sensitive */
        {"/photo.JpEg", "img"},
        {"/api", "api"},
        {"/api/v1", "api"},
        {"/apix", "api"},
    };
    struct conf *c;
    const struct conf_site *s;
    size_t i;

    (void)state;
    c = load(route_conf);
    s = &c->sites[0];
    assert_int_equal(s->nroutes, 10);
    assert_int_equal(s->routes[2].match, CONF_MATCH_PREFIX_NOREGEX);
    assert_int_equal(s->routes[3].match, CONF_MATCH_EXACT);
    assert_int_equal(s->routes[4].match, CONF_MATCH_REGEX);
    assert_int_equal(s->routes[5].match, CONF_MATCH_REGEX_CI);
    assert_non_null(s->routes[4].regex);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct conf_route *r = conf_route_match(s, cases[i].path, strlen(cases[i].path));
        const char *got = r ? r->return_body : NULL;
        if ((got == NULL) != (cases[i].want == NULL) ||
            (got != NULL && strcmp(got, cases[i].want) != 0))
            fail_msg("path '%s': got '%s', want '%s'", cases[i].path, got ? got : "(none)",
                     cases[i].want ? cases[i].want : "(none)");
    }
    /* the path is (ptr, len): bytes after len are ignored */
    assert_string_equal(conf_route_match(s, "/exactXYZ", 6)->return_body, "exact");
    conf_unref(c);

    /* no prefix "/": nothing matches outside the routes; regex only */
    c = load("site * {\n"
             "  route /a/ { return 200 a; }\n"
             "  route ~ ^/b { return 200 b; }\n"
             "}\n");
    s = &c->sites[0];
    assert_null(conf_route_match(s, "/c", 2));
    assert_null(conf_route_match(s, "", 0));
    assert_string_equal(conf_route_match(s, "/bb", 3)->return_body, "b");
    assert_string_equal(conf_route_match(s, "/a/b", 4)->return_body, "a");
    conf_unref(c);

    c = load("site * { }");
    assert_null(conf_route_match(&c->sites[0], "/", 1));
    conf_unref(c);
}

struct match_thread {
    const struct conf_site *s;
    int bad;
};

static void *
match_worker(void *arg)
{
    struct match_thread *t = arg;
    int i;

    for (i = 0; i < 5000; i++) {
        const struct conf_route *r = conf_route_match(t->s, "/images/a.gif", 13);
        const struct conf_route *r2 = conf_route_match(t->s, "/index.php", 10);
        if (r == NULL || strcmp(r->return_body, "img") != 0 || r2 == NULL ||
            strcmp(r2->return_body, "php") != 0)
            t->bad++;
    }
    return NULL;
}

static void
test_route_match_threads(void **state)
{
    struct match_thread t[4];
    pthread_t th[4];
    struct conf *c;
    int i;

    (void)state;
    c = load(route_conf);
    for (i = 0; i < 4; i++) {
        t[i].s = &c->sites[0];
        t[i].bad = 0;
        assert_int_equal(pthread_create(&th[i], NULL, match_worker, &t[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].bad, 0);
    }
    conf_unref(c);
}

/* ---- refcount ------------------------------------------------------------------------------- */

static void *
ref_worker(void *arg)
{
    struct conf *c = arg;
    int i;

    for (i = 0; i < 10000; i++)
        conf_unref(conf_ref(c));
    return NULL;
}

static void
test_refcount(void **state)
{
    struct conf *c;
    pthread_t th[4];
    int i;

    (void)state;
    c = load("site * { route ~ ^/x { return 200; } }");
    assert_ptr_equal(conf_ref(c), c);
    conf_unref(c); /* back to one: still alive (ASan would catch a use after free) */
    assert_int_equal(c->nsites, 1);
    for (i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, ref_worker, c), 0);
    for (i = 0; i < 4; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_non_null(conf_route_match(&c->sites[0], "/x", 2));
    conf_unref(c); /* freed: regex code too (LeakSanitizer checks) */
    conf_unref(NULL);
}

/* ---- shipped confs -------------------------------------------------------------------------- */

static void
test_shipped_confs(void **state)
{
    /* conf/edge.conf uses other modules' directives (cache_dir, …): it is
     * checked with build/edge -t by tests/integration/confs_test.c */
    static const char *const paths[] = {
        "conf/examples/minimal.conf",
        "conf/examples/multi-site.conf",
        "conf/examples/limits.conf",
    };
    struct conf_err err;
    struct conf *c;
    const struct conf_site *s;
    const struct conf_route *r;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        c = conf_load(paths[i], &err);
        if (c == NULL)
            fail_msg("%s: %s", paths[i], err.msg);
        conf_unref(c);
    }

    c = conf_load("conf/examples/multi-site.conf", &err);
    assert_non_null(c);
    s = conf_site_match(c, "api.example.com", 15);
    assert_non_null(s);
    assert_string_equal(s->hosts[0], "api.example.com");
    assert_int_equal(s->max_body_size, 10 << 20);
    r = conf_route_match(s, "/upload/x", 9);
    assert_int_equal(r->max_body_size, 1 << 30);
    s = conf_site_match(c, "WWW.example.com", 15);
    assert_string_equal(conf_route_match(s, "/a/b.PNG", 8)->pattern, "\\.(png|jpe?g|gif|svg)$");
    assert_string_equal(conf_route_match(s, "/static/b.png", 13)->pattern, "/static/");
    assert_string_equal(conf_route_match(s, "/u/42", 5)->origin->name, "api");
    assert_string_equal(conf_site_match(c, "cdn.static.example.net", 22)->hosts[0],
                        "static.example.net");
    assert_string_equal(conf_site_match(c, "nope.test", 9)->hosts[0], "*");
    conf_unref(c);
}

/* ---- extension: a module the parser has never heard of -------------------------------------- */

struct fake_route {
    const char *answer;
    bool finished;
};

static int fake_creates[16];
static char fake_order[64];
static size_t fake_norder;
static int fake_releases;
static struct conf_module fake_module;

static int
fake_set(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct conf_route *r = parent;
    struct fake_route *f = r->mod[fake_module.index];

    if (strcmp(n->args[0].s, "bad") == 0)
        return conf_errf(err, &n->args[0].pos, "'fake_answer' does not like 'bad'");
    f->answer = conf_strndup(b, n->args[0].s, n->args[0].len);
    return f->answer == NULL ? -1 : 0;
}

static void *
fake_create(struct conf_build *b, enum conf_ctx ctx, void *obj)
{
    (void)obj;
    fake_creates[ctx]++;
    if (ctx == CONF_CTX_ROUTE)
        return conf_alloc(b, sizeof(struct fake_route));
    return NULL;
}

static int
fake_finish(struct conf_build *b, enum conf_ctx ctx, void *obj, void *outer, struct conf_err *err)
{
    (void)outer;
    (void)err;
    assert_non_null(conf_build_conf(b));
    if (fake_norder < sizeof(fake_order) - 1)
        fake_order[fake_norder++] = ctx == CONF_CTX_MAIN     ? 'M'
                                    : ctx == CONF_CTX_ORIGIN ? 'O'
                                    : ctx == CONF_CTX_SITE   ? 'S'
                                                             : 'R';
    if (ctx == CONF_CTX_ROUTE) {
        struct conf_route *r = obj;
        struct fake_route *f = r->mod[fake_module.index];
        f->finished = true;
        if (f->answer != NULL)
            conf_route_set_handled(r);
    }
    return 0;
}

static void
fake_release(struct conf *c)
{
    (void)c;
    fake_releases++;
}

static const struct conf_directive fake_directives[] = {
    {"fake_answer", CONF_CTX_ROUTE, CONF_F_UNIQUE, 1, 1, "an answer", fake_set},
};

static struct conf_module fake_module = {
    .name = "fake",
    .directives = fake_directives,
    .ndirectives = 1,
    .create = fake_create,
    .finish = fake_finish,
    .release = fake_release,
};

static void
test_module_extension(void **state)
{
    static const struct conf_directive clash_dirs[] = {
        {"workers", CONF_CTX_MAIN, 0, 1, 1, NULL, fake_set},
    };
    static struct conf_module clash = {.name = "clash", .directives = clash_dirs, .ndirectives = 1};
    static const struct conf_directive inc_dirs[] = {
        {"include", CONF_CTX_ROUTE, 0, 1, 1, NULL, fake_set},
    };
    static struct conf_module inc = {.name = "inc", .directives = inc_dirs, .ndirectives = 1};
    struct conf *c;
    const struct fake_route *f;
    int releases;

    (void)state;
    assert_int_equal(conf_module_register(&fake_module), 0);
    assert_true(fake_module.index > 0);                       /* core is 0 */
    assert_int_equal(conf_module_register(&fake_module), -1); /* twice */
    assert_int_equal(conf_module_register(&clash), -1);
    assert_int_equal(conf_module_register(&inc), -1);

    memset(fake_creates, 0, sizeof(fake_creates));
    fake_norder = 0;
    releases = fake_releases;
    c = load("origin app { server 127.0.0.1:9000; }\n"
             "site * {\n"
             "  route /fn { fake_answer 42; }\n" /* no origin/return: the module answers */
             "  route / { origin app; }\n"
             "}\n");
    fake_order[fake_norder] = '\0';
    assert_int_equal(fake_creates[CONF_CTX_MAIN], 1);
    assert_int_equal(fake_creates[CONF_CTX_ORIGIN], 1);
    assert_int_equal(fake_creates[CONF_CTX_SITE], 1);
    assert_int_equal(fake_creates[CONF_CTX_ROUTE], 2);
    assert_string_equal(fake_order, "MOSRR"); /* outermost first */
    f = c->sites[0].routes[0].mod[fake_module.index];
    assert_non_null(f);
    assert_string_equal(f->answer, "42");
    assert_true(f->finished);
    assert_true(c->sites[0].routes[0]._handled);
    f = c->sites[0].routes[1].mod[fake_module.index];
    assert_null(f->answer);
    assert_false(c->sites[0].routes[1]._handled);
    assert_ptr_equal(conf_route_match(&c->sites[0], "/fn/x", 5), &c->sites[0].routes[0]);
    conf_unref(c);
    assert_int_equal(fake_releases, releases + 1);

    /* the new directive gets the generic checks and messages for free */
    assert_string_equal(load_err("site * { route / { fake_answer bad; } }"),
                        "edge.conf:1:32: 'fake_answer' does not like 'bad'");
    assert_string_equal(load_err("site * { route / { fake_answer; } }"),
                        "edge.conf:1:20: 'fake_answer' expects an answer");
    assert_string_equal(load_err("fake_answer 1;"), "edge.conf:1:1: 'fake_answer' is not allowed "
                                                    "here (it belongs in a 'route' block)");
    assert_string_equal(load_err("site * { route / { fake_answr 1; } }"),
                        "edge.conf:1:20: unknown directive 'fake_answr' (did you mean "
                        "'fake_answer'?)");
    assert_string_equal(load_err("site * { route / { fake_answer 1; fake_answer 2; } }"),
                        "edge.conf:1:35: 'fake_answer' is duplicate (first set at edge.conf:1)");
    /* failed loads run release hooks too */
    assert_int_equal(fake_releases, releases + 6);
}

/* Last: fills the module table. */
static void
test_module_table_full(void **state)
{
    static struct conf_module extra[CONF_MODULES_MAX];
    size_t i;
    int ok = 0;

    (void)state;
    for (i = 0; i < CONF_MODULES_MAX; i++) {
        extra[i].name = "extra";
        if (conf_module_register(&extra[i]) == 0)
            ok++;
    }
    assert_true(ok < CONF_MODULES_MAX); /* core and fake hold slots */
    assert_int_equal(conf_module_register(&extra[CONF_MODULES_MAX - 1]), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lexer_tokens),
        cmocka_unit_test(test_lexer_escapes),
        cmocka_unit_test(test_lexer_env),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_errors_limits),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_include_too_big),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_main_directives),
        cmocka_unit_test(test_origin_directives),
        cmocka_unit_test(test_inheritance),
        cmocka_unit_test(test_site_match),
        cmocka_unit_test(test_route_match),
        cmocka_unit_test(test_route_match_threads),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_shipped_confs),
        cmocka_unit_test(test_module_extension),
        cmocka_unit_test(test_module_table_full),
    };

    return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
