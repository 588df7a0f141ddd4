/* identity.h: who this broker is, to the donors and to its VMs (DESIGN.md,
 * Cluster safety). A stable host id names the host in every donor AUTH and
 * starts every namespace it owns; each VM attachment gets a random
 * incarnation and a secret that lets only the same uid re-attach it, even
 * to a restarted broker. identity.c keeps both in the state directory. */
#ifndef BK_IDENTITY_H
#define BK_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "gvm_proto.h"

#define BK_DEFAULT_STATE_DIR "/var/lib/gvm"
#define BK_HOST_ID_FILE "host-id"   /* the host id and a newline, mode 0644 */
#define BK_HOST_KEY_FILE "host.key" /* 32 random bytes, mode 0600 */
#define BK_HOST_KEY_BYTES 32u

struct bk_identity {
	char host_id[GVM_HOST_ID_MAX_BYTES + 1];
	struct gvm_key host_key; /* keys the incarnation secrets; never leaves the host */
};

/* Reads the host id and key from state_dir, making the folder (0700) and
 * whatever is missing on first start. host_id, when not NULL, is used
 * instead of the file's (and not written). 0, or -errno with why set. */
int bk_identity_load(struct bk_identity *id, const char *state_dir, const char *host_id,
		     char *why, size_t n);
/* A new incarnation: random, never seen before. */
void bk_identity_new(uint8_t incarnation[GVM_INCARNATION_BYTES]);
/* The secret that proves incarnation for uid on this host. */
void bk_identity_secret(const struct bk_identity *id, uid_t uid,
			const uint8_t incarnation[GVM_INCARNATION_BYTES],
			uint8_t secret[GVM_INCARNATION_SECRET_BYTES]);
/* Whether secret proves incarnation for uid on this host (constant time). */
bool bk_identity_check(const struct bk_identity *id, uid_t uid, const uint8_t *incarnation,
		       size_t incarnation_len, const uint8_t *secret, size_t secret_len);
void bk_identity_wipe(struct bk_identity *id);

#endif
