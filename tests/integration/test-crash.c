/*
 * A libdsm program dies of a foreign crash exactly as it would without
 * libdsm: a bad pointer outside the shared region after dsm_init kills it
 * by SIGSEGV (not a backtrace and exit status 1 from a handler that a
 * library of libfabric's installed), with a core where cores are enabled,
 * and dsmrun names the signal. Run once per pager (DSM_PAGER, set by
 * meson); the sigsegv pager's handler must chain to the default action.
 *
 *   test-crash DSMRUN HIJACK_MODULE      the driver (what meson runs)
 *   test-crash victim CASE               one victim process
 *
 * Cases, each run alone (DSM_RANK=0 DSM_NODES=1) and checked with waitpid:
 *   segv, bus, ill, fpe, abort   die by that signal (segv and bus are real
 *                                faults; ill and fpe are raised)
 *   own     the program's own SIGSEGV handler, installed before dsm_init,
 *           is what runs (it exits 42)
 *   core    segv with RLIMIT_CORE raised in a scratch directory: the core
 *           is dumped (only where core_pattern is a plain file name)
 * and under dsmrun -n 2:
 *   rank1   rank 1 crashes: dsmrun exits 139 and reports
 *           "rank 1 killed by signal 11 (SIGSEGV)"
 *   hijack  FI_PROVIDER_PATH names the directory of HIJACK_MODULE, a
 *           provider library that takes the fatal signals when libfabric
 *           loads it inside dsm_init (tests/integration/hijack-fi.c): the
 *           process still dies by SIGSEGV
 *
 * Exits 0, 1 on a failure, 77 when the pager is not available here.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dsm.h>

#define EXIT_SKIP 77
#define EXIT_OWN 42       /* the program's own handler ran */
#define DEADLINE_S 60     /* per victim run */
#define OUT_MAX (64 * 1024)

static const char *self;

/* ---- victim side ------------------------------------------------------ */

static void own_handler(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	(void)ctx;
	_exit(EXIT_OWN);
}

static void crash(const char *what)
{
	if (!strcmp(what, "segv") || !strcmp(what, "own") || !strcmp(what, "core") ||
	    !strcmp(what, "rank1") || !strcmp(what, "hijack")) {
		volatile int *volatile bad = (volatile int *)(uintptr_t)16;

		*bad = 1;
	} else if (!strcmp(what, "bus")) {
		/* A page past the end of an empty file. */
		int fd = memfd_create("test-crash-bus", MFD_CLOEXEC);
		volatile char *p = fd < 0 ? MAP_FAILED :
			mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

		if (p == MAP_FAILED) {
			perror("FAIL: victim bus: memfd_create/mmap");
			exit(2);
		}
		*p = 1;
	} else if (!strcmp(what, "ill")) {
		raise(SIGILL);
	} else if (!strcmp(what, "fpe")) {
		raise(SIGFPE);
	} else if (!strcmp(what, "abort")) {
		abort();
	}
}

static int victim(const char *what)
{
	const char *hijack = getenv("TEST_CRASH_HIJACK");
	int *shared;
	int e;

	if (!strcmp(what, "own")) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = own_handler;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, NULL);
	}
	e = dsm_init(NULL);
	if (e == DSM_ENOTSUP) {
		printf("SKIP: dsm_init: %s (DSM_PAGER=%s)\n", dsm_strerror(e),
		       getenv("DSM_PAGER") ? getenv("DSM_PAGER") : "unset");
		return EXIT_SKIP;
	}
	if (e) {
		fprintf(stderr, "FAIL: victim %s: dsm_init: %s\n", what, dsm_strerror(e));
		return 2;
	}
	if (hijack && !dlopen(hijack, RTLD_LAZY | RTLD_NOLOAD)) {
		fprintf(stderr, "FAIL: victim %s: libfabric did not load %s "
			"(FI_PROVIDER_PATH=%s)\n", what, hijack, getenv("FI_PROVIDER_PATH"));
		return 3;
	}
	/* The pager works before the crash: a shared page, written. */
	shared = dsm_calloc(1, sizeof(*shared));
	if (!shared) {
		fprintf(stderr, "FAIL: victim %s: dsm_calloc failed\n", what);
		return 2;
	}
	*shared = 1;
	if (!strcmp(what, "rank1")) {
		e = dsm_barrier();
		if (e) {
			fprintf(stderr, "FAIL: victim rank1: dsm_barrier: %s\n", dsm_strerror(e));
			return 2;
		}
		if (dsm_rank() != 1) {
			dsm_barrier(); /* until dsmrun stops us */
			return 0;
		}
	}
	fflush(NULL);
	crash(what);
	fprintf(stderr, "FAIL: victim %s: still alive after the crash\n", what);
	return 2;
}

/* ---- driver side ------------------------------------------------------ */

static int failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("FAIL: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	failures++;
}

static void describe(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(st),
			 strsignal(WTERMSIG(st)), WCOREDUMP(st) ? ", core dumped" : "");
	else
		snprintf(buf, len, "wait status %#x", st);
}

/* waitpid with a deadline; kills pid's group on expiry. The wait status. */
static int wait_deadline(pid_t pid)
{
	struct timespec nap = { 0, 10 * 1000 * 1000 };
	int st = 0;

	for (int i = 0; i < DEADLINE_S * 100; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR) {
			perror("waitpid");
			exit(1);
		}
		nanosleep(&nap, NULL);
	}
	printf("FAIL: pid %d still running after %d s: killed\n", (int)pid, DEADLINE_S);
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	failures++;
	return -1;
}

/*
 * Under AddressSanitizer (meson test --setup asan) the victims would die of
 * ASan's own handling of SIGBUS and SIGFPE (a report, then abort) and ASan
 * turns cores off: that is ASan's business, not libdsm's, so the victims
 * get it switched off. Nothing changes without ASan.
 */
static void victim_env(void)
{
	const char *cur = getenv("ASAN_OPTIONS");
	char opts[1024];

	snprintf(opts, sizeof(opts), "%s%shandle_sigbus=0:handle_sigfpe=0:handle_sigill=0:"
		 "handle_abort=0:disable_coredump=0", cur ? cur : "", cur && *cur ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
}

/* Whether a core dump would land in the working directory. */
static int core_plain_file(void)
{
	char pat[256] = "";
	FILE *f = fopen("/proc/sys/kernel/core_pattern", "r");

	if (!f)
		return 0;
	if (!fgets(pat, sizeof(pat), f))
		pat[0] = 0;
	fclose(f);
	return pat[0] && pat[0] != '|' && !strchr(pat, '/');
}

/*
 * Run "self victim what" alone (rank 0 of 1). dir: when not NULL, run it
 * there with cores enabled (only the notes: coredump_filter 0, since the
 * sigsegv pager's region is tens of GiB of shared views). Wait status.
 */
static int run_alone(const char *what, const char *dir)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		struct rlimit rl = { 0, 0 };

		setpgid(0, 0);
		victim_env();
		setenv("DSM_RANK", "0", 1);
		setenv("DSM_NODES", "1", 1);
		unsetenv("DSM_PEERS");
		unsetenv("DSM_BOOTSTRAP");
		if (dir) {
			int fd = open("/proc/self/coredump_filter", O_WRONLY);

			getrlimit(RLIMIT_CORE, &rl);
			rl.rlim_cur = rl.rlim_max;
			if (fd < 0 || write(fd, "0", 1) != 1 || chdir(dir)) {
				perror("victim setup");
				_exit(2);
			}
			close(fd);
		}
		setrlimit(RLIMIT_CORE, &rl);
		execl(self, self, "victim", what, (char *)NULL);
		perror("exec");
		_exit(127);
	}
	return wait_deadline(pid);
}

/* Run "dsmrun -n 2 -t 60 self victim what" with env (NULL: none) added;
 * its output (stdout and stderr) into out. Wait status. */
static int run_dsmrun(const char *dsmrun, const char *what, const char *const *env,
		      char *out, size_t cap)
{
	size_t n = 0;
	int fds[2], st;
	pid_t pid;

	fflush(NULL);
	if (pipe(fds)) {
		perror("pipe");
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		struct rlimit rl = { 0, 0 };

		setpgid(0, 0);
		victim_env();
		setrlimit(RLIMIT_CORE, &rl);
		for (; env && *env; env += 2)
			setenv(env[0], env[1], 1);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		execl(dsmrun, dsmrun, "-n", "2", "-t", "60", self, "victim", what, (char *)NULL);
		perror("exec dsmrun");
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		ssize_t r = read(fds[0], out + n, cap - 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == cap - 1)
			break;
	}
	out[n] = 0;
	close(fds[0]);
	st = wait_deadline(pid);
	printf("  dsmrun output:\n%s", out);
	return st;
}

/* A pager that is not available makes the whole test a skip. */
static void skip_if(int st)
{
	if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == EXIT_SKIP) {
		printf("SKIP: DSM_PAGER=%s is not available here\n",
		       getenv("DSM_PAGER") ? getenv("DSM_PAGER") : "unset");
		exit(EXIT_SKIP);
	}
}

static void check_core(void)
{
	char dir[] = "/tmp/test-crash-XXXXXX";
	struct rlimit rl;
	char how[128];
	int st;

	if (getrlimit(RLIMIT_CORE, &rl) || rl.rlim_max == 0 || !core_plain_file()) {
		printf("note: core: not checked (hard RLIMIT_CORE 0, or core_pattern "
		       "is a pipe or a path)\n");
		return;
	}
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	st = run_alone("core", dir);
	describe(st, how, sizeof(how));
	if (st == -1 || !WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV || !WCOREDUMP(st))
		fail("alone core: %s, want killed by signal 11 with a core", how);
	else
		printf("ok: alone core: %s\n", how);
	/* the core, named after core_pattern: everything in dir goes */
	{
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			printf("note: could not remove %s\n", dir);
	}
}

static int driver(const char *dsmrun, const char *hijack)
{
	static const struct {
		const char *what;
		int sig;  /* > 0: killed by it */
		int code; /* else: this exit status */
	} alone[] = {
		{ "segv", SIGSEGV, 0 }, { "bus", SIGBUS, 0 }, { "ill", SIGILL, 0 },
		{ "fpe", SIGFPE, 0 },   { "abort", SIGABRT, 0 }, { "own", 0, EXIT_OWN },
	};
	static char out[OUT_MAX];
	char how[128], dir[4096];
	int st;

	for (size_t i = 0; i < sizeof(alone) / sizeof(alone[0]); i++) {
		st = run_alone(alone[i].what, NULL);
		skip_if(st);
		describe(st, how, sizeof(how));
		if (st == -1 || (alone[i].sig && (!WIFSIGNALED(st) || WTERMSIG(st) != alone[i].sig)) ||
		    (!alone[i].sig && (!WIFEXITED(st) || WEXITSTATUS(st) != alone[i].code)))
			fail("alone %s: %s, want %s %d", alone[i].what, how,
			     alone[i].sig ? "killed by signal" : "exit status",
			     alone[i].sig ? alone[i].sig : alone[i].code);
		else
			printf("ok: alone %s: %s\n", alone[i].what, how);
	}
	check_core();

	st = run_dsmrun(dsmrun, "rank1", NULL, out, sizeof(out));
	describe(st, how, sizeof(how));
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 128 + SIGSEGV ||
	    !strstr(out, "dsmrun: rank 1 killed by signal 11 (SIGSEGV)\n"))
		fail("dsmrun rank1: %s, want exit status 139 and the line "
		     "'dsmrun: rank 1 killed by signal 11 (SIGSEGV)'", how);
	else
		printf("ok: dsmrun rank1: %s, signal reported\n", how);

	snprintf(dir, sizeof(dir), "%s", hijack);
	{
		const char *env[] = { "FI_PROVIDER_PATH", dirname(dir),
				      "TEST_CRASH_HIJACK", hijack, NULL };

		st = run_dsmrun(dsmrun, "hijack", env, out, sizeof(out));
	}
	describe(st, how, sizeof(how));
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 128 + SIGSEGV ||
	    !strstr(out, "killed by signal 11 (SIGSEGV)\n"))
		fail("dsmrun hijack: %s, want exit status 139 and a rank killed by "
		     "signal 11 (SIGSEGV)", how);
	else
		printf("ok: dsmrun hijack: %s, signal reported\n", how);

	printf("%s (DSM_PAGER=%s)\n", failures ? "FAILED" : "passed",
	       getenv("DSM_PAGER") ? getenv("DSM_PAGER") : "unset");
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	char *hijack, *me;
	int ret;

	self = argv[0];
	if (argc == 3 && !strcmp(argv[1], "victim"))
		return victim(argv[2]);
	if (argc != 3) {
		fprintf(stderr, "usage: test-crash DSMRUN HIJACK_MODULE | test-crash victim CASE\n");
		return 2;
	}
	/* self must stay runnable from the victims' working directories */
	me = realpath(argv[0], NULL);
	hijack = realpath(argv[2], NULL);
	if (!me || !hijack) {
		perror(me ? argv[2] : argv[0]);
		free(me);
		return 1;
	}
	self = me;
	setvbuf(stdout, NULL, _IOLBF, 0);
	ret = driver(argv[1], hijack);
	free(hijack);
	free(me);
	return ret;
}
