/*
 * Runs of pages: a release and an acquire change the access of many pages,
 * and each change that takes access away (write-protect, drop) makes the
 * kernel flush every CPU's TLB that may run this process: on a VM, an
 * interrupt to each of those CPUs. Measured here (2 CPUs, one other thread
 * of the process running): one mprotect of one page 48 us, against 7 us
 * with the other CPU idle. So these paths sort their pages, cut them into
 * runs of consecutive pages, and change each run with one call.
 *
 * A run is at most DSM__RUN_MAX pages: its stripes are held while its
 * pages are diffed and sent, and a run of all STRIPES would keep every
 * other thread (the network thread serving a fetch or applying a diff)
 * out of every page for that long, and again for the next run: a release
 * of 128 MiB so starved node 0's network thread for over a second, and
 * its peer declared it dead.
 *
 * A run's pages change state under their stripes, all held together
 * (dsm__run_lock) and taken in ascending stripe order: a release, an
 * acquire, a home serving a fetch of several pages. Every other holder of
 * a stripe holds only that one, so no cycle can form.
 */
#include "internal.h"

static int cmp_idx(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

void dsm__pages_sort(struct vec *v)
{
	size_t i, n = 0;

	if (v->n < 2)
		return;
	qsort(v->v, v->n, sizeof(*v->v), cmp_idx);
	for (i = 0; i < v->n; i++)
		if (!n || v->v[n - 1] != v->v[i])
			v->v[n++] = v->v[i];
	v->n = n;
}

size_t dsm__run_end(const struct vec *v, size_t i)
{
	size_t j = i + 1;

	while (j < v->n && v->v[j] == v->v[j - 1] + 1 && j - i < DSM__RUN_MAX)
		j++;
	return j;
}

/* Stripe s of run [first, first + n) belongs to its page first + k with
 * k = (s - first) mod STRIPES; going through s in ascending order takes
 * first the pages that wrapped around, then the others. */
void dsm__run_lock(size_t first, size_t n)
{
	size_t s0 = first & (STRIPES - 1), k;
	size_t wrap = s0 + n > STRIPES ? STRIPES - s0 : n; /* pages before the wrap */

	for (k = wrap; k < n; k++)
		pthread_mutex_lock(stripe_of(first + k));
	for (k = 0; k < wrap; k++)
		pthread_mutex_lock(stripe_of(first + k));
}

void dsm__run_unlock(size_t first, size_t n)
{
	size_t k;

	for (k = 0; k < n; k++)
		pthread_mutex_unlock(stripe_of(first + k));
}

int dsm__run_apply(size_t first, size_t n, const bool *sel, int access)
{
	size_t k = 0, j;
	int e = 0, e2;

	while (k < n) {
		if (!sel[k]) {
			k++;
			continue;
		}
		for (j = k + 1; j < n && sel[j]; j++)
			;
		e2 = dsm__pager_protect(D->pg, page_addr(first + k), (j - k) * D->ps, access);
		if (e2 && !e)
			e = e2;
		k = j;
	}
	return e;
}
