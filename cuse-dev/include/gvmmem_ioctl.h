/* gvmmem_ioctl.h: the ioctls of /dev/gvmmem, the broker's character
 * device (CUSE). Every struct has a fixed size and layout, so the kernel
 * copies it in and out by the size encoded in the command (restricted
 * ioctls). A struct in here never changes once released: its size is in
 * its command's number, so a changed struct is a new command (and
 * GVMMEM_IOCTL_VERSION is bumped).
 *
 *   fd = open("/dev/gvmmem", O_RDWR);        the device's group/mode decide
 *   ioctl(fd, GVMMEM_IOC_HELLO, &hello);      who may attach
 *   connect to hello.socket_path, send Hello{token = hello.token}
 *
 * read() on the device returns every counter as text, one "key: value"
 * line each, like `gvmctl stats`; GVMMEM_IOC_STATS gives only the frozen
 * v1 set of them (struct gvmmem_stats). */
#ifndef GVMMEM_IOCTL_H
#define GVMMEM_IOCTL_H

#include <linux/ioctl.h>
#include <stdint.h>

#define GVMMEM_IOCTL_VERSION 1u
#define GVMMEM_TOKEN_BYTES 32u
#define GVMMEM_SOCKET_PATH_BYTES 108u /* sizeof(sun_path) */

struct gvmmem_version {
	uint32_t ioctl_version;    /* GVMMEM_IOCTL_VERSION */
	uint32_t protocol_version; /* of the control socket (Hello.version) */
	uint32_t page_size;
	uint32_t extent_pages;
};

/* A one-time token for the control socket, bound to the pid and uid that
 * made this ioctl and valid for token_ttl_ms; the broker refuses it used
 * twice, late, or by another process. */
struct gvmmem_hello {
	uint32_t protocol_version;
	uint32_t token_ttl_ms;
	uint8_t token[GVMMEM_TOKEN_BYTES];
	char socket_path[GVMMEM_SOCKET_PATH_BYTES]; /* NUL-terminated */
};

/* GVMMEM_IOC_STATS, v1: FROZEN. These fields, in this order, never change:
 * the struct's size is in GVMMEM_IOC_STATS's number, and a client built
 * against it must keep working with every broker. Counters the broker
 * gained later are in the device's read() text and in `gvmctl stats`
 * (the control socket's Stats) only, never here; those list these first,
 * in this order, then the newer ones. */
struct gvmmem_stats {
	uint64_t vms;
	uint64_t resident_pages;
	uint64_t faults;
	uint64_t wp_faults;
	uint64_t remote_reads;
	uint64_t remote_pages;
	uint64_t prefetch_issued;
	uint64_t prefetch_hits;
	uint64_t prefetch_cache_bytes;
	uint64_t zero_fills;
	uint64_t donors;
	uint64_t donor_connections;
	uint64_t donor_errors;
	uint64_t attaches;
	uint64_t attach_errors;
	uint64_t budget_bytes;
	uint64_t resident_bytes;
	uint64_t evictions;
	uint64_t writebacks;
	uint64_t clean_drops;
	uint64_t writeback_errors;
	uint64_t evict_waits;
	uint64_t removed_pages;
	uint64_t fault_latency_p50_us;
	uint64_t fault_latency_p99_us;
	/* replicas */
	uint64_t replicas;
	uint64_t dead_donors;
	uint64_t degraded_extents;
	uint64_t failovers;
	uint64_t hedged_reads;
	uint64_t rereplicated_pages;
	uint64_t poisoned_pages;
	/* membership: extent copies still on donors being drained */
	uint64_t draining_extents;
};

#define GVMMEM_STATS_V1_BYTES 264u /* 33 counters */
#ifdef __cplusplus
static_assert(sizeof(struct gvmmem_stats) == GVMMEM_STATS_V1_BYTES,
	      "struct gvmmem_stats is frozen: new counters go to read() and gvmctl stats");
#else
_Static_assert(sizeof(struct gvmmem_stats) == GVMMEM_STATS_V1_BYTES,
	       "struct gvmmem_stats is frozen: new counters go to read() and gvmctl stats");
#endif

#define GVMMEM_IOC_MAGIC 0xb7
#define GVMMEM_IOC_VERSION _IOR(GVMMEM_IOC_MAGIC, 0x00, struct gvmmem_version)
#define GVMMEM_IOC_HELLO _IOR(GVMMEM_IOC_MAGIC, 0x01, struct gvmmem_hello)
/* 0x8108b702 where the ioctl encoding is asm-generic (x86, arm64, riscv) */
#define GVMMEM_IOC_STATS _IOR(GVMMEM_IOC_MAGIC, 0x02, struct gvmmem_stats)

#endif
