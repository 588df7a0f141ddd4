/* pool.c: the donor connection pool (pool.h). Each connection authenticates
 * (proto/auth.c), then carries pipelined frames; replies come back in
 * order, so the oldest request in flight on a connection is the one a reply
 * answers. Failures close the connection, requeue its requests at the front
 * and reconnect with backoff; one log line says when a donor goes away and
 * one when it is back.
 *
 * Connections are opened when needed: when a request waits for a donor
 * that has no ready connection free for it, its --pool-conns connections
 * start. One with nothing in flight for the idle time closes, except a
 * donor's last one while the donor is kept
 * (it holds copies of ours, so its death must be seen) or dead (to see it
 * return). A donor never used costs no descriptor. */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "stats.h"

/* Between payloads the socket is read in pieces this small: a frame's length
 * and header, or a few small frames. A page payload is then received
 * straight into its final buffer (on_alloc) instead of being copied there
 * from a large read buffer, which the broker's profile showed as an eighth
 * of its CPU. */
#define POOL_READ_BUF_BYTES (GVM_FRAME_LEN_BYTES + 508u)

/* At most this many connections of the pool are being made (connect and
 * AUTH) at once; the rest queue. Thousands of donors needed at once (a
 * restart's LIST of every donor) then do not flood the network with
 * handshakes, nor trip a donor's limit on unauthenticated peers of one
 * source (16 a thread, memserver.h) when it serves many addresses. */
#define POOL_CONNECTING_MAX 16u

enum conn_state {
	CONN_DOWN,
	CONN_QUEUED, /* to be started when fewer are being made */
	CONN_CONNECTING,
	CONN_AUTH,
	CONN_READY,
	CONN_CLOSING,
};

struct bk_conn {
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_timer_t timer; /* reconnect backoff, and the stall and idle check */
	struct bk_donor *d;
	unsigned index;
	enum conn_state state;
	bool retry_pending; /* timer: a reconnect is due */
	bool making;        /* counted in the pool's connections being made */
	struct bk_conn *qnext; /* CONN_QUEUED: the next in the pool's queue */
	uint64_t used_ms;   /* last request sent or answered */
	struct gvm_reader rd;
	struct bk_req *head, *tail; /* in flight, oldest first */
	unsigned ninflight, nprefetch;
	unsigned backoff_ms;
	uint8_t client_nonce[GVM_AUTH_NONCE_BYTES];
	uint8_t donor_nonce[GVM_AUTH_NONCE_BYTES];
	uint8_t auth_wire[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES +
			  GVM_AUTH_NONCE_BYTES + GVM_AUTH_MAC_BYTES];
	uv_write_t auth_write;
	uint8_t *rbuf;
};

struct bk_queue {
	struct bk_req *head, *tail;
};

struct bk_donor {
	struct bk_pool *p;
	unsigned index;
	char addr[128];
	struct sockaddr_storage ss;
	struct bk_conn *conns;  /* conns_per, allocated at the first use */
	unsigned nready;
	bool was_up, reported_down;
	bool dead;              /* declared dead (replica.c): every request fails at once */
	bool keep;              /* holds copies of ours: one connection stays */
	/* When it became unreachable (its last ready connection went, or a
	 * connect failed with none ready); 0 while up or unused. */
	uint64_t down_since_ms;
	struct bk_queue demand, prefetch;
};

struct bk_pool {
	uv_loop_t *loop;
	const struct gvm_key *key;
	const char *host_id; /* this broker's, named in every AUTH */
	struct bk_donor **donors; /* entries never move */
	unsigned ndonors, cap, conns_per, idle_ms;
	unsigned making;                 /* connections in CONNECTING or AUTH */
	struct bk_conn *queued, **queued_tail;
	uint64_t next_id;
	bool closing;
};

static void conn_start(struct bk_conn *c);
static void donor_kick(struct bk_donor *d);

/* c is no longer being made (it is ready, or failed): a queued one starts. */
static void conn_made(struct bk_conn *c)
{
	struct bk_pool *p = c->d->p;

	if (!c->making)
		return;
	c->making = false;
	p->making--;
	while (p->queued && p->making < POOL_CONNECTING_MAX) {
		struct bk_conn *q = p->queued;

		p->queued = q->qnext;
		if (!p->queued)
			p->queued_tail = &p->queued;
		q->qnext = NULL;
		if (q->state == CONN_QUEUED) {
			q->state = CONN_DOWN;
			conn_start(q);
		}
	}
}

static void on_reconnect(uv_timer_t *t)
{
	struct bk_conn *c = t->data;

	c->retry_pending = false;
	conn_start(c);
}

/* Whether a connection to d should be kept or made again. */
static bool donor_wanted(const struct bk_donor *d)
{
	/* (a donor found down is tried until it answers or is dead: else it
	 * could never be placed on again before being declared dead) */
	if (d->demand.head || d->prefetch.head || d->keep || d->dead || d->down_since_ms)
		return true;
	for (unsigned k = 0; d->conns && k < d->p->conns_per; k++)
		if (d->conns[k].head)
			return true;
	return false;
}

static void queue_push(struct bk_queue *q, struct bk_req *r)
{
	r->next = NULL;
	if (q->tail)
		q->tail->next = r;
	else
		q->head = r;
	q->tail = r;
}

static void queue_push_front(struct bk_queue *q, struct bk_req *r)
{
	r->next = q->head;
	q->head = r;
	if (!q->tail)
		q->tail = r;
}

static struct bk_req *queue_pop(struct bk_queue *q)
{
	struct bk_req *r = q->head;

	if (r) {
		q->head = r->next;
		if (!q->head)
			q->tail = NULL;
		r->next = NULL;
	}
	return r;
}

static struct bk_queue *queue_for(struct bk_donor *d, const struct bk_req *r)
{
	return r->flags & BK_REQ_DEMAND ? &d->demand : &d->prefetch;
}

/* Fails the queued requests that must not wait for an unreachable donor. */
static void donor_fail_impatient(struct bk_donor *d)
{
	struct bk_queue *qs[2] = { &d->demand, &d->prefetch };

	for (int i = 0; i < 2; i++) {
		struct bk_queue keep = { 0 };
		struct bk_req *r;

		while ((r = queue_pop(qs[i]))) {
			if (r->flags & BK_REQ_FAIL_IF_DOWN)
				r->cb(r, -EHOSTDOWN, NULL, NULL);
			else
				queue_push(&keep, r);
		}
		*qs[i] = keep;
	}
}

static void conn_closed(uv_handle_t *h)
{
	struct bk_conn *c = h->data;

	if (c->d->p->closing)
		return;
	c->state = CONN_DOWN;
	if (c->backoff_ms && donor_wanted(c->d)) { /* after a failure, not an idle close */
		c->retry_pending = true;
		uv_timer_start(&c->timer, on_reconnect, c->backoff_ms, 0);
	}
}

/* Drops a connection: its requests go back to the front of the queue. */
static void conn_fail(struct bk_conn *c, const char *why)
{
	struct bk_donor *d = c->d;
	struct bk_req *r, *requeue = NULL;

	if (c->state == CONN_CLOSING || c->state == CONN_DOWN || c->state == CONN_QUEUED)
		return;
	conn_made(c);
	if (c->state == CONN_READY)
		d->nready--;
	/* Keep the original order when pushing back to the front. */
	while ((r = c->head)) {
		c->head = r->next;
		r->next = requeue;
		requeue = r;
	}
	while ((r = requeue)) {
		requeue = r->next;
		queue_push_front(queue_for(d, r), r);
	}
	c->tail = NULL;
	c->ninflight = c->nprefetch = 0;
	c->state = CONN_CLOSING;
	/* Unreachable from now, if anything needs it (a donor nobody needs is
	 * found out at its next use); not again on each failed reconnect. */
	bool wanted = donor_wanted(d);

	if (d->nready == 0 && !d->down_since_ms && wanted)
		d->down_since_ms = uv_now(d->p->loop);
	if (!wanted) {
		gvm_debug("donor %s: connection %u: %s; not needed now", d->addr, c->index, why);
	} else if (d->nready == 0 && !d->reported_down && !d->dead) {
		gvm_warn("donor %s: unreachable (%s); reads go to other copies or wait, retrying",
			 d->addr, why);
		d->reported_down = true;
	} else if (!d->reported_down) {
		gvm_info("donor %s: connection %u lost (%s); reconnecting", d->addr, c->index, why);
	} else {
		gvm_debug("donor %s: connection %u: %s", d->addr, c->index, why);
	}
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BK_RECONNECT_MIN_MS;
	if (c->backoff_ms > BK_RECONNECT_MAX_MS)
		c->backoff_ms = BK_RECONNECT_MAX_MS;
	uv_timer_stop(&c->timer);
	gvm_reader_next(&c->rd);
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
	if (d->nready == 0)
		donor_fail_impatient(d);
}

/* A request's uv_write_t lives apart from it: the donor's answer can be
 * read, and the request freed by its owner, before libuv reports the
 * write done (both in one loop iteration on a fast peer), and libuv still
 * touches the write request then. */
static void on_req_written(uv_write_t *w, int status)
{
	(void)status; /* a failed write shows up as a read error too */
	free(w);
}

static void conn_send(struct bk_conn *c, struct bk_req *r)
{
	uv_write_t *w = malloc(sizeof(*w));
	uv_buf_t bufs[2];
	int len, err;

	r->hdr.id = ++c->d->p->next_id;
	len = gvm_hdr_encode(&r->hdr, r->wire, sizeof(r->wire));
	bufs[0] = uv_buf_init((char *)r->wire, (unsigned)len);
	bufs[1] = uv_buf_init((char *)r->payload, r->hdr.payload_len);
	r->sent_ms = uv_now(c->d->p->loop);
	c->used_ms = r->sent_ms;
	r->next = NULL;
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	c->ninflight++;
	if (!(r->flags & BK_REQ_DEMAND))
		c->nprefetch++;
	if (!w) {
		bk_stats.alloc_failures++; /* the request is sent again: conn_fail says why */
		conn_fail(c, "out of memory for a write request");
		return;
	}
	err = uv_write(w, (uv_stream_t *)&c->tcp, bufs, r->hdr.payload_len ? 2 : 1,
		       on_req_written);
	if (err) {
		free(w);
		conn_fail(c, uv_strerror(err));
	}
}

/* The ready connection with the fewest requests in flight that may take r. */
static struct bk_conn *donor_pick(struct bk_donor *d, bool demand)
{
	struct bk_conn *best = NULL;

	for (unsigned i = 0; d->conns && i < d->p->conns_per; i++) {
		struct bk_conn *c = &d->conns[i];

		if (c->state != CONN_READY || c->ninflight >= BK_CONN_INFLIGHT_MAX)
			continue;
		if (!demand && c->nprefetch >= BK_CONN_PREFETCH_INFLIGHT_MAX)
			continue;
		if (!best || c->ninflight < best->ninflight)
			best = c;
	}
	return best;
}

static int conns_alloc(struct bk_donor *d);

/* Requests wait that no ready connection may take: the donor's closed
 * connections are started (a donor in use carries parallel requests),
 * unless one is on its way or due (a failed donor is tried at its
 * backoff, not at every request). */
static void donor_connect_more(struct bk_donor *d)
{
	if (d->p->closing)
		return;
	if (!d->conns && conns_alloc(d)) {
		bk_stats_nomem("donor %s: its connections: its requests wait for the next try",
			       d->addr);
		return;
	}
	for (unsigned k = 0; k < d->p->conns_per; k++) {
		struct bk_conn *c = &d->conns[k];

		if (c->state == CONN_CONNECTING || c->state == CONN_AUTH || c->state == CONN_QUEUED ||
		    c->retry_pending)
			return;
	}
	for (unsigned k = 0; k < d->p->conns_per; k++)
		if (d->conns[k].state == CONN_DOWN)
			conn_start(&d->conns[k]);
}

static void donor_kick(struct bk_donor *d)
{
	struct bk_conn *c;

	while (d->demand.head && (c = donor_pick(d, true)))
		conn_send(c, queue_pop(&d->demand));
	while (d->prefetch.head && (c = donor_pick(d, false)))
		conn_send(c, queue_pop(&d->prefetch));
	if (d->demand.head || d->prefetch.head || (d->keep && !d->nready))
		donor_connect_more(d);
}

void bk_pool_submit(struct bk_pool *p, struct bk_req *r)
{
	struct bk_donor *d = p->donors[r->donor];

	if (d->dead || ((r->flags & BK_REQ_FAIL_IF_DOWN) && !d->nready && d->down_since_ms)) {
		r->cb(r, -EHOSTDOWN, NULL, NULL);
		return;
	}
	queue_push(queue_for(d, r), r);
	donor_kick(d);
}

bool bk_pool_promote(struct bk_pool *p, unsigned donor,
		     bool (*match)(const struct bk_req *r, const void *ctx), const void *ctx)
{
	struct bk_donor *d = p->donors[donor];
	struct bk_req *prev = NULL;

	for (struct bk_req *r = d->prefetch.head; r; prev = r, r = r->next) {
		if (!match(r, ctx))
			continue;
		if (prev)
			prev->next = r->next;
		else
			d->prefetch.head = r->next;
		if (d->prefetch.tail == r)
			d->prefetch.tail = prev;
		r->flags |= BK_REQ_DEMAND;
		queue_push(&d->demand, r);
		donor_kick(d);
		return true;
	}
	return false;
}

void bk_pool_retarget(struct bk_pool *p, struct bk_req *r, uint8_t *buf, uint32_t cap)
{
	struct bk_donor *d = p->donors[r->donor];
	uint8_t *old = r->rx_buf;
	struct bk_conn *c = NULL;

	/* Queued, or sent with its reply's header not read yet: payload_dst
	 * reads r->rx_buf when the header comes. Only the oldest request in
	 * flight on a connection can have its payload on its way. */
	for (unsigned k = 0; old && d->conns && k < p->conns_per && !c; k++)
		if (d->conns[k].head == r && d->conns[k].rd.state == GVM_RD_PAYLOAD &&
		    d->conns[k].rd.payload == old)
			c = &d->conns[k];
	r->rx_buf = buf;
	r->rx_cap = cap;
	if (c && gvm_reader_retarget(&c->rd, buf, cap)) {
		bk_stats_nomem("donor %s: the rest of a reply's payload: the connection closes and "
			       "its requests are sent again", d->addr);
		conn_fail(c, "out of memory for a reply's payload");
	}
}

static void conn_ready(struct bk_conn *c)
{
	struct bk_donor *d = c->d;

	c->state = CONN_READY;
	conn_made(c);
	c->backoff_ms = 0;
	c->used_ms = uv_now(d->p->loop);
	d->nready++;
	d->down_since_ms = 0;
	if (d->dead)
		; /* replica.c says it is back */
	else if (d->reported_down)
		gvm_info("donor %s: reachable again", d->addr);
	else if (!d->was_up && d->nready == 1)
		gvm_info("donor %s: connected", d->addr);
	d->reported_down = false;
	d->was_up = true;
	donor_kick(d);
}

static void on_auth_written(uv_write_t *w, int status)
{
	(void)w;
	(void)status;
}

/* Why reply h cannot be the answer to request q, or NULL when it is: the
 * same op, namespace and page range, and what the op's success carries.
 * (The codec has bounded every length and matched payload_len to the zero
 * bits already.) */
static const char *reply_mismatch(const struct gvm_hdr *q, const struct gvm_hdr *h)
{
	bool paged = q->op == GVM__OP__OP_READ || q->op == GVM__OP__OP_WRITE ||
		     q->op == GVM__OP__OP_DISCARD || q->op == GVM__OP__OP_LIST;

	if (h->op != q->op)
		return "the reply is for another op";
	if (paged && h->ns != q->ns)
		return "the reply names another namespace";
	if (paged && (h->first_page != q->first_page || h->page_count != q->page_count))
		return "the reply covers other pages than asked";
	if (!h->status && q->op == GVM__OP__OP_READ && h->tag_bytes != q->tag_bytes)
		return h->tag_bytes ? "the READ reply carries tags that were not asked for" :
				      "the READ reply has no page tags (a donor older than sealed pages?)";
	if (!h->status && q->op == GVM__OP__OP_OPEN_NS && !h->ns)
		return "OPEN_NS answered namespace 0";
	if (!h->status && q->op == GVM__OP__OP_LIST &&
	    h->payload_len != gvm_list_bitmap_bytes(q->page_count))
		return "LIST answered a bitmap of another size";
	if (!h->status && q->op != GVM__OP__OP_READ && q->op != GVM__OP__OP_STATS &&
	    q->op != GVM__OP__OP_LIST && h->payload_len)
		return "the reply carries a payload its op has none of";
	return NULL;
}

/* A donor that broke the protocol: one line naming it and what it sent;
 * the connection closes and its requests go back to the queue (conn_fail),
 * to be sent again on the next connection. Nothing of the reply is used. */
static void conn_reject(struct bk_conn *c, const struct gvm_hdr *h, const char *why)
{
	bk_stats.donor_errors++;
	gvm_warn("donor %s: closing connection %u: %s (%s id %llu, ns %u, pages %llu+%u, "
		 "payload %u)", c->d->addr, c->index, why, gvm_op_name(h->op),
		 (unsigned long long)h->id, h->ns, (unsigned long long)h->first_page, h->page_count,
		 h->payload_len);
	conn_fail(c, "protocol violation");
}

static void conn_handle_frame(struct bk_conn *c, const struct gvm_hdr *h, const uint8_t *p)
{
	const struct gvm_key *key = c->d->p->key;
	uint8_t mac[GVM_AUTH_MAC_BYTES];
	const char *why;
	struct bk_req *r;

	if (c->state == CONN_AUTH) {
		if (h->op != GVM__OP__OP_AUTH) {
			conn_fail(c, "expected AUTH");
			return;
		}
		if (!h->response) { /* the challenge */
			struct gvm_hdr a;
			int len;

			if (h->payload_len != GVM_AUTH_NONCE_BYTES) {
				conn_fail(c, "bad AUTH challenge");
				return;
			}
			memcpy(c->donor_nonce, p, GVM_AUTH_NONCE_BYTES);
			gvm_auth_nonce(c->client_nonce);
			gvm_hdr_init(&a, GVM__OP__OP_AUTH, 0);
			snprintf(a.host_id, sizeof(a.host_id), "%s", c->d->p->host_id);
			a.payload_len = GVM_AUTH_NONCE_BYTES + GVM_AUTH_MAC_BYTES;
			len = gvm_hdr_encode(&a, c->auth_wire, GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES);
			memcpy(c->auth_wire + len, c->client_nonce, GVM_AUTH_NONCE_BYTES);
			gvm_auth_client_mac(key, c->donor_nonce, c->client_nonce, c->d->p->host_id,
					    c->auth_wire + len + GVM_AUTH_NONCE_BYTES);
			uv_buf_t b = uv_buf_init((char *)c->auth_wire,
						 (unsigned)len + GVM_AUTH_NONCE_BYTES + GVM_AUTH_MAC_BYTES);
			if (uv_write(&c->auth_write, (uv_stream_t *)&c->tcp, &b, 1, on_auth_written))
				conn_fail(c, "send AUTH");
			return;
		}
		if (h->status) {
			if (c->d->reported_down)
				; /* said once already */
			else if (h->status == EACCES)
				gvm_err("donor %s: auth failed: %s (is --key-file the cluster key?)",
					c->d->addr, h->error[0] ? h->error : "refused");
			else
				gvm_warn("donor %s: refused the connection: %s", c->d->addr,
					 h->error[0] ? h->error : strerror(h->status));
			conn_fail(c, "auth refused");
			return;
		}
		gvm_auth_donor_mac(key, c->donor_nonce, c->client_nonce, c->d->p->host_id, mac);
		if (h->payload_len != GVM_AUTH_MAC_BYTES || !gvm_auth_mac_equal(mac, p)) {
			gvm_err("donor %s: auth failed: it does not hold the cluster key", c->d->addr);
			conn_fail(c, "donor failed auth");
			return;
		}
		conn_ready(c);
		return;
	}
	r = c->head;
	if (!r || !h->response || h->id != r->hdr.id) {
		conn_reject(c, h, !r ? "a reply with no request in flight" :
				  !h->response ? "a request where a reply belongs" :
						 "a reply out of order");
		return;
	}
	why = reply_mismatch(&r->hdr, h);
	if (why) {
		conn_reject(c, h, why);
		return;
	}
	c->head = r->next;
	if (!c->head)
		c->tail = NULL;
	c->ninflight--;
	if (!(r->flags & BK_REQ_DEMAND))
		c->nprefetch--;
	c->used_ms = uv_now(c->d->p->loop);
	r->next = NULL;
	r->cb(r, 0, h, p);
	if (c->state == CONN_READY)
		donor_kick(c->d);
}

/* The reader's destination for a payload: the buffer of the request it
 * answers, when that request brought one (replies come in order). */
static uint8_t *payload_dst(void *ctx, const struct gvm_hdr *h)
{
	struct bk_conn *c = ctx;
	struct bk_req *r = c->head;

	if (c->state == CONN_READY && r && r->rx_buf && h->response && h->id == r->hdr.id &&
	    h->op == r->hdr.op && h->page_count == r->hdr.page_count && h->payload_len <= r->rx_cap)
		return r->rx_buf;
	return NULL;
}

/* Inside a payload, the socket is read straight into its destination;
 * elsewhere into the small read buffer. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct bk_conn *c = h->data;
	uint8_t *dst;
	size_t n = gvm_reader_direct(&c->rd, &dst);

	(void)suggested;
	if (n)
		*buf = uv_buf_init((char *)dst, (unsigned)n);
	else
		*buf = uv_buf_init((char *)c->rbuf, POOL_READ_BUF_BYTES);
}

static void frame_done(struct bk_conn *c)
{
	conn_handle_frame(c, &c->rd.hdr, c->rd.payload);
	gvm_reader_next(&c->rd);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct bk_conn *c = s->data;
	size_t off = 0;

	if (nread < 0) {
		conn_fail(c, nread == UV_EOF ? "closed by the donor" : uv_strerror((int)nread));
		return;
	}
	if (nread > 0 && buf->base != (char *)c->rbuf) { /* payload bytes, in place */
		gvm_reader_feed(&c->rd, NULL, (size_t)nread);
		if (gvm_reader_ready(&c->rd))
			frame_done(c);
		return;
	}
	while (off < (size_t)nread && (c->state == CONN_AUTH || c->state == CONN_READY)) {
		ssize_t n = gvm_reader_feed(&c->rd, (const uint8_t *)buf->base + off,
					    (size_t)nread - off);

		if (n == -ENOMEM) { /* the donor did nothing wrong */
			bk_stats_nomem("donor %s: %s: the connection closes and its requests are "
				       "sent again", c->d->addr, c->rd.why);
			conn_fail(c, "out of memory for a reply");
			return;
		}
		if (n < 0) {
			bk_stats.donor_errors++;
			gvm_warn("donor %s: bad frame: %s", c->d->addr, c->rd.why);
			conn_fail(c, "bad frame");
			return;
		}
		off += (size_t)n;
		if (gvm_reader_ready(&c->rd))
			frame_done(c);
	}
}

static void on_idle_closed(uv_handle_t *h)
{
	struct bk_conn *c = h->data;

	c->state = CONN_DOWN;
	if (!c->d->p->closing && donor_wanted(c->d) && !c->d->nready)
		donor_connect_more(c->d); /* wanted again meanwhile */
}

/* Runs every second while connected: a donor that stops answering is
 * treated as lost, so its requests move to a fresh connection; a
 * connection unused for the idle time closes, quietly (it is no failure). */
static void on_stall_check(uv_timer_t *t)
{
	struct bk_conn *c = t->data;
	struct bk_donor *d = c->d;
	uint64_t now = uv_now(d->p->loop);

	if (c->state == CONN_READY && c->head && now - c->head->sent_ms > BK_DONOR_STALL_MS) {
		conn_fail(c, "no answer for 5 s");
		return;
	}
	if (c->state != CONN_READY || c->head || now - c->used_ms < d->p->idle_ms ||
	    (d->nready == 1 && (d->keep || d->dead || d->demand.head || d->prefetch.head)))
		return;
	gvm_debug("donor %s: connection %u idle for %u s: closed", d->addr, c->index,
		  d->p->idle_ms / 1000);
	d->nready--;
	c->state = CONN_CLOSING;
	uv_timer_stop(&c->timer);
	gvm_reader_next(&c->rd);
	uv_close((uv_handle_t *)&c->tcp, on_idle_closed);
}

static void on_connect_timeout(uv_timer_t *t)
{
	struct bk_conn *c = t->data;

	if (c->state == CONN_CONNECTING)
		conn_fail(c, "no connection within 2 s");
}

static void on_connect(uv_connect_t *req, int status)
{
	struct bk_conn *c = req->data;

	if (c->state != CONN_CONNECTING)
		return;
	if (status < 0) {
		conn_fail(c, uv_strerror(status));
		return;
	}
	c->state = CONN_AUTH;
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	uv_timer_start(&c->timer, on_stall_check, 1000, 1000);
}

static void conn_start(struct bk_conn *c)
{
	struct bk_donor *d = c->d;

	if (d->p->closing || c->state != CONN_DOWN)
		return;
	if (d->p->making >= POOL_CONNECTING_MAX) {
		c->state = CONN_QUEUED;
		*d->p->queued_tail = c;
		d->p->queued_tail = &c->qnext;
		return;
	}
	/* (a tcp handle of no address family opens no socket: it cannot fail;
	 * a failed one could not be closed by conn_fail) */
	if (uv_tcp_init(d->p->loop, &c->tcp)) {
		gvm_err("donor %s: connection %u cannot be made", d->addr, c->index);
		return;
	}
	c->making = true;
	d->p->making++;
	c->tcp.data = c;
	c->connect.data = c;
	c->state = CONN_CONNECTING;
	gvm_reader_next(&c->rd);
	if (uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&d->ss, on_connect))
		conn_fail(c, "connect failed");
	else /* a donor cut off drops the SYN: try again rather than wait minutes */
		uv_timer_start(&c->timer, on_connect_timeout, BK_CONNECT_TIMEOUT_MS, 0);
}

/* A donor's connections, made at its first use: 0 or -ENOMEM, with
 * nothing allocated then. Their timers are made last, once nothing can
 * fail: a timer made must be closed (bk_pool_close) before it is freed. */
static int conns_alloc(struct bk_donor *d)
{
	struct bk_pool *p = d->p;
	struct bk_conn *conns;
	unsigned k;

	conns = calloc(p->conns_per, sizeof(*conns));
	if (!conns)
		return -ENOMEM;
	for (k = 0; k < p->conns_per; k++) {
		conns[k].rbuf = malloc(POOL_READ_BUF_BYTES);
		if (!conns[k].rbuf)
			goto fail_rbuf;
	}
	for (k = 0; k < p->conns_per; k++) {
		struct bk_conn *c = &conns[k];

		c->d = d;
		c->index = k;
		gvm_reader_init(&c->rd);
		gvm_reader_set_dst(&c->rd, payload_dst, c);
		uv_timer_init(p->loop, &c->timer); /* cannot fail */
		c->timer.data = c;
	}
	d->conns = conns;
	return 0;
fail_rbuf:
	while (k--)
		free(conns[k].rbuf);
	free(conns);
	return -ENOMEM;
}

int bk_pool_create(struct bk_pool **out, uv_loop_t *loop, const struct gvm_key *key,
		   const char *host_id, unsigned conns_per, unsigned idle_ms)
{
	struct bk_pool *p;
	int err;

	err = gvm_auth_init(); /* libsodium: -EIO, no lack of memory */
	if (err)
		return err;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->loop = loop;
	p->key = key;
	p->host_id = host_id;
	p->conns_per = conns_per;
	p->idle_ms = idle_ms;
	p->queued_tail = &p->queued;
	*out = p;
	return 0;
}

int bk_pool_add(struct bk_pool *p, const char *addr, const struct sockaddr_storage *ss)
{
	struct bk_donor *d;

	if (p->ndonors == p->cap) {
		unsigned cap = p->cap ? p->cap * 2 : 64;
		struct bk_donor **n = realloc(p->donors, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		p->donors = n;
		p->cap = cap;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->p = p;
	d->index = p->ndonors;
	d->ss = *ss;
	snprintf(d->addr, sizeof(d->addr), "%s", addr);
	p->donors[p->ndonors] = d;
	return (int)p->ndonors++;
}

void bk_pool_set_keep(struct bk_pool *p, unsigned donor, bool keep)
{
	struct bk_donor *d = p->donors[donor];

	d->keep = keep;
	if (keep && !d->nready)
		donor_connect_more(d);
}

unsigned bk_pool_ready_connections(const struct bk_pool *p)
{
	unsigned n = 0;

	for (unsigned i = 0; i < p->ndonors; i++)
		n += p->donors[i]->nready;
	return n;
}

unsigned bk_pool_donor_connections(const struct bk_pool *p, unsigned donor)
{
	return p->donors[donor]->nready;
}

bool bk_pool_donor_up(const struct bk_pool *p, unsigned donor)
{
	const struct bk_donor *d = p->donors[donor];

	return d->nready > 0 || (!d->down_since_ms && !d->dead);
}

uint64_t bk_pool_down_since(const struct bk_pool *p, unsigned donor)
{
	return p->donors[donor]->down_since_ms;
}

uint64_t bk_pool_oldest_ms(const struct bk_pool *p, unsigned donor)
{
	const struct bk_donor *d = p->donors[donor];
	uint64_t oldest = 0;

	for (unsigned k = 0; d->conns && k < p->conns_per; k++) {
		const struct bk_conn *c = &d->conns[k];

		if (c->state == CONN_READY && c->head && (!oldest || c->head->sent_ms < oldest))
			oldest = c->head->sent_ms;
	}
	return oldest;
}

void bk_pool_set_dead(struct bk_pool *p, unsigned donor, bool dead)
{
	struct bk_donor *d = p->donors[donor];
	struct bk_req *r;

	d->dead = dead;
	if (!dead) {
		d->reported_down = false;
		return;
	}
	/* Whatever it holds is given up: its connections start over (and
	 * keep trying, to see it come back), and every request waiting for it
	 * fails now, so its submitter can go to another copy. */
	for (unsigned k = 0; d->conns && k < p->conns_per; k++)
		conn_fail(&d->conns[k], "declared dead");
	d->reported_down = true;
	while ((r = queue_pop(&d->demand)) || (r = queue_pop(&d->prefetch)))
		r->cb(r, -EHOSTDOWN, NULL, NULL);
	if (!d->down_since_ms)
		d->down_since_ms = uv_now(p->loop);
	donor_connect_more(d); /* tried at its backoff until it answers */
}

void bk_pool_let_go(struct bk_pool *p, unsigned donor)
{
	struct bk_donor *d = p->donors[donor];

	d->down_since_ms = 0;
	for (unsigned k = 0; d->conns && k < p->conns_per; k++)
		if (d->conns[k].retry_pending) {
			uv_timer_stop(&d->conns[k].timer);
			d->conns[k].retry_pending = false;
		}
}

void bk_pool_retry_now(struct bk_pool *p)
{
	for (unsigned i = 0; i < p->ndonors; i++) {
		struct bk_donor *d = p->donors[i];

		for (unsigned k = 0; d->conns && k < p->conns_per; k++) {
			struct bk_conn *c = &d->conns[k];

			if (!c->retry_pending)
				continue;
			uv_timer_stop(&c->timer);
			c->retry_pending = false;
			conn_start(c);
		}
	}
}

const char *bk_pool_donor_addr(const struct bk_pool *p, unsigned donor)
{
	return p->donors[donor]->addr;
}

static void free_queue(struct bk_queue *q)
{
	struct bk_req *r;

	while ((r = queue_pop(q))) {
		if (!(r->flags & BK_REQ_RX_BORROWED))
			free(r->rx_buf);
		free(r);
	}
}

void bk_pool_free(struct bk_pool *p)
{
	for (unsigned i = 0; i < p->ndonors; i++) {
		struct bk_donor *d = p->donors[i];

		free_queue(&d->demand);
		free_queue(&d->prefetch);
		for (unsigned k = 0; d->conns && k < p->conns_per; k++) {
			struct bk_req *r;

			while ((r = d->conns[k].head)) {
				d->conns[k].head = r->next;
				if (!(r->flags & BK_REQ_RX_BORROWED))
					free(r->rx_buf);
				free(r);
			}
			gvm_reader_free(&d->conns[k].rd);
			free(d->conns[k].rbuf);
		}
		free(d->conns);
		free(d);
	}
	free(p->donors);
	free(p);
}

void bk_pool_close(struct bk_pool *p)
{
	p->closing = true;
	for (unsigned i = 0; i < p->ndonors; i++) {
		struct bk_donor *d = p->donors[i];

		for (unsigned k = 0; d->conns && k < p->conns_per; k++) {
			struct bk_conn *c = &d->conns[k];

			uv_close((uv_handle_t *)&c->timer, NULL);
			if (c->state == CONN_DOWN || c->state == CONN_QUEUED ||
			    uv_is_closing((uv_handle_t *)&c->tcp))
				continue;
			/* Closing: a connect on its way is cancelled as the handle
			 * closes, and on_connect must not fail it (close it again). */
			c->state = CONN_CLOSING;
			uv_close((uv_handle_t *)&c->tcp, NULL);
		}
	}
}
