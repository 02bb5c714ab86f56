/*
 * The tls conf module: the directives listed in tls.h ("1. Conf" and
 * "5. Origins").
 *
 * Handlers only record nodes; the MAIN finish hook, which runs once every
 * directive of the whole conf is set, works out each context's effective
 * client verification, checks the combinations and builds the snapshot's
 * SSL_CTX set (ctx.c), which lives outside the arena: the release hook
 * drops the conf's reference, connections hold their own. Each ORIGIN
 * finish hook (after MAIN's) checks that origin's TLS settings against
 * how its servers are written and builds its client SSL_CTX (origin.c).
 */
#include "tls/tls-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define ROTATE_DEFAULT_MS (3600ull * 1000)
#define ROTATE_MIN_MS 1000ull
#define ROTATE_MAX_MS (7ull * 24 * 3600 * 1000)

static struct conf_module tls_module;
static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static int register_rc = -1;
static bool registered;

static struct tls_main_conf *
main_of(const struct conf *c)
{
    return c->mod[tls_module.index];
}

static struct tls_ctx_conf *
site_of(const struct conf_site *s)
{
    return s->mod[tls_module.index];
}

static struct tls_origin *
origin_of(const struct conf_origin *o)
{
    return o->mod[tls_module.index];
}

/* ---- handlers ------------------------------------------------------------------------------- */

static int
add_certificate(struct conf_build *b, const struct conf_node *n, struct tls_ctx_conf *cc,
                struct conf_err *err)
{
    struct tls_cert_conf *cert;

    if (cc == NULL || (cert = conf_alloc(b, sizeof(*cert))) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (n->nargs == 3) {
        if (strcmp(n->args[2].s, "default") != 0)
            return conf_errf(err, &n->args[2].pos,
                             "'tls_certificate': unknown option '%s' (expected 'default')",
                             n->args[2].s);
        cert->is_default = true;
    }
    for (size_t i = 0; i < 2; i++)
        if (n->args[i].len == 0)
            return conf_errf(err, &n->args[i].pos, "'tls_certificate': empty file name");
    cert->node = n;
    *cc->certs_tail = cert;
    cc->certs_tail = &cert->next;
    cc->ncerts++;
    return 0;
}

static int
set_certificate_main(struct conf_build *b, const struct conf_node *n, void *parent,
                     struct conf_err *err)
{
    struct tls_main_conf *m = main_of(parent);
    return add_certificate(b, n, m ? &m->ctx : NULL, err);
}

static int
set_certificate_site(struct conf_build *b, const struct conf_node *n, void *parent,
                     struct conf_err *err)
{
    return add_certificate(b, n, site_of(parent), err);
}

static int
set_protocols(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct tls_main_conf *m = main_of(parent);
    int lo = 0, hi = 0;

    (void)b;
    if (m == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    for (size_t i = 0; i < n->nargs; i++) {
        const struct conf_arg *a = &n->args[i];
        int v;
        if (strcasecmp(a->s, "TLSv1.2") == 0)
            v = TLS1_2_VERSION;
        else if (strcasecmp(a->s, "TLSv1.3") == 0)
            v = TLS1_3_VERSION;
        else if (strcasecmp(a->s, "TLSv1") == 0 || strcasecmp(a->s, "TLSv1.0") == 0 ||
                 strcasecmp(a->s, "TLSv1.1") == 0 || strncasecmp(a->s, "SSL", 3) == 0)
            return conf_errf(err, &a->pos,
                             "'tls_protocols': %s is not supported (TLSv1.2 and TLSv1.3 only)",
                             a->s);
        else
            return conf_errf(err, &a->pos,
                             "'tls_protocols': unknown protocol '%s' (expected TLSv1.2 or TLSv1.3)",
                             a->s);
        if (lo == 0 || v < lo)
            lo = v;
        if (v > hi)
            hi = v;
    }
    m->min_proto = lo;
    m->max_proto = hi;
    return 0;
}

/* Cipher strings are checked here, so a typo fails even without certificates. */
static int
set_ciphers(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct tls_main_conf *m = main_of(parent);
    bool suites = strcmp(n->name, "tls_ciphersuites") == 0;
    SSL_CTX *probe;
    int ok;

    (void)b;
    if (m == NULL || (probe = SSL_CTX_new(TLS_server_method())) == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    ok = suites ? SSL_CTX_set_ciphersuites(probe, n->args[0].s)
                : SSL_CTX_set_cipher_list(probe, n->args[0].s);
    SSL_CTX_free(probe);
    ERR_clear_error();
    if (!ok)
        return conf_errf(err, &n->args[0].pos, "'%s': no usable cipher in '%s'", n->name,
                         n->args[0].s);
    if (suites)
        m->ciphersuites = n;
    else
        m->ciphers = n;
    return 0;
}

static int
set_rotate(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct tls_main_conf *m = main_of(parent);
    uint64_t ms;

    (void)b;
    if (m == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (conf_parse_duration(&n->args[0], "tls_session_ticket_rotate", &ms, err) < 0)
        return -1;
    if (ms < ROTATE_MIN_MS || ms > ROTATE_MAX_MS || ms % 1000 != 0)
        return conf_errf(
            err, &n->args[0].pos,
            "'tls_session_ticket_rotate' must be whole seconds from 1s to 7d, not '%s'",
            n->args[0].s);
    m->rotate_ms = ms;
    return 0;
}

static struct tls_ctx_conf *
ctx_of(void *parent, enum conf_ctx where)
{
    if (where == CONF_CTX_MAIN) {
        struct tls_main_conf *m = main_of(parent);
        return m ? &m->ctx : NULL;
    }
    return site_of(parent);
}

static int
set_file(const struct conf_node *n, const struct conf_node **slot, struct conf_err *err)
{
    if (n->args[0].len == 0)
        return conf_errf(err, &n->args[0].pos, "'%s': empty file name", n->name);
    *slot = n;
    return 0;
}

static int
set_ocsp_main(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct tls_ctx_conf *cc = ctx_of(parent, CONF_CTX_MAIN);
    (void)b;
    return cc ? set_file(n, &cc->ocsp, err) : conf_errf(err, &n->pos, "out of memory");
}

static int
set_ocsp_site(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct tls_ctx_conf *cc = ctx_of(parent, CONF_CTX_SITE);
    (void)b;
    return cc ? set_file(n, &cc->ocsp, err) : conf_errf(err, &n->pos, "out of memory");
}

static int
set_ca_main(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct tls_ctx_conf *cc = ctx_of(parent, CONF_CTX_MAIN);
    (void)b;
    return cc ? set_file(n, &cc->client_ca, err) : conf_errf(err, &n->pos, "out of memory");
}

static int
set_ca_site(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct tls_ctx_conf *cc = ctx_of(parent, CONF_CTX_SITE);
    (void)b;
    return cc ? set_file(n, &cc->client_ca, err) : conf_errf(err, &n->pos, "out of memory");
}

static int
set_verify(const struct conf_node *n, struct tls_ctx_conf *cc, struct conf_err *err)
{
    const char *v = n->args[0].s;

    if (cc == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (strcmp(v, "on") == 0)
        cc->verify_mode = TLS_VERIFY_ON;
    else if (strcmp(v, "optional") == 0)
        cc->verify_mode = TLS_VERIFY_OPTIONAL;
    else if (strcmp(v, "off") == 0)
        cc->verify_mode = TLS_VERIFY_OFF;
    else
        return conf_errf(err, &n->args[0].pos,
                         "'tls_verify_client' expects on, optional or off, not '%s'", v);
    cc->verify = n;
    return 0;
}

static int
set_verify_main(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    (void)b;
    return set_verify(n, ctx_of(parent, CONF_CTX_MAIN), err);
}

static int
set_verify_site(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    (void)b;
    return set_verify(n, ctx_of(parent, CONF_CTX_SITE), err);
}

/* ---- origins ------------------------------------------------------------------------------- */

static int
set_origin_tls(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct tls_origin *t = origin_of(parent);

    (void)b;
    if (t == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (conf_parse_flag(&n->args[0], "tls", &t->tls_on, err) < 0)
        return -1;
    t->tls = n;
    return 0;
}

static int
set_origin_ca(struct conf_build *b, const struct conf_node *n, void *parent, struct conf_err *err)
{
    struct tls_origin *t = origin_of(parent);

    (void)b;
    return t != NULL ? set_file(n, &t->ca, err) : conf_errf(err, &n->pos, "out of memory");
}

static int
set_origin_verify(struct conf_build *b, const struct conf_node *n, void *parent,
                  struct conf_err *err)
{
    struct tls_origin *t = origin_of(parent);

    (void)b;
    if (t == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (conf_parse_flag(&n->args[0], "tls_verify", &t->verify_on, err) < 0)
        return -1;
    t->verify = n;
    return 0;
}

/* A host name (what SNI carries and the certificate is checked for) or an
 * IP literal (no SNI; checked against the certificate's IP addresses). */
static int
set_origin_server_name(struct conf_build *b, const struct conf_node *n, void *parent,
                       struct conf_err *err)
{
    struct tls_origin *t = origin_of(parent);
    const struct conf_arg *a = &n->args[0];
    unsigned char ip[sizeof(struct in6_addr)];
    char norm[TLS_NAME_MAX + 1];
    size_t len;

    if (t == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    if (inet_pton(AF_INET, a->s, ip) == 1 || inet_pton(AF_INET6, a->s, ip) == 1) {
        t->name = conf_strndup(b, a->s, a->len);
        t->name_is_ip = true;
    } else if ((len = tls_host_norm(a->s, a->len, norm, sizeof(norm))) > 0) {
        t->name = conf_strndup(b, norm, len);
        t->name_is_ip = false;
    } else {
        return conf_errf(err, &a->pos,
                         "'tls_server_name': '%s' is not a host name or an IP address", a->s);
    }
    if (t->name == NULL)
        return conf_errf(err, &n->pos, "out of memory");
    t->server_name = n;
    return 0;
}

/* ---- hooks ---------------------------------------------------------------------------------- */

static void *
tls_create(struct conf_build *b, enum conf_ctx ctx, void *obj)
{
    struct tls_main_conf *m;
    struct tls_ctx_conf *cc;

    (void)obj;
    switch (ctx) {
    case CONF_CTX_MAIN:
        m = conf_alloc(b, sizeof(*m));
        if (m == NULL)
            return NULL;
        m->ctx.certs_tail = &m->ctx.certs;
        m->min_proto = TLS1_2_VERSION;
        m->max_proto = TLS1_3_VERSION;
        m->rotate_ms = ROTATE_DEFAULT_MS;
        return m;
    case CONF_CTX_SITE:
        cc = conf_alloc(b, sizeof(*cc));
        if (cc != NULL)
            cc->certs_tail = &cc->certs;
        return cc;
    case CONF_CTX_ORIGIN: {
        struct tls_origin *t = conf_alloc(b, sizeof(*t));
        if (t != NULL)
            t->verify_on = true;
        return t;
    }
    case CONF_CTX_ROUTE: break;
    }
    return NULL;
}

static const char *
site_name(const struct conf_site *s)
{
    return s->nhosts > 0 ? s->hosts[0] : "";
}

/* A context's effective verification: its own mode and CA, else the
 * outer context's (NULL for the top level). */
static int
resolve_verify(struct tls_ctx_conf *cc, const struct tls_ctx_conf *outer, struct conf_err *err)
{
    enum tls_verify mode = cc->verify != NULL ? cc->verify_mode
                           : outer != NULL    ? outer->eff.mode
                                              : TLS_VERIFY_OFF;
    const struct conf_node *ca = cc->client_ca != NULL ? cc->client_ca
                                 : outer != NULL       ? outer->eff_ca
                                                       : NULL;
    char why[256];

    memset(&cc->eff, 0, sizeof(cc->eff));
    cc->eff_ca = NULL;
    if (mode == TLS_VERIFY_OFF) {
        if (cc->client_ca != NULL)
            return conf_errf(err, &cc->client_ca->pos,
                             "'tls_client_ca' has no effect without 'tls_verify_client on' or "
                             "'optional'");
        return 0;
    }
    if (ca == NULL)
        return conf_errf(err, &cc->verify->pos,
                         "'tls_verify_client %s' needs 'tls_client_ca FILE' (the CAs that "
                         "client certificates are checked against)",
                         cc->verify->args[0].s);
    if (outer != NULL && mode == outer->eff.mode && ca == outer->eff_ca) {
        cc->eff = outer->eff;
        cc->eff_ca = ca;
        return 0;
    }
    if (tls_verify_id(mode, ca->args[0].s, cc->eff.id, why, sizeof(why)) < 0)
        return conf_errf(err, &ca->args[0].pos, "'tls_client_ca': cannot read '%s': %s",
                         ca->args[0].s, why);
    cc->eff.mode = mode;
    cc->eff_ca = ca;
    return 0;
}

static int
check_ocsp(const struct tls_ctx_conf *cc, struct conf_err *err)
{
    if (cc->ocsp != NULL && cc->ncerts != 1)
        return conf_errf(err, &cc->ocsp->pos,
                         "'tls_ocsp' staples one certificate's response: this context has %zu "
                         "'tls_certificate'",
                         cc->ncerts);
    return 0;
}

static int
finish_main(struct conf_build *b, struct tls_main_conf *m, struct conf_err *err)
{
    struct conf *c = conf_build_conf(b);
    struct tls_ctx_conf **sites = NULL;
    int rc = -1;

    if (resolve_verify(&m->ctx, NULL, err) < 0 || check_ocsp(&m->ctx, err) < 0)
        return -1;
    sites = calloc(c->nsites ? c->nsites : 1, sizeof(*sites));
    if (sites == NULL)
        return conf_errf(err, NULL, "%s: out of memory", c->path);
    for (size_t i = 0; i < c->nsites; i++) {
        const struct conf_site *s = &c->sites[i];
        struct tls_ctx_conf *cc = site_of(s);

        if (cc == NULL) {
            conf_errf(err, &s->pos, "out of memory");
            goto out;
        }
        if (resolve_verify(cc, &m->ctx, err) < 0 || check_ocsp(cc, err) < 0)
            goto out;
        if (cc->ncerts == 0 && (cc->eff.mode != m->ctx.eff.mode ||
                                memcmp(cc->eff.id, m->ctx.eff.id, sizeof(cc->eff.id)) != 0)) {
            const struct conf_node *at = cc->verify != NULL ? cc->verify : cc->client_ca;
            conf_errf(err, &at->pos,
                      "site '%s' verifies client certificates differently from the top level, "
                      "so it needs its own 'tls_certificate' (the certificate chosen by SNI "
                      "carries the verification)",
                      site_name(s));
            goto out;
        }
        sites[i] = cc;
    }
    if (tls_set_build(c, m, sites, &m->set, err) < 0)
        goto out;
    for (size_t i = 0; i < c->nlistens; i++) {
        if (c->listens[i].tls && m->set == NULL) {
            conf_errf(err, &c->listens[i].pos,
                      "'listen %s tls' needs a 'tls_certificate' (at the top level or in a site)",
                      c->listens[i].addr.text);
            goto out;
        }
    }
    rc = 0;
out:
    free(sites);
    return rc;
}

static int
tls_finish(struct conf_build *b, enum conf_ctx ctx, void *obj, void *outer, struct conf_err *err)
{
    struct tls_main_conf *m;

    if (ctx == CONF_CTX_ORIGIN) {
        struct tls_origin *t = origin_of(obj);
        m = outer;
        if (t == NULL || m == NULL)
            return conf_errf(err, &((const struct conf_origin *)obj)->pos, "out of memory");
        return tls_origin_finish(t, obj, &m->system_store, err);
    }
    if (ctx != CONF_CTX_MAIN)
        return 0; /* sites are handled from the top (finish_main) */
    m = main_of(obj);
    if (m == NULL)
        return conf_errf(err, NULL, "%s: out of memory", conf_build_conf(b)->path);
    return finish_main(b, m, err);
}

static void
tls_release(struct conf *c)
{
    struct tls_main_conf *m = main_of(c);

    for (size_t i = 0; i < c->norigins; i++)
        tls_origin_release(origin_of(&c->origins[i]));
    if (m != NULL && m->set != NULL) {
        tls_set_unref(m->set);
        m->set = NULL;
    }
    if (m != NULL && m->system_store != NULL) {
        tls_origin_store_free(m->system_store);
        m->system_store = NULL;
    }
}

/* ---- the table ------------------------------------------------------------------------------ */

#define M CONF_CTX_MAIN
#define O CONF_CTX_ORIGIN
#define S CONF_CTX_SITE
#define U CONF_F_UNIQUE
#define ANY CONF_ARGS_ANY

static const struct conf_directive tls_directives[] = {
    {"tls_certificate", M, 0, 2, 3, "a certificate file and a key file, then optionally 'default'",
     set_certificate_main},
    {"tls_certificate", S, 0, 2, 3, "a certificate file and a key file, then optionally 'default'",
     set_certificate_site},
    {"tls_protocols", M, U, 1, 2, "TLSv1.2 and/or TLSv1.3", set_protocols},
    {"tls_ciphers", M, U, 1, 1, "an OpenSSL cipher list (TLS 1.2)", set_ciphers},
    {"tls_ciphersuites", M, U, 1, 1, "an OpenSSL ciphersuite list (TLS 1.3)", set_ciphers},
    {"tls_session_ticket_rotate", M, U, 1, 1, "a duration", set_rotate},
    {"tls_ocsp", M, U, 1, 1, "a DER OCSP response file", set_ocsp_main},
    {"tls_ocsp", S, U, 1, 1, "a DER OCSP response file", set_ocsp_site},
    {"tls_client_ca", M, U, 1, 1, "a PEM file of CA certificates", set_ca_main},
    {"tls_client_ca", S, U, 1, 1, "a PEM file of CA certificates", set_ca_site},
    {"tls_verify_client", M, U, 1, 1, "on, optional or off", set_verify_main},
    {"tls_verify_client", S, U, 1, 1, "on, optional or off", set_verify_site},
    {"tls", O, U, 1, 1, "on or off", set_origin_tls},
    {"tls_ca", O, U, 1, 1, "a PEM file of CA certificates", set_origin_ca},
    {"tls_verify", O, U, 1, 1, "on or off", set_origin_verify},
    {"tls_server_name", O, U, 1, 1, "a host name", set_origin_server_name},
};

static struct conf_module tls_module = {
    .name = "tls",
    .directives = tls_directives,
    .ndirectives = sizeof(tls_directives) / sizeof(tls_directives[0]),
    .create = tls_create,
    .finish = tls_finish,
    .release = tls_release,
};

static void
register_once_fn(void)
{
    register_rc = conf_module_register(&tls_module);
    registered = register_rc == 0;
}

int
tls_conf_register(void)
{
    pthread_once(&register_once, register_once_fn);
    return register_rc;
}

struct tls_set *
tls_conf_set(const struct conf *c)
{
    const struct tls_main_conf *m;

    if (!registered || c == NULL)
        return NULL;
    m = main_of(c);
    return m != NULL ? m->set : NULL;
}

const struct tls_verify_conf *
tls_conf_site_verify(const struct conf *c, const struct conf_site *s)
{
    const struct tls_ctx_conf *cc;

    if (!registered || c == NULL)
        return NULL;
    if (s == NULL) {
        const struct tls_main_conf *m = main_of(c);
        cc = m != NULL ? &m->ctx : NULL;
    } else {
        cc = site_of(s);
    }
    return cc != NULL && cc->eff.mode != TLS_VERIFY_OFF ? &cc->eff : NULL;
}

const struct tls_origin *
tls_conf_origin(const struct conf *c, const struct conf_origin *o)
{
    const struct tls_origin *t;

    (void)c;
    if (!registered || o == NULL)
        return NULL;
    t = origin_of(o);
    return t != NULL && t->enabled && t->ctx != NULL ? t : NULL;
}
