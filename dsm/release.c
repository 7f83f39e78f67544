/*
 * Release: make every write this node made so far safe for any later
 * acquire anywhere (unlock, barrier, bcast at the root, finalize).
 *
 * Every written page is on the dirty list (dsm__dirty_mark, called before
 * the page becomes writable). A release takes the list, sorts it, and
 * handles it in runs of consecutive pages under their stripes (runs.c):
 * first the pages to write-protect, with one call per stretch (a
 * protection taken away costs a TLB flush on every CPU running this
 * process), then each page:
 *  - a copy of a page homed elsewhere: write-protect it, diff it against
 *    its twin (dsm/diff.h) into the batch for its home (a diffs message of
 *    up to DIFF_BATCH bytes, sent as soon as it is full);
 *  - a page homed here with readers: write-protect it (its next write is
 *    tracked again) and collect the news for its readers (news.c); without
 *    readers it stays writable, untracked. A page only other nodes' diffs
 *    made writable (F_HTWIN) has no news: their readers were told when
 *    the diffs were applied, and its twin shows whether this node wrote
 *    it too.
 * Except that a written page stays writable with a twin of what this
 * release publishes (a copy: diffed against a snapshot that becomes its
 * twin, keep_copy; a home page: own_keep) until KEEP_IDLE releases in a
 * row find it unwritten, within DSM_KEEP_MB of such twins: a page written
 * in one of every few intervals then costs a copy and a compare per
 * release, not a TLB flush and a write fault.
 * Then it sends the last batches and the news and waits until every home
 * and reader acknowledged: the homes answer only once every other reader
 * of the pages heard of the writes.
 *
 * Nothing is lost when something fails. A page that cannot be protected,
 * diffed or batched stays dirty (twin and all) and goes back on the list.
 * A batch that did not reach its home (the call could not start, or the
 * home answered an error) is kept, with every later batch to that home,
 * and sent again first by the next release, in order, so the home applies
 * the diffs in the order they were made. News that could not be told puts
 * its pages back on the list. The release returns the first error; the
 * next release delivers what this one could not. Writes to a home that
 * died are the one exception: they cannot be delivered (DSM_EPEERDEAD).
 *
 * The dirty list is intrusive (page_meta.dnext, F_DLIST), so putting a
 * page on it never allocates and never fails.
 *
 * Threads: application threads. release_mu serialises releases and
 * acquires of this node and is held across the wait for the homes' and
 * readers' acknowledgements (other threads' releases queue behind it); a
 * run's stripes are held while its pages are protected and diffed, never
 * across the network. Batch completions run on the receiving thread and only record
 * their status.
 */
#include <inttypes.h>

#include "diff.h"
#include "internal.h"

#define DIFF_BATCH (256 << 10) /* bytes of diffs per message */
#define BATCH_POOL 8           /* idle batch buffers kept */

/* A diffs message: diff_item records (dsm.rpc), one per page. */
struct batch {
	struct batch *next;
	unsigned home;
	int status;     /* of its call; set by the completion */
	size_t len;
	uint8_t data[]; /* R.batch_cap bytes */
};

static struct {
	pthread_mutex_t dirty_mu;
	size_t dirty_head;       /* first dirty page + 1; 0: none */
	/* under release_mu */
	struct batch **open;     /* per home: the batch being filled */
	struct batch *flight, **flight_tail; /* sent, in order, until settled */
	struct batch *retry, **retry_tail;   /* undelivered, in order */
	struct batch *pool;      /* idle buffers */
	unsigned npool;
	size_t batch_cap;
	struct waitgroup wg;     /* the calls of the batches in flight */
	bool wg_live;
	bool *failed;            /* per home, while settling */
	uint8_t *diff_tmp;       /* one encoded diff */
	struct vec news_pages;   /* own pages whose news is being told */
	struct vec pages;        /* the dirty list taken, sorted */
	size_t keep_max;         /* DSM_KEEP_MB in twins: see KEEP_IDLE */
} R;

#define KEEP_MB_DEFAULT 16 /* DSM_KEEP_MB */

int dsm__release_init(void)
{
	long mb;
	int e;

	memset(&R, 0, sizeof(R));
	e = dsm__env_long("DSM_KEEP_MB", KEEP_MB_DEFAULT, 0, 1L << 20, &mb);
	if (e)
		return e;
	R.keep_max = (size_t)((uint64_t)mb << 20) / D->ps;
	pthread_mutex_init(&R.dirty_mu, NULL);
	R.flight_tail = &R.flight;
	R.retry_tail = &R.retry;
	R.batch_cap = DIFF_BATCH + DSM_RPC_DIFF_ITEM_SIZE_MIN + DSM_DIFF_BOUND(D->ps);
	R.open = calloc(D->nodes, sizeof(*R.open));
	R.failed = calloc(D->nodes, sizeof(*R.failed));
	R.diff_tmp = malloc(DSM_DIFF_BOUND(D->ps));
	if (!R.open || !R.failed || !R.diff_tmp)
		return DSM_ENOMEM;
	return 0;
}

static void batch_list_free(struct batch *b)
{
	while (b) {
		struct batch *n = b->next;

		free(b);
		b = n;
	}
}

void dsm__release_fini(void)
{
	unsigned h;

	if (R.open)
		for (h = 0; h < D->nodes; h++)
			free(R.open[h]);
	free(R.open);
	free(R.failed);
	batch_list_free(R.flight);
	batch_list_free(R.retry);
	batch_list_free(R.pool);
	free(R.diff_tmp);
	vec_free(&R.news_pages);
	vec_free(&R.pages);
	pthread_mutex_destroy(&R.dirty_mu);
	memset(&R, 0, sizeof(R));
}

void dsm__dirty_mark(size_t idx)
{
	struct page_meta *m = &D->meta[idx];

	atomic_fetch_or(&m->flags, F_DIRTY);
	if (atomic_fetch_or(&m->flags, F_DLIST) & F_DLIST)
		return; /* on the list already */
	pthread_mutex_lock(&R.dirty_mu);
	m->dnext = R.dirty_head;
	R.dirty_head = idx + 1;
	pthread_mutex_unlock(&R.dirty_mu);
}

/* ---- batches ---------------------------------------------------------------- */

static struct batch *batch_get(unsigned h)
{
	struct batch *b = R.pool;

	if (b) {
		R.pool = b->next;
		R.npool--;
	} else {
		b = malloc(sizeof(*b) + R.batch_cap);
		if (!b)
			return NULL;
	}
	b->next = NULL;
	b->home = h;
	b->status = 0;
	b->len = 0;
	return b;
}

static void batch_put(struct batch *b)
{
	if (R.npool >= BATCH_POOL) {
		free(b);
		return;
	}
	b->next = R.pool;
	R.pool = b;
	R.npool++;
}

static void batch_done(void *arg, int status, const void *rep)
{
	struct batch *b = arg;

	(void)rep;
	b->status = status;
	dsm__wg_done(&R.wg, status);
}

/* Send batch b (its call completes into R.wg) and keep it until settled. */
static void batch_send(struct batch *b)
{
	struct dsm_rpc_diffs_req rq = { .writer = D->rank,
					.data = { .ptr = b->data, .len = (uint32_t)b->len } };
	int e;

	if (!R.wg_live) {
		dsm__wg_init(&R.wg);
		R.wg_live = true;
	}
	b->next = NULL;
	*R.flight_tail = b;
	R.flight_tail = &b->next;
	dsm__wg_add(&R.wg);
	e = dsm_rpc_diffs_async(D->rpc, b->home, &rq, batch_done, b);
	if (e < 0) {
		b->status = e;
		dsm__wg_done(&R.wg, e);
	}
}

static void batches_resend(void);

/* Append the diff of page idx for home h. 0, or DSM_ENOMEM (no buffer:
 * nothing appended). */
static int batch_append(unsigned h, size_t idx, const uint8_t *diff, size_t len)
{
	struct batch *b = R.open[h];
	struct dsm_rpc_diff_item it;
	int n;

	if (R.retry)
		batches_resend(); /* older diffs first */
	if (!b) {
		b = R.open[h] = batch_get(h);
		if (!b)
			return DSM_ENOMEM;
	}
	it.page = (uintptr_t)page_addr(idx);
	it.diff.ptr = diff;
	it.diff.len = (uint32_t)len;
	n = dsm_rpc_diff_item_encode(&it, b->data + b->len, R.batch_cap - b->len);
	if (n < 0)
		return n; /* cannot be: the buffer has room for one more */
	b->len += (size_t)n;
	STAT_INC(diffs_sent);
	STAT_ADD(diff_bytes, (uint64_t)len);
	if (b->len >= DIFF_BATCH) {
		R.open[h] = NULL;
		batch_send(b);
	}
	return 0;
}

/* Send the open batches, wait for every batch in flight, and settle them:
 * delivered ones go back to the pool; from a home's first failed batch on,
 * every batch to that home is kept for the next release (a home that died
 * is the exception: its diffs are dropped). Returns the error of the first
 * batch kept, else DSM_EPEERDEAD if a home died, else 0. */
static int batches_flush(void)
{
	struct batch *b, *n;
	unsigned h;
	int e = 0, kept = 0;

	for (h = 0; h < D->nodes; h++)
		if (R.open[h]) {
			batch_send(R.open[h]);
			R.open[h] = NULL;
		}
	if (!R.wg_live)
		return 0;
	e = dsm__wg_wait(&R.wg);
	R.wg_live = false;
	memset(R.failed, 0, D->nodes * sizeof(*R.failed));
	for (b = R.flight; b; b = n) {
		n = b->next;
		if (b->status == DSM_EPEERDEAD || dsm__peer_gone(b->home)) {
			/* not deliverable: the writes died with their home */
			batch_put(b);
		} else if (b->status < 0 || R.failed[b->home]) {
			if (b->status < 0 && !kept)
				kept = b->status;
			R.failed[b->home] = true;
			b->next = NULL;
			*R.retry_tail = b;
			R.retry_tail = &b->next;
		} else {
			batch_put(b);
		}
	}
	R.flight = NULL;
	R.flight_tail = &R.flight;
	/* what is kept for the next release matters more than what died */
	if (kept)
		e = kept;
	if (e)
		DSM__WARN("diffs not delivered (%s)%s", dsm_strerror(e),
			  kept ? ": kept for the next release" : "");
	return e;
}

/* Send the batches an earlier release could not deliver, first. */
static void batches_resend(void)
{
	struct batch *b = R.retry, *n;

	R.retry = NULL;
	R.retry_tail = &R.retry;
	for (; b; b = n) {
		n = b->next;
		batch_send(b);
	}
}

/* ---- release -------------------------------------------------------------- */

/* Releases in a row a page kept writable (own_keep, keep_copy) may go unwritten
 * before it is write-protected: a program's phases between barriers
 * write a page in one of every few intervals (a vector updated once per
 * iteration of three phases), and a compare per release costs a fraction
 * of a microsecond against a write fault and a TLB flush. */
#define KEEP_IDLE 8

enum { KEEP_NO, KEEP_WROTE, KEEP_IDLE_ONE };

/* Pages kept writable hold a twin each: they are kept only while the
 * twins in use stay within DSM_KEEP_MB (0: none kept, every release
 * write-protects what it released). The twins in use include those of
 * the pages this release has yet to go through, so the bound errs on the
 * side of keeping fewer. */
static bool keep_room(void)
{
	return dsm__twins_in_use() < R.keep_max;
}


/* Diff the dirty copy idx (stripe held) into its home's batch. On failure
 * the page keeps its twin and stays dirty (the caller puts it back on the
 * list). */
static int release_copy(size_t idx, struct page_meta *m)
{
	uint32_t h1 = atomic_load(&m->home1);
	void *page = page_addr(idx);
	int n, e;

	if (atomic_load(&m->flags) & F_GONE) {
		/* freed meanwhile (alloc.c): nothing to send */
		dsm__twin_put(m->twin);
		m->twin = NULL;
		atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
		return 0;
	}
	e = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_READ);
	if (e)
		return e;
	n = dsm__diff_encode(m->twin, page, D->ps, R.diff_tmp, DSM_DIFF_BOUND(D->ps));
	if (n < 0)
		return n;
	if (n > DSM_DIFF_HDR_SIZE && h1) {
		e = batch_append(h1 - 1, idx, R.diff_tmp, (size_t)n);
		if (e)
			return e;
	}
	dsm__twin_put(m->twin);
	m->twin = NULL;
	atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
	return 0;
}

/* May the dirty copy idx (stripe held, flags fl) stay writable through
 * this release (keep_copy)? Not when freed meanwhile, not when its home
 * offered it to this node (its next write fault takes it: migrate.c), not
 * after KEEP_IDLE releases in a row found it unwritten. */
static bool copy_keepable(size_t idx, struct page_meta *m, uint32_t fl)
{
	return !(fl & (F_GONE | F_OFFER)) && m->idle < KEEP_IDLE && keep_room() &&
	       dsm__pager_access(D->pg, page_addr(idx)) == DSM__PAGER_RW;
}

/* Release the dirty copy idx (stripe held) without write-protecting it:
 * its writes since its twin are diffed against a copy of the page taken
 * now, which becomes its twin, and it stays writable and dirty, compared
 * again at the next release. A page written in every few intervals costs
 * a copy and a compare per release instead of a TLB flush and a write
 * fault. Writes that land while the copy is taken either are in it (sent
 * now) or differ from it (sent next time). 1 when there is no memory for
 * the copy (release it as usual); on failure the old twin stays. */
static int keep_copy(size_t idx, struct page_meta *m)
{
	uint32_t h1 = atomic_load(&m->home1);
	void *page = page_addr(idx), *t;
	int n, e;

	if (!memcmp(page, m->twin, D->ps)) {
		m->idle++;
		dsm__dirty_mark(idx);
		return 0;
	}
	t = dsm__twin_take(page);
	if (!t)
		return 1;
	n = dsm__diff_encode(m->twin, t, D->ps, R.diff_tmp, DSM_DIFF_BOUND(D->ps));
	e = n < 0 ? n : 0;
	if (!e && n > DSM_DIFF_HDR_SIZE && h1)
		e = batch_append(h1 - 1, idx, R.diff_tmp, (size_t)n);
	if (e) {
		dsm__twin_put(t);
		return e;
	}
	dsm__twin_put(m->twin);
	m->twin = t;
	m->idle = 0;
	dsm__dirty_mark(idx);
	return 0;
}

/* Our own page idx (stripe held). With readers: track our writes again and
 * collect the news. Without: nothing to track, it stays writable
 * (dsm__h_fetch protects it when a reader comes). A page opened for other
 * nodes' writes (F_HTWIN: dsm__home_open), whose readers were told of
 * them, has news only if it differs from its twin once protected: that
 * difference is this node's own writing. (If the news cannot be collected
 * the twin is gone: the next release tells every reader, which is more
 * than needed, never less.) */
static int release_own(size_t idx, struct page_meta *m, struct news *nw)
{
	bool wrote = true;
	int e = 0;

	if (m->readers) {
		e = dsm__pager_protect(D->pg, page_addr(idx), D->ps, DSM__PAGER_READ);
		if (e)
			return e;
	}
	if (m->twin) {
		/* gone or not present: freed meanwhile (alloc.c); touching
		 * it would fault on this stripe */
		wrote = (atomic_load(&m->flags) & F_HWROTE) ||
			(!(atomic_load(&m->flags) & F_GONE) &&
			 dsm__pager_access(D->pg, page_addr(idx)) > DSM__PAGER_NONE &&
			 memcmp(page_addr(idx), m->twin, D->ps) != 0);
		if (wrote)
			dsm__mig_home_wrote(idx);
		dsm__twin_put(m->twin);
		m->twin = NULL;
		atomic_fetch_and(&m->flags, ~(uint32_t)(F_HTWIN | F_HWROTE));
	}
	if (m->readers && wrote) {
		e = dsm__register_write(idx, D->rank, nw);
		if (!e)
			e = vec_push(&R.news_pages, idx);
		if (e)
			return e;
	}
	atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
	return 0;
}

/* News could not be told: the pages it was about are dirty again, so the
 * next release tells their readers (a page tracked by its twin, which
 * holds what was released, would compare equal: F_HWROTE says it was
 * written). */
static void news_failed(void)
{
	size_t i;

	for (i = 0; i < R.news_pages.n; i++) {
		size_t idx = R.news_pages.v[i];
		struct page_meta *m = &D->meta[idx];

		pthread_mutex_lock(stripe_of(idx));
		if (atomic_load(&m->flags) & F_HTWIN)
			atomic_fetch_or(&m->flags, F_HWROTE);
		dsm__dirty_mark(idx);
		pthread_mutex_unlock(stripe_of(idx));
	}
}

/* This node's page idx, with readers, dirty and writable (stripe held):
 * if it was written, track it from now on by a twin of its bytes as this
 * release publishes them, instead of write-protecting it; it stays
 * writable, so a page this node writes in every interval costs a copy and
 * a compare per release, not a TLB flush and a write fault. Writes that
 * land while the copy is taken differ from it (or it holds them: then
 * they are published now); a reader's fetch after this release gets a
 * copy compared with this twin (dsm__h_fetch). KEEP_WROTE when kept so;
 * KEEP_IDLE_ONE when it was kept by an earlier release and compares
 * equal to its twin (not written since: nothing to tell, compared again
 * next time), up to KEEP_IDLE releases in a row; KEEP_NO when it compares
 * equal after those, or there is no memory for the twin
 * (write-protect it as usual). A write that lands after the compare
 * differs from the twin at the next release. */
static int own_keep(size_t idx, struct page_meta *m)
{
	uint32_t fl = atomic_load(&m->flags);
	void *page = page_addr(idx), *t;

	if ((fl & F_GONE) || dsm__pager_access(D->pg, page) != DSM__PAGER_RW)
		return KEEP_NO;
	if (m->twin && !(fl & F_HWROTE) && !memcmp(page, m->twin, D->ps)) {
		if (!(fl & F_HTWIN) || m->idle >= KEEP_IDLE)
			return KEEP_NO;
		m->idle++;
		return KEEP_IDLE_ONE;
	}
	if (!keep_room() || !(t = dsm__twin_take(page)))
		return KEEP_NO;
	if (m->twin)
		dsm__twin_put(m->twin);
	m->twin = t;
	m->idle = 0;
	atomic_fetch_or(&m->flags, F_HTWIN);
	atomic_fetch_and(&m->flags, ~(uint32_t)F_HWROTE);
	return KEEP_WROTE;
}

/* A page own_keep kept: tell its readers, and compare it again at the next
 * release. */
static int own_kept(size_t idx, struct news *nw)
{
	int e;

	dsm__mig_home_wrote(idx);
	e = dsm__register_write(idx, D->rank, nw);
	if (!e)
		e = vec_push(&R.news_pages, idx);
	if (e) /* its twin holds the writes now: F_HWROTE keeps them news */
		atomic_fetch_or(&D->meta[idx].flags, F_HWROTE);
	dsm__dirty_mark(idx);
	return e;
}

/* Release pages [first, first + n), all taken off the dirty list: the
 * ones to write-protect first, with one call per stretch (runs.c), then
 * each page as a copy or as this node's own. A page that fails goes back
 * on the list; *err keeps the first error. */
static void release_run(size_t first, size_t n, struct news *nw, int *err, size_t *npages)
{
	bool sel[DSM__RUN_MAX], keepc[DSM__RUN_MAX];
	int kept[DSM__RUN_MAX];
	size_t k;
	int e2;

	dsm__run_lock(first, n);
	for (k = 0; k < n; k++) {
		struct page_meta *m = &D->meta[first + k];
		/* off the list: a write from now on puts it on the next one */
		uint32_t fl = atomic_fetch_and(&m->flags, ~(uint32_t)F_DLIST);
		bool copy = m->twin && !(fl & F_HTWIN);

		kept[k] = (fl & F_DIRTY) && !copy && m->readers ? own_keep(first + k, m) : KEEP_NO;
		keepc[k] = (fl & F_DIRTY) && copy && copy_keepable(first + k, m, fl);
		sel[k] = (fl & F_DIRTY) && kept[k] == KEEP_NO && !keepc[k] && (copy || m->readers);
	}
	/* what fails here fails again page by page below, and is kept */
	(void)dsm__run_apply(first, n, sel, DSM__PAGER_READ);
	for (k = 0; k < n; k++) {
		size_t idx = first + k;
		struct page_meta *m = &D->meta[idx];

		if (!(atomic_load(&m->flags) & F_DIRTY))
			continue;
		if (keepc[k]) {
			e2 = keep_copy(idx, m);
			if (e2 > 0) /* no memory for a copy: as usual */
				e2 = release_copy(idx, m);
			if (e2) {
				dsm__dirty_mark(idx);
				if (!*err)
					*err = e2;
			}
			(*npages)++;
			continue;
		}
		if (kept[k] == KEEP_IDLE_ONE) {
			dsm__dirty_mark(idx); /* compared again next time */
			continue;
		}
		if (kept[k] == KEEP_WROTE) {
			e2 = own_kept(idx, nw);
			if (e2 && !*err)
				*err = e2;
			(*npages)++;
			continue;
		}
		e2 = m->twin && !(atomic_load(&m->flags) & F_HTWIN) ? release_copy(idx, m)
								       : release_own(idx, m, nw);
		if (e2) {
			dsm__dirty_mark(idx);
			if (!*err)
				*err = e2;
		}
		(*npages)++;
	}
	dsm__run_unlock(first, n);
}

int dsm__release(void)
{
	struct news nw = NEWS_INIT;
	struct waitgroup news_wg;
	size_t next, npages = 0;
	int e = 0, e2;

	pthread_mutex_lock(&D->release_mu);
	pthread_mutex_lock(&R.dirty_mu);
	next = R.dirty_head;
	R.dirty_head = 0;
	pthread_mutex_unlock(&R.dirty_mu);
	if (!next && !R.retry) {
		pthread_mutex_unlock(&D->release_mu);
		return 0;
	}
	batches_resend();
	R.news_pages.n = 0;
	R.pages.n = 0;
	while (next) {
		size_t idx = next - 1;

		/* nobody else links a page while it is on a list (F_DLIST) */
		next = D->meta[idx].dnext;
		if (vec_push(&R.pages, idx))
			release_run(idx, 1, &nw, &e, &npages); /* out of memory: alone */
	}
	dsm__pages_sort(&R.pages);
	for (size_t i = 0, j; i < R.pages.n; i = j) {
		j = dsm__run_end(&R.pages, i);
		release_run(R.pages.v[i], j - i, &nw, &e, &npages);
	}
	DSM__DEBUG("release: %zu dirty page(s), news for %zu reader page(s)", npages, nw.total);
	dsm__wg_init(&news_wg);
	dsm__news_send(&nw, &news_wg);
	e2 = batches_flush();
	if (!e)
		e = e2;
	e2 = dsm__wg_wait(&news_wg);
	if (e2) {
		news_failed();
		if (!e)
			e = e2;
	}
	dsm__news_free(&nw);
	pthread_mutex_unlock(&D->release_mu);
	dsm__twin_trim();
	if (e)
		DSM__WARN("release: %s", dsm_strerror(e));
	return e;
}

/* ---- for the acquire ------------------------------------------------------ */

int dsm__release_dropped(size_t idx)
{
	return release_copy(idx, &D->meta[idx]);
}

int dsm__release_dropped_flush(void)
{
	return batches_flush();
}
