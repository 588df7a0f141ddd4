/* prefetch.h: the host-wide prefetch cache. Extents fetched ahead of
 * demand (fault.c) wait here, bounded by --prefetch-cache bytes, oldest
 * dropped first; a fault on one installs it without a network trip. */
#ifndef BK_PREFETCH_H
#define BK_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"

int bk_cache_create(struct bk_cache **out, uint64_t max_bytes, unsigned extent_pages);
void bk_cache_free(struct bk_cache *c);
/* Keeps a copy of the extent's pages; marks it BK_EXT_CACHED. An extent
 * dropped to make room goes back to BK_EXT_NONE. False if it cannot fit. */
bool bk_cache_put(struct bk_cache *c, struct bk_region *rg, uint64_t extent,
		  const uint8_t *pages);
/* The cached pages, valid until the next put; NULL if absent. */
const uint8_t *bk_cache_get(struct bk_cache *c, struct bk_region *rg, uint64_t extent);
void bk_cache_drop(struct bk_cache *c, struct bk_region *rg, uint64_t extent);
void bk_cache_drop_region(struct bk_cache *c, struct bk_region *rg);
uint64_t bk_cache_bytes(const struct bk_cache *c);

#endif
