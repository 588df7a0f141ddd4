/* server.c: the donor protocol on TCP (docs/protocol.md). Each thread runs
 * its own libuv loop and listening socket (SO_REUSEPORT); a connection lives
 * on one loop. Frames come through proto/frame.c's reader; a malformed one
 * closes that connection with one log line. Replies are written at once when
 * the socket takes them, else queued, and a peer that stops reading stops
 * being read (MS_CONN_BACKLOG_MAX_BYTES). Pages live in store.c, which
 * lets a connection touch only the namespaces of the host it authenticated
 * for. Peers that have not authenticated are bounded per source and per
 * thread, the oldest making room for a new one, and get MS_AUTH_TIMEOUT_MS
 * from accept, never more (memserver.h). Authenticated peers are counted
 * per host id (one table over all threads) and in all, against --host-conns
 * and the open files RLIMIT_NOFILE leaves. Refusals of a flood are logged
 * once per kind and second, then counted. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "auth.h"
#include "frame.h"
#include "log.h"

struct ms_stats {
	atomic_uint_fast64_t reads, writes, pages_read, pages_written,
		zero_pages_read, bytes_in, bytes_out, auth_failures, bad_frames,
		enospc;
	atomic_uint conns;  /* open connections, authenticated or not */
	atomic_uint authed; /* of which authenticated: ms_server.conns_max */
};

/* Authenticated connections per host id, over all threads: open addressing
 * with linear probing, a slot freed by shifting back the ones after it, under
 * one lock taken only as a peer authenticates or an authenticated one
 * closes. A host has a slot while it holds a connection, so there are never
 * more hosts than conns_max; the slots, doubled when half full and never
 * shrunk, stay below 4 * conns_max (24 bytes each). */
struct ms_host_slot {
	char id[GVM_HOST_ID_MAX_BYTES + 1]; /* "" when free */
	unsigned conns;
};

struct ms_host_table {
	pthread_mutex_t lock;
	struct ms_host_slot *slots;
	size_t nslots; /* a power of two, or 0 before the first host */
	size_t used;
};
#define MS_HOST_TABLE_MIN_SLOTS 64u

struct ms_server;

/* Closes that keep a flood out, each logged once per MS_FLOOD_LOG_INTERVAL_MS
 * per thread, the rest counted into one line. */
enum ms_flood {
	MS_FLOOD_PER_SOURCE,   /* over MS_UNAUTH_PER_SOURCE_MAX: closed at once */
	MS_FLOOD_OLDEST,       /* over MS_UNAUTH_MAX: the oldest made room */
	MS_FLOOD_AUTH_TIMEOUT, /* MS_AUTH_TIMEOUT_MS passed */
	MS_FLOOD_HOST_FULL,    /* its host at --host-conns: EBUSY */
	MS_FLOOD_DONOR_FULL,   /* conns_max authenticated: EBUSY */
	MS_FLOOD_KINDS
};

struct ms_flood_log {
	uint64_t quiet_until; /* loop time (ms): lines of this kind only counted */
	unsigned suppressed;  /* closes counted since the last line */
	char last[96];        /* the peer (and host) of the last one counted */
};

/* Where a peer connects from, for MS_UNAUTH_PER_SOURCE_MAX: an IPv4
 * address (also v4-mapped IPv6) or an IPv6 /64 prefix. */
struct ms_source {
	uint8_t family; /* 4, 6, or 0 when unknown */
	uint8_t bytes[MS_SOURCE_V6_PREFIX_BYTES];
};

struct ms_worker {
	struct ms_server *srv;
	unsigned index;
	bool loop_ready;
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t stop;
	uv_thread_t thread;
	/* A READ or LIST reply's payload, built then sent:
	 * GVM_FRAME_PAYLOAD_MAX_BYTES, the pages and their tags. */
	uint8_t *scratch;
	struct ms_conn *conns;
	/* Its unauthenticated connections, oldest first (MS_UNAUTH_MAX). */
	struct ms_conn *unauth_head, *unauth_tail;
	unsigned nunauth;
	uv_timer_t flood_timer;
	struct ms_flood_log flood[MS_FLOOD_KINDS];
	/* Out of memory for a new connection: it is accepted into this spare
	 * handle and closed, one at a time (reject_connection). */
	uv_tcp_t reject;
	bool rejecting, reject_waiting;
	struct gvm_log_limit nomem_log;
};

struct ms_server {
	struct ms_store *store;
	const struct gvm_key *key;
	struct ms_worker *workers;
	unsigned nworkers;
	uv_signal_t sigterm, sigint;
	bool stopping;     /* the first stop signal came */
	struct ms_stats stats;
	unsigned conns_max;  /* authenticated connections, from nofile */
	unsigned host_conns; /* of them one host id may hold (--host-conns) */
	uint64_t nofile;     /* RLIMIT_NOFILE, raised to the hard limit */
	struct ms_host_table hosts;
};

struct ms_conn {
	uv_tcp_t tcp;
	uv_timer_t auth_timer;
	struct ms_worker *w;
	struct ms_conn *prev, *next;
	struct ms_conn *uprev, *unext; /* in w's unauthenticated list */
	struct gvm_reader rd;
	size_t rlen, roff;
	size_t backlog; /* reply bytes queued in libuv */
	int open_handles;
	bool authed, closing, paused, close_when_flushed;
	bool in_unauth;      /* on w's unauthenticated list */
	bool warned_foreign; /* logged a request for another host's namespace */
	struct ms_source src;
	uint8_t nonce[GVM_AUTH_NONCE_BYTES];
	char host[GVM_HOST_ID_MAX_BYTES + 1]; /* from AUTH: whose namespaces it may use */
	char peer[64];
	uint8_t rbuf[MS_READ_BUF_BYTES];
};

struct ms_wreq {
	uv_write_t req;
	size_t len;
	uint8_t data[];
};

static void conn_process(struct ms_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* FNV-1a of a host id. */
static uint32_t host_hash(const char *id)
{
	uint32_t h = 2166136261u;

	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 16777619u;
	return h;
}

/* The slot holding id, or the free one where it belongs. The table is at
 * most half full, so there is always a free one. */
static size_t host_slot(const struct ms_host_table *t, const char *id)
{
	size_t mask = t->nslots - 1, i = host_hash(id) & mask;

	while (t->slots[i].id[0] && strcmp(t->slots[i].id, id) != 0)
		i = (i + 1) & mask;
	return i;
}

/* Doubles the slots (or makes the first ones) and puts every host back. */
static int host_table_grow(struct ms_host_table *t)
{
	size_t n = t->nslots ? t->nslots * 2 : MS_HOST_TABLE_MIN_SLOTS;
	struct ms_host_table bigger = { .nslots = n, .used = t->used };

	bigger.slots = calloc(n, sizeof(*bigger.slots));
	if (!bigger.slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->nslots; i++)
		if (t->slots[i].id[0])
			bigger.slots[host_slot(&bigger, t->slots[i].id)] = t->slots[i];
	free(t->slots);
	t->slots = bigger.slots;
	t->nslots = n;
	return 0;
}

/* Counts a connection of host id against max: 0, -EBUSY when it already
 * holds max, -ENOMEM. */
static int host_conns_take(struct ms_host_table *t, const char *id, unsigned max)
{
	struct ms_host_slot *s;
	int err = 0;

	pthread_mutex_lock(&t->lock);
	if ((t->used + 1) * 2 > t->nslots) {
		err = host_table_grow(t);
		if (err)
			goto out;
	}
	s = &t->slots[host_slot(t, id)];
	if (s->conns >= max) {
		err = -EBUSY;
		goto out;
	}
	if (!s->id[0]) {
		snprintf(s->id, sizeof(s->id), "%s", id);
		t->used++;
	}
	s->conns++;
out:
	pthread_mutex_unlock(&t->lock);
	return err;
}

/* Uncounts a connection of host id; its last frees the slot, and the ones
 * after it that would not be found past a free slot move back. */
static void host_conns_put(struct ms_host_table *t, const char *id)
{
	size_t mask, i, j, home;

	pthread_mutex_lock(&t->lock);
	if (!t->nslots)
		goto out;
	mask = t->nslots - 1;
	i = host_slot(t, id);
	if (!t->slots[i].id[0] || --t->slots[i].conns)
		goto out;
	for (j = (i + 1) & mask; t->slots[j].id[0]; j = (j + 1) & mask) {
		home = host_hash(t->slots[j].id) & mask;
		/* Slot j stays when its home lies cyclically in (i, j]. */
		if (i < j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		t->slots[i] = t->slots[j];
		i = j;
	}
	memset(&t->slots[i], 0, sizeof(t->slots[i]));
	t->used--;
out:
	pthread_mutex_unlock(&t->lock);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct ms_conn *c = h->data;

	if (--c->open_handles)
		return;
	gvm_reader_free(&c->rd);
	free(c);
}

/* Appends c to its worker's unauthenticated connections (the newest). */
static void unauth_add(struct ms_conn *c)
{
	struct ms_worker *w = c->w;

	c->uprev = w->unauth_tail;
	c->unext = NULL;
	if (w->unauth_tail)
		w->unauth_tail->unext = c;
	else
		w->unauth_head = c;
	w->unauth_tail = c;
	w->nunauth++;
	c->in_unauth = true;
}

static void unauth_remove(struct ms_conn *c)
{
	struct ms_worker *w = c->w;

	if (!c->in_unauth)
		return;
	if (c->uprev)
		c->uprev->unext = c->unext;
	else
		w->unauth_head = c->unext;
	if (c->unext)
		c->unext->uprev = c->uprev;
	else
		w->unauth_tail = c->uprev;
	w->nunauth--;
	c->in_unauth = false;
}

static void conn_close(struct ms_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	unauth_remove(c);
	if (c->authed) {
		host_conns_put(&c->w->srv->hosts, c->host);
		atomic_fetch_sub(&c->w->srv->stats.authed, 1);
	}
	atomic_fetch_sub(&c->w->srv->stats.conns, 1);
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	uv_close((uv_handle_t *)&c->auth_timer, conn_handle_closed);
}

/* Closes a connection for a protocol violation: one line, with the reason. */
static void conn_reject(struct ms_conn *c, const char *what, const char *why)
{
	gvm_warn("peer %s: closing: %s: %s", c->peer, what, why);
	conn_close(c);
}

/* One line for the closes of a kind that were only counted. */
static void flood_summary(const struct ms_worker *w, enum ms_flood kind,
			  const struct ms_flood_log *f)
{
	switch (kind) {
	case MS_FLOOD_PER_SOURCE:
		gvm_warn("closed %u more connections at once: over %u unauthenticated from one source (the last: peer %s)",
			 f->suppressed, MS_UNAUTH_PER_SOURCE_MAX, f->last);
		break;
	case MS_FLOOD_OLDEST:
		gvm_warn("closed %u more unauthenticated connections, oldest first, to stay within %u per thread (the last: peer %s)",
			 f->suppressed, MS_UNAUTH_MAX, f->last);
		break;
	case MS_FLOOD_HOST_FULL:
		gvm_warn("refused %u more connections busy: their host held %u authenticated connections already, the most one host may (--host-conns) (the last: peer %s)",
			 f->suppressed, w->srv->host_conns, f->last);
		break;
	case MS_FLOOD_DONOR_FULL:
		gvm_warn("refused %u more connections busy: %u authenticated connections open, the most this donor serves (open-file limit %llu) (the last: peer %s)",
			 f->suppressed, w->srv->conns_max, (unsigned long long)w->srv->nofile,
			 f->last);
		break;
	default:
		gvm_warn("closed %u more connections: no authentication within %u ms (the last: peer %s)",
			 f->suppressed, MS_AUTH_TIMEOUT_MS, f->last);
		break;
	}
}

/* Every MS_FLOOD_LOG_INTERVAL_MS while a flood lasts: the counts, in one
 * line per kind; stops once an interval passed with nothing to say. */
static void on_flood_timer(uv_timer_t *t)
{
	struct ms_worker *w = t->data;
	uint64_t now = uv_now(&w->loop);
	bool quiet = false;

	for (int k = 0; k < MS_FLOOD_KINDS; k++) {
		struct ms_flood_log *f = &w->flood[k];

		if (f->suppressed) {
			flood_summary(w, (enum ms_flood)k, f);
			f->suppressed = 0;
			f->quiet_until = now + MS_FLOOD_LOG_INTERVAL_MS;
		}
		quiet |= f->quiet_until > now;
	}
	if (!quiet)
		uv_timer_stop(t);
}

/* Says why c is closed to keep a flood out: one warn line, unless this
 * thread logged one of this kind less than MS_FLOOD_LOG_INTERVAL_MS ago;
 * then it is counted, and on_flood_timer says how many. */
static void flood_log(struct ms_conn *c, enum ms_flood kind, const char *why)
{
	struct ms_worker *w = c->w;
	struct ms_flood_log *f = &w->flood[kind];
	uint64_t now = uv_now(&w->loop);

	if (now >= f->quiet_until) {
		gvm_warn("peer %s: closing: %s", c->peer, why);
		f->quiet_until = now + MS_FLOOD_LOG_INTERVAL_MS;
		if (!uv_is_active((uv_handle_t *)&w->flood_timer))
			uv_timer_start(&w->flood_timer, on_flood_timer, MS_FLOOD_LOG_INTERVAL_MS,
				       MS_FLOOD_LOG_INTERVAL_MS);
	} else {
		f->suppressed++;
		if (c->host[0])
			snprintf(f->last, sizeof(f->last), "%s, host %s", c->peer, c->host);
		else
			snprintf(f->last, sizeof(f->last), "%s", c->peer);
	}
}

/* Closes c at once to keep a flood out (flood_log). */
static void flood_close(struct ms_conn *c, enum ms_flood kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void flood_close(struct ms_conn *c, enum ms_flood kind, const char *fmt, ...)
{
	char why[GVM_ERROR_MAX_BYTES + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	flood_log(c, kind, why);
	conn_close(c);
}

/* Logs what a flood left counted but not yet said (at shutdown). */
static void flood_flush(struct ms_worker *w)
{
	for (int k = 0; k < MS_FLOOD_KINDS; k++)
		if (w->flood[k].suppressed) {
			flood_summary(w, (enum ms_flood)k, &w->flood[k]);
			w->flood[k].suppressed = 0;
		}
}

static void on_write(uv_write_t *req, int status)
{
	struct ms_wreq *wr = (struct ms_wreq *)req;
	struct ms_conn *c = req->data;

	c->backlog -= wr->len;
	free(wr);
	if (c->closing)
		return;
	if (status < 0) {
		gvm_info("peer %s: closing: send failed: %s", c->peer, uv_strerror(status));
		conn_close(c);
		return;
	}
	if (c->close_when_flushed && c->backlog == 0) {
		conn_close(c);
		return;
	}
	if (c->paused && c->backlog <= MS_CONN_BACKLOG_MAX_BYTES / 2)
		conn_process(c);
}

/* Sends a reply: straight into the socket when it takes it, the rest copied
 * and queued behind earlier replies. */
static void conn_send(struct ms_conn *c, const struct gvm_hdr *h,
		      const uint8_t *payload)
{
	uint8_t hb[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
	int hl = gvm_hdr_encode(h, hb, sizeof(hb));
	uv_buf_t bufs[2];
	size_t total, sent = 0, skip;
	struct ms_wreq *wr;
	uv_buf_t b;
	int n;

	if (hl < 0) {
		conn_reject(c, "reply", "header does not encode");
		return;
	}
	bufs[0] = uv_buf_init((char *)hb, (unsigned)hl);
	bufs[1] = uv_buf_init((char *)payload, h->payload_len);
	total = (size_t)hl + h->payload_len;
	atomic_fetch_add(&c->w->srv->stats.bytes_out, total);
	if (c->backlog == 0) {
		n = uv_try_write((uv_stream_t *)&c->tcp, bufs, h->payload_len ? 2 : 1);
		if (n < 0 && n != UV_EAGAIN) {
			gvm_info("peer %s: closing: send failed: %s", c->peer, uv_strerror(n));
			conn_close(c);
			return;
		}
		sent = n > 0 ? (size_t)n : 0;
	}
	if (sent == total)
		return;
	wr = malloc(sizeof(*wr) + total - sent);
	if (!wr) {
		conn_reject(c, "reply", "out of memory");
		return;
	}
	wr->len = total - sent;
	skip = sent;
	for (size_t i = 0, off = 0; i < 2; i++) {
		size_t from = skip < bufs[i].len ? skip : bufs[i].len;

		skip -= from;
		memcpy(wr->data + off, bufs[i].base + from, bufs[i].len - from);
		off += bufs[i].len - from;
	}
	wr->req.data = c;
	b = uv_buf_init((char *)wr->data, (unsigned)wr->len);
	n = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (n < 0) {
		free(wr);
		gvm_info("peer %s: closing: send failed: %s", c->peer, uv_strerror(n));
		conn_close(c);
		return;
	}
	c->backlog += wr->len;
}

/* A reply names the request's id, namespace and page range. */
static void reply_init(struct gvm_hdr *r, const struct gvm_hdr *req)
{
	gvm_hdr_init(r, req->op, req->id);
	r->response = true;
	r->ns = req->ns;
	r->first_page = req->first_page;
	r->page_count = req->page_count;
}

static void reply_error(struct ms_conn *c, const struct gvm_hdr *req, int err,
			const char *why)
{
	struct gvm_hdr r;

	reply_init(&r, req);
	r.status = -err;
	snprintf(r.error, sizeof(r.error), "%s", why);
	conn_send(c, &r, NULL);
}

/* Answers AUTH with err and why, and closes once that is sent. */
static void auth_refuse(struct ms_conn *c, const struct gvm_hdr *h, int err,
			const char *why)
{
	reply_error(c, h, err, why);
	c->close_when_flushed = true;
	if (c->backlog == 0)
		conn_close(c);
}

/* Refuses a peer whose AUTH answer checked out, as a limit says: EBUSY and
 * why, which goes to the log too, as a flood's (flood_log). */
static void auth_refuse_busy(struct ms_conn *c, const struct gvm_hdr *h,
			     enum ms_flood kind, const char *why)
{
	flood_log(c, kind, why);
	auth_refuse(c, h, -EBUSY, why);
}

static void handle_auth(struct ms_conn *c, const struct gvm_hdr *h,
			const uint8_t *p)
{
	struct ms_server *srv = c->w->srv;
	const struct gvm_key *key = srv->key;
	char why[GVM_ERROR_MAX_BYTES + 1];
	uint8_t mac[GVM_AUTH_MAC_BYTES];
	struct gvm_hdr r;
	int err;

	if (h->payload_len != GVM_AUTH_NONCE_BYTES + GVM_AUTH_MAC_BYTES) {
		conn_reject(c, "AUTH", "answer of the wrong length");
		return;
	}
	if (!h->host_id[0]) {
		conn_reject(c, "AUTH", "answer names no host (a client of protocol 1?)");
		return;
	}
	gvm_auth_client_mac(key, c->nonce, p, h->host_id, mac);
	if (!gvm_auth_mac_equal(mac, p + GVM_AUTH_NONCE_BYTES)) {
		atomic_fetch_add(&c->w->srv->stats.auth_failures, 1);
		gvm_warn("peer %s: auth failed: bad key; closing", c->peer);
		auth_refuse(c, h, -EACCES, "bad key");
		return;
	}
	snprintf(c->host, sizeof(c->host), "%s", h->host_id);
	if (atomic_fetch_add(&srv->stats.authed, 1) >= srv->conns_max) {
		atomic_fetch_sub(&srv->stats.authed, 1);
		snprintf(why, sizeof(why),
			 "donor busy: %u authenticated connections open, the most it serves (open-file limit %llu); host %s refused",
			 srv->conns_max, (unsigned long long)srv->nofile, c->host);
		auth_refuse_busy(c, h, MS_FLOOD_DONOR_FULL, why);
		return;
	}
	err = host_conns_take(&srv->hosts, c->host, srv->host_conns);
	if (err) {
		atomic_fetch_sub(&srv->stats.authed, 1);
		if (err == -EBUSY) {
			snprintf(why, sizeof(why),
				 "host %s busy: it holds %u authenticated connections to this donor, the most one host may (--host-conns %u)",
				 c->host, srv->host_conns, srv->host_conns);
			auth_refuse_busy(c, h, MS_FLOOD_HOST_FULL, why);
		} else {
			gvm_err("peer %s: closing: out of memory counting the connections of host %s",
				c->peer, c->host);
			auth_refuse(c, h, err, "donor out of memory");
		}
		return;
	}
	c->authed = true;
	unauth_remove(c);
	gvm_reader_limit(&c->rd, GVM_FRAME_PAYLOAD_MAX_BYTES);
	uv_timer_stop(&c->auth_timer);
	gvm_debug("peer %s: authenticated for host %s", c->peer, c->host);
	gvm_auth_donor_mac(key, c->nonce, p, c->host, mac);
	reply_init(&r, h);
	r.payload_len = GVM_AUTH_MAC_BYTES;
	conn_send(c, &r, mac);
}

static const char *store_error(int err)
{
	switch (err) {
	case -ENOENT: return "unknown namespace";
	case -ENOSPC: return "capacity full";
	case -EINVAL: return "bad namespace name: want HOST.NAME, HOST the host id";
	case -EACCES: return "namespace belongs to another host";
	case -ENOMEM: return "donor out of memory";
	default: return strerror(-err);
	}
}

/* Answers a refusal of the store. A request for another host's namespace
 * is logged (once per connection: the peer holds the key, but should not
 * ask) before it gets EACCES like any other refusal. */
static void reply_store_error(struct ms_conn *c, const struct gvm_hdr *h, int err)
{
	if (err == -EACCES) {
		if (!c->warned_foreign)
			gvm_warn("peer %s (host %s): %s of namespace %s refused: it belongs to another host",
				 c->peer, c->host, gvm_op_name(h->op),
				 h->ns_name[0] ? h->ns_name : "(by id)");
		else
			gvm_debug("peer %s (host %s): %s of another host's namespace refused",
				  c->peer, c->host, gvm_op_name(h->op));
		c->warned_foreign = true;
	}
	reply_error(c, h, err, store_error(err));
}

/* READ: the pages, packed, in the worker's scratch buffer; with tag_bytes,
 * their tags right after them. The store puts the tags past the room of
 * GVM_FRAME_PAGES_MAX pages, before it knows how many pages it copies;
 * they move down behind the last page. */
_Static_assert(GVM_FRAME_PAYLOAD_MAX_BYTES ==
		       GVM_FRAME_DATA_MAX_BYTES + GVM_FRAME_PAGES_MAX * GVM_PAGE_TAG_BYTES,
	       "scratch holds every page, then every tag");
static void handle_read(struct ms_conn *c, const struct gvm_hdr *h)
{
	struct ms_stats *st = &c->w->srv->stats;
	uint8_t *tags = h->tag_bytes ? c->w->scratch + GVM_FRAME_DATA_MAX_BYTES : NULL;
	uint32_t data_pages;
	struct gvm_hdr r;
	int err;

	reply_init(&r, h);
	err = ms_store_read(c->w->srv->store, c->host, h->ns, h->first_page,
			    h->page_count, r.zero_bitmap, c->w->scratch, &data_pages, tags);
	if (err) {
		reply_store_error(c, h, err);
		return;
	}
	if (tags) {
		r.tag_bytes = GVM_PAGE_TAG_BYTES;
		memmove(c->w->scratch + (size_t)data_pages * GVM_PAGE_SIZE, tags,
			(size_t)data_pages * GVM_PAGE_TAG_BYTES);
	}
	r.payload_len = data_pages * (GVM_PAGE_SIZE + r.tag_bytes);
	atomic_fetch_add(&st->reads, 1);
	atomic_fetch_add(&st->pages_read, h->page_count);
	atomic_fetch_add(&st->zero_pages_read, h->page_count - data_pages);
	conn_send(c, &r, c->w->scratch);
}

/* LIST: a bit per page asked about, built in the worker's scratch buffer
 * (GVM_LIST_PAGES_MAX bits fill it exactly). */
_Static_assert(GVM_LIST_PAGES_MAX / 8u <= GVM_FRAME_DATA_MAX_BYTES, "a LIST reply fits scratch");
static void handle_list(struct ms_conn *c, const struct gvm_hdr *h)
{
	struct gvm_hdr r;
	int err;

	err = ms_store_list(c->w->srv->store, c->host, h->ns, h->first_page, h->page_count,
			    c->w->scratch);
	if (err) {
		reply_store_error(c, h, err);
		return;
	}
	reply_init(&r, h);
	r.payload_len = gvm_list_bitmap_bytes(h->page_count);
	conn_send(c, &r, c->w->scratch);
}

/* WRITE: the pages, and with tag_bytes each data page's tag after them
 * (gvm_frame_tags); without, the store gives every page a zero tag. */
static void handle_write(struct ms_conn *c, const struct gvm_hdr *h,
			 const uint8_t *p)
{
	struct ms_stats *st = &c->w->srv->stats;
	struct ms_store_info info;
	struct gvm_hdr r;
	char why[GVM_ERROR_MAX_BYTES + 1];
	int err;

	err = ms_store_write(c->w->srv->store, c->host, h->ns, h->first_page,
			     h->page_count, h->zero_bitmap, p,
			     h->tag_bytes && h->payload_len ? gvm_frame_tags(h, p) : NULL);
	if (err == -ENOSPC) {
		atomic_fetch_add(&st->enospc, 1);
		ms_store_get_info(c->w->srv->store, &info);
		snprintf(why, sizeof(why), "capacity full: %llu of %llu pages used",
			 (unsigned long long)info.used_pages,
			 (unsigned long long)info.capacity_pages);
		gvm_warn("peer %s: WRITE of %u pages refused: %s", c->peer,
			 h->page_count, why);
		reply_error(c, h, err, why);
		return;
	}
	if (err) {
		reply_store_error(c, h, err);
		return;
	}
	atomic_fetch_add(&st->writes, 1);
	atomic_fetch_add(&st->pages_written, h->page_count);
	reply_init(&r, h);
	conn_send(c, &r, NULL);
}

static void handle_stats(struct ms_conn *c, const struct gvm_hdr *h)
{
	struct ms_server *srv = c->w->srv;
	Gvm__MemserverStats m = GVM__MEMSERVER_STATS__INIT;
	uint8_t buf[GVM_FRAME_SMALL_PAYLOAD_MAX_BYTES];
	struct ms_store_info info;
	struct gvm_hdr r;
	int err;

	if (h->ns_name[0]) {
		err = ms_store_ns_pages(srv->store, c->host, h->ns_name, &m.ns_used_pages);
		if (err) {
			reply_store_error(c, h, err);
			return;
		}
	}
	ms_store_get_info(srv->store, &info);
	m.capacity_pages = info.capacity_pages;
	m.used_pages = info.used_pages;
	m.namespaces = info.namespaces;
	m.connections = atomic_load(&srv->stats.conns);
	m.reads = atomic_load(&srv->stats.reads);
	m.writes = atomic_load(&srv->stats.writes);
	m.pages_read = atomic_load(&srv->stats.pages_read);
	m.pages_written = atomic_load(&srv->stats.pages_written);
	m.zero_pages_read = atomic_load(&srv->stats.zero_pages_read);
	m.bytes_in = atomic_load(&srv->stats.bytes_in);
	m.bytes_out = atomic_load(&srv->stats.bytes_out);
	m.auth_failures = atomic_load(&srv->stats.auth_failures);
	m.bad_frames = atomic_load(&srv->stats.bad_frames);
	m.enospc = atomic_load(&srv->stats.enospc);
	m.threads = srv->nworkers;
	reply_init(&r, h);
	r.payload_len = (uint32_t)gvm__memserver_stats__pack(&m, buf);
	conn_send(c, &r, buf);
}

static void handle_frame(struct ms_conn *c, const struct gvm_hdr *h,
			 const uint8_t *p)
{
	struct ms_store *store = c->w->srv->store;
	char why[GVM_ERROR_MAX_BYTES + 1];
	struct gvm_hdr r;
	uint32_t id;
	int err;

	if (h->response) {
		conn_reject(c, gvm_op_name(h->op), "a reply where a request belongs");
		return;
	}
	if (!c->authed) {
		if (h->op == GVM__OP__OP_AUTH)
			handle_auth(c, h, p);
		else
			conn_reject(c, gvm_op_name(h->op), "request before authentication");
		return;
	}
	switch (h->op) {
	case GVM__OP__OP_READ:
		handle_read(c, h);
		return;
	case GVM__OP__OP_WRITE:
		handle_write(c, h, p);
		return;
	case GVM__OP__OP_LIST:
		handle_list(c, h);
		return;
	case GVM__OP__OP_OPEN_NS:
		err = ms_store_open_ns(store, c->host, h->ns_name, &id);
		if (err == -EDQUOT) {
			snprintf(why, sizeof(why), "host %s holds %u namespaces, the most one host may",
				 c->host, MS_HOST_NAMESPACES_MAX);
			gvm_warn("peer %s: OPEN_NS %s refused: %s", c->peer, h->ns_name, why);
			reply_error(c, h, -ENOSPC, why);
			return;
		}
		if (err == -ENOSPC) {
			snprintf(why, sizeof(why), "namespace table full: %u namespaces, the most this donor holds",
				 MS_NAMESPACES_MAX);
			gvm_warn("peer %s: OPEN_NS %s refused: %s", c->peer, h->ns_name, why);
			reply_error(c, h, err, why);
			return;
		}
		if (err) {
			reply_store_error(c, h, err);
			return;
		}
		reply_init(&r, h);
		r.ns = id;
		conn_send(c, &r, NULL);
		return;
	case GVM__OP__OP_DISCARD:
		err = ms_store_discard(store, c->host, h->ns, h->first_page, h->page_count);
		break;
	case GVM__OP__OP_DROP_NS:
		err = ms_store_drop_ns(store, c->host, h->ns_name[0] ? h->ns_name : NULL, h->ns);
		if (!err)
			gvm_info("peer %s: dropped namespace %s", c->peer,
				 h->ns_name[0] ? h->ns_name : "(by id)");
		break;
	case GVM__OP__OP_STATS:
		handle_stats(c, h);
		return;
	case GVM__OP__OP_PING:
		reply_init(&r, h);
		r.payload_len = h->payload_len;
		conn_send(c, &r, p);
		return;
	default: /* AUTH again */
		conn_reject(c, gvm_op_name(h->op), "unexpected op after authentication");
		return;
	}
	if (err) {
		reply_store_error(c, h, err);
		return;
	}
	reply_init(&r, h);
	conn_send(c, &r, NULL);
}

/* Runs the frames in rbuf[roff..rlen); stops reading while too many replies
 * wait to be sent, and picks up where it left off when they drain. */
static void conn_process(struct ms_conn *c)
{
	while (c->roff < c->rlen && !c->closing) {
		ssize_t n;

		if (c->backlog > MS_CONN_BACKLOG_MAX_BYTES || c->close_when_flushed) {
			if (!c->paused)
				uv_read_stop((uv_stream_t *)&c->tcp);
			c->paused = true;
			return;
		}
		n = gvm_reader_feed(&c->rd, c->rbuf + c->roff, c->rlen - c->roff);
		if (n < 0) {
			atomic_fetch_add(&c->w->srv->stats.bad_frames, 1);
			conn_reject(c, "bad frame", c->rd.why);
			return;
		}
		c->roff += (size_t)n;
		if (gvm_reader_ready(&c->rd)) {
			handle_frame(c, &c->rd.hdr, c->rd.payload);
			gvm_reader_next(&c->rd);
		}
	}
	if (!c->closing && c->roff == c->rlen && c->paused && !c->close_when_flushed) {
		c->paused = false;
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ms_conn *c = h->data;

	(void)suggested;
	c->rlen = c->roff = 0;
	*buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct ms_conn *c = s->data;

	(void)buf;
	if (nread == 0)
		return;
	if (nread < 0) {
		/* A peer that leaves before authenticating had nothing at stake;
		 * a line for each would let a flood write the log. */
		if (!c->authed)
			gvm_debug("peer %s: gone before authenticating: %s", c->peer,
				  uv_strerror((int)nread));
		else if (nread != UV_EOF)
			gvm_info("peer %s: closing: receive failed: %s", c->peer,
				 uv_strerror((int)nread));
		else if (!gvm_reader_idle(&c->rd))
			gvm_warn("peer %s: closing: disconnected in the middle of a frame",
				 c->peer);
		else
			gvm_debug("peer %s: disconnected", c->peer);
		conn_close(c);
		return;
	}
	atomic_fetch_add(&c->w->srv->stats.bytes_in, (uint64_t)nread);
	c->rlen = (size_t)nread;
	c->roff = 0;
	conn_process(c);
}

/* The deadline runs from accept and nothing the peer sends moves it: only
 * a good AUTH answer stops it (handle_auth). */
static void on_auth_timeout(uv_timer_t *t)
{
	struct ms_conn *c = t->data;

	flood_close(c, MS_FLOOD_AUTH_TIMEOUT, "no authentication within %u ms",
		    MS_AUTH_TIMEOUT_MS);
}

static void source_of(const struct sockaddr_storage *ss, struct ms_source *src)
{
	memset(src, 0, sizeof(*src));
	if (ss->ss_family == AF_INET) {
		src->family = 4;
		memcpy(src->bytes, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			src->family = 4;
			memcpy(src->bytes, a->s6_addr + 12, 4);
		} else {
			src->family = 6;
			memcpy(src->bytes, a->s6_addr, MS_SOURCE_V6_PREFIX_BYTES);
		}
	}
}

/* "192.0.2.7" or "2001:db8:1:2::/64". */
static void source_format(const struct ms_source *src, char *out, size_t n)
{
	uint8_t v6[16] = { 0 };
	char a[INET6_ADDRSTRLEN];

	if (src->family == 4 && inet_ntop(AF_INET, src->bytes, a, sizeof(a))) {
		snprintf(out, n, "%s", a);
		return;
	}
	memcpy(v6, src->bytes, MS_SOURCE_V6_PREFIX_BYTES);
	if (src->family == 6 && inet_ntop(AF_INET6, v6, a, sizeof(a)))
		snprintf(out, n, "%s/%u", a, MS_SOURCE_V6_PREFIX_BYTES * 8);
	else
		snprintf(out, n, "an unknown source");
}

/* Unauthenticated connections of w from src. At most MS_UNAUTH_MAX to
 * look at, so a scan beats keeping a table. */
static unsigned unauth_from(const struct ms_worker *w, const struct ms_source *src)
{
	unsigned n = 0;

	for (const struct ms_conn *o = w->unauth_head; o; o = o->unext)
		n += memcmp(&o->src, src, sizeof(*src)) == 0;
	return n;
}

static void on_connection(uv_stream_t *listener, int status);

static void on_reject_closed(uv_handle_t *h)
{
	struct ms_worker *w = h->data;

	w->rejecting = false;
	if (w->reject_waiting && !uv_is_closing((uv_handle_t *)&w->listener)) {
		w->reject_waiting = false;
		on_connection((uv_stream_t *)&w->listener, 0); /* the one left waiting */
	}
}

/* No memory for a new connection: it is accepted into the worker's spare
 * handle and closed, since libuv stops accepting on a listener while a
 * connection it reported is left unaccepted. One that comes while the
 * spare is closing is accepted when it is closed. */
static void reject_connection(struct ms_worker *w)
{
	if (w->rejecting) {
		w->reject_waiting = true;
		return;
	}
	if (uv_tcp_init(&w->loop, &w->reject)) /* no socket yet: cannot fail */
		return;
	w->reject.data = w;
	w->rejecting = true;
	uv_accept((uv_stream_t *)&w->listener, (uv_stream_t *)&w->reject);
	uv_close((uv_handle_t *)&w->reject, on_reject_closed);
	gvm_log_limited(&w->nomem_log, GVM_LOG_ERROR,
			"accept: out of memory for a connection: closed at once");
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct ms_worker *w = listener->data;
	struct ms_server *srv = w->srv;
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	struct ms_conn *c;
	struct gvm_hdr h;

	if (status < 0) {
		gvm_warn("accept: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		reject_connection(w);
		return;
	}
	c->w = w;
	uv_tcp_init(&w->loop, &c->tcp);
	uv_timer_init(&w->loop, &c->auth_timer);
	c->tcp.data = c->auth_timer.data = c;
	c->open_handles = 2;
	gvm_reader_init(&c->rd);
	/* Until it authenticates, a peer may send nothing larger than AUTH. */
	gvm_reader_limit(&c->rd, GVM_AUTH_NONCE_BYTES + GVM_AUTH_MAC_BYTES);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	atomic_fetch_add(&srv->stats.conns, 1);
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
		gvm_format_addr((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
		source_of(&ss, &c->src);
	} else {
		strcpy(c->peer, "?");
	}
	if (unauth_from(w, &c->src) >= MS_UNAUTH_PER_SOURCE_MAX) {
		char src[INET6_ADDRSTRLEN + 8];

		source_format(&c->src, src, sizeof(src));
		flood_close(c, MS_FLOOD_PER_SOURCE,
			    "%u unauthenticated connections from %s already, the most from one source",
			    MS_UNAUTH_PER_SOURCE_MAX, src);
		return;
	}
	if (w->nunauth >= MS_UNAUTH_MAX)
		flood_close(w->unauth_head, MS_FLOOD_OLDEST,
			    "the oldest of %u unauthenticated connections, to make room for a new one",
			    MS_UNAUTH_MAX);
	unauth_add(c);
	uv_tcp_nodelay(&c->tcp, 1);
	gvm_debug("peer %s: connected", c->peer);
	uv_timer_start(&c->auth_timer, on_auth_timeout, MS_AUTH_TIMEOUT_MS, 0);
	gvm_auth_nonce(c->nonce);
	gvm_hdr_init(&h, GVM__OP__OP_AUTH, 0);
	h.payload_len = GVM_AUTH_NONCE_BYTES;
	conn_send(c, &h, c->nonce);
	if (!c->closing)
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_stop(uv_async_t *a)
{
	struct ms_worker *w = a->data;

	uv_close((uv_handle_t *)&w->listener, NULL);
	uv_close((uv_handle_t *)&w->stop, NULL);
	flood_flush(w);
	uv_close((uv_handle_t *)&w->flood_timer, NULL);
	while (w->conns)
		conn_close(w->conns);
	if (w->index == 0) { /* out of the loop's count; closed at the very end */
		uv_unref((uv_handle_t *)&w->srv->sigterm);
		uv_unref((uv_handle_t *)&w->srv->sigint);
	}
}

void ms_block_stop_signals(bool block)
{
	sigset_t stop;

	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &stop, NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct ms_server *srv = sig->data;

	if (srv->stopping)
		return; /* a second one: the shutdown goes on */
	srv->stopping = true;
	gvm_info("%s: shutting down", strsignal(signum));
	/* The handles stay until the backing file is flushed: stopping them
	 * would put back the default action, and a second signal would end
	 * the flush half-way (test_broker saw one land in that instant). */
	for (unsigned i = 0; i < srv->nworkers; i++)
		uv_async_send(&srv->workers[i].stop);
}

/* A listening socket; SO_REUSEPORT only when several threads share the port. */
static int listen_socket(const struct sockaddr *sa, socklen_t len, bool reuseport)
{
	int one = 1, fd, err;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, sa, len) < 0 || listen(fd, MS_LISTEN_BACKLOG) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void worker_thread(void *arg)
{
	struct ms_worker *w = arg;

	uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void walk_close(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Closes whatever a worker still has open (after a failed start, or
 * nothing after a normal stop) and frees it. */
static void worker_teardown(struct ms_worker *w)
{
	if (w->loop_ready) {
		uv_walk(&w->loop, walk_close, NULL);
		uv_run(&w->loop, UV_RUN_DEFAULT);
		uv_loop_close(&w->loop);
	}
	free(w->scratch);
}

static int worker_init(struct ms_worker *w, struct sockaddr_storage *ss,
		       socklen_t len)
{
	int fd, err;

	w->scratch = malloc(GVM_FRAME_PAYLOAD_MAX_BYTES);
	if (!w->scratch)
		return -ENOMEM;
	err = uv_loop_init(&w->loop);
	if (err)
		return err;
	w->loop_ready = true; /* worker_teardown closes what is made from here */
	w->nomem_log = (struct gvm_log_limit)GVM_LOG_LIMIT_INIT(MS_FLOOD_LOG_INTERVAL_MS);
	err = uv_async_init(&w->loop, &w->stop, on_stop);
	if (err)
		return err;
	w->stop.data = w;
	uv_timer_init(&w->loop, &w->flood_timer);
	w->flood_timer.data = w;
	fd = listen_socket((struct sockaddr *)ss, len, w->srv->nworkers > 1);
	if (fd < 0)
		return fd;
	/* Port 0 picks one port; every other thread then binds that one. */
	getsockname(fd, (struct sockaddr *)ss, &len);
	uv_tcp_init(&w->loop, &w->listener);
	w->listener.data = w;
	err = uv_tcp_open(&w->listener, fd);
	if (err) {
		close(fd);
		return err;
	}
	return uv_listen((uv_stream_t *)&w->listener, MS_LISTEN_BACKLOG, on_connection);
}

/* Raises the soft RLIMIT_NOFILE to the hard limit; what it leaves past
 * MS_FDS_RESERVED is how many authenticated connections the donor serves,
 * said in one line. Below MS_CONNS_MIN it does not start: -EMFILE. */
static int conn_limits_init(struct ms_server *srv)
{
	uint64_t reserved = MS_FDS_RESERVED(srv->nworkers), was, now, room;
	char raised[64] = "";

	gvm_raise_fd_limit(UINT64_MAX, &was, &now);
	srv->nofile = now;
	if (now < reserved + MS_CONNS_MIN) {
		gvm_err("open-file limit %llu (the hard limit) is too low: %u thread%s keep %llu files for peers authenticating and spares, and leave fewer than %u for brokers; raise it (LimitNOFILE= in the unit, ulimit -Hn in a shell) or run fewer --threads",
			(unsigned long long)now, srv->nworkers, srv->nworkers > 1 ? "s" : "",
			(unsigned long long)reserved, MS_CONNS_MIN);
		return -EMFILE;
	}
	room = now - reserved;
	srv->conns_max = room > UINT_MAX / 2 ? UINT_MAX / 2 : (unsigned)room;
	if (now > was)
		snprintf(raised, sizeof(raised), ", raised from %llu", (unsigned long long)was);
	gvm_info("serving up to %u connections (open-file limit %llu%s), at most %u per host id; %llu files kept for up to %u peers authenticating per thread and spares",
		 srv->conns_max, (unsigned long long)now, raised, srv->host_conns,
		 (unsigned long long)reserved, MS_UNAUTH_MAX);
	if (srv->conns_max < srv->host_conns)
		gvm_warn("open-file limit %llu is low: one host may hold %u connections (--host-conns), all hosts together only %u; raise it with LimitNOFILE= in the unit (gvm-memserver@.service), or ulimit -Hn before starting",
			 (unsigned long long)now, srv->host_conns, srv->conns_max);
	return 0;
}

int ms_server_run(const struct ms_config *cfg, struct ms_store *store,
		  const struct gvm_key *key)
{
	struct ms_server srv = { .store = store, .key = key };
	struct sockaddr_storage ss;
	unsigned started = 0;
	socklen_t len;
	char addr[80];
	int err;

	err = gvm_parse_hostport(cfg->listen, GVM_DONOR_DEFAULT_PORT, &ss, &len);
	if (err) {
		gvm_err("--listen %s: not an ADDR:PORT this host can bind", cfg->listen);
		return err;
	}
	err = gvm_auth_init();
	if (err) {
		gvm_err("libsodium failed to initialise");
		return err;
	}
	srv.nworkers = cfg->threads;
	srv.host_conns = cfg->host_conns ? cfg->host_conns : MS_HOST_CONNS_DEFAULT;
	err = conn_limits_init(&srv);
	if (err)
		return err;
	srv.workers = calloc(srv.nworkers, sizeof(*srv.workers));
	if (!srv.workers)
		return -ENOMEM;
	pthread_mutex_init(&srv.hosts.lock, NULL);
	for (unsigned i = 0; i < srv.nworkers; i++) {
		srv.workers[i].srv = &srv;
		srv.workers[i].index = i;
		err = worker_init(&srv.workers[i], &ss, len);
		if (err) {
			gvm_err("listen %s: %s", cfg->listen, strerror(-err));
			goto out;
		}
	}
	/* (a handle made and then failed is closed by worker_teardown) */
	err = uv_signal_init(&srv.workers[0].loop, &srv.sigterm);
	if (!err)
		err = uv_signal_init(&srv.workers[0].loop, &srv.sigint);
	srv.sigterm.data = srv.sigint.data = &srv;
	if (!err)
		err = uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
	if (!err)
		err = uv_signal_start(&srv.sigint, on_signal, SIGINT);
	if (err) {
		gvm_err("cannot watch SIGTERM and SIGINT: %s", uv_strerror(err));
		goto out;
	}
	for (started = 1; started < srv.nworkers; started++) {
		err = uv_thread_create(&srv.workers[started].thread, worker_thread,
				       &srv.workers[started]);
		if (err) {
			gvm_err("cannot start thread %u of %u: %s", started + 1, srv.nworkers,
				uv_strerror(err));
			break;
		}
	}
	if (err) { /* the threads started stop again, as at SIGTERM */
		srv.stopping = true;
		for (unsigned i = 0; i < started; i++)
			uv_async_send(&srv.workers[i].stop);
	} else {
		gvm_format_addr((struct sockaddr *)&ss, addr, sizeof(addr));
		gvm_info("listening on %s (%u thread%s)", addr, srv.nworkers,
			 srv.nworkers > 1 ? "s" : "");
	}
	ms_block_stop_signals(false); /* here, and only here, they arrive */
	uv_run(&srv.workers[0].loop, UV_RUN_DEFAULT);
	for (unsigned i = 1; i < started; i++)
		uv_thread_join(&srv.workers[i].thread);
out:
	/* Closing the signal handles puts back the default action: a second
	 * signal must not land then, nor during the backing file's flush that
	 * follows (main.c). Held back while they close, then ignored. */
	ms_block_stop_signals(true);
	for (unsigned i = 0; i < srv.nworkers; i++)
		worker_teardown(&srv.workers[i]);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	ms_block_stop_signals(false);
	free(srv.workers);
	free(srv.hosts.slots);
	pthread_mutex_destroy(&srv.hosts.lock);
	return err;
}
