/*
 * Fuzz target for the codecs generated from net/net.rpc and dsm/dsm.rpc,
 * driven through the procedure tables (the slots the RPC runtime uses): net's
 * procedures, then dsm's. The first input byte chooses a procedure and its
 * req or rep codec:
 *     sel = byte % (2 * NPROCS), proc = procs[sel / 2],
 *     rep codec when sel is odd (for a one-way msg: the empty-body slots);
 * the rest of the input is the body to decode. The decoder must return 0
 * or DSM_EPROTO; when it accepts, the body must be canonical: size() equals
 * its length, encode() with exactly that capacity writes the same bytes,
 * and one byte less capacity gives DSM_EMSGSIZE. Any violation calls
 * abort() (this is a test program). Structs and buffers are allocated at
 * their exact sizes so that ASan sees any out-of-bounds access.
 *
 * Built with libFuzzer under clang (-Dfuzz), otherwise with replay.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsm_rpc.h"
#include "net_rpc.h"

#define NPROCS (DSM_RPC_NET_NPROCS + DSM_RPC_DSM_NPROCS)

static const struct dsm__rpc_proc *proc(unsigned i)
{
	return i < DSM_RPC_NET_NPROCS ? dsm_rpc_net_procs[i]
				      : dsm_rpc_dsm_procs[i - DSM_RPC_NET_NPROCS];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct dsm__rpc_proc *p;
	const uint8_t *body;
	size_t len, ssize, n;
	unsigned sel;
	void *m;
	uint8_t *out;
	int rep, r;

	if (size < 1)
		return 0;
	sel = data[0] % (2 * NPROCS);
	p = proc(sel / 2);
	rep = sel & 1;
	body = data + 1;
	len = size - 1;

	ssize = rep ? p->rep_struct_size : p->req_struct_size;
	m = malloc(ssize ? ssize : 1);
	if (!m)
		abort();
	r = rep ? p->rep_decode(m, body, len) : p->req_decode(m, body, len);
	if (r != 0) {
		if (r != DSM_EPROTO)
			abort();
		free(m);
		return 0;
	}

	n = rep ? p->rep_size(m) : p->req_size(m);
	if (n != len)
		abort();
	out = malloc(n ? n : 1);
	if (!out)
		abort();
	r = rep ? p->rep_encode(m, out, n) : p->req_encode(m, out, n);
	if (r < 0 || (size_t)r != n || memcmp(out, body, n) != 0)
		abort();
	if (n > 0) {
		r = rep ? p->rep_encode(m, out, n - 1) : p->req_encode(m, out, n - 1);
		if (r != DSM_EMSGSIZE)
			abort();
	}
	free(out);
	free(m);
	return 0;
}
