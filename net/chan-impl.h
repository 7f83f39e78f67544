/*
 * The reliable channel's insides, shared by the files that implement it;
 * chan.h is the contract for the rest of the library. Nothing outside
 * net/chan*.c, fd.c, frag.c, loss.c and progress.c includes this.
 *
 *   chan.c      the channel object and its lifecycle, the send path
 *               (transmit, output, control datagrams) and the receive
 *               dispatch (decode, admit, ack, accept into the ring)
 *   fd.c        the failure detector: incarnations, HELLO/REJECT/BYE,
 *               heartbeats, silence, peer events, connect
 *   frag.c      framing messages into datagrams, the pending list,
 *               reassembly and delivery
 *   loss.c      ack processing, RACK loss detection, RTO, tail-loss probe,
 *               congestion window
 *   progress.c  the network thread, the timers, polling by hand, the
 *               receive trylock of a waiting thread, kick/wake
 *
 * Locking. Per peer there is one lock (peer.lock), protecting the send
 * side, the liveness state and the published receive state (rcv_nxt,
 * rcv_have) that every outgoing datagram piggybacks. Datagrams are
 * received by one thread at a time: whichever holds c->rx_lock (the
 * network thread, a thread waiting for a reply in dsm__chan_progress_try,
 * or a test in dsm__chan_poll). That thread alone uses the receive ring's
 * contents, the reassembly state and delivers messages; it does so after
 * dropping the peer lock, so callbacks may send. Order: rx_lock, then one
 * peer lock; never two peer locks.
 *
 * Sequence space of the send side, per peer:
 *
 *   snd_una          snd_nxt           snd_end
 *      | in flight     | encoded, waiting | free ring slots ...
 *
 * snd_end - snd_una <= WIN: the ring holds every datagram not yet acked.
 * Messages that do not fit wait, copied, on the peer's pending list.
 * The receive side accepts seq in [rcv_nxt, rcv_nxt + WIN) and advertises
 * WIN (bounded by the transport's posted receive buffers per peer).
 */
#ifndef DSM_NET_CHAN_IMPL_H
#define DSM_NET_CHAN_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "chan.h"
#include "common.h"
#include "rtt.h"
#include "wire.h"

#define WIN 64u             /* ring slots per peer and direction (<= 64: sack bitmap) */
#define WMASK (WIN - 1)

_Static_assert((WIN & (WIN - 1)) == 0 && WIN <= 64, "WIN is a power of two <= 64");

enum peer_state { P_CONNECTING, P_ALIVE, P_DEAD };
enum slot_state { S_EMPTY, S_QUEUED, S_INFLIGHT, S_SACKED };

struct txslot {
	uint8_t *buf;      /* mtu bytes: header then payload */
	uint16_t len;      /* payload length */
	uint16_t flags;    /* DSM_WIRE_F_FIRST/LAST */
	uint8_t state;     /* enum slot_state */
	uint8_t retx;      /* retransmissions of this datagram */
	int64_t sent_ns;   /* last transmission */
};

struct rxslot {
	uint8_t *buf;      /* payload copy, mtu bytes */
	uint16_t len;
	uint16_t flags;
};

/* A message waiting for ring space, copied. off: bytes already framed. */
struct pmsg {
	struct pmsg *next;
	size_t len, off;
	uint8_t data[];
};

struct peer {
	pthread_mutex_t lock;
	unsigned rank;
	/* protected by lock */
	int state;                 /* enum peer_state */
	uint32_t inc;              /* its incarnation, 0 = unknown */
	uint32_t snd_una, snd_nxt, snd_end;
	uint32_t peer_ack, peer_wnd;  /* it accepts seq < peer_ack + peer_wnd */
	uint32_t cwnd, ssthresh, cwnd_acc;
	uint32_t recover;          /* end of the current loss-recovery episode */
	bool in_recovery;
	struct txslot tx[WIN];
	struct pmsg *pend_head, *pend_tail;
	struct dsm__rtt rtt;
	int64_t rto_at;            /* 0: timer off */
	int64_t tlp_at;            /* 0: no probe armed */
	int64_t reo_at;            /* 0: no reordering timer (RACK) */
	int64_t rack_sent, rack_rtt; /* newest delivered datagram: send time, its RTT */
	uint32_t rack_seq;
	bool heard_since_rto;      /* a datagram arrived since the last RTO */
	int64_t last_tx_ns, last_rx_ns;
	int64_t hello_at;          /* next hello while connecting */
	int64_t reject_at;         /* earliest next REJECT */
	uint32_t rcv_nxt;          /* published receive state ... */
	uint64_t rcv_have;         /* bit i: rcv_nxt + i is in the ring */
	uint32_t unacked;          /* datagrams received since our last ack */
	int64_t ack_at;            /* 0: no ack pending */
	/* protected by c->rx_lock (the receiving thread), not by lock */
	struct rxslot rx[WIN];     /* contents; written under lock too */
	uint32_t dlv_nxt;          /* next seq to hand to reassembly */
	uint8_t *mbuf;             /* reassembly buffer, mcap bytes (frag.c) */
	size_t mlen, mexp, mcap;   /* arrived, announced, allocated (grows with mlen) */
	bool in_msg, skip_msg;
};

struct stats {
	atomic_uint_fast64_t msgs_sent, msgs_delivered, bytes_sent, bytes_delivered;
	atomic_uint_fast64_t tx_data, tx_ack, tx_hello, tx_reject;
	atomic_uint_fast64_t retx_rto, retx_fast, retx_tlp;
	atomic_uint_fast64_t rx_data, rx_dup, rx_ooo, rx_corrupt, rx_malformed;
	atomic_uint_fast64_t rx_foreign, rx_stale, rx_window, peers_dead;
	atomic_uint_fast64_t reasm_bytes, reasm_peak; /* written by the rx_lock holder */
};

struct dsm__chan {
	struct dsm__xport *x;
	struct dsm__chan_cfg cfg;
	struct dsm__chan_cbs cbs;
	unsigned nodes, rank;
	uint32_t inc;
	size_t pay;                /* payload bytes per datagram */
	uint32_t adv_wnd;          /* window we advertise */
	int64_t timeout_ns, hb_ns, ack_delay_ns;
	struct peer *peers;
	uint8_t *slab;             /* all ring buffers */
	struct stats st;
	/* the network thread (progress.c) */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	atomic_int sleeping;       /* the network thread is (about to be) blocked */
	atomic_bool leaving;       /* dsm__chan_destroy said goodbye */
	int64_t stop_ns;           /* when stop was set */
	int kick_fd;               /* eventfd that wakes it */
	pthread_mutex_t rx_lock;   /* held by whichever thread receives */
	int64_t now;               /* hand-driven clock (dsm__chan_poll) */
	int64_t last_timers;       /* when the timers last ran; timer thread only */
};

#define STAT(c, f) atomic_fetch_add_explicit(&(c)->st.f, 1, memory_order_relaxed)
#define STATN(c, f, n) atomic_fetch_add_explicit(&(c)->st.f, (n), memory_order_relaxed)

/* Peer events gathered under a peer lock and fired after it is dropped. */
struct evq {
	int n;
	struct { unsigned peer; int ev; } e[4];
};

/* The time to stamp a send or a receipt with: the clock when the network
 * thread runs (senders on other threads stamp with the clock too, so send
 * times stay in order), the hand-driven clock in tests. */
static inline int64_t chan_now(const struct dsm__chan *c)
{
	return c->thread_started ? dsm__now_ns() : c->now;
}

/* The earlier of two deadlines, 0 meaning none. */
static inline int64_t earliest(int64_t a, int64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

/* ---- chan.c: send path, receive dispatch ------------------------------- */

/* (Re)transmit the datagram in slot seq, extra flags added. Peer lock. */
void dsm__chan_transmit(struct dsm__chan *c, struct peer *p, uint32_t seq, uint16_t extra,
			int64_t now);
/* Send what the peer's window and the congestion window allow; arms the
 * loss timers if anything went. Peer lock. */
void dsm__chan_output(struct dsm__chan *c, struct peer *p, int64_t now);
/* Send a header-only datagram (ACK, HELLO, REJECT) carrying our ack
 * state. Peer lock. */
void dsm__chan_send_ctrl(struct dsm__chan *c, struct peer *p, uint8_t type, uint16_t flags,
			 int64_t now);
/* Fresh conversation state for incarnation inc of the peer. Peer lock and
 * (except at create) rx_lock. */
void dsm__chan_peer_reset(struct dsm__chan *c, struct peer *p, uint32_t inc);
/* Drop everything queued for the peer and stop its send timers (it is
 * dead or gone). Peer lock. */
void dsm__chan_tx_abort(struct peer *p);
/* The transport's receive callback: one datagram. rx_lock held. */
void dsm__chan_on_rx(void *arg, const uint8_t *buf, size_t len);

/* ---- fd.c: the failure detector --------------------------------------- */

/* An incarnation from the real-time clock (milliseconds, never 0). */
uint32_t dsm__fd_derive_incarnation(void);
void dsm__fd_evq_add(struct evq *q, unsigned peer, int ev);
/* Fire the queued events. No peer lock held. */
void dsm__fd_evq_fire(struct dsm__chan *c, struct evq *q);
/* p is dead, excluded us or left (ev): sends to it fail from now on, the
 * event is queued on q. Peer lock. */
void dsm__fd_declare_dead(struct dsm__chan *c, struct peer *p, int ev, struct evq *q);
/* Liveness part of a received datagram h from p: stale incarnations, a
 * new incarnation (a new member), a dead peer (answered with REJECT), a
 * REJECT. true if the datagram goes on to ack and data processing. Peer
 * lock and rx_lock. */
bool dsm__fd_admit(struct dsm__chan *c, struct peer *p, const struct dsm__wire_hdr *h,
		   int64_t now, struct evq *q);
/* A HELLO from a live peer: BYE or a probe to answer. Peer lock. */
void dsm__fd_on_hello(struct dsm__chan *c, struct peer *p, const struct dsm__wire_hdr *h,
		      int64_t now, struct evq *q);
/* Once per timer run, before the peers: did we ourselves not run for a
 * long time? Timer thread. */
bool dsm__fd_stalled(struct dsm__chan *c, int64_t now);
/* Timers of a connecting peer: hello probes. Returns the next deadline.
 * Peer lock. */
int64_t dsm__fd_hello_timer(struct dsm__chan *c, struct peer *p, int64_t now);
/* Silence check of a live peer (after a stall, a fresh grace period and a
 * probe). false if it was just declared dead. Peer lock. */
bool dsm__fd_watch(struct dsm__chan *c, struct peer *p, int64_t now, bool stalled,
		   struct evq *q);
/* Heartbeat on an idle link; returns the next heartbeat or silence
 * deadline. Peer lock. */
int64_t dsm__fd_heartbeat(struct dsm__chan *c, struct peer *p, int64_t now);
/* Tell every live peer we are leaving (BYE, three times). Any thread. */
void dsm__fd_goodbye(struct dsm__chan *c);

/* ---- frag.c: framing, reassembly, delivery ---------------------------- */

/* Datagrams a message of len bytes takes. */
size_t dsm__frag_count(const struct dsm__chan *c, size_t len);
/* Frame a whole message into free ring slots (the caller checked there
 * are dsm__frag_count() of them). Peer lock. */
void dsm__frag_put(struct dsm__chan *c, struct peer *p, const struct iovec *iov, int iovcnt,
		   size_t len);
/* Copy a message to the end of the peer's pending list. 0 or DSM_ENOMEM.
 * Peer lock. */
int dsm__frag_queue(struct peer *p, const struct iovec *iov, int iovcnt, size_t len);
/* Move pending messages into free ring slots. Peer lock. */
void dsm__frag_refill(struct dsm__chan *c, struct peer *p);
/* Free the pending list. Peer lock (or no other thread). */
void dsm__frag_drop_pending(struct peer *p);
/* Reassemble and deliver what is in order, up to seq upto. rx_lock held,
 * no peer lock. */
void dsm__frag_deliver(struct dsm__chan *c, struct peer *p, uint32_t upto);
/* Forget a partly reassembled message (and a buffer too big to keep).
 * rx_lock (or no other thread). */
void dsm__frag_rx_reset(struct dsm__chan *c, struct peer *p);
/* Free the reassembly buffer. No other thread. */
void dsm__frag_rx_fini(struct dsm__chan *c, struct peer *p);

/* ---- loss.c: loss recovery -------------------------------------------- */

/* Initial congestion and timer state. Peer lock. */
void dsm__loss_reset(struct dsm__chan *c, struct peer *p);
/* Datagrams just went out: arm the retransmission timer (if off) and the
 * tail-loss probe. Peer lock. */
void dsm__loss_arm(struct dsm__chan *c, struct peer *p, int64_t now);
/* Apply the ack fields of a datagram from p, then send what the windows
 * now allow. Peer lock. */
void dsm__loss_on_ack(struct dsm__chan *c, struct peer *p, const struct dsm__wire_hdr *h,
		      int64_t now);
/* RTO, tail-loss probe and RACK timers of a live peer at now; returns the
 * earliest of them still armed (0: none). Peer lock. */
int64_t dsm__loss_timers(struct dsm__chan *c, struct peer *p, int64_t now);

/* ---- progress.c: the network thread ----------------------------------- */

/* Wake the network thread (flush, stop). Any thread. */
void dsm__progress_kick(struct dsm__chan *c);
/* After a sender changed timers: wake the network thread if it sleeps.
 * Any thread, no lock needed. */
void dsm__progress_wake(struct dsm__chan *c);
/* Stop and join the network thread, if started; close the kick fd. */
void dsm__progress_stop(struct dsm__chan *c);

#endif /* DSM_NET_CHAN_IMPL_H */
