/*
 * bench-dsm: the library through its public header (include/dsm.h), nodes
 * on 127.0.0.1 started by dsmrun, against raw POSIX UDP between two
 * processes (rawudp.c), the reference measured in the same run.
 *
 * What is measured (--repeat N: each N times, interleaved with its
 * reference per repeat; the median of the per-repeat figures is printed;
 * default 3):
 *   - remote_read_fault_{p50,p99}: 2 nodes. Rank 0 allocates a region with
 *     dsm_malloc_placed(LOCAL) (every page homed at rank 0), writes every
 *     page, hands the pointer over with dsm_bcast, then dsm_barrier. Rank 1
 *     loads one byte of every FAULT_STRIDE-th page, the pages in a random
 *     order (not sequential, so fetch-ahead cannot hide the fault), each
 *     first touch timed alone (clock_gettime around the load); the first
 *     FAULT_WARM touches are not recorded. Microseconds. ref: raw UDP
 *     request/response, 32 B request and 4 KiB reply in one datagram,
 *     blocking recv() on both sides, as many round trips as timed faults
 *     (after 200 warm-up); p50 against p50, p99 against p99. The note gives
 *     rank 1's fault counters: a touch that did not fault (its page came
 *     ahead of time) shows as read_faults < touches.
 *   - seq_remote_read: 2 nodes; rank 1 sums every 8-byte word of an array
 *     that rank 0 allocated (LOCAL) and wrote, checking each word, in
 *     address order; MB/s (10^6 B/s). ref: raw UDP stream of the same bytes
 *     in 1472-byte datagrams (1456 B payload), receiver acks every 32, at
 *     most 64 unacked, the sender blocks in recv() when the window is full,
 *     no retransmission, receiver's goodput (the reference of bench-net's
 *     stream_1MiB).
 *   - bulk_read: 2 nodes; rank 0 allocates an array of the same size (LOCAL)
 *     and writes it; rank 1 reads it in BULK_CHUNK (64 KiB) chunks taken in
 *     a random order (a permutation from the seed), each chunk's words in
 *     address order, summing and checking each; MB/s. ref: the raw UDP
 *     stream of seq_remote_read (the same bytes, measured once per repeat
 *     and used by all three bulk figures).
 *   - bulk_write_release: 2 nodes; rank 0 allocates an array of the same
 *     size (LOCAL) and writes it; after a barrier rank 1 overwrites every
 *     8-byte word of it (so every page), in address order, then calls
 *     dsm_barrier (the release that delivers its writes to the home); MB/s
 *     of the array over rank 1's time from the first store to the return
 *     of that barrier (the note gives the stores' and the release's share).
 *     Rank 0 checks every word after the barrier. ref: the same raw stream.
 *   - lock_rtt: 2 nodes; rank 1 takes and releases LOCK_ID (managed by
 *     rank 0: LOCK_ID % 2 == 0) in a loop, each dsm_lock + dsm_unlock pair
 *     timed alone; median microseconds. ref: raw UDP 32 B request/response
 *     median (blocking recv), as many round trips as lock pairs.
 *   - barrier_n2, barrier_n4: every node calls dsm_barrier in a loop, each
 *     call timed alone; per node the median; the value is the largest
 *     per-node median (the note lists them all). ref: the same raw 32 B
 *     round-trip median (one round trip).
 *
 * Processes: the parent (no --node) measures the raw references with a
 * forked child per measurement (a fresh socket pair each time; the child
 * reports over a pipe), and runs the library's side as dsmrun jobs of this
 * same program, `dsmrun -n N -t S -- /proc/self/exe --node NAME ...`,
 * dsmrun's path compiled in (BENCH_DSMRUN; the DSMRUN variable overrides
 * it). One job of 2 nodes per repeat ("pair": the six 2-node measurements
 * in one session) and one of 4 nodes ("barrier"). Nodes print their
 * results on stdout as "@bench-dsm KEY VALUE" lines, which dsmrun prefixes
 * with "[RANK] "; the parent collects those and passes every other line to
 * stderr. The nodes take their DSM_* settings from the environment (the
 * pager: DSM_PAGER, default auto).
 *
 * Output: one JSON object per line on stdout; progress on stderr.
 * --quick: smaller sizes (to check that it works; well under 30 s).
 *
 * Time bounds: each dsmrun job has a deadline (dsmrun -t, and the parent
 * kills dsmrun by pid if it outlives it); an alarm() watchdog kills the
 * children by pid and exits; children die with the parent
 * (PR_SET_PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dsm.h"
#include "rawudp.h"

#ifndef BENCH_DSMRUN
#define BENCH_DSMRUN "dsmrun"
#endif

#define PAGE 4096u
#define FAULT_STRIDE 4u      /* touch every 4th page of the fault region */
#define FAULT_WARM 64u       /* touches not recorded (first contact, caches) */
#define RAW_WARM_4K 200u     /* raw 32 B -> 4 KiB round trips not recorded */
#define LOCK_ID 42u          /* managed by rank 0 of 2 */
#define MSG_BYTES (1u << 20) /* raw stream: message granularity */
#define BULK_CHUNK (64u << 10) /* bulk_read: the unit of its random order */
#define TAG "@bench-dsm "
#define MAXREP 99
#define MAXKV 64
#define NOTE_MAX 768

struct params {
	bool quick;
	int repeat;
	unsigned faults;              /* timed remote read faults per repeat */
	uint64_t seq_bytes;           /* sequentially read array */
	unsigned lock_iters, lock_warm;
	unsigned bar_iters, bar_warm; /* 2 nodes */
	unsigned bar4_iters, bar4_warm;
	unsigned job_s;               /* deadline of one dsmrun job */
	unsigned watchdog_s;
};

static void set_sizes(struct params *P)
{
	P->faults = P->quick ? 500 : 4096;
	P->seq_bytes = P->quick ? 8ull << 20 : 64ull << 20;
	P->lock_iters = P->quick ? 1000 : 10000;
	P->lock_warm = P->lock_iters / 10;
	P->bar_iters = P->quick ? 1000 : 10000;
	P->bar_warm = P->bar_iters / 10;
	P->bar4_iters = P->quick ? 500 : 5000;
	P->bar4_warm = P->bar4_iters / 10;
	P->job_s = P->quick ? 20 : 120;
	P->watchdog_s = (unsigned)(30 + P->repeat * (P->quick ? 2 : 3) * P->job_s);
}

/* ---- common -------------------------------------------------------------- */

static int node_rank = -1;         /* >= 0 in a node */
static pid_t job_pid = -1;         /* parent: the running dsmrun */
static pid_t raw_pid = -1;         /* parent: the running raw server */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void kill_children(void)
{
	if (job_pid > 0) {
		kill(job_pid, SIGKILL); /* its ranks die with it (PDEATHSIG) */
		waitpid(job_pid, NULL, 0);
		job_pid = -1;
	}
	if (raw_pid > 0) {
		kill(raw_pid, SIGKILL);
		waitpid(raw_pid, NULL, 0);
		raw_pid = -1;
	}
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	if (node_rank >= 0)
		fprintf(stderr, "bench-dsm[node %d]: ", node_rank);
	else
		fprintf(stderr, "bench-dsm: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(NULL);
	if (node_rank < 0)
		kill_children();
	_exit(1); /* not exit(): a node's library threads are still running */
}

static void on_alarm(int sig)
{
	static const char msg[] = "bench-dsm: watchdog expired, killing the children\n";
	ssize_t r;

	(void)sig;
	r = write(2, msg, sizeof(msg) - 1);
	(void)r;
	if (job_pid > 0)
		kill(job_pid, SIGKILL);
	if (raw_pid > 0)
		kill(raw_pid, SIGKILL);
	_exit(2);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of v[n] (sorted here), in nanoseconds. */
static int64_t pct(int64_t *v, size_t n, unsigned p)
{
	size_t k = (n * p + 99) / 100;

	qsort(v, n, sizeof(*v), cmp_i64);
	return v[k ? k - 1 : 0];
}

static double median(const double *v, int n)
{
	return bench_median(v, n);
}

static void emit(const char *metric, double value, const char *unit, double ref,
		 const char *note)
{
	bench_emit("dsm", metric, value, unit, ref, note);
}

/* xorshift64*: the random page order, reproducible from the seed. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/* ---- nodes (run under dsmrun) --------------------------------------------- */

/* One result line for the parent. */
static void put(const char *key, double v)
{
	printf(TAG "%s %.3f\n", key, v);
	fflush(stdout);
}

static void node_barrier(void)
{
	int e = dsm_barrier();

	if (e)
		die("dsm_barrier: %s", dsm_strerror(e));
}

static void node_stats(struct dsm_stats *s)
{
	int e = dsm_stats(s);

	if (e)
		die("dsm_stats: %s", dsm_strerror(e));
}

/* Rank 0 allocates bytes homed on itself and hands the pointer over. */
static void *node_alloc_local(size_t bytes)
{
	void *p = NULL;

	if (node_rank == 0) {
		p = dsm_malloc_placed(bytes, DSM_PLACE_LOCAL);
		if (!p)
			die("dsm_malloc_placed(%zu, LOCAL): %s", bytes,
			    dsm_strerror(dsm_last_error()));
	}
	return p;
}

static void node_publish(void **p)
{
	int e = dsm_bcast(p, sizeof(*p), 0);

	if (e)
		die("dsm_bcast: %s", dsm_strerror(e));
	node_barrier();
}

static uint8_t page_byte(size_t page)
{
	return (uint8_t)(page * 37 + 11);
}

/* remote_read_fault: see the top of the file. */
static void node_remote_read(const struct params *P, unsigned seed)
{
	unsigned touches = FAULT_WARM + P->faults;
	size_t pages = (size_t)touches * FAULT_STRIDE;
	uint8_t *p = node_alloc_local(pages * PAGE);

	if (node_rank == 0)
		for (size_t k = 0; k < pages; k++)
			memset(p + k * PAGE, page_byte(k), PAGE);
	node_publish((void **)&p);
	if (node_rank == 1) {
		uint32_t *order = malloc(sizeof(*order) * touches);
		int64_t *s = malloc(sizeof(*s) * P->faults);
		uint64_t rs = 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed * 0x100000001b3ull);
		struct dsm_stats a, b;
		unsigned bad = 0;

		if (!order || !s)
			die("out of memory");
		for (uint32_t i = 0; i < touches; i++)
			order[i] = i;
		for (uint32_t i = touches - 1; i > 0; i--) {
			uint32_t j = (uint32_t)(rnd(&rs) % (i + 1)), t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
		node_stats(&a);
		for (uint32_t i = 0; i < touches; i++) {
			size_t page = (size_t)order[i] * FAULT_STRIDE;
			const volatile uint8_t *at = p + page * PAGE + (order[i] % 64) * 64;
			int64_t t0, t1;
			uint8_t v;

			t0 = now_ns();
			__asm__ volatile("" ::: "memory");
			v = *at;
			__asm__ volatile("" ::: "memory");
			t1 = now_ns();
			if (v != page_byte(page))
				bad++;
			if (i >= FAULT_WARM)
				s[i - FAULT_WARM] = t1 - t0;
		}
		node_stats(&b);
		if (bad)
			die("remote read: %u of %u pages had wrong contents", bad, touches);
		put("fault_touches", touches);
		put("fault_read_faults", (double)(b.read_faults - a.read_faults));
		put("fault_pages_fetched", (double)(b.pages_fetched - a.pages_fetched));
		put("fault_prefetched", (double)(b.prefetched - a.prefetched));
		put("fault_retx", (double)(b.retransmits - a.retransmits));
		put("fault_p99_ns", (double)pct(s, P->faults, 99));
		put("fault_p50_ns", (double)pct(s, P->faults, 50));
		free(order);
		free(s);
	}
	node_barrier();
	if (node_rank == 0)
		dsm_free(p);
}

#define SEQ_MUL 0x9e3779b97f4a7c15ull

/* seq_remote_read: see the top of the file. */
static void node_seq_read(const struct params *P)
{
	size_t words = P->seq_bytes / 8;
	uint64_t *p = node_alloc_local(P->seq_bytes);

	if (node_rank == 0)
		for (size_t i = 0; i < words; i++)
			p[i] = i * SEQ_MUL;
	node_publish((void **)&p);
	if (node_rank == 1) {
		const uint64_t *w = p;
		struct dsm_stats a, b;
		uint64_t sum = 0, bad = 0, want = 0;
		int64_t t0, t1;

		node_stats(&a);
		t0 = now_ns();
		for (size_t i = 0; i < words; i++) {
			sum += w[i];
			bad += w[i] != i * SEQ_MUL;
		}
		t1 = now_ns();
		node_stats(&b);
		for (size_t i = 0; i < words; i++)
			want += i * SEQ_MUL;
		if (bad || sum != want)
			die("sequential read: %" PRIu64 " of %zu words wrong", bad, words);
		put("seq_read_faults", (double)(b.read_faults - a.read_faults));
		put("seq_pages_fetched", (double)(b.pages_fetched - a.pages_fetched));
		put("seq_prefetched", (double)(b.prefetched - a.prefetched));
		put("seq_retx", (double)(b.retransmits - a.retransmits));
		put("seq_mbps", (double)P->seq_bytes / 1e6 / ((double)(t1 - t0) / 1e9));
	}
	node_barrier();
	if (node_rank == 0)
		dsm_free(p);
}

/* bulk_read: see the top of the file. */
static void node_bulk_read(const struct params *P, unsigned seed)
{
	size_t words = P->seq_bytes / 8, chunks = P->seq_bytes / BULK_CHUNK;
	size_t cw = BULK_CHUNK / 8;
	uint64_t *p = node_alloc_local(P->seq_bytes);

	if (node_rank == 0)
		for (size_t i = 0; i < words; i++)
			p[i] = i * SEQ_MUL;
	node_publish((void **)&p);
	if (node_rank == 1) {
		const uint64_t *w = p;
		uint32_t *order = malloc(sizeof(*order) * chunks);
		uint64_t rs = 0xb5ad4eceda1ce2a9ull ^ ((uint64_t)seed * 0x100000001b3ull);
		struct dsm_stats a, b;
		uint64_t sum = 0, bad = 0, want = 0;
		int64_t t0, t1;

		if (!order)
			die("out of memory");
		for (uint32_t i = 0; i < chunks; i++)
			order[i] = i;
		for (size_t i = chunks - 1; i > 0; i--) {
			size_t j = (size_t)(rnd(&rs) % (i + 1));
			uint32_t t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
		node_stats(&a);
		t0 = now_ns();
		for (size_t c = 0; c < chunks; c++) {
			size_t i0 = (size_t)order[c] * cw;

			for (size_t i = i0; i < i0 + cw; i++) {
				sum += w[i];
				bad += w[i] != i * SEQ_MUL;
			}
		}
		t1 = now_ns();
		node_stats(&b);
		for (size_t i = 0; i < chunks * cw; i++)
			want += i * SEQ_MUL;
		if (bad || sum != want)
			die("bulk read: %" PRIu64 " of %zu words wrong", bad, words);
		put("bulkr_read_faults", (double)(b.read_faults - a.read_faults));
		put("bulkr_pages_fetched", (double)(b.pages_fetched - a.pages_fetched));
		put("bulkr_prefetched", (double)(b.prefetched - a.prefetched));
		put("bulkr_retx", (double)(b.retransmits - a.retransmits));
		put("bulkr_mbps", (double)(chunks * BULK_CHUNK) / 1e6 / ((double)(t1 - t0) / 1e9));
		free(order);
	}
	node_barrier();
	if (node_rank == 0)
		dsm_free(p);
}

/* bulk_write_release: see the top of the file. */
static void node_bulk_write(const struct params *P)
{
	size_t words = P->seq_bytes / 8;
	uint64_t *p = node_alloc_local(P->seq_bytes);

	if (node_rank == 0)
		for (size_t i = 0; i < words; i++)
			p[i] = i * SEQ_MUL;
	node_publish((void **)&p);
	if (node_rank == 1) {
		struct dsm_stats a, b;
		int64_t t0, t1, t2;

		node_stats(&a);
		t0 = now_ns();
		for (size_t i = 0; i < words; i++)
			p[i] = ~(i * SEQ_MUL);
		t1 = now_ns();
		node_barrier();
		t2 = now_ns();
		node_stats(&b);
		put("bulkw_read_faults", (double)(b.read_faults - a.read_faults));
		put("bulkw_write_faults", (double)(b.write_faults - a.write_faults));
		put("bulkw_pages_fetched", (double)(b.pages_fetched - a.pages_fetched));
		put("bulkw_diffs", (double)(b.diffs_sent - a.diffs_sent));
		put("bulkw_diff_mb", (double)(b.diff_bytes - a.diff_bytes) / 1e6);
		put("bulkw_retx", (double)(b.retransmits - a.retransmits));
		put("bulkw_store_ms", (double)(t1 - t0) / 1e6);
		put("bulkw_release_ms", (double)(t2 - t1) / 1e6);
		put("bulkw_mbps", (double)P->seq_bytes / 1e6 / ((double)(t2 - t0) / 1e9));
	} else {
		uint64_t bad = 0;

		node_barrier();
		for (size_t i = 0; i < words; i++)
			bad += p[i] != ~(i * SEQ_MUL);
		if (bad)
			die("bulk write: %" PRIu64 " of %zu words not delivered", bad, words);
	}
	node_barrier();
	if (node_rank == 0)
		dsm_free(p);
}

/* lock_rtt: see the top of the file. */
static void node_lock(const struct params *P)
{
	if (node_rank == 1) {
		unsigned total = P->lock_warm + P->lock_iters;
		int64_t *s = malloc(sizeof(*s) * P->lock_iters);
		struct dsm_stats a, b;

		if (!s)
			die("out of memory");
		node_stats(&a);
		for (unsigned i = 0; i < total; i++) {
			int64_t t0, t1;
			int e;

			t0 = now_ns();
			if ((e = dsm_lock(LOCK_ID)))
				die("dsm_lock(%u): %s", LOCK_ID, dsm_strerror(e));
			if ((e = dsm_unlock(LOCK_ID)))
				die("dsm_unlock(%u): %s", LOCK_ID, dsm_strerror(e));
			t1 = now_ns();
			if (i >= P->lock_warm)
				s[i - P->lock_warm] = t1 - t0;
		}
		node_stats(&b);
		put("lock_retx", (double)(b.retransmits - a.retransmits));
		put("lock_p99_ns", (double)pct(s, P->lock_iters, 99));
		put("lock_p50_ns", (double)pct(s, P->lock_iters, 50));
		free(s);
	}
	node_barrier();
}

/* barrier_n*: every node, each barrier timed alone. */
static void node_barriers(unsigned warm, unsigned iters)
{
	int64_t *s = malloc(sizeof(*s) * iters);
	struct dsm_stats a, b;

	if (!s)
		die("out of memory");
	node_stats(&a);
	for (unsigned i = 0; i < warm + iters; i++) {
		int64_t t0, t1;

		t0 = now_ns();
		node_barrier();
		t1 = now_ns();
		if (i >= warm)
			s[i - warm] = t1 - t0;
	}
	node_stats(&b);
	put("bar_retx", (double)(b.retransmits - a.retransmits));
	put("bar_p99_ns", (double)pct(s, iters, 99));
	put("bar_p50_ns", (double)pct(s, iters, 50));
	free(s);
}

static int node_main(const struct params *P, const char *name, unsigned seed)
{
	int e, want;

	node_rank = getenv("DSM_RANK") ? atoi(getenv("DSM_RANK")) : 0; /* until dsm_init */
	if (strcmp(name, "pair") && strcmp(name, "barrier"))
		die("unknown node job %s", name);
	want = !strcmp(name, "pair") ? 2 : 4;
	e = dsm_init(NULL);
	if (e)
		die("dsm_init: %s", dsm_strerror(e));
	node_rank = dsm_rank();
	if (dsm_nodes() != want)
		die("%s runs on %d nodes, not %d", name, dsm_nodes(), want);
	if (want == 2) {
		node_remote_read(P, seed);
		node_seq_read(P);
		node_bulk_read(P, seed);
		node_bulk_write(P);
		node_lock(P);
		node_barriers(P->bar_warm, P->bar_iters);
	} else {
		node_barriers(P->bar4_warm, P->bar4_iters);
	}
	e = dsm_finalize();
	if (e)
		die("dsm_finalize: %s", dsm_strerror(e));
	return 0;
}

/* ---- parent: dsmrun jobs ---------------------------------------------------- */

struct kv {
	int rank;
	char key[32];
	double v;
};

struct job_res {
	int n;
	struct kv kv[MAXKV];
};

static char self_path[PATH_MAX];

/* The value rank printed for key; dies when there is none. */
static double res_get(const struct job_res *r, int rank, const char *key)
{
	for (int i = 0; i < r->n; i++)
		if (r->kv[i].rank == rank && !strcmp(r->kv[i].key, key))
			return r->kv[i].v;
	die("rank %d did not report %s", rank, key);
}

/* One complete line of dsmrun's stdout: a result, or passed to stderr. */
static void job_line(char *line, struct job_res *res)
{
	struct kv *kv = &res->kv[res->n];
	int rank, off = 0;

	if (sscanf(line, "[%d] " TAG "%31s %lf%n", &rank, kv->key, &kv->v, &off) == 3 && off) {
		if (res->n == MAXKV)
			die("too many result lines");
		kv->rank = rank;
		res->n++;
		return;
	}
	fprintf(stderr, "%s\n", line);
}

/* Runs `dsmrun -n nodes -t job_s -- self --node name ...` and collects the
 * nodes' results. Any failure of the job ends the benchmark. */
static void run_job(const struct params *P, const char *name, int nodes, unsigned seed,
		    struct job_res *res)
{
	const char *dsmrun = getenv("DSMRUN") ? getenv("DSMRUN") : BENCH_DSMRUN;
	char n_arg[16], t_arg[16], seed_arg[16], buf[8192];
	size_t len = 0;
	int64_t deadline = now_ns() + (int64_t)(P->job_s + 5) * 1000000000;
	pid_t parent = getpid();
	int pfd[2], status;

	res->n = 0;
	snprintf(n_arg, sizeof(n_arg), "%d", nodes);
	snprintf(t_arg, sizeof(t_arg), "%u", P->job_s);
	snprintf(seed_arg, sizeof(seed_arg), "%u", seed);
	if (pipe2(pfd, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	job_pid = fork();
	if (job_pid < 0)
		die("fork: %s", strerror(errno));
	if (job_pid == 0) {
		char *argv[] = { (char *)dsmrun, "-n", n_arg, "-t", t_arg, "--", self_path,
				 "--node", (char *)name, "--seed", seed_arg,
				 P->quick ? (char *)"--quick" : NULL, NULL };

		prctl(PR_SET_PDEATHSIG, SIGTERM); /* dsmrun passes it to the ranks */
		if (getppid() != parent)
			_exit(1);
		if (dup2(pfd[1], 1) < 0)
			_exit(127);
		execvp(dsmrun, argv);
		fprintf(stderr, "bench-dsm: cannot run %s: %s (set DSMRUN, or build demos/dsmrun)\n",
			dsmrun, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
		int64_t left = deadline - now_ns();
		ssize_t r;
		char *nl;
		int k;

		if (left <= 0)
			die("the %s job (dsmrun pid %d) outlived its deadline of %u s", name,
			    (int)job_pid, P->job_s);
		k = poll(&pf, 1, (int)(left / 1000000) + 1);
		if (k < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (k <= 0)
			continue;
		r = read(pfd[0], buf + len, sizeof(buf) - 1 - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("read from dsmrun: %s", strerror(errno));
		}
		if (r == 0)
			break;
		len += (size_t)r;
		buf[len] = 0;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			job_line(buf, res);
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len + 1);
		}
		if (len == sizeof(buf) - 1) { /* a line too long: pass it on */
			job_line(buf, res);
			len = 0;
		}
	}
	if (len) {
		buf[len] = 0;
		job_line(buf, res);
	}
	close(pfd[0]);
	for (;;) {
		pid_t w = waitpid(job_pid, &status, WNOHANG);

		if (w == job_pid)
			break;
		if (now_ns() > deadline)
			die("dsmrun (pid %d) closed its output but did not exit", (int)job_pid);
		usleep(10000);
	}
	job_pid = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		die("the %s job failed: dsmrun %s %d", name,
		    WIFEXITED(status) ? "exited with status" : "was killed by signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* ---- parent: raw UDP references (rawudp.c) --------------------------------- */

/* What the raw server child reports through its pipe when its loop ends. */
struct raw_report {
	int e;
	uint64_t count, bytes;
	char err[RAWUDP_ERR];
};

struct raw_wait {
	int fd;                /* read end of the report pipe */
	struct raw_report rep;
	bool got;
};

/* rawudp_wait_fn: the child's report within timeout_ms. */
static bool raw_wait(void *arg, int timeout_ms)
{
	struct raw_wait *w = arg;
	struct pollfd pf = { .fd = w->fd, .events = POLLIN };
	ssize_t r;
	int k;

	do
		k = poll(&pf, 1, timeout_ms);
	while (k < 0 && errno == EINTR);
	if (k <= 0)
		return false;
	r = read(w->fd, &w->rep, sizeof(w->rep));
	if (r != (ssize_t)sizeof(w->rep))
		die("the raw server died without a report");
	w->got = true;
	return true;
}

enum { RAW_PONG, RAW_SINK };

/* Starts the server side of a raw measurement in a child on a fresh socket
 * pair; returns the client's socket, the report pipe in w->fd. */
static int raw_start(int kind, size_t reply, struct raw_wait *w)
{
	char err[RAWUDP_ERR];
	pid_t parent = getpid();
	int s0, s1, pfd[2];

	if (rawudp_pair(&s0, &s1, err))
		die("%s", err);
	if (pipe2(pfd, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	raw_pid = fork();
	if (raw_pid < 0)
		die("fork: %s", strerror(errno));
	if (raw_pid == 0) {
		struct raw_report rep;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		close(s0);
		close(pfd[0]);
		memset(&rep, 0, sizeof(rep));
		rep.e = rawudp_set_rcvtimeo(s1, 1000, rep.err);
		if (!rep.e)
			rep.e = kind == RAW_PONG ? rawudp_pong(s1, reply, false, rep.err) :
				rawudp_sink(s1, &rep.count, &rep.bytes, rep.err);
		if (write(pfd[1], &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
			_exit(1);
		_exit(0);
	}
	close(s1);
	close(pfd[1]);
	memset(w, 0, sizeof(*w));
	w->fd = pfd[0];
	return s0;
}

static void raw_finish(int s, struct raw_wait *w)
{
	int status;

	close(s);
	close(w->fd);
	if (waitpid(raw_pid, &status, 0) != raw_pid)
		die("waitpid: %s", strerror(errno));
	raw_pid = -1;
	if (!w->got || w->rep.e)
		die("raw server: %s", w->got ? w->rep.err : "no report");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		die("the raw server failed (status %#x)", status);
}

struct lat {
	double p50, p99;       /* us */
};

/* Blocking ping-pong, size-byte requests, reply-byte replies. */
static void raw_rtt(size_t size, size_t reply, unsigned warm, unsigned iters, struct lat *out)
{
	struct raw_wait w;
	int s = raw_start(RAW_PONG, reply, &w);
	struct rawudp_ping_cfg cfg = {
		.size = size, .reply = reply, .warm = warm, .iters = iters,
		.wait = raw_wait, .arg = &w,
	};
	int64_t *t = malloc(sizeof(*t) * iters);
	char err[RAWUDP_ERR];
	unsigned lost;

	if (!t)
		die("out of memory");
	if (rawudp_set_rcvtimeo(s, 1000, err) || rawudp_ping(s, &cfg, t, &lost, err))
		die("%s", err);
	raw_finish(s, &w);
	if (lost)
		fprintf(stderr, "# raw ping-pong %zu B -> %zu B: %u datagrams lost and resent\n",
			size, reply, lost);
	out->p99 = (double)pct(t, iters, 99) / 1000;
	out->p50 = (double)pct(t, iters, 50) / 1000;
	free(t);
}

/* Raw stream of bytes; MB/s goodput. Adds the datagrams not received to
 * *lost. */
static double raw_stream(uint64_t bytes, uint64_t *lost)
{
	struct raw_wait w;
	int s = raw_start(RAW_SINK, 0, &w);
	struct rawudp_stream_res rs;
	char err[RAWUDP_ERR];

	if (rawudp_stream(s, bytes, 30000000000LL, MSG_BYTES, raw_wait, &w, &rs, err))
		die("%s", err);
	raw_finish(s, &w);
	*lost += rs.sent - w.rep.count;
	return (double)w.rep.bytes / 1e6 / ((double)rs.ns / 1e9);
}

/* ---- parent ----------------------------------------------------------------- */

/* Per-repeat figures. */
struct reps {
	double raw4k[2][MAXREP], raw32[2][MAXREP];   /* [p50, p99] us */
	double raw_stream[MAXREP];
	double fault[2][MAXREP];                     /* us */
	double seq[MAXREP], lock[MAXREP], lock99[MAXREP];
	double bulk_r[MAXREP], bulk_w[MAXREP];
	double bulk_w_store[MAXREP], bulk_w_rel[MAXREP];  /* ms */
	double bar2[MAXREP], bar4[MAXREP];
	double bar2_node[2][MAXREP], bar4_node[4][MAXREP];
	uint64_t raw_lost;
	uint64_t f_touch, f_faults, f_fetched, f_pre;    /* summed over repeats */
	uint64_t s_faults, s_fetched, s_pre;
	uint64_t br_faults, br_fetched, br_pre, br_retx;
	uint64_t bw_rfaults, bw_wfaults, bw_fetched, bw_diffs, bw_retx;
	double bw_diff_mb;
	uint64_t f_retx, s_retx, l_retx, b2_retx, b4_retx;  /* retransmissions */
};

static void run(const struct params *P)
{
	static struct reps R;
	const char *pager = getenv("DSM_PAGER") ? getenv("DSM_PAGER") : "auto";
	char note[NOTE_MAX], list[256];
	int n = P->repeat;
	size_t o;

	for (int r = 0; r < n; r++) {
		struct job_res jr;
		struct lat l;

		raw_rtt(32, 4096, RAW_WARM_4K, P->faults, &l);
		R.raw4k[0][r] = l.p50, R.raw4k[1][r] = l.p99;
		raw_rtt(32, 0, P->lock_warm, P->lock_iters, &l);
		R.raw32[0][r] = l.p50, R.raw32[1][r] = l.p99;
		R.raw_stream[r] = raw_stream(P->seq_bytes, &R.raw_lost);

		run_job(P, "pair", 2, (unsigned)r + 1, &jr);
		R.fault[0][r] = res_get(&jr, 1, "fault_p50_ns") / 1000;
		R.fault[1][r] = res_get(&jr, 1, "fault_p99_ns") / 1000;
		R.f_touch += (uint64_t)res_get(&jr, 1, "fault_touches");
		R.f_faults += (uint64_t)res_get(&jr, 1, "fault_read_faults");
		R.f_fetched += (uint64_t)res_get(&jr, 1, "fault_pages_fetched");
		R.f_pre += (uint64_t)res_get(&jr, 1, "fault_prefetched");
		R.f_retx += (uint64_t)res_get(&jr, 1, "fault_retx");
		R.s_retx += (uint64_t)res_get(&jr, 1, "seq_retx");
		R.l_retx += (uint64_t)res_get(&jr, 1, "lock_retx");
		R.seq[r] = res_get(&jr, 1, "seq_mbps");
		R.s_faults += (uint64_t)res_get(&jr, 1, "seq_read_faults");
		R.s_fetched += (uint64_t)res_get(&jr, 1, "seq_pages_fetched");
		R.s_pre += (uint64_t)res_get(&jr, 1, "seq_prefetched");
		R.bulk_r[r] = res_get(&jr, 1, "bulkr_mbps");
		R.br_faults += (uint64_t)res_get(&jr, 1, "bulkr_read_faults");
		R.br_fetched += (uint64_t)res_get(&jr, 1, "bulkr_pages_fetched");
		R.br_pre += (uint64_t)res_get(&jr, 1, "bulkr_prefetched");
		R.br_retx += (uint64_t)res_get(&jr, 1, "bulkr_retx");
		R.bulk_w[r] = res_get(&jr, 1, "bulkw_mbps");
		R.bulk_w_store[r] = res_get(&jr, 1, "bulkw_store_ms");
		R.bulk_w_rel[r] = res_get(&jr, 1, "bulkw_release_ms");
		R.bw_rfaults += (uint64_t)res_get(&jr, 1, "bulkw_read_faults");
		R.bw_wfaults += (uint64_t)res_get(&jr, 1, "bulkw_write_faults");
		R.bw_fetched += (uint64_t)res_get(&jr, 1, "bulkw_pages_fetched");
		R.bw_diffs += (uint64_t)res_get(&jr, 1, "bulkw_diffs");
		R.bw_diff_mb += res_get(&jr, 1, "bulkw_diff_mb");
		R.bw_retx += (uint64_t)res_get(&jr, 1, "bulkw_retx");
		R.lock[r] = res_get(&jr, 1, "lock_p50_ns") / 1000;
		R.lock99[r] = res_get(&jr, 1, "lock_p99_ns") / 1000;
		R.bar2[r] = 0;
		for (int k = 0; k < 2; k++) {
			R.bar2_node[k][r] = res_get(&jr, k, "bar_p50_ns") / 1000;
			R.b2_retx += (uint64_t)res_get(&jr, k, "bar_retx");
			if (R.bar2_node[k][r] > R.bar2[r])
				R.bar2[r] = R.bar2_node[k][r];
		}

		run_job(P, "barrier", 4, (unsigned)r + 1, &jr);
		R.bar4[r] = 0;
		for (int k = 0; k < 4; k++) {
			R.bar4_node[k][r] = res_get(&jr, k, "bar_p50_ns") / 1000;
			R.b4_retx += (uint64_t)res_get(&jr, k, "bar_retx");
			if (R.bar4_node[k][r] > R.bar4[r])
				R.bar4[r] = R.bar4_node[k][r];
		}
		fprintf(stderr,
			"# repeat %d: fault %.1f/%.1f us (raw 32B->4KiB %.1f/%.1f), seq %.0f MB/s "
			"(raw stream %.0f), bulk read %.0f write+release %.0f MB/s, lock %.1f us, "
			"barrier n2 %.1f n4 %.1f us (raw 32B %.1f)\n",
			r + 1, R.fault[0][r], R.fault[1][r], R.raw4k[0][r], R.raw4k[1][r], R.seq[r],
			R.raw_stream[r], R.bulk_r[r], R.bulk_w[r], R.lock[r], R.bar2[r], R.bar4[r],
			R.raw32[0][r]);
	}

	{
		double raw4k = median(R.raw4k[0], n), raw4k_99 = median(R.raw4k[1], n);
		double raw32 = median(R.raw32[0], n);

		snprintf(note, sizeof(note),
			 "2 nodes, pager %s; rank 1 loads 1 byte of every %uth page homed at rank 0 "
			 "(written, LOCAL), random page order, each first touch timed alone, %u "
			 "timed after %u; rank 1 counters over all repeats: %" PRIu64 " touches, "
			 "%" PRIu64 " read faults, %" PRIu64 " pages fetched, %" PRIu64
			 " prefetched, %" PRIu64 " retransmissions; ref: raw UDP request/response "
			 "32 B -> 4096 B in one datagram, blocking recv on both sides, %u round "
			 "trips after %u (p50 ref for p50, p99 ref for p99; raw p50 %.2f us); "
			 "median of %d repeats",
			 pager, FAULT_STRIDE, P->faults, FAULT_WARM, R.f_touch, R.f_faults,
			 R.f_fetched, R.f_pre, R.f_retx, P->faults, RAW_WARM_4K, raw4k, n);
		emit("remote_read_fault_p50", median(R.fault[0], n), "us", raw4k, note);
		emit("remote_read_fault_p99", median(R.fault[1], n), "us", raw4k_99, note);

		snprintf(note, sizeof(note),
			 "MB=1e6 B; 2 nodes, pager %s; rank 1 sums and checks every 8-byte word of "
			 "a %" PRIu64 " MiB array homed at rank 0 (LOCAL), in address order; rank 1 "
			 "counters over all repeats: %" PRIu64 " read faults, %" PRIu64 " pages "
			 "fetched, %" PRIu64 " prefetched, %" PRIu64 " retransmissions; ref: raw UDP "
			 "stream of the same bytes, 1472 B datagrams (1456 B payload), receiver "
			 "acks every %u, sender <= %u unacked and blocks in recv when full, "
			 "default socket buffers, no retransmission, goodput (raw lost %" PRIu64
			 " dgrams); median of %d repeats",
			 pager, P->seq_bytes >> 20, R.s_faults, R.s_fetched, R.s_pre, R.s_retx,
			 RAWUDP_ACK_EVERY, RAWUDP_WINDOW, R.raw_lost, n);
		emit("seq_remote_read", median(R.seq, n), "MB/s", median(R.raw_stream, n), note);

		snprintf(note, sizeof(note),
			 "MB=1e6 B; 2 nodes, pager %s; rank 1 sums and checks every 8-byte word of "
			 "a %" PRIu64 " MiB array homed at rank 0 (LOCAL, written by it), %u KiB "
			 "chunks in a random order, each chunk in address order; rank 1 counters "
			 "over all repeats: %" PRIu64 " read faults, %" PRIu64 " pages fetched, %"
			 PRIu64 " prefetched, %" PRIu64 " retransmissions; ref: the raw UDP stream "
			 "of seq_remote_read (same bytes, same run); median of %d repeats",
			 pager, P->seq_bytes >> 20, BULK_CHUNK >> 10, R.br_faults, R.br_fetched,
			 R.br_pre, R.br_retx, n);
		emit("bulk_read", median(R.bulk_r, n), "MB/s", median(R.raw_stream, n), note);

		snprintf(note, sizeof(note),
			 "MB=1e6 B; 2 nodes, pager %s; rank 1 overwrites every 8-byte word of a %"
			 PRIu64 " MiB array homed at rank 0 (LOCAL, written by it), address order, "
			 "then dsm_barrier; timed from the first store to the barrier's return "
			 "(medians: stores %.1f ms, release %.1f ms); rank 0 checks every word; rank "
			 "1 counters over all repeats: %" PRIu64 " read faults, %" PRIu64 " write "
			 "faults, %" PRIu64 " pages fetched, %" PRIu64 " diffs (%.1f MB), %" PRIu64
			 " retransmissions; ref: the raw UDP stream of seq_remote_read (same bytes, "
			 "same run); median of %d repeats",
			 pager, P->seq_bytes >> 20, median(R.bulk_w_store, n), median(R.bulk_w_rel, n),
			 R.bw_rfaults, R.bw_wfaults, R.bw_fetched, R.bw_diffs, R.bw_diff_mb, R.bw_retx,
			 n);
		emit("bulk_write_release", median(R.bulk_w, n), "MB/s", median(R.raw_stream, n),
		     note);

		snprintf(note, sizeof(note),
			 "2 nodes; rank 1 dsm_lock(%u) + dsm_unlock(%u) (manager rank 0, no "
			 "contention), each pair timed alone, %u after %u, median (p99 %.2f us); rank 1 "
			 "retransmitted %" PRIu64 " datagrams over all repeats; ref: "
			 "raw UDP 32 B request/response median, blocking recv on both sides, %u round "
			 "trips after %u; median of %d repeats",
			 LOCK_ID, LOCK_ID, P->lock_iters, P->lock_warm, median(R.lock99, n), R.l_retx,
			 P->lock_iters, P->lock_warm, n);
		emit("lock_rtt", median(R.lock, n), "us", raw32, note);

		o = 0;
		for (int k = 0; k < 2; k++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%.2f", k ? ", " : "",
					      median(R.bar2_node[k], n));
		snprintf(note, sizeof(note),
			 "2 nodes; every node times each dsm_barrier alone, %u after %u; value: the "
			 "largest per-node median (per rank: %s us); %" PRIu64 " retransmissions "
			 "(all nodes, all repeats); ref: raw UDP 32 B request/response median (one "
			 "round trip), blocking recv; median of %d repeats", P->bar_iters,
			 P->bar_warm, list, R.b2_retx, n);
		emit("barrier_n2", median(R.bar2, n), "us", raw32, note);

		o = 0;
		for (int k = 0; k < 4; k++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%.2f", k ? ", " : "",
					      median(R.bar4_node[k], n));
		snprintf(note, sizeof(note),
			 "4 nodes on %ld CPUs; every node times each dsm_barrier alone, %u after %u; "
			 "value: the largest per-node median (per rank: %s us); %" PRIu64
			 " retransmissions (all nodes, all repeats); ref: raw UDP 32 B "
			 "request/response median (one round trip), blocking recv; median of %d "
			 "repeats", sysconf(_SC_NPROCESSORS_ONLN), P->bar4_iters, P->bar4_warm, list,
			 R.b4_retx, n);
		emit("barrier_n4", median(R.bar4, n), "us", raw32, note);
	}
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--quick] [--repeat N]\n"
		"  runs its nodes with dsmrun (%s; the DSMRUN variable overrides it)\n",
		argv0, BENCH_DSMRUN);
	exit(2);
}

int main(int argc, char **argv)
{
	struct params P;
	const char *node = NULL;
	unsigned seed = 1;
	ssize_t k;

	memset(&P, 0, sizeof(P));
	P.repeat = 3;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			P.quick = true;
		} else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);

			if (*end || v < 1 || v > MAXREP)
				usage(argv[0]);
			P.repeat = (int)v;
		} else if (!strcmp(argv[i], "--node") && i + 1 < argc) {
			node = argv[++i];
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			seed = (unsigned)strtoul(argv[++i], NULL, 10);
		} else {
			usage(argv[0]);
		}
	}
	set_sizes(&P);
	if (node)
		return node_main(&P, node, seed);

	k = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	if (k <= 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	self_path[k] = 0;
	signal(SIGALRM, on_alarm);
	alarm(P.watchdog_s);
	fprintf(stderr, "# bench-dsm: %s, %d repeat(s), dsmrun %s, watchdog %u s\n",
		P.quick ? "quick" : "full", P.repeat,
		getenv("DSMRUN") ? getenv("DSMRUN") : BENCH_DSMRUN, P.watchdog_s);
	run(&P);
	alarm(0);
	return 0;
}
