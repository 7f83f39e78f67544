/*
 * Acquire: after a lock grant, a barrier or a broadcast's receipt, drop
 * the copies of pages homed elsewhere that a released write made stale
 * (marked F_OTHERS by writer news, news.c), so the next access fetches the
 * master. Copies nobody wrote since they were fetched stay.
 *
 * Every installed copy is on the cached list (put there by the fault path
 * through dsm__cached_enter). A fetch that raced with an acquire is found
 * by the acquire counter (epoch): the acquire bumps it and takes the list
 * in one step under cached_mu, and the fault path checks it and enters the
 * list in one step under cached_mu too, so either the acquire sees the new
 * copy, or the fetch is repeated.
 *
 * Threads: application threads. release_mu is held for the whole acquire
 * (no release of this node has diffs in flight, so a dropped page fetched
 * again reflects every write this node released); the stale copies are
 * sorted and dropped in runs of consecutive pages, one call per run, under
 * the run's stripes (runs.c); cached_mu (a leaf) for the list.
 */
#include <inttypes.h>

#include "internal.h"

static struct {
	pthread_mutex_t mu;   /* cached_mu: the list and the epoch's bump */
	struct vec cached;    /* copies of pages homed elsewhere */
	_Atomic uint64_t epoch;
	struct vec keep, drop; /* under release_mu */
} A;

int dsm__acquire_init(void)
{
	memset(&A, 0, sizeof(A));
	pthread_mutex_init(&A.mu, NULL);
	return 0;
}

void dsm__acquire_fini(void)
{
	vec_free(&A.cached);
	vec_free(&A.keep);
	vec_free(&A.drop);
	pthread_mutex_destroy(&A.mu);
	memset(&A, 0, sizeof(A));
}

uint64_t dsm__acq_epoch(void)
{
	return atomic_load(&A.epoch);
}

int dsm__cached_enter(size_t idx, uint32_t fl, uint64_t epoch)
{
	struct page_meta *m = &D->meta[idx];

	pthread_mutex_lock(&A.mu);
	if ((fl & F_OTHERS) && atomic_load(&A.epoch) != epoch) {
		pthread_mutex_unlock(&A.mu);
		return 1;
	}
	if (!(fl & F_INLIST)) {
		if (vec_push(&A.cached, idx)) {
			pthread_mutex_unlock(&A.mu);
			return DSM_ENOMEM;
		}
		atomic_fetch_or(&m->flags, F_INLIST);
	}
	/* CACHED before the list lock is released: an acquire taking the
	 * list now keeps the page on it (and waits for our stripe to drop
	 * it) */
	atomic_fetch_or(&m->flags, F_CACHED);
	pthread_mutex_unlock(&A.mu);
	return 0;
}

/* Drop the copies [first, first + n) that others wrote (release_mu held):
 * under their stripes, a copy written here since the last release sends
 * its diff first; then the installed ones are dropped with one call per
 * stretch (runs.c). The first error. */
static int drop_run(size_t first, size_t n)
{
	bool sel[DSM__RUN_MAX], keep[DSM__RUN_MAX];
	size_t k;
	int e = 0, e2;

	dsm__run_lock(first, n);
	for (k = 0; k < n; k++) {
		size_t idx = first + k;
		struct page_meta *m = &D->meta[idx];
		uint32_t fl = atomic_load(&m->flags);

		sel[k] = keep[k] = false;
		if ((fl & F_CACHED) && (fl & F_DIRTY) && m->twin) {
			/* Written here since the last release (another thread's
			 * critical section): its diff goes to the home now, on
			 * the channel any later fetch of the page takes too, so
			 * the home applies it before it serves the page again.
			 * If it cannot, the copy stays (dirty, stale, on the
			 * list): dropped at a later acquire. */
			e2 = dsm__release_dropped(idx);
			if (e2) {
				if (!e)
					e = e2;
				pthread_mutex_lock(&A.mu);
				if (vec_push(&A.cached, idx))
					DSM__ERR("page %p: neither released nor kept for the next "
						 "acquire: out of memory", page_addr(idx));
				pthread_mutex_unlock(&A.mu);
				keep[k] = true;
				continue;
			}
		}
		sel[k] = (fl & F_CACHED) != 0;
	}
	e2 = dsm__run_apply(first, n, sel, DSM__PAGER_NONE);
	if (e2 && !e)
		e = e2;
	for (k = 0; k < n; k++) {
		struct page_meta *m = &D->meta[first + k];

		if (keep[k])
			continue;
		if (sel[k])
			STAT_INC(invalidations);
		/* the next copy is fresh: dropped again only on news */
		atomic_fetch_and(&m->flags, ~(uint32_t)(F_CACHED | F_OTHERS | F_INLIST));
	}
	dsm__run_unlock(first, n);
	return e;
}

int dsm__acquire(void)
{
	struct vec tmp;
	size_t i, j;
	int e = 0, e2;

	pthread_mutex_lock(&D->release_mu);
	/* bump the epoch and take the list in one step (see the top) */
	pthread_mutex_lock(&A.mu);
	atomic_fetch_add(&A.epoch, 1);
	tmp = A.cached;
	A.cached = A.keep;
	A.cached.n = 0;
	for (i = 0; i < tmp.n; i++) {
		struct page_meta *m = &D->meta[tmp.v[i]];
		uint32_t fl = atomic_load(&m->flags);

		if (fl & F_OTHERS) {
			if (vec_push(&A.drop, tmp.v[i]))
				e = DSM_ENOMEM;
		} else if (!(fl & F_CACHED) || vec_push(&A.cached, tmp.v[i])) {
			/* not installed any more (forgotten): off the list */
			atomic_fetch_and(&m->flags, ~(uint32_t)F_INLIST);
		}
	}
	tmp.n = 0;
	A.keep = tmp;
	pthread_mutex_unlock(&A.mu);

	dsm__pages_sort(&A.drop);
	for (i = 0; i < A.drop.n; i = j) {
		j = dsm__run_end(&A.drop, i);
		e2 = drop_run(A.drop.v[i], j - i);
		if (e2 && !e)
			e = e2;
	}
	if (A.drop.n)
		DSM__DEBUG("acquire: dropped %zu copied page(s) others write, kept %zu",
			   A.drop.n, A.cached.n);
	A.drop.n = 0;
	e2 = dsm__release_dropped_flush();
	pthread_mutex_unlock(&D->release_mu);
	return e ? e : e2;
}
