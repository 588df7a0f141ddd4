/* notify.c: systemd's readiness and watchdog protocol, spoken directly
 * (no libsystemd): datagrams "READY=1", "STOPPING=1" and "WATCHDOG=1" to
 * $NOTIFY_SOCKET, the watchdog every half of $WATCHDOG_USEC from a timer
 * on the broker's loop, so a stuck loop stops the pings. */
#include "notify.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;
static uv_timer_t watchdog;

int bk_notify_open(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t len;

	if (!path || !*path)
		return 0;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(notify_addr.sun_path)) {
		gvm_warn("NOTIFY_SOCKET=%s: not a socket path; systemd is not told", path);
		return -EINVAL;
	}
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, path, len);
	if (path[0] == '@')
		notify_addr.sun_path[0] = '\0'; /* abstract namespace */
	notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	return notify_fd < 0 ? -errno : 0;
}

void bk_notify(const char *state)
{
	if (notify_fd < 0)
		return;
	if (sendto(notify_fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&notify_addr,
		   notify_len) < 0)
		gvm_debug("NOTIFY_SOCKET: %s: %s", state, strerror(errno));
}

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
	bk_notify("WATCHDOG=1");
}

void bk_notify_watchdog_start(uv_loop_t *loop)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	unsigned long long us;
	char *end;

	if (notify_fd < 0 || !usec)
		return;
	if (pid && strtol(pid, NULL, 10) != (long)getpid())
		return;
	us = strtoull(usec, &end, 10);
	if (*end || us < 2000) {
		gvm_warn("WATCHDOG_USEC=%s: not a usable interval; no watchdog pings", usec);
		return;
	}
	uv_timer_init(loop, &watchdog);
	uv_timer_start(&watchdog, on_watchdog, 0, us / 2000);
	uv_unref((uv_handle_t *)&watchdog);
	gvm_info("systemd watchdog: a ping every %llu ms", us / 2000);
}

void bk_notify_watchdog_stop(void)
{
	if (uv_is_active((uv_handle_t *)&watchdog))
		uv_close((uv_handle_t *)&watchdog, NULL);
}
