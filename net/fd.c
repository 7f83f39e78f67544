/*
 * The failure detector of the reliable channel: who is a member, who is
 * alive, and telling the layer above when that changes.
 *
 * Owns, per peer: its incarnation (p->inc; ours is c->inc), the state
 * CONNECTING -> ALIVE -> DEAD, the time of the last datagram from it
 * (last_rx_ns), the hello and REJECT pacing (hello_at, reject_at); for the
 * channel: the goodbye (c->leaving) and the stall check (c->last_timers).
 *
 *   incarnation  a node's start time in ms (dsm__fd_derive_incarnation),
 *                in every datagram; a newer one from a peer is a restarted
 *                node, i.e. a new member (UP again after DEAD); an older
 *                one is stale and dropped.
 *   HELLO        probes while connecting (every HELLO_CONNECT_NS) and
 *                after a stall, answered at once; heartbeats on an idle
 *                link (every timeout / 10).
 *   silence      a live peer from which nothing, not even a heartbeat,
 *                arrived for peer_timeout_ms is DEAD.
 *   REJECT       our answer to a peer we declared dead (at most one per
 *                REJECT_GAP_NS); receiving it means we were declared dead
 *                (EXCLUDED).
 *   BYE          a HELLO flag sent three times by dsm__chan_destroy; the
 *                peer has LEFT, without waiting for the timeout.
 * Every change of state is queued on a struct evq under the peer lock and
 * fired (cbs.peer_event) after it is dropped, on the thread that saw it.
 *
 * Threads and locks: dsm__fd_admit and dsm__fd_on_hello run on the
 * receiving thread (rx_lock) with the peer lock held; the timer functions
 * on the timer thread (the network thread, or the test's poller) with the
 * peer lock held; dsm__chan_connect, dsm__fd_goodbye and
 * dsm__chan_peer_alive on any thread, each taking one peer lock at a time.
 */
#include "chan-impl.h"

#include <stdio.h>
#include <time.h>

#include "seq.h"

#define HELLO_CONNECT_NS 20000000LL /* hello period while the peer is unknown */
#define REJECT_GAP_NS 100000000LL   /* at most one REJECT per peer per 100 ms */

uint32_t dsm__fd_derive_incarnation(void)
{
	struct timespec ts;
	uint32_t v;

	clock_gettime(CLOCK_REALTIME, &ts);
	/* milliseconds, so a restarted node compares newer (wrap-safe) */
	v = (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	return v ? v : 1;
}

/* ---- peer events ------------------------------------------------------ */

void dsm__fd_evq_add(struct evq *q, unsigned peer, int ev)
{
	if (q->n < (int)DSM__ARRAY_SIZE(q->e)) {
		q->e[q->n].peer = peer;
		q->e[q->n].ev = ev;
		q->n++;
	}
}

void dsm__fd_evq_fire(struct dsm__chan *c, struct evq *q)
{
	for (int i = 0; i < q->n; i++)
		if (c->cbs.peer_event)
			c->cbs.peer_event(c->cbs.arg, q->e[i].peer, q->e[i].ev);
	q->n = 0;
}

void dsm__fd_declare_dead(struct dsm__chan *c, struct peer *p, int ev, struct evq *q)
{
	if (p->state == P_DEAD)
		return;
	p->state = P_DEAD;
	dsm__chan_tx_abort(p);
	if (ev == DSM__PEER_LEFT) {
		DSM__INFO("peer %u (incarnation %u) left", p->rank, p->inc);
	} else {
		STAT(c, peers_dead);
		DSM__WARN("peer %u (incarnation %u) %s", p->rank, p->inc,
			  ev == DSM__PEER_EXCLUDED ? "says we were declared dead"
						   : "declared dead: silent past DSM_PEER_TIMEOUT_MS");
	}
	dsm__fd_evq_add(q, p->rank, ev);
}

/* ---- receiving -------------------------------------------------------- */

bool dsm__fd_admit(struct dsm__chan *c, struct peer *p, const struct dsm__wire_hdr *h,
		   int64_t now, struct evq *q)
{
	if (h->dst_inc != 0 && h->dst_inc != c->inc) {
		STAT(c, rx_stale); /* meant for an earlier incarnation of us */
		return false;
	}
	if (p->inc != h->src_inc) {
		if (p->inc && dsm__seq_lt(h->src_inc, p->inc)) {
			STAT(c, rx_stale);
			return false;
		}
		/* First contact, or the peer restarted: a new member. */
		if (p->inc && p->state == P_ALIVE)
			dsm__fd_declare_dead(c, p, DSM__PEER_DEAD, q);
		if (p->inc)
			DSM__INFO("peer %u restarted (incarnation %u -> %u)", p->rank, p->inc,
				  h->src_inc);
		dsm__chan_peer_reset(c, p, h->src_inc);
		p->state = P_ALIVE;
		p->last_rx_ns = now;
		dsm__fd_evq_add(q, p->rank, DSM__PEER_UP);
		dsm__frag_refill(c, p);
		dsm__chan_output(c, p, now);
	}
	if (p->state == P_DEAD) {
		STAT(c, rx_stale);
		if (h->type != DSM_WIRE_REJECT && now >= p->reject_at) {
			dsm__chan_send_ctrl(c, p, DSM_WIRE_REJECT, 0, now);
			p->reject_at = now + REJECT_GAP_NS;
		}
		return false;
	}
	p->last_rx_ns = now;
	p->heard_since_rto = true;
	if (h->type == DSM_WIRE_REJECT) {
		if (h->dst_inc == c->inc && !atomic_load(&c->leaving))
			dsm__fd_declare_dead(c, p, DSM__PEER_EXCLUDED, q);
		return false;
	}
	return true;
}

void dsm__fd_on_hello(struct dsm__chan *c, struct peer *p, const struct dsm__wire_hdr *h,
		      int64_t now, struct evq *q)
{
	if (h->flags & DSM_WIRE_F_BYE)
		dsm__fd_declare_dead(c, p, DSM__PEER_LEFT, q);
	else if (h->flags & DSM_WIRE_F_PROBE)
		dsm__chan_send_ctrl(c, p, DSM_WIRE_HELLO, 0, now);
}

/* ---- timers ----------------------------------------------------------- */

bool dsm__fd_stalled(struct dsm__chan *c, int64_t now)
{
	bool stalled = c->last_timers && now - c->last_timers > c->timeout_ns / 2;

	/* If we ourselves did not run for a long time (SIGSTOP, a starved
	 * VM), the silence of others says nothing about them: give every
	 * peer a fresh grace period and probe it. A peer that declared us
	 * dead meanwhile answers REJECT, and we learn we were excluded. */
	if (stalled)
		DSM__WARN("network thread stalled for %lld ms; probing peers",
			  (long long)((now - c->last_timers) / 1000000));
	c->last_timers = now;
	return stalled;
}

int64_t dsm__fd_hello_timer(struct dsm__chan *c, struct peer *p, int64_t now)
{
	if (now >= p->hello_at) {
		dsm__chan_send_ctrl(c, p, DSM_WIRE_HELLO, DSM_WIRE_F_PROBE, now);
		p->hello_at = now + HELLO_CONNECT_NS;
	}
	return p->hello_at;
}

bool dsm__fd_watch(struct dsm__chan *c, struct peer *p, int64_t now, bool stalled,
		   struct evq *q)
{
	if (stalled) {
		p->last_rx_ns = now;
		dsm__chan_send_ctrl(c, p, DSM_WIRE_HELLO, DSM_WIRE_F_PROBE, now);
	}
	if (now - p->last_rx_ns > c->timeout_ns) {
		dsm__fd_declare_dead(c, p, DSM__PEER_DEAD, q);
		return false;
	}
	return true;
}

int64_t dsm__fd_heartbeat(struct dsm__chan *c, struct peer *p, int64_t now)
{
	int64_t hb, silent;

	if (now - p->last_tx_ns >= c->hb_ns)
		dsm__chan_send_ctrl(c, p, DSM_WIRE_HELLO, 0, now);
	hb = p->last_tx_ns + c->hb_ns;
	silent = p->last_rx_ns + c->timeout_ns + 1;
	return hb < silent ? hb : silent;
}

/* ---- membership from other threads ------------------------------------ */

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Waits for the network thread to hear from every peer; takes each peer
 * lock in turn to read its state. */
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

void dsm__fd_goodbye(struct dsm__chan *c)
{
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
				dsm__chan_send_ctrl(c, p, DSM_WIRE_HELLO, DSM_WIRE_F_BYE, chan_now(c));
			pthread_mutex_unlock(&p->lock);
		}
	}
}

/* Takes the peer's lock. */
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
