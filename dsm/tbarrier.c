/*
 * Thread barrier: dsm_barrier_threads, a barrier among every application
 * thread of every node (one node per machine, a thread per core). The
 * threads of a node meet here; the last one to arrive runs the node
 * barrier (dsm__barrier: release, dissemination rounds, acquire: what
 * dsm_barrier does) for all of them while the others sleep, then wakes
 * them, and every thread of the round returns the node barrier's result.
 *
 * Why one node barrier is enough: release and acquire are node-wide. Every
 * local thread's writes happened before the last thread's arrival (T.mu),
 * and they are on the node's dirty list (a page goes on it before it
 * becomes writable), so the last thread's release sends them all; its
 * acquire drops the stale copies for every thread of the node, and the
 * others return after it (T.mu again).
 *
 * Rounds are counted (T.gen, like pthread_barrier's generation): a waiter
 * leaves when the count moves, so a thread can call again at once. The
 * threads_per_node of the round in progress is T.want; a call with another
 * one is refused (DSM_EINVAL) and changes nothing. No state depends on
 * dsm_init (a call before it or in a forked child returns DSM_ECLOSED
 * without touching T), so T is initialised statically and never torn down.
 *
 * Waiters sleep on T.cv without spinning first: the node barrier takes at
 * least a round trip to another node, and a thread per core leaves no
 * core to spin on.
 *
 * Threads: application threads only. T.mu is a leaf, never held across the
 * node barrier, so a mismatched call is refused at once.
 */
#include "internal.h"

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* the round ended (T.gen moved), or T.closing cleared */
	unsigned want;          /* threads_per_node of the round in progress; 0: none */
	unsigned arrived;       /* threads of that round arrived (until it closes) */
	bool closing;           /* all arrived: the last one is in the node barrier */
	uint64_t gen;           /* rounds ended */
	int result;             /* the node barrier's result, of round gen - 1 */
} T = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
};

unsigned dsm__tbarrier_waiting(void)
{
	unsigned n;

	pthread_mutex_lock(&T.mu);
	n = T.closing ? 0 : T.arrived;
	pthread_mutex_unlock(&T.mu);
	return n;
}

DSM_EXPORT int dsm_barrier_threads(unsigned threads_per_node)
{
	uint64_t gen;
	int e;

	if (!threads_per_node)
		return DSM_EINVAL;
	if (dsm__closed())
		return DSM_ECLOSED;
	pthread_mutex_lock(&T.mu);
	/* A thread beyond threads_per_node (the program's mistake) belongs
	 * to the next round: it waits for this one to end. */
	while (T.closing && T.want == threads_per_node)
		pthread_cond_wait(&T.cv, &T.mu);
	if (T.want && T.want != threads_per_node) {
		unsigned want = T.want;

		pthread_mutex_unlock(&T.mu);
		DSM__WARN("dsm_barrier_threads(%u) while a round of %u threads per node is in "
			  "progress: DSM_EINVAL", threads_per_node, want);
		return DSM_EINVAL;
	}
	T.want = threads_per_node;
	gen = T.gen;
	if (++T.arrived < threads_per_node) {
		while (T.gen == gen)
			pthread_cond_wait(&T.cv, &T.mu);
		e = T.result;
		pthread_mutex_unlock(&T.mu);
		return e;
	}
	/* the last one: the node barrier, for every thread of the round */
	T.closing = true;
	T.arrived = 0;
	pthread_mutex_unlock(&T.mu);
	e = dsm__barrier();
	pthread_mutex_lock(&T.mu);
	T.result = e;
	T.gen++;
	T.want = 0;
	T.closing = false;
	pthread_cond_broadcast(&T.cv);
	pthread_mutex_unlock(&T.mu);
	return e;
}
