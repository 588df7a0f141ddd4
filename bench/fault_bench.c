/* fault_bench.c: gvm-fault-bench, first-touch faults through gvm-broker
 * against the machine's ceiling, in one run. The ceiling is a local
 * userfaultfd handler thread that serves each fault by copying the
 * faulting extent from a buffer (the same extent-sized UFFDIO_COPY the
 * broker does, minus the network). The broker run attaches a memfd region
 * with libgvmmem, writes its pages and moves them all to the donors
 * (push.h) before the clock starts, so every first touch measured is a
 * remote fetch. Reports random 4 KiB fault p50/p99 and
 * sequential MB/s for both, and their ratios. With --evict R it runs a
 * read-modify-write workload instead (two sequential passes, then random
 * 4 KiB read-modify-writes) three ways: local ceiling, broker without a
 * limit, and broker with a per-VM limit of 1/R of the region (eviction).
 * With --versus B the ceiling gives way to a second broker: each round runs
 * the first touches (or, with --evict, the limited read-modify-write) on
 * --socket and on B, in turn, for two configurations side by side; with
 * --huge-b, B's region is a hugetlb memfd of 2 MiB pages (B may be the
 * same broker), so huge pages are measured against 4 KiB ones. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "gvmmem.h"
#include "hostcpu.h"
#include "log.h"
#include "pattern.h"
#include "push.h"

#define SEED 77u

struct result {
	double seq_mbps, rand_p50_us, rand_p99_us;
	double cpu_s_per_gib; /* the broker's core-seconds per GiB of the sequential pass */
};

/* --cpu-pid: the broker whose CPU time the sequential pass is charged with
 * (0: none); run_versus points it at the broker of the run. */
static pid_t cpu_pid, cpu_pids[2];
/* --huge-b: B's regions are hugetlb memfds; hugetlb: the region being made. */
static bool huge_b, hugetlb;

/* utime + stime of pid in seconds, from /proc; 0 if unreadable. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;

	if (!pid)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	/* after "pid (comm)": state is field 3, utime 14 and stime 15 */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
			 &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

struct local_uffd {
	int uffd;
	uint8_t *base;
	size_t size;
	unsigned extent_pages;
	uint8_t *src;      /* the region's contents, served from here */
	uint8_t *resident; /* per page */
	volatile int stop;
};

typedef void (*workload_fn)(uint8_t *mem, size_t size, unsigned extent_pages,
			    unsigned samples, struct result *r);

/* Touches pages in order (one byte each), then `samples` random pages of
 * a second, untouched half, timing each first touch. */
static void measure(uint8_t *mem, size_t size, unsigned extent_pages, unsigned samples,
		    struct result *r)
{
	size_t half = size / 2, pages = half / GVM_PAGE_SIZE;
	size_t extents = pages / extent_pages;
	double *lat = malloc(samples * sizeof(*lat)), t0;
	volatile uint8_t sink = 0;
	uint64_t rng = 0x9e3779b97f4a7c15ULL;
	uint8_t *used = calloc(extents, 1);

	double c0 = proc_cpu_s(cpu_pid);

	t0 = bench_now_us();
	for (size_t p = 0; p < pages; p++)
		sink += mem[p * GVM_PAGE_SIZE];
	r->seq_mbps = (double)half / (bench_now_us() - t0);
	r->cpu_s_per_gib = (proc_cpu_s(cpu_pid) - c0) * (double)(1u << 30) / (double)half;
	if (samples > extents)
		samples = (unsigned)extents;
	for (unsigned i = 0; i < samples; i++) {
		size_t e;

		do {
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			e = rng % extents;
		} while (used[e]);
		used[e] = 1;
		size_t p = pages + e * extent_pages + (rng >> 32) % extent_pages;

		t0 = bench_now_us();
		sink += mem[p * GVM_PAGE_SIZE];
		lat[i] = bench_now_us() - t0;
	}
	qsort(lat, samples, sizeof(*lat), bench_cmp_double);
	r->rand_p50_us = lat[samples / 2];
	r->rand_p99_us = lat[samples * 99 / 100];
	(void)sink;
	free(lat);
	free(used);
}

/* Random 4 KiB reads (one byte of each page, 4 x samples of them, each
 * timed) over the whole region, most of it on the donors: with --evict R
 * only 1/R of it may be resident, so reads keep evicting. */
static void measure_rand_read(uint8_t *mem, size_t size, unsigned extent_pages,
			      unsigned samples, struct result *r)
{
	size_t pages = size / GVM_PAGE_SIZE, n = (size_t)samples * 4;
	double *lat = malloc(n * sizeof(*lat)), t0;
	uint64_t rng = 0x51ed270b27a3c4e9ULL;
	volatile uint8_t sink = 0;

	(void)extent_pages;
	for (size_t i = 0; i < n; i++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		t0 = bench_now_us();
		sink += mem[(rng % pages) * GVM_PAGE_SIZE];
		lat[i] = bench_now_us() - t0;
	}
	qsort(lat, n, sizeof(*lat), bench_cmp_double);
	r->seq_mbps = 0;
	r->rand_p50_us = lat[n / 2];
	r->rand_p99_us = lat[n * 99 / 100];
	(void)sink;
	free(lat);
}

/* Touches every page in order, one byte each: first-touch MB/s only. */
static void measure_seq(uint8_t *mem, size_t size, unsigned extent_pages, unsigned samples,
			struct result *r)
{
	volatile uint8_t sink = 0;
	double t0 = bench_now_us();

	(void)extent_pages;
	(void)samples;
	for (size_t p = 0; p < size / GVM_PAGE_SIZE; p++)
		sink += mem[p * GVM_PAGE_SIZE];
	r->seq_mbps = (double)size / (bench_now_us() - t0);
	r->rand_p50_us = r->rand_p99_us = 0;
	(void)sink;
}

/* A round the hypervisor took more than this share of the host CPU from
 * says nothing about us: it runs again, at most STEAL_RETRIES times. */
#define STEAL_MAX_PCT 3.0
#define STEAL_RETRIES 3u

struct steal_mark {
	uint64_t busy, steal, total;
};

static void steal_mark(struct steal_mark *m)
{
	bench_host_cpu(&m->busy, &m->steal, &m->total);
}

/* Percent of the host CPU stolen since m; the percent busy in *busy_pct
 * unless it is NULL. */
static double steal_since(const struct steal_mark *m, double *busy_pct)
{
	struct steal_mark now;
	double total;

	steal_mark(&now);
	total = (double)(now.total - m->total);
	if (busy_pct)
		*busy_pct = total > 0 ? 100.0 * (double)(now.busy - m->busy) / total : 0;
	return total > 0 ? 100.0 * (double)(now.steal - m->steal) / total : 0;
}

/* After a round: true when it must run again (over STEAL_MAX_PCT stolen,
 * retries left); else the round stands and *worst keeps the most stolen. */
static bool run_again(double stolen, unsigned retry, unsigned round, const char *what,
		      double *worst)
{
	if (stolen <= STEAL_MAX_PCT || retry == STEAL_RETRIES) {
		if (stolen > *worst)
			*worst = stolen;
		return false;
	}
	printf("round %u: %s%.0f%% of the host CPU stolen; again\n", round, what, stolen);
	return true;
}

/* --vms: the children say they are attached on ready_fd, wait for a byte
 * on go_fd, and send their result on result_fd. */
static int vm_ready_fd = -1, vm_go_fd = -1, vm_result_fd = -1;
static double vms_cpu_s_per_gib; /* the broker's, in the last --vms round */

/* UFFDIO_COPY of pages [from, to) that are not resident yet. */
static void local_copy(struct local_uffd *l, uint64_t from, uint64_t to)
{
	struct uffdio_copy c;

	if (from >= to || l->resident[from])
		return;
	c = (struct uffdio_copy){ (uintptr_t)l->base + from * GVM_PAGE_SIZE,
				  (uintptr_t)l->src + from * GVM_PAGE_SIZE,
				  (to - from) * GVM_PAGE_SIZE, UFFDIO_COPY_MODE_WP, 0 };
	ioctl(l->uffd, UFFDIO_COPY, &c);
	for (uint64_t k = from; k < to; k++)
		l->resident[k] = 1;
}

/* Two sequential read-modify-write passes over the region (MB/s of pages
 * passed), then 4 x samples random 4 KiB read-modify-writes, each timed.
 * Only the first word of a page changes: +1 per touch. */
static void measure_rmw(uint8_t *mem, size_t size, unsigned extent_pages, unsigned samples,
			struct result *r)
{
	size_t pages = size / GVM_PAGE_SIZE, n = (size_t)samples * 4;
	double *lat = malloc(n * sizeof(*lat)), t0;
	uint64_t rng = 0x2545f4914f6cdd1dULL;

	(void)extent_pages;
	t0 = bench_now_us();
	for (int pass = 0; pass < 2; pass++)
		for (size_t p = 0; p < pages; p++)
			((volatile uint64_t *)(mem + p * GVM_PAGE_SIZE))[0] += 1;
	r->seq_mbps = 2.0 * (double)size / (bench_now_us() - t0);
	for (size_t i = 0; i < n; i++) {
		size_t p;

		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		p = rng % pages;
		t0 = bench_now_us();
		((volatile uint64_t *)(mem + p * GVM_PAGE_SIZE))[0] += 1;
		lat[i] = bench_now_us() - t0;
	}
	qsort(lat, n, sizeof(*lat), bench_cmp_double);
	r->rand_p50_us = lat[n / 2];
	r->rand_p99_us = lat[n * 99 / 100];
	free(lat);
}

static void *local_handler(void *arg)
{
	struct local_uffd *l = arg;
	struct uffd_msg msgs[64];

	while (!l->stop) {
		struct pollfd p = { l->uffd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(l->uffd, msgs, sizeof(msgs));
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
			uint64_t page = (msgs[i].arg.pagefault.address - (uintptr_t)l->base) / GVM_PAGE_SIZE;
			uint64_t first = page / l->extent_pages * l->extent_pages;

			if (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
				/* the first write to a page: lift its protection */
				struct uffdio_writeprotect w = {
					{ (uintptr_t)l->base + page * GVM_PAGE_SIZE, GVM_PAGE_SIZE }, 0 };

				ioctl(l->uffd, UFFDIO_WRITEPROTECT, &w);
				continue;
			}

			/* The faulting page first, as the broker does, then the rest. */
			local_copy(l, page, page + 1);
			for (uint64_t k = first; k < first + l->extent_pages;) {
				uint64_t j = k;

				while (j < first + l->extent_pages && !l->resident[j])
					j++;
				local_copy(l, k, j);
				k = j + 1;
			}
		}
	}
	return NULL;
}

static uint8_t *map_region(size_t size, int *memfd)
{
	uint8_t *p;

	/* (no reservation of huge pages: the pool need only hold what is resident) */
	*memfd = memfd_create("bench-ram", MFD_CLOEXEC | (hugetlb ? MFD_HUGETLB : 0));
	if (*memfd < 0 || ftruncate(*memfd, (off_t)size))
		return NULL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_SHARED | (hugetlb ? MAP_NORESERVE : 0), *memfd, 0);
	return p == MAP_FAILED ? NULL : p;
}

static int run_local(size_t size, unsigned extent_pages, unsigned samples, workload_fn work,
		     struct result *r)
{
	struct local_uffd l = { .size = size, .extent_pages = extent_pages };
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	struct uffdio_register reg;
	pthread_t t;
	int memfd, dev;

	l.base = map_region(size, &memfd);
	l.src = malloc(size);
	l.resident = calloc(size / GVM_PAGE_SIZE, 1);
	if (!l.base || !l.src || !l.resident)
		return -ENOMEM;
	for (size_t p = 0; p < size / GVM_PAGE_SIZE; p++)
		gvm_pattern_fill_page(l.src + p * GVM_PAGE_SIZE, SEED, p, 0);
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	l.uffd = dev >= 0 ? ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK) :
			    (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (dev >= 0)
		close(dev);
	reg = (struct uffdio_register){ { (uintptr_t)l.base, size },
					UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, 0 };
	if (l.uffd < 0 || ioctl(l.uffd, UFFDIO_API, &api) || ioctl(l.uffd, UFFDIO_REGISTER, &reg)) {
		fprintf(stderr, "gvm-fault-bench: local userfaultfd: %s (run as root)\n", strerror(errno));
		return -errno;
	}
	pthread_create(&t, NULL, local_handler, &l);
	work(l.base, size, extent_pages, samples, r);
	l.stop = 1;
	pthread_join(t, NULL);
	close(l.uffd);
	munmap(l.base, size);
	close(memfd);
	free(l.src);
	free(l.resident);
	return 0;
}

/* Each figure's median over the rounds. */
static void median_result(const struct result *r, unsigned n, struct result *m)
{
	double v[16];

	for (unsigned i = 0; i < n; i++)
		v[i] = r[i].seq_mbps;
	qsort(v, n, sizeof(v[0]), bench_cmp_double);
	m->seq_mbps = v[n / 2];
	for (unsigned i = 0; i < n; i++)
		v[i] = r[i].rand_p50_us;
	qsort(v, n, sizeof(v[0]), bench_cmp_double);
	m->rand_p50_us = v[n / 2];
	for (unsigned i = 0; i < n; i++)
		v[i] = r[i].rand_p99_us;
	qsort(v, n, sizeof(v[0]), bench_cmp_double);
	m->rand_p99_us = v[n / 2];
	for (unsigned i = 0; i < n; i++)
		v[i] = r[i].cpu_s_per_gib;
	qsort(v, n, sizeof(v[0]), bench_cmp_double);
	m->cpu_s_per_gib = v[n / 2];
}

/* limit: the VM's own budget in bytes (GVM_VM_LIMIT), 0 for none. */
static int run_broker(const char *sock, size_t size, unsigned extent_pages, unsigned samples,
		      workload_fn work, uint64_t limit, struct result *r)
{
	char vm[32];
	struct gvm_region reg = { "ram", NULL, size, -1, 0, 0 };
	struct gvm_session *s;
	uint8_t want[GVM_PAGE_SIZE];
	int memfd, err;

	snprintf(vm, sizeof(vm), "bench-%d", (int)getpid());
	reg.host_addr = map_region(size, &memfd);
	if (!reg.host_addr) {
		fprintf(stderr, "gvm-fault-bench: a %s region of %zu MiB: %s\n",
			hugetlb ? "hugetlb" : "memfd", size >> 20, strerror(errno));
		return -errno;
	}
	reg.memfd = memfd;
	s = gvm_attach(sock, vm, &reg, 1, &err);
	if (!s) {
		fprintf(stderr, "gvm-fault-bench: attach: %s\n", gvm_strerror(err));
		return err;
	}
	/* The region's pages, written here and moved to the donors: what the
	 * measured touches read. */
	for (uint64_t p = 0; p < size / GVM_PAGE_SIZE; p++)
		gvm_pattern_fill_page((uint8_t *)reg.host_addr + p * GVM_PAGE_SIZE, SEED, p, 0);
	err = gvm_push_to_donors(s, memfd, limit, 300000);
	if (err) {
		fprintf(stderr, "gvm-fault-bench: moving the region to the donors: %s\n",
			gvm_strerror(err));
		return err;
	}
	if (vm_ready_fd >= 0) {
		char c = 'r';

		if (write(vm_ready_fd, &c, 1) != 1 || read(vm_go_fd, &c, 1) != 1)
			return -EPIPE;
	}
	work(reg.host_addr, size, extent_pages, samples, r);
	if (vm_result_fd >= 0) {
		char c;

		if (write(vm_result_fd, r, sizeof(*r)) != sizeof(*r) || read(vm_go_fd, &c, 1) != 1)
			return -EPIPE;
	}
	/* What came through the broker is the donor's data (past the first
	 * word, which the read-modify-write workload counts in). */
	for (size_t p = 0; p < size / GVM_PAGE_SIZE; p += 97) {
		gvm_pattern_fill_page(want, SEED, p, 0);
		if (memcmp((uint8_t *)reg.host_addr + p * GVM_PAGE_SIZE + 8, want + 8,
			   GVM_PAGE_SIZE - 8)) {
			fprintf(stderr, "gvm-fault-bench: page %zu differs from the donor's\n", p);
			return -EIO;
		}
	}
	gvm_detach(s);
	munmap(reg.host_addr, size);
	close(memfd);
	return 0;
}

#define VMS_LIST_MAX 4u

/* "1,2,4": VM counts, each 1..16. */
static int parse_vms(const char *arg, unsigned *ks, unsigned *n)
{
	const char *p = arg;

	*n = 0;
	do {
		char *end;
		unsigned long k = strtoul(p, &end, 10);

		if (end == p || k < 1 || k > 16 || *n == VMS_LIST_MAX || (*end && *end != ','))
			return -1;
		ks[(*n)++] = (unsigned)k;
		p = *end ? end + 1 : end;
	} while (*p);
	return p[-1] == ',' ? -1 : 0;
}

/* One round of k VMs at once: each child seeds and attaches its own region,
 * then all touch theirs in order together. Aggregate MB/s is all their
 * bytes over the wall time from the start signal to the last result. The
 * VMs stay attached until all are done, so the first to finish does not
 * tear down (and have its donor pages dropped) while the others still run. */
static int vms_round(const char *sock, size_t size, unsigned extent_pages, unsigned k,
		     double *agg, double *slowest, double *busy_pct, double *steal_pct)
{
	struct steal_mark m;
	int ready[2], go[2], res[2], rc = 0;
	char c;
	double t0;

	if (pipe(ready) || pipe(go) || pipe(res))
		return -1;
	for (unsigned i = 0; i < k; i++) {
		pid_t pid = fork();

		if (pid < 0)
			return -1;
		if (pid == 0) {
			struct result r;

			vm_ready_fd = ready[1];
			vm_go_fd = go[0];
			vm_result_fd = res[1];
			_exit(run_broker(sock, size, extent_pages, 0, measure_seq, 0, &r) ? 1 : 0);
		}
	}
	close(ready[1]), close(res[1]), close(go[0]);
	for (unsigned i = 0; i < k; i++)
		if (read(ready[0], &c, 1) != 1)
			rc = -1; /* a child failed before attaching: its status says why */
	*slowest = 1e30;
	steal_mark(&m);
	double c0 = proc_cpu_s(cpu_pids[0]);
	t0 = bench_now_us();
	for (unsigned i = 0; i < k && !rc; i++)
		if (write(go[1], "g", 1) != 1)
			rc = -1;
	for (unsigned i = 0; i < k && !rc; i++) {
		struct result r;

		if (read(res[0], &r, sizeof(r)) != sizeof(r))
			rc = -1;
		else if (r.seq_mbps < *slowest)
			*slowest = r.seq_mbps;
	}
	*agg = (double)k * (double)size / (bench_now_us() - t0);
	*steal_pct = steal_since(&m, busy_pct);
	vms_cpu_s_per_gib = (proc_cpu_s(cpu_pids[0]) - c0) * (double)(1u << 30) /
			    ((double)k * (double)size);
	for (unsigned i = 0; i < k; i++) /* all done: detach */
		if (write(go[1], "d", 1) != 1)
			break;
	close(go[1]), close(ready[0]), close(res[0]);
	for (unsigned i = 0; i < k; i++) {
		int status;

		if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
			rc = -1;
	}
	return rc;
}

/* --vms K[,K...]: rounds of each K in turn (1, 2, 4, 1, 2, 4, ...), so
 * drift on a shared host falls on every K alike; medians are reported. */
static int run_vms(const char *sock, size_t size, unsigned extent_pages, const unsigned *ks,
		   unsigned nk, unsigned rounds)
{
	double agg[VMS_LIST_MAX][16], cpu[VMS_LIST_MAX][16], busy_all[VMS_LIST_MAX][16];
	double worst_steal = 0;

	for (unsigned round = 0; round < rounds; round++)
		for (unsigned j = 0; j < nk; j++) {
			double slowest, busy, steal;
			char what[64];

			for (unsigned retry = 0;; retry++) {
				if (vms_round(sock, size, extent_pages, ks[j],
					      &agg[j][round], &slowest, &busy, &steal)) {
					fprintf(stderr, "gvm-fault-bench: a VM of the %u-VM round failed\n",
						ks[j]);
					return 1;
				}
				snprintf(what, sizeof(what), "%u VMs at %.1f MB/s: ", ks[j],
					 agg[j][round]);
				if (!run_again(steal, retry, round + 1, what, &worst_steal))
					break;
			}
			cpu[j][round] = vms_cpu_s_per_gib;
			busy_all[j][round] = busy;
			printf("round %u: %u VMs at once, %llu MiB each: aggregate %.1f MB/s, "
			       "slowest VM %.1f MB/s, host CPU %.0f%% busy, %.0f%% stolen, broker "
			       "%.3f core-s/GiB\n",
			       round + 1, ks[j], (unsigned long long)(size >> 20), agg[j][round],
			       slowest, busy, steal, vms_cpu_s_per_gib);
			fflush(stdout);
		}
	for (unsigned j = 0; j < nk; j++) {
		qsort(agg[j], rounds, sizeof(agg[j][0]), bench_cmp_double);
		qsort(cpu[j], rounds, sizeof(cpu[j][0]), bench_cmp_double);
		qsort(busy_all[j], rounds, sizeof(busy_all[j][0]), bench_cmp_double);
		printf("median: %u VMs aggregate %.1f MB/s, host %.0f%% busy, broker %.3f "
		       "core-s/GiB\nkey vms_%u_aggregate_mbps %.1f\nkey vms_%u_busy_pct %.0f\n",
		       ks[j], agg[j][rounds / 2], busy_all[j][rounds / 2], cpu[j][rounds / 2],
		       ks[j], agg[j][rounds / 2], ks[j], busy_all[j][rounds / 2]);
		if (cpu_pids[0])
			printf("key vms_%u_cpu_s_per_gib %.3f\n", ks[j], cpu[j][rounds / 2]);
	}
	printf("key vms_steal_pct %.0f\n", worst_steal);
	return 0;
}

/* --versus: the same workload on broker A (--socket) and broker B, the
 * order swapped every round so drift falls on both alike; medians of each.
 * prefix names the figures: "" for first touch, "rmw_" for --evict. */
static int run_versus(const char *sock_a, const char *sock_b, size_t size,
		      unsigned extent_pages, unsigned samples, unsigned rounds, workload_fn work,
		      uint64_t limit, const char *prefix)
{
	struct result a[16], b[16], am, bm;
	double worst_steal = 0;

	printf("%-30s %12s %14s %14s\n", "", "seq MB/s", "rand p50 us", "rand p99 us");
	for (unsigned i = 0; i < rounds; i++) {
		for (unsigned retry = 0;; retry++) {
			const char *first = i % 2 ? sock_b : sock_a, *second = i % 2 ? sock_a : sock_b;
			struct steal_mark m;

			steal_mark(&m);
			cpu_pid = cpu_pids[i % 2];
			hugetlb = huge_b && i % 2; /* B's extents are its huge pages */
			if (run_broker(first, size, hugetlb ? GVM_HUGE_PAGE_PAGES : extent_pages,
				       samples, work, limit, i % 2 ? &b[i] : &a[i]))
				return 1;
			cpu_pid = cpu_pids[(i + 1) % 2];
			hugetlb = huge_b && !(i % 2);
			if (run_broker(second, size, hugetlb ? GVM_HUGE_PAGE_PAGES : extent_pages,
				       samples, work, limit, i % 2 ? &a[i] : &b[i]))
				return 1;
			hugetlb = false;
			if (!run_again(steal_since(&m, NULL), retry, i + 1, "", &worst_steal))
				break;
		}
		printf("round %u: broker A (--socket)   %12.1f %14.1f %14.1f\n", i + 1,
		       a[i].seq_mbps, a[i].rand_p50_us, a[i].rand_p99_us);
		printf("round %u: broker B (--versus)   %12.1f %14.1f %14.1f\n", i + 1,
		       b[i].seq_mbps, b[i].rand_p50_us, b[i].rand_p99_us);
		fflush(stdout);
	}
	median_result(a, rounds, &am);
	median_result(b, rounds, &bm);
	printf("median:  broker A (--socket)   %12.1f %14.1f %14.1f\n", am.seq_mbps,
	       am.rand_p50_us, am.rand_p99_us);
	printf("median:  broker B (--versus)   %12.1f %14.1f %14.1f\n", bm.seq_mbps,
	       bm.rand_p50_us, bm.rand_p99_us);
	printf("B against A: sequential %.2fx, random p50 %.2fx, p99 %.2fx\n",
	       bm.seq_mbps / am.seq_mbps, bm.rand_p50_us / am.rand_p50_us,
	       bm.rand_p99_us / am.rand_p99_us);
	printf("key %sa_seq_mbps %.1f\nkey %sa_rand_p50_us %.1f\nkey %sa_rand_p99_us %.1f\n",
	       prefix, am.seq_mbps, prefix, am.rand_p50_us, prefix, am.rand_p99_us);
	printf("key %sb_seq_mbps %.1f\nkey %sb_rand_p50_us %.1f\nkey %sb_rand_p99_us %.1f\n",
	       prefix, bm.seq_mbps, prefix, bm.rand_p50_us, prefix, bm.rand_p99_us);
	if (cpu_pids[0] && work == measure) {
		printf("broker CPU per GiB of the sequential pass: A %.3f, B %.3f core-seconds "
		       "(B/A %.2f)\n", am.cpu_s_per_gib, bm.cpu_s_per_gib,
		       bm.cpu_s_per_gib / am.cpu_s_per_gib);
		printf("key %sa_cpu_s_per_gib %.3f\nkey %sb_cpu_s_per_gib %.3f\n", prefix,
		       am.cpu_s_per_gib, prefix, bm.cpu_s_per_gib);
	}
	printf("key %sversus_steal_pct %.0f\n", prefix, worst_steal);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 'z' },
		{ "extent-pages", required_argument, NULL, 'e' },
		{ "samples", required_argument, NULL, 'n' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "evict", required_argument, NULL, 'E' },
		{ "vms", required_argument, NULL, 'V' },
		{ "versus", required_argument, NULL, 'B' },
		{ "cpu-pid", required_argument, NULL, 'C' },
		{ "random-read", no_argument, NULL, 'R' },
		{ "huge-b", no_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = GVM_DEFAULT_SOCKET, *versus = NULL;
	uint64_t size = 256ull << 20;
	unsigned extent_pages = GVM_DEFAULT_EXTENT_PAGES, samples = 1000, rounds = 3, evict = 0;
	unsigned vms[VMS_LIST_MAX], nvms = 0;
	bool random_read = false;
	struct result local[16], broker[16], limited[16], page1[16], lm, bm, em, pm;
	double worst_steal = 0; /* in the rounds kept: over STEAL_MAX_PCT only when retries ran out */
	int opt;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's': sock = optarg; break;
		case 'B': versus = optarg; break;
		case 'R': random_read = true; break;
		case 'H': huge_b = true; break;
		case 'C':
			if (sscanf(optarg, "%d,%d", &cpu_pids[0], &cpu_pids[1]) < 1) {
				fprintf(stderr, "--cpu-pid %s: want PID[,PID_B]\n", optarg);
				return 2;
			}
			cpu_pid = cpu_pids[0];
			break;
		case 'z':
			if (gvm_parse_size(optarg, &size) || size < (8u << 20)) {
				fprintf(stderr, "--size %s: want 8M or more\n", optarg);
				return 2;
			}
			break;
		case 'e': extent_pages = (unsigned)atoi(optarg); break;
		case 'n': samples = (unsigned)atoi(optarg); break;
		case 'E':
			evict = (unsigned)atoi(optarg);
			if (evict < 2 || evict > 64) {
				fprintf(stderr, "--evict %s: want a ratio 2..64 (region / per-VM limit)\n", optarg);
				return 2;
			}
			break;
		case 'V':
			if (parse_vms(optarg, vms, &nvms)) {
				fprintf(stderr, "--vms %s: want a list like 1,2,4 of at most %u counts "
						"from 1 to 16\n", optarg, VMS_LIST_MAX);
				return 2;
			}
			break;
		case 'r':
			rounds = (unsigned)atoi(optarg);
			if (rounds < 1 || rounds > 16) {
				fprintf(stderr, "--rounds %s: want 1..16\n", optarg);
				return 2;
			}
			break;
		case 'h':
			printf("Usage: gvm-fault-bench --socket BROKER\n"
			       "          [--size 256M] [--extent-pages 32] [--samples 1000] [--rounds 3]\n"
			       "          [--evict RATIO] [--vms K[,K...]] [--versus BROKER_B]\n"
			       "First-touch faults through gvm-broker (pages written, then moved to the\n"
			       "donors before the clock starts) next to a local userfaultfd handler copying\n"
			       "from memory; run as root. Ceiling and broker alternate for --rounds\n"
			       "rounds; medians are compared. Give the broker's --extent-pages.\n"
			       "--vms K: K processes, each its own VM of\n"
			       "--size, touch their regions in order at once; prints the aggregate.\n"
			       "A list (--vms 1,2,4) runs each count in turn in every round.\n"
			       "--versus B: no ceiling; each round runs the broker's part on\n"
			       "--socket and on B in turn (with --evict: the limited run only).\n"
			       "--random-read (with --versus and --evict R): random 4 KiB reads over\n"
			       "the region with 1/R of it resident, instead of read-modify-writes.\n"
			       "--cpu-pid A[,B]: the brokers' PIDs: their CPU time per GiB of the\n"
			       "sequential pass (and of --vms rounds) is reported.\n"
			       "--huge-b (with --versus): B's regions are hugetlb memfds of 2 MiB\n"
			       "pages (reserve them: /proc/sys/vm/nr_hugepages); B may be --socket.\n");
			return 0;
		default:
			return 2;
		}
	}
	gvm_log_init("gvm-fault-bench", GVM_LOG_WARN);
	if (extent_pages < 1 || extent_pages > GVM_FRAME_PAGES_MAX) {
		fprintf(stderr, "--extent-pages: want 1..%u\n", GVM_FRAME_PAGES_MAX);
		return 2;
	}
	if (huge_b && (!versus || size % GVM_HUGE_PAGE_SIZE)) {
		fprintf(stderr, "--huge-b: needs --versus and a --size in whole 2 MiB pages\n");
		return 2;
	}
	if (nvms)
		return run_vms(sock, size, extent_pages, vms, nvms, rounds);
	if (versus && evict && random_read) {
		printf("random 4 KiB reads, %llu MiB region limited to %llu MiB (1/%u), broker A "
		       "against B, %u reads, %u rounds\n", (unsigned long long)(size >> 20),
		       (unsigned long long)(size / evict >> 20), evict, samples * 4, rounds);
		return run_versus(sock, versus, size, extent_pages, samples, rounds,
				  measure_rand_read, size / evict, "rr_");
	}
	if (versus && evict) {
		printf("read-modify-write, %llu MiB region limited to %llu MiB (1/%u), broker A "
		       "against B, %u random ops, %u rounds\n", (unsigned long long)(size >> 20),
		       (unsigned long long)(size / evict >> 20), evict, samples * 4, rounds);
		return run_versus(sock, versus, size, extent_pages, samples, rounds, measure_rmw,
				  size / evict, "rmw_");
	}
	if (versus) {
		printf("first-touch faults, %llu MiB region, broker A against B, %u random "
		       "samples, %u rounds\n", (unsigned long long)(size >> 20), samples, rounds);
		return run_versus(sock, versus, size, extent_pages, samples, rounds, measure, 0,
				  "");
	}
	if (evict) {
		uint64_t limit = size / evict;

		printf("read-modify-write, %llu MiB region, eviction run limited to %llu MiB (1/%u), "
		       "extents of %u pages, %u random ops, %u rounds\n",
		       (unsigned long long)(size >> 20), (unsigned long long)(limit >> 20), evict,
		       extent_pages, samples * 4, rounds);
		printf("%-30s %12s %14s %14s\n", "", "seq RMW MB/s", "rand p50 us", "rand p99 us");
		for (unsigned i = 0; i < rounds; i++) {
			for (unsigned retry = 0;; retry++) {
				struct steal_mark m;

				steal_mark(&m);
				if (run_local(size, extent_pages, samples, measure_rmw, &local[i]) ||
				    run_broker(sock, size, extent_pages, samples,
					       measure_rmw, 0, &broker[i]) ||
				    run_broker(sock, size, extent_pages, samples,
					       measure_rmw, limit, &limited[i]))
					return 1;
				if (!run_again(steal_since(&m, NULL), retry, i + 1, "", &worst_steal))
					break;
			}
			printf("round %u: local uffd (ceiling)   %12.1f %14.1f %14.1f\n", i + 1,
			       local[i].seq_mbps, local[i].rand_p50_us, local[i].rand_p99_us);
			printf("round %u: broker, no eviction    %12.1f %14.1f %14.1f\n", i + 1,
			       broker[i].seq_mbps, broker[i].rand_p50_us, broker[i].rand_p99_us);
			printf("round %u: broker, 1/%u resident  %12.1f %14.1f %14.1f\n", i + 1, evict,
			       limited[i].seq_mbps, limited[i].rand_p50_us, limited[i].rand_p99_us);
		}
		median_result(local, rounds, &lm);
		median_result(broker, rounds, &bm);
		median_result(limited, rounds, &em);
		printf("median:  local uffd (ceiling)   %12.1f %14.1f %14.1f\n", lm.seq_mbps,
		       lm.rand_p50_us, lm.rand_p99_us);
		printf("median:  broker, no eviction    %12.1f %14.1f %14.1f\n", bm.seq_mbps,
		       bm.rand_p50_us, bm.rand_p99_us);
		printf("median:  broker, 1/%u resident  %12.1f %14.1f %14.1f\n", evict, em.seq_mbps,
		       em.rand_p50_us, em.rand_p99_us);
		printf("eviction run: sequential at %.0f%% of the no-eviction run, %.0f%% of the ceiling\n",
		       100.0 * em.seq_mbps / bm.seq_mbps, 100.0 * em.seq_mbps / lm.seq_mbps);
		printf("key rmw_steal_pct %.0f\n", worst_steal);
		printf("key rmw_ceil_seq_mbps %.1f\nkey rmw_noevict_seq_mbps %.1f\n"
		       "key rmw_evict_seq_mbps %.1f\nkey rmw_evict_rand_p50_us %.1f\n"
		       "key rmw_evict_rand_p99_us %.1f\n",
		       lm.seq_mbps, bm.seq_mbps, em.seq_mbps, em.rand_p50_us, em.rand_p99_us);
		return 0;
	}
	printf("first-touch faults, %llu MiB region, extents of %u pages, %u random samples, %u rounds\n",
	       (unsigned long long)(size >> 20), extent_pages, samples, rounds);
	printf("%-28s %12s %14s %14s\n", "", "seq MB/s", "rand p50 us", "rand p99 us");
	for (unsigned i = 0; i < rounds; i++) {
		/* The ceiling twice: extent-sized copies (as the broker does, for
		 * the sequential figure) and one page per fault (the plain 4 KiB
		 * fault cost, for the latency bound). */
		for (unsigned retry = 0;; retry++) {
			struct steal_mark m;

			steal_mark(&m);
			if (run_local(size, extent_pages, samples, measure, &local[i]) ||
			    run_local(size, 1, samples, measure, &page1[i]) ||
			    run_broker(sock, size, extent_pages, samples,
				       measure, 0, &broker[i]))
				return 1;
			if (!run_again(steal_since(&m, NULL), retry, i + 1, "", &worst_steal))
				break;
		}
		printf("round %u: local uffd (ceiling) %12.1f %14.1f %14.1f\n", i + 1,
		       local[i].seq_mbps, local[i].rand_p50_us, local[i].rand_p99_us);
		printf("round %u: gvm-broker + donors %12.1f %14.1f %14.1f\n", i + 1,
		       broker[i].seq_mbps, broker[i].rand_p50_us, broker[i].rand_p99_us);
	}
	median_result(local, rounds, &lm);
	median_result(broker, rounds, &bm);
	median_result(page1, rounds, &pm);
	printf("median:  local uffd (ceiling) %12.1f %14.1f %14.1f\n", lm.seq_mbps,
	       lm.rand_p50_us, lm.rand_p99_us);
	printf("median:  local uffd, 1 page  %12.1f %14.1f %14.1f\n", pm.seq_mbps,
	       pm.rand_p50_us, pm.rand_p99_us);
	printf("median:  gvm-broker + donors %12.1f %14.1f %14.1f\n", bm.seq_mbps,
	       bm.rand_p50_us, bm.rand_p99_us);
	printf("sequential: broker at %.0f%% of the ceiling (target >= 60%%)\n",
	       100.0 * bm.seq_mbps / lm.seq_mbps);
	printf("random p50: %.1f us through the broker, %.1fx the ceiling's\n",
	       bm.rand_p50_us, bm.rand_p50_us / lm.rand_p50_us);
	printf("key seq_ratio_pct %.0f\nkey rand_p50_us %.1f\nkey rand_p99_us %.1f\n",
	       100.0 * bm.seq_mbps / lm.seq_mbps, bm.rand_p50_us, bm.rand_p99_us);
	printf("key first_touch_steal_pct %.0f\n", worst_steal);
	printf("key ceil_seq_mbps %.1f\nkey ceil_rand_p50_us %.1f\nkey ceil_rand_p99_us %.1f\n"
	       "key ceil_4k_rand_p50_us %.1f\nkey gvm_seq_mbps %.1f\n",
	       lm.seq_mbps, lm.rand_p50_us, lm.rand_p99_us, pm.rand_p50_us, bm.seq_mbps);
	return 0;
}
