/*
 * Unit tests of the SNI index (tls/names.c: host normalisation, exact and
 * wildcard names) and of the session ticket key ring (tls/tickets.c).
 */
#include "tls/tls-int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static long
find(const struct tls_names *n, const char *host)
{
    char norm[TLS_NAME_MAX + 1];
    size_t len = tls_host_norm(host, strlen(host), norm, sizeof(norm));

    return len == 0 ? -2 : tls_names_find(n, norm, len);
}

static int
add(struct tls_names *n, const char *name, size_t cert)
{
    return tls_names_add(n, name, strlen(name), cert);
}

static void
test_host_norm(void **state)
{
    char out[TLS_NAME_MAX + 1], big[300];
    (void)state;

    assert_int_equal(tls_host_norm("Example.COM.", 12, out, sizeof(out)), 11);
    assert_string_equal(out, "example.com");
    assert_int_equal(tls_host_norm("under_score-1.test", 18, out, sizeof(out)), 18);
    assert_int_equal(tls_host_norm("localhost", 9, out, sizeof(out)), 9);
    static const char *const bad[] = {"",        ".",     "a..b",  ".a",    "a b",
                                      "a/b",     "a:443", "[::1]", "a.b..", "caf\xc3\xa9.test",
                                      "*.a.test"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tls_host_norm(bad[i], strlen(bad[i]), out, sizeof(out)), 0);
    /* labels up to 63 bytes, names up to 253 */
    memset(big, 'a', sizeof(big));
    assert_int_equal(tls_host_norm(big, 63, out, sizeof(out)), 63);
    assert_int_equal(tls_host_norm(big, 64, out, sizeof(out)), 0);
    for (size_t i = 63; i < sizeof(big); i += 64)
        big[i] = '.';
    assert_int_equal(tls_host_norm(big, 253, out, sizeof(out)), 253);
    assert_int_equal(tls_host_norm(big, 254, out, sizeof(out)), 0);
    /* the output must fit */
    assert_int_equal(tls_host_norm("abc", 3, out, 3), 0);
    assert_int_equal(tls_host_norm("abc", 3, out, 4), 3);
}

static void
test_exact_and_wildcards(void **state)
{
    struct tls_names n = {0};
    (void)state;

    assert_int_equal(add(&n, "www.example.com", 0), 1);
    assert_int_equal(add(&n, "*.example.com", 1), 1);
    assert_int_equal(add(&n, "Example.com", 2), 1);
    assert_int_equal(add(&n, "*.b.example.com", 3), 1);
    assert_int_equal(add(&n, "WWW.example.com.", 4), 1); /* a duplicate: 0 keeps it */
    assert_int_equal(add(&n, "*.other.test", 4), 1);
    /* not server names: partial wildcards, too wide, IP text, junk */
    assert_int_equal(add(&n, "w*.example.com", 5), 0);
    assert_int_equal(add(&n, "*w.example.com", 5), 0);
    assert_int_equal(add(&n, "*.com", 5), 0);
    assert_int_equal(add(&n, "*", 5), 0);
    assert_int_equal(add(&n, "*.", 5), 0);
    assert_int_equal(add(&n, "127.0.0.1", 5), 0);
    assert_int_equal(add(&n, "::1", 5), 0);
    assert_int_equal(add(&n, "a..b", 5), 0);
    tls_names_finish(&n);

    assert_int_equal(find(&n, "www.example.com"), 0); /* exact beats the wildcard */
    assert_int_equal(find(&n, "WWW.Example.Com."), 0);
    assert_int_equal(find(&n, "api.example.com"), 1);
    assert_int_equal(find(&n, "b.example.com"), 1);
    assert_int_equal(find(&n, "example.com"), 2); /* "*.example.com" does not cover it */
    assert_int_equal(find(&n, "x.b.example.com"), 3);
    assert_int_equal(find(&n, "a.x.example.com"), -1); /* a wildcard is one label */
    assert_int_equal(find(&n, "x.other.test"), 4);
    assert_int_equal(find(&n, "other.test"), -1);
    assert_int_equal(find(&n, "example.org"), -1);
    assert_int_equal(find(&n, "com"), -1);
    assert_int_equal(find(&n, "w1.example.com"), 1); /* the partial wildcard was not kept */
    tls_names_fini(&n);
    assert_int_equal(find(&n, "www.example.com"), -1);
}

static void
test_many_names(void **state)
{
    struct tls_names n = {0};
    char name[64];
    (void)state;

    for (size_t i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "%sh%zu.zone%zu.test", i % 2 ? "*." : "", i, i % 7);
        assert_int_equal(add(&n, name, i), 1);
    }
    tls_names_finish(&n);
    for (size_t i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "%sh%zu.zone%zu.test", i % 2 ? "x." : "", i, i % 7);
        assert_int_equal(find(&n, name), (long)i);
        snprintf(name, sizeof(name), "h%zu.zone%zu.test", i, (i + 1) % 7);
        assert_int_equal(find(&n, name), -1);
    }
    tls_names_fini(&n);
}

/* ---- ticket keys ---- */

static unsigned rand_calls;
static bool rand_fail;

static int
fake_rand(unsigned char *buf, int len)
{
    if (rand_fail)
        return 0;
    rand_calls++;
    for (int i = 0; i < len; i++)
        buf[i] = (unsigned char)(rand_calls * 31 + (unsigned)i);
    return 1;
}

static void
test_ticket_rotation(void **state)
{
    struct tls_ticket_ring r = TLS_TICKET_RING_INIT;
    struct tls_ticket_key k0, k1, k2, got;
    (void)state;

    r.rand = fake_rand;
    rand_fail = true;
    assert_int_equal(tls_ticket_ring_enc(&r, 0, 1000, &k0), -1); /* no key at all yet */
    rand_fail = false;
    assert_int_equal(tls_ticket_ring_enc(&r, 0, 1000, &k0), 0);
    assert_int_equal(tls_ticket_ring_dec(&r, 10, 1000, k0.name, &got), 1);
    assert_memory_equal(got.aes, k0.aes, sizeof(got.aes));
    assert_memory_equal(got.hmac, k0.hmac, sizeof(got.hmac));
    assert_int_equal(tls_ticket_ring_enc(&r, 999, 1000, &got), 0);
    assert_memory_equal(got.name, k0.name, sizeof(got.name)); /* not yet */

    /* a period later: a new current key; the old one decrypts and asks for renewal */
    assert_int_equal(tls_ticket_ring_enc(&r, 1000, 1000, &k1), 0);
    assert_memory_not_equal(k1.name, k0.name, sizeof(k1.name));
    assert_int_equal(tls_ticket_ring_dec(&r, 1001, 1000, k1.name, &got), 1);
    assert_int_equal(tls_ticket_ring_dec(&r, 1001, 1000, k0.name, &got), 2);
    assert_memory_equal(got.aes, k0.aes, sizeof(got.aes));

    /* one more: k0 is gone (a full handshake), k1 is the previous key */
    assert_int_equal(tls_ticket_ring_dec(&r, 2500, 1000, k0.name, &got), 0);
    assert_int_equal(tls_ticket_ring_enc(&r, 2500, 1000, &k2), 0);
    assert_memory_not_equal(k2.name, k1.name, sizeof(k2.name));
    assert_int_equal(tls_ticket_ring_dec(&r, 2500, 1000, k1.name, &got), 2);

    /* a failing key source keeps the current key rather than stopping */
    rand_fail = true;
    assert_int_equal(tls_ticket_ring_enc(&r, 9000, 1000, &got), 0);
    assert_memory_equal(got.name, k2.name, sizeof(got.name));
    rand_fail = false;

    /* unknown names */
    memset(got.name, 0xee, sizeof(got.name));
    assert_int_equal(tls_ticket_ring_dec(&r, 9000, 1000, got.name, &k0), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_norm),
        cmocka_unit_test(test_exact_and_wildcards),
        cmocka_unit_test(test_many_names),
        cmocka_unit_test(test_ticket_rotation),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
