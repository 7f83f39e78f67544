/*
 * The dsm layer's private header: the state every file of dsm/ shares (the
 * node, its view of the shared region, the metadata of every page, the
 * membership sets, the counters) and the calls one concept makes of
 * another. Nothing outside dsm/ includes it.
 *
 * The protocol (DESIGN.md section 3; the files say which part each holds):
 * home-based, multiple writers, release consistency; the acquire side drops
 * exactly the copies that a released write made stale, which the homes
 * tell the readers about (writer news) instead of lock grants and barriers
 * carrying write notices:
 *
 *  - Every page has a home (from its allocation's placement) whose copy is
 *    the master. Other nodes learn a page's home once from the arena's
 *    owner and keep it in the page's metadata.                  (home.c)
 *  - A page of an adaptive allocation that one node keeps writing alone
 *    moves its home there (offer, take); the old home keeps a pointer and
 *    sends fetches, atomics and diffs on, so others learn lazily.
 *                                                            (migrate.c)
 *  - Read fault on a page homed elsewhere: fetch it (with fetch-ahead when
 *    the node reads sequentially), install it read-only; the home records
 *    the node as a reader of the page. Write fault: homed elsewhere: keep a
 *    twin (copy) and make the page writable; homed here: make it writable.
 *    Either way the page goes on the dirty list before it becomes
 *    writable.                                   (fault.c, twin.c, home.c)
 *  - Release (unlock, barrier, bcast root, finalize): every dirty page is
 *    write-protected again (or, if written, kept writable with a twin of
 *    what the release publishes, until several releases find it
 *    unwritten: release.c); a page homed elsewhere is diffed against its
 *    twin (byte-exact, dsm/diff.h) and the diffs go to the homes, which
 *    apply them. For each released write the home tells every other node
 *    that ever fetched the page that its copy is stale, before it
 *    acknowledges (the writer's own copy stays valid: the home keeps a
 *    twin of a page it opened for diffs, and tells the writer only of its
 *    own writes, at its release). A home's own writes are released the same way (its
 *    pages are write-protected while they have readers, and simply
 *    writable while they have none). The release returns when every home
 *    has acknowledged.                                 (release.c, news.c)
 *  - Acquire (lock granted, barrier left, bcast received): drop the copies
 *    marked stale. Copies nobody wrote since they were fetched (read-only
 *    data, data written before the last barrier) stay.        (acquire.c)
 * Why this is enough: a write W by node A that must be visible to node C
 * after C's acquire happens after A's release, which returned only when
 * W's home held W and every node that ever fetched W's page had its copy
 * marked stale; C's acquire then drops it and the next access fetches the
 * master, which holds W. A node that fetched after W's release gets W. A
 * fetch that raced with an acquire is checked against the acquire counter
 * and repeated. Transitivity needs nothing more: each release makes its
 * writes safe for any later acquire.
 *
 * Threads: application threads (the public calls), pager service threads
 * (fault callbacks), the network thread or a thread waiting for a reply
 * (inline RPC handlers: every handler is inline except free), RPC workers
 * (free). Lock order, outer first: release_mu (one release or acquire at a
 * time per node; held across the network waits of that release or
 * acquire), then one of STRIPES mutexes per page (state changes of one
 * page; a release, an acquire or a fetch's home holds the stripes of a
 * run of pages at once, taken in ascending stripe order: runs.c), then
 * the leaves: the dirty list, the cached list, the twin pool.
 * The lock manager's, the barrier's and sync_mu are leaves of their own;
 * so is the thread barrier's (tbarrier.c), never held across the node
 * barrier it runs.
 */
#ifndef DSM_DSM_INTERNAL_H
#define DSM_DSM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "common.h"
#include "dsm.h"
#include "dsm_rpc.h"
#include "net.h"
#include "pager.h"

#define STRIPES 1024

/* Page flags (struct page_meta.flags). */
enum {
	F_CACHED = 1u << 0, /* a copy of a page homed elsewhere is installed */
	F_DIRTY = 1u << 1,  /* written since the last release (on the dirty list) */
	F_OTHERS = 1u << 2, /* another node writes it: drop the copy at acquire */
	F_INLIST = 1u << 3, /* on the cached list */
	F_DLIST = 1u << 4,  /* on the dirty list (release.c) */
	F_XSTART = 1u << 5, /* first page of an allocation's extent (home.c):
			     * looking ahead (fetch-ahead, fresh home pages)
			     * stops here, so it never reaches into another
			     * allocation, which may be freed and forgotten
			     * meanwhile */
	F_HTWIN = 1u << 6,  /* a page homed here that other nodes' writes
			     * made writable (home.c, dsm__home_open): its
			     * twin is the master without this node's own
			     * writes since its last release, so the release
			     * tells whether this node wrote it */
	F_OFFER = 1u << 7,  /* its home offered it to this node: the next
			     * write fault takes it (migrate.c) */
	F_MIGRATE = 1u << 8, /* its home may move (DSM_PLACE_ADAPTIVE) */
	F_HWROTE = 1u << 9, /* an F_HTWIN page served while it differed from
			     * its twin: this node wrote it (home.c) */
	F_GONE = 1u << 10,  /* its allocation is being forgotten (alloc.c):
			     * under its stripe, do not touch the page, which
			     * may be dropped any moment */
};

/* What a node knows of one page of the region. */
struct page_meta {
	_Atomic uint32_t flags;
	_Atomic uint32_t home1;   /* home + 1; 0: not known yet */
	/* Home side (under the page's stripe): who holds a copy that no
	 * released write has made stale yet. */
	uint64_t readers;         /* bit r: node r < 63; bit 63: some node >= 63 */
	void *twin;               /* twin of a dirty copy (non-home), or of a
				   * home page (F_HTWIN) */
	size_t dnext;             /* next page on the dirty list + 1 (release.c) */
	/* Home side (under the page's stripe): the writer whose diffs came
	 * in the last releases in a row, and how many (migrate.c) */
	uint16_t mig_w1, mig_n;
	/* Releases in a row that found a page kept writable with its twin
	 * unwritten (release.c, under the stripe) */
	uint8_t idle;
};

/* A growable vector of page indexes. */
struct vec {
	size_t *v;
	size_t n, cap;
};

struct counters {
	_Atomic uint64_t read_faults, write_faults, pages_fetched, pages_served, prefetched;
	_Atomic uint64_t diffs_sent, diff_bytes, diffs_applied, invalidations, notices;
	_Atomic uint64_t lock_acquires, lock_waits, lock_ns, barriers, barrier_ns;
	_Atomic uint64_t atomics, allocs, frees;
	_Atomic uint64_t migrations_in, migrations_out, forwarded, redirects;
};

/* The node. One per process, from dsm_init to dsm_finalize (D). */
struct dsm {
	unsigned rank, nodes;
	struct dsm__net *net;
	struct dsm__rpc *rpc;
	struct dsm__pager *pg;
	bool stats_at_exit;
	int spin_us;
	int placement;          /* DSM_PLACEMENT: dsm_malloc's (alloc.c) */

	/* the shared region and its pages */
	uintptr_t base;
	size_t size, ps, npages;
	unsigned pshift;
	struct page_meta *meta;
	size_t meta_bytes;
	pthread_mutex_t stripe[STRIPES];

	struct dsm__arena_region region;
	struct dsm__arena *arena;

	/* one release or acquire at a time (release.c, acquire.c) */
	pthread_mutex_t release_mu;

	/* peers that are gone (membership.c); waiters of barriers,
	 * broadcasts and local lock grants sleep on sync_cv */
	_Atomic uint64_t *dead; /* bitmap: declared dead (or we were excluded) */
	_Atomic uint64_t *left; /* bitmap: left cleanly (finalized) */
	_Atomic uint64_t *leaving; /* bitmap: in dsm_finalize (membership.c) */
	pthread_mutex_t sync_mu;
	pthread_cond_t sync_cv;

	struct counters st;
};

extern struct dsm *D;

#define STAT_ADD(f, v) atomic_fetch_add_explicit(&D->st.f, (v), memory_order_relaxed)
#define STAT_INC(f) STAT_ADD(f, 1)

/* Not initialised, or this process is a child forked after dsm_init (it
 * is not a node: pager/fork.c): every public call then returns
 * DSM_ECLOSED. */
static inline bool dsm__closed(void)
{
	return !D || dsm__pager_forked();
}

/* ---- pages ---------------------------------------------------------------- */

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

/* ---- vectors of page indexes ------------------------------------------------ */

static inline int vec_push(struct vec *v, size_t x)
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

static inline void vec_free(struct vec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

/* Large forgets run on a thread of their own (alloc.c): allowed from
 * dsm__forget_init (dsm_init) until dsm__forget_stop, which answers what
 * is queued and ends the thread, before the network goes. */
void dsm__forget_init(void);
void dsm__forget_stop(void);

/* ---- runs of pages (runs.c) ------------------------------------------------ */

/* Sort v ascending and drop repeated indexes. */
void dsm__pages_sort(struct vec *v);
#define DSM__RUN_MAX 64 /* pages per run (runs.c) */

/* The end of the run of consecutive pages of sorted v from v[i]: at most
 * DSM__RUN_MAX pages. */
size_t dsm__run_end(const struct vec *v, size_t i);
/* Take (release) the stripes of pages [first, first + n), n <= STRIPES, in
 * the one order every multi-stripe holder uses (ascending stripe). */
void dsm__run_lock(size_t first, size_t n);
void dsm__run_unlock(size_t first, size_t n);
/* Give access (DSM__PAGER_READ, or NONE: drop) to the pages first + k with
 * sel[k], k < n, one pager call per stretch of selected pages; stripes
 * held. The first error. */
int dsm__run_apply(size_t first, size_t n, const bool *sel, int access);

/* ---- waiting (wait.c) ------------------------------------------------------ */

/* Outstanding async calls of one operation. */
struct waitgroup {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pending;
	int err;
};

void dsm__wg_init(struct waitgroup *wg);
void dsm__wg_add(struct waitgroup *wg);
/* One call done; the first error is kept. */
void dsm__wg_done(struct waitgroup *wg, int status);
/* As an RPC completion callback (arg: the waitgroup). */
void dsm__wg_done_cb(void *arg, int status, const void *rep);
/* Wait for every call; returns the first error. Destroys wg. */
int dsm__wg_wait(struct waitgroup *wg);

/* How dsm__wait_for treats nodes that are gone. */
enum {
	WAIT_FROM, /* only `from` matters (bcast root) */
	WAIT_ALL,  /* every node takes part (barrier): any node dead is an error
		    * (who waits for it never sends on); a node that left sent
		    * everything first */
	WAIT_FIN,  /* finalize: a node that is gone has arrived */
};

/* Wait until cond(arg) holds (cond runs with sync_mu held), or fail with
 * DSM_EPEERDEAD as mode says. */
int dsm__wait_for(bool (*cond)(void *), void *arg, unsigned from, int mode);
/* Wake every dsm__wait_for (after the condition may have changed). */
void dsm__sync_wake(void);

/* ---- membership (membership.c) -------------------------------------------- */

/* Node r died or left. */
bool dsm__peer_gone(unsigned r);
/* Some node died (not: left). */
bool dsm__any_dead(void);
/* The net layer's peer events (callback). */
void dsm__on_peer_event(void *arg, unsigned peer, int event);
/* Node r said it is in dsm_finalize: it takes part in no more broadcasts. */
bool dsm__peer_leaving(unsigned r);
/* Tell every other node that this one is in dsm_finalize. */
void dsm__leaving_announce(void);
int dsm__h_leaving(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_leaving_msg *m);

/* ---- homes (home.c) ------------------------------------------------------- */

/* Home of page idx, asking the arena's owner the first time; a page of a
 * first-touch run nobody touched yet is claimed for this node when claim
 * (else DSM_ENOENT). */
int dsm__page_home(size_t idx, bool claim);
/* Under page idx's stripe, on a request to this node as its home: 0 when
 * it is homed here (a page never looked up here becomes so), else the
 * home + 1 it migrated to. */
uint32_t dsm__home_here(size_t idx);
/* Before dsm__home_here (no stripe held): a page this node never looked
 * up, in an allocation of its own arena, learns its placement locally. */
void dsm__home_learn_local(size_t idx);
/* Make home page idx present with access if it is not (under its stripe). */
int dsm__home_present(size_t idx, int access);
/* Make home page idx writable and dirty (under its stripe). */
int dsm__home_writable(size_t idx);
/* Make home page idx writable for a write on another node's behalf (a
 * diff, an atomic) that is told to its readers now (under its stripe). A
 * page this node has not written since its last release gets a twin
 * (F_HTWIN): the caller makes the same write to m->twin, so that the
 * release finds only this node's own writes there, and does not tell the
 * writer of a diff that its own copy is stale. */
int dsm__home_open(size_t idx);
/* First touch of page idx homed here (and of fresh pages after it): 0 when
 * served, DSM_EAGAIN when it needs the general path. */
int dsm__home_fresh(size_t idx);
int dsm__h_home_of(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_home_of_req *rq,
		   struct dsm_rpc_home_of_rep *rp);
int dsm__h_fetch(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_fetch_req *rq,
		 struct dsm_rpc_fetch_rep *rp);
int dsm__h_diffs(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_diffs_req *rq,
		 struct dsm_rpc_diffs_rep *rp);

/* ---- home migration (migrate.c) -------------------------------------------- */

int dsm__migrate_init(void);
/* Home side, stripe held: a released write of node w to page idx was
 * applied; true when the page is to be offered to w. */
bool dsm__mig_note_write(size_t idx, unsigned w);
/* Home side, stripe held: this node wrote page idx itself. */
void dsm__mig_home_wrote(size_t idx);
/* Pages to offer to one writer. */
#define OFFERS_MAX 512
struct offers {
	size_t n;
	uint64_t page[OFFERS_MAX];
};
void dsm__offers_add(struct offers *o, size_t idx);
void dsm__offers_send(struct offers *o, unsigned w);
/* Write fault of an offered page homed at h: take its home. 0: taken (the
 * page is this node's, writable); 1: not taken (do as usual; its home may
 * have been updated); a negative code. */
int dsm__mig_take(size_t idx, unsigned h);
/* A node said page idx is homed at moved - 1: follow (unless it points
 * here: see migrate.c). */
void dsm__home_moved(size_t idx, uint32_t moved);
/* Between tries of a request that was redirected (sleeps after a few). */
void dsm__move_backoff(int tries);
int dsm__move_tries(void);
int dsm__h_offer(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_offer_msg *m);
int dsm__h_take(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_take_req *rq,
		struct dsm_rpc_take_rep *rp);
int dsm__h_where(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_where_req *rq,
		 struct dsm_rpc_where_rep *rp);

/* ---- writer news (news.c) -------------------------------------------------- */

/* Pages to announce per reader. */
struct news {
	struct vec *per; /* [nodes], allocated on first use */
	unsigned nodes;
	size_t total;
};

#define NEWS_INIT { .nodes = D->nodes }

/* Node r fetched page idx (under its stripe). */
void dsm__reader_add(size_t idx, unsigned r);
/* A write by node w to page idx was released (under its stripe): its other
 * readers go into nw. */
int dsm__register_write(size_t idx, unsigned w, struct news *nw);
void dsm__news_free(struct news *nw);
/* Tell the readers; each call completes in wg (a reader that died or left
 * meanwhile is no error). */
void dsm__news_send(struct news *nw, struct waitgroup *wg);
/* Answer the RPC of ctx once the readers acknowledged the news (kind:
 * diffs or atomic, with old for the atomic's reply): DSM__RPC_DEFERRED, or
 * 0 when there is no news (the handler answers now), or an error. */
enum { REPLY_DIFFS = 0, REPLY_ATOMIC = 1 };
int dsm__reply_after_news(struct dsm__rpc_ctx *ctx, struct news *nw, int kind, int64_t old);
/* The same with diffs forwarded to the pages' new homes (home.c): fwd[h]
 * (NULL: none) holds diff_item records for node h, sent as writer's,
 * hops; the reply waits for those calls too, and carries their failure. */
struct fwd_buf {
	uint8_t *data;
	size_t len, cap;
};
int dsm__reply_after(struct dsm__rpc_ctx *ctx, struct news *nw, int kind, int64_t old,
		     struct fwd_buf *fwd, unsigned writer, unsigned hops);
int dsm__h_writer_news(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_writer_news_req *rq,
		       struct dsm_rpc_writer_news_rep *rp);

/* ---- twins (twin.c) -------------------------------------------------------- */

int dsm__twin_init(void);
void dsm__twin_fini(void);
/* A copy of a page homed elsewhere is about to become writable (under its
 * stripe): keep a twin of contents (NULL: zeros) and put the page on the
 * dirty list. A page that still has its twin (a release could not deliver
 * its diff) keeps it. 0 or DSM_ENOMEM. Also for home pages: home.c. */
int dsm__twin_start(size_t idx, const void *contents);
/* Undo a dsm__twin_start that made a fresh twin (the page could not be
 * made writable): no twin, not dirty (it may stay on the list: a release
 * skips it). */
/* A twin holding a copy of contents (not attached to any page); NULL when
 * out of memory. Back with dsm__twin_put. */
void *dsm__twin_take(const void *contents);
void dsm__twin_cancel(size_t idx);
/* Give a twin back to the pool. */
void dsm__twin_put(void *t);
/* After a release: give the memory of free twins beyond a small cache
 * back to the system. */
void dsm__twin_trim(void);
/* Twins taken and not given back (a snapshot). */
size_t dsm__twins_in_use(void);

/* fault.c: install fetched pages [idx + from, idx + from + n) from data
 * (page idx at data), n <= DSM__RUN_MAX; see there. */
int dsm__fetched_install(size_t idx, size_t from, size_t n, const uint8_t *data, int access,
			 uint64_t epoch, const uint64_t *fgen, bool *again);
/* alloc.c: bumped by every forget, before its pages are marked gone */
uint64_t dsm__forget_gen(void);
/* ahead.c: pipelined fetch-ahead of read streams */
int dsm__ahead_init(void);
void dsm__ahead_fini(void);
int dsm__ahead_fault(size_t idx);
void dsm__ahead_start(size_t idx, unsigned h);

/* ---- faults (fault.c) ------------------------------------------------------ */

/* DSM_FETCH_AHEAD, bounded by dsm__fetch_max_pages (needs D->ps). */
int dsm__fault_init(void);
/* The most pages one fetch may carry with pages of ps bytes: the fetch
 * reply's bound in dsm.rpc divided by the page size. */
size_t dsm__fetch_max_pages(size_t ps);
/* The most pages this node asks for in one fetch (after dsm__fault_init). */
unsigned dsm__fetch_ahead_max(void);
int dsm__cb_read_fault(void *arg, void *page);
int dsm__cb_write_fault(void *arg, void *page, bool present);
/* The pager's fatal handler: a load or store that cannot be served. */
void dsm__fatal_handler(void *addr, int err);
/* The peer a failed fault needed (for the fatal handler's message). */
void dsm__fault_peer_set(int peer);

/* ---- release (release.c) --------------------------------------------------- */

int dsm__release_init(void);
void dsm__release_fini(void);
/* Page idx is about to become writable, or stays dirty after a failed
 * release (under its stripe): F_DIRTY, and on the dirty list unless it is
 * on it already. Never fails. */
void dsm__dirty_mark(size_t idx);
/* Make every write of this node so far safe for any later acquire. On
 * failure, what could not be delivered is kept for the next release. */
int dsm__release(void);
/* Acquire's part (release_mu and the page's stripe held): the diff of a
 * dirty copy about to be dropped is batched for its home, on the channel
 * any later fetch of the page takes too. On failure the page keeps its
 * twin and stays dirty: it must not be dropped. */
int dsm__release_dropped(size_t idx);
/* Send what dsm__release_dropped batched and wait for it (release_mu
 * held). */
int dsm__release_dropped_flush(void);

/* ---- acquire (acquire.c) --------------------------------------------------- */

int dsm__acquire_init(void);
void dsm__acquire_fini(void);
/* Drop the copies that other nodes write. */
int dsm__acquire(void);
/* The acquire counter, read before a fetch. */
uint64_t dsm__acq_epoch(void);
/* A fetched copy of page idx is being installed (under its stripe, flags
 * fl read under it): put it on the cached list, unless an acquire ran
 * since epoch and the page was marked stale meanwhile. 0 (on the list,
 * F_CACHED set), 1 (fetch again), DSM_ENOMEM. */
int dsm__cached_enter(size_t idx, uint32_t fl, uint64_t epoch);

/* ---- allocation (alloc.c) -------------------------------------------------- */

/* DSM_PLACEMENT (enum dsm_placement). 0 or DSM_ECONFIG. */
int dsm__placement_from_env(int *out);
int dsm__h_free(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_free_req *rq,
		struct dsm_rpc_free_rep *rp);
int dsm__h_forget(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_forget_req *rq,
		  struct dsm_rpc_forget_rep *rp);

/* ---- locks (lock.c) -------------------------------------------------------- */

int dsm__lock_init(void);
void dsm__lock_fini(void);
/* Manager: node is gone (network thread). */
void dsm__lock_peer_gone(unsigned node);
/* Records in the manager's table (tests: idle records are freed). */
size_t dsm__lock_records(void);
int dsm__h_lock(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_lock_req *rq,
		struct dsm_rpc_lock_rep *rp);
int dsm__h_unlock(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_unlock_msg *m);

/* ---- barrier (barrier.c) --------------------------------------------------- */

int dsm__barrier_init(void);
void dsm__barrier_fini(void);
/* The barrier rounds; finalizing: nodes that are gone count as arrived. */
int dsm__barrier_rounds(bool finalizing);
/* The node barrier, for dsm_barrier and dsm_barrier_threads' last thread
 * (D open): release, rounds, acquire. DSM_EBUSY (and nothing done) while
 * another thread of this node is in it. */
int dsm__barrier(void);
/* A thread of this node is in dsm__barrier (tests). */
bool dsm__barrier_busy(void);
int dsm__h_barrier(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_barrier_msg *m);

/* ---- thread barrier (tbarrier.c) ------------------------------------------- */

/* Threads waiting in the dsm_barrier_threads round in progress, before its
 * last one arrived (tests). */
unsigned dsm__tbarrier_waiting(void);

/* ---- broadcast (bcast.c) --------------------------------------------------- */

int dsm__bcast_init(void);
void dsm__bcast_fini(void);
int dsm__h_bcast(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_bcast_msg *m);

/* ---- atomics (atomic.c) ---------------------------------------------------- */

int dsm__h_atomic(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_atomic_req *rq,
		  struct dsm_rpc_atomic_rep *rp);

#endif /* DSM_DSM_INTERNAL_H */
