/*
 * The libfabric datagram transport: one FI_EP_DGRAM endpoint of the
 * provider named by DSM_PROVIDER (normally "udp"), bound to addrs[rank],
 * with every rank's address in an FI_AV_TABLE (fi_addr_t == rank).
 *
 * Objects, opened in this order and closed in reverse: fabric, domain,
 * tx CQ, rx CQ (FI_WAIT_FD: FI_WAIT_POLLFD is broken in 1.17), AV,
 * endpoint. The rx CQ is sized above the posted receives (each posted
 * buffer yields at most one completion before we repost it) because the
 * udp provider overwrites a full rx CQ silently in 1.17 (its tx side
 * checks and returns -FI_EAGAIN instead, measured).
 *
 * Sending: when the provider's inject_size covers the whole mtu (udp:
 * inject_size == max_msg_size == 1472; udpx_inject is a plain sendto with
 * no lock and no completion) send() uses fi_inject: the buffer is free on
 * return and the tx CQ never sees an entry. Otherwise send() copies into
 * one of a fixed set of bounce buffers, uses fi_send, and drains the tx CQ
 * (under tx_lock) whenever it runs out of bounce buffers and in progress().
 * The tx CQ is then sized at twice the bounce buffers, so it cannot fill.
 *
 * mtu is the provider's max_msg_size capped at DSM_WIRE_MAX_DGRAM; receive
 * buffers are mtu bytes (the udp provider truncates silently into a smaller
 * buffer; only a peer ignoring our mtu could send more). fi_inject does not
 * check the size (1473 bytes succeed on udp), so send() does.
 *
 * Port in use: bind()'s EADDRINUSE comes back as -FI_EADDRINUSE, from
 * fi_setname on an endpoint opened without src_addr (see open_endpoint:
 * binding inside fi_endpoint leaks a socket in 1.17).
 *
 * Receiving: rx_posted buffers of mtu bytes each stay posted; progress()
 * reads the rx CQ (the udp provider moves data only inside fi_cq_read, one
 * recvmsg per call), hands each datagram to the callback and reposts that
 * buffer at once. The sender's rank travels in our own header, so no
 * FI_SOURCE lookup per datagram.
 *
 * Fatal signals: libraries that libfabric links or loads may take over
 * SIGSEGV and its kin (Debian 12: libinfinipath, under the psm provider,
 * from its constructor, before main). A constructor of ours and
 * dsm__fabric_create hand such signals back to the program (see "fatal
 * signals" below), so that a libdsm program dies of a foreign crash as it
 * would without libdsm.
 *
 * Threads: send() from any thread; progress() by one thread at a time
 * (the channel's receiving thread: the network thread or a caller waiting
 * for a reply); wait_prepare() and next_deadline() on the network thread;
 * create/destroy by the owner.
 */
#include "xport.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>

#include "common.h"
#include "wire.h"

#define FAB_API_VERSION FI_VERSION(1, 10)
#define FAB_RX_POSTED_DEFAULT 512
#define FAB_TX_SLOTS 256   /* bounce buffers of the fi_send path */
#define FAB_CQ_BATCH 32    /* completions per fi_cq_read */
#define FAB_SEND_RETRIES 8 /* -FI_EAGAIN retries inside one send() */

/*
 * Test hook (SQLite-style): when nonzero at create, use the fi_send path
 * even if fi_inject would do. Not part of any interface.
 */
int dsm__fabric_no_inject;

struct fab {
	struct dsm__xport x; /* first: the ops see a struct dsm__xport * */
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_cq *txcq, *rxcq;
	struct fid_av *av;
	struct fid_ep *ep;
	int wait_fd;       /* the rx CQ's FI_WAIT_FD object */
	bool use_inject;   /* else fi_send + bounce buffers */
	fi_addr_t *peers;  /* [nodes]: AV address of each rank */

	size_t stride;     /* bytes per rx/tx buffer (>= mtu) */
	int rx_posted;
	uint8_t *rxbuf;    /* rx_posted * stride */
	/* Buffers whose repost failed; retried by progress(). Receiving
	 * thread (wait_prepare() reads the count). */
	uint8_t **unposted;
	int nunposted;

	/* fi_send path only */
	pthread_mutex_t tx_lock; /* protects txfree, ntxfree, tx CQ reads */
	bool tx_lock_init;
	uint8_t *txbuf;          /* FAB_TX_SLOTS * stride */
	uint8_t **txfree;        /* stack of free bounce buffers */
	unsigned ntxfree;

	char name[64];           /* "host:port" we are bound to, for logs */
};

static inline struct fab *to_fab(struct dsm__xport *x)
{
	return (struct fab *)x;
}

/* libfabric return value (negative fi errno) to a DSM code. */
static int fi_to_dsm(ssize_t r)
{
	switch (-r) {
	case FI_ENOMEM:
		return DSM_ENOMEM;
	case FI_EAGAIN:
	case FI_ENOBUFS:
		return DSM_EAGAIN;
	case FI_EMSGSIZE:
		return DSM_EMSGSIZE;
	case FI_EADDRINUSE:
		return DSM_EADDRINUSE;
	case FI_EADDRNOTAVAIL:
	case FI_ENETUNREACH:
	case FI_EHOSTUNREACH:
	case FI_ECONNREFUSED:
	case FI_EPERM:
	case FI_EACCES:
		return DSM_EADDR;
	default:
		return DSM_ESYS;
	}
}

/* ---- receive side (the receiving thread) ----------------------------- */

static bool is_rxbuf(const struct fab *f, const void *p)
{
	const uint8_t *b = p;

	return b >= f->rxbuf && b < f->rxbuf + (size_t)f->rx_posted * f->stride &&
	       (size_t)(b - f->rxbuf) % f->stride == 0;
}

/* Post one receive buffer; on failure remember it for the next progress(). */
static void repost(struct fab *f, uint8_t *buf)
{
	ssize_t r = fi_recv(f->ep, buf, f->stride, NULL, FI_ADDR_UNSPEC, buf);

	if (DSM__UNLIKELY(r)) {
		DSM__DEBUG("fabric: fi_recv: %s (will retry)", fi_strerror((int)-r));
		f->unposted[f->nunposted++] = buf;
	}
}

static void retry_unposted(struct fab *f)
{
	int n = f->nunposted;

	f->nunposted = 0;
	for (int i = 0; i < n; i++)
		repost(f, f->unposted[i]);
}

/* Read one error completion of cq; returns its op_context (or NULL). */
static void *read_cq_error(struct fid_cq *cq, const char *which)
{
	struct fi_cq_err_entry e;
	ssize_t r;

	memset(&e, 0, sizeof(e));
	r = fi_cq_readerr(cq, &e, 0);
	if (r < 0) {
		DSM__DEBUG("fabric: fi_cq_readerr(%s): %s", which, fi_strerror((int)-r));
		return NULL;
	}
	DSM__DEBUG("fabric: %s completion error: %s (prov_errno %d)", which,
		   fi_strerror(e.err), e.prov_errno);
	return e.op_context;
}

/* Return completed bounce buffers to the free stack. Caller holds tx_lock. */
static void tx_drain_locked(struct fab *f)
{
	struct fi_cq_msg_entry ent[FAB_CQ_BATCH];

	for (;;) {
		ssize_t r = fi_cq_read(f->txcq, ent, FAB_CQ_BATCH);

		if (r == -FI_EAGAIN)
			return;
		if (r == -FI_EAVAIL) {
			void *ctx = read_cq_error(f->txcq, "tx");

			if (ctx)
				f->txfree[f->ntxfree++] = ctx;
			continue;
		}
		if (r < 0) {
			DSM__DEBUG("fabric: fi_cq_read(tx): %s", fi_strerror((int)-r));
			return;
		}
		for (ssize_t i = 0; i < r; i++)
			if (ent[i].op_context)
				f->txfree[f->ntxfree++] = ent[i].op_context;
	}
}

/*
 * Deliver up to max datagrams through cb, reposting each buffer right
 * after cb returns. One caller at a time. Returns the count, or a negative code
 * when the rx CQ fails before anything was delivered.
 */
static int fab_progress(struct dsm__xport *x, dsm__xport_rx_fn cb, void *arg, int max)
{
	struct fab *f = to_fab(x);
	struct fi_cq_msg_entry ent[FAB_CQ_BATCH];
	uint64_t bytes = 0;
	int n = 0, err = 0;

	if (DSM__UNLIKELY(f->nunposted))
		retry_unposted(f);
	while (n < max) {
		ssize_t r = fi_cq_read(f->rxcq, ent, DSM__MIN(max - n, FAB_CQ_BATCH));

		if (r == -FI_EAGAIN)
			break;
		if (r == -FI_EAVAIL) {
			void *ctx = read_cq_error(f->rxcq, "rx");

			if (ctx && is_rxbuf(f, ctx))
				repost(f, ctx);
			continue;
		}
		if (r < 0) {
			DSM__ERR("fabric %s: fi_cq_read(rx): %s", f->name, fi_strerror((int)-r));
			err = fi_to_dsm(r);
			break;
		}
		for (ssize_t i = 0; i < r; i++) {
			uint8_t *buf = ent[i].op_context;
			size_t len = DSM__MIN(ent[i].len, f->x.mtu);

			cb(arg, buf, len);
			bytes += len;
			repost(f, buf);
		}
		n += (int)r;
	}
	if (n) {
		atomic_fetch_add_explicit(&f->x.stats.rx_dgrams, (uint64_t)n, memory_order_relaxed);
		atomic_fetch_add_explicit(&f->x.stats.rx_bytes, bytes, memory_order_relaxed);
	}
	if (!f->use_inject) {
		pthread_mutex_lock(&f->tx_lock);
		tx_drain_locked(f);
		pthread_mutex_unlock(&f->tx_lock);
	}
	return n ? n : err;
}

/*
 * 0 and the rx CQ's fd when nothing is pending (fi_trywait), DSM_EAGAIN
 * when progress() must run first. Network thread. The tx CQ is not
 * waited on: its completions only free bounce buffers, which send()
 * reclaims itself.
 */
static int fab_wait_prepare(struct dsm__xport *x, int *fd)
{
	struct fab *f = to_fab(x);
	struct fid *fids[1] = { &f->rxcq->fid };
	int r;

	if (f->nunposted)
		return DSM_EAGAIN;
	r = fi_trywait(f->fabric, fids, 1);
	if (r == -FI_EAGAIN)
		return DSM_EAGAIN;
	if (r) {
		DSM__ERR("fabric %s: fi_trywait: %s", f->name, fi_strerror(-r));
		return DSM_ESYS;
	}
	*fd = f->wait_fd;
	return 0;
}

static int64_t fab_next_deadline(struct dsm__xport *x)
{
	(void)x;
	return INT64_MAX;
}

/* ---- send side (any thread) ----------------------------------------- */

/* fi_send path: copy into a bounce buffer. Takes tx_lock. */
static ssize_t send_copy(struct fab *f, fi_addr_t to, const uint8_t *buf, size_t len)
{
	uint8_t *slot;
	ssize_t r;

	pthread_mutex_lock(&f->tx_lock);
	if (!f->ntxfree)
		tx_drain_locked(f);
	if (!f->ntxfree) {
		pthread_mutex_unlock(&f->tx_lock);
		return -FI_EAGAIN;
	}
	slot = f->txfree[--f->ntxfree];
	if (len)
		memcpy(slot, buf, len);
	r = fi_send(f->ep, slot, len, NULL, to, slot);
	if (r)
		f->txfree[f->ntxfree++] = slot;
	pthread_mutex_unlock(&f->tx_lock);
	return r;
}

/*
 * Send one datagram to rank dst; buf is reusable on return. Any thread.
 * 0, DSM_EAGAIN after FAB_SEND_RETRIES tries, DSM_EINVAL, DSM_EMSGSIZE,
 * DSM_EADDR (peer unreachable) or DSM_ESYS.
 */
static int fab_send(struct dsm__xport *x, unsigned dst, const uint8_t *buf, size_t len)
{
	struct fab *f = to_fab(x);
	ssize_t r;

	if (DSM__UNLIKELY(dst >= x->nodes))
		return DSM_EINVAL;
	if (DSM__UNLIKELY(len > x->mtu))
		return DSM_EMSGSIZE;
	for (int tries = 0;; tries++) {
		if (f->use_inject)
			r = fi_inject(f->ep, buf, len, f->peers[dst]);
		else
			r = send_copy(f, f->peers[dst], buf, len);
		if (DSM__LIKELY(r == 0)) {
			atomic_fetch_add_explicit(&x->stats.tx_dgrams, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&x->stats.tx_bytes, len, memory_order_relaxed);
			return 0;
		}
		if (r != -FI_EAGAIN && r != -FI_ENOBUFS)
			break;
		if (tries == FAB_SEND_RETRIES) {
			atomic_fetch_add_explicit(&x->stats.tx_eagain, 1, memory_order_relaxed);
			return DSM_EAGAIN;
		}
		/* fi_send path: send_copy already drained the tx CQ; the
		 * kernel's socket buffer needs another thread to run. */
		sched_yield();
	}
	DSM__DEBUG("fabric %s: send to rank %u: %s", f->name, dst, fi_strerror((int)-r));
	return fi_to_dsm(r);
}

/* ---- lifecycle ------------------------------------------------------ */

static void fab_destroy(struct dsm__xport *x)
{
	struct fab *f = to_fab(x);

	if (!f)
		return;
	fi_close(&f->ep->fid);
	fi_close(&f->av->fid);
	fi_close(&f->rxcq->fid);
	fi_close(&f->txcq->fid);
	fi_close(&f->domain->fid);
	fi_close(&f->fabric->fid);
	fi_freeinfo(f->info);
	if (f->tx_lock_init)
		pthread_mutex_destroy(&f->tx_lock);
	free(f->txfree);
	free(f->txbuf);
	free(f->unposted);
	free(f->rxbuf);
	free(f->peers);
	free(f);
}

static const struct dsm__xport_ops fabric_ops = {
	.name = "fabric",
	.send = fab_send,
	.progress = fab_progress,
	.wait_prepare = fab_wait_prepare,
	.next_deadline = fab_next_deadline,
	.destroy = fab_destroy,
};

/* "host:port" to an IPv4 address. 0 or DSM_EADDR (logged). */
static int resolve(const char *s, unsigned rank, struct sockaddr_in *sin)
{
	struct addrinfo hints, *res;
	char host[256];
	unsigned port;
	int r;

	if (!s || dsm__parse_hostport(s, host, sizeof(host), &port)) {
		DSM__ERR("address of rank %u: '%s' is not host:port", rank, s ? s : "(null)");
		return DSM_EADDR;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET; /* the udp provider's FI_SOCKADDR_IN */
	hints.ai_socktype = SOCK_DGRAM;
	r = getaddrinfo(host, NULL, &hints, &res);
	if (r) {
		DSM__ERR("address of rank %u: cannot resolve '%s': %s", rank, s,
			 gai_strerror(r));
		return DSM_EADDR;
	}
	memcpy(sin, res->ai_addr, sizeof(*sin));
	sin->sin_port = htons((uint16_t)port);
	freeaddrinfo(res);
	if (sin->sin_addr.s_addr == htonl(INADDR_ANY)) {
		/* Every address is also where peers send to. */
		DSM__ERR("address of rank %u: '%s' is the wildcard address; peers need "
			 "one they can send to", rank, s);
		return DSM_EADDR;
	}
	return 0;
}

/*
 * libfabric's MR cache may install its own userfaultfd monitor, which
 * would fight with our pager. Disable it, but only when the user has not
 * chosen a monitor (overwrite=0): an explicit FI_MR_CACHE_MONITOR is a
 * deliberate choice, so we keep it and warn. libfabric reads the variable
 * once, at its first initialisation, so this must run before any fi_*
 * call in the process.
 */
static void disable_mr_cache_monitor_locked(void)
{
	const char *v;

	setenv("FI_MR_CACHE_MONITOR", "disabled", 0);
	v = getenv("FI_MR_CACHE_MONITOR");
	if (v && strcmp(v, "disabled"))
		DSM__WARN("FI_MR_CACHE_MONITOR=%s set by the user: kept (libdsm "
			  "prefers 'disabled'; a userfaultfd monitor may conflict "
			  "with the pager)", v);
}

/* setenv is not thread-safe: serialise our calls, since several nodes may
 * be created at once (tests do). Once the variable exists, setenv with
 * overwrite 0 changes nothing, so later readers are not disturbed. */
static void disable_mr_cache_monitor(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&lock);
	disable_mr_cache_monitor_locked();
	pthread_mutex_unlock(&lock);
}

/* ---- fatal signals ------------------------------------------------- */

/*
 * A libdsm program must die of a foreign crash (a bad pointer outside the
 * shared region, abort()) exactly as it would without libdsm: killed by
 * the signal, with a core where enabled. Some libraries that come with
 * libfabric disagree: Debian 12's libfabric links the psm provider's
 * libpsm_infinipath, whose libinfinipath.so.4 installs, from its ELF
 * constructor (before main), a handler for SIGSEGV, SIGBUS, SIGILL and
 * SIGABRT that prints a backtrace and exits with status 1. libfabric
 * builds with loadable providers dlopen them, and the libraries they
 * need, inside fi_getinfo, where the same constructors run.
 *
 * So, when libdsm is loaded (a constructor: before main, and also for a
 * job of one node, which never calls libfabric) and again before the
 * libfabric calls of dsm__fabric_create, a fatal signal whose handler
 * lives in libfabric or in an object it needs (its DT_NEEDED closure, as
 * the dynamic linker resolved it) is set back to SIG_DFL, the disposition
 * exec leaves for a caught signal. (An inherited SIG_IGN would behave the
 * same for these signals: the kernel kills on a fault regardless, and
 * abort() resets it.) After those calls, a fatal signal whose handler
 * changed during them gets back the one it had before them.
 * A handler the program installed is never touched, and neither is the
 * sigsegv pager's (it starts after the network, and chains to whatever
 * handler it finds: now the program's or SIG_DFL).
 *
 * Limits: a program that links libfabric's psm libraries itself loses
 * their handler too. A handler installed before libinfinipath's
 * constructor ran (by AddressSanitizer, a preloaded crash reporter, or a
 * process that dlopens libdsm) becomes SIG_DFL: libinfinipath keeps the
 * handler it replaced to itself. IPATH_NO_BACKTRACE=1 in the environment
 * (mpirun sets it for its ranks) stops libinfinipath from installing
 * anything.
 *
 * Threads: fatal_lock is held from save to restore, across the libfabric
 * calls, so that nodes created at once in one process (tests) cannot save
 * each other's transient handlers; the constructor takes it too. Never
 * called in signal context.
 */
static const int fatal_sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS };
#define N_FATAL (sizeof(fatal_sigs) / sizeof(fatal_sigs[0]))
#define FAB_DEPS_MAX 256 /* objects followed in libfabric's DT_NEEDED closure */

static pthread_mutex_t fatal_lock = PTHREAD_MUTEX_INITIALIZER;

struct fatal_saved {
	struct sigaction sa[N_FATAL];
};

/*
 * The string table of lm's dynamic section, or NULL. glibc relocates the
 * d_ptr entries of l_ld in place on most targets; where it does not they
 * are link-time addresses, below l_addr. The result must lie inside lm.
 */
static const char *dyn_strtab(const struct link_map *lm)
{
	for (const ElfW(Dyn) *d = lm->l_ld; d && d->d_tag != DT_NULL; d++) {
		struct link_map *owner = NULL;
		uintptr_t p;
		Dl_info di;

		if (d->d_tag != DT_STRTAB)
			continue;
		p = d->d_un.d_ptr;
		if (p < lm->l_addr)
			p += lm->l_addr;
		if (!dladdr1((void *)p, &di, (void **)&owner, RTLD_DL_LINKMAP) || owner != lm)
			return NULL;
		return (const char *)p;
	}
	return NULL;
}

/* Whether target is libfabric or an object libfabric needs, directly or
 * not. The main program never is. */
static bool in_fabric_deps(const struct link_map *target)
{
	const struct link_map *seen[FAB_DEPS_MAX];
	struct link_map *fab = NULL;
	const struct link_map *exe;
	size_t n = 0;
	Dl_info di;

	if (!dladdr1((void *)(uintptr_t)fi_getinfo, &di, (void **)&fab, RTLD_DL_LINKMAP) || !fab)
		return false;
	for (exe = fab; exe->l_prev; exe = exe->l_prev)
		; /* the head of the list is the program */
	if (target == exe || fab == exe)
		return false; /* libfabric linked into the program: cannot tell */
	seen[n++] = fab;
	for (size_t i = 0; i < n; i++) {
		const struct link_map *lm = seen[i];
		const char *str;

		if (lm == target)
			return true;
		str = dyn_strtab(lm);
		for (const ElfW(Dyn) *d = lm->l_ld; str && d->d_tag != DT_NULL; d++) {
			struct link_map *dep = NULL;
			bool known = false;
			void *h;

			if (d->d_tag != DT_NEEDED)
				continue;
			/* The loaded object of that name, as the loader matched it. */
			h = dlopen(str + d->d_un.d_val, RTLD_LAZY | RTLD_NOLOAD);
			if (!h)
				continue;
			if (dlinfo(h, RTLD_DI_LINKMAP, &dep))
				dep = NULL;
			dlclose(h);
			for (size_t k = 0; k < n && !known; k++)
				known = seen[k] == dep;
			if (!dep || known || dep == exe)
				continue;
			if (n == FAB_DEPS_MAX)
				return false;
			seen[n++] = dep;
		}
	}
	return false;
}

/* The object that holds sa's handler if libfabric brought it in, else NULL. */
static const char *fabrics_handler(const struct sigaction *sa)
{
	struct link_map *lm = NULL;
	Dl_info di;

	if (!(sa->sa_flags & SA_SIGINFO) &&
	    (sa->sa_handler == SIG_DFL || sa->sa_handler == SIG_IGN))
		return NULL;
	if (!dladdr1((void *)(uintptr_t)sa->sa_handler, &di, (void **)&lm, RTLD_DL_LINKMAP) ||
	    !lm || !in_fabric_deps(lm))
		return NULL;
	return di.dli_fname ? di.dli_fname : "?";
}

/* Gives back to SIG_DFL the fatal signals libfabric's objects took and
 * records every fatal signal's disposition in s. Caller holds fatal_lock. */
static void fatal_sigs_reclaim(struct fatal_saved *s)
{
	for (size_t i = 0; i < N_FATAL; i++) {
		struct sigaction *sa = &s->sa[i];
		const char *owner;

		if (sigaction(fatal_sigs[i], NULL, sa)) {
			sa->sa_handler = SIG_DFL; /* never: the numbers are valid */
			continue;
		}
		owner = fabrics_handler(sa);
		if (!owner)
			continue;
		DSM__DEBUG("fabric: SIG%s was handled by %s, loaded with libfabric: "
			   "back to the default action", sigabbrev_np(fatal_sigs[i]), owner);
		memset(sa, 0, sizeof(*sa));
		sa->sa_handler = SIG_DFL;
		sigemptyset(&sa->sa_mask);
		sigaction(fatal_sigs[i], sa, NULL);
	}
}

/*
 * At load, after the constructors of the libraries libdsm needs (theirs
 * run first) and before the program's own and main: the handlers that
 * libfabric's libraries installed from their constructors go. This also
 * covers a job of one node, which never calls into libfabric.
 */
__attribute__((constructor)) static void fatal_sigs_at_load(void)
{
	struct fatal_saved s;

	pthread_mutex_lock(&fatal_lock);
	fatal_sigs_reclaim(&s);
	pthread_mutex_unlock(&fatal_lock);
}

/* Before the provider calls: takes fatal_lock, reclaims, records in s. */
static void fatal_sigs_save(struct fatal_saved *s)
{
	pthread_mutex_lock(&fatal_lock);
	fatal_sigs_reclaim(s);
}

/* After the provider calls: puts back each fatal signal's disposition
 * from s if the calls changed it; releases fatal_lock. */
static void fatal_sigs_restore(const struct fatal_saved *s)
{
	for (size_t i = 0; i < N_FATAL; i++) {
		struct sigaction cur;

		if (sigaction(fatal_sigs[i], NULL, &cur) || cur.sa_handler == s->sa[i].sa_handler)
			continue;
		DSM__DEBUG("fabric: SIG%s handler changed inside libfabric: put back",
			   sigabbrev_np(fatal_sigs[i]));
		sigaction(fatal_sigs[i], &s->sa[i], NULL);
	}
	pthread_mutex_unlock(&fatal_lock);
}

/*
 * Open the endpoint bound to src. The udp provider binds info->src_addr
 * inside fi_endpoint and returns bind()'s -errno (-FI_EADDRINUSE when the
 * port is taken) but leaks its socket on that path (1.17, measured: one
 * descriptor per failure). So open it unbound and bind with fi_setname,
 * whose failure leaves a closable endpoint; providers without setname get
 * src_addr in fi_endpoint instead. 0 or a negative fi errno.
 */
static int open_endpoint(struct fab *f, const struct sockaddr_in *src)
{
	struct fi_info *unbound = fi_dupinfo(f->info);
	int r;

	if (!unbound)
		return -FI_ENOMEM;
	free(unbound->src_addr);
	unbound->src_addr = NULL;
	unbound->src_addrlen = 0;
	r = fi_endpoint(f->domain, unbound, &f->ep, NULL);
	fi_freeinfo(unbound);
	if (r)
		return r;
	r = fi_setname(&f->ep->fid, (void *)src, sizeof(*src));
	if (r == -FI_ENOSYS) {
		fi_close(&f->ep->fid);
		f->ep = NULL;
		return fi_endpoint(f->domain, f->info, &f->ep, NULL);
	}
	if (r) {
		fi_close(&f->ep->fid);
		f->ep = NULL;
	}
	return r;
}

/* Log a failed libfabric setup step; returns the DSM code. */
static int step_failed(struct fab *f, const char *step, int r)
{
	DSM__ERR("fabric %s: %s: %s", f->name, step, fi_strerror(-r));
	return fi_to_dsm(r);
}

/* Log a failed endpoint creation/enable, naming the address; DSM code. */
static int bind_failed(struct fab *f, unsigned rank, const char *step, int r)
{
	int ret = fi_to_dsm(r);

	if (ret == DSM_EADDRINUSE)
		DSM__ERR("address %s of rank %u is already in use (%s)", f->name, rank, step);
	else if (ret == DSM_EADDR)
		DSM__ERR("address %s of rank %u: cannot bind: %s (%s)", f->name, rank,
			 fi_strerror(-r), step);
	else
		DSM__ERR("fabric %s: %s: %s", f->name, step, fi_strerror(-r));
	return ret;
}

/* Open the transport; dsm__fabric_create has checked cfg and out. */
static int fab_open(const struct dsm__fabric_cfg *cfg, struct dsm__xport **out)
{
	const char *prov;
	struct fi_info *hints;
	struct fi_cq_attr cq_attr;
	struct fi_av_attr av_attr;
	struct sockaddr_in *sins;
	struct fab *f;
	size_t mtu;
	int r, ret = 0;

	*out = NULL;
	prov = cfg->provider && *cfg->provider ? cfg->provider : "udp";

	sins = calloc(cfg->nodes, sizeof(*sins));
	f = calloc(1, sizeof(*f));
	if (!sins || !f) {
		ret = DSM_ENOMEM;
		goto fail_alloc;
	}
	f->wait_fd = -1;
	f->x.ops = &fabric_ops;
	f->x.nodes = cfg->nodes;
	f->x.rank = cfg->rank;
	snprintf(f->name, sizeof(f->name), "%s", cfg->addrs[cfg->rank] ? cfg->addrs[cfg->rank] : "?");
	for (unsigned i = 0; i < cfg->nodes; i++) {
		ret = resolve(cfg->addrs[i], i, &sins[i]);
		if (ret)
			goto fail_alloc;
	}

	disable_mr_cache_monitor();
	hints = fi_allocinfo();
	if (!hints) {
		ret = DSM_ENOMEM;
		goto fail_alloc;
	}
	hints->ep_attr->type = FI_EP_DGRAM;
	hints->caps = FI_MSG;
	hints->mode = 0;
	hints->addr_format = FI_SOCKADDR_IN;
	hints->domain_attr->threading = FI_THREAD_SAFE;
	hints->domain_attr->av_type = FI_AV_TABLE;
	hints->domain_attr->mr_mode = 0;
	hints->fabric_attr->prov_name = strdup(prov);
	hints->src_addr = malloc(sizeof(struct sockaddr_in));
	if (!hints->fabric_attr->prov_name || !hints->src_addr) {
		fi_freeinfo(hints);
		ret = DSM_ENOMEM;
		goto fail_alloc;
	}
	memcpy(hints->src_addr, &sins[cfg->rank], sizeof(struct sockaddr_in));
	hints->src_addrlen = sizeof(struct sockaddr_in);
	r = fi_getinfo(FAB_API_VERSION, NULL, NULL, 0, hints, &f->info);
	fi_freeinfo(hints);
	if (r) {
		DSM__ERR("DSM_PROVIDER=%s: no usable FI_EP_DGRAM provider of that name "
			 "for local address %s (fi_getinfo: %s)", prov, f->name,
			 fi_strerror(-r));
		ret = r == -FI_ENOMEM ? DSM_ENOMEM : DSM_EPROVIDER;
		goto fail_getinfo;
	}

	mtu = DSM__MIN(f->info->ep_attr->max_msg_size, (size_t)DSM_WIRE_MAX_DGRAM);
	f->x.mtu = mtu;
	f->stride = (DSM__MAX(mtu, (size_t)1) + 63) & ~(size_t)63;
	f->use_inject = !dsm__fabric_no_inject && f->info->tx_attr->inject_size >= mtu;
	f->rx_posted = cfg->rx_posted ? cfg->rx_posted : FAB_RX_POSTED_DEFAULT;
	if (f->info->rx_attr->size && (size_t)f->rx_posted > f->info->rx_attr->size) {
		DSM__WARN("fabric %s: %d receive buffers asked, provider %s allows %zu",
			  f->name, f->rx_posted, prov, f->info->rx_attr->size);
		f->rx_posted = (int)f->info->rx_attr->size;
	}

	r = fi_fabric(f->info->fabric_attr, &f->fabric, NULL);
	if (r) {
		ret = step_failed(f, "fi_fabric", r);
		goto fail_fabric;
	}
	r = fi_domain(f->fabric, f->info, &f->domain, NULL);
	if (r) {
		ret = step_failed(f, "fi_domain", r);
		goto fail_domain;
	}

	memset(&cq_attr, 0, sizeof(cq_attr));
	cq_attr.format = FI_CQ_FORMAT_MSG;
	cq_attr.wait_obj = FI_WAIT_NONE;
	/* fi_inject never completes; fi_send: above the bounce buffers. */
	cq_attr.size = f->use_inject ? 16 : 2 * FAB_TX_SLOTS;
	r = fi_cq_open(f->domain, &cq_attr, &f->txcq, NULL);
	if (r) {
		ret = step_failed(f, "fi_cq_open(tx)", r);
		goto fail_txcq;
	}
	memset(&cq_attr, 0, sizeof(cq_attr));
	cq_attr.format = FI_CQ_FORMAT_MSG;
	cq_attr.wait_obj = FI_WAIT_FD;
	cq_attr.size = 2 * (size_t)f->rx_posted; /* > posted receives */
	r = fi_cq_open(f->domain, &cq_attr, &f->rxcq, NULL);
	if (r) {
		ret = step_failed(f, "fi_cq_open(rx)", r);
		goto fail_rxcq;
	}

	memset(&av_attr, 0, sizeof(av_attr));
	av_attr.type = FI_AV_TABLE;
	av_attr.count = cfg->nodes;
	r = fi_av_open(f->domain, &av_attr, &f->av, NULL);
	if (r) {
		ret = step_failed(f, "fi_av_open", r);
		goto fail_av;
	}
	f->peers = calloc(cfg->nodes, sizeof(*f->peers));
	if (!f->peers) {
		ret = DSM_ENOMEM;
		goto fail_av_insert;
	}
	for (unsigned i = 0; i < cfg->nodes; i++)
		f->peers[i] = FI_ADDR_NOTAVAIL;
	r = fi_av_insert(f->av, sins, cfg->nodes, f->peers, 0, NULL);
	if (r != (int)cfg->nodes) {
		if (r < 0)
			DSM__ERR("fabric %s: fi_av_insert: %s", f->name, fi_strerror(-r));
		for (unsigned i = 0; i < cfg->nodes; i++)
			if (f->peers[i] == FI_ADDR_NOTAVAIL)
				DSM__ERR("address %s of rank %u: rejected by provider %s (fi_av_insert)",
					 cfg->addrs[i], i, prov);
		ret = DSM_EADDR;
		goto fail_av_insert;
	}

	r = open_endpoint(f, &sins[cfg->rank]);
	if (r) {
		ret = bind_failed(f, cfg->rank, "bind", r);
		goto fail_endpoint;
	}
	r = fi_ep_bind(f->ep, &f->av->fid, 0);
	if (!r)
		r = fi_ep_bind(f->ep, &f->txcq->fid, FI_TRANSMIT);
	if (!r)
		r = fi_ep_bind(f->ep, &f->rxcq->fid, FI_RECV);
	if (r) {
		ret = step_failed(f, "fi_ep_bind", r);
		goto fail_ep_setup;
	}
	r = fi_enable(f->ep);
	if (r) {
		ret = bind_failed(f, cfg->rank, "fi_enable", r);
		goto fail_ep_setup;
	}
	r = fi_control(&f->rxcq->fid, FI_GETWAIT, &f->wait_fd);
	if (r) {
		ret = step_failed(f, "fi_control(FI_GETWAIT)", r);
		goto fail_ep_setup;
	}

	f->rxbuf = malloc((size_t)f->rx_posted * f->stride);
	f->unposted = calloc((size_t)f->rx_posted, sizeof(*f->unposted));
	if (!f->rxbuf || !f->unposted) {
		ret = DSM_ENOMEM;
		goto fail_ep_setup;
	}
	for (int i = 0; i < f->rx_posted; i++) {
		uint8_t *b = f->rxbuf + (size_t)i * f->stride;

		r = (int)fi_recv(f->ep, b, f->stride, NULL, FI_ADDR_UNSPEC, b);
		if (r) {
			ret = step_failed(f, "fi_recv", r);
			goto fail_ep_setup;
		}
	}

	if (!f->use_inject) {
		f->txbuf = malloc((size_t)FAB_TX_SLOTS * f->stride);
		f->txfree = calloc(FAB_TX_SLOTS, sizeof(*f->txfree));
		if (!f->txbuf || !f->txfree) {
			ret = DSM_ENOMEM;
			goto fail_ep_setup;
		}
		for (unsigned i = 0; i < FAB_TX_SLOTS; i++)
			f->txfree[i] = f->txbuf + (size_t)i * f->stride;
		f->ntxfree = FAB_TX_SLOTS;
		if (pthread_mutex_init(&f->tx_lock, NULL)) {
			ret = DSM_ESYS;
			goto fail_ep_setup;
		}
		f->tx_lock_init = true;
	}

	DSM__INFO("fabric: provider %s, %s, rank %u of %u, mtu %zu, %d receives posted, %s",
		  f->info->fabric_attr->prov_name, f->name, cfg->rank, cfg->nodes, mtu,
		  f->rx_posted, f->use_inject ? "fi_inject" : "fi_send");
	free(sins);
	*out = &f->x;
	return 0;

	/* Each label is named after the step that failed and undoes every
	 * step before it. */
fail_ep_setup:
	fi_close(&f->ep->fid);
fail_endpoint:
fail_av_insert:
	fi_close(&f->av->fid);
fail_av:
	fi_close(&f->rxcq->fid);
fail_rxcq:
	fi_close(&f->txcq->fid);
fail_txcq:
	fi_close(&f->domain->fid);
fail_domain:
	fi_close(&f->fabric->fid);
fail_fabric:
	fi_freeinfo(f->info);
fail_getinfo:
fail_alloc:
	free(f->txfree);
	free(f->txbuf);
	free(f->unposted);
	free(f->rxbuf);
	free(f->peers);
	free(f);
	free(sins);
	return ret;
}

/*
 * Open the transport (see xport.h). Owns nothing of cfg; *out is destroyed
 * with x->ops->destroy. Errors are logged naming the variable or address.
 * Takes fatal_lock across the libfabric calls (see "fatal signals"): the
 * fatal signals libfabric's libraries took are the program's again.
 */
int dsm__fabric_create(const struct dsm__fabric_cfg *cfg, struct dsm__xport **out)
{
	struct fatal_saved saved;
	int ret;

	if (!cfg || !out || !cfg->nodes || cfg->rank >= cfg->nodes || !cfg->addrs ||
	    cfg->rx_posted < 0)
		return DSM_EINVAL;
	fatal_sigs_save(&saved);
	ret = fab_open(cfg, out);
	fatal_sigs_restore(&saved);
	return ret;
}
