/*
 * The pager: owns the shared region and every change of a page's mapping,
 * and turns a load or store on a page the node does not hold into a call of
 * the layer above. It knows nothing of the protocol or the network.
 *
 * Two backends behind one ops table (pager-backend.h), chosen by DSM_PAGER:
 *   uffd     userfaultfd (UFFD_USER_MODE_ONLY, works unprivileged): missing
 *            faults resolved with UFFDIO_COPY, write tracking with
 *            userfaultfd write-protect, drop with MADV_DONTNEED.
 *   sigsegv  mprotect + a SIGSEGV handler; pages are written through a
 *            second, writable alias mapping of the same memfd, then the
 *            application view is mprotect'ed.
 *
 * Page model. Every page of the region is in one of three states:
 *   DSM__PAGER_NONE  not present: no contents; any access traps.
 *   DSM__PAGER_READ  present, read-only: loads run at full speed; a store
 *                    traps as a write fault with present = true.
 *   DSM__PAGER_RW    present, writable: nothing traps.
 * Transitions:
 *   NONE -> READ/RW  dsm__pager_install() (bytes + access, atomically: no
 *                    thread ever sees part of a page).
 *   READ <-> RW      dsm__pager_protect() (contents kept).
 *   any  -> NONE     dsm__pager_drop(), or dsm__pager_protect(NONE): the
 *                    contents are discarded and the memory returned.
 * protect() and drop() apply to the pages of the range that are present and
 * leave not-present pages alone (so a range may be sparse).
 *
 * Faults. A touch of a page that does not allow it calls, on a pager
 * service thread, or with the sigsegv backend and cfg.inline_faults in the
 * faulting thread's SIGSEGV handler (the callback then must not wait for
 * anything the interrupted code may hold):
 *   read_fault(arg, page)            a load of a NONE page;
 *   write_fault(arg, page, present)  a store: present = true for a READ
 *                                    page, false for a NONE page (the one
 *                                    combined callback: no read fault first).
 * The callback returns 0 once the page allows the access (normally it
 * fetches the bytes and calls dsm__pager_install(); for a write fault on a
 * present page it calls dsm__pager_protect(RW)), or a negative DSM_E*
 * code. The faulting access then retries; if the callback returned 0
 * without making the access possible, the access traps again and the
 * callback is called again. If the write callback installs READ, the store
 * traps again as a write fault with present = true.
 * Several threads faulting on one page produce one callback; they all
 * resume when it returns. Faults on different pages are served concurrently
 * by up to DSM_PAGER_THREADS service threads.
 *
 * Failure. A callback error means the instruction cannot complete. The pager
 * then calls the process-wide fatal handler (dsm__pager_set_fatal_handler,
 * forwarded by dsm_set_fault_handler) on the service thread, once, with the
 * page address and the code; the fault is not retried. The default prints
 * the address and dsm_strerror(err) to stderr and ends the process with
 * _exit(DSM_EXIT_FAULT). If a handler returns, the pager ends the process
 * the same way: this is the one place where the library ends a process.
 *
 * Threads. Every function may be called from any thread, including from
 * inside a fault callback and from threads of the layer above. Calls that
 * change the same page are serialised by the pager (a per-page bit); calls
 * on different pages run in parallel. Callbacks must not touch a page of the
 * region that is not accessible (the thread would wait for its own fault).
 *
 * Limits (both backends): the kernel never faults on behalf of a system
 * call, so a system call given a not-accessible page of the region fails
 * with EFAULT (UFFD_USER_MODE_ONLY; PROT_NONE). sigsegv: every run of pages
 * with the same access is one kernel mapping, bounded by vm.max_map_count
 * (default 65530); beyond it protect/install fail with DSM_ENOMEM; on
 * architectures other than x86-64 a store to a NONE page is first served as
 * a read fault.
 *
 * fork(). The child of a fork() made while a pager exists is not a node
 * (fork.c): the region and the pager's threads are not inherited; the
 * region's range is mapped PROT_NONE in the child and a load or store of it
 * prints "libdsm: shared memory at ADDR touched in process PID, a child
 * forked after dsm_init: ..." and ends the child with _exit(DSM_EXIT_FAULT)
 * (the fatal handler is not called: it belongs to the parent); a system
 * call given such an address fails with EFAULT. dsm__pager_forked() is true
 * there and every function below returns DSM_ECLOSED (create, start,
 * install, protect, drop, access) or does only what concerns the child's
 * own copy (stop: nothing; destroy: frees the copy, closes the child's
 * descriptors). The parent is not affected. vfork() and posix_spawn()
 * children (system(), popen()) and a child that execs are not concerned.
 */
#ifndef DSM_PAGER_PAGER_H
#define DSM_PAGER_PAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dsm_errors.h"

/* DSM_EXIT_FAULT (dsm.h, 86): exit status of a process ended because a
 * load or store could not be served (default fatal handler, or a handler
 * that returned). 86 is not used by the shell (126+), by signals (128+n)
 * or by sysexits (64-78). */

/* Default DSM_BASE: 32 TiB. On x86-64 Linux (47-bit user space, 128 TiB) a
 * non-PIE binary and its brk heap sit near 4 MiB, PIE binaries and their
 * heap at 0x55..-0x56.. (85-86 TiB, randomised by up to 1 TiB), mmap'ed
 * libraries, thread stacks and the main stack top-down below 0x7ff... (127
 * TiB, randomised by up to 1 TiB); the mmap area would have to grow by about
 * 90 TiB to reach 32 TiB. ASan's shadow ends at 0x10007fff7fff (16 TiB), so
 * the default also works under ASan. TSan reserves other ranges: under TSan
 * set DSM_BASE to a range of TSan's application memory. */
#define DSM__PAGER_DEFAULT_BASE ((uintptr_t)0x200000000000ull)
/* Default DSM_HEAP_SIZE: 64 GiB of address space; nothing is committed
 * until a page is installed. */
#define DSM__PAGER_DEFAULT_SIZE ((size_t)64 << 30)
/* Default DSM_PAGER_THREADS. */
#define DSM__PAGER_DEFAULT_THREADS 4
#define DSM__PAGER_MAX_THREADS 64

enum dsm__pager_access {
	DSM__PAGER_NONE = 0,
	DSM__PAGER_READ = 1,
	DSM__PAGER_RW = 2,
};

/* Fault callbacks: run on a pager service thread, may block. See above. */
typedef int (*dsm__pager_read_fn)(void *arg, void *page);
typedef int (*dsm__pager_write_fn)(void *arg, void *page, bool present);
/* Fatal handler: addr is the page whose access could not be served, err the
 * callback's negative DSM_E* code. Runs on a pager service thread. */
typedef void (*dsm__pager_fatal_fn)(void *addr, int err);

struct dsm__pager_cfg {
	/* "auto", "uffd" or "sigsegv"; NULL: DSM_PAGER, else "auto". */
	const char *backend;
	/* Region start, page aligned; 0: DSM_BASE, else the default. */
	uintptr_t base;
	/* Region size in bytes (rounded up to pages); 0: DSM_HEAP_SIZE, else
	 * the default. */
	size_t size;
	/* Fault service threads; 0: DSM_PAGER_THREADS, else 4. */
	int threads;
	/* How long a service thread polls for the next fault after serving one
	 * before it blocks; -1: DSM_PAGER_SPIN_NS, else 0 (never spin). */
	long spin_ns;
	/* sigsegv: serve each fault in the faulting thread, in its SIGSEGV
	 * handler, instead of handing it to a service thread (uffd: no
	 * effect). dsm__pager_cfg_from_env: DSM_PAGER_INLINE, else true. */
	bool inline_faults;
	/* Required. */
	dsm__pager_read_fn read_fault;
	dsm__pager_write_fn write_fault;
	void *arg;
};

/* Counters, relaxed. */
struct dsm__pager_stats {
	uint64_t read_faults;   /* read callbacks */
	uint64_t write_faults;  /* write callbacks (present or not) */
	uint64_t joined;        /* faults that waited for a fault already in progress */
	uint64_t stale;         /* fault reports found already served */
	uint64_t installs, drops, protects; /* pages changed */
};

struct dsm__pager;

/* Fill cfg with defaults, then the DSM_* variables (DSM_PAGER, DSM_BASE,
 * DSM_HEAP_SIZE, DSM_PAGER_THREADS, DSM_PAGER_SPIN_NS). 0 or DSM_ECONFIG
 * (logged with the variable's name). Callbacks are left NULL. */
int dsm__pager_cfg_from_env(struct dsm__pager_cfg *cfg);

/* Choose the backend (explicit choice must be available: else DSM_ENOTSUP
 * with the reason logged; auto probes uffd then sigsegv and logs the choice
 * at debug level) and reserve the region PROT_NONE, MAP_NORESERVE, at
 * exactly cfg->base with MAP_FIXED_NOREPLACE. At most one pager exists per
 * process (DSM_EBUSY otherwise). The region is usable once started.
 * Errors: DSM_EINVAL, DSM_ECONFIG, DSM_ENOTSUP, DSM_EADDRINUSE (the range is
 * taken; the log names DSM_BASE), DSM_ENOMEM, DSM_EBUSY, DSM_ESYS. */
int dsm__pager_create(const struct dsm__pager_cfg *cfg, struct dsm__pager **out);

/* Start fault delivery (service threads; sigsegv: install the handler).
 * Pages may be installed before start; no thread may touch the region
 * before start. 0, DSM_EINVAL (already started), DSM_ESYS. */
int dsm__pager_start(struct dsm__pager *pg);

/* Stop fault delivery and join the service threads. The whole region becomes
 * PROT_NONE: any later access raises SIGSEGV. No application thread may be
 * touching the region. One-way: a stopped pager can only be destroyed. */
void dsm__pager_stop(struct dsm__pager *pg);

/* Stop if needed, unmap the region, free. NULL does nothing. In a forked
 * child: free the child's copy only (see fork() above). */
void dsm__pager_destroy(struct dsm__pager *pg);

void *dsm__pager_base(const struct dsm__pager *pg);
size_t dsm__pager_size(const struct dsm__pager *pg);
size_t dsm__pager_page_size(const struct dsm__pager *pg);
/* "uffd" or "sigsegv". */
const char *dsm__pager_backend(const struct dsm__pager *pg);

/* Install a NONE page with a copy of src (page-size bytes; NULL: zeros) and
 * access READ or RW, atomically: no thread sees part of it; threads waiting
 * on the page resume. src must be readable (not a NONE page of the region).
 * 0; DSM_EBUSY if the page is present (nothing changed); DSM_EINVAL (not a
 * page of the region, or access NONE); DSM_ENOMEM; DSM_ESYS. */
int dsm__pager_install(struct dsm__pager *pg, void *page, const void *src, int access);

/* Install the n NONE pages from page on with copies of the n pages at src
 * (never NULL) and access READ or RW, in one system call: each page
 * atomically, all or none. DSM_EBUSY (nothing changed) if one of them is
 * present; otherwise as dsm__pager_install. */
int dsm__pager_install_run(struct dsm__pager *pg, void *page, const void *src, size_t n,
			   int access);

/* Set the access of the present pages of [addr, addr+len) (page aligned) to
 * READ or RW, contents kept; NONE is dsm__pager_drop(). Not-present pages
 * stay not present. A READ page takes a write fault on its next store; an
 * RW page takes none. 0 or DSM_EINVAL, DSM_ENOMEM, DSM_ESYS (pages already
 * changed stay changed). */
int dsm__pager_protect(struct dsm__pager *pg, void *addr, size_t len, int access);

/* Make the present pages of [addr, addr+len) not present: contents
 * discarded, memory released; the next touch faults. 0 or DSM_EINVAL,
 * DSM_ESYS. */
int dsm__pager_drop(struct dsm__pager *pg, void *addr, size_t len);

/* Access the pager records for the page holding addr (a snapshot), or
 * DSM_EINVAL if addr is outside the region. */
int dsm__pager_access(struct dsm__pager *pg, const void *addr);

void dsm__pager_get_stats(const struct dsm__pager *pg, struct dsm__pager_stats *out);

/* True in the child of a fork() made while a pager existed in the parent
 * (after dsm_init), and in its descendants: such a process is not a node
 * (see fork() above). Any thread; async-signal-safe; one relaxed load. */
bool dsm__pager_forked(void);

/* Set the process-wide fatal handler; NULL restores the default. */
void dsm__pager_set_fatal_handler(dsm__pager_fatal_fn fn);

/* Call the fatal handler for addr and err, then end the process with
 * DSM_EXIT_FAULT. Never returns. */
_Noreturn void dsm__pager_fatal(void *addr, int err);

/*
 * The system calls of the pager, for tests that inject failures (the model
 * is SQLite's os_unix.c aSyscall[]). Each slot has the libc prototype
 * (ioctl is variadic, as in libc: the pager always passes one pointer);
 * userfaultfd(flags) stands for syscall(SYS_userfaultfd, flags). Which
 * backend operation makes which call:
 *   uffd     create: userfaultfd, ioctl (UFFDIO_API, UFFDIO_REGISTER), mmap,
 *                    mprotect, madvise (MADV_DONTFORK, MADV_NOHUGEPAGE);
 *            install: ioctl UFFDIO_COPY; protect: ioctl UFFDIO_WRITEPROTECT;
 *            drop: madvise MADV_DONTNEED; stop: mprotect, ioctl
 *            UFFDIO_UNREGISTER; fault service: ioctl UFFDIO_WAKE; destroy:
 *            munmap.
 *   sigsegv  create: memfd_create, ftruncate, mmap (region and alias),
 *            madvise; install: mprotect (after a memcpy into the alias; on
 *            failure fallocate punches the page out); protect: mprotect;
 *            drop: mprotect PROT_NONE then fallocate PUNCH_HOLE; stop:
 *            mprotect; destroy: munmap.
 *   both     create: mmap of the state words and of the zero page.
 * A replacement fails as the kernel does: errno set, -1 (MAP_FAILED for
 * mmap). The pager converts errno once, where the call returns, to the
 * codes its functions document (install and protect: ENOMEM -> DSM_ENOMEM,
 * anything else -> DSM_ESYS; install also EEXIST -> DSM_EBUSY, EFAULT ->
 * DSM_EINVAL; drop: DSM_ESYS), and a page whose call failed keeps the
 * access it had, in the records and in the kernel.
 */
struct dsm__pager_syscalls {
	void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
	int (*munmap)(void *addr, size_t len);
	int (*mprotect)(void *addr, size_t len, int prot);
	int (*madvise)(void *addr, size_t len, int advice);
	int (*ioctl)(int fd, unsigned long req, ...);
	int (*userfaultfd)(int flags);
	int (*memfd_create)(const char *name, unsigned flags);
	int (*ftruncate)(int fd, off_t len);
	int (*fallocate)(int fd, int mode, off_t off, off_t len);
};

/* Fill *out with the calls in use now (initially the real ones: a test
 * keeps them to pass through the calls it does not fail). Any thread. */
void dsm__pager_syscalls_get(struct dsm__pager_syscalls *out);

/* Use the calls in *in from now on, in every pager of the process; a NULL
 * slot, or in == NULL, restores the real call. To replace one call:
 *   struct dsm__pager_syscalls sys;
 *   dsm__pager_syscalls_get(&sys);   (and keep a copy as the real ones)
 *   sys.mprotect = failing_mprotect;
 *   dsm__pager_syscalls_set(&sys);
 *   ...
 *   dsm__pager_syscalls_set(NULL);
 * Any thread, at any time: each slot is replaced atomically (a pager call
 * already under way may still use the previous function of a slot; slots
 * are not replaced together as one). For tests only; not thread-safe
 * against concurrent set calls. */
void dsm__pager_syscalls_set(const struct dsm__pager_syscalls *in);

/* Parse a size with an optional binary suffix K, M, G, T (also KiB, ...,
 * case-insensitive): "64G" = 64 << 30. 0 or DSM_ECONFIG. */
int dsm__pager_parse_size(const char *s, uint64_t *out);

#endif /* DSM_PAGER_PAGER_H */
