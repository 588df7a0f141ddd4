/* memtest.c: the workload the demo's guest runs (static, no libc beyond
 * what -static gives). It fills a share of the guest's RAM with a pattern
 * seeded by page index, checksums it, copies it, checksums the copy and
 * the original again, and prints one marker line the host side greps:
 *
 *   GVM-MEMTEST OK data_mib=N sum=HEX copy_sum=HEX seconds=S
 *   GVM-MEMTEST FAIL ...
 *
 * Usage: gvm-guest-memtest [PERCENT] [ROUNDS]: PERCENT of MemTotal in all
 * (half for the data, half for the copy; default 75), ROUNDS passes of
 * copy-and-verify (default 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096u

static uint64_t meminfo_kib(const char *key)
{
	char line[256];
	unsigned long long v = 0;
	size_t klen = strlen(key);
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			sscanf(line + klen + 1, "%llu", &v);
			break;
		}
	fclose(f);
	return v;
}

/* splitmix64: a different, reproducible stream per page. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void fill_page(uint64_t *p, uint64_t index)
{
	uint64_t s = mix(index);

	for (unsigned i = 0; i < PAGE / 8; i++)
		p[i] = s = mix(s + i);
}

/* Order-dependent: a page swapped with another changes the sum. */
static uint64_t sum_pages(const uint64_t *p, size_t pages)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < pages * (PAGE / 8); i++)
		h = (h ^ p[i]) * 1099511628211ull + (i >> 9);
	return h;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	unsigned percent = argc > 1 ? (unsigned)atoi(argv[1]) : 75;
	unsigned rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 1;
	uint64_t total_kib = meminfo_kib("MemTotal"), avail_kib = meminfo_kib("MemAvailable");
	uint64_t want, pages, expect = 0, got, copy_sum = 0;
	uint64_t *a, *b;
	double t0 = now();

	if (percent < 1 || percent > 95 || rounds < 1 || !total_kib) {
		printf("GVM-MEMTEST FAIL usage: gvm-guest-memtest [PERCENT 1-95] [ROUNDS]\n");
		return 2;
	}
	want = total_kib * 1024 / 100 * percent;
	/* Leave the kernel room: never more than what is available less 12 MiB. */
	if (avail_kib * 1024 > (12u << 20) && want > avail_kib * 1024 - (12u << 20))
		want = avail_kib * 1024 - (12u << 20);
	pages = want / 2 / PAGE;
	printf("GVM-MEMTEST start mem_total_mib=%llu data_mib=%llu copy_mib=%llu rounds=%u\n",
	       (unsigned long long)(total_kib >> 10), (unsigned long long)(pages * PAGE >> 20),
	       (unsigned long long)(pages * PAGE >> 20),
	       rounds);
	fflush(stdout);
	a = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED) {
		printf("GVM-MEMTEST FAIL cannot map %llu pages twice\n", (unsigned long long)pages);
		return 1;
	}
	for (size_t i = 0; i < pages; i++)
		fill_page(a + i * (PAGE / 8), i);
	/* The expected sum comes from the pattern itself, page by page in a
	 * scratch page, so a page the host lost cannot hide in both. */
	{
		static uint64_t scratch[PAGE / 8];
		uint64_t h = 1469598103934665603ull;

		for (size_t i = 0; i < pages; i++) {
			fill_page(scratch, i);
			for (unsigned w = 0; w < PAGE / 8; w++) {
				size_t k = i * (PAGE / 8) + w;
				h = (h ^ scratch[w]) * 1099511628211ull + (k >> 9);
			}
		}
		expect = h;
	}
	got = sum_pages(a, pages);
	printf("GVM-MEMTEST filled sum=%016llx expect=%016llx\n", (unsigned long long)got,
	       (unsigned long long)expect);
	fflush(stdout);
	for (unsigned r = 0; r < rounds && got == expect; r++) {
		memcpy(b, a, pages * PAGE);
		copy_sum = sum_pages(b, pages);
		got = sum_pages(a, pages);
		printf("GVM-MEMTEST round %u copy_sum=%016llx sum=%016llx\n", r + 1,
		       (unsigned long long)copy_sum, (unsigned long long)got);
		fflush(stdout);
		if (copy_sum != expect)
			got = copy_sum;
	}
	if (got != expect || copy_sum != expect) {
		printf("GVM-MEMTEST FAIL data_mib=%llu sum=%016llx copy_sum=%016llx expect=%016llx\n",
		       (unsigned long long)(pages * PAGE >> 20), (unsigned long long)got,
		       (unsigned long long)copy_sum, (unsigned long long)expect);
		return 1;
	}
	printf("GVM-MEMTEST OK data_mib=%llu sum=%016llx copy_sum=%016llx seconds=%.1f\n",
	       (unsigned long long)(pages * PAGE >> 20), (unsigned long long)got,
	       (unsigned long long)copy_sum, now() - t0);
	return 0;
}
