/* names.h: the one set of rules for every name gvmmem takes from outside:
 * VM and region names (display labels, never keys), host ids, and the
 * donor namespace names built from a host id and a VM incarnation. The
 * broker, libgvmmem, the QEMU hook and the donor all check with these. */
#ifndef GVM_NAMES_H
#define GVM_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gvm_proto.h"

/* NULL when name is a valid label of at most max bytes (letters, digits
 * and . _ - + : @), else why not, in words ("is longer than 63 bytes"). */
const char *gvm_label_invalid(const char *name, size_t max);
/* Copies src (len bytes) into dst (n bytes, NUL-terminated), every byte a
 * label may not hold replaced by '_': what the QEMU hook does with names
 * it finds on QEMU's command line. */
void gvm_label_sanitize(char *dst, size_t n, const char *src, size_t len);

/* NULL when id is a valid host id: 1..GVM_HOST_ID_MAX_BYTES of a-z 0-9 -. */
const char *gvm_host_id_invalid(const char *id);

/* "<host>.<incarnation in hex>.<region>", the namespace of one region of
 * one VM incarnation on the donors. 0, or -ENAMETOOLONG. */
int gvm_ns_name(char *out, size_t n, const char *host,
		const uint8_t incarnation[GVM_INCARNATION_BYTES], unsigned region);
/* Whether namespace ns belongs to host: it starts with "<host>.". */
bool gvm_ns_owned_by(const char *ns, const char *host);
/* The host a namespace name belongs to (what precedes its first '.') into
 * host (GVM_HOST_ID_MAX_BYTES + 1 bytes): 0, or -EINVAL if it names none. */
int gvm_ns_host(const char *ns, char host[GVM_HOST_ID_MAX_BYTES + 1]);

#endif
