/*
 * rawudp: raw POSIX UDP ping-pong and stream, the references of the
 * benchmarks (contract in rawudp.h). Plain sockets and libc; runs on the
 * calling thread, allocates nothing.
 */
#include "rawudp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Writes the failure into err; returns e (a negative errno). */
__attribute__((format(printf, 3, 4)))
static int fail(char *err, int e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, RAWUDP_ERR, fmt, ap);
	va_end(ap);
	return e;
}

static bool again(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

int rawudp_bound(struct sockaddr_in *a, char *err)
{
	socklen_t len = sizeof(*a);
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), e;

	if (s < 0)
		return fail(err, -errno, "socket: %s", strerror(errno));
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)a, sizeof(*a)) ||
	    getsockname(s, (struct sockaddr *)a, &len)) {
		e = errno;
		close(s);
		return fail(err, -e, "bind 127.0.0.1:0: %s", strerror(e));
	}
	return s;
}

int rawudp_pair(int *s0, int *s1, char *err)
{
	struct sockaddr_in a0, a1;
	int e;

	*s0 = rawudp_bound(&a0, err);
	if (*s0 < 0)
		return *s0;
	*s1 = rawudp_bound(&a1, err);
	if (*s1 < 0) {
		e = *s1;
		goto fail_s1;
	}
	if (connect(*s0, (struct sockaddr *)&a1, sizeof(a1)) ||
	    connect(*s1, (struct sockaddr *)&a0, sizeof(a0))) {
		e = fail(err, -errno, "connect: %s", strerror(errno));
		goto fail_connect;
	}
	return 0;

fail_connect:
	close(*s1);
fail_s1:
	close(*s0);
	*s0 = *s1 = -1;
	return e;
}

int rawudp_set_rcvtimeo(int s, int ms, char *err)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		return fail(err, -errno, "SO_RCVTIMEO: %s", strerror(errno));
	return 0;
}

void rawudp_drain(int s)
{
	uint8_t b[RAWUDP_MAX_SIZE + 64];

	while (recv(s, b, sizeof(b), MSG_DONTWAIT) >= 0)
		;
}

/* ---- ping-pong ------------------------------------------------------- */

/* Ping datagram: u32 seq, u8 kind, then padding to the request size. The
 * pong starts with the same 8 bytes. */
enum { PING = 0, PING_STOP = 1 };

int rawudp_pong(int fd, size_t reply, bool busy, char *err)
{
	uint8_t b[RAWUDP_MAX_SIZE + 64], out[RAWUDP_MAX_SIZE];

	if (reply && (reply < 8 || reply > RAWUDP_MAX_SIZE))
		return fail(err, -EINVAL, "pong: reply of %zu bytes", reply);
	memset(out, 0xc3, sizeof(out));
	for (;;) {
		ssize_t r = recv(fd, b, sizeof(b), busy ? MSG_DONTWAIT : 0);
		const uint8_t *p = b;
		size_t n = (size_t)r;

		if (r < 0) {
			if (again())
				continue; /* the caller bounds our life */
			return fail(err, -errno, "pong recv: %s", strerror(errno));
		}
		if (r >= 8 && b[4] == PING_STOP)
			break;
		if (reply) {
			if (r < 8)
				continue;
			memcpy(out, b, 8);
			p = out;
			n = reply;
		}
		if (send(fd, p, n, 0) < 0 && !again())
			return fail(err, -errno, "pong send: %s", strerror(errno));
	}
	return 0;
}

int rawudp_ping(int fd, const struct rawudp_ping_cfg *cfg, int64_t *s, unsigned *lost,
		char *err)
{
	uint8_t b[RAWUDP_MAX_SIZE + 64], in[RAWUDP_MAX_SIZE + 64];
	unsigned total = cfg->warm + cfg->iters;
	size_t size = cfg->size, want = cfg->reply ? cfg->reply : cfg->size;
	bool busy = cfg->busy;

	*lost = 0;
	if (size < 8 || size > RAWUDP_MAX_SIZE || want < 8 || want > RAWUDP_MAX_SIZE)
		return fail(err, -EINVAL, "ping: %zu B request, %zu B reply", size, want);
	memset(b, 0xa5, size);
	b[4] = PING;
	for (uint32_t i = 0; i < total; i++) {
		int64_t t0, t1, sent;

		memcpy(b, &i, 4);
		t0 = sent = now_ns();
		if (send(fd, b, size, 0) != (ssize_t)size)
			return fail(err, -errno, "ping send: %s", strerror(errno));
		for (;;) {
			ssize_t r = recv(fd, in, sizeof(in), busy ? MSG_DONTWAIT : 0);
			uint32_t seq;

			if (r < 0) {
				if (!again())
					return fail(err, -errno, "ping recv: %s", strerror(errno));
				if (busy && now_ns() - sent < 1000000000)
					continue;
				if (busy || errno != EINTR) {
					/* 1 s without the answer: lost; send again */
					if (++*lost > 10)
						return fail(err, -ETIMEDOUT,
							    "raw ping-pong: more than 10 datagrams lost");
					sent = now_ns();
					if (send(fd, b, size, 0) != (ssize_t)size)
						return fail(err, -errno, "ping send: %s",
							    strerror(errno));
				}
				continue;
			}
			memcpy(&seq, in, 4);
			if (r == (ssize_t)want && seq == i)
				break;
		}
		t1 = now_ns();
		if (i >= cfg->warm)
			s[i - cfg->warm] = t1 - t0;
	}
	/* Stop the server; repeat the stop datagram until it says done. */
	b[4] = PING_STOP;
	for (int tries = 0;; tries++) {
		if (tries == 100)
			return fail(err, -ETIMEDOUT, "raw ping-pong: the server did not stop");
		if (send(fd, b, 8, 0) < 0 && !again())
			return fail(err, -errno, "stop send: %s", strerror(errno));
		if (cfg->wait(cfg->arg, 100))
			break;
	}
	return 0;
}

/* ---- stream ----------------------------------------------------------- */

/* Stream datagram header: u32 kind, u32 0, u64 seq (DATA, END: count sent;
 * ACK: highest seq received). */
enum { S_DATA = 0, S_END = 2, S_ACK = 3 };

static void put_shdr(uint8_t *b, uint32_t kind, uint64_t v)
{
	uint32_t z = 0;

	memcpy(b, &kind, 4);
	memcpy(b + 4, &z, 4);
	memcpy(b + 8, &v, 8);
}

int rawudp_sink(int fd, uint64_t *count, uint64_t *bytes, char *err)
{
	uint8_t b[RAWUDP_DGRAM + 64], a[RAWUDP_HDR];
	uint64_t high = 0;
	unsigned since = 0;

	*count = *bytes = 0;
	for (;;) {
		ssize_t r = recv(fd, b, sizeof(b), 0);
		uint32_t kind;
		uint64_t seq;

		if (r < 0) {
			if (again())
				continue;
			return fail(err, -errno, "sink recv: %s", strerror(errno));
		}
		if (r < (ssize_t)RAWUDP_HDR)
			continue;
		memcpy(&kind, b, 4);
		memcpy(&seq, b + 8, 8);
		if (kind == S_END)
			break;
		if (kind != S_DATA)
			continue;
		++*count;
		*bytes += (uint64_t)r - RAWUDP_HDR;
		if (seq > high)
			high = seq;
		if (++since == RAWUDP_ACK_EVERY) {
			since = 0;
			put_shdr(a, S_ACK, high);
			if (send(fd, a, sizeof(a), 0) < 0 && !again())
				return fail(err, -errno, "ack send: %s", strerror(errno));
		}
	}
	return 0;
}

int rawudp_stream(int fd, uint64_t bytes, int64_t max_ns, uint32_t msg_bytes,
		  rawudp_wait_fn wait, void *arg, struct rawudp_stream_res *res, char *err)
{
	uint8_t b[RAWUDP_DGRAM], a[RAWUDP_HDR + 64];
	uint64_t seq = 0, acked = 0, stalls = 0, done = 0;
	int64_t t0, t1;
	int e;

	if (!msg_bytes)
		return fail(err, -EINVAL, "stream: empty messages");
	e = rawudp_set_rcvtimeo(fd, RAWUDP_STALL_MS, err);
	if (e)
		return e;
	memset(b, 0x5a, sizeof(b));
	t0 = now_ns();
	while (done < bytes && now_ns() - t0 < max_ns) {
		/* one message's worth of bytes */
		for (uint32_t off = 0; off < msg_bytes; off += RAWUDP_PAY) {
			uint32_t n = msg_bytes - off < RAWUDP_PAY ? msg_bytes - off : RAWUDP_PAY;

			while (seq - acked >= RAWUDP_WINDOW) {
				ssize_t r = recv(fd, a, sizeof(a), 0);
				uint32_t kind;
				uint64_t high;

				if (r < 0) {
					if (!again())
						return fail(err, -errno, "stream recv: %s",
							    strerror(errno));
					if (errno != EINTR) {
						stalls++; /* acks lost with the data: go on */
						acked = seq;
					}
					continue;
				}
				if (r < (ssize_t)RAWUDP_HDR)
					continue;
				memcpy(&kind, a, 4);
				memcpy(&high, a + 8, 8);
				if (kind == S_ACK && high + 1 > acked)
					acked = high + 1;
			}
			put_shdr(b, S_DATA, seq);
			for (;;) {
				if (send(fd, b, RAWUDP_HDR + n, 0) == (ssize_t)(RAWUDP_HDR + n))
					break;
				if (!again())
					return fail(err, -errno, "stream send: %s", strerror(errno));
			}
			seq++;
		}
		done += msg_bytes;
	}
	/* END until the sink reports */
	put_shdr(b, S_END, seq);
	for (int tries = 0;; tries++) {
		if (tries == 250)
			return fail(err, -ETIMEDOUT, "raw stream: no report from the sink");
		if (send(fd, b, RAWUDP_HDR, 0) < 0 && !again())
			return fail(err, -errno, "end send: %s", strerror(errno));
		if (wait(arg, 20))
			break;
	}
	t1 = now_ns();
	res->ns = t1 - t0;
	res->sent = seq;
	res->stalls = stalls;
	return 0;
}

/* ---- output shared by the benchmarks ---------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double bench_median(const double *v, int n)
{
	double *t = malloc(sizeof(double) * (size_t)n), m;

	if (!t)
		return v[0];
	memcpy(t, v, sizeof(double) * (size_t)n);
	qsort(t, (size_t)n, sizeof(double), cmp_double);
	m = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
	free(t);
	return m;
}

void bench_emit(const char *bench, const char *metric, double value, const char *unit,
		double ref, const char *note)
{
	printf("{\"bench\":\"%s\",\"metric\":\"%s\",\"value\":%.2f,\"unit\":\"%s\",\"ref\":%.2f,",
	       bench, metric, value, unit, ref);
	if (ref > 0)
		printf("\"ratio\":%.3f", value / ref);
	else
		printf("\"ratio\":null");
	if (note)
		printf(",\"note\":\"%s\"", note);
	puts("}");
	fflush(stdout);
}
