/*
 * Datagram transports behind one ops table: the libfabric transport
 * (fabric.c) and the fault-injection shim (fault.c) that wraps another
 * transport. The reliable channel (chan.c and its files, see chan-impl.h)
 * sees only this interface.
 *
 * Threads: send() may be called from any thread at once. progress() is
 * called by one thread at a time, whichever holds the channel's receive
 * lock: the network thread, or a thread waiting for a reply
 * (dsm__chan_progress_try). wait_prepare() is called only by the network
 * thread, possibly while another thread is inside progress();
 * next_deadline() by the network thread (or a test polling by hand).
 */
#ifndef DSM_NET_XPORT_H
#define DSM_NET_XPORT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct dsm__xport;

/* Called by progress() once per received datagram, on the thread that
 * called progress(). buf is valid only during the call. */
typedef void (*dsm__xport_rx_fn)(void *arg, const uint8_t *buf, size_t len);

struct dsm__xport_ops {
	const char *name;
	/* Send one datagram of len <= x->mtu bytes to rank dst. buf may be
	 * reused when this returns. 0, DSM_EAGAIN (nothing sent: retry
	 * later) or another negative code. Thread-safe. */
	int (*send)(struct dsm__xport *x, unsigned dst, const uint8_t *buf, size_t len);
	/* Deliver up to max received datagrams through cb; returns how many
	 * (>= 0) or a negative code. One caller at a time (see above). */
	int (*progress)(struct dsm__xport *x, dsm__xport_rx_fn cb, void *arg, int max);
	/* Before blocking: returns 0 and *fd to poll for POLLIN when it is
	 * safe to block, DSM_EAGAIN when progress() must be called first.
	 * Network thread only (progress() may be running elsewhere). */
	int (*wait_prepare)(struct dsm__xport *x, int *fd);
	/* Earliest CLOCK_MONOTONIC time (ns) at which progress() must run even
	 * if the fd stays quiet (e.g. delayed datagrams), INT64_MAX if none. */
	int64_t (*next_deadline)(struct dsm__xport *x);
	/* Close and free; NULL does nothing. */
	void (*destroy)(struct dsm__xport *x);
};

/* Counters kept by every transport; relaxed atomics. */
struct dsm__xport_stats {
	atomic_uint_fast64_t tx_dgrams, tx_bytes, rx_dgrams, rx_bytes;
	atomic_uint_fast64_t tx_eagain;
	/* fault shim only: what it injected */
	atomic_uint_fast64_t f_drop, f_dup, f_corrupt, f_reorder, f_delay;
};

struct dsm__xport {
	const struct dsm__xport_ops *ops;
	size_t mtu;      /* largest datagram send() accepts and progress() delivers */
	unsigned nodes;  /* ranks are 0..nodes-1 */
	unsigned rank;   /* our own rank */
	struct dsm__xport_stats stats;
};

/* Configuration of the libfabric transport. */
struct dsm__fabric_cfg {
	const char *provider;     /* DSM_PROVIDER, e.g. "udp" */
	unsigned nodes, rank;
	const char *const *addrs; /* "host:port" of every rank; we bind addrs[rank] */
	int rx_posted;            /* receive buffers kept posted (e.g. 512) */
};

/* Open the libfabric transport: fi_getinfo for an FI_EP_DGRAM endpoint of
 * the provider bound to addrs[rank], CQs sized above posted receives plus
 * outstanding sends, every peer inserted in the AV. Sets
 * FI_MR_CACHE_MONITOR=disabled unless the user set it. Errors (logged with the variable or
 * address at fault): DSM_EPROVIDER, DSM_EADDR, DSM_EADDRINUSE, DSM_ENOMEM,
 * DSM_ESYS. */
int dsm__fabric_create(const struct dsm__fabric_cfg *cfg, struct dsm__xport **out);

/* What DSM_FAULT asks for. Rates are probabilities 0..1. */
struct dsm__fault_cfg {
	double drop, dup, corrupt, reorder;
	unsigned delay_min_ms, delay_max_ms; /* delay_ms=A-B (or A): each datagram delayed uniformly in [A,B] */
	uint64_t seed;                       /* seed=S; default: from time, printed */
	int seed_given;
	/* link=A>B[;C>D...]: faults only on those directed links; none = all.
	 * '*' is a wildcard for either side. */
	int nlinks;
	struct { int src, dst; } links[16];
};

/* Parse a DSM_FAULT string. 0, or DSM_ECONFIG with a reason naming the
 * offending key written to err. Keys: drop, dup, corrupt, reorder,
 * delay_ms, seed, link; separated by ','. */
int dsm__fault_parse(const char *spec, struct dsm__fault_cfg *cfg, char *err, size_t errlen);

/* Wrap inner with the fault shim; takes ownership of inner (destroyed with
 * the shim, also on failure). Faults are applied on send. Per directed link
 * the random stream depends only on (seed, src, dst), so the same seed
 * gives the same faults on each link. A link naming a rank the job does
 * not have (>= inner->nodes) is DSM_ECONFIG, logged with the rank. */
int dsm__fault_create(struct dsm__xport *inner, const struct dsm__fault_cfg *cfg,
		      struct dsm__xport **out);

#endif /* DSM_NET_XPORT_H */
