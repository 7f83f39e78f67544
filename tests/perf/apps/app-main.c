/*
 * app: one binary for every kernel of bench-apps (tests/perf/apps/app.h).
 *
 *   dsmrun -n N app KERNEL [-s SIZE]     on libdsm, N nodes
 *   app KERNEL [-s SIZE] --reference     one process, malloc, no libdsm
 *   app --list                           the kernels
 *
 * Rank 0 prints one line:
 *   app KERNEL size SIZE nodes N seconds S checksum HEX value V tol T: DETAIL
 * which bench-apps parses (and compares with the reference's). Exit 0, 1
 * on a failure (the kernel's message says which), 2 on a usage error, 77
 * when libdsm cannot start here (no pager).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "dsm.h"

extern const struct app_kernel app_lu, app_stencil, app_radix, app_fft, app_cg, app_tasks;

static const struct app_kernel *const kernels[] = {
	&app_lu, &app_stencil, &app_radix, &app_fft, &app_cg, &app_tasks,
};
#define NKERNELS (sizeof(kernels) / sizeof(kernels[0]))

static int rank_for_fail = -1;

void app_fail(const char *what, int err)
{
	fprintf(stderr, "app[%d]: %s: %s\n", rank_for_fail, what,
		err < 0 && err > DSM_ERRNO_MIN ? dsm_strerror(err) : "failed");
	fflush(NULL);
	exit(1);
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the reference: one process ---------------------------------------- */

static int ref_bcast(void *buf, size_t len, int root)
{
	(void)buf;
	(void)len;
	(void)root;
	return 0;
}

static int ref_nothing(void)
{
	return 0;
}

static int ref_lock(uint32_t id)
{
	(void)id;
	return 0;
}

static int ref_fetch_add(int64_t *addr, int64_t v, int64_t *old)
{
	if (old)
		*old = *addr;
	*addr += v;
	return 0;
}

/* ---- libdsm ---------------------------------------------------------------- */

static void dsm_free_void(void *p)
{
	dsm_free(p);
}

static void usage(void)
{
	fprintf(stderr, "usage: dsmrun -n N app KERNEL [-s SIZE] | app KERNEL [-s SIZE] "
		"--reference | app --list\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const struct app_kernel *k = NULL;
	struct app_ops ops;
	struct app_result res;
	bool reference = false;
	long size = 0;
	int i, e;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "--list")) {
		for (size_t j = 0; j < NKERNELS; j++)
			printf("%-8s size %-8ld %s\n", kernels[j]->name, kernels[j]->default_size,
			       kernels[j]->what);
		return 0;
	}
	if (argc < 2)
		usage();
	for (size_t j = 0; j < NKERNELS; j++)
		if (!strcmp(argv[1], kernels[j]->name))
			k = kernels[j];
	if (!k) {
		fprintf(stderr, "app: unknown kernel '%s' (app --list)\n", argv[1]);
		return 2;
	}
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--reference"))
			reference = true;
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			size = strtol(argv[++i], NULL, 0);
		else
			usage();
	}
	if (size <= 0)
		size = k->default_size;
	memset(&ops, 0, sizeof(ops));
	ops.now = mono;
	if (reference) {
		ops.rank = 0;
		ops.nodes = 1;
		ops.alloc = malloc;
		ops.free = free;
		ops.bcast = ref_bcast;
		ops.barrier = ref_nothing;
		ops.lock = ref_lock;
		ops.unlock = ref_lock;
		ops.fetch_add = ref_fetch_add;
	} else {
		e = dsm_init(NULL);
		if (e == DSM_ENOTSUP) {
			printf("SKIP: dsm_init: %s\n", dsm_strerror(e));
			return 77;
		}
		if (e) {
			fprintf(stderr, "app: dsm_init: %s\n", dsm_strerror(e));
			return 1;
		}
		ops.rank = dsm_rank();
		ops.nodes = dsm_nodes();
		ops.alloc = dsm_malloc;
		ops.free = dsm_free_void;
		ops.bcast = dsm_bcast;
		ops.barrier = dsm_barrier;
		ops.lock = dsm_lock;
		ops.unlock = dsm_unlock;
		ops.fetch_add = dsm_fetch_add;
	}
	rank_for_fail = ops.rank;
	memset(&res, 0, sizeof(res));
	e = k->run(&ops, size, &res);
	if (e)
		app_fail(k->name, e);
	if (ops.rank == 0)
		printf("app %s size %ld nodes %d seconds %.6f checksum %016llx value %.17g tol %g: %s\n",
		       k->name, size, ops.nodes, res.seconds, (unsigned long long)res.checksum,
		       res.value, res.rel_tol, res.detail);
	if (!reference) {
		e = dsm_finalize();
		if (e) {
			fprintf(stderr, "app: dsm_finalize: %s\n", dsm_strerror(e));
			return 1;
		}
	}
	return 0;
}
