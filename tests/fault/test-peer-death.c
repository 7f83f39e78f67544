/*
 * Peer failure, end to end, through the public header only (include/dsm.h).
 * One node dies (or is paused by the driver); the survivors check every
 * call's result and how long it took. Run by the fault harness
 * (tests/fault/dsm-faults.c, scenarios death-* and pause-long), which
 * checks the exit statuses and dsmrun's report; it can also be run by hand:
 *
 *   DSMRUN_GRACE_MS=30000 dsmrun -n 4 test-peer-death death VICTIM exit|kill [DELAY_MS [finalize]]
 *   (driver only) test-peer-death pause      with TEST_PD_VICTIM=V set
 *
 * death: the victim takes two locks managed by a survivor, passes barrier
 * B0, writes the CLOCK_MONOTONIC time of its death to $TEST_PD_STAMP (if
 * set), waits DELAY_MS (default 100) and ends itself with _exit(3) or
 * raise(SIGKILL), holding both locks. A helper thread of the first
 * survivor queued on one of them before the death. The survivors (ranks
 * != VICTIM, lowest first: s0, s1, s2...) then check, each printing
 * "check NAME: ok (...)" or "FAIL rank R: check NAME: ...":
 *   barrier        dsm_barrier -> DSM_EPEERDEAD, within 2 x DSM_PEER_TIMEOUT_MS
 *                  of the death
 *   dead-ranks     dsm_dead_ranks() lists exactly VICTIM as soon as the
 *                  barrier has returned (a late update fails too, saying
 *                  how late)
 *   owner-waiting  (s0's helper thread) the lock it waited for is granted
 *                  with DSM_EOWNERDEAD, within 2 x timeout of the death
 *   lock-dead-mgr  dsm_lock of a lock managed by VICTIM -> DSM_EPEERDEAD
 *   atomics        dsm_fetch_add / dsm_cas on a word homed at VICTIM ->
 *                  DSM_EPEERDEAD; on a word homed at s0 -> 0
 *   survivors-sync the survivors still synchronise among themselves with a
 *                  lock managed by s0 (a counter homed at s0, exact)
 *   owner-dead     the other lock the victim died holding (nobody waited
 *                  for it at the death): exactly one survivor gets
 *                  DSM_EOWNERDEAD, the others 0
 *   bcast          dsm_bcast from VICTIM -> DSM_EPEERDEAD; from s0: the
 *                  others receive the value, s0 (which cannot reach VICTIM)
 *                  gets DSM_EPEERDEAD
 *   barrier-again  dsm_barrier -> DSM_EPEERDEAD at once
 * then each survivor has a role:
 *   s0  finalize   dsm_finalize -> DSM_EPEERDEAD; exit 0 if every check passed
 *   s1  handler    dsm_set_fault_handler(h); a load of a page homed at
 *                  VICTIM calls h with that address and DSM_EPEERDEAD; h
 *                  prints and _exits 42
 *   s2  default    (4 nodes or more) a load of another page homed at VICTIM:
 *                  the default handler names the address and the node and
 *                  exits DSM_EXIT_FAULT (86)
 *   s3.. finalize  like s0
 * With "finalize" every survivor has s0's role: all of them leave with
 * dsm_finalize together after the failed barriers.
 * A failed check prints "FAIL rank R: check NAME: ..."; the roles run all
 * the same, and s0 (and s3..) then exit 1.
 *
 * pause: the driver SIGSTOPs node TEST_PD_VICTIM for longer than the peer
 * timeout at a moment it chooses, then SIGCONTs it. Data lives only at the
 * survivors: each survivor allocates TEST_PD_PAGES pages homed at itself;
 * in every round every node (the victim too) writes its words (word i of
 * a chunk belongs to node i mod N) of every chunk, takes a round lock,
 * barriers, checks all words, barriers. When a barrier fails:
 *   - a survivor (dsm_dead_ranks() is exactly {V}) syncs with the other
 *     survivors through a lock managed by the lowest survivor, checks every
 *     survivor's words, snapshots the chunk it is home of, and keeps
 *     checking that snapshot for TEST_PD_HOLD_MS (the victim wakes up
 *     meanwhile: its datagrams must be dropped, its pending diffs never
 *     applied) while counting with the other survivors under a lock; then
 *     syncs again, checks the count, and dsm_finalize must return
 *     DSM_EPEERDEAD. Exit 0.
 *   - the victim, once awake, finds it was excluded: its call fails with
 *     DSM_EPEERDEAD and dsm_dead_ranks() lists every other rank (exit 3
 *     after dsm_finalize), or a load/store of shared memory cannot be served
 *     and the fault handler reports it (exit 4).
 * Lines "pause: error at mono=NS" give the driver the time each node saw
 * the failure. Without a pause the job ends after TEST_PD_ROUNDS rounds
 * (default 200) with exit 0 everywhere.
 *
 * Exit statuses: 0 ok, 1 a check failed, 2 usage, 3 victim (death: its
 * _exit; pause: excluded as expected), 4 pause victim excluded (fault
 * handler), 5 fault handler on a pause survivor, 42 s1's handler, 43 s1's
 * handler called with the wrong address or error, 86 default handler.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dsm.h"

#define MAXN 64
#define EXIT_CHECK 1
#define EXIT_USAGE 2
#define EXIT_VICTIM 3
#define EXIT_EXCLUDED_FAULT 4
#define EXIT_SURVIVOR_FAULT 5
#define EXIT_HANDLER 42
#define EXIT_HANDLER_WRONG 43

static int me, nodes, victim;
static int timeout_ms = 1000;  /* DSM_PEER_TIMEOUT_MS */
static size_t pg;
static int n_failed;           /* checks failed on this node */
static bool all_finalize;      /* death: every survivor ends with dsm_finalize */

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double ms_since(int64_t t0)
{
	return (double)(mono_ns() - t0) / 1e6;
}

static const char *ename(int e)
{
	switch (e) {
	case 0: return "0";
	case DSM_EPEERDEAD: return "DSM_EPEERDEAD";
	case DSM_EOWNERDEAD: return "DSM_EOWNERDEAD";
	case DSM_ETIMEDOUT: return "DSM_ETIMEDOUT";
	case DSM_EINVAL: return "DSM_EINVAL";
	case DSM_ECLOSED: return "DSM_ECLOSED";
	default: return dsm_strerror(e);
	}
}

static long env_long(const char *name, long def, long lo, long hi)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi) {
		fprintf(stderr, "test-peer-death: %s=%s: expected an integer in %ld..%ld\n",
			name, s, lo, hi);
		exit(EXIT_USAGE);
	}
	return v;
}

static void ok(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ok(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("check %s: ok (", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(")\n");
	fflush(stdout);
}

static void failed(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failed(const char *name, const char *fmt, ...)
{
	va_list ap;

	n_failed++;
	fprintf(stderr, "FAIL rank %d: check %s: ", me, name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

static void __attribute__((noreturn)) bail(int status)
{
	fflush(stdout);
	fflush(stderr);
	_exit(status);
}

/* A call that must succeed during set-up. */
#define SETUP(call)                                                           \
	do {                                                                  \
		int su_ = (call);                                             \
		if (su_ != 0) {                                               \
			fprintf(stderr, "FAIL rank %d: set-up: %s returned %s\n", me, \
				#call, ename(su_));                           \
			bail(EXIT_CHECK);                                     \
		}                                                             \
	} while (0)

/* Expect err == want within limit_ms of t0 (the death); print the check. */
static void expect(const char *name, int err, int want, int64_t t0, double limit_ms)
{
	double ms = ms_since(t0);

	if (err != want)
		failed(name, "returned %s, expected %s (%.0f ms after the death)", ename(err),
		       ename(want), ms);
	else if (limit_ms > 0 && ms > limit_ms)
		failed(name, "returned %s after %.0f ms since the death, limit %.0f ms",
		       ename(err), ms, limit_ms);
	else
		ok(name, "%s, %.0f ms after the death", ename(err), ms);
}

/* After a call returned DSM_EPEERDEAD (after), dsm_dead_ranks() must say
 * who is gone: exactly the victim, or (all_others) every other rank, as
 * on the excluded node. If it does not yet, wait up to 2 x timeout to tell
 * a late update from a wrong one; a late one is a failed check too.
 * Returns whether it matched, at once or late. */
static bool check_dead_ranks(const char *name, const char *after, bool all_others)
{
	int64_t t = mono_ns();
	int dead[MAXN], nd, first = -1;

	for (int tries = 0;; tries++) {
		bool match;

		nd = dsm_dead_ranks(dead, MAXN);
		if (!tries)
			first = nd;
		match = all_others ? nd == nodes - 1 : nd == 1 && dead[0] == victim;
		if (match && !tries) {
			ok(name, "dsm_dead_ranks lists %s", all_others ? "every other rank" :
			   "the victim only");
			return true;
		}
		if (match) {
			failed(name, "right after %s returned DSM_EPEERDEAD, dsm_dead_ranks() "
			       "listed %d rank(s); it listed %s %.1f ms later", after, first,
			       all_others ? "every other rank" : "the victim", ms_since(t));
			return true;
		}
		if (ms_since(t) > 2.0 * timeout_ms + 500) {
			failed(name, "after %s returned DSM_EPEERDEAD, dsm_dead_ranks() lists %d "
			       "rank(s) (first %d), expected %s", after, nd, nd > 0 ? dead[0] : -1,
			       all_others ? "every other rank" : "the victim only");
			return false;
		}
		usleep(100);
	}
}

/* ---- death ------------------------------------------------------------------ */

/* Shared layout (death): the victim's pages, homed at the victim. */
struct vpages {
	int64_t word;  /* target of the atomics; page 0 */
};

/* Homed at s0; every field protected by the lock noted. */
struct sarea {
	int64_t aword;        /* atomics, no lock */
	int64_t pad[7];
	int64_t visits;       /* LK_OWNER: survivors that took it */
	int64_t owner_dead;   /* LK_OWNER: how many got DSM_EOWNERDEAD */
	int64_t count;        /* LK_SURV: survivors' increments */
};

#define SURV_K 50   /* increments per survivor under LK_SURV */

static uint32_t lk_at(int mgr, int k)
{
	return (uint32_t)(mgr + nodes * (1000 + k));
}

static int64_t death_ns;   /* from $TEST_PD_STAMP, else the end of B0 */
static const char *stamp_path;

static void write_stamp(void)
{
	FILE *f;

	if (!stamp_path)
		return;
	f = fopen(stamp_path, "w");
	if (!f)
		return;
	fprintf(f, "%" PRId64 "\n", mono_ns());
	fclose(f);
}

static void read_stamp(void)
{
	FILE *f;
	long long t;

	if (!stamp_path || !(f = fopen(stamp_path, "r")))
		return;
	if (fscanf(f, "%lld", &t) == 1 && t > 0)
		death_ns = t;
	fclose(f);
}

struct waiter_arg {
	uint32_t lock;
	int64_t granted_ns;
	int err, unlock_err;
};

/* s0's helper thread: queued on a lock the victim holds when it dies. */
static void *owner_waiter(void *p)
{
	struct waiter_arg *a = p;

	a->err = dsm_lock(a->lock);
	a->granted_ns = mono_ns();
	if (a->err == 0 || a->err == DSM_EOWNERDEAD)
		a->unlock_err = dsm_unlock(a->lock);
	return NULL;
}

static volatile char *handler_page;   /* s1: the page it loads */

static void record_handler(void *addr, int err)
{
	char buf[256];
	bool right = (char *)addr >= (char *)handler_page &&
		     (char *)addr < (char *)handler_page + pg && err == DSM_EPEERDEAD;
	int n = snprintf(buf, sizeof buf,
			 "handler: called with addr=%p err=%s (%.0f ms after the death): %s\n",
			 addr, ename(err), ms_since(death_ns),
			 right ? "as expected" : "WRONG address or error");

	fflush(stdout);
	if (n > 0 && write(STDOUT_FILENO, buf, (size_t)n) < 0)
		_exit(EXIT_HANDLER_WRONG);
	_exit(right ? EXIT_HANDLER : EXIT_HANDLER_WRONG);
}

/* Poll *counter under lock lk until it is want: true. The last acquire
 * leaves this node a fresh copy of what the others wrote under lk before
 * their last increment. false, with a FAIL line, after 20 s or past want. */
static bool await(uint32_t lk, volatile int64_t *counter, int64_t want, const char *name)
{
	int64_t t = mono_ns();

	for (;;) {
		int64_t v;
		int e = dsm_lock(lk);

		if (e && e != DSM_EOWNERDEAD) {
			failed(name, "dsm_lock(%u) returned %s while waiting", lk, ename(e));
			return false;
		}
		v = *counter;
		dsm_unlock(lk);
		if (v == want)
			return true;
		if (v > want || ms_since(t) > 20000) {
			failed(name, "counter under lock %u is %" PRId64 ", waiting for %" PRId64,
			       lk, v, want);
			return false;
		}
		usleep(1000);
	}
}

static int run_death(int how_kill, int delay_ms)
{
	char *vmem = NULL;
	struct sarea *sa = NULL;
	int surv[MAXN], ns = 0, role = -1, e;
	uint32_t lk_owner, lk_waited, lk_surv, lk_vmgr;
	struct waiter_arg wa = { 0 };
	pthread_t waiter;
	int64_t old = 0, t;
	double limit = 2.0 * timeout_ms;

	for (int r = 0; r < nodes; r++)
		if (r != victim) {
			if (r == me)
				role = ns;
			surv[ns++] = r;
		}
	lk_owner = lk_at(surv[0], 1);
	lk_waited = lk_at(surv[0], 2);
	lk_surv = lk_at(surv[0], 3);
	lk_vmgr = lk_at(victim, 4);

	if (me == victim) {
		vmem = dsm_malloc(4 * pg);   /* homed here: page aligned, local */
		if (!vmem) {
			fprintf(stderr, "FAIL rank %d: dsm_malloc: %s\n", me,
				ename(dsm_last_error()));
			bail(EXIT_CHECK);
		}
		memset(vmem, 0x5a, 4 * pg);
		((struct vpages *)vmem)->word = 7;
	}
	if (me == surv[0]) {
		sa = dsm_calloc(1, sizeof *sa);
		if (!sa) {
			fprintf(stderr, "FAIL rank %d: dsm_calloc: %s\n", me,
				ename(dsm_last_error()));
			bail(EXIT_CHECK);
		}
	}
	SETUP(dsm_bcast(&vmem, sizeof vmem, victim));
	SETUP(dsm_bcast(&sa, sizeof sa, surv[0]));
	/* The normal path works: an atomic at the victim. */
	SETUP(dsm_fetch_add(&((struct vpages *)vmem)->word, 1, NULL));
	if (me == victim) {
		SETUP(dsm_lock(lk_owner));
		SETUP(dsm_lock(lk_waited));
	}
	SETUP(dsm_barrier());   /* B0 */
	if (me == victim) {
		printf("victim: holding locks %u and %u, dying in %d ms by %s\n", lk_owner,
		       lk_waited, delay_ms, how_kill ? "SIGKILL" : "_exit(3)");
		fflush(stdout);
		usleep((useconds_t)delay_ms * 1000);
		write_stamp();
		if (how_kill)
			raise(SIGKILL);
		_exit(EXIT_VICTIM);
	}
	death_ns = mono_ns() + (int64_t)delay_ms * 1000000;   /* until the stamp says */
	if (role == 0) {
		wa.lock = lk_waited;
		if (pthread_create(&waiter, NULL, owner_waiter, &wa)) {
			fprintf(stderr, "FAIL rank %d: pthread_create\n", me);
			bail(EXIT_CHECK);
		}
	}

	/* barrier */
	e = dsm_barrier();
	read_stamp();
	expect("barrier", e, DSM_EPEERDEAD, death_ns, limit);

	/* dead-ranks */
	check_dead_ranks("dead-ranks", "dsm_barrier", false);

	/* owner-waiting */
	if (role == 0) {
		pthread_join(waiter, NULL);
		if (wa.err != DSM_EOWNERDEAD)
			failed("owner-waiting", "dsm_lock(%u) waiting for the victim returned %s, "
			       "expected DSM_EOWNERDEAD", lk_waited, ename(wa.err));
		else if ((double)(wa.granted_ns - death_ns) / 1e6 > limit)
			failed("owner-waiting", "granted %.0f ms after the death, limit %.0f ms",
			       (double)(wa.granted_ns - death_ns) / 1e6, limit);
		else if (wa.unlock_err)
			failed("owner-waiting", "dsm_unlock after DSM_EOWNERDEAD returned %s",
			       ename(wa.unlock_err));
		else
			ok("owner-waiting", "DSM_EOWNERDEAD, %.0f ms after the death",
			   (double)(wa.granted_ns - death_ns) / 1e6);
	}

	/* lock-dead-mgr */
	t = mono_ns();
	e = dsm_lock(lk_vmgr);
	if (e != DSM_EPEERDEAD)
		failed("lock-dead-mgr", "dsm_lock(%u) (manager: rank %d) returned %s", lk_vmgr,
		       victim, ename(e));
	else if (ms_since(t) > limit)
		failed("lock-dead-mgr", "took %.0f ms", ms_since(t));
	else
		ok("lock-dead-mgr", "DSM_EPEERDEAD in %.1f ms, %.0f ms after the death",
		   ms_since(t), ms_since(death_ns));
	if (e == 0)
		dsm_unlock(lk_vmgr);

	/* atomics */
	t = mono_ns();
	e = dsm_fetch_add(&((struct vpages *)vmem)->word, 1, &old);
	if (e != DSM_EPEERDEAD)
		failed("atomics", "dsm_fetch_add on a word homed at rank %d returned %s", victim,
		       ename(e));
	e = dsm_cas(&((struct vpages *)vmem)->word, 1, 2, &old);
	if (e != DSM_EPEERDEAD)
		failed("atomics", "dsm_cas on a word homed at rank %d returned %s", victim,
		       ename(e));
	e = dsm_fetch_add(&sa->aword, 1, &old);
	if (e != 0)
		failed("atomics", "dsm_fetch_add on a word homed at rank %d (alive) returned %s",
		       surv[0], ename(e));
	else if (ms_since(t) > limit)
		failed("atomics", "took %.0f ms", ms_since(t));
	else
		ok("atomics", "DSM_EPEERDEAD at the dead home, 0 at a live one, %.1f ms",
		   ms_since(t));

	/* survivors-sync: count under a lock managed by s0 */
	for (int i = 0; i < SURV_K; i++) {
		e = dsm_lock(lk_surv);
		if (e) {
			failed("survivors-sync", "dsm_lock(%u) returned %s", lk_surv, ename(e));
			break;
		}
		sa->count++;
		e = dsm_unlock(lk_surv);
		if (e) {
			failed("survivors-sync", "dsm_unlock(%u) returned %s", lk_surv, ename(e));
			break;
		}
	}
	if (await(lk_surv, &sa->count, (int64_t)ns * SURV_K, "survivors-sync"))
		ok("survivors-sync", "%d survivors counted %d under lock %u", ns, ns * SURV_K,
		   lk_surv);

	/* owner-dead: every survivor, s0 (the lock's manager) too, has known
	 * of the death for a while now: nobody was waiting for the lock when
	 * its holder died */
	e = dsm_lock(lk_owner);
	if (e == 0 || e == DSM_EOWNERDEAD) {
		sa->visits++;
		sa->owner_dead += e == DSM_EOWNERDEAD;
		printf("owner-dead: dsm_lock(%u) returned %s\n", lk_owner, ename(e));
		if (dsm_unlock(lk_owner))
			failed("owner-dead", "dsm_unlock(%u) failed", lk_owner);
	} else {
		failed("owner-dead", "dsm_lock(%u) returned %s", lk_owner, ename(e));
	}
	{
		int64_t owner_dead = -1;

		if (await(lk_owner, &sa->visits, ns, "owner-dead") &&
		    (owner_dead = sa->owner_dead) == 1)
			ok("owner-dead", "exactly one survivor got DSM_EOWNERDEAD");
		else if (owner_dead >= 0)
			failed("owner-dead", "%" PRId64 " survivors got DSM_EOWNERDEAD for lock %u, "
			       "which rank %d died holding (nobody was waiting for it then); "
			       "expected exactly 1", owner_dead, lk_owner, victim);
	}

	/* bcast */
	{
		int64_t x = 0, y = me == surv[0] ? 4242 : 0;
		int e1, e2;

		t = mono_ns();
		e1 = dsm_bcast(&x, sizeof x, victim);
		e2 = dsm_bcast(&y, sizeof y, surv[0]);
		if (e1 != DSM_EPEERDEAD)
			failed("bcast", "dsm_bcast from rank %d (dead) returned %s", victim,
			       ename(e1));
		else if (me == surv[0] && e2 != DSM_EPEERDEAD)
			failed("bcast", "dsm_bcast as root returned %s; rank %d (dead) cannot "
			       "have received it, expected DSM_EPEERDEAD", ename(e2), victim);
		else if (me != surv[0] && (e2 != 0 || y != 4242))
			failed("bcast", "dsm_bcast from rank %d (alive) returned %s, value %"
			       PRId64, surv[0], ename(e2), y);
		else if (ms_since(t) > limit)
			failed("bcast", "took %.0f ms", ms_since(t));
		else
			ok("bcast", "dead root: DSM_EPEERDEAD; live root: %s, %.1f ms",
			   ename(e2), ms_since(t));
	}

	/* barrier-again */
	t = mono_ns();
	e = dsm_barrier();
	if (e != DSM_EPEERDEAD || ms_since(t) > limit)
		failed("barrier-again", "returned %s after %.0f ms", ename(e), ms_since(t));
	else
		ok("barrier-again", "DSM_EPEERDEAD in %.1f ms", ms_since(t));

	/* The roles run even after a failed check (its FAIL line is out):
	 * each one tests something else. */
	if (role == 1 && !all_finalize) {
		handler_page = vmem + pg;
		SETUP(dsm_set_fault_handler(record_handler));
		printf("role handler: loading %p (page homed at rank %d)\n",
		       (void *)handler_page, victim);
		fflush(stdout);
		(void)*handler_page;
		fprintf(stderr, "FAIL rank %d: check handler: the load of %p returned\n", me,
			(void *)handler_page);
		bail(EXIT_CHECK);
	}
	if (role == 2 && !all_finalize) {
		volatile char *p = vmem + 2 * pg;

		printf("role default: loading %p (page homed at rank %d), expecting exit %d\n",
		       (void *)p, victim, DSM_EXIT_FAULT);
		fflush(stdout);
		(void)*p;
		fprintf(stderr, "FAIL rank %d: check default: the load of %p returned\n", me,
			(void *)p);
		bail(EXIT_CHECK);
	}
	t = mono_ns();
	e = dsm_finalize();
	if (e != DSM_EPEERDEAD)
		failed("finalize", "dsm_finalize returned %s after %.0f ms", ename(e),
		       ms_since(t));
	else
		ok("finalize", "DSM_EPEERDEAD in %.0f ms", ms_since(t));
	if (n_failed) {
		fprintf(stderr, "FAIL rank %d: %d check(s) failed\n", me, n_failed);
		bail(EXIT_CHECK);
	}
	printf("survivor ok\n");
	bail(0);
}

/* ---- pause ------------------------------------------------------------------ */

struct psync {             /* homed at the lowest survivor */
	int64_t rounds;        /* LK round */
	int64_t pad[7];
	int64_t arrive1, arrive2;  /* LK sync */
	int64_t lastw[MAXN];       /* LK sync: last round each survivor wrote */
	int64_t pad2[8];
	int64_t count2;            /* LK count */
};

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static uint64_t pat(int64_t round, int owner, int chunk, size_t i)
{
	return mix((uint64_t)round * 0x100000001B3ull ^ mix((uint64_t)owner << 40 ^
		   (uint64_t)chunk << 32 ^ i)) | 1; /* never 0: untouched memory is 0 */
}

static bool excluded(void)
{
	return dsm_dead_ranks(NULL, 0) == nodes - 1;
}

/* The fault handler of every node in pause mode. The net layer fails the
 * pending calls of a dead peer before the library marks it dead, so wait a
 * little for dsm_dead_ranks to catch up before deciding. */
static void pause_fault_handler(void *addr, int err)
{
	char buf[256];
	int64_t t0 = mono_ns();
	bool ex;
	int n;

	while (!(ex = excluded()) && ms_since(t0) < 2.0 * timeout_ms + 500)
		usleep(1000);
	n = snprintf(buf, sizeof buf, "pause: error at mono=%" PRId64 " in the fault handler: "
			 "%p cannot be served (%s); %s\n", mono_ns(), addr, ename(err),
			 ex ? "excluded: dsm_dead_ranks lists every other rank" :
			 "FAIL: the fault handler ran on a survivor");

	fflush(stdout);
	if (n > 0 && write(STDOUT_FILENO, buf, (size_t)n) < 0)
		_exit(EXIT_SURVIVOR_FAULT);
	_exit(ex ? EXIT_EXCLUDED_FAULT : EXIT_SURVIVOR_FAULT);
}

static void __attribute__((noreturn)) pause_excluded(const char *where, int e)
{
	int e2;

	printf("pause: excluded: %s returned %s; dsm_dead_ranks lists all %d other ranks\n",
	       where, ename(e), nodes - 1);
	fflush(stdout);
	e2 = dsm_finalize();
	if (e2 != DSM_EPEERDEAD) {
		fprintf(stderr, "FAIL rank %d: excluded node: dsm_finalize returned %s\n", me,
			ename(e2));
		bail(EXIT_CHECK);
	}
	bail(n_failed ? EXIT_CHECK : EXIT_VICTIM);
}

/* Poll *counter (protected by lock lk) until it reaches want. */
static void wait_count(uint32_t lk, volatile int64_t *counter, int64_t want, const char *name)
{
	int64_t t = mono_ns();

	for (;;) {
		int64_t v;
		int e = dsm_lock(lk);

		if (e && e != DSM_EOWNERDEAD) {
			failed(name, "dsm_lock(%u) returned %s", lk, ename(e));
			bail(EXIT_CHECK);
		}
		v = *counter;
		dsm_unlock(lk);
		if (v == want)
			return;
		if (v > want || ms_since(t) > 20000) {
			failed(name, "counter under lock %u is %" PRId64 ", waiting for %" PRId64,
			       lk, v, want);
			bail(EXIT_CHECK);
		}
		usleep(1000);
	}
}

static int run_pause(void)
{
	long npages = env_long("TEST_PD_PAGES", 4, 1, 4096);
	long hold_ms = env_long("TEST_PD_HOLD_MS", 4000, 0, 600000);
	long max_rounds = env_long("TEST_PD_ROUNDS", 200, 1, 100000000);
	size_t chunk_words = (size_t)npages * pg / 8;
	uint64_t *chunk[MAXN] = { 0 };
	struct psync *ps = NULL;
	int surv[MAXN], ns = 0, g, e = 0;
	uint32_t lk_round, lk_sync, lk_count;
	int64_t r, t_err;
	const char *where = "";
	uint64_t *snap;
	size_t bad = 0;

	for (int k = 0; k < nodes; k++)
		if (k != victim)
			surv[ns++] = k;
	g = surv[0];
	lk_round = lk_at(g, 1);
	lk_sync = lk_at(g, 2);
	lk_count = lk_at(g, 3);
	SETUP(dsm_set_fault_handler(pause_fault_handler));
	if (me != victim) {
		chunk[me] = dsm_calloc(chunk_words, 8);   /* page aligned, homed here */
		if (!chunk[me]) {
			fprintf(stderr, "FAIL rank %d: dsm_calloc: %s\n", me,
				ename(dsm_last_error()));
			bail(EXIT_CHECK);
		}
	}
	if (me == g && !(ps = dsm_calloc(1, sizeof *ps))) {
		fprintf(stderr, "FAIL rank %d: dsm_calloc: %s\n", me, ename(dsm_last_error()));
		bail(EXIT_CHECK);
	}
	for (int k = 0; k < ns; k++)
		SETUP(dsm_bcast(&chunk[surv[k]], sizeof chunk[0], surv[k]));
	SETUP(dsm_bcast(&ps, sizeof ps, g));
	SETUP(dsm_barrier());
	printf("pause: setup done: victim %d, %d survivor chunk(s) of %ld page(s)\n", victim, ns,
	       npages);
	fflush(stdout);

	for (r = 1; r <= max_rounds; r++) {
		for (int k = 0; k < ns; k++)
			for (size_t i = (size_t)me; i < chunk_words; i += (size_t)nodes)
				chunk[surv[k]][i] = pat(r, me, surv[k], i);
		e = dsm_lock(lk_round);
		if (e && e != DSM_EOWNERDEAD) {
			where = "dsm_lock (round lock)";
			break;
		}
		ps->rounds++;
		e = dsm_unlock(lk_round);
		if (e) {
			where = "dsm_unlock (round lock)";
			break;
		}
		e = dsm_barrier();
		if (e) {
			where = "dsm_barrier (after the writes)";
			break;
		}
		for (int k = 0; k < ns; k++)
			for (size_t i = 0; i < chunk_words; i++) {
				uint64_t want = pat(r, (int)(i % (size_t)nodes), surv[k], i);

				if (chunk[surv[k]][i] != want && bad++ < 10)
					fprintf(stderr, "MISMATCH rank %d round %" PRId64 ": chunk of "
						"rank %d word %zu: %#" PRIx64 ", expected %#" PRIx64
						" (written by rank %zu)\n", me, r, surv[k], i,
						chunk[surv[k]][i], want, i % (size_t)nodes);
			}
		if (bad) {
			fprintf(stderr, "FAIL rank %d: %zu word(s) wrong in round %" PRId64 "\n", me,
				bad, r);
			bail(EXIT_CHECK);
		}
		e = dsm_barrier();
		if (e) {
			where = "dsm_barrier (after the checks)";
			break;
		}
	}
	if (r > max_rounds) {
		SETUP(dsm_finalize());
		printf("pause: %ld rounds, nobody paused: ok\n", max_rounds);
		bail(0);
	}
	t_err = mono_ns();
	printf("pause: error at mono=%" PRId64 ": %s returned %s in round %" PRId64 "\n", t_err,
	       where, ename(e), r);
	fflush(stdout);
	if (e != DSM_EPEERDEAD) {
		failed(me == victim ? "pause-excluded" : "pause-survivor", "%s returned %s, "
		       "expected DSM_EPEERDEAD", where, ename(e));
		bail(EXIT_CHECK);
	}
	if (me == victim) {
		if (!check_dead_ranks("pause-excluded", where, true))
			bail(EXIT_CHECK);
		pause_excluded(where, e);
	}
	if (!check_dead_ranks("pause-survivor", where, false))
		bail(EXIT_CHECK);

	/* sync 1: every survivor's writes are released */
	e = dsm_lock(lk_sync);
	if (e) {
		failed("pause-sync", "dsm_lock(%u) returned %s", lk_sync, ename(e));
		bail(EXIT_CHECK);
	}
	ps->lastw[me] = r;
	ps->arrive1++;
	dsm_unlock(lk_sync);
	wait_count(lk_sync, &ps->arrive1, ns, "pause-sync");
	SETUP(dsm_lock(lk_sync));   /* acquire: the others' last words */
	for (int k = 0; k < ns; k++)
		for (size_t i = 0; i < chunk_words; i++) {
			int o = (int)(i % (size_t)nodes);
			uint64_t want;

			if (o == victim)
				continue;
			want = pat(ps->lastw[o], o, surv[k], i);
			if (chunk[surv[k]][i] != want && bad++ < 10)
				fprintf(stderr, "MISMATCH rank %d after the death: chunk of rank %d "
					"word %zu: %#" PRIx64 ", expected %#" PRIx64 " (rank %d, round %"
					PRId64 ")\n", me, surv[k], i, chunk[surv[k]][i], want, o,
					ps->lastw[o]);
		}
	dsm_unlock(lk_sync);
	if (bad) {
		failed("pause-data", "%zu survivor word(s) wrong after the death", bad);
		bail(EXIT_CHECK);
	}
	ok("pause-data", "every survivor's words as last written");

	/* hold: the victim wakes up meanwhile; our home copy must not change */
	snap = malloc(chunk_words * 8);
	if (!snap)
		bail(EXIT_CHECK);
	memcpy(snap, chunk[me], chunk_words * 8);
	{
		int done = 0;

		while (ms_since(t_err) < hold_ms || done < SURV_K) {
			if (memcmp(snap, chunk[me], chunk_words * 8)) {
				for (size_t i = 0; i < chunk_words; i++)
					if (snap[i] != chunk[me][i] && bad++ < 10)
						fprintf(stderr, "MISMATCH rank %d: home word %zu changed "
							"from %#" PRIx64 " to %#" PRIx64 " after rank %d "
							"was declared dead\n", me, i, snap[i],
							chunk[me][i], victim);
				failed("pause-home", "%zu word(s) of this node's home pages changed "
				       "after the death", bad);
				bail(EXIT_CHECK);
			}
			if (done < SURV_K) {
				e = dsm_lock(lk_count);
				if (e) {
					failed("pause-count", "dsm_lock(%u) returned %s", lk_count,
					       ename(e));
					bail(EXIT_CHECK);
				}
				ps->count2++;
				dsm_unlock(lk_count);
				done++;
			}
			usleep(hold_ms > 0 ? 20000 : 0);
		}
	}
	/* sync 2 */
	SETUP(dsm_lock(lk_sync));
	ps->arrive2++;
	dsm_unlock(lk_sync);
	wait_count(lk_sync, &ps->arrive2, ns, "pause-sync2");
	wait_count(lk_count, &ps->count2, (int64_t)ns * SURV_K, "pause-count");
	if (memcmp(snap, chunk[me], chunk_words * 8)) {
		failed("pause-home", "this node's home pages changed after the death");
		bail(EXIT_CHECK);
	}
	ok("pause-home", "home pages unchanged for %.0f ms after the death; %d x %d increments "
	   "exact", ms_since(t_err), ns, SURV_K);
	free(snap);
	e = dsm_finalize();
	if (e != DSM_EPEERDEAD) {
		failed("finalize", "dsm_finalize returned %s", ename(e));
		bail(EXIT_CHECK);
	}
	printf("survivor ok\n");
	bail(0);
}

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr,
		"usage: dsmrun -n N test-peer-death death VICTIM exit|kill [DELAY_MS [finalize]]\n"
		"       test-peer-death pause   (driver only; TEST_PD_VICTIM=V)\n"
		"N >= 3; see the top of tests/fault/test-peer-death.c\n");
	exit(EXIT_USAGE);
}

int main(int argc, char **argv)
{
	int e, how_kill = 0, delay_ms = 100;
	bool death;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		usage();
	death = !strcmp(argv[1], "death");
	if (death) {
		if (argc < 4 || argc > 6)
			usage();
		victim = atoi(argv[2]);
		if (!strcmp(argv[3], "kill"))
			how_kill = 1;
		else if (strcmp(argv[3], "exit"))
			usage();
		if (argc >= 5)
			delay_ms = atoi(argv[4]);
		if (argc == 6) {
			if (strcmp(argv[5], "finalize"))
				usage();
			all_finalize = true;
		}
	} else if (!strcmp(argv[1], "pause")) {
		if (argc != 2)
			usage();
		victim = (int)env_long("TEST_PD_VICTIM", -1, 0, MAXN - 1);
	} else {
		usage();
	}
	timeout_ms = (int)env_long("DSM_PEER_TIMEOUT_MS", 1000, 1, 3600000);
	stamp_path = getenv("TEST_PD_STAMP");
	pg = (size_t)sysconf(_SC_PAGESIZE);

	e = dsm_init(NULL);
	if (e == DSM_ENOTSUP) {
		printf("SKIP: dsm_init: %s\n", dsm_strerror(e));
		return 77;
	}
	if (e) {
		fprintf(stderr, "FAIL: dsm_init: %s\n", dsm_strerror(e));
		return EXIT_CHECK;
	}
	me = dsm_rank();
	nodes = dsm_nodes();
	if (nodes < 3 || nodes > MAXN || victim < 0 || victim >= nodes) {
		fprintf(stderr, "test-peer-death: needs 3..%d nodes and a victim rank below "
			"them (nodes %d, victim %d)\n", MAXN, nodes, victim);
		return EXIT_USAGE;
	}
	return death ? run_death(how_kill, delay_ms > 0 ? delay_ms : 0) : run_pause();
}
