/*
 * Shared helpers: error strings, logging, DSM_* parsing. See common.h.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int dsm__log_level = DSM__LOG_WARN;
static int log_rank = -1;

static const char *const errtext[] = {
	[0] = "success",
	[-DSM_EINVAL] = "invalid argument",
	[-DSM_ENOMEM] = "out of memory",
	[-DSM_EPEERDEAD] = "peer has failed",
	[-DSM_ETIMEDOUT] = "timed out",
	[-DSM_EAGAIN] = "resource temporarily unavailable",
	[-DSM_EADDRINUSE] = "address already in use",
	[-DSM_EADDR] = "bad or unreachable address",
	[-DSM_EPROVIDER] = "network provider unknown or unusable",
	[-DSM_ECONFIG] = "malformed DSM_* configuration variable",
	[-DSM_EMSGSIZE] = "message too large",
	[-DSM_EPROTO] = "malformed message",
	[-DSM_ECLOSED] = "not initialised or shutting down",
	[-DSM_ESYS] = "system or provider error",
	[-DSM_ENOTSUP] = "not supported",
	[-DSM_ENOENT] = "no such object",
	[-DSM_EBUSY] = "resource busy",
	[-DSM_EOWNERDEAD] = "lock granted, but its previous holder died holding it",
	[-DSM_EPERM] = "operation not permitted to this caller",
	[-DSM_EDEADLK] = "would wait forever (deadlock)",
};

DSM_EXPORT const char *dsm_strerror(int err)
{
	if (err > 0 || err <= DSM_ERRNO_MIN || !errtext[-err])
		return "unknown error";
	return errtext[-err];
}

void dsm__log_set_rank(int rank)
{
	log_rank = rank;
}

void dsm__log(int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char line[1024];
	int n;
	va_list ap;

	if (level > dsm__log_level)
		return;
	if (log_rank >= 0)
		n = snprintf(line, sizeof(line), "libdsm[%d] %s: ", log_rank, names[level]);
	else
		n = snprintf(line, sizeof(line), "libdsm %s: ", names[level]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write so lines of concurrent threads do not interleave. */
	fwrite(line, 1, (size_t)n, stderr);
}

int dsm__log_init(void)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *v = dsm__env_str("DSM_LOG");

	if (!v) {
		dsm__log_level = DSM__LOG_WARN;
		return 0;
	}
	for (int i = 0; i < (int)DSM__ARRAY_SIZE(names); i++) {
		if (!strcasecmp(v, names[i])) {
			dsm__log_level = i;
			return 0;
		}
	}
	DSM__ERR("DSM_LOG: '%s' is not one of error, warn, info, debug", v);
	return DSM_ECONFIG;
}

const char *dsm__env_str(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

int dsm__env_long(const char *name, long def, long min, long max, long *out)
{
	const char *v = dsm__env_str(name);
	char *end;
	long x;

	if (!v) {
		*out = def;
		return 0;
	}
	errno = 0;
	x = strtol(v, &end, 0);
	if (errno || end == v || *end) {
		DSM__ERR("%s: '%s' is not an integer", name, v);
		return DSM_ECONFIG;
	}
	if (x < min || x > max) {
		DSM__ERR("%s: %ld is outside %ld..%ld", name, x, min, max);
		return DSM_ECONFIG;
	}
	*out = x;
	return 0;
}

int dsm__env_bool(const char *name, bool def, bool *out)
{
	const char *v = dsm__env_str(name);

	if (!v) {
		*out = def;
		return 0;
	}
	if (!strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "true") ||
	    !strcasecmp(v, "on")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "false") ||
	    !strcasecmp(v, "off")) {
		*out = false;
		return 0;
	}
	DSM__ERR("%s: '%s' is not a boolean (0/1, yes/no)", name, v);
	return DSM_ECONFIG;
}

int dsm__parse_hostport(const char *s, char *host, size_t hostlen, unsigned *port)
{
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long p;
	size_t hl;

	if (!colon || colon == s)
		return DSM_EADDR;
	hl = (size_t)(colon - s);
	if (hl >= hostlen)
		return DSM_EADDR;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || p == 0 || p > 65535)
		return DSM_EADDR;
	memcpy(host, s, hl);
	host[hl] = '\0';
	*port = (unsigned)p;
	return 0;
}
