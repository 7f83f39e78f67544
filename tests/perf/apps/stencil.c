/*
 * bench-apps kernel 'stencil' (app.h): 2-D Jacobi relaxation (5-point
 * stencil) on an n x n grid, written as a user writes it.
 *
 * Data: two n x n grids of doubles, row-major (g[i * n + j]), each its own
 * ops->alloc by rank 0, both filled by rank 0 in the serial start-up: the
 * boundary rows and columns hold fixed values (a smooth function of the
 * position), the interior a pseudo-random value in [0, 1) per point from a
 * hash of (i, j); both grids get the same contents, so the boundary is in
 * place whichever grid is the source. The pointers are broadcast. Size = n
 * (at least 3); the number of sweeps is fixed, ITERS.
 *
 * Work split: the n - 2 interior rows are cut into one contiguous block of
 * rows per node in rank order (the first (n - 2) mod nodes nodes get one
 * row more). Each sweep, every node computes its rows of the destination
 * grid from the source grid,
 *   dst[i][j] = 0.25 * (src[i-1][j] + src[i+1][j] + src[i][j-1] + src[i][j+1]),
 * then barrier, then every node swaps the two pointers (so a node reads its
 * neighbours' boundary rows written in the previous sweep). Each point is
 * the same arithmetic in the same order whoever computes it, so the result
 * is bit-for-bit the same for every node count and the reference.
 *
 * Result: rank 0, after the last barrier, folds the bits of every point of
 * the final grid in index order into the checksum; value = the sum of the
 * final grid's points in index order (rel_tol 0: for humans).
 */
#include <stdio.h>

#include "app.h"

#define ITERS 500      /* sweeps, fixed */
#define N_MAX 32768    /* 8 GiB per grid: far beyond any heap here */

/* The initial value of point (i, j): the same on every node. */
static double init_point(long i, long j, long n)
{
	uint64_t h;

	if (i == 0 || j == 0 || i == n - 1 || j == n - 1)
		return (double)(i + 2 * j) / (double)(3 * n);
	h = app_mix(app_mix(0x5354ull, (uint64_t)i), (uint64_t)j);
	return (double)(h >> 11) * 0x1.0p-53;
}

/* One sweep of rows [r0, r1) of dst from src. */
static void sweep(double *dst, const double *src, long n, long r0, long r1)
{
	for (long i = r0; i < r1; i++)
		for (long j = 1; j < n - 1; j++)
			dst[i * n + j] = 0.25 * (src[(i - 1) * n + j] + src[(i + 1) * n + j] +
						 src[i * n + j - 1] + src[i * n + j + 1]);
}

static int run(const struct app_ops *ops, long size, struct app_result *out)
{
	long n = size, rows, q, r, r0, r1;
	int me = ops->rank;
	double *g[2] = { NULL, NULL }, *src, *dst, t0, t1, sum = 0;
	uint64_t h = 0;

	if (n < 3 || n > N_MAX) {
		fprintf(stderr, "app stencil: n %ld not in 3..%d\n", n, N_MAX);
		return -1;
	}
	rows = n - 2;
	q = rows / ops->nodes;
	r = rows % ops->nodes;
	r0 = 1 + me * q + (me < r ? me : r);
	r1 = r0 + q + (me < r);

	if (me == 0) {
		for (int k = 0; k < 2; k++) {
			g[k] = ops->alloc((size_t)n * (size_t)n * sizeof(double));
			if (!g[k]) {
				fprintf(stderr, "app stencil: alloc of %ld x %ld doubles failed\n",
					n, n);
				if (k)
					ops->free(g[0]);
				return -1;
			}
			for (long i = 0; i < n; i++)
				for (long j = 0; j < n; j++)
					g[k][i * n + j] = init_point(i, j, n);
		}
	}
	APP_CK(ops->bcast(g, sizeof(g), 0));
	APP_CK(ops->barrier());

	src = g[0];
	dst = g[1];
	t0 = ops->now();
	for (int it = 0; it < ITERS; it++) {
		double *t;

		sweep(dst, src, n, r0, r1);
		APP_CK(ops->barrier());
		t = src;
		src = dst;
		dst = t;
	}
	t1 = ops->now();

	if (me == 0) {
		for (long i = 0; i < n * n; i++) {
			h = app_mix(h, app_bits(src[i]));
			sum += src[i];
		}
		out->seconds = t1 - t0;
		out->checksum = h;
		out->value = sum;
		out->rel_tol = 0;
		snprintf(out->detail, sizeof(out->detail),
			 "n %ld, %d Jacobi sweeps, 2 grids row-major, row blocks of %ld-%ld rows",
			 n, ITERS, q, q + (r > 0));
		/* no node touches the grids after the last barrier */
		ops->free(g[0]);
		ops->free(g[1]);
	}
	return 0;
}

const struct app_kernel app_stencil = {
	.name = "stencil",
	.what = "2-D Jacobi 5-point, n x n, 2 grids, 500 sweeps, row blocks per node",
	.default_size = 2304,
	.run = run,
};
