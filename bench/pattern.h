/* pattern.h: the page contents benchmarks (memserver_bench.c) and tests
 * (tests/integration/procs.c) write and verify: a pseudo-random stream
 * seeded by (seed, page index), with every zero_every-th page all zero so
 * the zero-page path is exercised too. */
#ifndef GVM_PATTERN_H
#define GVM_PATTERN_H

#include <stdint.h>
#include <string.h>

#include "gvm_proto.h"

static inline uint64_t gvm_pattern_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* zero_every 0: no zero pages. */
static inline void gvm_pattern_fill_page(uint8_t *page, uint64_t seed,
					 uint64_t index, unsigned zero_every)
{
	uint64_t *w = (uint64_t *)page;
	uint64_t s = gvm_pattern_mix64(seed ^ gvm_pattern_mix64(index));

	if (zero_every && index % zero_every == zero_every - 1) {
		memset(page, 0, GVM_PAGE_SIZE);
		return;
	}
	for (size_t i = 0; i < GVM_PAGE_SIZE / 8; i++)
		w[i] = s = gvm_pattern_mix64(s);
}

#endif
