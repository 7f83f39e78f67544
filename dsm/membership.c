/*
 * Membership: which nodes are gone. The net layer's failure detector
 * reports peer events (net/chan.h: a peer declared dead, a peer that left
 * cleanly, or we ourselves excluded); this file keeps them in two bitmaps
 * (D->dead, D->left) that every wait and every send consults, hands the
 * lock manager its part (locks held or awaited by the dead node), wakes
 * every waiter, and answers dsm_dead_ranks. A third bitmap (D->leaving)
 * holds the nodes that said they are in dsm_finalize (the leaving message):
 * a broadcast does not wait for them.
 *
 * Threads: the events arrive on the network thread (or a thread receiving
 * for its reply); the bitmaps are read lock-free from any thread. A node
 * never comes back: the sets only grow until dsm_finalize.
 */
#include <inttypes.h>

#include "internal.h"

bool dsm__peer_gone(unsigned r)
{
	return (atomic_load(&D->dead[r / 64]) | atomic_load(&D->left[r / 64])) &
	       (1ull << (r % 64));
}

bool dsm__any_dead(void)
{
	unsigned i;

	for (i = 0; i < (D->nodes + 63) / 64; i++)
		if (atomic_load(&D->dead[i]))
			return true;
	return false;
}

static void mark_gone(_Atomic uint64_t *set, unsigned r)
{
	atomic_fetch_or(&set[r / 64], 1ull << (r % 64));
}

bool dsm__peer_leaving(unsigned r)
{
	return atomic_load(&D->leaving[r / 64]) & (1ull << (r % 64));
}

void dsm__leaving_announce(void)
{
	struct dsm_rpc_leaving_msg m = { 0 };
	unsigned r;

	for (r = 0; r < D->nodes; r++)
		if (r != D->rank && !dsm__peer_gone(r))
			(void)dsm_rpc_leaving_send(D->rpc, r, &m);
}

int dsm__h_leaving(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_leaving_msg *m)
{
	(void)m;
	mark_gone(D->leaving, dsm__rpc_ctx_peer(ctx));
	dsm__sync_wake();
	return 0;
}

void dsm__on_peer_event(void *arg, unsigned peer, int event)
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
			dsm__lock_peer_gone(peer);
	}
	DSM__DEBUG("node %u %s", peer, event == DSM__PEER_LEFT ? "left" :
		   event == DSM__PEER_DEAD ? "is dead" : "excluded us");
	pthread_mutex_lock(&d->sync_mu);
	pthread_cond_broadcast(&d->sync_cv);
	pthread_mutex_unlock(&d->sync_mu);
}

DSM_EXPORT int dsm_dead_ranks(int *ranks, int max)
{
	unsigned r;
	int n = 0;

	if (dsm__closed())
		return 0;
	for (r = 0; r < D->nodes; r++)
		if (r != D->rank && dsm__peer_gone(r)) {
			if (ranks && n < max)
				ranks[n] = (int)r;
			n++;
		}
	return n;
}
