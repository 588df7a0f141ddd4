/* device.c: the broker's side of /dev/gvmmem. cuse-dev/ serves the device
 * and asks its host (struct bk_cuse_host) for what it answers: tokens come
 * from token.c, counters from stats.c. While the device exists the broker
 * holds it in b->cuse and every Hello needs a token (control.c). */
#include <errno.h>

#include "broker.h"
#include "cuse_dev.h"
#include "log.h"
#include "stats.h"
#include "token.h"

static struct gvm_log_limit token_refusals = GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);

static int host_token(void *ctx, pid_t pid, uid_t uid, uint8_t out[GVMMEM_TOKEN_BYTES])
{
	int err = bk_token_issue(pid, uid, out);

	(void)ctx;
	if (!err)
		return 0;
	bk_stats.attach_errors++;
	if (err == -EDQUOT)
		gvm_log_limited(&token_refusals, GVM_LOG_WARN,
				"GVMMEM_IOC_HELLO: no token for pid %d uid %d: that user holds %u "
				"unused ones already", (int)pid, (int)uid, BK_TOKENS_PER_UID);
	else
		gvm_log_limited(&token_refusals, GVM_LOG_WARN,
				"GVMMEM_IOC_HELLO: no token for pid %d uid %d: all %u token slots "
				"are taken", (int)pid, (int)uid, BK_TOKENS_MAX);
	return err;
}

static void host_stats(void *ctx, struct gvmmem_stats *v1)
{
	bk_stats_v1(ctx, v1);
}

static size_t host_stats_text(void *ctx, char *buf, size_t n)
{
	return bk_stats_text(ctx, buf, n);
}

static void host_gone(void *ctx)
{
	struct bk_broker *b = ctx;

	b->cuse = NULL;
	b->require_token = false;
}

int bk_device_start(struct bk_broker *b, const char *name, char *why, size_t n)
{
	const struct bk_cuse_host host = {
		.ctx = b,
		.socket_path = b->cfg.socket_path,
		.token_ttl_ms = BK_TOKEN_TTL_MS,
		.extent_pages = b->cfg.extent_pages,
		.token = host_token,
		.stats = host_stats,
		.stats_text = host_stats_text,
		.gone = host_gone,
	};
	int err = bk_cuse_start(b->loop, &host, name, &b->cuse, why, n);

	if (err)
		return err;
	b->require_token = true;
	return 0;
}

void bk_device_stop(struct bk_broker *b)
{
	bk_cuse_stop(b->cuse);
}
