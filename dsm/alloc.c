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

static void forget_local(uintptr_t start, size_t npages)
{
	size_t first = page_idx((void *)start), i, j, n;

	if (first >= D->npages)
		return;
	if (npages > D->npages - first)
		npages = D->npages - first;
	/* A run of pages per call, under the run's stripes (runs.c): a page
	 * at a time, a large free kept the network thread (this runs inline)
	 * busy for most of a second; without the stripes, a page could go
	 * while a release that checked it was present reads it (that read
	 * then faults, and the fault waits for the stripe the release
	 * holds). The program freed the memory: nobody else may touch it. */
	for (i = 0; i < npages; i += n) {
		n = DSM__MIN(npages - i, (size_t)DSM__RUN_MAX);
		dsm__run_lock(first + i, n);
		dsm__pager_drop(D->pg, page_addr(first + i), n * D->ps);
		for (j = i; j < i + n; j++) {
			struct page_meta *m = &D->meta[first + j];

			if (m->twin) {
				dsm__twin_put(m->twin);
				m->twin = NULL;
			}
			/* list memberships stay: the lists are walked, not
			 * searched */
			atomic_fetch_and(&m->flags, F_INLIST | F_DLIST);
			atomic_store(&m->home1, 0);
			m->readers = 0;
		}
		dsm__run_unlock(first + i, n);
	}
}

int dsm__h_forget(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_forget_req *rq,
		  struct dsm_rpc_forget_rep *rp)
{
	(void)ctx;
	(void)rp;
	if (!in_region((void *)(uintptr_t)rq->start))
		return DSM_EPROTO;
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
