/* frame.c: encode/decode of donor-protocol frames and the incremental reader
 * that every connection (memserver/server.c, proto/dclient.c, the broker's
 * pool) feeds with raw TCP bytes. Nothing is allocated before it is bounded. */
#include "frame.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

static const char *const op_names[] = {
	[GVM__OP__OP_NONE] = "NONE",	   [GVM__OP__OP_AUTH] = "AUTH",
	[GVM__OP__OP_OPEN_NS] = "OPEN_NS", [GVM__OP__OP_READ] = "READ",
	[GVM__OP__OP_WRITE] = "WRITE",	   [GVM__OP__OP_DISCARD] = "DISCARD",
	[GVM__OP__OP_DROP_NS] = "DROP_NS", [GVM__OP__OP_STATS] = "STATS",
	[GVM__OP__OP_PING] = "PING",	   [GVM__OP__OP_LIST] = "LIST",
};
#define OP_MAX GVM__OP__OP_LIST

const char *gvm_op_name(uint32_t op)
{
	return op <= OP_MAX ? op_names[op] : "UNKNOWN";
}

void gvm_hdr_init(struct gvm_hdr *h, uint32_t op, uint64_t id)
{
	memset(h, 0, sizeof(*h));
	h->version = GVM_PROTO_VERSION;
	h->op = op;
	h->id = id;
}

uint32_t gvm_hdr_data_pages(const struct gvm_hdr *h)
{
	uint32_t zeros = 0;

	for (uint32_t i = 0; i < h->page_count && i < GVM_FRAME_PAGES_MAX; i++)
		zeros += gvm_hdr_zero_test(h, i);
	return h->page_count - zeros;
}

/* Any alignment: the loads go through memcpy, which compiles to plain
 * 8-byte loads where that is allowed. */
bool gvm_page_is_zero(const void *page)
{
	const uint8_t *p = page;

	for (size_t i = 0; i < GVM_PAGE_SIZE; i += 32) {
		uint64_t w[4];

		memcpy(w, p + i, sizeof(w));
		if (w[0] | w[1] | w[2] | w[3])
			return false;
	}
	return true;
}

static uint64_t bitmap_bytes(uint32_t pages)
{
	return ((uint64_t)pages + 7u) / 8u;
}

int gvm_hdr_encode(const struct gvm_hdr *h, uint8_t *out, size_t cap)
{
	Gvm__Frame f = GVM__FRAME__INIT;
	size_t len;

	f.version = h->version;
	f.id = h->id;
	f.op = (Gvm__Op)h->op;
	f.response = h->response;
	f.status = h->status;
	f.error.data = (uint8_t *)h->error;
	f.error.len = strlen(h->error);
	f.ns = h->ns;
	f.first_page = h->first_page;
	f.page_count = h->page_count;
	f.payload_len = h->payload_len;
	f.ns_name.data = (uint8_t *)h->ns_name;
	f.ns_name.len = strlen(h->ns_name);
	f.host_id.data = (uint8_t *)h->host_id;
	f.host_id.len = strlen(h->host_id);
	f.tag_bytes = h->tag_bytes;
	if (h->page_count && h->page_count <= GVM_FRAME_PAGES_MAX &&
	    gvm_hdr_data_pages(h) != h->page_count) {
		f.zero_bitmap.data = (uint8_t *)h->zero_bitmap;
		f.zero_bitmap.len = bitmap_bytes(h->page_count);
	}
	len = gvm__frame__get_packed_size(&f);
	if (len > GVM_FRAME_HDR_MAX_BYTES || len + GVM_FRAME_LEN_BYTES > cap)
		return -EMSGSIZE;
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
	gvm__frame__pack(&f, out + GVM_FRAME_LEN_BYTES);
	return (int)(len + GVM_FRAME_LEN_BYTES);
}

/* Copies a text field: at most max bytes on the wire, no NUL inside. */
static bool copy_text(char *dst, const ProtobufCBinaryData *src, size_t max)
{
	dst[0] = '\0';
	if (!src->len)
		return true;
	if (src->len > max || memchr(src->data, 0, src->len))
		return false;
	memcpy(dst, src->data, src->len);
	dst[src->len] = '\0';
	return true;
}

/* protobuf-c allocates while unpacking; the input is at most
 * GVM_FRAME_HDR_MAX_BYTES, so these allocations are bounded too. */
int gvm_hdr_decode(const uint8_t *buf, size_t len, struct gvm_hdr *h,
		   const char **why)
{
	Gvm__Frame *f;
	int err = 0;

	memset(h, 0, sizeof(*h));
	if (len > GVM_FRAME_HDR_MAX_BYTES) {
		*why = "header longer than GVM_FRAME_HDR_MAX_BYTES";
		return -EBADMSG;
	}
	f = gvm__frame__unpack(NULL, len, buf);
	if (!f) {
		*why = "header is not a valid protobuf Frame";
		return -EBADMSG;
	}
	h->version = f->version;
	h->id = f->id;
	h->op = (uint32_t)f->op;
	h->response = f->response;
	h->status = f->status;
	h->ns = f->ns;
	h->first_page = f->first_page;
	h->page_count = f->page_count;
	h->payload_len = f->payload_len;
	h->tag_bytes = f->tag_bytes;
	if (!copy_text(h->error, &f->error, GVM_ERROR_MAX_BYTES)) {
		*why = "error string too long or not text";
		err = -EBADMSG;
	} else if (!copy_text(h->ns_name, &f->ns_name, GVM_NS_NAME_MAX_BYTES)) {
		*why = "namespace name too long or not text";
		err = -EBADMSG;
	} else if (!copy_text(h->host_id, &f->host_id, GVM_HOST_ID_MAX_BYTES)) {
		*why = "host id too long or not text";
		err = -EBADMSG;
	} else if (f->zero_bitmap.len > GVM_FRAME_BITMAP_MAX_BYTES ||
		   f->zero_bitmap.len > bitmap_bytes(f->page_count)) {
		*why = "zero bitmap longer than its page count";
		err = -EBADMSG;
	} else if (f->zero_bitmap.len) {
		memcpy(h->zero_bitmap, f->zero_bitmap.data, f->zero_bitmap.len);
	}
	gvm__frame__free_unpacked(f, NULL);
	return err ? err : gvm_hdr_check(h, why);
}

static int bad(const char **why, const char *reason)
{
	*why = reason;
	return -EBADMSG;
}

/* Bytes an op's payload must have. READ responses and WRITE requests carry
 * the non-zero pages, LIST responses a bit per page; a handful of ops carry
 * a small opaque blob. */
static int check_payload(const struct gvm_hdr *h, const char **why)
{
	bool carries_pages = (h->op == GVM__OP__OP_READ && h->response && !h->status) ||
			     (h->op == GVM__OP__OP_WRITE && !h->response);
	bool carries_list = h->op == GVM__OP__OP_LIST && h->response && !h->status;

	if (carries_pages) {
		if (h->payload_len !=
		    (uint64_t)gvm_hdr_data_pages(h) * (GVM_PAGE_SIZE + h->tag_bytes))
			return bad(why, "payload_len does not match the non-zero pages and their tags");
		return 0;
	}
	if (carries_list) {
		if (h->payload_len != gvm_list_bitmap_bytes(h->page_count))
			return bad(why, "LIST payload_len is not ceil(page_count / 8)");
		return 0;
	}
	switch (h->op) {
	case GVM__OP__OP_AUTH:
	case GVM__OP__OP_STATS:
	case GVM__OP__OP_PING:
		if (h->payload_len > GVM_FRAME_SMALL_PAYLOAD_MAX_BYTES)
			return bad(why, "payload too large for this op");
		return 0;
	default:
		if (h->payload_len)
			return bad(why, "payload on an op that takes none");
		return 0;
	}
}

static bool zero_bitmap_empty(const struct gvm_hdr *h)
{
	for (size_t i = 0; i < sizeof(h->zero_bitmap); i++)
		if (h->zero_bitmap[i])
			return false;
	return true;
}

int gvm_hdr_check(const struct gvm_hdr *h, const char **why)
{
	bool paged = h->op == GVM__OP__OP_READ || h->op == GVM__OP__OP_WRITE ||
		     h->op == GVM__OP__OP_DISCARD;
	bool list = h->op == GVM__OP__OP_LIST;

	if (h->version != GVM_PROTO_VERSION) {
		*why = "unsupported protocol version";
		return -EPROTO;
	}
	if (h->op == GVM__OP__OP_NONE || h->op > OP_MAX)
		return bad(why, "unknown op");
	if (h->status < 0)
		return bad(why, "negative status");
	if (!h->response && h->status)
		return bad(why, "status on a request");
	if (paged) {
		if (h->page_count == 0 || h->page_count > GVM_FRAME_PAGES_MAX)
			return bad(why, "page_count out of range 1..GVM_FRAME_PAGES_MAX");
		if (h->first_page > UINT64_MAX / GVM_PAGE_SIZE - h->page_count)
			return bad(why, "page range overflows the address space");
		/* Bits past page_count in the last bitmap byte must be clear. */
		if (h->page_count % 8 &&
		    h->zero_bitmap[h->page_count / 8] >> (h->page_count % 8))
			return bad(why, "zero bitmap has bits past page_count");
	} else if (list) {
		/* Up to GVM_LIST_PAGES_MAX: far more than the zero bitmap covers,
		 * which a LIST never carries. */
		if (h->page_count == 0 || h->page_count > GVM_LIST_PAGES_MAX)
			return bad(why, "page_count out of range 1..GVM_LIST_PAGES_MAX");
		if (h->first_page > UINT64_MAX / GVM_PAGE_SIZE - h->page_count)
			return bad(why, "page range overflows the address space");
		if (!zero_bitmap_empty(h))
			return bad(why, "zero bitmap on a LIST");
	} else if (h->page_count || h->first_page) {
		return bad(why, "page range on an op that takes none");
	}
	if (h->tag_bytes && h->tag_bytes != GVM_PAGE_TAG_BYTES)
		return bad(why, "tag_bytes is neither 0 nor GVM_PAGE_TAG_BYTES");
	if (h->tag_bytes && h->op != GVM__OP__OP_READ && (h->op != GVM__OP__OP_WRITE || h->response))
		return bad(why, "tag_bytes outside a READ or a WRITE request");
	if (h->host_id[0] && (h->op != GVM__OP__OP_AUTH || h->response))
		return bad(why, "host id outside an AUTH answer");
	if (h->host_id[0] && gvm_host_id_invalid(h->host_id))
		return bad(why, "host id outside a-z 0-9 -");
	return check_payload(h, why);
}

void gvm_reader_init(struct gvm_reader *r)
{
	memset(r, 0, sizeof(*r));
	r->state = GVM_RD_LEN;
	r->need = GVM_FRAME_LEN_BYTES;
	r->max_payload = GVM_FRAME_PAYLOAD_MAX_BYTES;
}

void gvm_reader_limit(struct gvm_reader *r, uint32_t max_payload)
{
	r->max_payload = max_payload < GVM_FRAME_PAYLOAD_MAX_BYTES ? max_payload :
								     GVM_FRAME_PAYLOAD_MAX_BYTES;
}

void gvm_reader_set_dst(struct gvm_reader *r, gvm_payload_dst_fn fn, void *ctx)
{
	r->dst_fn = fn;
	r->dst_ctx = ctx;
}

void gvm_reader_free(struct gvm_reader *r)
{
	free(r->own);
	r->own = r->payload = NULL;
	r->own_cap = 0;
}

void gvm_reader_next(struct gvm_reader *r)
{
	r->state = GVM_RD_LEN;
	r->need = GVM_FRAME_LEN_BYTES;
	r->have = 0;
}

bool gvm_reader_idle(const struct gvm_reader *r)
{
	return r->state == GVM_RD_LEN && r->have == 0;
}

/* Grows the reader's own buffer to hold len bytes: 0 or -ENOMEM. */
static int own_reserve(struct gvm_reader *r, uint32_t len)
{
	uint8_t *p;

	if (len <= r->own_cap)
		return 0;
	p = realloc(r->own, len);
	if (!p)
		return -ENOMEM;
	r->own = p;
	r->own_cap = len;
	return 0;
}

static ssize_t reader_fail(struct gvm_reader *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static ssize_t reader_fail(struct gvm_reader *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
	return err;
}

/* The state just finished: move to the next one. */
static ssize_t reader_step(struct gvm_reader *r)
{
	const char *why;
	uint32_t len;
	int err;

	switch (r->state) {
	case GVM_RD_LEN:
		len = (uint32_t)r->lenbuf[0] << 24 | (uint32_t)r->lenbuf[1] << 16 |
		      (uint32_t)r->lenbuf[2] << 8 | r->lenbuf[3];
		if (len == 0 || len > GVM_FRAME_HDR_MAX_BYTES)
			return reader_fail(r, -EBADMSG, "header length %u outside 1..%u",
					   len, GVM_FRAME_HDR_MAX_BYTES);
		r->state = GVM_RD_HDR;
		r->need = len;
		break;
	case GVM_RD_HDR:
		err = gvm_hdr_decode(r->hdrbuf, r->have, &r->hdr, &why);
		if (err && !r->hdr.version && !r->hdr.op) /* did not parse */
			return reader_fail(r, err, "%s", why);
		if (err)
			return reader_fail(r, err, "%s (op %s, version %u, payload_len %u)", why,
					   gvm_op_name(r->hdr.op), r->hdr.version,
					   r->hdr.payload_len);
		if (r->hdr.payload_len == 0) {
			r->state = GVM_RD_READY;
			return 0;
		}
		if (r->hdr.payload_len > r->max_payload)
			return reader_fail(r, -EBADMSG,
					   "payload_len %u over this connection's limit %u",
					   r->hdr.payload_len, r->max_payload);
		r->payload = r->dst_fn ? r->dst_fn(r->dst_ctx, &r->hdr) : NULL;
		if (!r->payload && own_reserve(r, r->hdr.payload_len))
			return reader_fail(r, -ENOMEM, "no memory for a payload of %u bytes",
					   r->hdr.payload_len);
		if (!r->payload)
			r->payload = r->own;
		r->state = GVM_RD_PAYLOAD;
		r->need = r->hdr.payload_len;
		break;
	case GVM_RD_PAYLOAD:
		r->state = GVM_RD_READY;
		return 0;
	case GVM_RD_READY:
		break;
	}
	r->have = 0;
	return 0;
}

ssize_t gvm_reader_feed(struct gvm_reader *r, const uint8_t *data, size_t len)
{
	size_t used = 0;

	while (used < len) {
		uint8_t *dst;
		size_t n;
		ssize_t err;

		if (r->state == GVM_RD_READY)
			break;
		n = r->need - r->have;
		if (n > len - used)
			n = len - used;
		dst = r->state == GVM_RD_LEN ? r->lenbuf :
		      r->state == GVM_RD_HDR ? r->hdrbuf : r->payload;
		if (data)
			memcpy(dst + r->have, data + used, n);
		r->have += (uint32_t)n;
		used += n;
		if (r->have == r->need) {
			err = reader_step(r);
			if (err < 0)
				return err;
		}
	}
	return (ssize_t)used;
}

size_t gvm_reader_direct(struct gvm_reader *r, uint8_t **dst)
{
	if (r->state != GVM_RD_PAYLOAD)
		return 0;
	*dst = r->payload + r->have;
	return r->need - r->have;
}

int gvm_reader_retarget(struct gvm_reader *r, uint8_t *dst, uint32_t cap)
{
	if (r->state != GVM_RD_PAYLOAD)
		return 0;
	if (!dst || cap < r->hdr.payload_len) {
		if (r->payload == r->own)
			return 0; /* there already */
		if (own_reserve(r, r->hdr.payload_len))
			return -ENOMEM;
		dst = r->own;
	}
	r->payload = dst;
	return 0;
}

uint32_t gvm_hdr_mark_zero_pages(struct gvm_hdr *h, const uint8_t *pages,
				 uint32_t count)
{
	uint32_t data = 0;

	memset(h->zero_bitmap, 0, sizeof(h->zero_bitmap));
	if (count > GVM_FRAME_PAGES_MAX)
		count = GVM_FRAME_PAGES_MAX;
	for (uint32_t i = 0; i < count; i++) {
		if (gvm_page_is_zero(pages + (size_t)i * GVM_PAGE_SIZE))
			gvm_hdr_zero_set(h, i);
		else
			data++;
	}
	return data;
}

void gvm_frame_unpack_pages(const struct gvm_hdr *h, const uint8_t *payload,
			    uint8_t *out)
{
	uint32_t n = h->page_count < GVM_FRAME_PAGES_MAX ? h->page_count : GVM_FRAME_PAGES_MAX;
	uint32_t data = gvm_hdr_data_pages(h);

	/* Last page first: in place, a data page only ever moves up. */
	for (uint32_t i = n; i-- > 0;) {
		uint8_t *to = out + (size_t)i * GVM_PAGE_SIZE;

		if (gvm_hdr_zero_test(h, i)) {
			memset(to, 0, GVM_PAGE_SIZE);
		} else {
			const uint8_t *from = payload + (size_t)--data * GVM_PAGE_SIZE;

			if (to != from)
				memmove(to, from, GVM_PAGE_SIZE);
		}
	}
}

bool gvm_list_bitmap_valid(const uint8_t *bitmap, uint32_t page_count)
{
	return !(page_count % 8) || !(bitmap[page_count / 8] >> (page_count % 8));
}
