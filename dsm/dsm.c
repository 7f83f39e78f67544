/*
 * The node's life cycle and statistics: dsm_init (bootstrap, the pager, the
 * per-page metadata, the arena, the network and the protocol's handlers),
 * dsm_finalize, dsm_rank, dsm_nodes, dsm_stats.
 *
 * The protocol itself lives in the other files of dsm/, one concept each
 * (internal.h has the map): home.c, fault.c, twin.c, news.c, release.c,
 * acquire.c, lock.c, barrier.c, tbarrier.c, bcast.c, atomic.c, alloc.c,
 * membership.c, wait.c; below them dsm/arena.c (allocation, placement) and
 * dsm/diff.c (the diff format).
 *
 * Threads: dsm_init and dsm_finalize from one application thread, while no
 * other thread uses the library; D is set once everything a handler needs
 * exists, and cleared before it is freed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>

#include "bootstrap.h"
#include "diff.h"
#include "internal.h"

struct dsm *D;

static int register_handlers(struct dsm__rpc *r)
{
	int e = dsm__rpc_add_procs(r, dsm_rpc_dsm_procs, DSM_RPC_DSM_NPROCS);

	if (!e)
		e = dsm_rpc_home_of_serve(r, dsm__h_home_of, NULL);
	if (!e)
		e = dsm_rpc_fetch_serve(r, dsm__h_fetch, NULL);
	if (!e)
		e = dsm_rpc_diffs_serve(r, dsm__h_diffs, NULL);
	if (!e)
		e = dsm_rpc_writer_news_serve(r, dsm__h_writer_news, NULL);
	if (!e)
		e = dsm_rpc_lock_serve(r, dsm__h_lock, NULL);
	if (!e)
		e = dsm_rpc_unlock_serve(r, dsm__h_unlock, NULL);
	if (!e)
		e = dsm_rpc_barrier_serve(r, dsm__h_barrier, NULL);
	if (!e)
		e = dsm_rpc_bcast_serve(r, dsm__h_bcast, NULL);
	if (!e)
		e = dsm_rpc_atomic_serve(r, dsm__h_atomic, NULL);
	if (!e)
		e = dsm_rpc_free_serve(r, dsm__h_free, NULL);
	if (!e)
		e = dsm_rpc_forget_serve(r, dsm__h_forget, NULL);
	if (!e)
		e = dsm_rpc_leaving_serve(r, dsm__h_leaving, NULL);
	if (!e)
		e = dsm_rpc_offer_serve(r, dsm__h_offer, NULL);
	if (!e)
		e = dsm_rpc_take_serve(r, dsm__h_take, NULL);
	if (!e)
		e = dsm_rpc_where_serve(r, dsm__h_where, NULL);
	return e;
}

/* The per-concept state (each file's init/fini pair), in order. */
static const struct {
	int (*init)(void);
	void (*fini)(void);
} parts[] = {
	{ dsm__twin_init, dsm__twin_fini },
	{ dsm__release_init, dsm__release_fini },
	{ dsm__acquire_init, dsm__acquire_fini },
	{ dsm__lock_init, dsm__lock_fini },
	{ dsm__barrier_init, dsm__barrier_fini },
	{ dsm__bcast_init, dsm__bcast_fini },
	{ dsm__ahead_init, dsm__ahead_fini },
};

/* Free what dsm_init made; parts[0 .. nparts) were initialised. */
static void teardown(struct dsm *d, size_t nparts)
{
	unsigned i;

	if (d->pg)
		dsm__pager_stop(d->pg);
	dsm__forget_stop();
	dsm__net_destroy(d->net);
	d->net = NULL;
	while (nparts--)
		parts[nparts].fini();
	dsm__pager_destroy(d->pg);
	dsm__arena_destroy(d->arena);
	if (d->meta)
		munmap(d->meta, d->meta_bytes);
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&d->stripe[i]);
	pthread_mutex_destroy(&d->release_mu);
	pthread_mutex_destroy(&d->sync_mu);
	pthread_cond_destroy(&d->sync_cv);
	free((void *)d->dead);
	free((void *)d->left);
	free((void *)d->leaving);
	free(d);
}

/* The shared region: the pager reserves it, each page gets its metadata,
 * this node its arena. */
static int region_create(struct dsm *d, const struct dsm_config *cfg)
{
	struct dsm__pager_cfg pcfg;
	int e = dsm__pager_cfg_from_env(&pcfg);

	if (e)
		return e;
	if (cfg && cfg->heap_size)
		pcfg.size = cfg->heap_size;
	if (cfg && cfg->pager)
		pcfg.backend = cfg->pager;
	pcfg.read_fault = dsm__cb_read_fault;
	pcfg.write_fault = dsm__cb_write_fault;
	pcfg.arg = d;
	e = dsm__pager_create(&pcfg, &d->pg);
	if (e)
		return e;
	d->base = (uintptr_t)dsm__pager_base(d->pg);
	d->size = dsm__pager_size(d->pg);
	d->ps = dsm__pager_page_size(d->pg);
	d->pshift = (unsigned)__builtin_ctzl(d->ps);
	d->npages = d->size >> d->pshift;
	if (d->ps > DSM_DIFF_MAX_PAGE) {
		DSM__ERR("page size %zu is larger than the diff format allows", d->ps);
		return DSM_ENOTSUP;
	}
	e = dsm__arena_region_init(&d->region, d->base, d->size, d->ps, (int)d->nodes);
	if (e) {
		DSM__ERR("DSM_HEAP_SIZE of %zu bytes is too small for %u nodes", d->size, d->nodes);
		return DSM_ECONFIG;
	}
	e = dsm__arena_create(&d->region, (int)d->rank, &d->arena);
	if (e)
		return e;
	d->meta_bytes = d->npages * sizeof(struct page_meta);
	d->meta = mmap(NULL, d->meta_bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (d->meta == MAP_FAILED) {
		d->meta = NULL;
		return DSM_ENOMEM;
	}
	return 0;
}

DSM_EXPORT int dsm_init(const struct dsm_config *cfg)
{
	struct dsm__net_cfg ncfg;
	struct dsm__net_cbs cbs = { .peer_event = dsm__on_peer_event };
	struct dsm *d;
	size_t nparts = 0;
	unsigned i;
	int e;

	if (dsm__pager_forked())
		return DSM_ECLOSED;
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
	e = dsm__placement_from_env(&d->placement);
	if (!e)
		e = dsm__migrate_init();
	if (e) {
		dsm__net_cfg_fini(&ncfg);
		free(d);
		return e;
	}
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_init(&d->stripe[i], NULL);
	pthread_mutex_init(&d->release_mu, NULL);
	pthread_mutex_init(&d->sync_mu, NULL);
	pthread_cond_init(&d->sync_cv, NULL);
	d->dead = calloc((d->nodes + 63) / 64, sizeof(*d->dead));
	d->left = calloc((d->nodes + 63) / 64, sizeof(*d->left));
	d->leaving = calloc((d->nodes + 63) / 64, sizeof(*d->leaving));
	if (!d->dead || !d->left || !d->leaving) {
		e = DSM_ENOMEM;
		goto fail;
	}
	e = region_create(d, cfg);
	if (e)
		goto fail;
	/* the parts and the handlers use D from here on */
	D = d;
	e = dsm__fault_init();
	/* a part whose init failed is finalised too (its fini frees what it
	 * made) */
	while (!e && nparts < DSM__ARRAY_SIZE(parts))
		e = parts[nparts++].init();
	if (e)
		goto fail;
	cbs.arg = d;
	e = dsm__net_create(&ncfg, &cbs, &d->net);
	if (e)
		goto fail;
	d->rpc = dsm__net_rpc(d->net);
	dsm__forget_init();
	e = register_handlers(d->rpc);
	if (e)
		goto fail;
	dsm__pager_set_fatal_handler(dsm__fatal_handler);
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
	dsm__pager_set_fatal_handler(NULL);
	if (d->pg)
		dsm__pager_stop(d->pg);
	dsm__net_destroy(d->net);
	d->net = NULL;
	dsm__net_cfg_fini(&ncfg);
	teardown(d, nparts);
	D = NULL;
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
		" atomics=%" PRIu64 " allocs=%" PRIu64 " frees=%" PRIu64
		" migrations_in=%" PRIu64 " migrations_out=%" PRIu64 " forwarded=%" PRIu64
		" redirects=%" PRIu64 "\n",
		D->rank, s.read_faults, s.write_faults, s.pages_fetched, s.prefetched,
		s.pages_served, s.diffs_sent, s.diff_bytes, s.diffs_applied, s.invalidations,
		s.notices, s.lock_acquires, s.lock_waits, s.lock_ns / 1e6, s.barriers,
		s.barrier_ns / 1e6, s.atomics, s.allocs, s.frees, s.migrations_in,
		s.migrations_out, s.forwarded, s.redirects);
}

DSM_EXPORT int dsm_finalize(void)
{
	struct dsm *d = D;
	int e, e2;

	if (dsm__closed())
		return DSM_ECLOSED;
	e = dsm__release();
	/* A node still waiting for a broadcast from us (its barrier saw our
	 * finalize rounds, not the death that failed ours) must not wait for
	 * us while we wait for it. */
	dsm__leaving_announce();
	e2 = dsm__barrier_rounds(true);
	if (!e)
		e = e2;
	if (!e && dsm__any_dead())
		e = DSM_EPEERDEAD;
	if (d->stats_at_exit)
		print_stats();
	/* no more faults are served: nothing of the region is touched now;
	 * no handler runs once the net layer is gone */
	dsm__forget_stop();
	dsm__net_destroy(d->net);
	d->net = NULL;
	dsm__pager_stop(d->pg);
	dsm__pager_set_fatal_handler(NULL);
	teardown(d, DSM__ARRAY_SIZE(parts));
	D = NULL;
	return e;
}

DSM_EXPORT int dsm_rank(void)
{
	return dsm__closed() ? -1 : (int)D->rank;
}

DSM_EXPORT int dsm_nodes(void)
{
	return dsm__closed() ? 0 : (int)D->nodes;
}

DSM_EXPORT int dsm_stats(struct dsm_stats *out)
{
	struct dsm__net_stats ns;

	if (!out)
		return DSM_EINVAL;
	if (dsm__closed())
		return DSM_ECLOSED;
	memset(out, 0, sizeof(*out));
#define CP(f) out->f = atomic_load_explicit(&D->st.f, memory_order_relaxed)
	CP(read_faults); CP(write_faults); CP(pages_fetched); CP(pages_served);
	CP(prefetched); CP(diffs_sent); CP(diff_bytes); CP(diffs_applied);
	CP(invalidations); CP(notices); CP(lock_acquires); CP(lock_waits); CP(lock_ns);
	CP(barriers); CP(barrier_ns); CP(atomics); CP(allocs); CP(frees);
	CP(migrations_in); CP(migrations_out); CP(forwarded); CP(redirects);
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
