/*
 * Helpers shared by the test programs.
 */
#ifndef DSM_TESTS_UTIL_TESTUTIL_H
#define DSM_TESTS_UTIL_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

/* Reproducible pseudo-random numbers (xorshift64*), one stream per test
 * program; reseed to replay a case. */
void dsm_test_rng_seed(uint64_t seed);
uint64_t dsm_test_rng(void);
void dsm_test_fill_random(uint8_t *p, size_t n);

/* Multi-process tests: the driver keeps its children's pids in pids[0..
 * *npids) (0 = reaped). dsm_test_deadline arms SIGALRM after seconds: on
 * expiry it prints "NAME: deadline passed", SIGKILLs every listed child by
 * pid and exits 1. dsm_test_kill_children kills them now. */
void dsm_test_deadline(const char *name, unsigned seconds, const pid_t *pids,
		       const unsigned *npids);
void dsm_test_kill_children(void);

#endif /* DSM_TESTS_UTIL_TESTUTIL_H */
