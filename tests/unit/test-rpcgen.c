/*
 * Tests of the code net/rpcgen.py generates from net/net.rpc: codec round
 * trips of every generated type, the pinned byte layout, rejection of
 * truncated, oversized and over-long input, encoder limits, the procedure
 * table and invoke(). The record cases (rpcgen_record_*) use the records
 * of tests/unit/rpcgen-test.rpc: round trips, sequences walked with
 * decode_next (inside a call's bytes field, as the release's diffs batch),
 * truncation, lengths over MAX, trailing bytes. The generator's own error
 * handling (bad interface files) is tested by
 * `python3 net/rpcgen.py --self-test`.
 */
#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "net_rpc.h"
#include "rtest_rpc.h"
#include "wire.h"
#include "testutil.h"

/* The stubs have the documented signatures (checked at compile time). */
#define HAS_TYPE(f, T) _Generic(&(f), T: 1, default: 0)
_Static_assert(HAS_TYPE(dsm_rpc_echo,
			int (*)(struct dsm__rpc *, unsigned, const struct dsm_rpc_echo_req *,
				struct dsm_rpc_echo_rep *, struct dsm__rpc_reply *, int)),
	       "echo stub keeps the reply (bytes in rep)");
_Static_assert(HAS_TYPE(dsm_rpc_sum,
			int (*)(struct dsm__rpc *, unsigned, const struct dsm_rpc_sum_req *,
				struct dsm_rpc_sum_rep *, int)),
	       "sum stub has no keep (no bytes in rep)");
_Static_assert(HAS_TYPE(dsm_rpc_echo_worker_async,
			int (*)(struct dsm__rpc *, unsigned, const struct dsm_rpc_echo_worker_req *,
				dsm__rpc_done_fn, void *)),
	       "async stub");
_Static_assert(HAS_TYPE(dsm_rpc_note_send,
			int (*)(struct dsm__rpc *, unsigned, const struct dsm_rpc_note_msg *)),
	       "send stub");
_Static_assert(HAS_TYPE(dsm_rpc_sum_serve,
			int (*)(struct dsm__rpc *, dsm_rpc_sum_handler, void *)),
	       "serve stub");
_Static_assert(HAS_TYPE(dsm_rpc_echo_reply,
			int (*)(struct dsm__rpc_token *, int, const struct dsm_rpc_echo_rep *)),
	       "deferred reply stub");
_Static_assert(DSM_RPC_ECHO_DATA_MAX == 16777216u && DSM_RPC_SUM_VALS_MAX == 64u &&
		       DSM_RPC_NOTE_DATA_MAX == 16777216u &&
		       DSM_RPC_ECHO_WORKER_DATA_MAX == 16777216u,
	       "MAX macros");
_Static_assert(DSM_RPC_ECHO_ID == 1 && DSM_RPC_ECHO_WORKER_ID == 2 && DSM_RPC_NOTE_ID == 3 &&
		       DSM_RPC_SUM_ID == 4 && DSM_RPC_NET_NPROCS == 4,
	       "ids");

/* Records: the generated API and constants. */
_Static_assert(HAS_TYPE(dsm_rpc_rt_diff_item_decode_next,
			int (*)(struct dsm_rpc_rt_diff_item *, const uint8_t **, const uint8_t *)),
	       "decode_next");
_Static_assert(HAS_TYPE(dsm_rpc_rt_all_decode,
			int (*)(struct dsm_rpc_rt_all *, const uint8_t *, size_t)),
	       "record decode");
_Static_assert(HAS_TYPE(dsm_rpc_rt_all_encode,
			int (*)(const struct dsm_rpc_rt_all *, uint8_t *, size_t)),
	       "record encode");
_Static_assert(HAS_TYPE(dsm_rpc_rt_all_size, size_t (*)(const struct dsm_rpc_rt_all *)),
	       "record size");
_Static_assert(DSM_RPC_RT_DIFF_ITEM_DIFF_MAX == DSM_DIFF_BOUND(DSM_DIFF_MAX_PAGE),
	       "a diff item holds the longest diff of the largest page");
_Static_assert(DSM_RPC_RT_DIFF_ITEM_SIZE_MIN == 12 &&
		       DSM_RPC_RT_DIFF_ITEM_SIZE_MAX == 12 + DSM_RPC_RT_DIFF_ITEM_DIFF_MAX,
	       "diff item sizes");
_Static_assert(DSM_RPC_RT_ALL_SIZE_MIN == 1 + 2 + 4 + 8 + 4 + 8 + 4 + 4 + 3 + 4 &&
		       DSM_RPC_RT_ALL_SIZE_MAX == DSM_RPC_RT_ALL_SIZE_MIN + 16 + 2 * 4 + 8 * 2,
	       "rt_all sizes");
_Static_assert(DSM_RPC_RT_ALL_G_MAX == 16u && DSM_RPC_RT_ALL_H_MAX == 4u &&
		       DSM_RPC_RT_ALL_L_MAX == 2u,
	       "record MAX macros");
_Static_assert(DSM_RPC_RT_BYTE_SIZE_MIN == 1 && DSM_RPC_RT_BYTE_SIZE_MAX == 1, "one byte");
_Static_assert(DSM_RPC_RTEST_NPROCS == 1 && DSM_RPC_RT_BATCH_ID == 1,
	       "records are not procedures");

static const uint8_t text[] = "the quick brown fox";

/* One encodable message and where its codecs live in the proc table. */
struct sample {
	const char *what;
	const struct dsm__rpc_proc *proc;
	int rep; /* 0: req_* slots, 1: rep_* slots */
	const void *m;
};

static struct dsm_rpc_echo_req echo_req[3];
static struct dsm_rpc_echo_rep echo_rep[2];
static struct dsm_rpc_echo_worker_req worker_req[2];
static struct dsm_rpc_echo_worker_rep worker_rep[2];
static struct dsm_rpc_note_msg note[2];
static struct dsm_rpc_sum_req sum_req[3];
static struct dsm_rpc_sum_rep sum_rep[3];
static struct sample samples[32];
static size_t nsamples;

static void add(const char *what, const struct dsm__rpc_proc *p, int rep, const void *m)
{
	ck_assert_uint_lt(nsamples, sizeof(samples) / sizeof(samples[0]));
	samples[nsamples++] = (struct sample){ what, p, rep, m };
}

/* Every generated type, with empty, full and extreme contents. */
static void make_samples(void)
{
	nsamples = 0;
	echo_req[0] = (struct dsm_rpc_echo_req){ 0 };
	echo_req[1] = (struct dsm_rpc_echo_req){ UINT64_MAX, UINT32_MAX, { text, sizeof(text) } };
	echo_req[2] = (struct dsm_rpc_echo_req){ 1, 2, { text, 0 } };
	echo_rep[0] = (struct dsm_rpc_echo_rep){ 0 };
	echo_rep[1] = (struct dsm_rpc_echo_rep){ 0x8000000000000000u, 0x80000000u, { text, 1 } };
	worker_req[0] = (struct dsm_rpc_echo_worker_req){ 0 };
	worker_req[1] = (struct dsm_rpc_echo_worker_req){ 42, 7, { text, 5 } };
	worker_rep[0] = (struct dsm_rpc_echo_worker_rep){ 0 };
	worker_rep[1] = (struct dsm_rpc_echo_worker_rep){ UINT64_MAX - 1, 1, { text, 19 } };
	note[0] = (struct dsm_rpc_note_msg){ 0 };
	note[1] = (struct dsm_rpc_note_msg){ UINT32_MAX, UINT64_MAX, { text, 3 } };
	memset(sum_req, 0, sizeof(sum_req));
	sum_req[1].vals_len = 1;
	sum_req[1].vals[0] = -1;
	sum_req[2].vals_len = DSM_RPC_SUM_VALS_MAX;
	for (uint32_t i = 0; i < DSM_RPC_SUM_VALS_MAX; i++)
		sum_req[2].vals[i] = i % 4 == 0 ? INT64_MIN
				   : i % 4 == 1 ? INT64_MAX
				   : i % 4 == 2 ? -(int64_t)i : (int64_t)i * 1000003;
	sum_rep[0] = (struct dsm_rpc_sum_rep){ 0, 0 };
	sum_rep[1] = (struct dsm_rpc_sum_rep){ INT64_MIN, UINT32_MAX };
	sum_rep[2] = (struct dsm_rpc_sum_rep){ INT64_MAX, 1 };

	for (int i = 0; i < 3; i++)
		add("echo req", &dsm_rpc_echo_proc, 0, &echo_req[i]);
	for (int i = 0; i < 2; i++) {
		add("echo rep", &dsm_rpc_echo_proc, 1, &echo_rep[i]);
		add("echo_worker req", &dsm_rpc_echo_worker_proc, 0, &worker_req[i]);
		add("echo_worker rep", &dsm_rpc_echo_worker_proc, 1, &worker_rep[i]);
		add("note msg", &dsm_rpc_note_proc, 0, &note[i]);
	}
	for (int i = 0; i < 3; i++) {
		add("sum req", &dsm_rpc_sum_proc, 0, &sum_req[i]);
		add("sum rep", &dsm_rpc_sum_proc, 1, &sum_rep[i]);
	}
	add("note rep (empty)", &dsm_rpc_note_proc, 1, NULL);
}

static size_t s_size(const struct sample *s)
{
	return s->rep ? s->proc->rep_size(s->m) : s->proc->req_size(s->m);
}

static int s_encode(const struct sample *s, const void *m, uint8_t *buf, size_t cap)
{
	return s->rep ? s->proc->rep_encode(m, buf, cap) : s->proc->req_encode(m, buf, cap);
}

static int s_decode(const struct sample *s, void *m, const uint8_t *buf, size_t len)
{
	return s->rep ? s->proc->rep_decode(m, buf, len) : s->proc->req_decode(m, buf, len);
}

/* Encode a sample into a fresh buffer of exactly its size (+ extra). */
static uint8_t *encode_sample(const struct sample *s, size_t *len, size_t extra)
{
	size_t n = s_size(s);
	uint8_t *buf = malloc(n + extra + 1);

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(s_encode(s, s->m, buf, n), (int)n);
	*len = n;
	return buf;
}

/* A struct big enough for any proc's req or rep, suitably aligned. */
union any {
	struct dsm_rpc_echo_req a;
	struct dsm_rpc_echo_rep b;
	struct dsm_rpc_echo_worker_req c;
	struct dsm_rpc_echo_worker_rep d;
	struct dsm_rpc_note_msg e;
	struct dsm_rpc_sum_req f;
	struct dsm_rpc_sum_rep g;
};

/* ---------------------------------------------------------------- */

START_TEST(rpcgen_roundtrip_all_types)
{
	make_samples();
	for (size_t i = 0; i < nsamples; i++) {
		const struct sample *s = &samples[i];
		union any out;
		size_t n;
		uint8_t *buf = encode_sample(s, &n, 0);
		uint8_t *again = malloc(n + 1);

		memset(&out, 0xa5, sizeof(out));
		ck_assert_msg(s_decode(s, &out, buf, n) == 0, "%s #%zu", s->what, i);
		ck_assert_uint_eq(s_size(&(struct sample){ s->what, s->proc, s->rep, &out }), n);
		ck_assert_int_eq(s_encode(s, &out, again, n), (int)n);
		ck_assert_msg(memcmp(buf, again, n) == 0, "%s #%zu re-encodes differently", s->what, i);
		free(again);
		free(buf);
	}
}
END_TEST

START_TEST(rpcgen_roundtrip_fields)
{
	uint8_t buf[1024];
	struct dsm_rpc_echo_req er;
	struct dsm_rpc_note_msg nm;
	struct dsm_rpc_sum_req sr;
	struct dsm_rpc_sum_rep sp;
	int n;

	make_samples();
	n = dsm_rpc_echo_req_encode(&echo_req[1], buf, sizeof(buf));
	ck_assert_int_eq(n, 16 + (int)sizeof(text));
	ck_assert_int_eq(dsm_rpc_echo_req_decode(&er, buf, (size_t)n), 0);
	ck_assert_uint_eq(er.stamp, UINT64_MAX);
	ck_assert_uint_eq(er.seq, UINT32_MAX);
	ck_assert_uint_eq(er.data.len, sizeof(text));
	ck_assert_ptr_eq(er.data.ptr, buf + 16); /* no copy */
	ck_assert_mem_eq(er.data.ptr, text, sizeof(text));

	/* empty bytes, from a NULL pointer */
	n = dsm_rpc_echo_req_encode(&echo_req[0], buf, sizeof(buf));
	ck_assert_int_eq(n, 16);
	er.data.len = 99;
	ck_assert_int_eq(dsm_rpc_echo_req_decode(&er, buf, (size_t)n), 0);
	ck_assert_uint_eq(er.data.len, 0);
	ck_assert_uint_eq(er.stamp, 0);

	n = dsm_rpc_note_msg_encode(&note[1], buf, sizeof(buf));
	ck_assert_int_eq(n, 19);
	ck_assert_int_eq(dsm_rpc_note_msg_decode(&nm, buf, (size_t)n), 0);
	ck_assert_uint_eq(nm.from, UINT32_MAX);
	ck_assert_uint_eq(nm.seq, UINT64_MAX);
	ck_assert_uint_eq(nm.data.len, 3);
	ck_assert_mem_eq(nm.data.ptr, "the", 3);

	/* max-length array with extreme signed values */
	n = dsm_rpc_sum_req_encode(&sum_req[2], buf, sizeof(buf));
	ck_assert_int_eq(n, 4 + 8 * DSM_RPC_SUM_VALS_MAX);
	memset(&sr, 0, sizeof(sr));
	ck_assert_int_eq(dsm_rpc_sum_req_decode(&sr, buf, (size_t)n), 0);
	ck_assert_uint_eq(sr.vals_len, DSM_RPC_SUM_VALS_MAX);
	for (uint32_t i = 0; i < DSM_RPC_SUM_VALS_MAX; i++)
		ck_assert_int_eq(sr.vals[i], sum_req[2].vals[i]);
	ck_assert_int_eq(sr.vals[0], INT64_MIN);
	ck_assert_int_eq(sr.vals[1], INT64_MAX);
	ck_assert_int_eq(sr.vals[2], -2);

	n = dsm_rpc_sum_rep_encode(&sum_rep[1], buf, sizeof(buf));
	ck_assert_int_eq(n, 12);
	ck_assert_int_eq(dsm_rpc_sum_rep_decode(&sp, buf, (size_t)n), 0);
	ck_assert_int_eq(sp.total, INT64_MIN);
	ck_assert_uint_eq(sp.count, UINT32_MAX);
	sp.total = -1;
	n = dsm_rpc_sum_rep_encode(&sp, buf, sizeof(buf));
	ck_assert_int_eq(dsm_rpc_sum_rep_decode(&sp, buf, (size_t)n), 0);
	ck_assert_int_eq(sp.total, -1);
}
END_TEST

START_TEST(rpcgen_roundtrip_1mib)
{
	const size_t big = 1u << 20;
	uint8_t *data = malloc(big), *buf = malloc(big + 16);
	struct dsm_rpc_echo_worker_rep in = { 7, 8, { data, (uint32_t)big } }, out;

	ck_assert_ptr_nonnull(data);
	ck_assert_ptr_nonnull(buf);
	for (size_t i = 0; i < big; i++)
		data[i] = (uint8_t)(i * 7 + (i >> 11));
	ck_assert_uint_eq(dsm_rpc_echo_worker_rep_size(&in), big + 16);
	ck_assert_int_eq(dsm_rpc_echo_worker_rep_encode(&in, buf, big + 16), (int)(big + 16));
	ck_assert_int_eq(dsm_rpc_echo_worker_rep_decode(&out, buf, big + 16), 0);
	ck_assert_uint_eq(out.stamp, 7);
	ck_assert_uint_eq(out.seq, 8);
	ck_assert_uint_eq(out.data.len, big);
	ck_assert(memcmp(out.data.ptr, data, big) == 0);
	ck_assert_int_eq(dsm_rpc_echo_worker_rep_decode(&out, buf, big + 15), DSM_EPROTO);
	ck_assert_int_eq(dsm_rpc_echo_worker_rep_encode(&in, buf, big + 15), DSM_EMSGSIZE);
	free(buf);
	free(data);
}
END_TEST

/* Pins the body encoding: any change here is a wire-format change. */
START_TEST(rpcgen_layout)
{
	uint8_t buf[64];
	struct dsm_rpc_echo_req er = { 0x0102030405060708u, 0x0a0b0c0du, { (const uint8_t *)"xyz", 3 } };
	static const uint8_t er_bytes[] = {
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* stamp */
		0x0d, 0x0c, 0x0b, 0x0a,                         /* seq */
		0x03, 0x00, 0x00, 0x00, 'x', 'y', 'z',          /* data */
	};
	struct dsm_rpc_note_msg nm = { 0x11223344u, 0x8000000000000001u, { NULL, 0 } };
	static const uint8_t nm_bytes[] = {
		0x44, 0x33, 0x22, 0x11,                         /* from */
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, /* seq */
		0x00, 0x00, 0x00, 0x00,                         /* data: empty */
	};
	struct dsm_rpc_sum_req sr = { 3, { 1, -2, INT64_MIN } };
	static const uint8_t sr_bytes[] = {
		0x03, 0x00, 0x00, 0x00,                         /* count */
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80,
	};
	struct dsm_rpc_echo_rep ep = { er.stamp, er.seq, er.data };
	struct dsm_rpc_sum_rep sp = { -3, 7 };
	static const uint8_t sp_bytes[] = {
		0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* total */
		0x07, 0x00, 0x00, 0x00,                         /* count */
	};

	ck_assert_int_eq(dsm_rpc_echo_req_encode(&er, buf, sizeof(buf)), (int)sizeof(er_bytes));
	ck_assert_mem_eq(buf, er_bytes, sizeof(er_bytes));
	ck_assert_int_eq(dsm_rpc_echo_rep_encode(&ep, buf, sizeof(buf)), (int)sizeof(er_bytes));
	ck_assert_mem_eq(buf, er_bytes, sizeof(er_bytes));
	ck_assert_int_eq(dsm_rpc_note_msg_encode(&nm, buf, sizeof(buf)), (int)sizeof(nm_bytes));
	ck_assert_mem_eq(buf, nm_bytes, sizeof(nm_bytes));
	ck_assert_int_eq(dsm_rpc_sum_req_encode(&sr, buf, sizeof(buf)), (int)sizeof(sr_bytes));
	ck_assert_mem_eq(buf, sr_bytes, sizeof(sr_bytes));
	ck_assert_int_eq(dsm_rpc_sum_rep_encode(&sp, buf, sizeof(buf)), (int)sizeof(sp_bytes));
	ck_assert_mem_eq(buf, sp_bytes, sizeof(sp_bytes));

	/* and the decoders read the same layout */
	ck_assert_int_eq(dsm_rpc_sum_req_decode(&sr, sr_bytes, sizeof(sr_bytes)), 0);
	ck_assert_uint_eq(sr.vals_len, 3);
	ck_assert_int_eq(sr.vals[1], -2);
	ck_assert_int_eq(sr.vals[2], INT64_MIN);
	ck_assert_int_eq(dsm_rpc_sum_rep_decode(&sp, sp_bytes, sizeof(sp_bytes)), 0);
	ck_assert_int_eq(sp.total, -3);
	ck_assert_uint_eq(sp.count, 7);
	ck_assert_int_eq(dsm_rpc_note_msg_decode(&nm, nm_bytes, sizeof(nm_bytes)), 0);
	ck_assert_uint_eq(nm.seq, 0x8000000000000001u);
}
END_TEST

START_TEST(rpcgen_reject_truncated)
{
	make_samples();
	for (size_t i = 0; i < nsamples; i++) {
		const struct sample *s = &samples[i];
		union any out;
		size_t n;
		uint8_t *buf = encode_sample(s, &n, 0);

		/* every proper prefix, each in a buffer of exactly that size */
		for (size_t k = 0; k < n; k++) {
			uint8_t *p = malloc(k ? k : 1); /* exact: ASan sees any over-read */

			memcpy(p, buf, k);
			ck_assert_msg(s_decode(s, &out, p, k) == DSM_EPROTO,
				      "%s #%zu: prefix %zu of %zu accepted", s->what, i, k, n);
			free(p);
		}
		free(buf);
	}
}
END_TEST

START_TEST(rpcgen_reject_trailing)
{
	make_samples();
	for (size_t i = 0; i < nsamples; i++) {
		const struct sample *s = &samples[i];
		union any out;
		size_t n;
		uint8_t *buf = encode_sample(s, &n, 1);

		buf[n] = 0;
		ck_assert_msg(s_decode(s, &out, buf, n + 1) == DSM_EPROTO, "%s #%zu", s->what, i);
		ck_assert_int_eq(s_decode(s, &out, buf, n), 0);
		free(buf);
	}
}
END_TEST

/* Hand-crafted lengths above MAX are rejected even when the bytes are all there. */
START_TEST(rpcgen_reject_above_max)
{
	const size_t over = (size_t)DSM_RPC_ECHO_DATA_MAX + 1;
	uint8_t *buf = calloc(1, 16 + over);
	uint8_t small[4 + 8 * (DSM_RPC_SUM_VALS_MAX + 1)] = { 0 };
	struct dsm_rpc_echo_req er;
	struct dsm_rpc_echo_rep ep;
	struct dsm_rpc_note_msg nm;
	struct dsm_rpc_sum_req sr;

	ck_assert_ptr_nonnull(buf);
	/* echo: data length MAX + 1 followed by MAX + 1 bytes */
	dsm__put_le32(buf + 12, (uint32_t)over);
	ck_assert_int_eq(dsm_rpc_echo_req_decode(&er, buf, 16 + over), DSM_EPROTO);
	ck_assert_int_eq(dsm_rpc_echo_rep_decode(&ep, buf, 16 + over), DSM_EPROTO);
	/* exactly MAX is fine */
	dsm__put_le32(buf + 12, DSM_RPC_ECHO_DATA_MAX);
	ck_assert_int_eq(dsm_rpc_echo_req_decode(&er, buf, 16 + over - 1), 0);
	ck_assert_uint_eq(er.data.len, DSM_RPC_ECHO_DATA_MAX);
	/* a huge length with few bytes */
	dsm__put_le32(buf + 12, UINT32_MAX);
	ck_assert_int_eq(dsm_rpc_echo_req_decode(&er, buf, 20), DSM_EPROTO);
	dsm__put_le32(buf + 12, 5); /* within MAX, beyond the bytes left */
	ck_assert_int_eq(dsm_rpc_echo_req_decode(&er, buf, 20), DSM_EPROTO);
	/* note: same for its data */
	dsm__put_le32(buf + 12, (uint32_t)over);
	ck_assert_int_eq(dsm_rpc_note_msg_decode(&nm, buf, 16 + over), DSM_EPROTO);
	free(buf);

	/* sum: 65 elements, all present */
	dsm__put_le32(small, DSM_RPC_SUM_VALS_MAX + 1);
	ck_assert_int_eq(dsm_rpc_sum_req_decode(&sr, small, sizeof(small)), DSM_EPROTO);
	dsm__put_le32(small, UINT32_MAX);
	ck_assert_int_eq(dsm_rpc_sum_req_decode(&sr, small, sizeof(small)), DSM_EPROTO);
	dsm__put_le32(small, 0x20000000u); /* count * 8 wraps a 32-bit size */
	ck_assert_int_eq(dsm_rpc_sum_req_decode(&sr, small, sizeof(small)), DSM_EPROTO);
	dsm__put_le32(small, DSM_RPC_SUM_VALS_MAX);
	ck_assert_int_eq(dsm_rpc_sum_req_decode(&sr, small, sizeof(small) - 8), 0);
	ck_assert_uint_eq(sr.vals_len, DSM_RPC_SUM_VALS_MAX);
}
END_TEST

START_TEST(rpcgen_encode_small_cap)
{
	make_samples();
	for (size_t i = 0; i < nsamples; i++) {
		const struct sample *s = &samples[i];
		size_t n = s_size(s);
		uint8_t *buf = malloc(n + 1);

		for (size_t cap = 0; cap < n; cap++) {
			memset(buf, 0x5a, n + 1);
			ck_assert_msg(s_encode(s, s->m, buf, cap) == DSM_EMSGSIZE,
				      "%s #%zu: cap %zu of %zu", s->what, i, cap, n);
			for (size_t k = 0; k <= n; k++) /* nothing written */
				ck_assert_uint_eq(buf[k], 0x5a);
		}
		ck_assert_int_eq(s_encode(s, s->m, buf, n), (int)n);
		free(buf);
	}
}
END_TEST

START_TEST(rpcgen_encode_above_max)
{
	uint8_t buf[1024];
	struct dsm_rpc_echo_req er = { 1, 2, { text, DSM_RPC_ECHO_DATA_MAX + 1 } };
	struct dsm_rpc_note_msg nm = { 1, 2, { text, UINT32_MAX } };
	struct dsm_rpc_sum_req sr = { DSM_RPC_SUM_VALS_MAX + 1, { 0 } };
	struct dsm_rpc_echo_worker_rep wr = { 1, 2, { NULL, 5 } };

	/* the encoder never reads the data of an oversized field */
	ck_assert_int_eq(dsm_rpc_echo_req_encode(&er, buf, sizeof(buf)), DSM_EINVAL);
	ck_assert_int_eq(dsm_rpc_echo_req_encode(&er, NULL, 0), DSM_EINVAL); /* before EMSGSIZE */
	ck_assert_int_eq(dsm_rpc_note_msg_encode(&nm, buf, sizeof(buf)), DSM_EINVAL);
	ck_assert_int_eq(dsm_rpc_sum_req_encode(&sr, buf, sizeof(buf)), DSM_EINVAL);
	sr.vals_len = UINT32_MAX;
	ck_assert_int_eq(dsm_rpc_sum_req_encode(&sr, buf, sizeof(buf)), DSM_EINVAL);
	/* bytes with a length but no pointer */
	ck_assert_int_eq(dsm_rpc_echo_worker_rep_encode(&wr, buf, sizeof(buf)), DSM_EINVAL);
	/* through the proc table too */
	ck_assert_int_eq(dsm_rpc_echo_proc.req_encode(&er, buf, sizeof(buf)), DSM_EINVAL);
	ck_assert_int_eq(dsm_rpc_sum_proc.req_encode(&sr, buf, sizeof(buf)), DSM_EINVAL);
	/* exactly MAX is fine */
	sr.vals_len = DSM_RPC_SUM_VALS_MAX;
	ck_assert_int_eq(dsm_rpc_sum_req_encode(&sr, buf, sizeof(buf)), 4 + 8 * DSM_RPC_SUM_VALS_MAX);
}
END_TEST

START_TEST(rpcgen_proc_table)
{
	static const struct {
		const struct dsm__rpc_proc *p;
		const char *name;
		uint16_t id, flags;
		size_t req, rep;
	} want[] = {
		{ &dsm_rpc_echo_proc, "echo", 1, DSM__RPC_F_INLINE,
		  sizeof(struct dsm_rpc_echo_req), sizeof(struct dsm_rpc_echo_rep) },
		{ &dsm_rpc_echo_worker_proc, "echo_worker", 2, 0,
		  sizeof(struct dsm_rpc_echo_worker_req), sizeof(struct dsm_rpc_echo_worker_rep) },
		{ &dsm_rpc_note_proc, "note", 3, DSM__RPC_F_ONEWAY | DSM__RPC_F_INLINE, sizeof(struct dsm_rpc_note_msg), 0 },
		{ &dsm_rpc_sum_proc, "sum", 4, 0,
		  sizeof(struct dsm_rpc_sum_req), sizeof(struct dsm_rpc_sum_rep) },
	};
	const struct dsm__rpc_proc *note = &dsm_rpc_note_proc;
	uint8_t one = 0;

	ck_assert_uint_eq(DSM_RPC_NET_NPROCS, sizeof(want) / sizeof(want[0]));
	ck_assert_uint_eq(sizeof(dsm_rpc_net_procs) / sizeof(dsm_rpc_net_procs[0]), DSM_RPC_NET_NPROCS);
	for (size_t i = 0; i < DSM_RPC_NET_NPROCS; i++) {
		const struct dsm__rpc_proc *p = dsm_rpc_net_procs[i];

		ck_assert_ptr_eq(p, want[i].p); /* in id order */
		ck_assert_str_eq(p->name, want[i].name);
		ck_assert_uint_eq(p->id, want[i].id);
		ck_assert_uint_le(p->id, DSM__RPC_MAX_PROC);
		ck_assert_uint_eq(p->flags, want[i].flags);
		ck_assert_uint_eq(p->req_struct_size, want[i].req);
		ck_assert_uint_eq(p->rep_struct_size, want[i].rep);
		ck_assert_ptr_nonnull(p->req_size);
		ck_assert_ptr_nonnull(p->req_encode);
		ck_assert_ptr_nonnull(p->req_decode);
		ck_assert_ptr_nonnull(p->rep_size);
		ck_assert_ptr_nonnull(p->rep_encode);
		ck_assert_ptr_nonnull(p->rep_decode);
		ck_assert_ptr_nonnull(p->invoke);
	}
	/* a one-way message's rep slots handle an empty body */
	ck_assert_uint_eq(note->rep_size(NULL), 0);
	ck_assert_int_eq(note->rep_encode(NULL, NULL, 0), 0);
	ck_assert_int_eq(note->rep_decode(NULL, NULL, 0), 0);
	ck_assert_int_eq(note->rep_decode(NULL, &one, 1), DSM_EPROTO);
}
END_TEST

/* What the handlers below saw. */
static struct {
	int calls;
	struct dsm__rpc_ctx *ctx;
	const void *req;
	void *rep;
	int ret;
} seen;

static int echo_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_echo_req *req,
		  struct dsm_rpc_echo_rep *rep)
{
	seen.calls++;
	seen.ctx = ctx;
	seen.req = req;
	seen.rep = rep;
	rep->stamp = req->stamp;
	rep->seq = req->seq + 1;
	rep->data = req->data;
	return seen.ret;
}

static int sum_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_sum_req *req,
		 struct dsm_rpc_sum_rep *rep)
{
	seen.calls++;
	seen.ctx = ctx;
	seen.req = req;
	seen.rep = rep;
	rep->total = 0;
	for (uint32_t i = 0; i < req->vals_len; i++)
		rep->total += req->vals[i];
	rep->count = req->vals_len;
	return seen.ret;
}

static int note_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_note_msg *m)
{
	seen.calls++;
	seen.ctx = ctx;
	seen.req = m;
	return seen.ret;
}

START_TEST(rpcgen_invoke)
{
	static _Alignas(max_align_t) unsigned char ctx_storage[64]; /* opaque, never dereferenced */
	struct dsm__rpc_ctx *ctx = (struct dsm__rpc_ctx *)(void *)ctx_storage;
	struct dsm_rpc_echo_req er = { 5, 6, { text, 3 } };
	struct dsm_rpc_echo_rep ep = { 0 };
	struct dsm_rpc_sum_req sr = { 3, { -5, 2, INT64_MAX } };
	struct dsm_rpc_sum_rep sp = { 0 };
	struct dsm_rpc_note_msg nm = { 1, 2, { NULL, 0 } };

	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(dsm_rpc_echo_proc.invoke((dsm__rpc_fn)echo_h, ctx, &er, &ep), 0);
	ck_assert_int_eq(seen.calls, 1);
	ck_assert_ptr_eq(seen.ctx, ctx);
	ck_assert_ptr_eq(seen.req, &er);
	ck_assert_ptr_eq(seen.rep, &ep);
	ck_assert_uint_eq(ep.stamp, 5);
	ck_assert_uint_eq(ep.seq, 7);
	ck_assert_ptr_eq(ep.data.ptr, text);

	seen.ret = DSM__RPC_DEFERRED;
	ck_assert_int_eq(dsm_rpc_sum_proc.invoke((dsm__rpc_fn)sum_h, ctx, &sr, &sp), DSM__RPC_DEFERRED);
	ck_assert_int_eq(seen.calls, 2);
	ck_assert_ptr_eq(seen.req, &sr);
	ck_assert_ptr_eq(seen.rep, &sp);
	ck_assert_int_eq(sp.total, INT64_MAX - 3);
	ck_assert_uint_eq(sp.count, 3);

	seen.ret = DSM_ENOENT;
	ck_assert_int_eq(dsm_rpc_note_proc.invoke((dsm__rpc_fn)note_h, ctx, &nm, NULL), DSM_ENOENT);
	ck_assert_int_eq(seen.calls, 3);
	ck_assert_ptr_eq(seen.ctx, ctx);
	ck_assert_ptr_eq(seen.req, &nm);
}
END_TEST

/* ---------------------------------------------------------------- records */

static struct dsm_rpc_rt_all all_sample(int which)
{
	static const uint8_t k3[3] = { 0xfe, 0x00, 0x7f };
	struct dsm_rpc_rt_all m = { 0 };

	if (which == 0)
		return m; /* every field zero, every variable field empty */
	m.a = UINT8_MAX;
	m.b = 0x8001;
	m.c = UINT32_MAX;
	m.d = 0x8000000000000001ull;
	m.e = INT32_MIN;
	m.f = INT64_MIN;
	m.g = (struct dsm__bytes){ text, DSM_RPC_RT_ALL_G_MAX };
	m.h_len = DSM_RPC_RT_ALL_H_MAX;
	for (uint32_t i = 0; i < m.h_len; i++)
		m.h[i] = (uint16_t)(0xffff - i);
	memcpy(m.k, k3, sizeof(k3));
	m.l_len = DSM_RPC_RT_ALL_L_MAX;
	m.l[0] = INT64_MAX;
	m.l[1] = -2;
	return m;
}

static void assert_all_eq(const struct dsm_rpc_rt_all *x, const struct dsm_rpc_rt_all *y)
{
	ck_assert_uint_eq(x->a, y->a);
	ck_assert_uint_eq(x->b, y->b);
	ck_assert_uint_eq(x->c, y->c);
	ck_assert_uint_eq(x->d, y->d);
	ck_assert_int_eq(x->e, y->e);
	ck_assert_int_eq(x->f, y->f);
	ck_assert_uint_eq(x->g.len, y->g.len);
	if (x->g.len)
		ck_assert_mem_eq(x->g.ptr, y->g.ptr, x->g.len);
	ck_assert_uint_eq(x->h_len, y->h_len);
	for (uint32_t i = 0; i < x->h_len; i++)
		ck_assert_uint_eq(x->h[i], y->h[i]);
	ck_assert_mem_eq(x->k, y->k, sizeof(x->k));
	ck_assert_uint_eq(x->l_len, y->l_len);
	for (uint32_t i = 0; i < x->l_len; i++)
		ck_assert_int_eq(x->l[i], y->l[i]);
}

START_TEST(rpcgen_record_roundtrip)
{
	for (int which = 0; which < 2; which++) {
		struct dsm_rpc_rt_all in = all_sample(which), out;
		size_t n = dsm_rpc_rt_all_size(&in);
		uint8_t *buf = malloc(n), *again = malloc(n);
		const uint8_t *p = buf;

		ck_assert_uint_eq(n, which ? DSM_RPC_RT_ALL_SIZE_MAX : DSM_RPC_RT_ALL_SIZE_MIN);
		ck_assert_int_eq(dsm_rpc_rt_all_encode(&in, buf, n), (int)n);
		memset(&out, 0xa5, sizeof(out));
		ck_assert_int_eq(dsm_rpc_rt_all_decode(&out, buf, n), 0);
		assert_all_eq(&in, &out);
		if (which)
			ck_assert_ptr_eq(out.g.ptr, buf + 1 + 2 + 4 + 8 + 4 + 8 + 4); /* no copy */
		ck_assert_int_eq(dsm_rpc_rt_all_encode(&out, again, n), (int)n);
		ck_assert_mem_eq(buf, again, n);

		/* the same bytes as a sequence of one record */
		memset(&out, 0xa5, sizeof(out));
		ck_assert_int_eq(dsm_rpc_rt_all_decode_next(&out, &p, buf + n), 1);
		ck_assert_ptr_eq(p, buf + n);
		assert_all_eq(&in, &out);
		ck_assert_int_eq(dsm_rpc_rt_all_decode_next(&out, &p, buf + n), 0);
		ck_assert_ptr_eq(p, buf + n);
		free(again);
		free(buf);
	}
}
END_TEST

/* A diff item is byte for byte the layout the release's diffs batches had
 * when they were packed by hand (u64 page, u32 length, the diff: dsm.rpc's
 * diff_item keeps it), and a batch of them carries real diffs: encode
 * three pages' diffs, walk them, apply them. */
START_TEST(rpcgen_record_diff_batch)
{
	enum { PS = 4096, NP = 3 };
	static uint8_t twin[NP][PS], page[NP][PS], copy[NP][PS];
	uint8_t *batch = malloc(NP * DSM_RPC_RT_DIFF_ITEM_SIZE_MAX), *hand;
	uint8_t diff[DSM_DIFF_BOUND(PS)];
	const uint64_t base = 0x200000000000ull;
	struct dsm_rpc_rt_diff_item it;
	size_t used = 0, hlen = 0;
	const uint8_t *p;
	int r, k;

	ck_assert_ptr_nonnull(batch);
	hand = malloc(NP * DSM_RPC_RT_DIFF_ITEM_SIZE_MAX);
	ck_assert_ptr_nonnull(hand);
	dsm_test_rng_seed(11);
	for (int i = 0; i < NP; i++) {
		dsm_test_fill_random(twin[i], PS);
		memcpy(page[i], twin[i], PS);
		memcpy(copy[i], twin[i], PS);
		for (int w = 0; w < 20 * (i + 1); w++)
			page[i][dsm_test_rng() % PS] ^= (uint8_t)(1 + dsm_test_rng() % 255);
		r = dsm__diff_encode(twin[i], page[i], PS, diff, sizeof(diff));
		ck_assert_int_ge(r, DSM_DIFF_HDR_SIZE);
		it = (struct dsm_rpc_rt_diff_item){ base + (uint64_t)i * PS, { diff, (uint32_t)r } };
		/* append: encode at the end of what is used */
		k = dsm_rpc_rt_diff_item_encode(&it, batch + used,
						NP * DSM_RPC_RT_DIFF_ITEM_SIZE_MAX - used);
		ck_assert_int_eq(k, 12 + r);
		used += (size_t)k;
		/* the same layout written by hand */
		dsm__put_le64(hand + hlen, it.page);
		dsm__put_le32(hand + hlen + 8, (uint32_t)r);
		memcpy(hand + hlen + 12, diff, (size_t)r);
		hlen += 12 + (size_t)r;
	}
	ck_assert_uint_eq(used, hlen);
	ck_assert_mem_eq(batch, hand, used);

	p = batch;
	k = 0;
	while ((r = dsm_rpc_rt_diff_item_decode_next(&it, &p, batch + used)) == 1) {
		ck_assert_int_lt(k, NP);
		ck_assert_uint_eq(it.page, base + (uint64_t)k * PS);
		ck_assert(it.diff.ptr > batch && it.diff.ptr + it.diff.len <= batch + used);
		ck_assert_int_eq(dsm__diff_apply(copy[k], PS, it.diff.ptr, it.diff.len), 0);
		ck_assert_mem_eq(copy[k], page[k], PS);
		k++;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(k, NP);
	ck_assert_ptr_eq(p, batch + used);
	free(hand);
	free(batch);
}
END_TEST

/* The batch travels in a call's bytes field: the items decoded from the
 * decoded call point into the call's buffer (no copy at any level). */
START_TEST(rpcgen_record_sequence_in_call)
{
	uint8_t items[3 * 40], *msg;
	struct dsm_rpc_rt_batch_req rq, got;
	struct dsm_rpc_rt_diff_item it;
	size_t used = 0, n;
	const uint8_t *p, *end;
	int r, k = 0;

	for (int i = 0; i < 3; i++) {
		it = (struct dsm_rpc_rt_diff_item){ (uint64_t)i << 12, { text, (uint32_t)(i * 7) } };
		r = dsm_rpc_rt_diff_item_encode(&it, items + used, sizeof(items) - used);
		ck_assert_int_eq(r, 12 + i * 7);
		used += (size_t)r;
	}
	rq.items = (struct dsm__bytes){ items, (uint32_t)used };
	n = dsm_rpc_rt_batch_req_size(&rq);
	msg = malloc(n);
	ck_assert_int_eq(dsm_rpc_rt_batch_req_encode(&rq, msg, n), (int)n);
	ck_assert_int_eq(dsm_rpc_rt_batch_req_decode(&got, msg, n), 0);
	p = got.items.ptr;
	end = p + got.items.len;
	while ((r = dsm_rpc_rt_diff_item_decode_next(&it, &p, end)) == 1) {
		ck_assert_uint_eq(it.page, (uint64_t)k << 12);
		ck_assert_uint_eq(it.diff.len, (uint32_t)(k * 7));
		if (it.diff.len) {
			ck_assert(it.diff.ptr >= msg + 4 && it.diff.ptr < msg + n);
			ck_assert_mem_eq(it.diff.ptr, text, it.diff.len);
		}
		k++;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(k, 3);
	free(msg);
}
END_TEST

/* A sequence cut anywhere: decode_next returns every whole record, then 0
 * when the cut is at a record boundary, else DSM_EPROTO with *p left at
 * the start of the cut record. Exact-size buffers: ASan sees any
 * over-read. */
START_TEST(rpcgen_record_truncated)
{
	struct dsm_rpc_rt_all a = all_sample(1), a0 = all_sample(0), out;
	const struct dsm_rpc_rt_all *seq[] = { &a, &a0, &a };
	size_t bound[4] = { 0 }, n = 0;
	uint8_t buf[3 * DSM_RPC_RT_ALL_SIZE_MAX];

	for (int i = 0; i < 3; i++) {
		int r = dsm_rpc_rt_all_encode(seq[i], buf + n, sizeof(buf) - n);

		ck_assert_int_gt(r, 0);
		n += (size_t)r;
		bound[i + 1] = n;
	}
	for (size_t cut = 0; cut <= n; cut++) {
		uint8_t *p0 = malloc(cut ? cut : 1);
		const uint8_t *p = p0;
		int whole = 0, r;

		memcpy(p0, buf, cut);
		while (whole < 3 && bound[whole + 1] <= cut)
			whole++;
		for (int i = 0; i < whole; i++) {
			ck_assert_int_eq(dsm_rpc_rt_all_decode_next(&out, &p, p0 + cut), 1);
			assert_all_eq(&out, seq[i]);
		}
		ck_assert_ptr_eq(p, p0 + bound[whole]);
		r = dsm_rpc_rt_all_decode_next(&out, &p, p0 + cut);
		ck_assert_msg(r == (cut == bound[whole] ? 0 : DSM_EPROTO), "cut %zu: %d", cut, r);
		ck_assert_ptr_eq(p, p0 + bound[whole]); /* not moved */
		/* decode takes exactly one record: every proper prefix of the first fails */
		if (cut < bound[1])
			ck_assert_int_eq(dsm_rpc_rt_all_decode(&out, p0, cut), DSM_EPROTO);
		free(p0);
	}
}
END_TEST

/* Lengths above MAX are rejected even with every byte present; lengths
 * within MAX but past the bytes left too; the encoder refuses them. */
START_TEST(rpcgen_record_above_max)
{
	const size_t over = (size_t)DSM_RPC_RT_DIFF_ITEM_DIFF_MAX + 1;
	uint8_t *buf = calloc(1, 12 + over);
	struct dsm_rpc_rt_diff_item it;
	struct dsm_rpc_rt_all a = all_sample(1), out;
	uint8_t ab[DSM_RPC_RT_ALL_SIZE_MAX + 64];
	const uint8_t *p;
	size_t hoff = 1 + 2 + 4 + 8 + 4 + 8 + 4 + DSM_RPC_RT_ALL_G_MAX; /* h's count */
	int n;

	ck_assert_ptr_nonnull(buf);
	dsm__put_le32(buf + 8, (uint32_t)over);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode(&it, buf, 12 + over), DSM_EPROTO);
	p = buf;
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode_next(&it, &p, buf + 12 + over), DSM_EPROTO);
	ck_assert_ptr_eq(p, buf);
	/* exactly MAX is fine, and the walk then sees one trailing byte */
	dsm__put_le32(buf + 8, DSM_RPC_RT_DIFF_ITEM_DIFF_MAX);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode(&it, buf, 12 + over - 1), 0);
	ck_assert_uint_eq(it.diff.len, DSM_RPC_RT_DIFF_ITEM_DIFF_MAX);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode_next(&it, &p, buf + 12 + over), 1);
	ck_assert_ptr_eq(p, buf + 12 + over - 1);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode_next(&it, &p, buf + 12 + over), DSM_EPROTO);
	/* a huge length with few bytes; a length within MAX past the end */
	dsm__put_le32(buf + 8, UINT32_MAX);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode(&it, buf, 20), DSM_EPROTO);
	dsm__put_le32(buf + 8, 9);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode(&it, buf, 20), DSM_EPROTO);
	p = buf;
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode_next(&it, &p, buf + 20), DSM_EPROTO);
	ck_assert_ptr_eq(p, buf);

	/* arrays: a count above MAX, and one whose byte size wraps 32 bits */
	n = dsm_rpc_rt_all_encode(&a, ab, sizeof(ab));
	ck_assert_int_eq(n, (int)DSM_RPC_RT_ALL_SIZE_MAX);
	ck_assert_uint_eq(dsm__get_le32(ab + hoff), DSM_RPC_RT_ALL_H_MAX);
	dsm__put_le32(ab + hoff, DSM_RPC_RT_ALL_H_MAX + 1);
	ck_assert_int_eq(dsm_rpc_rt_all_decode(&out, ab, sizeof(ab)), DSM_EPROTO);
	dsm__put_le32(ab + hoff, 0x80000000u);
	ck_assert_int_eq(dsm_rpc_rt_all_decode(&out, ab, sizeof(ab)), DSM_EPROTO);
	dsm__put_le32(ab + hoff, DSM_RPC_RT_ALL_H_MAX);
	ck_assert_int_eq(dsm_rpc_rt_all_decode(&out, ab, (size_t)n), 0);

	/* the encoder: over MAX is DSM_EINVAL before any capacity check */
	it = (struct dsm_rpc_rt_diff_item){ 1, { buf, (uint32_t)over } };
	ck_assert_int_eq(dsm_rpc_rt_diff_item_encode(&it, buf, 12 + over), DSM_EINVAL);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_encode(&it, NULL, 0), DSM_EINVAL);
	it.diff = (struct dsm__bytes){ NULL, 1 };
	ck_assert_int_eq(dsm_rpc_rt_diff_item_encode(&it, buf, 12 + over), DSM_EINVAL);
	a.h_len = DSM_RPC_RT_ALL_H_MAX + 1;
	ck_assert_int_eq(dsm_rpc_rt_all_encode(&a, ab, sizeof(ab)), DSM_EINVAL);
	a.h_len = DSM_RPC_RT_ALL_H_MAX;
	/* too small a capacity: DSM_EMSGSIZE and nothing written */
	memset(ab, 0x5a, sizeof(ab));
	ck_assert_int_eq(dsm_rpc_rt_all_encode(&a, ab, DSM_RPC_RT_ALL_SIZE_MAX - 1), DSM_EMSGSIZE);
	for (size_t i = 0; i < sizeof(ab); i++)
		ck_assert_uint_eq(ab[i], 0x5a);
	free(buf);
}
END_TEST

/* Trailing bytes: decode rejects them; decode_next decodes what is a whole
 * record and reports the rest as DSM_EPROTO, never skipping it. */
START_TEST(rpcgen_record_trailing)
{
	struct dsm_rpc_rt_diff_item it = { 7, { text, 5 } };
	struct dsm_rpc_rt_byte b = { 0x42 }, bo;
	uint8_t buf[64];
	const uint8_t *p = buf;
	int n = dsm_rpc_rt_diff_item_encode(&it, buf, sizeof(buf));

	ck_assert_int_eq(n, 17);
	buf[n] = 0;
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode(&it, buf, (size_t)n + 1), DSM_EPROTO);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode(&it, buf, (size_t)n), 0);
	for (int extra = 1; extra < 12; extra++) { /* less than a whole item */
		memset(buf + n, 0, (size_t)extra);
		p = buf;
		ck_assert_int_eq(dsm_rpc_rt_diff_item_decode_next(&it, &p, buf + n + extra), 1);
		ck_assert_ptr_eq(p, buf + n);
		ck_assert_int_eq(dsm_rpc_rt_diff_item_decode_next(&it, &p, buf + n + extra),
				 DSM_EPROTO);
		ck_assert_ptr_eq(p, buf + n);
	}
	/* 12 zero bytes are a whole item (page 0, empty diff): the walk sees two */
	memset(buf + n, 0, 12);
	p = buf;
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode_next(&it, &p, buf + n + 12), 1);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode_next(&it, &p, buf + n + 12), 1);
	ck_assert_uint_eq(it.page, 0);
	ck_assert_uint_eq(it.diff.len, 0);
	ck_assert_int_eq(dsm_rpc_rt_diff_item_decode_next(&it, &p, buf + n + 12), 0);

	/* one-byte records: every byte is one, so nothing is ever trailing */
	ck_assert_int_eq(dsm_rpc_rt_byte_encode(&b, buf, sizeof(buf)), 1);
	ck_assert_int_eq(dsm_rpc_rt_byte_decode(&bo, buf, 2), DSM_EPROTO);
	ck_assert_int_eq(dsm_rpc_rt_byte_decode(&bo, buf, 1), 0);
	ck_assert_uint_eq(bo.v, 0x42);
	buf[1] = 0x43;
	p = buf;
	ck_assert_int_eq(dsm_rpc_rt_byte_decode_next(&bo, &p, buf + 2), 1);
	ck_assert_int_eq(dsm_rpc_rt_byte_decode_next(&bo, &p, buf + 2), 1);
	ck_assert_uint_eq(bo.v, 0x43);
	ck_assert_int_eq(dsm_rpc_rt_byte_decode_next(&bo, &p, buf + 2), 0);
}
END_TEST

/* The ends of a sequence: an empty bytes field (NULL, 0), *p == end, and
 * pointers that do not make a sequence. */
START_TEST(rpcgen_record_sequence_ends)
{
	struct dsm_rpc_rt_byte b = { 0x11 };
	uint8_t buf[4] = { 1, 2, 3, 4 };
	const uint8_t *p = NULL;

	ck_assert_int_eq(dsm_rpc_rt_byte_decode_next(&b, &p, NULL), 0);
	ck_assert_ptr_null(p);
	p = buf + 2;
	ck_assert_int_eq(dsm_rpc_rt_byte_decode_next(&b, &p, buf + 2), 0);
	ck_assert_uint_eq(b.v, 0x11); /* untouched at the end */
	p = buf + 3;
	ck_assert_int_eq(dsm_rpc_rt_byte_decode_next(&b, &p, buf + 2), DSM_EPROTO);
	ck_assert_ptr_eq(p, buf + 3);
	p = NULL;
	ck_assert_int_eq(dsm_rpc_rt_byte_decode_next(&b, &p, buf + 2), DSM_EPROTO);
	p = buf;
	ck_assert_int_eq(dsm_rpc_rt_byte_decode_next(&b, &p, NULL), DSM_EPROTO);
	ck_assert_ptr_eq(p, buf);
	ck_assert_int_eq(dsm_rpc_rt_byte_decode(&b, NULL, 0), DSM_EPROTO); /* no record */
}
END_TEST

static Suite *rpcgen_suite(void)
{
	Suite *s = suite_create("rpcgen");
	TCase *tc = tcase_create("rpcgen");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, rpcgen_roundtrip_all_types);
	tcase_add_test(tc, rpcgen_roundtrip_fields);
	tcase_add_test(tc, rpcgen_roundtrip_1mib);
	tcase_add_test(tc, rpcgen_layout);
	tcase_add_test(tc, rpcgen_reject_truncated);
	tcase_add_test(tc, rpcgen_reject_trailing);
	tcase_add_test(tc, rpcgen_reject_above_max);
	tcase_add_test(tc, rpcgen_encode_small_cap);
	tcase_add_test(tc, rpcgen_encode_above_max);
	tcase_add_test(tc, rpcgen_proc_table);
	tcase_add_test(tc, rpcgen_invoke);
	tcase_add_test(tc, rpcgen_record_roundtrip);
	tcase_add_test(tc, rpcgen_record_diff_batch);
	tcase_add_test(tc, rpcgen_record_sequence_in_call);
	tcase_add_test(tc, rpcgen_record_truncated);
	tcase_add_test(tc, rpcgen_record_above_max);
	tcase_add_test(tc, rpcgen_record_trailing);
	tcase_add_test(tc, rpcgen_record_sequence_ends);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return dsm_test_run_suite(rpcgen_suite());
}
