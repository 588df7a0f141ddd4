/* dsm_shim.h: the few kernel facilities the coherence core uses, so the
 * same files compile in the kernel (kmod/) and in user space (sim/). In
 * the kernel this is linux/ headers; in user space, small equivalents. */
#ifndef DSM_SHIM_H
#define DSM_SHIM_H

#ifdef __KERNEL__
#include <linux/bitmap.h>
#include <linux/bitops.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/types.h>
#define dsm_log(...) pr_info("giantvm-dsm: " __VA_ARGS__)
#else
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define GFP_KERNEL 0
#define BITS_PER_LONG (sizeof(long) * CHAR_BIT)
#define BITS_TO_LONGS(n) (((n) + BITS_PER_LONG - 1) / BITS_PER_LONG)

static inline void *kvzalloc(size_t n, int gfp)
{
	(void)gfp;
	return calloc(1, n);
}

static inline void *kvmalloc_array(size_t n, size_t size, int gfp)
{
	(void)gfp;
	return n && size > SIZE_MAX / n ? NULL : malloc(n * size);
}

static inline void *kvcalloc(size_t n, size_t size, int gfp)
{
	(void)gfp;
	return calloc(n, size);
}

static inline void kvfree(const void *p)
{
	free((void *)p);
}

static inline void __set_bit(unsigned long nr, unsigned long *map)
{
	map[nr / BITS_PER_LONG] |= 1UL << (nr % BITS_PER_LONG);
}

static inline void __clear_bit(unsigned long nr, unsigned long *map)
{
	map[nr / BITS_PER_LONG] &= ~(1UL << (nr % BITS_PER_LONG));
}

static inline bool test_bit(unsigned long nr, const unsigned long *map)
{
	return (map[nr / BITS_PER_LONG] >> (nr % BITS_PER_LONG)) & 1UL;
}

static inline unsigned long find_next_bit(const unsigned long *map, unsigned long size,
					  unsigned long start)
{
	while (start < size) {
		unsigned long w = map[start / BITS_PER_LONG] >> (start % BITS_PER_LONG);

		if (w)
			return start + (unsigned long)__builtin_ctzl(w) < size ?
				       start + (unsigned long)__builtin_ctzl(w) :
				       size;
		start = (start / BITS_PER_LONG + 1) * BITS_PER_LONG;
	}
	return size;
}

#define for_each_set_bit(bit, map, size)                                                  \
	for ((bit) = find_next_bit((map), (size), 0); (bit) < (size);                     \
	     (bit) = find_next_bit((map), (size), (bit) + 1))

static inline void cond_resched(void)
{
}

#define dsm_log(...) fprintf(stderr, "giantvm-dsm: " __VA_ARGS__)
#endif

#endif
