/* memserver_bench.c: gvm-memserver-bench, the donor throughput tool. Fills a
 * region of one namespace with pseudo-random pages, then keeps N pipelined
 * READs (or WRITEs) in flight on one connection for a few seconds and
 * reports MB/s. --verify reads the whole region back and compares every
 * page. Talks to the donor through proto/dclient.c. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dclient.h"
#include "hostcpu.h"
#include "log.h"
#include "names.h"
#include "pattern.h"

#define BENCH_HOST_ID "bench" /* the host id it speaks for (names.h) */

#define BENCH_DEPTH_MAX 256u

struct bench {
	struct gvm_dconn *c;
	uint32_t ns;
	uint64_t region_pages;
	uint32_t depth;
	double seconds;
	uint64_t seed;
	uint8_t *pages; /* the region's expected contents */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_fail(struct bench *b, const char *what)
{
	fprintf(stderr, "gvm-memserver-bench: %s: %s\n", what, gvm_dconn_error(b->c));
	return -1;
}

#define BENCH_WINDOW_S 0.25
#define BENCH_WINDOWS_MAX 1024

/* What one phase measured. This machine's CPUs may be taken by its host
 * (steal time), so a phase is cut into short windows and reports their
 * median and best next to the mean, and the steal it saw. */
struct phase_result {
	double mean_mbps, median_mbps, best_mbps, ops_s, steal_pct;
};

/* Jiffies stolen by the hypervisor and in all. */
static void cpu_times(uint64_t *steal, uint64_t *total)
{
	uint64_t busy;

	bench_host_cpu(&busy, steal, total);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Pipelined ops of io_pages each at random aligned offsets. */
static int run_phase(struct bench *b, uint32_t op, uint32_t io_pages,
		     struct phase_result *res)
{
	uint64_t slots = b->region_pages / io_pages, done = 0, rng = b->seed | 1;
	uint64_t first[BENCH_DEPTH_MAX], win_done = 0, steal0, total0, steal1, total1;
	double win[BENCH_WINDOWS_MAX], t0 = now_s(), win_t0 = t0, t;
	double io_mb = (double)io_pages * GVM_PAGE_SIZE / 1e6;
	unsigned nwin = 0;
	uint32_t inflight = 0;
	bool sending = true;

	cpu_times(&steal0, &total0);
	while (sending || inflight) {
		while (sending && inflight < b->depth) {
			uint64_t id = gvm_dconn_next_id(b->c);
			uint64_t p;
			int err;

			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			p = (rng % slots) * io_pages;
			first[id % BENCH_DEPTH_MAX] = p;
			if (op == GVM__OP__OP_WRITE) {
				err = gvm_dconn_send_write(b->c, id, b->ns, p, io_pages,
							   b->pages + p * GVM_PAGE_SIZE);
			} else {
				struct gvm_hdr h;

				gvm_hdr_init(&h, op, id);
				h.ns = b->ns;
				h.first_page = p;
				h.page_count = io_pages;
				err = gvm_dconn_send(b->c, &h, NULL);
			}
			if (err)
				return bench_fail(b, "send");
			inflight++;
		}
		const struct gvm_hdr *h;
		const uint8_t *payload;

		if (gvm_dconn_recv(b->c, &h, &payload))
			return bench_fail(b, "receive");
		if (h->status || h->op != op ||
		    h->first_page != first[h->id % BENCH_DEPTH_MAX]) {
			fprintf(stderr, "gvm-memserver-bench: bad reply: %s status %d %s\n",
				gvm_op_name(h->op), h->status, h->error);
			return -1;
		}
		inflight--;
		done++;
		win_done++;
		if ((done & 15) == 0 && sending) {
			t = now_s();
			if (t - win_t0 >= BENCH_WINDOW_S && nwin < BENCH_WINDOWS_MAX) {
				win[nwin++] = (double)win_done * io_mb / (t - win_t0);
				win_done = 0;
				win_t0 = t;
			}
			if (t - t0 >= b->seconds)
				sending = false;
		}
	}
	t = now_s() - t0;
	cpu_times(&steal1, &total1);
	res->mean_mbps = (double)done * io_mb / t;
	res->ops_s = (double)done / t;
	res->steal_pct = total1 > total0 ? 100.0 * (double)(steal1 - steal0) /
						   (double)(total1 - total0) : 0;
	if (!nwin)
		win[nwin++] = res->mean_mbps;
	qsort(win, nwin, sizeof(win[0]), cmp_double);
	res->median_mbps = win[nwin / 2];
	res->best_mbps = win[nwin - 1];
	return 0;
}

static void print_phase(const char *what, uint64_t io_bytes, uint32_t depth,
			const struct phase_result *r)
{
	printf("%-5s %4" PRIu64 "K x depth %-3u: median %7.1f MB/s, best %7.1f, mean %7.1f"
	       "  %7.0f ops/s  (steal %.0f%%)\n",
	       what, io_bytes >> 10, depth, r->median_mbps, r->best_mbps, r->mean_mbps,
	       r->ops_s, r->steal_pct);
	printf("key %s_%" PRIu64 "k_mbps %.1f\n", what, io_bytes >> 10, r->median_mbps);
	printf("key %s_%" PRIu64 "k_best_mbps %.1f\n", what, io_bytes >> 10, r->best_mbps);
	printf("key %s_%" PRIu64 "k_steal_pct %.0f\n", what, io_bytes >> 10, r->steal_pct);
}

static int fill_region(struct bench *b, double *mbps)
{
	double t0 = now_s();

	for (uint64_t p = 0; p < b->region_pages; p++)
		gvm_pattern_fill_page(b->pages + p * GVM_PAGE_SIZE, b->seed, p, 16);
	t0 = now_s();
	for (uint64_t p = 0; p < b->region_pages; p += GVM_FRAME_PAGES_MAX) {
		uint32_t n = b->region_pages - p < GVM_FRAME_PAGES_MAX ?
				     (uint32_t)(b->region_pages - p) : GVM_FRAME_PAGES_MAX;

		if (gvm_dconn_write(b->c, b->ns, p, n, b->pages + p * GVM_PAGE_SIZE))
			return bench_fail(b, "fill");
	}
	*mbps = (double)b->region_pages * GVM_PAGE_SIZE / (now_s() - t0) / 1e6;
	return 0;
}

static int verify_region(struct bench *b, uint64_t *bad, uint64_t *zero)
{
	uint8_t *buf = malloc(GVM_FRAME_DATA_MAX_BYTES);

	*bad = *zero = 0;
	for (uint64_t p = 0; buf && p < b->region_pages; p += GVM_FRAME_PAGES_MAX) {
		uint32_t n = b->region_pages - p < GVM_FRAME_PAGES_MAX ?
				     (uint32_t)(b->region_pages - p) : GVM_FRAME_PAGES_MAX;
		uint32_t z;

		if (gvm_dconn_read(b->c, b->ns, p, n, buf, &z)) {
			free(buf);
			return bench_fail(b, "verify");
		}
		*zero += z;
		for (uint32_t i = 0; i < n; i++)
			*bad += memcmp(buf + (size_t)i * GVM_PAGE_SIZE,
				       b->pages + (p + i) * GVM_PAGE_SIZE, GVM_PAGE_SIZE) != 0;
	}
	free(buf);
	return buf ? 0 : -1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gvm-memserver-bench [OPTIONS]\n"
		"Measures one gvm-memserver: fills a region, then N pipelined requests\n"
		"per io size for a few seconds; prints MB/s, and 'key value' lines.\n"
		"\n"
		"  --server HOST:PORT  donor (default 127.0.0.1:7700)\n"
		"  --key-file PATH     cluster key (default %s)\n"
		"  --ns HOST.NAME      namespace to use (default bench.<pid>, dropped after);\n"
		"                      the donor lets a connection use its host's only\n"
		"  --region SIZE       pages to fill and read (default 256M)\n"
		"  --io SIZE           4K, 128K... (repeatable; default 4K and 128K)\n"
		"  --depth N           requests in flight (default 16, max %u)\n"
		"  --seconds S         per phase (default 3)\n"
		"  --writes            also time pipelined WRITEs\n"
		"  --verify            read the region back and compare every page\n"
		"  --keep              do not drop the namespace at the end\n",
		GVM_DEFAULT_KEY_FILE, BENCH_DEPTH_MAX);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "ns", required_argument, NULL, 'n' },
		{ "region", required_argument, NULL, 'r' },
		{ "io", required_argument, NULL, 'i' },
		{ "depth", required_argument, NULL, 'd' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "writes", no_argument, NULL, 'w' },
		{ "verify", no_argument, NULL, 'v' },
		{ "keep", no_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = "127.0.0.1:7700", *key_file = GVM_DEFAULT_KEY_FILE;
	char ns_name[GVM_NS_NAME_MAX_BYTES + 1], why[512], host[GVM_HOST_ID_MAX_BYTES + 1];
	struct bench b = { .depth = 16, .seconds = 3 };
	uint64_t region = 256ull << 20, io[8], v;
	unsigned nio = 0;
	bool writes = false, verify = false, keep = false;
	struct gvm_key key;
	double mbps;
	int opt, rc = 0;

	snprintf(ns_name, sizeof(ns_name), "%s.%d", BENCH_HOST_ID, (int)getpid());
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 'k': key_file = optarg; break;
		case 'n': snprintf(ns_name, sizeof(ns_name), "%s", optarg); break;
		case 'r':
			if (gvm_parse_size(optarg, &region) || region < GVM_FRAME_DATA_MAX_BYTES) {
				fprintf(stderr, "--region %s: want a size of at least 1M\n", optarg);
				return 2;
			}
			break;
		case 'i':
			if (gvm_parse_size(optarg, &v) || v % GVM_PAGE_SIZE || !v ||
			    v > GVM_FRAME_DATA_MAX_BYTES || nio == 8) {
				fprintf(stderr, "--io %s: want a multiple of 4K up to 1M\n", optarg);
				return 2;
			}
			io[nio++] = v;
			break;
		case 'd':
			b.depth = (uint32_t)atoi(optarg);
			if (b.depth < 1 || b.depth > BENCH_DEPTH_MAX) {
				fprintf(stderr, "--depth %s: want 1..%u\n", optarg, BENCH_DEPTH_MAX);
				return 2;
			}
			break;
		case 'S': b.seconds = atof(optarg); break;
		case 'w': writes = true; break;
		case 'v': verify = true; break;
		case 'K': keep = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!nio) {
		io[nio++] = 4096;
		io[nio++] = 128 * 1024;
	}
	gvm_log_init("gvm-memserver-bench", GVM_LOG_WARN);
	if (gvm_key_load(key_file, &key, why, sizeof(why))) {
		fprintf(stderr, "gvm-memserver-bench: %s\n", why);
		return 1;
	}
	if (gvm_ns_host(ns_name, host)) {
		fprintf(stderr, "--ns %s: want HOST.NAME, HOST a host id (a-z 0-9 -)\n",
			ns_name);
		return 2;
	}
	if (gvm_dconn_open(&b.c, server, &key, host, why, sizeof(why))) {
		fprintf(stderr, "gvm-memserver-bench: %s\n", why);
		return 1;
	}
	b.region_pages = region / GVM_PAGE_SIZE;
	b.seed = gvm_pattern_mix64((uint64_t)getpid() ^ (uint64_t)time(NULL));
	b.pages = malloc(b.region_pages * GVM_PAGE_SIZE);
	if (!b.pages || gvm_dconn_open_ns(b.c, ns_name, &b.ns)) {
		fprintf(stderr, "gvm-memserver-bench: %s\n",
			b.pages ? gvm_dconn_error(b.c) : "out of memory");
		return 1;
	}
	printf("donor %s, namespace %s, region %" PRIu64 " MiB, depth %u\n", server,
	       ns_name, region >> 20, b.depth);
	if (fill_region(&b, &mbps))
		return 1;
	printf("fill (256-page WRITEs, one at a time): %.1f MB/s\n", mbps);
	for (unsigned i = 0; i < nio && !rc; i++) {
		uint32_t io_pages = (uint32_t)(io[i] / GVM_PAGE_SIZE);
		struct phase_result r;

		rc = run_phase(&b, GVM__OP__OP_READ, io_pages, &r);
		if (rc)
			break;
		print_phase("read", io[i], b.depth, &r);
		if (!writes)
			continue;
		rc = run_phase(&b, GVM__OP__OP_WRITE, io_pages, &r);
		if (!rc)
			print_phase("write", io[i], b.depth, &r);
	}
	if (!rc && verify) {
		uint64_t bad, zero;

		rc = verify_region(&b, &bad, &zero);
		if (!rc) {
			printf("verify: %" PRIu64 " pages compared, %" PRIu64
			       " mismatched, %" PRIu64 " came back as zero bits\n",
			       b.region_pages, bad, zero);
			rc = bad ? 1 : 0;
		}
	}
	if (!keep && gvm_dconn_drop_ns(b.c, ns_name))
		fprintf(stderr, "gvm-memserver-bench: drop: %s\n", gvm_dconn_error(b.c));
	gvm_dconn_close(b.c);
	free(b.pages);
	return rc ? 1 : 0;
}
