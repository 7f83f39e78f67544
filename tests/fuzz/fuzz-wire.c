/*
 * Fuzz target for dsm__wire_decode (net/wire.c).
 *
 * Two modes per input:
 *  - raw: the whole input is a datagram, decoded as it arrived;
 *  - fixed-up: when the first byte is odd, the rest of the input is a
 *    datagram whose CRC is recomputed before decoding, so mutations get
 *    past the CRC to the length, type and flag checks (a random input
 *    almost never carries a right CRC).
 * Each is decoded with several max_payload values. Whenever a decode
 * succeeds, the header is re-encoded over a copy of the payload and must
 * give back the input byte for byte; any other inconsistency aborts.
 *
 * Built with libFuzzer under clang, or with tests/fuzz/replay.c as a
 * corpus replayer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t max_payloads[] = {
	0, 1, 64, 1424, DSM_WIRE_MAX_DGRAM - DSM_WIRE_HDR_SIZE, SIZE_MAX,
};

#define NMAX (sizeof(max_payloads) / sizeof(max_payloads[0]))

static void check(int ok)
{
	if (!ok)
		abort();
}

/* Re-encode a decoded header over a copy of the payload and compare. */
static void check_reencode(const uint8_t *buf, size_t n, const struct dsm__wire_hdr *h)
{
	uint8_t *out = malloc(n);
	size_t m;

	check(out != NULL);
	memset(out, 0xA5, DSM_WIRE_HDR_SIZE);
	memcpy(out + DSM_WIRE_HDR_SIZE, buf + DSM_WIRE_HDR_SIZE, n - DSM_WIRE_HDR_SIZE);
	m = dsm__wire_encode(out, h);
	check(m == n);
	check(memcmp(out, buf, n) == 0);
	free(out);
}

/* Decode buf[0..n) with every max_payload; the results must agree. */
static void decode_all(const uint8_t *buf, size_t n)
{
	int first_ok = -1;

	for (size_t i = 0; i < NMAX; i++) {
		struct dsm__wire_hdr h;
		int r = dsm__wire_decode(buf, n, max_payloads[i], &h);

		check(dsm__wire_strerror(r) != NULL);
		if (r < 0) {
			check(r >= DSM_WIRE_ECRC && r <= DSM_WIRE_ETRUNC);
			/* Once accepted, a larger max_payload accepts too. */
			check(first_ok < 0);
			continue;
		}
		check(r == 0);
		if (first_ok < 0)
			first_ok = (int)i;
		check(n >= DSM_WIRE_HDR_SIZE);
		check(h.len == n - DSM_WIRE_HDR_SIZE);
		check(h.len <= max_payloads[i]);
		check(h.type >= DSM_WIRE_DATA && h.type <= DSM_WIRE_REJECT);
		check(!(h.flags & ~DSM_WIRE_F_ALL));
		check(h.type == DSM_WIRE_DATA ||
		      !(h.flags & (DSM_WIRE_F_FIRST | DSM_WIRE_F_LAST)));
		check(h.type == DSM_WIRE_HELLO || !(h.flags & DSM_WIRE_F_BYE));
		check_reencode(buf, n, &h);
	}
}

/* Rewrite the CRC field to match the rest (header bytes and whatever
 * follows the header, whether or not len agrees). */
static void fix_crc(uint8_t *buf, size_t n)
{
	static const uint8_t zero[4];
	uint32_t c;

	if (n < DSM_WIRE_HDR_SIZE)
		return;
	c = dsm__crc32c(0, buf, 44);
	c = dsm__crc32c(c, zero, 4);
	c = dsm__crc32c(c, buf + DSM_WIRE_HDR_SIZE, n - DSM_WIRE_HDR_SIZE);
	dsm__put_le32(buf + 44, c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode_all(data, size);

	if (size > 0 && (data[0] & 1)) {
		size_t n = size - 1;
		/* Exact size, so an overread is caught by ASan. */
		uint8_t *buf = malloc(n ? n : 1);

		check(buf != NULL);
		memcpy(buf, data + 1, n);
		fix_crc(buf, n);
		decode_all(buf, n);
		free(buf);
	}
	return 0;
}
