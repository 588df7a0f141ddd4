/* failover_bench.c: gvm-failover-bench, what a donor's death costs a broker
 * run with --replicas 2 or more. A VM writes --size bytes and moves them to
 * the donors (push.h), then keeps a small limit of its own; random one-page
 * read faults on pages not in memory, back to back, give the fault latency
 * with nothing else going on. Then the donor --kill names is SIGKILLed and,
 * while the same reads go on, the broker's counters are asked over its
 * socket (as gvmctl stats does) every --poll-ms: seconds until dead_donors
 * counts it and until degraded_extents is 0 again. Reports those times per
 * GiB held on the donors, and the fault latency while re-replication runs. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "ctlmsg.h"
#include "gvmmem.h"
#include "hostcpu.h"
#include "log.h"
#include "pattern.h"
#include "push.h"

#define SEED 91u
#define PUSH_TIMEOUT_MS 600000
#define SAMPLES_MAX 4000000u /* latencies kept per phase */

/* The broker's counters this benchmark reads. */
struct fo_stats {
	uint64_t replicas, dead_donors, degraded_extents, rereplicated_pages;
	uint64_t failovers, hedged_reads, poisoned_pages;
};

/* Latencies of one phase, in µs. */
struct fo_lat {
	double *v;
	size_t n;
};

/* The VM under test: its region and its reads. */
struct fo_vm {
	struct gvm_session *s;
	uint8_t *mem;
	size_t size;
	int memfd;
	uint64_t rng;
	unsigned pace_us;
	uint64_t bad; /* pages read back unlike what was written */
};

/* A page with no copy left is poisoned: with one donor dead of two copies
 * that is the broker losing data, and the figures mean nothing. */
static void on_sigbus(int sig)
{
	static const char msg[] = "gvm-failover-bench: SIGBUS: a page the VM wrote was "
				  "poisoned (no copy left)\n";

	ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)sig;
	(void)n;
	_exit(3);
}

static void stat_set(struct fo_stats *st, const char *key, uint64_t v)
{
	static const struct {
		const char *name;
		size_t offset;
	} keys[] = {
		{ "replicas", offsetof(struct fo_stats, replicas) },
		{ "dead_donors", offsetof(struct fo_stats, dead_donors) },
		{ "degraded_extents", offsetof(struct fo_stats, degraded_extents) },
		{ "rereplicated_pages", offsetof(struct fo_stats, rereplicated_pages) },
		{ "failovers", offsetof(struct fo_stats, failovers) },
		{ "hedged_reads", offsetof(struct fo_stats, hedged_reads) },
		{ "poisoned_pages", offsetof(struct fo_stats, poisoned_pages) },
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strcmp(keys[i].name, key))
			memcpy((char *)st + keys[i].offset, &v, sizeof(v));
}

/* The broker's counters, asked over its socket. 0 or -errno. */
static int broker_stats(const char *path, struct fo_stats *st)
{
	Gvm__Control *m;
	int err = gvm_ctl_stats(path, &m);

	if (err)
		return err;
	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < m->stats->n_entries; i++)
		stat_set(st, m->stats->entries[i]->key, m->stats->entries[i]->value);
	gvm__control__free_unpacked(m, NULL);
	return 0;
}

/* Attaches a region of size bytes, writes its pages and moves them all to
 * the donors, then sets the VM's own limit. 0 or -errno. */
static int vm_start(struct fo_vm *vm, const char *sock, size_t size, uint64_t limit)
{
	struct gvm_region reg = { "ram", NULL, size, -1, 0, 0 };
	char name[32];
	int err;

	vm->size = size;
	vm->memfd = memfd_create("failover-bench", MFD_CLOEXEC);
	if (vm->memfd < 0 || ftruncate(vm->memfd, (off_t)size))
		return -errno;
	vm->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->memfd, 0);
	if (vm->mem == MAP_FAILED)
		return -errno;
	reg.host_addr = vm->mem;
	reg.memfd = vm->memfd;
	snprintf(name, sizeof(name), "failover-%d", (int)getpid());
	vm->s = gvm_attach(sock, name, &reg, 1, &err);
	if (!vm->s)
		return err;
	for (uint64_t p = 0; p < size / GVM_PAGE_SIZE; p++)
		gvm_pattern_fill_page(vm->mem + p * GVM_PAGE_SIZE, SEED, p, 0);
	return gvm_push_to_donors(vm->s, vm->memfd, limit, PUSH_TIMEOUT_MS);
}

/* A random page of the region not in memory now, so touching it faults. */
static uint64_t vm_pick_missing(struct fo_vm *vm)
{
	uint64_t pages = vm->size / GVM_PAGE_SIZE, p = 0;
	unsigned char in;

	for (int tries = 0; tries < 64; tries++) {
		vm->rng ^= vm->rng << 13, vm->rng ^= vm->rng >> 7, vm->rng ^= vm->rng << 17;
		p = vm->rng % pages;
		if (mincore(vm->mem + p * GVM_PAGE_SIZE, GVM_PAGE_SIZE, &in) || !(in & 1))
			break;
	}
	return p;
}

/* One read fault: its latency goes to lat, its page is checked. */
static void vm_read_one(struct fo_vm *vm, struct fo_lat *lat)
{
	uint8_t want[GVM_PAGE_SIZE];
	uint64_t p = vm_pick_missing(vm);
	volatile uint8_t *b = vm->mem + p * GVM_PAGE_SIZE;
	double t0 = bench_now_us();

	(void)*b;
	if (lat->n < SAMPLES_MAX)
		lat->v[lat->n++] = bench_now_us() - t0;
	gvm_pattern_fill_page(want, SEED, p, 0);
	if (memcmp(vm->mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE))
		vm->bad++;
	if (vm->pace_us)
		usleep(vm->pace_us);
}

/* Every 97th page against what was written. */
static void vm_verify(struct fo_vm *vm)
{
	uint8_t want[GVM_PAGE_SIZE];

	for (size_t p = 0; p < vm->size / GVM_PAGE_SIZE; p += 97) {
		gvm_pattern_fill_page(want, SEED, p, 0);
		if (memcmp(vm->mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE))
			vm->bad++;
	}
}

static double pct(struct fo_lat *lat, double q)
{
	if (!lat->n)
		return 0;
	qsort(lat->v, lat->n, sizeof(lat->v[0]), bench_cmp_double);
	return lat->v[(size_t)((double)(lat->n - 1) * q)];
}

static void print_lat(const char *what, const char *key, struct fo_lat *lat)
{
	printf("%-44s %8zu %10.1f %10.1f\n", what, lat->n, pct(lat, 0.50), pct(lat, 0.99));
	if (lat->n)
		printf("key failover_%s_p50_us %.1f\nkey failover_%s_p99_us %.1f\n"
		       "key failover_%s_samples %zu\n",
		       key, pct(lat, 0.50), key, pct(lat, 0.99), key, lat->n);
}

/* The watch on the broker: its counters once every poll_ms, asked between
 * two reads (never during one), in the quiet phase as after the kill. */
struct fo_watch {
	const char *sock;
	unsigned poll_ms;
	double next_us;
	struct fo_stats st;
};

/* 1 when the counters were asked now, 0 when not due yet, or -errno. */
static int watch_poll(struct fo_watch *w)
{
	double now = bench_now_us();
	int err;

	if (now < w->next_us)
		return 0;
	w->next_us = now + w->poll_ms * 1e3;
	err = broker_stats(w->sock, &w->st);
	if (err)
		fprintf(stderr, "gvm-failover-bench: broker at %s: %s\n", w->sock, strerror(-err));
	return err ? err : 1;
}

/* Percent of the host CPU the hypervisor took since *m (then moved to now). */
static double steal_since(uint64_t m[2])
{
	uint64_t busy, steal, total;
	double pct_stolen;

	bench_host_cpu(&busy, &steal, &total);
	pct_stolen = total > m[1] ? 100.0 * (double)(steal - m[0]) / (double)(total - m[1]) : 0;
	m[0] = steal;
	m[1] = total;
	return pct_stolen;
}

/* samples reads with nothing else going on. 0 or -errno. */
static int quiet_phase(struct fo_vm *vm, struct fo_watch *w, unsigned samples,
		       struct fo_lat *quiet)
{
	for (unsigned i = 0; i < samples; i++) {
		int err = watch_poll(w);

		if (err < 0)
			return err;
		vm_read_one(vm, quiet);
	}
	return 0;
}

/* What the kill led to, in seconds from it (negative: not seen). */
struct fo_times {
	double dead_s, clean_s;
	uint64_t degraded_at_dead;
	double steal_pct; /* from the death declared to degraded_extents 0 */
};

/* Kills the donor, then reads on and watches until dead_donors grows past
 * dead_before and degraded_extents is 0 again, or timeout_s. Latencies
 * before the death is declared go to detect, after it to during. */
static int kill_and_watch(struct fo_vm *vm, struct fo_watch *w, pid_t donor, unsigned timeout_s,
			  uint64_t dead_before, struct fo_lat *detect, struct fo_lat *during,
			  struct fo_times *t)
{
	uint64_t cpu[2] = { 0, 0 };
	double t_kill;

	*t = (struct fo_times){ .dead_s = -1, .clean_s = -1 };
	if (kill(donor, SIGKILL)) {
		fprintf(stderr, "gvm-failover-bench: kill %d: %s\n", (int)donor, strerror(errno));
		return -errno;
	}
	t_kill = w->next_us = bench_now_us();
	for (;;) {
		int err = watch_poll(w);
		double s = (bench_now_us() - t_kill) / 1e6;

		if (err < 0)
			return err;
		if (err && t->dead_s < 0 && w->st.dead_donors > dead_before) {
			t->dead_s = s;
			t->degraded_at_dead = w->st.degraded_extents;
			steal_since(cpu);
		}
		if (err && t->dead_s >= 0 && !w->st.degraded_extents) {
			t->clean_s = s;
			t->steal_pct = steal_since(cpu);
			return 0;
		}
		if (s > timeout_s)
			return 0;
		vm_read_one(vm, t->dead_s < 0 ? detect : during);
	}
}

/* The figures, as lines for people and "key NAME VALUE" lines for run.sh. */
static void report(const struct fo_vm *vm, pid_t donor, unsigned timeout_s,
		   const struct fo_stats *st0, const struct fo_stats *st1, const struct fo_times *t,
		   double quiet_steal_pct)
{
	double gib = (double)vm->size / (1u << 30), rr = t->clean_s - t->dead_s;
	double mib = (double)(st1->rereplicated_pages - st0->rereplicated_pages) * GVM_PAGE_SIZE /
		     (1u << 20);

	printf("donor %d killed: declared dead after %.2f s, %" PRIu64 " extents short of a "
	       "copy then; ", (int)donor, t->dead_s, t->degraded_at_dead);
	if (t->clean_s < 0)
		printf("degraded_extents not 0 within %u s\n", timeout_s);
	else
		printf("degraded_extents 0 after %.2f s (%.2f s of re-replication, %.1f s per GiB "
		       "held)\n", t->clean_s, rr, rr / gib);
	printf("re-replicated %.1f MiB; failovers %" PRIu64 ", hedged reads %" PRIu64
	       ", poisoned pages %" PRIu64 "; %" PRIu64 " pages read back wrong\n",
	       mib, st1->failovers - st0->failovers, st1->hedged_reads - st0->hedged_reads,
	       st1->poisoned_pages - st0->poisoned_pages, vm->bad);
	printf("key failover_held_mib %llu\n", (unsigned long long)(vm->size >> 20));
	if (t->dead_s >= 0)
		printf("key failover_detect_s %.2f\nkey failover_degraded_extents %" PRIu64 "\n",
		       t->dead_s, t->degraded_at_dead);
	if (t->clean_s >= 0)
		printf("key failover_clean_s %.2f\nkey failover_clean_s_per_gib %.2f\n"
		       "key failover_rereplicate_s %.2f\nkey failover_rereplicate_s_per_gib %.2f\n"
		       "key failover_rereplicated_mib %.1f\nkey failover_rereplicate_mbps %.1f\n"
		       "key failover_rereplicate_steal_pct %.0f\n",
		       t->clean_s, t->clean_s / gib, rr, rr / gib, mib,
		       rr > 0 ? mib * 1.048576 / rr : 0, t->steal_pct);
	printf("key failover_failovers %" PRIu64 "\nkey failover_hedged_reads %" PRIu64 "\n"
	       "key failover_poisoned_pages %" PRIu64 "\nkey failover_bad_pages %" PRIu64 "\n"
	       "key failover_quiet_steal_pct %.0f\n",
	       st1->failovers - st0->failovers, st1->hedged_reads - st0->hedged_reads,
	       st1->poisoned_pages - st0->poisoned_pages, vm->bad, quiet_steal_pct);
}

static int usage_error(const char *fmt, const char *arg)
{
	return gvm_usage_error("gvm-failover-bench", fmt, arg);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gvm-failover-bench --socket BROKER --kill DONOR_PID\n"
		"          [--size 512M] [--limit 16M] [--samples 20000] [--pace-us 0]\n"
		"          [--poll-ms 50] [--timeout 300]\n"
		"What a donor's death costs a broker run with --replicas 2 or more. A VM\n"
		"writes --size bytes and moves them to the donors, then keeps --limit\n"
		"resident. --samples random read faults on pages not in memory, back to back\n"
		"(or one every --pace-us), give the fault latency with nothing else going on.\n"
		"Then DONOR_PID is SIGKILLed while the same reads go on, and the broker's\n"
		"counters are asked every --poll-ms (in both phases): seconds until\n"
		"dead_donors counts it and until degraded_extents is 0, per GiB held, and\n"
		"the fault latency meanwhile. Run as root (userfaultfd).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "kill", required_argument, NULL, 'k' },
		{ "size", required_argument, NULL, 'z' },
		{ "limit", required_argument, NULL, 'l' },
		{ "samples", required_argument, NULL, 'n' },
		{ "pace-us", required_argument, NULL, 'p' },
		{ "poll-ms", required_argument, NULL, 'P' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct fo_watch w = { .sock = GVM_DEFAULT_SOCKET, .poll_ms = 50 };
	uint64_t size = 512ull << 20, limit = 16ull << 20, cpu[2] = { 0, 0 };
	unsigned samples = 20000, timeout_s = 300;
	struct fo_vm vm = { .rng = 0x9e3779b97f4a7c15ULL };
	struct fo_lat quiet = { 0 }, detect = { 0 }, during = { 0 };
	struct fo_stats st0, st1;
	struct fo_times t;
	double quiet_steal;
	pid_t donor = 0;
	int opt, err;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		unsigned long v = optarg ? strtoul(optarg, NULL, 10) : 0;

		switch (opt) {
		case 's': w.sock = optarg; break;
		case 'k':
			if (v <= 1)
				return usage_error("--kill %s: want the donor's process id", optarg);
			donor = (pid_t)v;
			break;
		case 'z':
			if (gvm_parse_size(optarg, &size) || size < (8u << 20) ||
			    size % GVM_PAGE_SIZE)
				return usage_error("--size %s: want 8M or more, whole pages", optarg);
			break;
		case 'l':
			if (gvm_parse_size(optarg, &limit) || limit < GVM_PAGE_SIZE)
				return usage_error("--limit %s: want a size like 16M", optarg);
			break;
		case 'n':
			if (v < 1 || v > SAMPLES_MAX)
				return usage_error("--samples %s: want 1..4000000", optarg);
			samples = (unsigned)v;
			break;
		case 'p':
			if (v > 1000000)
				return usage_error("--pace-us %s: want 0..1000000", optarg);
			vm.pace_us = (unsigned)v;
			break;
		case 'P':
			if (v < 1 || v > 10000)
				return usage_error("--poll-ms %s: want 1..10000", optarg);
			w.poll_ms = (unsigned)v;
			break;
		case 't':
			if (v < 1)
				return usage_error("--timeout %s: want seconds above 0", optarg);
			timeout_s = (unsigned)v;
			break;
		case 'h': usage(stdout); return 0;
		default: return 2;
		}
	}
	if (!donor)
		return usage_error("%s: want --kill DONOR_PID", "no donor to kill");
	gvm_log_init("gvm-failover-bench", GVM_LOG_WARN);
	signal(SIGBUS, on_sigbus);
	quiet.v = malloc(SAMPLES_MAX * sizeof(double));
	detect.v = malloc(SAMPLES_MAX * sizeof(double));
	during.v = malloc(SAMPLES_MAX * sizeof(double));
	if (!quiet.v || !detect.v || !during.v)
		return 1;

	if (watch_poll(&w) < 0)
		return 1;
	st0 = w.st;
	if (st0.replicas < 2 || st0.dead_donors)
		fprintf(stderr, "gvm-failover-bench: the broker keeps %" PRIu64 " copies with %" PRIu64
			" donors dead already: the donor's pages may be lost, not copied again\n",
			st0.replicas, st0.dead_donors);
	err = vm_start(&vm, w.sock, size, limit);
	if (err) {
		fprintf(stderr, "gvm-failover-bench: a %llu MiB VM on the donors: %s\n",
			(unsigned long long)(size >> 20), gvm_strerror(err));
		return 1;
	}
	printf("%llu MiB written and moved to the donors (%" PRIu64 " copies each), VM limit "
	       "%llu MiB; reads %s, broker asked every %u ms\n",
	       (unsigned long long)(size >> 20), st0.replicas, (unsigned long long)(limit >> 20),
	       vm.pace_us ? "paced" : "back to back", w.poll_ms);
	printf("%-44s %8s %10s %10s\n", "random read faults", "samples", "p50 us", "p99 us");
	steal_since(cpu);
	if (quiet_phase(&vm, &w, samples, &quiet))
		return 1;
	quiet_steal = steal_since(cpu);
	if (w.st.degraded_extents)
		fprintf(stderr, "gvm-failover-bench: %" PRIu64 " extents short of a copy before the "
			"kill\n", w.st.degraded_extents);
	print_lat("no donor down (quiet)", "quiet", &quiet);
	fflush(stdout);
	if (kill_and_watch(&vm, &w, donor, timeout_s, st0.dead_donors, &detect, &during, &t))
		return 1;
	print_lat("donor down, not yet declared dead", "detect", &detect);
	print_lat("donor dead, re-replication running", "during", &during);
	vm_verify(&vm);
	if (broker_stats(w.sock, &st1))
		st1 = w.st;
	report(&vm, donor, timeout_s, &st0, &st1, &t, quiet_steal);
	gvm_detach(vm.s);
	return vm.bad ? 1 : 0;
}
