/*
 * Atomics: dsm_fetch_add and dsm_cas on an aligned int64_t of shared
 * memory, executed at the home of its page with the hardware's atomics on
 * the master copy, so they are atomic with respect to each other on every
 * node. Coherent with copies: the home's write is released at once (its
 * readers hear of it before the call returns), and the caller's own clean
 * copy of the page is dropped.
 *
 * Threads: application threads; the handler runs inline (its reply is
 * deferred until the readers acknowledged the news).
 */
#include "internal.h"

enum { OP_ADD = 0, OP_CAS = 1 };

/* At the home of addr (this node): run the op on the master copy, record
 * this node as a writer of the page, collect the news for its readers.
 * *moved: 0, or (the page migrated away: nothing done) its home + 1. */
static int atomic_here(int64_t *addr, uint32_t op, int64_t a, int64_t b, int64_t *old,
		       struct news *nw, uint32_t *moved)
{
	size_t idx = page_idx(addr);
	int e;

	dsm__home_learn_local(idx);
	pthread_mutex_lock(stripe_of(idx));
	*moved = dsm__home_here(idx);
	if (*moved) {
		pthread_mutex_unlock(stripe_of(idx));
		return 0;
	}
	dsm__mig_home_wrote(idx);
	e = dsm__home_open(idx);
	if (!e) {
		void *twin = D->meta[idx].twin;

		if (op == OP_ADD) {
			*old = __atomic_fetch_add(addr, a, __ATOMIC_SEQ_CST);
		} else {
			int64_t expect = a;

			__atomic_compare_exchange_n(addr, &expect, b, false, __ATOMIC_SEQ_CST,
						    __ATOMIC_SEQ_CST);
			*old = expect;
		}
		/* told to the readers now: not again at the release */
		if (twin)
			memcpy((uint8_t *)twin + ((uintptr_t)addr & (D->ps - 1)), addr, 8);
		e = dsm__register_write(idx, D->rank, nw);
	}
	pthread_mutex_unlock(stripe_of(idx));
	return e;
}

int dsm__h_atomic(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_atomic_req *rq,
		  struct dsm_rpc_atomic_rep *rp)
{
	struct news nw = NEWS_INIT;
	int64_t *addr = (int64_t *)(uintptr_t)rq->addr;
	int e;

	if (!in_region(addr) || (rq->addr & 7) || rq->op > OP_CAS)
		return DSM_EPROTO;
	rp->old = 0;
	e = atomic_here(addr, rq->op, rq->a, rq->b, &rp->old, &nw, &rp->moved);
	if (!e && !rp->moved)
		e = dsm__reply_after_news(ctx, &nw, REPLY_ATOMIC, rp->old);
	dsm__news_free(&nw);
	return e;
}

static int do_atomic(int64_t *addr, uint32_t op, int64_t a, int64_t b, int64_t *old)
{
	size_t idx;
	int64_t o = 0;
	int h, e = DSM_EAGAIN, tries;

	if (dsm__closed())
		return DSM_ECLOSED;
	if (!addr || !in_region(addr) || ((uintptr_t)addr & 7))
		return DSM_EINVAL;
	idx = page_idx(addr);
	STAT_INC(atomics);
	for (tries = 0; tries < dsm__move_tries(); tries++) {
		uint32_t moved = 0;

		dsm__move_backoff(tries);
		h = dsm__page_home(idx, true);
		if (h < 0)
			return h == DSM_ENOENT ? DSM_EINVAL : h;
		if ((unsigned)h == D->rank) {
			struct news nw = NEWS_INIT;
			struct waitgroup wg;

			e = atomic_here(addr, op, a, b, &o, &nw, &moved);
			dsm__wg_init(&wg);
			dsm__news_send(&nw, &wg);
			if (dsm__wg_wait(&wg) == DSM_ENOMEM && !e)
				e = DSM_ENOMEM;
			dsm__news_free(&nw);
			if (moved) {
				dsm__home_moved(idx, moved);
				continue;
			}
		} else {
			struct dsm_rpc_atomic_req rq = { .addr = (uintptr_t)addr, .op = op,
							 .a = a, .b = b };
			struct dsm_rpc_atomic_rep rp;
			struct page_meta *m = &D->meta[idx];

			e = dsm_rpc_atomic(D->rpc, (unsigned)h, &rq, &rp, -1);
			if (!e && rp.moved) {
				dsm__home_moved(idx, rp.moved);
				continue;
			}
			o = rp.old;
			/* our clean copy no longer holds the word: drop it */
			if (!e) {
				pthread_mutex_lock(stripe_of(idx));
				if ((atomic_load(&m->flags) & (F_CACHED | F_DIRTY)) == F_CACHED) {
					dsm__pager_drop(D->pg, page_addr(idx), D->ps);
					atomic_fetch_and(&m->flags, ~(uint32_t)F_CACHED);
				}
				pthread_mutex_unlock(stripe_of(idx));
			}
		}
		break;
	}
	if (!e && old)
		*old = o;
	return e;
}

DSM_EXPORT int dsm_fetch_add(int64_t *addr, int64_t v, int64_t *old)
{
	return do_atomic(addr, OP_ADD, v, 0, old);
}

DSM_EXPORT int dsm_cas(int64_t *addr, int64_t expected, int64_t desired, int64_t *old)
{
	return do_atomic(addr, OP_CAS, expected, desired, old);
}

