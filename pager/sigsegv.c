/*
 * Backend sigsegv: mprotect + a SIGSEGV handler, the portable fallback.
 *
 * Memory: a memfd the size of the region, mapped twice: the application
 * view at the region's base (PROT_NONE / PROT_READ / PROT_READ|PROT_WRITE
 * per page) and a private-to-the-pager alias, always writable, elsewhere.
 *   install  memcpy into the alias while the application view of the page
 *            is PROT_NONE, then mprotect the view: no thread sees half a
 *            page.
 *   protect  mprotect of the application view.
 *   drop     mprotect PROT_NONE, then punch the page out of the memfd
 *            (memory returned; the alias reads zeros afterwards).
 * These system calls (and the memfd's) go through the table of syscall.c
 * (DSM__SYS), which tests can override.
 *
 * Faults in the faulting thread (cfg.inline_faults, DSM_PAGER_INLINE, the
 * library's default): the handler claims the page's FAULT bit as below and
 * runs the callback itself, in signal context, then returns and the access
 * is retried. No thread hand-off: on a VM whose idle CPUs halt, waking a
 * service thread and being woken by it cost about 100 us a fault. The
 * callback may take locks and wait for the network: the interrupted code
 * is the program's (or the library's, which never touches a page it may
 * not hold while it holds a lock).
 *
 * Fault hand-off, lock-free: the handler (in the faulting thread, signal
 * context) does no allocation and takes no lock. It claims the page's FAULT
 * bit with a CAS (a second thread faulting on the same page sets WAIT and
 * sleeps on the page's state word with a futex, then retries the access),
 * claims a slot in a fixed array with a CAS, posts it, wakes one idle
 * service thread (the lowest-numbered idle one, taken from a bit mask with
 * a CAS, through its own futex word: so sequential faults keep one
 * cache-hot thread busy instead of rotating through all of them), and
 * sleeps on the slot's futex until the service thread has run the
 * callback. It then returns and the access is
 * retried. A fault outside the region or of another kind (SEGV_MAPERR,
 * instruction fetch) goes to the handler installed before ours, or the
 * default action, so a real crash still crashes with a core. In a fork
 * child, fork.c's handler is installed over this one and takes the
 * region's faults; it passes the others on to this one.
 */
#include "pager-backend.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "common.h"

#define NSLOTS 256

enum { SLOT_FREE = 0, SLOT_FILL, SLOT_POSTED, SLOT_TAKEN, SLOT_DONE };

struct slot {
	_Atomic uint32_t state; /* SLOT_*; futex of the faulting thread */
	int kind;               /* written in FILL, read after POSTED */
	size_t idx;
};

struct sg {
	struct dsm__pager *pg;
	int memfd;
	char *alias;                   /* writable view of the memfd */
	struct slot slots[NSLOTS];
	atomic_uint nposted;           /* slots in SLOT_POSTED */
	/* bit i: service thread i is (about to be) asleep on wake[i] */
	_Atomic uint64_t idle;
	_Atomic uint32_t wake[DSM__PAGER_MAX_THREADS];
	_Atomic uint32_t free_seq;     /* futex: bumped when a slot frees */
	atomic_uint free_waiters;
	atomic_int stopping;
	atomic_int spinning;
	int nthreads;
	pthread_t th[DSM__PAGER_MAX_THREADS];
	int handler_set;
};

/* The backend the handler serves (NULL: none, chain everything). */
static struct sg *_Atomic live;
/* The handler that was installed before ours (read by the handler). */
static struct sigaction prev_sa;

static int sg_probe(void)
{
	int fd = DSM__SYS(memfd_create)("libdsm-probe", MFD_CLOEXEC);

	if (fd < 0) {
		DSM__DEBUG("pager sigsegv: memfd_create: %s", strerror(errno));
		return DSM_ENOTSUP;
	}
	close(fd);
	return 0;
}

static int sg_reserve(struct dsm__pager *pg)
{
	struct sg *g;
	int r;

	g = calloc(1, sizeof(*g));
	if (!g)
		return DSM_ENOMEM;
	g->pg = pg;
	g->memfd = DSM__SYS(memfd_create)("libdsm-region", MFD_CLOEXEC);
	if (g->memfd < 0) {
		DSM__ERR("pager sigsegv: memfd_create: %s", strerror(errno));
		r = DSM_ESYS;
		goto fail_memfd;
	}
	/* Sparse: memfd memory is allocated when a page is written. */
	if (DSM__SYS(ftruncate)(g->memfd, (off_t)pg->size)) {
		DSM__ERR("pager sigsegv: ftruncate(%zu): %s", pg->size, strerror(errno));
		r = DSM_ENOMEM;
		goto fail_size;
	}
	r = dsm__pager_map_region(pg, PROT_NONE, MAP_SHARED, g->memfd);
	if (r)
		goto fail_size;
	g->alias = DSM__SYS(mmap)(NULL, pg->size, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_NORESERVE, g->memfd, 0);
	if (g->alias == MAP_FAILED) {
		DSM__ERR("pager sigsegv: alias mapping: %s", strerror(errno));
		r = DSM_ENOMEM;
		goto fail_alias;
	}
	DSM__SYS(madvise)(g->alias, pg->size, MADV_DONTFORK);
	pg->impl = g;
	return 0;

fail_alias:
	DSM__SYS(munmap)((void *)pg->base, pg->size);
fail_size:
	close(g->memfd);
fail_memfd:
	free(g);
	return r;
}

static int prot_of(int access)
{
	return access == DSM__PAGER_RW ? PROT_READ | PROT_WRITE
	       : access == DSM__PAGER_READ ? PROT_READ : PROT_NONE;
}

static int mprot(uintptr_t a, size_t len, int access)
{
	if (!DSM__SYS(mprotect)((void *)a, len, prot_of(access)))
		return 0;
	if (errno == ENOMEM) {
		DSM__ERR("pager sigsegv: mprotect %#lx+%zu: too many mappings "
			 "(vm.max_map_count); use DSM_PAGER=uffd", (unsigned long)a, len);
		return DSM_ENOMEM;
	}
	DSM__ERR("pager sigsegv: mprotect %#lx+%zu: %s", (unsigned long)a, len, strerror(errno));
	return DSM_ESYS;
}

static void punch(struct sg *g, uintptr_t a, size_t len)
{
	off_t off = (off_t)(a - g->pg->base);

	if (DSM__SYS(fallocate)(g->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
				(off_t)len))
		DSM__WARN("pager sigsegv: punching %#lx+%zu: %s", (unsigned long)a, len,
			  strerror(errno));
}

/* Any thread, OP held; the application view of the page is PROT_NONE. */
static int sg_install(struct dsm__pager *pg, uintptr_t a, const void *src, size_t len,
		      int access)
{
	struct sg *g = pg->impl;
	int r;

	memcpy(g->alias + (a - pg->base), src, len);
	r = mprot(a, len, access);
	if (r)
		punch(g, a, len);
	return r;
}

/* Any thread, OP held on every page. */
static int sg_protect(struct dsm__pager *pg, uintptr_t a, size_t len, int access)
{
	(void)pg;
	return mprot(a, len, access);
}

/* Any thread, OP held on every page. Inaccessible first, then freed, so no
 * thread ever reads the zeros of the hole. */
static int sg_drop(struct dsm__pager *pg, uintptr_t a, size_t len)
{
	int r = mprot(a, len, DSM__PAGER_NONE);

	if (!r)
		punch(pg->impl, a, len);
	return r;
}

/* ---- the handler (signal context: atomics and futex only) ------------- */

/* 1 store, 0 load, -1 unknown. x86: page-fault error code bit 1 = write,
 * bit 4 = instruction fetch (reported as 2: not ours). */
static int access_kind(void *ctx)
{
#if defined(__x86_64__)
	greg_t err = ((ucontext_t *)ctx)->uc_mcontext.gregs[REG_ERR];

	if (err & 0x10)
		return 2;
	return (err & 0x2) ? 1 : 0;
#else
	(void)ctx;
	return -1;
#endif
}

static void chain(int sig, siginfo_t *si, void *ctx)
{
	if (prev_sa.sa_flags & SA_SIGINFO) {
		prev_sa.sa_sigaction(sig, si, ctx);
		return;
	}
	if (prev_sa.sa_handler == SIG_DFL || prev_sa.sa_handler == SIG_IGN) {
		/* Returning re-executes the access, which now takes the
		 * default action: the process dies with a core. */
		struct sigaction dfl;

		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(sig, &dfl, NULL);
		return;
	}
	prev_sa.sa_handler(sig);
}

/* Wake the lowest-numbered idle service thread, if any (busy ones look at
 * the slots before they sleep). Async-signal-safe. */
static void wake_one(struct sg *g)
{
	uint64_t m = atomic_load(&g->idle);

	while (m) {
		int i = __builtin_ctzll(m);

		if (atomic_compare_exchange_weak(&g->idle, &m, m & ~(1ull << i))) {
			atomic_store(&g->wake[i], 1);
			dsm__pager_futex_wake(&g->wake[i], 1);
			return;
		}
	}
}

/* Faulting thread: hand the fault on page idx (FAULT held) to a service
 * thread and sleep until it is served. */
static void post_and_wait(struct sg *g, size_t idx, int kind)
{
	struct slot *sl = NULL;
	uint32_t v, fseq;
	size_t h = idx % NSLOTS;

	for (;;) {
		fseq = atomic_load(&g->free_seq);
		for (size_t k = 0; k < NSLOTS && !sl; k++) {
			struct slot *c = &g->slots[(h + k) % NSLOTS];
			uint32_t f = SLOT_FREE;

			if (atomic_load_explicit(&c->state, memory_order_relaxed) == SLOT_FREE &&
			    atomic_compare_exchange_strong(&c->state, &f, SLOT_FILL))
				sl = c;
		}
		if (sl)
			break;
		/* More than NSLOTS threads faulting at once: wait for one. */
		atomic_fetch_add(&g->free_waiters, 1);
		dsm__pager_futex_wait(&g->free_seq, fseq);
		atomic_fetch_sub(&g->free_waiters, 1);
	}
	sl->idx = idx;
	sl->kind = kind;
	atomic_store(&sl->state, SLOT_POSTED);
	atomic_fetch_add(&g->nposted, 1);
	wake_one(g);
	while ((v = atomic_load(&sl->state)) != SLOT_DONE)
		dsm__pager_futex_wait(&sl->state, v);
	atomic_store(&sl->state, SLOT_FREE);
	atomic_fetch_add(&g->free_seq, 1);
	if (atomic_load(&g->free_waiters))
		dsm__pager_futex_wake(&g->free_seq, INT_MAX);
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	int saved_errno = errno;
	struct sg *g = atomic_load(&live);
	struct dsm__pager *pg;
	uintptr_t a = (uintptr_t)si->si_addr;
	_Atomic uint32_t *w;
	uint32_t s;
	size_t idx;
	int wr, kind;

	if (!g || si->si_code != SEGV_ACCERR)
		goto not_ours;
	pg = g->pg;
	if (a < pg->base || a - pg->base >= pg->size)
		goto not_ours;
	wr = access_kind(ctx);
	if (wr == 2)
		goto not_ours;
	idx = dsm__pager_index(pg, a);
	w = &pg->st[idx];
	s = atomic_load(w);
	for (;;) {
		unsigned acc = s & DSM__PS_ACC;

		if (s & (DSM__PS_OP | DSM__PS_FAULT)) {
			/* Being changed or served: sleep until it is done,
			 * then retry the access. */
			if (!(s & DSM__PS_WAIT) &&
			    !atomic_compare_exchange_weak(w, &s, s | DSM__PS_WAIT))
				continue;
			atomic_fetch_add_explicit(&pg->cnt.joined, 1, memory_order_relaxed);
			dsm__pager_futex_wait(w, s | DSM__PS_WAIT);
			goto out;
		}
		if (acc == DSM__PAGER_RW || (acc == DSM__PAGER_READ && wr == 0)) {
			/* Installed meanwhile: retry. */
			atomic_fetch_add_explicit(&pg->cnt.stale, 1, memory_order_relaxed);
			goto out;
		}
		kind = acc == DSM__PAGER_READ ? DSM__PAGER_K_WRITE_PRESENT
		       : wr == 1 ? DSM__PAGER_K_WRITE_ABSENT : DSM__PAGER_K_READ;
		if (atomic_compare_exchange_weak(w, &s, s | DSM__PS_FAULT))
			break;
	}
	if (pg->inline_faults)
		dsm__pager_fault_run(pg, idx, kind);
	else
		post_and_wait(g, idx, kind);
out:
	errno = saved_errno;
	return;
not_ours:
	errno = saved_errno;
	chain(sig, si, ctx);
}

/* ---- service threads -------------------------------------------------- */

static struct slot *take(struct sg *g)
{
	if (!atomic_load(&g->nposted))
		return NULL;
	for (size_t k = 0; k < NSLOTS; k++) {
		struct slot *c = &g->slots[k];
		uint32_t p = SLOT_POSTED;

		if (atomic_load_explicit(&c->state, memory_order_relaxed) == SLOT_POSTED &&
		    atomic_compare_exchange_strong(&c->state, &p, SLOT_TAKEN)) {
			atomic_fetch_sub(&g->nposted, 1);
			return c;
		}
	}
	return NULL;
}

static void serve(struct sg *g, struct slot *sl)
{
	dsm__pager_fault_run(g->pg, sl->idx, sl->kind);
	atomic_store(&sl->state, SLOT_DONE);
	dsm__pager_futex_wake(&sl->state, 1);
}

struct targ {
	struct sg *g;
	int i;
};

static void *sg_thread(void *p)
{
	struct sg *g = ((struct targ *)p)->g;
	int i = ((struct targ *)p)->i, expect;
	uint64_t bit = 1ull << i;
	struct slot *sl;

	free(p);
	for (;;) {
		sl = take(g);
		if (sl) {
			serve(g, sl);
			continue;
		}
		if (atomic_load(&g->stopping))
			return NULL;
		expect = 0;
		if (g->pg->spin_ns && atomic_compare_exchange_strong(&g->spinning, &expect, 1)) {
			int64_t until = dsm__now_ns() + g->pg->spin_ns;

			while (!(sl = take(g)) && !atomic_load(&g->stopping) &&
			       dsm__now_ns() < until)
				DSM__PAGER_CPU_RELAX();
			atomic_store(&g->spinning, 0);
			if (sl) {
				serve(g, sl);
				continue;
			}
		}
		/* Advertise idle, then look once more: a post either sees the
		 * bit or is seen here. */
		atomic_store(&g->wake[i], 0);
		atomic_fetch_or(&g->idle, bit);
		sl = take(g);
		if (sl || atomic_load(&g->stopping)) {
			atomic_fetch_and(&g->idle, ~bit);
			if (sl)
				serve(g, sl);
			continue;
		}
		dsm__pager_futex_wait(&g->wake[i], 0);
		atomic_fetch_and(&g->idle, ~bit);
	}
}

static void sg_join(struct sg *g)
{
	atomic_store(&g->stopping, 1);
	for (int i = 0; i < g->nthreads; i++) {
		atomic_store(&g->wake[i], 1);
		dsm__pager_futex_wake(&g->wake[i], 1);
	}
	for (int i = 0; i < g->nthreads; i++)
		pthread_join(g->th[i], NULL);
	g->nthreads = 0;
}

static int sg_start(struct dsm__pager *pg)
{
	struct sg *g = pg->impl;
	struct sigaction sa;
	char name[16];
	int r;

	for (int i = 0; i < pg->nthreads; i++) {
		struct targ *t = malloc(sizeof(*t));

		r = t ? 0 : ENOMEM;
		if (t) {
			*t = (struct targ){ .g = g, .i = i };
			r = pthread_create(&g->th[i], NULL, sg_thread, t);
		}
		if (r) {
			DSM__ERR("pager sigsegv: pthread_create: %s", strerror(r));
			free(t);
			sg_join(g);
			return DSM_ESYS;
		}
		snprintf(name, sizeof(name), "dsm-segv-%d", i & 63);
		pthread_setname_np(g->th[i], name);
		g->nthreads++;
	}
	/* Record the previous handler before ours can run and chain to it. */
	if (sigaction(SIGSEGV, NULL, &prev_sa)) {
		DSM__ERR("pager sigsegv: sigaction: %s", strerror(errno));
		sg_join(g);
		return DSM_ESYS;
	}
	atomic_store(&live, g);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL)) {
		DSM__ERR("pager sigsegv: sigaction: %s", strerror(errno));
		atomic_store(&live, NULL);
		sg_join(g);
		return DSM_ESYS;
	}
	g->handler_set = 1;
	return 0;
}

static void sg_stop(struct dsm__pager *pg)
{
	struct sg *g = pg->impl;
	struct sigaction cur;

	DSM__SYS(mprotect)((void *)pg->base, pg->size, PROT_NONE);
	if (g->handler_set) {
		/* Put the previous handler back unless someone replaced ours. */
		if (!sigaction(SIGSEGV, NULL, &cur) && (cur.sa_flags & SA_SIGINFO) &&
		    cur.sa_sigaction == on_segv)
			sigaction(SIGSEGV, &prev_sa, NULL);
		g->handler_set = 0;
	}
	atomic_store(&live, NULL);
	sg_join(g);
}

static void sg_release(struct dsm__pager *pg)
{
	struct sg *g = pg->impl;

	if (!g)
		return;
	DSM__SYS(munmap)(g->alias, pg->size);
	DSM__SYS(munmap)((void *)pg->base, pg->size);
	close(g->memfd);
	free(g);
	pg->impl = NULL;
}

const struct dsm__pager_ops dsm__pager_sigsegv_ops = {
	.name = "sigsegv",
	.probe = sg_probe,
	.reserve = sg_reserve,
	.install = sg_install,
	.protect = sg_protect,
	.drop = sg_drop,
	.start = sg_start,
	.stop = sg_stop,
	.release = sg_release,
};
