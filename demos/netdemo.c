/*
 * netdemo: the net layer on its own. Every node calls every other node
 * with echo RPCs of 64 B and 4 KiB, prints the round-trip times, then the
 * node's statistics. Run it with the launcher:
 *
 *     dsmrun -n 4 build/demos/netdemo [-c CALLS]
 *
 * With DSM_FAULT set (e.g. DSM_FAULT=drop=0.1,dup=0.05,corrupt=0.01) the
 * calls still complete exactly, and the statistics show what was injected
 * and recovered.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "net.h"
#include "net_rpc.h"

static atomic_uint done_notes;

static int note_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_note_msg *m)
{
	(void)ctx;
	if (m->seq == UINT64_MAX)
		atomic_fetch_add(&done_notes, 1);
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* calls echo RPCs of size len to peer; fills p50/p99 in microseconds */
static int measure(struct dsm__rpc *rpc, unsigned peer, size_t len, int calls, double *p50,
		   double *p99)
{
	uint8_t *buf = malloc(len ? len : 1);
	int64_t *t = malloc(sizeof(*t) * (size_t)calls);
	int e = 0;

	if (!buf || !t) {
		free(buf);
		free(t);
		return DSM_ENOMEM;
	}
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 31 + peer);
	for (int i = 0; i < calls && !e; i++) {
		struct dsm_rpc_echo_req req = { .stamp = (uint64_t)i, .seq = (uint32_t)i };
		struct dsm_rpc_echo_rep rep;
		struct dsm__rpc_reply keep;
		int64_t t0 = dsm__now_ns();

		req.data.ptr = buf;
		req.data.len = (uint32_t)len;
		e = dsm_rpc_echo(rpc, peer, &req, &rep, &keep, 10000);
		t[i] = dsm__now_ns() - t0;
		if (e)
			break;
		if (rep.seq != (uint32_t)i || rep.data.len != len || memcmp(rep.data.ptr, buf, len)) {
			fprintf(stderr, "netdemo: wrong echo from rank %u\n", peer);
			e = DSM_EPROTO;
		}
		dsm__rpc_reply_release(&keep);
	}
	if (!e) {
		qsort(t, (size_t)calls, sizeof(*t), cmp_i64);
		*p50 = (double)t[calls / 2] / 1000.0;
		*p99 = (double)t[(size_t)calls * 99 / 100] / 1000.0;
	}
	free(buf);
	free(t);
	return e;
}

int main(int argc, char **argv)
{
	struct dsm__net_cfg cfg;
	struct dsm__net *net;
	struct dsm__rpc *rpc;
	int calls = 2000, opt, e, status = 0;
	unsigned me, nodes;

	while ((opt = getopt(argc, argv, "c:h")) != -1) {
		switch (opt) {
		case 'c':
			calls = atoi(optarg);
			if (calls < 1 || calls > 10000000) {
				fprintf(stderr, "netdemo: -c takes 1..10000000\n");
				return 2;
			}
			break;
		default:
			fprintf(stderr, "usage: dsmrun -n N netdemo [-c CALLS]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	e = dsm__net_cfg_from_env(&cfg);
	if (e) {
		fprintf(stderr, "netdemo: configuration: %s\n", dsm_strerror(e));
		return 1;
	}
	me = cfg.rank;
	nodes = cfg.nodes;
	e = dsm__net_create(&cfg, NULL, &net);
	if (e) {
		fprintf(stderr, "netdemo: cannot start the net layer: %s\n", dsm_strerror(e));
		dsm__net_cfg_fini(&cfg);
		return 1;
	}
	rpc = dsm__net_rpc(net);
	dsm__net_serve_echo(rpc);
	dsm_rpc_note_serve(rpc, note_h, NULL);
	e = dsm__net_start(net);
	if (e) {
		fprintf(stderr, "netdemo: cannot reach the other nodes: %s\n", dsm_strerror(e));
		dsm__net_destroy(net);
		dsm__net_cfg_fini(&cfg);
		return 1;
	}
	if (nodes == 1)
		printf("rank 0: alone (start with dsmrun -n 2 or more to see messages)\n");

	for (unsigned k = 1; k < nodes && !status; k++) {
		unsigned peer = (me + k) % nodes;
		double a50 = 0, a99 = 0, b50 = 0, b99 = 0;

		e = measure(rpc, peer, 64, calls, &a50, &a99);
		if (!e)
			e = measure(rpc, peer, 4096, calls, &b50, &b99);
		if (e) {
			fprintf(stderr, "netdemo: rank %u -> %u: %s\n", me, peer, dsm_strerror(e));
			status = 1;
			break;
		}
		printf("rank %u -> %u: %d calls each; 64 B: p50 %.1f us p99 %.1f us; "
		       "4 KiB: p50 %.1f us p99 %.1f us\n",
		       me, peer, calls, a50, a99, b50, b99);
		fflush(stdout);
	}

	/* Leave together: tell everyone we are done, wait for all of them. */
	for (unsigned p = 0; p < nodes; p++) {
		struct dsm_rpc_note_msg m = { .from = me, .seq = UINT64_MAX };

		if (p != me && dsm_rpc_note_send(rpc, p, &m) < 0)
			status = 1;
	}
	for (int t = 0; atomic_load(&done_notes) < nodes - 1; t++) {
		bool lost = false;

		for (unsigned p = 0; p < nodes; p++)
			if (!dsm__net_peer_alive(net, p))
				lost = true;
		if (lost || t > 60000) {
			fprintf(stderr, "netdemo: rank %u: a peer %s before finishing\n", me,
				lost ? "failed" : "did not answer in 60 s");
			status = 1;
			break;
		}
		usleep(1000);
	}
	dsm__net_print_stats(net, stdout);
	dsm__net_destroy(net);
	dsm__net_cfg_fini(&cfg);
	return status;
}
