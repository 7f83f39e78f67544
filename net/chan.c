/*
 * The reliable channel (see chan.h for the contract).
 *
 * Per peer there is one lock, protecting the send side, the liveness
 * state and the published receive state (rcv_nxt, rcv_have) that every
 * outgoing datagram piggybacks. The receive ring, the reassembly buffer and
 * the delivery of messages belong to the network thread alone and are used
 * without the lock, after it is dropped, so callbacks may send.
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
#include "chan.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "rtt.h"
#include "seq.h"
#include "wire.h"

#define WIN 64u             /* ring slots per peer and direction (<= 64: sack bitmap) */
#define WMASK (WIN - 1)
#define ACK_EVERY 32u       /* pure ack at once after this many unacked datagrams */
#define HELLO_CONNECT_NS 20000000LL /* hello period while the peer is unknown */
#define REJECT_GAP_NS 100000000LL   /* at most one REJECT per peer per 100 ms */
#define CWND_INIT 32u
#define CWND_MIN 8u         /* after a timeout with a silent peer */
#define CWND_LOSS_MIN 32u   /* floor after random loss while the peer talks */

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
	/* network thread only */
	struct rxslot rx[WIN];
	uint32_t dlv_nxt;          /* next seq to hand to reassembly */
	uint8_t *mbuf;
	size_t mlen, mexp, mcap;
	bool in_msg, skip_msg;
};

struct stats {
	atomic_uint_fast64_t msgs_sent, msgs_delivered, bytes_sent, bytes_delivered;
	atomic_uint_fast64_t tx_data, tx_ack, tx_hello, tx_reject;
	atomic_uint_fast64_t retx_rto, retx_fast, retx_tlp;
	atomic_uint_fast64_t rx_data, rx_dup, rx_ooo, rx_corrupt, rx_malformed;
	atomic_uint_fast64_t rx_foreign, rx_stale, rx_window, peers_dead;
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
	/* network thread */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	atomic_int sleeping;       /* the network thread is (about to be) blocked */
	atomic_bool leaving;       /* dsm__chan_destroy said goodbye */
	int64_t stop_ns;           /* when stop was set */
	int kick_fd;               /* eventfd that wakes it */
	pthread_mutex_t rx_lock;   /* held by whichever thread receives */
	int64_t now;               /* time of the batch being processed */
	int64_t last_timers;       /* when run_timers last ran */
};

#define STAT(c, f) atomic_fetch_add_explicit(&(c)->st.f, 1, memory_order_relaxed)
#define STATN(c, f, n) atomic_fetch_add_explicit(&(c)->st.f, (n), memory_order_relaxed)

void dsm__chan_cfg_default(struct dsm__chan_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->peer_timeout_ms = 1000;
	cfg->max_msg = 64u << 20;
	cfg->rto_init_us = 20000;
	cfg->rto_min_us = 5000;
	cfg->rto_max_us = 250000;
	cfg->ack_delay_us = 500;
	cfg->spin_us = 50;
	cfg->isn = 0;
}

/* ---- helpers ---------------------------------------------------------- */

static uint32_t derive_incarnation(void)
{
	struct timespec ts;
	uint32_t v;

	clock_gettime(CLOCK_REALTIME, &ts);
	/* milliseconds, so a restarted node compares newer (wrap-safe) */
	v = (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	return v ? v : 1;
}

/* The time to stamp a send or a receipt with: the clock when the network
 * thread runs (senders on other threads stamp with the clock too, so send
 * times stay in order), the hand-driven clock in tests. */
static inline int64_t chan_now(const struct dsm__chan *c)
{
	return c->thread_started ? dsm__now_ns() : c->now;
}

static void kick(struct dsm__chan *c)
{
	uint64_t one = 1;
	ssize_t r;

	if (c->kick_fd < 0)
		return;
	r = write(c->kick_fd, &one, sizeof(one));
	(void)r;
}

/* After a sender changed timers: wake the network thread if it sleeps.
 * Pairs with the store of sleeping + timer scan in net_thread(). */
static void wake_if_sleeping(struct dsm__chan *c)
{
	/* a seq_cst read-modify-write orders our timer update before the
	 * read, against the thread's seq_cst store of sleeping (Dekker) */
	if (atomic_fetch_add(&c->sleeping, 0))
		kick(c);
}

static void fill_hdr(struct dsm__chan *c, struct peer *p, struct dsm__wire_hdr *h,
		     uint8_t type, uint16_t flags)
{
	h->type = type;
	h->flags = flags;
	h->cluster = c->cfg.cluster;
	h->src = (uint16_t)c->rank;
	h->dst = (uint16_t)p->rank;
	h->src_inc = c->inc;
	h->dst_inc = p->inc;
	h->seq = 0;
	h->ack = p->rcv_nxt;
	h->sack = p->rcv_have >> 1;
	h->wnd = (uint16_t)c->adv_wnd;
	h->len = 0;
}

/* Any datagram we send carries our ack state: no pure ack is owed after. */
static void sent_ack_state(struct peer *p, int64_t now)
{
	p->unacked = 0;
	p->ack_at = 0;
	p->last_tx_ns = now;
}

/* Send a header-only datagram. Peer lock held. */
static void send_ctrl(struct dsm__chan *c, struct peer *p, uint8_t type, uint16_t flags,
		      int64_t now)
{
	uint8_t buf[DSM_WIRE_HDR_SIZE];
	struct dsm__wire_hdr h;
	size_t n;

	fill_hdr(c, p, &h, type, flags);
	n = dsm__wire_encode(buf, &h);
	c->x->ops->send(c->x, p->rank, buf, n);
	switch (type) {
	case DSM_WIRE_ACK: STAT(c, tx_ack); break;
	case DSM_WIRE_HELLO: STAT(c, tx_hello); break;
	default: STAT(c, tx_reject); break;
	}
	if (type != DSM_WIRE_REJECT && p->inc)
		sent_ack_state(p, now);
	else
		p->last_tx_ns = now;
}

/* (Re)transmit the datagram in slot seq. Peer lock held. */
static void transmit(struct dsm__chan *c, struct peer *p, uint32_t seq, uint16_t extra,
		     int64_t now)
{
	struct txslot *s = &p->tx[seq & WMASK];
	struct dsm__wire_hdr h;
	size_t n;

	fill_hdr(c, p, &h, DSM_WIRE_DATA, (uint16_t)(s->flags | extra));
	h.seq = seq;
	h.len = s->len;
	n = dsm__wire_encode(s->buf, &h);
	/* DSM_EAGAIN or a send error is a loss like any other: the timers
	 * retransmit. */
	c->x->ops->send(c->x, p->rank, s->buf, n);
	if (s->state == S_QUEUED)
		s->state = S_INFLIGHT;
	s->sent_ns = chan_now(c);
	(void)now;
	STAT(c, tx_data);
	sent_ack_state(p, now);
}

static int64_t tlp_delay_ns(struct dsm__chan *c, struct peer *p)
{
	int64_t d = p->rtt.have_sample ? 2 * p->rtt.srtt_us * 1000 : 2000000;

	d += c->ack_delay_ns;
	return d < 1000000 ? 1000000 : d;
}

/* Send what the windows allow. Peer lock held. */
static void output(struct dsm__chan *c, struct peer *p, int64_t now)
{
	uint32_t limit = p->peer_ack + p->peer_wnd;
	bool sent = false;

	if (p->state != P_ALIVE)
		return;
	while (p->snd_nxt != p->snd_end && dsm__seq_lt(p->snd_nxt, limit) &&
	       p->snd_nxt - p->snd_una < p->cwnd) {
		transmit(c, p, p->snd_nxt, 0, now);
		p->snd_nxt++;
		sent = true;
	}
	if (sent) {
		if (!p->rto_at)
			p->rto_at = now + dsm__rtt_timeout(&p->rtt) * 1000;
		p->tlp_at = now + tlp_delay_ns(c, p);
	}
}

/* Cursor over a gather list. */
struct cur {
	const struct iovec *iov;
	int n, i;
	size_t off;
};

static void cur_copy(struct cur *k, uint8_t *dst, size_t len)
{
	while (len) {
		const struct iovec *v = &k->iov[k->i];
		size_t take = v->iov_len - k->off;

		if (take > len)
			take = len;
		memcpy(dst, (const uint8_t *)v->iov_base + k->off, take);
		dst += take;
		len -= take;
		k->off += take;
		if (k->off == v->iov_len) {
			k->i++;
			k->off = 0;
		}
	}
}

static size_t nfrags(const struct dsm__chan *c, size_t len)
{
	if (len <= c->pay)
		return 1;
	return 1 + (len - (c->pay - 4) + c->pay - 1) / c->pay;
}

/* Frame the next fragment of a message of total length len, of which off
 * bytes are framed already, into the next ring slot. Returns the new off. */
static size_t frame(struct dsm__chan *c, struct peer *p, struct cur *k, size_t len, size_t off)
{
	struct txslot *s = &p->tx[p->snd_end & WMASK];
	uint8_t *pl = s->buf + DSM_WIRE_HDR_SIZE;
	size_t take;

	s->flags = 0;
	if (off == 0) {
		s->flags |= DSM_WIRE_F_FIRST;
		if (len > c->pay) {
			dsm__put_le32(pl, (uint32_t)len);
			take = c->pay - 4;
			cur_copy(k, pl + 4, take);
			s->len = (uint16_t)c->pay;
			goto done;
		}
	}
	take = len - off < c->pay ? len - off : c->pay;
	cur_copy(k, pl, take);
	s->len = (uint16_t)take;
done:
	off += take;
	if (off == len)
		s->flags |= DSM_WIRE_F_LAST;
	s->state = S_QUEUED;
	s->retx = 0;
	p->snd_end++;
	return off;
}

/* Move pending messages into free ring slots. Peer lock held. */
static void refill(struct dsm__chan *c, struct peer *p)
{
	while (p->pend_head && p->snd_end - p->snd_una < WIN) {
		struct pmsg *m = p->pend_head;
		struct iovec v = { m->data + m->off, m->len - m->off };
		struct cur k = { &v, 1, 0, 0 };
		size_t off = m->off;

		/* frame() counts off from the message start; the cursor starts
		 * at the first unframed byte. */
		while (p->snd_end - p->snd_una < WIN && (off < m->len || m->len == 0)) {
			off = frame(c, p, &k, m->len, off);
			if (m->len == 0)
				break;
		}
		m->off = off;
		if (off == m->len) {
			p->pend_head = m->next;
			if (!p->pend_head)
				p->pend_tail = NULL;
			free(m);
		}
	}
}

static void free_pending(struct peer *p)
{
	struct pmsg *m = p->pend_head;

	while (m) {
		struct pmsg *n = m->next;
		free(m);
		m = n;
	}
	p->pend_head = p->pend_tail = NULL;
}

/* Fresh conversation state for a (new) incarnation. Peer lock held. */
static void reset_peer(struct dsm__chan *c, struct peer *p, uint32_t inc)
{
	free_pending(p);
	for (unsigned i = 0; i < WIN; i++) {
		p->tx[i].state = S_EMPTY;
		p->tx[i].retx = 0;
		p->rx[i].len = 0;
		p->rx[i].flags = 0;
	}
	p->inc = inc;
	p->snd_una = p->snd_nxt = p->snd_end = c->cfg.isn;
	p->peer_ack = c->cfg.isn;
	p->peer_wnd = WIN; /* every node has WIN receive slots; its acks may lower it */
	p->cwnd = CWND_INIT;
	p->ssthresh = WIN;
	p->cwnd_acc = 0;
	p->in_recovery = false;
	p->recover = c->cfg.isn;
	dsm__rtt_init(&p->rtt, c->cfg.rto_init_us, c->cfg.rto_min_us, c->cfg.rto_max_us);
	p->rto_at = p->tlp_at = p->reo_at = 0;
	p->rack_sent = p->rack_rtt = 0;
	p->rack_seq = c->cfg.isn;
	p->rcv_nxt = p->dlv_nxt = c->cfg.isn;
	p->rcv_have = 0;
	p->unacked = 0;
	p->ack_at = 0;
	p->in_msg = p->skip_msg = false;
	p->mlen = p->mexp = 0;
}

/* Events gathered under a lock and fired after it is dropped. */
struct evq {
	int n;
	struct { unsigned peer; int ev; } e[4];
};

static void evq_add(struct evq *q, unsigned peer, int ev)
{
	if (q->n < (int)DSM__ARRAY_SIZE(q->e)) {
		q->e[q->n].peer = peer;
		q->e[q->n].ev = ev;
		q->n++;
	}
}

static void evq_fire(struct dsm__chan *c, struct evq *q)
{
	for (int i = 0; i < q->n; i++)
		if (c->cbs.peer_event)
			c->cbs.peer_event(c->cbs.arg, q->e[i].peer, q->e[i].ev);
	q->n = 0;
}

/* Peer lock held. */
static void declare_dead(struct dsm__chan *c, struct peer *p, int ev, struct evq *q)
{
	if (p->state == P_DEAD)
		return;
	p->state = P_DEAD;
	free_pending(p);
	for (unsigned i = 0; i < WIN; i++)
		p->tx[i].state = S_EMPTY;
	p->snd_una = p->snd_nxt = p->snd_end;
	p->rto_at = p->tlp_at = p->ack_at = 0;
	if (ev == DSM__PEER_LEFT) {
		DSM__INFO("peer %u (incarnation %u) left", p->rank, p->inc);
	} else {
		STAT(c, peers_dead);
		DSM__WARN("peer %u (incarnation %u) %s", p->rank, p->inc,
			  ev == DSM__PEER_EXCLUDED ? "says we were declared dead"
						   : "declared dead: silent past DSM_PEER_TIMEOUT_MS");
	}
	evq_add(q, p->rank, ev);
}

/* ---- send side -------------------------------------------------------- */

int dsm__chan_send(struct dsm__chan *c, unsigned peer, const struct iovec *iov, int iovcnt)
{
	struct peer *p;
	size_t len = 0;
	int r = 0;

	if (!c || peer >= c->nodes || peer == c->rank || iovcnt < 0 || (iovcnt && !iov))
		return DSM_EINVAL;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > c->cfg.max_msg)
		return DSM_EMSGSIZE;
	if (atomic_load_explicit(&c->stop, memory_order_relaxed))
		return DSM_ECLOSED;

	p = &c->peers[peer];
	pthread_mutex_lock(&p->lock);
	if (p->state == P_DEAD) {
		r = DSM_EPEERDEAD;
		goto out;
	}
	if (!p->pend_head && p->state == P_ALIVE &&
	    WIN - (p->snd_end - p->snd_una) >= nfrags(c, len)) {
		struct cur k = { iov, iovcnt, 0, 0 };
		size_t off = 0;

		do
			off = frame(c, p, &k, len, off);
		while (off < len);
		output(c, p, chan_now(c));
	} else {
		struct pmsg *m = malloc(sizeof(*m) + len);
		struct cur k = { iov, iovcnt, 0, 0 };

		if (!m) {
			r = DSM_ENOMEM;
			goto out;
		}
		m->next = NULL;
		m->len = len;
		m->off = 0;
		cur_copy(&k, m->data, len);
		if (p->pend_tail)
			p->pend_tail->next = m;
		else
			p->pend_head = m;
		p->pend_tail = m;
		if (p->state == P_ALIVE) {
			refill(c, p);
			output(c, p, chan_now(c));
		}
	}
	STAT(c, msgs_sent);
	STATN(c, bytes_sent, len);
out:
	pthread_mutex_unlock(&p->lock);
	if (!r)
		wake_if_sleeping(c);
	return r;
}

/* ---- ack processing --------------------------------------------------- */

/*
 * Congestion while the peer keeps answering: reduce gently (x0.85, once
 * per episode) and not below CWND_LOSS_MIN. Called only for signs of
 * congestion: a burst of consecutive losses (a full socket buffer drops
 * datagrams back to back) or a timeout. An isolated loss is taken as
 * random and only retransmitted: one sender's window (WIN slots) fits the
 * receiver's socket buffer, so overflow needs several senders at once,
 * and then it drops bursts. Measured on a 1 MiB stream with 5% random
 * loss: halving per loss gave 17 MB/s, x0.85 per loss 85 MB/s, reacting to
 * bursts only about 180 MB/s (0.57 of loss-free).
 * Peer lock held.
 */
static void enter_recovery(struct peer *p)
{
	uint32_t w = p->cwnd * 85 / 100;

	p->in_recovery = true;
	p->recover = p->snd_nxt;
	p->ssthresh = w > CWND_LOSS_MIN ? w : CWND_LOSS_MIN;
	p->cwnd = p->ssthresh;
}

/*
 * Time-based loss detection as in RACK (RFC 8985): a datagram still in
 * flight that was sent before the most recently sent datagram known to be
 * delivered (rack_sent, ties broken by sequence) is lost once it has been
 * out for rack_rtt plus a reordering window. Unlike a duplicate-ack
 * threshold this works with one or two datagrams in flight, the common
 * case for RPCs. Not yet due: arm reo_at. A retransmission gets a new send
 * time, so it is not declared lost again until a later delivery.
 * Peer lock held.
 */
static void rack_detect(struct dsm__chan *c, struct peer *p, int64_t now)
{
	int64_t reo = p->rtt.have_sample ? p->rtt.srtt_us * 250 : 250000;
	uint32_t prev_lost = 0;
	bool have_prev = false;

	if (reo < 20000)
		reo = 20000;
	p->reo_at = 0;
	if (!p->rack_sent)
		return;
	for (uint32_t s = p->snd_una; s != p->snd_nxt; s++) {
		struct txslot *t = &p->tx[s & WMASK];
		int64_t due;

		if (t->state != S_INFLIGHT)
			continue;
		if (t->sent_ns > p->rack_sent ||
		    (t->sent_ns == p->rack_sent && !dsm__seq_lt(s, p->rack_seq)))
			continue;
		due = t->sent_ns + p->rack_rtt + reo;
		if (now < due) {
			if (!p->reo_at || due < p->reo_at)
				p->reo_at = due;
			continue;
		}
		/* back-to-back losses: a queue overflowed */
		if (have_prev && s == prev_lost + 1 && !p->in_recovery)
			enter_recovery(p);
		prev_lost = s;
		have_prev = true;
		if (t->retx < 255)
			t->retx++;
		transmit(c, p, s, 0, now);
		STAT(c, retx_fast);
	}
	/* a lost retransmission is found by the next probe, not the RTO */
	if (have_prev && !p->tlp_at)
		p->tlp_at = now + tlp_delay_ns(c, p);
}

/* Apply the ack fields of a datagram from p. Peer lock held. */
static void on_ack(struct dsm__chan *c, struct peer *p, const struct dsm__wire_hdr *h,
		   int64_t now)
{
	int64_t sample_sent = -1, rack_sent = 0;
	uint32_t ack = h->ack, acked = 0, s, rack_seq = 0;

	if (dsm__seq_gt(ack, p->snd_nxt))
		return; /* acks what we never sent: ignore the fields */
	if (dsm__seq_ge(ack, p->peer_ack)) {
		p->peer_ack = ack;
		p->peer_wnd = h->wnd ? h->wnd : 1;
		if (p->peer_wnd > WIN)
			p->peer_wnd = WIN;
	}
	for (s = p->snd_una; dsm__seq_lt(s, ack); s++) {
		struct txslot *t = &p->tx[s & WMASK];

		if (t->state == S_INFLIGHT && t->retx == 0 && t->sent_ns > sample_sent)
			sample_sent = t->sent_ns;
		if (t->state == S_INFLIGHT && t->sent_ns >= rack_sent) {
			rack_sent = t->sent_ns;
			rack_seq = s;
		}
		t->state = S_EMPTY;
		acked++;
	}
	if (acked)
		p->snd_una = ack;
	for (unsigned i = 0; i < 63; i++) {
		struct txslot *t;

		if (!(h->sack & (1ull << i)))
			continue;
		s = ack + 1 + i;
		if (dsm__seq_lt(s, p->snd_una) || dsm__seq_ge(s, p->snd_nxt))
			continue;
		t = &p->tx[s & WMASK];
		if (t->state == S_INFLIGHT) {
			if (t->retx == 0 && t->sent_ns > sample_sent)
				sample_sent = t->sent_ns;
			if (t->sent_ns >= rack_sent) {
				rack_sent = t->sent_ns;
				rack_seq = s;
			}
			t->state = S_SACKED;
		}
	}
	if (sample_sent >= 0)
		dsm__rtt_sample(&p->rtt, (now - sample_sent) / 1000);

	if (acked) {
		/* Progress: restart the timer, grow the window. */
		p->rtt.backoff = 0;
		p->rto_at = p->snd_una != p->snd_nxt ? now + dsm__rtt_timeout(&p->rtt) * 1000 : 0;
		p->tlp_at = p->snd_una != p->snd_nxt ? now + tlp_delay_ns(c, p) : 0;
		if (p->in_recovery && dsm__seq_ge(p->snd_una, p->recover))
			p->in_recovery = false;
		if (p->cwnd < p->ssthresh) {
			p->cwnd += acked;
		} else {
			p->cwnd_acc += acked;
			if (p->cwnd_acc >= p->cwnd) {
				p->cwnd_acc -= p->cwnd;
				p->cwnd++;
			}
		}
		if (p->cwnd > WIN)
			p->cwnd = WIN;
	}

	if (rack_sent > 0 && (rack_sent > p->rack_sent ||
			      (rack_sent == p->rack_sent && dsm__seq_gt(rack_seq, p->rack_seq)))) {
		p->rack_sent = rack_sent;
		p->rack_seq = rack_seq;
		p->rack_rtt = now - rack_sent;
	}
	rack_detect(c, p, now);
	refill(c, p);
	output(c, p, now);
}

/* ---- receive side ----------------------------------------------------- */

/* Reassemble and deliver what is in order. Network thread, no lock. */
static void deliver_ready(struct dsm__chan *c, struct peer *p, uint32_t upto)
{
	while (p->dlv_nxt != upto) {
		struct rxslot *r = &p->rx[p->dlv_nxt & WMASK];
		const uint8_t *d = r->buf;
		size_t n = r->len;

		p->dlv_nxt++;
		if (r->flags & DSM_WIRE_F_FIRST) {
			p->skip_msg = false;
			if (p->in_msg)
				STAT(c, rx_malformed); /* previous message never ended */
			p->in_msg = false;
			if (r->flags & DSM_WIRE_F_LAST) {
				STAT(c, msgs_delivered);
				STATN(c, bytes_delivered, n);
				c->cbs.deliver(c->cbs.arg, p->rank, d, n);
				continue;
			}
			if (n < 4) {
				p->skip_msg = true;
				STAT(c, rx_malformed);
				continue;
			}
			p->mexp = dsm__get_le32(d);
			if (p->mexp > c->cfg.max_msg || p->mexp <= c->pay - 4) {
				p->skip_msg = true;
				STAT(c, rx_malformed);
				continue;
			}
			if (p->mcap < p->mexp) {
				uint8_t *nb = realloc(p->mbuf, p->mexp);

				if (!nb) {
					/* cannot hold it: the message is lost; say so */
					DSM__ERR("peer %u: no memory for a %zu-byte message", p->rank, p->mexp);
					p->skip_msg = true;
					continue;
				}
				p->mbuf = nb;
				p->mcap = p->mexp;
			}
			d += 4;
			n -= 4;
			p->mlen = 0;
			p->in_msg = true;
		} else if (!p->in_msg) {
			if (!p->skip_msg)
				STAT(c, rx_malformed);
			p->skip_msg = true;
			continue;
		}
		if (p->mlen + n > p->mexp) {
			p->in_msg = false;
			p->skip_msg = true;
			STAT(c, rx_malformed);
			continue;
		}
		memcpy(p->mbuf + p->mlen, d, n);
		p->mlen += n;
		if (r->flags & DSM_WIRE_F_LAST) {
			p->in_msg = false;
			if (p->mlen != p->mexp) {
				STAT(c, rx_malformed);
				continue;
			}
			STAT(c, msgs_delivered);
			STATN(c, bytes_delivered, p->mlen);
			c->cbs.deliver(c->cbs.arg, p->rank, p->mbuf, p->mlen);
			if (p->mcap > (1u << 20)) {
				/* do not keep a huge buffer for a rare large message */
				free(p->mbuf);
				p->mbuf = NULL;
				p->mcap = 0;
			}
		}
	}
}

/* Accept a DATA datagram into the ring. Peer lock held. Returns whether an
 * ack must go out now. */
static bool on_data(struct dsm__chan *c, struct peer *p, const struct dsm__wire_hdr *h,
		    const uint8_t *payload, int64_t now)
{
	uint32_t d = h->seq - p->rcv_nxt;

	STAT(c, rx_data);
	if (dsm__seq_lt(h->seq, p->rcv_nxt) || (d < WIN && (p->rcv_have & (1ull << d)))) {
		STAT(c, rx_dup);
		return true; /* our ack was probably lost: repeat it */
	}
	if (d >= c->adv_wnd) {
		STAT(c, rx_window);
		return true;
	}
	memcpy(p->rx[h->seq & WMASK].buf, payload, h->len);
	p->rx[h->seq & WMASK].len = h->len;
	p->rx[h->seq & WMASK].flags = h->flags;
	p->rcv_have |= 1ull << d;
	while (p->rcv_have & 1) {
		p->rcv_have >>= 1;
		p->rcv_nxt++;
	}
	p->unacked++;
	if (d != 0) {
		STAT(c, rx_ooo);
		return true;
	}
	if (p->rcv_have || p->unacked >= ACK_EVERY || (h->flags & DSM_WIRE_F_PROBE))
		return true;
	if (!p->ack_at)
		p->ack_at = now + c->ack_delay_ns;
	return false;
}

/* One datagram from the transport. Network thread (or the poller). */
static void on_rx(void *arg, const uint8_t *buf, size_t len)
{
	struct dsm__chan *c = arg;
	struct dsm__wire_hdr h;
	struct peer *p;
	struct evq q = { 0 };
	int64_t now = chan_now(c);
	uint32_t upto;
	bool ack_now = false;
	int r;

	r = dsm__wire_decode(buf, len, c->pay, &h);
	if (r < 0) {
		if (r == DSM_WIRE_ECRC)
			STAT(c, rx_corrupt);
		else
			STAT(c, rx_malformed);
		DSM__DEBUG("dropped a datagram of %zu bytes: %s", len, dsm__wire_strerror(r));
		return;
	}
	if (h.cluster != c->cfg.cluster || h.dst != c->rank || h.src >= c->nodes ||
	    h.src == c->rank || h.src_inc == 0) {
		STAT(c, rx_foreign);
		return;
	}
	p = &c->peers[h.src];
	pthread_mutex_lock(&p->lock);
	if (h.dst_inc != 0 && h.dst_inc != c->inc) {
		STAT(c, rx_stale); /* meant for an earlier incarnation of us */
		goto unlock;
	}
	if (p->inc != h.src_inc) {
		if (p->inc && dsm__seq_lt(h.src_inc, p->inc)) {
			STAT(c, rx_stale);
			goto unlock;
		}
		/* First contact, or the peer restarted: a new member. */
		if (p->inc && p->state == P_ALIVE)
			declare_dead(c, p, DSM__PEER_DEAD, &q);
		if (p->inc)
			DSM__INFO("peer %u restarted (incarnation %u -> %u)", p->rank, p->inc, h.src_inc);
		reset_peer(c, p, h.src_inc);
		p->state = P_ALIVE;
		p->last_rx_ns = now;
		evq_add(&q, p->rank, DSM__PEER_UP);
		refill(c, p);
		output(c, p, now);
	}
	if (p->state == P_DEAD) {
		STAT(c, rx_stale);
		if (h.type != DSM_WIRE_REJECT && now >= p->reject_at) {
			send_ctrl(c, p, DSM_WIRE_REJECT, 0, now);
			p->reject_at = now + REJECT_GAP_NS;
		}
		goto unlock;
	}
	p->last_rx_ns = now;
	p->heard_since_rto = true;
	if (h.type == DSM_WIRE_REJECT) {
		if (h.dst_inc == c->inc && !atomic_load(&c->leaving))
			declare_dead(c, p, DSM__PEER_EXCLUDED, &q);
		goto unlock;
	}
	if (h.dst_inc == c->inc)
		on_ack(c, p, &h, now);
	switch (h.type) {
	case DSM_WIRE_DATA:
		if (h.dst_inc != c->inc) {
			STAT(c, rx_stale); /* data before it knew us: impossible unless stale */
			goto unlock;
		}
		ack_now = on_data(c, p, &h, buf + DSM_WIRE_HDR_SIZE, now);
		break;
	case DSM_WIRE_HELLO:
		if (h.flags & DSM_WIRE_F_BYE) {
			declare_dead(c, p, DSM__PEER_LEFT, &q);
			goto unlock;
		}
		if (h.flags & DSM_WIRE_F_PROBE)
			send_ctrl(c, p, DSM_WIRE_HELLO, 0, now);
		break;
	case DSM_WIRE_ACK:
		if (h.flags & DSM_WIRE_F_PROBE)
			ack_now = true;
		break;
	}
	if (ack_now)
		send_ctrl(c, p, DSM_WIRE_ACK, 0, now);
unlock:
	upto = p->rcv_nxt;
	pthread_mutex_unlock(&p->lock);
	if (p->dlv_nxt != upto)
		deliver_ready(c, p, upto);
	evq_fire(c, &q);
}

/* ---- timers ----------------------------------------------------------- */

static int64_t earliest(int64_t a, int64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

/* Run every peer's timers at now; returns the next deadline (ns). */
static int64_t run_timers(struct dsm__chan *c, int64_t now)
{
	int64_t next = now + c->hb_ns;
	bool stalled = c->last_timers && now - c->last_timers > c->timeout_ns / 2;

	/* If we ourselves did not run for a long time (SIGSTOP, a starved
	 * VM), the silence of others says nothing about them: give every
	 * peer a fresh grace period and probe it. A peer that declared us
	 * dead meanwhile answers REJECT, and we learn we were excluded. */
	if (stalled)
		DSM__WARN("network thread stalled for %lld ms; probing peers",
			  (long long)((now - c->last_timers) / 1000000));
	c->last_timers = now;

	for (unsigned i = 0; i < c->nodes; i++) {
		struct peer *p = &c->peers[i];
		struct evq q = { 0 };
		int64_t t = 0;

		if (i == c->rank)
			continue;
		pthread_mutex_lock(&p->lock);
		switch (p->state) {
		case P_CONNECTING:
			if (now >= p->hello_at) {
				send_ctrl(c, p, DSM_WIRE_HELLO, DSM_WIRE_F_PROBE, now);
				p->hello_at = now + HELLO_CONNECT_NS;
			}
			t = p->hello_at;
			break;
		case P_ALIVE:
			if (stalled) {
				p->last_rx_ns = now;
				send_ctrl(c, p, DSM_WIRE_HELLO, DSM_WIRE_F_PROBE, now);
			}
			if (now - p->last_rx_ns > c->timeout_ns) {
				declare_dead(c, p, DSM__PEER_DEAD, &q);
				break;
			}
			if (p->rto_at && now >= p->rto_at) {
				/* Timeout: resend the oldest unacked datagram, back off. */
				uint32_t s = p->snd_una;

				while (s != p->snd_nxt && p->tx[s & WMASK].state == S_SACKED)
					s++;
				if (s != p->snd_nxt) {
					struct txslot *x = &p->tx[s & WMASK];

					if (x->retx < 255)
						x->retx++;
					transmit(c, p, s, 0, now);
					STAT(c, retx_rto);
				}
				/* Back off only while the peer is silent: if its
				 * datagrams still arrive the path works and the loss
				 * was random, so doubling would only add delay. */
				if (!p->heard_since_rto) {
					/* silence: congestion or worse; start small */
					dsm__rtt_backoff(&p->rtt);
					p->ssthresh = p->cwnd / 2 > CWND_MIN ? p->cwnd / 2 : CWND_MIN;
					p->cwnd = CWND_MIN;
					p->in_recovery = true;
					p->recover = p->snd_nxt;
				} else if (!p->in_recovery) {
					enter_recovery(p);
				}
				p->heard_since_rto = false;
				p->rto_at = now + dsm__rtt_timeout(&p->rtt) * 1000;
				p->tlp_at = now + tlp_delay_ns(c, p);
			}
			if (p->tlp_at && now >= p->tlp_at && p->snd_una != p->snd_nxt) {
				/* Tail-loss probe: resend the newest datagram still
				 * unacknowledged, asking for an immediate ack; its
				 * sack shows any holes. (When the window is stuck on a
				 * lost retransmission, that is the retransmission.) */
				uint32_t s = p->snd_nxt;

				do
					s--;
				while (s != p->snd_una && p->tx[s & WMASK].state != S_INFLIGHT);
				if (p->tx[s & WMASK].state == S_INFLIGHT) {
					struct txslot *x = &p->tx[s & WMASK];

					if (x->retx < 255)
						x->retx++;
					transmit(c, p, s, DSM_WIRE_F_PROBE, now);
					STAT(c, retx_tlp);
				}
				p->tlp_at = 0;
			}
			if (p->reo_at && now >= p->reo_at)
				rack_detect(c, p, now);
			if (p->ack_at && now >= p->ack_at)
				send_ctrl(c, p, DSM_WIRE_ACK, 0, now);
			if (now - p->last_tx_ns >= c->hb_ns)
				send_ctrl(c, p, DSM_WIRE_HELLO, 0, now);
			t = earliest(p->rto_at, p->tlp_at);
			t = earliest(t, p->reo_at);
			t = earliest(t, p->ack_at);
			t = earliest(t, p->last_tx_ns + c->hb_ns);
			t = earliest(t, p->last_rx_ns + c->timeout_ns + 1);
			break;
		default:
			break;
		}
		pthread_mutex_unlock(&p->lock);
		evq_fire(c, &q);
		if (t && t < next)
			next = t;
	}
	return next;
}

int64_t dsm__chan_poll(struct dsm__chan *c, int64_t now_ns)
{
	int64_t next, xd;
	int n;

	c->now = now_ns;
	pthread_mutex_lock(&c->rx_lock);
	do
		n = c->x->ops->progress(c->x, on_rx, c, 64);
	while (n > 0);
	pthread_mutex_unlock(&c->rx_lock);
	next = run_timers(c, now_ns);
	xd = c->x->ops->next_deadline(c->x);
	return xd < next ? xd : next;
}

int dsm__chan_progress_try(struct dsm__chan *c)
{
	int n;

	if (pthread_mutex_trylock(&c->rx_lock))
		return 0;
	n = c->x->ops->progress(c->x, on_rx, c, 16);
	pthread_mutex_unlock(&c->rx_lock);
	return n > 0 ? n : 0;
}

/* ---- network thread --------------------------------------------------- */

static void *net_thread(void *arg)
{
	struct dsm__chan *c = arg;
	int64_t spin_ns = (int64_t)c->cfg.spin_us * 1000, active = dsm__now_ns();
	int64_t next_timer = 0;

	for (;;) {
		int64_t now, deadline, xd;
		struct pollfd pfd[2];
		struct timespec ts;
		int n, fd = -1;

		/* Stopping: first let the transport send what it still holds
		 * back (the fault shim delays and reorders; the goodbyes are
		 * among them), for at most 100 ms. */
		if (atomic_load_explicit(&c->stop, memory_order_acquire) &&
		    (c->x->ops->next_deadline(c->x) == INT64_MAX ||
		     dsm__now_ns() - c->stop_ns > 100000000LL))
			break;
		pthread_mutex_lock(&c->rx_lock);
		n = c->x->ops->progress(c->x, on_rx, c, 64);
		pthread_mutex_unlock(&c->rx_lock);
		now = dsm__now_ns();
		if (n > 0)
			active = now;
		if (n > 0 || now >= next_timer)
			next_timer = run_timers(c, now);
		if (n > 0 || now - active < spin_ns) {
			/* While spinning, timers still run when due; yield so a
			 * thread waiting for this CPU runs (see rpc.c). */
			if (n <= 0)
				sched_yield();
			continue;
		}
		/* Block. Announce it first, then look at the timers once more,
		 * so a sender that queued data either sees us asleep (and
		 * kicks) or we see its data (and its timer). */
		atomic_store(&c->sleeping, 1);
		next_timer = run_timers(c, now);
		if (c->x->ops->wait_prepare(c->x, &fd) == DSM_EAGAIN) {
			atomic_store(&c->sleeping, 0);
			continue;
		}
		deadline = next_timer;
		xd = c->x->ops->next_deadline(c->x);
		if (xd < deadline)
			deadline = xd;
		now = dsm__now_ns();
		if (deadline < now)
			deadline = now;
		ts.tv_sec = (deadline - now) / 1000000000;
		ts.tv_nsec = (deadline - now) % 1000000000;
		pfd[0].fd = fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = c->kick_fd;
		pfd[1].events = POLLIN;
		n = ppoll(pfd, 2, &ts, NULL);
		atomic_store(&c->sleeping, 0);
		if (n > 0 && (pfd[1].revents & POLLIN)) {
			uint64_t v;
			ssize_t rr = read(c->kick_fd, &v, sizeof(v));
			(void)rr;
			next_timer = 0; /* a sender changed timers: rescan */
		}
		active = dsm__now_ns();
	}
	return NULL;
}

/* ---- lifecycle -------------------------------------------------------- */

int dsm__chan_create(struct dsm__xport *x, const struct dsm__chan_cfg *cfg,
		     const struct dsm__chan_cbs *cbs, struct dsm__chan **out)
{
	struct dsm__chan *c;
	size_t per;

	if (!x || !cfg || !cbs || !cbs->deliver || !out || x->nodes < 1 || x->rank >= x->nodes ||
	    x->mtu <= DSM_WIRE_HDR_SIZE + 4 || x->nodes > 65535)
		return DSM_EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return DSM_ENOMEM;
	c->x = x;
	c->cfg = *cfg;
	c->cbs = *cbs;
	c->nodes = x->nodes;
	c->rank = x->rank;
	c->inc = cfg->incarnation ? cfg->incarnation : derive_incarnation();
	c->pay = x->mtu - DSM_WIRE_HDR_SIZE;
	if (c->pay > UINT16_MAX)
		c->pay = UINT16_MAX;
	c->adv_wnd = WIN;
	c->timeout_ns = (int64_t)cfg->peer_timeout_ms * 1000000;
	/* Ten heartbeats per timeout: even at 30% loss the chance that all of
	 * them are lost (0.3^10) is negligible, so loss alone never kills. */
	c->hb_ns = c->timeout_ns / 10;
	if (c->cfg.rto_max_us > cfg->peer_timeout_ms * 1000 / 8)
		c->cfg.rto_max_us = cfg->peer_timeout_ms * 1000 / 8;
	if (c->cfg.rto_max_us < c->cfg.rto_min_us)
		c->cfg.rto_max_us = c->cfg.rto_min_us;
	c->ack_delay_ns = (int64_t)cfg->ack_delay_us * 1000;
	c->kick_fd = -1;
	pthread_mutex_init(&c->rx_lock, NULL);
	c->peers = calloc(c->nodes, sizeof(*c->peers));
	per = (size_t)WIN * 2 * x->mtu;
	c->slab = malloc(per * c->nodes);
	if (!c->peers || !c->slab)
		goto fail_mem;
	for (unsigned i = 0; i < c->nodes; i++) {
		struct peer *p = &c->peers[i];
		uint8_t *b = c->slab + per * i;

		pthread_mutex_init(&p->lock, NULL);
		p->rank = i;
		for (unsigned j = 0; j < WIN; j++) {
			p->tx[j].buf = b + (size_t)j * x->mtu;
			p->rx[j].buf = b + (size_t)(WIN + j) * x->mtu;
		}
		reset_peer(c, p, 0);
		p->state = i == c->rank ? P_DEAD : P_CONNECTING;
	}
	*out = c;
	return 0;
fail_mem:
	free(c->slab);
	free(c->peers);
	free(c);
	return DSM_ENOMEM;
}

int dsm__chan_start(struct dsm__chan *c)
{
	int r;

	c->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->kick_fd < 0)
		return DSM_ESYS;
	c->thread_started = true;
	r = pthread_create(&c->thread, NULL, net_thread, c);
	if (r) {
		c->thread_started = false;
		close(c->kick_fd);
		c->kick_fd = -1;
		return DSM_ESYS;
	}
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

int dsm__chan_connect(struct dsm__chan *c, int timeout_ms)
{
	int64_t end = dsm__now_ns() + (int64_t)timeout_ms * 1000000;

	for (;;) {
		unsigned missing = 0;
		char list[256];
		size_t n = 0;

		list[0] = '\0';
		for (unsigned i = 0; i < c->nodes; i++) {
			struct peer *p = &c->peers[i];
			int st;

			pthread_mutex_lock(&p->lock);
			st = p->state;
			pthread_mutex_unlock(&p->lock);
			if (i != c->rank && st == P_CONNECTING) {
				missing++;
				if (n < sizeof(list) - 16)
					n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%u",
							      missing > 1 ? "," : "", i);
			}
		}
		if (!missing)
			return 0;
		if (dsm__now_ns() >= end) {
			DSM__ERR("no answer from rank(s) %s within %d ms: are they started, "
				 "and are their addresses right?", list, timeout_ms);
			return DSM_ETIMEDOUT;
		}
		if (!c->thread_started)
			return DSM_EAGAIN;
		sleep_ms(1);
	}
}

int dsm__chan_flush(struct dsm__chan *c, int timeout_ms)
{
	int64_t end = dsm__now_ns() + (int64_t)timeout_ms * 1000000;

	for (;;) {
		bool busy = false;

		for (unsigned i = 0; i < c->nodes; i++) {
			struct peer *p = &c->peers[i];

			pthread_mutex_lock(&p->lock);
			if (p->state == P_ALIVE && (p->snd_una != p->snd_end || p->pend_head))
				busy = true;
			/* also send an ack we owe now, so the peer can flush */
			if (p->state == P_ALIVE && p->ack_at) {
				p->ack_at = 1;
				busy = true;
			}
			pthread_mutex_unlock(&p->lock);
		}
		if (!busy)
			return 0;
		if (dsm__now_ns() >= end)
			return DSM_ETIMEDOUT;
		kick(c);
		sleep_ms(1);
	}
}

void dsm__chan_destroy(struct dsm__chan *c)
{
	if (!c)
		return;
	/* A peer that saw our goodbye answers anything more from us with
	 * REJECT: not news to report from here on. */
	atomic_store(&c->leaving, true);
	/* Goodbye, three times since it is not retransmitted. The network
	 * thread still runs meanwhile (a transport such as the fault shim may
	 * hold datagrams back until it polls). */
	for (int k = 0; k < 3; k++) {
		for (unsigned i = 0; i < c->nodes; i++) {
			struct peer *p = &c->peers[i];

			pthread_mutex_lock(&p->lock);
			if (p->state == P_ALIVE)
				send_ctrl(c, p, DSM_WIRE_HELLO, DSM_WIRE_F_BYE, chan_now(c));
			pthread_mutex_unlock(&p->lock);
		}
	}
	if (c->thread_started) {
		c->stop_ns = dsm__now_ns();
		atomic_store_explicit(&c->stop, true, memory_order_release);
		kick(c);
		pthread_join(c->thread, NULL);
	}
	if (c->kick_fd >= 0)
		close(c->kick_fd);
	for (unsigned i = 0; i < c->nodes; i++) {
		free_pending(&c->peers[i]);
		free(c->peers[i].mbuf);
		pthread_mutex_destroy(&c->peers[i].lock);
	}
	pthread_mutex_destroy(&c->rx_lock);
	free(c->slab);
	free(c->peers);
	free(c);
}

bool dsm__chan_peer_alive(struct dsm__chan *c, unsigned peer)
{
	bool alive;

	if (peer >= c->nodes)
		return false;
	if (peer == c->rank)
		return true;
	pthread_mutex_lock(&c->peers[peer].lock);
	alive = c->peers[peer].state != P_DEAD;
	pthread_mutex_unlock(&c->peers[peer].lock);
	return alive;
}

uint32_t dsm__chan_incarnation(const struct dsm__chan *c)
{
	return c->inc;
}

void dsm__chan_stats(struct dsm__chan *c, struct dsm__chan_stats *o)
{
#define LD(f) o->f = atomic_load_explicit(&c->st.f, memory_order_relaxed)
	memset(o, 0, sizeof(*o));
	LD(msgs_sent); LD(msgs_delivered); LD(bytes_sent); LD(bytes_delivered);
	LD(tx_data); LD(tx_ack); LD(tx_hello); LD(tx_reject);
	LD(retx_rto); LD(retx_fast); LD(retx_tlp);
	LD(rx_data); LD(rx_dup); LD(rx_ooo); LD(rx_corrupt); LD(rx_malformed);
	LD(rx_foreign); LD(rx_stale); LD(rx_window); LD(peers_dead);
#undef LD
	o->rtt_us_min = INT64_MAX;
	o->rtt_us_max = 0;
	for (unsigned i = 0; i < c->nodes; i++) {
		struct peer *p = &c->peers[i];

		pthread_mutex_lock(&p->lock);
		if (p->state == P_ALIVE && p->rtt.have_sample) {
			if (p->rtt.srtt_us < o->rtt_us_min)
				o->rtt_us_min = p->rtt.srtt_us;
			if (p->rtt.srtt_us > o->rtt_us_max)
				o->rtt_us_max = p->rtt.srtt_us;
		}
		pthread_mutex_unlock(&p->lock);
	}
	if (o->rtt_us_min == INT64_MAX)
		o->rtt_us_min = 0;
}

void dsm__chan_dump(struct dsm__chan *c, FILE *f)
{
	for (unsigned i = 0; i < c->nodes; i++) {
		struct peer *p = &c->peers[i];

		if (i == c->rank)
			continue;
		pthread_mutex_lock(&p->lock);
		fprintf(f, "rank %u -> %u: state %d inc %u una %u nxt %u end %u peer_ack %u wnd %u cwnd %u "
			"rto_at %+lld tlp_at %+lld pend %d | rcv_nxt %u have %#llx dlv %u in_msg %d skip %d "
			"srtt %lld rto %lld backoff %u\n",
			c->rank, i, p->state, p->inc, p->snd_una, p->snd_nxt, p->snd_end, p->peer_ack,
			p->peer_wnd, p->cwnd, (long long)(p->rto_at ? p->rto_at - c->now : 0),
			(long long)(p->tlp_at ? p->tlp_at - c->now : 0), p->pend_head != NULL,
			p->rcv_nxt, (unsigned long long)p->rcv_have, p->dlv_nxt, p->in_msg, p->skip_msg,
			(long long)p->rtt.srtt_us, (long long)p->rtt.rto_us, p->rtt.backoff);
		pthread_mutex_unlock(&p->lock);
	}
}
