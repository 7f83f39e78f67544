/*
 * Datagram header codec: explicit little-endian, field by field, at the
 * offsets documented in wire.h. Stateless and thread-safe; no allocation.
 * Runs on the network thread (encode on send, decode on every receive).
 */
#include "wire.h"

#include "crc32c.h"

/* Offsets of wire.h; the layout is the ABI between nodes. */
enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 4,
	OFF_TYPE = 5,
	OFF_FLAGS = 6,
	OFF_CLUSTER = 8,
	OFF_SRC = 12,
	OFF_DST = 14,
	OFF_SRC_INC = 16,
	OFF_DST_INC = 20,
	OFF_SEQ = 24,
	OFF_ACK = 28,
	OFF_SACK = 32,
	OFF_WND = 40,
	OFF_LEN = 42,
	OFF_CRC = 44,
	OFF_END = 48,
};

_Static_assert(DSM_WIRE_HDR_SIZE == 48, "wire ABI: header is 48 bytes");
_Static_assert(OFF_END == DSM_WIRE_HDR_SIZE, "wire ABI: offsets cover the header");
_Static_assert(OFF_CRC + 4 == DSM_WIRE_HDR_SIZE, "wire ABI: crc ends the header");
_Static_assert(DSM_WIRE_MAX_DGRAM - DSM_WIRE_HDR_SIZE <= UINT16_MAX,
	       "wire ABI: len is 16 bits");

/* CRC over the header with its crc field read as zero, then the payload.
 * The caller has checked that buf holds DSM_WIRE_HDR_SIZE + len bytes. */
static uint32_t dgram_crc(const uint8_t *buf, size_t len)
{
	static const uint8_t zero[4];
	uint32_t c;

	c = dsm__crc32c(0, buf, OFF_CRC);
	c = dsm__crc32c(c, zero, sizeof(zero));
	return dsm__crc32c(c, buf + DSM_WIRE_HDR_SIZE, len);
}

/* Whether flags are allowed on a datagram of this type (false for an
 * unknown type). FIRST/LAST only mean something on DATA, BYE on HELLO. */
static int type_flags_ok(unsigned type, unsigned flags)
{
	if (flags & ~(unsigned)DSM_WIRE_F_ALL)
		return 0;
	if ((flags & DSM_WIRE_F_BYE) && type != DSM_WIRE_HELLO)
		return 0;
	switch (type) {
	case DSM_WIRE_DATA:
		return 1;
	case DSM_WIRE_ACK:
	case DSM_WIRE_HELLO:
	case DSM_WIRE_REJECT:
		return !(flags & (DSM_WIRE_F_FIRST | DSM_WIRE_F_LAST));
	default:
		return 0;
	}
}

/*
 * Network thread (any thread). buf must hold DSM_WIRE_HDR_SIZE + h->len
 * bytes with the payload already in place; h is trusted (the sender built
 * it), so nothing is validated. Returns the datagram length.
 */
size_t dsm__wire_encode(uint8_t *buf, const struct dsm__wire_hdr *h)
{
	dsm__put_le32(buf + OFF_MAGIC, DSM_WIRE_MAGIC);
	buf[OFF_VERSION] = DSM_WIRE_VERSION;
	buf[OFF_TYPE] = h->type;
	dsm__put_le16(buf + OFF_FLAGS, h->flags);
	dsm__put_le32(buf + OFF_CLUSTER, h->cluster);
	dsm__put_le16(buf + OFF_SRC, h->src);
	dsm__put_le16(buf + OFF_DST, h->dst);
	dsm__put_le32(buf + OFF_SRC_INC, h->src_inc);
	dsm__put_le32(buf + OFF_DST_INC, h->dst_inc);
	dsm__put_le32(buf + OFF_SEQ, h->seq);
	dsm__put_le32(buf + OFF_ACK, h->ack);
	dsm__put_le64(buf + OFF_SACK, h->sack);
	dsm__put_le16(buf + OFF_WND, h->wnd);
	dsm__put_le16(buf + OFF_LEN, h->len);
	dsm__put_le32(buf + OFF_CRC, dgram_crc(buf, h->len));
	return DSM_WIRE_HDR_SIZE + (size_t)h->len;
}

/*
 * Network thread (any thread). Checks, in this order, so each read is
 * inside what the earlier checks proved present: a whole header (ETRUNC),
 * magic, version, type and flags, len against max_payload (ELEN), the
 * payload present (ETRUNC) with nothing after it (ELEN), then the CRC.
 * Returns 0 with *h filled, or a DSM_WIRE_E* code.
 */
int dsm__wire_decode(const uint8_t *buf, size_t n, size_t max_payload,
		     struct dsm__wire_hdr *h)
{
	unsigned type, flags;
	size_t len;

	if (n < DSM_WIRE_HDR_SIZE)
		return DSM_WIRE_ETRUNC;
	if (dsm__get_le32(buf + OFF_MAGIC) != DSM_WIRE_MAGIC)
		return DSM_WIRE_EMAGIC;
	if (buf[OFF_VERSION] != DSM_WIRE_VERSION)
		return DSM_WIRE_EVERSION;
	type = buf[OFF_TYPE];
	flags = dsm__get_le16(buf + OFF_FLAGS);
	if (!type_flags_ok(type, flags))
		return DSM_WIRE_ETYPE;
	len = dsm__get_le16(buf + OFF_LEN);
	if (len > max_payload)
		return DSM_WIRE_ELEN;
	if (n - DSM_WIRE_HDR_SIZE < len)
		return DSM_WIRE_ETRUNC;
	if (n - DSM_WIRE_HDR_SIZE > len)
		return DSM_WIRE_ELEN;
	if (dsm__get_le32(buf + OFF_CRC) != dgram_crc(buf, len))
		return DSM_WIRE_ECRC;

	h->type = (uint8_t)type;
	h->flags = (uint16_t)flags;
	h->cluster = dsm__get_le32(buf + OFF_CLUSTER);
	h->src = dsm__get_le16(buf + OFF_SRC);
	h->dst = dsm__get_le16(buf + OFF_DST);
	h->src_inc = dsm__get_le32(buf + OFF_SRC_INC);
	h->dst_inc = dsm__get_le32(buf + OFF_DST_INC);
	h->seq = dsm__get_le32(buf + OFF_SEQ);
	h->ack = dsm__get_le32(buf + OFF_ACK);
	h->sack = dsm__get_le64(buf + OFF_SACK);
	h->wnd = dsm__get_le16(buf + OFF_WND);
	h->len = (uint16_t)len;
	return 0;
}

/* Any thread. Never NULL. */
const char *dsm__wire_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case DSM_WIRE_ETRUNC:
		return "truncated";
	case DSM_WIRE_EMAGIC:
		return "bad magic";
	case DSM_WIRE_EVERSION:
		return "bad version";
	case DSM_WIRE_ETYPE:
		return "bad type or flags";
	case DSM_WIRE_ELEN:
		return "bad length";
	case DSM_WIRE_ECRC:
		return "bad crc";
	default:
		return "unknown wire error";
	}
}
