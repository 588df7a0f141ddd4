/* test_qemu.c: end to end. Stock Debian qemu-system-x86_64 (TCG) boots
 * Debian's kernel and the project's busybox initramfs (build/guest) through
 * gvm-qemu as the unprivileged user gvmtest, its RAM attached to gvm-broker
 * by libgvm-qemu-hook.so and served by two real gvm-memserver donors under
 * a budget well below the guest's RAM. The guest fills 3/4 of its memory,
 * checksums, copies and checksums again; its serial console is grepped for
 * the markers. Also: two guests on one pool, a guest killed with SIGKILL
 * half-way while another keeps running, a guest that keeps its checksums
 * across a broker restart and a donor's death (two replicas over three
 * donors), and the hook leaving QEMU's memory
 * alone in full-share and no-broker modes and for other memory backends.
 * Pinned VMs (VFIO): gvm-qemu --pinned/vfio-pci detection and --hugepages,
 * the hook refusing /dev/vfio/ while RAM is attached unpinned (with
 * hook-probe standing in for QEMU), a pinned guest that stays resident,
 * and one the budget has no room for. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "procs.h"

#define GUEST_MEM "256M"
#define BUDGET "96M"
#define BOOT_TIMEOUT_S 300
#define PINNED_MEM_MIB 96     /* a pinned guest: the least this guest kernel boots in */
#define PINNED_BUDGET "160M"  /* a broker with room for it */
#define PINNED_OVER_MIB 128   /* a pinned guest the BUDGET broker has no room for */
#define PROBE_MIB 16        /* hook-probe's RAM */
#define HUGE_BUDGET "128M"  /* half of a --hugepages guest's GUEST_MEM */
#define PAGE_BYTES 4096u

static char key_path[512], sock_path[512], guest_dir[512];
static uid_t test_uid;
static gid_t test_gid, gvm_gid;
static struct gvmt_proc donor[2], broker;

struct guest {
	pid_t pid;
	char name[64];
	char log[512];
	int status;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* Boots a guest through gvm-qemu as gvmtest, attached to the test's
 * broker (or to endpoint if not NULL). env: "NAME=VALUE" strings
 * set in the child (NULL-terminated, may be NULL); opts: more gvm-qemu
 * options (may be NULL); extra: QEMU arguments replacing the default
 * -m GUEST_MEM (NULL: the default). */
static void guest_start_opts(struct guest *g, const char *name, const char *memtest,
			     const char *endpoint, const char *const *env,
			     const char *const *opts, const char *const *extra)
{
	static const char *const common[] = { "-accel", "tcg", "-nographic", "-no-reboot",
					      "-nodefaults", "-serial", "stdio" };
	char gvm_qemu[512], kernel[600], initrd[600], append[256];
	const char *argv[64];
	int n = 0, fd;

	snprintf(g->name, sizeof(g->name), "%s", name);
	snprintf(g->log, sizeof(g->log), "%s/%s.log", gvmt_dir(), name);
	unlink(g->log);
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", guest_dir);
	snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio.gz", guest_dir);
	snprintf(append, sizeof(append), "console=ttyS0 panic=-1 quiet gvm.memtest=%s", memtest);
	argv[n++] = gvmt_bin("gvm-qemu", gvm_qemu, sizeof(gvm_qemu));
	argv[n++] = "--broker";
	argv[n++] = endpoint ? endpoint : sock_path;
	argv[n++] = "--vm-name";
	argv[n++] = name;
	while (opts && *opts && n < 20)
		argv[n++] = *opts++;
	argv[n++] = "--";
	if (extra) {
		while (*extra && n < 40)
			argv[n++] = *extra++;
	} else {
		argv[n++] = "-m";
		argv[n++] = GUEST_MEM;
	}
	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
		argv[n++] = common[i];
	argv[n++] = "-kernel";
	argv[n++] = kernel;
	argv[n++] = "-initrd";
	argv[n++] = initrd;
	argv[n++] = "-append";
	argv[n++] = append;
	argv[n] = NULL;

	fd = open(g->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	g->pid = fork();
	assert_true(g->pid >= 0);
	if (g->pid == 0) {
		gvmt_become(test_uid, test_gid, gvm_gid);
		/* After the credential change, which clears it: QEMU dies
		 * with this test program. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (; env && *env; env++)
			putenv((char *)*env);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
}

static void guest_start(struct guest *g, const char *name, const char *memtest,
			const char *endpoint, const char *const *env, const char *const *extra)
{
	guest_start_opts(g, name, memtest, endpoint, env, NULL, extra);
}

/* Waits for the guest's QEMU to exit; kills it after timeout_s. Returns
 * its exit status (128+signal if killed). */
static int guest_wait(struct guest *g, int timeout_s)
{
	double end = now_s() + timeout_s;
	int status;
	pid_t r;

	while ((r = waitpid(g->pid, &status, WNOHANG)) == 0 && now_s() < end)
		usleep(100 * 1000);
	if (r == 0) {
		fprintf(stderr, "guest %s still running after %d s; killed\n", g->name, timeout_s);
		kill(g->pid, SIGKILL);
		waitpid(g->pid, &status, 0);
	}
	g->pid = -1;
	g->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return g->status;
}

static void dump_log(const char *path)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	fprintf(stderr, "---- %s\n", path);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

/* The broker's counters, as gvmctl stats prints them. */
static void dump_stats(void)
{
	char gvmctl[512], out[600];

	gvmt_bin("gvmctl", gvmctl, sizeof(gvmctl));
	snprintf(out, sizeof(out), "%s/broker-stats.out", gvmt_dir());
	unlink(out);
	gvmt_run(out, (const char *[]){ gvmctl, "--socket", sock_path, "stats", NULL });
	dump_log(out);
}

/* Waits until the guest's log has needle; false if it exits or time runs
 * out, and then the guest's and the broker's logs and counters go to
 * stderr so a failure in CI explains itself. */
static bool guest_wait_for(struct guest *g, const char *needle, int timeout_s)
{
	double end = now_s() + timeout_s;
	bool found = false;
	int status;

	while (now_s() < end && !found) {
		found = gvmt_file_count(g->log, needle) > 0;
		if (!found && waitpid(g->pid, &status, WNOHANG) == g->pid) {
			g->pid = -1;
			g->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			found = gvmt_file_count(g->log, needle) > 0;
			break;
		}
		if (!found)
			usleep(100 * 1000);
	}
	if (found)
		fprintf(stderr, "guest %s: \"%s\" after %.0f s\n", g->name, needle,
			now_s() - (end - timeout_s));
	else {
		fprintf(stderr, "guest %s: no \"%s\" after %d s\n", g->name, needle, timeout_s);
		dump_log(g->log);
		dump_log(broker.log);
		dump_stats();
	}
	return found;
}

/* The guest ran its workload to the end and every checksum matched. */
static void assert_guest_ok(struct guest *g)
{
	bool ok = g->status == 0 && gvmt_file_count(g->log, "GVM-MEMTEST OK ") == 1 &&
		  gvmt_file_count(g->log, "GVM-MEMTEST FAIL") == 0 &&
		  gvmt_file_count(g->log, "GVM-GUEST done rc=0") == 1;

	if (!ok) {
		dump_log(g->log);
		dump_log(broker.log);
		dump_stats();
	}
	assert_true(ok);
}

/* Pages the donors hold for one namespace, summed over both. */
static uint64_t donor_ns_pages(const char *ns)
{
	char gvmctl[512], out[600], line[256];
	uint64_t sum = 0;

	gvmt_bin("gvmctl", gvmctl, sizeof(gvmctl));
	snprintf(out, sizeof(out), "%s/donor-stats.out", gvmt_dir());
	for (int i = 0; i < 2; i++) {
		unsigned long long v;
		FILE *f;

		unlink(out);
		assert_int_equal(gvmt_run(out, (const char *[]){ gvmctl, "--key-file", key_path,
								 "donor-stats", donor[i].addr, ns,
								 NULL }),
				 0);
		f = fopen(out, "r");
		assert_non_null(f);
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "ns_used_pages %llu", &v) == 1)
				sum += v;
		fclose(f);
	}
	return sum;
}

static uint64_t stat_of(const char *key)
{
	uint64_t v = gvmt_broker_stat(sock_path, key);

	assert_int_not_equal(v, UINT64_MAX);
	return v;
}

/* One guest whose 256 MiB live under a 96 MiB budget: it boots, fills 3/4
 * of its RAM, and every checksum matches although most of its pages went
 * to the donors and came back. */
static void test_guest_under_budget(void **state)
{
	uint64_t ev0 = stat_of("evictions"), wb0 = stat_of("writebacks");
	uint64_t rr0 = stat_of("remote_reads"), at0 = stat_of("attaches");
	struct guest g;

	(void)state;
	guest_start(&g, "e2e-one", "75,1", NULL, NULL, NULL);
	guest_wait(&g, BOOT_TIMEOUT_S);
	assert_guest_ok(&g);
	assert_int_equal(gvmt_file_count(g.log, "VM e2e-one: gvm-ram (256 MiB) attached"), 1);
	assert_int_equal(stat_of("attaches"), at0 + 1);
	assert_true(stat_of("evictions") > ev0);
	assert_true(stat_of("writebacks") > wb0);
	assert_true(stat_of("remote_reads") > rr0);
	/* QEMU's exit detaches the VM. */
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 0, 10000));
	assert_int_equal(stat_of("writeback_errors"), 0);
}

/* Two guests at once on one broker: both finish with matching checksums
 * and the pool keeps its two connections per donor. */
static void test_two_guests(void **state)
{
	uint64_t at0 = stat_of("attaches");
	struct guest g[2];
	bool both = false;

	(void)state;
	guest_start(&g[0], "e2e-a", "75,2", NULL, NULL, NULL);
	guest_start(&g[1], "e2e-b", "75,2", NULL, NULL, NULL);
	for (int i = 0; i < 600 && !both; i++) {
		both = gvmt_broker_stat(sock_path, "vms") == 2;
		if (!both)
			usleep(100 * 1000);
	}
	assert_true(both);
	assert_true(stat_of("donor_connections") <= 4); /* one pool for both */
	guest_wait(&g[0], BOOT_TIMEOUT_S);
	guest_wait(&g[1], BOOT_TIMEOUT_S);
	assert_guest_ok(&g[0]);
	assert_guest_ok(&g[1]);
	assert_int_equal(stat_of("attaches"), at0 + 2);
	assert_true(stat_of("donor_connections") <= 4);
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 0, 10000));
}

/* A QEMU killed with SIGKILL half-way, once the donors hold some of its
 * RAM: the broker detaches it and drops its pages on the donors, and the
 * other guest, still running at the time, runs on to the end. The kill
 * does not wait for a round of the victim's workload: on a host whose
 * hypervisor takes half the CPU, two guests thrashing a 96 MiB budget
 * took over 300 s to get there. */
static void test_guest_killed(void **state)
{
	struct guest victim, other;
	uint64_t before = 0;
	char ns[GVM_NS_NAME_MAX_BYTES + 1];
	double end;

	(void)state;
	guest_start(&other, "e2e-survivor", "75,2", NULL, NULL, NULL);
	guest_start(&victim, "e2e-victim", "75,50", NULL, NULL, NULL);
	assert_true(guest_wait_for(&victim, "GVM-MEMTEST start", BOOT_TIMEOUT_S));
	/* Its one region's namespace, as the broker named it. */
	assert_true(gvmt_vm_namespace(broker.log, "e2e-victim", 0, ns, sizeof(ns) - 2));
	strcat(ns, ".0");
	/* Its workload fills more than the budget: pages go to the donors. */
	for (end = now_s() + BOOT_TIMEOUT_S; before < 2048 && now_s() < end;) {
		before = donor_ns_pages(ns);
		if (before < 2048)
			usleep(250 * 1000);
	}
	fprintf(stderr, "victim killed with %llu pages on the donors\n", (unsigned long long)before);
	assert_true(before >= 2048);
	assert_int_equal(gvmt_file_count(victim.log, "GVM-MEMTEST OK"), 0);
	assert_int_equal(stat_of("vms"), 2); /* the survivor is still running */
	kill(victim.pid, SIGKILL);
	assert_int_equal(guest_wait(&victim, 30), 128 + SIGKILL);
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 1, 10000));
	/* attached, detached; and when its socket closed before the process
	 * was gone, a line when the exit came */
	assert_true(gvmt_file_count(broker.log, "vm e2e-victim") >= 2);
	for (int i = 0; i < 100 && donor_ns_pages(ns) != 0; i++)
		usleep(100 * 1000);
	assert_int_equal(donor_ns_pages(ns), 0);
	guest_wait(&other, BOOT_TIMEOUT_S);
	assert_guest_ok(&other);
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 0, 10000));
	assert_int_equal(stat_of("writeback_errors"), 0);
}

/* Polls the broker on sock until its stat key passes want. */
static bool wait_stat_above(const char *sock, const char *key, uint64_t want, int timeout_s)
{
	for (double end = now_s() + timeout_s; now_s() < end; usleep(200 * 1000)) {
		uint64_t v = gvmt_broker_stat(sock, key);

		if (v != UINT64_MAX && v > want)
			return true;
	}
	return false;
}

/* A guest on three donors with two copies of each extent: while it runs,
 * with part of its RAM on the donors, the broker is stopped and started
 * again (the hook's libgvmmem re-attaches), then a donor is killed for
 * good; every checksum of the guest matches, and no page was poisoned. */
static void test_guest_survives_broker_restart_and_donor_loss(void **state)
{
	const char *const args[] = { "--budget", BUDGET, "--replicas", "2", "--dead-after", "2",
				     NULL };
	struct gvmt_proc d[3], b;
	const char *donors[4] = { NULL };
	char sock[600];
	struct guest g;
	uint64_t wb;

	(void)state;
	for (int i = 0; i < 3; i++) {
		assert_true(gvmt_memserver_start(&d[i], key_path,
						 (const char *[]){ "--capacity", "1G", NULL }));
		donors[i] = d[i].addr;
	}
	gvmt_path(sock, sizeof(sock), "broker-r2.sock");
	assert_true(gvmt_broker_start(&b, key_path, sock, donors, args));
	assert_true(gvmt_broker_wait_stat(sock, "donors", 3, 10000));
	guest_start(&g, "e2e-failover", "75,3", sock, NULL, NULL);
	assert_true(guest_wait_for(&g, "GVM-MEMTEST start", BOOT_TIMEOUT_S));
	assert_true(wait_stat_above(sock, "writebacks", 0, BOOT_TIMEOUT_S));
	assert_int_equal(gvmt_proc_stop(&b, SIGTERM), 0);
	assert_true(gvmt_broker_start(&b, key_path, sock, donors, args));
	assert_true(gvmt_broker_wait_stat(sock, "vms", 1, 30000));
	wb = gvmt_broker_stat(sock, "writebacks");
	assert_true(wait_stat_above(sock, "writebacks", wb + 8, BOOT_TIMEOUT_S));
	assert_int_equal(gvmt_proc_stop(&d[0], SIGKILL), 128 + SIGKILL);
	guest_wait(&g, BOOT_TIMEOUT_S);
	if (g.status || gvmt_file_count(g.log, "GVM-MEMTEST OK ") != 1)
		dump_log(b.log);
	assert_guest_ok(&g);
	assert_int_equal(gvmt_file_count(b.log, "attached again"), 1);
	assert_int_equal(gvmt_broker_stat(sock, "dead_donors"), 1);
	assert_int_equal(gvmt_broker_stat(sock, "poisoned_pages"), 0);
	assert_int_equal(gvmt_proc_stop(&b, SIGTERM), 0);
	for (int i = 1; i < 3; i++)
		gvmt_proc_stop(&d[i], SIGTERM);
}

/* Full-share mode (a GiantVM kernel module, here under GVM_SYSROOT), no
 * broker at the endpoint, and a memory backend other than memfd: the hook
 * leaves QEMU's memory alone each time and the guest still boots and runs
 * its workload on local RAM. */
static void test_hook_leaves_memory_alone(void **state)
{
	char sysroot[600], env_root[700];
	uint64_t at0 = stat_of("attaches");
	struct guest g;

	(void)state;
	snprintf(sysroot, sizeof(sysroot), "%s/giantvm-root", gvmt_dir());
	gvmt_fake_giantvm(sysroot, env_root, sizeof(env_root));
	snprintf(env_root, sizeof(env_root), "GVM_SYSROOT=%s", sysroot);

	guest_start(&g, "e2e-fullshare", "50,1", NULL, (const char *[]){ env_root, NULL }, NULL);
	guest_wait(&g, BOOT_TIMEOUT_S);
	assert_guest_ok(&g);
	assert_int_equal(gvmt_file_count(g.log, "full-share mode"), 2); /* libgvmmem, hook */
	assert_int_equal(gvmt_file_count(g.log, "attached"), 0);

	snprintf(sysroot, sizeof(sysroot), "%s/no-broker-here.sock", gvmt_dir());
	guest_start(&g, "e2e-nobroker", "50,1", sysroot, NULL, NULL);
	guest_wait(&g, BOOT_TIMEOUT_S);
	assert_guest_ok(&g);
	assert_int_equal(gvmt_file_count(g.log, "no broker: guest RAM stays local"), 1);
	assert_int_equal(gvmt_file_count(g.log, "attached"), 0);

	guest_start(&g, "e2e-ramdev", "50,1", NULL, NULL,
		    (const char *[]){ "-m", "192M", "-object", "memory-backend-ram,id=r,size=192M",
				      "-machine", "memory-backend=r", NULL });
	guest_wait(&g, BOOT_TIMEOUT_S);
	assert_guest_ok(&g);
	assert_int_equal(gvmt_file_count(g.log, "no memory-backend-memfd on the command line"), 1);
	assert_int_equal(gvmt_file_count(g.log, "attached"), 0);
	assert_int_equal(stat_of("attaches"), at0);
}

/* gvm-qemu --print: a vfio-pci device in QEMU's arguments, in each of its
 * forms, exports GVM_PINNED=1 and says why in one line; --pinned exports
 * it too, a plain device does not; --hugepages adds hugetlb=on for -m 256M
 * and refuses -m 255M (not whole 2 MiB pages) with exit status 2. */
static void test_gvm_qemu_print_pinned_and_hugepages(void **state)
{
	static const struct {
		const char *opt, *device;
		bool vfio, pinned;
	} cases[] = {
		{ NULL, "vfio-pci,host=0000:00:01.0", true, true },
		{ NULL, "vfio-pci-nohotplug,host=0000:00:01.0", true, true },
		{ NULL, "{\"driver\": \"vfio-pci\", \"host\": \"0000:00:01.0\"}", true, true },
		{ "--pinned", "virtio-rng-pci", false, true },
		{ NULL, "virtio-rng-pci", false, false },
		{ NULL, "{\"driver\":\"virtio-rng-pci\"}", false, false },
	};
	char gq[512], out[600];

	(void)state;
	gvmt_bin("gvm-qemu", gq, sizeof(gq));
	snprintf(out, sizeof(out), "%s/gvm-qemu-print.out", gvmt_dir());
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[10];
		int n = 0;

		argv[n++] = gq;
		argv[n++] = "--print";
		if (cases[i].opt)
			argv[n++] = cases[i].opt;
		argv[n++] = "--";
		argv[n++] = "-m";
		argv[n++] = "64M";
		argv[n++] = "-device";
		argv[n++] = cases[i].device;
		argv[n] = NULL;
		unlink(out);
		assert_int_equal(gvmt_run(out, argv), 0);
		assert_int_equal(gvmt_file_count(out, "a vfio-pci device pins the guest's RAM"),
				 cases[i].vfio);
		/* the env line, and the vfio line names it too */
		assert_int_equal(gvmt_file_count(out, "GVM_PINNED=1"),
				 cases[i].vfio ? 2 : cases[i].pinned);
	}

	unlink(out);
	assert_int_equal(gvmt_run(out, (const char *[]){ gq, "--print", "--hugepages", "--", "-m",
							 "256M", NULL }),
			 0);
	assert_int_equal(gvmt_file_count(out, "size=268435456"), 1);
	assert_int_equal(gvmt_file_count(out, "hugetlb=on"), 1);
	assert_int_equal(gvmt_file_count(out, "hugetlbsize=2M"), 1);

	unlink(out);
	assert_int_equal(gvmt_run(out, (const char *[]){ gq, "--print", "--hugepages", "--", "-m",
							 "255M", NULL }),
			 2);
	assert_int_equal(gvmt_file_count(out, "-m 255M is not a multiple of 2 MiB"), 1);
	assert_int_equal(gvmt_file_count(out, "hugetlb=on"), 0);
}

/* hook-probe, test_qemu's stand-in for QEMU, running as gvmtest with the
 * hook preloaded and attached to the test's broker until probe_finish. */
struct probe {
	pid_t pid;
	int stdin_fd; /* closing it lets the probe check its RAM and exit */
	char log[512];
};

static void probe_start(struct probe *p, const char *name, const char *env, const char *device)
{
	char self[512], probe[600], hook[600], gq[512], mib[16], object[96];
	char env_hook[700], env_ep[600], env_name[100];
	const char *argv[] = { probe, mib, "-object", object, device ? "-device" : NULL, device,
			       NULL };
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int fd, pipefd[2];

	assert_true(n > 0);
	self[n] = '\0';
	snprintf(probe, sizeof(probe), "%s/hook-probe", dirname(self));
	gvmt_bin("gvm-qemu", gq, sizeof(gq));
	snprintf(hook, sizeof(hook), "%s/../lib/libgvm-qemu-hook.so", dirname(gq));
	snprintf(mib, sizeof(mib), "%d", PROBE_MIB);
	snprintf(object, sizeof(object), "memory-backend-memfd,id=ram0,size=%dM,share=on", PROBE_MIB);
	snprintf(env_hook, sizeof(env_hook), "LD_PRELOAD=%s", hook);
	snprintf(env_ep, sizeof(env_ep), "GVM_ENDPOINT=%s", sock_path);
	snprintf(env_name, sizeof(env_name), "GVM_VM_NAME=%s", name);
	snprintf(p->log, sizeof(p->log), "%s/%s.log", gvmt_dir(), name);
	unlink(p->log);
	fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		gvmt_become(test_uid, test_gid, gvm_gid);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		putenv(env_ep);
		putenv(env_name);
		if (env)
			putenv((char *)env);
		dup2(pipefd[0], 0);
		dup2(fd, 1);
		dup2(fd, 2);
		/* Last: the hook would run in this program's own children. */
		putenv(env_hook);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	close(pipefd[0]);
	p->stdin_fd = pipefd[1];
}

static int probe_finish(struct probe *p)
{
	int status;

	close(p->stdin_fd);
	assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The hook without VFIO hardware: with RAM attached unpinned, an open of
 * /dev/vfio/vfio through each libc entry point (open, open64, openat,
 * openat64 and the fortify __open*_2) fails with EPERM and a line saying
 * why; attached pinned (GVM_PINNED=1, or a -device vfio-pci argument) or
 * not attached (GVM_MODE=none), it reaches the kernel, which has no
 * /dev/vfio here (ENOENT). While it runs, the broker counts all of a
 * pinned probe's pages as pinned_pages; its RAM keeps its pattern. */
static void test_hook_vfio_open_needs_pinned_ram(void **state)
{
	static const char *const entry[] = { "open",	 "open64",     "openat",     "openat64",
					     "__open_2", "__open64_2", "__openat_2", "__openat64_2" };
	static const struct {
		const char *name, *env, *device;
		bool attached, pinned;
	} cases[] = {
		{ "probe-unpinned", NULL, NULL, true, false },
		{ "probe-pinned-env", "GVM_PINNED=1", NULL, true, true },
		{ "probe-pinned-vfio", NULL, "vfio-pci,host=0000:00:01.0", true, true },
		{ "probe-local", "GVM_MODE=none", NULL, false, false },
	};
	const int nentry = sizeof(entry) / sizeof(entry[0]);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool refused = cases[i].attached && !cases[i].pinned;
		struct probe p;
		char line[64];

		fprintf(stderr, "%s\n", cases[i].name);
		probe_start(&p, cases[i].name, cases[i].env, cases[i].device);
		if (!gvmt_file_wait(p.log, "READY", 1, 30000)) {
			dump_log(p.log);
			fail();
		}
		for (int e = 0; e < nentry; e++) {
			snprintf(line, sizeof(line), "%s: %s\n", entry[e], refused ? "EPERM" : "ENOENT");
			if (gvmt_file_count_lines(p.log, line) != 1)
				dump_log(p.log);
			assert_int_equal(gvmt_file_count_lines(p.log, line), 1);
		}
		assert_int_equal(gvmt_file_count(p.log, "refusing to open /dev/vfio/vfio: VFIO would "
							"pin guest RAM the broker may evict"),
				 refused ? nentry : 0);
		assert_int_equal(gvmt_file_count(p.log, "start the VM with gvm-qemu --pinned"),
				 refused ? nentry : 0);
		assert_int_equal(gvmt_file_count(p.log, "ram0 (16 MiB) attached pinned ("),
				 cases[i].pinned);
		assert_int_equal(gvmt_file_count(p.log, "ram0 (16 MiB) attached;"), refused);
		if (cases[i].device)
			assert_int_equal(gvmt_file_count(p.log, "a vfio-pci device on the command line"),
					 1);
		assert_int_equal(stat_of("vms"), cases[i].attached);
		assert_int_equal(stat_of("pinned_pages"),
				 cases[i].pinned ? (uint64_t)PROBE_MIB * (1 << 20) / PAGE_BYTES : 0);
		assert_int_equal(probe_finish(&p), 0);
		assert_int_equal(gvmt_file_count(p.log, "PATTERN OK"), 1);
		assert_true(gvmt_broker_wait_stat(sock_path, "vms", 0, 10000));
	}
}

/* A guest started with gvm-qemu --pinned, on a broker of its own whose
 * budget is above its RAM: while it runs, all of its pages are the
 * broker's pinned_pages, none is evicted, and every checksum matches. */
static void test_guest_pinned_stays_resident(void **state)
{
	const uint64_t pages = (uint64_t)PINNED_MEM_MIB * (1 << 20) / PAGE_BYTES;
	const char *donors[] = { donor[0].addr, donor[1].addr, NULL };
	char mem[16], sock[600], attached[96];
	struct gvmt_proc b;
	struct guest g;
	bool started;

	(void)state;
	gvmt_path(sock, sizeof(sock), "broker-pinned.sock");
	assert_true(gvmt_broker_start(&b, key_path, sock, donors,
				      (const char *[]){ "--budget", PINNED_BUDGET, NULL }));
	assert_true(gvmt_broker_wait_stat(sock, "donors", 2, 10000));
	snprintf(mem, sizeof(mem), "%dM", PINNED_MEM_MIB);
	guest_start_opts(&g, "e2e-pinned", "50,1", sock, NULL, (const char *[]){ "--pinned", NULL },
			 (const char *[]){ "-m", mem, NULL });
	started = guest_wait_for(&g, "GVM-MEMTEST start", BOOT_TIMEOUT_S);
	if (!started)
		dump_log(b.log);
	assert_true(started);
	assert_int_equal(gvmt_broker_stat(sock, "pinned_pages"), pages);
	guest_wait(&g, BOOT_TIMEOUT_S);
	if (g.status)
		dump_log(b.log);
	assert_guest_ok(&g);
	snprintf(attached, sizeof(attached), "gvm-ram (%d MiB) attached pinned (GVM_PINNED)",
		 PINNED_MEM_MIB);
	assert_int_equal(gvmt_file_count(g.log, attached), 1);
	assert_int_equal(gvmt_broker_stat(sock, "evictions"), 0);
	assert_true(gvmt_broker_wait_stat(sock, "vms", 0, 10000));
	assert_int_equal(gvmt_broker_stat(sock, "pinned_pages"), 0);
	assert_int_equal(gvmt_proc_stop(&b, SIGTERM), 0);
}

/* A pinned guest with more RAM than the broker's whole budget: the broker
 * refuses it, QEMU exits with an error before the guest runs, and its log
 * gives gvm_strerror(-ENOSPC)'s explanation. */
static void test_guest_pinned_over_budget_refused(void **state)
{
	char mem[16];
	struct guest g;

	(void)state;
	snprintf(mem, sizeof(mem), "%dM", PINNED_OVER_MIB);
	guest_start_opts(&g, "e2e-pinned-big", "off", NULL, NULL,
			 (const char *[]){ "--pinned", NULL }, (const char *[]){ "-m", mem, NULL });
	if (guest_wait(&g, BOOT_TIMEOUT_S) == 0 || gvmt_file_count(g.log, "pinned VM") == 0)
		dump_log(g.log);
	assert_int_not_equal(g.status, 0);
	assert_true(gvmt_file_count(g.log, "the broker refused gvm-ram (128 MiB): a pinned VM") >= 1);
	assert_int_equal(gvmt_file_count(g.log, "unable to map backing store for guest RAM: Cannot "
						"allocate memory"),
			 1);
	assert_int_equal(gvmt_file_count(g.log, "GVM-GUEST"), 0);
	assert_int_equal(stat_of("vms"), 0);
	assert_int_equal(stat_of("pinned_pages"), 0);
}

/* The free 2 MiB huge pages, and the pool's size (/proc/sys/vm). */
static long hugepages(const char *what)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-2048kB/%s", what);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool set_hugepages(long n)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "w");
	bool ok = f && fprintf(f, "%ld\n", n) > 0;

	if (f)
		ok &= fclose(f) == 0;
	return ok;
}

/* A guest whose RAM is 2 MiB huge pages (gvm-qemu --hugepages), on a
 * broker of its own whose budget holds half of it: it boots and its
 * checksums hold while the broker moves its RAM in whole huge pages to the
 * donors and back. (Under the shared broker's budget, 96 MiB for 256, the
 * guest's working set in huge pages is larger than the budget and it
 * thrashes, 2 MiB at a time.) The test reserves the pool gvm-qemu asks for
 * and gives it back. */
static void test_guest_on_huge_pages(void **state)
{
	const char *donors[] = { donor[0].addr, donor[1].addr, NULL };
	long before = hugepages("nr_hugepages"), need = 256 / 2;
	char sock[600];
	struct gvmt_proc b;
	struct guest g;
	uint64_t ev, rr;

	(void)state;
	assert_true(before >= 0);
	gvmt_path(sock, sizeof(sock), "broker-huge.sock");
	assert_true(gvmt_broker_start(&b, key_path, sock, donors,
				      (const char *[]){ "--budget", HUGE_BUDGET, NULL }));
	assert_true(gvmt_broker_wait_stat(sock, "donors", 2, 10000));
	if (hugepages("free_hugepages") < need)
		assert_true(set_hugepages(before + need - hugepages("free_hugepages")));
	guest_start_opts(&g, "e2e-huge", "50,1", sock, NULL, (const char *[]){ "--hugepages", NULL },
			 NULL);
	guest_wait(&g, BOOT_TIMEOUT_S);
	set_hugepages(before);
	if (g.status)
		dump_log(b.log);
	assert_guest_ok(&g);
	assert_int_equal(gvmt_file_count(g.log, "VM e2e-huge: gvm-ram (256 MiB) attached"), 1);
	/* whole huge pages out and back */
	ev = gvmt_broker_stat(sock, "evictions");
	rr = gvmt_broker_stat(sock, "remote_reads");
	assert_true(ev > 0);
	assert_int_equal(ev % 512, 0);
	assert_true(rr > 0);
	assert_int_equal(gvmt_broker_stat(sock, "remote_pages"), rr * 512);
	assert_int_equal(gvmt_broker_stat(sock, "writeback_errors"), 0);
	assert_true(gvmt_broker_wait_stat(sock, "vms", 0, 10000));
	assert_int_equal(gvmt_proc_stop(&b, SIGTERM), 0);
}

static int setup(void **state)
{
	const char *gd = getenv("GVM_GUEST_DIR");
	const char *donors[3];
	char path[600];

	(void)state;
	snprintf(guest_dir, sizeof(guest_dir), "%s", gd && *gd ? gd : "build/guest");
	for (const char *const *f = (const char *[]){ "vmlinuz", "initramfs.cpio.gz", NULL }; *f;
	     f++) {
		snprintf(path, sizeof(path), "%s/%s", guest_dir, *f);
		if (access(path, R_OK)) {
			fprintf(stderr, "no guest at %s (make guest builds it)\n", path);
			return -1;
		}
	}
	if (system("command -v qemu-system-x86_64 >/dev/null") != 0) {
		fprintf(stderr, "qemu-system-x86_64 is missing (make deps installs it)\n");
		return -1;
	}
	if (!gvmt_test_user(&test_uid, &test_gid, &gvm_gid)) {
		fprintf(stderr, "needs root to run QEMU as the unprivileged user gvmtest\n");
		return -1;
	}
	chmod(gvmt_dir(), 0755);
	gvmt_path(key_path, sizeof(key_path), "cluster.key");
	gvmt_make_key(key_path, 32, NULL);
	for (int i = 0; i < 2; i++) {
		if (!gvmt_memserver_start(&donor[i], key_path,
					  (const char *[]){ "--capacity", "1G", NULL }))
			return -1;
		donors[i] = donor[i].addr;
	}
	donors[2] = NULL;
	gvmt_path(sock_path, sizeof(sock_path), "broker.sock");
	if (!gvmt_broker_start(&broker, key_path, sock_path, donors,
			       (const char *[]){ "--budget", BUDGET, NULL }))
		return -1;
	return gvmt_broker_wait_stat(sock_path, "donors", 2, 10000) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	gvmt_proc_stop(&broker, SIGTERM);
	gvmt_proc_stop(&donor[0], SIGTERM);
	gvmt_proc_stop(&donor[1], SIGTERM);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guest_under_budget),
		cmocka_unit_test(test_guest_on_huge_pages),
		cmocka_unit_test(test_two_guests),
		cmocka_unit_test(test_guest_killed),
		cmocka_unit_test(test_guest_survives_broker_restart_and_donor_loss),
		cmocka_unit_test(test_hook_leaves_memory_alone),
		cmocka_unit_test(test_gvm_qemu_print_pinned_and_hugepages),
		cmocka_unit_test(test_hook_vfio_open_needs_pinned_ram),
		cmocka_unit_test(test_guest_pinned_stays_resident),
		cmocka_unit_test(test_guest_pinned_over_budget_refused),
	};

	/* GVM_TEST_FILTER=test_guest_killed runs just that one (a glob). */
	if (getenv("GVM_TEST_FILTER"))
		cmocka_set_test_filter(getenv("GVM_TEST_FILTER"));
	return cmocka_run_group_tests(tests, setup, teardown);
}
