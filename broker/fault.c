/* fault.c: serving page faults. Each attached VM's userfaultfd is polled on
 * the broker's loop; a batch of fault messages is read at once. A missing
 * page's whole extent is installed with UFFDIO_COPY: zeros straight away for
 * a region the donors have never seen, otherwise the extent's pages from its
 * donor (pool.c, placement.c) in one READ, or from the prefetch cache
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
 * WP fault that marks the page dirty (for eviction) and lifts the WP. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "placement.h"
#include "pool.h"
#include "prefetch.h"
#include "stats.h"

#define NO_PAGE UINT64_MAX

struct bk_fetch {
	struct bk_req req; /* first: the pool hands back &req */
	struct bk_region *rg;
	uint64_t extent;
	uint64_t page;  /* NO_PAGE: the whole extent; else just this page */
	uint64_t fault_page; /* the page whose fault asked for the extent, or NO_PAGE */
	uint64_t t0_us; /* when the demand fault was read; 0 for prefetch */
	bool write;     /* page fetch for a write fault: install writable, dirty */
	uint32_t reserved; /* pages counted in b->reserved_pages until the reply */
};

struct bk_deferred {
	struct bk_deferred *next;
	struct bk_vm *vm;
	struct uffd_msg msg;
	uint64_t t0_us;
};

/* Where an extent goes when no buffer could be had for its READ. */
static uint8_t fetch_buf[GVM_FRAME_DATA_MAX_BYTES];

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t extent_count(const struct bk_region *rg, uint64_t e)
{
	uint64_t first = e * bk_extent_pages(rg);

	return rg->npages - first < bk_extent_pages(rg) ? rg->npages - first : bk_extent_pages(rg);
}

void bk_uffd_wake(struct bk_region *rg, uint64_t first, uint64_t count)
{
	struct uffdio_range r = { rg->host_addr + first * GVM_PAGE_SIZE, count * GVM_PAGE_SIZE };

	ioctl(rg->vm->uffd, UFFDIO_WAKE, &r);
}

int bk_uffd_protect(struct bk_region *rg, uint64_t first, uint64_t count, bool on)
{
	struct uffdio_writeprotect w = {
		.range = { rg->host_addr + first * GVM_PAGE_SIZE, count * GVM_PAGE_SIZE },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(rg->vm->uffd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

bool bk_page_in_memfd(const struct bk_region *rg, uint64_t page)
{
	off_t off = (off_t)(rg->memfd_offset + page * GVM_PAGE_SIZE);

	return lseek(rg->memfd, off, SEEK_DATA) == off;
}

static void mark_resident(struct bk_region *rg, uint64_t page)
{
	if (!bk_bit_test(rg->resident, page)) {
		bk_bit_set(rg->resident, page);
		bk_bit_set(rg->ref, page);
		rg->resident_count++;
		rg->vm->b->resident_pages++;
	}
}

/* The process behind this uffd is gone, or the uffd broke: stop serving. */
static void vm_lost(struct bk_vm *vm, int err)
{
	if (!vm->detached)
		bk_vm_detach(vm, err == -ESRCH ? "the process exited" : strerror(-err));
}

/* UFFDIO_COPY of n pages at page from src. Returns pages handled (installed,
 * or found present and woken), or -errno. */
static int64_t copy_run(struct bk_region *rg, uint64_t page, uint64_t n, const uint8_t *src,
			bool wp)
{
	struct uffdio_copy c;
	uint64_t done = 0;

	for (unsigned tries = 0;;) {
		c.dst = rg->host_addr + (page + done) * GVM_PAGE_SIZE;
		c.src = (uintptr_t)(src + done * GVM_PAGE_SIZE);
		c.len = (n - done) * GVM_PAGE_SIZE;
		c.mode = wp ? UFFDIO_COPY_MODE_WP : 0;
		c.copy = 0;
		if (ioctl(rg->vm->uffd, UFFDIO_COPY, &c) == 0) {
			for (uint64_t i = done; i < n; i++)
				mark_resident(rg, page + i);
			return (int64_t)n;
		}
		if (c.copy > 0) {
			for (uint64_t i = 0; i < (uint64_t)c.copy / GVM_PAGE_SIZE; i++)
				mark_resident(rg, page + done + i);
			done += (uint64_t)c.copy / GVM_PAGE_SIZE;
		}
		if (errno == EEXIST) {
			/* Already there (another path installed it): wake its waiters. */
			mark_resident(rg, page + done);
			bk_uffd_wake(rg, page + done, 1);
			return (int64_t)done + 1;
		}
		if (errno == EAGAIN && ++tries <= BK_COPY_EAGAIN_RETRIES)
			continue;
		if (errno == EAGAIN) {
			/* The mm is changing under us: let the threads fault again. */
			bk_uffd_wake(rg, page, n);
			return (int64_t)n;
		}
		return -errno;
	}
}

/* Installs one page from src unless it is resident: writable and dirty
 * after a write fault, else write-protected. */
static int install_page(struct bk_region *rg, uint64_t page, const uint8_t *src, bool write)
{
	int64_t n;

	if (bk_bit_test(rg->resident, page))
		return 0;
	n = copy_run(rg, page, 1, src, !write);
	if (n < 0)
		return (int)n;
	if (write)
		bk_bit_set(rg->dirty, page);
	return 0;
}

/* Installs, write-protected, the pages of extent e from index `from` on
 * that are not resident, from pages (the extent's full contents): one
 * UFFDIO_COPY per run of missing pages. */
static int install_missing(struct bk_region *rg, uint64_t e, const uint8_t *pages, uint64_t from)
{
	uint64_t first = e * bk_extent_pages(rg), count = extent_count(rg, e), i = from;

	while (i < count) {
		uint64_t j = i + 1;
		int64_t n;

		if (bk_bit_test(rg->resident, first + i)) {
			i++;
			continue;
		}
		while (j < count && !bk_bit_test(rg->resident, first + j))
			j++;
		n = copy_run(rg, first + i, j - i, pages + i * GVM_PAGE_SIZE, true);
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

	if (fault_page != NO_PAGE) {
		err = install_page(rg, fault_page, pages + (fault_page - first) * GVM_PAGE_SIZE,
				   write);
		if (err)
			return err;
	}
	err = install_missing(rg, e, pages, 0);
	if (!err)
		rg->ext_state[e] = BK_EXT_LOCAL;
	return err;
}

/* Room for pages more resident without passing the host's low watermark or
 * the VM's own limit: installing ahead must not be what makes us evict. */
static bool room_ahead(struct bk_region *rg, uint64_t pages)
{
	const struct bk_broker *b = rg->vm->b;
	const struct bk_vm *vm = rg->vm;

	if (b->budget_pages && b->resident_pages + b->reserved_pages + pages > b->low_pages)
		return false;
	return !vm->limit_pages ||
	       bk_vm_resident(vm) + pages <= vm->limit_pages * BK_EVICT_LOW_PCT / 100;
}

/* A prefetched extent, as it arrives (its pages still hot in the CPU's
 * cache): installs every missing page but the first, write-protected. The
 * first stays missing as a tripwire: the VM's fault on it installs it from
 * the cache, and tells the prefetch window the VM got this far. */
static void install_ahead(struct bk_region *rg, uint64_t e, const uint8_t *pages)
{
	uint64_t first = e * bk_extent_pages(rg), count = extent_count(rg, e), trip = 0;
	int err;

	while (trip < count && bk_bit_test(rg->resident, first + trip))
		trip++;
	err = trip < count ? install_missing(rg, e, pages, trip + 1) : 0;
	if (err)
		vm_lost(rg->vm, err);
}

static void fetch_extent(struct bk_region *rg, uint64_t e, bool demand, uint64_t fault_page,
			 uint64_t t0_us);
static void fetch_page(struct bk_region *rg, uint64_t page, bool write, uint64_t t0_us);

/* The donor holding extent e of rg (placement.c, weights as configured). */
unsigned bk_extent_donor(const struct bk_region *rg, uint64_t e)
{
	const struct bk_config *cfg = &rg->vm->b->cfg;
	struct gvm_place_donor donors[BK_DONORS_MAX];
	unsigned d;

	for (unsigned i = 0; i < cfg->ndonors; i++) {
		donors[i].addr = cfg->donors[i].addr;
		donors[i].weight = cfg->donors[i].weight;
	}
	gvm_place(rg->ns, e, donors, cfg->ndonors, &d, 1);
	return d;
}

static void on_fetched(struct bk_req *req, int status, const struct gvm_hdr *h,
		       const uint8_t *payload)
{
	struct bk_fetch *f = (struct bk_fetch *)req;
	struct bk_region *rg = f->rg;
	struct bk_vm *vm = rg->vm;
	uint64_t e = f->extent;
	int err;

	vm->b->reserved_pages -= f->reserved;
	if (f->page != NO_PAGE)
		bk_bit_clear(rg->fetching, f->page);
	if (vm->detached)
		goto out;
	if (f->page != NO_PAGE) {
		/* A faulting page on its own: install just it. */
		if (!status && !h->status) {
			const uint8_t *page = payload;

			if (gvm_hdr_data_pages(h) != 1) {
				gvm_frame_unpack_pages(h, payload, fetch_buf);
				page = fetch_buf;
			}
			err = install_page(rg, f->page, page, f->write);
			if (err)
				vm_lost(vm, err);
			else if (f->t0_us)
				bk_stats_latency(now_us() - f->t0_us);
		} else if (!bk_bit_test(rg->resident, f->page) &&
			   rg->ext_state[e] != BK_EXT_FETCHING) {
			static struct gvm_log_limit lines = GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);

			bk_stats.donor_errors++;
			gvm_log_limited(&lines, GVM_LOG_WARN,
					"donor %s: READ of page %llu of vm %s failed: %s; its fault is "
					"asked again", bk_pool_donor_addr(vm->b->pool, req->donor),
					(unsigned long long)f->page, vm->name,
					status ? strerror(-status) : h->error);
			bk_uffd_wake(rg, f->page, 1); /* its thread faults again */
		}
		if (rg->ext_state[e] == BK_EXT_PAGES)
			rg->ext_state[e] = BK_EXT_NONE;
		goto out;
	}
	if (!status && h->status == ENOENT) {
		/* The donor restarted and forgot the namespace: open it again. */
		rg->ns_id[req->donor] = 0;
		fetch_extent(rg, e, rg->ext_state[e] == BK_EXT_FETCHING, f->fault_page, f->t0_us);
		goto out;
	}
	if (status || h->status) {
		bk_stats.donor_errors++;
		gvm_warn("donor %s: READ of %s extent %llu failed: %s",
			 bk_pool_donor_addr(vm->b->pool, req->donor), rg->ns,
			 (unsigned long long)e, status ? strerror(-status) : h->error);
		rg->ext_state[e] = BK_EXT_NONE;
		bk_uffd_wake(rg, e * bk_extent_pages(rg), extent_count(rg, e)); /* fault again */
		goto out;
	}
	bk_stats.remote_reads++;
	bk_stats.remote_pages += h->page_count;
	/* The payload was received in the request's buffer; zero pages are
	 * filled in there, in place. */
	uint8_t *pages = req->rx_buf ? req->rx_buf : fetch_buf;
	if (payload != pages || gvm_hdr_data_pages(h) != h->page_count)
		gvm_frame_unpack_pages(h, payload, pages);
	if (rg->ext_state[e] == BK_EXT_FETCHING) {
		err = install_extent(rg, e, pages, f->fault_page, false);
		if (err)
			vm_lost(vm, err);
		else if (f->t0_us)
			bk_stats_latency(now_us() - f->t0_us);
	} else if (rg->ext_state[e] == BK_EXT_PREFETCHING) {
		if (req->rx_buf && bk_cache_put(vm->b->cache, rg, e, req->rx_buf)) {
			req->rx_buf = NULL; /* the cache has it now */
			if (room_ahead(rg, extent_count(rg, e)))
				install_ahead(rg, e, pages);
		} else {
			rg->ext_state[e] = BK_EXT_NONE;
		}
	}
out:
	bk_cache_buf_put(vm->b->cache, req->rx_buf);
	free(f);
	bk_evict_check(vm->b);
	bk_vm_put(vm);
}

static void on_ns_opened(struct bk_req *req, int status, const struct gvm_hdr *h,
			 const uint8_t *payload)
{
	struct bk_fetch *f = (struct bk_fetch *)req;
	struct bk_region *rg = f->rg;

	(void)payload;
	if (!rg->vm->detached) {
		if (!status && !h->status) {
			rg->ns_id[req->donor] = h->ns;
			fetch_extent(rg, f->extent, rg->ext_state[f->extent] == BK_EXT_FETCHING,
				     f->fault_page, f->t0_us);
		} else {
			bk_stats.donor_errors++;
			gvm_warn("donor %s: OPEN_NS %s failed: %s",
				 bk_pool_donor_addr(rg->vm->b->pool, req->donor), rg->ns,
				 status ? strerror(-status) : h->error);
			rg->ext_state[f->extent] = BK_EXT_NONE;
			bk_uffd_wake(rg, f->extent * bk_extent_pages(rg), extent_count(rg, f->extent));
		}
	}
	bk_vm_put(rg->vm);
	free(f);
}

/* Asks the extent's donor for its pages (opening the namespace there first
 * if needed). The reply installs them (demand) or caches them (prefetch). */
/* A READ of extent e (page NO_PAGE) or of one page of it, addressed to
 * the extent's donor; it holds a reference on the VM until its reply. */
static struct bk_fetch *fetch_new(struct bk_region *rg, uint64_t e, uint64_t page,
				  uint64_t t0_us, bool demand)
{
	struct bk_fetch *f = calloc(1, sizeof(*f));

	if (!f) {
		gvm_err("out of memory fetching %s extent %llu", rg->ns, (unsigned long long)e);
		return NULL;
	}
	f->rg = rg;
	f->extent = e;
	f->page = page;
	f->fault_page = NO_PAGE;
	f->t0_us = t0_us;
	f->req.donor = bk_extent_donor(rg, e);
	f->req.flags = demand ? BK_REQ_DEMAND : 0;
	rg->vm->refs++;
	return f;
}

static void fetch_extent(struct bk_region *rg, uint64_t e, bool demand, uint64_t fault_page,
			 uint64_t t0_us)
{
	struct bk_fetch *f = fetch_new(rg, e, NO_PAGE, t0_us, demand);
	unsigned d;

	if (!f)
		return;
	d = f->req.donor;
	f->fault_page = fault_page;
	rg->ext_state[e] = demand ? BK_EXT_FETCHING : BK_EXT_PREFETCHING;
	if (!rg->ns_id[d]) {
		gvm_hdr_init(&f->req.hdr, GVM__OP__OP_OPEN_NS, 0);
		strcpy(f->req.hdr.ns_name, rg->ns);
		f->req.cb = on_ns_opened;
	} else {
		gvm_hdr_init(&f->req.hdr, GVM__OP__OP_READ, 0);
		f->req.hdr.ns = rg->ns_id[d];
		f->req.hdr.first_page = e * bk_extent_pages(rg);
		f->req.hdr.page_count = (uint32_t)extent_count(rg, e);
		f->req.cb = on_fetched;
		f->req.rx_buf = bk_cache_buf(rg->vm->b->cache);
		f->req.rx_cap = f->req.rx_buf ? (uint32_t)(bk_extent_pages(rg) * GVM_PAGE_SIZE) : 0;
		if (demand) {
			f->reserved = (uint32_t)extent_count(rg, e);
			rg->vm->b->reserved_pages += f->reserved;
		}
	}
	bk_pool_submit(rg->vm->b->pool, &f->req);
}

/* One page, ahead of its extent's READ (see on_fetched); needs the
 * namespace open on that donor already. */
static void fetch_page(struct bk_region *rg, uint64_t page, bool write, uint64_t t0_us)
{
	struct bk_fetch *f = fetch_new(rg, page / bk_extent_pages(rg), page, t0_us, true);

	if (!f)
		return;
	f->write = write;
	f->req.cb = on_fetched;
	gvm_hdr_init(&f->req.hdr, GVM__OP__OP_READ, 0);
	f->req.hdr.ns = rg->ns_id[f->req.donor];
	f->req.hdr.first_page = page;
	f->req.hdr.page_count = 1;
	f->reserved = 1;
	rg->vm->b->reserved_pages++;
	bk_bit_set(rg->fetching, page);
	bk_pool_submit(rg->vm->b->pool, &f->req);
}

static bool extent_touched(const struct bk_region *rg, uint64_t e)
{
	uint64_t first = e * bk_extent_pages(rg), count = extent_count(rg, e);

	for (uint64_t p = first; p < first + count; p++)
		if (bk_bit_test(rg->resident, p))
			return true;
	return false;
}

/* A demand fault on page. The faulting thread waits only for a one-page
 * READ. With locality (a sequential run, or an extent touched before) the
 * extent's READ goes right behind it and is installed on arrival; a lone
 * random touch fetches its page and nothing more. */
static void fetch_demand(struct bk_region *rg, uint64_t page, bool write, uint64_t t0_us)
{
	uint64_t e = page / bk_extent_pages(rg);

	if (bk_extent_pages(rg) == 1 || !rg->ns_id[bk_extent_donor(rg, e)]) {
		fetch_extent(rg, e, true, page, t0_us);
		return;
	}
	fetch_page(rg, page, write, t0_us);
	/* An extent READ racing a write-back of its pages could bring back
	 * their old contents: while one is in flight, fetch single pages. */
	if (!rg->wb_inflight[e] && (rg->streak || extent_touched(rg, e))) {
		rg->ext_state[e] = BK_EXT_FETCHING;
		fetch_extent(rg, e, true, page, 0);
	} else {
		rg->ext_state[e] = BK_EXT_PAGES;
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
		if (rg->fresh && !bk_bit_test(rg->on_donor, k))
			continue; /* never written anywhere: its fault is a zero fill */
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

	bk_pool_promote(rg->vm->b->pool, bk_extent_donor(rg, e), is_extent_read, &k);
}

static struct bk_region *region_of(struct bk_vm *vm, uint64_t addr)
{
	for (size_t i = 0; i < vm->nregions; i++) {
		struct bk_region *rg = &vm->regions[i];

		if (addr >= rg->host_addr && addr - rg->host_addr < rg->size)
			return rg;
	}
	return NULL;
}

static int handle_wp_fault(struct bk_region *rg, uint64_t page)
{
	int err;

	bk_stats.wp_faults++;
	if (!bk_bit_test(rg->resident, page)) {
		if (!bk_page_in_memfd(rg, page)) {
			bk_uffd_wake(rg, page, 1); /* evicted meanwhile: refault it */
			return 0;
		}
		/* Installed before a broker restart: ours from now on. */
		mark_resident(rg, page);
	}
	if (bk_evict_hold_writer(rg, page))
		return 0; /* woken when its write-back is done */
	bk_bit_set(rg->dirty, page);
	bk_bit_set(rg->ref, page);
	err = bk_uffd_protect(rg, page, 1, false); /* lifts it, wakes the writer */
	return err == -EAGAIN ? 0 : err;
}

static int handle_fault(struct bk_vm *vm, const struct uffd_msg *msg, uint64_t t0)
{
	uint64_t addr = msg->arg.pagefault.address, flags = msg->arg.pagefault.flags;
	struct bk_region *rg = region_of(vm, addr);
	uint64_t page, e;
	const uint8_t *cached;
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
	if (bk_bit_test(rg->resident, page)) {
		if (bk_page_in_memfd(rg, page)) {
			bk_uffd_wake(rg, page, 1); /* installed meanwhile */
			return 0;
		}
		/* A hole where a page was: the VM dropped it. It reads as zero. */
		bk_evict_page_gone(rg, page);
		return install_page(rg, page, vm->b->zero_extent, flags & UFFD_PAGEFAULT_FLAG_WRITE);
	}
	if (bk_bit_test(rg->fetching, page))
		return 0; /* its one-page READ wakes this thread too */
	e = page / bk_extent_pages(rg);
	switch (rg->ext_state[e]) {
	case BK_EXT_FETCHING:
		return 0; /* its reply wakes this thread too */
	case BK_EXT_PAGES:
		break; /* only single pages are on their way: fetch this one too */
	case BK_EXT_PREFETCHING:
		rg->ext_state[e] = BK_EXT_FETCHING; /* install on arrival */
		promote_prefetch(rg, e);
		prefetch_after(rg, e); /* keep the window moving while this one comes */
		return 0;
	case BK_EXT_CACHED:
		cached = bk_cache_get(vm->b->cache, rg, e);
		if (cached) {
			bk_stats.prefetch_hits++;
			err = install_extent(rg, e, cached, page, flags & UFFD_PAGEFAULT_FLAG_WRITE);
			bk_cache_drop(vm->b->cache, rg, e);
			bk_stats_latency(now_us() - t0);
			prefetch_after(rg, e);
			return err;
		}
		rg->ext_state[e] = BK_EXT_NONE;
		/* fall through */
	default:
		break;
	}
	if (rg->fresh && !bk_bit_test(rg->on_donor, e)) {
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
		 * on their way; WP faults add nothing and never wait. */
		if (!(m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) &&
		    (b->deferred || bk_evict_must_wait(b, b->cfg.extent_pages)))
			defer_fault(vm, m, t0);
		else
			err = handle_fault(vm, m, t0);
		if (err)
			vm_lost(vm, err);
	}
	bk_evict_check(b);
	bk_fault_redispatch(b);
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
	if (!vm->polling)
		return;
	vm->polling = false;
	uv_poll_stop(&vm->poll);
	uv_close((uv_handle_t *)&vm->poll, on_poll_closed);
}
