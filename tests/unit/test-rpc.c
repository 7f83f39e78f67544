/*
 * RPC runtime over the real stack (libfabric udp on 127.0.0.1, channel,
 * network thread, workers), with several nodes in one process: each node
 * is a dsm__net created in its own thread.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "net.h"
#include "net_rpc.h"
#include "testutil.h"

#define MAXN 4

struct cluster {
	unsigned n;
	struct dsm__net_cfg cfg[MAXN];
	struct dsm__net *net[MAXN];
	int err[MAXN];
};

static bool skip_serve; /* bring nodes up without handlers */
static void serve_node(struct dsm__rpc *r);

struct up_arg {
	struct cluster *cl;
	unsigned i;
};

static void *bring_up(void *arg)
{
	struct up_arg *u = arg;

	struct dsm__net *n;
	int e = dsm__net_create(&u->cl->cfg[u->i], NULL, &n);

	if (!e) {
		if (!skip_serve)
			serve_node(dsm__net_rpc(n));
		e = dsm__net_start(n);
	}
	u->cl->net[u->i] = n;
	u->cl->err[u->i] = e;
	return NULL;
}

static struct cluster *cluster_new(unsigned n, int timeout_ms)
{
	struct cluster *cl = calloc(1, sizeof(*cl));
	pthread_t th[MAXN];
	struct up_arg ua[MAXN];
	char *addrs[MAXN];

	cl->n = n;
	for (unsigned i = 0; i < n; i++) {
		addrs[i] = malloc(32);
		snprintf(addrs[i], 32, "127.0.0.1:%u", dsm_test_free_port(NULL));
	}
	for (unsigned i = 0; i < n; i++) {
		struct dsm__net_cfg *c = &cl->cfg[i];

		memset(c, 0, sizeof(*c));
		c->rank = i;
		c->nodes = n;
		c->addrs = calloc(n, sizeof(char *));
		for (unsigned j = 0; j < n; j++)
			c->addrs[j] = strdup(addrs[j]);
		snprintf(c->provider, sizeof(c->provider), "udp");
		c->cluster = 4242;
		c->peer_timeout_ms = timeout_ms;
		c->connect_timeout_ms = 5000;
		c->workers = 2;
		c->spin_us = 20;
		c->max_msg = 64u << 20;
		c->rx_posted = 512;
	}
	for (unsigned i = 0; i < n; i++) {
		ua[i].cl = cl;
		ua[i].i = i;
		pthread_create(&th[i], NULL, bring_up, &ua[i]);
	}
	for (unsigned i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(cl->err[i] == 0, "node %u: %s", i, dsm_strerror(cl->err[i]));
		free(addrs[i]);
	}
	return cl;
}

static void cluster_free(struct cluster *cl)
{
	for (unsigned i = 0; i < cl->n; i++) {
		dsm__net_destroy(cl->net[i]);
		dsm__net_cfg_fini(&cl->cfg[i]);
	}
	free(cl);
}

static struct dsm__rpc *R(struct cluster *cl, unsigned i)
{
	return dsm__net_rpc(cl->net[i]);
}

/* ---- handlers ----------------------------------------------------------- */

static atomic_int slow_ms;

static int echo_worker_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_echo_worker_req *req,
			 struct dsm_rpc_echo_worker_rep *rep)
{
	(void)ctx;
	if (atomic_load(&slow_ms))
		usleep((useconds_t)atomic_load(&slow_ms) * 1000);
	if (req->seq == 0xdead)
		return DSM_EBUSY; /* a handler's error reaches the caller */
	rep->stamp = req->stamp;
	rep->seq = req->seq;
	rep->data = req->data;
	return 0;
}

static int sum_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_sum_req *req,
		 struct dsm_rpc_sum_rep *rep)
{
	(void)ctx;
	rep->total = 0;
	for (uint32_t i = 0; i < req->vals_len; i++)
		rep->total += req->vals[i];
	rep->count = req->vals_len;
	return 0;
}

/* note: records (from, seq) in order */
static struct {
	atomic_uint n;
	uint64_t seq[10000];
	unsigned from[10000];
} notes;

static int note_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_note_msg *m)
{
	unsigned k = atomic_load(&notes.n);

	if (k < 10000) {
		notes.seq[k] = m->seq;
		notes.from[k] = dsm__rpc_ctx_peer(ctx);
		atomic_store(&notes.n, k + 1);
	}
	return 0;
}

static void serve_node(struct dsm__rpc *r)
{
	ck_assert_int_eq(dsm__net_serve_echo(r), 0);
	ck_assert_int_eq(dsm_rpc_echo_worker_serve(r, echo_worker_h, NULL), 0);
	ck_assert_int_eq(dsm_rpc_sum_serve(r, sum_h, NULL), 0);
	ck_assert_int_eq(dsm_rpc_note_serve(r, note_h, NULL), 0);
}

static void serve_all(struct cluster *cl)
{
	for (unsigned i = 0; i < cl->n; i++)
		serve_node(R(cl, i));
}

static void fill(uint8_t *b, size_t n, unsigned tag)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 13 + tag + (i >> 10));
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(rpc_echo_sizes)
{
	/* up to the largest the interface allows: 16 MiB of data */
	static const size_t sizes[] = { 0, 1, 64, 1400, 4096, 100000, 1 << 20, 3 << 20, 16 << 20 };
	struct cluster *cl = cluster_new(2, 1000);
	uint8_t *buf = malloc(16 << 20);

	serve_all(cl);
	for (unsigned k = 0; k < DSM__ARRAY_SIZE(sizes); k++) {
		for (int worker = 0; worker < 2; worker++) {
			struct dsm_rpc_echo_req req = { .stamp = 0x0123456789abcdefull + k,
							.seq = k };
			struct dsm_rpc_echo_rep rep;
			struct dsm__rpc_reply keep;
			int e;

			fill(buf, sizes[k], k);
			req.data.ptr = buf;
			req.data.len = (uint32_t)sizes[k];
			if (worker) {
				/* same fields, handler on the worker pool */
				struct dsm_rpc_echo_worker_req wreq = { req.stamp, req.seq, req.data };
				struct dsm_rpc_echo_worker_rep wrep;

				e = dsm_rpc_echo_worker(R(cl, 0), 1, &wreq, &wrep, &keep, 10000);
				rep.stamp = wrep.stamp;
				rep.seq = wrep.seq;
				rep.data = wrep.data;
			} else {
				e = dsm_rpc_echo(R(cl, 0), 1, &req, &rep, &keep, 10000);
			}
			ck_assert_msg(e == 0, "size %zu: %s", sizes[k], dsm_strerror(e));
			ck_assert_uint_eq(rep.stamp, req.stamp);
			ck_assert_uint_eq(rep.seq, k);
			ck_assert_uint_eq(rep.data.len, sizes[k]);
			ck_assert(!sizes[k] || !memcmp(rep.data.ptr, buf, sizes[k]));
			dsm__rpc_reply_release(&keep);
		}
	}
	free(buf);
	cluster_free(cl);
}
END_TEST

START_TEST(rpc_sum_signed_arrays)
{
	struct cluster *cl = cluster_new(2, 1000);
	struct dsm_rpc_sum_req req = { .vals_len = 64 };
	struct dsm_rpc_sum_rep rep;
	int64_t want = 0;

	serve_all(cl);
	for (unsigned i = 0; i < 64; i++) {
		req.vals[i] = (i & 1) ? -(int64_t)i * 1000000007 : INT64_MAX / 128;
		want += req.vals[i];
	}
	ck_assert_int_eq(dsm_rpc_sum(R(cl, 1), 0, &req, &rep, 5000), 0);
	ck_assert_int_eq(rep.total, want);
	ck_assert_uint_eq(rep.count, 64);
	cluster_free(cl);
}
END_TEST

struct async_state {
	atomic_uint done, bad;
	uint32_t expect_seq_sum;
	atomic_uint seq_sum;
};

static void async_done(void *arg, int status, const void *rep_)
{
	struct async_state *s = arg;
	const struct dsm_rpc_echo_rep *rep = rep_;

	if (status != 0 || rep->data.len != 8 || memcmp(rep->data.ptr, &rep->stamp, 8))
		atomic_fetch_add(&s->bad, 1);
	else
		atomic_fetch_add(&s->seq_sum, rep->seq);
	atomic_fetch_add(&s->done, 1);
}

START_TEST(rpc_async_many)
{
	struct cluster *cl = cluster_new(3, 1000);
	struct async_state s = { 0 };
	enum { N = 3000 };

	serve_all(cl);
	for (uint32_t i = 0; i < N; i++) {
		struct dsm_rpc_echo_req req = { .stamp = 1000000 + i, .seq = i };
		int e;

		req.data.ptr = (const uint8_t *)&req.stamp;
		req.data.len = 8;
		do {
			e = dsm_rpc_echo_async(R(cl, 0), 1 + (i & 1), &req, async_done, &s);
			if (e == DSM_EAGAIN)
				usleep(100);
		} while (e == DSM_EAGAIN);
		ck_assert_int_eq(e, 0);
		s.expect_seq_sum += i;
	}
	for (int t = 0; t < 10000 && atomic_load(&s.done) < N; t++)
		usleep(1000);
	ck_assert_uint_eq(atomic_load(&s.done), N);
	ck_assert_uint_eq(atomic_load(&s.bad), 0);
	ck_assert_uint_eq(atomic_load(&s.seq_sum), s.expect_seq_sum);
	cluster_free(cl);
}
END_TEST

START_TEST(rpc_oneway_in_order)
{
	struct cluster *cl = cluster_new(2, 1000);
	uint8_t pad[300] = { 0 };

	serve_all(cl);
	atomic_store(&notes.n, 0);
	for (uint64_t i = 0; i < 5000; i++) {
		struct dsm_rpc_note_msg m = { .from = 0, .seq = i };

		m.data.ptr = pad;
		m.data.len = (uint32_t)(i % 300);
		ck_assert_int_eq(dsm_rpc_note_send(R(cl, 0), 1, &m), 0);
	}
	for (int t = 0; t < 10000 && atomic_load(&notes.n) < 5000; t++)
		usleep(1000);
	ck_assert_uint_eq(atomic_load(&notes.n), 5000);
	for (unsigned i = 0; i < 5000; i++) {
		ck_assert_uint_eq(notes.seq[i], i);
		ck_assert_uint_eq(notes.from[i], 0);
	}
	cluster_free(cl);
}
END_TEST

START_TEST(rpc_errors_reach_caller)
{
	struct cluster *cl;

	skip_serve = true;
	cl = cluster_new(2, 1000);
	skip_serve = false;
	struct dsm_rpc_echo_worker_req req = { .seq = 0xdead };
	struct dsm_rpc_echo_worker_rep rep;
	struct dsm_rpc_sum_req sreq = { .vals_len = 1 };
	struct dsm_rpc_sum_rep srep;
	struct dsm__rpc_reply keep;

	/* no handlers on node 1 yet: DSM_ENOENT */
	ck_assert_int_eq(dsm_rpc_sum(R(cl, 0), 1, &sreq, &srep, 5000), DSM_ENOENT);
	serve_all(cl);
	ck_assert_int_eq(dsm_rpc_echo_worker(R(cl, 0), 1, &req, &rep, &keep, 5000), DSM_EBUSY);
	/* bad arguments */
	ck_assert_int_eq(dsm_rpc_sum(R(cl, 0), 0, &sreq, &srep, 5000), DSM_EINVAL); /* self */
	ck_assert_int_eq(dsm_rpc_sum(R(cl, 0), 9, &sreq, &srep, 5000), DSM_EINVAL);
	cluster_free(cl);
}
END_TEST

START_TEST(rpc_timeout)
{
	struct cluster *cl = cluster_new(2, 1000);
	struct dsm_rpc_echo_worker_req req = { .seq = 1 };
	struct dsm_rpc_echo_worker_rep rep;
	struct dsm__rpc_reply keep;
	int64_t t0;

	serve_all(cl);
	atomic_store(&slow_ms, 300);
	t0 = dsm__now_ns();
	ck_assert_int_eq(dsm_rpc_echo_worker(R(cl, 0), 1, &req, &rep, &keep, 50), DSM_ETIMEDOUT);
	ck_assert_int_lt(dsm__now_ns() - t0, 250000000);
	atomic_store(&slow_ms, 0);
	usleep(400000); /* the late reply arrives and is dropped */
	req.seq = 2;
	ck_assert_int_eq(dsm_rpc_echo_worker(R(cl, 0), 1, &req, &rep, &keep, 5000), 0);
	ck_assert_uint_eq(rep.seq, 2);
	cluster_free(cl);
}
END_TEST

static struct dsm__rpc_token *parked;
static int park_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_echo_worker_req *req,
		  struct dsm_rpc_echo_worker_rep *rep)
{
	(void)req;
	(void)rep;
	struct dsm__rpc_token *t = dsm__rpc_defer(ctx);

	__atomic_store_n(&parked, t, __ATOMIC_RELEASE);
	return t ? DSM__RPC_DEFERRED : DSM_ENOMEM;
}

struct call_arg {
	struct dsm__rpc *r;
	unsigned peer;
	int result;
	int64_t ended;
};

static void *call_thread(void *arg)
{
	struct call_arg *a = arg;
	struct dsm_rpc_echo_worker_req req = { .seq = 7 };
	struct dsm_rpc_echo_worker_rep rep;
	struct dsm__rpc_reply keep;

	a->result = dsm_rpc_echo_worker(a->r, a->peer, &req, &rep, &keep, -1);
	a->ended = dsm__now_ns();
	if (!a->result)
		dsm__rpc_reply_release(&keep);
	return NULL;
}

START_TEST(rpc_deferred_reply)
{
	struct cluster *cl = cluster_new(2, 1000);
	struct dsm_rpc_echo_worker_rep rep = { .stamp = 99, .seq = 8 };
	struct call_arg a = { 0 };
	pthread_t th;

	serve_all(cl);
	parked = NULL;
	ck_assert_int_eq(dsm_rpc_echo_worker_serve(R(cl, 1), park_h, NULL), 0);
	a.r = R(cl, 0);
	a.peer = 1;
	pthread_create(&th, NULL, call_thread, &a);
	for (int t = 0; t < 5000 && !__atomic_load_n(&parked, __ATOMIC_ACQUIRE); t++)
		usleep(1000);
	ck_assert_ptr_nonnull(parked);
	usleep(50000);
	ck_assert_int_eq(a.ended, 0); /* still waiting */
	ck_assert_int_eq(dsm_rpc_echo_worker_reply(parked, 0, &rep), 0);
	pthread_join(th, NULL);
	ck_assert_int_eq(a.result, 0);
	cluster_free(cl);
}
END_TEST

START_TEST(rpc_peer_dead_ends_calls)
{
	/* An outstanding call (parked at the peer) and a new call both end
	 * with DSM_EPEERDEAD within twice the timeout after the peer dies. */
	struct cluster *cl = cluster_new(3, 300);
	struct call_arg a = { 0 };
	struct dsm_rpc_echo_req req = { .seq = 1 };
	struct dsm_rpc_echo_rep rep;
	struct dsm__rpc_reply keep;
	pthread_t th;
	int64_t died;

	serve_all(cl);
	parked = NULL;
	ck_assert_int_eq(dsm_rpc_echo_worker_serve(R(cl, 2), park_h, NULL), 0);
	a.r = R(cl, 0);
	a.peer = 2;
	pthread_create(&th, NULL, call_thread, &a);
	for (int t = 0; t < 5000 && !__atomic_load_n(&parked, __ATOMIC_ACQUIRE); t++)
		usleep(1000);
	ck_assert_ptr_nonnull(parked);
	free(parked); /* node 2 will never answer: it dies now */
	dsm__net_destroy(cl->net[2]);
	cl->net[2] = NULL;
	died = dsm__now_ns();
	pthread_join(th, NULL);
	ck_assert_int_eq(a.result, DSM_EPEERDEAD);
	ck_assert_int_le(a.ended - died, 2 * 300 * 1000000LL);
	ck_assert_int_eq(dsm_rpc_echo(R(cl, 0), 2, &req, &rep, &keep, 5000), DSM_EPEERDEAD);
	ck_assert(!dsm__net_peer_alive(cl->net[0], 2));
	/* survivors keep talking */
	ck_assert_int_eq(dsm_rpc_echo(R(cl, 0), 1, &req, &rep, &keep, 5000), 0);
	dsm__rpc_reply_release(&keep);
	cluster_free(cl);
}
END_TEST

static Suite *rpc_suite(void)
{
	Suite *s = suite_create("rpc");

	DSM_TEST_ADD(s, rpc_echo_sizes, 60);
	DSM_TEST_ADD(s, rpc_sum_signed_arrays, 60);
	DSM_TEST_ADD(s, rpc_async_many, 60);
	DSM_TEST_ADD(s, rpc_oneway_in_order, 60);
	DSM_TEST_ADD(s, rpc_errors_reach_caller, 60);
	DSM_TEST_ADD(s, rpc_timeout, 60);
	DSM_TEST_ADD(s, rpc_deferred_reply, 60);
	DSM_TEST_ADD(s, rpc_peer_dead_ends_calls, 60);
	return s;
}

int main(void)
{
	dsm__log_level = DSM__LOG_ERROR;
	return dsm_test_run_suite(rpc_suite());
}
