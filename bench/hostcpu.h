/* hostcpu.h: the host's CPU time, for the benchmarks that report how busy
 * the host was and how much of it the hypervisor took (steal). */
#ifndef GVM_BENCH_HOSTCPU_H
#define GVM_BENCH_HOSTCPU_H

#include <stdint.h>
#include <stdio.h>

/* Jiffies busy (not idle or iowait), stolen by the hypervisor, and in all,
 * from /proc/stat; all 0 if it cannot be read. */
static inline void bench_host_cpu(uint64_t *busy, uint64_t *steal, uint64_t *total)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");

	*busy = *steal = *total = 0;
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
		for (int i = 0; i < 8; i++)
			*total += v[i];
		*busy = *total - v[3] - v[4];
		*steal = v[7];
	}
	fclose(f);
}

#endif
