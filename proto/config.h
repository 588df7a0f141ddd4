/* config.h: parsing shared by every command line: sizes ("4G"), donor
 * addresses ("host:port", "[::1]:7700") and the cluster key file; and the
 * open-file limit both daemons raise at start. */
#ifndef GVM_CONFIG_H
#define GVM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gvm_proto.h"

struct gvm_key {
	uint8_t bytes[GVM_KEY_MAX_BYTES];
	size_t len;
};

/* "4096", "64K", "512M", "4G", "1T" (also "4GiB", "4GB"): binary units. */
int gvm_parse_size(const char *s, uint64_t *bytes);

/* "HOST:PORT", "[V6]:PORT", or "HOST" (default_port). Resolves with
 * getaddrinfo; writes the first address. 0 or -EINVAL / -ENOENT. */
int gvm_parse_hostport(const char *s, const char *default_port,
		       struct sockaddr_storage *ss, socklen_t *len);

/* "1.2.3.4:7700" / "[::1]:7700" for logs. */
void gvm_format_addr(const struct sockaddr *sa, char *buf, size_t n);

/* Reads the raw key bytes. Refuses a file that group or others may read, or
 * one shorter than GVM_KEY_MIN_BYTES. On error *why explains it. */
int gvm_key_load(const char *path, struct gvm_key *key, char *why, size_t n);

/* Raises the soft RLIMIT_NOFILE to the hard limit when it is below want.
 * *was and *now (may be NULL) get the soft limit before and after. */
void gvm_raise_fd_limit(uint64_t want, uint64_t *was, uint64_t *now);

/* A yes/no environment variable: unset, empty, 0, no and false are no;
 * 1, yes and true are yes; anything else is yes, with a warning saying so. */
bool gvm_env_flag(const char *name);

/* Prints "PROG: <fmt with arg>" and "Try 'PROG --help'." to stderr;
 * returns 2, the exit status of a command-line mistake. */
int gvm_usage_error(const char *prog, const char *fmt, const char *arg)
	__attribute__((format(printf, 2, 0)));

#endif
