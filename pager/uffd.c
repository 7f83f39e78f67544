/*
 * Backend uffd: userfaultfd with UFFD_USER_MODE_ONLY (so an unprivileged
 * process may use it with vm.unprivileged_userfaultfd = 0).
 *
 * The region is private anonymous memory, readable and writable for the
 * kernel's page tables, registered for missing faults and write-protect
 * faults. NONE = no page (pte none); READ = page with the userfaultfd
 * write-protect bit; RW = page without it.
 *   install  UFFDIO_COPY (UFFDIO_COPY_MODE_WP for READ): the kernel copies
 *            into a fresh page and maps it in one step; wakes waiters.
 *   protect  UFFDIO_WRITEPROTECT set/clear (clearing wakes waiters).
 *   drop     MADV_DONTNEED (anonymous zap leaves no marker: next touch is a
 *            missing fault).
 * Every system call that changes a mapping or talks to the userfaultfd goes
 * through the table of syscall.c (DSM__SYS), which tests can override.
 *
 * Fault service: DSM_PAGER_THREADS threads, each blocked in its own epoll
 * on the uffd, added with EPOLLEXCLUSIVE: a fault report wakes exactly one
 * idle thread (the first idle one in a fixed order, so with sequential
 * faults the same cache-hot thread serves them all); a busy thread's epoll
 * is only marked ready and it looks again when it is done. So faults on
 * different pages are served concurrently without waking every thread for
 * every report. A thread reads one report, serves it, then (after an
 * optional spin of DSM_PAGER_SPIN_NS on non-blocking reads) waits again. A report for a page whose fault is already
 * being served is skipped (SKIP): the kernel keeps that thread waiting and
 * it is woken with the first. Installs and unprotects made inside a fault
 * callback do not wake (DONTWAKE); the service thread wakes the page once
 * the callback has returned, so, as with sigsegv, a faulting thread resumes
 * only after its callback returned and the recorded access is final.
 */
#include "pager-backend.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

struct uffd {
	struct dsm__pager *pg;
	int fd;                 /* the userfaultfd, O_NONBLOCK */
	int stopfd;             /* eventfd, readable once stop begins */
	atomic_int stopping;
	atomic_int spinning;    /* a thread is spinning (at most one) */
	int nthreads;
	pthread_t th[DSM__PAGER_MAX_THREADS];
	int ep[DSM__PAGER_MAX_THREADS]; /* each thread's epoll */
};

/* Open a userfaultfd with write-protect support; user-mode faults only
 * where the kernel knows the flag (5.11+), else without it (privileged or
 * vm.unprivileged_userfaultfd=1). */
static int uffd_open(int *out)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	int fd, e;

	fd = DSM__SYS(userfaultfd)(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL) {
		DSM__DEBUG("pager uffd: UFFD_USER_MODE_ONLY unknown to this kernel, trying without");
		fd = DSM__SYS(userfaultfd)(O_CLOEXEC | O_NONBLOCK);
	}
	if (fd < 0) {
		e = errno;
		DSM__DEBUG("pager uffd: userfaultfd(): %s", strerror(e));
		return e == ENOSYS || e == EPERM || e == EACCES || e == EINVAL ? DSM_ENOTSUP
									     : DSM_ESYS;
	}
	if (DSM__SYS(ioctl)(fd, UFFDIO_API, &api)) {
		DSM__DEBUG("pager uffd: UFFDIO_API with write-protect: %s", strerror(errno));
		close(fd);
		return DSM_ENOTSUP;
	}
	*out = fd;
	return 0;
}

/* Register [addr, addr+len) for missing and write-protect faults and check
 * that COPY and WRITEPROTECT are allowed there. */
static int uffd_register(int fd, uintptr_t addr, size_t len)
{
	struct uffdio_register reg = {
		.range = { .start = addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};
	const uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_WRITEPROTECT) |
			      (1ull << _UFFDIO_WAKE);

	if (DSM__SYS(ioctl)(fd, UFFDIO_REGISTER, &reg)) {
		DSM__DEBUG("pager uffd: UFFDIO_REGISTER missing|wp: %s", strerror(errno));
		return DSM_ENOTSUP;
	}
	if ((reg.ioctls & need) != need) {
		DSM__DEBUG("pager uffd: range ioctls %#llx lack copy/writeprotect/wake",
			   (unsigned long long)reg.ioctls);
		return DSM_ENOTSUP;
	}
	return 0;
}

static int uffd_probe(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	void *p;
	int fd, r;

	r = uffd_open(&fd);
	if (r)
		return r;
	p = DSM__SYS(mmap)(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			   -1, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return DSM_ENOMEM;
	}
	r = uffd_register(fd, (uintptr_t)p, (size_t)ps);
	DSM__SYS(munmap)(p, (size_t)ps);
	close(fd);
	return r;
}

static int uffd_reserve(struct dsm__pager *pg)
{
	struct uffd *u;
	int r;

	u = calloc(1, sizeof(*u));
	if (!u)
		return DSM_ENOMEM;
	u->pg = pg;
	u->fd = u->stopfd = -1;
	r = dsm__pager_map_region(pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (r)
		goto fail_map;
	/* Faults on a PROT_NONE mapping are SIGSEGV, not userfaults: the page
	 * tables decide from here on. MAP_NORESERVE: nothing is charged. */
	if (DSM__SYS(mprotect)((void *)pg->base, pg->size, PROT_READ | PROT_WRITE)) {
		r = errno == ENOMEM ? DSM_ENOMEM : DSM_ESYS;
		DSM__ERR("pager uffd: mprotect of the region: %s", strerror(errno));
		goto fail_prot;
	}
	r = uffd_open(&u->fd);
	if (r)
		goto fail_prot;
	r = uffd_register(u->fd, pg->base, pg->size);
	if (r) {
		DSM__ERR("pager uffd: cannot register the region for faults");
		goto fail_reg;
	}
	u->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->stopfd < 0) {
		r = DSM_ESYS;
		goto fail_reg;
	}
	pg->impl = u;
	return 0;

fail_reg:
	close(u->fd);
fail_prot:
	DSM__SYS(munmap)((void *)pg->base, pg->size);
fail_map:
	free(u);
	return r;
}

static void uffd_wake(struct uffd *u, uintptr_t a)
{
	struct uffdio_range rg = { .start = a, .len = u->pg->pgsz };

	if (DSM__SYS(ioctl)(u->fd, UFFDIO_WAKE, &rg) && errno != ENOENT)
		DSM__WARN("pager uffd: UFFDIO_WAKE %#lx: %s", (unsigned long)a, strerror(errno));
}

/* Any thread, OP held on every page. One UFFDIO_COPY for the whole range
 * (1.0-1.2 us per page here against 2.5 for a page per call). */
static int uffd_install(struct dsm__pager *pg, uintptr_t a, const void *src, size_t len,
			int access)
{
	struct uffd *u = pg->impl;
	struct uffdio_copy c;
	uint64_t mode = access == DSM__PAGER_READ ? UFFDIO_COPY_MODE_WP : 0;
	size_t done = 0, i, first = dsm__pager_index(pg, a);
	int e;

	/* Inside a fault callback the service thread wakes the waiters when
	 * the callback returns (see serve()); waiters on the other pages of
	 * the range are then woken when their (now stale) reports are read. */
	for (i = 0; i < len >> pg->pgshift; i++) {
		if (atomic_load(&pg->st[first + i]) & DSM__PS_FAULT) {
			mode |= UFFDIO_COPY_MODE_DONTWAKE;
			break;
		}
	}
	for (;;) {
		c = (struct uffdio_copy){
			.dst = a + done, .src = (uintptr_t)src + done, .len = len - done, .mode = mode,
		};
		if (!DSM__SYS(ioctl)(u->fd, UFFDIO_COPY, &c))
			return 0;
		e = errno;
		if (c.copy > 0)
			done += (size_t)c.copy; /* part of it went in */
		if (e == EAGAIN) /* the address space was changing: go on */
			continue;
		break;
	}
	/* all or none: take back what went in */
	if (done && DSM__SYS(madvise)((void *)a, done, MADV_DONTNEED))
		DSM__ERR("pager uffd: MADV_DONTNEED after a failed UFFDIO_COPY: %s",
			 strerror(errno));
	if (e == EEXIST)
		return DSM_EBUSY;
	if (e == ENOMEM)
		return DSM_ENOMEM;
	if (e == EFAULT)
		return DSM_EINVAL;
	DSM__ERR("pager uffd: UFFDIO_COPY at %#lx+%zu: %s", (unsigned long)a, len, strerror(e));
	return DSM_ESYS;
}

/* Any thread, OP held on every page. */
static int uffd_protect(struct dsm__pager *pg, uintptr_t a, size_t len, int access)
{
	struct uffd *u = pg->impl;
	struct uffdio_writeprotect wp = {
		.range = { .start = a, .len = len },
		.mode = access == DSM__PAGER_READ ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	/* Unprotecting a page whose fault is being served: the service
	 * thread wakes its waiters when the callback returns; waiters on the
	 * other pages of the range are then woken when their (now stale)
	 * reports are read. */
	if (access == DSM__PAGER_RW) {
		for (size_t i = 0; i < len >> pg->pgshift; i++) {
			if (atomic_load(&pg->st[dsm__pager_index(pg, a) + i]) & DSM__PS_FAULT) {
				wp.mode |= UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
				break;
			}
		}
	}

	while (DSM__SYS(ioctl)(u->fd, UFFDIO_WRITEPROTECT, &wp)) {
		int e = errno;

		if (e == EAGAIN)
			continue;
		DSM__ERR("pager uffd: UFFDIO_WRITEPROTECT %#lx+%zu: %s", (unsigned long)a, len,
			 strerror(e));
		return e == ENOMEM ? DSM_ENOMEM : DSM_ESYS;
	}
	return 0;
}

/* Any thread, OP held on every page. */
static int uffd_drop(struct dsm__pager *pg, uintptr_t a, size_t len)
{
	(void)pg;
	if (DSM__SYS(madvise)((void *)a, len, MADV_DONTNEED)) {
		DSM__ERR("pager uffd: MADV_DONTNEED %#lx+%zu: %s", (unsigned long)a, len,
			 strerror(errno));
		return DSM_ESYS;
	}
	return 0;
}

/* Service thread with epoll ep: wait for the next fault report; spin on
 * non-blocking reads for up to spin_ns first (one spinner at a time), then
 * block in epoll. Returns 1 with *m filled, 0 when stopping. */
static int next_report(struct uffd *u, int ep, struct uffd_msg *m)
{
	struct epoll_event ev;
	int64_t until = 0;
	int expect = 0, got = 0;
	bool spin = false;

	if (u->pg->spin_ns && atomic_compare_exchange_strong(&u->spinning, &expect, 1)) {
		spin = true;
		until = dsm__now_ns() + u->pg->spin_ns;
	}
	for (;;) {
		ssize_t n;

		if (atomic_load_explicit(&u->stopping, memory_order_relaxed))
			break;
		n = read(u->fd, m, sizeof(*m));
		if (n == (ssize_t)sizeof(*m)) {
			got = 1;
			break;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			DSM__ERR("pager uffd: read of fault reports: %s", strerror(errno));
			break;
		}
		if (spin) {
			if (dsm__now_ns() < until) {
				DSM__PAGER_CPU_RELAX();
				continue;
			}
			atomic_store(&u->spinning, 0);
			spin = false;
		}
		if (epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR) {
			DSM__ERR("pager uffd: epoll_wait: %s", strerror(errno));
			break;
		}
	}
	if (spin)
		atomic_store(&u->spinning, 0);
	return got;
}

/* Service thread: serve one fault report. */
static void serve(struct uffd *u, const struct uffd_msg *m)
{
	struct dsm__pager *pg = u->pg;
	uintptr_t a;
	uint64_t fl;
	_Atomic uint32_t *w;
	uint32_t s;
	size_t idx;
	int kind, spins = 0;

	if (m->event != UFFD_EVENT_PAGEFAULT)
		return;
	a = (uintptr_t)m->arg.pagefault.address & ~(uintptr_t)(pg->pgsz - 1);
	if (a - pg->base >= pg->size)
		return;
	fl = m->arg.pagefault.flags;
	kind = (fl & UFFD_PAGEFAULT_FLAG_WP) ? DSM__PAGER_K_WRITE_PRESENT
	       : (fl & UFFD_PAGEFAULT_FLAG_WRITE) ? DSM__PAGER_K_WRITE_ABSENT
						 : DSM__PAGER_K_READ;
	idx = dsm__pager_index(pg, a);
	w = &pg->st[idx];
	s = atomic_load(w);
	for (;;) {
		if (s & DSM__PS_OP) {
			/* A call is changing the page (one system call long);
			 * ACC is final once it is done. */
			if (++spins > 64)
				sched_yield();
			s = atomic_load(w);
			continue;
		}
		if (!dsm__pager_pending(kind, s & DSM__PS_ACC)) {
			/* Served already (or dropped under a write fault): the
			 * thread may still sleep; let it retry. */
			atomic_fetch_add_explicit(&pg->cnt.stale, 1, memory_order_relaxed);
			uffd_wake(u, a);
			return;
		}
		if (s & DSM__PS_FAULT) {
			if ((s & DSM__PS_SKIP) || atomic_compare_exchange_weak(w, &s, s | DSM__PS_SKIP)) {
				atomic_fetch_add_explicit(&pg->cnt.joined, 1, memory_order_relaxed);
				return;
			}
			continue;
		}
		if (atomic_compare_exchange_weak(w, &s, s | DSM__PS_FAULT))
			break;
	}
	dsm__pager_fault_run(pg, idx, kind);
	/* Installs and unprotects made while FAULT was held did not wake the
	 * waiters (DONTWAKE), so that they resume only once the callback has
	 * returned and the recorded access is final; wake them now. This also
	 * wakes faults skipped meanwhile and lets the thread retry if the
	 * callback left the page as it was. */
	uffd_wake(u, a);
}

struct targ {
	struct uffd *u;
	int ep;
};

static void *uffd_thread(void *p)
{
	struct uffd *u = ((struct targ *)p)->u;
	int ep = ((struct targ *)p)->ep;
	struct uffd_msg m;

	free(p);
	while (next_report(u, ep, &m))
		serve(u, &m);
	return NULL;
}

static void uffd_join(struct uffd *u)
{
	uint64_t one = 1;

	atomic_store(&u->stopping, 1);
	if (write(u->stopfd, &one, sizeof(one)) < 0)
		DSM__WARN("pager uffd: eventfd write: %s", strerror(errno));
	for (int i = 0; i < u->nthreads; i++) {
		pthread_join(u->th[i], NULL);
		close(u->ep[i]);
	}
	u->nthreads = 0;
}

/* An epoll for one service thread: the uffd exclusively, the stop eventfd
 * for everyone. */
static int thread_epoll(struct uffd *u)
{
	struct epoll_event e1 = { .events = EPOLLIN | EPOLLEXCLUSIVE };
	struct epoll_event e2 = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		return -1;
	e1.data.fd = u->fd;
	e2.data.fd = u->stopfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, u->fd, &e1) ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, u->stopfd, &e2)) {
		close(ep);
		return -1;
	}
	return ep;
}

static int uffd_start(struct dsm__pager *pg)
{
	struct uffd *u = pg->impl;
	char name[16];
	int r;

	for (int i = 0; i < pg->nthreads; i++) {
		struct targ *t = malloc(sizeof(*t));
		int ep = thread_epoll(u);

		if (!t || ep < 0) {
			DSM__ERR("pager uffd: service thread setup: %s", strerror(errno));
			r = ENOMEM;
		} else {
			*t = (struct targ){ .u = u, .ep = ep };
			r = pthread_create(&u->th[i], NULL, uffd_thread, t);
			if (r)
				DSM__ERR("pager uffd: pthread_create: %s", strerror(r));
		}
		if (r) {
			free(t);
			if (ep >= 0)
				close(ep);
			uffd_join(u);
			return DSM_ESYS;
		}
		u->ep[i] = ep;
		snprintf(name, sizeof(name), "dsm-uffd-%d", i & 63);
		pthread_setname_np(u->th[i], name);
		u->nthreads++;
	}
	return 0;
}

static void uffd_stop(struct dsm__pager *pg)
{
	struct uffd *u = pg->impl;
	struct uffdio_range rg = { .start = pg->base, .len = pg->size };

	/* From here every access is SIGSEGV; unregistering wakes any thread
	 * still waiting so it meets that too instead of sleeping forever. */
	DSM__SYS(mprotect)((void *)pg->base, pg->size, PROT_NONE);
	if (DSM__SYS(ioctl)(u->fd, UFFDIO_UNREGISTER, &rg))
		DSM__WARN("pager uffd: UFFDIO_UNREGISTER: %s", strerror(errno));
	uffd_join(u);
}

static void uffd_release(struct dsm__pager *pg)
{
	struct uffd *u = pg->impl;

	if (!u)
		return;
	close(u->stopfd);
	close(u->fd);
	DSM__SYS(munmap)((void *)pg->base, pg->size);
	free(u);
	pg->impl = NULL;
}

const struct dsm__pager_ops dsm__pager_uffd_ops = {
	.name = "uffd",
	.probe = uffd_probe,
	.reserve = uffd_reserve,
	.install = uffd_install,
	.protect = uffd_protect,
	.drop = uffd_drop,
	.start = uffd_start,
	.stop = uffd_stop,
	.release = uffd_release,
};
