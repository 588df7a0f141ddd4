/* test_membership.c: placement survives membership changes. Real
 * gvm-memserver and gvm-broker processes, the donors given by
 * --donors-file, and an unprivileged libgvmmem client whose every page is
 * checked against its pattern after each change:
 * - 2048 donor addresses in one file (127.0.X.Y in a private network
 *   namespace, four memservers behind them): pages spread over hundreds
 *   of them and read back;
 * - a heavy donor added (broker restarted: the location map comes back
 *   from the donors), a weight changed and a donor removed (SIGHUP): every
 *   page reads back after each, and the removed donor, once drained, is
 *   killed without a page lost;
 * - connections: none before use, one kept to each donor holding copies
 *   after the idle time, none to a donor holding nothing;
 * - a donors file made garbage, empty or gone: SIGHUP keeps the donors. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "dclient.h"
#include "gvmmem.h"
#include "pattern.h"
#include "procs.h"

#define MIB (1u << 20)
#define PAGES(bytes) ((bytes) / GVM_PAGE_SIZE)
#define ZERO_EVERY 9u
#define VM_OP_MS 180000      /* one fill or verify, under ASan */
#define DRAIN_MS 60000       /* a removed donor's copies moved elsewhere */
#define CONNS_MS 10000       /* idle connections gone (--idle-timeout 1) */
#define DONORS_MAX 4

static char key_path[512];
static struct gvm_key key;
static uid_t test_uid;
static gid_t test_gid, gvm_gid;
static bool have_user;

/* The running test's daemons; the teardown stops what a failed test left. */
static struct cluster {
	struct gvmt_proc donor[DONORS_MAX], broker;
	char sock[512], file[512], listing[512];
	const char *args[16]; /* the broker's, after --donors-file FILE */
} cl;

static uint64_t stat_of(const char *name)
{
	return gvmt_broker_stat(cl.sock, name);
}

/* ---- the VM: a forked, unprivileged client taking orders on a pipe ---- */

enum vm_op { VM_WRITE = 'w', VM_VERIFY = 'v', VM_QUIT = 'q' };

struct vm_cmd {
	char op;
	uint64_t first, count; /* pages, for VM_WRITE */
};

struct vm_result {
	uint64_t wrong, bus; /* pages that did not match, that raised SIGBUS */
};

static struct vm {
	pid_t pid;
	int cmd[2], res[2];
} vm;

static sigjmp_buf bus_jump;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jump, 1);
}

/* Every page against what was last written there (gen[p]: the pattern's
 * seed; 0: never written, so all zero). */
static struct vm_result vm_check(const uint8_t *mem, const uint16_t *gen, size_t npages)
{
	struct sigaction sa = { .sa_handler = on_sigbus, .sa_flags = SA_NODEFER };
	static uint8_t want[GVM_PAGE_SIZE];
	struct vm_result r = { 0 };

	sigaction(SIGBUS, &sa, NULL);
	for (volatile size_t p = 0; p < npages; p++) {
		if (sigsetjmp(bus_jump, 1)) {
			r.bus++;
			continue;
		}
		if (gen[p])
			gvm_pattern_fill_page(want, gen[p], p, ZERO_EVERY);
		else
			memset(want, 0, sizeof(want));
		r.wrong += memcmp(mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
	}
	return r;
}

static void vm_main(const char *name, size_t size)
{
	struct gvm_region reg = { "ram", NULL, size, -1, 0, 0 };
	size_t npages = PAGES(size);
	uint16_t *gen = calloc(npages, sizeof(*gen));
	uint16_t round = 0;
	struct gvm_session *s;
	uint8_t *mem;
	int err;

	if (have_user)
		gvmt_become(test_uid, test_gid, gvm_gid);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	CHILD_CHECK(gen, 70, "out of memory");
	reg.memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	CHILD_CHECK(reg.memfd >= 0 && !ftruncate(reg.memfd, (off_t)size), 71, "memfd");
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, reg.memfd, 0);
	CHILD_CHECK(mem != MAP_FAILED, 72, "mmap");
	reg.host_addr = mem;
	s = gvm_attach(cl.sock, name, &reg, 1, &err);
	CHILD_CHECK(s, 73, "attach %s: %s", name, gvm_strerror(err));
	for (;;) {
		struct vm_result r = { 0 };
		struct vm_cmd c;

		CHILD_CHECK(read(vm.cmd[0], &c, sizeof(c)) == sizeof(c), 74, "%s: no order", name);
		if (c.op == VM_QUIT) {
			gvm_detach(s);
			_exit(0);
		}
		if (c.op == VM_WRITE) {
			round++;
			for (uint64_t p = c.first; p < c.first + c.count && p < npages; p++) {
				gvm_pattern_fill_page(mem + p * GVM_PAGE_SIZE, round, p,
						      ZERO_EVERY);
				gen[p] = round;
			}
		} else {
			r = vm_check(mem, gen, npages);
		}
		CHILD_CHECK(write(vm.res[1], &r, sizeof(r)) == sizeof(r), 75, "%s: answer", name);
	}
}

static void vm_start(const char *name, size_t size)
{
	assert_int_equal(pipe(vm.cmd), 0);
	assert_int_equal(pipe(vm.res), 0);
	vm.pid = fork();
	assert_true(vm.pid >= 0);
	if (!vm.pid)
		vm_main(name, size);
}

static int vm_wait(void)
{
	int status;

	assert_int_equal(waitpid(vm.pid, &status, 0), vm.pid);
	vm.pid = 0;
	for (int i = 0; i < 2; i++) {
		close(vm.cmd[i]);
		close(vm.res[i]);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Has the VM do op and waits for its answer; meanwhile, if max_conns is
 * not NULL, keeps there the most donor connections the broker had. */
static struct vm_result vm_do(char op, uint64_t first, uint64_t count, uint64_t *max_conns)
{
	struct vm_cmd c = { op, first, count };
	struct pollfd pf = { vm.res[0], POLLIN, 0 };
	struct vm_result r;
	int step = max_conns ? 50 : VM_OP_MS;

	assert_int_equal(write(vm.cmd[1], &c, sizeof(c)), sizeof(c));
	for (int waited = 0; poll(&pf, 1, step) != 1; waited += step) {
		uint64_t conns = max_conns ? stat_of("donor_connections") : 0;

		if (waited + step >= VM_OP_MS)
			fail_msg("the VM did not finish '%c' in %d s", op, VM_OP_MS / 1000);
		if (conns != UINT64_MAX && conns > *max_conns)
			*max_conns = conns;
	}
	if (read(vm.res[0], &r, sizeof(r)) != sizeof(r)) {
		int rc = vm_wait();

		fail_msg("the VM ended during '%c': status %d (see stderr)", op, rc);
	}
	return r;
}

static void vm_write(uint64_t first, uint64_t count)
{
	vm_do(VM_WRITE, first, count, NULL);
}

/* Every page reads back what was last written to it. */
static void vm_verify(const char *when)
{
	struct vm_result r = vm_do(VM_VERIFY, 0, 0, NULL);

	if (r.wrong || r.bus)
		fail_msg("%s: %llu pages wrong, %llu gave SIGBUS", when,
			 (unsigned long long)r.wrong, (unsigned long long)r.bus);
}

static void vm_quit(void)
{
	struct vm_cmd c = { VM_QUIT, 0, 0 };

	assert_int_equal(write(vm.cmd[1], &c, sizeof(c)), sizeof(c));
	assert_int_equal(vm_wait(), 0);
}

/* ---- the cluster ---- */

static void cluster_paths(const char *name)
{
	char base[64];

	snprintf(base, sizeof(base), "%s.sock", name);
	gvmt_path(cl.sock, sizeof(cl.sock), base);
	snprintf(base, sizeof(base), "%s.donors", name);
	gvmt_path(cl.file, sizeof(cl.file), base);
	snprintf(base, sizeof(base), "%s.listing", name);
	gvmt_path(cl.listing, sizeof(cl.listing), base);
}

/* Replaces the donors file at once (a rename), so no reload reads half. */
static void donors_write(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void donors_write(const char *fmt, ...)
{
	char tmp[600];
	va_list ap;
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", cl.file);
	f = fopen(tmp, "w");
	assert_non_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, cl.file), 0);
}

static void donors_start(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		assert_true(gvmt_memserver_start(&cl.donor[i], key_path,
						 (const char *[]){ "--capacity", "1G", NULL }));
}

static bool broker_start(void)
{
	const char *extra[20] = { "--donors-file", cl.file };

	for (unsigned i = 0; cl.args[i]; i++)
		extra[2 + i] = cl.args[i];
	return gvmt_broker_start(&cl.broker, key_path, cl.sock, (const char *[]){ NULL }, extra);
}

static void cluster_start(const char *const *args)
{
	for (unsigned i = 0; args[i] && i < 15; i++)
		cl.args[i] = args[i];
	assert_true(broker_start());
}

static void cluster_stop(void)
{
	assert_int_equal(gvmt_proc_stop(&cl.broker, SIGTERM), 0);
	for (unsigned i = 0; i < DONORS_MAX; i++)
		if (cl.donor[i].pid)
			gvmt_proc_stop(&cl.donor[i], SIGKILL);
	memset(&cl, 0, sizeof(cl));
}

/* Eviction has moved what it will (no write-back for 100 ms), and what
 * the VM holds is within the budget: the rest is on the donors, and a
 * verify reads it from there. */
static void settle(void)
{
	uint64_t last = UINT64_MAX, resident, budget;

	for (int i = 0; i < 100; i++) {
		uint64_t now = stat_of("writebacks");

		if (now == last)
			break;
		last = now;
		usleep(100000);
	}
	resident = stat_of("resident_bytes");
	budget = stat_of("budget_bytes");
	if (resident > budget)
		fail_msg("%llu MiB resident once eviction settled, over the %llu MiB budget "
			 "(writeback_errors %llu)", (unsigned long long)(resident >> 20),
			 (unsigned long long)(budget >> 20),
			 (unsigned long long)stat_of("writeback_errors"));
}

/* addr's line of `gvmctl donors`: false if it has none. */
static bool donor_listed(const char *addr, struct gvmt_donor_row *row)
{
	assert_int_equal(gvmt_gvmctl_donors(cl.sock, cl.listing), 0);
	return gvmt_donors_row(cl.listing, addr, row);
}

static struct gvmt_donor_row donor_row(const char *addr)
{
	struct gvmt_donor_row row;

	if (!donor_listed(addr, &row))
		fail_msg("gvmctl donors does not list %s", addr);
	return row;
}

static uint64_t donor_used_pages(const struct gvmt_proc *p)
{
	Gvm__MemserverStats *m = gvmt_donor_stats(p->addr, &key);
	uint64_t used;

	assert_non_null(m);
	used = m->used_pages;
	gvm__memserver_stats__free_unpacked(m, NULL);
	return used;
}

/* Sends SIGHUP and waits for the broker's verdict on the file: true if it
 * applied it ("donors from FILE: ..."), false if it kept the donors. */
static bool broker_reload(void)
{
	int applied = gvmt_file_count(cl.broker.log, "donors from "),
	    kept = gvmt_file_count(cl.broker.log, "the donors stay as they were");

	assert_int_equal(kill(cl.broker.pid, SIGHUP), 0);
	for (int i = 0; i < 500; i++) {
		if (gvmt_file_count(cl.broker.log, "donors from ") > applied)
			return true;
		if (gvmt_file_count(cl.broker.log, "the donors stay as they were") > kept)
			return false;
		usleep(20000);
	}
	fail_msg("no word on SIGHUP in 10 s (see %s)", cl.broker.log);
	return false;
}

/* Waits until addr is removed and no draining donor holds a copy. */
static void wait_drained(const char *addr)
{
	struct gvmt_donor_row row = { 0 };

	for (int waited = 0; waited < DRAIN_MS; waited += 200) {
		row = donor_row(addr);
		if (!strcmp(row.state, "removed") && stat_of("draining_extents") == 0)
			return;
		usleep(200000);
	}
	fail_msg("donor %s not drained in %d s: state %s, %llu extents, draining_extents %llu",
		 addr, DRAIN_MS / 1000, row.state, (unsigned long long)row.extents,
		 (unsigned long long)stat_of("draining_extents"));
}

static int teardown(void **state)
{
	(void)state;
	if (vm.pid > 0) {
		kill(vm.pid, SIGKILL);
		vm_wait();
	}
	if (cl.broker.pid > 0)
		gvmt_proc_stop(&cl.broker, SIGKILL);
	for (unsigned i = 0; i < DONORS_MAX; i++)
		if (cl.donor[i].pid > 0)
			gvmt_proc_stop(&cl.donor[i], SIGKILL);
	memset(&cl, 0, sizeof(cl));
	return 0;
}

/* ---- 2048 addresses ---- */

#define WIDE_ADDRS 2048u
#define WIDE_SERVERS 4u

/* What the namespace's holder tells the test. */
struct wide_report {
	bool ok;
	bool no_netns;
	char why[600];
	char broker_log[512];
};

static pid_t wide_pid;       /* the holder, a child of the test */
static int wide_stop = -1;  /* a byte or EOF on it stops the holder */

/* In the holder: a network namespace of its own with lo only, four
 * memservers listening on 0.0.0.0 there (nothing outside can reach them),
 * a donors file of WIDE_ADDRS addresses 127.0.X.Y over them and a broker.
 * Reports on report, waits for a byte (or EOF) on stop, then stops the
 * broker (SIGTERM) and exits with its status. */
static void wide_holder(int report, int stop)
{
	struct gvmt_proc ms[WIDE_SERVERS] = { 0 }, broker = { 0 };
	struct wide_report r = { 0 };
	char c;
	int rc;
	FILE *f;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (unshare(CLONE_NEWNET)) {
		snprintf(r.why, sizeof(r.why), "unshare(CLONE_NEWNET): %s", strerror(errno));
		r.no_netns = true;
		goto out;
	}
	if (system("ip link set lo up") != 0) {
		snprintf(r.why, sizeof(r.why), "ip link set lo up: failed");
		r.no_netns = true;
		goto out;
	}
	for (unsigned k = 0; k < WIDE_SERVERS; k++)
		if (!gvmt_memserver_start_at(&ms[k], "0.0.0.0", 0, key_path,
					     (const char *[]){ "--capacity", "1G", NULL })) {
			snprintf(r.why, sizeof(r.why), "gvm-memserver --listen 0.0.0.0:PORT did "
				 "not start: see %s", ms[k].log);
			goto out;
		}
	f = fopen(cl.file, "w");
	if (!f) {
		snprintf(r.why, sizeof(r.why), "%s: %s", cl.file, strerror(errno));
		goto out;
	}
	fprintf(f, "# %u addresses, %u memservers behind them\n", WIDE_ADDRS, WIDE_SERVERS);
	for (unsigned i = 0; i < WIDE_ADDRS; i++)
		fprintf(f, "127.0.%u.%u:%s\n", i / 250, i % 250 + 1,
			strrchr(ms[i % WIDE_SERVERS].addr, ':') + 1);
	fclose(f);
	if (!gvmt_broker_start(&broker, key_path, cl.sock, (const char *[]){ NULL },
			       (const char *[]){ "--donors-file", cl.file, "--budget", "32M",
						 NULL })) {
		snprintf(r.why, sizeof(r.why), "gvm-broker did not start: see %s", broker.log);
		goto out;
	}
	snprintf(r.broker_log, sizeof(r.broker_log), "%s", broker.log);
	r.ok = true;
out:
	if (write(report, &r, sizeof(r)) != sizeof(r) || !r.ok)
		_exit(1);
	(void)!read(stop, &c, 1);
	rc = gvmt_proc_stop(&broker, SIGTERM);
	for (unsigned k = 0; k < WIDE_SERVERS; k++)
		gvmt_proc_stop(&ms[k], SIGTERM);
	_exit(rc);
}

static int wide_teardown(void **state)
{
	if (wide_pid > 0) {
		kill(wide_pid, SIGKILL); /* its daemons die with it */
		waitpid(wide_pid, NULL, 0);
		wide_pid = 0;
	}
	if (wide_stop >= 0) {
		close(wide_stop);
		wide_stop = -1;
	}
	return teardown(state);
}

/* 2048 addresses in one donors file, four memservers behind them: the
 * broker takes them all, and 128 MiB under a 32 MiB budget spread over
 * hundreds of them read back page for page. */
static void test_2048_donor_addresses_serve_every_page(void **state)
{
	struct wide_report r;
	struct pollfd pf;
	int report[2], stop[2], status;
	unsigned listed = 0, holders = 0, others = 0;
	uint64_t remote;
	char line[512];
	FILE *f;

	(void)state;
	if (geteuid() != 0) {
		print_message("needs root for a network namespace of its own: skipped\n");
		skip();
	}
	cluster_paths("wide");
	assert_int_equal(pipe(report), 0);
	assert_int_equal(pipe(stop), 0);
	wide_pid = fork();
	assert_true(wide_pid >= 0);
	if (!wide_pid) {
		close(report[0]);
		close(stop[1]);
		wide_holder(report[1], stop[0]);
	}
	close(report[1]);
	close(stop[0]);
	wide_stop = stop[1];
	pf = (struct pollfd){ report[0], POLLIN, 0 };
	assert_int_equal(poll(&pf, 1, 60000), 1);
	assert_int_equal(read(report[0], &r, sizeof(r)), sizeof(r));
	close(report[0]);
	if (r.no_netns) {
		print_message("%s: skipped\n", r.why);
		skip();
	}
	if (!r.ok)
		fail_msg("%s", r.why);
	assert_int_equal(stat_of("donors"), WIDE_ADDRS);
	/* nothing asked yet: not one connection */
	assert_int_equal(stat_of("donor_connections"), 0);

	vm_start("vm-wide", 128 * MIB);
	vm_write(0, PAGES(128 * MIB));
	settle();
	assert_true(stat_of("evictions") > 0);
	remote = stat_of("remote_pages");
	vm_verify("128 MiB over 2048 addresses");
	assert_true(stat_of("remote_reads") > 0);
	/* what is not resident came from the donors */
	assert_true(stat_of("remote_pages") - remote >= PAGES(64 * MIB));
	assert_int_equal(stat_of("poisoned_pages"), 0);
	assert_int_equal(stat_of("dead_donors"), 0);
	assert_int_equal(stat_of("donors"), WIDE_ADDRS);

	assert_int_equal(gvmt_gvmctl_donors(cl.sock, cl.listing), 0);
	assert_int_equal(gvmt_file_count_lines(cl.listing, ""), WIDE_ADDRS + 1);
	assert_int_equal(gvmt_file_count_lines(cl.listing, "ADDRESS "), 1);
	f = fopen(cl.listing, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		struct gvmt_donor_row row;
		unsigned long long extents;

		if (sscanf(line, "%127s %15s %u %llu %u", row.addr, row.state, &row.weight,
			   &extents, &row.conns) != 5)
			continue;
		listed++;
		holders += extents > 0;
		if (strcmp(row.state, "up") && strcmp(row.state, "idle") && others++ < 4)
			print_message("donor %s: %s\n", row.addr, row.state);
	}
	fclose(f);
	assert_int_equal(listed, WIDE_ADDRS);
	if (others) /* none down, dead, draining or removed */
		fail_msg("%u of %u donors neither up nor idle", others, WIDE_ADDRS);
	/* ~800 extents written: they went to hundreds of addresses */
	assert_true(holders >= 256);
	assert_int_equal(gvmt_file_count(r.broker_log, "donors from "), 1);
	assert_int_equal(gvmt_file_count(r.broker_log, ": 2048 listed ("), 1);

	vm_quit();
	assert_int_equal(write(wide_stop, "s", 1), 1);
	close(wide_stop);
	wide_stop = -1;
	assert_int_equal(waitpid(wide_pid, &status, 0), wide_pid);
	wide_pid = 0;
	/* the holder exits with the broker's status: a clean stop */
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	memset(&cl, 0, sizeof(cl));
}

/* ---- donors added, reweighed and removed ---- */

/* 64 MiB written over A and B (one copy each, 16 MiB budget); then:
 * a. C, as heavy as A and B together, is listed and the broker restarted:
 *    the re-attached VM's locations come back from A and B (LIST), every
 *    page reads back, and new extents go to C too;
 * b. A's weight 1 -> 5 (SIGHUP): nothing moves, every page reads back;
 * c. B is no longer listed (SIGHUP): its copies move to A and C, it is
 *    removed and its namespaces dropped; every page reads back, and again
 *    once B is killed: nothing is read from it any more. */
static void test_membership_changes_keep_every_page(void **state)
{
	const uint64_t first = PAGES(64 * MIB), more = PAGES(32 * MIB);
	struct gvmt_donor_row a, b, c, row;
	const char *A, *B, *C;
	uint64_t rereplicated;
	bool same = false;

	(void)state;
	cluster_paths("changes");
	donors_start(3);
	A = cl.donor[0].addr;
	B = cl.donor[1].addr;
	C = cl.donor[2].addr;
	donors_write("%s 1\n%s 1\n", A, B);
	cluster_start((const char *[]){ "--replicas", "1", "--budget", "16M",
					"--rereplicate-rate", "1G", NULL });
	assert_int_equal(stat_of("donors"), 2);
	vm_start("vm-members", 96 * MIB);
	vm_write(0, first);
	settle();
	assert_true(stat_of("evictions") > 0);
	a = donor_row(A);
	b = donor_row(B);
	assert_true(a.extents > 0 && b.extents > 0);
	assert_false(donor_listed(C, &row));

	/* a. C added, the broker restarted */
	donors_write("%s 1\n%s 1\n%s 2\n", A, B, C);
	assert_int_equal(gvmt_proc_stop(&cl.broker, SIGTERM), 0);
	assert_true(broker_start());
	assert_true(gvmt_broker_wait_stat(cl.sock, "vms", 1, 20000)); /* it re-attached */
	assert_int_equal(stat_of("donors"), 3);
	for (int i = 0; i < 100 && !same; i++) { /* the map, from the donors' LIST */
		same = donor_row(A).extents == a.extents && donor_row(B).extents == b.extents;
		if (!same)
			usleep(200000);
	}
	if (!same)
		fail_msg("after the restart A holds %llu extents (%llu before), B %llu (%llu)",
			 (unsigned long long)donor_row(A).extents, (unsigned long long)a.extents,
			 (unsigned long long)donor_row(B).extents, (unsigned long long)b.extents);
	vm_verify("after the restart with C added");
	vm_write(first, more); /* extents never written: placed anew */
	settle();
	c = donor_row(C);
	assert_true(c.extents > 0);
	assert_int_equal(c.weight, 2);
	assert_true(donor_used_pages(&cl.donor[2]) > 0);
	vm_verify("after new extents went to C");

	/* b. A's weight 1 -> 5 */
	a = donor_row(A);
	b = donor_row(B);
	c = donor_row(C);
	donors_write("%s 5\n%s 1\n%s 2\n", A, B, C);
	assert_true(broker_reload());
	assert_int_equal(gvmt_file_count(cl.broker.log, "weight 1 -> 5"), 1);
	row = donor_row(A);
	assert_int_equal(row.weight, 5);
	assert_int_equal(row.extents, a.extents); /* new placements only: nothing moves */
	assert_int_equal(donor_row(B).extents, b.extents);
	assert_int_equal(donor_row(C).extents, c.extents);
	assert_int_equal(stat_of("draining_extents"), 0);
	vm_verify("after A's weight went to 5");

	/* c. B removed */
	rereplicated = stat_of("rereplicated_pages");
	donors_write("%s 5\n%s 2\n", A, C);
	assert_true(broker_reload());
	assert_true(gvmt_file_count(cl.broker.log, "no longer listed") >= 1);
	wait_drained(B);
	assert_true(gvmt_file_wait(cl.broker.log, "drained", 1, 1000));
	assert_int_equal(donor_row(B).extents, 0);
	assert_int_equal(stat_of("donors"), 2);
	assert_true(stat_of("rereplicated_pages") > rereplicated);
	for (int i = 0; i < 250 && donor_used_pages(&cl.donor[1]); i++)
		usleep(20000);
	assert_int_equal(donor_used_pages(&cl.donor[1]), 0); /* our namespaces dropped there */
	vm_verify("after B was drained");
	assert_int_equal(gvmt_proc_stop(&cl.donor[1], SIGKILL), 128 + SIGKILL);
	vm_verify("after B was killed");
	assert_int_equal(stat_of("poisoned_pages"), 0);
	assert_int_equal(stat_of("dead_donors"), 0); /* a removed donor is no concern */
	vm_quit();
	cluster_stop();
}

/* ---- connections ---- */

/* --idle-timeout 1: no connection before use; once the VM's pages are on
 * A, B and C and nothing moves, one connection stays to each; C drained
 * and removed keeps none; D added while nothing is written never gets
 * one. D listens on 127.0.0.2 at A's port: a port the broker's sandbox
 * allowed at start. */
static void test_idle_connections_close_but_one_to_each_holder(void **state)
{
	struct gvmt_proc *d = &cl.donor[3];
	struct gvmt_donor_row row;
	uint64_t max_conns = 0;
	char added[200];
	const char *A, *B, *C;
	bool done = false;

	(void)state;
	cluster_paths("idle");
	donors_start(3);
	A = cl.donor[0].addr;
	B = cl.donor[1].addr;
	C = cl.donor[2].addr;
	assert_true(gvmt_memserver_start_at(d, "127.0.0.2", atoi(strrchr(A, ':') + 1), key_path,
					    (const char *[]){ "--capacity", "1G", NULL }));
	donors_write("%s 1\n%s 1\n%s 1\n", A, B, C);
	cluster_start((const char *[]){ "--idle-timeout", "1", "--budget", "16M",
					"--rereplicate-rate", "1G", NULL });
	usleep(1000000);
	assert_int_equal(stat_of("donor_connections"), 0); /* none before use */
	vm_start("vm-idle", 48 * MIB);
	vm_do(VM_WRITE, 0, PAGES(48 * MIB), &max_conns);
	settle();
	/* what closes below: write-backs had more than one open to some donor */
	if (max_conns <= 3)
		fail_msg("at most %llu donor connections during the fill: nothing to close",
			 (unsigned long long)max_conns);
	assert_true(donor_row(A).extents > 0);
	assert_true(donor_row(B).extents > 0);
	assert_true(donor_row(C).extents > 0);
	for (int waited = 0; waited < CONNS_MS && !done; waited += 200) {
		done = donor_row(A).conns == 1 && donor_row(B).conns == 1 &&
		       donor_row(C).conns == 1;
		if (!done)
			usleep(200000);
	}
	if (!done)
		fail_msg("idle holders keep one connection each: A %u, B %u, C %u",
			 donor_row(A).conns, donor_row(B).conns, donor_row(C).conns);

	/* C leaves: drained, it holds nothing, its connection goes */
	donors_write("%s 1\n%s 1\n", A, B);
	assert_true(broker_reload());
	wait_drained(C);
	done = false;
	for (int waited = 0; waited < CONNS_MS && !done; waited += 200) {
		done = donor_row(C).conns == 0;
		if (!done)
			usleep(200000);
	}
	if (!done)
		fail_msg("removed donor C still has %u connections %d s on", donor_row(C).conns,
			 CONNS_MS / 1000);
	usleep(2500000); /* over twice the idle time: the holders keep theirs */
	assert_int_equal(donor_row(A).conns, 1);
	assert_int_equal(donor_row(B).conns, 1);
	assert_int_equal(donor_row(C).conns, 0);
	assert_int_equal(stat_of("donor_connections"), 2);
	vm_verify("after C was drained");

	/* D added: nothing to write, so no connection */
	donors_write("%s 1\n%s 1\n%s 1\n", A, B, d->addr);
	assert_true(broker_reload());
	snprintf(added, sizeof(added), "donor %s: added, weight 1", d->addr);
	assert_int_equal(gvmt_file_count(cl.broker.log, added), 1);
	assert_int_equal(stat_of("donors"), 3);
	usleep(1500000);
	row = donor_row(d->addr);
	assert_string_equal(row.state, "idle");
	assert_int_equal(row.extents, 0);
	assert_int_equal(row.conns, 0);
	assert_int_equal(donor_row(C).conns, 0);
	vm_quit();
	cluster_stop();
}

/* ---- a bad donors file ---- */

/* The donors file made garbage, then only a comment (no donor), then
 * removed: each SIGHUP logs why and keeps the donors as they are, and
 * every page reads back; a good file then applies again. */
static void test_bad_donors_file_keeps_the_donors(void **state)
{
	struct gvmt_donor_row a, b, row;
	const char *A, *B;

	(void)state;
	cluster_paths("bad");
	donors_start(2);
	A = cl.donor[0].addr;
	B = cl.donor[1].addr;
	donors_write("%s 1\n%s 1\n", A, B);
	cluster_start((const char *[]){ "--budget", "16M", NULL });
	vm_start("vm-bad", 32 * MIB);
	vm_write(0, PAGES(32 * MIB));
	settle();
	a = donor_row(A);
	b = donor_row(B);
	assert_true(a.extents > 0 && b.extents > 0);
	for (int round = 0; round < 3; round++) {
		if (round == 0)
			donors_write("this is not a donor\n%s 1\n", A);
		else if (round == 1)
			donors_write("# no donor at all\n");
		else
			assert_int_equal(unlink(cl.file), 0);
		assert_false(broker_reload());
		assert_true(gvmt_proc_alive(&cl.broker));
		assert_int_equal(stat_of("donors"), 2);
		assert_int_equal(stat_of("draining_extents"), 0);
		row = donor_row(A);
		assert_true(!strcmp(row.state, "up") || !strcmp(row.state, "idle"));
		assert_int_equal(row.weight, 1);
		assert_int_equal(row.extents, a.extents);
		row = donor_row(B);
		assert_true(!strcmp(row.state, "up") || !strcmp(row.state, "idle"));
		assert_int_equal(row.extents, b.extents);
	}
	assert_int_equal(gvmt_file_count(cl.broker.log, "the donors stay as they were"), 3);
	vm_verify("after three bad reloads");
	donors_write("%s 1\n%s 1\n", A, B);
	assert_true(broker_reload());
	assert_int_equal(gvmt_file_count(cl.broker.log,
					 "2 listed (0 new, 0 back, 0 reweighed, 0 draining now)"),
			 1);
	vm_quit();
	cluster_stop();
}

/* A broker whose open-file limit is below what its listed donors may
 * need says so when a reload lists more; it still serves (connections
 * open only when used). */
static void test_a_low_open_file_limit_is_logged(void **state)
{
	struct rlimit low = { 512, 512 };
	char *list = malloc(700 * 24), *p;

	(void)state;
	assert_non_null(list);
	cluster_paths("nofile");
	p = list;
	for (unsigned i = 0; i < 100; i++) /* 100 x 2 + 256 spare < 512: quiet */
		p += sprintf(p, "127.0.%u.%u:7700\n", 60 + i / 250, i % 250 + 1);
	donors_write("%s", list);
	cluster_start((const char *[]){ NULL });
	assert_int_equal(prlimit(cl.broker.pid, RLIMIT_NOFILE, &low, NULL), 0);
	for (unsigned i = 100; i < 700; i++)
		p += sprintf(p, "127.0.%u.%u:7700\n", 60 + i / 250, i % 250 + 1);
	donors_write("%s", list);
	assert_true(broker_reload());
	assert_int_equal(stat_of("donors"), 700);
	assert_true(gvmt_file_wait(cl.broker.log, "open-file limit 512: 700 donors x 2 "
						  "connections may need 1656", 1, 5000));
	assert_int_equal(gvmt_file_count(cl.broker.log, "open-file limit"), 1);
	assert_true(gvmt_proc_alive(&cl.broker));
	free(list);
	cluster_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_2048_donor_addresses_serve_every_page,
					  wide_teardown),
		cmocka_unit_test_teardown(test_membership_changes_keep_every_page, teardown),
		cmocka_unit_test_teardown(test_idle_connections_close_but_one_to_each_holder,
					  teardown),
		cmocka_unit_test_teardown(test_bad_donors_file_keeps_the_donors, teardown),
		cmocka_unit_test_teardown(test_a_low_open_file_limit_is_logged, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	gvmt_path(key_path, sizeof(key_path), "cluster.key");
	gvmt_make_key(key_path, 32, &key);
	have_user = gvmt_test_user(&test_uid, &test_gid, &gvm_gid);
	chmod(gvmt_dir(), 0755);
	if (getenv("GVM_TEST_FILTER")) /* e.g. GVM_TEST_FILTER='*idle*' */
		cmocka_set_test_filter(getenv("GVM_TEST_FILTER"));
	return cmocka_run_group_tests_name("membership", tests, NULL, NULL);
}
