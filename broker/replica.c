/* replica.c: extent locations and replicas (replica.h). A tick every
 * REPLICA_TICK_MS decides deaths and returns and moves the re-replication
 * on:
 * - A donor with no ready connection, or whose oldest request has gone
 *   unanswered, for --dead-after is dead: it leaves every location (an
 *   extent that had no other copy is lost), and the pool fails what waits
 *   for it, so reads go to the other copies.
 * - A donor that comes back after a short absence has its namespaces
 *   opened again: one that answers with another id restarted empty, and
 *   loses its copies. A dead donor that comes back first has this host's
 *   namespaces dropped (what it holds is stale), then takes new copies.
 * - Extents with fewer copies than --replicas are copied, a READ from a
 *   survivor and a WRITE to the next usable donor in placement order, at
 *   most --rereplicate-rate bytes a second; a write-back or discard of the
 *   extent meanwhile (its version moves) voids the copy, to be made again.
 * - A draining donor's copies (it left the donors list) do not count: each
 *   such extent is copied the same way, then the draining copy leaves the
 *   location. A draining donor that holds nothing more is drained
 *   (donors.c drops our namespaces there). */
#include "replica.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "placement.h"
#include "pool.h"
#include "region.h"
#include "seal.h"
#include "stats.h"

#define REPLICA_TICK_MS 100u
#define REPLICA_SCAN_STEPS 65536u /* extents looked at per tick */

struct bk_copy {
	struct bk_req req; /* first: the pool hands back &req */
	struct bk_copy *next;
	struct bk_region *rg;
	uint64_t e;
	unsigned src, dst;
	uint32_t ver, count;
	uint8_t *buf;
	/* The extent is written as it was read (a sealed one checked, still
	 * sealed): the READ reply's zero bits, tags and payload (in buf). */
	uint8_t zero_bitmap[GVM_FRAME_BITMAP_MAX_BYTES];
	uint32_t payload_len, tag_bytes;
};

/* Per donor. */
struct rep_donor {
	bool dead;
	bool reviving;     /* back from the dead, being emptied */
	bool was_up;
	bool stale;        /* dead while it may have held copies of ours */
	unsigned revive_pending;
};

struct bk_replica {
	struct bk_broker *b;
	uv_timer_t tick;
	struct rep_donor *donor; /* b->donors_cap entries */
	unsigned ndead;
	bool work;         /* an extent may be short of copies, or on a draining donor */
	struct bk_copy *copies;
	unsigned ncopies;
	struct bk_list *lists;
	double tokens;     /* bytes re-replication may move now */
	uint64_t last_ms;
	struct bk_vm *scan_vm; /* where the scan stands: a VM (may be stale: checked) */
	size_t scan_region;
	bool scanning;     /* rereplicate is on the stack */
};

static struct gvm_log_limit lost_lines = GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);

unsigned bk_loc_count(const struct bk_region *rg, uint64_t e)
{
	const uint16_t *l = bk_loc(rg, e);
	unsigned n = 0;

	while (n < BK_REPLICAS_MAX && l[n] != BK_NO_DONOR)
		n++;
	return n;
}

bool bk_loc_has(const struct bk_region *rg, uint64_t e, unsigned d)
{
	const uint16_t *l = bk_loc(rg, e);

	for (unsigned i = 0; i < BK_REPLICAS_MAX && l[i] != BK_NO_DONOR; i++)
		if (l[i] == d)
			return true;
	return false;
}

bool bk_loc_add(struct bk_region *rg, uint64_t e, unsigned d)
{
	uint16_t *l = bk_loc(rg, e);
	unsigned n = bk_loc_count(rg, e);

	if (bk_loc_has(rg, e, d))
		return true;
	if (n == BK_REPLICAS_MAX)
		return false;
	l[n] = (uint16_t)d;
	if (!rg->vm->b->donors[d].extents++)
		bk_pool_set_keep(rg->vm->b->pool, d, true);
	if (rg->vm->b->donors[d].state == BK_DONOR_REMOVED) {
		/* A re-attached VM's LIST found copies on a donor let go meanwhile:
		 * they move to the listed donors like any drain's. */
		gvm_info("donor %s: removed, but holds copies of vm %s: draining again",
			 rg->vm->b->donors[d].addr, rg->vm->name);
		rg->vm->b->donors[d].state = BK_DONOR_DRAINING;
		rg->vm->b->replica->work = true;
	}
	return true;
}

void bk_loc_forget(struct bk_region *rg)
{
	struct bk_broker *b = rg->vm->b;

	for (uint64_t i = 0; rg->loc && i < rg->nextents * BK_REPLICAS_MAX; i++)
		if (rg->loc[i] != BK_NO_DONOR) {
			if (!--b->donors[rg->loc[i]].extents)
				bk_pool_set_keep(b->pool, rg->loc[i], false);
			rg->loc[i] = BK_NO_DONOR;
		}
}

void bk_replica_check(struct bk_region *rg, uint64_t e)
{
	unsigned n = bk_loc_count(rg, e);

	if (n && n < rg->vm->b->cfg.replicas && rg->vm->b->replica)
		rg->vm->b->replica->work = true;
}

void bk_loc_del(struct bk_region *rg, uint64_t e, unsigned d)
{
	uint16_t *l = bk_loc(rg, e);
	uint64_t first = e * bk_extent_pages(rg), count = bk_extent_count(rg, e);
	unsigned n = bk_loc_count(rg, e), i = 0;

	while (i < n && l[i] != d)
		i++;
	if (i == n)
		return;
	memmove(l + i, l + i + 1, (n - i - 1) * sizeof(*l));
	l[n - 1] = BK_NO_DONOR;
	if (!--rg->vm->b->donors[d].extents)
		bk_pool_set_keep(rg->vm->b->pool, d, false);
	if (rg->vm->b->replica)
		rg->vm->b->replica->work = true;
	if (n > 1)
		return;
	/* That was its last copy. What is resident is all that is left of it:
	 * dirty, so eviction writes it to new donors; the rest is lost. */
	for (uint64_t p = first; p < first + count; p++) {
		if (bk_bit_test(rg->resident, p))
			bk_region_set_dirty(rg, p);
		else
			bk_region_set_lost(rg, p, true);
	}
	gvm_log_limited(&lost_lines, GVM_LOG_ERROR,
			"vm %s: extent %llu of %s lost its last copy (donor %s); its pages not in "
			"memory are poisoned: the VM gets a memory error on them",
			rg->vm->name, (unsigned long long)e, rg->ns,
			bk_pool_donor_addr(rg->vm->b->pool, d));
}

bool bk_donor_dead(const struct bk_broker *b, unsigned d)
{
	return b->replica && b->replica->donor[d].dead;
}

bool bk_donor_usable(const struct bk_broker *b, unsigned d)
{
	return b->donors[d].state == BK_DONOR_ACTIVE && bk_pool_donor_up(b->pool, d) &&
	       !bk_donor_dead(b, d) && !(b->replica && b->replica->donor[d].reviving);
}

unsigned bk_read_donor(const struct bk_region *rg, uint64_t e, const struct bk_tried *skip)
{
	const struct bk_broker *b = rg->vm->b;
	const uint16_t *l = bk_loc(rg, e);
	unsigned waiting = BK_NO_DONOR;

	for (unsigned i = 0; i < BK_REPLICAS_MAX && l[i] != BK_NO_DONOR; i++) {
		if (bk_tried_has(skip, l[i]) || bk_donor_dead(b, l[i]))
			continue;
		if (bk_pool_donor_up(b->pool, l[i]))
			return l[i];
		if (waiting == BK_NO_DONOR)
			waiting = l[i];
	}
	return waiting;
}

/* The r usable donors not holding e with the highest scores for it, best
 * first: one pass over the donor table with the hashes made once. */
static unsigned place_top(const struct bk_region *rg, uint64_t e, uint16_t *out, unsigned r)
{
	const struct bk_broker *b = rg->vm->b;
	uint64_t key = gvm_place_key(rg->ns_hash, e);
	double best[BK_REPLICAS_MAX];
	unsigned n = 0;

	for (unsigned d = 0; d < b->ndonors; d++) {
		double score;
		unsigned k;

		if (!bk_donor_usable(b, d) || bk_loc_has(rg, e, d))
			continue;
		score = gvm_place_score(key, b->donors[d].hash, b->donors[d].weight);
		if (n == r && score <= best[r - 1])
			continue;
		k = n < r ? n++ : r - 1;
		while (k > 0 && score > best[k - 1]) {
			best[k] = best[k - 1];
			out[k] = out[k - 1];
			k--;
		}
		best[k] = score;
		out[k] = (uint16_t)d;
	}
	return n;
}

unsigned bk_place_new(const struct bk_region *rg, uint64_t e, uint16_t out[BK_REPLICAS_MAX])
{
	return place_top(rg, e, out, rg->vm->b->cfg.replicas);
}

/* The best usable donor that holds no copy of e. */
static unsigned copy_target(const struct bk_region *rg, uint64_t e)
{
	uint16_t d;

	return place_top(rg, e, &d, 1) ? d : BK_NO_DONOR;
}

void bk_replica_ns_lost(struct bk_region *rg, unsigned d, const char *why)
{
	static struct gvm_log_limit lines = GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);

	gvm_log_limited(&lines, GVM_LOG_WARN, "donor %s: lost namespace %s (%s); its copies are "
			"made again from the others", bk_pool_donor_addr(rg->vm->b->pool, d), rg->ns,
			why);
	rg->ns_id[d] = 0;
	rg->ns_was[d] = 0;
	for (uint64_t e = 0; e < rg->nextents; e++)
		if (bk_loc_has(rg, e, d))
			bk_loc_del(rg, e, d);
}

void bk_replica_ns_opened(struct bk_region *rg, unsigned d, uint32_t id)
{
	if (rg->ns_was[d] && rg->ns_was[d] != id)
		bk_replica_ns_lost(rg, d, "it opened it under another id: it restarted empty");
	rg->ns_id[d] = id;
	rg->ns_was[d] = id;
}

struct ns_open_req {
	struct bk_req req;
	struct bk_region *rg;
	void (*done)(void *ctx, int err);
	void *ctx;
};

static void on_ns_open(struct bk_req *req, int status, const struct gvm_hdr *h,
		       const uint8_t *payload)
{
	struct ns_open_req *o = (struct ns_open_req *)req;
	struct bk_region *rg = o->rg;
	unsigned d = req->donor;
	int err = status ? status : h->status ? -h->status : 0;

	(void)payload;
	if (!err && !rg->vm->detached) {
		bk_replica_ns_opened(rg, d, h->ns);
	} else if (err && err != -EHOSTDOWN) {
		bk_stats.donor_errors++;
		gvm_warn("donor %s: OPEN_NS %s failed: %s", bk_pool_donor_addr(rg->vm->b->pool, d),
			 rg->ns, status ? strerror(-status) : h->error);
	}
	o->done(o->ctx, err);
	bk_vm_put(rg->vm);
	free(o);
}

void bk_ns_open(struct bk_region *rg, unsigned d, void (*done)(void *ctx, int err), void *ctx)
{
	struct ns_open_req *o;

	if (rg->ns_id[d]) {
		done(ctx, 0);
		return;
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		bk_stats_nomem("donor %s: OPEN_NS %s not sent: what needed it is tried again later",
			       bk_pool_donor_addr(rg->vm->b->pool, d), rg->ns);
		done(ctx, -ENOMEM);
		return;
	}
	o->rg = rg;
	o->done = done;
	o->ctx = ctx;
	o->req.donor = d;
	o->req.flags = BK_REQ_DEMAND;
	o->req.cb = on_ns_open;
	gvm_hdr_init(&o->req.hdr, GVM__OP__OP_OPEN_NS, 0);
	strcpy(o->req.hdr.ns_name, rg->ns);
	rg->vm->refs++;
	bk_pool_submit(rg->vm->b->pool, &o->req);
}

/* ---- the location map of a re-attached region ---- */

/* Donor d need not (or need no longer) answer rg's LIST. */
static void list_excuse(struct bk_region *rg, unsigned d)
{
	if (rg->list_state[d] != BK_LIST_DONE) {
		rg->list_state[d] = BK_LIST_DONE;
		rg->nlisted++;
	}
}

struct bk_list {
	struct bk_req req;
	struct bk_list *next, **pprev; /* in the broker's list: reachable until its end */
	struct bk_region *rg;
	unsigned d;
	uint64_t next_page;
	uint8_t *bits;
};

static void map_check(struct bk_region *rg)
{
	struct bk_broker *b = rg->vm->b;

	if (rg->map_ready || rg->nlisted < b->ndonors)
		return;
	rg->map_ready = true;
	b->replica->work = true; /* some extents may be short of copies */
	gvm_debug("vm %s: %s: every donor said what it holds", rg->vm->name, rg->ns);
	bk_region_wake(rg, 0, rg->npages); /* faults that waited for it */
}

static void list_end(struct bk_list *l, bool done)
{
	struct bk_region *rg = l->rg;

	*l->pprev = l->next;
	if (l->next)
		l->next->pprev = l->pprev;
	if (done)
		list_excuse(rg, l->d);
	else if (rg->list_state[l->d] == BK_LIST_ASKING)
		rg->list_state[l->d] = BK_LIST_NONE; /* the tick asks again */
	if (!rg->vm->detached)
		map_check(rg);
	bk_vm_put(rg->vm);
	free(l->bits);
	free(l);
}

static void list_next(void *ctx, int err);

static void on_listed(struct bk_req *req, int status, const struct gvm_hdr *h,
		      const uint8_t *payload)
{
	struct bk_list *l = (struct bk_list *)req;
	struct bk_region *rg = l->rg;
	int err = status ? status : h->status ? -h->status : 0;

	if (rg->vm->detached) {
		list_end(l, false);
		return;
	}
	if (err == -ENOENT) {
		bk_replica_ns_lost(rg, l->d, "LIST: unknown namespace");
		list_next(l, 0); /* opens it again: it holds nothing now */
		return;
	}
	if (err) {
		if (err != -EHOSTDOWN) {
			bk_stats.donor_errors++;
			gvm_warn("donor %s: LIST of %s failed: %s; asked again later",
				 bk_pool_donor_addr(rg->vm->b->pool, l->d), rg->ns,
				 status ? strerror(-status) : h->error);
		}
		list_end(l, false);
		return;
	}
	for (uint32_t i = 0; i < h->page_count; i++)
		if (payload[i / 8] & (1u << (i % 8)))
			bk_loc_add(rg, (h->first_page + i) / bk_extent_pages(rg), l->d);
	l->next_page = h->first_page + h->page_count;
	list_next(l, 0);
}

static void list_next(void *ctx, int err)
{
	struct bk_list *l = ctx;
	struct bk_region *rg = l->rg;
	uint64_t count;

	if (err || rg->vm->detached || l->next_page >= rg->npages) {
		list_end(l, !err && !rg->vm->detached);
		return;
	}
	if (!rg->ns_id[l->d]) {
		bk_ns_open(rg, l->d, list_next, l);
		return;
	}
	count = rg->npages - l->next_page;
	if (count > GVM_LIST_PAGES_MAX)
		count = GVM_LIST_PAGES_MAX;
	memset(&l->req, 0, sizeof(l->req));
	l->req.donor = l->d;
	l->req.flags = BK_REQ_DEMAND;
	l->req.cb = on_listed;
	l->req.rx_buf = l->bits;
	l->req.rx_cap = gvm_list_bitmap_bytes(GVM_LIST_PAGES_MAX);
	gvm_hdr_init(&l->req.hdr, GVM__OP__OP_LIST, 0);
	l->req.hdr.ns = rg->ns_id[l->d];
	l->req.hdr.first_page = l->next_page;
	l->req.hdr.page_count = (uint32_t)count;
	bk_pool_submit(rg->vm->b->pool, &l->req);
}

static void list_start(struct bk_region *rg, unsigned d)
{
	struct bk_list *l = calloc(1, sizeof(*l));

	if (!l || !(l->bits = malloc(gvm_list_bitmap_bytes(GVM_LIST_PAGES_MAX)))) {
		free(l);
		bk_stats_nomem("vm %s: LIST of %s on donor %s not sent: asked again at the next "
			       "tick", rg->vm->name, rg->ns, bk_pool_donor_addr(rg->vm->b->pool, d));
		return;
	}
	l->rg = rg;
	l->d = d;
	l->next = rg->vm->b->replica->lists;
	if (l->next)
		l->next->pprev = &l->next;
	l->pprev = &rg->vm->b->replica->lists;
	rg->vm->b->replica->lists = l;
	rg->list_state[d] = BK_LIST_ASKING;
	rg->vm->refs++;
	list_next(l, 0);
}

void bk_replica_map(struct bk_region *rg)
{
	struct bk_broker *b = rg->vm->b;

	rg->map_ready = false;
	rg->nlisted = 0;
	memset(rg->list_state, BK_LIST_NONE, b->donors_cap);
	for (unsigned d = 0; d < b->ndonors; d++)
		if (bk_donor_dead(b, d))
			list_excuse(rg, d);
		else
			list_start(rg, d);
	map_check(rg);
}

/* ---- deaths and returns ---- */

/* Whether a VM waiting to re-attach had namespaces on donor d: its copies
 * there are unknown until it is back (its LIST then finds them, and the
 * drain moves them), so d is not drained before. */
static bool orphan_on(const struct bk_broker *b, unsigned d)
{
	for (const struct bk_orphan *o = b->orphans; o; o = o->next)
		for (size_t k = 0; k < o->ndonors; k++)
			if (o->donors[k] == d)
				return true;
	return false;
}

/* Whether every attached region knows where its copies are. */
static bool maps_ready(const struct bk_broker *b)
{
	for (const struct bk_vm *vm = b->vms; vm; vm = vm->next)
		for (size_t i = 0; i < vm->nregions && !vm->detached; i++)
			if (!vm->regions[i].map_ready)
				return false;
	return true;
}

static void declare_dead(struct bk_broker *b, unsigned d, const char *why)
{
	struct bk_replica *rep = b->replica;

	gvm_warn("donor %s: dead (%s for %u ms); its copies are made again from the others",
		 bk_pool_donor_addr(b->pool, d), why, b->cfg.dead_after_ms);
	rep->donor[d].dead = true;
	rep->ndead++;
	/* Whether it may hold copies of ours that its return must drop. */
	rep->donor[d].stale = b->donors[d].extents > 0;
	for (struct bk_vm *vm = b->vms; vm && !rep->donor[d].stale; vm = vm->next)
		for (size_t i = 0; i < vm->nregions && !vm->detached; i++)
			rep->donor[d].stale |= vm->regions[i].ns_id[d] || vm->regions[i].ns_was[d];
	for (struct bk_vm *vm = b->vms; vm; vm = vm->next) {
		if (vm->detached)
			continue;
		for (size_t i = 0; i < vm->nregions; i++) {
			struct bk_region *rg = &vm->regions[i];

			rg->ns_id[d] = 0;
			rg->ns_was[d] = 0;
			list_excuse(rg, d);
			for (uint64_t e = 0; e < rg->nextents; e++)
				if (bk_loc_has(rg, e, d))
					bk_loc_del(rg, e, d);
		}
	}
	/* What waits for it fails now: reads go to other copies. */
	bk_pool_set_dead(b->pool, d, true);
	for (struct bk_vm *vm = b->vms; vm; vm = vm->next)
		for (size_t i = 0; i < vm->nregions && !vm->detached; i++)
			map_check(&vm->regions[i]);
}

struct revive_req {
	struct bk_req req;
	struct bk_replica *rep;
};

static void revive_step(struct bk_replica *rep, unsigned d)
{
	if (--rep->donor[d].revive_pending)
		return;
	rep->donor[d].reviving = false;
	gvm_info("donor %s: back; %s, it takes new ones", bk_pool_donor_addr(rep->b->pool, d),
		 rep->donor[d].stale ? "this host's old copies there are dropped" :
				       "it held nothing of this host's");
	rep->work = true;
}

static void on_revive_dropped(struct bk_req *req, int status, const struct gvm_hdr *h,
			      const uint8_t *payload)
{
	struct revive_req *r = (struct revive_req *)req;
	struct bk_replica *rep = r->rep;

	(void)payload;
	if (!status && h->status && h->status != ENOENT)
		gvm_warn("donor %s: DROP_NS %s: %s", bk_pool_donor_addr(rep->b->pool, req->donor),
			 req->hdr.ns_name, h->error);
	revive_step(rep, req->donor);
	free(r);
}

static void drop_on(struct bk_replica *rep, unsigned d, const char *ns)
{
	struct revive_req *r = calloc(1, sizeof(*r));

	if (!r) {
		bk_stats_nomem("donor %s: DROP_NS %s not sent: its stale copies of it stay there",
			       bk_pool_donor_addr(rep->b->pool, d), ns);
		return;
	}
	r->rep = rep;
	r->req.donor = d;
	r->req.flags = BK_REQ_DEMAND;
	r->req.cb = on_revive_dropped;
	gvm_hdr_init(&r->req.hdr, GVM__OP__OP_DROP_NS, 0);
	strcpy(r->req.hdr.ns_name, ns);
	rep->donor[d].revive_pending++;
	bk_pool_submit(rep->b->pool, &r->req);
}

/* A dead donor is back: what it holds of ours is stale, so this host's
 * namespaces there (of attached VMs that had one there, and of VMs that
 * may re-attach) are dropped before it takes any new copy. */
static void revive(struct bk_broker *b, unsigned d)
{
	struct bk_replica *rep = b->replica;

	bk_pool_set_dead(b->pool, d, false);
	rep->donor[d].dead = false;
	rep->ndead--;
	rep->donor[d].reviving = true;
	rep->donor[d].revive_pending = 1; /* held until every DROP_NS is out */
	for (struct bk_vm *vm = b->vms; vm && rep->donor[d].stale; vm = vm->next)
		for (size_t i = 0; i < vm->nregions && !vm->detached; i++)
			drop_on(rep, d, vm->regions[i].ns);
	for (struct bk_orphan *o = b->orphans; o; o = o->next)
		for (size_t k = 0; k < o->ndonors; k++)
			for (size_t i = 0; i < o->nregions && o->donors[k] == d; i++)
				drop_on(rep, d, o->ns[i]);
	revive_step(rep, d);
}

static void on_validated(void *ctx, int err)
{
	(void)ctx;
	(void)err; /* on_ns_open compared the ids */
}

/* A donor reachable again after a short absence: did it keep our
 * namespaces? Each is opened again; another id means it restarted empty. */
static void validate(struct bk_broker *b, unsigned d)
{
	for (struct bk_vm *vm = b->vms; vm; vm = vm->next) {
		for (size_t i = 0; i < vm->nregions && !vm->detached; i++) {
			struct bk_region *rg = &vm->regions[i];

			if (!rg->ns_was[d])
				continue;
			rg->ns_id[d] = 0;
			bk_ns_open(rg, d, on_validated, NULL);
		}
	}
}

/* ---- re-replication ---- */

static void rereplicate(struct bk_replica *rep);

/* Whether extents may need copies: more than one wanted, or a donor
 * draining. */
static bool replicating(const struct bk_broker *b)
{
	if (b->cfg.replicas > 1)
		return true;
	for (unsigned d = 0; d < b->ndonors; d++)
		if (b->donors[d].state == BK_DONOR_DRAINING)
			return true;
	return false;
}

/* A copy is done, made or not: the next one starts at once while there is
 * work and rate left (waiting for the tick held re-replication to eight
 * extents a tick). */
static void copy_end(struct bk_copy *c)
{
	struct bk_replica *rep = c->rg->vm->b->replica;
	struct bk_copy **pp;

	for (pp = &rep->copies; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	rep->ncopies--;
	bk_vm_put(c->rg->vm);
	free(c->buf);
	free(c);
	if (rep->work && rep->tokens > 0 && !rep->b->stopping)
		rereplicate(rep);
}

/* A holder of e's copy that is draining, or BK_NO_DONOR. */
static unsigned draining_holder(const struct bk_region *rg, uint64_t e)
{
	const uint16_t *l = bk_loc(rg, e);

	for (unsigned i = 0; i < BK_REPLICAS_MAX && l[i] != BK_NO_DONOR; i++)
		if (rg->vm->b->donors[l[i]].state != BK_DONOR_ACTIVE)
			return l[i];
	return BK_NO_DONOR;
}

static bool copy_void(const struct bk_copy *c)
{
	const struct bk_region *rg = c->rg;

	return rg->vm->detached || rg->ext_ver[c->e] != c->ver || rg->wb_inflight[c->e] ||
	       !bk_loc_count(rg, c->e);
}

static void on_copy_written(struct bk_req *req, int status, const struct gvm_hdr *h,
			    const uint8_t *payload)
{
	struct bk_copy *c = (struct bk_copy *)req;
	struct bk_region *rg = c->rg;
	int err = status ? status : h->status ? -h->status : 0;

	(void)payload;
	if (err == -ENOENT && !rg->vm->detached)
		bk_replica_ns_lost(rg, c->dst, "WRITE: unknown namespace");
	else if (!err && !copy_void(c) && !bk_donor_dead(rg->vm->b, c->dst)) {
		if (!bk_loc_add(rg, c->e, c->dst)) { /* full: a draining copy makes room */
			unsigned d = draining_holder(rg, c->e);

			if (d != BK_NO_DONOR) {
				bk_loc_del(rg, c->e, d);
				bk_loc_add(rg, c->e, c->dst);
			}
		}
		bk_stats.rereplicated_pages += c->count;
		rg->vm->b->replica->work = true; /* its draining copies may go now */
	}
	copy_end(c);
}

static void copy_write(void *ctx, int err)
{
	struct bk_copy *c = ctx;
	struct bk_region *rg = c->rg;

	if (err || copy_void(c)) {
		copy_end(c);
		return;
	}
	memset(&c->req, 0, sizeof(c->req));
	c->req.donor = c->dst;
	c->req.flags = BK_REQ_FAIL_IF_DOWN;
	c->req.cb = on_copy_written;
	gvm_hdr_init(&c->req.hdr, GVM__OP__OP_WRITE, 0);
	c->req.hdr.ns = rg->ns_id[c->dst];
	c->req.hdr.first_page = c->e * bk_extent_pages(rg);
	c->req.hdr.page_count = c->count;
	memcpy(c->req.hdr.zero_bitmap, c->zero_bitmap, sizeof(c->zero_bitmap));
	c->req.hdr.tag_bytes = c->tag_bytes;
	c->req.hdr.payload_len = c->payload_len;
	c->req.payload = c->buf;
	c->req.rx_buf = c->buf; /* the pool frees it with a request it never answered */
	bk_pool_submit(rg->vm->b->pool, &c->req);
}

static void on_copy_read(struct bk_req *req, int status, const struct gvm_hdr *h,
			 const uint8_t *payload)
{
	struct bk_copy *c = (struct bk_copy *)req;
	struct bk_region *rg = c->rg;
	int err = status ? status : h->status ? -h->status : 0;

	if (err == -ENOENT && !rg->vm->detached)
		bk_replica_ns_lost(rg, c->src, "READ: unknown namespace");
	if (err || copy_void(c)) {
		copy_end(c);
		return;
	}
	if (bk_sealed(rg)) {
		/* Checked before it is copied: a forged copy is not spread. */
		static uint8_t opened[GVM_FRAME_DATA_MAX_BYTES];
		uint64_t bad, skip[BK_SEAL_SKIP_WORDS];

		bk_seal_skip_map(rg, h->first_page, h->page_count, skip);
		if (bk_seal_open(rg, h, payload, opened, skip, NULL, &bad)) {
			bk_replica_forged(rg, c->e, c->src, bad);
			copy_end(c);
			return;
		}
	}
	if (payload != c->buf)
		memcpy(c->buf, payload, h->payload_len);
	memcpy(c->zero_bitmap, h->zero_bitmap, sizeof(c->zero_bitmap));
	c->tag_bytes = h->tag_bytes;
	c->payload_len = h->payload_len;
	bk_ns_open(rg, c->dst, copy_write, c);
}

static void copy_read(void *ctx, int err)
{
	struct bk_copy *c = ctx;
	struct bk_region *rg = c->rg;

	if (err || copy_void(c)) {
		copy_end(c);
		return;
	}
	memset(&c->req, 0, sizeof(c->req));
	c->req.donor = c->src;
	c->req.flags = 0; /* behind every fault's READ */
	c->req.cb = on_copy_read;
	c->req.rx_buf = c->buf;
	c->req.rx_cap = (uint32_t)bk_frame_bytes(rg, c->count);
	gvm_hdr_init(&c->req.hdr, GVM__OP__OP_READ, 0);
	c->req.hdr.ns = rg->ns_id[c->src];
	c->req.hdr.first_page = c->e * bk_extent_pages(rg);
	c->req.hdr.page_count = c->count;
	c->req.hdr.tag_bytes = bk_sealed(rg) ? GVM_PAGE_TAG_BYTES : 0;
	bk_pool_submit(rg->vm->b->pool, &c->req);
}

static bool copying(const struct bk_replica *rep, const struct bk_region *rg, uint64_t e)
{
	for (const struct bk_copy *c = rep->copies; c; c = c->next)
		if (c->rg == rg && c->e == e)
			return true;
	return false;
}

/* Starts a copy of extent e if it is short of copies on listed donors and
 * one can be made; lets go of its draining copies once it is not. */
static bool copy_maybe(struct bk_replica *rep, struct bk_region *rg, uint64_t e)
{
	unsigned n = bk_loc_count(rg, e), kept = n, src, dst, d;
	unsigned want = rep->b->cfg.replicas;
	struct bk_copy *c;

	if (!n || rg->wb_inflight[e] || copying(rep, rg, e))
		return false;
	for (unsigned i = 0; i < n; i++)
		kept -= rep->b->donors[bk_loc(rg, e)[i]].state != BK_DONOR_ACTIVE;
	if (want > rep->b->active_donors) /* fewer listed donors than copies wanted */
		want = rep->b->active_donors;
	if (kept && kept >= want) {
		while (kept && (d = draining_holder(rg, e)) != BK_NO_DONOR)
			bk_loc_del(rg, e, d); /* enough copies elsewhere: not the last */
		return false;
	}
	rep->work = true; /* still short, whether or not a copy starts now */
	src = bk_read_donor(rg, e, NULL);
	dst = copy_target(rg, e);
	if (src == BK_NO_DONOR || dst == BK_NO_DONOR || !bk_pool_donor_up(rep->b->pool, src))
		return false;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->buf = malloc(bk_frame_bytes(rg, bk_extent_pages(rg))))) {
		free(c);
		bk_stats_nomem("vm %s: copy of extent %llu of %s not started: tried again on a "
			       "later pass", rg->vm->name, (unsigned long long)e, rg->ns);
		return false;
	}
	c->rg = rg;
	c->e = e;
	c->src = src;
	c->dst = dst;
	c->ver = rg->ext_ver[e];
	c->count = (uint32_t)bk_extent_count(rg, e);
	c->next = rep->copies;
	rep->copies = c;
	rep->ncopies++;
	rep->tokens -= (double)c->count * GVM_PAGE_SIZE;
	rg->vm->refs++;
	bk_ns_open(rg, src, copy_read, c);
	return true;
}

/* Walks the regions from where the last tick stopped, starting copies
 * while the rate and the in-flight bound allow. */
static void rereplicate(struct bk_replica *rep)
{
	struct bk_broker *b = rep->b;
	unsigned steps = 0;
	bool found = false;
	struct bk_vm *vm;

	if (rep->scanning || !replicating(b))
		return; /* a copy that ended inside the walk: it goes on */
	rep->scanning = true;
	for (vm = b->vms; vm && vm != rep->scan_vm; vm = vm->next)
		;
	if (!vm) { /* gone, or a new pass */
		vm = b->vms;
		rep->scan_region = 0;
	}
	rep->work = false;
	for (unsigned vms = 0; vm && steps < REPLICA_SCAN_STEPS; vms++) {
		for (; rep->scan_region < vm->nregions && !vm->detached; rep->scan_region++) {
			struct bk_region *rg = &vm->regions[rep->scan_region];

			for (; rg->rr_cursor < rg->nextents && steps < REPLICA_SCAN_STEPS; steps++) {
				if (rep->ncopies >= BK_REREPLICATE_INFLIGHT_MAX || rep->tokens <= 0) {
					rep->work = true;
					rep->scan_vm = vm;
					rep->scanning = false;
					return;
				}
				found |= copy_maybe(rep, rg, rg->rr_cursor);
				rg->rr_cursor++;
			}
			if (rg->rr_cursor < rg->nextents) {
				rep->work = true;
				rep->scan_vm = vm;
				rep->scanning = false;
				return;
			}
			rg->rr_cursor = 0;
		}
		vm = vm->next;
		rep->scan_region = 0;
	}
	rep->scan_vm = vm;
	if (vm || found)
		rep->work = true;
	rep->scanning = false;
}

static void on_tick(uv_timer_t *t)
{
	struct bk_replica *rep = t->data;
	struct bk_broker *b = rep->b;
	uint64_t now = uv_now(b->loop);
	double cap = (double)b->cfg.rereplicate_bytes / (1000.0 / REPLICA_TICK_MS);

	for (unsigned d = 0; d < b->ndonors; d++) {
		bool up = bk_pool_donor_up(b->pool, d);
		uint64_t down = bk_pool_down_since(b->pool, d), oldest = bk_pool_oldest_ms(b->pool, d);

		if (b->donors[d].state == BK_DONOR_REMOVED)
			continue;
		if (b->donors[d].state == BK_DONOR_DRAINING && !b->donors[d].extents &&
		    maps_ready(b) && !orphan_on(b, d))
			bk_donor_drained(b, d); /* removed now */
		else if (rep->donor[d].dead) {
			if (up)
				revive(b, d);
		} else if (down && now - down >= b->cfg.dead_after_ms) {
			declare_dead(b, d, "unreachable");
		} else if (oldest && now - oldest >= b->cfg.dead_after_ms) {
			declare_dead(b, d, "no answer");
		} else if (up && !rep->donor[d].was_up) {
			validate(b, d);
		}
		rep->donor[d].was_up = bk_pool_donor_up(b->pool, d);
	}
	/* Regions whose map could not be had yet ask again. */
	for (struct bk_vm *vm = b->vms; vm; vm = vm->next)
		for (size_t i = 0; i < vm->nregions && !vm->detached; i++) {
			struct bk_region *rg = &vm->regions[i];

			if (rg->map_ready)
				continue;
			for (unsigned d = 0; d < b->ndonors; d++)
				if (rg->list_state[d] == BK_LIST_NONE)
					list_start(rg, d);
		}
	rep->tokens += (double)b->cfg.rereplicate_bytes * (double)(now - rep->last_ms) / 1000.0;
	rep->last_ms = now;
	if (rep->tokens > cap + (double)b->cfg.extent_pages * GVM_PAGE_SIZE)
		rep->tokens = cap + (double)b->cfg.extent_pages * GVM_PAGE_SIZE;
	/* (This tick is also a loop turn: a VM gone quiet while over the
	 * budget is brought back under it by followup.c's eviction check.) */
	if (rep->work && replicating(b))
		rereplicate(rep);
	else if (rep->work)
		rep->work = false; /* one copy wanted, none draining: nothing to copy */
}

void bk_replica_wake(struct bk_broker *b)
{
	if (b->replica)
		b->replica->work = true;
}

void bk_replica_forget_donor(struct bk_broker *b, unsigned d)
{
	struct bk_replica *rep = b->replica;

	if (rep->donor[d].dead) {
		rep->donor[d].dead = false;
		rep->ndead--;
		bk_pool_set_dead(b->pool, d, false);
	}
	rep->donor[d].reviving = false;
	bk_pool_let_go(b->pool, d);
}

int bk_replica_grow(struct bk_broker *b, unsigned cap)
{
	struct bk_replica *rep = b->replica;
	struct rep_donor *n = realloc(rep->donor, cap * sizeof(*n));

	if (!n)
		return -ENOMEM;
	memset(n + b->donors_cap, 0, (cap - b->donors_cap) * sizeof(*n));
	rep->donor = n;
	return 0;
}

void bk_replica_donor_added(struct bk_broker *b, unsigned d)
{
	b->replica->work = true; /* short extents may have a place now */
	for (struct bk_vm *vm = b->vms; vm; vm = vm->next)
		for (size_t i = 0; i < vm->nregions && !vm->detached; i++) {
			struct bk_region *rg = &vm->regions[i];

			rg->ns_id[d] = 0;
			rg->ns_was[d] = 0;
			list_excuse(rg, d); /* it holds nothing of ours */
		}
}

int bk_replica_setup(struct bk_broker *b)
{
	struct bk_replica *rep = calloc(1, sizeof(*rep));

	if (!rep)
		return -ENOMEM;
	rep->b = b;
	rep->last_ms = uv_now(b->loop);
	uv_timer_init(b->loop, &rep->tick);
	rep->tick.data = rep;
	uv_timer_start(&rep->tick, on_tick, REPLICA_TICK_MS, REPLICA_TICK_MS);
	b->replica = rep;
	return 0;
}

/* The state stays (reachable from the broker) until the process ends:
 * requests the pool never answered still point into it. */
void bk_replica_stop(struct bk_broker *b)
{
	if (b->replica)
		uv_close((uv_handle_t *)&b->replica->tick, NULL);
}

unsigned bk_replica_dead_donors(const struct bk_broker *b)
{
	return b->replica ? b->replica->ndead : 0;
}

uint64_t bk_replica_degraded(const struct bk_broker *b)
{
	unsigned want = b->cfg.replicas < b->active_donors ? b->cfg.replicas : b->active_donors;
	uint64_t n = 0;

	for (const struct bk_vm *vm = b->vms; vm; vm = vm->next)
		for (size_t i = 0; i < vm->nregions && !vm->detached; i++) {
			const struct bk_region *rg = &vm->regions[i];

			for (uint64_t e = 0; e < rg->nextents; e++) {
				unsigned c = bk_loc_count(rg, e);

				n += c && c < want;
			}
		}
	return n;
}

void bk_replica_forged(struct bk_region *rg, uint64_t e, unsigned d, uint64_t bad)
{
	bool held = bk_loc_has(rg, e, d);
	unsigned n = bk_loc_count(rg, e);

	/* Every one is logged: each costs the donor a copy, so a donor that
	 * lies on and on runs out of copies to lie about. */
	bk_stats.integrity_failures++;
	gvm_err("donor %s: page %llu of %s (vm %s) fails authentication (altered, another "
		"page's, or an older version): its copy of extent %llu is dropped%s",
		bk_pool_donor_addr(rg->vm->b->pool, d), (unsigned long long)bad, rg->ns,
		rg->vm->name, (unsigned long long)e,
		!held ? "" : n > 1 ? "; the other copies stand" :
		"; it was the last: the extent's pages not in memory are lost");
	if (held)
		bk_loc_del(rg, e, d);
}
