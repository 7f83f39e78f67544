/*
 * libdsm — user-space distributed shared memory.
 *
 * This is the only header a program includes (it brings the error codes of
 * dsm_errors.h with it). Every function returns 0 (or
 * a count) on success and a negative DSM_E* code on failure; dsm_strerror()
 * turns a code into text. The library never ends the process on a condition
 * a user or the network can cause.
 */
#ifndef DSM_DSM_H
#define DSM_DSM_H

#include <stddef.h>
#include <stdint.h>

#include "dsm_errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- life cycle -------------------------------------------------------- */

/* Settings for dsm_init. A zero field means "from the DSM_* variable, else
 * the default" (README, table of variables); dsm_init(NULL) is the same as
 * a zeroed struct. Rank, node count and peer addresses always come from the
 * launcher (dsmrun, PMIx under mpirun, or DSM_RANK/DSM_NODES/DSM_BOOTSTRAP).
 */
struct dsm_config {
	size_t heap_size;      /* DSM_HEAP_SIZE: bytes of shared address space */
	const char *pager;     /* DSM_PAGER: "auto", "uffd" or "sigsegv" */
	int peer_timeout_ms;   /* DSM_PEER_TIMEOUT_MS: silence that kills a peer */
	int stats;             /* DSM_STATS: 1 prints statistics at finalize */
};

/* Join the cluster: learn rank and peers, reserve the shared region at the
 * same address on every node, wait until every node is there. Collective.
 * 0, or DSM_ECONFIG (bad setting, named in the log), DSM_ETIMEDOUT (a node
 * did not show up within DSM_CONNECT_TIMEOUT_MS), DSM_EBUSY (already
 * initialised), DSM_EADDRINUSE, DSM_ENOTSUP, ... */
DSM_EXPORT int dsm_init(const struct dsm_config *cfg);

/* Leave. Collective: writes every node made before its dsm_finalize are
 * delivered to their home nodes before any node leaves; then the shared
 * region is unmapped. A node may call dsm_init again afterwards. 0, or
 * DSM_EPEERDEAD when a node died (this node still leaves), DSM_ECLOSED
 * when not initialised. */
DSM_EXPORT int dsm_finalize(void);

/* This node's rank, 0 .. dsm_nodes() - 1 (-1 / 0 when not initialised). */
DSM_EXPORT int dsm_rank(void);
DSM_EXPORT int dsm_nodes(void);

/* ---- shared memory ------------------------------------------------------ */

/* Where the pages of an allocation live (their home node keeps the master
 * copy; the others fetch it on a fault and cache it). */
enum dsm_placement {
	DSM_PLACE_LOCAL = 0,      /* on the allocating node (small objects always) */
	DSM_PLACE_INTERLEAVE = 1, /* page i on node (allocator + i) mod N */
	DSM_PLACE_BLOCKED = 2,    /* N contiguous chunks in rank order */
	DSM_PLACE_FIRST_TOUCH = 3, /* each page on the node that touches it
				    * first (with a few pages after it, more
				    * when that node goes on in order) */
	DSM_PLACE_ADAPTIVE = 4,   /* on the allocating node at first; then a
				   * page one node keeps writing moves its
				   * home to that node (home migration). The
				   * default of dsm_malloc/dsm_calloc; the
				   * other placements stay where they are */
};

/* Allocate size bytes of shared memory, 16-byte aligned (page aligned from
 * one page up), contents unspecified. Not collective: any node, any thread,
 * any time, no network round trip (except when this node's arena is full:
 * memory kept for small objects is then given back first, which every
 * node must hear of). The pointer is valid on every node; hand
 * it over with dsm_bcast or through shared memory. NULL on failure, with
 * the reason in dsm_last_error(): DSM_EINVAL (size 0, bad placement),
 * DSM_ENOMEM (larger than this node's arena, DSM_HEAP_SIZE / N),
 * DSM_ECLOSED. */
DSM_EXPORT void *dsm_malloc(size_t size);
/* dsm_malloc and dsm_calloc place allocations of more than 2 KiB as
 * DSM_PLACEMENT says (local, interleave, blocked, first-touch; default
 * local); smaller objects share pages and are always local. */
DSM_EXPORT void *dsm_malloc_placed(size_t size, enum dsm_placement where);
/* Like dsm_malloc, zero-filled; NULL also when n * size overflows. */
DSM_EXPORT void *dsm_calloc(size_t n, size_t size);
/* Free memory from any node's dsm_malloc (a round trip when another node
 * allocated it; when whole pages go back, every node hears of it before
 * they can be allocated again, so it returns after a round trip to every
 * node). NULL does nothing. A pointer that is not the start of a
 * live allocation (double free, foreign or interior pointer) changes
 * nothing: it is reported on stderr and in dsm_last_error() (DSM_EINVAL). */
DSM_EXPORT void dsm_free(void *p);

/* The node that holds the master copy of the page at addr now (users
 * split work by it). DSM_EINVAL: not shared memory; DSM_ENOENT: not in a
 * live allocation, or a first-touch page nobody has touched yet. A page
 * homed at a node that died still names that node. */
DSM_EXPORT int dsm_home_of(const void *addr);

/* The error of this thread's last failed dsm_malloc/calloc/free (0 if the
 * last one succeeded). */
DSM_EXPORT int dsm_last_error(void);

/* ---- synchronisation ---------------------------------------------------- */
/*
 * Memory model: release consistency for data-race-free programs, the
 * pthreads contract. Writes a node makes before dsm_unlock(L), dsm_barrier(),
 * dsm_barrier_threads() or dsm_bcast() (root) are visible to a node after
 * its later dsm_lock(L), after the same barrier, or after it received the
 * broadcast, transitively. Several nodes may write different bytes of one
 * page between two synchronisations; their writes merge. Releases and
 * acquires are node-wide: they carry the writes of every thread of the
 * node and refresh the node's copies for all its threads; between threads
 * of one node the pthreads rules apply.
 */

/* Collective: root's len bytes of buf are copied into buf on every other
 * node (e.g. a pointer from dsm_malloc), and everything root wrote before is
 * visible to the others after. Every node calls it in the same order with
 * the same root and len. 0; DSM_EINVAL (bad root or len; or nodes called
 * it with different roots or lengths: then every node gets DSM_EINVAL and
 * nothing is copied); DSM_EPEERDEAD (a node died, or the root is already
 * in dsm_finalize). */
DSM_EXPORT int dsm_bcast(void *buf, size_t len, int root);

/* Collective: returns when every node has called it. Call it from one
 * thread per node: each call is one barrier of the node, and a node that
 * called it twice at once would be a barrier ahead of the others; a call
 * while another thread of this node is in dsm_barrier (or in the node
 * barrier of dsm_barrier_threads) returns DSM_EBUSY at once and does
 * nothing. Threads of one node meet with dsm_barrier_threads. 0, or
 * DSM_EPEERDEAD (a node died or left; see dsm_dead_ranks), DSM_EBUSY. If
 * this node's writes cannot all be delivered to their homes (e.g.
 * DSM_ENOMEM), the barrier still completes and returns that error; the
 * undelivered writes are kept and delivered by this node's next barrier,
 * unlock or broadcast (until then other nodes may not see them). */
DSM_EXPORT int dsm_barrier(void);

/* Collective over threads: every one of threads_per_node application
 * threads of every node calls it (the same threads_per_node on a node);
 * it returns when all threads of all nodes have arrived. Every write any
 * thread of any node made before its call is visible to every thread of
 * every node after it returns: the node's last thread to arrive runs the
 * node barrier (dsm_barrier's release, barrier and acquire, which cover
 * every thread of the node) while the others wait, then wakes them.
 * Reusable at once, like a pthread barrier. Every thread of a node's round
 * returns the same value: 0, or the node barrier's error (DSM_EPEERDEAD,
 * DSM_ENOMEM, ...; DSM_EBUSY if another thread of the node was in
 * dsm_barrier). DSM_EINVAL: threads_per_node is 0, or differs from that of
 * the round in progress on this node (that call returns at once; the round
 * goes on). DSM_ECLOSED: not initialised, or in a forked child. Nodes may
 * run different numbers of threads; the threads in it on one node must not
 * call dsm_barrier meanwhile. */
DSM_EXPORT int dsm_barrier_threads(unsigned threads_per_node);

/* Lock id (any 32-bit value; a lock needs no creation; its manager is node
 * id mod N, which queues waiters in FIFO order). Held by the calling
 * thread; not recursive. 0; DSM_EOWNERDEAD: the lock IS now held, but the
 * node that held it before died holding it (what it protected may be half
 * updated; like a robust pthread mutex); DSM_EPEERDEAD: the manager is
 * dead, the lock is not held; DSM_EDEADLK: the calling thread holds it
 * already (returned at once). */
DSM_EXPORT int dsm_lock(uint32_t id);
/* Unlock id, held by the calling thread. 0; DSM_EINVAL: no thread of this
 * node holds id; DSM_EPERM: another thread of this node holds it (nothing
 * changes). If the writes made under the lock cannot be delivered to
 * their homes (e.g. DSM_ENOMEM), that error is returned and the lock STAYS
 * HELD, the writes kept: call dsm_unlock again. DSM_EPEERDEAD: a home of
 * some of those writes died (they are lost); the lock is released. */
DSM_EXPORT int dsm_unlock(uint32_t id);

/* Atomics on an 8-byte aligned int64_t of shared memory, executed at the
 * home node of its page, atomic with respect to each other on every node.
 * They are not synchronisation for other data (use locks or barriers); a
 * plain load of the word on another node sees the result after that node's
 * next acquire (lock, barrier). *old (may be NULL) receives the previous
 * value. 0, DSM_EINVAL (not shared memory, not aligned), DSM_EPEERDEAD. */
DSM_EXPORT int dsm_fetch_add(int64_t *addr, int64_t v, int64_t *old);
DSM_EXPORT int dsm_cas(int64_t *addr, int64_t expected, int64_t desired, int64_t *old);

/* ---- failures ----------------------------------------------------------- */

/* A load or store that cannot be served (its page's home node is dead)
 * calls the fault handler, on a library thread, with the page address and
 * the error. The default prints the address, the dead node and the reason,
 * and ends the process with exit status DSM_EXIT_FAULT. A handler that
 * returns ends the process the same way (the instruction cannot complete);
 * it may instead end the process itself, e.g. _exit with its own status.
 * NULL restores the default. 0. */
typedef void (*dsm_fault_handler)(void *addr, int err);
DSM_EXPORT int dsm_set_fault_handler(dsm_fault_handler h);

/* fork(): a child forked after dsm_init is not a node. Every dsm_* call
 * there returns DSM_ECLOSED (dsm_rank -1, dsm_nodes 0, dsm_malloc NULL),
 * and a load or store of shared memory prints why and ends the child with
 * exit status DSM_EXIT_FAULT. fork() then exec (system, popen) works. */

/* Ranks the failure detector has declared dead (or that left), written to
 * ranks[0 .. max), lowest first. Returns how many there are (may exceed
 * max). */
DSM_EXPORT int dsm_dead_ranks(int *ranks, int max);

/* ---- statistics ---------------------------------------------------------- */

struct dsm_stats {
	/* coherence */
	uint64_t read_faults;    /* loads of pages not present */
	uint64_t write_faults;   /* stores to pages not writable */
	uint64_t pages_fetched;  /* pages received from their home */
	uint64_t pages_served;   /* pages sent to other nodes (as home) */
	uint64_t prefetched;     /* of pages_fetched: fetched ahead */
	uint64_t diffs_sent;     /* page diffs sent to homes */
	uint64_t diff_bytes;     /* their encoded bytes */
	uint64_t diffs_applied;  /* diffs received and applied (as home) */
	uint64_t invalidations;  /* cached pages dropped at acquires */
	uint64_t notices;        /* "page has another writer" notices received */
	/* synchronisation */
	uint64_t lock_acquires;  /* dsm_lock calls that succeeded */
	uint64_t lock_waits;     /* of those, how many waited for another holder */
	uint64_t lock_ns;        /* total time in dsm_lock */
	uint64_t barriers;       /* dsm_barrier calls */
	uint64_t barrier_ns;     /* total time in dsm_barrier */
	uint64_t atomics;        /* dsm_fetch_add/dsm_cas calls */
	uint64_t allocs, frees;  /* successful dsm_malloc*, dsm_free */
	/* network */
	uint64_t msgs_sent, msgs_received;
	uint64_t bytes_sent, bytes_received;  /* datagram bytes */
	uint64_t retransmits;
	uint64_t dup_dropped, corrupt_dropped;
	uint64_t rtt_us;         /* smoothed round-trip estimate, largest over peers */
	/* home migration */
	uint64_t migrations_in;  /* pages whose home moved here */
	uint64_t migrations_out; /* pages whose home moved away from here */
	uint64_t forwarded;      /* diffs forwarded to a page's new home */
	uint64_t redirects;      /* requests sent again to a page's new home */
};

/* This node's counters since dsm_init. 0, DSM_EINVAL (out NULL),
 * DSM_ECLOSED. */
DSM_EXPORT int dsm_stats(struct dsm_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* DSM_DSM_H */
