/*
 * A process forked from a node: the child of a fork() made while a pager
 * exists is not a node. It has none of the pager's threads, the region and
 * the state words are not inherited (MADV_DONTFORK), and the backends'
 * descriptors it inherits refer to the parent's objects (a userfaultfd acts
 * on the parent's address space, the sigsegv memfd holds the parent's
 * pages, the uffd stop eventfd would wake the parent's threads). So in the
 * child:
 *   - a pthread_atfork child handler maps the region PROT_NONE (anonymous,
 *     not registered with any userfaultfd) and installs a SIGSEGV handler;
 *   - a load or store of the region prints one line naming the address and
 *     the process and ends the child with exit status DSM_EXIT_FAULT;
 *   - dsm__pager_forked() is true, the pager's functions return
 *     DSM_ECLOSED (and dsm__pager_destroy only frees the child's copy),
 *     so nothing the child does reaches the parent.
 * The parent is unaffected. vfork() and posix_spawn() (which system() and
 * popen() use) run no atfork handlers and need none: the child execs.
 * A child that execs right after fork() loses all of this with the exec.
 */
#include "pager-backend.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

atomic_bool dsm__pager_in_child;

/* In the child only, written by the atfork handler before the signal
 * handler is installed, then read-only. */
static uintptr_t child_base;
static size_t child_size;
static struct sigaction child_prev; /* SIGSEGV action before ours */

bool dsm__pager_forked(void)
{
	return atomic_load_explicit(&dsm__pager_in_child, memory_order_relaxed);
}

/* Async-signal-safe formatting into buf at *n (bounded by cap). */
static void put_str(char *buf, size_t cap, size_t *n, const char *s)
{
	while (*s && *n < cap)
		buf[(*n)++] = *s++;
}

static void put_num(char *buf, size_t cap, size_t *n, uintmax_t v, unsigned radix)
{
	char tmp[32];
	size_t k = 0;

	do {
		tmp[k++] = "0123456789abcdef"[v % radix];
		v /= radix;
	} while (v && k < sizeof(tmp));
	while (k && *n < cap)
		buf[(*n)++] = tmp[--k];
}

/* The previous action, as the sigsegv backend chains (sigsegv.c chain()). */
static void child_chain(int sig, siginfo_t *si, void *ctx)
{
	struct sigaction dfl;

	if (child_prev.sa_flags & SA_SIGINFO) {
		child_prev.sa_sigaction(sig, si, ctx);
		return;
	}
	if (child_prev.sa_handler != SIG_DFL && child_prev.sa_handler != SIG_IGN) {
		child_prev.sa_handler(sig);
		return;
	}
	/* Returning re-executes the access, which now takes the default
	 * action: the process dies of SIGSEGV, with a core where enabled. */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
}

/* SIGSEGV in the child (signal context): a touch of the region ends the
 * child with a message; anything else goes to the previous handler. */
static void on_child_segv(int sig, siginfo_t *si, void *ctx)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	char line[320];
	size_t n = 0;

	if (si->si_code <= 0 || a - child_base >= child_size) { /* sent, or not ours */
		child_chain(sig, si, ctx);
		return;
	}
	put_str(line, sizeof(line), &n, "libdsm: shared memory at 0x");
	put_num(line, sizeof(line), &n, a, 16);
	put_str(line, sizeof(line), &n, " touched in process ");
	put_num(line, sizeof(line), &n, (uintmax_t)getpid(), 10);
	put_str(line, sizeof(line), &n,
		", a child forked after dsm_init: a forked child is not a node and "
		"cannot use shared memory\n");
	for (size_t off = 0; off < n;) {
		ssize_t w = write(2, line + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	/* exit_group directly, not _exit(): AddressSanitizer instruments a
	 * call of a noreturn function with a stack unpoisoning that allocates,
	 * and in a child forked while another thread held its allocator's
	 * lock that waits forever. */
	syscall(SYS_exit_group, DSM_EXIT_FAULT);
	__builtin_unreachable();
}

/* pthread_atfork child handler: runs in the child of every fork() of the
 * process, in the forking thread, before fork() returns there; only
 * async-signal-safe calls. A grandchild inherits the mapping, the handler
 * and the flag from its parent, so there is nothing more to do. */
static void atfork_child(void)
{
	struct dsm__pager *pg = atomic_load(&dsm__pager_live);
	struct sigaction sa;

	if (!pg || atomic_load(&dsm__pager_in_child))
		return;
	atomic_store(&dsm__pager_in_child, true);
	child_base = pg->base;
	child_size = pg->size;
	dsm__pager_fork_guard();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_child_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (!sigaction(SIGSEGV, NULL, &child_prev))
		sigaction(SIGSEGV, &sa, NULL);
}

void dsm__pager_fork_guard(void)
{
	/* The region is not inherited (MADV_DONTFORK): take its place so that
	 * nothing else is mapped there and every touch faults here. If it
	 * cannot be mapped, a touch still faults (SEGV_MAPERR) and is ours. */
	DSM__SYS(mmap)((void *)child_base, child_size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_err;

static void atfork_register(void)
{
	atfork_err = pthread_atfork(NULL, NULL, atfork_child);
}

int dsm__pager_fork_init(void)
{
	pthread_once(&atfork_once, atfork_register);
	return atfork_err ? DSM_ENOMEM : 0;
}
