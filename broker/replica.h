/* replica.h: where each extent's copies live (its location: up to
 * BK_REPLICAS_MAX donor indices), and keeping --replicas of them: a donor
 * unreachable or stalled for --dead-after is declared dead and its copies
 * are forgotten; a donor that forgot a namespace (it answered ENOENT, or
 * re-opened it under a new id: it restarted empty) loses its copies of
 * that region; extents with fewer copies than wanted are copied again,
 * from a survivor to the next donor in placement order, at a bounded
 * rate. An extent whose last copy is lost has its missing pages marked
 * lost: their faults are answered with UFFDIO_POISON (fault.c). */
#ifndef BK_REPLICA_H
#define BK_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"

int bk_replica_setup(struct bk_broker *b);
void bk_replica_stop(struct bk_broker *b);
/* The donor table grew to cap entries: per-donor state grows with it. */
int bk_replica_grow(struct bk_broker *b, unsigned cap);
/* A donor was added at index d: every region knows it holds nothing. */
void bk_replica_donor_added(struct bk_broker *b, unsigned d);
/* Something may need copying (a donor started draining). */
void bk_replica_wake(struct bk_broker *b);
/* A removed donor: no longer dead, nothing more to see of it. */
void bk_replica_forget_donor(struct bk_broker *b, unsigned d);

/* An extent's location: the donors holding its current copy. */
static inline uint16_t *bk_loc(const struct bk_region *rg, uint64_t e)
{
	return rg->loc + e * BK_REPLICAS_MAX;
}
unsigned bk_loc_count(const struct bk_region *rg, uint64_t e);
bool bk_loc_has(const struct bk_region *rg, uint64_t e, unsigned d);
/* False when the location is full (BK_REPLICAS_MAX copies). */
bool bk_loc_add(struct bk_region *rg, uint64_t e, unsigned d);
/* A region goes away: its copies no longer count for their donors. */
void bk_loc_forget(struct bk_region *rg);
/* After a change of e's location: re-replication looks at it if it is
 * short of copies. */
void bk_replica_check(struct bk_region *rg, uint64_t e);
/* Forgets d's copy; when it was the last, the extent's missing pages are
 * lost (only explicit answers come here: a death, a forgotten namespace). */
void bk_loc_del(struct bk_region *rg, uint64_t e, unsigned d);

/* Whether donor d takes new copies: listed (not draining), reachable, not
 * dead, not being cleaned after a return. */
bool bk_donor_usable(const struct bk_broker *b, unsigned d);
bool bk_donor_dead(const struct bk_broker *b, unsigned d);
/* The donor to read extent e from: the first holder (not in skip, which
 * may be NULL) that is reachable, else the first one not dead (the read
 * waits for it), else BK_NO_DONOR. */
unsigned bk_read_donor(const struct bk_region *rg, uint64_t e, const struct bk_tried *skip);
/* Where an extent's first copy goes: the --replicas usable donors with the
 * highest placement scores (fewer when fewer are usable). Returns how
 * many. O(donors): once per extent, never per fault. */
unsigned bk_place_new(const struct bk_region *rg, uint64_t e, uint16_t out[BK_REPLICAS_MAX]);

/* Opens rg's namespace on donor d if it is not open, then calls done(ctx,
 * 0), or done(ctx, -errno) when it cannot be opened. A re-open that finds
 * another id means the donor lost the namespace: its copies are dropped
 * (bk_replica_ns_lost) before done runs. Holds a VM reference meanwhile. */
void bk_ns_open(struct bk_region *rg, unsigned d, void (*done)(void *ctx, int err), void *ctx);
/* rg's namespace is open on donor d under id (an OPEN_NS answer): another
 * id than before means the donor lost it. */
void bk_replica_ns_opened(struct bk_region *rg, unsigned d, uint32_t id);
/* Donor d answered ENOENT for rg's namespace: it lost it. */
void bk_replica_ns_lost(struct bk_region *rg, unsigned d, const char *why);

/* Donor d handed back a page of extent e that fails authentication (bad:
 * seal.h): its copy is not what was sealed (altered, another page's, an
 * older version). Counted, logged with the donor and the page, and dropped
 * like a lost copy (bk_loc_del). */
void bk_replica_forged(struct bk_region *rg, uint64_t e, unsigned d, uint64_t bad);

/* A re-attached region learns where its copies are: LIST on every donor. */
void bk_replica_map(struct bk_region *rg);

/* For gvmctl stats and donors. */
unsigned bk_replica_dead_donors(const struct bk_broker *b);
uint64_t bk_replica_degraded(const struct bk_broker *b);

#endif
