/* evict.c: keeping resident guest memory under --budget (DESIGN.md,
 * Eviction). Above the high watermark a clock (oldest-first by address with
 * a second chance: pages used since the hand last passed are skipped once)
 * picks pages from the region holding the most, clean ones first. A clean
 * page is punched out of the memfd: its donors already have it. Dirty
 * pages go in runs within one extent: write-protect, read from the memfd,
 * one WRITE to each of the extent's live copies (its first to the first
 * --replicas donors in placement order), and only after every one acked
 * the punch; a writer that hits the protection meanwhile waits and
 * refaults the page from the donors. A refused write puts everything back
 * as it was. The reads and the punches run on libuv's thread pool, so that
 * faults never wait behind them; the loop keeps all the state (region.c's
 * bits, and this file's: evicting, wp_held, wb_inflight, the clock).
 * Faults that would pass budget + one batch wait (fault.c) while pages are
 * on their way out; followup.c runs the check once per loop turn. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "pool.h"
#include "prefetch.h"
#include "region.h"
#include "replica.h"
#include "seal.h"
#include "stats.h"

/* A write-back (WRITE) or DISCARD of a run of pages within one extent, to
 * every copy of the extent: one request per target donor. A write-back
 * ends well when every live target acked and at least one did: only then
 * are the pages punched. Targets are the extent's copies; its first
 * write-back places it (bk_place_new). Write-backs in flight are listed,
 * so what a stopping broker's pool never answered stays reachable. */
struct bk_wb;

struct bk_wop {
	struct bk_req req; /* first: the pool hands back &req */
	struct bk_wb *wb;
	unsigned slot;
};

enum wop_result { WOP_PENDING, WOP_ACKED, WOP_SKIPPED, WOP_FAILED };

struct bk_wb {
	struct bk_wb *next, **pprev;
	struct bk_region *rg;
	uint64_t first;
	uint32_t count;
	bool discard;
	unsigned ntargets, pending;
	uint16_t targets[BK_REPLICAS_MAX];
	uint8_t result[BK_REPLICAS_MAX];
	char why[GVM_ERROR_MAX_BYTES + 1];
	struct gvm_hdr hdr; /* the WRITE's: zero bits, payload length */
	_Alignas(64) uint8_t data[];
};

static struct bk_wb *wb_all;

void bk_evict_setup(struct bk_broker *b)
{
	b->budget_pages = b->cfg.budget_bytes / GVM_PAGE_SIZE;
	b->high_pages = b->budget_pages * BK_EVICT_HIGH_PCT / 100;
	b->low_pages = b->budget_pages * BK_EVICT_LOW_PCT / 100;
	b->deferred_tail = &b->deferred;
}

bool bk_evict_must_wait(struct bk_broker *b, uint64_t pages)
{
	return b->budget_pages && b->evicting_pages &&
	       b->resident_pages + b->reserved_pages + pages >
		       b->budget_pages + BK_EVICT_BATCH_PAGES / 2;
}

static struct gvm_log_limit refused_lines = GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);

static void punch_off_loop(struct bk_region *rg, uint64_t first, uint64_t count, bool clean);
static void end_evicting(struct bk_region *rg, uint64_t first, uint64_t count);

static void wb_finish(struct bk_wb *wb)
{
	struct bk_region *rg = wb->rg;
	struct bk_broker *b = rg->vm->b;
	uint64_t e = wb->first / bk_extent_pages(rg);
	unsigned acked = 0, failed = 0, last = BK_NO_DONOR;

	*wb->pprev = wb->next;
	if (wb->next)
		wb->next->pprev = wb->pprev;
	for (unsigned i = 0; i < wb->ntargets; i++) {
		acked += wb->result[i] == WOP_ACKED;
		if (wb->result[i] == WOP_FAILED) {
			failed++;
			last = wb->targets[i];
		}
	}
	if (wb->discard) {
		/* A copy that kept pages the VM removed is stale: it goes, unless
		 * it is the last one (then those pages may read old data: said). */
		for (unsigned i = 0; i < wb->ntargets && !rg->vm->detached; i++) {
			if (wb->result[i] != WOP_FAILED)
				continue;
			if (bk_loc_count(rg, e) > 1)
				bk_loc_del(rg, e, wb->targets[i]);
			else
				gvm_warn("vm %s: DISCARD on donor %s failed (%s); it keeps the old pages",
					 rg->vm->name, bk_pool_donor_addr(b->pool, wb->targets[i]),
					 wb->why);
		}
		bk_vm_put(rg->vm);
		free(wb);
		return;
	}
	rg->wb_inflight[e]--;
	if (wb->ntargets && !failed && !rg->vm->detached) {
		/* Every copy has the pages: they are punched off the loop, and
		 * stay being evicted (writers wait) until then. */
		for (unsigned i = 0; i < wb->ntargets; i++)
			if (wb->result[i] == WOP_ACKED)
				bk_loc_add(rg, e, wb->targets[i]);
		bk_replica_check(rg, e);
		punch_off_loop(rg, wb->first, wb->count, false);
		bk_vm_put(rg->vm);
		free(wb);
		return;
	}
	end_evicting(rg, wb->first, wb->count);
	if (!wb->ntargets) {
		/* No donor is reachable now: nothing refused anything. The
		 * region waits a little, and the donors known down are tried
		 * again at once rather than at their backoff. */
		bk_region_protect(rg, wb->first, wb->count, false);
		gvm_log_limited(&refused_lines, GVM_LOG_WARN,
				"vm %s: no donor reachable to take %llu pages; they stay resident, "
				"retrying", rg->vm->name, (unsigned long long)wb->count);
		rg->quiet_until_ms = uv_now(b->loop) + BK_WRITEBACK_NO_DONOR_MS;
		bk_pool_retry_now(b->pool);
	} else if (rg->vm->detached) {
		/* nothing to keep consistent any more */
	} else {
		/* Put things back: the pages stay resident, dirty and writable.
		 * An extent's first copy is placed again at the next pass (the
		 * donor that failed is not usable now); copies it has already
		 * must take the write, so that region waits a while. */
		bool first_copy = !bk_loc_count(rg, e);

		bk_region_protect(rg, wb->first, wb->count, false);
		bk_stats.writeback_errors++;
		gvm_log_limited(&refused_lines, GVM_LOG_WARN,
				"vm %s: write-back of %llu pages to donor %s refused: %s; they stay "
				"resident%s", rg->vm->name, (unsigned long long)wb->count,
				last != BK_NO_DONOR ? bk_pool_donor_addr(b->pool, last) : "(none)",
				wb->why, first_copy ? ", to be placed elsewhere" : " for now");
		rg->quiet_until_ms = uv_now(b->loop) + (first_copy ? BK_WRITEBACK_REPLACE_MS :
								     BK_WRITEBACK_RETRY_MS);
	}
	bk_vm_put(rg->vm);
	free(wb);
	/* the faults waiting for room, and more eviction: followup.c */
}

static void wop_end(struct bk_wop *w, enum wop_result r, const char *why)
{
	struct bk_wb *wb = w->wb;

	wb->result[w->slot] = (uint8_t)r;
	if (r == WOP_FAILED && why)
		snprintf(wb->why, sizeof(wb->why), "%s", why);
	free(w);
	if (--wb->pending == 0)
		wb_finish(wb);
}

static void wop_send(struct bk_wop *w);

static void on_wop_done(struct bk_req *req, int status, const struct gvm_hdr *h,
			const uint8_t *payload)
{
	struct bk_wop *w = (struct bk_wop *)req;
	struct bk_region *rg = w->wb->rg;
	unsigned d = req->donor;
	int err = status ? status : h->status ? -h->status : 0;
	const char *why = status ? strerror(-status) : h->status ? (h->error[0] ? h->error :
								  strerror(h->status)) : NULL;

	(void)payload;
	if (!err) {
		wop_end(w, WOP_ACKED, NULL);
	} else if (rg->vm->detached) {
		wop_end(w, WOP_SKIPPED, NULL);
	} else if (err == -ENOENT) {
		/* The donor lost the namespace, and its copies with it. */
		bk_replica_ns_lost(rg, d, "WRITE: unknown namespace");
		wop_end(w, WOP_SKIPPED, NULL);
	} else if (err == -EHOSTDOWN && bk_donor_dead(rg->vm->b, d)) {
		wop_end(w, WOP_SKIPPED, NULL); /* a dead donor is no live copy */
	} else {
		wop_end(w, WOP_FAILED, why);
	}
}

static void on_wop_ns(struct bk_req *req, int status, const struct gvm_hdr *h,
		      const uint8_t *payload)
{
	struct bk_wop *w = (struct bk_wop *)req;
	struct bk_region *rg = w->wb->rg;
	uint64_t e = w->wb->first / bk_extent_pages(rg);
	bool held = bk_loc_has(rg, e, req->donor);

	if (!status && !h->status && !rg->vm->detached) {
		bk_replica_ns_opened(rg, req->donor, h->ns);
		if (held && !bk_loc_has(rg, e, req->donor)) {
			wop_end(w, WOP_SKIPPED, NULL); /* its copy went with the namespace */
			return;
		}
		wop_send(w);
		return;
	}
	on_wop_done(req, status, h, payload);
}

/* Sends one target's request: OPEN_NS first when needed. */
static void wop_send(struct bk_wop *w)
{
	struct bk_wb *wb = w->wb;
	struct bk_region *rg = wb->rg;
	unsigned d = w->req.donor;

	w->req.flags = BK_REQ_DEMAND | BK_REQ_FAIL_IF_DOWN;
	if (!rg->ns_id[d]) {
		gvm_hdr_init(&w->req.hdr, GVM__OP__OP_OPEN_NS, 0);
		strcpy(w->req.hdr.ns_name, rg->ns);
		w->req.cb = on_wop_ns;
	} else if (wb->discard) {
		gvm_hdr_init(&w->req.hdr, GVM__OP__OP_DISCARD, 0);
		w->req.hdr.ns = rg->ns_id[d];
		w->req.hdr.first_page = wb->first;
		w->req.hdr.page_count = wb->count;
		w->req.cb = on_wop_done;
	} else {
		w->req.hdr = wb->hdr;
		w->req.hdr.ns = rg->ns_id[d];
		w->req.payload = wb->data;
		w->req.cb = on_wop_done;
	}
	bk_pool_submit(rg->vm->b->pool, &w->req);
}

/* Sends wb to each of its targets (set by the caller); the last answer
 * finishes it. With no target it finishes at once. */
static void wb_submit(struct bk_wb *wb)
{
	struct bk_region *rg = wb->rg;
	uint64_t e = wb->first / bk_extent_pages(rg);
	struct bk_wop *w[BK_REPLICAS_MAX] = { 0 };

	rg->ext_ver[e]++; /* a copy being made of it now is void */
	rg->vm->refs++;
	wb->next = wb_all;
	if (wb_all)
		wb_all->pprev = &wb->next;
	wb->pprev = &wb_all;
	wb_all = wb;
	for (unsigned i = 0; i < wb->ntargets; i++) {
		w[i] = calloc(1, sizeof(*w[i]));
		if (!w[i]) {
			bk_stats_nomem("vm %s: a %s to donor %s", rg->vm->name,
				       wb->discard ? "DISCARD" : "WRITE",
				       bk_pool_donor_addr(rg->vm->b->pool, wb->targets[i]));
			wb->result[i] = WOP_FAILED;
			snprintf(wb->why, sizeof(wb->why), "out of memory");
			continue;
		}
		w[i]->wb = wb;
		w[i]->slot = i;
		w[i]->req.donor = wb->targets[i];
	}
	/* Counted before any is sent: an answer may come at once. */
	wb->pending = 1;
	for (unsigned i = 0; i < wb->ntargets; i++)
		wb->pending += w[i] != NULL;
	for (unsigned i = 0; i < wb->ntargets; i++)
		if (w[i])
			wop_send(w[i]);
	if (--wb->pending == 0)
		wb_finish(wb);
}

/* The targets of a write to extent e: its copies on live donors, or, for
 * its first copy, where placement puts it. */
static void wb_targets(struct bk_wb *wb, uint64_t e)
{
	const struct bk_region *rg = wb->rg;
	const uint16_t *l = bk_loc(rg, e);

	wb->ntargets = 0;
	for (unsigned i = 0; i < BK_REPLICAS_MAX && l[i] != BK_NO_DONOR; i++)
		if (!bk_donor_dead(rg->vm->b, l[i]))
			wb->targets[wb->ntargets++] = l[i];
	if (!wb->ntargets && !wb->discard)
		wb->ntargets = bk_place_new(rg, e, wb->targets);
}

/* ---- work off the loop ----
 * The pread of a write-back's pages (and their packing into a WRITE) and
 * the punching of pages out of the memfd run on libuv's thread pool, so a
 * fault never waits behind them. The loop decides, keeps every bit of
 * state and applies a job's result when it ends; a job carries only the
 * memfd, the range and its buffer (and a reference on the VM). Pages stay
 * "evicting" meanwhile: a writer waits for the end (bk_evict_hold_writer),
 * and so does a fault on a page the punch already took (bk_evict_busy). */

struct evict_job {
	uv_work_t work;
	struct bk_region *rg;
	int memfd;
	off_t offset;       /* of the range in the memfd */
	uint64_t first;
	uint32_t count;
	bool clean;         /* a punch: of clean pages (else written back) */
	struct bk_wb *wb;   /* a write-back's read: into wb->data; else a punch */
	int err;
};

/* The range is being evicted from now on: writers and faults on it wait
 * for end_evicting. */
static void begin_evicting(struct bk_region *rg, uint64_t first, uint64_t count)
{
	for (uint64_t p = first; p < first + count; p++)
		bk_bit_set(rg->evicting, p);
	rg->vm->b->evicting_pages += count;
}

/* The range is no longer being evicted: its bits, the host's count, and
 * the writers that waited (they fault again). */
static void end_evicting(struct bk_region *rg, uint64_t first, uint64_t count)
{
	for (uint64_t p = first; p < first + count; p++) {
		bk_bit_clear(rg->wp_held, p);
		bk_bit_clear(rg->evicting, p);
	}
	rg->vm->b->evicting_pages -= count;
}

static void evict_job_free(struct evict_job *j)
{
	bk_vm_put(j->rg->vm);
	free(j);
}

/* The punch of [first, first+count) ended (err: 0 or -errno): the pages
 * are forgotten and counted, or, if it failed, stay resident with their
 * protection lifted; either way their eviction is over, and faults that
 * waited for it go on (to the donors). */
static void punched(struct bk_region *rg, uint64_t first, uint64_t count, bool clean, int err)
{
	if (!rg->vm->detached) {
		if (err) {
			gvm_err("vm %s: cannot punch %llu evicted pages out of its memory: %s",
				rg->vm->name, (unsigned long long)count, strerror(-err));
			bk_region_protect(rg, first, count, false);
		} else {
			bk_region_forget(rg, first, count);
			if (clean)
				bk_stats.clean_drops += count;
			else
				bk_stats.writebacks++;
			bk_stats.evictions += count;
		}
	}
	end_evicting(rg, first, count);
	if (!rg->vm->detached)
		bk_region_wake(rg, first, count);
}

static void on_punched(uv_work_t *w, int status)
{
	struct evict_job *j = w->data;

	punched(j->rg, j->first, j->count, j->clean, status ? status : j->err);
	evict_job_free(j);
}

static void do_punch(uv_work_t *w)
{
	struct evict_job *j = w->data;

	j->err = bk_memfd_punch(j->memfd, j->offset, j->count);
}

static struct evict_job *job_new(struct bk_region *rg, uint64_t first, uint32_t count)
{
	struct evict_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->rg = rg;
	j->memfd = rg->memfd;
	j->offset = (off_t)(rg->memfd_offset + first * GVM_PAGE_SIZE);
	j->first = first;
	j->count = count;
	j->work.data = j;
	rg->vm->refs++;
	return j;
}

/* Punches [first, first+count), which is being evicted, on the thread
 * pool; on_punched forgets the pages. Without memory or a queue, here. */
static void punch_off_loop(struct bk_region *rg, uint64_t first, uint64_t count, bool clean)
{
	struct evict_job *j = job_new(rg, first, (uint32_t)count);

	if (j) {
		j->clean = clean;
		if (!uv_queue_work(rg->vm->b->loop, &j->work, do_punch, on_punched))
			return;
		bk_vm_put(rg->vm);
		free(j);
	}
	punched(rg, first, count, clean,
		bk_memfd_punch(rg->memfd, (off_t)(rg->memfd_offset + first * GVM_PAGE_SIZE), count));
}

/* On the thread pool: reads the pages into the WRITE's buffer; zero pages
 * travel as bits, the rest packed, once for all targets. */
static void do_read(uv_work_t *w)
{
	struct evict_job *j = w->data;
	struct bk_wb *wb = j->wb;
	size_t bytes = (size_t)j->count * GVM_PAGE_SIZE;
	uint32_t k = 0;

	/* read(2) never allocates a hole, unlike a mapping would */
	if (pread(j->memfd, wb->data, bytes, j->offset) != (ssize_t)bytes) {
		j->err = -EIO;
		return;
	}
	gvm_hdr_init(&wb->hdr, GVM__OP__OP_WRITE, 0);
	wb->hdr.first_page = wb->first;
	wb->hdr.page_count = wb->count;
	wb->hdr.payload_len = gvm_hdr_mark_zero_pages(&wb->hdr, wb->data, wb->count) *
			      GVM_PAGE_SIZE;
	for (uint32_t i = 0; i < wb->count; i++)
		if (!gvm_hdr_zero_test(&wb->hdr, i)) {
			if (k != i)
				memmove(wb->data + (size_t)k * GVM_PAGE_SIZE,
					wb->data + (size_t)i * GVM_PAGE_SIZE, GVM_PAGE_SIZE);
			k++;
		}
	/* sealed (seal.h): encrypted in place, the tags after the pages */
	if (bk_sealed(j->rg))
		j->err = bk_seal_pages(j->rg, &wb->hdr, wb->data);
}

static void on_read(uv_work_t *w, int status)
{
	struct evict_job *j = w->data;
	struct bk_region *rg = j->rg;
	struct bk_wb *wb = j->wb;

	if (status || j->err || rg->vm->detached) {
		if (j->err == -EOVERFLOW && !rg->vm->detached) {
			gvm_log_limited(&refused_lines, GVM_LOG_ERROR, "vm %s: pages %llu+%u of %s "
					"were sealed %u times, all their versions: they stay resident",
					rg->vm->name, (unsigned long long)j->first, j->count, rg->name,
					BK_SEAL_VER_MAX);
			rg->quiet_until_ms = uv_now(rg->vm->b->loop) + BK_WRITEBACK_RETRY_MS;
		}
		if (!rg->vm->detached)
			bk_region_protect(rg, j->first, j->count, false);
		rg->wb_inflight[j->first / bk_extent_pages(rg)]--;
		end_evicting(rg, j->first, j->count);
		free(wb);
		evict_job_free(j);
		return;
	}
	wb_targets(wb, j->first / bk_extent_pages(rg));
	wb_submit(wb); /* holds a reference on the VM, which wb_finish puts */
	evict_job_free(j);
}

/* Starts the write-back of a run of dirty pages within one extent:
 * write-protected first (writes then wait: what is read is what the
 * donors must keep), read and packed off the loop, then sent. */
static void writeback(struct bk_region *rg, uint64_t first, uint32_t count)
{
	struct bk_broker *b = rg->vm->b;
	struct bk_wb *wb = calloc(1, sizeof(*wb) + bk_frame_bytes(rg, count));
	struct evict_job *j = wb ? job_new(rg, first, count) : NULL;

	if (!j) {
		bk_stats_nomem("vm %s: write-back of %u pages (they stay resident)", rg->vm->name,
			       count);
		free(wb);
		rg->quiet_until_ms = uv_now(b->loop) + BK_WRITEBACK_RETRY_MS;
		return;
	}
	if (bk_region_protect(rg, first, count, true)) {
		free(wb);
		evict_job_free(j);
		return;
	}
	wb->rg = rg;
	wb->first = first;
	wb->count = count;
	j->wb = wb;
	begin_evicting(rg, first, count);
	bk_seal_writeback_begin(rg, first, count);
	rg->wb_inflight[first / bk_extent_pages(rg)]++;
	if (uv_queue_work(b->loop, &j->work, do_read, on_read)) {
		do_read(&j->work);
		on_read(&j->work, 0);
	}
}

/* Ends a run the clock picked: punched if clean (its donors have it),
 * written back if dirty. */
static void flush_run(struct bk_region *rg, bool dirty, uint64_t first, uint64_t len)
{
	if (dirty) {
		writeback(rg, first, (uint32_t)len);
		return;
	}
	begin_evicting(rg, first, len);
	punch_off_loop(rg, first, len, true);
}

/* Evicts up to want pages of rg: one window of the clock is scanned for
 * clean pages (clearing the referenced bits it passes: the second chance),
 * then the same window again for dirty ones. Returns pages handled. The
 * clock steps a unit at a time: in a hugetlb region a huge page, whose
 * bits all change together (its first page's stand for it), and which is
 * written back and punched whole (at least one, whatever want is). */
static uint64_t evict_from(struct bk_region *rg, uint64_t want)
{
	struct bk_broker *b = rg->vm->b;
	uint64_t taken = 0, start = rg->clock, unit = bk_unit_pages(rg);

	for (int pass = 0; pass < 2 && taken < want; pass++) {
		bool dirty_pass = pass == 1;
		uint64_t run_first = 0, run_len = 0, steps = rg->npages / unit;

		if (steps > BK_EVICT_SCAN_MAX_PAGES / unit)
			steps = BK_EVICT_SCAN_MAX_PAGES / unit;
		rg->clock = start;
		for (uint64_t s = 0; s < steps && taken + run_len < want; s++) {
			uint64_t p = rg->clock, e = p / bk_extent_pages(rg);
			uint8_t st = rg->ext_state[e];
			bool pick = false;

			rg->clock = (rg->clock + unit) % rg->npages;
			if (bk_bit_test(rg->resident, p) && !bk_bit_test(rg->evicting, p) &&
			    st != BK_EXT_FETCHING && st != BK_EXT_PREFETCHING && st != BK_EXT_PAGES &&
			    !bk_bit_test(rg->fetching, p)) {
				if (bk_bit_test(rg->ref, p))
					bk_region_clear_ref(rg, p); /* second chance */
				else
					pick = bk_bit_test(rg->dirty, p) == dirty_pass &&
					       /* its versions used up: it cannot be sealed again */
					       !(dirty_pass && bk_seal_exhausted(rg, p));
			}
			if (pick && st == BK_EXT_CACHED) {
				/* its cached copy would be stale once this page moves */
				bk_cache_drop(b->cache, rg, e);
				bk_region_set_extent(rg, e, BK_EXT_NONE);
			}
			/* A run ends at a gap or an extent boundary. */
			if (run_len && (!pick || p != run_first + run_len ||
					e != run_first / bk_extent_pages(rg))) {
				flush_run(rg, dirty_pass, run_first, run_len);
				taken += run_len;
				run_len = 0;
			}
			if (pick) {
				if (!run_len)
					run_first = p;
				run_len += unit;
			}
		}
		if (run_len) {
			flush_run(rg, dirty_pass, run_first, run_len);
			taken += run_len;
		}
	}
	return taken;
}

/* The region to take from: over its VM's own limit first, else the one
 * holding the most pages. */
static struct bk_region *pick_region(struct bk_broker *b, bool *vm_limit)
{
	struct bk_region *best = NULL;
	uint64_t now = uv_now(b->loop);

	*vm_limit = false;
	for (struct bk_vm *vm = b->vms; vm; vm = vm->next) {
		uint64_t vm_resident;

		if (vm->detached || vm->pinned)
			continue; /* a device may be writing a pinned VM's pages */
		vm_resident = bk_vm_resident(vm);
		for (size_t i = 0; i < vm->nregions; i++) {
			struct bk_region *rg = &vm->regions[i];
			bool over = vm->limit_pages &&
				    vm_resident > vm->limit_pages * BK_EVICT_HIGH_PCT / 100;

			if (!rg->resident_count || now < rg->quiet_until_ms)
				continue;
			if (over && (!*vm_limit || rg->resident_count > best->resident_count)) {
				best = rg;
				*vm_limit = true;
			} else if (!*vm_limit && (!best || rg->resident_count > best->resident_count)) {
				best = rg;
			}
		}
	}
	return best;
}

/* Whether any VM carries a limit of its own. */
static bool any_vm_limit(const struct bk_broker *b)
{
	for (const struct bk_vm *vm = b->vms; vm; vm = vm->next)
		if (vm->limit_pages && !vm->detached && !vm->pinned)
			return true;
	return false;
}

void bk_evict_check(struct bk_broker *b)
{
	if (!b->budget_pages && !any_vm_limit(b))
		return; /* (run every loop turn: nothing to scan without a limit) */
	for (int guard = 0; guard < 64; guard++) {
		bool vm_limit;
		struct bk_region *rg;
		uint64_t target, want;

		if (b->evicting_pages >= BK_EVICT_INFLIGHT_MAX_PAGES)
			break;
		rg = pick_region(b, &vm_limit);
		if (!rg)
			break;
		if (vm_limit) {
			want = BK_EVICT_BATCH_PAGES;
		} else {
			if (!b->budget_pages || b->resident_pages - b->evicting_pages <= b->high_pages)
				break;
			target = b->resident_pages - b->evicting_pages - b->low_pages;
			want = target < BK_EVICT_BATCH_PAGES ? target : BK_EVICT_BATCH_PAGES;
		}
		if (!evict_from(rg, want))
			rg->quiet_until_ms = uv_now(b->loop) + 10; /* nothing to take now */
	}
}

bool bk_evict_busy(const struct bk_region *rg, uint64_t page)
{
	return bk_bit_test(rg->evicting, page);
}

bool bk_evict_hold_writer(struct bk_region *rg, uint64_t page)
{
	if (!bk_bit_test(rg->evicting, page))
		return false;
	bk_bit_set(rg->wp_held, page);
	return true;
}

/* Sends DISCARDs for [first, first+count), one per extent run. */
static void discard_on_donors(struct bk_region *rg, uint64_t first, uint64_t count)
{
	bk_seal_zeroed(rg, first, count); /* sealed: zero whatever the donors keep */
	for (uint64_t p = first; p < first + count;) {
		uint64_t e = p / bk_extent_pages(rg), end = (e + 1) * bk_extent_pages(rg);
		struct bk_wb *w = NULL;

		if (end > first + count)
			end = first + count;
		/* Without memory the donors keep the pages the VM removed, and
		 * they read back old data if the VM touches them before writing. */
		if (bk_loc_count(rg, e) && !(w = calloc(1, sizeof(*w))))
			bk_stats_nomem("vm %s: a DISCARD of %s extent %llu (removed pages there "
				       "may read back old data)", rg->vm->name, rg->ns,
				       (unsigned long long)e);
		if (w) { /* an extent on no donor has nothing to discard */
			w->rg = rg;
			w->first = p;
			w->count = (uint32_t)(end - p);
			w->discard = true;
			wb_targets(w, e);
			wb_submit(w);
		}
		p = end;
	}
}

void bk_evict_removed(struct bk_region *rg, uint64_t first, uint64_t count)
{
	struct bk_broker *b = rg->vm->b;
	off_t base = (off_t)rg->memfd_offset, end = base + (off_t)((first + count) * GVM_PAGE_SIZE);
	off_t off = base + (off_t)(first * GVM_PAGE_SIZE);

	/* MADV_DONTNEED on a shared memfd only unmaps: the data stays, and so
	 * does our view of it. Only holes are really gone: those are forgotten
	 * here and discarded on the donors, so they read as zero. */
	while (off < end) {
		off_t data = lseek(rg->memfd, off, SEEK_DATA), hole_end;

		hole_end = data < 0 || data > end ? end : data;
		if (hole_end > off) {
			uint64_t p = (uint64_t)(off - base) / GVM_PAGE_SIZE;
			uint64_t n = (uint64_t)(hole_end - off) / GVM_PAGE_SIZE;

			bk_region_forget(rg, p, n);
			for (uint64_t q = p; q < p + n; q++)
				bk_region_set_lost(rg, q, false); /* removed: zero, not lost */
			for (uint64_t e = p / bk_extent_pages(rg); e <= (p + n - 1) / bk_extent_pages(rg); e++)
				if (rg->ext_state[e] == BK_EXT_CACHED) {
					bk_cache_drop(b->cache, rg, e);
					bk_region_set_extent(rg, e, BK_EXT_NONE);
				}
			bk_stats.removed_pages += n;
			discard_on_donors(rg, p, n);
		}
		if (hole_end >= end)
			break;
		off = lseek(rg->memfd, hole_end, SEEK_HOLE);
		if (off < 0)
			break;
	}
}

void bk_evict_discarded(struct bk_region *rg, uint64_t first, uint64_t count)
{
	for (uint64_t p = first; p < first + count; p++)
		bk_region_set_lost(rg, p, false); /* removed: zero, not lost */
	bk_stats.removed_pages += count;
	discard_on_donors(rg, first, count);
}

void bk_evict_page_gone(struct bk_region *rg, uint64_t page)
{
	bk_region_forget(rg, page, 1);
	bk_evict_discarded(rg, page, 1);
}
