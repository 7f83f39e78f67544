/*
 * Twin/diff encoding of the home-based multiple-writer protocol
 * (DESIGN.md section 3). A node that writes a page keeps a twin (a copy
 * taken at the first write); at a release it sends the page's home the
 * words that differ between the twin and the page, and the home copies
 * them into its master copy.
 *
 * Granularity: 8-byte words. A page size is a multiple of 8 from 8 to
 * DSM_DIFF_MAX_PAGE (64 KiB) bytes; word i is bytes [8*i, 8*i + 8).
 *
 * THE RULE: a diff carries exactly the words that differ between twin and
 * page, never an unchanged word (not even a one-word gap between two runs,
 * which would be 4 bytes cheaper to send than a second run header). Several
 * nodes may write disjoint words of one page between two synchronisations;
 * the home applies their diffs in any order, and an unchanged word sent by
 * one writer would overwrite another writer's change. With this rule, diffs
 * from writers whose changed word sets are disjoint commute.
 * Caveat: the unit is the word. Two nodes writing different bytes of the
 * same 8-byte word both send the whole word and the later one wins.
 *
 * Encoding (all integers little-endian, nothing is cast onto the buffer):
 *
 *  off size field
 *    0   4  magic      DSM_DIFF_MAGIC: bytes 'D' 'D' 'F' '1' (format 1)
 *    4   4  page_size  bytes; must equal the receiver's page size
 *    8   4  nruns      number of runs that follow (0: page unchanged)
 *   12      runs, each:
 *             0   2  start  first word of the run (word index, not bytes)
 *             2   2  count  words in the run, >= 1
 *             4      count * 8 bytes: the new contents of the words, copied
 *                    from the page byte for byte (memory order, no swap)
 *
 * A valid diff has runs in increasing order, each separated from the
 * previous one by at least one word (start > previous start + count; the
 * encoder never emits adjacent runs, it emits one longer run), each inside
 * the page (start + count <= page_size / 8), and no byte after the last
 * run. An unchanged page encodes to the 12-byte header with nruns = 0.
 *
 * Size: 12 + sum(4 + 8 * count). Since runs are separated by unchanged
 * words, the largest diff is one run over the whole page:
 * page_size + 16 = DSM_DIFF_BOUND(page_size); alternating changed and
 * unchanged words give 12 + 12 * ceil(words / 2), never more.
 *
 * All functions are reentrant: no lock, no allocation, no global state.
 * Encode runs on the releasing application thread, apply on the thread
 * that serves the home's incoming diffs.
 */
#ifndef DSM_DSM_DIFF_H
#define DSM_DSM_DIFF_H

#include <stddef.h>
#include <stdint.h>

#define DSM_DIFF_MAGIC 0x31464444u /* "DDF1" in memory order */
#define DSM_DIFF_WORD 8            /* bytes per word */
#define DSM_DIFF_HDR_SIZE 12
#define DSM_DIFF_RUN_HDR_SIZE 4
#define DSM_DIFF_MAX_PAGE 65536u   /* largest page size; 8192 words fit a u16 */
/* Largest encoding of one page of ps bytes (ps valid), for static buffers. */
#define DSM_DIFF_BOUND(ps) ((size_t)(ps) + DSM_DIFF_HDR_SIZE + DSM_DIFF_RUN_HDR_SIZE)

/*
 * Largest encoding dsm__diff_encode can produce for a page of page_size
 * bytes (DSM_DIFF_BOUND), so callers can allocate once; 0 when page_size is
 * not a multiple of 8 in [8, DSM_DIFF_MAX_PAGE].
 */
size_t dsm__diff_bound(size_t page_size);

/*
 * Encode the words of page that differ from twin (both page_size bytes, any
 * alignment) into out[0..cap). The caller normally write-protects the
 * page first; a word written by another thread during the call may or may
 * not be included, but each word sent is one value read once (the diff is
 * well-formed either way). Returns the encoded length (>= 12),
 * DSM_EMSGSIZE when cap is too small (then out[0..cap) may have been
 * written, nothing at or past out + cap), or DSM_EINVAL for a NULL buffer
 * or a page size dsm__diff_bound rejects. A cap of
 * dsm__diff_bound(page_size) always suffices.
 */
int dsm__diff_encode(const void *twin, const void *page, size_t page_size,
		     uint8_t *out, size_t cap);

/*
 * Check that diff[0..len) is a valid encoding (see above) for a page of
 * page_size bytes. Returns 0, DSM_EPROTO when it is not (truncated, bad
 * magic, page size mismatch, zero-length run, runs out of order, overlapping,
 * adjacent or past the page's end, trailing bytes), or DSM_EINVAL for a
 * page size dsm__diff_bound rejects or diff == NULL with len > 0. Never reads
 * past diff + len.
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
