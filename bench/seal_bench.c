/* seal_bench.c: gvm-seal-bench, what sealing costs per page with the
 * broker's own code (broker/seal.c): a VM of --size bytes in one region,
 * sealed in WRITE frames of an extent (32 pages, as eviction sends them)
 * and opened again as READ replies, for each cipher this CPU runs. The
 * open time of one page is what a remote fault pays (its one-page READ is
 * opened on the loop); seal and open per GiB are the CPU a write-back and
 * a read of it cost. Also the version state's size per GiB of guest
 * memory (the VM's file in the state directory). Every page is checked
 * after its round trip. Prints a table and "key name value" lines for
 * bench/run.sh. */
#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "seal.h"

#define REPS 5u                          /* timed passes, median kept (odd) */
#define FRAME_PAGES GVM_DEFAULT_EXTENT_PAGES
#define DEFAULT_SIZE (64u << 20)

struct run {
	double seal_us, open_us; /* per page, median of REPS */
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Seals every frame of the region from plain into wire (pages, then tags),
 * or opens wire back into out: microseconds per page. */
static double pass(struct bk_region *rg, const uint8_t *plain, uint8_t *wire,
		   struct gvm_hdr *hdrs, uint8_t *out, bool seal)
{
	uint64_t frames = rg->npages / FRAME_PAGES, bad;
	size_t frame_bytes = (size_t)FRAME_PAGES * BK_SEALED_PAGE_BYTES;
	double t0 = bench_now_us();

	for (uint64_t f = 0; f < frames; f++) {
		struct gvm_hdr *h = &hdrs[f];
		uint8_t *w = wire + f * frame_bytes;

		if (seal) {
			gvm_hdr_init(h, GVM__OP__OP_WRITE, 0);
			h->first_page = f * FRAME_PAGES;
			h->page_count = FRAME_PAGES;
			memcpy(w, plain + f * FRAME_PAGES * GVM_PAGE_SIZE,
			       (size_t)FRAME_PAGES * GVM_PAGE_SIZE);
			h->payload_len = gvm_hdr_mark_zero_pages(h, w, FRAME_PAGES) * GVM_PAGE_SIZE;
			if (bk_seal_pages(rg, h, w)) {
				fprintf(stderr, "gvm-seal-bench: sealing frame %llu failed\n",
					(unsigned long long)f);
				exit(1);
			}
		} else if (bk_seal_open(rg, h, w, out + f * FRAME_PAGES * GVM_PAGE_SIZE, NULL, NULL,
					&bad)) {
			fprintf(stderr, "gvm-seal-bench: page %llu did not open\n",
				(unsigned long long)bad);
			exit(1);
		}
	}
	return (bench_now_us() - t0) / (double)(frames * FRAME_PAGES);
}

static int run_cipher(enum bk_page_crypto c, uint64_t size, const char *dir, struct run *r,
		      uint64_t *state_bytes)
{
	struct bk_broker b;
	struct bk_vm vm;
	struct bk_region rg;
	char why[256], path[600], hex[2 * GVM_INCARNATION_BYTES + 1];
	uint64_t npages = size / GVM_PAGE_SIZE, frames = npages / FRAME_PAGES;
	uint8_t *plain = malloc(size), *out = malloc(size);
	uint8_t *wire = malloc(frames * FRAME_PAGES * BK_SEALED_PAGE_BYTES);
	struct gvm_hdr *hdrs = calloc(frames, sizeof(*hdrs));
	double seal[REPS], open[REPS];
	struct stat st;
	int err;

	if (!plain || !out || !wire || !hdrs)
		return -ENOMEM;
	memset(&b, 0, sizeof(b));
	memset(&vm, 0, sizeof(vm));
	memset(&rg, 0, sizeof(rg));
	b.cfg.state_dir = dir;
	b.cfg.page_crypto = c;
	b.seal_dirfd = -1;
	err = bk_seal_setup(&b, why, sizeof(why));
	if (err) {
		fprintf(stderr, "gvm-seal-bench: %s\n", why);
		return err;
	}
	vm.b = &b;
	randombytes_buf(vm.incarnation, sizeof(vm.incarnation));
	snprintf(vm.name, sizeof(vm.name), "bench");
	vm.nregions = 1;
	vm.regions = &rg;
	rg.vm = &vm;
	rg.npages = npages;
	sodium_bin2hex(hex, sizeof(hex), vm.incarnation, sizeof(vm.incarnation));
	snprintf(rg.ns, sizeof(rg.ns), "bench-host.%s.0", hex);
	err = bk_seal_attach(&vm, false, why, sizeof(why));
	if (err) {
		fprintf(stderr, "gvm-seal-bench: %s\n", why);
		return err;
	}
	randombytes_buf(plain, size); /* no page is all zero: each is sealed */
	for (unsigned i = 0; i < REPS; i++) {
		seal[i] = pass(&rg, plain, wire, hdrs, out, true);
		open[i] = pass(&rg, plain, wire, hdrs, out, false);
		if (memcmp(plain, out, frames * FRAME_PAGES * GVM_PAGE_SIZE)) {
			fprintf(stderr, "gvm-seal-bench: a page came back wrong\n");
			return -EIO;
		}
	}
	qsort(seal, REPS, sizeof(seal[0]), cmp_double);
	qsort(open, REPS, sizeof(open[0]), cmp_double);
	r->seal_us = seal[REPS / 2];
	r->open_us = open[REPS / 2];
	snprintf(path, sizeof(path), "%s/%s/%s", dir, BK_SEAL_DIR, hex);
	*state_bytes = stat(path, &st) ? 0 : (uint64_t)st.st_size;
	bk_seal_forget(&b, vm.incarnation);
	bk_seal_free(&vm);
	bk_seal_close(&b);
	free(plain);
	free(out);
	free(wire);
	free(hdrs);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const enum bk_page_crypto ciphers[] = { BK_CRYPTO_AES256GCM, BK_CRYPTO_XCHACHA20 };
	const char *keys[] = { "aes", "xc" };
	char dir[] = "/tmp/gvm-seal-bench-XXXXXX";
	uint64_t size = DEFAULT_SIZE, state = 0;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 's' && !gvm_parse_size(optarg, &size) &&
		    size >= (uint64_t)FRAME_PAGES * GVM_PAGE_SIZE)
			continue;
		fprintf(opt == 'h' ? stdout : stderr,
			"usage: gvm-seal-bench [--size SIZE]\n"
			"Seals and opens a VM of SIZE (default 64M) with each page cipher, as\n"
			"the broker does (broker/seal.c); prints microseconds per page.\n");
		return opt == 'h' ? 0 : 2;
	}
	size -= size % ((uint64_t)FRAME_PAGES * GVM_PAGE_SIZE);
	gvm_log_init("gvm-seal-bench", GVM_LOG_WARN);
	if (sodium_init() < 0) {
		fprintf(stderr, "gvm-seal-bench: libsodium failed to initialise\n");
		return 1;
	}
	if (!mkdtemp(dir)) {
		perror("gvm-seal-bench: mkdtemp");
		return 1;
	}
	printf("sealing %llu MiB in frames of %u pages, median of %u passes\n",
	       (unsigned long long)(size >> 20), FRAME_PAGES, REPS);
	printf("%-22s %14s %14s %12s %12s\n", "", "seal us/page", "open us/page", "seal MB/s",
	       "open MB/s");
	for (size_t i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++) {
		struct run r;

		if (ciphers[i] == BK_CRYPTO_AES256GCM && !crypto_aead_aes256gcm_is_available()) {
			printf("%-22s (no AES-NI on this CPU)\n", bk_seal_name(ciphers[i]));
			continue;
		}
		if (run_cipher(ciphers[i], size, dir, &r, &state))
			return 1;
		printf("%-22s %14.2f %14.2f %12.0f %12.0f\n", bk_seal_name(ciphers[i]), r.seal_us,
		       r.open_us, GVM_PAGE_SIZE / r.seal_us, GVM_PAGE_SIZE / r.open_us);
		printf("key seal_%s_seal_us_per_page %.2f\nkey seal_%s_open_us_per_page %.2f\n",
		       keys[i], r.seal_us, keys[i], r.open_us);
		printf("key seal_%s_open_cpu_s_per_gib %.3f\n", keys[i],
		       r.open_us * (double)(1u << 30) / GVM_PAGE_SIZE / 1e6);
	}
	/* a header page, then 4 bytes a page */
	double per_gib = state > 4096 ? (double)(state - 4096) * (double)(1u << 30) / (double)size : 0;

	printf("version state: %llu bytes for %llu MiB: %.0f KiB per GiB of guest memory\n",
	       (unsigned long long)state, (unsigned long long)(size >> 20), per_gib / 1024);
	printf("key seal_state_bytes_per_gib %.0f\n", per_gib);
	rmdir(dir);
	return 0;
}
