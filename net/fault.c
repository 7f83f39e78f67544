/*
 * The fault-injection shim: one more transport, wrapping another (in the
 * manner of libfabric's hook providers). It injects faults on send():
 * drop, corrupt (one bit of a copy), duplicate, reorder (hold until the
 * next datagram on the same link has gone, at most FAULT_REORDER_MAX_NS)
 * and delay (uniform in [A,B] ms, released by progress()). DSM_FAULT
 * describes what to inject; see dsm__fault_parse.
 *
 * Per datagram on a targeted link, in this order: drop (nothing sent; a
 * datagram held for reorder is then released), corrupt (one random bit of
 * a copy; the caller's buffer is never touched), dup (sent twice), reorder
 * (held until the next datagram on the link has gone: reorder=1 swaps
 * every pair; a datagram that releases a held one is not held itself, so
 * reorder=p holds back p/(1+p) of them), delay. Delays are drawn per
 * datagram, so a range [A,B] reorders too.
 *
 * Determinism: every directed link (rank -> dst) has its own splitmix64
 * stream seeded from (seed, src, dst), and every datagram on a targeted
 * link draws exactly FAULT_DRAWS numbers from it whatever is decided, so
 * the k-th datagram on a link always gets the same decisions for a seed.
 *
 * Storage: held datagrams live in a pool of slots allocated at create
 * (FAULT_POOL_MAX slots of mtu bytes, at most FAULT_POOL_BYTES); when it is
 * full the datagram is sent at once instead. Nothing is allocated per
 * datagram and send() never blocks on anything but short mutexes.
 *
 * Statistics: the shim's own x->stats count what really left through the
 * inner transport (tx_dgrams/tx_bytes: every successful inner send,
 * duplicates twice, held datagrams when released, dropped ones never;
 * tx_eagain: DSM_EAGAIN from the inner send), what was delivered by
 * progress() (rx_dgrams/rx_bytes), and the f_* counters of what was
 * injected. The inner transport keeps its own stats in inner->stats.
 *
 * Locking: link->lock protects that link's random stream only; f->lock
 * protects the pool, the heap of held datagrams and every link->held.
 * Order: never both at once. Neither is held while calling the inner
 * transport.
 *
 * Threads: send() from any thread; progress() by one thread at a time,
 * wait_prepare() and next_deadline() on the network thread (the inner's
 * contract, see xport.h).
 */
#include "xport.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define FAULT_POOL_MAX 4096
#define FAULT_POOL_MIN 64
#define FAULT_POOL_BYTES (32u << 20)
#define FAULT_REORDER_MAX_NS (2 * 1000000LL) /* a reordered datagram waits at most 2 ms */
#define FAULT_DELAY_MAX_MS 10000u
#define FAULT_STACK_COPY 2048                /* corrupt copies up to this size on the stack */
#define FAULT_DRAWS 6

/* ---- DSM_FAULT parsing ----------------------------------------------- */

enum { K_DROP, K_DUP, K_CORRUPT, K_REORDER, K_DELAY, K_SEED, K_LINK, K_COUNT };
static const char *const keys[K_COUNT] = {
	[K_DROP] = "drop", [K_DUP] = "dup", [K_CORRUPT] = "corrupt",
	[K_REORDER] = "reorder", [K_DELAY] = "delay_ms", [K_SEED] = "seed",
	[K_LINK] = "link",
};

static int bad(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return DSM_ECONFIG;
}

/* A probability: a finite decimal number in [0,1], nothing around it. */
static int parse_rate(const char *v, double *out, char *err, size_t errlen, const char *key)
{
	char *end;
	double d;

	if (!isdigit((unsigned char)v[0]) && v[0] != '.' && v[0] != '-' && v[0] != '+')
		return bad(err, errlen, "DSM_FAULT: %s='%s' is not a number", key, v);
	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(d))
		return bad(err, errlen, "DSM_FAULT: %s='%s' is not a number", key, v);
	if (d < 0.0 || d > 1.0)
		return bad(err, errlen, "DSM_FAULT: %s=%s is outside [0,1]", key, v);
	*out = d;
	return 0;
}

/* Decimal digits only, into *out (<= max); *end set past them. 0 or -1. */
static int parse_uint(const char *v, const char **end, uint64_t max, uint64_t *out)
{
	uint64_t x = 0;
	const char *p = v;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (x > (max - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*end = p;
	*out = x;
	return 0;
}

static int parse_delay(const char *v, struct dsm__fault_cfg *cfg, char *err, size_t errlen)
{
	const char *p;
	uint64_t a, b;

	if (parse_uint(v, &p, UINT64_MAX, &a))
		goto syntax;
	b = a;
	if (*p == '-' && parse_uint(p + 1, &p, UINT64_MAX, &b))
		goto syntax;
	if (*p)
		goto syntax;
	if (a > b)
		return bad(err, errlen, "DSM_FAULT: delay_ms=%s: the lower bound exceeds the upper", v);
	if (b > FAULT_DELAY_MAX_MS)
		return bad(err, errlen, "DSM_FAULT: delay_ms=%s: at most %u ms", v, FAULT_DELAY_MAX_MS);
	cfg->delay_min_ms = (unsigned)a;
	cfg->delay_max_ms = (unsigned)b;
	return 0;
syntax:
	return bad(err, errlen, "DSM_FAULT: delay_ms='%s' is not A or A-B (milliseconds)", v);
}

static int parse_seed(const char *v, struct dsm__fault_cfg *cfg, char *err, size_t errlen)
{
	const char *p;
	uint64_t x;

	if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X') && isxdigit((unsigned char)v[2])) {
		char *end;

		errno = 0;
		x = strtoull(v + 2, &end, 16);
		if (errno || *end)
			goto bad_seed;
	} else if (parse_uint(v, &p, UINT64_MAX, &x) || *p) {
		goto bad_seed;
	}
	cfg->seed = x;
	cfg->seed_given = 1;
	return 0;
bad_seed:
	return bad(err, errlen, "DSM_FAULT: seed='%s' is not an unsigned 64-bit integer", v);
}

/* One side of a link: '*' (-1) or a rank 0..65535. */
static int parse_end(const char *p, const char **end, int *out)
{
	uint64_t x;

	if (*p == '*') {
		*out = -1;
		*end = p + 1;
		return 0;
	}
	if (parse_uint(p, end, 65535, &x))
		return -1;
	*out = (int)x;
	return 0;
}

/* link=A>B[;C>D...] */
static int parse_links(const char *v, struct dsm__fault_cfg *cfg, char *err, size_t errlen)
{
	const char *p = v;

	for (;;) {
		int src, dst;

		if (cfg->nlinks == (int)DSM__ARRAY_SIZE(cfg->links))
			return bad(err, errlen, "DSM_FAULT: link=%s: more than %zu links", v,
				   DSM__ARRAY_SIZE(cfg->links));
		if (parse_end(p, &p, &src) || *p++ != '>' || parse_end(p, &p, &dst))
			return bad(err, errlen, "DSM_FAULT: link='%s' is not A>B[;C>D...] "
				   "(ranks or '*')", v);
		cfg->links[cfg->nlinks].src = src;
		cfg->links[cfg->nlinks].dst = dst;
		cfg->nlinks++;
		if (!*p)
			return 0;
		if (*p++ != ';' || !*p)
			return bad(err, errlen, "DSM_FAULT: link='%s' is not A>B[;C>D...] "
				   "(ranks or '*')", v);
	}
}

/*
 * Parse a DSM_FAULT string into *cfg (zeroed first). Pure: no logging, no
 * allocation. 0, or DSM_ECONFIG with "DSM_FAULT: ..." naming the key or
 * value at fault in err.
 */
int dsm__fault_parse(const char *spec, struct dsm__fault_cfg *cfg, char *err, size_t errlen)
{
	char buf[1024];
	char *item, *next;
	unsigned seen = 0;

	if (!cfg)
		return DSM_EINVAL;
	memset(cfg, 0, sizeof(*cfg));
	if (!spec || !*spec)
		return bad(err, errlen, "DSM_FAULT: empty");
	if (strlen(spec) >= sizeof(buf))
		return bad(err, errlen, "DSM_FAULT: longer than %zu characters", sizeof(buf) - 1);
	strcpy(buf, spec);

	for (item = buf; item; item = next) {
		char *eq, *val;
		int k, r;

		next = strchr(item, ',');
		if (next)
			*next++ = '\0';
		if (!*item)
			return bad(err, errlen, "DSM_FAULT: empty item in '%s'", spec);
		eq = strchr(item, '=');
		if (!eq)
			return bad(err, errlen, "DSM_FAULT: '%s' is not key=value", item);
		*eq = '\0';
		val = eq + 1;
		for (k = 0; k < K_COUNT; k++)
			if (!strcmp(item, keys[k]))
				break;
		if (k == K_COUNT)
			return bad(err, errlen, "DSM_FAULT: unknown key '%s' (known: drop, dup, "
				   "corrupt, reorder, delay_ms, seed, link)", item);
		if (seen & (1u << k))
			return bad(err, errlen, "DSM_FAULT: duplicate key '%s'", item);
		seen |= 1u << k;
		if (!*val)
			return bad(err, errlen, "DSM_FAULT: empty value for '%s'", item);
		switch (k) {
		case K_DROP:
			r = parse_rate(val, &cfg->drop, err, errlen, item);
			break;
		case K_DUP:
			r = parse_rate(val, &cfg->dup, err, errlen, item);
			break;
		case K_CORRUPT:
			r = parse_rate(val, &cfg->corrupt, err, errlen, item);
			break;
		case K_REORDER:
			r = parse_rate(val, &cfg->reorder, err, errlen, item);
			break;
		case K_DELAY:
			r = parse_delay(val, cfg, err, errlen);
			break;
		case K_SEED:
			r = parse_seed(val, cfg, err, errlen);
			break;
		default:
			r = parse_links(val, cfg, err, errlen);
			break;
		}
		if (r)
			return r;
	}
	return 0;
}

/* ---- the shim ---------------------------------------------------------- */

struct slot {
	int64_t due;       /* CLOCK_MONOTONIC ns at which to send */
	uint64_t seq;      /* insertion order: ties on due go out in this order */
	int heap_pos;      /* index in f->heap, -1 when not queued */
	unsigned dst;
	uint32_t len;
	uint8_t copies;    /* 2 when duplicated */
	uint8_t *data;     /* mtu bytes in f->pool */
};

struct link {
	pthread_mutex_t lock; /* protects rng */
	uint64_t rng;         /* splitmix64 state */
	bool targeted;        /* faults apply to datagrams to this rank */
	int held;             /* slot held for reorder, -1: none; protected by f->lock */
};

struct fault {
	struct dsm__xport x;  /* first */
	struct dsm__xport *inner;
	struct dsm__fault_cfg cfg;
	uint64_t seed;        /* in use (given or from the clock) */
	int64_t delay_min_ns, delay_span_ns;
	unsigned nlinks_init; /* link mutexes initialised */
	struct link *links;   /* [nodes], indexed by destination rank */

	pthread_mutex_t lock; /* protects everything below and links[].held */
	bool lock_init;
	int nslots;
	struct slot *slots;
	uint8_t *pool;
	int *freel;           /* stack of free slot indices */
	int nfree;
	int *heap;            /* min-heap of queued slots by (due, seq) */
	int nheap;
	uint64_t seq;
};

static inline struct fault *to_fault(struct dsm__xport *x)
{
	return (struct fault *)x;
}

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* splitmix64: a tiny, well-mixed stream; one 64-bit state per link. */
static inline uint64_t next64(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ULL;
	return mix64(*s);
}

static inline double unit(uint64_t r)
{
	return (double)(r >> 11) * 0x1.0p-53; /* [0,1) */
}

/* The stream of link src>dst depends only on (seed, src, dst). */
static uint64_t link_seed(uint64_t seed, unsigned src, unsigned dst)
{
	return mix64(seed ^ 0x6a09e667f3bcc909ULL) ^
	       mix64(((uint64_t)src << 32 | dst) + 0x3c6ef372fe94f82bULL);
}

static bool link_targeted(const struct dsm__fault_cfg *cfg, unsigned src, unsigned dst)
{
	if (!cfg->nlinks)
		return true;
	for (int i = 0; i < cfg->nlinks; i++)
		if ((cfg->links[i].src < 0 || (unsigned)cfg->links[i].src == src) &&
		    (cfg->links[i].dst < 0 || (unsigned)cfg->links[i].dst == dst))
			return true;
	return false;
}

struct decision {
	bool drop, corrupt, dup, reorder;
	uint64_t bit;     /* random; bit index = bit % (len * 8) */
	int64_t delay_ns;
};

/* Draw FAULT_DRAWS numbers from the link's stream. Takes link->lock. */
static void decide(struct fault *f, struct link *l, struct decision *d)
{
	uint64_t r[FAULT_DRAWS];

	pthread_mutex_lock(&l->lock);
	for (int i = 0; i < FAULT_DRAWS; i++)
		r[i] = next64(&l->rng);
	pthread_mutex_unlock(&l->lock);
	d->drop = unit(r[0]) < f->cfg.drop;
	d->corrupt = unit(r[1]) < f->cfg.corrupt;
	d->bit = r[2];
	d->dup = unit(r[3]) < f->cfg.dup;
	d->reorder = unit(r[4]) < f->cfg.reorder;
	d->delay_ns = f->delay_min_ns +
		      (f->delay_span_ns ? (int64_t)(r[5] % (uint64_t)(f->delay_span_ns + 1)) : 0);
}

static inline void count(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- pool and heap (f->lock held) ---- */

static bool before(const struct fault *f, int a, int b)
{
	const struct slot *x = &f->slots[a], *y = &f->slots[b];

	return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void heap_set(struct fault *f, int pos, int s)
{
	f->heap[pos] = s;
	f->slots[s].heap_pos = pos;
}

static void sift_up(struct fault *f, int pos)
{
	int s = f->heap[pos];

	while (pos > 0) {
		int parent = (pos - 1) / 2;

		if (!before(f, s, f->heap[parent]))
			break;
		heap_set(f, pos, f->heap[parent]);
		pos = parent;
	}
	heap_set(f, pos, s);
}

static void sift_down(struct fault *f, int pos)
{
	int s = f->heap[pos];

	for (;;) {
		int c = 2 * pos + 1;

		if (c >= f->nheap)
			break;
		if (c + 1 < f->nheap && before(f, f->heap[c + 1], f->heap[c]))
			c++;
		if (!before(f, f->heap[c], s))
			break;
		heap_set(f, pos, f->heap[c]);
		pos = c;
	}
	heap_set(f, pos, s);
}

static void heap_push(struct fault *f, int s, int64_t due)
{
	f->slots[s].due = due;
	f->slots[s].seq = f->seq++;
	heap_set(f, f->nheap++, s);
	sift_up(f, f->nheap - 1);
}

static void heap_remove(struct fault *f, int s)
{
	int pos = f->slots[s].heap_pos;
	int last = f->heap[--f->nheap];

	f->slots[s].heap_pos = -1;
	if (pos == f->nheap)
		return;
	heap_set(f, pos, last);
	sift_down(f, pos);
	sift_up(f, f->slots[last].heap_pos);
}

static int slot_get(struct fault *f)
{
	return f->nfree ? f->freel[--f->nfree] : -1;
}

static void slot_put(struct fault *f, int s)
{
	f->freel[f->nfree++] = s;
}

/* ---- sending ---- */

/* Hand one datagram to the inner transport and count what went out. */
static int pass(struct fault *f, unsigned dst, const uint8_t *buf, size_t len)
{
	int r = f->inner->ops->send(f->inner, dst, buf, len);

	if (r == 0) {
		count(&f->x.stats.tx_dgrams, 1);
		count(&f->x.stats.tx_bytes, len);
	} else if (r == DSM_EAGAIN) {
		count(&f->x.stats.tx_eagain, 1);
	}
	return r;
}

/* Send a slot no longer queued (copies times), then free it. f->lock not held. */
static void release(struct fault *f, int s)
{
	struct slot *sl = &f->slots[s];

	for (int i = 0; i < sl->copies; i++) {
		int r = pass(f, sl->dst, sl->data, sl->len);

		if (r)
			DSM__DEBUG("fault: held datagram to rank %u lost: %s", sl->dst,
				   dsm_strerror(r));
	}
	pthread_mutex_lock(&f->lock);
	slot_put(f, s);
	pthread_mutex_unlock(&f->lock);
}

/*
 * Send with faults. Any thread. Takes the link's lock, then f->lock (never
 * both). Returns what the inner send returned for this datagram (0 when
 * dropped or held).
 */
static int fault_send(struct dsm__xport *x, unsigned dst, const uint8_t *buf, size_t len)
{
	struct fault *f = to_fault(x);
	struct link *l;
	struct decision d;
	uint8_t stack[FAULT_STACK_COPY];
	const uint8_t *out = buf;
	uint8_t *copy = NULL;
	bool hold;
	int h, s = -1, r;

	if (DSM__UNLIKELY(dst >= x->nodes))
		return DSM_EINVAL;
	if (DSM__UNLIKELY(len > x->mtu))
		return DSM_EMSGSIZE;
	l = &f->links[dst];
	if (!l->targeted)
		return pass(f, dst, buf, len);

	decide(f, l, &d);
	if (!len)
		d.corrupt = false;
	pthread_mutex_lock(&f->lock);
	/* A datagram held for reorder goes out right after this one. */
	h = l->held;
	if (h >= 0) {
		heap_remove(f, h);
		l->held = -1;
	}
	if (d.drop) {
		pthread_mutex_unlock(&f->lock);
		count(&x->stats.f_drop, 1);
		if (h >= 0)
			release(f, h);
		return 0;
	}
	hold = d.delay_ns > 0 || (d.reorder && h < 0);
	if (hold || (d.corrupt && len > sizeof(stack)))
		s = slot_get(f);
	if (s >= 0) {
		struct slot *sl = &f->slots[s];

		if (len)
			memcpy(sl->data, buf, len);
		sl->dst = dst;
		sl->len = (uint32_t)len;
		sl->copies = d.dup ? 2 : 1;
		out = copy = sl->data;
	} else if (d.corrupt && len <= sizeof(stack)) {
		memcpy(stack, buf, len);
		out = copy = stack;
	} else {
		d.corrupt = false; /* pool exhausted and too big for the stack */
	}
	if (d.corrupt) {
		uint64_t bit = d.bit % ((uint64_t)len * 8);

		copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		count(&x->stats.f_corrupt, 1);
	}
	if (hold && s >= 0) {
		int64_t now = dsm__now_ns();

		if (d.reorder && h < 0) {
			heap_push(f, s, now + d.delay_ns + FAULT_REORDER_MAX_NS);
			l->held = s;
			count(&x->stats.f_reorder, 1);
		} else {
			heap_push(f, s, now + d.delay_ns);
			count(&x->stats.f_delay, 1);
			if (h >= 0)
				heap_push(f, h, now + d.delay_ns); /* right after s */
		}
		if (d.dup)
			count(&x->stats.f_dup, 1);
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	pthread_mutex_unlock(&f->lock);

	r = pass(f, dst, out, len);
	if (r == 0 && d.dup) {
		count(&x->stats.f_dup, 1);
		pass(f, dst, out, len);
	}
	if (s >= 0) {
		pthread_mutex_lock(&f->lock);
		slot_put(f, s);
		pthread_mutex_unlock(&f->lock);
	}
	if (h >= 0)
		release(f, h);
	return r;
}

/* Earliest due time of a held datagram, INT64_MAX if none. f->lock held. */
static int64_t first_due(const struct fault *f)
{
	return f->nheap ? f->slots[f->heap[0]].due : INT64_MAX;
}

/* Send every held datagram that is due. From progress(). */
static void flush_due(struct fault *f)
{
	int64_t now = dsm__now_ns();

	for (;;) {
		int s;

		pthread_mutex_lock(&f->lock);
		if (first_due(f) > now) {
			pthread_mutex_unlock(&f->lock);
			return;
		}
		s = f->heap[0];
		heap_remove(f, s);
		if (f->links[f->slots[s].dst].held == s)
			f->links[f->slots[s].dst].held = -1;
		pthread_mutex_unlock(&f->lock);
		release(f, s);
	}
}

struct tramp {
	struct fault *f;
	dsm__xport_rx_fn cb;
	void *arg;
};

static void tramp_cb(void *arg, const uint8_t *buf, size_t len)
{
	struct tramp *t = arg;

	count(&t->f->x.stats.rx_dgrams, 1);
	count(&t->f->x.stats.rx_bytes, len);
	t->cb(t->arg, buf, len);
}

/* Release due datagrams, then the inner's progress. One caller at a time. */
static int fault_progress(struct dsm__xport *x, dsm__xport_rx_fn cb, void *arg, int max)
{
	struct fault *f = to_fault(x);
	struct tramp t = { .f = f, .cb = cb, .arg = arg };

	flush_due(f);
	return f->inner->ops->progress(f->inner, tramp_cb, &t, max);
}

/* DSM_EAGAIN while a held datagram is due, else the inner's answer. */
static int fault_wait_prepare(struct dsm__xport *x, int *fd)
{
	struct fault *f = to_fault(x);
	int64_t due;

	pthread_mutex_lock(&f->lock);
	due = first_due(f);
	pthread_mutex_unlock(&f->lock);
	if (due <= dsm__now_ns())
		return DSM_EAGAIN;
	return f->inner->ops->wait_prepare(f->inner, fd);
}

static int64_t fault_next_deadline(struct dsm__xport *x)
{
	struct fault *f = to_fault(x);
	int64_t due, inner = f->inner->ops->next_deadline(f->inner);

	pthread_mutex_lock(&f->lock);
	due = first_due(f);
	pthread_mutex_unlock(&f->lock);
	return DSM__MIN(due, inner);
}

/* Free the shim, discarding held datagrams, and destroy the inner. */
static void fault_destroy(struct dsm__xport *x)
{
	struct fault *f = to_fault(x);

	if (!f)
		return;
	for (unsigned i = 0; i < f->nlinks_init; i++)
		pthread_mutex_destroy(&f->links[i].lock);
	if (f->lock_init)
		pthread_mutex_destroy(&f->lock);
	if (f->inner)
		f->inner->ops->destroy(f->inner);
	free(f->heap);
	free(f->freel);
	free(f->pool);
	free(f->slots);
	free(f->links);
	free(f);
}

static const struct dsm__xport_ops fault_ops = {
	.name = "fault",
	.send = fault_send,
	.progress = fault_progress,
	.wait_prepare = fault_wait_prepare,
	.next_deadline = fault_next_deadline,
	.destroy = fault_destroy,
};

static bool cfg_valid(const struct dsm__fault_cfg *c)
{
	const double r[] = { c->drop, c->dup, c->corrupt, c->reorder };

	for (size_t i = 0; i < DSM__ARRAY_SIZE(r); i++)
		if (!(r[i] >= 0.0 && r[i] <= 1.0))
			return false;
	return c->delay_min_ms <= c->delay_max_ms && c->delay_max_ms <= FAULT_DELAY_MAX_MS &&
	       c->nlinks >= 0 && c->nlinks <= (int)DSM__ARRAY_SIZE(c->links);
}

/* Every rank a link names must exist: link=9>7 on a 2-node job would
 * otherwise be accepted and inject nothing. 0, or DSM_ECONFIG after
 * logging the link and the rank. */
static int check_links(const struct dsm__fault_cfg *c, unsigned nodes)
{
	for (int i = 0; i < c->nlinks; i++) {
		int src = c->links[i].src, dst = c->links[i].dst;
		int bad = src >= (int)nodes ? src : dst >= (int)nodes ? dst : -1;
		char a[8], b[8];

		if (bad < 0)
			continue;
		snprintf(a, sizeof(a), "%d", src);
		snprintf(b, sizeof(b), "%d", dst);
		DSM__ERR("DSM_FAULT: link=%s>%s names rank %d, but the job has %u node%s "
			 "(ranks 0..%u)", src < 0 ? "*" : a, dst < 0 ? "*" : b, bad, nodes,
			 nodes == 1 ? "" : "s", nodes ? nodes - 1 : 0);
		return DSM_ECONFIG;
	}
	return 0;
}

/* The configuration as a DSM_FAULT value (without the seed). */
static void summary(const struct dsm__fault_cfg *c, char *buf, size_t len)
{
	size_t n = 0;

#define ADD(...) \
	do { \
		if (n < len) \
			n += (size_t)snprintf(buf + n, len - n, __VA_ARGS__); \
	} while (0)
	buf[0] = '\0';
	if (c->drop > 0)
		ADD("%sdrop=%g", n ? "," : "", c->drop);
	if (c->dup > 0)
		ADD("%sdup=%g", n ? "," : "", c->dup);
	if (c->corrupt > 0)
		ADD("%scorrupt=%g", n ? "," : "", c->corrupt);
	if (c->reorder > 0)
		ADD("%sreorder=%g", n ? "," : "", c->reorder);
	if (c->delay_max_ms)
		ADD("%sdelay_ms=%u-%u", n ? "," : "", c->delay_min_ms, c->delay_max_ms);
	for (int i = 0; i < c->nlinks; i++) {
		char a[8], b[8];

		snprintf(a, sizeof(a), "%d", c->links[i].src);
		snprintf(b, sizeof(b), "%d", c->links[i].dst);
		ADD("%s%s>%s", i ? ";" : (n ? ",link=" : "link="),
		    c->links[i].src < 0 ? "*" : a, c->links[i].dst < 0 ? "*" : b);
	}
	if (!n)
		ADD("(no faults)");
#undef ADD
}

/*
 * Wrap inner (see xport.h). Owns inner from the call on: destroys it on
 * failure. Prints one line with the configuration and the seed to stderr.
 * DSM_EINVAL (bad cfg), DSM_ECONFIG (a link names a rank beyond
 * inner->nodes; logged), DSM_ENOMEM, DSM_ESYS.
 */
int dsm__fault_create(struct dsm__xport *inner, const struct dsm__fault_cfg *cfg,
		      struct dsm__xport **out)
{
	struct fault *f;
	char line[512], spec[384];
	size_t stride;
	int ret, n;

	if (!inner)
		return DSM_EINVAL;
	if (!cfg || !out || !cfg_valid(cfg)) {
		ret = DSM_EINVAL;
		goto fail_args;
	}
	ret = check_links(cfg, inner->nodes);
	if (ret)
		goto fail_args;
	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (!f) {
		ret = DSM_ENOMEM;
		goto fail_args;
	}
	f->x.ops = &fault_ops;
	f->x.mtu = inner->mtu;
	f->x.nodes = inner->nodes;
	f->x.rank = inner->rank;
	f->cfg = *cfg;
	f->delay_min_ns = (int64_t)cfg->delay_min_ms * 1000000;
	f->delay_span_ns = (int64_t)(cfg->delay_max_ms - cfg->delay_min_ms) * 1000000;
	if (cfg->seed_given) {
		f->seed = cfg->seed;
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		f->seed = mix64((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
			  (uint64_t)getpid();
	}

	stride = (DSM__MAX(inner->mtu, (size_t)1) + 15) & ~(size_t)15;
	f->nslots = (int)DSM__MAX((size_t)FAULT_POOL_MIN,
				  DSM__MIN((size_t)FAULT_POOL_MAX, FAULT_POOL_BYTES / stride));
	f->links = calloc(DSM__MAX(inner->nodes, 1u), sizeof(*f->links));
	f->slots = calloc((size_t)f->nslots, sizeof(*f->slots));
	f->pool = malloc((size_t)f->nslots * stride);
	f->freel = calloc((size_t)f->nslots, sizeof(*f->freel));
	f->heap = calloc((size_t)f->nslots, sizeof(*f->heap));
	if (!f->links || !f->slots || !f->pool || !f->freel || !f->heap) {
		ret = DSM_ENOMEM;
		goto fail_alloc;
	}
	for (int i = 0; i < f->nslots; i++) {
		f->slots[i].data = f->pool + (size_t)i * stride;
		f->slots[i].heap_pos = -1;
		f->freel[i] = f->nslots - 1 - i;
	}
	f->nfree = f->nslots;
	if (pthread_mutex_init(&f->lock, NULL)) {
		ret = DSM_ESYS;
		goto fail_lock;
	}
	f->lock_init = true;
	for (unsigned d = 0; d < inner->nodes; d++) {
		struct link *l = &f->links[d];

		if (pthread_mutex_init(&l->lock, NULL)) {
			ret = DSM_ESYS;
			goto fail_lock;
		}
		f->nlinks_init++;
		l->rng = link_seed(f->seed, inner->rank, d);
		l->targeted = link_targeted(cfg, inner->rank, d);
		l->held = -1;
	}
	f->inner = inner;

	/* Always printed, whatever DSM_LOG says: a failure seen under faults
	 * must be reproducible from the log. One write. */
	summary(cfg, spec, sizeof(spec));
	n = snprintf(line, sizeof(line), "libdsm[%u]: DSM_FAULT active: %s seed=%" PRIu64 "\n",
		     inner->rank, spec, f->seed);
	fwrite(line, 1, DSM__MIN((size_t)n, sizeof(line) - 1), stderr);
	*out = &f->x;
	return 0;

fail_lock:
fail_alloc:
	fault_destroy(&f->x); /* inner not yet attached */
fail_args:
	inner->ops->destroy(inner);
	return ret;
}
