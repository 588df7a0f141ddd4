/* sandbox.h: the broker's confinement (sandbox.c): capabilities dropped,
 * Landlock where the kernel has it, then the seccomp allowlist. */
#ifndef BK_SANDBOX_H
#define BK_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Drops every capability and applies Landlock to this thread and the
 * threads it starts afterwards: no file opened by path but reading beneath
 * the directory open as dirfd (named dir; -1: none), and making, writing
 * and removing files directly in the one open as state_dirfd (the page
 * seals' files, seal.h; -1: none), TCP connect only to ports (the
 * donors'), no signal outside this process. Call before starting threads;
 * the seccomp filter then allows read-only openat(2) relative to dirfd,
 * and openat(2) and unlinkat(2) relative to state_dirfd. 0, with what in
 * force written into what; or -errno with why set. */
int bk_sandbox_confine(const uint16_t *ports, unsigned nports, int dirfd, const char *dir,
		       int state_dirfd, char *what, size_t wn, char *why, size_t n);
/* Whether a TCP connection to port may be made (Landlock). */
bool bk_sandbox_port_allowed(uint16_t port);
/* Loads the seccomp filter into every thread of this process: 0 or
 * -errno (why says what failed). */
int bk_sandbox_load(char *why, size_t n);
/* Writes the filter, human-readable (seccomp_export_pfc), to fd. */
int bk_sandbox_print(int fd);

#endif
