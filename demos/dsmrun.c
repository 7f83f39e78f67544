/*
 * dsmrun: the zero-configuration local launcher (DESIGN.md section 7).
 *
 *   dsmrun [-n N] [-t SECONDS] [--] PROGRAM [ARGS...]
 *
 * Starts N copies of PROGRAM on this machine as the ranks of one libdsm job
 * on loopback, forwards their output line by line with a "[RANK] " prefix,
 * and exits with the job's status, the way mpirun does.
 *
 * Contract with the library (names fixed): each rank gets DSM_RANK,
 * DSM_NODES, DSM_PEERS ("127.0.0.1:PORT,..." in rank order) and DSM_CLUSTER
 * (random nonzero 32-bit id, the same for the whole job).  DSM_BOOTSTRAP is
 * removed: the job's peers are all in DSM_PEERS.
 *
 * Process groups and signals.  Each rank is made the leader of its own
 * process group (setpgid in both parent and child, as a shell does for a
 * job).  The ranks are therefore never in the terminal's foreground group:
 * a Ctrl-C reaches dsmrun only, and dsmrun forwards exactly one copy of
 * SIGINT / SIGTERM / SIGHUP to every rank's group.  A second such signal
 * sends SIGKILL.  Signalling a rank's group (kill(-pid)) also reaches the
 * helpers a rank spawned (e.g. the `sleep` under `sh -c`), which killing the
 * pid alone would leave behind.  The group is only signalled while its
 * leader is still unreaped, so its pid (and pgid) cannot have been reused;
 * if the rank left its group, the rank's pid alone is signalled.  dsmrun
 * never signals its own group or the caller's.  Each rank also gets
 * PR_SET_PDEATHSIG(SIGKILL), so it does not outlive a dsmrun that was itself
 * killed.  Every rank's stdin is /dev/null (a background group reading the
 * terminal would be stopped by SIGTTIN).  Ctrl-Z stops dsmrun only.
 *
 * Single-threaded: one poll loop over a signalfd (SIGCHLD, SIGINT, SIGTERM,
 * SIGHUP, all blocked) and the ranks' stdout/stderr pipes.  dsmrun is the
 * only writer of its stdout/stderr and writes whole prefixed lines, so lines
 * of different ranks never interleave.  It links nothing but libc.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NODES_DEFAULT 2
#define NODES_MAX 64
#define GRACE_MS_DEFAULT 2000
#define KILL_AFTER_MS 1000      /* SIGTERM -> SIGKILL escalation */
#define LINE_CAP (64 * 1024)    /* longer lines are split */
#define SINK_CAP (2 * LINE_CAP) /* always holds one prefixed line */
#define DRAIN_READS_MAX 64      /* 4 MiB, more than a full pipe holds */

/* Exit statuses of dsmrun itself (GNU timeout's conventions). */
#define EXIT_USAGE 2
#define EXIT_DEADLINE 124
#define EXIT_INTERNAL 125
#define EXIT_CANNOT_RUN 127

/* Variables dsmrun sets (or removes) in every rank's environment. */
static const char *const owned_vars[] = {
	"DSM_RANK", "DSM_NODES", "DSM_PEERS", "DSM_CLUSTER", "DSM_BOOTSTRAP",
};
#define N_OWNED (sizeof owned_vars / sizeof owned_vars[0])

static const char usage_text[] =
	"usage: dsmrun [-n N] [-t SECONDS] [--] PROGRAM [ARGS...]\n"
	"\n"
	"Start N copies of PROGRAM on this machine as the ranks of one libdsm\n"
	"job over loopback UDP, and forward every line they write to stdout or\n"
	"stderr to dsmrun's stdout or stderr, prefixed with \"[RANK] \".\n"
	"\n"
	"options:\n"
	"  -n N          number of ranks, 1..64 (default 2)\n"
	"  -t SECONDS    deadline: when it passes, kill all ranks and exit 124\n"
	"  -h, --help    print this help and exit\n"
	"\n"
	"set in each rank's environment (values already set are overridden):\n"
	"  DSM_RANK      the rank, 0..N-1\n"
	"  DSM_NODES     N\n"
	"  DSM_PEERS     127.0.0.1:PORT,... one free UDP port per rank, in rank order\n"
	"  DSM_CLUSTER   random nonzero 32-bit id shared by the ranks of this job\n"
	"DSM_BOOTSTRAP is removed. Each rank's stdin is /dev/null.\n"
	"\n"
	"environment:\n"
	"  DSMRUN_GRACE_MS  after a rank fails, how long the others may still run\n"
	"                   before SIGTERM (default 2000); SIGKILL 1 s after that\n"
	"\n"
	"SIGINT, SIGTERM and SIGHUP are forwarded to every rank (each rank runs\n"
	"in its own process group); a second one kills the ranks with SIGKILL.\n"
	"\n"
	"exit status: 0 if every rank exited 0; otherwise the first failure in\n"
	"time: the rank's exit code, or 128+N if signal N killed it; 124 if the\n"
	"deadline passed; 127 if PROGRAM cannot be run; 2 on a usage error;\n"
	"125 if dsmrun itself failed.\n";

/* One output pipe of one rank, and the partial line read from it. */
struct stream {
	int fd;                 /* read end, non-blocking; -1 once closed */
	int sink;               /* 0: our stdout, 1: our stderr */
	size_t len;             /* bytes in buf, no '\n' among them */
	char buf[LINE_CAP];
};

struct rank {
	pid_t pid;              /* 0 if never started */
	bool alive;             /* started and not yet reaped */
	bool signalled;         /* dsmrun sent it a signal */
	char prefix[8];         /* "[RANK] " */
	size_t prefix_len;
	struct stream io[2];    /* [0] its stdout, [1] its stderr */
};

/* Where forwarded lines go: our stdout or stderr, batched. */
struct sink {
	int fd;
	bool broken;            /* EPIPE or other write error: discard */
	size_t len;
	char buf[SINK_CAP];
};

static struct sink sinks[2] = { { .fd = STDOUT_FILENO }, { .fd = STDERR_FILENO } };

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes all of buf to fd, waiting if fd is non-blocking.
 * Returns 0, or -errno (-EPIPE when the reader went away). */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = fd, .events = POLLOUT };

				poll(&p, 1, -1);
				continue;
			}
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void sink_flush(struct sink *s);

/* dsmrun's own diagnostics: one line on stderr, after any forwarded
 * stderr lines still batched, so the order on stderr is the order of events. */
__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	sink_flush(&sinks[1]);
	memcpy(line, "dsmrun: ", 8);
	va_start(ap, fmt);
	n = vsnprintf(line + 8, sizeof line - 9, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n = n + 8 > (int)sizeof line - 2 ? (int)sizeof line - 2 : n + 8;
	line[n++] = '\n';
	if (!sinks[1].broken)
		write_all(STDERR_FILENO, line, (size_t)n);
}

/* The ranks, set once in main; the sinks close their pipes when broken. */
static struct rank *ranks;
static int nodes;

/* Our stdout (or stderr) is gone: stop forwarding to it, and close the
 * ranks' read ends so they get SIGPIPE / EPIPE as they would in a shell
 * pipeline.  Messages to a broken stderr are dropped. */
static void sink_break(struct sink *s)
{
	int which = (int)(s - sinks);

	s->broken = true;
	s->len = 0;
	for (int r = 0; r < nodes; r++) {
		struct stream *st = &ranks[r].io[which];

		if (st->fd >= 0) {
			close(st->fd);
			st->fd = -1;
		}
		st->len = 0;
	}
}

static void sink_flush(struct sink *s)
{
	if (s->broken || !s->len)
		return;
	if (write_all(s->fd, s->buf, s->len) < 0)
		sink_break(s);
	s->len = 0;
}

/* Appends one line (without its '\n') of rank r to sink s, prefixed. */
static void sink_line(struct sink *s, const struct rank *r, const char *line, size_t len)
{
	size_t need = r->prefix_len + len + 1;

	if (s->broken)
		return;
	if (s->len + need > sizeof s->buf)
		sink_flush(s);
	if (s->broken)
		return;
	memcpy(s->buf + s->len, r->prefix, r->prefix_len);
	memcpy(s->buf + s->len + r->prefix_len, line, len);
	s->buf[s->len + need - 1] = '\n';
	s->len += need;
}

/* Forwards the complete lines in st->buf[0..len), keeping the partial tail.
 * With at_eof, or when the buffer is full without a newline, the rest is
 * forwarded as a line of its own. */
static void stream_lines(struct rank *r, struct stream *st, bool at_eof)
{
	struct sink *s = &sinks[st->sink];
	char *p = st->buf, *end = st->buf + st->len, *nl;

	while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
		sink_line(s, r, p, (size_t)(nl - p));
		p = nl + 1;
	}
	if (p != st->buf && p != end)
		memmove(st->buf, p, (size_t)(end - p));
	st->len = (size_t)(end - p);
	if (st->len && (at_eof || st->len == sizeof st->buf)) {
		sink_line(s, r, st->buf, st->len);
		st->len = 0;
	}
}

/* Reads what rank r wrote to one of its pipes: once, or with drain until
 * the pipe is empty (bounded, in case a helper the rank left behind keeps
 * writing).  Closes the read end at EOF. */
static void stream_read(struct rank *r, struct stream *st, bool drain)
{
	for (int reads = 0; st->fd >= 0 && reads < DRAIN_READS_MAX; reads++) {
		ssize_t n = read(st->fd, st->buf + st->len, sizeof st->buf - st->len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {   /* EOF, or an error we treat as EOF */
			stream_lines(r, st, true);
			close(st->fd);
			st->fd = -1;
			break;
		}
		st->len += (size_t)n;
		stream_lines(r, st, false);
		if (!drain)
			break;
	}
}

/* Sends sig to rank r: to its process group while it leads one, else to its
 * pid.  Only while r is unreaped, so the pid cannot name another process. */
static void rank_signal(struct rank *r, int sig)
{
	if (!r->alive)
		return;
	r->signalled = true;
	if (getpgid(r->pid) == r->pid)
		kill(-r->pid, sig);
	else
		kill(r->pid, sig);
}

static void signal_all(int sig)
{
	for (int r = 0; r < nodes; r++)
		rank_signal(&ranks[r], sig);
}

static const char *signame(int sig, char *buf, size_t len)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(buf, len, "SIG%s", abbrev);
	else if (sig >= SIGRTMIN && sig <= SIGRTMAX)
		snprintf(buf, len, "SIGRTMIN+%d", sig - SIGRTMIN);
	else
		snprintf(buf, len, "unknown");
	return buf;
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool is_owned(const char *entry)
{
	for (size_t i = 0; i < N_OWNED; i++) {
		size_t n = strlen(owned_vars[i]);

		if (!strncmp(entry, owned_vars[i], n) && entry[n] == '=')
			return true;
	}
	return false;
}

/*
 * Picks n distinct free UDP ports on 127.0.0.1 and writes them as the
 * DSM_PEERS value into peers.  All n sockets stay bound until every port is
 * known, so no two picks collide; they are closed before returning, right
 * before the ranks are started (each rank binds its own port).
 * Returns 0 or -errno.
 */
static int pick_ports(int n, char *peers, size_t len)
{
	int fds[NODES_MAX];
	int i, r = 0;
	size_t off = 0;

	for (i = 0; i < n; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t alen = sizeof a;

		fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0) {
			r = -errno;
			goto close_sockets;
		}
		if (bind(fds[i], (struct sockaddr *)&a, sizeof a) < 0 ||
		    getsockname(fds[i], (struct sockaddr *)&a, &alen) < 0) {
			r = -errno;
			i++;
			goto close_sockets;
		}
		off += (size_t)snprintf(peers + off, len - off, "%s127.0.0.1:%u",
					i ? "," : "", ntohs(a.sin_port));
	}
close_sockets:
	while (i--)
		close(fds[i]);
	return r;
}

/* Parent-side view of the job, for the poll loop. */
struct job {
	int64_t term_at;        /* when to SIGTERM the survivors; -1: not set */
	int64_t kill_at;        /* when to SIGKILL them; -1: not set */
	bool term_sent, kill_sent;
	int64_t deadline_at;    /* -t; -1: none */
	const char *deadline_arg;
	int grace_ms;
	int status;             /* first failure in time; 0 if none yet */
	bool deadline_hit;
	int fwd_signals;        /* SIGINT/SIGTERM/SIGHUP forwarded so far */
	int running;            /* ranks alive */
};

/* Plans SIGTERM to the surviving ranks at time t, and SIGKILL a second
 * later, unless an earlier stop is planned or under way already. */
static void job_stop_at(struct job *j, int64_t t)
{
	if (j->term_sent || (j->term_at >= 0 && j->term_at <= t))
		return;
	j->term_at = t;
	j->kill_at = t + KILL_AFTER_MS;
}

/* A rank failed (or could not start): the first failure sets the exit
 * status and starts the grace period after which the others are stopped. */
static void job_fail(struct job *j, int status, int grace_ms)
{
	if (!j->status)
		j->status = status;
	job_stop_at(j, now_ms() + grace_ms);
}

/* Records the end of rank r.  Its pipes are drained first, so its last
 * words come before dsmrun's report about it. */
static void rank_reaped(struct job *j, struct rank *r, int wstatus)
{
	int rank = (int)(r - ranks);
	char name[32];

	r->alive = false;
	j->running--;
	for (int k = 0; k < 2; k++)
		stream_read(r, &r->io[k], true);
	if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)
		return;
	if (WIFEXITED(wstatus)) {
		if (!r->signalled)
			say("rank %d exited with status %d", rank, WEXITSTATUS(wstatus));
		job_fail(j, WEXITSTATUS(wstatus), j->grace_ms);
	} else if (WIFSIGNALED(wstatus)) {
		int sig = WTERMSIG(wstatus);

		if (!r->signalled)
			say("rank %d killed by signal %d (%s)%s", rank, sig,
			    signame(sig, name, sizeof name),
			    WCOREDUMP(wstatus) ? ", core dumped" : "");
		job_fail(j, 128 + sig, j->grace_ms);
	}
}

static void reap(struct job *j)
{
	for (;;) {
		int wstatus;
		pid_t pid = waitpid(-1, &wstatus, WNOHANG);

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		for (int r = 0; r < nodes; r++) {
			if (ranks[r].alive && ranks[r].pid == pid) {
				rank_reaped(j, &ranks[r], wstatus);
				break;
			}
		}
		/* Not a rank: a child we inherited through exec; just reaped. */
	}
}

static void on_signal(struct job *j, int sig)
{
	if (sig == SIGCHLD) {
		reap(j);
		return;
	}
	if (++j->fwd_signals == 1) {
		signal_all(sig);
	} else {
		if (j->fwd_signals == 2)
			say("second signal: killing all ranks");
		signal_all(SIGKILL);
	}
}

/* Fires the timers that are due. */
static void on_timers(struct job *j, int64_t now)
{
	if (j->deadline_at >= 0 && !j->deadline_hit && now >= j->deadline_at) {
		j->deadline_hit = true;
		say("deadline of %s s passed; killing all ranks", j->deadline_arg);
		job_stop_at(j, now);
	}
	if (!j->term_sent && j->term_at >= 0 && now >= j->term_at) {
		j->term_sent = true;
		signal_all(SIGTERM);
	}
	if (!j->kill_sent && j->kill_at >= 0 && now >= j->kill_at) {
		j->kill_sent = true;
		for (int r = 0; r < nodes; r++) {
			if (ranks[r].alive) {
				say("rank %d did not stop after SIGTERM; sending SIGKILL", r);
				rank_signal(&ranks[r], SIGKILL);
			}
		}
	}
}

static int poll_timeout(const struct job *j, int64_t now)
{
	int64_t next = -1;
	int64_t t[3] = { j->deadline_hit ? -1 : j->deadline_at,
			 j->term_sent ? -1 : j->term_at, j->kill_sent ? -1 : j->kill_at };

	for (int i = 0; i < 3; i++)
		if (t[i] >= 0 && (next < 0 || t[i] < next))
			next = t[i];
	if (next < 0)
		return -1;
	if (next <= now)
		return 0;
	return next - now > INT_MAX ? INT_MAX : (int)(next - now);
}

/*
 * Runs the job until every started rank has been reaped, then forwards
 * what is left in the pipes (helpers a rank left behind may still hold
 * them open; dsmrun does not wait for those) and returns the exit status.
 */
static int job_loop(struct job *j, int sfd)
{
	struct pollfd pfd[1 + 2 * NODES_MAX];
	struct stream *owner[1 + 2 * NODES_MAX];
	struct rank *owner_rank[1 + 2 * NODES_MAX];

	while (j->running > 0) {
		int n = 0, timeout;

		pfd[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		for (int r = 0; r < nodes; r++) {
			for (int k = 0; k < 2; k++) {
				if (ranks[r].io[k].fd < 0)
					continue;
				owner[n] = &ranks[r].io[k];
				owner_rank[n] = &ranks[r];
				pfd[n++] = (struct pollfd){ .fd = ranks[r].io[k].fd,
							    .events = POLLIN };
			}
		}
		timeout = poll_timeout(j, now_ms());
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			return EXIT_INTERNAL;
		}
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
				on_signal(j, (int)si.ssi_signo);
		}
		for (int i = 1; i < n; i++) {
			/* A pipe may have been closed by a reap or a broken sink. */
			if (pfd[i].revents && owner[i]->fd == pfd[i].fd)
				stream_read(owner_rank[i], owner[i], false);
		}
		sink_flush(&sinks[0]);
		sink_flush(&sinks[1]);
		on_timers(j, now_ms());
	}

	for (int r = 0; r < nodes; r++) {
		for (int k = 0; k < 2; k++) {
			struct stream *st = &ranks[r].io[k];

			stream_read(&ranks[r], st, true);
			if (st->len)
				stream_lines(&ranks[r], st, true);
			if (st->fd >= 0)
				close(st->fd);
			st->fd = -1;
		}
	}
	sink_flush(&sinks[0]);
	sink_flush(&sinks[1]);
	return j->deadline_hit ? EXIT_DEADLINE : j->status;
}

/* What a rank's child process needs between fork and exec. */
struct launch {
	char **argv;
	char **envp;
	int devnull;
	sigset_t oldmask;
	pid_t parent;
};

/*
 * Child side of fork: never returns.  Becomes its own process group, dies
 * with dsmrun, takes the pipes as stdout/stderr, restores the signal state
 * dsmrun changed, and execs.  On exec failure, sends errno through the
 * close-on-exec pipe errfd and exits 127.
 */
static void child_exec(const struct launch *l, int out, int err, int errfd)
{
	int e;

	setpgid(0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		goto fail;
	if (getppid() != l->parent)     /* dsmrun died before prctl */
		_exit(EXIT_CANNOT_RUN);
	if (dup2(l->devnull, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
	    dup2(err, STDERR_FILENO) < 0)
		goto fail;
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
	execvpe(l->argv[0], l->argv, l->envp);
fail:
	e = errno;
	while (write(errfd, &e, sizeof e) < 0 && errno == EINTR)
		;
	_exit(EXIT_CANNOT_RUN);
}

/*
 * Starts rank r.  Returns 0 once PROGRAM is running, -errno when dsmrun
 * could not create the process (pipe, fork), or a positive errno when the
 * exec failed (the child has been reaped then).
 */
static int rank_start(const struct launch *l, struct rank *r)
{
	int out[2], err[2], ep[2];
	int e = 0, ret;
	ssize_t n;

	if (pipe2(out, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(err, O_CLOEXEC) < 0) {
		ret = -errno;
		goto fail_err_pipe;
	}
	if (pipe2(ep, O_CLOEXEC) < 0) {
		ret = -errno;
		goto fail_exec_pipe;
	}
	r->pid = fork();
	if (r->pid < 0) {
		ret = -errno;
		r->pid = 0;
		goto fail_fork;
	}
	if (r->pid == 0)
		child_exec(l, out[1], err[1], ep[1]);

	setpgid(r->pid, r->pid);        /* also here: no window before it is set */
	r->alive = true;
	close(out[1]);
	close(err[1]);
	close(ep[1]);
	do
		n = read(ep[0], &e, sizeof e);
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	r->io[0].fd = out[0];
	r->io[1].fd = err[0];
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	if (n == (ssize_t)sizeof e) {
		while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
			;
		r->alive = false;
		return e ? e : ENOEXEC;
	}
	return 0;

fail_fork:
	close(ep[0]);
	close(ep[1]);
fail_exec_pipe:
	close(err[0]);
	close(err[1]);
fail_err_pipe:
	close(out[0]);
	close(out[1]);
	return ret;
}

/* The DSM_* variables of the job; only DSM_RANK differs between ranks. */
struct env {
	char **envp;            /* ours minus owned_vars, then the four below */
	char **rank_slot;       /* the DSM_RANK entry of envp */
	char nodes[sizeof "DSM_NODES=64"];
	char peers[sizeof "DSM_PEERS=" + NODES_MAX * sizeof "127.0.0.1:65535,"];
	char cluster[sizeof "DSM_CLUSTER=4294967295"];
	char rank[NODES_MAX][sizeof "DSM_RANK=-2147483648"];
};

/*
 * Fills e for a job of n ranks: our environment without the variables
 * dsmrun owns, then DSM_NODES, DSM_PEERS, DSM_CLUSTER and a DSM_RANK slot
 * that env_set_rank fills before each fork.  Reports once if it overrides
 * variables the user had set.  Returns 0 or -ENOMEM; env_fini frees.
 */
static int env_init(struct env *e, int n, uint32_t cluster)
{
	extern char **environ;
	size_t count = 0, k = 0;
	char overridden[128] = "";

	while (environ[count])
		count++;
	e->envp = calloc(count + N_OWNED + 1, sizeof *e->envp);
	if (!e->envp)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++)
		if (!is_owned(environ[i]))
			e->envp[k++] = environ[i];
	for (size_t i = 0; i < N_OWNED; i++) {
		if (getenv(owned_vars[i])) {
			if (*overridden)
				strcat(overridden, ", ");
			strcat(overridden, owned_vars[i]);
		}
	}
	if (*overridden)
		say("overriding %s from the environment", overridden);
	snprintf(e->nodes, sizeof e->nodes, "DSM_NODES=%d", n);
	snprintf(e->cluster, sizeof e->cluster, "DSM_CLUSTER=%" PRIu32, cluster);
	for (int r = 0; r < n; r++)
		snprintf(e->rank[r], sizeof e->rank[r], "DSM_RANK=%d", r);
	e->envp[k++] = e->nodes;
	e->envp[k++] = e->peers;    /* filled by the caller from pick_ports */
	e->envp[k++] = e->cluster;
	e->rank_slot = &e->envp[k++];
	e->envp[k] = NULL;
	return 0;
}

static void env_set_rank(struct env *e, int r)
{
	*e->rank_slot = e->rank[r];
}

static void env_fini(struct env *e)
{
	free(e->envp);
	e->envp = NULL;
}

static uint32_t random_cluster(void)
{
	uint32_t id = 0;

	while (!id) {
		if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id) {
			/* No entropy source: still unlikely to collide. */
			id = (uint32_t)now_ms() ^ ((uint32_t)getpid() << 16);
		}
	}
	return id;
}

/* Makes sure fds 0, 1, 2 are open, so pipes and sockets never take them
 * (a pipe on fd 1 would survive exec and dup2 would be a no-op). */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0) {
			int nfd = open("/dev/null", O_RDWR);

			if (nfd > 2)
				close(nfd);
		}
	}
}

__attribute__((format(printf, 1, 2), noreturn))
static void usage_error(const char *fmt, ...)
{
	if (fmt) {
		va_list ap;

		fputs("dsmrun: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fputs("Try 'dsmrun -h' for more information.\n", stderr);
	exit(EXIT_USAGE);
}

/* Parses the command line into *nodes, j's deadline and grace, and returns
 * the index of PROGRAM in argv.  Exits on -h and on usage errors. */
static int parse_args(int argc, char **argv, struct job *j)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *grace;
	long v;
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:hn:t:", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 'n':
			if (!parse_int(optarg, 1, NODES_MAX, &v))
				usage_error("-n must be a number from 1 to %d, not '%s'",
					    NODES_MAX, optarg);
			nodes = (int)v;
			break;
		case 't': {
			char *end;
			double s;

			errno = 0;
			s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(s > 0) || s > 1e9)
				usage_error("-t must be a positive number of seconds, not '%s'",
					    optarg);
			j->deadline_arg = optarg;
			j->deadline_at = now_ms() + (int64_t)(s * 1000 + 0.999);
			break;
		}
		case ':':
			usage_error("option '-%c' needs an argument", optopt);
		default:
			if (optopt)
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		exit(EXIT_USAGE);
	}
	grace = getenv("DSMRUN_GRACE_MS");
	if (grace) {
		if (!parse_int(grace, 0, INT_MAX - 2 * KILL_AFTER_MS, &v))
			usage_error("DSMRUN_GRACE_MS must be a number of milliseconds, not '%s'",
				    grace);
		j->grace_ms = (int)v;
	}
	return optind;
}

/* Starts the ranks one by one.  If one cannot be started, the job has
 * failed: the ranks already running are stopped at once, without grace. */
static void start_ranks(struct job *j, struct launch *l, struct env *env)
{
	for (int r = 0; r < nodes; r++) {
		int e;

		env_set_rank(env, r);
		e = rank_start(l, &ranks[r]);
		if (e < 0) {
			say("cannot start rank %d: %s", r, strerror(-e));
			job_fail(j, EXIT_INTERNAL, 0);
			break;
		}
		if (e > 0) {
			say("cannot run %s: %s", l->argv[0], strerror(e));
			job_fail(j, EXIT_CANNOT_RUN, 0);
			break;
		}
		j->running++;
	}
	if (j->status) {
		j->deadline_at = -1;
		on_timers(j, now_ms());
	}
}

int main(int argc, char **argv)
{
	struct job job = { .term_at = -1, .kill_at = -1, .deadline_at = -1,
			   .grace_ms = GRACE_MS_DEFAULT };
	struct launch l = { .devnull = -1 };
	static struct env env;  /* 2.5 KiB of buffers: not on the stack */
	sigset_t mask;
	int sfd, r, status = EXIT_INTERNAL;

	nodes = NODES_DEFAULT;
	l.argv = &argv[parse_args(argc, argv, &job)];
	l.parent = getpid();
	ensure_std_fds();

	/* Signals arrive through sfd only; SIGPIPE becomes EPIPE. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, &l.oldmask) < 0) {
		say("sigprocmask: %s", strerror(errno));
		goto fail_sigmask;
	}
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		say("signalfd: %s", strerror(errno));
		goto fail_signalfd;
	}
	signal(SIGPIPE, SIG_IGN);

	ranks = calloc((size_t)nodes, sizeof *ranks);
	if (!ranks) {
		say("%s", strerror(ENOMEM));
		goto fail_ranks;
	}
	for (r = 0; r < nodes; r++) {
		ranks[r].prefix_len = (size_t)snprintf(ranks[r].prefix,
						       sizeof ranks[r].prefix, "[%d] ", r);
		ranks[r].io[0] = (struct stream){ .fd = -1, .sink = 0 };
		ranks[r].io[1] = (struct stream){ .fd = -1, .sink = 1 };
	}
	l.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (l.devnull < 0) {
		say("/dev/null: %s", strerror(errno));
		goto fail_devnull;
	}
	r = env_init(&env, nodes, random_cluster());
	if (r < 0) {
		say("%s", strerror(-r));
		goto fail_env;
	}
	memcpy(env.peers, "DSM_PEERS=", sizeof "DSM_PEERS=");
	r = pick_ports(nodes, env.peers + sizeof "DSM_PEERS=" - 1,
		       sizeof env.peers - sizeof "DSM_PEERS=" + 1);
	if (r < 0) {
		say("cannot allocate UDP ports on 127.0.0.1: %s", strerror(-r));
		goto fail_ports;
	}
	l.envp = env.envp;

	start_ranks(&job, &l, &env);
	status = job_loop(&job, sfd);

fail_ports:
	env_fini(&env);
fail_env:
	close(l.devnull);
fail_devnull:
	free(ranks);
fail_ranks:
	close(sfd);
fail_signalfd:
fail_sigmask:
	return status;
}
