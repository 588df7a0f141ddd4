/* test_sandbox.c: the broker's seccomp allowlist (broker/sandbox.c). A
 * child process loads the very filter the broker loads and tries what the
 * broker must never do (exec, create files, ptrace, packet sockets, other
 * ioctls): each is refused with EPERM, while the calls the broker needs
 * still work. Then a real gvm-broker, sandboxed as it runs by default,
 * serves an unprivileged client's faults and evictions, and reports
 * Seccomp: 2; --no-sandbox turns it off and --print-seccomp shows it. And
 * the systemd side of the service: READY=1, WATCHDOG=1, STOPPING=1. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "gvmmem.h"
#include "pattern.h"
#include "procs.h"
#include "sandbox.h"

static uid_t test_uid;
static gid_t test_gid, gvm_gid;
static char key_path[512];

/* A TCP listener on a free loopback port: its port in *port. */
static int listen_tcp(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 4) ||
	    getsockname(s, (struct sockaddr *)&sa, &len))
		return -1;
	*port = ntohs(sa.sin_port);
	return s;
}

static int connect_tcp(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	if (s < 0)
		return -errno;
	rc = connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	close(s);
	return rc;
}

/* exit code: 0, or the number of the first check that failed */
static int sandboxed_child(const char *root_file)
{
	char why[256], what[1024], path[600];
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct caps[2];
	int uffd, s, donor, other, fd, dirfd, sdirfd;
	uint16_t donor_port, other_port;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_continue cont;
	struct uffdio_zeropage zero;

	/* Made before the sandbox, as the broker makes its descriptors. */
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	CHILD_CHECK(uffd >= 0, 12, "userfaultfd: %s", strerror(errno));
	donor = listen_tcp(&donor_port);
	other = listen_tcp(&other_port);
	CHILD_CHECK(donor >= 0 && other >= 0, 13, "listen: %s", strerror(errno));
	/* The donors file's directory, read again on SIGHUP. */
	snprintf(path, sizeof(path), "%s/donors-dir", gvmt_dir());
	mkdir(path, 0700);
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/donors");
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	CHILD_CHECK(fd >= 0 && write(fd, "127.0.0.1:7700\n", 15) == 15, 24, "write %s", path);
	close(fd);
	*strrchr(path, '/') = '\0';
	dirfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	CHILD_CHECK(dirfd >= 0, 24, "open %s: %s", path, strerror(errno));
	/* The page seals' folder (broker/seal.c): files made, written and
	 * removed there, by its descriptor. */
	snprintf(why, sizeof(why), "%s/pages-dir", gvmt_dir());
	mkdir(why, 0700);
	sdirfd = open(why, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHILD_CHECK(sdirfd >= 0, 33, "open %s: %s", why, strerror(errno));
	if (bk_sandbox_confine(&donor_port, 1, dirfd, path, sdirfd, what, sizeof(what), why,
			       sizeof(why))) {
		fprintf(stderr, "child: %s\n", why);
		return 1;
	}
	/* (capget is not in the allowlist: asked before it is loaded) */
	CHILD_CHECK(syscall(SYS_capget, &hdr, caps) == 0 && !caps[0].effective && !caps[0].permitted &&
			    !caps[1].effective && !caps[1].permitted && !caps[0].inheritable,
		    21, "capabilities left: %x", caps[0].effective);
	CHILD_CHECK(prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) == 0, 23,
		    "CAP_SYS_ADMIN is still in the bounding set");
	if (bk_sandbox_load(why, sizeof(why))) {
		fprintf(stderr, "child: %s\n", why);
		return 1;
	}
	fprintf(stderr, "child: sandbox: %s\n", what);
	CHILD_CHECK(execl("/bin/true", "true", (char *)NULL) < 0 && errno == EPERM, 2,
		    "execve was not refused");
	snprintf(path, sizeof(path), "%s/created-by-sandbox", gvmt_dir());
	CHILD_CHECK(open(path, O_CREAT | O_WRONLY, 0600) < 0 && errno == EPERM, 3,
		    "creating a file was not refused");
	CHILD_CHECK(access(path, F_OK) < 0, 4, "the file exists");
	CHILD_CHECK(ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 && errno == EPERM, 5,
		    "ptrace was not refused");
	CHILD_CHECK(socket(AF_PACKET, SOCK_RAW, 0) < 0 && errno == EPERM, 6,
		    "a packet socket was not refused");
	CHILD_CHECK(ioctl(0, TIOCSTI, "x") < 0 && errno == EPERM, 7, "TIOCSTI was not refused");
	CHILD_CHECK(fork() < 0 && errno == EPERM, 8, "fork was not refused");
	/* A root-owned file, existing: neither written nor read. */
	CHILD_CHECK(open(root_file, O_RDWR) < 0 && errno == EPERM, 14,
		    "a write-open of an existing root file was not refused");
	CHILD_CHECK(open(root_file, O_RDONLY) < 0, 15, "reading a root file was not refused");
	CHILD_CHECK(open("/etc/passwd", O_RDONLY) < 0, 16, "reading /etc/passwd was not refused");
	CHILD_CHECK(unlink(root_file) < 0 && errno == EPERM, 17, "unlink was not refused");
	CHILD_CHECK(socket(AF_UNIX, SOCK_STREAM, 0) < 0 && errno == EPERM, 18,
		    "a unix socket was not refused");
	CHILD_CHECK(socket(AF_INET, SOCK_DGRAM, 0) < 0 && errno == EPERM, 19,
		    "a UDP socket was not refused");
	CHILD_CHECK(syscall(SYS_tgkill, getppid(), getppid(), 0) < 0 && errno == EPERM, 20,
		    "a signal to another process was not refused");
	/* Landlock (ABI 4 and up, as here): TCP to the donor's port only. */
	CHILD_CHECK(connect_tcp(other_port) == -EACCES, 22,
		    "a connect to a port that is not a donor's was not refused");
	/* The donors file: read-only, by its directory's descriptor, and
	 * nothing outside that directory. */
	fd = openat(dirfd, "donors", O_RDONLY | O_CLOEXEC);
	CHILD_CHECK(fd >= 0 && read(fd, path, 15) == 15, 25, "reading the donors file was refused: %s",
		    strerror(errno));
	close(fd);
	CHILD_CHECK(openat(dirfd, "donors", O_RDWR | O_CLOEXEC) < 0 && errno == EPERM, 26,
		    "a write-open in the donors file's directory was not refused");
	CHILD_CHECK(openat(dirfd, "../root-only", O_RDONLY | O_CLOEXEC) < 0, 27,
		    "reading outside the donors file's directory was not refused");
	CHILD_CHECK(openat(AT_FDCWD, root_file, O_RDONLY | O_CLOEXEC) < 0 && errno == EPERM, 28,
		    "an openat by path was not refused");
	/* The page seals' folder: a file made, sized and removed there by its
	 * descriptor; nothing outside it, by path or by "..", nor a removal
	 * in the donors file's directory. */
	fd = openat(sdirfd, "seal", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	CHILD_CHECK(fd >= 0 && ftruncate(fd, 8192) == 0, 34, "making a seal file was refused: %s",
		    strerror(errno));
	close(fd);
	CHILD_CHECK(unlinkat(sdirfd, "seal", 0) == 0, 35, "removing a seal file was refused: %s",
		    strerror(errno));
	CHILD_CHECK(openat(sdirfd, "../root-only", O_RDONLY | O_CLOEXEC) < 0, 36,
		    "reading outside the seals' folder was not refused");
	CHILD_CHECK(openat(sdirfd, root_file, O_RDWR | O_CLOEXEC) < 0, 37,
		    "an absolute path by the seals' folder was not refused");
	CHILD_CHECK(openat(sdirfd, "../made-outside", O_RDWR | O_CREAT | O_CLOEXEC, 0600) < 0, 38,
		    "making a file outside the seals' folder was not refused");
	CHILD_CHECK(unlinkat(sdirfd, "../root-only", 0) < 0, 39,
		    "removing a file outside the seals' folder was not refused");
	CHILD_CHECK(unlinkat(dirfd, "donors", 0) < 0 && errno == EPERM, 40,
		    "removing the donors file was not refused");
	/* What the broker needs still works. */
	CHILD_CHECK(connect_tcp(donor_port) == 0, 9, "a connect to the donor was refused");
	CHILD_CHECK(ioctl(uffd, UFFDIO_API, &api) == 0, 11, "UFFDIO_API was refused: %s",
		    strerror(errno));
	/* The fault path's UFFDIO_CONTINUE passes the filter (the kernel then
	 * refuses the empty range); ioctls the broker never issues do not. */
	memset(&cont, 0, sizeof(cont));
	CHILD_CHECK(ioctl(uffd, UFFDIO_CONTINUE, &cont) < 0 && errno != EPERM, 29,
		    "UFFDIO_CONTINUE was refused by the filter");
	memset(&zero, 0, sizeof(zero));
	CHILD_CHECK(ioctl(uffd, UFFDIO_ZEROPAGE, &zero) < 0 && errno == EPERM, 30,
		    "UFFDIO_ZEROPAGE was not refused");
	CHILD_CHECK(ioctl(uffd, UFFDIO_UNREGISTER, &zero.range) < 0 && errno == EPERM, 31,
		    "UFFDIO_UNREGISTER was not refused");
	CHILD_CHECK(ioctl(uffd, FIOCLEX) < 0 && errno == EPERM, 32, "FIOCLEX was not refused");
	s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	CHILD_CHECK(s >= 0, 10, "an AF_INET6 TCP socket was refused: %s", strerror(errno));
	close(s);
	return 0;
}

static void test_filter_refuses_what_the_broker_never_does(void **state)
{
	char root_file[512];
	int status, fd;
	pid_t pid;

	(void)state;
	gvmt_path(root_file, sizeof(root_file), "root-only");
	fd = open(root_file, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "secret", 6), 6);
	close(fd);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(sandboxed_child(root_file));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The file is as it was. */
	fd = open(root_file, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, root_file, sizeof(root_file)), 6);
	close(fd);
}

/* A number from /proc/PID/status ("Seccomp:", "CapEff:" in hex...). */
static long long status_field(pid_t pid, const char *field, int base)
{
	char path[64], line[256];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field))) {
			v = strtoll(line + strlen(field), NULL, base);
			break;
		}
	fclose(f);
	return v;
}

static int seccomp_mode(pid_t pid)
{
	return (int)status_field(pid, "Seccomp:", 10);
}

/* A client of the sandboxed broker: 32 MiB under a 4 MiB budget, every
 * page written then checked, so faults, write-backs and re-reads all run
 * under the filter. */
static void client(const char *sock)
{
	size_t size = 32u << 20, pages = size / GVM_PAGE_SIZE, bad = 0;
	int memfd = memfd_create("sandbox", MFD_CLOEXEC), err;
	struct gvm_session *s;
	struct gvm_region r;
	uint8_t *mem, want[GVM_PAGE_SIZE];

	gvmt_become(test_uid, test_gid, gvm_gid);
	CHILD_CHECK(memfd >= 0 && ftruncate(memfd, (off_t)size) == 0, 20, "memfd");
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	CHILD_CHECK(mem != MAP_FAILED, 21, "mmap");
	r = (struct gvm_region){ "ram", mem, size, memfd, 0, 0 };
	s = gvm_attach(sock, "sandboxed", &r, 1, &err);
	CHILD_CHECK(s, 22, "gvm_attach: %s", gvm_strerror(err));
	for (size_t i = 0; i < pages; i++)
		gvm_pattern_fill_page(mem + i * GVM_PAGE_SIZE, 5, i, 8);
	for (size_t i = 0; i < pages; i++) {
		gvm_pattern_fill_page(want, 5, i, 8);
		bad += memcmp(mem + i * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
	}
	CHILD_CHECK(bad == 0, 23, "%zu pages differ", bad);
	gvm_detach(s);
	_exit(0);
}

/* The broker accepts on its socket before it loads the filter (binding
 * is not allowed after): wait for the log line that ends its start-up. */
static bool log_has(const char *path, const char *needle, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		if (gvmt_file_count(path, needle) > 0)
			return true;
		usleep(20 * 1000);
	}
	return false;
}

/* One donor and a broker on it, socket gvmt_dir()/name, broker args extra. */
static void pair_start(struct gvmt_proc *donor, struct gvmt_proc *broker, char *sock,
		       size_t n, const char *name, const char *const *extra)
{
	const char *donors[2];

	assert_true(gvmt_memserver_start(donor, key_path, NULL));
	donors[0] = donor->addr;
	donors[1] = NULL;
	gvmt_path(sock, n, name);
	assert_true(gvmt_broker_start(broker, key_path, sock, donors, extra));
}

/* client(sock) in a child, which must exit 0. */
static void run_client(const char *sock)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		client(sock);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_sandboxed_broker_serves_faults(void **state)
{
	struct gvmt_proc donor, broker;
	char sock[512];

	(void)state;
	pair_start(&donor, &broker, sock, sizeof(sock), "sandboxed.sock",
		   (const char *[]){ "--budget", "4M", NULL });
	assert_true(log_has(broker.log, "seccomp allowlist loaded", 5000));
	assert_int_equal(seccomp_mode(broker.pid), 2);
	/* Root's uid, no root privilege: every capability set empty. */
	assert_int_equal(status_field(broker.pid, "CapEff:", 16), 0);
	assert_int_equal(status_field(broker.pid, "CapPrm:", 16), 0);
	assert_int_equal(status_field(broker.pid, "CapBnd:", 16), 0);
	assert_int_equal(status_field(broker.pid, "NoNewPrivs:", 10), 1);
	assert_int_equal(gvmt_file_count(broker.log, "sandbox: no capabilities; Landlock ABI"), 1);
	run_client(sock);
	assert_true(gvmt_broker_stat(sock, "writebacks") > 0);
	assert_true(gvmt_broker_stat(sock, "remote_reads") > 0);
	assert_int_equal(gvmt_broker_stat(sock, "writeback_errors"), 0);
	/* Reconnecting to a restarted donor needs socket() and connect(): a
	 * second VM's evictions make the broker connect again. */
	assert_int_equal(gvmt_proc_stop(&donor, SIGKILL), 128 + SIGKILL);
	assert_true(gvmt_memserver_restart(&donor, key_path, NULL));
	run_client(sock);
	assert_int_equal(gvmt_broker_stat(sock, "writeback_errors"), 0);
	assert_true(gvmt_proc_alive(&broker));
	assert_int_equal(gvmt_proc_stop(&broker, SIGTERM), 0);
	assert_int_equal(gvmt_file_count(broker.log, "stopped cleanly"), 1);
	gvmt_proc_stop(&donor, SIGTERM);
}

static void test_no_sandbox_and_print_seccomp(void **state)
{
	struct gvmt_proc donor, broker;
	char sock[512], out[600], bin[512];

	(void)state;
	pair_start(&donor, &broker, sock, sizeof(sock), "unsandboxed.sock",
		   (const char *[]){ "--no-sandbox", NULL });
	assert_true(log_has(broker.log, "--no-sandbox: running with every privilege", 5000));
	assert_int_equal(seccomp_mode(broker.pid), 0);
	gvmt_proc_stop(&broker, SIGTERM);
	gvmt_proc_stop(&donor, SIGTERM);

	gvmt_path(out, sizeof(out), "filter.pfc");
	assert_int_equal(gvmt_run(out, (const char *[]){ gvmt_bin("gvm-broker", bin, sizeof(bin)),
							 "--print-seccomp", NULL }),
			 0);
	assert_true(gvmt_file_count(out, "action ALLOW") > 40);
	assert_true(gvmt_file_count(out, "if ($syscall == 16)") >= 1); /* ioctl, by command */
	assert_int_equal(gvmt_file_count(out, "if ($syscall == 59)"), 0); /* execve */
}

/* Under systemd (Type=notify) the broker says READY=1 once serving,
 * WATCHDOG=1 every WATCHDOG_USEC/2, and STOPPING=1 on SIGTERM, all sent
 * after the sandbox is on. */
static void test_broker_notifies_systemd(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct gvmt_proc donor, broker;
	char sock[512], msg[256], env[600];
	int s, ready = 0, watchdog = 0, stopping = 0;
	struct timeval tv = { 0, 200 * 1000 };

	(void)state;
	gvmt_path(sa.sun_path, sizeof(sa.sun_path), "notify.sock");
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	snprintf(env, sizeof(env), "%s", sa.sun_path);
	setenv("NOTIFY_SOCKET", env, 1);
	setenv("WATCHDOG_USEC", "100000", 1); /* a ping every 50 ms */
	pair_start(&donor, &broker, sock, sizeof(sock), "notified.sock", NULL);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	for (int i = 0; i < 40 && watchdog < 3; i++) {
		ssize_t n = recv(s, msg, sizeof(msg) - 1, 0);

		if (n <= 0)
			continue;
		msg[n] = '\0';
		ready += !strcmp(msg, "READY=1");
		watchdog += !strcmp(msg, "WATCHDOG=1") && ready; /* READY comes first */
	}
	assert_int_equal(ready, 1);
	assert_true(watchdog >= 3);
	kill(broker.pid, SIGTERM);
	for (int i = 0; i < 40 && !stopping; i++) {
		ssize_t n = recv(s, msg, sizeof(msg) - 1, 0);

		if (n > 0) {
			msg[n] = '\0';
			stopping = !strcmp(msg, "STOPPING=1");
		}
	}
	assert_true(stopping);
	assert_int_equal(gvmt_proc_stop(&broker, SIGTERM), 0);
	gvmt_proc_stop(&donor, SIGTERM);
	close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filter_refuses_what_the_broker_never_does),
		cmocka_unit_test(test_sandboxed_broker_serves_faults),
		cmocka_unit_test(test_no_sandbox_and_print_seccomp),
		cmocka_unit_test(test_broker_notifies_systemd),
	};

	if (!gvmt_test_user(&test_uid, &test_gid, &gvm_gid)) {
		fprintf(stderr, "needs root (an unprivileged client user)\n");
		return 1;
	}
	chmod(gvmt_dir(), 0755);
	gvmt_path(key_path, sizeof(key_path), "cluster.key");
	gvmt_make_key(key_path, 32, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
