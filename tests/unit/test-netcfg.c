/*
 * Bad input to the net layer: malformed DSM_* variables, bad or busy
 * addresses, an unknown provider, a peer that never answers. Each must be a
 * negative DSM_E* code and a log line naming the variable or the address;
 * never an exit.
 */
#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "net.h"
#include "testutil.h"

static char logbuf[8192];

/* Run fn with stderr captured into logbuf. */
static int captured(int (*fn)(void *), void *arg)
{
	char path[] = "/tmp/dsm-netcfg-XXXXXX";
	int fd = mkstemp(path), saved, r;
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	r = fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, logbuf, sizeof(logbuf) - 1);
	logbuf[n > 0 ? n : 0] = '\0';
	close(fd);
	return r;
}

static void clear_env(void)
{
	static const char *const vars[] = {
		"DSM_RANK", "DSM_NODES", "DSM_PEERS", "DSM_CLUSTER", "DSM_PROVIDER",
		"DSM_PEER_TIMEOUT_MS", "DSM_CONNECT_TIMEOUT_MS", "DSM_FAULT", "DSM_STATS",
		"DSM_RPC_WORKERS", "DSM_SPIN_US", "DSM_MAX_MSG", "DSM_LOG",
	};

	for (size_t i = 0; i < DSM__ARRAY_SIZE(vars); i++)
		unsetenv(vars[i]);
}

static int from_env(void *arg)
{
	struct dsm__net_cfg *cfg = arg;

	return dsm__net_cfg_from_env(cfg);
}

static void expect_env_error(const char *var, const char *value, int err, const char *needle)
{
	struct dsm__net_cfg cfg;
	int r;

	clear_env();
	setenv("DSM_NODES", "2", 1);
	setenv("DSM_RANK", "0", 1);
	setenv("DSM_PEERS", "127.0.0.1:7001,127.0.0.1:7002", 1);
	if (value)
		setenv(var, value, 1);
	else
		unsetenv(var);
	r = captured(from_env, &cfg);
	ck_assert_msg(r == err, "%s=%s: got %d (%s), want %d", var, value ? value : "(unset)", r,
		      dsm_strerror(r), err);
	ck_assert_msg(strstr(logbuf, needle), "%s=%s: log '%s' does not name '%s'", var,
		      value ? value : "(unset)", logbuf, needle);
	if (r == 0)
		dsm__net_cfg_fini(&cfg);
}

START_TEST(netcfg_defaults)
{
	struct dsm__net_cfg cfg;

	clear_env();
	ck_assert_int_eq(dsm__net_cfg_from_env(&cfg), 0);
	ck_assert_uint_eq(cfg.nodes, 1);
	ck_assert_uint_eq(cfg.rank, 0);
	ck_assert_str_eq(cfg.provider, "udp");
	ck_assert_int_eq(cfg.peer_timeout_ms, 1000);
	ck_assert_int_eq(cfg.connect_timeout_ms, 10000);
	ck_assert(!cfg.fault_on);
	ck_assert(!cfg.stats);
	ck_assert_int_eq(cfg.workers, 2);
	ck_assert_uint_eq(cfg.max_msg, 64u << 20);
	dsm__net_cfg_fini(&cfg);

	setenv("DSM_NODES", "3", 1);
	setenv("DSM_RANK", "2", 1);
	setenv("DSM_PEERS", "127.0.0.1:7001,localhost:7002,[::1]:7003", 1);
	setenv("DSM_FAULT", "drop=0.5,seed=7", 1);
	setenv("DSM_STATS", "1", 1);
	ck_assert_int_eq(dsm__net_cfg_from_env(&cfg), 0);
	ck_assert_uint_eq(cfg.rank, 2);
	ck_assert_str_eq(cfg.addrs[1], "localhost:7002");
	ck_assert(cfg.fault_on);
	ck_assert(cfg.fault.drop == 0.5);
	ck_assert(cfg.stats);
	dsm__net_cfg_fini(&cfg);
	clear_env();
}
END_TEST

/* The default cluster id is FNV-1a 32 of DSM_PEERS: the values below were
 * computed by the library before common/fnv.h existed. Nodes of one job
 * compare them, so they must never change. DSM_CLUSTER wins. */
START_TEST(netcfg_cluster_from_peers)
{
	static const struct {
		const char *peers;
		uint32_t cluster;
	} want[] = {
		{ "127.0.0.1:5000,127.0.0.1:5001", 0x8d6fc500u },
		{ "127.0.0.1:40001,127.0.0.1:40002,127.0.0.1:40003,127.0.0.1:40004", 0xc82f2617u },
		{ "10.0.0.1:7000", 0xd3888072u },
		{ "", 0x811c9dc5u },
	};
	struct dsm__net_cfg cfg;

	clear_env();
	for (size_t i = 0; i < DSM__ARRAY_SIZE(want); i++) {
		memset(&cfg, 0, sizeof(cfg));
		ck_assert_int_eq(dsm__net_cfg_settings_from_env(&cfg, want[i].peers), 0);
		ck_assert_msg(cfg.cluster == want[i].cluster, "'%s': cluster %08x, want %08x",
			      want[i].peers, cfg.cluster, want[i].cluster);
	}
	memset(&cfg, 0, sizeof(cfg));
	ck_assert_int_eq(dsm__net_cfg_settings_from_env(&cfg, NULL), 0);
	ck_assert_uint_eq(cfg.cluster, 0);

	/* through dsm__net_cfg_from_env, as dsmrun's nodes get it */
	setenv("DSM_NODES", "2", 1);
	setenv("DSM_RANK", "1", 1);
	setenv("DSM_PEERS", want[0].peers, 1);
	ck_assert_int_eq(dsm__net_cfg_from_env(&cfg), 0);
	ck_assert_uint_eq(cfg.cluster, want[0].cluster);
	dsm__net_cfg_fini(&cfg);
	setenv("DSM_CLUSTER", "42", 1);
	ck_assert_int_eq(dsm__net_cfg_from_env(&cfg), 0);
	ck_assert_uint_eq(cfg.cluster, 42);
	dsm__net_cfg_fini(&cfg);
	clear_env();
}
END_TEST

START_TEST(netcfg_malformed_variables)
{
	expect_env_error("DSM_NODES", "zero", DSM_ECONFIG, "DSM_NODES");
	expect_env_error("DSM_NODES", "0", DSM_ECONFIG, "DSM_NODES");
	expect_env_error("DSM_RANK", "2", DSM_ECONFIG, "DSM_RANK");
	expect_env_error("DSM_RANK", "-1", DSM_ECONFIG, "DSM_RANK");
	expect_env_error("DSM_RANK", NULL, DSM_ECONFIG, "DSM_RANK");
	expect_env_error("DSM_PEERS", NULL, DSM_ECONFIG, "DSM_PEERS");
	expect_env_error("DSM_PEERS", "127.0.0.1:7001", DSM_ECONFIG, "DSM_PEERS");
	expect_env_error("DSM_PEERS", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", DSM_ECONFIG,
			 "DSM_PEERS");
	expect_env_error("DSM_PEERS", "127.0.0.1:7001,127.0.0.1", DSM_EADDR, "127.0.0.1");
	expect_env_error("DSM_PEERS", "127.0.0.1:7001,127.0.0.1:99999", DSM_EADDR, "99999");
	expect_env_error("DSM_PEER_TIMEOUT_MS", "10", DSM_ECONFIG, "DSM_PEER_TIMEOUT_MS");
	expect_env_error("DSM_PEER_TIMEOUT_MS", "1s", DSM_ECONFIG, "DSM_PEER_TIMEOUT_MS");
	expect_env_error("DSM_STATS", "maybe", DSM_ECONFIG, "DSM_STATS");
	expect_env_error("DSM_LOG", "loud", DSM_ECONFIG, "DSM_LOG");
	expect_env_error("DSM_FAULT", "dorp=0.1", DSM_ECONFIG, "DSM_FAULT");
	expect_env_error("DSM_FAULT", "drop=1.5", DSM_ECONFIG, "DSM_FAULT");
	expect_env_error("DSM_MAX_MSG", "5", DSM_ECONFIG, "DSM_MAX_MSG");
	expect_env_error("DSM_RPC_WORKERS", "0", DSM_ECONFIG, "DSM_RPC_WORKERS");
	clear_env();
}
END_TEST

struct mk {
	struct dsm__net_cfg cfg;
	struct dsm__net *net;
	bool start;
};

static int make_net(void *arg)
{
	struct mk *m = arg;
	int e = dsm__net_create(&m->cfg, NULL, &m->net);

	if (!e && m->start) {
		e = dsm__net_start(m->net);
		dsm__net_destroy(m->net);
		m->net = NULL;
	}
	return e;
}

static void two_node_cfg(struct mk *m, const char *a0, const char *a1)
{
	memset(m, 0, sizeof(*m));
	m->cfg.rank = 0;
	m->cfg.nodes = 2;
	m->cfg.addrs = calloc(2, sizeof(char *));
	m->cfg.addrs[0] = strdup(a0);
	m->cfg.addrs[1] = strdup(a1);
	snprintf(m->cfg.provider, sizeof(m->cfg.provider), "udp");
	m->cfg.peer_timeout_ms = 1000;
	m->cfg.connect_timeout_ms = 300;
	m->cfg.workers = 1;
	m->cfg.max_msg = 1u << 20;
	m->cfg.rx_posted = 64;
}

START_TEST(netcfg_bad_addresses_and_provider)
{
	struct mk m;
	char a0[64], a1[64];
	int busy;
	int r;

	dsm__log_level = DSM__LOG_WARN;
	snprintf(a1, sizeof(a1), "127.0.0.1:%u", dsm_test_free_port(NULL));

	/* our own port is taken */
	snprintf(a0, sizeof(a0), "127.0.0.1:%u", dsm_test_free_port(&busy));
	two_node_cfg(&m, a0, a1);
	r = captured(make_net, &m);
	ck_assert_int_eq(r, DSM_EADDRINUSE);
	ck_assert_msg(strstr(logbuf, a0), "log '%s' does not name %s", logbuf, a0);
	dsm__net_cfg_fini(&m.cfg);
	close(busy);

	/* a host that does not resolve */
	two_node_cfg(&m, "no.such.host.invalid:4000", a1);
	r = captured(make_net, &m);
	ck_assert_int_eq(r, DSM_EADDR);
	ck_assert_msg(strstr(logbuf, "no.such.host.invalid"), "log '%s'", logbuf);
	dsm__net_cfg_fini(&m.cfg);

	/* an unknown provider */
	snprintf(a0, sizeof(a0), "127.0.0.1:%u", dsm_test_free_port(NULL));
	two_node_cfg(&m, a0, a1);
	snprintf(m.cfg.provider, sizeof(m.cfg.provider), "nosuchprov");
	r = captured(make_net, &m);
	ck_assert_int_eq(r, DSM_EPROVIDER);
	ck_assert_msg(strstr(logbuf, "DSM_PROVIDER") && strstr(logbuf, "nosuchprov"), "log '%s'",
		      logbuf);
	dsm__net_cfg_fini(&m.cfg);

	/* a peer that never answers: start-up times out naming the rank */
	snprintf(a0, sizeof(a0), "127.0.0.1:%u", dsm_test_free_port(NULL));
	two_node_cfg(&m, a0, a1);
	m.start = true;
	r = captured(make_net, &m);
	ck_assert_int_eq(r, DSM_ETIMEDOUT);
	ck_assert_msg(strstr(logbuf, "rank(s) 1"), "log '%s'", logbuf);
	dsm__net_cfg_fini(&m.cfg);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("netcfg");
	TCase *t = tcase_create("netcfg");

	tcase_set_timeout(t, 60);
	tcase_add_test(t, netcfg_defaults);
	tcase_add_test(t, netcfg_cluster_from_peers);
	tcase_add_test(t, netcfg_malformed_variables);
	tcase_add_test(t, netcfg_bad_addresses_and_provider);
	suite_add_tcase(s, t);
	return dsm_test_run_suite(s);
}
