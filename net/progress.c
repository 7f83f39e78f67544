/*
 * Progress of the reliable channel: who receives, who runs the timers,
 * and how the network thread sleeps and is woken.
 *
 * The transport moves data only when polled (libfabric's udp provider has
 * no thread of its own), so something must call x->ops->progress():
 *   - the network thread (net_thread, started by dsm__chan_start): receives
 *     and runs the timers; spins for cfg.spin_us after the last activity,
 *     yielding the CPU, then blocks in ppoll on the transport's fd and the
 *     kick eventfd until the next timer;
 *   - a thread waiting for a reply (dsm__chan_progress_try): receives
 *     only, if nobody else is receiving (trylock of rx_lock), so it takes
 *     its reply itself instead of being woken across CPUs;
 *   - a test driving the channel by hand (dsm__chan_poll): receives and
 *     runs the timers at a virtual time, with no thread.
 * Whoever receives holds c->rx_lock, so datagrams are handled, and
 * messages delivered, by one thread at a time; callbacks run on it.
 *
 * The timers (run_timers) run on one thread only, the network thread or
 * the poller; they take each peer's lock in turn and fire peer events
 * after dropping it.
 *
 * Sleeping: the network thread announces c->sleeping before its last look
 * at the timers; a sender that armed a timer reads it after (both seq_cst)
 * and kicks the eventfd (dsm__progress_wake), so a new deadline is never
 * missed.
 */
#include "chan-impl.h"

#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

void dsm__progress_kick(struct dsm__chan *c)
{
	uint64_t one = 1;
	ssize_t r;

	if (c->kick_fd < 0)
		return;
	r = write(c->kick_fd, &one, sizeof(one));
	(void)r;
}

/* Pairs with the store of sleeping + timer scan in net_thread(). */
void dsm__progress_wake(struct dsm__chan *c)
{
	/* a seq_cst read-modify-write orders our timer update before the
	 * read, against the thread's seq_cst store of sleeping (Dekker) */
	if (atomic_fetch_add(&c->sleeping, 0))
		dsm__progress_kick(c);
}

/* ---- timers ----------------------------------------------------------- */

/* Run every peer's timers at now; returns the next deadline (ns). Timer
 * thread; takes each peer lock in turn. */
static int64_t run_timers(struct dsm__chan *c, int64_t now)
{
	int64_t next = now + c->hb_ns;
	bool stalled = dsm__fd_stalled(c, now);

	for (unsigned i = 0; i < c->nodes; i++) {
		struct peer *p = &c->peers[i];
		struct evq q = { 0 };
		int64_t t = 0;

		if (i == c->rank)
			continue;
		pthread_mutex_lock(&p->lock);
		switch (p->state) {
		case P_CONNECTING:
			t = dsm__fd_hello_timer(c, p, now);
			break;
		case P_ALIVE:
			if (!dsm__fd_watch(c, p, now, stalled, &q))
				break; /* just declared dead */
			t = dsm__loss_timers(c, p, now);
			if (p->ack_at && now >= p->ack_at)
				dsm__chan_send_ctrl(c, p, DSM_WIRE_ACK, 0, now);
			t = earliest(t, p->ack_at);
			t = earliest(t, dsm__fd_heartbeat(c, p, now));
			break;
		default:
			break;
		}
		pthread_mutex_unlock(&p->lock);
		dsm__fd_evq_fire(c, &q);
		if (t && t < next)
			next = t;
	}
	return next;
}

/* ---- receiving from other threads ------------------------------------- */

int64_t dsm__chan_poll(struct dsm__chan *c, int64_t now_ns)
{
	int64_t next, xd;
	int n;

	c->now = now_ns;
	pthread_mutex_lock(&c->rx_lock);
	do
		n = c->x->ops->progress(c->x, dsm__chan_on_rx, c, 64);
	while (n > 0);
	pthread_mutex_unlock(&c->rx_lock);
	next = run_timers(c, now_ns);
	xd = c->x->ops->next_deadline(c->x);
	return xd < next ? xd : next;
}

int dsm__chan_progress_try(struct dsm__chan *c)
{
	int n;

	if (pthread_mutex_trylock(&c->rx_lock))
		return 0;
	n = c->x->ops->progress(c->x, dsm__chan_on_rx, c, 16);
	pthread_mutex_unlock(&c->rx_lock);
	return n > 0 ? n : 0;
}

/* ---- the network thread ----------------------------------------------- */

/* Data datagrams moved so far, both ways: what makes the thread keep
 * polling (heartbeats and pure acks alone do not). */
static uint64_t data_moved(struct dsm__chan *c)
{
	return atomic_load_explicit(&c->st.rx_data, memory_order_relaxed) +
	       atomic_load_explicit(&c->st.tx_data, memory_order_relaxed);
}

static void *net_thread(void *arg)
{
	struct dsm__chan *c = arg;
	int64_t spin_ns = (int64_t)c->cfg.spin_us * 1000, active = dsm__now_ns();
	int64_t next_timer = 0;

	for (;;) {
		int64_t now, deadline, xd;
		struct pollfd pfd[2];
		struct timespec ts;
		int n, fd = -1;

		/* Stopping: first let the transport send what it still holds
		 * back (the fault shim delays and reorders; the goodbyes are
		 * among them), for at most 100 ms. */
		if (atomic_load_explicit(&c->stop, memory_order_acquire) &&
		    (c->x->ops->next_deadline(c->x) == INT64_MAX ||
		     dsm__now_ns() - c->stop_ns > 100000000LL))
			break;
		uint64_t moved = data_moved(c);

		pthread_mutex_lock(&c->rx_lock);
		n = c->x->ops->progress(c->x, dsm__chan_on_rx, c, 64);
		pthread_mutex_unlock(&c->rx_lock);
		now = dsm__now_ns();
		if (n > 0 || now >= next_timer)
			next_timer = run_timers(c, now);
		/* Spin on only after data: a heartbeat or an ack on an idle link
		 * needs no quick follow-up, and spinning after each would cost
		 * DSM_SPIN_US of CPU per heartbeat (idle nodes at 2% of a core
		 * instead of under 1%). */
		if (data_moved(c) != moved)
			active = now;
		if (n > 0 || now - active < spin_ns) {
			/* While spinning, timers still run when due; yield so a
			 * thread waiting for this CPU runs (see rpc.c). */
			if (n <= 0)
				sched_yield();
			continue;
		}
		/* Block. Announce it first, then look at the timers once more,
		 * so a sender that queued data either sees us asleep (and
		 * kicks) or we see its data (and its timer). */
		atomic_store(&c->sleeping, 1);
		next_timer = run_timers(c, now);
		if (c->x->ops->wait_prepare(c->x, &fd) == DSM_EAGAIN) {
			atomic_store(&c->sleeping, 0);
			continue;
		}
		deadline = next_timer;
		xd = c->x->ops->next_deadline(c->x);
		if (xd < deadline)
			deadline = xd;
		now = dsm__now_ns();
		if (deadline < now)
			deadline = now;
		ts.tv_sec = (deadline - now) / 1000000000;
		ts.tv_nsec = (deadline - now) % 1000000000;
		pfd[0].fd = fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = c->kick_fd;
		pfd[1].events = POLLIN;
		n = ppoll(pfd, 2, &ts, NULL);
		atomic_store(&c->sleeping, 0);
		if (n > 0 && (pfd[1].revents & POLLIN)) {
			uint64_t v;
			ssize_t rr = read(c->kick_fd, &v, sizeof(v));
			(void)rr;
			next_timer = 0; /* a sender changed timers: rescan */
			active = dsm__now_ns(); /* it sent data: a reply may follow */
		}
	}
	return NULL;
}

int dsm__chan_start(struct dsm__chan *c)
{
	int r;

	c->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->kick_fd < 0)
		return DSM_ESYS;
	c->thread_started = true;
	r = pthread_create(&c->thread, NULL, net_thread, c);
	if (r) {
		c->thread_started = false;
		close(c->kick_fd);
		c->kick_fd = -1;
		return DSM_ESYS;
	}
	return 0;
}

/* Called by dsm__chan_destroy after the goodbyes. */
void dsm__progress_stop(struct dsm__chan *c)
{
	if (c->thread_started) {
		c->stop_ns = dsm__now_ns();
		atomic_store_explicit(&c->stop, true, memory_order_release);
		dsm__progress_kick(c);
		pthread_join(c->thread, NULL);
	}
	if (c->kick_fd >= 0)
		close(c->kick_fd);
}
