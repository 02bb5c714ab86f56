/*
 * Integration test harness: real processes on loopback, driven with libcurl
 * and raw sockets. Linked into every tests/integration test binary.
 *
 * Typical use (cmocka):
 *
 *     static int setup(void **state) { return h_osim_start(&osim, NULL); }
 *     static int teardown(void **state) { return h_osim_stop(&osim) == 0 ? 0 : -1; }
 *     int main(void) { return H_RUN(tests, setup, teardown); }
 *
 * Processes started with h_spawn() log to h_tmpdir()/NAME.log, die with the
 * test binary (PR_SET_PDEATHSIG), and are stopped by an atexit handler when a
 * test fails before stopping them. h_tmpdir() is removed at exit when
 * H_RUN saw no failure, and kept (path printed) otherwise.
 *
 * Conventions: int functions return 0 on success and -1 on failure unless
 * stated otherwise; failures print one "harness: ..." line on stderr.
 * Nothing here talks to anything but 127.0.0.1.
 */
#ifndef EDGE_TESTS_HARNESS_H
#define EDGE_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- environment ---- */

const char *h_build_dir(void); /* $EDGE_BUILD or "build" */
const char *h_tmpdir(void);    /* per-binary mkdtemp dir under $TMPDIR or /tmp */
/* Formats h_build_dir()/rel into a static rotating buffer (8 slots). */
const char *h_build_path(const char *rel);
/* Records the cmocka result for the exit-time cleanup; returns failed. */
int h_finish(int failed);
#define H_RUN(tests, setup, teardown) h_finish(cmocka_run_group_tests(tests, setup, teardown))

double h_now_ms(void); /* monotonic clock */
void h_sleep_ms(long ms);

/* ---- ports and processes ---- */

/* A free loopback TCP port (bind 127.0.0.1:0); never the same twice per process. */
int h_free_port(void);

struct h_proc {
    pid_t pid; /* 0 when not running */
    char name[32];
    char log[512]; /* path of the stdout+stderr log */
};

/* fork+exec argv (argv[0] searched in PATH when it has no '/'); the child gets
 * its own process group and PR_SET_PDEATHSIG=SIGKILL; output appended to
 * h_tmpdir()/name.log. Fails (-1) when exec fails. */
int h_spawn(struct h_proc *p, const char *name, const char *const argv[]);
/* SIGTERM to the process group, wait up to 3 s, then SIGKILL. Returns the
 * exit status (0..255), or -1 when it died by a signal or was not running. */
int h_stop(struct h_proc *p);
int h_kill(struct h_proc *p, int sig);
bool h_alive(struct h_proc *p); /* false once it exited (reaps it) */
/* Stops every process still running (group teardowns may call it). */
void h_stop_all(void);
/* Connect loop until host:port accepts, timeout_ms elapses (-1) or, when p is
 * given, the process exits (-1, its log is printed). */
int h_wait_port(const char *host, int port, int timeout_ms);
int h_wait_proc_port(struct h_proc *p, const char *host, int port, int timeout_ms);
/* Prints the last bytes of a process log to stderr (for failure reports). */
void h_dump_log(const struct h_proc *p, size_t tail);
/* VmRSS of a process in KiB, or -1. */
long h_rss_kb(pid_t pid);

/* ---- files ---- */

/* Writes printf output to h_tmpdir()/name (subdirectories created); returns
 * the path (static rotating buffer, 8 slots) or NULL. */
const char *h_write_file(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- HTTP client (libcurl) ---- */

struct h_resp {
    long status;
    char *body; /* NUL-terminated (not counted in len) */
    size_t len;
    char *headers; /* raw header block(s) of the response, NUL-terminated */
    double total_ms, ttfb_ms;
    long http_version; /* 10, 11, 20, 30 */
    int curl_code;     /* CURLcode; 0 = OK */
    char error[256];   /* curl's message when curl_code != 0 */
    /* https: the server certificate's subject ("CN = a.test"; "" when the
     * connection was reused or is plain) and new connections made (0: reused) */
    char cert_subject[256];
    long new_conns;
};

/* Called with each piece of the body instead of storing it; returns 0 to go on,
 * non-zero to abort the transfer. */
typedef int (*h_body_fn)(const void *data, size_t len, void *arg);

struct h_opts {
    long timeout_ms;   /* default 30000 */
    h_body_fn on_body; /* stream the body instead of storing it */
    void *arg;
    bool http10;     /* speak HTTP/1.0 */
    bool h2c;        /* speak HTTP/2 with prior knowledge, in clear text */
    bool h2;         /* https:// URLs: offer h2 by ALPN (HTTP/1.1 when refused) */
    bool path_as_is; /* send "/../" etc. unnormalised */
    /* https:// URLs */
    const char *cainfo;     /* verify the server against this CA file; NULL: no verification */
    bool no_verify_host;    /* with cainfo: the name need not match (IP URLs, no SNI) */
    const char *resolve;    /* "name:port:127.0.0.1" (CURLOPT_RESOLVE): names without DNS */
    const char *cert, *key; /* client certificate and key (PEM files) */
    bool tls12;             /* TLS 1.2 only */
};

/* One client = one curl easy handle = one connection reused (keep-alive)
 * across requests. */
struct h_client;
struct h_client *h_client_new(void);
void h_client_free(struct h_client *cl);

/* hdrs: NULL-terminated "Name: value" list (may be NULL). body may be NULL.
 * Returns 0, or -1 on a transport error (r->curl_code/error say which; what
 * was received is still in r). Free r with h_resp_free either way. */
int h_http(struct h_resp *r, const char *method, const char *url, const char *body, size_t len,
           const char *const *hdrs);
int h_client_http(struct h_client *cl, struct h_resp *r, const char *method, const char *url,
                  const char *body, size_t len, const char *const *hdrs);
int h_client_http_opts(struct h_client *cl, struct h_resp *r, const struct h_opts *o,
                       const char *method, const char *url, const char *body, size_t len,
                       const char *const *hdrs);
/* Header of the final response, case-insensitive, last one wins; value copied
 * to buf (trimmed, truncated to n-1); NULL when absent. */
const char *h_header(const struct h_resp *r, const char *name, char *buf, size_t n);
void h_resp_free(struct h_resp *r);

/* Raw TCP: sends req, reads until the peer closes or timeout_ms passes (idle
 * or total), returns the bytes read (out is NUL-terminated, so at most
 * outlen-1) or -1 when the connection fails. */
long h_raw(const char *host, int port, const char *req, size_t len, char *out, size_t outlen,
           int timeout_ms);

/* ---- origin-sim ---- */

/* Integer from GET base_url/_stats; field is a top-level name or "obj.key"
 * ("by_path.api"); -1 when unreachable or absent. */
long h_stats_int(const char *base_url, const char *field);

struct h_osim {
    struct h_proc proc;
    int port;
    char url[64]; /* "http://127.0.0.1:PORT" */
};
/* Spawns h_build_dir()/origin-sim --listen 127.0.0.1:PORT extra_args... and
 * waits until it accepts (5 s). extra_args NULL-terminated, may be NULL. */
int h_osim_start(struct h_osim *o, const char *const extra_args[]);
int h_osim_stop(struct h_osim *o); /* h_stop's result */

/* Runs a shell command (printf-style) in h_tmpdir(); stdout and stderr
 * into out (NUL-terminated, may be NULL). Returns its exit status, -1 when
 * it could not run. */
int h_sh(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- redis-server ---- */

struct h_redis {
    struct h_proc proc;
    int port;
    char dir[512];
};
/* A private redis-server on a free port, persistence off, data dir under
 * h_tmpdir(); waits for PONG. -1 also when redis-server is not installed. */
int h_redis_start(struct h_redis *r);
/* The same on a given port (0 = a free one): a restart where clients expect it. */
int h_redis_start_on(struct h_redis *r, int port);
int h_redis_stop(struct h_redis *r);
/* Sends one inline command ("SET k v") and copies the first reply line. */
int h_redis_cmd(const struct h_redis *r, const char *cmd, char *out, size_t outlen);

#endif /* EDGE_TESTS_HARNESS_H */
