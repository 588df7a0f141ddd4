/* uffd.c: the userfaultfd ioctls (uffd.h), one function each, in the
 * manner of CRIU's uffd.c: the caller decides what EEXIST and EAGAIN
 * mean. region.c is the only caller that installs pages; fault.c and
 * evict.c wake, protect and poison through region.c too. */
#include "uffd.h"

#include <errno.h>
#include <sys/ioctl.h>

#include "uffd_compat.h"

int bk_uffd_api(int uffd, uint64_t features, uint64_t optional, uint64_t *got)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features | optional };
	int rc = ioctl(uffd, UFFDIO_API, &api);

	if (rc < 0 && errno == EINVAL && optional) {
		/* an older kernel: a refused UFFDIO_API leaves the uffd fresh */
		api = (struct uffdio_api){ .api = UFFD_API, .features = features };
		rc = ioctl(uffd, UFFDIO_API, &api);
	}
	if (rc < 0)
		return -errno;
	*got = api.features;
	return 0;
}

int bk_uffd_register(int uffd, uint64_t addr, uint64_t len, uint64_t mode, uint64_t *ioctls)
{
	struct uffdio_register reg = { .range = { addr, len }, .mode = mode };

	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	*ioctls = reg.ioctls;
	return 0;
}

int bk_uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, bool wp, uint64_t *done)
{
	struct uffdio_copy c = {
		.dst = dst,
		.src = (uintptr_t)src,
		.len = len,
		.mode = wp ? UFFDIO_COPY_MODE_WP : 0,
	};

	if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
		*done = len;
		return 0;
	}
	*done = c.copy > 0 ? (uint64_t)c.copy : 0;
	return -errno;
}

int bk_uffd_continue(int uffd, uint64_t dst, uint64_t len, bool wp, uint64_t *done)
{
	struct uffdio_continue c = {
		.range = { dst, len },
		.mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
	};

	if (ioctl(uffd, UFFDIO_CONTINUE, &c) == 0) {
		*done = len;
		return 0;
	}
	*done = c.mapped > 0 ? (uint64_t)c.mapped : 0;
	return -errno;
}

void bk_uffd_wake(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = { addr, len };

	ioctl(uffd, UFFDIO_WAKE, &r);
}

int bk_uffd_protect(int uffd, uint64_t addr, uint64_t len, bool on)
{
	struct uffdio_writeprotect w = {
		.range = { addr, len },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(uffd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

int bk_uffd_poison(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_poison p = { .range = { addr, len } };

	return ioctl(uffd, UFFDIO_POISON, &p) < 0 ? -errno : 0;
}
