/*
 * Unit tests for dsm/diff.c: the twin/diff encoding of the multiple-writer
 * protocol. Round trips (encode then apply onto a copy of the twin gives
 * the page), the byte layout, the rule that only changed words are sent
 * (two writers on disjoint interleaved words merge in either order), cap
 * handling, every rejection of a malformed diff (page left untouched), the
 * size bound, and a timing print.
 *
 * Diffs handed to validate/apply in the rejection cases are heap copies of
 * exactly their length, so ASan or valgrind catch any read past the end.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "diff.h"
#include "testutil.h"

/* Check's ck_assert_* records each passing assertion with a write() to the
 * runner; the hot loops use this instead (it only reports failures). */
#define REQUIRE(c) \
	do { \
		if (!(c)) \
			ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #c); \
	} while (0)

#define MAXP DSM_DIFF_MAX_PAGE
#define MAXW (MAXP / 8)
#define MAXD DSM_DIFF_BOUND(MAXP)

static const size_t sizes[] = { 8, 64, 4096, 8192, 65536 };

/* Make word i of page differ from word i of twin (random new value). */
static void change_word(const uint8_t *twin, uint8_t *page, size_t i)
{
	uint64_t t, v;

	memcpy(&t, twin + 8 * i, 8);
	do
		v = dsm_test_rng();
	while (v == t);
	memcpy(page + 8 * i, &v, 8);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | (uint32_t)get16(p + 2) << 16;
}

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(q);
	if (n)
		memcpy(q, p, n);
	return q;
}

/*
 * Independent parse of an encoding produced by the encoder: asserts its
 * structure and that the words it sends are exactly the words where twin
 * and page differ, with the page's values. Returns the number of runs.
 */
static uint32_t check_exact(const uint8_t *d, int len, const uint8_t *twin,
			    const uint8_t *page, size_t ps)
{
	static uint8_t sent[MAXW];
	size_t n = ps / 8, pos = 12, prev_end = 0;
	uint32_t nruns;

	REQUIRE(len >= 12);
	REQUIRE(get32(d) == 0x31464444u);
	REQUIRE(d[0] == 'D');
	REQUIRE(d[3] == '1');
	REQUIRE(get32(d + 4) == ps);
	nruns = get32(d + 8);
	memset(sent, 0, n);
	for (uint32_t r = 0; r < nruns; r++) {
		size_t start, count;

		REQUIRE(pos + 4 <= (size_t)len);
		start = get16(d + pos);
		count = get16(d + pos + 2);
		REQUIRE(count >= 1);
		REQUIRE(start + count <= n);
		if (r > 0)
			REQUIRE(start > prev_end); /* never adjacent */
		REQUIRE(pos + 4 + 8 * count <= (size_t)len);
		REQUIRE(memcmp(d + pos + 4, page + 8 * start, 8 * count) == 0);
		for (size_t i = start; i < start + count; i++)
			sent[i] = 1;
		prev_end = start + count;
		pos += 4 + 8 * count;
	}
	REQUIRE(pos == (size_t)len);
	for (size_t i = 0; i < n; i++) {
		int differs = memcmp(twin + 8 * i, page + 8 * i, 8) != 0;

		if (differs != sent[i])
			ck_abort_msg("word %zu: differs=%d sent=%d (page %zu)", i,
				     differs, sent[i], ps);
	}
	return nruns;
}

/* Encode, check exactness, apply onto a copy of the twin: must be the page. */
static void roundtrip(const uint8_t *twin, const uint8_t *page, size_t ps)
{
	static uint8_t d[MAXD], home[MAXP];
	int len = dsm__diff_encode(twin, page, ps, d, sizeof(d));

	REQUIRE(len > 0);
	REQUIRE((size_t)len <= dsm__diff_bound(ps));
	check_exact(d, len, twin, page, ps);
	REQUIRE(dsm__diff_validate(d, (size_t)len, ps) == 0);
	memcpy(home, twin, ps);
	REQUIRE(dsm__diff_apply(home, ps, d, (size_t)len) == 0);
	REQUIRE(memcmp(home, page, ps) == 0);
	/* Applying again (a duplicate) changes nothing. */
	REQUIRE(dsm__diff_apply(home, ps, d, (size_t)len) == 0);
	REQUIRE(memcmp(home, page, ps) == 0);
}

START_TEST(diff_unchanged_empty)
{
	static uint8_t twin[MAXP], page[MAXP], home[MAXP], save[MAXP], d[MAXD];

	for (size_t s = 0; s < DSM__ARRAY_SIZE(sizes); s++) {
		size_t ps = sizes[s];
		int len;

		dsm_test_fill_random(twin, ps);
		memcpy(page, twin, ps);
		len = dsm__diff_encode(twin, page, ps, d, sizeof(d));
		ck_assert_int_eq(len, 12);
		ck_assert_mem_eq(d, "DDF1", 4);
		ck_assert_uint_eq(get32(d + 4), ps);
		ck_assert_uint_eq(get32(d + 8), 0);
		/* The header alone fits a 12-byte buffer. */
		ck_assert_int_eq(dsm__diff_encode(twin, page, ps, d, 12), 12);
		/* Applying it to any page is a no-op. */
		dsm_test_fill_random(home, ps);
		memcpy(save, home, ps);
		ck_assert_int_eq(dsm__diff_apply(home, ps, d, 12), 0);
		ck_assert_mem_eq(home, save, ps);
	}
}
END_TEST

START_TEST(diff_layout)
{
	uint8_t twin[64], page[64], d[DSM_DIFF_BOUND(64)];
	uint8_t want[12 + 4 + 16 + 4 + 8 + 4 + 8];
	int len;

	for (int i = 0; i < 64; i++)
		twin[i] = page[i] = (uint8_t)i;
	page[8] ^= 0x80;  /* word 1 */
	page[23] ^= 0x01; /* word 2: one byte changed, whole word sent */
	page[40] ^= 0xff; /* word 5 */
	page[63] ^= 0x10; /* word 7 */
	memcpy(want, "DDF1", 4);
	memcpy(want + 4, "\x40\x00\x00\x00", 4); /* page_size 64 */
	memcpy(want + 8, "\x03\x00\x00\x00", 4); /* 3 runs */
	memcpy(want + 12, "\x01\x00\x02\x00", 4); /* words 1..2 */
	memcpy(want + 16, page + 8, 16);
	memcpy(want + 32, "\x05\x00\x01\x00", 4); /* word 5 */
	memcpy(want + 36, page + 40, 8);
	memcpy(want + 44, "\x07\x00\x01\x00", 4); /* word 7 */
	memcpy(want + 48, page + 56, 8);
	len = dsm__diff_encode(twin, page, 64, d, sizeof(d));
	ck_assert_int_eq(len, (int)sizeof(want));
	ck_assert_mem_eq(d, want, sizeof(want));
	roundtrip(twin, page, 64);
}
END_TEST

START_TEST(diff_single_word)
{
	static uint8_t twin[MAXP], page[MAXP], d[MAXD];

	for (size_t s = 0; s < DSM__ARRAY_SIZE(sizes); s++) {
		size_t ps = sizes[s], n = ps / 8;
		size_t idx[] = { 0, n / 2, n - 1 };

		for (size_t k = 0; k < DSM__ARRAY_SIZE(idx); k++) {
			int len;

			dsm_test_fill_random(twin, ps);
			memcpy(page, twin, ps);
			change_word(twin, page, idx[k]);
			len = dsm__diff_encode(twin, page, ps, d, sizeof(d));
			ck_assert_int_eq(len, 12 + 4 + 8);
			ck_assert_uint_eq(get32(d + 8), 1);
			ck_assert_uint_eq(get16(d + 12), idx[k]);
			ck_assert_uint_eq(get16(d + 14), 1);
			ck_assert_mem_eq(d + 16, page + 8 * idx[k], 8);
			roundtrip(twin, page, ps);
			/* A single changed byte at each position of the word. */
			for (size_t b = 0; b < 8; b++) {
				memcpy(page, twin, ps);
				page[8 * idx[k] + b] ^= 0x5a;
				ck_assert_int_eq(dsm__diff_encode(twin, page, ps, d, sizeof(d)), 24);
				roundtrip(twin, page, ps);
			}
		}
	}
}
END_TEST

START_TEST(diff_every_word)
{
	static uint8_t twin[MAXP], page[MAXP], d[MAXD];

	for (size_t s = 0; s < DSM__ARRAY_SIZE(sizes); s++) {
		size_t ps = sizes[s], n = ps / 8;
		int len;

		dsm_test_fill_random(twin, ps);
		for (size_t i = 0; i < n; i++)
			change_word(twin, page, i);
		len = dsm__diff_encode(twin, page, ps, d, sizeof(d));
		ck_assert_int_eq(len, (int)dsm__diff_bound(ps));
		ck_assert_uint_eq(get32(d + 8), 1);
		ck_assert_uint_eq(get16(d + 12), 0);
		ck_assert_uint_eq(get16(d + 14), n);
		roundtrip(twin, page, ps);
	}
}
END_TEST

/* Random change patterns: sparse, dense, clustered ranges, and mixed. */
static void random_changes(const uint8_t *twin, uint8_t *page, size_t ps, unsigned mode)
{
	size_t n = ps / 8;

	memcpy(page, twin, ps);
	switch (mode % 4) {
	case 0: { /* sparse: a few random words */
		size_t k = 1 + dsm_test_rng() % 8;

		for (size_t j = 0; j < k; j++)
			change_word(twin, page, dsm_test_rng() % n);
		break;
	}
	case 1: { /* dense: each word with probability 1/2 .. 63/64 */
		uint64_t p = 32 + dsm_test_rng() % 32;

		for (size_t i = 0; i < n; i++)
			if (dsm_test_rng() % 64 < p)
				change_word(twin, page, i);
		break;
	}
	case 2: { /* clustered: a few ranges */
		size_t k = 1 + dsm_test_rng() % 6;

		for (size_t j = 0; j < k; j++) {
			size_t a = dsm_test_rng() % n, l = 1 + dsm_test_rng() % 64;

			for (size_t i = a; i < n && i < a + l; i++)
				change_word(twin, page, i);
		}
		break;
	}
	default: { /* any probability, including byte-level changes */
		uint64_t p = dsm_test_rng() % 65;

		for (size_t i = 0; i < n; i++)
			if (dsm_test_rng() % 64 < p)
				page[8 * i + dsm_test_rng() % 8] ^= (uint8_t)(1 + dsm_test_rng() % 255);
		break;
	}
	}
}

START_TEST(diff_random_roundtrip)
{
	static uint8_t twin[MAXP], page[MAXP];
	static const struct {
		size_t ps;
		unsigned iters;
	} cfg[] = { { 4096, 4000 }, { 8192, 2000 }, { 65536, 400 }, { 72, 2000 } };

	dsm_test_rng_seed(0x1234567887654321ull);
	for (size_t c = 0; c < DSM__ARRAY_SIZE(cfg); c++) {
		for (unsigned it = 0; it < cfg[c].iters; it++) {
			dsm_test_fill_random(twin, cfg[c].ps);
			random_changes(twin, page, cfg[c].ps, it);
			roundtrip(twin, page, cfg[c].ps);
		}
	}
}
END_TEST

/*
 * Two writers start from the same twin (the home's copy) and change
 * disjoint word sets; both diffs applied to the home in either order must
 * give the union of their changes.
 */
static void two_writers(const uint8_t *owner, size_t ps)
{
	static uint8_t base[MAXP], a[MAXP], b[MAXP], want[MAXP], h1[MAXP], h2[MAXP];
	static uint8_t da[MAXD], db[MAXD];
	size_t n = ps / 8;
	int la, lb;

	dsm_test_fill_random(base, ps);
	memcpy(a, base, ps);
	memcpy(b, base, ps);
	for (size_t i = 0; i < n; i++) {
		if (owner[i] == 1)
			change_word(base, a, i);
		else if (owner[i] == 2)
			change_word(base, b, i);
	}
	for (size_t i = 0; i < n; i++)
		memcpy(want + 8 * i, (owner[i] == 2 ? b : a) + 8 * i, 8);
	la = dsm__diff_encode(base, a, ps, da, sizeof(da));
	lb = dsm__diff_encode(base, b, ps, db, sizeof(db));
	REQUIRE(la > 0);
	REQUIRE(lb > 0);
	check_exact(da, la, base, a, ps);
	check_exact(db, lb, base, b, ps);
	memcpy(h1, base, ps);
	memcpy(h2, base, ps);
	REQUIRE(dsm__diff_apply(h1, ps, da, (size_t)la) == 0);
	REQUIRE(dsm__diff_apply(h1, ps, db, (size_t)lb) == 0);
	REQUIRE(dsm__diff_apply(h2, ps, db, (size_t)lb) == 0);
	REQUIRE(dsm__diff_apply(h2, ps, da, (size_t)la) == 0);
	REQUIRE(memcmp(h1, want, ps) == 0);
	REQUIRE(memcmp(h2, want, ps) == 0);
}

START_TEST(diff_two_writers_merge)
{
	static uint8_t owner[MAXW];
	static const size_t ps_list[] = { 64, 4096, 8192, 65536 };

	dsm_test_rng_seed(0xfeedfacecafebeefull);
	for (size_t s = 0; s < DSM__ARRAY_SIZE(ps_list); s++) {
		size_t ps = ps_list[s], n = ps / 8;

		/* Even words to A, odd words to B: every gap is one word. */
		for (size_t i = 0; i < n; i++)
			owner[i] = (uint8_t)(1 + i % 2);
		two_writers(owner, ps);
		/* A: words 0 and 2; B: word 1; nobody else. */
		memset(owner, 0, n);
		owner[0] = owner[2] = 1;
		owner[1] = 2;
		two_writers(owner, ps);
		/* Random disjoint sets, with unowned words. */
		for (int it = 0; it < (ps > 8192 ? 50 : 500); it++) {
			for (size_t i = 0; i < n; i++)
				owner[i] = (uint8_t)(dsm_test_rng() % 3);
			two_writers(owner, ps);
		}
	}
}
END_TEST

START_TEST(diff_no_gap_merge)
{
	uint8_t twin[64], page[64], d[DSM_DIFF_BOUND(64)];
	int len;

	/* Words 0, 2, 4, 6 changed: four one-word runs, the gaps not sent. */
	dsm_test_fill_random(twin, 64);
	memcpy(page, twin, 64);
	for (size_t i = 0; i < 8; i += 2)
		change_word(twin, page, i);
	len = dsm__diff_encode(twin, page, 64, d, sizeof(d));
	ck_assert_int_eq(len, 12 + 4 * (4 + 8));
	ck_assert_uint_eq(check_exact(d, len, twin, page, 64), 4);
}
END_TEST

START_TEST(diff_cap_too_small)
{
	static uint8_t twin[4096], page[4096], ref[DSM_DIFF_BOUND(4096)];
	static uint8_t buf[DSM_DIFF_BOUND(4096) + 64];
	int len;

	dsm_test_fill_random(twin, 4096);
	memcpy(page, twin, 4096);
	for (size_t i = 0; i < 512; i += 37)
		change_word(twin, page, i);
	for (size_t i = 100; i < 120; i++)
		change_word(twin, page, i);
	len = dsm__diff_encode(twin, page, 4096, ref, sizeof(ref));
	ck_assert_int_gt(len, 12 + 16);
	for (size_t cap = 0; cap < (size_t)len; cap++) {
		memset(buf, 0xA5, sizeof(buf));
		ck_assert_int_eq(dsm__diff_encode(twin, page, 4096, buf, cap), DSM_EMSGSIZE);
		for (size_t j = cap; j < sizeof(buf); j++)
			if (buf[j] != 0xA5)
				ck_abort_msg("cap %zu: byte %zu written", cap, j);
	}
	memset(buf, 0xA5, sizeof(buf));
	ck_assert_int_eq(dsm__diff_encode(twin, page, 4096, buf, (size_t)len), len);
	ck_assert_mem_eq(buf, ref, (size_t)len);
	for (size_t j = (size_t)len; j < sizeof(buf); j++)
		ck_assert_uint_eq(buf[j], 0xA5);
	/* A NULL output with cap 0 is just too small. */
	ck_assert_int_eq(dsm__diff_encode(twin, page, 4096, NULL, 0), DSM_EMSGSIZE);
	/* Every word changed: bound - 1 is too small, bound fits. */
	for (size_t i = 0; i < 512; i++)
		change_word(twin, page, i);
	memset(buf, 0xA5, sizeof(buf));
	ck_assert_int_eq(dsm__diff_encode(twin, page, 4096, buf, dsm__diff_bound(4096) - 1),
			 DSM_EMSGSIZE);
	for (size_t j = dsm__diff_bound(4096) - 1; j < sizeof(buf); j++)
		ck_assert_uint_eq(buf[j], 0xA5);
	ck_assert_int_eq(dsm__diff_encode(twin, page, 4096, buf, dsm__diff_bound(4096)),
			 (int)dsm__diff_bound(4096));
}
END_TEST

/*
 * Expect diff[0..len) to be rejected for a page of ps bytes: validate and
 * apply both say DSM_EPROTO and the page (random contents) is unchanged.
 */
static void expect_reject(const uint8_t *diff, size_t len, size_t ps, const char *what)
{
	static uint8_t page[MAXP], save[MAXP];
	uint8_t *d = dup_exact(diff, len);
	int rv = dsm__diff_validate(d, len, ps), ra;

	dsm_test_fill_random(page, ps);
	memcpy(save, page, ps);
	ra = dsm__diff_apply(page, ps, d, len);
	free(d);
	if (rv != DSM_EPROTO || ra != DSM_EPROTO)
		ck_abort_msg("%s (len %zu, page %zu): validate %d apply %d", what, len, ps,
			     rv, ra);
	if (memcmp(page, save, ps) != 0)
		ck_abort_msg("%s: page changed by a rejected diff", what);
}

static void expect_accept(const uint8_t *diff, size_t len, size_t ps, const char *what)
{
	uint8_t *d = dup_exact(diff, len);
	int r = dsm__diff_validate(d, len, ps);

	free(d);
	if (r != 0)
		ck_abort_msg("%s: validate %d", what, r);
}

/* A multi-run diff of a 4096-byte page, for the rejection cases. */
static int sample_diff(uint8_t *d, size_t cap)
{
	static uint8_t twin[4096], page[4096];

	dsm_test_fill_random(twin, 4096);
	memcpy(page, twin, 4096);
	change_word(twin, page, 0);
	change_word(twin, page, 1);
	change_word(twin, page, 7);
	change_word(twin, page, 300);
	change_word(twin, page, 511);
	return dsm__diff_encode(twin, page, 4096, d, cap);
}

START_TEST(diff_reject_truncated)
{
	uint8_t d[256];
	int len = sample_diff(d, sizeof(d));

	ck_assert_int_eq(len, 12 + 4 * 4 + 5 * 8);
	expect_accept(d, (size_t)len, 4096, "sample");
	for (size_t k = 0; k < (size_t)len; k++)
		expect_reject(d, k, 4096, "truncated");
	/* Empty and NULL. */
	ck_assert_int_eq(dsm__diff_validate(NULL, 0, 4096), DSM_EPROTO);
}
END_TEST

START_TEST(diff_reject_header)
{
	uint8_t d[256], c[256];
	int len = sample_diff(d, sizeof(d));
	static const uint32_t bad_ps[] = {
		0, 8, 4088, 4104, 4097, 8192, 65536, 0x80001000u, 0xffffffffu,
	};
	static const uint32_t bad_nruns[] = { 0, 3, 5, 6, 0x10000, 0xffffffffu };

	ck_assert_int_eq(get32(d + 8), 4);
	/* Magic: each byte wrong, and a future format. */
	for (size_t b = 0; b < 4; b++) {
		memcpy(c, d, (size_t)len);
		c[b] ^= 0x20;
		expect_reject(c, (size_t)len, 4096, "magic");
	}
	memcpy(c, d, (size_t)len);
	c[3] = '2';
	expect_reject(c, (size_t)len, 4096, "format 2");
	/* Page size: anything but the receiver's. */
	for (size_t k = 0; k < DSM__ARRAY_SIZE(bad_ps); k++) {
		memcpy(c, d, (size_t)len);
		put32(c + 4, bad_ps[k]);
		expect_reject(c, (size_t)len, 4096, "page_size field");
	}
	/* The same diff at a receiver with another page size. */
	expect_reject(d, (size_t)len, 8192, "receiver page size 8192");
	expect_reject(d, (size_t)len, 4088, "receiver page size 4088");
	/* Run count: too few (trailing bytes) or too many (truncated). */
	for (size_t k = 0; k < DSM__ARRAY_SIZE(bad_nruns); k++) {
		memcpy(c, d, (size_t)len);
		put32(c + 8, bad_nruns[k]);
		expect_reject(c, (size_t)len, 4096, "nruns");
	}
}
END_TEST

struct run {
	uint32_t start, count; /* as written (u16 fields, truncated) */
	uint32_t data_words;   /* data bytes actually present / 8 */
};

/* Build an encoding of 4096-byte page with the given runs (data 0xCC). */
static size_t build(uint8_t *d, const struct run *r, size_t nr, size_t extra)
{
	size_t pos = 12;

	put32(d, DSM_DIFF_MAGIC);
	put32(d + 4, 4096);
	put32(d + 8, (uint32_t)nr);
	for (size_t k = 0; k < nr; k++) {
		put16(d + pos, (uint16_t)r[k].start);
		put16(d + pos + 2, (uint16_t)r[k].count);
		memset(d + pos + 4, 0xCC, 8 * r[k].data_words);
		pos += 4 + 8 * r[k].data_words;
	}
	memset(d + pos, 0, extra);
	return pos + extra;
}

#define RUNS(...) ((const struct run[]){ __VA_ARGS__ }), \
	(sizeof((const struct run[]){ __VA_ARGS__ }) / sizeof(struct run))

START_TEST(diff_reject_runs)
{
	static uint8_t d[2 * MAXD];
	const struct {
		const char *name;
		const struct run *r;
		size_t nr, extra;
	} bad[] = {
		{ "zero-length run", RUNS({ 5, 0, 0 }), 0 },
		{ "zero-length run after a valid one", RUNS({ 0, 1, 1 }, { 5, 0, 0 }), 0 },
		{ "overlapping", RUNS({ 0, 4, 4 }, { 2, 4, 4 }), 0 },
		{ "overlapping by one word", RUNS({ 0, 4, 4 }, { 3, 1, 1 }), 0 },
		{ "same start", RUNS({ 3, 1, 1 }, { 3, 1, 1 }), 0 },
		{ "out of order", RUNS({ 10, 1, 1 }, { 2, 1, 1 }), 0 },
		{ "adjacent", RUNS({ 0, 2, 2 }, { 2, 2, 2 }), 0 },
		{ "start past end", RUNS({ 0, 1, 1 }, { 512, 1, 1 }), 0 },
		{ "end past end", RUNS({ 0, 1, 1 }, { 511, 2, 2 }), 0 },
		{ "count past end", RUNS({ 0, 513, 513 }), 0 },
		{ "u16 max", RUNS({ 0, 1, 1 }, { 0xffff, 0xffff, 0 }), 0 },
		{ "count beyond data", RUNS({ 0, 1, 1 }, { 4, 3, 2 }), 0 },
		{ "trailing byte", RUNS({ 0, 1, 1 }), 1 },
		{ "trailing word", RUNS({ 0, 1, 1 }, { 9, 2, 2 }), 8 },
		{ "trailing run header", RUNS({ 0, 1, 1 }), 4 },
	};
	const struct {
		const char *name;
		const struct run *r;
		size_t nr;
	} good[] = {
		{ "one run", RUNS({ 0, 1, 1 }) },
		{ "one-word gap", RUNS({ 0, 2, 2 }, { 3, 2, 2 }) },
		{ "last word", RUNS({ 0, 1, 1 }, { 511, 1, 1 }) },
		{ "whole page", RUNS({ 0, 512, 512 }) },
	};

	for (size_t k = 0; k < DSM__ARRAY_SIZE(good); k++)
		expect_accept(d, build(d, good[k].r, good[k].nr, 0), 4096, good[k].name);
	for (size_t k = 0; k < DSM__ARRAY_SIZE(bad); k++) {
		size_t len = build(d, bad[k].r, bad[k].nr, bad[k].extra);

		expect_reject(d, len, 4096, bad[k].name);
	}
	/* No runs, then a run anyway. */
	build(d, RUNS({ 0, 1, 1 }), 0);
	put32(d + 8, 0);
	expect_reject(d, 12 + 4 + 8, 4096, "trailing run after nruns 0");
}
END_TEST

START_TEST(diff_bound)
{
	static uint8_t twin[MAXP], page[MAXP], d[MAXD + 64];
	static const size_t big[] = { 4096, 8192, 65536 };

	/* Every change pattern of pages of 1..12 words. */
	for (size_t n = 1; n <= 12; n++) {
		size_t ps = 8 * n, worst = 0;

		dsm_test_fill_random(twin, ps);
		for (uint32_t m = 0; m < (1u << n); m++) {
			int len;

			memcpy(page, twin, ps);
			for (size_t i = 0; i < n; i++)
				if (m >> i & 1)
					change_word(twin, page, i);
			len = dsm__diff_encode(twin, page, ps, d, dsm__diff_bound(ps));
			REQUIRE(len > 0);
			worst = DSM__MAX(worst, (size_t)len);
		}
		ck_assert_uint_eq(worst, dsm__diff_bound(ps));
	}
	/* Alternating changed/unchanged words, both phases. */
	for (size_t s = 0; s < DSM__ARRAY_SIZE(big); s++) {
		size_t ps = big[s], n = ps / 8;

		for (size_t phase = 0; phase < 2; phase++) {
			int len;

			dsm_test_fill_random(twin, ps);
			memcpy(page, twin, ps);
			for (size_t i = phase; i < n; i += 2)
				change_word(twin, page, i);
			len = dsm__diff_encode(twin, page, ps, d, dsm__diff_bound(ps));
			ck_assert_int_eq(len, (int)(12 + 12 * (n / 2)));
			ck_assert_uint_le((size_t)len, dsm__diff_bound(ps));
			roundtrip(twin, page, ps);
		}
	}
	ck_assert_uint_eq(dsm__diff_bound(4096), 4096 + 16);
	ck_assert_uint_eq(dsm__diff_bound(65536), DSM_DIFF_BOUND(65536));
	ck_assert_uint_eq(dsm__diff_bound(0), 0);
	ck_assert_uint_eq(dsm__diff_bound(4), 0);
	ck_assert_uint_eq(dsm__diff_bound(4100), 0);
	ck_assert_uint_eq(dsm__diff_bound(65544), 0);
	ck_assert_uint_eq(dsm__diff_bound(SIZE_MAX), 0);
}
END_TEST

START_TEST(diff_invalid_args)
{
	static uint8_t twin[4096], page[4096], d[DSM_DIFF_BOUND(4096)];
	static const size_t bad_ps[] = { 0, 4, 12, 4100, 65544, SIZE_MAX };

	memset(twin, 0, sizeof(twin));
	memset(page, 1, sizeof(page));
	ck_assert_int_eq(dsm__diff_encode(NULL, page, 4096, d, sizeof(d)), DSM_EINVAL);
	ck_assert_int_eq(dsm__diff_encode(twin, NULL, 4096, d, sizeof(d)), DSM_EINVAL);
	ck_assert_int_eq(dsm__diff_encode(twin, page, 4096, NULL, sizeof(d)), DSM_EINVAL);
	for (size_t k = 0; k < DSM__ARRAY_SIZE(bad_ps); k++) {
		ck_assert_int_eq(dsm__diff_encode(twin, page, bad_ps[k], d, sizeof(d)),
				 DSM_EINVAL);
		ck_assert_int_eq(dsm__diff_validate(d, 12, bad_ps[k]), DSM_EINVAL);
		ck_assert_int_eq(dsm__diff_apply(page, bad_ps[k], d, 12), DSM_EINVAL);
	}
	ck_assert_int_eq(dsm__diff_encode(twin, twin, 4096, d, sizeof(d)), 12);
	ck_assert_int_eq(dsm__diff_validate(NULL, 12, 4096), DSM_EINVAL);
	ck_assert_int_eq(dsm__diff_apply(NULL, 4096, d, 12), DSM_EINVAL);
	ck_assert_int_eq(dsm__diff_apply(page, 4096, NULL, 12), DSM_EINVAL);
}
END_TEST

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Not an assertion: encode+apply of a 4 KiB page, median of 1000. */
START_TEST(diff_timing)
{
	static uint8_t twin[4096], page[4096], home[4096], d[DSM_DIFF_BOUND(4096)];
	static int64_t tot[1000], enc[1000];
	static const unsigned pct[] = { 1, 10, 100 };

	dsm_test_rng_seed(42);
	for (size_t k = 0; k < DSM__ARRAY_SIZE(pct); k++) {
		size_t want = 512 * pct[k] / 100, changed = 0;

		dsm_test_fill_random(twin, 4096);
		memcpy(page, twin, 4096);
		while (changed < want) {
			size_t i = dsm_test_rng() % 512;

			if (memcmp(twin + 8 * i, page + 8 * i, 8) == 0) {
				change_word(twin, page, i);
				changed++;
			}
		}
		memcpy(home, twin, 4096);
		for (int it = 0; it < 1000; it++) {
			int64_t t0 = dsm__now_ns(), t1, t2;
			int len = dsm__diff_encode(twin, page, 4096, d, sizeof(d)), r;

			t1 = dsm__now_ns();
			r = dsm__diff_apply(home, 4096, d, (size_t)len);
			t2 = dsm__now_ns();
			REQUIRE(len > 0 && r == 0);
			enc[it] = t1 - t0;
			tot[it] = t2 - t0;
		}
		ck_assert_mem_eq(home, page, 4096);
		qsort(tot, 1000, sizeof(tot[0]), cmp_i64);
		qsort(enc, 1000, sizeof(enc[0]), cmp_i64);
		printf("diff timing: 4 KiB page, %3u%% words changed (%3zu words): "
		       "encode+apply %5lld ns/page (encode %5lld ns), median of 1000\n",
		       pct[k], want, (long long)tot[500], (long long)enc[500]);
	}
	fflush(stdout);
}
END_TEST

static Suite *diff_suite(void)
{
	Suite *s = suite_create("diff");
	DSM_TEST_ADD(s, diff_unchanged_empty, 60);
	DSM_TEST_ADD(s, diff_layout, 60);
	DSM_TEST_ADD(s, diff_single_word, 60);
	DSM_TEST_ADD(s, diff_every_word, 60);
	DSM_TEST_ADD(s, diff_random_roundtrip, 60);
	DSM_TEST_ADD(s, diff_two_writers_merge, 60);
	DSM_TEST_ADD(s, diff_no_gap_merge, 60);
	DSM_TEST_ADD(s, diff_cap_too_small, 60);
	DSM_TEST_ADD(s, diff_reject_truncated, 60);
	DSM_TEST_ADD(s, diff_reject_header, 60);
	DSM_TEST_ADD(s, diff_reject_runs, 60);
	DSM_TEST_ADD(s, diff_bound, 60);
	DSM_TEST_ADD(s, diff_invalid_args, 60);
	DSM_TEST_ADD(s, diff_timing, 60);
	return s;
}

int main(void)
{
	return dsm_test_run_suite(diff_suite());
}
