/*
 * Pipelined fetch-ahead: while a node reads through pages of one home in
 * address order, the next window of pages is already on its way.
 *
 * fault.c fetches a window of pages at a read fault and installs it; on a
 * stream that has reached the largest window, that leaves the node idle
 * for a whole round trip and transfer at every window. So once a read
 * fault's window is full size, dsm__ahead_start asks for the next window
 * asynchronously. Its reply is installed by the thread that receives it,
 * all but its first page (the marker), whose bytes are kept in the slot.
 * The reader's fault on the marker installs it from there (no round trip)
 * and asks for the window after: one window is always in flight ahead of
 * the reader, which then waits only when the network is slower than its
 * reading (the readahead marker of the Linux page cache, with a page that
 * is not installed instead of a flag, since a present page cannot trap a
 * load).
 *
 * What is installed, and when:
 *  - a window fetched ahead is installed only if no acquire and no forget
 *    ran since it was asked (dsm__fetched_install with the generations):
 *    a page dropped by an acquire in between may have been fetched and
 *    dropped again, and this copy would be older; a forgotten page may be
 *    reused;
 *  - a fault on a page of a window in flight waits for the reply (then
 *    retries the access: the page is installed, or it faults again and is
 *    fetched as usual);
 *  - a slot whose marker is never touched is taken back by the next
 *    window started when no slot is free (the marker then faults and is
 *    fetched as usual).
 * A reply that failed (the home died, it moved the page) only frees the
 * slot: the faults that follow take the usual path and see the error.
 *
 * Threads: fault callbacks (dsm__ahead_fault, dsm__ahead_start) and the
 * receiving thread (the reply); the slots are under A_.mu, a leaf held
 * for bookkeeping only; a waiter sleeps on its slot's state (futex).
 */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define AHEAD_SLOTS 4
#define SPIN_NS 50000 /* a waiter polls this long before it sleeps */

enum { S_FREE, S_FLIGHT, S_READY, S_BUSY };

struct slot {
	_Atomic uint32_t state; /* futex word */
	size_t first, n;        /* pages asked: [first, first + n) */
	unsigned home;
	uint64_t epoch, fgen;   /* acquire and forget generations when asked */
	uint64_t age;           /* when started, to take back the oldest */
	bool have;              /* marker holds page first's bytes */
	uint8_t *marker;
};

static struct {
	pthread_mutex_t mu;
	struct slot s[AHEAD_SLOTS];
	uint64_t clock;
	bool on;
} A_;

int dsm__ahead_init(void)
{
	int i;

	memset(&A_, 0, sizeof(A_));
	pthread_mutex_init(&A_.mu, NULL);
	for (i = 0; i < AHEAD_SLOTS; i++) {
		A_.s[i].marker = malloc(D->ps);
		if (!A_.s[i].marker)
			return DSM_ENOMEM;
	}
	A_.on = dsm__fetch_ahead_max() > 1;
	return 0;
}

void dsm__ahead_fini(void)
{
	int i;

	for (i = 0; i < AHEAD_SLOTS; i++)
		free(A_.s[i].marker);
	pthread_mutex_destroy(&A_.mu);
	memset(&A_, 0, sizeof(A_));
}

static void state_set(struct slot *s, uint32_t st)
{
	atomic_store(&s->state, st);
	syscall(SYS_futex, &s->state, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void state_wait(struct slot *s, uint32_t st)
{
	int64_t until = dsm__now_ns() + SPIN_NS;

	/* the reply is usually close: a sleep costs a wake-up (tens of us
	 * on a VM whose idle CPUs halt) */
	while (atomic_load(&s->state) == st && dsm__now_ns() < until)
		DSM__CPU_RELAX();
	while (atomic_load(&s->state) == st)
		syscall(SYS_futex, &s->state, FUTEX_WAIT_PRIVATE, st, NULL, NULL, 0);
}

/* The reply of a window fetched ahead (receiving thread). */
static void ahead_done(void *arg, int status, const void *rep)
{
	struct slot *s = arg;
	const struct dsm_rpc_fetch_rep *rp = rep;
	size_t n, i;
	bool again = false;

	s->have = false;
	if (!status && rp && rp->data.len && rp->data.len <= s->n * D->ps &&
	    !(rp->data.len % D->ps)) {
		n = rp->data.len / D->ps;
		STAT_ADD(pages_fetched, n);
		STAT_ADD(prefetched, n);
		for (i = 1; i < n; i += DSM__RUN_MAX)
			if (dsm__fetched_install(s->first, i, DSM__MIN(n - i, (size_t)DSM__RUN_MAX),
						 rp->data.ptr, DSM__PAGER_READ, s->epoch, &s->fgen,
						 &again))
				break;
		memcpy(s->marker, rp->data.ptr, D->ps);
		s->have = true;
	}
	state_set(s, S_READY);
}

/* Ask for the window from page idx (homed at h) ahead of any fault, if it
 * is worth it and a slot is free (or can be taken back). */
void dsm__ahead_start(size_t idx, unsigned h)
{
	struct dsm_rpc_fetch_req rq;
	struct slot *s = NULL;
	unsigned max = dsm__fetch_ahead_max();
	size_t n = 0, i;

	if (!A_.on)
		return;
	while (n < max && idx + n < D->npages) {
		struct page_meta *m = &D->meta[idx + n];

		/* same home, not here yet, same allocation (see fault.c) */
		if (atomic_load_explicit(&m->home1, memory_order_relaxed) != h + 1 ||
		    (atomic_load_explicit(&m->flags, memory_order_relaxed) & F_CACHED) ||
		    (n && (atomic_load_explicit(&m->flags, memory_order_relaxed) & F_XSTART)))
			break;
		n++;
	}
	if (n < 2)
		return;
	pthread_mutex_lock(&A_.mu);
	/* a free slot, else the oldest ready one; none if the window
	 * overlaps one asked already */
	for (i = 0; i < AHEAD_SLOTS; i++) {
		struct slot *t = &A_.s[i];
		uint32_t st = atomic_load(&t->state);

		if (st != S_FREE && idx < t->first + t->n && t->first < idx + n) {
			s = NULL;
			break;
		}
		if (st == S_FREE && (!s || atomic_load(&s->state) != S_FREE))
			s = t;
		else if (st == S_READY && (!s || (atomic_load(&s->state) == S_READY &&
						    t->age < s->age)))
			s = t;
	}
	if (s) {
		s->state = S_FLIGHT;
		s->first = idx;
		s->n = n;
		s->home = h;
		s->epoch = dsm__acq_epoch();
		s->fgen = dsm__forget_gen();
		s->age = ++A_.clock;
		s->have = false;
	}
	pthread_mutex_unlock(&A_.mu);
	if (!s)
		return;
	rq = (struct dsm_rpc_fetch_req){ .page = (uintptr_t)page_addr(idx), .count = (uint32_t)n };
	/* the reply (or a failure, possibly here and now) runs ahead_done */
	(void)dsm_rpc_fetch_async(D->rpc, h, &rq, ahead_done, s);
}

/* A read fault on page idx: if it belongs to a window fetched ahead, wait
 * for it; if it is that window's marker, install it and ask for the next
 * window. 1 when served so (the access retries), 0 when the usual path
 * must fetch it, or a negative code. */
int dsm__ahead_fault(size_t idx)
{
	struct slot *s = NULL;
	size_t next = 0;
	unsigned h = 0;
	bool again = false, done = false;
	int i, e;

	if (!A_.on)
		return 0;
	pthread_mutex_lock(&A_.mu);
	for (i = 0; i < AHEAD_SLOTS; i++) {
		struct slot *t = &A_.s[i];
		uint32_t st = atomic_load(&t->state);

		if (st != S_FREE && idx >= t->first && idx < t->first + t->n) {
			s = t;
			break;
		}
	}
	pthread_mutex_unlock(&A_.mu);
	if (!s)
		return 0;
	state_wait(s, S_FLIGHT);
	pthread_mutex_lock(&A_.mu);
	if (atomic_load(&s->state) != S_READY || idx < s->first || idx >= s->first + s->n) {
		/* another thread took it (it serves the marker), or it was
		 * taken back and reused: retry the access */
		pthread_mutex_unlock(&A_.mu);
		state_wait(s, S_BUSY);
		return 1;
	}
	if (idx != s->first) {
		/* a page of the window: installed, or (an acquire or a
		 * forget came between, the home moved it) fetched as usual */
		pthread_mutex_unlock(&A_.mu);
		return dsm__pager_access(D->pg, page_addr(idx)) != DSM__PAGER_NONE;
	}
	atomic_store(&s->state, S_BUSY);
	pthread_mutex_unlock(&A_.mu);
	if (s->have) {
		e = dsm__fetched_install(s->first, 0, 1, s->marker, DSM__PAGER_READ, s->epoch,
					 &s->fgen, &again);
		done = e == 0;
		next = s->first + s->n;
		h = s->home;
	}
	state_set(s, S_FREE);
	if (!done)
		return 0;
	dsm__ahead_start(next, h);
	return 1;
}
