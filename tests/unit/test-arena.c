/*
 * Unit tests for dsm/arena.c: the split of the region into arenas, the
 * allocator of one arena (sizes, alignment, no overlap under random load,
 * reuse, coalescing, errors and bad frees), the home of every page for each
 * placement, concurrency, and a timing print.
 *
 * Every region here is fake: base 0x200000000000 and sizes up to 64 GiB,
 * with nothing mapped. Any dereference of the region by the allocator would
 * crash the test, which proves it only does address arithmetic.
 *
 * Hot loops use REQUIRE (which calls Check only on failure) instead of
 * ck_assert: Check records every passing assertion with a write.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "common.h"
#include "testutil.h"

#define BASE ((uintptr_t)0x200000000000ull)
#define PAGE ((size_t)4096)
#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

#define REQUIRE(cond, ...) \
	do { \
		if (!(cond)) \
			ck_abort_msg(__VA_ARGS__); \
	} while (0)

/* xorshift64*: reproducible pseudo-random numbers. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_r(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

/* A fake region of size bytes split among nodes; the arena of node. */
static struct dsm__arena *make_arena(struct dsm__arena_region *r, size_t size,
				     int nodes, int node)
{
	struct dsm__arena *a;

	ck_assert_int_eq(dsm__arena_region_init(r, BASE, size, PAGE, nodes), 0);
	ck_assert_int_eq(dsm__arena_create(r, node, &a), 0);
	ck_assert_ptr_nonnull(a);
	return a;
}

static void *xalloc(struct dsm__arena *a, size_t size, int place)
{
	void *p = (void *)1;
	int r = dsm__arena_alloc(a, size, place, &p);

	REQUIRE(r == 0 && p, "alloc(%zu, %d) = %d", size, place, r);
	return p;
}

/* Free, and (as if every node forgot them at once) reclaim the pages that
 * were retired. */
static int afree(struct dsm__arena *a, void *p)
{
	struct dsm__arena_extent x;
	int e = dsm__arena_free(a, p, &x);

	if (!e && x.npages)
		ck_assert_int_eq(dsm__arena_reclaim(a, x.start), 0);
	else if (e)
		ck_assert_uint_eq(x.npages, 0);
	return e;
}

/* Retire and reclaim every kept empty slab. */
static void reclaim_kept(struct dsm__arena *a)
{
	struct dsm__arena_extent x;

	while (dsm__arena_retire_empty(a, &x)) {
		ck_assert_uint_gt(x.npages, 0);
		ck_assert_int_eq(dsm__arena_reclaim(a, x.start), 0);
	}
}

static struct dsm__arena_stats stats(struct dsm__arena *a)
{
	struct dsm__arena_stats st;

	dsm__arena_get_stats(a, &st);
	return st;
}

struct blk {
	uintptr_t p;
	size_t len;
};

static int blk_cmp(const void *x, const void *y)
{
	const struct blk *a = x, *b = y;

	return a->p < b->p ? -1 : a->p > b->p;
}

/* Sort and require that no two blocks overlap. */
static void require_disjoint(struct blk *b, size_t n)
{
	qsort(b, n, sizeof(*b), blk_cmp);
	for (size_t i = 1; i < n; i++)
		REQUIRE(b[i - 1].p + b[i - 1].len <= b[i].p,
			"overlap: %#lx+%zu and %#lx", (unsigned long)b[i - 1].p,
			b[i - 1].len, (unsigned long)b[i].p);
}

/* ---- region split ------------------------------------------------------ */

START_TEST(arena_owner_boundaries)
{
	static const int ns[] = { 1, 2, 3, 4, 5, 7 };
	struct dsm__arena_region r;
	struct dsm__arena *a;

	for (size_t t = 0; t < DSM__ARRAY_SIZE(ns); t++) {
		int n = ns[t];
		size_t size = 64 * GiB;

		ck_assert_int_eq(dsm__arena_region_init(&r, BASE, size, PAGE, n), 0);
		ck_assert_uint_eq(r.arena_size % PAGE, 0);
		ck_assert_uint_le(r.arena_size * (size_t)n, size);
		ck_assert_uint_gt(r.arena_size * (size_t)n + PAGE * (size_t)n, size);
		for (int k = 0; k < n; k++) {
			uintptr_t s = dsm__arena_start(&r, k);

			ck_assert_uint_eq(s, BASE + (size_t)k * r.arena_size);
			ck_assert_int_eq(dsm__arena_owner(&r, (void *)s), k);
			ck_assert_int_eq(dsm__arena_owner(&r, (void *)(s + 1)), k);
			ck_assert_int_eq(dsm__arena_owner(&r, (void *)(s + r.arena_size - 1)), k);
			if (k > 0)
				ck_assert_int_eq(dsm__arena_owner(&r, (void *)(s - 1)), k - 1);
		}
		/* Unused tail (3, 5, 7 do not divide 64 GiB in pages). */
		if (r.arena_size * (size_t)n < size) {
			ck_assert_int_eq(dsm__arena_owner(&r, (void *)(BASE + r.arena_size * (size_t)n)),
					 DSM_EINVAL);
			ck_assert_int_eq(dsm__arena_owner(&r, (void *)(BASE + size - 1)), DSM_EINVAL);
		}
		ck_assert_int_eq(dsm__arena_owner(&r, (void *)(BASE - 1)), DSM_EINVAL);
		ck_assert_int_eq(dsm__arena_owner(&r, (void *)(BASE + size)), DSM_EINVAL);
		ck_assert_int_eq(dsm__arena_owner(&r, NULL), -1);
		ck_assert_uint_eq(dsm__arena_start(&r, n), 0);
		ck_assert_uint_eq(dsm__arena_start(&r, -1), 0);
		ck_assert_int_eq(dsm__arena_create(&r, n, &a), DSM_EINVAL);
		ck_assert_ptr_null(a);
	}
	/* 3 nodes, 64 GiB: 5592405 pages each, one page left over. */
	ck_assert_int_eq(dsm__arena_region_init(&r, BASE, 64 * GiB, PAGE, 3), 0);
	ck_assert_uint_eq(r.arena_size, (size_t)5592405 * PAGE);
	ck_assert_int_eq(dsm__arena_owner(&r, (void *)(BASE + 64 * GiB - PAGE)), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_owner(&r, (void *)(BASE + 64 * GiB - PAGE - 1)), 2);

	ck_assert_int_eq(dsm__arena_region_init(&r, BASE, GiB, 1000, 2), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_region_init(&r, BASE, GiB, 2048, 2), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_region_init(&r, BASE + 8, GiB, PAGE, 2), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_region_init(&r, BASE, GiB, PAGE, 0), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_region_init(&r, BASE, GiB, PAGE, 65536), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_region_init(&r, BASE, 3 * PAGE, PAGE, 4), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_region_init(&r, BASE, SIZE_MAX - PAGE, PAGE, 1), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_region_init(&r, BASE, 4 * PAGE, PAGE, 4), 0);
	ck_assert_uint_eq(r.arena_size, PAGE);
}
END_TEST

/* ---- sizes and alignment ------------------------------------------------ */

START_TEST(arena_sizes)
{
	static const struct { size_t size, usable; } t[] = {
		{ 1, 16 }, { 15, 16 }, { 16, 16 }, { 17, 32 }, { 2048, 2048 },
		{ 4096, 4096 }, { 4097, 8192 }, { MiB, MiB }, { GiB, GiB },
	};
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 64 * GiB, 4, 2);
	uintptr_t lo = dsm__arena_start(&r, 2), hi = lo + r.arena_size;
	struct blk b[DSM__ARRAY_SIZE(t)];
	void *p, *q;

	for (size_t i = 0; i < DSM__ARRAY_SIZE(t); i++) {
		p = xalloc(a, t[i].size, DSM__PLACE_LOCAL);
		ck_assert_int_eq(dsm__arena_size_of(a, p), (ssize_t)t[i].usable);
		ck_assert_int_eq(dsm__arena_owner(&r, p), 2);
		ck_assert_uint_ge((uintptr_t)p, lo);
		ck_assert_uint_le((uintptr_t)p + t[i].usable, hi);
		ck_assert_uint_eq((uintptr_t)p % 16, 0);
		if (t[i].size > DSM__ARENA_SMALL_MAX)
			ck_assert_uint_eq((uintptr_t)p % PAGE, 0);
		b[i] = (struct blk){ (uintptr_t)p, t[i].usable };
	}
	ck_assert_uint_eq(stats(a).allocs_live, DSM__ARRAY_SIZE(t));
	require_disjoint(b, DSM__ARRAY_SIZE(t));
	for (size_t i = 0; i < DSM__ARRAY_SIZE(t); i++)
		ck_assert_int_eq(afree(a, (void *)b[i].p), 0);
	ck_assert_int_eq(dsm__arena_check(a), 0);

	/* The whole arena, once everything is free and the kept slabs are
	 * given back. */
	ck_assert_int_eq(dsm__arena_alloc(a, r.arena_size, DSM__PLACE_LOCAL, &q), DSM_ENOMEM);
	reclaim_kept(a);
	p = xalloc(a, r.arena_size, DSM__PLACE_LOCAL);
	ck_assert_uint_eq((uintptr_t)p, lo);
	ck_assert_int_eq(dsm__arena_size_of(a, p), (ssize_t)r.arena_size);
	ck_assert_uint_eq(stats(a).free_pages, 0);
	ck_assert_uint_eq(stats(a).small_pages, 0);
	ck_assert_int_eq(dsm__arena_alloc(a, 1, DSM__PLACE_LOCAL, &q), DSM_ENOMEM);
	ck_assert_ptr_null(q);
	ck_assert_int_eq(afree(a, p), 0);
	p = xalloc(a, 1, DSM__PLACE_LOCAL);
	ck_assert_uint_eq((uintptr_t)p, lo);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	dsm__arena_destroy(a);
	dsm__arena_destroy(NULL);
}
END_TEST

START_TEST(arena_alignment)
{
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 16 * GiB, 2, 1);
	size_t n = 0, cap = 3 * 4200;
	struct blk *b = calloc(cap, sizeof(*b));

	ck_assert_ptr_nonnull(b);
	for (size_t size = 1; size <= 4200; size++) {
		for (int place = 0; place < 3; place++) {
			void *p = xalloc(a, size, place);
			ssize_t u = dsm__arena_size_of(a, p);

			REQUIRE(u >= (ssize_t)size, "size %zu usable %zd", size, u);
			REQUIRE((uintptr_t)p % 16 == 0, "size %zu at %p", size, p);
			if (size > DSM__ARENA_SMALL_MAX || place != DSM__PLACE_LOCAL) {
				REQUIRE((uintptr_t)p % PAGE == 0, "size %zu at %p", size, p);
				REQUIRE(u % (ssize_t)PAGE == 0 && u - (ssize_t)size < (ssize_t)PAGE,
					"size %zu usable %zd", size, u);
			} else {
				/* Class waste: under 25%, and power-of-two classes are
				 * aligned to their size. */
				REQUIRE(u - (ssize_t)size < DSM__MAX(16, u / 4),
					"size %zu usable %zd", size, u);
				if (!(u & (u - 1)))
					REQUIRE((uintptr_t)p % (size_t)u == 0,
						"size %zu at %p", size, p);
			}
			b[n++] = (struct blk){ (uintptr_t)p, (size_t)u };
		}
	}
	require_disjoint(b, n);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	for (size_t i = 0; i < n; i++)
		REQUIRE(afree(a, (void *)b[i].p) == 0, "free %zu", i);
	ck_assert_uint_eq(stats(a).allocs_live, 0);
	ck_assert_uint_eq(stats(a).bytes_in_use, 0);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	free(b);
	dsm__arena_destroy(a);
}
END_TEST

/* ---- random load against a shadow bitmap -------------------------------- */

/* One bit per 16-byte granule of the arena under test. */
static uint64_t *shadow;
static uintptr_t shadow_base;

static void shadow_mark(uintptr_t p, size_t len, int set)
{
	size_t lo = (p - shadow_base) / 16, hi = (p - shadow_base + len + 15) / 16;

	for (size_t g = lo; g < hi;) {
		size_t w = g / 64, bit = g % 64, n = DSM__MIN(64 - bit, hi - g);
		uint64_t m = n == 64 ? ~0ull : ((1ull << n) - 1) << bit;

		if (set) {
			REQUIRE(!(shadow[w] & m), "overlap in [%#lx, +%zu)",
				(unsigned long)p, len);
			shadow[w] |= m;
		} else {
			REQUIRE((shadow[w] & m) == m, "hole in [%#lx, +%zu)",
				(unsigned long)p, len);
			shadow[w] &= ~m;
		}
		g += n;
	}
}

static size_t random_size(uint64_t *s)
{
	uint64_t k = rng_r(s) % 100;

	if (k < 70)
		return 1 + rng_r(s) % DSM__ARENA_SMALL_MAX;
	if (k < 95)
		return DSM__ARENA_SMALL_MAX + 1 + rng_r(s) % (64 * KiB);
	if (k < 99)
		return 1 + rng_r(s) % MiB;
	return 1 + rng_r(s) % (4 * MiB);
}

/* _i = 0: a 2 GiB arena (rarely full); _i = 1: 256 MiB (often full, so
 * every ENOMEM is checked against the largest free extent). */
START_TEST(arena_random_no_overlap)
{
	enum { OPS = 200000, MAX_LIVE = 20000 };
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, _i ? GiB : 8 * GiB, 4, 1);
	struct blk *live = calloc(MAX_LIVE, sizeof(*live));
	size_t n = 0, enomem = 0, allocs = 0, frees = 0;
	uint64_t bytes = 0, s = 12345 + (uint64_t)_i;
	struct dsm__arena_stats st;
	void *p;

	shadow_base = dsm__arena_start(&r, 1);
	shadow = calloc(r.arena_size / 16 / 64, sizeof(uint64_t));
	ck_assert_ptr_nonnull(shadow);
	ck_assert_ptr_nonnull(live);
	for (int op = 0; op < OPS; op++) {
		if (n < MAX_LIVE && (n == 0 || rng_r(&s) % 100 < 55)) {
			size_t size = random_size(&s);
			uint64_t k = rng_r(&s) % 10;
			int place = k < 8 ? DSM__PLACE_LOCAL : k < 9 ? DSM__PLACE_INTERLEAVE
								  : DSM__PLACE_BLOCKED;
			int err = dsm__arena_alloc(a, size, place, &p);
			ssize_t u;

			if (err == DSM_ENOMEM) {
				/* Only when no free extent could hold it. */
				size_t need = size <= DSM__ARENA_SMALL_MAX && !place ? 1
						: (size + PAGE - 1) / PAGE;

				REQUIRE(!p, "ENOMEM with a pointer");
				st = stats(a);
				REQUIRE(st.largest_free < need || (need == 1 && st.largest_free < 2),
					"ENOMEM for %zu pages with a free extent of %lu",
					need, (unsigned long)st.largest_free);
				enomem++;
				continue;
			}
			REQUIRE(err == 0 && p, "alloc %zu: %d", size, err);
			REQUIRE(dsm__arena_owner(&r, p) == 1, "%p not in arena 1", p);
			u = dsm__arena_size_of(a, p);
			REQUIRE(u >= (ssize_t)size, "usable %zd < %zu", u, size);
			REQUIRE((uintptr_t)p + (size_t)u <= shadow_base + r.arena_size,
				"%p+%zd past the arena", p, u);
			shadow_mark((uintptr_t)p, (size_t)u, 1);
			live[n++] = (struct blk){ (uintptr_t)p, (size_t)u };
			bytes += (size_t)u;
			allocs++;
		} else {
			size_t i = rng_r(&s) % n;

			REQUIRE(dsm__arena_size_of(a, (void *)live[i].p) == (ssize_t)live[i].len,
				"size_of changed");
			REQUIRE(afree(a, (void *)live[i].p) == 0, "free");
			shadow_mark(live[i].p, live[i].len, 0);
			bytes -= live[i].len;
			live[i] = live[--n];
			frees++;
		}
		if (op % 20000 == 19999) {
			ck_assert_int_eq(dsm__arena_check(a), 0);
			st = stats(a);
			ck_assert_uint_eq(st.allocs_live, n);
			ck_assert_uint_eq(st.bytes_in_use, bytes);
		}
	}
	st = stats(a);
	printf("arena_random_no_overlap[%d]: %zu allocs, %zu frees, %zu ENOMEM, %zu live, "
	       "%zu slabs, %lu free extents\n", _i, allocs, frees, enomem, n,
	       (size_t)st.slabs, (unsigned long)st.free_extents);
	while (n) {
		size_t i = rng_r(&s) % n;

		REQUIRE(afree(a, (void *)live[i].p) == 0, "free");
		live[i] = live[--n];
	}
	ck_assert_int_eq(dsm__arena_check(a), 0);
	st = stats(a);
	ck_assert_uint_eq(st.allocs_live, 0);
	ck_assert_uint_eq(st.bytes_in_use, 0);
	ck_assert_uint_eq(st.large_pages, 0);
	/* Only kept empty slabs may remain; given back, the whole arena fits. */
	reclaim_kept(a);
	p = xalloc(a, r.arena_size, DSM__PLACE_LOCAL);
	ck_assert_uint_eq((uintptr_t)p, shadow_base);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	free(shadow);
	free(live);
	dsm__arena_destroy(a);
}
END_TEST

/* ---- retired pages -------------------------------------------------------- */

/* Freed pages are not handed out again until the caller reclaims them (every
 * node forgot them): a page run, an emptied slab beyond the one kept per
 * class, and kept slabs given back on request. */
START_TEST(arena_retire)
{
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 64 * PAGE, 1, 0);
	struct dsm__arena_extent x, y;
	void *p, *q, *s1[64], *s2[64];
	size_t per;

	p = xalloc(a, 3 * PAGE, DSM__PLACE_INTERLEAVE);
	ck_assert_int_eq(dsm__arena_free(a, p, &x), 0);
	ck_assert_uint_eq(x.start, (uintptr_t)p);
	ck_assert_uint_eq(x.npages, 3);
	ck_assert_int_eq(x.place, DSM__PLACE_INTERLEAVE);
	ck_assert_uint_eq(stats(a).retired_pages, 3);
	/* not live, not free: no double free, no lookup, no reuse */
	ck_assert_int_eq(dsm__arena_free(a, p, &y), DSM_EINVAL);
	ck_assert_uint_eq(y.npages, 0);
	ck_assert_int_eq(dsm__arena_extent(a, p, &y), DSM_ENOENT);
	ck_assert_int_eq(dsm__arena_size_of(a, p), DSM_EINVAL);
	q = xalloc(a, 3 * PAGE, DSM__PLACE_LOCAL);
	ck_assert_ptr_ne(q, p);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	/* only the first page of a retired extent reclaims it, once */
	ck_assert_int_eq(dsm__arena_reclaim(a, x.start + PAGE), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_reclaim(a, (uintptr_t)q), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_reclaim(a, x.start), 0);
	ck_assert_int_eq(dsm__arena_reclaim(a, x.start), DSM_EINVAL);
	ck_assert_uint_eq(stats(a).retired_pages, 0);
	ck_assert_ptr_eq(xalloc(a, 3 * PAGE, DSM__PLACE_LOCAL), p);
	ck_assert_int_eq(dsm__arena_check(a), 0);

	/* Two slabs of one class emptied: the first is kept (nothing
	 * retired), the second retired. */
	per = PAGE / 2048;
	for (size_t i = 0; i < per; i++) {
		s1[i] = xalloc(a, 2048, DSM__PLACE_LOCAL);
		s2[i] = NULL;
	}
	for (size_t i = 0; i < per; i++)
		s2[i] = xalloc(a, 2048, DSM__PLACE_LOCAL);
	for (size_t i = 0; i < per; i++) {
		ck_assert_int_eq(dsm__arena_free(a, s1[i], &x), 0);
		ck_assert_uint_eq(x.npages, 0);
	}
	for (size_t i = 0; i < per; i++) {
		ck_assert_int_eq(dsm__arena_free(a, s2[i], &x), 0);
		ck_assert_uint_eq(x.npages, i + 1 == per ? 1 : 0);
	}
	ck_assert_uint_eq(x.start, ((uintptr_t)s2[0]) & ~(uintptr_t)(PAGE - 1));
	ck_assert_int_eq(x.place, DSM__PLACE_LOCAL);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	ck_assert_int_eq(dsm__arena_reclaim(a, x.start), 0);
	/* the kept one, on request */
	ck_assert_int_eq(dsm__arena_retire_empty(a, &y), 1);
	ck_assert_uint_eq(y.npages, 1);
	ck_assert_uint_eq(y.start, ((uintptr_t)s1[0]) & ~(uintptr_t)(PAGE - 1));
	ck_assert_int_eq(dsm__arena_retire_empty(a, &y), 0);
	ck_assert_int_eq(dsm__arena_reclaim(a, ((uintptr_t)s1[0]) & ~(uintptr_t)(PAGE - 1)), 0);
	ck_assert_uint_eq(stats(a).slabs, 0);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	dsm__arena_destroy(a);
}
END_TEST

/* ---- first touch ---------------------------------------------------------- */

/* dsm__arena_claim: the first toucher gets the page (and more pages when it
 * goes on in order); others learn the run of one home; no claim without
 * asking for one; other placements are not claimed. */
START_TEST(arena_first_touch)
{
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 4096 * PAGE, 4, 2);
	struct dsm__arena_extent x;
	struct dsm__arena_run run;
	uint8_t *p = xalloc(a, 1000 * PAGE, DSM__PLACE_FIRST_TOUCH), *q;
	size_t want = DSM__ARENA_CLAIM_MIN, at = 0;

	ck_assert_int_eq(dsm__arena_extent(a, p, &x), 0);
	ck_assert_int_eq(x.place, DSM__PLACE_FIRST_TOUCH);
	ck_assert_int_eq(dsm__arena_claim(a, p, 1, false, &run), DSM_ENOENT);
	/* node 1 in order: 1, 2, 4, ... up to CLAIM_MAX pages a claim */
	while (at < 300) {
		ck_assert_int_eq(dsm__arena_claim(a, p + at * PAGE, 1, true, &run), 0);
		ck_assert_int_eq(run.home, 1);
		ck_assert_uint_eq(run.start, (uintptr_t)(p + at * PAGE));
		ck_assert_uint_eq(run.npages, want);
		at += run.npages;
		want = DSM__MIN(2 * want, (size_t)DSM__ARENA_CLAIM_MAX);
	}
	/* node 3 claims further on; node 1's next claim stops at it */
	ck_assert_int_eq(dsm__arena_claim(a, p + (at + 3) * PAGE, 3, true, &run), 0);
	ck_assert_int_eq(run.home, 3);
	ck_assert_uint_eq(run.npages, DSM__ARENA_CLAIM_MIN);
	ck_assert_int_eq(dsm__arena_claim(a, p + at * PAGE, 1, true, &run), 0);
	ck_assert_uint_eq(run.npages, 3);
	/* what others learn: the run of one home from the page asked */
	ck_assert_int_eq(dsm__arena_claim(a, p + 5 * PAGE, 0, true, &run), 0);
	ck_assert_int_eq(run.home, 1);
	ck_assert_uint_eq(run.npages, at + 3 - 5);
	ck_assert_int_eq(dsm__arena_claim(a, p + (at + 3) * PAGE, 0, false, &run), 0);
	ck_assert_int_eq(run.home, 3);
	/* every 4th page by node i mod 4: exactly those */
	for (size_t i = 600; i < 700; i++) {
		ck_assert_int_eq(dsm__arena_claim(a, p + i * PAGE, (int)(i % 4), true, &run), 0);
		ck_assert_int_eq(run.home, (int)(i % 4));
		ck_assert_uint_eq(run.npages, 1);
	}
	/* bad calls */
	q = xalloc(a, 4 * PAGE, DSM__PLACE_BLOCKED);
	ck_assert_int_eq(dsm__arena_claim(a, q, 0, true, &run), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_claim(a, p, 4, true, &run), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	ck_assert_int_eq(afree(a, p), 0);
	ck_assert_int_eq(dsm__arena_claim(a, p, 0, true, &run), DSM_ENOENT);
	ck_assert_int_eq(afree(a, q), 0);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	dsm__arena_destroy(a);
}
END_TEST

/* ---- reuse and coalescing ----------------------------------------------- */

START_TEST(arena_free_reuse)
{
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 4 * GiB, 2, 0);
	void *p, *q, *x;

	p = xalloc(a, 100, DSM__PLACE_LOCAL);
	ck_assert_int_eq(afree(a, p), 0);
	ck_assert_int_eq(dsm__arena_size_of(a, p), DSM_EINVAL);
	q = xalloc(a, 100, DSM__PLACE_LOCAL);
	ck_assert_ptr_eq(p, q);

	p = xalloc(a, 64 * KiB, DSM__PLACE_LOCAL);
	x = xalloc(a, PAGE, DSM__PLACE_LOCAL); /* a neighbour, so p leaves a hole */
	ck_assert_int_eq(afree(a, p), 0);
	q = xalloc(a, 64 * KiB, DSM__PLACE_INTERLEAVE);
	ck_assert_ptr_eq(p, q);
	ck_assert_int_eq(afree(a, q), 0);
	/* Best fit: a smaller request goes into the hole, at its start. */
	q = xalloc(a, 32 * KiB, DSM__PLACE_LOCAL);
	ck_assert_ptr_eq(p, q);
	ck_assert_int_eq(afree(a, q), 0);
	ck_assert_int_eq(afree(a, x), 0);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	ck_assert_uint_eq(stats(a).large_pages, 0);
	dsm__arena_destroy(a);
}
END_TEST

START_TEST(arena_coalesce)
{
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 4 * GiB, 4, 3);
	size_t cap = r.arena_size / PAGE, n = 0, pages = r.arena_size / PAGE;
	struct blk *b = calloc(cap, sizeof(*b));
	struct dsm__arena_stats st;
	void *p;

	ck_assert_ptr_nonnull(b);
	/* Fill the arena with runs of 1 .. 64 pages (byte sizes not multiples
	 * of a page), then a last run for whatever is left. */
	for (;;) {
		size_t size = (1 + rng() % 64) * PAGE - rng() % 2000;
		int err = dsm__arena_alloc(a, size, (int)(rng() % 3), &p);

		if (err == DSM_ENOMEM)
			break;
		ck_assert_int_eq(err, 0);
		b[n++] = (struct blk){ (uintptr_t)p, (size_t)dsm__arena_size_of(a, p) };
	}
	st = stats(a);
	if (st.free_pages)
		b[n++] = (struct blk){ (uintptr_t)xalloc(a, st.free_pages * PAGE, 0),
				       st.free_pages * PAGE };
	st = stats(a);
	ck_assert_uint_eq(st.free_pages, 0);
	ck_assert_uint_eq(st.free_extents, 0);
	ck_assert_uint_eq(st.large_pages, pages);
	ck_assert_int_eq(dsm__arena_check(a), 0);

	/* Free every other run: that many separate holes. */
	for (size_t i = 0; i < n; i += 2)
		ck_assert_int_eq(afree(a, (void *)b[i].p), 0);
	ck_assert_uint_eq(stats(a).free_extents, (n + 1) / 2);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	/* Free the rest in random order. */
	for (size_t i = 1, m = 0; i < n; i += 2)
		b[m++] = b[i];
	n /= 2;
	for (size_t left = n; left; left--) {
		size_t i = rng() % left;

		ck_assert_int_eq(afree(a, (void *)b[i].p), 0);
		b[i] = b[left - 1];
		if (left % 500 == 0)
			ck_assert_int_eq(dsm__arena_check(a), 0);
	}
	st = stats(a);
	ck_assert_uint_eq(st.free_extents, 1);
	ck_assert_uint_eq(st.largest_free, pages);
	ck_assert_uint_eq(st.free_pages, pages);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	p = xalloc(a, r.arena_size, DSM__PLACE_BLOCKED);
	ck_assert_uint_eq((uintptr_t)p, dsm__arena_start(&r, 3));
	free(b);
	dsm__arena_destroy(a);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(arena_zero_and_too_big)
{
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 4 * GiB, 4, 1);
	void *p = (void *)1, *q;

	ck_assert_int_eq(dsm__arena_alloc(a, 0, DSM__PLACE_LOCAL, &p), DSM_EINVAL);
	ck_assert_ptr_null(p);
	p = (void *)1;
	ck_assert_int_eq(dsm__arena_alloc(a, 0, DSM__PLACE_BLOCKED, &p), DSM_EINVAL);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(dsm__arena_alloc(a, 10, DSM__PLACE_MAX + 1, &p), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_alloc(a, 10, -1, &p), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_alloc(a, r.arena_size + 1, 0, &p), DSM_ENOMEM);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(dsm__arena_alloc(a, SIZE_MAX, 0, &p), DSM_ENOMEM);
	ck_assert_int_eq(dsm__arena_alloc(a, SIZE_MAX - PAGE / 2, 2, &p), DSM_ENOMEM);
	ck_assert_int_eq(dsm__arena_alloc(a, 16 * GiB, 1, &p), DSM_ENOMEM);

	q = xalloc(a, PAGE, DSM__PLACE_LOCAL);
	ck_assert_int_eq(dsm__arena_alloc(a, r.arena_size, 0, &p), DSM_ENOMEM);
	ck_assert_ptr_null(p);
	p = xalloc(a, r.arena_size - PAGE, DSM__PLACE_LOCAL);
	/* Full: even one byte fails. */
	ck_assert_int_eq(dsm__arena_alloc(a, 1, 0, &p), DSM_ENOMEM);
	ck_assert_ptr_null(p);
	ck_assert_uint_eq(stats(a).failed, 10);
	ck_assert_uint_eq(stats(a).allocs_live, 2);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	ck_assert_int_eq(afree(a, q), 0);
	p = xalloc(a, 1, DSM__PLACE_LOCAL);
	ck_assert_ptr_eq(p, q);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	dsm__arena_destroy(a);
}
END_TEST

START_TEST(arena_bad_free)
{
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 4 * GiB, 4, 1);
	uintptr_t lo = dsm__arena_start(&r, 1);
	char *s64 = xalloc(a, 64, DSM__PLACE_LOCAL);
	char *s48 = xalloc(a, 48, DSM__PLACE_LOCAL);
	char *big = xalloc(a, 3 * PAGE, DSM__PLACE_INTERLEAVE);
	char *lone = xalloc(a, 1000, DSM__PLACE_LOCAL); /* only object of its class */
	uintptr_t slab48 = (uintptr_t)s48 & ~(PAGE - 1);
	const void *bad[] = {
		s64 + 1, s64 + 8, s64 + 64,   /* middle; a slot never returned */
		s48 + 47, (void *)(slab48 + 85 * 48), /* 48 B slab tail: slot 85 of 85 */
		big + 1, big + PAGE, big + 3 * PAGE - 16, /* middle of a run */
		(void *)(lo + r.arena_size - PAGE), /* a free page of this arena */
		(void *)dsm__arena_start(&r, 0), (void *)dsm__arena_start(&r, 2),
		(void *)(dsm__arena_start(&r, 2) - 16), /* last slot-sized bytes */
		(void *)(BASE - PAGE), (void *)(BASE + 4 * GiB), NULL, (void *)-1,
	};
	struct dsm__arena_stats before, after;
	struct blk b[1004];
	size_t n = 0;

	ck_assert_uint_eq((uintptr_t)s48 - slab48 < 85 * 48, 1);
	dsm__arena_get_stats(a, &before);
	for (size_t i = 0; i < DSM__ARRAY_SIZE(bad); i++) {
		ck_assert_msg(afree(a, (void *)bad[i]) == DSM_EINVAL, "bad[%zu] = %p",
			      i, bad[i]);
		ck_assert_msg(dsm__arena_size_of(a, bad[i]) == DSM_EINVAL, "bad[%zu]", i);
	}
	dsm__arena_get_stats(a, &after);
	ck_assert_uint_eq(after.failed, before.failed + DSM__ARRAY_SIZE(bad));
	ck_assert_uint_eq(after.allocs_live, before.allocs_live);
	ck_assert_uint_eq(after.bytes_in_use, before.bytes_in_use);
	ck_assert_int_eq(dsm__arena_check(a), 0);

	/* Double frees: small, page run, and a slot whose slab is now empty. */
	ck_assert_int_eq(afree(a, s64), 0);
	ck_assert_int_eq(afree(a, s64), DSM_EINVAL);
	ck_assert_int_eq(afree(a, big), 0);
	ck_assert_int_eq(afree(a, big), DSM_EINVAL);
	ck_assert_int_eq(afree(a, lone), 0);
	ck_assert_int_eq(afree(a, lone), DSM_EINVAL);
	ck_assert_int_eq(dsm__arena_home(a, big, 4), DSM_ENOENT);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	ck_assert_uint_eq(stats(a).allocs_live, 1);

	/* The arena still works: fresh allocations do not overlap. */
	b[n++] = (struct blk){ (uintptr_t)s48, 48 };
	for (int i = 0; i < 1000; i++) {
		size_t size = rng() % 3 ? 1 + rng() % 2048 : 1 + rng() % (16 * PAGE);
		void *p = xalloc(a, size, (int)(rng() % 3));

		b[n++] = (struct blk){ (uintptr_t)p, (size_t)dsm__arena_size_of(a, p) };
	}
	require_disjoint(b, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(afree(a, (void *)b[i].p), 0);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	ck_assert_uint_eq(stats(a).allocs_live, 0);
	dsm__arena_destroy(a);
}
END_TEST

/* ---- homes -------------------------------------------------------------- */

/* Expected homes, written independently of dsm__home_of. */
static void expected_homes(int place, int owner, int nodes, size_t pages, int *out)
{
	size_t i = 0;

	switch (place) {
	case DSM__PLACE_LOCAL:
		for (i = 0; i < pages; i++)
			out[i] = owner;
		break;
	case DSM__PLACE_INTERLEAVE:
		for (i = 0; i < pages; i++)
			out[i] = (int)((owner + i) % (size_t)nodes);
		break;
	case DSM__PLACE_BLOCKED:
		for (int k = 0; k < nodes; k++) {
			size_t len = pages / (size_t)nodes + ((size_t)k < pages % (size_t)nodes);

			for (size_t j = 0; j < len; j++)
				out[i++] = k;
		}
		ck_assert_uint_eq(i, pages);
		break;
	}
}

/* Allocate pages pages (minus a few bytes) with place on arena a of
 * node owner among nodes, and require every page's home to be want[]. */
static void require_homes(struct dsm__arena *a, int owner, int nodes, int place,
			  size_t pages, const int *want)
{
	char *p = xalloc(a, pages * PAGE - 7, place);
	struct dsm__arena_extent e;

	ck_assert_int_eq(dsm__arena_size_of(a, p), (ssize_t)(pages * PAGE));
	ck_assert_int_eq(dsm__arena_extent(a, p + PAGE / 2, &e), 0);
	ck_assert_uint_eq(e.start, (uintptr_t)p);
	ck_assert_uint_eq(e.npages, pages);
	ck_assert_int_eq(e.place, place);
	ck_assert_int_eq(e.owner, owner);
	ck_assert_int_eq(e.small, 0);
	for (size_t i = 0; i < pages; i++) {
		ck_assert_msg(dsm__arena_home(a, p + i * PAGE, nodes) == want[i],
			      "N=%d owner %d place %d pages %zu: page %zu home %d, want %d",
			      nodes, owner, place, pages, i,
			      dsm__arena_home(a, p + i * PAGE, nodes), want[i]);
		ck_assert_int_eq(dsm__arena_home(a, p + i * PAGE + PAGE - 1, nodes), want[i]);
		ck_assert_int_eq(dsm__home_of(place, owner, nodes, pages, i), want[i]);
	}
	/* Nothing was allocated after it. */
	ck_assert_int_eq(dsm__arena_home(a, p + pages * PAGE, nodes), DSM_ENOENT);
	ck_assert_int_eq(afree(a, p), 0);
	for (size_t i = 0; i < pages; i++)
		ck_assert_int_eq(dsm__arena_home(a, p + i * PAGE, nodes), DSM_ENOENT);
	ck_assert_int_eq(dsm__arena_extent(a, p, &e), DSM_ENOENT);
}

START_TEST(arena_homes)
{
	static const size_t pages[] = { 1, 2, 3, 5, 6, 7, 10, 13 };
	int want[16];

	for (int nodes = 1; nodes <= 4; nodes++) {
		for (int owner = 0; owner < nodes; owner++) {
			struct dsm__arena_region r;
			struct dsm__arena *a = make_arena(&r, 64 * GiB, nodes, owner);
			char *s;

			for (int place = 0; place < 3; place++) {
				for (size_t k = 0; k < DSM__ARRAY_SIZE(pages); k++) {
					expected_homes(place, owner, nodes, pages[k], want);
					require_homes(a, owner, nodes, place, pages[k], want);
				}
			}
			/* Small: LOCAL shares a slab, homed at the owner; other
			 * placements become one page, homed by their rule. */
			s = xalloc(a, 100, DSM__PLACE_LOCAL);
			ck_assert_int_eq(dsm__arena_home(a, s, nodes), owner);
			ck_assert_int_eq(afree(a, s), 0);
			s = xalloc(a, 100, DSM__PLACE_INTERLEAVE);
			ck_assert_int_eq(dsm__arena_size_of(a, s), (ssize_t)PAGE);
			ck_assert_int_eq(dsm__arena_home(a, s, nodes), owner);
			ck_assert_int_eq(afree(a, s), 0);
			s = xalloc(a, 100, DSM__PLACE_BLOCKED);
			ck_assert_int_eq(dsm__arena_size_of(a, s), (ssize_t)PAGE);
			ck_assert_int_eq(dsm__arena_home(a, s, nodes), 0);
			ck_assert_int_eq(afree(a, s), 0);
			ck_assert_int_eq(dsm__arena_check(a), 0);
			dsm__arena_destroy(a);
		}
	}

	/* A few written out by hand. */
	{
		static const struct {
			int place, owner, nodes;
			size_t pages;
			int want[8];
		} t[] = {
			{ DSM__PLACE_BLOCKED, 0, 3, 7, { 0, 0, 0, 1, 1, 2, 2 } },
			{ DSM__PLACE_BLOCKED, 2, 4, 5, { 0, 0, 1, 2, 3 } },
			{ DSM__PLACE_BLOCKED, 1, 4, 3, { 0, 1, 2 } },
			{ DSM__PLACE_BLOCKED, 1, 2, 5, { 0, 0, 0, 1, 1 } },
			{ DSM__PLACE_BLOCKED, 3, 4, 6, { 0, 0, 1, 1, 2, 3 } },
			{ DSM__PLACE_INTERLEAVE, 2, 3, 5, { 2, 0, 1, 2, 0 } },
			{ DSM__PLACE_INTERLEAVE, 1, 4, 6, { 1, 2, 3, 0, 1, 2 } },
			{ DSM__PLACE_LOCAL, 1, 2, 3, { 1, 1, 1 } },
		};

		for (size_t k = 0; k < DSM__ARRAY_SIZE(t); k++) {
			struct dsm__arena_region r;
			struct dsm__arena *a = make_arena(&r, 64 * GiB, t[k].nodes, t[k].owner);

			require_homes(a, t[k].owner, t[k].nodes, t[k].place, t[k].pages,
				      t[k].want);
			dsm__arena_destroy(a);
		}
	}

	/* Bad arguments. */
	{
		struct dsm__arena_region r;
		struct dsm__arena *a = make_arena(&r, 64 * GiB, 4, 2);
		char *p = xalloc(a, 2 * PAGE, DSM__PLACE_BLOCKED);
		struct dsm__arena_extent e;

		ck_assert_int_eq(dsm__arena_home(a, p, 2), DSM_EINVAL);
		ck_assert_int_eq(dsm__arena_home(a, p, 0), DSM_EINVAL);
		ck_assert_int_eq(dsm__arena_home(a, (void *)dsm__arena_start(&r, 1), 4), DSM_EINVAL);
		ck_assert_int_eq(dsm__arena_home(a, (void *)(BASE - 1), 4), DSM_EINVAL);
		ck_assert_int_eq(dsm__arena_extent(a, (void *)dsm__arena_start(&r, 3), &e), DSM_EINVAL);
		ck_assert_int_eq(dsm__home_of(DSM__PLACE_BLOCKED, 0, 4, 3, 3), DSM_EINVAL);
		ck_assert_int_eq(dsm__home_of(7, 0, 4, 3, 0), DSM_EINVAL);
		ck_assert_int_eq(dsm__home_of(DSM__PLACE_LOCAL, 4, 4, 3, 0), DSM_EINVAL);
		ck_assert_int_eq(dsm__home_of(DSM__PLACE_LOCAL, 0, 0, 3, 0), DSM_EINVAL);
		/* The small slab: one extent, LOCAL, at the owner. */
		p = xalloc(a, 16, DSM__PLACE_LOCAL);
		ck_assert_int_eq(dsm__arena_extent(a, p + 100, &e), 0);
		ck_assert_int_eq(e.small, 1);
		ck_assert_int_eq(e.place, DSM__PLACE_LOCAL);
		ck_assert_uint_eq(e.npages, 1);
		ck_assert_uint_eq(e.start, (uintptr_t)p & ~(PAGE - 1));
		ck_assert_int_eq(afree(a, p), 0);
		/* An emptied slab (kept for reuse) is not live. */
		ck_assert_int_eq(dsm__arena_home(a, p, 4), DSM_ENOENT);
		dsm__arena_destroy(a);
	}
}
END_TEST

/* ---- threads ------------------------------------------------------------ */

enum { THREADS = 8, THREAD_OPS = 50000, THREAD_LIVE = 2000 };

struct worker {
	struct dsm__arena *a;
	uint64_t seed;
	struct blk live[THREAD_LIVE];
	size_t n;
	uint64_t allocs, frees, bytes;
	int errors;
};

static void *worker(void *arg)
{
	struct worker *w = arg;

	for (int op = 0; op < THREAD_OPS; op++) {
		if (w->n < THREAD_LIVE && (w->n == 0 || rng_r(&w->seed) % 100 < 55)) {
			size_t size = rng_r(&w->seed) % 5 ? 1 + rng_r(&w->seed) % 2048
							  : 1 + rng_r(&w->seed) % (16 * PAGE);
			void *p;
			ssize_t u;

			if (dsm__arena_alloc(w->a, size, (int)(rng_r(&w->seed) % 3), &p)) {
				w->errors++;
				continue;
			}
			u = dsm__arena_size_of(w->a, p);
			if (u < (ssize_t)size)
				w->errors++;
			w->live[w->n++] = (struct blk){ (uintptr_t)p, (size_t)u };
			w->bytes += (size_t)u;
			w->allocs++;
		} else {
			size_t i = rng_r(&w->seed) % w->n;

			struct dsm__arena_extent x;

			if (dsm__arena_free(w->a, (void *)w->live[i].p, &x) ||
			    (x.npages && dsm__arena_reclaim(w->a, x.start)))
				w->errors++;
			w->bytes -= w->live[i].len;
			w->live[i] = w->live[--w->n];
			w->frees++;
		}
	}
	return NULL;
}

START_TEST(arena_threads)
{
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 64 * GiB, 4, 0);
	struct worker *w = calloc(THREADS, sizeof(*w));
	struct blk *all = calloc(THREADS * THREAD_LIVE, sizeof(*all));
	pthread_t th[THREADS];
	uint64_t allocs = 0, frees = 0, bytes = 0;
	struct dsm__arena_stats st;
	size_t n = 0;

	ck_assert_ptr_nonnull(w);
	ck_assert_ptr_nonnull(all);
	for (int i = 0; i < THREADS; i++) {
		w[i].a = a;
		w[i].seed = 0x1234567ull * (uint64_t)(i + 1);
		ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(w[i].errors, 0);
		allocs += w[i].allocs;
		frees += w[i].frees;
		bytes += w[i].bytes;
		for (size_t k = 0; k < w[i].n; k++)
			all[n++] = w[i].live[k];
	}
	st = stats(a);
	ck_assert_uint_eq(st.allocs, allocs);
	ck_assert_uint_eq(st.frees, frees);
	ck_assert_uint_eq(st.allocs_live, n);
	ck_assert_uint_eq(st.allocs_live, allocs - frees);
	ck_assert_uint_eq(st.bytes_in_use, bytes);
	ck_assert_uint_eq(st.failed, 0);
	require_disjoint(all, n);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(afree(a, (void *)all[i].p), 0);
	st = stats(a);
	ck_assert_uint_eq(st.allocs_live, 0);
	ck_assert_uint_eq(st.bytes_in_use, 0);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	free(all);
	free(w);
	dsm__arena_destroy(a);
}
END_TEST

/* ---- timing (printed, not asserted) --------------------------------------- */

static void time_pairs(size_t size, const char *label)
{
	enum { LIVE = 100000, PAIRS = 100000 };
	struct dsm__arena_region r;
	struct dsm__arena *a = make_arena(&r, 64 * GiB, 1, 0);
	void **live = calloc(LIVE, sizeof(*live));
	int64_t t0, t1, worst = 0;
	uint64_t s = 99;
	volatile int sink = 0;

	ck_assert_ptr_nonnull(live);
	for (size_t i = 0; i < LIVE; i++)
		live[i] = xalloc(a, size, DSM__PLACE_LOCAL);
	/* Each pair: allocate one, free a random live one (100,000 stay live). */
	t0 = dsm__now_ns();
	for (int i = 0; i < PAIRS; i++) {
		size_t k = rng_r(&s) % LIVE;
		void *p;
		int64_t u0 = (i & 63) == 0 ? dsm__now_ns() : 0;

		REQUIRE(dsm__arena_alloc(a, size, DSM__PLACE_LOCAL, &p) == 0, "alloc");
		REQUIRE(afree(a, live[k]) == 0, "free");
		live[k] = p;
		if (u0)
			worst = DSM__MAX(worst, dsm__now_ns() - u0);
	}
	t1 = dsm__now_ns();
	printf("arena_timing: %-6s %6.0f ns per alloc/free pair with %d live "
	       "(worst sampled pair %.1f us)\n", label, (double)(t1 - t0) / PAIRS, LIVE,
	       (double)worst / 1000);
	t0 = dsm__now_ns();
	for (int i = 0; i < PAIRS; i++)
		sink += dsm__arena_home(a, live[rng_r(&s) % LIVE], 1);
	t1 = dsm__now_ns();
	printf("arena_timing: %-6s %6.0f ns per dsm__arena_home with %d live\n", label,
	       (double)(t1 - t0) / PAIRS, LIVE);
	fflush(stdout);
	ck_assert_int_eq(sink, 0);
	ck_assert_int_eq(dsm__arena_check(a), 0);
	free(live);
	dsm__arena_destroy(a);
}

START_TEST(arena_timing)
{
	time_pairs(64, "64 B");
	time_pairs(64 * KiB, "64 KiB");
}
END_TEST

#define ADD_CASE(s, fn, loops) \
	do { \
		TCase *tc_ = tcase_create(#fn); \
		tcase_set_timeout(tc_, 120); \
		tcase_add_loop_test(tc_, fn, 0, loops); \
		suite_add_tcase(s, tc_); \
	} while (0)

int main(void)
{
	Suite *s = suite_create("arena");

	ADD_CASE(s, arena_owner_boundaries, 1);
	ADD_CASE(s, arena_sizes, 1);
	ADD_CASE(s, arena_alignment, 1);
	ADD_CASE(s, arena_random_no_overlap, 2);
	ADD_CASE(s, arena_free_reuse, 1);
	ADD_CASE(s, arena_retire, 1);
	ADD_CASE(s, arena_first_touch, 1);
	ADD_CASE(s, arena_coalesce, 1);
	ADD_CASE(s, arena_zero_and_too_big, 1);
	ADD_CASE(s, arena_bad_free, 1);
	ADD_CASE(s, arena_homes, 1);
	ADD_CASE(s, arena_threads, 1);
	ADD_CASE(s, arena_timing, 1);
	return dsm_test_run_suite(s);
}
