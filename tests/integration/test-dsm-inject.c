/*
 * White-box multi-node tests of the library: failures injected where the
 * library meets the system (the pager's system-call table) and the network
 * (the RPC layer's test seam), and the library's own resource bounds.
 * Linked with the internal library; run under the launcher:
 *
 *   dsmrun -n N test-dsm-inject SCENARIO
 *
 * Scenarios:
 *   diffs     (N >= 2) a release whose diffs cannot be sent (the call fails
 *             to start) returns the error and loses nothing: the next
 *             release delivers; an unlock that failed keeps the lock held
 *   news      (N >= 3) a home that applied diffs but cannot tell a reader
 *             answers an error; the writer's next release delivers them
 *             again and the reader then sees them
 *   ownnews   (N >= 2) the same for the home's own writes
 *   protect   (N >= 2) a release whose write-protect fails (the pager's
 *             mprotect / UFFDIO_WRITEPROTECT returns ENOMEM) loses nothing
 *   locktable idle lock records are freed: after 20000 distinct locks, no
 *             manager keeps a record
 *   twins     after a release, twin memory beyond a small cache goes back
 *             to the system (VmRSS after writing 64 MiB of remote pages and
 *             releasing: at most 32 MiB above the copies' alone)
 *   leaving   (N >= 2) node 0 finalizes while the others wait in a
 *             broadcast from it: DSM_EPEERDEAD, not a hang
 * Each node prints what it checked; any mismatch ends it with status 1.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <sys/ioctl.h>

#include "internal.h"

#define EXIT_SKIP 77
#define NPAGES 16

static int me, nodes;
static size_t pg;
static const char *scenario = "-";

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL node %d, scenario %s: ", me, scenario);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	_exit(1);
}

#define CK(call)                                                                          \
	do {                                                                              \
		int ck_r_ = (call);                                                       \
		if (ck_r_ != 0)                                                           \
			die("%s:%d: %s returned %d (%s)", __FILE__, __LINE__, #call, ck_r_, \
			    dsm_strerror(ck_r_));                                         \
	} while (0)

#define EXPECT(call, want)                                                                \
	do {                                                                              \
		int ck_r_ = (call);                                                       \
		if (ck_r_ != (want))                                                      \
			die("%s:%d: %s returned %d (%s), expected %d (%s)", __FILE__,      \
			    __LINE__, #call, ck_r_, dsm_strerror(ck_r_), (want),          \
			    dsm_strerror(want));                                          \
	} while (0)

/* ---- injection ------------------------------------------------------------- */

static _Atomic int inj_proc = -1;  /* RPC procedure id to fail */
static _Atomic int inj_left;       /* how many more times */
static _Atomic int inj_hits;

static int fail_proc(void *arg, unsigned peer, const struct dsm__rpc_proc *p)
{
	(void)arg;
	(void)peer;
	if (p->id == atomic_load(&inj_proc) && atomic_fetch_sub(&inj_left, 1) > 0) {
		atomic_fetch_add(&inj_hits, 1);
		return DSM_ENOMEM;
	}
	return 0;
}

/* Fail the next n starts of procedure id on this node (n 0: stop). */
static void inject_rpc(int id, int n)
{
	atomic_store(&inj_hits, 0);
	atomic_store(&inj_left, n);
	atomic_store(&inj_proc, id);
	dsm__rpc_set_fault(D->rpc, n ? fail_proc : NULL, NULL);
}

/* The pager's protect: mprotect (sigsegv) or the ioctl (uffd, which also
 * installs pages with an ioctl: only UFFDIO_WRITEPROTECT fails). */
static struct dsm__pager_syscalls real_sys;
static _Atomic int sys_left;

static int fake_mprotect(void *addr, size_t len, int prot)
{
	if (atomic_fetch_sub(&sys_left, 1) > 0) {
		atomic_fetch_add(&inj_hits, 1);
		errno = ENOMEM;
		return -1;
	}
	return real_sys.mprotect(addr, len, prot);
}

static int fake_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (req == UFFDIO_WRITEPROTECT && atomic_fetch_sub(&sys_left, 1) > 0) {
		atomic_fetch_add(&inj_hits, 1);
		errno = ENOMEM;
		return -1;
	}
	return real_sys.ioctl(fd, req, arg);
}

static void inject_protect(int n)
{
	struct dsm__pager_syscalls s;

	if (!real_sys.mprotect)
		dsm__pager_syscalls_get(&real_sys);
	s = real_sys;
	atomic_store(&inj_hits, 0);
	atomic_store(&sys_left, n);
	if (n) {
		s.mprotect = fake_mprotect;
		s.ioctl = fake_ioctl;
	}
	dsm__pager_syscalls_set(&s);
}

/* ---- helpers ------------------------------------------------------------------- */

static uint64_t val(uint64_t seed, size_t i)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + i;

	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	return x ^ (x >> 31);
}

static void fill(uint64_t *a, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		a[i] = val(seed, i);
}

static void check(const char *what, const uint64_t *a, size_t n, uint64_t seed)
{
	size_t bad = 0, first = 0;

	for (size_t i = 0; i < n; i++)
		if (a[i] != val(seed, i) && !bad++)
			first = i;
	if (bad)
		die("%s: %zu of %zu words wrong, first at %zu: %#" PRIx64 ", expected %#" PRIx64,
		    what, bad, n, first, a[first], val(seed, first));
}

static uint64_t sum(const uint64_t *a, size_t n)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += a[i];
	return s;
}

/* An array of NPAGES pages homed at rank 0, zeroed, on every node. */
static uint64_t *shared_array(void)
{
	uint64_t *a = NULL;

	if (me == 0) {
		a = dsm_calloc(NPAGES, pg);
		if (!a)
			die("dsm_calloc: %s", dsm_strerror(dsm_last_error()));
	}
	CK(dsm_bcast(&a, sizeof(a), 0));
	return a;
}

static long vmrss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			v = strtol(line + 6, NULL, 10);
	fclose(f);
	return v;
}

/* ---- scenarios ------------------------------------------------------------------ */

static void need_nodes(int n)
{
	if (nodes < n) {
		printf("SKIP: scenario %s needs %d nodes\n", scenario, n);
		dsm_finalize();
		exit(EXIT_SKIP);
	}
}

static void scenario_diffs(void)
{
	size_t n = NPAGES * pg / 8;
	uint64_t *a;

	need_nodes(2);
	a = shared_array();
	CK(dsm_barrier());
	/* a barrier */
	if (me == 1) {
		fill(a, n, 1);
		inject_rpc(DSM_RPC_DIFFS_ID, 1000);
		EXPECT(dsm_barrier(), DSM_ENOMEM);
		if (atomic_load(&inj_hits) < 1)
			die("no diffs call was attempted");
		inject_rpc(0, 0);
	} else {
		CK(dsm_barrier());
	}
	CK(dsm_barrier());
	if (me == 0)
		check("after the barrier that delivered the diffs", a, n, 1);
	CK(dsm_barrier());
	/* an unlock */
	if (me == 1) {
		CK(dsm_lock(7));
		fill(a, n, 2);
		inject_rpc(DSM_RPC_DIFFS_ID, 1000);
		EXPECT(dsm_unlock(7), DSM_ENOMEM);
		inject_rpc(0, 0);
		/* still held: the manager has not seen an unlock */
		CK(dsm_unlock(7));
	}
	CK(dsm_barrier());
	if (me == 0) {
		CK(dsm_lock(7));
		check("under the lock after the unlock that delivered", a, n, 2);
		CK(dsm_unlock(7));
	}
	CK(dsm_barrier());
	printf("node %d: diffs: a failed release lost nothing\n", me);
}

/* Retry dsm_unlock(id) while it fails with the injected error. */
static void unlock_until_ok(uint32_t id)
{
	int r, tries = 0;

	while ((r = dsm_unlock(id)) == DSM_ENOMEM && ++tries < 1000)
		usleep(10000);
	if (r)
		die("dsm_unlock(%u) after %d tries: %s", id, tries, dsm_strerror(r));
}

static void scenario_news(void)
{
	size_t n = NPAGES * pg / 8;
	uint64_t *a;
	uint64_t s;

	need_nodes(3);
	a = shared_array();
	/* node 2 holds copies: it is a reader the home must tell */
	s = me == 2 ? sum(a, n) : 0;
	if (s)
		die("fresh array sums to %" PRIu64, s);
	/* Only a lock carries the writes to the reader here, and node 0 does
	 * not release until the reader checked: the home's own release would
	 * tell the reader too (it counts the diffs it applied as its own
	 * writes). Lock 1's manager is node 1, which takes it first. */
	if (me == 1)
		CK(dsm_lock(1));
	if (me == 2)
		CK(dsm_lock(2)); /* node 0 waits for it: until node 2 checked */
	if (me == 0)
		inject_rpc(DSM_RPC_WRITER_NEWS_ID, 1000000);
	CK(dsm_barrier());
	if (me == 0) {
		for (int i = 0; i < 1000 && atomic_load(&inj_hits) < 1; i++)
			usleep(10000);
		if (atomic_load(&inj_hits) < 1)
			die("no writer_news call was attempted");
		inject_rpc(0, 0);
		CK(dsm_lock(2));
		CK(dsm_unlock(2));
	}
	if (me == 1) {
		fill(a, n, 3);
		EXPECT(dsm_unlock(1), DSM_ENOMEM);
		unlock_until_ok(1); /* held until a release delivered */
	}
	if (me == 2) {
		CK(dsm_lock(1));
		check("the reader, after the writer's next release", a, n, 3);
		CK(dsm_unlock(1));
		CK(dsm_unlock(2));
	}
	CK(dsm_barrier());
	printf("node %d: news: the writer's next release reached the reader\n", me);
}

static void scenario_ownnews(void)
{
	size_t n = NPAGES * pg / 8;
	uint64_t *a;

	need_nodes(2);
	a = shared_array();
	if (me == 1 && sum(a, n))
		die("fresh array is not zero");
	CK(dsm_barrier());
	/* lock 1's manager is node 1 */
	if (me == 0) {
		CK(dsm_lock(1));
		fill(a, n, 4);
		inject_rpc(DSM_RPC_WRITER_NEWS_ID, 1000);
		EXPECT(dsm_unlock(1), DSM_ENOMEM);
		inject_rpc(0, 0);
		CK(dsm_unlock(1));
	}
	CK(dsm_barrier());
	if (me == 1) {
		CK(dsm_lock(1));
		check("the reader, after the home's next release", a, n, 4);
		CK(dsm_unlock(1));
	}
	CK(dsm_barrier());
	printf("node %d: ownnews: the home's next release reached the reader\n", me);
}

static void scenario_protect(void)
{
	size_t n = NPAGES * pg / 8;
	uint64_t *a;

	need_nodes(2);
	a = shared_array();
	CK(dsm_barrier());
	if (me == 1) {
		fill(a, n, 5);
		/* every write-protect of the release fails: the one call for
		 * the run of written pages, its retry page by page, and each
		 * page's own before its diff */
		inject_protect(2 * NPAGES + 1);
		EXPECT(dsm_barrier(), DSM_ENOMEM);
		if (atomic_load(&inj_hits) < 1)
			die("the pager's protect was not called");
		inject_protect(0);
		/* the pages that could not be protected are still writable */
		a[0] = val(5, 0);
	} else {
		CK(dsm_barrier());
	}
	CK(dsm_barrier());
	if (me == 0)
		check("after the barrier that delivered the diffs", a, n, 5);
	CK(dsm_barrier());
	printf("node %d: protect (%s): a failed write-protect lost nothing\n", me,
	       dsm__pager_backend(D->pg));
}

static void scenario_locktable(void)
{
	const uint32_t k = 20000;

	for (uint32_t i = 0; i < k; i++) {
		CK(dsm_lock(100000 + i * 7));
		CK(dsm_unlock(100000 + i * 7));
	}
	CK(dsm_barrier());
	if (dsm__lock_records())
		die("%zu lock records kept after %u distinct locks were unlocked",
		    dsm__lock_records(), k);
	CK(dsm_barrier());
	printf("node %d: locktable: no record left after %u locks\n", me, k);
}

static void scenario_twins(void)
{
	const size_t mb = 64, len = mb << 20;
	long rss0, rss1, rss2;
	uint64_t *a = NULL;

	need_nodes(2);
	if (me == 0) {
		a = dsm_malloc(len);
		if (!a)
			die("dsm_malloc: %s", dsm_strerror(dsm_last_error()));
		memset(a, 0, len);
	}
	CK(dsm_bcast(&a, sizeof(a), 0));
	CK(dsm_barrier());
	if (me == 1) {
		volatile uint64_t s = sum(a, len / 8); /* the copies are here */

		(void)s;
		rss0 = vmrss_kb();
		fill(a, len / 8, 6);
		rss1 = vmrss_kb();
		CK(dsm_barrier());
		rss2 = vmrss_kb();
		printf("node 1: twins: VmRSS %ld MiB with the copies, %ld MiB after writing them, "
		       "%ld MiB after the release\n", rss0 >> 10, rss1 >> 10, rss2 >> 10);
#if defined(__SANITIZE_ADDRESS__)
		/* ASan's shadow memory and its quarantine of freed buffers grow
		 * VmRSS by more than the twins: only the data is checked */
		printf("node 1: twins: VmRSS not checked under AddressSanitizer\n");
#else
		if (rss1 - rss0 < (long)(mb << 10) / 2)
			die("writing %zu MiB made no twins? VmRSS grew %ld KiB", mb, rss1 - rss0);
		/* the twins alone are mb MiB; a small cache of them (4 MiB) and
		 * the release's buffers may stay */
		if (rss2 - rss0 > (long)(mb << 10) / 2)
			die("VmRSS %ld KiB above the copies' after the release: the %zu MiB of "
			    "twins were kept (at most %zu MiB expected)", rss2 - rss0, mb, mb / 2);
#endif
	} else {
		CK(dsm_barrier());
	}
	CK(dsm_barrier());
	if (me == 0)
		check("after the release", a, len / 8, 6);
	CK(dsm_barrier());
}

/* Node 0 finalizes while the others wait for a broadcast from it (what a
 * program does whose barrier failed on some nodes only): they get
 * DSM_EPEERDEAD, not a hang (node 0's finalize waits for them). */
static void scenario_leaving(void)
{
	int64_t x = 0;
	int r;

	need_nodes(2);
	CK(dsm_barrier());
	if (me == 0) {
		r = dsm_finalize();
		if (r)
			die("dsm_finalize: %s", dsm_strerror(r));
		printf("node 0: leaving: finalized while the others waited for its broadcast\n");
		exit(0);
	}
	EXPECT(dsm_bcast(&x, sizeof(x), 0), DSM_EPEERDEAD);
	printf("node %d: leaving: the broadcast from a finalizing root failed\n", me);
}

static const struct {
	const char *name;
	void (*fn)(void);
} scenarios[] = {
	{ "leaving", scenario_leaving },
	{ "diffs", scenario_diffs },
	{ "news", scenario_news },
	{ "ownnews", scenario_ownnews },
	{ "protect", scenario_protect },
	{ "locktable", scenario_locktable },
	{ "twins", scenario_twins },
};

int main(int argc, char **argv)
{
	size_t i;
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2) {
		fprintf(stderr, "usage: dsmrun -n N test-dsm-inject SCENARIO\n");
		return 2;
	}
	for (i = 0; i < DSM__ARRAY_SIZE(scenarios) && strcmp(argv[1], scenarios[i].name); i++)
		;
	if (i == DSM__ARRAY_SIZE(scenarios)) {
		fprintf(stderr, "test-dsm-inject: unknown scenario '%s'\n", argv[1]);
		return 2;
	}
	scenario = scenarios[i].name;
	/* a release write-protects the pages it does not keep writable
	 * (DSM_KEEP_MB): here, none, so that every write-protect the
	 * scenario fails is made */
	if (!strcmp(scenario, "protect"))
		setenv("DSM_KEEP_MB", "0", 1);
	pg = (size_t)sysconf(_SC_PAGESIZE);
	r = dsm_init(NULL);
	if (r == DSM_ENOTSUP) {
		printf("SKIP: dsm_init: %s\n", dsm_strerror(r));
		return EXIT_SKIP;
	}
	if (r)
		die("dsm_init: %s", dsm_strerror(r));
	me = dsm_rank();
	nodes = dsm_nodes();
	scenarios[i].fn();
	CK(dsm_finalize());
	return 0;
}
