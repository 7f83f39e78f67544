/*
 * rawudp: the raw POSIX UDP references the benchmarks measure our stack
 * against (bench-net, bench-dsm), between two processes on 127.0.0.1.
 *
 * Each measurement has a server side (rawudp_pong, rawudp_sink) and a
 * client side (rawudp_ping, rawudp_stream) on the two ends of a connected
 * socket pair (rawudp_pair). How the two processes start a measurement and
 * learn that the server side ended is the caller's: the client side ends
 * by sending a stop datagram again and again until the caller's wait
 * callback says the server has finished (each side of a UDP exchange may
 * lose it).
 *
 * Errors: every function returns 0 or a negative errno, and then writes
 * what failed into err (the benchmarks print it and exit).
 */
#ifndef DSM_TESTS_PERF_RAWUDP_H
#define DSM_TESTS_PERF_RAWUDP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAWUDP_DGRAM 1472u        /* stream datagram, as the udp provider's mtu */
#define RAWUDP_HDR 16u
#define RAWUDP_PAY (RAWUDP_DGRAM - RAWUDP_HDR)
#define RAWUDP_ACK_EVERY 32u
#define RAWUDP_WINDOW 64u  /* 128 overruns the default 208 KiB socket buffer */
#define RAWUDP_STALL_MS 20 /* stream sender: no ack this long, forget the window */
#define RAWUDP_MAX_SIZE 4096u     /* largest ping or pong datagram */
#define RAWUDP_ERR 160            /* size of an err buffer */

/* Waits at most timeout_ms for word from the server's process that its
 * loop ended; true if it came. The client side calls it between stop
 * datagrams. */
typedef bool (*rawudp_wait_fn)(void *arg, int timeout_ms);

/* A UDP socket bound to 127.0.0.1 on a free port, written to *a. The
 * descriptor, or -errno. */
int rawudp_bound(struct sockaddr_in *a, char *err);

/* Two UDP sockets on 127.0.0.1 connected to each other. 0 or -errno. */
int rawudp_pair(int *s0, int *s1, char *err);

/* SO_RCVTIMEO. 0 or -errno. */
int rawudp_set_rcvtimeo(int s, int ms, char *err);

/* Discards every datagram queued on s. */
void rawudp_drain(int s);

/* Server of a ping-pong: answers every ping datagram on fd with one of
 * reply bytes (0: the ping itself; at least 8, at most RAWUDP_MAX_SIZE)
 * that starts with the ping's sequence number, until a stop datagram.
 * busy: poll with recv(MSG_DONTWAIT) instead of blocking. A receive
 * timeout on fd only makes it look again. 0 or -errno. */
int rawudp_pong(int fd, size_t reply, bool busy, char *err);

/* A ping-pong measurement. */
struct rawudp_ping_cfg {
	size_t size;       /* request bytes, 8 .. RAWUDP_MAX_SIZE */
	size_t reply;      /* expected reply bytes; 0: the same as size */
	bool busy;         /* recv(MSG_DONTWAIT) spin instead of blocking */
	unsigned warm;     /* round trips not recorded */
	unsigned iters;    /* round trips recorded */
	rawudp_wait_fn wait;  /* the server stopped; see the top of the file */
	void *arg;
};

/* Client of a ping-pong with rawudp_pong: cfg->warm + cfg->iters round
 * trips, one datagram each way, each timed alone (ns, into s[cfg->iters]);
 * a ping unanswered for 1 s (fd has a 1 s receive timeout; a busy client
 * counts itself) is sent again and counted in *lost, more than 10 is an
 * error. Then stops the server. 0 or -errno. */
int rawudp_ping(int fd, const struct rawudp_ping_cfg *cfg, int64_t *s, unsigned *lost,
		char *err);

/* Server of a stream: counts the data datagrams on fd and their payload
 * bytes, acks every RAWUDP_ACK_EVERY with the highest sequence number
 * seen, until the end datagram. 0 or -errno. */
int rawudp_sink(int fd, uint64_t *count, uint64_t *bytes, char *err);

struct rawudp_stream_res {
	int64_t ns;        /* from the first datagram until the sink stopped */
	uint64_t sent;     /* data datagrams sent */
	uint64_t stalls;   /* times no ack came for RAWUDP_STALL_MS */
};

/* Client of a stream to rawudp_sink: messages of msg_bytes (cut into
 * RAWUDP_DGRAM datagrams of RAWUDP_PAY payload) until bytes are sent or
 * max_ns have passed, at most RAWUDP_WINDOW datagrams unacknowledged (it
 * blocks in recv() for an ack when the window is full; sets fd's receive
 * timeout to RAWUDP_STALL_MS). Nothing is retransmitted: the goodput is the
 * sink's byte count over res->ns. Then stops the sink. 0 or -errno. */
int rawudp_stream(int fd, uint64_t bytes, int64_t max_ns, uint32_t msg_bytes,
		  rawudp_wait_fn wait, void *arg, struct rawudp_stream_res *res, char *err);

/* ---- output shared by the benchmarks ---------------------------------- */

/* Median of v[0..n) (n >= 1; v is not changed). */
double bench_median(const double *v, int n);

/* One JSON line: {"bench":B,"metric":M,"value":V,"unit":U,"ref":R,
 * "ratio":V/R (null when R <= 0)[,"note":N]}, flushed. */
void bench_emit(const char *bench, const char *metric, double value, const char *unit,
		double ref, const char *note);

#endif /* DSM_TESTS_PERF_RAWUDP_H */
