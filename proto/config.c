/* config.c: the command-line values every gvmmem program shares (sizes,
 * addresses, the cluster key), and the open-file limit both daemons raise.
 * Used by memserver/, broker/ and tools. */
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

int gvm_parse_size(const char *s, uint64_t *bytes)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift && (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0))
		end += strlen(end);
	if (*end != '\0')
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*bytes = (uint64_t)v << shift;
	return 0;
}

int gvm_parse_hostport(const char *s, const char *default_port,
		       struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *port = default_port;
	const char *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	size_t hlen;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close)
			return -EINVAL;
		hlen = (size_t)(close - s - 1);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return -EINVAL;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			return -EINVAL; /* bare IPv6 needs brackets */
		hlen = colon ? (size_t)(colon - s) : strlen(s);
		if (colon)
			port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host) || !port || !*port)
		return -EINVAL;
	for (const char *p = port; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	if (atoi(port) > 65535)
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -ENOENT;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

void gvm_format_addr(const struct sockaddr *sa, char *buf, size_t n)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, n, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, n, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, n, "(family %d)", sa->sa_family);
	}
}

int gvm_key_load(const char *path, struct gvm_key *key, char *why, size_t n)
{
	uint8_t buf[GVM_KEY_MAX_BYTES + 1];
	struct stat st;
	ssize_t got;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		snprintf(why, n, "key file %s: %s (make one with: head -c 32 /dev/urandom > %s; chmod 600 %s)",
			 path, strerror(errno), path, path);
		return err;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, n, "key file %s: not a regular file", path);
		err = -EINVAL;
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(why, n, "key file %s: mode %04o lets group or others read it; chmod 600 %s",
			 path, (unsigned)(st.st_mode & 07777), path);
		err = -EPERM;
		goto out;
	}
	got = read(fd, buf, sizeof(buf));
	if (got < 0) {
		err = -errno;
		snprintf(why, n, "key file %s: %s", path, strerror(errno));
		goto out;
	}
	if ((size_t)got < GVM_KEY_MIN_BYTES) {
		snprintf(why, n, "key file %s: %zd bytes, need at least %u (head -c 32 /dev/urandom > %s)",
			 path, got, GVM_KEY_MIN_BYTES, path);
		err = -EINVAL;
		goto out;
	}
	if ((size_t)got > GVM_KEY_MAX_BYTES) {
		snprintf(why, n, "key file %s: larger than %u bytes", path, GVM_KEY_MAX_BYTES);
		err = -EFBIG;
		goto out;
	}
	memcpy(key->bytes, buf, (size_t)got);
	key->len = (size_t)got;
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return err;
}

int gvm_usage_error(const char *prog, const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry '%s --help'.\n", prog);
	return 2;
}

void gvm_raise_fd_limit(uint64_t want, uint64_t *was, uint64_t *now)
{
	struct rlimit rl;
	uint64_t before = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		before = rl.rlim_cur;
		if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
				rl.rlim_cur = before;
		}
	}
	if (was)
		*was = before;
	if (now)
		*now = before ? rl.rlim_cur : 0;
}

bool gvm_env_flag(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false"))
		return false;
	if (strcmp(v, "1") && strcmp(v, "yes") && strcmp(v, "true"))
		gvm_warn("%s=%s is not 1 or 0; taken as 1", name, v);
	return true;
}
