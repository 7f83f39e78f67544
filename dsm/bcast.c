/*
 * Broadcast: dsm_bcast copies the root's bytes into every other node's
 * buffer (typically a pointer from dsm_malloc) and makes everything the
 * root wrote before visible to them: a release at the root, one bcast call
 * to every other node, an acquire at each receiver.
 *
 * Broadcasts are numbered per node in call order (every node calls
 * dsm_bcast in the same order); a receiver keeps what arrives early in a
 * list until its own call with that number takes it.
 *
 * Threads: application threads; the handler runs inline, queues the copy
 * under D->sync_mu and wakes the waiters.
 */
#include <inttypes.h>

#include "internal.h"

#define BCAST_MAX 16777216 /* bytes (dsm.rpc's bound) */

struct bcast_msg {
	struct bcast_msg *next;
	uint64_t seq;
	unsigned root;
	size_t len;
	uint8_t data[];
};

static struct {
	pthread_mutex_t mu;       /* seq */
	uint64_t seq;             /* this node's next broadcast number */
	struct bcast_msg *queue;  /* arrived, not taken yet; under D->sync_mu */
} BC;

int dsm__bcast_init(void)
{
	memset(&BC, 0, sizeof(BC));
	pthread_mutex_init(&BC.mu, NULL);
	return 0;
}

void dsm__bcast_fini(void)
{
	struct bcast_msg *b;

	while ((b = BC.queue)) {
		BC.queue = b->next;
		free(b);
	}
	pthread_mutex_destroy(&BC.mu);
}

int dsm__h_bcast(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_bcast_req *rq,
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
	for (pp = &BC.queue; *pp; pp = &(*pp)->next)
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

	for (pp = &BC.queue; *pp; pp = &(*pp)->next)
		if ((*pp)->seq == bw->seq) {
			bw->got = *pp;
			*pp = (*pp)->next;
			return true;
		}
	return false;
}


DSM_EXPORT int dsm_bcast(void *buf, size_t len, int root)
{
	uint64_t seq;
	int e = 0, e2;

	if (!D)
		return DSM_ECLOSED;
	if (root < 0 || (unsigned)root >= D->nodes || (len && !buf) || len > BCAST_MAX)
		return DSM_EINVAL;
	pthread_mutex_lock(&BC.mu);
	seq = BC.seq++;
	pthread_mutex_unlock(&BC.mu);
	if ((unsigned)root == D->rank) {
		struct dsm_rpc_bcast_req rq = { .seq = seq, .root = (uint32_t)root };
		struct waitgroup wg;
		unsigned r;

		rq.data.ptr = buf;
		rq.data.len = (uint32_t)len;
		e = dsm__release();
		dsm__wg_init(&wg);
		for (r = 0; r < D->nodes; r++) {
			if (r == D->rank)
				continue;
			dsm__wg_add(&wg);
			e2 = dsm_rpc_bcast_async(D->rpc, r, &rq, dsm__wg_done_cb, &wg);
			if (e2 < 0)
				dsm__wg_done(&wg, e2);
		}
		e2 = dsm__wg_wait(&wg);
		if (!e)
			e = e2;
	} else {
		struct bc_wait bw = { .seq = seq };

		e = dsm__wait_for(bc_arrived, &bw, (unsigned)root, WAIT_FROM);
		if (e)
			return e;
		if (bw.got->root != (unsigned)root || bw.got->len != len) {
			DSM__ERR("dsm_bcast number %" PRIu64 ": this node expects %zu bytes from "
				 "node %d, node %u sent %zu", seq, len, root, bw.got->root,
				 bw.got->len);
			e = DSM_EINVAL;
		} else {
			memcpy(buf, bw.got->data, len);
			e = dsm__acquire();
		}
		free(bw.got);
	}
	return e;
}

