/* sandbox.h: the broker's seccomp allowlist (sandbox.c). */
#ifndef BK_SANDBOX_H
#define BK_SANDBOX_H

#include <stddef.h>

/* Loads the filter into every thread of this process: 0 or -errno (why
 * says what failed). */
int bk_sandbox_load(char *why, size_t n);
/* Writes the filter, human-readable (seccomp_export_pfc), to fd. */
int bk_sandbox_print(int fd);

#endif
