/*
 * Arena allocator and home map (contract, structures and complexities in
 * arena.h).
 *
 * Spans tile the arena in an address-ordered, doubly linked list. A span
 * is free (in the `free` treap, key (npages, start)), a page run or a slab
 * (both in the `live` treap, key start). A span is in exactly one treap,
 * so one set of treap links serves both. Treap priorities come from a
 * per-arena xorshift generator; the expected depth is O(log n) whatever
 * the order of operations. Span records come from a pool grown in chunks
 * and are only returned to the system by dsm__arena_destroy.
 *
 * Everything here works on page numbers relative to the arena and on
 * addresses as integers: no pointer into the region is ever dereferenced.
 *
 * Locking: every entry point of an arena takes a->lock for its whole body;
 * static helpers run with it held.
 */
#include "arena.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* Slot sizes of the small classes: multiples of 16, about 4 classes per
 * doubling, so internal waste stays under 25% (12.5% above 128 bytes). */
static const uint16_t class_size[] = {
	16, 32, 48, 64, 80, 96, 112, 128,
	160, 192, 224, 256, 320, 384, 448, 512,
	640, 768, 896, 1024, 1280, 1536, 1792, 2048,
};
#define NCLASSES DSM__ARRAY_SIZE(class_size)
_Static_assert(DSM__ARRAY_SIZE(class_size) == 24, "class table");
_Static_assert(DSM__ARENA_SMALL_MAX == 2048, "last class is SMALL_MAX");
_Static_assert(DSM__ARENA_MIN_PAGE >= 2 * DSM__ARENA_SMALL_MAX,
	       "a slab holds at least two slots");

/* A slab may span up to this many pages to keep tail waste <= 1/8. */
#define SLAB_MAX_PAGES 8

enum span_state {
	SPAN_FREE = 0,
	SPAN_RUN = 1,
	SPAN_SLAB = 2,
	SPAN_RETIRED = 3, /* freed; not allocatable until dsm__arena_reclaim */
};

struct slab;

struct span {
	size_t start;              /* first page, relative to the arena */
	size_t npages;
	struct span *prev, *next;  /* address order; also the pool free list */
	struct span *left, *right; /* treap: live (by start) or free (by size) */
	uint32_t prio;             /* treap heap priority (max at the root) */
	uint8_t state;             /* enum span_state */
	uint8_t place;             /* enum dsm__place, SPAN_RUN only */
	struct slab *slab;         /* SPAN_SLAB only */
	struct touch *touch;       /* SPAN_RUN with DSM__PLACE_FIRST_TOUCH only */
};

/* The homes of a first-touch run: each page's home is the node that
 * claimed it first (dsm__arena_claim), and per node its last claim, to
 * grow the next claim of a node that goes on in order (nodes claiming in
 * the same run at once do not reset each other's). */
#define UNCLAIMED 0xFFFFu
struct claim {
	size_t end;                /* pages [end - len, end) */
	size_t len;
};
struct touch {
	struct claim *last;        /* [nodes] */
	uint16_t home[];           /* per page: its home, or UNCLAIMED */
};

struct slab {
	struct span *span;
	struct slab *prev, *next;  /* partial list of the class */
	uint32_t cls;
	uint32_t size;             /* slot bytes */
	uint32_t nslots;
	uint32_t nfree;
	uint32_t hint;             /* words below hint have no free slot */
	uint64_t bits[];           /* 1 = allocated; padding past nslots is 1 */
};

#define POOL_CHUNK 256

struct pool_chunk {
	struct pool_chunk *next;
	struct span spans[POOL_CHUNK];
};

struct dsm__arena {
	pthread_mutex_t lock;
	/* Immutable after create. */
	struct dsm__arena_region region;
	int node;
	uintptr_t base;            /* first byte of this arena */
	size_t npages;             /* pages in this arena */
	unsigned page_shift;
	uint8_t slab_pages[NCLASSES];
	uint32_t slab_slots[NCLASSES];
	uint8_t class_of[DSM__ARENA_SMALL_MAX / 16 + 1]; /* by (size + 15) / 16 */
	/* Protected by lock. */
	struct span *head;         /* span at page 0 (never released) */
	struct span *live;         /* treap root */
	struct span *free;         /* treap root */
	struct slab *partial[NCLASSES]; /* slabs with a free slot */
	struct slab *empty[NCLASSES];   /* the one kept empty slab, in partial */
	struct span *spare;        /* pool free list (via next) */
	size_t nspare;
	struct pool_chunk *chunks;
	uint32_t rng;
	struct dsm__arena_stats st; /* largest_free computed on demand */
};

/* ---- region ------------------------------------------------------------ */

int dsm__arena_region_init(struct dsm__arena_region *r, uintptr_t base,
			   size_t size, size_t page_size, int nodes)
{
	size_t arena_size;

	if (!r || page_size < DSM__ARENA_MIN_PAGE || (page_size & (page_size - 1)) ||
	    base % page_size || nodes < 1 || nodes > DSM__ARENA_MAX_NODES ||
	    size > UINTPTR_MAX - base)
		return DSM_EINVAL;
	arena_size = (size / (size_t)nodes) & ~(page_size - 1);
	if (!arena_size)
		return DSM_EINVAL;
	r->base = base;
	r->size = size;
	r->page_size = page_size;
	r->nodes = nodes;
	r->arena_size = arena_size;
	return 0;
}

int dsm__arena_owner(const struct dsm__arena_region *r, const void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	size_t k;

	if (p < r->base || p - r->base >= r->size)
		return DSM_EINVAL;
	k = (p - r->base) / r->arena_size;
	return k < (size_t)r->nodes ? (int)k : DSM_EINVAL;
}

uintptr_t dsm__arena_start(const struct dsm__arena_region *r, int node)
{
	if (node < 0 || node >= r->nodes)
		return 0;
	return r->base + (size_t)node * r->arena_size;
}

int dsm__home_of(int place, int owner, int nodes, size_t npages, size_t i)
{
	size_t n = (size_t)nodes, q, rem, big;

	if (nodes < 1 || owner < 0 || owner >= nodes || i >= npages)
		return DSM_EINVAL;
	switch (place) {
	case DSM__PLACE_LOCAL:
	case DSM__PLACE_ADAPTIVE:
		return owner;
	case DSM__PLACE_INTERLEAVE:
		return (int)(((size_t)owner + i % n) % n);
	case DSM__PLACE_BLOCKED:
		/* The first rem chunks have q + 1 pages, the others q. */
		q = npages / n;
		rem = npages % n;
		big = rem * (q + 1);
		if (i < big)
			return (int)(i / (q + 1));
		return (int)(rem + (i - big) / q);
	default:
		return DSM_EINVAL;
	}
}

/* ---- span pool ---------------------------------------------------------- */

static uint32_t next_prio(struct dsm__arena *a)
{
	uint32_t x = a->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	a->rng = x;
	return x;
}

/* Make sure at least one span record is spare. 0 or DSM_ENOMEM. */
static int pool_reserve(struct dsm__arena *a)
{
	struct pool_chunk *c;

	if (a->nspare)
		return 0;
	c = malloc(sizeof(*c));
	if (!c)
		return DSM_ENOMEM;
	c->next = a->chunks;
	a->chunks = c;
	for (size_t i = 0; i < POOL_CHUNK; i++) {
		c->spans[i].next = a->spare;
		a->spare = &c->spans[i];
	}
	a->nspare += POOL_CHUNK;
	return 0;
}

/* Take a spare record (pool_reserve must have succeeded), zeroed. */
static struct span *span_get(struct dsm__arena *a)
{
	struct span *s = a->spare;

	a->spare = s->next;
	a->nspare--;
	memset(s, 0, sizeof(*s));
	s->prio = next_prio(a);
	return s;
}

static void span_put(struct dsm__arena *a, struct span *s)
{
	s->next = a->spare;
	a->spare = s;
	a->nspare++;
}

/* ---- treaps --------------------------------------------------------------
 * Recursive insert/remove; the expected depth is about 2 ln n (25 for
 * 100,000 spans), so the recursion stays shallow. */

static inline bool key_less(const struct span *x, const struct span *y, bool bysize)
{
	if (bysize && x->npages != y->npages)
		return x->npages < y->npages;
	return x->start < y->start;
}

static struct span *rot_right(struct span *t)
{
	struct span *l = t->left;

	t->left = l->right;
	l->right = t;
	return l;
}

static struct span *rot_left(struct span *t)
{
	struct span *r = t->right;

	t->right = r->left;
	r->left = t;
	return r;
}

static struct span *t_insert(struct span *t, struct span *n, bool bysize)
{
	if (!t) {
		n->left = n->right = NULL;
		return n;
	}
	if (key_less(n, t, bysize)) {
		t->left = t_insert(t->left, n, bysize);
		if (t->left->prio > t->prio)
			t = rot_right(t);
	} else {
		t->right = t_insert(t->right, n, bysize);
		if (t->right->prio > t->prio)
			t = rot_left(t);
	}
	return t;
}

/* Join two treaps, every key of x below every key of y. */
static struct span *t_merge(struct span *x, struct span *y)
{
	if (!x)
		return y;
	if (!y)
		return x;
	if (x->prio > y->prio) {
		x->right = t_merge(x->right, y);
		return x;
	}
	y->left = t_merge(x, y->left);
	return y;
}

/* Remove n, which must be in the treap t. */
static struct span *t_remove(struct span *t, struct span *n, bool bysize)
{
	if (t == n)
		return t_merge(n->left, n->right);
	if (!t)
		return NULL;
	if (key_less(n, t, bysize))
		t->left = t_remove(t->left, n, bysize);
	else
		t->right = t_remove(t->right, n, bysize);
	return t;
}

/* The live span holding page pg, or NULL. */
static struct span *live_find(const struct dsm__arena *a, size_t pg)
{
	struct span *t = a->live, *best = NULL;

	while (t) {
		if (t->start <= pg) {
			best = t;
			t = t->right;
		} else {
			t = t->left;
		}
	}
	return best && pg - best->start < best->npages ? best : NULL;
}

/* The smallest free span of at least npages pages (lowest address among
 * equals), or NULL. */
static struct span *free_fit(const struct dsm__arena *a, size_t npages)
{
	struct span *t = a->free, *best = NULL;

	while (t) {
		if (t->npages >= npages) {
			best = t;
			t = t->left;
		} else {
			t = t->right;
		}
	}
	return best;
}

static void free_insert(struct dsm__arena *a, struct span *s)
{
	s->state = SPAN_FREE;
	a->free = t_insert(a->free, s, true);
	a->st.free_extents++;
	a->st.free_pages += s->npages;
}

static void free_remove(struct dsm__arena *a, struct span *s)
{
	a->free = t_remove(a->free, s, true);
	a->st.free_extents--;
	a->st.free_pages -= s->npages;
}

/* ---- page runs ---------------------------------------------------------- */

static void touch_free(struct touch *t)
{
	if (t)
		free(t->last);
	free(t);
}

/* Take npages pages as a live span (state SPAN_RUN, placement LOCAL) or
 * return NULL (no free extent fits, or no memory for a record). */
static struct span *run_take(struct dsm__arena *a, size_t npages)
{
	struct span *s, *r;

	if (pool_reserve(a) < 0)
		return NULL;
	s = free_fit(a, npages);
	if (!s)
		return NULL;
	free_remove(a, s);
	if (s->npages > npages) {
		r = span_get(a);
		r->start = s->start + npages;
		r->npages = s->npages - npages;
		r->prev = s;
		r->next = s->next;
		if (s->next)
			s->next->prev = r;
		s->next = r;
		s->npages = npages;
		free_insert(a, r);
	}
	s->state = SPAN_RUN;
	s->place = DSM__PLACE_LOCAL;
	s->slab = NULL;
	s->touch = NULL;
	a->live = t_insert(a->live, s, false);
	return s;
}

/* A live span leaves the live set: its pages wait (in the live treap,
 * SPAN_RETIRED) until the caller says every node forgot them. */
static void run_retire(struct dsm__arena *a, struct span *s, struct dsm__arena_extent *out)
{
	s->state = SPAN_RETIRED;
	s->slab = NULL;
	touch_free(s->touch);
	s->touch = NULL;
	a->st.retired_pages += s->npages;
	out->start = a->base + (s->start << a->page_shift);
	out->npages = s->npages;
	out->place = s->place;
	out->owner = a->node;
	out->small = 0;
}

/* Return a retired span's pages to the free extents, merged with free
 * neighbours. */
static void run_release(struct dsm__arena *a, struct span *s)
{
	struct span *p = s->prev, *n = s->next;

	a->live = t_remove(a->live, s, false);
	s->slab = NULL;
	if (p && p->state == SPAN_FREE) {
		free_remove(a, p);
		p->npages += s->npages;
		p->next = n;
		if (n)
			n->prev = p;
		span_put(a, s);
		s = p;
	}
	if (n && n->state == SPAN_FREE) {
		free_remove(a, n);
		s->npages += n->npages;
		s->next = n->next;
		if (n->next)
			n->next->prev = s;
		span_put(a, n);
	}
	free_insert(a, s);
}

/* ---- slabs -------------------------------------------------------------- */

static void partial_push(struct dsm__arena *a, struct slab *sl)
{
	struct slab **h = &a->partial[sl->cls];

	sl->prev = NULL;
	sl->next = *h;
	if (*h)
		(*h)->prev = sl;
	*h = sl;
}

static void partial_remove(struct dsm__arena *a, struct slab *sl)
{
	if (sl->prev)
		sl->prev->next = sl->next;
	else
		a->partial[sl->cls] = sl->next;
	if (sl->next)
		sl->next->prev = sl->prev;
	sl->prev = sl->next = NULL;
}

/* Retire an empty slab's pages (see run_retire). */
static void slab_retire(struct dsm__arena *a, struct slab *sl, struct dsm__arena_extent *out)
{
	if (a->empty[sl->cls] == sl)
		a->empty[sl->cls] = NULL;
	partial_remove(a, sl);
	a->st.slabs--;
	a->st.small_pages -= sl->span->npages;
	sl->span->place = DSM__PLACE_LOCAL;
	run_retire(a, sl->span, out);
	free(sl);
}

static struct slab *slab_create(struct dsm__arena *a, uint32_t cls)
{
	uint32_t nslots = a->slab_slots[cls];
	size_t words = (nslots + 63) / 64;
	struct slab *sl = malloc(sizeof(*sl) + words * sizeof(uint64_t));
	struct span *s;

	if (!sl)
		return NULL;
	s = run_take(a, a->slab_pages[cls]);
	if (!s) {
		free(sl);
		return NULL;
	}
	s->state = SPAN_SLAB;
	s->slab = sl;
	sl->span = s;
	sl->cls = cls;
	sl->size = class_size[cls];
	sl->nslots = nslots;
	sl->nfree = nslots;
	sl->hint = 0;
	memset(sl->bits, 0, words * sizeof(uint64_t));
	if (nslots % 64)
		sl->bits[words - 1] = ~0ull << (nslots % 64);
	partial_push(a, sl);
	a->st.slabs++;
	a->st.small_pages += s->npages;
	return sl;
}

static void *small_alloc(struct dsm__arena *a, size_t size)
{
	uint32_t cls = a->class_of[(size + 15) / 16];
	struct slab *sl = a->partial[cls];
	uint32_t w, slot;
	uint64_t inv;

	/* Leave the kept empty slab alone while another has room. */
	if (sl && sl == a->empty[cls] && sl->next)
		sl = sl->next;
	if (!sl) {
		sl = slab_create(a, cls);
		if (!sl)
			return NULL;
	}
	if (a->empty[cls] == sl)
		a->empty[cls] = NULL;
	for (w = sl->hint; !(inv = ~sl->bits[w]); w++)
		;
	slot = w * 64 + (uint32_t)__builtin_ctzll(inv);
	sl->bits[w] |= 1ull << (slot % 64);
	sl->hint = w;
	if (--sl->nfree == 0)
		partial_remove(a, sl);
	a->st.bytes_in_use += sl->size;
	return (void *)(a->base + (sl->span->start << a->page_shift) +
			(uintptr_t)slot * sl->size);
}

static void small_free(struct dsm__arena *a, struct slab *sl, uint32_t slot,
		       struct dsm__arena_extent *retired)
{
	uint32_t w = slot / 64;

	sl->bits[w] &= ~(1ull << (slot % 64));
	if (w < sl->hint)
		sl->hint = w;
	a->st.bytes_in_use -= sl->size;
	if (++sl->nfree == 1)
		partial_push(a, sl);
	if (sl->nfree == sl->nslots) {
		if (!a->empty[sl->cls])
			a->empty[sl->cls] = sl;
		else
			slab_retire(a, sl, retired);
	}
}

/* ---- arena -------------------------------------------------------------- */

int dsm__arena_create(const struct dsm__arena_region *r, int node,
		      struct dsm__arena **out)
{
	struct dsm__arena *a;
	struct span *s;
	size_t page;
	int err;

	*out = NULL;
	if (!r || node < 0 || node >= r->nodes)
		return DSM_EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return DSM_ENOMEM;
	err = pthread_mutex_init(&a->lock, NULL);
	if (err) {
		free(a);
		return DSM_ENOMEM;
	}
	a->region = *r;
	a->node = node;
	a->base = dsm__arena_start(r, node);
	page = r->page_size;
	a->page_shift = (unsigned)__builtin_ctzll(page);
	a->npages = r->arena_size >> a->page_shift;
	a->rng = 0x9E3779B9u ^ (uint32_t)node;
	if (!a->rng)
		a->rng = 1;

	/* Per class: the fewest pages (1 .. SLAB_MAX_PAGES) whose tail waste is
	 * at most 1/8 of the slab. */
	for (size_t c = 0, sz = 0; c < NCLASSES; c++) {
		size_t k = 1;

		while (k < SLAB_MAX_PAGES && (k * page) % class_size[c] > k * page / 8)
			k++;
		a->slab_pages[c] = (uint8_t)k;
		a->slab_slots[c] = (uint32_t)(k * page / class_size[c]);
		for (; sz <= class_size[c] / 16; sz++)
			a->class_of[sz] = (uint8_t)c;
	}

	if (pool_reserve(a) < 0) {
		pthread_mutex_destroy(&a->lock);
		free(a);
		return DSM_ENOMEM;
	}
	s = span_get(a);
	s->start = 0;
	s->npages = a->npages;
	a->head = s;
	free_insert(a, s);
	*out = a;
	return 0;
}

void dsm__arena_destroy(struct dsm__arena *a)
{
	struct pool_chunk *c, *n;

	if (!a)
		return;
	for (struct span *s = a->head; s; s = s->next) {
		if (s->state == SPAN_SLAB)
			free(s->slab);
		else if (s->state == SPAN_RUN)
			touch_free(s->touch);
	}
	for (c = a->chunks; c; c = n) {
		n = c->next;
		free(c);
	}
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* Resolve ptr as the start of a live allocation: its span, and for a slab
 * the slot. 0 or DSM_EINVAL. Lock held. */
static int resolve(const struct dsm__arena *a, const void *ptr,
		   struct span **sp, uint32_t *slotp)
{
	uintptr_t p = (uintptr_t)ptr, off, inner;
	struct span *s;
	struct slab *sl;
	size_t slot;

	if (p < a->base || p - a->base >= (a->npages << a->page_shift))
		return DSM_EINVAL;
	off = p - a->base;
	s = live_find(a, off >> a->page_shift);
	if (!s || s->state == SPAN_RETIRED)
		return DSM_EINVAL;
	inner = off - (s->start << a->page_shift);
	if (s->state == SPAN_RUN) {
		if (inner)
			return DSM_EINVAL;
	} else {
		sl = s->slab;
		if (inner % sl->size)
			return DSM_EINVAL;
		slot = inner / sl->size;
		if (slot >= sl->nslots || !(sl->bits[slot / 64] & (1ull << (slot % 64))))
			return DSM_EINVAL;
		*slotp = (uint32_t)slot;
	}
	*sp = s;
	return 0;
}

int dsm__arena_alloc(struct dsm__arena *a, size_t size, int place, void **out)
{
	struct span *s;
	size_t npages;
	void *p = NULL;
	int err = 0;

	*out = NULL;
	if (!size || place < DSM__PLACE_LOCAL || place > DSM__PLACE_MAX) {
		pthread_mutex_lock(&a->lock);
		a->st.failed++;
		pthread_mutex_unlock(&a->lock);
		return DSM_EINVAL;
	}
	pthread_mutex_lock(&a->lock);
	if (size <= DSM__ARENA_SMALL_MAX &&
	    (place == DSM__PLACE_LOCAL || place == DSM__PLACE_ADAPTIVE)) {
		p = small_alloc(a, size);
	} else if (size <= (a->npages << a->page_shift)) {
		struct touch *t = NULL;

		npages = (size + ((size_t)1 << a->page_shift) - 1) >> a->page_shift;
		if (place == DSM__PLACE_FIRST_TOUCH) {
			t = malloc(sizeof(*t) + npages * sizeof(t->home[0]));
			if (t) {
				t->last = calloc((size_t)a->region.nodes, sizeof(*t->last));
				if (!t->last) {
					free(t);
					t = NULL;
				}
			}
			if (t)
				memset(t->home, 0xFF, npages * sizeof(t->home[0]));
		}
		s = place == DSM__PLACE_FIRST_TOUCH && !t ? NULL : run_take(a, npages);
		if (!s)
			touch_free(t);
		if (s) {
			s->place = (uint8_t)place;
			s->touch = t;
			a->st.large_pages += npages;
			a->st.bytes_in_use += npages << a->page_shift;
			p = (void *)(a->base + (s->start << a->page_shift));
		}
	}
	if (p) {
		a->st.allocs_live++;
		a->st.allocs++;
	} else {
		a->st.failed++;
		err = DSM_ENOMEM;
	}
	pthread_mutex_unlock(&a->lock);
	*out = p;
	return err;
}

int dsm__arena_free(struct dsm__arena *a, void *ptr, struct dsm__arena_extent *retired)
{
	struct span *s;
	uint32_t slot = 0;
	int err;

	memset(retired, 0, sizeof(*retired));
	pthread_mutex_lock(&a->lock);
	err = resolve(a, ptr, &s, &slot);
	if (err) {
		a->st.failed++;
		pthread_mutex_unlock(&a->lock);
		DSM__DEBUG("arena %d: free of %p rejected (not a live allocation)",
			   a->node, ptr);
		return err;
	}
	if (s->state == SPAN_RUN) {
		a->st.large_pages -= s->npages;
		a->st.bytes_in_use -= s->npages << a->page_shift;
		run_retire(a, s, retired);
	} else {
		small_free(a, s->slab, slot, retired);
	}
	a->st.allocs_live--;
	a->st.frees++;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

int dsm__arena_claim(struct dsm__arena *a, const void *addr, int node, bool claim,
		     struct dsm__arena_run *out)
{
	uintptr_t p = (uintptr_t)addr;
	struct span *s;
	struct touch *t;
	size_t i, j, len;
	int r = 0;

	if (node < 0 || node >= a->region.nodes || node >= (int)UNCLAIMED)
		return DSM_EINVAL;
	if (p < a->base || p - a->base >= (a->npages << a->page_shift))
		return DSM_EINVAL;
	pthread_mutex_lock(&a->lock);
	s = live_find(a, (p - a->base) >> a->page_shift);
	if (!s || s->state != SPAN_RUN) {
		r = DSM_ENOENT;
		goto out;
	}
	t = s->touch;
	if (!t) {
		r = DSM_EINVAL;
		goto out;
	}
	i = ((p - a->base) >> a->page_shift) - s->start;
	if (t->home[i] != UNCLAIMED) {
		/* claimed: the run of pages with the same home from here */
		for (j = i + 1; j < s->npages && j - i < DSM__ARENA_CLAIM_SCAN &&
				t->home[j] == t->home[i]; j++)
			;
		out->home = t->home[i];
	} else if (!claim) {
		r = DSM_ENOENT;
		goto out;
	} else {
		/* a node that claims right after its last claim reads or
		 * writes in order: give it twice as much, up to the limit */
		struct claim *c = &t->last[node];

		len = c->len && c->end == i ? DSM__MIN(2 * c->len, (size_t)DSM__ARENA_CLAIM_MAX)
					    : DSM__ARENA_CLAIM_MIN;
		for (j = i; j < s->npages && j - i < len && t->home[j] == UNCLAIMED; j++)
			t->home[j] = (uint16_t)node;
		c->end = j;
		c->len = j - i;
		out->home = node;
	}
	out->start = a->base + ((s->start + i) << a->page_shift);
	out->npages = j - i;
out:
	pthread_mutex_unlock(&a->lock);
	return r;
}

int dsm__arena_retire_empty(struct dsm__arena *a, struct dsm__arena_extent *retired)
{
	int r = 0;

	memset(retired, 0, sizeof(*retired));
	pthread_mutex_lock(&a->lock);
	for (size_t c = 0; c < NCLASSES && !r; c++)
		if (a->empty[c]) {
			slab_retire(a, a->empty[c], retired);
			r = 1;
		}
	pthread_mutex_unlock(&a->lock);
	return r;
}

int dsm__arena_reclaim(struct dsm__arena *a, uintptr_t start)
{
	struct span *s;
	int r = DSM_EINVAL;

	pthread_mutex_lock(&a->lock);
	if (start >= a->base && start - a->base < (a->npages << a->page_shift)) {
		s = live_find(a, (start - a->base) >> a->page_shift);
		if (s && s->state == SPAN_RETIRED &&
		    a->base + (s->start << a->page_shift) == start) {
			a->st.retired_pages -= s->npages;
			run_release(a, s);
			r = 0;
		}
	}
	pthread_mutex_unlock(&a->lock);
	return r;
}

ssize_t dsm__arena_size_of(struct dsm__arena *a, const void *ptr)
{
	struct span *s;
	uint32_t slot = 0;
	ssize_t r;

	pthread_mutex_lock(&a->lock);
	r = resolve(a, ptr, &s, &slot);
	if (!r)
		r = s->state == SPAN_RUN ? (ssize_t)(s->npages << a->page_shift)
					 : (ssize_t)s->slab->size;
	pthread_mutex_unlock(&a->lock);
	return r;
}

/* Lock held. */
static int extent_locked(struct dsm__arena *a, const void *addr,
			 struct dsm__arena_extent *out)
{
	uintptr_t p = (uintptr_t)addr;
	struct span *s;

	if (p < a->base || p - a->base >= (a->npages << a->page_shift))
		return DSM_EINVAL;
	s = live_find(a, (p - a->base) >> a->page_shift);
	if (!s || s->state == SPAN_RETIRED ||
	    (s->state == SPAN_SLAB && s->slab->nfree == s->slab->nslots))
		return DSM_ENOENT;
	out->start = a->base + (s->start << a->page_shift);
	out->npages = s->npages;
	out->place = s->state == SPAN_RUN ? s->place : DSM__PLACE_LOCAL;
	out->owner = a->node;
	out->small = s->state == SPAN_SLAB;
	return 0;
}

int dsm__arena_extent(struct dsm__arena *a, const void *addr,
		      struct dsm__arena_extent *out)
{
	int r;

	pthread_mutex_lock(&a->lock);
	r = extent_locked(a, addr, out);
	pthread_mutex_unlock(&a->lock);
	return r;
}

int dsm__arena_home(struct dsm__arena *a, const void *page_addr, int nodes)
{
	struct dsm__arena_extent e;
	int r;

	if (nodes <= a->node || nodes > DSM__ARENA_MAX_NODES)
		return DSM_EINVAL;
	pthread_mutex_lock(&a->lock);
	r = extent_locked(a, page_addr, &e);
	pthread_mutex_unlock(&a->lock);
	if (r)
		return r;
	return dsm__home_of(e.place, e.owner, nodes, e.npages,
			    ((uintptr_t)page_addr - e.start) >> a->page_shift);
}

void dsm__arena_get_stats(struct dsm__arena *a, struct dsm__arena_stats *out)
{
	struct span *t;

	pthread_mutex_lock(&a->lock);
	*out = a->st;
	out->largest_free = 0;
	for (t = a->free; t; t = t->right)
		out->largest_free = t->npages;
	pthread_mutex_unlock(&a->lock);
}

/* ---- consistency check -------------------------------------------------- */

#define CHECK(cond, ...) \
	do { \
		if (!(cond)) { \
			DSM__ERR("arena check failed: " __VA_ARGS__); \
			return DSM_EINVAL; \
		} \
	} while (0)

/* In-order walk: keys strictly increasing, heap order on prio, every node
 * in the expected state; counts the nodes. */
static int check_treap(const struct span *t, bool bysize, const struct span **prev,
		       size_t *count)
{
	int r;

	if (!t)
		return 0;
	CHECK(!t->left || t->left->prio <= t->prio, "treap heap order");
	CHECK(!t->right || t->right->prio <= t->prio, "treap heap order");
	r = check_treap(t->left, bysize, prev, count);
	if (r)
		return r;
	CHECK(bysize ? t->state == SPAN_FREE : t->state != SPAN_FREE,
	      "span at page %zu in the wrong treap", t->start);
	CHECK(!*prev || key_less(*prev, t, bysize), "treap key order at page %zu", t->start);
	*prev = t;
	(*count)++;
	return check_treap(t->right, bysize, prev, count);
}

static int check_locked(struct dsm__arena *a)
{
	struct dsm__arena_stats c = { 0 };
	const struct span *prev = NULL, *walk;
	size_t next_page = 0, nfree = 0, nlive = 0, tfree = 0, tlive = 0;
	size_t partial_slabs = 0, listed = 0;
	int r;

	CHECK(a->head && a->head->start == 0, "head span");
	for (const struct span *s = a->head; s; prev = s, s = s->next) {
		CHECK(s->prev == prev, "prev link at page %zu", s->start);
		CHECK(s->start == next_page && s->npages > 0,
		      "spans do not tile: page %zu, expected %zu", s->start,
		      next_page);
		next_page = s->start + s->npages;
		if (s->state == SPAN_FREE) {
			CHECK(!prev || prev->state != SPAN_FREE,
			      "free neighbours at page %zu", s->start);
			nfree++;
			c.free_pages += s->npages;
		} else if (s->state == SPAN_RETIRED) {
			nlive++;
			c.retired_pages += s->npages;
		} else if (s->state == SPAN_RUN) {
			CHECK(s->place <= DSM__PLACE_MAX &&
			      !s->touch == (s->place != DSM__PLACE_FIRST_TOUCH), "placement");
			nlive++;
			c.large_pages += s->npages;
			c.bytes_in_use += s->npages << a->page_shift;
			c.allocs_live++;
		} else {
			const struct slab *sl = s->slab;
			size_t words, used = 0;

			CHECK(s->state == SPAN_SLAB && sl && sl->span == s,
			      "slab at page %zu", s->start);
			CHECK(sl->cls < NCLASSES && sl->size == class_size[sl->cls] &&
			      sl->nslots == a->slab_slots[sl->cls] &&
			      s->npages == a->slab_pages[sl->cls],
			      "slab geometry at page %zu", s->start);
			words = (sl->nslots + 63) / 64;
			for (size_t w = 0; w < words; w++) {
				used += (size_t)__builtin_popcountll(sl->bits[w]);
				CHECK(w >= sl->hint || !~sl->bits[w],
				      "slab hint at page %zu", s->start);
			}
			if (sl->nslots % 64)
				CHECK(!~(sl->bits[words - 1] | ~(~0ull << (sl->nslots % 64))),
				      "slab padding at page %zu", s->start);
			used -= words * 64 - sl->nslots;
			CHECK(used == sl->nslots - sl->nfree, "slab count at page %zu", s->start);
			CHECK(sl->nfree < sl->nslots || a->empty[sl->cls] == sl,
			      "a second empty slab at page %zu", s->start);
			if (sl->nfree)
				partial_slabs++;
			nlive++;
			c.slabs++;
			c.small_pages += s->npages;
			c.bytes_in_use += (uint64_t)used * sl->size;
			c.allocs_live += used;
		}
	}
	CHECK(next_page == a->npages, "spans cover %zu of %zu pages", next_page,
	      a->npages);
	for (size_t k = 0; k < NCLASSES; k++) {
		const struct slab *pv = NULL;

		for (const struct slab *sl = a->partial[k]; sl; pv = sl, sl = sl->next) {
			CHECK(sl->prev == pv && sl->cls == k && sl->nfree > 0,
			      "partial list of class %zu", k);
			CHECK(sl->span->state == SPAN_SLAB && sl->span->slab == sl,
			      "partial slab not live");
			listed++;
		}
	}
	CHECK(listed == partial_slabs, "%zu slabs with room, %zu listed",
	      partial_slabs, listed);
	walk = NULL;
	r = check_treap(a->free, true, &walk, &tfree);
	if (r)
		return r;
	walk = NULL;
	r = check_treap(a->live, false, &walk, &tlive);
	if (r)
		return r;
	for (const struct span *s = a->head; s; s = s->next) {
		const struct span *t = a->free;

		if (s->state != SPAN_FREE) {
			CHECK(live_find(a, s->start) == s, "page %zu not in the live treap",
			      s->start);
			continue;
		}
		while (t && t != s)
			t = key_less(s, t, true) ? t->left : t->right;
		CHECK(t == s, "page %zu not in the free treap", s->start);
	}
	CHECK(tfree == nfree && tlive == nlive,
	      "treaps hold %zu free/%zu live, list %zu/%zu", tfree, tlive,
	      nfree, nlive);
	CHECK(c.free_pages == a->st.free_pages && nfree == a->st.free_extents &&
	      c.large_pages == a->st.large_pages &&
	      c.small_pages == a->st.small_pages && c.slabs == a->st.slabs &&
	      c.bytes_in_use == a->st.bytes_in_use &&
	      c.allocs_live == a->st.allocs_live &&
	      c.retired_pages == a->st.retired_pages, "counters");
	return 0;
}

int dsm__arena_check(struct dsm__arena *a)
{
	int r;

	pthread_mutex_lock(&a->lock);
	r = check_locked(a);
	pthread_mutex_unlock(&a->lock);
	return r;
}
