/* hook.c: libgvm-qemu-hook.so, an LD_PRELOAD library that puts the guest
 * RAM of an unmodified QEMU under gvm-broker.
 *
 * QEMU's memory-backend-memfd creates its RAM with
 * memfd_create("memory-backend-memfd", ...) and then maps it, shared when
 * share=on. The hook wraps memfd_create() to remember those fds and mmap()
 * to see where they land; a shared mapping of one is attached with
 * gvm_attach(), so every first touch from then on is a fault the broker
 * serves from the donors. Nothing else QEMU maps is touched.
 *
 * The mode is the seeds' dual-mode choice, gvm_detect_mode(), taken once:
 * FULL_SHARE (GiantVM kernel) leaves memory to the kernel, MEMORY_ONLY
 * attaches, NONE runs on local RAM and says so once. When the broker
 * answered but refuses the RAM, mmap() fails and QEMU stops with its own
 * "unable to map backing store" plus the broker's reason above it: a VM
 * that was meant to live on the donors must not silently fill the host.
 *
 * Environment (gvm-qemu sets the first two from its flags):
 *   GVM_ENDPOINT   broker socket or device (default as in gvmmem.h)
 *   GVM_VM_NAME    name of the VM at the broker (default: QEMU's -name
 *                  guest name, else qemu-PID)
 *   GVM_LOG_LEVEL  error|warn|info|debug (default info)
 *   GVM_MODE, GVM_SYSROOT, GVM_VM_LIMIT   as libgvmmem reads them */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gvmmem.h"
#include "log.h"
#include "names.h"

#define HOOK_MEMFD_NAME "memory-backend-memfd" /* QEMU's TYPE_MEMORY_BACKEND_MEMFD */
#define HOOK_MAX_BACKENDS 16
#define HOOK_NAME_MAX GVM_REGION_NAME_MAX_BYTES /* names.h's rules, which the broker's are */
#define HOOK_VM_NAME_MAX GVM_VM_NAME_MAX_BYTES

#define EXPORT __attribute__((visibility("default")))

struct hook_backend {
	int fd;     /* the memfd QEMU created, -1 when the slot is free */
	bool mapped; /* attached (or deliberately left alone) already */
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

static int (*real_memfd_create)(const char *, unsigned int);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *(*real_mmap64)(void *, size_t, int, int, int, off_t);

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

/* Reads the ids of memory-backend-memfd objects and the guest name from
 * QEMU's command line. */
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
	b->session = gvm_attach(NULL, vm, &r, 1, &err);
	if (!b->session) {
		gvm_err("VM %s: the broker refused %s (%zu MiB): %s; QEMU cannot have this RAM",
			 vm, region, len >> 20, gvm_strerror(err));
		errno = -err == EEXIST ? EEXIST : EACCES;
		return false;
	}
	hook_attached++;
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
