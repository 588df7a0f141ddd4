/* cuse_dev.h: /dev/gvmmem on the broker's loop (cuse_dev.c). */
#ifndef BK_CUSE_DEV_H
#define BK_CUSE_DEV_H

#include <stddef.h>

#include "broker.h"

#define BK_DEFAULT_DEVICE_NAME "gvmmem"

/* Creates /dev/NAME. -ENODEV when the kernel has no CUSE (why says so);
 * from then on a Hello on the control socket needs a device token. */
int bk_cuse_start(struct bk_broker *b, const char *name, char *why, size_t n);
/* Removes the device (at shutdown). */
void bk_cuse_stop(struct bk_broker *b);

#endif
