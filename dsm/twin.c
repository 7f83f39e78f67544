/*
 * Twins: the copy of a page homed elsewhere kept from the moment it becomes
 * writable until its release, so the release can send only what changed
 * (dsm/diff.h). A page's twin hangs off its metadata (page_meta.twin,
 * under the page's stripe).
 *
 * Twins come from a pool of pages mapped in chunks, so the write-fault path
 * rarely asks the system for memory. After a release every twin is free
 * again, and a node that wrote a lot would otherwise keep a twin's worth
 * of memory for every page it ever wrote: dsm__twin_trim gives the memory
 * of free twins beyond TWIN_CACHE_BYTES back to the system (MADV_DONTNEED:
 * the address stays in the pool and is filled again on its next use).
 * The free list is a stack whose bottom part [0, cold) holds the trimmed
 * twins and whose top part the ones still backed by memory, taken first.
 * Twin memory is populated by system calls (MAP_POPULATE, and
 * MADV_POPULATE_WRITE for a trimmed twin taken again), never by a first
 * touch: a page fault costs 17 us on this kind of VM, populating a page
 * under 1 us.
 *
 * Threads: any (fault callbacks, release, acquire, forget); the pool has
 * its own mutex, a leaf.
 */
#include <sys/mman.h>

#include "internal.h"

#define TWIN_CHUNK 64                  /* twins mapped at a time */
#define TWIN_CACHE_BYTES (4u << 20)    /* free twins kept backed by memory */

static struct {
	pthread_mutex_t mu;
	void **free;      /* room for every twin made, so a put never allocates */
	size_t nfree, cap;
	size_t cold;      /* free[0 .. cold) are trimmed */
	struct vec chunks;
	void **sort;      /* scratch for dsm__twin_trim */
	size_t sort_cap;
} T;

int dsm__twin_init(void)
{
	memset(&T, 0, sizeof(T));
	pthread_mutex_init(&T.mu, NULL);
	return 0;
}

void dsm__twin_fini(void)
{
	size_t i;

	for (i = 0; i < T.chunks.n; i++)
		munmap((void *)T.chunks.v[i], TWIN_CHUNK * D->ps);
	vec_free(&T.chunks);
	free(T.free);
	free(T.sort);
	pthread_mutex_destroy(&T.mu);
	memset(&T, 0, sizeof(T));
}

static void *twin_get(void)
{
	void *t = NULL;

	pthread_mutex_lock(&T.mu);
	if (!T.nfree) {
		size_t n = TWIN_CHUNK, total = (T.chunks.n + 1) * n, i;
		/* populated: a first touch faults, one system call does not */
		uint8_t *chunk = mmap(NULL, n * D->ps, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

		if (chunk == MAP_FAILED)
			goto out;
		/* the free list has room for every twin that exists, so
		 * dsm__twin_put never needs memory */
		if (T.cap < total) {
			void **nf = realloc(T.free, total * sizeof(*nf));

			if (nf) {
				T.free = nf;
				T.cap = total;
			}
		}
		if (T.cap < total || vec_push(&T.chunks, (size_t)chunk)) {
			munmap(chunk, n * D->ps);
			goto out;
		}
		for (i = 0; i < n; i++)
			T.free[T.nfree++] = chunk + i * D->ps;
	}
	t = T.free[--T.nfree];
	if (T.cold > T.nfree) {
		/* trimmed: its memory back in one call rather than a fault
		 * (kernels before 5.14 refuse; the first write faults then) */
		T.cold = T.nfree;
		(void)madvise(t, D->ps, MADV_POPULATE_WRITE);
	}
out:
	pthread_mutex_unlock(&T.mu);
	return t;
}

void dsm__twin_put(void *t)
{
	pthread_mutex_lock(&T.mu);
	T.free[T.nfree++] = t;
	pthread_mutex_unlock(&T.mu);
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;

	return x < y ? -1 : x > y;
}

void dsm__twin_trim(void)
{
	size_t keep = TWIN_CACHE_BYTES / D->ps, n, i, run;

	pthread_mutex_lock(&T.mu);
	if (T.nfree - T.cold <= keep) {
		pthread_mutex_unlock(&T.mu);
		return;
	}
	/* free[cold .. nfree - keep) become cold: sorted, so that twins next
	 * to each other go back in one call */
	n = T.nfree - keep - T.cold;
	if (T.sort_cap < n) {
		void **ns = realloc(T.sort, n * sizeof(*ns));

		if (!ns) {
			pthread_mutex_unlock(&T.mu);
			return;
		}
		T.sort = ns;
		T.sort_cap = n;
	}
	memcpy(T.sort, T.free + T.cold, n * sizeof(*T.sort));
	qsort(T.sort, n, sizeof(*T.sort), cmp_ptr);
	for (i = 0; i < n; i += run) {
		for (run = 1; i + run < n &&
			      (uint8_t *)T.sort[i + run] == (uint8_t *)T.sort[i] + run * D->ps; run++)
			;
		madvise(T.sort[i], run * D->ps, MADV_DONTNEED);
	}
	T.cold += n;
	pthread_mutex_unlock(&T.mu);
}

/* On the dirty list BEFORE the page is writable: a release that takes the
 * list while another thread already writes the page must find it there. */
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
