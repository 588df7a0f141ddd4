/* stats.c: counters and a log-linear latency histogram (1 us resolution
 * below 1 ms, then 64 steps per power of two) for gvmctl stats. */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "prefetch.h"

#define LAT_LINEAR 1024u
#define LAT_SUB 64u
#define LAT_BUCKETS (LAT_LINEAR + 54u * LAT_SUB)

struct bk_stats bk_stats;
static uint64_t lat_hist[LAT_BUCKETS];
static uint64_t lat_count;

static unsigned lat_bucket(uint64_t us)
{
	unsigned e;

	if (us < LAT_LINEAR)
		return (unsigned)us;
	e = 63u - (unsigned)__builtin_clzll(us);
	if (e > 63 - 1)
		e = 62;
	return LAT_LINEAR + (e - 10) * LAT_SUB + (unsigned)((us >> (e - 6)) & (LAT_SUB - 1));
}

static uint64_t lat_value(unsigned b)
{
	unsigned e, m;

	if (b < LAT_LINEAR)
		return b;
	e = (b - LAT_LINEAR) / LAT_SUB + 10;
	m = (b - LAT_LINEAR) % LAT_SUB;
	return (1ull << e) | ((uint64_t)m << (e - 6));
}

void bk_stats_latency(uint64_t us)
{
	unsigned b = lat_bucket(us);

	if (b < LAT_BUCKETS) {
		lat_hist[b]++;
		lat_count++;
	}
}

uint64_t bk_stats_latency_pct(double pct)
{
	uint64_t want = (uint64_t)((double)lat_count * pct / 100.0), seen = 0;

	if (!lat_count)
		return 0;
	for (unsigned b = 0; b < LAT_BUCKETS; b++) {
		seen += lat_hist[b];
		if (seen > want)
			return lat_value(b);
	}
	return lat_value(LAT_BUCKETS - 1);
}

static void put(Gvm__Stats *m, const char *key, uint64_t value)
{
	Gvm__StatsEntry *e = malloc(sizeof(*e));

	gvm__stats_entry__init(e);
	e->key = (char *)key;
	e->value = value;
	m->entries[m->n_entries++] = e;
}

void bk_stats_fill(struct bk_broker *b, Gvm__Stats *m)
{
	unsigned vms = 0;

	for (struct bk_vm *vm = b->vms; vm; vm = vm->next)
		vms += !vm->detached;
	gvm__stats__init(m);
	m->entries = calloc(40, sizeof(*m->entries));
	put(m, "vms", vms);
	put(m, "resident_pages", b->resident_pages);
	put(m, "faults", bk_stats.faults);
	put(m, "wp_faults", bk_stats.wp_faults);
	put(m, "remote_reads", bk_stats.remote_reads);
	put(m, "remote_pages", bk_stats.remote_pages);
	put(m, "prefetch_issued", bk_stats.prefetch_issued);
	put(m, "prefetch_hits", bk_stats.prefetch_hits);
	put(m, "prefetch_cache_bytes", bk_cache_bytes(b->cache));
	put(m, "zero_fills", bk_stats.zero_fills);
	put(m, "donors", bk_pool_donors(b->pool));
	put(m, "donor_connections", bk_pool_ready_connections(b->pool));
	put(m, "donor_errors", bk_stats.donor_errors);
	put(m, "attaches", bk_stats.attaches);
	put(m, "attach_errors", bk_stats.attach_errors);
	put(m, "budget_bytes", b->cfg.budget_bytes);
	put(m, "resident_bytes", b->resident_pages * GVM_PAGE_SIZE);
	put(m, "evictions", bk_stats.evictions);
	put(m, "writebacks", bk_stats.writebacks);
	put(m, "clean_drops", bk_stats.clean_drops);
	put(m, "writeback_errors", bk_stats.writeback_errors);
	put(m, "evict_waits", bk_stats.evict_waits);
	put(m, "removed_pages", bk_stats.removed_pages);
	put(m, "fault_latency_p50_us", bk_stats_latency_pct(50));
	put(m, "fault_latency_p99_us", bk_stats_latency_pct(99));
}

void bk_stats_free(Gvm__Stats *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		free(m->entries[i]);
	free(m->entries);
}
