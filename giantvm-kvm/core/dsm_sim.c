/* dsm_sim.c: the simulator of dsm_sim.h. Messages wait in one list in
 * send order; a step either starts a fault (a random node and page) or
 * delivers the oldest message of a random link, so every interleaving that
 * per-link FIFO allows can happen, reproducibly from the seed. After each
 * step the touched page is checked on every node: at most one owner;
 * MODIFIED means no other valid copy; every valid copy holds the last
 * written value and version; when the owner is idle, every sharer is in
 * its copyset; when nothing is in flight for the page, every prob_owner
 * chain reaches the owner. */
#include "dsm_sim.h"

struct sim_msg {
	dsm_node_t from, to;
	struct dsm_msg *m;
};

struct sim {
	const struct dsm_sim_cfg *cfg;
	struct dsm_sim_result *res;
	struct dsm_node *nodes;
	u64 *data;	/* nodes x pages: what each node's copy holds */
	u64 *latest;	/* per page: the last written value */
	u32 *inflight;	/* per page: messages on the way */
	u32 *busy;	/* per page: transactions running */
	u64 *mark;	/* per node: prob_owner chain check, by epoch */
	u64 epoch;
	struct sim_msg *q;
	u64 nq, capq;
	u64 rng;
	u32 txns;
	int err;
};

static u64 sim_rand(struct sim *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return s->rng;
}

static int sim_send(void *ctx, dsm_node_t from, dsm_node_t to, const struct dsm_msg *m,
		    size_t len)
{
	struct sim *s = ctx;
	struct dsm_msg *copy;

	if (to >= s->cfg->nodes)
		return -EINVAL;
	if (s->nq == s->capq) {
		u64 cap = s->capq ? 2 * s->capq : 256;
		struct sim_msg *q = kvmalloc_array(cap, sizeof(*q), GFP_KERNEL);

		if (!q)
			return -ENOMEM;
		if (s->nq)
			memcpy(q, s->q, s->nq * sizeof(*q));
		kvfree(s->q);
		s->q = q;
		s->capq = cap;
	}
	copy = kvmalloc_array(1, len, GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, m, len);
	s->q[s->nq++] = (struct sim_msg){ from, to, copy };
	s->inflight[m->gfn]++;
	s->res->messages++;
	return 0;
}

static u64 sim_page_get(void *ctx, dsm_node_t node, u64 gfn)
{
	struct sim *s = ctx;

	return s->data[(u64)node * s->cfg->pages + gfn];
}

static void sim_page_set(void *ctx, dsm_node_t node, u64 gfn, u64 data)
{
	struct sim *s = ctx;

	s->data[(u64)node * s->cfg->pages + gfn] = data;
}

static void sim_done(void *ctx, dsm_node_t node, u64 gfn, bool write)
{
	struct sim *s = ctx;

	s->busy[gfn]--;
	s->txns--;
	if (write)
		s->latest[gfn] = s->data[(u64)node * s->cfg->pages + gfn];
}

static const struct dsm_ops sim_ops = {
	.send = sim_send,
	.page_get = sim_page_get,
	.page_set = sim_page_set,
	.done = sim_done,
};

static int violation(struct sim *s, u64 gfn, const char *what, int a, int b)
{
	s->res->violation = 1;
	snprintf(s->res->why, sizeof(s->res->why), "page %llu: %s (nodes %d, %d) after %llu steps",
		 (unsigned long long)gfn, what, a, b, (unsigned long long)s->res->steps);
	return -EDOM;
}

static int check_page(struct sim *s, u64 gfn)
{
	u16 N = s->cfg->nodes;
	int owner = -1, modified = -1, valid = -1;
	u32 version = 0;

	s->res->checks++;
	for (u16 i = 0; i < N; i++) {
		const struct dsm_page *p = &s->nodes[i].pages[gfn];

		if (p->state & DSM_OWNER) {
			if (owner >= 0)
				return violation(s, gfn, "two owners", owner, i);
			owner = i;
		}
		if (!dsm_page_valid(p))
			continue;
		if (s->data[(u64)i * s->cfg->pages + gfn] != s->latest[gfn])
			return violation(s, gfn, "a valid copy is not the last written value", i, -1);
		if (valid >= 0 && p->version != version)
			return violation(s, gfn, "valid copies of different versions", valid, i);
		version = p->version;
		if ((p->state & DSM_STATE_MASK) == DSM_MODIFIED) {
			if (modified >= 0 || valid >= 0)
				return violation(s, gfn, "MODIFIED beside another valid copy",
						 modified >= 0 ? modified : valid, i);
			modified = i;
		} else if (modified >= 0) {
			return violation(s, gfn, "MODIFIED beside another valid copy", modified, i);
		}
		valid = i;
	}
	if (owner >= 0 && !s->nodes[owner].pages[gfn].busy) {
		const struct dsm_page *op = &s->nodes[owner].pages[gfn];

		for (u16 i = 0; i < N; i++) {
			const struct dsm_page *p = &s->nodes[i].pages[gfn];

			if (i == owner || !dsm_page_valid(p))
				continue;
			if (!op->copyset || !dsm_copyset_has(op->copyset, i))
				return violation(s, gfn, "a sharer missing from the owner's copyset",
						 owner, i);
		}
	}
	if (!s->inflight[gfn] && !s->busy[gfn]) {
		/* mark: 2*epoch on the walk in progress, 2*epoch+1 known to
		 * reach the owner; each node is walked once per check. */
		u64 onpath = 2 * ++s->epoch, good = onpath + 1;

		if (owner < 0)
			return violation(s, gfn, "no owner while nothing is in flight", -1, -1);
		s->mark[owner] = good;
		for (u16 i = 0; i < N; i++) {
			dsm_node_t at = i;

			while (s->mark[at] != good && s->mark[at] != onpath && at < N) {
				s->mark[at] = onpath;
				at = s->nodes[at].pages[gfn].prob_owner;
				if (at >= N)
					break;
			}
			if (at >= N || s->mark[at] != good)
				return violation(s, gfn, "a prob_owner chain misses the owner", i, owner);
			for (at = i; s->mark[at] == onpath; at = s->nodes[at].pages[gfn].prob_owner)
				s->mark[at] = good;
		}
	}
	return 0;
}

/* Delivers the oldest message of the link of a random queued message. */
static int deliver_one(struct sim *s, u64 *gfn)
{
	u64 pick = sim_rand(s) % s->nq, first = pick;
	struct sim_msg sm;
	int err;

	for (u64 i = 0; i < pick; i++)
		if (s->q[i].from == s->q[pick].from && s->q[i].to == s->q[pick].to) {
			first = i;
			break;
		}
	sm = s->q[first];
	memmove(&s->q[first], &s->q[first + 1], (s->nq - first - 1) * sizeof(*s->q));
	s->nq--;
	*gfn = sm.m->gfn;
	s->inflight[*gfn]--;
	err = dsm_handle(&s->nodes[sm.to], sm.m);
	kvfree(sm.m);
	if (err) {
		s->res->violation = 1;
		snprintf(s->res->why, sizeof(s->res->why),
			 "node %u refused a message for page %llu: error %d", sm.to,
			 (unsigned long long)*gfn, err);
		return -EDOM;
	}
	return 0;
}

static int start_fault(struct sim *s, dsm_node_t node, u64 gfn, bool write)
{
	u64 value = sim_rand(s) | 1;
	int r = dsm_fault(&s->nodes[node], gfn, write, value);

	if (r == -EBUSY)
		return 0;
	if (r < 0)
		return r;
	s->res->faults++;
	if (write)
		s->res->writes++;
	else
		s->res->reads++;
	if (r == 1) {
		s->busy[gfn]++;
		s->txns++;
	} else if (write) {
		s->latest[gfn] = value; /* written in place by the owner */
	}
	return 0;
}

static void sim_free(struct sim *s)
{
	for (u64 i = 0; i < s->nq; i++)
		kvfree(s->q[i].m);
	kvfree(s->q);
	if (s->nodes)
		for (u32 i = 0; i < s->cfg->nodes; i++)
			dsm_node_destroy(&s->nodes[i]);
	kvfree(s->nodes);
	kvfree(s->data);
	kvfree(s->latest);
	kvfree(s->inflight);
	kvfree(s->busy);
	kvfree(s->mark);
}

static int sim_init(struct sim *s, const struct dsm_sim_cfg *cfg, struct dsm_sim_result *res)
{
	int err;

	memset(s, 0, sizeof(*s));
	memset(res, 0, sizeof(*res));
	s->cfg = cfg;
	s->res = res;
	s->rng = cfg->seed * 0x9e3779b97f4a7c15ull + 1;
	s->nodes = kvcalloc(cfg->nodes, sizeof(*s->nodes), GFP_KERNEL);
	s->data = kvcalloc((size_t)cfg->nodes * cfg->pages, sizeof(u64), GFP_KERNEL);
	s->latest = kvcalloc(cfg->pages, sizeof(u64), GFP_KERNEL);
	s->inflight = kvcalloc(cfg->pages, sizeof(u32), GFP_KERNEL);
	s->busy = kvcalloc(cfg->pages, sizeof(u32), GFP_KERNEL);
	s->mark = kvcalloc(cfg->nodes, sizeof(u64), GFP_KERNEL);
	if (!s->nodes || !s->data || !s->latest || !s->inflight || !s->busy || !s->mark)
		return -ENOMEM;
	for (u32 i = 0; i < cfg->nodes; i++) {
		err = dsm_node_init(&s->nodes[i], (dsm_node_t)i, cfg->nodes, cfg->pages, &sim_ops, s);
		if (err)
			return err;
		s->nodes[i].bugs = cfg->bugs;
	}
	return 0;
}

/* Delivers messages until nothing is in flight, checking as it goes. */
static int drain(struct sim *s)
{
	u64 gfn;
	int err;

	while (s->nq) {
		err = deliver_one(s, &gfn);
		if (!err)
			err = check_page(s, gfn);
		if (err)
			return err;
		s->res->steps++;
	}
	return 0;
}

int dsm_sim_run(const struct dsm_sim_cfg *cfg, struct dsm_sim_result *res)
{
	u32 active = cfg->active_nodes && cfg->active_nodes < cfg->nodes ? cfg->active_nodes :
									    cfg->nodes;
	struct sim s;
	int err;

	if (cfg->nodes < 2 || !cfg->pages)
		return -EINVAL;
	err = sim_init(&s, cfg, res);
	while (!err && res->steps < cfg->steps) {
		u64 r = sim_rand(&s), gfn = 0;

		if (cfg->burst_readers && r % 5000 == 0) {
			/* Many readers of one page, then a write by one of them. */
			u64 page = sim_rand(&s) % cfg->pages;

			for (u32 k = 0; !err && k < cfg->burst_readers; k++) {
				err = start_fault(&s, (dsm_node_t)(sim_rand(&s) % cfg->nodes), page, false);
				if (!err)
					err = drain(&s);
			}
			if (!err)
				err = start_fault(&s, (dsm_node_t)(sim_rand(&s) % active), page, true);
			gfn = page;
		} else if (s.nq && (s.txns >= cfg->max_txns || r % 3 != 0)) {
			err = deliver_one(&s, &gfn);
		} else {
			gfn = sim_rand(&s) % cfg->pages;
			err = start_fault(&s, (dsm_node_t)(sim_rand(&s) % active), gfn,
					  (u32)(sim_rand(&s) % 100) < cfg->write_pct);
		}
		if (!err)
			err = check_page(&s, gfn);
		res->steps++;
		if ((res->steps & 1023) == 0)
			cond_resched();
	}
	if (!err)
		err = drain(&s);
	for (u64 g = 0; !err && g < cfg->pages; g++)
		err = check_page(&s, g);
	for (u32 i = 0; i < cfg->nodes; i++) {
		if (s.nodes[i].stats.max_fanout > res->max_fanout)
			res->max_fanout = s.nodes[i].stats.max_fanout;
		for (u64 g = 0; g < cfg->pages; g++) {
			const struct dsm_page *p = &s.nodes[i].pages[g];

			res->page_bytes += sizeof(*p);
			if (p->copyset)
				res->copyset_bytes += sizeof(*p->copyset) +
						      dsm_copyset_heap_bytes(p->copyset);
		}
	}
	sim_free(&s);
	return err;
}

int dsm_sim_fanout(u16 nodes, u32 sharers, u64 latency_ns, u64 msg_ns, struct dsm_fanout *out)
{
	struct dsm_sim_cfg cfg = { .nodes = nodes, .pages = 1, .seed = 1 };
	struct dsm_sim_result res;
	struct sim s;
	u64 t = 0, last_ack = 0;
	int err;

	if (sharers + 2 > nodes)
		return -EINVAL;
	err = sim_init(&s, &cfg, &res);
	/* Nodes 1..sharers read the page (node 0 owns it), then node
	 * nodes-1, which holds no copy, writes. */
	for (u32 i = 1; !err && i <= sharers; i++) {
		err = start_fault(&s, (dsm_node_t)i, 0, false);
		if (!err)
			err = drain(&s);
	}
	if (!err)
		err = start_fault(&s, (dsm_node_t)(nodes - 1), 0, true);
	if (!err)
		err = drain(&s);
	if (!err)
		err = check_page(&s, 0);
	out->sharers = sharers;
	/* What the write really sent: one invalidation per copy, one ack each. */
	out->messages = 2 * s.nodes[nodes - 1].stats.invalidations;
	sim_free(&s);
	if (err)
		return err;
	{
		u64 k = out->messages / 2;

		/* Serial: each invalidation is a round trip, one after the other. */
		out->serial_ns = k * (2 * latency_ns + 3 * msg_ns);
		/* Parallel: the i-th goes out at i*msg, its ack is back after two
		 * latencies and the sharer's handling; acks are handled in turn. */
		for (u64 i = 0; i < k; i++) {
			u64 arrive = (i + 1) * msg_ns + 2 * latency_ns + msg_ns;

			t = (arrive > last_ack ? arrive : last_ack) + msg_ns;
			last_ack = t;
		}
		out->parallel_ns = t;
	}
	return 0;
}
