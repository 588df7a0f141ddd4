/* push.h: moves a VM's pages to its donors, for benchmarks (fault_bench.c)
 * and tests (tests/integration/). A new VM incarnation holds nothing on
 * any donor, so to measure or check reads from the donors a VM first
 * writes its pages, then its own limit drops to one page until its memfd
 * holds no data (every page written back and dropped), then the limit
 * becomes what the caller wants. */
#ifndef GVM_PUSH_H
#define GVM_PUSH_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "gvm_proto.h"
#include "gvmmem.h"

/* Pages of memfd in memory: its allocated blocks, which hugetlbfs counts
 * too (its lseek sees no holes). */
static inline uint64_t gvm_push_data_pages(int memfd)
{
	struct stat st;

	return fstat(memfd, &st) ? UINT64_MAX : (uint64_t)st.st_blocks * 512 / GVM_PAGE_SIZE;
}

/* Every page of the attached region (its memfd's) to the donors, then the
 * VM's own limit set to limit_after (0: none). 0, or -ETIMEDOUT after
 * timeout_ms, or gvm_set_limit's error. */
static inline int gvm_push_to_donors(struct gvm_session *s, int memfd, uint64_t limit_after,
				     int timeout_ms)
{
	int err = gvm_set_limit(s, GVM_PAGE_SIZE);

	for (int waited = 0; !err && gvm_push_data_pages(memfd) > 0; waited += 10) {
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		usleep(10 * 1000);
	}
	return err ? err : gvm_set_limit(s, limit_after);
}

#endif
