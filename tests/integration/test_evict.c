/* test_evict.c: gvm-broker under a memory budget, with real donors and
 * unprivileged libgvmmem clients: a region eight times the budget written
 * and read back page by page while its memfd never holds more than the
 * budget and one batch; writers racing the eviction of their own pages
 * lose no increment and tear no page; three VMs share a budget and all
 * finish; donors that refuse writes cost no data; pages the VM removes read
 * as zero ever after; and a VM that had pages written back leaves nothing
 * behind in the broker when it goes. */
#include <errno.h>
#include <pthread.h>
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
#include "procs.h"

#define BATCH_BYTES (256u * 4096u) /* BK_EVICT_BATCH_PAGES */

static char key_path[512], sock_path[512];
static uid_t test_uid;
static gid_t test_gid, gvm_gid;
static bool have_user;

struct cluster {
	struct gvmt_proc donor[2], broker;
};

/* --install for the next cluster_start (NULL: the default, auto). With
 * continue, pages are sealed off (--page-crypto none): sealed pages are
 * opened from a buffer, never received in the memfd, and these tests are
 * about pages received there. */
static const char *install_mode;

static void cluster_start(struct cluster *cl, const char *budget, const char *donor_capacity)
{
	static int serial;
	const char *donors[3];

	for (int i = 0; i < 2; i++) {
		assert_true(gvmt_memserver_start(&cl->donor[i], key_path,
						 (const char *[]){ "--capacity", donor_capacity, NULL }));
		donors[i] = cl->donor[i].addr;
	}
	donors[2] = NULL;
	snprintf(sock_path, sizeof(sock_path), "%s/evict-%d.sock", gvmt_dir(), ++serial);
	assert_true(gvmt_broker_start(&cl->broker, key_path, sock_path, donors,
				      (const char *[]){ "--budget", budget,
							install_mode ? "--install" : NULL,
							install_mode, "--page-crypto", "none",
							NULL }));
	assert_true(gvmt_broker_wait_stat(sock_path, "donors", 2, 10000));
}

static void cluster_stop(struct cluster *cl)
{
	assert_int_equal(gvmt_proc_stop(&cl->broker, SIGTERM), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(gvmt_proc_stop(&cl->donor[i], SIGTERM), 0);
}

struct guest {
	uint8_t *mem;
	size_t size;
	int memfd;
	struct gvm_session *s;
	size_t max_blocks_bytes;
};

/* In the child: drop to the test user, map and attach a region. */
static void guest_attach(struct guest *g, const char *vm, size_t size)
{
	struct gvm_region r = { "ram", NULL, size, -1, 0, 0 };
	int err;

	if (have_user) {
		gvmt_become(test_uid, test_gid, gvm_gid);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	}
	g->size = size;
	g->max_blocks_bytes = 0;
	g->memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	CHILD_CHECK(g->memfd >= 0 && !ftruncate(g->memfd, (off_t)size), 70, "memfd");
	g->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
	CHILD_CHECK(g->mem != MAP_FAILED, 71, "mmap");
	r.host_addr = g->mem;
	r.memfd = g->memfd;
	g->s = gvm_attach(sock_path, vm, &r, 1, &err);
	CHILD_CHECK(g->s, 72, "attach %s: %s", vm, gvm_strerror(err));
}

/* The memfd's allocated bytes: what this VM really holds in memory. */
static void guest_sample(struct guest *g)
{
	struct stat st;

	if (!fstat(g->memfd, &st) && (size_t)st.st_blocks * 512 > g->max_blocks_bytes)
		g->max_blocks_bytes = (size_t)st.st_blocks * 512;
}

static uint64_t guest_check(struct guest *g, uint64_t seed, unsigned zero_every, size_t stride)
{
	size_t pages = g->size / GVM_PAGE_SIZE;
	uint8_t want[GVM_PAGE_SIZE];
	uint64_t bad = 0;

	for (size_t k = 0; k < pages; k++) {
		size_t p = (k * stride) % pages;

		gvm_pattern_fill_page(want, seed, p, zero_every);
		bad += memcmp(g->mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
		if (k % 64 == 0)
			guest_sample(g);
	}
	return bad;
}

static void guest_fill(struct guest *g, uint64_t seed, unsigned zero_every)
{
	for (size_t p = 0; p < g->size / GVM_PAGE_SIZE; p++) {
		gvm_pattern_fill_page(g->mem + p * GVM_PAGE_SIZE, seed, p, zero_every);
		if (p % 64 == 0)
			guest_sample(g);
	}
}

static int wait_exit(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Writes the whole region, reads it back in another order; exits 0 when
 * every page is right and the memfd never held more than limit bytes. */
static pid_t fill_and_check(const char *vm, size_t size, size_t limit, uint64_t seed)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct guest g;
		uint64_t bad;

		guest_attach(&g, vm, size);
		guest_fill(&g, seed, 9);
		bad = guest_check(&g, seed, 9, 7919); /* a prime stride: another order */
		CHILD_CHECK(bad == 0, 73, "%s: %llu pages wrong", vm, (unsigned long long)bad);
		CHILD_CHECK(!limit || g.max_blocks_bytes <= limit, 74,
			    "%s: memfd held %zu bytes, limit %zu", vm, g.max_blocks_bytes, limit);
		gvm_detach(g.s);
		_exit(0);
	}
	return pid;
}

static void test_region_eight_times_the_budget_reads_back_exactly_within_budget(void **state)
{
	struct cluster cl;

	(void)state;
	cluster_start(&cl, "64M", "1G");
	assert_int_equal(wait_exit(fill_and_check("vm-big", 512u << 20, (64u << 20) + BATCH_BYTES, 11)),
			 0);
	assert_true(gvmt_broker_stat(sock_path, "writebacks") > 0);
	assert_true(gvmt_broker_stat(sock_path, "evictions") >= (512u - 64u) << 8);
	assert_true(gvmt_broker_stat(sock_path, "clean_drops") > 0);
	assert_true(gvmt_broker_stat(sock_path, "wp_faults") > 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "writeback_errors"), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "budget_bytes"), 64u << 20);
	assert_true(gvmt_broker_wait_stat(sock_path, "resident_bytes", 0, 5000));
	cluster_stop(&cl);
}

/* ---- racing writers ---- */

#define RACE_THREADS 4
#define RACE_PAGES 64   /* per thread */
#define RACE_ROUNDS 150
#define RACE_MINOR_PAGES 1024 /* per thread: 32 extents in a row */
#define RACE_MINOR_ROUNDS 30

struct racer {
	uint8_t *mem;
	unsigned index;
	unsigned pages;  /* each writer's, in a row */
	unsigned rounds;
	volatile int *stop;
};

/* Each increment rewrites every word of the page with the new count; the
 * rounds are paced so they run while the broker evicts these pages. */
static void *race_writer(void *arg)
{
	struct racer *r = arg;

	for (unsigned round = 1; round <= r->rounds; round++) {
		usleep(2000);
		for (unsigned k = 0; k < r->pages; k++) {
			uint64_t *w = (uint64_t *)(r->mem + ((size_t)r->index * r->pages + k) * GVM_PAGE_SIZE);
			uint64_t v = w[0] + 1;

			for (size_t i = 0; i < GVM_PAGE_SIZE / 8; i++)
				w[i] = v;
		}
	}
	return NULL;
}

/* Streams over the rest of the region so the counters keep being evicted. */
static void *race_pressure(void *arg)
{
	struct racer *r = arg;
	size_t first = (size_t)RACE_THREADS * r->pages, pages = (64u << 20) / GVM_PAGE_SIZE;
	volatile uint8_t sink = 0;

	while (!*r->stop)
		for (size_t p = first; p < pages && !*r->stop; p++)
			r->mem[p * GVM_PAGE_SIZE] = (uint8_t)(sink += r->mem[p * GVM_PAGE_SIZE + 1]);
	return NULL;
}

/* Writers count in their pages while eviction writes them back and drops
 * them: no increment is lost, no page torn. With pages (per writer) many
 * extents long, each writer's pass is a sequential run: the extents ahead
 * of it are prefetched, and with --install continue received into the
 * memfd with their first page left unmapped, so the writers' writes to
 * those tripwires are minor faults, racing the write-backs and punches. */
static void race(const char *install, unsigned pages, unsigned rounds, bool want_minor)
{
	struct cluster cl;
	pid_t pid;

	install_mode = install;
	cluster_start(&cl, "8M", "1G");
	install_mode = NULL;
	pid = fork();
	if (pid == 0) {
		struct racer r[RACE_THREADS + 1];
		pthread_t t[RACE_THREADS + 1];
		volatile int stop = 0;
		struct guest g;
		uint64_t lost = 0, torn = 0;

		guest_attach(&g, "vm-race", 64u << 20);
		for (unsigned i = 0; i <= RACE_THREADS; i++) {
			r[i] = (struct racer){ g.mem, i, pages, rounds, &stop };
			pthread_create(&t[i], NULL, i < RACE_THREADS ? race_writer : race_pressure, &r[i]);
		}
		for (unsigned i = 0; i < RACE_THREADS; i++)
			pthread_join(t[i], NULL);
		stop = 1;
		pthread_join(t[RACE_THREADS], NULL);
		for (size_t p = 0; p < (size_t)RACE_THREADS * pages; p++) {
			uint64_t *w = (uint64_t *)(g.mem + p * GVM_PAGE_SIZE);

			lost += w[0] != rounds;
			for (size_t i = 1; i < GVM_PAGE_SIZE / 8; i++)
				torn += w[i] != w[0];
		}
		CHILD_CHECK(!lost && !torn, 75, "%llu counters lost increments, %llu words torn",
			    (unsigned long long)lost, (unsigned long long)torn);
		gvm_detach(g.s);
		_exit(0);
	}
	assert_int_equal(wait_exit(pid), 0);
	/* Pages really moved while being written: dirty ones went to the
	 * donors and writers hit pages being written back. */
	assert_true(gvmt_broker_stat(sock_path, "writebacks") > 0);
	assert_true(gvmt_broker_stat(sock_path, "evictions") > 0);
	assert_true(gvmt_broker_stat(sock_path, "wp_faults") > 0);
	fprintf(stderr, "minor faults %llu, prefetch hits %llu, evictions %llu\n",
		(unsigned long long)gvmt_broker_stat(sock_path, "minor_faults"),
		(unsigned long long)gvmt_broker_stat(sock_path, "prefetch_hits"),
		(unsigned long long)gvmt_broker_stat(sock_path, "evictions"));
	if (want_minor)
		assert_true(gvmt_broker_stat(sock_path, "minor_faults") > 0);
	if (!install || !strcmp(install, "copy")) /* the default: nothing registers minor faults */
		assert_int_equal(gvmt_broker_stat(sock_path, "minor_faults"), 0);
	cluster_stop(&cl);
}

static void test_writes_racing_eviction_are_never_lost_or_torn(void **state)
{
	(void)state;
	race(NULL, RACE_PAGES, RACE_ROUNDS, false);
}

static void test_writes_racing_eviction_into_received_pages_are_never_lost_or_torn(void **state)
{
	(void)state;
	race("continue", RACE_PAGES, RACE_ROUNDS, false);
}

/* The counters (4 x 4 MiB) are twice the budget, so they evict each other
 * every round; the runs through them make tripwires. */
static void test_writes_racing_minor_faults_and_eviction_are_never_lost_or_torn(void **state)
{
	(void)state;
	race("continue", RACE_MINOR_PAGES, RACE_MINOR_ROUNDS, true);
}

static void test_three_vms_share_one_budget_and_all_finish(void **state)
{
	struct cluster cl;
	pid_t pid[3];
	char name[32];

	(void)state;
	cluster_start(&cl, "48M", "1G");
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "vm-share-%d", i);
		pid[i] = fill_and_check(name, 96u << 20, 0, 100 + (uint64_t)i);
	}
	for (int i = 0; i < 3; i++)
		assert_int_equal(wait_exit(pid[i]), 0);
	assert_true(gvmt_broker_stat(sock_path, "writebacks") > 0);
	cluster_stop(&cl);
}

static void test_donors_that_refuse_writes_cost_no_data(void **state)
{
	struct cluster cl;

	(void)state;
	/* 2 x 8 MiB of donor space for a 96 MiB region under a 16 MiB budget. */
	cluster_start(&cl, "16M", "8M");
	assert_int_equal(wait_exit(fill_and_check("vm-full", 96u << 20, 0, 21)), 0);
	assert_true(gvmt_broker_stat(sock_path, "writeback_errors") > 0);
	assert_true(gvmt_file_count(cl.broker.log, "capacity full") >= 1);
	assert_true(gvmt_file_count(cl.broker.log, "they stay resident") >= 1);
	cluster_stop(&cl);
}

static void test_removed_pages_read_as_zero_even_after_eviction(void **state)
{
	struct cluster cl;
	pid_t pid;

	(void)state;
	cluster_start(&cl, "8M", "1G");
	pid = fork();
	if (pid == 0) {
		struct guest g;
		size_t half = (16u << 20) / 2, bad = 0;

		guest_attach(&g, "vm-balloon", 32u << 20);
		guest_fill(&g, 31, 0);                     /* 32 MiB under 8: mostly on donors */
		CHILD_CHECK(!madvise(g.mem, half, MADV_REMOVE), 76, "madvise: %s", strerror(errno));
		guest_fill(&g, 32, 0);                     /* push it all through again... */
		CHILD_CHECK(!madvise(g.mem, half, MADV_REMOVE), 77, "madvise: %s", strerror(errno));
		for (size_t p = half / GVM_PAGE_SIZE; p < g.size / GVM_PAGE_SIZE; p++)
			g.mem[p * GVM_PAGE_SIZE] ^= 1;     /* ...and the rest once more */
		for (size_t i = 0; i < half; i++)
			bad += g.mem[i] != 0;
		CHILD_CHECK(bad == 0, 78, "%zu bytes of removed pages are not zero", bad);
		gvm_detach(g.s);
		_exit(0);
	}
	assert_int_equal(wait_exit(pid), 0);
	assert_true(gvmt_broker_stat(sock_path, "removed_pages") >= 2 * (8u << 8));
	cluster_stop(&cl);
}

/* Descriptors the process holds, and how many of them are memfds. */
static int proc_fds(pid_t pid, int *memfds)
{
	char dir[64], path[320], link[256];
	int n = 0;

	*memfds = 0;
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	for (int fd = 0; fd < 4096; fd++) {
		ssize_t len;

		snprintf(path, sizeof(path), "%s/%d", dir, fd);
		len = readlink(path, link, sizeof(link) - 1);
		if (len < 0)
			continue;
		link[len] = '\0';
		n++;
		*memfds += strstr(link, "/memfd:") != NULL;
	}
	return n;
}

/* Eight VMs in turn, each written at twice the budget (so its pages are
 * written back) and then gone: the broker holds as many descriptors as
 * before, none of them a guest's memfd, and its memory stays put. Each
 * write-back used to keep a reference on its VM, and with it the VM's
 * memfds, uffd and bitmaps, for good. */
static void test_vms_that_had_pages_written_back_leave_nothing_behind(void **state)
{
	struct cluster cl;
	int fds0, memfds, fds1;
	uint64_t rss0, rss1;

	(void)state;
	cluster_start(&cl, "8M", "256M");
	assert_int_equal(wait_exit(fill_and_check("leak-0", 16u << 20, 0, 1)), 0);
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 0, 5000));
	/* After one VM: the broker's own descriptors (the fewest over a moment:
	 * a Stats connection just closed may not be let go yet) and heap. */
	fds0 = proc_fds(cl.broker.pid, &memfds);
	for (int t = 0; t < 10; t++, usleep(20000)) {
		int n = proc_fds(cl.broker.pid, &memfds);

		fds0 = n < fds0 ? n : fds0;
	}
	assert_int_equal(memfds, 0);
	rss0 = gvmt_proc_rss_kib(&cl.broker);
	for (int i = 1; i < 8; i++) {
		char vm[24];

		snprintf(vm, sizeof(vm), "leak-%d", i);
		assert_int_equal(wait_exit(fill_and_check(vm, 16u << 20, 0, (uint64_t)i + 1)), 0);
	}
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 0, 5000));
	assert_true(gvmt_broker_stat(sock_path, "writebacks") > 8 * 8);
	/* (the Stats connections just closed are let go on the broker's next
	 * turn: a moment to settle) */
	for (int t = 0; t < 100 && (fds1 = proc_fds(cl.broker.pid, &memfds)) > fds0; t++)
		usleep(20000);
	rss1 = gvmt_proc_rss_kib(&cl.broker);
	fprintf(stderr, "broker: %d descriptors after one VM, %d after eight (%d memfds); RSS %llu "
		"KiB after one VM, %llu KiB after eight\n", fds0, fds1, memfds, (unsigned long long)rss0,
		(unsigned long long)rss1);
	assert_int_equal(memfds, 0);
	assert_int_equal(fds1, fds0);
#ifndef GVM_SANITIZED
	/* Seven more VMs' bitmaps and buffers would be megabytes; allow the
	 * allocator's own slack. (ASan's quarantine keeps freed memory; there
	 * LeakSanitizer checks the broker's heap when it exits, and
	 * cluster_stop wants that exit to be 0.) */
	assert_true(rss1 < rss0 + 2048);
#endif
	cluster_stop(&cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_region_eight_times_the_budget_reads_back_exactly_within_budget),
		cmocka_unit_test(test_writes_racing_eviction_are_never_lost_or_torn),
		cmocka_unit_test(test_writes_racing_eviction_into_received_pages_are_never_lost_or_torn),
		cmocka_unit_test(test_writes_racing_minor_faults_and_eviction_are_never_lost_or_torn),
		cmocka_unit_test(test_three_vms_share_one_budget_and_all_finish),
		cmocka_unit_test(test_donors_that_refuse_writes_cost_no_data),
		cmocka_unit_test(test_removed_pages_read_as_zero_even_after_eviction),
		cmocka_unit_test(test_vms_that_had_pages_written_back_leave_nothing_behind),
	};
	struct gvm_key key;

	gvmt_main_init(key_path, sizeof(key_path), &key);
	have_user = gvmt_test_user(&test_uid, &test_gid, &gvm_gid);
	return cmocka_run_group_tests_name("evict", tests, NULL, NULL);
}
