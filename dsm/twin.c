/*
 * Twins: the copy of a page homed elsewhere kept from the moment it becomes
 * writable until its release, so the release can send only what changed
 * (dsm/diff.h). A page's twin hangs off its metadata (page_meta.twin,
 * under the page's stripe).
 *
 * Twins come from a pool of chunks of TWIN_CHUNK pages, each one mapping
 * with a mask of its free twins, so the write-fault path rarely asks the
 * system for memory and memory goes back a chunk at a time. A twin is
 * taken from the first chunk (in the order they were made) that has a free
 * one and is backed by memory (warm), so the twins in use gather in the
 * oldest chunks and the newer ones empty. After a release, dsm__twin_trim
 * gives the memory of wholly free chunks back (MADV_DONTNEED: cold) while
 * more than TWIN_CACHE_BYTES of free twins stay warm, so a node that wrote
 * a lot does not keep a twin's worth of memory for every page it ever
 * wrote. A cold chunk taken again is populated in one call
 * (MADV_POPULATE_WRITE); new chunks are mapped populated (MAP_POPULATE).
 * Why chunks: taking memory away costs a TLB-flush interrupt on every CPU
 * running this process, about 48 us here whatever the length, and a page
 * fault 17 us against under 1 us per page populated by a system call.
 * Twins given back one by one cost radix (-s 20000000, 2 nodes) 26,218
 * madvise calls for 88,841 pages on one node, and as many populates.
 * What it costs: a chunk with one twin in use keeps its memory.
 * The trim gives memory back without the pool's lock (the chunks it gives
 * back are marked busy): giving back hundreds of megabytes takes a while,
 * and a home serving a fetch needs a twin meanwhile.
 *
 * Threads: any (fault callbacks, release, acquire, forget); the pool has
 * its own mutex, a leaf.
 */
#include <sys/mman.h>

#include "internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define TWIN_CHUNK 64               /* twins per chunk: one free mask */
#define TWIN_CACHE_BYTES (4u << 20) /* free twins kept warm after a trim */
#define TRIM_BATCH 16               /* chunks given back per lock hold */

enum { C_WARM, C_COLD, C_BUSY /* being populated or given back */ };

struct chunk {
	uint8_t *base;
	uint64_t free; /* bit i: twin i is free */
	int state;
};

static struct {
	pthread_mutex_t mu;
	struct chunk *c;   /* in the order they were made */
	size_t *order;     /* chunk numbers by address, to find a twin's */
	uint64_t *avail;   /* bit k: chunk k is warm and has a free twin */
	uint64_t *cold;    /* bit k: chunk k is cold (all free, no memory) */
	size_t n, cap;     /* chunks, room for */
	size_t warm_free;  /* free twins in warm chunks */
	_Atomic size_t in_use; /* twins taken and not given back */
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
	size_t k;

	for (k = 0; k < T.n; k++)
		munmap(T.c[k].base, TWIN_CHUNK * D->ps);
	free(T.c);
	free(T.order);
	free(T.avail);
	free(T.cold);
	pthread_mutex_destroy(&T.mu);
	pthread_mutex_destroy(&T.trim_mu);
	memset(&T, 0, sizeof(T));
}

#define ALL_FREE (~(uint64_t)0 >> (64 - TWIN_CHUNK))

static void bit_set(uint64_t *b, size_t k)
{
	b[k / 64] |= (uint64_t)1 << (k % 64);
}

static void bit_clear(uint64_t *b, size_t k)
{
	b[k / 64] &= ~((uint64_t)1 << (k % 64));
}

/* The first chunk whose bit is set in b, or T.n. */
static size_t bit_first(const uint64_t *b)
{
	size_t w;

	for (w = 0; w * 64 < T.n; w++)
		if (b[w])
			return w * 64 + (size_t)__builtin_ctzll(b[w]);
	return T.n;
}

/* Room for one more chunk in every array (T.mu held). */
static bool pool_room(void)
{
	size_t cap = T.cap ? 2 * T.cap : 64, words = cap / 64, old = T.cap / 64;
	struct chunk *c;
	size_t *o;
	uint64_t *a, *cd;

	if (T.n < T.cap)
		return true;
	c = realloc(T.c, cap * sizeof(*c));
	if (c)
		T.c = c;
	o = c ? realloc(T.order, cap * sizeof(*o)) : NULL;
	if (o)
		T.order = o;
	a = o ? realloc(T.avail, words * sizeof(*a)) : NULL;
	if (a)
		T.avail = a;
	cd = a ? realloc(T.cold, words * sizeof(*cd)) : NULL;
	if (!cd)
		return false;
	T.cold = cd;
	memset(T.avail + old, 0, (words - old) * sizeof(*a));
	memset(T.cold + old, 0, (words - old) * sizeof(*cd));
	T.cap = cap;
	return true;
}

/* Map one more chunk, warm and all free (T.mu held). */
static bool pool_grow(void)
{
	/* populated: a first touch faults, one system call does not */
	uint8_t *base = mmap(NULL, TWIN_CHUNK * D->ps, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	size_t lo = 0, hi = T.n, k = T.n;

	if (base == MAP_FAILED)
		return false;
	if (!pool_room()) {
		munmap(base, TWIN_CHUNK * D->ps);
		return false;
	}
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (T.c[T.order[mid]].base < base)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(T.order + lo + 1, T.order + lo, (T.n - lo) * sizeof(*T.order));
	T.order[lo] = k;
	T.c[k] = (struct chunk){ .base = base, .free = ALL_FREE, .state = C_WARM };
	T.n++;
	bit_set(T.avail, k);
	T.warm_free += TWIN_CHUNK;
	return true;
}

/* The chunk twin t belongs to (T.mu held). */
static size_t chunk_of(const uint8_t *t)
{
	size_t lo = 0, hi = T.n;

	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (T.c[T.order[mid]].base <= t)
			lo = mid;
		else
			hi = mid;
	}
	return T.order[lo];
}

static void *twin_get(void)
{
	void *t = NULL;
	size_t k;

	pthread_mutex_lock(&T.mu);
	for (;;) {
		k = bit_first(T.avail);
		if (k < T.n) {
			struct chunk *c = &T.c[k];
			unsigned i = (unsigned)__builtin_ctzll(c->free);

			c->free &= ~((uint64_t)1 << i);
			if (!c->free)
				bit_clear(T.avail, k);
			T.warm_free--;
			t = c->base + i * D->ps;
			break;
		}
		k = bit_first(T.cold);
		if (k < T.n) {
			uint8_t *base = T.c[k].base;

			bit_clear(T.cold, k);
			T.c[k].state = C_BUSY;
			pthread_mutex_unlock(&T.mu);
			/* the whole chunk's memory in one call rather than a
			 * fault per page (kernels before 5.14 refuse: the
			 * first writes fault then) */
			(void)madvise(base, TWIN_CHUNK * D->ps, MADV_POPULATE_WRITE);
			pthread_mutex_lock(&T.mu);
			T.c[k].state = C_WARM;
			T.c[k].free = ALL_FREE & ~(uint64_t)1;
			bit_set(T.avail, k);
			T.warm_free += TWIN_CHUNK - 1;
			t = base;
			break;
		}
		if (!pool_grow())
			break;
	}
	pthread_mutex_unlock(&T.mu);
	if (t)
		atomic_fetch_add_explicit(&T.in_use, 1, memory_order_relaxed);
	return t;
}

size_t dsm__twins_in_use(void)
{
	return atomic_load_explicit(&T.in_use, memory_order_relaxed);
}

void dsm__twin_put(void *t)
{
	size_t k;

	pthread_mutex_lock(&T.mu);
	k = chunk_of(t);
	T.c[k].free |= (uint64_t)1 << (((uint8_t *)t - T.c[k].base) / D->ps);
	bit_set(T.avail, k);
	T.warm_free++;
	pthread_mutex_unlock(&T.mu);
	atomic_fetch_sub_explicit(&T.in_use, 1, memory_order_relaxed);
}

void dsm__twin_trim(void)
{
	size_t keep = TWIN_CACHE_BYTES / D->ps, b[TRIM_BATCH], n, i, k;
	uint8_t *base[TRIM_BATCH]; /* T.c may move while the lock is off */

	if (pthread_mutex_trylock(&T.trim_mu))
		return; /* another thread trims */
	pthread_mutex_lock(&T.mu);
	k = T.n;
	for (;;) {
		/* wholly free warm chunks, the newest first */
		for (n = 0; n < TRIM_BATCH && k > 0 && T.warm_free >= keep + TWIN_CHUNK;) {
			struct chunk *c = &T.c[--k];

			if (c->state != C_WARM || c->free != ALL_FREE)
				continue;
			c->state = C_BUSY;
			bit_clear(T.avail, k);
			T.warm_free -= TWIN_CHUNK;
			base[n] = c->base;
			b[n++] = k;
		}
		if (!n)
			break;
		pthread_mutex_unlock(&T.mu);
		for (i = 0; i < n; i++)
			madvise(base[i], TWIN_CHUNK * D->ps, MADV_DONTNEED);
		pthread_mutex_lock(&T.mu);
		for (i = 0; i < n; i++) {
			T.c[b[i]].state = C_COLD;
			bit_set(T.cold, b[i]);
		}
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
		m->idle = 0;
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
