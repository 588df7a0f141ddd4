/* sandbox.c: the broker's seccomp allowlist (DESIGN.md, Hardening), loaded
 * by main.c once the socket, the device and the donor pool exist. Only the
 * system calls the running broker makes are allowed: its event loop, the
 * control socket, the fault path (ioctl limited to the UFFDIO_* and FIONBIO
 * /FIOCLEX commands it issues), eviction (pread, fallocate), reconnecting
 * to donors (socket for AF_INET/AF_INET6/AF_UNIX, connect), opening
 * existing files read or read-write (/dev/userfaultfd, /proc/PID/maps).
 * Anything else fails with EPERM; exec, fork, ptrace, file creation and
 * the like are among them. All threads get it (TSYNC). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const int allowed[] = {
	/* event loop, descriptors, memory, time, signals, exit */
	SCMP_SYS(read), SCMP_SYS(readv), SCMP_SYS(write), SCMP_SYS(writev),
	SCMP_SYS(pread64), SCMP_SYS(close), SCMP_SYS(lseek), SCMP_SYS(fstat),
	SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fcntl), SCMP_SYS(dup),
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
	SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(eventfd2), SCMP_SYS(pipe2),
	SCMP_SYS(brk), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap),
	SCMP_SYS(mprotect), SCMP_SYS(madvise), SCMP_SYS(futex),
	SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(nanosleep),
	SCMP_SYS(clock_nanosleep), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid),
	SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(getrandom),
	SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction),
	SCMP_SYS(sched_yield), SCMP_SYS(restart_syscall), SCMP_SYS(exit),
	SCMP_SYS(exit_group), SCMP_SYS(tgkill), SCMP_SYS(getpeername), SCMP_SYS(getsockname),
	/* control socket: clients, their descriptors, SO_PEERCRED */
	SCMP_SYS(accept4), SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(sendto),
	SCMP_SYS(recvfrom), SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(shutdown),
	/* donors: reconnecting; notify socket */
	SCMP_SYS(connect),
	/* attach validation: /proc/self/fd/N, /proc/PID/maps, /proc/PID/task */
	SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(access), SCMP_SYS(faccessat),
	SCMP_SYS(faccessat2),
	/* eviction: dropping pages from guest memfds */
	SCMP_SYS(fallocate),
	/* shutdown: the control socket's file */
	SCMP_SYS(unlink),
};

/* The ioctls the broker issues: uffd setup and fault service, libuv's. */
static const unsigned long allowed_ioctls[] = {
	UFFDIO_API,  UFFDIO_REGISTER, UFFDIO_UNREGISTER,   UFFDIO_COPY, UFFDIO_ZEROPAGE,
	UFFDIO_WAKE, FIONBIO,	      FIOCLEX,		   FIONCLEX,
#ifdef UFFDIO_WRITEPROTECT
	UFFDIO_WRITEPROTECT,
#endif
};

#ifdef GVM_SANITIZED
/* The test build only (make check, ASan+LSan): what the sanitizer runtime
 * itself needs, its leak check at exit stopping threads with ptrace
 * among them. The release build never allows these; test_sandbox checks
 * the release build. */
static const int sanitizer_extra[] = {
	SCMP_SYS(sigaltstack), SCMP_SYS(clone), SCMP_SYS(clone3), SCMP_SYS(ptrace),
	SCMP_SYS(wait4), SCMP_SYS(prctl), SCMP_SYS(sched_getaffinity), SCMP_SYS(getdents64),
	SCMP_SYS(getppid), SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(kill),
	SCMP_SYS(getdents), SCMP_SYS(waitid), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(sched_setaffinity),
	SCMP_SYS(mincore), SCMP_SYS(dup2), SCMP_SYS(dup3), SCMP_SYS(uname),
};
#endif

static const int allowed_domains[] = { AF_UNIX, AF_INET, AF_INET6 };

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
#endif
	/* The command is an unsigned int in the kernel: compare the low 32 bits. */
	for (size_t i = 0; !err && i < sizeof(allowed_ioctls) / sizeof(allowed_ioctls[0]); i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				       SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
					       allowed_ioctls[i] & 0xffffffffu));
	for (size_t i = 0; !err && i < sizeof(allowed_domains) / sizeof(allowed_domains[0]); i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				       SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)allowed_domains[i]));
	/* Existing files only: no O_CREAT, O_TRUNC, O_TMPFILE, O_APPEND. */
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ,
					       O_CREAT | O_TRUNC | O_APPEND | (__O_TMPFILE & ~O_DIRECTORY), 0));
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(open), 1,
				       SCMP_A1(SCMP_CMP_MASKED_EQ,
					       O_CREAT | O_TRUNC | O_APPEND | (__O_TMPFILE & ~O_DIRECTORY), 0));
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
