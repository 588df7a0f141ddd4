/* memserver.h: defaults and limits of gvm-memserver, the donor daemon
 * (main.c parses them, server.c serves the protocol, store.c keeps pages). */
#ifndef MS_MEMSERVER_H
#define MS_MEMSERVER_H

#include <stdint.h>

#define MS_DEFAULT_LISTEN "127.0.0.1:7700"
#define MS_DEFAULT_CAPACITY_BYTES (1ull << 30)
#define MS_THREADS_MAX 64u
#define MS_LISTEN_BACKLOG 128
#define MS_READ_BUF_BYTES (64u * 1024u) /* per connection */
#define MS_CONN_BACKLOG_MAX_BYTES (8u << 20) /* unsent replies before we stop reading */

/* Connections. A peer is unauthenticated from accept until its AUTH answer
 * checks out; the limits below keep a flood of those from locking brokers
 * out, and nothing the peer sends moves any of them. Authenticated peers are
 * bounded per host id (--host-conns) and, over all threads, by the open
 * files the soft RLIMIT_NOFILE, raised to the hard limit at start, leaves
 * past MS_FDS_RESERVED: a bigger limit serves more, with no cap built in. */
/* Authenticated connections one host id may hold at once (--host-conns);
 * the one past it is refused (EBUSY) as it authenticates. A broker opens
 * --pool-conns (2) to each donor address it is given, and one memserver
 * may stand behind 2048 of them. */
#define MS_HOST_CONNS_DEFAULT 4096u
#define MS_HOST_CONNS_MAX     (1u << 20) /* --host-conns: the kernel's default fs.nr_open */
/* From accept to a good AUTH answer; fixed, never restarted. */
#define MS_AUTH_TIMEOUT_MS 5000u
/* Unauthenticated connections per thread; a new one past it closes that
 * thread's oldest unauthenticated one. */
#define MS_UNAUTH_MAX 256u
/* Unauthenticated connections per thread from one source (an IPv4 address,
 * an IPv6 /64); the one past it is closed at once. A broker opens at most
 * 16 (gvm-broker --pool-conns) at once. */
#define MS_UNAUTH_PER_SOURCE_MAX 16u
#define MS_SOURCE_V6_PREFIX_BYTES 8u /* an IPv6 source is its /64 */
/* Closes of a flood (over the per-source limit, oldest closed for a new
 * one, auth timeout, a host or the donor at its limit of authenticated
 * connections): per thread and kind, one line, then a count a line per
 * interval. */
#define MS_FLOOD_LOG_INTERVAL_MS 1000u
/* Open files beyond connections: listeners, backing file, loops, stdio. */
#define MS_FDS_SPARE 64u
/* Open files kept from authenticated connections: each thread's
 * unauthenticated ones (and the new one that makes the oldest go), and the
 * spares. The rest of RLIMIT_NOFILE is how many authenticated ones the
 * donor serves. */
#define MS_FDS_RESERVED(threads) ((threads) * (MS_UNAUTH_MAX + 1u) + MS_FDS_SPARE)
/* Fewer authenticated connections than this left by the open-file limit:
 * the donor does not start. */
#define MS_CONNS_MIN 64u

/* Store. */
#define MS_NAMESPACES_MAX 4096u
/* Namespaces one host may hold (names "<host>.*"): a quarter of them. */
#define MS_HOST_NAMESPACES_MAX (MS_NAMESPACES_MAX / 4u)
/* A namespace id (the wire's Frame.ns) is its table index + 1 in the low
 * MS_NS_INDEX_BITS, and in the bits above a random tag, never 0, drawn
 * when the namespace is created and kept with it in a backing file: an id
 * held from before a drop or an anonymous donor's restart names the
 * namespace now at that index only if the tags match, 1 in 2^19 - 1. */
#define MS_NS_INDEX_BITS 13u
#define MS_NS_TAG_BITS	 (32u - MS_NS_INDEX_BITS)
_Static_assert(MS_NAMESPACES_MAX < (1u << MS_NS_INDEX_BITS), "an index + 1 fits its bits");
#define MS_STORE_SLOTS_MAX 0xfffffff0u /* 4 KiB slots: just under 16 TiB */

struct ms_config {
	const char *listen;
	uint64_t capacity_bytes; /* 0: the backing file's, or the default */
	const char *key_file;
	const char *backing; /* NULL: anonymous memory */
	unsigned threads;
	unsigned host_conns; /* authenticated connections per host id; 0: the default */
};

#endif
