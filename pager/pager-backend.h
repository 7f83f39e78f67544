/*
 * Inside the pager: the backend ops table, the pager object and the
 * per-page state word shared by pager.c and the backends (uffd.c,
 * sigsegv.c). Not for layers above: they use pager.h.
 *
 * Per-page state (one 32-bit word per page, futex-capable):
 *   ACC   bits 0-1  the page's access as installed (enum dsm__pager_access);
 *                   changed only by the holder of OP, after the system call
 *                   that made it true succeeded.
 *   OP    an install/protect/drop is changing the page (the per-page lock
 *         of the state-changing calls; held for one system call).
 *   FAULT a fault callback for the page is running (owned by the service
 *         thread that claimed it; install/protect/drop do not wait for it).
 *   WAIT  sigsegv: threads sleep on the word (futex) until OP/FAULT clear.
 *   SKIP  uffd: a fault report was skipped while FAULT was held; the kernel
 *         waiters are woken when FAULT clears.
 * Whoever clears OP or FAULT also clears WAIT and wakes the futex if it was
 * set. All updates are CAS loops; no update allocates or blocks, so the
 * SIGSEGV handler may take part.
 *
 * Used groups. The state words are MAP_NORESERVE memory, and on some
 * kernels even a load of a never-touched anonymous page allocates it (no
 * shared zero page): a scan of every word of a 64 GiB region would commit
 * 64 MiB. So the words are grouped by page of the state array (a group is
 * pgsz / 4 pages of the region) and pg->used has one bit per group, set
 * (by dsm__pager_install, before it claims OP) before any page of the group
 * first leaves NONE, and never cleared. Range scans and
 * dsm__pager_access() skip the groups whose bit is clear without reading
 * their words; the fault paths read the word of the page that faulted (it
 * is about to be installed). Why a skip is right: see pager.c.
 */
#ifndef DSM_PAGER_PAGER_BACKEND_H
#define DSM_PAGER_PAGER_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pager.h"

#define DSM__PS_ACC 0x3u
#define DSM__PS_OP 0x4u
#define DSM__PS_FAULT 0x8u
#define DSM__PS_WAIT 0x10u
#define DSM__PS_SKIP 0x20u

/* What kind of fault a service thread is to serve. */
enum dsm__pager_kind {
	DSM__PAGER_K_READ = 0,          /* load of a NONE page */
	DSM__PAGER_K_WRITE_ABSENT = 1,  /* store to a NONE page */
	DSM__PAGER_K_WRITE_PRESENT = 2, /* store to a READ page */
};

struct dsm__pager;

/*
 * A backend. Every slot is set (no NULL). The range slots are called by
 * pager.c with OP held on every page of the range, and only for pages
 * whose state the call changes; they do the system calls (through
 * DSM__SYS, below), pager.c updates the state words. Return 0 or a
 * negative DSM_E* code (-errno converted once here).
 */
struct dsm__pager_ops {
	const char *name;
	/* 0 if the backend works here, else a negative code; logs why at
	 * debug level. No lasting side effect. */
	int (*probe)(void);
	/* Map the region at pg->base (pg->size bytes), PROT_NONE until start
	 * for sigsegv, registered for faults for uffd; set pg->impl. */
	int (*reserve)(struct dsm__pager *pg);
	/* Copy len bytes (whole pages) from src (never NULL) into the NONE
	 * pages at addr and give them access READ or RW, atomically for each
	 * page, all or none: on failure no page of the range is present. */
	int (*install)(struct dsm__pager *pg, uintptr_t addr, const void *src, size_t len,
		       int access);
	/* Set access READ or RW on present pages [addr, addr+len). */
	int (*protect)(struct dsm__pager *pg, uintptr_t addr, size_t len, int access);
	/* Make the present pages [addr, addr+len) not present, memory freed. */
	int (*drop)(struct dsm__pager *pg, uintptr_t addr, size_t len);
	/* Start the service threads (and handler). */
	int (*start)(struct dsm__pager *pg);
	/* Make the region PROT_NONE, stop fault delivery, join threads. */
	void (*stop)(struct dsm__pager *pg);
	/* Unmap everything reserve mapped; free pg->impl. */
	void (*release)(struct dsm__pager *pg);
};

extern const struct dsm__pager_ops dsm__pager_uffd_ops;
extern const struct dsm__pager_ops dsm__pager_sigsegv_ops;

struct dsm__pager_counters {
	atomic_uint_fast64_t read_faults, write_faults, joined, stale;
	atomic_uint_fast64_t installs, drops, protects;
};

struct dsm__pager {
	const struct dsm__pager_ops *ops;
	uintptr_t base;
	size_t size;
	size_t pgsz;
	unsigned pgshift;
	size_t npages;
	_Atomic uint32_t *st;   /* npages state words (MAP_NORESERVE) */
	_Atomic uint64_t *used; /* one bit per group of state words, see above */
	unsigned gshift;        /* log2 of the pages of a group */
	const void *zero;       /* one read-only page of zeros */
	int nthreads;
	long spin_ns;
	bool inline_faults;     /* sigsegv: see dsm__pager_cfg */
	dsm__pager_read_fn read_fault;
	dsm__pager_write_fn write_fault;
	void *arg;
	int started, stopped;   /* caller's thread only */
	void *impl;             /* backend state */
	struct dsm__pager_counters cnt;
};

static inline uintptr_t dsm__pager_addr(const struct dsm__pager *pg, size_t idx)
{
	return pg->base + (idx << pg->pgshift);
}

static inline size_t dsm__pager_index(const struct dsm__pager *pg, uintptr_t addr)
{
	return (addr - pg->base) >> pg->pgshift;
}

/* Is a fault of this kind still to be served when the page has access acc? */
static inline bool dsm__pager_pending(int kind, unsigned acc)
{
	return kind == DSM__PAGER_K_WRITE_PRESENT ? acc == DSM__PAGER_READ
						   : acc == DSM__PAGER_NONE;
}

#define DSM__PAGER_CPU_RELAX() DSM__CPU_RELAX()

/* futex on a state word or a counter; async-signal-safe. */
void dsm__pager_futex_wait(_Atomic uint32_t *w, uint32_t val);
void dsm__pager_futex_wake(_Atomic uint32_t *w, int n);

/*
 * Service thread, with FAULT held on page idx (claimed by the caller): run
 * the callback for kind; on error call the fatal handler (never returns).
 * Then clear FAULT, SKIP and WAIT, wake futex waiters, and return the state
 * word as it was just before (so the caller sees SKIP and the access).
 */
uint32_t dsm__pager_fault_run(struct dsm__pager *pg, size_t idx, int kind);

/* Map [pg->base, +pg->size) with prot and flags (MAP_SHARED or
 * MAP_PRIVATE | MAP_ANONYMOUS; fd or -1) at exactly pg->base with
 * MAP_FIXED_NOREPLACE | MAP_NORESERVE, not inherited by fork, no huge
 * pages. DSM_EADDRINUSE (logged naming DSM_BASE) if the range is taken. */
int dsm__pager_map_region(struct dsm__pager *pg, int prot, int flags, int fd);

/* The system call table in use (syscall.c): the slots of struct
 * dsm__pager_syscalls (pager.h), each atomic so that a test may replace it
 * while service threads call it. Call as DSM__SYS(mprotect)(a, len, prot). */
struct dsm__pager_sys_slots {
	void *(*_Atomic mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
	int (*_Atomic munmap)(void *addr, size_t len);
	int (*_Atomic mprotect)(void *addr, size_t len, int prot);
	int (*_Atomic madvise)(void *addr, size_t len, int advice);
	int (*_Atomic ioctl)(int fd, unsigned long req, ...);
	int (*_Atomic userfaultfd)(int flags);
	int (*_Atomic memfd_create)(const char *name, unsigned flags);
	int (*_Atomic ftruncate)(int fd, off_t len);
	int (*_Atomic fallocate)(int fd, int mode, off_t off, off_t len);
};

extern struct dsm__pager_sys_slots dsm__pager_sys;

#define DSM__SYS(slot) atomic_load_explicit(&dsm__pager_sys.slot, memory_order_acquire)

/* The live pager (at most one per process; NULL when none). */
extern struct dsm__pager *_Atomic dsm__pager_live;

/* fork.c: set in the child of a fork() made while a pager existed (see
 * dsm__pager_forked); the pager's functions then return DSM_ECLOSED. */
extern atomic_bool dsm__pager_in_child;

static inline bool dsm__pager_child(void)
{
	return atomic_load_explicit(&dsm__pager_in_child, memory_order_relaxed);
}

/* fork.c: register the atfork child handler (once per process). 0 or
 * DSM_ENOMEM. */
int dsm__pager_fork_init(void);

/* fork.c, in a forked child: map the region's range PROT_NONE (again, after
 * the backend's release unmapped it), so that a touch still ends the child
 * with the message. Async-signal-safe. */
void dsm__pager_fork_guard(void);

#endif /* DSM_PAGER_PAGER_BACKEND_H */
