/*
 * tls — private declarations shared by the files of the tls module (and its
 * unit tests). Nothing outside tls/ includes this header.
 */
#ifndef EDGE_TLS_INT_H
#define EDGE_TLS_INT_H

#include "tls/tls.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

/* ---- names.c: the SNI index ------------------------------------------------------- */

#define TLS_NAME_MAX 253

/* A client's host name (SNI): lower-cased, one trailing dot dropped;
 * labels of letters, digits, '-' and '_', 1..63 bytes, 253 in all. Returns
 * the length written to out (NUL-terminated), 0 when the name is not valid. */
size_t tls_host_norm(const char *in, size_t len, char *out, size_t cap);

struct tls_name {
    char *name; /* exact name, or the suffix of a wildcard ("example.com" for "*.example.com") */
    size_t len;
    size_t cert; /* index in the set's certificates */
};

struct tls_names {
    struct tls_name *exact, *wild;
    size_t nexact, nwild, capexact, capwild;
};

/* Adds a certificate name: "www.example.com" or "*.example.com" (the
 * wildcard alone in the leftmost label, at least two labels after it).
 * 1 added, 0 not usable as a server name (partial wildcard, IP text,
 * bad syntax), -1 out of memory. */
int tls_names_add(struct tls_names *n, const char *pattern, size_t len, size_t cert);
/* Sorts; a name given by several certificates keeps the first (lowest index). */
void tls_names_finish(struct tls_names *n);
/* The certificate for a normalised host name: exact first, then a wildcard
 * covering its first label; -1 when none. */
long tls_names_find(const struct tls_names *n, const char *host, size_t len);
void tls_names_fini(struct tls_names *n);

/* ---- tickets.c: session ticket keys ---------------------------------------------------- */

#define TLS_TICKET_NAME_LEN 16

struct tls_ticket_key {
    unsigned char name[TLS_TICKET_NAME_LEN];
    unsigned char aes[32];  /* AES-256-CBC */
    unsigned char hmac[32]; /* HMAC-SHA256 */
};

/* The current key encrypts; the previous one still decrypts until the next
 * rotation. Keys are made on first use and at every rotation. */
struct tls_ticket_ring {
    pthread_mutex_t lock;
    bool ready, have_prev;
    uint64_t next_ms; /* next rotation */
    struct tls_ticket_key cur, prev;
    /* the key source: RAND_bytes, replaceable by tests */
    int (*rand)(unsigned char *buf, int len);
};
#define TLS_TICKET_RING_INIT                                                                       \
    {                                                                                              \
        .lock = PTHREAD_MUTEX_INITIALIZER                                                          \
    }

/* The key to encrypt a new ticket with. 0, or -1 when no key could be made. */
int tls_ticket_ring_enc(struct tls_ticket_ring *r, uint64_t now_ms, uint64_t period_ms,
                        struct tls_ticket_key *out);
/* The key named 'name': 1 the current one, 2 the previous one (the
 * ticket should be renewed), 0 unknown (a full handshake follows). */
int tls_ticket_ring_dec(struct tls_ticket_ring *r, uint64_t now_ms, uint64_t period_ms,
                        const unsigned char *name, struct tls_ticket_key *out);

extern struct tls_ticket_ring tls_tickets; /* the process's */

/* ---- conf.c / ctx.c: settings and the set ---------------------------------------------- */

struct tls_cert_conf {
    const struct conf_node *node; /* tls_certificate CERT KEY [default] */
    bool is_default;
    struct tls_cert_conf *next;
};

/* Per context (MAIN, SITE): what its directives said, then (finish) the
 * effective client verification. */
struct tls_ctx_conf {
    struct tls_cert_conf *certs, **certs_tail;
    size_t ncerts;
    const struct conf_node *ocsp, *client_ca, *verify;
    enum tls_verify verify_mode; /* as written (with 'verify') */
    /* effective, after inheritance: */
    struct tls_verify_conf eff;
    const struct conf_node *eff_ca; /* the CA file used, or NULL */
};

struct tls_main_conf {
    struct tls_ctx_conf ctx;  /* the top level's certificates and verification */
    int min_proto, max_proto; /* TLS1_2_VERSION .. TLS1_3_VERSION */
    const struct conf_node *ciphers, *ciphersuites;
    uint64_t rotate_ms;
    struct tls_set *set; /* built in the MAIN finish hook; the conf's reference */
    void *system_store;  /* X509_STORE * of the system CAs, shared by the origins' SSL_CTX */
};

/* Per origin (ORIGIN context; origin.c): what its directives said, then
 * (finish) the effective settings and the client SSL_CTX. */
struct tls_origin {
    const struct conf_node *tls, *ca, *verify, *server_name; /* as written, or NULL */
    bool tls_on, verify_on;                                  /* values of 'tls', 'tls_verify' */
    /* effective, after finish: */
    bool enabled;     /* the origin speaks TLS */
    bool verifies;    /* certificates are checked */
    const char *name; /* tls_server_name (normalised), or NULL: each server's host */
    bool name_is_ip;
    uint64_t id;
    void *ctx; /* SSL_CTX *, outside the arena: freed by the release hook */
};

/* The checks of an origin's TLS settings and its SSL_CTX; store is the
 * conf's shared system CA store (made on first use). 0 / -1. */
int tls_origin_finish(struct tls_origin *t, const struct conf_origin *o, void **store,
                      struct conf_err *err);
void tls_origin_release(struct tls_origin *t);
void tls_origin_store_free(void *store);

/* Builds the set of a conf from the settings of the top level and of its
 * sites (sites[i] may be NULL: no TLS directive there). NULL + err, or
 * *out = NULL when there is no certificate at all. 0 / -1. */
int tls_set_build(const struct conf *c, struct tls_main_conf *m, struct tls_ctx_conf **sites,
                  struct tls_set **out, struct conf_err *err);

/* The id of a client verification: SHA-256 of the mode and the CA file's
 * bytes. 0, or -1 with why. */
int tls_verify_id(enum tls_verify mode, const char *ca_path, unsigned char *id, char *why,
                  size_t whylen);

/* Reads a whole file (at most max bytes) into a malloc'ed buffer with a NUL
 * after it. 0, or -1 with why (strerror or "over N bytes") in err. */
int tls_read_file(const char *path, size_t max, unsigned char **buf, size_t *len, char *why,
                  size_t whylen);

#endif /* EDGE_TLS_INT_H */
