/*
 * The reliable channel: exactly-once, in-order delivery of messages of any
 * size (up to cfg.max_msg) to each peer over an unreliable datagram
 * transport, with a failure detector.
 *
 * Per peer: 32-bit sequence numbers; cumulative ack + 64-bit selective-ack
 * bitmap piggybacked on every datagram, a pure ack after a short delay
 * otherwise; RTO from measured RTT (RFC 6298, Karn), exponential back-off,
 * fast retransmit on selective-ack gaps, a tail-loss probe; a send window
 * bounded by the receiver's advertised window (its receive slots) and by an
 * AIMD congestion window; fragmentation to the transport's mtu;
 * heartbeats on idle links; a peer silent past peer_timeout_ms is dead.
 *
 * Threads: dsm__chan_send() from any thread (takes only that peer's lock).
 * Everything received is handled by one thread at a time: the network
 * thread started by dsm__chan_start(), which also runs the timers, or a
 * thread waiting for a reply (dsm__chan_progress_try). Callbacks run on
 * that thread, with no peer lock held, in per-peer order.
 *
 * Tests may instead drive the channel by hand with dsm__chan_poll().
 *
 * Implementation: chan.c, fd.c, frag.c, loss.c, progress.c around one
 * private header, chan-impl.h, which says which file holds what.
 */
#ifndef DSM_NET_CHAN_H
#define DSM_NET_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

#include "xport.h"

struct dsm__chan;

enum dsm__peer_event {
	DSM__PEER_UP = 1,       /* first contact with an incarnation of the peer */
	DSM__PEER_DEAD = 2,     /* declared failed: sends to it fail from now on */
	DSM__PEER_EXCLUDED = 3, /* the peer told us we were declared dead */
	DSM__PEER_LEFT = 4,     /* the peer shut down cleanly: sends to it fail */
};

struct dsm__chan_cbs {
	/* A whole message from peer, once, in order. msg is valid only
	 * during the call. */
	void (*deliver)(void *arg, unsigned peer, const uint8_t *msg, size_t len);
	/* A peer changed state (enum dsm__peer_event). */
	void (*peer_event)(void *arg, unsigned peer, int event);
	void *arg;
};

struct dsm__chan_cfg {
	uint32_t cluster;       /* must match on every node */
	uint32_t incarnation;   /* 0: derive from the clock */
	int peer_timeout_ms;    /* silence after which a peer is dead */
	size_t max_msg;         /* largest message accepted, both ways */
	int rto_init_us, rto_min_us, rto_max_us;
	int ack_delay_us;       /* how long a pure ack may wait for a piggyback */
	int spin_us;            /* network thread polls this long before blocking */
	uint32_t isn;           /* first sequence number (tests use values near 2^32) */
};

/* Defaults: cluster 0, timeout 1000 ms, max_msg 64 MiB, RTO 20/5/250 ms,
 * ack delay 500 us, spin 50 us, isn 0. */
void dsm__chan_cfg_default(struct dsm__chan_cfg *cfg);

/* Create a channel over x (not owned). No thread yet. */
int dsm__chan_create(struct dsm__xport *x, const struct dsm__chan_cfg *cfg,
		     const struct dsm__chan_cbs *cbs, struct dsm__chan **out);
/* Start the network thread. */
int dsm__chan_start(struct dsm__chan *c);
/* Wait until every peer has answered (its incarnation is known), at most
 * timeout_ms. 0, or DSM_ETIMEDOUT after logging which ranks are missing. */
int dsm__chan_connect(struct dsm__chan *c, int timeout_ms);
/* Queue a message for peer (copied; gathered from iov). 0, DSM_EPEERDEAD,
 * DSM_EMSGSIZE, DSM_EINVAL (bad peer), DSM_ENOMEM, DSM_ECLOSED. */
int dsm__chan_send(struct dsm__chan *c, unsigned peer, const struct iovec *iov, int iovcnt);
/* Wait until everything queued so far is acknowledged by every live peer,
 * at most timeout_ms. 0 or DSM_ETIMEDOUT. */
int dsm__chan_flush(struct dsm__chan *c, int timeout_ms);
/* Tell every live peer we are leaving (so it does not wait for the
 * timeout), stop the network thread (if any) and free everything. Call
 * dsm__chan_flush() first to deliver what is queued. NULL is fine. */
void dsm__chan_destroy(struct dsm__chan *c);

bool dsm__chan_peer_alive(struct dsm__chan *c, unsigned peer);
uint32_t dsm__chan_incarnation(const struct dsm__chan *c);

/* Receive what has arrived on the calling thread, unless another thread
 * is receiving right now (a trylock: never waits). Callbacks then run on
 * this thread. A thread waiting for a reply calls it so that it takes the
 * reply itself instead of waiting to be woken by the network thread: on
 * this machine each wake-up across CPUs costs tens of microseconds.
 * Returns the number of datagrams handled. */
int dsm__chan_progress_try(struct dsm__chan *c);

/* Drive by hand (no network thread): receive what the transport has and
 * run the timers at time now_ns. Returns the next time (ns) the timers
 * need to run. */
int64_t dsm__chan_poll(struct dsm__chan *c, int64_t now_ns);

struct dsm__chan_stats {
	uint64_t msgs_sent, msgs_delivered;
	uint64_t bytes_sent, bytes_delivered;     /* message payload bytes */
	uint64_t tx_data, tx_ack, tx_hello, tx_reject;
	uint64_t retx_rto, retx_fast, retx_tlp;   /* retransmissions by cause */
	uint64_t rx_data, rx_dup, rx_ooo;         /* data datagrams: all, duplicates dropped, out of order */
	uint64_t rx_corrupt;                      /* bad CRC */
	uint64_t rx_malformed;                    /* truncated, magic, version, type, length */
	uint64_t rx_foreign;                      /* other cluster, bad rank */
	uint64_t rx_stale;                        /* old incarnation or a dead peer */
	uint64_t rx_window;                       /* beyond the receive window */
	uint64_t peers_dead;
	uint64_t reasm_bytes, reasm_peak;         /* reassembly buffers held now, and the most ever (all peers) */
	int64_t rtt_us_min, rtt_us_max;           /* smoothed RTT over live peers */
};
void dsm__chan_stats(struct dsm__chan *c, struct dsm__chan_stats *out);

/* Print every peer's protocol state (debugging, hang reports). */
void dsm__chan_dump(struct dsm__chan *c, FILE *f);

#endif /* DSM_NET_CHAN_H */
