/*
 * Round-trip time estimator and retransmission timeout (RFC 6298), in
 * microseconds, with a floor in milliseconds rather than RFC 6298's 1 s.
 * Samples must follow Karn's rule (never from a retransmitted datagram);
 * the caller enforces that. Not thread-safe: owned by one peer's lock.
 */
#ifndef DSM_NET_RTT_H
#define DSM_NET_RTT_H

#include <stdbool.h>
#include <stdint.h>

struct dsm__rtt {
	int64_t srtt_us;   /* smoothed RTT, 0 before the first sample */
	int64_t rttvar_us; /* RTT variation */
	int64_t rto_us;    /* current timeout before back-off */
	int64_t min_us, max_us;
	unsigned backoff;  /* number of doublings since the last good ack */
	bool have_sample;
};

/* init_us is the timeout before any sample; min_us/max_us clamp it. */
void dsm__rtt_init(struct dsm__rtt *r, int64_t init_us, int64_t min_us, int64_t max_us);
/* Feed one RTT measurement (> 0); resets the back-off. */
void dsm__rtt_sample(struct dsm__rtt *r, int64_t sample_us);
/* The timeout to arm now: rto_us doubled per back-off, at most max_us. */
int64_t dsm__rtt_timeout(const struct dsm__rtt *r);
/* A timeout fired: double the next one (bounded). */
void dsm__rtt_backoff(struct dsm__rtt *r);

#endif /* DSM_NET_RTT_H */
