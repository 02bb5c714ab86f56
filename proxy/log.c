#include "proxy/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = LOG_LVL_INFO;
static _Atomic int log_fd = 2;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
proxy_log_set_level(int level)
{
    log_level = level;
}

int
proxy_log_level(void)
{
    return log_level;
}

void
proxy_log_set_fd(int fd)
{
    log_fd = fd;
}

uint64_t
proxy_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
proxy_log(int level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n, m;

    if (level > log_level)
        return;
    if (level < 0 || level > LOG_LVL_DEBUG)
        level = LOG_LVL_ERR;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ edge[%d] %s: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), (int)getpid(), level_names[level]);
    if (n < 0)
        return;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, (size_t)n);
    (void)w;
}

bool
proxy_log_rl_pass(struct proxy_log_rl *rl, uint64_t interval_ms, uint64_t *suppressed)
{
    uint64_t now = proxy_now_ms();
    uint64_t next = atomic_load(&rl->next_ms);

    if (now >= next && atomic_compare_exchange_strong(&rl->next_ms, &next, now + interval_ms)) {
        uint64_t s = atomic_exchange(&rl->suppressed, 0);
        if (suppressed != NULL)
            *suppressed = s;
        return true;
    }
    atomic_fetch_add(&rl->suppressed, 1);
    return false;
}
