/*
 * Multi-process tests of the net layer on 127.0.0.1. The driver forks the
 * nodes itself (so it knows their pids), gives each one DSM_RANK,
 * DSM_NODES and DSM_PEERS, collects a result record from each through a
 * pipe, and kills every node it started when the deadline passes.
 *
 *   test-net-multi storm N CALLS   N nodes, CALLS echo RPCs in all, sizes
 *                                  0 B .. 1 MiB, under DSM_FAULT (set by
 *                                  the caller), plus one-way notes whose
 *                                  per-peer order is checked
 *   test-net-multi kill            3 nodes; node 2 is SIGKILLed with calls
 *                                  outstanding to it
 *   test-net-multi idle            4 idle nodes: CPU use of all their threads
 *                                  (/proc schedstat), quietest of three 2 s
 *                                  windows after start-up, under 2% of a core
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "net.h"
#include "net_rpc.h"
#include "testutil.h"

#define MAXN 8
#define THREADS 32

struct result {
	int rank;
	int ok;                 /* the node's own checks passed */
	uint64_t calls, handled, notes_sent, notes_in_order, notes_bad;
	uint64_t bytes;
	uint64_t retx, corrupt, dup, f_drop, f_corrupt;
	int64_t dead_latency_ns; /* kill: from the kill to EPEERDEAD */
	int kill_outstanding_ok, kill_new_ok, kill_survivor_ok;
	char why[200];
};

static struct dsm__net *net;
static struct dsm__rpc *rpc;
static unsigned me, nodes;
static atomic_uint_fast64_t handled;
static uint64_t next_note[MAXN];      /* next expected note seq from each peer */
static atomic_uint_fast64_t notes_ok, notes_bad, done_notes;

/* ---- node side ----------------------------------------------------------- */

static void die_child(struct result *r, int fd, const char *why)
{
	snprintf(r->why, sizeof(r->why), "%s", why);
	r->ok = 0;
	if (write(fd, r, sizeof(*r)) < 0)
		_exit(3);
	_exit(1);
}

static int echo_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_echo_req *req,
		  struct dsm_rpc_echo_rep *rep)
{
	(void)ctx;
	atomic_fetch_add(&handled, 1);
	rep->stamp = req->stamp;
	rep->seq = req->seq;
	rep->data = req->data;
	return 0;
}

static int echo_worker_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_echo_worker_req *req,
			 struct dsm_rpc_echo_worker_rep *rep)
{
	(void)ctx;
	if (req->seq == 0xfeed) {
		/* kill mode: node 2 never answers these */
		for (;;)
			pause();
	}
	atomic_fetch_add(&handled, 1);
	rep->stamp = req->stamp;
	rep->seq = req->seq;
	rep->data = req->data;
	return 0;
}

static int note_h(struct dsm__rpc_ctx *ctx, const struct dsm_rpc_note_msg *m)
{
	unsigned from = dsm__rpc_ctx_peer(ctx);

	if (m->seq == UINT64_MAX) {
		atomic_fetch_add(&done_notes, 1);
		return 0;
	}
	/* one-way notes run on the network thread in arrival order: exactly
	 * the per-peer order must hold */
	if (from >= MAXN || m->from != from || m->seq != next_note[from])
		atomic_fetch_add(&notes_bad, 1);
	else
		atomic_fetch_add(&notes_ok, 1);
	if (from < MAXN)
		next_note[from] = m->seq + 1;
	for (uint32_t i = 0; i < m->data.len; i++)
		if (m->data.ptr[i] != (uint8_t)(m->seq + i)) {
			atomic_fetch_add(&notes_bad, 1);
			break;
		}
	return 0;
}

static size_t pick_size(uint64_t i, uint64_t *rng)
{
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	if (i % 997 == 0)
		return 1u << 20;
	if (i % 7 == 0)
		return 0;
	if (i % 97 == 0)
		return (size_t)(*rng % (64 * 1024));
	if (i % 10 == 0)
		return (size_t)(*rng % 4096);
	return (size_t)(*rng % 257);
}

struct worker_arg {
	unsigned tid;
	uint64_t calls;
	uint64_t made, bytes;
	int err;
	char why[160];
};

static void *storm_thread(void *arg)
{
	struct worker_arg *w = arg;
	uint64_t rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)me << 32) ^ w->tid;
	uint8_t *buf = malloc(1u << 20), *want = malloc(1u << 20);

	for (uint64_t i = 0; i < w->calls && !w->err; i++) {
		unsigned peer = (me + 1 + (unsigned)(rng % (nodes - 1))) % nodes;
		size_t len = pick_size(i + w->tid, &rng);
		uint64_t stamp = ((uint64_t)me << 48) | ((uint64_t)w->tid << 40) | i;
		struct dsm__rpc_reply keep;
		int e;

		for (size_t k = 0; k < len; k++)
			buf[k] = want[k] = (uint8_t)(stamp * 7 + k);
		if (i & 1) {
			struct dsm_rpc_echo_req req = { .stamp = stamp, .seq = (uint32_t)i };
			struct dsm_rpc_echo_rep rep;

			req.data.ptr = buf;
			req.data.len = (uint32_t)len;
			e = dsm_rpc_echo(rpc, peer, &req, &rep, &keep, 120000);
			if (!e && (rep.stamp != stamp || rep.seq != (uint32_t)i ||
				   rep.data.len != len || memcmp(rep.data.ptr, want, len))) {
				snprintf(w->why, sizeof(w->why), "wrong echo reply (len %zu)", len);
				w->err = 1;
			}
		} else {
			struct dsm_rpc_echo_worker_req req = { .stamp = stamp, .seq = (uint32_t)i };
			struct dsm_rpc_echo_worker_rep rep;

			req.data.ptr = buf;
			req.data.len = (uint32_t)len;
			e = dsm_rpc_echo_worker(rpc, peer, &req, &rep, &keep, 120000);
			if (!e && (rep.stamp != stamp || rep.seq != (uint32_t)i ||
				   rep.data.len != len || memcmp(rep.data.ptr, want, len))) {
				snprintf(w->why, sizeof(w->why), "wrong echo_worker reply (len %zu)", len);
				w->err = 1;
			}
		}
		if (e) {
			snprintf(w->why, sizeof(w->why), "call %llu to %u (len %zu): %s",
				 (unsigned long long)i, peer, len, dsm_strerror(e));
			w->err = 1;
			break;
		}
		dsm__rpc_reply_release(&keep);
		w->made++;
		w->bytes += len;
	}
	free(buf);
	free(want);
	return NULL;
}

static void start_net(struct result *r, int fd)
{
	struct dsm__net_cfg cfg;
	int e = dsm__net_cfg_from_env(&cfg);

	if (e)
		die_child(r, fd, "configuration");
	me = cfg.rank;
	nodes = cfg.nodes;
	r->rank = (int)me;
	e = dsm__net_create(&cfg, NULL, &net);
	dsm__net_cfg_fini(&cfg);
	if (e)
		die_child(r, fd, dsm_strerror(e));
	rpc = dsm__net_rpc(net);
	dsm_rpc_echo_serve(rpc, echo_h, NULL);
	dsm_rpc_echo_worker_serve(rpc, echo_worker_h, NULL);
	dsm_rpc_note_serve(rpc, note_h, NULL);
	e = dsm__net_start(net);
	if (e)
		die_child(r, fd, dsm_strerror(e));
}

/* Everyone tells everyone it is done; wait for all (bounded). */
static void leave_together(struct result *r, int fd)
{
	for (unsigned p = 0; p < nodes; p++) {
		struct dsm_rpc_note_msg m = { .from = me, .seq = UINT64_MAX };

		if (p != me)
			dsm_rpc_note_send(rpc, p, &m);
	}
	for (int t = 0; atomic_load(&done_notes) < nodes - 1; t++) {
		if (t > 300000)
			die_child(r, fd, "peers never finished");
		usleep(1000);
	}
}

static void fill_stats(struct result *r)
{
	struct dsm__net_stats s;

	dsm__net_stats(net, &s);
	r->retx = s.chan.retx_rto + s.chan.retx_fast + s.chan.retx_tlp;
	r->corrupt = s.chan.rx_corrupt;
	r->dup = s.chan.rx_dup;
	r->f_drop = s.f_drop;
	r->f_corrupt = s.f_corrupt;
}

static void node_storm(int fd, uint64_t calls_total)
{
	struct result r = { .ok = 1 };
	struct worker_arg w[THREADS];
	pthread_t th[THREADS];
	uint64_t per;
	uint8_t pad[512];

	start_net(&r, fd);
	per = (calls_total + nodes * THREADS - 1) / (nodes * THREADS); /* at least calls_total in all */
	for (unsigned t = 0; t < THREADS; t++) {
		memset(&w[t], 0, sizeof(w[t]));
		w[t].tid = t;
		w[t].calls = per;
		pthread_create(&th[t], NULL, storm_thread, &w[t]);
	}
	/* meanwhile, ordered one-way notes to every peer */
	for (uint64_t i = 0; i < 2000; i++) {
		for (unsigned p = 0; p < nodes; p++) {
			struct dsm_rpc_note_msg m = { .from = me, .seq = i };
			uint32_t len = (uint32_t)(i % 500);

			if (p == me)
				continue;
			for (uint32_t k = 0; k < len; k++)
				pad[k] = (uint8_t)(i + k);
			m.data.ptr = pad;
			m.data.len = len;
			if (dsm_rpc_note_send(rpc, p, &m) < 0)
				die_child(&r, fd, "note send failed");
			r.notes_sent++;
		}
		if (i % 100 == 0)
			usleep(1000);
	}
	for (unsigned t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		r.calls += w[t].made;
		r.bytes += w[t].bytes;
		if (w[t].err) {
			r.ok = 0;
			snprintf(r.why, sizeof(r.why), "thread %u: %s", t, w[t].why);
		}
	}
	leave_together(&r, fd);
	r.handled = atomic_load(&handled);
	r.notes_in_order = atomic_load(&notes_ok);
	r.notes_bad = atomic_load(&notes_bad);
	fill_stats(&r);
	if (getenv("DSM_STATS"))
		dsm__net_print_stats(net, stderr);
	if (write(fd, &r, sizeof(r)) < 0)
		_exit(3);
	dsm__net_destroy(net);
	_exit(r.ok ? 0 : 1);
}

struct kcall {
	unsigned peer;
	int result;
	int64_t ended;
};

static void *kill_call(void *arg)
{
	struct kcall *k = arg;
	struct dsm_rpc_echo_worker_req req = { .seq = 0xfeed };
	struct dsm_rpc_echo_worker_rep rep;
	struct dsm__rpc_reply keep;

	k->result = dsm_rpc_echo_worker(rpc, k->peer, &req, &rep, &keep, -1);
	k->ended = dsm__now_ns();
	return NULL;
}

/* Nodes 0 and 1 park a call at node 2, report ready (byte on the pipe),
 * then wait for their calls to end with DSM_EPEERDEAD. */
static void node_kill(int fd, int ready_fd, int go_fd)
{
	struct result r = { .ok = 1 };
	struct kcall k = { .peer = 2 };
	pthread_t th;
	char c = 'r';
	int64_t killed_at;
	struct dsm_rpc_echo_req req = { .seq = 1 };
	struct dsm_rpc_echo_rep rep;
	struct dsm__rpc_reply keep;

	start_net(&r, fd);
	if (me == 2) {
		if (write(ready_fd, &c, 1) != 1)
			_exit(3);
		for (;;)
			pause(); /* serve until killed */
	}
	pthread_create(&th, NULL, kill_call, &k);
	usleep(200000); /* the call is parked at node 2 by now */
	if (write(ready_fd, &c, 1) != 1)
		_exit(3);
	if (read(go_fd, &killed_at, sizeof(killed_at)) != sizeof(killed_at))
		die_child(&r, fd, "no kill time from the driver");
	pthread_join(th, NULL);
	r.dead_latency_ns = k.ended - killed_at;
	r.kill_outstanding_ok = k.result == DSM_EPEERDEAD;
	r.kill_new_ok = dsm_rpc_echo(rpc, 2, &req, &rep, &keep, 5000) == DSM_EPEERDEAD;
	r.kill_survivor_ok = dsm_rpc_echo(rpc, me ^ 1, &req, &rep, &keep, 5000) == 0;
	if (r.kill_survivor_ok)
		dsm__rpc_reply_release(&keep);
	if (write(fd, &r, sizeof(r)) < 0)
		_exit(3);
	/* let the other survivor finish its calls to us before leaving */
	usleep(500000);
	dsm__net_destroy(net);
	_exit(0);
}

static void node_idle(int fd)
{
	struct result r = { .ok = 1 };
	char ready = 'R';

	start_net(&r, fd);
	/* up and connected: the driver measures from here on */
	if (write(fd, &ready, 1) != 1)
		_exit(3);
	sleep(10);
	if (write(fd, &r, sizeof(r)) < 0)
		_exit(3);
	dsm__net_destroy(net);
	_exit(0);
}

/* ---- driver ---------------------------------------------------------------- */

static pid_t pids[MAXN];
static unsigned npids;

static void set_env(unsigned n)
{
	char peers[MAXN * 24] = "", v[32];
	size_t off = 0;

	for (unsigned i = 0; i < n; i++)
		off += (size_t)snprintf(peers + off, sizeof(peers) - off, "%s127.0.0.1:%u",
					i ? "," : "", dsm_test_free_port(NULL));
	setenv("DSM_PEERS", peers, 1);
	snprintf(v, sizeof(v), "%u", n);
	setenv("DSM_NODES", v, 1);
	snprintf(v, sizeof(v), "%u", (unsigned)getpid() * 2654435761u | 1u);
	setenv("DSM_CLUSTER", v, 1);
}

static int read_result(int fd, struct result *r)
{
	ssize_t got = 0;

	while (got < (ssize_t)sizeof(*r)) {
		ssize_t k = read(fd, (char *)r + got, sizeof(*r) - (size_t)got);

		if (k <= 0)
			return -1;
		got += k;
	}
	return 0;
}

static int passed, failed;

static void check(bool cond, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void check(bool cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s: ", cond ? "ok" : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	if (cond)
		passed++;
	else
		failed++;
}

static int wait_all(void)
{
	int bad = 0;

	for (unsigned i = 0; i < npids; i++) {
		int st;

		if (pids[i] <= 0)
			continue;
		if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad++;
		pids[i] = 0;
	}
	return bad;
}

static void run_storm(unsigned n, uint64_t calls)
{
	int fds[MAXN][2];
	struct result r[MAXN];
	uint64_t tot_calls = 0, tot_handled = 0, tot_notes = 0, tot_in_order = 0, tot_bad = 0;
	uint64_t retx = 0, corrupt = 0, f_drop = 0, f_corrupt = 0, dup = 0, bytes = 0;
	int64_t t0 = dsm__now_ns();
	bool all_ok = true;

	set_env(n);
	for (unsigned i = 0; i < n; i++) {
		char v[16];

		if (pipe(fds[i]) < 0)
			exit(1);
		snprintf(v, sizeof(v), "%u", i);
		setenv("DSM_RANK", v, 1);
		pids[npids] = fork();
		if (pids[npids] == 0) {
			close(fds[i][0]);
			node_storm(fds[i][1], calls);
		}
		npids++;
		close(fds[i][1]);
	}
	for (unsigned i = 0; i < n; i++) {
		if (read_result(fds[i][0], &r[i]) < 0) {
			check(false, "node %u sent no result", i);
			all_ok = false;
			continue;
		}
		if (!r[i].ok) {
			check(false, "node %u: %s", i, r[i].why);
			all_ok = false;
		}
		tot_calls += r[i].calls;
		tot_handled += r[i].handled;
		tot_notes += r[i].notes_sent;
		tot_in_order += r[i].notes_in_order;
		tot_bad += r[i].notes_bad;
		retx += r[i].retx;
		corrupt += r[i].corrupt;
		dup += r[i].dup;
		f_drop += r[i].f_drop;
		f_corrupt += r[i].f_corrupt;
		bytes += r[i].bytes;
	}
	check(wait_all() == 0 && all_ok, "%u nodes exited 0 with their own checks passed", n);
	printf("storm: %u nodes, %llu calls (%llu payload bytes) in %.1f s; retx %llu, "
	       "corrupt dropped %llu, dup dropped %llu, injected drop %llu corrupt %llu\n",
	       n, (unsigned long long)tot_calls, (unsigned long long)bytes,
	       (double)(dsm__now_ns() - t0) / 1e9, (unsigned long long)retx,
	       (unsigned long long)corrupt, (unsigned long long)dup,
	       (unsigned long long)f_drop, (unsigned long long)f_corrupt);
	check(tot_calls == (calls + n * THREADS - 1) / (n * THREADS) * n * THREADS && tot_calls >= calls,
	      "every call completed (%llu)", (unsigned long long)tot_calls);
	check(tot_handled == tot_calls, "each call handled exactly once (%llu handled)",
	      (unsigned long long)tot_handled);
	check(tot_bad == 0 && tot_in_order == tot_notes,
	      "one-way notes exactly once in per-peer order (%llu of %llu, %llu bad)",
	      (unsigned long long)tot_in_order, (unsigned long long)tot_notes,
	      (unsigned long long)tot_bad);
	if (getenv("DSM_FAULT")) {
		if (strstr(getenv("DSM_FAULT"), "drop"))
			check(retx > 0 && f_drop > 0, "retransmissions happened (%llu, %llu injected drops)",
			      (unsigned long long)retx, (unsigned long long)f_drop);
		if (strstr(getenv("DSM_FAULT"), "corrupt"))
			check(corrupt > 0 && corrupt <= f_corrupt,
			      "corrupt datagrams dropped (%llu of %llu injected)",
			      (unsigned long long)corrupt, (unsigned long long)f_corrupt);
		if (strstr(getenv("DSM_FAULT"), "dup"))
			check(dup > 0, "duplicates dropped (%llu)", (unsigned long long)dup);
	}
}

static void run_kill(void)
{
	int fds[3][2], ready[2], go[2][2];
	struct result r[2];
	char c;
	int64_t killed_at;
	int timeout_ms = 500;
	char v[16];

	set_env(3);
	setenv("DSM_PEER_TIMEOUT_MS", "500", 1);
	if (pipe(ready) < 0)
		exit(1);
	for (unsigned i = 0; i < 3; i++) {
		if (pipe(fds[i]) < 0 || (i < 2 && pipe(go[i]) < 0))
			exit(1);
		snprintf(v, sizeof(v), "%u", i);
		setenv("DSM_RANK", v, 1);
		pids[npids] = fork();
		if (pids[npids] == 0)
			node_kill(fds[i][1], ready[1], i < 2 ? go[i][0] : -1);
		npids++;
		close(fds[i][1]);
	}
	for (int i = 0; i < 3; i++)
		if (read(ready[0], &c, 1) != 1)
			exit(1);
	killed_at = dsm__now_ns();
	kill(pids[2], SIGKILL);
	waitpid(pids[2], NULL, 0);
	pids[2] = 0;
	for (int i = 0; i < 2; i++)
		if (write(go[i][1], &killed_at, sizeof(killed_at)) != sizeof(killed_at))
			exit(1);
	for (int i = 0; i < 2; i++) {
		if (read_result(fds[i][0], &r[i]) < 0) {
			check(false, "node %d sent no result", i);
			continue;
		}
		check(r[i].kill_outstanding_ok, "node %d: outstanding call to the killed node "
		      "ended with DSM_EPEERDEAD", i);
		check(r[i].dead_latency_ns > 0 && r[i].dead_latency_ns <= 2LL * timeout_ms * 1000000,
		      "node %d: ... %.0f ms after the kill (timeout %d ms, bound %d ms)", i,
		      (double)r[i].dead_latency_ns / 1e6, timeout_ms, 2 * timeout_ms);
		check(r[i].kill_new_ok, "node %d: a new call to it fails with DSM_EPEERDEAD", i);
		check(r[i].kill_survivor_ok, "node %d: survivors keep talking", i);
	}
	check(wait_all() == 0, "survivors exited 0");
}

/* CPU time of every thread of pid so far, in ns (/proc/PID/task/TID/
 * schedstat: exact, where /proc/PID/stat counts 10 ms ticks). */
static uint64_t cpu_ns(pid_t pid)
{
	char path[64], line[128];
	uint64_t sum = 0;
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		unsigned long long ns;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/schedstat", (int)pid, de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(line, sizeof(line), f) && sscanf(line, "%llu", &ns) == 1)
			sum += ns;
		fclose(f);
	}
	closedir(d);
	return sum;
}

static void run_idle(void)
{
	int fds[4][2];
	uint64_t a, b;
	double pct = 0;
	struct result r;
	char v[16];

	set_env(4);
	for (unsigned i = 0; i < 4; i++) {
		if (pipe(fds[i]) < 0)
			exit(1);
		snprintf(v, sizeof(v), "%u", i);
		setenv("DSM_RANK", v, 1);
		pids[npids] = fork();
		if (pids[npids] == 0)
			node_idle(fds[i][1]);
		npids++;
		close(fds[i][1]);
	}
	/* every node up and connected (start-up is not idleness), then
	 * settled */
	for (unsigned i = 0; i < 4; i++)
		check(read(fds[i][0], v, 1) == 1 && v[0] == 'R', "idle node %u started", i);
	sleep(1);
	/* Three windows of 2 s; the quietest counts. On a shared VM a busy
	 * neighbour now and then makes every wake-up of all four nodes cost
	 * several times more for a second or two (seen: 3-7% in one run in
	 * ten, with the same code); a node that really polls uses the CPU in
	 * every window. */
	for (int w = 0; w < 3; w++) {
		double p;

		a = b = 0;
		for (unsigned i = 0; i < 4; i++)
			a += cpu_ns(pids[i]);
		sleep(2);
		for (unsigned i = 0; i < 4; i++)
			b += cpu_ns(pids[i]);
		p = (double)(b - a) / 1e9 / 2.0 * 100.0;
		printf("idle window %d: %.2f%% of one core\n", w, p);
		if (w == 0 || p < pct)
			pct = p;
	}
	check(pct < 2.0, "4 idle nodes used %.2f%% of one core in the quietest of three 2 s "
	      "windows (limit 2%%)", pct);
	for (unsigned i = 0; i < 4; i++)
		check(read_result(fds[i][0], &r) == 0 && r.ok, "idle node %u stayed up", i);
	check(wait_all() == 0, "idle nodes exited 0");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test-net-multi storm N CALLS | kill | idle\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	dsm_test_deadline("test-net-multi", argc > 4 ? (unsigned)atoi(argv[4]) : 600, pids, &npids);
	if (!strcmp(argv[1], "storm") && argc >= 4)
		run_storm((unsigned)atoi(argv[2]), strtoull(argv[3], NULL, 10));
	else if (!strcmp(argv[1], "kill"))
		run_kill();
	else if (!strcmp(argv[1], "idle"))
		run_idle();
	else
		return 2;
	dsm_test_kill_children();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
