/*
 * Writer news: how a released write reaches the nodes holding copies.
 *
 * The home of a page records which nodes fetched it (its readers, in the
 * page's metadata). When it applies a released write to the page (another
 * node's diff, its own write at its release, an atomic), it tells every
 * other reader (writer_news) that its copy is stale, and the release or
 * atomic is acknowledged only once they all answered: so when a release
 * returns, every node holding an older copy has it marked (F_OTHERS), and
 * its next acquire drops exactly those copies (acquire.c).
 *
 * Readers stay readers until the page is freed: a node that was told may
 * not have heard yet (the news travels), and the next writer's release
 * must wait for it too, so it is told again. A page nobody writes causes no
 * news, and stays cached everywhere.
 *
 * Threads: the home side runs under the page's stripe on whichever thread
 * applies the write; news replies complete on the receiving thread; the
 * reader side (dsm__h_writer_news) is an inline handler.
 */
#include "internal.h"

#define NEWS_BATCH 512 /* pages per writer_news message (dsm.rpc's bound) */

static bool reader_has(const struct page_meta *m, unsigned r)
{
	return r < 63 ? (m->readers >> r) & 1 : (m->readers >> 63) & 1;
}

void dsm__reader_add(size_t idx, unsigned r)
{
	D->meta[idx].readers |= 1ull << (r < 63 ? r : 63);
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

int dsm__register_write(size_t idx, unsigned w, struct news *nw)
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

void dsm__news_free(struct news *nw)
{
	unsigned r;

	if (nw->per)
		for (r = 0; r < nw->nodes; r++)
			vec_free(&nw->per[r]);
	free(nw->per);
	nw->per = NULL;
	nw->total = 0;
}

/* Send the news; every call completes through done(arg), announced first
 * by before(arg). A call that could not start is reported as failed
 * through done as well. */
static void news_send(struct news *nw, dsm__rpc_done_fn done, void *arg,
		      void (*before)(void *arg))
{
	unsigned r;
	size_t i, k;

	if (!nw->per)
		return;
	for (r = 0; r < nw->nodes; r++) {
		struct vec *v = &nw->per[r];

		/* a node that is gone reads no copy again */
		if (dsm__peer_gone(r))
			continue;
		for (i = 0; i < v->n; i += NEWS_BATCH) {
			struct dsm_rpc_writer_news_req rq;
			int e;

			rq.pages_len = (uint32_t)(v->n - i < NEWS_BATCH ? v->n - i : NEWS_BATCH);
			for (k = 0; k < rq.pages_len; k++)
				rq.pages[k] = (uintptr_t)page_addr(v->v[i + k]);
			before(arg);
			e = dsm_rpc_writer_news_async(D->rpc, r, &rq, done, arg);
			if (e < 0)
				done(arg, e, NULL);
		}
	}
}

static void wg_before(void *arg)
{
	dsm__wg_add(arg);
}

/* News that could not reach a node because it died or left meanwhile is no
 * error: that node reads no copy again. */
static void wg_news_done_cb(void *arg, int status, const void *rep)
{
	(void)rep;
	dsm__wg_done(arg, status == DSM_EPEERDEAD ? 0 : status);
}

void dsm__news_send(struct news *nw, struct waitgroup *wg)
{
	news_send(nw, wg_news_done_cb, wg, wg_before);
}

/* The reader side: mark the copies stale, for the next acquire. */
int dsm__h_writer_news(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_writer_news_req *rq,
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

/* A deferred reply waiting for writer_news acknowledgements. */
struct pending {
	_Atomic int n;
	_Atomic int err;
	struct dsm__rpc_token *tok;
	int kind; /* REPLY_* */
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
	if (pd->kind == REPLY_DIFFS) {
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

/* A forwarded diffs call: its failure is the writer's (a new home that
 * died took the writes with it). */
static void pending_fwd_done(void *arg, int status, const void *rep)
{
	struct pending *pd = arg;

	(void)rep;
	if (status < 0)
		atomic_store(&pd->err, status);
	pending_put(pd);
}

int dsm__reply_after_news(struct dsm__rpc_ctx *ctx, struct news *nw, int kind, int64_t old)
{
	return dsm__reply_after(ctx, nw, kind, old, NULL, 0, 0);
}

int dsm__reply_after(struct dsm__rpc_ctx *ctx, struct news *nw, int kind, int64_t old,
		     struct fwd_buf *fwd, unsigned writer, unsigned hops)
{
	struct pending *pd;
	bool any = false;
	unsigned h;

	for (h = 0; fwd && h < D->nodes; h++)
		any |= fwd[h].len > 0;
	if (!nw->total && !any)
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
	for (h = 0; fwd && h < D->nodes; h++) {
		struct dsm_rpc_diffs_req rq = { .writer = writer, .hops = hops,
			.data = { .ptr = fwd[h].data, .len = (uint32_t)fwd[h].len } };
		int e;

		if (!fwd[h].len)
			continue;
		pending_before(pd);
		e = dsm_rpc_diffs_async(D->rpc, h, &rq, pending_fwd_done, pd);
		if (e < 0)
			pending_fwd_done(pd, e, NULL);
	}
	pending_put(pd);
	return DSM__RPC_DEFERRED;
}
