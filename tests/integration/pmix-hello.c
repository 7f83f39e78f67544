/*
 * Helper for test-bootstrap, run under mpirun: bootstrap through PMIx and
 * print one line "pmix-hello rank R nodes N cluster C addrs A,B,...".
 * Exits 1 when dsm__bootstrap fails.
 */
#include <stdio.h>

#include "bootstrap.h"
#include "common.h"

int main(void)
{
	struct dsm__net_cfg cfg;
	int e = dsm__bootstrap(&cfg);

	if (e) {
		fprintf(stderr, "pmix-hello: dsm__bootstrap: %s\n", dsm_strerror(e));
		return 1;
	}
	printf("pmix-hello rank %u nodes %u cluster %08x addrs ", cfg.rank, cfg.nodes, cfg.cluster);
	for (unsigned i = 0; i < cfg.nodes; i++)
		printf("%s%s", i ? "," : "", cfg.addrs[i]);
	printf("\n");
	dsm__net_cfg_fini(&cfg);
	return 0;
}
