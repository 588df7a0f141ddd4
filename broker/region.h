/* region.h: the one owner of a VM's page and extent state (region.c).
 * Which pages are installed (resident), written since (dirty), used since
 * the clock passed (ref) or lost, and what each extent is doing
 * (ext_state), change only through these functions; fault.c, evict.c,
 * prefetch.c, replica.c and attach.c read the bits and call these to
 * change them. region.c also owns the VM's and its regions' memory (the
 * reference count) and installs pages, through uffd.c: UFFDIO_COPY from a
 * buffer, or, with --install continue, UFFDIO_CONTINUE of pages received
 * straight into the broker's own mapping of the guest's memfd. */
#ifndef BK_REGION_H
#define BK_REGION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"

struct attach_region;

/* Sets up rg (its bitmaps, per-extent and per-donor arrays): 0 or -ENOMEM,
 * with nothing left allocated. */
/* huge: the memfd has 2 MiB pages: the region's extents are its huge
 * pages, and every page state changes for a whole huge page at once. */
int bk_region_init(struct bk_region *rg, struct bk_vm *vm, unsigned index, const char *name,
		   uint64_t host_addr, uint64_t size, uint64_t guest_phys, uint64_t memfd_offset,
		   bool huge);
/* Maps the region's memfd into the broker (for --install continue): 0 or
 * -errno (then pages go in with UFFDIO_COPY). */
int bk_region_map(struct bk_region *rg);
/* A re-attached region: what its memfd holds was installed by an earlier
 * broker: resident and dirty from now on, write-protected again. */
void bk_region_adopt_memfd(struct bk_region *rg);
/* The region of vm holding client address addr, or NULL. */
struct bk_region *bk_region_of(struct bk_vm *vm, uint64_t addr);

/* Drops a reference; the last one frees the VM, its regions and its
 * descriptors. */
void bk_vm_put(struct bk_vm *vm);
void bk_vm_free(struct bk_vm *vm);
/* vm's uffd failed, or its process is gone: it is detached at the end of
 * this loop turn (followup.c), with err saying why. */
void bk_vm_fail(struct bk_vm *vm, int err);

/* ---- installing pages ---- */

/* UFFDIO_COPY of n pages from src at page, write-protected if wp: the pages
 * become resident. Returns pages handled (installed, or found present and
 * woken: the count stops after such a page), or -errno. */
int64_t bk_region_install(struct bk_region *rg, uint64_t page, uint64_t n, const uint8_t *src,
			  bool wp);
/* UFFDIO_CONTINUE of n pages at page, whose contents are in the memfd
 * already: the same contract. */
int64_t bk_region_continue(struct bk_region *rg, uint64_t page, uint64_t n, bool wp);
/* A missing fault on resident pages of a hugetlb region, whose holes
 * lseek cannot find: UFFDIO_COPY of src there. 1: they were gone (the VM
 * punched them) and are installed now; 0: they are there (installed since
 * the fault was queued), and the threads are woken; or -errno. */
int bk_region_install_if_gone(struct bk_region *rg, uint64_t first, uint64_t n,
			      const uint8_t *src, bool wp);
/* The broker's mapping of page (--install continue), or NULL. */
static inline uint8_t *bk_region_page_addr(const struct bk_region *rg, uint64_t page)
{
	return rg->map ? rg->map + page * GVM_PAGE_SIZE : NULL;
}

/* ---- page state ---- */

/* Installed by us (counted against the budget). */
void bk_region_mark_resident(struct bk_region *rg, uint64_t page);
/* Gone from the memfd: forgotten (no longer resident, dirty or used). */
void bk_region_forget(struct bk_region *rg, uint64_t first, uint64_t count);
/* Punches count pages at offset out of a memfd: 0 or -errno. Touches no
 * state: eviction calls it off the loop. */
int bk_memfd_punch(int memfd, off_t offset, uint64_t count);
/* Punches pages out of the memfd and forgets them: 0 or -errno. */
int bk_region_punch(struct bk_region *rg, uint64_t first, uint64_t count);
/* Whether the page holds data in the memfd (not a hole). */
bool bk_page_in_memfd(const struct bk_region *rg, uint64_t page);
/* Whether every page of [first, first+count) is a hole in the memfd. */
bool bk_region_holes(const struct bk_region *rg, uint64_t first, uint64_t count);

static inline void bk_region_set_dirty(struct bk_region *rg, uint64_t page)
{
	bk_bit_set(rg->dirty, page);
}
static inline void bk_region_set_ref(struct bk_region *rg, uint64_t page)
{
	bk_bit_set(rg->ref, page);
}
/* The clock passed a used page: its second chance is taken. */
static inline void bk_region_clear_ref(struct bk_region *rg, uint64_t page)
{
	bk_bit_clear(rg->ref, page);
}
/* Every copy of the page is lost (poisoned on access), or (clear) it was
 * removed and reads as zero now. */
static inline void bk_region_set_lost(struct bk_region *rg, uint64_t page, bool lost)
{
	if (lost)
		bk_bit_set(rg->lost, page);
	else
		bk_bit_clear(rg->lost, page);
}
static inline void bk_region_set_extent(struct bk_region *rg, uint64_t e,
					enum bk_extent_state st)
{
	rg->ext_state[e] = (uint8_t)st;
}

/* ---- the VM's threads ---- */

void bk_region_wake(struct bk_region *rg, uint64_t first, uint64_t count);
/* After ms (a timer): wakes the threads waiting in [first, first+count),
 * or, with unprotect, lifts its write protection (again and again while
 * the VM's mm is changing). */
void bk_region_later(struct bk_region *rg, uint64_t first, uint64_t count, unsigned ms,
		     bool unprotect);
/* Write protection on or off (off wakes the writers): 0 or -errno. Off
 * while the VM's mm is changing (EAGAIN) is done again shortly, and 0. */
int bk_region_protect(struct bk_region *rg, uint64_t first, uint64_t count, bool on);

#endif
