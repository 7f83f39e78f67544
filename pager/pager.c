/*
 * The pager object: backend selection (DSM_PAGER), configuration, the
 * per-page state machine shared by the backends, the run-building of
 * protect/drop over ranges, and the fatal handler. The backends (uffd.c,
 * sigsegv.c) only make system calls. See pager.h for the contract and
 * pager-backend.h for the state word.
 */
#include "pager-backend.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

struct dsm__pager *_Atomic dsm__pager_live;

/* Probe order for auto; the always-built fallback last. */
static const struct dsm__pager_ops *const backends[] = {
	&dsm__pager_uffd_ops,
	&dsm__pager_sigsegv_ops,
};

/* ---- futex ------------------------------------------------------------ */

void dsm__pager_futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

void dsm__pager_futex_wake(_Atomic uint32_t *w, int n)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* ---- fatal handler ---------------------------------------------------- */

static void default_fatal(void *addr, int err);
static _Atomic(dsm__pager_fatal_fn) fatal_fn = default_fatal;

/* Write a whole string to fd 2 without stdio (its lock may be held by a
 * thread that is blocked in a fault). */
static void say(const char *s)
{
	size_t n = strlen(s);

	while (n) {
		ssize_t r = write(2, s, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		s += r;
		n -= (size_t)r;
	}
}

static void default_fatal(void *addr, int err)
{
	char line[256];

	snprintf(line, sizeof(line),
		 "libdsm: fatal: the load/store at %p cannot be served: %s (%d); "
		 "ending the process with exit status %d\n",
		 addr, dsm_strerror(err), err, DSM_EXIT_FAULT);
	say(line);
}

void dsm__pager_set_fatal_handler(dsm__pager_fatal_fn fn)
{
	atomic_store(&fatal_fn, fn ? fn : default_fatal);
}

_Noreturn void dsm__pager_fatal(void *addr, int err)
{
	dsm__pager_fatal_fn fn = atomic_load(&fatal_fn);

	fn(addr, err);
	if (fn != default_fatal)
		say("libdsm: fatal: the fault handler returned; a load/store "
		    "cannot complete, ending the process\n");
	/* Keep what the program printed, unless a thread blocked in a fault
	 * holds stdout. */
	if (ftrylockfile(stdout) == 0) {
		fflush_unlocked(stdout);
		funlockfile(stdout);
	}
	_exit(DSM_EXIT_FAULT);
}

/* ---- configuration ---------------------------------------------------- */

int dsm__pager_parse_size(const char *s, uint64_t *out)
{
	static const char sfx[] = "KMGT";
	unsigned long long v;
	unsigned shift = 0;
	const char *p;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return DSM_ECONFIG;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return DSM_ECONFIG;
	if (*end) {
		p = strchr(sfx, end[0] & ~0x20);
		if (!end[0] || !p)
			return DSM_ECONFIG;
		shift = 10u * (unsigned)(p - sfx + 1);
		end++;
		if (*end && strcasecmp(end, "iB") && strcasecmp(end, "B"))
			return DSM_ECONFIG;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return DSM_ECONFIG;
	*out = (uint64_t)v << shift;
	return 0;
}

int dsm__pager_cfg_from_env(struct dsm__pager_cfg *cfg)
{
	const char *v;
	uint64_t x;
	long l;
	int r;

	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = dsm__env_str("DSM_PAGER");
	if (!cfg->backend)
		cfg->backend = "auto";
	v = dsm__env_str("DSM_BASE");
	if (v) {
		if (dsm__pager_parse_size(v, &x) || !x || x >= ((uint64_t)1 << 57)) {
			DSM__ERR("DSM_BASE: '%s' is not an address (e.g. 0x200000000000)", v);
			return DSM_ECONFIG;
		}
		cfg->base = (uintptr_t)x;
	} else {
		cfg->base = DSM__PAGER_DEFAULT_BASE;
	}
	v = dsm__env_str("DSM_HEAP_SIZE");
	if (v) {
		if (dsm__pager_parse_size(v, &x) || !x || x > ((uint64_t)1 << 46)) {
			DSM__ERR("DSM_HEAP_SIZE: '%s' is not a size between 1 and 64T "
				 "(suffixes K, M, G, T)", v);
			return DSM_ECONFIG;
		}
		cfg->size = (size_t)x;
	} else {
		cfg->size = DSM__PAGER_DEFAULT_SIZE;
	}
	r = dsm__env_long("DSM_PAGER_THREADS", DSM__PAGER_DEFAULT_THREADS, 1,
			  DSM__PAGER_MAX_THREADS, &l);
	if (r)
		return r;
	cfg->threads = (int)l;
	r = dsm__env_long("DSM_PAGER_SPIN_NS", 0, 0, 1000000000L, &l);
	if (r)
		return r;
	cfg->spin_ns = l;
	r = dsm__env_bool("DSM_PAGER_INLINE", true, &cfg->inline_faults);
	if (r)
		return r;
	return 0;
}

static const struct dsm__pager_ops *find_backend(const char *name)
{
	for (size_t i = 0; i < DSM__ARRAY_SIZE(backends); i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

/* Pick the backend: explicit name must probe OK, auto takes the first that
 * does. */
static int choose(const char *name, const struct dsm__pager_ops **out)
{
	const struct dsm__pager_ops *ops;
	int r;

	if (strcmp(name, "auto")) {
		ops = find_backend(name);
		if (!ops) {
			DSM__ERR("DSM_PAGER: '%s' is not one of auto, uffd, sigsegv", name);
			return DSM_ECONFIG;
		}
		r = ops->probe();
		if (r) {
			DSM__ERR("DSM_PAGER=%s: backend unavailable here: %s",
				 name, dsm_strerror(r));
			return DSM_ENOTSUP;
		}
		*out = ops;
		return 0;
	}
	for (size_t i = 0; i < DSM__ARRAY_SIZE(backends); i++) {
		r = backends[i]->probe();
		if (!r) {
			DSM__DEBUG("pager: DSM_PAGER=auto chose %s", backends[i]->name);
			*out = backends[i];
			return 0;
		}
		DSM__DEBUG("pager: %s unavailable (%s), trying the next backend",
			   backends[i]->name, dsm_strerror(r));
	}
	DSM__ERR("DSM_PAGER=auto: no page-fault backend works here");
	return DSM_ENOTSUP;
}

int dsm__pager_map_region(struct dsm__pager *pg, int prot, int flags, int fd)
{
	void *want = (void *)pg->base;
	void *p = DSM__SYS(mmap)(want, pg->size, prot,
				 flags | MAP_FIXED_NOREPLACE | MAP_NORESERVE, fd, 0);

	if (p == MAP_FAILED) {
		int e = errno;

		if (e == EEXIST) {
			DSM__ERR("DSM_BASE=%#lx: the address range %#lx..%#lx (DSM_HEAP_SIZE=%zuM) "
				 "is already mapped in this process; set DSM_BASE (the same on "
				 "every node) to a free range", (unsigned long)pg->base,
				 (unsigned long)pg->base, (unsigned long)(pg->base + pg->size),
				 pg->size >> 20);
			return DSM_EADDRINUSE;
		}
		DSM__ERR("DSM_BASE=%#lx, DSM_HEAP_SIZE=%zuM: cannot reserve the region: %s",
			 (unsigned long)pg->base, pg->size >> 20, strerror(e));
		return e == ENOMEM || e == EINVAL ? DSM_EADDRINUSE : DSM_ESYS;
	}
	if (p != want) {
		/* A kernel without MAP_FIXED_NOREPLACE took it as a hint. */
		DSM__SYS(munmap)(p, pg->size);
		DSM__ERR("DSM_BASE=%#lx: the range is taken (the kernel offered %p); set "
			 "DSM_BASE to a free range", (unsigned long)pg->base, p);
		return DSM_EADDRINUSE;
	}
	DSM__SYS(madvise)(p, pg->size, MADV_DONTFORK);
	DSM__SYS(madvise)(p, pg->size, MADV_NOHUGEPAGE);
	return 0;
}

/* ---- lifecycle -------------------------------------------------------- */

int dsm__pager_create(const struct dsm__pager_cfg *cfg, struct dsm__pager **out)
{
	struct dsm__pager_cfg env;
	struct dsm__pager *pg, *expect = NULL;
	const struct dsm__pager_ops *ops;
	long ps = sysconf(_SC_PAGESIZE);
	size_t ngroups;
	int r;

	if (!cfg || !out || !cfg->read_fault || !cfg->write_fault)
		return DSM_EINVAL;
	if (dsm__pager_child()) {
		DSM__ERR("pager: this process was forked from a node after dsm_init: "
			 "a forked child is not a node");
		return DSM_ECLOSED;
	}
	r = dsm__pager_fork_init();
	if (r)
		return r;
	r = dsm__pager_cfg_from_env(&env);
	if (r)
		return r;
	r = choose(cfg->backend ? cfg->backend : env.backend, &ops);
	if (r)
		return r;
	pg = calloc(1, sizeof(*pg));
	if (!pg)
		return DSM_ENOMEM;
	pg->ops = ops;
	pg->pgsz = (size_t)ps;
	pg->pgshift = (unsigned)__builtin_ctzl((unsigned long)ps);
	pg->base = cfg->base ? cfg->base : env.base;
	pg->size = cfg->size ? cfg->size : env.size;
	pg->size = (pg->size + pg->pgsz - 1) & ~(pg->pgsz - 1);
	pg->npages = pg->size >> pg->pgshift;
	pg->nthreads = cfg->threads > 0 ? DSM__MIN(cfg->threads, DSM__PAGER_MAX_THREADS)
					: env.threads;
	pg->spin_ns = cfg->spin_ns >= 0 ? cfg->spin_ns : env.spin_ns;
	pg->inline_faults = cfg->inline_faults;
	pg->read_fault = cfg->read_fault;
	pg->write_fault = cfg->write_fault;
	pg->arg = cfg->arg;
	if (pg->base & (pg->pgsz - 1)) {
		DSM__ERR("DSM_BASE: %#lx is not page aligned", (unsigned long)pg->base);
		r = DSM_EINVAL;
		goto fail_cfg;
	}
	if (!atomic_compare_exchange_strong(&dsm__pager_live, &expect, pg)) {
		DSM__ERR("pager: a pager already exists in this process");
		r = DSM_EBUSY;
		goto fail_cfg;
	}
	pg->st = DSM__SYS(mmap)(NULL, pg->npages * sizeof(*pg->st), PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (pg->st == MAP_FAILED) {
		r = DSM_ENOMEM;
		goto fail_st;
	}
	DSM__SYS(madvise)(pg->st, pg->npages * sizeof(*pg->st), MADV_DONTFORK);
	pg->gshift = pg->pgshift - (unsigned)__builtin_ctz(sizeof(*pg->st));
	ngroups = (pg->npages + ((size_t)1 << pg->gshift) - 1) >> pg->gshift;
	pg->used = calloc((ngroups + 63) / 64, sizeof(*pg->used));
	if (!pg->used) {
		r = DSM_ENOMEM;
		goto fail_used;
	}
	pg->zero = DSM__SYS(mmap)(NULL, pg->pgsz, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pg->zero == MAP_FAILED) {
		r = DSM_ENOMEM;
		goto fail_zero;
	}
	r = ops->reserve(pg);
	if (r)
		goto fail_reserve;
	DSM__DEBUG("pager: %s backend, region %#lx..%#lx (%zu MiB), %d service threads",
		   ops->name, (unsigned long)pg->base, (unsigned long)(pg->base + pg->size),
		   pg->size >> 20, pg->nthreads);
	*out = pg;
	return 0;

fail_reserve:
	DSM__SYS(munmap)((void *)pg->zero, pg->pgsz);
fail_zero:
	free(pg->used);
fail_used:
	DSM__SYS(munmap)(pg->st, pg->npages * sizeof(*pg->st));
fail_st:
	atomic_store(&dsm__pager_live, NULL);
fail_cfg:
	free(pg);
	return r;
}

int dsm__pager_start(struct dsm__pager *pg)
{
	int r;

	if (!pg || pg->started)
		return DSM_EINVAL;
	if (dsm__pager_child())
		return DSM_ECLOSED;
	r = pg->ops->start(pg);
	if (r)
		return r;
	pg->started = 1;
	return 0;
}

void dsm__pager_stop(struct dsm__pager *pg)
{
	if (!pg || !pg->started || pg->stopped)
		return;
	/* In a forked child the threads are the parent's and the backend's
	 * descriptors act on the parent's objects: nothing to stop here. */
	if (!dsm__pager_child())
		pg->ops->stop(pg);
	pg->stopped = 1;
}

void dsm__pager_destroy(struct dsm__pager *pg)
{
	if (!pg)
		return;
	dsm__pager_stop(pg);
	pg->ops->release(pg); /* in a forked child: only the child's copies */
	if (dsm__pager_child())
		dsm__pager_fork_guard();
	DSM__SYS(munmap)((void *)pg->zero, pg->pgsz);
	free(pg->used);
	DSM__SYS(munmap)(pg->st, pg->npages * sizeof(*pg->st));
	atomic_store(&dsm__pager_live, NULL);
	free(pg);
}

void *dsm__pager_base(const struct dsm__pager *pg)
{
	return (void *)pg->base;
}

size_t dsm__pager_size(const struct dsm__pager *pg)
{
	return pg->size;
}

size_t dsm__pager_page_size(const struct dsm__pager *pg)
{
	return pg->pgsz;
}

const char *dsm__pager_backend(const struct dsm__pager *pg)
{
	return pg->ops->name;
}

void dsm__pager_get_stats(const struct dsm__pager *pg, struct dsm__pager_stats *o)
{
	o->read_faults = atomic_load_explicit(&pg->cnt.read_faults, memory_order_relaxed);
	o->write_faults = atomic_load_explicit(&pg->cnt.write_faults, memory_order_relaxed);
	o->joined = atomic_load_explicit(&pg->cnt.joined, memory_order_relaxed);
	o->stale = atomic_load_explicit(&pg->cnt.stale, memory_order_relaxed);
	o->installs = atomic_load_explicit(&pg->cnt.installs, memory_order_relaxed);
	o->drops = atomic_load_explicit(&pg->cnt.drops, memory_order_relaxed);
	o->protects = atomic_load_explicit(&pg->cnt.protects, memory_order_relaxed);
}

/* ---- used groups ------------------------------------------------------ */

/*
 * pg->used (see pager-backend.h): bit g is set before any page of group g
 * first leaves NONE and is never cleared, so that range operations and
 * dsm__pager_access() need not read (and so commit) the state words of
 * groups no page of which was ever installed.
 *
 * Why skipping a group whose bit reads clear is right, with concurrent
 * calls. A page leaves NONE only through dsm__pager_install: protect and
 * drop change present pages only, and the fault paths (uffd serve(), the
 * SIGSEGV handler) set FAULT/SKIP/WAIT on the faulting page's word, never
 * ACC. Install sets the bit (a seq_cst RMW, or an acquire load that sees it
 * set by an earlier RMW) before its CAS that takes OP, which comes before
 * the CAS that records the new ACC. So if a scanner's seq_cst load reads
 * the bit clear, that load precedes the setting RMW in the single order of
 * seq_cst operations, hence every OP and ACC change in the group: at that
 * moment every page of the group was NONE with OP clear, which is what
 * reading their words would have found, and protect/drop leave NONE pages
 * alone (FAULT bits do not matter to them). The scan of the group is thus
 * linearised at the bit's load, as a word-by-word scan is linearised page
 * by page. An install racing with the scan is ordered after it (as if it
 * came a moment later); an install that happened before the scan (it
 * returned, then the installing thread synchronised with the scanning one)
 * is seen: the bit was set before install returned, and coherence makes
 * the scanner read it set. The bit is not cleared when the pages are
 * dropped: the group's page of state words stays committed (1/1024 of
 * what its pages held when present), and clearing would race with
 * installs.
 */

static bool group_used(const struct dsm__pager *pg, size_t g)
{
	return atomic_load(&pg->used[g >> 6]) >> (g & 63) & 1;
}

/* Before page idx first leaves NONE. Any thread; once per group it is an
 * atomic RMW, afterwards one load. */
static void group_mark(struct dsm__pager *pg, size_t idx)
{
	size_t g = idx >> pg->gshift;
	uint64_t bit = (uint64_t)1 << (g & 63);

	if (!(atomic_load_explicit(&pg->used[g >> 6], memory_order_acquire) & bit))
		atomic_fetch_or(&pg->used[g >> 6], bit);
}

/* The end of the unused groups from page idx on, at most last: idx itself
 * if idx's group is used, else the first page of the next used group (or
 * last). */
static size_t unused_end(const struct dsm__pager *pg, size_t idx, size_t last)
{
	size_t g = idx >> pg->gshift, end;
	uint64_t bits = atomic_load(&pg->used[g >> 6]) >> (g & 63);

	if (bits & 1)
		return idx;
	/* groups g .. g+k-1 unused, k up to the next set bit of the word */
	end = (g + (bits ? (size_t)__builtin_ctzll(bits) : 64 - (g & 63))) << pg->gshift;
	return DSM__MIN(end, last);
}

/* ---- per-page state --------------------------------------------------- */

/* Take OP on page idx, waiting (yield) while another call holds it. With
 * present_only, leave NONE pages alone and return false for them; with
 * skip_acc >= 0, also leave pages whose access is already skip_acc. Returns
 * true with OP held. Any thread (never the SIGSEGV handler). */
static inline bool op_claim(struct dsm__pager *pg, size_t idx, bool present_only,
			    int skip_acc, uint32_t *state)
{
	_Atomic uint32_t *w = &pg->st[idx];
	uint32_t s = atomic_load(w);
	int spins = 0;

	for (;;) {
		/* Wait for the other call first: ACC is only final without OP. */
		if (s & DSM__PS_OP) {
			if (++spins > 64)
				sched_yield();
			s = atomic_load(w);
			continue;
		}
		if (present_only && (s & DSM__PS_ACC) == DSM__PAGER_NONE)
			return false;
		if (skip_acc >= 0 && (int)(s & DSM__PS_ACC) == skip_acc)
			return false;
		if (atomic_compare_exchange_weak(w, &s, s | DSM__PS_OP)) {
			*state = s | DSM__PS_OP;
			return true;
		}
	}
}

/* Release OP on page idx with access acc; wake sleepers. */
static void op_release(struct dsm__pager *pg, size_t idx, unsigned acc)
{
	_Atomic uint32_t *w = &pg->st[idx];
	uint32_t s = atomic_load(w), n;

	do {
		n = (s & ~(DSM__PS_OP | DSM__PS_ACC | DSM__PS_WAIT)) | acc;
	} while (!atomic_compare_exchange_weak(w, &s, n));
	if (s & DSM__PS_WAIT)
		dsm__pager_futex_wake(w, INT_MAX);
}

uint32_t dsm__pager_fault_run(struct dsm__pager *pg, size_t idx, int kind)
{
	void *page = (void *)dsm__pager_addr(pg, idx);
	_Atomic uint32_t *w = &pg->st[idx];
	uint32_t old;
	int r;

	if (kind == DSM__PAGER_K_READ) {
		atomic_fetch_add_explicit(&pg->cnt.read_faults, 1, memory_order_relaxed);
		r = pg->read_fault(pg->arg, page);
	} else {
		atomic_fetch_add_explicit(&pg->cnt.write_faults, 1, memory_order_relaxed);
		r = pg->write_fault(pg->arg, page, kind == DSM__PAGER_K_WRITE_PRESENT);
	}
	if (r < 0)
		dsm__pager_fatal(page, r); /* the access cannot complete; no retry */
	old = atomic_fetch_and(w, ~(DSM__PS_FAULT | DSM__PS_SKIP | DSM__PS_WAIT));
	if (old & DSM__PS_WAIT)
		dsm__pager_futex_wake(w, INT_MAX);
	return old;
}

/* ---- page operations -------------------------------------------------- */

/* Is [addr, addr+len) a non-empty, page-aligned range of the region? */
static bool range_ok(const struct dsm__pager *pg, uintptr_t a, size_t len)
{
	return pg && len && !(a & (pg->pgsz - 1)) && !(len & (pg->pgsz - 1)) &&
	       a >= pg->base && a - pg->base <= pg->size && len <= pg->size - (a - pg->base);
}

int dsm__pager_install_run(struct dsm__pager *pg, void *page, const void *src, size_t n,
			   int access)
{
	uintptr_t a = (uintptr_t)page;
	size_t idx, i;
	uint32_t s;
	int r;

	if (!pg || !n || !src || n > pg->size >> pg->pgshift || !range_ok(pg, a, n << pg->pgshift) ||
	    (access != DSM__PAGER_READ && access != DSM__PAGER_RW))
		return DSM_EINVAL;
	if (dsm__pager_child())
		return DSM_ECLOSED;
	idx = dsm__pager_index(pg, a);
	for (i = 0; i < n; i++)
		group_mark(pg, idx + i);
	/* OP on every page in ascending order, as change_range takes it */
	for (i = 0; i < n; i++) {
		op_claim(pg, idx + i, false, -1, &s);
		if ((s & DSM__PS_ACC) != DSM__PAGER_NONE) {
			op_release(pg, idx + i, s & DSM__PS_ACC);
			while (i--)
				op_release(pg, idx + i, DSM__PAGER_NONE);
			return DSM_EBUSY;
		}
	}
	r = pg->ops->install(pg, a, src, n << pg->pgshift, access);
	for (i = 0; i < n; i++)
		op_release(pg, idx + i, r ? DSM__PAGER_NONE : (unsigned)access);
	if (!r)
		atomic_fetch_add_explicit(&pg->cnt.installs, n, memory_order_relaxed);
	return r;
}

int dsm__pager_install(struct dsm__pager *pg, void *page, const void *src, int access)
{
	return dsm__pager_install_run(pg, page, src ? src : (pg ? pg->zero : NULL), 1, access);
}

/*
 * Apply protect (access READ/RW) or drop (access NONE) to the present pages
 * of a range whose access differs: claim OP page by page, call the backend
 * once per run of claimed pages, then record the result. If a run fails,
 * retry it page by page so every page's record matches the kernel.
 */
static int apply_run(struct dsm__pager *pg, size_t first, size_t n, int access)
{
	uintptr_t a = dsm__pager_addr(pg, first);
	int r, err = 0;

	r = access == DSM__PAGER_NONE ? pg->ops->drop(pg, a, n << pg->pgshift)
				      : pg->ops->protect(pg, a, n << pg->pgshift, access);
	if (!r) {
		for (size_t i = 0; i < n; i++)
			op_release(pg, first + i, (unsigned)access);
		atomic_fetch_add_explicit(access == DSM__PAGER_NONE ? &pg->cnt.drops : &pg->cnt.protects,
					  n, memory_order_relaxed);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t s = atomic_load(&pg->st[first + i]);

		a = dsm__pager_addr(pg, first + i);
		r = n == 1 ? r
			   : access == DSM__PAGER_NONE ? pg->ops->drop(pg, a, pg->pgsz)
						      : pg->ops->protect(pg, a, pg->pgsz, access);
		if (r && !err)
			err = r;
		op_release(pg, first + i, r ? (s & DSM__PS_ACC) : (unsigned)access);
	}
	return err;
}

/* Whole groups never used are skipped without reading their words (see
 * "used groups" above); a skipped hole ends the run being built. */
static int change_range(struct dsm__pager *pg, void *addr, size_t len, int access)
{
	size_t i, last, gend, run = 0, run_start = 0;
	uint32_t s;
	int r, err = 0;

	if (!range_ok(pg, (uintptr_t)addr, len))
		return DSM_EINVAL;
	if (dsm__pager_child())
		return DSM_ECLOSED;
	i = dsm__pager_index(pg, (uintptr_t)addr);
	last = i + (len >> pg->pgshift);
	while (i < last) {
		gend = unused_end(pg, i, last);
		if (gend == i) {
			/* a used group: claim its present pages */
			gend = DSM__MIN(last, ((i >> pg->gshift) + 1) << pg->gshift);
			for (; i < gend; i++) {
				if (op_claim(pg, i, true, access, &s)) {
					if (!run++)
						run_start = i;
					continue;
				}
				if (run) {
					r = apply_run(pg, run_start, run, access);
					err = err ? err : r;
					run = 0;
				}
			}
			continue;
		}
		if (run) {
			r = apply_run(pg, run_start, run, access);
			err = err ? err : r;
			run = 0;
		}
		i = gend;
	}
	if (run) {
		r = apply_run(pg, run_start, run, access);
		err = err ? err : r;
	}
	return err;
}

int dsm__pager_protect(struct dsm__pager *pg, void *addr, size_t len, int access)
{
	if (access == DSM__PAGER_NONE)
		return dsm__pager_drop(pg, addr, len);
	if (access != DSM__PAGER_READ && access != DSM__PAGER_RW)
		return DSM_EINVAL;
	return change_range(pg, addr, len, access);
}

int dsm__pager_drop(struct dsm__pager *pg, void *addr, size_t len)
{
	return change_range(pg, addr, len, DSM__PAGER_NONE);
}

int dsm__pager_access(struct dsm__pager *pg, const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	size_t idx;

	if (!pg || a < pg->base || a - pg->base >= pg->size)
		return DSM_EINVAL;
	if (dsm__pager_child())
		return DSM_ECLOSED;
	idx = dsm__pager_index(pg, a);
	if (!group_used(pg, idx >> pg->gshift))
		return DSM__PAGER_NONE;
	return (int)(atomic_load(&pg->st[idx]) & DSM__PS_ACC);
}
