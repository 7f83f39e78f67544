/* The README's first program: every node adds its rank + 1 to a shared sum. */
#include <dsm.h>
#include <stdio.h>
#include <stdlib.h>

/* Every call can fail (a node died, memory ran out): say which and why. */
static void check(const char *what, int e)
{
	if (e) {
		fprintf(stderr, "%s: %s\n", what, dsm_strerror(e));
		exit(1);
	}
}

int main(void)
{
	long *sum = NULL;

	check("dsm_init", dsm_init(NULL));       /* rank, peers: from dsmrun / mpirun */
	if (dsm_rank() == 0) {
		sum = dsm_calloc(1, sizeof(*sum)); /* any node may allocate, any time */
		if (!sum)
			check("dsm_calloc", dsm_last_error());
	}
	check("dsm_bcast", dsm_bcast(&sum, sizeof(sum), 0)); /* sum: valid on every node */
	check("dsm_lock", dsm_lock(1));
	*sum += dsm_rank() + 1;                  /* plain loads and stores */
	check("dsm_unlock", dsm_unlock(1));
	check("dsm_barrier", dsm_barrier());
	if (dsm_rank() == 0)
		printf("sum %ld\n", *sum);          /* 1 + 2 + ... + N */
	check("dsm_finalize", dsm_finalize());
	return 0;
}
