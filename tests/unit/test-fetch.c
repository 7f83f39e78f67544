/*
 * The size of a fetch: a node never asks a home for more pages than the
 * fetch reply's bound in dsm/dsm.rpc holds, whatever the page size and
 * DSM_FETCH_AHEAD (on a kernel with 64 KiB pages, 32 pages of fetch-ahead
 * would be a 2 MiB reply that the home rejects, and the faulting node
 * would end in the fatal handler).
 */
#include <check.h>
#include <stdlib.h>

#include "internal.h"
#include "testutil.h"

static const size_t sizes[] = { 4096, 8192, 16384, 65536 };

START_TEST(fetch_bound_page_sizes)
{
	for (size_t i = 0; i < DSM__ARRAY_SIZE(sizes); i++) {
		size_t n = dsm__fetch_max_pages(sizes[i]);

		ck_assert_uint_ge(n, 1);
		ck_assert_uint_le(n * sizes[i], DSM_RPC_FETCH_DATA_MAX);
		ck_assert_uint_gt((n + 1) * sizes[i], DSM_RPC_FETCH_DATA_MAX);
	}
	ck_assert_uint_eq(dsm__fetch_max_pages(4096), 256);
	ck_assert_uint_eq(dsm__fetch_max_pages(65536), 16);
}
END_TEST

/* DSM_FETCH_AHEAD (default, largest, and in between) on every page size:
 * the window the fault path uses fits one fetch. */
START_TEST(fetch_ahead_fits_one_fetch)
{
	static const char *const env[] = { NULL, "1", "32", "100", "256" };
	struct dsm d = { .nodes = 1 };

	D = &d;
	for (size_t i = 0; i < DSM__ARRAY_SIZE(sizes); i++) {
		d.ps = sizes[i];
		for (size_t k = 0; k < DSM__ARRAY_SIZE(env); k++) {
			if (env[k])
				setenv("DSM_FETCH_AHEAD", env[k], 1);
			else
				unsetenv("DSM_FETCH_AHEAD");
			ck_assert_int_eq(dsm__fault_init(), 0);
			ck_assert_uint_ge(dsm__fetch_ahead_max(), 1);
			ck_assert_uint_le(dsm__fetch_ahead_max() * sizes[i], DSM_RPC_FETCH_DATA_MAX);
		}
	}
	/* 4 KiB pages: the variable as given; default 32 */
	d.ps = 4096;
	unsetenv("DSM_FETCH_AHEAD");
	ck_assert_int_eq(dsm__fault_init(), 0);
	ck_assert_uint_eq(dsm__fetch_ahead_max(), 32);
	setenv("DSM_FETCH_AHEAD", "256", 1);
	ck_assert_int_eq(dsm__fault_init(), 0);
	ck_assert_uint_eq(dsm__fetch_ahead_max(), 256);
	setenv("DSM_FETCH_AHEAD", "257", 1);
	ck_assert_int_eq(dsm__fault_init(), DSM_ECONFIG);
	unsetenv("DSM_FETCH_AHEAD");
	D = NULL;
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fetch");

	DSM_TEST_ADD(s, fetch_bound_page_sizes, 30);
	DSM_TEST_ADD(s, fetch_ahead_fits_one_fetch, 30);
	return dsm_test_run_suite(s);
}
