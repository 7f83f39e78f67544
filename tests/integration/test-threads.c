/*
 * Multi-node, multi-thread tests of dsm_barrier_threads (a barrier among
 * every application thread of every node), run under the launcher:
 *
 *   dsmrun -n N test-threads THREADS SCENARIO[,SCENARIO...]
 *
 * THREADS application threads per node run each scenario (started for
 * it, joined after it); the main thread allocates, broadcasts and calls
 * dsm_barrier between scenarios (rank 0 prints "scenario NAME: ok (X.XX
 * s)"). T = N x THREADS threads in all; thread t of node r is thread
 * g = r x THREADS + t. Scenarios:
 *   slices   a shared array of uint32 words and one of bytes (interleaved
 *            over the nodes), cut into T slices of uneven lengths that
 *            start and end inside pages, so most pages hold slices of
 *            threads of different nodes. TEST_THREADS_ROUNDS rounds
 *            (default 200): each thread writes the slice(s) the round
 *            gives it (a different thread every round; every fifth round
 *            the threads of one node write all slices), dsm_barrier_threads,
 *            every thread checks every element of both arrays. Two
 *            buffers alternate, so one barrier per round suffices (round
 *            r + 2 rewrites what round r checked, after round r + 1's
 *            barrier). dsm_stats: exactly one node barrier per round.
 *   counter  five phases; in each every thread increments three counters
 *            TEST_THREADS_K times (default 20), each under its own lock
 *            (dsm_lock/dsm_unlock; the counters share a page), in an order
 *            that alternates, and writes its own slot of the same page
 *            without a lock; dsm_barrier_threads; every thread checks the
 *            counters (exactly T x K x phases so far) and every slot;
 *            dsm_barrier_threads. A counter read under its lock never goes
 *            back and never reaches the total early.
 *   misuse   dsm_barrier_threads(0) -> DSM_EINVAL; while THREADS - 1
 *            threads wait in a round, the last one calls it with THREADS +
 *            1 and THREADS - 1 -> DSM_EINVAL, the round still waits for it
 *            (dsm__tbarrier_waiting), then completes and carries every
 *            thread's writes. While a node's round is in its node barrier
 *            (held open by node h, which waits: h = 0, then h = 1), the
 *            main thread of every other node gets DSM_EBUSY from
 *            dsm_barrier and DSM_EINVAL from dsm_barrier_threads(THREADS +
 *            1), and tells node h through a dsm_fetch_add counter. A child
 *            forked after dsm_init: DSM_ECLOSED. Before dsm_init and after
 *            dsm_finalize (every run): DSM_ECLOSED.
 *   death    the last rank _exits (no dsm_finalize) while the others' threads
 *            are in dsm_barrier_threads: every thread of every survivor gets
 *            DSM_EPEERDEAD, from that round and the next; dsm_finalize on
 *            the survivors: DSM_EPEERDEAD. Must be last (set a short
 *            DSM_PEER_TIMEOUT_MS).
 *
 * Every check compares exact values; a mismatch prints the address, the
 * expected and the found value and the thread that wrote it, and the node
 * exits 1. dsm_init returning DSM_ENOTSUP exits 77 (skip). Linked with the
 * internal library for two observation hooks (dsm__tbarrier_waiting,
 * dsm__barrier_busy) that make the misuse checks deterministic; everything
 * else goes through include/dsm.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define EXIT_SKIP 77
#define MAX_THREADS 64     /* per node */
#define MAX_ALL 1024       /* threads of all nodes (slices) */
#define MAX_REPORT 12      /* mismatches printed per check */
#define POLL_LIMIT_S 30.0  /* a condition polled for (misuse) must hold by then */

static int me, nodes;
static unsigned tpn;        /* threads per node */
static unsigned nthr;       /* all threads: nodes x tpn */
static size_t pg;
static const char *scenario = "-";
static long n_rounds = 200; /* TEST_THREADS_ROUNDS */
static long k_iter = 20;    /* TEST_THREADS_K */

/* ---- helpers ------------------------------------------------------------ */

static void flush_all(void)
{
	fflush(stdout);
	fflush(stderr);
}

/* End this node with status 1 after a message (_exit: the library's and
 * the other test threads are still running). */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL node %d, scenario %s: ", me, scenario);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	flush_all();
	_exit(1);
}

#define CK(call)                                                              \
	do {                                                                  \
		int ck_r_ = (call);                                           \
		if (ck_r_ != 0)                                               \
			die("%s:%d: %s returned %d (%s)", __FILE__, __LINE__,  \
			    #call, ck_r_, dsm_strerror(ck_r_));               \
	} while (0)

/* A call that must return exactly `want`. */
#define EXPECT(call, want)                                                    \
	do {                                                                  \
		int ex_r_ = (call);                                           \
		if (ex_r_ != (want))                                          \
			die("%s:%d: %s returned %d (%s), expected %s", __FILE__, \
			    __LINE__, #call, ex_r_, dsm_strerror(ex_r_), #want); \
	} while (0)

#define REQUIRE(cond, ...)                                                    \
	do {                                                                  \
		if (!(cond))                                                  \
			die(__VA_ARGS__);                                     \
	} while (0)

/* Mismatches of one check, from any thread. */
static pthread_mutex_t mis_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long n_mis;

/* writer: the thread g that wrote the value, or -1 for every thread. */
static void mismatch(unsigned g, const char *what, size_t idx, const volatile void *addr,
		     uint64_t expected, uint64_t got, int writer)
{
	pthread_mutex_lock(&mis_lock);
	if (n_mis++ < MAX_REPORT) {
		char by[48];

		if (writer >= 0)
			snprintf(by, sizeof by, "thread %u of node %u", (unsigned)writer % tpn,
				 (unsigned)writer / tpn);
		else
			snprintf(by, sizeof by, "every thread");
		fprintf(stderr, "MISMATCH node %d thread %u, scenario %s: %s[%zu] at %p: "
			"expected 0x%" PRIx64 ", got 0x%" PRIx64 " (written by %s)\n", me,
			g % tpn, scenario, what, idx, (const void *)addr, expected, got, by);
	}
	pthread_mutex_unlock(&mis_lock);
}

static void mismatches_done(const char *what)
{
	unsigned long n;

	pthread_mutex_lock(&mis_lock);
	n = n_mis;
	pthread_mutex_unlock(&mis_lock);
	if (n)
		die("%s: %lu mismatches", what, n);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* splitmix64 finaliser. */
static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static long env_long(const char *name, long def, long min, long max)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max) {
		fprintf(stderr, "test-threads: %s=%s: expected an integer in %ld..%ld\n",
			name, s, min, max);
		exit(2);
	}
	return v;
}

/* The barrier under test, expected to succeed. */
static void tbar(void)
{
	int r = dsm_barrier_threads(tpn);

	if (r)
		die("dsm_barrier_threads(%u) returned %d (%s)", tpn, r, dsm_strerror(r));
}

/* Root allocates size bytes, every node gets the pointer. Main thread;
 * collective. The root frees it with shared_free after the scenario. */
static void *shared_alloc(size_t size, enum dsm_placement where, int root)
{
	void *p = NULL;
	int err = 0;

	if (me == root) {
		p = dsm_malloc_placed(size, where);
		if (!p)
			err = dsm_last_error();
		else
			memset(p, 0, size);
	}
	CK(dsm_bcast(&p, sizeof p, root));
	REQUIRE(p, "dsm_malloc_placed(%zu) on node %d failed: %s", size, root,
		dsm_strerror(err));
	return p;
}

static void shared_free(void *p, int root)
{
	if (me == root) {
		dsm_free(p);
		REQUIRE(dsm_last_error() == 0, "dsm_free(%p): %s", p,
			dsm_strerror(dsm_last_error()));
	}
}

/* THREADS threads run fn(t), t = 0 .. THREADS - 1. */
static pthread_t workers[MAX_THREADS];

struct work {
	void (*fn)(unsigned t);
	unsigned t;
};

static struct work works[MAX_THREADS];

static void *work_main(void *arg)
{
	struct work *w = arg;

	w->fn(w->t);
	return NULL;
}

static void threads_start(void (*fn)(unsigned t))
{
	for (unsigned t = 0; t < tpn; t++) {
		int e;

		works[t].fn = fn;
		works[t].t = t;
		e = pthread_create(&workers[t], NULL, work_main, &works[t]);
		REQUIRE(e == 0, "pthread_create: %s", strerror(e));
	}
}

static void threads_join(void)
{
	for (unsigned t = 0; t < tpn; t++)
		pthread_join(workers[t], NULL);
}

static void threads_run(void (*fn)(unsigned t))
{
	threads_start(fn);
	threads_join();
}

/* ---- slices ------------------------------------------------------------- */

static struct {
	uint8_t *base;                  /* both buffers */
	size_t stride;                  /* bytes from buffer 0 to buffer 1 */
	size_t nw, nb;                  /* words, bytes per buffer */
	size_t woff[MAX_ALL + 1], boff[MAX_ALL + 1]; /* slice starts, [nthr] the end */
} S;

static uint32_t *sl_words(unsigned b)
{
	return (uint32_t *)(S.base + b * S.stride);
}

static uint8_t *sl_bytes(unsigned b)
{
	return S.base + b * S.stride + S.nw * 4;
}

/* Which thread writes slice s in round r. Every fifth round, node
 * (r / 5) mod N's threads write all of them; otherwise a permutation that
 * moves every round (and reverses every other round). */
static unsigned sl_writer(long r, unsigned s)
{
	unsigned base;

	if (r % 5 == 4)
		return (unsigned)((r / 5) % nodes) * tpn + s % tpn;
	base = (unsigned)((s + nthr - (unsigned)(r % nthr)) % nthr);
	return (r & 1) ? nthr - 1 - base : base;
}

static uint64_t sl_seed(long r, unsigned s)
{
	return mix(((uint64_t)r << 20) ^ s ^ 0x5EED0000000000ull);
}

static uint32_t sl_word(uint64_t seed, size_t i)
{
	return (uint32_t)seed + (uint32_t)i * 0x9E3779B1u;
}

static uint8_t sl_byte(uint64_t seed, size_t j)
{
	return (uint8_t)((seed >> 32) + j * 131u);
}

static void slices_thread(unsigned t)
{
	unsigned g = (unsigned)me * tpn + t;

	for (long r = 0; r < n_rounds; r++) {
		unsigned b = (unsigned)(r & 1);
		uint32_t *w = sl_words(b);
		uint8_t *by = sl_bytes(b);

		for (unsigned s = 0; s < nthr; s++) {
			uint64_t seed;

			if (sl_writer(r, s) != g)
				continue;
			seed = sl_seed(r, s);
			for (size_t i = S.woff[s]; i < S.woff[s + 1]; i++)
				w[i] = sl_word(seed, i - S.woff[s]);
			for (size_t j = S.boff[s]; j < S.boff[s + 1]; j++)
				by[j] = sl_byte(seed, j - S.boff[s]);
		}
		tbar();
		for (unsigned s = 0; s < nthr; s++) {
			uint64_t seed = sl_seed(r, s);

			for (size_t i = S.woff[s]; i < S.woff[s + 1]; i++) {
				uint32_t e = sl_word(seed, i - S.woff[s]);

				if (w[i] != e)
					mismatch(g, "words", i, &w[i], e, w[i], (int)sl_writer(r, s));
			}
			for (size_t j = S.boff[s]; j < S.boff[s + 1]; j++) {
				uint8_t e = sl_byte(seed, j - S.boff[s]);

				if (by[j] != e)
					mismatch(g, "bytes", j, &by[j], e, by[j], (int)sl_writer(r, s));
			}
		}
		{
			char what[64];

			snprintf(what, sizeof what, "round %ld (buffer %u)", r, b);
			mismatches_done(what);
		}
	}
}

static void scenario_slices(void)
{
	struct dsm_stats st0, st1;
	size_t size;

	REQUIRE(nthr <= MAX_ALL, "more than %d threads in all", MAX_ALL);
	/* words: about 1.3 pages per slice, bytes about a third of a page,
	 * each longer than the one before by an odd amount */
	S.woff[0] = S.boff[0] = 0;
	for (unsigned s = 0; s < nthr; s++) {
		S.woff[s + 1] = S.woff[s] + pg / 4 + pg / 16 + 5 + 37 * s;
		S.boff[s + 1] = S.boff[s] + pg / 3 + 11 * s + 1;
	}
	S.nw = S.woff[nthr];
	S.nb = S.boff[nthr];
	S.stride = (S.nw * 4 + S.nb + 3) & ~(size_t)3;
	size = 2 * S.stride;
	S.base = shared_alloc(size, DSM_PLACE_INTERLEAVE, 0);
	CK(dsm_barrier());
	CK(dsm_stats(&st0));
	threads_run(slices_thread);
	CK(dsm_stats(&st1));
	/* one node barrier per round, by the round's last thread */
	REQUIRE(st1.barriers - st0.barriers == (uint64_t)n_rounds, "%ld rounds of "
		"dsm_barrier_threads ran %" PRIu64 " node barriers", n_rounds,
		st1.barriers - st0.barriers);
	CK(dsm_barrier());
	shared_free(S.base, 0);
}

/* ---- counter ------------------------------------------------------------ */

#define CT_PHASES 5
#define CT_LOCK 7000

/* c[0..2]: counters under locks CT_LOCK + 0..2; c[4 + g]: thread g's slot.
 * All on one page (a small object of node N - 1). */
static int64_t *ct;

static void counter_thread(unsigned t)
{
	unsigned g = (unsigned)me * tpn + t;
	int64_t last[3] = { -1, -1, -1 };
	int64_t total = (int64_t)nthr * k_iter * CT_PHASES;

	for (int ph = 0; ph < CT_PHASES; ph++) {
		int64_t want = (int64_t)nthr * k_iter * (ph + 1);

		for (long i = 0; i < k_iter; i++) {
			for (int h = 0; h < 3; h++) {
				int j = (int)((i + g + (unsigned)h) % 3);

				CK(dsm_lock(CT_LOCK + (uint32_t)j));
				if (ct[j] <= last[j] || ct[j] >= total)
					die("thread %u: counter %d at %p read %" PRId64 " under its "
					    "lock, after %" PRId64 " (phase %d, iteration %ld)", t, j,
					    (void *)&ct[j], ct[j], last[j], ph, i);
				last[j] = ct[j]++;
				CK(dsm_unlock(CT_LOCK + (uint32_t)j));
			}
		}
		ct[4 + g] = (int64_t)mix((uint64_t)ph << 32 | g);
		tbar();
		for (int j = 0; j < 3; j++)
			if (ct[j] != want)
				mismatch(g, "counter", (size_t)j, &ct[j], (uint64_t)want,
					 (uint64_t)ct[j], -1);
		for (unsigned x = 0; x < nthr; x++) {
			int64_t e = (int64_t)mix((uint64_t)ph << 32 | x);

			if (ct[4 + x] != e)
				mismatch(g, "slot", x, &ct[4 + x], (uint64_t)e,
					 (uint64_t)ct[4 + x], (int)x);
		}
		mismatches_done("counters and slots after the barrier");
		tbar(); /* nobody increments before every thread has checked */
	}
}

static void scenario_counter(void)
{
	ct = shared_alloc((4 + nthr) * sizeof(*ct), DSM_PLACE_LOCAL, nodes - 1);
	CK(dsm_barrier());
	threads_run(counter_thread);
	CK(dsm_barrier());
	shared_free(ct, nodes - 1);
}

/* ---- misuse ------------------------------------------------------------- */

static int64_t *mu;                /* mu[0], mu[1]: holder phases; mu[2 + g]: slots */
static _Atomic int mu_go;          /* holder node: its threads may arrive */
static unsigned mu_holder;         /* rank holding the round open */

/* Wait until cond() holds, at most POLL_LIMIT_S. */
static void poll_until(bool (*cond)(void), const char *what)
{
	double t0 = now_s();

	while (!cond()) {
		if (now_s() - t0 > POLL_LIMIT_S)
			die("waited %.0f s for %s", POLL_LIMIT_S, what);
		sleep_ms(1);
	}
}

static bool others_waiting(void)
{
	return dsm__tbarrier_waiting() == tpn - 1;
}

static bool node_barrier_busy(void)
{
	return dsm__barrier_busy();
}

static bool go_set(void)
{
	return atomic_load(&mu_go) != 0;
}

/* A round that mismatched calls must leave alone. */
static void misuse_round_thread(unsigned t)
{
	unsigned g = (unsigned)me * tpn + t;

	EXPECT(dsm_barrier_threads(0), DSM_EINVAL);
	mu[2 + g] = (int64_t)mix(0xBADull << 32 | g);
	if (t == tpn - 1 && tpn > 1) {
		poll_until(others_waiting, "the other threads to wait in the round");
		EXPECT(dsm_barrier_threads(tpn + 1), DSM_EINVAL);
		EXPECT(dsm_barrier_threads(tpn - 1), DSM_EINVAL);
		EXPECT(dsm_barrier_threads(0), DSM_EINVAL);
		REQUIRE(dsm__tbarrier_waiting() == tpn - 1, "after the refused calls, %u "
			"threads wait in the round, expected %u", dsm__tbarrier_waiting(), tpn - 1);
	}
	tbar();
	for (unsigned x = 0; x < nthr; x++) {
		int64_t e = (int64_t)mix(0xBADull << 32 | x);

		if (mu[2 + x] != e)
			mismatch(g, "slot", x, &mu[2 + x], (uint64_t)e, (uint64_t)mu[2 + x],
				 (int)x);
	}
	mismatches_done("slots after the round with refused calls");
	tbar();
}

/* The round of the holder node starts only when the main thread says. */
static void misuse_hold_thread(unsigned t)
{
	(void)t;
	if ((unsigned)me == mu_holder)
		poll_until(go_set, "the main thread's go");
	tbar();
}

static void misuse_fork(void)
{
	pid_t pid;
	int st;

	flush_all();
	pid = fork();
	REQUIRE(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int bad = 0;

		bad |= dsm_barrier_threads(1) != DSM_ECLOSED;
		bad |= dsm_barrier_threads(tpn) != DSM_ECLOSED;
		bad |= dsm_barrier_threads(0) != DSM_EINVAL;
		bad |= dsm_barrier() != DSM_ECLOSED;
		_exit(bad ? 3 : 0);
	}
	REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
	REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0, "in a child forked after dsm_init, "
		"dsm_barrier_threads / dsm_barrier did not return DSM_ECLOSED (status %#x)", st);
}

static void scenario_misuse(void)
{
	mu = shared_alloc((2 + nthr) * sizeof(*mu), DSM_PLACE_LOCAL, 0);
	CK(dsm_barrier());
	if (tpn > 1)
		threads_run(misuse_round_thread);
	/* A node's round held in its node barrier by node h, which waits for
	 * every other node's main thread to have checked. */
	for (unsigned h = 0; h < 2; h++) {
		int64_t old = -1;
		double t0;

		mu_holder = h % (unsigned)nodes;
		atomic_store(&mu_go, 0);
		threads_start(misuse_hold_thread);
		if ((unsigned)me != mu_holder) {
			poll_until(node_barrier_busy, "the node barrier of the round");
			EXPECT(dsm_barrier(), DSM_EBUSY);
			EXPECT(dsm_barrier_threads(tpn + 1), DSM_EINVAL);
			REQUIRE(dsm__barrier_busy() && dsm__tbarrier_waiting() == 0,
				"the round's node barrier ended early (busy %d, %u waiting)",
				dsm__barrier_busy(), dsm__tbarrier_waiting());
			CK(dsm_fetch_add(&mu[h], 1, NULL));
		} else {
			t0 = now_s();
			while (old != nodes - 1) {
				CK(dsm_fetch_add(&mu[h], 0, &old));
				if (now_s() - t0 > POLL_LIMIT_S)
					die("waited %.0f s for the other nodes' checks (%" PRId64
					    " of %d)", POLL_LIMIT_S, old, nodes - 1);
				if (old != nodes - 1)
					sleep_ms(1);
			}
			atomic_store(&mu_go, 1);
		}
		threads_join();
	}
	misuse_fork();
	CK(dsm_barrier());
	shared_free(mu, 0);
}

/* ---- death -------------------------------------------------------------- */

static int death_rv[MAX_THREADS][2];

static void death_thread(unsigned t)
{
	death_rv[t][0] = dsm_barrier_threads(tpn);
	death_rv[t][1] = dsm_barrier_threads(tpn);
}

static void scenario_death(double t0)
{
	int e;

	if (me == nodes - 1) {
		printf("node %d: leaving without dsm_finalize\n", me);
		flush_all();
		_exit(0);
	}
	threads_run(death_thread);
	for (unsigned t = 0; t < tpn; t++)
		for (int k = 0; k < 2; k++)
			REQUIRE(death_rv[t][k] == DSM_EPEERDEAD, "thread %u: dsm_barrier_threads "
				"call %d after node %d died returned %d (%s), expected DSM_EPEERDEAD",
				t, k + 1, nodes - 1, death_rv[t][k], dsm_strerror(death_rv[t][k]));
	e = dsm_finalize();
	REQUIRE(e == DSM_EPEERDEAD, "dsm_finalize after a death returned %d (%s)", e,
		dsm_strerror(e));
	EXPECT(dsm_barrier_threads(tpn), DSM_ECLOSED);
	if (me == 0)
		printf("scenario death: ok (%.2f s): %u thread(s) per survivor got "
		       "DSM_EPEERDEAD twice\n", now_s() - t0, tpn);
	flush_all();
	exit(0);
}

/* ---- main --------------------------------------------------------------- */

static const struct {
	const char *name;
	void (*fn)(void); /* NULL: death (last) */
} scenarios[] = {
	{ "slices", scenario_slices },
	{ "counter", scenario_counter },
	{ "misuse", scenario_misuse },
	{ "death", NULL },
};
#define N_SCENARIOS (sizeof scenarios / sizeof scenarios[0])

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr, "usage: dsmrun -n N test-threads THREADS SCENARIO[,SCENARIO...]\n"
		"scenarios:");
	for (size_t i = 0; i < N_SCENARIOS; i++)
		fprintf(stderr, " %s", scenarios[i].name);
	fprintf(stderr, " (death last)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t list[16];
	int n = 0, r;
	char *spec, *tok, *save = NULL, *end;
	long v;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 3)
		usage();
	errno = 0;
	v = strtol(argv[1], &end, 10);
	if (errno || *end || v < 1 || v > MAX_THREADS)
		usage();
	tpn = (unsigned)v;
	spec = strdup(argv[2]);
	REQUIRE(spec, "out of memory");
	for (tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < N_SCENARIOS && strcmp(tok, scenarios[i].name); i++)
			;
		if (i == N_SCENARIOS || n == 16 || (n > 0 && !scenarios[list[n - 1]].fn))
			usage();
		list[n++] = i;
	}
	free(spec);
	if (n == 0)
		usage();
	n_rounds = env_long("TEST_THREADS_ROUNDS", n_rounds, 1, 1000000);
	k_iter = env_long("TEST_THREADS_K", k_iter, 1, 1000000);
	pg = (size_t)sysconf(_SC_PAGESIZE);

	/* before dsm_init */
	EXPECT(dsm_barrier_threads(0), DSM_EINVAL);
	EXPECT(dsm_barrier_threads(tpn), DSM_ECLOSED);
	EXPECT(dsm_barrier(), DSM_ECLOSED);

	r = dsm_init(NULL);
	if (r == DSM_ENOTSUP) {
		printf("SKIP: dsm_init: %s (DSM_PAGER=%s)\n", dsm_strerror(r),
		       getenv("DSM_PAGER") ? getenv("DSM_PAGER") : "unset");
		flush_all();
		return EXIT_SKIP;
	}
	if (r != 0) {
		fprintf(stderr, "FAIL: dsm_init: %d (%s)\n", r, dsm_strerror(r));
		return 1;
	}
	me = dsm_rank();
	nodes = dsm_nodes();
	nthr = (unsigned)nodes * tpn;
	if (me == 0)
		printf("%d nodes x %u threads\n", nodes, tpn);

	for (int i = 0; i < n; i++) {
		double t0;

		scenario = scenarios[list[i]].name;
		n_mis = 0;
		CK(dsm_barrier());
		t0 = now_s();
		if (!scenarios[list[i]].fn)
			scenario_death(t0);
		scenarios[list[i]].fn();
		CK(dsm_barrier());
		if (me == 0)
			printf("scenario %s: ok (%.2f s)\n", scenario, now_s() - t0);
	}
	scenario = "end";
	CK(dsm_finalize());
	EXPECT(dsm_barrier_threads(tpn), DSM_ECLOSED);
	flush_all();
	return 0;
}
