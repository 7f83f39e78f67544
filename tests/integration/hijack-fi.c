/*
 * A stand-in for a provider library that takes the fatal signals when it is
 * loaded, as Debian's libinfinipath does from its constructor (that one is
 * linked into libfabric and loads before main; this one is a loadable
 * provider, so libfabric dlopens it from FI_PROVIDER_PATH inside
 * fi_getinfo, during dsm_init). Like libinfinipath's, its handler reports
 * and exits with status 1 instead of letting the signal kill the process.
 *
 * Its fi_prov_ini declines (NULL), so libfabric dlcloses it at once: it is
 * linked with -z nodelete (tests/integration/meson.build) so that the
 * handler stays mapped, as a real provider's would.
 *
 * Used by test-crash (hijack case) only.
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

struct fi_provider;
struct fi_provider *fi_prov_ini(void);

static void hijack(int sig, siginfo_t *si, void *ctx)
{
	static const char msg[] = "hijack-fi: caught a fatal signal, exiting 1\n";

	(void)sig;
	(void)si;
	(void)ctx;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do */
	}
	_exit(1);
}

__attribute__((constructor)) static void take_fatal_signals(void)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = hijack;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

__attribute__((visibility("default"))) struct fi_provider *fi_prov_ini(void)
{
	return NULL;
}
