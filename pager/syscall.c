/*
 * The pager's system call table: every system call by which the backends
 * (and pager.c) change memory mappings or talk to userfaultfd goes through
 * one slot of dsm__pager_sys, so that a test can replace a call to inject
 * a failure (as SQLite's os_unix.c aSyscall[]), e.g. ENOMEM from mprotect
 * or from UFFDIO_WRITEPROTECT, and check what the layers above do with it.
 * Not in the table: futex, epoll, eventfd, the read of fault reports,
 * sigaction and thread calls (the fault-delivery plumbing, not page
 * operations).
 *
 * Cost: one atomic (acquire) load of the slot, a plain load on x86-64, and
 * an indirect call; the defaults are the libc functions themselves, except
 * userfaultfd, which libc does not wrap.
 */
#include "pager-backend.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_userfaultfd(int flags)
{
	return (int)syscall(SYS_userfaultfd, flags);
}

static const struct dsm__pager_syscalls defaults = {
	.mmap = mmap,
	.munmap = munmap,
	.mprotect = mprotect,
	.madvise = madvise,
	.ioctl = ioctl,
	.userfaultfd = sys_userfaultfd,
	.memfd_create = memfd_create,
	.ftruncate = ftruncate,
	.fallocate = fallocate,
};

struct dsm__pager_sys_slots dsm__pager_sys = {
	.mmap = mmap,
	.munmap = munmap,
	.mprotect = mprotect,
	.madvise = madvise,
	.ioctl = ioctl,
	.userfaultfd = sys_userfaultfd,
	.memfd_create = memfd_create,
	.ftruncate = ftruncate,
	.fallocate = fallocate,
};

/* The two structs must list the same slots. */
_Static_assert(sizeof(struct dsm__pager_syscalls) == sizeof(struct dsm__pager_sys_slots),
	       "dsm__pager_syscalls and dsm__pager_sys_slots differ");
_Static_assert(sizeof(struct dsm__pager_syscalls) == 9 * sizeof(void (*)(void)),
	       "a slot was added: update defaults, dsm__pager_sys, get and set");

void dsm__pager_syscalls_get(struct dsm__pager_syscalls *out)
{
	out->mmap = DSM__SYS(mmap);
	out->munmap = DSM__SYS(munmap);
	out->mprotect = DSM__SYS(mprotect);
	out->madvise = DSM__SYS(madvise);
	out->ioctl = DSM__SYS(ioctl);
	out->userfaultfd = DSM__SYS(userfaultfd);
	out->memfd_create = DSM__SYS(memfd_create);
	out->ftruncate = DSM__SYS(ftruncate);
	out->fallocate = DSM__SYS(fallocate);
}

#define SET(slot)                                                                        \
	atomic_store_explicit(&dsm__pager_sys.slot, in && in->slot ? in->slot : defaults.slot, \
			      memory_order_release)

void dsm__pager_syscalls_set(const struct dsm__pager_syscalls *in)
{
	SET(mmap);
	SET(munmap);
	SET(mprotect);
	SET(madvise);
	SET(ioctl);
	SET(userfaultfd);
	SET(memfd_create);
	SET(ftruncate);
	SET(fallocate);
}
