/* test_etcd.c: donor membership through a real etcd (proto/etcd.c): a
 * gvm-memserver started with --etcd is seen by gvm_etcd_watch with its
 * address, weight and capacity; a second donor arrives in the next set; a
 * donor killed with SIGKILL leaves when its lease ends, not before; values
 * written by hand that are malformed are skipped and counted; an outage of
 * etcd is reported once and the set comes back after it; stopping a watch
 * is prompt; endpoints, donors and the command line are refused with a
 * reason.
 * And a gvm-broker started with --etcd only, its VM's pages checked
 * against their pattern after each change: a donor that registers is
 * taken in without a restart and holds new pages; one whose key goes
 * (lease ended, deleted, or paused past its lease) is drained, its pages
 * moved to the others, or back in use when it registers again; an etcd
 * outage keeps the donors and lets SIGHUP read --donors-file; a donor at
 * a port the sandbox forbids is refused with the reason. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster.h"
#include "etcd.h"
#include "gvmmem.h"
#include "procs.h"
#include "vmchild.h"

#define SETS_MAX     64 /* sets a test keeps */
#define SET_DONORS   8	/* donors kept of each */
#define WAIT_MS	     10000
#define CAPACITY_64M (64ull << 20)

static struct gvmt_etcd etcd; /* shared by the tests that do not stop it */
static char key_path[512];

/* What one watch has handed over: every set (the first SET_DONORS donors of
 * each) and every outage. */
struct seen {
	pthread_mutex_t lock;
	unsigned sets, outages;
	int last_status;
	struct {
		unsigned n;
		struct gvm_etcd_donor d[SET_DONORS];
	} set[SETS_MAX];
};

static void on_set(void *ctx, int status, const struct gvm_etcd_donor *donors, unsigned n)
{
	struct seen *s = ctx;

	pthread_mutex_lock(&s->lock);
	s->last_status = status;
	if (status < 0) {
		s->outages++;
	} else if (s->sets < SETS_MAX) {
		s->set[s->sets].n = n;
		memcpy(s->set[s->sets].d, donors,
		       (n < SET_DONORS ? n : SET_DONORS) * sizeof(donors[0]));
		s->sets++;
	}
	pthread_mutex_unlock(&s->lock);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct gvm_etcd *watch(const char *endpoints, const char *prefix, struct seen *s)
{
	struct gvm_etcd *e;
	char why[512];

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	if (gvm_etcd_create(&e, endpoints, prefix, why, sizeof(why)))
		fail_msg("gvm_etcd_create: %s", why);
	assert_int_equal(gvm_etcd_watch(e, on_set, s), 0);
	return e;
}

/* The donor addr in set i, or NULL. Under s->lock. */
static const struct gvm_etcd_donor *in_set(const struct seen *s, unsigned i, const char *addr)
{
	for (unsigned j = 0; j < s->set[i].n && j < SET_DONORS; j++)
		if (!strcmp(s->set[i].d[j].addr, addr))
			return &s->set[i].d[j];
	return NULL;
}

/* Waits until the latest set has addr (present) or lacks it: that set's
 * index, or -1 after timeout_ms. */
static int wait_donor(struct seen *s, const char *addr, bool present, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; now_ms() < end; sleep_ms(20)) {
		int at = -1;

		pthread_mutex_lock(&s->lock);
		if (s->sets && s->last_status == 0 && !!in_set(s, s->sets - 1, addr) == present)
			at = (int)s->sets - 1;
		pthread_mutex_unlock(&s->lock);
		if (at >= 0)
			return at;
	}
	return -1;
}

/* Waits until *count (s->sets or s->outages) reaches want: false after
 * timeout_ms. */
static bool wait_count(struct seen *s, const unsigned *count, unsigned want, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; now_ms() < end; sleep_ms(20)) {
		bool ok;

		pthread_mutex_lock(&s->lock);
		ok = *count >= want;
		pthread_mutex_unlock(&s->lock);
		if (ok)
			return true;
	}
	return false;
}

static void start_donor(struct gvmt_proc *p, const char *endpoints, const char *prefix,
			const char *weight, const char *ttl)
{
	const char *extra[] = {"--capacity",	"64M",	"--etcd",   endpoints,
			       "--etcd-prefix", prefix, "--weight", weight,
			       "--etcd-ttl",	ttl,	NULL};

	if (!gvmt_memserver_start(p, key_path, extra))
		fail_msg("memserver did not start; see %s", p->log);
}

static void test_memserver_with_etcd_is_seen_with_its_addr_weight_and_capacity(void **state)
{
	const struct gvm_etcd_donor *d;
	struct gvmt_proc a;
	struct gvm_etcd *w;
	struct seen s;
	int at;

	(void)state;
	w = watch(etcd.endpoint, "/gvmt/registers/", &s);
	assert_true(wait_count(&s, &s.sets, 1, WAIT_MS)); /* the first read: nobody yet */
	start_donor(&a, etcd.endpoint, "/gvmt/registers/", "7", "10");
	at = wait_donor(&s, a.addr, true, WAIT_MS);
	assert_true(at >= 0);
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.set[at].n, 1);
	d = in_set(&s, (unsigned)at, a.addr);
	assert_non_null(d);
	assert_int_equal(d->weight, 7);
	assert_int_equal(d->capacity_bytes, CAPACITY_64M);
	assert_int_equal(s.set[0].n, 0); /* the first read, before it registered */
	assert_int_equal(s.outages, 0);
	pthread_mutex_unlock(&s.lock);
	/* The donor logs after its put returns, which the watch may beat. */
	assert_true(gvmt_file_wait(a.log, "etcd: registered", 1, WAIT_MS));
	assert_int_equal(gvmt_file_count(a.log, "etcd: registered"), 1);
	assert_int_equal(gvm_etcd_skipped(w), 0);
	assert_int_equal(gvmt_proc_stop(&a, SIGTERM), 0);
	gvm_etcd_destroy(w);
}

static void test_second_donor_arrives_in_the_next_set(void **state)
{
	char endpoints[200];
	struct gvmt_proc a, b;
	struct gvm_etcd *w;
	struct seen s;
	unsigned before;
	int at;

	(void)state;
	/* The first endpoint refuses (nothing on port 1): on to the next one. */
	snprintf(endpoints, sizeof(endpoints), "http://127.0.0.1:1,%s", etcd.endpoint);

	w = watch(endpoints, "/gvmt/second/", &s);
	start_donor(&a, etcd.endpoint, "/gvmt/second/", "1", "10");
	assert_true(wait_donor(&s, a.addr, true, WAIT_MS) >= 0);
	pthread_mutex_lock(&s.lock);
	before = s.sets;
	pthread_mutex_unlock(&s.lock);
	start_donor(&b, endpoints, "/gvmt/second/", "3", "10");
	at = wait_donor(&s, b.addr, true, WAIT_MS);
	assert_true(at >= 0);
	pthread_mutex_lock(&s.lock);
	/* The very next set has both, and nothing else happened between. */
	assert_int_equal(at, before);
	assert_int_equal(s.set[at].n, 2);
	assert_non_null(in_set(&s, (unsigned)at, a.addr));
	assert_int_equal(in_set(&s, (unsigned)at, a.addr)->weight, 1);
	assert_int_equal(in_set(&s, (unsigned)at, b.addr)->weight, 3);
	assert_int_equal(s.outages, 0); /* one dead endpoint of two is no outage */
	pthread_mutex_unlock(&s.lock);
	assert_int_equal(gvmt_proc_stop(&a, SIGTERM), 0);
	assert_int_equal(gvmt_proc_stop(&b, SIGTERM), 0);
	gvm_etcd_destroy(w);
}

static void test_killed_donor_leaves_the_set_when_its_lease_ends(void **state)
{
	struct gvmt_proc a, b;
	struct gvm_etcd *w;
	struct seen s;
	uint64_t killed, gone;
	int at;

	(void)state;
	w = watch(etcd.endpoint, "/gvmt/killed/", &s);
	start_donor(&a, etcd.endpoint, "/gvmt/killed/", "1", "2");
	start_donor(&b, etcd.endpoint, "/gvmt/killed/", "1", "10");
	assert_true(wait_donor(&s, a.addr, true, WAIT_MS) >= 0);
	assert_true(wait_donor(&s, b.addr, true, WAIT_MS) >= 0);
	killed = now_ms();
	assert_int_equal(gvmt_proc_stop(&a, SIGKILL), 128 + SIGKILL);
	assert_int_equal(gvmt_proc_stop(&b, SIGKILL), 128 + SIGKILL);
	/* Its key outlives it until the lease (2 s, kept alive every 0.67 s) ends. */
	sleep_ms(300);
	pthread_mutex_lock(&s.lock);
	assert_non_null(in_set(&s, s.sets - 1, a.addr));
	pthread_mutex_unlock(&s.lock);
	at = wait_donor(&s, a.addr, false, 8000);
	gone = now_ms() - killed;
	assert_true(at >= 0);
	assert_in_range(gone, 1000, 6000);
	pthread_mutex_lock(&s.lock);
	/* b, on a 10 s lease, is still there. */
	assert_int_equal(s.set[at].n, 1);
	assert_non_null(in_set(&s, (unsigned)at, b.addr));
	pthread_mutex_unlock(&s.lock);
	gvm_etcd_destroy(w);
}

/* Puts prefix+name = value by hand (etcdctl). */
static void put(const char *prefix, const char *name, const char *value)
{
	char key[256];

	snprintf(key, sizeof(key), "%s%s", prefix, name);
	assert_int_equal(gvmt_etcdctl_put(&etcd, key, value), 0);
}

static void test_malformed_values_are_skipped_and_counted(void **state)
{
	static const char *const bad[][2] = {
	    {"127.0.0.1:2", "not json"},
	    {"127.0.0.1:3", "{\"addr\":\"127.0.0.1:3\",\"weight\":0,\"capacity\":1}"},
	    {"127.0.0.1:4", "{\"addr\":\"127.0.0.1:4\",\"weight\":1000001,\"capacity\":1}"},
	    {"localhost:5", "{\"addr\":\"localhost:5\",\"weight\":1,\"capacity\":1}"},
	    {"127.0.0.1:6", "{\"addr\":\"127.0.0.1:7\",\"weight\":1,\"capacity\":1}"},
	    {"127.0.0.1:9", "{\"addr\":{\"a\":{\"b\":{\"c\":{\"d\":1}}}},\"weight\":1}"},
	    {"127.0.0.1:10", "{\"addr\":\"127.0.0.1:10\",\"weight\":\"1\",\"capacity\":1}"},
	    {"127.0.0.1:11", "{\"addr\":\"127.0.0.1:11\",\"weight\":1,\"capacity\":-5}"},
	    {"127.0.0.1", "{\"addr\":\"127.0.0.1\",\"weight\":1,\"capacity\":1}"},
	    {"127.0.0.1:13", "{\"addr\":\"127.0.0.1:13\",\"weight\":1,\"capacity\":1} x"},
	};
	const char *prefix = "/gvmt/malformed/";
	const size_t n_bad = sizeof(bad) / sizeof(bad[0]);
	char big[GVM_ETCD_VALUE_MAX_BYTES + 100];
	struct gvm_etcd *w;
	struct seen s;
	int at;

	(void)state;
	/* Over 1 KiB, though JSON and otherwise fine. */
	snprintf(big, sizeof(big),
		 "{\"addr\":\"127.0.0.1:8\",\"weight\":1,\"capacity\":1,\"pad\":\"%0*d\"}",
		 GVM_ETCD_VALUE_MAX_BYTES, 0);
	put(prefix, "127.0.0.1:1", "{\"addr\":\"127.0.0.1:1\",\"weight\":2,\"capacity\":4096}");
	/* Half of them there at the first read, half arriving through the watch. */
	for (size_t i = 0; i < n_bad / 2; i++)
		put(prefix, bad[i][0], bad[i][1]);
	w = watch(etcd.endpoint, prefix, &s);
	assert_true(wait_donor(&s, "127.0.0.1:1", true, WAIT_MS) >= 0);
	for (size_t i = n_bad / 2; i < n_bad; i++)
		put(prefix, bad[i][0], bad[i][1]);
	put(prefix, "127.0.0.1:8", big);
	put(prefix, "127.0.0.1:12", "{\"addr\":\"127.0.0.1:12\",\"weight\":5,\"capacity\":8192}");
	at = wait_donor(&s, "127.0.0.1:12", true, WAIT_MS);
	assert_true(at >= 0);
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.set[at].n, 2);
	assert_int_equal(in_set(&s, (unsigned)at, "127.0.0.1:1")->weight, 2);
	assert_int_equal(in_set(&s, (unsigned)at, "127.0.0.1:1")->capacity_bytes, 4096);
	assert_int_equal(in_set(&s, (unsigned)at, "127.0.0.1:12")->weight, 5);
	pthread_mutex_unlock(&s.lock);
	assert_int_equal(gvm_etcd_skipped(w), n_bad + 1);
	/* A good key overwritten with junk no longer names a donor. */
	put(prefix, "127.0.0.1:1", "{\"addr\":\"127.0.0.1:1\"");
	at = wait_donor(&s, "127.0.0.1:1", false, WAIT_MS);
	assert_true(at >= 0);
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.set[at].n, 1);
	assert_non_null(in_set(&s, (unsigned)at, "127.0.0.1:12"));
	assert_int_equal(s.outages, 0);
	pthread_mutex_unlock(&s.lock);
	assert_int_equal(gvm_etcd_skipped(w), n_bad + 2);
	gvm_etcd_destroy(w);
}

static void test_etcd_outage_is_reported_once_and_the_set_comes_back(void **state)
{
	struct gvmt_etcd own;
	struct gvmt_proc a;
	struct gvm_etcd *w;
	struct seen s;
	unsigned sets;

	(void)state;
	assert_true(gvmt_etcd_start(&own));
	w = watch(own.endpoint, "/gvmt/outage/", &s);
	start_donor(&a, own.endpoint, "/gvmt/outage/", "4", "2");
	assert_true(wait_donor(&s, a.addr, true, WAIT_MS) >= 0);
	assert_true(gvmt_proc_stop(&own.proc, SIGTERM) >= 0); /* etcd dies of SIGTERM */
	assert_true(wait_count(&s, &s.outages, 1, WAIT_MS));
	pthread_mutex_lock(&s.lock);
	assert_true(s.last_status < 0);
	sets = s.sets;
	pthread_mutex_unlock(&s.lock);
	/* Retrying with backoff meanwhile: still one report. */
	sleep_ms(2500);
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.outages, 1);
	assert_int_equal(s.sets, sets);
	pthread_mutex_unlock(&s.lock);

	assert_true(gvmt_etcd_restart(&own));
	assert_true(wait_donor(&s, a.addr, true, 15000) >= 0);
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.outages, 1);
	assert_int_equal(s.last_status, 0);
	assert_int_equal(in_set(&s, s.sets - 1, a.addr)->weight, 4);
	pthread_mutex_unlock(&s.lock);
	/* The donor said so once each way, not once per attempt. */
	for (int waited = 0; waited < WAIT_MS && !gvmt_file_count(a.log, "etcd: back");
	     waited += 20)
		sleep_ms(20);
	assert_int_equal(gvmt_file_count(a.log, "etcd: lost"), 1);
	assert_int_equal(gvmt_file_count(a.log, "etcd: back"), 1);
	assert_int_equal(gvmt_proc_stop(&a, SIGTERM), 0);
	gvm_etcd_destroy(w);
	gvmt_etcd_remove(&own);
}

static void test_destroy_ends_a_blocked_watch_promptly(void **state)
{
	struct gvm_etcd *w;
	struct seen s;
	uint64_t t;

	(void)state;
	w = watch(etcd.endpoint, "/gvmt/destroy/", &s);
	put("/gvmt/destroy/", "127.0.0.1:1",
	    "{\"addr\":\"127.0.0.1:1\",\"weight\":1,\"capacity\":0}");
	assert_true(wait_donor(&s, "127.0.0.1:1", true, WAIT_MS) >= 0);
	sleep_ms(200); /* in the watch's poll by now */
	t = now_ms();
	gvm_etcd_destroy(w);
	assert_in_range(now_ms() - t, 0, 500);
	/* And one waiting out a backoff against nothing. */
	w = watch("http://127.0.0.1:1", "/gvmt/destroy/", &s);
	assert_true(wait_count(&s, &s.outages, 1, WAIT_MS));
	t = now_ms();
	gvm_etcd_destroy(w);
	assert_in_range(now_ms() - t, 0, 500);
}

static void test_endpoints_and_donors_are_refused_with_a_reason(void **state)
{
	static const char *const refused[] = {
	    "http://localhost:2379",
	    "https://127.0.0.1:2379",
	    "127.0.0.1:2379",
	    "http://127.0.0.1:2379/v3",
	    "http://127.0.0.1:0",
	    "http://127.0.0.1",
	    "http://[fe80::1%eth0]:2379",
	    "http://127.0.0.1:2379,",
	    "http://1.2.3:2379",
	    "http://127.0.0.1:2379,http://127.0.0.1:2380,http://127.0.0.1:2381,"
	    "http://127.0.0.1:2382,http://127.0.0.1:2383,http://127.0.0.1:2384,"
	    "http://127.0.0.1:2385,http://127.0.0.1:2386,http://127.0.0.1:2387",
	};
	struct gvm_etcd_donor d = {.weight = 1};
	struct gvm_etcd *e = NULL;
	char why[512];

	(void)state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		why[0] = '\0';
		if (gvm_etcd_create(&e, refused[i], GVM_ETCD_DEFAULT_PREFIX, why, sizeof(why)) !=
		    -EINVAL)
			fail_msg("endpoint '%s' was accepted", refused[i]);
		assert_true(strlen(why) > 10);
	}
	assert_int_equal(gvm_etcd_create(&e, "http://localhost:2379", "/p/", why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "not a name"));
	assert_int_equal(gvm_etcd_create(&e, "http://127.0.0.1:2379", "", why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(gvm_etcd_create(&e, "http://127.0.0.1:2379", "/a b/", why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(
	    gvm_etcd_create(&e, "http://127.0.0.1:2379,http://[::1]:2379", "/p/", why, sizeof(why)),
	    0);
	/* A donor to register: an IP literal with a port, a weight in range. */
	strcpy(d.addr, "[::1]:7700");
	assert_int_equal(gvm_etcd_check_donor(&d, why, sizeof(why)), 0);
	strcpy(d.addr, "localhost:7700");
	assert_int_equal(gvm_etcd_check_donor(&d, why, sizeof(why)), -EINVAL);
	strcpy(d.addr, "10.0.0.7");
	assert_int_equal(gvm_etcd_check_donor(&d, why, sizeof(why)), -EINVAL);
	strcpy(d.addr, "10.0.0.7:7700");
	d.weight = 0;
	assert_int_equal(gvm_etcd_check_donor(&d, why, sizeof(why)), -EINVAL);
	assert_int_equal(gvm_etcd_register(e, &d, 10), -EINVAL);
	d.weight = GVM_ETCD_WEIGHT_MAX + 1;
	assert_int_equal(gvm_etcd_check_donor(&d, why, sizeof(why)), -EINVAL);
	d.weight = GVM_ETCD_WEIGHT_MAX;
	assert_int_equal(gvm_etcd_check_donor(&d, why, sizeof(why)), 0);
	assert_int_equal(gvm_etcd_register(e, &d, GVM_ETCD_TTL_MIN_S - 1), -EINVAL);
	gvm_etcd_destroy(e);
}

/* gvm-memserver ARGS... exits 2 with needle in its log. */
static void refused_by_memserver(const char *needle, const char *const *args)
{
	const char *argv[24];
	char bin[512], log[600];
	static int serial;
	int argc = 0;

	snprintf(log, sizeof(log), "%s/cmdline-etcd-%d.log", gvmt_dir(), ++serial);
	argv[argc++] = gvmt_bin("gvm-memserver", bin, sizeof(bin));
	argv[argc++] = "--key-file";
	argv[argc++] = key_path;
	for (int i = 0; args[i] && argc < 23; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	assert_int_equal(gvmt_run(log, argv), 2);
	if (!gvmt_file_count(log, needle))
		fail_msg("%s does not say '%s'", log, needle);
}

static void test_memserver_refuses_what_it_cannot_register(void **state)
{
	const char *ep = etcd.endpoint;

	(void)state;
	refused_by_memserver("wildcard",
			     (const char *[]){"--listen", "0.0.0.0:17999", "--etcd", ep, NULL});
	refused_by_memserver("wildcard",
			     (const char *[]){"--listen", "[::]:17999", "--etcd", ep, NULL});
	refused_by_memserver("--advertise", (const char *[]){"--etcd", ep, "--advertise",
							     "donor.example:7700", NULL});
	refused_by_memserver("--weight", (const char *[]){"--etcd", ep, "--weight", "0", NULL});
	refused_by_memserver("--weight",
			     (const char *[]){"--etcd", ep, "--weight", "1000001", NULL});
	refused_by_memserver("--etcd-ttl", (const char *[]){"--etcd", ep, "--etcd-ttl", "1", NULL});
	refused_by_memserver("need --etcd", (const char *[]){"--weight", "5", NULL});
	refused_by_memserver("not a name",
			     (const char *[]){"--etcd", "http://localhost:2379", NULL});
}

static void test_the_advertised_address_is_the_one_registered(void **state)
{
	const char *extra[] = {
	    "--etcd",	     etcd.endpoint, "--etcd-prefix", "/gvmt/advertise/", "--advertise",
	    "10.9.8.7:7700", NULL};
	struct gvmt_proc a;
	struct gvm_etcd *w;
	struct seen s;
	int at;

	(void)state;
	w = watch(etcd.endpoint, "/gvmt/advertise/", &s);
	assert_true(gvmt_memserver_start(&a, key_path, extra));
	at = wait_donor(&s, "10.9.8.7:7700", true, WAIT_MS);
	assert_true(at >= 0);
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.set[at].n, 1);
	assert_null(in_set(&s, (unsigned)at, a.addr));
	pthread_mutex_unlock(&s.lock);
	assert_int_equal(gvmt_proc_stop(&a, SIGTERM), 0);
	gvm_etcd_destroy(w);
}

/* ---- a broker that takes its donors from etcd ---- */

/* The broker's seccomp sandbox lets it connect only to the ports its
 * donors had at start, the default donor port and etcd's: a donor that
 * arrives through etcd listens on 127.0.X.Y:7700, an address of its own
 * at the default port. */
#define DONOR_PORT   7700
#define MIB	     (1u << 20)
#define PAGES(bytes) ((bytes) / GVM_PAGE_SIZE)

static struct gvm_key key;
static struct gvmt_vm_user user; /* the VM's */

/* The running test's daemons and VM; the teardown stops what a failed
 * test left. */
static struct gvmt_cluster cl;
static struct gvmt_proc other_broker;
static struct gvmt_vm vm;

/* Donor i listens on ip:7700 and registers at endpoints under prefix:
 * its address. */
static const char *etcd_donor_start(unsigned i, const char *ip, const char *endpoints,
				    const char *prefix, const char *weight, const char *ttl)
{
	const char *extra[] = {"--capacity",	"1G",	"--etcd",   endpoints,
			       "--etcd-prefix", prefix, "--weight", weight,
			       "--etcd-ttl",	ttl,	NULL};

	if (!gvmt_memserver_start_at(&cl.donor[i], ip, DONOR_PORT, key_path, extra))
		fail_msg("memserver on %s:%d did not start; see %s", ip, DONOR_PORT,
			 cl.donor[i].log);
	return cl.donor[i].addr;
}

/* The broker, no --donor: what etcd lists under prefix, and the args;
 * waits until it has the donors it should. */
static void broker_start(const char *endpoints, const char *prefix, uint64_t donors,
			 const char *const *args)
{
	const char *extra[24] = {"--etcd", endpoints, "--etcd-prefix", prefix};

	for (unsigned i = 0; args[i] && i < 19; i++)
		extra[4 + i] = args[i];
	if (!gvmt_broker_start(&cl.broker, key_path, cl.sock, (const char *[]){NULL}, extra))
		fail_msg("gvm-broker did not start; see %s", cl.broker.log);
	assert_true(gvmt_broker_wait_stat(cl.sock, "donors", donors, WAIT_MS));
}

static int cluster_teardown(void **state)
{
	(void)state;
	gvmt_vm_kill(&vm);
	if (other_broker.pid > 0)
		gvmt_proc_stop(&other_broker, SIGKILL);
	gvmt_cluster_kill(&cl);
	return 0;
}

/* The VM, of size bytes, writes its first written bytes; eviction then
 * settles. */
static void vm_filled(const char *name, size_t size, size_t written)
{
	gvmt_vm_start(&vm, cl.sock, name, size, &user);
	gvmt_vm_write(&vm, 0, PAGES(written));
	gvmt_cluster_settle(&cl);
}

/* The extents A and B hold, both some. */
static void both_hold(const char *A, const char *B, uint64_t *a, uint64_t *b)
{
	*a = gvmt_cluster_row(&cl, A).extents;
	*b = gvmt_cluster_row(&cl, B).extents;
	assert_true(*a > 0 && *b > 0);
}

/* Waits until addr's state is state: false after timeout_ms. */
static bool wait_state(const char *addr, const char *state, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; now_ms() < end; sleep_ms(50))
		if (!strcmp(gvmt_cluster_row(&cl, addr).state, state))
			return true;
	return false;
}

/* How often the broker's log says the formatted needle. */
static int broker_said(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int broker_said(const char *fmt, ...)
{
	char needle[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(needle, sizeof(needle), fmt, ap);
	va_end(ap);
	return gvmt_file_count(cl.broker.log, needle);
}

static bool broker_waits_for(const char *needle, int count, int timeout_ms)
{
	return gvmt_file_wait(cl.broker.log, needle, count, timeout_ms);
}

/* A registers through etcd before the broker starts with no --donor; B
 * registers while a VM runs with pages on A. The broker takes B in
 * without a restart, puts most new extents on it (weight 10 against 1),
 * and every page reads back, B's from B. */
static void test_broker_uses_a_donor_that_registers_through_etcd(void **state)
{
	const char *prefix = "/gvmt/broker-adds/";
	struct gvmt_donor_row a, b;
	uint64_t a_before, b_read;
	char line[200];
	const char *A, *B;

	(void)state;
	gvmt_cluster_paths(&cl, "adds");
	A = etcd_donor_start(0, "127.0.113.1", etcd.endpoint, prefix, "1", "10");
	broker_start(etcd.endpoint, prefix, 1,
		     (const char *[]){"--budget", "16M", "--replicas", "1", NULL});
	assert_int_equal(broker_said("donors from etcd: 1 listed (1 new"), 1);

	vm_filled("vm-etcd-adds", 64 * MIB, 32 * MIB);
	a = gvmt_cluster_row(&cl, A);
	a_before = a.extents;
	assert_true(a_before > 0);
	assert_int_equal(a.weight, 1);
	/* over the budget: on A */
	assert_true(gvmt_donor_used_pages(&cl.donor[0], &key) >= PAGES(8 * MIB));

	B = etcd_donor_start(1, "127.0.113.2", etcd.endpoint, prefix, "10", "10");
	assert_true(gvmt_broker_wait_stat(cl.sock, "donors", 2, WAIT_MS));
	snprintf(line, sizeof(line), "donor %s: added, weight 10", B);
	assert_int_equal(broker_said("%s", line), 1);
	assert_int_equal(broker_said("donors from etcd: 2 listed (1 new, 0 back"), 1);
	b = gvmt_cluster_row(&cl, B);
	assert_int_equal(b.weight, 10);
	assert_int_equal(b.extents, 0); /* nothing written since */

	gvmt_vm_write(&vm, PAGES(32 * MIB), PAGES(32 * MIB));
	gvmt_cluster_settle(&cl);
	a = gvmt_cluster_row(&cl, A);
	b = gvmt_cluster_row(&cl, B);
	if (b.extents == 0 || b.extents <= 2 * (a.extents - a_before))
		fail_msg("new extents: %llu on B (weight 10), %llu more on A (weight 1)",
			 (unsigned long long)b.extents, (unsigned long long)(a.extents - a_before));
	assert_true(gvmt_donor_used_pages(&cl.donor[1], &key) > 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "draining_extents"), 0);

	b_read = gvmt_donor_pages_read(&cl.donor[1], &key);
	gvmt_vm_verify(&vm, "with pages on A and B");
	assert_true(gvmt_donor_pages_read(&cl.donor[1], &key) > b_read); /* B's pages came from B */
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	assert_int_equal(broker_said("no longer listed"), 0);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop(&cl);
}

/* A, B and C registered with 2 s leases; the VM's pages on A and B.
 * C holds nothing and is killed: when its lease ends (not before) the
 * broker drains it at once and removes it. B's key is deleted while B
 * keeps serving (the watch sees what a lease's end shows): B's copies
 * go to A, our namespaces on B are dropped, B is removed; every page
 * reads back, and again once B is killed. */
static void test_a_donor_whose_lease_expires_is_drained(void **state)
{
	const char *prefix = "/gvmt/broker-drains/";
	struct gvmt_donor_row a, b, c;
	uint64_t a_before, b_before, rereplicated, killed, gone;
	char key_name[200];
	const char *A, *B, *C;

	(void)state;
	gvmt_cluster_paths(&cl, "drains");
	A = etcd_donor_start(0, "127.0.114.1", etcd.endpoint, prefix, "1", "2");
	B = etcd_donor_start(1, "127.0.114.2", etcd.endpoint, prefix, "1", "2");
	broker_start(etcd.endpoint, prefix, 2,
		     (const char *[]){"--budget", "16M", "--rereplicate-rate", "1G", NULL});
	vm_filled("vm-etcd-drains", 48 * MIB, 48 * MIB);
	both_hold(A, B, &a_before, &b_before);

	/* C: added, holds nothing, killed; its key outlives it by its lease. */
	C = etcd_donor_start(2, "127.0.114.3", etcd.endpoint, prefix, "1", "2");
	assert_true(gvmt_broker_wait_stat(cl.sock, "donors", 3, WAIT_MS));
	assert_int_equal(broker_said("donor %s: added, weight 1", C), 1);
	assert_int_equal(gvmt_cluster_row(&cl, C).extents, 0);
	killed = now_ms();
	assert_int_equal(gvmt_proc_stop(&cl.donor[2], SIGKILL), 128 + SIGKILL);
	sleep_ms(300);
	c = gvmt_cluster_row(&cl, C);
	assert_true(strcmp(c.state, "draining") && strcmp(c.state, "removed"));
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 3);
	if (!wait_state(C, "removed", 10000))
		fail_msg("C not removed 10 s after its death (2 s lease): %s",
			 gvmt_cluster_row(&cl, C).state);
	gone = now_ms() - killed;
	assert_in_range(gone, 1000, 8000);
	assert_int_equal(broker_said("donor %s: no longer listed: draining its 0 extent copies", C),
			 1);
	assert_int_equal(broker_said("donor %s: drained", C), 1);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 2);
	assert_int_equal(gvmt_broker_stat(cl.sock, "draining_extents"), 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "dead_donors"), 0);
	assert_int_equal(gvmt_cluster_row(&cl, A).extents, a_before);
	assert_int_equal(gvmt_cluster_row(&cl, B).extents, b_before);
	gvmt_vm_verify(&vm, "after C left");
	gvmt_cluster_settle(&cl); /* reading evicted pages back evicted others: counted anew */
	a_before = gvmt_cluster_row(&cl, A).extents;
	b_before = gvmt_cluster_row(&cl, B).extents;

	/* B: its key deleted, it keeps serving; drained to A. */
	rereplicated = gvmt_broker_stat(cl.sock, "rereplicated_pages");
	snprintf(key_name, sizeof(key_name), "%s%s", prefix, B);
	assert_int_equal(gvmt_etcdctl_del(&etcd, key_name), 0);
	if (!broker_waits_for("no longer listed: draining", 2, WAIT_MS))
		fail_msg("the broker did not drain B 10 s after its key went; see %s",
			 cl.broker.log);
	assert_int_equal(broker_said("donor %s: no longer listed: draining its %llu extent cop", B,
				     (unsigned long long)b_before),
			 1);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 1);
	gvmt_cluster_wait_drained(&cl, B);
	assert_int_equal(broker_said("donor %s: drained", B), 1);
	b = gvmt_cluster_row(&cl, B);
	assert_int_equal(b.extents, 0);
	a = gvmt_cluster_row(&cl, A);
	assert_int_equal(a.extents, a_before + b_before); /* one copy each, now on A */
	assert_true(gvmt_broker_stat(cl.sock, "rereplicated_pages") > rereplicated);
	gvmt_donor_wait_empty(&cl.donor[1], &key); /* our namespaces dropped there */
	assert_true(gvmt_proc_alive(&cl.donor[1]));
	assert_int_equal(gvmt_file_count(cl.donor[1].log, "etcd: lost"), 0);
	gvmt_vm_verify(&vm, "after B was drained");
	assert_int_equal(gvmt_proc_stop(&cl.donor[1], SIGKILL), 128 + SIGKILL);
	gvmt_vm_verify(&vm, "after B was killed");
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	/* a removed donor is no concern */
	assert_int_equal(gvmt_broker_stat(cl.sock, "dead_donors"), 0);
	assert_int_equal(broker_said("listed again"), 0);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop(&cl);
}

/* B's key deleted: drained and removed, our namespaces there dropped.
 * Its key put back: it is active again and takes new copies, in a
 * namespace opened anew, which read back; deleted again, it drains
 * again, and once it is killed every page still reads back. */
static void test_a_drained_donor_listed_again_takes_new_copies(void **state)
{
	const char *prefix = "/gvmt/broker-again/";
	char key_name[200], value[300];
	uint64_t b_read;
	const char *A, *B;

	(void)state;
	gvmt_cluster_paths(&cl, "again");
	A = etcd_donor_start(0, "127.0.117.1", etcd.endpoint, prefix, "1", "10");
	B = etcd_donor_start(1, "127.0.117.2", etcd.endpoint, prefix, "1", "10");
	snprintf(key_name, sizeof(key_name), "%s%s", prefix, B);
	snprintf(value, sizeof(value), "{\"addr\":\"%s\",\"weight\":1,\"capacity\":%llu}", B,
		 1ull << 30);
	broker_start(etcd.endpoint, prefix, 2,
		     (const char *[]){"--budget", "16M", "--rereplicate-rate", "1G", NULL});
	vm_filled("vm-etcd-again", 64 * MIB, 24 * MIB);
	assert_true(gvmt_cluster_row(&cl, B).extents > 0);

	assert_int_equal(gvmt_etcdctl_del(&etcd, key_name), 0);
	gvmt_cluster_wait_drained(&cl, B);
	gvmt_donor_wait_empty(&cl.donor[1], &key);

	assert_int_equal(gvmt_etcdctl_put(&etcd, key_name, value), 0);
	assert_true(gvmt_broker_wait_stat(cl.sock, "donors", 2, WAIT_MS));
	assert_int_equal(broker_said("donor %s: listed again, weight 1: takes new copies", B), 1);
	assert_int_equal(gvmt_cluster_row(&cl, B).extents, 0);
	assert_true(strcmp(gvmt_cluster_row(&cl, B).state, "removed") &&
		    strcmp(gvmt_cluster_row(&cl, B).state, "draining"));
	gvmt_vm_write(&vm, PAGES(24 * MIB), PAGES(40 * MIB));
	gvmt_cluster_settle(&cl);
	assert_true(gvmt_cluster_row(&cl, B).extents > 0);
	assert_true(gvmt_donor_used_pages(&cl.donor[1], &key) > 0);
	b_read = gvmt_donor_pages_read(&cl.donor[1], &key);
	gvmt_vm_verify(&vm, "with B back");
	assert_true(gvmt_donor_pages_read(&cl.donor[1], &key) > b_read);

	assert_int_equal(gvmt_etcdctl_del(&etcd, key_name), 0);
	gvmt_cluster_wait_drained(&cl, B);
	assert_int_equal(broker_said("donor %s: drained", B), 2);
	assert_int_equal(gvmt_cluster_row(&cl, B).extents, 0);
	gvmt_donor_wait_empty(&cl.donor[1], &key);
	assert_int_equal(gvmt_proc_stop(&cl.donor[1], SIGKILL), 128 + SIGKILL);
	gvmt_vm_verify(&vm, "after B left again and was killed");
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	assert_true(gvmt_cluster_row(&cl, A).extents > 0);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop(&cl);
}

/* B is paused (SIGSTOP) past its 2 s lease: its key goes and the broker
 * starts draining it, but B answers nothing. B resumes within
 * --dead-after: it registers again and its drain stops. Every extent
 * still has its one copy (on B, or moved to A), and every page reads
 * back. */
static void test_a_donor_paused_past_its_lease_loses_nothing(void **state)
{
	const char *prefix = "/gvmt/broker-paused/";
	uint64_t a_before, b_before, a_after, b_after;
	struct gvmt_donor_row b;
	const char *A, *B;

	(void)state;
	gvmt_cluster_paths(&cl, "paused");
	A = etcd_donor_start(0, "127.0.118.1", etcd.endpoint, prefix, "1", "10");
	B = etcd_donor_start(1, "127.0.118.2", etcd.endpoint, prefix, "1", "2");
	broker_start(etcd.endpoint, prefix, 2,
		     (const char *[]){"--budget", "16M", "--rereplicate-rate", "1G", "--dead-after",
				      "20", NULL});
	vm_filled("vm-etcd-paused", 48 * MIB, 48 * MIB);
	both_hold(A, B, &a_before, &b_before);

	assert_int_equal(kill(cl.donor[1].pid, SIGSTOP), 0);
	if (!broker_waits_for("no longer listed: draining", 1, WAIT_MS))
		fail_msg("B's lease did not end 10 s after SIGSTOP; see %s", cl.broker.log);
	sleep_ms(2000); /* the drain's reads wait for B */
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 1);
	assert_int_equal(kill(cl.donor[1].pid, SIGCONT), 0);
	if (!gvmt_file_wait(cl.donor[1].log, "etcd: back", 1, WAIT_MS))
		fail_msg("B did not register again; see %s", cl.donor[1].log);
	assert_true(gvmt_broker_wait_stat(cl.sock, "donors", 2, WAIT_MS));
	assert_int_equal(broker_said("donor %s: listed again", B), 1);
	assert_true(gvmt_broker_wait_stat(cl.sock, "draining_extents", 0, WAIT_MS));
	b = gvmt_cluster_row(&cl, B);
	assert_true(strcmp(b.state, "draining") && strcmp(b.state, "removed"));
	a_after = gvmt_cluster_row(&cl, A).extents;
	b_after = b.extents;
	if (a_after + b_after != a_before + b_before)
		fail_msg("extents: A %llu -> %llu, B %llu -> %llu", (unsigned long long)a_before,
			 (unsigned long long)a_after, (unsigned long long)b_before,
			 (unsigned long long)b_after);
	gvmt_vm_verify(&vm, "after B was paused and resumed");
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	assert_int_equal(gvmt_broker_stat(cl.sock, "dead_donors"), 0);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop(&cl);
}

/* SIGHUP, then waits for the broker's log to say needle count times. */
static void broker_reload_says(const char *needle, int count)
{
	assert_int_equal(kill(cl.broker.pid, SIGHUP), 0);
	if (!broker_waits_for(needle, count, WAIT_MS))
		fail_msg("SIGHUP: no '%s' (x%d) in %s", needle, count, cl.broker.log);
}

/* The donors in etcd and in a --donors-file. etcd stops: the broker says
 * so once, keeps both donors (nothing drains), new pages still go out
 * and every page reads back; SIGHUP then reads the file (a weight
 * changes), which it does not while etcd answers. etcd comes back: its
 * set is in force again (the weight too), still nothing drained. */
/* etcd down when the broker starts: the donors file serves meanwhile,
 * and the outage is said once. */
static void test_a_broker_starts_from_the_file_while_etcd_is_down(void **state)
{
	const char *none = "http://127.0.0.1:1"; /* nothing listens there */
	const char *A;

	(void)state;
	gvmt_cluster_paths(&cl, "no-etcd");
	if (!gvmt_memserver_start_at(&cl.donor[0], "127.0.116.1", DONOR_PORT, key_path,
				     (const char *[]){"--capacity", "1G", NULL}))
		fail_msg("memserver did not start; see %s", cl.donor[0].log);
	A = cl.donor[0].addr;
	gvmt_cluster_write_donors(&cl, "%s 1\n", A);
	broker_start(none, "/gvmt/no-etcd/", 1,
		     (const char *[]){"--donors-file", cl.file, "--budget", "16M", NULL});
	if (!broker_waits_for("etcd http://127.0.0.1:1: unreachable", 1, WAIT_MS))
		fail_msg("no outage line in %s", cl.broker.log);
	vm_filled("vm-no-etcd", 64 * MIB, 32 * MIB);
	assert_true(gvmt_cluster_row(&cl, A).extents > 0);
	gvmt_vm_verify(&vm, "served from the file's donor");
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 1);
	assert_int_equal(broker_said("%s", "etcd http://127.0.0.1:1: unreachable"), 1);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop(&cl);
}

static void test_etcd_unreachable_keeps_the_donors(void **state)
{
	const char *prefix = "/gvmt/broker-outage/";
	struct gvmt_donor_row a, b;
	struct gvmt_etcd own;
	uint64_t a_before, b_before;
	char said[700];
	const char *A, *B;

	(void)state;
	assert_true(gvmt_etcd_start(&own));
	gvmt_cluster_paths(&cl, "outage");
	A = etcd_donor_start(0, "127.0.115.1", own.endpoint, prefix, "1", "10");
	B = etcd_donor_start(1, "127.0.115.2", own.endpoint, prefix, "1", "10");
	gvmt_cluster_write_donors(&cl, "%s 1\n%s 1\n", A, B);
	broker_start(own.endpoint, prefix, 2,
		     (const char *[]){"--donors-file", cl.file, "--budget", "16M", NULL});
	if (!broker_waits_for("donors from etcd: 2 listed (0 new, 0 back, 0 reweighed", 1, WAIT_MS))
		fail_msg("etcd's set not applied; see %s", cl.broker.log);
	snprintf(said, sizeof(said), "%s is the fallback, not read now", cl.file);
	broker_reload_says(said, 1);

	vm_filled("vm-etcd-outage", 64 * MIB, 32 * MIB);
	both_hold(A, B, &a_before, &b_before);

	assert_true(gvmt_proc_stop(&own.proc, SIGTERM) >= 0); /* etcd dies of SIGTERM */
	snprintf(said, sizeof(said), "etcd %s: unreachable", own.endpoint);
	if (!broker_waits_for(said, 1, WAIT_MS))
		fail_msg("no '%s' in %s", said, cl.broker.log);
	sleep_ms(2500); /* retrying meanwhile: said once, nothing changes */
	assert_int_equal(broker_said("%s", said), 1);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 2);
	assert_int_equal(gvmt_broker_stat(cl.sock, "draining_extents"), 0);
	a = gvmt_cluster_row(&cl, A);
	b = gvmt_cluster_row(&cl, B);
	assert_true(!strcmp(a.state, "up") || !strcmp(a.state, "idle"));
	assert_true(!strcmp(b.state, "up") || !strcmp(b.state, "idle"));
	assert_int_equal(a.extents, a_before);
	assert_int_equal(b.extents, b_before);
	gvmt_vm_write(&vm, PAGES(32 * MIB), PAGES(32 * MIB)); /* new placements go on */
	gvmt_cluster_settle(&cl);
	assert_true(gvmt_cluster_row(&cl, A).extents > a_before);
	assert_true(gvmt_cluster_row(&cl, B).extents > b_before);
	gvmt_vm_verify(&vm, "while etcd is down");

	/* The fallback: SIGHUP reads the file now. */
	gvmt_cluster_write_donors(&cl, "%s 3\n%s 1\n", A, B);
	snprintf(said, sizeof(said), "donors from %s: 2 listed (0 new, 0 back, 1 reweighed",
		 cl.file);
	broker_reload_says(said, 1);
	assert_int_equal(broker_said("donor %s: weight 1 -> 3", A), 1);
	assert_int_equal(gvmt_cluster_row(&cl, A).weight, 3);

	assert_true(gvmt_etcd_restart(&own));
	snprintf(said, sizeof(said), "etcd %s: 2 donors registered", own.endpoint);
	if (!broker_waits_for(said, 1, 15000))
		fail_msg("no '%s' in %s", said, cl.broker.log);
	/* etcd's set is in force again: A's weight there is 1. */
	for (int i = 0; i < 100 && gvmt_cluster_row(&cl, A).weight != 1; i++)
		sleep_ms(50);
	assert_int_equal(gvmt_cluster_row(&cl, A).weight, 1);
	assert_int_equal(broker_said("donor %s: weight 3 -> 1", A), 1);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 2);
	assert_int_equal(gvmt_broker_stat(cl.sock, "draining_extents"), 0);
	assert_int_equal(broker_said("no longer listed"), 0);
	snprintf(said, sizeof(said), "%s is the fallback, not read now", cl.file);
	broker_reload_says(said, 2);
	gvmt_vm_verify(&vm, "after etcd came back");
	assert_int_equal(gvmt_broker_stat(cl.sock, "poisoned_pages"), 0);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop(&cl);
	gvmt_etcd_remove(&own);
}

/* A donor registered at a port the broker's sandbox does not allow (not
 * the default port, nor a donor's port at start) is refused with the
 * reason, and the set's other donors are used; a broker without the
 * sandbox takes it. */
static void test_donor_at_a_port_the_sandbox_forbids_is_refused_with_a_reason(void **state)
{
	const char *prefix = "/gvmt/broker-port/";
	const char *extra[] = {"--etcd", etcd.endpoint,	 "--etcd-prefix",
			       prefix,	 "--no-sandbox", NULL};
	char other_sock[512], listing[600];
	struct gvmt_donor_row row;
	const char *A, *D;

	(void)state;
	gvmt_cluster_paths(&cl, "port");
	A = etcd_donor_start(0, "127.0.116.1", etcd.endpoint, prefix, "1", "10");
	broker_start(etcd.endpoint, prefix, 1, (const char *[]){NULL});
	start_donor(&cl.donor[1], etcd.endpoint, prefix, "1", "10"); /* a free port */
	D = cl.donor[1].addr;
	if (!broker_waits_for("some refused: see above", 1, WAIT_MS))
		fail_msg("no refusal of %s in %s", D, cl.broker.log);
	assert_int_equal(broker_said("etcd: donor %s: port %s is not one the sandbox allows", D,
				     strrchr(D, ':') + 1),
			 1);
	assert_int_equal(gvmt_broker_stat(cl.sock, "donors"), 1);
	assert_false(gvmt_cluster_lists(&cl, D, &row));
	row = gvmt_cluster_row(&cl, A);
	assert_true(strcmp(row.state, "draining") && strcmp(row.state, "removed"));

	gvmt_path(other_sock, sizeof(other_sock), "port-nosandbox.sock");
	if (!gvmt_broker_start(&other_broker, key_path, other_sock, (const char *[]){NULL},
			       extra))
		fail_msg("gvm-broker --no-sandbox did not start; see %s", other_broker.log);
	assert_true(gvmt_broker_wait_stat(other_sock, "donors", 2, WAIT_MS));
	gvmt_path(listing, sizeof(listing), "port-nosandbox.listing");
	assert_int_equal(gvmt_gvmctl_donors(other_sock, listing), 0);
	assert_true(gvmt_donors_row(listing, D, &row));
	assert_true(gvmt_donors_row(listing, A, &row));
	assert_int_equal(gvmt_file_count(other_broker.log, "not one the sandbox allows"), 0);
	assert_int_equal(gvmt_proc_stop(&other_broker, SIGTERM), 0);
	gvmt_cluster_stop(&cl);
}

static int setup(void **state)
{
	(void)state;
	gvmt_path(key_path, sizeof(key_path), "cluster.key");
	gvmt_make_key(key_path, 32, &key);
	user.have = gvmt_test_user(&user.uid, &user.gid, &user.gvm_gid);
	chmod(gvmt_dir(), 0755);
	if (!gvmt_etcd_start(&etcd)) {
		fprintf(stderr, "etcd did not start (etcd-server installed? make deps); see %s\n",
			etcd.proc.log);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gvmt_etcd_remove(&etcd);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_endpoints_and_donors_are_refused_with_a_reason),
	    cmocka_unit_test(test_memserver_refuses_what_it_cannot_register),
	    cmocka_unit_test(test_memserver_with_etcd_is_seen_with_its_addr_weight_and_capacity),
	    cmocka_unit_test(test_second_donor_arrives_in_the_next_set),
	    cmocka_unit_test(test_the_advertised_address_is_the_one_registered),
	    cmocka_unit_test(test_killed_donor_leaves_the_set_when_its_lease_ends),
	    cmocka_unit_test(test_malformed_values_are_skipped_and_counted),
	    cmocka_unit_test(test_destroy_ends_a_blocked_watch_promptly),
	    cmocka_unit_test(test_etcd_outage_is_reported_once_and_the_set_comes_back),
	    cmocka_unit_test_teardown(test_broker_uses_a_donor_that_registers_through_etcd,
				      cluster_teardown),
	    cmocka_unit_test_teardown(test_a_donor_whose_lease_expires_is_drained,
				      cluster_teardown),
	    cmocka_unit_test_teardown(test_a_drained_donor_listed_again_takes_new_copies,
				      cluster_teardown),
	    cmocka_unit_test_teardown(test_a_donor_paused_past_its_lease_loses_nothing,
				      cluster_teardown),
	    cmocka_unit_test_teardown(test_a_broker_starts_from_the_file_while_etcd_is_down,
				      cluster_teardown),
	    cmocka_unit_test_teardown(test_etcd_unreachable_keeps_the_donors, cluster_teardown),
	    cmocka_unit_test_teardown(
		test_donor_at_a_port_the_sandbox_forbids_is_refused_with_a_reason,
		cluster_teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	if (getenv("GVM_TEST_FILTER")) /* e.g. GVM_TEST_FILTER='*drained*' */
		cmocka_set_test_filter(getenv("GVM_TEST_FILTER"));
	return cmocka_run_group_tests(tests, setup, teardown);
}
