/* prefetch.h: the host-wide prefetch cache. Extents fetched ahead of
 * demand (fault.c) wait here, bounded by --prefetch-cache bytes, oldest
 * dropped first; a fault on one installs it without a network trip. The
 * cache also hands out the extent-sized buffers READ replies are received
 * in, so a prefetched extent stays in the buffer it arrived in. */
#ifndef BK_PREFETCH_H
#define BK_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"

int bk_cache_create(struct bk_cache **out, uint64_t max_bytes, unsigned extent_pages);
void bk_cache_free(struct bk_cache *c);
/* A buffer for an extent of rg (malloc'd: free() also releases it), or
 * NULL. Those of --extent-pages are kept for reuse; a hugetlb region's
 * (a huge page) are not. */
uint8_t *bk_cache_buf(struct bk_cache *c, const struct bk_region *rg);
/* Its size: the extent's pages and a tag each (a sealed reply's). */
size_t bk_cache_buf_bytes(const struct bk_region *rg);
/* Gives a buffer from bk_cache_buf for rg back, to be handed out again. */
void bk_cache_buf_put(struct bk_cache *c, const struct bk_region *rg, uint8_t *buf);
/* Keeps pages (a buffer from bk_cache_buf holding the extent) and marks the
 * extent BK_EXT_CACHED; the cache owns pages after a true return. An extent
 * dropped to make room goes back to BK_EXT_NONE. False if it cannot fit. */
bool bk_cache_put(struct bk_cache *c, struct bk_region *rg, uint64_t extent, uint8_t *pages);
/* The cached pages, valid until the next put; NULL if absent. */
const uint8_t *bk_cache_get(struct bk_cache *c, struct bk_region *rg, uint64_t extent);
void bk_cache_drop(struct bk_cache *c, struct bk_region *rg, uint64_t extent);
void bk_cache_drop_region(struct bk_cache *c, struct bk_region *rg);
uint64_t bk_cache_bytes(const struct bk_cache *c);

#endif
