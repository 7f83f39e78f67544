/*
 * The boot layer (boot/), between net/ and dsm/: how a node learns its
 * rank, the node count and every node's UDP address before the net layer
 * starts. Its one private header: dsm/ includes it. Runs once, at
 * initialisation, before any other library thread exists.
 */
#ifndef DSM_BOOT_BOOTSTRAP_H
#define DSM_BOOT_BOOTSTRAP_H

#include "net.h"

/* Version of the DSM_BOOTSTRAP TCP exchange (see rendezvous.c): 2, the
 * records of boot/boot.rpc (u32 lengths); 1 was hand-encoded with u16
 * lengths. Nodes of different versions refuse each other with a message
 * that names both versions. */
#define DSM__BOOT_VERSION 2
/* Longest "host:port" a node may announce. */
#define DSM__BOOT_ADDR_MAX 255
/* Longest error text rank 0 sends back. */
#define DSM__BOOT_ERR_MAX 511

/*
 * Fill cfg like dsm__net_cfg_from_env, learning rank, nodes, addrs and the
 * cluster id from, in this order:
 *   1. DSM_PEERS (dsmrun): the DSM_* variables as they are; wins over any
 *      PMIx variables inherited from an outer launcher;
 *   2. a PMIx launcher (PMIX_RANK set; needs a build with PMIx, else
 *      DSM_ENOTSUP); when PMIx_Init cannot reach a server, fall through;
 *   3. DSM_RANK, DSM_NODES and DSM_BOOTSTRAP=host:port: rank 0 listens
 *      there on TCP, the others connect and send their address;
 *   4. otherwise the DSM_* variables as they are (a single node when
 *      DSM_NODES is unset, DSM_ECONFIG when it is > 1).
 * Each node announces DSM_HOST (default: see pmix.c, rendezvous.c) and a
 * UDP port that was free. An explicit DSM_CLUSTER wins over the learnt
 * cluster id.
 *
 * Not thread-safe: call once, from the thread that initialises the library
 * (it sets the rank shown in log lines and, under PMIx, initialises and
 * finalises the PMIx client).
 * Returns 0 (free cfg with dsm__net_cfg_fini) or a negative DSM_E* code
 * after a log line that names the cause (cfg is then empty):
 * DSM_ECONFIG (inconsistent job, reported at every node), DSM_ETIMEDOUT
 * (DSM_CONNECT_TIMEOUT_MS passed), DSM_EADDR, DSM_EPROTO, DSM_ENOTSUP,
 * DSM_ESYS, DSM_ENOMEM.
 */
int dsm__bootstrap(struct dsm__net_cfg *cfg);

#endif /* DSM_BOOT_BOOTSTRAP_H */
