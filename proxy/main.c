/*
 * edge — entry point and supervisor.
 *
 *   edge -t -c FILE   check a conf and exit 0 (ok) or 1 (error on stderr)
 *   edge -c FILE      run: the supervisor opens the listening sockets
 *                     (one SO_REUSEPORT socket per listen address and worker)
 *                     and forks the engine, restarts it if it dies (with
 *                     backoff when it keeps dying), and forwards signals.
 *
 * Signals to the supervisor: HUP reloads (the engine re-reads the conf and
 * keeps the old one if the new one is bad); TERM/INT/QUIT stop gracefully
 * (the engine drains in-flight requests up to shutdown_timeout).
 */
#include "cache/cache.h"
#include "compute/compute.h"
#include "conf/conf.h"
#include "proxy/internal.h"
#include "proxy/log.h"
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef EDGE_VERSION
#define EDGE_VERSION "0.1.0"
#endif

static void
usage(FILE *f)
{
    fprintf(f, "usage: edge [-t] [-c FILE] [-d]\n"
               "  -c FILE   configuration file (default conf/edge.conf)\n"
               "  -t        check the configuration and exit (0 ok, 1 error)\n"
               "  -d        debug logging\n"
               "  -v        print the version\n"
               "  -h        this help\n"
               "signals: HUP reloads, TERM/INT stop after draining in-flight requests\n");
}

static int
open_listener(const struct conf_addr *a, int backlog, bool reuseport, char *err, size_t errlen)
{
    int one = 1;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:
    snprintf(err, errlen, "cannot listen on %s: %s", a->text, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

static int
open_all(const struct conf *c, struct proxy_listen_fds *fds)
{
    char err[256];

    fds->nworkers = c->workers ? c->workers : 1;
    fds->nlistens = c->nlistens;
    fds->admin_fd = -1;
    fds->fds = calloc(fds->nworkers * (c->nlistens ? c->nlistens : 1), sizeof(int));
    if (fds->fds == NULL)
        return -1;
    for (unsigned w = 0; w < fds->nworkers; w++) {
        for (size_t i = 0; i < c->nlistens; i++) {
            int fd = open_listener(&c->listens[i].addr, c->listens[i].backlog, true, err,
                                   sizeof(err));
            if (fd < 0) {
                fprintf(stderr, "edge: %s\n", err);
                return -1;
            }
            fds->fds[w * c->nlistens + i] = fd;
        }
    }
    if (c->admin != NULL) {
        fds->admin_fd = open_listener(c->admin, 64, false, err, sizeof(err));
        if (fds->admin_fd < 0) {
            fprintf(stderr, "edge: admin: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static pid_t
start_engine(const char *path, struct conf *c, struct proxy_listen_fds *fds, sigset_t *oldmask)
{
    pid_t pid = fork();

    (void)oldmask;
    if (pid != 0)
        return pid;
    /* the engine: signals stay blocked until its handlers are in place
     * (proxy_engine_run unblocks them), so a SIGTERM in between waits */
    _exit(proxy_engine_run(path, c, fds));
}

static uint64_t
mono_ms(void)
{
    return proxy_now_ms();
}

static int
supervise(const char *path, struct conf *conf)
{
    struct proxy_listen_fds fds;
    sigset_t set, old;
    pid_t engine;
    bool stopping = false;
    unsigned fast_crashes = 0;
    uint64_t started_ms, restart_at_ms = 0;
    int exit_code = 0;

    if (open_all(conf, &fds) < 0)
        return 1;
    if (conf->pid_file != NULL) {
        FILE *f = fopen(conf->pid_file, "w");
        if (f != NULL) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, &old);
    signal(SIGPIPE, SIG_IGN);

    for (size_t i = 0; i < conf->nlistens; i++)
        log_info("listening on %s (%u workers)", conf->listens[i].addr.text, fds.nworkers);
    if (conf->admin != NULL)
        log_info("admin on %s", conf->admin->text);
    if (proxy_fn_shared_init() < 0)
        log_warn("functions: no shared crash markers (mmap failed); crashes are not attributed");
    engine = start_engine(path, conf, &fds, &old);
    started_ms = mono_ms();
    for (;;) {
        siginfo_t si;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, &si, &ts);

        if (engine <= 0 && !stopping && restart_at_ms != 0 && mono_ms() >= restart_at_ms) {
            restart_at_ms = 0;
            engine = start_engine(path, conf, &fds, &old);
            started_ms = mono_ms();
            log_info("engine restarted (pid %d)", (int)engine);
        }
        if (sig < 0)
            continue;
        if (sig == SIGCHLD) {
            int status;
            pid_t p;
            while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
                if (p != engine)
                    continue;
                engine = 0;
                if (stopping) {
                    exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
                    goto out;
                }
                if (WIFSIGNALED(status))
                    log_err("engine killed by signal %d (%s)", WTERMSIG(status),
                            strsignal(WTERMSIG(status)));
                else
                    log_err("engine exited with status %d", WEXITSTATUS(status));
                proxy_fn_after_crash(conf); /* names a function that was running; may quarantine it */
                /* restart at once; back off when it keeps dying young */
                if (mono_ms() - started_ms < 5000)
                    fast_crashes++;
                else
                    fast_crashes = 0;
                uint64_t delay = 0;
                if (fast_crashes >= 3) {
                    unsigned shift = fast_crashes - 3 > 6 ? 6 : fast_crashes - 3;
                    delay = 100ull << shift;
                    if (delay > 5000)
                        delay = 5000;
                    log_warn("engine crashed %u times in a row; next start in %llu ms",
                             fast_crashes, (unsigned long long)delay);
                }
                restart_at_ms = mono_ms() + delay;
                if (delay == 0) {
                    restart_at_ms = 0;
                    engine = start_engine(path, conf, &fds, &old);
                    started_ms = mono_ms();
                    log_info("engine restarted (pid %d)", (int)engine);
                }
            }
        } else if (sig == SIGHUP || sig == SIGUSR2) {
            /* keep our copy current so a restarted engine starts from it */
            struct conf_err err;
            struct conf *next = conf_load(path, &err);
            if (next != NULL) {
                conf_unref(conf);
                conf = next;
                proxy_fn_quarantine_clear();
            }
            if (sig == SIGHUP && engine > 0)
                kill(engine, SIGHUP);
        } else {
            stopping = true;
            if (engine <= 0)
                goto out;
            kill(engine, SIGTERM);
        }
    }
out:
    for (unsigned i = 0; i < fds.nworkers * fds.nlistens; i++)
        if (fds.fds[i] >= 0)
            close(fds.fds[i]);
    if (fds.admin_fd >= 0)
        close(fds.admin_fd);
    free(fds.fds);
    if (conf->pid_file != NULL)
        unlink(conf->pid_file);
    conf_unref(conf);
    compute_conf_shutdown();
    log_info("stopped");
    return exit_code;
}

int
main(int argc, char **argv)
{
    const char *path = "conf/edge.conf";
    bool test_only = false;
    struct conf_err err;
    struct conf *conf;
    int opt;

    while ((opt = getopt(argc, argv, "c:tdvh")) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': test_only = true; break;
        case 'd': proxy_log_set_level(LOG_LVL_DEBUG); break;
        case 'v': printf("edge %s\n", EDGE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 1;
    }
    if (cache_conf_register() < 0 || compute_conf_register() < 0) {
        fprintf(stderr, "edge: cannot register the cache and function directives\n");
        return 1;
    }
    if (tls_conf_register() < 0) {
        fprintf(stderr, "edge: cannot register the tls directives\n");
        return 1;
    }
    compute_set_host(&proxy_efn_host);
    if (test_only && proxy_log_level() == LOG_LVL_INFO)
        proxy_log_set_level(LOG_LVL_WARN); /* -t: the verdict, not the loader's chatter */
    conf = conf_load(path, &err);
    if (conf == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        if (test_only)
            fprintf(stderr, "edge: configuration check failed: %s\n", path);
        return 1;
    }
    proxy_upstream_conf_warn(conf);
    if (test_only) {
        printf("edge: configuration %s is ok (%zu listen, %zu origins, %zu sites)\n", path,
               conf->nlistens, conf->norigins, conf->nsites);
        conf_unref(conf);
        return 0;
    }
    return supervise(path, conf);
}
