/*
 * proxy/log — the error log: one line per event on stderr (or a file),
 * "2026-11-27T07:30:00.123Z edge[pid] LEVEL: message". Thread-safe: each line
 * is written with one write(2). Noisy events use a rate limiter.
 */
#ifndef EDGE_PROXY_LOG_H
#define EDGE_PROXY_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum { LOG_LVL_ERR = 0, LOG_LVL_WARN = 1, LOG_LVL_INFO = 2, LOG_LVL_DEBUG = 3 };

void proxy_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void proxy_log_set_level(int level);
int proxy_log_level(void);
/* Redirects the log to fd (default 2). */
void proxy_log_set_fd(int fd);

#define log_err(...) proxy_log(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) proxy_log(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) proxy_log(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                            \
    do {                                                                                           \
        if (proxy_log_level() >= LOG_LVL_DEBUG)                                                    \
            proxy_log(LOG_LVL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)

/* At most one event per interval passes; the others are counted and the
 * count is reported with the next one that passes. Zero-initialise. */
struct proxy_log_rl {
    _Atomic uint64_t next_ms;
    _Atomic uint64_t suppressed;
};
/* True when this event may be logged; *suppressed gets how many were dropped. */
bool proxy_log_rl_pass(struct proxy_log_rl *rl, uint64_t interval_ms, uint64_t *suppressed);

/* Monotonic milliseconds (CLOCK_MONOTONIC). */
uint64_t proxy_now_ms(void);

#endif
