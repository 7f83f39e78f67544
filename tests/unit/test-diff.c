/*
 * Unit tests for dsm/diff.c: the byte-exact twin/diff encoding (format 2)
 * of the multiple-writer protocol. Round trips (encode then apply onto a
 * copy of the twin gives the page), the byte layout and its varints, the
 * rule that only changed bytes are sent (two writers on disjoint bytes of
 * one word merge in either order), cap handling, every rejection of a
 * malformed diff (page left untouched), the worst-case size bound, all
 * page sizes, and a timing print.
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
#define MAXD DSM_DIFF_BOUND(MAXP)

static const size_t sizes[] = { 8, 16, 24, 64, 72, 4096, 8192, 65536 };

/* Make byte i of page differ from byte i of twin (random new value). */
static void change_byte(const uint8_t *twin, uint8_t *page, size_t i)
{
	page[i] = (uint8_t)(twin[i] ^ (1 + dsm_test_rng() % 255));
}

static void change_range(const uint8_t *twin, uint8_t *page, size_t a, size_t n)
{
	for (size_t i = a; i < a + n; i++)
		change_byte(twin, page, i);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Shortest LEB128 of v; returns its size. */
static size_t put_var(uint8_t *p, uint32_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static size_t var_size(uint32_t v)
{
	uint8_t tmp[8];

	return put_var(tmp, v);
}

/* Independent LEB128 reader for encoder output (trusted to be in bounds
 * by the REQUIREs of the caller): the value, its size in *n. */
static uint32_t get_var(const uint8_t *p, size_t avail, size_t *n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < 3; i++) {
		REQUIRE(i < avail);
		v |= (uint32_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			REQUIRE(i == 0 || p[i] != 0); /* shortest form */
			*n = i + 1;
			return v;
		}
	}
	ck_abort_msg("varint longer than 3 bytes");
	return 0;
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
 * structure (maximal runs, shortest varints) and that the bytes it sends
 * are exactly the bytes where twin and page differ, with the page's
 * values. Returns the number of runs.
 */
static uint32_t check_exact(const uint8_t *d, int len, const uint8_t *twin,
			    const uint8_t *page, size_t ps)
{
	static uint8_t sent[MAXP];
	size_t pos = 12, cur = 0;
	uint32_t nruns;

	REQUIRE(len >= 12);
	REQUIRE(memcmp(d, "DDF2", 4) == 0);
	REQUIRE(get32(d) == DSM_DIFF_MAGIC);
	REQUIRE(get32(d + 4) == ps);
	nruns = get32(d + 8);
	memset(sent, 0, ps);
	for (uint32_t r = 0; r < nruns; r++) {
		size_t n, skip, rl;

		skip = get_var(d + pos, (size_t)len - pos, &n);
		pos += n;
		rl = get_var(d + pos, (size_t)len - pos, &n);
		pos += n;
		REQUIRE(r == 0 || skip >= 1); /* never adjacent */
		REQUIRE(rl >= 1);
		REQUIRE(cur + skip + rl <= ps);
		cur += skip;
		REQUIRE(pos + rl <= (size_t)len);
		REQUIRE(memcmp(d + pos, page + cur, rl) == 0);
		memset(sent + cur, 1, rl);
		cur += rl;
		pos += rl;
	}
	REQUIRE(pos == (size_t)len);
	for (size_t i = 0; i < ps; i++) {
		int differs = twin[i] != page[i];

		if (differs != sent[i])
			ck_abort_msg("byte %zu: differs=%d sent=%d (page %zu)", i, differs,
				     sent[i], ps);
	}
	return nruns;
}

/* Encode, check exactness, apply onto a copy of the twin: must be the page.
 * Returns the encoded length. */
static int roundtrip(const uint8_t *twin, const uint8_t *page, size_t ps)
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
	/* An exact buffer is enough, one byte less is not. */
	REQUIRE(dsm__diff_encode(twin, page, ps, d, (size_t)len) == len);
	REQUIRE(dsm__diff_encode(twin, page, ps, d, (size_t)len - 1) == DSM_EMSGSIZE);
	return len;
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
		ck_assert_mem_eq(d, "DDF2", 4);
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
	uint8_t want[64];
	size_t w = 0;
	int len;

	for (int i = 0; i < 64; i++)
		twin[i] = page[i] = (uint8_t)i;
	page[0] ^= 0x80;  /* run 0..0 */
	page[2] ^= 0x01;  /* run 2..3: one byte apart from the first */
	page[3] ^= 0x01;
	page[7] ^= 0x01;  /* run 7..9, across a word boundary */
	page[8] ^= 0x02;
	page[9] ^= 0x04;
	page[11] ^= 0x08; /* run 11..11, same word as the last */
	page[63] ^= 0x10; /* the last byte */
	memcpy(want, "DDF2", 4);
	memcpy(want + 4, "\x40\x00\x00\x00", 4); /* page_size 64 */
	memcpy(want + 8, "\x05\x00\x00\x00", 4); /* 5 runs */
	w = 12;
	want[w++] = 0;  /* skip 0 */
	want[w++] = 1;  /* len 1 */
	want[w++] = page[0];
	want[w++] = 1;  /* skip byte 1 */
	want[w++] = 2;
	want[w++] = page[2];
	want[w++] = page[3];
	want[w++] = 3;  /* skip 4..6 */
	want[w++] = 3;
	memcpy(want + w, page + 7, 3);
	w += 3;
	want[w++] = 1;  /* skip byte 10 */
	want[w++] = 1;
	want[w++] = page[11];
	want[w++] = 51; /* skip 12..62 */
	want[w++] = 1;
	want[w++] = page[63];
	len = dsm__diff_encode(twin, page, 64, d, sizeof(d));
	ck_assert_int_eq(len, (int)w);
	ck_assert_mem_eq(d, want, w);
	roundtrip(twin, page, 64);
}
END_TEST

/* Long skips and runs: 2- and 3-byte varints, the len varint widened at
 * 128 and 16384 bytes while the run is written. */
START_TEST(diff_layout_varints)
{
	static uint8_t twin[MAXP], page[MAXP], d[MAXD];
	static const struct {
		size_t start, len;
	} cases[] = {
		{ 0, 127 }, { 0, 128 }, { 1, 129 }, { 127, 1 }, { 128, 1 },
		{ 130, 191 }, { 200, 16383 }, { 16383, 1 }, { 16384, 1 },
		{ 100, 16384 }, { 3, 16385 }, { 0, 65536 }, { 65535, 1 },
		{ 1, 65535 }, { 40000, 20000 },
	};

	for (size_t c = 0; c < DSM__ARRAY_SIZE(cases); c++) {
		size_t a = cases[c].start, n = cases[c].len, hs, hl;
		int len;

		dsm_test_fill_random(twin, MAXP);
		memcpy(page, twin, MAXP);
		change_range(twin, page, a, n);
		len = dsm__diff_encode(twin, page, MAXP, d, sizeof(d));
		hs = var_size((uint32_t)a);
		hl = var_size((uint32_t)n);
		ck_assert_int_eq(len, (int)(12 + hs + hl + n));
		ck_assert_uint_eq(get32(d + 8), 1);
		if (hl == 3 && n == 65536)
			ck_assert_mem_eq(d + 12 + hs, "\x80\x80\x04", 3);
		if (a == 65535)
			ck_assert_mem_eq(d + 12, "\xff\xff\x03", 3);
		ck_assert_mem_eq(d + 12 + hs + hl, page + a, n);
		roundtrip(twin, page, MAXP);
	}
}
END_TEST

START_TEST(diff_single_byte)
{
	static uint8_t twin[MAXP], page[MAXP], d[MAXD];

	for (size_t s = 0; s < DSM__ARRAY_SIZE(sizes); s++) {
		size_t ps = sizes[s];

		dsm_test_fill_random(twin, ps);
		for (size_t i = 0; i < ps; i += (ps <= 128 ? 1 : 61)) {
			int len;

			memcpy(page, twin, ps);
			change_byte(twin, page, i);
			len = dsm__diff_encode(twin, page, ps, d, sizeof(d));
			REQUIRE(len == (int)(12 + var_size((uint32_t)i) + 1 + 1));
			REQUIRE(get32(d + 8) == 1);
			REQUIRE(d[len - 1] == page[i]);
			roundtrip(twin, page, ps);
		}
	}
}
END_TEST

START_TEST(diff_every_byte)
{
	static uint8_t twin[MAXP], page[MAXP];

	for (size_t s = 0; s < DSM__ARRAY_SIZE(sizes); s++) {
		size_t ps = sizes[s];
		int len;

		dsm_test_fill_random(twin, ps);
		change_range(twin, page, 0, ps);
		len = roundtrip(twin, page, ps);
		ck_assert_int_eq(len, (int)(12 + 1 + var_size((uint32_t)ps) + ps));
	}
}
END_TEST

/* Random byte-level change patterns. */
static void random_changes(const uint8_t *twin, uint8_t *page, size_t ps, unsigned mode)
{
	memcpy(page, twin, ps);
	switch (mode % 5) {
	case 0: { /* sparse: a few random bytes */
		size_t k = 1 + dsm_test_rng() % 8;

		for (size_t j = 0; j < k; j++)
			change_byte(twin, page, dsm_test_rng() % ps);
		break;
	}
	case 1: { /* dense: each byte with probability 1/64 .. 64/64 */
		uint64_t p = 1 + dsm_test_rng() % 64;

		for (size_t i = 0; i < ps; i++)
			if (dsm_test_rng() % 64 < p)
				change_byte(twin, page, i);
		break;
	}
	case 2: { /* clustered: a few ranges of 1 to 300 bytes */
		size_t k = 1 + dsm_test_rng() % 6;

		for (size_t j = 0; j < k; j++) {
			size_t a = dsm_test_rng() % ps, l = 1 + dsm_test_rng() % 300;

			change_range(twin, page, a, DSM__MIN(l, ps - a));
		}
		break;
	}
	case 3: { /* typed stores: int32 or int16 elements, some rewritten equal */
		size_t el = dsm_test_rng() % 2 ? 4 : 2;
		uint64_t p = dsm_test_rng() % 64;

		for (size_t i = 0; i + el <= ps; i += el)
			if (dsm_test_rng() % 64 < p)
				page[i + dsm_test_rng() % el] ^= 0x01; /* low byte, say */
		break;
	}
	default: /* a random page: each byte differs with probability 255/256 */
		dsm_test_fill_random(page, ps);
		break;
	}
}

START_TEST(diff_random_roundtrip)
{
	static uint8_t twin[MAXP], page[MAXP];
	static const struct {
		size_t ps;
		unsigned iters;
	} cfg[] = { { 4096, 3000 }, { 8192, 1000 }, { 65536, 150 }, { 72, 3000 }, { 8, 3000 } };

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

/* Page sizes 8 to 65536: every one up to 2048 (all tail lengths after the
 * 64-byte blocks, with and without a 512-byte chunk), then a stride that
 * keeps visiting every tail length, then the largest. */
START_TEST(diff_all_page_sizes)
{
	static uint8_t twin[MAXP], page[MAXP], d[MAXD];

	dsm_test_rng_seed(77);
	for (size_t ps = 8; ps <= MAXP; ps += ps < 2048 ? 8 : ps + 296 < MAXP ? 296 : MAXP - ps) {
		int len;

		dsm_test_fill_random(twin, ps);
		random_changes(twin, page, ps, (unsigned)(ps / 8));
		/* The first and last bytes, which the tail handles. */
		if (ps % 3 == 0)
			change_byte(twin, page, ps - 1);
		if (ps % 5 == 0)
			change_byte(twin, page, 0);
		len = roundtrip(twin, page, ps);
		REQUIRE(dsm__diff_bound(ps) == DSM_DIFF_BOUND(ps));
		/* The receiver's page size must match. */
		REQUIRE(dsm__diff_encode(twin, page, ps, d, sizeof(d)) == len);
		if (ps < MAXP)
			REQUIRE(dsm__diff_validate(d, (size_t)len, ps + 8) == DSM_EPROTO);
		if (ps == MAXP)
			break;
	}
}
END_TEST

/*
 * Two writers start from the same twin (the home's copy) and change
 * disjoint byte sets (owner[i]: 0 nobody, 1 A, 2 B); both diffs applied to
 * the home in either order must give the union of their changes.
 */
static void two_writers(const uint8_t *owner, size_t ps)
{
	static uint8_t base[MAXP], a[MAXP], b[MAXP], want[MAXP], h1[MAXP], h2[MAXP];
	static uint8_t da[MAXD], db[MAXD];
	int la, lb;

	dsm_test_fill_random(base, ps);
	memcpy(a, base, ps);
	memcpy(b, base, ps);
	for (size_t i = 0; i < ps; i++) {
		if (owner[i] == 1)
			change_byte(base, a, i);
		else if (owner[i] == 2)
			change_byte(base, b, i);
	}
	for (size_t i = 0; i < ps; i++)
		want[i] = owner[i] == 2 ? b[i] : a[i];
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
	static uint8_t owner[MAXP];
	static const size_t ps_list[] = { 8, 64, 72, 4096, 8192, 65536 };

	dsm_test_rng_seed(0xfeedfacecafebeefull);
	for (size_t s = 0; s < DSM__ARRAY_SIZE(ps_list); s++) {
		size_t ps = ps_list[s];

		/* Even bytes to A, odd bytes to B: char arrays, every gap one
		 * byte, both writers in every word. */
		for (size_t i = 0; i < ps; i++)
			owner[i] = (uint8_t)(1 + i % 2);
		two_writers(owner, ps);
		/* int32 elements alternating between A and B (two writers per
		 * 8-byte word), and int16 elements. */
		for (size_t el = 2; el <= 4; el += 2) {
			for (size_t i = 0; i < ps; i++)
				owner[i] = (uint8_t)(1 + (i / el) % 2);
			two_writers(owner, ps);
		}
		/* A: bytes 0 and 2; B: byte 1; nobody else. */
		memset(owner, 0, ps);
		owner[0] = owner[2] = 1;
		owner[1] = 2;
		two_writers(owner, ps);
		/* A: the first 7 bytes of the last word, B: its last byte. */
		memset(owner, 0, ps);
		memset(owner + ps - 8, 1, 7);
		owner[ps - 1] = 2;
		two_writers(owner, ps);
		/* Random disjoint sets, with unowned bytes, at byte and at
		 * clustered granularity. */
		for (int it = 0; it < (ps > 8192 ? 30 : 300); it++) {
			size_t grain = it % 2 ? 1 : 1 + dsm_test_rng() % 16;

			for (size_t i = 0; i < ps; i += grain) {
				uint8_t o = (uint8_t)(dsm_test_rng() % 3);

				memset(owner + i, o, DSM__MIN(grain, ps - i));
			}
			two_writers(owner, ps);
		}
	}
}
END_TEST

START_TEST(diff_no_gap_merge)
{
	uint8_t twin[64], page[64], d[DSM_DIFF_BOUND(64)];
	int len;

	/* Bytes 0, 2, 4, 6 changed: four one-byte runs, the gaps not sent
	 * (one run of 7 bytes would be 9 bytes shorter, and wrong). */
	dsm_test_fill_random(twin, 64);
	memcpy(page, twin, 64);
	for (size_t i = 0; i < 8; i += 2)
		change_byte(twin, page, i);
	len = dsm__diff_encode(twin, page, 64, d, sizeof(d));
	ck_assert_int_eq(len, 12 + 4 * 3);
	ck_assert_uint_eq(check_exact(d, len, twin, page, 64), 4);
	/* A byte rewritten with its twin value is not a change. */
	memcpy(page, twin, 64);
	page[5] = (uint8_t)(twin[5] + 1);
	page[6] = twin[6];
	page[7] = (uint8_t)(twin[7] + 1);
	len = dsm__diff_encode(twin, page, 64, d, sizeof(d));
	ck_assert_int_eq(len, 12 + 2 * 3);
	ck_assert_uint_eq(check_exact(d, len, twin, page, 64), 2);
}
END_TEST

/* Every cap below the encoded length: DSM_EMSGSIZE, nothing written at or
 * past out + cap. */
static void cap_sweep(const uint8_t *twin, const uint8_t *page, size_t ps)
{
	static uint8_t ref[MAXD], buf[MAXD + 64];
	int len = dsm__diff_encode(twin, page, ps, ref, sizeof(ref));

	REQUIRE(len >= 12);
	for (size_t cap = 0; cap < (size_t)len; cap++) {
		memset(buf, 0xA5, (size_t)len + 64);
		REQUIRE(dsm__diff_encode(twin, page, ps, buf, cap) == DSM_EMSGSIZE);
		for (size_t j = cap; j < (size_t)len + 64; j++)
			if (buf[j] != 0xA5)
				ck_abort_msg("cap %zu: byte %zu written", cap, j);
	}
	memset(buf, 0xA5, (size_t)len + 64);
	REQUIRE(dsm__diff_encode(twin, page, ps, buf, (size_t)len) == len);
	REQUIRE(memcmp(buf, ref, (size_t)len) == 0);
	for (size_t j = (size_t)len; j < (size_t)len + 64; j++)
		REQUIRE(buf[j] == 0xA5);
}

START_TEST(diff_cap_too_small)
{
	static uint8_t twin[4096], page[4096];

	dsm_test_fill_random(twin, 4096);
	memcpy(page, twin, 4096);
	for (size_t i = 0; i < 4096; i += 37)
		change_byte(twin, page, i);
	change_range(twin, page, 100, 20);
	change_range(twin, page, 1000, 300); /* the len varint widens */
	change_range(twin, page, 4090, 6);
	cap_sweep(twin, page, 4096);
	/* Every byte changed. */
	change_range(twin, page, 0, 4096);
	cap_sweep(twin, page, 4096);
	/* The worst case: exactly the bound, one less is too small. */
	memcpy(page, twin, 4096);
	for (size_t i = 0; i < 4096 - 2; i += 2)
		change_byte(twin, page, i);
	change_range(twin, page, 4094, 2);
	cap_sweep(twin, page, 4096);
	/* A NULL output with cap 0 is just too small. */
	ck_assert_int_eq(dsm__diff_encode(twin, page, 4096, NULL, 0), DSM_EMSGSIZE);
}
END_TEST

/* A run of 16384+ bytes in a 64 KiB page: the second widening of the len
 * varint under every cap around it. */
START_TEST(diff_cap_long_run)
{
	static uint8_t twin[MAXP], page[MAXP], ref[MAXD], buf[MAXD + 64];
	int len;

	dsm_test_fill_random(twin, MAXP);
	memcpy(page, twin, MAXP);
	change_range(twin, page, 5, 20000);
	change_byte(twin, page, 40000); /* skip 19995: a 3-byte varint */
	len = dsm__diff_encode(twin, page, MAXP, ref, sizeof(ref));
	ck_assert_int_eq(len, 12 + (1 + 3 + 20000) + (3 + 1 + 1));
	for (size_t cap = 12; cap < (size_t)len; cap += (cap > 16380 && cap < 16420) ? 1 : 97) {
		memset(buf, 0xA5, (size_t)len + 64);
		REQUIRE(dsm__diff_encode(twin, page, MAXP, buf, cap) == DSM_EMSGSIZE);
		for (size_t j = cap; j < (size_t)len + 64; j++)
			REQUIRE(buf[j] == 0xA5);
	}
	roundtrip(twin, page, MAXP);
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

/* A multi-run diff of a 4096-byte page, for the rejection cases: 4 runs,
 * one of 300 bytes (2-byte len) after a 2-byte skip. */
static int sample_diff(uint8_t *d, size_t cap)
{
	static uint8_t twin[4096], page[4096];

	dsm_test_fill_random(twin, 4096);
	memcpy(page, twin, 4096);
	change_range(twin, page, 0, 3);
	change_byte(twin, page, 7);
	change_range(twin, page, 300, 300);
	change_byte(twin, page, 4095);
	return dsm__diff_encode(twin, page, 4096, d, cap);
}

START_TEST(diff_reject_truncated)
{
	uint8_t d[1024];
	int len = sample_diff(d, sizeof(d));

	ck_assert_int_eq(len, 12 + (1 + 1 + 3) + (1 + 1 + 1) + (2 + 2 + 300) + (2 + 1 + 1));
	expect_accept(d, (size_t)len, 4096, "sample");
	for (size_t k = 0; k < (size_t)len; k++)
		expect_reject(d, k, 4096, "truncated");
	/* Empty and NULL. */
	ck_assert_int_eq(dsm__diff_validate(NULL, 0, 4096), DSM_EPROTO);
}
END_TEST

START_TEST(diff_reject_header)
{
	uint8_t d[1024], c[1024];
	int len = sample_diff(d, sizeof(d));
	static const uint32_t bad_ps[] = {
		0, 8, 4088, 4104, 4097, 8192, 65536, 0x80001000u, 0xffffffffu,
	};
	static const uint32_t bad_nruns[] = { 0, 3, 5, 6, 0x10000, 0xffffffffu };

	ck_assert_int_eq(get32(d + 8), 4);
	/* Magic: each byte wrong, format 1 and a future format. */
	for (size_t b = 0; b < 4; b++) {
		memcpy(c, d, (size_t)len);
		c[b] ^= 0x20;
		expect_reject(c, (size_t)len, 4096, "magic");
	}
	memcpy(c, d, (size_t)len);
	c[3] = '1';
	expect_reject(c, (size_t)len, 4096, "format 1");
	c[3] = '3';
	expect_reject(c, (size_t)len, 4096, "format 3");
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
	uint32_t skip, len; /* as written (shortest varints) */
	uint32_t data;      /* data bytes actually present */
};

/* Build an encoding for a page of ps bytes with the given runs (data
 * 0xCC) and extra zero bytes after them. */
static size_t build(uint8_t *d, size_t ps, const struct run *r, size_t nr, size_t extra)
{
	size_t pos = 12;

	put32(d, DSM_DIFF_MAGIC);
	put32(d + 4, (uint32_t)ps);
	put32(d + 8, (uint32_t)nr);
	for (size_t k = 0; k < nr; k++) {
		pos += put_var(d + pos, r[k].skip);
		pos += put_var(d + pos, r[k].len);
		memset(d + pos, 0xCC, r[k].data);
		pos += r[k].data;
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
		size_t ps;
		const struct run *r;
		size_t nr, extra;
	} bad[] = {
		{ "empty run", 4096, RUNS({ 5, 0, 0 }), 0 },
		{ "empty first run at 0", 4096, RUNS({ 0, 0, 0 }), 0 },
		{ "empty run after a valid one", 4096, RUNS({ 0, 1, 1 }, { 5, 0, 0 }), 0 },
		{ "adjacent", 4096, RUNS({ 0, 2, 2 }, { 0, 2, 2 }), 0 },
		{ "adjacent later", 4096, RUNS({ 3, 1, 1 }, { 1, 1, 1 }, { 0, 1, 1 }), 0 },
		{ "start at page end", 4096, RUNS({ 4096, 1, 1 }), 0 },
		{ "start past end", 4096, RUNS({ 0, 1, 1 }, { 4095, 1, 1 }), 0 },
		{ "end past end", 4096, RUNS({ 0, 1, 1 }, { 4093, 3, 3 }), 0 },
		{ "len past end", 4096, RUNS({ 0, 4097, 4097 }), 0 },
		{ "len past end by one", 8, RUNS({ 1, 8, 8 }), 0 },
		{ "skip 65536 in 64 KiB", 65536, RUNS({ 65536, 1, 1 }), 0 },
		{ "len 65537 in 64 KiB", 65536, RUNS({ 0, 65537, 65537 }), 0 },
		{ "largest 3-byte values", 65536, RUNS({ 0x1fffff, 0x1fffff, 0 }), 0 },
		{ "len beyond data", 4096, RUNS({ 0, 1, 1 }, { 4, 3, 2 }), 0 },
		{ "trailing byte", 4096, RUNS({ 0, 1, 1 }), 1 },
		{ "trailing run data", 4096, RUNS({ 0, 1, 1 }, { 9, 2, 2 }), 8 },
		{ "trailing run header", 4096, RUNS({ 0, 1, 1 }), 2 },
	};
	const struct {
		const char *name;
		size_t ps;
		const struct run *r;
		size_t nr;
	} good[] = {
		{ "one run", 4096, RUNS({ 0, 1, 1 }) },
		{ "one-byte gap", 4096, RUNS({ 0, 2, 2 }, { 1, 2, 2 }) },
		{ "last byte", 4096, RUNS({ 0, 1, 1 }, { 4094, 1, 1 }) },
		{ "whole page", 4096, RUNS({ 0, 4096, 4096 }) },
		{ "page of 8", 8, RUNS({ 0, 1, 1 }, { 1, 1, 1 }, { 1, 1, 1 }, { 1, 2, 2 }) },
		{ "whole 64 KiB", 65536, RUNS({ 0, 65536, 65536 }) },
		{ "last byte of 64 KiB", 65536, RUNS({ 65535, 1, 1 }) },
		{ "3-byte varints", 65536, RUNS({ 16384, 16384, 16384 }, { 16384, 16384, 16384 }) },
	};
	/* Raw runs after a header with nruns 1 (page 4096), for varints the
	 * builder would not write. */
	static const struct {
		const char *name;
		const char *runs;
		size_t len;
	} raw[] = {
		{ "overlong skip 0", "\x80\x00\x01\xcc", 4 },
		{ "overlong skip 1", "\x81\x00\x01\xcc", 4 },
		{ "overlong len 1", "\x00\x81\x00\xcc", 4 },
		{ "overlong 3-byte skip", "\x85\x80\x00\x01\xcc", 5 },
		{ "4-byte skip", "\x81\x80\x80\x00\x01\xcc", 6 },
		{ "4-byte len", "\x00\x81\x80\x80\x00\xcc", 6 },
		{ "truncated skip", "\x80", 1 },
		{ "truncated len", "\x00\x81", 2 },
		{ "skip only", "\x00", 1 },
		{ "no data", "\x00\x01", 2 },
	};

	for (size_t k = 0; k < DSM__ARRAY_SIZE(good); k++)
		expect_accept(d, build(d, good[k].ps, good[k].r, good[k].nr, 0), good[k].ps,
			      good[k].name);
	for (size_t k = 0; k < DSM__ARRAY_SIZE(bad); k++) {
		size_t len = build(d, bad[k].ps, bad[k].r, bad[k].nr, bad[k].extra);

		expect_reject(d, len, bad[k].ps, bad[k].name);
	}
	for (size_t k = 0; k < DSM__ARRAY_SIZE(raw); k++) {
		build(d, 4096, NULL, 0, 0);
		put32(d + 8, 1);
		memcpy(d + 12, raw[k].runs, raw[k].len);
		expect_reject(d, 12 + raw[k].len, 4096, raw[k].name);
	}
	/* The same shortest forms are accepted. */
	build(d, 4096, NULL, 0, 0);
	put32(d + 8, 1);
	memcpy(d + 12, "\x05\x01\xcc", 3);
	expect_accept(d, 15, 4096, "shortest");
	/* No runs, then a run anyway. */
	build(d, 4096, RUNS({ 0, 1, 1 }), 0);
	put32(d + 8, 0);
	expect_reject(d, 12 + 3, 4096, "trailing run after nruns 0");
}
END_TEST

/* Length of the encoding of page vs twin where mask bit i says byte i
 * changed (ps <= 64). */
static int encode_mask(uint8_t *twin, uint8_t *page, size_t ps, uint64_t mask, uint8_t *d)
{
	for (size_t i = 0; i < ps; i++)
		page[i] = (uint8_t)(mask >> i & 1 ? ~twin[i] : twin[i]);
	return dsm__diff_encode(twin, page, ps, d, dsm__diff_bound(ps));
}

START_TEST(diff_bound)
{
	static uint8_t twin[MAXP], page[MAXP], d[MAXD + 64];
	static const size_t big[] = { 4096, 8192, 65536 };

	/* Every change pattern of pages of 8 and 16 bytes: the largest is
	 * exactly the bound. */
	for (size_t ps = 8; ps <= 16; ps += 8) {
		size_t worst = 0;

		dsm_test_fill_random(twin, ps);
		for (uint64_t m = 0; m < (1ull << ps); m++) {
			int len = encode_mask(twin, page, ps, m, d);

			REQUIRE(len > 0);
			worst = DSM__MAX(worst, (size_t)len);
		}
		ck_assert_uint_eq(worst, dsm__diff_bound(ps));
	}
	/* Alternating changed/unchanged bytes, both phases: 3 bytes a run;
	 * the pattern that reaches the bound; random patterns near it. */
	for (size_t s = 0; s < DSM__ARRAY_SIZE(big); s++) {
		size_t ps = big[s];
		int len;

		for (size_t phase = 0; phase < 2; phase++) {
			dsm_test_fill_random(twin, ps);
			memcpy(page, twin, ps);
			for (size_t i = phase; i < ps; i += 2)
				change_byte(twin, page, i);
			len = roundtrip(twin, page, ps);
			ck_assert_int_eq(len, (int)(12 + 3 * (ps / 2)));
		}
		memcpy(page, twin, ps);
		for (size_t i = 0; i < ps - 2; i += 2)
			change_byte(twin, page, i);
		change_range(twin, page, ps - 2, 2);
		len = roundtrip(twin, page, ps);
		ck_assert_int_eq(len, (int)dsm__diff_bound(ps));
		for (int it = 0; it < 20; it++) {
			memcpy(page, twin, ps);
			for (size_t i = 0; i < ps; i++)
				if (dsm_test_rng() % 8 < 4 + (size_t)(it % 3))
					change_byte(twin, page, i);
			roundtrip(twin, page, ps);
		}
	}
	ck_assert_uint_eq(dsm__diff_bound(8), 12 + 8 + 4 + 1);
	ck_assert_uint_eq(dsm__diff_bound(4096), 12 + 6144 + 1);
	ck_assert_uint_eq(dsm__diff_bound(65536), 12 + 98304 + 1);
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

/* Not an assertion: encode and apply of a 4 KiB page, median of 1000
 * (this is a debug-optimised, maybe sanitised build; tests/perf has the
 * real numbers). */
START_TEST(diff_timing)
{
	static uint8_t twin[4096], page[4096], home[4096], d[DSM_DIFF_BOUND(4096)];
	static int64_t enc[1000], app[1000];
	static const char *const what[] = {
		"no change", "one 8-byte change", "every byte changed",
		"64 scattered 4-byte changes",
	};

	dsm_test_rng_seed(42);
	for (size_t k = 0; k < DSM__ARRAY_SIZE(what); k++) {
		int len = 0;

		dsm_test_fill_random(twin, 4096);
		memcpy(page, twin, 4096);
		if (k == 1)
			change_range(twin, page, 2000, 8);
		else if (k == 2)
			change_range(twin, page, 0, 4096);
		else if (k == 3)
			for (size_t j = 0; j < 64; j++)
				change_range(twin, page, 64 * j + dsm_test_rng() % 60, 4);
		memcpy(home, twin, 4096);
		for (int it = 0; it < 1000; it++) {
			int64_t t0 = dsm__now_ns(), t1, t2;
			int r;

			len = dsm__diff_encode(twin, page, 4096, d, sizeof(d));
			t1 = dsm__now_ns();
			r = dsm__diff_apply(home, 4096, d, (size_t)len);
			t2 = dsm__now_ns();
			REQUIRE(len > 0 && r == 0);
			enc[it] = t1 - t0;
			app[it] = t2 - t1;
		}
		ck_assert_mem_eq(home, page, 4096);
		qsort(enc, 1000, sizeof(enc[0]), cmp_i64);
		qsort(app, 1000, sizeof(app[0]), cmp_i64);
		printf("diff timing: 4 KiB page, %-28s %5d bytes: encode %6lld ns, "
		       "apply %6lld ns (median of 1000)\n",
		       what[k], len, (long long)enc[500], (long long)app[500]);
	}
	fflush(stdout);
}
END_TEST

static Suite *diff_suite(void)
{
	Suite *s = suite_create("diff");
	DSM_TEST_ADD(s, diff_unchanged_empty, 60);
	DSM_TEST_ADD(s, diff_layout, 60);
	DSM_TEST_ADD(s, diff_layout_varints, 60);
	DSM_TEST_ADD(s, diff_single_byte, 60);
	DSM_TEST_ADD(s, diff_every_byte, 60);
	DSM_TEST_ADD(s, diff_random_roundtrip, 120);
	DSM_TEST_ADD(s, diff_all_page_sizes, 120);
	DSM_TEST_ADD(s, diff_two_writers_merge, 120);
	DSM_TEST_ADD(s, diff_no_gap_merge, 60);
	DSM_TEST_ADD(s, diff_cap_too_small, 60);
	DSM_TEST_ADD(s, diff_cap_long_run, 60);
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
