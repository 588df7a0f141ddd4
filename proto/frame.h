/* frame.h: the donor-protocol codec every binary uses. A frame is a 4-byte
 * big-endian header length, a protobuf `gvm.Frame` header, then payload_len
 * raw bytes. gvm_hdr is the plain-C view of the header; gvm_reader turns a
 * byte stream (partial TCP reads) into frames, bounding every length before
 * it allocates. See docs/protocol.md. */
#ifndef GVM_FRAME_H
#define GVM_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gvm.pb-c.h"
#include "gvm_proto.h"

struct gvm_hdr {
	uint32_t version;
	uint64_t id;
	uint32_t op; /* GVM__OP__OP_* */
	bool response;
	int32_t status; /* 0 or a positive errno value */
	char error[GVM_ERROR_MAX_BYTES + 1];
	uint32_t ns;
	uint64_t first_page;
	uint32_t page_count;
	uint8_t zero_bitmap[GVM_FRAME_BITMAP_MAX_BYTES];
	uint32_t payload_len;
	char ns_name[GVM_NS_NAME_MAX_BYTES + 1];
	char host_id[GVM_HOST_ID_MAX_BYTES + 1]; /* AUTH answer only */
	/* READ (request and reply), WRITE request: 0, or GVM_PAGE_TAG_BYTES:
	 * the payload's data pages are followed by a tag each, in order. */
	uint32_t tag_bytes;
};

/* A zeroed header of the current version for op. */
void gvm_hdr_init(struct gvm_hdr *h, uint32_t op, uint64_t id);
const char *gvm_op_name(uint32_t op);

static inline bool gvm_hdr_zero_test(const struct gvm_hdr *h, uint32_t i)
{
	return h->zero_bitmap[i / 8] & (1u << (i % 8));
}
static inline void gvm_hdr_zero_set(struct gvm_hdr *h, uint32_t i)
{
	h->zero_bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
}
/* Pages that travel as bytes: page_count minus the zero bits. */
uint32_t gvm_hdr_data_pages(const struct gvm_hdr *h);
/* The tags of a READ reply's or WRITE's data pages: after the pages. */
static inline const uint8_t *gvm_frame_tags(const struct gvm_hdr *h, const uint8_t *payload)
{
	return payload + (size_t)gvm_hdr_data_pages(h) * GVM_PAGE_SIZE;
}
bool gvm_page_is_zero(const void *page);

/* Encodes the length prefix and header into out. Returns the byte count, or
 * -EMSGSIZE when it would not fit cap or GVM_FRAME_HDR_MAX_BYTES. */
int gvm_hdr_encode(const struct gvm_hdr *h, uint8_t *out, size_t cap);

/* Decodes a serialized header (without the length prefix) and checks it
 * with gvm_hdr_check. 0, or -EBADMSG / -EPROTO with *why set. */
int gvm_hdr_decode(const uint8_t *buf, size_t len, struct gvm_hdr *h,
		   const char **why);

/* The rules of docs/protocol.md: version, known op, page counts, bitmap
 * bounds, and the exact payload length each op allows. */
int gvm_hdr_check(const struct gvm_hdr *h, const char **why);

enum gvm_reader_state { GVM_RD_LEN, GVM_RD_HDR, GVM_RD_PAYLOAD, GVM_RD_READY };

/* Asked when a header has been read and its payload is next: a buffer of at
 * least h->payload_len bytes to receive it in, or NULL for the reader's own. */
typedef uint8_t *(*gvm_payload_dst_fn)(void *ctx, const struct gvm_hdr *h);

struct gvm_reader {
	enum gvm_reader_state state;
	uint32_t need; /* bytes the current state still wants */
	uint32_t have;
	uint8_t lenbuf[GVM_FRAME_LEN_BYTES];
	uint8_t hdrbuf[GVM_FRAME_HDR_MAX_BYTES];
	struct gvm_hdr hdr;
	uint8_t *payload;     /* this frame's payload: own, or from dst_fn */
	uint8_t *own;         /* grown to the largest payload received into it */
	uint32_t own_cap;
	gvm_payload_dst_fn dst_fn;
	void *dst_ctx;
	uint32_t max_payload; /* larger payloads are refused before allocating */
	char why[160];        /* reason of the last error */
};

void gvm_reader_init(struct gvm_reader *r);
void gvm_reader_free(struct gvm_reader *r);
/* Refuse frames whose payload exceeds max_payload bytes (default and upper
 * bound GVM_FRAME_PAYLOAD_MAX_BYTES): e.g. a donor allows only an AUTH answer
 * until the peer has authenticated. */
void gvm_reader_limit(struct gvm_reader *r, uint32_t max_payload);
/* Lets the caller say where each payload goes (see gvm_payload_dst_fn), so
 * with gvm_reader_direct() it arrives in its final buffer uncopied. */
void gvm_reader_set_dst(struct gvm_reader *r, gvm_payload_dst_fn fn, void *ctx);

/* Consumes up to len bytes; stops after a frame completes. Returns the bytes
 * consumed, or a negative errno with r->why set (the stream is then broken).
 * When gvm_reader_ready(), r->hdr and r->payload hold the frame until
 * gvm_reader_next(). */
ssize_t gvm_reader_feed(struct gvm_reader *r, const uint8_t *data, size_t len);
static inline bool gvm_reader_ready(const struct gvm_reader *r)
{
	return r->state == GVM_RD_READY;
}
void gvm_reader_next(struct gvm_reader *r);

/* While a payload is being received: where its remaining bytes go, so a
 * caller can recv() straight into it. Returns the count (0 in other states);
 * report what arrived with gvm_reader_feed(r, NULL, n). */
size_t gvm_reader_direct(struct gvm_reader *r, uint8_t **dst);

/* While a payload is being received: its remaining bytes go into dst (cap
 * bytes) from now on, at the same offsets; what arrived already is not
 * copied, so dst's first bytes are whatever dst held. With dst NULL or
 * smaller than the payload, the rest goes into the reader's own buffer
 * (grown to fit). The old destination is never written again. 0 (also in
 * any other state: nothing to move), or -ENOMEM when the own buffer cannot
 * grow (the reader is then unchanged). */
int gvm_reader_retarget(struct gvm_reader *r, uint8_t *dst, uint32_t cap);

/* True if the reader is between frames (nothing partial buffered). */
bool gvm_reader_idle(const struct gvm_reader *r);


/* Page helpers for READ/WRITE payloads. */
/* Sets h's zero bits for the all-zero pages among count pages (at most
 * GVM_FRAME_PAGES_MAX); returns how many are not zero (those that travel). */
uint32_t gvm_hdr_mark_zero_pages(struct gvm_hdr *h, const uint8_t *pages,
				 uint32_t count);
/* Expands a READ response payload to h->page_count full pages in out; out
 * may be payload itself, when it has room for page_count pages (the tags,
 * if any, are overwritten then: take them first). */
void gvm_frame_unpack_pages(const struct gvm_hdr *h, const uint8_t *payload,
			    uint8_t *out);

/* LIST: a reply of status 0 carries a bitmap of gvm_list_bitmap_bytes(
 * page_count) bytes; bit i (LSB first in each byte) set says the donor holds
 * page first_page + i. */
static inline uint32_t gvm_list_bitmap_bytes(uint32_t page_count)
{
	return (uint32_t)(((uint64_t)page_count + 7u) / 8u);
}
static inline bool gvm_list_test(const uint8_t *bitmap, uint32_t i)
{
	return bitmap[i / 8] & (1u << (i % 8));
}
/* False when bits past page_count are set in the last byte of a LIST
 * bitmap: a reply no correct donor sends. */
bool gvm_list_bitmap_valid(const uint8_t *bitmap, uint32_t page_count);
#endif
