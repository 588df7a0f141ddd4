/* test_failover.c: restarts and failures lose nothing. Real gvm-broker and
 * gvm-memserver processes, unprivileged libgvmmem clients whose every page
 * is checked against its pattern:
 * - the broker is stopped (SIGTERM) and killed (SIGKILL) and restarted
 *   while a VM holds four times its budget on the donors, and while the VM
 *   writes: every page reads back, and the re-attached VM's memory is
 *   counted against the budget at once;
 * - with --replicas 2 over three donors, a donor killed for good, and a
 *   donor cut off by its network namespace's link and then back: every
 *   page reads back, re-replication restores two copies, and the new
 *   copies alone hold the data;
 * - a donor restarted empty is refilled, and its lost copies cost nothing;
 * - both copies of some extents lost: those pages give SIGBUS (a memory
 *   error), never zeros, and every other page reads back. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "dclient.h"
#include "gvmmem.h"
#include "pattern.h"
#include "placement.h"
#include "procs.h"

#define MIB (1u << 20)
#define ZERO_EVERY 9u
#define BATCH_BYTES (256u * 4096u) /* BK_EVICT_BATCH_PAGES */

static char key_path[512], sock_path[512];
static struct gvm_key key;
static uid_t test_uid;
static gid_t test_gid, gvm_gid;
static bool have_user;

struct cluster {
	struct gvmt_proc donor[3], broker;
	unsigned ndonors;
	const char *extra[16];
};

static bool broker_start(struct cluster *cl)
{
	const char *donors[4] = { NULL };

	for (unsigned i = 0; i < cl->ndonors; i++)
		donors[i] = cl->donor[i].addr;
	return gvmt_broker_start(&cl->broker, key_path, sock_path, donors, cl->extra);
}

/* Starts the donors not started yet (anonymous memory), then the broker
 * with extra (NULL-terminated) arguments. */
static void cluster_start(struct cluster *cl, unsigned ndonors, const char *const *extra)
{
	static int serial;
	unsigned n = 0;

	cl->ndonors = ndonors;
	for (unsigned i = 0; i < ndonors; i++)
		if (!cl->donor[i].pid)
			assert_true(gvmt_memserver_start(&cl->donor[i], key_path,
							 (const char *[]){ "--capacity", "1G", NULL }));
	for (; extra && extra[n] && n < 15; n++)
		cl->extra[n] = extra[n];
	cl->extra[n] = NULL;
	snprintf(sock_path, sizeof(sock_path), "%s/failover-%d.sock", gvmt_dir(), ++serial);
	assert_true(broker_start(cl));
	assert_true(gvmt_broker_wait_stat(sock_path, "donors", ndonors, 10000));
}

static void cluster_stop(struct cluster *cl)
{
	if (cl->broker.pid)
		assert_int_equal(gvmt_proc_stop(&cl->broker, SIGTERM), 0);
	for (unsigned i = 0; i < cl->ndonors; i++)
		if (cl->donor[i].pid)
			gvmt_proc_stop(&cl->donor[i], SIGKILL);
	memset(cl, 0, sizeof(*cl));
}

static Gvm__MemserverStats *donor_stats(const struct gvmt_proc *p)
{
	Gvm__MemserverStats *m = gvmt_donor_stats(p->addr, &key);

	assert_non_null(m);
	return m;
}

static uint64_t donor_used_pages(const struct gvmt_proc *p)
{
	Gvm__MemserverStats *m = donor_stats(p);
	uint64_t used = m->used_pages;

	gvm__memserver_stats__free_unpacked(m, NULL);
	return used;
}

/* ---- the VM: a forked, unprivileged client ---- */

enum step { FILL, REWRITE, VERIFY };

struct vm {
	pid_t pid;
	int to_parent[2], to_child[2];
};

static sigjmp_buf bus_jump;
static volatile sig_atomic_t bus_code;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	bus_code = si->si_code;
	siglongjmp(bus_jump, 1);
}

static void child_say(struct vm *v, char c)
{
	CHILD_CHECK(write(v->to_parent[1], &c, 1) == 1, 80, "say");
}

static void child_wait(struct vm *v)
{
	char c;

	CHILD_CHECK(read(v->to_child[0], &c, 1) == 1, 81, "wait");
}

/* Checks every page against seed: counts the wrong ones and those that
 * raise SIGBUS, whose page numbers go to bus_file (if given). Tracks the
 * memfd's largest allocation. */
static void child_verify(uint8_t *mem, size_t size, int memfd, uint64_t seed, uint64_t *bad,
			 uint64_t *bus, FILE *bus_file, size_t *max_bytes)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };
	uint8_t want[GVM_PAGE_SIZE];
	struct stat st;

	sigaction(SIGBUS, &sa, NULL);
	*bad = *bus = 0;
	for (volatile size_t p = 0; p < size / GVM_PAGE_SIZE; p++) {
		gvm_pattern_fill_page(want, seed, p, ZERO_EVERY);
		if (sigsetjmp(bus_jump, 1)) {
			(*bus)++;
			if (bus_file)
				fprintf(bus_file, "%zu %d\n", (size_t)p, (int)bus_code);
			continue;
		}
		*bad += memcmp(mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
		if (p % 64 == 0 && !fstat(memfd, &st) && (size_t)st.st_blocks * 512 > *max_bytes)
			*max_bytes = (size_t)st.st_blocks * 512;
	}
}

/* A VM of size bytes: fills them (seed 1), says 'f' and waits; with
 * rewrite, writes them again (seed 2) at once, says 'w' and waits again;
 * then verifies, verify_rounds times, each after a go and followed by a
 * 'v'. Exits 0 when every page was right (SIGBUS pages are counted into
 * bus_path, not failures, when it is given), and the memfd never held more
 * than limit bytes (0: unchecked) while verifying. */
static void vm_start(struct vm *v, const char *name, size_t size, bool rewrite,
		     unsigned verify_rounds, size_t limit, const char *bus_path)
{
	assert_int_equal(pipe(v->to_parent), 0);
	assert_int_equal(pipe(v->to_child), 0);
	v->pid = fork();
	assert_true(v->pid >= 0);
	if (v->pid)
		return;
	struct gvm_region r = { "ram", NULL, size, -1, 0, 0 };
	uint64_t seed = 1, bad, bus;
	size_t max_bytes = 0;
	struct gvm_session *s;
	uint8_t *mem;
	int err;

	if (have_user) {
		gvmt_become(test_uid, test_gid, gvm_gid);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	}
	r.memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	CHILD_CHECK(r.memfd >= 0 && !ftruncate(r.memfd, (off_t)size), 70, "memfd");
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r.memfd, 0);
	CHILD_CHECK(mem != MAP_FAILED, 71, "mmap");
	r.host_addr = mem;
	s = gvm_attach(sock_path, name, &r, 1, &err);
	CHILD_CHECK(s, 72, "attach %s: %s", name, gvm_strerror(err));
	for (size_t p = 0; p < size / GVM_PAGE_SIZE; p++)
		gvm_pattern_fill_page(mem + p * GVM_PAGE_SIZE, seed, p, ZERO_EVERY);
	child_say(v, 'f');
	child_wait(v);
	if (rewrite) {
		seed = 2;
		for (size_t p = 0; p < size / GVM_PAGE_SIZE; p++)
			gvm_pattern_fill_page(mem + p * GVM_PAGE_SIZE, seed, p, ZERO_EVERY);
		child_say(v, 'w');
		child_wait(v);
	}
	for (unsigned round = 0; round < verify_rounds; round++) {
		FILE *f = bus_path ? fopen(bus_path, round ? "a" : "w") : NULL;

		CHILD_CHECK(f || !bus_path, 76, "%s: %s", bus_path, strerror(errno));
		if (round)
			child_wait(v);
		child_verify(mem, size, r.memfd, seed, &bad, &bus, f, &max_bytes);
		if (f)
			fclose(f);
		CHILD_CHECK(bad == 0, 73, "%s: round %u: %llu pages wrong", name, round,
			    (unsigned long long)bad);
		CHILD_CHECK(bus == 0 || bus_path, 74, "%s: round %u: %llu pages gave SIGBUS", name,
			    round, (unsigned long long)bus);
		CHILD_CHECK(!limit || max_bytes <= limit, 75, "%s: memfd held %zu bytes, limit %zu",
			    name, max_bytes, limit);
		child_say(v, 'v');
	}
	gvm_detach(s);
	_exit(0);
}

/* Waits for the VM to say c (timeout_ms). */
static void vm_expect(struct vm *v, char c, int timeout_ms)
{
	struct pollfd pf = { v->to_parent[0], POLLIN, 0 };
	char got = 0;

	assert_int_equal(poll(&pf, 1, timeout_ms), 1);
	if (read(v->to_parent[0], &got, 1) != 1) {
		int status = 0;

		waitpid(v->pid, &status, 0);
		fail_msg("the VM ended waiting for '%c': %s %d", c,
			 WIFEXITED(status) ? "exit" : "signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	}
	assert_int_equal(got, c);
}

static void vm_go(struct vm *v)
{
	assert_int_equal(write(v->to_child[1], "g", 1), 1);
}

static int vm_end(struct vm *v)
{
	int status;

	assert_int_equal(waitpid(v->pid, &status, 0), v->pid);
	for (int i = 0; i < 2; i++) {
		close(v->to_parent[i]);
		close(v->to_child[i]);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Eviction has moved what it will: nothing in flight, the budget kept. */
static void settle(void)
{
	uint64_t last = UINT64_MAX;

	for (int i = 0; i < 100; i++) {
		uint64_t now = gvmt_broker_stat(sock_path, "writebacks");

		if (now == last)
			return;
		last = now;
		usleep(100000);
	}
}

static void broker_restart(struct cluster *cl, int sig)
{
	assert_int_equal(gvmt_proc_stop(&cl->broker, sig), sig == SIGKILL ? 128 + SIGKILL : 0);
	assert_true(broker_start(cl));
	/* the VM re-attaches by itself */
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 1, 20000));
}

/* ---- broker restarts ---- */

/* 128 MiB under a 32 MiB budget, most of it on the donors. The broker is
 * stopped and restarted, then killed and restarted, while the VM waits;
 * every page reads back, and the re-attached VM's resident memory is
 * counted at once (the memfd stays within budget + one batch). Before,
 * a SIGTERM dropped every namespace: 25,088 of 32,768 pages came back as
 * zeros. */
static void test_broker_stop_and_kill_lose_no_page(void **state)
{
	struct cluster cl = { 0 };
	struct vm v;
	uint64_t used;

	(void)state;
	cluster_start(&cl, 2, (const char *[]){ "--budget", "32M", NULL });
	vm_start(&v, "vm-restart", 128 * MIB, false, 1, 32 * MIB + 2 * BATCH_BYTES, NULL);
	vm_expect(&v, 'f', 120000);
	settle();
	used = donor_used_pages(&cl.donor[0]) + donor_used_pages(&cl.donor[1]);
	assert_true(used >= (96 * MIB) / GVM_PAGE_SIZE * 8 / 10);
	broker_restart(&cl, SIGTERM);
	assert_int_equal(gvmt_file_count(cl.broker.log, "attached again"), 1);
	/* what the memfd holds counts at once */
	assert_true(gvmt_broker_stat(sock_path, "resident_bytes") >= 16 * MIB);
	assert_int_equal(donor_used_pages(&cl.donor[0]) + donor_used_pages(&cl.donor[1]), used);
	broker_restart(&cl, SIGKILL);
	vm_go(&v);
	vm_expect(&v, 'v', 120000);
	assert_int_equal(vm_end(&v), 0);
	/* It detached on purpose: now its pages go. */
	for (int i = 0; i < 100 && donor_used_pages(&cl.donor[0]) + donor_used_pages(&cl.donor[1]);
	     i++)
		usleep(20000);
	assert_int_equal(donor_used_pages(&cl.donor[0]) + donor_used_pages(&cl.donor[1]), 0);
	cluster_stop(&cl);
}

/* The same while the VM writes all of its memory again: each write is
 * either in the memfd or on the donors, whichever broker served it. With
 * --install continue, READs land in the memfd before they are mapped: a
 * broker killed meanwhile leaves part of a page there, which the next one
 * must not take for the VM's (journal.c), and a write must never race a
 * READ still landing in its page. */
static void restarts_while_writing(const char *install)
{
	struct cluster cl = { 0 };
	struct vm v;

	cluster_start(&cl, 2, (const char *[]){ "--budget", "32M", "--install", install, NULL });
	vm_start(&v, "vm-rewrite", 128 * MIB, true, 1, 0, NULL);
	vm_expect(&v, 'f', 120000);
	vm_go(&v); /* it rewrites from now on */
	usleep(300000);
	broker_restart(&cl, SIGTERM);
	usleep(300000);
	broker_restart(&cl, SIGKILL);
	vm_expect(&v, 'w', 120000);
	vm_go(&v);
	vm_expect(&v, 'v', 120000);
	assert_int_equal(vm_end(&v), 0);
	cluster_stop(&cl);
}

static void test_broker_restarts_while_the_vm_writes_lose_no_write(void **state)
{
	(void)state;
	restarts_while_writing("copy");
}

static void test_broker_restarts_lose_no_write_with_pages_received_into_memory(void **state)
{
	(void)state;
	restarts_while_writing("continue");
}

/* ---- replicas ---- */

static const char *const replica_args[] = { "--budget", "16M", "--replicas", "2",
					    "--dead-after", "1", "--rereplicate-rate", "256M",
					    NULL };

/* Two copies of everything once written, over three donors. */
static void replicas_filled(struct vm *v, const char *name)
{
	vm_start(v, name, 64 * MIB, false, 2, 0, NULL);
	vm_expect(v, 'f', 120000);
	settle();
	assert_int_equal(gvmt_broker_stat(sock_path, "replicas"), 2);
	assert_int_equal(gvmt_broker_stat(sock_path, "degraded_extents"), 0);
}

/* A donor dies for good: every page reads back from the other copies; it
 * is declared dead, re-replication restores two copies; then another
 * donor dies, and every page still reads back: the new copies hold it. */
static void test_killed_donor_costs_nothing_with_two_replicas(void **state)
{
	struct cluster cl = { 0 };
	struct vm v;

	(void)state;
	cluster_start(&cl, 3, replica_args);
	replicas_filled(&v, "vm-r2");
	assert_int_equal(gvmt_proc_stop(&cl.donor[0], SIGKILL), 128 + SIGKILL);
	vm_go(&v);
	vm_expect(&v, 'v', 120000);
	assert_true(gvmt_broker_wait_stat(sock_path, "dead_donors", 1, 10000));
	assert_true(gvmt_broker_wait_stat(sock_path, "degraded_extents", 0, 60000));
	assert_true(gvmt_broker_stat(sock_path, "rereplicated_pages") > 0);
	assert_true(gvmt_broker_stat(sock_path, "failovers") +
			    gvmt_broker_stat(sock_path, "hedged_reads") > 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "poisoned_pages"), 0);
	assert_int_equal(gvmt_proc_stop(&cl.donor[1], SIGKILL), 128 + SIGKILL);
	vm_go(&v);
	vm_expect(&v, 'v', 120000);
	assert_int_equal(vm_end(&v), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "poisoned_pages"), 0);
	assert_true(gvmt_file_count(cl.broker.log, "dead (") >= 1);
	cluster_stop(&cl);
}

/* An anonymous donor restarts within the deadline: it lost its copies
 * (it opens our namespace under a new id, or says ENOENT). Reads go to the
 * other copies, and it is refilled. Before, a one-page READ that got
 * ENOENT was asked again for ever. */
static void test_donor_restarted_empty_is_refilled(void **state)
{
	const char *const args[] = { "--budget", "16M", "--replicas", "2", "--dead-after", "30",
				     "--rereplicate-rate", "256M", NULL };
	struct cluster cl = { 0 };
	struct vm v;

	(void)state;
	cluster_start(&cl, 3, args);
	replicas_filled(&v, "vm-refill");
	assert_int_equal(gvmt_proc_stop(&cl.donor[0], SIGKILL), 128 + SIGKILL);
	assert_true(gvmt_memserver_restart(&cl.donor[0], key_path,
					   (const char *[]){ "--capacity", "1G", NULL }));
	assert_int_equal(donor_used_pages(&cl.donor[0]), 0);
	vm_go(&v);
	vm_expect(&v, 'v', 120000);
	assert_true(gvmt_broker_wait_stat(sock_path, "degraded_extents", 0, 60000));
	assert_int_equal(gvmt_broker_stat(sock_path, "dead_donors"), 0);
	assert_true(gvmt_file_count(cl.broker.log, "lost namespace") >= 1);
	assert_true(donor_used_pages(&cl.donor[0]) > 0); /* refilled */
	/* the refilled copies hold the data: the other two go */
	assert_int_equal(gvmt_proc_stop(&cl.donor[1], SIGKILL), 128 + SIGKILL);
	assert_true(gvmt_broker_wait_stat(sock_path, "dead_donors", 1, 40000));
	assert_true(gvmt_broker_wait_stat(sock_path, "degraded_extents", 0, 60000));
	assert_int_equal(gvmt_proc_stop(&cl.donor[2], SIGKILL), 128 + SIGKILL);
	vm_go(&v);
	vm_expect(&v, 'v', 120000);
	assert_int_equal(vm_end(&v), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "poisoned_pages"), 0);
	cluster_stop(&cl);
}

/* Both copies of some extents lost: their pages not in memory give SIGBUS
 * (a memory error), never zeros; every other page reads back; the broker
 * counts exactly those pages as poisoned. */
static void test_pages_with_no_copy_left_raise_sigbus(void **state)
{
	struct cluster cl = { 0 };
	struct gvm_place_donor d[3];
	char bus_path[600], ns[128];
	unsigned long page;
	uint64_t sigbus = 0;
	int code;
	FILE *f;
	struct vm v;

	(void)state;
	cluster_start(&cl, 3, replica_args);
	gvmt_path(bus_path, sizeof(bus_path), "sigbus-pages.txt");
	f = fopen(bus_path, "w"); /* the VM's user writes it */
	assert_non_null(f);
	fclose(f);
	assert_int_equal(chmod(bus_path, 0666), 0);
	vm_start(&v, "vm-lost", 64 * MIB, false, 1, 0, bus_path);
	vm_expect(&v, 'f', 120000);
	settle();
	assert_true(gvmt_vm_namespace(cl.broker.log, "vm-lost", v.pid, ns, sizeof(ns) - 2));
	strcat(ns, ".0");
	for (int i = 0; i < 3; i++)
		d[i] = (struct gvm_place_donor){ cl.donor[i].addr, 1 };
	assert_int_equal(gvmt_proc_stop(&cl.donor[0], SIGKILL), 128 + SIGKILL);
	assert_int_equal(gvmt_proc_stop(&cl.donor[1], SIGKILL), 128 + SIGKILL);
	assert_true(gvmt_broker_wait_stat(sock_path, "dead_donors", 2, 10000));
	vm_go(&v);
	vm_expect(&v, 'v', 120000);
	assert_int_equal(vm_end(&v), 0);
	f = fopen(bus_path, "r");
	assert_non_null(f);
	while (fscanf(f, "%lu %d", &page, &code) == 2) {
		unsigned top[2];

		/* only where both copies were: the first two in placement order */
		gvm_place(ns, page / 32, d, 3, top, 2);
		assert_true((top[0] == 0 && top[1] == 1) || (top[0] == 1 && top[1] == 0));
		/* BUS_MCEERR_AR where the kernel has CONFIG_MEMORY_FAILURE */
		assert_true(code == BUS_MCEERR_AR || code == BUS_ADRERR);
		sigbus++;
	}
	fclose(f);
	assert_true(sigbus > 0);
	assert_true(sigbus < 64 * MIB / GVM_PAGE_SIZE / 2);
	assert_int_equal(gvmt_broker_stat(sock_path, "poisoned_pages"), sigbus);
	assert_true(gvmt_file_count(cl.broker.log, "poisoned") >= 1);
	cluster_stop(&cl);
}

/* ---- a donor cut off by its network ---- */

#define NETNS "gvmt-donor"
#define VETH_HOST "gvmt-vh"
#define VETH_NS "gvmt-vn"
#define HOST_IP "10.213.7.1"
#define NS_IP "10.213.7.2"
#define NET "10.213.7.0/24"

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static bool netns_setup(void)
{
	sh("ip netns del " NETNS " 2>/dev/null; ip link del " VETH_HOST " 2>/dev/null");
	sh("ip route del unreachable " NET " 2>/dev/null");
	/* While the link is down its route is gone: this one then answers
	 * "unreachable", so nothing meant for the donor leaves the machine. */
	return !sh("ip route add unreachable " NET " metric 4000") &&
	       !sh("ip netns add " NETNS) &&
	       !sh("ip link add " VETH_HOST " type veth peer name " VETH_NS) &&
	       !sh("ip link set " VETH_NS " netns " NETNS) &&
	       !sh("ip addr add " HOST_IP "/24 dev " VETH_HOST) &&
	       !sh("ip link set " VETH_HOST " up") &&
	       !sh("ip -n " NETNS " addr add " NS_IP "/24 dev " VETH_NS) &&
	       !sh("ip -n " NETNS " link set " VETH_NS " up") &&
	       !sh("ip -n " NETNS " link set lo up");
}

static void netns_teardown(void)
{
	sh("ip link del " VETH_HOST " 2>/dev/null; ip netns del " NETNS " 2>/dev/null");
	sh("ip route del unreachable " NET " 2>/dev/null");
}

/* The third donor lives in its own network namespace. Its link goes down:
 * its connections stall, it is declared dead, every page reads back from
 * the others and two copies are made again. The link comes back: the
 * donor is reconnected, emptied of its stale copies, and takes new ones. */
static void test_donor_cut_off_by_its_link_and_back(void **state)
{
	struct cluster cl = { 0 };
	struct vm v;

	(void)state;
	if (!netns_setup()) {
		netns_teardown();
		skip();
	}
	assert_true(gvmt_memserver_start_netns(&cl.donor[2], NETNS, NS_IP, key_path,
					       (const char *[]){ "--capacity", "1G", NULL }));
	cluster_start(&cl, 3, replica_args);
	replicas_filled(&v, "vm-link");
	assert_true(donor_used_pages(&cl.donor[2]) > 0);
	assert_int_equal(sh("ip link set " VETH_HOST " down"), 0);
	vm_go(&v);
	vm_expect(&v, 'v', 120000);
	assert_true(gvmt_broker_wait_stat(sock_path, "dead_donors", 1, 20000));
	assert_true(gvmt_broker_wait_stat(sock_path, "degraded_extents", 0, 60000));
	assert_int_equal(sh("ip link set " VETH_HOST " up"), 0);
	assert_true(gvmt_broker_wait_stat(sock_path, "dead_donors", 0, 30000));
	for (int i = 0; i < 100 && gvmt_file_count(cl.broker.log, "takes new ones") < 1; i++)
		usleep(100000);
	assert_true(gvmt_file_count(cl.broker.log, "takes new ones") >= 1);
	assert_int_equal(donor_used_pages(&cl.donor[2]), 0); /* its stale copies dropped */
	/* a loopback donor dies: the namespaced one takes copies again */
	assert_int_equal(gvmt_proc_stop(&cl.donor[0], SIGKILL), 128 + SIGKILL);
	assert_true(gvmt_broker_wait_stat(sock_path, "dead_donors", 1, 20000));
	assert_true(gvmt_broker_wait_stat(sock_path, "degraded_extents", 0, 60000));
	assert_true(donor_used_pages(&cl.donor[2]) > 0);
	vm_go(&v);
	vm_expect(&v, 'v', 120000);
	assert_int_equal(vm_end(&v), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "poisoned_pages"), 0);
	cluster_stop(&cl);
	netns_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_broker_stop_and_kill_lose_no_page),
		cmocka_unit_test(test_broker_restarts_while_the_vm_writes_lose_no_write),
		cmocka_unit_test(test_broker_restarts_lose_no_write_with_pages_received_into_memory),
		cmocka_unit_test(test_killed_donor_costs_nothing_with_two_replicas),
		cmocka_unit_test(test_donor_restarted_empty_is_refilled),
		cmocka_unit_test(test_pages_with_no_copy_left_raise_sigbus),
		cmocka_unit_test(test_donor_cut_off_by_its_link_and_back),
	};

	gvmt_main_init(key_path, sizeof(key_path), &key);
	have_user = gvmt_test_user(&test_uid, &test_gid, &gvm_gid);
	return cmocka_run_group_tests_name("failover", tests, NULL, NULL);
}
