/* fuzz_frame.c: libFuzzer harness for the donor-protocol reader in
 * proto/frame.c. Byte 0 picks how the rest is cut into reads (all at once,
 * byte by byte, random sizes, payloads through gvm_reader_direct), byte 1
 * seeds the sizes. Every frame the reader hands out must pass gvm_hdr_check,
 * stay within the payload bounds (GVM_FRAME_PAYLOAD_MAX_BYTES: pages and
 * their tags; a LIST within GVM_LIST_PAGES_MAX, its reply one bit per page;
 * page tags only on READs and WRITE requests), and survive gvm_hdr_encode +
 * decode. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define FUZZ_PREFIX_BYTES 2u
#define FUZZ_DIRECT	  0x4u /* mode bit: payloads go through gvm_reader_direct */

static uint8_t enc_buf[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
static uint8_t pages_buf[GVM_FRAME_DATA_MAX_BYTES];

static void fuzz_fail(const char *what, const struct gvm_hdr *h)
{
	fprintf(stderr, "fuzz_frame: %s (op %u, version %u, page_count %u, payload_len %u)\n", what,
		h->op, h->version, h->page_count, h->payload_len);
	abort();
}

static bool hdr_equal(const struct gvm_hdr *a, const struct gvm_hdr *b)
{
	return a->version == b->version && a->id == b->id && a->op == b->op &&
	       a->response == b->response && a->status == b->status &&
	       !strcmp(a->error, b->error) && a->ns == b->ns && a->first_page == b->first_page &&
	       a->page_count == b->page_count &&
	       !memcmp(a->zero_bitmap, b->zero_bitmap, sizeof(a->zero_bitmap)) &&
	       a->payload_len == b->payload_len && !strcmp(a->ns_name, b->ns_name) &&
	       a->tag_bytes == b->tag_bytes;
}

/* The invariants of a frame the reader has accepted. */
static void check_frame(const struct gvm_reader *r)
{
	const struct gvm_hdr *h = &r->hdr;
	struct gvm_hdr back;
	const char *why = NULL;
	uint32_t len;
	int n;

	if (gvm_hdr_check(h, &why))
		fuzz_fail("accepted header fails gvm_hdr_check", h);
	if (h->payload_len > GVM_FRAME_PAYLOAD_MAX_BYTES)
		fuzz_fail("payload_len above GVM_FRAME_PAYLOAD_MAX_BYTES", h);
	if (h->tag_bytes != 0 && h->tag_bytes != GVM_PAGE_TAG_BYTES)
		fuzz_fail("tag_bytes neither 0 nor GVM_PAGE_TAG_BYTES", h);
	if (h->tag_bytes && h->op != GVM__OP__OP_READ &&
	    (h->op != GVM__OP__OP_WRITE || h->response))
		fuzz_fail("tag_bytes outside a READ or a WRITE request", h);
	if (h->payload_len && !r->payload)
		fuzz_fail("payload without a buffer", h);
	if (memchr(h->error, 0, sizeof(h->error)) == NULL ||
	    memchr(h->ns_name, 0, sizeof(h->ns_name)) == NULL)
		fuzz_fail("unterminated string", h);
	if ((h->op == GVM__OP__OP_READ || h->op == GVM__OP__OP_WRITE ||
	     h->op == GVM__OP__OP_DISCARD) &&
	    (h->page_count == 0 || h->page_count > GVM_FRAME_PAGES_MAX))
		fuzz_fail("paged op with page_count out of range", h);
	if (h->op == GVM__OP__OP_LIST) {
		uint32_t bits = h->response && !h->status ? gvm_list_bitmap_bytes(h->page_count) : 0;

		if (h->page_count == 0 || h->page_count > GVM_LIST_PAGES_MAX ||
		    h->payload_len != bits)
			fuzz_fail("LIST with page_count or bitmap out of range", h);
	}

	n = gvm_hdr_encode(h, enc_buf, sizeof(enc_buf));
	if (n <= (int)GVM_FRAME_LEN_BYTES)
		fuzz_fail("accepted header does not re-encode", h);
	len = (uint32_t)enc_buf[0] << 24 | (uint32_t)enc_buf[1] << 16 | (uint32_t)enc_buf[2] << 8 |
	      enc_buf[3];
	if (len != (uint32_t)n - GVM_FRAME_LEN_BYTES)
		fuzz_fail("length prefix disagrees with the encoded size", h);
	if (gvm_hdr_decode(enc_buf + GVM_FRAME_LEN_BYTES, len, &back, &why))
		fuzz_fail("re-encoded header is refused", h);
	if (!hdr_equal(h, &back))
		fuzz_fail("re-encoded header decodes differently", h);

	/* Frames that carry pages expand to exactly page_count pages; their
	 * tags, if any, follow the last one and end the payload. */
	if (h->payload_len &&
	    h->payload_len == gvm_hdr_data_pages(h) * (GVM_PAGE_SIZE + h->tag_bytes) &&
	    h->op == GVM__OP__OP_READ && h->response) {
		if (gvm_frame_tags(h, r->payload) + (size_t)gvm_hdr_data_pages(h) * h->tag_bytes !=
		    r->payload + h->payload_len)
			fuzz_fail("tags do not end the payload", h);
		gvm_frame_unpack_pages(h, r->payload, pages_buf);
		for (uint32_t i = 0, k = 0; i < h->page_count; i++) {
			const uint8_t *page = pages_buf + (size_t)i * GVM_PAGE_SIZE;

			if (gvm_hdr_zero_test(h, i)) {
				if (!gvm_page_is_zero(page))
					fuzz_fail("zero page unpacked as non-zero", h);
			} else if (memcmp(page, r->payload + (size_t)k++ * GVM_PAGE_SIZE,
					  GVM_PAGE_SIZE)) {
				fuzz_fail("data page unpacked wrongly", h);
			}
		}
	}
}

/* Next read size for mode; seed walks a xorshift. */
static size_t chunk_size(uint8_t mode, uint32_t *seed)
{
	*seed ^= *seed << 13;
	*seed ^= *seed >> 17;
	*seed ^= *seed << 5;
	switch (mode & 0x3) {
	case 0:
		return SIZE_MAX;
	case 1:
		return 1;
	case 2:
		return 1 + *seed % 16;
	default:
		return 1 + *seed % 4096;
	}
}

/* One read of at most want bytes from data; -1 when the stream broke. */
static ssize_t feed_once(struct gvm_reader *r, const uint8_t *data, size_t want, bool direct)
{
	uint8_t *dst;
	size_t room = direct ? gvm_reader_direct(r, &dst) : 0;
	ssize_t n;

	if (room) {
		if (room > want)
			room = want;
		memcpy(dst, data, room);
		n = gvm_reader_feed(r, NULL, room);
		if (n >= 0 && (size_t)n != room)
			fuzz_fail("direct bytes not all taken", &r->hdr);
		return n;
	}
	return gvm_reader_feed(r, data, want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gvm_reader r;
	uint8_t mode;
	uint32_t seed;
	size_t off = FUZZ_PREFIX_BYTES;

	if (size < FUZZ_PREFIX_BYTES)
		return 0;
	mode = data[0];
	seed = 0x9e3779b9u ^ data[1];
	gvm_reader_init(&r);
	while (off < size) {
		size_t want = chunk_size(mode, &seed);
		ssize_t n;

		if (want > size - off)
			want = size - off;
		n = feed_once(&r, data + off, want, mode & FUZZ_DIRECT);
		if (n < 0) {
			if (r.why[0] == '\0')
				fuzz_fail("error without a reason", &r.hdr);
			if (n != -EBADMSG && n != -EPROTO)
				fuzz_fail("unexpected errno", &r.hdr);
			break;
		}
		if ((size_t)n > want)
			fuzz_fail("consumed more than it was given", &r.hdr);
		off += (size_t)n;
		if (gvm_reader_ready(&r)) {
			check_frame(&r);
			gvm_reader_next(&r);
			if (!gvm_reader_idle(&r))
				fuzz_fail("not idle after gvm_reader_next", &r.hdr);
		} else if ((size_t)n != want) {
			fuzz_fail("stopped early without a frame", &r.hdr);
		}
	}
	gvm_reader_free(&r);
	return 0;
}
