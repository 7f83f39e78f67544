/*
 * Twin/diff encoder and decoder (format and rules in diff.h).
 *
 * Encode skips equal 512-byte chunks with memcmp (glibc's vector code),
 * then equal 64-byte blocks (one vector compare each), then compares word
 * by word: 8-byte loads through memcpy, which the compiler turns into plain
 * loads without breaking aliasing rules. Each differing word is stored to
 * the output as it is compared. Apply validates the whole diff, then does
 * one copy per run (two inline 8-byte copies for runs of 1 or 2 words,
 * memcpy otherwise). No allocation, no lock, no global state.
 */
#include "diff.h"

#include <string.h>

#include "common.h"

_Static_assert(DSM_DIFF_MAX_PAGE / DSM_DIFF_WORD <= UINT16_MAX,
	       "a start word and a run length must fit a u16");
_Static_assert(DSM_DIFF_BOUND(DSM_DIFF_MAX_PAGE) <= INT32_MAX,
	       "an encoded length must fit the int return value");

#define BLOCK_WORDS 8  /* 64 bytes: skipped by block_eq */
#define CHUNK_WORDS 64 /* 512 bytes: skipped by memcmp */

static inline void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* 64 bytes at a and b equal? Branch-free OR of the XORs (vectorised). */
static inline bool block_eq(const uint8_t *a, const uint8_t *b)
{
	uint64_t x = 0;

#pragma GCC unroll 8
	for (int k = 0; k < BLOCK_WORDS; k++)
		x |= load64(a + 8 * k) ^ load64(b + 8 * k);
	return x == 0;
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
	size_t n = page_size / DSM_DIFF_WORD, i = 0, pos = DSM_DIFF_HDR_SIZE;
	uint32_t nruns = 0;

	if (!twin || !page || (!out && cap) || !page_size_ok(page_size))
		return DSM_EINVAL;
	if (cap < DSM_DIFF_HDR_SIZE)
		return DSM_EMSGSIZE;

	while (i < n) {
		size_t start, hdr;
		uint64_t w;

		if (i % CHUNK_WORDS == 0) {
			while (i + CHUNK_WORDS <= n &&
			       memcmp(t + i * DSM_DIFF_WORD, p + i * DSM_DIFF_WORD,
				      CHUNK_WORDS * DSM_DIFF_WORD) == 0)
				i += CHUNK_WORDS;
			if (i == n)
				break;
		}
		if (i % BLOCK_WORDS == 0) {
			while (i + BLOCK_WORDS <= n &&
			       block_eq(t + i * DSM_DIFF_WORD, p + i * DSM_DIFF_WORD))
				i += BLOCK_WORDS;
			if (i == n)
				break;
		}
		w = load64(p + i * DSM_DIFF_WORD);
		if (w == load64(t + i * DSM_DIFF_WORD)) {
			i++;
			continue;
		}
		/*
		 * A run: every word up to the next equal one (never past it),
		 * copied as it is compared, so each word sent is the value
		 * that was found to differ.
		 */
		if (cap - pos < DSM_DIFF_RUN_HDR_SIZE + DSM_DIFF_WORD)
			return DSM_EMSGSIZE;
		start = i;
		hdr = pos;
		pos += DSM_DIFF_RUN_HDR_SIZE;
		for (;;) {
			memcpy(out + pos, &w, sizeof(w));
			pos += DSM_DIFF_WORD;
			if (++i == n)
				break;
			w = load64(p + i * DSM_DIFF_WORD);
			if (w == load64(t + i * DSM_DIFF_WORD))
				break;
			if (cap - pos < DSM_DIFF_WORD)
				return DSM_EMSGSIZE;
		}
		put_le16(out + hdr, (uint16_t)start);
		put_le16(out + hdr + 2, (uint16_t)(i - start));
		nruns++;
	}
	put_le32(out, DSM_DIFF_MAGIC);
	put_le32(out + 4, (uint32_t)page_size);
	put_le32(out + 8, nruns);
	return (int)pos;
}

int dsm__diff_validate(const uint8_t *diff, size_t len, size_t page_size)
{
	size_t n = page_size / DSM_DIFF_WORD, pos = DSM_DIFF_HDR_SIZE, next = 0;
	uint32_t nruns;

	if (!page_size_ok(page_size) || (!diff && len))
		return DSM_EINVAL;
	if (len < DSM_DIFF_HDR_SIZE || get_le32(diff) != DSM_DIFF_MAGIC ||
	    get_le32(diff + 4) != page_size)
		return DSM_EPROTO;
	nruns = get_le32(diff + 8);
	/* Each run takes at least 12 bytes, so a huge nruns fails fast. */
	for (uint32_t r = 0; r < nruns; r++) {
		size_t start, count;

		if (len - pos < DSM_DIFF_RUN_HDR_SIZE)
			return DSM_EPROTO;
		start = get_le16(diff + pos);
		count = get_le16(diff + pos + 2);
		/* next: first word this run may start at (past the previous run
		 * and the unchanged word that must separate them). */
		if (count == 0 || start < next || start >= n || count > n - start)
			return DSM_EPROTO;
		pos += DSM_DIFF_RUN_HDR_SIZE;
		if (len - pos < count * DSM_DIFF_WORD)
			return DSM_EPROTO;
		pos += count * DSM_DIFF_WORD;
		next = start + count + 1;
	}
	return pos == len ? 0 : DSM_EPROTO;
}

int dsm__diff_apply(void *page, size_t page_size, const uint8_t *diff, size_t len)
{
	uint8_t *p = page;
	size_t pos = DSM_DIFF_HDR_SIZE;
	uint32_t nruns;
	int r;

	if (!page)
		return DSM_EINVAL;
	r = dsm__diff_validate(diff, len, page_size);
	if (r < 0)
		return r;
	nruns = get_le32(diff + 8);
	for (uint32_t k = 0; k < nruns; k++) {
		size_t bytes = (size_t)get_le16(diff + pos + 2) * DSM_DIFF_WORD;
		const uint8_t *src = diff + pos + DSM_DIFF_RUN_HDR_SIZE;
		uint8_t *dst = p + (size_t)get_le16(diff + pos) * DSM_DIFF_WORD;

		if (bytes <= 2 * DSM_DIFF_WORD) {
			/* 1 or 2 words (scattered writes): first and last word,
			 * inline; for one word they are the same. */
			memcpy(dst, src, DSM_DIFF_WORD);
			memcpy(dst + bytes - DSM_DIFF_WORD, src + bytes - DSM_DIFF_WORD,
			       DSM_DIFF_WORD);
		} else {
			memcpy(dst, src, bytes);
		}
		pos += DSM_DIFF_RUN_HDR_SIZE + bytes;
	}
	return 0;
}
