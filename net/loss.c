/*
 * Loss recovery and congestion control of the reliable channel, after
 * RFC 9002 / RACK-TLP (RFC 8985): what the acks say, what is lost, when to
 * resend, how much may be in flight.
 *
 * Owns, per peer: the RTT estimator (p->rtt, RFC 6298 with Karn's rule),
 * the timers rto_at (retransmission timeout), tlp_at (tail-loss probe) and
 * reo_at (RACK reordering window), the RACK state (rack_sent, rack_seq,
 * rack_rtt), the congestion window (cwnd, ssthresh, cwnd_acc, in_recovery,
 * recover, heard_since_rto) and what the peer accepts (peer_ack,
 * peer_wnd). It moves snd_una forward and marks ring slots acked or
 * selectively acked; transmitting is the send path's (chan.c).
 *
 *   ack      cumulative ack + 63-bit selective ack in every datagram; each
 *            ack of a datagram sent once yields an RTT sample.
 *   RACK     a datagram sent before the newest one known delivered is lost
 *            once it has been out rack_rtt + a reordering window.
 *   TLP      the newest unacked datagram is resent with PROBE (asking for
 *            an immediate ack) about 2 RTT after the last send, so a lost
 *            tail is found without waiting for the RTO.
 *   RTO      the oldest unacked datagram is resent; the timer backs off
 *            only while the peer is silent.
 *   cwnd     slow start then additive increase, capped at WIN; a gentle
 *            x0.85 on a burst of losses or a timeout while the peer
 *            talks, a collapse to CWND_MIN on a timeout with a silent
 *            peer.
 * Retransmissions are not counted against a limit here; the bound is the
 * failure detector's (fd.c): a peer silent for peer_timeout_ms is declared
 * dead and everything queued for it is dropped.
 *
 * Threads and locks: every function runs with the peer lock held:
 * dsm__loss_on_ack on the receiving thread (rx_lock), dsm__loss_timers on
 * the timer thread, dsm__loss_arm on whichever thread sent.
 */
#include "chan-impl.h"

#include "seq.h"

#define CWND_INIT 32u
#define CWND_MIN 8u         /* after a timeout with a silent peer */
#define CWND_LOSS_MIN 32u   /* floor after random loss while the peer talks */

static int64_t tlp_delay_ns(struct dsm__chan *c, struct peer *p)
{
	int64_t d = p->rtt.have_sample ? 2 * p->rtt.srtt_us * 1000 : 2000000;

	d += c->ack_delay_ns;
	return d < 1000000 ? 1000000 : d;
}

void dsm__loss_reset(struct dsm__chan *c, struct peer *p)
{
	p->cwnd = CWND_INIT;
	p->ssthresh = WIN;
	p->cwnd_acc = 0;
	p->in_recovery = false;
	p->recover = c->cfg.isn;
	dsm__rtt_init(&p->rtt, c->cfg.rto_init_us, c->cfg.rto_min_us, c->cfg.rto_max_us);
	p->rto_at = p->tlp_at = p->reo_at = 0;
	p->rack_sent = p->rack_rtt = 0;
	p->rack_seq = c->cfg.isn;
}

void dsm__loss_arm(struct dsm__chan *c, struct peer *p, int64_t now)
{
	if (!p->rto_at)
		p->rto_at = now + dsm__rtt_timeout(&p->rtt) * 1000;
	p->tlp_at = now + tlp_delay_ns(c, p);
}

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
		dsm__chan_transmit(c, p, s, 0, now);
		STAT(c, retx_fast);
	}
	/* a lost retransmission is found by the next probe, not the RTO */
	if (have_prev && !p->tlp_at)
		p->tlp_at = now + tlp_delay_ns(c, p);
}

void dsm__loss_on_ack(struct dsm__chan *c, struct peer *p, const struct dsm__wire_hdr *h,
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
	dsm__frag_refill(c, p);
	dsm__chan_output(c, p, now);
}

int64_t dsm__loss_timers(struct dsm__chan *c, struct peer *p, int64_t now)
{
	if (p->rto_at && now >= p->rto_at) {
		/* Timeout: resend the oldest unacked datagram, back off. */
		uint32_t s = p->snd_una;

		while (s != p->snd_nxt && p->tx[s & WMASK].state == S_SACKED)
			s++;
		if (s != p->snd_nxt) {
			struct txslot *x = &p->tx[s & WMASK];

			if (x->retx < 255)
				x->retx++;
			dsm__chan_transmit(c, p, s, 0, now);
			STAT(c, retx_rto);
		}
		/* Back off only while the peer is silent: if its datagrams
		 * still arrive the path works and the loss was random, so
		 * doubling would only add delay. */
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
		 * unacknowledged, asking for an immediate ack; its sack shows
		 * any holes. (When the window is stuck on a lost
		 * retransmission, that is the retransmission.) */
		uint32_t s = p->snd_nxt;

		do
			s--;
		while (s != p->snd_una && p->tx[s & WMASK].state != S_INFLIGHT);
		if (p->tx[s & WMASK].state == S_INFLIGHT) {
			struct txslot *x = &p->tx[s & WMASK];

			if (x->retx < 255)
				x->retx++;
			dsm__chan_transmit(c, p, s, DSM_WIRE_F_PROBE, now);
			STAT(c, retx_tlp);
		}
		p->tlp_at = 0;
	}
	if (p->reo_at && now >= p->reo_at)
		rack_detect(c, p, now);
	return earliest(earliest(p->rto_at, p->tlp_at), p->reo_at);
}
