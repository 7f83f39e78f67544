/*
 * The shared-memory kernels of bench-apps, written the way a user writes a
 * pthreads-style program for libdsm: rank 0 allocates every shared array
 * with plain dsm_malloc (default placement) in a serial start-up and hands
 * the pointers over, every node works on its share (split by rank), and
 * barriers (and locks or atomics where the kernel needs them) separate the
 * phases. Nothing is placed by hand, nothing is tuned to the library.
 *
 * The same source runs two ways (as demos/matmul does):
 *   - on libdsm, under dsmrun -n N: the ops below are the dsm_* calls;
 *   - --reference: one process, no libdsm: alloc is malloc, nodes is 1,
 *     barrier/lock/unlock do nothing, fetch_add is a plain add.
 * A kernel must compute the same result both ways (the driver compares
 * them): rank 0 folds the output, after the last barrier and serially in
 * index order, into a checksum that must be equal for every node count
 * (integer outputs, and floating-point outputs that each element gets by
 * the same operations whoever computes it), and/or into a value compared
 * within a relative tolerance (when splitting a reduction over nodes
 * changes its order, as in conjugate gradient's dot products).
 *
 * A kernel's file defines one `const struct app_kernel app_<name>` and is
 * listed in tests/perf/apps/meson.build and in app-main.c's table.
 */
#ifndef DSM_TESTS_PERF_APPS_APP_H
#define DSM_TESTS_PERF_APPS_APP_H

#include <stddef.h>
#include <stdint.h>

struct app_ops {
	int rank, nodes;
	/* Shared memory (dsm_malloc; malloc in the reference): zeroed is NOT
	 * promised; NULL on failure. */
	void *(*alloc)(size_t size);
	void (*free)(void *p);
	/* Collective: root's len bytes of buf to every node (e.g. pointers). */
	int (*bcast)(void *buf, size_t len, int root);
	int (*barrier)(void);
	int (*lock)(uint32_t id);
	int (*unlock)(uint32_t id);
	int (*fetch_add)(int64_t *addr, int64_t v, int64_t *old);
	/* Seconds of a monotonic clock. */
	double (*now)(void);
};

struct app_result {
	double seconds;     /* the timed phase on rank 0: between the barriers
			     * around the computation, set-up excluded */
	uint64_t checksum;  /* of the output, equal for every node count */
	double value;       /* compared within rel_tol (rel_tol 0: unused) */
	double rel_tol;
	char detail[160];   /* one line for humans (sizes, iterations, ...) */
};

struct app_kernel {
	const char *name;
	const char *what;   /* one line: the kernel and how it splits work */
	long default_size;  /* its problem size when none is given */
	/* Run on every node with the same size; 0 or a negative DSM_E* code
	 * (or -1) after printing why. Only rank 0's result is reported. */
	int (*run)(const struct app_ops *ops, long size, struct app_result *out);
};

/* Abort the run from inside a kernel: prints "app: what: reason" and exits
 * 1 on this node (dsmrun then stops the others). */
void app_fail(const char *what, int err) __attribute__((noreturn));

/* A call of the ops that must succeed. */
#define APP_CK(call)                                                    \
	do {                                                            \
		int app_ck_ = (call);                                   \
		if (app_ck_ != 0)                                       \
			app_fail(#call, app_ck_);                       \
	} while (0)

/* Fold v into a running checksum h (order matters: fold in index order). */
static inline uint64_t app_mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
	return h * 0xBF58476D1CE4E5B9ull;
}

/* The bits of a double, for the checksum. */
static inline uint64_t app_bits(double x)
{
	union { double d; uint64_t u; } v = { .d = x };

	return v.u;
}

#endif /* DSM_TESTS_PERF_APPS_APP_H */
