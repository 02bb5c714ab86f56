/*
 * origin-sim: the backend API edge is tested and benchmarked against.
 * Flags and endpoints: origin-sim/README.md or --help.
 */
#include "origin-sim/osim.h"
#include "origin-sim/origin-sim.h"

#include "conf/conf.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define TABLE_EXTRA (64u * 1024) /* >= the largest piece conn.c adds by reference */

static uint8_t table_bytes[OSIM_BYTES_PERIOD + TABLE_EXTRA];
const uint8_t *osim_table = table_bytes;

static const char usage[] =
    "usage: origin-sim [options]\n"
    "  --listen HOST:PORT     listen address, repeatable (default 127.0.0.1:9000; port 0 = any)\n"
    "  --latency D            added to every response (e.g. 50ms)\n"
    "  --jitter D             random extra latency, 0..D\n"
    "  --jitter-dist KIND     uniform (default) or lognormal (median D/2, long tail, cap 10*D)\n"
    "  --error-rate F         fraction of requests answered 503 (0..1)\n"
    "  --reset-rate F         fraction of responses cut mid-body with a TCP RST (0..1)\n"
    "  --seed N               seed for the random draws (reproducible runs)\n"
    "  --root DIR             directory served under /static/\n"
    "  --static-cc VALUE      Cache-Control of /static/ (default \"public, max-age=60\")\n"
    "  --log                  one line per request on stdout: method url status ms\n"
    "  --help                 this text\n"
    "endpoints: /bytes/N /resp /static/ /api/tables/T/items/PK[/SK] /chunked /slow /echo\n"
    "           /headers /status/N /_stats /_stats/reset (see origin-sim/README.md)\n";

static int
parse_duration(const char *flag, const char *v, uint64_t *ms)
{
    if (conf_duration_from_str(v, strlen(v), ms) < 0) {
        fprintf(stderr, "origin-sim: %s expects a duration like 50ms or 2s, not '%s'\n", flag, v);
        return -1;
    }
    return 0;
}

static int
parse_rate(const char *flag, const char *v, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(*out >= 0.0 && *out <= 1.0)) {
        fprintf(stderr, "origin-sim: %s expects a fraction between 0 and 1, not '%s'\n", flag, v);
        return -1;
    }
    return 0;
}

static int
parse_args(int argc, char **argv, struct osim_opts *o)
{
    enum {
        O_LISTEN = 256,
        O_LATENCY,
        O_JITTER,
        O_JDIST,
        O_ERR,
        O_RESET,
        O_SEED,
        O_ROOT,
        O_CC,
        O_LOG,
        O_HELP
    };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"latency", required_argument, NULL, O_LATENCY},
        {"jitter", required_argument, NULL, O_JITTER},
        {"jitter-dist", required_argument, NULL, O_JDIST},
        {"error-rate", required_argument, NULL, O_ERR},
        {"reset-rate", required_argument, NULL, O_RESET},
        {"seed", required_argument, NULL, O_SEED},
        {"root", required_argument, NULL, O_ROOT},
        {"static-cc", required_argument, NULL, O_CC},
        {"log", no_argument, NULL, O_LOG},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int opt;

    o->static_cc = "public, max-age=60";
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_LISTEN:
            if (o->nlisten == OSIM_LISTEN_MAX) {
                fprintf(stderr, "origin-sim: at most %d --listen\n", OSIM_LISTEN_MAX);
                return -1;
            }
            o->listen[o->nlisten++] = optarg;
            break;
        case O_LATENCY:
            if (parse_duration("--latency", optarg, &o->latency_ms) < 0)
                return -1;
            break;
        case O_JITTER:
            if (parse_duration("--jitter", optarg, &o->jitter_ms) < 0)
                return -1;
            break;
        case O_JDIST:
            if (strcmp(optarg, "uniform") == 0) {
                o->jitter_lognormal = false;
            } else if (strcmp(optarg, "lognormal") == 0) {
                o->jitter_lognormal = true;
            } else {
                fprintf(stderr, "origin-sim: --jitter-dist is uniform or lognormal\n");
                return -1;
            }
            break;
        case O_ERR:
            if (parse_rate("--error-rate", optarg, &o->error_rate) < 0)
                return -1;
            break;
        case O_RESET:
            if (parse_rate("--reset-rate", optarg, &o->reset_rate) < 0)
                return -1;
            break;
        case O_SEED: {
            char *end;
            errno = 0;
            o->seed = strtoull(optarg, &end, 0);
            if (errno != 0 || end == optarg || *end != '\0') {
                fprintf(stderr, "origin-sim: --seed expects an integer\n");
                return -1;
            }
            o->seed_set = true;
            break;
        }
        case O_ROOT: o->root = optarg; break;
        case O_CC: o->static_cc = optarg; break;
        case O_LOG: o->log = true; break;
        case 'h':
        case O_HELP: fputs(usage, stdout); exit(0);
        default: fputs(usage, stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "origin-sim: unexpected argument '%s'\n%s", argv[optind], usage);
        return -1;
    }
    if (o->nlisten == 0)
        o->listen[o->nlisten++] = "127.0.0.1:9000";
    return 0;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

int
main(int argc, char **argv)
{
    struct osim_server srv;
    struct event *sigterm = NULL, *sigint = NULL;
    char bound[OSIM_LISTEN_MAX][80];
    int rc = 1;

    memset(&srv, 0, sizeof(srv));
    srv.stats.epoch = 1;
    if (parse_args(argc, argv, &srv.opts) < 0)
        return 2;
    osim_bytes_fill(table_bytes, 0, sizeof(table_bytes));
    osim_rng_seed(&srv, srv.opts.seed_set ? srv.opts.seed
                                          : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    if (srv.opts.root != NULL) {
        struct stat sb;
        srv.root_real = realpath(srv.opts.root, NULL);
        if (srv.root_real == NULL || stat(srv.root_real, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "origin-sim: --root %s is not a directory\n", srv.opts.root);
            goto out;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    srv.base = event_base_new();
    srv.items = osim_items_new();
    if (srv.base == NULL || srv.items == NULL) {
        fprintf(stderr, "origin-sim: out of memory\n");
        goto out;
    }
    /* handlers first: a SIGTERM right after the port accepts must stop us cleanly */
    sigterm = evsignal_new(srv.base, SIGTERM, on_signal, srv.base);
    sigint = evsignal_new(srv.base, SIGINT, on_signal, srv.base);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) < 0 ||
        evsignal_add(sigint, NULL) < 0) {
        fprintf(stderr, "origin-sim: cannot install signal handlers\n");
        goto out;
    }
    for (size_t i = 0; i < srv.opts.nlisten; i++) {
        if (osim_server_listen(&srv, srv.opts.listen[i], bound[i], sizeof(bound[i])) < 0) {
            fprintf(stderr, "origin-sim: cannot listen on %s: %s\n", srv.opts.listen[i],
                    strerror(errno));
            goto out;
        }
    }

    fputs("origin-sim: listening on", stderr);
    for (size_t i = 0; i < srv.opts.nlisten; i++)
        fprintf(stderr, " %s", bound[i]);
    fputc('\n', stderr);
    fflush(stderr);

    if (event_base_dispatch(srv.base) < 0) {
        fprintf(stderr, "origin-sim: event loop failed\n");
        goto out;
    }
    rc = 0;
out:
    /* a second SIGTERM during cleanup must not kill us once libevent restores
     * the default handlers: keep them blocked until exit */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    osim_server_close_all(&srv);
    osim_items_free(srv.items);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (srv.base != NULL)
        event_base_free(srv.base);
    libevent_global_shutdown();
    free(srv.root_real);
    return rc;
}
