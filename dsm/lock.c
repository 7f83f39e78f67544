/*
 * Locks: dsm_lock / dsm_unlock on 32-bit ids, and the lock manager.
 *
 * Lock id is managed by node id mod N, which keeps a record per lock in
 * use: held or free, its holder, and a FIFO queue of waiters. A remote
 * request is a lock call whose reply (the grant) is deferred while the lock
 * is held; a local request waits on D->sync_cv. An unlock is a one-way
 * message to the manager (it arrives after the node's lock request: the
 * channel keeps per-peer order). A lock whose holder dies goes to the next
 * waiter with DSM_EOWNERDEAD (like a robust mutex); queued requests of a
 * dead node are dropped (membership.c reports the death).
 *
 * The acquire (acquire.c) follows the grant, the release (release.c)
 * precedes the unlock: that is what makes locks synchronise memory.
 *
 * Threads: the handlers run inline on the receiving thread; the manager's
 * table is under lk_mu, the locks this node holds under held_mu (leaves).
 */
#include <inttypes.h>

#include "internal.h"

#define LOCK_BUCKETS 1024

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

/* A lock a thread of this node holds, or waits for. */
struct held_lock {
	uint32_t id;
	bool granted;
	pthread_t thread;
};

static struct {
	/* the manager: locks whose id mod N is this node */
	pthread_mutex_t mu;
	struct lk *bucket[LOCK_BUCKETS];
	size_t nrecords;          /* records in the table (dsm__lock_records) */
	/* the locks this node's threads hold or wait for */
	pthread_mutex_t held_mu;
	struct held_lock *held;
	size_t nheld, held_cap;
} L;

int dsm__lock_init(void)
{
	memset(&L, 0, sizeof(L));
	pthread_mutex_init(&L.mu, NULL);
	pthread_mutex_init(&L.held_mu, NULL);
	return 0;
}

void dsm__lock_fini(void)
{
	size_t i;

	for (i = 0; i < LOCK_BUCKETS; i++) {
		struct lk *l = L.bucket[i];

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
	free(L.held);
	pthread_mutex_destroy(&L.mu);
	pthread_mutex_destroy(&L.held_mu);
	memset(&L, 0, sizeof(L));
}

static struct lk **lk_bucket(uint32_t id)
{
	return &L.bucket[(id * 2654435761u) % LOCK_BUCKETS];
}

/* The record of lock id (L.mu held), made when create. */
static struct lk *lk_find(uint32_t id, bool create)
{
	struct lk **b = lk_bucket(id), *l;

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
	L.nrecords++;
	return l;
}

/* A record that says nothing (free, nobody waiting, no dead holder to
 * report) is freed: a program may use a lock per object (L.mu held). */
static void lk_forget_idle(struct lk *l)
{
	struct lk **pp;

	if (l->held || l->head || l->owner_died)
		return;
	for (pp = lk_bucket(l->id); *pp != l; pp = &(*pp)->next)
		;
	*pp = l->next;
	free(l);
	L.nrecords--;
}

size_t dsm__lock_records(void)
{
	size_t n;

	pthread_mutex_lock(&L.mu);
	n = L.nrecords;
	pthread_mutex_unlock(&L.mu);
	return n;
}

/* Manager: node asks for lock id. 1: granted now; 2: granted now, but the
 * previous holder died holding it; 0: queued (w is kept); negative: error. */
static int lk_request(uint32_t id, unsigned node, struct lk_waiter *w)
{
	struct lk *l;
	int r;

	pthread_mutex_lock(&L.mu);
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
	pthread_mutex_unlock(&L.mu);
	return r;
}

/* Manager: node released lock id; grant it to the next live waiter. */
static void lk_release(uint32_t id, unsigned node)
{
	struct lk *l;
	struct lk_waiter *w = NULL;

	pthread_mutex_lock(&L.mu);
	l = lk_find(id, false);
	if (!l || !l->held) {
		pthread_mutex_unlock(&L.mu);
		DSM__WARN("node %u released lock %u, which is not held", node, id);
		return;
	}
	for (;;) {
		w = l->head;
		if (!w) {
			l->held = false;
			lk_forget_idle(l);
			break;
		}
		l->head = w->next;
		if (!l->head)
			l->tail = NULL;
		if (w->lw || !dsm__peer_gone(w->node)) {
			l->holder = w->node;
			break;
		}
		/* its requester died: the token's reply goes nowhere */
		dsm_rpc_lock_reply(w->tok, DSM_EPEERDEAD, NULL);
		free(w);
	}
	pthread_mutex_unlock(&L.mu);
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
void dsm__lock_peer_gone(unsigned node)
{
	struct lk_waiter *grants = NULL, *w;
	size_t b;

	pthread_mutex_lock(&L.mu);
	for (b = 0; b < LOCK_BUCKETS; b++) {
		struct lk *l;

		for (l = L.bucket[b]; l; l = l->next) {
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
	pthread_mutex_unlock(&L.mu);
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

int dsm__h_lock(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_lock_req *rq,
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

int dsm__h_unlock(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_unlock_msg *m)
{
	lk_release(m->id, dsm__rpc_ctx_peer(ctx));
	return 0;
}

/* The held table (L.held_mu held): the entry of lock id for the calling
 * thread, or for any other thread that holds it (mine false), or -1. */
static ssize_t held_find(uint32_t id, bool mine)
{
	pthread_t self = pthread_self();
	size_t i;

	for (i = 0; i < L.nheld; i++)
		if (L.held[i].id == id &&
		    (mine ? pthread_equal(L.held[i].thread, self)
			  : L.held[i].granted && !pthread_equal(L.held[i].thread, self)))
			return (ssize_t)i;
	return -1;
}

/* The calling thread is about to ask for lock id: DSM_EDEADLK if it holds
 * it already, else an entry for it (not granted yet). */
static int held_begin(uint32_t id)
{
	int r = 0;

	pthread_mutex_lock(&L.held_mu);
	if (held_find(id, true) >= 0) {
		r = DSM_EDEADLK;
	} else if (L.nheld == L.held_cap) {
		size_t cap = L.held_cap ? L.held_cap * 2 : 16;
		struct held_lock *nh = realloc(L.held, cap * sizeof(*nh));

		if (!nh)
			r = DSM_ENOMEM;
		else {
			L.held = nh;
			L.held_cap = cap;
		}
	}
	if (!r)
		L.held[L.nheld++] = (struct held_lock){ .id = id, .thread = pthread_self() };
	pthread_mutex_unlock(&L.held_mu);
	return r;
}

/* The calling thread's request for id ended: granted, or not (the entry
 * goes). */
static void held_end(uint32_t id, bool granted)
{
	ssize_t i;

	pthread_mutex_lock(&L.held_mu);
	i = held_find(id, true);
	if (i >= 0) {
		if (granted)
			L.held[i].granted = true;
		else
			L.held[i] = L.held[--L.nheld];
	}
	pthread_mutex_unlock(&L.held_mu);
}

/* May the calling thread unlock id? 0; DSM_EPERM: another thread of this
 * node holds it; DSM_EINVAL: this node does not hold it. */
static int held_check(uint32_t id)
{
	ssize_t i;
	int r;

	pthread_mutex_lock(&L.held_mu);
	i = held_find(id, true);
	if (i >= 0 && L.held[i].granted)
		r = 0;
	else
		r = held_find(id, false) >= 0 ? DSM_EPERM : DSM_EINVAL;
	pthread_mutex_unlock(&L.held_mu);
	return r;
}

DSM_EXPORT int dsm_lock(uint32_t id)
{
	unsigned mgr;
	int64_t t0;
	int e;
	bool waited, owner_died = false;

	if (dsm__closed())
		return DSM_ECLOSED;
	e = held_begin(id);
	if (e)
		return e;
	t0 = dsm__now_ns();
	mgr = id % D->nodes;
	if (mgr == D->rank) {
		struct lwait lw = { 0 };
		struct lk_waiter w = { .node = D->rank, .lw = &lw };
		int r = lk_request(id, D->rank, &w);

		if (r < 0) {
			held_end(id, false);
			return r;
		}
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
		if (e && !owner_died) {
			held_end(id, false);
			return e;
		}
		waited = rp.waited != 0 || owner_died;
	}
	held_end(id, true);
	DSM__DEBUG("lock %u granted by node %u%s", id, mgr,
		   owner_died ? " (its holder died)" : waited ? " after waiting" : "");
	e = dsm__acquire();
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

	if (dsm__closed())
		return DSM_ECLOSED;
	e = held_check(id);
	if (e)
		return e;
	/* What the lock protected must reach its homes before anyone else
	 * takes it: if the release fails, the lock stays held (call
	 * dsm_unlock again). Writes to a home that died cannot be delivered
	 * at all: the lock is released, with DSM_EPEERDEAD. */
	e = dsm__release();
	if (e && e != DSM_EPEERDEAD)
		return e;
	held_end(id, false);
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

