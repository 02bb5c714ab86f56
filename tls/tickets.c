/*
 * Session ticket keys: one ring per process, shared by every SSL_CTX of
 * every conf snapshot and every worker thread, so that a ticket survives a
 * reload and works on whichever worker the client lands on. Keys are made
 * on first use (in the engine, after the fork: the supervisor never makes
 * one) and rotated lazily: the first ticket operation after the deadline
 * rotates. The previous key keeps decrypting for one more period, so a
 * ticket stays usable for at least one period (the session lifetime).
 */
#include "tls/tls-int.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

struct tls_ticket_ring tls_tickets = TLS_TICKET_RING_INIT;

static int
make_key(struct tls_ticket_ring *r, struct tls_ticket_key *k)
{
    int (*rnd)(unsigned char *, int) = r->rand != NULL ? r->rand : RAND_bytes;

    if (rnd(k->name, (int)sizeof(k->name)) != 1 || rnd(k->aes, (int)sizeof(k->aes)) != 1 ||
        rnd(k->hmac, (int)sizeof(k->hmac)) != 1) {
        OPENSSL_cleanse(k, sizeof(*k));
        return -1;
    }
    return 0;
}

/* With the lock held: the first key, or a rotation when its time has come. */
static int
ring_update(struct tls_ticket_ring *r, uint64_t now_ms, uint64_t period_ms)
{
    struct tls_ticket_key k;

    if (period_ms == 0)
        period_ms = 1;
    if (r->ready && now_ms < r->next_ms)
        return 0;
    if (make_key(r, &k) < 0)
        return r->ready ? 0 : -1; /* keep the old key rather than stop resuming */
    if (r->ready) {
        r->prev = r->cur;
        r->have_prev = true;
    }
    r->cur = k;
    r->ready = true;
    r->next_ms = now_ms + period_ms;
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

int
tls_ticket_ring_enc(struct tls_ticket_ring *r, uint64_t now_ms, uint64_t period_ms,
                    struct tls_ticket_key *out)
{
    int rc;

    pthread_mutex_lock(&r->lock);
    rc = ring_update(r, now_ms, period_ms);
    if (rc == 0)
        *out = r->cur;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int
tls_ticket_ring_dec(struct tls_ticket_ring *r, uint64_t now_ms, uint64_t period_ms,
                    const unsigned char *name, struct tls_ticket_key *out)
{
    int rc = 0;

    pthread_mutex_lock(&r->lock);
    if (ring_update(r, now_ms, period_ms) == 0) {
        if (memcmp(name, r->cur.name, TLS_TICKET_NAME_LEN) == 0) {
            *out = r->cur;
            rc = 1;
        } else if (r->have_prev && memcmp(name, r->prev.name, TLS_TICKET_NAME_LEN) == 0) {
            *out = r->prev;
            rc = 2;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}
