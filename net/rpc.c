/*
 * RPC runtime (see rpc.h for the contract).
 *
 * Outstanding calls live in a per-peer table (open addressing on the
 * request id, one lock per peer), so a reply, a timeout or the death of a
 * peer finds them without any global lock.
 *
 * A synchronous caller spins briefly on its call (receiving what has
 * arrived itself, dsm__chan_progress_try), then sleeps on a futex; the
 * receiving thread decodes the reply straight into the caller's struct
 * (through the caller's struct dsm__rpc_reply when the reply has bytes
 * fields) and wakes it. The receiving thread is whichever holds the
 * channel's receive lock: the network thread or a waiting caller, one at
 * a time. Requests whose procedure is inline run on it; the others are
 * copied into a job taken from a free list and handed to the worker pool
 * through a liburcu wfcqueue. Both the job queue and the free list are
 * wfcqueues: enqueue is wait-free; the free list has one consumer at a
 * time (the receiving thread, serialised by the channel's receive lock),
 * the job queue several (the workers, serialised by a mutex only among
 * themselves, as liburcu asks).
 */
#include "rpc.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <urcu/wfcqueue.h>

#include "chan.h"
#include "common.h"
#include "wire.h"

#define CALLS 1024u          /* outstanding calls per peer (power of two) */
#define JOB_INLINE 8192u     /* request bytes a pooled job holds */
#define JOBS 256u            /* pooled jobs */

/* A sync call's state. The completer publishes C_DONE with one exchange and
 * touches the call no more (it lives on the caller's stack, which may be
 * gone the moment C_DONE is visible); it wakes the futex only if the caller
 * announced it sleeps. A wake on a reused address is a spurious wake-up,
 * which every futex waiter tolerates. */
enum { C_WAITING = 0, C_SLEEPING = 1, C_DONE = 2 };

_Static_assert((CALLS & (CALLS - 1)) == 0, "CALLS is a power of two");

struct call {
	uint64_t id;
	unsigned peer;
	const struct dsm__rpc_proc *p;
	/* sync */
	void *rep;
	struct dsm__rpc_reply *keep;
	atomic_uint state;     /* futex word: C_WAITING, C_SLEEPING, C_DONE */
	int status;
	bool async;
	/* async */
	dsm__rpc_done_fn cb;
	void *arg;
};

struct rpc_peer {
	pthread_mutex_t lock;
	uint64_t next_id;        /* protected by lock */
	unsigned n;              /* calls in the table */
	bool dead;
	struct call *tab[CALLS];
};

struct job {
	struct cds_wfcq_node node;
	/* Released before every enqueue, acquired after every dequeue: the
	 * queue already orders these accesses (liburcu's uatomic), this says
	 * so in a form ThreadSanitizer understands. Free on x86. */
	atomic_uint handoff;
	unsigned peer;
	size_t len;
	uint8_t *data;           /* inl, or heap for large requests */
	bool pooled;
	uint8_t inl[JOB_INLINE];
};

struct handler {
	dsm__rpc_fn fn;
	void *arg;
};

struct dsm__rpc_ctx {
	struct dsm__rpc *r;
	unsigned peer;
	uint64_t id;
	const struct dsm__rpc_proc *p;
	void *arg;
	bool deferred;
};

struct dsm__rpc_token {
	struct dsm__rpc *r;
	unsigned peer;
	uint64_t id;
	const struct dsm__rpc_proc *p;
};

struct stats {
	atomic_uint_fast64_t calls, replies_ok, replies_err, timeouts, peer_dead;
	atomic_uint_fast64_t handled_inline, handled_worker, job_allocs;
	atomic_uint_fast64_t unknown_proc, bad_message;
};

struct dsm__rpc {
	unsigned nodes, rank;
	struct dsm__chan *chan;
	const struct dsm__rpc_proc *procs[DSM__RPC_MAX_PROC + 1];
	struct handler handlers[DSM__RPC_MAX_PROC + 1];
	struct rpc_peer *peers;
	/* worker pool */
	struct cds_wfcq_head q_head;
	struct cds_wfcq_tail q_tail;
	pthread_mutex_t q_lock;        /* among workers only */
	struct cds_wfcq_head free_head;
	struct cds_wfcq_tail free_tail;
	struct job *jobs;
	atomic_uint work_seq;          /* futex word: bumped per enqueue */
	atomic_uint idle;              /* workers asleep */
	atomic_bool stop;
	int nworkers;
	pthread_t *workers;
	int64_t spin_ns;               /* a sync caller polls this long, then sleeps */
	struct stats st;
	/* test seam (dsm__rpc_set_fault) */
	_Atomic(dsm__rpc_fault_fn) fault_fn;
	void *_Atomic fault_arg;
};

#define STAT(r, f) atomic_fetch_add_explicit(&(r)->st.f, 1, memory_order_relaxed)

static long futex(atomic_uint *addr, int op, unsigned val, const struct timespec *ts)
{
	return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

/* ---- per-thread encode buffer: no allocation per call ------------------ */

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static __thread uint8_t *tls_buf;
static __thread size_t tls_cap;

static void tls_free(void *p)
{
	free(p);
}

static void tls_init(void)
{
	pthread_key_create(&tls_key, tls_free);
}

static uint8_t *scratch(size_t n)
{
	if (n > tls_cap) {
		size_t cap = n < 65536 ? 65536 : n;
		uint8_t *b = realloc(tls_buf, cap);

		if (!b)
			return NULL;
		pthread_once(&tls_once, tls_init);
		tls_buf = b;
		tls_cap = cap;
		pthread_setspecific(tls_key, b);
	}
	return tls_buf;
}

static void put_hdr(uint8_t *b, uint16_t proc, uint8_t kind, int32_t status, uint64_t id)
{
	dsm__put_le16(b, proc);
	b[2] = kind;
	b[3] = 0;
	dsm__put_le32(b + 4, (uint32_t)status);
	dsm__put_le64(b + 8, id);
}

/* Encode header + body with enc into the thread's scratch and send. */
static int send_msg(struct dsm__rpc *r, unsigned peer, uint16_t proc, uint8_t kind,
		    int32_t status, uint64_t id, size_t (*size)(const void *),
		    int (*enc)(const void *, uint8_t *, size_t), const void *body)
{
	size_t blen = body ? size(body) : 0;
	uint8_t *b = scratch(DSM__RPC_HDR_SIZE + blen);
	struct iovec v;
	int n = 0;

	if (!b)
		return DSM_ENOMEM;
	put_hdr(b, proc, kind, status, id);
	if (body) {
		n = enc(body, b + DSM__RPC_HDR_SIZE, blen);
		if (n < 0)
			return n;
	}
	v.iov_base = b;
	v.iov_len = DSM__RPC_HDR_SIZE + (size_t)n;
	return dsm__chan_send(r->chan, peer, &v, 1);
}

/* ---- call table ---------------------------------------------------------- */

/* Insert c with a fresh id. Peer lock held. */
static int tab_insert(struct rpc_peer *rp, struct call *c)
{
	if (rp->dead)
		return DSM_EPEERDEAD;
	if (rp->n == CALLS - 1)
		return DSM_EAGAIN;
	for (;;) {
		uint64_t id = ++rp->next_id;
		unsigned i = (unsigned)id & (CALLS - 1);

		/* linear probe from the id's home slot */
		for (unsigned k = 0; k < CALLS; k++, i = (i + 1) & (CALLS - 1)) {
			if (!rp->tab[i]) {
				c->id = id;
				rp->tab[i] = c;
				rp->n++;
				return 0;
			}
		}
	}
}

/* Remove and return the call with id, or NULL. Peer lock held. Keeps the
 * probe chains intact by re-inserting the rest of the cluster. */
static struct call *tab_take(struct rpc_peer *rp, uint64_t id)
{
	unsigned i = (unsigned)id & (CALLS - 1);
	struct call *c = NULL;

	for (unsigned k = 0; k < CALLS; k++, i = (i + 1) & (CALLS - 1)) {
		if (!rp->tab[i])
			return NULL;
		if (rp->tab[i]->id == id) {
			c = rp->tab[i];
			rp->tab[i] = NULL;
			rp->n--;
			break;
		}
	}
	if (!c)
		return NULL;
	for (i = (i + 1) & (CALLS - 1); rp->tab[i]; i = (i + 1) & (CALLS - 1)) {
		struct call *m = rp->tab[i];
		unsigned j = (unsigned)m->id & (CALLS - 1);

		rp->tab[i] = NULL;
		while (rp->tab[j])
			j = (j + 1) & (CALLS - 1);
		rp->tab[j] = m;
	}
	return c;
}

/* Finish a call taken out of the table: store the status, wake or call
 * back. For a sync call this is the last touch of c (it lives on the
 * caller's stack). */
static void complete(struct dsm__rpc *r, struct call *c, int status, const void *rep)
{
	if (status == 0)
		STAT(r, replies_ok);
	else
		STAT(r, replies_err);
	if (c->async) {
		c->cb(c->arg, status, status ? NULL : rep);
		free(c);
		return;
	}
	c->status = status;
	if (atomic_exchange_explicit(&c->state, C_DONE, memory_order_acq_rel) == C_SLEEPING)
		futex(&c->state, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* ---- client side ------------------------------------------------------- */

void dsm__rpc_set_fault(struct dsm__rpc *r, dsm__rpc_fault_fn fn, void *arg)
{
	atomic_store(&r->fault_arg, arg);
	atomic_store(&r->fault_fn, fn);
}

/* The test seam's verdict on sending p to peer: 0 or its error. */
static inline int injected(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p)
{
	dsm__rpc_fault_fn fn = atomic_load_explicit(&r->fault_fn, memory_order_relaxed);
	int e;

	if (DSM__LIKELY(!fn))
		return 0;
	e = fn(atomic_load(&r->fault_arg), peer, p);
	return e < 0 ? e : 0;
}

static int start_call(struct dsm__rpc *r, unsigned peer, struct call *c, const void *req)
{
	struct rpc_peer *rp;
	int e;

	if (!r || !r->chan || peer >= r->nodes || peer == r->rank || !c->p)
		return DSM_EINVAL;
	e = injected(r, peer, c->p);
	if (e)
		return e;
	rp = &r->peers[peer];
	pthread_mutex_lock(&rp->lock);
	e = tab_insert(rp, c);
	pthread_mutex_unlock(&rp->lock);
	if (e)
		return e;
	STAT(r, calls);
	e = send_msg(r, peer, c->p->id, DSM__RPC_REQ, 0, c->id, c->p->req_size,
		     c->p->req_encode, req);
	if (e) {
		struct call *t;

		pthread_mutex_lock(&rp->lock);
		t = tab_take(rp, c->id);
		pthread_mutex_unlock(&rp->lock);
		if (!t) {
			/* the peer died meanwhile and completed it: status is set */
			return DSM__RPC_DEFERRED;
		}
		return e;
	}
	return 0;
}

int dsm__rpc_call(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
		  const void *req, void *rep, struct dsm__rpc_reply *keep, int timeout_ms)
{
	struct call c = { .peer = peer, .p = p, .rep = rep, .keep = keep };
	int64_t start, deadline;
	int e;

	if (!p || (p->flags & DSM__RPC_F_ONEWAY) || !rep)
		return DSM_EINVAL;
	if (keep) {
		keep->buf = NULL;
		keep->len = 0;
		keep->priv = NULL;
	}
	e = start_call(r, peer, &c, req);
	if (e == DSM__RPC_DEFERRED) {
		/* completed by a peer-death while we were sending */
		while (atomic_load_explicit(&c.state, memory_order_acquire) != C_DONE)
			;
		return c.status;
	}
	if (e)
		return e;
	start = dsm__now_ns();
	deadline = timeout_ms < 0 ? INT64_MAX : start + (int64_t)timeout_ms * 1000000;
	while (atomic_load_explicit(&c.state, memory_order_acquire) != C_DONE) {
		int64_t now = dsm__now_ns();
		unsigned expect = C_WAITING;
		struct timespec ts;

		if (now - start < r->spin_ns) {
			/* take the reply ourselves if it is there */
			/* Yield, do not just pause: with as many busy threads
			 * as CPUs, the thread that would answer may be waiting
			 * for this very CPU (a wake-affine scheduler puts
			 * threads that talk to each other together), and a pure
			 * spin then costs the whole spin every round trip. */
			if (!dsm__chan_progress_try(r->chan))
				sched_yield();
			continue;
		}
		if (now >= deadline) {
			struct rpc_peer *rp = &r->peers[peer];
			struct call *t;

			pthread_mutex_lock(&rp->lock);
			t = tab_take(rp, c.id);
			pthread_mutex_unlock(&rp->lock);
			if (t) {
				STAT(r, timeouts);
				return DSM_ETIMEDOUT;
			}
			/* being completed right now: wait for it */
			while (atomic_load_explicit(&c.state, memory_order_acquire) != C_DONE)
				;
			break;
		}
		if (!atomic_compare_exchange_strong_explicit(&c.state, &expect, C_SLEEPING,
							     memory_order_acq_rel,
							     memory_order_acquire) &&
		    expect == C_DONE)
			break;
		if (deadline == INT64_MAX) {
			futex(&c.state, FUTEX_WAIT_PRIVATE, C_SLEEPING, NULL);
		} else {
			int64_t left = deadline - now;

			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			futex(&c.state, FUTEX_WAIT_PRIVATE, C_SLEEPING, &ts);
		}
	}
	return c.status;
}

int dsm__rpc_call_async(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
			const void *req, dsm__rpc_done_fn done, void *arg)
{
	struct call *c;
	int e;

	if (!p || (p->flags & DSM__RPC_F_ONEWAY) || !done)
		return DSM_EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return DSM_ENOMEM;
	c->peer = peer;
	c->p = p;
	c->async = true;
	c->cb = done;
	c->arg = arg;
	e = start_call(r, peer, c, req);
	if (e == DSM__RPC_DEFERRED)
		return 0; /* already completed (and freed) with EPEERDEAD */
	if (e)
		free(c);
	return e;
}

int dsm__rpc_send(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
		  const void *msg)
{
	int e;

	if (!r || !r->chan || !p || !(p->flags & DSM__RPC_F_ONEWAY) || peer >= r->nodes ||
	    peer == r->rank)
		return DSM_EINVAL;
	e = injected(r, peer, p);
	if (e)
		return e;
	return send_msg(r, peer, p->id, DSM__RPC_ONEWAY, 0, 0, p->req_size, p->req_encode, msg);
}

void dsm__rpc_reply_release(struct dsm__rpc_reply *keep)
{
	if (!keep)
		return;
	if (keep->buf && keep->buf != keep->inl)
		free(keep->buf);
	keep->buf = NULL;
	keep->len = 0;
}

/* A reply arrived (receiving thread). */
static void on_reply(struct dsm__rpc *r, unsigned peer, uint16_t proc, int32_t status,
		     uint64_t id, const uint8_t *body, size_t blen)
{
	struct rpc_peer *rp = &r->peers[peer];
	struct call *c;
	int st = status;

	pthread_mutex_lock(&rp->lock);
	c = tab_take(rp, id);
	pthread_mutex_unlock(&rp->lock);
	if (!c)
		return; /* timed out already */
	if (c->p->id != proc) {
		STAT(r, bad_message);
		complete(r, c, DSM_EPROTO, NULL);
		return;
	}
	if (st > 0 || st <= DSM_ERRNO_MIN)
		st = DSM_EPROTO;
	if (st == 0 && c->async) {
		/* decode into a stack copy; bytes point into the message,
		 * valid during the callback */
		uint8_t rep[c->p->rep_struct_size ? c->p->rep_struct_size : 1];

		memset(rep, 0, sizeof(rep));
		if (c->p->rep_decode(rep, body, blen) < 0) {
			STAT(r, bad_message);
			complete(r, c, DSM_EPROTO, NULL);
			return;
		}
		complete(r, c, 0, rep);
		return;
	}
	if (st == 0) {
		const uint8_t *src = body;

		if (c->keep) {
			struct dsm__rpc_reply *k = c->keep;

			k->buf = blen <= sizeof(k->inl) ? k->inl : malloc(blen ? blen : 1);
			if (!k->buf) {
				complete(r, c, DSM_ENOMEM, NULL);
				return;
			}
			memcpy(k->buf, body, blen);
			k->len = blen;
			src = k->buf;
		}
		if (c->p->rep_decode(c->rep, src, blen) < 0) {
			STAT(r, bad_message);
			if (c->keep)
				dsm__rpc_reply_release(c->keep);
			st = DSM_EPROTO;
		}
	}
	complete(r, c, st, c->rep);
}

/* ---- server side ------------------------------------------------------- */

unsigned dsm__rpc_ctx_peer(const struct dsm__rpc_ctx *ctx)
{
	return ctx->peer;
}

void *dsm__rpc_ctx_arg(const struct dsm__rpc_ctx *ctx)
{
	return ctx->arg;
}

struct dsm__rpc_token *dsm__rpc_defer(struct dsm__rpc_ctx *ctx)
{
	struct dsm__rpc_token *t;

	if (ctx->deferred || (ctx->p->flags & DSM__RPC_F_ONEWAY))
		return NULL;
	t = malloc(sizeof(*t));
	if (!t)
		return NULL;
	t->r = ctx->r;
	t->peer = ctx->peer;
	t->id = ctx->id;
	t->p = ctx->p;
	ctx->deferred = true;
	return t;
}

static int send_reply(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
		      uint64_t id, int status, const void *rep)
{
	if (status == 0)
		return send_msg(r, peer, p->id, DSM__RPC_REP, 0, id, p->rep_size, p->rep_encode, rep);
	return send_msg(r, peer, p->id, DSM__RPC_REP, status, id, NULL, NULL, NULL);
}

int dsm__rpc_reply_deferred(struct dsm__rpc_token *t, int status, const void *rep)
{
	int e;

	if (!t)
		return DSM_EINVAL;
	if (status > 0)
		status = DSM_EINVAL;
	e = send_reply(t->r, t->peer, t->p, t->id, status, rep);
	free(t);
	return e;
}

/* Decode a request, run its handler, send the reply. Any thread. */
static void handle(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
		   uint8_t kind, uint64_t id, const uint8_t *body, size_t blen)
{
	struct handler *h = &r->handlers[p->id];
	struct dsm__rpc_ctx ctx = { r, peer, id, p, h->arg, false };
	uint8_t req[p->req_struct_size ? p->req_struct_size : 1];
	uint8_t rep[p->rep_struct_size ? p->rep_struct_size : 1];
	bool oneway = (p->flags & DSM__RPC_F_ONEWAY) != 0;
	int st;

	if ((kind == DSM__RPC_ONEWAY) != oneway) {
		STAT(r, bad_message);
		return;
	}
	memset(req, 0, sizeof(req));
	if (p->req_decode(req, body, blen) < 0) {
		STAT(r, bad_message);
		if (!oneway)
			send_reply(r, peer, p, id, DSM_EPROTO, NULL);
		return;
	}
	if (!h->fn) {
		STAT(r, unknown_proc);
		if (!oneway)
			send_reply(r, peer, p, id, DSM_ENOENT, NULL);
		return;
	}
	memset(rep, 0, sizeof(rep));
	st = p->invoke(h->fn, &ctx, req, oneway ? NULL : rep);
	if (oneway)
		return;
	if (st == DSM__RPC_DEFERRED && ctx.deferred)
		return;
	if (st > 0)
		st = DSM_EPROTO; /* a handler bug: do not leave the caller waiting */
	send_reply(r, peer, p, id, st, rep);
}

static struct job *job_get(struct dsm__rpc *r, size_t len)
{
	struct cds_wfcq_node *n = NULL;
	struct job *j;

	if (len <= JOB_INLINE)
		n = __cds_wfcq_dequeue_nonblocking(&r->free_head, &r->free_tail);
	if (n && n != CDS_WFCQ_WOULDBLOCK) {
		j = caa_container_of(n, struct job, node);
		(void)atomic_load_explicit(&j->handoff, memory_order_acquire);
		/* a dequeued node keeps its old next: enqueue needs it NULL */
		cds_wfcq_node_init(&j->node);
		j->data = j->inl;
		return j;
	}
	STAT(r, job_allocs);
	j = malloc(sizeof(*j) - JOB_INLINE + (len > JOB_INLINE ? len : JOB_INLINE));
	if (!j)
		return NULL;
	cds_wfcq_node_init(&j->node);
	j->pooled = false;
	j->data = j->inl;
	return j;
}

static void job_put(struct dsm__rpc *r, struct job *j)
{
	if (!j->pooled) {
		free(j);
		return;
	}
	cds_wfcq_node_init(&j->node);
	atomic_fetch_add_explicit(&j->handoff, 1, memory_order_release);
	cds_wfcq_enqueue(&r->free_head, &r->free_tail, &j->node);
}

static void *worker(void *arg)
{
	struct dsm__rpc *r = arg;

	while (!atomic_load_explicit(&r->stop, memory_order_acquire)) {
		unsigned seq = atomic_load_explicit(&r->work_seq, memory_order_acquire);
		struct cds_wfcq_node *n;

		pthread_mutex_lock(&r->q_lock);
		n = __cds_wfcq_dequeue_nonblocking(&r->q_head, &r->q_tail);
		pthread_mutex_unlock(&r->q_lock);
		if (n == CDS_WFCQ_WOULDBLOCK)
			continue; /* an enqueue is half done: retry at once */
		if (!n) {
			atomic_fetch_add(&r->idle, 1);
			if (atomic_load(&r->work_seq) == seq && !atomic_load(&r->stop))
				futex(&r->work_seq, FUTEX_WAIT_PRIVATE, seq, NULL);
			atomic_fetch_sub(&r->idle, 1);
			continue;
		}
		struct job *j = caa_container_of(n, struct job, node);
		uint16_t proc;

		(void)atomic_load_explicit(&j->handoff, memory_order_acquire);
		proc = dsm__get_le16(j->data);
		uint8_t kind = j->data[2];
		uint64_t id = dsm__get_le64(j->data + 8);

		STAT(r, handled_worker);
		handle(r, j->peer, r->procs[proc], kind, id, j->data + DSM__RPC_HDR_SIZE,
		       j->len - DSM__RPC_HDR_SIZE);
		job_put(r, j);
	}
	return NULL;
}

/* A message from the channel (receiving thread). */
void dsm__rpc_on_message(void *arg, unsigned peer, const uint8_t *msg, size_t len)
{
	struct dsm__rpc *r = arg;
	const struct dsm__rpc_proc *p;
	uint16_t proc;
	uint8_t kind;
	int32_t status;
	uint64_t id;
	struct job *j;

	if (len < DSM__RPC_HDR_SIZE || msg[3] != 0) {
		STAT(r, bad_message);
		return;
	}
	proc = dsm__get_le16(msg);
	kind = msg[2];
	status = (int32_t)dsm__get_le32(msg + 4);
	id = dsm__get_le64(msg + 8);
	if (kind == DSM__RPC_REP) {
		on_reply(r, peer, proc, status, id, msg + DSM__RPC_HDR_SIZE, len - DSM__RPC_HDR_SIZE);
		return;
	}
	if (kind > DSM__RPC_ONEWAY) {
		STAT(r, bad_message);
		return;
	}
	if (proc > DSM__RPC_MAX_PROC || !(p = r->procs[proc])) {
		STAT(r, unknown_proc);
		if (kind == DSM__RPC_REQ)
			send_msg(r, peer, proc, DSM__RPC_REP, DSM_ENOENT, id, NULL, NULL, NULL);
		return;
	}
	if (p->flags & DSM__RPC_F_INLINE) {
		STAT(r, handled_inline);
		handle(r, peer, p, kind, id, msg + DSM__RPC_HDR_SIZE, len - DSM__RPC_HDR_SIZE);
		return;
	}
	j = job_get(r, len);
	if (!j) {
		STAT(r, bad_message);
		if (kind == DSM__RPC_REQ)
			send_msg(r, peer, proc, DSM__RPC_REP, DSM_ENOMEM, id, NULL, NULL, NULL);
		return;
	}
	j->peer = peer;
	j->len = len;
	memcpy(j->data, msg, len);
	atomic_fetch_add_explicit(&j->handoff, 1, memory_order_release);
	cds_wfcq_enqueue(&r->q_head, &r->q_tail, &j->node);
	atomic_fetch_add_explicit(&r->work_seq, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&r->idle, memory_order_seq_cst))
		futex(&r->work_seq, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* Fail every call to peer with err (the thread firing the peer event, or destroy). */
static void fail_peer(struct dsm__rpc *r, unsigned peer, int err, bool mark_dead)
{
	struct rpc_peer *rp = &r->peers[peer];

	for (;;) {
		struct call *c = NULL;

		pthread_mutex_lock(&rp->lock);
		if (mark_dead)
			rp->dead = true;
		for (unsigned i = 0; i < CALLS && !c; i++)
			if (rp->tab[i])
				c = tab_take(rp, rp->tab[i]->id);
		pthread_mutex_unlock(&rp->lock);
		if (!c)
			return;
		if (err == DSM_EPEERDEAD)
			STAT(r, peer_dead);
		complete(r, c, err, NULL);
	}
}

void dsm__rpc_on_peer_event(struct dsm__rpc *r, unsigned peer, int event)
{
	if (peer >= r->nodes)
		return;
	if (event == DSM__PEER_DEAD || event == DSM__PEER_EXCLUDED || event == DSM__PEER_LEFT) {
		fail_peer(r, peer, DSM_EPEERDEAD, true);
	} else if (event == DSM__PEER_UP) {
		pthread_mutex_lock(&r->peers[peer].lock);
		r->peers[peer].dead = false; /* a new incarnation: a new member */
		pthread_mutex_unlock(&r->peers[peer].lock);
	}
}

/* ---- registration and lifecycle ---------------------------------------- */

int dsm__rpc_add_procs(struct dsm__rpc *r, const struct dsm__rpc_proc *const *procs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct dsm__rpc_proc *p = procs[i];

		if (!p || p->id == 0 || p->id > DSM__RPC_MAX_PROC ||
		    (r->procs[p->id] && r->procs[p->id] != p)) {
			DSM__ERR("RPC procedure %s: id %u invalid or taken", p ? p->name : "?",
				 p ? p->id : 0);
			return DSM_EINVAL;
		}
	}
	for (size_t i = 0; i < n; i++)
		r->procs[procs[i]->id] = procs[i];
	return 0;
}

int dsm__rpc_set_handler(struct dsm__rpc *r, const struct dsm__rpc_proc *p, dsm__rpc_fn fn,
			 void *arg)
{
	if (!r || !p || p->id > DSM__RPC_MAX_PROC)
		return DSM_EINVAL;
	if (!r->procs[p->id]) {
		int e = dsm__rpc_add_procs(r, &p, 1);
		if (e)
			return e;
	}
	if (r->procs[p->id] != p)
		return DSM_EINVAL;
	r->handlers[p->id].arg = arg;
	atomic_thread_fence(memory_order_release);
	r->handlers[p->id].fn = fn;
	return 0;
}

int dsm__rpc_create(unsigned nodes, unsigned rank, int workers, struct dsm__rpc **out)
{
	struct dsm__rpc *r;

	if (!nodes || rank >= nodes || workers < 1 || workers > 64)
		return DSM_EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return DSM_ENOMEM;
	r->nodes = nodes;
	r->rank = rank;
	r->spin_ns = 50000;
	r->peers = calloc(nodes, sizeof(*r->peers));
	r->jobs = calloc(JOBS, sizeof(*r->jobs));
	r->workers = calloc((size_t)workers, sizeof(*r->workers));
	if (!r->peers || !r->jobs || !r->workers)
		goto fail_mem;
	for (unsigned i = 0; i < nodes; i++)
		pthread_mutex_init(&r->peers[i].lock, NULL);
	cds_wfcq_init(&r->q_head, &r->q_tail);
	cds_wfcq_init(&r->free_head, &r->free_tail);
	pthread_mutex_init(&r->q_lock, NULL);
	for (unsigned i = 0; i < JOBS; i++) {
		cds_wfcq_node_init(&r->jobs[i].node);
		r->jobs[i].pooled = true;
		cds_wfcq_enqueue(&r->free_head, &r->free_tail, &r->jobs[i].node);
	}
	for (int i = 0; i < workers; i++) {
		if (pthread_create(&r->workers[i], NULL, worker, r)) {
			r->nworkers = i;
			dsm__rpc_destroy(r);
			return DSM_ESYS;
		}
		r->nworkers = i + 1;
	}
	*out = r;
	return 0;
fail_mem:
	free(r->workers);
	free(r->jobs);
	free(r->peers);
	free(r);
	return DSM_ENOMEM;
}

void dsm__rpc_attach(struct dsm__rpc *r, struct dsm__chan *c, int spin_us)
{
	r->chan = c;
	r->spin_ns = (int64_t)spin_us * 1000;
}

void dsm__rpc_stop_workers(struct dsm__rpc *r)
{
	if (!r || !r->nworkers)
		return;
	atomic_store(&r->stop, true);
	atomic_fetch_add(&r->work_seq, 1);
	futex(&r->work_seq, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
	for (int i = 0; i < r->nworkers; i++)
		pthread_join(r->workers[i], NULL);
	r->nworkers = 0;
}

void dsm__rpc_destroy(struct dsm__rpc *r)
{
	struct cds_wfcq_node *n;

	if (!r)
		return;
	dsm__rpc_stop_workers(r);
	for (unsigned i = 0; i < r->nodes; i++)
		fail_peer(r, i, DSM_ECLOSED, true);
	while ((n = __cds_wfcq_dequeue_blocking(&r->q_head, &r->q_tail))) {
		struct job *j = caa_container_of(n, struct job, node);

		if (!j->pooled)
			free(j);
	}
	for (unsigned i = 0; i < r->nodes; i++)
		pthread_mutex_destroy(&r->peers[i].lock);
	pthread_mutex_destroy(&r->q_lock);
	cds_wfcq_destroy(&r->q_head, &r->q_tail);
	cds_wfcq_destroy(&r->free_head, &r->free_tail);
	free(r->workers);
	free(r->jobs);
	free(r->peers);
	free(r);
}

void dsm__rpc_stats(struct dsm__rpc *r, struct dsm__rpc_stats *o)
{
#define LD(f) o->f = atomic_load_explicit(&r->st.f, memory_order_relaxed)
	LD(calls); LD(replies_ok); LD(replies_err); LD(timeouts); LD(peer_dead);
	LD(handled_inline); LD(handled_worker); LD(job_allocs); LD(unknown_proc);
	LD(bad_message);
#undef LD
}
