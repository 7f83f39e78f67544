/*
 * Twin/diff encoder and decoder (format and rules in diff.h).
 *
 * Encode works on 64-byte blocks. While no run is open it skips equal
 * 512-byte chunks with memcmp (glibc's vector code). A block is reduced to
 * a 64-bit mask, bit k set when byte k differs: with SSE2, four 16-byte
 * compares and movemasks; otherwise eight 8-byte XORs, each folded to one
 * bit per byte. Runs are then read off the mask with count-trailing-zeros,
 * so the work is per run, not per byte. The page bytes of a block with a
 * difference are copied once into a local buffer, and the mask and the
 * bytes sent both come from that copy: each byte sent is the value that
 * was found to differ, even if another thread writes the page meanwhile.
 *
 * A run's length is only known when it ends, and its varint precedes the
 * data: one byte is reserved for it, and the data written so far is moved
 * up by one byte when the run reaches 128 bytes and again at 16384. The
 * first move shifts at most 127 bytes; the second happens only for runs of
 * 16 KiB or more. Cheaper than reserving 3 bytes and moving every short
 * run back, or than a second pass over the page to find the runs' ends
 * (which would read the page twice).
 *
 * Apply validates the whole diff, then copies each run. No allocation, no
 * lock, no global state.
 */
#include "diff.h"

#include <string.h>

#include "common.h"
#include "le.h"

#if defined(__SSE2__) && !defined(DSM_DIFF_SCALAR)
#include <emmintrin.h>
#define DIFF_SSE2 1
#endif

_Static_assert(DSM_DIFF_MAX_PAGE < (1u << (7 * DSM_DIFF_VARINT_MAX)),
	       "a skip and a run length must fit the longest varint");
_Static_assert(DSM_DIFF_BOUND(DSM_DIFF_MAX_PAGE) <= INT32_MAX,
	       "an encoded length must fit the int return value");

#define BLOCK 64  /* bytes per mask */
#define CHUNK 512 /* bytes skipped by one memcmp */

static inline size_t varint_size(size_t v)
{
	return v < (1u << 7) ? 1 : v < (1u << 14) ? 2 : 3;
}

/* Write v (< 2^21) as a varint of exactly n = varint_size(v) bytes. */
static inline void put_varint(uint8_t *p, size_t v, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		p[i] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n - 1] = (uint8_t)v;
}

/*
 * Read a varint from p[0..avail): returns its size, or 0 when it is
 * truncated, longer than DSM_DIFF_VARINT_MAX bytes or not in its shortest
 * form. Reads at most avail bytes.
 */
static inline size_t get_varint(const uint8_t *p, size_t avail, size_t *v)
{
	size_t x = 0;

	if (DSM__LIKELY(avail && p[0] < 0x80)) { /* the common 1-byte case */
		*v = p[0];
		return 1;
	}

	for (size_t i = 0; i < DSM_DIFF_VARINT_MAX && i < avail; i++) {
		x |= (size_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			if (i > 0 && p[i] == 0)
				return 0; /* 0x80 0x00: an overlong form */
			*v = x;
			return i + 1;
		}
	}
	return 0;
}

/*
 * Copy n bytes, 1 <= n <= 64, with at most two fixed-size copies that
 * overlap in the middle: constant-size memcpy compiles to plain loads and
 * stores, where a variable size is a call. Writes exactly dst[0..n).
 */
static inline void copy_small(uint8_t *dst, const uint8_t *src, size_t n)
{
	if (n >= 32) {
		memcpy(dst, src, 32);
		memcpy(dst + n - 32, src + n - 32, 32);
	} else if (n >= 16) {
		memcpy(dst, src, 16);
		memcpy(dst + n - 16, src + n - 16, 16);
	} else if (n >= 8) {
		memcpy(dst, src, 8);
		memcpy(dst + n - 8, src + n - 8, 8);
	} else if (n >= 4) {
		memcpy(dst, src, 4);
		memcpy(dst + n - 4, src + n - 4, 4);
	} else {
		/* 1 to 3 bytes: first, middle, last (some the same byte). */
		dst[0] = src[0];
		dst[n / 2] = src[n / 2];
		dst[n - 1] = src[n - 1];
	}
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* x: one word's XOR, byte order fixed by le64toh() (memory byte k in bits
 * 8k..8k+7). Returns 8 bits, bit k set when byte k of x is non-zero. */
static inline uint64_t byte_mask(uint64_t x)
{
	const uint64_t low7 = 0x7f7f7f7f7f7f7f7full;

	/* Bit 7 of each byte: set when the byte is non-zero (adding 0x7f to
	 * its low 7 bits carries into bit 7 and never out of the byte). Then
	 * gather the eight bits into the top byte of the product: the terms
	 * land on distinct bits, so nothing carries. */
	x = (((x & low7) + low7) | x) & ~low7;
	return ((x >> 7) * 0x0102040810204080ull) >> 56;
}

/*
 * Mask of the bytes that differ in the words [0, nwords) at t and p
 * (nwords <= 8), copying p's words into buf as they are compared.
 */
static inline uint64_t words_mask(const uint8_t *t, const uint8_t *p, uint8_t *buf,
				  size_t nwords)
{
	uint64_t x[BLOCK / 8], any = 0, m = 0;

	for (size_t k = 0; k < nwords; k++) {
		uint64_t w = load64(p + 8 * k);

		memcpy(buf + 8 * k, &w, 8);
		x[k] = le64toh(w) ^ le64toh(load64(t + 8 * k));
		any |= x[k];
	}
	if (!any)
		return 0;
	for (size_t k = 0; k < nwords; k++)
		m |= byte_mask(x[k]) << (8 * k);
	return m;
}

#ifdef DIFF_SSE2
/* Mask of the differing bytes of one 64-byte block. p's bytes are stored
 * to buf only when some differ: an equal block sends nothing. */
static inline uint64_t block_mask(const uint8_t *t, const uint8_t *p, uint8_t *buf)
{
	__m128i p0 = _mm_loadu_si128((const __m128i *)p);
	__m128i p1 = _mm_loadu_si128((const __m128i *)(p + 16));
	__m128i p2 = _mm_loadu_si128((const __m128i *)(p + 32));
	__m128i p3 = _mm_loadu_si128((const __m128i *)(p + 48));
	uint64_t eq;

	eq = (uint64_t)(uint16_t)_mm_movemask_epi8(
		_mm_cmpeq_epi8(p0, _mm_loadu_si128((const __m128i *)t)));
	eq |= (uint64_t)(uint16_t)_mm_movemask_epi8(
		_mm_cmpeq_epi8(p1, _mm_loadu_si128((const __m128i *)(t + 16)))) << 16;
	eq |= (uint64_t)(uint16_t)_mm_movemask_epi8(
		_mm_cmpeq_epi8(p2, _mm_loadu_si128((const __m128i *)(t + 32)))) << 32;
	eq |= (uint64_t)(uint16_t)_mm_movemask_epi8(
		_mm_cmpeq_epi8(p3, _mm_loadu_si128((const __m128i *)(t + 48)))) << 48;
	if (eq == UINT64_MAX)
		return 0;
	_mm_storeu_si128((__m128i *)buf, p0);
	_mm_storeu_si128((__m128i *)(buf + 16), p1);
	_mm_storeu_si128((__m128i *)(buf + 32), p2);
	_mm_storeu_si128((__m128i *)(buf + 48), p3);
	return ~eq;
}
#else
static inline uint64_t block_mask(const uint8_t *t, const uint8_t *p, uint8_t *buf)
{
	return words_mask(t, p, buf, BLOCK / 8);
}
#endif

/*
 * Encoder state. out[0..pos) is written; while a run is open, its len
 * varint is reserved at out[hdr..hdr + lbytes) (lbytes ==
 * varint_size(len) once len > 0) and its len bytes of data follow.
 */
struct enc {
	uint8_t *out;
	size_t cap, pos;
	size_t hdr, lbytes, len; /* the open run */
	size_t cur;              /* page offset past the last byte sent */
	uint32_t nruns;
	bool open;
};

/* Open a run at page offset start (> e->cur unless it is the first run). */
static inline int run_open(struct enc *e, size_t start)
{
	size_t skip = start - e->cur, n = varint_size(skip);

	/* The skip, the len byte and at least one data byte. */
	if (e->cap - e->pos < n + 2)
		return DSM_EMSGSIZE;
	put_varint(e->out + e->pos, skip, n);
	e->hdr = e->pos + n;
	e->pos = e->hdr + 1;
	e->lbytes = 1;
	e->len = 0;
	e->cur = start;
	e->open = true;
	return 0;
}

/* Append src[0..n), 1 <= n <= 64, to the open run, widening its len
 * varint if needed. */
static inline int run_add(struct enc *e, const uint8_t *src, size_t n)
{
	size_t len = e->len + n, grow = varint_size(len) - e->lbytes;

	if (e->cap - e->pos < n + grow)
		return DSM_EMSGSIZE;
	if (DSM__UNLIKELY(grow)) {
		uint8_t *data = e->out + e->hdr + e->lbytes;

		memmove(data + grow, data, e->len);
		e->lbytes += grow;
		e->pos += grow;
	}
	copy_small(e->out + e->pos, src, n);
	e->pos += n;
	e->len = len;
	e->cur += n;
	return 0;
}

static inline void run_close(struct enc *e)
{
	put_varint(e->out + e->hdr, e->len, e->lbytes);
	e->nruns++;
	e->open = false;
}

/*
 * The block of nb bytes (<= 64) at page offset base has mask m (bit k: byte
 * k differs; no bit at or past nb) and its page bytes in buf: extend, close
 * and open runs. A run still open at the end continues into the next block.
 */
static inline int block_runs(struct enc *e, size_t base, uint64_t m, const uint8_t *buf,
			     size_t nb)
{
	size_t k = 0;
	int r;

	while (k < nb) {
		uint64_t rest = m >> k, inv;
		size_t n;

		if (!e->open) {
			if (!rest)
				break;
			n = (size_t)__builtin_ctzll(rest);
			k += n;
			rest >>= n;
			r = run_open(e, base + k);
			if (r < 0)
				return r;
		}
		/* Differing bytes from k on; ~rest has ones above bit 63 - k, so
		 * it is 0 only when all 64 bytes differ. */
		inv = ~rest;
		n = inv ? (size_t)__builtin_ctzll(inv) : BLOCK;
		if (n) {
			r = run_add(e, buf + k, n);
			if (r < 0)
				return r;
			k += n;
		}
		if (k < nb)
			run_close(e); /* byte k is unchanged */
	}
	return 0;
}

static bool page_size_ok(size_t page_size)
{
	return page_size >= DSM_DIFF_WORD && page_size <= DSM_DIFF_MAX_PAGE &&
	       page_size % DSM_DIFF_WORD == 0;
}

size_t dsm__diff_bound(size_t page_size)
{
	return page_size_ok(page_size) ? DSM_DIFF_BOUND(page_size) : 0;
}

int dsm__diff_encode(const void *twin, const void *page, size_t page_size,
		     uint8_t *out, size_t cap)
{
	const uint8_t *t = twin, *p = page;
	struct enc e = { .out = out, .cap = cap, .pos = DSM_DIFF_HDR_SIZE };
	uint8_t buf[BLOCK];
	size_t off = 0;
	int r;

	if (!twin || !page || (!out && cap) || !page_size_ok(page_size))
		return DSM_EINVAL;
	if (cap < DSM_DIFF_HDR_SIZE)
		return DSM_EMSGSIZE;

	while (off < page_size) {
		size_t nb = DSM__MIN((size_t)BLOCK, page_size - off);
		uint64_t m;

		if (!e.open && off % CHUNK == 0) {
			while (off + CHUNK <= page_size && memcmp(t + off, p + off, CHUNK) == 0)
				off += CHUNK;
			if (off == page_size)
				break;
			nb = DSM__MIN((size_t)BLOCK, page_size - off);
		}
		if (nb == BLOCK)
			m = block_mask(t + off, p + off, buf);
		else
			m = words_mask(t + off, p + off, buf, nb / 8); /* page tail */
		if (m || e.open) {
			r = block_runs(&e, off, m, buf, nb);
			if (r < 0)
				return r;
		}
		off += nb;
	}
	if (e.open)
		run_close(&e);
	dsm__put_le32(out, DSM_DIFF_MAGIC);
	dsm__put_le32(out + 4, (uint32_t)page_size);
	dsm__put_le32(out + 8, e.nruns);
	return (int)e.pos;
}

/*
 * Walk the runs of a diff whose header is valid. With page == NULL, check
 * every run and return 0 or DSM_EPROTO; with a page, the diff has been
 * checked: copy the runs.
 */
static int walk(const uint8_t *diff, size_t len, size_t page_size, uint8_t *page)
{
	size_t pos = DSM_DIFF_HDR_SIZE, cur = 0;
	uint32_t nruns = dsm__get_le32(diff + 8);

	/* Each run takes at least 3 bytes, so a huge nruns fails fast. */
	for (uint32_t k = 0; k < nruns; k++) {
		size_t skip, n, rl;

		n = get_varint(diff + pos, len - pos, &skip);
		/* cur: offset past the previous run; skip 0 is only allowed
		 * for the first run, and a run needs a byte in the page. */
		if (!n || (k > 0 && skip == 0) || skip >= page_size - cur)
			return DSM_EPROTO;
		pos += n;
		cur += skip;
		n = get_varint(diff + pos, len - pos, &rl);
		if (!n || rl == 0 || rl > page_size - cur)
			return DSM_EPROTO;
		pos += n;
		if (len - pos < rl)
			return DSM_EPROTO;
		if (page) {
			if (rl <= BLOCK)
				copy_small(page + cur, diff + pos, rl);
			else
				memcpy(page + cur, diff + pos, rl);
		}
		pos += rl;
		cur += rl;
	}
	return pos == len ? 0 : DSM_EPROTO;
}

int dsm__diff_validate(const uint8_t *diff, size_t len, size_t page_size)
{
	if (!page_size_ok(page_size) || (!diff && len))
		return DSM_EINVAL;
	if (len < DSM_DIFF_HDR_SIZE || dsm__get_le32(diff) != DSM_DIFF_MAGIC ||
	    dsm__get_le32(diff + 4) != page_size)
		return DSM_EPROTO;
	return walk(diff, len, page_size, NULL);
}

int dsm__diff_apply(void *page, size_t page_size, const uint8_t *diff, size_t len)
{
	int r;

	if (!page)
		return DSM_EINVAL;
	r = dsm__diff_validate(diff, len, page_size);
	if (r < 0)
		return r;
	return walk(diff, len, page_size, page);
}
