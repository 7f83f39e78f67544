/*
 * The library: include/dsm.h on top of net/ (messages), pager/ (page
 * faults), dsm/arena (allocation, homes), dsm/diff (twins and diffs) and
 * dsm/bootstrap (who is who).
 *
 * Protocol (DESIGN.md section 3): home-based, multiple writers, release
 * consistency; the acquire side drops exactly the copies that a released
 * write made stale, which the homes tell the readers about (writer_news)
 * instead of lock grants and barriers carrying write notices:
 *
 *  - Every page has a home (from its allocation's placement) whose copy is
 *    the master. Other nodes learn a page's home once from the arena's
 *    owner (home_of) and keep it in the page's metadata.
 *  - Read fault on a page homed elsewhere: fetch it (fetch; with fetch-ahead
 *    when the node reads sequentially), install it read-only. The home
 *    records the node as a reader of the page.
 *  - Write fault: homed elsewhere: keep a twin (copy) and make the page
 *    writable; homed here: make it writable. Either way the page goes on
 *    the dirty list (before it becomes writable).
 *  - Release (unlock, barrier, bcast root, finalize): every dirty page is
 *    write-protected again; a page homed elsewhere is diffed against its
 *    twin (byte-exact, dsm/diff.h) and the diffs go to the homes, which
 *    apply them. For each released write the home tells every other node
 *    that ever fetched the page (writer_news) that its copy is stale, before
 *    it acknowledges the diffs. A
 *    home's own writes are released the same way (its pages are
 *    write-protected while they have readers, and simply writable while
 *    they have none). The release returns when every home has
 *    acknowledged.
 *  - Acquire (lock granted, barrier left, bcast received): drop the copies
 *    marked stale. Copies nobody wrote since they were fetched (read-only
 *    data, data written before the last barrier) stay.
 * Why this is enough: a write W by node A that must be visible to node C
 * after C's acquire happens after A's release, which returned only when
 * W's home held W and every node that ever fetched W's page had its copy
 * marked stale; C's acquire then drops it and the next access fetches the
 * master, which holds W. A node that fetched after W's release gets W. A
 * fetch that raced with an acquire is checked against the acquire counter
 * and repeated. Transitivity needs nothing more: each release makes its
 * writes safe for any later acquire.
 *
 * Threads: application threads, pager service threads (fault callbacks),
 * the network thread (inline handlers: every handler here is inline except
 * free), RPC workers (free). Locks: one of STRIPES mutexes per page
 * (state changes of one page), leaves below it: the dirty list, the cached
 * list, the twin pool; no lock is held while waiting for the network.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "bootstrap.h"
#include "common.h"
#include "diff.h"
#include "dsm.h"
#include "dsm_rpc.h"
#include "net.h"
#include "pager.h"

#define STRIPES 1024
#define MAX_ROUNDS 32         /* dissemination rounds: N <= 2^32 */
#define FETCH_AHEAD_MAX 256   /* largest DSM_FETCH_AHEAD (the fetch call's limit) */
#define DIFF_BATCH (256 << 10) /* bytes of diffs per message */
#define NEWS_BATCH 512        /* pages per writer_news message */
#define LOCK_BUCKETS 1024

/* Page flags (struct page_meta.flags). */
enum {
	F_CACHED = 1u << 0, /* a copy of a page homed elsewhere is installed */
	F_DIRTY = 1u << 1,  /* written since the last release (on the dirty list) */
	F_OTHERS = 1u << 2, /* another node writes it: drop the copy at acquire */
	F_INLIST = 1u << 3, /* on the cached list */
};

struct page_meta {
	_Atomic uint32_t flags;
	_Atomic uint32_t home1;   /* home + 1; 0: not known yet */
	/* Home side (under the page's stripe): who holds a copy that no
	 * released write has made stale yet. */
	uint64_t readers;         /* bit r: node r < 63; bit 63: some node >= 63 */
	void *twin;               /* twin of a dirty copy (non-home) */
};

/* Pages per node: growable vector. */
struct vec {
	size_t *v;
	size_t n, cap;
};

/* Pages to announce per reader. */
struct news {
	struct vec *per; /* [nodes], allocated on first use */
	unsigned nodes;
	size_t total;
};

/* Outstanding async calls of one operation. */
struct waitgroup {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pending;
	int err;
};

struct lwait {
	int granted;
};

struct lk_waiter {
	struct lk_waiter *next;
	unsigned node;
	struct dsm__rpc_token *tok; /* remote */
	struct lwait *lw;           /* local */
};

struct lk {
	struct lk *next;
	uint32_t id;
	bool held;
	bool owner_died;    /* its holder died holding it: tell the next one */
	unsigned holder;
	struct lk_waiter *head, *tail;
};

struct held_lock {
	uint32_t id;
	uint32_t count;
};

struct bcast_msg {
	struct bcast_msg *next;
	uint64_t seq;
	unsigned root;
	size_t len;
	uint8_t data[];
};

struct counters {
	_Atomic uint64_t read_faults, write_faults, pages_fetched, pages_served, prefetched;
	_Atomic uint64_t diffs_sent, diff_bytes, diffs_applied, invalidations, notices;
	_Atomic uint64_t lock_acquires, lock_waits, lock_ns, barriers, barrier_ns;
	_Atomic uint64_t atomics, allocs, frees;
};

struct dsm {
	unsigned rank, nodes;
	struct dsm__net *net;
	struct dsm__rpc *rpc;
	struct dsm__pager *pg;
	bool stats_at_exit;
	int spin_us;
	unsigned fetch_ahead;   /* DSM_FETCH_AHEAD: most pages per fetch */

	uintptr_t base;
	size_t size, ps, npages;
	unsigned pshift;
	struct page_meta *meta;
	size_t meta_bytes;
	pthread_mutex_t stripe[STRIPES];

	struct dsm__arena_region region;
	struct dsm__arena *arena;

	/* dirty pages (both kinds), pushed by faults and handlers */
	pthread_mutex_t dirty_mu;
	struct vec dirty;
	/* copies of pages homed elsewhere */
	pthread_mutex_t cached_mu;
	struct vec cached;
	_Atomic uint64_t acq_epoch;

	/* one release or acquire at a time (per node) */
	pthread_mutex_t release_mu;
	struct vec rel_pages;    /* the dirty list being released */
	uint8_t **rel_buf;       /* per home: diffs being batched */
	size_t *rel_len, *rel_cap;
	uint8_t *diff_tmp;       /* one encoded diff */
	struct vec acq_keep, acq_drop;

	/* twins */
	pthread_mutex_t twin_mu;
	void **twin_free;
	size_t ntwin_free, twin_cap;
	struct vec twin_chunks;

	/* fetch-ahead */
	_Atomic size_t next_seq;
	_Atomic unsigned seq_window;

	/* lock manager (locks whose id mod N is this node) */
	pthread_mutex_t lk_mu;
	struct lk *lk_bucket[LOCK_BUCKETS];
	/* locks this node holds */
	pthread_mutex_t held_mu;
	struct held_lock *held;
	size_t nheld, held_cap;

	/* barriers, broadcasts, peer deaths: waiters sleep on sync_cv */
	pthread_mutex_t sync_mu;
	pthread_cond_t sync_cv;
	_Atomic uint64_t bar_recv[MAX_ROUNDS];
	uint64_t bar_epoch;
	pthread_mutex_t bar_mu;
	struct bcast_msg *bcasts;
	uint64_t bcast_seq;
	_Atomic uint64_t *dead; /* bitmap: declared dead (or we were excluded) */
	_Atomic uint64_t *left; /* bitmap: left cleanly (finalized) */

	struct counters st;
};

static struct dsm *D;
static _Thread_local int last_error;
static _Thread_local int fault_peer = -1;
static dsm_fault_handler user_fault_handler;

#define STAT_ADD(f, v) atomic_fetch_add_explicit(&D->st.f, (v), memory_order_relaxed)
#define STAT_INC(f) STAT_ADD(f, 1)

/* ---- small helpers ------------------------------------------------------ */

static int vec_push(struct vec *v, size_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 1024;
		size_t *nv = realloc(v->v, cap * sizeof(*nv));

		if (!nv)
			return DSM_ENOMEM;
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = x;
	return 0;
}

static void vec_free(struct vec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

static inline size_t page_idx(const void *p)
{
	return ((uintptr_t)p - D->base) >> D->pshift;
}

static inline void *page_addr(size_t idx)
{
	return (void *)(D->base + (idx << D->pshift));
}

static inline bool in_region(const void *p)
{
	return (uintptr_t)p >= D->base && (uintptr_t)p - D->base < D->size;
}

static inline pthread_mutex_t *stripe_of(size_t idx)
{
	return &D->stripe[idx & (STRIPES - 1)];
}

static bool peer_gone(unsigned r)
{
	return (atomic_load(&D->dead[r / 64]) | atomic_load(&D->left[r / 64])) &
	       (1ull << (r % 64));
}

static bool any_dead(void)
{
	unsigned i;

	for (i = 0; i < (D->nodes + 63) / 64; i++)
		if (atomic_load(&D->dead[i]))
			return true;
	return false;
}

static void wg_init(struct waitgroup *wg)
{
	pthread_mutex_init(&wg->mu, NULL);
	pthread_cond_init(&wg->cv, NULL);
	wg->pending = 0;
	wg->err = 0;
}

static void wg_add(struct waitgroup *wg)
{
	pthread_mutex_lock(&wg->mu);
	wg->pending++;
	pthread_mutex_unlock(&wg->mu);
}

static void wg_done(struct waitgroup *wg, int status)
{
	pthread_mutex_lock(&wg->mu);
	if (status < 0 && !wg->err)
		wg->err = status;
	if (--wg->pending == 0)
		pthread_cond_broadcast(&wg->cv);
	pthread_mutex_unlock(&wg->mu);
}

static void wg_done_cb(void *arg, int status, const void *rep)
{
	(void)rep;
	wg_done(arg, status);
}

static int wg_wait(struct waitgroup *wg)
{
	int e;

	pthread_mutex_lock(&wg->mu);
	while (wg->pending > 0)
		pthread_cond_wait(&wg->cv, &wg->mu);
	e = wg->err;
	pthread_mutex_unlock(&wg->mu);
	pthread_mutex_destroy(&wg->mu);
	pthread_cond_destroy(&wg->cv);
	return e;
}

static void sync_wake(void)
{
	pthread_mutex_lock(&D->sync_mu);
	pthread_cond_broadcast(&D->sync_cv);
	pthread_mutex_unlock(&D->sync_mu);
}

/* ---- twins --------------------------------------------------------------- */

static void twin_cancel(size_t idx);

static void *twin_get(void)
{
	void *t = NULL;

	pthread_mutex_lock(&D->twin_mu);
	if (!D->ntwin_free) {
		/* a chunk of 64 at a time: the write-fault path rarely allocates */
		size_t n = 64, total = (D->twin_chunks.n + 1) * n, i;
		uint8_t *chunk = aligned_alloc(D->ps, n * D->ps);

		/* the free list has room for every twin that exists, so
		 * twin_put never needs memory */
		if (chunk && D->twin_cap < total) {
			void **nf = realloc(D->twin_free, total * sizeof(*nf));

			if (nf) {
				D->twin_free = nf;
				D->twin_cap = total;
			}
		}
		if (!chunk || D->twin_cap < total || vec_push(&D->twin_chunks, (size_t)chunk)) {
			free(chunk);
			goto out;
		}
		for (i = 0; i < n; i++)
			D->twin_free[D->ntwin_free++] = chunk + i * D->ps;
	}
	t = D->twin_free[--D->ntwin_free];
out:
	pthread_mutex_unlock(&D->twin_mu);
	return t;
}

static void twin_put(void *t)
{
	/* the free list has room for every twin ever made */
	pthread_mutex_lock(&D->twin_mu);
	D->twin_free[D->ntwin_free++] = t;
	pthread_mutex_unlock(&D->twin_mu);
}

/* ---- homes --------------------------------------------------------------- */

static void set_homes(uintptr_t start, size_t npages, int place, unsigned owner, bool small)
{
	size_t first = page_idx((void *)start), i;

	for (i = 0; i < npages && first + i < D->npages; i++) {
		int h = small ? (int)owner : dsm__home_of(place, owner, D->nodes, npages, i);

		if (h >= 0)
			atomic_store_explicit(&D->meta[first + i].home1, (uint32_t)h + 1,
					      memory_order_release);
	}
}

/* Home of page idx, asking the arena's owner the first time. */
static int home_of(size_t idx)
{
	uint32_t h1 = atomic_load_explicit(&D->meta[idx].home1, memory_order_acquire);
	void *addr = page_addr(idx);
	int owner, e;

	if (h1)
		return (int)h1 - 1;
	owner = dsm__arena_owner(&D->region, addr);
	if (owner < 0)
		return DSM_EINVAL;
	if ((unsigned)owner == D->rank) {
		struct dsm__arena_extent x;

		e = dsm__arena_extent(D->arena, addr, &x);
		if (e)
			return e;
		set_homes(x.start, x.npages, x.place, x.owner, x.small);
	} else {
		struct dsm_rpc_home_of_req rq = { .addr = (uintptr_t)addr };
		struct dsm_rpc_home_of_rep rp;

		e = dsm_rpc_home_of(D->rpc, (unsigned)owner, &rq, &rp, -1);
		if (e) {
			fault_peer = owner;
			return e;
		}
		if (rp.status)
			return rp.status < 0 && rp.status > DSM_ERRNO_MIN ? rp.status : DSM_EPROTO;
		if (rp.owner != (unsigned)owner || rp.start < D->base ||
		    rp.npages > D->npages || rp.place > DSM__PLACE_BLOCKED)
			return DSM_EPROTO;
		set_homes(rp.start, rp.npages, rp.place, rp.owner, rp.small);
		DSM__DEBUG("homes of %#" PRIx64 " + %" PRIu64 " pages (placement %u) from node %d",
			   rp.start, rp.npages, rp.place, owner);
	}
	h1 = atomic_load_explicit(&D->meta[idx].home1, memory_order_acquire);
	return h1 ? (int)h1 - 1 : DSM_EPROTO;
}

static int h_home_of(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_home_of_req *rq,
		     struct dsm_rpc_home_of_rep *rp)
{
	struct dsm__arena_extent x;
	int e;

	(void)ctx;
	memset(rp, 0, sizeof(*rp));
	e = dsm__arena_extent(D->arena, (void *)(uintptr_t)rq->addr, &x);
	if (e) {
		rp->status = e;
		return 0;
	}
	rp->start = x.start;
	rp->npages = x.npages;
	rp->place = (uint32_t)x.place;
	rp->owner = (uint32_t)x.owner;
	rp->small = (uint32_t)x.small;
	return 0;
}

/* ---- writer records (home side) ------------------------------------------ */

static bool reader_has(const struct page_meta *m, unsigned r)
{
	return r < 63 ? (m->readers >> r) & 1 : (m->readers >> 63) & 1;
}

static void reader_add(struct page_meta *m, unsigned r)
{
	m->readers |= 1ull << (r < 63 ? r : 63);
}

static int news_add(struct news *nw, unsigned r, size_t idx)
{
	if (!nw->per) {
		nw->per = calloc(nw->nodes, sizeof(*nw->per));
		if (!nw->per)
			return DSM_ENOMEM;
	}
	nw->total++;
	return vec_push(&nw->per[r], idx);
}

/* A write by node w to page idx was released (under the page's stripe):
 * every other node that holds a copy must drop it at its next acquire; they
 * go into nw. Readers stay readers until the page is freed: a node that was
 * told may not have heard yet (the news travels), and the next writer's
 * release must wait for it too, so it is told again. A page nobody writes
 * causes no news, and stays cached everywhere. */
static int register_write(size_t idx, unsigned w, struct news *nw)
{
	struct page_meta *m = &D->meta[idx];
	unsigned r;
	int e = 0;

	if (!m->readers)
		return 0;
	for (r = 0; r < D->nodes && !e; r++)
		if (r != D->rank && r != w && reader_has(m, r))
			e = news_add(nw, r, idx);
	return e;
}

static void news_free(struct news *nw)
{
	unsigned r;

	if (nw->per)
		for (r = 0; r < nw->nodes; r++)
			vec_free(&nw->per[r]);
	free(nw->per);
	nw->per = NULL;
	nw->total = 0;
}

/* Send the news; every call completes through done(arg). Returns how many
 * calls were started; a call that could not start is reported as failed
 * through done as well. */
static int news_send(struct news *nw, dsm__rpc_done_fn done, void *arg,
		     void (*before)(void *arg))
{
	unsigned r;
	size_t i, k;
	int started = 0;

	if (!nw->per)
		return 0;
	for (r = 0; r < nw->nodes; r++) {
		struct vec *v = &nw->per[r];

		/* a node that is gone reads no copy again */
		if (peer_gone(r))
			continue;
		for (i = 0; i < v->n; i += NEWS_BATCH) {
			struct dsm_rpc_writer_news_req rq;
			int e;

			rq.pages_len = (uint32_t)(v->n - i < NEWS_BATCH ? v->n - i : NEWS_BATCH);
			for (k = 0; k < rq.pages_len; k++)
				rq.pages[k] = (uintptr_t)page_addr(v->v[i + k]);
			before(arg);
			started++;
			e = dsm_rpc_writer_news_async(D->rpc, r, &rq, done, arg);
			if (e < 0)
				done(arg, e, NULL);
		}
	}
	return started;
}

static void wg_before(void *arg)
{
	wg_add(arg);
}

/* News that could not reach a node because it died or left meanwhile is no
 * error: that node reads no copy again. */
static void wg_news_done_cb(void *arg, int status, const void *rep)
{
	(void)rep;
	wg_done(arg, status == DSM_EPEERDEAD ? 0 : status);
}

static int h_writer_news(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_writer_news_req *rq,
			 struct dsm_rpc_writer_news_rep *rp)
{
	uint32_t i;

	(void)ctx;
	(void)rp;
	for (i = 0; i < rq->pages_len; i++) {
		void *p = (void *)(uintptr_t)rq->pages[i];

		if (!in_region(p))
			return DSM_EPROTO;
		atomic_fetch_or(&D->meta[page_idx(p)].flags, F_OTHERS);
	}
	STAT_ADD(notices, rq->pages_len);
	return 0;
}

/* ---- the home's pages ------------------------------------------------------ */

static int dirty_push(size_t idx)
{
	int e;

	pthread_mutex_lock(&D->dirty_mu);
	e = vec_push(&D->dirty, idx);
	pthread_mutex_unlock(&D->dirty_mu);
	return e;
}

/* A copy of a page homed elsewhere is about to become writable (under its
 * stripe): keep a twin of its contents and put it on the dirty list first,
 * so a release taking the list while another thread writes the page finds
 * it there. */
static int twin_start(size_t idx, const void *contents)
{
	struct page_meta *m = &D->meta[idx];
	void *t = twin_get();
	int e;

	if (!t)
		return DSM_ENOMEM;
	memcpy(t, contents, D->ps);
	m->twin = t;
	atomic_fetch_or(&m->flags, F_DIRTY);
	e = dirty_push(idx);
	if (e)
		twin_cancel(idx);
	return e;
}

/* Undo twin_start (the page could not be made writable). */
static void twin_cancel(size_t idx)
{
	struct page_meta *m = &D->meta[idx];

	atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
	if (m->twin)
		twin_put(m->twin);
	m->twin = NULL;
}

/* Make home page idx present (under its stripe). */
static int home_present(size_t idx, int access)
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
static int home_writable(size_t idx)
{
	struct page_meta *m = &D->meta[idx];
	int a = dsm__pager_access(D->pg, page_addr(idx)), e = 0;

	if (a < 0)
		return a;
	if (!(atomic_fetch_or(&m->flags, F_DIRTY) & F_DIRTY)) {
		e = dirty_push(idx);
		if (e) {
			atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
			return e;
		}
	}
	if (a == DSM__PAGER_NONE)
		e = dsm__pager_install(D->pg, page_addr(idx), NULL, DSM__PAGER_RW);
	else if (a == DSM__PAGER_READ)
		e = dsm__pager_protect(D->pg, page_addr(idx), D->ps, DSM__PAGER_RW);
	/* on failure it stays on the list, dirty: the release re-protects it */
	return e;
}

static int h_fetch(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_fetch_req *rq,
		   struct dsm_rpc_fetch_rep *rp)
{
	unsigned peer = dsm__rpc_ctx_peer(ctx);
	void *p = (void *)(uintptr_t)rq->page;
	size_t idx, i;
	int e = 0;

	if (!in_region(p) || ((uintptr_t)p & (D->ps - 1)) || rq->count < 1 || rq->count > 256)
		return DSM_EPROTO;
	idx = page_idx(p);
	if (idx + rq->count > D->npages || rq->count * D->ps > 1048576)
		return DSM_EPROTO;
	for (i = 0; i < rq->count && !e; i++) {
		struct page_meta *m = &D->meta[idx + i];

		pthread_mutex_lock(stripe_of(idx + i));
		e = home_present(idx + i, DSM__PAGER_READ);
		/* A home page without readers is left writable, its writes
		 * untracked; from now on they must be tracked. (If it is on
		 * the dirty list, the next release protects it.) */
		if (!e && !(atomic_load(&m->flags) & F_DIRTY) &&
		    dsm__pager_access(D->pg, page_addr(idx + i)) == DSM__PAGER_RW)
			e = dsm__pager_protect(D->pg, page_addr(idx + i), D->ps, DSM__PAGER_READ);
		reader_add(m, peer);
		pthread_mutex_unlock(stripe_of(idx + i));
	}
	if (e)
		return e;
	STAT_ADD(pages_served, rq->count);
	/* encoded straight from the pages after this returns */
	rp->data.ptr = p;
	rp->data.len = (uint32_t)(rq->count * D->ps);
	return 0;
}

/* A deferred reply waiting for writer_news acknowledgements. */
struct pending {
	_Atomic int n;
	_Atomic int err;
	struct dsm__rpc_token *tok;
	int kind; /* 0: diffs, 1: atomic */
	int64_t old;
};

static void pending_before(void *arg)
{
	struct pending *pd = arg;

	atomic_fetch_add(&pd->n, 1);
}

static void pending_put(struct pending *pd)
{
	if (atomic_fetch_sub(&pd->n, 1) != 1)
		return;
	if (pd->kind == 0) {
		struct dsm_rpc_diffs_rep rep = { 0 };

		dsm_rpc_diffs_reply(pd->tok, atomic_load(&pd->err), &rep);
	} else {
		struct dsm_rpc_atomic_rep rep = { .old = pd->old };

		dsm_rpc_atomic_reply(pd->tok, atomic_load(&pd->err), &rep);
	}
	free(pd);
}

static void pending_done(void *arg, int status, const void *rep)
{
	struct pending *pd = arg;

	(void)rep;
	/* a reader that died will not read the page again: not an error */
	if (status < 0 && status != DSM_EPEERDEAD)
		atomic_store(&pd->err, status);
	pending_put(pd);
}

/* Answer now when there is no news, else after the readers acknowledged. */
static int reply_after_news(struct dsm__rpc_ctx *ctx, struct news *nw, int kind, int64_t old)
{
	struct pending *pd;

	if (!nw->total)
		return 0;
	pd = calloc(1, sizeof(*pd));
	if (!pd)
		return DSM_ENOMEM;
	pd->tok = dsm__rpc_defer(ctx);
	if (!pd->tok) {
		free(pd);
		return DSM_ENOMEM;
	}
	pd->kind = kind;
	pd->old = old;
	atomic_store(&pd->n, 1);
	news_send(nw, pending_done, pd, pending_before);
	pending_put(pd);
	return DSM__RPC_DEFERRED;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u32(uint8_t *p, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int h_diffs(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_diffs_req *rq,
		   struct dsm_rpc_diffs_rep *rp)
{
	unsigned peer = dsm__rpc_ctx_peer(ctx);
	const uint8_t *p = rq->data.ptr, *end = p + rq->data.len;
	struct news nw = { .nodes = D->nodes };
	int e = 0, r;

	(void)rp;
	while (p < end && !e) {
		uint64_t addr;
		uint32_t len;
		size_t idx;

		if (end - p < 12) {
			e = DSM_EPROTO;
			break;
		}
		addr = get_u64(p);
		len = get_u32(p + 8);
		p += 12;
		if ((size_t)(end - p) < len || !in_region((void *)(uintptr_t)addr) ||
		    (addr & (D->ps - 1))) {
			e = DSM_EPROTO;
			break;
		}
		idx = page_idx((void *)(uintptr_t)addr);
		pthread_mutex_lock(stripe_of(idx));
		e = home_writable(idx);
		if (!e)
			e = dsm__diff_apply(page_addr(idx), D->ps, p, len);
		if (!e)
			e = register_write(idx, peer, &nw);
		pthread_mutex_unlock(stripe_of(idx));
		STAT_INC(diffs_applied);
		p += len;
	}
	if (e)
		DSM__WARN("diffs from node %u: %s", peer, dsm_strerror(e));
	else
		DSM__DEBUG("applied %u byte(s) of diffs from node %u, news for %zu page(s)",
			   rq->data.len, peer, nw.total);
	r = e ? e : reply_after_news(ctx, &nw, 0, 0);
	news_free(&nw);
	return r;
}

/* ---- faults -------------------------------------------------------------- */

/* Fetch count pages from idx at home h and install the first with access,
 * the others (fetch-ahead) read-only. */
static int fetch_install(size_t idx, unsigned h, size_t count, int access)
{
	struct dsm__rpc_reply keep = { 0 };
	int tries = 0;

	for (;;) {
		uint64_t epoch = atomic_load(&D->acq_epoch);
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
		if (rp.data.len != count * D->ps) {
			dsm__rpc_reply_release(&keep);
			return DSM_EPROTO;
		}
		STAT_ADD(pages_fetched, count);
		DSM__DEBUG("fetched %zu page(s) from %p (home %u)%s", count, page_addr(idx), h,
			   access == DSM__PAGER_RW ? " to write" : "");
		if (count > 1)
			STAT_ADD(prefetched, count - 1);
		for (i = 0; i < count; i++) {
			struct page_meta *m = &D->meta[idx + i];
			int a = i ? DSM__PAGER_READ : access;
			uint32_t fl;

			pthread_mutex_lock(stripe_of(idx + i));
			fl = atomic_load(&m->flags);
			/* Check against acquires and enter the cached list in
			 * one step (an acquire bumps the epoch and takes the
			 * list in one step too): either the acquire sees this
			 * page, or this fetch is repeated. */
			pthread_mutex_lock(&D->cached_mu);
			if ((fl & F_OTHERS) && atomic_load(&D->acq_epoch) != epoch) {
				pthread_mutex_unlock(&D->cached_mu);
				pthread_mutex_unlock(stripe_of(idx + i));
				if (i == 0)
					again = true;
				break;
			}
			if (!(fl & F_INLIST)) {
				if (vec_push(&D->cached, idx + i)) {
					pthread_mutex_unlock(&D->cached_mu);
					pthread_mutex_unlock(stripe_of(idx + i));
					dsm__rpc_reply_release(&keep);
					return DSM_ENOMEM;
				}
				atomic_fetch_or(&m->flags, F_INLIST);
			}
			/* CACHED before the list lock is released: an acquire
			 * taking the list now keeps the page on it (and waits
			 * for our stripe to drop it) */
			atomic_fetch_or(&m->flags, F_CACHED);
			pthread_mutex_unlock(&D->cached_mu);
			e = 0;
			if (dsm__pager_access(D->pg, page_addr(idx + i)) == DSM__PAGER_NONE) {
				/* writable: twin and dirty list first (see
				 * home_writable) */
				if (a == DSM__PAGER_RW)
					e = twin_start(idx, rp.data.ptr);
				if (!e) {
					e = dsm__pager_install(D->pg, page_addr(idx + i),
							       rp.data.ptr + i * D->ps, a);
					if (e && a == DSM__PAGER_RW)
						twin_cancel(idx);
				}
			}
			if (e)
				atomic_fetch_and(&m->flags, ~(uint32_t)F_CACHED);
			pthread_mutex_unlock(stripe_of(idx + i));
			if (e) {
				dsm__rpc_reply_release(&keep);
				return e;
			}
		}
		dsm__rpc_reply_release(&keep);
		if (!again)
			return 0;
		if (++tries % 64 == 0)
			DSM__DEBUG("fetch of page %p repeated %d times (acquires)", page_addr(idx), tries);
	}
}

/* How many pages to fetch from idx (homed at h): more than one when this
 * node reads pages in order. */
static size_t fetch_ahead(size_t idx, unsigned h)
{
	size_t expect = atomic_load_explicit(&D->next_seq, memory_order_relaxed);
	unsigned w = atomic_load_explicit(&D->seq_window, memory_order_relaxed);
	size_t n = 1;

	if (idx == expect && expect)
		w = w * 2 < D->fetch_ahead ? (w ? w * 2 : 2) : D->fetch_ahead;
	else
		w = 1;
	while (n < w && idx + n < D->npages) {
		struct page_meta *m = &D->meta[idx + n];

		if (atomic_load_explicit(&m->home1, memory_order_relaxed) != h + 1 ||
		    (atomic_load_explicit(&m->flags, memory_order_relaxed) & F_CACHED))
			break;
		n++;
	}
	atomic_store_explicit(&D->seq_window, w, memory_order_relaxed);
	atomic_store_explicit(&D->next_seq, idx + n, memory_order_relaxed);
	return n;
}

#define HOME_AROUND 64 /* fresh home pages made present per home fault */

/* First touch of home pages that have never been read elsewhere: zeros,
 * writable, writes untracked (no reader to tell; h_fetch starts tracking
 * when one comes). The faulting page and up to HOME_AROUND - 1 following
 * pages of the same home that are not present either: a fault costs tens
 * of microseconds here, an install a few. 0 when page idx is served,
 * DSM_EAGAIN when it needs the general path. */
static int home_fresh(size_t idx)
{
	size_t j;
	int e = DSM_EAGAIN;

	for (j = 0; j < HOME_AROUND && idx + j < D->npages; j++) {
		struct page_meta *m = &D->meta[idx + j];
		int e2 = DSM_EAGAIN;

		if (j && atomic_load_explicit(&m->home1, memory_order_relaxed) != D->rank + 1)
			break;
		pthread_mutex_lock(stripe_of(idx + j));
		if (!m->readers &&
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

static int cb_read_fault(void *arg, void *page)
{
	size_t idx = page_idx(page);
	int h, e;

	(void)arg;
	STAT_INC(read_faults);
	h = home_of(idx);
	if (h < 0)
		return h;
	if ((unsigned)h == D->rank) {
		e = home_fresh(idx);
		if (e != DSM_EAGAIN)
			return e;
		pthread_mutex_lock(stripe_of(idx));
		e = home_present(idx, DSM__PAGER_READ);
		pthread_mutex_unlock(stripe_of(idx));
		return e == DSM_EBUSY ? 0 : e;
	}
	return fetch_install(idx, (unsigned)h, fetch_ahead(idx, (unsigned)h), DSM__PAGER_READ);
}

static int cb_write_fault(void *arg, void *page, bool present)
{
	size_t idx = page_idx(page);
	int h, e = 0;

	(void)arg;
	STAT_INC(write_faults);
	h = home_of(idx);
	if (h < 0)
		return h;
	if ((unsigned)h == D->rank) {
		if (!present) {
			e = home_fresh(idx);
			if (e != DSM_EAGAIN)
				return e;
		}
		pthread_mutex_lock(stripe_of(idx));
		e = home_writable(idx);
		pthread_mutex_unlock(stripe_of(idx));
		return e;
	}
	if (!present)
		return fetch_install(idx, (unsigned)h, 1, DSM__PAGER_RW);
	pthread_mutex_lock(stripe_of(idx));
	if (dsm__pager_access(D->pg, page) == DSM__PAGER_READ) {
		e = twin_start(idx, page);
		if (!e) {
			e = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_RW);
			if (e)
				twin_cancel(idx);
		}
	}
	/* not READ any more (dropped meanwhile): the store faults again */
	pthread_mutex_unlock(stripe_of(idx));
	return e;
}

/* ---- release and acquire ----------------------------------------------- */

static int rel_append(unsigned h, size_t idx, const uint8_t *diff, size_t len)
{
	size_t need = D->rel_len[h] + 12 + len;

	if (need > D->rel_cap[h]) {
		size_t cap = D->rel_cap[h] ? D->rel_cap[h] : 16384;
		uint8_t *nb;

		while (cap < need)
			cap *= 2;
		nb = realloc(D->rel_buf[h], cap);
		if (!nb)
			return DSM_ENOMEM;
		D->rel_buf[h] = nb;
		D->rel_cap[h] = cap;
	}
	put_u64(D->rel_buf[h] + D->rel_len[h], (uintptr_t)page_addr(idx));
	put_u32(D->rel_buf[h] + D->rel_len[h] + 8, (uint32_t)len);
	memcpy(D->rel_buf[h] + D->rel_len[h] + 12, diff, len);
	D->rel_len[h] += 12 + len;
	return 0;
}

static void rel_send(unsigned h, struct waitgroup *wg)
{
	struct dsm_rpc_diffs_req rq;
	int e;

	if (!D->rel_len[h])
		return;
	rq.data.ptr = D->rel_buf[h];
	rq.data.len = (uint32_t)D->rel_len[h];
	wg_add(wg);
	e = dsm_rpc_diffs_async(D->rpc, h, &rq, wg_done_cb, wg);
	if (e < 0)
		wg_done(wg, e);
	D->rel_len[h] = 0;
}

/* Make every write of this node so far safe for any later acquire (see the
 * top of the file). */
static int release(void)
{
	struct news nw = { .nodes = D->nodes };
	struct waitgroup wg;
	struct vec tmp;
	size_t i;
	unsigned h;
	int e = 0, e2;

	pthread_mutex_lock(&D->release_mu);
	pthread_mutex_lock(&D->dirty_mu);
	tmp = D->dirty;
	D->dirty = D->rel_pages;
	D->rel_pages = tmp;
	pthread_mutex_unlock(&D->dirty_mu);
	if (!D->rel_pages.n) {
		pthread_mutex_unlock(&D->release_mu);
		return 0;
	}
	wg_init(&wg);
	for (i = 0; i < D->rel_pages.n; i++) {
		size_t idx = D->rel_pages.v[i];
		struct page_meta *m = &D->meta[idx];
		uint32_t h1;
		void *page = page_addr(idx);
		void *twin;
		int n;

		pthread_mutex_lock(stripe_of(idx));
		if (!(atomic_load(&m->flags) & F_DIRTY)) {
			pthread_mutex_unlock(stripe_of(idx));
			continue;
		}
		h1 = atomic_load(&m->home1);
		twin = m->twin;
		e2 = 0;
		if (!twin) {
			/* Our own page. With readers: track our writes again and
			 * tell the readers. Without: nothing to track, it stays
			 * writable (h_fetch protects it when a reader comes). */
			if (m->readers) {
				e2 = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_READ);
				if (!e2)
					e2 = register_write(idx, D->rank, &nw);
			}
			atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
			pthread_mutex_unlock(stripe_of(idx));
		} else {
			e2 = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_READ);
			n = dsm__diff_encode(twin, page, D->ps, D->diff_tmp, DSM_DIFF_BOUND(D->ps));
			m->twin = NULL;
			atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
			pthread_mutex_unlock(stripe_of(idx));
			twin_put(twin);
			if (n < 0) {
				e2 = n;
			} else if (n > DSM_DIFF_HDR_SIZE && h1) {
				h = h1 - 1;
				STAT_INC(diffs_sent);
				STAT_ADD(diff_bytes, (uint64_t)n);
				e2 = rel_append(h, idx, D->diff_tmp, (size_t)n);
				if (D->rel_len[h] >= DIFF_BATCH)
					rel_send(h, &wg);
			}
		}
		if (e2 && !e)
			e = e2;
	}
	DSM__DEBUG("release: %zu dirty page(s), news for %zu reader page(s)",
		   D->rel_pages.n, nw.total);
	D->rel_pages.n = 0;
	for (h = 0; h < D->nodes; h++)
		rel_send(h, &wg);
	news_send(&nw, wg_news_done_cb, &wg, wg_before);
	e2 = wg_wait(&wg);
	news_free(&nw);
	pthread_mutex_unlock(&D->release_mu);
	if (e)
		DSM__WARN("release: %s", dsm_strerror(e));
	return e ? e : e2;
}

/* Drop the copies that other nodes write. Holds release_mu, so no release
 * of this node has diffs in flight: a dropped page fetched again reflects
 * every write this node released. */
static int acquire(void)
{
	struct waitgroup wg;
	struct vec tmp;
	size_t i;
	int e = 0, e2;

	pthread_mutex_lock(&D->release_mu);
	/* bump the epoch and take the list in one step (see fetch_install) */
	pthread_mutex_lock(&D->cached_mu);
	atomic_fetch_add(&D->acq_epoch, 1);
	tmp = D->cached;
	D->cached = D->acq_keep;
	D->cached.n = 0;
	for (i = 0; i < tmp.n; i++) {
		struct page_meta *m = &D->meta[tmp.v[i]];
		uint32_t fl = atomic_load(&m->flags);

		if (fl & F_OTHERS) {
			if (vec_push(&D->acq_drop, tmp.v[i]))
				e = DSM_ENOMEM;
		} else if (!(fl & F_CACHED) || vec_push(&D->cached, tmp.v[i])) {
			/* not installed any more (forgotten): off the list */
			atomic_fetch_and(&m->flags, ~(uint32_t)F_INLIST);
		}
	}
	tmp.n = 0;
	D->acq_keep = tmp;
	pthread_mutex_unlock(&D->cached_mu);

	wg_init(&wg);
	for (i = 0; i < D->acq_drop.n; i++) {
		size_t idx = D->acq_drop.v[i];
		struct page_meta *m = &D->meta[idx];
		void *page = page_addr(idx);
		uint32_t fl;

		pthread_mutex_lock(stripe_of(idx));
		fl = atomic_load(&m->flags);
		if ((fl & F_CACHED) && (fl & F_DIRTY) && m->twin) {
			/* Written here since the last release (another thread's
			 * critical section): its diff goes to the home now, on
			 * the channel any later fetch of the page takes too, so
			 * the home applies it before it serves the page again. */
			uint32_t h1 = atomic_load(&m->home1);
			int n;

			e2 = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_READ);
			n = dsm__diff_encode(m->twin, page, D->ps, D->diff_tmp, DSM_DIFF_BOUND(D->ps));
			twin_put(m->twin);
			m->twin = NULL;
			atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
			if (n < 0) {
				e2 = n;
			} else if (n > DSM_DIFF_HDR_SIZE && h1) {
				STAT_INC(diffs_sent);
				STAT_ADD(diff_bytes, (uint64_t)n);
				e2 = rel_append(h1 - 1, idx, D->diff_tmp, (size_t)n);
				rel_send(h1 - 1, &wg);
			}
			if (e2 && !e)
				e = e2;
		}
		if (fl & F_CACHED) {
			e2 = dsm__pager_drop(D->pg, page, D->ps);
			if (e2 && !e)
				e = e2;
			STAT_INC(invalidations);
		}
		/* the next copy is fresh: dropped again only on news */
		atomic_fetch_and(&m->flags, ~(uint32_t)(F_CACHED | F_OTHERS | F_INLIST));
		pthread_mutex_unlock(stripe_of(idx));
	}
	if (D->acq_drop.n)
		DSM__DEBUG("acquire: dropped %zu copied page(s) others write, kept %zu",
			   D->acq_drop.n, D->cached.n);
	D->acq_drop.n = 0;
	e2 = wg_wait(&wg);
	pthread_mutex_unlock(&D->release_mu);
	return e ? e : e2;
}

/* ---- forget (free) ------------------------------------------------------- */

static void forget_local(uintptr_t start, size_t npages)
{
	size_t first = page_idx((void *)start), i;

	if (first >= D->npages)
		return;
	if (npages > D->npages - first)
		npages = D->npages - first;
	/* One call for the range: a page at a time, a large free kept the
	 * network thread (this runs inline) busy for most of a second. The
	 * program freed the memory: nobody may touch it meanwhile. */
	dsm__pager_drop(D->pg, (void *)start, npages * D->ps);
	for (i = 0; i < npages; i++) {
		struct page_meta *m = &D->meta[first + i];

		if (!atomic_load_explicit(&m->flags, memory_order_relaxed) && !m->twin &&
		    !atomic_load_explicit(&m->home1, memory_order_relaxed) && !m->readers)
			continue;
		pthread_mutex_lock(stripe_of(first + i));
		if (m->twin) {
			twin_put(m->twin);
			m->twin = NULL;
		}
		atomic_fetch_and(&m->flags, F_INLIST);
		atomic_store(&m->home1, 0);
		m->readers = 0;
		pthread_mutex_unlock(stripe_of(first + i));
	}
}

static int h_forget(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_forget_req *rq,
		    struct dsm_rpc_forget_rep *rp)
{
	(void)ctx;
	(void)rp;
	if (!in_region((void *)(uintptr_t)rq->start))
		return DSM_EPROTO;
	forget_local(rq->start, rq->npages);
	return 0;
}

/* Free at the owner (this node). */
static int free_owned(void *p)
{
	struct dsm__arena_extent x, y;
	struct waitgroup wg;
	unsigned r;
	int e;

	e = dsm__arena_extent(D->arena, p, &x);
	if (e)
		return DSM_EINVAL;
	e = dsm__arena_free(D->arena, p);
	if (e)
		return e;
	STAT_INC(frees);
	if (x.small && dsm__arena_extent(D->arena, (void *)x.start, &y) == 0 &&
	    y.start == x.start && y.small)
		return 0; /* the slab lives on: its pages keep their home */
	/* The pages went back to the arena: every node forgets them, so that
	 * a later allocation can home them anywhere and finds them zeroed. */
	forget_local(x.start, x.npages);
	wg_init(&wg);
	for (r = 0; r < D->nodes; r++) {
		struct dsm_rpc_forget_req rq = { .start = x.start, .npages = x.npages };

		if (r == D->rank || peer_gone(r))
			continue;
		wg_add(&wg);
		e = dsm_rpc_forget_async(D->rpc, r, &rq, wg_done_cb, &wg);
		if (e < 0)
			wg_done(&wg, e);
	}
	e = wg_wait(&wg);
	return e == DSM_EPEERDEAD ? 0 : e;
}

static int h_free(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_free_req *rq,
		  struct dsm_rpc_free_rep *rp)
{
	(void)ctx;
	rp->status = free_owned((void *)(uintptr_t)rq->addr);
	return 0;
}

/* ---- locks ----------------------------------------------------------------- */

static struct lk *lk_find(uint32_t id, bool create)
{
	struct lk **b = &D->lk_bucket[(id * 2654435761u) % LOCK_BUCKETS], *l;

	for (l = *b; l; l = l->next)
		if (l->id == id)
			return l;
	if (!create)
		return NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->id = id;
	l->next = *b;
	*b = l;
	return l;
}

/* Manager: node asks for lock id. 1: granted now; 2: granted now, but the
 * previous holder died holding it; 0: queued (w is kept); negative: error. */
static int lk_request(uint32_t id, unsigned node, struct lk_waiter *w)
{
	struct lk *l;
	int r;

	pthread_mutex_lock(&D->lk_mu);
	l = lk_find(id, true);
	if (!l) {
		r = DSM_ENOMEM;
	} else if (!l->held) {
		l->held = true;
		l->holder = node;
		r = l->owner_died ? 2 : 1;
		l->owner_died = false;
	} else {
		w->next = NULL;
		if (l->tail)
			l->tail->next = w;
		else
			l->head = w;
		l->tail = w;
		r = 0;
	}
	pthread_mutex_unlock(&D->lk_mu);
	return r;
}

/* Manager: node released lock id; grant it to the next live waiter. */
static void lk_release(uint32_t id, unsigned node)
{
	struct lk *l;
	struct lk_waiter *w = NULL;

	pthread_mutex_lock(&D->lk_mu);
	l = lk_find(id, false);
	if (!l || !l->held) {
		pthread_mutex_unlock(&D->lk_mu);
		DSM__WARN("node %u released lock %u, which is not held", node, id);
		return;
	}
	for (;;) {
		w = l->head;
		if (!w) {
			l->held = false;
			break;
		}
		l->head = w->next;
		if (!l->head)
			l->tail = NULL;
		if (w->lw || !peer_gone(w->node)) {
			l->holder = w->node;
			break;
		}
		/* its requester died: the token's reply goes nowhere */
		dsm_rpc_lock_reply(w->tok, DSM_EPEERDEAD, NULL);
		free(w);
	}
	pthread_mutex_unlock(&D->lk_mu);
	if (!w)
		return;
	if (w->lw) {
		pthread_mutex_lock(&D->sync_mu);
		w->lw->granted = 1;
		pthread_cond_broadcast(&D->sync_cv);
		pthread_mutex_unlock(&D->sync_mu);
	} else {
		struct dsm_rpc_lock_rep rep = { .waited = 1 };

		dsm_rpc_lock_reply(w->tok, 0, &rep);
		free(w);
	}
}

/* Manager: node is gone. Its queued requests are dropped; each lock it held
 * goes to the next waiter with DSM_EOWNERDEAD (the holder died inside its
 * critical section). Network thread. */
static void lk_peer_gone(unsigned node)
{
	struct lk_waiter *grants = NULL, *w;
	size_t b;

	pthread_mutex_lock(&D->lk_mu);
	for (b = 0; b < LOCK_BUCKETS; b++) {
		struct lk *l;

		for (l = D->lk_bucket[b]; l; l = l->next) {
			struct lk_waiter **pp = &l->head;

			l->tail = NULL;
			while ((w = *pp)) {
				if (!w->lw && w->node == node) {
					*pp = w->next;
					dsm_rpc_lock_reply(w->tok, DSM_EPEERDEAD, NULL);
					free(w);
					continue;
				}
				l->tail = w;
				pp = &w->next;
			}
			if (!l->held || l->holder != node)
				continue;
			w = l->head;
			if (!w) {
				l->held = false;
				l->owner_died = true;
				DSM__WARN("node %u died holding lock %u", node, l->id);
				continue;
			}
			l->head = w->next;
			if (!l->head)
				l->tail = NULL;
			l->holder = w->node;
			w->next = grants;
			grants = w;
			DSM__WARN("node %u died holding lock %u: granted to node %u", node, l->id,
				  w->node);
		}
	}
	pthread_mutex_unlock(&D->lk_mu);
	while ((w = grants)) {
		grants = w->next;
		if (w->lw) {
			pthread_mutex_lock(&D->sync_mu);
			w->lw->granted = 2;
			pthread_cond_broadcast(&D->sync_cv);
			pthread_mutex_unlock(&D->sync_mu);
		} else {
			dsm_rpc_lock_reply(w->tok, DSM_EOWNERDEAD, NULL);
			free(w);
		}
	}
}

static int h_lock(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_lock_req *rq,
		  struct dsm_rpc_lock_rep *rp)
{
	struct lk_waiter *w = calloc(1, sizeof(*w));
	int r;

	(void)rp;
	if (!w)
		return DSM_ENOMEM;
	w->node = dsm__rpc_ctx_peer(ctx);
	w->tok = dsm__rpc_defer(ctx);
	if (!w->tok) {
		free(w);
		return DSM_ENOMEM;
	}
	r = lk_request(rq->id, w->node, w);
	if (r != 0) {
		/* granted now (1, 2), or failed: answer at once */
		struct dsm_rpc_lock_rep rep = { .waited = 0 };

		dsm_rpc_lock_reply(w->tok, r < 0 ? r : r == 2 ? DSM_EOWNERDEAD : 0, &rep);
		free(w);
	}
	return DSM__RPC_DEFERRED;
}

static int h_unlock(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_unlock_msg *m)
{
	lk_release(m->id, dsm__rpc_ctx_peer(ctx));
	return 0;
}

static int held_change(uint32_t id, int delta)
{
	size_t i;
	int r = 0;

	pthread_mutex_lock(&D->held_mu);
	for (i = 0; i < D->nheld; i++)
		if (D->held[i].id == id)
			break;
	if (delta > 0) {
		if (i == D->nheld) {
			if (D->nheld == D->held_cap) {
				size_t cap = D->held_cap ? D->held_cap * 2 : 16;
				struct held_lock *nh = realloc(D->held, cap * sizeof(*nh));

				if (!nh) {
					r = DSM_ENOMEM;
					goto out;
				}
				D->held = nh;
				D->held_cap = cap;
			}
			D->held[D->nheld].id = id;
			D->held[D->nheld++].count = 0;
		}
		D->held[i].count++;
	} else {
		if (i == D->nheld) {
			r = DSM_EINVAL;
			goto out;
		}
		if (--D->held[i].count == 0)
			D->held[i] = D->held[--D->nheld];
	}
out:
	pthread_mutex_unlock(&D->held_mu);
	return r;
}

/* ---- barrier ----------------------------------------------------------------- */

static int h_barrier(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_barrier_msg *m)
{
	uint64_t got;

	if (m->round >= MAX_ROUNDS)
		return DSM_EPROTO;
	/* Highest epoch heard of in this round, not a count: a node whose
	 * barrier failed (a peer died) skips its later rounds, and a count
	 * would stay one short for good (a later barrier would then wait
	 * forever). Only node rank - 2^round sends this round, in order. */
	got = atomic_load(&D->bar_recv[m->round]);
	while (got < m->epoch + 1 &&
	       !atomic_compare_exchange_weak(&D->bar_recv[m->round], &got, m->epoch + 1))
		;
	(void)ctx;
	sync_wake();
	return 0;
}

/* How a wait treats nodes that are gone. */
enum {
	WAIT_FROM, /* only `from` matters (bcast root) */
	WAIT_ALL,  /* every node takes part (barrier): any node dead is an error
		    * (who waits for it never sends on); a node that left sent
		    * everything first */
	WAIT_FIN,  /* finalize: a node that is gone has arrived */
};

/* Wait until cond(arg) holds (cond runs with sync_mu held), or fail with
 * DSM_EPEERDEAD as mode says. Spins DSM_SPIN_US first: a wake-up across
 * CPUs costs tens of microseconds here. */
static int wait_for(bool (*cond)(void *), void *arg, unsigned from, int mode)
{
	int64_t spin_end = dsm__now_ns() + (int64_t)D->spin_us * 1000;
	bool ok;

	do {
		pthread_mutex_lock(&D->sync_mu);
		ok = cond(arg);
		pthread_mutex_unlock(&D->sync_mu);
		if (ok)
			return 0;
		sched_yield(); /* see net/rpc.c */
	} while (dsm__now_ns() < spin_end);
	pthread_mutex_lock(&D->sync_mu);
	while (!cond(arg)) {
		struct timespec ts;

		if (peer_gone(from) || (mode == WAIT_ALL && any_dead())) {
			ok = cond(arg) || (mode == WAIT_FIN && peer_gone(from));
			pthread_mutex_unlock(&D->sync_mu);
			return ok ? 0 : DSM_EPEERDEAD;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&D->sync_cv, &D->sync_mu, &ts);
	}
	pthread_mutex_unlock(&D->sync_mu);
	return 0;
}

struct bar_wait {
	unsigned round;
	uint64_t epoch;
};

static bool bar_arrived(void *arg)
{
	struct bar_wait *bw = arg;

	return atomic_load(&D->bar_recv[bw->round]) > bw->epoch;
}

/* Dissemination barrier: in round k, tell node rank + 2^k, wait for node
 * rank - 2^k; after ceil(log2 N) rounds everyone has heard from everyone. */
static int barrier_rounds(bool finalizing)
{
	uint64_t epoch = D->bar_epoch++;
	unsigned k, dist;
	int e = 0;

	for (k = 0, dist = 1; dist < D->nodes; k++, dist <<= 1) {
		unsigned to = (D->rank + dist) % D->nodes;
		unsigned from = (D->rank + D->nodes - dist) % D->nodes;
		struct dsm_rpc_barrier_msg m = { .epoch = epoch, .round = k };
		struct bar_wait bw = { .round = k, .epoch = epoch };

		if (!peer_gone(to)) {
			e = dsm_rpc_barrier_send(D->rpc, to, &m);
			if (e && !(finalizing && e == DSM_EPEERDEAD))
				return e;
		}
		e = wait_for(bar_arrived, &bw, from, finalizing ? WAIT_FIN : WAIT_ALL);
		if (e)
			return e;
	}
	return 0;
}

/* ---- broadcast -------------------------------------------------------------- */

static int h_bcast(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_bcast_req *rq,
		   struct dsm_rpc_bcast_rep *rp)
{
	struct bcast_msg *b = malloc(sizeof(*b) + rq->data.len), **pp;

	(void)rp;
	if (!b)
		return DSM_ENOMEM;
	b->seq = rq->seq;
	b->root = dsm__rpc_ctx_peer(ctx);
	b->len = rq->data.len;
	memcpy(b->data, rq->data.ptr, rq->data.len);
	pthread_mutex_lock(&D->sync_mu);
	for (pp = &D->bcasts; *pp; pp = &(*pp)->next)
		;
	b->next = NULL;
	*pp = b;
	pthread_cond_broadcast(&D->sync_cv);
	pthread_mutex_unlock(&D->sync_mu);
	return 0;
}

struct bc_wait {
	uint64_t seq;
	struct bcast_msg *got;
};

/* Called with sync_mu held (wait_for). */
static bool bc_arrived(void *arg)
{
	struct bc_wait *bw = arg;
	struct bcast_msg **pp;

	for (pp = &D->bcasts; *pp; pp = &(*pp)->next)
		if ((*pp)->seq == bw->seq) {
			bw->got = *pp;
			*pp = (*pp)->next;
			return true;
		}
	return false;
}

/* ---- atomics ---------------------------------------------------------------- */

enum { OP_ADD = 0, OP_CAS = 1 };

/* At the home of addr (this node): run the op on the master copy, record
 * this node as a writer of the page, collect the news for its readers. */
static int atomic_here(int64_t *addr, uint32_t op, int64_t a, int64_t b, int64_t *old,
		       struct news *nw)
{
	size_t idx = page_idx(addr);
	int e;

	pthread_mutex_lock(stripe_of(idx));
	e = home_writable(idx);
	if (!e) {
		if (op == OP_ADD) {
			*old = __atomic_fetch_add(addr, a, __ATOMIC_SEQ_CST);
		} else {
			int64_t expect = a;

			__atomic_compare_exchange_n(addr, &expect, b, false, __ATOMIC_SEQ_CST,
						    __ATOMIC_SEQ_CST);
			*old = expect;
		}
		e = register_write(idx, D->rank, nw);
	}
	pthread_mutex_unlock(stripe_of(idx));
	return e;
}

static int h_atomic(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_atomic_req *rq,
		    struct dsm_rpc_atomic_rep *rp)
{
	struct news nw = { .nodes = D->nodes };
	int64_t *addr = (int64_t *)(uintptr_t)rq->addr;
	int e;

	if (!in_region(addr) || (rq->addr & 7) || rq->op > OP_CAS)
		return DSM_EPROTO;
	e = atomic_here(addr, rq->op, rq->a, rq->b, &rp->old, &nw);
	if (!e)
		e = reply_after_news(ctx, &nw, 1, rp->old);
	news_free(&nw);
	return e;
}

static int do_atomic(int64_t *addr, uint32_t op, int64_t a, int64_t b, int64_t *old)
{
	size_t idx;
	int64_t o = 0;
	int h, e;

	if (!D)
		return DSM_ECLOSED;
	if (!addr || !in_region(addr) || ((uintptr_t)addr & 7))
		return DSM_EINVAL;
	idx = page_idx(addr);
	h = home_of(idx);
	if (h < 0)
		return h == DSM_ENOENT ? DSM_EINVAL : h;
	STAT_INC(atomics);
	if ((unsigned)h == D->rank) {
		struct news nw = { .nodes = D->nodes };
		struct waitgroup wg;

		e = atomic_here(addr, op, a, b, &o, &nw);
		wg_init(&wg);
		news_send(&nw, wg_news_done_cb, &wg, wg_before);
		if (wg_wait(&wg) == DSM_ENOMEM && !e)
			e = DSM_ENOMEM;
		news_free(&nw);
	} else {
		struct dsm_rpc_atomic_req rq = { .addr = (uintptr_t)addr, .op = op, .a = a, .b = b };
		struct dsm_rpc_atomic_rep rp;
		struct page_meta *m = &D->meta[idx];

		e = dsm_rpc_atomic(D->rpc, (unsigned)h, &rq, &rp, -1);
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

/* ---- peers ---------------------------------------------------------------- */

static void mark_gone(_Atomic uint64_t *set, unsigned r)
{
	atomic_fetch_or(&set[r / 64], 1ull << (r % 64));
}

static void on_peer_event(void *arg, unsigned peer, int event)
{
	struct dsm *d = arg;
	unsigned r;

	if (event != DSM__PEER_DEAD && event != DSM__PEER_LEFT && event != DSM__PEER_EXCLUDED)
		return;
	if (event == DSM__PEER_EXCLUDED) {
		/* we were declared dead: every peer is gone for us */
		for (r = 0; r < d->nodes; r++)
			if (r != d->rank)
				mark_gone(d->dead, r);
	} else {
		mark_gone(event == DSM__PEER_LEFT ? d->left : d->dead, peer);
		if (D == d)
			lk_peer_gone(peer);
	}
	DSM__DEBUG("node %u %s", peer, event == DSM__PEER_LEFT ? "left" :
		   event == DSM__PEER_DEAD ? "is dead" : "excluded us");
	pthread_mutex_lock(&d->sync_mu);
	pthread_cond_broadcast(&d->sync_cv);
	pthread_mutex_unlock(&d->sync_mu);
}

/* ---- fault handler --------------------------------------------------------- */

static void fatal_handler(void *addr, int err)
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

/* ---- public: life cycle -------------------------------------------------- */

static int register_handlers(struct dsm__rpc *r)
{
	int e = dsm__rpc_add_procs(r, dsm_rpc_dsm_procs, DSM_RPC_DSM_NPROCS);

	if (!e)
		e = dsm_rpc_home_of_serve(r, h_home_of, NULL);
	if (!e)
		e = dsm_rpc_fetch_serve(r, h_fetch, NULL);
	if (!e)
		e = dsm_rpc_diffs_serve(r, h_diffs, NULL);
	if (!e)
		e = dsm_rpc_writer_news_serve(r, h_writer_news, NULL);
	if (!e)
		e = dsm_rpc_lock_serve(r, h_lock, NULL);
	if (!e)
		e = dsm_rpc_unlock_serve(r, h_unlock, NULL);
	if (!e)
		e = dsm_rpc_barrier_serve(r, h_barrier, NULL);
	if (!e)
		e = dsm_rpc_bcast_serve(r, h_bcast, NULL);
	if (!e)
		e = dsm_rpc_atomic_serve(r, h_atomic, NULL);
	if (!e)
		e = dsm_rpc_free_serve(r, h_free, NULL);
	if (!e)
		e = dsm_rpc_forget_serve(r, h_forget, NULL);
	return e;
}

static void teardown(struct dsm *d)
{
	struct bcast_msg *b;
	unsigned h;
	size_t i;

	if (d->pg)
		dsm__pager_stop(d->pg);
	dsm__net_destroy(d->net);
	dsm__pager_destroy(d->pg);
	dsm__arena_destroy(d->arena);
	if (d->meta)
		munmap(d->meta, d->meta_bytes);
	for (i = 0; i < LOCK_BUCKETS; i++) {
		struct lk *l = d->lk_bucket[i];

		while (l) {
			struct lk *n = l->next;
			struct lk_waiter *w = l->head;

			while (w) {
				struct lk_waiter *wn = w->next;

				if (!w->lw)
					free(w);
				w = wn;
			}
			free(l);
			l = n;
		}
	}
	while ((b = d->bcasts)) {
		d->bcasts = b->next;
		free(b);
	}
	if (d->rel_buf)
		for (h = 0; h < d->nodes; h++)
			free(d->rel_buf[h]);
	free(d->rel_buf);
	free(d->rel_len);
	free(d->rel_cap);
	free(d->diff_tmp);
	vec_free(&d->dirty);
	vec_free(&d->cached);
	vec_free(&d->rel_pages);
	vec_free(&d->acq_keep);
	vec_free(&d->acq_drop);
	for (i = 0; i < d->twin_chunks.n; i++)
		free((void *)d->twin_chunks.v[i]);
	vec_free(&d->twin_chunks);
	free(d->twin_free);
	free(d->held);
	free((void *)d->dead);
	free((void *)d->left);
	free(d);
}

DSM_EXPORT int dsm_init(const struct dsm_config *cfg)
{
	struct dsm__net_cfg ncfg;
	struct dsm__pager_cfg pcfg;
	struct dsm__net_cbs cbs = { .peer_event = on_peer_event };
	struct dsm *d;
	unsigned i;
	int e;

	if (D)
		return DSM_EBUSY;
	d = calloc(1, sizeof(*d));
	if (!d)
		return DSM_ENOMEM;
	e = dsm__bootstrap(&ncfg);
	if (e) {
		free(d);
		return e;
	}
	if (cfg && cfg->peer_timeout_ms > 0)
		ncfg.peer_timeout_ms = cfg->peer_timeout_ms;
	if (cfg && cfg->stats)
		ncfg.stats = true;
	d->rank = ncfg.rank;
	d->nodes = ncfg.nodes;
	d->stats_at_exit = ncfg.stats;
	d->spin_us = ncfg.spin_us;
	dsm__log_set_rank((int)d->rank);
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_init(&d->stripe[i], NULL);
	pthread_mutex_init(&d->dirty_mu, NULL);
	pthread_mutex_init(&d->cached_mu, NULL);
	pthread_mutex_init(&d->release_mu, NULL);
	pthread_mutex_init(&d->twin_mu, NULL);
	pthread_mutex_init(&d->lk_mu, NULL);
	pthread_mutex_init(&d->held_mu, NULL);
	pthread_mutex_init(&d->sync_mu, NULL);
	pthread_mutex_init(&d->bar_mu, NULL);
	pthread_cond_init(&d->sync_cv, NULL);
	{
		long fa;

		e = dsm__env_long("DSM_FETCH_AHEAD", 32, 1, FETCH_AHEAD_MAX, &fa);
		if (e)
			goto fail;
		d->fetch_ahead = (unsigned)fa;
	}
	d->dead = calloc((d->nodes + 63) / 64, sizeof(*d->dead));
	d->left = calloc((d->nodes + 63) / 64, sizeof(*d->left));
	d->rel_buf = calloc(d->nodes, sizeof(*d->rel_buf));
	d->rel_len = calloc(d->nodes, sizeof(*d->rel_len));
	d->rel_cap = calloc(d->nodes, sizeof(*d->rel_cap));
	if (!d->dead || !d->left || !d->rel_buf || !d->rel_len || !d->rel_cap) {
		e = DSM_ENOMEM;
		goto fail;
	}

	e = dsm__pager_cfg_from_env(&pcfg);
	if (e)
		goto fail;
	if (cfg && cfg->heap_size)
		pcfg.size = cfg->heap_size;
	if (cfg && cfg->pager)
		pcfg.backend = cfg->pager;
	pcfg.read_fault = cb_read_fault;
	pcfg.write_fault = cb_write_fault;
	pcfg.arg = d;
	e = dsm__pager_create(&pcfg, &d->pg);
	if (e)
		goto fail;
	d->base = (uintptr_t)dsm__pager_base(d->pg);
	d->size = dsm__pager_size(d->pg);
	d->ps = dsm__pager_page_size(d->pg);
	d->pshift = (unsigned)__builtin_ctzl(d->ps);
	d->npages = d->size >> d->pshift;
	if (d->ps > DSM_DIFF_MAX_PAGE) {
		DSM__ERR("page size %zu is larger than the diff format allows", d->ps);
		e = DSM_ENOTSUP;
		goto fail;
	}
	d->diff_tmp = malloc(DSM_DIFF_BOUND(d->ps));
	if (!d->diff_tmp) {
		e = DSM_ENOMEM;
		goto fail;
	}
	e = dsm__arena_region_init(&d->region, d->base, d->size, d->ps, (int)d->nodes);
	if (e) {
		DSM__ERR("DSM_HEAP_SIZE of %zu bytes is too small for %u nodes", d->size, d->nodes);
		e = DSM_ECONFIG;
		goto fail;
	}
	e = dsm__arena_create(&d->region, (int)d->rank, &d->arena);
	if (e)
		goto fail;
	d->meta_bytes = d->npages * sizeof(struct page_meta);
	d->meta = mmap(NULL, d->meta_bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (d->meta == MAP_FAILED) {
		d->meta = NULL;
		e = DSM_ENOMEM;
		goto fail;
	}
	D = d; /* handlers and callbacks use D from here on */
	cbs.arg = d;
	e = dsm__net_create(&ncfg, &cbs, &d->net);
	if (e)
		goto fail;
	d->rpc = dsm__net_rpc(d->net);
	e = register_handlers(d->rpc);
	if (e)
		goto fail;
	dsm__pager_set_fatal_handler(fatal_handler);
	e = dsm__pager_start(d->pg);
	if (e)
		goto fail;
	e = dsm__net_start(d->net);
	if (e)
		goto fail;
	dsm__net_cfg_fini(&ncfg);
	DSM__DEBUG("node %u of %u: region %p + %zu, pager %s, page %zu", d->rank, d->nodes,
		   (void *)d->base, d->size, dsm__pager_backend(d->pg), d->ps);
	return 0;
fail:
	if (d->pg)
		dsm__pager_stop(d->pg);
	dsm__net_destroy(d->net);
	d->net = NULL;
	D = NULL;
	dsm__net_cfg_fini(&ncfg);
	teardown(d);
	return e;
}

static void print_stats(void)
{
	struct dsm_stats s;

	dsm_stats(&s);
	fprintf(stderr,
		"libdsm[%u] dsm: read_faults=%" PRIu64 " write_faults=%" PRIu64
		" pages_fetched=%" PRIu64 " prefetched=%" PRIu64 " pages_served=%" PRIu64
		" diffs_sent=%" PRIu64 " diff_bytes=%" PRIu64 " diffs_applied=%" PRIu64
		" invalidations=%" PRIu64 " notices=%" PRIu64 " lock_acquires=%" PRIu64
		" lock_waits=%" PRIu64 " lock_ms=%.3f barriers=%" PRIu64 " barrier_ms=%.3f"
		" atomics=%" PRIu64 " allocs=%" PRIu64 " frees=%" PRIu64 "\n",
		D->rank, s.read_faults, s.write_faults, s.pages_fetched, s.prefetched,
		s.pages_served, s.diffs_sent, s.diff_bytes, s.diffs_applied, s.invalidations,
		s.notices, s.lock_acquires, s.lock_waits, s.lock_ns / 1e6, s.barriers,
		s.barrier_ns / 1e6, s.atomics, s.allocs, s.frees);
}

DSM_EXPORT int dsm_finalize(void)
{
	struct dsm *d = D;
	int e, e2;

	if (!d)
		return DSM_ECLOSED;
	e = release();
	pthread_mutex_lock(&d->bar_mu);
	e2 = barrier_rounds(true);
	pthread_mutex_unlock(&d->bar_mu);
	if (!e)
		e = e2;
	if (!e && any_dead())
		e = DSM_EPEERDEAD;
	if (d->stats_at_exit)
		print_stats();
	/* no more faults are served: nothing of the region is touched now;
	 * no handler runs once the net layer is gone */
	dsm__net_destroy(d->net);
	d->net = NULL;
	dsm__pager_stop(d->pg);
	dsm__pager_set_fatal_handler(NULL);
	D = NULL;
	teardown(d);
	return e;
}

DSM_EXPORT int dsm_rank(void)
{
	return D ? (int)D->rank : -1;
}

DSM_EXPORT int dsm_nodes(void)
{
	return D ? (int)D->nodes : 0;
}

DSM_EXPORT int dsm_last_error(void)
{
	return last_error;
}

/* ---- public: allocation --------------------------------------------------- */

DSM_EXPORT void *dsm_malloc_placed(size_t size, enum dsm_placement where)
{
	void *p = NULL;
	int e;

	if (!D) {
		last_error = DSM_ECLOSED;
		return NULL;
	}
	if ((unsigned)where > DSM_PLACE_BLOCKED) {
		last_error = DSM_EINVAL;
		return NULL;
	}
	e = dsm__arena_alloc(D->arena, size, (int)where, &p);
	last_error = e;
	if (e)
		return NULL;
	STAT_INC(allocs);
	return p;
}

DSM_EXPORT void *dsm_malloc(size_t size)
{
	return dsm_malloc_placed(size, DSM_PLACE_LOCAL);
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
	if (!D) {
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

/* ---- public: synchronisation ------------------------------------------------ */

DSM_EXPORT int dsm_barrier(void)
{
	int64_t t0;
	int e, e2;

	if (!D)
		return DSM_ECLOSED;
	t0 = dsm__now_ns();
	e = release();
	pthread_mutex_lock(&D->bar_mu);
	e2 = barrier_rounds(false);
	pthread_mutex_unlock(&D->bar_mu);
	/* A node that died cannot have taken part (whatever messages made it
	 * this far): the barrier failed, and says so every time. */
	if (!e2 && any_dead())
		e2 = DSM_EPEERDEAD;
	if (!e)
		e = e2;
	if (!e2)
		e2 = acquire();
	if (!e)
		e = e2;
	STAT_INC(barriers);
	STAT_ADD(barrier_ns, (uint64_t)(dsm__now_ns() - t0));
	DSM__DEBUG("barrier %" PRIu64 " done in %.1f us: %s", D->bar_epoch - 1,
		   (dsm__now_ns() - t0) / 1e3, e ? dsm_strerror(e) : "ok");
	return e;
}

DSM_EXPORT int dsm_lock(uint32_t id)
{
	unsigned mgr;
	int64_t t0;
	int e;
	bool waited, owner_died = false;

	if (!D)
		return DSM_ECLOSED;
	t0 = dsm__now_ns();
	mgr = id % D->nodes;
	if (mgr == D->rank) {
		struct lwait lw = { 0 };
		struct lk_waiter w = { .node = D->rank, .lw = &lw };
		int r = lk_request(id, D->rank, &w);

		if (r < 0)
			return r;
		waited = r == 0;
		if (r == 2)
			lw.granted = 2;
		if (waited) {
			pthread_mutex_lock(&D->sync_mu);
			while (!lw.granted)
				pthread_cond_wait(&D->sync_cv, &D->sync_mu);
			pthread_mutex_unlock(&D->sync_mu);
		}
		owner_died = lw.granted == 2;
	} else {
		struct dsm_rpc_lock_req rq = { .id = id };
		struct dsm_rpc_lock_rep rp = { 0 };

		e = dsm_rpc_lock(D->rpc, mgr, &rq, &rp, -1);
		owner_died = e == DSM_EOWNERDEAD;
		if (e && !owner_died)
			return e;
		waited = rp.waited != 0 || owner_died;
	}
	e = held_change(id, 1);
	DSM__DEBUG("lock %u granted by node %u%s", id, mgr,
		   owner_died ? " (its holder died)" : waited ? " after waiting" : "");
	if (!e)
		e = acquire();
	if (!e && owner_died)
		e = DSM_EOWNERDEAD;
	STAT_INC(lock_acquires);
	if (waited)
		STAT_INC(lock_waits);
	STAT_ADD(lock_ns, (uint64_t)(dsm__now_ns() - t0));
	return e;
}

DSM_EXPORT int dsm_unlock(uint32_t id)
{
	unsigned mgr;
	int e;

	if (!D)
		return DSM_ECLOSED;
	e = held_change(id, -1);
	if (e)
		return e;
	e = release();
	mgr = id % D->nodes;
	DSM__DEBUG("unlock %u (manager node %u)", id, mgr);
	if (mgr == D->rank) {
		lk_release(id, D->rank);
	} else {
		struct dsm_rpc_unlock_msg m = { .id = id };
		int e2 = dsm_rpc_unlock_send(D->rpc, mgr, &m);

		if (!e)
			e = e2;
	}
	return e;
}

DSM_EXPORT int dsm_bcast(void *buf, size_t len, int root)
{
	uint64_t seq;
	int e = 0, e2;

	if (!D)
		return DSM_ECLOSED;
	if (root < 0 || (unsigned)root >= D->nodes || (len && !buf) || len > 16777216)
		return DSM_EINVAL;
	pthread_mutex_lock(&D->bar_mu);
	seq = D->bcast_seq++;
	pthread_mutex_unlock(&D->bar_mu);
	if ((unsigned)root == D->rank) {
		struct dsm_rpc_bcast_req rq = { .seq = seq, .root = (uint32_t)root };
		struct waitgroup wg;
		unsigned r;

		rq.data.ptr = buf;
		rq.data.len = (uint32_t)len;
		e = release();
		wg_init(&wg);
		for (r = 0; r < D->nodes; r++) {
			if (r == D->rank)
				continue;
			wg_add(&wg);
			e2 = dsm_rpc_bcast_async(D->rpc, r, &rq, wg_done_cb, &wg);
			if (e2 < 0)
				wg_done(&wg, e2);
		}
		e2 = wg_wait(&wg);
		if (!e)
			e = e2;
	} else {
		struct bc_wait bw = { .seq = seq };

		e = wait_for(bc_arrived, &bw, (unsigned)root, WAIT_FROM);
		if (e)
			return e;
		if (bw.got->root != (unsigned)root || bw.got->len != len) {
			DSM__ERR("dsm_bcast number %" PRIu64 ": this node expects %zu bytes from "
				 "node %d, node %u sent %zu", seq, len, root, bw.got->root,
				 bw.got->len);
			e = DSM_EINVAL;
		} else {
			memcpy(buf, bw.got->data, len);
			e = acquire();
		}
		free(bw.got);
	}
	return e;
}

DSM_EXPORT int dsm_dead_ranks(int *ranks, int max)
{
	unsigned r;
	int n = 0;

	if (!D)
		return 0;
	for (r = 0; r < D->nodes; r++)
		if (r != D->rank && peer_gone(r)) {
			if (ranks && n < max)
				ranks[n] = (int)r;
			n++;
		}
	return n;
}

DSM_EXPORT int dsm_stats(struct dsm_stats *out)
{
	struct dsm__net_stats ns;

	if (!out)
		return DSM_EINVAL;
	if (!D)
		return DSM_ECLOSED;
	memset(out, 0, sizeof(*out));
#define CP(f) out->f = atomic_load_explicit(&D->st.f, memory_order_relaxed)
	CP(read_faults); CP(write_faults); CP(pages_fetched); CP(pages_served);
	CP(prefetched); CP(diffs_sent); CP(diff_bytes); CP(diffs_applied);
	CP(invalidations); CP(notices); CP(lock_acquires); CP(lock_waits); CP(lock_ns);
	CP(barriers); CP(barrier_ns); CP(atomics); CP(allocs); CP(frees);
#undef CP
	dsm__net_stats(D->net, &ns);
	out->msgs_sent = ns.chan.msgs_sent;
	out->msgs_received = ns.chan.msgs_delivered;
	out->bytes_sent = ns.tx_bytes;
	out->bytes_received = ns.rx_bytes;
	out->retransmits = ns.chan.retx_rto + ns.chan.retx_fast + ns.chan.retx_tlp;
	out->dup_dropped = ns.chan.rx_dup;
	out->corrupt_dropped = ns.chan.rx_corrupt;
	out->rtt_us = ns.chan.rtt_us_max > 0 ? (uint64_t)ns.chan.rtt_us_max : 0;
	return 0;
}
