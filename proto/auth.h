/* auth.h: mutual HMAC-SHA256 challenge/response on the cluster key, used by
 * memserver/server.c (donor side) and every donor client. The donor sends a
 * nonce; the client answers with its nonce, the host id it speaks for and
 * a MAC over all three; the donor answers with its own MAC, so each side
 * proves it holds the key and both agree on the host the connection is for
 * (the donor lets it touch that host's namespaces only). */
#ifndef GVM_AUTH_H
#define GVM_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

void gvm_auth_nonce(uint8_t nonce[GVM_AUTH_NONCE_BYTES]);
/* MAC the client sends:
 * HMAC(key, "gvm-auth-client-v2" | donor | client | host). */
void gvm_auth_client_mac(const struct gvm_key *key,
			 const uint8_t donor_nonce[GVM_AUTH_NONCE_BYTES],
			 const uint8_t client_nonce[GVM_AUTH_NONCE_BYTES], const char *host,
			 uint8_t mac[GVM_AUTH_MAC_BYTES]);
/* MAC the donor answers:
 * HMAC(key, "gvm-auth-donor-v2" | client | donor | host). */
void gvm_auth_donor_mac(const struct gvm_key *key,
			const uint8_t donor_nonce[GVM_AUTH_NONCE_BYTES],
			const uint8_t client_nonce[GVM_AUTH_NONCE_BYTES], const char *host,
			uint8_t mac[GVM_AUTH_MAC_BYTES]);
/* Constant-time comparison. */
bool gvm_auth_mac_equal(const uint8_t a[GVM_AUTH_MAC_BYTES],
			const uint8_t b[GVM_AUTH_MAC_BYTES]);
/* 0, or -EIO if libsodium cannot start. Call once before the above. */
int gvm_auth_init(void);

#endif
