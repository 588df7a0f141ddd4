/* cluster.c: one test's broker and donors (cluster.h): started and read
 * through procs.c (gvmctl donors, the broker's counters, a donor's STATS),
 * checked with cmocka's asserts. */
#include "cluster.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dclient.h"

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

void gvmt_cluster_paths(struct gvmt_cluster *cl, const char *name)
{
	char base[64];

	snprintf(base, sizeof(base), "%s.sock", name);
	gvmt_path(cl->sock, sizeof(cl->sock), base);
	snprintf(base, sizeof(base), "%s.donors", name);
	gvmt_path(cl->file, sizeof(cl->file), base);
	snprintf(base, sizeof(base), "%s.listing", name);
	gvmt_path(cl->listing, sizeof(cl->listing), base);
}

void gvmt_cluster_start(struct gvmt_cluster *cl, const char *name, const char *key_path,
			unsigned ndonors, const char *const *broker_extra)
{
	const char *donors[GVMT_CLUSTER_DONORS_MAX + 1] = { NULL };

	assert_true(ndonors >= 1 && ndonors <= GVMT_CLUSTER_DONORS_MAX);
	memset(cl, 0, sizeof(*cl));
	gvmt_cluster_paths(cl, name);
	for (unsigned i = 0; i < ndonors; i++) {
		assert_true(gvmt_memserver_start(&cl->donor[i], key_path, NULL));
		donors[i] = cl->donor[i].addr;
	}
	assert_true(gvmt_broker_start(&cl->broker, key_path, cl->sock, donors, broker_extra));
	assert_true(gvmt_broker_wait_stat(cl->sock, "donors", ndonors, 10000));
}

void gvmt_cluster_stop_clean(struct gvmt_cluster *cl)
{
	assert_int_equal(gvmt_proc_stop(&cl->broker, SIGTERM), 0);
	for (unsigned i = 0; i < GVMT_CLUSTER_DONORS_MAX; i++)
		if (cl->donor[i].pid)
			assert_int_equal(gvmt_proc_stop(&cl->donor[i], SIGTERM), 0);
	memset(cl, 0, sizeof(*cl));
}

void gvmt_cluster_stop(struct gvmt_cluster *cl)
{
	assert_int_equal(gvmt_proc_stop(&cl->broker, SIGTERM), 0);
	for (unsigned i = 0; i < GVMT_CLUSTER_DONORS_MAX; i++)
		if (cl->donor[i].pid)
			gvmt_proc_stop(&cl->donor[i], SIGKILL);
	memset(cl, 0, sizeof(*cl));
}

void gvmt_cluster_kill(struct gvmt_cluster *cl)
{
	if (cl->broker.pid > 0)
		gvmt_proc_stop(&cl->broker, SIGKILL);
	for (unsigned i = 0; i < GVMT_CLUSTER_DONORS_MAX; i++)
		if (cl->donor[i].pid > 0)
			gvmt_proc_stop(&cl->donor[i], SIGKILL);
	memset(cl, 0, sizeof(*cl));
}

void gvmt_cluster_write_donors(const struct gvmt_cluster *cl, const char *fmt, ...)
{
	char tmp[600];
	va_list ap;
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", cl->file);
	f = fopen(tmp, "w");
	assert_non_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, cl->file), 0);
}

void gvmt_cluster_settle(const struct gvmt_cluster *cl)
{
	uint64_t last = UINT64_MAX;

	for (int i = 0; i < 100; i++) {
		uint64_t now = gvmt_broker_stat(cl->sock, "writebacks");

		if (now == last)
			return;
		last = now;
		sleep_ms(100);
	}
}

bool gvmt_cluster_lists(const struct gvmt_cluster *cl, const char *addr, struct gvmt_donor_row *row)
{
	assert_int_equal(gvmt_gvmctl_donors(cl->sock, cl->listing), 0);
	return gvmt_donors_row(cl->listing, addr, row);
}

struct gvmt_donor_row gvmt_cluster_row(const struct gvmt_cluster *cl, const char *addr)
{
	struct gvmt_donor_row row;

	if (!gvmt_cluster_lists(cl, addr, &row))
		fail_msg("gvmctl donors does not list %s", addr);
	return row;
}

void gvmt_cluster_wait_drained(const struct gvmt_cluster *cl, const char *addr)
{
	struct gvmt_donor_row row = {0};

	for (int waited = 0; waited < GVMT_DRAIN_MS; waited += 200) {
		row = gvmt_cluster_row(cl, addr);
		if (!strcmp(row.state, "removed") &&
		    gvmt_broker_stat(cl->sock, "draining_extents") == 0)
			return;
		sleep_ms(200);
	}
	fail_msg("donor %s not drained in %d s: state %s, %llu extents, draining_extents %llu",
		 addr, GVMT_DRAIN_MS / 1000, row.state, (unsigned long long)row.extents,
		 (unsigned long long)gvmt_broker_stat(cl->sock, "draining_extents"));
}

/* A donor's counters, as the tool host. */
static void donor_counts(const struct gvmt_proc *p, const struct gvm_key *key, uint64_t *used,
			 uint64_t *pages_read)
{
	Gvm__MemserverStats *m = gvmt_donor_stats(p->addr, key);

	if (!m)
		fail_msg("no STATS from donor %s", p->addr);
	if (used)
		*used = m->used_pages;
	if (pages_read)
		*pages_read = m->pages_read;
	gvm__memserver_stats__free_unpacked(m, NULL);
}

uint64_t gvmt_donor_used_pages(const struct gvmt_proc *p, const struct gvm_key *key)
{
	uint64_t used;

	donor_counts(p, key, &used, NULL);
	return used;
}

uint64_t gvmt_donor_pages_read(const struct gvmt_proc *p, const struct gvm_key *key)
{
	uint64_t n;

	donor_counts(p, key, NULL, &n);
	return n;
}

void gvmt_donor_wait_empty(const struct gvmt_proc *p, const struct gvm_key *key)
{
	for (int i = 0; i < 250 && gvmt_donor_used_pages(p, key); i++)
		sleep_ms(20);
	assert_int_equal(gvmt_donor_used_pages(p, key), 0);
}
