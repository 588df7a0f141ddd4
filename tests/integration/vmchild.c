/* vmchild.c: the tests' VM (vmchild.h). The child attaches through
 * libgvmmem and remembers which pattern round last wrote each page; the
 * parent sends it fixed-size orders on one pipe and reads fixed-size
 * answers on another, and asks the broker (procs.c) for counters meanwhile. */
#include "vmchild.h"

#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gvmmem.h"
#include "pattern.h"
#include "procs.h"

#define PAGES(bytes) ((bytes) / GVM_PAGE_SIZE)

/* One order on the pipe. */
struct vm_cmd {
	char op;
	uint64_t first, count; /* pages, for GVMT_VM_WRITE */
};

static sigjmp_buf bus_jump;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jump, 1);
}

/* Every page against what was last written there (gen[p]: the pattern's
 * seed; 0: never written, so all zero). */
static struct gvmt_vm_result vm_check(const uint8_t *mem, const uint16_t *gen, size_t npages)
{
	struct sigaction sa = {.sa_handler = on_sigbus, .sa_flags = SA_NODEFER};
	static uint8_t want[GVM_PAGE_SIZE];
	struct gvmt_vm_result r = {0};

	sigaction(SIGBUS, &sa, NULL);
	for (volatile size_t p = 0; p < npages; p++) {
		if (sigsetjmp(bus_jump, 1)) {
			r.bus++;
			continue;
		}
		if (gen[p])
			gvm_pattern_fill_page(want, gen[p], p, GVMT_VM_ZERO_EVERY);
		else
			memset(want, 0, sizeof(want));
		r.wrong += memcmp(mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
	}
	return r;
}

/* The child: attaches, then obeys orders until GVMT_VM_QUIT. */
static void vm_main(const struct gvmt_vm *vm, const char *name, size_t size,
		    const struct gvmt_vm_user *user)
{
	struct gvm_region reg = {"ram", NULL, size, -1, 0, 0};
	size_t npages = PAGES(size);
	uint16_t *gen = calloc(npages, sizeof(*gen));
	uint16_t round = 0;
	struct gvm_session *s;
	uint8_t *mem;
	int err;

	if (user->have)
		gvmt_become(user->uid, user->gid, user->gvm_gid);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	CHILD_CHECK(gen, 70, "out of memory");
	reg.memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	CHILD_CHECK(reg.memfd >= 0 && !ftruncate(reg.memfd, (off_t)size), 71, "memfd");
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, reg.memfd, 0);
	CHILD_CHECK(mem != MAP_FAILED, 72, "mmap");
	reg.host_addr = mem;
	s = gvm_attach(vm->sock, name, &reg, 1, &err);
	CHILD_CHECK(s, 73, "attach %s: %s", name, gvm_strerror(err));
	for (;;) {
		struct gvmt_vm_result r = {0};
		struct vm_cmd c;

		CHILD_CHECK(read(vm->cmd[0], &c, sizeof(c)) == sizeof(c), 74, "%s: no order", name);
		if (c.op == GVMT_VM_QUIT) {
			gvm_detach(s);
			_exit(0);
		}
		if (c.op == GVMT_VM_WRITE) {
			round++;
			for (uint64_t p = c.first; p < c.first + c.count && p < npages; p++) {
				gvm_pattern_fill_page(mem + p * GVM_PAGE_SIZE, round, p,
						      GVMT_VM_ZERO_EVERY);
				gen[p] = round;
			}
		} else {
			r = vm_check(mem, gen, npages);
		}
		CHILD_CHECK(write(vm->res[1], &r, sizeof(r)) == sizeof(r), 75, "%s: answer", name);
	}
}

void gvmt_vm_start(struct gvmt_vm *vm, const char *sock, const char *name, size_t size,
		   const struct gvmt_vm_user *user)
{
	snprintf(vm->sock, sizeof(vm->sock), "%s", sock);
	assert_int_equal(pipe(vm->cmd), 0);
	assert_int_equal(pipe(vm->res), 0);
	vm->pid = fork();
	assert_true(vm->pid >= 0);
	if (!vm->pid)
		vm_main(vm, name, size, user);
}

/* Reaps the VM and closes its pipes: its exit status, or 128+signal. */
static int vm_wait(struct gvmt_vm *vm)
{
	int status;

	assert_int_equal(waitpid(vm->pid, &status, 0), vm->pid);
	vm->pid = 0;
	for (int i = 0; i < 2; i++) {
		close(vm->cmd[i]);
		close(vm->res[i]);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct gvmt_vm_result gvmt_vm_do(struct gvmt_vm *vm, enum gvmt_vm_op op, uint64_t first,
				 uint64_t count, uint64_t *max_conns)
{
	struct vm_cmd c = {(char)op, first, count};
	struct pollfd pf = {vm->res[0], POLLIN, 0};
	struct gvmt_vm_result r;
	int step = max_conns ? 50 : GVMT_VM_OP_MS;

	assert_int_equal(write(vm->cmd[1], &c, sizeof(c)), sizeof(c));
	for (int waited = 0; poll(&pf, 1, step) != 1; waited += step) {
		uint64_t conns = max_conns ? gvmt_broker_stat(vm->sock, "donor_connections") : 0;

		if (waited + step >= GVMT_VM_OP_MS)
			fail_msg("the VM did not finish '%c' in %d s", op, GVMT_VM_OP_MS / 1000);
		if (max_conns && conns != UINT64_MAX && conns > *max_conns)
			*max_conns = conns;
	}
	if (read(vm->res[0], &r, sizeof(r)) != sizeof(r)) {
		int rc = vm_wait(vm);

		fail_msg("the VM ended during '%c': status %d (see stderr)", op, rc);
	}
	return r;
}

void gvmt_vm_write(struct gvmt_vm *vm, uint64_t first, uint64_t count)
{
	gvmt_vm_do(vm, GVMT_VM_WRITE, first, count, NULL);
}

void gvmt_vm_verify(struct gvmt_vm *vm, const char *when)
{
	struct gvmt_vm_result r = gvmt_vm_do(vm, GVMT_VM_VERIFY, 0, 0, NULL);

	if (r.wrong || r.bus)
		fail_msg("%s: %llu pages wrong, %llu gave SIGBUS", when,
			 (unsigned long long)r.wrong, (unsigned long long)r.bus);
}

void gvmt_vm_quit(struct gvmt_vm *vm)
{
	struct vm_cmd c = {GVMT_VM_QUIT, 0, 0};

	assert_int_equal(write(vm->cmd[1], &c, sizeof(c)), sizeof(c));
	assert_int_equal(vm_wait(vm), 0);
}

void gvmt_vm_kill(struct gvmt_vm *vm)
{
	if (vm->pid > 0) {
		kill(vm->pid, SIGKILL);
		vm_wait(vm);
	}
}
