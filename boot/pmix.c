/*
 * Bootstrap under a PMIx launcher (mpirun, srun): rank and job size from
 * PMIx, every node's UDP address published as "dsm.addr" and exchanged
 * with one fence, the cluster id hashed from the PMIx namespace. Built
 * when libpmix is installed (DSM_HAVE_PMIX); bootstrap.c calls it when
 * PMIX_RANK is set. Runs once on the initialising thread.
 */
#include "boot-internal.h"

#ifdef DSM_HAVE_PMIX
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pmix.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "fnv.h"

static int alloc_addrs(struct dsm__net_cfg *cfg, unsigned nodes)
{
	cfg->addrs = calloc(nodes, sizeof(char *));
	if (!cfg->addrs)
		return DSM_ENOMEM;
	cfg->nodes = nodes;
	return 0;
}

/* The address this node announces under a launcher: DSM_HOST, else what
 * the host name resolves to, else 127.0.0.1. */
static struct in_addr launcher_host(void)
{
	const char *h = dsm__env_str("DSM_HOST");
	struct in_addr ip = { .s_addr = htonl(INADDR_LOOPBACK) };
	char name[256];

	if (h) {
		if (dsm__boot_resolve4(h, &ip) < 0)
			DSM__WARN("DSM_HOST: cannot resolve '%s'; using 127.0.0.1", h);
		return ip;
	}
	if (gethostname(name, sizeof(name)) == 0) {
		name[sizeof(name) - 1] = '\0';
		if (dsm__boot_resolve4(name, &ip) < 0)
			ip.s_addr = htonl(INADDR_LOOPBACK);
	}
	return ip;
}

/* See boot-internal.h. PMIx_Init .. PMIx_Finalize within this call. */
int dsm__boot_pmix(struct dsm__net_cfg *cfg)
{
	pmix_proc_t me, wild, p;
	pmix_value_t *val = NULL, v;
	pmix_info_t info;
	bool yes = true;
	unsigned port;
	char addr[64];
	int fd, e;
	pmix_status_t rc;

	rc = PMIx_Init(&me, NULL, 0);
	if (rc != PMIX_SUCCESS) {
		DSM__INFO("PMIX_RANK is set but PMIx_Init failed (%s); not under a PMIx launcher",
			  PMIx_Error_string(rc));
		return 1;
	}
	PMIX_LOAD_PROCID(&wild, me.nspace, PMIX_RANK_WILDCARD);
	rc = PMIx_Get(&wild, PMIX_JOB_SIZE, NULL, 0, &val);
	if (rc != PMIX_SUCCESS || !val || val->type != PMIX_UINT32 ||
	    val->data.uint32 < 1 || val->data.uint32 > DSM__BOOT_NODES_MAX || me.rank >= val->data.uint32) {
		DSM__ERR("PMIx: no usable job size (PMIX_JOB_SIZE: %s)", PMIx_Error_string(rc));
		e = DSM_ECONFIG;
		goto fail_size;
	}
	cfg->rank = me.rank;
	dsm__log_set_rank((int)cfg->rank);
	if ((e = alloc_addrs(cfg, val->data.uint32)))
		goto fail_size;
	PMIX_VALUE_RELEASE(val);
	val = NULL;
	struct in_addr ip = launcher_host();

	fd = dsm__boot_hold_udp_port(ip, &port);
	if (fd < 0) {
		e = fd;
		goto fail_size;
	}
	snprintf(addr, sizeof(addr), "%s:%u", inet_ntoa(ip), port);
	PMIX_VALUE_LOAD(&v, addr, PMIX_STRING);
	rc = PMIx_Put(PMIX_GLOBAL, "dsm.addr", &v);
	PMIX_VALUE_DESTRUCT(&v);
	if (rc == PMIX_SUCCESS)
		rc = PMIx_Commit();
	if (rc != PMIX_SUCCESS) {
		DSM__ERR("PMIx: cannot publish dsm.addr: %s", PMIx_Error_string(rc));
		e = DSM_ESYS;
		goto fail_put;
	}
	PMIX_INFO_LOAD(&info, PMIX_COLLECT_DATA, &yes, PMIX_BOOL);
	rc = PMIx_Fence(&wild, 1, &info, 1);
	PMIX_INFO_DESTRUCT(&info);
	if (rc != PMIX_SUCCESS) {
		DSM__ERR("PMIx: fence failed: %s", PMIx_Error_string(rc));
		e = DSM_ESYS;
		goto fail_put;
	}
	for (unsigned r = 0; r < cfg->nodes; r++) {
		char host[DSM__BOOT_ADDR_MAX + 1];
		unsigned hp;

		PMIX_LOAD_PROCID(&p, me.nspace, r);
		rc = PMIx_Get(&p, "dsm.addr", NULL, 0, &val);
		if (rc != PMIX_SUCCESS || !val || val->type != PMIX_STRING || !val->data.string ||
		    dsm__parse_hostport(val->data.string, host, sizeof(host), &hp) < 0) {
			DSM__ERR("PMIx: no usable dsm.addr for rank %u (%s)", r, PMIx_Error_string(rc));
			e = DSM_EPROTO;
			goto fail_put;
		}
		cfg->addrs[r] = strdup(val->data.string);
		PMIX_VALUE_RELEASE(val);
		val = NULL;
		if (!cfg->addrs[r]) {
			e = DSM_ENOMEM;
			goto fail_put;
		}
	}
	dsm__boot_set_cluster(cfg, dsm__fnv1a32_str(me.nspace));
	close(fd);
	PMIx_Finalize(NULL, 0);
	DSM__INFO("PMIx bootstrap: rank %u of %u, namespace %s", cfg->rank, cfg->nodes, me.nspace);
	return 0;
fail_put:
	close(fd);
fail_size:
	if (val)
		PMIX_VALUE_RELEASE(val);
	PMIx_Finalize(NULL, 0);
	return e;
}
#endif /* DSM_HAVE_PMIX */
