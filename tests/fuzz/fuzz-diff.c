/*
 * Fuzz target for dsm__diff_validate and dsm__diff_apply (dsm/diff.c),
 * format 2 (byte runs, varint headers).
 *
 * The input is a diff as it would arrive at a home. It is validated for
 * page sizes 8, 4096 and 8192 (the header names one page size, so at most
 * one accepts) and applied to a page of each size with known contents:
 *  - apply must agree with validate; a rejected diff leaves the page
 *    byte-for-byte untouched;
 *  - an accepted diff, parsed here independently, has in-page, non-empty,
 *    non-adjacent runs with shortest varints and nothing after them; apply
 *    changes exactly the bytes its runs cover, to the run's data, and
 *    applying it again changes nothing;
 *  - re-encoding the result against the pre-apply copy gives a valid diff
 *    within the bound that sends exactly the bytes that changed (a subset
 *    of the input's, whose bytes may have held their old value) and,
 *    applied to the pre-apply copy, gives the same page; when every byte
 *    the input covers really changed, the re-encoding is the input itself
 *    (one encoding per change set).
 * Any inconsistency aborts.
 *
 * Built with libFuzzer under clang, or with tests/fuzz/replay.c as a
 * corpus replayer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "dsm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXPS 8192

static uint8_t page[MAXPS], before[MAXPS], again[MAXPS];
static uint8_t covered[MAXPS];
static uint8_t enc[DSM_DIFF_BOUND(MAXPS)];

static void check(int ok)
{
	if (!ok)
		abort();
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Independent LEB128 reader for an accepted diff: at most 3 bytes, in
 * bounds, shortest form (checked, not trusted). */
static size_t get_var(const uint8_t *p, size_t avail, size_t *n)
{
	size_t v = 0;

	for (size_t i = 0; i < 3; i++) {
		check(i < avail);
		v |= (size_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			check(i == 0 || p[i] != 0);
			*n = i + 1;
			return v;
		}
	}
	check(0);
	return 0;
}

/* Apply data[0..size) to a page of ps bytes; valid: what validate said. */
static void apply_one(const uint8_t *data, size_t size, size_t ps, int valid)
{
	size_t pos = 12, cur = 0;
	int r, m, all_changed = 1;

	for (size_t i = 0; i < ps; i++)
		page[i] = (uint8_t)(i * 131 + (i >> 8) + 17);
	memcpy(before, page, ps);
	r = dsm__diff_apply(page, ps, data, size);
	check(r == valid);
	if (r != 0) {
		check(memcmp(page, before, ps) == 0);
		return;
	}

	/* Exactly the covered bytes changed, to the run data. */
	check(size >= 12 && get32(data + 4) == ps);
	memset(covered, 0, ps);
	for (uint32_t k = 0, nruns = get32(data + 8); k < nruns; k++) {
		size_t n, skip, len;

		skip = get_var(data + pos, size - pos, &n);
		pos += n;
		len = get_var(data + pos, size - pos, &n);
		pos += n;
		check(k == 0 || skip > 0);
		check(len > 0 && cur + skip + len <= ps);
		cur += skip;
		check(len <= size - pos);
		check(memcmp(page + cur, data + pos, len) == 0);
		memset(covered + cur, 1, len);
		for (size_t i = cur; i < cur + len; i++)
			if (before[i] == data[pos + i - cur])
				all_changed = 0;
		cur += len;
		pos += len;
	}
	check(pos == size);
	for (size_t i = 0; i < ps; i++)
		if (!covered[i])
			check(page[i] == before[i]);

	/* Idempotent. */
	memcpy(again, page, ps);
	check(dsm__diff_apply(again, ps, data, size) == 0);
	check(memcmp(again, page, ps) == 0);

	/* Re-encode: valid, bounded, exactly the changed bytes, same result. */
	m = dsm__diff_encode(before, page, ps, enc, sizeof(enc));
	check(m >= 12 && (size_t)m <= dsm__diff_bound(ps));
	check(dsm__diff_validate(enc, (size_t)m, ps) == 0);
	memcpy(again, before, ps);
	check(dsm__diff_apply(again, ps, enc, (size_t)m) == 0);
	check(memcmp(again, page, ps) == 0);
	if (all_changed)
		check((size_t)m == size && memcmp(enc, data, size) == 0);
	else
		check((size_t)m != size || memcmp(enc, data, size) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t ps[] = { 8, 4096, 8192 };
	int v[3], accepted = 0;

	for (size_t k = 0; k < 3; k++) {
		v[k] = dsm__diff_validate(data, size, ps[k]);
		check(v[k] == 0 || v[k] == DSM_EPROTO);
		accepted += v[k] == 0;
	}
	check(accepted <= 1);
	for (size_t k = 0; k < 3; k++)
		apply_one(data, size, ps[k], v[k]);
	return 0;
}
