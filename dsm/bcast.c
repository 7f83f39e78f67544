/*
 * Broadcast: dsm_bcast copies the root's bytes into every other node's
 * buffer (typically a pointer from dsm_malloc) and makes everything the
 * root wrote before visible to them: a release at the root, the data to
 * every other node, an acquire at each receiver.
 *
 * Broadcasts are numbered per node in call order (every node calls
 * dsm_bcast in the same order). Every node, root or not, tells every other
 * node the root and length it was called with (the root's message carries
 * the data) and waits for the messages of the others (of those still
 * alive; a dead root fails it with DSM_EPEERDEAD): so every node sees the
 * same declarations, and a program that calls dsm_bcast with
 * different roots or lengths on different nodes gets DSM_EINVAL on every
 * node instead of a silent success or a hang. What arrives early waits in
 * a queue until the node's own call with that number takes it.
 *
 * Threads: application threads; the handler runs inline, queues the
 * message under D->sync_mu and wakes the waiters.
 */
#include <inttypes.h>

#include "internal.h"

#define BCAST_MAX 16777216 /* bytes (dsm.rpc's bound) */

/* One node's message of a broadcast. */
struct bcast_msg {
	struct bcast_msg *next;
	uint64_t seq;
	unsigned from, root; /* the sender, and the root it was called with */
	size_t len;          /* the length it was called with */
	uint8_t data[];      /* from the root: the len bytes */
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

int dsm__h_bcast(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_bcast_msg *m)
{
	unsigned from = dsm__rpc_ctx_peer(ctx);
	struct bcast_msg *b, **pp;

	/* only the root sends data, all of it */
	if (m->root == from ? m->data.len != m->len : m->data.len != 0)
		return DSM_EPROTO;
	b = malloc(sizeof(*b) + m->data.len);
	if (!b)
		return DSM_ENOMEM;
	b->seq = m->seq;
	b->from = from;
	b->root = m->root;
	b->len = m->len;
	memcpy(b->data, m->data.ptr, m->data.len);
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
};

/* Called with sync_mu held (dsm__wait_for): has the message of this
 * broadcast arrived from every other node that is not gone? (A node that
 * died, or that is in dsm_finalize, declares nothing more; the others go
 * on without it.) */
static bool bc_arrived(void *arg)
{
	struct bc_wait *bw = arg;
	struct bcast_msg *b;
	unsigned r;

	for (r = 0; r < D->nodes; r++) {
		for (b = BC.queue; b && !(b->seq == bw->seq && b->from == r); b = b->next)
			;
		if (!b && r != D->rank && !dsm__peer_gone(r) && !dsm__peer_leaving(r))
			return false;
	}
	return true;
}

/* Take the messages of broadcast seq off the queue (sync_mu held). */
static struct bcast_msg *bc_take(uint64_t seq)
{
	struct bcast_msg **pp = &BC.queue, *got = NULL, *b;

	while ((b = *pp)) {
		if (b->seq == seq) {
			*pp = b->next;
			b->next = got;
			got = b;
		} else {
			pp = &b->next;
		}
	}
	return got;
}

DSM_EXPORT int dsm_bcast(void *buf, size_t len, int root)
{
	struct dsm_rpc_bcast_msg m;
	struct bc_wait bw;
	struct bcast_msg *got, *b, *data = NULL;
	bool me_root;
	unsigned r;
	int e = 0, e2;

	if (dsm__closed())
		return DSM_ECLOSED;
	if (root < 0 || (unsigned)root >= D->nodes || (len && !buf) || len > BCAST_MAX)
		return DSM_EINVAL;
	me_root = (unsigned)root == D->rank;
	pthread_mutex_lock(&BC.mu);
	bw.seq = BC.seq++;
	pthread_mutex_unlock(&BC.mu);
	m = (struct dsm_rpc_bcast_msg){ .seq = bw.seq, .root = (uint32_t)root, .len = len };
	if (me_root) {
		m.data.ptr = buf;
		m.data.len = (uint32_t)len;
		e = dsm__release();
	}
	/* A node that is gone gets nothing: a receiver need not reach it, but
	 * a root that could not reach every node says so (DSM_EPEERDEAD). */
	for (r = 0; r < D->nodes; r++) {
		if (r == D->rank)
			continue;
		e2 = dsm__peer_gone(r) ? DSM_EPEERDEAD : dsm_rpc_bcast_send(D->rpc, r, &m);
		if (e2 && !e && (me_root || e2 != DSM_EPEERDEAD))
			e = e2;
	}
	e2 = dsm__wait_for(bc_arrived, &bw, (unsigned)root, WAIT_FROM);
	if (e2 && !e)
		e = e2;
	pthread_mutex_lock(&D->sync_mu);
	got = bc_take(bw.seq);
	pthread_mutex_unlock(&D->sync_mu);
	/* Every node sees the same declarations besides its own (of the
	 * nodes alive), so a mismatch fails the broadcast on every node
	 * alike. */
	for (b = got; b && !e; b = b->next) {
		if (b->root != (unsigned)root || b->len != len) {
			DSM__ERR("dsm_bcast number %" PRIu64 ": this node was called with root %d "
				 "and %zu bytes, node %u with root %u and %zu bytes", bw.seq, root,
				 len, b->from, b->root, b->len);
			e = DSM_EINVAL;
		} else if (b->from == (unsigned)root) {
			data = b;
		}
	}
	if (!e && !me_root && !data)
		e = dsm__peer_gone((unsigned)root) || dsm__peer_leaving((unsigned)root)
			    ? DSM_EPEERDEAD : DSM_EPROTO;
	if (!e && !me_root) {
		memcpy(buf, data->data, len);
		e = dsm__acquire();
	}
	while ((b = got)) {
		got = b->next;
		free(b);
	}
	return e;
}
