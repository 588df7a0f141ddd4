/* uffd.h: the userfaultfd ioctls the broker issues on a VM's uffd
 * (uffd.c). Thin and stateless: each takes the uffd and a range of the
 * client's addresses, and says what the kernel did. What a page is
 * (resident, dirty, on its way) lives in region.c, which calls these. */
#ifndef BK_UFFD_H
#define BK_UFFD_H

#include <stdbool.h>
#include <stdint.h>

/* UFFDIO_API with features; without `optional` ones if the kernel refuses
 * them. *got: the features in force. 0 or -errno. */
int bk_uffd_api(int uffd, uint64_t features, uint64_t optional, uint64_t *got);
/* UFFDIO_REGISTER of [addr, addr+len) in mode; *ioctls: what the range
 * takes. 0 or -errno. */
int bk_uffd_register(int uffd, uint64_t addr, uint64_t len, uint64_t mode, uint64_t *ioctls);
/* UFFDIO_COPY of len bytes from src to dst (write-protected if wp), or
 * UFFDIO_CONTINUE of [dst, dst+len) (the pages are in the page cache
 * already). 0, or -errno with *done the bytes installed before the error
 * (-EEXIST: the page at dst + *done is mapped already; -EAGAIN: the mm is
 * changing). Both wake the threads waiting in the range. */
int bk_uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, bool wp, uint64_t *done);
int bk_uffd_continue(int uffd, uint64_t dst, uint64_t len, bool wp, uint64_t *done);
/* UFFDIO_WAKE: the threads waiting in the range fault again. */
void bk_uffd_wake(int uffd, uint64_t addr, uint64_t len);
/* UFFDIO_WRITEPROTECT on or off; off also wakes the writers. 0 or -errno. */
int bk_uffd_protect(int uffd, uint64_t addr, uint64_t len, bool on);
/* UFFDIO_POISON: accesses get SIGBUS (BUS_MCEERR_AR). 0 or -errno. */
int bk_uffd_poison(int uffd, uint64_t addr, uint64_t len);

#endif
