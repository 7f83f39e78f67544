/*
 * Unit tests of the reliable channel, the sequence compare and the RTO
 * estimator. Channels run without their network thread over an in-memory
 * network with virtual time, so loss, duplication, reordering and silence
 * are exact and repeatable.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "common.h"
#include "rtt.h"
#include "seq.h"
#include "wire.h"
#include "testutil.h"

/* ---- an in-memory network --------------------------------------------- */

#define MTU 1472
#define MAXN 4
#define MAXQ 20000

struct pkt {
	unsigned src, dst;
	int64_t at;
	size_t len;
	uint8_t data[MTU];
};

struct fakenet {
	int64_t now;
	uint64_t rng;
	double drop, dup, reorder;
	int64_t lat_ns;
	bool cut[MAXN][MAXN];     /* drop everything on src->dst */
	unsigned n;
	struct pkt *q[MAXQ];
	unsigned nq;
	uint64_t sent, dropped;
	/* capture: when set, datagrams sent by rank cap_src are copied here */
	int cap_src;
	struct pkt *cap;
	unsigned ncap, capmax;
};

struct fx {
	struct dsm__xport x;
	struct fakenet *net;
};

static double rnd(struct fakenet *n)
{
	n->rng ^= n->rng << 13;
	n->rng ^= n->rng >> 7;
	n->rng ^= n->rng << 17;
	return (double)(n->rng >> 11) / (double)(1ull << 53);
}

static void enqueue(struct fakenet *n, unsigned src, unsigned dst, const uint8_t *b, size_t len,
		    int64_t at)
{
	struct pkt *p;

	if (n->nq == MAXQ)
		return; /* a full queue drops, like a real one */
	p = malloc(sizeof(*p));
	p->src = src;
	p->dst = dst;
	p->at = at;
	p->len = len;
	memcpy(p->data, b, len);
	n->q[n->nq++] = p;
}

static int fx_send(struct dsm__xport *x, unsigned dst, const uint8_t *b, size_t len)
{
	struct fx *f = (struct fx *)x;
	struct fakenet *n = f->net;
	int64_t at = n->now + n->lat_ns;

	ck_assert_uint_le(len, MTU);
	n->sent++;
	if (getenv("CHAN_TRACE")) {
		struct dsm__wire_hdr h;
		if (!dsm__wire_decode(b, len, MTU, &h))
			fprintf(stderr, "t=%lld %u->%u type %u seq %u ack %u sack %#llx flags %u\n",
				(long long)n->now, x->rank, dst, h.type, h.seq, h.ack,
				(unsigned long long)h.sack, h.flags);
	}
	if (n->cap && (int)x->rank == n->cap_src && n->ncap < n->capmax) {
		struct pkt *c = &n->cap[n->ncap++];

		c->src = x->rank;
		c->dst = dst;
		c->len = len;
		memcpy(c->data, b, len);
	}
	if (n->cut[x->rank][dst] || rnd(n) < n->drop) {
		n->dropped++;
		return 0;
	}
	if (rnd(n) < n->reorder)
		at += (int64_t)(rnd(n) * 3 * (double)n->lat_ns);
	enqueue(n, x->rank, dst, b, len, at);
	if (rnd(n) < n->dup)
		enqueue(n, x->rank, dst, b, len, at + n->lat_ns / 2);
	return 0;
}

static int fx_progress(struct dsm__xport *x, dsm__xport_rx_fn cb, void *arg, int max)
{
	struct fx *f = (struct fx *)x;
	struct fakenet *n = f->net;
	int done = 0;

	for (unsigned i = 0; i < n->nq && done < max;) {
		struct pkt *p = n->q[i];

		if (p->dst == x->rank && p->at <= n->now) {
			/* stable removal: the network keeps order unless told */
			memmove(&n->q[i], &n->q[i + 1], (n->nq - i - 1) * sizeof(n->q[0]));
			n->nq--;
			cb(arg, p->data, p->len);
			free(p);
			done++;
		} else {
			i++;
		}
	}
	return done;
}

static int fx_wait_prepare(struct dsm__xport *x, int *fd)
{
	(void)x;
	*fd = -1;
	return 0;
}

static int64_t fx_next_deadline(struct dsm__xport *x)
{
	(void)x;
	return INT64_MAX;
}

static void fx_destroy(struct dsm__xport *x)
{
	free(x);
}

static const struct dsm__xport_ops fx_ops = {
	.name = "fake",
	.send = fx_send,
	.progress = fx_progress,
	.wait_prepare = fx_wait_prepare,
	.next_deadline = fx_next_deadline,
	.destroy = fx_destroy,
};

/* What each node received, in order. */
struct rec {
	unsigned n;
	struct { unsigned from; size_t len; uint8_t *data; } m[4096];
	int events[MAXN][8];
};

static void rec_deliver(void *arg, unsigned peer, const uint8_t *msg, size_t len)
{
	struct rec *r = arg;

	ck_assert_uint_lt(r->n, 4096);
	r->m[r->n].from = peer;
	r->m[r->n].len = len;
	r->m[r->n].data = malloc(len ? len : 1);
	memcpy(r->m[r->n].data, msg, len);
	r->n++;
}

static void rec_event(void *arg, unsigned peer, int ev)
{
	struct rec *r = arg;

	r->events[peer][ev]++;
}

struct world {
	struct fakenet net;
	unsigned n;
	struct dsm__chan *c[MAXN];
	struct fx *x[MAXN];
	struct rec *r[MAXN];
	bool paused[MAXN];     /* not polled: like a SIGSTOPped process */
};

static struct world *world_new(unsigned n, uint32_t isn, uint64_t seed)
{
	struct world *w = calloc(1, sizeof(*w));
	struct dsm__chan_cfg cfg;

	w->n = n;
	w->net.n = n;
	w->net.rng = seed | 1;
	w->net.lat_ns = 20000; /* 20 us one way */
	w->net.cap_src = -1;
	w->net.now = 1000000000;
	dsm__chan_cfg_default(&cfg);
	cfg.isn = isn;
	cfg.cluster = 77;
	for (unsigned i = 0; i < n; i++) {
		struct dsm__chan_cbs cbs;

		w->x[i] = calloc(1, sizeof(struct fx));
		w->x[i]->x.ops = &fx_ops;
		w->x[i]->x.mtu = MTU;
		w->x[i]->x.nodes = n;
		w->x[i]->x.rank = i;
		w->x[i]->net = &w->net;
		w->r[i] = calloc(1, sizeof(struct rec));
		cbs.deliver = rec_deliver;
		cbs.peer_event = rec_event;
		cbs.arg = w->r[i];
		cfg.incarnation = 1000 + i;
		ck_assert_int_eq(dsm__chan_create(&w->x[i]->x, &cfg, &cbs, &w->c[i]), 0);
	}
	return w;
}

static void world_step(struct world *w, int64_t dt)
{
	w->net.now += dt;
	for (unsigned i = 0; i < w->n; i++)
		if (w->c[i] && !w->paused[i])
			dsm__chan_poll(w->c[i], w->net.now);
}

/* Run until everyone knows everyone (bounded). */
static void world_connect(struct world *w)
{
	for (int i = 0; i < 20000; i++) {
		bool all = true;

		world_step(w, 10000);
		for (unsigned a = 0; a < w->n; a++)
			for (unsigned b = 0; b < w->n; b++)
				if (a != b && !w->r[a]->events[b][DSM__PEER_UP])
					all = false;
		if (all)
			return;
	}
	ck_abort_msg("nodes never connected");
}

static void world_free(struct world *w)
{
	for (unsigned i = 0; i < w->n; i++) {
		dsm__chan_destroy(w->c[i]);
		free(w->x[i]);
		for (unsigned j = 0; j < w->r[i]->n; j++)
			free(w->r[i]->m[j].data);
		free(w->r[i]);
	}
	for (unsigned i = 0; i < w->net.nq; i++)
		free(w->net.q[i]);
	free(w->net.cap);
	free(w);
}

static void fill(uint8_t *b, size_t len, unsigned tag)
{
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(tag * 131 + i * 7 + (i >> 8));
}

static int send_buf(struct world *w, unsigned from, unsigned to, const uint8_t *b, size_t len)
{
	struct iovec v = { (void *)b, len };

	return dsm__chan_send(w->c[from], to, &v, 1);
}

/* ---- sequence numbers and the estimator ------------------------------- */

START_TEST(chan_seq_wrap)
{
	ck_assert(dsm__seq_lt(0xfffffff0u, 0x10u));
	ck_assert(dsm__seq_gt(0x10u, 0xfffffff0u));
	ck_assert(dsm__seq_lt(0xffffffffu, 0u));
	ck_assert(dsm__seq_le(5u, 5u));
	ck_assert(!dsm__seq_lt(5u, 5u));
	ck_assert(dsm__seq_ge(0u, 0xffffffffu));
	ck_assert(dsm__seq_lt(0x7ffffffeu, 0x7fffffffu));
	ck_assert(dsm__seq_lt(0x80000000u, 0x80000001u));
	/* just under half the space apart still compares right */
	ck_assert(dsm__seq_lt(0xc0000000u, 0xc0000000u + 0x7fffffffu));
	for (uint32_t base = 0xffffff00u; base != 0x100u; base++)
		ck_assert(dsm__seq_lt(base, base + 1) && dsm__seq_gt(base + 1, base));
}
END_TEST

START_TEST(chan_rto_estimator)
{
	struct dsm__rtt r;

	dsm__rtt_init(&r, 20000, 5000, 250000);
	ck_assert_int_eq(dsm__rtt_timeout(&r), 20000);
	/* first sample: srtt = R, rttvar = R/2, rto = R + 4 * R/2 = 3R */
	dsm__rtt_sample(&r, 2000);
	ck_assert_int_eq(r.srtt_us, 2000);
	ck_assert_int_eq(r.rttvar_us, 1000);
	ck_assert_int_eq(r.rto_us, 6000);
	/* second: rttvar = (3*1000 + |2000-4000|)/4 = 1250; srtt = (7*2000+4000)/8 = 2250 */
	dsm__rtt_sample(&r, 4000);
	ck_assert_int_eq(r.rttvar_us, 1250);
	ck_assert_int_eq(r.srtt_us, 2250);
	ck_assert_int_eq(r.rto_us, 7250);
	/* many small samples converge to the floor */
	for (int i = 0; i < 200; i++)
		dsm__rtt_sample(&r, 30);
	ck_assert_int_eq(r.srtt_us, 30 + (r.srtt_us - 30)); /* stays an integer */
	ck_assert_int_le(r.srtt_us, 40);
	ck_assert_int_eq(dsm__rtt_timeout(&r), 5000);
	/* back-off doubles, bounded by max */
	dsm__rtt_backoff(&r);
	ck_assert_int_eq(dsm__rtt_timeout(&r), 10000);
	for (int i = 0; i < 40; i++)
		dsm__rtt_backoff(&r);
	ck_assert_int_eq(dsm__rtt_timeout(&r), 250000);
	/* a sample resets the back-off */
	dsm__rtt_sample(&r, 30);
	ck_assert_int_eq(dsm__rtt_timeout(&r), 5000);
}
END_TEST

/* ---- channel behaviour ------------------------------------------------ */

/* Check node `to` got exactly msgs [0, count) from `from`, in order. */
static void check_stream(struct world *w, unsigned from, unsigned to, unsigned count,
			 const size_t *lens)
{
	unsigned k = 0;
	uint8_t *want = malloc(1 << 22);

	for (unsigned i = 0; i < w->r[to]->n; i++) {
		if (w->r[to]->m[i].from != from)
			continue;
		ck_assert_uint_lt(k, count);
		ck_assert_uint_eq(w->r[to]->m[i].len, lens[k]);
		fill(want, lens[k], k);
		ck_assert_msg(!memcmp(w->r[to]->m[i].data, want, lens[k]),
			      "message %u from %u differs", k, from);
		k++;
	}
	ck_assert_uint_eq(k, count);
	free(want);
}

static void run_until_delivered(struct world *w, unsigned to, unsigned count, int64_t limit_ns)
{
	int64_t end = w->net.now + limit_ns;

	while (w->r[to]->n < count && w->net.now < end)
		world_step(w, 10000);
	if (w->r[to]->n < count)
		for (unsigned i = 0; i < w->n; i++)
			dsm__chan_dump(w->c[i], stderr);
	ck_assert_msg(w->r[to]->n >= count, "only %u of %u delivered", w->r[to]->n, count);
	/* and let late duplicates arrive: nothing more may be delivered */
	for (int i = 0; i < 2000; i++)
		world_step(w, 10000);
	ck_assert_uint_eq(w->r[to]->n, count);
}

static void stream_test(uint32_t isn, double drop, double dup, double reorder, uint64_t seed)
{
	static const size_t sizes[] = { 0, 1, 100, 1423, 1424, 1425, 2844, 2848, 5000, 70000,
					1 << 20, 3 };
	enum { COUNT = 400 };
	struct world *w = world_new(2, isn, seed);
	size_t lens[COUNT];
	uint8_t *buf = malloc(1 << 21);
	struct dsm__chan_stats st;

	world_connect(w);
	w->net.drop = drop;
	w->net.dup = dup;
	w->net.reorder = reorder;
	for (unsigned i = 0; i < COUNT; i++) {
		lens[i] = sizes[i % DSM__ARRAY_SIZE(sizes)];
		if (lens[i] == 1 << 20 && i > 100)
			lens[i] = 777;
		fill(buf, lens[i], i);
		ck_assert_int_eq(send_buf(w, 0, 1, buf, lens[i]), 0);
		if (i % 16 == 0)
			world_step(w, 10000);
	}
	run_until_delivered(w, 1, COUNT, 600LL * 1000000000);
	check_stream(w, 0, 1, COUNT, lens);
	dsm__chan_stats(w->c[1], &st);
	if (dup > 0)
		ck_assert_uint_gt(st.rx_dup, 0);
	if (reorder > 0 || drop > 0)
		ck_assert_uint_gt(st.rx_ooo, 0);
	dsm__chan_stats(w->c[0], &st);
	if (getenv("CHAN_DEBUG"))
		fprintf(stderr, "tx_data %lu ack %lu hello %lu rto %lu fast %lu tlp %lu rx_data %lu dup %lu ooo %lu win %lu\n",
			(unsigned long)st.tx_data, (unsigned long)st.tx_ack, (unsigned long)st.tx_hello,
			(unsigned long)st.retx_rto, (unsigned long)st.retx_fast, (unsigned long)st.retx_tlp,
			(unsigned long)st.rx_data, (unsigned long)st.rx_dup, (unsigned long)st.rx_ooo,
			(unsigned long)st.rx_window);
	if (drop > 0)
		ck_assert_uint_gt(st.retx_rto + st.retx_fast + st.retx_tlp, 0);
	else if (reorder == 0 && dup == 0)
		ck_assert_uint_eq(st.retx_rto + st.retx_fast, 0);
	ck_assert_uint_eq(st.peers_dead, 0);
	free(buf);
	world_free(w);
}

START_TEST(chan_clean_stream)
{
	stream_test(0, 0, 0, 0, 1);
}
END_TEST

START_TEST(chan_stream_across_wrap)
{
	/* sequence numbers cross 2^32 during the stream */
	stream_test(0xffffff00u, 0, 0, 0, 2);
	stream_test(0xfffffff0u, 0.1, 0.05, 0.1, 3);
}
END_TEST

START_TEST(chan_lossy_stream)
{
	stream_test(0, 0.2, 0.1, 0.2, 4);
	stream_test(12345, 0.3, 0, 0, 5);
	stream_test(0, 0, 0.3, 0, 6);
	stream_test(0, 0, 0, 0.5, 7);
}
END_TEST

START_TEST(chan_sack_bookkeeping)
{
	/* Lose exactly datagram 2 of a 6-datagram burst: the receiver's
	 * acks must say "ack 2, have 3,4,5" and the sender must fast
	 * retransmit 2 without waiting for the RTO. */
	struct world *w = world_new(2, 100, 9);
	uint8_t b[8];
	struct dsm__chan_stats st;
	bool seen = false;

	world_connect(w);
	w->net.cap = calloc(4096, sizeof(struct pkt));
	w->net.capmax = 4096;
	w->net.cap_src = 1;
	/* let seq 102 be dropped: cut the link exactly for the third send */
	for (unsigned i = 0; i < 6; i++) {
		fill(b, sizeof(b), i);
		w->net.cut[0][1] = (i == 2);
		ck_assert_int_eq(send_buf(w, 0, 1, b, sizeof(b)), 0);
	}
	w->net.cut[0][1] = false;
	/* 200 us: several round trips, well before the 1 ms probe and the RTO */
	for (int i = 0; i < 20; i++)
		world_step(w, 10000);
	for (unsigned i = 0; i < w->net.ncap; i++) {
		struct dsm__wire_hdr h;

		ck_assert_int_eq(dsm__wire_decode(w->net.cap[i].data, w->net.cap[i].len, MTU, &h), 0);
		if (getenv("CHAN_DEBUG"))
			fprintf(stderr, "cap type %u ack %u sack %#llx wnd %u\n", h.type, h.ack,
				(unsigned long long)h.sack, h.wnd);
		if (h.type == DSM_WIRE_ACK && h.ack == 102 && h.sack == 0x7) {
			seen = true;
			ck_assert_uint_eq(h.wnd, 64);
		}
	}
	ck_assert_msg(seen, "no ack 102 with sack {103,104,105}");
	dsm__chan_stats(w->c[0], &st);
	ck_assert_uint_ge(st.retx_fast, 1);
	ck_assert_uint_eq(st.retx_rto, 0); /* recovered well before 5 ms */
	run_until_delivered(w, 1, 6, 1000000000);
	world_free(w);
}
END_TEST

START_TEST(chan_tail_loss_probe)
{
	/* The last datagram of a burst is lost: no later ack can reveal it,
	 * so the tail-loss probe must recover it before the RTO. */
	struct world *w = world_new(2, 0, 10);
	uint8_t b[8] = { 0 };
	struct dsm__chan_stats st;

	world_connect(w);
	for (unsigned i = 0; i < 4; i++) {
		fill(b, sizeof(b), i);
		w->net.cut[0][1] = (i == 3);
		ck_assert_int_eq(send_buf(w, 0, 1, b, sizeof(b)), 0);
	}
	w->net.cut[0][1] = false;
	run_until_delivered(w, 1, 4, 1000000000);
	dsm__chan_stats(w->c[0], &st);
	ck_assert_uint_ge(st.retx_tlp, 1);
	ck_assert_uint_eq(st.retx_rto, 0);
	world_free(w);
}
END_TEST

START_TEST(chan_message_too_big)
{
	struct world *w = world_new(2, 0, 11);
	struct iovec v = { NULL, (64u << 20) + 1 };

	ck_assert_int_eq(dsm__chan_send(w->c[0], 1, &v, 1), DSM_EMSGSIZE);
	ck_assert_int_eq(dsm__chan_send(w->c[0], 0, &v, 0), DSM_EINVAL); /* to self */
	ck_assert_int_eq(dsm__chan_send(w->c[0], 7, &v, 0), DSM_EINVAL);
	world_free(w);
}
END_TEST

START_TEST(chan_dead_peer)
{
	struct world *w = world_new(3, 0, 12);
	uint8_t b[16] = { 0 };
	int64_t t0;

	world_connect(w);
	/* node 2 goes silent: cut everything from it */
	w->net.cut[2][0] = w->net.cut[2][1] = true;
	ck_assert_int_eq(send_buf(w, 0, 2, b, sizeof(b)), 0); /* in flight when it dies */
	t0 = w->net.now;
	while (!w->r[0]->events[2][DSM__PEER_DEAD] && w->net.now - t0 < 3000000000LL)
		world_step(w, 1000000);
	ck_assert_int_eq(w->r[0]->events[2][DSM__PEER_DEAD], 1);
	/* declared within (timeout, 2 * timeout] */
	ck_assert_int_ge(w->net.now - t0, 1000000000LL);
	ck_assert_int_le(w->net.now - t0, 2000000000LL);
	ck_assert(!dsm__chan_peer_alive(w->c[0], 2));
	ck_assert_int_eq(send_buf(w, 0, 2, b, sizeof(b)), DSM_EPEERDEAD);
	/* the survivors keep talking */
	ck_assert_int_eq(send_buf(w, 0, 1, b, sizeof(b)), 0);
	run_until_delivered(w, 1, 1, 1000000000);
	ck_assert_int_eq(w->r[1]->events[2][DSM__PEER_DEAD], 1);
	ck_assert_int_eq(w->r[0]->events[1][DSM__PEER_DEAD], 0);
	world_free(w);
}
END_TEST

START_TEST(chan_excluded_node_learns)
{
	/* Node 1 is paused (not polled) long enough to be declared dead by
	 * node 0. When it resumes it must not declare node 0 dead for its own
	 * silence; it probes, node 0 drops its datagrams as stale and answers
	 * REJECT, so node 1 learns it was excluded, and nothing node 1 sends
	 * reaches node 0's application. */
	struct world *w = world_new(2, 0, 13);
	uint8_t b[16] = { 0 };
	struct dsm__chan_stats st;

	world_connect(w);
	w->paused[1] = true;
	for (int i = 0; i < 1500 && !w->r[0]->events[1][DSM__PEER_DEAD]; i++)
		world_step(w, 1000000);
	ck_assert_int_eq(w->r[0]->events[1][DSM__PEER_DEAD], 1);
	for (int i = 0; i < 500; i++)
		world_step(w, 1000000);
	w->paused[1] = false;
	ck_assert_int_eq(send_buf(w, 1, 0, b, sizeof(b)), 0); /* it does not know yet */
	for (int i = 0; i < 300; i++)
		world_step(w, 1000000);
	ck_assert_uint_eq(w->r[0]->n, 0);
	dsm__chan_stats(w->c[0], &st);
	ck_assert_uint_gt(st.rx_stale, 0);
	ck_assert_uint_gt(st.tx_reject, 0);
	ck_assert_int_eq(w->r[1]->events[0][DSM__PEER_EXCLUDED], 1);
	ck_assert_int_eq(w->r[1]->events[0][DSM__PEER_DEAD], 0);
	ck_assert(!dsm__chan_peer_alive(w->c[1], 0));
	ck_assert_int_eq(send_buf(w, 1, 0, b, sizeof(b)), DSM_EPEERDEAD);
	world_free(w);
}
END_TEST

START_TEST(chan_restart_is_new_member)
{
	struct world *w = world_new(2, 0, 14);
	struct dsm__chan_cfg cfg;
	struct dsm__chan_cbs cbs = { rec_deliver, rec_event, NULL };
	uint8_t b[16];

	world_connect(w);
	fill(b, sizeof(b), 0);
	ck_assert_int_eq(send_buf(w, 1, 0, b, sizeof(b)), 0);
	run_until_delivered(w, 0, 1, 1000000000);
	/* node 1 restarts with a newer incarnation */
	dsm__chan_destroy(w->c[1]);
	for (unsigned j = 0; j < w->r[1]->n; j++)
		free(w->r[1]->m[j].data);
	memset(w->r[1], 0, sizeof(*w->r[1]));
	dsm__chan_cfg_default(&cfg);
	cfg.cluster = 77;
	cfg.incarnation = 5000;
	cbs.arg = w->r[1];
	ck_assert_int_eq(dsm__chan_create(&w->x[1]->x, &cfg, &cbs, &w->c[1]), 0);
	for (int i = 0; i < 200 && !w->r[1]->events[0][DSM__PEER_UP]; i++)
		world_step(w, 1000000);
	ck_assert_int_eq(w->r[1]->events[0][DSM__PEER_UP], 1);
	ck_assert_int_eq(w->r[0]->events[1][DSM__PEER_UP], 2);
	/* the old incarnation said goodbye when it was destroyed */
	ck_assert_int_eq(w->r[0]->events[1][DSM__PEER_LEFT], 1);
	ck_assert_int_eq(w->r[0]->events[1][DSM__PEER_DEAD], 0);
	fill(b, sizeof(b), 0);
	ck_assert_int_eq(send_buf(w, 1, 0, b, sizeof(b)), 0);
	run_until_delivered(w, 0, 2, 1000000000);
	world_free(w);
}
END_TEST

START_TEST(chan_clean_leave)
{
	/* A destroyed channel says goodbye: its peers see LEFT at once, not a
	 * death after the timeout, and sends to it fail. */
	struct world *w = world_new(3, 0, 17);
	uint8_t b[4] = { 0 };

	world_connect(w);
	dsm__chan_destroy(w->c[2]);
	w->c[2] = NULL;
	for (int i = 0; i < 10; i++)
		world_step(w, 10000);
	ck_assert_int_eq(w->r[0]->events[2][DSM__PEER_LEFT], 1);
	ck_assert_int_eq(w->r[1]->events[2][DSM__PEER_LEFT], 1);
	ck_assert_int_eq(w->r[0]->events[2][DSM__PEER_DEAD], 0);
	ck_assert_int_eq(send_buf(w, 0, 2, b, sizeof(b)), DSM_EPEERDEAD);
	ck_assert_int_eq(send_buf(w, 0, 1, b, sizeof(b)), 0);
	run_until_delivered(w, 1, 1, 1000000000);
	world_free(w);
}
END_TEST

START_TEST(chan_rejects_foreign)
{
	struct world *w = world_new(2, 0, 15);
	struct dsm__wire_hdr h = { 0 };
	uint8_t buf[DSM_WIRE_HDR_SIZE + 8];
	struct dsm__chan_stats st;
	size_t n;

	world_connect(w);
	h.type = DSM_WIRE_DATA;
	h.flags = DSM_WIRE_F_FIRST | DSM_WIRE_F_LAST;
	h.cluster = 78; /* another cluster */
	h.src = 0;
	h.dst = 1;
	h.src_inc = 1000;
	h.dst_inc = 1001;
	h.len = 8;
	memset(buf + DSM_WIRE_HDR_SIZE, 1, 8);
	n = dsm__wire_encode(buf, &h);
	enqueue(&w->net, 0, 1, buf, n, w->net.now);
	h.cluster = 77;
	h.src_inc = 999; /* an older incarnation of node 0 */
	n = dsm__wire_encode(buf, &h);
	enqueue(&w->net, 0, 1, buf, n, w->net.now);
	h.src_inc = 1000;
	n = dsm__wire_encode(buf, &h);
	buf[n - 1] ^= 0x40; /* corrupt */
	enqueue(&w->net, 0, 1, buf, n, w->net.now);
	enqueue(&w->net, 0, 1, buf, 20, w->net.now); /* truncated */
	world_step(w, 1000);
	dsm__chan_stats(w->c[1], &st);
	ck_assert_uint_eq(st.rx_foreign, 1);
	ck_assert_uint_eq(st.rx_stale, 1);
	ck_assert_uint_eq(st.rx_corrupt, 1);
	ck_assert_uint_eq(st.rx_malformed, 1);
	ck_assert_uint_eq(w->r[1]->n, 0);
	world_free(w);
}
END_TEST

START_TEST(chan_four_nodes_all_to_all)
{
	enum { COUNT = 200 };
	struct world *w = world_new(4, 0xfffffff0u, 16);
	size_t lens[COUNT];
	uint8_t *buf = malloc(1 << 16);

	world_connect(w);
	w->net.drop = 0.1;
	w->net.dup = 0.05;
	w->net.reorder = 0.1;
	for (unsigned i = 0; i < COUNT; i++) {
		lens[i] = (i * 977) % 40000;
		fill(buf, lens[i], i);
		for (unsigned a = 0; a < 4; a++)
			for (unsigned b = 0; b < 4; b++)
				if (a != b)
					ck_assert_int_eq(send_buf(w, a, b, buf, lens[i]), 0);
		world_step(w, 10000);
	}
	for (unsigned b = 0; b < 4; b++)
		run_until_delivered(w, b, 3 * COUNT, 600LL * 1000000000);
	for (unsigned a = 0; a < 4; a++)
		for (unsigned b = 0; b < 4; b++)
			if (a != b)
				check_stream(w, a, b, COUNT, lens);
	free(buf);
	world_free(w);
}
END_TEST

/* ---- reassembly memory ------------------------------------------------- */

#define PAY (MTU - DSM_WIRE_HDR_SIZE)
#define REASM_SLACK (64u << 10) /* what a receiver may hold before much has arrived */

/* A DATA datagram from node 0 to node 1 (incarnations of world_new) with
 * seq, flags and a full payload; the FIRST one announces len. */
static void inject_data(struct world *w, uint32_t seq, uint16_t flags, uint32_t len)
{
	struct dsm__wire_hdr h = { 0 };
	uint8_t buf[MTU];
	size_t n;

	h.type = DSM_WIRE_DATA;
	h.flags = flags;
	h.cluster = 77;
	h.src = 0;
	h.dst = 1;
	h.src_inc = 1000;
	h.dst_inc = 1001;
	h.seq = seq;
	h.wnd = 64;
	h.len = PAY;
	fill(buf + DSM_WIRE_HDR_SIZE, PAY, seq);
	if (flags & DSM_WIRE_F_FIRST)
		dsm__put_le32(buf + DSM_WIRE_HDR_SIZE, len);
	n = dsm__wire_encode(buf, &h);
	enqueue(&w->net, 0, 1, buf, n, w->net.now);
}

START_TEST(chan_reassembly_grows_with_arrival)
{
	/* One datagram announcing a max_msg (64 MiB) message used to make
	 * the receiver allocate all 64 MiB at once. Reassembly memory must
	 * follow what has arrived: a small constant after the first
	 * fragment, then at most about twice the bytes received. */
	struct world *w = world_new(2, 0, 21);
	struct dsm__chan_stats st;
	uint64_t got;

	world_connect(w);
	inject_data(w, 0, DSM_WIRE_F_FIRST, 64u << 20);
	world_step(w, 1000);
	dsm__chan_stats(w->c[1], &st);
	ck_assert_uint_eq(st.rx_data, 1);
	ck_assert_uint_eq(st.rx_malformed, 0);
	ck_assert_msg(st.reasm_peak <= REASM_SLACK,
		      "one fragment of a 64 MiB message: %llu bytes of reassembly memory",
		      (unsigned long long)st.reasm_peak);
	got = PAY - 4;
	for (uint32_t seq = 1; seq <= 300; seq++) {
		inject_data(w, seq, 0, 0);
		world_step(w, 1000);
		got += PAY;
		dsm__chan_stats(w->c[1], &st);
		ck_assert_uint_eq(st.rx_data, seq + 1);
		ck_assert_msg(st.reasm_bytes <= 2 * got + REASM_SLACK,
			      "%llu bytes arrived, %llu held", (unsigned long long)got,
			      (unsigned long long)st.reasm_bytes);
	}
	ck_assert_uint_eq(w->r[1]->n, 0);
	world_free(w);
}
END_TEST

START_TEST(chan_reassembly_big_message)
{
	/* A real 4 MiB message: memory grows with the fragments, never beyond
	 * the message, and is given back after delivery (a rare big message
	 * does not leave a huge buffer). A 512 KiB buffer is kept for the
	 * next message, which then needs no more. */
	enum { BIG = 4 << 20, MID = 512 << 10 };
	struct world *w = world_new(2, 0, 22);
	struct dsm__chan_stats st;
	uint8_t *buf = malloc(BIG);
	uint64_t held;

	ck_assert_ptr_nonnull(buf);
	world_connect(w);
	fill(buf, BIG, 5);
	ck_assert_int_eq(send_buf(w, 0, 1, buf, BIG), 0);
	for (int i = 0; i < 100000 && w->r[1]->n < 1; i++) {
		world_step(w, 10000);
		dsm__chan_stats(w->c[1], &st);
		ck_assert_msg(st.reasm_bytes <= 2 * st.rx_data * PAY + REASM_SLACK,
			      "%llu datagrams arrived, %llu bytes held",
			      (unsigned long long)st.rx_data, (unsigned long long)st.reasm_bytes);
	}
	ck_assert_uint_eq(w->r[1]->n, 1);
	ck_assert_uint_eq(w->r[1]->m[0].len, BIG);
	ck_assert(!memcmp(w->r[1]->m[0].data, buf, BIG));
	dsm__chan_stats(w->c[1], &st);
	ck_assert_uint_le(st.reasm_peak, BIG);
	ck_assert_uint_eq(st.reasm_bytes, 0);

	ck_assert_int_eq(send_buf(w, 0, 1, buf, MID), 0);
	run_until_delivered(w, 1, 2, 1000000000);
	ck_assert(!memcmp(w->r[1]->m[1].data, buf, MID));
	dsm__chan_stats(w->c[1], &st);
	held = st.reasm_bytes;
	ck_assert_uint_gt(held, 0);
	ck_assert_uint_le(held, MID);
	fill(buf, MID, 6);
	ck_assert_int_eq(send_buf(w, 0, 1, buf, MID), 0);
	run_until_delivered(w, 1, 3, 1000000000);
	ck_assert(!memcmp(w->r[1]->m[2].data, buf, MID));
	dsm__chan_stats(w->c[1], &st);
	ck_assert_uint_eq(st.reasm_bytes, held);
	free(buf);
	world_free(w);
}
END_TEST

static Suite *chan_suite(void)
{
	Suite *s = suite_create("chan");

	DSM_TEST_ADD(s, chan_seq_wrap, 120);
	DSM_TEST_ADD(s, chan_rto_estimator, 120);
	DSM_TEST_ADD(s, chan_clean_stream, 120);
	DSM_TEST_ADD(s, chan_stream_across_wrap, 120);
	DSM_TEST_ADD(s, chan_lossy_stream, 120);
	DSM_TEST_ADD(s, chan_sack_bookkeeping, 120);
	DSM_TEST_ADD(s, chan_tail_loss_probe, 120);
	DSM_TEST_ADD(s, chan_message_too_big, 120);
	DSM_TEST_ADD(s, chan_dead_peer, 120);
	DSM_TEST_ADD(s, chan_excluded_node_learns, 120);
	DSM_TEST_ADD(s, chan_restart_is_new_member, 120);
	DSM_TEST_ADD(s, chan_clean_leave, 120);
	DSM_TEST_ADD(s, chan_rejects_foreign, 120);
	DSM_TEST_ADD(s, chan_four_nodes_all_to_all, 120);
	DSM_TEST_ADD(s, chan_reassembly_grows_with_arrival, 120);
	DSM_TEST_ADD(s, chan_reassembly_big_message, 120);
	return s;
}

int main(void)
{
	dsm__log_level = DSM__LOG_ERROR;
	return dsm_test_run_suite(chan_suite());
}
