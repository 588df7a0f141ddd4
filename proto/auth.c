/* auth.c: the cluster-key handshake's cryptography, all of it libsodium's
 * HMAC-SHA256 and random bytes (see auth.h for the exchange). */
#include "auth.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

int gvm_auth_init(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

void gvm_auth_nonce(uint8_t nonce[GVM_AUTH_NONCE_BYTES])
{
	randombytes_buf(nonce, GVM_AUTH_NONCE_BYTES);
}

/* The host id goes last, after the fixed-size nonces, so no two inputs
 * concatenate alike. */
static void auth_mac(const struct gvm_key *key, const char *label,
		     const uint8_t *first, const uint8_t *second, const char *host, uint8_t *mac)
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, key->bytes, key->len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label));
	crypto_auth_hmacsha256_update(&st, first, GVM_AUTH_NONCE_BYTES);
	crypto_auth_hmacsha256_update(&st, second, GVM_AUTH_NONCE_BYTES);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)host, strlen(host));
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
}

void gvm_auth_client_mac(const struct gvm_key *key,
			 const uint8_t donor_nonce[GVM_AUTH_NONCE_BYTES],
			 const uint8_t client_nonce[GVM_AUTH_NONCE_BYTES], const char *host,
			 uint8_t mac[GVM_AUTH_MAC_BYTES])
{
	auth_mac(key, "gvm-auth-client-v2", donor_nonce, client_nonce, host, mac);
}

void gvm_auth_donor_mac(const struct gvm_key *key,
			const uint8_t donor_nonce[GVM_AUTH_NONCE_BYTES],
			const uint8_t client_nonce[GVM_AUTH_NONCE_BYTES], const char *host,
			uint8_t mac[GVM_AUTH_MAC_BYTES])
{
	auth_mac(key, "gvm-auth-donor-v2", client_nonce, donor_nonce, host, mac);
}

bool gvm_auth_mac_equal(const uint8_t a[GVM_AUTH_MAC_BYTES],
			const uint8_t b[GVM_AUTH_MAC_BYTES])
{
	return sodium_memcmp(a, b, GVM_AUTH_MAC_BYTES) == 0;
}
