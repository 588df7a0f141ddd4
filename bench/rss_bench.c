/* rss_bench.c: gvm-rss-bench, what gvm-broker holds in memory. With
 * --broker-pid only, it reads the broker's VmRSS and RssAnon (its heap and
 * other anonymous memory) from /proc/PID/status, and Private_Dirty from
 * /proc/PID/smaps_rollup. (Not Private_Clean: a library page counts there
 * once no other process maps it, so it moves with whatever else runs.)
 * With --socket and --size it also attaches one VM of that size (a memfd
 * region through libgvmmem, as fault_bench.c does), reads them again, writes
 * one byte to every page (a first touch the broker fills with zeros, then
 * the write-protect fault that marks the page dirty) and reads them a third
 * time, then detaches. Prints "key PREFIXname KiB" lines for
 * bench/donor_scale.sh. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "gvm_proto.h"
#include "gvmmem.h"
#include "log.h"

/* Lets the broker's last work (installs, replies) settle before a reading. */
#define RSS_SETTLE_US 300000u

struct rss_reading {
	unsigned long long rss_kib, anon_kib, private_dirty_kib;
};

/* The value of the "name: value kB" line of path: 0, or -errno. */
static int proc_value(const char *path, const char *name, unsigned long long *kib)
{
	FILE *f = fopen(path, "r");
	char line[256];
	size_t len = strlen(name);
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (err && fgets(line, sizeof(line), f)) {
		if (strncmp(line, name, len) || line[len] != ':')
			continue;
		*kib = strtoull(line + len + 1, NULL, 10);
		err = 0;
	}
	fclose(f);
	return err;
}

static int rss_read(int pid, struct rss_reading *r)
{
	char status[64], rollup[64];
	int err;

	usleep(RSS_SETTLE_US);
	snprintf(status, sizeof(status), "/proc/%d/status", pid);
	snprintf(rollup, sizeof(rollup), "/proc/%d/smaps_rollup", pid);
	err = proc_value(status, "VmRSS", &r->rss_kib);
	if (!err)
		err = proc_value(status, "RssAnon", &r->anon_kib);
	if (!err)
		err = proc_value(rollup, "Private_Dirty", &r->private_dirty_kib);
	if (err)
		fprintf(stderr, "gvm-rss-bench: broker pid %d: reading /proc: %s\n", pid,
			strerror(-err));
	return err;
}

static void rss_print(const char *prefix, const char *when, const struct rss_reading *r)
{
	printf("key %s%srss_kib %llu\nkey %s%sanon_kib %llu\nkey %s%sprivate_dirty_kib %llu\n",
	       prefix, when, r->rss_kib, prefix, when, r->anon_kib, prefix, when,
	       r->private_dirty_kib);
}

/* Attaches a VM of size bytes, reads, writes every page, reads, detaches. */
static int rss_with_vm(const char *sock, int pid, uint64_t size, const char *prefix)
{
	struct gvm_region reg = {"ram", NULL, size, -1, 0, 0};
	struct rss_reading before, attached, written;
	struct gvm_session *s;
	char vm[32];
	double t0;
	int err;

	err = rss_read(pid, &before);
	if (err)
		return err;
	reg.memfd = memfd_create("rss-bench-ram", MFD_CLOEXEC);
	if (reg.memfd < 0 || ftruncate(reg.memfd, (off_t)size))
		return -errno;
	reg.host_addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, reg.memfd, 0);
	if (reg.host_addr == MAP_FAILED)
		return -errno;
	snprintf(vm, sizeof(vm), "rss-%d", (int)getpid());
	s = gvm_attach(sock, vm, &reg, 1, &err);
	if (!s) {
		fprintf(stderr, "gvm-rss-bench: attach: %s\n", gvm_strerror(err));
		return err;
	}
	err = rss_read(pid, &attached);
	t0 = bench_now_us();
	for (uint64_t p = 0; !err && p < size / GVM_PAGE_SIZE; p++)
		((volatile uint8_t *)reg.host_addr)[p * GVM_PAGE_SIZE] = 1;
	printf("%llu MiB written in %.1f s\n", (unsigned long long)(size >> 20),
	       (bench_now_us() - t0) / 1e6);
	if (!err)
		err = rss_read(pid, &written);
	gvm_detach(s);
	munmap(reg.host_addr, size);
	close(reg.memfd);
	if (err)
		return err;
	printf("broker KiB with no VM, attached, every page written: VmRSS %llu, %llu, %llu; "
	       "RssAnon %llu, %llu, %llu; Private_Dirty %llu, %llu, %llu\n",
	       before.rss_kib, attached.rss_kib, written.rss_kib, before.anon_kib,
	       attached.anon_kib, written.anon_kib, before.private_dirty_kib,
	       attached.private_dirty_kib, written.private_dirty_kib);
	rss_print(prefix, "before_", &before);
	rss_print(prefix, "attached_", &attached);
	rss_print(prefix, "written_", &written);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'}, {"broker-pid", required_argument, NULL, 'p'},
	    {"size", required_argument, NULL, 'z'},   {"prefix", required_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},	      {NULL, 0, NULL, 0},
	};
	const char *sock = GVM_DEFAULT_SOCKET, *prefix = "";
	uint64_t size = 0;
	struct rss_reading r;
	int pid = 0, opt;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			sock = optarg;
			break;
		case 'p':
			pid = atoi(optarg);
			break;
		case 'P':
			prefix = optarg;
			break;
		case 'z':
			if (gvm_parse_size(optarg, &size) || !size || size % GVM_PAGE_SIZE) {
				fprintf(stderr, "--size %s: want a size like 1G, whole pages\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			printf("Usage: gvm-rss-bench --broker-pid PID\n"
			       "          [--socket BROKER --size SIZE] [--prefix NAME_]\n"
			       "The broker's VmRSS, RssAnon and Private_Dirty (smaps_rollup),\n"
			       "in KiB. With --size: before a VM of SIZE attaches, once it is\n"
			       "attached, and once every page of it was written; then it\n"
			       "detaches. Run as root.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (pid <= 0) {
		fprintf(stderr, "gvm-rss-bench: --broker-pid PID is required\n");
		return 2;
	}
	gvm_log_init("gvm-rss-bench", GVM_LOG_WARN);
	if (size) {
		int err = rss_with_vm(sock, pid, size, prefix);

		if (err)
			fprintf(stderr, "gvm-rss-bench: %s\n", gvm_strerror(err));
		return err ? 1 : 0;
	}
	if (rss_read(pid, &r))
		return 1;
	rss_print(prefix, "", &r);
	return 0;
}
