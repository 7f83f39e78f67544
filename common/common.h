/*
 * Helpers shared by every layer: error text, logging, clocks and parsing of
 * DSM_* environment variables. Thread-safe; no allocation.
 */
#ifndef DSM_COMMON_COMMON_H
#define DSM_COMMON_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dsm_errors.h"

#define DSM__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DSM__MIN(a, b) ((a) < (b) ? (a) : (b))
#define DSM__MAX(a, b) ((a) > (b) ? (a) : (b))

/* What a thread does in one turn of a polling loop. */
#if defined(__x86_64__) || defined(__i386__)
#define DSM__CPU_RELAX() __builtin_ia32_pause()
#else
#define DSM__CPU_RELAX() atomic_signal_fence(memory_order_seq_cst)
#endif
#define DSM__LIKELY(x) __builtin_expect(!!(x), 1)
#define DSM__UNLIKELY(x) __builtin_expect(!!(x), 0)

enum dsm__log_level {
	DSM__LOG_ERROR = 0,
	DSM__LOG_WARN = 1,
	DSM__LOG_INFO = 2,
	DSM__LOG_DEBUG = 3,
};

/* Current level, from DSM_LOG (error|warn|info|debug, default warn). */
extern int dsm__log_level;

/* Set the rank shown in log lines (-1 = unknown). */
void dsm__log_set_rank(int rank);

/* Print one line to stderr: "libdsm[rank] level: message". */
void dsm__log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define dsm__log_enabled(lvl) (DSM__UNLIKELY((lvl) <= dsm__log_level))
#define DSM__ERR(...) dsm__log(DSM__LOG_ERROR, __VA_ARGS__)
#define DSM__WARN(...) \
	do { if (dsm__log_enabled(DSM__LOG_WARN)) dsm__log(DSM__LOG_WARN, __VA_ARGS__); } while (0)
#define DSM__INFO(...) \
	do { if (dsm__log_enabled(DSM__LOG_INFO)) dsm__log(DSM__LOG_INFO, __VA_ARGS__); } while (0)
#define DSM__DEBUG(...) \
	do { if (dsm__log_enabled(DSM__LOG_DEBUG)) dsm__log(DSM__LOG_DEBUG, __VA_ARGS__); } while (0)

/* Read DSM_LOG once; returns 0 or DSM_ECONFIG (and logs which value). */
int dsm__log_init(void);

/* CLOCK_MONOTONIC in nanoseconds. */
static inline int64_t dsm__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Environment parsing. Each returns 0 and stores the default when the
 * variable is unset or empty, 0 and the value when it parses, and
 * DSM_ECONFIG (after logging "NAME: why") when it does not.
 */
int dsm__env_long(const char *name, long def, long min, long max, long *out);
int dsm__env_bool(const char *name, bool def, bool *out);
/* Returns the value or NULL when unset or empty. */
const char *dsm__env_str(const char *name);

/* Parse "host:port" into its parts; port 1..65535. 0 or DSM_EADDR. */
int dsm__parse_hostport(const char *s, char *host, size_t hostlen, unsigned *port);

#endif /* DSM_COMMON_COMMON_H */
