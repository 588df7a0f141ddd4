/* token.h: one-time attach tokens handed out by /dev/gvmmem and redeemed
 * on the control socket (token.c). */
#ifndef BK_TOKEN_H
#define BK_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gvmmem_ioctl.h"

#define BK_TOKENS_MAX 64u      /* outstanding at once; the oldest is reused */
#define BK_TOKEN_TTL_MS 10000u /* from GVMMEM_IOC_HELLO to Hello */

int bk_token_issue(pid_t pid, uid_t uid, uint8_t out[GVMMEM_TOKEN_BYTES]);
/* 0, or -EACCES with why set: unknown, used, expired, or another uid or
 * process. A token is spent by its first presentation either way. */
int bk_token_redeem(const uint8_t *token, size_t len, pid_t peer_pid, uid_t peer_uid,
		    char *why, size_t n);

#endif
