/*
 * Integration test harness (see harness.h).
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H_PROCS_MAX 64
#define H_PORTS_MAX 1024
#define H_BODY_CAP (1024ul * 1024 * 1024) /* stored bodies; stream larger ones with on_body */
#define H_HEADERS_CAP (1024ul * 1024)

static char tmpdir[256];
static bool exit_hook_set, finished;
static int finish_failed;
static struct {
    pid_t pid;
    char name[32];
} procs[H_PROCS_MAX];
static int ports[H_PORTS_MAX];
static size_t nports;
static bool curl_ready;

/* ---- environment ---- */

const char *
h_build_dir(void)
{
    const char *b = getenv("EDGE_BUILD");
    return b != NULL && b[0] != '\0' ? b : "build";
}

static const char *
rotating(void)
{
    static char bufs[8][1024];
    static unsigned next;
    return bufs[next++ % 8];
}

const char *
h_build_path(const char *rel)
{
    char *b = (char *)rotating();
    snprintf(b, 1024, "%s/%s", h_build_dir(), rel);
    return b;
}

double
h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void
h_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void
at_exit(void)
{
    h_stop_all();
    if (curl_ready) {
        curl_global_cleanup();
        curl_ready = false;
    }
    if (tmpdir[0] == '\0')
        return;
    if (finished && finish_failed == 0) {
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    } else {
        fprintf(stderr, "harness: kept %s (logs of the processes are there)\n", tmpdir);
    }
}

static void
hook_exit(void)
{
    if (!exit_hook_set) {
        exit_hook_set = true;
        atexit(at_exit);
    }
}

const char *
h_tmpdir(void)
{
    if (tmpdir[0] != '\0')
        return tmpdir;
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(tmpdir, sizeof(tmpdir), "%s/edge-%s-XXXXXX", base, program_invocation_short_name);
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", tmpdir, strerror(errno));
        abort();
    }
    hook_exit();
    return tmpdir;
}

int
h_finish(int failed)
{
    finished = true;
    finish_failed = failed;
    return failed;
}

/* ---- ports and processes ---- */

int
h_free_port(void)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int port = -1;

        if (fd < 0)
            return -1;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
            port = ntohs(sa.sin_port);
        close(fd);
        if (port < 0)
            return -1;
        bool seen = false;
        for (size_t i = 0; i < nports; i++)
            seen |= ports[i] == port;
        if (seen)
            continue;
        if (nports < H_PORTS_MAX)
            ports[nports++] = port;
        return port;
    }
    return -1;
}

static void
reg_add(pid_t pid, const char *name)
{
    for (int i = 0; i < H_PROCS_MAX; i++) {
        if (procs[i].pid == 0) {
            procs[i].pid = pid;
            snprintf(procs[i].name, sizeof(procs[i].name), "%s", name);
            return;
        }
    }
}

static void
reg_del(pid_t pid)
{
    for (int i = 0; i < H_PROCS_MAX; i++)
        if (procs[i].pid == pid)
            procs[i].pid = 0;
}

int
h_spawn(struct h_proc *p, const char *name, const char *const argv[])
{
    int pipefd[2], logfd, err = 0;
    pid_t parent = getpid(), pid;

    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->log, sizeof(p->log), "%s/%s.log", h_tmpdir(), name);
    logfd = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        fprintf(stderr, "harness: open %s: %s\n", p->log, strerror(errno));
        return -1;
    }
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        close(logfd);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        close(logfd);
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        execvp(argv[0], (char *const *)argv);
        err = errno;
        if (write(pipefd[1], &err, sizeof(err)) < 0)
            _exit(127);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: no race with an early h_stop */
    close(pipefd[1]);
    close(logfd);
    ssize_t n;
    while ((n = read(pipefd[0], &err, sizeof(err))) < 0 && errno == EINTR)
        ;
    close(pipefd[0]);
    if (n == (ssize_t)sizeof(err)) {
        waitpid(pid, NULL, 0);
        fprintf(stderr, "harness: cannot run %s: %s\n", argv[0], strerror(err));
        return -1;
    }
    p->pid = pid;
    reg_add(pid, name);
    hook_exit();
    return 0;
}

static int
decode_status(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int
h_stop(struct h_proc *p)
{
    int st = 0;
    pid_t r = 0;

    if (p->pid <= 0)
        return -1;
    /* one signal, to the group (the child leads it); a second one could land
     * after the child restored its default handlers during shutdown */
    if (kill(-p->pid, SIGTERM) < 0)
        kill(p->pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        r = waitpid(p->pid, &st, WNOHANG);
        if (r != 0)
            break;
        h_sleep_ms(10);
    }
    if (r == 0) {
        fprintf(stderr, "harness: %s (pid %d) ignored SIGTERM for 3 s; SIGKILL\n", p->name,
                (int)p->pid);
        if (kill(-p->pid, SIGKILL) < 0)
            kill(p->pid, SIGKILL);
        r = waitpid(p->pid, &st, 0);
    }
    reg_del(p->pid);
    p->pid = 0;
    if (r < 0)
        return -1;
    int rc = decode_status(st);
    if (rc != 0) {
        if (WIFSIGNALED(st))
            fprintf(stderr, "harness: %s died by signal %d\n", p->name, WTERMSIG(st));
        else
            fprintf(stderr, "harness: %s exited %d\n", p->name, rc);
        h_dump_log(p, 4000);
    }
    return rc;
}

int
h_kill(struct h_proc *p, int sig)
{
    if (p->pid <= 0)
        return -1;
    return kill(p->pid, sig);
}

bool
h_alive(struct h_proc *p)
{
    int st;

    if (p->pid <= 0)
        return false;
    if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
        reg_del(p->pid);
        p->pid = 0;
        return false;
    }
    return true;
}

void
h_stop_all(void)
{
    for (int i = 0; i < H_PROCS_MAX; i++) {
        if (procs[i].pid <= 0)
            continue;
        struct h_proc p = {.pid = procs[i].pid};
        snprintf(p.name, sizeof(p.name), "%s", procs[i].name);
        snprintf(p.log, sizeof(p.log), "%s/%s.log", tmpdir, procs[i].name);
        h_stop(&p);
    }
}

static int
try_connect(const char *host, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd, rc;

    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    return rc;
}

int
h_wait_proc_port(struct h_proc *p, const char *host, int port, int timeout_ms)
{
    double deadline = h_now_ms() + timeout_ms;

    for (;;) {
        if (try_connect(host, port) == 0)
            return 0;
        if (p != NULL && !h_alive(p)) {
            fprintf(stderr, "harness: %s exited before listening on %s:%d\n", p->name, host, port);
            h_dump_log(p, 4000);
            return -1;
        }
        if (h_now_ms() > deadline) {
            fprintf(stderr, "harness: nothing listens on %s:%d after %d ms\n", host, port,
                    timeout_ms);
            if (p != NULL)
                h_dump_log(p, 4000);
            return -1;
        }
        h_sleep_ms(5);
    }
}

int
h_wait_port(const char *host, int port, int timeout_ms)
{
    return h_wait_proc_port(NULL, host, port, timeout_ms);
}

void
h_dump_log(const struct h_proc *p, size_t tail)
{
    char buf[4096];
    int fd = open(p->log, O_RDONLY | O_CLOEXEC);
    struct stat sb;

    if (fd < 0)
        return;
    if (fstat(fd, &sb) == 0 && (size_t)sb.st_size > tail)
        lseek(fd, sb.st_size - (off_t)tail, SEEK_SET);
    fprintf(stderr, "---- %s (%s) ----\n", p->name, p->log);
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)n, stderr);
    fprintf(stderr, "---- end of %s ----\n", p->name);
    close(fd);
}

long
h_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* ---- files ---- */

static int
mkdirs_for(char *path)
{
    for (char *s = strchr(path + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        int rc = mkdir(path, 0755);
        *s = '/';
        if (rc < 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

const char *
h_write_file(const char *name, const char *fmt, ...)
{
    char *path = (char *)rotating();
    va_list ap;
    FILE *f;

    snprintf(path, 1024, "%s/%s", h_tmpdir(), name);
    if (mkdirs_for(path) < 0 || (f = fopen(path, "we")) == NULL) {
        fprintf(stderr, "harness: cannot write %s: %s\n", path, strerror(errno));
        return NULL;
    }
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0)
        return NULL;
    return path;
}

/* ---- HTTP client ---- */

struct h_client {
    CURL *curl;
};

struct dynbuf {
    char *p;
    size_t len, cap, max;
};

static int
dyn_add(struct dynbuf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->max)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max)
            cap = b->max;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

struct xfer {
    struct dynbuf body, headers;
    const struct h_opts *o;
};

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;

    if (x->o != NULL && x->o->on_body != NULL)
        return x->o->on_body(ptr, n, x->o->arg) == 0 ? n : 0;
    return dyn_add(&x->body, ptr, n) == 0 ? n : 0;
}

static size_t
header_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;

    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0)
        x->headers.len = 0; /* keep the final response's block only */
    return dyn_add(&x->headers, ptr, n) == 0 ? n : 0;
}

static void
curl_init_once(void)
{
    if (!curl_ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready = true;
        hook_exit();
    }
}

struct h_client *
h_client_new(void)
{
    struct h_client *cl = calloc(1, sizeof(*cl));

    curl_init_once();
    if (cl == NULL || (cl->curl = curl_easy_init()) == NULL) {
        free(cl);
        return NULL;
    }
    return cl;
}

void
h_client_free(struct h_client *cl)
{
    if (cl == NULL)
        return;
    curl_easy_cleanup(cl->curl);
    free(cl);
}

static bool
has_header(const char *const *hdrs, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; hdrs != NULL && hdrs[i] != NULL; i++)
        if (strncasecmp(hdrs[i], name, n) == 0 && hdrs[i][n] == ':')
            return true;
    return false;
}

int
h_client_http_opts(struct h_client *cl, struct h_resp *r, const struct h_opts *o,
                   const char *method, const char *url, const char *body, size_t len,
                   const char *const *hdrs)
{
    CURL *c = cl->curl;
    struct curl_slist *list = NULL, *resolve = NULL;
    struct xfer x = {.body = {.max = H_BODY_CAP}, .headers = {.max = H_HEADERS_CAP}, .o = o};
    long timeout = o != NULL && o->timeout_ms > 0 ? o->timeout_ms : 30000;
    CURLcode rc;

    memset(r, 0, sizeof(*r));
    curl_easy_reset(c); /* options only: the connection cache stays */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout < 5000 ? timeout : 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION,
                     o != NULL && o->h2c      ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                     : o != NULL && o->h2     ? CURL_HTTP_VERSION_2TLS
                     : o != NULL && o->http10 ? CURL_HTTP_VERSION_1_0
                                              : CURL_HTTP_VERSION_1_1);
    if (o != NULL && o->path_as_is)
        curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (o != NULL && o->resolve != NULL)
        resolve = curl_slist_append(NULL, o->resolve);
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    if (o != NULL && o->cainfo != NULL) {
        curl_easy_setopt(c, CURLOPT_CAINFO, o->cainfo);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, o->no_verify_host ? 0L : 2L);
    } else {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (o != NULL && o->cert != NULL) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, o->cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, o->key);
    }
    if (o != NULL && o->tls12)
        curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0 && body == NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
            strcmp(method, "PATCH") == 0) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        }
    }
    for (size_t i = 0; hdrs != NULL && hdrs[i] != NULL; i++)
        list = curl_slist_append(list, hdrs[i]);
    if (!has_header(hdrs, "Expect"))
        list = curl_slist_append(list, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);

    rc = curl_easy_perform(c);

    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    double t;
    if (curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &t) == CURLE_OK)
        r->total_ms = t * 1e3;
    if (curl_easy_getinfo(c, CURLINFO_STARTTRANSFER_TIME, &t) == CURLE_OK)
        r->ttfb_ms = t * 1e3;
    long v = 0;
    curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &v);
    r->http_version = v == CURL_HTTP_VERSION_1_0   ? 10
                      : v == CURL_HTTP_VERSION_1_1 ? 11
                      : v == CURL_HTTP_VERSION_2_0 ? 20
                      : v == CURL_HTTP_VERSION_3   ? 30
                                                   : 0;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->new_conns);
    {
        struct curl_certinfo *ci = NULL;
        if (curl_easy_getinfo(c, CURLINFO_CERTINFO, &ci) == CURLE_OK && ci != NULL &&
            ci->num_of_certs > 0)
            for (struct curl_slist *e = ci->certinfo[0]; e != NULL; e = e->next)
                if (strncmp(e->data, "Subject:", 8) == 0)
                    snprintf(r->cert_subject, sizeof(r->cert_subject), "%s", e->data + 8);
    }
    curl_slist_free_all(list);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c, CURLOPT_RESOLVE, NULL);
    curl_slist_free_all(resolve);
    r->curl_code = (int)rc;
    if (rc != CURLE_OK)
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(rc));
    if (x.body.p == NULL)
        dyn_add(&x.body, "", 0);
    if (x.headers.p == NULL)
        dyn_add(&x.headers, "", 0);
    r->body = x.body.p;
    r->len = x.body.len;
    r->headers = x.headers.p;
    return rc == CURLE_OK ? 0 : -1;
}

int
h_client_http(struct h_client *cl, struct h_resp *r, const char *method, const char *url,
              const char *body, size_t len, const char *const *hdrs)
{
    return h_client_http_opts(cl, r, NULL, method, url, body, len, hdrs);
}

int
h_http(struct h_resp *r, const char *method, const char *url, const char *body, size_t len,
       const char *const *hdrs)
{
    struct h_client *cl = h_client_new();
    int rc;

    if (cl == NULL) {
        memset(r, 0, sizeof(*r));
        return -1;
    }
    rc = h_client_http(cl, r, method, url, body, len, hdrs);
    h_client_free(cl);
    return rc;
}

const char *
h_header(const struct h_resp *r, const char *name, char *buf, size_t n)
{
    size_t nlen = strlen(name);
    const char *found = NULL;
    size_t flen = 0;

    if (r->headers == NULL || n == 0)
        return NULL;
    for (const char *line = r->headers; *line != '\0';) {
        const char *eol = strchr(line, '\n');
        size_t llen = eol != NULL ? (size_t)(eol - line) : strlen(line);
        if (llen > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            const char *e = line + llen;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            found = v;
            flen = (size_t)(e - v);
        }
        if (eol == NULL)
            break;
        line = eol + 1;
    }
    if (found == NULL)
        return NULL;
    if (flen >= n)
        flen = n - 1;
    memcpy(buf, found, flen);
    buf[flen] = '\0';
    return buf;
}

void
h_resp_free(struct h_resp *r)
{
    free(r->body);
    free(r->headers);
    r->body = NULL;
    r->headers = NULL;
    r->len = 0;
}

long
h_raw(const char *host, int port, const char *req, size_t len, char *out, size_t outlen,
      int timeout_ms)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    double deadline = h_now_ms() + timeout_ms;
    size_t got = 0, sent = 0;
    int fd;

    if (outlen == 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    while (sent < len) {
        ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break; /* the peer may answer and close early: read what came */
        }
        sent += (size_t)n;
    }
    while (got < outlen - 1) {
        int left = (int)(deadline - h_now_ms());
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t n = recv(fd, out + got, outlen - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* closed (or reset) */
        got += (size_t)n;
    }
    out[got] = '\0';
    close(fd);
    return (long)got;
}

/* ---- origin-sim ---- */

long
h_stats_int(const char *base_url, const char *field)
{
    char url[256], key[128];
    struct h_resp r;
    long v = -1;

    snprintf(url, sizeof(url), "%s/_stats", base_url);
    if (h_http(&r, "GET", url, NULL, 0, NULL) == 0 && r.status == 200) {
        json_t *root = json_loadb(r.body, r.len, 0, NULL);
        json_t *j = root;
        const char *f = field;
        while (j != NULL && *f != '\0') {
            const char *dot = strchr(f, '.');
            size_t n = dot != NULL ? (size_t)(dot - f) : strlen(f);
            if (n >= sizeof(key))
                n = sizeof(key) - 1;
            memcpy(key, f, n);
            key[n] = '\0';
            j = json_object_get(j, key);
            f = dot != NULL ? dot + 1 : f + n;
        }
        if (j != NULL && json_is_integer(j))
            v = (long)json_integer_value(j);
        json_decref(root);
    }
    h_resp_free(&r);
    return v;
}

int
h_osim_start(struct h_osim *o, const char *const extra_args[])
{
    const char *argv[64];
    char listen[64], name[32];
    size_t n = 0;

    memset(o, 0, sizeof(*o));
    o->port = h_free_port();
    if (o->port < 0)
        return -1;
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", o->port);
    snprintf(name, sizeof(name), "origin-sim-%d", o->port);
    snprintf(o->url, sizeof(o->url), "http://127.0.0.1:%d", o->port);
    argv[n++] = h_build_path("origin-sim");
    argv[n++] = "--listen";
    argv[n++] = listen;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 63; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    if (h_spawn(&o->proc, name, argv) < 0)
        return -1;
    if (h_wait_proc_port(&o->proc, "127.0.0.1", o->port, 5000) < 0) {
        h_stop(&o->proc);
        return -1;
    }
    return 0;
}

int
h_osim_stop(struct h_osim *o)
{
    return h_stop(&o->proc);
}

/* ---- redis-server ---- */

int
h_redis_cmd(const struct h_redis *r, const char *cmd, char *out, size_t outlen)
{
    char req[1024], buf[4096];
    int n = snprintf(req, sizeof(req), "%s\r\nQUIT\r\n", cmd);

    if (n < 0 || (size_t)n >= sizeof(req) || outlen == 0)
        return -1;
    if (h_raw("127.0.0.1", r->port, req, (size_t)n, buf, sizeof(buf), 2000) <= 0)
        return -1;
    char *eol = strstr(buf, "\r\n");
    if (eol != NULL)
        *eol = '\0';
    snprintf(out, outlen, "%s", buf);
    return 0;
}

int
h_redis_start(struct h_redis *r)
{
    return h_redis_start_on(r, 0);
}

int
h_redis_start_on(struct h_redis *r, int port_no)
{
    char port[16], name[32], pong[64];

    memset(r, 0, sizeof(*r));
    r->port = port_no > 0 ? port_no : h_free_port();
    if (r->port < 0)
        return -1;
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(name, sizeof(name), "redis-%d", r->port);
    snprintf(r->dir, sizeof(r->dir), "%s/%s", h_tmpdir(), name);
    if (mkdir(r->dir, 0755) < 0 && errno != EEXIST)
        return -1;
    const char *argv[] = {"redis-server", "--port",    port,   "--bind",
                          "127.0.0.1",    "--save",    "",     "--appendonly",
                          "no",           "--dir",     r->dir, "--daemonize",
                          "no",           "--logfile", "",     NULL};
    if (h_spawn(&r->proc, name, argv) < 0)
        return -1;
    if (h_wait_proc_port(&r->proc, "127.0.0.1", r->port, 5000) < 0 ||
        h_redis_cmd(r, "PING", pong, sizeof(pong)) < 0 || strcmp(pong, "+PONG") != 0) {
        fprintf(stderr, "harness: redis-server on port %d does not answer PING\n", r->port);
        h_stop(&r->proc);
        return -1;
    }
    return 0;
}

int
h_redis_stop(struct h_redis *r)
{
    return h_stop(&r->proc);
}

int
h_sh(char *out, size_t n, const char *fmt, ...)
{
    char cmd[4096], inner[3500];
    va_list ap;
    FILE *p;
    size_t got = 0;
    int st;

    va_start(ap, fmt);
    vsnprintf(inner, sizeof(inner), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "cd '%s' && { %s ; } 2>&1", h_tmpdir(), inner);
    p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    while (out != NULL && got + 1 < n) {
        size_t r = fread(out + got, 1, n - 1 - got, p);
        if (r == 0)
            break;
        got += r;
    }
    if (out != NULL)
        out[got] = '\0';
    else
        while (fgetc(p) != EOF) {
        }
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
