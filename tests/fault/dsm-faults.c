/*
 * dsm-faults: the fault-injection harness (DESIGN.md section 9).
 *
 *   dsm-faults [--quick | --all | --death | --scenario NAME[,NAME...]]
 *              [--seed S] [--list] [--keep-logs] [--log-dir DIR]
 *              [--deadline SECONDS] [-v]
 *
 * --quick (the default) is what `meson test --suite fault` runs (test
 * faults-quick), --death the test-peer-death scenarios (test peer-death),
 * --all every scenario, the kills and pauses at several seeds.
 *
 * Runs named scenarios, each with a seed, and prints one table row per
 * scenario: name, seed, PASS/FAIL, seconds, faults injected,
 * retransmissions, datagrams dropped by the receivers. A failure prints why
 * and the one command line that replays it (--scenario NAME --seed S). The
 * exit status is 1 if any scenario failed (2: usage).
 *
 * Every scenario runs real workloads (the matmul demo; test-dsm's counter
 * and multiwriter; test-peer-death) as separate processes on 127.0.0.1,
 * through dsmrun, or launched here with DSM_RANK, DSM_NODES, DSM_PEERS and
 * DSM_CLUSTER as dsmrun does when the harness needs their pids (to kill or
 * stop a node) or their links (the relay, below). Every job runs with
 * DSM_LOG=debug (protocol events) and DSM_STATS=1, and the harness checks:
 *   - the result is exact (the workload's own checks: "check PASS",
 *     "scenario X: ok", "survivor ok", exit statuses);
 *   - nothing hangs: each job has a deadline; when it passes every process
 *     of the job is SIGKILLed by pid and the scenario fails with the last
 *     protocol events of every node and, when gdb is installed, the
 *     library frames of every live node's threads;
 *   - the statistics ("libdsm[R] stats: key=value ..." at dsm_finalize)
 *     show that the faults happened and were handled: fault_* counters,
 *     retransmissions, duplicates / corrupt / malformed / stale / foreign
 *     datagrams dropped, non-zero where injected, and no peer declared dead
 *     where none should be.
 *
 * The relay: for the link outage and the foreign-datagram scenarios every
 * node reaches every other through a UDP socket of this process (node a's
 * DSM_PEERS names, for rank b, the relay socket of link a>b, which forwards
 * to b's own port). It can cut a link for a while, and it keeps copies of
 * real datagrams for the replay attack. The nodes carry the sender's rank
 * in every header, so they do not care where a datagram comes from.
 *
 * Threads: one; a poll loop over the jobs' output pipes and the relay's
 * sockets.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

extern char **environ;

#define MAXN 8
#define MAXLINE 4096
#define RING 10               /* last lines per node kept for a hang report */
#define RING_COLS 300
#define NCAP 128              /* datagrams the relay keeps for replays */
#define EXIT_FAULT_DEFAULT 86 /* DSM_EXIT_FAULT */

#ifndef DSM_FAULTS_DSMRUN
#define DSM_FAULTS_DSMRUN "dsmrun"
#endif
#ifndef DSM_FAULTS_TEST_DSM
#define DSM_FAULTS_TEST_DSM "test-dsm"
#endif
#ifndef DSM_FAULTS_MATMUL
#define DSM_FAULTS_MATMUL "matmul"
#endif
#ifndef DSM_FAULTS_PEER_DEATH
#define DSM_FAULTS_PEER_DEATH "test-peer-death"
#endif

/* ---- utilities --------------------------------------------------------------- */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double secs(int64_t ns)
{
	return (double)ns / 1e9;
}

/* splitmix64: every random decision of a scenario comes from its seed. */
struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static unsigned rng_below(struct rng *r, unsigned n)
{
	return n ? (unsigned)(rng_next(r) % n) : 0;
}

static double rng_uniform(struct rng *r, double lo, double hi)
{
	return lo + (hi - lo) * (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

/* Growable text. */
struct sbuf {
	char *s;
	size_t len, cap;
};

static void sb_vadd(struct sbuf *b, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		return;
	if (b->len + (size_t)n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *s;

		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		s = realloc(b->s, cap);
		if (!s) {
			fprintf(stderr, "dsm-faults: out of memory\n");
			exit(125);
		}
		b->s = s;
		b->cap = cap;
	}
	vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
	b->len += (size_t)n;
}

static void sb_add(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sb_vadd(b, fmt, ap);
	va_end(ap);
}

static const char *sb_str(const struct sbuf *b)
{
	return b->s ? b->s : "";
}

static void sb_free(struct sbuf *b)
{
	free(b->s);
	memset(b, 0, sizeof *b);
}

/* ---- options ------------------------------------------------------------------- */

static struct {
	const char *dsmrun, *test_dsm, *matmul, *peer_death;
	char log_dir[PATH_MAX];
	bool keep_logs, verbose;
	double deadline;         /* --deadline: every job's, instead of the scenario's */
	char self[PATH_MAX];     /* this program, for the replay lines */
} opt = {
	.dsmrun = DSM_FAULTS_DSMRUN,
	.test_dsm = DSM_FAULTS_TEST_DSM,
	.matmul = DSM_FAULTS_MATMUL,
	.peer_death = DSM_FAULTS_PEER_DEATH,
};

/* ---- statistics of a node ("libdsm[R] stats: ...") -------------------------------- */

enum {
	S_RETX, S_DUP, S_CORRUPT, S_MALFORMED, S_STALE, S_FOREIGN, S_WINDOW, S_OOO,
	S_PEERS_DEAD, S_F_DROP, S_F_DUP, S_F_CORRUPT, S_F_REORDER, S_F_DELAY, S_NKEYS
};
static const char *const stat_key[S_NKEYS] = {
	[S_RETX] = "retx", [S_DUP] = "dup_dropped", [S_CORRUPT] = "corrupt_dropped",
	[S_MALFORMED] = "malformed_dropped", [S_STALE] = "stale_dropped",
	[S_FOREIGN] = "foreign_dropped", [S_WINDOW] = "window_dropped", [S_OOO] = "ooo",
	[S_PEERS_DEAD] = "peers_dead", [S_F_DROP] = "fault_drop", [S_F_DUP] = "fault_dup",
	[S_F_CORRUPT] = "fault_corrupt", [S_F_REORDER] = "fault_reorder",
	[S_F_DELAY] = "fault_delay",
};

/* ---- a job: the processes of one run of a workload ------------------------------- */

struct src {                  /* one output pipe */
	int fd;                   /* -1 once closed */
	int rank;                 /* -1: dsmrun's, lines carry "[R] " */
	size_t len;
	char part[MAXLINE];
};

struct node {
	pid_t pid;                /* launched here; 0 under dsmrun */
	bool exited;              /* reaped (or reported by dsmrun) */
	bool signaled;
	int code;                 /* exit status, or the signal */
	int64_t exit_ns;
	int64_t ready_ns;         /* printed the ready marker */
	int64_t err_ns;           /* first line saying a peer failed */
	int64_t stats_ns;         /* printed its statistics: it is leaving */
	bool alive_at_deadline;   /* launched here and still running then */
	bool have_stats;
	uint64_t st[S_NKEYS];
	int nring;                /* lines seen; the last RING are kept */
	char ring[RING][RING_COLS];
};

/* A timed signal, seconds after every node is ready. */
struct action {
	double at;
	int rank;
	int sig;
	int64_t done_ns;          /* 0: not yet */
	bool missed;              /* the node had already exited */
};

struct attack {               /* datagrams from outside the cluster */
	int fd;
	int64_t next_ns;
	unsigned turn;
	uint64_t sent[9];         /* by kind, see attack_kinds */
};

static const char *const attack_kinds[9] = {
	"random bytes", "random after a valid magic", "truncated copy", "bit-flipped copy",
	"other cluster", "unknown rank", "old incarnation of the receiver",
	"old incarnation of the sender", "exact replay",
};

struct relay {
	int fd[MAXN][MAXN];       /* link a>b: node a sends here; -1 on the diagonal */
	uint16_t port[MAXN][MAXN];
	uint64_t relayed, cut_dropped;
	struct cap {
		uint16_t len;
		uint8_t dst;
		uint8_t b[1500];
	} cap[NCAP];
	unsigned ncap;            /* captured so far (ring of NCAP) */
};

struct job {
	/* set by the scenario */
	const char *what;         /* short description for the log */
	int n;
	bool via_dsmrun;
	const char *argv[16];
	const char *env[24];
	int nenv;
	double deadline;          /* seconds */
	const char *ready;        /* marker every node prints once running */
	struct action act[4];
	int nact;
	bool relay_on;            /* launched here, links through the relay */
	int cut_a, cut_b;         /* relay: link a<->b drops everything ... */
	double cut_at, cut_for;   /* ... from ready + cut_at for cut_for seconds */
	bool attack_on;
	struct rng *rng;
	FILE *log;

	/* results */
	int64_t t0, t_ready, t_end;
	int64_t cut_start, cut_end; /* absolute, when it happened */
	bool hung;
	int dead_early;           /* "declared dead" of a peer still running */
	int dead_after_leave;     /* ... of a peer that had printed its stats */
	char dead_line[RING_COLS];/* the first early one */
	pid_t runner;             /* dsmrun */
	bool runner_exited;
	int runner_status;        /* wait status */
	struct node node[MAXN];
	struct src src[2 * MAXN];
	int nsrc;
	struct sbuf out;          /* every line but the debug ones, "[R] text" */
	struct sbuf stacks;       /* hang: where each live node's threads were */
	struct relay relay;
	struct attack atk;
	uint16_t real_port[MAXN];
	uint32_t cluster;
};

static void job_env(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_env(struct job *j, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (!s || j->nenv == (int)(sizeof j->env / sizeof j->env[0]) - 1) {
		fprintf(stderr, "dsm-faults: too many environment variables\n");
		exit(125);
	}
	j->env[j->nenv++] = s;
}

static void job_free(struct job *j)
{
	for (int i = 0; i < j->nenv; i++)
		free((void *)j->env[i]);
	sb_free(&j->out);
	sb_free(&j->stacks);
}

static uint64_t job_sum(const struct job *j, int key)
{
	uint64_t s = 0;

	for (int r = 0; r < j->n; r++)
		if (j->node[r].have_stats)
			s += j->node[r].st[key];
	return s;
}

static int job_nstats(const struct job *j)
{
	int k = 0;

	for (int r = 0; r < j->n; r++)
		k += j->node[r].have_stats;
	return k;
}

static bool job_has(const struct job *j, const char *s)
{
	return strstr(sb_str(&j->out), s) != NULL;
}

static uint64_t job_faults(const struct job *j)
{
	uint64_t f = 0;

	for (int k = S_F_DROP; k <= S_F_DELAY; k++)
		f += job_sum(j, k);
	return f;
}

static uint64_t job_dropped(const struct job *j)
{
	return job_sum(j, S_DUP) + job_sum(j, S_CORRUPT) + job_sum(j, S_MALFORMED) +
	       job_sum(j, S_STALE) + job_sum(j, S_FOREIGN) + job_sum(j, S_WINDOW);
}

/* ---- output lines ------------------------------------------------------------------ */

static void parse_stats(struct node *nd, const char *p)
{
	char key[64];

	nd->have_stats = true;
	while (*p) {
		const char *eq, *end;
		size_t kl;

		while (*p == ' ')
			p++;
		end = strchr(p, ' ');
		if (!end)
			end = p + strlen(p);
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq && (kl = (size_t)(eq - p)) < sizeof key) {
			memcpy(key, p, kl);
			key[kl] = '\0';
			for (int k = 0; k < S_NKEYS; k++)
				if (!strcmp(key, stat_key[k]))
					nd->st[k] = strtoull(eq + 1, NULL, 10);
		}
		p = end;
	}
}

/* One whole line from src s (without its newline). */
static void on_line(struct job *j, struct src *s, char *line)
{
	int64_t now = now_ns();
	int rank = s->rank;
	char *text = line;
	struct node *nd = NULL;
	const char *p;
	bool debug;

	if (rank < 0 && line[0] == '[') {
		char *end;
		long r = strtol(line + 1, &end, 10);

		if (end != line + 1 && end[0] == ']' && end[1] == ' ' && r >= 0 && r < j->n) {
			rank = (int)r;
			text = end + 2;
		}
	}
	if (j->log) {
		if (rank >= 0)
			fprintf(j->log, "%9.3f [%d] %s\n", secs(now - j->t0), rank, text);
		else
			fprintf(j->log, "%9.3f %s\n", secs(now - j->t0), text);
	}
	debug = strstr(text, " debug: ") != NULL;
	if (!debug) {
		if (rank >= 0)
			sb_add(&j->out, "[%d] %s\n", rank, text);
		else
			sb_add(&j->out, "%s\n", text);
		if (opt.verbose)
			printf("    %s\n", line);
	}
	if (rank < 0) {
		/* dsmrun's report of a rank's end: "dsmrun: rank R exited with
		 * status S" / "... killed by signal N (NAME)" */
		int r, v;

		if (sscanf(text, "dsmrun: rank %d exited with status %d", &r, &v) == 2 &&
		    r >= 0 && r < j->n) {
			j->node[r].exited = true;
			j->node[r].code = v;
			j->node[r].exit_ns = now;
		} else if (sscanf(text, "dsmrun: rank %d killed by signal %d", &r, &v) == 2 &&
			   r >= 0 && r < j->n) {
			j->node[r].exited = true;
			j->node[r].signaled = true;
			j->node[r].code = v;
			j->node[r].exit_ns = now;
		}
		return;
	}
	nd = &j->node[rank];
	snprintf(nd->ring[nd->nring++ % RING], RING_COLS, "%.3f %s", secs(now - j->t0), text);
	if (j->ready && !nd->ready_ns && strstr(text, j->ready))
		nd->ready_ns = now;
	/* dsm_strerror of DSM_EPEERDEAD and DSM_EOWNERDEAD, the fault handler */
	if (!nd->err_ns && (strstr(text, "peer has failed") || strstr(text, "cannot be served") ||
			    strstr(text, "DSM_EPEERDEAD") || strstr(text, "died holding it")))
		nd->err_ns = now;
	p = strstr(text, "] stats: ");
	if (p && !strncmp(text, "libdsm[", 7)) {
		parse_stats(nd, p + 9);
		nd->stats_ns = now;
	}
	/* "warn: peer P (incarnation I) declared dead: ...": about a node that
	 * was still running, or one that had finished dsm_finalize (printed its
	 * statistics) and whose goodbye never arrived */
	p = strstr(text, "warn: peer ");
	if (p && strstr(p, ") declared dead")) {
		int peer = atoi(p + 11);

		if (peer >= 0 && peer < j->n && j->node[peer].stats_ns) {
			j->dead_after_leave++;
		} else if (!j->dead_early++) {
			snprintf(j->dead_line, sizeof j->dead_line, "[%d] %s", rank, text);
		}
	}
}

/* Read what src has; at EOF, flush the partial line and close. */
static void src_read(struct job *j, struct src *s)
{
	for (;;) {
		ssize_t n;
		char *nl;

		if (s->len == sizeof s->part - 1) {   /* overlong: cut */
			s->part[s->len] = '\0';
			on_line(j, s, s->part);
			s->len = 0;
		}
		n = read(s->fd, s->part + s->len, sizeof s->part - 1 - s->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			if (s->len) {
				s->part[s->len] = '\0';
				on_line(j, s, s->part);
				s->len = 0;
			}
			close(s->fd);
			s->fd = -1;
			return;
		}
		s->len += (size_t)n;
		while ((nl = memchr(s->part, '\n', s->len))) {
			size_t l = (size_t)(nl - s->part);

			*nl = '\0';
			on_line(j, s, s->part);
			memmove(s->part, nl + 1, s->len - l - 1);
			s->len -= l + 1;
		}
	}
}

/* ---- launching ------------------------------------------------------------------- */

static bool owned_var(const char *e)
{
	static const char *const v[] = { "DSM_RANK=", "DSM_NODES=", "DSM_PEERS=",
					 "DSM_CLUSTER=", "DSM_BOOTSTRAP=" };

	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		if (!strncmp(e, v[i], strlen(v[i])))
			return true;
	return false;
}

static bool set_by_job(const struct job *j, const char *e)
{
	for (int i = 0; i < j->nenv; i++) {
		size_t k = strcspn(j->env[i], "=");

		if (!strncmp(e, j->env[i], k + 1))
			return true;
	}
	return false;
}

/* Our environment without the launcher's variables and those the job
 * sets, then the job's, then extra (NULL-terminated). Caller frees the
 * array (not the strings). */
static char **build_env(const struct job *j, char *const *extra)
{
	size_t n = 0, k = 0;
	char **env;

	for (char **e = environ; *e; e++)
		n++;
	env = calloc(n + (size_t)j->nenv + 8, sizeof *env);
	if (!env)
		exit(125);
	for (char **e = environ; *e; e++)
		if (!owned_var(*e) && !set_by_job(j, *e))
			env[k++] = *e;
	for (int i = 0; i < j->nenv; i++)
		env[k++] = (char *)j->env[i];
	for (; extra && *extra; extra++)
		env[k++] = *extra;
	env[k] = NULL;
	return env;
}

static int udp_socket_bound(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &al)) {
		close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

/* Fork one process with stdout/stderr into two new srcs of rank `rank`
 * (-1: dsmrun). The child leads its own process group and dies with us. */
static pid_t spawn(struct job *j, int rank, const char *const *argv, char **env)
{
	int out[2], err[2];
	pid_t parent = getpid(), pid;

	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
		perror("dsm-faults: pipe");
		exit(125);
	}
	pid = fork();
	if (pid < 0) {
		perror("dsm-faults: fork");
		exit(125);
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		dup2(err[1], STDERR_FILENO);
		signal(SIGPIPE, SIG_DFL);
		execve(argv[0], (char *const *)argv, env);
		fprintf(stderr, "dsm-faults: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	close(out[1]);
	close(err[1]);
	for (int k = 0; k < 2; k++) {
		struct src *s = &j->src[j->nsrc++];

		s->fd = k ? err[0] : out[0];
		s->rank = rank;
		s->len = 0;
		fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
	}
	return pid;
}

static void relay_close(struct job *j)
{
	for (int a = 0; a < MAXN; a++)
		for (int b = 0; b < MAXN; b++)
			if (j->relay.fd[a][b] >= 0) {
				close(j->relay.fd[a][b]);
				j->relay.fd[a][b] = -1;
			}
	if (j->atk.fd >= 0)
		close(j->atk.fd);
	j->atk.fd = -1;
}

/* Start the nodes: through dsmrun, or here (free ports picked like dsmrun
 * does; with the relay, a socket per link). */
static void job_start(struct job *j)
{
	for (int a = 0; a < MAXN; a++)
		for (int b = 0; b < MAXN; b++)
			j->relay.fd[a][b] = -1;
	j->atk.fd = -1;
	j->t0 = now_ns();
	if (j->via_dsmrun) {
		const char *argv[24];
		char nbuf[16], tbuf[16];
		char **env = build_env(j, NULL);
		int k = 0;

		snprintf(nbuf, sizeof nbuf, "%d", j->n);
		/* dsmrun's own deadline a little after ours: a backstop, ours
		 * comes first and looks at the hung nodes before killing them */
		snprintf(tbuf, sizeof tbuf, "%d", (int)j->deadline + 5);
		argv[k++] = opt.dsmrun;
		argv[k++] = "-n";
		argv[k++] = nbuf;
		argv[k++] = "-t";
		argv[k++] = tbuf;
		argv[k++] = "--";
		for (int i = 0; j->argv[i]; i++)
			argv[k++] = j->argv[i];
		argv[k] = NULL;
		j->runner = spawn(j, -1, argv, env);
		free(env);
		return;
	}
	{
		int tmp[MAXN];
		char peers[MAXN][MAXN * 24], vrank[MAXN][32], vnodes[32], vpeers[MAXN][MAXN * 24 + 16],
			vcluster[32];

		for (int r = 0; r < j->n; r++) {
			tmp[r] = udp_socket_bound(&j->real_port[r]);
			if (tmp[r] < 0) {
				perror("dsm-faults: socket");
				exit(125);
			}
		}
		for (int r = 0; r < j->n; r++)
			close(tmp[r]);
		if (j->relay_on)
			for (int a = 0; a < j->n; a++)
				for (int b = 0; b < j->n; b++)
					if (a != b && (j->relay.fd[a][b] =
						       udp_socket_bound(&j->relay.port[a][b])) < 0) {
						perror("dsm-faults: relay socket");
						exit(125);
					}
		if (j->attack_on) {
			uint16_t p;

			j->atk.fd = udp_socket_bound(&p);
			j->atk.next_ns = 0;
		}
		j->cluster = (uint32_t)(rng_next(j->rng) | 1);
		snprintf(vnodes, sizeof vnodes, "DSM_NODES=%d", j->n);
		snprintf(vcluster, sizeof vcluster, "DSM_CLUSTER=%" PRIu32, j->cluster);
		for (int a = 0; a < j->n; a++) {
			size_t off = 0;

			for (int b = 0; b < j->n; b++)
				off += (size_t)snprintf(peers[a] + off, sizeof peers[a] - off,
							"%s127.0.0.1:%u", b ? "," : "",
							(unsigned)(j->relay_on && a != b ?
								   j->relay.port[a][b] :
								   j->real_port[b]));
			snprintf(vpeers[a], sizeof vpeers[a], "DSM_PEERS=%s", peers[a]);
			snprintf(vrank[a], sizeof vrank[a], "DSM_RANK=%d", a);
		}
		for (int r = 0; r < j->n; r++) {
			char *extra[] = { vrank[r], vnodes, vpeers[r], vcluster, NULL };
			char **env = build_env(j, extra);

			j->node[r].pid = spawn(j, r, j->argv, env);
			free(env);
		}
		if (j->log) {
			fprintf(j->log, "  launched here: cluster %" PRIu32 ", ports", j->cluster);
			for (int r = 0; r < j->n; r++)
				fprintf(j->log, " %d:%u(pid %d)", r, j->real_port[r],
					(int)j->node[r].pid);
			fprintf(j->log, "%s\n", j->relay_on ? ", links through the relay" : "");
		}
	}
}

/* ---- the relay and the attacker ---------------------------------------------------- */

static bool link_cut(const struct job *j, int a, int b, int64_t now)
{
	if (!j->cut_start || now < j->cut_start || now >= j->cut_end)
		return false;
	return (a == j->cut_a && b == j->cut_b) || (a == j->cut_b && b == j->cut_a);
}

static void relay_io(struct job *j, int a, int b)
{
	uint8_t buf[65536];

	for (;;) {
		struct sockaddr_in to = { .sin_family = AF_INET,
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
					  .sin_port = htons(j->real_port[b]) };
		ssize_t n = recv(j->relay.fd[a][b], buf, sizeof buf, 0);
		int64_t now;

		if (n < 0)
			return;
		now = now_ns();
		if (link_cut(j, a, b, now)) {
			j->relay.cut_dropped++;
			continue;
		}
		sendto(j->relay.fd[a][b], buf, (size_t)n, 0, (struct sockaddr *)&to, sizeof to);
		j->relay.relayed++;
		/* keep DATA datagrams for the replays (never REJECT or BYE) */
		if (j->attack_on && n >= DSM_WIRE_HDR_SIZE && n <= 1500 &&
		    buf[5] == DSM_WIRE_DATA && (j->relay.relayed % 7) == 0) {
			struct cap *c = &j->relay.cap[j->relay.ncap++ % NCAP];

			c->len = (uint16_t)n;
			c->dst = (uint8_t)b;
			memcpy(c->b, buf, (size_t)n);
		}
	}
}

/* One burst of datagrams from outside the cluster to the nodes' ports:
 * garbage (malformed), bit flips (corrupt), other cluster / rank
 * (foreign), old incarnations (stale), exact replays (duplicates). */
static void attack_burst(struct job *j)
{
	struct rng *r = j->rng;
	uint8_t buf[1600];

	for (int i = 0; i < 9; i++) {
		unsigned kind = j->atk.turn++ % 9;
		struct dsm__wire_hdr h;
		const struct cap *c = NULL;
		size_t len = 0;
		int dst = (int)rng_below(r, (unsigned)j->n);
		struct sockaddr_in to = { .sin_family = AF_INET,
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		if (kind >= 2) {
			unsigned have = j->relay.ncap < NCAP ? j->relay.ncap : NCAP;

			if (!have)
				continue;
			c = &j->relay.cap[rng_below(r, have)];
			memcpy(buf, c->b, c->len);
			len = c->len;
			dst = c->dst;
			if (kind >= 4 && dsm__wire_decode(buf, len, sizeof buf, &h))
				continue;
		}
		switch (kind) {
		case 0:
			len = 1 + rng_below(r, 1400);
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rng_next(r);
			break;
		case 1:
			len = DSM_WIRE_HDR_SIZE + rng_below(r, 1400);
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rng_next(r);
			dsm__put_le32(buf, DSM_WIRE_MAGIC);
			buf[4] = DSM_WIRE_VERSION;
			break;
		case 2:
			len = rng_below(r, (unsigned)len);
			if (!len)
				len = 1;
			break;
		case 3: {
			/* a bit outside magic, version, type, flags and len: the
			 * CRC must catch it */
			size_t pos;

			do
				pos = 8 + rng_below(r, (unsigned)len - 8);
			while (pos == 42 || pos == 43);
			buf[pos] ^= (uint8_t)(1u << rng_below(r, 8));
			break;
		}
		case 4:
			h.cluster ^= 0x5a5a0000u | (1 + rng_below(r, 0xffff));
			len = dsm__wire_encode(buf, &h);
			break;
		case 5:
			h.dst = (uint16_t)(j->n + rng_below(r, 100));
			len = dsm__wire_encode(buf, &h);
			break;
		case 6:
			if (!h.dst_inc)
				continue;
			h.dst_inc -= 1 + rng_below(r, 1000);
			if (!h.dst_inc)
				h.dst_inc = 1;
			len = dsm__wire_encode(buf, &h);
			break;
		case 7:
			h.src_inc -= 1 + rng_below(r, 1000);
			if (!h.src_inc)
				continue;
			len = dsm__wire_encode(buf, &h);
			break;
		default:
			break;   /* exact replay */
		}
		to.sin_port = htons(j->real_port[dst]);
		if (sendto(j->atk.fd, buf, len, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)len)
			j->atk.sent[kind]++;
	}
}

/* ---- running a job ----------------------------------------------------------------- */

static bool all_ready(const struct job *j)
{
	for (int r = 0; r < j->n; r++)
		if (!j->node[r].ready_ns)
			return false;
	return true;
}

static bool job_running(const struct job *j)
{
	if (j->via_dsmrun)
		return !j->runner_exited;
	for (int r = 0; r < j->n; r++)
		if (!j->node[r].exited)
			return true;
	return false;
}

static void reap(struct job *j)
{
	int st;

	if (j->via_dsmrun) {
		if (!j->runner_exited && waitpid(j->runner, &st, WNOHANG) == j->runner) {
			j->runner_exited = true;
			j->runner_status = st;
		}
		return;
	}
	for (int r = 0; r < j->n; r++) {
		struct node *nd = &j->node[r];

		if (nd->exited || waitpid(nd->pid, &st, WNOHANG) != nd->pid)
			continue;
		nd->exited = true;
		nd->exit_ns = now_ns();
		nd->signaled = WIFSIGNALED(st);
		nd->code = WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st);
		if (j->log)
			fprintf(j->log, "%9.3f rank %d (pid %d) %s %d\n", secs(nd->exit_ns - j->t0), r,
				(int)nd->pid, nd->signaled ? "killed by signal" : "exited with status",
				nd->code);
	}
}

/* The rank of process pid, from its DSM_RANK; -1 if unknown. */
static int rank_of_pid(pid_t pid)
{
	char path[64], buf[65536];
	FILE *f;
	size_t n;
	int rank = -1;

	snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (size_t k = 0; k < n; k += strlen(buf + k) + 1)
		if (!strncmp(buf + k, "DSM_RANK=", 9))
			rank = atoi(buf + k + 9);
	return rank;
}

/* A hang: where are the live nodes' threads? With gdb installed, one
 * batch backtrace per process (10 s at most each) goes to the log, and
 * the library's frames of the threads that are not idle workers to
 * j->stacks. */
static void dump_stacks(struct job *j, pid_t pid, int rank)
{
	static const char *const idle[] = { "net_thread", "uffd_thread", "next_report",
					     "worker (arg", "rpc.c:138", NULL };
	char cmd[256], line[1024], thread[128] = "";
	FILE *f;
	int shown = 0;
	bool in_idle = false;

	if (access("/usr/bin/gdb", X_OK))
		return;
	snprintf(cmd, sizeof cmd, "timeout 10 /usr/bin/gdb -batch -nx -p %d -ex 'thread apply all "
		 "bt 12' 2>/dev/null", (int)pid);
	f = popen(cmd, "r");
	if (!f)
		return;
	sb_add(&j->stacks, "        rank %d (pid %d), threads in the library:\n", rank, (int)pid);
	while (fgets(line, sizeof line, f)) {
		const char *in;

		if (j->log)
			fprintf(j->log, "  gdb rank %d: %s", rank, line);
		if (!strncmp(line, "Thread ", 7)) {
			snprintf(thread, sizeof thread, "%.*s", (int)strcspn(line, "("), line);
			in_idle = false;
			continue;
		}
		if (line[0] != '#' || in_idle || shown >= 24)
			continue;
		for (int k = 0; idle[k]; k++)
			if (strstr(line, idle[k]))
				in_idle = true;
		in = strstr(line, " in ");
		if (in_idle || !in || !(strstr(line, "/dsm/") || strstr(line, "/net/") ||
					 strstr(line, "/pager/")))
			continue;
		line[strcspn(line, "\n")] = '\0';
		sb_add(&j->stacks, "          %s: %s\n", thread, in + 4);
		shown++;
	}
	pclose(f);
}

static void dump_all_stacks(struct job *j)
{
	if (j->via_dsmrun) {
		char path[64];
		FILE *f;
		long pid;

		snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)j->runner,
			 (int)j->runner);
		f = fopen(path, "r");
		while (f && fscanf(f, "%ld", &pid) == 1)
			dump_stacks(j, (pid_t)pid, rank_of_pid((pid_t)pid));
		if (f)
			fclose(f);
		return;
	}
	for (int r = 0; r < j->n; r++)
		if (!j->node[r].exited)
			dump_stacks(j, j->node[r].pid, r);
}

/* Every process of the job, by pid: the nodes, or dsmrun's children then
 * dsmrun (its children also die with it: PR_SET_PDEATHSIG). */
static void kill_all(struct job *j)
{
	if (j->via_dsmrun) {
		char path[64];
		FILE *f;
		long pid;

		if (j->runner_exited)
			return;
		snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)j->runner,
			 (int)j->runner);
		f = fopen(path, "r");
		while (f && fscanf(f, "%ld", &pid) == 1)
			kill((pid_t)pid, SIGKILL);
		if (f)
			fclose(f);
		kill(j->runner, SIGKILL);
		return;
	}
	for (int r = 0; r < j->n; r++)
		if (!j->node[r].exited)
			kill(j->node[r].pid, SIGKILL);
}

static void job_run(struct job *j)
{
	int64_t deadline, killed_at = 0;

	job_start(j);
	deadline = j->t0 + (int64_t)(j->deadline * 1e9);
	for (;;) {
		struct pollfd pfd[2 * MAXN + MAXN * MAXN];
		int np = 0, open_srcs = 0, timeout = 10;
		int64_t now = now_ns();

		if (!j->t_ready && j->ready && all_ready(j)) {
			j->t_ready = now;
			if (j->cut_for > 0) {
				j->cut_start = now + (int64_t)(j->cut_at * 1e9);
				j->cut_end = j->cut_start + (int64_t)(j->cut_for * 1e9);
			}
		}
		if (j->t_ready)
			for (int i = 0; i < j->nact; i++) {
				struct action *a = &j->act[i];

				if (a->done_ns || a->missed || now < j->t_ready + (int64_t)(a->at * 1e9))
					continue;
				if (j->node[a->rank].exited) {
					a->missed = true;
					continue;
				}
				kill(j->node[a->rank].pid, a->sig);
				a->done_ns = now_ns();
				if (j->log)
					fprintf(j->log, "%9.3f harness: signal %d (%s) to rank %d (pid %d)\n",
						secs(a->done_ns - j->t0), a->sig, strsignal(a->sig),
						a->rank, (int)j->node[a->rank].pid);
			}
		if (j->attack_on && j->t_ready && j->atk.fd >= 0 && now >= j->atk.next_ns &&
		    job_running(j)) {
			attack_burst(j);
			j->atk.next_ns = now + 4000000;
		}
		if (!killed_at && now >= deadline && job_running(j)) {
			j->hung = true;
			if (j->log)
				fprintf(j->log, "%9.3f harness: deadline of %.0f s passed: killing "
					"every process of the job\n", secs(now - j->t0), j->deadline);
			for (int r = 0; r < j->n; r++)
				j->node[r].alive_at_deadline = !j->via_dsmrun && !j->node[r].exited;
			dump_all_stacks(j);
			/* stopped nodes too: SIGKILL works on them */
			kill_all(j);
			killed_at = now;
		}
		reap(j);
		for (int i = 0; i < j->nsrc; i++)
			if (j->src[i].fd >= 0) {
				pfd[np++] = (struct pollfd){ .fd = j->src[i].fd, .events = POLLIN };
				open_srcs++;
			}
		if (!job_running(j) && !j->t_end)
			j->t_end = now;
		/* the job is over: drain its pipes (a grandchild may hold one:
		 * at most 2 s) */
		if (!job_running(j) && (!open_srcs || now - j->t_end > 2000000000LL))
			break;
		if (killed_at && now - killed_at > 5000000000LL)
			break;   /* unkillable?: give up on it */
		if (j->relay_on)
			for (int a = 0; a < j->n; a++)
				for (int b = 0; b < j->n; b++)
					if (j->relay.fd[a][b] >= 0)
						pfd[np++] = (struct pollfd){ .fd = j->relay.fd[a][b],
									     .events = POLLIN };
		if (j->attack_on && j->t_ready)
			timeout = 2;
		if (poll(pfd, (nfds_t)np, timeout) < 0 && errno != EINTR) {
			perror("dsm-faults: poll");
			exit(125);
		}
		for (int i = 0; i < j->nsrc; i++)
			if (j->src[i].fd >= 0)
				src_read(j, &j->src[i]);
		if (j->relay_on)
			for (int a = 0; a < j->n; a++)
				for (int b = 0; b < j->n; b++)
					if (j->relay.fd[a][b] >= 0)
						relay_io(j, a, b);
	}
	for (int i = 0; i < j->nsrc; i++)
		if (j->src[i].fd >= 0) {
			close(j->src[i].fd);
			j->src[i].fd = -1;
		}
	if (!j->t_end)
		j->t_end = now_ns();
	/* dsmrun's own deadline (-t) passed first: the same hang */
	if (j->via_dsmrun && j->runner_exited && WIFEXITED(j->runner_status) &&
	    WEXITSTATUS(j->runner_status) == 124)
		j->hung = true;
	relay_close(j);
	if (j->log)
		fprintf(j->log, "%9.3f harness: job over%s\n", secs(j->t_end - j->t0),
			j->hung ? " (HUNG: killed at the deadline)" : "");
}

/* ---- scenarios ----------------------------------------------------------------------- */

struct row {
	const struct scenario *sc;
	uint64_t seed;
	bool pass;
	double seconds;
	uint64_t faults, retx, dropped;
	struct sbuf why;      /* failures, one per line */
	struct sbuf notes;    /* measurements worth a line */
	FILE *log;
	char log_path[PATH_MAX + 128];
	int njobs;
};

enum kind { K_NET, K_LINK, K_OUTAGE, K_FOREIGN, K_KILL, K_PAUSE_LONG, K_PAUSE_SHORT, K_DEATH };
enum { W_DSM = 1, W_MATMUL = 2 };
enum { G_QUICK = 1, G_DEATH = 2 };

struct scenario {
	const char *name;
	const char *what;
	unsigned groups;      /* G_*: in --quick, in the peer-death set; --all: every one */
	int all_reps;         /* rows in --all (different seeds) */
	enum kind kind;
	const char *fault;    /* DSM_FAULT without the seed */
	int workloads;        /* W_* */
	int nodes;            /* nodes of the test-dsm / test-peer-death job */
	int k, rounds;        /* TEST_DSM_K, TEST_DSM_ROUNDS */
	int mm_nodes, mm_n;   /* matmul job */
	int timeout_ms;       /* DSM_PEER_TIMEOUT_MS (0: default 1000) */
	double deadline;      /* per job, seconds */
	const char *how;      /* K_DEATH: exit | kill */
	const char *dsm_scen; /* test-dsm's scenarios (NULL: counter,multiwriter) */
};

static const char *dsm_scenarios(const struct scenario *sc)
{
	return sc->dsm_scen ? sc->dsm_scen : "counter,multiwriter";
}

static void fail(struct row *row, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct row *row, const char *fmt, ...)
{
	va_list ap;

	row->pass = false;
	sb_add(&row->why, "    - ");
	va_start(ap, fmt);
	sb_vadd(&row->why, fmt, ap);
	va_end(ap);
	sb_add(&row->why, "\n");
}

static void note(struct row *row, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct row *row, const char *fmt, ...)
{
	va_list ap;

	sb_add(&row->notes, "    ");
	va_start(ap, fmt);
	sb_vadd(&row->notes, fmt, ap);
	va_end(ap);
	sb_add(&row->notes, "\n");
}

static int peer_timeout(const struct scenario *sc)
{
	return sc->timeout_ms ? sc->timeout_ms : 1000;
}

/* Common environment and bookkeeping of a job of this row. */
static void job_init(struct job *j, struct row *row, struct rng *r, const char *what, int n)
{
	memset(j, 0, sizeof *j);
	j->what = what;
	j->n = n;
	j->rng = r;
	j->log = row->log;
	j->deadline = opt.deadline > 0 ? opt.deadline : row->sc->deadline;
	j->cut_a = j->cut_b = -1;
	job_env(j, "DSM_LOG=debug");
	job_env(j, "DSM_STATS=1");
	if (row->sc->timeout_ms)
		job_env(j, "DSM_PEER_TIMEOUT_MS=%d", row->sc->timeout_ms);
	row->njobs++;
	if (row->log) {
		fprintf(row->log, "==== job %d: %s\n", row->njobs, what);
		fflush(row->log);
	}
}

static void job_log_env(struct job *j)
{
	if (!j->log)
		return;
	fprintf(j->log, "  env:");
	for (int i = 0; i < j->nenv; i++)
		fprintf(j->log, " %s", j->env[i]);
	fprintf(j->log, "\n  argv:");
	for (int i = 0; j->argv[i]; i++)
		fprintf(j->log, " %s", j->argv[i]);
	fprintf(j->log, "%s\n", j->via_dsmrun ? " (through dsmrun)" : " (launched here)");
}

/* The hang report: the last lines (protocol events) of every node. */
static void report_hang(struct row *row, const struct job *j)
{
	fail(row, "HANG: %s still running after its deadline of %.0f s; every process "
	     "killed; last protocol events:", j->what, j->deadline);
	for (int r = 0; r < j->n; r++) {
		const struct node *nd = &j->node[r];
		int first = nd->nring > RING ? nd->nring - RING : 0;

		sb_add(&row->why, "        rank %d%s:\n", r,
		       nd->alive_at_deadline ? " (still running at the deadline)" :
		       !j->via_dsmrun ? " (had ended before the deadline)" : "");
		for (int k = first; k < nd->nring; k++)
			sb_add(&row->why, "          %s\n", nd->ring[k % RING]);
	}
	if (j->stacks.len)
		sb_add(&row->why, "      where the live nodes were (gdb):\n%s", sb_str(&j->stacks));
}

/* Adds the job's counters to the row. */
static void row_add(struct row *row, const struct job *j)
{
	row->faults += job_faults(j) + j->relay.cut_dropped;
	for (int k = 0; k < 9; k++)
		row->faults += j->atk.sent[k];
	for (int i = 0; i < j->nact; i++)
		row->faults += j->act[i].done_ns != 0 && j->act[i].sig != SIGCONT;
	row->retx += job_sum(j, S_RETX);
	row->dropped += job_dropped(j);
}

/* Under the failures of a row: the job's lines that say why. */
static void show_lines(struct row *row, const struct job *j)
{
	const char *s = sb_str(&j->out);
	int shown = 0;

	while (*s && shown < 16) {
		const char *e = strchr(s, '\n');
		size_t l = e ? (size_t)(e - s) : strlen(s);

		if (memmem(s, l, "FAIL", 4) || memmem(s, l, "MISMATCH", 8) ||
		    memmem(s, l, "error", 5) || memmem(s, l, "dsmrun:", 7) ||
		    memmem(s, l, "warn:", 5) || memmem(s, l, "excluded", 8)) {
			sb_add(&row->why, "        %.*s\n", (int)(l > 300 ? 300 : l), s);
			shown++;
		}
		s = e ? e + 1 : s + l;
	}
}

/* The job ended normally: no hang, every node exited 0 (dsmrun: 0), every
 * node printed its statistics, nobody was declared dead. */
static bool expect_clean(struct row *row, const struct job *j)
{
	bool ok = true;

	if (j->hung) {
		report_hang(row, j);
		return false;
	}
	if (j->via_dsmrun) {
		int st = j->runner_status;

		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			fail(row, "%s: dsmrun %s %d", j->what,
			     WIFEXITED(st) ? "exited with status" : "killed by signal",
			     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			ok = false;
		}
	} else {
		for (int r = 0; r < j->n; r++)
			if (j->node[r].signaled || j->node[r].code) {
				fail(row, "%s: rank %d %s %d", j->what, r,
				     j->node[r].signaled ? "killed by signal" : "exited with status",
				     j->node[r].code);
				ok = false;
			}
	}
	if (ok && job_nstats(j) != j->n) {
		fail(row, "%s: %d of %d nodes printed their statistics", j->what, job_nstats(j),
		     j->n);
		ok = false;
	}
	if (j->dead_early) {
		fail(row, "%s: %d peer(s) declared dead while still running, none should be "
		     "(first: %s)", j->what, j->dead_early, j->dead_line);
		ok = false;
	}
	if (j->dead_after_leave)
		note(row, "LIBRARY: %s: %d node(s) declared a peer dead after that peer had "
		     "finished dsm_finalize: its goodbye never arrived, and the node waited "
		     "DSM_PEER_TIMEOUT_MS in dsm_finalize (peers_dead counts it)", j->what,
		     j->dead_after_leave);
	if (!ok)
		show_lines(row, j);
	return ok;
}

static void expect_lines_dsm(struct row *row, const struct job *j)
{
	char list[128], *save = NULL;

	snprintf(list, sizeof list, "%s", dsm_scenarios(row->sc));
	for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		char want[160];

		snprintf(want, sizeof want, "[0] scenario %s: ok", s);
		if (!job_has(j, want))
			fail(row, "%s: no \"scenario %s: ok\"", j->what, s);
	}
}

static void expect_lines_matmul(struct row *row, const struct job *j)
{
	if (!job_has(j, "check PASS"))
		fail(row, "%s: no \"check PASS\"", j->what);
}

/* What a DSM_FAULT string must leave in the statistics. */
static void expect_fault_stats(struct row *row, const struct job *j, const char *fault)
{
	struct {
		const char *key;
		int injected, handled;
		const char *handled_name;
	} t[] = {
		{ "drop=", S_F_DROP, S_RETX, "retransmissions" },
		{ "dup=", S_F_DUP, S_DUP, "duplicates dropped" },
		{ "corrupt=", S_F_CORRUPT, S_CORRUPT, "corrupt datagrams dropped" },
		{ "reorder=", S_F_REORDER, S_OOO, "datagrams received out of order" },
		{ "delay_ms=", S_F_DELAY, S_OOO, "datagrams received out of order" },
	};

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		if (!strstr(fault, t[i].key))
			continue;
		if (!job_sum(j, t[i].injected))
			fail(row, "%s: DSM_FAULT has %s but %s is 0 on every node", j->what,
			     t[i].key, stat_key[t[i].injected]);
		if (!job_sum(j, t[i].handled))
			fail(row, "%s: %s injected but no %s (%s = 0)", j->what,
			     stat_key[t[i].injected], t[i].handled_name, stat_key[t[i].handled]);
	}
}

static void note_stats(struct row *row, const struct job *j)
{
	note(row, "%s: %.1f s; injected drop %" PRIu64 " dup %" PRIu64 " corrupt %" PRIu64
	     " reorder %" PRIu64 " delay %" PRIu64 "; retx %" PRIu64 "; dropped dup %" PRIu64
	     " corrupt %" PRIu64 " malformed %" PRIu64 " stale %" PRIu64 " foreign %" PRIu64
	     "; ooo %" PRIu64, j->what, secs(j->t_end - j->t0), job_sum(j, S_F_DROP),
	     job_sum(j, S_F_DUP), job_sum(j, S_F_CORRUPT), job_sum(j, S_F_REORDER),
	     job_sum(j, S_F_DELAY), job_sum(j, S_RETX), job_sum(j, S_DUP), job_sum(j, S_CORRUPT),
	     job_sum(j, S_MALFORMED), job_sum(j, S_STALE), job_sum(j, S_FOREIGN),
	     job_sum(j, S_OOO));
}

/* test-dsm counter,multiwriter (n nodes). */
static void setup_dsm(struct job *j, const struct scenario *sc)
{
	static char what[128];

	snprintf(what, sizeof what, "test-dsm %s (%d nodes, K=%d, rounds=%d)", dsm_scenarios(sc),
		 j->n, sc->k, sc->rounds);
	j->what = what;
	j->argv[0] = opt.test_dsm;
	j->argv[1] = (char *)dsm_scenarios(sc);
	j->argv[2] = NULL;
	job_env(j, "TEST_DSM_K=%d", sc->k);
	job_env(j, "TEST_DSM_ROUNDS=%d", sc->rounds);
	j->ready = ": region 0x";    /* "debug: node R of N: region ..." ends dsm_init */
}

static void setup_matmul(struct job *j, const struct scenario *sc)
{
	static char what[64], nbuf[16];

	snprintf(what, sizeof what, "matmul -N %d (%d nodes)", sc->mm_n, j->n);
	snprintf(nbuf, sizeof nbuf, "%d", sc->mm_n);
	j->what = what;
	j->argv[0] = opt.matmul;
	j->argv[1] = "-N";
	j->argv[2] = nbuf;
	j->argv[3] = "--no-progress";
	j->argv[4] = NULL;
	j->ready = ": region 0x";
}

/* loss / dup / corrupt / reorder / delay / all, and loss on one link:
 * through dsmrun with DSM_FAULT. */
static void run_net(struct row *row, struct rng *r)
{
	const struct scenario *sc = row->sc;
	char fault[256];
	int la = -1, lb = -1;

	if (sc->kind == K_LINK) {
		/* ranks present in both jobs */
		int n = sc->nodes < sc->mm_nodes ? sc->nodes : sc->mm_nodes;

		la = (int)rng_below(r, (unsigned)n);
		lb = (la + 1 + (int)rng_below(r, (unsigned)n - 1)) % n;
		snprintf(fault, sizeof fault, "%s,link=%d>%d,seed=%" PRIu64, sc->fault, la, lb,
			 row->seed);
	} else {
		snprintf(fault, sizeof fault, "%s,seed=%" PRIu64, sc->fault, row->seed);
	}
	for (int w = W_DSM; w <= W_MATMUL; w <<= 1) {
		struct job j;

		if (!(sc->workloads & w))
			continue;
		job_init(&j, row, r, "", w == W_DSM ? sc->nodes : sc->mm_nodes);
		if (w == W_DSM)
			setup_dsm(&j, sc);
		else
			setup_matmul(&j, sc);
		j.via_dsmrun = true;
		job_env(&j, "DSM_FAULT=%s", fault);
		job_log_env(&j);
		job_run(&j);
		row_add(row, &j);
		note_stats(row, &j);
		if (expect_clean(row, &j)) {
			if (w == W_DSM)
				expect_lines_dsm(row, &j);
			else
				expect_lines_matmul(row, &j);
			expect_fault_stats(row, &j, sc->fault);
			if (sc->kind == K_LINK)
				for (int k = 0; k < j.n; k++) {
					uint64_t d = j.node[k].st[S_F_DROP];

					if (k == la && !d)
						fail(row, "%s: link=%d>%d: rank %d dropped nothing",
						     j.what, la, lb, la);
					if (k != la && d)
						fail(row, "%s: link=%d>%d: rank %d dropped %" PRIu64
						     " datagram(s) (not on the link)", j.what, la, lb,
						     k, d);
				}
		}
		job_free(&j);
	}
	if (sc->kind == K_LINK)
		note(row, "lossy link: %d>%d", la, lb);
}

/* A link that drops everything for cut_for seconds, then recovers; the
 * peer timeout is longer: nobody may be declared dead. */
static void run_outage(struct row *row, struct rng *r)
{
	const struct scenario *sc = row->sc;
	struct job j;
	double cut_for = 2.0;

	job_init(&j, row, r, "", sc->nodes);
	setup_dsm(&j, sc);
	j.relay_on = true;
	j.cut_a = (int)rng_below(r, (unsigned)sc->nodes);
	j.cut_b = (j.cut_a + 1 + (int)rng_below(r, (unsigned)sc->nodes - 1)) % sc->nodes;
	j.cut_at = rng_uniform(r, 0.2, 0.8);
	j.cut_for = cut_for;
	job_log_env(&j);
	job_run(&j);
	row_add(row, &j);
	note_stats(row, &j);
	note(row, "link %d<->%d cut at ready+%.2f s for %.1f s: %" PRIu64 " datagrams dropped by "
	     "the relay, %" PRIu64 " relayed", j.cut_a, j.cut_b, j.cut_at, cut_for,
	     j.relay.cut_dropped, j.relay.relayed);
	if (expect_clean(row, &j)) {
		expect_lines_dsm(row, &j);
		if (!j.cut_start || j.t_end < j.cut_end)
			fail(row, "the job ended before the outage did (%s): the workload is too "
			     "short for this scenario", j.cut_start ? "ended inside it" :
			     "never ready");
		if (!j.relay.cut_dropped)
			fail(row, "the outage dropped nothing");
		if (!job_sum(&j, S_RETX))
			fail(row, "no retransmissions across a 2 s outage");
	}
	job_free(&j);
}

/* Random and replayed datagrams from outside the cluster, at every node's
 * port, while the computation runs. */
static void run_foreign(struct row *row, struct rng *r)
{
	const struct scenario *sc = row->sc;
	struct job j;
	uint64_t total = 0;

	job_init(&j, row, r, "", sc->nodes);
	setup_dsm(&j, sc);
	j.relay_on = true;
	j.attack_on = true;
	job_log_env(&j);
	job_run(&j);
	row_add(row, &j);
	note_stats(row, &j);
	for (int k = 0; k < 9; k++)
		total += j.atk.sent[k];
	{
		struct sbuf b = { 0 };

		for (int k = 0; k < 9; k++)
			sb_add(&b, "%s%s %" PRIu64, k ? ", " : "", attack_kinds[k], j.atk.sent[k]);
		note(row, "sent from outside the cluster: %" PRIu64 " datagrams (%s)", total,
		     sb_str(&b));
		sb_free(&b);
	}
	if (expect_clean(row, &j)) {
		static const struct {
			int key;
			unsigned kinds; /* bit k: attack kind k feeds it */
		} want[] = {
			{ S_MALFORMED, 1u << 0 | 1u << 1 | 1u << 2 },
			{ S_CORRUPT, 1u << 3 },
			{ S_FOREIGN, 1u << 4 | 1u << 5 },
			{ S_STALE, 1u << 6 | 1u << 7 },
			{ S_DUP, 1u << 8 },
		};

		expect_lines_dsm(row, &j);
		for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
			uint64_t sent = 0;

			for (int k = 0; k < 9; k++)
				if (want[i].kinds & (1u << k))
					sent += j.atk.sent[k];
			if (!sent)
				fail(row, "no %s datagram could be sent (no capture?)",
				     stat_key[want[i].key]);
			else if (!job_sum(&j, want[i].key))
				fail(row, "%" PRIu64 " datagrams of that kind sent, but %s is 0 on "
				     "every node", sent, stat_key[want[i].key]);
		}
	}
	job_free(&j);
}

/* Describe how a node ended. */
static const char *ending(const struct node *nd, char *buf, size_t len)
{
	if (!nd->exited)
		snprintf(buf, len, "still running");
	else if (nd->signaled)
		snprintf(buf, len, "killed by signal %d", nd->code);
	else
		snprintf(buf, len, "exit %d", nd->code);
	return buf;
}

/* SIGKILL one node at a random point of the computation: every survivor
 * must end with an error (DSM_EPEERDEAD, or the fault handler's exit 86)
 * within a bound, never hang. */
static void run_kill(struct row *row, struct rng *r)
{
	const struct scenario *sc = row->sc;
	struct job j;
	int victim, T = peer_timeout(sc);
	double at, bound_ms;
	struct sbuf times = { 0 };
	bool matmul = sc->workloads & W_MATMUL;

	job_init(&j, row, r, "", matmul ? sc->mm_nodes : sc->nodes);
	if (matmul)
		setup_matmul(&j, sc);
	else
		setup_dsm(&j, sc);
	victim = (int)rng_below(r, (unsigned)j.n);
	/* matmul: fill, multiply, check take about a second; test-dsm runs
	 * several seconds at these sizes */
	at = matmul ? rng_uniform(r, 0.0, 0.5) : rng_uniform(r, 0.1, 3.0);
	j.act[j.nact++] = (struct action){ .at = at, .rank = victim, .sig = SIGKILL };
	job_log_env(&j);
	job_run(&j);
	row_add(row, &j);
	note(row, "%s: rank %d SIGKILLed at ready+%.3f s", j.what, victim, at);
	/* A survivor fails when it next needs the dead node: at once in a
	 * barrier round (multiwriter, matmul), or after the rest of its work
	 * that does not (the counter phase on live locks, at most about a
	 * second). A survivor that fails exits without a goodbye: one more
	 * death the others may have to detect, at most N-1 in a row. */
	bound_ms = (j.n - 1) * 2.0 * T + 2000;
	if (j.hung) {
		report_hang(row, &j);
		job_free(&j);
		return;
	}
	if (!j.act[0].done_ns) {
		char b[64];

		fail(row, "rank %d was not killed: the job %s before the kill point (ready+%.3f "
		     "s)", victim, j.t_ready ? "ended" : "never became ready", at);
		note(row, "rank %d: %s", victim, ending(&j.node[victim], b, sizeof b));
		job_free(&j);
		return;
	}
	for (int k = 0; k < j.n; k++) {
		const struct node *nd = &j.node[k];
		double err_ms = nd->err_ns ? (double)(nd->err_ns - j.act[0].done_ns) / 1e6 : -1;
		double exit_ms = (double)(nd->exit_ns - j.act[0].done_ns) / 1e6;
		char b[64];

		if (k == victim) {
			if (!nd->signaled || nd->code != SIGKILL)
				fail(row, "the victim, rank %d: %s", k, ending(nd, b, sizeof b));
			continue;
		}
		sb_add(&times, " rank %d: %s, error after %.0f ms, exit after %.0f ms;", k,
		       ending(nd, b, sizeof b), err_ms, exit_ms);
		if (!nd->signaled && nd->code == 0)
			fail(row, "survivor rank %d exited 0 after rank %d was killed", k, victim);
		else if (nd->signaled)
			fail(row, "survivor rank %d killed by signal %d", k, nd->code);
		else if (nd->code != EXIT_FAULT_DEFAULT && !nd->err_ns)
			fail(row, "survivor rank %d exited %d without saying a peer failed", k,
			     nd->code);
		if (exit_ms > bound_ms)
			fail(row, "survivor rank %d ended %.0f ms after the death, bound %.0f ms",
			     k, exit_ms, bound_ms);
	}
	note(row, "death -> survivors:%s", sb_str(&times));
	sb_free(&times);
	job_free(&j);
}

/* SIGSTOP a node for longer than the peer timeout (test-peer-death pause):
 * the others declare it dead and go on; it learns on waking that it was
 * excluded; nothing it sends then changes the survivors' memory. */
static void run_pause_long(struct row *row, struct rng *r)
{
	const struct scenario *sc = row->sc;
	struct job j;
	int victim, T = peer_timeout(sc);
	double at, stop_for = 3.0 * T / 1000.0;
	struct sbuf times = { 0 };

	job_init(&j, row, r, "test-peer-death pause", sc->nodes);
	victim = (int)rng_below(r, (unsigned)j.n);
	at = rng_uniform(r, 0.1, 0.8);
	j.argv[0] = opt.peer_death;
	j.argv[1] = "pause";
	j.argv[2] = NULL;
	job_env(&j, "TEST_PD_VICTIM=%d", victim);
	job_env(&j, "TEST_PD_ROUNDS=100000000");
	job_env(&j, "TEST_PD_HOLD_MS=%d", (int)(stop_for * 1000) + 2000);
	j.ready = "pause: setup done";
	j.act[j.nact++] = (struct action){ .at = at, .rank = victim, .sig = SIGSTOP };
	j.act[j.nact++] = (struct action){ .at = at + stop_for, .rank = victim, .sig = SIGCONT };
	job_log_env(&j);
	job_run(&j);
	row_add(row, &j);
	note_stats(row, &j);
	note(row, "rank %d stopped at ready+%.2f s for %.1f s (peer timeout %d ms)", victim, at,
	     stop_for, T);
	if (j.hung) {
		report_hang(row, &j);
		job_free(&j);
		return;
	}
	if (!j.act[0].done_ns || !j.act[1].done_ns) {
		fail(row, "rank %d was not stopped and resumed: the job %s", victim,
		     j.t_ready ? "ended first" : "never became ready");
		job_free(&j);
		return;
	}
	for (int k = 0; k < j.n; k++) {
		const struct node *nd = &j.node[k];
		char b[64];

		if (k == victim) {
			double ms = (double)(nd->exit_ns - j.act[1].done_ns) / 1e6;

			if (nd->signaled || (nd->code != 3 && nd->code != 4))
				fail(row, "the paused node, rank %d: %s (expected exit 3 or 4: "
				     "excluded)", k, ending(nd, b, sizeof b));
			else if (ms > 2.0 * T + 500)
				fail(row, "the paused node ended %.0f ms after it was resumed, "
				     "bound %d ms", ms, 2 * T + 500);
			sb_add(&times, " paused rank %d: %s %.0f ms after SIGCONT;", k,
			       ending(nd, b, sizeof b), ms);
			continue;
		}
		if (nd->signaled || nd->code)
			fail(row, "survivor rank %d: %s", k, ending(nd, b, sizeof b));
		if (nd->err_ns)
			sb_add(&times, " rank %d: error %.0f ms after SIGSTOP;", k,
			       (double)(nd->err_ns - j.act[0].done_ns) / 1e6);
		if (nd->err_ns && nd->err_ns - j.act[0].done_ns > (int64_t)2 * T * 1000000 + 500000000)
			fail(row, "survivor rank %d saw the failure %.0f ms after SIGSTOP, bound %d ms",
			     k, (double)(nd->err_ns - j.act[0].done_ns) / 1e6, 2 * T + 500);
	}
	{
		/* "excluded" from the paused node; "survivor ok" from the others */
		char want[64];
		int ok_lines = 0;

		for (int k = 0; k < j.n; k++) {
			snprintf(want, sizeof want, "[%d] survivor ok", k);
			ok_lines += k != victim && job_has(&j, want);
		}
		if (ok_lines != j.n - 1)
			fail(row, "%d of %d survivors printed \"survivor ok\"", ok_lines, j.n - 1);
		/* "[V] pause: excluded: ..." or "[V] pause: error ... excluded: ..." */
		snprintf(want, sizeof want, "\n[%d] pause: ", victim);
		for (const char *p = sb_str(&j.out); (p = strstr(p, want)); p++) {
			const char *e = strchr(p + 1, '\n');

			if (e && memmem(p, (size_t)(e - p), "excluded:", 9)) {
				ok_lines = -1;
				break;
			}
		}
		if (ok_lines != -1)
			fail(row, "the paused node did not say it was excluded");
	}
	{
		uint64_t stale = 0;

		for (int k = 0; k < j.n; k++)
			if (k != victim)
				stale += j.node[k].st[S_STALE];
		if (!stale)
			fail(row, "the survivors dropped no stale datagram from the paused node");
	}
	note(row, "%s", sb_str(&times));
	sb_free(&times);
	if (!row->pass)
		show_lines(row, &j);
	job_free(&j);
}

/* SIGSTOP a node for less than the peer timeout: nothing is lost. */
static void run_pause_short(struct row *row, struct rng *r)
{
	const struct scenario *sc = row->sc;
	struct job j;
	int victim, T = peer_timeout(sc);
	double at, stop_for;

	job_init(&j, row, r, "", sc->nodes);
	setup_dsm(&j, sc);
	victim = (int)rng_below(r, (unsigned)j.n);
	at = rng_uniform(r, 0.1, 1.0);
	stop_for = rng_uniform(r, 0.3, 0.5) * T / 1000.0;
	j.act[j.nact++] = (struct action){ .at = at, .rank = victim, .sig = SIGSTOP };
	j.act[j.nact++] = (struct action){ .at = at + stop_for, .rank = victim, .sig = SIGCONT };
	job_log_env(&j);
	job_run(&j);
	row_add(row, &j);
	note_stats(row, &j);
	note(row, "rank %d stopped at ready+%.2f s for %.0f ms (peer timeout %d ms)", victim, at,
	     stop_for * 1000, T);
	if (expect_clean(row, &j)) {
		expect_lines_dsm(row, &j);
		if (!j.act[0].done_ns || !j.act[1].done_ns)
			fail(row, "rank %d was not stopped and resumed: the job ended first", victim);
	}
	job_free(&j);
}

/* test-peer-death death under dsmrun: every call's result and time, the
 * fault handlers, and dsmrun's report. */
static void run_death(struct row *row, struct rng *r)
{
	const struct scenario *sc = row->sc;
	struct job j;
	int victim, n = sc->nodes, surv[MAXN], ns = 0;
	static char vbuf[8];
	char stamp[PATH_MAX + 32], want[160];
	bool kill_it = !strncmp(sc->how, "kill", 4);
	bool all_fin = strstr(sc->how, "finalize") != NULL;   /* every survivor finalizes */

	job_init(&j, row, r, "", n);
	victim = (int)rng_below(r, (unsigned)n);
	snprintf(vbuf, sizeof vbuf, "%d", victim);
	snprintf(stamp, sizeof stamp, "%s/stamp-%s-%" PRIu64, opt.log_dir, sc->name, row->seed);
	j.what = all_fin ? "test-peer-death death, every survivor finalizes (victim SIGKILLs "
			   "itself)" :
		 kill_it ? "test-peer-death death (victim SIGKILLs itself)" :
			   "test-peer-death death (victim _exits)";
	j.via_dsmrun = true;
	j.argv[0] = opt.peer_death;
	j.argv[1] = "death";
	j.argv[2] = vbuf;
	j.argv[3] = kill_it ? "kill" : "exit";
	j.argv[4] = all_fin ? "100" : NULL;
	j.argv[5] = all_fin ? "finalize" : NULL;
	j.argv[6] = NULL;
	job_env(&j, "TEST_PD_STAMP=%s", stamp);
	job_env(&j, "DSMRUN_GRACE_MS=30000");   /* the survivors outlive the victim */
	job_log_env(&j);
	job_run(&j);
	unlink(stamp);
	row_add(row, &j);
	row->faults++;   /* the death */
	note(row, "%s: victim rank %d", j.what, victim);
	if (j.hung) {
		report_hang(row, &j);
		job_free(&j);
		return;
	}
	for (int k = 0; k < n; k++)
		if (k != victim)
			surv[ns++] = k;
	/* dsmrun: which rank died and how, and a non-zero status */
	if (kill_it)
		snprintf(want, sizeof want, "dsmrun: rank %d killed by signal 9 (SIGKILL)", victim);
	else
		snprintf(want, sizeof want, "dsmrun: rank %d exited with status 3", victim);
	if (!job_has(&j, want))
		fail(row, "dsmrun did not report \"%s\"", want);
	if (!WIFEXITED(j.runner_status) ||
	    WEXITSTATUS(j.runner_status) != (kill_it ? 128 + SIGKILL : 3))
		fail(row, "dsmrun's exit status is %d, expected %d (the victim's)",
		     WIFEXITED(j.runner_status) ? WEXITSTATUS(j.runner_status) : -1,
		     kill_it ? 128 + SIGKILL : 3);
	/* survivors' roles: s0 finalize (exit 0), s1 own handler (42), s2
	 * default handler (86), others finalize */
	for (int i = 0; i < ns; i++) {
		const struct node *nd = &j.node[surv[i]];
		int code = all_fin ? 0 : i == 1 ? 42 : i == 2 ? EXIT_FAULT_DEFAULT : 0;
		char b[64], fails[48];
		bool failed_checks;

		snprintf(fails, sizeof fails, "[%d] FAIL rank %d", surv[i], surv[i]);
		failed_checks = job_has(&j, fails);
		if (code && (!nd->exited || nd->signaled || nd->code != code))
			fail(row, "survivor rank %d (role %s): %s, expected exit %d", surv[i],
			     code == 42 ? "handler" : "default handler",
			     nd->exited ? ending(nd, b, sizeof b) : "exit 0", code);
		if (code)
			continue;
		/* finalize: DSM_EPEERDEAD, then exit 0 unless a check failed */
		snprintf(want, sizeof want, "[%d] check finalize: ok", surv[i]);
		if (!job_has(&j, want))
			fail(row, "survivor rank %d: dsm_finalize did not return DSM_EPEERDEAD",
			     surv[i]);
		if (!failed_checks) {
			snprintf(want, sizeof want, "[%d] survivor ok", surv[i]);
			if (nd->exited || !job_has(&j, want))
				fail(row, "survivor rank %d (role finalize): %s without \"survivor "
				     "ok\"", surv[i], nd->exited ? ending(nd, b, sizeof b) : "exit 0");
		}
	}
	if (ns > 1 && !all_fin) {
		snprintf(want, sizeof want, "[%d] handler: called with addr=", surv[1]);
		if (!job_has(&j, want) || !job_has(&j, "as expected"))
			fail(row, "rank %d: the application's fault handler did not report the "
			     "right address and error", surv[1]);
	}
	if (ns > 2 && !all_fin) {
		/* the default handler names the address the survivor loaded and
		 * the dead rank */
		const char *p;
		char addr[32] = "";

		snprintf(want, sizeof want, "[%d] role default: loading ", surv[2]);
		p = strstr(sb_str(&j.out), want);
		if (p)
			sscanf(p + strlen(want), "%31s", addr);
		snprintf(want, sizeof want, "[%d] libdsm[%d]: access to %s cannot be served: its "
			 "home, node %d,", surv[2], surv[2], addr, victim);
		if (!*addr || !job_has(&j, want))
			fail(row, "rank %d: the default fault handler's message does not name the "
			     "address %s and node %d", surv[2], *addr ? addr : "?", victim);
	}
	if (job_has(&j, "FAIL"))
		fail(row, "a survivor reported a failed check (FAIL lines below)");
	{
		/* the timings the survivors measured */
		const char *s = sb_str(&j.out);

		while ((s = strstr(s, "check "))) {
			const char *e = strchr(s, '\n');
			const char *bol = s;

			while (bol > sb_str(&j.out) && bol[-1] != '\n')
				bol--;
			if (e && (strstr(bol, "check barrier:") == s ||
				  strstr(bol, "check owner-waiting:") == s) && s - bol < 8)
				note(row, "%.*s", (int)(e - bol), bol);
			s = e ? e : s + 6;
		}
	}
	if (!row->pass) {
		const char *s = sb_str(&j.out);

		while (*s) {
			const char *e = strchr(s, '\n');
			size_t l = e ? (size_t)(e - s) : strlen(s);

			if (memmem(s, l, "FAIL", 4))
				sb_add(&row->why, "        %.*s\n", (int)l, s);
			s = e ? e + 1 : s + l;
		}
	}
	job_free(&j);
}

/* The scenarios. Sizes: the quick set runs in about 3 minutes on 2 cores. */
static const struct scenario scenarios[] = {
	{ "loss-1", "1% of datagrams dropped", G_QUICK, 1, K_NET, "drop=0.01",
	  W_DSM | W_MATMUL, 3, 200, 10, 4, 512, 0, 120, NULL },
	{ "loss-10", "10% of datagrams dropped", G_QUICK, 1, K_NET, "drop=0.1",
	  W_DSM | W_MATMUL, 3, 200, 10, 4, 512, 0, 120, NULL },
	{ "loss-30", "30% of datagrams dropped", G_QUICK, 1, K_NET, "drop=0.3",
	  W_DSM | W_MATMUL, 3, 100, 6, 4, 384, 0, 180, NULL },
	{ "dup-20", "20% of datagrams duplicated", G_QUICK, 1, K_NET, "dup=0.2",
	  W_DSM | W_MATMUL, 3, 200, 10, 4, 512, 0, 120, NULL },
	{ "corrupt-5", "5% of datagrams with a bit flipped", G_QUICK, 1, K_NET, "corrupt=0.05",
	  W_DSM | W_MATMUL, 3, 200, 10, 4, 512, 0, 120, NULL },
	{ "reorder-30", "30% of datagrams reordered", G_QUICK, 1, K_NET, "reorder=0.3",
	  W_DSM | W_MATMUL, 3, 100, 6, 4, 512, 0, 120, NULL },
	{ "delay-0-20", "every datagram delayed 0-20 ms", G_QUICK, 1, K_NET, "delay_ms=0-20",
	  W_DSM | W_MATMUL, 3, 10, 3, 4, 256, 0, 180, NULL },
	{ "all", "loss 10%, dup 20%, corrupt 5%, reorder 30%, delay 0-20 ms at once", G_QUICK, 1,
	  K_NET, "drop=0.1,dup=0.2,corrupt=0.05,reorder=0.3,delay_ms=0-20",
	  W_DSM | W_MATMUL, 3, 10, 3, 4, 256, 0, 240, NULL },
	{ "loss-link", "30% loss on one directed link (chosen by the seed) only", G_QUICK, 1,
	  K_LINK, "drop=0.3", W_DSM | W_MATMUL, 3, 200, 10, 4, 512, 0, 120, NULL },
	{ "outage-2s", "a link drops everything for 2 s, then recovers (peer timeout 4 s)",
	  G_QUICK, 1, K_OUTAGE, NULL, W_DSM, 3, 500, 10, 0, 0, 4000, 120, NULL },
	{ "foreign", "random, corrupt, foreign, stale and replayed datagrams from outside",
	  G_QUICK, 1, K_FOREIGN, NULL, W_DSM, 3, 300, 10, 0, 0, 0, 120, NULL },
	{ "kill-dsm", "SIGKILL a node during test-dsm counter,multiwriter", G_QUICK, 3, K_KILL,
	  NULL, W_DSM, 4, 300, 1000, 0, 0, 0, 30, NULL },
	{ "kill-matmul", "SIGKILL a node during matmul -N 1024", G_QUICK, 3, K_KILL, NULL,
	  W_MATMUL, 0, 0, 0, 4, 1024, 0, 30, NULL },
	{ "pause-long", "SIGSTOP a node 3 x the peer timeout: excluded, never harmful", G_QUICK,
	  2, K_PAUSE_LONG, NULL, 0, 3, 0, 0, 0, 0, 0, 30, NULL },
	{ "pause-long-4", "SIGSTOP one of 4 nodes 3 x the peer timeout", G_QUICK, 2,
	  K_PAUSE_LONG, NULL, 0, 4, 0, 0, 0, 0, 0, 30, NULL },
	{ "pause-short", "SIGSTOP a node 0.3-0.5 x the peer timeout: nothing lost", G_QUICK, 2,
	  K_PAUSE_SHORT, NULL, W_DSM, 3, 600, 10, 0, 0, 0, 120, NULL },
	{ "death-kill", "test-peer-death: a node SIGKILLs itself; every call checked", G_DEATH, 2,
	  K_DEATH, NULL, 0, 4, 0, 0, 0, 0, 0, 30, "kill" },
	{ "death-exit", "test-peer-death: a node _exits; every call checked", G_DEATH, 1, K_DEATH,
	  NULL, 0, 4, 0, 0, 0, 0, 0, 30, "exit" },
	{ "death-finalize", "test-peer-death: a node dies, every survivor then finalizes", G_DEATH,
	  1, K_DEATH, NULL, 0, 4, 0, 0, 0, 0, 0, 30, "kill+finalize" },
	{ "migrate-all", "every fault at once while homes migrate (test-dsm migrate,threads)",
	  G_QUICK, 2, K_NET, "drop=0.1,dup=0.2,corrupt=0.05,reorder=0.3,delay_ms=0-20", W_DSM, 3,
	  20, 10, 0, 0, 0, 240, NULL, "migrate,threads" },
	{ "kill-migrate", "SIGKILL a node while homes migrate (test-dsm migrate,threads)",
	  G_QUICK, 3, K_KILL, NULL, W_DSM, 4, 800, 1000, 0, 0, 0, 30, NULL, "migrate,threads" },
	{ "loss-30-big", "30% loss, matmul -N 1024 and test-dsm on 4 nodes", 0, 1, K_NET,
	  "drop=0.3", W_DSM | W_MATMUL, 4, 200, 10, 4, 1024, 0, 300, NULL },
	{ "all-big", "every fault at once, matmul -N 768 on 4 nodes", 0, 1, K_NET,
	  "drop=0.1,dup=0.2,corrupt=0.05,reorder=0.3,delay_ms=0-20", W_MATMUL, 0, 0, 0, 4, 768,
	  0, 300, NULL },
};
#define N_SCENARIOS (int)(sizeof scenarios / sizeof scenarios[0])

static void run_scenario(struct row *row)
{
	struct rng r = { row->seed };
	int64_t t0 = now_ns();

	row->pass = true;
	switch (row->sc->kind) {
	case K_NET:
	case K_LINK:
		run_net(row, &r);
		break;
	case K_OUTAGE:
		run_outage(row, &r);
		break;
	case K_FOREIGN:
		run_foreign(row, &r);
		break;
	case K_KILL:
		run_kill(row, &r);
		break;
	case K_PAUSE_LONG:
		run_pause_long(row, &r);
		break;
	case K_PAUSE_SHORT:
		run_pause_short(row, &r);
		break;
	case K_DEATH:
		run_death(row, &r);
		break;
	}
	row->seconds = secs(now_ns() - t0);
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dsm-faults [--quick | --all | --death | --scenario NAME[,NAME...]] [--seed S]\n"
		"                  [--list] [--keep-logs] [--log-dir DIR] [--deadline SECONDS] [-v]\n"
		"                  [--dsmrun P] [--test-dsm P] [--matmul P] [--peer-death P]\n"
		"\n"
		"  --quick      the quick set (default; what `meson test --suite fault` runs)\n"
		"  --all        every scenario, some several times with different seeds\n"
		"  --death      the test-peer-death scenarios (meson test peer-death)\n"
		"  --scenario   these scenarios, once each\n"
		"  --seed S     the seed of every scenario run (default: a fresh one each)\n"
		"  --list       print the scenario names and exit\n"
		"  --keep-logs  keep the log of passing scenarios too (failures' are kept)\n"
		"  --deadline S every job's deadline (default: the scenario's); a job still\n"
		"               running then is a hang: killed, reported with its last events\n"
		"  -v           print the workloads' output as it comes\n"
		"\n"
		"A failure prints the command that replays it: --scenario NAME --seed S.\n");
}

static uint64_t fresh_seed(void)
{
	static uint64_t ctr;
	struct rng r = { (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ ++ctr * 0x9E37ull };

	return rng_next(&r) % 4000000000u + 1;
}

int main(int argc, char **argv)
{
	enum { O_ALL = 256, O_QUICK, O_DEATH, O_SCEN, O_SEED, O_LIST, O_KEEP, O_LOGDIR, O_DSMRUN,
	       O_TESTDSM, O_MATMUL, O_PD, O_DEADLINE };
	static const struct option lo[] = {
		{ "all", no_argument, NULL, O_ALL },
		{ "quick", no_argument, NULL, O_QUICK },
		{ "death", no_argument, NULL, O_DEATH },
		{ "scenario", required_argument, NULL, O_SCEN },
		{ "seed", required_argument, NULL, O_SEED },
		{ "list", no_argument, NULL, O_LIST },
		{ "keep-logs", no_argument, NULL, O_KEEP },
		{ "log-dir", required_argument, NULL, O_LOGDIR },
		{ "dsmrun", required_argument, NULL, O_DSMRUN },
		{ "test-dsm", required_argument, NULL, O_TESTDSM },
		{ "matmul", required_argument, NULL, O_MATMUL },
		{ "peer-death", required_argument, NULL, O_PD },
		{ "deadline", required_argument, NULL, O_DEADLINE },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct row *rows;
	int nrows = 0, set = O_QUICK, c, failed = 0;
	bool seed_given = false, chosen[N_SCENARIOS] = { 0 };
	uint64_t seed = 0;
	const char *log_dir = NULL;
	double total = 0;
	char deadline_arg[48] = "";   /* for the replay lines */

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt_long(argc, argv, "hv", lo, NULL)) != -1) {
		switch (c) {
		case O_ALL:
		case O_QUICK:
		case O_DEATH:
			set = c;
			break;
		case O_SCEN: {
			char *s = strdup(optarg), *tok, *save = NULL;

			set = O_SCEN;
			for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				int i;

				for (i = 0; i < N_SCENARIOS && strcmp(tok, scenarios[i].name); i++)
					;
				if (i == N_SCENARIOS) {
					fprintf(stderr, "dsm-faults: no scenario '%s' (--list)\n", tok);
					return 2;
				}
				chosen[i] = true;
			}
			free(s);
			break;
		}
		case O_SEED: {
			char *end;

			errno = 0;
			seed = strtoull(optarg, &end, 0);
			if (errno || *end || !*optarg) {
				fprintf(stderr, "dsm-faults: --seed %s: not a number\n", optarg);
				return 2;
			}
			seed_given = true;
			break;
		}
		case O_LIST:
			for (int i = 0; i < N_SCENARIOS; i++)
				printf("%-15s %-6s %s\n", scenarios[i].name,
				       scenarios[i].groups & G_QUICK ? "quick" :
				       scenarios[i].groups & G_DEATH ? "death" : "all",
				       scenarios[i].what);
			return 0;
		case O_KEEP:
			opt.keep_logs = true;
			break;
		case O_LOGDIR:
			log_dir = optarg;
			break;
		case O_DSMRUN:
			opt.dsmrun = optarg;
			break;
		case O_TESTDSM:
			opt.test_dsm = optarg;
			break;
		case O_MATMUL:
			opt.matmul = optarg;
			break;
		case O_PD:
			opt.peer_death = optarg;
			break;
		case O_DEADLINE:
			opt.deadline = atof(optarg);
			if (opt.deadline <= 0) {
				fprintf(stderr, "dsm-faults: --deadline %s: expected seconds > 0\n",
					optarg);
				return 2;
			}
			break;
		case 'v':
			opt.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!realpath("/proc/self/exe", opt.self))
		snprintf(opt.self, sizeof opt.self, "%s", argv[0]);
	for (const char **p = (const char *[]){ opt.dsmrun, opt.test_dsm, opt.matmul,
						opt.peer_death, NULL }; *p; p++)
		if (access(*p, X_OK)) {
			fprintf(stderr, "dsm-faults: cannot run %s: %s\n", *p, strerror(errno));
			return 2;
		}
	if (log_dir) {
		mkdir(log_dir, 0777);
		snprintf(opt.log_dir, sizeof opt.log_dir, "%s", log_dir);
	} else {
		const char *tmp = getenv("TMPDIR");

		snprintf(opt.log_dir, sizeof opt.log_dir, "%s/dsm-faults.XXXXXX",
			 tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(opt.log_dir)) {
			perror("dsm-faults: mkdtemp");
			return 2;
		}
	}

	rows = calloc((size_t)N_SCENARIOS * 4, sizeof *rows);
	if (!rows)
		return 125;
	for (int i = 0; i < N_SCENARIOS; i++) {
		const struct scenario *sc = &scenarios[i];
		int reps = 0;

		if (set == O_SCEN)
			reps = chosen[i];
		else if (set == O_QUICK)
			reps = (sc->groups & G_QUICK) != 0;
		else if (set == O_DEATH)
			reps = (sc->groups & G_DEATH) != 0;
		else
			reps = sc->all_reps;
		for (int k = 0; k < reps; k++) {
			rows[nrows].sc = sc;
			rows[nrows].seed = seed_given ? seed : fresh_seed();
			nrows++;
		}
	}
	if (opt.deadline > 0)
		snprintf(deadline_arg, sizeof deadline_arg, " --deadline %g", opt.deadline);
	printf("dsm-faults: %d scenario run(s), logs in %s\n", nrows, opt.log_dir);
	for (int i = 0; i < nrows; i++) {
		struct row *row = &rows[i];

		snprintf(row->log_path, sizeof row->log_path, "%s/%s-%" PRIu64 ".log", opt.log_dir,
			 row->sc->name, row->seed);
		row->log = fopen(row->log_path, "w");
		if (row->log)
			setvbuf(row->log, NULL, _IOFBF, 1 << 16);
		printf("[%2d/%d] %-14s seed %-10" PRIu64 " %s\n", i + 1, nrows, row->sc->name,
		       row->seed, row->sc->what);
		run_scenario(row);
		total += row->seconds;
		printf("        %s in %.1f s: faults %" PRIu64 ", retransmissions %" PRIu64
		       ", dropped %" PRIu64 "\n", row->pass ? "PASS" : "FAIL", row->seconds,
		       row->faults, row->retx, row->dropped);
		fputs(sb_str(&row->notes), stdout);
		if (!row->pass) {
			failed++;
			fputs(sb_str(&row->why), stdout);
			printf("    log: %s\n    replay: %s --scenario %s --seed %" PRIu64 "%s\n",
			       row->log_path, opt.self, row->sc->name, row->seed, deadline_arg);
		}
		if (row->log)
			fclose(row->log);
		if (row->pass && !opt.keep_logs)
			unlink(row->log_path);
	}

	printf("\n%-15s %10s  %-6s %8s %9s %11s %9s\n", "scenario", "seed", "result", "seconds",
	       "faults", "retransmits", "dropped");
	for (int i = 0; i < nrows; i++)
		printf("%-15s %10" PRIu64 "  %-6s %8.1f %9" PRIu64 " %11" PRIu64 " %9" PRIu64 "\n",
		       rows[i].sc->name, rows[i].seed, rows[i].pass ? "PASS" : "FAIL",
		       rows[i].seconds, rows[i].faults, rows[i].retx, rows[i].dropped);
	printf("%d of %d passed in %.1f s\n", nrows - failed, nrows, total);
	if (failed) {
		printf("\nreplay the failures:\n");
		for (int i = 0; i < nrows; i++)
			if (!rows[i].pass)
				printf("  %s --scenario %s --seed %" PRIu64 "%s\n", opt.self,
				       rows[i].sc->name, rows[i].seed, deadline_arg);
	} else if (!opt.keep_logs && !log_dir) {
		rmdir(opt.log_dir);
	}
	for (int i = 0; i < nrows; i++) {
		sb_free(&rows[i].why);
		sb_free(&rows[i].notes);
	}
	free(rows);
	return failed ? 1 : 0;
}
