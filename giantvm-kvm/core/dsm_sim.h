/* dsm_sim.h: N coherence-core nodes in one address space over an in-memory
 * transport, driven by a seeded random workload with random message
 * interleavings (FIFO per link, as TCP gives), and the Ivy invariants
 * checked after every step (dsm_sim.c). Used by sim/ in user space and by
 * kmod/'s self-test in the kernel. */
#ifndef DSM_SIM_H
#define DSM_SIM_H

#include "dsm_core.h"

struct dsm_sim_cfg {
	u16 nodes;
	u64 pages;
	u64 steps;	   /* faults started plus messages delivered */
	u64 seed;
	u32 write_pct;	   /* share of faults that are writes */
	u32 active_nodes;  /* nodes that fault (the others only read in bursts) */
	u32 max_txns;	   /* transactions in flight at once */
	u32 burst_readers; /* every so often this many nodes read one page */
	unsigned bugs;	   /* DSM_BUG_*, in every node */
};

struct dsm_sim_result {
	u64 steps, messages, faults, writes, reads, checks, max_fanout;
	u64 page_bytes;	   /* per-page state, all nodes */
	u64 copyset_bytes; /* heap of copysets at the end, all nodes */
	int violation;	   /* 0: none */
	char why[200];
};

/* Runs the simulation: 0 when every invariant held after every step,
 * -EDOM with res->why on the first violation, -errno on failure. */
int dsm_sim_run(const struct dsm_sim_cfg *cfg, struct dsm_sim_result *res);

/* One write to a page that sharers nodes read: the invalidations the core
 * really sends, and what they cost in a model of one-way latency
 * latency_ns and per-message CPU msg_ns, done serially (GiantVM's loop)
 * and in parallel (ours). */
struct dsm_fanout {
	u32 sharers;
	u64 messages; /* invalidations + acks the run sent */
	u64 serial_ns, parallel_ns;
};

int dsm_sim_fanout(u16 nodes, u32 sharers, u64 latency_ns, u64 msg_ns, struct dsm_fanout *out);

#endif
