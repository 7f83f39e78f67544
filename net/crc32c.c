/*
 * CRC32C (Castagnoli): a slicing-by-8 table implementation that always
 * works, an SSE4.2 one (x86-64 only), and dsm__crc32c, which picks the
 * fastest once, on its first call. See crc32c.h.
 *
 * Thread-safe: the tables are built under pthread_once; the dispatch
 * pointer is an atomic that any thread may resolve (every thread resolves
 * it to the same function, so a race is harmless). No allocation.
 */
#include "crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HAVE_HW 1
#else
#define HAVE_HW 0
#endif

#define POLY 0x82F63B78u /* reflected Castagnoli polynomial */

/* tab[0] is the byte table; tab[k][b] is the CRC of b followed by k zero
 * bytes, so eight bytes are folded with eight look-ups. Written once under
 * tab_once, read-only afterwards. */
static uint32_t tab[8][256];
static pthread_once_t tab_once = PTHREAD_ONCE_INIT;

static void tab_build(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (POLY & (0u - (c & 1)));
		tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++)
			tab[k][i] = (tab[k - 1][i] >> 8) ^ tab[0][tab[k - 1][i] & 0xff];
}

/* Any thread. */
uint32_t dsm__crc32c_sw(uint32_t crc, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	pthread_once(&tab_once, tab_build);
	crc = ~crc;
	while (n >= 8) {
		/* Explicit little-endian load: right on any host byte order. */
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
				     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);

		crc = tab[7][lo & 0xff] ^ tab[6][(lo >> 8) & 0xff] ^
		      tab[5][(lo >> 16) & 0xff] ^ tab[4][lo >> 24] ^
		      tab[3][p[4]] ^ tab[2][p[5]] ^ tab[1][p[6]] ^ tab[0][p[7]];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = (crc >> 8) ^ tab[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

#if HAVE_HW
/* Any thread; only valid when dsm__crc32c_hw_available(). */
__attribute__((target("sse4.2")))
uint32_t dsm__crc32c_hw(uint32_t crc, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	uint64_t c = ~crc;

	/* Align so the 8-byte loads do not straddle cache lines. */
	while (n && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		n--;
	}
	while (n >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

bool dsm__crc32c_hw_available(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("sse4.2");
}
#else
/* No hardware CRC on this architecture: the table stands in. */
uint32_t dsm__crc32c_hw(uint32_t crc, const void *buf, size_t n)
{
	return dsm__crc32c_sw(crc, buf, n);
}

bool dsm__crc32c_hw_available(void)
{
	return false;
}
#endif

typedef uint32_t crc_fn(uint32_t crc, const void *buf, size_t n);

static uint32_t resolve(uint32_t crc, const void *buf, size_t n);

/* resolve until the first call, then the chosen implementation. */
static _Atomic(crc_fn *) impl = resolve;

static uint32_t resolve(uint32_t crc, const void *buf, size_t n)
{
	crc_fn *f = dsm__crc32c_hw_available() ? dsm__crc32c_hw : dsm__crc32c_sw;

	atomic_store_explicit(&impl, f, memory_order_relaxed);
	return f(crc, buf, n);
}

/* Any thread; the hot path of every send and receive. */
uint32_t dsm__crc32c(uint32_t crc, const void *buf, size_t n)
{
	return atomic_load_explicit(&impl, memory_order_relaxed)(crc, buf, n);
}
