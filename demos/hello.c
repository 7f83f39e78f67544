/* The README's first program: every node adds its rank + 1 to a shared sum. */
#include <dsm.h>
#include <stdio.h>

int main(void)
{
	long *sum = NULL;
	int e = dsm_init(NULL);                 /* rank, peers: from dsmrun / mpirun */

	if (e) {
		fprintf(stderr, "dsm_init: %s\n", dsm_strerror(e));
		return 1;
	}
	if (dsm_rank() == 0)
		sum = dsm_calloc(1, sizeof(*sum));   /* any node may allocate, any time */
	dsm_bcast(&sum, sizeof(sum), 0);         /* the pointer is valid on every node */
	dsm_lock(1);
	*sum += dsm_rank() + 1;                  /* plain loads and stores */
	dsm_unlock(1);
	dsm_barrier();
	if (dsm_rank() == 0)
		printf("sum %ld\n", *sum);          /* 1 + 2 + ... + N */
	return dsm_finalize() ? 1 : 0;
}
