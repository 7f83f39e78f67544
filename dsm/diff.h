/*
 * Twin/diff encoding of the home-based multiple-writer protocol
 * (DESIGN.md section 3). A node that writes a page keeps a twin (a copy
 * taken at the first write); at a release it sends the page's home the
 * bytes that differ between the twin and the page, and the home copies
 * them into its master copy.
 *
 * Granularity: the byte. A page size is a multiple of 8 from 8 to
 * DSM_DIFF_MAX_PAGE (64 KiB) bytes (the encoder compares 8 bytes at a time,
 * the format itself does not care).
 *
 * THE RULE: a diff carries exactly the bytes that differ between twin and
 * page, never an unchanged byte (not even a one-byte gap between two runs,
 * which would often be cheaper to send than a second run header). Several
 * nodes may write different bytes of one page, even of one word, between
 * two synchronisations; the home applies their diffs in any order, and an
 * unchanged byte sent by one writer would overwrite another writer's
 * change. With this rule, diffs from writers whose changed byte sets are
 * disjoint commute. (A byte written back to its twin value is unchanged
 * and not sent: the program wrote it, but from the home's point of view
 * nothing happened.)
 *
 * Encoding, format 2 (all integers little-endian, nothing is cast onto the
 * buffer):
 *
 *  off size field
 *    0   4  magic      DSM_DIFF_MAGIC: bytes 'D' 'D' 'F' '2' (format 2)
 *    4   4  page_size  bytes; must equal the receiver's page size
 *    8   4  nruns      number of runs that follow (0: page unchanged)
 *   12      runs, each:
 *             varint skip  unchanged bytes between the end of the previous
 *                          run (page offset 0 for the first run) and the
 *                          start of this one; >= 1 except for the first run
 *             varint len   bytes in the run, >= 1
 *             len bytes    the new contents, copied from the page
 *
 * A varint is unsigned LEB128: 7 bits per byte, least significant group
 * first, bit 7 set on every byte but the last; 1 to 3 bytes (values below
 * 2^21, which covers 65536), and in its shortest form (no trailing 0x00
 * group: 0x80 0x00 is not a valid 0). Run headers are relative so that the
 * common small run costs 2 header bytes, and a 64 KiB page still works
 * (an offset of 65535 and a length of 65536 both fit 3 bytes).
 *
 * A valid diff has runs in increasing order, each separated from the
 * previous one by at least one byte (skip >= 1; the encoder never emits
 * adjacent runs, it emits one longer run), each non-empty and inside the
 * page (the running offset never passes page_size), every varint in its
 * shortest form, and no byte after the last run. Increasing order and no
 * overlap follow from the relative encoding. An unchanged page encodes to
 * the 12-byte header with nruns = 0. So a set of changed bytes has exactly
 * one valid encoding, the encoder's.
 *
 * Size: 12 + sum(|skip| + |len| + len), |v| the varint's size. The worst
 * case is (nearly) alternating changed and unchanged bytes, 3 bytes per
 * run for 2 page bytes. Bound: each run after the first costs at most 1.5 times the
 * page bytes it spans (its skip >= 1 plus its len: |skip| <= skip and
 * |len| <= (len + 1) / 2), the first at most 1.5 times its span + 1.5
 * (skip 0 still takes one byte); the integer total for an even page size
 * is therefore at most 12 + 1.5 * page_size + 1 = DSM_DIFF_BOUND(page_size),
 * and it is reached (page of 8: bytes 0, 2, 4, 6 and 7 changed give runs of
 * 1, 1, 1 and 2 bytes, 13 bytes of runs). That is 6157 bytes for a 4 KiB
 * page, 98317 for 64 KiB: a diff can be half again larger than the page.
 * Typical sizes: one changed 8-byte word 12 + 2 + 8 = 22 bytes (23 when it
 * starts 128 bytes or more past the previous run); a page entirely
 * rewritten 12 + 1 + 2 + page_size (4111 for 4 KiB).
 *
 * All functions are reentrant: no lock, no allocation, no global state.
 * Encode runs on the releasing application thread, apply on the thread
 * that serves the home's incoming diffs.
 */
#ifndef DSM_DSM_DIFF_H
#define DSM_DSM_DIFF_H

#include <stddef.h>
#include <stdint.h>

#define DSM_DIFF_MAGIC 0x32464444u /* "DDF2" in memory order */
#define DSM_DIFF_WORD 8            /* page sizes are multiples of this */
#define DSM_DIFF_HDR_SIZE 12
#define DSM_DIFF_VARINT_MAX 3      /* bytes of the longest varint */
/* Largest run header: two 3-byte varints (the smallest is 2 bytes). */
#define DSM_DIFF_RUN_HDR_SIZE (2 * DSM_DIFF_VARINT_MAX)
#define DSM_DIFF_MAX_PAGE 65536u   /* largest page size */
/* Largest encoding of one page of ps bytes (ps valid), for static buffers:
 * 12 + 1.5 * ps + 1 (see Size above). */
#define DSM_DIFF_BOUND(ps) \
	((size_t)DSM_DIFF_HDR_SIZE + (size_t)(ps) + (size_t)(ps) / 2 + 1)

/*
 * Largest encoding dsm__diff_encode can produce for a page of page_size
 * bytes (DSM_DIFF_BOUND), so callers can allocate once; 0 when page_size is
 * not a multiple of 8 in [8, DSM_DIFF_MAX_PAGE].
 */
size_t dsm__diff_bound(size_t page_size);

/*
 * Encode the bytes of page that differ from twin (both page_size bytes,
 * any alignment) into out[0..cap). The caller normally write-protects the
 * page first; a byte written by another thread during the call may or may
 * not be included, but each byte sent is a value read once and found to
 * differ from the twin (the diff is well-formed either way). Returns the
 * encoded length (>= 12), DSM_EMSGSIZE when cap is too small (then
 * out[0..cap) may have been written, nothing at or past out + cap), or
 * DSM_EINVAL for a NULL buffer or a page size dsm__diff_bound rejects. A
 * cap of dsm__diff_bound(page_size) always suffices.
 */
int dsm__diff_encode(const void *twin, const void *page, size_t page_size,
		     uint8_t *out, size_t cap);

/*
 * Check that diff[0..len) is a valid encoding (see above) for a page of
 * page_size bytes. Returns 0, DSM_EPROTO when it is not (truncated, bad
 * magic or format, page size mismatch, empty run, adjacent runs, a run past
 * the page's end, a varint too long or not in its shortest form, trailing
 * bytes), or DSM_EINVAL for a page size dsm__diff_bound rejects or
 * diff == NULL with len > 0. Never reads past diff + len.
 */
int dsm__diff_validate(const uint8_t *diff, size_t len, size_t page_size);

/*
 * Validate diff[0..len) as dsm__diff_validate does, and only when it is
 * valid copy its runs into page (page_size bytes; must not overlap diff).
 * Returns 0, or the validation error with the page untouched (DSM_EINVAL
 * also for page == NULL).
 */
int dsm__diff_apply(void *page, size_t page_size, const uint8_t *diff, size_t len);

#endif /* DSM_DSM_DIFF_H */
