/*
 * Homes, and what a home does for the others.
 *  - Every page has a home, from its allocation's placement (dsm/arena.h).
 *    A node asks the arena's owner once (home_of, answered with the whole
 *    extent) and keeps each page's home in its metadata (home1), so the
 *    lookup on the fault path is one atomic load.
 *  - The home keeps the master copy. Its own pages are made present on its
 *    first touch (zeros, writable, writes untracked while no other node
 *    reads them: dsm__home_fresh); once another node fetched a page the
 *    home tracks its own writes to it, recorded at its next release like
 *    anyone's: by a twin of the bytes it served, compared at the release
 *    (no write-protect, no TLB flush; see dsm__h_fetch), and after that
 *    release by write-protection.
 *  - The home side of the protocol: it answers fetches (recording the
 *    reader: news.c) and applies the diffs of other nodes' releases,
 *    answering once every other reader heard of the write.
 *  - A page's home can move (migrate.c): the old home then forwards the
 *    diffs it receives for it and answers fetches with where it went.
 *
 * Threads: dsm__home_of from fault callbacks and application threads; the
 * handlers inline on the thread receiving (they never wait). State changes
 * of a page happen under its stripe.
 */
#include <inttypes.h>

#include "diff.h"
#include "internal.h"

#define HOME_AROUND 64 /* fresh home pages made present per home fault */

/* Page idx is homed at h, as the arena's owner computes it. A home this
 * node knows already stays: the page may have migrated (migrate.c), and
 * what the owner computes is where it started. (A freed page's home is
 * forgotten, 0, before its memory is handed out again.) */
static void home_init(size_t idx, uint32_t h1)
{
	uint32_t zero = 0;

	atomic_compare_exchange_strong_explicit(&D->meta[idx].home1, &zero, h1,
						memory_order_acq_rel, memory_order_acquire);
}

static void set_homes(uintptr_t start, size_t npages, int place, unsigned owner, bool small)
{
	size_t first = page_idx((void *)start), i;

	if (first < D->npages)
		atomic_fetch_or(&D->meta[first].flags, F_XSTART);
	for (i = 0; i < npages && first + i < D->npages; i++) {
		int h = small ? (int)owner : dsm__home_of(place, owner, D->nodes, npages, i);

		if (h >= 0)
			home_init(first + i, (uint32_t)h + 1);
		/* (after the home: a node that finds the flag finds it) */
		if (!small && place == DSM__PLACE_ADAPTIVE)
			atomic_fetch_or(&D->meta[first + i].flags, F_MIGRATE);
	}
}

/* What the arena's owner (this node) says of addr, for node: the extent,
 * and in a first-touch run the page's home and its run (claimed for node
 * when claim and nobody touched it yet). */
static void lookup(const void *addr, unsigned node, bool claim, struct dsm_rpc_home_of_rep *rp)
{
	struct dsm__arena_extent x;
	struct dsm__arena_run run;
	int e;

	memset(rp, 0, sizeof(*rp));
	e = dsm__arena_extent(D->arena, addr, &x);
	if (!e && x.place == DSM__PLACE_FIRST_TOUCH) {
		e = dsm__arena_claim(D->arena, addr, (int)node, claim, &run);
		rp->home = (uint32_t)run.home;
		rp->run_npages = run.npages;
	}
	if (e) {
		rp->status = e;
		return;
	}
	rp->start = x.start;
	rp->npages = x.npages;
	rp->place = (uint32_t)x.place;
	rp->owner = (uint32_t)x.owner;
	rp->small = (uint32_t)x.small;
}

/* Keep what the owner said of the page at addr in the pages' metadata. */
static int learn(const void *addr, unsigned owner, const struct dsm_rpc_home_of_rep *rp)
{
	size_t first, i;

	if (rp->status)
		return rp->status < 0 && rp->status > DSM_ERRNO_MIN ? rp->status : DSM_EPROTO;
	if (rp->owner != owner || rp->start < D->base || !in_region((void *)(uintptr_t)rp->start) ||
	    rp->npages > D->npages - page_idx((void *)(uintptr_t)rp->start) ||
	    rp->place > DSM__PLACE_MAX || (uintptr_t)addr < rp->start ||
	    page_idx(addr) - page_idx((void *)(uintptr_t)rp->start) >= rp->npages)
		return DSM_EPROTO;
	if (rp->place != DSM__PLACE_FIRST_TOUCH) {
		set_homes(rp->start, rp->npages, rp->place, rp->owner, rp->small);
		DSM__DEBUG("homes of %#" PRIx64 " + %" PRIu64 " pages (placement %u) from node %u",
			   rp->start, rp->npages, rp->place, owner);
		return 0;
	}
	first = page_idx(addr);
	if (rp->home >= D->nodes || rp->run_npages < 1 ||
	    rp->run_npages > rp->npages - (first - page_idx((void *)(uintptr_t)rp->start)))
		return DSM_EPROTO;
	atomic_fetch_or(&D->meta[page_idx((void *)(uintptr_t)rp->start)].flags, F_XSTART);
	for (i = 0; i < rp->run_npages; i++)
		home_init(first + i, rp->home + 1);
	DSM__DEBUG("homes of %p + %" PRIu64 " pages: node %u (first touch)", addr, rp->run_npages,
		   rp->home);
	return 0;
}

int dsm__page_home(size_t idx, bool claim)
{
	uint32_t h1 = atomic_load_explicit(&D->meta[idx].home1, memory_order_acquire);
	void *addr = page_addr(idx);
	struct dsm_rpc_home_of_rep rp;
	int owner, e;

	if (h1)
		return (int)h1 - 1;
	owner = dsm__arena_owner(&D->region, addr);
	if (owner < 0)
		return DSM_EINVAL;
	if ((unsigned)owner == D->rank) {
		lookup(addr, D->rank, claim, &rp);
	} else {
		struct dsm_rpc_home_of_req rq = { .addr = (uintptr_t)addr, .claim = claim };

		e = dsm_rpc_home_of(D->rpc, (unsigned)owner, &rq, &rp, -1);
		if (e) {
			dsm__fault_peer_set(owner);
			return e;
		}
	}
	e = learn(addr, (unsigned)owner, &rp);
	if (e)
		return e;
	h1 = atomic_load_explicit(&D->meta[idx].home1, memory_order_acquire);
	return h1 ? (int)h1 - 1 : DSM_EPROTO;
}

int dsm__h_home_of(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_home_of_req *rq,
		   struct dsm_rpc_home_of_rep *rp)
{
	lookup((void *)(uintptr_t)rq->addr, dsm__rpc_ctx_peer(ctx), rq->claim != 0, rp);
	return 0;
}

/* Make home page idx present (under its stripe). */
int dsm__home_present(size_t idx, int access)
{
	int a = dsm__pager_access(D->pg, page_addr(idx));

	if (a < 0)
		return a;
	if (a == DSM__PAGER_NONE)
		return dsm__pager_install(D->pg, page_addr(idx), NULL, access);
	return 0;
}

/* Make home page idx writable and dirty (under its stripe): its own writes
 * from now on are recorded at the next release. On the dirty list BEFORE
 * it is writable: a release that takes the list while another thread
 * already writes the page must find it there. */
int dsm__home_writable(size_t idx)
{
	int a = dsm__pager_access(D->pg, page_addr(idx)), e = 0;

	if (a < 0)
		return a;
	dsm__dirty_mark(idx);
	if (a == DSM__PAGER_NONE)
		e = dsm__pager_install(D->pg, page_addr(idx), NULL, DSM__PAGER_RW);
	else if (a == DSM__PAGER_READ)
		e = dsm__pager_protect(D->pg, page_addr(idx), D->ps, DSM__PAGER_RW);
	/* on failure it stays on the list, dirty: the release re-protects it */
	return e;
}

int dsm__home_open(size_t idx)
{
	struct page_meta *m = &D->meta[idx];
	void *page = page_addr(idx);
	int a = dsm__pager_access(D->pg, page), e;

	if (a < 0)
		return a;
	if (a == DSM__PAGER_RW)
		return 0; /* written here since the release (dirty, with or
			   * without a twin), or untracked: no readers */
	/* the twin first, then writable: a write of this node's threads
	 * from then on shows as a difference at the release */
	e = dsm__twin_start(idx, a == DSM__PAGER_NONE ? NULL : page);
	if (e)
		return e;
	atomic_fetch_or(&m->flags, F_HTWIN);
	if (a == DSM__PAGER_NONE)
		e = dsm__pager_install(D->pg, page, NULL, DSM__PAGER_RW);
	else
		e = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_RW);
	if (e) {
		dsm__twin_cancel(idx);
		atomic_fetch_and(&m->flags, ~(uint32_t)F_HTWIN);
	}
	return e;
}

/* Is page idx homed here, as far as this node knows (stripe held)? A page
 * asked of this node that it never looked up is: the asker computed or
 * learned this node as its home. 0: yes; else the home + 1 it moved to. */
void dsm__home_learn_local(size_t idx)
{
	void *addr = page_addr(idx);

	if (!atomic_load_explicit(&D->meta[idx].home1, memory_order_acquire) &&
	    dsm__arena_owner(&D->region, addr) == (int)D->rank)
		(void)dsm__page_home(idx, false);
}

uint32_t dsm__home_here(size_t idx)
{
	struct page_meta *m = &D->meta[idx];
	uint32_t h1 = atomic_load(&m->home1);

	if (!h1)
		atomic_store(&m->home1, D->rank + 1);
	return h1 && h1 != D->rank + 1 ? h1 : 0;
}

/*
 * What a fetch reply carries is copied from the pages under their stripes
 * into a buffer of the serving thread, so that a page this node writes
 * untracked can be tracked by a twin of exactly the bytes served instead
 * of a write-protect: taking write access away costs every CPU running
 * this process a TLB-flush interrupt (48 us here against a 4 KiB copy's
 * fraction of one). Copied from the page after the stripe is dropped, a
 * reply could carry a write the twin does not, and the page written back
 * to the twin's bytes would look unchanged at the release: the reader's
 * copy would stay stale. One buffer per thread that serves (the network
 * thread, a caller receiving its own reply), freed when it ends.
 */
static pthread_key_t snap_key;

/* What a served page needs (dsm__h_fetch). */
enum { SERVE_AS_IS, SERVE_COMPARE, SERVE_TRACK };
/* Pages to start tracking in one fetch from which they are write-protected
 * together rather than twinned each */
#define SERVE_PROTECT_RUN 4
static pthread_once_t snap_once = PTHREAD_ONCE_INIT;
static bool snap_ok;

static void snap_key_init(void)
{
	snap_ok = pthread_key_create(&snap_key, free) == 0;
}

static uint8_t *snap_buf(void)
{
	uint8_t *b;

	pthread_once(&snap_once, snap_key_init);
	if (!snap_ok)
		return NULL;
	b = pthread_getspecific(snap_key);
	if (!b) {
		b = malloc(DSM_RPC_FETCH_DATA_MAX);
		if (b && pthread_setspecific(snap_key, b)) {
			free(b);
			b = NULL;
		}
	}
	return b;
}

int dsm__h_fetch(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_fetch_req *rq,
		 struct dsm_rpc_fetch_rep *rp)
{
	unsigned peer = dsm__rpc_ctx_peer(ctx);
	void *p = (void *)(uintptr_t)rq->page;
	bool sel[DSM_RPC_FETCH_DATA_MAX / DSM__ARENA_MIN_PAGE];
	uint8_t kind[DSM_RPC_FETCH_DATA_MAX / DSM__ARENA_MIN_PAGE];
	uint8_t *snap;
	size_t idx, i, n, untracked = 0, htwin = 0;
	bool protect;
	int e = 0;

	if (!in_region(p) || ((uintptr_t)p & (D->ps - 1)) || rq->count < 1 ||
	    rq->count > dsm__fetch_max_pages(D->ps))
		return DSM_EPROTO;
	idx = page_idx(p);
	if (idx + rq->count > D->npages)
		return DSM_EPROTO;
	rp->moved = 0;
	for (i = 0; i < rq->count; i++)
		dsm__home_learn_local(idx + i);
	snap = snap_buf();
	dsm__run_lock(idx, rq->count);
	/* what each page needs: nothing (tracked by write-protection, or
	 * dirty: its readers hear of it at the release), a compare with its
	 * twin, or tracking from now on (written here untracked) */
	for (n = 0; n < rq->count; n++) {
		uint32_t moved = dsm__home_here(idx + n), fl;

		if (moved) {
			/* migrated: served up to here; the asker asks there */
			if (!n)
				rp->moved = moved;
			break;
		}
		e = dsm__home_present(idx + n, DSM__PAGER_READ);
		if (e)
			break;
		fl = atomic_load(&D->meta[idx + n].flags);
		sel[n] = false;
		kind[n] = (fl & F_HTWIN) ? SERVE_COMPARE
			  : !(fl & F_DIRTY) && dsm__pager_access(D->pg, page_addr(idx + n)) ==
						       DSM__PAGER_RW ? SERVE_TRACK : SERVE_AS_IS;
		untracked += kind[n] == SERVE_TRACK;
		htwin += kind[n] == SERVE_COMPARE;
	}
	/* several pages to start tracking: one write-protect for all (a TLB
	 * flush, tens of microseconds) costs less than a twin each (a copy
	 * into memory that, on this kind of VM, costs several microseconds a
	 * page at its first touch) */
	protect = !snap || untracked >= SERVE_PROTECT_RUN;
	if (!e && snap && (htwin || (untracked && !protect))) {
		for (i = 0; i < n; i++) {
			struct page_meta *m = &D->meta[idx + i];

			memcpy(snap + i * D->ps, page_addr(idx + i), D->ps);
			if (kind[i] == SERVE_COMPARE) {
				/* compared with its twin at the release: a copy
				 * that differs from the twin carries this node's
				 * writes, which its readers must hear of even if
				 * the page is written back to the twin's bytes */
				if (memcmp(snap + i * D->ps, m->twin, D->ps))
					atomic_fetch_or(&m->flags, F_HWROTE);
			} else if (kind[i] == SERVE_TRACK && !protect) {
				/* tracked from now on by a twin of the bytes
				 * served, compared at the release, or else
				 * write-protected */
				sel[i] = dsm__twin_start(idx + i, snap + i * D->ps) != 0;
				if (!sel[i])
					atomic_fetch_or(&m->flags, F_HTWIN);
			}
		}
	} else {
		/* sent from the pages, each tracked by faults (or without a
		 * buffer: what its twin does not hold counts as written) */
		snap = NULL;
		for (i = 0; !e && i < n; i++)
			if (kind[i] == SERVE_COMPARE)
				atomic_fetch_or(&D->meta[idx + i].flags, F_HWROTE);
	}
	for (i = 0; protect && i < n; i++)
		sel[i] = kind[i] == SERVE_TRACK;
	if (!e)
		e = dsm__run_apply(idx, n, sel, DSM__PAGER_READ);
	if (!e)
		for (i = 0; i < n; i++)
			dsm__reader_add(idx + i, peer);
	dsm__run_unlock(idx, rq->count);
	if (e)
		return e;
	STAT_ADD(pages_served, n);
	/* encoded after this returns: from the copies taken under the
	 * stripes, or from the pages when none is compared or twinned (their
	 * writes from now on fault, or are dirty already: their readers hear
	 * of them at the release) */
	rp->data.ptr = snap ? snap : p;
	rp->data.len = (uint32_t)(n * D->ps);
	return 0;
}

/* First touch of home pages that have never been read elsewhere: zeros,
 * writable, writes untracked (no reader to tell; h_fetch starts tracking
 * when one comes). The faulting page and up to HOME_AROUND - 1 following
 * pages of the same home and the same allocation that are not present
 * either: a fault costs tens of microseconds here, an install a few. 0
 * when page idx is served, DSM_EAGAIN when it needs the general path. */
int dsm__home_fresh(size_t idx)
{
	size_t j;
	int e = DSM_EAGAIN;

	for (j = 0; j < HOME_AROUND && idx + j < D->npages; j++) {
		struct page_meta *m = &D->meta[idx + j];
		int e2 = DSM_EAGAIN;

		if (j && (atomic_load_explicit(&m->home1, memory_order_relaxed) != D->rank + 1 ||
			  (atomic_load_explicit(&m->flags, memory_order_relaxed) & F_XSTART)))
			break;
		pthread_mutex_lock(stripe_of(idx + j));
		/* (homed here still: it may have migrated since the fault
		 * looked) */
		if (atomic_load(&m->home1) == D->rank + 1 && !m->readers &&
		    dsm__pager_access(D->pg, page_addr(idx + j)) == DSM__PAGER_NONE)
			e2 = dsm__pager_install(D->pg, page_addr(idx + j), NULL, DSM__PAGER_RW);
		pthread_mutex_unlock(stripe_of(idx + j));
		if (!j)
			e = e2 == DSM_EBUSY ? 0 : e2;
		else if (e2)
			break;
	}
	return e;
}

/* Append the diff_item it to the forwarding buffer for node h. */
static int fwd_append(struct fwd_buf **fwd, unsigned h, const struct dsm_rpc_diff_item *it)
{
	struct fwd_buf *f;
	size_t need = dsm_rpc_diff_item_size(it);
	int n;

	if (!*fwd) {
		*fwd = calloc(D->nodes, sizeof(**fwd));
		if (!*fwd)
			return DSM_ENOMEM;
	}
	f = &(*fwd)[h];
	if (f->len + need > f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64 << 10;
		uint8_t *nd;

		while (cap < f->len + need)
			cap *= 2;
		nd = realloc(f->data, cap);
		if (!nd)
			return DSM_ENOMEM;
		f->data = nd;
		f->cap = cap;
	}
	n = dsm_rpc_diff_item_encode(it, f->data + f->len, f->cap - f->len);
	if (n < 0)
		return n;
	f->len += (size_t)n;
	STAT_INC(forwarded);
	return 0;
}

static void fwd_free(struct fwd_buf *fwd)
{
	unsigned h;

	for (h = 0; fwd && h < D->nodes; h++)
		free(fwd[h].data);
	free(fwd);
}

#define FWD_HOPS 64 /* a diff forwarded more often is refused (migrate.c) */

/* The diffs of another node's release (dsm.rpc, diffs): apply each to the
 * master copy, register the write, answer once its other readers know.
 * The page is opened with dsm__home_open: the writer's own copy stays
 * valid (this node tells it of its own writes only, at its release). The
 * diff of a page that migrated away is forwarded to its home; a page the
 * writer keeps writing alone is offered to it (migrate.c). */
int dsm__h_diffs(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_diffs_req *rq,
		 struct dsm_rpc_diffs_rep *rp)
{
	unsigned peer = dsm__rpc_ctx_peer(ctx), w = rq->writer;
	const uint8_t *p = rq->data.ptr, *end = p + rq->data.len;
	struct dsm_rpc_diff_item it;
	struct news nw = NEWS_INIT;
	struct fwd_buf *fwd = NULL;
	struct offers *of = NULL;
	int e = 0, r;

	(void)rp;
	if (w >= D->nodes || rq->hops > FWD_HOPS)
		return rq->hops > FWD_HOPS ? DSM_EAGAIN : DSM_EPROTO;
	while (!e && (r = dsm_rpc_diff_item_decode_next(&it, &p, end)) != 0) {
		void *page = (void *)(uintptr_t)it.page;
		struct page_meta *m;
		uint32_t moved;
		size_t idx;

		if (r < 0 || !in_region(page) || (it.page & (D->ps - 1))) {
			e = DSM_EPROTO;
			break;
		}
		idx = page_idx(page);
		m = &D->meta[idx];
		dsm__home_learn_local(idx);
		pthread_mutex_lock(stripe_of(idx));
		moved = dsm__home_here(idx);
		if (moved) {
			pthread_mutex_unlock(stripe_of(idx));
			/* a pointer back to the writer's node is followed too:
			 * it is taking the page and applies it once it has */
			e = fwd_append(&fwd, moved - 1, &it);
			continue;
		}
		e = dsm__home_open(idx);
		if (!e)
			e = dsm__diff_apply(page, D->ps, it.diff.ptr, it.diff.len);
		if (!e && m->twin)
			e = dsm__diff_apply(m->twin, D->ps, it.diff.ptr, it.diff.len);
		if (!e)
			e = dsm__register_write(idx, w, &nw);
		if (!e && dsm__mig_note_write(idx, w)) {
			if (!of && (of = malloc(sizeof(*of))) != NULL)
				of->n = 0;
			if (of)
				dsm__offers_add(of, idx);
		}
		pthread_mutex_unlock(stripe_of(idx));
		STAT_INC(diffs_applied);
	}
	if (e)
		DSM__WARN("diffs from node %u (writer %u): %s", peer, w, dsm_strerror(e));
	else
		DSM__DEBUG("applied %u byte(s) of diffs from node %u, news for %zu page(s)",
			   rq->data.len, peer, nw.total);
	if (of && !e)
		dsm__offers_send(of, w);
	free(of);
	r = e ? e : dsm__reply_after(ctx, &nw, REPLY_DIFFS, 0, fwd, w, rq->hops + 1);
	dsm__news_free(&nw);
	fwd_free(fwd);
	return r;
}
