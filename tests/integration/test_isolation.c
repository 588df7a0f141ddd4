/* test_isolation.c: tenants cannot reach each other's pages or crowd each
 * other out (docs/security.md). Real donors and brokers, clients as two
 * unprivileged users of group gvm (gvmtest, gvmtest2):
 *   - names are labels: two users whose (VM, region) names collide as
 *     "VM.REGION" strings, two hosts running a VM of the same name, and a
 *     VM started again under an old name each see only their own pages,
 *     checked page by page;
 *   - an incarnation is re-attached by its own user only;
 *   - one user attaching a process with 50,000 mappings, holding hundreds
 *     of idle connections, or attaching VMs until its limits, and a
 *     network peer flooding a donor with unauthenticated connections,
 *     leave another user's VM served with its fault latency (p99 within a
 *     small factor of the same VM's without the attack, measured in the
 *     same run) and its write-backs accepted. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctlmsg.h"
#include "gvmmem.h"
#include "pattern.h"
#include "procs.h"
#include "push.h"

#define VM_BYTES (32u << 20)
#define VM_PAGES (VM_BYTES / GVM_PAGE_SIZE)
#define PROBE_BYTES (64u << 20)
#define PROBE_SAMPLES 600u   /* timed remote faults per round */
/* An attack must leave the healthy VM's p99 within this of its own p99
 * without the attack, measured in the same run. Before the fixes, the
 * maps attack alone stalled faults for seconds. */
#define P99_FACTOR 5.0
#define P99_SLACK_US 5000.0  /* a host's scheduling noise, not ours */
/* A stall of the fault loop delays one fault of the probe, which p99 does
 * not see: the round's total time must stay within this too. */
#define TOTAL_FACTOR 4.0
#define TOTAL_SLACK_MS 250.0

struct user {
	uid_t uid;
	gid_t gid, gvm;
};

static char key_path[512];
static struct user tenant_a, tenant_b;
static bool have_users;

struct cluster {
	struct gvmt_proc donor[2], broker;
	char sock[512];
};

static void cluster_start(struct cluster *cl, const char *name, const char *const *extra)
{
	const char *donors[3];

	for (int i = 0; i < 2; i++)
		assert_true(gvmt_memserver_start(&cl->donor[i], key_path,
						 (const char *[]){ "--capacity", "512M", NULL }));
	donors[0] = cl->donor[0].addr;
	donors[1] = cl->donor[1].addr;
	donors[2] = NULL;
	gvmt_path(cl->sock, sizeof(cl->sock), name);
	assert_true(gvmt_broker_start(&cl->broker, key_path, cl->sock, donors, extra));
	assert_true(gvmt_broker_wait_stat(cl->sock, "donors", 2, 10000));
}

static void cluster_stop(struct cluster *cl)
{
	if (cl->broker.pid)
		assert_int_equal(gvmt_proc_stop(&cl->broker, SIGTERM), 0);
	for (int i = 0; i < 2; i++)
		if (cl->donor[i].pid)
			assert_int_equal(gvmt_proc_stop(&cl->donor[i], SIGTERM), 0);
}

static int wait_exit(pid_t pid, int timeout_ms)
{
	int status;

	for (int waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (r < 0)
			return -1;
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -2;
		}
		usleep(10000);
	}
}

/* A byte from fd within timeout_ms: true if one came. */
static bool wait_byte(int fd, int timeout_ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	char c;

	return poll(&p, 1, timeout_ms) == 1 && read(fd, &c, 1) == 1;
}

/* ---- a VM in a child process ---- */

struct vm {
	struct gvm_session *s;
	uint8_t *mem;
	size_t size;
	int memfd;
};

/* In a child: become u, map size bytes of memfd and attach them. */
static void vm_attach(struct vm *v, const struct user *u, const char *sock, const char *name,
		      const char *region, size_t size)
{
	struct gvm_region r = { region, NULL, size, -1, 0, 0 };
	int err;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	gvmt_become(u->uid, u->gid, u->gvm);
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* cleared by the credential change */
	v->size = size;
	v->memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	CHILD_CHECK(v->memfd >= 0 && ftruncate(v->memfd, (off_t)size) == 0, 60, "memfd");
	v->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, v->memfd, 0);
	CHILD_CHECK(v->mem != MAP_FAILED, 61, "mmap");
	r.host_addr = v->mem;
	r.memfd = v->memfd;
	v->s = gvm_attach(sock, name, &r, 1, &err);
	CHILD_CHECK(v->s, 62, "attach %s/%s: %s", name, region, gvm_strerror(err));
}

static void vm_fill(const struct vm *v, uint64_t seed)
{
	for (size_t p = 0; p < v->size / GVM_PAGE_SIZE; p++)
		gvm_pattern_fill_page(v->mem + p * GVM_PAGE_SIZE, seed, p, 0);
}

/* Pages of v that do not hold pattern seed. */
static uint64_t vm_bad_pages(const struct vm *v, uint64_t seed)
{
	uint8_t want[GVM_PAGE_SIZE];
	uint64_t bad = 0;

	for (size_t p = 0; p < v->size / GVM_PAGE_SIZE; p++) {
		gvm_pattern_fill_page(want, seed, p, 0);
		bad += memcmp(v->mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
	}
	return bad;
}

/* Pages of v that are not all zero: what a fresh VM must never see. */
static uint64_t vm_foreign_pages(const struct vm *v)
{
	static const uint8_t zero[GVM_PAGE_SIZE];
	uint64_t n = 0;

	for (size_t p = 0; p < v->size / GVM_PAGE_SIZE; p++)
		n += memcmp(v->mem + p * GVM_PAGE_SIZE, zero, GVM_PAGE_SIZE) != 0;
	return n;
}

static void vm_push(const struct vm *v)
{
	int err = gvm_push_to_donors(v->s, v->memfd, 0, 60000);

	CHILD_CHECK(!err, 63, "push to the donors: %s", gvm_strerror(err));
}

/* A VM that writes its pattern, moves it to the donors, says so on ready,
 * waits for go, and checks every page came back as written. */
static pid_t owner_fork(const struct user *u, const char *sock, const char *name,
			const char *region, uint64_t seed, int ready, int go)
{
	pid_t pid = fork();
	struct vm v;
	uint64_t bad;

	if (pid)
		return pid;
	vm_attach(&v, u, sock, name, region, VM_BYTES);
	vm_fill(&v, seed);
	vm_push(&v);
	CHILD_CHECK(write(ready, "r", 1) == 1, 64, "ready");
	CHILD_CHECK(wait_byte(go, 120000), 65, "go");
	bad = vm_bad_pages(&v, seed);
	CHILD_CHECK(bad == 0, 66, "%s: %llu of %u pages are not what it wrote", name,
		    (unsigned long long)bad, VM_PAGES);
	gvm_detach(v.s);
	_exit(0);
}

/* A VM that must start empty: reads every page (none may hold data), then
 * writes its own pattern, moves it to the donors, reads it back, and
 * detaches (its namespaces are dropped). */
static pid_t newcomer_fork(const struct user *u, const char *sock, const char *name,
			   const char *region, uint64_t seed)
{
	pid_t pid = fork();
	struct vm v;
	uint64_t foreign, bad;

	if (pid)
		return pid;
	vm_attach(&v, u, sock, name, region, VM_BYTES);
	foreign = vm_foreign_pages(&v);
	CHILD_CHECK(foreign == 0, 67, "%s/%s read %llu of %u pages of someone else's data", name,
		    region, (unsigned long long)foreign, VM_PAGES);
	vm_fill(&v, seed);
	vm_push(&v);
	bad = vm_bad_pages(&v, seed);
	CHILD_CHECK(bad == 0, 68, "%s: %llu pages differ after the push", name,
		    (unsigned long long)bad);
	gvm_detach(v.s);
	_exit(0);
}

/* "a" with region "b.c" and "a.b" with region "c", as two users: the same
 * "VM.REGION" string, which was the same donor namespace. */
static void test_two_users_with_colliding_names_never_share_a_page(void **state)
{
	struct cluster cl;
	int ready[2], go[2];
	pid_t victim, attacker;

	(void)state;
	if (!have_users)
		skip();
	cluster_start(&cl, "collide.sock", NULL);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	victim = owner_fork(&tenant_a, cl.sock, "a", "b.c", 1111, ready[1], go[0]);
	assert_true(wait_byte(ready[0], 120000));
	attacker = newcomer_fork(&tenant_b, cl.sock, "a.b", "c", 2222);
	assert_int_equal(wait_exit(attacker, 120000), 0);
	/* The attacker wrote and dropped its own namespaces, not the victim's. */
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(wait_exit(victim, 120000), 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "writeback_errors"), 0);
	close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
	cluster_stop(&cl);
}

static void read_host_id(const char *sock_name, char *out, size_t n)
{
	char path[700];
	FILE *f;

	snprintf(path, sizeof(path), "%s/state-%s/host-id", gvmt_dir(), sock_name);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, (int)n, f));
	fclose(f);
}

/* Two hosts (two brokers, two state directories) sharing both donors,
 * each with a VM called web1: each reads back its own pages only. */
static void test_two_hosts_with_the_same_vm_name_never_share_a_page(void **state)
{
	struct cluster cl;
	struct gvmt_proc second;
	const char *donors[3];
	char sock2[512], id1[32], id2[32];
	int ready[2], go[2];
	pid_t vm1, vm2;

	(void)state;
	if (!have_users)
		skip();
	cluster_start(&cl, "host1.sock", NULL);
	donors[0] = cl.donor[0].addr;
	donors[1] = cl.donor[1].addr;
	donors[2] = NULL;
	gvmt_path(sock2, sizeof(sock2), "host2.sock");
	assert_true(gvmt_broker_start(&second, key_path, sock2, donors, NULL));
	assert_true(gvmt_broker_wait_stat(sock2, "donors", 2, 10000));
	read_host_id("host1.sock", id1, sizeof(id1));
	read_host_id("host2.sock", id2, sizeof(id2));
	assert_string_not_equal(id1, id2);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	vm1 = owner_fork(&tenant_a, cl.sock, "web1", "ram", 3333, ready[1], go[0]);
	vm2 = owner_fork(&tenant_a, sock2, "web1", "ram", 4444, ready[1], go[0]);
	assert_true(wait_byte(ready[0], 120000));
	assert_true(wait_byte(ready[0], 120000));
	/* Both hold 8192 pages on the donors, in namespaces of their own. */
	assert_int_equal(write(go[1], "gg", 2), 2);
	assert_int_equal(wait_exit(vm1, 120000), 0);
	assert_int_equal(wait_exit(vm2, 120000), 0);
	assert_int_equal(gvmt_proc_stop(&second, SIGTERM), 0);
	close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
	cluster_stop(&cl);
}

/* A VM's pages stay on the donors when its broker is killed (no DROP_NS)
 * and the VM dies too: a VM started later under the same name is a new
 * incarnation and reads zeros, never the old pages. */
static void test_a_vm_started_again_under_an_old_name_starts_from_zero(void **state)
{
	struct cluster cl;
	const char *donors[3];
	int ready[2], go[2];
	pid_t old, again;

	(void)state;
	if (!have_users)
		skip();
	cluster_start(&cl, "again.sock", NULL);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	old = owner_fork(&tenant_a, cl.sock, "web1", "ram", 5555, ready[1], go[0]);
	assert_true(wait_byte(ready[0], 120000));
	assert_int_equal(gvmt_proc_stop(&cl.broker, SIGKILL), 128 + SIGKILL);
	kill(old, SIGKILL);
	wait_exit(old, 10000);
	donors[0] = cl.donor[0].addr;
	donors[1] = cl.donor[1].addr;
	donors[2] = NULL;
	assert_true(gvmt_broker_start(&cl.broker, key_path, cl.sock, donors, NULL));
	again = newcomer_fork(&tenant_a, cl.sock, "web1", "ram", 6666);
	assert_int_equal(wait_exit(again, 120000), 0);
	/* Every first touch was a local zero fill: nothing was asked of the
	 * donors for the new incarnation before it wrote. */
	assert_int_equal(gvmt_broker_stat(cl.sock, "zero_fills"), VM_PAGES / 32);
	close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
	cluster_stop(&cl);
}

/* ---- raw control protocol, for the re-attach proofs ---- */

static int raw_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	return s;
}

/* Hello (a re-attach when inc is not NULL); returns the broker's answer:
 * 0 for a Welcome (its descriptor in *devfd), else the refusal's errno
 * with its text in why. */
static int raw_hello(int s, const uint8_t *inc, const uint8_t *secret, int *devfd, char *why,
		     size_t n)
{
	Gvm__Control *in;
	int fds[1], nfds, rc;

	if (gvmt_send_hello(s, GVM_CTL_VERSION, "raw", inc, secret) ||
	    gvm_ctl_recv(s, &in, fds, &nfds, 1))
		return -EIO;
	if (in->msg_case == GVM__CONTROL__MSG_WELCOME) {
		*devfd = nfds ? fds[0] : -1;
		rc = 0;
	} else {
		gvm_ctl_close_fds(fds, nfds);
		rc = in->msg_case == GVM__CONTROL__MSG_ERROR ? in->error->status : EPROTO;
		snprintf(why, n, "%s", in->msg_case == GVM__CONTROL__MSG_ERROR ? in->error->error : "?");
	}
	gvm__control__free_unpacked(in, NULL);
	return rc;
}

/* The per-VM limit raw_attach asks for (0: none). */
static uint64_t raw_limit_bytes;

/* Attach one region of size bytes (its memfd) through s: 0 with the
 * incarnation and secret from Attached, or the refusal's errno. */
static int raw_attach(int s, int devfd, uint8_t *mem, size_t size, int memfd, bool fresh_uffd,
		      uint8_t *inc, uint8_t *secret, char *why, size_t n)
{
	Gvm__Control m = GVM__CONTROL__INIT, *in;
	Gvm__Attach a = GVM__ATTACH__INIT;
	Gvm__Region r = GVM__REGION__INIT, *rp = &r;
	int fds[3], nfds, uffd, rc;

	uffd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		return errno;
	if (!fresh_uffd) { /* a re-attach registers again: the uffd must have its API */
		struct uffdio_api api = { .api = UFFD_API };

		ioctl(uffd, UFFDIO_API, &api);
	}
	r.name = "ram";
	r.host_addr = (uint64_t)(uintptr_t)mem;
	r.size = size;
	a.n_regions = 1;
	a.regions = &rp;
	a.vm_limit_bytes = raw_limit_bytes;
	m.msg_case = GVM__CONTROL__MSG_ATTACH;
	m.attach = &a;
	fds[0] = uffd;
	fds[1] = memfd;
	fds[2] = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	rc = gvm_ctl_send(s, &m, fds, 3) || gvm_ctl_recv(s, &in, fds, &nfds, 1) ? EIO : 0;
	close(fds[2]);
	if (rc)
		return rc;
	if (in->msg_case == GVM__CONTROL__MSG_ATTACHED) {
		memcpy(inc, in->attached->incarnation.data, GVM_INCARNATION_BYTES);
		memcpy(secret, in->attached->secret.data, GVM_INCARNATION_SECRET_BYTES);
		rc = in->attached->incarnation.len == GVM_INCARNATION_BYTES &&
				     in->attached->secret.len == GVM_INCARNATION_SECRET_BYTES ?
			     0 :
			     EBADMSG;
	} else {
		rc = in->msg_case == GVM__CONTROL__MSG_ERROR ? in->error->status : EPROTO;
		snprintf(why, n, "%s", in->msg_case == GVM__CONTROL__MSG_ERROR ? in->error->error : "?");
	}
	gvm__control__free_unpacked(in, NULL);
	return rc;
}

/* In a child as u: a re-attach Hello with (inc, secret); exits with the
 * broker's answer (0: welcomed). */
static pid_t reattach_fork(const struct user *u, const char *sock, const uint8_t *inc,
			   const uint8_t *secret)
{
	pid_t pid = fork();
	char why[256] = "";
	int s, devfd = -1, rc;

	if (pid)
		return pid;
	if (u)
		gvmt_become(u->uid, u->gid, u->gvm);
	s = raw_connect(sock);
	CHILD_CHECK(s >= 0, 70, "connect");
	rc = raw_hello(s, inc, secret, &devfd, why, sizeof(why));
	if (rc)
		fprintf(stderr, "child: re-attach refused (%d): %s\n", rc, why);
	_exit(rc > 0 && rc < 128 ? rc : rc ? 127 : 0);
}

static void test_only_its_user_can_reattach_an_incarnation(void **state)
{
	uint8_t inc[GVM_INCARNATION_BYTES], secret[GVM_INCARNATION_SECRET_BYTES];
	struct cluster cl;
	char why[256] = "";
	int s, devfd, memfd, p[2], rc;
	uint8_t *mem;
	pid_t owner, second;

	(void)state;
	if (!have_users)
		skip();
	cluster_start(&cl, "reattach.sock", NULL);
	/* tenant_a attaches and hands its incarnation and secret out. */
	assert_int_equal(pipe(p), 0);
	owner = fork();
	if (owner == 0) {
		gvmt_become(tenant_a.uid, tenant_a.gid, tenant_a.gvm);
		memfd = memfd_create("guest-ram", MFD_CLOEXEC);
		CHILD_CHECK(memfd >= 0 && !ftruncate(memfd, 1 << 20), 71, "memfd");
		mem = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		s = raw_connect(cl.sock);
		CHILD_CHECK(s >= 0 && !raw_hello(s, NULL, NULL, &devfd, why, sizeof(why)), 72,
			    "hello: %s", why);
		rc = raw_attach(s, devfd, mem, 1 << 20, memfd, true, inc, secret, why, sizeof(why));
		CHILD_CHECK(!rc, 73, "attach: %s", why);
		CHILD_CHECK(write(p[1], inc, sizeof(inc)) == sizeof(inc) &&
				    write(p[1], secret, sizeof(secret)) == sizeof(secret),
			    74, "pipe");
		pause(); /* stays attached until killed */
		_exit(0);
	}
	assert_int_equal(read(p[0], inc, sizeof(inc)), sizeof(inc));
	assert_int_equal(read(p[0], secret, sizeof(secret)), sizeof(secret));
	/* Another user with the very secret: refused. So is root. */
	assert_int_equal(wait_exit(reattach_fork(&tenant_b, cl.sock, inc, secret), 10000), EACCES);
	assert_int_equal(wait_exit(reattach_fork(NULL, cl.sock, inc, secret), 10000), EACCES);
	/* Its own user with one bit of the secret wrong: refused. */
	secret[7] ^= 1;
	assert_int_equal(wait_exit(reattach_fork(&tenant_a, cl.sock, inc, secret), 10000), EACCES);
	secret[7] ^= 1;
	/* Its own user with the right secret is welcomed... */
	assert_int_equal(wait_exit(reattach_fork(&tenant_a, cl.sock, inc, secret), 10000), 0);
	/* ...but cannot attach it a second time while it is attached. */
	second = fork();
	if (second == 0) {
		gvmt_become(tenant_a.uid, tenant_a.gid, tenant_a.gvm);
		memfd = memfd_create("guest-ram", MFD_CLOEXEC);
		CHILD_CHECK(memfd >= 0 && !ftruncate(memfd, 1 << 20), 75, "memfd");
		mem = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		s = raw_connect(cl.sock);
		CHILD_CHECK(s >= 0 && !raw_hello(s, inc, secret, &devfd, why, sizeof(why)), 76,
			    "hello: %s", why);
		rc = raw_attach(s, devfd, mem, 1 << 20, memfd, false, inc, secret, why, sizeof(why));
		CHILD_CHECK(rc == EBUSY && strstr(why, "attached already"), 77, "second attach: %d %s",
			    rc, why);
		_exit(0);
	}
	assert_int_equal(wait_exit(second, 30000), 0);
	kill(owner, SIGKILL);
	wait_exit(owner, 10000);
	close(p[0]), close(p[1]);
	assert_int_equal(gvmt_broker_stat(cl.sock, "attach_errors"), 3 + 1); /* + the EBUSY */
	assert_true(gvmt_file_count(cl.broker.log, "re-attach refused") >= 1);
	cluster_stop(&cl);
}

/* Namespaces the cluster's donors hold, summed. */
static uint64_t donor_namespaces(const struct cluster *cl)
{
	struct gvm_key key;
	char why[256];
	uint64_t n = 0;

	assert_int_equal(gvm_key_load(key_path, &key, why, sizeof(why)), 0);
	for (int i = 0; i < 2; i++) {
		Gvm__MemserverStats *m = gvmt_donor_stats(cl->donor[i].addr, &key);

		assert_non_null(m);
		n += m->namespaces;
		gvm__memserver_stats__free_unpacked(m, NULL);
	}
	return n;
}

/* In a child as tenant_a: attaches 4 MiB under a 256 KiB limit, writes it
 * (so most of it goes to the donors), says so on fd, closes its connection
 * and lives on. */
static pid_t leaver_fork(const char *sock, int fd)
{
	char why[256] = "";
	uint8_t inc[GVM_INCARNATION_BYTES], secret[GVM_INCARNATION_SECRET_BYTES], *mem;
	int s, devfd, memfd;
	pid_t pid = fork();

	if (pid)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	gvmt_become(tenant_a.uid, tenant_a.gid, tenant_a.gvm);
	memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	CHILD_CHECK(memfd >= 0 && !ftruncate(memfd, 4 << 20), 71, "memfd");
	mem = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	s = raw_connect(sock);
	CHILD_CHECK(s >= 0 && !raw_hello(s, NULL, NULL, &devfd, why, sizeof(why)), 72, "hello: %s",
		    why);
	CHILD_CHECK(!raw_attach(s, devfd, mem, 4 << 20, memfd, true, inc, secret, why, sizeof(why)),
		    73, "attach: %s", why);
	memset(mem, 0x5a, 4 << 20);
	close(s);
	CHILD_CHECK(write(fd, "a", 1) == 1, 74, "pipe");
	pause();
	_exit(0);
}

/* A connection that ends while its process lives (a client that lost it,
 * not one that detached) keeps the VM's pages on the donors: the process
 * may attach again. They go when the process exits (the broker watches a
 * pidfd), and a user keeps at most --uid-vms such VMs: past that, the
 * oldest one's pages go. */
static void test_a_lost_connection_keeps_pages_until_the_process_exits(void **state)
{
	struct cluster cl;
	pid_t kid[3];
	int p[2];

	(void)state;
	if (!have_users)
		skip();
	cluster_start(&cl, "orphans.sock", (const char *[]){ "--uid-vms", "2", NULL });
	raw_limit_bytes = 256 << 10;
	assert_int_equal(pipe(p), 0);
	for (int i = 0; i < 3; i++) {
		kid[i] = leaver_fork(cl.sock, p[1]);
		assert_true(wait_byte(p[0], 30000));
		for (int t = 0; t < 100 && gvmt_file_count(cl.broker.log, "while its process lives") <
						   i + 1; t++)
			usleep(20000);
		assert_int_equal(gvmt_file_count(cl.broker.log, "while its process lives"), i + 1);
		if (i == 0)
			assert_true(donor_namespaces(&cl) >= 1);
	}
	raw_limit_bytes = 0;
	/* the third made the first one's pages go (the line after its own) */
	for (int t = 0; t < 100 && !gvmt_file_count(cl.broker.log, "too many VMs of its user"); t++)
		usleep(20000);
	assert_int_equal(gvmt_file_count(cl.broker.log, "too many VMs of its user"), 1);
	assert_int_equal(gvmt_file_count(cl.broker.log, "its process exited"), 0);
	kill(kid[1], SIGKILL);
	wait_exit(kid[1], 10000);
	for (int t = 0; t < 100 && !gvmt_file_count(cl.broker.log, "its process exited"); t++)
		usleep(20000);
	assert_int_equal(gvmt_file_count(cl.broker.log, "its process exited"), 1);
	kill(kid[2], SIGKILL);
	kill(kid[0], SIGKILL);
	wait_exit(kid[2], 10000);
	wait_exit(kid[0], 10000);
	for (int t = 0; t < 100 && donor_namespaces(&cl); t++)
		usleep(20000);
	assert_int_equal(donor_namespaces(&cl), 0);
	close(p[0]), close(p[1]);
	cluster_stop(&cl);
}

/* The state of donor addr in `gvmctl donors` of the broker at sock. */
static void donor_state(const char *sock, const char *addr, char state[16])
{
	struct gvmt_donor_row row;
	char listing[512];

	gvmt_path(listing, sizeof(listing), "donors.listing");
	assert_int_equal(gvmt_gvmctl_donors(sock, listing), 0);
	assert_true(gvmt_donors_row(listing, addr, &row));
	snprintf(state, 16, "%s", row.state);
}

/* A VM waiting to re-attach may have copies on a donor being drained that
 * the broker cannot see (it knows them only from the VM's LIST once it is
 * back): the donor stays draining while that VM's process lives, and is
 * removed once it has exited and its namespaces are gone. */
static void test_a_drain_waits_for_a_vm_waiting_to_reattach(void **state)
{
	struct cluster cl;
	char file[512], state_now[16];
	struct gvm_key key;
	Gvm__MemserverStats *m;
	FILE *f;
	pid_t kid;
	int p[2];

	(void)state;
	if (!have_users)
		skip();
	for (int i = 0; i < 2; i++)
		assert_true(gvmt_memserver_start(&cl.donor[i], key_path,
						 (const char *[]){ "--capacity", "512M", NULL }));
	gvmt_path(file, sizeof(file), "drain-orphan.donors");
	f = fopen(file, "w");
	assert_non_null(f);
	fprintf(f, "%s\n%s\n", cl.donor[0].addr, cl.donor[1].addr);
	fclose(f);
	gvmt_path(cl.sock, sizeof(cl.sock), "drain-orphan.sock");
	assert_true(gvmt_broker_start(&cl.broker, key_path, cl.sock, (const char *[]){ NULL },
				      (const char *[]){ "--donors-file", file, NULL }));
	assert_true(gvmt_broker_wait_stat(cl.sock, "donors", 2, 10000));
	raw_limit_bytes = 256 << 10; /* its 4 MiB go to the donors */
	assert_int_equal(pipe(p), 0);
	kid = leaver_fork(cl.sock, p[1]);
	assert_true(wait_byte(p[0], 30000));
	raw_limit_bytes = 0;
	assert_true(gvmt_file_wait(cl.broker.log, "while its process lives", 1, 5000));
	assert_int_equal(gvm_key_load(key_path, &key, state_now, sizeof(state_now)), 0);
	m = gvmt_donor_stats(cl.donor[1].addr, &key);
	assert_non_null(m);
	assert_true(m->namespaces >= 1 && m->used_pages > 0); /* copies there */
	gvm__memserver_stats__free_unpacked(m, NULL);
	/* donor 1 leaves the list: nothing attached holds copies there */
	f = fopen(file, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", cl.donor[0].addr);
	fclose(f);
	assert_int_equal(kill(cl.broker.pid, SIGHUP), 0);
	assert_true(gvmt_file_wait(cl.broker.log, "1 draining now", 1, 5000));
	usleep(1000 * 1000); /* ten ticks: without the waiting VM it would be removed */
	donor_state(cl.sock, cl.donor[1].addr, state_now);
	assert_string_equal(state_now, "draining");
	assert_int_equal(gvmt_file_count(cl.broker.log, "drained"), 0);
	/* the VM's process exits: its namespaces are dropped, the drain ends */
	kill(kid, SIGKILL);
	wait_exit(kid, 10000);
	assert_true(gvmt_file_wait(cl.broker.log, "drained", 1, 10000));
	donor_state(cl.sock, cl.donor[1].addr, state_now);
	assert_string_equal(state_now, "removed");
	for (int t = 0; t < 100 && donor_namespaces(&cl); t++)
		usleep(20000);
	assert_int_equal(donor_namespaces(&cl), 0);
	close(p[0]), close(p[1]);
	cluster_stop(&cl);
}

/* The group check comes before anything is answered, gvmctl's Stats
 * included: a socket made 0666 by mistake still tells an outsider nothing. */
static void test_a_user_outside_group_gvm_gets_nothing_not_even_stats(void **state)
{
	struct cluster cl;
	pid_t pid;

	(void)state;
	if (!have_users)
		skip();
	cluster_start(&cl, "outsider.sock", NULL);
	assert_int_equal(chmod(cl.sock, 0666), 0);
	pid = fork();
	if (pid == 0) {
		Gvm__Control req = GVM__CONTROL__INIT, *m = NULL;
		Gvm__StatsRequest sr = GVM__STATS_REQUEST__INIT;
		gid_t none = tenant_b.gid;
		int s, fds[1], nfds;

		/* tenant_b's uid, but not in group gvm */
		CHILD_CHECK(!setgroups(1, &none) && !setgid(tenant_b.gid) && !setuid(tenant_b.uid), 110,
			    "setuid");
		s = raw_connect(cl.sock);
		CHILD_CHECK(s >= 0, 111, "connect: %s", strerror(errno));
		/* The refusal comes at once; a request sent after the broker
		 * hung up could reset the connection before it is read. */
		CHILD_CHECK(!gvm_ctl_recv(s, &m, fds, &nfds, 1), 112, "no answer at all");
		CHILD_CHECK(m->msg_case == GVM__CONTROL__MSG_ERROR && m->error->status == EPERM &&
				    strstr(m->error->error, "not in group gvm"),
			    113, "an outsider got message %d", (int)m->msg_case);
		req.msg_case = GVM__CONTROL__MSG_STATS_REQUEST;
		req.stats_request = &sr;
		CHILD_CHECK(gvm_ctl_send(s, &req, NULL, 0) != 0 || gvm_ctl_recv(s, &m, fds, &nfds, 1) != 0,
			    114, "a Stats answer came after all");
		_exit(0);
	}
	assert_int_equal(wait_exit(pid, 10000), 0);
	assert_int_equal(gvmt_file_count(cl.broker.log, "refused: user may not attach VMs"), 1);
	cluster_stop(&cl);
}

/* One name rule everywhere: 63 bytes attach, 64 are refused by libgvmmem
 * with the reason before the broker is asked, and gvm-qemu says the same. */
static void test_vm_names_follow_one_rule_in_the_library_broker_and_gvm_qemu(void **state)
{
	static const char n63[] = "a23456789-123456789-123456789-123456789-123456789-123456789-123";
	static const char n64[] = "a23456789-123456789-123456789-123456789-123456789-123456789-1234";
	struct cluster cl;
	char bin[512], log[600];
	pid_t pid;

	(void)state;
	if (!have_users)
		skip();
	assert_int_equal(strlen(n63), 63);
	cluster_start(&cl, "names.sock", NULL);
	pid = fork();
	if (pid == 0) {
		struct gvm_region r = { "pc.ram", NULL, 1 << 20, -1, 0, 0 };
		struct gvm_session *s;
		int err;

		r.memfd = memfd_create("guest-ram", MFD_CLOEXEC);
		CHILD_CHECK(r.memfd >= 0 && !ftruncate(r.memfd, 1 << 20), 120, "memfd");
		r.host_addr = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, r.memfd, 0);
		s = gvm_attach(cl.sock, n64, &r, 1, &err);
		CHILD_CHECK(!s && err == -EINVAL, 121, "a 64-byte name: %s", gvm_strerror(err));
		s = gvm_attach(cl.sock, "web/1", &r, 1, &err);
		CHILD_CHECK(!s && err == -EINVAL, 122, "a name with '/': %s", gvm_strerror(err));
		s = gvm_attach(cl.sock, n63, &r, 1, &err);
		CHILD_CHECK(s, 123, "a 63-byte name: %s", gvm_strerror(err));
		gvm_detach(s);
		_exit(0);
	}
	assert_int_equal(wait_exit(pid, 30000), 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "attaches"), 1);
	assert_int_equal(gvmt_broker_stat(cl.sock, "attach_errors"), 0); /* refused before asking */
	gvmt_path(log, sizeof(log), "gvm-qemu-names.log");
	gvmt_bin("gvm-qemu", bin, sizeof(bin));
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--print", "--vm-name", n63, "--",
							 "-m", "64M", NULL }),
			 0);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--print", "--vm-name", n64, "--",
							 "-m", "64M", NULL }),
			 2);
	assert_int_equal(gvmt_file_count(log, "1 to 63 of letters, digits and . _ - + : @"), 1);
	cluster_stop(&cl);
}

/* ---- the healthy VM whose latency the DoS tests watch ---- */

struct probe {
	pid_t pid;
	int cmd[2], res[2];
};

struct round {
	double p99_us, total_ms;
};

/* A VM of tenant_a: 64 MiB, all of it moved to the donors. Each 'm' on
 * cmd runs a round: PROBE_SAMPLES random pages not touched before, each a
 * READ from a donor, timed; the round's p99 (us) and its total time
 * (ms), a struct round, come back on res. 'q' ends it (children forked later hold cmd's write end too, so
 * EOF cannot say it). */
static void probe_start(struct probe *pr, const char *sock)
{
	assert_int_equal(pipe(pr->cmd), 0);
	assert_int_equal(pipe(pr->res), 0);
	pr->pid = fork();
	if (pr->pid == 0) {
		uint64_t pages = PROBE_BYTES / GVM_PAGE_SIZE, rng = 0x9e3779b97f4a7c15ULL;
		uint8_t *touched = calloc(pages, 1);
		double lat[PROBE_SAMPLES];
		struct round rd;
		volatile uint8_t sink = 0;
		struct vm v;

		char c;

		close(pr->cmd[1]);
		close(pr->res[0]);
		vm_attach(&v, &tenant_a, sock, "healthy", "ram", PROBE_BYTES);
		vm_fill(&v, 7777);
		vm_push(&v);
		CHILD_CHECK(write(pr->res[1], &(struct round){ 0 }, sizeof(rd)) == sizeof(rd), 80,
			    "ready");
		while (read(pr->cmd[0], &c, 1) == 1 && c == 'm') {
			for (unsigned i = 0; i < PROBE_SAMPLES; i++) {
				struct timespec t0, t1;
				uint64_t p;

				do {
					rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
					p = rng % pages;
				} while (touched[p] || touched[p ^ 1]);
				touched[p] = 1;
				clock_gettime(CLOCK_MONOTONIC, &t0);
				sink += v.mem[p * GVM_PAGE_SIZE + 8];
				clock_gettime(CLOCK_MONOTONIC, &t1);
				lat[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e6 +
					 (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
			}
			rd.total_ms = 0;
			for (unsigned i = 0; i < PROBE_SAMPLES; i++)
				rd.total_ms += lat[i] / 1000.0;
			rd.p99_us = gvmt_percentile(lat, PROBE_SAMPLES, 99);
			CHILD_CHECK(write(pr->res[1], &rd, sizeof(rd)) == sizeof(rd), 81, "result");
		}
		CHILD_CHECK(vm_bad_pages(&v, 7777) == 0, 82, "the healthy VM lost pages");
		gvm_detach(v.s);
		(void)sink;
		_exit(0);
	}
	assert_true(pr->pid > 0);
	struct round ready;
	struct pollfd pf = { pr->res[0], POLLIN, 0 };

	assert_int_equal(poll(&pf, 1, 120000), 1);
	assert_int_equal(read(pr->res[0], &ready, sizeof(ready)), sizeof(ready));
}

static struct round probe_round(struct probe *pr)
{
	struct pollfd pf = { pr->res[0], POLLIN, 0 };
	struct round rd;

	assert_int_equal(write(pr->cmd[1], "m", 1), 1);
	assert_int_equal(poll(&pf, 1, 120000), 1);
	assert_int_equal(read(pr->res[0], &rd, sizeof(rd)), sizeof(rd));
	return rd;
}

/* Two rounds during an attack: the better p99 (a hiccup of the host's
 * spoils one round at most), and their mean time per round (a stall of the
 * fault loop, which p99 cannot see, counts whichever round it falls in). */
static struct round probe_attacked(struct probe *pr)
{
	struct round a = probe_round(pr), b = probe_round(pr);

	return (struct round){ a.p99_us < b.p99_us ? a.p99_us : b.p99_us,
			       (a.total_ms + b.total_ms) / 2 };
}

static void probe_stop(struct probe *pr)
{
	assert_int_equal(write(pr->cmd[1], "q", 1), 1);
	close(pr->cmd[1]);
	assert_int_equal(wait_exit(pr->pid, 120000), 0);
	close(pr->cmd[0]), close(pr->res[0]), close(pr->res[1]);
}

/* The healthy VM's p99 and round time under an attack against its own
 * without it. */
static void assert_latency_kept(const char *attack, struct round base, struct round attacked)
{
	fprintf(stderr, "%s: healthy VM's remote faults: p99 %.0f us without, %.0f us during; "
		"%u faults in %.0f ms without, %.0f ms during\n", attack, base.p99_us,
		attacked.p99_us, PROBE_SAMPLES, base.total_ms, attacked.total_ms);
	if (attacked.p99_us > base.p99_us * P99_FACTOR + P99_SLACK_US)
		fail_msg("%s: p99 went from %.0f us to %.0f us", attack, base.p99_us, attacked.p99_us);
	if (attacked.total_ms > base.total_ms * TOTAL_FACTOR + TOTAL_SLACK_MS)
		fail_msg("%s: %u faults took %.0f ms, not %.0f ms", attack, PROBE_SAMPLES,
			 attacked.total_ms, base.total_ms);
}

/* ---- denial of service by one local user ---- */

/* An attacker (tenant_b) whose process has 50,000 mappings attaches and
 * detaches 64 small regions over and over: reading its maps is the
 * broker's work (64 times over, one per region, before), but off the
 * fault loop now. */
static pid_t maps_attacker_fork(const char *sock, int ready)
{
	pid_t pid = fork();

	if (pid)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	gvmt_become(tenant_b.uid, tenant_b.gid, tenant_b.gvm);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (int i = 0; i < 50000; i++) /* alternating protections: no merging */
		mmap(NULL, GVM_PAGE_SIZE, i % 2 ? PROT_READ : PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct gvm_region r[64];
	char names[64][8];
	int memfd = memfd_create("guest-ram", MFD_CLOEXEC), err;
	uint8_t *mem;

	CHILD_CHECK(memfd >= 0 && !ftruncate(memfd, 64 << 16), 90, "memfd");
	mem = mmap(NULL, 64 << 16, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	CHILD_CHECK(mem != MAP_FAILED, 91, "mmap");
	for (int i = 0; i < 64; i++) {
		snprintf(names[i], sizeof(names[i]), "r%d", i);
		r[i] = (struct gvm_region){ names[i], mem + (i << 16), 1 << 16, memfd,
					    (uint64_t)i << 16, (uint64_t)i << 16 };
	}
	CHILD_CHECK(write(ready, "r", 1) == 1, 92, "ready");
	for (;;) {
		struct gvm_session *s = gvm_attach(sock, "mapsy", r, 64, &err);

		CHILD_CHECK(s, 93, "attach: %s", gvm_strerror(err));
		gvm_detach(s);
	}
}

/* Polls stat until it reaches at least want. */
static bool wait_stat_at_least(const char *sock, const char *key, uint64_t want, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		uint64_t v = gvmt_broker_stat(sock, key);

		if (v != UINT64_MAX && v >= want)
			return true;
		usleep(20000);
	}
	return false;
}

static void test_an_attach_with_50000_mappings_does_not_stall_other_vms(void **state)
{
	struct cluster cl;
	struct probe pr;
	struct round base, attacked;
	int ready[2];
	pid_t attacker;

	(void)state;
	if (!have_users)
		skip();
	cluster_start(&cl, "maps.sock", NULL);
	probe_start(&pr, cl.sock);
	base = probe_round(&pr);
	assert_int_equal(pipe(ready), 0);
	attacker = maps_attacker_fork(cl.sock, ready[1]);
	assert_true(wait_byte(ready[0], 60000));
	assert_true(wait_stat_at_least(cl.sock, "attaches", 3, 60000)); /* it is at work */
	attacked = probe_attacked(&pr);
	assert_int_equal(waitpid(attacker, NULL, WNOHANG), 0); /* still at it */
	kill(attacker, SIGKILL);
	wait_exit(attacker, 10000);
	probe_stop(&pr);
	assert_latency_kept("50,000 mappings", base, attacked);
	close(ready[0]), close(ready[1]);
	cluster_stop(&cl);
}

/* tenant_b opens 300 connections and says nothing: it gets its own limit
 * of connections (uid-vms + 8), refused beyond that with a reason, and the
 * ones it holds are closed at the Hello deadline. tenant_a attaches and is
 * served meanwhile, root's gvmctl still answers. */
static void test_idle_connections_of_one_user_lock_nobody_else_out(void **state)
{
	enum { IDLE = 300 };
	struct cluster cl;
	struct probe pr;
	struct round base, attacked;
	int p[2], held;
	pid_t attacker;

	(void)state;
	if (!have_users)
		skip();
	cluster_start(&cl, "idle.sock", (const char *[]){ "--uid-vms", "4", NULL });
	probe_start(&pr, cl.sock);
	base = probe_round(&pr);
	assert_int_equal(pipe(p), 0);
	attacker = fork();
	if (attacker == 0) {
		static int fds[IDLE];
		int open_now = 0, refused = 0;

		gvmt_become(tenant_b.uid, tenant_b.gid, tenant_b.gvm);
		for (int i = 0; i < IDLE; i++)
			fds[i] = raw_connect(cl.sock);
		usleep(300000);
		for (int i = 0; i < IDLE; i++) { /* a refusal is a ControlError, then EOF */
			Gvm__Control *m;
			int f[1], n, err;
			struct pollfd pf = { fds[i], POLLIN, 0 };

			if (fds[i] < 0 || poll(&pf, 1, 0) == 0) {
				open_now += fds[i] >= 0;
				continue;
			}
			err = gvm_ctl_recv(fds[i], &m, f, &n, 1);
			if (!err) {
				refused += m->msg_case == GVM__CONTROL__MSG_ERROR &&
					   m->error->status == EDQUOT;
				gvm__control__free_unpacked(m, NULL);
			}
		}
		CHILD_CHECK(write(p[1], &open_now, sizeof(open_now)) == sizeof(open_now), 95, "pipe");
		CHILD_CHECK(refused == IDLE - open_now, 96, "%d refused with EDQUOT of %d", refused,
			    IDLE - open_now);
		/* The ones it holds are closed at the deadline. */
		sleep(6);
		for (int i = 0; i < IDLE; i++) {
			char c;

			if (fds[i] >= 0 && recv(fds[i], &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN)
				CHILD_CHECK(0, 97, "connection %d still open after the Hello deadline", i);
		}
		_exit(0);
	}
	assert_int_equal(read(p[0], &held, sizeof(held)), sizeof(held));
	assert_int_equal(held, 4 + 8);
	/* Meanwhile: another user's VM is served, and attaches work. */
	attacked = probe_attacked(&pr);
	assert_int_equal(wait_exit(newcomer_fork(&tenant_a, cl.sock, "fresh", "ram", 8888), 120000),
			 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "vms"), 1);
	assert_int_equal(wait_exit(attacker, 60000), 0);
	probe_stop(&pr);
	assert_latency_kept("300 idle connections", base, attacked);
	assert_true(gvmt_file_count(cl.broker.log, "is at its limit of 12 connections") >= 1);
	assert_true(gvmt_file_count(cl.broker.log, "no Hello within 5000 ms") >= 1);
	/* 300 refusals, a few lines: one user cannot flood the log either. */
	assert_true(gvmt_broker_stat(cl.sock, "attach_errors") >= IDLE);
	assert_true(gvmt_file_count(cl.broker.log, "refused:") <= 12);
	close(p[0]), close(p[1]);
	cluster_stop(&cl);
}

/* tenant_b attaches VMs of 64 regions each with a tiny limit of its own,
 * so every region's namespace is made on the donors: it is refused at its
 * region limit, and tenant_a's write-backs keep being taken. */
static void test_one_user_cannot_fill_the_donors_namespaces(void **state)
{
	struct cluster cl;
	struct probe pr;
	struct round base, attacked;
	int p[2], attached = 0;
	pid_t attacker;

	(void)state;
	if (!have_users)
		skip();
	cluster_start(&cl, "fill.sock", (const char *[]){ "--uid-regions", "256", NULL });
	probe_start(&pr, cl.sock);
	base = probe_round(&pr);
	assert_int_equal(pipe(p), 0);
	attacker = fork();
	if (attacker == 0) {
		struct gvm_region r[64];
		char names[64][8];
		int n = 0, err = 0;

		gvmt_become(tenant_b.uid, tenant_b.gid, tenant_b.gvm);
		setenv("GVM_VM_LIMIT", "4096", 1);
		for (; n < 65; n++) { /* 65 x 64 = 4160 namespaces: more than a donor holds */
			int memfd = memfd_create("guest-ram", MFD_CLOEXEC);
			uint8_t *mem;
			struct gvm_session *s;

			CHILD_CHECK(memfd >= 0 && !ftruncate(memfd, 64 << 14), 100, "memfd");
			mem = mmap(NULL, 64 << 14, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
			for (int i = 0; i < 64; i++) {
				snprintf(names[i], sizeof(names[i]), "r%d", i);
				r[i] = (struct gvm_region){ names[i], mem + (i << 14), 1 << 14, memfd,
							    (uint64_t)i << 14, (uint64_t)i << 14 };
			}
			s = gvm_attach(cl.sock, "filler", r, 64, &err);
			if (!s)
				break;
			for (int i = 0; i < 64; i++) /* a page in each region: a namespace each */
				memset(mem + (i << 14), 0x5a, 2 * GVM_PAGE_SIZE);
		}
		CHILD_CHECK(write(p[1], &n, sizeof(n)) == sizeof(n), 101, "pipe");
		CHILD_CHECK(err == -EDQUOT, 102, "the attach past the limit: %s", gvm_strerror(err));
		pause();
		_exit(0);
	}
	assert_int_equal(read(p[0], &attached, sizeof(attached)), sizeof(attached));
	assert_int_equal(attached, 256 / 64);
	attacked = probe_attacked(&pr);
	/* tenant_a's pages still go to the donors and come back. */
	assert_int_equal(wait_exit(newcomer_fork(&tenant_a, cl.sock, "victim", "ram", 9999), 120000),
			 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "writeback_errors"), 0);
	kill(attacker, SIGKILL);
	wait_exit(attacker, 10000);
	probe_stop(&pr);
	assert_latency_kept("namespace filler", base, attacked);
	assert_true(gvmt_file_count(cl.broker.log, "is at its limit: 4 VMs and 256 regions") >= 1);
	close(p[0]), close(p[1]);
	cluster_stop(&cl);
}

/* ---- denial of service from the network ---- */

struct flood {
	pthread_t thread;
	const char *addr; /* the donor, "127.0.0.1:PORT" */
	volatile int stop;
	unsigned long opened;
};

/* Opens 1100 connections from 127.0.0.2 to the donor that never
 * authenticate (non-blocking connects), then keeps opening a new one for
 * each the donor closes, at up to 2000 a second: a flood that goes on, not
 * just the test's thread racing the donor for the CPU. */
static void *flood_main(void *arg)
{
	struct flood *f = arg;
	struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET };
	static int fds[1100];
	const char *colon = strrchr(f->addr, ':');

	inet_pton(AF_INET, "127.0.0.2", &src.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
	dst.sin_port = htons((uint16_t)atoi(colon + 1));
	for (size_t i = 0; i < 1100; i++)
		fds[i] = -1;
	while (!f->stop) {
		unsigned budget = f->opened < 1100 ? 1100 : 20;

		for (size_t i = 0; i < 1100 && !f->stop && budget; i++) {
			char buf[256];
			ssize_t n;

			if (fds[i] >= 0) {
				n = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT); /* the challenge */
				if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINPROGRESS ||
							errno == ENOTCONN)))
					continue; /* still held */
				close(fds[i]);
			}
			fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
			if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&src, sizeof(src)) ||
			    (connect(fds[i], (struct sockaddr *)&dst, sizeof(dst)) && errno != EINPROGRESS)) {
				if (fds[i] >= 0)
					close(fds[i]);
				fds[i] = -1;
				continue;
			}
			f->opened++;
			budget--;
		}
		usleep(10000);
	}
	for (size_t i = 0; i < 1100; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return NULL;
}

/* A peer without the key floods a donor with unauthenticated connections:
 * the healthy VM's faults keep their latency, and a broker started during
 * the flood gets all its connections to that donor. */
static void test_a_donor_flood_of_unauthenticated_peers_locks_no_broker_out(void **state)
{
	struct cluster cl;
	struct gvmt_proc late;
	struct flood f = { 0 };
	struct probe pr;
	struct rlimit rl;
	const char *donors[2];
	char sock2[512];
	struct round base, attacked;

	(void)state;
	if (!have_users)
		skip();
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	cluster_start(&cl, "flood.sock", NULL);
	probe_start(&pr, cl.sock);
	base = probe_round(&pr);
	f.addr = cl.donor[0].addr;
	assert_int_equal(pthread_create(&f.thread, NULL, flood_main, &f), 0);
	for (int waited = 0; f.opened < 2200 && waited < 20000; waited += 10)
		usleep(10000); /* the first 1100, and as many again after the donor closed them */
	attacked = probe_attacked(&pr);
	/* A broker connects when it needs a donor: two authenticated clients
	 * (gvmctl donor-ping, the handshake a broker's connection makes) get
	 * in during the flood, and a late broker starts. */
	for (int i = 0; i < 2; i++) {
		char bin[512], log[512];

		gvmt_path(log, sizeof(log), "late-ping.log");
		assert_int_equal(gvmt_run(log, (const char *[]){ gvmt_bin("gvmctl", bin, sizeof(bin)),
					  "--key-file", key_path, "donor-ping", cl.donor[0].addr,
					  NULL }), 0);
	}
	donors[0] = cl.donor[0].addr;
	donors[1] = NULL;
	gvmt_path(sock2, sizeof(sock2), "late.sock");
	assert_true(gvmt_broker_start(&late, key_path, sock2, donors, NULL));
	assert_true(gvmt_broker_wait_stat(sock2, "donors", 1, 10000));
	f.stop = 1;
	pthread_join(f.thread, NULL);
	fprintf(stderr, "flood: %lu connections opened\n", f.opened);
	assert_true(f.opened >= 2200);
	probe_stop(&pr);
	assert_latency_kept("unauthenticated flood", base, attacked);
	assert_int_equal(gvmt_proc_stop(&late, SIGTERM), 0);
	cluster_stop(&cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_users_with_colliding_names_never_share_a_page),
		cmocka_unit_test(test_two_hosts_with_the_same_vm_name_never_share_a_page),
		cmocka_unit_test(test_a_vm_started_again_under_an_old_name_starts_from_zero),
		cmocka_unit_test(test_only_its_user_can_reattach_an_incarnation),
		cmocka_unit_test(test_a_lost_connection_keeps_pages_until_the_process_exits),
		cmocka_unit_test(test_a_drain_waits_for_a_vm_waiting_to_reattach),
		cmocka_unit_test(test_a_user_outside_group_gvm_gets_nothing_not_even_stats),
		cmocka_unit_test(test_vm_names_follow_one_rule_in_the_library_broker_and_gvm_qemu),
		cmocka_unit_test(test_an_attach_with_50000_mappings_does_not_stall_other_vms),
		cmocka_unit_test(test_idle_connections_of_one_user_lock_nobody_else_out),
		cmocka_unit_test(test_one_user_cannot_fill_the_donors_namespaces),
		cmocka_unit_test(test_a_donor_flood_of_unauthenticated_peers_locks_no_broker_out),
	};

	gvmt_main_init(key_path, sizeof(key_path), NULL);
	have_users = gvmt_test_user_named("gvmtest", &tenant_a.uid, &tenant_a.gid, &tenant_a.gvm) &&
		     gvmt_test_user_named("gvmtest2", &tenant_b.uid, &tenant_b.gid, &tenant_b.gvm);
	if (!have_users)
		fprintf(stderr, "test_isolation: needs root to make two test users; skipped\n");
	return cmocka_run_group_tests_name("isolation", tests, NULL, NULL);
}
