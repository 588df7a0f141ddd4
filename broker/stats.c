/* stats.c: counters and a log-linear latency histogram (1 us resolution
 * below 1 ms, then 64 steps per power of two). One table (STATS) names
 * every counter and says where its value comes from; from it come gvmctl
 * stats (control.c), the device's text and its frozen v1 struct (cuse-dev/). */
#include "stats.h"

#include <inttypes.h>
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

static uint64_t attached_vms(const struct bk_broker *b)
{
	uint64_t n = 0;

	for (const struct bk_vm *vm = b->vms; vm; vm = vm->next)
		n += !vm->detached;
	return n;
}

/* Attached VMs whose pages are received straight into their memory and
 * mapped with UFFDIO_CONTINUE (--install). */
static uint64_t continue_vms(const struct bk_broker *b)
{
	uint64_t n = 0;

	for (const struct bk_vm *vm = b->vms; vm; vm = vm->next)
		n += !vm->detached && vm->nregions && vm->regions[0].map;
	return n;
}

/* Attached VMs whose pages are sealed on the donors (seal.h). */
static uint64_t sealed_vms(const struct bk_broker *b)
{
	uint64_t n = 0;

	for (const struct bk_vm *vm = b->vms; vm; vm = vm->next)
		n += !vm->detached && vm->seal;
	return n;
}

/* Every counter, in `gvmctl stats` order: the name it is reported under and
 * the value now. The first 33 are struct gvmmem_stats (v1) in its order; a
 * new counter is one line at the end, and is reported by gvmctl stats and
 * the device's read(), never by the frozen ioctl. */
#define STATS(X)                                                        \
	X(vms, attached_vms(b))                                         \
	X(resident_pages, b->resident_pages)                            \
	X(faults, bk_stats.faults)                                      \
	X(wp_faults, bk_stats.wp_faults)                                \
	X(remote_reads, bk_stats.remote_reads)                          \
	X(remote_pages, bk_stats.remote_pages)                          \
	X(prefetch_issued, bk_stats.prefetch_issued)                    \
	X(prefetch_hits, bk_stats.prefetch_hits)                        \
	X(prefetch_cache_bytes, bk_cache_bytes(b->cache))               \
	X(zero_fills, bk_stats.zero_fills)                              \
	X(donors, b->active_donors)                                     \
	X(donor_connections, bk_pool_ready_connections(b->pool))        \
	X(donor_errors, bk_stats.donor_errors)                          \
	X(attaches, bk_stats.attaches)                                  \
	X(attach_errors, bk_stats.attach_errors)                        \
	X(budget_bytes, b->cfg.budget_bytes)                            \
	X(resident_bytes, b->resident_pages * GVM_PAGE_SIZE)            \
	X(evictions, bk_stats.evictions)                                \
	X(writebacks, bk_stats.writebacks)                              \
	X(clean_drops, bk_stats.clean_drops)                            \
	X(writeback_errors, bk_stats.writeback_errors)                  \
	X(evict_waits, bk_stats.evict_waits)                            \
	X(removed_pages, bk_stats.removed_pages)                        \
	X(fault_latency_p50_us, bk_stats_latency_pct(50))               \
	X(fault_latency_p99_us, bk_stats_latency_pct(99))               \
	X(replicas, b->cfg.replicas)                                    \
	X(dead_donors, bk_replica_dead_donors(b))                       \
	X(degraded_extents, bk_replica_degraded(b))                     \
	X(failovers, bk_stats.failovers)                                \
	X(hedged_reads, bk_stats.hedged_reads)                          \
	X(rereplicated_pages, bk_stats.rereplicated_pages)              \
	X(poisoned_pages, bk_stats.poisoned_pages)                      \
	X(draining_extents, bk_donors_draining_extents(b))              \
	/* not in v1 */                                                 \
	X(alloc_failures, bk_stats.alloc_failures)                      \
	X(minor_faults, bk_stats.minor_faults)                          \
	X(install_continue, continue_vms(b))                            \
	X(pinned_pages, bk_pinned_pages(b))                             \
	X(sealed_vms, sealed_vms(b))                                    \
	X(integrity_failures, bk_stats.integrity_failures)

enum {
#define X(name, value) STAT_##name,
	STATS(X)
#undef X
	NSTATS
};

static const char *const stat_names[NSTATS] = {
#define X(name, value) [STAT_##name] = #name,
	STATS(X)
#undef X
};

/* One snapshot feeds the control socket, the device's text and its ioctl. */
static void snapshot(struct bk_broker *b, uint64_t v[NSTATS])
{
#define X(name, value) v[STAT_##name] = (uint64_t)(value);
	STATS(X)
#undef X
}

/* struct gvmmem_stats, v1: frozen like the header's struct. Each field is
 * copied from the counter of its name, and those counters stay first in
 * gvmctl stats, in this order. */
#define V1_FIELDS(X)                                                                       \
	X(vms) X(resident_pages) X(faults) X(wp_faults) X(remote_reads) X(remote_pages)    \
	X(prefetch_issued) X(prefetch_hits) X(prefetch_cache_bytes) X(zero_fills)        \
	X(donors) X(donor_connections) X(donor_errors) X(attaches) X(attach_errors)      \
	X(budget_bytes) X(resident_bytes) X(evictions) X(writebacks) X(clean_drops)      \
	X(writeback_errors) X(evict_waits) X(removed_pages) X(fault_latency_p50_us)      \
	X(fault_latency_p99_us) X(replicas) X(dead_donors) X(degraded_extents)           \
	X(failovers) X(hedged_reads) X(rereplicated_pages) X(poisoned_pages)             \
	X(draining_extents)

enum {
#define X(f) V1_##f,
	V1_FIELDS(X)
#undef X
	V1_COUNT
};
_Static_assert(V1_COUNT * sizeof(uint64_t) == GVMMEM_STATS_V1_BYTES,
	       "every field of struct gvmmem_stats is copied");
#define X(f) _Static_assert((int)STAT_##f == (int)V1_##f, "v1 counter " #f " keeps its place");
V1_FIELDS(X)
#undef X

void bk_stats_v1(struct bk_broker *b, struct gvmmem_stats *s)
{
	uint64_t v[NSTATS];

	snapshot(b, v);
	memset(s, 0, sizeof(*s));
#define X(f) s->f = v[STAT_##f];
	V1_FIELDS(X)
#undef X
}

void bk_stats_fill(struct bk_broker *b, Gvm__Stats *m)
{
	uint64_t v[NSTATS];

	snapshot(b, v);
	gvm__stats__init(m);
	m->entries = calloc(NSTATS, sizeof(*m->entries));
	for (size_t i = 0; m->entries && i < NSTATS; i++) {
		Gvm__StatsEntry *e = malloc(sizeof(*e));

		if (!e)
			break;
		gvm__stats_entry__init(e);
		e->key = (char *)stat_names[i];
		e->value = v[i];
		m->entries[m->n_entries++] = e;
	}
}

size_t bk_stats_text(struct bk_broker *b, char *buf, size_t size)
{
	uint64_t v[NSTATS];
	size_t n = 0;

	snapshot(b, v);
	for (size_t i = 0; i < NSTATS && n < size; i++) {
		int w = snprintf(buf + n, size - n, "%s: %" PRIu64 "\n", stat_names[i], v[i]);

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
