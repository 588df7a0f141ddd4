/* vmchild.h: the tests' VM: a forked libgvmmem client, unprivileged where
 * the test user can be had (procs.h), that attaches one memfd region to a
 * broker and takes orders over a pipe: write pages with a pattern
 * (bench/pattern.h), check every page against what was last written there,
 * quit. The parent's side fails the running cmocka test. */
#ifndef GVMT_VMCHILD_H
#define GVMT_VMCHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GVMT_VM_OP_MS	   180000 /* one fill or verify, under ASan */
#define GVMT_VM_ZERO_EVERY 9u	  /* every 9th page of the pattern is all zero */

enum gvmt_vm_op { GVMT_VM_WRITE = 'w', GVMT_VM_VERIFY = 'v', GVMT_VM_QUIT = 'q' };

/* Who the VM runs as: the test user (gvmt_test_user) if have, else the
 * test's own user. */
struct gvmt_vm_user {
	bool have;
	uid_t uid;
	gid_t gid, gvm_gid;
};

struct gvmt_vm {
	pid_t pid; /* 0: none running */
	int cmd[2], res[2];
	char sock[512]; /* the broker it attached to */
};

/* What a GVMT_VM_VERIFY found. */
struct gvmt_vm_result {
	uint64_t wrong, bus; /* pages that did not match, that raised SIGBUS */
};

/* Forks the VM: it attaches size bytes named name to the broker at sock,
 * as user. */
void gvmt_vm_start(struct gvmt_vm *vm, const char *sock, const char *name, size_t size,
		   const struct gvmt_vm_user *user);
/* Has the VM do op (GVMT_VM_WRITE: pages first..first+count) and waits for
 * its answer; meanwhile, if max_conns is not NULL, keeps there the most
 * donor connections the broker had. */
struct gvmt_vm_result gvmt_vm_do(struct gvmt_vm *vm, enum gvmt_vm_op op, uint64_t first,
				 uint64_t count, uint64_t *max_conns);
void gvmt_vm_write(struct gvmt_vm *vm, uint64_t first, uint64_t count);
/* Every page reads back what was last written to it; when says at which
 * point of the test, if not. */
void gvmt_vm_verify(struct gvmt_vm *vm, const char *when);
/* The VM detaches and exits 0. */
void gvmt_vm_quit(struct gvmt_vm *vm);
/* For a teardown: kills the VM if it runs. */
void gvmt_vm_kill(struct gvmt_vm *vm);

#endif
