/* RPC runtime: being written (lead). Stubs so generated code links. */
#include "rpc.h"

void dsm__rpc_reply_release(struct dsm__rpc_reply *keep) { (void)keep; }
int dsm__rpc_add_procs(struct dsm__rpc *r, const struct dsm__rpc_proc *const *procs, size_t n)
{ (void)r; (void)procs; (void)n; return DSM_ENOTSUP; }
int dsm__rpc_set_handler(struct dsm__rpc *r, const struct dsm__rpc_proc *p, dsm__rpc_fn fn, void *arg)
{ (void)r; (void)p; (void)fn; (void)arg; return DSM_ENOTSUP; }
int dsm__rpc_call(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
		  const void *req, void *rep, struct dsm__rpc_reply *keep, int timeout_ms)
{ (void)r; (void)peer; (void)p; (void)req; (void)rep; (void)keep; (void)timeout_ms; return DSM_ENOTSUP; }
int dsm__rpc_call_async(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p,
			const void *req, dsm__rpc_done_fn done, void *arg)
{ (void)r; (void)peer; (void)p; (void)req; (void)done; (void)arg; return DSM_ENOTSUP; }
int dsm__rpc_send(struct dsm__rpc *r, unsigned peer, const struct dsm__rpc_proc *p, const void *msg)
{ (void)r; (void)peer; (void)p; (void)msg; return DSM_ENOTSUP; }
unsigned dsm__rpc_ctx_peer(const struct dsm__rpc_ctx *ctx) { (void)ctx; return 0; }
void *dsm__rpc_ctx_arg(const struct dsm__rpc_ctx *ctx) { (void)ctx; return 0; }
struct dsm__rpc_token *dsm__rpc_defer(struct dsm__rpc_ctx *ctx) { (void)ctx; return 0; }
int dsm__rpc_reply_deferred(struct dsm__rpc_token *t, int status, const void *rep)
{ (void)t; (void)status; (void)rep; return DSM_ENOTSUP; }
