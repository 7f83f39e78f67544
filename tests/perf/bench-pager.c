/*
 * Pager benchmark: the cost of a fault served by each backend when the
 * callback installs a locally prepared page (no network), next to the cost
 * of a plain first-touch fault of an anonymous page and of a 4 KiB memcpy,
 * all measured in the same run. Prints JSON lines:
 *   {"bench":"pager","metric":"uffd_read_fault","value":...,"unit":"ns",
 *    "ref":<first touch>,"ratio":value/ref}
 * Metrics: anon_first_touch, memcpy_4k, thread_wake_rtt (references: the
 * last is a futex ping-pong between two threads, the floor of any design
 * in which another thread serves the fault: it is two such wake-ups), then
 * per backend
 * <b>_read_fault (load of a NONE page -> read callback -> install READ) and
 * <b>_wp_fault (store to a READ page -> write callback -> protect RW),
 * <b>_protect_1page (dsm__pager_protect of one present page, READ and RW
 * in turn: what a release does per dirty page),
 * <b>_drop_absent_16 (dsm__pager_drop of 16 pages none of which is
 * present: no system call, the range scan alone) and
 * <b>_drop_64g_sparse (dsm__pager_drop of a whole 64 GiB region of which
 * 64 pages are present; median of 5).
 * Values are medians over BENCH_FAULTS faults (default 100000), each timed
 * alone. The pager runs with its defaults (DSM_PAGER_THREADS,
 * DSM_PAGER_SPIN_NS from the environment).
 */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "pager.h"

#define BATCH 10000 /* pages per batch; dropped between batches */

static struct dsm__pager *pg;
static size_t ps;
static char *src_page;

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static double median(int64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp64);
	return n & 1 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static void line(const char *metric, double value, double ref)
{
	printf("{\"bench\":\"pager\",\"metric\":\"%s\",\"value\":%.0f,\"unit\":\"ns\","
	       "\"ref\":%.0f,\"ratio\":%.3f}\n", metric, value, ref, value / ref);
	fflush(stdout);
}

/* Fault callbacks: install the prepared page / make the page writable. */
static int read_cb(void *arg, void *page)
{
	(void)arg;
	return dsm__pager_install(pg, page, src_page, DSM__PAGER_READ);
}

static int write_cb(void *arg, void *page, bool present)
{
	(void)arg;
	if (present)
		return dsm__pager_protect(pg, page, ps, DSM__PAGER_RW);
	return dsm__pager_install(pg, page, src_page, DSM__PAGER_RW);
}

/* Median first-touch (store) fault of an anonymous page. */
static double bench_first_touch(size_t n, int64_t *t)
{
	for (size_t done = 0; done < n; done += BATCH) {
		size_t k = DSM__MIN((size_t)BATCH, n - done);
		char *m = mmap(NULL, k * ps, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED)
			return -1;
		madvise(m, k * ps, MADV_NOHUGEPAGE);
		for (size_t i = 0; i < k; i++) {
			int64_t t0 = dsm__now_ns();

			*(volatile char *)(m + i * ps) = 1;
			t[done + i] = dsm__now_ns() - t0;
		}
		munmap(m, k * ps);
	}
	return median(t, n);
}

/* Median of 4 KiB memcpy, timed in groups of 100 (cache-warm buffers). */
static double bench_memcpy(size_t n, int64_t *t)
{
	char *a = aligned_alloc(ps, ps), *b = aligned_alloc(ps, ps);
	size_t groups = n / 100;

	memset(a, 1, ps);
	memset(b, 2, ps);
	for (size_t g = 0; g < groups; g++) {
		int64_t t0 = dsm__now_ns();

		for (int i = 0; i < 100; i++) {
			memcpy(i & 1 ? a : b, i & 1 ? b : a, ps);
			__asm__ volatile("" ::: "memory");
		}
		t[g] = (dsm__now_ns() - t0) / 100;
	}
	free(a);
	free(b);
	return median(t, groups);
}

/* Futex ping-pong between two threads: median round trip. */
static _Atomic uint32_t ping, pong;

static void *pong_thread(void *arg)
{
	size_t n = *(size_t *)arg;

	for (uint32_t i = 1; i <= n; i++) {
		while (atomic_load(&ping) != i)
			syscall(SYS_futex, &ping, FUTEX_WAIT_PRIVATE, i - 1, NULL, NULL, 0);
		atomic_store(&pong, i);
		syscall(SYS_futex, &pong, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	}
	return NULL;
}

static double bench_wake(size_t n, int64_t *t)
{
	pthread_t th;

	if (pthread_create(&th, NULL, pong_thread, &n))
		return -1;
	for (uint32_t i = 1; i <= n; i++) {
		int64_t t0 = dsm__now_ns();

		atomic_store(&ping, i);
		syscall(SYS_futex, &ping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		while (atomic_load(&pong) != i)
			syscall(SYS_futex, &pong, FUTEX_WAIT_PRIVATE, i - 1, NULL, NULL, 0);
		t[i - 1] = dsm__now_ns() - t0;
	}
	pthread_join(th, NULL);
	return median(t, n);
}

/* Read faults and write-protect faults through backend name. */
static int bench_backend(const char *name, size_t n, int64_t *t, double ref)
{
	struct dsm__pager_cfg cfg;
	char metric[64];
	char *base;
	int r;

	r = dsm__pager_cfg_from_env(&cfg);
	if (r)
		return r;
	cfg.backend = name;
	cfg.size = (size_t)1 << 30;
	cfg.read_fault = read_cb;
	cfg.write_fault = write_cb;
	r = dsm__pager_create(&cfg, &pg);
	if (r) {
		fprintf(stderr, "bench-pager: backend %s unavailable: %s\n", name, dsm_strerror(r));
		return r;
	}
	r = dsm__pager_start(pg);
	if (r)
		goto out;
	base = dsm__pager_base(pg);

	/* read fault: load of a NONE page */
	for (size_t done = 0; done < n; done += BATCH) {
		size_t k = DSM__MIN((size_t)BATCH, n - done);

		for (size_t i = 0; i < k; i++) {
			int64_t t0 = dsm__now_ns();

			(void)*(volatile char *)(base + i * ps);
			t[done + i] = dsm__now_ns() - t0;
		}
		dsm__pager_drop(pg, base, k * ps);
	}
	snprintf(metric, sizeof(metric), "%s_read_fault", name);
	line(metric, median(t, n), ref);

	/* write-protect fault: store to a READ page */
	for (size_t done = 0; done < n; done += BATCH) {
		size_t k = DSM__MIN((size_t)BATCH, n - done);

		for (size_t i = 0; i < k; i++) {
			r = dsm__pager_install(pg, base + i * ps, src_page, DSM__PAGER_READ);
			if (r)
				goto out;
		}
		for (size_t i = 0; i < k; i++) {
			int64_t t0 = dsm__now_ns();

			*(volatile char *)(base + i * ps) = 2;
			t[done + i] = dsm__now_ns() - t0;
		}
		dsm__pager_drop(pg, base, k * ps);
	}
	snprintf(metric, sizeof(metric), "%s_wp_fault", name);
	line(metric, median(t, n), ref);

	/* protect of one present page, each call timed alone */
	r = dsm__pager_install(pg, base, src_page, DSM__PAGER_RW);
	if (r)
		goto out;
	for (size_t i = 0; i < n; i++) {
		int64_t t0 = dsm__now_ns();

		r = dsm__pager_protect(pg, base, ps, i & 1 ? DSM__PAGER_RW : DSM__PAGER_READ);
		t[i] = dsm__now_ns() - t0;
		if (r)
			goto out;
	}
	snprintf(metric, sizeof(metric), "%s_protect_1page", name);
	line(metric, median(t, n), ref);

	/* drop of 16 absent pages (next to a present one), in groups of 100 */
	for (size_t g = 0; g < n / 100; g++) {
		int64_t t0 = dsm__now_ns();

		for (int i = 0; i < 100; i++)
			dsm__pager_drop(pg, base + ps, 16 * ps);
		t[g] = (dsm__now_ns() - t0) / 100;
	}
	snprintf(metric, sizeof(metric), "%s_drop_absent_16", name);
	line(metric, median(t, n / 100), ref);
out:
	dsm__pager_destroy(pg);
	pg = NULL;
	return r;
}

/* Drop of a whole 64 GiB region with 64 pages present (one per GiB). */
static int bench_big_drop(const char *name, int64_t *t, double ref)
{
	struct dsm__pager_cfg cfg;
	char metric[64];
	char *base;
	int r;

	r = dsm__pager_cfg_from_env(&cfg);
	if (r)
		return r;
	cfg.backend = name;
	cfg.size = (size_t)64 << 30;
	cfg.read_fault = read_cb;
	cfg.write_fault = write_cb;
	r = dsm__pager_create(&cfg, &pg);
	if (r)
		return r;
	base = dsm__pager_base(pg);
	for (int k = 0; k < 5 && !r; k++) {
		int64_t t0;

		for (size_t g = 0; g < 64 && !r; g++)
			r = dsm__pager_install(pg, base + (g << 30) + 777 * ps, src_page,
					       DSM__PAGER_READ);
		t0 = dsm__now_ns();
		if (!r)
			r = dsm__pager_drop(pg, base, cfg.size);
		t[k] = dsm__now_ns() - t0;
	}
	if (!r) {
		snprintf(metric, sizeof(metric), "%s_drop_64g_sparse", name);
		line(metric, median(t, 5), ref);
	}
	dsm__pager_destroy(pg);
	pg = NULL;
	return r;
}

int main(void)
{
	long nf;
	int64_t *t;
	double touch, cp;
	int failed = 0;

	dsm__log_init();
	if (dsm__env_long("BENCH_FAULTS", 100000, 1000, 100000000, &nf))
		return 2;
	ps = (size_t)sysconf(_SC_PAGESIZE);
	t = malloc((size_t)nf * sizeof(*t));
	src_page = aligned_alloc(ps, ps);
	if (!t || !src_page)
		return 2;
	memset(src_page, 0x5a, ps);

	touch = bench_first_touch((size_t)nf, t);
	line("anon_first_touch", touch, touch);
	cp = bench_memcpy((size_t)nf, t);
	line("memcpy_4k", cp, touch);
	line("thread_wake_rtt", bench_wake((size_t)nf, t), touch);
	if (bench_backend("uffd", (size_t)nf, t, touch))
		failed++;
	if (bench_backend("sigsegv", (size_t)nf, t, touch))
		failed++;
	if (bench_big_drop("uffd", t, touch) || bench_big_drop("sigsegv", t, touch))
		failed++;
	free(t);
	free(src_page);
	return failed ? 1 : 0;
}
