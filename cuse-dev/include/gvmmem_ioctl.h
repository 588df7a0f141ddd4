/* gvmmem_ioctl.h: the ioctls of /dev/gvmmem, the broker's character
 * device (CUSE). Every struct has a fixed size and layout, so the kernel
 * copies it in and out by the size encoded in the command (restricted
 * ioctls); fields are only ever appended, with GVMMEM_IOCTL_VERSION bumped.
 *
 *   fd = open("/dev/gvmmem", O_RDWR);        the device's group/mode decide
 *   ioctl(fd, GVMMEM_IOC_HELLO, &hello);      who may attach
 *   connect to hello.socket_path, send Hello{token = hello.token}
 *
 * read() on the device returns the same counters as text, one
 * "key: value" line each, like `gvmctl stats`. */
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

/* The counters of `gvmctl stats`, in its order. */
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
	/* replicas (their size is in the ioctl's number: a caller built
	 * before them gets ENOTTY, not a short struct) */
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

#define GVMMEM_IOC_MAGIC 0xb7
#define GVMMEM_IOC_VERSION _IOR(GVMMEM_IOC_MAGIC, 0x00, struct gvmmem_version)
#define GVMMEM_IOC_HELLO _IOR(GVMMEM_IOC_MAGIC, 0x01, struct gvmmem_hello)
#define GVMMEM_IOC_STATS _IOR(GVMMEM_IOC_MAGIC, 0x02, struct gvmmem_stats)

#endif
