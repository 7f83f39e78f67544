/*
 * Twins: the copy of a page homed elsewhere kept from the moment it becomes
 * writable until its release, so the release can send only what changed
 * (dsm/diff.h). A page's twin hangs off its metadata (page_meta.twin,
 * under the page's stripe).
 *
 * Twins come from a pool of pages mapped in chunks, so the write-fault path
 * rarely asks the system for memory. Free twins sit on two stacks: warm
 * ones, backed by memory, taken first; cold ones, whose memory went back
 * to the system (MADV_DONTNEED), taken when no warm one is left. After a
 * release, dsm__twin_trim turns the warm twins beyond TWIN_CACHE_BYTES
 * cold, so a node that wrote a lot does not keep a twin's worth of memory
 * for every page it ever wrote.
 * It takes them off the stack a batch at a time and gives their memory
 * back without the pool's lock: giving back hundreds of megabytes takes
 * seconds here, and a home serving a fetch needs a twin meanwhile.
 * Twin memory is populated by system calls (MAP_POPULATE, and
 * MADV_POPULATE_WRITE for a cold twin taken again), never by a first
 * touch: a page fault costs 17 us on this kind of VM, populating a page
 * under 1 us.
 *
 * Threads: any (fault callbacks, release, acquire, forget); the pool has
 * its own mutex, a leaf.
 */
#include <sys/mman.h>

#include "internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define TWIN_CHUNK 64                  /* twins mapped at a time */
#define TWIN_CACHE_BYTES (4u << 20)    /* warm twins kept after a trim */
#define TRIM_BATCH 256                 /* twins given back per lock hold */

static struct {
	pthread_mutex_t mu;
	/* each with room for every twin made, so a put never allocates */
	void **warm, **cold;
	size_t nwarm, ncold, cap;
	struct vec chunks;
	pthread_mutex_t trim_mu; /* one trim at a time */
} T;

int dsm__twin_init(void)
{
	memset(&T, 0, sizeof(T));
	pthread_mutex_init(&T.mu, NULL);
	pthread_mutex_init(&T.trim_mu, NULL);
	return 0;
}

void dsm__twin_fini(void)
{
	size_t i;

	for (i = 0; i < T.chunks.n; i++)
		munmap((void *)T.chunks.v[i], TWIN_CHUNK * D->ps);
	vec_free(&T.chunks);
	free(T.warm);
	free(T.cold);
	pthread_mutex_destroy(&T.mu);
	pthread_mutex_destroy(&T.trim_mu);
	memset(&T, 0, sizeof(T));
}

/* Map one more chunk onto the warm stack (T.mu held). */
static bool pool_grow(void)
{
	size_t n = TWIN_CHUNK, total = (T.chunks.n + 1) * n, i;
	/* populated: a first touch faults, one system call does not */
	uint8_t *chunk = mmap(NULL, n * D->ps, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (chunk == MAP_FAILED)
		return false;
	if (T.cap < total) {
		size_t cap = DSM__MAX(total, 2 * T.cap);
		void **w = realloc(T.warm, cap * sizeof(*w)), **c;

		if (w)
			T.warm = w;
		c = w ? realloc(T.cold, cap * sizeof(*c)) : NULL;
		if (c) {
			T.cold = c;
			T.cap = cap;
		}
	}
	if (T.cap < total || vec_push(&T.chunks, (size_t)chunk)) {
		munmap(chunk, n * D->ps);
		return false;
	}
	for (i = 0; i < n; i++)
		T.warm[T.nwarm++] = chunk + i * D->ps;
	return true;
}

static void *twin_get(void)
{
	void *t = NULL;

	pthread_mutex_lock(&T.mu);
	if (T.nwarm || (!T.ncold && pool_grow())) {
		t = T.warm[--T.nwarm];
	} else if (T.ncold) {
		t = T.cold[--T.ncold];
		/* its memory back in one call rather than a fault (kernels
		 * before 5.14 refuse; the first write faults then) */
		(void)madvise(t, D->ps, MADV_POPULATE_WRITE);
	}
	pthread_mutex_unlock(&T.mu);
	return t;
}

void dsm__twin_put(void *t)
{
	pthread_mutex_lock(&T.mu);
	T.warm[T.nwarm++] = t;
	pthread_mutex_unlock(&T.mu);
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;

	return x < y ? -1 : x > y;
}

void dsm__twin_trim(void)
{
	void *b[TRIM_BATCH];
	size_t keep, n, i, run;

	if (pthread_mutex_trylock(&T.trim_mu))
		return; /* another thread trims */
	pthread_mutex_lock(&T.mu);
	keep = TWIN_CACHE_BYTES / D->ps;
	for (;;) {
		n = T.nwarm > keep ? DSM__MIN(T.nwarm - keep, (size_t)TRIM_BATCH) : 0;
		if (!n)
			break;
		T.nwarm -= n;
		memcpy(b, T.warm + T.nwarm, n * sizeof(*b));
		pthread_mutex_unlock(&T.mu);
		/* sorted, so that twins next to each other go back in one call */
		qsort(b, n, sizeof(*b), cmp_ptr);
		for (i = 0; i < n; i += run) {
			for (run = 1; i + run < n &&
				      (uint8_t *)b[i + run] == (uint8_t *)b[i] + run * D->ps; run++)
				;
			madvise(b[i], run * D->ps, MADV_DONTNEED);
		}
		pthread_mutex_lock(&T.mu);
		memcpy(T.cold + T.ncold, b, n * sizeof(*b));
		T.ncold += n;
	}
	pthread_mutex_unlock(&T.mu);
	pthread_mutex_unlock(&T.trim_mu);
}

int dsm__twin_start(size_t idx, const void *contents)
{
	struct page_meta *m = &D->meta[idx];

	if (!m->twin) {
		void *t = twin_get();

		if (!t)
			return DSM_ENOMEM;
		if (contents)
			memcpy(t, contents, D->ps);
		else
			memset(t, 0, D->ps);
		m->twin = t;
	}
	dsm__dirty_mark(idx);
	return 0;
}

void *dsm__twin_take(const void *contents)
{
	void *t = twin_get();

	if (t)
		memcpy(t, contents, D->ps);
	return t;
}

void dsm__twin_cancel(size_t idx)
{
	struct page_meta *m = &D->meta[idx];

	atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
	if (m->twin)
		dsm__twin_put(m->twin);
	m->twin = NULL;
}
