/* seed_layout.h: the memory layout of GiantVM's per-page DSM state and of
 * its DSM messages, written out as plain user-space C so that sizeof()
 * gives the real sizes on x86_64. Two variants of the per-page struct:
 *
 *   seed_page_info_giantvm16    GiantVM as published: DSM_MAX_INSTANCES 16,
 *                               so each copyset bitmap is one unsigned long
 *   seed_page_info_seeds10240   the seeds' change: DSM_MAX_INSTANCES 10240,
 *                               so each bitmap is BITS_TO_LONGS(10240) = 160
 *                               unsigned longs (1280 bytes)
 *
 * What is mirrored (GiantVM/Linux-DSM, Linux 4.9.76, default configuration
 * of arch/x86/include/asm/kvm_host.h: IVY_KVM_DSM, KVM_DSM_DIFF and
 * KVM_DSM_PF_PROFILE all defined, USE_KTCP_NETWORK):
 *   - struct kvm_dsm_info (kvm_host.h), the array slot->vfn_dsm_state[],
 *     one element per guest page per node (dsm-util.c dsm_create_memslot);
 *   - struct dsm_request and struct dsm_response (ivy.c);
 *   - tx_add_t (kvm_host.h) and struct ktcp_hdr (ktcp.c).
 * Field order and types are GiantVM's; names are ours where that reads
 * better. Only types and sizes are described here, no behaviour.
 *
 * Approximated types (sizes for x86_64, no lock debugging):
 *   - struct mutex: Linux 4.9's layout is atomic_t count, spinlock_t
 *     wait_lock, struct list_head wait_list, then with
 *     CONFIG_MUTEX_SPIN_ON_OWNER (the x86_64 SMP default) struct
 *     task_struct *owner and struct optimistic_spin_queue osq: 40 bytes.
 *     CONFIG_DEBUG_MUTEXES or CONFIG_DEBUG_LOCK_ALLOC make it larger. (A
 *     6.1 kernel's mutex is 32 bytes; this file models 4.9, which GiantVM
 *     runs on.)
 *   - spinlock_t: 4 bytes (qspinlock) without CONFIG_DEBUG_SPINLOCK or
 *     lockdep.
 *   - bool: one byte, as in the kernel.
 *   - gfn_t, size_t: 8 bytes. version_t: uint32_t (kvm_host.h).
 *
 * Used by the simulation and by docs/giantvm-full-share.md for the
 * metadata arithmetic; the static asserts at the end pin the numbers. */
#ifndef SEED_LAYOUT_H
#define SEED_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEED_BITS_PER_LONG (sizeof(unsigned long) * 8)
#define SEED_BITS_TO_LONGS(n) (((n) + SEED_BITS_PER_LONG - 1) / SEED_BITS_PER_LONG)

#define SEED_GIANTVM_MAX_INSTANCES 16    /* kvm_host.h: DSM_MAX_INSTANCES */
#define SEED_SEEDS_MAX_INSTANCES 10240   /* the seeds' DSM_MAX_INSTANCES */

/* Linux 4.9 struct mutex on x86_64 with CONFIG_MUTEX_SPIN_ON_OWNER and no
 * debugging (approximation of the real type, same size and alignment). */
struct seed_mutex_49 {
	int32_t count;		   /* atomic_t */
	uint32_t wait_lock;	   /* spinlock_t (qspinlock) */
	void *wait_list_next;	   /* struct list_head wait_list */
	void *wait_list_prev;
	void *owner;		   /* struct task_struct * */
	int32_t osq_tail;	   /* struct optimistic_spin_queue (atomic_t) */
};

/* struct kvm_dsm_info with DSM_MAX_INSTANCES 16. The page state word packs
 * the probable owner in its upper 16 bits (DSM_STATE_SHIFT 16) and the
 * MSI state plus DSM_OWNER (1 << 2) in the low bits (dsm-util.h). */
struct seed_page_info_giantvm16 {
	unsigned int state;	/* unsigned state: prob_owner << 16 | flags */
	unsigned long copyset[SEED_BITS_TO_LONGS(SEED_GIANTVM_MAX_INSTANCES)];
				/* DECLARE_BITMAP(copyset, DSM_MAX_INSTANCES) */
	struct seed_mutex_49 fast_path_lock; /* struct mutex fast_path_lock */
	bool fast_path_locked;
	unsigned int pinned_read;
	unsigned int pinned_write;
	struct seed_mutex_49 lock;	     /* struct mutex lock (dsm_lock) */
	unsigned int read_pf;		     /* KVM_DSM_PF_PROFILE */
	unsigned int write_pf;
	struct {			     /* KVM_DSM_DIFF */
		char *twin;		     /* 4 KiB copy, allocated lazily */
		uint32_t version;	     /* version_t */
		unsigned long copyset[SEED_BITS_TO_LONGS(SEED_GIANTVM_MAX_INSTANCES)];
	} diff;
	uint32_t version;		     /* version_t version (IVY_KVM_DSM) */
};

/* The same struct after the seeds' kvm_host.h edit: both bitmaps are
 * DECLARE_BITMAP(..., DSM_MAX_INSTANCES), so both grow to 1280 bytes. */
struct seed_page_info_seeds10240 {
	unsigned int state;
	unsigned long copyset[SEED_BITS_TO_LONGS(SEED_SEEDS_MAX_INSTANCES)];
	struct seed_mutex_49 fast_path_lock;
	bool fast_path_locked;
	unsigned int pinned_read;
	unsigned int pinned_write;
	struct seed_mutex_49 lock;
	unsigned int read_pf;
	unsigned int write_pf;
	struct {
		char *twin;
		uint32_t version;
		unsigned long copyset[SEED_BITS_TO_LONGS(SEED_SEEDS_MAX_INSTANCES)];
	} diff;
	uint32_t version;
};

/* struct dsm_response (ivy.c): a local variable on the kernel stack in
 * ivy_kvm_dsm_page_fault, kvm_dsm_invalidate, dsm_handle_read_req and
 * dsm_handle_write_req. copyset_t is unsigned long in GiantVM. */
struct seed_dsm_response_giantvm16 {
	unsigned long inv_copyset; /* copyset_t */
	uint16_t version;
};

/* The same after the seeds turn copyset_t into
 * struct { unsigned long bits[BITS_TO_LONGS(10240)]; }. */
struct seed_dsm_response_seeds10240 {
	struct {
		unsigned long bits[SEED_BITS_TO_LONGS(SEED_SEEDS_MAX_INSTANCES)];
	} inv_copyset;
	uint16_t version;
};

/* struct dsm_request (ivy.c): the request body on the wire, sent raw
 * (sizeof bytes, host byte order and padding included). */
struct seed_dsm_request_giantvm {
	unsigned char requester;  /* node id: 8 bits */
	unsigned char msg_sender; /* node id: 8 bits */
	uint64_t gfn;		  /* gfn_t */
	unsigned char req_type;	  /* DSM_REQ_INVALIDATE / _READ / _WRITE */
	bool is_smm;
	uint16_t version;	  /* the page's u32 version, truncated */
};

/* tx_add_t (kvm_host.h, IVY_KVM_DSM): rides in every ktcp frame header. */
struct seed_tx_add_giantvm {
	uint16_t inv_copyset; /* the whole copyset on the wire: 16 bits */
	uint16_t version;
	uint16_t txid;	      /* from generate_txid(); 0xFF = "any" */
};

/* struct ktcp_hdr (ktcp.c), packed. Every ktcp_send() writes this header
 * plus a full PAGE_SIZE buffer: KTCP_BUFFER_SIZE = 14 + 4096 bytes per
 * message, whatever its real length. */
struct seed_ktcp_hdr_giantvm {
	uint64_t length; /* size_t: header + payload length */
	struct seed_tx_add_giantvm tx_add;
} __attribute__((packed));

#define SEED_KTCP_FRAME_BYTES (sizeof(struct seed_ktcp_hdr_giantvm) + 4096)

#if defined(__x86_64__) && defined(__LP64__)
_Static_assert(sizeof(struct seed_mutex_49) == 40, "4.9 mutex, x86_64, no debug");
_Static_assert(sizeof(struct seed_page_info_giantvm16) == 152, "kvm_dsm_info, 16 instances");
_Static_assert(sizeof(struct seed_page_info_seeds10240) == 2696, "kvm_dsm_info, 10240 instances");
_Static_assert(sizeof(struct seed_dsm_response_giantvm16) == 16, "dsm_response, 16 instances");
_Static_assert(sizeof(struct seed_dsm_response_seeds10240) == 1288, "dsm_response, 10240");
_Static_assert(sizeof(struct seed_dsm_request_giantvm) == 24, "dsm_request");
_Static_assert(sizeof(struct seed_tx_add_giantvm) == 6, "tx_add_t");
_Static_assert(sizeof(struct seed_ktcp_hdr_giantvm) == 14, "ktcp_hdr");
#endif

#endif
