/* placement_bench.c: gvm-placement-bench, what finding an extent's donor
 * costs per fault at 2, 64, 2048 and 10240 donors, before and after the
 * broker's location map (broker/replica.c). Before: gvm_place over every
 * donor's address string on each fault (proto/placement.c). After: a fault
 * reads the extent's slots of the map; only an extent's first placement
 * still scores every donor, from hashes computed once. Prints a markdown
 * table and "key name value" lines for bench/run.sh. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "gvm_proto.h"
#include "hostcpu.h"
#include "placement.h"

#define REPS		 7u		      /* timed repetitions per figure, median kept (odd) */
#define SCORES_PER_REP	 (1u << 20)	      /* donors scored per repetition of an O(n) figure */
#define LOOKUPS_PER_REP	 (1u << 22)	      /* map lookups per repetition */
#define REGION_BYTES	 ((uint64_t)1 << 30)  /* the guest region the map covers */
#define BIG_REGION_BYTES ((uint64_t)64 << 30) /* one larger region, to show the map out of L2 */
#define EXTENT_BYTES	 ((uint64_t)GVM_DEFAULT_EXTENT_PAGES * GVM_PAGE_SIZE)
#define LOC_SLOTS	 4u	 /* copies a location holds */
#define LOC_NONE	 0xffffu /* a free slot */
#define COPIES		 2u	 /* slots filled per extent in the map */
#define TOP_MAX		 2u	 /* the largest r timed */
#define CHECK_EXTENTS	 64u	 /* extents whose top-r is checked against gvm_place */
#define ADDR_MAX_BYTES	 24u
/* A namespace name as the broker builds it: host, incarnation (hex), region. */
#define BENCH_NS "bench-host.0123456789abcdef01234567.0"

static const unsigned donor_counts[] = {2, 64, 2048, 10240};
#define NCOUNTS (sizeof(donor_counts) / sizeof(donor_counts[0]))

/* The donors as the broker knows them. */
struct pb_donors {
	unsigned n;
	char (*addr)[ADDR_MAX_BYTES];
	struct gvm_place_donor *cfg; /* what gvm_place takes */
	uint64_t *addr_hash;	     /* what the broker computes once */
	unsigned *weight;
};

/* One region's location map and the random order faults visit it in. */
struct pb_map {
	uint64_t nextents; /* a power of two */
	uint16_t *loc;	   /* nextents * LOC_SLOTS donor indices */
	uint32_t *order;   /* a permutation of 0..nextents-1 */
};

/* Medians of one donor count, ns per operation. */
struct pb_row {
	double before, map, big_map, top[TOP_MAX + 1];
};

static volatile uint64_t sink; /* keeps results the compiler would drop */

static uint64_t pb_rand(uint64_t *s)
{
	uint64_t x = (*s += 0x9e3779b97f4a7c15ULL);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static int pb_donors_init(struct pb_donors *d, unsigned n)
{
	d->n = n;
	d->addr = calloc(n, sizeof(*d->addr));
	d->cfg = calloc(n, sizeof(*d->cfg));
	d->addr_hash = calloc(n, sizeof(*d->addr_hash));
	d->weight = calloc(n, sizeof(*d->weight));
	if (!d->addr || !d->cfg || !d->addr_hash || !d->weight)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		snprintf(d->addr[i], sizeof(d->addr[i]), "127.0.%u.%u:7700", i >> 8, i & 255);
		d->weight[i] = 1;
		d->cfg[i].addr = d->addr[i];
		d->cfg[i].weight = d->weight[i];
		d->addr_hash[i] = gvm_place_addr_hash(d->addr[i]);
	}
	return 0;
}

static void pb_donors_free(struct pb_donors *d)
{
	free(d->addr);
	free(d->cfg);
	free(d->addr_hash);
	free(d->weight);
}

static int pb_map_init(struct pb_map *m, uint64_t region_bytes)
{
	uint64_t s = 7;

	m->nextents = region_bytes / EXTENT_BYTES;
	m->loc = malloc(m->nextents * LOC_SLOTS * sizeof(*m->loc));
	m->order = malloc(m->nextents * sizeof(*m->order));
	if (!m->loc || !m->order)
		return -1;
	for (uint64_t e = 0; e < m->nextents; e++)
		m->order[e] = (uint32_t)e;
	for (uint64_t e = m->nextents - 1; e > 0; e--) { /* Fisher-Yates */
		uint64_t j = pb_rand(&s) % (e + 1);
		uint32_t t = m->order[e];

		m->order[e] = m->order[j];
		m->order[j] = t;
	}
	return 0;
}

/* COPIES holders per extent, donor indices below n, the other slots free. */
static void pb_map_fill(struct pb_map *m, unsigned n)
{
	uint64_t s = n;

	for (uint64_t e = 0; e < m->nextents; e++) {
		uint16_t *l = m->loc + e * LOC_SLOTS;
		unsigned first = (unsigned)(pb_rand(&s) % n);

		for (unsigned k = 0; k < LOC_SLOTS; k++)
			l[k] = k < COPIES && k < n ? (uint16_t)((first + k) % n) : LOC_NONE;
	}
}

static void pb_map_free(struct pb_map *m)
{
	free(m->loc);
	free(m->order);
}

/* After, per fault: the first donor holding extent e (LOC_NONE: nobody). */
static inline unsigned pb_loc_first(const uint16_t *loc, uint64_t e)
{
	const uint16_t *l = loc + e * LOC_SLOTS;

	for (unsigned k = 0; k < LOC_SLOTS; k++)
		if (l[k] != LOC_NONE)
			return l[k];
	return LOC_NONE;
}

/* After, per first placement: the best r donors for key, best first, the
 * way the broker places an extent at its first write-back. */
static void pb_place_top(uint64_t key, const struct pb_donors *d, unsigned r, unsigned *out)
{
	double best[TOP_MAX];

	for (unsigned k = 0; k < r; k++)
		best[k] = -1; /* every score is > 0 */
	for (unsigned i = 0; i < d->n; i++) {
		double score = gvm_place_score(key, d->addr_hash[i], d->weight[i]);
		unsigned k;

		if (score <= best[r - 1])
			continue; /* most donors lose */
		for (k = r - 1; k > 0 && score > best[k - 1]; k--) {
			best[k] = best[k - 1];
			out[k] = out[k - 1];
		}
		best[k] = score;
		out[k] = i;
	}
}

/* Before, ns per fault: gvm_place over every address string. */
static double pb_time_before(const struct pb_donors *d, const struct pb_map *m)
{
	uint64_t ops = SCORES_PER_REP / d->n, sum = 0;
	unsigned out[1];
	double t0 = bench_now_us();

	for (uint64_t i = 0; i < ops; i++) {
		gvm_place(BENCH_NS, m->order[i & (m->nextents - 1)], d->cfg, d->n, out, 1);
		sum += out[0];
	}
	double t1 = bench_now_us();

	sink += sum;
	return (t1 - t0) * 1e3 / (double)ops;
}

/* After, ns per fault. Each lookup's extent depends on the one before (the
 * compiler cannot tell that the index never moves), so lookups do not
 * overlap: the time is a lookup's latency, as for one fault among other
 * work, not the throughput of independent lookups. */
static double pb_time_map(const struct pb_map *m)
{
	uint64_t mask = m->nextents - 1, sum = 0;
	unsigned d = 0;
	double t0 = bench_now_us();

	for (uint64_t i = 0; i < LOOKUPS_PER_REP; i++) {
		d = pb_loc_first(m->loc, m->order[(i + (d == LOC_NONE)) & mask]);
		sum += d;
	}
	double t1 = bench_now_us();

	sink += sum;
	return (t1 - t0) * 1e3 / (double)LOOKUPS_PER_REP;
}

/* After, ns per first placement of r copies. */
static double pb_time_top(const struct pb_donors *d, const struct pb_map *m, uint64_t ns_hash,
			  unsigned r)
{
	uint64_t ops = SCORES_PER_REP / d->n, sum = 0;
	unsigned out[TOP_MAX];
	double t0 = bench_now_us();

	for (uint64_t i = 0; i < ops; i++) {
		uint64_t key = gvm_place_key(ns_hash, m->order[i & (m->nextents - 1)]);

		pb_place_top(key, d, r, out);
		sum += out[r - 1];
	}
	double t1 = bench_now_us();

	sink += sum;
	return (t1 - t0) * 1e3 / (double)ops;
}

/* The broker's loop places extents where gvm_place does: checked on
 * CHECK_EXTENTS extents, for r = 1 .. TOP_MAX. */
static int pb_check(const struct pb_donors *d, uint64_t ns_hash)
{
	for (uint64_t e = 0; e < CHECK_EXTENTS; e++) {
		for (unsigned r = 1; r <= TOP_MAX && r <= d->n; r++) {
			unsigned want[TOP_MAX], got[TOP_MAX];

			gvm_place(BENCH_NS, e, d->cfg, d->n, want, r);
			pb_place_top(gvm_place_key(ns_hash, e), d, r, got);
			for (unsigned k = 0; k < r; k++) {
				if (got[k] == want[k])
					continue;
				fprintf(stderr,
					"gvm-placement-bench: %u donors, extent %" PRIu64
					", copy %u of %u: the top-r loop chose donor %u, gvm_place "
					"%u\n",
					d->n, e, k + 1, r, got[k], want[k]);
				return -1;
			}
		}
	}
	return 0;
}

/* ns as the table shows them: whole from 100 up, else to 0.1. */
static const char *pb_ns(char *buf, size_t n, double ns)
{
	snprintf(buf, n, ns >= 100 ? "%.0f" : "%.1f", ns);
	return buf;
}

static double pb_median(double *v, unsigned n)
{
	qsort(v, n, sizeof(v[0]), bench_cmp_double);
	return v[n / 2];
}

/* Every figure for n donors, their repetitions interleaved so that a slow
 * moment of the host lands on all of them alike. The first round warms up
 * and is not kept. */
static int pb_measure(unsigned n, struct pb_map *m, struct pb_map *big, struct pb_row *row)
{
	struct pb_donors d;
	uint64_t ns_hash = gvm_place_ns_hash(BENCH_NS);
	double before[REPS], map[REPS], big_map[REPS], top[TOP_MAX + 1][REPS];
	int err = -1;

	if (pb_donors_init(&d, n)) {
		fprintf(stderr, "gvm-placement-bench: out of memory for %u donors\n", n);
		goto out;
	}
	if (pb_check(&d, ns_hash))
		goto out;
	pb_map_fill(m, n);
	pb_map_fill(big, n);
	for (unsigned rep = 0; rep <= REPS; rep++) {
		unsigned i = rep ? rep - 1 : 0;

		before[i] = pb_time_before(&d, m);
		map[i] = pb_time_map(m);
		big_map[i] = pb_time_map(big);
		for (unsigned r = 1; r <= TOP_MAX; r++)
			top[r][i] = pb_time_top(&d, m, ns_hash, r);
	}
	row->before = pb_median(before, REPS);
	row->map = pb_median(map, REPS);
	row->big_map = pb_median(big_map, REPS);
	for (unsigned r = 1; r <= TOP_MAX; r++)
		row->top[r] = pb_median(top[r], REPS);
	err = 0;
out:
	pb_donors_free(&d);
	return err;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: gvm-placement-bench\n"
		   "Times finding an extent's donor at 2, 64, 2048 and 10240 donors:\n"
		   "gvm_place on every fault (before) against the broker's location map\n"
		   "(after), and an extent's first placement of 1 or 2 copies from hashes\n"
		   "computed once. Prints a markdown table and 'key name value' lines;\n"
		   "takes a few seconds.\n");
}

int main(int argc, char **argv)
{
	struct pb_map m = {0}, big = {0};
	struct pb_row rows[NCOUNTS];
	uint64_t busy0, steal0, total0, busy1, steal1, total1;
	double t0 = bench_now_us();
	int rc = 1;

	if (argc > 1) {
		bool help = argc == 2 && !strcmp(argv[1], "--help");

		usage(help ? stdout : stderr);
		return help ? 0 : 2;
	}
	if (pb_map_init(&m, REGION_BYTES) || pb_map_init(&big, BIG_REGION_BYTES)) {
		fprintf(stderr, "gvm-placement-bench: out of memory for the location maps\n");
		goto out;
	}
	bench_host_cpu(&busy0, &steal0, &total0);
	for (unsigned c = 0; c < NCOUNTS; c++)
		if (pb_measure(donor_counts[c], &m, &big, &rows[c]))
			goto out;
	bench_host_cpu(&busy1, &steal1, &total1);

	printf("Per operation, ns, median of %u repetitions. Map: a %" PRIu64 " MiB region "
	       "(%" PRIu64 " extents, a %" PRIu64 " KiB map), extents in random order, each lookup "
	       "waiting for the one before.\n\n",
	       REPS, REGION_BYTES >> 20, m.nextents,
	       (m.nextents * LOC_SLOTS * sizeof(*m.loc)) >> 10);
	printf("| donors | before: gvm_place per fault | after: map lookup per fault | "
	       "before / after | first placement, 1 copy | first placement, 2 copies | "
	       "before / first placement (1 copy) |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|\n");
	for (unsigned c = 0; c < NCOUNTS; c++) {
		const struct pb_row *r = &rows[c];
		char b[4][32];

		printf("| %u | %s | %s | %.0f× | %s | %s | %.2f× |\n", donor_counts[c],
		       pb_ns(b[0], sizeof(b[0]), r->before), pb_ns(b[1], sizeof(b[1]), r->map),
		       r->before / r->map, pb_ns(b[2], sizeof(b[2]), r->top[1]),
		       pb_ns(b[3], sizeof(b[3]), r->top[2]), r->before / r->top[1]);
	}
	printf("\nThe map lookup over a %" PRIu64 " GiB region (a %" PRIu64 " MiB map):",
	       BIG_REGION_BYTES >> 30, (big.nextents * LOC_SLOTS * sizeof(*big.loc)) >> 20);
	for (unsigned c = 0; c < NCOUNTS; c++)
		printf("%s %.1f ns at %u donors", c ? "," : "", rows[c].big_map, donor_counts[c]);
	printf(".\n");
	printf("Per donor scored, at %u donors: %.1f ns before (the address string hashed), "
	       "%.1f ns in a first placement of 1 copy (a mix and a log).\n",
	       donor_counts[NCOUNTS - 1], rows[NCOUNTS - 1].before / donor_counts[NCOUNTS - 1],
	       rows[NCOUNTS - 1].top[1] / donor_counts[NCOUNTS - 1]);
	printf("The top-r loop chose the same donors as gvm_place for %u extents at every count.\n",
	       CHECK_EXTENTS);

	for (unsigned c = 0; c < NCOUNTS; c++) {
		const struct pb_row *r = &rows[c];
		unsigned n = donor_counts[c];

		printf("key place_%u_before_ns %.1f\n", n, r->before);
		printf("key place_%u_map_ns %.1f\n", n, r->map);
		printf("key place_%u_map_%" PRIu64 "g_ns %.1f\n", n, BIG_REGION_BYTES >> 30,
		       r->big_map);
		printf("key place_%u_first_r1_ns %.1f\n", n, r->top[1]);
		printf("key place_%u_first_r2_ns %.1f\n", n, r->top[2]);
		printf("key place_%u_before_over_map_ratio %.0f\n", n, r->before / r->map);
		printf("key place_%u_before_over_first_r1_ratio %.2f\n", n, r->before / r->top[1]);
	}
	printf("key place_per_donor_before_ns %.1f\n",
	       rows[NCOUNTS - 1].before / donor_counts[NCOUNTS - 1]);
	printf("key place_per_donor_first_r1_ns %.1f\n",
	       rows[NCOUNTS - 1].top[1] / donor_counts[NCOUNTS - 1]);
	printf("key place_steal_pct %.0f\n",
	       total1 > total0 ? 100.0 * (double)(steal1 - steal0) / (double)(total1 - total0) : 0);
	printf("key place_seconds %.1f\n", (bench_now_us() - t0) / 1e6);
	rc = 0;
out:
	pb_map_free(&m);
	pb_map_free(&big);
	return rc;
}
