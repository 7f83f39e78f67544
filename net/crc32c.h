/*
 * CRC32C (Castagnoli), as used by iSCSI/ext4: reflected polynomial
 * 0x82F63B78, initial value ~0, final xor ~0. crc32c("123456789") ==
 * 0xE3069283. Thread-safe, no allocation.
 */
#ifndef DSM_NET_CRC32C_H
#define DSM_NET_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CRC of buf[0..n) continuing from crc (start with 0). Uses SSE4.2 when
 * the CPU has it, the table otherwise; both give the same result. */
uint32_t dsm__crc32c(uint32_t crc, const void *buf, size_t n);

/* Table implementation, always available. */
uint32_t dsm__crc32c_sw(uint32_t crc, const void *buf, size_t n);

/* SSE4.2 implementation; only call when dsm__crc32c_hw_available(). */
uint32_t dsm__crc32c_hw(uint32_t crc, const void *buf, size_t n);
bool dsm__crc32c_hw_available(void);

#endif /* DSM_NET_CRC32C_H */
