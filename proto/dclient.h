/* dclient.h: a blocking donor connection (connect, authenticate, send and
 * receive frames, pipelining allowed) for gvmctl, tests and benchmarks. The
 * broker's libuv pool (broker/pool.c) speaks the same frames asynchronously. */
#ifndef GVM_DCLIENT_H
#define GVM_DCLIENT_H

#include "config.h"
#include "frame.h"

#define GVM_DCONN_TIMEOUT_MS 10000 /* send/receive timeout of one call */
#define GVM_DCONN_HOST_ID "tool"   /* the host id of tools that name none */

struct gvm_dconn;

/* Connects to "host:port" and runs the key handshake, speaking for host
 * (a host id, names.h; NULL: GVM_DCONN_HOST_ID): the donor then lets this
 * connection touch that host's namespaces only. On failure returns -errno
 * and writes the reason ("auth failed: bad key") into why. */
int gvm_dconn_open(struct gvm_dconn **out, const char *addr,
		   const struct gvm_key *key, const char *host, char *why, size_t n);
void gvm_dconn_close(struct gvm_dconn *c);
/* Reason of the last failed call on c. */
const char *gvm_dconn_error(const struct gvm_dconn *c);
int gvm_dconn_fd(const struct gvm_dconn *c);
uint64_t gvm_dconn_next_id(struct gvm_dconn *c);

/* Sends one frame; payload has h->payload_len bytes. */
int gvm_dconn_send(struct gvm_dconn *c, const struct gvm_hdr *h,
		   const void *payload);
/* Sends a WRITE of count pages (zero pages become bits). */
int gvm_dconn_send_write(struct gvm_dconn *c, uint64_t id, uint32_t ns,
			 uint64_t first, uint32_t count, const uint8_t *pages);
/* The same with page tags (Frame.tag_bytes): tags holds count tags of
 * GVM_PAGE_TAG_BYTES, the i-th for page i; those of the data pages follow
 * the pages. A page all zero travels as a zero bit without its tag: it is
 * stored as no page, and reads back zero with a zero tag. NULL: no tags. */
int gvm_dconn_send_write_tagged(struct gvm_dconn *c, uint64_t id, uint32_t ns,
				uint64_t first, uint32_t count, const uint8_t *pages,
				const uint8_t *tags);
/* Receives the next frame; *h and *payload stay valid until the next recv. */
int gvm_dconn_recv(struct gvm_dconn *c, const struct gvm_hdr **h,
		   const uint8_t **payload);

/* Synchronous calls: 0, or -errno with the donor's reason in
 * gvm_dconn_error() (e.g. -ENOSPC "capacity full"). */
int gvm_dconn_open_ns(struct gvm_dconn *c, const char *name, uint32_t *ns);
int gvm_dconn_drop_ns(struct gvm_dconn *c, const char *name);
int gvm_dconn_write(struct gvm_dconn *c, uint32_t ns, uint64_t first,
		    uint32_t count, const uint8_t *pages);
int gvm_dconn_read(struct gvm_dconn *c, uint32_t ns, uint64_t first,
		   uint32_t count, uint8_t *out, uint32_t *zero_pages);
/* With page tags (gvm_dconn_send_write_tagged): the WRITE sends them, the
 * READ asks for them and puts count tags into tags_out, the i-th page's
 * i-th, a zero page's all zero. A donor older than tags closes the
 * connection on a tagged WRITE (its decoder finds payload_len wrong), and
 * answers a tagged READ without tags, which is -EPROTO here. */
int gvm_dconn_write_tagged(struct gvm_dconn *c, uint32_t ns, uint64_t first,
			   uint32_t count, const uint8_t *pages, const uint8_t *tags);
int gvm_dconn_read_tagged(struct gvm_dconn *c, uint32_t ns, uint64_t first,
			  uint32_t count, uint8_t *out, uint32_t *zero_pages,
			  uint8_t *tags_out);
int gvm_dconn_discard(struct gvm_dconn *c, uint32_t ns, uint64_t first,
		      uint32_t count);
/* Which of count pages (1..GVM_LIST_PAGES_MAX) from first the donor holds:
 * gvm_list_bitmap_bytes(count) bytes into bitmap (frame.h). */
int gvm_dconn_list(struct gvm_dconn *c, uint32_t ns, uint64_t first,
		   uint32_t count, uint8_t *bitmap);
int gvm_dconn_ping(struct gvm_dconn *c);
/* ns_name may be NULL or "" (then ns_used_pages is 0). Free *out with
 * gvm__memserver_stats__free_unpacked(*out, NULL). */
int gvm_dconn_stats(struct gvm_dconn *c, const char *ns_name,
		    Gvm__MemserverStats **out);

#endif
