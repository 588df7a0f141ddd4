/* gvmmem.h: what a VMM links to put guest RAM under gvm-broker.
 *
 *   mode = gvm_detect_mode();          FULL_SHARE: the GiantVM kernel shares
 *                                      everything, do nothing; NONE: local RAM
 *   s = gvm_attach(NULL, "vm1", regions, n, &err);   MEMORY_ONLY
 *   ...                                faults on the regions are served by the
 *   gvm_detach(s);                     broker from the donors
 *
 * Guest RAM must be a shared memfd mapping (QEMU: memory-backend-memfd,
 * share=on). Every call reports errors as -errno; gvm_strerror() explains
 * them. Link with `pkg-config --libs gvmmem`. */
#ifndef GVMMEM_H
#define GVMMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum gvm_mode { GVM_MODE_NONE, GVM_MODE_MEMORY_ONLY, GVM_MODE_FULL_SHARE };

/* GVM_MODE=none|memory-only|full-share overrides. Else FULL_SHARE when the
 * GiantVM kernel is there (/sys/module/giantvm_kvm or /dev/giantvm, under
 * $GVM_SYSROOT if set), MEMORY_ONLY when a broker answers at the default
 * endpoint, else NONE. Logs one line saying which, and whether KVM or TCG. */
enum gvm_mode gvm_detect_mode(void);

struct gvm_region {
	const char *name;      /* e.g. "pc.ram": a label for logs, 1..63 of letters,
				  digits and . _ - + : @ */
	void *host_addr;       /* page-aligned start of the shared mapping */
	size_t size;           /* page-aligned length */
	int memfd;             /* the memfd that mapping comes from */
	uint64_t memfd_offset; /* offset of host_addr within the memfd */
	uint64_t guest_phys;   /* where the guest sees it */
};

struct gvm_session;

/* endpoint NULL: $GVM_ENDPOINT, then /dev/gvmmem, then
 * /run/gvm/broker.sock. vm_name is a label for logs (the same rules as a
 * region's name); two VMs of the same name never share a page: the broker
 * gives each attachment an identity of its own. Returns NULL with *err set
 * on failure. The session keeps the connection: if the broker goes away,
 * faults wait and the library re-attaches the same VM to a restarted
 * broker (only this user can). $GVM_VM_LIMIT=SIZE sets the VM's own limit
 * of resident memory; $GVM_PINNED=1 attaches it pinned (below). */
struct gvm_session *gvm_attach(const char *endpoint, const char *vm_name,
			       const struct gvm_region *regions, size_t nregions,
			       int *err);

/* gvm_attach with flags. GVM_ATTACH_PINNED: the VM's RAM is pinned for
 * device DMA (VFIO passthrough, io_uring fixed buffers, RDMA): the broker
 * brings all of it into memory at attach, counts it against its budget and
 * never evicts, discards or write-protects it; remote memory then saves
 * nothing for this VM. A pinned VM the budget has no room for is refused
 * (-ENOSPC; gvm_strerror says what to do). gvm_attach() is
 * gvm_attach_flags() with GVM_ATTACH_PINNED when $GVM_PINNED=1, else 0.
 * Regions may be MFD_HUGETLB memfds of 2 MiB pages (then aligned to 2 MiB):
 * their pages move whole. */
#define GVM_ATTACH_PINNED 1u
struct gvm_session *gvm_attach_flags(const char *endpoint, const char *vm_name,
				     const struct gvm_region *regions, size_t nregions,
				     unsigned flags, int *err);

const char *gvm_strerror(int err);

/* This VM's own limit of resident memory from now on (0: none beyond the
 * host's budget); above it, its pages move to the donors. 0 or -errno. */
int gvm_set_limit(struct gvm_session *s, uint64_t bytes);

/* Ends the session: the broker forgets the VM and frees its pages on the
 * donors. The regions become plain memory (missing pages read as zero).
 * A process that exits without it loses its pages the same way, once it
 * is gone; while it lives, a lost connection keeps them (re-attach). */
void gvm_detach(struct gvm_session *s);

#ifdef __cplusplus
}
#endif

#endif
