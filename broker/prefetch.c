/* prefetch.c: the prefetch cache (prefetch.h): a hash of (region, extent)
 * with an LRU list; each entry owns the buffer its extent arrived in. Spare
 * buffers are kept for the next READs, so the fault path neither copies an
 * extent into the cache nor faults in fresh heap for it. */
#include "prefetch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "region.h"
#include "stats.h"

#define CACHE_BUCKETS 4096u
#define CACHE_SPARE_BUFS 32u /* kept for reuse; READs in flight rarely need more */
#define CACHE_SPARE_HUGE 8u  /* of huge pages: 16 MiB at most */

/* A buffer has room for each page's tag too: a sealed READ reply
 * (seal.h) is received in it, and opened in place. */
#define BUF_PAGE_BYTES (GVM_PAGE_SIZE + GVM_PAGE_TAG_BYTES)

struct cache_entry {
	struct bk_region *rg;
	uint64_t extent;
	struct cache_entry *hnext;
	struct cache_entry *older, *newer;
	uint8_t *pages;
	size_t bytes;
};

struct bk_cache {
	uint64_t max_bytes, bytes;
	size_t entry_bytes;
	struct cache_entry *buckets[CACHE_BUCKETS];
	struct cache_entry *oldest, *newest;
	/* spare buffers: [0] of entry_bytes, [1] of a huge page */
	uint8_t *spare[2][CACHE_SPARE_BUFS];
	unsigned nspare[2];
};

static unsigned cache_hash(const struct bk_region *rg, uint64_t extent)
{
	uint64_t h = ((uintptr_t)rg >> 4) * 0x9e3779b97f4a7c15ULL ^ extent * 0xff51afd7ed558ccdULL;

	return (unsigned)(h >> 40) % CACHE_BUCKETS;
}

int bk_cache_create(struct bk_cache **out, uint64_t max_bytes, unsigned extent_pages)
{
	struct bk_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->max_bytes = max_bytes;
	c->entry_bytes = (size_t)extent_pages * BUF_PAGE_BYTES;
	*out = c;
	return 0;
}

static size_t extent_bytes(const struct bk_region *rg)
{
	return (size_t)bk_extent_pages(rg) * BUF_PAGE_BYTES;
}

size_t bk_cache_buf_bytes(const struct bk_region *rg)
{
	return extent_bytes(rg);
}

/* Which spare list keeps buffers of bytes: 0 (--extent-pages), 1 (a huge
 * page), -1 (none). Reused, a buffer costs no fresh heap to fault in. */
static int spare_class(const struct bk_cache *c, size_t bytes)
{
	return bytes == c->entry_bytes ? 0 : bytes == GVM_HUGE_PAGE_PAGES * BUF_PAGE_BYTES ? 1 : -1;
}

static uint8_t *buf_get(struct bk_cache *c, size_t bytes)
{
	int k = spare_class(c, bytes);

	if (k >= 0 && c->nspare[k])
		return c->spare[k][--c->nspare[k]];
	/* (C11: the size a multiple of the alignment; a sealed extent's
	 * buffer holds its tags past the last page) */
	return aligned_alloc(GVM_PAGE_SIZE, (bytes + GVM_PAGE_SIZE - 1) & ~(size_t)(GVM_PAGE_SIZE - 1));
}

static void buf_put(struct bk_cache *c, uint8_t *buf, size_t bytes)
{
	int k = spare_class(c, bytes);

	if (!buf)
		return;
	if (k >= 0 && c->nspare[k] < (k ? CACHE_SPARE_HUGE : CACHE_SPARE_BUFS))
		c->spare[k][c->nspare[k]++] = buf;
	else
		free(buf);
}

uint8_t *bk_cache_buf(struct bk_cache *c, const struct bk_region *rg)
{
	return buf_get(c, extent_bytes(rg));
}

void bk_cache_buf_put(struct bk_cache *c, const struct bk_region *rg, uint8_t *buf)
{
	buf_put(c, buf, extent_bytes(rg));
}

static struct cache_entry **cache_slot(struct bk_cache *c, struct bk_region *rg, uint64_t extent)
{
	struct cache_entry **pp = &c->buckets[cache_hash(rg, extent)];

	while (*pp && !((*pp)->rg == rg && (*pp)->extent == extent))
		pp = &(*pp)->hnext;
	return pp;
}

static void cache_unlink(struct bk_cache *c, struct cache_entry **slot)
{
	struct cache_entry *e = *slot;

	*slot = e->hnext;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	c->bytes -= e->bytes;
	buf_put(c, e->pages, e->bytes);
	free(e);
}

bool bk_cache_put(struct bk_cache *c, struct bk_region *rg, uint64_t extent, uint8_t *pages)
{
	struct cache_entry *e, **slot;
	size_t bytes = extent_bytes(rg);

	if (bytes > c->max_bytes)
		return false;
	while (c->bytes + bytes > c->max_bytes && c->oldest) {
		struct cache_entry *old = c->oldest;

		if (old->rg->ext_state[old->extent] == BK_EXT_CACHED)
			bk_region_set_extent(old->rg, old->extent, BK_EXT_NONE);
		cache_unlink(c, cache_slot(c, old->rg, old->extent));
	}
	slot = cache_slot(c, rg, extent);
	if (*slot)
		cache_unlink(c, slot);
	e = malloc(sizeof(*e));
	if (!e) {
		bk_stats_nomem("a prefetch cache entry (the extent is read again when needed)");
		return false;
	}
	e->rg = rg;
	e->extent = extent;
	e->pages = pages;
	e->bytes = bytes;
	e->hnext = *slot;
	*slot = e;
	e->newer = NULL;
	e->older = c->newest;
	if (c->newest)
		c->newest->newer = e;
	else
		c->oldest = e;
	c->newest = e;
	c->bytes += bytes;
	bk_region_set_extent(rg, extent, BK_EXT_CACHED);
	return true;
}

const uint8_t *bk_cache_get(struct bk_cache *c, struct bk_region *rg, uint64_t extent)
{
	struct cache_entry *e = *cache_slot(c, rg, extent);

	return e ? e->pages : NULL;
}

void bk_cache_drop(struct bk_cache *c, struct bk_region *rg, uint64_t extent)
{
	struct cache_entry **slot = cache_slot(c, rg, extent);

	if (*slot)
		cache_unlink(c, slot);
}

void bk_cache_drop_region(struct bk_cache *c, struct bk_region *rg)
{
	struct cache_entry *e = c->oldest;

	while (e) {
		struct cache_entry *next = e->newer;

		if (e->rg == rg)
			cache_unlink(c, cache_slot(c, rg, e->extent));
		e = next;
	}
}

uint64_t bk_cache_bytes(const struct bk_cache *c)
{
	return c->bytes;
}

void bk_cache_free(struct bk_cache *c)
{
	while (c->oldest)
		cache_unlink(c, cache_slot(c, c->oldest->rg, c->oldest->extent));
	for (int k = 0; k < 2; k++)
		while (c->nspare[k])
			free(c->spare[k][--c->nspare[k]]);
	free(c);
}
