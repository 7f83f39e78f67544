/*
 * Helpers shared by the test programs (see testutil.h).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <signal.h>
#include <string.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

unsigned dsm_test_free_port(int *keep_fd)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(s, (struct sockaddr *)&a, &len) < 0) {
		perror("dsm_test_free_port");
		exit(1);
	}
	if (keep_fd)
		*keep_fd = s;
	else
		close(s);
	return ntohs(a.sin_port);
}

void dsm_test_add(Suite *s, const char *name, const TTest *fn, int timeout_s)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, timeout_s);
	tcase_add_test(tc, fn);
	suite_add_tcase(s, tc);
}

int dsm_test_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

void dsm_test_rng_seed(uint64_t seed)
{
	rng_state = seed ? seed : 0x9E3779B97F4A7C15ull;
}

uint64_t dsm_test_rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

void dsm_test_fill_random(uint8_t *p, size_t n)
{
	while (n) {
		uint64_t v = dsm_test_rng();
		size_t k = n < 8 ? n : 8;

		memcpy(p, &v, k);
		p += k;
		n -= k;
	}
}

static const char *dl_name = "test";
static const pid_t *dl_pids;
static const unsigned *dl_npids;

void dsm_test_kill_children(void)
{
	if (!dl_pids)
		return;
	for (unsigned i = 0; i < *dl_npids; i++)
		if (dl_pids[i] > 0)
			kill(dl_pids[i], SIGKILL);
}

static void on_deadline(int sig)
{
	(void)sig;
	/* async-signal-safe: write and kill only */
	if (write(2, dl_name, strlen(dl_name)) < 0 ||
	    write(2, ": deadline passed; killing all nodes\n", 37) < 0)
		_exit(2);
	dsm_test_kill_children();
	_exit(1);
}

void dsm_test_deadline(const char *name, unsigned seconds, const pid_t *pids,
		       const unsigned *npids)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_deadline;
	dl_name = name;
	dl_pids = pids;
	dl_npids = npids;
	sigaction(SIGALRM, &sa, NULL);
	alarm(seconds);
}
