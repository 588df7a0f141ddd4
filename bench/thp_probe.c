/* thp_probe.c: gvm-thp-probe, what shmem transparent huge pages (THP) do with
 * guest RAM the way the broker handles it: a memfd mapped MAP_SHARED at a
 * 2 MiB-aligned address, registered MISSING (and WP) with userfaultfd, filled
 * by UFFDIO_COPY of 4 KiB pages, write-protected with UFFDIO_WRITEPROTECT and
 * evicted with fallocate(PUNCH_HOLE). Standalone: no project headers.
 *
 * Build: gcc -O2 -Wall -Wextra -o /tmp/thp_probe bench/thp_probe.c
 * Run as root, once per setting of /sys/kernel/mm/transparent_hugepage/
 * shmem_enabled (and hugepages-2048kB/shmem_enabled); the program never
 * writes sysfs itself, the caller sets the knobs:
 *   thp_probe fill   --fill copy1|copy512|touch [--reg none|missing|wp] [--wp] [--madv] [--mib N]
 *       which memory backs the range after it is filled (question 1);
 *   thp_probe collapse --fill copy1|copy512|touch [--reg ...] [--wait S] [--madv]
 *       fill, then watch khugepaged for S seconds, then MADV_COLLAPSE (question 2);
 *       --late-madv T calls madvise(MADV_HUGEPAGE) T seconds after the fill, so
 *       that a setting changed meanwhile can enrol the mm with khugepaged;
 *       --hole leaves page 1 of every 2 MiB unfilled: does a collapse fill it
 *       (holes_kb, from SEEK_HOLE on the memfd) behind userfaultfd's back?
 *   thp_probe split  [--reg none|missing|wp]
 *       first touch, register, UFFDIO_WRITEPROTECT 4 KiB, read, punch 4 KiB (question 3);
 *   thp_probe bench  --fill copy1|copy512|touch [--wp] [--mib N] [--runs N]
 *       MB/s of filling N MiB, each run and the median (question 4), by the
 *       wall clock and by this process's CPU time (less sensitive to other
 *       work on a shared machine).
 * --wp copies with UFFDIO_COPY_MODE_WP (needs --reg wp, the default for copy).
 * Each measurement is one line of key=value pairs: the mapping's Rss and
 * PMD-mapped kB from /proc/self/smaps, the memfd's allocated kB (st_blocks)
 * and hole kB (SEEK_HOLE), with WP registration the pages still marked
 * uffd-wp (/proc/self/pagemap), and deltas of ShmemHugePages (/proc/meminfo),
 * THP counters (/proc/vmstat) and khugepaged counters since the start. The
 * counters are system-wide: other work on the machine that uses file THP
 * shows up in them too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE_BYTES	  4096UL
#define HUGE_BYTES	  (2UL << 20)
#define HUGE_PAGES	  (HUGE_BYTES / PAGE_BYTES)
#define DEFAULT_MIB	  8
#define DEFAULT_BENCH_MIB 256
#define DEFAULT_RUNS	  3
#define MAX_RUNS	  15
#define DEFAULT_WAIT_SEC  10
#define THP_SYSFS	  "/sys/kernel/mm/transparent_hugepage/"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

enum fill_kind { FILL_COPY1, FILL_COPY512, FILL_TOUCH };
enum reg_kind { REG_NONE, REG_MISSING, REG_WP };

struct opts {
	const char *cmd;
	enum fill_kind fill;
	enum reg_kind reg;
	int reg_given;
	int copy_wp;
	int madv;
	unsigned long mib;
	int runs;
	int wait_sec;
	int late_madv_sec;
	int hole;
};

/* One guest-RAM-like region: memfd, aligned shared mapping, optional uffd. */
struct region {
	int memfd;
	int uffd;
	char *base;
	size_t len;
	void *reserve;
	size_t reserve_len;
};

/* System-wide counters, read before and after each step. */
enum counter {
	C_SHMEM_HUGE_KB,
	C_FILE_ALLOC,
	C_FILE_FALLBACK,
	C_FILE_MAPPED,
	C_SPLIT_PAGE,
	C_SPLIT_PAGE_FAILED,
	C_SPLIT_PMD,
	C_COLLAPSE_ALLOC,
	C_KH_PAGES_COLLAPSED,
	C_KH_FULL_SCANS,
	C_COUNT
};

static const char *const counter_names[C_COUNT] = {
    "shmemhuge_kb",	  "thp_file_alloc",	   "thp_file_fallback", "thp_file_mapped",
    "thp_split_page",	  "thp_split_page_failed", "thp_split_pmd",	"thp_collapse_alloc",
    "kh_pages_collapsed", "kh_full_scans",
};

static long long counters_start[C_COUNT];
static char *src_buf;

static long long read_key(const char *path, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	long long v = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, klen) && (line[klen] == ' ' || line[klen] == ':')) {
			v = strtoll(line + klen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static long long read_number(const char *path)
{
	long long v = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	if (fscanf(f, "%lld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* The bracketed word of a sysfs choice file, or "-" when absent. */
static void read_choice(const char *path, char *out, size_t n)
{
	char buf[256], *l, *r;
	FILE *f = fopen(path, "r");

	snprintf(out, n, "-");
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f) && (l = strchr(buf, '[')) && (r = strchr(l, ']'))) {
		*r = '\0';
		snprintf(out, n, "%s", l + 1);
	}
	fclose(f);
}

static void counters_read(long long *c)
{
	c[C_SHMEM_HUGE_KB] = read_key("/proc/meminfo", "ShmemHugePages");
	c[C_FILE_ALLOC] = read_key("/proc/vmstat", "thp_file_alloc");
	c[C_FILE_FALLBACK] = read_key("/proc/vmstat", "thp_file_fallback");
	c[C_FILE_MAPPED] = read_key("/proc/vmstat", "thp_file_mapped");
	c[C_SPLIT_PAGE] = read_key("/proc/vmstat", "thp_split_page");
	c[C_SPLIT_PAGE_FAILED] = read_key("/proc/vmstat", "thp_split_page_failed");
	c[C_SPLIT_PMD] = read_key("/proc/vmstat", "thp_split_pmd");
	c[C_COLLAPSE_ALLOC] = read_key("/proc/vmstat", "thp_collapse_alloc");
	c[C_KH_PAGES_COLLAPSED] = read_number(THP_SYSFS "khugepaged/pages_collapsed");
	c[C_KH_FULL_SCANS] = read_number(THP_SYSFS "khugepaged/full_scans");
}

/* Rss, ShmemPmdMapped and FilePmdMapped (kB) of the mapping starting at base. */
static void smaps_read(const void *base, long long *rss, long long *shmem_pmd, long long *file_pmd)
{
	char line[512], want[32];
	int in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	*rss = *shmem_pmd = *file_pmd = -1;
	if (!f)
		return;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)base);
	while (fgets(line, sizeof(line), f)) {
		if (strchr(line, '-') && strchr(line, ' ') &&
		    strchr(line, '-') < strchr(line, ' ')) {
			if (in)
				break;
			in = !strncmp(line, want, strlen(want));
			continue;
		}
		if (!in)
			continue;
		if (!strncmp(line, "Rss:", 4))
			*rss = strtoll(line + 4, NULL, 10);
		else if (!strncmp(line, "ShmemPmdMapped:", 15))
			*shmem_pmd = strtoll(line + 15, NULL, 10);
		else if (!strncmp(line, "FilePmdMapped:", 14))
			*file_pmd = strtoll(line + 14, NULL, 10);
	}
	fclose(f);
}

static void settings_string(char *out, size_t n)
{
	char top[32], pmd[32], khp[32];

	read_choice(THP_SYSFS "shmem_enabled", top, sizeof(top));
	read_choice(THP_SYSFS "hugepages-2048kB/shmem_enabled", pmd, sizeof(pmd));
	snprintf(khp, sizeof(khp), "%lld",
		 read_number(THP_SYSFS "khugepaged/scan_sleep_millisecs"));
	snprintf(out, n, "shmem_enabled=%s 2048kB=%s kh_sleep_ms=%s", top, pmd, khp);
}

static const char *fill_name(enum fill_kind k)
{
	return k == FILL_COPY1 ? "copy1" : k == FILL_COPY512 ? "copy512" : "touch";
}

static const char *reg_name(enum reg_kind k)
{
	return k == REG_NONE ? "none" : k == REG_MISSING ? "missing" : "missing+wp";
}

/* kB of the memfd's first len bytes that are holes (never filled or punched). */
static long long holes_kb(int fd, size_t len)
{
	off_t off = 0, h, d;
	long long holes = 0;

	while ((size_t)off < len) {
		h = lseek(fd, off, SEEK_HOLE);
		if (h < 0 || (size_t)h >= len)
			break;
		d = lseek(fd, h, SEEK_DATA);
		if (d < 0 || (size_t)d > len)
			d = (off_t)len;
		holes += d - h;
		off = d;
	}
	return holes / 1024;
}

/* Pages of the mapping whose page table entry carries uffd-wp, present or
 * not (/proc/self/pagemap bit 57): the write protection the broker relies on
 * to see the next write. */
static long long uffd_wp_pages(const struct region *r)
{
	uint64_t e[HUGE_PAGES];
	size_t off, i;
	long long n = 0;
	ssize_t got;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	for (off = 0; off < r->len; off += HUGE_BYTES) {
		got = pread(fd, e, sizeof(e),
			    (off_t)(((uintptr_t)r->base + off) / PAGE_BYTES * sizeof(e[0])));
		for (i = 0; got > 0 && i < (size_t)got / sizeof(e[0]); i++)
			n += (e[i] >> 57) & 1;
	}
	close(fd);
	return n;
}

/* One line: what the mapping and the system look like after `step`. */
static void report(const struct opts *o, const struct region *r, const char *step,
		   const char *extra)
{
	long long now[C_COUNT], rss, spmd, fpmd;
	char set[160];
	struct stat st;
	int i;

	counters_read(now);
	smaps_read(r->base, &rss, &spmd, &fpmd);
	settings_string(set, sizeof(set));
	if (fstat(r->memfd, &st))
		st.st_blocks = -2;
	printf("probe=%s fill=%s reg=%s copy_wp=%d madv=%d %s step=%s rss_kb=%lld "
	       "shmem_pmd_kb=%lld file_pmd_kb=%lld memfd_kb=%lld holes_kb=%lld",
	       o->cmd, fill_name(o->fill), reg_name(o->reg), o->copy_wp, o->madv, set, step, rss,
	       spmd, fpmd, (long long)st.st_blocks / 2, holes_kb(r->memfd, r->len));
	for (i = 0; i < C_COUNT; i++)
		printf(" %s%+lld", counter_names[i], now[i] - counters_start[i]);
	if (r->uffd >= 0 && o->reg == REG_WP)
		printf(" uffd_wp_pages=%lld", uffd_wp_pages(r));
	printf("%s%s\n", extra ? " " : "", extra ? extra : "");
	fflush(stdout);
}

static void die(const char *what)
{
	fprintf(stderr, "thp_probe: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void region_open(struct region *r, const struct opts *o, size_t len)
{
	uintptr_t aligned;
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg;

	memset(r, 0, sizeof(*r));
	r->uffd = -1;
	r->len = len;
	r->memfd = memfd_create("thp-probe", MFD_CLOEXEC);
	if (r->memfd < 0)
		die("memfd_create");
	if (ftruncate(r->memfd, (off_t)len))
		die("ftruncate");
	/* Reserve len + 2 MiB, then map the memfd at the first aligned address. */
	r->reserve_len = len + HUGE_BYTES;
	r->reserve = mmap(NULL, r->reserve_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r->reserve == MAP_FAILED)
		die("mmap reserve");
	aligned = ((uintptr_t)r->reserve + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
	r->base =
	    mmap((void *)aligned, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->memfd, 0);
	if (r->base == MAP_FAILED)
		die("mmap memfd");
	if (o->madv && madvise(r->base, len, MADV_HUGEPAGE))
		die("madvise(MADV_HUGEPAGE)");
	if (o->reg == REG_NONE)
		return;
	r->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0)
		die("userfaultfd");
	if (o->reg == REG_WP)
		api.features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	if (ioctl(r->uffd, UFFDIO_API, &api))
		die("UFFDIO_API");
	reg = (struct uffdio_register){.range = {(uintptr_t)r->base, len},
				       .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (o->reg == REG_WP)
		reg.mode |= UFFDIO_REGISTER_MODE_WP;
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER");
}

static void region_close(struct region *r)
{
	if (r->uffd >= 0)
		close(r->uffd);
	munmap(r->reserve, r->reserve_len);
	close(r->memfd);
}

/* UFFDIO_COPY of [off, off + len) from src_buf, retrying partial copies. */
static void copy_range(const struct region *r, const struct opts *o, size_t off, size_t len)
{
	struct uffdio_copy c;
	size_t done = 0;

	while (done < len) {
		c = (struct uffdio_copy){.dst = (uintptr_t)r->base + off + done,
					 .src = (uintptr_t)src_buf + (off + done) % HUGE_BYTES,
					 .len = len - done,
					 .mode = o->copy_wp ? UFFDIO_COPY_MODE_WP : 0};
		if (ioctl(r->uffd, UFFDIO_COPY, &c) == 0) {
			done = len;
		} else if (c.copy > 0) {
			done += (size_t)c.copy;
		} else if (errno != EAGAIN) {
			die("UFFDIO_COPY");
		}
	}
}

static void region_fill(const struct region *r, const struct opts *o)
{
	size_t off, step = o->fill == FILL_COPY1 ? PAGE_BYTES : HUGE_BYTES;

	for (off = 0; off < r->len; off += step) {
		if (o->fill == FILL_TOUCH) {
			memcpy(r->base + off, src_buf, HUGE_BYTES);
		} else if (!o->hole) {
			copy_range(r, o, off, step);
		} else if (o->fill == FILL_COPY512) {
			copy_range(r, o, off, PAGE_BYTES);
			copy_range(r, o, off + 2 * PAGE_BYTES, HUGE_BYTES - 2 * PAGE_BYTES);
		} else if (off % HUGE_BYTES != PAGE_BYTES) {
			copy_range(r, o, off, step);
		}
	}
}

static double now_sec(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void cmd_fill(const struct opts *o)
{
	struct region r;

	region_open(&r, o, o->mib << 20);
	report(o, &r, "registered", NULL);
	region_fill(&r, o);
	report(o, &r, "filled", NULL);
	region_close(&r);
}

/* Fill, watch khugepaged, then ask for a synchronous collapse of the first 2 MiB. */
static void cmd_collapse(const struct opts *o)
{
	struct region r;
	char extra[64];
	int s, rc;

	region_open(&r, o, o->mib << 20);
	region_fill(&r, o);
	report(o, &r, "filled", NULL);
	for (s = 1; s <= o->wait_sec; s++) {
		sleep(1);
		if (s == o->late_madv_sec) {
			snprintf(extra, sizeof(extra), "late_madv=%s",
				 madvise(r.base, r.len, MADV_HUGEPAGE) ? strerror(errno) : "ok");
			report(o, &r, "late_madvise", extra);
		}
		if (s == o->wait_sec || s % 5 == 0) {
			snprintf(extra, sizeof(extra), "waited_s=%d", s);
			report(o, &r, "khugepaged", extra);
		}
	}
	rc = madvise(r.base, HUGE_BYTES, MADV_COLLAPSE);
	snprintf(extra, sizeof(extra), "madv_collapse=%s", rc ? strerror(errno) : "ok");
	report(o, &r, "madv_collapse_2m", extra);
	/* A read after the collapse, in case the PMD is installed only on fault. */
	*(volatile char *)r.base;
	report(o, &r, "read_after_collapse", extra);
	region_close(&r);
}

/* First touch 4 MiB, register, then write-protect 4 KiB in the first 2 MiB
 * and punch 4 KiB in the second. */
static void cmd_split(const struct opts *o)
{
	struct region r;
	struct opts touch = *o;
	enum reg_kind reg = o->reg;
	struct uffdio_register rg;
	struct uffdio_writeprotect wp;
	char extra[64];
	size_t i;
	volatile char sum = 0;

	touch.reg = REG_NONE;
	region_open(&r, &touch, 2 * HUGE_BYTES);
	touch.fill = FILL_TOUCH;
	region_fill(&r, &touch);
	report(o, &r, "touched", NULL);
	if (reg != REG_NONE) {
		struct uffdio_api api = {.api = UFFD_API};

		r.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (r.uffd < 0)
			die("userfaultfd");
		if (reg == REG_WP)
			api.features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
		if (ioctl(r.uffd, UFFDIO_API, &api))
			die("UFFDIO_API");
		rg = (struct uffdio_register){.range = {(uintptr_t)r.base, r.len},
					      .mode = UFFDIO_REGISTER_MODE_MISSING};
		if (reg == REG_WP)
			rg.mode |= UFFDIO_REGISTER_MODE_WP;
		if (ioctl(r.uffd, UFFDIO_REGISTER, &rg))
			die("UFFDIO_REGISTER");
		report(o, &r, "registered", NULL);
	}
	if (reg == REG_WP) {
		wp = (struct uffdio_writeprotect){
		    .range = {(uintptr_t)r.base + PAGE_BYTES, PAGE_BYTES},
		    .mode = UFFDIO_WRITEPROTECT_MODE_WP};
		snprintf(extra, sizeof(extra), "wp=%s",
			 ioctl(r.uffd, UFFDIO_WRITEPROTECT, &wp) ? strerror(errno) : "ok");
		report(o, &r, "wp_4k_in_first_2m", extra);
		for (i = 0; i < HUGE_BYTES; i += PAGE_BYTES)
			sum += r.base[i];
		report(o, &r, "read_first_2m", NULL);
	}
	snprintf(extra, sizeof(extra), "punch=%s",
		 fallocate(r.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			   (off_t)(HUGE_BYTES + PAGE_BYTES), (off_t)PAGE_BYTES)
		     ? strerror(errno)
		     : "ok");
	report(o, &r, "punch_4k_in_second_2m", extra);
	region_close(&r);
	(void)sum;
}

static void cmd_bench(const struct opts *o)
{
	double mbs[MAX_RUNS], cpu_mbs[MAX_RUNS], t0, t1, c0, c1;
	struct region r;
	char set[160];
	int i;

	settings_string(set, sizeof(set));
	for (i = 0; i < o->runs; i++) {
		region_open(&r, o, o->mib << 20);
		c0 = now_sec(CLOCK_PROCESS_CPUTIME_ID);
		t0 = now_sec(CLOCK_MONOTONIC);
		region_fill(&r, o);
		t1 = now_sec(CLOCK_MONOTONIC);
		c1 = now_sec(CLOCK_PROCESS_CPUTIME_ID);
		mbs[i] = (double)(o->mib << 20) / 1e6 / (t1 - t0);
		cpu_mbs[i] = (double)(o->mib << 20) / 1e6 / (c1 - c0);
		printf("probe=bench fill=%s reg=%s copy_wp=%d madv=%d %s mib=%lu run=%d "
		       "mb_s=%.0f cpu_mb_s=%.0f\n",
		       fill_name(o->fill), reg_name(o->reg), o->copy_wp, o->madv, set, o->mib, i,
		       mbs[i], cpu_mbs[i]);
		region_close(&r);
	}
	qsort(mbs, (size_t)o->runs, sizeof(mbs[0]), cmp_double);
	qsort(cpu_mbs, (size_t)o->runs, sizeof(cpu_mbs[0]), cmp_double);
	printf("probe=bench fill=%s reg=%s copy_wp=%d madv=%d %s mib=%lu runs=%d "
	       "median_mb_s=%.0f median_cpu_mb_s=%.0f\n",
	       fill_name(o->fill), reg_name(o->reg), o->copy_wp, o->madv, set, o->mib, o->runs,
	       mbs[o->runs / 2], cpu_mbs[o->runs / 2]);
	fflush(stdout);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: thp_probe fill|collapse|split|bench [--fill copy1|copy512|touch]\n"
		"       [--reg none|missing|wp] [--wp] [--madv] [--mib N] [--runs N] [--wait S]\n"
		"       [--late-madv T] [--hole]\n");
	exit(2);
}

static void parse(struct opts *o, int argc, char **argv)
{
	int i;

	if (argc < 2)
		usage();
	*o = (struct opts){.cmd = argv[1],
			   .fill = FILL_COPY512,
			   .reg = REG_WP,
			   .mib = DEFAULT_MIB,
			   .runs = DEFAULT_RUNS,
			   .wait_sec = DEFAULT_WAIT_SEC};
	if (!strcmp(o->cmd, "bench"))
		o->mib = DEFAULT_BENCH_MIB;
	for (i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--wp")) {
			o->copy_wp = 1;
		} else if (!strcmp(a, "--madv")) {
			o->madv = 1;
		} else if (!strcmp(a, "--hole")) {
			o->hole = 1;
		} else if (!v) {
			usage();
		} else if (!strcmp(a, "--fill")) {
			o->fill = !strcmp(v, "copy1")	? FILL_COPY1
				  : !strcmp(v, "touch") ? FILL_TOUCH
							: FILL_COPY512;
			i++;
		} else if (!strcmp(a, "--reg")) {
			o->reg = !strcmp(v, "none")	 ? REG_NONE
				 : !strcmp(v, "missing") ? REG_MISSING
							 : REG_WP;
			o->reg_given = 1;
			i++;
		} else if (!strcmp(a, "--mib")) {
			o->mib = strtoul(v, NULL, 10);
			i++;
		} else if (!strcmp(a, "--runs")) {
			o->runs = atoi(v);
			i++;
		} else if (!strcmp(a, "--late-madv")) {
			o->late_madv_sec = atoi(v);
			i++;
		} else if (!strcmp(a, "--wait")) {
			o->wait_sec = atoi(v);
			i++;
		} else {
			usage();
		}
	}
	/* split always touches first and registers after; otherwise a touch
	 * fill must not be registered (nothing serves the faults) and a copy
	 * fill must be. */
	if (!strcmp(o->cmd, "split")) {
		o->fill = FILL_TOUCH;
	} else if (o->fill == FILL_TOUCH) {
		if (o->reg_given && o->reg != REG_NONE)
			usage();
		o->reg = REG_NONE;
	} else if (o->reg == REG_NONE) {
		usage();
	}
	if ((o->copy_wp && o->reg != REG_WP) || (o->hole && o->fill == FILL_TOUCH))
		usage();
	if (o->mib < 2 || o->mib % 2 || o->runs < 1 || o->runs > MAX_RUNS || o->wait_sec < 0)
		usage();
}

int main(int argc, char **argv)
{
	struct opts o;
	size_t i;

	parse(&o, argc, argv);
	src_buf = aligned_alloc(HUGE_BYTES, HUGE_BYTES);
	if (!src_buf)
		die("aligned_alloc");
	for (i = 0; i < HUGE_BYTES; i++)
		src_buf[i] = (char)(i * 7 + 1);
	counters_read(counters_start);
	if (!strcmp(o.cmd, "fill"))
		cmd_fill(&o);
	else if (!strcmp(o.cmd, "collapse"))
		cmd_collapse(&o);
	else if (!strcmp(o.cmd, "split"))
		cmd_split(&o);
	else if (!strcmp(o.cmd, "bench"))
		cmd_bench(&o);
	else
		usage();
	return 0;
}
