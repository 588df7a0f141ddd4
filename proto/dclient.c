/* dclient.c: blocking donor connection over TCP: the handshake of auth.h,
 * then frames through the codec of frame.c. Used by broker/gvmctl.c, the
 * benchmarks in bench/ and the integration tests. */
#include "dclient.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "auth.h"
#include "names.h"

#define DCONN_RBUF_BYTES (256u * 1024u)

struct gvm_dconn {
	int fd;
	uint64_t next_id;
	struct gvm_reader rd;
	uint8_t *rbuf;
	size_t rlen, roff;
	char peer[80];
	char why[320];
};

static int dconn_fail(struct gvm_dconn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int dconn_fail(struct gvm_dconn *c, int err, const char *fmt, ...)
{
	va_list ap;
	int off = snprintf(c->why, sizeof(c->why), "donor %s: ", c->peer);

	va_start(ap, fmt);
	vsnprintf(c->why + off, sizeof(c->why) - (size_t)off, fmt, ap);
	va_end(ap);
	return err;
}

const char *gvm_dconn_error(const struct gvm_dconn *c)
{
	return c->why;
}

int gvm_dconn_fd(const struct gvm_dconn *c)
{
	return c->fd;
}

uint64_t gvm_dconn_next_id(struct gvm_dconn *c)
{
	return ++c->next_id;
}

static int dconn_writev(struct gvm_dconn *c, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(c->fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return dconn_fail(c, -errno, "send: %s", strerror(errno));
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int gvm_dconn_send(struct gvm_dconn *c, const struct gvm_hdr *h,
		   const void *payload)
{
	uint8_t hdr[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
	struct iovec iov[2];
	int len = gvm_hdr_encode(h, hdr, sizeof(hdr));

	if (len < 0)
		return dconn_fail(c, len, "header too large to encode");
	iov[0] = (struct iovec){ hdr, (size_t)len };
	iov[1] = (struct iovec){ (void *)payload, h->payload_len };
	return dconn_writev(c, iov, h->payload_len ? 2 : 1);
}

/* Adds the bytes at p to iov (*cnt used, the first one the header's): to
 * the last one when they follow it in memory, as adjacent pages or tags
 * do (the bytes go out in the same order either way). */
static void iov_append(struct iovec *iov, int *cnt, const uint8_t *p, size_t len)
{
	struct iovec *last = &iov[*cnt - 1];

	if (*cnt > 1 && (const uint8_t *)last->iov_base + last->iov_len == p)
		last->iov_len += len;
	else
		iov[(*cnt)++] = (struct iovec){ (void *)p, len };
}

int gvm_dconn_send_write_tagged(struct gvm_dconn *c, uint64_t id, uint32_t ns,
				uint64_t first, uint32_t count, const uint8_t *pages,
				const uint8_t *tags)
{
	uint8_t hdr[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
	struct iovec iov[1 + 2 * GVM_FRAME_PAGES_MAX]; /* header, pages, tags */
	struct gvm_hdr h;
	int len, cnt = 1;

	if (count == 0 || count > GVM_FRAME_PAGES_MAX)
		return dconn_fail(c, -EINVAL, "write of %u pages", count);
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, id);
	h.ns = ns;
	h.first_page = first;
	h.page_count = count;
	h.tag_bytes = tags ? GVM_PAGE_TAG_BYTES : 0;
	h.payload_len = gvm_hdr_mark_zero_pages(&h, pages, count) * (GVM_PAGE_SIZE + h.tag_bytes);
	len = gvm_hdr_encode(&h, hdr, sizeof(hdr));
	if (len < 0)
		return dconn_fail(c, len, "header too large to encode");
	iov[0] = (struct iovec){ hdr, (size_t)len };
	for (uint32_t i = 0; i < count; i++)
		if (!gvm_hdr_zero_test(&h, i))
			iov_append(iov, &cnt, pages + (size_t)i * GVM_PAGE_SIZE, GVM_PAGE_SIZE);
	for (uint32_t i = 0; tags && i < count; i++)
		if (!gvm_hdr_zero_test(&h, i))
			iov_append(iov, &cnt, tags + (size_t)i * GVM_PAGE_TAG_BYTES, GVM_PAGE_TAG_BYTES);
	return dconn_writev(c, iov, cnt);
}

int gvm_dconn_send_write(struct gvm_dconn *c, uint64_t id, uint32_t ns,
			 uint64_t first, uint32_t count, const uint8_t *pages)
{
	return gvm_dconn_send_write_tagged(c, id, ns, first, count, pages, NULL);
}

int gvm_dconn_recv(struct gvm_dconn *c, const struct gvm_hdr **h,
		   const uint8_t **payload)
{
	if (gvm_reader_ready(&c->rd))
		gvm_reader_next(&c->rd);
	while (!gvm_reader_ready(&c->rd)) {
		uint8_t *dst;
		size_t want = gvm_reader_direct(&c->rd, &dst);
		ssize_t n;

		if (c->roff < c->rlen) {
			n = gvm_reader_feed(&c->rd, c->rbuf + c->roff, c->rlen - c->roff);
			if (n < 0)
				return dconn_fail(c, (int)n, "bad frame: %s", c->rd.why);
			c->roff += (size_t)n;
			continue;
		}
		/* Large payload remainders go straight to their place. */
		if (want >= DCONN_RBUF_BYTES / 4) {
			n = recv(c->fd, dst, want, 0);
			if (n > 0) {
				gvm_reader_feed(&c->rd, NULL, (size_t)n);
				continue;
			}
		} else {
			n = recv(c->fd, c->rbuf, DCONN_RBUF_BYTES, 0);
			if (n > 0) {
				c->rlen = (size_t)n;
				c->roff = 0;
				continue;
			}
		}
		if (n == 0)
			return dconn_fail(c, -ECONNRESET, "connection closed by the donor");
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return dconn_fail(c, -ETIMEDOUT, "no answer within %d ms",
					  GVM_DCONN_TIMEOUT_MS);
		return dconn_fail(c, -errno, "receive: %s", strerror(errno));
	}
	*h = &c->rd.hdr;
	*payload = c->rd.payload;
	return 0;
}

/* Waits for the response to request id; a non-zero status becomes -status
 * with the donor's reason. */
static int dconn_expect(struct gvm_dconn *c, uint64_t id, uint32_t op,
			const struct gvm_hdr **h, const uint8_t **p)
{
	int err = gvm_dconn_recv(c, h, p);

	if (err)
		return err;
	if (!(*h)->response || (*h)->id != id || (*h)->op != op)
		return dconn_fail(c, -EPROTO, "unexpected %s id %llu",
				  gvm_op_name((*h)->op), (unsigned long long)(*h)->id);
	if ((*h)->status)
		return dconn_fail(c, -(*h)->status, "%s refused: %s", gvm_op_name(op),
				  (*h)->error[0] ? (*h)->error : strerror((*h)->status));
	return 0;
}

/* Sends req (with a fresh id) and waits for its response. */
static int dconn_call(struct gvm_dconn *c, struct gvm_hdr *req,
		      const void *payload, const struct gvm_hdr **resp,
		      const uint8_t **rpayload)
{
	int err;

	req->id = gvm_dconn_next_id(c);
	err = gvm_dconn_send(c, req, payload);
	return err ? err : dconn_expect(c, req->id, req->op, resp, rpayload);
}

static int dconn_auth(struct gvm_dconn *c, const struct gvm_key *key, const char *host)
{
	uint8_t donor_nonce[GVM_AUTH_NONCE_BYTES], mac[GVM_AUTH_MAC_BYTES];
	uint8_t answer[GVM_AUTH_NONCE_BYTES + GVM_AUTH_MAC_BYTES];
	const struct gvm_hdr *h;
	const uint8_t *p;
	struct gvm_hdr req;
	int err;

	err = gvm_dconn_recv(c, &h, &p);
	if (err)
		return err;
	if (h->op != GVM__OP__OP_AUTH || h->payload_len != GVM_AUTH_NONCE_BYTES)
		return dconn_fail(c, -EPROTO, "expected an AUTH challenge, got %s",
				  gvm_op_name(h->op));
	memcpy(donor_nonce, p, sizeof(donor_nonce));
	gvm_auth_nonce(answer);
	gvm_auth_client_mac(key, donor_nonce, answer, host, answer + GVM_AUTH_NONCE_BYTES);
	gvm_hdr_init(&req, GVM__OP__OP_AUTH, 0);
	snprintf(req.host_id, sizeof(req.host_id), "%s", host);
	req.payload_len = sizeof(answer);
	err = dconn_call(c, &req, answer, &h, &p);
	if (err == -EACCES)
		return dconn_fail(c, err, "auth failed: %s",
				  h->error[0] ? h->error : "bad key");
	if (err)
		return err;
	gvm_auth_donor_mac(key, donor_nonce, answer, host, mac);
	if (h->payload_len != GVM_AUTH_MAC_BYTES || !gvm_auth_mac_equal(mac, p))
		return dconn_fail(c, -EACCES, "auth failed: the donor did not prove the cluster key");
	return 0;
}

int gvm_dconn_open(struct gvm_dconn **out, const char *addr,
		   const struct gvm_key *key, const char *host, char *why, size_t n)
{
	struct timeval tv = { GVM_DCONN_TIMEOUT_MS / 1000,
			      (GVM_DCONN_TIMEOUT_MS % 1000) * 1000 };
	struct sockaddr_storage ss;
	struct gvm_dconn *c;
	socklen_t sslen;
	int one = 1, err;

	if (!host)
		host = GVM_DCONN_HOST_ID;
	if (gvm_host_id_invalid(host)) {
		snprintf(why, n, "host id '%s' %s", host, gvm_host_id_invalid(host));
		return -EINVAL;
	}
	err = gvm_auth_init();
	if (err) {
		snprintf(why, n, "libsodium failed to initialise");
		return err;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->rbuf = malloc(DCONN_RBUF_BYTES))) {
		free(c);
		snprintf(why, n, "out of memory");
		return -ENOMEM;
	}
	c->fd = -1;
	snprintf(c->peer, sizeof(c->peer), "%s", addr);
	gvm_reader_init(&c->rd);
	err = gvm_parse_hostport(addr, GVM_DONOR_DEFAULT_PORT, &ss, &sslen);
	if (err) {
		dconn_fail(c, err, "not a HOST:PORT address");
		goto fail;
	}
	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		err = dconn_fail(c, -errno, "socket: %s", strerror(errno));
		goto fail;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&ss, sslen) < 0) {
		err = dconn_fail(c, -errno, "connect: %s", strerror(errno));
		goto fail;
	}
	err = dconn_auth(c, key, host);
	if (err)
		goto fail;
	*out = c;
	return 0;
fail:
	snprintf(why, n, "%s", c->why);
	gvm_dconn_close(c);
	return err;
}

void gvm_dconn_close(struct gvm_dconn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	gvm_reader_free(&c->rd);
	free(c->rbuf);
	free(c);
}

int gvm_dconn_open_ns(struct gvm_dconn *c, const char *name, uint32_t *ns)
{
	const struct gvm_hdr *h;
	const uint8_t *p;
	struct gvm_hdr req;
	int err;

	if (strlen(name) > GVM_NS_NAME_MAX_BYTES)
		return dconn_fail(c, -ENAMETOOLONG, "namespace name longer than %u",
				  GVM_NS_NAME_MAX_BYTES);
	gvm_hdr_init(&req, GVM__OP__OP_OPEN_NS, 0);
	strcpy(req.ns_name, name);
	err = dconn_call(c, &req, NULL, &h, &p);
	if (!err)
		*ns = h->ns;
	return err;
}

int gvm_dconn_drop_ns(struct gvm_dconn *c, const char *name)
{
	const struct gvm_hdr *h;
	const uint8_t *p;
	struct gvm_hdr req;

	if (strlen(name) > GVM_NS_NAME_MAX_BYTES)
		return dconn_fail(c, -ENAMETOOLONG, "namespace name too long");
	gvm_hdr_init(&req, GVM__OP__OP_DROP_NS, 0);
	strcpy(req.ns_name, name);
	return dconn_call(c, &req, NULL, &h, &p);
}

int gvm_dconn_write_tagged(struct gvm_dconn *c, uint32_t ns, uint64_t first,
			   uint32_t count, const uint8_t *pages, const uint8_t *tags)
{
	const struct gvm_hdr *h;
	const uint8_t *p;
	uint64_t id = gvm_dconn_next_id(c);
	int err = gvm_dconn_send_write_tagged(c, id, ns, first, count, pages, tags);

	return err ? err : dconn_expect(c, id, GVM__OP__OP_WRITE, &h, &p);
}

int gvm_dconn_write(struct gvm_dconn *c, uint32_t ns, uint64_t first,
		    uint32_t count, const uint8_t *pages)
{
	return gvm_dconn_write_tagged(c, ns, first, count, pages, NULL);
}

/* A request for pages [first, first+count) of ns with no payload (READ,
 * DISCARD, LIST; a READ may ask for tags), and its answer. */
static int dconn_paged(struct gvm_dconn *c, Gvm__Op op, uint32_t ns, uint64_t first,
		       uint32_t count, uint32_t tag_bytes, const struct gvm_hdr **h,
		       const uint8_t **p)
{
	struct gvm_hdr req;

	gvm_hdr_init(&req, op, 0);
	req.ns = ns;
	req.first_page = first;
	req.page_count = count;
	req.tag_bytes = tag_bytes;
	return dconn_call(c, &req, NULL, h, p);
}

int gvm_dconn_read_tagged(struct gvm_dconn *c, uint32_t ns, uint64_t first,
			  uint32_t count, uint8_t *out, uint32_t *zero_pages,
			  uint8_t *tags_out)
{
	uint32_t tag_bytes = tags_out ? GVM_PAGE_TAG_BYTES : 0;
	const uint8_t *p, *tags;
	const struct gvm_hdr *h;
	int err = dconn_paged(c, GVM__OP__OP_READ, ns, first, count, tag_bytes, &h, &p);

	if (err)
		return err;
	if (h->page_count != count || h->first_page != first)
		return dconn_fail(c, -EPROTO, "READ answered a different range");
	if (h->tag_bytes != tag_bytes)
		return dconn_fail(c, -EPROTO, "READ answered with tag_bytes %u, asked for %u",
				  h->tag_bytes, tag_bytes);
	if (tags_out) {
		tags = gvm_frame_tags(h, p);
		for (uint32_t i = 0; i < count; i++, tags_out += GVM_PAGE_TAG_BYTES) {
			if (gvm_hdr_zero_test(h, i)) {
				memset(tags_out, 0, GVM_PAGE_TAG_BYTES);
			} else {
				memcpy(tags_out, tags, GVM_PAGE_TAG_BYTES);
				tags += GVM_PAGE_TAG_BYTES;
			}
		}
	}
	gvm_frame_unpack_pages(h, p, out);
	if (zero_pages)
		*zero_pages = count - gvm_hdr_data_pages(h);
	return 0;
}

int gvm_dconn_read(struct gvm_dconn *c, uint32_t ns, uint64_t first,
		   uint32_t count, uint8_t *out, uint32_t *zero_pages)
{
	return gvm_dconn_read_tagged(c, ns, first, count, out, zero_pages, NULL);
}

int gvm_dconn_discard(struct gvm_dconn *c, uint32_t ns, uint64_t first,
		      uint32_t count)
{
	const struct gvm_hdr *h;
	const uint8_t *p;

	return dconn_paged(c, GVM__OP__OP_DISCARD, ns, first, count, 0, &h, &p);
}

int gvm_dconn_list(struct gvm_dconn *c, uint32_t ns, uint64_t first,
		   uint32_t count, uint8_t *bitmap)
{
	const struct gvm_hdr *h;
	const uint8_t *p;
	int err = dconn_paged(c, GVM__OP__OP_LIST, ns, first, count, 0, &h, &p);

	if (err)
		return err;
	if (h->ns != ns || h->page_count != count || h->first_page != first)
		return dconn_fail(c, -EPROTO, "LIST answered another namespace or range");
	if (!gvm_list_bitmap_valid(p, count))
		return dconn_fail(c, -EPROTO, "LIST bitmap has bits past its page count");
	memcpy(bitmap, p, h->payload_len);
	return 0;
}

int gvm_dconn_ping(struct gvm_dconn *c)
{
	const struct gvm_hdr *h;
	const uint8_t *p;
	struct gvm_hdr req;

	gvm_hdr_init(&req, GVM__OP__OP_PING, 0);
	return dconn_call(c, &req, NULL, &h, &p);
}

int gvm_dconn_stats(struct gvm_dconn *c, const char *ns_name,
		    Gvm__MemserverStats **out)
{
	const struct gvm_hdr *h;
	const uint8_t *p;
	struct gvm_hdr req;
	int err;

	gvm_hdr_init(&req, GVM__OP__OP_STATS, 0);
	if (ns_name) {
		if (strlen(ns_name) > GVM_NS_NAME_MAX_BYTES)
			return dconn_fail(c, -ENAMETOOLONG, "namespace name too long");
		strcpy(req.ns_name, ns_name);
	}
	err = dconn_call(c, &req, NULL, &h, &p);
	if (err)
		return err;
	*out = gvm__memserver_stats__unpack(NULL, h->payload_len, p);
	if (!*out)
		return dconn_fail(c, -EBADMSG, "STATS payload is not MemserverStats");
	return 0;
}
