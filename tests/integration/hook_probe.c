/* hook_probe.c: a stand-in for QEMU in test_qemu's hook tests, run with
 * libgvm-qemu-hook.so preloaded. It makes guest RAM the way QEMU's
 * memory-backend-memfd does (memfd_create("memory-backend-memfd"),
 * ftruncate, a shared mmap: the hook attaches it), writes a pattern, then
 * opens /dev/vfio/vfio through every libc entry point QEMU may reach and
 * prints what each returned ("open64: EPERM"). It stays attached until its
 * stdin closes, so the test can read the broker's counters meanwhile, and
 * ends with "PATTERN OK" if the RAM still holds the pattern.
 *
 * usage: hook-probe MIB [QEMU-like arguments, which the hook reads] */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PROBE_MEMFD_NAME "memory-backend-memfd" /* the name the hook looks for */
#define PROBE_VFIO_PATH "/dev/vfio/vfio"
#define PROBE_PAGE_BYTES 4096u

/* The _FORTIFY_SOURCE entry points, declared by glibc only under fortify. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

static void probe_report(const char *how, int fd)
{
	if (fd >= 0) {
		printf("%s: opened\n", how);
		close(fd);
	} else {
		printf("%s: %s\n", how, strerrorname_np(errno));
	}
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 0, len = mib << 20;
	uint64_t *page;
	char c;
	int fd;

	if (!mib) {
		fprintf(stderr, "usage: hook-probe MIB [QEMU-like arguments]\n");
		return 2;
	}
	fd = memfd_create(PROBE_MEMFD_NAME, MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, len)) {
		perror("hook-probe: memfd");
		return 1;
	}
	page = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED) {
		perror("hook-probe: mmap");
		return 1;
	}
	for (size_t i = 0; i < len / PROBE_PAGE_BYTES; i++)
		page[i * PROBE_PAGE_BYTES / sizeof(*page)] = i * 0x9e3779b97f4a7c15ull;

	probe_report("open", open(PROBE_VFIO_PATH, O_RDWR | O_CLOEXEC));
	probe_report("open64", open64(PROBE_VFIO_PATH, O_RDWR | O_CLOEXEC));
	probe_report("openat", openat(AT_FDCWD, PROBE_VFIO_PATH, O_RDWR | O_CLOEXEC));
	probe_report("openat64", openat64(AT_FDCWD, PROBE_VFIO_PATH, O_RDWR | O_CLOEXEC));
	probe_report("__open_2", __open_2(PROBE_VFIO_PATH, O_RDWR | O_CLOEXEC));
	probe_report("__open64_2", __open64_2(PROBE_VFIO_PATH, O_RDWR | O_CLOEXEC));
	probe_report("__openat_2", __openat_2(AT_FDCWD, PROBE_VFIO_PATH, O_RDWR | O_CLOEXEC));
	probe_report("__openat64_2", __openat64_2(AT_FDCWD, PROBE_VFIO_PATH, O_RDWR | O_CLOEXEC));
	printf("READY\n");
	fflush(stdout);

	while (read(0, &c, 1) > 0)
		;
	for (size_t i = 0; i < len / PROBE_PAGE_BYTES; i++)
		if (page[i * PROBE_PAGE_BYTES / sizeof(*page)] != i * 0x9e3779b97f4a7c15ull) {
			printf("PATTERN BAD at page %zu\n", i);
			return 1;
		}
	printf("PATTERN OK\n");
	return 0;
}
