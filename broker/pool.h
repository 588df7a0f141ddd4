/* pool.h: the broker's connections to the donors: --pool-conns TCP
 * connections per donor, shared by every VM on the host. Requests are
 * pipelined with ids; a lost connection's requests go back to the queue and
 * are sent again when the donor is reachable, so a fault waits rather than
 * fails. Demand requests always go ahead of prefetches. */
#ifndef BK_POOL_H
#define BK_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "broker.h"
#include "frame.h"

struct bk_req;
/* status: 0 with the donor's reply (h->status may be non-zero), or
 * -EHOSTDOWN for a BK_REQ_FAIL_IF_DOWN request whose donor is unreachable
 * or any request to a dead donor.
 * payload is valid only during the call. The callback owns req. */
typedef void (*bk_req_cb)(struct bk_req *req, int status, const struct gvm_hdr *h,
			  const uint8_t *payload);

enum bk_req_flags {
	BK_REQ_DEMAND = 1,       /* a fault waits on it: ahead of prefetches */
	BK_REQ_FAIL_IF_DOWN = 2, /* do not wait for an unreachable donor */
	BK_REQ_RX_BORROWED = 4,  /* rx_buf is not malloc'd (a VM's memory): never freed */
};

struct bk_req {
	struct bk_req *next;
	struct gvm_hdr hdr; /* id set by the pool */
	const uint8_t *payload;
	unsigned donor;
	unsigned flags;
	bk_req_cb cb; /* recovers its own struct from req: req comes first in it */
	/* NULL, or a malloc'd buffer of rx_cap bytes the reply's payload is
	 * received in (the callback's payload then points into it). The
	 * submitter keeps it; bk_pool_free frees it with a request it never
	 * answered. */
	uint8_t *rx_buf;
	uint32_t rx_cap;
	uint64_t sent_ms;
	uint8_t wire[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
};

/* host_id: this broker's (names.h), which every connection authenticates
 * for; it must outlive the pool. Donors are added with bk_pool_add; a
 * connection unused for idle_ms closes. 0, -EIO when libsodium cannot
 * start, or -ENOMEM. */
int bk_pool_create(struct bk_pool **out, uv_loop_t *loop, const struct gvm_key *key,
		   const char *host_id, unsigned conns_per, unsigned idle_ms);
/* A donor at addr (for logs), resolved by the caller to ss: its index
 * (the next one), or -ENOMEM. Nothing connects until a request waits for
 * it. */
int bk_pool_add(struct bk_pool *p, const char *addr, const struct sockaddr_storage *ss);
/* A donor holding copies of ours keeps one connection open (so its death
 * is seen); others close theirs when idle. */
void bk_pool_set_keep(struct bk_pool *p, unsigned donor, bool keep);
void bk_pool_submit(struct bk_pool *p, struct bk_req *r);
/* A fault now waits on a prefetch: moves the first request queued for donor
 * (not sent yet) that match accepts to the demand queue, ahead of every
 * other prefetch. True if one moved; false if none waits (it may be on
 * its way already). */
bool bk_pool_promote(struct bk_pool *p, unsigned donor,
		     bool (*match)(const struct bk_req *r, const void *ctx), const void *ctx);
/* The rest of r's reply payload is received into buf (cap bytes) instead
 * of r->rx_buf, which is never written again; afterwards r->rx_buf == buf
 * and r->rx_cap == cap. r is submitted and not answered: queued, sent, or
 * with its payload partly received (the bytes already in the old buffer
 * are not copied: buf's content is garbage to the caller until the reply,
 * whose payload pointer then points into buf). buf should hold the
 * largest payload r's reply may carry (at least the old rx_cap); with buf
 * NULL or smaller than a payload on its way, the rest goes into the
 * connection's own buffer and the callback's payload points there. Only
 * when that buffer cannot grow is the connection dropped (r is then sent
 * again, or fails at once if BK_REQ_FAIL_IF_DOWN and no connection to its
 * donor is left: its callback may run inside this call). */
void bk_pool_retarget(struct bk_pool *p, struct bk_req *r, uint8_t *buf, uint32_t cap);
unsigned bk_pool_ready_connections(const struct bk_pool *p);
unsigned bk_pool_donor_connections(const struct bk_pool *p, unsigned donor);
/* Reachable as far as is known: a ready connection, or none needed yet and
 * no failure since the last. */
bool bk_pool_donor_up(const struct bk_pool *p, unsigned donor);
/* When the donor became unreachable (loop ms): its last ready connection
 * went, or a connect failed, while something needed it; 0 while up. */
uint64_t bk_pool_down_since(const struct bk_pool *p, unsigned donor);
/* When the oldest request still unanswered on its connections was sent
 * (loop ms), 0 if none: a donor that stalls. */
uint64_t bk_pool_oldest_ms(const struct bk_pool *p, unsigned donor);
/* A dead donor (replica.c decides): its queued requests fail with
 * -EHOSTDOWN now, and so does every request submitted while it is dead;
 * its connections keep reconnecting, so bk_pool_donor_up shows its return. */
void bk_pool_set_dead(struct bk_pool *p, unsigned donor, bool dead);
/* A removed donor: no more reconnects (its idle connections close). */
void bk_pool_let_go(struct bk_pool *p, unsigned donor);
/* Pages wait for a donor: every reconnect waiting out its backoff is
 * made now. */
void bk_pool_retry_now(struct bk_pool *p);
const char *bk_pool_donor_addr(const struct bk_pool *p, unsigned donor);
/* Closes every connection. Then, once the loop has run the close
 * callbacks, bk_pool_free frees the pool and the requests (malloc'd by
 * their submitters) it never answered. */
void bk_pool_close(struct bk_pool *p);
void bk_pool_free(struct bk_pool *p);

#endif
