/* cuse_client.c: the guest side of test_cuse_vm (tests/vm/init runs it in
 * a Debian kernel under QEMU, where CUSE exists). Each mode drops to the
 * given uid/gid first and prints one marker line the host greps:
 *
 *   attach UID GID GVM_GID MIB  open /dev/gvmmem, VERSION, read() status,
 *                               gvm_attach through the device, write and
 *                               read back MIB of pages under the broker's
 *                               budget, STATS (the frozen v1 struct):
 *                               "GVM-CUSE attach OK ..."
 *   denied UID GID SOCKET       open /dev/gvmmem and connecting to the
 *                               socket must both fail with EACCES
 *   token UID GID GVM_GID       a token works once, only for its own
 *                               process, and a Hello without one is refused
 *   flood UID GID GVM_GID       asks for tokens 50 times: the first
 *                               BK_TOKENS_PER_UID (8) come, the rest are
 *                               refused with EDQUOT (the tokens stay live:
 *                               another user attaching next must not notice)
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "gvm_proto.h"
#include "gvmmem.h"
#include "gvmmem_ioctl.h"
#include "pattern.h"

#define DEV "/dev/gvmmem"

static int fail(const char *mode, const char *what)
{
	int e = errno;
	gid_t g[8];
	int ng = getgroups(8, g);

	printf("GVM-CUSE %s FAIL %s (errno %s; uid %d gid %d groups %d:%d)\n", mode, what,
	       strerror(e), (int)getuid(), (int)getgid(), ng, ng > 0 ? (int)g[0] : -1);
	return 1;
}

static void become(uid_t uid, gid_t gid, gid_t extra)
{
	gid_t groups[1] = { extra };

	if (setgroups(extra ? 1 : 0, groups) || setgid(gid) || setuid(uid)) {
		perror("become");
		exit(3);
	}
}

static int mode_attach(size_t mib)
{
	struct gvmmem_version v;
	struct gvmmem_stats st;
	struct gvm_session *s;
	struct gvm_region r;
	size_t size = mib << 20, pages = size / 4096, bad = 0;
	char status[4096];
	ssize_t n;
	uint8_t *mem;
	int fd, memfd, err;

	fd = open(DEV, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("attach", "open " DEV);
	if (ioctl(fd, GVMMEM_IOC_VERSION, &v) < 0)
		return fail("attach", "GVMMEM_IOC_VERSION");
	n = read(fd, status, sizeof(status) - 1);
	if (n <= 0)
		return fail("attach", "read status");
	status[n] = '\0';
	printf("GVM-CUSE version ioctl=%u protocol=%u page=%u extent=%u\n", v.ioctl_version,
	       v.protocol_version, v.page_size, v.extent_pages);
	/* The status must be gvmctl's "key: value" lines, counters newer than
	 * the ioctl's frozen v1 struct included. */
	if (!strstr(status, "vms: ") || !strstr(status, "fault_latency_p99_us: ") ||
	    !strstr(status, "alloc_failures: ") || !strstr(status, "install_continue: "))
		return fail("attach", "status text lacks keys");
	printf("GVM-CUSE status OK bytes=%zd\n", n);
	close(fd);

	memfd = memfd_create("cuse-vm", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)size) < 0)
		return fail("attach", "memfd");
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (mem == MAP_FAILED)
		return fail("attach", "mmap");
	r = (struct gvm_region){ "ram", mem, size, memfd, 0, 0 };
	s = gvm_attach(DEV, "cuse-vm", &r, 1, &err);
	if (!s) {
		printf("GVM-CUSE attach FAIL gvm_attach: %s\n", gvm_strerror(err));
		return 1;
	}
	for (size_t i = 0; i < pages; i++)
		gvm_pattern_fill_page(mem + i * 4096, 77, i, 16);
	/* Read back in another order than written: most pages come from the
	 * donors by now. */
	for (size_t k = 0; k < pages; k++) {
		size_t i = (k * 7919) % pages;
		uint8_t want[4096];

		gvm_pattern_fill_page(want, 77, i, 16);
		bad += memcmp(mem + i * 4096, want, 4096) != 0;
	}
	fd = open(DEV, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, GVMMEM_IOC_STATS, &st) < 0)
		return fail("attach", "GVMMEM_IOC_STATS");
	close(fd);
	printf("GVM-CUSE stats vms=%" PRIu64 " faults=%" PRIu64 " evictions=%" PRIu64
	       " writebacks=%" PRIu64 " remote_reads=%" PRIu64 "\n",
	       st.vms, st.faults, st.evictions, st.writebacks, st.remote_reads);
	gvm_detach(s);
	if (bad || st.vms != 1 || !st.faults || !st.evictions || !st.writebacks ||
	    !st.remote_reads) {
		printf("GVM-CUSE attach FAIL bad_pages=%zu\n", bad);
		return 1;
	}
	printf("GVM-CUSE attach OK pages=%zu bad=0 evictions=%" PRIu64 "\n", pages, st.evictions);
	return 0;
}

/* A user outside group gvm: neither the device nor the socket. */
static int mode_denied(const char *socket_path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = open(DEV, O_RDWR | O_CLOEXEC), s;

	if (fd >= 0 || errno != EACCES) {
		printf("GVM-CUSE denied FAIL open gave %s\n", fd >= 0 ? "a descriptor" : strerror(errno));
		return 1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno != EACCES) {
		printf("GVM-CUSE denied FAIL the socket let uid %d connect\n", (int)getuid());
		return 1;
	}
	printf("GVM-CUSE denied OK open and connect: %s\n", strerror(errno));
	return 0;
}

/* Connects to the socket and sends Hello with the token (NULL: none):
 * 0 for Welcome, else the broker's -status, printing its reason. */
static int hello_with(const char *path, const uint8_t *token, const char *what)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	Gvm__Control m = GVM__CONTROL__INIT, *in = NULL;
	Gvm__Hello h = GVM__HELLO__INIT;
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), fds[2], nfds = 0, err;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	h.version = GVM_CTL_VERSION;
	h.vm_name = (char *)"token-vm";
	if (token) {
		h.token.data = (uint8_t *)token;
		h.token.len = GVMMEM_TOKEN_BYTES;
	}
	m.msg_case = GVM__CONTROL__MSG_HELLO;
	m.hello = &h;
	err = gvm_ctl_send(s, &m, NULL, 0);
	if (!err)
		err = gvm_ctl_recv(s, &in, fds, &nfds, 2);
	if (!err) {
		gvm_ctl_close_fds(fds, nfds);
		if (in->msg_case == GVM__CONTROL__MSG_WELCOME) {
			err = 0;
		} else if (in->msg_case == GVM__CONTROL__MSG_ERROR) {
			err = -in->error->status;
			printf("GVM-CUSE token %s: refused: %s\n", what, in->error->error);
		} else {
			err = -EBADMSG;
		}
		gvm__control__free_unpacked(in, NULL);
	}
	close(s);
	return err;
}

static int mode_token(void)
{
	struct gvmmem_hello h;
	int fd = open(DEV, O_RDWR | O_CLOEXEC), status, err;
	pid_t child;

	if (fd < 0 || ioctl(fd, GVMMEM_IOC_HELLO, &h) < 0)
		return fail("token", "GVMMEM_IOC_HELLO");
	if (hello_with(h.socket_path, h.token, "first use") != 0)
		return fail("token", "first use of a fresh token was refused");
	err = hello_with(h.socket_path, h.token, "second use");
	if (err != -EACCES) {
		printf("GVM-CUSE token FAIL second use gave %d\n", err);
		return 1;
	}
	/* A fresh token, presented by another process. */
	if (ioctl(fd, GVMMEM_IOC_HELLO, &h) < 0)
		return fail("token", "GVMMEM_IOC_HELLO again");
	child = fork();
	if (child == 0)
		_exit(hello_with(h.socket_path, h.token, "other pid") == -EACCES ? 0 : 1);
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status)) {
		printf("GVM-CUSE token FAIL another process's token was not refused\n");
		return 1;
	}
	/* That token is spent too: the parent cannot use it either. */
	if (hello_with(h.socket_path, h.token, "spent by the other pid") != -EACCES) {
		printf("GVM-CUSE token FAIL a token refused once worked later\n");
		return 1;
	}
	if (hello_with(h.socket_path, NULL, "no token") != -EACCES) {
		printf("GVM-CUSE token FAIL a Hello without a token was accepted\n");
		return 1;
	}
	close(fd);
	printf("GVM-CUSE token OK once, own pid only, required\n");
	return 0;
}

static int mode_flood(void)
{
	struct gvmmem_hello h;
	int fd = open(DEV, O_RDWR | O_CLOEXEC), got = 0, quota = 0, other = 0;

	if (fd < 0)
		return fail("flood", "open " DEV);
	for (int i = 0; i < 50; i++) {
		if (ioctl(fd, GVMMEM_IOC_HELLO, &h) == 0)
			got++;
		else if (errno == EDQUOT)
			quota++;
		else
			other++;
	}
	close(fd);
	printf("GVM-CUSE flood tokens=%d refused=%d other=%d\n", got, quota, other);
	if (got != 8 || quota != 42 || other)
		return fail("flood", "the token quota");
	printf("GVM-CUSE flood OK 8 tokens, then EDQUOT\n");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 6 && !strcmp(argv[1], "attach")) {
		become((uid_t)atoi(argv[2]), (gid_t)atoi(argv[3]), (gid_t)atoi(argv[4]));
		return mode_attach((size_t)atoi(argv[5]));
	}
	if (argc >= 5 && !strcmp(argv[1], "denied")) {
		become((uid_t)atoi(argv[2]), (gid_t)atoi(argv[3]), 0);
		return mode_denied(argv[4]);
	}
	if (argc >= 5 && !strcmp(argv[1], "token")) {
		become((uid_t)atoi(argv[2]), (gid_t)atoi(argv[3]), (gid_t)atoi(argv[4]));
		return mode_token();
	}
	if (argc >= 5 && !strcmp(argv[1], "flood")) {
		become((uid_t)atoi(argv[2]), (gid_t)atoi(argv[3]), (gid_t)atoi(argv[4]));
		return mode_flood();
	}
	fprintf(stderr, "usage: cuse_client attach UID GID GVM_GID MIB | denied UID GID SOCKET | "
			"token UID GID GVM_GID | flood UID GID GVM_GID\n");
	return 2;
}
