/*
 * Arenas and homes: who may allocate which address, and where each page of
 * an allocation is homed.
 * Pure data structures: no network, no page faults, and the allocator
 * never reads or writes the shared region (it only hands out addresses).
 *
 * Region split. The shared region [base, base + size) is cut into N equal,
 * page-aligned arenas: arena k = [base + k * arena_size, +arena_size), with
 * arena_size = (size / N) rounded down to whole pages. Node k allocates only
 * from arena k, so allocation needs no coordination, and the owner of any
 * address is one division (dsm__arena_owner). The few pages past N arenas
 * (when size / N is not page aligned) belong to nobody.
 *
 * Allocator of one arena (struct dsm__arena). Its metadata lives in the
 * owner's private heap, never inside the shared region, so a remote write
 * cannot corrupt it; every pointer given to free is validated against it.
 *   - Small requests (1 .. DSM__ARENA_SMALL_MAX bytes, LOCAL placement) come
 *     from 24 size classes (16, 32, 48 ... 2048 bytes; every slot is 16-byte
 *     aligned, and power-of-two classes are aligned to their size) carved
 *     out of slabs of 1 to 8 pages (the fewest whose tail waste is at most
 *     1/8; with 4 KiB pages: 2 pages for the 1536-byte class, else 1). A slab's pages are always homed at the
 *     owner (LOCAL): several objects share a page, so no other placement
 *     could hold for all of them. A request with a non-LOCAL placement is
 *     therefore rounded up to whole pages, so its placement holds.
 *   - Everything else is a run of whole pages (page aligned), taken best
 *     fit (smallest free extent that fits, lowest address among equals)
 *     from the free extents, which coalesce with their neighbours on free.
 * Structures: every page of the arena belongs to exactly one span (a free
 * extent, a page run or a slab); spans form an address-ordered list, so
 * neighbours for coalescing are O(1). Live spans are in a treap keyed by
 * address (lookup of any interior address: O(log n)); free extents are in a
 * treap keyed by (pages, address) (best fit: O(log n)). With n live spans:
 * alloc O(log n) expected (+ O(slots / 64) bitmap scan for a small class,
 * at most 4 words with 4 KiB pages), free O(log n), size_of/home O(log n).
 * Bookkeeping memory: span records come from a pool grown in chunks; a slab
 * costs one malloc of its header and bitmap when it is created. An emptied
 * slab is retired (its pages go back to the free extents once every node
 * forgot them: dsm__arena_free), except one per size class that is kept
 * for reuse (retired too on request: dsm__arena_retire_empty).
 *
 * Homes. Each page run records its placement; page i of a run of P pages
 * allocated by node `owner` among N nodes is homed at dsm__home_of():
 *   LOCAL       owner;
 *   INTERLEAVE  (owner + i) mod N (the first page is local);
 *   BLOCKED     the P pages split into N contiguous chunks in order, chunk
 *               k homed on node k; when N does not divide P the first
 *               P mod N chunks have one page more (sizes differ by at most
 *               one; with P < N, nodes P .. N-1 get none);
 *   FIRST_TOUCH not computable: each page's home is the node that first
 *               touched it, which the owner records (dsm__arena_claim;
 *               dsm__home_of says DSM_EINVAL).
 * A page is "live" if it belongs to a live page run or to a slab holding at
 * least one live object.
 *
 * Non-owner nodes learn the extent holding a page from its owner
 * (dsm__arena_extent, sent over the network by dsm/home.c) and compute the
 * homes of all its pages with dsm__home_of; dsm/home.c keeps them in each
 * page's metadata.
 *
 * Threads. Every dsm__arena_* call on one arena may come from any thread:
 * each arena has one mutex, held for the whole call (allocation is not the
 * fault hot path; hold times are O(log n)). Layout functions and
 * dsm__home_of are pure.
 */
#ifndef DSM_DSM_ARENA_H
#define DSM_DSM_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dsm.h"

/* Largest request served by a size class; larger ones are page runs. */
#define DSM__ARENA_SMALL_MAX 2048
/* Smallest supported page size (slabs of the largest class need it). */
#define DSM__ARENA_MIN_PAGE 4096
/* Nodes are numbered 0 .. N-1, N at most this (a home fits 16 bits). */
#define DSM__ARENA_MAX_NODES 65535

/* Where the pages of an allocation are homed (the public DSM_PLACE_*
 * constants are meant to map onto these one for one). */
enum dsm__place {
	DSM__PLACE_LOCAL = 0,      /* on the allocating node */
	DSM__PLACE_INTERLEAVE = 1, /* page i on node (owner + i) mod N */
	DSM__PLACE_BLOCKED = 2,    /* N contiguous chunks, chunk k on node k */
	DSM__PLACE_FIRST_TOUCH = 3, /* page by page, the node that touches it
				     * first (dsm__arena_claim) */
	DSM__PLACE_ADAPTIVE = 4,   /* on the allocating node, then wherever
				    * home migration moves each page
				    * (dsm/migrate.c) */
	DSM__PLACE_MAX = DSM__PLACE_ADAPTIVE,
};

/* First-touch claims: the first claim of a node takes this many pages
 * (those not claimed yet), a claim right after the same node's previous
 * one twice the previous, up to the maximum: a node that touches pages in
 * order needs log2(CLAIM_MAX) + n / CLAIM_MAX round trips for n pages,
 * one that touches every Nth page gets exactly those, and a claim runs
 * past the pages a node goes on to touch by less than CLAIM_MAX. An answer
 * about claimed pages describes at most CLAIM_SCAN pages of one home. */
#define DSM__ARENA_CLAIM_MIN 1
#define DSM__ARENA_CLAIM_MAX 64
#define DSM__ARENA_CLAIM_SCAN 4096

/* The region and its split into arenas. Filled by dsm__arena_region_init;
 * read-only afterwards, so it may be shared by all threads. */
struct dsm__arena_region {
	uintptr_t base;    /* first byte of the region, page aligned */
	size_t size;       /* bytes in the region */
	size_t page_size;  /* power of two, >= DSM__ARENA_MIN_PAGE */
	int nodes;         /* N, 1 .. DSM__ARENA_MAX_NODES */
	size_t arena_size; /* bytes per arena, a multiple of page_size */
};

/* Describe a region of size bytes at base split among nodes arenas. The
 * region is only described, never touched. 0, or DSM_EINVAL (base not page
 * aligned, page_size not a power of two >= DSM__ARENA_MIN_PAGE, nodes out of
 * range, base + size overflows, or less than one page per node). */
int dsm__arena_region_init(struct dsm__arena_region *r, uintptr_t base,
			   size_t size, size_t page_size, int nodes);

/* The node whose arena holds ptr, or DSM_EINVAL (-1) for an address outside
 * every arena (outside the region, or in the unused tail). Pure. */
int dsm__arena_owner(const struct dsm__arena_region *r, const void *ptr);

/* First byte of node's arena, or 0 if node is out of range. Pure. */
uintptr_t dsm__arena_start(const struct dsm__arena_region *r, int node);

/* Home of page i (0-based) of a page run of npages pages with placement
 * place, allocated by owner, among nodes nodes (rules above). Returns the
 * node, or DSM_EINVAL for a bad argument (i >= npages, owner >= nodes, ...).
 * Pure: a non-owner node that learnt a run's placement and size computes
 * the homes of all its pages with it. */
int dsm__home_of(int place, int owner, int nodes, size_t npages, size_t i);

/* ---- the allocator of one arena (owner node only) ---------------------- */

struct dsm__arena;

/* Counters, a consistent snapshot (taken under the arena lock). */
struct dsm__arena_stats {
	uint64_t bytes_in_use;   /* usable bytes of live allocations */
	uint64_t allocs_live;    /* live allocations (small and page runs) */
	uint64_t small_pages;    /* pages held by size-class slabs */
	uint64_t large_pages;    /* pages of live page runs */
	uint64_t free_pages;     /* pages in free extents */
	uint64_t retired_pages;  /* freed, waiting for dsm__arena_reclaim */
	uint64_t free_extents;   /* number of free extents */
	uint64_t largest_free;   /* pages in the largest free extent */
	uint64_t slabs;          /* slabs, including kept empty ones */
	uint64_t allocs, frees;  /* successful calls since create */
	uint64_t failed;         /* alloc/free calls that returned an error */
};

/* The page run or slab holding an address (see dsm__arena_extent). */
struct dsm__arena_extent {
	uintptr_t start;  /* first page */
	size_t npages;
	int place;        /* enum dsm__place; DSM__PLACE_LOCAL for a slab */
	int owner;        /* the arena's node */
	int small;        /* 1 for a slab (several objects), 0 for a page run */
};

/* Create the allocator of node's arena of region r (r is copied). Nothing
 * of the region is touched. 0, DSM_EINVAL (node out of range) or
 * DSM_ENOMEM. */
int dsm__arena_create(const struct dsm__arena_region *r, int node,
		      struct dsm__arena **out);

/* Free the metadata (live allocations are simply forgotten). NULL does
 * nothing. No other call on a may run concurrently or follow. */
void dsm__arena_destroy(struct dsm__arena *a);

/* Allocate size bytes with placement place (enum dsm__place). On success
 * *out is the address (16-byte aligned; page aligned for a page run) and
 * the return is 0. On failure *out is NULL and the return is DSM_EINVAL
 * (size 0, unknown place) or DSM_ENOMEM (no free extent large enough,
 * including size > arena size, or the bookkeeping malloc failed). A non-LOCAL
 * place rounds a small size up to a page run. Takes the arena lock. */
int dsm__arena_alloc(struct dsm__arena *a, size_t size, int place, void **out);

/* Free the allocation starting at ptr. 0, or DSM_EINVAL, with nothing
 * changed, for a pointer this arena never returned, one into the middle of
 * an allocation, or one already freed. Takes the arena lock.
 * Pages that leave the live set (a page run; a slab's pages when the slab
 * is released) are not free yet: they are RETIRED, described in *retired
 * (npages 0 when none), and no allocation gets them until
 * dsm__arena_reclaim(a, retired->start). Meanwhile the caller makes every
 * node forget them (their homes, copies, dirty state): only then may they
 * be handed out again, with another placement and zeroed. */
int dsm__arena_free(struct dsm__arena *a, void *ptr, struct dsm__arena_extent *retired);

/* The retired extent starting at start becomes free. 0, or DSM_EINVAL if
 * start is not the first page of a retired extent. Takes the arena lock. */
int dsm__arena_reclaim(struct dsm__arena *a, uintptr_t start);

/* Pages of one home in a first-touch run, from dsm__arena_claim. */
struct dsm__arena_run {
	uintptr_t start;  /* the page asked about */
	size_t npages;    /* it and the following pages of the same home */
	int home;
};

/* The home of the page at addr in a first-touch run. Claimed already: its
 * home and the pages after it with the same home (at most CLAIM_SCAN).
 * Not claimed yet: with claim, node claims it and the unclaimed pages
 * after it (CLAIM_MIN, or twice node's previous claim when it ends right
 * here, at most CLAIM_MAX) and they are returned; without, DSM_ENOENT.
 * DSM_ENOENT also when addr is not in a live page run, DSM_EINVAL when it
 * is in one of another placement (or outside the arena, or node is out
 * of range). Takes the arena lock. */
int dsm__arena_claim(struct dsm__arena *a, const void *addr, int node, bool claim,
		     struct dsm__arena_run *out);

/* Retire one kept empty slab (see dsm__arena_free), so its pages can be
 * reclaimed for a page run: 1 and *retired, or 0 when there is none. For
 * an allocation that failed with DSM_ENOMEM. Takes the arena lock. */
int dsm__arena_retire_empty(struct dsm__arena *a, struct dsm__arena_extent *retired);

/* Usable size of the live allocation starting at ptr (the class size, or
 * the page run's bytes), or DSM_EINVAL as for dsm__arena_free. */
ssize_t dsm__arena_size_of(struct dsm__arena *a, const void *ptr);

/* The live page run or slab holding addr (any byte of it): 0 and *out, or
 * DSM_ENOENT (in this arena but not live), or DSM_EINVAL (not in this
 * arena). This is what the owner answers a "home of page" request with: the
 * asker can then compute and cache every page's home of the extent. */
int dsm__arena_extent(struct dsm__arena *a, const void *addr,
		      struct dsm__arena_extent *out);

/* Home node of the page holding page_addr among nodes nodes: the owner for
 * a slab page or a LOCAL run, else by the run's placement. DSM_ENOENT if the
 * page is not live, DSM_EINVAL if it is outside this arena or nodes is not
 * larger than the owner's number. Takes the arena lock. */
int dsm__arena_home(struct dsm__arena *a, const void *page_addr, int nodes);

void dsm__arena_get_stats(struct dsm__arena *a, struct dsm__arena_stats *out);

/* Verify every invariant of the metadata (spans tile the arena, no two free
 * neighbours, both treaps ordered and heap-ordered, slab bitmaps match their
 * counts, counters match). O(n); for tests and debugging. 0, or DSM_EINVAL
 * after logging the first violation. Takes the arena lock. */
int dsm__arena_check(struct dsm__arena *a);

#endif /* DSM_DSM_ARENA_H */
