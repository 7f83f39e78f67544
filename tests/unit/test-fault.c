/*
 * Unit tests for net/fault.c: the DSM_FAULT parser (every field, every
 * rejection) and the shim's behaviour over a fake inner transport that
 * records what it is asked to send: drop, dup, corrupt, reorder, delay,
 * link targeting, determinism per seed and per link, the measured rates
 * over 100,000 datagrams, a full pool, links naming ranks the job does not
 * have, and multi-threaded senders.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "xport.h"
#include "testutil.h"

/* ---- a fake inner transport ---- */

#define REC_DATA 64

struct rec {
	unsigned dst;
	uint32_t len;
	uint8_t data[REC_DATA];
};

struct fake {
	struct dsm__xport x;
	pthread_mutex_t lock;
	struct rec *recs;
	size_t n, cap;
	int eagain_left; /* fail this many sends with DSM_EAGAIN */
	int *destroyed;  /* set on destroy */
};

static int fake_send(struct dsm__xport *x, unsigned dst, const uint8_t *buf, size_t len)
{
	struct fake *f = (struct fake *)x;
	struct rec *r;

	ck_assert_uint_lt(dst, x->nodes);
	ck_assert_uint_le(len, x->mtu);
	pthread_mutex_lock(&f->lock);
	if (f->eagain_left > 0) {
		f->eagain_left--;
		pthread_mutex_unlock(&f->lock);
		return DSM_EAGAIN;
	}
	if (f->n == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 1024;
		f->recs = realloc(f->recs, f->cap * sizeof(*f->recs));
		ck_assert_ptr_nonnull(f->recs);
	}
	r = &f->recs[f->n++];
	r->dst = dst;
	r->len = (uint32_t)len;
	memset(r->data, 0, sizeof(r->data));
	memcpy(r->data, buf, len < REC_DATA ? len : REC_DATA);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static int fake_progress(struct dsm__xport *x, dsm__xport_rx_fn cb, void *arg, int max)
{
	static const uint8_t ping[4] = { 1, 2, 3, 4 };

	(void)x;
	if (max > 0) {
		cb(arg, ping, sizeof(ping)); /* one datagram per call, to check rx stats */
		return 1;
	}
	return 0;
}

static int fake_wait_prepare(struct dsm__xport *x, int *fd)
{
	(void)x;
	*fd = -1;
	return 0;
}

static int64_t fake_next_deadline(struct dsm__xport *x)
{
	(void)x;
	return INT64_MAX;
}

static void fake_destroy(struct dsm__xport *x)
{
	struct fake *f = (struct fake *)x;

	if (!f)
		return;
	if (f->destroyed)
		(*f->destroyed)++;
	pthread_mutex_destroy(&f->lock);
	free(f->recs);
	free(f);
}

static const struct dsm__xport_ops fake_ops = {
	.name = "fake",
	.send = fake_send,
	.progress = fake_progress,
	.wait_prepare = fake_wait_prepare,
	.next_deadline = fake_next_deadline,
	.destroy = fake_destroy,
};

static struct fake *fake_new(unsigned nodes, unsigned rank, size_t mtu)
{
	struct fake *f = calloc(1, sizeof(*f));

	ck_assert_ptr_nonnull(f);
	f->x.ops = &fake_ops;
	f->x.nodes = nodes;
	f->x.rank = rank;
	f->x.mtu = mtu;
	pthread_mutex_init(&f->lock, NULL);
	return f;
}

/* Parse spec (must be valid) and wrap a new fake in the shim. */
static struct dsm__xport *shim_new(const char *spec, unsigned nodes, unsigned rank,
				   struct fake **fk)
{
	struct dsm__fault_cfg cfg;
	struct dsm__xport *x = NULL;
	char err[256] = "";
	int r;

	r = dsm__fault_parse(spec, &cfg, err, sizeof(err));
	ck_assert_msg(r == 0, "parse '%s': %s", spec, err);
	*fk = fake_new(nodes, rank, 1472);
	r = dsm__fault_create(&(*fk)->x, &cfg, &x);
	ck_assert_int_eq(r, 0);
	ck_assert_ptr_nonnull(x);
	ck_assert_uint_eq(x->mtu, 1472);
	ck_assert_uint_eq(x->nodes, nodes);
	ck_assert_uint_eq(x->rank, rank);
	return x;
}

/* A datagram carrying its sequence number i in the first 4 bytes. */
static size_t make_dgram(uint8_t *buf, uint32_t i, size_t len)
{
	for (size_t k = 0; k < len; k++)
		buf[k] = (uint8_t)(i * 7 + k);
	if (len >= 4)
		memcpy(buf, &i, 4);
	return len;
}

static uint32_t rec_seq(const struct rec *r)
{
	uint32_t i;

	memcpy(&i, r->data, 4);
	return i;
}

static void noop_rx(void *arg, const uint8_t *buf, size_t len)
{
	(void)buf;
	(void)len;
	(*(int *)arg)++;
}

static uint64_t ctr(atomic_uint_fast64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- parser ---- */

START_TEST(fault_parse_valid)
{
	struct dsm__fault_cfg c;
	char err[256] = "";

	ck_assert_int_eq(dsm__fault_parse("drop=0.1,dup=0.05,corrupt=0.01,reorder=0.1,"
					  "delay_ms=0-5,seed=42,link=0>1;2>*",
					  &c, err, sizeof(err)), 0);
	ck_assert_double_eq_tol(c.drop, 0.1, 1e-12);
	ck_assert_double_eq_tol(c.dup, 0.05, 1e-12);
	ck_assert_double_eq_tol(c.corrupt, 0.01, 1e-12);
	ck_assert_double_eq_tol(c.reorder, 0.1, 1e-12);
	ck_assert_uint_eq(c.delay_min_ms, 0);
	ck_assert_uint_eq(c.delay_max_ms, 5);
	ck_assert_uint_eq(c.seed, 42);
	ck_assert_int_eq(c.seed_given, 1);
	ck_assert_int_eq(c.nlinks, 2);
	ck_assert_int_eq(c.links[0].src, 0);
	ck_assert_int_eq(c.links[0].dst, 1);
	ck_assert_int_eq(c.links[1].src, 2);
	ck_assert_int_eq(c.links[1].dst, -1);

	/* Defaults: what is not given is zero. */
	ck_assert_int_eq(dsm__fault_parse("drop=1", &c, err, sizeof(err)), 0);
	ck_assert_double_eq(c.drop, 1.0);
	ck_assert_double_eq(c.dup, 0.0);
	ck_assert_uint_eq(c.delay_max_ms, 0);
	ck_assert_int_eq(c.seed_given, 0);
	ck_assert_int_eq(c.nlinks, 0);

	ck_assert_int_eq(dsm__fault_parse("delay_ms=7", &c, err, sizeof(err)), 0);
	ck_assert_uint_eq(c.delay_min_ms, 7);
	ck_assert_uint_eq(c.delay_max_ms, 7);
	ck_assert_int_eq(dsm__fault_parse("delay_ms=10000", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(dsm__fault_parse("seed=18446744073709551615", &c, err, sizeof(err)), 0);
	ck_assert_uint_eq(c.seed, UINT64_MAX);
	ck_assert_int_eq(dsm__fault_parse("seed=0xdeadBEEF", &c, err, sizeof(err)), 0);
	ck_assert_uint_eq(c.seed, 0xdeadbeefu);
	ck_assert_int_eq(dsm__fault_parse("link=*>*", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.nlinks, 1);
	ck_assert_int_eq(c.links[0].src, -1);
	ck_assert_int_eq(c.links[0].dst, -1);
	ck_assert_int_eq(dsm__fault_parse("reorder=0,drop=.5,dup=1.0", &c, err, sizeof(err)), 0);
	ck_assert_double_eq(c.drop, 0.5);
	ck_assert_double_eq(c.dup, 1.0);
}
END_TEST

START_TEST(fault_parse_reject)
{
	static const struct {
		const char *spec, *needle; /* needle: must appear in err */
	} bad[] = {
		{ "dorp=0.1", "unknown key 'dorp'" },
		{ "drop=1.5", "drop" },
		{ "drop=-0.1", "drop" },
		{ "drop=", "drop" },
		{ "drop=abc", "abc" },
		{ "drop=nan", "drop" },
		{ "drop=inf", "drop" },
		{ "drop= 0.1", "drop" },
		{ "drop=0.1x", "drop" },
		{ "dup=2", "dup" },
		{ "corrupt=-1", "corrupt" },
		{ "reorder=1.01", "reorder" },
		{ "delay_ms=5-2", "delay_ms" },
		{ "delay_ms=10001", "delay_ms" },
		{ "delay_ms=1-", "delay_ms" },
		{ "delay_ms=-3", "delay_ms" },
		{ "delay_ms=a", "delay_ms" },
		{ "delay_ms=1.5", "delay_ms" },
		{ "drop=0.1,drop=0.2", "duplicate key 'drop'" },
		{ "seed=1,seed=1", "duplicate key 'seed'" },
		{ "seed=-1", "seed" },
		{ "seed=abc", "seed" },
		{ "seed=18446744073709551616", "seed" },
		{ "link=0-1", "link" },
		{ "link=0>", "link" },
		{ "link=>1", "link" },
		{ "link=0>1;", "link" },
		{ "link=0>1;;2>3", "link" },
		{ "link=a>b", "link" },
		{ "link=0>1>2", "link" },
		{ "link=70000>1", "link" },
		{ "link=0>1;0>2;0>3;0>4;0>5;0>6;0>7;0>8;0>9;0>10;0>11;0>12;0>13;0>14;0>15;0>16;0>17",
		  "link" },
		{ "", "DSM_FAULT" },
		{ "drop=0.1,", "empty item" },
		{ ",drop=0.1", "empty item" },
		{ "drop=0.1,,dup=0.1", "empty item" },
		{ "drop", "drop" },
		{ "=0.1", "unknown key ''" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dsm__fault_cfg c;
		char err[256] = "";
		int r = dsm__fault_parse(bad[i].spec, &c, err, sizeof(err));

		ck_assert_msg(r == DSM_ECONFIG, "'%s' accepted (%d)", bad[i].spec, r);
		ck_assert_msg(!strncmp(err, "DSM_FAULT: ", 11), "'%s': err '%s'", bad[i].spec, err);
		ck_assert_msg(strstr(err, bad[i].needle), "'%s': err '%s' lacks '%s'",
			      bad[i].spec, err, bad[i].needle);
	}
	/* A NULL err buffer is allowed. */
	{
		struct dsm__fault_cfg c;

		ck_assert_int_eq(dsm__fault_parse("dorp=1", &c, NULL, 0), DSM_ECONFIG);
	}
}
END_TEST

/* ---- shim behaviour ---- */

START_TEST(fault_drop_all)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new("drop=1,seed=1", 2, 0, &fk);
	uint8_t buf[100];

	for (uint32_t i = 0; i < 100; i++)
		ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, i, sizeof(buf))), 0);
	ck_assert_uint_eq(fk->n, 0);
	ck_assert_uint_eq(ctr(&x->stats.f_drop), 100);
	ck_assert_uint_eq(ctr(&x->stats.tx_dgrams), 0);
	x->ops->destroy(x);
}
END_TEST

START_TEST(fault_dup_all)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new("dup=1,seed=1", 2, 0, &fk);
	uint8_t buf[40];

	for (uint32_t i = 0; i < 50; i++)
		ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, i, sizeof(buf))), 0);
	ck_assert_uint_eq(fk->n, 100);
	for (uint32_t i = 0; i < 50; i++) {
		make_dgram(buf, i, sizeof(buf));
		ck_assert_uint_eq(rec_seq(&fk->recs[2 * i]), i);
		ck_assert_uint_eq(rec_seq(&fk->recs[2 * i + 1]), i);
		ck_assert_mem_eq(fk->recs[2 * i].data, buf, sizeof(buf));
		ck_assert_mem_eq(fk->recs[2 * i + 1].data, buf, sizeof(buf));
	}
	ck_assert_uint_eq(ctr(&x->stats.f_dup), 50);
	ck_assert_uint_eq(ctr(&x->stats.tx_dgrams), 100);
	ck_assert_uint_eq(ctr(&x->stats.tx_bytes), 100 * sizeof(buf));
	x->ops->destroy(x);
}
END_TEST

static int bits_differ(const uint8_t *a, const uint8_t *b, size_t n)
{
	int d = 0;

	for (size_t i = 0; i < n; i++)
		d += __builtin_popcount((unsigned)(a[i] ^ b[i]));
	return d;
}

START_TEST(fault_corrupt_one_bit)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new("corrupt=1,seed=7", 2, 0, &fk);
	uint8_t buf[REC_DATA], orig[REC_DATA];
	int hit[REC_DATA * 8] = { 0 };

	for (uint32_t i = 0; i < 2000; i++) {
		size_t len = 1 + i % REC_DATA;

		make_dgram(buf, i, len);
		memcpy(orig, buf, len);
		ck_assert_int_eq(x->ops->send(x, 1, buf, len), 0);
		ck_assert_mem_eq(buf, orig, len); /* the caller's buffer is untouched */
		ck_assert_uint_eq(fk->n, i + 1);
		ck_assert_uint_eq(fk->recs[i].len, len);
		ck_assert_int_eq(bits_differ(fk->recs[i].data, orig, len), 1);
		if (len == REC_DATA)
			for (size_t b = 0; b < REC_DATA * 8; b++)
				if ((fk->recs[i].data[b / 8] ^ orig[b / 8]) & (1u << (b % 8)))
					hit[b]++;
	}
	/* Zero-length datagrams cannot be corrupted and pass unchanged. */
	ck_assert_int_eq(x->ops->send(x, 1, buf, 0), 0);
	ck_assert_uint_eq(ctr(&x->stats.f_corrupt), 2000);
	/* The flipped bit is spread over the datagram (31 full-size samples:
	 * not all in one byte). */
	{
		int bytes = 0;

		for (size_t B = 0; B < REC_DATA; B++) {
			int any = 0;

			for (int b = 0; b < 8; b++)
				any |= hit[B * 8 + b];
			bytes += !!any;
		}
		ck_assert_int_gt(bytes, 5);
	}
	x->ops->destroy(x);
}
END_TEST

START_TEST(fault_reorder_swaps)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new("reorder=1,seed=3", 2, 0, &fk);
	uint8_t buf[16];
	int got = 0;
	int64_t t0;

	for (uint32_t i = 0; i < 6; i++)
		ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, i, sizeof(buf))), 0);
	ck_assert_uint_eq(fk->n, 6);
	{
		static const uint32_t want[] = { 1, 0, 3, 2, 5, 4 };

		for (int i = 0; i < 6; i++)
			ck_assert_uint_eq(rec_seq(&fk->recs[i]), want[i]);
	}
	ck_assert_uint_eq(ctr(&x->stats.f_reorder), 3);

	/* A held datagram with no successor goes out after a short time. */
	t0 = dsm__now_ns();
	ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, 6, sizeof(buf))), 0);
	ck_assert_uint_eq(fk->n, 6);
	ck_assert_int_gt(x->ops->next_deadline(x), t0);
	ck_assert_int_le(x->ops->next_deadline(x), t0 + 50 * 1000000LL);
	while (fk->n == 6) {
		ck_assert_int_lt(dsm__now_ns() - t0, 2000 * 1000000LL);
		x->ops->progress(x, noop_rx, &got, 16);
	}
	ck_assert_uint_eq(rec_seq(&fk->recs[6]), 6);
	ck_assert_int_eq(x->ops->next_deadline(x), INT64_MAX);
	x->ops->destroy(x);
}
END_TEST

START_TEST(fault_delay_releases)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new("delay_ms=30,seed=3", 2, 0, &fk);
	uint8_t buf[16];
	int64_t t0, t1, dl;
	int got = 0, fd, r;

	t0 = dsm__now_ns();
	ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, 0, sizeof(buf))), 0);
	ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, 1, sizeof(buf))), 0);
	t1 = dsm__now_ns();
	ck_assert_uint_eq(fk->n, 0);
	ck_assert_uint_eq(ctr(&x->stats.f_delay), 2);
	dl = x->ops->next_deadline(x);
	ck_assert_int_ge(dl, t0 + 30 * 1000000LL);
	ck_assert_int_le(dl, dsm__now_ns() + 30 * 1000000LL);

	/* Before the deadline: nothing released; blocking is allowed. */
	r = x->ops->progress(x, noop_rx, &got, 8);
	ck_assert_int_eq(r, 1); /* the fake's one datagram, counted by the shim */
	ck_assert_int_eq(got, 1);
	ck_assert_uint_eq(ctr(&x->stats.rx_dgrams), 1);
	ck_assert_uint_eq(ctr(&x->stats.rx_bytes), 4);
	if (dsm__now_ns() < dl - 5 * 1000000LL) {
		ck_assert_uint_eq(fk->n, 0);
		ck_assert_int_eq(x->ops->wait_prepare(x, &fd), 0);
	}
	/* After both are due: wait_prepare refuses to block, progress
	 * releases them, in order. */
	while (dsm__now_ns() < t1 + 30 * 1000000LL) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	ck_assert_int_eq(x->ops->wait_prepare(x, &fd), DSM_EAGAIN);
	x->ops->progress(x, noop_rx, &got, 8);
	ck_assert_uint_eq(fk->n, 2);
	ck_assert_uint_eq(rec_seq(&fk->recs[0]), 0);
	ck_assert_uint_eq(rec_seq(&fk->recs[1]), 1);
	ck_assert_int_eq(x->ops->next_deadline(x), INT64_MAX);
	ck_assert_int_eq(x->ops->wait_prepare(x, &fd), 0);
	x->ops->destroy(x);
}
END_TEST

START_TEST(fault_delay_range)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new("delay_ms=1-3,seed=9", 2, 0, &fk);
	uint8_t buf[16];
	int64_t t0 = dsm__now_ns(), dl = 0;
	int got = 0;

	/* Delays spread over [1,3] ms: the earliest of 200 is near 1 ms. */
	for (uint32_t i = 0; i < 200; i++)
		ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, i, sizeof(buf))), 0);
	dl = x->ops->next_deadline(x);
	ck_assert_int_ge(dl, t0 + 1000000LL);
	ck_assert_int_lt(dl, dsm__now_ns() + 1100000LL);
	while (fk->n < 200) {
		ck_assert_int_lt(dsm__now_ns() - t0, 2000 * 1000000LL);
		x->ops->progress(x, noop_rx, &got, 1);
	}
	ck_assert_int_ge(dsm__now_ns() - t0, 3000000LL - 1000000LL);
	x->ops->destroy(x);
}
END_TEST

START_TEST(fault_link_targeting)
{
	struct fake *fk;
	struct dsm__xport *x;
	uint8_t buf[16];

	/* Only 0>1 is targeted: datagrams to 2 and 0 pass untouched. */
	x = shim_new("drop=1,link=0>1,seed=1", 3, 0, &fk);
	for (uint32_t i = 0; i < 30; i++)
		ck_assert_int_eq(x->ops->send(x, i % 3, buf, make_dgram(buf, i, sizeof(buf))), 0);
	ck_assert_uint_eq(fk->n, 20);
	for (size_t i = 0; i < fk->n; i++)
		ck_assert_uint_ne(fk->recs[i].dst, 1);
	ck_assert_uint_eq(ctr(&x->stats.f_drop), 10);
	x->ops->destroy(x);

	/* Links of another source never match. */
	x = shim_new("drop=1,link=1>*;2>0", 3, 0, &fk);
	for (uint32_t i = 0; i < 30; i++)
		ck_assert_int_eq(x->ops->send(x, i % 3, buf, make_dgram(buf, i, sizeof(buf))), 0);
	ck_assert_uint_eq(fk->n, 30);
	x->ops->destroy(x);

	/* Wildcard source. */
	x = shim_new("drop=1,link=*>2", 3, 1, &fk);
	for (uint32_t i = 0; i < 30; i++)
		ck_assert_int_eq(x->ops->send(x, i % 3, buf, make_dgram(buf, i, sizeof(buf))), 0);
	ck_assert_uint_eq(fk->n, 20);
	for (size_t i = 0; i < fk->n; i++)
		ck_assert_uint_ne(fk->recs[i].dst, 2);
	x->ops->destroy(x);
}
END_TEST

/* Run 1000 datagrams to rank 1 (and, if noise, interleaved ones to rank 2)
 * through a shim; return the records that reached rank 1. */
static struct rec *run_seq(const char *spec, bool noise, size_t *n)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new(spec, 3, 0, &fk);
	uint8_t buf[32];
	struct rec *out;
	size_t k = 0;

	for (uint32_t i = 0; i < 1000; i++) {
		ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, i, sizeof(buf))), 0);
		if (noise && i % 3 == 0)
			ck_assert_int_eq(x->ops->send(x, 2, buf, make_dgram(buf, ~i, sizeof(buf))), 0);
	}
	out = calloc(fk->n + 1, sizeof(*out));
	ck_assert_ptr_nonnull(out);
	for (size_t i = 0; i < fk->n; i++)
		if (fk->recs[i].dst == 1)
			out[k++] = fk->recs[i];
	*n = k;
	x->ops->destroy(x);
	return out;
}

START_TEST(fault_seed_deterministic)
{
	const char *a = "drop=0.3,dup=0.2,corrupt=0.2,seed=42";
	const char *b = "drop=0.3,dup=0.2,corrupt=0.2,seed=43";
	size_t n1, n2, n3, n4;
	struct rec *r1 = run_seq(a, false, &n1);
	struct rec *r2 = run_seq(a, false, &n2);
	struct rec *r3 = run_seq(b, false, &n3);
	struct rec *r4 = run_seq(a, true, &n4);

	/* Same seed: the same decisions, datagram for datagram. */
	ck_assert_uint_eq(n1, n2);
	ck_assert_mem_eq(r1, r2, n1 * sizeof(*r1));
	/* Another seed: different decisions. */
	ck_assert(n1 != n3 || memcmp(r1, r3, n1 * sizeof(*r1)));
	/* Traffic on another link does not disturb this link's stream. */
	ck_assert_uint_eq(n1, n4);
	ck_assert_mem_eq(r1, r4, n1 * sizeof(*r1));
	free(r1);
	free(r2);
	free(r3);
	free(r4);
}
END_TEST

#define RATE_N 100000

/* Send RATE_N datagrams of 16 bytes through spec; return the fake. */
static struct dsm__xport *run_rate(const char *spec, struct fake **fk)
{
	struct dsm__xport *x = shim_new(spec, 2, 0, fk);
	uint8_t buf[16];

	for (uint32_t i = 0; i < RATE_N; i++)
		ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, i, sizeof(buf))), 0);
	return x;
}

static void check_rate(const char *what, double got, double want)
{
	ck_assert_msg(got > want - 0.01 && got < want + 0.01, "%s: measured %.4f, configured %.4f",
		      what, got, want);
}

START_TEST(fault_rates)
{
	struct fake *fk;
	struct dsm__xport *x;
	uint8_t buf[16];
	size_t changed = 0, late = 0;
	uint32_t maxseen = 0;

	x = run_rate("drop=0.1,seed=11", &fk);
	check_rate("drop", (double)ctr(&x->stats.f_drop) / RATE_N, 0.1);
	ck_assert_uint_eq(fk->n + ctr(&x->stats.f_drop), RATE_N);
	x->ops->destroy(x);

	x = run_rate("dup=0.05,seed=12", &fk);
	check_rate("dup", (double)ctr(&x->stats.f_dup) / RATE_N, 0.05);
	ck_assert_uint_eq(fk->n, RATE_N + ctr(&x->stats.f_dup));
	x->ops->destroy(x);

	x = run_rate("corrupt=0.01,seed=13", &fk);
	for (size_t i = 0; i < fk->n; i++) {
		make_dgram(buf, (uint32_t)i, sizeof(buf));
		if (memcmp(fk->recs[i].data, buf, sizeof(buf))) {
			ck_assert_int_eq(bits_differ(fk->recs[i].data, buf, sizeof(buf)), 1);
			changed++;
		}
	}
	ck_assert_uint_eq(changed, ctr(&x->stats.f_corrupt));
	check_rate("corrupt", (double)changed / RATE_N, 0.01);
	x->ops->destroy(x);

	/* reorder=p holds a datagram with probability p unless it is the one
	 * releasing a held datagram, so p/(1+p) of all datagrams are held
	 * back, each swapped with its successor. */
	x = run_rate("reorder=0.1,seed=14", &fk);
	{
		struct timespec ts = { 0, 5 * 1000000 }; /* the last may still be held */
		int got = 0;

		nanosleep(&ts, NULL);
		x->ops->progress(x, noop_rx, &got, 1);
	}
	ck_assert_uint_eq(fk->n, RATE_N);
	for (size_t i = 0; i < fk->n; i++) {
		uint32_t s = rec_seq(&fk->recs[i]);

		if (s < maxseen)
			late++;
		if (s > maxseen)
			maxseen = s;
	}
	ck_assert_uint_eq(late, ctr(&x->stats.f_reorder));
	check_rate("reorder", (double)late / RATE_N, 0.1 / 1.1);
	x->ops->destroy(x);
}
END_TEST

START_TEST(fault_pool_full)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new("delay_ms=10000,seed=5", 2, 0, &fk);
	uint8_t buf[16];

	/* 4096 slots held for 10 s; the rest go out at once, never blocking. */
	for (uint32_t i = 0; i < 5000; i++)
		ck_assert_int_eq(x->ops->send(x, 1, buf, make_dgram(buf, i, sizeof(buf))), 0);
	ck_assert_uint_eq(ctr(&x->stats.f_delay), 4096);
	ck_assert_uint_eq(fk->n, 5000 - 4096);
	x->ops->destroy(x); /* discards the held ones */
}
END_TEST

START_TEST(fault_errors)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new("drop=0", 2, 0, &fk);
	const struct dsm__xport_ops *ops;
	struct dsm__fault_cfg cfg;
	uint8_t buf[1473] = { 0 };
	int destroyed = 0;

	ck_assert_int_eq(x->ops->send(x, 2, buf, 1), DSM_EINVAL);
	ck_assert_int_eq(x->ops->send(x, 1, buf, 1473), DSM_EMSGSIZE);
	ck_assert_int_eq(x->ops->send(x, 1, buf, 1472), 0);
	/* Inner EAGAIN is passed through and counted. */
	fk->eagain_left = 1;
	ck_assert_int_eq(x->ops->send(x, 1, buf, 10), DSM_EAGAIN);
	ck_assert_uint_eq(ctr(&x->stats.tx_eagain), 1);
	ops = x->ops;
	x->ops->destroy(x);
	ops->destroy(NULL); /* does nothing */

	/* A bad configuration: the inner transport is destroyed too. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.drop = 1.5;
	fk = fake_new(2, 0, 1472);
	fk->destroyed = &destroyed;
	x = (struct dsm__xport *)1;
	ck_assert_int_eq(dsm__fault_create(&fk->x, &cfg, &x), DSM_EINVAL);
	ck_assert_int_eq(destroyed, 1);
	ck_assert_int_eq(dsm__fault_create(NULL, &cfg, &x), DSM_EINVAL);

	/* Destroying the shim destroys the inner. */
	destroyed = 0;
	cfg.drop = 0;
	fk = fake_new(2, 0, 1472);
	fk->destroyed = &destroyed;
	ck_assert_int_eq(dsm__fault_create(&fk->x, &cfg, &x), 0);
	x->ops->destroy(x);
	ck_assert_int_eq(destroyed, 1);
}
END_TEST

/* Run dsm__fault_create on a fresh fake of nodes ranks with spec; returns
 * its result, whether the fake was destroyed, and what was logged. */
static int create_logged(const char *spec, unsigned nodes, int *destroyed, char *log,
			 size_t loglen)
{
	struct dsm__fault_cfg cfg;
	struct dsm__xport *x = NULL;
	struct fake *fk;
	char err[256] = "";
	FILE *tmp = tmpfile();
	int saved, r;
	size_t n;

	ck_assert_ptr_nonnull(tmp);
	ck_assert_msg(dsm__fault_parse(spec, &cfg, err, sizeof(err)) == 0, "parse '%s': %s",
		      spec, err);
	fk = fake_new(nodes, 0, 1472);
	*destroyed = 0;
	fk->destroyed = destroyed;
	fflush(stderr);
	saved = dup(2);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_eq(dup2(fileno(tmp), 2), 2);
	r = dsm__fault_create(&fk->x, &cfg, &x);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(log, 1, loglen - 1, tmp);
	log[n] = '\0';
	fclose(tmp);
	if (r == 0)
		x->ops->destroy(x);
	return r;
}

START_TEST(fault_link_rank_must_exist)
{
	/* DSM_FAULT=link=9>7 on a 2-node job used to be accepted and inject
	 * nothing: every link naming a rank >= nodes is now DSM_ECONFIG, the
	 * inner transport is destroyed, and the log names the variable and
	 * the rank. */
	static const struct { const char *spec; const char *rank; } bad[] = {
		{ "link=9>7", "rank 9" },
		{ "drop=1,link=0>2", "rank 2" },
		{ "link=2>*", "rank 2" },
		{ "link=*>5", "rank 5" },
		{ "drop=0.5,link=0>1;1>7", "rank 7" },
	};
	char log[1024];
	int destroyed;

	for (size_t i = 0; i < DSM__ARRAY_SIZE(bad); i++) {
		ck_assert_msg(create_logged(bad[i].spec, 2, &destroyed, log, sizeof(log)) ==
			      DSM_ECONFIG, "%s on 2 nodes was accepted", bad[i].spec);
		ck_assert_int_eq(destroyed, 1);
		ck_assert_msg(strstr(log, "DSM_FAULT") && strstr(log, bad[i].rank),
			      "%s: log does not name DSM_FAULT and %s: '%s'", bad[i].spec,
			      bad[i].rank, log);
	}
	/* Ranks that exist, and wildcards, are fine. */
	ck_assert_int_eq(create_logged("drop=1,link=1>0;*>1;0>*", 2, &destroyed, log,
				       sizeof(log)), 0);
	ck_assert_int_eq(destroyed, 1);
	ck_assert_int_eq(create_logged("link=9>7", 10, &destroyed, log, sizeof(log)), 0);
}
END_TEST

struct thr {
	struct dsm__xport *x;
	uint32_t base;
};

static void *sender(void *arg)
{
	struct thr *t = arg;
	uint8_t buf[16];

	for (uint32_t i = 0; i < 20000; i++)
		ck_assert_int_eq(t->x->ops->send(t->x, 1 + i % 2, buf,
						 make_dgram(buf, t->base + i, sizeof(buf))), 0);
	return NULL;
}

START_TEST(fault_threads)
{
	struct fake *fk;
	struct dsm__xport *x = shim_new("drop=0.2,dup=0.1,reorder=0.2,delay_ms=0-1,seed=8", 3, 0,
					&fk);
	pthread_t th[4];
	struct thr t[4];
	int got = 0;
	int64_t t0;

	for (int i = 0; i < 4; i++) {
		t[i].x = x;
		t[i].base = (uint32_t)i << 24;
		ck_assert_int_eq(pthread_create(&th[i], NULL, sender, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		x->ops->progress(x, noop_rx, &got, 1);
		pthread_join(th[i], NULL);
	}
	/* Everything not dropped comes out once (twice if duplicated). */
	t0 = dsm__now_ns();
	while (x->ops->next_deadline(x) != INT64_MAX) {
		ck_assert_int_lt(dsm__now_ns() - t0, 2000 * 1000000LL);
		x->ops->progress(x, noop_rx, &got, 1);
	}
	ck_assert_uint_eq(fk->n + ctr(&x->stats.f_drop), 80000 + ctr(&x->stats.f_dup));
	ck_assert_uint_eq(ctr(&x->stats.tx_dgrams), fk->n);
	x->ops->destroy(x);
}
END_TEST

static Suite *fault_suite(void)
{
	Suite *s = suite_create("fault");
	DSM_TEST_ADD(s, fault_parse_valid, 60);
	DSM_TEST_ADD(s, fault_parse_reject, 60);
	DSM_TEST_ADD(s, fault_drop_all, 60);
	DSM_TEST_ADD(s, fault_dup_all, 60);
	DSM_TEST_ADD(s, fault_corrupt_one_bit, 60);
	DSM_TEST_ADD(s, fault_reorder_swaps, 60);
	DSM_TEST_ADD(s, fault_delay_releases, 60);
	DSM_TEST_ADD(s, fault_delay_range, 60);
	DSM_TEST_ADD(s, fault_link_targeting, 60);
	DSM_TEST_ADD(s, fault_seed_deterministic, 60);
	DSM_TEST_ADD(s, fault_rates, 60);
	DSM_TEST_ADD(s, fault_pool_full, 60);
	DSM_TEST_ADD(s, fault_errors, 60);
	DSM_TEST_ADD(s, fault_link_rank_must_exist, 60);
	DSM_TEST_ADD(s, fault_threads, 60);
	return s;
}

int main(void)
{
	return dsm_test_run_suite(fault_suite());
}
