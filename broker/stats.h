/* stats.h: the broker's counters and fault-latency histogram, reported by
 * `gvmctl stats` (control.c answers StatsRequest with bk_stats_fill) and by
 * /dev/gvmmem. A new counter is one line in stats.c's STATS table. */
#ifndef BK_STATS_H
#define BK_STATS_H

#include <stdint.h>

#include "broker.h"
#include "gvm.pb-c.h"
#include "gvmmem_ioctl.h"

struct bk_stats {
	uint64_t faults, wp_faults, remote_reads, remote_pages, prefetch_issued,
		prefetch_hits, zero_fills, attaches, attach_errors,
		donor_errors, evictions, writebacks, clean_drops, writeback_errors,
		removed_pages, evict_waits, failovers, hedged_reads, rereplicated_pages,
		poisoned_pages,
		alloc_failures, /* operations dropped for lack of memory (bk_stats_nomem) */
		minor_faults,   /* UFFD_PAGEFAULT_FLAG_MINOR: the page was in the memfd */
		integrity_failures; /* sealed pages a donor handed back altered (seal.h) */
};

extern struct bk_stats bk_stats;

/* An operation dropped because memory ran out: counted, and logged (at
 * most a line a second) with what was dropped and what that means. */
void bk_stats_nomem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One fault served, in microseconds from its message to its page. */
void bk_stats_latency(uint64_t us);
uint64_t bk_stats_latency_pct(double pct);

/* The v1 counters now, in the device's frozen struct (GVMMEM_IOC_STATS).
 * Counters newer than v1 are only in bk_stats_fill and bk_stats_text. */
void bk_stats_v1(struct bk_broker *b, struct gvmmem_stats *s);
/* Fills m with a "key value" entry per counter, v1's first; free with
 * bk_stats_free. */
void bk_stats_fill(struct bk_broker *b, Gvm__Stats *m);
/* The same as "key: value" lines, as gvmctl stats prints them: the bytes
 * written (at most size, without a NUL). */
size_t bk_stats_text(struct bk_broker *b, char *buf, size_t size);
void bk_stats_free(Gvm__Stats *m);

#endif
