/*
 * Loader: copies a function .so to the run dir under its sha256, dlopens the
 * copy, checks the ABI and calls init once per build. See compute.h.
 *
 * Why a copy named by content: dlopen of a path already loaded returns the
 * old handle even when the file changed, and a rebuilt .so overwritten in
 * place under a running process corrupts its mappings. A content-named
 * copy gives each build its own path (ATS runtime dir, Envoy sha path) and
 * an unchanged build the same one, so reloads reuse it without a second
 * init.
 */
#include "compute/compute.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define LOADER_MAGIC 0x4c4f4144u /* "LOAD" */
#define BUILD_MAGIC 0x4255494cu  /* "BUIL" */
#define POISON 0xdeadbeefu
#define SO_MAX (64u << 20)
#define NAME_MAX_LEN 64

struct compute_build {
    unsigned magic;
    int _refs; /* guarded by the loader lock; owners: conf generations / callers of load */
    struct compute_loader *_loader;
    struct compute_build *_next;
    char name[NAME_MAX_LEN + 1];
    char sha[65];
    char *path;
    void *dl;
    const struct efn_plugin *plugin;
    unsigned inits;
};

struct compute_loader {
    unsigned magic;
    pthread_mutex_t lock;
    char *run_dir;
    const struct efn_host *host;
    struct compute_build *builds;
    bool dead; /* freed by its owner; the last build unref frees the rest */
    size_t nbuilds;
};

static const struct efn_host *global_host;

static int
errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int
mkdir_p(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path), i;

    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -1;
            tmp[i] = c;
        }
    }
    return 0;
}

struct compute_loader *
compute_loader_new(const char *run_dir, const struct efn_host *host, char *err, size_t errlen)
{
    struct compute_loader *l;

    if (mkdir_p(run_dir) < 0) {
        errf(err, errlen, "function run dir %s: %s", run_dir, strerror(errno));
        return NULL;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL || (l->run_dir = strdup(run_dir)) == NULL) {
        free(l);
        errf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    l->magic = LOADER_MAGIC;
    l->host = host != NULL ? host : compute_host_stub();
    return l;
}

static void
loader_destroy(struct compute_loader *l)
{
    pthread_mutex_destroy(&l->lock);
    free(l->run_dir);
    l->magic = POISON;
    free(l);
}

void
compute_loader_free(struct compute_loader *l)
{
    bool empty;

    if (l == NULL)
        return;
    if (l->magic != LOADER_MAGIC)
        abort();
    pthread_mutex_lock(&l->lock);
    l->dead = true;
    empty = l->nbuilds == 0;
    pthread_mutex_unlock(&l->lock);
    if (empty)
        loader_destroy(l);
}

/* Reads the whole file; sets *data (malloc'd) and *len. */
static int
read_file(const char *path, unsigned char **data, size_t *len, char *why, size_t whylen)
{
    struct stat st;
    unsigned char *buf = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(why, whylen, "%.400s: %s", path,
                 errno == ENOENT ? "no such file" : strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)SO_MAX) {
        snprintf(why, whylen, "%.400s: not a regular file of at most 64 MiB", path);
        goto fail;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(why, whylen, "%.400s: read failed", path);
            goto fail;
        }
        got += (size_t)n;
    }
    close(fd);
    *data = buf;
    *len = got;
    return 0;
fail:
    free(buf);
    close(fd);
    return -1;
}

static int
sha256_hex(const unsigned char *d, size_t n, char hex[65])
{
    unsigned char md[32];
    unsigned int mdl = 0;
    size_t i;

    if (EVP_Digest(d, n, md, &mdl, EVP_sha256(), NULL) != 1 || mdl != 32)
        return -1;
    for (i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* Writes the copy atomically (tmp + rename) unless it already exists. */
static int
write_copy(const char *path, const unsigned char *d, size_t n, char *why, size_t whylen)
{
    char tmp[4200];
    size_t off = 0;
    int fd;

    if (access(path, R_OK) == 0)
        return 0; /* same name = same content */
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (fd < 0) {
        snprintf(why, whylen, "%.400s: %s", tmp, strerror(errno));
        return -1;
    }
    while (off < n) {
        ssize_t w = write(fd, d + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(why, whylen, "%.400s: write failed", tmp);
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        snprintf(why, whylen, "%.400s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static bool
name_ok(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* The version checks; why filled on refusal. */
static int
check_plugin(const struct efn_plugin *p, const char *name, char *why, size_t whylen)
{
    if (p->abi_major != EFN_ABI_MAJOR || p->abi_minor > EFN_ABI_MINOR) {
        snprintf(why, whylen, "built for ABI %u.%u, edge has %u.%u", p->abi_major, p->abi_minor,
                 EFN_ABI_MAJOR, EFN_ABI_MINOR);
        return -1;
    }
    if (p->size < EFN_PLUGIN_SIZE_V1_0) {
        snprintf(why, whylen, "descriptor size %u is smaller than ABI 1.0's %zu", p->size,
                 (size_t)EFN_PLUGIN_SIZE_V1_0);
        return -1;
    }
    if (p->name == NULL || strcmp(p->name, name) != 0) {
        snprintf(why, whylen, "the file declares name '%s'", p->name != NULL ? p->name : "(null)");
        return -1;
    }
    if (p->instance_new == NULL) {
        snprintf(why, whylen, "no instance_new");
        return -1;
    }
    return 0;
}

struct compute_build *
compute_build_load(struct compute_loader *l, const char *function_dir, const char *name,
                   char *err, size_t errlen)
{
    struct compute_build *b = NULL, *it;
    unsigned char *data = NULL;
    size_t len = 0;
    char src[4096], why[COMPUTE_ERR_MAX], sha[65], initerr[COMPUTE_ERR_MAX];
    void *dl = NULL;
    const struct efn_plugin *p;
    struct timespec t0, t1;
    int n;

    if (l == NULL || l->magic != LOADER_MAGIC)
        abort();
    why[0] = '\0';
    if (!name_ok(name)) {
        errf(err, errlen, "function '%s': bad name (1-64 of A-Z a-z 0-9 _ -)", name);
        return NULL;
    }
    n = snprintf(src, sizeof(src), "%s/%s.so", function_dir, name);
    if (n < 0 || (size_t)n >= sizeof(src)) {
        errf(err, errlen, "function '%s': function_dir too long", name);
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (read_file(src, &data, &len, why, sizeof(why)) < 0)
        goto fail;
    if (sha256_hex(data, len, sha) < 0) {
        snprintf(why, sizeof(why), "sha256 failed");
        goto fail;
    }
    pthread_mutex_lock(&l->lock);
    for (it = l->builds; it != NULL; it = it->_next) {
        if (strcmp(it->sha, sha) == 0 && strcmp(it->name, name) == 0) {
            it->_refs++;
            pthread_mutex_unlock(&l->lock);
            free(data);
            return it;
        }
    }
    pthread_mutex_unlock(&l->lock);

    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        snprintf(why, sizeof(why), "out of memory");
        goto fail;
    }
    b->magic = BUILD_MAGIC;
    memcpy(b->name, name, strlen(name) + 1);
    memcpy(b->sha, sha, sizeof(sha));
    n = snprintf(src, sizeof(src), "%s/%s-%s.so", l->run_dir, name, sha);
    if (n < 0 || (size_t)n >= sizeof(src) || (b->path = strdup(src)) == NULL) {
        snprintf(why, sizeof(why), "run dir path too long");
        goto fail;
    }
    if (write_copy(b->path, data, len, why, sizeof(why)) < 0)
        goto fail;
    free(data);
    data = NULL;
    dl = dlopen(b->path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        const char *e = dlerror();
        snprintf(why, sizeof(why), "dlopen: %.400s", e != NULL ? e : "failed");
        goto fail;
    }
    p = dlsym(dl, EFN_PLUGIN_SYMBOL);
    if (p == NULL) {
        snprintf(why, sizeof(why), "%.300s/%s.so has no symbol '%s' (not an edge function?)",
                 function_dir, name, EFN_PLUGIN_SYMBOL);
        goto fail;
    }
    if (check_plugin(p, name, why, sizeof(why)) < 0)
        goto fail;
    if (p->init != NULL) {
        initerr[0] = '\0';
        if (p->init(l->host, initerr, sizeof(initerr)) != 0) {
            initerr[sizeof(initerr) - 1] = '\0';
            snprintf(why, sizeof(why), "init failed: %.400s",
                     initerr[0] != '\0' ? initerr : "(no message)");
            goto fail;
        }
    }
    b->dl = dl;
    b->plugin = p;
    b->inits = 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    l->host->log(NULL, EFN_LOG_INFO, "loaded '%s' %s (build %.16s) in %.3f ms: copy, dlopen, init",
                 name, p->version != NULL ? p->version : "", sha,
                 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    b->_refs = 1;
    b->_loader = l;
    pthread_mutex_lock(&l->lock);
    b->_next = l->builds;
    l->builds = b;
    l->nbuilds++;
    pthread_mutex_unlock(&l->lock);
    return b;
fail:
    errf(err, errlen, "function '%s': %s", name, why);
    if (dl != NULL)
        dlclose(dl);
    if (b != NULL) {
        free(b->path);
        free(b);
    }
    free(data);
    return NULL;
}

struct compute_build *
compute_build_ref(struct compute_build *b)
{
    if (b->magic != BUILD_MAGIC)
        abort();
    pthread_mutex_lock(&b->_loader->lock);
    b->_refs++;
    pthread_mutex_unlock(&b->_loader->lock);
    return b;
}

void
compute_build_unref(struct compute_build *b)
{
    struct compute_loader *l;
    struct compute_build **pp;
    bool last, destroy_loader = false;

    if (b == NULL)
        return;
    if (b->magic != BUILD_MAGIC)
        abort();
    l = b->_loader;
    pthread_mutex_lock(&l->lock);
    last = --b->_refs == 0;
    if (last) {
        for (pp = &l->builds; *pp != NULL; pp = &(*pp)->_next)
            if (*pp == b) {
                *pp = b->_next;
                break;
            }
        l->nbuilds--;
        destroy_loader = l->dead && l->nbuilds == 0;
    }
    pthread_mutex_unlock(&l->lock);
    if (!last)
        return;
    if (b->plugin->fini != NULL)
        b->plugin->fini();
    dlclose(b->dl);
    free(b->path);
    b->magic = POISON;
    free(b);
    if (destroy_loader)
        loader_destroy(l);
}

const struct efn_plugin *
compute_build_plugin(const struct compute_build *b)
{
    return b->plugin;
}

const char *
compute_build_sha256(const struct compute_build *b)
{
    return b->sha;
}

const char *
compute_build_path(const struct compute_build *b)
{
    return b->path;
}

unsigned
compute_build_inits(const struct compute_build *b)
{
    return b->inits;
}

int
compute_instance_new(struct compute_build *b, const efn_arg *args, size_t nargs, void **inst,
                     char *err, size_t errlen)
{
    char why[COMPUTE_ERR_MAX] = "";

    *inst = NULL;
    if (b->plugin->instance_new(args, nargs, inst, why, sizeof(why)) != 0) {
        why[sizeof(why) - 1] = '\0';
        if (*inst != NULL && b->plugin->instance_free != NULL)
            b->plugin->instance_free(*inst);
        *inst = NULL;
        return errf(err, errlen, "function '%s': %s", b->name,
                    why[0] != '\0' ? why : "instance_new failed (no message)");
    }
    return 0;
}

void
compute_instance_free(struct compute_build *b, void *inst)
{
    if (inst != NULL && b->plugin->instance_free != NULL)
        b->plugin->instance_free(inst);
}

/* ---- the stub host (edge -t, or before the proxy sets the real one) ---- */

static void __attribute__((format(printf, 3, 4)))
stub_log(efn_req *r, int level, const char *fmt, ...)
{
    va_list ap;

    (void)r;
    if (level > EFN_LOG_WARN)
        return;
    va_start(ap, fmt);
    fputs("edge function: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static efn_str
stub_str(efn_req *r)
{
    (void)r;
    return (efn_str){"", 0};
}

static int
stub_int(efn_req *r)
{
    (void)r;
    return 0;
}

static int
stub_hdr_get(efn_req *r, efn_msg m, efn_str n, size_t i, efn_str *o)
{
    (void)r, (void)m, (void)n, (void)i, (void)o;
    return EFN_E_PHASE;
}

static int
stub_hdr_set(efn_req *r, efn_msg m, efn_str n, efn_str v)
{
    (void)r, (void)m, (void)n, (void)v;
    return EFN_E_PHASE;
}

static int
stub_hdr_del(efn_req *r, efn_msg m, efn_str n)
{
    (void)r, (void)m, (void)n;
    return EFN_E_PHASE;
}

static int
stub_set(efn_req *r, efn_str s)
{
    (void)r, (void)s;
    return EFN_E_PHASE;
}

static int
stub_ttl(efn_req *r, int32_t s)
{
    (void)r, (void)s;
    return EFN_E_PHASE;
}

static int
stub_body_get(efn_req *r, efn_msg m, efn_str *o)
{
    (void)r, (void)m, (void)o;
    return EFN_E_PHASE;
}

static int
stub_body_set(efn_req *r, efn_msg m, efn_str b)
{
    (void)r, (void)m, (void)b;
    return EFN_E_PHASE;
}

static int
stub_respond(efn_req *r, int s, const efn_hdr *h, size_t n, efn_str b)
{
    (void)r, (void)s, (void)h, (void)n, (void)b;
    return EFN_E_PHASE;
}

static void *
stub_alloc(efn_req *r, size_t n)
{
    (void)r, (void)n;
    return NULL;
}

static void **
stub_slot(efn_req *r)
{
    static void *dummy;

    (void)r;
    dummy = NULL;
    return &dummy;
}

static int
stub_kv_get(efn_req *r, efn_str k, efn_kv_cb cb, void *ud)
{
    (void)r, (void)k, (void)cb, (void)ud;
    return EFN_E_PHASE;
}

static int
stub_kv_set(efn_req *r, efn_str k, efn_str v, uint32_t t, efn_kv_cb cb, void *ud)
{
    (void)r, (void)k, (void)v, (void)t, (void)cb, (void)ud;
    return EFN_E_PHASE;
}

static int
stub_kv_incr(efn_req *r, efn_str k, int64_t d, efn_kv_cb cb, void *ud)
{
    (void)r, (void)k, (void)d, (void)cb, (void)ud;
    return EFN_E_PHASE;
}

static int
stub_kv_expire(efn_req *r, efn_str k, uint32_t t, efn_kv_cb cb, void *ud)
{
    (void)r, (void)k, (void)t, (void)cb, (void)ud;
    return EFN_E_PHASE;
}

static int
stub_kv_incr_window(efn_req *r, efn_str k, int64_t d, uint32_t w, efn_kv_cb cb, void *ud)
{
    (void)r, (void)k, (void)d, (void)w, (void)cb, (void)ud;
    return EFN_E_PHASE;
}

static const struct efn_host stub_host = {
    .abi_major = EFN_ABI_MAJOR,
    .abi_minor = EFN_ABI_MINOR,
    .size = sizeof(struct efn_host),
    .log = stub_log,
    .method = stub_str,
    .path = stub_str,
    .authority = stub_str,
    .client_ip = stub_str,
    .status = stub_int,
    .hdr_get = stub_hdr_get,
    .hdr_set = stub_hdr_set,
    .hdr_add = stub_hdr_set,
    .hdr_del = stub_hdr_del,
    .set_path = stub_set,
    .set_authority = stub_set,
    .set_origin = stub_set,
    .set_cache_key = stub_set,
    .set_cache_ttl = stub_ttl,
    .body_get = stub_body_get,
    .body_set = stub_body_set,
    .respond = stub_respond,
    .alloc = stub_alloc,
    .slot = stub_slot,
    .kv_get = stub_kv_get,
    .kv_set = stub_kv_set,
    .kv_incr = stub_kv_incr,
    .kv_del = stub_kv_get,
    .kv_expire = stub_kv_expire,
    .kv_incr_window = stub_kv_incr_window,
};

const struct efn_host *
compute_host_stub(void)
{
    return &stub_host;
}

void
compute_set_host(const struct efn_host *host)
{
    global_host = host;
}

const struct efn_host *
compute_host_current(void)
{
    return global_host != NULL ? global_host : &stub_host;
}
