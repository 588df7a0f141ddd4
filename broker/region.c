/* region.c: a VM's regions and their page state (region.h): the bitmaps,
 * the extent states, the resident counts (the region's, its VM's and the
 * host's), and the VM's memory and reference count. Pages are installed
 * here through uffd.c, and punched here out of the memfd; callers are
 * fault.c (faults), evict.c (eviction), replica.c (lost copies) and
 * attach.c (attach and re-attach). */
#include "region.h"
#include "seal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "names.h"
#include "placement.h"
#include "stats.h"
#include "uffd.h"

/* Whether writes to rg's pages are tracked by write protection: not a
 * pinned VM's, whose pages never move. */
static bool tracked(const struct bk_region *rg)
{
	return !rg->vm->pinned;
}

static uint64_t *bitmap_new(uint64_t bits)
{
	return calloc((bits + 63) / 64, sizeof(uint64_t));
}

static void region_fini(struct bk_region *rg)
{
	if (rg->map)
		munmap(rg->map, rg->size);
	if (rg->memfd >= 0)
		close(rg->memfd);
	free(rg->ext_state);
	free(rg->resident);
	free(rg->dirty);
	free(rg->ref);
	free(rg->evicting);
	free(rg->wp_held);
	free(rg->fetching);
	free(rg->wb_inflight);
	free(rg->loc); /* (its copies were forgotten when the VM detached) */
	free(rg->ns_id);
	free(rg->ns_was);
	free(rg->list_state);
	free(rg->lost);
	free(rg->ext_ver);
	memset(rg, 0, sizeof(*rg));
	rg->memfd = -1;
}

int bk_region_init(struct bk_region *rg, struct bk_vm *vm, unsigned index, const char *name,
		   uint64_t host_addr, uint64_t size, uint64_t guest_phys, uint64_t memfd_offset,
		   bool huge)
{
	struct bk_broker *b = vm->b;

	memset(rg, 0, sizeof(*rg));
	rg->memfd = -1;
	rg->vm = vm;
	rg->index = index;
	snprintf(rg->name, sizeof(rg->name), "%s", name);
	gvm_ns_name(rg->ns, sizeof(rg->ns), b->id.host_id, vm->incarnation, index);
	rg->host_addr = host_addr;
	rg->size = size;
	rg->guest_phys = guest_phys;
	rg->memfd_offset = memfd_offset;
	rg->npages = size / GVM_PAGE_SIZE;
	rg->huge = huge;
	rg->extent_pages = huge ? GVM_HUGE_PAGE_PAGES : b->cfg.extent_pages;
	rg->nextents = (rg->npages + rg->extent_pages - 1) / rg->extent_pages;
	rg->last_extent = UINT64_MAX - 1;
	rg->ns_hash = gvm_place_ns_hash(rg->ns);
	rg->nlisted = b->ndonors;
	if (!(rg->ext_state = calloc(rg->nextents, 1)) || !(rg->resident = bitmap_new(rg->npages)) ||
	    !(rg->dirty = bitmap_new(rg->npages)) || !(rg->ref = bitmap_new(rg->npages)) ||
	    !(rg->evicting = bitmap_new(rg->npages)) || !(rg->wp_held = bitmap_new(rg->npages)) ||
	    !(rg->fetching = bitmap_new(rg->npages)) || !(rg->lost = bitmap_new(rg->npages)) ||
	    !(rg->wb_inflight = calloc(rg->nextents, 1)) ||
	    !(rg->ext_ver = calloc(rg->nextents, sizeof(*rg->ext_ver))) ||
	    !(rg->loc = malloc(rg->nextents * BK_REPLICAS_MAX * sizeof(*rg->loc))) ||
	    !(rg->ns_id = calloc(b->donors_cap, sizeof(*rg->ns_id))) ||
	    !(rg->ns_was = calloc(b->donors_cap, sizeof(*rg->ns_was))) ||
	    !(rg->list_state = malloc(b->donors_cap)))
		goto out_free;
	memset(rg->loc, 0xff, rg->nextents * BK_REPLICAS_MAX * sizeof(*rg->loc));
	/* a new incarnation: no donor holds anything of it */
	memset(rg->list_state, BK_LIST_DONE, b->donors_cap);
	return 0;

out_free:
	region_fini(rg);
	return -ENOMEM;
}

int bk_region_map(struct bk_region *rg)
{
	void *m = mmap(NULL, rg->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		       rg->memfd, (off_t)rg->memfd_offset);

	if (m == MAP_FAILED)
		return -errno;
	rg->map = m;
	return 0;
}

int bk_region_grow_donors(struct bk_region *rg, unsigned old_cap, unsigned cap)
{
	uint32_t *id = realloc(rg->ns_id, cap * sizeof(*id));
	uint32_t *was;
	uint8_t *ls;

	if (!id)
		return -ENOMEM;
	rg->ns_id = id;
	memset(id + old_cap, 0, (cap - old_cap) * sizeof(*id));
	was = realloc(rg->ns_was, cap * sizeof(*was));
	if (!was)
		return -ENOMEM;
	rg->ns_was = was;
	memset(was + old_cap, 0, (cap - old_cap) * sizeof(*was));
	ls = realloc(rg->list_state, cap);
	if (!ls)
		return -ENOMEM;
	rg->list_state = ls;
	memset(ls + old_cap, BK_LIST_DONE, cap - old_cap); /* new donors hold nothing of it */
	return 0;
}

struct bk_region *bk_region_of(struct bk_vm *vm, uint64_t addr)
{
	for (size_t i = 0; i < vm->nregions; i++) {
		struct bk_region *rg = &vm->regions[i];

		if (addr >= rg->host_addr && addr - rg->host_addr < rg->size)
			return rg;
	}
	return NULL;
}

void bk_vm_free(struct bk_vm *vm)
{
	for (size_t i = 0; i < vm->nregions; i++)
		region_fini(&vm->regions[i]);
	if (vm->uffd >= 0)
		close(vm->uffd);
	if (vm->pidfd >= 0)
		close(vm->pidfd);
	bk_seal_free(vm);
	free(vm->regions);
	free(vm);
}

void bk_vm_put(struct bk_vm *vm)
{
	struct bk_vm **pp;

	if (--vm->refs)
		return;
	for (pp = &vm->b->vms; *pp; pp = &(*pp)->next) {
		if (*pp == vm) {
			*pp = vm->next;
			break;
		}
	}
	bk_vm_free(vm);
}

void bk_vm_fail(struct bk_vm *vm, int err)
{
	if (!vm->failed)
		vm->failed = err ? err : -EIO;
}

/* ---- page state ---- */

void bk_region_mark_resident(struct bk_region *rg, uint64_t page)
{
	if (!bk_bit_test(rg->resident, page)) {
		bk_bit_set(rg->resident, page);
		bk_bit_set(rg->ref, page);
		rg->resident_count++;
		rg->vm->b->resident_pages++;
	}
}

void bk_region_forget(struct bk_region *rg, uint64_t first, uint64_t count)
{
	struct bk_broker *b = rg->vm->b;

	for (uint64_t p = first; p < first + count; p++) {
		uint64_t e = p / bk_extent_pages(rg);

		if (!bk_bit_test(rg->resident, p))
			continue;
		bk_bit_clear(rg->resident, p);
		bk_bit_clear(rg->dirty, p);
		bk_bit_clear(rg->ref, p);
		rg->resident_count--;
		b->resident_pages--;
		if (rg->ext_state[e] == BK_EXT_LOCAL)
			rg->ext_state[e] = BK_EXT_NONE;
	}
}

int bk_memfd_punch(int memfd, off_t offset, uint64_t count)
{
	return fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
			 (off_t)(count * GVM_PAGE_SIZE)) < 0 ? -errno : 0;
}

int bk_region_punch(struct bk_region *rg, uint64_t first, uint64_t count)
{
	int err = bk_memfd_punch(rg->memfd, (off_t)(rg->memfd_offset + first * GVM_PAGE_SIZE),
				 count);

	if (!err)
		bk_region_forget(rg, first, count);
	return err;
}

bool bk_page_in_memfd(const struct bk_region *rg, uint64_t page)
{
	off_t off = (off_t)(rg->memfd_offset + page * GVM_PAGE_SIZE);

	return lseek(rg->memfd, off, SEEK_DATA) == off;
}

bool bk_region_holes(const struct bk_region *rg, uint64_t first, uint64_t count)
{
	off_t off = (off_t)(rg->memfd_offset + first * GVM_PAGE_SIZE);
	off_t data = lseek(rg->memfd, off, SEEK_DATA);

	if (data < 0)
		return errno == ENXIO; /* no data from off to the end of the file */
	return data >= off + (off_t)(count * GVM_PAGE_SIZE);
}

void bk_region_adopt_memfd(struct bk_region *rg)
{
	off_t base = (off_t)rg->memfd_offset, end = base + (off_t)rg->size, off = base;

	/* hugetlbfs answers SEEK_DATA for holes too: taking every huge page
	 * for data would write zeros over what the donors hold. Its pages
	 * stay the kernel's (served without faults, not counted) until the VM
	 * drops them; a write fault on one that an earlier broker protected
	 * makes it ours again (fault.c). */
	if (rg->huge)
		return;
	while (off < end) {
		off_t data = lseek(rg->memfd, off, SEEK_DATA), hole;

		if (data < 0 || data >= end)
			break;
		hole = lseek(rg->memfd, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		uint64_t first = (uint64_t)(data - base) / GVM_PAGE_SIZE;
		uint64_t last = ((uint64_t)(hole - base) + GVM_PAGE_SIZE - 1) / GVM_PAGE_SIZE;

		for (uint64_t p = first; p < last; p++) {
			bk_region_mark_resident(rg, p);
			bk_bit_set(rg->dirty, p); /* whether the donors hold the same is unknown */
		}
		if (tracked(rg))
			bk_region_protect(rg, first, last - first, true);
		off = hole;
	}
}

/* ---- installing ---- */

/* The end of an install of n pages at page by COPY or CONTINUE: the pages
 * done are resident; an EEXIST page was installed by another path (woken);
 * EAGAIN a few times, then the threads fault again. */
static int64_t installed(struct bk_region *rg, uint64_t page, uint64_t n, int err,
			 uint64_t done_bytes, uint64_t *done)
{
	uint64_t k = done_bytes / GVM_PAGE_SIZE, unit = bk_unit_pages(rg);

	for (uint64_t i = 0; i < k; i++)
		bk_region_mark_resident(rg, page + *done + i);
	*done += k;
	if (!err)
		return (int64_t)n;
	if (err == -EEXIST) { /* a page, or a huge page, already there */
		for (uint64_t i = 0; i < unit; i++)
			bk_region_mark_resident(rg, page + *done + i);
		bk_region_wake(rg, page + *done, unit);
		return (int64_t)(*done + unit);
	}
	return err;
}

/* A count in a sysfs file (fd), or -1. */
static long read_count(int fd)
{
	char buf[32];
	ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/* Whether the host's pool has no 2 MiB page left for a mapping without
 * a reservation of its own. The kernel then answers a hugetlb
 * UFFDIO_COPY with ENOMEM, or with EEXIST where the VM's page tables
 * already reach that address: an EEXIST is read in its light. */
static bool huge_pool_dry(const struct bk_broker *b)
{
	long free_pages = read_count(b->huge_free_fd), resv = read_count(b->huge_resv_fd);

	return free_pages >= 0 && resv >= 0 && free_pages <= resv;
}

/* No huge page for [page, page+n) of rg: its faults wait and are asked
 * again, while eviction (or another user) gives pages back. */
static void huge_wait(struct bk_region *rg, uint64_t page, uint64_t n)
{
	static struct gvm_log_limit lines = GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);

	gvm_log_limited(&lines, GVM_LOG_ERROR, "vm %s: no free 2 MiB huge page for %s (reserve "
			"more in /proc/sys/vm/nr_hugepages, or lower --budget); its faults wait",
			rg->vm->name, rg->name);
	bk_region_later(rg, page, n, BK_HUGE_RETRY_MS, false);
}

/* UFFDIO_COPY of n pages from src, or UFFDIO_CONTINUE of them (src NULL):
 * the pages done are resident; EAGAIN is tried again a few times, then the
 * threads fault again; a CONTINUE that finds a page gone from the memfd
 * (the VM punched it) keeps what was done and lets the threads fault
 * again, on a hole. */
static int64_t install(struct bk_region *rg, uint64_t page, uint64_t n, const uint8_t *src,
		       bool wp)
{
	uint64_t done = 0;

	wp = wp && tracked(rg);
	for (unsigned tries = 0;;) {
		uint64_t addr = rg->host_addr + (page + done) * GVM_PAGE_SIZE, bytes;
		uint64_t len = (n - done) * GVM_PAGE_SIZE;
		int err = src ? bk_uffd_copy(rg->vm->uffd, addr, src + done * GVM_PAGE_SIZE, len, wp,
					     &bytes) :
				bk_uffd_continue(rg->vm->uffd, addr, len, wp, &bytes);
		int64_t r;

		if (err == -EEXIST && rg->huge && huge_pool_dry(rg->vm->b))
			err = -ENOMEM;
		r = installed(rg, page, n, err == -EFAULT && !src ? 0 : err, bytes, &done);

		if (err == -EFAULT && !src) {
			bk_region_wake(rg, page, n);
			return (int64_t)n;
		}
		if (err == -ENOMEM && rg->huge) {
			huge_wait(rg, page + done, n - done);
			return (int64_t)n;
		}
		if (err != -EAGAIN)
			return r;
		if (++tries > BK_COPY_EAGAIN_RETRIES) {
			/* The mm is changing under us: let the threads fault again. */
			bk_region_wake(rg, page, n);
			return (int64_t)n;
		}
	}
}

int64_t bk_region_install(struct bk_region *rg, uint64_t page, uint64_t n, const uint8_t *src,
			  bool wp)
{
	return install(rg, page, n, src, wp);
}

int64_t bk_region_continue(struct bk_region *rg, uint64_t page, uint64_t n, bool wp)
{
	return install(rg, page, n, NULL, wp);
}

int bk_region_install_if_gone(struct bk_region *rg, uint64_t first, uint64_t n,
			      const uint8_t *src, bool wp)
{
	uint64_t bytes;
	int err = bk_uffd_copy(rg->vm->uffd, rg->host_addr + first * GVM_PAGE_SIZE, src,
			       n * GVM_PAGE_SIZE, wp && tracked(rg), &bytes);

	if (!err)
		return 1;
	if (err == -ENOMEM || (err == -EEXIST && huge_pool_dry(rg->vm->b))) {
		huge_wait(rg, first, n);
		return 0;
	}
	if (err == -EEXIST || err == -EAGAIN) {
		bk_region_wake(rg, first, n); /* there, or the mm changes: fault again */
		return 0;
	}
	return err;
}

void bk_region_wake(struct bk_region *rg, uint64_t first, uint64_t count)
{
	bk_uffd_wake(rg->vm->uffd, rg->host_addr + first * GVM_PAGE_SIZE, count * GVM_PAGE_SIZE);
}

/* A wake, or the lifting of a write protection, done after a delay: a
 * timer holding a reference on the VM. */
struct region_later {
	uv_timer_t timer;
	struct bk_region *rg;
	uint64_t first, count;
	bool unprotect;
};

static void on_later_closed(uv_handle_t *h)
{
	struct region_later *l = h->data;

	bk_vm_put(l->rg->vm);
	free(l);
}

static void on_later(uv_timer_t *t)
{
	struct region_later *l = t->data;
	struct bk_region *rg = l->rg;

	if (!rg->vm->detached && !l->unprotect)
		bk_region_wake(rg, l->first, l->count);
	else if (!rg->vm->detached &&
		 bk_uffd_protect(rg->vm->uffd, rg->host_addr + l->first * GVM_PAGE_SIZE,
				 l->count * GVM_PAGE_SIZE, false) == -EAGAIN) {
		uv_timer_start(t, on_later, BK_UNPROTECT_RETRY_MS, 0); /* still changing */
		return;
	}
	uv_close((uv_handle_t *)t, on_later_closed);
}

void bk_region_later(struct bk_region *rg, uint64_t first, uint64_t count, unsigned ms,
		     bool unprotect)
{
	struct region_later *l = calloc(1, sizeof(*l));

	if (!l) {
		bk_stats_nomem("vm %s: a timer to %s (done now)", rg->vm->name,
			       unprotect ? "lift a write protection again" : "ask faults again");
		if (!unprotect)
			bk_region_wake(rg, first, count);
		return;
	}
	l->rg = rg;
	l->first = first;
	l->count = count;
	l->unprotect = unprotect;
	rg->vm->refs++;
	uv_timer_init(rg->vm->b->loop, &l->timer);
	l->timer.data = l;
	uv_timer_start(&l->timer, on_later, ms, 0);
}

int bk_region_protect(struct bk_region *rg, uint64_t first, uint64_t count, bool on)
{
	int err = bk_uffd_protect(rg->vm->uffd, rg->host_addr + first * GVM_PAGE_SIZE,
				  count * GVM_PAGE_SIZE, on);

	if (err != -EAGAIN || on)
		return err;
	/* Lifting refused while the VM's mm changes (an unmap event this
	 * loop has not read yet): again shortly, so its writers are woken. */
	bk_region_later(rg, first, count, BK_UNPROTECT_RETRY_MS, true);
	return 0;
}
