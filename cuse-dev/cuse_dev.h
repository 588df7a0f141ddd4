/* cuse_dev.h: /dev/gvmmem on a libuv loop (cuse_dev.c). The device knows
 * no broker: what it answers comes from its host, a context and the calls
 * below, which gvm-broker implements (broker/device.c). */
#ifndef BK_CUSE_DEV_H
#define BK_CUSE_DEV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "gvmmem_ioctl.h"

#define BK_DEFAULT_DEVICE_NAME "gvmmem"

struct bk_cuse;

/* What the device needs from its host. The values are read once, at
 * bk_cuse_start (strings must outlive the device); the calls run on the
 * loop, each with ctx. */
struct bk_cuse_host {
	void *ctx;
	const char *socket_path; /* GVMMEM_IOC_HELLO: the control socket */
	unsigned token_ttl_ms;   /* GVMMEM_IOC_HELLO: how long a token lasts */
	unsigned extent_pages;   /* GVMMEM_IOC_VERSION */
	/* GVMMEM_IOC_HELLO: a one-time token for the control socket, bound to
	 * the caller's pid and uid. 0, or -errno for the ioctl to fail with
	 * (the host logs and counts the refusal). */
	int (*token)(void *ctx, pid_t pid, uid_t uid, uint8_t out[GVMMEM_TOKEN_BYTES]);
	/* GVMMEM_IOC_STATS: the frozen v1 counters. */
	void (*stats)(void *ctx, struct gvmmem_stats *v1);
	/* read(): every counter as "key: value" lines; the bytes written (at
	 * most n, without a NUL). */
	size_t (*stats_text)(void *ctx, char *buf, size_t n);
	/* The device is going away (bk_cuse_stop, or the kernel ended the
	 * session): the host forgets its struct bk_cuse. Called once. */
	void (*gone)(void *ctx);
};

/* Creates /dev/NAME on loop, serving what host says (the struct is
 * copied); *out is the device until host->gone. 0; -ENODEV when the kernel
 * has no CUSE, another -errno otherwise, with why saying so. */
int bk_cuse_start(uv_loop_t *loop, const struct bk_cuse_host *host, const char *name,
		  struct bk_cuse **out, char *why, size_t n);
/* Removes the device (at shutdown); NULL is no device. */
void bk_cuse_stop(struct bk_cuse *d);

#endif
