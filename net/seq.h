/*
 * 32-bit sequence numbers with wrap-safe comparison (serial number
 * arithmetic, RFC 1982): a is before b when (int32_t)(a - b) < 0, which is
 * right as long as the two are less than 2^31 apart.
 */
#ifndef DSM_NET_SEQ_H
#define DSM_NET_SEQ_H

#include <stdbool.h>
#include <stdint.h>

static inline bool dsm__seq_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}
static inline bool dsm__seq_le(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}
static inline bool dsm__seq_gt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) > 0;
}
static inline bool dsm__seq_ge(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) >= 0;
}

#endif /* DSM_NET_SEQ_H */
