/*
 * Faults: what happens when the program touches a page of the shared region
 * this node may not access yet. The pager (pager/pager.h) calls these
 * callbacks on its service threads:
 *  - read fault: a page homed here is made present (dsm__home_fresh, or
 *    dsm__home_present); a page homed elsewhere is fetched from its home and
 *    installed read-only, with the pages after it when this node goes
 *    through pages in order, one stream or several interleaved
 *    (fetch-ahead, up to DSM_FETCH_AHEAD pages per request, at most
 *    what the fetch reply's bound in dsm.rpc holds: dsm__fetch_max_pages,
 *    and never past the allocation the faulting page belongs to: a reply
 *    is installed by the faulting thread after the receiving thread may
 *    already have run a forget of another allocation's pages, and a copy
 *    installed after its page was forgotten would outlive the page's
 *    reuse); a stream at full window has the next window fetched ahead
 *    of its faults (ahead.c);
 *  - write fault: a page homed here becomes writable and dirty; a copy
 *    becomes writable after a twin is kept (twin.c); a page not present is
 *    fetched first, with the same fetch-ahead, its pages installed
 *    writable too (each with its twin), since a node that stores in order
 *    stores into them next.
 * A fault that cannot be served (its home is dead) ends in the fatal
 * handler (dsm_set_fault_handler), the one place the library ends a
 * process.
 *
 * Threads: pager service threads; each page's state changes under its
 * stripe; no lock is held while fetching.
 */
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "diff.h"
#include "internal.h"

#define FETCH_AHEAD_DEFAULT 32 /* DSM_FETCH_AHEAD */

static struct {
	unsigned max;             /* DSM_FETCH_AHEAD: most pages per fetch */
	_Atomic size_t next_seq;  /* the page a sequential reader touches next */
	_Atomic unsigned window;  /* pages fetched at the last fault */
} FA;

static _Thread_local int fault_peer = -1;
static dsm_fault_handler user_fault_handler;

size_t dsm__fetch_max_pages(size_t ps)
{
	/* the reply's bound in dsm.rpc; at least one page of any supported
	 * size (DSM_DIFF_MAX_PAGE) */
	_Static_assert(DSM_RPC_FETCH_DATA_MAX >= DSM_DIFF_MAX_PAGE, "a fetch holds a page");
	return DSM_RPC_FETCH_DATA_MAX / ps;
}

/* DSM_FETCH_AHEAD is read in pages of the smallest size (up to 256) and
 * bounded by what one fetch of this node's pages holds. */
int dsm__fault_init(void)
{
	long fa;
	int e = dsm__env_long("DSM_FETCH_AHEAD", FETCH_AHEAD_DEFAULT, 1,
			      (long)dsm__fetch_max_pages(DSM__ARENA_MIN_PAGE), &fa);

	if (e)
		return e;
	if ((size_t)fa > dsm__fetch_max_pages(D->ps)) {
		DSM__INFO("DSM_FETCH_AHEAD=%ld: at most %zu pages of %zu bytes per fetch", fa,
			  dsm__fetch_max_pages(D->ps), D->ps);
		fa = (long)dsm__fetch_max_pages(D->ps);
	}
	FA.max = (unsigned)fa;
	atomic_store(&FA.next_seq, 0);
	atomic_store(&FA.window, 0);
	return 0;
}

unsigned dsm__fetch_ahead_max(void)
{
	return FA.max;
}

void dsm__fault_peer_set(int peer)
{
	fault_peer = peer;
}

#define MOVED 2 /* fetch_install: the page's home moved; ask again */

/* Install the run of pages [idx + first, idx + first + n) from data (their
 * twins made, stripes held), in one call; page by page if that fails, so
 * that each page's fate is its own. On failure a page is not cached. */
static int install_run(size_t idx, size_t first, size_t n, const uint8_t *data, int a)
{
	size_t i;
	int e = dsm__pager_install_run(D->pg, page_addr(idx + first), data + first * D->ps, n, a);

	for (i = 0; e && i < n; i++) {
		struct page_meta *m = &D->meta[idx + first + i];
		int e1 = n == 1 ? e
				: dsm__pager_install(D->pg, page_addr(idx + first + i),
						     data + (first + i) * D->ps, a);

		if (!e1)
			continue;
		if (a == DSM__PAGER_RW)
			dsm__twin_cancel(idx + first + i);
		atomic_fetch_and(&m->flags, ~(uint32_t)F_CACHED);
		if (n == 1 || i == n - 1)
			return e1;
		/* the rest is not installed either */
		for (i++; i < n; i++) {
			if (a == DSM__PAGER_RW)
				dsm__twin_cancel(idx + first + i);
			atomic_fetch_and(&D->meta[idx + first + i].flags, ~(uint32_t)F_CACHED);
		}
		return e1;
	}
	return 0;
}

/* Install the fetched pages [idx + from, idx + from + n) (n <= DSM__RUN_MAX)
 * under their stripes: the first of the fetch with access, the others
 * (fetch-ahead) read-only, except that a store's fetch-ahead is written
 * next: writable (with its twin) unless its home offered it to this node,
 * so that its own write fault takes it (migrate.c). Runs of pages with the
 * same access go in with one system call. *again when the first page was
 * marked stale by an acquire meanwhile (fetch it again). 1 when a page
 * was marked stale: the pages after it are not installed either. With
 * fgen (a fetch made ahead of any fault, ahead.c), nothing is installed
 * (1) if any acquire or forget ran since the fetch was asked: the pages
 * may have been dropped meanwhile, and this copy be older. */
int dsm__fetched_install(size_t idx, size_t from, size_t n, const uint8_t *data, int access,
			 uint64_t epoch, const uint64_t *fgen, bool *again)
{
	size_t i, run = 0, rs = 0;
	int e = 0, ra = DSM__PAGER_NONE;

	dsm__run_lock(idx + from, n);
	if (fgen && (dsm__acq_epoch() != epoch || dsm__forget_gen() != *fgen)) {
		/* fetched ahead before an acquire or a forget: maybe stale */
		dsm__run_unlock(idx + from, n);
		return 1;
	}
	for (i = from; i <= from + n; i++) {
		struct page_meta *m = &D->meta[idx + i];
		bool ok = false, stop = false;
		int a = DSM__PAGER_NONE, c;

		if (i < from + n) {
			a = i && (access == DSM__PAGER_READ || (atomic_load(&m->flags) & F_OFFER))
				    ? DSM__PAGER_READ : access;
			if (atomic_load(&m->home1) == D->rank + 1) {
				/* its home moved here meanwhile (this node took
				 * it, migrate.c): the copy is older than the
				 * master this node holds now */
			} else if ((c = dsm__cached_enter(idx + i, atomic_load(&m->flags), epoch)) == 1) {
				/* an acquire ran and marked it stale meanwhile */
				*again = i == 0;
				stop = true;
			} else if (c) {
				atomic_fetch_and(&m->flags, ~(uint32_t)F_CACHED);
				e = c;
			} else if (dsm__pager_access(D->pg, page_addr(idx + i)) == DSM__PAGER_NONE) {
				/* writable: twin and dirty list first (see
				 * dsm__twin_start); a page that is not present
				 * has no twin */
				c = a == DSM__PAGER_RW ? dsm__twin_start(idx + i, data + i * D->ps) : 0;
				if (c) {
					atomic_fetch_and(&m->flags, ~(uint32_t)F_CACHED);
					e = c;
				} else {
					ok = true;
				}
			}
		}
		if (run && (!ok || a != ra)) {
			int e1 = install_run(idx, rs, run, data, ra);

			e = e ? e : e1;
			run = 0;
		}
		if (e || stop)
			break;
		if (ok && !run++) {
			rs = i;
			ra = a;
		}
	}
	dsm__run_unlock(idx + from, n);
	return e ? e : i < from + n;
}

/* Fetch count pages from idx at home h and install the first with access,
 * the others (fetch-ahead) read-only. MOVED when h is not its home any
 * more (its metadata then names the home h knows). */
static int fetch_install(size_t idx, unsigned h, size_t count, int access)
{
	struct dsm__rpc_reply keep = { 0 };
	int tries = 0;

	for (;;) {
		uint64_t epoch = dsm__acq_epoch();
		struct dsm_rpc_fetch_req rq = { .page = (uintptr_t)page_addr(idx), .count = (uint32_t)count };
		struct dsm_rpc_fetch_rep rp;
		bool again = false;
		size_t i;
		int e;

		e = dsm_rpc_fetch(D->rpc, h, &rq, &rp, &keep, -1);
		if (e) {
			fault_peer = (int)h;
			return e;
		}
		if (!rp.data.len && rp.moved) {
			dsm__rpc_reply_release(&keep);
			dsm__home_moved(idx, rp.moved);
			return MOVED;
		}
		/* fewer pages when some after the first migrated */
		if (!rp.data.len || rp.data.len > count * D->ps || rp.data.len % D->ps) {
			dsm__rpc_reply_release(&keep);
			return DSM_EPROTO;
		}
		count = rp.data.len / D->ps;
		STAT_ADD(pages_fetched, count);
		DSM__DEBUG("fetched %zu page(s) from %p (home %u)%s", count, page_addr(idx), h,
			   access == DSM__PAGER_RW ? " to write" : "");
		if (count > 1)
			STAT_ADD(prefetched, count - 1);
		for (i = 0, e = 0; i < count && !e; i += DSM__RUN_MAX)
			e = dsm__fetched_install(idx, i, DSM__MIN(count - i, (size_t)DSM__RUN_MAX),
						 rp.data.ptr, access, epoch, NULL, &again);
		if (e < 0) {
			dsm__rpc_reply_release(&keep);
			return e;
		}
		dsm__rpc_reply_release(&keep);
		if (!again)
			return 0;
		if (++tries % 64 == 0)
			DSM__DEBUG("fetch of page %p repeated %d times (acquires)", page_addr(idx), tries);
	}
}

/* How many copies of pages of home h this node holds right before page
 * idx, in idx's allocation, up to max: a stream this node goes through in
 * ascending order, whichever else it touches in between. */
static unsigned stream_behind(size_t idx, unsigned h, unsigned max)
{
	unsigned k = 0;

	while (k < max && idx > k &&
	       !(atomic_load_explicit(&D->meta[idx - k].flags, memory_order_relaxed) & F_XSTART)) {
		struct page_meta *m = &D->meta[idx - k - 1];

		if (atomic_load_explicit(&m->home1, memory_order_relaxed) != h + 1 ||
		    !(atomic_load_explicit(&m->flags, memory_order_relaxed) & F_CACHED))
			break;
		k++;
	}
	return k;
}

/* How many pages to fetch from idx (homed at h): more than one when this
 * node goes through pages in ascending order: the faults come in order
 * (the window doubles at each), or the copies right before idx are here
 * (twice as many as there are, several streams interleaved). */
static size_t fetch_ahead(size_t idx, unsigned h)
{
	size_t expect = atomic_load_explicit(&FA.next_seq, memory_order_relaxed);
	unsigned w = atomic_load_explicit(&FA.window, memory_order_relaxed);
	unsigned k = stream_behind(idx, h, FA.max);
	size_t n = 1;

	if (idx == expect && expect)
		w = w * 2 < FA.max ? (w ? w * 2 : 2) : FA.max;
	else
		w = 1;
	if (2 * k > w)
		w = 2 * k < FA.max ? 2 * k : FA.max;
	while (n < w && idx + n < D->npages) {
		struct page_meta *m = &D->meta[idx + n];

		/* same home, not here yet, same allocation: pages of another
		 * one may be being freed, and a copy that arrives after this
		 * node forgot them would outlive their reuse */
		if (atomic_load_explicit(&m->home1, memory_order_relaxed) != h + 1 ||
		    (atomic_load_explicit(&m->flags, memory_order_relaxed) & (F_CACHED | F_XSTART)))
			break;
		n++;
	}
	atomic_store_explicit(&FA.window, w, memory_order_relaxed);
	atomic_store_explicit(&FA.next_seq, idx + n, memory_order_relaxed);
	return n;
}

/* Is page idx (still) homed here? Under its stripe: a page can migrate
 * away between the lookup and the stripe. */
static bool still_home(size_t idx)
{
	return atomic_load(&D->meta[idx].home1) == D->rank + 1;
}

int dsm__cb_read_fault(void *arg, void *page)
{
	size_t idx = page_idx(page), n;
	int h, e, tries;

	(void)arg;
	STAT_INC(read_faults);
	for (tries = 0; tries < dsm__move_tries(); tries++) {
		dsm__move_backoff(tries);
		h = dsm__page_home(idx, true);
		if (h < 0)
			return h;
		if ((unsigned)h == D->rank) {
			e = dsm__home_fresh(idx);
			if (e != DSM_EAGAIN)
				return e;
			pthread_mutex_lock(stripe_of(idx));
			if (!still_home(idx)) {
				pthread_mutex_unlock(stripe_of(idx));
				continue;
			}
			e = dsm__home_present(idx, DSM__PAGER_READ);
			pthread_mutex_unlock(stripe_of(idx));
			return e == DSM_EBUSY ? 0 : e;
		}
		e = dsm__ahead_fault(idx);
		if (e)
			return e < 0 ? e : 0;
		n = fetch_ahead(idx, (unsigned)h);
		e = fetch_install(idx, (unsigned)h, n, DSM__PAGER_READ);
		/* a stream at full window: the next one goes ahead (ahead.c) */
		if (!e && n == FA.max)
			dsm__ahead_start(idx + n, (unsigned)h);
		if (e != MOVED)
			return e;
	}
	return DSM_EAGAIN;
}

int dsm__cb_write_fault(void *arg, void *page, bool present)
{
	size_t idx = page_idx(page);
	struct page_meta *m = &D->meta[idx];
	int h, e = 0, tries;

	(void)arg;
	STAT_INC(write_faults);
	for (tries = 0; tries < dsm__move_tries(); tries++) {
		dsm__move_backoff(tries);
		h = dsm__page_home(idx, true);
		if (h < 0)
			return h;
		if ((unsigned)h == D->rank) {
			if (!present) {
				e = dsm__home_fresh(idx);
				if (e != DSM_EAGAIN)
					return e;
			}
			pthread_mutex_lock(stripe_of(idx));
			if (!still_home(idx)) {
				pthread_mutex_unlock(stripe_of(idx));
				continue;
			}
			e = dsm__home_writable(idx);
			dsm__mig_home_wrote(idx);
			pthread_mutex_unlock(stripe_of(idx));
			return e;
		}
		if ((atomic_load(&m->flags) & F_OFFER) && !m->twin) {
			/* its home offered it: take it, and write it here */
			e = dsm__mig_take(idx, (unsigned)h);
			if (e <= 0)
				return e;
			continue; /* not taken: as usual */
		}
		if (!present) {
			e = fetch_install(idx, (unsigned)h, fetch_ahead(idx, (unsigned)h),
					  DSM__PAGER_RW);
			if (e == MOVED)
				continue;
			return e;
		}
		pthread_mutex_lock(stripe_of(idx));
		if (dsm__pager_access(D->pg, page) == DSM__PAGER_READ) {
			/* a twin kept by a release that could not deliver the
			 * page's diff stays the base of the next diff */
			bool fresh = !m->twin;

			e = dsm__twin_start(idx, page);
			if (!e) {
				e = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_RW);
				if (e && fresh)
					dsm__twin_cancel(idx);
			}
		}
		/* not READ any more (dropped meanwhile): the store faults again */
		pthread_mutex_unlock(stripe_of(idx));
		return e;
	}
	return DSM_EAGAIN;
}

void dsm__fatal_handler(void *addr, int err)
{
	if (user_fault_handler) {
		user_fault_handler(addr, err);
		return; /* the pager says so and ends the process */
	}
	if (fault_peer >= 0)
		fprintf(stderr, "libdsm[%u]: access to %p cannot be served: its home, node %d, "
			"is unreachable (%s); exiting with status %d\n",
			D ? D->rank : 0, addr, fault_peer, dsm_strerror(err), DSM_EXIT_FAULT);
	else
		fprintf(stderr, "libdsm[%u]: access to %p cannot be served (%s); exiting with "
			"status %d\n", D ? D->rank : 0, addr, dsm_strerror(err), DSM_EXIT_FAULT);
	fflush(stderr);
	_exit(DSM_EXIT_FAULT);
}

DSM_EXPORT int dsm_set_fault_handler(dsm_fault_handler h)
{
	user_fault_handler = h;
	return 0;
}
