/*
 * Barrier: dsm_barrier, a dissemination barrier. In round k node r tells
 * node r + 2^k and waits to hear from node r - 2^k (mod N); after
 * ceil(log2 N) rounds every node has heard, directly or not, from every
 * other: no node is a bottleneck, one-way messages only. A release before
 * and an acquire after make it synchronise memory.
 *
 * A round's arrival is recorded as the highest barrier number heard of in
 * that round (not a count: a node whose barrier failed because a peer died
 * skips its later rounds, and a count would stay one short for good). A
 * barrier fails with DSM_EPEERDEAD on every node once any node died; at
 * finalize, nodes that already left count as arrived.
 *
 * Every call is one of this node's barrier numbers, paired with the same
 * number on every other node: two threads of one node in dsm_barrier at
 * once would be two barriers of this node against one of each other node
 * (the second one pairs with the others' next barrier, and every later
 * barrier of this node with the wrong one of theirs). So a call while
 * another thread of the node is in a barrier (dsm_barrier, or the node
 * barrier of dsm_barrier_threads) does nothing and returns DSM_EBUSY
 * (B.busy); threads of one node meet with dsm_barrier_threads (tbarrier.c).
 *
 * Threads: dsm_barrier from one application thread per node at a time
 * (B.busy; B.mu serialises the rounds with dsm_finalize's, and is held
 * across the rounds' waits); the handler runs inline and wakes the waiter
 * through D->sync_cv.
 */
#include <inttypes.h>

#include "internal.h"

#define MAX_ROUNDS 32 /* dissemination rounds: N <= 2^32 */

static struct {
	pthread_mutex_t mu;
	_Atomic uint64_t recv[MAX_ROUNDS]; /* per round: highest barrier heard + 1 */
	uint64_t epoch;                    /* this node's next barrier number */
	_Atomic bool busy;                 /* a thread is in dsm__barrier */
} B;

int dsm__barrier_init(void)
{
	memset(&B, 0, sizeof(B));
	pthread_mutex_init(&B.mu, NULL);
	return 0;
}

void dsm__barrier_fini(void)
{
	pthread_mutex_destroy(&B.mu);
}

int dsm__h_barrier(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_barrier_msg *m)
{
	uint64_t got;

	(void)ctx;
	if (m->round >= MAX_ROUNDS)
		return DSM_EPROTO;
	/* Only node rank - 2^round sends this round, in order. */
	got = atomic_load(&B.recv[m->round]);
	while (got < m->epoch + 1 &&
	       !atomic_compare_exchange_weak(&B.recv[m->round], &got, m->epoch + 1))
		;
	dsm__sync_wake();
	return 0;
}

struct bar_wait {
	unsigned round;
	uint64_t epoch;
};

static bool bar_arrived(void *arg)
{
	struct bar_wait *bw = arg;

	return atomic_load(&B.recv[bw->round]) > bw->epoch;
}

int dsm__barrier_rounds(bool finalizing)
{
	uint64_t epoch;
	unsigned k, dist;
	int e = 0;

	pthread_mutex_lock(&B.mu);
	epoch = B.epoch++;
	for (k = 0, dist = 1; dist < D->nodes; k++, dist <<= 1) {
		unsigned to = (D->rank + dist) % D->nodes;
		unsigned from = (D->rank + D->nodes - dist) % D->nodes;
		struct dsm_rpc_barrier_msg m = { .epoch = epoch, .round = k };
		struct bar_wait bw = { .round = k, .epoch = epoch };

		if (!dsm__peer_gone(to)) {
			e = dsm_rpc_barrier_send(D->rpc, to, &m);
			if (e && !(finalizing && e == DSM_EPEERDEAD))
				break;
			e = 0;
		}
		e = dsm__wait_for(bar_arrived, &bw, from, finalizing ? WAIT_FIN : WAIT_ALL);
		if (e)
			break;
	}
	pthread_mutex_unlock(&B.mu);
	DSM__DEBUG("barrier %" PRIu64 "%s: %s", epoch, finalizing ? " (finalize)" : "",
		   e ? dsm_strerror(e) : "ok");
	return e;
}

bool dsm__barrier_busy(void)
{
	return atomic_load(&B.busy);
}

int dsm__barrier(void)
{
	int64_t t0;
	int e, e2;

	if (atomic_exchange(&B.busy, true)) {
		DSM__WARN("barrier: another thread of this node is in a barrier (DSM_EBUSY); "
			  "threads of one node meet with dsm_barrier_threads");
		return DSM_EBUSY;
	}
	t0 = dsm__now_ns();
	e = dsm__release();
	e2 = dsm__barrier_rounds(false);
	/* A node that died cannot have taken part (whatever messages made it
	 * this far): the barrier failed, and says so every time. */
	if (!e2 && dsm__any_dead())
		e2 = DSM_EPEERDEAD;
	if (!e)
		e = e2;
	if (!e2)
		e2 = dsm__acquire();
	if (!e)
		e = e2;
	STAT_INC(barriers);
	STAT_ADD(barrier_ns, (uint64_t)(dsm__now_ns() - t0));
	DSM__DEBUG("barrier done in %.1f us: %s", (dsm__now_ns() - t0) / 1e3,
		   e ? dsm_strerror(e) : "ok");
	atomic_store(&B.busy, false);
	return e;
}

DSM_EXPORT int dsm_barrier(void)
{
	if (dsm__closed())
		return DSM_ECLOSED;
	return dsm__barrier();
}
