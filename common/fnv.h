/*
 * FNV-1a (Fowler/Noll/Vo), 32 and 64 bits: the library's one
 * non-cryptographic hash of text, for values every node must compute alike:
 * the default cluster id from DSM_PEERS (net/net.c) or from a PMIx
 * namespace, and the bootstrap's job fingerprint. These outputs are compared
 * between nodes, so they are part of the protocol: a change splits jobs of
 * mixed builds. Pure functions: thread-safe, no state.
 */
#ifndef DSM_COMMON_FNV_H
#define DSM_COMMON_FNV_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DSM__FNV1A32_INIT 2166136261u             /* offset basis */
#define DSM__FNV1A64_INIT 14695981039346656037ull

/* Continue hash h over the n bytes at p (start with DSM__FNV1A32_INIT). */
static inline uint32_t dsm__fnv1a32(uint32_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 16777619u;
	}
	return h;
}

/* Continue hash h over the n bytes at p (start with DSM__FNV1A64_INIT). */
static inline uint64_t dsm__fnv1a64(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* The 32-bit hash of the string s (without its NUL). */
static inline uint32_t dsm__fnv1a32_str(const char *s)
{
	return dsm__fnv1a32(DSM__FNV1A32_INIT, s, strlen(s));
}

#endif /* DSM_COMMON_FNV_H */
