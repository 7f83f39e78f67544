/*
 * bench-apps kernel 'radix' (app.h): an integer radix sort written the way
 * SPLASH-2 RADIX writes it, on the app_ops of app.h.
 *
 * Data: size = n keys, uint32_t, pseudo-random over the full 32 bits from
 * a fixed seed. Rank 0 allocates, in the serial start-up, two key arrays
 * of n (keys[0] holds the input; the passes go keys[0] -> keys[1] ->
 * keys[0] ...) and the histogram, `long hist[nodes][RADIX]` (one row per
 * node), fills keys[0], and broadcasts the pointers.
 *
 * Work split: node r owns the keys at [r*n/P, (r+1)*n/P) of the source
 * array of every pass (P nodes); its share of the destination is wherever
 * its keys' digits send them, i.e. every page of it.
 *
 * Passes: RADIX = 2^8, 4 passes of 8 bits, least significant digit first
 * (4 passes: the sorted keys end in keys[0]). Per pass, every node:
 *   1. histogram: counts the digits of its share in private memory and
 *      stores the counts in its own row of hist; barrier;
 *   2. ranks: reads every node's row of hist and computes, in private
 *      memory, where its first key of each digit goes: the keys of all
 *      smaller digits, plus this digit's keys on lower ranks (each node
 *      computes the global ranks it needs; no second barrier is needed
 *      because nobody writes hist again before the barrier of step 3);
 *   3. permutation: writes each key of its share, in order, to the next
 *      position of its digit in the destination array (a stable scatter:
 *      every node writes into every page of the destination); barrier.
 * The result is the serial stable LSD radix sort, so every node count
 * writes the same bytes.
 *
 * Timed: rank 0 from the barrier before the first pass to the barrier
 * after the last one. Checked afterwards by rank 0: the output is sorted
 * and holds the input's keys (sum and mixed sum of the keys); checksum =
 * app_mix of every output key in index order.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

#define RADIX_BITS 8
#define RADIX (1u << RADIX_BITS)
#define PASSES (32 / RADIX_BITS)
#define SEED 0x5eed0f4ad1c5011dull

/* What rank 0 broadcasts. */
struct shared {
	uint32_t *keys[2];
	long *hist;   /* [nodes][RADIX] */
};

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The multiset fingerprint of n keys: does not depend on their order. */
static void fingerprint(const uint32_t *k, long n, uint64_t *sum, uint64_t *msum)
{
	uint64_t s = 0, m = 0;

	for (long i = 0; i < n; i++) {
		s += k[i];
		m += app_mix(0, k[i]);
	}
	*sum = s;
	*msum = m;
}

static int run(const struct app_ops *ops, long size, struct app_result *out)
{
	const int P = ops->nodes, me = ops->rank;
	const long n = size;
	const long lo = (long)((int64_t)n * me / P), hi = (long)((int64_t)n * (me + 1) / P);
	struct shared sh = { { NULL, NULL }, NULL };
	long count[RADIX], next[RADIX];
	uint64_t in_sum = 0, in_msum = 0;
	double t0, t1;

	if (n < 1) {
		fprintf(stderr, "app radix: size %ld: need at least 1 key\n", n);
		return -1;
	}
	if (me == 0) {
		uint64_t s = SEED;

		sh.keys[0] = ops->alloc((size_t)n * sizeof(uint32_t));
		sh.keys[1] = ops->alloc((size_t)n * sizeof(uint32_t));
		sh.hist = ops->alloc((size_t)P * RADIX * sizeof(long));
		if (!sh.keys[0] || !sh.keys[1] || !sh.hist) {
			fprintf(stderr, "app radix: cannot allocate 2 x %ld keys\n", n);
			app_fail("alloc", -1);
		}
		for (long i = 0; i < n; i++)
			sh.keys[0][i] = (uint32_t)(splitmix(&s) >> 32);
		fingerprint(sh.keys[0], n, &in_sum, &in_msum);
	}
	APP_CK(ops->bcast(&sh, sizeof(sh), 0));

	APP_CK(ops->barrier());
	t0 = ops->now();
	for (int pass = 0; pass < PASSES; pass++) {
		const uint32_t *src = sh.keys[pass & 1];
		uint32_t *dst = sh.keys[!(pass & 1)];
		const int shift = pass * RADIX_BITS;
		long base = 0;

		/* 1. histogram of my share, into my row */
		memset(count, 0, sizeof(count));
		for (long i = lo; i < hi; i++)
			count[(src[i] >> shift) & (RADIX - 1)]++;
		memcpy(&sh.hist[(size_t)me * RADIX], count, sizeof(count));
		APP_CK(ops->barrier());

		/* 2. my first destination of each digit */
		for (unsigned d = 0; d < RADIX; d++) {
			long below = 0, total = 0;

			for (int r = 0; r < P; r++) {
				long c = sh.hist[(size_t)r * RADIX + d];

				if (r < me)
					below += c;
				total += c;
			}
			next[d] = base + below;
			base += total;
		}

		/* 3. permutation: my keys, in order, to their places */
		for (long i = lo; i < hi; i++) {
			uint32_t k = src[i];

			dst[next[(k >> shift) & (RADIX - 1)]++] = k;
		}
		APP_CK(ops->barrier());
	}
	t1 = ops->now();

	if (me == 0) {
		const uint32_t *o = sh.keys[PASSES & 1];
		uint64_t h = 0, out_sum, out_msum;

		for (long i = 0; i < n; i++) {
			if (i && o[i - 1] > o[i]) {
				fprintf(stderr, "app radix: not sorted at %ld: %" PRIu32 " > %" PRIu32 "\n",
					i, o[i - 1], o[i]);
				return -1;
			}
			h = app_mix(h, o[i]);
		}
		fingerprint(o, n, &out_sum, &out_msum);
		if (out_sum != in_sum || out_msum != in_msum) {
			fprintf(stderr, "app radix: the output does not hold the input's keys\n");
			return -1;
		}
		out->seconds = t1 - t0;
		out->checksum = h;
		snprintf(out->detail, sizeof(out->detail),
			 "%ld uint32 keys (2 x %.0f MiB), radix 2^%d, %d passes, sorted",
			 n, (double)n * sizeof(uint32_t) / (1 << 20), RADIX_BITS, PASSES);
	}
	APP_CK(ops->barrier());
	if (me == 0) {
		ops->free(sh.keys[0]);
		ops->free(sh.keys[1]);
		ops->free(sh.hist);
	}
	return 0;
}

const struct app_kernel app_radix = {
	.name = "radix",
	.what = "LSD radix sort of SIZE uint32 keys, radix 2^8, 4 passes: per pass "
		"histograms by rank, ranks, permutation into every page; keys split by rank",
	.default_size = 80000000,
	.run = run,
};
