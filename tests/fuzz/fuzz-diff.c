/*
 * Fuzz target for dsm__diff_validate and dsm__diff_apply (dsm/diff.c).
 *
 * The input is a diff as it would arrive at a home. It is validated for
 * page sizes 4096 and 8192 (the header names one page size, so at most one
 * accepts) and applied to a page of each size with known contents:
 *  - apply must agree with validate; a rejected diff leaves the page
 *    byte-for-byte untouched;
 *  - an accepted diff changes exactly the words its runs cover, to the
 *    run's data, and applying it again changes nothing;
 *  - re-encoding the result against the pre-apply copy gives a valid diff,
 *    no longer than the input (only words that really changed), that
 *    applied to the pre-apply copy gives the same page.
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
static uint8_t covered[MAXPS / DSM_DIFF_WORD];
static uint8_t enc[DSM_DIFF_BOUND(MAXPS)];

static void check(int ok)
{
	if (!ok)
		abort();
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | (uint32_t)get16(p + 2) << 16;
}

/* Apply data[0..size) to a page of ps bytes; valid: what validate said. */
static void apply_one(const uint8_t *data, size_t size, size_t ps, int valid)
{
	size_t n = ps / DSM_DIFF_WORD, pos = DSM_DIFF_HDR_SIZE;
	int r, m;

	for (size_t i = 0; i < ps; i++)
		page[i] = (uint8_t)(i * 131 + (i >> 8) + 17);
	memcpy(before, page, ps);
	r = dsm__diff_apply(page, ps, data, size);
	check(r == valid);
	if (r != 0) {
		check(memcmp(page, before, ps) == 0);
		return;
	}

	/* Exactly the covered words changed, to the run data. */
	memset(covered, 0, n);
	for (uint32_t k = 0, nruns = get32(data + 8); k < nruns; k++) {
		size_t start = get16(data + pos), count = get16(data + pos + 2);

		check(count > 0 && start + count <= n);
		check(pos + DSM_DIFF_RUN_HDR_SIZE + count * DSM_DIFF_WORD <= size);
		check(memcmp(page + start * DSM_DIFF_WORD, data + pos + DSM_DIFF_RUN_HDR_SIZE,
			     count * DSM_DIFF_WORD) == 0);
		for (size_t i = start; i < start + count; i++) {
			check(!covered[i]);
			covered[i] = 1;
		}
		pos += DSM_DIFF_RUN_HDR_SIZE + count * DSM_DIFF_WORD;
	}
	check(pos == size);
	for (size_t i = 0; i < n; i++)
		if (!covered[i])
			check(memcmp(page + i * DSM_DIFF_WORD, before + i * DSM_DIFF_WORD,
				     DSM_DIFF_WORD) == 0);

	/* Idempotent. */
	memcpy(again, page, ps);
	check(dsm__diff_apply(again, ps, data, size) == 0);
	check(memcmp(again, page, ps) == 0);

	/* Re-encode: valid, no longer than the input, same result. */
	m = dsm__diff_encode(before, page, ps, enc, sizeof(enc));
	check(m >= DSM_DIFF_HDR_SIZE && (size_t)m <= size);
	check((size_t)m <= dsm__diff_bound(ps));
	check(dsm__diff_validate(enc, (size_t)m, ps) == 0);
	memcpy(again, before, ps);
	check(dsm__diff_apply(again, ps, enc, (size_t)m) == 0);
	check(memcmp(again, page, ps) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int v4 = dsm__diff_validate(data, size, 4096);
	int v8 = dsm__diff_validate(data, size, 8192);

	check(v4 == 0 || v4 == DSM_EPROTO);
	check(v8 == 0 || v8 == DSM_EPROTO);
	check(v4 != 0 || v8 != 0);
	apply_one(data, size, 4096, v4);
	apply_one(data, size, 8192, v8);
	return 0;
}
