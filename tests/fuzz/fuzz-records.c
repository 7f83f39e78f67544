/*
 * Fuzz target for the record codecs net/rpcgen.py generates (records have
 * no procedure table, so this target keeps its own): the records of
 * tests/unit/rpcgen-test.rpc (every field kind, the diffs batch item) and
 * of boot/boot.rpc (the DSM_BOOTSTRAP rendezvous, read from a TCP port
 * anyone can connect to).
 * The first input byte chooses a record and a mode:
 *     sel = byte % (2 * NRECS), record = recs[sel / 2],
 *     even: decode the rest as exactly one record,
 *     odd:  walk the rest as a sequence with decode_next;
 * records are only ever appended to the table, so a corpus input keeps its
 * meaning. decode must return 0 or DSM_EPROTO, and an accepted record must
 * be canonical: size() equals the bytes it took, encode() with exactly
 * that capacity writes the same bytes, one byte less gives DSM_EMSGSIZE.
 * A walk must advance by 1 to SIZE_MAX bytes per record and end with 0 at
 * the end or DSM_EPROTO with the position unmoved (and decode must then
 * reject the rest too). Any violation calls abort() (a test program).
 * Structs and buffers have their exact sizes so ASan sees any overrun.
 *
 * Built with libFuzzer under clang (-Dfuzz), otherwise with replay.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "boot_rpc.h"
#include "rtest_rpc.h"

struct rec {
	size_t struct_size, size_max;
	size_t (*size)(const void *m);
	int (*encode)(const void *m, uint8_t *buf, size_t cap);
	int (*decode)(void *m, const uint8_t *buf, size_t len);
	int (*next)(void *m, const uint8_t **p, const uint8_t *end);
};

/* Type-erased forms of one record's codecs (no function pointer casts). */
#define WRAP(R)                                                                 \
	static size_t R##_size_v(const void *m)                                 \
	{                                                                       \
		return dsm_rpc_##R##_size(m);                                   \
	}                                                                       \
	static int R##_encode_v(const void *m, uint8_t *buf, size_t cap)        \
	{                                                                       \
		return dsm_rpc_##R##_encode(m, buf, cap);                       \
	}                                                                       \
	static int R##_decode_v(void *m, const uint8_t *buf, size_t len)        \
	{                                                                       \
		return dsm_rpc_##R##_decode(m, buf, len);                       \
	}                                                                       \
	static int R##_next_v(void *m, const uint8_t **p, const uint8_t *end)   \
	{                                                                       \
		return dsm_rpc_##R##_decode_next(m, p, end);                    \
	}
#define REC(R, UP)                                                              \
	{ sizeof(struct dsm_rpc_##R), DSM_RPC_##UP##_SIZE_MAX, R##_size_v,      \
	  R##_encode_v, R##_decode_v, R##_next_v }

WRAP(rt_diff_item)
WRAP(rt_all)
WRAP(rt_byte)
WRAP(boot_hdr)
WRAP(boot_hello)
WRAP(boot_list)
WRAP(boot_addr)
WRAP(boot_error)

/* Append only (see above). */
static const struct rec recs[] = {
	REC(rt_diff_item, RT_DIFF_ITEM),
	REC(rt_all, RT_ALL),
	REC(rt_byte, RT_BYTE),
	REC(boot_hdr, BOOT_HDR),     /* sel 6, 7 */
	REC(boot_hello, BOOT_HELLO), /* sel 8, 9 */
	REC(boot_list, BOOT_LIST),   /* sel 10, 11 */
	REC(boot_addr, BOOT_ADDR),   /* sel 12, 13 */
	REC(boot_error, BOOT_ERROR), /* sel 14, 15 */
};
#define NRECS (sizeof(recs) / sizeof(recs[0]))

/* m was decoded from body[0, len): it must encode to exactly those bytes. */
static void check_canonical(const struct rec *r, const void *m, const uint8_t *body, size_t len)
{
	uint8_t *out;
	int k;

	if (r->size(m) != len || len == 0 || len > r->size_max)
		abort();
	out = malloc(len);
	if (!out)
		abort();
	k = r->encode(m, out, len);
	if (k < 0 || (size_t)k != len || memcmp(out, body, len) != 0)
		abort();
	if (r->encode(m, out, len - 1) != DSM_EMSGSIZE)
		abort();
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct rec *r;
	const uint8_t *body, *p, *end;
	size_t len;
	unsigned sel;
	void *m;
	int e;

	if (size < 1)
		return 0;
	sel = data[0] % (2 * NRECS);
	r = &recs[sel / 2];
	body = data + 1;
	len = size - 1;
	m = malloc(r->struct_size);
	if (!m)
		abort();
	if (!(sel & 1)) {
		e = r->decode(m, body, len);
		if (e == 0)
			check_canonical(r, m, body, len);
		else if (e != DSM_EPROTO)
			abort();
		free(m);
		return 0;
	}
	p = body;
	end = body + len;
	for (;;) {
		const uint8_t *at = p;

		e = r->next(m, &p, end);
		if (e == 1) {
			if (p <= at || p > end)
				abort();
			check_canonical(r, m, at, (size_t)(p - at));
			continue;
		}
		if (p != at)
			abort();
		if (e == 0 && p != end)
			abort();
		if (e != 0 && (e != DSM_EPROTO || r->decode(m, p, (size_t)(end - p)) != DSM_EPROTO))
			abort();
		break;
	}
	free(m);
	return 0;
}
