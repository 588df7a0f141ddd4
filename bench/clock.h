/* clock.h: the benchmarks' clock and the order they sort samples in. */
#ifndef GVM_BENCH_CLOCK_H
#define GVM_BENCH_CLOCK_H

#include <time.h>

/* Microseconds on the monotonic clock. */
static inline double bench_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* qsort order of doubles, smallest first. */
static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

#endif
