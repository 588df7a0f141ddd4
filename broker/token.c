/* token.c: the one-time tokens of /dev/gvmmem. GVMMEM_IOC_HELLO (cuse-dev/,
 * through its host, device.c) issues one bound to the calling thread's pid
 * and uid; the control socket (control.c) redeems it in Hello. A token
 * works once, within BK_TOKEN_TTL_MS, and only for a peer with that uid
 * whose process contains that thread. Each user holds at most
 * BK_TOKENS_PER_UID unused ones, and a live token is never given away to
 * make room: one user asking in a loop is refused, nobody else notices. */
#include "token.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct bk_token {
	uint8_t bytes[GVMMEM_TOKEN_BYTES];
	pid_t pid;
	uid_t uid;
	uint64_t expires_ms;
	bool live;
};

static struct bk_token tokens[BK_TOKENS_MAX];

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

int bk_token_issue(pid_t pid, uid_t uid, uint8_t out[GVMMEM_TOKEN_BYTES])
{
	uint64_t now = now_ms();
	struct bk_token *slot = NULL;
	unsigned mine = 0;

	for (unsigned i = 0; i < BK_TOKENS_MAX; i++) {
		struct bk_token *t = &tokens[i];

		if (!t->live || t->expires_ms <= now) {
			if (!slot)
				slot = t;
		} else if (t->uid == uid) {
			mine++;
		}
	}
	if (mine >= BK_TOKENS_PER_UID)
		return -EDQUOT;
	if (!slot)
		return -EAGAIN;
	randombytes_buf(slot->bytes, sizeof(slot->bytes));
	slot->pid = pid;
	slot->uid = uid;
	slot->expires_ms = now + BK_TOKEN_TTL_MS;
	slot->live = true;
	memcpy(out, slot->bytes, GVMMEM_TOKEN_BYTES);
	return 0;
}

/* The thread that asked for the token belongs to the peer's process. */
static bool same_process(pid_t peer, pid_t thread)
{
	char path[64];

	if (peer == thread)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)peer, (int)thread);
	return access(path, F_OK) == 0;
}

int bk_token_redeem(const uint8_t *token, size_t len, pid_t peer_pid, uid_t peer_uid,
		    char *why, size_t n)
{
	uint64_t now = now_ms();
	struct bk_token *found = NULL;

	if (len != GVMMEM_TOKEN_BYTES) {
		snprintf(why, n, "token of %zu bytes, want %u", len, GVMMEM_TOKEN_BYTES);
		return -EACCES;
	}
	for (unsigned i = 0; i < BK_TOKENS_MAX; i++)
		if (tokens[i].live && sodium_memcmp(tokens[i].bytes, token, len) == 0)
			found = &tokens[i];
	if (!found) {
		snprintf(why, n, "unknown or already used token");
		return -EACCES;
	}
	found->live = false; /* once, whatever happens next */
	sodium_memzero(found->bytes, sizeof(found->bytes));
	if (found->expires_ms <= now) {
		snprintf(why, n, "token expired (valid %u ms)", BK_TOKEN_TTL_MS);
		return -EACCES;
	}
	if (found->uid != peer_uid) {
		snprintf(why, n, "token issued to uid %d, presented by uid %d", (int)found->uid,
			 (int)peer_uid);
		return -EACCES;
	}
	if (!same_process(peer_pid, found->pid)) {
		snprintf(why, n, "token issued to pid %d, presented by pid %d", (int)found->pid,
			 (int)peer_pid);
		return -EACCES;
	}
	return 0;
}
