/*
 * Tests of common/'s codec helpers: the little-endian put/get of le.h
 * (byte order pinned, unaligned pointers, round trips of extreme values)
 * and FNV-1a of fnv.h (the published test vectors, incremental hashing).
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "fnv.h"
#include "le.h"
#include "testutil.h"

START_TEST(common_le_layout)
{
	uint8_t b[8];
	static const uint8_t w16[] = { 0x02, 0x01 };
	static const uint8_t w32[] = { 0x04, 0x03, 0x02, 0x01 };
	static const uint8_t w64[] = { 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01 };

	dsm__put_le16(b, 0x0102u);
	ck_assert_mem_eq(b, w16, 2);
	dsm__put_le32(b, 0x01020304u);
	ck_assert_mem_eq(b, w32, 4);
	dsm__put_le64(b, 0x0102030405060708ull);
	ck_assert_mem_eq(b, w64, 8);
	ck_assert_uint_eq(dsm__get_le16(w16), 0x0102u);
	ck_assert_uint_eq(dsm__get_le32(w32), 0x01020304u);
	ck_assert_uint_eq(dsm__get_le64(w64), 0x0102030405060708ull);
}
END_TEST

/* Every offset of a buffer, so unaligned accesses are exercised (UBSan's
 * alignment check would catch a cast-and-dereference). */
START_TEST(common_le_unaligned_roundtrip)
{
	static const uint64_t vals[] = { 0, 1, 0x80, 0xff, 0x8000, 0xffff, 0x80000000u,
					 0xffffffffu, 0x8000000000000000ull, UINT64_MAX,
					 0x0123456789abcdefull };
	uint8_t buf[24];

	for (size_t off = 0; off < 8; off++) {
		for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
			uint64_t v = vals[i];

			memset(buf, 0x5a, sizeof(buf));
			dsm__put_le16(buf + off, (uint16_t)v);
			ck_assert_uint_eq(dsm__get_le16(buf + off), (uint16_t)v);
			ck_assert_uint_eq(buf[off + 2], 0x5a); /* writes exactly 2 bytes */
			dsm__put_le32(buf + off, (uint32_t)v);
			ck_assert_uint_eq(dsm__get_le32(buf + off), (uint32_t)v);
			ck_assert_uint_eq(buf[off + 4], 0x5a);
			dsm__put_le64(buf + off, v);
			ck_assert_uint_eq(dsm__get_le64(buf + off), v);
			ck_assert_uint_eq(buf[off + 8], 0x5a);
			if (off)
				ck_assert_uint_eq(buf[off - 1], 0x5a);
			for (unsigned k = 0; k < 8; k++) /* byte k holds bits 8k..8k+7 */
				ck_assert_uint_eq(buf[off + k], (uint8_t)(v >> (8 * k)));
		}
	}
}
END_TEST

/* Vectors from the FNV reference (draft-eastlake-fnv, fnv_test.c). */
START_TEST(common_fnv1a_vectors)
{
	static const struct {
		const char *s;
		uint32_t h32;
		uint64_t h64;
	} v[] = {
		{ "", 0x811c9dc5u, 0xcbf29ce484222325ull },
		{ "a", 0xe40c292cu, 0xaf63dc4c8601ec8cull },
		{ "foobar", 0xbf9cf968u, 0x85944171f73967e8ull },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = strlen(v[i].s);

		ck_assert_uint_eq(dsm__fnv1a32(DSM__FNV1A32_INIT, v[i].s, n), v[i].h32);
		ck_assert_uint_eq(dsm__fnv1a32_str(v[i].s), v[i].h32);
		ck_assert_uint_eq(dsm__fnv1a64(DSM__FNV1A64_INIT, v[i].s, n), v[i].h64);
	}
	/* bytes >= 0x80 count as unsigned (a signed char would differ) */
	ck_assert_uint_eq(dsm__fnv1a32_str("\xff"), (0x811c9dc5u ^ 0xffu) * 16777619u);
	ck_assert_uint_eq(dsm__fnv1a64(DSM__FNV1A64_INIT, "\xff", 1),
			  (0xcbf29ce484222325ull ^ 0xffu) * 1099511628211ull);
}
END_TEST

/* Hashing in pieces (as the bootstrap's job fingerprint does) equals
 * hashing the concatenation, NUL separators included. */
START_TEST(common_fnv1a_incremental)
{
	static const char whole[] = "/usr/bin/prog\0" "1G\0" "0x200000000000";
	uint64_t h = DSM__FNV1A64_INIT;
	uint32_t g = DSM__FNV1A32_INIT;

	h = dsm__fnv1a64(h, "/usr/bin/prog", 13);
	h = dsm__fnv1a64(h, "\0", 1);
	h = dsm__fnv1a64(h, "1G", 2);
	h = dsm__fnv1a64(h, "\0", 1);
	h = dsm__fnv1a64(h, "0x200000000000", 14);
	ck_assert_uint_eq(h, dsm__fnv1a64(DSM__FNV1A64_INIT, whole, sizeof(whole) - 1));
	g = dsm__fnv1a32(g, whole, 5);
	g = dsm__fnv1a32(g, whole + 5, sizeof(whole) - 1 - 5);
	ck_assert_uint_eq(g, dsm__fnv1a32(DSM__FNV1A32_INIT, whole, sizeof(whole) - 1));
	ck_assert_uint_eq(dsm__fnv1a64(h, NULL, 0), h); /* nothing to add */
}
END_TEST

static Suite *common_suite(void)
{
	Suite *s = suite_create("common");

	DSM_TEST_ADD(s, common_le_layout, 10);
	DSM_TEST_ADD(s, common_le_unaligned_roundtrip, 10);
	DSM_TEST_ADD(s, common_fnv1a_vectors, 10);
	DSM_TEST_ADD(s, common_fnv1a_incremental, 10);
	return s;
}

int main(void)
{
	return dsm_test_run_suite(common_suite());
}
