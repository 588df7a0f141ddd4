/* hook.c: libgvm-qemu-hook.so, an LD_PRELOAD library that puts the guest
 * RAM of an unmodified QEMU under gvm-broker.
 *
 * QEMU's memory-backend-memfd creates its RAM with
 * memfd_create("memory-backend-memfd", ...) and then maps it, shared when
 * share=on. The hook wraps memfd_create() to remember those fds and mmap()
 * to see where they land; a shared mapping of one is attached with
 * gvm_attach(), so every first touch from then on is a fault the broker
 * serves from the donors. hugetlb=on memfds (2 MiB pages) are attached the
 * same way. Nothing else QEMU maps is touched.
 *
 * VFIO pins guest RAM for device DMA, and a page the broker evicts would
 * then differ between the device and the guest, silently. So a vfio-pci
 * device on QEMU's command line makes the hook attach pinned
 * (GVM_ATTACH_PINNED: the broker keeps all of that RAM resident), and the
 * open()s are wrapped to refuse /dev/vfio/ (and /dev/iommu) with EPERM
 * while any attached RAM is not pinned (a device hot-plugged later).
 *
 * The mode is the seeds' dual-mode choice, gvm_detect_mode(), taken once:
 * FULL_SHARE (GiantVM kernel) leaves memory to the kernel, MEMORY_ONLY
 * attaches, NONE runs on local RAM and says so once. When the broker
 * answered but refuses the RAM, mmap() fails and QEMU stops with its own
 * "unable to map backing store" plus the broker's reason above it: a VM
 * that was meant to live on the donors must not silently fill the host.
 *
 * Environment (gvm-qemu sets the first three from its flags):
 *   GVM_ENDPOINT   broker socket or device (default as in gvmmem.h)
 *   GVM_VM_NAME    name of the VM at the broker (default: QEMU's -name
 *                  guest name, else qemu-PID)
 *   GVM_PINNED     1: attach pinned even without a vfio-pci device
 *   GVM_LOG_LEVEL  error|warn|info|debug (default info)
 *   GVM_MODE, GVM_SYSROOT, GVM_VM_LIMIT   as libgvmmem reads them */
/* This file defines open() itself; fortify's inline open() would clash. */
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gvmmem.h"
#include "config.h"
#include "log.h"
#include "names.h"

#define HOOK_MEMFD_NAME "memory-backend-memfd" /* QEMU's TYPE_MEMORY_BACKEND_MEMFD */
#define HOOK_MAX_BACKENDS 16
#define HOOK_NAME_MAX GVM_REGION_NAME_MAX_BYTES /* names.h's rules, which the broker's are */
#define HOOK_VM_NAME_MAX GVM_VM_NAME_MAX_BYTES
#define HOOK_VFIO_DIR "/dev/vfio/" /* the VFIO container and group devices */
#define HOOK_IOMMUFD "/dev/iommu"  /* iommufd, which pins the same way (QEMU 8+) */

#define EXPORT __attribute__((visibility("default")))

struct hook_backend {
	int fd;     /* the memfd QEMU created, -1 when the slot is free */
	bool mapped; /* attached (or deliberately left alone) already */
	bool pinned; /* attached with GVM_ATTACH_PINNED: never evicted */
	struct gvm_session *session;
};

static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hook_backend hook_backends[HOOK_MAX_BACKENDS];
static unsigned hook_created;  /* memory-backend-memfd fds seen so far */
static unsigned hook_attached; /* sessions made so far */
static bool hook_mode_known;
static enum gvm_mode hook_mode;

/* QEMU's -object memory-backend-memfd ids in command-line order, which is
 * the order QEMU creates them in. */
static char hook_ids[HOOK_MAX_BACKENDS][HOOK_NAME_MAX + 1];
static unsigned hook_nids;
static char hook_guest_name[HOOK_VM_NAME_MAX + 1];
static bool hook_vfio; /* a vfio-pci device on the command line */

static int (*real_memfd_create)(const char *, unsigned int);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *(*real_mmap64)(void *, size_t, int, int, int, off_t);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_open_2)(const char *, int);
static int (*real_open64_2)(const char *, int);
static int (*real_openat_2)(int, const char *, int);
static int (*real_openat64_2)(int, const char *, int);

/* QEMU option value "key=value" inside a comma list; len of the value. */
static const char *hook_opt(const char *opts, const char *key, size_t *len)
{
	size_t klen = strlen(key);

	for (const char *p = opts; p && *p;) {
		const char *end = strchr(p, ',');

		if (!end)
			end = p + strlen(p);
		if ((size_t)(end - p) > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			*len = end - p - klen - 1;
			return p + klen + 1;
		}
		p = *end ? end + 1 : end;
	}
	return NULL;
}

static bool hook_vfio_driver(const char *drv, size_t len)
{
	return (len == strlen("vfio-pci") && !strncmp(drv, "vfio-pci", len)) ||
	       (len == strlen("vfio-pci-nohotplug") && !strncmp(drv, "vfio-pci-nohotplug", len));
}

/* A -device argument that names a vfio-pci device, in any of QEMU's forms:
 * "vfio-pci,host=..." (the driver first), "driver=vfio-pci,...", or JSON
 * {"driver": "vfio-pci", ...}. */
static bool hook_is_vfio_device(const char *arg)
{
	const char *drv;
	size_t len;

	if (*arg == '{') {
		const char *p = strstr(arg, "\"driver\"");

		if (!p)
			return false;
		p += strlen("\"driver\"");
		p += strspn(p, " \t\r\n");
		if (*p++ != ':')
			return false;
		p += strspn(p, " \t\r\n");
		if (*p++ != '"')
			return false;
		return hook_vfio_driver(p, strcspn(p, "\""));
	}
	drv = hook_opt(arg, "driver", &len);
	if (!drv) {
		drv = arg;
		len = strcspn(arg, ",");
		if (memchr(arg, '=', len)) /* a key=value first: no implied driver */
			return false;
	}
	return hook_vfio_driver(drv, len);
}

/* Reads the ids of memory-backend-memfd objects, the guest name and
 * whether a vfio-pci device is there from QEMU's command line. */
static void hook_read_cmdline(bool *has_memfd)
{
	static char buf[65536];
	const char *prev = "";
	ssize_t n = 0, r;
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);

	*has_memfd = false;
	if (fd < 0)
		return;
	while (n < (ssize_t)sizeof(buf) - 1 &&
	       (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += r;
	close(fd);
	buf[n] = '\0';
	for (char *arg = buf; arg < buf + n; arg += strlen(arg) + 1) {
		const char *v;
		size_t len;

		if ((!strcmp(prev, "-object") || !strcmp(prev, "--object")) &&
		    !strncmp(arg, HOOK_MEMFD_NAME, strlen(HOOK_MEMFD_NAME)) &&
		    (arg[strlen(HOOK_MEMFD_NAME)] == ',' || !arg[strlen(HOOK_MEMFD_NAME)])) {
			*has_memfd = true;
			v = hook_opt(arg, "id", &len);
			if (v && hook_nids < HOOK_MAX_BACKENDS)
				gvm_label_sanitize(hook_ids[hook_nids++], HOOK_NAME_MAX + 1, v, len);
		}
		if ((!strcmp(prev, "-device") || !strcmp(prev, "--device")) &&
		    hook_is_vfio_device(arg))
			hook_vfio = true;
		if (!strcmp(prev, "-name") || !strcmp(prev, "--name")) {
			v = strchr(arg, '=') ? hook_opt(arg, "guest", &len) : arg;
			if (v == arg)
				len = strcspn(arg, ",");
			if (v)
				gvm_label_sanitize(hook_guest_name, sizeof(hook_guest_name), v, len);
		}
		prev = arg;
	}
}

static void hook_resolve(void)
{
	if (!real_memfd_create)
		real_memfd_create = (int (*)(const char *, unsigned int))dlsym(RTLD_NEXT, "memfd_create");
	if (!real_mmap)
		real_mmap = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
	if (!real_mmap64)
		real_mmap64 = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap64");
	if (!real_mmap64)
		real_mmap64 = real_mmap;
	/* real_open last: the others are set once it is (the constructor
	 * gets here before QEMU has threads). */
	if (!real_open) {
		real_open64 = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
		real_openat = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
		real_openat64 = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat64");
		real_open_2 = (int (*)(const char *, int))dlsym(RTLD_NEXT, "__open_2");
		real_open64_2 = (int (*)(const char *, int))dlsym(RTLD_NEXT, "__open64_2");
		real_openat_2 = (int (*)(int, const char *, int))dlsym(RTLD_NEXT, "__openat_2");
		real_openat64_2 = (int (*)(int, const char *, int))dlsym(RTLD_NEXT, "__openat64_2");
		real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	}
}

__attribute__((constructor)) static void hook_init(void)
{
	enum gvm_log_level level = GVM_LOG_INFO;
	const char *lv = getenv("GVM_LOG_LEVEL");
	bool has_memfd;

	hook_resolve();

	if (lv && gvm_log_parse_level(lv, &level))
		level = GVM_LOG_INFO;
	gvm_log_init("gvm-qemu-hook", level);
	for (unsigned i = 0; i < HOOK_MAX_BACKENDS; i++)
		hook_backends[i].fd = -1;
	hook_read_cmdline(&has_memfd);
	if (hook_vfio)
		gvm_info("a vfio-pci device is on the command line: guest RAM is attached pinned "
			 "(VFIO pins it for DMA), so it all stays resident on this host and "
			 "remote memory saves nothing for this VM");
	if (!has_memfd)
		gvm_info("no memory-backend-memfd on the command line: QEMU's memory is left "
			 "alone and stays local (gvm-qemu adds one for a plain -m)");
}

/* gvm_detect_mode() once; it prints the mode and whether KVM or TCG. */
static enum gvm_mode hook_mode_get(void)
{
	if (!hook_mode_known) {
		hook_mode = gvm_detect_mode();
		hook_mode_known = true;
		if (hook_mode == GVM_MODE_FULL_SHARE)
			gvm_info("full-share mode: the GiantVM kernel shares guest memory; "
				 "the hook leaves it alone");
		else if (hook_mode == GVM_MODE_NONE)
			gvm_info("no broker: guest RAM stays local to this host");
	}
	return hook_mode;
}

EXPORT int memfd_create(const char *name, unsigned int flags)
{
	int fd;

	hook_resolve();
	if (!real_memfd_create) {
		errno = ENOSYS;
		return -1;
	}
	fd = real_memfd_create(name, flags);
	if (fd < 0 || !name || strcmp(name, HOOK_MEMFD_NAME))
		return fd;
	pthread_mutex_lock(&hook_lock);
	hook_created++;
	if (hook_mode_get() == GVM_MODE_MEMORY_ONLY) {
		unsigned i;

		for (i = 0; i < HOOK_MAX_BACKENDS && hook_backends[i].fd >= 0; i++)
			;
		if (i < HOOK_MAX_BACKENDS)
			hook_backends[i] = (struct hook_backend){ .fd = fd };
		else
			gvm_warn("more than %d memory-backend-memfd objects: the others stay local",
				 HOOK_MAX_BACKENDS);
	}
	pthread_mutex_unlock(&hook_lock);
	return fd;
}

static struct hook_backend *hook_find(int fd)
{
	for (unsigned i = 0; i < HOOK_MAX_BACKENDS; i++)
		if (hook_backends[i].fd == fd && !hook_backends[i].mapped)
			return &hook_backends[i];
	return NULL;
}

/* The memfd behind fd is still the one QEMU created (fd numbers get
 * reused once closed). */
static bool hook_is_memfd(int fd)
{
	char link[64], target[128];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return !strncmp(target, "/memfd:" HOOK_MEMFD_NAME, strlen("/memfd:" HOOK_MEMFD_NAME));
}

/* Attaches one mapping; false when QEMU must not get it (MEMORY_ONLY and
 * the broker refused). Called with hook_lock held. */
static bool hook_attach(struct hook_backend *b, void *addr, size_t len, off_t off)
{
	char vm[HOOK_VM_NAME_MAX + 1], region[HOOK_NAME_MAX + 1];
	const char *env = getenv("GVM_VM_NAME");
	unsigned idx = hook_created - 1;
	struct gvm_region r;
	int err;

	if (env && *env)
		gvm_label_sanitize(vm, sizeof(vm), env, strlen(env));
	else if (hook_guest_name[0])
		snprintf(vm, sizeof(vm), "%s", hook_guest_name);
	else
		snprintf(vm, sizeof(vm), "qemu-%d", (int)getpid());
	/* A second backend of the same VM is a VM of its own at the broker. */
	if (hook_attached > 0) {
		size_t l = strlen(vm);

		snprintf(vm + (l > HOOK_VM_NAME_MAX - 4 ? HOOK_VM_NAME_MAX - 4 : l), 5, ".%u",
			 hook_attached + 1);
	}
	if (idx < hook_nids && hook_ids[idx][0])
		snprintf(region, sizeof(region), "%s", hook_ids[idx]);
	else
		snprintf(region, sizeof(region), "ram%u", idx);
	r = (struct gvm_region){
		.name = region,
		.host_addr = addr,
		.size = len,
		.memfd = b->fd,
		.memfd_offset = (uint64_t)off,
		.guest_phys = 0, /* each backend is its own VM: its RAM starts at 0 */
	};
	/* (with flags of its own: the hook must know which RAM VFIO may use) */
	b->pinned = hook_vfio || gvm_env_flag("GVM_PINNED");
	b->session = gvm_attach_flags(NULL, vm, &r, 1, b->pinned ? GVM_ATTACH_PINNED : 0, &err);
	if (!b->session) {
		gvm_err("VM %s: the broker refused %s (%zu MiB): %s; QEMU cannot have this RAM",
			 vm, region, len >> 20, gvm_strerror(err));
		/* What QEMU prints after "unable to map backing store": a
		 * budget without room for a pinned VM is a lack of memory. */
		errno = -err == EEXIST ? EEXIST : -err == ENOSPC ? ENOMEM : EACCES;
		return false;
	}
	hook_attached++;
	if (b->pinned)
		gvm_info("VM %s: %s (%zu MiB) attached pinned (%s): the broker keeps all of it "
			 "resident on this host for device DMA",
			 vm, region, len >> 20,
			 hook_vfio ? "a vfio-pci device on the command line" : "GVM_PINNED");
	else
		gvm_info("VM %s: %s (%zu MiB) attached; its pages are served by gvm-broker from "
			 "the donors",
			 vm, region, len >> 20);
	return true;
}

static void *hook_mmap(void *(*real)(void *, size_t, int, int, int, off_t), void *addr,
		       size_t len, int prot, int flags, int fd, off_t off)
{
	struct hook_backend *b;
	void *p;

	if (!real) {
		errno = ENOSYS;
		return MAP_FAILED;
	}
	p = real(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED || fd < 0 || (flags & MAP_ANONYMOUS))
		return p;
	pthread_mutex_lock(&hook_lock);
	b = hook_find(fd);
	if (b && !hook_is_memfd(fd)) {
		b->fd = -1; /* closed and reused for something else */
		b = NULL;
	}
	if (b) {
		b->mapped = true;
		if ((flags & MAP_TYPE) != MAP_SHARED) {
			gvm_warn("memory-backend-memfd without share=on is a private copy the broker "
				 "cannot serve: it stays local (add share=on)");
		} else if (!hook_attach(b, p, len, off)) {
			int e = errno;

			munmap(p, len);
			pthread_mutex_unlock(&hook_lock);
			errno = e;
			return MAP_FAILED;
		}
	}
	pthread_mutex_unlock(&hook_lock);
	return p;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	hook_resolve();
	return hook_mmap(real_mmap, addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	hook_resolve();
	return hook_mmap(real_mmap64, addr, len, prot, flags, fd, off);
}

/* VFIO (and iommufd) would pin guest RAM for DMA. Refuses when some of the
 * attached RAM is not pinned, so the broker may evict pages the device
 * still reads and writes: true with errno EPERM. */
static bool hook_dma_refused(const char *path)
{
	bool unpinned = false;

	/* Checked before the lock: libgvmmem opens files while hook_attach
	 * holds it. */
	if (!path || (strncmp(path, HOOK_VFIO_DIR, strlen(HOOK_VFIO_DIR)) &&
		      strcmp(path, HOOK_IOMMUFD)))
		return false;
	pthread_mutex_lock(&hook_lock);
	for (unsigned i = 0; i < HOOK_MAX_BACKENDS; i++)
		if (hook_backends[i].session && !hook_backends[i].pinned)
			unpinned = true;
	pthread_mutex_unlock(&hook_lock);
	if (!unpinned)
		return false;
	gvm_err("refusing to open %s: VFIO would pin guest RAM the broker may evict (the device "
		"and the guest would silently disagree); start the VM with gvm-qemu --pinned / "
		"GVM_PINNED=1 (or with a vfio-pci device on the command line)",
		path);
	errno = EPERM;
	return true;
}

/* The mode argument is there only with O_CREAT or O_TMPFILE (glibc's
 * __OPEN_NEEDS_MODE); reading it otherwise reads garbage. */
#define HOOK_OPEN_MODE(flags, mode)                                                      \
	do {                                                                             \
		if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) {         \
			va_list ap;                                                      \
                                                                                         \
			va_start(ap, flags);                                             \
			mode = va_arg(ap, mode_t);                                       \
			va_end(ap);                                                      \
		}                                                                        \
	} while (0)

/* Calls the real function, or fails with ENOSYS when there is none. */
#define HOOK_CALL(fn, ...) ((fn) ? (fn)(__VA_ARGS__) : (errno = ENOSYS, -1))

EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	HOOK_OPEN_MODE(flags, mode);
	hook_resolve();
	if (hook_dma_refused(path))
		return -1;
	return HOOK_CALL(real_open, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;

	HOOK_OPEN_MODE(flags, mode);
	hook_resolve();
	if (hook_dma_refused(path))
		return -1;
	return HOOK_CALL(real_open64, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	HOOK_OPEN_MODE(flags, mode);
	hook_resolve();
	if (hook_dma_refused(path))
		return -1;
	return HOOK_CALL(real_openat, dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	HOOK_OPEN_MODE(flags, mode);
	hook_resolve();
	if (hook_dma_refused(path))
		return -1;
	return HOOK_CALL(real_openat64, dirfd, path, flags, mode);
}

/* _FORTIFY_SOURCE's versions, which programs built with it (Debian's QEMU
 * imports __open64_2) call for a two-argument open with flags the compiler
 * cannot see. */
EXPORT int __open_2(const char *path, int flags)
{
	hook_resolve();
	if (hook_dma_refused(path))
		return -1;
	return HOOK_CALL(real_open_2, path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	hook_resolve();
	if (hook_dma_refused(path))
		return -1;
	return HOOK_CALL(real_open64_2, path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	hook_resolve();
	if (hook_dma_refused(path))
		return -1;
	return HOOK_CALL(real_openat_2, dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	hook_resolve();
	if (hook_dma_refused(path))
		return -1;
	return HOOK_CALL(real_openat64_2, dirfd, path, flags);
}
