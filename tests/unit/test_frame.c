/* test_frame.c: proto/frame.c, the donor-protocol codec. Every op survives
 * gvm_hdr_encode + gvm_reader_feed with all its fields and payload bytes,
 * however the stream is cut into reads; every malformed frame (bad lengths,
 * version, op, page range, bitmap, payload length, garbage protobuf) is
 * refused with a negative errno and a reason before a payload is allocated.
 * LIST has its own bounds: up to GVM_LIST_PAGES_MAX pages, a reply of
 * exactly one bit per page. Page tags (tag_bytes 16) ride on READs and
 * WRITE requests only, one after the pages for each data page, and a reply
 * of 512 tagged pages is the largest payload a reader takes.
 * Malformed headers are built with gvm_hdr_encode (it does not validate) or
 * packed by hand with gvm__frame__pack. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

#define FRAME_MAX_BYTES	 (GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES + GVM_FRAME_PAYLOAD_MAX_BYTES)
#define STREAM_FRAMES	 24
#define STREAM_MAX_BYTES (STREAM_FRAMES * 64 * 1024 + 2 * FRAME_MAX_BYTES)
#define CHUNK_ALL	 SIZE_MAX

static uint8_t frame_buf[FRAME_MAX_BYTES];
static uint8_t payload_buf[GVM_FRAME_PAYLOAD_MAX_BYTES];

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rnd() >> 24);
}

/* FNV-1a over a payload. */
static uint64_t checksum(const uint8_t *p, size_t n)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

static void put_be32(uint8_t *out, uint32_t v)
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

/* Length prefix + header of h, then h->payload_len bytes of payload. */
static size_t build_frame(const struct gvm_hdr *h, const uint8_t *payload, uint8_t *out, size_t cap)
{
	int n = gvm_hdr_encode(h, out, cap);

	assert_true(n > (int)GVM_FRAME_LEN_BYTES);
	assert_true((size_t)n + h->payload_len <= cap);
	if (h->payload_len)
		memcpy(out + n, payload, h->payload_len);
	return (size_t)n + h->payload_len;
}

/* Length prefix + a hand-packed Frame, for headers gvm_hdr cannot express. */
static size_t build_raw(const Gvm__Frame *f, uint8_t *out, size_t cap)
{
	size_t len = gvm__frame__get_packed_size(f);

	assert_true(len + GVM_FRAME_LEN_BYTES <= cap);
	put_be32(out, (uint32_t)len);
	assert_int_equal(gvm__frame__pack(f, out + GVM_FRAME_LEN_BYTES), len);
	return len + GVM_FRAME_LEN_BYTES;
}

static void assert_hdr_equal(const struct gvm_hdr *got, const struct gvm_hdr *want)
{
	assert_int_equal(got->version, want->version);
	assert_int_equal(got->id, want->id);
	assert_int_equal(got->op, want->op);
	assert_int_equal(got->response, want->response);
	assert_int_equal(got->status, want->status);
	assert_string_equal(got->error, want->error);
	assert_int_equal(got->ns, want->ns);
	assert_int_equal(got->first_page, want->first_page);
	assert_int_equal(got->page_count, want->page_count);
	assert_memory_equal(got->zero_bitmap, want->zero_bitmap, sizeof(got->zero_bitmap));
	assert_int_equal(got->payload_len, want->payload_len);
	assert_string_equal(got->ns_name, want->ns_name);
	assert_int_equal(got->tag_bytes, want->tag_bytes);
}

/* Feeds len bytes at once into a fresh reader: they must be one frame. */
static void decode_one(struct gvm_reader *r, const uint8_t *buf, size_t len)
{
	ssize_t n;

	gvm_reader_init(r);
	n = gvm_reader_feed(r, buf, len);
	if (n < 0)
		fail_msg("frame refused: %s", r->why);
	assert_int_equal(n, len);
	assert_true(gvm_reader_ready(r));
}

/* Encodes h with payload, reads it back, and compares every field. */
static void roundtrip(const struct gvm_hdr *h, const uint8_t *payload)
{
	struct gvm_reader r;
	size_t len = build_frame(h, payload, frame_buf, sizeof(frame_buf));

	decode_one(&r, frame_buf, len);
	assert_hdr_equal(&r.hdr, h);
	if (h->payload_len) {
		assert_non_null(r.payload);
		assert_int_equal(memcmp(r.payload, payload, h->payload_len), 0);
	}
	gvm_reader_next(&r);
	assert_true(gvm_reader_idle(&r));
	gvm_reader_free(&r);
}

/* Feeds len bytes into a fresh reader: refused with err and a reason, no
 * frame, and no payload buffer allocated. */
static void expect_refused(const uint8_t *buf, size_t len, int err)
{
	struct gvm_reader r;
	ssize_t n;

	gvm_reader_init(&r);
	n = gvm_reader_feed(&r, buf, len);
	assert_int_equal(n, err);
	assert_false(gvm_reader_ready(&r));
	assert_true(r.why[0] != '\0');
	assert_null(r.payload);
	gvm_reader_free(&r);
}

/* Only the prefix and header of h go in: a bad header is refused before its
 * payload is wanted. */
static void expect_hdr_refused(const struct gvm_hdr *h, int err)
{
	const char *why = NULL;
	int n = gvm_hdr_encode(h, frame_buf, sizeof(frame_buf));

	assert_true(n > (int)GVM_FRAME_LEN_BYTES);
	expect_refused(frame_buf, (size_t)n, err);
	assert_int_equal(gvm_hdr_decode(frame_buf + GVM_FRAME_LEN_BYTES,
					(size_t)n - GVM_FRAME_LEN_BYTES, &(struct gvm_hdr){0},
					&why),
			 err);
	assert_non_null(why);
}

static void expect_raw_refused(const Gvm__Frame *f, int err)
{
	size_t len = build_raw(f, frame_buf, sizeof(frame_buf));

	expect_refused(frame_buf, len, err);
}

static bool op_is_paged(uint32_t op)
{
	return op == GVM__OP__OP_READ || op == GVM__OP__OP_WRITE || op == GVM__OP__OP_DISCARD;
}

static bool carries_pages(const struct gvm_hdr *h)
{
	return (h->op == GVM__OP__OP_READ && h->response && !h->status) ||
	       (h->op == GVM__OP__OP_WRITE && !h->response);
}

/* A random valid header for op (status 0), with payload random bytes in
 * payload; page-carrying frames get at most max_pages pages, LIST at most
 * 8 * max_pages; half the READs and WRITE requests carry page tags. */
static void random_valid_hdr(struct gvm_hdr *h, uint32_t op, bool response, uint32_t max_pages,
			     uint8_t *payload)
{
	gvm_hdr_init(h, op, rnd());
	h->response = response;
	h->ns = (uint32_t)rnd();
	if (op_is_paged(op) || op == GVM__OP__OP_LIST) {
		h->page_count = 1 + (uint32_t)(rnd() % (op_is_paged(op) ? max_pages : 8 * max_pages));
		h->first_page = rnd() % (UINT64_MAX / GVM_PAGE_SIZE - h->page_count);
	}
	if (op == GVM__OP__OP_LIST && response)
		h->payload_len = gvm_list_bitmap_bytes(h->page_count);
	if ((op == GVM__OP__OP_READ || (op == GVM__OP__OP_WRITE && !response)) && rnd() % 2)
		h->tag_bytes = GVM_PAGE_TAG_BYTES;
	if (carries_pages(h)) {
		for (uint32_t i = 0; i < h->page_count; i++)
			if (rnd() % 3 == 0)
				gvm_hdr_zero_set(h, i);
		h->payload_len = gvm_hdr_data_pages(h) * (GVM_PAGE_SIZE + h->tag_bytes);
	} else if (op == GVM__OP__OP_AUTH || op == GVM__OP__OP_STATS || op == GVM__OP__OP_PING) {
		h->payload_len = (uint32_t)(rnd() % (GVM_FRAME_SMALL_PAYLOAD_MAX_BYTES + 1));
	}
	if (op == GVM__OP__OP_OPEN_NS || op == GVM__OP__OP_DROP_NS)
		snprintf(h->ns_name, sizeof(h->ns_name), "vm-%u", (unsigned)(rnd() % 100000));
	fill_random(payload, h->payload_len);
}

/* ---- round trips ---- */

static void test_roundtrip_every_op_request_and_response(void **state)
{
	(void)state;
	rng_state = 0x9e3779b97f4a7c15ULL;
	for (int pass = 0; pass < 4; pass++) {
		for (uint32_t op = GVM__OP__OP_AUTH; op <= GVM__OP__OP_LIST; op++) {
			for (int response = 0; response < 2; response++) {
				struct gvm_hdr h;

				random_valid_hdr(&h, op, response, GVM_FRAME_PAGES_MAX,
						 payload_buf);
				roundtrip(&h, payload_buf);
			}
		}
	}
}

static void test_roundtrip_auth_request_with_nonce_payload(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_AUTH, 1);
	h.payload_len = GVM_AUTH_NONCE_BYTES;
	rng_state = 11;
	fill_random(payload_buf, h.payload_len);
	roundtrip(&h, payload_buf);
}

static void test_roundtrip_auth_response_keeps_status_and_error_string(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_AUTH, 2);
	h.response = true;
	h.status = EACCES;
	snprintf(h.error, sizeof(h.error), "auth failed: bad key");
	roundtrip(&h, NULL);
}

static void test_roundtrip_keeps_max_length_error_string_and_max_id(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, UINT64_MAX);
	h.response = true;
	h.status = ENOSPC;
	h.ns = UINT32_MAX;
	h.first_page = 7;
	h.page_count = 3;
	memset(h.error, 'e', GVM_ERROR_MAX_BYTES);
	h.error[GVM_ERROR_MAX_BYTES] = '\0';
	roundtrip(&h, NULL);
}

static void test_roundtrip_open_ns_request_with_max_length_name(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_OPEN_NS, 3);
	memset(h.ns_name, 'n', GVM_NS_NAME_MAX_BYTES);
	h.ns_name[GVM_NS_NAME_MAX_BYTES] = '\0';
	roundtrip(&h, NULL);
}

static void test_roundtrip_open_ns_response_keeps_ns_id(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_OPEN_NS, 4);
	h.response = true;
	h.ns = 0xdeadbeef;
	snprintf(h.ns_name, sizeof(h.ns_name), "guest-a");
	roundtrip(&h, NULL);
}

static void test_roundtrip_read_request_keeps_page_range(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 5);
	h.ns = 9;
	h.first_page = 123456789012ULL;
	h.page_count = GVM_FRAME_PAGES_MAX;
	roundtrip(&h, NULL);
}

static void test_roundtrip_read_response_with_zero_bitmap(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 6);
	h.response = true;
	h.ns = 9;
	h.first_page = 1000;
	h.page_count = 13;
	gvm_hdr_zero_set(&h, 0);
	gvm_hdr_zero_set(&h, 7);
	gvm_hdr_zero_set(&h, 12);
	assert_int_equal(gvm_hdr_data_pages(&h), 10);
	h.payload_len = 10 * GVM_PAGE_SIZE;
	rng_state = 12;
	fill_random(payload_buf, h.payload_len);
	roundtrip(&h, payload_buf);
}

static void test_roundtrip_read_response_all_pages_zero_has_no_payload(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 7);
	h.response = true;
	h.page_count = GVM_FRAME_PAGES_MAX;
	memset(h.zero_bitmap, 0xff, sizeof(h.zero_bitmap));
	assert_int_equal(gvm_hdr_data_pages(&h), 0);
	roundtrip(&h, NULL);
}

static void test_roundtrip_read_error_response_keeps_status_without_payload(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 8);
	h.response = true;
	h.status = EIO;
	h.page_count = 4;
	snprintf(h.error, sizeof(h.error), "namespace 9 is gone");
	roundtrip(&h, NULL);
}

static void test_roundtrip_write_request_with_full_payload(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, 9);
	h.ns = 1;
	h.first_page = UINT64_MAX / GVM_PAGE_SIZE - GVM_FRAME_PAGES_MAX;
	h.page_count = GVM_FRAME_PAGES_MAX;
	h.payload_len = GVM_FRAME_DATA_MAX_BYTES;
	rng_state = 13;
	fill_random(payload_buf, h.payload_len);
	roundtrip(&h, payload_buf);
}

static void test_roundtrip_write_response(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, 10);
	h.response = true;
	h.first_page = 42;
	h.page_count = 2;
	roundtrip(&h, NULL);
}

static void test_roundtrip_discard_and_drop_ns_requests(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_DISCARD, 11);
	h.ns = 3;
	h.first_page = 99;
	h.page_count = 17;
	roundtrip(&h, NULL);

	gvm_hdr_init(&h, GVM__OP__OP_DROP_NS, 12);
	snprintf(h.ns_name, sizeof(h.ns_name), "old-guest");
	roundtrip(&h, NULL);
}

static void test_roundtrip_stats_response_carries_memserver_stats(void **state)
{
	Gvm__MemserverStats st = GVM__MEMSERVER_STATS__INIT, *back;
	struct gvm_reader r;
	struct gvm_hdr h;
	size_t len;

	(void)state;
	st.capacity_pages = 1ULL << 40;
	st.used_pages = 12345;
	st.namespaces = 3;
	st.bad_frames = 2;
	st.ns_used_pages = 77;
	gvm_hdr_init(&h, GVM__OP__OP_STATS, 13);
	h.response = true;
	h.payload_len = (uint32_t)gvm__memserver_stats__pack(&st, payload_buf);
	len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));
	decode_one(&r, frame_buf, len);
	assert_hdr_equal(&r.hdr, &h);
	back = gvm__memserver_stats__unpack(NULL, r.hdr.payload_len, r.payload);
	assert_non_null(back);
	assert_int_equal(back->capacity_pages, st.capacity_pages);
	assert_int_equal(back->used_pages, st.used_pages);
	assert_int_equal(back->namespaces, st.namespaces);
	assert_int_equal(back->bad_frames, st.bad_frames);
	assert_int_equal(back->ns_used_pages, st.ns_used_pages);
	gvm__memserver_stats__free_unpacked(back, NULL);
	gvm_reader_free(&r);
}

static void test_roundtrip_ping_with_max_small_payload(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_PING, 14);
	h.payload_len = GVM_FRAME_SMALL_PAYLOAD_MAX_BYTES;
	rng_state = 14;
	fill_random(payload_buf, h.payload_len);
	roundtrip(&h, payload_buf);
}

/* ---- streams and chunking ---- */

struct seen {
	struct gvm_hdr hdr;
	uint64_t sum;
};

static uint8_t stream_buf[STREAM_MAX_BYTES];
static struct seen want_frames[STREAM_FRAMES];

/* STREAM_FRAMES random valid frames back to back; one of them is a full
 * 256-page WRITE. Records what each must decode to. */
static size_t build_stream(void)
{
	size_t len = 0;

	rng_state = 0x2545f4914f6cdd1dULL;
	for (int i = 0; i < STREAM_FRAMES; i++) {
		uint32_t op = GVM__OP__OP_AUTH + (uint32_t)(rnd() % GVM__OP__OP_LIST);
		struct gvm_hdr *h = &want_frames[i].hdr;

		random_valid_hdr(h, op, rnd() & 1, 12, payload_buf);
		if (i == STREAM_FRAMES / 2) {
			gvm_hdr_init(h, GVM__OP__OP_WRITE, 777);
			h->page_count = GVM_FRAME_PAGES_MAX;
			h->payload_len = GVM_FRAME_DATA_MAX_BYTES;
			fill_random(payload_buf, h->payload_len);
		}
		want_frames[i].sum = checksum(payload_buf, h->payload_len);
		len += build_frame(h, payload_buf, stream_buf + len, sizeof(stream_buf) - len);
	}
	return len;
}

static size_t chunk_of(size_t mode)
{
	switch (rnd() % 4) {
	case 0:
		return 1 + rnd() % 16;
	case 1:
		return 1 + rnd() % 512;
	case 2:
		return 1 + rnd() % 8192;
	default:
		return mode == 0 ? 1 + rnd() % 300000 : 1;
	}
}

/* Decodes the stream, handing the reader chunk bytes at a time (CHUNK_ALL:
 * everything, 0: random sizes). Returns the frame count. */
static size_t decode_stream(const uint8_t *s, size_t len, size_t chunk, struct seen *out)
{
	struct gvm_reader r;
	size_t off = 0, frames = 0;

	gvm_reader_init(&r);
	while (off < len) {
		size_t want = chunk ? chunk : chunk_of(0), done = 0;

		if (want > len - off)
			want = len - off;
		while (done < want) {
			ssize_t n = gvm_reader_feed(&r, s + off + done, want - done);

			if (n < 0)
				fail_msg("stream refused at byte %zu: %s", off + done, r.why);
			done += (size_t)n;
			if (!gvm_reader_ready(&r)) {
				assert_int_equal(done, want);
				continue;
			}
			assert_true(frames < STREAM_FRAMES);
			out[frames].hdr = r.hdr;
			out[frames].sum = checksum(r.payload, r.hdr.payload_len);
			frames++;
			gvm_reader_next(&r);
		}
		off += want;
	}
	assert_true(gvm_reader_idle(&r));
	gvm_reader_free(&r);
	return frames;
}

static void assert_frames_equal(const struct seen *got, const struct seen *want, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_hdr_equal(&got[i].hdr, &want[i].hdr);
		assert_int_equal(got[i].sum, want[i].sum);
	}
}

static void test_stream_one_feed_gives_every_frame_with_its_payload(void **state)
{
	static struct seen got[STREAM_FRAMES];
	size_t len = build_stream();

	(void)state;
	assert_int_equal(decode_stream(stream_buf, len, CHUNK_ALL, got), STREAM_FRAMES);
	assert_frames_equal(got, want_frames, STREAM_FRAMES);
}

static void test_stream_byte_by_byte_gives_same_frames_as_one_feed(void **state)
{
	static struct seen all[STREAM_FRAMES], bytes[STREAM_FRAMES];
	size_t len = build_stream();

	(void)state;
	assert_int_equal(decode_stream(stream_buf, len, CHUNK_ALL, all), STREAM_FRAMES);
	assert_int_equal(decode_stream(stream_buf, len, 1, bytes), STREAM_FRAMES);
	assert_frames_equal(bytes, all, STREAM_FRAMES);
}

static void test_stream_random_chunks_give_same_frames_as_one_feed(void **state)
{
	static struct seen all[STREAM_FRAMES], got[STREAM_FRAMES];
	size_t len = build_stream();

	(void)state;
	assert_int_equal(decode_stream(stream_buf, len, CHUNK_ALL, all), STREAM_FRAMES);
	for (uint64_t seed = 1; seed <= 20; seed++) {
		rng_state = seed * 0x9e3779b97f4a7c15ULL;
		memset(got, 0, sizeof(got));
		assert_int_equal(decode_stream(stream_buf, len, 0, got), STREAM_FRAMES);
		assert_frames_equal(got, all, STREAM_FRAMES);
	}
}

static void test_feed_stops_at_the_end_of_each_frame(void **state)
{
	struct gvm_reader r;
	struct gvm_hdr a, b;
	size_t la, lb;
	ssize_t n;

	(void)state;
	gvm_hdr_init(&a, GVM__OP__OP_PING, 1);
	a.payload_len = 5;
	gvm_hdr_init(&b, GVM__OP__OP_PING, 2);
	la = build_frame(&a, (const uint8_t *)"hello", frame_buf, sizeof(frame_buf));
	lb = build_frame(&b, NULL, frame_buf + la, sizeof(frame_buf) - la);

	gvm_reader_init(&r);
	n = gvm_reader_feed(&r, frame_buf, la + lb);
	assert_int_equal(n, la);
	assert_true(gvm_reader_ready(&r));
	assert_int_equal(r.hdr.id, 1);
	assert_memory_equal(r.payload, "hello", 5);
	/* While a frame is ready, nothing more is consumed. */
	assert_int_equal(gvm_reader_feed(&r, frame_buf + la, lb), 0);
	gvm_reader_next(&r);
	n = gvm_reader_feed(&r, frame_buf + la, lb);
	assert_int_equal(n, lb);
	assert_true(gvm_reader_ready(&r));
	assert_int_equal(r.hdr.id, 2);
	gvm_reader_free(&r);
}

/* ---- gvm_reader_direct and payload destinations ---- */

struct dst_ctx {
	uint64_t want_id; /* frames with this id go to buf */
	uint8_t *buf;
	unsigned asked;
};

static uint8_t *dst_by_id(void *ctx, const struct gvm_hdr *h)
{
	struct dst_ctx *d = ctx;

	d->asked++;
	return h->id == d->want_id ? d->buf : NULL;
}

/* A destination callback gets the payload of the frame it claims, read
 * straight into its buffer; other frames still use the reader's own. */
static void test_payload_destination_by_frame(void **state)
{
	static uint8_t mine[4 * GVM_PAGE_SIZE];
	struct dst_ctx d = { 7, mine, 0 };
	struct gvm_reader r;
	struct gvm_hdr h;
	uint8_t *dst;
	size_t len, hdr_len, left;

	(void)state;
	memset(mine, 0, sizeof(mine));
	gvm_reader_init(&r);
	gvm_reader_set_dst(&r, dst_by_id, &d);
	for (uint64_t id = 6; id <= 8; id++) {
		gvm_hdr_init(&h, GVM__OP__OP_READ, id);
		h.response = true;
		h.page_count = 4;
		h.payload_len = 4 * GVM_PAGE_SIZE;
		rng_state = (uint32_t)id;
		fill_random(payload_buf, h.payload_len);
		len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));
		hdr_len = len - h.payload_len;
		assert_int_equal(gvm_reader_feed(&r, frame_buf, hdr_len), hdr_len);
		left = gvm_reader_direct(&r, &dst);
		assert_int_equal(left, h.payload_len);
		if (id == 7)
			assert_ptr_equal(dst, mine);
		else
			assert_ptr_not_equal(dst, mine);
		memcpy(dst, payload_buf, left);
		assert_int_equal(gvm_reader_feed(&r, NULL, left), left);
		assert_true(gvm_reader_ready(&r));
		assert_int_equal(r.hdr.id, id);
		assert_int_equal(memcmp(r.payload, payload_buf, h.payload_len), 0);
		if (id == 7)
			assert_ptr_equal(r.payload, mine);
		gvm_reader_next(&r);
	}
	assert_int_equal(d.asked, 3);
	/* the claimed frame's bytes stayed in the caller's buffer */
	rng_state = 7;
	fill_random(payload_buf, 4 * GVM_PAGE_SIZE);
	assert_int_equal(memcmp(mine, payload_buf, sizeof(mine)), 0);
	gvm_reader_free(&r);
}

static void test_direct_pointer_receives_payload_in_pieces(void **state)
{
	struct gvm_reader r;
	struct gvm_hdr h;
	uint8_t *dst = NULL;
	size_t len, hdr_len, left, first;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, 21);
	h.page_count = 5;
	gvm_hdr_zero_set(&h, 2);
	h.payload_len = 4 * GVM_PAGE_SIZE;
	rng_state = 21;
	fill_random(payload_buf, h.payload_len);
	len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));
	hdr_len = len - h.payload_len;

	gvm_reader_init(&r);
	assert_int_equal(gvm_reader_direct(&r, &dst), 0);
	assert_int_equal(gvm_reader_feed(&r, frame_buf, hdr_len), hdr_len);
	assert_false(gvm_reader_ready(&r));

	left = gvm_reader_direct(&r, &dst);
	assert_int_equal(left, h.payload_len);
	assert_non_null(dst);
	first = 4097;
	memcpy(dst, payload_buf, first);
	assert_int_equal(gvm_reader_feed(&r, NULL, first), first);
	assert_false(gvm_reader_ready(&r));

	left = gvm_reader_direct(&r, &dst);
	assert_int_equal(left, h.payload_len - first);
	memcpy(dst, payload_buf + first, left);
	assert_int_equal(gvm_reader_feed(&r, NULL, left), left);
	assert_true(gvm_reader_ready(&r));
	assert_int_equal(gvm_reader_direct(&r, &dst), 0);
	assert_hdr_equal(&r.hdr, &h);
	assert_int_equal(memcmp(r.payload, payload_buf, h.payload_len), 0);
	gvm_reader_free(&r);
}

/* A payload half received into one buffer and retargeted: the rest lands
 * in the new buffer at the same offsets, by gvm_reader_direct and by
 * copying alike, and the old buffer is never written again. */
static void test_retarget_mid_payload_puts_rest_in_new_buffer_and_never_touches_old(void **state)
{
	static uint8_t old[4 * GVM_PAGE_SIZE], moved[4 * GVM_PAGE_SIZE];
	struct dst_ctx d = { 41, old, 0 };
	struct gvm_reader r;
	struct gvm_hdr h;
	uint8_t *dst;
	size_t len, hdr_len, first = GVM_PAGE_SIZE + 123, second = GVM_PAGE_SIZE;

	(void)state;
	for (int direct = 0; direct < 2; direct++) {
		gvm_hdr_init(&h, GVM__OP__OP_READ, 41);
		h.response = true;
		h.page_count = 4;
		h.payload_len = 4 * GVM_PAGE_SIZE;
		rng_state = 41 + (unsigned)direct;
		fill_random(payload_buf, h.payload_len);
		len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));
		hdr_len = len - h.payload_len;
		memset(old, 0, sizeof(old));
		memset(moved, 0, sizeof(moved));
		gvm_reader_init(&r);
		gvm_reader_set_dst(&r, dst_by_id, &d);
		assert_int_equal(gvm_reader_feed(&r, frame_buf, hdr_len + first), hdr_len + first);
		assert_ptr_equal(r.payload, old);
		assert_memory_equal(old, payload_buf, first);

		assert_int_equal(gvm_reader_retarget(&r, moved, sizeof(moved)), 0);
		memset(old, 0xa5, sizeof(old)); /* whatever lands here now is a write too many */
		if (direct) {
			assert_int_equal(gvm_reader_direct(&r, &dst), h.payload_len - first);
			assert_ptr_equal(dst, moved + first);
			memcpy(dst, payload_buf + first, second);
			assert_int_equal(gvm_reader_feed(&r, NULL, second), second);
			assert_int_equal(gvm_reader_direct(&r, &dst), h.payload_len - first - second);
			memcpy(dst, payload_buf + first + second, h.payload_len - first - second);
			assert_int_equal(gvm_reader_feed(&r, NULL, h.payload_len - first - second),
					 h.payload_len - first - second);
		} else {
			assert_int_equal(gvm_reader_feed(&r, frame_buf + hdr_len + first,
							 len - hdr_len - first),
					 len - hdr_len - first);
		}
		assert_true(gvm_reader_ready(&r));
		assert_ptr_equal(r.payload, moved);
		assert_memory_equal(moved + first, payload_buf + first, h.payload_len - first);
		for (size_t i = 0; i < sizeof(old); i++)
			assert_int_equal(old[i], 0xa5);
		gvm_reader_next(&r);
		gvm_reader_free(&r);
	}
}

/* Retargeted to no buffer, or to one too small for the payload, the rest
 * goes into the reader's own buffer; the old one is left alone. */
static void test_retarget_to_null_or_small_buffer_uses_own_buffer(void **state)
{
	static uint8_t old[2 * GVM_PAGE_SIZE], small[GVM_PAGE_SIZE];
	struct dst_ctx d = { 43, old, 0 };
	struct gvm_reader r;
	struct gvm_hdr h;
	size_t len, hdr_len, first = 100;

	(void)state;
	for (int null_dst = 0; null_dst < 2; null_dst++) {
		gvm_hdr_init(&h, GVM__OP__OP_READ, 43);
		h.response = true;
		h.page_count = 2;
		h.payload_len = 2 * GVM_PAGE_SIZE;
		rng_state = 43;
		fill_random(payload_buf, h.payload_len);
		len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));
		hdr_len = len - h.payload_len;
		gvm_reader_init(&r);
		gvm_reader_set_dst(&r, dst_by_id, &d);
		assert_int_equal(gvm_reader_feed(&r, frame_buf, hdr_len + first), hdr_len + first);
		assert_null(r.own);
		memset(small, 0x3c, sizeof(small));
		assert_int_equal(gvm_reader_retarget(&r, null_dst ? NULL : small, sizeof(small)), 0);
		assert_non_null(r.own);
		assert_ptr_equal(r.payload, r.own);
		memset(old, 0xa5, sizeof(old));
		assert_int_equal(gvm_reader_feed(&r, frame_buf + hdr_len + first, len - hdr_len - first),
				 len - hdr_len - first);
		assert_true(gvm_reader_ready(&r));
		assert_memory_equal(r.payload + first, payload_buf + first, h.payload_len - first);
		for (size_t i = 0; i < sizeof(old); i++)
			assert_int_equal(old[i], 0xa5);
		for (size_t i = 0; i < sizeof(small); i++)
			assert_int_equal(small[i], 0x3c);
		gvm_reader_free(&r);
	}
}

/* Outside a payload there is nothing to move: between frames the next
 * payload still goes where the destination callback says, and a frame
 * ready keeps the payload it was read into. */
static void test_retarget_outside_a_payload_changes_nothing(void **state)
{
	static uint8_t mine[GVM_PAGE_SIZE], other[GVM_PAGE_SIZE];
	struct dst_ctx d = { 45, mine, 0 };
	struct gvm_reader r;
	struct gvm_hdr h;
	size_t len, hdr_len;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 45);
	h.response = true;
	h.page_count = 1;
	h.payload_len = GVM_PAGE_SIZE;
	rng_state = 45;
	fill_random(payload_buf, h.payload_len);
	len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));
	hdr_len = len - h.payload_len;
	gvm_reader_init(&r);
	gvm_reader_set_dst(&r, dst_by_id, &d);
	assert_int_equal(gvm_reader_retarget(&r, other, sizeof(other)), 0);
	assert_int_equal(gvm_reader_feed(&r, frame_buf, hdr_len - 1), hdr_len - 1);
	assert_int_equal(gvm_reader_retarget(&r, other, sizeof(other)), 0);
	assert_int_equal(gvm_reader_feed(&r, frame_buf + hdr_len - 1, len - hdr_len + 1),
			 len - hdr_len + 1);
	assert_true(gvm_reader_ready(&r));
	assert_int_equal(gvm_reader_retarget(&r, other, sizeof(other)), 0);
	assert_ptr_equal(r.payload, mine);
	assert_memory_equal(mine, payload_buf, h.payload_len);
	gvm_reader_free(&r);
}

/* ---- truncated input ---- */

static void test_truncated_frame_is_neither_ready_nor_idle(void **state)
{
	struct gvm_reader r;
	struct gvm_hdr h;
	size_t len;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 31);
	h.response = true;
	h.page_count = 2;
	h.payload_len = 2 * GVM_PAGE_SIZE;
	rng_state = 31;
	fill_random(payload_buf, h.payload_len);
	len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));

	gvm_reader_init(&r);
	assert_true(gvm_reader_idle(&r));
	gvm_reader_free(&r);
	for (size_t cut = 1; cut < len; cut++) {
		gvm_reader_init(&r);
		assert_int_equal(gvm_reader_feed(&r, frame_buf, cut), cut);
		assert_false(gvm_reader_ready(&r));
		assert_false(gvm_reader_idle(&r));
		assert_int_equal(gvm_reader_feed(&r, frame_buf + cut, len - cut), len - cut);
		assert_true(gvm_reader_ready(&r));
		assert_int_equal(memcmp(r.payload, payload_buf, h.payload_len), 0);
		gvm_reader_next(&r);
		assert_true(gvm_reader_idle(&r));
		gvm_reader_free(&r);
	}
}

/* ---- header length ---- */

static void test_header_length_zero_is_ebadmsg_before_allocating(void **state)
{
	const uint8_t in[] = {0, 0, 0, 0, 0x08, 0x01};

	(void)state;
	expect_refused(in, sizeof(in), -EBADMSG);
}

static void test_header_length_above_max_is_ebadmsg_before_allocating(void **state)
{
	uint8_t in[GVM_FRAME_LEN_BYTES + 8] = {0};

	(void)state;
	put_be32(in, GVM_FRAME_HDR_MAX_BYTES + 1);
	expect_refused(in, sizeof(in), -EBADMSG);
}

static void test_header_length_all_ones_is_ebadmsg_before_allocating(void **state)
{
	const uint8_t in[] = {0xff, 0xff, 0xff, 0xff, 0x08, 0x01};

	(void)state;
	expect_refused(in, sizeof(in), -EBADMSG);
}

/* A valid PING header padded to exactly GVM_FRAME_HDR_MAX_BYTES with an
 * unknown length-delimited field (number 100), which protobuf skips. */
static void test_header_of_exactly_max_bytes_is_accepted(void **state)
{
	Gvm__Frame f = GVM__FRAME__INIT;
	struct gvm_reader r;
	size_t base, pad, at;

	(void)state;
	f.version = GVM_PROTO_VERSION;
	f.id = 41;
	f.op = GVM__OP__OP_PING;
	base = build_raw(&f, frame_buf, sizeof(frame_buf)) - GVM_FRAME_LEN_BYTES;
	pad = GVM_FRAME_HDR_MAX_BYTES - base - 4; /* key, 2-byte length, pad */
	assert_true(pad >= 128 && pad < 16384);
	at = GVM_FRAME_LEN_BYTES + base;
	frame_buf[at++] = 0xa2; /* (100 << 3) | 2 */
	frame_buf[at++] = 0x06;
	frame_buf[at++] = (uint8_t)(0x80 | (pad & 0x7f));
	frame_buf[at++] = (uint8_t)(pad >> 7);
	memset(frame_buf + at, 'p', pad);
	at += pad;
	assert_int_equal(at, GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES);
	put_be32(frame_buf, GVM_FRAME_HDR_MAX_BYTES);

	decode_one(&r, frame_buf, at);
	assert_int_equal(r.hdr.op, GVM__OP__OP_PING);
	assert_int_equal(r.hdr.id, 41);
	gvm_reader_free(&r);
}

/* ---- header fields ---- */

static void test_wrong_version_is_eproto(void **state)
{
	const uint32_t versions[] = {0, GVM_PROTO_VERSION + 1, UINT32_MAX};
	struct gvm_hdr h;

	(void)state;
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		gvm_hdr_init(&h, GVM__OP__OP_PING, 1);
		h.version = versions[i];
		expect_hdr_refused(&h, -EPROTO);
	}
}

static void test_unknown_op_0_and_99_are_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_NONE, 1);
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, 99, 1);
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_LIST + 1, 1);
	h.page_count = 1; /* a range LIST would take */
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_negative_op_on_the_wire_is_ebadmsg(void **state)
{
	Gvm__Frame f = GVM__FRAME__INIT;

	(void)state;
	f.version = GVM_PROTO_VERSION;
	f.op = (Gvm__Op)-1;
	expect_raw_refused(&f, -EBADMSG);
}

static void test_read_page_count_zero_or_above_max_is_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 1);
	h.page_count = 0;
	expect_hdr_refused(&h, -EBADMSG);
	h.page_count = GVM_FRAME_PAGES_MAX + 1;
	expect_hdr_refused(&h, -EBADMSG);
	h.page_count = UINT32_MAX;
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_DISCARD, 1);
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_write_page_count_above_max_is_ebadmsg_before_allocating(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, 1);
	h.page_count = GVM_FRAME_PAGES_MAX + 1;
	h.payload_len = (GVM_FRAME_PAGES_MAX + 1) * GVM_PAGE_SIZE;
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_page_range_overflowing_uint64_is_ebadmsg(void **state)
{
	const uint64_t last_ok = UINT64_MAX / GVM_PAGE_SIZE - 8;
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 1);
	h.page_count = 8;
	h.first_page = UINT64_MAX;
	expect_hdr_refused(&h, -EBADMSG);
	h.first_page = UINT64_MAX - 7;
	expect_hdr_refused(&h, -EBADMSG);
	h.first_page = UINT64_MAX / GVM_PAGE_SIZE;
	expect_hdr_refused(&h, -EBADMSG);
	h.first_page = last_ok + 1;
	expect_hdr_refused(&h, -EBADMSG);
	h.first_page = last_ok;
	roundtrip(&h, NULL);
}

static void test_zero_bitmap_bits_past_page_count_are_ebadmsg(void **state)
{
	Gvm__Frame f = GVM__FRAME__INIT;
	uint8_t bitmap[1] = {0x01 | 0x20}; /* pages 0 and 5 of 5 */
	struct gvm_reader r;
	size_t len;

	(void)state;
	f.version = GVM_PROTO_VERSION;
	f.op = GVM__OP__OP_READ;
	f.response = true;
	f.page_count = 5;
	f.zero_bitmap.data = bitmap;
	f.zero_bitmap.len = sizeof(bitmap);
	f.payload_len = 4 * GVM_PAGE_SIZE;
	expect_raw_refused(&f, -EBADMSG);
	/* The same bitmap is fine once page 5 exists: the header is taken and
	 * the reader waits for its 4 data pages. */
	f.page_count = 6;
	len = build_raw(&f, frame_buf, sizeof(frame_buf));
	gvm_reader_init(&r);
	assert_int_equal(gvm_reader_feed(&r, frame_buf, len), len);
	assert_false(gvm_reader_ready(&r));
	assert_int_equal(r.hdr.page_count, 6);
	assert_int_equal(gvm_hdr_data_pages(&r.hdr), 4);
	gvm_reader_free(&r);
}

static void test_zero_bitmap_longer_than_page_count_needs_is_ebadmsg(void **state)
{
	Gvm__Frame f = GVM__FRAME__INIT;
	uint8_t bitmap[GVM_FRAME_BITMAP_MAX_BYTES + 1] = {0x01};

	(void)state;
	f.version = GVM_PROTO_VERSION;
	f.op = GVM__OP__OP_READ;
	f.response = true;
	f.page_count = 8;
	f.zero_bitmap.data = bitmap;
	f.zero_bitmap.len = 2; /* 8 pages need 1 byte */
	f.payload_len = 7 * GVM_PAGE_SIZE;
	expect_raw_refused(&f, -EBADMSG);
	f.page_count = GVM_FRAME_PAGES_MAX;
	f.zero_bitmap.len = GVM_FRAME_BITMAP_MAX_BYTES + 1;
	f.payload_len = (GVM_FRAME_PAGES_MAX - 1) * GVM_PAGE_SIZE;
	expect_raw_refused(&f, -EBADMSG);
	/* A bitmap on an op without pages. */
	f.op = GVM__OP__OP_PING;
	f.response = false;
	f.page_count = 0;
	f.zero_bitmap.len = 1;
	f.payload_len = 0;
	expect_raw_refused(&f, -EBADMSG);
}

static void test_write_payload_len_not_matching_data_pages_is_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, 1);
	h.page_count = 4;
	gvm_hdr_zero_set(&h, 1);
	h.payload_len = 4 * GVM_PAGE_SIZE; /* 3 data pages */
	expect_hdr_refused(&h, -EBADMSG);
	h.payload_len = 2 * GVM_PAGE_SIZE;
	expect_hdr_refused(&h, -EBADMSG);
	h.payload_len = 3 * GVM_PAGE_SIZE - 1;
	expect_hdr_refused(&h, -EBADMSG);
	h.payload_len = UINT32_MAX;
	expect_hdr_refused(&h, -EBADMSG);
	h.payload_len = 0;
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_read_response_payload_len_not_matching_data_pages_is_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 1);
	h.response = true;
	h.page_count = 1;
	h.payload_len = 2 * GVM_PAGE_SIZE;
	expect_hdr_refused(&h, -EBADMSG);
	/* An error response carries no pages at all. */
	h.status = EIO;
	h.payload_len = GVM_PAGE_SIZE;
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_small_op_payload_above_max_is_ebadmsg(void **state)
{
	const uint32_t ops[] = {GVM__OP__OP_PING, GVM__OP__OP_AUTH, GVM__OP__OP_STATS};
	struct gvm_hdr h;

	(void)state;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		gvm_hdr_init(&h, ops[i], 1);
		h.payload_len = GVM_FRAME_SMALL_PAYLOAD_MAX_BYTES + 1;
		expect_hdr_refused(&h, -EBADMSG);
		h.payload_len = UINT32_MAX;
		expect_hdr_refused(&h, -EBADMSG);
	}
}

static void test_payload_on_op_that_takes_none_is_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_OPEN_NS, 1);
	snprintf(h.ns_name, sizeof(h.ns_name), "a");
	h.payload_len = 1;
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_READ, 1);
	h.page_count = 1;
	h.payload_len = GVM_PAGE_SIZE;
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_DISCARD, 1);
	h.page_count = 1;
	h.payload_len = GVM_PAGE_SIZE;
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_page_range_on_op_that_takes_none_is_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_PING, 1);
	h.page_count = 1;
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_OPEN_NS, 1);
	h.first_page = 1;
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_status_on_request_is_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_PING, 1);
	h.status = EIO;
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_negative_status_is_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_PING, 1);
	h.response = true;
	h.status = -EIO;
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_too_long_error_string_and_ns_name_are_ebadmsg(void **state)
{
	char err[GVM_ERROR_MAX_BYTES + 2], name[GVM_NS_NAME_MAX_BYTES + 2];
	Gvm__Frame f = GVM__FRAME__INIT;

	(void)state;
	memset(err, 'e', sizeof(err) - 1);
	err[sizeof(err) - 1] = '\0';
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	f.version = GVM_PROTO_VERSION;
	f.op = GVM__OP__OP_PING;
	f.response = true;
	f.status = EIO;
	f.error = (ProtobufCBinaryData){ strlen(err), (uint8_t *)err };
	expect_raw_refused(&f, -EBADMSG);
	f.error = (ProtobufCBinaryData){ 0, NULL };
	f.status = 0;
	f.response = false;
	f.op = GVM__OP__OP_OPEN_NS;
	f.ns_name = (ProtobufCBinaryData){ strlen(name), (uint8_t *)name };
	expect_raw_refused(&f, -EBADMSG);
}

static void test_garbage_protobuf_header_is_ebadmsg(void **state)
{
	static const struct {
		uint8_t len;
		uint8_t bytes[16];
	} cases[] = {
	    {1, {0x0f}},	    /* field 1, wire type 7 */
	    {1, {0x08}},	    /* varint with no value */
	    {2, {0x08, 0x80}},	    /* varint cut short */
	    {3, {0x32, 0x10, 'a'}}, /* string longer than the header */
	    {12,
	     {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	      0x01}}, /* 11-byte varint */
	    {16,
	     {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	      0xff, 0xff}},
	};
	uint8_t in[GVM_FRAME_LEN_BYTES + 16];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		put_be32(in, cases[i].len);
		memcpy(in + GVM_FRAME_LEN_BYTES, cases[i].bytes, cases[i].len);
		expect_refused(in, GVM_FRAME_LEN_BYTES + cases[i].len, -EBADMSG);
	}
}

/* ---- page helpers ---- */

static void test_mark_zero_pages_and_unpack_restore_every_page(void **state)
{
	enum { PAGES = 37 };
	static uint8_t pages[PAGES * GVM_PAGE_SIZE], out[PAGES * GVM_PAGE_SIZE];
	struct gvm_reader r;
	struct gvm_hdr h;
	uint32_t data = 0, k = 0;
	size_t len;

	(void)state;
	rng_state = 41;
	memset(pages, 0, sizeof(pages));
	for (uint32_t i = 0; i < PAGES; i++) {
		uint8_t *p = pages + (size_t)i * GVM_PAGE_SIZE;

		if (i % 3 == 0)
			continue; /* all zero */
		if (i % 5 == 1)
			p[GVM_PAGE_SIZE - 1] = 1; /* only the last byte */
		else if (i % 7 == 2)
			p[0] = 0x80; /* only the first byte */
		else
			fill_random(p, GVM_PAGE_SIZE);
		data++;
	}

	gvm_hdr_init(&h, GVM__OP__OP_READ, 51);
	h.response = true;
	h.page_count = PAGES;
	memset(h.zero_bitmap, 0xff, sizeof(h.zero_bitmap)); /* must be cleared */
	assert_int_equal(gvm_hdr_mark_zero_pages(&h, pages, PAGES), data);
	assert_int_equal(gvm_hdr_data_pages(&h), data);
	for (uint32_t i = 0; i < PAGES; i++)
		assert_int_equal(gvm_hdr_zero_test(&h, i), i % 3 == 0);
	for (uint32_t i = PAGES; i < GVM_FRAME_PAGES_MAX; i++)
		assert_false(gvm_hdr_zero_test(&h, i));
	for (uint32_t i = 0; i < PAGES; i++) {
		if (gvm_hdr_zero_test(&h, i))
			continue;
		memcpy(payload_buf + (size_t)k * GVM_PAGE_SIZE, pages + (size_t)i * GVM_PAGE_SIZE,
		       GVM_PAGE_SIZE);
		k++;
	}
	h.payload_len = data * GVM_PAGE_SIZE;

	len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));
	decode_one(&r, frame_buf, len);
	assert_hdr_equal(&r.hdr, &h);
	memset(out, 0xa5, sizeof(out));
	gvm_frame_unpack_pages(&r.hdr, r.payload, out);
	assert_int_equal(checksum(out, sizeof(out)), checksum(pages, sizeof(pages)));
	assert_int_equal(memcmp(out, pages, sizeof(pages)), 0);

	/* In place: the payload at the start of a buffer with room for all. */
	memset(out, 0xa5, sizeof(out));
	memcpy(out, r.payload, r.hdr.payload_len);
	gvm_frame_unpack_pages(&r.hdr, out, out);
	assert_int_equal(memcmp(out, pages, sizeof(pages)), 0);
	gvm_reader_free(&r);
}

static void test_page_is_zero_sees_every_byte(void **state)
{
	static uint8_t page[GVM_PAGE_SIZE];

	(void)state;
	memset(page, 0, sizeof(page));
	assert_true(gvm_page_is_zero(page));
	for (size_t i = 0; i < GVM_PAGE_SIZE; i += 511) {
		page[i] = 1;
		assert_false(gvm_page_is_zero(page));
		page[i] = 0;
	}
	page[GVM_PAGE_SIZE - 1] = 0x80;
	assert_false(gvm_page_is_zero(page));
}

/* ---- encode ---- */

static void test_encode_refuses_too_small_buffer_with_emsgsize(void **state)
{
	uint8_t small[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
	struct gvm_hdr h;
	int need;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_READ, 61);
	h.response = true;
	h.status = EIO;
	snprintf(h.error, sizeof(h.error), "disk on fire");
	h.page_count = 9;
	need = gvm_hdr_encode(&h, small, sizeof(small));
	assert_true(need > (int)GVM_FRAME_LEN_BYTES);
	memset(small, 0x5a, sizeof(small));
	assert_int_equal(gvm_hdr_encode(&h, small, (size_t)need - 1), -EMSGSIZE);
	assert_int_equal(gvm_hdr_encode(&h, small, GVM_FRAME_LEN_BYTES), -EMSGSIZE);
	assert_int_equal(gvm_hdr_encode(&h, small, 0), -EMSGSIZE);
	assert_int_equal(small[0], 0x5a); /* nothing written on refusal */
	assert_int_equal(gvm_hdr_encode(&h, small, (size_t)need), need);
	assert_int_equal(small[need], 0x5a); /* nothing past the frame */
}

/* Regression: strlen() stopped at an embedded NUL, so a 300-byte error
 * field passed the 255-byte limit and decoded as "". */
static void test_error_field_over_255_wire_bytes_is_ebadmsg_even_with_a_nul(void **state)
{
	uint8_t in[GVM_FRAME_LEN_BYTES + 9 + 300];
	size_t k = GVM_FRAME_LEN_BYTES;

	(void)state;
	memcpy(in + k, "\x08\x01\x18\x08\x20\x01\x32\xac\x02", 9);
	k += 9;
	memset(in + k, 'x', 300);
	in[k] = 0;
	k += 300;
	put_be32(in, (uint32_t)(k - GVM_FRAME_LEN_BYTES));
	expect_refused(in, k, -EBADMSG);
}

/* The same for ns_name (field 12): a NUL inside is refused, not cut. */
static void test_ns_name_with_a_nul_inside_is_ebadmsg(void **state)
{
	uint8_t in[GVM_FRAME_LEN_BYTES + 6 + 8];
	size_t k = GVM_FRAME_LEN_BYTES;

	(void)state;
	memcpy(in + k, "\x08\x01\x18\x02\x62\x08", 6); /* version 1, OPEN_NS, ns_name len 8 */
	k += 6;
	memcpy(in + k, "vm-a\0xyz", 8);
	k += 8;
	put_be32(in, (uint32_t)(k - GVM_FRAME_LEN_BYTES));
	expect_refused(in, k, -EBADMSG);
}

/* Regression: a header that is not protobuf was reported with the op and
 * version of the frame before it. */
static void test_garbage_header_reason_does_not_name_the_previous_frame(void **state)
{
	const uint8_t bad[] = { 0, 0, 0, 1, 0x0f };
	struct gvm_reader r;
	struct gvm_hdr h;
	size_t len;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_PING, 1);
	h.payload_len = 4;
	len = build_frame(&h, (const uint8_t *)"ping", frame_buf, sizeof(frame_buf));
	decode_one(&r, frame_buf, len);
	gvm_reader_next(&r);
	assert_int_equal(gvm_reader_feed(&r, bad, sizeof(bad)), -EBADMSG);
	assert_null(strstr(r.why, "PING"));
	assert_non_null(strstr(r.why, "not a valid protobuf"));
	gvm_reader_free(&r);
}

/* ---- LIST ---- */

/* The largest LIST, at the last first_page its range allows, and its reply
 * of 1 MiB of bits (the reader's default limit takes it); a small one whose
 * last bitmap byte is partly used. */
static void test_roundtrip_list_request_and_reply_up_to_list_pages_max(void **state)
{
	const uint32_t counts[] = {GVM_LIST_PAGES_MAX, 13, 1};
	struct gvm_hdr h;

	(void)state;
	assert_int_equal(GVM_LIST_PAGES_MAX, 8u * 1024 * 1024);
	rng_state = 15;
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		gvm_hdr_init(&h, GVM__OP__OP_LIST, 20 + i);
		h.ns = 0x8001f;
		h.page_count = counts[i];
		h.first_page = UINT64_MAX / GVM_PAGE_SIZE - counts[i];
		roundtrip(&h, NULL);
		h.response = true;
		h.payload_len = gvm_list_bitmap_bytes(counts[i]);
		fill_random(payload_buf, h.payload_len);
		if (counts[i] % 8)
			payload_buf[h.payload_len - 1] &= (uint8_t)((1u << (counts[i] % 8)) - 1);
		roundtrip(&h, payload_buf);
		assert_true(gvm_list_bitmap_valid(payload_buf, counts[i]));
	}
	assert_int_equal(gvm_list_bitmap_bytes(GVM_LIST_PAGES_MAX), 1024 * 1024);
	assert_true(gvm_list_bitmap_bytes(GVM_LIST_PAGES_MAX) <= GVM_FRAME_DATA_MAX_BYTES);
	assert_int_equal(gvm_list_bitmap_bytes(13), 2);
	assert_int_equal(gvm_list_bitmap_bytes(UINT32_MAX), 536870912);
	/* An error reply carries the range and no bitmap. */
	gvm_hdr_init(&h, GVM__OP__OP_LIST, 30);
	h.response = true;
	h.status = ENOENT;
	h.page_count = 100;
	snprintf(h.error, sizeof(h.error), "unknown namespace");
	roundtrip(&h, NULL);
}

static void test_list_page_count_zero_or_above_list_pages_max_is_ebadmsg(void **state)
{
	const uint32_t counts[] = {0, GVM_LIST_PAGES_MAX + 1, UINT32_MAX};
	struct gvm_hdr h;

	(void)state;
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		for (int response = 0; response < 2; response++) {
			gvm_hdr_init(&h, GVM__OP__OP_LIST, 1);
			h.response = response;
			h.page_count = counts[i];
			expect_hdr_refused(&h, -EBADMSG);
		}
	}
	gvm_hdr_init(&h, GVM__OP__OP_LIST, 1);
	h.page_count = GVM_LIST_PAGES_MAX + 1;
	assert_int_equal(gvm_hdr_check(&h, &(const char *){NULL}), -EBADMSG);
}

static void test_list_page_range_overflowing_uint64_is_ebadmsg(void **state)
{
	const uint64_t last_ok = UINT64_MAX / GVM_PAGE_SIZE - GVM_LIST_PAGES_MAX;
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_LIST, 1);
	h.page_count = GVM_LIST_PAGES_MAX;
	h.first_page = UINT64_MAX;
	expect_hdr_refused(&h, -EBADMSG);
	h.first_page = last_ok + 1;
	expect_hdr_refused(&h, -EBADMSG);
	h.first_page = last_ok;
	roundtrip(&h, NULL);
}

/* A LIST reply carries exactly ceil(page_count / 8) bytes; its request and
 * an error reply carry none. */
static void test_list_payload_other_than_one_bit_per_page_is_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_LIST, 1);
	h.response = true;
	h.page_count = 17; /* 3 bytes */
	h.payload_len = 2;
	expect_hdr_refused(&h, -EBADMSG);
	h.payload_len = 4;
	expect_hdr_refused(&h, -EBADMSG);
	h.payload_len = 17 * GVM_PAGE_SIZE;
	expect_hdr_refused(&h, -EBADMSG);
	h.payload_len = 0;
	expect_hdr_refused(&h, -EBADMSG);
	h.status = ENOENT;
	h.payload_len = 3;
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_LIST, 1);
	h.page_count = 17;
	h.payload_len = 3;
	expect_hdr_refused(&h, -EBADMSG);
}

static void test_list_with_a_zero_bitmap_is_ebadmsg(void **state)
{
	Gvm__Frame f = GVM__FRAME__INIT;
	uint8_t bitmap[2] = {0x00, 0x01};

	(void)state;
	f.version = GVM_PROTO_VERSION;
	f.op = GVM__OP__OP_LIST;
	f.page_count = 16;
	f.zero_bitmap.data = bitmap;
	f.zero_bitmap.len = sizeof(bitmap);
	expect_raw_refused(&f, -EBADMSG);
	f.response = true;
	f.payload_len = 2;
	expect_raw_refused(&f, -EBADMSG);
}

static void test_list_bitmap_valid_only_without_bits_past_page_count(void **state)
{
	uint8_t bitmap[3] = {0xff, 0xff, 0x01};

	(void)state;
	assert_true(gvm_list_bitmap_valid(bitmap, 17));
	assert_true(gvm_list_bitmap_valid(bitmap, 24));
	assert_true(gvm_list_bitmap_valid(bitmap, 16)); /* a whole last byte: nothing past */
	bitmap[2] = 0x02;
	assert_false(gvm_list_bitmap_valid(bitmap, 17));
	bitmap[2] = 0x80;
	assert_false(gvm_list_bitmap_valid(bitmap, 23));
	assert_true(gvm_list_bitmap_valid(bitmap, 24));
	assert_true(gvm_list_test(bitmap, 23));
	assert_false(gvm_list_test(bitmap, 22));
	assert_true(gvm_list_test(bitmap, 0));
}

/* ---- page tags (tag_bytes) ---- */

/* A tagged WRITE, READ request and READ reply keep tag_bytes through
 * encode and decode; the tags of the data pages sit right after the pages,
 * where gvm_frame_tags points, one per data page in their order. */
static void test_roundtrip_tagged_write_and_read_keep_tag_bytes_and_each_tag(void **state)
{
	struct gvm_reader r;
	struct gvm_hdr h;
	size_t len;

	(void)state;
	for (uint32_t op = GVM__OP__OP_READ; op <= GVM__OP__OP_WRITE; op++) {
		gvm_hdr_init(&h, op, 20 + op);
		h.response = op == GVM__OP__OP_READ;
		h.ns = 5;
		h.first_page = 64;
		h.page_count = 10;
		gvm_hdr_zero_set(&h, 0);
		gvm_hdr_zero_set(&h, 4);
		h.tag_bytes = GVM_PAGE_TAG_BYTES;
		h.payload_len = 8 * (GVM_PAGE_SIZE + GVM_PAGE_TAG_BYTES);
		rng_state = 21 + op;
		fill_random(payload_buf, 8 * GVM_PAGE_SIZE);
		for (uint32_t k = 0; k < 8; k++) /* tag k: the byte k + 1, 16 times */
			memset(payload_buf + 8 * GVM_PAGE_SIZE + k * GVM_PAGE_TAG_BYTES, (int)k + 1,
			       GVM_PAGE_TAG_BYTES);
		len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));
		decode_one(&r, frame_buf, len);
		assert_hdr_equal(&r.hdr, &h);
		assert_int_equal(r.hdr.tag_bytes, GVM_PAGE_TAG_BYTES);
		assert_ptr_equal(gvm_frame_tags(&r.hdr, r.payload), r.payload + 8 * GVM_PAGE_SIZE);
		for (uint32_t k = 0; k < 8; k++)
			for (uint32_t b = 0; b < GVM_PAGE_TAG_BYTES; b++)
				assert_int_equal(gvm_frame_tags(&r.hdr, r.payload)[k * GVM_PAGE_TAG_BYTES + b],
						 k + 1);
		assert_memory_equal(r.payload, payload_buf, h.payload_len);
		gvm_reader_free(&r);
	}
	gvm_hdr_init(&h, GVM__OP__OP_READ, 30);
	h.page_count = GVM_FRAME_PAGES_MAX;
	h.tag_bytes = GVM_PAGE_TAG_BYTES;
	roundtrip(&h, NULL); /* the request asks; it carries nothing */
	h.response = true;
	memset(h.zero_bitmap, 0xff, sizeof(h.zero_bitmap));
	roundtrip(&h, NULL); /* every page zero: no pages, no tags */
}

static void test_tag_bytes_other_than_0_or_16_is_ebadmsg(void **state)
{
	const uint32_t bad_sizes[] = { 8, 1, 15, 17, 32, UINT32_MAX };
	struct gvm_hdr h;

	(void)state;
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		gvm_hdr_init(&h, GVM__OP__OP_WRITE, 1);
		h.page_count = 2;
		h.tag_bytes = bad_sizes[i];
		h.payload_len = (uint32_t)(2 * ((uint64_t)GVM_PAGE_SIZE + bad_sizes[i]));
		expect_hdr_refused(&h, -EBADMSG);
		gvm_hdr_init(&h, GVM__OP__OP_READ, 1);
		h.page_count = 2;
		h.tag_bytes = bad_sizes[i];
		expect_hdr_refused(&h, -EBADMSG);
	}
}

/* Tags ride on READs and WRITE requests only: a DISCARD, LIST, OPEN_NS,
 * PING or a WRITE reply with tag_bytes is malformed. */
static void test_tag_bytes_outside_a_read_or_a_write_request_is_ebadmsg(void **state)
{
	struct gvm_hdr h;

	(void)state;
	gvm_hdr_init(&h, GVM__OP__OP_DISCARD, 1);
	h.page_count = 4;
	h.tag_bytes = GVM_PAGE_TAG_BYTES;
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_LIST, 1);
	h.page_count = 64;
	h.tag_bytes = GVM_PAGE_TAG_BYTES;
	expect_hdr_refused(&h, -EBADMSG);
	h.response = true;
	h.payload_len = gvm_list_bitmap_bytes(64);
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_OPEN_NS, 1);
	snprintf(h.ns_name, sizeof(h.ns_name), "host.vm");
	h.tag_bytes = GVM_PAGE_TAG_BYTES;
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_PING, 1);
	h.tag_bytes = GVM_PAGE_TAG_BYTES;
	expect_hdr_refused(&h, -EBADMSG);
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, 1);
	h.response = true;
	h.page_count = 4;
	h.tag_bytes = GVM_PAGE_TAG_BYTES;
	expect_hdr_refused(&h, -EBADMSG);
	h.tag_bytes = 0; /* the same reply without: fine */
	roundtrip(&h, NULL);
}

/* With tag_bytes 16, payload_len is exactly data pages × 4112: pages
 * without their tags (what a sender that forgot them sends), a byte short
 * or over, or tags on a frame that says none, are malformed. */
static void test_payload_len_not_data_pages_times_page_and_tag_is_ebadmsg(void **state)
{
	const uint32_t tagged = GVM_PAGE_SIZE + GVM_PAGE_TAG_BYTES;
	struct gvm_hdr h;

	(void)state;
	for (int reply = 0; reply < 2; reply++) {
		gvm_hdr_init(&h, reply ? GVM__OP__OP_READ : GVM__OP__OP_WRITE, 1);
		h.response = reply;
		h.page_count = 6;
		gvm_hdr_zero_set(&h, 2); /* 5 data pages */
		h.tag_bytes = GVM_PAGE_TAG_BYTES;
		h.payload_len = 5 * GVM_PAGE_SIZE;
		expect_hdr_refused(&h, -EBADMSG);
		h.payload_len = 5 * tagged - 1;
		expect_hdr_refused(&h, -EBADMSG);
		h.payload_len = 5 * tagged + GVM_PAGE_TAG_BYTES;
		expect_hdr_refused(&h, -EBADMSG);
		h.payload_len = 6 * tagged; /* a tag for the zero page too */
		expect_hdr_refused(&h, -EBADMSG);
		h.tag_bytes = 0;
		h.payload_len = 5 * tagged;
		expect_hdr_refused(&h, -EBADMSG);
		h.tag_bytes = GVM_PAGE_TAG_BYTES;
		h.payload_len = 5 * tagged;
		rng_state = 40 + (uint64_t)reply;
		fill_random(payload_buf, h.payload_len);
		roundtrip(&h, payload_buf);
	}
}

/* The largest payload is a READ reply of 512 data pages with their tags:
 * GVM_FRAME_PAYLOAD_MAX_BYTES, which a reader takes by default and at most
 * (a limit above it is cut to it); one byte more is refused, and so is
 * that reply by a reader held to the pages alone (GVM_FRAME_DATA_MAX_BYTES,
 * a donor's limit before tags). */
static void test_reader_takes_512_tagged_pages_and_refuses_one_byte_more(void **state)
{
	struct gvm_reader r;
	struct gvm_hdr h;
	size_t len;

	(void)state;
	assert_int_equal(GVM_FRAME_PAYLOAD_MAX_BYTES,
			 GVM_FRAME_PAGES_MAX * (GVM_PAGE_SIZE + GVM_PAGE_TAG_BYTES));
	gvm_hdr_init(&h, GVM__OP__OP_READ, 50);
	h.response = true;
	h.page_count = GVM_FRAME_PAGES_MAX;
	h.tag_bytes = GVM_PAGE_TAG_BYTES;
	h.payload_len = GVM_FRAME_PAYLOAD_MAX_BYTES;
	rng_state = 50;
	fill_random(payload_buf, h.payload_len);
	len = build_frame(&h, payload_buf, frame_buf, sizeof(frame_buf));
	decode_one(&r, frame_buf, len);
	assert_int_equal(r.max_payload, GVM_FRAME_PAYLOAD_MAX_BYTES);
	assert_int_equal(r.hdr.payload_len, GVM_FRAME_PAYLOAD_MAX_BYTES);
	assert_int_equal(checksum(r.payload, r.hdr.payload_len),
			 checksum(payload_buf, GVM_FRAME_PAYLOAD_MAX_BYTES));
	assert_ptr_equal(gvm_frame_tags(&r.hdr, r.payload), r.payload + GVM_FRAME_DATA_MAX_BYTES);
	gvm_reader_free(&r);

	gvm_reader_init(&r);
	gvm_reader_limit(&r, UINT32_MAX);
	assert_int_equal(r.max_payload, GVM_FRAME_PAYLOAD_MAX_BYTES);
	gvm_reader_limit(&r, GVM_FRAME_DATA_MAX_BYTES);
	assert_int_equal(gvm_reader_feed(&r, frame_buf, len), -EBADMSG);
	assert_non_null(strstr(r.why, "over this connection's limit"));
	assert_null(r.payload);
	gvm_reader_free(&r);

	h.payload_len = GVM_FRAME_PAYLOAD_MAX_BYTES + 1;
	expect_hdr_refused(&h, -EBADMSG);
}

/* A connection's payload limit refuses a larger frame before allocating,
 * and the buffer grows only to the largest payload actually received. */
static void test_reader_limit_refuses_before_allocating_and_buffer_grows_to_need(void **state)
{
	static uint8_t data[8 * GVM_PAGE_SIZE];
	struct gvm_reader r;
	struct gvm_hdr h;
	size_t len;

	(void)state;
	memset(data, 0x5a, sizeof(data));
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, 9);
	h.ns = 1;
	h.page_count = 8;
	h.payload_len = 8 * GVM_PAGE_SIZE;
	len = build_frame(&h, data, frame_buf, sizeof(frame_buf));

	gvm_reader_init(&r);
	gvm_reader_limit(&r, 64);
	assert_int_equal(gvm_reader_feed(&r, frame_buf, len), -EBADMSG);
	assert_non_null(strstr(r.why, "over this connection's limit 64"));
	assert_null(r.payload);
	gvm_reader_free(&r);

	gvm_reader_init(&r);
	assert_int_equal(gvm_reader_feed(&r, frame_buf, len), (ssize_t)len);
	assert_true(gvm_reader_ready(&r));
	assert_int_equal(r.own_cap, 8 * GVM_PAGE_SIZE);
	assert_memory_equal(r.payload, data, sizeof(data));
	gvm_reader_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reader_limit_refuses_before_allocating_and_buffer_grows_to_need),
		cmocka_unit_test(test_error_field_over_255_wire_bytes_is_ebadmsg_even_with_a_nul),
		cmocka_unit_test(test_ns_name_with_a_nul_inside_is_ebadmsg),
		cmocka_unit_test(test_garbage_header_reason_does_not_name_the_previous_frame),
		cmocka_unit_test(test_roundtrip_every_op_request_and_response),
		cmocka_unit_test(test_roundtrip_tagged_write_and_read_keep_tag_bytes_and_each_tag),
		cmocka_unit_test(test_tag_bytes_other_than_0_or_16_is_ebadmsg),
		cmocka_unit_test(test_tag_bytes_outside_a_read_or_a_write_request_is_ebadmsg),
		cmocka_unit_test(test_payload_len_not_data_pages_times_page_and_tag_is_ebadmsg),
		cmocka_unit_test(test_reader_takes_512_tagged_pages_and_refuses_one_byte_more),
	    cmocka_unit_test(test_roundtrip_auth_request_with_nonce_payload),
	    cmocka_unit_test(test_roundtrip_auth_response_keeps_status_and_error_string),
	    cmocka_unit_test(test_roundtrip_keeps_max_length_error_string_and_max_id),
	    cmocka_unit_test(test_roundtrip_open_ns_request_with_max_length_name),
	    cmocka_unit_test(test_roundtrip_open_ns_response_keeps_ns_id),
	    cmocka_unit_test(test_roundtrip_read_request_keeps_page_range),
	    cmocka_unit_test(test_roundtrip_read_response_with_zero_bitmap),
	    cmocka_unit_test(test_roundtrip_read_response_all_pages_zero_has_no_payload),
	    cmocka_unit_test(test_roundtrip_read_error_response_keeps_status_without_payload),
	    cmocka_unit_test(test_roundtrip_write_request_with_full_payload),
	    cmocka_unit_test(test_roundtrip_write_response),
	    cmocka_unit_test(test_roundtrip_discard_and_drop_ns_requests),
	    cmocka_unit_test(test_roundtrip_stats_response_carries_memserver_stats),
	    cmocka_unit_test(test_roundtrip_ping_with_max_small_payload),
	    cmocka_unit_test(test_stream_one_feed_gives_every_frame_with_its_payload),
	    cmocka_unit_test(test_stream_byte_by_byte_gives_same_frames_as_one_feed),
	    cmocka_unit_test(test_stream_random_chunks_give_same_frames_as_one_feed),
	    cmocka_unit_test(test_feed_stops_at_the_end_of_each_frame),
	    cmocka_unit_test(test_direct_pointer_receives_payload_in_pieces),
	    cmocka_unit_test(test_retarget_mid_payload_puts_rest_in_new_buffer_and_never_touches_old),
	    cmocka_unit_test(test_retarget_to_null_or_small_buffer_uses_own_buffer),
	    cmocka_unit_test(test_retarget_outside_a_payload_changes_nothing),
	    cmocka_unit_test(test_truncated_frame_is_neither_ready_nor_idle),
	    cmocka_unit_test(test_header_length_zero_is_ebadmsg_before_allocating),
	    cmocka_unit_test(test_header_length_above_max_is_ebadmsg_before_allocating),
	    cmocka_unit_test(test_header_length_all_ones_is_ebadmsg_before_allocating),
	    cmocka_unit_test(test_header_of_exactly_max_bytes_is_accepted),
	    cmocka_unit_test(test_wrong_version_is_eproto),
	    cmocka_unit_test(test_unknown_op_0_and_99_are_ebadmsg),
	    cmocka_unit_test(test_negative_op_on_the_wire_is_ebadmsg),
	    cmocka_unit_test(test_read_page_count_zero_or_above_max_is_ebadmsg),
	    cmocka_unit_test(test_write_page_count_above_max_is_ebadmsg_before_allocating),
	    cmocka_unit_test(test_page_range_overflowing_uint64_is_ebadmsg),
	    cmocka_unit_test(test_zero_bitmap_bits_past_page_count_are_ebadmsg),
	    cmocka_unit_test(test_zero_bitmap_longer_than_page_count_needs_is_ebadmsg),
	    cmocka_unit_test(test_write_payload_len_not_matching_data_pages_is_ebadmsg),
	    cmocka_unit_test(test_read_response_payload_len_not_matching_data_pages_is_ebadmsg),
	    cmocka_unit_test(test_small_op_payload_above_max_is_ebadmsg),
	    cmocka_unit_test(test_payload_on_op_that_takes_none_is_ebadmsg),
	    cmocka_unit_test(test_page_range_on_op_that_takes_none_is_ebadmsg),
	    cmocka_unit_test(test_status_on_request_is_ebadmsg),
	    cmocka_unit_test(test_negative_status_is_ebadmsg),
	    cmocka_unit_test(test_too_long_error_string_and_ns_name_are_ebadmsg),
	    cmocka_unit_test(test_garbage_protobuf_header_is_ebadmsg),
	    cmocka_unit_test(test_mark_zero_pages_and_unpack_restore_every_page),
	    cmocka_unit_test(test_payload_destination_by_frame),
	    cmocka_unit_test(test_page_is_zero_sees_every_byte),
	    cmocka_unit_test(test_encode_refuses_too_small_buffer_with_emsgsize),
	    cmocka_unit_test(test_roundtrip_list_request_and_reply_up_to_list_pages_max),
	    cmocka_unit_test(test_list_page_count_zero_or_above_list_pages_max_is_ebadmsg),
	    cmocka_unit_test(test_list_page_range_overflowing_uint64_is_ebadmsg),
	    cmocka_unit_test(test_list_payload_other_than_one_bit_per_page_is_ebadmsg),
	    cmocka_unit_test(test_list_with_a_zero_bitmap_is_ebadmsg),
	    cmocka_unit_test(test_list_bitmap_valid_only_without_bits_past_page_count),
	};

	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
