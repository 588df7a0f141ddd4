/* fault.c: serving page faults. Each attached VM's userfaultfd is polled on
 * the broker's loop; a batch of fault messages is read at once. A missing
 * page's whole extent is installed with UFFDIO_COPY: zeros straight away for
 * an extent no donor holds, otherwise the extent's pages from a donor
 * holding it (pool.c, replica.c) in one READ, or from the prefetch cache
 * (prefetch.c). The faulting page always goes in first, alone, so its thread
 * runs on while the rest is copied. A remote fault sends a one-page READ;
 * its extent's READ follows in the same breath only when there is locality
 * to pay for it (a sequential run, or a second touch in the extent), since
 * moving 128 KiB for every random touch costs more CPU on a small host than
 * the touch itself. A sequential run widens a prefetch window; each
 * prefetched extent is installed as it arrives, while its pages are still
 * hot in the CPU's cache, all but its first page, which stays missing as a
 * tripwire: the fault on it installs it from the prefetch cache and moves
 * the window on (installing ahead stops short of the budget). A fault that
 * finds its extent's prefetch still queued behind other VMs' moves it to
 * the front. Read faults install write-protected, so the first write is a
 * WP fault that marks the page dirty (for eviction) and lifts the WP.
 * An extent's pages come from the first reachable donor holding a copy
 * (replica.h); a READ that fails goes to the next copy (a failover), and a
 * READ slower than its donor's recent p99 is also sent to the next one (a
 * hedged read: the first good answer is installed). With no copy left, a
 * page not in memory is poisoned (UFFDIO_POISON); a READ that failed for
 * another reason is asked again after a backoff. No path refaults in a
 * loop. A sealed VM's replies (seal.h) are opened before anything of them
 * is used, a one-page READ's on the loop, an extent's on libuv's thread
 * pool; a reply with a page that fails authentication is a lost copy
 * (replica.h), and the READ goes to the next one. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "journal.h"
#include "log.h"
#include "pool.h"
#include "prefetch.h"
#include "region.h"
#include "replica.h"
#include "seal.h"
#include "stats.h"
#include "uffd.h"
#include "uffd_compat.h"

#define NO_PAGE UINT64_MAX

struct bk_fetch {
	struct bk_req req; /* first: the pool hands back &req */
	struct bk_region *rg;
	uint64_t extent;
	uint64_t page;  /* NO_PAGE: the whole extent; else just this page */
	uint64_t fault_page; /* the page whose fault asked for the extent, or NO_PAGE */
	uint64_t t0_us; /* when the demand fault was read; 0 for prefetch */
	bool write;     /* page fetch for a write fault: install writable, dirty */
	bool demand;
	bool direct;    /* received straight into the memfd (rx_buf: the broker's mapping) */
	int slot;       /* its journal slot while its payload may be partly there; -1 */
	struct bk_fetch *dnext, **dprev; /* on the list of those (direct_head) */
	uint32_t reserved; /* pages counted in b->reserved_pages until the reply */
	struct bk_tried tried; /* donors asked already */
	uint64_t sent_us;  /* when its READ went to the pool */
	/* A hedged read: the same READ to another copy. The first good answer
	 * is used; the other one, when it comes, only ends itself. */
	struct bk_fetch *twin;
	bool superseded;
	struct bk_fetch *hnext, **hprev; /* waiting to be hedged */
	uint64_t hedge_at_us;
	/* A sealed extent's reply is opened on the thread pool (seal.h): its
	 * header meanwhile (malloc'd), the pages it leaves unchecked, the
	 * result; opened: its pages in rx_buf are plain now. */
	struct gvm_hdr *sealed;
	uv_work_t open_work;
	uint64_t skip[BK_SEAL_SKIP_WORDS], unopened[BK_SEAL_SKIP_WORDS];
	int open_err;
	uint64_t bad;
	bool opened;
	bool no_cache; /* pages of it did not open: install now, never keep it */
};

struct bk_deferred {
	struct bk_deferred *next;
	struct bk_vm *vm;
	struct uffd_msg msg;
	uint64_t t0_us;
};

/* Where an extent goes when no buffer could be had for its READ. */
static uint8_t fetch_buf[GVM_FRAME_PAYLOAD_MAX_BYTES];

/* READs received straight into guest memory whose payload may be there in
 * part: each holds a journal slot (journal.h) until it is whole, or punched. */
static struct bk_fetch *direct_head;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The process behind this uffd is gone, or the uffd broke: it is let go
 * at the end of this loop turn (followup.c). */
static void vm_lost(struct bk_vm *vm, int err)
{
	bk_vm_fail(vm, err);
}

/* Installs one page from src unless it is resident (or, when pages are
 * received into the memfd, its own one-page READ is on its way: that READ
 * writes its slot, and would write it after this install): writable and
 * dirty after a write fault, else write-protected. */
static int poison_page(struct bk_region *rg, uint64_t page);
static void wake_later(struct bk_region *rg, uint64_t first, uint64_t count);

/* Maps n pages at page from src: src is the broker's own mapping of them
 * (their contents were received in the memfd: UFFDIO_CONTINUE) or a buffer
 * (UFFDIO_COPY). */
static int64_t put_pages(struct bk_region *rg, uint64_t page, uint64_t n, const uint8_t *src,
			 bool wp)
{
	const uint8_t *zero = rg->vm->b->zero_extent;
	uint8_t *dst = bk_region_page_addr(rg, page);

	/* Zeros (any part of the zero extent) are copied in: a new page
	 * for UFFDIO_COPY costs no more than the one a memcpy would fault in. */
	if (!dst || (src >= zero && src < zero + bk_extent_pages(rg) * GVM_PAGE_SIZE))
		return bk_region_install(rg, page, n, src, wp);
	/* From a buffer (a hedged read's, the prefetch cache's): into the
	 * memfd first, over whatever a READ that did not finish left there. */
	if (src != dst)
		memcpy(dst, src, n * GVM_PAGE_SIZE);
	return bk_region_continue(rg, page, n, wp);
}

static int install_page(struct bk_region *rg, uint64_t page, const uint8_t *src, bool write)
{
	int64_t n;

	if (bk_bit_test(rg->resident, page))
		return 0;
	if (rg->map && bk_bit_test(rg->fetching, page))
		return 0; /* its own one-page READ writes its slot in the memfd, and maps it */
	if (bk_bit_test(rg->lost, page))
		return poison_page(rg, page);
	n = put_pages(rg, page, 1, src, !write);
	if (n < 0)
		return (int)n;
	if (write)
		bk_region_set_dirty(rg, page);
	return 0;
}

/* Whether install_missing leaves the page alone: installed already, lost
 * (it stays missing: its fault poisons it), or, when pages are received
 * into the memfd, coming in its own one-page READ (which installs it: its
 * slot in the memfd is that READ's to write). */
static bool skip_page(const struct bk_region *rg, uint64_t p)
{
	return bk_bit_test(rg->resident, p) || bk_bit_test(rg->lost, p) ||
	       (rg->map && bk_bit_test(rg->fetching, p));
}

/* Installs, write-protected, the pages of extent e from index `from` on
 * that are not resident, from pages (the extent's full contents): one
 * UFFDIO_COPY or UFFDIO_CONTINUE per run of missing pages. */
static int install_missing(struct bk_region *rg, uint64_t e, const uint8_t *pages, uint64_t from)
{
	uint64_t first = e * bk_extent_pages(rg), count = bk_extent_count(rg, e), i = from;

	while (i < count) {
		uint64_t j = i + 1;
		int64_t n;

		if (skip_page(rg, first + i)) {
			i++;
			continue;
		}
		while (j < count && !skip_page(rg, first + j))
			j++;
		n = put_pages(rg, first + i, j - i, pages + i * GVM_PAGE_SIZE, true);
		if (n < 0)
			return (int)n;
		i += (uint64_t)n;
	}
	return 0;
}

/* Installs the pages of extent e that are not resident from pages (the
 * extent's full contents): fault_page first, on its own, so the faulting
 * thread wakes at once (writable if it was a write fault), then the rest
 * write-protected, a run of missing pages per UFFDIO_COPY. */
static int install_extent(struct bk_region *rg, uint64_t e, const uint8_t *pages,
			  uint64_t fault_page, bool write)
{
	uint64_t first = e * bk_extent_pages(rg);
	int err;

	if (fault_page != NO_PAGE && !rg->huge) { /* (a huge page goes in whole) */
		err = install_page(rg, fault_page, pages + (fault_page - first) * GVM_PAGE_SIZE,
				   write);
		if (err)
			return err;
	}
	err = install_missing(rg, e, pages, 0);
	if (!err)
		bk_region_set_extent(rg, e, BK_EXT_LOCAL);
	return err;
}

/* Room for pages more resident within host_pages (0: no budget) and pct
 * percent of the VM's own limit. */
static bool room_for(struct bk_region *rg, uint64_t pages, uint64_t host_pages, unsigned pct)
{
	const struct bk_broker *b = rg->vm->b;
	const struct bk_vm *vm = rg->vm;

	if (b->budget_pages && b->resident_pages + b->reserved_pages + pages > host_pages)
		return false;
	return !vm->limit_pages || bk_vm_resident(vm) + pages <= vm->limit_pages * pct / 100;
}

/* Installing ahead must not be what makes us evict: room below the low
 * watermark. A prefetch received into the memfd needs room within the
 * budget (eviction makes more, oldest first: the new pages go last); past
 * it, it goes to the prefetch cache. */
static bool room_ahead(struct bk_region *rg, uint64_t pages)
{
	return room_for(rg, pages, rg->vm->b->low_pages, BK_EVICT_LOW_PCT);
}

static bool room_within_budget(struct bk_region *rg, uint64_t pages)
{
	return room_for(rg, pages, rg->vm->b->budget_pages, 100);
}

/* A prefetched extent, as it arrives (its pages still hot in the CPU's
 * cache): installs every missing page but the first, write-protected. The
 * first stays missing as a tripwire: the VM's fault on it installs it from
 * the cache, and tells the prefetch window the VM got this far. */
static void install_ahead(struct bk_region *rg, uint64_t e, const uint8_t *pages)
{
	uint64_t first = e * bk_extent_pages(rg), count = bk_extent_count(rg, e), trip = 0;
	int err;

	while (trip < count && bk_bit_test(rg->resident, first + trip))
		trip++;
	err = trip < count ? install_missing(rg, e, pages, trip + 1) : 0;
	if (err)
		vm_lost(rg->vm, err);
}

/* A prefetched extent received straight into the memfd: every page is in
 * memory now, so resident; all but the tripwire are mapped, and the VM's
 * minor fault on the tripwire maps it (handle_minor_fault). */
static void installed_ahead(struct bk_region *rg, uint64_t e)
{
	uint64_t first = e * bk_extent_pages(rg), count = bk_extent_count(rg, e), trip = 0;

	while (trip < count && bk_bit_test(rg->resident, first + trip))
		trip++;
	if (trip == count) {
		bk_region_set_extent(rg, e, BK_EXT_LOCAL);
		return;
	}
	install_ahead(rg, e, bk_region_page_addr(rg, first));
	if (!bk_bit_test(rg->lost, first + trip))
		bk_region_mark_resident(rg, first + trip);
	bk_region_set_extent(rg, e, BK_EXT_CACHED);
}

/* The first and count of f's READ. */
static uint64_t fetch_first(const struct bk_fetch *f)
{
	return f->page != NO_PAGE ? f->page : f->extent * bk_extent_pages(f->rg);
}

static uint32_t fetch_count(const struct bk_fetch *f)
{
	return f->page != NO_PAGE ? 1 : (uint32_t)bk_extent_count(f->rg, f->extent);
}

static void fetch_extent(struct bk_region *rg, uint64_t e, bool demand, uint64_t fault_page,
			 uint64_t t0_us);
static void fetch_page(struct bk_region *rg, uint64_t page, bool write, uint64_t t0_us);
static void fetch_send(struct bk_fetch *f);

/* ---- poisoning, and asking again later ---- */

/* A page whose every copy is lost: the VM gets a memory error on it
 * (SIGBUS, BUS_MCEERR_AR), never zeros. On a kernel without UFFDIO_POISON
 * the fault waits instead, with a log line. */
static int poison_page(struct bk_region *rg, uint64_t page)
{
	static struct gvm_log_limit lines = GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);
	uint64_t unit = bk_unit_pages(rg), len = unit * GVM_PAGE_SIZE;
	uint64_t addr;
	int rc;

	page = bk_unit_first(rg, page);
	addr = rg->host_addr + page * GVM_PAGE_SIZE;
	if (!rg->vm->can_poison) {
		gvm_log_limited(&lines, GVM_LOG_ERROR, "vm %s: page %llu of %s is lost and this "
				"kernel cannot poison it (UFFDIO_POISON): its fault waits",
				rg->vm->name, (unsigned long long)page, rg->name);
		return 0;
	}
	rc = bk_uffd_poison(rg->vm->uffd, addr, len);
	if (rc == -EEXIST) {
		/* An evicted page keeps a write-protect marker, which poisoning
		 * refuses to overwrite: lift it (it protects nothing now). */
		bk_region_protect(rg, page, unit, false);
		rc = bk_uffd_poison(rg->vm->uffd, addr, len);
	}
	if (rc == -EEXIST || rc == -EAGAIN) {
		wake_later(rg, page, unit); /* there after all, or the mm changes: again */
		return 0;
	}
	if (rc < 0)
		return rc;
	bk_stats.poisoned_pages += unit;
	gvm_log_limited(&lines, GVM_LOG_ERROR, "vm %s: page %llu of %s: no copy is left on any "
			"donor; poisoned (the VM gets a memory error there)", rg->vm->name,
			(unsigned long long)page, rg->name);
	return 0;
}

/* The faults on [first, first+count) are asked again after the region's
 * backoff, which doubles (to BK_RETRY_MAX_MS) until a read succeeds. */
static void wake_later(struct bk_region *rg, uint64_t first, uint64_t count)
{
	rg->retry_ms = rg->retry_ms ? rg->retry_ms * 2 : BK_RETRY_MIN_MS;
	if (rg->retry_ms > BK_RETRY_MAX_MS)
		rg->retry_ms = BK_RETRY_MAX_MS;
	bk_region_later(rg, first, count, rg->retry_ms, false);
}

/* ---- hedged reads ---- */

#define LAT_SAMPLES 128u

/* Per donor read from: its recent demand READs' times, and their p99
 * (allocated at its first read: a donor never read from costs a pointer). */
struct donor_lat {
	uint32_t us[LAT_SAMPLES];
	unsigned n, next;
	uint64_t p99_us;
};
static struct donor_lat **donor_lat;

int bk_fault_lat_grow(struct bk_broker *b, unsigned cap)
{
	struct donor_lat **n = realloc(donor_lat, cap * sizeof(*n));

	if (!n)
		return -ENOMEM;
	memset(n + b->donors_cap, 0, (cap - b->donors_cap) * sizeof(*n));
	donor_lat = n;
	return 0;
}

static struct bk_fetch *hedge_head;
static uv_timer_t hedge_timer;
static bool hedge_timer_on;

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void lat_record(unsigned d, uint64_t us)
{
	struct donor_lat *l = donor_lat[d];

	if (!l && !(l = donor_lat[d] = calloc(1, sizeof(*l)))) {
		bk_stats_nomem("a donor's read latencies (its reads are not hedged)");
		return;
	}

	l->us[l->next] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	l->next = (l->next + 1) % LAT_SAMPLES;
	if (l->n < LAT_SAMPLES)
		l->n++;
	if (l->next % 32 == 0) {
		uint32_t v[LAT_SAMPLES];

		memcpy(v, l->us, l->n * sizeof(v[0]));
		qsort(v, l->n, sizeof(v[0]), cmp_u32);
		l->p99_us = v[(l->n * 99) / 100 < l->n ? (l->n * 99) / 100 : l->n - 1];
	}
}

static void hedge_unlink(struct bk_fetch *f)
{
	if (!f->hprev)
		return;
	*f->hprev = f->hnext;
	if (f->hnext)
		f->hnext->hprev = f->hprev;
	f->hprev = NULL;
	f->hnext = NULL;
}

static void on_hedge_timer(uv_timer_t *t);

/* A READ with another live copy to ask: hedged if it is slower than its
 * donor's recent p99 (at least BK_HEDGE_MIN_US) and a fault waits on it
 * (a prefetch only once one does). */
static void hedge_watch(struct bk_fetch *f)
{
	const struct bk_region *rg = f->rg;
	uint64_t wait = donor_lat[f->req.donor] ? donor_lat[f->req.donor]->p99_us : 0;

	if (bk_loc_count(rg, f->extent) < 2 || f->twin || f->hprev)
		return;
	if (wait < BK_HEDGE_MIN_US)
		wait = BK_HEDGE_MIN_US;
	f->hedge_at_us = f->sent_us + wait;
	f->hnext = hedge_head;
	if (hedge_head)
		hedge_head->hprev = &f->hnext;
	f->hprev = &hedge_head;
	hedge_head = f;
	if (!hedge_timer_on) {
		if (!hedge_timer.loop) {
			uv_timer_init(rg->vm->b->loop, &hedge_timer);
			uv_unref((uv_handle_t *)&hedge_timer); /* never keeps the loop alive */
		}
		hedge_timer_on = true;
		uv_timer_start(&hedge_timer, on_hedge_timer, (wait + 999) / 1000, 0);
	}
}

static void hedge(struct bk_fetch *f)
{
	struct bk_region *rg = f->rg;
	struct bk_tried tried = f->tried;
	unsigned d;
	struct bk_fetch *t;

	bk_tried_add(&tried, f->req.donor);
	d = bk_read_donor(rg, f->extent, &tried);
	if (d == BK_NO_DONOR || !bk_pool_donor_up(rg->vm->b->pool, d) || rg->vm->detached ||
	    !rg->ns_id[d])
		return;
	t = calloc(1, sizeof(*t));
	if (!t) {
		bk_stats_nomem("vm %s: a hedged READ", rg->vm->name);
		return;
	}
	*t = (struct bk_fetch){ .rg = rg, .extent = f->extent, .page = f->page,
				.fault_page = f->fault_page, .t0_us = f->t0_us, .write = f->write,
				.demand = true, .tried = tried };
	t->req.donor = d;
	t->slot = -1;
	t->twin = f;
	f->twin = t;
	rg->vm->refs++;
	bk_stats.hedged_reads++;
	fetch_send(t);
}

static void on_hedge_timer(uv_timer_t *t)
{
	uint64_t now = now_us(), next_at = UINT64_MAX;
	struct bk_fetch *f = hedge_head, *next;

	for (; f; f = next) {
		next = f->hnext;
		if (now >= f->hedge_at_us && !f->demand &&
		    f->rg->ext_state[f->extent] != BK_EXT_FETCHING)
			f->hedge_at_us = now + BK_HEDGE_MIN_US; /* a prefetch: once a fault waits */
		if (now < f->hedge_at_us) {
			if (f->hedge_at_us < next_at)
				next_at = f->hedge_at_us;
			continue;
		}
		hedge_unlink(f);
		hedge(f);
	}
	/* One-shot, at the next deadline: most READs end before theirs. */
	hedge_timer_on = next_at != UINT64_MAX;
	if (hedge_timer_on)
		uv_timer_start(t, on_hedge_timer, (next_at - now + 999) / 1000, 0);
}

/* A READ received into the memfd that failed for good may have left part
 * of a payload there: punched, so that no fault maps it (the pages were
 * holes when it was sent, and nothing else writes them meanwhile). */
static void drop_partial(struct bk_region *rg, uint64_t first, uint64_t count)
{
	for (uint64_t p = first; p < first + count;) {
		uint64_t q = p;

		while (q < first + count && !bk_bit_test(rg->resident, q))
			q++;
		int err = q > p ? bk_region_punch(rg, p, q - p) : 0;

		if (err)
			gvm_warn("vm %s: cannot punch a failed READ's pages out of %s: %s", rg->vm->name,
				 rg->name, strerror(-err));
		p = q + 1;
	}
}

/* f is to be received into the memfd: it takes a journal slot and goes on
 * the list; without a free slot it goes into a buffer. */
static void direct_begin(struct bk_fetch *f)
{
	f->slot = bk_journal_begin(f->rg->vm->b, f->rg, fetch_first(f), fetch_count(f));
	f->direct = f->slot >= 0;
	if (!f->direct)
		return;
	f->dnext = direct_head;
	if (direct_head)
		direct_head->dprev = &f->dnext;
	f->dprev = &direct_head;
	direct_head = f;
}

/* f's payload is whole in the memfd, or what it left there was punched or
 * overwritten: its slot goes. */
static void direct_end(struct bk_fetch *f)
{
	if (f->slot < 0)
		return;
	*f->dprev = f->dnext;
	if (f->dnext)
		f->dnext->dprev = f->dprev;
	f->dprev = NULL;
	bk_journal_end(f->rg->vm->b, f->slot);
	f->slot = -1;
}

/* What is still to come of f's payload goes to a buffer, never the memfd. */
static void direct_divert(struct bk_fetch *f)
{
	struct bk_broker *b = f->rg->vm->b;
	uint8_t *buf = bk_cache_buf(b->cache, f->rg);
	uint32_t cap = buf ? (uint32_t)bk_cache_buf_bytes(f->rg) : (uint32_t)sizeof(fetch_buf);

	f->direct = false;
	f->req.flags &= ~(unsigned)BK_REQ_RX_BORROWED;
	bk_pool_retarget(b->pool, &f->req, buf ? buf : fetch_buf, cap);
}

/* ---- reads ---- */

/* Ends f: its reservation, its page's fetching bit (unless a twin still
 * carries the read), its buffer, its reference. */
static void fetch_free(struct bk_fetch *f)
{
	struct bk_region *rg = f->rg;
	struct bk_vm *vm = rg->vm;

	hedge_unlink(f);
	vm->b->reserved_pages -= f->reserved;
	f->reserved = 0;
	if (f->twin) { /* the other one goes on alone */
		f->twin->twin = NULL;
		for (unsigned i = 0; i < f->tried.n; i++)
			bk_tried_add(&f->twin->tried, f->tried.d[i]);
		bk_tried_add(&f->twin->tried, f->req.donor);
	}
	/* still holding a slot: diverted, its part overwritten by its twin */
	direct_end(f);
	free(f->sealed);
	if (!f->direct && f->req.rx_buf != fetch_buf)
		bk_cache_buf_put(vm->b->cache, rg, f->req.rx_buf);
	free(f);
	bk_vm_put(vm);
}

/* A READ that got no pages. A twin still on its way carries on alone.
 * Otherwise the next copy is asked (a failover); with none left, the
 * faults are asked again: on a lost page they poison it, and while copies
 * remain that failed for other reasons, after a backoff. */
static void fetch_failed(struct bk_fetch *f, int err, const char *why)
{
	static struct gvm_log_limit lines = GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);
	struct bk_region *rg = f->rg;
	unsigned d = f->req.donor, next;
	uint64_t e = f->extent, first = fetch_first(f), count = fetch_count(f);

	if (err == -ENOENT)
		bk_replica_ns_lost(rg, d, "READ: unknown namespace");
	else if (err != -EHOSTDOWN && err != -ESTALE && err != -EBADMSG) {
		bk_stats.donor_errors++;
		gvm_log_limited(&lines, GVM_LOG_WARN, "donor %s: READ of %s pages %llu+%llu failed: "
				"%s", bk_pool_donor_addr(rg->vm->b->pool, d), rg->ns,
				(unsigned long long)first, (unsigned long long)count, why);
	}
	bk_tried_add(&f->tried, d);
	if (f->slot >= 0 && !rg->vm->detached) {
		/* what it left goes: its twin or the next copy brings them whole */
		drop_partial(rg, first, count);
		direct_end(f);
	}
	if (f->twin || rg->vm->detached) {
		fetch_free(f);
		return;
	}
	/* a prefetch a fault now waits on is that fault's read */
	if (f->page == NO_PAGE && rg->ext_state[e] == BK_EXT_FETCHING)
		f->demand = true;
	next = bk_read_donor(rg, e, &f->tried);
	if (next != BK_NO_DONOR && f->demand) {
		bk_stats.failovers++;
		hedge_unlink(f);
		f->req.donor = next;
		if (f->direct)
			direct_begin(f); /* into the memfd again, if a slot is free */
		if (!f->direct) {
			if (f->req.rx_buf != bk_region_page_addr(rg, first))
				bk_cache_buf_put(rg->vm->b->cache, rg, f->req.rx_buf);
			f->req.rx_buf = NULL;
		}
		fetch_send(f);
		return;
	}
	if (f->page != NO_PAGE)
		bk_bit_clear(rg->fetching, f->page);
	if (f->page == NO_PAGE || rg->ext_state[e] == BK_EXT_PAGES)
		bk_region_set_extent(rg, e, BK_EXT_NONE);
	if (f->demand) {
		if (!bk_loc_count(rg, e) || err == -EHOSTDOWN || err == -ENOENT || err == -ESTALE ||
		    err == -EBADMSG)
			bk_region_wake(rg, first, count); /* lost, or another copy: fault again */
		else
			wake_later(rg, first, count);
	}
	fetch_free(f);
}

/* A reply with a page that fails authentication: nothing of it is
 * installed; that copy is dropped and the next one asked, if any. */
static void fetch_forged(struct bk_fetch *f, uint64_t bad)
{
	bk_replica_forged(f->rg, f->extent, f->req.donor, bad);
	fetch_failed(f, -EBADMSG, "a page fails authentication");
}

static void on_fetched(struct bk_req *req, int status, const struct gvm_hdr *h,
		       const uint8_t *payload);

/* Pages that did not open (in memory or lost when the reply came) must
 * still be so, or the reply is forged for them; and the extent is then
 * not kept for later. False when f was ended as forged. */
static bool unopened_ok(struct bk_fetch *f, const struct gvm_hdr *h,
			const uint64_t unopened[BK_SEAL_SKIP_WORDS])
{
	struct bk_region *rg = f->rg;

	for (uint32_t i = 0; i < h->page_count && i < GVM_FRAME_PAGES_MAX; i++) {
		uint64_t p = h->first_page + i;

		if (!bk_bit_test(unopened, i))
			continue;
		f->no_cache = true;
		if (!bk_bit_test(rg->resident, p) && !bk_bit_test(rg->lost, p)) {
			fetch_forged(f, p);
			return false;
		}
	}
	return true;
}

static void do_open(uv_work_t *w)
{
	struct bk_fetch *f = w->data;

	f->open_err = bk_seal_open(f->rg, f->sealed, f->req.rx_buf, f->req.rx_buf, f->skip,
				   f->unopened, &f->bad);
}

/* Back on the loop: the opened extent goes on as if it had just arrived,
 * unless it lost its race, its VM went, or it failed. */
static void on_opened(uv_work_t *w, int status)
{
	struct bk_fetch *f = w->data;

	if (f->superseded || f->rg->vm->detached) {
		fetch_free(f);
		return;
	}
	if (status || f->open_err) {
		free(f->sealed);
		f->sealed = NULL;
		if (status) /* (cancelled: only at shutdown) */
			fetch_failed(f, -ECANCELED, "its pages were not opened");
		else
			fetch_forged(f, f->bad);
		return;
	}
	if (!unopened_ok(f, f->sealed, f->unopened))
		return; /* (f->sealed goes with f, or is replaced by its next reply's) */
	f->opened = true;
	on_fetched(&f->req, 0, f->sealed, f->req.rx_buf); /* ends f */
}

/* A sealed extent received in its own buffer is opened off the loop: 128
 * KiB is some 100 us of AES-GCM, which faults of every VM would wait for.
 * False when it cannot be queued (then it is opened here). */
static bool open_off_loop(struct bk_fetch *f, const struct gvm_hdr *h)
{
	free(f->sealed); /* (a failed reply's, when this is the next copy's) */
	f->sealed = malloc(sizeof(*h));
	if (!f->sealed)
		return false;
	*f->sealed = *h;
	bk_seal_skip_map(f->rg, h->first_page, h->page_count, f->skip);
	hedge_unlink(f); /* it has its answer */
	f->open_work.data = f;
	if (!uv_queue_work(f->rg->vm->b->loop, &f->open_work, do_open, on_opened))
		return true;
	free(f->sealed);
	f->sealed = NULL;
	return false;
}

/* The READ reply's pages as full pages: opened and expanded into out, or,
 * a lone unsealed page that came whole, where it is. NULL (and f is
 * ended, or on the thread pool) when they are not ready here. */
static const uint8_t *fetch_open(struct bk_fetch *f, const struct gvm_hdr *h,
				 const uint8_t *payload, uint8_t *out)
{
	uint64_t bad, skip[BK_SEAL_SKIP_WORDS], unopened[BK_SEAL_SKIP_WORDS];

	if (!bk_sealed(f->rg)) {
		if (f->page != NO_PAGE && !f->direct && gvm_hdr_data_pages(h) == h->page_count)
			return payload;
		if (payload != out || gvm_hdr_data_pages(h) != h->page_count)
			gvm_frame_unpack_pages(h, payload, out); /* in place if received there */
		return out;
	}
	if (f->opened)
		return out;
	f->no_cache = false;
	if (f->page == NO_PAGE && payload == out && out == f->req.rx_buf && open_off_loop(f, h))
		return NULL;
	bk_seal_skip_map(f->rg, h->first_page, h->page_count, skip);
	if (!bk_seal_open(f->rg, h, payload, out, skip, unopened, &bad))
		return unopened_ok(f, h, unopened) ? out : NULL;
	fetch_forged(f, bad);
	return NULL;
}

static void on_fetched(struct bk_req *req, int status, const struct gvm_hdr *h,
		       const uint8_t *payload)
{
	struct bk_fetch *f = (struct bk_fetch *)req, *overwritten = NULL;
	struct bk_region *rg = f->rg;
	struct bk_vm *vm = rg->vm;
	uint64_t e = f->extent;
	int err = status ? status : h->status ? -h->status : 0;

	if (f->superseded || vm->detached) {
		fetch_free(f);
		return;
	}
	if (err) {
		fetch_failed(f, err, status ? strerror(-status) : h->error);
		return;
	}
	/* Opened before anything else: a forged reply loses its race. */
	const uint8_t *pages = fetch_open(f, h, payload,
					  f->page != NO_PAGE ?
						  (f->direct ? bk_region_page_addr(rg, f->page) : fetch_buf) :
					  req->rx_buf ? req->rx_buf : fetch_buf);
	if (!pages)
		return;
	if (f->demand)
		lat_record(req->donor, now_us() - f->sent_us);
	rg->retry_ms = 0;
	if (f->twin) { /* this one won: the other ends when it comes */
		struct bk_fetch *t = f->twin;

		t->superseded = true;
		t->twin = NULL;
		f->twin = NULL;
		/* What it has still to receive must not reach the memfd; what
		 * it left there is overwritten below, and then its slot goes. */
		if (t->direct)
			direct_divert(t);
		overwritten = t->slot >= 0 ? t : NULL;
	}
	if (f->page != NO_PAGE) {
		/* A faulting page on its own: install just it. */
		bk_bit_clear(rg->fetching, f->page);
		direct_end(f); /* whole now */
		err = install_page(rg, f->page, pages, f->write);
		if (err)
			vm_lost(vm, err);
		else if (f->t0_us)
			bk_stats_latency(now_us() - f->t0_us);
		if (rg->ext_state[e] == BK_EXT_PAGES)
			bk_region_set_extent(rg, e, BK_EXT_NONE);
		if (overwritten)
			direct_end(overwritten);
		fetch_free(f);
		return;
	}
	bk_stats.remote_reads++;
	bk_stats.remote_pages += h->page_count;
	/* The payload was received in the request's buffer; zero pages were
	 * filled in there, in place. */
	direct_end(f); /* whole now */
	if (rg->ext_state[e] == BK_EXT_FETCHING) {
		err = install_extent(rg, e, pages, f->fault_page, false);
		if (err)
			vm_lost(vm, err);
		else if (f->t0_us)
			bk_stats_latency(now_us() - f->t0_us);
	} else if (rg->ext_state[e] == BK_EXT_PREFETCHING && f->direct) {
		installed_ahead(rg, e);
	} else if (rg->ext_state[e] == BK_EXT_PREFETCHING) {
		if (req->rx_buf && !f->no_cache && bk_cache_put(vm->b->cache, rg, e, req->rx_buf)) {
			req->rx_buf = NULL; /* the cache has it now */
			/* (a huge page waits there whole: no 4 KiB tripwire) */
			if (!rg->huge && room_ahead(rg, bk_extent_count(rg, e)))
				install_ahead(rg, e, pages);
		} else {
			bk_region_set_extent(rg, e, BK_EXT_NONE);
		}
	}
	if (overwritten)
		direct_end(overwritten);
	fetch_free(f);
}

static void on_ns_opened(struct bk_req *req, int status, const struct gvm_hdr *h,
			 const uint8_t *payload)
{
	struct bk_fetch *f = (struct bk_fetch *)req;
	struct bk_region *rg = f->rg;
	int err = status ? status : h->status ? -h->status : 0;

	(void)payload;
	if (f->superseded || rg->vm->detached) {
		fetch_free(f);
		return;
	}
	if (err) {
		fetch_failed(f, err, status ? strerror(-status) : h->error);
		return;
	}
	bk_replica_ns_opened(rg, req->donor, h->ns);
	if (!bk_loc_has(rg, f->extent, req->donor)) {
		/* it had lost the namespace: its copies are gone */
		fetch_failed(f, -ESTALE, "the donor lost the namespace");
		return;
	}
	fetch_send(f);
}

/* A READ of extent e (page NO_PAGE) or of one page of it, addressed to
 * the first live copy; it holds a reference on the VM until its end. NULL
 * if no copy is left to ask. */
static struct bk_fetch *fetch_new(struct bk_region *rg, uint64_t e, uint64_t page,
				  uint64_t t0_us, bool demand)
{
	unsigned d = bk_read_donor(rg, e, NULL);
	struct bk_fetch *f;

	if (d == BK_NO_DONOR)
		return NULL;
	f = calloc(1, sizeof(*f));
	if (!f) {
		bk_stats_nomem("a READ of %s extent %llu (its faults are asked again)", rg->ns,
			       (unsigned long long)e);
		return NULL;
	}
	f->rg = rg;
	f->extent = e;
	f->page = page;
	f->fault_page = NO_PAGE;
	f->t0_us = t0_us;
	f->demand = demand;
	f->slot = -1;
	f->req.donor = d;
	if (d != bk_loc(rg, e)[0])
		bk_stats.failovers++; /* its first copy's donor is down */
	rg->vm->refs++;
	return f;
}

/* Sends f to its donor: an OPEN_NS first when the namespace is not open
 * there (on_ns_opened sends it again), else its READ. The pool may answer
 * at once (a dead donor): f is not touched after. */
static void fetch_send(struct bk_fetch *f)
{
	struct bk_region *rg = f->rg;
	struct bk_broker *b = rg->vm->b;
	unsigned d = f->req.donor;
	uint32_t count = fetch_count(f);

	f->req.flags = f->demand ? BK_REQ_DEMAND : 0;
	f->req.rx_cap = 0;
	if (!rg->ns_id[d]) {
		gvm_hdr_init(&f->req.hdr, GVM__OP__OP_OPEN_NS, 0);
		strcpy(f->req.hdr.ns_name, rg->ns);
		f->req.cb = on_ns_opened;
		bk_pool_submit(b->pool, &f->req);
		return;
	}
	gvm_hdr_init(&f->req.hdr, GVM__OP__OP_READ, 0);
	f->req.hdr.ns = rg->ns_id[d];
	f->req.hdr.first_page = fetch_first(f);
	f->req.hdr.page_count = count;
	f->req.hdr.tag_bytes = bk_sealed(rg) ? GVM_PAGE_TAG_BYTES : 0;
	f->req.cb = on_fetched;
	if (f->direct) {
		f->req.rx_buf = bk_region_page_addr(rg, f->req.hdr.first_page);
		f->req.rx_cap = count * GVM_PAGE_SIZE;
		f->req.flags |= BK_REQ_RX_BORROWED;
		/* The pages made and mapped here in one call, rather than a page
		 * fault each while the payload is received into them. */
		madvise(f->req.rx_buf, f->req.rx_cap, MADV_POPULATE_WRITE);
	} else if (f->page == NO_PAGE && !f->req.rx_buf) {
		f->req.rx_buf = bk_cache_buf(b->cache, rg);
		f->req.rx_cap = f->req.rx_buf ? (uint32_t)bk_cache_buf_bytes(rg) : 0;
	}
	if (f->demand && !f->reserved) {
		f->reserved = count;
		b->reserved_pages += count;
	}
	f->sent_us = now_us();
	hedge_watch(f);
	bk_pool_submit(b->pool, &f->req);
}

/* Whether any page of extent e has its bit set in map (fetching: a
 * one-page READ of it is on its way; resident: it was touched). */
static bool extent_any(const struct bk_region *rg, const uint64_t *map, uint64_t e)
{
	uint64_t first = e * bk_extent_pages(rg), count = bk_extent_count(rg, e);

	for (uint64_t p = first; p < first + count; p++)
		if (bk_bit_test(map, p))
			return true;
	return false;
}

/* An extent's READ: received straight into the memfd when the VM's pages
 * go in with UFFDIO_CONTINUE, no one-page READ of it is on its way (that
 * page's slot is its own), the extent is all holes, and, for a prefetch,
 * there is room for it; else into a buffer. */
static void fetch_extent(struct bk_region *rg, uint64_t e, bool demand, uint64_t fault_page,
			 uint64_t t0_us)
{
	struct bk_fetch *f = fetch_new(rg, e, NO_PAGE, t0_us, demand);

	if (!f) {
		if (demand)
			bk_region_wake(rg, e * bk_extent_pages(rg), bk_extent_count(rg, e));
		return;
	}
	f->fault_page = fault_page;
	/* (sealed pages are opened from a buffer into the memfd instead) */
	if (rg->map && !bk_sealed(rg) && !extent_any(rg, rg->fetching, e) &&
	    (demand || room_within_budget(rg, bk_extent_count(rg, e))) &&
	    bk_region_holes(rg, e * bk_extent_pages(rg), bk_extent_count(rg, e)))
		direct_begin(f);
	bk_region_set_extent(rg, e, demand ? BK_EXT_FETCHING : BK_EXT_PREFETCHING);
	fetch_send(f);
}

/* One page, ahead of its extent's READ (see on_fetched); needs the
 * namespace open on that donor already. */
static void fetch_page(struct bk_region *rg, uint64_t page, bool write, uint64_t t0_us)
{
	struct bk_fetch *f = fetch_new(rg, page / bk_extent_pages(rg), page, t0_us, true);

	if (!f) {
		bk_region_wake(rg, page, 1);
		return;
	}
	f->write = write;
	if (rg->map && !bk_sealed(rg) && bk_region_holes(rg, page, 1))
		direct_begin(f);
	bk_bit_set(rg->fetching, page);
	fetch_send(f);
}

/* A demand fault on page. The faulting thread waits only for a one-page
 * READ. With locality (a sequential run, or an extent touched before) the
 * extent's READ goes right behind it and is installed on arrival; a lone
 * random touch fetches its page and nothing more. */
static void fetch_demand(struct bk_region *rg, uint64_t page, bool write, uint64_t t0_us)
{
	uint64_t e = page / bk_extent_pages(rg);

	unsigned d = bk_read_donor(rg, e, NULL);

	if (bk_extent_pages(rg) == 1 || rg->huge || d == BK_NO_DONOR || !rg->ns_id[d]) {
		fetch_extent(rg, e, true, page, t0_us);
		return;
	}
	fetch_page(rg, page, write, t0_us);
	/* An extent READ racing a write-back of its pages could bring back
	 * their old contents: while one is in flight, fetch single pages. */
	if (!rg->wb_inflight[e] && (rg->streak || extent_any(rg, rg->resident, e))) {
		bk_region_set_extent(rg, e, BK_EXT_FETCHING);
		fetch_extent(rg, e, true, page, 0);
	} else {
		bk_region_set_extent(rg, e, BK_EXT_PAGES);
	}
}

/* A sequential run of demand faults widens the prefetch window: 1, 2, 4...
 * up to BK_PREFETCH_WINDOW_MAX_EXTENTS extents ahead. */
static void prefetch_after(struct bk_region *rg, uint64_t e)
{
	unsigned window;

	if (e == rg->last_extent + 1)
		rg->streak++;
	else if (e != rg->last_extent)
		rg->streak = 0;
	rg->last_extent = e;
	if (!rg->streak)
		return;
	window = rg->streak > 5 ? BK_PREFETCH_WINDOW_MAX_EXTENTS : 1u << (rg->streak - 1);
	if (window > BK_PREFETCH_WINDOW_MAX_EXTENTS)
		window = BK_PREFETCH_WINDOW_MAX_EXTENTS;
	for (uint64_t k = e + 1; k <= e + window && k < rg->nextents; k++) {
		if (rg->ext_state[k] != BK_EXT_NONE || rg->wb_inflight[k])
			continue;
		if (!bk_loc_count(rg, k))
			continue; /* on no donor: its fault is a zero fill (or a poison) */
		bk_stats.prefetch_issued++;
		fetch_extent(rg, k, false, NO_PAGE, 0);
	}
}

struct extent_key {
	const struct bk_region *rg;
	uint64_t e;
};

static bool is_extent_read(const struct bk_req *r, const void *ctx)
{
	const struct bk_fetch *f = (const struct bk_fetch *)r;
	const struct extent_key *k = ctx;

	return r->cb == on_fetched && f->page == NO_PAGE && f->rg == k->rg && f->extent == k->e;
}

/* A fault waits on extent e's prefetch: if it is still queued behind other
 * VMs' prefetches, it goes ahead of them. */
static void promote_prefetch(struct bk_region *rg, uint64_t e)
{
	struct extent_key k = { rg, e };

	unsigned d = bk_read_donor(rg, e, NULL);

	if (d != BK_NO_DONOR)
		bk_pool_promote(rg->vm->b->pool, d, is_extent_read, &k);
}

/* A write to a write-protected page (of a hugetlb region: huge page). */
static int handle_wp_fault(struct bk_region *rg, uint64_t page)
{
	uint64_t unit = bk_unit_pages(rg);

	bk_stats.wp_faults++;
	page = bk_unit_first(rg, page);
	if (!bk_bit_test(rg->resident, page)) {
		/* (a hugetlb page a write fault reaches is there: it is mapped) */
		if (!rg->huge && !bk_page_in_memfd(rg, page)) {
			bk_region_wake(rg, page, 1); /* evicted meanwhile: refault it */
			return 0;
		}
		/* Installed before a broker restart: ours from now on. */
		for (uint64_t p = page; p < page + unit; p++)
			bk_region_mark_resident(rg, p);
	}
	if (bk_evict_hold_writer(rg, page))
		return 0; /* woken when its write-back is done */
	for (uint64_t p = page; p < page + unit; p++) {
		bk_region_set_dirty(rg, p);
		bk_region_set_ref(rg, p);
	}
	return bk_region_protect(rg, page, unit, false); /* lifts it, wakes the writer */
}

/* A missing fault on a resident huge page: installed since the fault was
 * queued, or punched by the VM (hugetlbfs shows holes to no lseek, and
 * sends no event for a punch): then it reads as zero from now on, and the
 * donors' copies go. */
static int huge_page_gone(struct bk_region *rg, uint64_t page)
{
	uint64_t first = bk_unit_first(rg, page), unit = bk_unit_pages(rg);
	int r = bk_region_install_if_gone(rg, first, unit, rg->vm->b->zero_extent, true);

	if (r <= 0)
		return r;
	for (uint64_t p = first; p < first + unit; p++)
		bk_bit_clear(rg->dirty, p);
	bk_evict_discarded(rg, first, unit);
	return 0;
}

/* A minor fault (--install continue): the page is in the memfd but not
 * mapped in the VM. A READ still writing it maps it when done; otherwise
 * it is a prefetched extent's tripwire, a page the VM unmapped
 * (MADV_DONTNEED), or one found in the memfd that no one installed (then
 * it is ours from now on, and dirty: the donors may not hold it). It is
 * mapped with UFFDIO_CONTINUE, write-protected unless it is dirty. A page
 * being evicted waits for the end of its eviction, which wakes it. */
static int handle_minor_fault(struct bk_region *rg, uint64_t page, bool write, uint64_t t0)
{
	uint64_t e = page / bk_extent_pages(rg);
	uint8_t st = rg->ext_state[e];
	int64_t n;

	bk_stats.minor_faults++;
	if (bk_bit_test(rg->fetching, page))
		return 0; /* its one-page READ maps it */
	if (bk_evict_busy(rg, page))
		return 0; /* being written back or punched: the end wakes it */
	if (!bk_bit_test(rg->resident, page)) {
		if (st == BK_EXT_FETCHING)
			return 0;
		if (st == BK_EXT_PREFETCHING) {
			bk_region_set_extent(rg, e, BK_EXT_FETCHING); /* map it on arrival */
			promote_prefetch(rg, e);
			prefetch_after(rg, e);
			return 0;
		}
		if (bk_bit_test(rg->lost, page))
			return poison_page(rg, page);
		bk_region_mark_resident(rg, page);
		bk_region_set_dirty(rg, page);
	}
	if (write)
		bk_region_set_dirty(rg, page);
	n = bk_region_continue(rg, page, 1, !bk_bit_test(rg->dirty, page));
	if (n < 0)
		return (int)n;
	bk_region_set_ref(rg, page);
	if (st == BK_EXT_CACHED) {
		bk_stats.prefetch_hits++;
		bk_region_set_extent(rg, e, BK_EXT_LOCAL);
		prefetch_after(rg, e);
	}
	bk_stats_latency(now_us() - t0);
	return 0;
}

/* Extent e waits in the prefetch cache (--install copy): installed from
 * there (page first, writable after a write) and dropped from it, with
 * *err the result. False when the cache let it go: the extent is
 * BK_EXT_NONE again. */
static bool install_cached(struct bk_region *rg, uint64_t e, uint64_t page, bool write,
			   int *err)
{
	struct bk_cache *cache = rg->vm->b->cache;
	const uint8_t *cached = bk_cache_get(cache, rg, e);

	if (!cached) {
		bk_region_set_extent(rg, e, BK_EXT_NONE);
		return false;
	}
	*err = install_extent(rg, e, cached, page, write);
	bk_cache_drop(cache, rg, e);
	return true;
}

static int handle_fault(struct bk_vm *vm, const struct uffd_msg *msg, uint64_t t0)
{
	uint64_t addr = msg->arg.pagefault.address, flags = msg->arg.pagefault.flags;
	struct bk_region *rg = bk_region_of(vm, addr);
	uint64_t page, e;
	int err = 0;

	bk_stats.faults++;
	if (!rg) {
		gvm_warn("vm %s: fault at 0x%llx outside its regions", vm->name,
			 (unsigned long long)addr);
		return 0;
	}
	page = (addr - rg->host_addr) / GVM_PAGE_SIZE;
	if (flags & UFFD_PAGEFAULT_FLAG_WP)
		return handle_wp_fault(rg, page);
	/* (a page punched since its minor fault was queued is missing now) */
	if ((flags & UFFD_PAGEFAULT_FLAG_MINOR) && bk_page_in_memfd(rg, page))
		return handle_minor_fault(rg, page, flags & UFFD_PAGEFAULT_FLAG_WRITE, t0);
	if (bk_evict_busy(rg, page))
		return 0; /* punched, or about to be: the end of its eviction wakes it */
	if (bk_bit_test(rg->resident, page)) {
		if (rg->huge)
			return huge_page_gone(rg, page);
		if (bk_page_in_memfd(rg, page)) {
			bk_region_wake(rg, page, 1); /* installed meanwhile */
			return 0;
		}
		/* A hole where a page was: the VM dropped it. It reads as zero. */
		bk_evict_page_gone(rg, page);
		return install_page(rg, page, vm->b->zero_extent, flags & UFFD_PAGEFAULT_FLAG_WRITE);
	}
	if (bk_bit_test(rg->lost, page))
		return poison_page(rg, page);
	if (bk_bit_test(rg->fetching, page))
		return 0; /* its one-page READ wakes this thread too */
	e = page / bk_extent_pages(rg);
	switch (rg->ext_state[e]) {
	case BK_EXT_FETCHING:
		return 0; /* its reply wakes this thread too */
	case BK_EXT_PAGES:
		break; /* only single pages are on their way: fetch this one too */
	case BK_EXT_PREFETCHING:
		bk_region_set_extent(rg, e, BK_EXT_FETCHING); /* install on arrival */
		promote_prefetch(rg, e);
		prefetch_after(rg, e); /* keep the window moving while this one comes */
		return 0;
	case BK_EXT_CACHED:
		if (install_cached(rg, e, page, flags & UFFD_PAGEFAULT_FLAG_WRITE, &err)) {
			bk_stats.prefetch_hits++;
			bk_stats_latency(now_us() - t0);
			prefetch_after(rg, e);
			return err;
		}
		/* fall through */
	default:
		break;
	}
	if (!bk_loc_count(rg, e)) {
		if (!rg->map_ready)
			return 0; /* the donors have not all said what they hold: woken then */
		bk_stats.zero_fills++;
		err = install_extent(rg, e, vm->b->zero_extent, page,
				     flags & UFFD_PAGEFAULT_FLAG_WRITE);
		bk_stats_latency(now_us() - t0);
		return err;
	}
	prefetch_after(rg, e); /* updates the trend fetch_demand looks at */
	fetch_demand(rg, page, flags & UFFD_PAGEFAULT_FLAG_WRITE, t0);
	return 0;
}

bool bk_fault_fill(struct bk_region *rg, uint64_t e)
{
	int err = 0;

	if (rg->ext_state[e] == BK_EXT_CACHED && install_cached(rg, e, NO_PAGE, false, &err))
		goto out; /* a prefetch waited in the cache */
	if (rg->ext_state[e] != BK_EXT_NONE)
		return true; /* on its way, or in already */
	if (!bk_loc_count(rg, e)) {
		if (!rg->map_ready)
			return false;
		bk_stats.zero_fills++;
		err = install_extent(rg, e, rg->vm->b->zero_extent, NO_PAGE, false);
	} else {
		fetch_extent(rg, e, true, NO_PAGE, 0); /* installed on arrival */
	}
out:
	if (err)
		vm_lost(rg->vm, err);
	return true;
}

static void defer_fault(struct bk_vm *vm, const struct uffd_msg *msg, uint64_t t0)
{
	struct bk_broker *b = vm->b;
	struct bk_deferred *d = malloc(sizeof(*d));

	if (!d) {
		handle_fault(vm, msg, t0);
		return;
	}
	d->next = NULL;
	d->vm = vm;
	d->msg = *msg;
	d->t0_us = t0;
	vm->refs++;
	*b->deferred_tail = d;
	b->deferred_tail = &d->next;
	bk_stats.evict_waits++;
}

/* Serves the faults that waited for room, oldest first, while there is. */
void bk_fault_redispatch(struct bk_broker *b)
{
	while (b->deferred && !bk_evict_must_wait(b, b->cfg.extent_pages)) {
		struct bk_deferred *d = b->deferred;
		int err = 0;

		b->deferred = d->next;
		if (!b->deferred)
			b->deferred_tail = &b->deferred;
		if (!d->vm->detached)
			err = handle_fault(d->vm, &d->msg, d->t0_us);
		if (err)
			vm_lost(d->vm, err);
		bk_vm_put(d->vm);
		free(d);
	}
}

/* At shutdown: the waiting faults are dropped (their VMs are detached). */
void bk_fault_drop_deferred(struct bk_broker *b)
{
	while (b->deferred) {
		struct bk_deferred *d = b->deferred;

		b->deferred = d->next;
		bk_vm_put(d->vm);
		free(d);
	}
	b->deferred_tail = &b->deferred;
}

static void handle_remove(struct bk_vm *vm, const struct uffd_msg *msg)
{
	uint64_t start = msg->arg.remove.start, end = msg->arg.remove.end;

	for (size_t i = 0; i < vm->nregions; i++) {
		struct bk_region *rg = &vm->regions[i];
		uint64_t lo = start > rg->host_addr ? start : rg->host_addr;
		uint64_t hi = end < rg->host_addr + rg->size ? end : rg->host_addr + rg->size;

		if (lo < hi)
			bk_evict_removed(rg, (lo - rg->host_addr) / GVM_PAGE_SIZE,
					 (hi - lo) / GVM_PAGE_SIZE);
	}
}

static void on_uffd(uv_poll_t *h, int status, int events)
{
	struct bk_vm *vm = h->data;
	struct bk_broker *b = vm->b;
	struct uffd_msg msgs[BK_FAULT_BATCH_MAX];
	ssize_t n;

	(void)events;
	if (status < 0) {
		vm_lost(vm, status);
		return;
	}
	n = read(vm->uffd, msgs, sizeof(msgs));
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			vm_lost(vm, -errno);
		return;
	}
	uint64_t t0 = now_us();
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]) && !vm->detached; i++) {
		const struct uffd_msg *m = &msgs[i];
		int err = 0;

		if (m->event == UFFD_EVENT_REMOVE) {
			handle_remove(vm, m);
			continue;
		}
		if (m->event != UFFD_EVENT_PAGEFAULT)
			continue;
		/* Missing pages wait while the budget is full and write-backs are
		 * on their way; WP and minor faults add nothing and never wait. */
		if (!(m->arg.pagefault.flags & (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_MINOR)) &&
		    (b->deferred || bk_evict_must_wait(b, b->cfg.extent_pages)))
			defer_fault(vm, m, t0);
		else
			err = handle_fault(vm, m, t0);
		if (err)
			vm_lost(vm, err);
	}
	/* eviction and the faults that wait for room: followup.c, this turn */
}

int bk_fault_start(struct bk_vm *vm)
{
	int err = uv_poll_init(vm->b->loop, &vm->poll, vm->uffd);

	if (err)
		return err;
	vm->poll.data = vm;
	vm->polling = true;
	vm->refs++;
	return uv_poll_start(&vm->poll, UV_READABLE, on_uffd);
}

static void on_poll_closed(uv_handle_t *h)
{
	bk_vm_put(h->data);
}

void bk_fault_stop(struct bk_vm *vm)
{
	/* READs on their way into its memory: they must not write there once
	 * the VM is gone (it may attach again and be served anew), and what
	 * they left is punched (its donors hold it). */
	for (struct bk_fetch *f = direct_head, *next; f; f = next) {
		next = f->dnext;
		if (f->rg->vm != vm)
			continue;
		if (f->direct)
			direct_divert(f);
		drop_partial(f->rg, fetch_first(f), fetch_count(f));
		direct_end(f);
	}
	if (!vm->polling)
		return;
	vm->polling = false;
	uv_poll_stop(&vm->poll);
	uv_close((uv_handle_t *)&vm->poll, on_poll_closed);
}
