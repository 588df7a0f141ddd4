/* dsm_ivy.c: the Ivy protocol as GiantVM runs it (ivy.c there), on the
 * scalable state of dsm_core.h. A fault sends a request along prob_owner;
 * whoever is not the owner forwards it and points at the requester (Li &
 * Hudak); the owner answers with the page, its version and its copyset and
 * gives up ownership: a reader becomes the owner of a shared page (the old
 * owner joins its copyset), a writer gets it exclusively once it has
 * invalidated every sharer. Invalidations go out all at once and the
 * writer counts the acks: no serial round trips under the page. Requests
 * for a page with a transaction of ours in flight wait for its end. */
#include "dsm_core.h"

struct dsm_txn {
	struct dsm_txn *next;
	u64 gfn;
	u64 write_data;
	u32 txid;
	u32 acks_pending;
	bool write;
	bool have_page; /* write: the page and ownership are ours, acks to come */
	struct dsm_msg **deferred;
	u32 ndeferred, cap;
};

static struct dsm_txn *txn_find(struct dsm_node *n, u64 gfn)
{
	struct dsm_txn *t;

	for (t = n->txns; t; t = t->next)
		if (t->gfn == gfn)
			return t;
	return NULL;
}

static int send_msg(struct dsm_node *n, dsm_node_t to, struct dsm_msg *m)
{
	m->from = n->id;
	return n->ops->send(n->ctx, n->id, to, m, dsm_msg_len(m));
}

int dsm_node_init(struct dsm_node *n, dsm_node_t id, u16 nodes, u64 npages,
		  const struct dsm_ops *ops, void *ctx)
{
	memset(n, 0, sizeof(*n));
	if (!nodes || nodes > DSM_NODES_MAX || id >= nodes)
		return -EINVAL;
	n->id = id;
	n->nodes = nodes;
	n->npages = npages;
	n->ops = ops;
	n->ctx = ctx;
	n->pages = kvcalloc(npages, sizeof(*n->pages), GFP_KERNEL);
	if (!n->pages)
		return -ENOMEM;
	for (u64 g = 0; g < npages; g++) {
		n->pages[g].state = id == 0 ? (DSM_MODIFIED | DSM_OWNER) : DSM_INITIAL;
		n->pages[g].prob_owner = 0;
	}
	return 0;
}

static void page_drop_copyset(struct dsm_page *p)
{
	if (p->copyset) {
		dsm_copyset_free(p->copyset);
		kvfree(p->copyset);
		p->copyset = NULL;
	}
}

void dsm_node_destroy(struct dsm_node *n)
{
	while (n->txns) {
		struct dsm_txn *t = n->txns;

		n->txns = t->next;
		for (u32 i = 0; i < t->ndeferred; i++)
			kvfree(t->deferred[i]);
		kvfree(t->deferred);
		kvfree(t);
	}
	for (u64 g = 0; n->pages && g < n->npages; g++)
		page_drop_copyset(&n->pages[g]);
	kvfree(n->pages);
	kvfree(n->txid_next);
	memset(n, 0, sizeof(*n));
}

/* The next txid for a request to dest; the counters are allocated, sized by
 * the cluster, the first time this node sends. */
static int next_txid(struct dsm_node *n, dsm_node_t dest, u32 *txid)
{
	if (!n->txid_next) {
		n->txid_next = kvcalloc(n->nodes, sizeof(*n->txid_next), GFP_KERNEL);
		if (!n->txid_next)
			return -ENOMEM;
	}
	*txid = ((u32)n->id << 16 ^ (u32)dest) * 0x9e3779b1u + ++n->txid_next[dest];
	return 0;
}

static int txn_start(struct dsm_node *n, u64 gfn, bool write, u64 data, struct dsm_txn **out)
{
	struct dsm_txn *t = kvzalloc(sizeof(*t), GFP_KERNEL);

	if (!t)
		return -ENOMEM;
	t->gfn = gfn;
	t->write = write;
	t->write_data = data;
	t->next = n->txns;
	n->txns = t;
	n->pages[gfn].busy = 1;
	*out = t;
	return 0;
}

/* Ends t, then handles what waited for it, in arrival order. */
static void txn_end(struct dsm_node *n, struct dsm_txn *t)
{
	struct dsm_txn **pp;

	for (pp = &n->txns; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	n->pages[t->gfn].busy = 0;
	if (n->ops->done)
		n->ops->done(n->ctx, n->id, t->gfn, t->write);
	for (u32 i = 0; i < t->ndeferred; i++) {
		dsm_handle(n, t->deferred[i]);
		kvfree(t->deferred[i]);
	}
	kvfree(t->deferred);
	kvfree(t);
}

static int txn_defer(struct dsm_txn *t, const struct dsm_msg *m)
{
	struct dsm_msg *copy;

	if (t->ndeferred == t->cap) {
		u32 cap = t->cap ? 2 * t->cap : 4;
		struct dsm_msg **d = kvmalloc_array(cap, sizeof(*d), GFP_KERNEL);

		if (!d)
			return -ENOMEM;
		if (t->ndeferred)
			memcpy(d, t->deferred, t->ndeferred * sizeof(*d));
		kvfree(t->deferred);
		t->deferred = d;
		t->cap = cap;
	}
	copy = kvmalloc_array(1, dsm_msg_len(m), GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, m, dsm_msg_len(m));
	t->deferred[t->ndeferred++] = copy;
	return 0;
}

/* The writer owns the page and every sharer has acknowledged. */
static void write_complete(struct dsm_node *n, struct dsm_txn *t)
{
	struct dsm_page *p = &n->pages[t->gfn];

	page_drop_copyset(p);
	p->state = DSM_MODIFIED | DSM_OWNER;
	p->prob_owner = n->id;
	p->version++;
	n->ops->page_set(n->ctx, n->id, t->gfn, t->write_data);
	txn_end(n, t);
}

struct inv_ctx {
	struct dsm_node *n;
	struct dsm_txn *t;
	struct dsm_msg *m;
	u32 sent;
	bool skipped; /* DSM_BUG_SKIP_ONE_INVALIDATION */
	int err;
};

static int send_inv(void *arg, dsm_node_t id)
{
	struct inv_ctx *c = arg;

	if (id == c->n->id)
		return 0;
	if ((c->n->bugs & DSM_BUG_SKIP_ONE_INVALIDATION) && !c->skipped) {
		c->skipped = true;
		return 0;
	}
	c->err = send_msg(c->n, id, c->m);
	if (c->err)
		return c->err;
	c->sent++;
	c->n->stats.invalidations++;
	if ((c->sent & 255) == 0)
		cond_resched();
	return 0;
}

/* Sends every invalidation of the write at once; the acks are counted in
 * dsm_handle. cs: the sharers to invalidate (the writer itself skipped). */
static int write_invalidate(struct dsm_node *n, struct dsm_txn *t, const struct dsm_copyset *cs)
{
	struct dsm_msg m = {
		.type = DSM_MSG_INV,
		.requester = n->id,
		.txid = t->txid,
		.gfn = t->gfn,
	};
	struct inv_ctx c = { .n = n, .t = t, .m = &m };

	t->have_page = true;
	if (cs)
		dsm_copyset_for_each(cs, send_inv, &c);
	if (c.err)
		return c.err;
	if (c.sent > n->stats.max_fanout)
		n->stats.max_fanout = c.sent;
	t->acks_pending = c.sent;
	if (!c.sent)
		write_complete(n, t);
	return 0;
}

int dsm_fault(struct dsm_node *n, u64 gfn, bool write, u64 write_data)
{
	struct dsm_page *p;
	struct dsm_txn *t;
	struct dsm_msg m = { 0 };
	u8 s;
	int err;

	if (gfn >= n->npages)
		return -EINVAL;
	p = &n->pages[gfn];
	if (p->busy)
		return -EBUSY;
	s = p->state & DSM_STATE_MASK;
	if (!write && dsm_page_valid(p))
		return 0;
	if (write && s == DSM_MODIFIED && (p->state & DSM_OWNER)) {
		n->ops->page_set(n->ctx, n->id, gfn, write_data);
		p->version++;
		return 0;
	}
	n->stats.faults++;
	err = txn_start(n, gfn, write, write_data, &t);
	if (err)
		return err;
	if (write && (p->state & DSM_OWNER)) {
		/* Our shared page: only the sharers need telling. */
		err = next_txid(n, n->id, &t->txid);
		if (!err)
			err = write_invalidate(n, t, p->copyset);
		return err ? err : 1;
	}
	err = next_txid(n, p->prob_owner, &t->txid);
	if (err)
		return err;
	m.type = write ? DSM_MSG_WRITE_REQ : DSM_MSG_READ_REQ;
	m.requester = n->id;
	m.txid = t->txid;
	m.gfn = gfn;
	if (write)
		n->stats.write_reqs++;
	else
		n->stats.read_reqs++;
	err = send_msg(n, p->prob_owner, &m);
	return err ? err : 1;
}

/* The owner answers a request and gives up ownership. */
static int serve_request(struct dsm_node *n, const struct dsm_msg *req)
{
	struct dsm_page *p = &n->pages[req->gfn];
	bool write = req->type == DSM_MSG_WRITE_REQ;
	u32 count = p->copyset ? p->copyset->count : 0;
	struct dsm_msg *m;
	dsm_node_t *ids;
	u32 k = 0;
	int err;

	/* The copyset travels to the new owner: ours, plus us for a read
	 * (we keep a valid copy), minus the requester. */
	m = kvzalloc(sizeof(*m) + (count + 1) * sizeof(dsm_node_t), GFP_KERNEL);
	if (!m)
		return -ENOMEM;
	ids = m->copyset;
	if (p->copyset)
		dsm_copyset_to_array(p->copyset, ids);
	for (u32 i = 0; i < count; i++)
		if (ids[i] != req->requester)
			ids[k++] = ids[i];
	if (!write)
		ids[k++] = n->id;
	m->type = DSM_MSG_PAGE;
	m->requester = req->requester;
	m->txid = req->txid;
	m->gfn = req->gfn;
	m->version = p->version;
	m->data = n->ops->page_get(n->ctx, n->id, req->gfn);
	m->ncopyset = (u16)k;
	page_drop_copyset(p);
	p->state = write ? DSM_INVALID : DSM_SHARED;
	p->prob_owner = req->requester;
	n->stats.pages_sent++;
	err = send_msg(n, req->requester, m);
	kvfree(m);
	return err;
}

static int handle_request(struct dsm_node *n, const struct dsm_msg *m)
{
	struct dsm_page *p = &n->pages[m->gfn];
	struct dsm_msg fwd;
	dsm_node_t next;

	if (m->requester >= n->nodes || m->requester == n->id)
		return -EPROTO;
	if (p->busy)
		return txn_defer(txn_find(n, m->gfn), m);
	if (p->state & DSM_OWNER)
		return serve_request(n, m);
	/* Not ours: on along prob_owner, which from now on names the
	 * requester, who is about to own the page. */
	next = p->prob_owner;
	if (next == n->id || next >= n->nodes)
		return -EPROTO;
	fwd = *m;
	p->prob_owner = m->requester;
	n->stats.forwards++;
	return send_msg(n, next, &fwd);
}

static int handle_page(struct dsm_node *n, const struct dsm_msg *m)
{
	struct dsm_txn *t = txn_find(n, m->gfn);
	struct dsm_page *p = &n->pages[m->gfn];
	struct dsm_copyset *cs;
	int err = 0;

	if (!t || t->txid != m->txid || t->have_page)
		return -EPROTO;
	n->ops->page_set(n->ctx, n->id, m->gfn, m->data);
	p->version = m->version;
	page_drop_copyset(p);
	cs = kvzalloc(sizeof(*cs), GFP_KERNEL);
	if (!cs)
		return -ENOMEM;
	dsm_copyset_init(cs, n->nodes);
	for (u16 i = 0; i < m->ncopyset && !err; i++)
		if (m->copyset[i] != n->id)
			err = dsm_copyset_add(cs, m->copyset[i]);
	if (err) {
		dsm_copyset_free(cs);
		kvfree(cs);
		return err;
	}
	p->prob_owner = n->id;
	if (!t->write) {
		p->state = DSM_SHARED | DSM_OWNER;
		if (cs->count) {
			p->copyset = cs;
		} else {
			kvfree(cs);
		}
		txn_end(n, t);
		return 0;
	}
	/* A write: ours once the sharers are gone. Until then we own a
	 * shared page, and requests for it wait. */
	p->state = DSM_SHARED | DSM_OWNER;
	p->copyset = cs;
	return write_invalidate(n, t, cs);
}

static int handle_inv(struct dsm_node *n, const struct dsm_msg *m)
{
	struct dsm_page *p = &n->pages[m->gfn];
	struct dsm_msg ack = {
		.type = DSM_MSG_INV_ACK,
		.requester = m->requester,
		.txid = m->txid,
		.gfn = m->gfn,
	};

	if (p->state & DSM_OWNER)
		return -EPROTO; /* an owner is never in anyone's copyset */
	p->state = DSM_INVALID;
	p->prob_owner = m->requester;
	n->stats.acks++;
	return send_msg(n, m->requester, &ack);
}

static int handle_ack(struct dsm_node *n, const struct dsm_msg *m)
{
	struct dsm_txn *t = txn_find(n, m->gfn);
	struct dsm_page *p = &n->pages[m->gfn];

	if (!t || !t->write || !t->have_page || t->txid != m->txid || !t->acks_pending)
		return -EPROTO;
	if (p->copyset)
		dsm_copyset_del(p->copyset, m->from);
	if (--t->acks_pending == 0)
		write_complete(n, t);
	return 0;
}

int dsm_handle(struct dsm_node *n, const struct dsm_msg *m)
{
	if (m->gfn >= n->npages)
		return -EPROTO;
	switch (m->type) {
	case DSM_MSG_READ_REQ:
	case DSM_MSG_WRITE_REQ:
		return handle_request(n, m);
	case DSM_MSG_PAGE:
		return handle_page(n, m);
	case DSM_MSG_INV:
		return handle_inv(n, m);
	case DSM_MSG_INV_ACK:
		return handle_ack(n, m);
	default:
		return -EPROTO;
	}
}
