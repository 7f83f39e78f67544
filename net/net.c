/*
 * The net layer's facade: configuration from DSM_* variables, and the
 * assembly transport -> (fault shim) -> channel -> RPC runtime.
 */
#include "net.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fnv.h"
#include "net_rpc.h"

struct dsm__net {
	struct dsm__net_cfg cfg;
	struct dsm__net_cbs cbs;
	struct dsm__xport *x;      /* the fault shim when on, else the fabric */
	struct dsm__chan *chan;
	struct dsm__rpc *rpc;
};

void dsm__net_cfg_fini(struct dsm__net_cfg *cfg)
{
	if (cfg->addrs) {
		for (unsigned i = 0; i < cfg->nodes; i++)
			free(cfg->addrs[i]);
		free(cfg->addrs);
		cfg->addrs = NULL;
	}
}

static int parse_peers(struct dsm__net_cfg *cfg, const char *peers)
{
	const char *s = peers;
	unsigned n = 0;

	cfg->addrs = calloc(cfg->nodes, sizeof(char *));
	if (!cfg->addrs)
		return DSM_ENOMEM;
	while (*s) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		char host[256];
		unsigned port;

		if (n == cfg->nodes) {
			DSM__ERR("DSM_PEERS: more than DSM_NODES=%u addresses", cfg->nodes);
			return DSM_ECONFIG;
		}
		cfg->addrs[n] = strndup(s, len);
		if (!cfg->addrs[n])
			return DSM_ENOMEM;
		if (dsm__parse_hostport(cfg->addrs[n], host, sizeof(host), &port) < 0) {
			DSM__ERR("DSM_PEERS: address %u '%s' is not host:port", n, cfg->addrs[n]);
			return DSM_EADDR;
		}
		n++;
		s += len;
		if (*s == ',')
			s++;
	}
	if (n != cfg->nodes) {
		DSM__ERR("DSM_PEERS: %u addresses for DSM_NODES=%u", n, cfg->nodes);
		return DSM_ECONFIG;
	}
	return 0;
}

int dsm__net_cfg_settings_from_env(struct dsm__net_cfg *cfg, const char *peers)
{
	const char *prov, *fault;
	long v;
	bool b;
	int e;

	prov = dsm__env_str("DSM_PROVIDER");
	snprintf(cfg->provider, sizeof(cfg->provider), "%s", prov ? prov : "udp");
	if ((e = dsm__env_long("DSM_CLUSTER", peers ? (long)dsm__fnv1a32_str(peers) : 0, 0, UINT32_MAX, &v)))
		return e;
	cfg->cluster = (uint32_t)v;
	if ((e = dsm__env_long("DSM_PEER_TIMEOUT_MS", 1000, 50, 3600000, &v)))
		return e;
	cfg->peer_timeout_ms = (int)v;
	if ((e = dsm__env_long("DSM_CONNECT_TIMEOUT_MS", 10000, 100, 3600000, &v)))
		return e;
	cfg->connect_timeout_ms = (int)v;
	if ((e = dsm__env_bool("DSM_STATS", false, &b)))
		return e;
	cfg->stats = b;
	if ((e = dsm__env_long("DSM_RPC_WORKERS", 2, 1, 64, &v)))
		return e;
	cfg->workers = (int)v;
	if ((e = dsm__env_long("DSM_SPIN_US", 50, 0, 1000000, &v)))
		return e;
	cfg->spin_us = (int)v;
	if ((e = dsm__env_long("DSM_MAX_MSG", 64L << 20, 1L << 20, 1L << 30, &v)))
		return e;
	cfg->max_msg = (size_t)v;
	cfg->rx_posted = 512;
	fault = dsm__env_str("DSM_FAULT");
	if (fault) {
		char err[256];

		if (dsm__fault_parse(fault, &cfg->fault, err, sizeof(err)) < 0) {
			DSM__ERR("%s", err);
			return DSM_ECONFIG;
		}
		cfg->fault_on = true;
	}
	return 0;
}

int dsm__net_cfg_from_env(struct dsm__net_cfg *cfg)
{
	const char *peers;
	long v;
	int e;

	memset(cfg, 0, sizeof(*cfg));
	if ((e = dsm__log_init()))
		return e;
	if ((e = dsm__env_long("DSM_NODES", 1, 1, 65535, &v)))
		return e;
	cfg->nodes = (unsigned)v;
	if ((e = dsm__env_long("DSM_RANK", cfg->nodes == 1 ? 0 : -1, 0, (long)cfg->nodes - 1, &v)))
		return e;
	if (v < 0) {
		DSM__ERR("DSM_RANK: not set, but DSM_NODES=%u (start the program with dsmrun)",
			 cfg->nodes);
		return DSM_ECONFIG;
	}
	cfg->rank = (unsigned)v;
	dsm__log_set_rank((int)cfg->rank);
	peers = dsm__env_str("DSM_PEERS");
	if (cfg->nodes > 1 && !peers) {
		DSM__ERR("DSM_PEERS: not set, but DSM_NODES=%u (start the program with dsmrun)",
			 cfg->nodes);
		return DSM_ECONFIG;
	}
	if (peers && (e = parse_peers(cfg, peers)))
		goto fail;
	if ((e = dsm__net_cfg_settings_from_env(cfg, peers)))
		goto fail;
	return 0;
fail:
	dsm__net_cfg_fini(cfg);
	return e;
}

static void on_message(void *arg, unsigned peer, const uint8_t *msg, size_t len)
{
	struct dsm__net *n = arg;

	dsm__rpc_on_message(n->rpc, peer, msg, len);
}

static void on_peer_event(void *arg, unsigned peer, int event)
{
	struct dsm__net *n = arg;

	/* the layer above first: by the time a call to the peer fails with
	 * DSM_EPEERDEAD, it must already know the peer is gone */
	if (n->cbs.peer_event)
		n->cbs.peer_event(n->cbs.arg, peer, event);
	dsm__rpc_on_peer_event(n->rpc, peer, event);
}

int dsm__net_create(const struct dsm__net_cfg *cfg, const struct dsm__net_cbs *cbs,
		    struct dsm__net **out)
{
	struct dsm__fabric_cfg fc = { 0 };
	struct dsm__chan_cfg cc;
	struct dsm__chan_cbs ccb;
	struct dsm__net *n;
	int e;

	n = calloc(1, sizeof(*n));
	if (!n)
		return DSM_ENOMEM;
	n->cfg = *cfg;
	n->cfg.addrs = NULL; /* not owned */
	if (cbs)
		n->cbs = *cbs;
	e = dsm__rpc_create(cfg->nodes, cfg->rank, cfg->workers, &n->rpc);
	if (e)
		goto fail_rpc;
	e = dsm__rpc_add_procs(n->rpc, dsm_rpc_net_procs, DSM_RPC_NET_NPROCS);
	if (e)
		goto fail_procs;
	if (cfg->nodes == 1) {
		*out = n; /* alone: no transport needed */
		return 0;
	}
	fc.provider = cfg->provider;
	fc.nodes = cfg->nodes;
	fc.rank = cfg->rank;
	fc.addrs = (const char *const *)cfg->addrs;
	fc.rx_posted = cfg->rx_posted;
	e = dsm__fabric_create(&fc, &n->x);
	if (e)
		goto fail_procs;
	if (cfg->fault_on) {
		e = dsm__fault_create(n->x, &cfg->fault, &n->x); /* owns the fabric now */
		if (e) {
			n->x = NULL;
			goto fail_procs;
		}
	}
	dsm__chan_cfg_default(&cc);
	cc.cluster = cfg->cluster;
	cc.peer_timeout_ms = cfg->peer_timeout_ms;
	cc.max_msg = cfg->max_msg;
	cc.spin_us = cfg->spin_us;
	ccb.deliver = on_message;
	ccb.peer_event = on_peer_event;
	ccb.arg = n;
	e = dsm__chan_create(n->x, &cc, &ccb, &n->chan);
	if (e)
		goto fail_chan;
	dsm__rpc_attach(n->rpc, n->chan, cfg->spin_us);
	*out = n;
	return 0;
fail_chan:
	n->x->ops->destroy(n->x);
fail_procs:
	dsm__rpc_destroy(n->rpc);
fail_rpc:
	free(n);
	return e;
}

int dsm__net_start(struct dsm__net *n)
{
	int e;

	if (!n->chan)
		return 0;
	e = dsm__chan_start(n->chan);
	if (e)
		return e;
	return dsm__chan_connect(n->chan, n->cfg.connect_timeout_ms);
}

void dsm__net_destroy(struct dsm__net *n)
{
	if (!n)
		return;
	if (n->chan)
		dsm__chan_flush(n->chan, n->cfg.peer_timeout_ms);
	if (n->cfg.stats)
		dsm__net_print_stats(n, stderr);
	dsm__rpc_stop_workers(n->rpc); /* no handler sends on a dying channel */
	dsm__chan_destroy(n->chan);
	if (n->x)
		n->x->ops->destroy(n->x);
	dsm__rpc_destroy(n->rpc);
	free(n);
}

/* Inline: runs on the receiving thread; the reply's data points into the
 * request, which outlives the encoding of the reply. */
static int echo_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_echo_req *req,
		  struct dsm_rpc_echo_rep *rep)
{
	(void)ctx;
	rep->stamp = req->stamp;
	rep->seq = req->seq;
	rep->data = req->data;
	return 0;
}

int dsm__net_serve_echo(struct dsm__rpc *r)
{
	return dsm_rpc_echo_serve(r, echo_h, NULL);
}

struct dsm__rpc *dsm__net_rpc(struct dsm__net *n)
{
	return n->rpc;
}

unsigned dsm__net_rank(const struct dsm__net *n)
{
	return n->cfg.rank;
}

unsigned dsm__net_nodes(const struct dsm__net *n)
{
	return n->cfg.nodes;
}

bool dsm__net_peer_alive(struct dsm__net *n, unsigned peer)
{
	if (!n->chan)
		return peer == n->cfg.rank;
	return dsm__chan_peer_alive(n->chan, peer);
}

int dsm__net_flush(struct dsm__net *n, int timeout_ms)
{
	return n->chan ? dsm__chan_flush(n->chan, timeout_ms) : 0;
}

void dsm__net_stats(struct dsm__net *n, struct dsm__net_stats *o)
{
	memset(o, 0, sizeof(*o));
	if (n->chan)
		dsm__chan_stats(n->chan, &o->chan);
	dsm__rpc_stats(n->rpc, &o->rpc);
	if (n->x) {
#define LD(f) o->f = atomic_load_explicit(&n->x->stats.f, memory_order_relaxed)
		LD(tx_dgrams); LD(tx_bytes); LD(rx_dgrams); LD(rx_bytes); LD(tx_eagain);
		LD(f_drop); LD(f_dup); LD(f_corrupt); LD(f_reorder); LD(f_delay);
#undef LD
	}
}

void dsm__net_print_stats(struct dsm__net *n, FILE *f)
{
	struct dsm__net_stats s;
	char line[1024];

	dsm__net_stats(n, &s);
	snprintf(line, sizeof(line),
		 "libdsm[%u] stats: msgs_sent=%llu msgs_delivered=%llu bytes_sent=%llu "
		 "dgrams_tx=%llu dgrams_rx=%llu bytes_tx=%llu bytes_rx=%llu "
		 "retx=%llu retx_rto=%llu retx_fast=%llu retx_tlp=%llu "
		 "dup_dropped=%llu corrupt_dropped=%llu malformed_dropped=%llu "
		 "stale_dropped=%llu foreign_dropped=%llu window_dropped=%llu ooo=%llu "
		 "acks_tx=%llu hellos_tx=%llu peers_dead=%llu rtt_us=%lld..%lld "
		 "reasm_peak_bytes=%llu "
		 "rpc_calls=%llu rpc_timeouts=%llu rpc_peer_dead=%llu "
		 "fault_drop=%llu fault_dup=%llu fault_corrupt=%llu fault_reorder=%llu "
		 "fault_delay=%llu\n",
		 n->cfg.rank,
		 (unsigned long long)s.chan.msgs_sent, (unsigned long long)s.chan.msgs_delivered,
		 (unsigned long long)s.chan.bytes_sent,
		 (unsigned long long)s.tx_dgrams, (unsigned long long)s.rx_dgrams,
		 (unsigned long long)s.tx_bytes, (unsigned long long)s.rx_bytes,
		 (unsigned long long)(s.chan.retx_rto + s.chan.retx_fast + s.chan.retx_tlp),
		 (unsigned long long)s.chan.retx_rto, (unsigned long long)s.chan.retx_fast,
		 (unsigned long long)s.chan.retx_tlp,
		 (unsigned long long)s.chan.rx_dup, (unsigned long long)s.chan.rx_corrupt,
		 (unsigned long long)s.chan.rx_malformed, (unsigned long long)s.chan.rx_stale,
		 (unsigned long long)s.chan.rx_foreign, (unsigned long long)s.chan.rx_window,
		 (unsigned long long)s.chan.rx_ooo,
		 (unsigned long long)s.chan.tx_ack, (unsigned long long)s.chan.tx_hello,
		 (unsigned long long)s.chan.peers_dead,
		 (long long)s.chan.rtt_us_min, (long long)s.chan.rtt_us_max,
		 (unsigned long long)s.chan.reasm_peak,
		 (unsigned long long)s.rpc.calls, (unsigned long long)s.rpc.timeouts,
		 (unsigned long long)s.rpc.peer_dead,
		 (unsigned long long)s.f_drop, (unsigned long long)s.f_dup,
		 (unsigned long long)s.f_corrupt, (unsigned long long)s.f_reorder,
		 (unsigned long long)s.f_delay);
	fputs(line, f);
}
