/*
 * bench-matmul: the matmul demo (demos/matmul.c) on libdsm against the same
 * kernel in one process on malloc memory, both measured in this run.
 *
 * What runs, for N = 1024 and N = 2048 (--quick: 256 and 512), --repeat R
 * times (default 3), the configurations interleaved within each repeat so
 * that a change of the machine's load hits all of them alike:
 *   ref   matmul --reference -N N    one process, one thread, malloc, no libdsm
 *   n1    dsmrun -n 1 matmul -N N
 *   n2    dsmrun -n 2 matmul -N N
 *   n4    dsmrun -n 4 matmul -N N
 * each with its default options (block 64, placement blocked, check on),
 * DSM_STATS=1 and --no-progress. The time of a run is the demo's own
 * compute seconds, parsed from its summary line ("compute S s"): rank 0's
 * time between the barriers around the multiply (reference: the kernel
 * call alone, preceded like the nodes by one read of B in page order), not
 * start-up or the check. A run that does not say PASS or exits non-zero
 * fails the bench (exit 1, after printing what it has).
 *
 * Output, one JSON object per line on stdout (progress on stderr):
 *   {"bench":"matmul","metric":"n1_vs_ref_N2048","value":S1,"unit":"s",
 *    "ref":SREF,"ratio":S1/SREF,"goal":"ratio <= 1.1","met":true,...}
 *   speedup_n2_N2048, speedup_n4_N2048: value S2 or S4, ref SREF,
 *    ratio SREF/S (the speedup; goal for n2 at N = 2048: >= 1.7)
 *   n4_vs_n2_N2048: value S4, ref S2, ratio S2/S4 (goal: >= 1, -n 4 no
 *    slower than -n 2)
 *   the same at N1024, then per configuration the statistics totals over
 *   the nodes of its median run (the demo's DSM_STATS table: pages
 *   fetched, of them fetched ahead, diffs sent, diff bytes, bytes sent,
 *   retransmissions), metric "stats_n2_N2048" etc.
 * Every figure is the median over the repeats; "runs" lists them all.
 *
 * The programs: BENCH_DSMRUN and BENCH_MATMUL (paths compiled in by meson;
 * the DSMRUN and MATMUL variables override them). Each run has a deadline
 * (dsmrun -t; the reference under timeout(1)).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef BENCH_DSMRUN
#define BENCH_DSMRUN "dsmrun"
#endif
#ifndef BENCH_MATMUL
#define BENCH_MATMUL "matmul"
#endif

#define REPEAT_MAX 99
#define DEADLINE_S 300
#define NCONF 4

static const char *const conf_name[NCONF] = { "ref", "n1", "n2", "n4" };
static const int conf_nodes[NCONF] = { 0, 1, 2, 4 };

/* Totals of the demo's statistics table (its "total" row). */
struct totals {
	uint64_t rfaults, wfaults, fetched, ahead, served, diffs, diff_bytes, inval,
		msgs, bytes, retx;
	double barrier_ms;
	bool have;
};

struct run {
	double seconds;
	struct totals t;
};

/* Run one configuration; 0 and r filled, or -1 (reason on stderr). */
static int run_one(const char *dsmrun, const char *matmul, int nodes, size_t n, struct run *r)
{
	char cmd[4096], line[4096];
	FILE *p;
	bool pass = false, have_time = false;
	int st;

	if (nodes == 0)
		snprintf(cmd, sizeof(cmd), "timeout %d '%s' --reference -N %zu 2>&1",
			 DEADLINE_S, matmul, n);
	else
		snprintf(cmd, sizeof(cmd), "DSM_STATS=1 '%s' -n %d -t %d '%s' -N %zu --no-progress 2>&1",
			 dsmrun, nodes, DEADLINE_S, matmul, n);
	p = popen(cmd, "r");
	if (!p) {
		perror("bench-matmul: popen");
		return -1;
	}
	memset(r, 0, sizeof(*r));
	while (fgets(line, sizeof(line), p)) {
		const char *s = line, *c;
		struct totals *t = &r->t;

		if (s[0] == '[' && (c = strstr(s, "] ")))
			s = c + 2; /* dsmrun's "[RANK] " */
		if (!strncmp(s, "matmul N=", 9) && (c = strstr(s, ": compute "))) {
			have_time = sscanf(c, ": compute %lf s", &r->seconds) == 1;
			pass = strstr(c, "check PASS") != NULL;
		} else if (sscanf(s, " total %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
				  " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
				  " %" SCNu64 " %lf",
				  &t->rfaults, &t->wfaults, &t->fetched, &t->ahead, &t->served,
				  &t->diffs, &t->diff_bytes, &t->inval, &t->msgs, &t->bytes,
				  &t->retx, &t->barrier_ms) == 12) {
			t->have = true;
		}
	}
	st = pclose(p);
	if (st != 0 || !have_time || !pass) {
		fprintf(stderr, "bench-matmul: `%s`: %s (status %d)\n", cmd,
			!have_time ? "no summary line" : !pass ? "check did not PASS" : "failed", st);
		return -1;
	}
	return 0;
}

static int cmp_run(const void *a, const void *b)
{
	double x = ((const struct run *)a)->seconds, y = ((const struct run *)b)->seconds;

	return x < y ? -1 : x > y;
}

/* The median run (by time) of runs[0..k); runs are sorted by this. */
static struct run median(struct run *runs, int k)
{
	qsort(runs, (size_t)k, sizeof(*runs), cmp_run);
	return runs[k / 2];
}

static void print_runs(const struct run *runs, int k)
{
	printf("\"runs\":[");
	for (int i = 0; i < k; i++)
		printf("%s%.3f", i ? "," : "", runs[i].seconds);
	printf("]");
}

static const char notes[] =
	"time: the demo's own compute seconds from its summary line (rank 0, between "
	"the barriers around the multiply; reference: the same kernel on malloc memory "
	"in one process); median of the runs, configurations interleaved";

static void print_line(const char *metric, double value, double ref, double ratio,
		       const char *goal, bool met, const struct run *runs, int k)
{
	printf("{\"bench\":\"matmul\",\"metric\":\"%s\",\"value\":%.3f,\"unit\":\"s\","
	       "\"ref\":%.3f,\"ratio\":%.3f,", metric, value, ref, ratio);
	if (goal)
		printf("\"goal\":\"%s\",\"met\":%s,", goal, met ? "true" : "false");
	print_runs(runs, k);
	printf(",\"notes\":\"%s\"}\n", notes);
}

int main(int argc, char **argv)
{
	const char *dsmrun = getenv("DSMRUN") ? getenv("DSMRUN") : BENCH_DSMRUN;
	const char *matmul = getenv("MATMUL") ? getenv("MATMUL") : BENCH_MATMUL;
	size_t sizes[2] = { 1024, 2048 };
	static struct run runs[2][NCONF][REPEAT_MAX];
	int repeat = 3, failed = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			sizes[0] = 256;
			sizes[1] = 512;
		} else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
			repeat = atoi(argv[++i]);
			if (repeat < 1 || repeat > REPEAT_MAX) {
				fprintf(stderr, "bench-matmul: --repeat 1..%d\n", REPEAT_MAX);
				return 2;
			}
		} else {
			fprintf(stderr, "usage: bench-matmul [--quick] [--repeat R]\n");
			return 2;
		}
	}

	for (int z = 0; z < 2; z++) {
		size_t n = sizes[z];
		struct run med[NCONF];
		char metric[64];
		int k = 0;

		for (int rep = 0; rep < repeat; rep++) {
			fprintf(stderr, "bench-matmul: N=%zu run %d/%d:", n, rep + 1, repeat);
			for (int c = 0; c < NCONF; c++) {
				if (run_one(dsmrun, matmul, conf_nodes[c], n, &runs[z][c][rep])) {
					failed = 1;
					goto out;
				}
				fprintf(stderr, " %s %.3f s", conf_name[c], runs[z][c][rep].seconds);
			}
			fprintf(stderr, "\n");
			k = rep + 1;
		}
		for (int c = 0; c < NCONF; c++)
			med[c] = median(runs[z][c], k);

		snprintf(metric, sizeof(metric), "n1_vs_ref_N%zu", n);
		print_line(metric, med[1].seconds, med[0].seconds, med[1].seconds / med[0].seconds,
			   "ratio <= 1.1", med[1].seconds / med[0].seconds <= 1.1, runs[z][1], k);
		snprintf(metric, sizeof(metric), "speedup_n2_N%zu", n);
		print_line(metric, med[2].seconds, med[0].seconds, med[0].seconds / med[2].seconds,
			   z == 1 && n == 2048 ? "ratio >= 1.7" : NULL,
			   med[0].seconds / med[2].seconds >= 1.7, runs[z][2], k);
		snprintf(metric, sizeof(metric), "speedup_n4_N%zu", n);
		print_line(metric, med[3].seconds, med[0].seconds, med[0].seconds / med[3].seconds,
			   NULL, false, runs[z][3], k);
		snprintf(metric, sizeof(metric), "n4_vs_n2_N%zu", n);
		print_line(metric, med[3].seconds, med[2].seconds, med[2].seconds / med[3].seconds,
			   "ratio >= 1 (-n 4 no slower than -n 2)",
			   med[2].seconds / med[3].seconds >= 1.0, runs[z][3], k);
		for (int c = 1; c < NCONF; c++) {
			const struct totals *t = &med[c].t;

			if (!t->have)
				continue;
			printf("{\"bench\":\"matmul\",\"metric\":\"stats_%s_N%zu\",\"nodes\":%d,"
			       "\"seconds\":%.3f,\"pages_fetched\":%" PRIu64 ",\"fetched_ahead\":%" PRIu64
			       ",\"read_faults\":%" PRIu64 ",\"write_faults\":%" PRIu64
			       ",\"diffs_sent\":%" PRIu64 ",\"diff_bytes\":%" PRIu64
			       ",\"invalidations\":%" PRIu64 ",\"msgs_sent\":%" PRIu64
			       ",\"bytes_sent\":%" PRIu64 ",\"retransmits\":%" PRIu64
			       ",\"barrier_ms\":%.1f,\"notes\":\"totals over the nodes of the median run, "
			       "from dsm_init to the end of the multiply (the demo's DSM_STATS=1 table)\"}\n",
			       conf_name[c], n, conf_nodes[c], med[c].seconds, t->fetched, t->ahead,
			       t->rfaults, t->wfaults, t->diffs, t->diff_bytes, t->inval, t->msgs,
			       t->bytes, t->retx, t->barrier_ms);
		}
		fflush(stdout);
	}
out:
	return failed;
}
