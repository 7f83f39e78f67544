/*
 * Twins: the copy of a page homed elsewhere kept from the moment it becomes
 * writable until its release, so the release can send only what changed
 * (dsm/diff.h). A page's twin hangs off its metadata (page_meta.twin,
 * under the page's stripe). Twins come from a pool of page-aligned pages
 * grown in chunks, so the write-fault path rarely allocates.
 *
 * Threads: any (fault callbacks, release, acquire, forget); the pool has
 * its own mutex, a leaf.
 */
#include "internal.h"

#define TWIN_CHUNK 64 /* twins allocated at a time */

static struct {
	pthread_mutex_t mu;
	void **free;      /* room for every twin made, so a put never allocates */
	size_t nfree, cap;
	struct vec chunks;
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
		free((void *)T.chunks.v[i]);
	vec_free(&T.chunks);
	free(T.free);
	pthread_mutex_destroy(&T.mu);
	memset(&T, 0, sizeof(T));
}

static void *twin_get(void)
{
	void *t = NULL;

	pthread_mutex_lock(&T.mu);
	if (!T.nfree) {
		size_t n = TWIN_CHUNK, total = (T.chunks.n + 1) * n, i;
		uint8_t *chunk = aligned_alloc(D->ps, n * D->ps);

		/* the free list has room for every twin that exists, so
		 * dsm__twin_put never needs memory */
		if (chunk && T.cap < total) {
			void **nf = realloc(T.free, total * sizeof(*nf));

			if (nf) {
				T.free = nf;
				T.cap = total;
			}
		}
		if (!chunk || T.cap < total || vec_push(&T.chunks, (size_t)chunk)) {
			free(chunk);
			goto out;
		}
		for (i = 0; i < n; i++)
			T.free[T.nfree++] = chunk + i * D->ps;
	}
	t = T.free[--T.nfree];
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

/* On the dirty list BEFORE the page is writable: a release that takes the
 * list while another thread already writes the page must find it there. */
int dsm__twin_start(size_t idx, const void *contents)
{
	struct page_meta *m = &D->meta[idx];
	void *t = twin_get();
	int e;

	if (!t)
		return DSM_ENOMEM;
	memcpy(t, contents, D->ps);
	m->twin = t;
	atomic_fetch_or(&m->flags, F_DIRTY);
	e = dsm__dirty_push(idx);
	if (e)
		dsm__twin_cancel(idx);
	return e;
}

void dsm__twin_cancel(size_t idx)
{
	struct page_meta *m = &D->meta[idx];

	atomic_fetch_and(&m->flags, ~(uint32_t)F_DIRTY);
	if (m->twin)
		dsm__twin_put(m->twin);
	m->twin = NULL;
}
