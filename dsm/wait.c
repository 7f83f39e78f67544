/*
 * Waiting, the two ways the dsm layer does it:
 *  - for a group of asynchronous calls of one operation (a release's diffs,
 *    a free's forgets, a broadcast's copies): struct waitgroup, completed
 *    by the calls' callbacks on whichever thread receives the replies;
 *  - for a condition that a peer's message makes true (a barrier round, a
 *    broadcast, a local lock grant), unless the peer is gone:
 *    dsm__wait_for, on D->sync_mu / D->sync_cv, which the handlers and the
 *    membership events broadcast.
 * Application threads wait; handlers never do.
 */
#include <sched.h>
#include <time.h>

#include "internal.h"

void dsm__wg_init(struct waitgroup *wg)
{
	pthread_mutex_init(&wg->mu, NULL);
	pthread_cond_init(&wg->cv, NULL);
	wg->pending = 0;
	wg->err = 0;
}

void dsm__wg_add(struct waitgroup *wg)
{
	pthread_mutex_lock(&wg->mu);
	wg->pending++;
	pthread_mutex_unlock(&wg->mu);
}

void dsm__wg_done(struct waitgroup *wg, int status)
{
	pthread_mutex_lock(&wg->mu);
	if (status < 0 && !wg->err)
		wg->err = status;
	if (--wg->pending == 0)
		pthread_cond_broadcast(&wg->cv);
	pthread_mutex_unlock(&wg->mu);
}

void dsm__wg_done_cb(void *arg, int status, const void *rep)
{
	(void)rep;
	dsm__wg_done(arg, status);
}

int dsm__wg_wait(struct waitgroup *wg)
{
	int e;

	pthread_mutex_lock(&wg->mu);
	while (wg->pending > 0)
		pthread_cond_wait(&wg->cv, &wg->mu);
	e = wg->err;
	pthread_mutex_unlock(&wg->mu);
	pthread_mutex_destroy(&wg->mu);
	pthread_cond_destroy(&wg->cv);
	return e;
}

void dsm__sync_wake(void)
{
	pthread_mutex_lock(&D->sync_mu);
	pthread_cond_broadcast(&D->sync_cv);
	pthread_mutex_unlock(&D->sync_mu);
}

/* Spins DSM_SPIN_US first: a wake-up across CPUs costs tens of
 * microseconds here. Then sleeps on sync_cv, looking at the membership
 * every 50 ms as well as when woken. */
int dsm__wait_for(bool (*cond)(void *), void *arg, unsigned from, int mode)
{
	int64_t spin_end = dsm__now_ns() + (int64_t)D->spin_us * 1000;
	bool ok;

	do {
		pthread_mutex_lock(&D->sync_mu);
		ok = cond(arg);
		pthread_mutex_unlock(&D->sync_mu);
		if (ok)
			return 0;
		sched_yield(); /* see net/rpc.c */
	} while (dsm__now_ns() < spin_end);
	pthread_mutex_lock(&D->sync_mu);
	while (!cond(arg)) {
		struct timespec ts;

		if (dsm__peer_gone(from) || (mode == WAIT_ALL && dsm__any_dead())) {
			ok = cond(arg) || (mode == WAIT_FIN && dsm__peer_gone(from));
			pthread_mutex_unlock(&D->sync_mu);
			return ok ? 0 : DSM_EPEERDEAD;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&D->sync_cv, &D->sync_mu, &ts);
	}
	pthread_mutex_unlock(&D->sync_mu);
	return 0;
}
