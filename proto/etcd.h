/* etcd.h: an optional membership source outside the donors file: each
 * gvm-memserver keeps a key <prefix><addr> under a lease in etcd, brokers
 * read and watch the keys under the prefix. Speaks etcd's v3 JSON gateway
 * over libcurl from one thread per handle (etcd.c). */
#ifndef GVM_ETCD_H
#define GVM_ETCD_H

#include <stddef.h>
#include <stdint.h>

#define GVM_ETCD_DEFAULT_PREFIX "/gvmmem/donors/"
#define GVM_ETCD_DEFAULT_TTL_S	10u
#define GVM_ETCD_DEFAULT_WEIGHT 1u
/* etcd grants no lease shorter than 2 s (1.5 election timeouts, rounded up). */
#define GVM_ETCD_TTL_MIN_S  2u
#define GVM_ETCD_TTL_MAX_S  3600u
#define GVM_ETCD_WEIGHT_MAX 1000000u

#define GVM_ETCD_ENDPOINTS_MAX	    8u
#define GVM_ETCD_ENDPOINT_MAX_BYTES 64u /* "http://[v6]:PORT" */
#define GVM_ETCD_PREFIX_MAX_BYTES   256u
#define GVM_ETCD_ADDR_MAX_BYTES	    128u /* with its NUL: struct gvm_etcd_donor.addr */
#define GVM_ETCD_VALUE_MAX_BYTES    1024u
/* Donors one set holds; the ones past it are skipped (and counted). */
#define GVM_ETCD_DONORS_MAX 4096u
/* One JSON message from etcd (a range of every donor, one watch batch). */
#define GVM_ETCD_RESPONSE_MAX_BYTES (16u << 20)

#define GVM_ETCD_CONNECT_TIMEOUT_MS 2000L
#define GVM_ETCD_REQUEST_TIMEOUT_MS 5000L  /* grant, put, keepalive */
#define GVM_ETCD_RANGE_TIMEOUT_MS   30000L /* the range of every donor */
/* A quiet watch is probed by TCP keepalive: idle and interval, seconds. */
#define GVM_ETCD_KEEPALIVE_IDLE_S     5L
#define GVM_ETCD_KEEPALIVE_INTERVAL_S 5L
/* Between failed attempts, doubling from min to max. */
#define GVM_ETCD_BACKOFF_MIN_MS 200u
#define GVM_ETCD_BACKOFF_MAX_MS 5000u

struct gvm_etcd_donor {
	char addr[GVM_ETCD_ADDR_MAX_BYTES]; /* "IP:PORT" or "[V6]:PORT" */
	unsigned weight;		    /* 1..GVM_ETCD_WEIGHT_MAX */
	uint64_t capacity_bytes;
};

struct gvm_etcd;

/* endpoints: "http://IP:PORT[,http://IP:PORT...]", IP literals only (no
 * name resolution: the broker's sandbox allows no new threads after start,
 * and resolving can start one). prefix: the keys' prefix, printable ASCII,
 * e.g. GVM_ETCD_DEFAULT_PREFIX. No network yet. 0, or -EINVAL / -ENOMEM /
 * -EIO (libcurl cannot start) and *why. */
int gvm_etcd_create(struct gvm_etcd **out, const char *endpoints, const char *prefix, char *why,
		    size_t n);

/* Whether d may be registered: addr an IP literal HOST:PORT (checked with
 * gvm_parse_hostport), weight in 1..GVM_ETCD_WEIGHT_MAX. 0 or -EINVAL and
 * *why. Brokers apply the same check to what they read. */
int gvm_etcd_check_donor(const struct gvm_etcd_donor *d, char *why, size_t n);

/* Donor side. Starts the handle's thread, which keeps key <prefix><addr> =
 * {"addr":..,"weight":..,"capacity":..} under a lease of ttl_s seconds:
 * grant, put, a keepalive every ttl/3; after any failure it registers again
 * with a new lease, with backoff, trying the endpoints in turn. One log
 * line per state change (registered, lost etcd, back). 0, or -EINVAL (a
 * bad self or ttl_s), -EBUSY (the thread runs already), -errno. */
int gvm_etcd_register(struct gvm_etcd *e, const struct gvm_etcd_donor *self, unsigned ttl_s);

/* Broker side. Starts the handle's thread, which reads every key under the
 * prefix, then watches from the next revision. After the first read and
 * after every change it calls cb(ctx, 0, donors, n) with the whole current
 * set, sorted by addr (values that fail gvm_etcd_check_donor, are not JSON,
 * are over GVM_ETCD_VALUE_MAX_BYTES or name another addr than their key are
 * skipped, counted and logged). When etcd cannot be reached (or the watch
 * breaks and the read again fails) it calls cb(ctx, -errno, NULL, 0) once
 * per outage and keeps trying with backoff. cb runs on that thread; donors
 * is valid during the call only. Call it before loading a seccomp filter:
 * it creates the thread and the socket pair that wakes it. 0, -EBUSY, -errno. */
typedef void (*gvm_etcd_set_cb)(void *ctx, int status, const struct gvm_etcd_donor *donors,
				unsigned n);
int gvm_etcd_watch(struct gvm_etcd *e, gvm_etcd_set_cb cb, void *ctx);

/* Values the watch has skipped so far (malformed, or past
 * GVM_ETCD_DONORS_MAX). Any thread. */
uint64_t gvm_etcd_skipped(const struct gvm_etcd *e);

/* Stops the thread (a watch blocked in curl ends within a poll wakeup) and
 * frees. Not from inside cb. Does not revoke the lease: a donor restarted
 * within the TTL keeps its place; one gone longer is removed by etcd when
 * the lease expires. NULL is fine. */
void gvm_etcd_destroy(struct gvm_etcd *e);

#endif
