/*
 * bench-apps kernel 'fft' (app.h): a 1-D complex FFT by the six-step
 * (transpose) method, written the way SPLASH-2 FFT writes it, on the
 * app_ops of app.h.
 *
 * Data: size = m, n = 2^m complex doubles (m even), seen as an r x r
 * matrix, r = 2^(m/2), row-major, rows not padded. Rank 0 allocates, in
 * the serial start-up, x and trans (n points each), the twiddles umain2
 * (n: umain2[i*r + j] = exp(-2 pi i*j/n)) and the row roots umain (r/2:
 * exp(-2 pi k/r)); it fills x with pseudo-random points in [-1,1)^2 from
 * a fixed seed, and broadcasts the pointers. Every node copies umain into
 * private memory (SPLASH-2's upriv) before the timed phase.
 *
 * Work split: node k of P owns rows [k*r/P, (k+1)*r/P) of x and of trans.
 * A transpose writes the node's own rows of the destination and reads the
 * same columns of every row of the source (blocks of 32 x 32 points,
 * starting with its own rows and going round the others: all to all).
 *
 * Steps (forward transform, X[k] = sum_j x[j] exp(-2 pi i j k / n)):
 *   transpose x -> trans; on own rows of trans: row FFT (radix 2,
 *   iterative, bit-reversed input order) then twiddle; barrier;
 *   transpose trans -> x; row FFTs on own rows of x; barrier;
 *   transpose x -> trans; barrier.
 * trans then holds X in natural order. Each output element gets the same
 * operations whoever computes its row (the transposes only move values),
 * so every node count writes the same bits.
 *
 * Timed: rank 0 from the barrier before the first transpose to the one
 * after the last. Checked afterwards by rank 0: Parseval (sum |X|^2 =
 * n sum |x|^2, relative error below 1e-9) at every size, and for m <= 12
 * every X[k] against a naive DFT in long double (largest error below
 * 1e-10 of the output's RMS). Checksum = app_bits of re then im of every
 * X[k] in index order.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

#define SEED 0xff7c0ffee5eed123ull
#define BLOCK 32        /* transpose block edge, in points */
#define NAIVE_MAX_M 12  /* check against the naive DFT up to n = 2^12 */
#define PI 3.141592653589793238462643383279503L /* M_PI is not C11 */

struct cplx {
	double re, im;
};

/* What rank 0 broadcasts. */
struct shared {
	struct cplx *x, *trans;  /* [r][r] each */
	struct cplx *umain2;     /* [r][r] twiddles */
	struct cplx *umain;      /* [r/2] roots of the row FFTs */
};

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The input, point by point: the same sequence whenever it is asked for. */
static struct cplx input_next(uint64_t *s)
{
	struct cplx c;

	c.re = (double)(splitmix(s) >> 11) * 0x1p-52 - 1.0;
	c.im = (double)(splitmix(s) >> 11) * 0x1p-52 - 1.0;
	return c;
}

/* exp(-2 pi i num/den), with num reduced mod den first. */
static struct cplx root(uint64_t num, uint64_t den)
{
	double a = -2.0 * (double)PI * (double)(num % den) / (double)den;
	struct cplx c = { cos(a), sin(a) };

	return c;
}

/* In-place FFT of one row of r = 2^m1 points; u[k] = exp(-2 pi i k/r). */
static void row_fft(struct cplx *a, long r, const struct cplx *u)
{
	for (long i = 1, j = 0; i < r; i++) {
		long bit = r >> 1;

		for (; j & bit; bit >>= 1)
			j ^= bit;
		j ^= bit;
		if (i < j) {
			struct cplx t = a[i];

			a[i] = a[j];
			a[j] = t;
		}
	}
	for (long len = 2; len <= r; len <<= 1) {
		long half = len >> 1, step = r / len;

		for (long i = 0; i < r; i += len)
			for (long j = 0; j < half; j++) {
				struct cplx w = u[j * step], *p = &a[i + j], *q = &a[i + j + half];
				double tr = w.re * q->re - w.im * q->im;
				double ti = w.re * q->im + w.im * q->re;

				q->re = p->re - tr;
				q->im = p->im - ti;
				p->re += tr;
				p->im += ti;
			}
	}
}

/* Row i of the matrix (after its row FFT) times the twiddles of row i. */
static void twiddle_row(struct cplx *a, long r, const struct cplx *tw)
{
	for (long j = 0; j < r; j++) {
		double re = a[j].re * tw[j].re - a[j].im * tw[j].im;
		double im = a[j].re * tw[j].im + a[j].im * tw[j].re;

		a[j].re = re;
		a[j].im = im;
	}
}

/* dst[i][j] = src[j][i] for my rows i in [lo, hi), every j: blocks of b x b,
 * the source's row blocks taken from my own rows on, round the others. */
static void transpose(const struct cplx *src, struct cplx *dst, long r, long lo, long hi)
{
	const long b = r < BLOCK ? r : BLOCK;
	const long first = lo - lo % b;

	for (long t = 0; t < r; t += b) {
		long j0 = (first + t) % r;

		for (long i0 = lo; i0 < hi; i0 += b) {
			long i1 = i0 + b < hi ? i0 + b : hi;

			for (long j = j0; j < j0 + b; j++)
				for (long i = i0; i < i1; i++)
					dst[i * r + j] = src[j * r + i];
		}
	}
}

/* Rank 0, after the run: every X[k] against sum_j x[j] exp(-2 pi i jk/n)
 * in long double. Returns the largest error over the output's RMS. */
static double naive_check(const struct cplx *X, long n)
{
	long double *wr = malloc((size_t)n * sizeof(*wr));
	long double *wi = malloc((size_t)n * sizeof(*wi));
	struct cplx *x = malloc((size_t)n * sizeof(*x));
	long double err = 0, pow2 = 0;
	uint64_t s = SEED;

	if (!wr || !wi || !x)
		app_fail("naive DFT: malloc", -1);
	for (long t = 0; t < n; t++) {
		long double a = -2.0L * PI * t / n;

		wr[t] = cosl(a);
		wi[t] = sinl(a);
		x[t] = input_next(&s);
	}
	for (long k = 0; k < n; k++) {
		long double re = 0, im = 0, e;

		for (long j = 0; j < n; j++) {
			long t = (long)(((uint64_t)j * (uint64_t)k) % (uint64_t)n);

			re += x[j].re * wr[t] - x[j].im * wi[t];
			im += x[j].re * wi[t] + x[j].im * wr[t];
		}
		e = hypotl(X[k].re - re, X[k].im - im);
		if (e > err)
			err = e;
		pow2 += re * re + im * im;
	}
	free(wr);
	free(wi);
	free(x);
	return (double)(err / sqrtl(pow2 / n));
}

static int run(const struct app_ops *ops, long size, struct app_result *out)
{
	const int P = ops->nodes, me = ops->rank;
	const long m = size;
	struct shared sh = { NULL, NULL, NULL, NULL };
	long n, r, lo, hi;
	struct cplx *upriv;
	double t0, t1, in_pow = 0;

	if (m < 2 || m > 30 || (m & 1)) {
		fprintf(stderr, "app fft: size %ld: give m, even, 2..30 (n = 2^m points)\n", m);
		return -1;
	}
	n = 1L << m;
	r = 1L << (m / 2);
	if (r < P) {
		fprintf(stderr, "app fft: m %ld: %ld rows for %d nodes\n", m, r, P);
		return -1;
	}
	lo = r * me / P;
	hi = r * (me + 1) / P;
	if (me == 0) {
		uint64_t s = SEED;

		sh.x = ops->alloc((size_t)n * sizeof(struct cplx));
		sh.trans = ops->alloc((size_t)n * sizeof(struct cplx));
		sh.umain2 = ops->alloc((size_t)n * sizeof(struct cplx));
		sh.umain = ops->alloc((size_t)(r / 2 > 0 ? r / 2 : 1) * sizeof(struct cplx));
		if (!sh.x || !sh.trans || !sh.umain2 || !sh.umain) {
			fprintf(stderr, "app fft: cannot allocate 3 x %ld points\n", n);
			app_fail("alloc", -1);
		}
		for (long i = 0; i < n; i++) {
			sh.x[i] = input_next(&s);
			in_pow += sh.x[i].re * sh.x[i].re + sh.x[i].im * sh.x[i].im;
		}
		for (long i = 0; i < r; i++)
			for (long j = 0; j < r; j++)
				sh.umain2[i * r + j] = root((uint64_t)i * (uint64_t)j, (uint64_t)n);
		for (long k = 0; k < r / 2; k++)
			sh.umain[k] = root((uint64_t)k, (uint64_t)r);
	}
	APP_CK(ops->bcast(&sh, sizeof(sh), 0));
	upriv = malloc((size_t)(r / 2 > 0 ? r / 2 : 1) * sizeof(*upriv));
	if (!upriv)
		app_fail("malloc", -1);
	memcpy(upriv, sh.umain, (size_t)(r / 2) * sizeof(*upriv));

	APP_CK(ops->barrier());
	t0 = ops->now();
	transpose(sh.x, sh.trans, r, lo, hi);
	for (long i = lo; i < hi; i++) {
		row_fft(&sh.trans[i * r], r, upriv);
		twiddle_row(&sh.trans[i * r], r, &sh.umain2[i * r]);
	}
	APP_CK(ops->barrier());
	transpose(sh.trans, sh.x, r, lo, hi);
	for (long i = lo; i < hi; i++)
		row_fft(&sh.x[i * r], r, upriv);
	APP_CK(ops->barrier());
	transpose(sh.x, sh.trans, r, lo, hi);
	APP_CK(ops->barrier());
	t1 = ops->now();
	free(upriv);

	if (me == 0) {
		const struct cplx *X = sh.trans;
		double out_pow = 0, rel, naive = -1;
		uint64_t h = 0;

		for (long k = 0; k < n; k++) {
			h = app_mix(h, app_bits(X[k].re));
			h = app_mix(h, app_bits(X[k].im));
			out_pow += X[k].re * X[k].re + X[k].im * X[k].im;
		}
		rel = fabs(out_pow - (double)n * in_pow) / ((double)n * in_pow);
		if (!(rel < 1e-9)) {
			fprintf(stderr, "app fft: Parseval fails: sum |X|^2 off by %.3g (relative)\n",
				rel);
			return -1;
		}
		if (m <= NAIVE_MAX_M) {
			naive = naive_check(X, n);
			if (!(naive < 1e-10)) {
				fprintf(stderr, "app fft: off the naive DFT by %.3g of the RMS\n", naive);
				return -1;
			}
		}
		out->seconds = t1 - t0;
		out->checksum = h;
		if (naive >= 0)
			snprintf(out->detail, sizeof(out->detail),
				 "2^%ld points (%ld x %ld, 3 x %.0f MiB), Parseval %.1e, naive DFT %.1e",
				 m, r, r, (double)n * sizeof(struct cplx) / (1 << 20), rel, naive);
		else
			snprintf(out->detail, sizeof(out->detail),
				 "2^%ld points (%ld x %ld, 3 x %.0f MiB), Parseval %.1e",
				 m, r, r, (double)n * sizeof(struct cplx) / (1 << 20), rel);
	}
	APP_CK(ops->barrier());
	if (me == 0) {
		ops->free(sh.x);
		ops->free(sh.trans);
		ops->free(sh.umain2);
		ops->free(sh.umain);
	}
	return 0;
}

const struct app_kernel app_fft = {
	.name = "fft",
	.what = "six-step 1-D complex FFT of 2^SIZE points (SIZE even) as an r x r matrix: "
		"3 all-to-all transposes, row FFTs and twiddles on rows split by rank",
	.default_size = 24,
	.run = run,
};
