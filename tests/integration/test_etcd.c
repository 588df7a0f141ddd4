/* test_etcd.c: donor membership through a real etcd (proto/etcd.c): a
 * gvm-memserver started with --etcd is seen by gvm_etcd_watch with its
 * address, weight and capacity; a second donor arrives in the next set; a
 * donor killed with SIGKILL leaves when its lease ends, not before; values
 * written by hand that are malformed are skipped and counted; an outage of
 * etcd is reported once and the set comes back after it; stopping a watch
 * is prompt; endpoints, donors and the command line are refused with a
 * reason. */
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "etcd.h"
#include "procs.h"

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

static bool wait_sets(struct seen *s, unsigned want, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; now_ms() < end; sleep_ms(20)) {
		bool ok;

		pthread_mutex_lock(&s->lock);
		ok = s->sets >= want;
		pthread_mutex_unlock(&s->lock);
		if (ok)
			return true;
	}
	return false;
}

static bool wait_outages(struct seen *s, unsigned want, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; now_ms() < end; sleep_ms(20)) {
		bool ok;

		pthread_mutex_lock(&s->lock);
		ok = s->outages >= want;
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
	assert_true(wait_sets(&s, 1, WAIT_MS)); /* the first read: nobody yet */
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
	assert_true(wait_outages(&s, 1, WAIT_MS));
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
	assert_true(wait_outages(&s, 1, WAIT_MS));
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

static int setup(void **state)
{
	(void)state;
	gvmt_path(key_path, sizeof(key_path), "cluster.key");
	gvmt_make_key(key_path, 32, NULL);
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
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
