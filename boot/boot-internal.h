/*
 * Inside the boot layer: what bootstrap.c (the entry and the pieces every
 * way of learning the job shares), pmix.c and rendezvous.c share. Not for
 * layers above: they use bootstrap.h. Everything here runs once, on the
 * thread that initialises the library.
 */
#ifndef DSM_BOOT_BOOT_INTERNAL_H
#define DSM_BOOT_BOOT_INTERNAL_H

#include <netinet/in.h>
#include <stdint.h>

#include "bootstrap.h"

/* The most nodes a job may have. */
#define DSM__BOOT_NODES_MAX 65535

/* Resolve "host" to an IPv4 address. 0 or DSM_EADDR. */
int dsm__boot_resolve4(const char *host, struct in_addr *out);

/* Bind a UDP socket to ip:0 and keep it (so no other node of this host
 * picks the same port while the exchange runs); *port is what it got.
 * Returns the fd (the caller closes it once the exchange is over) or
 * DSM_ESYS / DSM_EADDR. */
int dsm__boot_hold_udp_port(struct in_addr ip, unsigned *port);

/* Zero cfg and fill the settings that do not depend on membership (learnt
 * afterwards): 0 or the DSM_ECONFIG of a malformed DSM_* variable. */
int dsm__boot_base_cfg(struct dsm__net_cfg *cfg);

/* An explicit DSM_CLUSTER (already parsed into cfg) wins over a learnt id. */
void dsm__boot_set_cluster(struct dsm__net_cfg *cfg, uint32_t learnt);

#ifdef DSM_HAVE_PMIX
/* Learn the job from a PMIx launcher (pmix.c), cfg prepared by
 * dsm__boot_base_cfg. 1: no PMIx server reachable (fall through; cfg still
 * needs dsm__net_cfg_fini), 0: cfg filled, < 0: error, logged. */
int dsm__boot_pmix(struct dsm__net_cfg *cfg);
#endif

/* DSM_RANK, DSM_NODES and DSM_BOOTSTRAP=bs: the TCP rendezvous
 * (rendezvous.c). 0 and cfg filled, or a negative code, logged, with cfg
 * empty. */
int dsm__boot_tcp(struct dsm__net_cfg *cfg, const char *bs);

#endif /* DSM_BOOT_BOOT_INTERNAL_H */
