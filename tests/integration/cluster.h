/* cluster.h: one test's gvm-broker and its gvm-memserver donors (procs.h),
 * their files, stopping them, and the checks the membership tests
 * (test_membership.c, test_etcd.c) make on them: a donor's line of
 * `gvmctl donors`, its drain, a donor's own counters. The checks fail the
 * running cmocka test. */
#ifndef GVMT_CLUSTER_H
#define GVMT_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "procs.h"

#define GVMT_CLUSTER_DONORS_MAX 4
#define GVMT_DRAIN_MS		60000 /* a removed donor's copies moved elsewhere */

struct gvmt_cluster {
	struct gvmt_proc donor[GVMT_CLUSTER_DONORS_MAX], broker;
	char sock[512];	   /* the broker's */
	char file[512];	   /* a --donors-file */
	char listing[512]; /* the last `gvmctl donors` */
};

/* The files, named name.sock, name.donors and name.listing in gvmt_dir(). */
void gvmt_cluster_paths(struct gvmt_cluster *cl, const char *name);
/* Starts ndonors gvm-memservers and a broker over them with broker_extra
 * (e.g. --budget; may be NULL), on name.sock, and waits until the broker
 * counts every donor. */
void gvmt_cluster_start(struct gvmt_cluster *cl, const char *name, const char *key_path,
			unsigned ndonors, const char *const *broker_extra);
/* Stops the broker (SIGTERM; it must exit 0), kills the donors, forgets
 * them all. */
void gvmt_cluster_stop(struct gvmt_cluster *cl);
/* Stops the broker and the donors with SIGTERM; each must exit 0. */
void gvmt_cluster_stop_clean(struct gvmt_cluster *cl);
/* For a teardown: kills whatever still runs and forgets it. */
void gvmt_cluster_kill(struct gvmt_cluster *cl);
/* Replaces the donors file at once (a rename), so no reload reads half. */
void gvmt_cluster_write_donors(const struct gvmt_cluster *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Waits until eviction has moved what it will: the broker's writebacks
 * no longer change (10 s at the most). */
void gvmt_cluster_settle(const struct gvmt_cluster *cl);

/* addr's line of `gvmctl donors` (in cl->listing): false if it has none. */
bool gvmt_cluster_lists(const struct gvmt_cluster *cl, const char *addr,
			struct gvmt_donor_row *row);
/* The same, which must be there. */
struct gvmt_donor_row gvmt_cluster_row(const struct gvmt_cluster *cl, const char *addr);
/* Waits until addr is removed and no draining donor holds a copy
 * (GVMT_DRAIN_MS at the most). */
void gvmt_cluster_wait_drained(const struct gvmt_cluster *cl, const char *addr);

/* A donor's pages in use, and pages read from it, by its STATS. */
uint64_t gvmt_donor_used_pages(const struct gvmt_proc *p, const struct gvm_key *key);
uint64_t gvmt_donor_pages_read(const struct gvmt_proc *p, const struct gvm_key *key);
/* Waits until the donor holds no page (5 s at the most): our namespaces
 * there dropped. */
void gvmt_donor_wait_empty(const struct gvmt_proc *p, const struct gvm_key *key);

#endif
