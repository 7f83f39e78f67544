/*
 * Unit tests of pager/: every case runs against both backends (the loop
 * index _i picks uffd or sigsegv). Run as root, main() then runs the whole
 * suite again in a child that has dropped to uid/gid 65534 with no
 * capabilities, so the uffd backend is also tested unprivileged (the
 * machine has vm.unprivileged_userfaultfd = 0: only UFFD_USER_MODE_ONLY
 * makes it work). Exit 77 (with the reason) if a backend is unavailable.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "pager.h"

/* 2: sigsegv serving each fault in the faulting thread (inline_faults) */
static const char *const backend_name[3] = { "uffd", "sigsegv", "sigsegv" };
static int backend_ok[3];

/* ---- a callback layer that installs locally made pages ---------------- */

enum rmode {
	R_INSTALL = 0,    /* read fault: install gen contents READ */
	R_WAIT_PRESENT,   /* read fault: wait until someone else installs */
	R_FAIL,           /* read/write fault: return ctx.err */
};

static struct {
	struct dsm__pager *pg;
	size_t ps;
	char *base;
	enum rmode mode;
	int err;
	int absent_write_access;     /* what a write to a NONE page installs */
	atomic_uint gen;             /* contents generation for new installs */
	useconds_t delay_us;         /* callbacks sleep this long first */
	atomic_int reads, writes_present, writes_absent;
	atomic_int inflight, max_inflight;
	atomic_int *shared_calls;    /* in MAP_SHARED memory for fork tests */
	pthread_t cb_thread;         /* the thread of the last read callback */
} T;

static uint64_t word_of(size_t idx, unsigned gen, size_t i)
{
	return ((uint64_t)gen << 40) | ((uint64_t)idx << 12) | i;
}

static void fill(uint64_t *buf, size_t idx, unsigned gen, size_t ps)
{
	for (size_t i = 0; i < ps / 8; i++)
		buf[i] = word_of(idx, gen, i);
}

static size_t idx_of(void *page)
{
	return (size_t)((char *)page - T.base) / T.ps;
}

static void enter(void)
{
	int n = atomic_fetch_add(&T.inflight, 1) + 1, m = atomic_load(&T.max_inflight);

	while (n > m && !atomic_compare_exchange_weak(&T.max_inflight, &m, n))
		;
	if (T.shared_calls)
		atomic_fetch_add(T.shared_calls, 1);
	if (T.delay_us)
		usleep(T.delay_us);
}

static int read_cb(void *arg, void *page)
{
	uint64_t buf[8192 / 8];
	int r = 0;

	ck_assert_ptr_eq(arg, &T);
	atomic_fetch_add(&T.reads, 1);
	T.cb_thread = pthread_self();
	enter();
	switch (T.mode) {
	case R_INSTALL:
		fill(buf, idx_of(page), atomic_load(&T.gen), T.ps);
		r = dsm__pager_install(T.pg, page, buf, DSM__PAGER_READ);
		break;
	case R_WAIT_PRESENT:
		while (dsm__pager_access(T.pg, page) == DSM__PAGER_NONE)
			sched_yield();
		break;
	case R_FAIL:
		r = T.err;
		break;
	}
	atomic_fetch_sub(&T.inflight, 1);
	return r;
}

static int write_cb(void *arg, void *page, bool present)
{
	uint64_t buf[8192 / 8];
	int r;

	ck_assert_ptr_eq(arg, &T);
	atomic_fetch_add(present ? &T.writes_present : &T.writes_absent, 1);
	enter();
	if (T.mode == R_FAIL) {
		r = T.err;
	} else if (present) {
		r = dsm__pager_protect(T.pg, page, T.ps, DSM__PAGER_RW);
	} else {
		fill(buf, idx_of(page), atomic_load(&T.gen), T.ps);
		r = dsm__pager_install(T.pg, page, buf, T.absent_write_access);
	}
	atomic_fetch_sub(&T.inflight, 1);
	return r;
}

static int load_int(atomic_int *a)
{
	return atomic_load(a);
}
#define N(field) load_int(&T.field)

static void reset_counts(void)
{
	atomic_store(&T.reads, 0);
	atomic_store(&T.writes_present, 0);
	atomic_store(&T.writes_absent, 0);
	atomic_store(&T.max_inflight, 0);
}

/* Create and start a pager of backend b; size 0 = 1 GiB. */
static void setup_size(int b, size_t size)
{
	struct dsm__pager_cfg cfg = {
		.backend = backend_name[b],
		.size = size ? size : (size_t)1 << 30,
		.threads = 8,
		.spin_ns = -1,
		.read_fault = read_cb,
		.write_fault = write_cb,
		.arg = &T,
		.inline_faults = b == 2,
	};
	int r;

	if (!backend_ok[b]) {
		printf("skip: backend %s unavailable here\n", backend_name[b]);
		return;
	}
	T.mode = R_INSTALL;
	T.absent_write_access = DSM__PAGER_RW;
	atomic_store(&T.gen, 1);
	T.delay_us = 0;
	reset_counts();
	r = dsm__pager_create(&cfg, &T.pg);
	ck_assert_msg(r == 0, "create %s: %s", backend_name[b], dsm_strerror(r));
	ck_assert_str_eq(dsm__pager_backend(T.pg), backend_name[b]);
	T.ps = dsm__pager_page_size(T.pg);
	T.base = dsm__pager_base(T.pg);
	ck_assert_ptr_eq(T.base, (void *)DSM__PAGER_DEFAULT_BASE);
	ck_assert_int_eq(dsm__pager_start(T.pg), 0);
}

#define SETUP(b)                      \
	do {                          \
		setup_size((b), 0);   \
		if (!backend_ok[(b)]) \
			return;       \
	} while (0)

static void teardown(void)
{
	dsm__pager_syscalls_set(NULL); /* a failed case may leave one injected */
	dsm__pager_destroy(T.pg);
	T.pg = NULL;
}

static void check_page(const void *page, size_t idx, unsigned gen)
{
	const volatile uint64_t *w = page;

	for (size_t i = 0; i < T.ps / 8; i++)
		if (w[i] != word_of(idx, gen, i))
			ck_abort_msg("page %zu word %zu: %#llx, expected %#llx", idx, i,
				     (unsigned long long)w[i],
				     (unsigned long long)word_of(idx, gen, i));
}

/* ---- basic faults ----------------------------------------------------- */

START_TEST(pager_read_fault)
{
	volatile uint64_t *p;

	SETUP(_i);
	p = (volatile uint64_t *)(T.base + 5 * T.ps);
	ck_assert_int_eq(dsm__pager_access(T.pg, (void *)p), DSM__PAGER_NONE);
	ck_assert_uint_eq(p[7], word_of(5, 1, 7));
	ck_assert_int_eq(N(reads), 1);
	check_page((void *)p, 5, 1);
	ck_assert_int_eq(N(reads), 1); /* no second fault */
	ck_assert_int_eq(N(writes_present) + N(writes_absent), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, (void *)p), DSM__PAGER_READ);
}
END_TEST

START_TEST(pager_write_fault_present)
{
	uint64_t buf[8192 / 8];
	volatile uint64_t *p;

	SETUP(_i);
	p = (volatile uint64_t *)(T.base + 9 * T.ps);
	fill(buf, 9, 3, T.ps);
	ck_assert_int_eq(dsm__pager_install(T.pg, (void *)p, buf, DSM__PAGER_READ), 0);
	ck_assert_uint_eq(p[1], word_of(9, 3, 1)); /* loads do not trap */
	ck_assert_int_eq(N(reads) + N(writes_present), 0);
	p[2] = 0xabcdef;
	ck_assert_int_eq(N(writes_present), 1);
	ck_assert_int_eq(N(writes_absent) + N(reads), 0);
	ck_assert_uint_eq(p[2], 0xabcdef);
	ck_assert_uint_eq(p[3], word_of(9, 3, 3));
	p[4] = 1;
	ck_assert_int_eq(N(writes_present), 1); /* RW: no trap */
	ck_assert_int_eq(dsm__pager_access(T.pg, (void *)p), DSM__PAGER_RW);
}
END_TEST

START_TEST(pager_write_fault_absent)
{
	volatile uint64_t *p, *q;

	SETUP(_i);
	/* One combined callback: write_fault(present = false), no read. */
	p = (volatile uint64_t *)(T.base + 11 * T.ps);
	p[0] = 42;
	ck_assert_int_eq(N(writes_absent), 1);
	ck_assert_int_eq(N(reads) + N(writes_present), 0);
	ck_assert_uint_eq(p[0], 42);
	ck_assert_uint_eq(p[1], word_of(11, 1, 1));
	ck_assert_int_eq(dsm__pager_access(T.pg, (void *)p), DSM__PAGER_RW);
	/* A write callback that installs READ: the store traps again as a
	 * write fault on a present page. */
	T.absent_write_access = DSM__PAGER_READ;
	q = (volatile uint64_t *)(T.base + 12 * T.ps);
	q[3] = 43;
	ck_assert_int_eq(N(writes_absent), 2);
	ck_assert_int_eq(N(writes_present), 1);
	ck_assert_int_eq(N(reads), 0);
	ck_assert_uint_eq(q[3], 43);
	ck_assert_uint_eq(q[4], word_of(12, 1, 4));
}
END_TEST

/* ---- many threads ----------------------------------------------------- */

struct thr {
	pthread_barrier_t *bar;
	char *page;
	uint64_t sum;
	int64_t t_end;
};

static void *touch_thread(void *p)
{
	struct thr *t = p;
	const volatile uint64_t *w = (const volatile uint64_t *)t->page;

	pthread_barrier_wait(t->bar);
	t->sum = 0;
	for (size_t i = 0; i < T.ps / 8; i++)
		t->sum = t->sum * 31 + w[i];
	t->t_end = dsm__now_ns();
	return NULL;
}

START_TEST(pager_same_page_8_threads)
{
	pthread_barrier_t bar;
	pthread_t th[8];
	struct thr t[8];
	struct dsm__pager_stats st;

	SETUP(_i);
	T.delay_us = 100000; /* every thread is in the fault before it is served */
	pthread_barrier_init(&bar, NULL, 8);
	for (int i = 0; i < 8; i++) {
		t[i] = (struct thr){ .bar = &bar, .page = T.base + 3 * T.ps };
		ck_assert_int_eq(pthread_create(&th[i], NULL, touch_thread, &t[i]), 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(N(reads), 1);
	for (int i = 1; i < 8; i++)
		ck_assert_uint_eq(t[i].sum, t[0].sum);
	check_page(T.base + 3 * T.ps, 3, 1);
	dsm__pager_get_stats(T.pg, &st);
	printf("%s same page: 1 callback, %llu faults joined it, %llu stale reports\n",
	       backend_name[_i], (unsigned long long)st.joined, (unsigned long long)st.stale);
	ck_assert_uint_eq(st.read_faults, 1);
	pthread_barrier_destroy(&bar);
}
END_TEST

START_TEST(pager_diff_pages_overlap)
{
	pthread_barrier_t bar;
	pthread_t th[8];
	struct thr t[8];
	int64_t t0, el;

	SETUP(_i);
	T.delay_us = 100000;
	pthread_barrier_init(&bar, NULL, 8);
	t0 = dsm__now_ns();
	for (int i = 0; i < 8; i++) {
		t[i] = (struct thr){ .bar = &bar, .page = T.base + (size_t)(20 + i) * T.ps };
		ck_assert_int_eq(pthread_create(&th[i], NULL, touch_thread, &t[i]), 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	el = dsm__now_ns() - t0;
	printf("%s 8 pages: %d callbacks, at most %d at once, %.1f ms for 8 x 100 ms callbacks\n",
	       backend_name[_i], atomic_load(&T.reads), atomic_load(&T.max_inflight), el / 1e6);
	ck_assert_int_eq(N(reads), 8);
	ck_assert_int_eq(N(max_inflight), 8);
	ck_assert_int_lt(el, 400 * 1000000LL); /* serial would be >= 800 ms */
	for (int i = 0; i < 8; i++)
		check_page(t[i].page, (size_t)(20 + i), 1);
	pthread_barrier_destroy(&bar);
}
END_TEST

/* ---- atomic install --------------------------------------------------- */

static atomic_int reader_stop;
static atomic_long reader_scans, reader_bad;
static char reader_msg[256];

/*
 * Scans the page over and over. A correct page has word i = (gen, idx, i)
 * with gen > 0. A scan may legitimately cross a drop + re-install (it
 * faults in the middle and resumes on the new page), so gens may rise
 * within a scan, but never fall, and no word is ever zero (a dropped
 * page's memory reads zero) or out of place.
 */
static void *reader_thread(void *p)
{
	const volatile uint64_t *w = p;
	size_t n = T.ps / 8, idx = idx_of(p);

	while (!atomic_load(&reader_stop)) {
		uint64_t prev_gen = 0;

		for (size_t i = 0; i < n; i++) {
			uint64_t v = w[i], gen = v >> 40;

			if ((v & ((1ull << 40) - 1)) != word_of(idx, 0, i) || gen == 0 ||
			    gen < prev_gen) {
				if (!atomic_fetch_add(&reader_bad, 1))
					snprintf(reader_msg, sizeof(reader_msg),
						 "word %zu = %#llx after gen %llu", i,
						 (unsigned long long)v,
						 (unsigned long long)prev_gen);
			}
			prev_gen = gen;
		}
		atomic_fetch_add(&reader_scans, 1);
	}
	return NULL;
}

START_TEST(pager_atomic_install)
{
	uint64_t buf[8192 / 8];
	char *page;
	pthread_t th;
	int64_t until, hard;
	unsigned gen = 1;

	SETUP(_i);
	page = T.base + 77 * T.ps;
	fill(buf, 77, gen, T.ps);
	ck_assert_int_eq(dsm__pager_install(T.pg, page, buf, DSM__PAGER_READ), 0);
	T.mode = R_WAIT_PRESENT; /* the reader's faults wait for our install */
	atomic_store(&reader_stop, 0);
	atomic_store(&reader_scans, 0);
	atomic_store(&reader_bad, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, reader_thread, page), 0);
	/* 1.5 s, and on until the reader has met 100 drops (a loaded machine
	 * or a sanitizer slows it down), 20 s at most */
	until = dsm__now_ns() + 1500 * 1000000LL;
	hard = until + 20000 * 1000000LL;
	while (dsm__now_ns() < until || (N(reads) <= 100 && dsm__now_ns() < hard)) {
		int64_t t;
		long sc;

		ck_assert_int_eq(dsm__pager_drop(T.pg, page, T.ps), 0);
		fill(buf, 77, ++gen, T.ps);
		if (gen & 1) {
			/* leave the page absent until the reader faults on it */
			int r0 = N(reads);

			for (t = dsm__now_ns() + 1000000; N(reads) == r0 && dsm__now_ns() < t;)
				sched_yield();
		}
		ck_assert_int_eq(dsm__pager_install(T.pg, page, buf, DSM__PAGER_READ), 0);
		/* and let it read the new page for a while */
		sc = atomic_load(&reader_scans);
		for (t = dsm__now_ns() + 1000000; atomic_load(&reader_scans) < sc + 2 &&
						  dsm__now_ns() < t;)
			sched_yield();
	}
	atomic_store(&reader_stop, 1);
	pthread_join(th, NULL);
	printf("%s atomic install: %u installs, %ld scans, %d reader faults, %ld torn\n",
	       backend_name[_i], gen, atomic_load(&reader_scans), atomic_load(&T.reads),
	       atomic_load(&reader_bad));
	ck_assert_msg(atomic_load(&reader_bad) == 0, "reader saw a torn page: %s", reader_msg);
	ck_assert_int_gt(N(reads), 100); /* the reader did meet drops */
	ck_assert_int_gt(atomic_load(&reader_scans), 100);
}
END_TEST

/* ---- drop and access transitions -------------------------------------- */

START_TEST(pager_drop_refault)
{
	volatile uint64_t *p;

	SETUP(_i);
	p = (volatile uint64_t *)(T.base + 30 * T.ps);
	ck_assert_uint_eq(p[0], word_of(30, 1, 0));
	ck_assert_int_eq(N(reads), 1);
	ck_assert_int_eq(dsm__pager_drop(T.pg, (void *)p, T.ps), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, (void *)p), DSM__PAGER_NONE);
	atomic_store(&T.gen, 2);
	ck_assert_uint_eq(p[0], word_of(30, 2, 0)); /* faults again, new bytes */
	ck_assert_int_eq(N(reads), 2);
	check_page((void *)p, 30, 2);
	/* Dropping a range that is partly not present is fine. */
	ck_assert_int_eq(dsm__pager_drop(T.pg, T.base + 28 * T.ps, 8 * T.ps), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, (void *)p), DSM__PAGER_NONE);
}
END_TEST

START_TEST(pager_transitions)
{
	uint64_t buf[8192 / 8];
	volatile uint64_t *p;
	char *a;

	SETUP(_i);
	a = T.base + 40 * T.ps;
	p = (volatile uint64_t *)a;
	/* none */
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_NONE);
	/* protect never makes a not-present page present */
	ck_assert_int_eq(dsm__pager_protect(T.pg, a, T.ps, DSM__PAGER_RW), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_NONE);
	/* -> read: loads free, stores trap */
	fill(buf, 40, 5, T.ps);
	ck_assert_int_eq(dsm__pager_install(T.pg, a, buf, DSM__PAGER_READ), 0);
	ck_assert_int_eq(dsm__pager_install(T.pg, a, buf, DSM__PAGER_READ), DSM_EBUSY);
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_READ);
	ck_assert_uint_eq(p[10], word_of(40, 5, 10));
	ck_assert_int_eq(N(reads), 0);
	/* -> read-write: stores free, contents kept */
	ck_assert_int_eq(dsm__pager_protect(T.pg, a, T.ps, DSM__PAGER_RW), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_RW);
	p[10] = 7;
	ck_assert_int_eq(N(writes_present) + N(writes_absent), 0);
	ck_assert_uint_eq(p[11], word_of(40, 5, 11));
	/* -> read: contents kept, the next store traps once */
	ck_assert_int_eq(dsm__pager_protect(T.pg, a, T.ps, DSM__PAGER_READ), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_READ);
	ck_assert_uint_eq(p[10], 7);
	p[12] = 8;
	ck_assert_int_eq(N(writes_present), 1);
	p[13] = 9;
	ck_assert_int_eq(N(writes_present), 1);
	ck_assert_uint_eq(p[12], 8);
	ck_assert_int_eq(dsm__pager_protect(T.pg, a, T.ps, DSM__PAGER_READ), 0);
	/* -> none: contents gone, the next load faults */
	ck_assert_int_eq(dsm__pager_protect(T.pg, a, T.ps, DSM__PAGER_NONE), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_NONE);
	ck_assert_uint_eq(p[10], word_of(40, 1, 10));
	ck_assert_int_eq(N(reads), 1);
	/* Range protect over a sparse range leaves holes alone. */
	ck_assert_int_eq(dsm__pager_protect(T.pg, T.base + 38 * T.ps, 6 * T.ps, DSM__PAGER_RW), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_RW);
	ck_assert_int_eq(dsm__pager_access(T.pg, a + T.ps), DSM__PAGER_NONE);
	/* Bad arguments. */
	ck_assert_int_eq(dsm__pager_install(T.pg, a + 8, buf, DSM__PAGER_READ), DSM_EINVAL);
	ck_assert_int_eq(dsm__pager_install(T.pg, a + T.ps, buf, DSM__PAGER_NONE), DSM_EINVAL);
	ck_assert_int_eq(dsm__pager_install(T.pg, T.base - T.ps, buf, DSM__PAGER_READ), DSM_EINVAL);
	ck_assert_int_eq(dsm__pager_protect(T.pg, a, T.ps, 7), DSM_EINVAL);
	ck_assert_int_eq(dsm__pager_drop(T.pg, a, dsm__pager_size(T.pg)), DSM_EINVAL);
	ck_assert_int_eq(dsm__pager_access(T.pg, T.base + dsm__pager_size(T.pg)), DSM_EINVAL);
}
END_TEST

/* ---- memory: 64 GiB reserved, used sparsely ---------------------------- */

static long smaps_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t kl = strlen(key);
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':')
			v = strtol(line + kl + 1, NULL, 10);
	fclose(f);
	return v;
}

START_TEST(pager_rss_sparse)
{
	const size_t gib = (size_t)1 << 30;
	size_t touched = 0, stride = 16;
	long pss0, pss1, grow_kb, want_kb;
	int64_t t0;
	uint64_t sum = 0;

	setup_size(_i, 64 * gib);
	if (!backend_ok[_i])
		return;
	ck_assert_uint_eq(dsm__pager_size(T.pg), 64 * gib);
#if defined(__SANITIZE_ADDRESS__)
	/* Every load of a touched page also commits a page of ASan's shadow
	 * (one per 32 KiB, here one per touched page; sigsegv: the alias's
	 * too), which no drop gives back: the process's Pss says nothing of
	 * the pager's own memory here. */
	printf("%s 64 GiB region: memory not checked under AddressSanitizer\n",
	       backend_name[_i]);
	return;
#endif
	pss0 = smaps_kb("Pss");
	ck_assert_int_gt(pss0, 0);
	/* 1 GiB touched sparsely: one page in 16 ... */
	for (size_t off = 0; off < gib; off += stride * T.ps, touched++)
		sum += *(volatile uint64_t *)(T.base + off);
	/* ... and one page in every GiB of the 64. */
	for (size_t g = 1; g < 64; g++, touched++)
		sum += *(volatile uint64_t *)(T.base + g * gib + 12345 * T.ps);
	pss1 = smaps_kb("Pss");
	grow_kb = pss1 - pss0;
	want_kb = (long)(touched * T.ps / 1024);
	printf("%s 64 GiB region: %zu pages touched (%ld KiB), Pss grew %ld KiB (sum %llx)\n",
	       backend_name[_i], touched, want_kb, grow_kb, (unsigned long long)sum);
	ck_assert_int_eq(N(reads), (int)touched);
	ck_assert_int_ge(grow_kb, want_kb * 9 / 10);
	/* the pages, plus the pager's own state words and some slack */
	ck_assert_int_le(grow_kb, want_kb + 8 * 1024);
	/* dropping returns the memory, and the range scan does not commit the
	 * state words of the pages never made present */
	t0 = dsm__now_ns();
	ck_assert_int_eq(dsm__pager_drop(T.pg, T.base, 64 * gib), 0);
	t0 = dsm__now_ns() - t0;
	grow_kb = smaps_kb("Pss") - pss0;
	printf("%s after dropping everything (%.1f ms): Pss %+ld KiB\n", backend_name[_i],
	       t0 / 1e6, grow_kb);
	ck_assert_int_le(grow_kb, 8 * 1024);
	/* nor does a protect or a drop of the whole region with nothing present */
	ck_assert_int_eq(dsm__pager_protect(T.pg, T.base, 64 * gib, DSM__PAGER_READ), 0);
	ck_assert_int_eq(dsm__pager_drop(T.pg, T.base, 64 * gib), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, T.base + 63 * gib), DSM__PAGER_NONE);
	grow_kb = smaps_kb("Pss") - pss0;
	ck_assert_int_le(grow_kb, 8 * 1024);
}
END_TEST

/* Range operations skip the groups of state words no page of which was
 * ever present (one group per page of state words: ps / 4 pages); runs of
 * present pages across group boundaries, holes of unused groups, and a
 * group past the first 64 (second word of the summary bitmap) all come out
 * right, in the records and in the kernel (a store traps or not). */
START_TEST(pager_range_groups)
{
	size_t g, idx[6];
	int w;

	SETUP(_i);
	g = T.ps / 4;
	idx[0] = g - 1;          /* last page of group 0 ... */
	idx[1] = g;              /* ... and first of group 1: one run */
	idx[2] = g + 1;
	idx[3] = 5 * g + 3;      /* after unused groups 2-4 */
	idx[4] = 64 * g + 1;     /* group 64: next bitmap word */
	idx[5] = 130 * g - 1;
	for (int k = 0; k < 6; k++)
		ck_assert_int_eq(dsm__pager_install(T.pg, T.base + idx[k] * T.ps, NULL,
						    DSM__PAGER_READ), 0);
	ck_assert_int_eq(dsm__pager_protect(T.pg, T.base, 131 * g * T.ps, DSM__PAGER_RW), 0);
	for (int k = 0; k < 6; k++) {
		ck_assert_int_eq(dsm__pager_access(T.pg, T.base + idx[k] * T.ps), DSM__PAGER_RW);
		if (k != 0 && k != 1)
			ck_assert_int_eq(dsm__pager_access(T.pg, T.base + (idx[k] + 1) * T.ps),
					 DSM__PAGER_NONE);
		if (k != 1 && k != 2)
			ck_assert_int_eq(dsm__pager_access(T.pg, T.base + (idx[k] - 1) * T.ps),
					 DSM__PAGER_NONE);
		*(volatile char *)(T.base + idx[k] * T.ps) = 1;
	}
	ck_assert_int_eq(N(writes_present) + N(writes_absent) + N(reads), 0);
	ck_assert_int_eq(dsm__pager_protect(T.pg, T.base + T.ps, 130 * g * T.ps, DSM__PAGER_READ), 0);
	for (int k = 0; k < 6; k++) {
		ck_assert_int_eq(dsm__pager_access(T.pg, T.base + idx[k] * T.ps), DSM__PAGER_READ);
		w = N(writes_present);
		*(volatile char *)(T.base + idx[k] * T.ps) = 2;
		ck_assert_int_eq(N(writes_present), w + 1);
	}
	ck_assert_int_eq(dsm__pager_drop(T.pg, T.base + g * T.ps, 129 * g * T.ps), 0);
	ck_assert_int_eq(dsm__pager_access(T.pg, T.base + idx[0] * T.ps), DSM__PAGER_RW);
	for (int k = 1; k < 6; k++)
		ck_assert_int_eq(dsm__pager_access(T.pg, T.base + idx[k] * T.ps), DSM__PAGER_NONE);
	ck_assert_uint_eq(*(volatile uint64_t *)(T.base + idx[4] * T.ps), word_of(idx[4], 1, 0));
	ck_assert_int_eq(N(reads), 1);
	ck_assert_uint_eq(*(volatile char *)(T.base + idx[0] * T.ps), 2);
}
END_TEST

/* ---- crashes stay crashes --------------------------------------------- */

static int child_status(pid_t pid)
{
	int st;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return st;
}

static void no_core(void)
{
	struct rlimit rl = { 0, 0 };

	setrlimit(RLIMIT_CORE, &rl);
	/* a hang is a failure (the child dies of SIGALRM), not a stuck test;
	 * the default action, not Check's inherited timeout handler (which
	 * kills the whole test's process group) */
	signal(SIGALRM, SIG_DFL);
	alarm(10);
}

/* Did the child die of SIGSEGV? Under AddressSanitizer its SEGV handler
 * was installed before ours, so the fault is passed on to it and it exits
 * with its report instead: that is the chain working too. */
static bool died_of_segv(int st)
{
#if defined(__SANITIZE_ADDRESS__)
	if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
		return true;
#endif
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}

/* An address in the unmapped first page that the compiler cannot prove
 * invalid: a wild store faults for real, and UBSan (which flags NULL and
 * misaligned stores, not these) lets it reach the signal. */
static volatile uintptr_t wild_addr = 64;

static volatile int *wild_ptr(void)
{
	return (volatile int *)wild_addr;
}

static void earlier_handler(int sig)
{
	(void)sig;
	_exit(55);
}

START_TEST(pager_foreign_fault_kills)
{
	pid_t pid;
	int st;

	/* A handler installed before the pager gets the faults that are not
	 * the pager's. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		no_core();
		signal(SIGSEGV, earlier_handler);
		setup_size(_i, 0);
		(void)*(volatile char *)(T.base + T.ps); /* the pager's */
		*wild_ptr() = 1;
		_exit(0);
	}
	st = child_status(pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 55, "chained: status %#x", st);

	SETUP(_i);
	/* a NULL dereference in a forked child: SIGSEGV, core and all */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		no_core();
		*wild_ptr() = 1;
		_exit(0);
	}
	st = child_status(pid);
	ck_assert_msg(died_of_segv(st), "NULL store: status %#x", st);
	/* (a child touching the region: pager_fork_child) */
	/* the pager itself keeps working */
	ck_assert_uint_eq(*(volatile uint64_t *)(T.base + T.ps), word_of(1, 1, 0));
}
END_TEST

START_TEST(pager_stop_then_touch_crashes)
{
	pid_t pid = fork();
	int st;

	ck_assert_int_ge(pid, 0);
	if (!pid) {
		no_core();
		setup_size(_i, 0);
		if (!backend_ok[_i])
			_exit(99);
		(void)*(volatile char *)T.base;
		dsm__pager_stop(T.pg);
		(void)*(volatile char *)T.base; /* must not hang or read zeros */
		_exit(0);
	}
	st = child_status(pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 99)
		return;
	ck_assert_msg(died_of_segv(st), "status %#x", st);
}
END_TEST

/* ---- a callback that fails -------------------------------------------- */

static struct fatal_rec {
	atomic_int calls;      /* callbacks */
	atomic_int handled;    /* fatal handler calls */
	uintptr_t addr;
	int err;
} *rec;

static void record_and_exit(void *addr, int err)
{
	rec->addr = (uintptr_t)addr;
	rec->err = err;
	atomic_fetch_add(&rec->handled, 1);
	_exit(42);
}

static void record_and_return(void *addr, int err)
{
	rec->addr = (uintptr_t)addr;
	rec->err = err;
	atomic_fetch_add(&rec->handled, 1);
}

/* Fork a child that sets up backend b with failing callbacks, optionally
 * sets a fatal handler, and loads (or stores) a page. Returns its status;
 * its stderr goes to errbuf. */
static int failing_child(int b, dsm__pager_fatal_fn h, bool store, char *errbuf, size_t n)
{
	int fds[2], st;
	ssize_t got, off = 0;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		no_core();
		dup2(fds[1], 2);
		close(fds[0]);
		setvbuf(stdout, NULL, _IONBF, 0);
		T.shared_calls = &rec->calls;
		setup_size(b, 0);
		T.mode = R_FAIL;
		T.err = DSM_EPEERDEAD;
		if (h)
			dsm__pager_set_fatal_handler(h);
		if (store)
			*(volatile char *)(T.base + 2 * T.ps) = 1;
		else
			(void)*(volatile char *)(T.base + 2 * T.ps);
		_exit(0); /* never: the access cannot complete */
	}
	close(fds[1]);
	while (off < (ssize_t)n - 1 && (got = read(fds[0], errbuf + off, n - 1 - (size_t)off)) > 0)
		off += got;
	errbuf[off] = 0;
	close(fds[0]);
	st = child_status(pid);
	return st;
}

START_TEST(pager_callback_error)
{
	char err[1024], want[64];
	int st;

	if (!backend_ok[_i])
		return;
	rec = mmap(NULL, sizeof(*rec), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(rec, MAP_FAILED);
	snprintf(want, sizeof(want), "%p", (void *)(DSM__PAGER_DEFAULT_BASE + 2 * 4096));

	/* default handler: message, exit status DSM_EXIT_FAULT, one call */
	memset(rec, 0, sizeof(*rec));
	st = failing_child(_i, NULL, false, err, sizeof(err));
	printf("%s default: status %#x, stderr: %s", backend_name[_i], st, err);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == DSM_EXIT_FAULT, "status %#x", st);
	ck_assert_ptr_nonnull(strstr(err, want));
	ck_assert_ptr_nonnull(strstr(err, dsm_strerror(DSM_EPEERDEAD)));
	ck_assert_int_eq(load_int(&rec->calls), 1);

	/* the application's handler sees the address and the code */
	memset(rec, 0, sizeof(*rec));
	st = failing_child(_i, record_and_exit, true, err, sizeof(err));
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 42, "status %#x", st);
	ck_assert_int_eq(load_int(&rec->calls), 1);
	ck_assert_int_eq(load_int(&rec->handled), 1);
	ck_assert_uint_eq(rec->addr, DSM__PAGER_DEFAULT_BASE + 2 * 4096);
	ck_assert_int_eq(rec->err, DSM_EPEERDEAD);

	/* a handler that returns: no retry, the process still ends */
	memset(rec, 0, sizeof(*rec));
	st = failing_child(_i, record_and_return, false, err, sizeof(err));
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == DSM_EXIT_FAULT, "status %#x", st);
	ck_assert_int_eq(load_int(&rec->calls), 1);
	ck_assert_int_eq(load_int(&rec->handled), 1);
	ck_assert_ptr_nonnull(strstr(err, "handler returned"));
	munmap(rec, sizeof(*rec));
}
END_TEST

/* ---- injected system call failures ------------------------------------ */

/*
 * Through the pager's system call table: the page operations (mprotect for
 * sigsegv; UFFDIO_COPY, UFFDIO_WRITEPROTECT and MADV_DONTNEED for uffd) on
 * [fail_lo, fail_hi) fail with fail_errno; every other call goes to the
 * real one.
 */
static struct dsm__pager_syscalls real_sys;
static uintptr_t fail_lo, fail_hi;
static int fail_errno;
static atomic_int injected;

static int fail_now(uintptr_t a, size_t len)
{
	if (a >= fail_hi || a + len <= fail_lo)
		return 0;
	atomic_fetch_add(&injected, 1);
	errno = fail_errno;
	return -1;
}

static int fail_mprotect(void *a, size_t len, int prot)
{
	return fail_now((uintptr_t)a, len) ? -1 : real_sys.mprotect(a, len, prot);
}

static int fail_madvise(void *a, size_t len, int advice)
{
	if (advice == MADV_DONTNEED && fail_now((uintptr_t)a, len))
		return -1;
	return real_sys.madvise(a, len, advice);
}

static int fail_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (req == UFFDIO_WRITEPROTECT) {
		const struct uffdio_writeprotect *wp = arg;

		if (fail_now(wp->range.start, wp->range.len))
			return -1;
	} else if (req == UFFDIO_COPY) {
		const struct uffdio_copy *c = arg;

		if (fail_now(c->dst, c->len))
			return -1;
	}
	return real_sys.ioctl(fd, req, arg);
}

/* From now on the page operations on [a, a+len) fail with errno e. */
static void inject(void *a, size_t len, int e)
{
	struct dsm__pager_syscalls sys;

	dsm__pager_syscalls_get(&real_sys);
	fail_lo = (uintptr_t)a;
	fail_hi = fail_lo + len;
	fail_errno = e;
	atomic_store(&injected, 0);
	sys = real_sys;
	sys.mprotect = fail_mprotect;
	sys.madvise = fail_madvise;
	sys.ioctl = fail_ioctl;
	dsm__pager_syscalls_set(&sys);
}

/* Does a store to page trap (as a write fault on a present page)? */
static bool store_traps(char *page)
{
	int w = N(writes_present);

	*(volatile char *)(page + 100) = 1;
	return N(writes_present) != w;
}

/* A protect whose system call fails returns a negative DSM_E* code and
 * leaves the page's recorded access as it was, which is also what the
 * kernel still enforces: a READ page still traps on a store, an RW page
 * still does not. In a run, the pages whose call succeeded change. */
START_TEST(pager_protect_failure)
{
	char *a, *b, *c;
	int r;

	SETUP(_i);
	a = T.base + 50 * T.ps;
	b = T.base + 51 * T.ps;
	ck_assert_int_eq(dsm__pager_install(T.pg, a, NULL, DSM__PAGER_READ), 0);
	ck_assert_int_eq(dsm__pager_install(T.pg, b, NULL, DSM__PAGER_RW), 0);

	/* READ -> RW fails with ENOMEM */
	inject(a, T.ps, ENOMEM);
	r = dsm__pager_protect(T.pg, a, T.ps, DSM__PAGER_RW);
	ck_assert_int_gt(atomic_load(&injected), 0);
	dsm__pager_syscalls_set(NULL);
	ck_assert_int_eq(r, DSM_ENOMEM);
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_READ);
	ck_assert(store_traps(a));
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_RW);

	/* RW -> READ (what a release does) fails with ENOMEM, then EIO */
	inject(b, T.ps, ENOMEM);
	r = dsm__pager_protect(T.pg, b, T.ps, DSM__PAGER_READ);
	dsm__pager_syscalls_set(NULL);
	ck_assert_int_eq(r, DSM_ENOMEM);
	ck_assert_int_eq(dsm__pager_access(T.pg, b), DSM__PAGER_RW);
	ck_assert(!store_traps(b));
	inject(b, T.ps, EIO);
	r = dsm__pager_protect(T.pg, b, T.ps, DSM__PAGER_READ);
	dsm__pager_syscalls_set(NULL);
	ck_assert_int_eq(r, DSM_ESYS);
	ck_assert_int_eq(dsm__pager_access(T.pg, b), DSM__PAGER_RW);
	ck_assert(!store_traps(b));
	/* and once the call works again, the protect does */
	ck_assert_int_eq(dsm__pager_protect(T.pg, b, T.ps, DSM__PAGER_READ), 0);
	ck_assert(store_traps(b));

	/* a run of three RW pages whose middle page fails */
	c = T.base + 60 * T.ps;
	for (int k = 0; k < 3; k++)
		ck_assert_int_eq(dsm__pager_install(T.pg, c + k * T.ps, NULL, DSM__PAGER_RW), 0);
	inject(c + T.ps, T.ps, ENOMEM);
	r = dsm__pager_protect(T.pg, c, 3 * T.ps, DSM__PAGER_READ);
	dsm__pager_syscalls_set(NULL);
	ck_assert_int_eq(r, DSM_ENOMEM);
	ck_assert_int_eq(dsm__pager_access(T.pg, c), DSM__PAGER_READ);
	ck_assert_int_eq(dsm__pager_access(T.pg, c + T.ps), DSM__PAGER_RW);
	ck_assert_int_eq(dsm__pager_access(T.pg, c + 2 * T.ps), DSM__PAGER_READ);
	ck_assert(store_traps(c));
	ck_assert(!store_traps(c + T.ps));
	ck_assert(store_traps(c + 2 * T.ps));
	ck_assert_int_eq(N(reads) + N(writes_absent), 0);
}
END_TEST

/* A drop whose system call fails keeps the page, contents and access. */
START_TEST(pager_drop_failure)
{
	uint64_t buf[8192 / 8];
	char *a;
	int r;

	SETUP(_i);
	a = T.base + 70 * T.ps;
	fill(buf, 70, 9, T.ps);
	ck_assert_int_eq(dsm__pager_install(T.pg, a, buf, DSM__PAGER_READ), 0);
	inject(a, T.ps, ENOMEM);
	r = dsm__pager_drop(T.pg, T.base + 69 * T.ps, 3 * T.ps);
	ck_assert_int_gt(atomic_load(&injected), 0);
	dsm__pager_syscalls_set(NULL);
	ck_assert_msg(r < 0 && r > DSM_ERRNO_MIN, "drop returned %d", r);
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_READ);
	check_page(a, 70, 9);
	ck_assert(store_traps(a));
	ck_assert_int_eq(N(reads) + N(writes_absent), 0);
}
END_TEST

/* An install whose system call fails leaves the page not present; the next
 * touch faults as usual. */
START_TEST(pager_install_failure)
{
	uint64_t buf[8192 / 8];
	char *a;
	int r;

	SETUP(_i);
	a = T.base + 80 * T.ps;
	fill(buf, 80, 7, T.ps);
	inject(a, T.ps, ENOMEM);
	r = dsm__pager_install(T.pg, a, buf, DSM__PAGER_RW);
	ck_assert_int_gt(atomic_load(&injected), 0);
	dsm__pager_syscalls_set(NULL);
	ck_assert_int_eq(r, DSM_ENOMEM);
	ck_assert_int_eq(dsm__pager_access(T.pg, a), DSM__PAGER_NONE);
	check_page(a, 80, 1); /* read fault: the callback installs gen 1 */
	ck_assert_int_eq(N(reads), 1);
}
END_TEST

/* Big mappings (the state words, the region) fail; the probes' pass. */
static void *fail_mmap(void *a, size_t len, int prot, int flags, int fd, off_t off)
{
	if (len < ((size_t)1 << 20))
		return real_sys.mmap(a, len, prot, flags, fd, off);
	errno = ENOMEM;
	return MAP_FAILED;
}

static int fail_userfaultfd(int flags)
{
	(void)flags;
	errno = ENOSYS;
	return -1;
}

static int fail_memfd_create(const char *name, unsigned flags)
{
	(void)name, (void)flags;
	errno = EMFILE;
	return -1;
}

static int fail_ftruncate(int fd, off_t len)
{
	(void)fd, (void)len;
	errno = EFBIG;
	return -1;
}

/* Creation fails cleanly when a system call it makes fails (and the next
 * creation works: nothing was left behind). */
START_TEST(pager_create_failure)
{
	struct dsm__pager_cfg cfg = { .backend = backend_name[_i], .read_fault = read_cb,
				      .write_fault = write_cb, .spin_ns = -1 };
	struct dsm__pager_syscalls sys;
	int want[4] = { DSM_ENOMEM, DSM_ENOTSUP, DSM_ENOTSUP, DSM_ENOMEM };
	int r;

	if (!backend_ok[_i])
		return;
	for (int k = 0; k < 4; k++) {
		if ((k == 1 && _i != 0) || (k >= 2 && _i != 1))
			continue; /* userfaultfd: uffd; memfd_create, ftruncate: sigsegv */
		dsm__pager_syscalls_get(&sys);
		real_sys = sys;
		if (k == 0)
			sys.mmap = fail_mmap;
		else if (k == 1)
			sys.userfaultfd = fail_userfaultfd;
		else if (k == 2)
			sys.memfd_create = fail_memfd_create;
		else
			sys.ftruncate = fail_ftruncate;
		dsm__pager_syscalls_set(&sys);
		r = dsm__pager_create(&cfg, &T.pg);
		dsm__pager_syscalls_set(NULL);
		ck_assert_msg(r == want[k], "%s, failure %d: %d", backend_name[_i], k, r);
		ck_assert_int_eq(dsm__pager_create(&cfg, &T.pg), 0);
		dsm__pager_destroy(T.pg);
		T.pg = NULL;
	}
}
END_TEST

/* ---- fork ------------------------------------------------------------- */

/* Fork a child that runs fn; return its wait status, its pid in *pid and
 * its stderr in err. */
static int fork_run(void (*fn)(void), pid_t *pid, char *err, size_t n)
{
	int fds[2];
	ssize_t got, off = 0;

	fflush(stdout);
	ck_assert_int_eq(pipe(fds), 0);
	*pid = fork();
	ck_assert_int_ge(*pid, 0);
	if (!*pid) {
		no_core();
		dup2(fds[1], 2);
		close(fds[0]);
		fn();
		_exit(0);
	}
	close(fds[1]);
	while (off < (ssize_t)n - 1 && (got = read(fds[0], err + off, n - 1 - (size_t)off)) > 0)
		off += got;
	err[off] = 0;
	close(fds[0]);
	return child_status(*pid);
}

static void child_load_present(void)
{
	(void)*(volatile char *)(T.base + 3 * T.ps + 5); /* present in the parent */
}

static void child_store_absent(void)
{
	*(volatile uint64_t *)(T.base + 1000 * T.ps + 8) = 1;
}

/* Touches nothing: sees that it is a forked child, and that the pager's
 * calls are refused there without reaching the parent's objects. */
static void child_no_touch(void)
{
	struct dsm__pager_cfg cfg = { .read_fault = read_cb, .write_fault = write_cb,
				      .spin_ns = -1 };
	struct dsm__pager *p;

	if (!dsm__pager_forked())
		_exit(1);
	if (dsm__pager_install(T.pg, T.base + 6 * T.ps, NULL, DSM__PAGER_RW) != DSM_ECLOSED ||
	    dsm__pager_protect(T.pg, T.base, 8 * T.ps, DSM__PAGER_READ) != DSM_ECLOSED ||
	    dsm__pager_drop(T.pg, T.base, 8 * T.ps) != DSM_ECLOSED ||
	    dsm__pager_access(T.pg, T.base + 3 * T.ps) != DSM_ECLOSED ||
	    dsm__pager_create(&cfg, &p) != DSM_ECLOSED)
		_exit(2);
	/* stop and destroy here must leave the parent's objects alone (the
	 * uffd stop would unregister the parent's region and wake its
	 * threads through the shared eventfd) */
	dsm__pager_stop(T.pg);
	dsm__pager_destroy(T.pg);
	_exit(0);
}

/* Destroys its copy, then touches: still the message. */
static void child_destroy_then_touch(void)
{
	dsm__pager_destroy(T.pg);
	(void)*(volatile char *)(T.base + 3 * T.ps);
}

/* A grandchild that touches gets the same; the child itself exits 0. */
static void child_grandchild(void)
{
	char err[512];
	pid_t pid;
	int st = fork_run(child_load_present, &pid, err, sizeof(err));

	_exit(WIFEXITED(st) && WEXITSTATUS(st) == DSM_EXIT_FAULT &&
	      strstr(err, "a forked child is not a node") ? 0 : 3);
}

/* The message a child must print for a touch at addr. */
static void want_message(const char *err, uintptr_t addr, pid_t pid)
{
	char want[256];

	snprintf(want, sizeof(want), "libdsm: shared memory at %#lx touched in process %d, "
		 "a child forked after dsm_init: a forked child is not a node and cannot use "
		 "shared memory\n", (unsigned long)addr, (int)pid);
	ck_assert_msg(!strcmp(err, want), "stderr: '%s', expected '%s'", err, want);
}

/* A child forked after the pager exists is not a node: a load or store of
 * the region (present in the parent or not) ends it with DSM_EXIT_FAULT
 * and one clear line; a child that does not touch it exits normally; the
 * parent keeps its pages and keeps serving faults. */
START_TEST(pager_fork_child)
{
	uint64_t buf[8192 / 8];
	char err[1024];
	pid_t pid;
	int st;

	SETUP(_i);
	fill(buf, 3, 4, T.ps);
	ck_assert_int_eq(dsm__pager_install(T.pg, T.base + 3 * T.ps, buf, DSM__PAGER_READ), 0);
	*(volatile uint64_t *)(T.base + 4 * T.ps) = 99; /* write fault: RW */
	reset_counts();

	st = fork_run(child_load_present, &pid, err, sizeof(err));
	printf("%s child load: status %#x, stderr: %s", backend_name[_i], st, err);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == DSM_EXIT_FAULT, "status %#x", st);
	want_message(err, (uintptr_t)T.base + 3 * T.ps + 5, pid);

	st = fork_run(child_store_absent, &pid, err, sizeof(err));
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == DSM_EXIT_FAULT, "status %#x", st);
	want_message(err, (uintptr_t)T.base + 1000 * T.ps + 8, pid);

	st = fork_run(child_no_touch, &pid, err, sizeof(err));
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, stderr: %s", st, err);

	st = fork_run(child_destroy_then_touch, &pid, err, sizeof(err));
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == DSM_EXIT_FAULT, "status %#x", st);
	want_message(err, (uintptr_t)T.base + 3 * T.ps, pid);

	st = fork_run(child_grandchild, &pid, err, sizeof(err));
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, stderr: %s", st, err);

	/* the parent: not forked, pages intact, no callback ran for the
	 * children, faults still served, ranges still changed */
	ck_assert(!dsm__pager_forked());
	ck_assert_int_eq(N(reads) + N(writes_present) + N(writes_absent), 0);
	check_page(T.base + 3 * T.ps, 3, 4);
	ck_assert_uint_eq(*(volatile uint64_t *)(T.base + 4 * T.ps), 99);
	ck_assert_int_eq(dsm__pager_access(T.pg, T.base + 4 * T.ps), DSM__PAGER_RW);
	check_page(T.base + 5 * T.ps, 5, 1);
	ck_assert_int_eq(N(reads), 1);
	ck_assert_int_eq(dsm__pager_protect(T.pg, T.base, 8 * T.ps, DSM__PAGER_READ), 0);
	*(volatile uint64_t *)(T.base + 4 * T.ps) = 100;
	ck_assert_int_eq(N(writes_present), 1);
	ck_assert_int_eq(dsm__pager_drop(T.pg, T.base + 3 * T.ps, T.ps), 0);
	check_page(T.base + 3 * T.ps, 3, 1);
}
END_TEST

/* fork + exec, system() and popen() (posix_spawn) work next to a pager,
 * and leave it working. */
START_TEST(pager_fork_exec)
{
	char line[64] = "";
	FILE *f;
	pid_t pid;
	int st;

	SETUP(_i);
	ck_assert_uint_eq(*(volatile uint64_t *)(T.base + 2 * T.ps), word_of(2, 1, 0));
	fflush(stdout);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		execl("/bin/sh", "sh", "-c", "exit 5", (char *)NULL);
		_exit(127);
	}
	st = child_status(pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 5, "fork+exec: status %#x", st);
	st = system("exit 3");
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 3, "system: status %#x", st);
	f = popen("echo hello", "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	ck_assert_int_eq(pclose(f), 0);
	ck_assert_str_eq(line, "hello\n");
	ck_assert(!dsm__pager_forked());
	check_page(T.base + 2 * T.ps, 2, 1);
	check_page(T.base + 7 * T.ps, 7, 1);
	ck_assert_int_eq(N(reads), 2);
}
END_TEST

/* ---- configuration and selection -------------------------------------- */

START_TEST(pager_config)
{
	struct dsm__pager_cfg cfg = { .read_fault = read_cb, .write_fault = write_cb, .arg = &T };
	struct dsm__pager *other;
	uint64_t v;
	void *blocker;

	ck_assert_int_eq(dsm__pager_parse_size("64G", &v), 0);
	ck_assert_uint_eq(v, 64ull << 30);
	ck_assert_int_eq(dsm__pager_parse_size("3m", &v), 0);
	ck_assert_uint_eq(v, 3ull << 20);
	ck_assert_int_eq(dsm__pager_parse_size("1TiB", &v), 0);
	ck_assert_uint_eq(v, 1ull << 40);
	ck_assert_int_eq(dsm__pager_parse_size("0x200000000000", &v), 0);
	ck_assert_uint_eq(v, 0x200000000000ull);
	ck_assert_int_eq(dsm__pager_parse_size("4096", &v), 0);
	ck_assert_uint_eq(v, 4096);
	ck_assert_int_eq(dsm__pager_parse_size("12Q", &v), DSM_ECONFIG);
	ck_assert_int_eq(dsm__pager_parse_size("G", &v), DSM_ECONFIG);
	ck_assert_int_eq(dsm__pager_parse_size("99999999999T", &v), DSM_ECONFIG);
	ck_assert_int_eq(dsm__pager_parse_size("-1", &v), DSM_ECONFIG);

	/* environment */
	setenv("DSM_HEAP_SIZE", "2G", 1);
	setenv("DSM_PAGER", backend_name[_i], 1);
	setenv("DSM_PAGER_THREADS", "3", 1);
	ck_assert_int_eq(dsm__pager_cfg_from_env(&cfg), 0);
	ck_assert_uint_eq(cfg.size, 2ull << 30);
	ck_assert_str_eq(cfg.backend, backend_name[_i]);
	ck_assert_int_eq(cfg.threads, 3);
	ck_assert_uint_eq(cfg.base, DSM__PAGER_DEFAULT_BASE);
	setenv("DSM_HEAP_SIZE", "lots", 1);
	ck_assert_int_eq(dsm__pager_cfg_from_env(&cfg), DSM_ECONFIG);
	unsetenv("DSM_HEAP_SIZE");
	setenv("DSM_PAGER", "mmu", 1);
	cfg = (struct dsm__pager_cfg){ .read_fault = read_cb, .write_fault = write_cb, .spin_ns = -1 };
	ck_assert_int_eq(dsm__pager_create(&cfg, &other), DSM_ECONFIG);
	unsetenv("DSM_PAGER");
	unsetenv("DSM_PAGER_THREADS");
	cfg.backend = "auto";
	ck_assert_int_eq(dsm__pager_create(&cfg, &T.pg), 0);
	ck_assert_str_eq(dsm__pager_backend(T.pg), backend_ok[0] ? "uffd" : "sigsegv");
	ck_assert_uint_eq(dsm__pager_size(T.pg), DSM__PAGER_DEFAULT_SIZE);
	/* one pager per process */
	ck_assert_int_eq(dsm__pager_create(&cfg, &other), DSM_EBUSY);
	dsm__pager_destroy(T.pg);
	T.pg = NULL;
	if (!backend_ok[_i])
		return;

	/* the address is taken: a clear error naming DSM_BASE */
	blocker = mmap((void *)(DSM__PAGER_DEFAULT_BASE + (1ull << 30)), 4096, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	ck_assert_ptr_eq(blocker, (void *)(DSM__PAGER_DEFAULT_BASE + (1ull << 30)));
	cfg.backend = backend_name[_i];
	{
		int fds[2], saved = dup(2), r;
		char msg[512] = "";
		ssize_t n;

		ck_assert_int_eq(pipe(fds), 0);
		dup2(fds[1], 2);
		r = dsm__pager_create(&cfg, &other);
		dup2(saved, 2);
		close(saved);
		close(fds[1]);
		n = read(fds[0], msg, sizeof(msg) - 1);
		close(fds[0]);
		msg[n > 0 ? n : 0] = 0;
		printf("%s taken address: %s", backend_name[_i], msg);
		ck_assert_int_eq(r, DSM_EADDRINUSE);
		ck_assert_ptr_nonnull(strstr(msg, "DSM_BASE"));
	}
	munmap(blocker, 4096);
	/* DSM_BASE moves the region */
	setenv("DSM_BASE", "0x300000000000", 1);
	ck_assert_int_eq(dsm__pager_create(&cfg, &T.pg), 0);
	ck_assert_ptr_eq(dsm__pager_base(T.pg), (void *)0x300000000000ull);
	unsetenv("DSM_BASE");
}
END_TEST

/* Forbid userfaultfd(2) in this process (seccomp: ENOSYS). */
static int deny_userfaultfd(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = DSM__ARRAY_SIZE(f), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

START_TEST(pager_select_without_uffd)
{
	pid_t pid;
	int st;

	if (_i)
		return; /* selection is tested once */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		struct dsm__pager_cfg cfg = { .read_fault = read_cb, .write_fault = write_cb,
					      .spin_ns = -1 };
		struct dsm__pager *p = NULL;

		no_core();
		if (deny_userfaultfd())
			_exit(10);
		cfg.backend = "uffd"; /* explicit and unavailable: an error */
		if (dsm__pager_create(&cfg, &p) != DSM_ENOTSUP)
			_exit(11);
		cfg.backend = "auto"; /* auto falls back */
		if (dsm__pager_create(&cfg, &p) != 0)
			_exit(12);
		if (strcmp(dsm__pager_backend(p), "sigsegv"))
			_exit(13);
		dsm__pager_destroy(p);
		_exit(0);
	}
	st = child_status(pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}
END_TEST

/* ---- many threads, many pages ----------------------------------------- */

#define ST_THREADS 16
#define ST_PAGES 64

static atomic_int st_stop;
static atomic_long st_bad;

static unsigned rnd(unsigned *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Phase 1 reader: random loads, checked, while another thread drops. */
static void *st_reader(void *p)
{
	unsigned x = (unsigned)(uintptr_t)p * 2654435761u + 1;

	while (!atomic_load(&st_stop)) {
		size_t pg = rnd(&x) % ST_PAGES, i = rnd(&x) % (T.ps / 8);
		uint64_t v = ((volatile uint64_t *)(T.base + pg * T.ps))[i];

		if (v != word_of(pg, 1, i))
			atomic_fetch_add(&st_bad, 1);
	}
	return NULL;
}

/* Phase 2 writer t: stores its own word of every page, rounds times. */
static void *st_writer(void *p)
{
	size_t t = (size_t)(uintptr_t)p;

	for (uint64_t round = 1; round <= 200; round++)
		for (size_t pg = 0; pg < ST_PAGES; pg++)
			((volatile uint64_t *)(T.base + pg * T.ps))[t] = round << 8 | t;
	return NULL;
}

START_TEST(pager_many_threads)
{
	pthread_t th[ST_THREADS];
	unsigned x = 7;
	long drops = 0, downgrades = 0;
	int64_t until;

	SETUP(_i);
	atomic_store(&st_stop, 0);
	atomic_store(&st_bad, 0);
	for (size_t t = 0; t < ST_THREADS; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, st_reader, (void *)(t + 1)), 0);
	until = dsm__now_ns() + 700 * 1000000LL;
	while (dsm__now_ns() < until) {
		ck_assert_int_eq(dsm__pager_drop(T.pg, T.base + (rnd(&x) % ST_PAGES) * T.ps, T.ps), 0);
		drops++;
		if (!(drops & 7))
			sched_yield();
	}
	atomic_store(&st_stop, 1);
	for (size_t t = 0; t < ST_THREADS; t++)
		pthread_join(th[t], NULL);
	printf("%s %d readers: %d read faults, %ld drops, %ld bad loads\n", backend_name[_i],
	       ST_THREADS, N(reads), drops, atomic_load(&st_bad));
	ck_assert_int_eq(atomic_load(&st_bad), 0);
	ck_assert_int_gt(N(reads), ST_PAGES);

	/* Phase 2: writers on every page while pages are write-protected
	 * again and again behind their backs; no store may be lost. */
	ck_assert_int_eq(dsm__pager_drop(T.pg, T.base, ST_PAGES * T.ps), 0);
	reset_counts();
	for (size_t t = 0; t < ST_THREADS; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, st_writer, (void *)t), 0);
	until = dsm__now_ns() + 200 * 1000000LL;
	while (dsm__now_ns() < until) {
		ck_assert_int_eq(dsm__pager_protect(T.pg, T.base + (rnd(&x) % ST_PAGES) * T.ps,
						    T.ps, DSM__PAGER_READ), 0);
		downgrades++;
		sched_yield();
	}
	for (size_t t = 0; t < ST_THREADS; t++)
		pthread_join(th[t], NULL);
	printf("%s %d writers: %d absent + %d present write faults, %ld downgrades\n",
	       backend_name[_i], ST_THREADS, N(writes_absent), N(writes_present), downgrades);
	ck_assert_int_eq(N(writes_absent), ST_PAGES);
	ck_assert_int_eq(N(reads), 0);
	for (size_t pg = 0; pg < ST_PAGES; pg++) {
		const uint64_t *w = (const uint64_t *)(T.base + pg * T.ps);

		for (size_t t = 0; t < ST_THREADS; t++)
			ck_assert_uint_eq(w[t], (uint64_t)200 << 8 | t);
		ck_assert_uint_eq(w[ST_THREADS], word_of(pg, 1, ST_THREADS));
	}
}
END_TEST

/* With vm.unprivileged_userfaultfd = 0 an unprivileged process gets
 * userfaultfd only with UFFD_USER_MODE_ONLY: check that this run is such a
 * process, so the uffd cases above really ran unprivileged. */
START_TEST(pager_uffd_unprivileged)
{
	char v = '?';
	int fd = open("/proc/sys/vm/unprivileged_userfaultfd", O_RDONLY), u;

	if (fd >= 0) {
		if (read(fd, &v, 1) != 1)
			v = '?';
		close(fd);
	}
	if (!geteuid() || v != '0') {
		printf("uid %d, vm.unprivileged_userfaultfd=%c: nothing to check\n", (int)geteuid(), v);
		return;
	}
	u = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	ck_assert_msg(u < 0 && errno == EPERM, "userfaultfd without USER_MODE_ONLY: %d", u);
	u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
	ck_assert_int_ge(u, 0);
	close(u);
	printf("uid %d: userfaultfd needs UFFD_USER_MODE_ONLY here, and works with it\n",
	       (int)geteuid());
}
END_TEST

/* Where the callback runs: in the faulting thread with inline_faults (no
 * hand-off), on a service thread otherwise. */
START_TEST(pager_inline_thread)
{
	volatile uint64_t *p;

	SETUP(_i);
	p = (volatile uint64_t *)(T.base + 11 * T.ps);
	ck_assert_uint_eq(p[3], word_of(11, 1, 3));
	ck_assert_int_eq(N(reads), 1);
	if (_i == 2)
		ck_assert_msg(pthread_equal(T.cb_thread, pthread_self()),
			      "inline: the callback ran on another thread");
	else
		ck_assert_msg(!pthread_equal(T.cb_thread, pthread_self()),
			      "%s: the callback ran on the faulting thread", backend_name[_i]);
}
END_TEST

/* ---- main ------------------------------------------------------------- */

static Suite *pager_suite(void)
{
	Suite *s = suite_create("pager");
	TCase *tc = tcase_create("both backends");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_loop_test(tc, pager_read_fault, 0, 3);
	tcase_add_loop_test(tc, pager_write_fault_present, 0, 3);
	tcase_add_loop_test(tc, pager_write_fault_absent, 0, 3);
	tcase_add_loop_test(tc, pager_same_page_8_threads, 0, 3);
	tcase_add_loop_test(tc, pager_diff_pages_overlap, 0, 3);
	tcase_add_loop_test(tc, pager_atomic_install, 0, 3);
	tcase_add_loop_test(tc, pager_drop_refault, 0, 3);
	tcase_add_loop_test(tc, pager_transitions, 0, 3);
	tcase_add_loop_test(tc, pager_rss_sparse, 0, 2);
	tcase_add_loop_test(tc, pager_range_groups, 0, 2);
	tcase_add_loop_test(tc, pager_foreign_fault_kills, 0, 2);
	tcase_add_loop_test(tc, pager_stop_then_touch_crashes, 0, 2);
	tcase_add_loop_test(tc, pager_callback_error, 0, 3);
	tcase_add_loop_test(tc, pager_protect_failure, 0, 2);
	tcase_add_loop_test(tc, pager_drop_failure, 0, 2);
	tcase_add_loop_test(tc, pager_install_failure, 0, 2);
	tcase_add_loop_test(tc, pager_create_failure, 0, 2);
	tcase_add_loop_test(tc, pager_fork_child, 0, 2);
	tcase_add_loop_test(tc, pager_fork_exec, 0, 2);
	tcase_add_loop_test(tc, pager_config, 0, 2);
	tcase_add_loop_test(tc, pager_select_without_uffd, 0, 2);
	tcase_add_loop_test(tc, pager_many_threads, 0, 3);
	tcase_add_loop_test(tc, pager_inline_thread, 0, 3);
	tcase_add_test(tc, pager_uffd_unprivileged);
	suite_add_tcase(s, tc);
	return s;
}

static int run_suite(const char *who)
{
	SRunner *sr = srunner_create(pager_suite());
	int failed;

	printf("== pager tests %s (uid %d), backends: uffd %s, sigsegv %s\n", who, (int)getuid(),
	       backend_ok[0] ? "yes" : "NO", backend_ok[1] ? "yes" : "NO");
	fflush(stdout);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	fflush(stdout);
	return failed;
}

/* Probe each backend by name (in a child: create reserves the region). */
static void probe_backends(void)
{
	for (int b = 0; b < 2; b++) {
		struct dsm__pager_cfg cfg = { .backend = backend_name[b], .size = 1 << 20,
					      .read_fault = read_cb, .write_fault = write_cb,
					      .spin_ns = -1 };
		struct dsm__pager *p;

		backend_ok[b] = dsm__pager_create(&cfg, &p) == 0;
		if (backend_ok[b])
			dsm__pager_destroy(p);
	}
	backend_ok[2] = backend_ok[1];
}

int main(void)
{
	int failed, st;
	pid_t pid;

	setvbuf(stdout, NULL, _IOLBF, 0);
	dsm__log_init();
	probe_backends();
	failed = run_suite(geteuid() ? "unprivileged" : "as root");
	if (!geteuid()) {
		/* Again without privileges: uid/gid 65534, no capabilities. */
		pid = fork();
		if (pid < 0)
			return 1;
		if (!pid) {
			if (setgroups(0, NULL) || setgid(65534) || setuid(65534)) {
				printf("SKIP unprivileged run: cannot drop to uid 65534: %s\n",
				       strerror(errno));
				_exit(77);
			}
			/* setuid makes the process non-dumpable, which hides
			 * /proc/self/smaps_rollup; the test reads it. */
			prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
			if (chdir("/tmp"))
				_exit(1);
			probe_backends();
			_exit(run_suite("unprivileged") ? 1 : 0);
		}
		if (waitpid(pid, &st, 0) != pid)
			return 1;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
			printf("unprivileged run skipped (see above)\n");
		else if (!WIFEXITED(st) || WEXITSTATUS(st))
			failed++;
	}
	if (failed)
		return 1;
	if (!backend_ok[0] || !backend_ok[1]) {
		printf("SKIP: backend %s unavailable on this machine; the others passed\n",
		       backend_ok[0] ? "sigsegv" : "uffd");
		return 77;
	}
	return 0;
}
