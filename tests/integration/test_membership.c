/* test_membership.c: placement survives membership changes. Real
 * gvm-memserver and gvm-broker processes, the donors given by
 * --donors-file, and an unprivileged libgvmmem client whose every page is
 * checked against its pattern after each change:
 * - 2048 donor addresses in one file (127.0.X.Y in a private network
 *   namespace, four memservers behind them): pages spread over hundreds
 *   of them and read back;
 * - a heavy donor added (broker restarted: the location map comes back
 *   from the donors), a weight changed and a donor removed (SIGHUP): every
 *   page reads back after each, and the removed donor, once drained, is
 *   killed without a page lost;
 * - connections: none before use, one kept to each donor holding copies
 *   after the idle time, none to a donor holding nothing;
 * - a donors file made garbage, empty or gone: SIGHUP keeps the donors. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster.h"
#include "gvmmem.h"
#include "procs.h"
#include "vmchild.h"

#define MIB (1u << 20)
#define PAGES(bytes) ((bytes) / GVM_PAGE_SIZE)
#define CONNS_MS 10000       /* idle connections gone (--idle-timeout 1) */

static char key_path[512];
static struct gvm_key key;
static struct gvmt_vm_user user; /* the VM's */

/* The running test's daemons and VM; the teardown stops what a failed
 * test left. */
static struct gvmt_cluster cl;
static const char *broker_args[16]; /* the broker's, after --donors-file FILE */
static struct gvmt_vm vm;

/* ---- the cluster ---- */

/* The cluster's files named name, and donors of 1 GiB: A and B, and C
 * unless it is NULL; their addresses ("IP:PORT") there. */
static void donors_start(const char *name, const char **A, const char **B, const char **C)
{
	const char **addr[] = { A, B, C };

	gvmt_cluster_paths(&cl, name);
	for (unsigned i = 0; i < 3 && addr[i]; i++) {
		assert_true(gvmt_memserver_start(&cl.donor[i], key_path,
						 (const char *[]){ "--capacity", "1G", NULL }));
		*addr[i] = cl.donor[i].addr;
	}
}

/* The broker on the donors file, with the arguments cluster_start kept. */
static bool broker_start(void)
{
	const char *extra[20] = { "--donors-file", cl.file };

	for (unsigned i = 0; broker_args[i]; i++)
		extra[2 + i] = broker_args[i];
	return gvmt_broker_start(&cl.broker, key_path, cl.sock, (const char *[]){ NULL }, extra);
}

static void cluster_start(const char *const *args)
{
	unsigned i;

	for (i = 0; args[i] && i < 15; i++)
		broker_args[i] = args[i];
	broker_args[i] = NULL;
	assert_true(broker_start());
}

/* Eviction has moved what it will (no write-back for 100 ms), and what
 * the VM holds is within the budget: the rest is on the donors, and a
 * verify reads it from there. */
static void settle(void)
{
	uint64_t resident, budget;

	gvmt_cluster_settle(&cl);
	resident = gvmt_broker_stat(cl.sock, "resident_bytes");
	budget = gvmt_broker_stat(cl.sock, "budget_bytes");
	if (resident > budget)
		fail_msg("%llu MiB resident once eviction settled, over the %llu MiB budget "
			 "(writeback_errors %llu)", (unsigned long long)(resident >> 20),
			 (unsigned long long)(budget >> 20),
			 (unsigned long long)gvmt_broker_stat(cl.sock, "writeback_errors"));
}

/* Sends SIGHUP and waits for the broker's verdict on the file: true if it
 * applied it ("donors from FILE: ..."), false if it kept the donors. */
static bool broker_reload(void)
{
	int applied = gvmt_file_count(cl.broker.log, "donors from "),
	    kept = gvmt_file_count(cl.broker.log, "the donors stay as they were");

	assert_int_equal(kill(cl.broker.pid, SIGHUP), 0);
	for (int i = 0; i < 500; i++) {
		if (gvmt_file_count(cl.broker.log, "donors from ") > applied)
			return true;
		if (gvmt_file_count(cl.broker.log, "the donors stay as they were") > kept)
			return false;
		usleep(20000);
	}
	fail_msg("no word on SIGHUP in 10 s (see %s)", cl.broker.log);
	return false;
}

static int teardown(void **state)
{
	(void)state;
	gvmt_vm_kill(&vm);
	gvmt_cluster_kill(&cl);
	return 0;
}

/* ---- 2048 addresses ---- */

#define WIDE_ADDRS 2048u
#define WIDE_SERVERS 4u

/* What the namespace's holder tells the test. */
struct wide_report {
	bool ok;
	bool no_netns;
	char why[600];
	char broker_log[512];
};

static pid_t wide_pid;       /* the holder, a child of the test */
static int wide_stop = -1;  /* a byte or EOF on it stops the holder */

/* In the holder: a network namespace of its own with lo only, four
 * memservers listening on 0.0.0.0 there (nothing outside can reach them),
 * a donors file of WIDE_ADDRS addresses 127.0.X.Y over them and a broker.
 * Reports on report, waits for a byte (or EOF) on stop, then stops the
 * broker (SIGTERM) and exits with its status. */
static void wide_holder(int report, int stop)
{
	struct gvmt_proc ms[WIDE_SERVERS] = { 0 }, broker = { 0 };
	struct wide_report r = { 0 };
	char c;
	int rc;
	FILE *f;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (unshare(CLONE_NEWNET)) {
		snprintf(r.why, sizeof(r.why), "unshare(CLONE_NEWNET): %s", strerror(errno));
		r.no_netns = true;
		goto out;
	}
	if (system("ip link set lo up") != 0) {
		snprintf(r.why, sizeof(r.why), "ip link set lo up: failed");
		r.no_netns = true;
		goto out;
	}
	for (unsigned k = 0; k < WIDE_SERVERS; k++)
		if (!gvmt_memserver_start_at(&ms[k], "0.0.0.0", 0, key_path,
					     (const char *[]){ "--capacity", "1G", NULL })) {
			snprintf(r.why, sizeof(r.why), "gvm-memserver --listen 0.0.0.0:PORT did "
				 "not start: see %s", ms[k].log);
			goto out;
		}
	f = fopen(cl.file, "w");
	if (!f) {
		snprintf(r.why, sizeof(r.why), "%s: %s", cl.file, strerror(errno));
		goto out;
	}
	fprintf(f, "# %u addresses, %u memservers behind them\n", WIDE_ADDRS, WIDE_SERVERS);
	for (unsigned i = 0; i < WIDE_ADDRS; i++)
		fprintf(f, "127.0.%u.%u:%s\n", i / 250, i % 250 + 1,
			strrchr(ms[i % WIDE_SERVERS].addr, ':') + 1);
	fclose(f);
	if (!gvmt_broker_start(&broker, key_path, cl.sock, (const char *[]){ NULL },
			       (const char *[]){ "--donors-file", cl.file, "--budget", "32M",
						 NULL })) {
		snprintf(r.why, sizeof(r.why), "gvm-broker did not start: see %s", broker.log);
		goto out;
	}
	snprintf(r.broker_log, sizeof(r.broker_log), "%s", broker.log);
	r.ok = true;
out:
	if (write(report, &r, sizeof(r)) != sizeof(r) || !r.ok)
		_exit(1);
	(void)!read(stop, &c, 1);
	rc = gvmt_proc_stop(&broker, SIGTERM);
	for (unsigned k = 0; k < WIDE_SERVERS; k++)
		gvmt_proc_stop(&ms[k], SIGTERM);
	_exit(rc);
}

static int wide_teardown(void **state)
{
	if (wide_pid > 0) {
		kill(wide_pid, SIGKILL); /* its daemons die with it */
		waitpid(wide_pid, NULL, 0);
		wide_pid = 0;
	}
	if (wide_stop >= 0) {
		close(wide_stop);
		wide_stop = -1;
	}
	return teardown(state);
}

/* 2048 addresses in one donors file, four memservers behind them: the
 * broker takes them all, and 128 MiB under a 32 MiB budget spread over
 * hundreds of them read back page for page. */
static void test_2048_donor_addresses_serve_every_page(void **state)
{
	struct wide_report r;
	struct pollfd pf;
	int report[2], stop[2], status;
	unsigned listed = 0, holders = 0, others = 0;
	uint64_t remote;
	char line[512];
	FILE *f;

	(void)state;
	if (geteuid() != 0) {
		print_message("needs root for a network namespace of its own: skipped\n");
		skip();
	}
	gvmt_cluster_paths(&cl, "wide");
	assert_int_equal(pipe(report), 0);
	assert_int_equal(pipe(stop), 0);
	wide_pid = fork();
	assert_true(wide_pid >= 0);
	if (!wide_pid) {
		close(report[0]);
		close(stop[1]);
		wide_holder(report[1], stop[0]);
	}
	close(report[1]);
	close(stop[0]);
	wide_stop = stop[1];
	pf = (struct pollfd){ report[0], POLLIN, 0 };
	assert_int_equal(poll(&pf, 1, 60000), 1);
	assert_int_equal(read(report[0], &r, sizeof(r)), sizeof(r));
	close(report[0]);
	if (r.no_netns) {
		print_message("%s: skipped\n", r.why);
		skip();
	}
	if (!r.ok)
		fail_msg("%s", r.why);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), WIDE_ADDRS);
	/* nothing asked yet: not one connection */
	assert_int_equal(gvmt_broker_stat(cl.sock, "donor_connections"), 0);

	gvmt_vm_start(&vm, cl.sock, "vm-wide", 128 * MIB, &user);
	gvmt_vm_write(&vm, 0, PAGES(128 * MIB));
	settle();
	assert_true(gvmt_broker_stat(cl.sock, "evictions") > 0);
	remote = gvmt_broker_stat(cl.sock, "remote_pages");
	gvmt_vm_verify(&vm, "128 MiB over 2048 addresses");
	assert_true(gvmt_broker_stat(cl.sock, "remote_reads") > 0);
	/* what is not resident came from the donors */
	assert_true(gvmt_broker_stat(cl.sock, "remote_pages") - remote >= PAGES(64 * MIB));
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "dead_donors"), 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), WIDE_ADDRS);

	assert_int_equal(gvmt_gvmctl_donors(cl.sock, cl.listing), 0);
	assert_int_equal(gvmt_file_count_lines(cl.listing, ""), WIDE_ADDRS + 1);
	assert_int_equal(gvmt_file_count_lines(cl.listing, "ADDRESS "), 1);
	f = fopen(cl.listing, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		struct gvmt_donor_row row;
		unsigned long long extents;

		if (sscanf(line, "%127s %15s %u %llu %u", row.addr, row.state, &row.weight,
			   &extents, &row.conns) != 5)
			continue;
		listed++;
		holders += extents > 0;
		if (strcmp(row.state, "up") && strcmp(row.state, "idle") && others++ < 4)
			print_message("donor %s: %s\n", row.addr, row.state);
	}
	fclose(f);
	assert_int_equal(listed, WIDE_ADDRS);
	if (others) /* none down, dead, draining or removed */
		fail_msg("%u of %u donors neither up nor idle", others, WIDE_ADDRS);
	/* ~800 extents written: they went to hundreds of addresses */
	assert_true(holders >= 256);
	assert_int_equal(gvmt_file_count(r.broker_log, "donors from "), 1);
	assert_int_equal(gvmt_file_count(r.broker_log, ": 2048 listed ("), 1);

	gvmt_vm_quit(&vm);
	assert_int_equal(write(wide_stop, "s", 1), 1);
	close(wide_stop);
	wide_stop = -1;
	assert_int_equal(waitpid(wide_pid, &status, 0), wide_pid);
	wide_pid = 0;
	/* the holder exits with the broker's status: a clean stop */
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	memset(&cl, 0, sizeof(cl));
}

/* ---- donors added, reweighed and removed ---- */

/* 64 MiB written over A and B (one copy each, 16 MiB budget); then:
 * a. C, as heavy as A and B together, is listed and the broker restarted:
 *    the re-attached VM's locations come back from A and B (LIST), every
 *    page reads back, and new extents go to C too;
 * b. A's weight 1 -> 5 (SIGHUP): nothing moves, every page reads back;
 * c. B is no longer listed (SIGHUP): its copies move to A and C, it is
 *    removed and its namespaces dropped; every page reads back, and again
 *    once B is killed: nothing is read from it any more. */
static void test_membership_changes_keep_every_page(void **state)
{
	const uint64_t first = PAGES(64 * MIB), more = PAGES(32 * MIB);
	struct gvmt_donor_row a, b, c, row;
	const char *A, *B, *C;
	uint64_t rereplicated;
	bool same = false;

	(void)state;
	donors_start("changes", &A, &B, &C);
	gvmt_cluster_write_donors(&cl, "%s 1\n%s 1\n", A, B);
	cluster_start((const char *[]){ "--replicas", "1", "--budget", "16M",
					"--rereplicate-rate", "1G", NULL });
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 2);
	gvmt_vm_start(&vm, cl.sock, "vm-members", 96 * MIB, &user);
	gvmt_vm_write(&vm, 0, first);
	settle();
	assert_true(gvmt_broker_stat(cl.sock, "evictions") > 0);
	a = gvmt_cluster_row(&cl, A);
	b = gvmt_cluster_row(&cl, B);
	assert_true(a.extents > 0 && b.extents > 0);
	assert_false(gvmt_cluster_lists(&cl, C, &row));

	/* a. C added, the broker restarted */
	gvmt_cluster_write_donors(&cl, "%s 1\n%s 1\n%s 2\n", A, B, C);
	assert_int_equal(gvmt_proc_stop(&cl.broker, SIGTERM), 0);
	assert_true(broker_start());
	assert_true(gvmt_broker_wait_stat(cl.sock, "vms", 1, 20000)); /* it re-attached */
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 3);
	for (int i = 0; i < 100 && !same; i++) { /* the map, from the donors' LIST */
		same = gvmt_cluster_row(&cl, A).extents == a.extents &&
		       gvmt_cluster_row(&cl, B).extents == b.extents;
		if (!same)
			usleep(200000);
	}
	if (!same)
		fail_msg("after the restart A holds %llu extents (%llu before), B %llu (%llu)",
			 (unsigned long long)gvmt_cluster_row(&cl, A).extents,
			 (unsigned long long)a.extents,
			 (unsigned long long)gvmt_cluster_row(&cl, B).extents,
			 (unsigned long long)b.extents);
	gvmt_vm_verify(&vm, "after the restart with C added");
	gvmt_vm_write(&vm, first, more); /* extents never written: placed anew */
	settle();
	c = gvmt_cluster_row(&cl, C);
	assert_true(c.extents > 0);
	assert_int_equal(c.weight, 2);
	assert_true(gvmt_donor_used_pages(&cl.donor[2], &key) > 0);
	gvmt_vm_verify(&vm, "after new extents went to C");

	/* b. A's weight 1 -> 5 */
	a = gvmt_cluster_row(&cl, A);
	b = gvmt_cluster_row(&cl, B);
	c = gvmt_cluster_row(&cl, C);
	gvmt_cluster_write_donors(&cl, "%s 5\n%s 1\n%s 2\n", A, B, C);
	assert_true(broker_reload());
	assert_int_equal(gvmt_file_count(cl.broker.log, "weight 1 -> 5"), 1);
	row = gvmt_cluster_row(&cl, A);
	assert_int_equal(row.weight, 5);
	assert_int_equal(row.extents, a.extents); /* new placements only: nothing moves */
	assert_int_equal(gvmt_cluster_row(&cl, B).extents, b.extents);
	assert_int_equal(gvmt_cluster_row(&cl, C).extents, c.extents);
	assert_int_equal(gvmt_broker_stat(cl.sock, "draining_extents"), 0);
	gvmt_vm_verify(&vm, "after A's weight went to 5");

	/* c. B removed */
	rereplicated = gvmt_broker_stat(cl.sock, "rereplicated_pages");
	gvmt_cluster_write_donors(&cl, "%s 5\n%s 2\n", A, C);
	assert_true(broker_reload());
	assert_true(gvmt_file_count(cl.broker.log, "no longer listed") >= 1);
	gvmt_cluster_wait_drained(&cl, B);
	assert_true(gvmt_file_wait(cl.broker.log, "drained", 1, 1000));
	assert_int_equal(gvmt_cluster_row(&cl, B).extents, 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 2);
	assert_true(gvmt_broker_stat(cl.sock, "rereplicated_pages") > rereplicated);
	gvmt_donor_wait_empty(&cl.donor[1], &key); /* our namespaces dropped there */
	gvmt_vm_verify(&vm, "after B was drained");
	assert_int_equal(gvmt_proc_stop(&cl.donor[1], SIGKILL), 128 + SIGKILL);
	gvmt_vm_verify(&vm, "after B was killed");
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	/* a removed donor is no concern */
	assert_int_equal(gvmt_broker_stat(cl.sock, "dead_donors"), 0);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop(&cl);
}

/* ---- connections ---- */

/* --idle-timeout 1: no connection before use; once the VM's pages are on
 * A, B and C and nothing moves, one connection stays to each; C drained
 * and removed keeps none; D added while nothing is written never gets
 * one. D listens on 127.0.0.2 at A's port: a port the broker's sandbox
 * allowed at start. */
static void test_idle_connections_close_but_one_to_each_holder(void **state)
{
	struct gvmt_proc *d = &cl.donor[3];
	struct gvmt_donor_row row;
	uint64_t max_conns = 0;
	char added[200];
	const char *A, *B, *C;
	bool done = false;

	(void)state;
	donors_start("idle", &A, &B, &C);
	assert_true(gvmt_memserver_start_at(d, "127.0.0.2", atoi(strrchr(A, ':') + 1), key_path,
					    (const char *[]){ "--capacity", "1G", NULL }));
	gvmt_cluster_write_donors(&cl, "%s 1\n%s 1\n%s 1\n", A, B, C);
	cluster_start((const char *[]){ "--idle-timeout", "1", "--budget", "16M",
					"--rereplicate-rate", "1G", NULL });
	usleep(1000000);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donor_connections"), 0); /* none before use */
	gvmt_vm_start(&vm, cl.sock, "vm-idle", 48 * MIB, &user);
	gvmt_vm_do(&vm, GVMT_VM_WRITE, 0, PAGES(48 * MIB), &max_conns);
	settle();
	/* what closes below: write-backs had more than one open to some donor */
	if (max_conns <= 3)
		fail_msg("at most %llu donor connections during the fill: nothing to close",
			 (unsigned long long)max_conns);
	assert_true(gvmt_cluster_row(&cl, A).extents > 0);
	assert_true(gvmt_cluster_row(&cl, B).extents > 0);
	assert_true(gvmt_cluster_row(&cl, C).extents > 0);
	for (int waited = 0; waited < CONNS_MS && !done; waited += 200) {
		done = gvmt_cluster_row(&cl, A).conns == 1 &&
		       gvmt_cluster_row(&cl, B).conns == 1 &&
		       gvmt_cluster_row(&cl, C).conns == 1;
		if (!done)
			usleep(200000);
	}
	if (!done)
		fail_msg("idle holders keep one connection each: A %u, B %u, C %u",
			 gvmt_cluster_row(&cl, A).conns, gvmt_cluster_row(&cl, B).conns,
			 gvmt_cluster_row(&cl, C).conns);

	/* C leaves: drained, it holds nothing, its connection goes */
	gvmt_cluster_write_donors(&cl, "%s 1\n%s 1\n", A, B);
	assert_true(broker_reload());
	gvmt_cluster_wait_drained(&cl, C);
	done = false;
	for (int waited = 0; waited < CONNS_MS && !done; waited += 200) {
		done = gvmt_cluster_row(&cl, C).conns == 0;
		if (!done)
			usleep(200000);
	}
	if (!done)
		fail_msg("removed donor C still has %u connections %d s on",
			 gvmt_cluster_row(&cl, C).conns, CONNS_MS / 1000);
	usleep(2500000); /* over twice the idle time: the holders keep theirs */
	assert_int_equal(gvmt_cluster_row(&cl, A).conns, 1);
	assert_int_equal(gvmt_cluster_row(&cl, B).conns, 1);
	assert_int_equal(gvmt_cluster_row(&cl, C).conns, 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donor_connections"), 2);
	gvmt_vm_verify(&vm, "after C was drained");

	/* D added: nothing to write, so no connection */
	gvmt_cluster_write_donors(&cl, "%s 1\n%s 1\n%s 1\n", A, B, d->addr);
	assert_true(broker_reload());
	snprintf(added, sizeof(added), "donor %s: added, weight 1", d->addr);
	assert_int_equal(gvmt_file_count(cl.broker.log, added), 1);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 3);
	usleep(1500000);
	row = gvmt_cluster_row(&cl, d->addr);
	assert_string_equal(row.state, "idle");
	assert_int_equal(row.extents, 0);
	assert_int_equal(row.conns, 0);
	assert_int_equal(gvmt_cluster_row(&cl, C).conns, 0);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop(&cl);
}

/* ---- a bad donors file ---- */

/* The donors file made garbage, then only a comment (no donor), then
 * removed: each SIGHUP logs why and keeps the donors as they are, and
 * every page reads back; a good file then applies again. */
static void test_bad_donors_file_keeps_the_donors(void **state)
{
	struct gvmt_donor_row a, b, row;
	const char *A, *B;

	(void)state;
	donors_start("bad", &A, &B, NULL);
	gvmt_cluster_write_donors(&cl, "%s 1\n%s 1\n", A, B);
	cluster_start((const char *[]){ "--budget", "16M", NULL });
	gvmt_vm_start(&vm, cl.sock, "vm-bad", 32 * MIB, &user);
	gvmt_vm_write(&vm, 0, PAGES(32 * MIB));
	settle();
	a = gvmt_cluster_row(&cl, A);
	b = gvmt_cluster_row(&cl, B);
	assert_true(a.extents > 0 && b.extents > 0);
	for (int round = 0; round < 3; round++) {
		if (round == 0)
			gvmt_cluster_write_donors(&cl, "this is not a donor\n%s 1\n", A);
		else if (round == 1)
			gvmt_cluster_write_donors(&cl, "# no donor at all\n");
		else
			assert_int_equal(unlink(cl.file), 0);
		assert_false(broker_reload());
		assert_true(gvmt_proc_alive(&cl.broker));
		assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 2);
		assert_int_equal(gvmt_broker_stat(cl.sock, "draining_extents"), 0);
		row = gvmt_cluster_row(&cl, A);
		assert_true(!strcmp(row.state, "up") || !strcmp(row.state, "idle"));
		assert_int_equal(row.weight, 1);
		assert_int_equal(row.extents, a.extents);
		row = gvmt_cluster_row(&cl, B);
		assert_true(!strcmp(row.state, "up") || !strcmp(row.state, "idle"));
		assert_int_equal(row.extents, b.extents);
	}
	assert_int_equal(gvmt_file_count(cl.broker.log, "the donors stay as they were"), 3);
	gvmt_vm_verify(&vm, "after three bad reloads");
	gvmt_cluster_write_donors(&cl, "%s 1\n%s 1\n", A, B);
	assert_true(broker_reload());
	assert_int_equal(gvmt_file_count(cl.broker.log,
					 "2 listed (0 new, 0 back, 0 reweighed, 0 draining now)"),
			 1);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop(&cl);
}

/* A broker whose open-file limit is below what its listed donors may
 * need says so when a reload lists more; it still serves (connections
 * open only when used). */
static void test_a_low_open_file_limit_is_logged(void **state)
{
	struct rlimit low = { 512, 512 };
	char *list = malloc(700 * 24), *p;

	(void)state;
	assert_non_null(list);
	gvmt_cluster_paths(&cl, "nofile");
	p = list;
	for (unsigned i = 0; i < 100; i++) /* 100 x 2 + 256 spare < 512: quiet */
		p += sprintf(p, "127.0.%u.%u:7700\n", 60 + i / 250, i % 250 + 1);
	gvmt_cluster_write_donors(&cl, "%s", list);
	cluster_start((const char *[]){ NULL });
	assert_int_equal(prlimit(cl.broker.pid, RLIMIT_NOFILE, &low, NULL), 0);
	for (unsigned i = 100; i < 700; i++)
		p += sprintf(p, "127.0.%u.%u:7700\n", 60 + i / 250, i % 250 + 1);
	gvmt_cluster_write_donors(&cl, "%s", list);
	assert_true(broker_reload());
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 700);
	assert_true(gvmt_file_wait(cl.broker.log, "open-file limit 512: 700 donors x 2 "
						  "connections may need 1656", 1, 5000));
	assert_int_equal(gvmt_file_count(cl.broker.log, "open-file limit"), 1);
	assert_true(gvmt_proc_alive(&cl.broker));
	free(list);
	gvmt_cluster_stop(&cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_2048_donor_addresses_serve_every_page,
					  wide_teardown),
		cmocka_unit_test_teardown(test_membership_changes_keep_every_page, teardown),
		cmocka_unit_test_teardown(test_idle_connections_close_but_one_to_each_holder,
					  teardown),
		cmocka_unit_test_teardown(test_bad_donors_file_keeps_the_donors, teardown),
		cmocka_unit_test_teardown(test_a_low_open_file_limit_is_logged, teardown),
	};

	gvmt_main_init(key_path, sizeof(key_path), &key);
	user.have = gvmt_test_user(&user.uid, &user.gid, &user.gvm_gid);
	return cmocka_run_group_tests_name("membership", tests, NULL, NULL);
}
