/* stats.c: counters and a log-linear latency histogram (1 us resolution
 * below 1 ms, then 64 steps per power of two) for gvmctl stats. */
#include "stats.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "prefetch.h"
#include "replica.h"

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

void bk_stats_nomem(const char *fmt, ...)
{
	static struct gvm_log_limit lines = GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);
	char what[256];
	va_list ap;

	bk_stats.alloc_failures++;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	gvm_log_limited(&lines, GVM_LOG_ERROR, "out of memory: %s", what);
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

/* The names `gvmctl stats` prints, in struct gvmmem_stats order: one
 * snapshot feeds the control socket, the device's ioctl and its read(). */
#define KEY(f) { #f, offsetof(struct gvmmem_stats, f) }
static const struct {
	const char *name;
	size_t offset;
} stat_keys[] = {
	KEY(vms),	       KEY(resident_pages),	  KEY(faults),
	KEY(wp_faults),	       KEY(remote_reads),	  KEY(remote_pages),
	KEY(prefetch_issued),  KEY(prefetch_hits),	  KEY(prefetch_cache_bytes),
	KEY(zero_fills),       KEY(donors),		  KEY(donor_connections),
	KEY(donor_errors),     KEY(attaches),		  KEY(attach_errors),
	KEY(budget_bytes),     KEY(resident_bytes),	  KEY(evictions),
	KEY(writebacks),       KEY(clean_drops),	  KEY(writeback_errors),
	KEY(evict_waits),      KEY(removed_pages),	  KEY(fault_latency_p50_us),
	KEY(fault_latency_p99_us), KEY(replicas),		  KEY(dead_donors),
	KEY(degraded_extents), KEY(failovers),		  KEY(hedged_reads),
	KEY(rereplicated_pages), KEY(poisoned_pages),	  KEY(draining_extents),
};
#undef KEY
_Static_assert(sizeof(stat_keys) / sizeof(stat_keys[0]) * sizeof(uint64_t) ==
		       sizeof(struct gvmmem_stats),
	       "every field of struct gvmmem_stats has a name");

#define NKEYS (sizeof(stat_keys) / sizeof(stat_keys[0]))

static uint64_t stat_at(const struct gvmmem_stats *s, size_t i)
{
	uint64_t v;

	memcpy(&v, (const char *)s + stat_keys[i].offset, sizeof(v));
	return v;
}

void bk_stats_snapshot(struct bk_broker *b, struct gvmmem_stats *s)
{
	unsigned vms = 0;

	for (struct bk_vm *vm = b->vms; vm; vm = vm->next)
		vms += !vm->detached;
	*s = (struct gvmmem_stats){
		.vms = vms,
		.resident_pages = b->resident_pages,
		.faults = bk_stats.faults,
		.wp_faults = bk_stats.wp_faults,
		.remote_reads = bk_stats.remote_reads,
		.remote_pages = bk_stats.remote_pages,
		.prefetch_issued = bk_stats.prefetch_issued,
		.prefetch_hits = bk_stats.prefetch_hits,
		.prefetch_cache_bytes = bk_cache_bytes(b->cache),
		.zero_fills = bk_stats.zero_fills,
		.donors = b->active_donors,
		.donor_connections = bk_pool_ready_connections(b->pool),
		.donor_errors = bk_stats.donor_errors,
		.attaches = bk_stats.attaches,
		.attach_errors = bk_stats.attach_errors,
		.budget_bytes = b->cfg.budget_bytes,
		.resident_bytes = b->resident_pages * GVM_PAGE_SIZE,
		.evictions = bk_stats.evictions,
		.writebacks = bk_stats.writebacks,
		.clean_drops = bk_stats.clean_drops,
		.writeback_errors = bk_stats.writeback_errors,
		.evict_waits = bk_stats.evict_waits,
		.removed_pages = bk_stats.removed_pages,
		.fault_latency_p50_us = bk_stats_latency_pct(50),
		.fault_latency_p99_us = bk_stats_latency_pct(99),
		.replicas = b->cfg.replicas,
		.dead_donors = bk_replica_dead_donors(b),
		.degraded_extents = bk_replica_degraded(b),
		.failovers = bk_stats.failovers,
		.hedged_reads = bk_stats.hedged_reads,
		.rereplicated_pages = bk_stats.rereplicated_pages,
		.poisoned_pages = bk_stats.poisoned_pages,
		.draining_extents = bk_donors_draining_extents(b),
	};
}

void bk_stats_fill(struct bk_broker *b, Gvm__Stats *m)
{
	struct gvmmem_stats s;

	bk_stats_snapshot(b, &s);
	gvm__stats__init(m);
	m->entries = calloc(NKEYS, sizeof(*m->entries));
	for (size_t i = 0; m->entries && i < NKEYS; i++) {
		Gvm__StatsEntry *e = malloc(sizeof(*e));

		if (!e)
			break;
		gvm__stats_entry__init(e);
		e->key = (char *)stat_keys[i].name;
		e->value = stat_at(&s, i);
		m->entries[m->n_entries++] = e;
	}
}

size_t bk_stats_text(struct bk_broker *b, char *buf, size_t size)
{
	struct gvmmem_stats s;
	size_t n = 0;

	bk_stats_snapshot(b, &s);
	for (size_t i = 0; i < NKEYS && n < size; i++) {
		int w = snprintf(buf + n, size - n, "%s: %" PRIu64 "\n", stat_keys[i].name,
				 stat_at(&s, i));

		if (w < 0)
			break;
		n += (size_t)w;
	}
	return n < size ? n : size;
}

void bk_stats_free(Gvm__Stats *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		free(m->entries[i]);
	free(m->entries);
}
