/* sandbox.c: the broker's confinement (DESIGN.md, Hardening), applied by
 * main.c once the socket, the device, /dev/userfaultfd, the state
 * directory and the donor pool are open: from then on the broker needs no
 * file by path and no privilege.
 *
 * bk_sandbox_confine drops every capability (bounding, ambient, effective,
 * permitted, inheritable) and, where the kernel has Landlock, forbids
 * opening, creating or removing any file by path, allows TCP connections
 * to the donors' ports only, and signals to itself only (the log says
 * which of these are in force). bk_sandbox_load then loads the seccomp
 * allowlist into every thread (TSYNC): the event loop, the control socket,
 * the fault path (ioctl limited to the UFFDIO_* commands it issues and
 * libuv's FIONBIO), eviction (pread, fallocate), reconnecting to donors
 * (TCP sockets, connect); no open(2) at all but read-only openat(2) in
 * the donors file's directory (SIGHUP re-reads the file), no exec, fork,
 * ptrace, bind, unlink, and tgkill only of its own threads. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd_compat.h"

/* UFFDIO_CONTINUE (Linux 5.13): the fault path installs a page already in
 * the guest's memfd by mapping it. Value from uapi/linux/userfaultfd.h,
 * for headers that lack it. */
#ifndef UFFDIO_CONTINUE
#define UFFDIO_CONTINUE _IOWR(UFFDIO, 0x07, struct uffdio_continue)
struct uffdio_continue {
	struct uffdio_range range;
	__u64 mode;
	__s64 mapped;
};
#endif

/* Landlock beyond what Debian 12's headers know (linux/landlock.h of 6.1). */
#define LL_FS_TRUNCATE (1ull << 14)      /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ull << 15)     /* ABI 5 */
#define LL_NET_BIND_TCP (1ull << 0)      /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ull << 1)   /* ABI 4 */
#define LL_SCOPE_SIGNAL (1ull << 1)      /* ABI 6 */
#define LL_RULE_NET_PORT 2

struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net; /* ABI 4 */
	uint64_t scoped;             /* ABI 6 */
};

struct ll_net_port_attr {
	uint64_t allowed_access;
	uint64_t port;
} __attribute__((packed));

static const int allowed[] = {
	/* event loop, descriptors, memory, time, signals, exit */
	SCMP_SYS(read), SCMP_SYS(readv), SCMP_SYS(write), SCMP_SYS(writev),
	SCMP_SYS(pread64), SCMP_SYS(close), SCMP_SYS(lseek), SCMP_SYS(fstat),
	SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fstatfs), SCMP_SYS(fcntl), SCMP_SYS(dup),
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
	SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(eventfd2), SCMP_SYS(pipe2),
	SCMP_SYS(brk), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap),
	SCMP_SYS(mprotect), SCMP_SYS(madvise), SCMP_SYS(futex),
	SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(nanosleep),
	SCMP_SYS(clock_nanosleep), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid),
	SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(getrandom),
	SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction),
	SCMP_SYS(sched_yield), SCMP_SYS(restart_syscall), SCMP_SYS(exit),
	SCMP_SYS(exit_group), SCMP_SYS(getpeername), SCMP_SYS(getsockname),
	/* control socket: clients, their descriptors, SO_PEERCRED/SO_PEERGROUPS */
	SCMP_SYS(accept4), SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(sendto),
	SCMP_SYS(recvfrom), SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(shutdown),
	/* donors: reconnecting (Landlock, where present, allows their ports only) */
	SCMP_SYS(connect),
	/* attach checks: /proc/self/fd/N links, /proc/PID/task/TID of a token */
	SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(access), SCMP_SYS(faccessat),
	SCMP_SYS(faccessat2),
	/* a VM process's exit: a pidfd when the socket cannot give one */
	SCMP_SYS(pidfd_open),
	/* eviction: dropping pages from guest memfds */
	SCMP_SYS(fallocate),
};

/* The ioctls the broker issues, and no other: uffd setup (attach.c), the
 * page installs (uffd.c), and libuv's FIONBIO (uv_poll_init; libuv 1.44
 * sets close-on-exec with fcntl, not FIOCLEX). Never UFFDIO_ZEROPAGE (zero
 * pages are copied) nor UFFDIO_UNREGISTER (a VM's ranges go with its uffd). */
static const unsigned long allowed_ioctls[] = {
	UFFDIO_API, UFFDIO_REGISTER, UFFDIO_COPY, UFFDIO_CONTINUE, UFFDIO_WAKE,
	UFFDIO_WRITEPROTECT, UFFDIO_POISON, FIONBIO,
};

#ifdef GVM_SANITIZED
/* The test build only (make check, ASan+LSan): what the sanitizer runtime
 * itself needs, its leak check at exit stopping threads with ptrace and
 * reading /proc/self/maps among them. The release build never allows
 * these; test_sandbox checks the release build. */
static const int sanitizer_extra[] = {
	SCMP_SYS(sigaltstack), SCMP_SYS(clone), SCMP_SYS(clone3), SCMP_SYS(ptrace),
	SCMP_SYS(wait4), SCMP_SYS(prctl), SCMP_SYS(sched_getaffinity), SCMP_SYS(getdents64),
	SCMP_SYS(getppid), SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(kill),
	SCMP_SYS(getdents), SCMP_SYS(waitid), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(sched_setaffinity),
	SCMP_SYS(mincore), SCMP_SYS(dup2), SCMP_SYS(dup3), SCMP_SYS(uname), SCMP_SYS(openat),
	SCMP_SYS(open), SCMP_SYS(tgkill),
};
#define SANDBOX_READ_PROC 1 /* Landlock lets the sanitizer read /proc */
#else
#define SANDBOX_READ_PROC 0
#endif

static const int allowed_domains[] = { AF_INET, AF_INET6 };

/* What the sandbox allows beyond the fixed lists (set by confine). */
static int read_dirfd = -1;
static int state_dirfd = -1;
static uint16_t *net_ports;
static unsigned net_nports;
static bool net_confined;

bool bk_sandbox_port_allowed(uint16_t port)
{
	for (unsigned i = 0; i < net_nports; i++)
		if (net_ports[i] == port)
			return true;
	return !net_confined;
}

static int build(scmp_filter_ctx *out)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	int err = 0;

	if (!ctx)
		return -ENOMEM;
	err = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	for (size_t i = 0; !err && i < sizeof(allowed) / sizeof(allowed[0]); i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
#ifdef GVM_SANITIZED
	for (size_t i = 0; !err && i < sizeof(sanitizer_extra) / sizeof(sanitizer_extra[0]); i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sanitizer_extra[i], 0);
#else
	/* Signals to its own threads only (abort() raises with tgkill). */
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
				       SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
#endif
	/* The command is an unsigned int in the kernel: compare the low 32 bits. */
	for (size_t i = 0; !err && i < sizeof(allowed_ioctls) / sizeof(allowed_ioctls[0]); i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				       SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
					       allowed_ioctls[i] & 0xffffffffu));
	/* TCP sockets for the donors; nothing else (no UDP, raw, packet, unix). */
	for (size_t i = 0; !err && i < sizeof(allowed_domains) / sizeof(allowed_domains[0]); i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2,
				       SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)allowed_domains[i]),
				       SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM));
	/* Its own open-file limit, read (never set) after a reload. */
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 2,
				       SCMP_A0(SCMP_CMP_EQ, 0), SCMP_A2(SCMP_CMP_EQ, 0));
	/* The donors file, read again on SIGHUP: read-only, relative to its
	 * directory's descriptor (Landlock keeps it beneath that directory). */
	if (!err && read_dirfd >= 0)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 2,
				       SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)read_dirfd),
				       SCMP_A2(SCMP_CMP_MASKED_EQ, (scmp_datum_t)~0u,
					       (scmp_datum_t)(O_RDONLY | O_CLOEXEC)));
	/* The page seals' files (seal.c): opened, made and removed relative
	 * to their directory's descriptor (Landlock keeps them beneath it). */
	if (!err && state_dirfd >= 0)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				       SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)state_dirfd));
	if (!err && state_dirfd >= 0)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(unlinkat), 1,
				       SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)state_dirfd));
	if (!err && state_dirfd >= 0)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ftruncate), 0);
	if (err) {
		seccomp_release(ctx);
		return err;
	}
	*out = ctx;
	return 0;
}

int bk_sandbox_load(char *why, size_t n)
{
	scmp_filter_ctx ctx;
	int err = build(&ctx);

	if (!err) {
		err = seccomp_load(ctx);
		seccomp_release(ctx);
	}
	if (err)
		snprintf(why, n, "cannot load the seccomp filter: %s", strerror(-err));
	return err;
}

int bk_sandbox_print(int fd)
{
	scmp_filter_ctx ctx;
	int err = build(&ctx);

	if (err)
		return err;
	err = seccomp_export_pfc(ctx, fd);
	seccomp_release(ctx);
	return err;
}

/* Every capability gone, for good: root's uid stays, its privileges do
 * not. 0 or -errno. */
static int drop_capabilities(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EPERM)
			return -errno;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -errno;
	memset(data, 0, sizeof(data));
	return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

static int ll_abi(void)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

	return abi < 0 ? -errno : (int)abi;
}

/* Landlock for this thread and the threads it makes from now on: no file
 * by path (read /proc only in the sanitizer build), TCP connect to ports
 * only, signals to this process only. Appends what is in force to what. */
static int landlock(const uint16_t *ports, unsigned nports, int dirfd, const char *dir,
		    int sdirfd, char *what, size_t n)
{
	struct ll_ruleset_attr attr = { 0 };
	size_t attr_size = sizeof(attr.handled_access_fs), len = strlen(what);
	int abi = ll_abi(), fd, err = 0;

	if (abi < 1) {
		snprintf(what + len, n - len, "; no Landlock in this kernel (%s): files and ports are "
			 "limited by seccomp alone", strerror(-abi));
		return 0;
	}
	attr.handled_access_fs = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;
	if (abi >= 2)
		attr.handled_access_fs |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		attr.handled_access_fs |= LL_FS_TRUNCATE;
	if (abi >= 5)
		attr.handled_access_fs |= LL_FS_IOCTL_DEV;
	if (abi >= 4) {
		attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
		attr_size = offsetof(struct ll_ruleset_attr, scoped);
	}
	if (abi >= 6) {
		attr.scoped = LL_SCOPE_SIGNAL;
		attr_size = sizeof(attr);
	}
	fd = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
	if (fd < 0)
		return -errno;
	for (unsigned i = 0; abi >= 4 && i < nports && !err; i++) {
		struct ll_net_port_attr p = { LL_NET_CONNECT_TCP, ports[i] };

		if (syscall(SYS_landlock_add_rule, fd, LL_RULE_NET_PORT, &p, 0) < 0)
			err = -errno;
	}
	if (dirfd >= 0 && !err) {
		struct landlock_path_beneath_attr pb = { LANDLOCK_ACCESS_FS_READ_FILE, dirfd };

		if (syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
			err = -errno;
	}
	if (sdirfd >= 0 && !err) {
		struct landlock_path_beneath_attr pb = {
			LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |
				LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_REMOVE_FILE |
				(abi >= 3 ? LL_FS_TRUNCATE : 0),
			sdirfd
		};

		if (syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
			err = -errno;
	}
	if (SANDBOX_READ_PROC && !err) {
		struct landlock_path_beneath_attr pb = {
			LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR, -1
		};

		pb.parent_fd = open("/proc", O_PATH | O_CLOEXEC);
		if (pb.parent_fd < 0 ||
		    syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
			err = -errno;
		if (pb.parent_fd >= 0)
			close(pb.parent_fd);
	}
	if (!err && syscall(SYS_landlock_restrict_self, fd, 0) < 0)
		err = -errno;
	close(fd);
	if (err)
		return err;
	len = strlen(what);
	len += (size_t)snprintf(what + len, n - len, "; Landlock ABI %d: no file opened by path%s", abi,
				SANDBOX_READ_PROC ? " but /proc (sanitizer build)" : "");
	if (dirfd >= 0)
		len += (size_t)snprintf(what + len, n - len, ", files beneath %s read-only", dir);
	if (sdirfd >= 0)
		len += (size_t)snprintf(what + len, n - len, ", page-seal files in the state "
					"directory's %s/", "pages");
	net_confined = abi >= 4;
	if (abi >= 4) {
		len += (size_t)snprintf(what + len, n - len, ", TCP connect to port%s",
					nports == 1 ? "" : "s");
		for (unsigned i = 0, k; i < nports && len < n; i = k) {
			for (k = i + 1; k < nports && ports[k] == ports[k - 1] + 1;)
				k++; /* a run of consecutive ports reads FIRST-LAST */
			len += (size_t)snprintf(what + len, n - len, "%s%u", i ? "," : " ", ports[i]);
			if (k - i > 1 && len < n)
				len += (size_t)snprintf(what + len, n - len, "-%u", ports[k - 1]);
		}
		len += (size_t)snprintf(what + len, n - len, " only");
	} else {
		len += (size_t)snprintf(what + len, n - len, ", TCP connect anywhere (ABI < 4)");
	}
	if (abi >= 6 && len < n)
		snprintf(what + len, n - len, ", signals to itself only");
	return 0;
}

int bk_sandbox_confine(const uint16_t *ports, unsigned nports, int dirfd, const char *dir,
		       int sdirfd, char *what, size_t wn, char *why, size_t n)
{
	int err;

	net_ports = malloc(nports * sizeof(*ports) + 1);
	if (!net_ports) {
		snprintf(why, n, "out of memory for the sandbox's %u ports", nports);
		return -ENOMEM;
	}
	memcpy(net_ports, ports, nports * sizeof(*ports));
	net_nports = nports;
	read_dirfd = dirfd;
	state_dirfd = sdirfd;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		err = -errno;
		snprintf(why, n, "PR_SET_NO_NEW_PRIVS: %s", strerror(-err));
		goto fail;
	}
	err = drop_capabilities();
	if (err) {
		snprintf(why, n, "cannot drop capabilities: %s", strerror(-err));
		goto fail;
	}
	snprintf(what, wn, "no capabilities");
	err = landlock(ports, nports, dirfd, dir, sdirfd, what, wn);
	if (err) {
		snprintf(why, n, "cannot apply Landlock: %s", strerror(-err));
		goto fail;
	}
	return 0;
fail: /* (privileges dropped stay dropped: the broker does not go on) */
	free(net_ports);
	net_ports = NULL;
	net_nports = 0;
	read_dirfd = -1;
	state_dirfd = -1;
	return err;
}
