/* test_broker.c: gvm-broker with two real gvm-memserver donors, driven by
 * real libgvmmem clients running as an unprivileged user (gvmtest, group
 * gvm, no capabilities, vm.unprivileged_userfaultfd untouched) and by raw
 * sockets: pages a VM pushed to the donors come back exactly from the
 * donors placement names, three VMs share one pool, bad handshakes are
 * refused without disturbing anyone, a killed donor stalls only its own
 * extents, a VM that exits has its namespaces dropped, a sequential reader
 * finds extents installed ahead of it, and gvm_detect_mode follows its
 * signals. */
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
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctlmsg.h"
#include "dclient.h"
#include "gvmmem.h"
#include "pattern.h"
#include "placement.h"
#include "procs.h"
#include "push.h"

#define EXTENT_PAGES 32u
#define SEED 4242u

struct cluster;
static unsigned donor_of(const struct cluster *cl, const char *ns, uint64_t extent);

static char key_path[512], sock_path[512];
static struct gvm_key key;
/* Set by the killed-donor test: once its pages are on the donors, say so
 * on ready_fd and wait for go_fd; then verify the extents on this donor
 * first, say so on ready_fd, then the rest. */
static const struct cluster *order_cluster;
static unsigned order_first_donor;
/* Set by the re-attach test: verify the first half, say so on ready_fd,
 * wait for go_fd, then the second half. */
static bool half_first;
static uid_t test_uid;
static gid_t test_gid, gvm_gid;
static bool have_user;

struct cluster {
	struct gvmt_proc donor[2], broker;
	char backing[2][512];
};

/* Starts the cluster's broker (again) on sock_path with its two donors. */
static bool cluster_broker_start(struct cluster *cl, const char *const *extra)
{
	const char *donors[3] = { cl->donor[0].addr, cl->donor[1].addr, NULL };

	return gvmt_broker_start(&cl->broker, key_path, sock_path, donors, extra);
}

static void cluster_start(struct cluster *cl, const char *const *broker_extra)
{
	static int serial;

	for (int i = 0; i < 2; i++) {
		snprintf(cl->backing[i], sizeof(cl->backing[i]), "%s/donor%d-%d.img", gvmt_dir(), i,
			 ++serial);
		assert_true(gvmt_memserver_start(&cl->donor[i], key_path,
						 (const char *[]){ "--backing", cl->backing[i],
								   "--capacity", "1G", NULL }));
	}
	snprintf(sock_path, sizeof(sock_path), "%s/broker-%d.sock", gvmt_dir(), serial);
	assert_true(cluster_broker_start(cl, broker_extra));
	assert_true(gvmt_broker_wait_stat(sock_path, "donors", 2, 10000));
}

static void cluster_stop(struct cluster *cl)
{
	assert_int_equal(gvmt_proc_stop(&cl->broker, SIGTERM), 0);
	for (int i = 0; i < 2; i++)
		if (cl->donor[i].pid)
			assert_int_equal(gvmt_proc_stop(&cl->donor[i], SIGTERM), 0);
}

static unsigned donor_of(const struct cluster *cl, const char *ns, uint64_t extent)
{
	struct gvm_place_donor d[2] = { { cl->donor[0].addr, 1 }, { cl->donor[1].addr, 1 } };
	unsigned out;

	gvm_place(ns, extent, d, 2, &out, 1);
	return out;
}

static Gvm__MemserverStats *donor_stats(const struct gvmt_proc *p)
{
	Gvm__MemserverStats *m = gvmt_donor_stats(p->addr, &key);

	assert_non_null(m);
	return m;
}

struct guest {
	uint8_t *mem;
	size_t size;
	int memfd;
};

static int guest_map(struct guest *g, size_t size)
{
	g->size = size;
	g->memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	if (g->memfd < 0 || ftruncate(g->memfd, (off_t)size))
		return -1;
	g->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
	return g->mem == MAP_FAILED ? -1 : 0;
}

/* Verifies pages [from, to) of g against the seeded pattern (pages beyond
 * seeded read as zero). */
static uint64_t verify_pattern(const struct guest *g, uint64_t from, uint64_t to, uint64_t seeded)
{
	uint8_t want[GVM_PAGE_SIZE];
	uint64_t bad = 0;

	for (uint64_t p = from; p < to; p++) {
		if (p < seeded)
			gvm_pattern_fill_page(want, SEED, p, 7);
		else
			memset(want, 0, sizeof(want));
		bad += memcmp(g->mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
	}
	return bad;
}

/* The unprivileged client: attach, write the seeded pages and push them
 * to the donors (every page then lives there only), check them (the rest
 * read as zero), write a new pattern everywhere, check it. Exits 0 when
 * every page is right. */
static void client_run(const char *vm, size_t size, uint64_t seeded, int ready_fd, int go_fd)
{
	struct gvm_region r = { "ram", NULL, size, -1, 0, 0 };
	struct gvm_session *s;
	struct guest g;
	uint64_t pages = size / GVM_PAGE_SIZE, bad = 0;
	uint8_t want[GVM_PAGE_SIZE];
	int err;
	char c = 'r';

	if (have_user) {
		gvmt_become(test_uid, test_gid, gvm_gid);
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* cleared by the credential change */
		/* Proof of no privilege: the kernel refuses us a full userfaultfd. */
		CHILD_CHECK(geteuid() != 0, 80, "still root");
		CHILD_CHECK(syscall(SYS_userfaultfd, O_CLOEXEC) < 0 && errno == EPERM, 81,
			    "an unprivileged user could create a userfaultfd itself");
	}
	CHILD_CHECK(guest_map(&g, size) == 0, 82, "memfd: %s", strerror(errno));
	r.host_addr = g.mem;
	r.memfd = g.memfd;
	s = gvm_attach(sock_path, vm, &r, 1, &err);
	CHILD_CHECK(s, 83, "attach %s: %s", vm, gvm_strerror(err));
	for (uint64_t p = 0; p < seeded; p++)
		gvm_pattern_fill_page(g.mem + p * GVM_PAGE_SIZE, SEED, p, 7);
	if (seeded) {
		err = gvm_push_to_donors(s, g.memfd, 0, 60000);
		CHILD_CHECK(!err, 88, "pushing %s to the donors: %s", vm, gvm_strerror(err));
	}
	if (order_cluster) {
		char ns[GVM_NS_NAME_MAX_BYTES + 1];

		CHILD_CHECK(gvmt_vm_namespace(order_cluster->broker.log, vm, getpid(), ns,
					      sizeof(ns) - 2), 89, "no namespace for %s in the log", vm);
		strcat(ns, ".0");
		CHILD_CHECK(write(ready_fd, &c, 1) == 1, 84, "ready");
		CHILD_CHECK(read(go_fd, &c, 1) == 1, 85, "go");
		for (int pass = 0; pass < 2; pass++) {
			for (uint64_t e = 0; e < pages / EXTENT_PAGES; e++)
				if ((donor_of(order_cluster, ns, e) == order_first_donor) == (pass == 0))
					bad += verify_pattern(&g, e * EXTENT_PAGES,
							      (e + 1) * EXTENT_PAGES, seeded);
			if (pass == 0)
				CHILD_CHECK(write(ready_fd, &c, 1) == 1, 84, "ready");
		}
	} else if (half_first) {
		bad = verify_pattern(&g, 0, pages / 2, seeded);
		CHILD_CHECK(write(ready_fd, &c, 1) == 1, 84, "ready");
		CHILD_CHECK(read(go_fd, &c, 1) == 1, 85, "go");
		bad += verify_pattern(&g, pages / 2, pages, seeded);
	} else if (ready_fd >= 0) {
		CHILD_CHECK(write(ready_fd, &c, 1) == 1, 84, "ready");
		CHILD_CHECK(read(go_fd, &c, 1) == 1, 85, "go");
	}
	if (!order_cluster && !half_first)
		bad = verify_pattern(&g, 0, pages, seeded);
	CHILD_CHECK(bad == 0, 86, "%llu of %llu pages differ from the donors' data",
		    (unsigned long long)bad, (unsigned long long)pages);
	for (uint64_t p = 0; p < pages; p++)
		gvm_pattern_fill_page(g.mem + p * GVM_PAGE_SIZE, SEED + 1, p, 0);
	for (uint64_t p = 0; p < pages; p++) {
		gvm_pattern_fill_page(want, SEED + 1, p, 0);
		bad += memcmp(g.mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
	}
	CHILD_CHECK(bad == 0, 87, "%llu pages lost a write", (unsigned long long)bad);
	gvm_detach(s);
	_exit(0);
}

static pid_t client_fork(const char *vm, size_t size, uint64_t seeded, int ready_fd, int go_fd)
{
	pid_t pid = fork();

	if (pid == 0)
		client_run(vm, size, seeded, ready_fd, go_fd);
	return pid;
}

/* A client that verifies the first half of its seeded pages in order,
 * then waits for a byte on go[0] before the second half: returns once the
 * first half is verified. */
static pid_t half_reader_fork(const char *vm, size_t size, uint64_t seeded, int ready[2],
			      int go[2])
{
	pid_t pid;
	char c;

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	half_first = true;
	pid = client_fork(vm, size, seeded, ready[1], go[0]);
	half_first = false;
	assert_int_equal(read(ready[0], &c, 1), 1);
	return pid;
}

static int wait_exit(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_unprivileged_client_gets_its_pushed_pages_back_from_the_donors(void **state)
{
	struct cluster cl;
	Gvm__MemserverStats *m[2];
	uint64_t seeded = (64u << 20) / GVM_PAGE_SIZE, pages = (256u << 20) / GVM_PAGE_SIZE;

	(void)state;
	if (!have_user)
		skip();
	cluster_start(&cl, NULL);
	assert_int_equal(wait_exit(client_fork("vm-solo", 256u << 20, seeded, -1, -1)), 0);
	/* Every extent was a zero fill once (a new incarnation holds nothing
	 * on the donors), and none again: the pushed ones came back from the
	 * donors, both of which served their share. */
	assert_int_equal(gvmt_broker_stat(sock_path, "zero_fills"), pages / EXTENT_PAGES);
	assert_true(gvmt_broker_stat(sock_path, "remote_reads") > 0);
	assert_true(gvmt_broker_stat(sock_path, "writebacks") > 0);
	assert_true(gvmt_broker_stat(sock_path, "faults") >= pages);
	assert_int_equal(gvmt_broker_stat(sock_path, "attaches"), 1);
	for (int i = 0; i < 2; i++) {
		m[i] = donor_stats(&cl.donor[i]);
		assert_true(m[i]->pages_read > seeded / 4);
	}
	/* The VM detached: its namespace is gone from both donors. */
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 0, 5000));
	for (int i = 0; i < 2; i++) {
		gvm__memserver_stats__free_unpacked(m[i], NULL);
		for (int t = 0; t < 100; t++) {
			m[i] = donor_stats(&cl.donor[i]);
			if (m[i]->namespaces == 0)
				break;
			gvm__memserver_stats__free_unpacked(m[i], NULL);
			m[i] = NULL;
			usleep(20000);
		}
		assert_non_null(m[i]);
		assert_int_equal(m[i]->used_pages, 0);
		gvm__memserver_stats__free_unpacked(m[i], NULL);
	}
	assert_int_equal(gvmt_file_count(cl.broker.log, "vm vm-solo (pid"), 2);
	cluster_stop(&cl);
}

static void test_three_vms_share_one_pool(void **state)
{
	struct cluster cl;
	int ready[2], go[2];
	pid_t pid[3];
	char c, name[16];

	(void)state;
	cluster_start(&cl, NULL);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "vm-%d", i);
		pid[i] = client_fork(name, 64u << 20, 0, ready[1], go[0]);
	}
	for (int i = 0; i < 3; i++)
		assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(gvmt_broker_stat(sock_path, "vms"), 3);
	assert_true(gvmt_broker_stat(sock_path, "donor_connections") <= 4); /* one pool */
	for (int i = 0; i < 3; i++)
		assert_int_equal(write(go[1], "g", 1), 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(wait_exit(pid[i]), 0);
	/* Fresh namespaces: every first touch was a local zero fill. */
	assert_int_equal(gvmt_broker_stat(sock_path, "zero_fills"), 3 * (64u << 20) / (EXTENT_PAGES * GVM_PAGE_SIZE));
	assert_true(gvmt_broker_stat(sock_path, "donor_connections") <= 4);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	cluster_stop(&cl);
}

/* ---- raw handshakes ---- */

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	assert_true(strlen(sock_path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return s;
}

/* Hello as vm_name (with an incarnation and secret when inc is not NULL:
 * a re-attach); the Welcome's /dev/userfaultfd into *devfd if not NULL. */
static void raw_hello_as(int s, uint32_t version, const char *vm_name, const uint8_t *inc,
			 const uint8_t *secret, int *devfd)
{
	Gvm__Control *in;
	int fds[1], nfds;

	assert_int_equal(gvmt_send_hello(s, version, vm_name, inc, secret), 0);
	if (!devfd)
		return;
	assert_int_equal(gvm_ctl_recv(s, &in, fds, &nfds, 1), 0);
	assert_int_equal(in->msg_case, GVM__CONTROL__MSG_WELCOME);
	assert_int_equal(nfds, 1);
	*devfd = fds[0];
	gvm__control__free_unpacked(in, NULL);
}

static void raw_hello(int s, uint32_t version, int *devfd)
{
	raw_hello_as(s, version, "vm-raw", NULL, NULL, devfd);
}

static void raw_attach(int s, const Gvm__Region *const *regions, size_t n, const int *fds, int nfds)
{
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__Attach a = GVM__ATTACH__INIT;

	a.n_regions = n;
	a.regions = (Gvm__Region **)regions;
	m.msg_case = GVM__CONTROL__MSG_ATTACH;
	m.attach = &a;
	assert_int_equal(gvm_ctl_send(s, &m, fds, nfds), 0);
}

/* The broker's answer must be a ControlError containing text, then EOF. */
static void expect_refusal(int s, const char *text)
{
	Gvm__Control *in;
	int fds[4], nfds;

	assert_int_equal(gvm_ctl_recv(s, &in, fds, &nfds, 4), 0);
	assert_int_equal(in->msg_case, GVM__CONTROL__MSG_ERROR);
	if (!strstr(in->error->error, text))
		fail_msg("refusal '%s' does not say '%s'", in->error->error, text);
	gvm__control__free_unpacked(in, NULL);
	assert_int_equal(gvm_ctl_recv(s, &in, fds, &nfds, 4), -ECONNRESET);
	close(s);
}

static void test_bad_handshakes_are_refused_and_others_keep_working(void **state)
{
	struct cluster cl;
	struct guest g;
	Gvm__Region r = GVM__REGION__INIT, r2 = GVM__REGION__INIT;
	const Gvm__Region *one[1] = { &r }, *two[2] = { &r, &r2 };
	int s, devfd, uffd, fds[4], p[2], file, maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	uint8_t junk[64], inc[GVM_INCARNATION_BYTES] = { 1 }, secret[GVM_INCARNATION_SECRET_BYTES] = { 2 };
	pid_t pid;

	(void)state;
	assert_true(maps >= 0);
	cluster_start(&cl, NULL);
	assert_int_equal(guest_map(&g, 8u << 20), 0);
	r.name = "ram";
	r.host_addr = (uint64_t)(uintptr_t)g.mem;
	r.size = g.size;

	/* Garbage that is not a Control message. */
	s = raw_connect();
	memset(junk, 0xff, sizeof(junk));
	assert_int_equal(send(s, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	expect_refusal(s, "malformed message");
	/* A future protocol version. */
	s = raw_connect();
	raw_hello(s, 99, NULL);
	expect_refusal(s, "protocol version mismatch");
	/* A name that would forge a log line: refused, and not logged. */
	s = raw_connect();
	raw_hello_as(s, GVM_CTL_VERSION, "vm\n2026-01-01T00:00:00.000Z gvm-broker[1] info: forged",
		     NULL, NULL, NULL);
	expect_refusal(s, "the VM name holds a character other than");
	/* A re-attach of an incarnation nobody gave this user. */
	s = raw_connect();
	raw_hello_as(s, GVM_CTL_VERSION, "vm-raw", inc, secret, NULL);
	expect_refusal(s, "re-attach refused");
	/* Attach before Hello. */
	s = raw_connect();
	raw_attach(s, one, 1, NULL, 0);
	expect_refusal(s, "Attach before Hello");
	/* A missing descriptor. */
	s = raw_connect();
	raw_hello(s, GVM_CTL_VERSION, &devfd);
	uffd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	assert_true(uffd >= 0);
	raw_attach(s, one, 1, &uffd, 1);
	expect_refusal(s, "expected 3 descriptors");
	close(uffd);
	close(devfd);
	/* A pipe where the userfaultfd belongs. */
	s = raw_connect();
	raw_hello(s, GVM_CTL_VERSION, &devfd);
	assert_int_equal(pipe(p), 0);
	fds[0] = p[0];
	fds[1] = g.memfd;
	fds[2] = maps;
	raw_attach(s, one, 1, fds, 3);
	expect_refusal(s, "not a userfaultfd");
	close(p[0]);
	close(p[1]);
	/* A regular file where the memfd belongs. */
	s = raw_connect();
	raw_hello(s, GVM_CTL_VERSION, &devfd);
	uffd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	file = open(key_path, O_RDONLY);
	fds[0] = uffd;
	fds[1] = file;
	fds[2] = maps;
	raw_attach(s, one, 1, fds, 3);
	expect_refusal(s, "not a memfd");
	close(uffd);
	close(devfd);
	/* A regular file where the client's maps belong. */
	s = raw_connect();
	raw_hello(s, GVM_CTL_VERSION, &devfd);
	uffd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	fds[0] = uffd;
	fds[1] = g.memfd;
	fds[2] = file;
	raw_attach(s, one, 1, fds, 3);
	expect_refusal(s, "not /proc/self/maps");
	close(file);
	close(uffd);
	close(devfd);
	/* Two regions overlapping in memory. */
	s = raw_connect();
	raw_hello(s, GVM_CTL_VERSION, &devfd);
	uffd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	r2 = r;
	r2.name = "ram2";
	r2.host_addr = r.host_addr + GVM_PAGE_SIZE;
	r2.size = GVM_PAGE_SIZE;
	r2.guest_phys = 1ull << 32;
	fds[0] = uffd;
	fds[1] = g.memfd;
	fds[2] = g.memfd;
	fds[3] = maps;
	raw_attach(s, two, 2, fds, 4);
	expect_refusal(s, "overlap in memory");
	close(uffd);
	close(devfd);
	/* An address that is not where the memfd is mapped. */
	s = raw_connect();
	raw_hello(s, GVM_CTL_VERSION, &devfd);
	uffd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	r.host_addr = (uint64_t)(uintptr_t)junk & ~(uint64_t)(GVM_PAGE_SIZE - 1);
	r.size = GVM_PAGE_SIZE;
	fds[0] = uffd;
	fds[1] = g.memfd;
	fds[2] = maps;
	raw_attach(s, one, 1, fds, 3);
	expect_refusal(s, "not a shared mapping of its memfd");
	close(uffd);
	close(devfd);
	/* A client killed in the middle of the handshake. */
	pid = fork();
	if (pid == 0) {
		int k = raw_connect();

		raw_hello(k, GVM_CTL_VERSION, NULL);
		_exit(0);
	}
	assert_int_equal(wait_exit(pid), 0);

	/* Still serving: a real client attaches and works. */
	assert_true(gvmt_proc_alive(&cl.broker));
	assert_int_equal(wait_exit(client_fork("vm-after", 16u << 20, 0, -1, -1)), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "attach_errors"), 11);
	assert_int_equal(gvmt_broker_stat(sock_path, "attaches"), 1);
	assert_int_equal(gvmt_file_count(cl.broker.log, "forged"), 0);
	munmap(g.mem, g.size);
	close(maps);
	close(g.memfd);
	cluster_stop(&cl);
}

/* A donor killed mid-run: extents on the other donor keep being served, the
 * broker says so, and the stalled faults finish once the donor is back. */
static void test_killed_donor_stalls_only_its_extents_and_recovers(void **state)
{
	struct cluster cl;
	uint64_t pages = (32u << 20) / GVM_PAGE_SIZE;
	struct pollfd pf;
	int ready[2], go[2], status;
	char c;
	pid_t pid;

	(void)state;
	cluster_start(&cl, NULL);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	order_cluster = &cl;
	order_first_donor = 1;
	pid = client_fork("vm-dk", 32u << 20, pages, ready[1], go[0]);
	order_cluster = NULL;
	/* Its pages are on the donors: one of them dies. */
	pf = (struct pollfd){ ready[0], POLLIN, 0 };
	assert_int_equal(poll(&pf, 1, 60000), 1);
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(gvmt_proc_stop(&cl.donor[0], SIGKILL), 128 + SIGKILL);
	assert_int_equal(write(go[1], "g", 1), 1);
	/* The live donor's extents all arrive while the dead one's wait. */
	assert_int_equal(poll(&pf, 1, 30000), 1);
	assert_int_equal(read(ready[0], &c, 1), 1);
	usleep(300000);
	assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* still waiting on donor 0 */
	assert_int_equal(gvmt_broker_stat(sock_path, "donor_connections"), 2);
	assert_true(gvmt_file_count(cl.broker.log, "unreachable") >= 1);
	/* The donor comes back with its pages (file backing, same address). */
	assert_true(gvmt_memserver_restart(&cl.donor[0], key_path,
					   (const char *[]){ "--backing", cl.backing[0], NULL }));
	assert_int_equal(wait_exit(pid), 0);
	assert_true(gvmt_broker_wait_stat(sock_path, "donors", 2, 10000));
	assert_true(gvmt_file_count(cl.broker.log, "reachable again") >= 1);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	cluster_stop(&cl);
}

/* The broker dies under a running client: faults on the client's regions
 * wait (its uffd copy keeps them registered) and the library re-attaches
 * to the restarted broker, which serves them; no page comes back wrong. */
static void test_client_reattaches_to_a_restarted_broker(void **state)
{
	struct cluster cl;
	uint64_t pages = (32u << 20) / GVM_PAGE_SIZE;
	int ready[2], go[2], status;
	pid_t pid;

	(void)state;
	cluster_start(&cl, NULL);
	pid = half_reader_fork("vm-re", 32u << 20, pages, ready, go);
	assert_int_equal(gvmt_proc_stop(&cl.broker, SIGKILL), 128 + SIGKILL);
	assert_int_equal(write(go[1], "g", 1), 1);
	usleep(500000);
	assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* waiting, not reading zeros */
	assert_true(cluster_broker_start(&cl, NULL));
	assert_int_equal(wait_exit(pid), 0);
	assert_int_equal(gvmt_file_count(cl.broker.log, "attached again"), 1);
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 0, 5000));
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	cluster_stop(&cl);
}

/* A second SIGTERM (or SIGINT) while the broker or a donor is shutting
 * down is ignored: each still stops cleanly with status 0. Before, the
 * first signal put back the default action, and the second killed the
 * process half-way through its shutdown (14 of 20 tries here). */
static void test_second_stop_signal_during_shutdown_is_ignored(void **state)
{
	struct cluster cl;

	(void)state;
	cluster_start(&cl, NULL);
	for (int i = 0; i < 8; i++) {
		if (i)
			assert_true(cluster_broker_start(&cl, NULL));
		assert_true(gvmt_broker_wait_stat(sock_path, "donors", 2, 10000));
		kill(cl.broker.pid, i % 2 ? SIGINT : SIGTERM);
		usleep((useconds_t)(i * 700));
		assert_int_equal(gvmt_proc_stop(&cl.broker, SIGTERM), 0);
		assert_int_equal(gvmt_file_count(cl.broker.log, "stopped cleanly"), 1);
	}
	for (int i = 0; i < 2; i++) {
		kill(cl.donor[i].pid, SIGTERM);
		usleep((useconds_t)(i * 1000));
		assert_int_equal(gvmt_proc_stop(&cl.donor[i], SIGINT), 0);
	}
}

/* The client's guest memfd, opened through /proc (we are root). */
static int open_client_memfd(pid_t pid)
{
	char dir[64], path[320], link[256];
	int fd = -1;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	for (int n = 0; n < 64 && fd < 0; n++) {
		ssize_t len;

		snprintf(path, sizeof(path), "%s/%d", dir, n);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (strstr(link, "memfd:guest-ram"))
			fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	return fd;
}

static bool page_present(int memfd, uint64_t page)
{
	off_t off = (off_t)(page * GVM_PAGE_SIZE);

	return lseek(memfd, off, SEEK_DATA) == off;
}

/* A VM reading in order finds the extents ahead of it already in its
 * memory, installed as they arrived, all but each extent's first page: the
 * fault on that one moves the prefetch window on. With --install copy the
 * tripwire is not in the memfd at all; with --install continue it was
 * received there with the rest and is only not mapped, so the VM's fault on
 * it is a minor fault. Far ahead nothing is installed, and every page still
 * reads exactly the donors' data. */
static void sequential_reader_ahead(const char *install)
{
	/* (sealed pages are opened from a buffer, never received in the memfd) */
	const char *const extra[] = { "--install", install, "--page-crypto", "none", NULL };
	bool cont = !strcmp(install, "continue");
	struct cluster cl;
	uint64_t pages = (64u << 20) / GVM_PAGE_SIZE, next = pages / 2 / EXTENT_PAGES;
	int ready[2], go[2], memfd;
	pid_t pid;

	cluster_start(&cl, extra);
	pid = half_reader_fork("vm-ahead", 64u << 20, pages, ready, go); /* first half in order */
	usleep(300000); /* the window's READs arrive */
	memfd = open_client_memfd(pid);
	assert_true(memfd >= 0);
	for (uint64_t e = next; e < next + 4; e++) {
		uint64_t first = e * EXTENT_PAGES;

		assert_int_equal(page_present(memfd, first), cont); /* the tripwire */
		for (uint64_t p = first + 1; p < first + EXTENT_PAGES; p++)
			assert_true(page_present(memfd, p));
	}
	for (uint64_t p = (next + 40) * EXTENT_PAGES; p < (next + 41) * EXTENT_PAGES; p++)
		assert_false(page_present(memfd, p));
	close(memfd);
	assert_true(gvmt_broker_stat(sock_path, "prefetch_hits") > next / 2);
	if (cont)
		assert_true(gvmt_broker_stat(sock_path, "minor_faults") > next / 2);
	else
		assert_int_equal(gvmt_broker_stat(sock_path, "minor_faults"), 0);
	assert_int_equal(gvmt_file_count(cl.broker.log, cont ? "go in with UFFDIO_CONTINUE" :
							      "go in with UFFDIO_COPY"), 1);
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(wait_exit(pid), 0); /* every page checked, then rewritten */
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	cluster_stop(&cl);
}

static void test_sequential_reader_finds_extents_installed_ahead(void **state)
{
	(void)state;
	sequential_reader_ahead("copy");
}

static void test_sequential_reader_maps_extents_received_into_its_memory(void **state)
{
	(void)state;
	sequential_reader_ahead("continue");
}

/* A VM process killed outright: the broker detaches it, drops its pages on
 * the donors and goes on serving the others. */
static void test_killed_vm_is_detached_and_its_pages_dropped(void **state)
{
	struct cluster cl;
	Gvm__MemserverStats *m;
	int ready[2], go[2], status;
	char c;
	pid_t pid;

	(void)state;
	cluster_start(&cl, NULL);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid = client_fork("vm-kill", 16u << 20, 1024, ready[1], go[0]);
	assert_int_equal(read(ready[0], &c, 1), 1); /* its pages are on the donors */
	assert_int_equal(gvmt_broker_stat(sock_path, "vms"), 1);
	for (int i = 0; i < 2; i++) {
		m = donor_stats(&cl.donor[i]);
		assert_int_equal(m->namespaces, 1);
		assert_true(m->used_pages > 0);
		gvm__memserver_stats__free_unpacked(m, NULL);
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 0, 5000));
	for (int i = 0; i < 2; i++) {
		for (int t = 0; t < 100; t++) {
			m = donor_stats(&cl.donor[i]);
			if (m->namespaces == 0)
				break;
			gvm__memserver_stats__free_unpacked(m, NULL);
			m = NULL;
			usleep(20000);
		}
		assert_non_null(m);
		assert_int_equal(m->used_pages, 0);
		gvm__memserver_stats__free_unpacked(m, NULL);
	}
	assert_int_equal(wait_exit(client_fork("vm-next", 16u << 20, 0, -1, -1)), 0);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	cluster_stop(&cl);
}

static void test_detect_mode_follows_each_signal(void **state)
{
	struct cluster cl;
	char root[512], path[600];

	(void)state;
	setenv("GVM_MODE", "full-share", 1);
	assert_int_equal(gvm_detect_mode(), GVM_MODE_FULL_SHARE);
	setenv("GVM_MODE", "none", 1);
	assert_int_equal(gvm_detect_mode(), GVM_MODE_NONE);
	setenv("GVM_MODE", "memory-only", 1);
	assert_int_equal(gvm_detect_mode(), GVM_MODE_MEMORY_ONLY);
	unsetenv("GVM_MODE");

	/* The GiantVM kernel's module, under a test sysroot. */
	snprintf(root, sizeof(root), "%s/sysroot", gvmt_dir());
	gvmt_fake_giantvm(root, path, sizeof(path));
	setenv("GVM_SYSROOT", root, 1);
	setenv("GVM_ENDPOINT", "/nonexistent/broker.sock", 1);
	assert_int_equal(gvm_detect_mode(), GVM_MODE_FULL_SHARE);
	rmdir(path);
	assert_int_equal(gvm_detect_mode(), GVM_MODE_NONE);

	/* A broker answering at the endpoint. */
	cluster_start(&cl, NULL);
	setenv("GVM_ENDPOINT", sock_path, 1);
	assert_int_equal(gvm_detect_mode(), GVM_MODE_MEMORY_ONLY);
	cluster_stop(&cl);
	assert_int_equal(gvm_detect_mode(), GVM_MODE_NONE);
	unsetenv("GVM_ENDPOINT");
	unsetenv("GVM_SYSROOT");
}

static void test_gvmctl_stats_prints_every_documented_key(void **state)
{
	static const char *const keys[] = { "vms: ", "resident_pages: ", "faults: ",
					     "remote_reads: ", "prefetch_hits: ", "zero_fills: ",
					     "donor_connections: ", "donors: 2", "fault_latency_p50_us: ",
					     "fault_latency_p99_us: ", "evictions: ", "writebacks: ",
					     "clean_drops: ", "budget_bytes: ", "resident_bytes: ",
					     "wp_faults: " };
	struct cluster cl;
	char bin[512], log[600];

	(void)state;
	cluster_start(&cl, NULL);
	snprintf(log, sizeof(log), "%s/gvmctl-stats.log", gvmt_dir());
	assert_int_equal(gvmt_run(log, (const char *[]){ gvmt_bin("gvmctl", bin, sizeof(bin)),
							 "--socket", sock_path, "stats", NULL }),
			 0);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (gvmt_file_count_lines(log, keys[i]) != 1)
			fail_msg("gvmctl stats lacks '%s'", keys[i]);
	cluster_stop(&cl);
}

/* gvmctl stats lists struct gvmmem_stats's 33 v1 counters first, in the
 * struct's order, then the counters added since (which the frozen ioctl
 * never carries): an old script reading the lines finds what it knew. */
static void test_gvmctl_stats_keeps_v1_order_and_appends_new_keys(void **state)
{
	static const char *const keys[] = {
		"vms", "resident_pages", "faults", "wp_faults", "remote_reads", "remote_pages",
		"prefetch_issued", "prefetch_hits", "prefetch_cache_bytes", "zero_fills", "donors",
		"donor_connections", "donor_errors", "attaches", "attach_errors", "budget_bytes",
		"resident_bytes", "evictions", "writebacks", "clean_drops", "writeback_errors",
		"evict_waits", "removed_pages", "fault_latency_p50_us", "fault_latency_p99_us",
		"replicas", "dead_donors", "degraded_extents", "failovers", "hedged_reads",
		"rereplicated_pages", "poisoned_pages", "draining_extents",
		/* not in v1 */
		"alloc_failures", "minor_faults", "install_continue", "pinned_pages", "sealed_vms",
		"integrity_failures",
	};
	struct cluster cl;
	char bin[512], log[600], line[256];
	size_t n = 0;
	FILE *f;

	(void)state;
	cluster_start(&cl, NULL);
	snprintf(log, sizeof(log), "%s/gvmctl-stats-order.log", gvmt_dir());
	assert_int_equal(gvmt_run(log, (const char *[]){ gvmt_bin("gvmctl", bin, sizeof(bin)),
							 "--socket", sock_path, "stats", NULL }),
			 0);
	f = fopen(log, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *colon = strstr(line, ": ");

		if (!colon)
			continue;
		*colon = '\0';
		if (n >= sizeof(keys) / sizeof(keys[0]))
			fail_msg("gvmctl stats line %zu: '%s' after every known key", n + 1, line);
		if (strcmp(line, keys[n]) != 0)
			fail_msg("gvmctl stats line %zu: '%s', want '%s'", n + 1, line, keys[n]);
		n++;
	}
	fclose(f);
	assert_int_equal(n, sizeof(keys) / sizeof(keys[0]));
	/* Nothing ran out of memory; no VM is attached, so none has its pages
	 * received into its memory (install_continue counts those VMs). */
	assert_int_equal(gvmt_file_count_lines(log, "alloc_failures: 0"), 1);
	assert_int_equal(gvmt_file_count_lines(log, "install_continue: 0"), 1);
	cluster_stop(&cl);
}

static void test_broker_command_line_errors_are_explained(void **state)
{
	struct cluster cl;
	char bin[512], log[600], file[600];
	FILE *f;

	(void)state;
	gvmt_bin("gvm-broker", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/broker-cli.log", gvmt_dir());
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--help", NULL }), 0);
	assert_int_equal(gvmt_file_count(log, "Usage: gvm-broker"), 1);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--no-cuse", NULL }), 2);
	assert_int_equal(gvmt_file_count(log, "no donors"), 1);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--donor", "nohost", "--donor", "nohost", NULL }), 2);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--donor", "1.2.3.4:7700,0", NULL }), 2);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--donor", "1.2.3.4:7700", "--extent-pages", "513", NULL }), 2);
	snprintf(file, sizeof(file), "%s/donors.txt", gvmt_dir());
	f = fopen(file, "w");
	fprintf(f, "# donors\n127.0.0.1:7701 2\n\n127.0.0.1:7702\nnot an address at all\n");
	fclose(f);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--donors-file", file, NULL }), 2);
	assert_int_equal(gvmt_file_count(log, "donors.txt:5: 'not an address at all'"), 1);
	/* A socket another broker serves is not taken over. */
	cluster_start(&cl, NULL);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--no-cuse", "--socket", sock_path,
							 "--key-file", key_path, "--donor",
							 cl.donor[0].addr, NULL }),
			 1);
	assert_int_equal(gvmt_file_count(log, "another broker is serving"), 1);
	assert_true(gvmt_proc_alive(&cl.broker));
	cluster_stop(&cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unprivileged_client_gets_its_pushed_pages_back_from_the_donors),
		cmocka_unit_test(test_three_vms_share_one_pool),
		cmocka_unit_test(test_bad_handshakes_are_refused_and_others_keep_working),
		cmocka_unit_test(test_killed_donor_stalls_only_its_extents_and_recovers),
		cmocka_unit_test(test_client_reattaches_to_a_restarted_broker),
		cmocka_unit_test(test_second_stop_signal_during_shutdown_is_ignored),
		cmocka_unit_test(test_sequential_reader_finds_extents_installed_ahead),
		cmocka_unit_test(test_sequential_reader_maps_extents_received_into_its_memory),
		cmocka_unit_test(test_killed_vm_is_detached_and_its_pages_dropped),
		cmocka_unit_test(test_detect_mode_follows_each_signal),
		cmocka_unit_test(test_gvmctl_stats_prints_every_documented_key),
		cmocka_unit_test(test_gvmctl_stats_keeps_v1_order_and_appends_new_keys),
		cmocka_unit_test(test_broker_command_line_errors_are_explained),
	};

	gvmt_main_init(key_path, sizeof(key_path), &key);
	have_user = gvmt_test_user(&test_uid, &test_gid, &gvm_gid);
	if (!have_user)
		fprintf(stderr, "test_broker: not root: clients run as this user, the unprivileged test is skipped\n");
	return cmocka_run_group_tests_name("broker", tests, NULL, NULL);
}
