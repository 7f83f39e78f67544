/*
 * Allocation: the public dsm_malloc / dsm_calloc / dsm_free, on top of the
 * per-node arenas (dsm/arena.h). Allocation is local and needs no network:
 * each node allocates from its own arena. A free goes to the arena's owner
 * (a free RPC when another node allocated the memory); a page run given
 * back is forgotten by every node (homes, copies, dirty state) before the
 * arena may hand it out again, so a later allocation can home its pages
 * anywhere and finds them zeroed.
 *
 * Threads: application threads; the free handler runs on an RPC worker (it
 * waits for the forgets); the forget handler runs inline.
 */
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local int last_error;
static _Atomic uint64_t forget_gen;

uint64_t dsm__forget_gen(void)
{
	return atomic_load(&forget_gen);
}

static void forget_local(uintptr_t start, size_t npages)
{
	size_t first = page_idx((void *)start), i, j, n;

	if (first >= D->npages)
		return;
	if (npages > D->npages - first)
		npages = D->npages - first;
	/* before any page is marked: a fetch made ahead (ahead.c) that
	 * checks under a page's stripe and finds the generation it started
	 * with installs before this forget drops */
	atomic_fetch_add(&forget_gen, 1);
	/* Marked gone first, under the stripes, a run at a time: a release
	 * that holds a page's stripe and found it present reads it only if
	 * it is not gone, so dropping it now cannot make that read fault
	 * (and wait for the stripe the release holds). Then one drop for the
	 * whole range, without the stripes: a page at a time, or a run at a
	 * time, a large free keeps the network thread (this runs inline) off
	 * its timers for seconds on a VM where unmapping is slow, and the
	 * peers declare the node dead. The program freed the memory: nobody
	 * else may touch it. */
	for (i = 0; i < npages; i += n) {
		n = DSM__MIN(npages - i, (size_t)DSM__RUN_MAX);
		dsm__run_lock(first + i, n);
		for (j = i; j < i + n; j++)
			atomic_fetch_or(&D->meta[first + j].flags, F_GONE);
		dsm__run_unlock(first + i, n);
	}
	dsm__pager_drop(D->pg, (void *)start, npages * D->ps);
	for (i = 0; i < npages; i++) {
		struct page_meta *m = &D->meta[first + i];

		if (atomic_load_explicit(&m->flags, memory_order_relaxed) == F_GONE && !m->twin &&
		    !atomic_load_explicit(&m->home1, memory_order_relaxed) && !m->readers) {
			atomic_fetch_and(&m->flags, ~(uint32_t)F_GONE); /* no state */
			continue;
		}
		pthread_mutex_lock(stripe_of(first + i));
		if (m->twin) {
			dsm__twin_put(m->twin);
			m->twin = NULL;
		}
		/* list memberships stay: the lists are walked, not searched */
		atomic_fetch_and(&m->flags, F_INLIST | F_DLIST);
		atomic_store(&m->home1, 0);
		m->readers = 0;
		pthread_mutex_unlock(stripe_of(first + i));
	}
}

/*
 * A large forget is done off the receiving thread, by a thread of its own
 * (started at the first one), which answers when done: dropping 256 MiB
 * of present pages takes about a second on this kind of VM, and a network
 * thread that long away from its timers sends no heartbeat, so its peers
 * declare it dead. The freeing node waits for every answer before the
 * pages are handed out again, so nothing reaches them meanwhile. Small
 * ones (the common case) are done inline.
 */
#define FORGET_INLINE_PAGES 256

struct fjob {
	struct fjob *next;
	uintptr_t start;
	size_t npages;
	struct dsm__rpc_token *tok;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fjob *head, **tail;
	bool running, stop;
	pthread_t th;
} F = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, &F.head, false, false, 0 };

static void *forget_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&F.mu);
	for (;;) {
		struct dsm_rpc_forget_rep rep = { 0 };
		struct fjob *j = F.head;

		if (!j) {
			if (F.stop)
				break;
			pthread_cond_wait(&F.cv, &F.mu);
			continue;
		}
		F.head = j->next;
		if (!F.head)
			F.tail = &F.head;
		pthread_mutex_unlock(&F.mu);
		forget_local(j->start, j->npages);
		dsm__rpc_reply_deferred(j->tok, 0, &rep);
		free(j);
		pthread_mutex_lock(&F.mu);
	}
	pthread_mutex_unlock(&F.mu);
	return NULL;
}

/* Queue a forget for the forget thread; false: do it inline (stopping, or
 * out of memory). Receiving thread. */
static bool forget_queue(struct dsm__rpc_ctx *ctx, uintptr_t start, size_t npages)
{
	struct fjob *j = malloc(sizeof(*j));
	bool ok = false;

	if (!j)
		return false;
	pthread_mutex_lock(&F.mu);
	if (!F.stop && !F.running)
		F.running = pthread_create(&F.th, NULL, forget_thread, NULL) == 0;
	if (F.running && !F.stop && (j->tok = dsm__rpc_defer(ctx))) {
		j->next = NULL;
		j->start = start;
		j->npages = npages;
		*F.tail = j;
		F.tail = &j->next;
		pthread_cond_signal(&F.cv);
		ok = true;
	}
	pthread_mutex_unlock(&F.mu);
	if (!ok)
		free(j);
	return ok;
}

void dsm__forget_stop(void)
{
	bool running;

	pthread_mutex_lock(&F.mu);
	F.stop = true;
	running = F.running;
	pthread_cond_signal(&F.cv);
	pthread_mutex_unlock(&F.mu);
	if (running)
		pthread_join(F.th, NULL); /* it answers what is queued first */
	pthread_mutex_lock(&F.mu);
	F.running = false; /* stop stays: later forgets run inline */
	pthread_mutex_unlock(&F.mu);
}

void dsm__forget_init(void)
{
	pthread_mutex_lock(&F.mu);
	F.stop = false;
	pthread_mutex_unlock(&F.mu);
}

int dsm__h_forget(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_forget_req *rq,
		  struct dsm_rpc_forget_rep *rp)
{
	(void)rp;
	if (!in_region((void *)(uintptr_t)rq->start))
		return DSM_EPROTO;
	if (rq->npages > FORGET_INLINE_PAGES && forget_queue(ctx, rq->start, rq->npages))
		return DSM__RPC_DEFERRED;
	forget_local(rq->start, rq->npages);
	return 0;
}

/* The retired pages x (dsm__arena_free) are forgotten by every node, this
 * one first; then the arena may hand them out again, to be homed anywhere
 * and read as zeros. A node that died or left reads no page again. If some
 * node could not be told, the pages stay retired (never handed out stale). */
static int forget_everywhere(const struct dsm__arena_extent *x)
{
	struct waitgroup wg;
	unsigned r;
	int e;

	forget_local(x->start, x->npages);
	dsm__wg_init(&wg);
	for (r = 0; r < D->nodes; r++) {
		struct dsm_rpc_forget_req rq = { .start = x->start, .npages = x->npages };

		if (r == D->rank || dsm__peer_gone(r))
			continue;
		dsm__wg_add(&wg);
		e = dsm_rpc_forget_async(D->rpc, r, &rq, dsm__wg_done_cb, &wg);
		if (e < 0)
			dsm__wg_done(&wg, e);
	}
	e = dsm__wg_wait(&wg);
	if (e && e != DSM_EPEERDEAD) {
		DSM__WARN("pages %#" PRIxPTR " + %zu stay out of use: not every node could "
			  "forget them (%s)", x->start, x->npages, dsm_strerror(e));
		return e;
	}
	return dsm__arena_reclaim(D->arena, x->start);
}

/* Free at the owner (this node). */
static int free_owned(void *p)
{
	struct dsm__arena_extent x;
	int e = dsm__arena_free(D->arena, p, &x);

	if (e)
		return e;
	STAT_INC(frees);
	return x.npages ? forget_everywhere(&x) : 0;
}

int dsm__h_free(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_free_req *rq,
		struct dsm_rpc_free_rep *rp)
{
	(void)ctx;
	rp->status = free_owned((void *)(uintptr_t)rq->addr);
	return 0;
}

DSM_EXPORT void *dsm_malloc_placed(size_t size, enum dsm_placement where)
{
	struct dsm__arena_extent x;
	void *p = NULL;
	int e;

	if (dsm__closed()) {
		last_error = DSM_ECLOSED;
		return NULL;
	}
	if ((unsigned)where > DSM_PLACE_ADAPTIVE) {
		last_error = DSM_EINVAL;
		return NULL;
	}
	e = dsm__arena_alloc(D->arena, size, (int)where, &p);
	/* full: give back the kept empty slabs, one at a time (a round trip
	 * each: every node forgets their pages first) */
	while (e == DSM_ENOMEM && dsm__arena_retire_empty(D->arena, &x) &&
	       !forget_everywhere(&x))
		e = dsm__arena_alloc(D->arena, size, (int)where, &p);
	last_error = e;
	if (e)
		return NULL;
	STAT_INC(allocs);
	return p;
}

DSM_EXPORT void *dsm_malloc(size_t size)
{
	/* objects that share pages are always local */
	return dsm_malloc_placed(size, size > DSM__ARENA_SMALL_MAX && !dsm__closed()
					       ? (enum dsm_placement)D->placement
					       : DSM_PLACE_LOCAL);
}

/* DSM_PLACEMENT: what dsm_malloc uses for allocations of whole pages. */
int dsm__placement_from_env(int *out)
{
	static const char *const names[] = { "local", "interleave", "blocked", "first-touch",
					     "adaptive" };
	const char *v = dsm__env_str("DSM_PLACEMENT");

	*out = DSM_PLACE_ADAPTIVE;
	if (!v)
		return 0;
	for (int i = 0; i < (int)DSM__ARRAY_SIZE(names); i++)
		if (!strcmp(v, names[i])) {
			*out = i;
			return 0;
		}
	DSM__ERR("DSM_PLACEMENT: '%s' is not one of local, interleave, blocked, first-touch, "
		 "adaptive", v);
	return DSM_ECONFIG;
}

DSM_EXPORT void *dsm_calloc(size_t n, size_t size)
{
	struct dsm__arena_extent x;
	void *p;

	if (size && n > SIZE_MAX / size) {
		last_error = DSM_ENOMEM;
		return NULL;
	}
	p = dsm_malloc(n * size);
	if (!p)
		return NULL;
	/* Pages of a page run come back from the arena untouched by anyone
	 * (a free makes every node forget them), so they read as zeros; an
	 * object in a slab may reuse freed bytes. */
	if (dsm__arena_extent(D->arena, p, &x) || x.small)
		memset(p, 0, n * size);
	return p;
}

DSM_EXPORT void dsm_free(void *p)
{
	int owner, e;

	if (!p) {
		last_error = 0;
		return;
	}
	if (dsm__closed()) {
		last_error = DSM_ECLOSED;
		return;
	}
	owner = in_region(p) ? dsm__arena_owner(&D->region, p) : -1;
	if (owner < 0) {
		e = DSM_EINVAL;
	} else if ((unsigned)owner == D->rank) {
		e = free_owned(p);
	} else {
		struct dsm_rpc_free_req rq = { .addr = (uintptr_t)p };
		struct dsm_rpc_free_rep rp;

		e = dsm_rpc_free(D->rpc, (unsigned)owner, &rq, &rp, -1);
		if (!e)
			e = rp.status;
	}
	last_error = e;
	if (e)
		fprintf(stderr, "libdsm[%u]: dsm_free(%p): %s\n", D->rank, p,
			e == DSM_EINVAL ? "not the start of a live allocation (double free, "
			"foreign or interior pointer); nothing freed" : dsm_strerror(e));
}


DSM_EXPORT int dsm_last_error(void)
{
	return last_error;
}
