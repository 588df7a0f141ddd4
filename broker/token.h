/* token.h: one-time attach tokens handed out by /dev/gvmmem (device.c
 * issues them for cuse-dev/) and redeemed on the control socket (token.c). */
#ifndef BK_TOKEN_H
#define BK_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gvmmem_ioctl.h"

#define BK_TOKENS_MAX 1024u     /* outstanding at once, over all users */
#define BK_TOKENS_PER_UID 8u    /* outstanding at once for one user */
#define BK_TOKEN_TTL_MS 10000u  /* from GVMMEM_IOC_HELLO to Hello */

/* 0; -EDQUOT when uid holds BK_TOKENS_PER_UID live tokens already; -EAGAIN
 * when every slot holds a live token (then nobody's is taken away). */
int bk_token_issue(pid_t pid, uid_t uid, uint8_t out[GVMMEM_TOKEN_BYTES]);
/* 0, or -EACCES with why set: unknown, used, expired, or another uid or
 * process. A token is spent by its first presentation either way. */
int bk_token_redeem(const uint8_t *token, size_t len, pid_t peer_pid, uid_t peer_uid,
		    char *why, size_t n);

#endif
