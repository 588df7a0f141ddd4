/* test_pinned.c: VMs whose RAM a device pins (VFIO, io_uring fixed
 * buffers), attached with GVM_ATTACH_PINNED or GVM_PINNED=1, to a real
 * broker under a budget with two real donors. A pinned VM is all in memory
 * right after it attaches; memory pressure from another VM evicts that
 * one's pages and never the pinned VM's, so pages io_uring has pinned as
 * fixed buffers stay the VM's own and what the kernel writes into them is
 * what the VM reads; a pinned VM the budget has no room for (beside the
 * pinned ones there, or under its own limit) is refused with -ENOSPC and
 * a reason, and fits once room is made; a broker restarted under a
 * pinned VM takes all of its memory over, pinned; `gvmctl stats`
 * pinned_pages says what pinned VMs hold. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gvmmem.h"
#include "pattern.h"
#include "cluster.h"
#include "procs.h"
#include "vmchild.h"

#define MIB (1024u * 1024u)
#define BUDGET_MIB 32u
#define PINNED_MIB 24u /* most of the budget: without the rule, eviction would pick it */
#define PRESSURE_MIB 64u
#define RING_MIB 4u    /* io_uring fixed buffer: the first pages of the pinned VM */
#define SEED_VM 11u
#define SEED_FILE 29u

static char key_path[512], file_path[512];
static struct gvmt_cluster cl;
static const char *const broker_args[] = { "--budget", "32M", NULL }; /* BUDGET_MIB */
static struct gvmt_vm_user user;

/* This test's broker (--budget BUDGET_MIB) over two donors. */
static void cluster_start(void)
{
	static int serial;
	char name[32];

	snprintf(name, sizeof(name), "pinned-%d", ++serial);
	gvmt_cluster_start(&cl, name, key_path, 2, broker_args);
}

static void cluster_stop(void)
{
	gvmt_cluster_stop_clean(&cl);
}

/* Whether [0, size) of fd is all data: no page punched out. */
static bool memfd_whole(int fd, size_t size)
{
	return lseek(fd, 0, SEEK_HOLE) >= (off_t)size;
}

/* Reads all of file into buf through io_uring, buf being registered as a
 * fixed buffer: the kernel writes the pages it pinned at registration. */
static bool read_fixed(struct io_uring *ring, int fd, uint8_t *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		struct io_uring_cqe *cqe;
		int res;

		if (!sqe)
			return false;
		io_uring_prep_read_fixed(sqe, fd, buf + done, (unsigned)(len - done), done, 0);
		if (io_uring_submit(ring) != 1 || io_uring_wait_cqe(ring, &cqe))
			return false;
		res = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		if (res <= 0)
			return false;
		done += (size_t)res;
	}
	return true;
}

/* In a child: as the test user, maps a memfd of PINNED_MIB, attaches it
 * pinned as name and writes the VM's pattern over it. */
static struct gvm_session *pinned_start(const char *name, int *fd, uint8_t **mem)
{
	size_t size = (size_t)PINNED_MIB * MIB;
	struct gvm_region r = { "ram", NULL, size, -1, 0, 0 };
	struct gvm_session *s;
	int err;

	if (user.have) {
		gvmt_become(user.uid, user.gid, user.gvm_gid);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	}
	*fd = memfd_create("guest-ram", MFD_CLOEXEC);
	CHILD_CHECK(*fd >= 0 && !ftruncate(*fd, (off_t)size), 61, "memfd");
	*mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	CHILD_CHECK(*mem != MAP_FAILED, 62, "mmap");
	r.host_addr = *mem;
	r.memfd = *fd;
	s = gvm_attach_flags(cl.sock, name, &r, 1, GVM_ATTACH_PINNED, &err);
	CHILD_CHECK(s, 63, "attach: %s", gvm_strerror(err));
	for (size_t p = 0; p < size / GVM_PAGE_SIZE; p++)
		gvm_pattern_fill_page(*mem + p * GVM_PAGE_SIZE, SEED_VM, p, GVMT_VM_ZERO_EVERY);
	return s;
}

/* In a child: every page of the pinned VM is what was written there (the
 * file's pattern in its first file_pages, its own elsewhere), and none
 * was ever punched out of its memfd; then it detaches and exits 0. */
static void pinned_check(struct gvm_session *s, int fd, const uint8_t *mem, size_t file_pages,
			 const char *when)
{
	size_t size = (size_t)PINNED_MIB * MIB;
	uint8_t want[GVM_PAGE_SIZE];
	uint64_t bad = 0;

	for (size_t p = 0; p < size / GVM_PAGE_SIZE; p++) {
		gvm_pattern_fill_page(want, p < file_pages ? SEED_FILE : SEED_VM, p,
				      GVMT_VM_ZERO_EVERY);
		bad += memcmp(mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
	}
	CHILD_CHECK(bad == 0, 68, "%llu pages differ from what was written there %s",
		    (unsigned long long)bad, when);
	CHILD_CHECK(memfd_whole(fd, size), 69, "a pinned page was punched out of the memfd");
	gvm_detach(s);
	_exit(0);
}

/* The pinned VM: attaches pinned, writes its pattern, pins its first
 * RING_MIB as an io_uring fixed buffer, says 'r' on res and waits for a
 * byte on cmd (the other VM has pressed on the budget meanwhile); then
 * reads the file into the fixed buffer through io_uring and checks every
 * page through its own mapping. */
static void pinned_vm(int cmd, int res)
{
	struct rlimit lock;
	struct io_uring ring;
	struct iovec iov;
	struct gvm_session *s;
	uint8_t *mem, go;
	int err, fd, file;

	/* io_uring counts fixed buffers against RLIMIT_MEMLOCK (often 8 MiB) */
	CHILD_CHECK(!getrlimit(RLIMIT_MEMLOCK, &lock) && lock.rlim_max >= 2 * RING_MIB * MIB, 60,
		    "RLIMIT_MEMLOCK is below %u MiB", 2 * RING_MIB);
	lock.rlim_cur = lock.rlim_max;
	setrlimit(RLIMIT_MEMLOCK, &lock);
	s = pinned_start("pinned", &fd, &mem);
	CHILD_CHECK(!io_uring_queue_init(4, &ring, 0), 64, "io_uring_queue_init");
	iov = (struct iovec){ mem, (size_t)RING_MIB * MIB };
	err = io_uring_register_buffers(&ring, &iov, 1);
	CHILD_CHECK(!err, 65, "io_uring_register_buffers: %s", strerror(-err));
	CHILD_CHECK(write(res, "r", 1) == 1 && read(cmd, &go, 1) == 1, 66, "pipe");
	file = open(file_path, O_RDONLY | O_CLOEXEC);
	CHILD_CHECK(file >= 0 && read_fixed(&ring, file, mem, iov.iov_len), 67, "read_fixed");
	close(file);
	io_uring_unregister_buffers(&ring);
	io_uring_queue_exit(&ring);
	pinned_check(s, fd, mem, iov.iov_len / GVM_PAGE_SIZE,
		     "(the fixed buffer's pages left the VM)");
}

/* A pinned VM that writes its pattern, says 'r', waits for a byte on
 * cmd while the parent restarts the broker, then checks every page. */
static void pinned_vm_across_restarts(int cmd, int res)
{
	struct gvm_session *s;
	uint8_t *mem, go;
	int fd;

	s = pinned_start("pinned-restart", &fd, &mem);
	CHILD_CHECK(write(res, "r", 1) == 1 && read(cmd, &go, 1) == 1, 66, "pipe");
	pinned_check(s, fd, mem, 0, "after the restarts");
}

static int wait_exit(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A pinned VM in a child: vm(cmd, res) runs there, with the ends of two
 * pipes; the parent keeps the others (go, to let it on; res) and waits for
 * its 'r'. */
struct pinned_child {
	pid_t pid;
	int go, res;
};

static struct pinned_child pinned_child_start(void (*vm)(int cmd, int res))
{
	struct pinned_child ch;
	int cmd[2], res[2];
	uint8_t c;

	assert_true(!pipe(cmd) && !pipe(res));
	ch.pid = fork();
	assert_true(ch.pid >= 0);
	if (ch.pid == 0) {
		close(cmd[1]);
		close(res[0]);
		vm(cmd[0], res[1]);
	}
	close(cmd[0]);
	close(res[1]);
	ch.go = cmd[1];
	ch.res = res[0];
	assert_int_equal(read(ch.res, &c, 1), 1);
	return ch;
}

/* Lets the child go on; it must exit 0. */
static void pinned_child_end(struct pinned_child *ch)
{
	assert_int_equal(write(ch->go, "g", 1), 1);
	assert_int_equal(wait_exit(ch->pid), 0);
	close(ch->go);
	close(ch->res);
}

static void test_eviction_never_touches_a_pinned_vm_and_its_fixed_buffers_stay_coherent(
	void **state)
{
	size_t pinned_pages = (size_t)PINNED_MIB * MIB / GVM_PAGE_SIZE;
	uint8_t page[GVM_PAGE_SIZE];
	struct pinned_child ch;
	struct gvmt_vm other;
	int fd;

	(void)state;
	/* what io_uring reads into the fixed buffer */
	fd = open(file_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	for (size_t p = 0; p < (size_t)RING_MIB * MIB / GVM_PAGE_SIZE; p++) {
		gvm_pattern_fill_page(page, SEED_FILE, p, GVMT_VM_ZERO_EVERY);
		assert_int_equal(write(fd, page, sizeof(page)), sizeof(page));
	}
	close(fd);
	cluster_start();
	ch = pinned_child_start(pinned_vm);
	/* All of it in memory at attach, and counted. */
	assert_int_equal(gvmt_broker_stat(cl.sock, "pinned_pages"), pinned_pages);
	assert_true(gvmt_broker_stat(cl.sock, "resident_pages") >= pinned_pages);

	/* Another VM writes and reads back twice the budget: only its own
	 * pages can make room. */
	gvmt_vm_start(&other, cl.sock, "pressure", (size_t)PRESSURE_MIB * MIB, &user);
	gvmt_vm_write(&other, 0, (size_t)PRESSURE_MIB * MIB / GVM_PAGE_SIZE);
	gvmt_vm_verify(&other, "under the pinned VM");
	assert_true(gvmt_broker_stat(cl.sock, "evictions") > 0);
	assert_true(gvmt_broker_stat(cl.sock, "resident_pages") >= pinned_pages);

	pinned_child_end(&ch);
	assert_true(gvmt_broker_wait_stat(cl.sock, "pinned_pages", 0, 5000));
	gvmt_vm_quit(&other);
	cluster_stop();
}

/* A pinned VM across a broker stopped and then killed: each new broker
 * takes its memory over as resident and pinned, and presses it with
 * another VM's pages without evicting any of it. */
static void test_pinned_vm_survives_broker_restarts(void **state)
{
	size_t pinned_pages = (size_t)PINNED_MIB * MIB / GVM_PAGE_SIZE;
	int sigs[] = { SIGTERM, SIGKILL };
	struct pinned_child ch;
	struct gvmt_vm other;

	(void)state;
	cluster_start();
	ch = pinned_child_start(pinned_vm_across_restarts);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(gvmt_proc_stop(&cl.broker, sigs[i]),
				 sigs[i] == SIGKILL ? 128 + SIGKILL : 0);
		assert_true(gvmt_broker_start(&cl.broker, key_path, cl.sock,
					      (const char *[]){ cl.donor[0].addr, cl.donor[1].addr, NULL },
					      broker_args));
		assert_true(gvmt_broker_wait_stat(cl.sock, "vms", 1, 20000));
		assert_int_equal(gvmt_broker_stat(cl.sock, "pinned_pages"), pinned_pages);
		assert_true(gvmt_broker_wait_stat(cl.sock, "resident_pages", pinned_pages, 5000));
	}
	gvmt_vm_start(&other, cl.sock, "pressure", (size_t)PRESSURE_MIB * MIB, &user);
	gvmt_vm_write(&other, 0, (size_t)PRESSURE_MIB * MIB / GVM_PAGE_SIZE);
	gvmt_vm_verify(&other, "beside the re-attached pinned VM");
	assert_true(gvmt_broker_stat(cl.sock, "evictions") > 0);
	pinned_child_end(&ch);
	gvmt_vm_quit(&other);
	cluster_stop();
}

/* Attaches size bytes in this process (root), flags as given: the session,
 * or NULL with *err. */
struct local_vm {
	uint8_t *mem;
	size_t size;
	int fd;
	struct gvm_session *s;
};

static int local_attach(struct local_vm *v, const char *name, size_t size, unsigned flags)
{
	struct gvm_region r = { "ram", NULL, size, -1, 0, 0 };
	int err;

	v->size = size;
	v->fd = memfd_create("guest-ram", MFD_CLOEXEC);
	assert_true(v->fd >= 0 && !ftruncate(v->fd, (off_t)size));
	v->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	assert_true(v->mem != MAP_FAILED);
	r.host_addr = v->mem;
	r.memfd = v->fd;
	v->s = gvm_attach_flags(cl.sock, name, &r, 1, flags, &err);
	return v->s ? 0 : err;
}

static void local_detach(struct local_vm *v)
{
	gvm_detach(v->s);
	munmap(v->mem, v->size);
	close(v->fd);
}

static void test_pinned_vms_the_budget_cannot_hold_are_refused_with_a_reason(void **state)
{
	struct local_vm a, big, b, limited, envvm;
	const size_t page_count = (size_t)PINNED_MIB * MIB / GVM_PAGE_SIZE;

	(void)state;
	cluster_start();
	/* Larger than the whole budget. */
	assert_int_equal(local_attach(&big, "big", (size_t)(BUDGET_MIB + 8) * MIB,
				      GVM_ATTACH_PINNED), -ENOSPC);
	local_detach(&big);
	assert_non_null(strstr(gvm_strerror(-ENOSPC), "pinned VM"));
	assert_non_null(strstr(gvm_strerror(-ENOSPC), "--budget"));

	/* One fits, and is all in memory before the VM touches a page. */
	assert_int_equal(local_attach(&a, "a", (size_t)PINNED_MIB * MIB, GVM_ATTACH_PINNED), 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "pinned_pages"), page_count);
	assert_true(gvmt_broker_wait_stat(cl.sock, "resident_pages", page_count, 5000));
	assert_true(memfd_whole(a.fd, a.size));
	for (size_t p = 0; p < page_count; p += 97)
		assert_int_equal(a.mem[p * GVM_PAGE_SIZE + 5], 0);

	/* A second one does not fit beside it, though unpinned VMs could be
	 * evicted; an unpinned one still attaches. */
	assert_int_equal(local_attach(&b, "b", 16 * MIB, GVM_ATTACH_PINNED), -ENOSPC);
	local_detach(&b);
	assert_int_equal(local_attach(&b, "b", 16 * MIB, 0), 0);
	memset(b.mem, 0x5a, b.size);
	local_detach(&b);

	/* Its own limit below its RAM: refused too. */
	setenv("GVM_VM_LIMIT", "4M", 1);
	assert_int_equal(local_attach(&limited, "limited", 6 * MIB, GVM_ATTACH_PINNED), -ENOSPC);
	unsetenv("GVM_VM_LIMIT");
	local_detach(&limited);
	/* ... and a limit below its RAM cannot be set later. */
	assert_int_equal(gvm_set_limit(a.s, 4 * MIB), -ENOSPC);

	/* Room made: the second fits now, through GVM_PINNED=1. */
	local_detach(&a);
	assert_true(gvmt_broker_wait_stat(cl.sock, "pinned_pages", 0, 5000));
	setenv("GVM_PINNED", "1", 1);
	{
		struct gvm_region r = { "ram", NULL, 16 * MIB, -1, 0, 0 };
		int err;

		envvm.size = 16 * MIB;
		envvm.fd = memfd_create("guest-ram", MFD_CLOEXEC);
		assert_true(envvm.fd >= 0 && !ftruncate(envvm.fd, (off_t)envvm.size));
		envvm.mem = mmap(NULL, envvm.size, PROT_READ | PROT_WRITE, MAP_SHARED, envvm.fd, 0);
		assert_true(envvm.mem != MAP_FAILED);
		r.host_addr = envvm.mem;
		r.memfd = envvm.fd;
		envvm.s = gvm_attach(cl.sock, "env", &r, 1, &err);
		assert_non_null(envvm.s);
	}
	unsetenv("GVM_PINNED");
	assert_int_equal(gvmt_broker_stat(cl.sock, "pinned_pages"), 16 * MIB / GVM_PAGE_SIZE);
	/* filled at attach: nothing else is attached now */
	assert_true(gvmt_broker_wait_stat(cl.sock, "resident_pages", 16 * MIB / GVM_PAGE_SIZE,
					  5000));
	local_detach(&envvm);
	assert_int_equal(gvmt_broker_stat(cl.sock, "attach_errors"), 3);
	cluster_stop();
}

/* A broker that receives pages into VMs' memory (--install continue)
 * still installs a pinned VM's with UFFDIO_COPY, all of them at attach,
 * and its pages read back. */
static void test_pinned_vm_goes_in_with_copy_whatever_install_says(void **state)
{
	const size_t size = 8 * MIB, pages = size / GVM_PAGE_SIZE;
	struct local_vm v;

	(void)state;
	gvmt_cluster_start(&cl, "pinned-continue", key_path, 2,
			   (const char *[]){ "--budget", "32M", "--install", "continue", NULL });
	assert_int_equal(local_attach(&v, "pinned-continue", size, GVM_ATTACH_PINNED), 0);
	assert_true(gvmt_broker_wait_stat(cl.sock, "resident_pages", pages, 5000));
	assert_int_equal(gvmt_broker_stat(cl.sock, "install_continue"), 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "pinned_pages"), pages);
	for (size_t p = 0; p < pages; p++)
		gvm_pattern_fill_page(v.mem + p * GVM_PAGE_SIZE, SEED_VM, p, GVMT_VM_ZERO_EVERY);
	for (size_t p = 0; p < pages; p++) {
		uint8_t want[GVM_PAGE_SIZE];

		gvm_pattern_fill_page(want, SEED_VM, p, GVMT_VM_ZERO_EVERY);
		assert_memory_equal(v.mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE);
	}
	assert_int_equal(gvmt_broker_stat(cl.sock, "minor_faults"), 0);
	local_detach(&v);
	cluster_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_eviction_never_touches_a_pinned_vm_and_its_fixed_buffers_stay_coherent),
		cmocka_unit_test(test_pinned_vms_the_budget_cannot_hold_are_refused_with_a_reason),
		cmocka_unit_test(test_pinned_vm_survives_broker_restarts),
		cmocka_unit_test(test_pinned_vm_goes_in_with_copy_whatever_install_says),
	};
	struct gvm_key key;

	gvmt_main_init(key_path, sizeof(key_path), &key);
	gvmt_path(file_path, sizeof(file_path), "fixed-buffer.data");
	user.have = gvmt_test_user(&user.uid, &user.gid, &user.gvm_gid);
	return cmocka_run_group_tests_name("pinned", tests, NULL, NULL);
}
