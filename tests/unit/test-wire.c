/*
 * Unit tests for net/crc32c.c and net/wire.c: CRC32C known vectors and
 * chaining, the SSE4.2 path against the table, the 48-byte header's byte
 * layout (the ABI between nodes), encode/decode round trips and every
 * rejection dsm__wire_decode makes.
 *
 * Buffers handed to the decoder are heap copies of exactly the datagram's
 * size, so ASan or valgrind catch any read past buf + n.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "wire.h"
#include "testutil.h"

#define MAX_PAYLOAD (DSM_WIRE_MAX_DGRAM - DSM_WIRE_HDR_SIZE)

/* Exact-size heap copy, so reading past the end is caught. */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(q);
	if (n)
		memcpy(q, p, n);
	return q;
}

/* Decode a heap copy of exactly n bytes of p. */
static int decode_exact(const uint8_t *p, size_t n, size_t max_payload,
			struct dsm__wire_hdr *h)
{
	uint8_t *q = dup_exact(p, n);
	int r = dsm__wire_decode(q, n, max_payload, h);

	free(q);
	return r;
}

/* Recompute the CRC of a datagram of n bytes (header + payload), so that a
 * test changing one field sees only the error for that field. Independent
 * of wire.c: header bytes 0..43, four zero bytes, then the payload. */
static void fix_crc(uint8_t *buf, size_t n)
{
	static const uint8_t zero[4];
	uint32_t c = dsm__crc32c_sw(0, buf, 44);

	c = dsm__crc32c_sw(c, zero, 4);
	c = dsm__crc32c_sw(c, buf + DSM_WIRE_HDR_SIZE, n - DSM_WIRE_HDR_SIZE);
	dsm__put_le32(buf + 44, c);
}

static struct dsm__wire_hdr sample_hdr(uint8_t type, uint16_t len)
{
	struct dsm__wire_hdr h = {
		.type = type,
		.flags = type == DSM_WIRE_DATA ? DSM_WIRE_F_FIRST : 0,
		.cluster = 0xC0FFEE01u,
		.src = 3,
		.dst = 7,
		.src_inc = 0x1234,
		.dst_inc = 0x5678,
		.seq = type == DSM_WIRE_DATA ? 42 : 0,
		.ack = 40,
		.sack = 0x5ull,
		.wnd = 64,
		.len = len,
	};
	return h;
}

/* A valid datagram with a random payload in a fresh buffer; *n gets its size. */
static uint8_t *make_dgram(const struct dsm__wire_hdr *h, size_t *n)
{
	uint8_t *buf = malloc(DSM_WIRE_HDR_SIZE + (size_t)h->len);

	ck_assert_ptr_nonnull(buf);
	dsm_test_fill_random(buf + DSM_WIRE_HDR_SIZE, h->len);
	*n = dsm__wire_encode(buf, h);
	ck_assert_uint_eq(*n, DSM_WIRE_HDR_SIZE + (size_t)h->len);
	return buf;
}

static void assert_hdr_eq(const struct dsm__wire_hdr *a, const struct dsm__wire_hdr *b)
{
	ck_assert_uint_eq(a->type, b->type);
	ck_assert_uint_eq(a->flags, b->flags);
	ck_assert_uint_eq(a->cluster, b->cluster);
	ck_assert_uint_eq(a->src, b->src);
	ck_assert_uint_eq(a->dst, b->dst);
	ck_assert_uint_eq(a->src_inc, b->src_inc);
	ck_assert_uint_eq(a->dst_inc, b->dst_inc);
	ck_assert_uint_eq(a->seq, b->seq);
	ck_assert_uint_eq(a->ack, b->ack);
	ck_assert_uint_eq(a->sack, b->sack);
	ck_assert_uint_eq(a->wnd, b->wnd);
	ck_assert_uint_eq(a->len, b->len);
}

/* --- CRC32C ------------------------------------------------------------ */

struct vector {
	uint8_t data[32];
	size_t n;
	uint32_t crc;
};

static void vectors(struct vector v[4])
{
	memcpy(v[0].data, "123456789", 9);
	v[0].n = 9;
	v[0].crc = 0xE3069283u;
	memset(v[1].data, 0x00, 32);
	v[1].n = 32;
	v[1].crc = 0x8A9136AAu;
	memset(v[2].data, 0xFF, 32);
	v[2].n = 32;
	v[2].crc = 0x62A8AB43u;
	for (int i = 0; i < 32; i++)
		v[3].data[i] = (uint8_t)i;
	v[3].n = 32;
	v[3].crc = 0x46DD794Eu;
}

START_TEST(wire_crc_vectors)
{
	struct vector v[4];
	bool hw = dsm__crc32c_hw_available();

	vectors(v);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(dsm__crc32c(0, v[i].data, v[i].n), v[i].crc);
		ck_assert_uint_eq(dsm__crc32c_sw(0, v[i].data, v[i].n), v[i].crc);
		if (hw)
			ck_assert_uint_eq(dsm__crc32c_hw(0, v[i].data, v[i].n), v[i].crc);
		/* Chaining: crc(crc(0, a), b) == crc(0, a || b) at every split. */
		for (size_t k = 0; k <= v[i].n; k++) {
			uint32_t c = dsm__crc32c(0, v[i].data, k);

			ck_assert_uint_eq(dsm__crc32c(c, v[i].data + k, v[i].n - k), v[i].crc);
			c = dsm__crc32c_sw(0, v[i].data, k);
			ck_assert_uint_eq(dsm__crc32c_sw(c, v[i].data + k, v[i].n - k), v[i].crc);
		}
	}
	/* The empty buffer leaves the CRC unchanged. */
	ck_assert_uint_eq(dsm__crc32c(0, "", 0), 0);
	ck_assert_uint_eq(dsm__crc32c(0xE3069283u, "", 0), 0xE3069283u);
}
END_TEST

START_TEST(wire_crc_hw_matches_sw)
{
	enum { MAXN = 5000 };
	uint8_t *buf = malloc(MAXN + 8);
	bool hw = dsm__crc32c_hw_available();

	ck_assert_ptr_nonnull(buf);
	dsm_test_fill_random(buf, MAXN + 8);
	if (!hw)
		printf("wire_crc_hw_matches_sw: no SSE4.2 on this CPU, "
		       "hardware path skipped\n");
	/* Every length up to 300, then a stride to 5000; every start offset
	 * mod 8, with a random running CRC. */
	for (size_t n = 0; n <= MAXN; n += n < 300 ? 1 : 37) {
		for (size_t off = 0; off < 8; off++) {
			uint32_t seed = (uint32_t)dsm_test_rng();
			uint32_t sw = dsm__crc32c_sw(seed, buf + off, n);

			ck_assert_uint_eq(dsm__crc32c(seed, buf + off, n), sw);
			if (hw)
				ck_assert_uint_eq(dsm__crc32c_hw(seed, buf + off, n), sw);
		}
	}
	/* The largest length exactly. */
	ck_assert_uint_eq(dsm__crc32c(0, buf + 3, MAXN), dsm__crc32c_sw(0, buf + 3, MAXN));
	free(buf);
}
END_TEST

static void *crc_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000; i++)
		if (dsm__crc32c(0, "123456789", 9) != 0xE3069283u)
			return (void *)1;
	return NULL;
}

/* Threads racing on the first call (dispatch and table set-up) all get
 * the right answer; run under --setup tsan to check for races too. */
START_TEST(wire_crc_first_call_threads)
{
	pthread_t t[8];

	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, crc_thread, NULL), 0);
	for (int i = 0; i < 8; i++) {
		void *r;

		ck_assert_int_eq(pthread_join(t[i], &r), 0);
		ck_assert_ptr_null(r);
	}
}
END_TEST

/* --- layout ------------------------------------------------------------ */

START_TEST(wire_le_layout)
{
	struct dsm__wire_hdr h = {
		.type = DSM_WIRE_DATA,
		.flags = DSM_WIRE_F_FIRST | DSM_WIRE_F_LAST, /* 0x0003 */
		.cluster = 0x11223344u,
		.src = 0x5566,
		.dst = 0x7788,
		.src_inc = 0x99AABBCCu,
		.dst_inc = 0xDDEEFF01u,
		.seq = 0x02030405u,
		.ack = 0x06070809u,
		.sack = 0x0A0B0C0D0E0F1011ull,
		.wnd = 0x1213,
		.len = 4,
	};
	static const uint8_t want[44] = {
		0x44, 0x53, 0x4D, 0x31,                         /*  0 magic "DSM1" */
		0x01,                                           /*  4 version */
		0x01,                                           /*  5 type DATA */
		0x03, 0x00,                                     /*  6 flags */
		0x44, 0x33, 0x22, 0x11,                         /*  8 cluster */
		0x66, 0x55,                                     /* 12 src */
		0x88, 0x77,                                     /* 14 dst */
		0xCC, 0xBB, 0xAA, 0x99,                         /* 16 src_inc */
		0x01, 0xFF, 0xEE, 0xDD,                         /* 20 dst_inc */
		0x05, 0x04, 0x03, 0x02,                         /* 24 seq */
		0x09, 0x08, 0x07, 0x06,                         /* 28 ack */
		0x11, 0x10, 0x0F, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A, /* 32 sack */
		0x13, 0x12,                                     /* 40 wnd */
		0x04, 0x00,                                     /* 42 len */
	};
	uint8_t buf[DSM_WIRE_HDR_SIZE + 4];
	uint8_t zhdr[DSM_WIRE_HDR_SIZE];
	uint32_t crc;

	ck_assert_uint_eq(DSM_WIRE_HDR_SIZE, 48);
	memset(buf, 0xA5, sizeof(buf));
	memcpy(buf + DSM_WIRE_HDR_SIZE, "abcd", 4);
	ck_assert_uint_eq(dsm__wire_encode(buf, &h), sizeof(buf));
	for (size_t i = 0; i < sizeof(want); i++)
		ck_assert_msg(buf[i] == want[i], "byte %zu: 0x%02x, want 0x%02x",
			      i, buf[i], want[i]);
	/* 44: CRC32C of the header with a zero crc field, then the payload,
	 * stored little-endian. */
	memcpy(zhdr, buf, DSM_WIRE_HDR_SIZE);
	memset(zhdr + 44, 0, 4);
	crc = dsm__crc32c_sw(dsm__crc32c_sw(0, zhdr, sizeof(zhdr)), "abcd", 4);
	ck_assert_uint_eq(buf[44], crc & 0xff);
	ck_assert_uint_eq(buf[45], (crc >> 8) & 0xff);
	ck_assert_uint_eq(buf[46], (crc >> 16) & 0xff);
	ck_assert_uint_eq(buf[47], crc >> 24);
	/* The payload is left alone. */
	ck_assert_mem_eq(buf + DSM_WIRE_HDR_SIZE, "abcd", 4);
}
END_TEST

/* --- round trip -------------------------------------------------------- */

static void roundtrip(const struct dsm__wire_hdr *h, size_t align)
{
	size_t cap = DSM_WIRE_HDR_SIZE + (size_t)h->len;
	uint8_t *mem = malloc(cap + align);
	uint8_t *buf = mem + align;
	uint8_t *payload = malloc(h->len ? h->len : 1);
	struct dsm__wire_hdr got;
	size_t n;

	ck_assert_ptr_nonnull(mem);
	ck_assert_ptr_nonnull(payload);
	dsm_test_fill_random(payload, h->len);
	memcpy(buf + DSM_WIRE_HDR_SIZE, payload, h->len);
	n = dsm__wire_encode(buf, h);
	ck_assert_uint_eq(n, cap);
	memset(&got, 0xA5, sizeof(got));
	ck_assert_int_eq(dsm__wire_decode(buf, n, h->len, &got), 0);
	assert_hdr_eq(&got, h);
	ck_assert_int_eq(dsm__wire_decode(buf, n, MAX_PAYLOAD, &got), 0);
	assert_hdr_eq(&got, h);
	ck_assert_mem_eq(buf + DSM_WIRE_HDR_SIZE, payload, h->len);
	free(payload);
	free(mem);
}

START_TEST(wire_roundtrip)
{
	static const uint8_t types[] = { DSM_WIRE_DATA, DSM_WIRE_ACK, DSM_WIRE_HELLO,
					 DSM_WIRE_REJECT };
	static const uint16_t lens[] = { 0, 1, 7, 1424, MAX_PAYLOAD };

	for (size_t t = 0; t < sizeof(types); t++) {
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			bool data = types[t] == DSM_WIRE_DATA;
			struct dsm__wire_hdr lo = {
				.type = types[t],
				.len = lens[l],
			};
			struct dsm__wire_hdr hi = {
				.type = types[t],
				.flags = data ? (DSM_WIRE_F_FIRST | DSM_WIRE_F_LAST | DSM_WIRE_F_PROBE) : DSM_WIRE_F_PROBE,
				.cluster = UINT32_MAX,
				.src = UINT16_MAX,
				.dst = UINT16_MAX,
				.src_inc = UINT32_MAX,
				.dst_inc = UINT32_MAX,
				.seq = UINT32_MAX,
				.ack = UINT32_MAX,
				.sack = UINT64_MAX,
				.wnd = UINT16_MAX,
				.len = lens[l],
			};
			struct dsm__wire_hdr mix = hi;

			mix.cluster = 0x80000001u;
			mix.src = 0x8001;
			mix.sack = 0x8000000000000001ull;
			mix.seq = 0x7FFFFFFFu;
			for (size_t a = 0; a < 3; a++) {
				roundtrip(&lo, a);
				roundtrip(&hi, a);
				roundtrip(&mix, a);
			}
		}
	}
}
END_TEST

/* --- rejections -------------------------------------------------------- */

START_TEST(wire_reject_truncated)
{
	static const uint16_t lens[] = { 0, 1, 100 };

	for (size_t l = 0; l < 3; l++) {
		struct dsm__wire_hdr h = sample_hdr(DSM_WIRE_DATA, lens[l]), got;
		size_t n;
		uint8_t *buf = make_dgram(&h, &n);

		for (size_t k = 0; k < n; k++)
			ck_assert_msg(decode_exact(buf, k, MAX_PAYLOAD, &got) ==
					      DSM_WIRE_ETRUNC,
				      "len %u, prefix %zu", lens[l], k);
		ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got), 0);
		free(buf);
	}
	ck_assert_int_eq(dsm__wire_decode(NULL, 0, MAX_PAYLOAD, &(struct dsm__wire_hdr){ 0 }),
			 DSM_WIRE_ETRUNC);
}
END_TEST

START_TEST(wire_reject_magic)
{
	struct dsm__wire_hdr h = sample_hdr(DSM_WIRE_ACK, 8), got;
	size_t n;
	uint8_t *buf = make_dgram(&h, &n);

	/* Every single-bit change of the magic, CRC made valid again. */
	for (int bit = 0; bit < 32; bit++) {
		uint8_t *q = dup_exact(buf, n);

		q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		fix_crc(q, n);
		ck_assert_int_eq(dsm__wire_decode(q, n, MAX_PAYLOAD, &got), DSM_WIRE_EMAGIC);
		free(q);
	}
	/* Byte-swapped magic (a big-endian encoder). */
	dsm__put_le32(buf, __builtin_bswap32(DSM_WIRE_MAGIC));
	fix_crc(buf, n);
	ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got), DSM_WIRE_EMAGIC);
	free(buf);
}
END_TEST

START_TEST(wire_reject_version)
{
	struct dsm__wire_hdr h = sample_hdr(DSM_WIRE_DATA, 8), got;
	size_t n;
	uint8_t *buf = make_dgram(&h, &n);

	for (int v = 0; v < 256; v++) {
		buf[4] = (uint8_t)v;
		fix_crc(buf, n);
		ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got),
				 v == DSM_WIRE_VERSION ? 0 : DSM_WIRE_EVERSION);
	}
	free(buf);
}
END_TEST

START_TEST(wire_reject_type)
{
	struct dsm__wire_hdr h = sample_hdr(DSM_WIRE_ACK, 8), got;
	size_t n;
	uint8_t *buf = make_dgram(&h, &n);

	/* Flags 0 are valid on every type, so only the type decides. */
	for (int t = 0; t < 256; t++) {
		bool known = t >= DSM_WIRE_DATA && t <= DSM_WIRE_REJECT;

		buf[5] = (uint8_t)t;
		fix_crc(buf, n);
		ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got),
				 known ? 0 : DSM_WIRE_ETYPE);
		if (known)
			ck_assert_uint_eq(got.type, t);
	}
	free(buf);
}
END_TEST

START_TEST(wire_reject_flags)
{
	static const uint8_t types[] = { DSM_WIRE_DATA, DSM_WIRE_ACK, DSM_WIRE_HELLO,
					 DSM_WIRE_REJECT };

	for (size_t t = 0; t < sizeof(types); t++) {
		struct dsm__wire_hdr h = sample_hdr(types[t], 4), got;
		size_t n;
		uint8_t *buf = make_dgram(&h, &n);
		bool data = types[t] == DSM_WIRE_DATA;

		/* Every combination of the defined flags. */
		for (unsigned f = 0; f <= DSM_WIRE_F_ALL; f++) {
			bool ok = (data || !(f & (DSM_WIRE_F_FIRST | DSM_WIRE_F_LAST))) &&
				  (types[t] == DSM_WIRE_HELLO || !(f & DSM_WIRE_F_BYE));

			dsm__put_le16(buf + 6, (uint16_t)f);
			fix_crc(buf, n);
			ck_assert_msg(decode_exact(buf, n, MAX_PAYLOAD, &got) ==
					      (ok ? 0 : DSM_WIRE_ETYPE),
				      "type %u flags 0x%x", types[t], f);
			if (ok)
				ck_assert_uint_eq(got.flags, f);
		}
		/* Every undefined bit, alone and with valid ones. */
		for (int bit = 4; bit < 16; bit++) {
			dsm__put_le16(buf + 6, (uint16_t)(1u << bit));
			fix_crc(buf, n);
			ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got), DSM_WIRE_ETYPE);
			dsm__put_le16(buf + 6, (uint16_t)(1u << bit | DSM_WIRE_F_PROBE));
			fix_crc(buf, n);
			ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got), DSM_WIRE_ETYPE);
		}
		free(buf);
	}
}
END_TEST

START_TEST(wire_reject_len)
{
	struct dsm__wire_hdr h = sample_hdr(DSM_WIRE_DATA, 100), got;
	size_t n;
	uint8_t *buf = make_dgram(&h, &n);
	uint8_t *big;

	/* len field larger than what arrived: truncated. */
	for (unsigned l = 101; l < 110; l++) {
		dsm__put_le16(buf + 42, (uint16_t)l);
		fix_crc(buf, n);
		ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got), DSM_WIRE_ETRUNC);
	}
	dsm__put_le16(buf + 42, UINT16_MAX);
	fix_crc(buf, n);
	ck_assert_int_eq(decode_exact(buf, n, UINT16_MAX, &got), DSM_WIRE_ETRUNC);
	/* len field smaller than what arrived: trailing bytes. */
	for (unsigned l = 0; l < 100; l++) {
		dsm__put_le16(buf + 42, (uint16_t)l);
		fix_crc(buf, n);
		ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got), DSM_WIRE_ELEN);
	}
	/* Right len: max_payload decides. */
	dsm__put_le16(buf + 42, 100);
	fix_crc(buf, n);
	ck_assert_int_eq(decode_exact(buf, n, 100, &got), 0);
	ck_assert_int_eq(decode_exact(buf, n, 99, &got), DSM_WIRE_ELEN);
	ck_assert_int_eq(decode_exact(buf, n, 0, &got), DSM_WIRE_ELEN);
	free(buf);

	/* A valid datagram with trailing garbage. */
	h = sample_hdr(DSM_WIRE_ACK, 0);
	buf = make_dgram(&h, &n);
	big = calloc(1, n + 3);
	ck_assert_ptr_nonnull(big);
	memcpy(big, buf, n);
	ck_assert_int_eq(dsm__wire_decode(big, n + 3, MAX_PAYLOAD, &got), DSM_WIRE_ELEN);
	ck_assert_int_eq(dsm__wire_decode(big, n, MAX_PAYLOAD, &got), 0);
	free(big);
	free(buf);

	/* The largest payload, against max_payload on either side of it. */
	h = sample_hdr(DSM_WIRE_DATA, MAX_PAYLOAD);
	buf = make_dgram(&h, &n);
	ck_assert_uint_eq(n, DSM_WIRE_MAX_DGRAM);
	ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got), 0);
	ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD - 1, &got), DSM_WIRE_ELEN);
	ck_assert_int_eq(decode_exact(buf, n, 1424, &got), DSM_WIRE_ELEN);
	free(buf);
}
END_TEST

START_TEST(wire_reject_crc)
{
	static const uint16_t lens[] = { 0, 37 };

	for (size_t l = 0; l < 2; l++) {
		struct dsm__wire_hdr h = sample_hdr(DSM_WIRE_DATA, lens[l]), got;
		size_t n;
		uint8_t *buf = make_dgram(&h, &n);

		for (size_t bit = 0; bit < n * 8; bit++) {
			size_t byte = bit / 8;
			int r;

			buf[byte] ^= (uint8_t)(1u << (bit % 8));
			r = decode_exact(buf, n, MAX_PAYLOAD, &got);
			buf[byte] ^= (uint8_t)(1u << (bit % 8));
			ck_assert_msg(r < 0, "flip of bit %zu accepted", bit);
			/* Past magic, version, type and flags, and outside len,
			 * only the CRC can catch the flip. */
			if (byte >= 8 && byte != 42 && byte != 43)
				ck_assert_msg(r == DSM_WIRE_ECRC, "bit %zu: %s", bit,
					      dsm__wire_strerror(r));
		}
		ck_assert_int_eq(decode_exact(buf, n, MAX_PAYLOAD, &got), 0);
		free(buf);
	}
}
END_TEST

START_TEST(wire_strerror_names)
{
	static const int errs[] = { DSM_WIRE_ETRUNC, DSM_WIRE_EMAGIC, DSM_WIRE_EVERSION,
				    DSM_WIRE_ETYPE, DSM_WIRE_ELEN, DSM_WIRE_ECRC };
	const char *unknown = dsm__wire_strerror(-1000);

	ck_assert_ptr_nonnull(unknown);
	ck_assert_ptr_nonnull(dsm__wire_strerror(0));
	for (size_t i = 0; i < 6; i++) {
		const char *s = dsm__wire_strerror(errs[i]);

		ck_assert_ptr_nonnull(s);
		ck_assert_str_ne(s, unknown);
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(s, dsm__wire_strerror(errs[j]));
	}
}
END_TEST

static Suite *wire_suite(void)
{
	Suite *s = suite_create("wire");
	DSM_TEST_ADD(s, wire_crc_vectors, 60);
	DSM_TEST_ADD(s, wire_crc_hw_matches_sw, 60);
	DSM_TEST_ADD(s, wire_crc_first_call_threads, 60);
	DSM_TEST_ADD(s, wire_le_layout, 60);
	DSM_TEST_ADD(s, wire_roundtrip, 60);
	DSM_TEST_ADD(s, wire_reject_truncated, 60);
	DSM_TEST_ADD(s, wire_reject_magic, 60);
	DSM_TEST_ADD(s, wire_reject_version, 60);
	DSM_TEST_ADD(s, wire_reject_type, 60);
	DSM_TEST_ADD(s, wire_reject_flags, 60);
	DSM_TEST_ADD(s, wire_reject_len, 60);
	DSM_TEST_ADD(s, wire_reject_crc, 60);
	DSM_TEST_ADD(s, wire_strerror_names, 60);
	return s;
}

int main(void)
{
	return dsm_test_run_suite(wire_suite());
}
