/*
 * Home migration: a page that one node keeps writing while its home does
 * not moves its home to that node (after the home-migration protocols of
 * JIAJIA and adaptive HLRC), with no change to the program.
 *
 *  - The home counts, per page, the releases in a row whose diffs came
 *    from the same writer W with no write of its own and no other
 *    writer's in between (a streak). At MIG_STREAK it offers the page to
 *    W (offer: one message per diffs batch, not per page).
 *  - W takes an offered page at its next write fault of it (take): the
 *    home checks that it still holds the master and has not written it
 *    since (a write of its own shows against the twin dsm__home_open
 *    keeps), hands over the master and its readers, keeps its page as a
 *    stale copy (dropped at its next acquire; not dropped now: a fetch
 *    reply may be being encoded from it) and points its metadata to W. W installs the master writable, as its
 *    own page (dirty: its readers hear of W's writes at W's release).
 *  - Nothing is broadcast. Other nodes still send to the old home: it
 *    forwards a diff to the page's home (diffs: writer and hops, the
 *    answer waits for the new home's), and answers a fetch or an atomic
 *    with `moved` (the asker updates its metadata and asks there:
 *    dsm__home_moved). Pointers lead to the master: every node but the
 *    home points to a node that was the home after it did; a node never
 *    takes a pointer to itself from another (only take makes a node the
 *    home), so a request that meets a node still installing a page it
 *    took goes around again, bounded (MOVE_TRIES).
 *  - dsm_home_of follows the pointers (where) to the node that holds the
 *    master now.
 * Only pages of DSM_PLACE_ADAPTIVE allocations move (F_MIGRATE, from the
 * placement the arena's owner tells; dsm_malloc's default): the other
 * placements say where a page lives, and a program may rely on it (data
 * kept on the nodes that survive another's crash). DSM_MIGRATE=0 turns it
 * off (no offers; takes refused).
 *
 * Threads: the home side (streaks, take, where) inline on the receiving
 * thread under the page's stripe; take's asking side in the write fault
 * callback, no lock held across the call.
 */
#include <inttypes.h>
#include <time.h>

#include "diff.h"
#include "internal.h"

/* Releases in a row by one writer, with nothing written by anyone else in
 * between, before an offer. 3: where several nodes write a page in every
 * round between barriers, or take a lock in turn, one of them can be last
 * in one round and first in the next (2 in a row), never 3. */
#define MIG_STREAK 3
#define OFFER_BATCH 512 /* pages per offer message (dsm.rpc's bound) */
#define MOVE_TRIES 1000 /* redirects followed before giving up */
#define WHERE_HOPS 64   /* pointers dsm_home_of follows */

static bool migrate_on = true;

int dsm__migrate_init(void)
{
	return dsm__env_bool("DSM_MIGRATE", true, &migrate_on);
}

/* ---- the home: streaks and offers ----------------------------------------- */

bool dsm__mig_note_write(size_t idx, unsigned w)
{
	struct page_meta *m = &D->meta[idx];

	if (!migrate_on || w == D->rank || !(atomic_load(&m->flags) & F_MIGRATE))
		return false;
	if (m->mig_w1 != w + 1) {
		m->mig_w1 = (uint16_t)(w + 1 < UINT16_MAX ? w + 1 : 0);
		m->mig_n = 0;
	}
	if (m->mig_n < UINT16_MAX)
		m->mig_n++;
	return m->mig_w1 == w + 1 && m->mig_n >= MIG_STREAK;
}

void dsm__mig_home_wrote(size_t idx)
{
	D->meta[idx].mig_n = 0;
}

void dsm__offers_add(struct offers *o, size_t idx)
{
	if (o->n < OFFERS_MAX)
		o->page[o->n++] = (uintptr_t)page_addr(idx);
}

void dsm__offers_send(struct offers *o, unsigned w)
{
	struct dsm_rpc_offer_msg msg;
	size_t i;

	for (i = 0; i < o->n; i += OFFER_BATCH) {
		size_t n = o->n - i < OFFER_BATCH ? o->n - i : OFFER_BATCH;

		msg.pages_len = (uint32_t)n;
		memcpy(msg.pages, o->page + i, n * sizeof(msg.pages[0]));
		/* an offer that is lost costs nothing but the migration */
		(void)dsm_rpc_offer_send(D->rpc, w, &msg);
	}
	o->n = 0;
}

/* The offered side: remember the offer until the next write fault. */
int dsm__h_offer(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_offer_msg *m)
{
	unsigned from = dsm__rpc_ctx_peer(ctx);
	uint32_t i;

	for (i = 0; i < m->pages_len; i++) {
		void *p = (void *)(uintptr_t)m->pages[i];
		struct page_meta *pm;

		if (!in_region(p) || ((uintptr_t)p & (D->ps - 1)))
			return DSM_EPROTO;
		pm = &D->meta[page_idx(p)];
		if (atomic_load(&pm->home1) == from + 1)
			atomic_fetch_or(&pm->flags, F_OFFER);
	}
	return 0;
}

/* ---- take ----------------------------------------------------------------- */

static _Thread_local uint8_t take_buf[DSM_RPC_TAKE_DATA_MAX];

/* The home: hand page rq->page over to the asker if it still holds the
 * master and did not write it since the offer. */
int dsm__h_take(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_take_req *rq,
		struct dsm_rpc_take_rep *rp)
{
	unsigned w = dsm__rpc_ctx_peer(ctx);
	void *page = (void *)(uintptr_t)rq->page;
	struct page_meta *m;
	uint32_t h1, fl;
	size_t idx;
	int a, e = 0;

	memset(rp, 0, sizeof(*rp));
	rp->status = 1;
	if (!in_region(page) || (rq->page & (D->ps - 1)) || D->ps > sizeof(take_buf))
		return DSM_EPROTO;
	idx = page_idx(page);
	m = &D->meta[idx];
	pthread_mutex_lock(stripe_of(idx));
	h1 = atomic_load(&m->home1);
	fl = atomic_load(&m->flags);
	a = dsm__pager_access(D->pg, page);
	if (h1 != D->rank + 1) {
		rp->moved = h1;
		goto out;
	}
	if (!migrate_on || !(fl & F_MIGRATE) || a < 0 || a == DSM__PAGER_NONE ||
	    ((fl & F_DIRTY) && !m->twin))
		goto out; /* pinned, or written here since the release */
	/* from here no write of this node's threads can land unseen */
	if (a == DSM__PAGER_RW) {
		e = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_READ);
		if (e)
			goto out;
	}
	if (m->twin) {
		if ((fl & F_HWROTE) || memcmp(page, m->twin, D->ps)) {
			/* it wrote since: stays here, dirty, tracked */
			m->mig_n = 0;
			goto out;
		}
		dsm__twin_put(m->twin);
		m->twin = NULL;
		atomic_fetch_and(&m->flags, ~(uint32_t)(F_HTWIN | F_HWROTE | F_DIRTY));
	}
	/* This node keeps its copy, read-only and stale: not a reader of the
	 * new home (its writes are not told here), it is dropped at the next
	 * acquire, which is all a copy needs (a fetch being encoded from the
	 * page meanwhile stays intact). */
	memcpy(take_buf, page, D->ps);
	/* stale first, then on the cached list: an acquire walking the list
	 * from then on drops it */
	atomic_fetch_or(&m->flags, F_OTHERS);
	if (dsm__cached_enter(idx, atomic_load(&m->flags) & ~(uint32_t)F_OTHERS,
			      dsm__acq_epoch()) != 0) {
		e = dsm__pager_drop(D->pg, page, D->ps);
		atomic_fetch_and(&m->flags, ~(uint32_t)(F_OTHERS | F_CACHED));
	}
	if (e)
		goto out;
	rp->status = 0;
	rp->readers = m->readers;
	rp->data.ptr = take_buf; /* encoded after this returns, same thread */
	rp->data.len = (uint32_t)D->ps;
	m->readers = 0;
	m->mig_w1 = 0;
	m->mig_n = 0;
	atomic_fetch_and(&m->flags, ~(uint32_t)F_OFFER);
	atomic_store(&m->home1, w + 1);
	STAT_INC(migrations_out);
	DSM__DEBUG("page %p: home moves to node %u", page, w);
out:
	pthread_mutex_unlock(stripe_of(idx));
	return e;
}

/* Install the master data of page idx, just taken, as this node's own
 * page, writable (stripe held). The old home is not among its readers: it
 * keeps a copy marked stale, dropped at its next acquire. */
static int take_install(size_t idx, const uint8_t *data, uint64_t readers)
{
	struct page_meta *m = &D->meta[idx];
	void *page = page_addr(idx);
	int a = dsm__pager_access(D->pg, page), e = 0, n = 0;
	uint8_t *d = NULL;

	if (a < 0)
		return a;
	/* its own page, about to be written: on the dirty list BEFORE it is
	 * writable (a release taking the list once the faulting store went
	 * through must find it there; its readers hear of the store at it) */
	dsm__dirty_mark(idx);
	if (a == DSM__PAGER_READ && !m->twin && !memcmp(page, data, D->ps)) {
		e = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_RW);
	} else {
		if (a != DSM__PAGER_NONE && m->twin) {
			/* writes of this node not released yet: kept on top
			 * of the master */
			d = malloc(DSM_DIFF_BOUND(D->ps));
			if (!d)
				return DSM_ENOMEM;
			n = dsm__diff_encode(m->twin, page, D->ps, d, DSM_DIFF_BOUND(D->ps));
		}
		if (a != DSM__PAGER_NONE)
			e = dsm__pager_drop(D->pg, page, D->ps);
		if (!e)
			e = dsm__pager_install(D->pg, page, data, DSM__PAGER_RW);
		if (!e && n > DSM_DIFF_HDR_SIZE)
			e = dsm__diff_apply(page, D->ps, d, (size_t)n);
		free(d);
	}
	if (e)
		return e;
	if (m->twin) {
		dsm__twin_put(m->twin);
		m->twin = NULL;
	}
	m->readers = readers;
	if (D->rank < 63)
		m->readers &= ~(1ull << D->rank);
	m->mig_w1 = 0;
	m->mig_n = 0;
	atomic_fetch_and(&m->flags, ~(uint32_t)(F_CACHED | F_OTHERS | F_OFFER | F_HTWIN | F_HWROTE));
	atomic_fetch_or(&m->flags, F_MIGRATE);
	atomic_store(&m->home1, D->rank + 1);
	return 0;
}

/* A take in flight: its reply is installed by whichever thread receives
 * it, before that thread handles anything later from the old home (a
 * diff it forwards here must find the page installed, not bounce back). */
struct take_call {
	struct waitgroup wg;
	size_t idx;
	unsigned h;
	int result; /* 0 taken, 1 not taken, or an error */
};

static void take_done(void *arg, int status, const void *rep)
{
	struct take_call *tc = arg;
	const struct dsm_rpc_take_rep *rp = rep;
	int r;

	if (status) {
		r = status;
	} else if (rp->status) {
		if (rp->moved)
			dsm__home_moved(tc->idx, rp->moved);
		r = 1;
	} else if (rp->data.len != D->ps) {
		r = DSM_EPROTO;
	} else {
		pthread_mutex_lock(stripe_of(tc->idx));
		r = take_install(tc->idx, rp->data.ptr, rp->readers);
		pthread_mutex_unlock(stripe_of(tc->idx));
	}
	tc->result = r;
	dsm__wg_done(&tc->wg, 0);
}

int dsm__mig_take(size_t idx, unsigned h)
{
	struct dsm_rpc_take_req rq = { .page = (uintptr_t)page_addr(idx) };
	struct take_call tc = { .idx = idx, .h = h };
	int e;

	atomic_fetch_and(&D->meta[idx].flags, ~(uint32_t)F_OFFER);
	dsm__wg_init(&tc.wg);
	dsm__wg_add(&tc.wg);
	e = dsm_rpc_take_async(D->rpc, h, &rq, take_done, &tc);
	if (e < 0) {
		tc.result = e;
		dsm__wg_done(&tc.wg, 0);
	}
	dsm__wg_wait(&tc.wg);
	if (tc.result < 0) {
		dsm__fault_peer_set((int)h);
	} else if (!tc.result) {
		STAT_INC(migrations_in);
		DSM__DEBUG("page %p: took its home from node %u", page_addr(idx), h);
	}
	return tc.result;
}

/* ---- pointers ------------------------------------------------------------- */

void dsm__home_moved(size_t idx, uint32_t moved)
{
	/* only take makes this node a page's home: a pointer here from
	 * another node is stale (this node gave the page away, and the taker
	 * is still installing it) */
	if (moved == 0 || moved > D->nodes || moved == D->rank + 1)
		return;
	atomic_store(&D->meta[idx].home1, moved);
	STAT_INC(redirects);
}

void dsm__move_backoff(int tries)
{
	struct timespec ts = { 0, 0 };

	if (tries < 8)
		return;
	ts.tv_nsec = tries < 64 ? 20000 : 1000000;
	nanosleep(&ts, NULL);
}

int dsm__move_tries(void)
{
	return MOVE_TRIES;
}

int dsm__h_where(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_where_req *rq,
		 struct dsm_rpc_where_rep *rp)
{
	void *p = (void *)(uintptr_t)rq->page;
	uint32_t h1;

	(void)ctx;
	if (!in_region(p))
		return DSM_EPROTO;
	h1 = atomic_load(&D->meta[page_idx(p)].home1);
	rp->home = h1 ? h1 - 1 : D->rank;
	return 0;
}

DSM_EXPORT int dsm_home_of(const void *addr)
{
	size_t idx;
	int h, hops;

	if (dsm__closed())
		return DSM_ECLOSED;
	if (!addr || !in_region(addr))
		return DSM_EINVAL;
	idx = page_idx(addr);
	h = dsm__page_home(idx, false);
	for (hops = 0; h >= 0 && hops < WHERE_HOPS; hops++) {
		struct dsm_rpc_where_req rq = { .page = (uintptr_t)page_addr(idx) };
		struct dsm_rpc_where_rep rp;
		int e;

		if ((unsigned)h == D->rank)
			return h;
		e = dsm_rpc_where(D->rpc, (unsigned)h, &rq, &rp, -1);
		if (e)
			return e;
		if (rp.home >= D->nodes)
			return DSM_EPROTO;
		if (rp.home == (unsigned)h)
			return h;
		if (rp.home == D->rank) {
			/* it points here: the page is being taken here */
			dsm__move_backoff(hops + 8);
			continue;
		}
		dsm__home_moved(idx, rp.home + 1);
		h = (int)rp.home;
	}
	return h < 0 ? h : DSM_EAGAIN;
}
