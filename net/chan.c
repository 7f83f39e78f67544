/*
 * The reliable channel object (see chan.h for the contract, chan-impl.h
 * for the state, its locking and the files that implement the rest).
 *
 * This file: the channel's lifecycle (create, flush, destroy; the thread
 * is progress.c's), the send path (dsm__chan_send: frame into the ring or
 * queue, transmit, output, control datagrams) and the receive dispatch
 * (dsm__chan_on_rx: decode and check a datagram, let the failure detector
 * admit it, apply its acks, accept its data into the receive ring, ack,
 * then hand what is in order to reassembly), plus statistics and the
 * state dump.
 *
 * Threads: dsm__chan_send, flush, stats and dump from any thread, taking
 * one peer lock at a time; dsm__chan_on_rx on the receiving thread (the
 * holder of rx_lock), which takes the sender's peer lock for the protocol
 * state and drops it before delivering and firing events.
 */
#include "chan-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "seq.h"

#define ACK_EVERY 32u       /* pure ack at once after this many unacked datagrams */

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

/* ---- send path -------------------------------------------------------- */

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

void dsm__chan_send_ctrl(struct dsm__chan *c, struct peer *p, uint8_t type, uint16_t flags,
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

void dsm__chan_transmit(struct dsm__chan *c, struct peer *p, uint32_t seq, uint16_t extra,
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

void dsm__chan_output(struct dsm__chan *c, struct peer *p, int64_t now)
{
	uint32_t limit = p->peer_ack + p->peer_wnd;
	bool sent = false;

	if (p->state != P_ALIVE)
		return;
	while (p->snd_nxt != p->snd_end && dsm__seq_lt(p->snd_nxt, limit) &&
	       p->snd_nxt - p->snd_una < p->cwnd) {
		dsm__chan_transmit(c, p, p->snd_nxt, 0, now);
		p->snd_nxt++;
		sent = true;
	}
	if (sent)
		dsm__loss_arm(c, p, now);
}

void dsm__chan_peer_reset(struct dsm__chan *c, struct peer *p, uint32_t inc)
{
	dsm__frag_drop_pending(p);
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
	dsm__loss_reset(c, p);
	p->rcv_nxt = p->dlv_nxt = c->cfg.isn;
	p->rcv_have = 0;
	p->unacked = 0;
	p->ack_at = 0;
	dsm__frag_rx_reset(c, p);
}

void dsm__chan_tx_abort(struct peer *p)
{
	dsm__frag_drop_pending(p);
	for (unsigned i = 0; i < WIN; i++)
		p->tx[i].state = S_EMPTY;
	p->snd_una = p->snd_nxt = p->snd_end;
	p->rto_at = p->tlp_at = p->ack_at = 0;
}

/* Any thread; takes the peer's lock. The message is framed straight into
 * the ring when it fits and nothing waits before it, else copied to the
 * pending list. */
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
	    WIN - (p->snd_end - p->snd_una) >= dsm__frag_count(c, len)) {
		dsm__frag_put(c, p, iov, iovcnt, len);
		dsm__chan_output(c, p, chan_now(c));
	} else {
		r = dsm__frag_queue(p, iov, iovcnt, len);
		if (r)
			goto out;
		if (p->state == P_ALIVE) {
			dsm__frag_refill(c, p);
			dsm__chan_output(c, p, chan_now(c));
		}
	}
	STAT(c, msgs_sent);
	STATN(c, bytes_sent, len);
out:
	pthread_mutex_unlock(&p->lock);
	if (!r)
		dsm__progress_wake(c);
	return r;
}

/* ---- receive dispatch ------------------------------------------------- */

/* Accept a DATA datagram into the ring. Peer lock and rx_lock held.
 * Returns whether an ack must go out now. */
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

void dsm__chan_on_rx(void *arg, const uint8_t *buf, size_t len)
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
	if (!dsm__fd_admit(c, p, &h, now, &q))
		goto unlock;
	if (h.dst_inc == c->inc)
		dsm__loss_on_ack(c, p, &h, now);
	switch (h.type) {
	case DSM_WIRE_DATA:
		if (h.dst_inc != c->inc) {
			STAT(c, rx_stale); /* data before it knew us: impossible unless stale */
			goto unlock;
		}
		ack_now = on_data(c, p, &h, buf + DSM_WIRE_HDR_SIZE, now);
		break;
	case DSM_WIRE_HELLO:
		dsm__fd_on_hello(c, p, &h, now, &q);
		break;
	case DSM_WIRE_ACK:
		if (h.flags & DSM_WIRE_F_PROBE)
			ack_now = true;
		break;
	}
	if (ack_now)
		dsm__chan_send_ctrl(c, p, DSM_WIRE_ACK, 0, now);
unlock:
	upto = p->rcv_nxt;
	pthread_mutex_unlock(&p->lock);
	if (p->dlv_nxt != upto)
		dsm__frag_deliver(c, p, upto);
	dsm__fd_evq_fire(c, &q);
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
	c->inc = cfg->incarnation ? cfg->incarnation : dsm__fd_derive_incarnation();
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
		dsm__chan_peer_reset(c, p, 0);
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

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Any thread; takes each peer lock in turn, kicks the network thread so
 * owed acks go out at once. */
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
		dsm__progress_kick(c);
		sleep_ms(1);
	}
}

void dsm__chan_destroy(struct dsm__chan *c)
{
	if (!c)
		return;
	dsm__fd_goodbye(c);
	dsm__progress_stop(c);
	for (unsigned i = 0; i < c->nodes; i++) {
		dsm__frag_drop_pending(&c->peers[i]);
		dsm__frag_rx_fini(c, &c->peers[i]);
		pthread_mutex_destroy(&c->peers[i].lock);
	}
	pthread_mutex_destroy(&c->rx_lock);
	free(c->slab);
	free(c->peers);
	free(c);
}

/* ---- statistics and debugging ----------------------------------------- */

void dsm__chan_stats(struct dsm__chan *c, struct dsm__chan_stats *o)
{
#define LD(f) o->f = atomic_load_explicit(&c->st.f, memory_order_relaxed)
	memset(o, 0, sizeof(*o));
	LD(msgs_sent); LD(msgs_delivered); LD(bytes_sent); LD(bytes_delivered);
	LD(tx_data); LD(tx_ack); LD(tx_hello); LD(tx_reject);
	LD(retx_rto); LD(retx_fast); LD(retx_tlp);
	LD(rx_data); LD(rx_dup); LD(rx_ooo); LD(rx_corrupt); LD(rx_malformed);
	LD(rx_foreign); LD(rx_stale); LD(rx_window); LD(peers_dead);
	LD(reasm_bytes); LD(reasm_peak);
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

/* The receive-side fields (dlv_nxt, in_msg, skip_msg) are read without
 * rx_lock: a snapshot for a hang report, possibly torn. */
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
