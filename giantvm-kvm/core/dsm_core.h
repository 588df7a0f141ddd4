/* dsm_core.h: a full-share DSM coherence core (Ivy, as GiantVM implements
 * it) that scales to DSM_NODES_MAX nodes: per-page state of 16 bytes per
 * node, a sparse copyset that exists only at the owner, u16 node ids end
 * to end, a variable-length copyset on the wire, per-destination txids,
 * and invalidations sent all at once and then acknowledged. Kernel-style
 * C; dsm_shim.h makes it build in user space too. docs/giantvm-full-share.md
 * maps it onto GiantVM's ivy.c. */
#ifndef DSM_CORE_H
#define DSM_CORE_H

#include "dsm_shim.h"

typedef u16 dsm_node_t;
#define DSM_NODES_MAX 10240u
#define DSM_NODE_NONE 0xffffu

/* Page states (low bits) and the owner flag. */
#define DSM_INITIAL 0u
#define DSM_INVALID 1u
#define DSM_SHARED 2u
#define DSM_MODIFIED 3u
#define DSM_STATE_MASK 3u
#define DSM_OWNER 4u

/* ---- copyset: who holds a read copy, kept by the owner only ---- */
#define DSM_COPYSET_INLINE 4u

enum dsm_copyset_kind { DSM_CS_INLINE, DSM_CS_ARRAY, DSM_CS_BITMAP };

struct dsm_copyset {
	u16 kind;  /* enum dsm_copyset_kind */
	u16 count; /* ids in the set */
	u16 cap;   /* array slots (DSM_CS_ARRAY) */
	u16 nodes; /* cluster size: the bitmap's length */
	union {
		dsm_node_t ids[DSM_COPYSET_INLINE]; /* sorted */
		dsm_node_t *array;		    /* sorted, cap slots */
		unsigned long *bitmap;		    /* nodes bits */
	};
};

void dsm_copyset_init(struct dsm_copyset *cs, u16 nodes);
/* 0, or -ENOMEM (the set is unchanged). */
int dsm_copyset_add(struct dsm_copyset *cs, dsm_node_t id);
void dsm_copyset_del(struct dsm_copyset *cs, dsm_node_t id);
bool dsm_copyset_has(const struct dsm_copyset *cs, dsm_node_t id);
/* Calls fn for every id in ascending order; stops at a non-zero return. */
int dsm_copyset_for_each(const struct dsm_copyset *cs, int (*fn)(void *arg, dsm_node_t id),
			 void *arg);
/* The ids, ascending, into out (room for cs->count). */
void dsm_copyset_to_array(const struct dsm_copyset *cs, dsm_node_t *out);
void dsm_copyset_free(struct dsm_copyset *cs);
/* Heap bytes the set uses beyond the struct itself. */
size_t dsm_copyset_heap_bytes(const struct dsm_copyset *cs);

/* ---- per-page, per-node state: 16 bytes ---- */
struct dsm_page {
	u8 state;		    /* DSM_INITIAL..DSM_MODIFIED | DSM_OWNER */
	u8 busy;		    /* a transaction of this node runs on it */
	dsm_node_t prob_owner;	    /* where to send requests (Li & Hudak) */
	u32 version;		    /* bumped by every completed write */
	struct dsm_copyset *copyset; /* owner with sharers only, else NULL */
};

/* ---- messages; on the wire the copyset is ncopyset u16 ids ---- */
enum dsm_msg_type {
	DSM_MSG_READ_REQ = 1,
	DSM_MSG_WRITE_REQ,
	DSM_MSG_PAGE,	 /* ownership, data, version, the copyset */
	DSM_MSG_INV,	 /* drop your copy; requester is the new owner */
	DSM_MSG_INV_ACK,
};

struct dsm_msg {
	u8 type;
	u8 pad;
	dsm_node_t from;      /* sender of this hop */
	dsm_node_t requester; /* who started the transaction */
	u16 ncopyset;
	u32 txid;    /* the requester's, echoed by answers */
	u32 version;
	u64 gfn;
	u64 data;    /* page contents' stand-in; a kernel transport sends the page */
	dsm_node_t copyset[]; /* ncopyset ids (DSM_MSG_PAGE) */
};

static inline size_t dsm_msg_len(const struct dsm_msg *m)
{
	return sizeof(*m) + (size_t)m->ncopyset * sizeof(dsm_node_t);
}

struct dsm_node;

/* What the core needs from its host: a transport and the page contents. */
struct dsm_ops {
	/* Queue m (len bytes) for node to; 0 or -errno. */
	int (*send)(void *ctx, dsm_node_t from, dsm_node_t to, const struct dsm_msg *m,
		    size_t len);
	u64 (*page_get)(void *ctx, dsm_node_t node, u64 gfn);
	void (*page_set)(void *ctx, dsm_node_t node, u64 gfn, u64 data);
	/* A transaction ended: the fault can be retried/resumed. */
	void (*done)(void *ctx, dsm_node_t node, u64 gfn, bool write);
};

struct dsm_stats {
	u64 faults, read_reqs, write_reqs, forwards, pages_sent, invalidations, acks;
	u64 max_fanout;
};

/* Deliberate faults, for proving the checks work. */
#define DSM_BUG_SKIP_ONE_INVALIDATION 1u

struct dsm_txn;

struct dsm_node {
	dsm_node_t id;
	u16 nodes;
	u64 npages;
	struct dsm_page *pages;
	u32 *txid_next; /* per destination, nodes entries */
	struct dsm_txn *txns;
	const struct dsm_ops *ops;
	void *ctx;
	unsigned bugs;
	struct dsm_stats stats;
};

/* Node id of a cluster of nodes, npages pages; node 0 owns every page at
 * start (MODIFIED), the others point at it. */
int dsm_node_init(struct dsm_node *n, dsm_node_t id, u16 nodes, u64 npages,
		  const struct dsm_ops *ops, void *ctx);
void dsm_node_destroy(struct dsm_node *n);

/* A fault on gfn: 0 when the local copy already allows it, 1 when a
 * transaction started (ops->done says when it ends), -EBUSY when one runs
 * on that page already, -errno on failure. */
int dsm_fault(struct dsm_node *n, u64 gfn, bool write, u64 write_data);
/* One message for this node: 0 or -errno (-EPROTO: a message that makes
 * no sense here). */
int dsm_handle(struct dsm_node *n, const struct dsm_msg *m);

static inline bool dsm_page_valid(const struct dsm_page *p)
{
	u8 s = p->state & DSM_STATE_MASK;

	return s == DSM_SHARED || s == DSM_MODIFIED;
}

#endif
