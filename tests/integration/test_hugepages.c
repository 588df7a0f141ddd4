/* test_hugepages.c: guest RAM in a hugetlb memfd (MFD_HUGETLB, 2 MiB
 * pages) under a real broker with a budget and two real donors, attached
 * by an unprivileged libgvmmem client. The broker serves and evicts whole
 * huge pages: a region 2.5 times the budget is written and read back page
 * by page, in two orders and after a rewrite of every other huge page,
 * while its memfd never holds more than the budget and a few huge pages;
 * a huge page the VM punches while it is in memory reads as zero ever
 * after, also once evicted and read back; a VM whose host runs out of huge
 * pages waits, and goes on once there are some again; a pinned hugetlb VM
 * is filled at attach; and a region not aligned to its huge pages is
 * refused. The test reserves the
 * huge pages it needs (/proc/sys/vm/nr_hugepages) and gives back what it
 * added. */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gvmmem.h"
#include "pattern.h"
#include "cluster.h"
#include "procs.h"

#define MIB (1024u * 1024u)
#define HUGE GVM_HUGE_PAGE_SIZE
#define HPAGES (HUGE / GVM_PAGE_SIZE)
#define BUDGET_MIB 16u
#define REGION_MIB 40u /* 2.5 times the budget */
/* What the memfd may hold: the budget, and the write-backs and faults of
 * an eviction pass on their way (a few huge pages). */
#define SLACK_BYTES (4u * HUGE)
#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"
#define FREE_HUGEPAGES "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

static char key_path[512];
static struct gvmt_cluster cl;
static const char *const broker_args[] = { "--budget", "16M", NULL }; /* BUDGET_MIB */
static uid_t test_uid;
static gid_t test_gid, gvm_gid;
static bool have_user;
static long hugepages_before = -1;

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	bool ok = f && fprintf(f, "%ld\n", v) > 0;

	if (f)
		ok &= fclose(f) == 0;
	return ok;
}

/* The pool has at least want free huge pages (adding them if not). */
static int reserve_hugepages(void **state)
{
	long want = 2 * REGION_MIB * MIB / HUGE; /* two regions at once, at most */
	long total = read_long(NR_HUGEPAGES);
	long free_now = read_long(FREE_HUGEPAGES);

	(void)state;
	if (total < 0 || free_now < 0) {
		fprintf(stderr, "no 2 MiB huge pages on this kernel\n");
		return -1;
	}
	hugepages_before = total;
	if (free_now < want && !write_long(NR_HUGEPAGES, total + want - free_now))
		return -1;
	if (read_long(FREE_HUGEPAGES) < want) {
		fprintf(stderr, "cannot reserve %ld free 2 MiB huge pages\n", want);
		return -1;
	}
	return 0;
}

static int give_back_hugepages(void **state)
{
	(void)state;
	if (hugepages_before >= 0)
		write_long(NR_HUGEPAGES, hugepages_before);
	return 0;
}

/* This test's broker (--budget BUDGET_MIB) over two donors. */
static void cluster_start(void)
{
	static int serial;
	char name[32];

	snprintf(name, sizeof(name), "huge-%d", ++serial);
	gvmt_cluster_start(&cl, name, key_path, 2, broker_args);
}

static void cluster_stop(void)
{
	gvmt_cluster_stop_clean(&cl);
}

struct guest {
	uint8_t *mem;
	size_t size, max_bytes;
	int memfd;
	struct gvm_session *s;
};

/* In the child: drops to the test user, maps size bytes of a hugetlb
 * memfd (MAP_NORESERVE: the pool need only hold what is resident, as with
 * QEMU's reserve=off) and attaches them with flags. 0 or -errno. */
static int guest_attach(struct guest *g, const char *vm, size_t size, uint64_t offset,
			unsigned flags)
{
	struct gvm_region r = { "ram", NULL, size, -1, offset, 0 };
	int err;

	if (have_user) {
		gvmt_become(test_uid, test_gid, gvm_gid);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	}
	g->size = size;
	g->max_bytes = 0;
	g->memfd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_HUGETLB);
	CHILD_CHECK(g->memfd >= 0 && !ftruncate(g->memfd, (off_t)(size + offset + HUGE)), 70,
		    "hugetlb memfd: %s", strerror(errno));
	g->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, g->memfd,
		      (off_t)offset);
	CHILD_CHECK(g->mem != MAP_FAILED, 71, "mmap: %s", strerror(errno));
	r.host_addr = g->mem;
	r.memfd = g->memfd;
	g->s = gvm_attach_flags(cl.sock, vm, &r, 1, flags, &err);
	return g->s ? 0 : err;
}

/* What the memfd holds now, and the most it held. */
static void guest_sample(struct guest *g)
{
	struct stat st;

	if (!fstat(g->memfd, &st) && (size_t)st.st_blocks * 512 > g->max_bytes)
		g->max_bytes = (size_t)st.st_blocks * 512;
}

static void guest_write(struct guest *g, size_t first, size_t count, uint64_t seed)
{
	for (size_t p = first; p < first + count; p++) {
		gvm_pattern_fill_page(g->mem + p * GVM_PAGE_SIZE, seed, p, 9);
		if (p % HPAGES == 0)
			guest_sample(g);
	}
}

/* Pages of huge page h that differ from seed's pattern (seed 0: zeros). */
static uint64_t huge_bad(struct guest *g, size_t h, uint64_t seed)
{
	uint8_t want[GVM_PAGE_SIZE];
	uint64_t bad = 0;

	guest_sample(g);
	for (size_t p = h * HPAGES; p < (h + 1) * HPAGES; p++) {
		if (seed)
			gvm_pattern_fill_page(want, seed, p, 9);
		else
			memset(want, 0, sizeof(want));
		bad += memcmp(g->mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
	}
	return bad;
}

static int wait_exit(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs vm, a guest that ends with _exit(0) when all is well, in a child;
 * it must exit 0. */
static void in_child(void (*vm)(void))
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		vm();
	assert_int_equal(wait_exit(pid), 0);
}

/* The guests of the tests below, each in a child of the test. */

static void guest_hugetlb_region_larger_than_the_budget_reads_back_page_by_page(void)
{
	const size_t size = (size_t)REGION_MIB * MIB, nhuge = size / HUGE;
	struct guest g;
	uint64_t bad = 0;
	int err = guest_attach(&g, "huge", size, 0, 0);

	CHILD_CHECK(!err, 72, "attach: %s", gvm_strerror(err));
	guest_write(&g, 0, size / GVM_PAGE_SIZE, 1);
	for (size_t h = 0; h < nhuge; h++) /* page by page, in order */
		bad += huge_bad(&g, h, 1);
	CHILD_CHECK(!bad, 73, "%llu pages wrong, first reading", (unsigned long long)bad);
	for (size_t h = nhuge; h-- > 0;) /* the other way */
		bad += huge_bad(&g, h, 1);
	CHILD_CHECK(!bad, 74, "%llu pages wrong, backwards", (unsigned long long)bad);
	for (size_t h = 1; h < nhuge; h += 2) /* huge pages fetched back, written again */
		guest_write(&g, h * HPAGES, HPAGES, 2);
	for (size_t h = 0; h < nhuge; h++)
		bad += huge_bad(&g, h, h % 2 ? 2 : 1);
	CHILD_CHECK(!bad, 75, "%llu pages wrong after rewriting", (unsigned long long)bad);
	CHILD_CHECK(g.max_bytes <= (size_t)BUDGET_MIB * MIB + SLACK_BYTES, 76,
		    "the memfd held %zu bytes; budget %u MiB", g.max_bytes, BUDGET_MIB);
	gvm_detach(g.s);
	_exit(0);
}

static void test_hugetlb_region_larger_than_the_budget_reads_back_page_by_page(void **state)
{
	(void)state;
	cluster_start();
	in_child(guest_hugetlb_region_larger_than_the_budget_reads_back_page_by_page);
	/* Moved in huge pages: every eviction and read is of whole ones. */
	assert_true(gvmt_broker_stat(cl.sock, "evictions") >= (REGION_MIB - BUDGET_MIB) * MIB /
								       GVM_PAGE_SIZE);
	assert_int_equal(gvmt_broker_stat(cl.sock, "evictions") % HPAGES, 0);
	assert_true(gvmt_broker_stat(cl.sock, "writebacks") > 0);
	assert_true(gvmt_broker_stat(cl.sock, "remote_reads") > 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "remote_pages"),
			 gvmt_broker_stat(cl.sock, "remote_reads") * HPAGES);
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	cluster_stop();
}

static void guest_huge_pages_the_vm_punches_read_as_zero(void)
{
	const size_t size = (size_t)REGION_MIB * MIB, nhuge = size / HUGE;
	struct guest g;
	uint64_t bad = 0;
	int err = guest_attach(&g, "punch", size, 0, 0);

	CHILD_CHECK(!err, 72, "attach: %s", gvm_strerror(err));
	guest_write(&g, 0, size / GVM_PAGE_SIZE, 3);
	/* The first huge page went to the donors and is read back into
	 * memory; it and the last one, in memory since written, are
	 * punched as QEMU discards a hugetlb page (fallocate alone: the
	 * kernel tells the broker nothing). */
	bad += huge_bad(&g, 0, 3);
	CHILD_CHECK(!fallocate(g.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, HUGE) &&
			    !fallocate(g.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)(size - HUGE), HUGE),
		    77, "punch: %s", strerror(errno));
	for (int round = 0; round < 2; round++) { /* and again after more eviction */
		bad += huge_bad(&g, 0, 0) + huge_bad(&g, nhuge - 1, 0);
		for (size_t h = 1; h < nhuge - 1; h++)
			bad += huge_bad(&g, h, 3);
	}
	CHILD_CHECK(!bad, 78, "%llu pages wrong", (unsigned long long)bad);
	gvm_detach(g.s);
	_exit(0);
}

static void test_huge_pages_the_vm_punches_read_as_zero(void **state)
{
	(void)state;
	cluster_start();
	in_child(guest_huge_pages_the_vm_punches_read_as_zero);
	assert_int_equal(gvmt_broker_stat(cl.sock, "removed_pages"), 2 * HPAGES);
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	cluster_stop();
}

static void guest_pinned_hugetlb_vm_is_filled_and_misaligned_regions_are_refused(void)
{
	struct guest g, off;
	int err = guest_attach(&g, "pinned-huge", 8 * MIB, 0, GVM_ATTACH_PINNED);

	CHILD_CHECK(!err, 72, "attach: %s", gvm_strerror(err));
	/* in memory at attach, before any touch: counted by the broker */
	for (int i = 0; i < 250 && gvmt_broker_stat(cl.sock, "resident_pages") <
					   8 * MIB / GVM_PAGE_SIZE; i++)
		usleep(20000);
	CHILD_CHECK(gvmt_broker_stat(cl.sock, "resident_pages") == 8 * MIB / GVM_PAGE_SIZE,
		    79, "resident %llu pages",
		    (unsigned long long)gvmt_broker_stat(cl.sock, "resident_pages"));
	guest_write(&g, 0, 8 * MIB / GVM_PAGE_SIZE, 4);
	CHILD_CHECK(!huge_bad(&g, 3, 4), 80, "pinned huge page wrong");
	/* 4 KiB of a memfd of 2 MiB pages: refused, not served 4 KiB wide */
	off.memfd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_HUGETLB);
	CHILD_CHECK(off.memfd >= 0 && !ftruncate(off.memfd, HUGE), 81, "memfd");
	off.mem = mmap(NULL, HUGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		       off.memfd, 0);
	CHILD_CHECK(off.mem != MAP_FAILED, 82, "mmap");
	off.s = gvm_attach(cl.sock, "misaligned",
			   &(struct gvm_region){ "ram", off.mem, GVM_PAGE_SIZE, off.memfd, 0, 0 },
			   1, &err);
	CHILD_CHECK(!off.s && err == -EINVAL, 83, "a 4 KiB hugetlb region: %s",
		    gvm_strerror(err));
	gvm_detach(g.s);
	_exit(0);
}

static void test_pinned_hugetlb_vm_is_filled_and_misaligned_regions_are_refused(void **state)
{
	(void)state;
	cluster_start();
	in_child(guest_pinned_hugetlb_vm_is_filled_and_misaligned_regions_are_refused);
	assert_int_equal(gvmt_broker_stat(cl.sock, "pinned_pages"), 0);
	cluster_stop();
}

static void guest_writes_through_an_empty_pool(void)
{
	const size_t size = 4 * HUGE;
	struct guest g;
	uint64_t bad = 0;
	int err = guest_attach(&g, "dry", size, 0, 0);

	CHILD_CHECK(!err, 72, "attach: %s", gvm_strerror(err));
	guest_write(&g, 0, size / GVM_PAGE_SIZE, 5); /* waits at the third huge page */
	for (size_t h = 0; h < size / HUGE; h++)
		bad += huge_bad(&g, h, 5);
	CHILD_CHECK(!bad, 84, "%llu pages wrong", (unsigned long long)bad);
	gvm_detach(g.s);
	_exit(0);
}

/* The host's pool of huge pages runs dry under a VM (2 free for its 4):
 * its fault waits, the broker says why and keeps the VM, and once pages
 * are there again the VM goes on and every page is right. */
static void test_an_empty_pool_makes_faults_wait_not_fail(void **state)
{
	long total = read_long(NR_HUGEPAGES), free_now = read_long(FREE_HUGEPAGES);
	pid_t pid;

	(void)state;
	cluster_start();
	assert_true(write_long(NR_HUGEPAGES, total - free_now + 2));
	assert_int_equal(read_long(FREE_HUGEPAGES), 2);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		guest_writes_through_an_empty_pool();
	assert_true(gvmt_file_wait(cl.broker.log, "no free 2 MiB huge page", 1, 30000));
	usleep(300 * 1000); /* several retries */
	assert_int_equal(waitpid(pid, NULL, WNOHANG), 0); /* still waiting, not failed */
	assert_int_equal(gvmt_broker_stat(cl.sock, "vms"), 1);
	assert_true(write_long(NR_HUGEPAGES, total));
	assert_int_equal(wait_exit(pid), 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	cluster_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hugetlb_region_larger_than_the_budget_reads_back_page_by_page),
		cmocka_unit_test(test_huge_pages_the_vm_punches_read_as_zero),
		cmocka_unit_test(test_pinned_hugetlb_vm_is_filled_and_misaligned_regions_are_refused),
		cmocka_unit_test(test_an_empty_pool_makes_faults_wait_not_fail),
	};
	struct gvm_key key;

	gvmt_main_init(key_path, sizeof(key_path), &key);
	have_user = gvmt_test_user(&test_uid, &test_gid, &gvm_gid);
	return cmocka_run_group_tests_name("hugepages", tests, reserve_hugepages,
					   give_back_hugepages);
}
