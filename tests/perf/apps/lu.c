/*
 * bench-apps kernel 'lu' (app.h): blocked dense LU factorisation without
 * pivoting, the structure of SPLASH-2's LU (the non-contiguous variant),
 * written as a user writes it.
 *
 * Data: one n x n matrix of doubles, ROW-MAJOR (a[i * n + j]), allocated by
 * rank 0 with plain ops->alloc and filled by rank 0 in the serial start-up:
 * a pseudo-random value in [0, 1) per element from a hash of (i, j), plus n
 * on the diagonal, so the matrix is strictly diagonally dominant and needs
 * no pivoting. The pointer is broadcast. Size = n (a multiple of the block
 * size B = 32; other sizes are rounded up).
 *
 * Work split: the matrix is cut into nb x nb blocks of B x B; the nodes form
 * a pr x pc grid (pr = the largest divisor of nodes <= sqrt(nodes), pc =
 * nodes / pr: 1x1, 1x2, 2x2, ...) and block (I, J) belongs to node
 * (I mod pr) * pc + (J mod pc): 2-D block-cyclic. For each step k:
 *   1. the owner of the diagonal block (k, k) factors it in place
 *      (L unit lower, U upper);                                   barrier
 *   2. the owners of the row panel (k, J > k) solve L_kk X = A_kJ, the
 *      owners of the column panel (I > k, k) solve X U_kk = A_Ik;  barrier
 *   3. the owners of the trailing blocks (I > k, J > k) update
 *      A_IJ -= A_Ik A_kJ;                                          barrier
 * Every element goes through the same operations in the same order
 * whichever node owns its block, so the result is bit-for-bit the same for
 * every node count and the reference.
 *
 * Result: rank 0, after the last barrier, folds the bits of every element
 * in index order into the checksum; value = sum of log(u_ii) (log det A),
 * for humans (rel_tol 0: the checksum is the comparison); it also checks a
 * sample of entries of L U against the original matrix (regenerated from
 * the hash) and fails the run if the residual is not small.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "app.h"

#define BS 32             /* block size, fixed */
#define N_MAX 32768       /* 8 GiB of matrix: far beyond any heap here */
#define SAMPLES 64        /* entries of L U checked against A */
#define RESID_MAX 1e-9    /* largest relative residual that passes */

/* The original matrix's element (i, j): the same on every node. */
static double init_elem(long i, long j, long n)
{
	uint64_t h = app_mix(app_mix(0x4c55ull, (uint64_t)i), (uint64_t)j);
	double v = (double)(h >> 11) * 0x1.0p-53;

	return i == j ? v + (double)n : v;
}

/* Factor the diagonal block at (k0, k0) in place. */
static void factor_diag(double *a, long n, long k0)
{
	for (long kk = k0; kk < k0 + BS; kk++) {
		double p = a[kk * n + kk];

		for (long i = kk + 1; i < k0 + BS; i++) {
			double l = a[i * n + kk] / p;

			a[i * n + kk] = l;
			for (long j = kk + 1; j < k0 + BS; j++)
				a[i * n + j] -= l * a[kk * n + j];
		}
	}
}

/* Row panel block (k0, j0): A_kJ := L_kk^-1 A_kJ (L unit lower). */
static void solve_row(double *a, long n, long k0, long j0)
{
	for (long kk = k0; kk < k0 + BS; kk++)
		for (long i = kk + 1; i < k0 + BS; i++) {
			double l = a[i * n + kk];

			for (long j = j0; j < j0 + BS; j++)
				a[i * n + j] -= l * a[kk * n + j];
		}
}

/* Column panel block (i0, k0): A_Ik := A_Ik U_kk^-1. */
static void solve_col(double *a, long n, long i0, long k0)
{
	for (long kk = k0; kk < k0 + BS; kk++) {
		double p = a[kk * n + kk];

		for (long i = i0; i < i0 + BS; i++) {
			double l = a[i * n + kk] / p;

			a[i * n + kk] = l;
			for (long j = kk + 1; j < k0 + BS; j++)
				a[i * n + j] -= l * a[kk * n + j];
		}
	}
}

/* Trailing block (i0, j0) -= A(i0, k0) A(k0, j0). */
static void update(double *a, long n, long i0, long j0, long k0)
{
	for (long i = i0; i < i0 + BS; i++)
		for (long kk = k0; kk < k0 + BS; kk++) {
			double l = a[i * n + kk];

			for (long j = j0; j < j0 + BS; j++)
				a[i * n + j] -= l * a[kk * n + j];
		}
}

/* Relative residual of (L U)(i, j) against the original A(i, j). */
static double residual(const double *a, long n, long i, long j)
{
	double s = 0, want = init_elem(i, j, n);
	long m = i < j ? i : j;

	for (long k = 0; k <= m; k++) {
		double l = k == i ? 1.0 : a[i * n + k];

		s += l * a[k * n + j];
	}
	return fabs(s - want) / fabs(want);
}

static int run(const struct app_ops *ops, long size, struct app_result *out)
{
	long n = (size + BS - 1) / BS * BS, nb, pr = 1, pc;
	int me = ops->rank;
	double *a = NULL, t0, t1, worst = 0, logdet = 0;
	uint64_t h = 0;

	if (n > N_MAX) {
		fprintf(stderr, "app lu: n %ld > %d\n", n, N_MAX);
		return -1;
	}
	nb = n / BS;
	for (long d = 1; d * d <= ops->nodes; d++)
		if (ops->nodes % d == 0)
			pr = d;
	pc = ops->nodes / pr;

	if (me == 0) {
		a = ops->alloc((size_t)n * (size_t)n * sizeof(*a));
		if (!a) {
			fprintf(stderr, "app lu: alloc of %ld x %ld doubles failed\n", n, n);
			return -1;
		}
		for (long i = 0; i < n; i++)
			for (long j = 0; j < n; j++)
				a[i * n + j] = init_elem(i, j, n);
	}
	APP_CK(ops->bcast(&a, sizeof(a), 0));
	APP_CK(ops->barrier());

#define OWNER(I, J) (((I) % pr) * pc + (J) % pc)
	t0 = ops->now();
	for (long k = 0; k < nb; k++) {
		long k0 = k * BS;

		if (OWNER(k, k) == me)
			factor_diag(a, n, k0);
		APP_CK(ops->barrier());
		for (long J = k + 1; J < nb; J++)
			if (OWNER(k, J) == me)
				solve_row(a, n, k0, J * BS);
		for (long I = k + 1; I < nb; I++)
			if (OWNER(I, k) == me)
				solve_col(a, n, I * BS, k0);
		APP_CK(ops->barrier());
		for (long I = k + 1; I < nb; I++)
			for (long J = k + 1; J < nb; J++)
				if (OWNER(I, J) == me)
					update(a, n, I * BS, J * BS, k0);
		APP_CK(ops->barrier());
	}
	t1 = ops->now();
#undef OWNER

	if (me == 0) {
		for (long i = 0; i < n * n; i++)
			h = app_mix(h, app_bits(a[i]));
		for (long i = 0; i < n; i++)
			logdet += log(fabs(a[i * n + i]));
		for (int s = 0; s < SAMPLES; s++) {
			uint64_t r = app_mix(0x5eedull, (uint64_t)s);
			long i = (long)(r % (uint64_t)n), j = (long)((r >> 32) % (uint64_t)n);
			double e = residual(a, n, i, j);

			if (!(e <= worst))
				worst = e;
		}
		if (!(worst <= RESID_MAX)) {
			fprintf(stderr, "app lu: residual %g of L U against A > %g\n", worst,
				RESID_MAX);
			ops->free(a);
			return -1;
		}
		out->seconds = t1 - t0;
		out->checksum = h;
		out->value = logdet;
		out->rel_tol = 0;
		snprintf(out->detail, sizeof(out->detail),
			 "n %ld block %d grid %ldx%ld row-major, residual %.1e of %d samples",
			 n, BS, pr, pc, worst, SAMPLES);
	}
	if (me == 0)
		ops->free(a); /* no node touches it after the last barrier */
	return 0;
}

const struct app_kernel app_lu = {
	.name = "lu",
	.what = "blocked LU, no pivoting, n x n row-major, 2-D block-cyclic 32x32 blocks",
	.default_size = 2560,
	.run = run,
};
