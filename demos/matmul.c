/*
 * matmul: C = A x B for N x N doubles on every node of a libdsm job, written
 * the way a user writes a shared-memory program, against include/dsm.h only.
 *
 *   dsmrun -n 4 build/demos/matmul [-N size] [-b block] [--placement P] ...
 *   build/demos/matmul --reference [-N size] [-b block]   (no libdsm)
 *
 * Phases (every node; rank 0 prints):
 *   init     dsm_init; rank 0 allocates A, B and C with dsm_malloc_placed
 *            and hands the pointers over with dsm_bcast; every node fills
 *            its own block of rows of A and B with a fixed seeded pattern
 *            (--init rank0: rank 0 fills everything); dsm_barrier.
 *   compute  every node reads B once in page order (see touch_pages), then
 *            computes its block of rows of C with the blocked kernel
 *            below; dsm_barrier. The reported seconds are rank 0's time
 *            from leaving the barrier before the multiply to leaving the
 *            barrier after it: the slowest node's multiply, B's pages
 *            fetched, C's writes released.
 *   check    rank 0 recomputes C in private memory (every entry when
 *            N <= 1024, else a sample) and compares (--check, the default).
 * Rows: node k of P gets rows [k*q + min(k, r), ...) with q = N / P, r = N
 * mod P: the same split as DSM_PLACE_BLOCKED's pages, so with --placement
 * blocked (the default) a node's rows of A and C are homed on that node and
 * only B travels, (N-1)/N of it to every node.
 * Measured on a 2-core VM at N = 2048 (default options otherwise): filling
 * A and B with every node writing its own rows (--init own) takes 0.25 to
 * 0.55 s at 2 and 4 nodes, rank 0 writing everything (--init rank0) 1.7 to
 * 3.0 s (its writes to pages homed elsewhere become diffs); the multiply
 * takes about the same after either. Reading B in page order first makes
 * the multiply 1.7x (2 nodes) to 2.7x (4 nodes) faster than letting the
 * kernel's own accesses fetch B (--no-prefetch).
 *
 * --reference runs the same kernel function, one thread, on plain malloc
 * memory, with the same phases (the read of B in page order too) and the
 * same summary line: the baseline that tests/perf/bench-matmul compares the
 * library with.
 *
 * Output: a progress line on a terminal (rows done per node, refreshed four
 * times a second; off when the output is not a terminal, or --no-progress),
 * then the summary; with DSM_STATS=1 also a table of every node's
 * statistics. Exit status: 0 on PASS (or --no-check), 1 on FAIL or any
 * error, 2 on a usage error, 77 when the pager asked for (DSM_PAGER) is not
 * available here.
 *
 * Threads: the main thread does all the work; on rank 0 a progress thread
 * reads the per-node row counters (dsm_fetch_add of 0) while the nodes
 * compute.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, getopt_long, dup with -std=c11 */
#endif
#include <dsm.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_DEFAULT 1024
#define BLOCK_DEFAULT 64
#define N_MAX 65536           /* 32 GiB per matrix: far beyond any heap */
#define FULL_CHECK_MAX 1024   /* every entry checked up to this N */
#define SAMPLES 2048          /* entries checked by a plain dot product */
#define TOLERANCE 1e-10       /* largest relative error that passes */
#define SEED 0x6d61746d756c31ull
#define PROGRESS_NS 250000000L
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_SKIP 77

/* ---- the kernel ----------------------------------------------------------- */

static inline size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* c[i][j0..j1) += sum over k in [k0, k1) of a[i][k] * b[k][j], for rows
 * i in [i0, i1). Two rows of C at a time and four rows of B per pass, so
 * each load of B feeds four multiply-adds into each of two rows; the inner
 * loop is a plain unit-stride loop the compiler vectorises. The sum for
 * one entry is taken in the same order whatever i0 and i1 are, so a node's
 * block of rows equals the same rows of a single-process run, bit for bit. */
static void block_mul(size_t n, const double *restrict a, const double *restrict b,
		      double *restrict c, size_t i0, size_t i1, size_t k0, size_t k1,
		      size_t j0, size_t j1)
{
	size_t i = i0, k, j;

	for (; i + 2 <= i1; i += 2) {
		double *restrict c0 = c + i * n, *restrict c1 = c0 + n;
		const double *a0 = a + i * n, *a1 = a0 + n;

		for (k = k0; k + 4 <= k1; k += 4) {
			const double *b0 = b + k * n, *b1 = b0 + n, *b2 = b1 + n, *b3 = b2 + n;
			double x0 = a0[k], x1 = a0[k + 1], x2 = a0[k + 2], x3 = a0[k + 3];
			double y0 = a1[k], y1 = a1[k + 1], y2 = a1[k + 2], y3 = a1[k + 3];

			for (j = j0; j < j1; j++) {
				double t0 = b0[j], t1 = b1[j], t2 = b2[j], t3 = b3[j];

				c0[j] += x0 * t0 + x1 * t1 + x2 * t2 + x3 * t3;
				c1[j] += y0 * t0 + y1 * t1 + y2 * t2 + y3 * t3;
			}
		}
		for (; k < k1; k++) {
			const double *b0 = b + k * n;
			double x0 = a0[k], y0 = a1[k];

			for (j = j0; j < j1; j++) {
				c0[j] += x0 * b0[j];
				c1[j] += y0 * b0[j];
			}
		}
	}
	for (; i < i1; i++) {
		double *restrict c0 = c + i * n;
		const double *a0 = a + i * n;

		for (k = k0; k + 4 <= k1; k += 4) {
			const double *b0 = b + k * n, *b1 = b0 + n, *b2 = b1 + n, *b3 = b2 + n;
			double x0 = a0[k], x1 = a0[k + 1], x2 = a0[k + 2], x3 = a0[k + 3];

			for (j = j0; j < j1; j++)
				c0[j] += x0 * b0[j] + x1 * b1[j] + x2 * b2[j] + x3 * b3[j];
		}
		for (; k < k1; k++) {
			const double *b0 = b + k * n;
			double x0 = a0[k];

			for (j = j0; j < j1; j++)
				c0[j] += x0 * b0[j];
		}
	}
}

/* Called after each band of rows with the number of rows just finished. */
typedef void (*band_fn)(size_t rows, void *arg);

/* C[r0..r1) = A[r0..r1) x B, all n x n row-major. Cache-blocked: bands of
 * bs rows of C (and A); within a band, bs-deep slices of B's rows, in
 * column strips of jb = 8 bs (bs x jb of B, 256 KiB at bs = 64, stays in
 * the L2 cache while the band's rows stream through it). The demo's nodes
 * and the single-process reference both call this. Any thread. */
static void matmul_kernel(size_t n, size_t bs, const double *a, const double *b,
			  double *c, size_t r0, size_t r1, band_fn done, void *arg)
{
	size_t jb = min_sz(8 * bs, n);

	for (size_t i = r0; i < r1; i += bs) {
		size_t i1 = min_sz(i + bs, r1);

		memset(c + i * n, 0, (i1 - i) * n * sizeof(*c));
		for (size_t k = 0; k < n; k += bs)
			for (size_t j = 0; j < n; j += jb)
				block_mul(n, a, b, c, i, i1, k, min_sz(k + bs, n), j,
					  min_sz(j + jb, n));
		if (done)
			done(i1 - i, arg);
	}
}

/* ---- inputs ---------------------------------------------------------------- */

/* Entry (i, j) of matrix `which` (0: A, 1: B): a hash of the position,
 * uniform in [-1, 1), so any node can fill any row and the check can
 * rebuild the inputs without reading shared memory. */
static double pattern(int which, size_t i, size_t j)
{
	uint64_t x = SEED ^ ((uint64_t)which << 62) ^ ((uint64_t)i << 31) ^ (uint64_t)j;

	x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	x ^= x >> 31;
	return (double)(x >> 11) * 0x1p-52 - 1.0;
}

static void fill_rows(double *m, int which, size_t n, size_t r0, size_t r1)
{
	for (size_t i = r0; i < r1; i++)
		for (size_t j = 0; j < n; j++)
			m[i * n + j] = pattern(which, i, j);
}

/* Rows of node k of p: the split DSM_PLACE_BLOCKED uses for pages. */
static void rows_of(size_t n, int p, int k, size_t *r0, size_t *r1)
{
	size_t q = n / (size_t)p, rem = n % (size_t)p, kk = (size_t)k;

	*r0 = kk * q + min_sz(kk, rem);
	*r1 = *r0 + q + (kk < rem);
}

/* Read one word of every page of m (bytes long) in address order. On a
 * node, the first touch of a page homed elsewhere fetches it, and the
 * library fetches the pages of a node that reads in address order several
 * per message (fetch-ahead): one pass over B before the multiply costs a
 * few dozen round trips where the kernel's first touches (four rows of B,
 * a page apart, at a time) would cost one per page. Any thread. */
static double touch_pages(const double *m, size_t bytes)
{
	size_t step = (size_t)sysconf(_SC_PAGESIZE) / sizeof(*m);
	double sum = 0;

	for (size_t i = 0; i < bytes / sizeof(*m); i += step)
		sum += ((const volatile double *)m)[i];
	return sum;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- check ----------------------------------------------------------------- */

struct check {
	bool pass;
	size_t full;      /* entries compared with a private run of the kernel */
	size_t sampled;   /* entries compared with a plain dot product */
	double worst;     /* largest relative error */
	size_t wi, wj;    /* where */
	const char *err;  /* set when the check itself could not run */
};

static void check_entry(struct check *ck, const double *rowabs, const double *colmax,
			size_t i, size_t j, double got, double want)
{
	double scale = rowabs[i] * colmax[j];
	double e = fabs(got - want) / (scale > 0 ? scale : 1.0);

	if (isnan(e))
		e = INFINITY;
	if (e > ck->worst) {
		ck->worst = e;
		ck->wi = i;
		ck->wj = j;
	}
	if (!(e <= TOLERANCE))
		ck->pass = false;
}

/* Compare c (n x n, any memory) with a single-process computation from
 * freshly built private copies of A and B: every entry (against the kernel
 * on private memory) when n <= FULL_CHECK_MAX, and always SAMPLES entries
 * against a plain dot product (the first and last row and column, each
 * node's first and last row, the rest pseudo-random), so the kernel itself
 * is checked too. The error of an entry is |c - ref| divided by
 * sum_k |A[i][k]| * max_k |B[k][j]|, a bound of the terms summed; it passes
 * when every error is at most TOLERANCE. */
static struct check check_result(const double *c, size_t n, size_t bs, int nodes)
{
	struct check ck = { .pass = true, .worst = -1 };
	double *a = malloc(n * n * sizeof(*a)), *b = malloc(n * n * sizeof(*b));
	double *rowabs = calloc(n, sizeof(*rowabs)), *colmax = calloc(n, sizeof(*colmax));
	double *ref = NULL;
	uint64_t rng = SEED;

	if (!a || !b || !rowabs || !colmax) {
		ck.err = "out of memory";
		goto out;
	}
	fill_rows(a, 0, n, 0, n);
	fill_rows(b, 1, n, 0, n);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < n; k++) {
			rowabs[i] += fabs(a[i * n + k]);
			colmax[k] = fmax(colmax[k], fabs(b[i * n + k]));
		}
	if (n <= FULL_CHECK_MAX) {
		ref = malloc(n * n * sizeof(*ref));
		if (!ref) {
			ck.err = "out of memory";
			goto out;
		}
		matmul_kernel(n, bs, a, b, ref, 0, n, NULL, NULL);
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++)
				check_entry(&ck, rowabs, colmax, i, j, c[i * n + j], ref[i * n + j]);
		ck.full = n * n;
	}
	for (size_t s = 0; s < SAMPLES && s < n * n; s++) {
		size_t i, j, r0, r1;
		double want = 0;

		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		i = (size_t)(rng >> 33) % n;
		j = (size_t)((rng >> 11) & 0x3fffff) % n;
		if (s < 4) {                    /* the corners */
			i = s & 1 ? n - 1 : 0;
			j = s & 2 ? n - 1 : 0;
		} else if (s < 4 + 2 * (size_t)nodes) { /* each node's first and last row */
			rows_of(n, nodes, (int)((s - 4) / 2), &r0, &r1);
			if (r0 == r1)
				continue;
			i = (s & 1) ? r1 - 1 : r0;
		}
		for (size_t k = 0; k < n; k++)
			want += a[i * n + k] * b[k * n + j];
		check_entry(&ck, rowabs, colmax, i, j, c[i * n + j], want);
		ck.sampled++;
	}
out:
	free(ref);
	free(colmax);
	free(rowabs);
	free(b);
	free(a);
	if (ck.err)
		ck.pass = false;
	return ck;
}

static void print_check(const struct check *ck, double seconds)
{
	if (ck->err) {
		printf("  check: FAIL: could not run: %s\n", ck->err);
		return;
	}
	printf("  check %.3f s: %s: ", seconds, ck->pass ? "PASS" : "FAIL");
	if (ck->full)
		printf("all %zu entries against a single-process run of the kernel and "
		       "%zu against plain dot products", ck->full, ck->sampled);
	else
		printf("%zu sampled entries against plain dot products "
		       "(every entry only when N <= %d)", ck->sampled, FULL_CHECK_MAX);
	printf(", worst relative error %.2g at (%zu, %zu), tolerance %.0e\n",
	       ck->worst, ck->wi, ck->wj, TOLERANCE);
}

/* ---- options --------------------------------------------------------------- */

enum init_mode { INIT_OWN, INIT_RANK0 };

struct opts {
	size_t n, bs;
	bool check;
	int progress;          /* -1: when on a terminal, 0: off, 1: on */
	enum dsm_placement place;
	enum init_mode init;
	bool reference;
	bool corrupt;          /* hidden: spoil one entry of C (tests) */
	bool prefetch;         /* read B in page order before the multiply */
};

static const char *const place_names[] = { "local", "interleave", "blocked" };
static const char *const init_names[] = { "own", "rank0" };

static const char usage_text[] =
	"usage: dsmrun -n NODES matmul [options]\n"
	"       matmul --reference [options]\n"
	"\n"
	"C = A x B for N x N doubles in libdsm shared memory: every node computes\n"
	"its block of rows of C with a cache-blocked kernel; rank 0 checks the\n"
	"result and prints the summary.\n"
	"\n"
	"options:\n"
	"  -N SIZE            matrix size (default 1024)\n"
	"  -b BLOCK           kernel block size (default 64)\n"
	"  --check            compare C with a single-process computation: every\n"
	"                     entry when N <= 1024, else a sample (default)\n"
	"  --no-check         skip that\n"
	"  --placement P      homes of A, B and C's pages: local (all on rank 0),\n"
	"                     interleave, blocked (node k's rows on node k; default)\n"
	"  --init MODE        who fills A and B: own (each node its rows; default)\n"
	"                     or rank0\n"
	"  --reference        no libdsm: the same kernel in this one process on\n"
	"                     malloc memory, the baseline of the library's timings\n"
	"  --no-prefetch      do not read B in page order before the multiply\n"
	"                     (then the kernel's first touches fetch it page by page)\n"
	"  --progress, --no-progress\n"
	"                     the progress line (default: when the output is a\n"
	"                     terminal)\n"
	"  -h, --help         this text\n"
	"\n"
	"The compute time is measured between the barriers around the multiply.\n"
	"DSM_STATS=1 adds a table of every node's statistics. Exit status: 0 PASS,\n"
	"1 FAIL or error, 2 usage, 77 pager not available (DSM_PAGER).\n";

/* fmt NULL: the help on stdout, 0. Else the message (getopt printed its
 * own when fmt is ""), a hint on stderr, EXIT_USAGE. */
static int usage(const char *fmt, const char *arg)
{
	if (!fmt) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (*fmt) {
		fprintf(stderr, "matmul: ");
		fprintf(stderr, fmt, arg);
		fprintf(stderr, "\n");
	}
	fprintf(stderr, "matmul: -h for the options\n");
	return EXIT_USAGE;
}

static bool parse_size(const char *s, size_t lo, size_t hi, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
		return false;
	*out = (size_t)v;
	return true;
}

/* 0, or the exit status to leave with (help, usage error). -1: go on. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_CHECK = 256, O_NOCHECK, O_PLACE, O_INIT, O_REF, O_PROG, O_NOPROG, O_CORRUPT, O_NOPREFETCH };
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, O_CHECK },
		{ "no-check", no_argument, NULL, O_NOCHECK },
		{ "placement", required_argument, NULL, O_PLACE },
		{ "init", required_argument, NULL, O_INIT },
		{ "reference", no_argument, NULL, O_REF },
		{ "progress", no_argument, NULL, O_PROG },
		{ "no-progress", no_argument, NULL, O_NOPROG },
		{ "corrupt", no_argument, NULL, O_CORRUPT },
		{ "no-prefetch", no_argument, NULL, O_NOPREFETCH },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, i;

	*o = (struct opts){ .n = N_DEFAULT, .bs = BLOCK_DEFAULT, .check = true,
			    .progress = -1, .place = DSM_PLACE_BLOCKED, .init = INIT_OWN,
			    .prefetch = true };
	while ((c = getopt_long(argc, argv, "N:b:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'N':
			if (!parse_size(optarg, 1, N_MAX, &o->n))
				return usage("bad size '%s' (1 .. 65536)", optarg);
			break;
		case 'b':
			if (!parse_size(optarg, 1, N_MAX, &o->bs))
				return usage("bad block size '%s'", optarg);
			break;
		case O_CHECK:
			o->check = true;
			break;
		case O_NOCHECK:
			o->check = false;
			break;
		case O_PLACE:
			for (i = 0; i < 3 && strcmp(optarg, place_names[i]); i++)
				;
			if (i == 3)
				return usage("bad placement '%s' (local, interleave, blocked)", optarg);
			o->place = (enum dsm_placement)i;
			break;
		case O_INIT:
			for (i = 0; i < 2 && strcmp(optarg, init_names[i]); i++)
				;
			if (i == 2)
				return usage("bad init mode '%s' (own, rank0)", optarg);
			o->init = (enum init_mode)i;
			break;
		case O_REF:
			o->reference = true;
			break;
		case O_PROG:
			o->progress = 1;
			break;
		case O_NOPROG:
			o->progress = 0;
			break;
		case O_CORRUPT:
			o->corrupt = true;
			break;
		case O_NOPREFETCH:
			o->prefetch = false;
			break;
		case 'h':
			return usage(NULL, NULL);
		default:
			return usage("", NULL);
		}
	}
	if (optind < argc)
		return usage("unexpected argument '%s'", argv[optind]);
	return -1;
}

/* ---- progress ------------------------------------------------------------- */

/* Where the progress line goes, or -1 for nowhere; *tty: it is a terminal
 * (the line is redrawn in place) rather than a log (one line per update).
 * Run alone: our stdout, when it is a terminal. Under a launcher (dsmrun:
 * DSM_PEERS is set; mpirun: PMIX_RANK), our stdout is a pipe (dsmrun) or
 * a pseudo-terminal (mpirun) that the launcher copies to its own stdout,
 * dsmrun line by line, so that a line redrawn with '\r' can only reach the
 * terminal directly: when the launcher's (our parent's) stdout is a
 * terminal, we write there. --progress without a terminal: plain lines on
 * stderr. */
static int progress_fd(int want, bool *tty)
{
	bool launched = getenv("DSM_PEERS") || getenv("PMIX_RANK");
	char path[64];
	int fd = -1;

	*tty = true;
	if (want == 0)
		return -1;
	if (!launched && isatty(STDOUT_FILENO))
		return dup(STDOUT_FILENO);
	if (launched) {
		snprintf(path, sizeof(path), "/proc/%d/fd/1", (int)getppid());
		fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
		if (fd >= 0 && isatty(fd))
			return fd;
		if (fd >= 0)
			close(fd);
	}
	*tty = false;
	return want > 0 ? dup(STDERR_FILENO) : -1;
}

struct progress {
	int fd;
	bool tty;              /* redraw in place, else one line per update */
	int nodes;
	size_t n;
	int64_t *done;         /* rows done per node: in shared memory, updated by
				* dsm_fetch_add; or one local counter (reference) */
	bool shared;
	double t0;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;             /* protected by mu */
};

static void progress_draw(struct progress *p)
{
	char line[512];
	size_t len, total = 0, r0, r1;
	int64_t v;

	len = (size_t)snprintf(line, sizeof(line), "%smatmul: rows done", p->tty ? "\r" : "");
	for (int k = 0; k < p->nodes; k++) {
		if (!p->shared)
			v = __atomic_load_n(&p->done[k], __ATOMIC_RELAXED);
		else if (dsm_fetch_add(&p->done[k], 0, &v))
			v = 0;
		rows_of(p->n, p->nodes, k, &r0, &r1);
		total += (size_t)v;
		if (p->nodes <= 8 && len < sizeof(line))
			len += (size_t)snprintf(line + len, sizeof(line) - len, "  [%d] %" PRId64 "/%zu",
						k, v, r1 - r0);
	}
	if (len < sizeof(line))
		len += (size_t)snprintf(line + len, sizeof(line) - len, "  (%.0f%%, %.1f s)%s",
					100.0 * (double)total / (double)p->n, now() - p->t0,
					p->tty ? "\033[K" : "\n");
	if (len >= sizeof(line))
		len = sizeof(line) - 1;
	if (write(p->fd, line, len) < 0) {
		/* nothing to do: progress is best effort */
	}
}

static void *progress_main(void *arg)
{
	struct progress *p = arg;
	struct timespec until;

	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += PROGRESS_NS;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cv, &p->mu, &until);
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->mu);
		progress_draw(p);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int progress_start(struct progress *p)
{
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->stop = false;
	p->t0 = now();
	return pthread_create(&p->thread, NULL, progress_main, p);
}

/* Stop the thread and erase the line. */
static void progress_stop(struct progress *p)
{
	static const char erase[] = "\r\033[K";

	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	if (p->tty && write(p->fd, erase, sizeof(erase) - 1) < 0) {
		/* best effort */
	}
}

/* Band hook: add the rows to this node's counter. */
struct band_arg {
	int64_t *counter;
	bool shared;           /* in shared memory: dsm_fetch_add */
	int err;
};

static void band_count(size_t rows, void *arg)
{
	struct band_arg *b = arg;
	int e = 0;

	if (b->shared)
		e = dsm_fetch_add(b->counter, (int64_t)rows, NULL);
	else
		__atomic_fetch_add(b->counter, (int64_t)rows, __ATOMIC_RELAXED);
	if (e && !b->err)
		b->err = e;
}

/* ---- statistics table ------------------------------------------------------ */

static bool stats_wanted(void)
{
	const char *s = getenv("DSM_STATS");

	return s && *s && strcmp(s, "0") != 0;
}

static void print_stats(const struct dsm_stats *st, int nodes)
{
	struct dsm_stats t = { 0 };

	printf("  statistics per node, from dsm_init to the end of the multiply:\n");
	printf("  %5s %8s %8s %8s %8s %8s %8s %10s %8s %9s %11s %7s %9s\n", "node",
	       "rfaults", "wfaults", "fetched", "ahead", "served", "diffs", "diff_B",
	       "inval", "msgs_tx", "bytes_tx", "retx", "barr_ms");
	for (int k = 0; k <= nodes; k++) {
		const struct dsm_stats *s = k < nodes ? &st[k] : &t;
		char name[16] = "total";

		if (k < nodes) {
			t.read_faults += s->read_faults;
			t.write_faults += s->write_faults;
			t.pages_fetched += s->pages_fetched;
			t.prefetched += s->prefetched;
			t.pages_served += s->pages_served;
			t.diffs_sent += s->diffs_sent;
			t.diff_bytes += s->diff_bytes;
			t.invalidations += s->invalidations;
			t.msgs_sent += s->msgs_sent;
			t.bytes_sent += s->bytes_sent;
			t.retransmits += s->retransmits;
			t.barrier_ns += s->barrier_ns;
			snprintf(name, sizeof(name), "%d", k);
		}
		printf("  %5s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64
		       " %8" PRIu64 " %10" PRIu64 " %8" PRIu64 " %9" PRIu64 " %11" PRIu64
		       " %7" PRIu64 " %9.1f\n",
		       name,
		       s->read_faults, s->write_faults, s->pages_fetched, s->prefetched,
		       s->pages_served, s->diffs_sent, s->diff_bytes, s->invalidations,
		       s->msgs_sent, s->bytes_sent, s->retransmits, (double)s->barrier_ns / 1e6);
	}
}

/* ---- the two programs ------------------------------------------------------ */

static void print_head(const struct opts *o, const char *who)
{
	printf("matmul N=%zu %s: compute", o->n, who);
}

static void print_rate(const struct opts *o, double seconds)
{
	double flop = 2.0 * (double)o->n * (double)o->n * (double)o->n;

	printf(" %.3f s, %.2f GFLOP/s", seconds, flop / seconds / 1e9);
}

/* --reference: one process, malloc memory, no libdsm. */
static int run_reference(const struct opts *o)
{
	size_t n = o->n, bytes = n * n * sizeof(double);
	double t0 = now(), t1, t2, t3;
	double *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
	struct check ck = { .pass = true };
	int64_t done = 0;
	struct progress prog = { .nodes = 1, .n = n, .done = &done };
	struct band_arg band = { .counter = &done };
	bool progressing = false;

	if (!a || !b || !c) {
		fprintf(stderr, "matmul: out of memory for N=%zu\n", n);
		free(a);
		free(b);
		free(c);
		return EXIT_FAIL;
	}
	fill_rows(a, 0, n, 0, n);
	fill_rows(b, 1, n, 0, n);
	prog.fd = progress_fd(o->progress, &prog.tty);
	t1 = now();
	if (prog.fd >= 0)
		progressing = progress_start(&prog) == 0;
	if (o->prefetch)
		touch_pages(b, bytes);
	matmul_kernel(n, o->bs, a, b, c, 0, n, prog.fd >= 0 ? band_count : NULL, &band);
	t2 = now();
	if (progressing)
		progress_stop(&prog);
	if (prog.fd >= 0)
		close(prog.fd);
	if (o->corrupt)
		c[(n - 1) * n + n / 2] += 1.0;
	if (o->check)
		ck = check_result(c, n, o->bs, 1);
	t3 = now();
	print_head(o, "reference (one process, malloc memory, no libdsm)");
	print_rate(o, t2 - t1);
	printf(", check %s\n", o->check ? (ck.pass ? "PASS" : "FAIL") : "off");
	printf("  block %zu; compute = one read of B in page order, then the kernel; "
	       "init %.3f s (malloc, fill A and B)\n",
	       o->bs, t1 - t0);
	if (o->check)
		print_check(&ck, t3 - t2);
	free(a);
	free(b);
	free(c);
	return ck.pass ? 0 : EXIT_FAIL;
}

/* What rank 0 hands to every node. */
struct job {
	double *a, *b, *c;
	int64_t *done;         /* rows done per node (atomics only) */
	struct dsm_stats *st;  /* one per node */
	int progress;          /* nodes publish their rows */
	int err;               /* rank 0 failed to allocate: everybody leaves */
};

static int my_rank = -1; /* kept: dsm_rank() is -1 after dsm_finalize */

static int fail(const char *what, int e)
{
	fprintf(stderr, "matmul[%d]: %s: %s\n", dsm_rank() >= 0 ? dsm_rank() : my_rank, what,
		dsm_strerror(e));
	return EXIT_FAIL;
}

static int run_dsm(const struct opts *o)
{
	size_t n = o->n, bytes = n * n * sizeof(double), r0, r1;
	double t_start = now(), t_inited, t_c0, t_c1, t_ck = 0;
	struct job job = { 0 };
	struct progress prog = { .fd = -1 };
	struct band_arg band = { 0 };
	struct check ck = { .pass = true };
	bool want_stats = stats_wanted(), progressing = false;
	int rank, nodes, e, status = EXIT_FAIL, verdict[2];

	e = dsm_init(NULL);
	if (e == DSM_ENOTSUP) {
		printf("SKIP: dsm_init: %s (DSM_PAGER=%s)\n", dsm_strerror(e),
		       getenv("DSM_PAGER") ? getenv("DSM_PAGER") : "auto");
		return EXIT_SKIP;
	}
	if (e) {
		fprintf(stderr, "matmul: dsm_init: %s\n", dsm_strerror(e));
		return EXIT_FAIL;
	}
	t_inited = now();
	rank = dsm_rank();
	nodes = dsm_nodes();
	rows_of(n, nodes, rank, &r0, &r1);

	if (rank == 0) {
		printf("matmul: N=%zu, %d node%s, block %zu, placement %s, init %s\n", n, nodes,
		       nodes > 1 ? "s" : "", o->bs, place_names[o->place], init_names[o->init]);
		fflush(stdout);
		job.a = dsm_malloc_placed(bytes, o->place);
		job.b = job.a ? dsm_malloc_placed(bytes, o->place) : NULL;
		job.c = job.b ? dsm_malloc_placed(bytes, o->place) : NULL;
		job.done = job.c ? dsm_calloc((size_t)nodes, sizeof(*job.done)) : NULL;
		job.st = job.done ? dsm_calloc((size_t)nodes, sizeof(*job.st)) : NULL;
		if (!job.st) {
			job.err = dsm_last_error();
			fprintf(stderr, "matmul: cannot allocate 3 x %zu MiB of shared memory: %s "
				"(DSM_HEAP_SIZE / nodes is the limit)\n", bytes >> 20,
				dsm_strerror(job.err));
		}
		prog.fd = progress_fd(o->progress, &prog.tty);
		job.progress = prog.fd >= 0;
	}
	e = dsm_bcast(&job, sizeof(job), 0);
	if (e) {
		fail("dsm_bcast", e);
		goto out;
	}
	if (job.err)
		goto out;

	/* init: fill A and B. */
	if (o->init == INIT_OWN) {
		fill_rows(job.a, 0, n, r0, r1);
		fill_rows(job.b, 1, n, r0, r1);
	} else if (rank == 0) {
		fill_rows(job.a, 0, n, 0, n);
		fill_rows(job.b, 1, n, 0, n);
	}
	e = dsm_barrier();
	if (e) {
		fail("dsm_barrier after init", e);
		goto out;
	}
	t_c0 = now();

	/* compute */
	if (rank == 0 && job.progress) {
		prog.nodes = nodes;
		prog.n = n;
		prog.done = job.done;
		prog.shared = true;
		progressing = progress_start(&prog) == 0;
	}
	band.counter = &job.done[rank];
	band.shared = true;
	if (o->prefetch)
		touch_pages(job.b, bytes);
	matmul_kernel(n, o->bs, job.a, job.b, job.c, r0, r1,
		      job.progress ? band_count : NULL, &band);
	if (o->corrupt && n - 1 >= r0 && n - 1 < r1)
		job.c[(n - 1) * n + n / 2] += 1.0;
	e = dsm_barrier();
	t_c1 = now();
	if (progressing)
		progress_stop(&prog);
	if (e) {
		fail("dsm_barrier after the multiply", e);
		goto out;
	}
	if (band.err)
		fail("dsm_fetch_add (progress counter)", band.err);

	if (want_stats) {
		e = dsm_stats(&job.st[rank]);
		if (!e)
			e = dsm_barrier();
		if (e) {
			fail("statistics", e);
			goto out;
		}
	}

	/* check, summary */
	if (rank == 0) {
		char who[64];

		if (o->check) {
			double t = now();

			ck = check_result(job.c, n, o->bs, nodes);
			t_ck = now() - t;
		}
		snprintf(who, sizeof(who), "nodes=%d", nodes);
		print_head(o, who);
		print_rate(o, t_c1 - t_c0);
		printf(", check %s\n", o->check ? (ck.pass ? "PASS" : "FAIL") : "off");
		printf("  compute = rank 0's time between the barriers around the multiply; "
		       "init %.3f s (dsm_init %.3f s, then allocate, fill A and B, barrier %.3f s)\n",
		       t_c0 - t_start, t_inited - t_start, t_c0 - t_inited);
		if (o->check)
			print_check(&ck, t_ck);
		if (want_stats)
			print_stats(job.st, nodes);
		fflush(stdout);
	}
	/* Every node leaves with the verdict. */
	verdict[0] = ck.pass;
	verdict[1] = 0;
	e = dsm_bcast(verdict, sizeof(verdict), 0);
	if (e) {
		fail("dsm_bcast of the verdict", e);
		goto out;
	}
	status = verdict[0] ? 0 : EXIT_FAIL;
out:
	if (prog.fd >= 0)
		close(prog.fd);
	my_rank = dsm_rank();
	e = dsm_finalize();
	if (e) {
		fail("dsm_finalize", e);
		status = EXIT_FAIL;
	}
	return status;
}

int main(int argc, char **argv)
{
	struct opts o;
	int r = parse_opts(argc, argv, &o);

	if (r >= 0)
		return r;
	return o.reference ? run_reference(&o) : run_dsm(&o);
}
