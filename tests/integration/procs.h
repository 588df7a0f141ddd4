/* procs.h: test support for running real gvmmem daemons: a scratch folder,
 * key files, a gvm-memserver on a free loopback port with its log captured,
 * and stopping it to read its exit status. Binaries come from $GVM_BIN_DIR
 * (tests/run.sh sets it), else build/bin. */
#ifndef GVMT_PROCS_H
#define GVMT_PROCS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

#include "config.h"

/* In a forked test client: end it with a distinct status and a message
 * when cond fails (cmocka's asserts belong to the parent). */
#define CHILD_CHECK(cond, code, ...)                                                     \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "child: " __VA_ARGS__);                          \
			fprintf(stderr, "\n");                                          \
			_exit(code);                                                     \
		}                                                                        \
	} while (0)

struct gvmt_proc {
	pid_t pid;
	char addr[64]; /* "127.0.0.1:PORT" */
	char log[512];
	char netns[32]; /* a memserver run in this network namespace, or "" */
};

/* What every integration test's main() does first: SIGPIPE ignored (a
 * daemon that goes away fails a write instead), the cluster key made in
 * key_path (gvmt_dir()/cluster.key, loaded into key if not NULL), the
 * folder opened to the unprivileged clients (their sockets are in it),
 * and GVM_TEST_FILTER applied (e.g. GVM_TEST_FILTER='*restart*'). */
void gvmt_main_init(char *key_path, size_t n, struct gvm_key *key);
/* A fresh folder under $TMPDIR for this test program. */
const char *gvmt_dir(void);
/* path = gvmt_dir()/name. */
void gvmt_path(char *out, size_t n, const char *name);
/* Writes len random bytes, mode 0600; loads it into key if not NULL. */
void gvmt_make_key(const char *path, size_t len, struct gvm_key *key);

/* Starts gvm-memserver with --listen on a free port, --key-file key_path and
 * the extra arguments (NULL-terminated); waits until it accepts. Returns
 * false if it exited instead (then p->log says why). */
bool gvmt_memserver_start(struct gvmt_proc *p, const char *key_path,
			  const char *const *extra);
/* Starts gvm-broker on socket_path with --no-cuse, the key, one --donor
 * per address and the extra arguments; waits until the socket accepts.
 * Unless extra gives --state-dir, the broker's identity lives in
 * gvmt_dir()/state-<socket file name>: one host per socket. */
bool gvmt_broker_start(struct gvmt_proc *p, const char *key_path, const char *socket_path,
		       const char *const *donors, const char *const *extra);
/* The state directory gvmt_broker_start gives the broker on socket_path. */
void gvmt_broker_state_dir(const char *socket_path, char *out, size_t n);
/* One counter from the broker's Stats (gvmctl stats), or UINT64_MAX. */
uint64_t gvmt_broker_stat(const char *socket_path, const char *key);
/* Polls gvmt_broker_stat until it equals want or timeout_ms passes. */
bool gvmt_broker_wait_stat(const char *socket_path, const char *key, uint64_t want,
			   int timeout_ms);

/* The unprivileged test user (gvmtest, in group gvm, created if missing;
 * needs root). Returns false where it cannot be had. */
bool gvmt_test_user(uid_t *uid, gid_t *gid, gid_t *gvm_gid);
/* The same for another user name: a second tenant. */
bool gvmt_test_user_named(const char *name, uid_t *uid, gid_t *gid, gid_t *gvm_gid);
/* In a child: become that user with no capabilities. */
void gvmt_become(uid_t uid, gid_t gid, gid_t gvm_gid);

/* Starts gvm-memserver inside network namespace netns (ip netns exec),
 * listening on ip and a port of its own; waits until it accepts there. */
bool gvmt_memserver_start_netns(struct gvmt_proc *p, const char *netns, const char *ip,
				const char *key_path, const char *const *extra);
/* Starts a stopped gvm-memserver again on the same address and log (and
 * network namespace). */
bool gvmt_memserver_restart(struct gvmt_proc *p, const char *key_path,
			    const char *const *extra);

/* A real etcd (Debian's etcd-server, or $GVM_ETCD_BIN) on free loopback
 * ports, its data in a folder under gvmt_dir(). proc.addr is the client
 * address "127.0.0.1:PORT". */
struct gvmt_etcd {
	struct gvmt_proc proc;
	char endpoint[80]; /* "http://127.0.0.1:PORT": for --etcd */
	char data_dir[512];
	int peer_port;
};
/* Starts one and waits until it answers /health with true. */
bool gvmt_etcd_start(struct gvmt_etcd *e);
/* Starts a stopped one again: the same ports, data and log. */
bool gvmt_etcd_restart(struct gvmt_etcd *e);
/* Stops it if it runs (SIGTERM) and removes its data folder. */
void gvmt_etcd_remove(struct gvmt_etcd *e);
/* etcdctl put key value (value may start with '-'): its exit status. */
int gvmt_etcdctl_put(const struct gvmt_etcd *e, const char *key, const char *value);
/* Lines of the file that start with prefix. */
int gvmt_file_count_lines(const char *path, const char *prefix);

/* Runs a program to completion (stdout+stderr to log): its exit status. */
int gvmt_run(const char *log, const char *const *argv);
/* Sends sig and waits: the exit status, or 128+signal if killed. */
int gvmt_proc_stop(struct gvmt_proc *p, int sig);
bool gvmt_proc_alive(const struct gvmt_proc *p);
/* Whether the file contains needle; counts occurrences. */
int gvmt_file_count(const char *path, const char *needle);
uint64_t gvmt_proc_rss_kib(const struct gvmt_proc *p);
const char *gvmt_bin(const char *name, char *buf, size_t n);

uint64_t gvmt_checksum(const uint8_t *data, size_t len);

/* A donor's STATS (as the tool host), or NULL; free with
 * gvm__memserver_stats__free_unpacked. */
struct Gvm__MemserverStats *gvmt_donor_stats(const char *addr, const struct gvm_key *key);

/* Moving a VM's pages to its donors: gvm_push_to_donors (bench/push.h). */
/* Sends a control Hello on s: a re-attach when inc is not NULL (then
 * secret is its proof). gvm_ctl_send's result. */
int gvmt_send_hello(int s, uint32_t version, const char *vm_name, const uint8_t *inc,
		    const uint8_t *secret);
/* The namespace prefix ("HOST.INCARNATION") the broker logged for the VM
 * named vm attached by pid (pid 0: by anyone; the last one logged);
 * region i's namespace is that + ".i". */
bool gvmt_vm_namespace(const char *broker_log, const char *vm, pid_t pid, char *out, size_t n);
/* The pct-th percentile of v[0..n) (sorts v). */
double gvmt_percentile(double *v, size_t n, double pct);

/* Makes root/sys/module/giantvm_kvm, what gvm_detect_mode takes for the
 * GiantVM kernel under GVM_SYSROOT=root; its path goes to module_dir. */
void gvmt_fake_giantvm(const char *root, char *module_dir, size_t n);

/* Starts gvm-memserver listening on ip (e.g. "0.0.0.0", "127.0.0.2") and
 * port (0: a free one), log captured; waits until it accepts there (a
 * wildcard address is reached on loopback). */
bool gvmt_memserver_start_at(struct gvmt_proc *p, const char *ip, int port,
			     const char *key_path, const char *const *extra);
/* Polls until the file contains needle at least count times, or
 * timeout_ms passes. */
bool gvmt_file_wait(const char *path, const char *needle, int count, int timeout_ms);

/* One line of `gvmctl donors`. */
struct gvmt_donor_row {
	char addr[128];
	char state[16];
	unsigned weight, conns;
	uint64_t extents;
};
/* Runs `gvmctl --socket socket_path donors`, its output (only) in
 * out_path: its exit status. */
int gvmt_gvmctl_donors(const char *socket_path, const char *out_path);
/* The line of addr in such an output: false if there is none. */
bool gvmt_donors_row(const char *listing, const char *addr, struct gvmt_donor_row *row);

/* etcdctl del key: its exit status. A donor's key deleted by hand ends
 * its registration while it keeps serving (its keepalives do not put it
 * back). */
int gvmt_etcdctl_del(const struct gvmt_etcd *e, const char *key);

#endif
