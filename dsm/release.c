/*
 * Release: make every write this node made so far safe for any later
 * acquire anywhere (unlock, barrier, bcast at the root, finalize).
 *
 * Every written page is on the dirty list (fault.c, twin.c and home.c put
 * it there before it becomes writable). A release takes the list, and for
 * each page:
 *  - a copy of a page homed elsewhere: write-protect it, diff it against
 *    its twin (dsm/diff.h), batch the diff for its home (DIFF_BATCH bytes
 *    per diffs message);
 *  - a page homed here with readers: write-protect it (its next write is
 *    tracked again) and collect the news for its readers (news.c); without
 *    readers it stays writable, untracked.
 * Then it sends the batches and the news and waits until every home and
 * reader acknowledged: the homes answer only once every other reader of
 * the pages heard of the writes.
 *
 * Threads: application threads. release_mu serialises releases and
 * acquires of this node and is held across the wait for the homes' and
 * readers' acknowledgements (other threads' releases queue behind it); the
 * page's stripe is held while it is protected and diffed, never across the
 * network.
 */
#include "diff.h"
#include "internal.h"

#define DIFF_BATCH (256 << 10) /* bytes of diffs per message */

static struct {
	/* dirty pages (both kinds), pushed by faults and handlers */
	pthread_mutex_t dirty_mu;
	struct vec dirty;
	/* under release_mu */
	struct vec pages;        /* the dirty list being released */
	uint8_t **buf;           /* per home: diffs being batched */
	size_t *len, *cap;
	uint8_t *diff_tmp;       /* one encoded diff */
} R;

int dsm__release_init(void)
{
	memset(&R, 0, sizeof(R));
	pthread_mutex_init(&R.dirty_mu, NULL);
	R.buf = calloc(D->nodes, sizeof(*R.buf));
	R.len = calloc(D->nodes, sizeof(*R.len));
	R.cap = calloc(D->nodes, sizeof(*R.cap));
	R.diff_tmp = malloc(DSM_DIFF_BOUND(D->ps));
	if (!R.buf || !R.len || !R.cap || !R.diff_tmp)
		return DSM_ENOMEM;
	return 0;
}

void dsm__release_fini(void)
{
	unsigned h;

	if (R.buf)
		for (h = 0; h < D->nodes; h++)
			free(R.buf[h]);
	free(R.buf);
	free(R.len);
	free(R.cap);
	free(R.diff_tmp);
	vec_free(&R.dirty);
	vec_free(&R.pages);
	pthread_mutex_destroy(&R.dirty_mu);
	memset(&R, 0, sizeof(R));
}

int dsm__dirty_push(size_t idx)
{
	int e;

	pthread_mutex_lock(&R.dirty_mu);
	e = vec_push(&R.dirty, idx);
	pthread_mutex_unlock(&R.dirty_mu);
	return e;
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

static int rel_append(unsigned h, size_t idx, const uint8_t *diff, size_t len)
{
	size_t need = R.len[h] + 12 + len;

	if (need > R.cap[h]) {
		size_t cap = R.cap[h] ? R.cap[h] : 16384;
		uint8_t *nb;

		while (cap < need)
			cap *= 2;
		nb = realloc(R.buf[h], cap);
		if (!nb)
			return DSM_ENOMEM;
		R.buf[h] = nb;
		R.cap[h] = cap;
	}
	put_u64(R.buf[h] + R.len[h], (uintptr_t)page_addr(idx));
	put_u32(R.buf[h] + R.len[h] + 8, (uint32_t)len);
	memcpy(R.buf[h] + R.len[h] + 12, diff, len);
	R.len[h] += 12 + len;
	return 0;
}

static void rel_send(unsigned h, struct waitgroup *wg)
{
	struct dsm_rpc_diffs_req rq;
	int e;

	if (!R.len[h])
		return;
	rq.data.ptr = R.buf[h];
	rq.data.len = (uint32_t)R.len[h];
	dsm__wg_add(wg);
	e = dsm_rpc_diffs_async(D->rpc, h, &rq, dsm__wg_done_cb, wg);
	if (e < 0)
		dsm__wg_done(wg, e);
	R.len[h] = 0;
}

int dsm__release(void)
{
	struct news nw = NEWS_INIT;
	struct waitgroup wg;
	struct vec tmp;
	size_t i;
	unsigned h;
	int e = 0, e2;

	pthread_mutex_lock(&D->release_mu);
	pthread_mutex_lock(&R.dirty_mu);
	tmp = R.dirty;
	R.dirty = R.pages;
	R.pages = tmp;
	pthread_mutex_unlock(&R.dirty_mu);
	if (!R.pages.n) {
		pthread_mutex_unlock(&D->release_mu);
		return 0;
	}
	dsm__wg_init(&wg);
	for (i = 0; i < R.pages.n; i++) {
		size_t idx = R.pages.v[i];
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
			 * writable (dsm__h_fetch protects it when a reader
			 * comes). */
			if (m->readers) {
				e2 = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_READ);
				if (!e2)
					e2 = dsm__register_write(idx, D->rank, &nw);
			}
			atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
			pthread_mutex_unlock(stripe_of(idx));
		} else {
			e2 = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_READ);
			n = dsm__diff_encode(twin, page, D->ps, R.diff_tmp, DSM_DIFF_BOUND(D->ps));
			m->twin = NULL;
			atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
			pthread_mutex_unlock(stripe_of(idx));
			dsm__twin_put(twin);
			if (n < 0) {
				e2 = n;
			} else if (n > DSM_DIFF_HDR_SIZE && h1) {
				h = h1 - 1;
				STAT_INC(diffs_sent);
				STAT_ADD(diff_bytes, (uint64_t)n);
				e2 = rel_append(h, idx, R.diff_tmp, (size_t)n);
				if (R.len[h] >= DIFF_BATCH)
					rel_send(h, &wg);
			}
		}
		if (e2 && !e)
			e = e2;
	}
	DSM__DEBUG("release: %zu dirty page(s), news for %zu reader page(s)",
		   R.pages.n, nw.total);
	R.pages.n = 0;
	for (h = 0; h < D->nodes; h++)
		rel_send(h, &wg);
	dsm__news_send(&nw, &wg);
	e2 = dsm__wg_wait(&wg);
	dsm__news_free(&nw);
	pthread_mutex_unlock(&D->release_mu);
	if (e)
		DSM__WARN("release: %s", dsm_strerror(e));
	return e ? e : e2;
}

int dsm__release_dropped(size_t idx, struct waitgroup *wg)
{
	struct page_meta *m = &D->meta[idx];
	uint32_t h1 = atomic_load(&m->home1);
	void *page = page_addr(idx);
	int n, e;

	e = dsm__pager_protect(D->pg, page, D->ps, DSM__PAGER_READ);
	n = dsm__diff_encode(m->twin, page, D->ps, R.diff_tmp, DSM_DIFF_BOUND(D->ps));
	dsm__twin_put(m->twin);
	m->twin = NULL;
	atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
	if (n < 0) {
		e = n;
	} else if (n > DSM_DIFF_HDR_SIZE && h1) {
		STAT_INC(diffs_sent);
		STAT_ADD(diff_bytes, (uint64_t)n);
		e = rel_append(h1 - 1, idx, R.diff_tmp, (size_t)n);
		rel_send(h1 - 1, wg);
	}
	return e;
}
