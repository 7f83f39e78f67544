/*
 * Fragmentation and reassembly: messages of any size (up to cfg.max_msg)
 * over datagrams of c->pay payload bytes.
 *
 * Framing: a message that fits one datagram is one datagram flagged
 * FIRST|LAST. A longer one starts with a FIRST datagram whose payload
 * begins with the message length (le32) followed by pay - 4 bytes; the
 * following datagrams carry pay bytes each, the last one flagged LAST. A
 * message with no room in the send ring waits, copied, on the peer's
 * pending list and is framed as slots free up (dsm__frag_refill, after an
 * ack or a new incarnation).
 *
 * Reassembly: in sequence order, from the receive ring into the peer's
 * reassembly buffer (mbuf), checked against the announced length (it must
 * need more than one datagram and be at most cfg.max_msg); a message that
 * breaks the framing is counted as malformed and skipped up to the next
 * FIRST. A one-datagram message is delivered straight from the ring.
 *
 * Reassembly memory follows what has arrived, not what is announced (one
 * datagram announcing max_msg bytes must not make us allocate max_msg): the
 * buffer starts at REASM_MIN and doubles as fragments need it, never
 * beyond the announced length, so per peer it is at most
 * max(REASM_MIN, 2 x bytes arrived, REASM_KEEP) and at most max_msg, with
 * a few reallocs per big message. A buffer of at most REASM_KEEP bytes is
 * kept for the next message (no allocation per message in the common
 * case); a larger one is freed when its message is delivered or
 * abandoned, so a rare big message leaves nothing behind.
 *
 * Threads and locks: framing and the pending list run on the sending
 * thread (any thread) with the peer lock held, or on the receiving or
 * timer thread when acks open the window, also under the peer lock.
 * Reassembly and delivery run on the receiving thread (rx_lock held) with
 * no peer lock, so the deliver callback may send.
 */
#include "chan-impl.h"

#include <stdlib.h>
#include <string.h>

#include "le.h"

#define REASM_MIN (64u << 10) /* first buffer of a multi-datagram message */
#define REASM_KEEP (1u << 20) /* larger buffers are not kept between messages */

/* ---- framing ---------------------------------------------------------- */

/* Cursor over a gather list. */
struct cur {
	const struct iovec *iov;
	int n, i;
	size_t off;
};

static void cur_copy(struct cur *k, uint8_t *dst, size_t len)
{
	while (len) {
		const struct iovec *v = &k->iov[k->i];
		size_t take = v->iov_len - k->off;

		if (take > len)
			take = len;
		memcpy(dst, (const uint8_t *)v->iov_base + k->off, take);
		dst += take;
		len -= take;
		k->off += take;
		if (k->off == v->iov_len) {
			k->i++;
			k->off = 0;
		}
	}
}

size_t dsm__frag_count(const struct dsm__chan *c, size_t len)
{
	if (len <= c->pay)
		return 1;
	return 1 + (len - (c->pay - 4) + c->pay - 1) / c->pay;
}

/* Frame the next fragment of a message of total length len, of which off
 * bytes are framed already, into the next ring slot. Returns the new off. */
static size_t frame(struct dsm__chan *c, struct peer *p, struct cur *k, size_t len, size_t off)
{
	struct txslot *s = &p->tx[p->snd_end & WMASK];
	uint8_t *pl = s->buf + DSM_WIRE_HDR_SIZE;
	size_t take;

	s->flags = 0;
	if (off == 0) {
		s->flags |= DSM_WIRE_F_FIRST;
		if (len > c->pay) {
			dsm__put_le32(pl, (uint32_t)len);
			take = c->pay - 4;
			cur_copy(k, pl + 4, take);
			s->len = (uint16_t)c->pay;
			goto done;
		}
	}
	take = len - off < c->pay ? len - off : c->pay;
	cur_copy(k, pl, take);
	s->len = (uint16_t)take;
done:
	off += take;
	if (off == len)
		s->flags |= DSM_WIRE_F_LAST;
	s->state = S_QUEUED;
	s->retx = 0;
	p->snd_end++;
	return off;
}

void dsm__frag_put(struct dsm__chan *c, struct peer *p, const struct iovec *iov, int iovcnt,
		   size_t len)
{
	struct cur k = { iov, iovcnt, 0, 0 };
	size_t off = 0;

	do
		off = frame(c, p, &k, len, off);
	while (off < len);
}

int dsm__frag_queue(struct peer *p, const struct iovec *iov, int iovcnt, size_t len)
{
	struct pmsg *m = malloc(sizeof(*m) + len);
	struct cur k = { iov, iovcnt, 0, 0 };

	if (!m)
		return DSM_ENOMEM;
	m->next = NULL;
	m->len = len;
	m->off = 0;
	cur_copy(&k, m->data, len);
	if (p->pend_tail)
		p->pend_tail->next = m;
	else
		p->pend_head = m;
	p->pend_tail = m;
	return 0;
}

void dsm__frag_refill(struct dsm__chan *c, struct peer *p)
{
	while (p->pend_head && p->snd_end - p->snd_una < WIN) {
		struct pmsg *m = p->pend_head;
		struct iovec v = { m->data + m->off, m->len - m->off };
		struct cur k = { &v, 1, 0, 0 };
		size_t off = m->off;

		/* frame() counts off from the message start; the cursor starts
		 * at the first unframed byte. */
		while (p->snd_end - p->snd_una < WIN && (off < m->len || m->len == 0)) {
			off = frame(c, p, &k, m->len, off);
			if (m->len == 0)
				break;
		}
		m->off = off;
		if (off == m->len) {
			p->pend_head = m->next;
			if (!p->pend_head)
				p->pend_tail = NULL;
			free(m);
		}
	}
}

void dsm__frag_drop_pending(struct peer *p)
{
	struct pmsg *m = p->pend_head;

	while (m) {
		struct pmsg *n = m->next;
		free(m);
		m = n;
	}
	p->pend_head = p->pend_tail = NULL;
}

/* ---- reassembly ------------------------------------------------------- */

/* The peer's reassembly buffer changed from old to now bytes: keep
 * c->st.reasm_bytes (all peers) and its peak. rx_lock held (or no other
 * thread); readers of the statistics may run at any time. */
static void reasm_account(struct dsm__chan *c, size_t old, size_t now)
{
	uint_fast64_t cur, peak;

	if (now < old) {
		atomic_fetch_sub_explicit(&c->st.reasm_bytes, old - now, memory_order_relaxed);
		return;
	}
	cur = atomic_fetch_add_explicit(&c->st.reasm_bytes, now - old, memory_order_relaxed) +
	      (now - old);
	peak = atomic_load_explicit(&c->st.reasm_peak, memory_order_relaxed);
	while (cur > peak && !atomic_compare_exchange_weak_explicit(&c->st.reasm_peak, &peak, cur,
								     memory_order_relaxed,
								     memory_order_relaxed))
		;
}

/* Room for need bytes (need <= p->mexp) of the message being reassembled:
 * double the buffer (from REASM_MIN) until it fits, capped at the
 * announced length. false: no memory. rx_lock held. */
static bool reasm_reserve(struct dsm__chan *c, struct peer *p, size_t need)
{
	size_t cap;
	uint8_t *nb;

	if (DSM__LIKELY(need <= p->mcap))
		return true;
	cap = p->mcap ? p->mcap : REASM_MIN;
	while (cap < need)
		cap *= 2;
	if (cap > p->mexp)
		cap = p->mexp;
	nb = realloc(p->mbuf, cap);
	if (!nb)
		return false;
	p->mbuf = nb;
	reasm_account(c, p->mcap, cap);
	p->mcap = cap;
	return true;
}

/* The message in the buffer is done or abandoned: do not keep a huge
 * buffer for a rare large message. rx_lock held (or no other thread). */
static void reasm_trim(struct dsm__chan *c, struct peer *p)
{
	if (p->mcap > REASM_KEEP) {
		free(p->mbuf);
		reasm_account(c, p->mcap, 0);
		p->mbuf = NULL;
		p->mcap = 0;
	}
}

void dsm__frag_deliver(struct dsm__chan *c, struct peer *p, uint32_t upto)
{
	while (p->dlv_nxt != upto) {
		struct rxslot *r = &p->rx[p->dlv_nxt & WMASK];
		const uint8_t *d = r->buf;
		size_t n = r->len;

		p->dlv_nxt++;
		if (r->flags & DSM_WIRE_F_FIRST) {
			p->skip_msg = false;
			if (p->in_msg) {
				STAT(c, rx_malformed); /* previous message never ended */
				reasm_trim(c, p);
			}
			p->in_msg = false;
			if (r->flags & DSM_WIRE_F_LAST) {
				STAT(c, msgs_delivered);
				STATN(c, bytes_delivered, n);
				c->cbs.deliver(c->cbs.arg, p->rank, d, n);
				continue;
			}
			if (n < 4) {
				p->skip_msg = true;
				STAT(c, rx_malformed);
				continue;
			}
			p->mexp = dsm__get_le32(d);
			if (p->mexp > c->cfg.max_msg || p->mexp <= c->pay - 4) {
				p->skip_msg = true;
				STAT(c, rx_malformed);
				continue;
			}
			d += 4;
			n -= 4;
			p->mlen = 0;
			p->in_msg = true;
		} else if (!p->in_msg) {
			if (!p->skip_msg)
				STAT(c, rx_malformed);
			p->skip_msg = true;
			continue;
		}
		if (p->mlen + n > p->mexp) {
			p->in_msg = false;
			p->skip_msg = true;
			STAT(c, rx_malformed);
			reasm_trim(c, p);
			continue;
		}
		if (!reasm_reserve(c, p, p->mlen + n)) {
			/* cannot hold it: the message is lost; say so */
			DSM__ERR("peer %u: no memory for a %zu-byte message", p->rank, p->mexp);
			p->in_msg = false;
			p->skip_msg = true;
			reasm_trim(c, p);
			continue;
		}
		if (n)
			memcpy(p->mbuf + p->mlen, d, n);
		p->mlen += n;
		if (r->flags & DSM_WIRE_F_LAST) {
			p->in_msg = false;
			if (p->mlen != p->mexp) {
				STAT(c, rx_malformed);
				reasm_trim(c, p);
				continue;
			}
			STAT(c, msgs_delivered);
			STATN(c, bytes_delivered, p->mlen);
			c->cbs.deliver(c->cbs.arg, p->rank, p->mbuf, p->mlen);
			reasm_trim(c, p);
		}
	}
}

void dsm__frag_rx_reset(struct dsm__chan *c, struct peer *p)
{
	p->in_msg = p->skip_msg = false;
	p->mlen = p->mexp = 0;
	reasm_trim(c, p);
}

void dsm__frag_rx_fini(struct dsm__chan *c, struct peer *p)
{
	free(p->mbuf);
	reasm_account(c, p->mcap, 0);
	p->mbuf = NULL;
	p->mcap = 0;
}
