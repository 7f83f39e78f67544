/*
 * Little-endian codec helpers: the one place that turns integers into wire
 * bytes and back, for the formats that cannot go through the IDL (the
 * datagram header in net/wire.c, the RPC frame header in net/rpc.c, the
 * diff header in dsm/diff.c, a stream's length prefix) and for the codecs
 * net/rpcgen.py generates. Built on glibc's <endian.h> and memcpy, so the
 * pointers need no alignment and the compiler emits one load or store.
 * Pure functions: thread-safe, no state.
 */
#ifndef DSM_COMMON_LE_H
#define DSM_COMMON_LE_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#ifndef le32toh
#error "common/le.h needs <endian.h>'s BSD names: build with -D_GNU_SOURCE (or _DEFAULT_SOURCE)"
#endif

static inline void dsm__put_le16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void dsm__put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void dsm__put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static inline uint16_t dsm__get_le16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline uint32_t dsm__get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline uint64_t dsm__get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

#endif /* DSM_COMMON_LE_H */
