/*
 * The net layer as the layers above see it: one object per process that
 * owns the transport (wrapped by the fault shim when DSM_FAULT is set),
 * the reliable channel with its network thread, and the RPC runtime.
 *
 * Configuration comes from DSM_* variables (dsm__net_cfg_from_env), every
 * one documented in the README; a malformed value is DSM_ECONFIG with a
 * log line naming the variable.
 */
#ifndef DSM_NET_NET_H
#define DSM_NET_NET_H

#include <stdbool.h>
#include <stdio.h>

#include "chan.h"
#include "rpc.h"
#include "xport.h"

struct dsm__net;

struct dsm__net_cfg {
	unsigned rank, nodes;     /* DSM_RANK, DSM_NODES */
	char **addrs;             /* DSM_PEERS split: "host:port" per rank */
	char provider[32];        /* DSM_PROVIDER */
	uint32_t cluster;         /* DSM_CLUSTER */
	int peer_timeout_ms;      /* DSM_PEER_TIMEOUT_MS */
	int connect_timeout_ms;   /* DSM_CONNECT_TIMEOUT_MS */
	bool fault_on;            /* DSM_FAULT set */
	struct dsm__fault_cfg fault;
	bool stats;               /* DSM_STATS */
	int workers;              /* DSM_RPC_WORKERS */
	int spin_us;              /* DSM_SPIN_US */
	size_t max_msg;           /* DSM_MAX_MSG */
	int rx_posted;            /* receive buffers posted to the provider */
};

/* Fill cfg from the environment. 0, or DSM_ECONFIG / DSM_EADDR after a log
 * line that names the variable. Free with dsm__net_cfg_fini. */
int dsm__net_cfg_from_env(struct dsm__net_cfg *cfg);
/* Only the settings that do not depend on membership (everything but
 * rank, nodes and addresses), for a bootstrap that learns those itself.
 * peers (may be NULL) seeds the default cluster id. Leaves the membership
 * fields alone. 0 or DSM_ECONFIG after a log line naming the variable. */
int dsm__net_cfg_settings_from_env(struct dsm__net_cfg *cfg, const char *peers);
void dsm__net_cfg_fini(struct dsm__net_cfg *cfg);

struct dsm__net_cbs {
	/* enum dsm__peer_event; network thread, before the RPC layer fails
	 * the calls to that peer. May be NULL. */
	void (*peer_event)(void *arg, unsigned peer, int event);
	void *arg;
};

/* Create the layer: transport, channel, RPC runtime and workers; nothing
 * is received yet. Register handlers on dsm__net_rpc(), then call
 * dsm__net_start(), so no request arrives before its handler exists. */
int dsm__net_create(const struct dsm__net_cfg *cfg, const struct dsm__net_cbs *cbs,
		    struct dsm__net **out);
/* Start the network thread and wait (DSM_CONNECT_TIMEOUT_MS) until every
 * peer answered. 0, DSM_ETIMEDOUT (the log names the silent ranks), ... */
int dsm__net_start(struct dsm__net *n);
/* Flush (bounded by the peer timeout), print the statistics when
 * DSM_STATS=1, stop and free. NULL is fine. */
void dsm__net_destroy(struct dsm__net *n);

struct dsm__rpc *dsm__net_rpc(struct dsm__net *n);
/* Serve the net layer's own `echo` call (net.rpc) with the plain handler
 * that returns stamp, seq and data unchanged: demos, tests, benchmarks. */
int dsm__net_serve_echo(struct dsm__rpc *r);
unsigned dsm__net_rank(const struct dsm__net *n);
unsigned dsm__net_nodes(const struct dsm__net *n);
bool dsm__net_peer_alive(struct dsm__net *n, unsigned peer);
/* Wait until all sent messages are acknowledged (e.g. before exit). */
int dsm__net_flush(struct dsm__net *n, int timeout_ms);

struct dsm__net_stats {
	struct dsm__chan_stats chan;
	struct dsm__rpc_stats rpc;
	uint64_t tx_dgrams, tx_bytes, rx_dgrams, rx_bytes, tx_eagain;
	uint64_t f_drop, f_dup, f_corrupt, f_reorder, f_delay;
};
void dsm__net_stats(struct dsm__net *n, struct dsm__net_stats *out);
/* One line "libdsm[R] stats: key=value ..." (stable keys, for scripts). */
void dsm__net_print_stats(struct dsm__net *n, FILE *f);

#endif /* DSM_NET_NET_H */
