/*
 * bench-apps: the kernels of tests/perf/apps/ (app.h), written as users
 * write shared-memory programs, on libdsm at 1, 2 and 4 nodes against the
 * same source run as one process, all measured in this run (issue 12).
 *
 * What runs, for each kernel `app --list` names (or those of --kernels),
 * at its size (app's default; --quick: a small one; --sizes), --repeat R
 * times (default 3; --quick: 1), the configurations interleaved within each
 * repeat so that a change of the machine's load hits all of them alike:
 *   ref   app KERNEL -s S --reference     one process, malloc, no libdsm
 *   n1    dsmrun -n 1 app KERNEL -s S     with DSM_STATS=1
 *   n2    dsmrun -n 2 app KERNEL -s S
 *   n4    dsmrun -n 4 app KERNEL -s S
 * Each run has a deadline (--deadline, default 300 s: dsmrun -t, the
 * reference under timeout(1)); a configuration that passed it is not run
 * again in later repeats and is reported without a time. The time of a run
 * is the kernel's own seconds from app's line (rank 0, between the
 * barriers around the computation; set-up and the checksum excluded).
 *
 * Checks: every run's checksum must equal the first reference run's, and
 * its value be within the kernel's relative tolerance of the reference's
 * when the tolerance is > 0; a mismatch, or a run that fails, fails the
 * bench (exit 1, after printing everything). A kernel whose reference run
 * fails saying "not written yet" (a stub) is reported as skipped; any
 * other reference failure fails the bench too, and so does a first
 * reference run past its deadline (nothing to compare with). Any other
 * deadline does not fail the bench: the goal is then not met.
 *
 * Output, one JSON object per line on stdout (progress on stderr), for each
 * kernel measured:
 *   {"bench":"apps","metric":"ref_<kernel>","value":SREF,"unit":"s",...}
 *   {"bench":"apps","metric":"speedup_<kernel>_n<N>","value":S,"unit":"s",
 *    "ref":SREF,"ratio":SREF/S,"runs":[...],"size":...,"goal":...,"met":...}
 *    for N = 1, 2, 4 (value and ratio null, and "error", if a run passed
 *    its deadline); goals: ratio >= 1.0 at 2 nodes, >= 0.8 at 4
 *   {"bench":"apps","metric":"stats_<kernel>_n<N>",...} the statistics of
 *    the median run summed over its nodes (each node's "libdsm[R] dsm:"
 *    and "libdsm[R] stats:" lines at dsm_finalize, from dsm_init on)
 * then one summary line: the geometric mean of the n2 ratios, the smallest
 * n2 and n4 ratios, and whether issue 12's goals are met (every one of the
 * six kernels measured, every n2 ratio >= 1.0, geometric mean >= 1.3,
 * every n4 ratio >= 0.8). Every figure is the median over the repeats;
 * "runs" lists them all.
 *
 * --plot FILE.svg also draws speedup (reference time / time) against nodes,
 * one line per kernel, on a log scale, a dashed line at 1.
 *
 * The programs: BENCH_DSMRUN and BENCH_APP (paths compiled in by meson; the
 * DSMRUN and APP variables override them).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef BENCH_DSMRUN
#define BENCH_DSMRUN "dsmrun"
#endif
#ifndef BENCH_APP
#define BENCH_APP "app"
#endif

#define REPEAT_MAX 99
#define DEADLINE_S 300
#define KERNELS_MAX 16
#define NAME_MAX_ 32
#define ERR_MAX 512
#define NCONF 4
#define EXIT_DEADLINE 124 /* dsmrun -t and timeout(1) */

/* Issue 12's goals. */
#define GOAL_N2 1.0
#define GOAL_GEOMEAN_N2 1.3
#define GOAL_N4 0.8
#define KERNELS_GOAL 6    /* the goals are over all six kernels */

static const char *const conf_name[NCONF] = { "ref", "n1", "n2", "n4" };
static const int conf_nodes[NCONF] = { 0, 1, 2, 4 };

/* --quick sizes of the kernels whose size this bench knows; a kernel not
 * here runs at its default size. */
static const struct {
	const char *name;
	long size;
} quick_sizes[] = {
	{ "lu", 512 },
	{ "stencil", 256 },
};

/* Statistics of one run, summed over its nodes. */
struct totals {
	uint64_t read_faults, write_faults, fetched, prefetched, served, diffs, diff_bytes,
		inval, notices, msgs, bytes, retx;
	double barrier_ms;
	int dsm_lines, net_lines; /* nodes that printed each line */
};

struct run {
	double seconds;
	uint64_t checksum;
	double value, tol;
	struct totals t;
};

struct conf {
	struct run runs[REPEAT_MAX];
	int k;                 /* runs done */
	bool deadline;         /* a run passed its deadline: not run again */
	bool failed;
	char err[ERR_MAX];
};

struct kernel {
	char name[NAME_MAX_];
	long size;
	bool skipped;          /* a stub */
	bool failed;           /* a failure or a mismatch: the bench fails */
	char why[ERR_MAX];
	struct conf c[NCONF];
	double ratio[NCONF];   /* ref median / median; NAN if none */
};

static struct kernel kernels[KERNELS_MAX];
static int nkernels;

/* ---- one run ------------------------------------------------------------- */

/* The value of " key=" in line s into *v; false if absent. */
static bool kv_u64(const char *s, const char *key, uint64_t *v)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(s, pat);
	if (!p)
		return false;
	*v = strtoull(p + strlen(pat), NULL, 10);
	return true;
}

static bool kv_dbl(const char *s, const char *key, double *v)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(s, pat);
	if (!p)
		return false;
	*v = strtod(p + strlen(pat), NULL);
	return true;
}

static void add_dsm_line(struct totals *t, const char *s)
{
	uint64_t v;
	double d;

#define ADD(key, f) do { if (kv_u64(s, key, &v)) t->f += v; } while (0)
	ADD("read_faults", read_faults);
	ADD("write_faults", write_faults);
	ADD("pages_fetched", fetched);
	ADD("prefetched", prefetched);
	ADD("pages_served", served);
	ADD("diffs_sent", diffs);
	ADD("diff_bytes", diff_bytes);
	ADD("invalidations", inval);
	ADD("notices", notices);
	if (kv_dbl(s, "barrier_ms", &d))
		t->barrier_ms += d;
	t->dsm_lines++;
}

static void add_net_line(struct totals *t, const char *s)
{
	uint64_t v;

	ADD("msgs_sent", msgs);
	ADD("bytes_sent", bytes);
	ADD("retx", retx);
#undef ADD
	t->net_lines++;
}

/* Appends line to the tail kept for an error message (the last lines). */
static void keep_tail(char *tail, const char *line)
{
	size_t n = strlen(tail), l = strlen(line);

	if (l >= ERR_MAX / 2)
		l = ERR_MAX / 2 - 1;
	if (n + l + 1 > ERR_MAX) {
		size_t cut = n + l + 1 - ERR_MAX;

		memmove(tail, tail + cut, n - cut + 1);
		n -= cut;
	}
	memcpy(tail + n, line, l);
	tail[n + l] = 0;
}

/* Run kernel k at size on nodes nodes (0: the reference). 0 and r filled;
 * EXIT_DEADLINE if the deadline passed; -1 on any other failure. err gets
 * the reason and the last lines of output in both failing cases. */
static int run_one(const char *dsmrun, const char *app, const char *k, long size, int nodes,
		   int deadline, struct run *r, char *err)
{
	char cmd[4096], line[4096], tail[ERR_MAX] = "";
	bool have = false;
	FILE *p;
	int st;

	if (nodes == 0)
		snprintf(cmd, sizeof(cmd), "timeout %d '%s' %s -s %ld --reference 2>&1", deadline,
			 app, k, size);
	else
		snprintf(cmd, sizeof(cmd), "DSM_STATS=1 '%s' -n %d -t %d '%s' %s -s %ld 2>&1", dsmrun,
			 nodes, deadline, app, k, size);
	p = popen(cmd, "r");
	if (!p) {
		snprintf(err, ERR_MAX, "popen: %s", strerror(errno));
		return -1;
	}
	memset(r, 0, sizeof(*r));
	while (fgets(line, sizeof(line), p)) {
		const char *s = line, *c;
		char name[NAME_MAX_];
		long sz;
		int nd;

		if (s[0] == '[' && (c = strstr(s, "] ")))
			s = c + 2; /* dsmrun's "[RANK] " */
		if (sscanf(s, "app %31s size %ld nodes %d seconds %lf checksum %" SCNx64
			   " value %lf tol %lf:", name, &sz, &nd, &r->seconds, &r->checksum,
			   &r->value, &r->tol) == 7) {
			have = !strcmp(name, k) && sz == size && nd == (nodes ? nodes : 1);
		} else if (!strncmp(s, "libdsm[", 7) && strstr(s, "] dsm: ")) {
			add_dsm_line(&r->t, s);
		} else if (!strncmp(s, "libdsm[", 7) && strstr(s, "] stats: ")) {
			add_net_line(&r->t, s);
		} else {
			keep_tail(tail, line);
		}
	}
	st = pclose(p);
	if (st == -1) {
		snprintf(err, ERR_MAX, "pclose: %s", strerror(errno));
		return -1;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_DEADLINE) {
		snprintf(err, ERR_MAX, "deadline of %d s passed (`%.400s`)", deadline, cmd);
		return EXIT_DEADLINE;
	}
	if (st != 0 || !have) {
		size_t n = strlen(tail);

		while (n && tail[n - 1] == '\n')
			tail[--n] = 0;
		snprintf(err, ERR_MAX, "%s (status %d): %.400s",
			 st != 0 ? "failed" : "no result line", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
			 tail);
		return -1;
	}
	if (nodes && (r->t.dsm_lines != nodes || r->t.net_lines != nodes))
		fprintf(stderr, "bench-apps: %s n%d: statistics from %d/%d of %d nodes\n", k, nodes,
			r->t.dsm_lines, r->t.net_lines, nodes);
	return 0;
}

/* ---- the kernels ------------------------------------------------------- */

/* Fills kernels[] from `app --list` ("NAME size SIZE WHAT"), keeping those
 * of want (comma-separated; NULL: all). 0 or -1. */
static int list_kernels(const char *app, const char *want)
{
	char cmd[4096], line[1024];
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "'%s' --list", app);
	p = popen(cmd, "r");
	if (!p) {
		perror("bench-apps: popen");
		return -1;
	}
	while (fgets(line, sizeof(line), p)) {
		char name[NAME_MAX_];
		long size;

		if (sscanf(line, "%31s size %ld", name, &size) != 2)
			continue;
		if (want) {
			const char *s = want;
			size_t l = strlen(name);
			bool found = false;

			while (*s && !found) {
				size_t n = strcspn(s, ",");

				found = n == l && !strncmp(s, name, l);
				s += n + (s[n] == ',');
			}
			if (!found)
				continue;
		}
		if (nkernels == KERNELS_MAX)
			break;
		snprintf(kernels[nkernels].name, NAME_MAX_, "%s", name);
		kernels[nkernels++].size = size;
	}
	st = pclose(p);
	if (st != 0) {
		fprintf(stderr, "bench-apps: `%s` failed (status %d)\n", cmd, st);
		return -1;
	}
	return 0;
}

/* Sets the size of the kernels named in spec ("lu=1024,stencil=512"). */
static int apply_sizes(const char *spec)
{
	const char *s = spec;

	while (*s) {
		size_t n = strcspn(s, ","), l = strcspn(s, "=");
		bool found = false;
		char *end;
		long v;

		if (l >= n) {
			fprintf(stderr, "bench-apps: --sizes wants KERNEL=SIZE,...\n");
			return -1;
		}
		v = strtol(s + l + 1, &end, 0);
		if (end != s + n || v <= 0) {
			fprintf(stderr, "bench-apps: --sizes: bad size in '%.*s'\n", (int)n, s);
			return -1;
		}
		for (int i = 0; i < nkernels; i++)
			if (strlen(kernels[i].name) == l && !strncmp(kernels[i].name, s, l)) {
				kernels[i].size = v;
				found = true;
			}
		if (!found)
			fprintf(stderr, "bench-apps: --sizes: no kernel '%.*s' here\n", (int)l, s);
		s += n + (s[n] == ',');
	}
	return 0;
}

static bool same_result(const struct run *ref, const struct run *r)
{
	if (r->checksum != ref->checksum)
		return false;
	if (ref->tol > 0 && !(fabs(r->value - ref->value) <= ref->tol * fabs(ref->value)))
		return false;
	return true;
}

/* Runs configuration c of kernel kn once (repeat rep); marks failures. */
static void run_conf(const char *dsmrun, const char *app, struct kernel *kn, int c, int rep,
		     int deadline)
{
	struct conf *cf = &kn->c[c];
	struct run *r = &cf->runs[cf->k];
	const struct run *ref = &kn->c[0].runs[0];
	int e;

	if (cf->deadline || cf->failed || kn->skipped || kn->failed)
		return;
	e = run_one(dsmrun, app, kn->name, kn->size, conf_nodes[c], deadline, r, cf->err);
	if (e == EXIT_DEADLINE && c == 0 && !cf->k) {
		/* nothing to compare with: the size does not suit this machine */
		cf->failed = kn->failed = true;
		snprintf(kn->why, ERR_MAX, "ref: %s", cf->err);
		fprintf(stderr, " %s deadline\n", conf_name[c]);
		return;
	}
	if (e == EXIT_DEADLINE) {
		cf->deadline = true;
		fprintf(stderr, " %s deadline", conf_name[c]);
		return;
	}
	if (e) {
		if (c == 0 && rep == 0 && strstr(cf->err, "not written yet")) {
			kn->skipped = true;
			snprintf(kn->why, ERR_MAX, "not written yet (a stub)");
			fprintf(stderr, " %s: a stub\n", conf_name[c]);
			return;
		}
		cf->failed = kn->failed = true;
		snprintf(kn->why, ERR_MAX, "%s: %s", conf_name[c], cf->err);
		fprintf(stderr, " %s FAILED\n", conf_name[c]);
		return;
	}
	cf->k++;
	fprintf(stderr, " %s %.3f s", conf_name[c], r->seconds);
	if (!(c == 0 && rep == 0) && !same_result(ref, r)) {
		cf->failed = kn->failed = true;
		snprintf(cf->err, ERR_MAX,
			 "run %d: checksum %016" PRIx64 " value %.17g, reference %016" PRIx64
			 " value %.17g tol %g", rep + 1, r->checksum, r->value, ref->checksum,
			 ref->value, ref->tol);
		snprintf(kn->why, ERR_MAX, "%s %s", conf_name[c], cf->err);
		fprintf(stderr, " MISMATCH\n");
	}
}

/* ---- output -------------------------------------------------------------- */

static int cmp_run(const void *a, const void *b)
{
	double x = ((const struct run *)a)->seconds, y = ((const struct run *)b)->seconds;

	return x < y ? -1 : x > y;
}

/* The median run of cf (sorts its runs by time); NULL if none. */
static const struct run *median(struct conf *cf)
{
	if (!cf->k)
		return NULL;
	qsort(cf->runs, (size_t)cf->k, sizeof(cf->runs[0]), cmp_run);
	return &cf->runs[cf->k / 2];
}

static void print_runs(const struct conf *cf)
{
	printf("\"runs\":[");
	for (int i = 0; i < cf->k; i++)
		printf("%s%.4f", i ? "," : "", cf->runs[i].seconds);
	printf("]");
}

/* s as a JSON string body (quotes and control characters escaped). */
static void print_jstr(const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
}

static void print_num(double v)
{
	if (isfinite(v))
		printf("%.4f", v);
	else
		printf("null");
}

static const char notes[] =
	"time: the kernel's own seconds (rank 0, between the barriers around the "
	"computation; reference: the same source in one process on malloc memory); "
	"median of the runs, configurations interleaved";

/* The lines of one kernel (after its runs). */
static void print_kernel(struct kernel *kn)
{
	const struct run *m[NCONF];
	double ref;

	for (int c = 0; c < NCONF; c++) {
		m[c] = median(&kn->c[c]);
		kn->ratio[c] = NAN;
	}
	if (kn->skipped || !m[0]) {
		printf("{\"bench\":\"apps\",\"metric\":\"%s_%s\",\"size\":%ld,\"error\":\"",
		       kn->skipped ? "skipped" : "failed", kn->name, kn->size);
		print_jstr(kn->skipped ? kn->why : kn->c[0].err);
		printf("\"}\n");
		fflush(stdout);
		return;
	}
	ref = m[0]->seconds;
	printf("{\"bench\":\"apps\",\"metric\":\"ref_%s\",\"value\":%.4f,\"unit\":\"s\",",
	       kn->name, ref);
	print_runs(&kn->c[0]);
	printf(",\"size\":%ld,\"checksum\":\"%016" PRIx64 "\",\"notes\":\"the single-process "
	       "run (app --reference)\"}\n", kn->size, kn->c[0].runs[0].checksum);
	for (int c = 1; c < NCONF; c++) {
		const struct conf *cf = &kn->c[c];
		bool timed = m[c] && !cf->deadline && !cf->failed;
		double goal = conf_nodes[c] == 2 ? GOAL_N2 : conf_nodes[c] == 4 ? GOAL_N4 : 0;

		if (timed)
			kn->ratio[c] = ref / m[c]->seconds;
		printf("{\"bench\":\"apps\",\"metric\":\"speedup_%s_n%d\",\"value\":", kn->name,
		       conf_nodes[c]);
		print_num(timed ? m[c]->seconds : NAN);
		printf(",\"unit\":\"s\",\"ref\":%.4f,\"ratio\":", ref);
		print_num(kn->ratio[c]);
		printf(",");
		print_runs(cf);
		printf(",\"size\":%ld", kn->size);
		if (goal > 0)
			printf(",\"goal\":\"ratio >= %.1f\",\"met\":%s", goal,
			       kn->ratio[c] >= goal ? "true" : "false");
		if (cf->deadline || cf->failed) {
			printf(",\"error\":\"");
			print_jstr(cf->err);
			printf("\"");
		} else if (!cf->k) {
			printf(",\"error\":\"not run: another configuration of the kernel failed\"");
		}
		printf(",\"notes\":\"%s\"}\n", notes);
	}
	for (int c = 1; c < NCONF; c++) {
		const struct totals *t;

		if (!m[c] || kn->c[c].deadline || kn->c[c].failed)
			continue;
		t = &m[c]->t;
		printf("{\"bench\":\"apps\",\"metric\":\"stats_%s_n%d\",\"nodes\":%d,"
		       "\"seconds\":%.4f,\"pages_fetched\":%" PRIu64 ",\"fetched_ahead\":%" PRIu64
		       ",\"pages_served\":%" PRIu64 ",\"read_faults\":%" PRIu64
		       ",\"write_faults\":%" PRIu64 ",\"diffs_sent\":%" PRIu64
		       ",\"diff_bytes\":%" PRIu64 ",\"invalidations\":%" PRIu64
		       ",\"notices\":%" PRIu64 ",\"msgs_sent\":%" PRIu64 ",\"bytes_sent\":%" PRIu64
		       ",\"retransmits\":%" PRIu64 ",\"barrier_ms\":%.1f,\"nodes_reporting\":%d,"
		       "\"notes\":\"totals over the nodes of the median run, from dsm_init to "
		       "dsm_finalize (DSM_STATS=1)\"}\n",
		       kn->name, conf_nodes[c], conf_nodes[c], m[c]->seconds, t->fetched,
		       t->prefetched, t->served, t->read_faults, t->write_faults, t->diffs,
		       t->diff_bytes, t->inval, t->notices, t->msgs, t->bytes, t->retx,
		       t->barrier_ms, t->dsm_lines < t->net_lines ? t->dsm_lines : t->net_lines);
	}
	fflush(stdout);
}

/* The summary line; true if the goals are met. */
static bool print_summary(void)
{
	double logsum = 0, min2 = INFINITY, min4 = INFINITY;
	const char *min2_k = NULL, *min4_k = NULL;
	int measured = 0, n2 = 0;
	bool all = true, met;

	printf("{\"bench\":\"apps\",\"metric\":\"summary\",\"kernels\":[");
	for (int i = 0; i < nkernels; i++) {
		const struct kernel *kn = &kernels[i];

		if (kn->skipped || !kn->c[0].k)
			continue;
		printf("%s\"%s\"", measured ? "," : "", kn->name);
		measured++;
		if (isfinite(kn->ratio[2])) {
			logsum += log(kn->ratio[2]);
			n2++;
			if (kn->ratio[2] < min2) {
				min2 = kn->ratio[2];
				min2_k = kn->name;
			}
		} else {
			all = false;
		}
		if (isfinite(kn->ratio[3])) {
			if (kn->ratio[3] < min4) {
				min4 = kn->ratio[3];
				min4_k = kn->name;
			}
		} else {
			all = false;
		}
	}
	printf("],\"incomplete\":[");
	for (int i = 0, j = 0; i < nkernels; i++) {
		const struct kernel *kn = &kernels[i];

		if (kn->skipped || !kn->c[0].k || !isfinite(kn->ratio[2]) ||
		    !isfinite(kn->ratio[3]))
			printf("%s\"%s\"", j++ ? "," : "", kn->name);
	}
	met = all && measured >= KERNELS_GOAL && n2 && exp(logsum / n2) >= GOAL_GEOMEAN_N2 &&
	      min2 >= GOAL_N2 && min4 >= GOAL_N4;
	printf("],\"geomean_n2\":");
	print_num(n2 ? exp(logsum / n2) : NAN);
	printf(",\"min_n2\":");
	print_num(min2_k ? min2 : NAN);
	printf(",\"min_n2_kernel\":\"%s\",\"min_n4\":", min2_k ? min2_k : "");
	print_num(min4_k ? min4 : NAN);
	printf(",\"min_n4_kernel\":\"%s\",\"goal\":\"all %d kernels measured; n2 ratio >= %.1f "
	       "each, geometric mean >= %.1f; n4 ratio >= %.1f each\",\"met\":%s,"
	       "\"notes\":\"ratios over the kernels measured (incomplete: skipped, failed or "
	       "past a deadline, and then not met)\"}\n",
	       min4_k ? min4_k : "", KERNELS_GOAL, GOAL_N2, GOAL_GEOMEAN_N2, GOAL_N4,
	       met ? "true" : "false");
	fflush(stdout);
	return met;
}

/* ---- the chart ------------------------------------------------------------ */

#define SVG_W 640
#define SVG_H 420
#define PL 70   /* plot area: left, right, top, bottom margins */
#define PR 170
#define PT 40
#define PB 50

static const char *const palette[] = {
	"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
};

static double svg_x(int c)
{
	/* nodes 1, 2, 4 evenly spaced (log2) */
	return PL + (double)(c - 1) * (SVG_W - PL - PR) / (NCONF - 2);
}

static double svg_y(double v, double lo, double hi)
{
	return PT + (log10(hi) - log10(v)) / (log10(hi) - log10(lo)) * (SVG_H - PT - PB);
}

/* Writes the chart to path: speedup against nodes, log scale. 0 or -1. */
static int plot(const char *path)
{
	static const double ticks[] = { 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5,
					1, 2, 5, 10, 20, 50, 100 };
	double lo = 0.5, hi = 2;
	FILE *f = fopen(path, "w");
	int line = 0;

	if (!f) {
		fprintf(stderr, "bench-apps: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < nkernels; i++)
		for (int c = 1; c < NCONF; c++)
			if (isfinite(kernels[i].ratio[c]) && kernels[i].ratio[c] > 0) {
				lo = fmin(lo, kernels[i].ratio[c]);
				hi = fmax(hi, kernels[i].ratio[c]);
			}
	/* round out to the ticks */
	for (int t = (int)(sizeof(ticks) / sizeof(ticks[0])) - 1; t >= 0; t--)
		if (ticks[t] <= lo) {
			lo = ticks[t];
			break;
		}
	for (size_t t = 0; t < sizeof(ticks) / sizeof(ticks[0]); t++)
		if (ticks[t] >= hi) {
			hi = ticks[t];
			break;
		}
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
		"<text x=\"%d\" y=\"22\" font-size=\"15\">bench-apps: speedup over one process "
		"(log scale)</text>\n", SVG_W, SVG_H, SVG_W, SVG_H, PL);
	/* grid and y labels */
	for (size_t t = 0; t < sizeof(ticks) / sizeof(ticks[0]); t++) {
		double y;

		if (ticks[t] < lo || ticks[t] > hi)
			continue;
		y = svg_y(ticks[t], lo, hi);
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
			"<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
			PL, y, SVG_W - PR, y, PL - 6, y + 4, ticks[t]);
	}
	fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\" "
		"stroke-dasharray=\"6,4\"/>\n<text x=\"%d\" y=\"%.1f\" fill=\"#555\">as fast as "
		"one process</text>\n", PL, svg_y(1, lo, hi), SVG_W - PR, svg_y(1, lo, hi),
		PL + 6, svg_y(1, lo, hi) - 5);
	/* axes and x labels */
	fprintf(f, "<polyline points=\"%d,%d %d,%d %d,%d\" fill=\"none\" stroke=\"black\"/>\n",
		PL, PT, PL, SVG_H - PB, SVG_W - PR, SVG_H - PB);
	for (int c = 1; c < NCONF; c++)
		fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", svg_x(c),
			SVG_H - PB + 18, conf_nodes[c]);
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">nodes</text>\n"
		"<text x=\"18\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 18 %d)\">"
		"reference time / time</text>\n",
		(PL + SVG_W - PR) / 2, SVG_H - 12, (PT + SVG_H - PB) / 2, (PT + SVG_H - PB) / 2);
	/* one line per kernel, points where measured */
	for (int i = 0; i < nkernels; i++) {
		const struct kernel *kn = &kernels[i];
		const char *col = palette[line % (int)(sizeof(palette) / sizeof(palette[0]))];
		double ly = PT + 10 + line * 20;
		bool any = false;

		if (kn->skipped || !kn->c[0].k)
			continue;
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
		for (int c = 1; c < NCONF; c++)
			if (isfinite(kn->ratio[c]) && kn->ratio[c] > 0) {
				fprintf(f, "%s%.1f,%.1f", any ? " " : "", svg_x(c),
					svg_y(kn->ratio[c], lo, hi));
				any = true;
			}
		fprintf(f, "\"/>\n");
		for (int c = 1; c < NCONF; c++)
			if (isfinite(kn->ratio[c]) && kn->ratio[c] > 0)
				fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
					svg_x(c), svg_y(kn->ratio[c], lo, hi), col);
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
			"stroke-width=\"2\"/>\n<text x=\"%d\" y=\"%.1f\">%s%s</text>\n",
			SVG_W - PR + 15, ly, SVG_W - PR + 35, ly, col, SVG_W - PR + 40, ly + 4,
			kn->name, kn->c[2].deadline || kn->c[3].deadline ? " (deadline)" :
			kn->failed ? " (failed)" : "");
		line++;
	}
	fprintf(f, "</svg>\n");
	if (fclose(f)) {
		fprintf(stderr, "bench-apps: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- main ----------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: bench-apps [--quick] [--repeat R] [--kernels a,b] "
		"[--sizes k=S,...] [--deadline SECONDS] [--plot FILE.svg]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *dsmrun = getenv("DSMRUN") ? getenv("DSMRUN") : BENCH_DSMRUN;
	const char *app = getenv("APP") ? getenv("APP") : BENCH_APP;
	const char *want = NULL, *sizes = NULL, *svg = NULL;
	int repeat = 3, deadline = DEADLINE_S, failed = 0;
	bool quick = false, repeat_set = false;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = true;
		} else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
			repeat = atoi(argv[++i]);
			repeat_set = true;
			if (repeat < 1 || repeat > REPEAT_MAX) {
				fprintf(stderr, "bench-apps: --repeat 1..%d\n", REPEAT_MAX);
				return 2;
			}
		} else if (!strcmp(argv[i], "--kernels") && i + 1 < argc) {
			want = argv[++i];
		} else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
			sizes = argv[++i];
		} else if (!strcmp(argv[i], "--deadline") && i + 1 < argc) {
			deadline = atoi(argv[++i]);
			if (deadline < 1) {
				fprintf(stderr, "bench-apps: --deadline: a positive number of seconds\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "--plot") && i + 1 < argc) {
			svg = argv[++i];
		} else {
			usage();
		}
	}
	if (quick && !repeat_set)
		repeat = 1;
	if (list_kernels(app, want))
		return 1;
	if (!nkernels) {
		fprintf(stderr, "bench-apps: no kernel%s%s (app --list)\n", want ? " named in " : "",
			want ? want : "");
		return 2;
	}
	for (int i = 0; quick && i < nkernels; i++) {
		bool known = false;

		for (size_t q = 0; q < sizeof(quick_sizes) / sizeof(quick_sizes[0]); q++)
			if (!strcmp(kernels[i].name, quick_sizes[q].name)) {
				kernels[i].size = quick_sizes[q].size;
				known = true;
			}
		if (!known)
			fprintf(stderr, "bench-apps: --quick: no small size known for '%s': its "
				"default %ld\n", kernels[i].name, kernels[i].size);
	}
	if (sizes && apply_sizes(sizes))
		return 2;

	for (int i = 0; i < nkernels; i++) {
		struct kernel *kn = &kernels[i];

		for (int rep = 0; rep < repeat && !kn->skipped && !kn->failed; rep++) {
			fprintf(stderr, "bench-apps: %s size %ld run %d/%d:", kn->name, kn->size,
				rep + 1, repeat);
			for (int c = 0; c < NCONF; c++)
				run_conf(dsmrun, app, kn, c, rep, deadline);
			if (!kn->skipped && !kn->failed)
				fprintf(stderr, "\n");
		}
		if (kn->skipped)
			fprintf(stderr, "bench-apps: %s: skipped: %s\n", kn->name, kn->why);
		else if (kn->failed) {
			fprintf(stderr, "bench-apps: %s: %s\n", kn->name, kn->why);
			failed = 1;
		}
		print_kernel(kn);
	}
	print_summary();
	if (svg && plot(svg))
		failed = 1;
	return failed;
}
