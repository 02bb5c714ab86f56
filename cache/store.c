/*
 * Object files: the streaming writer (tmp file + rename), the reader (checks
 * magic, version, CRC of the head, sizes, key), Vary stubs and variants,
 * 304 refresh (new head, body copied with copy_file_range) and the file side
 * of purges. Layout: see the top of cache/cache.h.
 */
#include "cache/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache-int.h"

#define VARY_NAMES_CAP 2048
#define COPY_CHUNK (1u << 20)
/* A writer gathers the file in a buffer and writes it in pieces of this
 * size at file offsets that are multiples of it. The page cache keeps a
 * file in folios as large as the writes that made them (ext4, Linux 6.x),
 * and sendfile() walks those folios on every hit: written as the origin's
 * socket hands it over (4 KiB at a time, unaligned behind the head), a 4 MiB
 * object cost each later hit about a third more kernel time in
 * filemap_splice_read / filemap_get_read_batch than written this way. The
 * price is this much memory per object being stored (less for one whose
 * Content-Length says it is smaller). */
#define WRITE_CHUNK (256u * 1024)

/* ---- paths ----------------------------------------------------------------------------------- */

void
cache_path(const uint8_t id[CACHE_ID_LEN], uint64_t variant, char *buf, size_t cap)
{
    char hex[CACHE_ID_HEX + 1];

    cache_id_hex(id, hex);
    if (variant != 0)
        snprintf(buf, cap, "%.2s/%.2s/%s-%016llx", hex, hex + 2, hex, (unsigned long long)variant);
    else
        snprintf(buf, cap, "%.2s/%.2s/%s", hex, hex + 2, hex);
}

/* mkdir -p "ab/cd" under dirfd */
static int
ensure_dirs(struct cache *c, const char *path)
{
    char d[8];

    memcpy(d, path, 2);
    d[2] = '\0';
    if (mkdirat(c->dirfd, d, 0755) < 0 && errno != EEXIST)
        return -1;
    memcpy(d, path, 5);
    d[5] = '\0';
    if (mkdirat(c->dirfd, d, 0755) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int
fsync_dir_of(struct cache *c, const char *path)
{
    char d[8];
    int fd, rc;

    memcpy(d, path, 5);
    d[5] = '\0';
    fd = openat(c->dirfd, d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

void
cache_unlink(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant)
{
    char path[80];

    cache_path(id, variant, path, sizeof(path));
    (void)unlinkat(c->dirfd, path, 0);
}

/* ---- small I/O helpers ----------------------------------------------------------------------- */

static int
write_all(int fd, const void *p, size_t len)
{
    const char *s = p;

    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
pread_all(int fd, void *p, size_t len, off_t off)
{
    char *s = p;

    while (len > 0) {
        ssize_t n = pread(fd, s, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static int
pwrite_all(int fd, const void *p, size_t len, off_t off)
{
    const char *s = p;

    while (len > 0) {
        ssize_t n = pwrite(fd, s, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static uint32_t
meta_crc(const struct cache_disk_meta *m)
{
    struct cache_disk_meta t = *m;

    t.head_crc = 0;
    return cache_crc32c(0, &t, sizeof(t));
}

/* ---- reading --------------------------------------------------------------------------------- */

/* The first read of a file takes this much: meta, key, vary block and
 * headers of most objects in one pread instead of two. */
#define HEAD_READ 4096

int
cache_file_read_head(int fd, struct cache_disk_meta *m, char **bufp)
{
    struct stat st;
    size_t tail, have;
    ssize_t n;
    char first[HEAD_READ], *buf;

    *bufp = NULL;
    do
        n = pread(fd, first, sizeof(first), 0);
    while (n < 0 && errno == EINTR);
    if (n < (ssize_t)sizeof(*m))
        return n < 0 ? CACHE_EIO : CACHE_ECORRUPT; /* short file */
    memcpy(m, first, sizeof(*m));
    if (m->magic != CACHE_MAGIC || m->version != CACHE_VERSION || m->head_crc != meta_crc(m))
        return CACHE_ECORRUPT;
    if (m->key_len == 0 || m->key_len > CACHE_KEY_MAX || m->vary_len > CACHE_VARY_KEY_MAX ||
        m->headers_len > CACHE_HEADERS_MAX ||
        (m->kind != CACHE_KIND_OBJECT && m->kind != CACHE_KIND_VARY))
        return CACHE_ECORRUPT;
    if (fstat(fd, &st) < 0)
        return CACHE_EIO;
    tail = (size_t)m->key_len + m->vary_len + m->headers_len;
    if ((uint64_t)st.st_size != sizeof(*m) + tail + m->body_len)
        return CACHE_ECORRUPT; /* truncated (or grown) */
    buf = malloc(tail + 1);
    if (buf == NULL)
        return CACHE_ENOMEM;
    have = (size_t)n - sizeof(*m);
    if (have > tail)
        have = tail;
    memcpy(buf, first + sizeof(*m), have);
    if ((have < tail && pread_all(fd, buf + have, tail - have, (off_t)(sizeof(*m) + have)) < 0) ||
        cache_crc32c(0, buf, tail) != m->tail_crc) {
        free(buf);
        return CACHE_ECORRUPT;
    }
    buf[tail] = '\0';
    *bufp = buf;
    return 0;
}

/* A corrupt file of key: removed from disk, the index and memory. */
static void
drop_corrupt(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant, const char *key,
             size_t klen)
{
    atomic_fetch_add(&c->n.corrupt, 1);
    cache_unlink(c, id, variant);
    cache_index_remove(c, id, variant);
    cache_mem_forget(c, key, klen);
}

/* Opens and checks one file of key. 0 + fd/meta/buf, CACHE_MISS, or <0. A
 * corrupt file is removed (CACHE_ECORRUPT). */
static int
open_file(struct cache *c, const uint8_t id[CACHE_ID_LEN], uint64_t variant, const char *key,
          size_t klen, int *fdp, struct cache_disk_meta *m, char **buf)
{
    char path[80];
    int fd, rc;

    cache_path(id, variant, path, sizeof(path));
    fd = openat(c->dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? CACHE_MISS : CACHE_EIO;
    rc = cache_file_read_head(fd, m, buf);
    if (rc == CACHE_ECORRUPT)
        drop_corrupt(c, id, variant, key, klen);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *fdp = fd;
    return 0;
}

static struct cache_obj *
obj_make(const uint8_t id[CACHE_ID_LEN], int fd, const struct cache_disk_meta *m, char *buf)
{
    struct cache_obj *o = calloc(1, sizeof(*o));

    if (o == NULL)
        return NULL;
    o->status = (int)m->status;
    o->policy.flags = m->pol_flags;
    o->policy.request_time = m->request_time;
    o->policy.response_time = m->response_time;
    o->policy.initial_age = m->initial_age;
    o->policy.lifetime = m->lifetime;
    o->policy.swr = m->swr;
    o->policy.sie = m->sie;
    o->policy.date = m->date;
    o->policy.last_modified = m->last_modified;
    o->key = buf;
    o->key_len = m->key_len;
    o->headers = buf + m->key_len + m->vary_len;
    o->headers_len = m->headers_len;
    o->fd = fd;
    o->body_off = sizeof(*m) + (uint64_t)m->key_len + m->vary_len + m->headers_len;
    o->body_len = m->body_len;
    memcpy(o->_id, id, CACHE_ID_LEN);
    o->_variant = m->variant;
    o->_body_crc = m->body_crc;
    o->_buf = buf;
    return o;
}

int
cache_open(struct cache *c, const char *key, size_t klen, const struct cache_hdr *req, size_t nreq,
           struct cache_obj **out)
{
    uint8_t id[CACHE_ID_LEN];
    struct cache_disk_meta m;
    struct cache_mem_probe probe;
    char *buf = NULL, *stub = NULL, vkey[CACHE_VARY_KEY_MAX];
    size_t vlen, stub_vlen = 0;
    uint64_t variant = 0, pseq;
    uint32_t igen;
    int fd = -1, rc;

    *out = NULL;
    pseq = atomic_load(&c->purge_seq);
    if (c->mem != NULL && cache_mem_open(c, key, klen, req, nreq, &probe, out) == CACHE_OK) {
        (*out)->_purge_seq = pseq;
        (*out)->_inval_gen = (uint32_t)atomic_load(&c->inval_gen[cache_inval_slot((*out)->_id)]);
        atomic_fetch_add(&c->n.hits, 1);
        return CACHE_OK;
    }
    cache_key_id(key, klen, id);
    igen = (uint32_t)atomic_load(&c->inval_gen[cache_inval_slot(id)]);
    rc = open_file(c, id, 0, key, klen, &fd, &m, &buf);
    if (rc != 0)
        goto miss;
    if (m.key_len != klen || memcmp(buf, key, klen) != 0) {
        rc = CACHE_MISS; /* a hash collision: treat as absent */
        goto miss;
    }
    if (m.kind == CACHE_KIND_VARY) {
        rc = cache_vary_key(buf + m.key_len, m.vary_len, req, nreq, vkey, sizeof(vkey), &vlen);
        close(fd);
        fd = -1;
        stub = buf; /* its name list goes to the memory tier with the variant */
        stub_vlen = m.vary_len;
        buf = NULL;
        if (rc < 0)
            goto vary_miss;
        variant = cache_variant_id(vkey, vlen);
        rc = open_file(c, id, variant, key, klen, &fd, &m, &buf);
        if (rc != 0)
            goto vary_miss;
        if (m.kind != CACHE_KIND_OBJECT || m.key_len != klen || memcmp(buf, key, klen) != 0 ||
            m.vary_len != vlen || memcmp(buf + m.key_len, vkey, vlen) != 0)
            goto vary_miss;
    } else if (m.kind != CACHE_KIND_OBJECT) {
        rc = CACHE_MISS;
        goto miss;
    }
    *out = obj_make(id, fd, &m, buf);
    if (*out == NULL) {
        rc = CACHE_ENOMEM;
        goto miss;
    }
    fd = -1;
    buf = NULL;
    (*out)->_purge_seq = pseq;
    (*out)->_inval_gen = igen;
    if (c->mem != NULL && cache_mem_load(c, &probe, *out, stub != NULL ? stub + klen : NULL,
                                         stub_vlen) == CACHE_ECORRUPT) {
        /* a body that does not match its CRC (sendfile would have sent it) */
        cache_obj_free(*out);
        *out = NULL;
        drop_corrupt(c, id, variant, key, klen);
        rc = CACHE_ECORRUPT;
        if (variant != 0)
            goto vary_miss;
        goto miss;
    }
    free(stub);
    cache_index_touch(c, id, variant);
    atomic_fetch_add(&c->n.hits, 1);
    return CACHE_OK;
vary_miss:
    if (rc >= 0 || rc == CACHE_ECORRUPT)
        rc = CACHE_VARY_MISS;
miss:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(stub);
    if (rc == CACHE_ECORRUPT)
        rc = CACHE_MISS;
    atomic_fetch_add(&c->n.misses, 1);
    return rc;
}

void
cache_obj_free(struct cache_obj *o)
{
    if (o == NULL)
        return;
    if (o->fd >= 0)
        close(o->fd);
    if (o->_mem != NULL)
        cache_mem_unref_obj(o);
    free(o->_buf);
    free(o);
}

bool
cache_obj_header_next(const struct cache_obj *o, size_t *pos, struct cache_hdr *out)
{
    const char *s = o->headers, *eol, *colon;
    size_t i = *pos, n = o->headers_len;

    while (i < n) {
        eol = memchr(s + i, '\n', n - i);
        if (eol == NULL)
            eol = s + n;
        colon = memchr(s + i, ':', (size_t)(eol - (s + i)));
        *pos = (size_t)(eol - s) + (eol < s + n);
        if (colon != NULL) {
            const char *v = colon + 1;
            size_t vl = (size_t)(eol - v);
            if (vl > 0 && v[vl - 1] == '\r')
                vl--;
            cache_trim(&v, &vl);
            out->name = s + i;
            out->nlen = (size_t)(colon - (s + i));
            out->value = v;
            out->vlen = vl;
            return true;
        }
        i = *pos;
    }
    *pos = n;
    return false;
}

int
cache_obj_verify_body(struct cache *c, struct cache_obj *o)
{
    char *chunk = malloc(COPY_CHUNK);
    uint64_t done = 0;
    uint32_t crc = 0;
    int rc = 0;

    if (o->body != NULL) { /* in memory: checked when it was loaded, and immutable since */
        free(chunk);
        return cache_crc32c(0, o->body, (size_t)o->body_len) == o->_body_crc ? 0 : CACHE_ECORRUPT;
    }
    if (chunk == NULL)
        return CACHE_ENOMEM;
    while (done < o->body_len) {
        size_t n = o->body_len - done > COPY_CHUNK ? COPY_CHUNK : (size_t)(o->body_len - done);
        if (pread_all(o->fd, chunk, n, (off_t)(o->body_off + done)) < 0) {
            rc = CACHE_ECORRUPT;
            break;
        }
        crc = cache_crc32c(crc, chunk, n);
        done += n;
    }
    free(chunk);
    if (rc == 0 && crc != o->_body_crc)
        rc = CACHE_ECORRUPT;
    if (rc == CACHE_ECORRUPT)
        drop_corrupt(c, o->_id, o->_variant, o->key, o->key_len);
    return rc;
}

size_t
cache_conditional_headers(const struct cache_obj *o, char *buf, size_t cap)
{
    struct cache_hdr h;
    size_t pos = 0, len = 0;
    int n;

    if (cap > 0)
        buf[0] = '\0';
    while (cache_obj_header_next(o, &pos, &h)) {
        if (h.nlen == 4 && strncasecmp(h.name, "etag", 4) == 0 && h.vlen > 0) {
            n = snprintf(buf + len, cap - len, "If-None-Match: %.*s\r\n", (int)h.vlen, h.value);
            if (n < 0 || (size_t)n >= cap - len)
                goto small;
            len += (size_t)n;
            break;
        }
    }
    if (o->policy.last_modified != CACHE_UNSET) {
        char date[40];
        if (cache_http_date_format(o->policy.last_modified, date, sizeof(date)) == 29) {
            n = snprintf(buf + len, cap - len, "If-Modified-Since: %s\r\n", date);
            if (n < 0 || (size_t)n >= cap - len)
                goto small;
            len += (size_t)n;
        }
    }
    return len;
small:
    if (cap > 0)
        buf[0] = '\0';
    return 0;
}

/* ---- writing --------------------------------------------------------------------------------- */

struct cache_writer {
    struct cache *c;
    int fd;
    char tmp[96]; /* path under dir */
    struct cache_disk_meta m;
    uint8_t id[CACHE_ID_LEN];
    char *vary_names; /* the stub's block when the response varies, else NULL */
    size_t vary_names_len;
    uint64_t purge_seq;
    uint32_t inval_gen; /* c->inval_gen[slot of id] when the writer started */
    uint64_t max_body;
    char *tags;
    char *key;
    bool dead;
    /* the file's bytes not written yet (WRITE_CHUNK): wbuf[0] goes at woff */
    char *wbuf;
    size_t wlen, wcap;
    uint64_t woff;
};

static int
tmp_open(struct cache *c, char *path, size_t cap)
{
    static atomic_uint_fast64_t seq;
    int fd;

    snprintf(path, cap, "%s/%d.%llu", CACHE_TMP_DIR, (int)getpid(),
             (unsigned long long)atomic_fetch_add(&seq, 1));
    fd = openat(c->dirfd, path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_TRUNC, 0644);
    return fd;
}

/* Header block from the response: storable fields only, "Name: value\r\n". */
static char *
header_block(const struct cache_hdr *h, size_t n, const struct cache_cc *cc, size_t *len)
{
    size_t i, total = 0, off = 0;
    char *b;

    for (i = 0; i < n; i++)
        if (cache_hdr_storable(&h[i], h, n, cc))
            total += h[i].nlen + h[i].vlen + 4;
    if (total > CACHE_HEADERS_MAX)
        return NULL;
    b = malloc(total + 1);
    if (b == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (!cache_hdr_storable(&h[i], h, n, cc))
            continue;
        memcpy(b + off, h[i].name, h[i].nlen);
        off += h[i].nlen;
        memcpy(b + off, ": ", 2);
        off += 2;
        memcpy(b + off, h[i].value, h[i].vlen);
        off += h[i].vlen;
        memcpy(b + off, "\r\n", 2);
        off += 2;
    }
    b[off] = '\0';
    *len = off;
    return b;
}

static void
meta_policy(struct cache_disk_meta *m, const struct cache_policy *p)
{
    m->pol_flags = p->flags;
    m->request_time = p->request_time;
    m->response_time = p->response_time;
    m->initial_age = p->initial_age;
    m->lifetime = p->lifetime;
    m->swr = p->swr;
    m->sie = p->sie;
    m->date = p->date;
    m->last_modified = p->last_modified;
}

/* Writes what the buffer holds. */
static int
wbuf_flush(struct cache_writer *w)
{
    if (w->wlen > 0 && write_all(w->fd, w->wbuf, w->wlen) < 0)
        return -1;
    w->woff += w->wlen;
    w->wlen = 0;
    return 0;
}

/* Appends to the file through the buffer. The buffer is written when it
 * reaches the next multiple of wcap in the file, so that after an early
 * flush (cache_writer_flush) the writes are aligned again. */
static int
wbuf_add(struct cache_writer *w, const void *p, size_t n)
{
    const char *s = p;

    while (n > 0) {
        size_t room = w->wcap - (size_t)((w->woff + w->wlen) % w->wcap);
        size_t k = n < room ? n : room;

        memcpy(w->wbuf + w->wlen, s, k);
        w->wlen += k;
        s += k;
        n -= k;
        if (k == room && wbuf_flush(w) < 0)
            return -1;
    }
    return 0;
}

/* Creates a tmp file and buffers meta (placeholder) + key + vary + headers
 * in front of the body. body_len: the body's size when known, else -1. */
static int
writer_start(struct cache_writer *w, const char *key, size_t klen, const char *vary, size_t vlen,
             const char *hb, size_t hlen, int64_t body_len)
{
    struct cache *c = w->c;
    size_t head = sizeof(w->m) + klen + vlen + hlen;

    w->wcap = WRITE_CHUNK;
    if (body_len >= 0 && (uint64_t)body_len < WRITE_CHUNK - head)
        w->wcap = head + (size_t)body_len; /* all of it in one write, at commit */
    if (w->wcap < head)
        w->wcap = head; /* a head over WRITE_CHUNK: not with the limits of cache.h */
    if (w->wcap == 0 || (w->wbuf = malloc(w->wcap)) == NULL)
        return CACHE_ENOMEM;
    w->fd = tmp_open(c, w->tmp, sizeof(w->tmp));
    if (w->fd < 0)
        return CACHE_EIO;
    w->m.magic = CACHE_MAGIC;
    w->m.version = CACHE_VERSION;
    w->m.key_len = (uint32_t)klen;
    w->m.vary_len = (uint32_t)vlen;
    w->m.headers_len = (uint32_t)hlen;
    w->m.tail_crc = cache_crc32c(cache_crc32c(cache_crc32c(0, key, klen), vary, vlen), hb, hlen);
    if (wbuf_add(w, &w->m, sizeof(w->m)) < 0 || wbuf_add(w, key, klen) < 0 ||
        wbuf_add(w, vary, vlen) < 0 || wbuf_add(w, hb, hlen) < 0)
        return CACHE_EIO;
    return 0;
}

struct cache_writer *
cache_writer_new(struct cache *c, const struct cache_store_args *a, int *rcp)
{
    struct cache_writer *w = NULL;
    struct cache_policy pol;
    char names[VARY_NAMES_CAP], vkey[CACHE_VARY_KEY_MAX];
    size_t nlen = 0, vlen = 0, hlen = 0;
    char *hb = NULL;
    int rc = CACHE_ENOMEM;

    if (a->key_len == 0 || a->key_len > CACHE_KEY_MAX) {
        rc = CACHE_EINVAL;
        goto fail;
    }
    if (a->content_length >= 0 && (uint64_t)a->content_length > c->conf.max_object) {
        rc = CACHE_ETOOBIG;
        goto fail;
    }
    rc = cache_vary_names(a->resp, a->nresp, names, sizeof(names), &nlen);
    if (rc == 0 && nlen > 0)
        rc = cache_vary_key(names, nlen, a->req, a->nreq, vkey, sizeof(vkey), &vlen);
    if (rc < 0)
        goto fail;
    hb = header_block(a->resp, a->nresp, &a->ri->cc, &hlen);
    if (hb == NULL) {
        rc = CACHE_ETOOBIG;
        goto fail;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->key = malloc(a->key_len + 1)) == NULL) {
        rc = CACHE_ENOMEM;
        goto fail;
    }
    memcpy(w->key, a->key, a->key_len);
    w->key[a->key_len] = '\0';
    w->c = c;
    w->fd = -1;
    w->purge_seq = atomic_load(&c->purge_seq);
    w->max_body = c->conf.max_object;
    cache_key_id(a->key, a->key_len, w->id);
    w->inval_gen = (uint32_t)atomic_load(&c->inval_gen[cache_inval_slot(w->id)]);
    cache_policy_from_resp(a->ri, a->route, a->request_time, a->response_time, &pol);
    w->m.kind = CACHE_KIND_OBJECT;
    w->m.status = (uint32_t)a->ri->status;
    meta_policy(&w->m, &pol);
    if (nlen > 0) {
        w->m.variant = cache_variant_id(vkey, vlen);
        w->vary_names = malloc(nlen);
        if (w->vary_names == NULL)
            goto fail;
        memcpy(w->vary_names, names, nlen);
        w->vary_names_len = nlen;
    }
    w->tags = cache_tags_from_headers(hb, hlen);
    rc = writer_start(w, a->key, a->key_len, vkey, vlen, hb, hlen, a->content_length);
    if (rc < 0)
        goto fail;
    free(hb);
    return w;
fail:
    free(hb);
    if (rc == CACHE_EIO)
        atomic_fetch_add(&c->n.write_errors, 1);
    atomic_fetch_add(&c->n.store_refused, 1);
    cache_writer_abort(w);
    *rcp = rc;
    return NULL;
}

int
cache_writer_write(struct cache_writer *w, const void *data, size_t len)
{
    if (w->dead)
        return CACHE_EIO;
    if (w->m.body_len + len > w->max_body) {
        w->dead = true;
        return CACHE_ETOOBIG;
    }
    if (wbuf_add(w, data, len) < 0) {
        w->dead = true;
        atomic_fetch_add(&w->c->n.write_errors, 1);
        return CACHE_EIO;
    }
    w->m.body_crc = cache_crc32c(w->m.body_crc, data, len);
    w->m.body_len += len;
    return 0;
}

void
cache_writer_abort(struct cache_writer *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0) {
        close(w->fd);
        (void)unlinkat(w->c->dirfd, w->tmp, 0);
    }
    free(w->vary_names);
    free(w->tags);
    free(w->key);
    free(w->wbuf);
    free(w);
}

/* Bytes in front of the body: meta, key, vary block, headers. */
static uint64_t
head_size(const struct cache_writer *w)
{
    return sizeof(w->m) + (uint64_t)w->m.key_len + w->m.vary_len + w->m.headers_len;
}

int
cache_writer_flush(struct cache_writer *w)
{
    if (w->dead)
        return CACHE_EIO;
    if (wbuf_flush(w) < 0) {
        w->dead = true;
        atomic_fetch_add(&w->c->n.write_errors, 1);
        return CACHE_EIO;
    }
    return 0;
}

uint64_t
cache_writer_body_written(const struct cache_writer *w)
{
    uint64_t head = head_size(w);
    return w->woff > head ? w->woff - head : 0;
}

int
cache_writer_view(struct cache_writer *w, struct cache_obj **out)
{
    size_t tail = (size_t)(head_size(w) - sizeof(w->m));
    char *buf;
    int fd;

    *out = NULL;
    /* the head is still in the buffer (nothing was written yet) */
    if (w->dead || w->woff != 0 || w->wlen < sizeof(w->m) + tail)
        return CACHE_EINVAL;
    buf = malloc(tail + 1);
    if (buf == NULL)
        return CACHE_ENOMEM;
    memcpy(buf, w->wbuf + sizeof(w->m), tail);
    buf[tail] = '\0';
    fd = openat(w->c->dirfd, w->tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        free(buf);
        return CACHE_EIO;
    }
    *out = obj_make(w->id, fd, &w->m, buf);
    if (*out == NULL) {
        close(fd);
        free(buf);
        return CACHE_ENOMEM;
    }
    (*out)->body_len = 0;
    (*out)->_purge_seq = w->purge_seq;
    (*out)->_inval_gen = w->inval_gen;
    return 0;
}

bool
cache_obj_purged(struct cache *c, const struct cache_obj *o)
{
    return atomic_load(&c->purge_seq) != o->_purge_seq ||
           (uint32_t)atomic_load(&c->inval_gen[cache_inval_slot(o->_id)]) != o->_inval_gen;
}

const char *
cache_writer_vary_names(const struct cache_writer *w, size_t *len)
{
    *len = w->vary_names_len;
    return w->vary_names;
}

/* Writes (or keeps) the Vary stub at the id's path. */
static int
write_stub(struct cache_writer *w)
{
    struct cache *c = w->c;
    struct cache_disk_meta m;
    char path[80], tmp[96], *buf = NULL;
    int fd, rc;
    size_t klen = strlen(w->key);

    cache_path(w->id, 0, path, sizeof(path));
    /* keep an identical stub: readers racing us see no gap */
    fd = openat(c->dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        rc = cache_file_read_head(fd, &m, &buf);
        close(fd);
        if (rc == 0 && m.kind == CACHE_KIND_VARY && m.vary_len == w->vary_names_len &&
            memcmp(buf + m.key_len, w->vary_names, m.vary_len) == 0 && m.key_len == klen &&
            memcmp(buf, w->key, klen) == 0) {
            free(buf);
            return 0;
        }
        free(buf);
    }
    memset(&m, 0, sizeof(m));
    m.magic = CACHE_MAGIC;
    m.version = CACHE_VERSION;
    m.kind = CACHE_KIND_VARY;
    m.key_len = (uint32_t)klen;
    m.vary_len = (uint32_t)w->vary_names_len;
    m.status = w->m.status;
    m.response_time = w->m.response_time;
    m.tail_crc = cache_crc32c(cache_crc32c(0, w->key, klen), w->vary_names, w->vary_names_len);
    m.head_crc = meta_crc(&m);
    fd = tmp_open(c, tmp, sizeof(tmp));
    if (fd < 0)
        return CACHE_EIO;
    if (write_all(fd, &m, sizeof(m)) < 0 || write_all(fd, w->key, klen) < 0 ||
        write_all(fd, w->vary_names, w->vary_names_len) < 0 ||
        (c->conf.fsync && fdatasync(fd) < 0) || renameat(c->dirfd, tmp, c->dirfd, path) < 0) {
        close(fd);
        (void)unlinkat(c->dirfd, tmp, 0);
        return CACHE_EIO;
    }
    close(fd);
    cache_index_put(c, w->id, 0, sizeof(m) + klen + w->vary_names_len, w->key, klen, NULL, false);
    return 0;
}

static bool
invalidated(const struct cache_writer *w)
{
    return (uint32_t)atomic_load(&w->c->inval_gen[cache_inval_slot(w->id)]) != w->inval_gen;
}

int
cache_writer_commit(struct cache_writer *w)
{
    struct cache *c = w->c;
    char path[80];
    uint64_t size;
    int rc = CACHE_EIO;

    if (w->dead)
        goto out;
    w->m.head_crc = meta_crc(&w->m);
    if (w->woff == 0) {
        memcpy(w->wbuf, &w->m, sizeof(w->m)); /* still buffered: one write for all */
        if (wbuf_flush(w) < 0)
            goto out;
    } else if (wbuf_flush(w) < 0 || pwrite_all(w->fd, &w->m, sizeof(w->m), 0) < 0) {
        goto out;
    }
    if (c->conf.fsync && fdatasync(w->fd) < 0)
        goto out;
    cache_path(w->id, w->m.variant, path, sizeof(path));
    if (ensure_dirs(c, path) < 0)
        goto out;
    /* a purge or an invalidation of this id started since cache_writer_new:
     * this response may predate it */
    pthread_rwlock_rdlock(&c->purge_mu);
    if (atomic_load(&c->purge_seq) != w->purge_seq || invalidated(w)) {
        pthread_rwlock_unlock(&c->purge_mu);
        rc = CACHE_EPURGED;
        goto out;
    }
    if ((w->vary_names != NULL && write_stub(w) < 0) ||
        renameat(c->dirfd, w->tmp, c->dirfd, path) < 0) {
        pthread_rwlock_unlock(&c->purge_mu);
        goto out;
    }
    pthread_rwlock_unlock(&c->purge_mu);
    close(w->fd);
    w->fd = -1;
    /* the new file is in place: what memory holds of the key is older */
    cache_mem_forget(c, w->key, w->m.key_len);
    /* Invalidations take no lock: one that ran between the check above and
     * the rename may have listed the directory before our file appeared, so
     * look again and take the files back (a newer object another writer
     * published meanwhile may go with them: a miss, never a stale hit). */
    if (invalidated(w)) {
        cache_unlink(c, w->id, w->m.variant);
        cache_index_remove(c, w->id, w->m.variant);
        if (w->vary_names != NULL) {
            cache_unlink(c, w->id, 0);
            cache_index_remove(c, w->id, 0);
        }
        cache_mem_forget(c, w->key, w->m.key_len);
        rc = CACHE_EPURGED;
        goto out;
    }
    size = sizeof(w->m) + w->m.key_len + w->m.vary_len + w->m.headers_len + w->m.body_len;
    cache_index_put(c, w->id, w->m.variant, size, w->key, w->m.key_len, w->tags, false);
    w->tags = NULL; /* owned by the index now */
    atomic_fetch_add(&c->n.stores, 1);
    rc = 0;
    cache_evict(c);
out:
    if (rc == CACHE_EIO)
        atomic_fetch_add(&c->n.write_errors, 1);
    cache_writer_abort(w);
    return rc;
}

/* ---- 304 refresh ----------------------------------------------------------------------------- */

#define MERGE_MAX 256

int
cache_refresh(struct cache *c, const struct cache_obj *o, const struct cache_hdr *resp304, size_t n,
              const struct cache_route *route, int64_t request_time, int64_t response_time,
              struct cache_obj **out)
{
    struct cache_hdr merged[MERGE_MAX], h;
    struct cache_resp_info ri, ri304;
    struct cache_policy pol;
    struct cache_writer *w = NULL;
    size_t nm = 0, pos = 0, i, hlen = 0;
    char *hb = NULL;
    const char *vary = o->key + o->key_len;
    size_t vlen = (size_t)(o->headers - vary);
    loff_t in_off = (loff_t)o->body_off;
    uint64_t left = o->body_len;
    int rc = CACHE_ENOMEM;

    *out = NULL;
    cache_resp_parse(resp304, n, 304, &ri304);
    /* stored fields not replaced by the 304, then the 304's updatable fields */
    while (cache_obj_header_next(o, &pos, &h)) {
        bool replaced = false;
        for (i = 0; i < n && !replaced; i++)
            replaced = resp304[i].nlen == h.nlen &&
                       strncasecmp(resp304[i].name, h.name, h.nlen) == 0 &&
                       cache_hdr_updatable(&resp304[i], resp304, n, &ri304.cc);
        if (!replaced) {
            if (nm == MERGE_MAX)
                return CACHE_ETOOBIG;
            merged[nm++] = h;
        }
    }
    for (i = 0; i < n; i++) {
        if (!cache_hdr_updatable(&resp304[i], resp304, n, &ri304.cc))
            continue;
        if (nm == MERGE_MAX)
            return CACHE_ETOOBIG;
        merged[nm++] = resp304[i];
    }
    cache_resp_parse(merged, nm, o->status, &ri);
    /* the 304's Age describes the 304 */
    ri.age = ri304.age;
    cache_policy_from_resp(&ri, route, request_time, response_time, &pol);
    hb = header_block(merged, nm, NULL, &hlen);
    if (hb == NULL)
        return CACHE_ETOOBIG;
    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->key = malloc(o->key_len + 1)) == NULL)
        goto out;
    memcpy(w->key, o->key, o->key_len);
    w->key[o->key_len] = '\0';
    w->c = c;
    w->fd = -1;
    /* as of o's open: a purge or invalidation since then drops the refresh */
    w->purge_seq = o->_purge_seq;
    w->max_body = UINT64_MAX;
    memcpy(w->id, o->_id, CACHE_ID_LEN);
    w->inval_gen = o->_inval_gen;
    w->m.kind = CACHE_KIND_OBJECT;
    w->m.status = (uint32_t)o->status;
    w->m.variant = o->_variant;
    meta_policy(&w->m, &pol);
    w->tags = cache_tags_from_headers(hb, hlen);
    rc = writer_start(w, o->key, o->key_len, vary, vlen, hb, hlen, (int64_t)o->body_len);
    if (rc < 0)
        goto out;
    if (o->body != NULL && wbuf_add(w, o->body, (size_t)o->body_len) < 0) {
        rc = CACHE_EIO;
        goto out;
    }
    if (o->body == NULL && wbuf_flush(w) < 0) { /* the head goes before the copied body */
        rc = CACHE_EIO;
        goto out;
    }
    while (o->body == NULL && left > 0) {
        ssize_t k = copy_file_range(o->fd, &in_off, w->fd, NULL,
                                    left > COPY_CHUNK ? COPY_CHUNK : (size_t)left, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rc = CACHE_EIO;
            goto out;
        }
        left -= (uint64_t)k;
    }
    w->m.body_len = o->body_len;
    w->m.body_crc = o->_body_crc;
    rc = cache_writer_commit(w);
    w = NULL;
    if (rc == 0) {
        atomic_fetch_add(&c->n.refreshes, 1);
        if (o->_variant == 0) {
            rc = cache_open(c, o->key, o->key_len, NULL, 0, out);
        } else {
            /* a variant: reopen that one by path (the request headers are not
             * at hand, and without them cache_open() would pick the variant
             * of a request that has none of the Vary fields) */
            struct cache_disk_meta m;
            char *buf = NULL;
            int fd = -1;
            uint64_t pseq = atomic_load(&c->purge_seq);
            uint32_t igen = (uint32_t)atomic_load(&c->inval_gen[cache_inval_slot(o->_id)]);
            rc = open_file(c, o->_id, o->_variant, o->key, o->key_len, &fd, &m, &buf);
            if (rc == 0 && (*out = obj_make(o->_id, fd, &m, buf)) == NULL) {
                close(fd);
                free(buf);
                rc = CACHE_ENOMEM;
            }
            if (*out != NULL) {
                (*out)->_purge_seq = pseq;
                (*out)->_inval_gen = igen;
            }
        }
        if (rc == CACHE_MISS)
            rc = CACHE_EIO; /* purged or evicted meanwhile */
    }
out:
    free(hb);
    cache_writer_abort(w);
    return rc;
}

/* ---- purge (file side) ----------------------------------------------------------------------- */

/* Marks a file stale in place: the meta is rewritten with SOFT_PURGED and a
 * new head CRC, then fdatasync'ed. A torn write makes the file fail its
 * check, i.e. a miss: still never served fresh. 1 when an object was marked,
 * 0 for a stub or a missing file, <0 on error. */
static int
file_soft_purge(struct cache *c, const char *path)
{
    struct cache_disk_meta m;
    int fd, rc = CACHE_EIO;

    fd = openat(c->dirfd, path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : CACHE_EIO;
    if (pread_all(fd, &m, sizeof(m), 0) < 0 || m.magic != CACHE_MAGIC ||
        m.head_crc != meta_crc(&m)) {
        /* corrupt: remove it, which is at least as strong as marking it */
        rc = unlinkat(c->dirfd, path, 0) == 0 ? 1 : CACHE_EIO;
        goto out;
    }
    rc = 0;
    if (m.kind == CACHE_KIND_OBJECT) {
        m.pol_flags |= CACHE_POL_SOFT_PURGED;
        m.head_crc = meta_crc(&m);
        rc = pwrite_all(fd, &m, sizeof(m), 0) < 0 || fdatasync(fd) < 0 ? CACHE_EIO : 1;
    }
out:
    close(fd);
    return rc;
}

/* sync: fsync the directory after unlinking (hard purges: durable). */
static int
purge_id(struct cache *c, const uint8_t id[CACHE_ID_LEN], const char *key, size_t klen, bool soft,
         bool sync)
{
    char hex[CACHE_ID_HEX + 1], dpath[8], fpath[300];
    struct dirent *de;
    DIR *d;
    int dfd, plain = 0, variants = 0, rc = 0;

    cache_id_hex(id, hex);
    snprintf(dpath, sizeof(dpath), "%.2s/%.2s", hex, hex + 2);
    dfd = openat(c->dirfd, dpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int err = errno;
        cache_mem_forget(c, key, klen);
        return err == ENOENT ? 0 : CACHE_EIO;
    }
    d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        cache_mem_forget(c, key, klen);
        return CACHE_EIO;
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        uint64_t variant = 0;
        int k;
        if (len < CACHE_ID_HEX || memcmp(de->d_name, hex, CACHE_ID_HEX) != 0)
            continue;
        if (len == CACHE_ID_HEX + 17 && de->d_name[CACHE_ID_HEX] == '-')
            variant = strtoull(de->d_name + CACHE_ID_HEX + 1, NULL, 16);
        else if (len != CACHE_ID_HEX)
            continue;
        snprintf(fpath, sizeof(fpath), "%s/%s", dpath, de->d_name);
        if (soft) {
            k = file_soft_purge(c, fpath);
            if (k < 0)
                rc = k;
        } else {
            k = unlinkat(c->dirfd, fpath, 0) == 0;
            if (!k && errno != ENOENT)
                rc = CACHE_EIO;
            cache_index_remove(c, id, variant);
        }
        if (variant != 0)
            variants += k > 0;
        else
            plain += k > 0;
    }
    closedir(d);
    /* unlinked or marked stale on disk: memory follows (a soft-purged object
     * comes back from its file, flag and all) */
    cache_mem_forget(c, key, klen);
    if (!soft && sync && fsync_dir_of(c, dpath) < 0)
        return CACHE_EIO;
    if (rc < 0)
        return rc;
    /* with variants, the plain file is their stub */
    return variants > 0 ? variants : plain;
}

int
cache_file_purge_id(struct cache *c, const uint8_t id[CACHE_ID_LEN], const char *key, size_t klen,
                    bool soft)
{
    return purge_id(c, id, key, klen, soft, true);
}

int
cache_file_invalidate_id(struct cache *c, const uint8_t id[CACHE_ID_LEN], const char *key,
                         size_t klen)
{
    return purge_id(c, id, key, klen, false, false);
}
