/*
 * Helpers shared by the test programs.
 */
#ifndef DSM_TESTS_UTIL_TESTUTIL_H
#define DSM_TESTS_UTIL_TESTUTIL_H

#include <check.h>

/* A UDP port on 127.0.0.1 that was free a moment ago (bound to port 0,
 * read back). With keep_fd the socket stays bound (a port in use);
 * otherwise it is closed. Exits the test program on failure. */
unsigned dsm_test_free_port(int *keep_fd);

/* Add test fn to s as a case of its own, named name, so that
 * CK_RUN_CASE=name runs just that one. */
void dsm_test_add(Suite *s, const char *name, const TTest *fn, int timeout_s);
#define DSM_TEST_ADD(s, fn, timeout_s) dsm_test_add((s), #fn, (fn), (timeout_s))

/* Run every case of s; returns the exit status for main (0: all passed). */
int dsm_test_run_suite(Suite *s);

#endif /* DSM_TESTS_UTIL_TESTUTIL_H */
