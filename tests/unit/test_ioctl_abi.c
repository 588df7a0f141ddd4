/* test_ioctl_abi.c: the ioctls of /dev/gvmmem (cuse-dev/include/gvmmem_ioctl.h)
 * are an ABI that clients compile in: struct gvmmem_stats keeps its 33 v1
 * counters at their offsets, and every command keeps its number. A counter
 * added to the struct changes GVMMEM_IOC_STATS and fails this file at
 * compile time; new counters belong in read() and gvmctl stats (stats.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gvmmem_ioctl.h"

/* The v1 fields in their order: field i at offset 8 * i. */
#define V1_FIELDS(X)                                                                       \
	X(vms) X(resident_pages) X(faults) X(wp_faults) X(remote_reads) X(remote_pages)    \
	X(prefetch_issued) X(prefetch_hits) X(prefetch_cache_bytes) X(zero_fills)        \
	X(donors) X(donor_connections) X(donor_errors) X(attaches) X(attach_errors)      \
	X(budget_bytes) X(resident_bytes) X(evictions) X(writebacks) X(clean_drops)      \
	X(writeback_errors) X(evict_waits) X(removed_pages) X(fault_latency_p50_us)      \
	X(fault_latency_p99_us) X(replicas) X(dead_donors) X(degraded_extents)           \
	X(failovers) X(hedged_reads) X(rereplicated_pages) X(poisoned_pages)             \
	X(draining_extents)

#define V1_INDEX(f) V1_##f,
enum { V1_FIELDS(V1_INDEX) V1_COUNT };
#undef V1_INDEX

#define V1_AT_ITS_OFFSET(f)                                                                \
	_Static_assert(offsetof(struct gvmmem_stats, f) == V1_##f * sizeof(uint64_t),      \
		       "gvmmem_stats." #f " moved: the v1 struct is frozen");
V1_FIELDS(V1_AT_ITS_OFFSET)
#undef V1_AT_ITS_OFFSET

_Static_assert(V1_COUNT == 33, "v1 has 33 counters");
_Static_assert(sizeof(struct gvmmem_stats) == GVMMEM_STATS_V1_BYTES &&
		       GVMMEM_STATS_V1_BYTES == V1_COUNT * sizeof(uint64_t),
	       "struct gvmmem_stats is frozen at 264 bytes");
_Static_assert(_IOC_DIR(GVMMEM_IOC_STATS) == _IOC_READ && _IOC_TYPE(GVMMEM_IOC_STATS) == 0xb7 &&
		       _IOC_NR(GVMMEM_IOC_STATS) == 0x02 && _IOC_SIZE(GVMMEM_IOC_STATS) == 264,
	       "GVMMEM_IOC_STATS is _IOR(0xb7, 0x02, 264 bytes) forever");
_Static_assert(_IOC_SIZE(GVMMEM_IOC_VERSION) == 16 && _IOC_SIZE(GVMMEM_IOC_HELLO) == 148,
	       "struct gvmmem_version and struct gvmmem_hello are frozen");
/* The numbers themselves, where the encoding is asm-generic's. */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__riscv)
_Static_assert(GVMMEM_IOC_STATS == 0x8108b702u, "GVMMEM_IOC_STATS changed");
_Static_assert(GVMMEM_IOC_VERSION == 0x8010b700u, "GVMMEM_IOC_VERSION changed");
_Static_assert(GVMMEM_IOC_HELLO == 0x8094b701u, "GVMMEM_IOC_HELLO changed");
#define ASM_GENERIC_IOCTL 1
#endif

/* The same facts at run time, so a failure reads as numbers. */
static void test_stats_ioctl_keeps_its_v1_size_and_number(void **state)
{
	(void)state;
	assert_int_equal(sizeof(struct gvmmem_stats), 264);
	assert_int_equal(offsetof(struct gvmmem_stats, draining_extents), 256);
	assert_int_equal(_IOC_SIZE(GVMMEM_IOC_STATS), 264);
	assert_int_equal(_IOC_NR(GVMMEM_IOC_STATS), 0x02);
#ifdef ASM_GENERIC_IOCTL
	assert_int_equal((unsigned)GVMMEM_IOC_STATS, 0x8108b702u);
#endif
}

static void test_version_and_hello_ioctls_keep_their_numbers(void **state)
{
	(void)state;
	assert_int_equal(_IOC_SIZE(GVMMEM_IOC_VERSION), sizeof(struct gvmmem_version));
	assert_int_equal(_IOC_SIZE(GVMMEM_IOC_HELLO), sizeof(struct gvmmem_hello));
#ifdef ASM_GENERIC_IOCTL
	assert_int_equal((unsigned)GVMMEM_IOC_VERSION, 0x8010b700u);
	assert_int_equal((unsigned)GVMMEM_IOC_HELLO, 0x8094b701u);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stats_ioctl_keeps_its_v1_size_and_number),
		cmocka_unit_test(test_version_and_hello_ioctls_keep_their_numbers),
	};

	return cmocka_run_group_tests_name("ioctl_abi", tests, NULL, NULL);
}
