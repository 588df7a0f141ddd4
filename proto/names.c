/* names.c: the name rules of names.h. Labels are what people see in logs
 * and `gvmctl`: a plain character set, so no name can forge a log line or
 * a path. Namespaces are derived, never chosen by a client. */
#include "names.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("._-+:@", c));
}

const char *gvm_label_invalid(const char *name, size_t max)
{
	static char too_long[48];
	size_t len;

	if (!name || !*name)
		return "is empty";
	len = strnlen(name, max + 1);
	if (len > max) {
		snprintf(too_long, sizeof(too_long), "is longer than %zu bytes", max);
		return too_long;
	}
	for (size_t i = 0; i < len; i++)
		if (!label_char(name[i]))
			return "holds a character other than letters, digits and . _ - + : @";
	return NULL;
}

void gvm_label_sanitize(char *dst, size_t n, const char *src, size_t len)
{
	size_t j = 0;

	for (size_t i = 0; i < len && j + 1 < n; i++)
		dst[j++] = label_char(src[i]) ? src[i] : '_';
	dst[j] = '\0';
}

_Static_assert(GVM_HOST_ID_MAX_BYTES == 16, "the message below says 16");

const char *gvm_host_id_invalid(const char *id)
{
	size_t len = id ? strnlen(id, GVM_HOST_ID_MAX_BYTES + 1) : 0;

	if (!len)
		return "is empty";
	if (len > GVM_HOST_ID_MAX_BYTES)
		return "is longer than 16 bytes";
	for (size_t i = 0; i < len; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') ||
		      id[i] == '-'))
			return "holds a character other than a-z, 0-9 and -";
	return NULL;
}

int gvm_ns_name(char *out, size_t n, const char *host,
		const uint8_t incarnation[GVM_INCARNATION_BYTES], unsigned region)
{
	char hex[2 * GVM_INCARNATION_BYTES + 1];
	int len;

	for (unsigned i = 0; i < GVM_INCARNATION_BYTES; i++)
		snprintf(hex + 2 * i, 3, "%02x", incarnation[i]);
	len = snprintf(out, n, "%s.%s.%u", host, hex, region);
	return len < 0 || (size_t)len >= n || len > (int)GVM_NS_NAME_MAX_BYTES ? -ENAMETOOLONG : 0;
}

bool gvm_ns_owned_by(const char *ns, const char *host)
{
	size_t len = strlen(host);

	return len && !strncmp(ns, host, len) && ns[len] == '.';
}

int gvm_ns_host(const char *ns, char host[GVM_HOST_ID_MAX_BYTES + 1])
{
	const char *dot = strchr(ns, '.');
	size_t len = dot ? (size_t)(dot - ns) : 0;

	if (!len || len > GVM_HOST_ID_MAX_BYTES)
		return -EINVAL;
	memcpy(host, ns, len);
	host[len] = '\0';
	return gvm_host_id_invalid(host) ? -EINVAL : 0;
}
