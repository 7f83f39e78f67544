/*
 * RPC runtime. Every message type is declared once in an interface file
 * (net/net.rpc, later dsm/dsm.rpc); net/rpcgen.py turns it into typed
 * structs, bounded encoders/decoders, client stubs and a dispatch table
 * (generated into the build directory). This header is what the generated
 * code and the layers above use.
 *
 * A request travels as one channel message: a 16-byte RPC header
 * (rpc_hdr below) then the body encoded by the generated encoder.
 *
 * Threads: calls may be made from any thread. Replies to synchronous calls
 * wake the caller; async callbacks run on the thread that receives the
 * reply (or sees the failure) and must not block. Handlers run on the
 * worker pool, or, for procedures declared `inline` in the interface file,
 * on the thread that receives: the network thread or a caller waiting for
 * its reply (they must not block).
 * Order: inline handlers see the messages of one peer in the order it sent
 * them; worker handlers may run concurrently and so out of that order.
 */
#ifndef DSM_NET_RPC_H
#define DSM_NET_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "dsm_errors.h"

struct dsm__rpc;
struct dsm__rpc_ctx;
struct dsm__rpc_token;

/* RPC header on the wire (little-endian), before the body:
 *   0  2  proc id
 *   2  1  kind (DSM__RPC_REQ, _REP, _ONEWAY)
 *   3  1  reserved (0)
 *   4  4  status: 0, or a negative DSM_E* code for a reply without body
 *   8  8  request id (0 for one-way)
 */
#define DSM__RPC_HDR_SIZE 16
enum { DSM__RPC_REQ = 0, DSM__RPC_REP = 1, DSM__RPC_ONEWAY = 2 };

/* Highest procedure id an interface file may use. */
#define DSM__RPC_MAX_PROC 1023

/* A variable-length byte field. On decode it points into the received
 * message (no copy) and is valid as long as that message is. */
struct dsm__bytes {
	const uint8_t *ptr;
	uint32_t len;
};

/* Flags of a procedure (from the interface file). */
enum {
	DSM__RPC_F_INLINE = 1 << 0, /* handler runs on the receiving thread */
	DSM__RPC_F_ONEWAY = 1 << 1, /* `msg`: no reply */
};

/* A handler's type-erased form; the generated invoke() casts it back. */
typedef void (*dsm__rpc_fn)(void);

/* Reply held by a synchronous call so that bytes fields of the reply stay
 * valid after the call returns; release with dsm__rpc_reply_release().
 * Replies up to DSM__RPC_REPLY_INLINE bytes are kept inside the struct (no
 * allocation: a 4 KiB page fits); larger ones on the heap. */
#define DSM__RPC_REPLY_INLINE (4096 + 256)
struct dsm__rpc_reply {
	uint8_t *buf;
	size_t len;
	void *priv;
	uint8_t inl[DSM__RPC_REPLY_INLINE];
};
void dsm__rpc_reply_release(struct dsm__rpc_reply *keep);

/*
 * One procedure, as described by the generated code. For a one-way
 * message only the req_* slots are used and the rep_* slots are stubs
 * that encode and decode an empty body.
 */
struct dsm__rpc_proc {
	const char *name;
	uint16_t id;
	uint16_t flags;
	size_t req_struct_size, rep_struct_size;
	size_t (*req_size)(const void *req);     /* exact encoded size */
	int (*req_encode)(const void *req, uint8_t *buf, size_t cap); /* bytes written or DSM_EMSGSIZE */
	int (*req_decode)(void *req, const uint8_t *buf, size_t len);  /* 0 or DSM_EPROTO */
	size_t (*rep_size)(const void *rep);
	int (*rep_encode)(const void *rep, uint8_t *buf, size_t cap);
	int (*rep_decode)(void *rep, const uint8_t *buf, size_t len);
	/* Call typed handler fn: returns its result (0, DSM__RPC_DEFERRED or
	 * a negative code). For one-way messages rep is NULL. */
	int (*invoke)(dsm__rpc_fn fn, struct dsm__rpc_ctx *ctx, const void *req, void *rep);
};

/* A handler returns this when it will answer later with
 * dsm__rpc_reply_deferred() (e.g. a lock granted when it is released).
 * Lifetimes: the decoded request (and its bytes fields) is valid only
 * until the handler returns, so a deferring handler copies what it needs;
 * a reply's bytes may point into the request (an echo) since the reply is
 * encoded before the request is released. */
#define DSM__RPC_DEFERRED 1

/* Async completion: status 0 and the decoded reply, or a negative code
 * and rep NULL. Runs on the receiving thread (the network thread or a
 * caller waiting for its own reply) or, for a failure, on the thread that
 * saw it; rep is valid during the call. */
typedef void (*dsm__rpc_done_fn)(void *arg, int status, const void *rep);

/* Register the procedures of one interface file. Ids must be unique. */
int dsm__rpc_add_procs(struct dsm__rpc *r, const struct dsm__rpc_proc *const *procs, size_t n);
/* Set the handler of a procedure (arg is handed back through the ctx). */
int dsm__rpc_set_handler(struct dsm__rpc *r, const struct dsm__rpc_proc *p, dsm__rpc_fn fn, void *arg);

/* Synchronous call: encode req, send to peer, wait for the reply and decode
 * it into rep. keep may be NULL when rep has no bytes fields; otherwise the
 * reply message is kept in *keep until released. timeout_ms < 0: no
 * timeout (a dead peer still ends the wait). Returns 0, the handler's
 * negative status, DSM_EPEERDEAD, DSM_ETIMEDOUT, DSM_EMSGSIZE, ... */
int dsm__rpc_call(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
		  const void *req, void *rep, struct dsm__rpc_reply *keep, int timeout_ms);
/* Asynchronous call: done(arg, status, rep) runs exactly once. */
int dsm__rpc_call_async(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
			const void *req, dsm__rpc_done_fn done, void *arg);
/* One-way message. */
int dsm__rpc_send(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
		  const void *msg);

/* Server side, from inside a handler. */
unsigned dsm__rpc_ctx_peer(const struct dsm__rpc_ctx *ctx);
void *dsm__rpc_ctx_arg(const struct dsm__rpc_ctx *ctx);
/* Take ownership of the request's reply (the handler then returns
 * DSM__RPC_DEFERRED). The token is completed exactly once with
 * dsm__rpc_reply_deferred(). NULL on allocation failure. */
struct dsm__rpc_token *dsm__rpc_defer(struct dsm__rpc_ctx *ctx);
/* Send the reply of a deferred request: status 0 and rep, or a negative
 * code (rep ignored). Any thread. Frees the token. */
int dsm__rpc_reply_deferred(struct dsm__rpc_token *t, int status, const void *rep);

/* ---- runtime lifecycle (used by net.c) -------------------------------- */

struct dsm__chan;

/* Create the runtime for rank of nodes, with a pool of workers threads
 * (>= 1) for handlers that are not inline. */
int dsm__rpc_create(unsigned nodes, unsigned rank, int workers, struct dsm__rpc **out);
/* The channel requests and replies travel on; set once before traffic.
 * A synchronous caller receives (dsm__chan_progress_try) for spin_us while
 * it waits for its reply, then sleeps until woken. */
void dsm__rpc_attach(struct dsm__rpc *r, struct dsm__chan *c, int spin_us);
/* Channel callbacks: a message arrived; a peer changed state. */
void dsm__rpc_on_message(void *arg, unsigned peer, const uint8_t *msg, size_t len);
void dsm__rpc_on_peer_event(struct dsm__rpc *r, unsigned peer, int event);
/* Stop and join the workers (no handler runs, and so nothing is sent, once
 * this returns). Shutdown order: stop the workers, destroy the channel (no
 * more callbacks), then dsm__rpc_destroy. */
void dsm__rpc_stop_workers(struct dsm__rpc *r);
/* Fail every outstanding call with DSM_ECLOSED, stop the workers, free.
 * The channel must be destroyed first (no more callbacks). NULL is fine. */
void dsm__rpc_destroy(struct dsm__rpc *r);

/* Test seam (as SQLite's overridable syscalls): when set, fn runs before
 * every call and one-way message is sent, and a negative return fails it
 * with that code, nothing sent (as if the send had failed). NULL removes
 * it. Any thread; takes effect for calls started afterwards. */
typedef int (*dsm__rpc_fault_fn)(void *arg, unsigned peer, const struct dsm__rpc_proc *p);
void dsm__rpc_set_fault(struct dsm__rpc *r, dsm__rpc_fault_fn fn, void *arg);

struct dsm__rpc_stats {
	uint64_t calls, replies_ok, replies_err, timeouts, peer_dead;
	uint64_t handled_inline, handled_worker, job_allocs;
	uint64_t unknown_proc, bad_message;
};
void dsm__rpc_stats(struct dsm__rpc *r, struct dsm__rpc_stats *out);

#endif /* DSM_NET_RPC_H */
