/*
 * bench-apps kernel 'tasks' (app.h): a pool of uneven tasks drained by
 * every node, the two ways users write a shared work queue.
 *
 * Shared data (rank 0 allocates and fills it in the serial start-up):
 *   in[SIZE * TASK_IN]  uint64 input, a fixed pseudo-random sequence;
 *   out1[SIZE], out2[SIZE]  one result slot per task and phase;
 *   next  the counter of phase 1 (an int64 of its own allocation);
 *   queue  phase 2's queue: head, count and the task ids in the order
 *          they are handed out (largest first, as a scheduler would).
 *
 * Task t of a phase reads a window of in[]: its length is TASK_MIN << c
 * elements, c = 0 .. TASK_CLASSES-1 drawn from t (so tasks differ up to
 * 32x in size, sizes mixed along the index), its start drawn from t; it
 * runs TASK_ROUNDS rounds of integer mixing on every element and folds
 * them, in order, into one 64-bit result in its own slot.
 *   Phase 1: every node takes the next task with fetch_add(next, 1) until
 *     the counter passes SIZE; results to out1[t].
 *   barrier
 *   Phase 2: every node pops the next id from the queue under lock
 *     TASK_LOCK (reads and writes the head in shared memory under the
 *     lock) until it is empty; task t starts from out1[t] and
 *     out1[(t * 7919 + 1) % SIZE] (a slot most likely written by another
 *     node in phase 1) and has its own window; results to out2[t].
 *   barrier
 * The timed phase is both phases, between the barriers around them. Rank
 * 0 then folds out1 and out2 in index order into the checksum: every task
 * computes the same bits whichever node runs it, so the checksum is the
 * same for every node count. The detail line gives each phase's time and
 * how many tasks each rank ran (that depends on timing).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "app.h"

#define TASK_IN 1024        /* input elements per task */
#define TASK_MIN 2048       /* elements of the smallest task */
#define TASK_CLASSES 6      /* task sizes TASK_MIN << 0 .. 5 */
#define TASK_ROUNDS 8       /* mixing rounds per element */
#define TASK_LOCK 7u        /* the phase 2 queue's lock */
#define TASK_SEED 0x7A5C0001ull
#define TASK_RANKS_MAX 64   /* ranks listed in the detail */

struct task_queue {
	int64_t head;       /* next position to hand out; protected by TASK_LOCK */
	int64_t count;
	int64_t id[];       /* count task ids, in hand-out order */
};

/* What rank 0 allocates and hands over. */
struct task_shared {
	uint64_t *in;
	uint64_t *out1, *out2;
	int64_t *next;          /* phase 1's counter (fetch_add) */
	struct task_queue *queue;
	int64_t *ran;           /* [rank * 2 + phase]: tasks each rank ran */
	long in_len;
};

static uint64_t hash64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The draw `what` (0: size class, 1: start) of task t in phase ph (0, 1). */
static uint64_t task_draw(long t, int ph, int what)
{
	return hash64(TASK_SEED + (uint64_t)t * 4 + (uint64_t)ph * 2 + (uint64_t)what);
}

static unsigned task_class(long t, int ph)
{
	return (unsigned)(task_draw(t, ph, 0) % TASK_CLASSES);
}

/* Task t of phase ph: its window of in[] folded, starting from seed. */
static uint64_t task_run(const struct task_shared *sh, long t, int ph, uint64_t seed)
{
	long len = (long)TASK_MIN << task_class(t, ph);
	long start = (long)(task_draw(t, ph, 1) % (uint64_t)(sh->in_len - len + 1));
	uint64_t acc = seed ^ (uint64_t)t;

	for (long e = start; e < start + len; e++) {
		uint64_t y = sh->in[e];

		for (int r = 0; r < TASK_ROUNDS; r++)
			y = (y ^ (y >> 31)) * 0x9E3779B97F4A7C15ull + (uint64_t)r;
		acc = (acc * 0x100000001B3ull) ^ y;
	}
	return acc;
}

static void *alloc_or_fail(const struct app_ops *ops, size_t size)
{
	void *p = ops->alloc(size);

	if (!p)
		app_fail("tasks: alloc", -ENOMEM);
	return p;
}

/* Rank 0, serial start-up. */
static void setup(const struct app_ops *ops, long nt, struct task_shared *sh)
{
	struct task_queue *q;
	long i, k = 0;

	sh->in_len = nt * TASK_IN;
	sh->in = alloc_or_fail(ops, sizeof(uint64_t) * (size_t)sh->in_len);
	for (i = 0; i < sh->in_len; i++)
		sh->in[i] = hash64(~TASK_SEED - (uint64_t)i);
	sh->out1 = alloc_or_fail(ops, sizeof(uint64_t) * (size_t)nt);
	sh->out2 = alloc_or_fail(ops, sizeof(uint64_t) * (size_t)nt);
	for (i = 0; i < nt; i++)
		sh->out1[i] = sh->out2[i] = 0;
	sh->next = alloc_or_fail(ops, sizeof(int64_t));
	*sh->next = 0;
	q = alloc_or_fail(ops, sizeof(*q) + sizeof(int64_t) * (size_t)nt);
	q->head = 0;
	q->count = nt;
	for (int c = TASK_CLASSES - 1; c >= 0; c--) /* largest first */
		for (i = 0; i < nt; i++)
			if (task_class(i, 1) == (unsigned)c)
				q->id[k++] = i;
	sh->queue = q;
	sh->ran = alloc_or_fail(ops, sizeof(int64_t) * 2 * (size_t)ops->nodes);
	for (i = 0; i < 2 * ops->nodes; i++)
		sh->ran[i] = 0;
}

static int run(const struct app_ops *ops, long size, struct app_result *out)
{
	struct task_shared sh = { 0 };
	struct task_queue *q;
	long nt = size, ran1 = 0, ran2 = 0;
	double t0, t1, t2;

	if (nt < 1 || nt > (1L << 30) / TASK_IN) {
		fprintf(stderr, "app tasks: size %ld: tasks must be 1 .. %ld\n", nt,
			(1L << 30) / TASK_IN);
		return -1;
	}
	if (ops->rank == 0)
		setup(ops, nt, &sh);
	APP_CK(ops->bcast(&sh, sizeof(sh), 0));
	q = sh.queue;

	APP_CK(ops->barrier());
	t0 = ops->now();
	for (;;) {
		int64_t t;

		APP_CK(ops->fetch_add(sh.next, 1, &t));
		if (t >= nt)
			break;
		sh.out1[t] = task_run(&sh, (long)t, 0, 0);
		ran1++;
	}
	sh.ran[ops->rank * 2] = ran1;
	APP_CK(ops->barrier());
	t1 = ops->now();
	for (;;) {
		int64_t t = -1;

		APP_CK(ops->lock(TASK_LOCK));
		if (q->head < q->count)
			t = q->id[q->head++];
		APP_CK(ops->unlock(TASK_LOCK));
		if (t < 0)
			break;
		sh.out2[t] = task_run(&sh, (long)t, 1,
				      sh.out1[t] ^ sh.out1[(t * 7919 + 1) % nt]);
		ran2++;
	}
	sh.ran[ops->rank * 2 + 1] = ran2;
	APP_CK(ops->barrier());
	t2 = ops->now();

	if (ops->rank == 0) {
		uint64_t h = 0;
		size_t o;
		long i;

		for (i = 0; i < nt; i++)
			h = app_mix(h, sh.out1[i]);
		for (i = 0; i < nt; i++)
			h = app_mix(h, sh.out2[i]);
		out->seconds = t2 - t0;
		out->checksum = h;
		out->value = 0;
		out->rel_tol = 0;
		o = (size_t)snprintf(out->detail, sizeof(out->detail),
				     "%ld tasks x 2 phases, %ld MiB input; fetch_add %.3f s, "
				     "lock %.3f s; tasks by rank", nt,
				     (long)(sh.in_len * 8 >> 20), t1 - t0, t2 - t1);
		for (i = 0; i < ops->nodes && i < TASK_RANKS_MAX &&
			    o < sizeof(out->detail); i++)
			o += (size_t)snprintf(out->detail + o, sizeof(out->detail) - o,
					      " %ld/%ld", (long)sh.ran[i * 2],
					      (long)sh.ran[i * 2 + 1]);
		ops->free(sh.ran);
		ops->free(q);
		ops->free(sh.next);
		ops->free(sh.out2);
		ops->free(sh.out1);
		ops->free(sh.in);
	}
	return 0;
}

const struct app_kernel app_tasks = {
	.name = "tasks",
	.what = "uneven tasks on a shared input: taken by fetch_add, then popped from "
		"a queue under a lock; a result slot per task",
	.default_size = 8192,
	.run = run,
};
