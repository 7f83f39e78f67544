/*
 * Multi-node integration tests of libdsm through its public header only
 * (include/dsm.h), run under the launcher:
 *
 *   dsmrun -n N test-dsm SCENARIO[,SCENARIO...]
 *
 * Scenarios (each preceded and followed by dsm_barrier(), so a list runs in
 * one launch; rank 0 prints "scenario NAME: ok (X.XX s)"):
 *   visibility    each rank in turn writes a pattern; after a barrier every
 *                 node reads all of it (full and partial rewrites)
 *   counter       lock-protected counters: N*k exactly, one lock and two
 *                 interleaved locks whose counters share a page
 *   transitivity  A -> L1 -> B -> L2 -> C: C sees A's and B's writes
 *                 (needs N >= 3, skipped with a message otherwise)
 *   multiwriter   all nodes write disjoint int64 / int32 / bytes / runs of
 *                 the same pages between barriers, several rounds
 *   bigarray      a DSM_PLACE_BLOCKED array (TEST_DSM_BIG_MB, default 256):
 *                 each node writes its block, every node checks all of it;
 *                 then each node rewrites the next node's block, same check
 *   alloc         thousands of allocations from all nodes, local and remote
 *                 frees, error cases, reuse, lists built across nodes
 *   threads       4 threads per node faulting and locking at once: exact
 *                 totals, and every counter value read under the lock by
 *                 exactly one thread (a lost update names both readers)
 *   fetchadd      dsm_fetch_add / dsm_cas from all nodes and threads: exact
 *                 totals, every old value returned exactly once
 *   bcast         pointers and buffers broadcast from every root in turn
 *   freestress    threads of every node allocate (malloc, calloc), check,
 *                 fill and free each other's objects for TEST_DSM_SECONDS:
 *                 contents intact, calloc'd memory zero
 *   firsttouch    DSM_PLACE_FIRST_TOUCH and dsm_home_of: untouched pages
 *                 have no home; every Nth page touched by node i mod N is
 *                 homed there; blocks written each by its node are homed
 *                 there (past a neighbour's claim run) without diffs
 *   migrate       home migration (DSM_PLACE_ADAPTIVE, DSM_MIGRATE): rank 0
 *                 allocates and zeroes an array; each node rewrites its own block
 *                 (blocks not page aligned: boundary pages have two
 *                 writers) round after round, every node checks all of
 *                 it after each barrier; the inner pages of a block end up
 *                 homed at its writer (dsm_home_of, dsm_stats), others ask
 *                 the old home and are sent on; then the blocks rotate
 *                 (every page moves again) and a lock-protected counter
 *                 travels between nodes; with DSM_MIGRATE=0 nothing moves,
 *                 and a DSM_PLACE_LOCAL array written the same way stays
 *   misuse        re-locking a held lock, unlocking another thread's or a
 *                 free lock, broadcasts whose roots or lengths differ
 *                 between nodes: the exact error on every node, no hang;
 *                 a child forked after dsm_init: DSM_ECLOSED from every
 *                 call, exit DSM_EXIT_FAULT when it touches shared memory
 *   finalize      ranks > 0 write into rank 0's pages and call dsm_finalize
 *                 right away; rank 0 barriers (the finalize barrier of the
 *                 others), checks the data, then finalizes. Must be last.
 *
 * Every check compares exact values; a mismatch prints the address, the
 * expected and the found value and which node wrote it, and the node exits
 * 1 (dsmrun then stops the others and returns 1). dsm_init returning
 * DSM_ENOTSUP (e.g. DSM_PAGER=uffd without userfaultfd) exits 77 (skip).
 *
 * Environment: TEST_DSM_K (lock and atomic iterations per node or thread,
 * default 200), TEST_DSM_ALLOCS (allocations per node, default 2000),
 * TEST_DSM_ROUNDS (multiwriter / transitivity rounds, default 10),
 * TEST_DSM_BIG_MB (default 256), TEST_DSM_SECONDS (freestress, default 3),
 * TEST_DSM_VERBOSE=1 (dsm_stats() of each
 * node at the end; 2: also a line per phase of a scenario).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dsm.h"

#define EXIT_SKIP 77
#define MAX_REPORT 12     /* mismatches printed per check before the total */
#define THREADS 4         /* threads per node in threads / fetchadd */

/* ---- common state and helpers ------------------------------------------- */

static int me, nodes;
static size_t pg;                 /* page size */
static const char *scenario = "-";
static long k_iter = 200;         /* TEST_DSM_K */
static long n_allocs = 2000;      /* TEST_DSM_ALLOCS */
static long n_rounds = 10;        /* TEST_DSM_ROUNDS */
static long big_mb = 256;         /* TEST_DSM_BIG_MB */
static int verbose;               /* TEST_DSM_VERBOSE: 1 stats, 2 also phases */
static bool skipped;              /* the scenario did not apply (printed why) */

static void flush_all(void)
{
	fflush(stdout);
	fflush(stderr);
}

/* End this node with status 1 after a message. _exit: the library's threads
 * are still running, and nothing of ours needs cleaning up. */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL node %d, scenario %s: ", me, scenario);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	flush_all();
	_exit(1);
}

/* A call that must return 0. */
#define CK(call)                                                              \
	do {                                                                  \
		int ck_r_ = (call);                                           \
		if (ck_r_ != 0)                                               \
			die("%s:%d: %s returned %d (%s)", __FILE__, __LINE__,  \
			    #call, ck_r_, dsm_strerror(ck_r_));               \
	} while (0)

/* A condition that must hold. */
#define REQUIRE(cond, ...)                                                    \
	do {                                                                  \
		if (!(cond))                                                  \
			die(__VA_ARGS__);                                     \
	} while (0)

/* Mismatch accounting: bad() prints the first MAX_REPORT mismatches of the
 * current check, check_done() ends the node if there was any. Called by
 * one thread at a time, or under bad_lock from worker threads. */
static pthread_mutex_t bad_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long n_bad;

static void bad(const char *what, size_t idx, const volatile void *addr,
		uint64_t expected, uint64_t got, int writer)
{
	pthread_mutex_lock(&bad_lock);
	if (n_bad++ < MAX_REPORT) {
		char by[32];

		if (writer >= 0)
			snprintf(by, sizeof by, "node %d", writer);
		else
			snprintf(by, sizeof by, "several nodes");
		fprintf(stderr, "MISMATCH node %d, scenario %s: %s[%zu] at %p: "
			"expected 0x%" PRIx64 ", got 0x%" PRIx64 " (written by %s)\n",
			me, scenario, what, idx, (const void *)addr, expected, got, by);
	}
	pthread_mutex_unlock(&bad_lock);
}

static void check_done(const char *what)
{
	if (n_bad)
		die("%s: %lu mismatches", what, n_bad);
}

/* Progress line of a scenario's phase (TEST_DSM_VERBOSE=2). */
static void phase(const char *what)
{
	if (verbose >= 2) {
		printf("node %d: %s: %s\n", me, scenario, what);
		flush_all();
	}
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* splitmix64 finaliser: the pattern generator. */
static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static uint64_t mix3(uint64_t a, uint64_t b, uint64_t c)
{
	return mix(a * 0x100000001B3ull ^ mix(b * 0xC2B2AE3D27D4EB4Full ^ mix(c)));
}

/* Byte j of the pattern `seed` (the pattern is a stream of mix() words). */
static uint8_t pat_byte(uint64_t seed, size_t j)
{
	return (uint8_t)(mix(seed + j / 8) >> (8 * (j % 8)));
}

static void fill_bytes(void *p, size_t len, uint64_t seed)
{
	uint8_t *b = p;

	for (size_t j = 0; j < len; j++)
		b[j] = pat_byte(seed, j);
}

static void check_bytes(const char *what, const void *p, size_t len,
			uint64_t seed, int writer)
{
	const uint8_t *b = p;

	for (size_t j = 0; j < len; j++) {
		uint8_t e = pat_byte(seed, j);
		if (b[j] != e)
			bad(what, j, b + j, e, b[j], writer);
	}
}

static long env_long(const char *name, long def, long min, long max)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max) {
		fprintf(stderr, "test-dsm: %s=%s: expected an integer in %ld..%ld\n",
			name, s, min, max);
		exit(2);
	}
	return v;
}

/* Allocations made by this node during a scenario, freed by it after the
 * scenario's closing barrier (when no node reads them any more). */
static void *deferred[64];
static int n_deferred;

static void defer_free(void *p)
{
	REQUIRE(n_deferred < (int)(sizeof deferred / sizeof deferred[0]),
		"too many deferred frees");
	deferred[n_deferred++] = p;
}

static void run_deferred_frees(void)
{
	while (n_deferred > 0) {
		dsm_free(deferred[--n_deferred]);
		REQUIRE(dsm_last_error() == 0, "dsm_free(%p) of own allocation: "
			"dsm_last_error() %d (%s)", deferred[n_deferred],
			dsm_last_error(), dsm_strerror(dsm_last_error()));
	}
}

/* Root allocates size bytes with placement where (zero-filled when zero),
 * every node gets the pointer through dsm_bcast. Collective. */
static void *shared_alloc(size_t size, enum dsm_placement where, int root, bool zero)
{
	void *p = NULL;
	int err = 0;

	if (me == root) {
		p = dsm_malloc_placed(size, where);
		if (!p)
			err = dsm_last_error();
		else if (zero)
			memset(p, 0, size);
		if (p)
			defer_free(p);
	}
	CK(dsm_bcast(&p, sizeof p, root));
	if (!p)
		die("dsm_malloc_placed(%zu, %d) on root %d failed%s%s", size,
		    (int)where, root, err ? ": " : "", err ? dsm_strerror(err) : "");
	if (((uintptr_t)p & 15) || (size >= pg && ((uintptr_t)p & (pg - 1))))
		die("dsm_malloc_placed(%zu) returned %p: misaligned", size, p);
	return p;
}

static void barrier(void)
{
	CK(dsm_barrier());
}

/* Lock ids: each scenario its own range, so managers (id mod N) vary. */
enum {
	LK_COUNTER = 100,
	LK_TRANS = 200,
	LK_ALLOC = 300,
	LK_THREADS = 400,
	LK_FREE = 500,
	LK_MISUSE = 600,
	LK_MIGRATE = 700,
};

/* ---- 1. visibility ---------------------------------------------------------- */

/* A region of words (INTERLEAVE: homes on every node) and a small object
 * (a slab slot on rank 0). Round w: node w writes, every node checks
 * against a private model that all nodes update identically. Then partial
 * rewrites: node w rewrites only every third page (starting at w % 3) and
 * every other word of those, so stale and fresh pages mix. */
static void scenario_visibility(void)
{
	size_t nw = (4 * (size_t)nodes * pg + 200) / 8;
	uint64_t *a = shared_alloc(nw * 8, DSM_PLACE_INTERLEAVE, 0, false);
	uint64_t *s = shared_alloc(256, DSM_PLACE_LOCAL, 0, false);
	uint64_t *model = calloc(nw + 32, 8);
	int *who = calloc(nw + 32, sizeof(int));
	size_t wpp = pg / 8;

	REQUIRE(model && who, "out of memory");
	for (int phase = 0; phase < 2; phase++) {
		for (int w = 0; w < nodes; w++) {
			uint64_t seed = mix3(1, phase * 64 + w, 7);

			for (size_t i = 0; i < nw; i++) {
				if (phase == 1 && ((i / wpp) % 3 != (size_t)w % 3 || i % 2))
					continue;
				model[i] = mix(seed + i);
				who[i] = w;
				if (me == w)
					a[i] = model[i];
			}
			for (size_t i = 0; i < 32; i++) {
				if (phase == 1 && i % 2 != (size_t)w % 2)
					continue;
				model[nw + i] = mix(seed ^ (i << 40));
				who[nw + i] = w;
				if (me == w)
					s[i] = model[nw + i];
			}
			barrier();
			for (size_t i = 0; i < nw; i++)
				if (a[i] != model[i])
					bad("region", i, &a[i], model[i], a[i], who[i]);
			for (size_t i = 0; i < 32; i++)
				if (s[i] != model[nw + i])
					bad("small", i, &s[i], model[nw + i], s[i], who[nw + i]);
			check_done(phase ? "partial rewrite" : "full write");
			barrier();  /* nobody writes the next round before all read */
		}
	}
	free(model);
	free(who);
}

/* ---- 2. counter --------------------------------------------------------------- */

/* c[0]: one lock, k increments per node. c[1], c[2] (same page, two locks
 * with different managers): k increments of each per node, in an order
 * that alternates between nodes. Each node checks that the values it reads
 * under a lock only grow (a stale copy would show an old value). */
static void scenario_counter(void)
{
	int64_t *c = shared_alloc(4 * sizeof(int64_t), DSM_PLACE_LOCAL,
				  nodes - 1, true);
	const uint32_t l0 = LK_COUNTER, l1 = LK_COUNTER + 1, l2 = LK_COUNTER + 2;
	int64_t last[3] = { -1, -1, -1 };
	int64_t want = (int64_t)nodes * k_iter;

	barrier();  /* the zeroes are visible */
	for (long i = 0; i < k_iter; i++) {
		CK(dsm_lock(l0));
		if (c[0] <= last[0] || c[0] >= want)
			die("counter c[0] at %p read %" PRId64 " under the lock, "
			    "after %" PRId64 " (iteration %ld)", (void *)&c[0],
			    c[0], last[0], i);
		last[0] = c[0]++;
		CK(dsm_unlock(l0));
	}
	REQUIRE(dsm_unlock(l0) == DSM_EINVAL,
		"dsm_unlock of a lock this node does not hold did not return DSM_EINVAL");
	for (long i = 0; i < k_iter; i++) {
		for (int h = 0; h < 2; h++) {
			int j = 1 + (int)((i + me + h) % 2);
			uint32_t l = j == 1 ? l1 : l2;

			CK(dsm_lock(l));
			if (c[j] <= last[j] || c[j] >= want)
				die("counter c[%d] at %p read %" PRId64 " under lock %u, "
				    "after %" PRId64, j, (void *)&c[j], c[j], l, last[j]);
			last[j] = c[j]++;
			CK(dsm_unlock(l));
		}
	}
	/* Both locks held at once (same order on every node). */
	for (long i = 0; i < k_iter / 4; i++) {
		CK(dsm_lock(l1));
		CK(dsm_lock(l2));
		c[3]++;
		CK(dsm_unlock(l2));
		CK(dsm_unlock(l1));
	}
	barrier();
	for (int j = 0; j < 3; j++)
		if (c[j] != want)
			bad("counter", j, &c[j], (uint64_t)want, (uint64_t)c[j], -1);
	if (c[3] != (int64_t)nodes * (k_iter / 4))
		bad("nested-lock counter", 3, &c[3], (uint64_t)(nodes * (k_iter / 4)),
		    (uint64_t)c[3], -1);
	check_done("counters after the barrier");
}

/* ---- 3. transitivity -------------------------------------------------------- */

struct trans_flags {
	int64_t f1;   /* protected by LK_TRANS: round A finished */
	int64_t pad[7];
	int64_t f2;   /* protected by LK_TRANS + 1: round B finished */
};

/* Spin until *flag == want, reading it under lock l only. */
static void wait_flag(uint32_t l, volatile int64_t *flag, int64_t want)
{
	double t0 = now_s();

	for (;;) {
		int64_t v;

		CK(dsm_lock(l));
		v = *flag;
		CK(dsm_unlock(l));
		if (v == want)
			return;
		if (v > want || v < want - 1)
			die("flag at %p under lock %u is %" PRId64 ", expected %" PRId64
			    " or %" PRId64, (void *)flag, l, v, want - 1, want);
		if (now_s() - t0 > 60)
			die("flag at %p under lock %u still %" PRId64 " after 60 s "
			    "(waiting for %" PRId64 ")", (void *)flag, l, v, want);
		usleep(200);
	}
}

/* Round r: A = r mod N, B = A + 1, C = A + 2. Every node holds a cached copy
 * of the data (read after the previous round), so C must invalidate it
 * from what L2's grant carries about L1's history. C never takes L1. */
static void scenario_transitivity(void)
{
	size_t nw = 2 * pg / 8 + 40;   /* spans pages with different homes */
	uint64_t *da, *db;
	struct trans_flags *fl;
	const uint32_t l1 = LK_TRANS, l2 = LK_TRANS + 1;

	if (nodes < 3) {
		skipped = true;
		if (me == 0)
			printf("scenario transitivity: skipped (needs 3 nodes, have %d)\n",
			       nodes);
		return;
	}
	da = shared_alloc(nw * 8, DSM_PLACE_INTERLEAVE, 0, true);
	db = shared_alloc(nw * 8, DSM_PLACE_INTERLEAVE, 1, true);
	fl = shared_alloc(sizeof *fl, DSM_PLACE_LOCAL, 2, true);
	barrier();
	for (long r = 1; r <= n_rounds; r++) {
		int a = (int)(r % nodes), b = (a + 1) % nodes, c = (a + 2) % nodes;
		uint64_t sa = mix3(3, r, 1), sb = mix3(3, r, 2);

		for (size_t i = 0; i < nw; i++)   /* everyone caches the old data */
		{
			uint64_t e = r == 1 ? 0 : mix(mix3(3, r - 1, 1) + i);

			if (da[i] != e)
				bad("A data before the round", i, &da[i], e, da[i],
				    r == 1 ? 0 : (int)((r - 1) % nodes));
		}
		check_done("data of the previous round");
		barrier();
		if (me == a) {
			for (size_t i = 0; i < nw; i++)
				da[i] = mix(sa + i);
			CK(dsm_lock(l1));
			fl->f1 = r;
			CK(dsm_unlock(l1));
		} else if (me == b) {
			wait_flag(l1, &fl->f1, r);
			for (size_t i = 0; i < nw; i++)
				if (da[i] != mix(sa + i))
					bad("A data seen by B", i, &da[i], mix(sa + i), da[i], a);
			check_done("B after locking L1");
			for (size_t i = 0; i < nw; i++)
				db[i] = mix(sb + i);
			CK(dsm_lock(l2));
			fl->f2 = r;
			CK(dsm_unlock(l2));
		} else if (me == c) {
			wait_flag(l2, &fl->f2, r);
			for (size_t i = 0; i < nw; i++) {
				if (da[i] != mix(sa + i))
					bad("A data seen by C", i, &da[i], mix(sa + i), da[i], a);
				if (db[i] != mix(sb + i))
					bad("B data seen by C", i, &db[i], mix(sb + i), db[i], b);
			}
			check_done("C after locking L2 (transitivity)");
		}
		barrier();
		for (size_t i = 0; i < nw; i++) {
			if (da[i] != mix(sa + i))
				bad("A data after the barrier", i, &da[i], mix(sa + i), da[i], a);
			if (db[i] != mix(sb + i))
				bad("B data after the barrier", i, &db[i], mix(sb + i), db[i], b);
		}
		check_done("after the barrier");
	}
}

/* ---- 4. multiwriter ----------------------------------------------------------- */

static uint64_t mw64(long r, size_t i) { return mix3(4, r, i); }
static uint32_t mw32(long r, size_t i) { return (uint32_t)mix3(5, r, i) | 1; }
/* Consecutive rounds always differ in every byte (37 is odd and < 256). */
static uint8_t mw8(long r, size_t i) { return (uint8_t)(r * 37 + i * 13 + 1); }
#define MW_RUN 100   /* runs area: byte i written by node (i / MW_RUN) % N */

static void scenario_multiwriter(void)
{
	size_t area = 3 * pg;          /* bytes per area; 4 areas */
	uint8_t *base = shared_alloc(4 * area, DSM_PLACE_INTERLEAVE, 0, false);
	uint64_t *w64 = (uint64_t *)base;
	uint32_t *w32 = (uint32_t *)(base + area);
	uint8_t *w8 = base + 2 * area, *run = base + 3 * area;
	size_t n64 = area / 8, n32 = area / 4;

	for (long r = 0; r < n_rounds; r++) {
		for (size_t i = me; i < n64; i += nodes)
			w64[i] = mw64(r, i);
		for (size_t i = me; i < n32; i += nodes)
			w32[i] = mw32(r, i);
		for (size_t i = me; i < area; i += nodes)
			w8[i] = mw8(r, i);
		for (size_t i = 0; i < area; i++)
			if ((int)((i / MW_RUN) % nodes) == me)
				run[i] = mw8(r + 1000, i);
		barrier();
		for (size_t i = 0; i < n64; i++)
			if (w64[i] != mw64(r, i))
				bad("int64", i, &w64[i], mw64(r, i), w64[i], (int)(i % nodes));
		for (size_t i = 0; i < n32; i++)
			if (w32[i] != mw32(r, i))
				bad("int32", i, &w32[i], mw32(r, i), w32[i], (int)(i % nodes));
		for (size_t i = 0; i < area; i++)
			if (w8[i] != mw8(r, i))
				bad("byte", i, &w8[i], mw8(r, i), w8[i], (int)(i % nodes));
		for (size_t i = 0; i < area; i++)
			if (run[i] != mw8(r + 1000, i))
				bad("run byte", i, &run[i], mw8(r + 1000, i), run[i],
				    (int)((i / MW_RUN) % nodes));
		if (n_bad)
			die("round %ld: %lu mismatches after the barrier", r, n_bad);
		barrier();
	}
}

/* ---- 5. bigarray -------------------------------------------------------------- */

static uint64_t big_val(uint64_t i, uint64_t seed)
{
	return i * 0x9E3779B97F4A7C15ull + seed;
}

/* First page of chunk k of a BLOCKED run of npages pages (the chunk rule of
 * the allocator: the first npages mod N chunks have one page more). */
static size_t chunk_start(size_t npages, int k)
{
	size_t q = npages / nodes, rem = npages % nodes;

	return k * q + ((size_t)k < rem ? (size_t)k : rem);
}

/* Round 1: each node writes its own block (homed there), every node reads
 * the whole array. Round 2: each node rewrites the block of the next node
 * (remote pages: twins and diffs for all of it); every node reads it all
 * again, so every cached copy from round 1 must have been invalidated. */
static void scenario_bigarray(void)
{
	size_t size = (size_t)big_mb << 20;
	size_t npages = size / pg, per = pg / 8;
	uint64_t *a = shared_alloc(size, DSM_PLACE_BLOCKED, 0, false);

	for (int round = 0; round < 2; round++) {
		uint64_t seed = mix3(6, nodes, round);
		int blk = (me + round) % nodes;
		size_t lo = chunk_start(npages, blk) * per;
		size_t hi = chunk_start(npages, blk + 1) * per;
		double t0 = now_s(), t1, t2;

		for (size_t i = lo; i < hi; i++)
			a[i] = big_val(i, seed);
		t1 = now_s();
		barrier();
		t2 = now_s();
		for (int k = 0; k < nodes; k++) {
			size_t klo = chunk_start(npages, k) * per;
			size_t khi = chunk_start(npages, k + 1) * per;
			int writer = (k - round + nodes) % nodes;

			for (size_t i = klo; i < khi; i++)
				if (a[i] != big_val(i, seed))
					bad("big", i, &a[i], big_val(i, seed), a[i], writer);
		}
		if (n_bad)
			die("round %d (%s): %lu mismatches in the whole array", round + 1,
			    round ? "blocks written by the previous node" : "own blocks",
			    n_bad);
		if (verbose)
			printf("bigarray round %d: %zu MiB: block written in %.2f s, "
			       "barrier %.2f s, whole array read in %.2f s\n", round + 1,
			       size >> 20, t1 - t0, t2 - t1, now_s() - t2);
		barrier();   /* all reads done before the next round writes */
	}
}

/* ---- 6. alloc ----------------------------------------------------------------- */

struct ent {
	uint64_t addr;    /* 0: failed / not made */
	uint64_t size;
	uint64_t seed;
	int64_t kind;     /* 0 malloc, 1 interleave, 2 calloc, 3 blocked */
};

/* Of batch-1 entries: i % 4 == 0 freed by their allocator, == 1 freed by
 * node allocator + 1, the rest live until the end of the scenario. */
static bool live1(size_t i) { return i % 4 >= 2; }

static void *alloc_one(size_t i, uint64_t rnd, struct ent *e, uint64_t seed)
{
	size_t size;
	void *p;
	int kind;

	if (i % 50 == 49) {
		kind = 1;
		size = pg * (1 + rnd % 3);
		p = dsm_malloc_placed(size, DSM_PLACE_INTERLEAVE);
	} else if (i % 50 == 48) {
		kind = 3;
		size = pg * (size_t)nodes * (1 + rnd % 2) + (rnd >> 8) % 1000;
		p = dsm_malloc_placed(size, DSM_PLACE_BLOCKED);
	} else if (i % 10 == 7) {
		size_t n = 1 + rnd % 30;
		kind = 2;
		size = n * (1 + (rnd >> 8) % 100);
		p = dsm_calloc(n, size / n);
	} else {
		kind = 0;
		size = 1 + rnd % 3000;
		p = dsm_malloc(size);
	}
	if (!p)
		die("allocation %zu (%zu bytes, kind %d) failed: %s", i, size, kind,
		    dsm_strerror(dsm_last_error()));
	if (dsm_last_error() != 0)
		die("allocation %zu succeeded but dsm_last_error() is %d", i,
		    dsm_last_error());
	if (((uintptr_t)p & 15) || (size >= pg && ((uintptr_t)p & (pg - 1))))
		die("allocation %zu of %zu bytes at %p is misaligned", i, size, p);
	if (kind == 2) {
		const uint8_t *b = p;
		for (size_t j = 0; j < size; j++)
			if (b[j])
				bad("calloc byte", j, b + j, 0, b[j], me);
		check_done("dsm_calloc memory is zero");
	}
	fill_bytes(p, size, seed);
	e->addr = (uintptr_t)p;
	e->size = size;
	e->seed = seed;
	e->kind = kind;
	return p;
}

static int cmp_ent(const void *x, const void *y)
{
	const struct ent *a = x, *b = y;

	return a->addr < b->addr ? -1 : a->addr > b->addr;
}

/* No two live allocations overlap (entries with addr 0 are ignored). */
static void check_overlap(const struct ent *tab, size_t n, const char *what)
{
	struct ent *c = malloc(n * sizeof *c);
	size_t m = 0;

	REQUIRE(c, "out of memory");
	for (size_t i = 0; i < n; i++)
		if (tab[i].addr)
			c[m++] = tab[i];
	qsort(c, m, sizeof *c, cmp_ent);
	for (size_t i = 1; i < m; i++)
		if (c[i - 1].addr + c[i - 1].size > c[i].addr)
			die("%s: allocations overlap: [%#" PRIx64 ", +%" PRIu64 ") and [%#"
			    PRIx64 ", +%" PRIu64 ")", what, c[i - 1].addr, c[i - 1].size,
			    c[i].addr, c[i].size);
	free(c);
}

static void check_ent(const char *what, const struct ent *e, int owner)
{
	if (!e->addr)
		die("%s: entry of node %d not filled in", what, owner);
	check_bytes(what, (void *)(uintptr_t)e->addr, e->size, e->seed, owner);
}

/* The error cases of one node: each leaves dsm_last_error() == DSM_EINVAL
 * (or DSM_ENOMEM) and changes nothing. */
static void alloc_errors(struct ent *mine, struct ent *next)
{
	void *p, *libc;
	int stackvar = 0, e;
	size_t m = (size_t)n_allocs;

#define EXPECT_NULL(call, err1, err2)                                         \
	do {                                                                  \
		void *p_ = (call);                                            \
		int e_ = dsm_last_error();                                    \
		if (p_ || (e_ != (err1) && e_ != (err2)))                     \
			die("%s returned %p with dsm_last_error() %d (%s), "  \
			    "expected NULL and %s", #call, p_, e_,            \
			    dsm_strerror(e_), #err1);                         \
	} while (0)
#define EXPECT_FREE_EINVAL(ptr, what)                                         \
	do {                                                                  \
		dsm_free(ptr);                                                \
		e = dsm_last_error();                                         \
		if (e != DSM_EINVAL)                                          \
			die("dsm_free(%p) (%s): dsm_last_error() %d (%s), "   \
			    "expected DSM_EINVAL", (void *)(ptr), what, e,    \
			    dsm_strerror(e));                                 \
	} while (0)

	EXPECT_NULL(dsm_malloc(0), DSM_EINVAL, DSM_EINVAL);
	EXPECT_NULL(dsm_malloc_placed(0, DSM_PLACE_INTERLEAVE), DSM_EINVAL, DSM_EINVAL);
	EXPECT_NULL(dsm_calloc(0, 8), DSM_EINVAL, DSM_EINVAL);
	EXPECT_NULL(dsm_malloc_placed(64, (enum dsm_placement)7), DSM_EINVAL, DSM_EINVAL);
	EXPECT_NULL(dsm_malloc((size_t)1 << 60), DSM_ENOMEM, DSM_ENOMEM);
	EXPECT_NULL(dsm_malloc(SIZE_MAX), DSM_ENOMEM, DSM_ENOMEM);
	EXPECT_NULL(dsm_malloc(SIZE_MAX - pg + 2), DSM_ENOMEM, DSM_ENOMEM);
	EXPECT_NULL(dsm_malloc_placed(SIZE_MAX, DSM_PLACE_BLOCKED), DSM_ENOMEM, DSM_ENOMEM);
	EXPECT_NULL(dsm_calloc(SIZE_MAX / 2, 4), DSM_ENOMEM, DSM_EINVAL);

	/* A success clears the error. */
	p = dsm_malloc(24);
	REQUIRE(p && dsm_last_error() == 0, "dsm_malloc(24) after the errors: %p, %d",
		p, dsm_last_error());
	dsm_free(p);
	REQUIRE(dsm_last_error() == 0, "dsm_free: %d", dsm_last_error());
	EXPECT_FREE_EINVAL(p, "double free, own small object");

	/* Own entry 0 was freed already; entry 1 of the next node was freed by
	 * this node (its owner sees a second free through a round trip). */
	EXPECT_FREE_EINVAL((void *)(uintptr_t)mine[0].addr, "double free, own");
	EXPECT_FREE_EINVAL((void *)(uintptr_t)next[1].addr, "double free, another node's");

	/* Interior pointers of live entries (2 and 3 are live), own and remote. */
	for (size_t i = 2; i < m; i++) {
		if (live1(i) && mine[i].size >= 32) {
			EXPECT_FREE_EINVAL((void *)(uintptr_t)(mine[i].addr + 16),
					   "interior, own");
			break;
		}
	}
	for (size_t i = 2; i < m; i++) {
		if (live1(i) && next[i].size >= 2) {
			EXPECT_FREE_EINVAL((void *)(uintptr_t)(next[i].addr + next[i].size / 2),
					   "interior, another node's");
			break;
		}
	}
	for (size_t i = 2; i < m; i++) {
		if (live1(i) && next[i].kind == 1 && next[i].size > pg) {
			EXPECT_FREE_EINVAL((void *)(uintptr_t)(next[i].addr + pg),
					   "second page of a page run, another node's");
			break;
		}
	}

	libc = malloc(100);
	REQUIRE(libc, "out of memory");
	EXPECT_FREE_EINVAL(libc, "libc malloc");
	free(libc);
	EXPECT_FREE_EINVAL(&stackvar, "stack");
	dsm_free(NULL);

	/* Later allocations still work. */
	p = dsm_malloc(3 * pg);
	REQUIRE(p && dsm_last_error() == 0, "dsm_malloc after bad frees: %p, %d",
		p, dsm_last_error());
	fill_bytes(p, 3 * pg, 99);
	check_bytes("after bad frees", p, 3 * pg, 99, me);
	check_done("allocation after bad frees");
	dsm_free(p);
	REQUIRE(dsm_last_error() == 0, "dsm_free: %d", dsm_last_error());
#undef EXPECT_NULL
#undef EXPECT_FREE_EINVAL
}

struct lnode {
	uint64_t next;   /* struct lnode *, 0 at the end */
	int64_t value;
	int32_t writer;
	int32_t seq;
};

struct lhead {
	uint64_t head, tail;
	int64_t len;
};

static int64_t lval(int list, int writer, int seq)
{
	return (int64_t)mix3(7 + list, writer, seq);
}

static void append(struct lhead *h, int list, int seq)
{
	struct lnode *n = dsm_malloc(sizeof *n);

	if (!n)
		die("dsm_malloc of a list node: %s", dsm_strerror(dsm_last_error()));
	n->next = 0;
	n->value = lval(list, me, seq);
	n->writer = me;
	n->seq = seq;
	if (h->tail)
		((struct lnode *)(uintptr_t)h->tail)->next = (uintptr_t)n;
	else
		h->head = (uintptr_t)n;
	h->tail = (uintptr_t)n;
	h->len++;
}

/* Walk list `list` and check it: `ordered` lists hold node 0's L entries,
 * then node 1's, ...; otherwise each writer's entries are in seq order. */
static void check_list(struct lhead *h, int list, long per, bool ordered, bool free_it)
{
	long len = 0, want = (long)nodes * per;
	int *next_seq = calloc(nodes, sizeof(int));
	struct lnode *n = (struct lnode *)(uintptr_t)h->head, *last = NULL;

	REQUIRE(next_seq, "out of memory");
	while (n) {
		struct lnode *nx;

		if (len >= want)
			die("list %d: longer than %ld (node at %p)", list, want, (void *)n);
		if (n->writer < 0 || n->writer >= nodes)
			die("list %d: element %ld at %p: writer %d", list, len,
			    (void *)n, n->writer);
		if (ordered && n->writer != len / per)
			die("list %d: element %ld at %p was written by node %d, "
			    "expected node %ld", list, len, (void *)n, n->writer, len / per);
		if (n->seq != next_seq[n->writer])
			die("list %d: element %ld at %p from node %d has seq %d, expected %d",
			    list, len, (void *)n, n->writer, n->seq, next_seq[n->writer]);
		next_seq[n->writer]++;
		if (n->value != lval(list, n->writer, n->seq))
			bad("list value", (size_t)len, &n->value,
			    (uint64_t)lval(list, n->writer, n->seq), (uint64_t)n->value,
			    n->writer);
		len++;
		last = n;
		nx = (struct lnode *)(uintptr_t)n->next;
		if (free_it) {
			int w = n->writer;

			dsm_free(n);
			last = NULL;
			REQUIRE(dsm_last_error() == 0, "dsm_free of list node %p (from "
				"node %d): %d (%s)", (void *)n, w, dsm_last_error(),
				dsm_strerror(dsm_last_error()));
		}
		n = nx;
	}
	check_done("list values");
	if (len != want || h->len != want)
		die("list %d: walked %ld elements, len field %" PRId64 ", expected %ld",
		    list, len, h->len, want);
	if (!free_it && h->tail != (uintptr_t)last)
		die("list %d: tail %#" PRIx64 " is not the last element %p", list,
		    h->tail, (void *)last);
	for (int w = 0; w < nodes; w++)
		if (next_seq[w] != per)
			die("list %d: %d elements of node %d, expected %ld", list,
			    next_seq[w], w, per);
	free(next_seq);
}

static void scenario_alloc(void)
{
	size_t m = (size_t)n_allocs, m2 = m / 2, tot = m * nodes;
	struct ent *t1 = shared_alloc(tot * sizeof *t1, DSM_PLACE_INTERLEAVE, 0, false);
	struct ent *t2 = shared_alloc((m2 * nodes + 1) * sizeof *t2,
				      DSM_PLACE_INTERLEAVE, nodes - 1, false);
	struct lhead *heads = shared_alloc(2 * sizeof *heads, DSM_PLACE_LOCAL, 0, true);
	int nx = (me + 1) % nodes, pv = (me + nodes - 1) % nodes;
	struct ent *mine = t1 + me * m, *next = t1 + nx * m;
	long per = n_allocs / 20;

	/* Batch 1: everybody at once; the table lives in shared memory. */
	phase("batch 1");
	for (size_t i = 0; i < m; i++)
		alloc_one(i, mix3(8, me, i), &mine[i], mix3(9, me, i));
	check_overlap(mine, m, "own batch 1");
	barrier();
	phase("batch 1 check");
	if (me == 0)
		check_overlap(t1, tot, "batch 1 of all nodes");
	for (size_t i = 0; i < m; i++)
		check_ent("batch 1 of the next node", &next[i], nx);
	check_done("batch 1 read by another node");
	barrier();

	/* Frees: own entries i % 4 == 0, the next node's i % 4 == 1. */
	phase("frees");
	for (size_t i = 0; i < m; i += 4) {
		dsm_free((void *)(uintptr_t)mine[i].addr);
		REQUIRE(dsm_last_error() == 0, "dsm_free(own entry %zu at %#" PRIx64
			"): %s", i, mine[i].addr, dsm_strerror(dsm_last_error()));
		if (i + 1 < m) {
			dsm_free((void *)(uintptr_t)next[i + 1].addr);
			REQUIRE(dsm_last_error() == 0, "dsm_free(node %d's entry %zu at %#"
				PRIx64 "): %s", nx, i + 1, next[i + 1].addr,
				dsm_strerror(dsm_last_error()));
		}
	}
	barrier();   /* all frees done before the double frees below */
	phase("error cases");
	alloc_errors(mine, next);
	barrier();

	/* Live entries intact; then batch 2 reuses the freed space. */
	for (size_t i = 0; i < m; i++) {
		if (!live1(i))
			continue;
		check_ent("live batch-1 entry, own", &mine[i], me);
		check_ent("live batch-1 entry of the previous node", &t1[pv * m + i], pv);
	}
	check_done("live entries after frees and bad frees");
	phase("batch 2");
	for (size_t i = 0; i < m2; i++)
		alloc_one(i, mix3(10, me, i), &t2[me * m2 + i], mix3(11, me, i));
	barrier();
	phase("batch 2 check");
	if (me == 0) {
		struct ent *all = malloc((tot + m2 * nodes) * sizeof *all);
		size_t n = 0;

		REQUIRE(all, "out of memory");
		for (size_t i = 0; i < tot; i++)
			if (live1(i % m))
				all[n++] = t1[i];
		for (size_t i = 0; i < m2 * nodes; i++)
			all[n++] = t2[i];
		check_overlap(all, n, "live batch 1 and batch 2 of all nodes");
		free(all);
	}
	for (size_t i = 0; i < m2; i++)
		check_ent("batch 2 of the next node", &t2[nx * m2 + i], nx);
	for (size_t i = 0; i < m; i++)
		if (live1(i))
			check_ent("live batch-1 entry of the next node", &next[i], nx);
	check_done("batch 2");
	barrier();
	phase("free the rest");
	for (size_t i = 0; i < m; i++) {
		if (live1(i)) {
			dsm_free((void *)(uintptr_t)mine[i].addr);
			REQUIRE(dsm_last_error() == 0, "dsm_free(own live entry %zu): %s",
				i, dsm_strerror(dsm_last_error()));
		}
	}
	for (size_t i = 0; i < m2; i++) {   /* batch 2: freed by the next node */
		dsm_free((void *)(uintptr_t)t2[nx * m2 + i].addr);
		REQUIRE(dsm_last_error() == 0, "dsm_free(node %d's batch-2 entry %zu): %s",
			nx, i, dsm_strerror(dsm_last_error()));
	}

	/* List 0: built node by node between barriers. */
	phase("lists");
	for (int w = 0; w < nodes; w++) {
		if (me == w)
			for (long j = 0; j < per; j++)
				append(&heads[0], 0, (int)j);
		barrier();
	}
	/* List 1: all nodes append at once under a lock. */
	for (long j = 0; j < per; j++) {
		CK(dsm_lock(LK_ALLOC));
		append(&heads[1], 1, (int)j);
		CK(dsm_unlock(LK_ALLOC));
	}
	barrier();
	phase("list check");
	check_list(&heads[0], 0, per, true, false);
	check_list(&heads[1], 1, per, false, false);
	barrier();
	phase("list free");
	if (me == nodes - 1) {   /* frees the others' nodes: round trips */
		check_list(&heads[0], 0, per, true, true);
		check_list(&heads[1], 1, per, false, true);
	}
}

/* ---- 7. threads --------------------------------------------------------------- */

struct thr_shared {
	int64_t counter[2];   /* protected by LK_THREADS + j */
};

struct thr_arg {
	pthread_t tid;
	int t;
	long k;
	struct thr_shared *sh;
	const uint64_t *input;
	size_t n_input;
	uint64_t *slots;
	size_t n_slots;
	int64_t *reads;       /* threads: [id * k + i]: counter value read */
	int64_t *olds;        /* fetchadd: olds[0 .. k) returned to this thread */
	int64_t *who;         /* fetchadd: shared, indexed by old value */
	int64_t *who_cas;
	int64_t *ctr;         /* fetchadd: [0] fetch_add counter, [1] CAS counter */
	long k_cas;           /* fetchadd: CAS increments per thread */
	long cas_retries;
};

static uint64_t slot_val(int node, int t, size_t i)
{
	return mix3(12, node * THREADS + t, i);
}

static void *threads_body(void *p)
{
	struct thr_arg *a = p;
	int id = me * THREADS + a->t, stride = nodes * THREADS;
	uint32_t l = LK_THREADS + (a->t % 2);

	/* All threads of all nodes fault on the same input pages at once. */
	for (size_t i = 0; i < a->n_input; i++)
		if (a->input[i] != mix3(13, 0, i))
			bad("input", i, &a->input[i], mix3(13, 0, i), a->input[i], 0);
	for (long i = 0; i < a->k; i++) {
		int64_t v;

		CK(dsm_lock(l));
		v = a->sh->counter[a->t % 2];
		a->sh->counter[a->t % 2] = v + 1;
		CK(dsm_unlock(l));
		a->reads[(size_t)id * a->k + i] = v;
		/* Own slot i: slots of all threads of all nodes interleave. */
		a->slots[(size_t)i * stride + id] = slot_val(me, a->t, i);
	}
	return NULL;
}

static void start_threads(struct thr_arg *args, void *(*fn)(void *))
{
	for (int t = 0; t < THREADS; t++) {
		int r = pthread_create(&args[t].tid, NULL, fn, &args[t]);
		REQUIRE(r == 0, "pthread_create: %s", strerror(r));
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(args[t].tid, NULL);
}

static void scenario_threads(void)
{
	long k = k_iter / 2 > 0 ? k_iter / 2 : 1;
	size_t n_input = 4 * pg / 8, stride = (size_t)nodes * THREADS;
	size_t n_slots = (size_t)k * stride;
	struct thr_shared *sh = shared_alloc(sizeof *sh, DSM_PLACE_LOCAL, nodes - 1, true);
	uint64_t *input = shared_alloc(n_input * 8, DSM_PLACE_INTERLEAVE, 0, false);
	uint64_t *slots = shared_alloc(n_slots * 8, DSM_PLACE_INTERLEAVE, 1 % nodes, true);
	int64_t *reads = shared_alloc(stride * k * 8, DSM_PLACE_INTERLEAVE, 0, false);
	struct thr_arg args[THREADS];

	if (me == 0)
		for (size_t i = 0; i < n_input; i++)
			input[i] = mix3(13, 0, i);
	barrier();
	for (int t = 0; t < THREADS; t++)
		args[t] = (struct thr_arg){ .t = t, .k = k, .sh = sh, .input = input,
			.n_input = n_input, .slots = slots, .n_slots = n_slots,
			.reads = reads };
	start_threads(args, threads_body);
	check_done("input read by the threads");
	barrier();
	for (int j = 0; j < 2; j++) {
		int64_t want = (int64_t)nodes * (THREADS / 2) * k;
		if (sh->counter[j] != want)
			bad("counter", j, &sh->counter[j], (uint64_t)want,
			    (uint64_t)sh->counter[j], -1);
	}
	for (size_t s = 0; s < n_slots; s++) {
		int id = (int)(s % stride), node = id / THREADS, t = id % THREADS;
		uint64_t e = slot_val(node, t, s / stride);

		if (slots[s] != e)
			bad("slot", s, &slots[s], e, slots[s], node);
	}
	/* Each counter value was read under the lock by exactly one thread; a
	 * lost update shows as one value read by two threads (named). */
	for (int j = 0; j < 2; j++) {
		int64_t want = (int64_t)nodes * (THREADS / 2) * k;
		int *by = malloc(want * sizeof(int));

		REQUIRE(by, "out of memory");
		for (int64_t v = 0; v < want; v++)
			by[v] = -1;
		for (int id = 0; id < (int)stride; id++) {
			if (id % THREADS % 2 != j)
				continue;
			for (long i = 0; i < k; i++) {
				int64_t v = reads[(size_t)id * k + i];

				if (v < 0 || v >= want || by[v] >= 0) {
					if (n_bad++ < MAX_REPORT)
						fprintf(stderr, "MISMATCH node %d, scenario threads: "
							"counter[%d] read as %" PRId64 " under lock %d "
							"by node %d thread %d (increment %ld)%s%d%s%d\n",
							me, j, v, LK_THREADS + j, id / THREADS,
							id % THREADS, i,
							v >= 0 && v < want ? ", and also by node " : "",
							v >= 0 && v < want ? by[v] / THREADS : 0,
							v >= 0 && v < want ? " thread " : "",
							v >= 0 && v < want ? by[v] % THREADS : 0);
				} else {
					by[v] = id;
				}
			}
		}
		free(by);
	}
	check_done("counters and slots after the barrier");
}

/* ---- 8. fetchadd -------------------------------------------------------------- */

static void *fetchadd_body(void *p)
{
	struct thr_arg *a = p;
	int64_t id = me * THREADS + a->t + 1, total = (int64_t)nodes * THREADS * a->k;
	int64_t total_cas = (int64_t)nodes * THREADS * a->k_cas;
	int64_t prev = -1, guess = 0;

	for (long i = 0; i < a->k; i++) {
		int64_t old;

		CK(dsm_fetch_add(&a->ctr[0], 1, &old));
		if (old <= prev || old >= total)
			die("thread %d: dsm_fetch_add returned old value %" PRId64
			    " after %" PRId64 " (total %" PRId64 ")", a->t, old, prev, total);
		prev = old;
		a->who[old] = id;   /* each index written by exactly one thread */
	}
	prev = -1;
	for (long i = 0; i < a->k_cas; i++) {
		for (;;) {
			int64_t old;

			CK(dsm_cas(&a->ctr[1], guess, guess + 1, &old));
			if (old == guess)
				break;
			a->cas_retries++;
			guess = old;
		}
		if (guess <= prev || guess >= total_cas)
			die("thread %d: successful dsm_cas from %" PRId64 " after %" PRId64
			    " (total %" PRId64 ")", a->t, guess, prev, total_cas);
		prev = guess;
		a->who_cas[guess] = id;
		guess++;
	}
	return NULL;
}

static void scenario_fetchadd(void)
{
	long k = k_iter, k_cas = k_iter / 4 > 0 ? k_iter / 4 : 1;
	size_t total = (size_t)nodes * THREADS * k;
	size_t total_cas = (size_t)nodes * THREADS * k_cas;
	/* The counters on page 1 of an interleaved run: homed at node 1. */
	int64_t *cpage = shared_alloc(2 * pg, DSM_PLACE_INTERLEAVE, 0, true);
	int64_t *ctr = (int64_t *)((char *)cpage + pg);
	int64_t *who = shared_alloc(total * 8, DSM_PLACE_INTERLEAVE, 0, true);
	int64_t *who_cas = shared_alloc(total_cas * 8, DSM_PLACE_INTERLEAVE, nodes - 1, true);
	struct thr_arg args[THREADS];
	int64_t local = 0, old = 0;
	long retries = 0;

	barrier();
	REQUIRE(dsm_fetch_add((int64_t *)((char *)ctr + 4), 1, NULL) == DSM_EINVAL,
		"dsm_fetch_add on a misaligned address did not return DSM_EINVAL");
	REQUIRE(dsm_cas((int64_t *)((char *)ctr + 2), 0, 1, NULL) == DSM_EINVAL,
		"dsm_cas on a misaligned address did not return DSM_EINVAL");
	REQUIRE(dsm_fetch_add(&local, 1, NULL) == DSM_EINVAL,
		"dsm_fetch_add on private memory did not return DSM_EINVAL");
	REQUIRE(local == 0, "dsm_fetch_add on private memory changed it");
	for (int t = 0; t < THREADS; t++)
		args[t] = (struct thr_arg){ .t = t, .k = k, .k_cas = k_cas, .who = who,
			.who_cas = who_cas, .ctr = ctr };
	start_threads(args, fetchadd_body);
	for (int t = 0; t < THREADS; t++)
		retries += args[t].cas_retries;
	barrier();
	if (ctr[0] != (int64_t)total)
		bad("fetch_add counter (plain load)", 0, &ctr[0], total,
		    (uint64_t)ctr[0], -1);
	if (ctr[1] != (int64_t)total_cas)
		bad("CAS counter (plain load)", 1, &ctr[1], total_cas,
		    (uint64_t)ctr[1], -1);
	/* total slots, total increments, each in range: all distinct iff every
	 * slot was taken. */
	for (size_t i = 0; i < total; i++)
		if (who[i] == 0)
			bad("fetch_add old value never returned", i, &who[i], 1, 0, -1);
	for (size_t i = 0; i < total_cas; i++)
		if (who_cas[i] == 0)
			bad("CAS old value never succeeded", i, &who_cas[i], 1, 0, -1);
	check_done("after the barrier");
	barrier();
	/* Negative adds, then the plain load again. */
	for (long i = 0; i < k / 4; i++)
		CK(dsm_fetch_add(&ctr[0], -3, NULL));
	CK(dsm_cas(&ctr[1], -12345, 0, &old));   /* fails: counter unchanged */
	REQUIRE(old == (int64_t)total_cas, "dsm_cas (failing) returned old %" PRId64
		", expected %zu", old, total_cas);
	barrier();
	if (ctr[0] != (int64_t)total - 3 * nodes * (k / 4))
		bad("counter after negative adds", 0, &ctr[0],
		    total - 3 * nodes * (k / 4), (uint64_t)ctr[0], -1);
	if (ctr[1] != (int64_t)total_cas)
		bad("CAS counter after a failing CAS", 1, &ctr[1], total_cas,
		    (uint64_t)ctr[1], -1);
	check_done("after negative adds");
	if (verbose)
		printf("fetchadd: %ld CAS retries on this node\n", retries);
}

/* ---- 9. bcast ------------------------------------------------------------------- */

struct blob100 {
	uint8_t b[100];
};

static void scenario_bcast(void)
{
	size_t len = 3 * pg + 123, biglen = 70000;
	uint8_t *big = malloc(biglen);

	REQUIRE(big, "out of memory");
	REQUIRE(dsm_bcast(&len, sizeof len, nodes) == DSM_EINVAL,
		"dsm_bcast with root == N did not return DSM_EINVAL");
	REQUIRE(dsm_bcast(&len, sizeof len, -1) == DSM_EINVAL,
		"dsm_bcast with root -1 did not return DSM_EINVAL");
	for (int root = 0; root < nodes; root++) {
		uint8_t *p = NULL;
		struct blob100 s;
		uint64_t seed = mix3(14, root, 0);
		int dummy = 0;

		if (me == root) {
			p = dsm_malloc(len);
			REQUIRE(p, "dsm_malloc(%zu): %s", len, dsm_strerror(dsm_last_error()));
			defer_free(p);
			fill_bytes(p, len, seed);
			fill_bytes(s.b, sizeof s.b, seed + 1);
			fill_bytes(big, biglen, seed + 2);
		} else {
			memset(&s, 0xEE, sizeof s);
			memset(big, 0xEE, biglen);
		}
		CK(dsm_bcast(&p, sizeof p, root));
		REQUIRE(p, "bcast pointer from root %d is NULL", root);
		check_bytes("data through the broadcast pointer", p, len, seed, root);
		check_done("data through the pointer");
		CK(dsm_bcast(&s, sizeof s, root));
		check_bytes("struct of 100 bytes", s.b, sizeof s.b, seed + 1, root);
		CK(dsm_bcast(big, biglen, root));
		check_bytes("buffer of 70000 bytes", big, biglen, seed + 2, root);
		check_done("broadcast buffers");
		/* The root rewrites the data; the next broadcast publishes it. */
		barrier();
		if (me == root)
			fill_bytes(p, len, seed + 3);
		CK(dsm_bcast(&dummy, sizeof dummy, root));
		check_bytes("data rewritten before a second broadcast", p, len,
			    seed + 3, root);
		check_done("second broadcast");
		barrier();
	}
	free(big);
}

/* ---- 10. freestress ----------------------------------------------------------- */

/* THREADS threads on every node, for TEST_DSM_SECONDS (default 3): pick a
 * slot of a shared table at random and take its lock; an object there is
 * checked (the pattern its last writer filled it with) and rewritten, and
 * after a few such visits (from any nodes) freed, wherever it was
 * allocated; an empty slot gets a new object: dsm_calloc (must read as
 * zeros) or dsm_malloc_placed (LOCAL, INTERLEAVE or BLOCKED), slab sizes
 * and page runs, filled with a fresh pattern. So runs and slabs are freed
 * by their owner and by remote nodes while other threads allocate. Every
 * other thread churns: dsm_calloc, check for zeros, fill, dsm_free, as fast
 * as it can. A run handed out again before every node forgot it shows up
 * as stale contents or a non-zero calloc. */
#define FS_SLOTS 64

struct fs_slot {
	void *p;
	uint64_t size, seed;
	int64_t writer, visits;
};

struct fs_arg {
	pthread_t tid;
	int t;
	struct fs_slot *tab;
	double end;
	long allocs, frees;
};

static size_t fs_size(uint64_t r)
{
	switch (r % 4) {
	case 0: return 16 + (r >> 8) % 2033;                 /* a slab slot */
	case 1: return 1 + (r >> 8) % 200;
	case 2: return pg * (1 + (r >> 8) % 8);              /* whole pages */
	default: return pg * (1 + (r >> 8) % 8) - (r >> 16) % 100;
	}
}

/* The other half of the threads: allocate, check, fill and free page runs
 * and slab objects of this node at a high rate, so freed memory is handed
 * out again at once. */
static void fs_churn(struct fs_arg *a)
{
	uint64_t rnd = mix3(23, me, a->t);

	while (now_s() < a->end) {
		size_t size = (rnd = mix(rnd)) & 1 ? pg * (1 + (rnd >> 8) % 2) : 16 + (rnd >> 8) % 2000;
		uint8_t *o = dsm_calloc(1, size);

		REQUIRE(o, "dsm_calloc(%zu): %s", size, dsm_strerror(dsm_last_error()));
		for (size_t j = 0; j < size; j++)
			if (o[j]) {
				bad("dsm_calloc'd byte (churn)", j, o + j, 0, o[j], me);
				break;
			}
		memset(o, 0xA5, size);
		dsm_free(o);
		REQUIRE(dsm_last_error() == 0, "dsm_free(%p): %s", (void *)o,
			dsm_strerror(dsm_last_error()));
		a->allocs++;
		a->frees++;
	}
}

static void *fs_body(void *p)
{
	struct fs_arg *a = p;
	uint64_t rnd = mix3(20, me, a->t);

	if (a->t % 2) {
		fs_churn(a);
		return NULL;
	}
	while (now_s() < a->end) {
		struct fs_slot *sl;
		unsigned s;

		rnd = mix(rnd);
		s = (unsigned)(rnd % FS_SLOTS);
		sl = &a->tab[s];
		CK(dsm_lock(LK_FREE + s));
		if (sl->p && sl->visits < 2 + (int64_t)(rnd >> 60)) {
			/* visited by several nodes before its free: each checks
			 * and rewrites it */
			check_bytes("object contents", sl->p, sl->size, sl->seed, (int)sl->writer);
			sl->seed = mix3(22, rnd, me);
			sl->writer = me;
			fill_bytes(sl->p, sl->size, sl->seed);
			sl->visits++;
		} else if (sl->p) {
			check_bytes("object contents before its free", sl->p, sl->size, sl->seed,
				    (int)sl->writer);
			dsm_free(sl->p);
			REQUIRE(dsm_last_error() == 0, "dsm_free(%p) of node %d's object: %s",
				sl->p, (int)sl->writer, dsm_strerror(dsm_last_error()));
			sl->p = NULL;
			a->frees++;
		} else {
			uint64_t r = mix(rnd + 1);
			size_t size = fs_size(r);
			bool zero = (r >> 40) & 1;
			enum dsm_placement where = (enum dsm_placement)((r >> 41) % 3);
			uint8_t *o = zero ? dsm_calloc(1, size) : dsm_malloc_placed(size, where);

			REQUIRE(o, "%s(%zu): %s", zero ? "dsm_calloc" : "dsm_malloc_placed", size,
				dsm_strerror(dsm_last_error()));
			if (zero)
				for (size_t j = 0; j < size; j++)
					if (o[j])
						bad("dsm_calloc'd byte", j, o + j, 0, o[j], me);
			sl->seed = mix3(21, rnd, me);
			sl->size = size;
			sl->writer = me;
			sl->visits = 0;
			fill_bytes(o, size, sl->seed);
			sl->p = o;
			a->allocs++;
		}
		CK(dsm_unlock(LK_FREE + s));
	}
	return NULL;
}

static void scenario_freestress(void)
{
	double secs = (double)env_long("TEST_DSM_SECONDS", 3, 1, 3600);
	struct fs_slot *tab = shared_alloc(FS_SLOTS * sizeof(*tab), DSM_PLACE_LOCAL, 0, true);
	struct fs_arg args[THREADS];
	long allocs = 0, frees = 0;

	for (int t = 0; t < THREADS; t++)
		args[t] = (struct fs_arg){ .t = t, .tab = tab, .end = now_s() + secs };
	for (int t = 0; t < THREADS; t++) {
		int r = pthread_create(&args[t].tid, NULL, fs_body, &args[t]);
		REQUIRE(r == 0, "pthread_create: %s", strerror(r));
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(args[t].tid, NULL);
	for (int t = 0; t < THREADS; t++) {
		allocs += args[t].allocs;
		frees += args[t].frees;
	}
	check_done("objects allocated and freed by every node");
	phase("freestress");
	if (verbose >= 2)
		printf("node %d: %ld allocations, %ld frees\n", me, allocs, frees);
	barrier();
	if (me == 0)
		for (unsigned s = 0; s < FS_SLOTS; s++)
			if (tab[s].p) {
				check_bytes("object left at the end", tab[s].p, tab[s].size,
					    tab[s].seed, (int)tab[s].writer);
				dsm_free(tab[s].p);
				REQUIRE(dsm_last_error() == 0, "dsm_free of a leftover: %s",
					dsm_strerror(dsm_last_error()));
			}
	check_done("objects left at the end");
	REQUIRE(allocs > 0, "no allocation in %.0f s", secs);
}

/* ---- 11. misuse ------------------------------------------------------------- */

/* What a careless program does gets a clear error on every node, at once,
 * and changes nothing: a thread locking a lock it holds (DSM_EDEADLK, not
 * a hang), unlocking a lock another thread holds (DSM_EPERM) or nobody
 * holds (DSM_EINVAL), broadcasts called with different roots or lengths
 * on different nodes (DSM_EINVAL on every node, including when no node
 * thinks it is the root). Ordinary calls work afterwards. */
struct mu_arg {
	pthread_t tid;
	uint32_t id;
	volatile int stage; /* 1: locked; 2: may unlock; 3: unlocked */
	int err;
};

static void *mu_holder(void *p)
{
	struct mu_arg *a = p;

	a->err = dsm_lock(a->id);
	a->stage = 1;
	while (a->stage != 2)
		usleep(1000);
	if (!a->err)
		a->err = dsm_unlock(a->id);
	a->stage = 3;
	return NULL;
}

static void expect_bcast(void *buf, size_t len, int root, int want, const char *what)
{
	double t0 = now_s();
	int r = dsm_bcast(buf, len, root);

	REQUIRE(r == want, "%s: dsm_bcast(%zu bytes, root %d) returned %d (%s), expected %d (%s)",
		what, len, root, r, dsm_strerror(r), want, dsm_strerror(want));
	REQUIRE(now_s() - t0 < 5, "%s: dsm_bcast took %.1f s", what, now_s() - t0);
}

/* A child forked after dsm_init is not a node: every call returns
 * DSM_ECLOSED there, and a load or store of shared memory ends it with
 * status DSM_EXIT_FAULT and a line that says why. The node goes on. */
static void misuse_fork(void)
{
	uint64_t *shared = shared_alloc(pg, DSM_PLACE_LOCAL, 0, true);
	char msg[512] = "";
	int fd[2], st;
	ssize_t n;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int bad = 0;

		bad |= dsm_rank() != -1;
		bad |= dsm_barrier() != DSM_ECLOSED;
		bad |= dsm_lock(1) != DSM_ECLOSED;
		bad |= dsm_bcast(&bad, sizeof bad, 0) != DSM_ECLOSED;
		bad |= dsm_malloc(64) != NULL || dsm_last_error() != DSM_ECLOSED;
		bad |= dsm_finalize() != DSM_ECLOSED;
		_exit(bad ? 3 : 0);
	}
	REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
	REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		"a forked child's dsm_* calls did not all return DSM_ECLOSED (status %#x)", st);
	REQUIRE(pipe(fd) == 0, "pipe: %s", strerror(errno));
	pid = fork();
	REQUIRE(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		shared[0] = 1; /* ends the child */
		_exit(0);
	}
	close(fd[1]);
	n = read(fd[0], msg, sizeof msg - 1);
	close(fd[0]);
	msg[n > 0 ? n : 0] = '\0';
	REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
	REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == DSM_EXIT_FAULT,
		"a forked child storing to shared memory: status %#x, expected exit %d (%s)",
		st, DSM_EXIT_FAULT, msg);
	REQUIRE(strstr(msg, "forked after dsm_init"), "the child's message: '%s'", msg);
	/* the node itself is unaffected */
	barrier();
	if (me == 1 % nodes)
		shared[1] = 7;
	barrier();
	REQUIRE(shared[1] == 7, "shared memory after the forks: %" PRIu64, shared[1]);
}

static void scenario_misuse(void)
{
	uint32_t l = LK_MISUSE + (uint32_t)me, l2 = LK_MISUSE + 100 + (uint32_t)me;
	struct mu_arg a = { .id = l2 };
	uint64_t x = 0, y[2] = { 0, 0 };
	double t0;
	int r;

	/* a lock the thread already holds */
	CK(dsm_lock(l));
	t0 = now_s();
	r = dsm_lock(l);
	REQUIRE(r == DSM_EDEADLK, "dsm_lock of a lock this thread holds returned %d (%s), "
		"expected DSM_EDEADLK", r, dsm_strerror(r));
	REQUIRE(now_s() - t0 < 1, "dsm_lock of a held lock took %.1f s", now_s() - t0);
	CK(dsm_unlock(l));
	r = dsm_unlock(l);
	REQUIRE(r == DSM_EINVAL, "dsm_unlock of a lock nobody holds returned %d (%s), "
		"expected DSM_EINVAL", r, dsm_strerror(r));

	/* a lock another thread of this node holds */
	r = pthread_create(&a.tid, NULL, mu_holder, &a);
	REQUIRE(r == 0, "pthread_create: %s", strerror(r));
	while (a.stage != 1)
		usleep(1000);
	REQUIRE(a.err == 0, "dsm_lock in a thread: %s", dsm_strerror(a.err));
	r = dsm_unlock(l2);
	REQUIRE(r == DSM_EPERM, "dsm_unlock of a lock another thread holds returned %d (%s), "
		"expected DSM_EPERM", r, dsm_strerror(r));
	a.stage = 2;
	pthread_join(a.tid, NULL);
	REQUIRE(a.err == 0, "the holder's own dsm_unlock after another thread's attempt: "
		"%d (%s)", a.err, dsm_strerror(a.err));
	CK(dsm_lock(l2));
	CK(dsm_unlock(l2));
	barrier();

	/* broadcasts that do not agree */
	if (nodes > 1) {
		expect_bcast(&x, sizeof x, me % 2, DSM_EINVAL, "every node its own root");
		expect_bcast(&x, sizeof x, (me + 1) % nodes, DSM_EINVAL, "no node the root");
		expect_bcast(y, me == nodes - 1 ? sizeof y : sizeof x, 0, DSM_EINVAL,
			     "one node another length");
	}
	/* and an ordinary one afterwards */
	x = me == 0 ? 0x1234567890abcdefull : 0;
	expect_bcast(&x, sizeof x, 0, 0, "after the errors");
	REQUIRE(x == 0x1234567890abcdefull, "broadcast value %#" PRIx64, x);
	misuse_fork();
}

/* ---- 11. firsttouch ------------------------------------------------------- */

/* DSM_PLACE_FIRST_TOUCH and dsm_home_of: nobody's page before anyone
 * touched it; every Nth page touched by node i mod N is homed exactly
 * there; blocks written concurrently each by their node are homed at it
 * beyond the run a neighbour may have claimed past its own block (at most
 * 64 pages), and writing them sends (almost) no diffs; contents exact. */
#define FT_RUN_MAX 64 /* DSM__ARENA_CLAIM_MAX */

static void scenario_firsttouch(void)
{
	size_t np = 16 * (size_t)nodes, blk = 4 * FT_RUN_MAX, i;
	uint8_t *a = NULL, *b = NULL;
	struct dsm_stats s0, s1;
	int h;

	if (me == 0) {
		a = dsm_malloc_placed(np * pg, DSM_PLACE_FIRST_TOUCH);
		b = dsm_malloc_placed(blk * nodes * pg, DSM_PLACE_FIRST_TOUCH);
		REQUIRE(a && b, "dsm_malloc_placed(FIRST_TOUCH): %s",
			dsm_strerror(dsm_last_error()));
		defer_free(a);
		defer_free(b);
	}
	CK(dsm_bcast(&a, sizeof a, 0));
	CK(dsm_bcast(&b, sizeof b, 0));
	h = dsm_home_of(a + pg);
	REQUIRE(h == DSM_ENOENT, "dsm_home_of an untouched first-touch page: %d (%s)", h,
		dsm_strerror(h));
	REQUIRE(dsm_home_of(&h) == DSM_EINVAL, "dsm_home_of a stack address: not DSM_EINVAL");
	barrier();
	/* every Nth page */
	for (i = (size_t)me; i < np; i += (size_t)nodes)
		a[i * pg + 7] = (uint8_t)(i + 1);
	barrier();
	for (i = 0; i < np; i++) {
		h = dsm_home_of(a + i * pg);
		if (h != (int)(i % (size_t)nodes))
			bad("home of an every-Nth page", i, a + i * pg, i % (size_t)nodes,
			    (uint64_t)h, (int)(i % (size_t)nodes));
		if (a[i * pg + 7] != (uint8_t)(i + 1))
			bad("every-Nth page", i, a + i * pg + 7, (uint8_t)(i + 1), a[i * pg + 7],
			    (int)(i % (size_t)nodes));
	}
	check_done("first touch of every Nth page");
	/* blocks, written concurrently, each by its node, in order */
	CK(dsm_stats(&s0));
	for (i = 0; i < blk * pg; i += 8)
		*(uint64_t *)(b + (size_t)me * blk * pg + i) = mix3(30, me, i);
	barrier();
	CK(dsm_stats(&s1));
	REQUIRE(s1.diffs_sent - s0.diffs_sent <= FT_RUN_MAX,
		"writing its own first-touch block sent %" PRIu64 " diffs", s1.diffs_sent - s0.diffs_sent);
	for (int r = 0; r < nodes; r++)
		for (i = 0; i < blk; i++) {
			uint8_t *p = b + ((size_t)r * blk + i) * pg;

			if (i >= FT_RUN_MAX && (h = dsm_home_of(p)) != r)
				bad("home of a block's page", i, p, (uint64_t)r, (uint64_t)h, r);
			for (size_t j = 0; j < pg; j += 8)
				if (*(uint64_t *)(p + j) != mix3(30, r, i * pg + j))
					bad("block contents", i * pg + j, p + j, mix3(30, r, i * pg + j),
					    *(uint64_t *)(p + j), r);
		}
	check_done("first-touch blocks");
	/* other placements: homes from the start, whoever asks */
	{
		uint8_t *c = shared_alloc((size_t)nodes * pg, DSM_PLACE_BLOCKED, nodes - 1, false);

		for (int r = 0; r < nodes; r++)
			REQUIRE((h = dsm_home_of(c + (size_t)r * pg)) == r,
				"dsm_home_of page %d of a BLOCKED array: %d", r, h);
		REQUIRE((h = dsm_home_of(c + 100)) == 0, "dsm_home_of inside page 0: %d", h);
	}
}

/* ---- 13. finalize ------------------------------------------------------------- */

static void print_stats(void);

/* Ranks > 0 write into pages homed at rank 0 (blocks of B bytes that share
 * pages with their neighbours) and call dsm_finalize() at once. Rank 0's
 * dsm_barrier() is the others' finalize barrier; after it every write must
 * be in rank 0's pages. */
static void __attribute__((noreturn)) scenario_finalize(double t0)
{
	size_t blk = 2 * pg + 1000;
	uint8_t *p = shared_alloc(blk * (nodes - 1) + 1, DSM_PLACE_LOCAL, 0, true);
	int r;

	n_deferred = 0;   /* rank 0 keeps it: freed by dsm_finalize */
	if (me > 0) {
		fill_bytes(p + (me - 1) * blk, blk, mix3(15, me, 0));
		if (verbose)
			print_stats();
		r = dsm_finalize();
		if (r != 0)
			die("dsm_finalize: %d (%s)", r, dsm_strerror(r));
		flush_all();
		exit(0);
	}
	r = dsm_barrier();
	if (r != 0)
		die("dsm_barrier matching the others' dsm_finalize: %d (%s)", r,
		    dsm_strerror(r));
	for (int w = 1; w < nodes; w++)
		check_bytes("data written just before dsm_finalize", p + (w - 1) * blk,
			    blk, mix3(15, w, 0), w);
	check_done("data of the finalized nodes");
	printf("scenario finalize: ok (%.2f s)\n", now_s() - t0);
	if (verbose)
		print_stats();
	r = dsm_finalize();
	if (r != 0)
		die("dsm_finalize on rank 0 after the others left: %d (%s)", r,
		    dsm_strerror(r));
	flush_all();
	exit(0);
}

/* ---- driver ------------------------------------------------------------------- */

static void print_stats(void)
{
	struct dsm_stats s;

	CK(dsm_stats(&s));
	printf("stats node %d: read_faults=%" PRIu64 " write_faults=%" PRIu64
	       " pages_fetched=%" PRIu64 " pages_served=%" PRIu64 " prefetched=%" PRIu64
	       " diffs_sent=%" PRIu64 " diff_bytes=%" PRIu64 " diffs_applied=%" PRIu64
	       " invalidations=%" PRIu64 " notices=%" PRIu64 " lock_acquires=%" PRIu64
	       " lock_waits=%" PRIu64 " lock_ms=%.1f barriers=%" PRIu64
	       " barrier_ms=%.1f atomics=%" PRIu64 " allocs=%" PRIu64 " frees=%" PRIu64
	       " msgs_sent=%" PRIu64 " msgs_received=%" PRIu64 " bytes_sent=%" PRIu64
	       " bytes_received=%" PRIu64 " retransmits=%" PRIu64 " dup_dropped=%" PRIu64
	       " corrupt_dropped=%" PRIu64 " rtt_us=%" PRIu64 "\n", me,
	       s.read_faults, s.write_faults, s.pages_fetched, s.pages_served,
	       s.prefetched, s.diffs_sent, s.diff_bytes, s.diffs_applied,
	       s.invalidations, s.notices, s.lock_acquires, s.lock_waits,
	       s.lock_ns / 1e6, s.barriers, s.barrier_ns / 1e6, s.atomics, s.allocs,
	       s.frees, s.msgs_sent, s.msgs_received, s.bytes_sent, s.bytes_received,
	       s.retransmits, s.dup_dropped, s.corrupt_dropped, s.rtt_us);
	flush_all();
}

/* ---- migrate ------------------------------------------------------------------- */

#define MG_PAGES 8   /* pages per node's block */
#define MG_ROUNDS 6  /* rounds per phase */

static uint64_t mg_val(int round, int writer, size_t i)
{
	return mix3(40 + round, writer, i);
}

/* Each node writes its block of words [lo, hi) with round's pattern;
 * every node then checks every word. */
static void mg_round(uint64_t *a, size_t words, int round, int shift)
{
	size_t per = words / (size_t)nodes;
	int w = (me + shift) % nodes; /* the block this node writes */

	for (size_t i = (size_t)w * per; i < (size_t)(w + 1) * per; i++)
		a[i] = mg_val(round, me, i);
	barrier();
	for (int b = 0; b < nodes; b++) {
		int writer = (b - shift % nodes + nodes) % nodes;

		for (size_t i = (size_t)b * per; i < (size_t)(b + 1) * per; i++)
			if (a[i] != mg_val(round, writer, i))
				bad("migrating block", i, &a[i], mg_val(round, writer, i), a[i], writer);
	}
	check_done("blocks rewritten by their nodes");
	barrier();
}

static void scenario_migrate(void)
{
	bool on = env_long("DSM_MIGRATE", 1, 0, 1) != 0;
	/* blocks of MG_PAGES pages less a quarter page: not page aligned */
	size_t per = (MG_PAGES * pg - pg / 4) / 8, words = per * (size_t)nodes;
	uint64_t *a = shared_alloc(words * 8, DSM_PLACE_ADAPTIVE, 0, true);
	uint64_t *pin = shared_alloc(words * 8, DSM_PLACE_LOCAL, 0, true);
	int64_t *ctr = shared_alloc(pg, DSM_PLACE_ADAPTIVE, 0, true);
	struct dsm_stats s0, s1;
	int round = 0;

	/* explicitly placed: written the same way, it stays at rank 0 */
	for (int r = 0; r < MG_ROUNDS; r++)
		mg_round(pin, words, round++, 0);
	for (size_t i = 0; i < words * 8; i += pg)
		if (dsm_home_of((uint8_t *)pin + i) != 0)
			bad("home of a DSM_PLACE_LOCAL page", i / pg, (uint8_t *)pin + i, 0,
			    (uint64_t)(int64_t)dsm_home_of((uint8_t *)pin + i), -1);
	check_done("explicitly placed pages stay");
	CK(dsm_stats(&s0));
	for (int r = 0; r < MG_ROUNDS; r++)
		mg_round(a, words, round++, 0);
	CK(dsm_stats(&s1));
	/* the inner pages of each block are homed at its writer now */
	for (int b = 0; b < nodes; b++) {
		uint8_t *lo = (uint8_t *)(a + (size_t)b * per), *hi = (uint8_t *)(a + (size_t)(b + 1) * per);
		uint8_t *p0 = (uint8_t *)(((uintptr_t)lo + pg - 1) & ~(uintptr_t)(pg - 1));

		for (uint8_t *p = p0; p + pg <= hi; p += pg) {
			int h = dsm_home_of(p), want = on ? b : 0;

			if (h != want)
				bad("home of a block's inner page", (size_t)(p - (uint8_t *)a) / pg, p,
				    (uint64_t)want, (uint64_t)(int64_t)h, b);
		}
	}
	check_done("homes after the first phase");
	if (me != 0 && on)
		REQUIRE(s1.migrations_in - s0.migrations_in >= MG_PAGES - 2,
			"node %d took %" PRIu64 " pages' homes writing its block", me,
			s1.migrations_in - s0.migrations_in);
	if (!on)
		REQUIRE(s1.migrations_in == s0.migrations_in && s1.migrations_out == s0.migrations_out,
			"DSM_MIGRATE=0, yet pages migrated");
	/* rotate: every node writes the next node's block, twice over */
	for (int shift = 1; shift <= 2; shift++)
		for (int r = 0; r < MG_ROUNDS; r++)
			mg_round(a, words, round++, shift);
	/* a counter that travels with its lock */
	for (long i = 0; i < k_iter / 4 + 1; i++) {
		CK(dsm_lock(LK_MIGRATE));
		ctr[me + 1] += 1;
		ctr[0] += 1;
		CK(dsm_unlock(LK_MIGRATE));
	}
	barrier();
	if (ctr[0] != (int64_t)nodes * (k_iter / 4 + 1))
		bad("counter moved with its lock", 0, &ctr[0], (uint64_t)nodes * (k_iter / 4 + 1),
		    (uint64_t)ctr[0], -1);
	for (int r = 0; r < nodes; r++)
		if (ctr[r + 1] != k_iter / 4 + 1)
			bad("per-node count", (size_t)r + 1, &ctr[r + 1], (uint64_t)(k_iter / 4 + 1),
			    (uint64_t)ctr[r + 1], r);
	check_done("a counter that moved with its lock");
	barrier();
}

static const struct {
	const char *name;
	void (*fn)(void);
} scenarios[] = {
	{ "visibility", scenario_visibility },
	{ "counter", scenario_counter },
	{ "transitivity", scenario_transitivity },
	{ "multiwriter", scenario_multiwriter },
	{ "bigarray", scenario_bigarray },
	{ "alloc", scenario_alloc },
	{ "threads", scenario_threads },
	{ "fetchadd", scenario_fetchadd },
	{ "bcast", scenario_bcast },
	{ "freestress", scenario_freestress },
	{ "misuse", scenario_misuse },
	{ "firsttouch", scenario_firsttouch },
	{ "migrate", scenario_migrate },
	{ "finalize", NULL },   /* ends the program: must come last */
};
#define N_SCENARIOS (int)(sizeof scenarios / sizeof scenarios[0])

static void usage(void)
{
	fprintf(stderr, "usage: dsmrun -n N test-dsm SCENARIO[,SCENARIO...]\nscenarios:");
	for (int i = 0; i < N_SCENARIOS; i++)
		fprintf(stderr, " %s", scenarios[i].name);
	fprintf(stderr, "\n(finalize ends the program and must come last)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int list[64], n = 0, r;
	char *spec, *tok, *save = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2)
		usage();
	spec = strdup(argv[1]);
	for (tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int i;

		for (i = 0; i < N_SCENARIOS && strcmp(tok, scenarios[i].name); i++)
			;
		if (i == N_SCENARIOS) {
			fprintf(stderr, "test-dsm: unknown scenario '%s'\n", tok);
			usage();
		}
		if (n == 64 || (n > 0 && !scenarios[list[n - 1]].fn)) {
			fprintf(stderr, "test-dsm: finalize must be the last scenario\n");
			usage();
		}
		list[n++] = i;
	}
	if (n == 0)
		usage();
	free(spec);
	k_iter = env_long("TEST_DSM_K", k_iter, 1, 1000000);
	n_allocs = env_long("TEST_DSM_ALLOCS", n_allocs, 8, 1000000);
	n_rounds = env_long("TEST_DSM_ROUNDS", n_rounds, 1, 1000000);
	big_mb = env_long("TEST_DSM_BIG_MB", big_mb, 1, 1 << 20);
	verbose = (int)env_long("TEST_DSM_VERBOSE", 0, 0, 2);
	pg = (size_t)sysconf(_SC_PAGESIZE);

	r = dsm_init(NULL);
	if (r == DSM_ENOTSUP) {
		printf("SKIP: dsm_init: %s (DSM_PAGER=%s)\n", dsm_strerror(r),
		       getenv("DSM_PAGER") ? getenv("DSM_PAGER") : "unset");
		flush_all();
		return EXIT_SKIP;
	}
	if (r != 0) {
		fprintf(stderr, "FAIL: dsm_init: %d (%s)\n", r, dsm_strerror(r));
		return 1;
	}
	me = dsm_rank();
	nodes = dsm_nodes();
	REQUIRE(me >= 0 && me < nodes, "dsm_rank() %d, dsm_nodes() %d", me, nodes);

	for (int i = 0; i < n; i++) {
		double t0;

		scenario = scenarios[list[i]].name;
		barrier();
		t0 = now_s();
		if (!scenarios[list[i]].fn)
			scenario_finalize(t0);
		n_bad = 0;
		skipped = false;
		scenarios[list[i]].fn();
		barrier();
		run_deferred_frees();
		if (me == 0 && !skipped)
			printf("scenario %s: ok (%.2f s)\n", scenario, now_s() - t0);
	}
	scenario = "end";
	if (verbose)
		print_stats();
	r = dsm_finalize();
	if (r != 0)
		die("dsm_finalize: %d (%s)", r, dsm_strerror(r));
	flush_all();
	return 0;
}
