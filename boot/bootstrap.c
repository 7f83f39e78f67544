/*
 * Bootstrap, the entry: which way this node learns rank, node count, every
 * node's UDP address and the cluster id (dsmrun's DSM_PEERS, a PMIx
 * launcher in pmix.c, the DSM_BOOTSTRAP TCP rendezvous in rendezvous.c, or
 * the DSM_* variables as they are), and the helpers those ways share.
 * Runs once on the initialising thread; nothing here is on a hot path.
 */
#include "bootstrap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "boot-internal.h"
#include "common.h"

/* Resolve "host" to an IPv4 address. 0 or DSM_EADDR. */
int dsm__boot_resolve4(const char *host, struct in_addr *out)
{
	struct addrinfo hints = { .ai_family = AF_INET }, *res;

	if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
		return DSM_EADDR;
	*out = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
	freeaddrinfo(res);
	return 0;
}

/* Bind a UDP socket to ip:0 and keep it (so no other node of this host
 * picks the same port while the exchange runs); *port is what it got.
 * Returns the fd or DSM_ESYS / DSM_EADDR. */
int dsm__boot_hold_udp_port(struct in_addr ip, unsigned *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr = ip };
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return DSM_ESYS;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
		DSM__ERR("bootstrap: no free UDP port on %s: %s", inet_ntoa(ip), strerror(errno));
		close(fd);
		return DSM_EADDR;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

/* The settings that do not depend on membership (learnt afterwards). */
int dsm__boot_base_cfg(struct dsm__net_cfg *cfg)
{
	int e;

	memset(cfg, 0, sizeof(*cfg));
	if ((e = dsm__log_init()))
		return e;
	cfg->nodes = 1;
	return dsm__net_cfg_settings_from_env(cfg, NULL);
}

/* An explicit DSM_CLUSTER (already parsed into cfg) wins over a learnt id. */
void dsm__boot_set_cluster(struct dsm__net_cfg *cfg, uint32_t learnt)
{
	if (!dsm__env_str("DSM_CLUSTER"))
		cfg->cluster = learnt;
}

/* ---- entry ---------------------------------------------------------------- */

/* See bootstrap.h: the order of the ways is the contract. */
int dsm__bootstrap(struct dsm__net_cfg *cfg)
{
	const char *bs;
	int e;

	if (!cfg)
		return DSM_EINVAL;
	if (dsm__env_str("DSM_PEERS"))
		return dsm__net_cfg_from_env(cfg); /* dsmrun: wins over everything */
	if (dsm__env_str("PMIX_RANK")) {
#ifdef DSM_HAVE_PMIX
		if ((e = dsm__boot_base_cfg(cfg)))
			return e;
		e = dsm__boot_pmix(cfg);
		if (e <= 0) {
			if (e < 0) {
				dsm__net_cfg_fini(cfg);
				memset(cfg, 0, sizeof(*cfg));
			}
			return e;
		}
		dsm__net_cfg_fini(cfg); /* no launcher after all: fall through */
#else
		if ((e = dsm__log_init()))
			return e;
		DSM__ERR("PMIX_RANK is set: this libdsm was built without PMIx; install libpmix-dev "
			 "and rebuild, or start with dsmrun");
		return DSM_ENOTSUP;
#endif
	}
	bs = dsm__env_str("DSM_BOOTSTRAP");
	if (bs) {
		if ((e = dsm__log_init()))
			return e;
		return dsm__boot_tcp(cfg, bs);
	}
	return dsm__net_cfg_from_env(cfg);
}
