/*
 * The datagram wire format. Everything is little-endian and encoded field
 * by field (no struct is ever cast onto the wire).
 *
 *  off size field
 *    0   4  magic     DSM_WIRE_MAGIC
 *    4   1  version   DSM_WIRE_VERSION
 *    5   1  type      enum dsm__wire_type
 *    6   2  flags     DSM_WIRE_F_*
 *    8   4  cluster   cluster id; datagrams of another cluster are dropped
 *   12   2  src       sender's rank
 *   14   2  dst       receiver's rank
 *   16   4  src_inc   sender's incarnation (never 0)
 *   20   4  dst_inc   receiver's incarnation as the sender knows it (0: unknown)
 *   24   4  seq       sequence number of this DATA datagram (0 for others)
 *   28   4  ack       cumulative ack: every seq before this one was received
 *   32   8  sack      bit i set: seq ack+1+i was received (selective ack)
 *   40   2  wnd       receive window: datagrams from ack on the sender may have in flight
 *   42   2  len       payload length; header + len == datagram length
 *   44   4  crc       CRC32C over the header (this field zero) and the payload
 *   48      payload
 *
 * Decoding checks what can be checked without connection state (size,
 * magic, version, type, length, CRC). Cluster, ranks and incarnations are
 * checked by the channel.
 */
#ifndef DSM_NET_WIRE_H
#define DSM_NET_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "le.h" /* dsm__put_le16/32/64, dsm__get_le16/32/64 for wire.h's users */

#define DSM_WIRE_MAGIC 0x314d5344u /* "DSM1" in memory order */
#define DSM_WIRE_VERSION 1
#define DSM_WIRE_HDR_SIZE 48
/* Largest datagram we ever send or accept (also bounded by the provider). */
#define DSM_WIRE_MAX_DGRAM 65507

enum dsm__wire_type {
	DSM_WIRE_DATA = 1,   /* carries a fragment of a message; has a seq */
	DSM_WIRE_ACK = 2,    /* ack/sack/window only */
	DSM_WIRE_HELLO = 3,  /* heartbeat and first contact; asks for a reply when F_PROBE */
	DSM_WIRE_REJECT = 4, /* "you were declared dead": the receiver must stop */
};

enum {
	DSM_WIRE_F_FIRST = 1 << 0, /* DATA: first fragment of a message */
	DSM_WIRE_F_LAST = 1 << 1,  /* DATA: last fragment of a message */
	DSM_WIRE_F_PROBE = 1 << 2, /* please answer at once (ack or hello) */
	DSM_WIRE_F_BYE = 1 << 3,   /* HELLO: the sender is leaving (clean shutdown) */
	DSM_WIRE_F_ALL = (1 << 4) - 1,
};

struct dsm__wire_hdr {
	uint8_t type;
	uint16_t flags;
	uint32_t cluster;
	uint16_t src, dst;
	uint32_t src_inc, dst_inc;
	uint32_t seq, ack;
	uint64_t sack;
	uint16_t wnd;
	uint16_t len;
};

/* Reasons a datagram is rejected by dsm__wire_decode (negative). */
enum dsm__wire_err {
	DSM_WIRE_ETRUNC = -1,   /* shorter than a header, or than header + len */
	DSM_WIRE_EMAGIC = -2,
	DSM_WIRE_EVERSION = -3,
	DSM_WIRE_ETYPE = -4,    /* unknown type, or flags not allowed for it */
	DSM_WIRE_ELEN = -5,     /* len beyond max_payload, or trailing bytes */
	DSM_WIRE_ECRC = -6,
};

/*
 * Write the header for a datagram whose payload (h->len bytes) is already
 * at buf + DSM_WIRE_HDR_SIZE, computing the CRC over both. Returns the
 * datagram length (DSM_WIRE_HDR_SIZE + h->len).
 */
size_t dsm__wire_encode(uint8_t *buf, const struct dsm__wire_hdr *h);

/*
 * Parse and verify a datagram of n bytes whose payload may be at most
 * max_payload bytes. On success fills *h and returns 0; the payload is at
 * buf + DSM_WIRE_HDR_SIZE. Otherwise returns a DSM_WIRE_E* code and *h is
 * unspecified. Never reads past buf + n.
 */
int dsm__wire_decode(const uint8_t *buf, size_t n, size_t max_payload,
		     struct dsm__wire_hdr *h);

/* Short name of a DSM_WIRE_E* code, for logs. */
const char *dsm__wire_strerror(int err);

#endif /* DSM_NET_WIRE_H */
