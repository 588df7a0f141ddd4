/* uffd_compat.h: the userfaultfd interface this broker uses that Debian 12's
 * kernel headers (6.1) do not define yet. UFFDIO_POISON (Linux 6.6) marks a
 * missing page poisoned: the faulting thread, and every later access, gets
 * SIGBUS (BUS_MCEERR_AR), as for a hardware memory error. UFFDIO_CONTINUE's
 * WP mode (Linux 6.4) maps a page write-protected. Values from the
 * kernel's uapi/linux/userfaultfd.h. */
#ifndef BK_UFFD_COMPAT_H
#define BK_UFFD_COMPAT_H

#include <linux/types.h>
#include <linux/userfaultfd.h>

#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 updated; /* bytes poisoned, or -errno */
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif
/* UFFDIO_CONTINUE installing the page write-protected (Linux 6.4). */
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

#endif
