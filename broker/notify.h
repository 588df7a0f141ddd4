/* notify.h: telling systemd the broker is ready and alive (notify.c). */
#ifndef BK_NOTIFY_H
#define BK_NOTIFY_H

#include <uv.h>

/* Opens $NOTIFY_SOCKET if set (before the sandbox): 0 or -errno. */
int bk_notify_open(void);
/* Sends one state line ("READY=1", ...); nothing without a socket. */
void bk_notify(const char *state);
/* Pings WATCHDOG=1 every $WATCHDOG_USEC/2 from the loop. */
void bk_notify_watchdog_start(uv_loop_t *loop);
void bk_notify_watchdog_stop(void);

#endif
