/* test_memserver.c: real gvm-memserver processes on loopback, driven through
 * proto/dclient.c and raw sockets: page round trips by checksum across
 * namespaces, zero pages, capacity exhaustion, restart from a backing file,
 * authentication, malformed and abandoned frames beside a healthy client,
 * pipelining, a peer that never reads, namespaces served to their own host
 * only and at most 1024 per host, LIST bit by bit and its bounds, namespace
 * ids that die with an anonymous donor and live on with a backing file,
 * floods of connections that never authenticate (from one source, from
 * many), the fixed authentication deadline, authenticated connections
 * limited per host id (--host-conns) and in all by the open-file limit, not
 * a constant, the command line, and page tags: stored beside each page by
 * a tagged WRITE, handed back by a tagged READ (an untagged one reads as
 * before), kept across a restart from a backing file, and a tagged WRITE
 * that leaves its tags out refused as malformed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dclient.h"
#include "memserver.h" /* the limits under test */
#include "frame.h"
#include "pattern.h"
#include "procs.h"

#define HOST "memtest" /* the host the tests speak for; namespaces HOST.* */
#define NS_INDEX(id) ((id) & ((1u << MS_NS_INDEX_BITS) - 1u)) /* memserver.h */
#define NS_TAG_BIT   (1u << MS_NS_INDEX_BITS)		      /* the tag's lowest bit */

static char key_path[512];
static struct gvm_key key;

static struct gvm_dconn *connect_as(const struct gvmt_proc *p, const char *host)
{
	struct gvm_dconn *c = NULL;
	char why[512];
	int err = gvm_dconn_open(&c, p->addr, &key, host, why, sizeof(why));

	if (err)
		fail_msg("connect %s as %s: %s", p->addr, host, why);
	return c;
}

static struct gvm_dconn *connect_ok(const struct gvmt_proc *p)
{
	return connect_as(p, HOST);
}

static Gvm__MemserverStats *stats(struct gvm_dconn *c, const char *ns)
{
	Gvm__MemserverStats *m = NULL;

	assert_int_equal(gvm_dconn_stats(c, ns, &m), 0);
	return m;
}

static void write_pattern(struct gvm_dconn *c, uint32_t ns, uint64_t seed,
			  uint64_t first, uint64_t pages, unsigned zero_every)
{
	static uint8_t buf[GVM_FRAME_DATA_MAX_BYTES];

	for (uint64_t p = first; p < first + pages; p += GVM_FRAME_PAGES_MAX) {
		uint32_t n = (uint32_t)(first + pages - p < GVM_FRAME_PAGES_MAX ?
						first + pages - p : GVM_FRAME_PAGES_MAX);

		for (uint32_t i = 0; i < n; i++)
			gvm_pattern_fill_page(buf + (size_t)i * GVM_PAGE_SIZE, seed, p + i, zero_every);
		if (gvm_dconn_write(c, ns, p, n, buf))
			fail_msg("write: %s", gvm_dconn_error(c));
	}
}

/* Reads [first, first+pages) in chunks of chunk pages; returns the checksum
 * of the concatenated pages and counts pages that differ from the pattern. */
static uint64_t read_checksum(struct gvm_dconn *c, uint32_t ns, uint64_t first,
			      uint64_t pages, uint32_t chunk, uint64_t seed,
			      unsigned zero_every, uint64_t *mismatches)
{
	static uint8_t buf[GVM_FRAME_DATA_MAX_BYTES], want[GVM_PAGE_SIZE];
	uint64_t sum = 0;

	*mismatches = 0;
	for (uint64_t p = first; p < first + pages; p += chunk) {
		uint32_t n = (uint32_t)(first + pages - p < chunk ? first + pages - p : chunk);

		if (gvm_dconn_read(c, ns, p, n, buf, NULL))
			fail_msg("read: %s", gvm_dconn_error(c));
		for (uint32_t i = 0; i < n; i++) {
			gvm_pattern_fill_page(want, seed, p + i, zero_every);
			*mismatches += memcmp(want, buf + (size_t)i * GVM_PAGE_SIZE, GVM_PAGE_SIZE) != 0;
			sum = sum * 31 + gvmt_checksum(buf + (size_t)i * GVM_PAGE_SIZE, GVM_PAGE_SIZE);
		}
	}
	return sum;
}

static uint64_t pattern_checksum(uint64_t first, uint64_t pages, uint64_t seed,
				 unsigned zero_every)
{
	uint8_t page[GVM_PAGE_SIZE];
	uint64_t sum = 0;

	for (uint64_t p = first; p < first + pages; p++) {
		gvm_pattern_fill_page(page, seed, p, zero_every);
		sum = sum * 31 + gvmt_checksum(page, GVM_PAGE_SIZE);
	}
	return sum;
}

static void test_pages_round_trip_by_checksum_across_namespaces(void **state)
{
	struct gvmt_proc p;
	struct gvm_dconn *c;
	Gvm__MemserverStats *m;
	uint32_t a, b;
	uint64_t bad;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, (const char *[]){ "--capacity", "64M", NULL }));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-a", &a), 0);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-b", &b), 0);
	assert_int_not_equal(a, b);
	/* The same page numbers, different contents per namespace. */
	write_pattern(c, a, 111, 0, 2000, 8);
	write_pattern(c, b, 222, 0, 2000, 0);
	assert_int_equal(read_checksum(c, a, 0, 2000, 7, 111, 8, &bad),
			 pattern_checksum(0, 2000, 111, 8));
	assert_int_equal(bad, 0);
	assert_int_equal(read_checksum(c, b, 0, 2000, 256, 222, 0, &bad),
			 pattern_checksum(0, 2000, 222, 0));
	assert_int_equal(bad, 0);
	assert_int_not_equal(pattern_checksum(0, 2000, 111, 8), pattern_checksum(0, 2000, 222, 0));
	m = stats(c, HOST ".vm-a");
	assert_int_equal(m->ns_used_pages, 2000 - 2000 / 8); /* zero pages take no slot */
	assert_int_equal(m->used_pages, 2000 - 2000 / 8 + 2000);
	assert_int_equal(m->namespaces, 2);
	gvm__memserver_stats__free_unpacked(m, NULL);
	/* Dropping one namespace leaves the other whole. */
	assert_int_equal(gvm_dconn_drop_ns(c, HOST ".vm-a"), 0);
	assert_int_equal(gvm_dconn_drop_ns(c, HOST ".vm-a"), -ENOENT);
	assert_int_equal(read_checksum(c, b, 0, 2000, 100, 222, 0, &bad),
			 pattern_checksum(0, 2000, 222, 0));
	m = stats(c, NULL);
	assert_int_equal(m->used_pages, 2000);
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

static void test_unwritten_and_zero_pages_travel_as_bits_only(void **state)
{
	static uint8_t buf[GVM_FRAME_DATA_MAX_BYTES];
	const struct gvm_hdr *h;
	const uint8_t *payload;
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	struct gvm_hdr req;
	uint32_t ns, zeros;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-z", &ns), 0);
	gvm_hdr_init(&req, GVM__OP__OP_READ, 77);
	req.ns = ns;
	req.first_page = 1ull << 40; /* far away: still fine */
	req.page_count = GVM_FRAME_PAGES_MAX;
	assert_int_equal(gvm_dconn_send(c, &req, NULL), 0);
	assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
	assert_int_equal(h->id, 77);
	assert_int_equal(h->status, 0);
	assert_int_equal(h->payload_len, 0);
	assert_int_equal(gvm_hdr_data_pages(h), 0);
	/* Write data, then zero pages over half of it: those become bits. */
	write_pattern(c, ns, 5, 0, 64, 0);
	memset(buf, 0, 32 * GVM_PAGE_SIZE);
	assert_int_equal(gvm_dconn_write(c, ns, 0, 32, buf), 0);
	assert_int_equal(gvm_dconn_read(c, ns, 0, 64, buf, &zeros), 0);
	assert_int_equal(zeros, 32);
	for (size_t i = 0; i < 32 * GVM_PAGE_SIZE; i++)
		if (buf[i])
			fail_msg("byte %zu of a zeroed page is %u", i, buf[i]);
	m = stats(c, HOST ".vm-z");
	assert_int_equal(m->ns_used_pages, 32);
	assert_true(m->zero_pages_read >= GVM_FRAME_PAGES_MAX + 32);
	gvm__memserver_stats__free_unpacked(m, NULL);
	/* DISCARD makes pages read as zero too. */
	assert_int_equal(gvm_dconn_discard(c, ns, 32, 16), 0);
	assert_int_equal(gvm_dconn_read(c, ns, 0, 64, buf, &zeros), 0);
	assert_int_equal(zeros, 48);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

static void test_capacity_full_is_a_clear_error_and_loses_nothing(void **state)
{
	static uint8_t buf[GVM_PAGE_SIZE * 4];
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	uint32_t ns, other;
	uint64_t bad;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, (const char *[]){ "--capacity", "1M", NULL }));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-full", &ns), 0);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-other", &other), 0);
	write_pattern(c, ns, 9, 0, 256, 0); /* exactly the capacity */
	gvm_pattern_fill_page(buf, 10, 0, 0);
	assert_int_equal(gvm_dconn_write(c, other, 0, 1, buf), -ENOSPC);
	assert_non_null(strstr(gvm_dconn_error(c), "capacity full: 256 of 256 pages used"));
	/* A write mixing overwrites and one new page is refused whole. */
	for (int i = 0; i < 4; i++)
		gvm_pattern_fill_page(buf + i * GVM_PAGE_SIZE, 99, (uint64_t)i, 0);
	assert_int_equal(gvm_dconn_write(c, ns, 253, 4, buf), -ENOSPC);
	assert_int_equal(read_checksum(c, ns, 0, 256, 64, 9, 0, &bad),
			 pattern_checksum(0, 256, 9, 0));
	assert_int_equal(bad, 0);
	/* Overwriting in place needs no new slot. */
	assert_int_equal(gvm_dconn_write(c, ns, 252, 4, buf), 0);
	m = stats(c, NULL);
	assert_int_equal(m->enospc, 2);
	assert_int_equal(m->used_pages, 256);
	gvm__memserver_stats__free_unpacked(m, NULL);
	/* Freed pages make room again. */
	assert_int_equal(gvm_dconn_discard(c, ns, 0, 8), 0);
	assert_int_equal(gvm_dconn_write(c, other, 0, 1, buf), 0);
	assert_int_equal(gvmt_file_count(p.log, "refused: capacity full"), 2);
	gvm_dconn_close(c);
	assert_true(gvmt_proc_alive(&p));
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

static void test_file_backing_keeps_pages_across_restart(void **state)
{
	char backing[512], log[600], bin[512];
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	uint32_t a, b;
	uint64_t bad;

	(void)state;
	gvmt_path(backing, sizeof(backing), "pages.img");
	assert_true(gvmt_memserver_start(&p, key_path,
					 (const char *[]){ "--backing", backing, "--capacity", "32M", NULL }));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-keep", &a), 0);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-gone", &b), 0);
	write_pattern(c, a, 31, 100, 3000, 5);
	write_pattern(c, b, 32, 0, 500, 0);
	assert_int_equal(gvm_dconn_drop_ns(c, HOST ".vm-gone"), 0);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
	assert_int_equal(gvmt_file_count(p.log, "stopped cleanly"), 1);

	/* Restart without --capacity: the file's capacity, the same pages. */
	assert_true(gvmt_memserver_start(&p, key_path, (const char *[]){ "--backing", backing, NULL }));
	c = connect_ok(&p);
	m = stats(c, HOST ".vm-keep");
	assert_int_equal(m->capacity_pages, 32 * 256);
	assert_int_equal(m->namespaces, 1);
	assert_int_equal(m->ns_used_pages, 3000 - 3000 / 5);
	gvm__memserver_stats__free_unpacked(m, NULL);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-keep", &a), 0);
	assert_int_equal(read_checksum(c, a, 100, 3000, 200, 31, 5, &bad),
			 pattern_checksum(100, 3000, 31, 5));
	assert_int_equal(bad, 0);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);

	/* Another capacity on the same file is refused with the fix. */
	snprintf(log, sizeof(log), "%s/capacity-mismatch.log", gvmt_dir());
	assert_int_equal(gvmt_run(log, (const char *[]){ gvmt_bin("gvm-memserver", bin, sizeof(bin)),
							 "--key-file", key_path, "--backing", backing,
							 "--capacity", "64M", "--listen", "127.0.0.1:1", NULL }),
			 1);
	assert_int_equal(gvmt_file_count(log, "pass --capacity 32M"), 1);
}

static int raw_connect(const char *addr)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char host[64];
	int port;

	sscanf(addr, "%63[^:]:%d", host, &port);
	sa.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, host, &sa.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Reads until EOF; returns the bytes the peer sent (at most cap kept). */
static size_t read_to_eof(int fd, uint8_t *buf, size_t cap)
{
	struct timeval tv = { 10, 0 };
	size_t got = 0;
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while ((n = recv(fd, buf + got, cap - got, 0)) > 0)
		got += (size_t)n;
	assert_int_equal(n, 0); /* EOF, not a timeout */
	return got;
}

static void test_wrong_key_and_unauthenticated_peers_get_nothing(void **state)
{
	struct gvm_key wrong;
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	struct gvm_reader rd;
	struct gvm_hdr h;
	uint8_t buf[4096], frame[1100];
	char why[512], wrong_path[512];
	size_t got;
	ssize_t used;
	int fd, len;

	(void)state;
	gvmt_path(wrong_path, sizeof(wrong_path), "wrong.key");
	gvmt_make_key(wrong_path, 32, &wrong);
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	assert_int_equal(gvm_dconn_open(&c, p.addr, &wrong, NULL, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "auth failed: bad key"));

	/* A READ before AUTH: the peer sees the challenge, then EOF. */
	fd = raw_connect(p.addr);
	gvm_hdr_init(&h, GVM__OP__OP_READ, 1);
	h.ns = 1;
	h.page_count = 1;
	len = gvm_hdr_encode(&h, frame, sizeof(frame));
	assert_int_equal(send(fd, frame, (size_t)len, 0), len);
	got = read_to_eof(fd, buf, sizeof(buf));
	close(fd);
	gvm_reader_init(&rd);
	used = gvm_reader_feed(&rd, buf, got);
	assert_true(gvm_reader_ready(&rd));
	assert_int_equal(rd.hdr.op, GVM__OP__OP_AUTH);
	assert_int_equal((size_t)used, got); /* nothing after the challenge */
	gvm_reader_free(&rd);

	/* A WRITE header announcing 2 MiB before AUTH: cut off at the header,
	 * its payload never read nor buffered. */
	fd = raw_connect(p.addr);
	gvm_hdr_init(&h, GVM__OP__OP_WRITE, 2);
	h.ns = 1;
	h.page_count = GVM_FRAME_PAGES_MAX;
	h.payload_len = GVM_FRAME_DATA_MAX_BYTES;
	len = gvm_hdr_encode(&h, frame, sizeof(frame));
	assert_int_equal(send(fd, frame, (size_t)len, 0), len);
	read_to_eof(fd, buf, sizeof(buf));
	close(fd);

	c = connect_ok(&p);
	m = stats(c, NULL);
	assert_int_equal(m->auth_failures, 1);
	assert_int_equal(m->reads, 0);
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_file_count(p.log, "auth failed: bad key"), 1);
	assert_int_equal(gvmt_file_count(p.log, "READ: request before authentication"), 1);
	assert_int_equal(gvmt_file_count(p.log, "payload_len 2097152 over this connection's limit 64"), 1);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

struct healthy {
	const struct gvmt_proc *p;
	volatile int stop;
	uint64_t rounds, mismatches;
	int error;
};

/* Writes and verifies pages in a loop until told to stop. */
static void *healthy_client(void *arg)
{
	struct healthy *hc = arg;
	struct gvm_dconn *c;
	uint32_t ns;
	char why[512];

	if (gvm_dconn_open(&c, hc->p->addr, &key, HOST, why, sizeof(why)) ||
	    gvm_dconn_open_ns(c, HOST ".vm-healthy", &ns)) {
		hc->error = 1;
		return NULL;
	}
	while (!hc->stop || hc->rounds < 3) {
		uint64_t bad, seed = 1000 + hc->rounds;

		write_pattern(c, ns, seed, 0, 512, 3);
		if (read_checksum(c, ns, 0, 512, 32, seed, 3, &bad) != pattern_checksum(0, 512, seed, 3))
			hc->mismatches++;
		hc->mismatches += bad;
		hc->rounds++;
	}
	gvm_dconn_close(c);
	return NULL;
}

/* An authenticated raw connection: the dclient handshake, then raw bytes. */
static void send_bad_after_auth(const struct gvmt_proc *p, const uint8_t *bytes,
				size_t len, bool then_close)
{
	struct gvm_dconn *c = connect_ok(p);
	uint8_t sink[4096];

	assert_int_equal(send(gvm_dconn_fd(c), bytes, len, MSG_NOSIGNAL), (ssize_t)len);
	if (!then_close)
		read_to_eof(gvm_dconn_fd(c), sink, sizeof(sink));
	gvm_dconn_close(c);
}

static size_t encode(struct gvm_hdr *h, uint8_t *out)
{
	return (size_t)gvm_hdr_encode(h, out, GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES);
}

static void test_malformed_frames_do_not_disturb_a_healthy_client(void **state)
{
	uint8_t frame[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES + 64], garbage[3000];
	struct healthy hc = { 0 };
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	struct gvm_hdr h;
	pthread_t t;
	size_t len;
	int fd, closed_bad = 0;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, (const char *[]){ "--threads", "2", NULL }));
	hc.p = &p;
	pthread_create(&t, NULL, healthy_client, &hc);

	for (int round = 0; round < 3; round++) {
		/* Garbage before authentication. */
		fd = raw_connect(p.addr);
		for (size_t i = 0; i < sizeof(garbage); i++)
			garbage[i] = (uint8_t)rand();
		garbage[0] = 0x7f; /* a header length far past the bound */
		send(fd, garbage, sizeof(garbage), MSG_NOSIGNAL);
		read_to_eof(fd, garbage, sizeof(garbage));
		close(fd);
		closed_bad++;
		/* A header length of 4 GiB after authentication. */
		memcpy(frame, "\xff\xff\xff\xff", 4);
		send_bad_after_auth(&p, frame, 4, false);
		closed_bad++;
		/* An unknown op. */
		gvm_hdr_init(&h, 42, 1);
		len = encode(&h, frame);
		send_bad_after_auth(&p, frame, len, false);
		closed_bad++;
		/* A future protocol version. */
		gvm_hdr_init(&h, GVM__OP__OP_PING, 1);
		h.version = 9;
		len = encode(&h, frame);
		send_bad_after_auth(&p, frame, len, false);
		closed_bad++;
		/* A WRITE whose payload length lies about its pages. */
		gvm_hdr_init(&h, GVM__OP__OP_WRITE, 1);
		h.ns = 1;
		h.page_count = 1;
		h.payload_len = 3 * GVM_PAGE_SIZE;
		len = encode(&h, frame);
		send_bad_after_auth(&p, frame, len, false);
		closed_bad++;
		/* A peer that vanishes in the middle of a WRITE payload. */
		h.payload_len = GVM_PAGE_SIZE;
		len = encode(&h, frame);
		memset(frame + len, 0xab, 64);
		send_bad_after_auth(&p, frame, len + 64, true);
		/* Half a header, then gone. */
		gvm_hdr_init(&h, GVM__OP__OP_PING, 2);
		len = encode(&h, frame);
		send_bad_after_auth(&p, frame, len / 2, true);
	}
	hc.stop = 1;
	pthread_join(t, NULL);
	assert_int_equal(hc.error, 0);
	assert_true(hc.rounds >= 3);
	assert_int_equal(hc.mismatches, 0);

	assert_true(gvmt_proc_alive(&p));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_ping(c), 0);
	m = stats(c, NULL);
	assert_int_equal(m->bad_frames, closed_bad);
	assert_int_equal(m->threads, 2);
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_file_count(p.log, "closing: bad frame: header length"), 6);
	assert_int_equal(gvmt_file_count(p.log, "closing: bad frame: unknown op"), 3);
	assert_int_equal(gvmt_file_count(p.log, "closing: bad frame: unsupported protocol version"), 3);
	assert_int_equal(gvmt_file_count(p.log, "payload_len does not match"), 3);
	assert_int_equal(gvmt_file_count(p.log, "disconnected in the middle of a frame"), 6);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

static void test_pipelined_requests_are_answered_in_order_by_id(void **state)
{
	static uint8_t pages[64][GVM_PAGE_SIZE], got[GVM_PAGE_SIZE];
	const struct gvm_hdr *h;
	const uint8_t *payload;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	struct gvm_hdr req;
	uint32_t ns;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-pipe", &ns), 0);
	/* 64 WRITEs then 64 READs, all sent before any answer is read. */
	for (uint64_t i = 0; i < 64; i++) {
		gvm_pattern_fill_page(pages[i], 7, i, 0);
		assert_int_equal(gvm_dconn_send_write(c, 1000 + i, ns, i, 1, pages[i]), 0);
	}
	for (uint64_t i = 0; i < 64; i++) {
		gvm_hdr_init(&req, GVM__OP__OP_READ, 2000 + i);
		req.ns = ns;
		req.first_page = 63 - i;
		req.page_count = 1;
		assert_int_equal(gvm_dconn_send(c, &req, NULL), 0);
	}
	for (uint64_t i = 0; i < 128; i++) {
		assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
		assert_int_equal(h->status, 0);
		if (i < 64) {
			assert_int_equal(h->id, 1000 + i);
			assert_int_equal(h->op, GVM__OP__OP_WRITE);
			continue;
		}
		assert_int_equal(h->id, 2000 + (i - 64));
		gvm_frame_unpack_pages(h, payload, got);
		assert_memory_equal(got, pages[63 - (i - 64)], GVM_PAGE_SIZE);
	}
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* A peer that sends many READs and does not read the replies must not make
 * the donor buffer them all: it stops reading that peer instead. */
static void test_peer_that_never_reads_costs_bounded_memory(void **state)
{
	enum { REQUESTS = 2000 }; /* 2000 x 1 MiB of replies */
	const struct gvm_hdr *h;
	const uint8_t *payload;
	struct gvmt_proc p;
	struct gvm_dconn *c, *other;
	struct gvm_hdr req;
	uint64_t rss0, rss1, bad;
	uint32_t ns;
	int flags;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, (const char *[]){ "--capacity", "8M", NULL }));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-slow", &ns), 0);
	write_pattern(c, ns, 3, 0, GVM_FRAME_PAGES_MAX, 0);
	rss0 = gvmt_proc_rss_kib(&p);
	/* Send without reading until the donor stops taking requests. */
	flags = MSG_DONTWAIT | MSG_NOSIGNAL;
	int sent = 0;
	for (int i = 0; i < REQUESTS; i++) {
		uint8_t frame[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
		size_t len;

		gvm_hdr_init(&req, GVM__OP__OP_READ, (uint64_t)i + 1);
		req.ns = ns;
		req.page_count = GVM_FRAME_PAGES_MAX;
		len = encode(&req, frame);
		if (send(gvm_dconn_fd(c), frame, len, flags) != (ssize_t)len)
			break;
		sent++;
	}
	usleep(500 * 1000);
	rss1 = gvmt_proc_rss_kib(&p);
	/* Another client is still served meanwhile. */
	other = connect_ok(&p);
	assert_int_equal(gvm_dconn_ping(other), 0);
	gvm_dconn_close(other);
	print_message("sent %d READs of 1 MiB unread; donor RSS %llu -> %llu KiB\n", sent,
		      (unsigned long long)rss0, (unsigned long long)rss1);
	assert_true(rss1 < rss0 + 64 * 1024);
	/* Every reply still arrives, intact, in order. */
	for (int i = 0; i < sent; i++) {
		static uint8_t buf[GVM_FRAME_DATA_MAX_BYTES];
		uint64_t sum = 0;

		assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
		assert_int_equal(h->id, (uint64_t)i + 1);
		assert_int_equal(h->status, 0);
		if (i % 97)
			continue;
		gvm_frame_unpack_pages(h, payload, buf);
		for (uint32_t k = 0; k < GVM_FRAME_PAGES_MAX; k++)
			sum = sum * 31 + gvmt_checksum(buf + (size_t)k * GVM_PAGE_SIZE, GVM_PAGE_SIZE);
		assert_int_equal(sum, pattern_checksum(0, GVM_FRAME_PAGES_MAX, 3, 0));
	}
	assert_int_equal(read_checksum(c, ns, 0, GVM_FRAME_PAGES_MAX, GVM_FRAME_PAGES_MAX, 3, 0, &bad),
			 pattern_checksum(0, GVM_FRAME_PAGES_MAX, 3, 0));
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* DROP_NS by id, which gvm_dconn_drop_ns (by name) does not send: 0 or
 * -status. */
static int drop_by_id(struct gvm_dconn *c, uint32_t ns)
{
	const struct gvm_hdr *h;
	const uint8_t *payload;
	struct gvm_hdr req;
	uint64_t id = gvm_dconn_next_id(c);

	gvm_hdr_init(&req, GVM__OP__OP_DROP_NS, id);
	req.ns = ns;
	assert_int_equal(gvm_dconn_send(c, &req, NULL), 0);
	assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
	assert_int_equal(h->id, id);
	if (h->status)
		assert_non_null(strstr(h->error, h->status == EACCES ? "namespace belongs to another host" :
								       "unknown namespace"));
	return -h->status;
}

/* Host B, holding the cluster key, asks for host A's namespace by name and
 * by every id a guess could reach (an index without its tag, A's real ids,
 * those under another tag): each request is refused, and A's pages are all
 * still there, intact. */
static void test_another_hosts_namespace_is_refused_by_name_and_by_every_id(void **state)
{
	static uint8_t buf[4 * GVM_PAGE_SIZE];
	Gvm__MemserverStats *m = NULL;
	struct gvmt_proc p;
	struct gvm_dconn *a, *b;
	uint32_t ax, ay, id, zeros, tried[16 + 4];
	uint64_t bad;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	a = connect_as(&p, "hosta");
	assert_int_equal(gvm_dconn_open_ns(a, "hosta.x", &ax), 0);
	assert_int_equal(gvm_dconn_open_ns(a, "hosta.y", &ay), 0);
	write_pattern(a, ax, 51, 0, 300, 4);
	write_pattern(a, ay, 52, 0, 16, 0);

	b = connect_as(&p, "hostb");
	assert_int_equal(gvm_dconn_open_ns(b, "hosta.x", &id), -EACCES);
	assert_non_null(strstr(gvm_dconn_error(b), "namespace belongs to another host"));
	assert_int_equal(gvm_dconn_open_ns(b, "hosta.new", &id), -EACCES);
	assert_int_equal(gvm_dconn_open_ns(b, "vm-x", &id), -EINVAL); /* names no host */
	assert_int_equal(gvm_dconn_stats(b, "hosta.x", &m), -EACCES);
	assert_null(m);
	assert_int_equal(gvm_dconn_drop_ns(b, "hosta.x"), -EACCES);
	for (uint32_t i = 0; i < 16; i++)
		tried[i] = i + 1;
	tried[16] = ax;
	tried[17] = ay;
	tried[18] = ax ^ NS_TAG_BIT;
	tried[19] = ay ^ NS_TAG_BIT;
	for (uint32_t t = 0; t < sizeof(tried) / sizeof(tried[0]); t++) {
		uint32_t ns = tried[t];
		int want = ns == ax || ns == ay ? -EACCES : -ENOENT;

		memset(buf, 0x5a, sizeof(buf));
		assert_int_equal(gvm_dconn_read(b, ns, 0, 4, buf, &zeros), want);
		assert_int_equal(gvm_dconn_list(b, ns, 0, 300, buf), want);
		for (size_t i = 0; i < sizeof(buf); i++)
			if (buf[i] != 0x5a)
				fail_msg("READ or LIST of namespace %#x by hostb wrote byte %zu", ns, i);
		assert_int_equal(gvm_dconn_write(b, ns, 0, 4, buf), want);
		assert_int_equal(gvm_dconn_discard(b, ns, 0, GVM_FRAME_PAGES_MAX), want);
		assert_int_equal(drop_by_id(b, ns), want);
	}
	/* B's own namespaces work as ever on the same connection. */
	assert_int_equal(gvm_dconn_open_ns(b, "hostb.x", &id), 0);
	assert_int_not_equal(id, ax);
	write_pattern(b, id, 53, 0, 4, 0);
	gvm_dconn_close(b);

	assert_int_equal(read_checksum(a, ax, 0, 300, 64, 51, 4, &bad), pattern_checksum(0, 300, 51, 4));
	assert_int_equal(bad, 0);
	assert_int_equal(read_checksum(a, ay, 0, 16, 16, 52, 0, &bad), pattern_checksum(0, 16, 52, 0));
	assert_int_equal(bad, 0);
	m = stats(a, "hosta.x");
	assert_int_equal(m->ns_used_pages, 300 - 300 / 4);
	assert_int_equal(m->namespaces, 3);
	assert_int_equal(m->reads, 5 + 1); /* A's only: 300 pages by 64, 16 by 16 */
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(a);
	/* One line for the connection that asked, not one per request. */
	assert_int_equal(gvmt_file_count(p.log, "belongs to another host"), 1);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

static void test_one_host_holds_at_most_1024_namespaces_others_still_open(void **state)
{
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *a, *b;
	uint32_t id, first = 0;
	char name[32];

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	a = connect_as(&p, "hosta");
	for (int i = 0; i < 1024; i++) {
		snprintf(name, sizeof(name), "hosta.ns-%d", i);
		if (gvm_dconn_open_ns(a, name, &id))
			fail_msg("OPEN_NS %s: %s", name, gvm_dconn_error(a));
		if (i == 0)
			first = id;
	}
	assert_int_equal(gvm_dconn_open_ns(a, "hosta.ns-1024", &id), -ENOSPC);
	assert_non_null(strstr(gvm_dconn_error(a),
			       "host hosta holds 1024 namespaces, the most one host may"));
	assert_int_equal(gvm_dconn_open_ns(a, "hosta.ns-0", &id), 0); /* existing: still opens */
	assert_int_equal(id, first);
	b = connect_as(&p, "hostb");
	assert_int_equal(gvm_dconn_open_ns(b, "hostb.vm", &id), 0);
	m = stats(b, "hostb.vm");
	assert_int_equal(m->namespaces, 1025);
	gvm__memserver_stats__free_unpacked(m, NULL);
	/* Dropping one makes room for one. */
	assert_int_equal(gvm_dconn_drop_ns(a, "hosta.ns-7"), 0);
	assert_int_equal(gvm_dconn_open_ns(a, "hosta.ns-1024", &id), 0);
	assert_int_equal(gvm_dconn_open_ns(a, "hosta.ns-1025", &id), -ENOSPC);
	gvm_dconn_close(a);
	gvm_dconn_close(b);
	assert_int_equal(gvmt_file_count(p.log, "refused: host hosta holds 1024 namespaces"), 2);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* ---- LIST and namespace ids ---- */

/* LIST of count pages from first; fails the test on an error. */
static void list_ok(struct gvm_dconn *c, uint32_t ns, uint64_t first, uint32_t count,
		    uint8_t *bitmap)
{
	if (gvm_dconn_list(c, ns, first, count, bitmap))
		fail_msg("LIST %llu+%u: %s", (unsigned long long)first, count, gvm_dconn_error(c));
}

/* Every bit of a LIST of count pages from first against held[] (pages past
 * span are held by nobody). */
static void check_list_bits(const uint8_t *bitmap, uint64_t first, uint32_t count,
			    const bool *held, uint64_t span)
{
	for (uint32_t i = 0; i < count; i++) {
		bool want = first + i < span && held[first + i];

		if (gvm_list_test(bitmap, i) != want)
			fail_msg("LIST from %llu: bit %u (page %llu) is %d, want %d",
				 (unsigned long long)first, i, (unsigned long long)(first + i),
				 gvm_list_test(bitmap, i), want);
	}
}

/* LIST sets a bit exactly for each page holding data: written, and not
 * since discarded or written as a zero page (a zero bit in WRITE). A page
 * whose 4096 zero bytes travel as data is held: the store keeps what it
 * is sent. Checked bit by bit from every first page around an extent
 * boundary (32-page extents: 512), with counts that end mid-byte, against
 * READ's zero bits, and over the largest range a LIST takes. */
static void test_list_reports_exactly_the_pages_held_bit_by_bit(void **state)
{
	enum { SPAN = 1100 };
	static uint8_t buf[GVM_FRAME_DATA_MAX_BYTES], bitmap[GVM_LIST_PAGES_MAX / 8];
	static bool held[SPAN];
	const uint32_t counts[] = { 1, 7, 8, 9, 33 };
	uint8_t frame[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
	const struct gvm_hdr *h;
	const uint8_t *payload;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	struct gvm_hdr req;
	uint32_t ns;
	size_t len;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-list", &ns), 0);
	list_ok(c, ns, 0, SPAN, bitmap);
	check_list_bits(bitmap, 0, SPAN, held, SPAN); /* nothing yet */

	/* Pages 0-299, every 7th all zero: those travel as zero bits. */
	write_pattern(c, ns, 81, 0, 300, 7);
	for (uint64_t pg = 0; pg < 300; pg++)
		held[pg] = pg % 7 != 6;
	assert_int_equal(gvm_dconn_discard(c, ns, 50, 1), 0);
	held[50] = false;
	memset(buf, 0, GVM_PAGE_SIZE); /* over written data: a zero bit */
	assert_int_equal(gvm_dconn_write(c, ns, 100, 1, buf), 0);
	held[100] = false;
	/* Across the extent boundary at 512: 509-515, 512 discarded. */
	write_pattern(c, ns, 82, 509, 7, 0);
	assert_int_equal(gvm_dconn_discard(c, ns, 512, 1), 0);
	for (uint64_t pg = 509; pg < 516; pg++)
		held[pg] = pg != 512;
	/* Page 700: 4096 zero bytes as data, no zero bit. */
	gvm_hdr_init(&req, GVM__OP__OP_WRITE, gvm_dconn_next_id(c));
	req.ns = ns;
	req.first_page = 700;
	req.page_count = 1;
	req.payload_len = GVM_PAGE_SIZE;
	assert_int_equal(gvm_dconn_send(c, &req, buf), 0);
	assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
	assert_int_equal(h->status, 0);
	held[700] = true;

	list_ok(c, ns, 3, SPAN - 3, bitmap); /* first not a multiple of 8 */
	check_list_bits(bitmap, 3, SPAN - 3, held, SPAN);
	list_ok(c, ns, 509, 7, bitmap);
	assert_int_equal(bitmap[0], 0x77); /* 509 510 511, not 512, 513 514 515 */
	for (uint64_t first = 496; first < 530; first++)
		for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
			list_ok(c, ns, first, counts[k], bitmap);
			check_list_bits(bitmap, first, counts[k], held, SPAN);
		}
	/* READ's zero bits say the same, page for page. */
	for (uint64_t first = 0; first < SPAN; first += GVM_FRAME_PAGES_MAX) {
		uint32_t n = SPAN - first < GVM_FRAME_PAGES_MAX ? (uint32_t)(SPAN - first) :
								  GVM_FRAME_PAGES_MAX;

		gvm_hdr_init(&req, GVM__OP__OP_READ, gvm_dconn_next_id(c));
		req.ns = ns;
		req.first_page = first;
		req.page_count = n;
		assert_int_equal(gvm_dconn_send(c, &req, NULL), 0);
		assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
		assert_int_equal(h->status, 0);
		for (uint32_t i = 0; i < n; i++)
			assert_int_equal(!gvm_hdr_zero_test(h, i), held[first + i]);
	}
	/* The largest LIST: 8M pages, 1 MiB of bits, set only where held. */
	list_ok(c, ns, 0, GVM_LIST_PAGES_MAX, bitmap);
	check_list_bits(bitmap, 0, GVM_LIST_PAGES_MAX, held, SPAN);
	list_ok(c, ns, 1ull << 40, 1000, bitmap); /* far away: nothing */
	check_list_bits(bitmap, 1ull << 40, 1000, held, SPAN);
	/* Pipelined behind a WRITE, a LIST sees it. */
	gvm_pattern_fill_page(buf, 83, 1050, 0);
	assert_int_equal(gvm_dconn_send_write(c, gvm_dconn_next_id(c), ns, 1050, 1, buf), 0);
	gvm_hdr_init(&req, GVM__OP__OP_LIST, 9999);
	req.ns = ns;
	req.first_page = 1048;
	req.page_count = 4;
	len = (size_t)gvm_hdr_encode(&req, frame, sizeof(frame));
	assert_int_equal(send(gvm_dconn_fd(c), frame, len, MSG_NOSIGNAL), (ssize_t)len);
	assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
	assert_int_equal(h->op, GVM__OP__OP_WRITE);
	assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
	assert_int_equal(h->id, 9999);
	assert_int_equal(h->status, 0);
	assert_int_equal(h->payload_len, 1);
	assert_int_equal(payload[0], 0x04);

	assert_int_equal(gvm_dconn_drop_ns(c, HOST ".vm-list"), 0);
	assert_int_equal(gvm_dconn_list(c, ns, 0, 8, bitmap), -ENOENT);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* LIST obeys READ's ownership rule: another host's namespace is EACCES,
 * an unknown id ENOENT, each with its reason, and the connection goes on
 * being served. */
static void test_list_of_another_hosts_namespace_is_eacces_and_of_an_unknown_id_enoent(void **state)
{
	uint8_t bitmap[64];
	struct gvmt_proc p;
	struct gvm_dconn *a, *b;
	uint32_t ax, bx;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	a = connect_as(&p, "hosta");
	b = connect_as(&p, "hostb");
	assert_int_equal(gvm_dconn_open_ns(a, "hosta.vm", &ax), 0);
	assert_int_equal(gvm_dconn_open_ns(b, "hostb.vm", &bx), 0);
	write_pattern(a, ax, 91, 0, 16, 0);

	memset(bitmap, 0x5a, sizeof(bitmap));
	assert_int_equal(gvm_dconn_list(b, ax, 0, 16, bitmap), -EACCES);
	assert_non_null(strstr(gvm_dconn_error(b), "LIST refused: namespace belongs to another host"));
	assert_int_equal(gvm_dconn_list(b, ax ^ NS_TAG_BIT, 0, 16, bitmap), -ENOENT);
	assert_non_null(strstr(gvm_dconn_error(b), "LIST refused: unknown namespace"));
	assert_int_equal(gvm_dconn_list(b, NS_INDEX(ax), 0, 16, bitmap), -ENOENT);
	assert_int_equal(gvm_dconn_list(b, 0, 0, 16, bitmap), -ENOENT);
	assert_int_equal(gvm_dconn_list(b, UINT32_MAX, 0, 16, bitmap), -ENOENT);
	assert_int_equal(bitmap[0], 0x5a);
	assert_int_equal(gvm_dconn_ping(b), 0);
	list_ok(b, bx, 0, 16, bitmap);
	assert_int_equal(bitmap[0] | bitmap[1], 0);
	list_ok(a, ax, 0, 16, bitmap);
	assert_int_equal(bitmap[0] & bitmap[1], 0xff);
	gvm_dconn_close(a);
	gvm_dconn_close(b);
	assert_int_equal(gvmt_file_count(p.log, "LIST of namespace (by id) refused: it belongs to another host"), 1);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* A LIST past its bounds (more than GVM_LIST_PAGES_MAX pages, none, a
 * range past 2^64 bytes, a payload) is a malformed frame: the donor closes
 * that connection with a line saying why, as for any other, and serves the
 * rest; the largest LIST allowed, at the last page allowed, is answered. */
static void test_list_past_its_bounds_closes_that_connection_only(void **state)
{
	static uint8_t bitmap[GVM_LIST_PAGES_MAX / 8];
	uint8_t frame[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES + 8];
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	struct gvm_hdr h;
	uint32_t ns;
	size_t len;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-bounds", &ns), 0);
	write_pattern(c, ns, 92, 5, 1, 0);

	gvm_hdr_init(&h, GVM__OP__OP_LIST, 1);
	h.ns = ns;
	h.page_count = GVM_LIST_PAGES_MAX + 1;
	len = encode(&h, frame);
	send_bad_after_auth(&p, frame, len, false);
	h.page_count = UINT32_MAX;
	len = encode(&h, frame);
	send_bad_after_auth(&p, frame, len, false);
	h.page_count = 0;
	len = encode(&h, frame);
	send_bad_after_auth(&p, frame, len, false);
	h.page_count = 11;
	h.first_page = UINT64_MAX / GVM_PAGE_SIZE - 10;
	len = encode(&h, frame);
	send_bad_after_auth(&p, frame, len, false);
	h.first_page = 0;
	h.payload_len = 1;
	len = encode(&h, frame);
	frame[len++] = 0xff;
	send_bad_after_auth(&p, frame, len, false);

	/* The connection opened before goes on as if nothing happened. */
	list_ok(c, ns, 0, 8, bitmap);
	assert_int_equal(bitmap[0], 1u << 5);
	list_ok(c, ns, UINT64_MAX / GVM_PAGE_SIZE - GVM_LIST_PAGES_MAX, GVM_LIST_PAGES_MAX, bitmap);
	for (size_t i = 0; i < GVM_LIST_PAGES_MAX / 8; i++)
		if (bitmap[i])
			fail_msg("byte %zu of an empty range's LIST is %#x", i, bitmap[i]);
	m = stats(c, NULL);
	assert_int_equal(m->bad_frames, 5);
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(c);
	assert_true(gvmt_proc_alive(&p));
	assert_int_equal(gvmt_file_count(p.log, "closing: bad frame: page_count out of range 1..GVM_LIST_PAGES_MAX (op LIST"), 3);
	assert_int_equal(gvmt_file_count(p.log, "closing: bad frame: page range overflows the address space (op LIST"), 1);
	assert_int_equal(gvmt_file_count(p.log, "closing: bad frame: payload on an op that takes none (op LIST"), 1);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* The page tag the tests give page p under seed: another for every page,
 * never all zero. */
static void fill_page_tags(uint8_t *tags, uint64_t seed, uint64_t first, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		uint64_t x = (seed << 32) ^ (first + i) ^ 0x5a5a5a5a5a5a5a5aull, y = ~x * 31;

		memcpy(tags + (size_t)i * GVM_PAGE_TAG_BYTES, &x, sizeof(x));
		memcpy(tags + (size_t)i * GVM_PAGE_TAG_BYTES + sizeof(x), &y, sizeof(y));
	}
}

/* A tagged READ of count pages from first with the blocking client: each
 * page is the pattern's, each data page's tag the one fill_page_tags
 * gives, a zero page's tag zero. Returns the zero pages. */
static uint32_t expect_tagged_pages(struct gvm_dconn *c, uint32_t ns, uint64_t first,
				    uint32_t count, uint64_t seed, unsigned zero_every,
				    uint64_t tag_seed)
{
	static uint8_t pages[GVM_FRAME_DATA_MAX_BYTES], want[GVM_PAGE_SIZE];
	static uint8_t tags[GVM_FRAME_PAGES_MAX * GVM_PAGE_TAG_BYTES];
	uint8_t want_tag[GVM_PAGE_TAG_BYTES], zero_tag[GVM_PAGE_TAG_BYTES] = { 0 };
	uint32_t zeros;

	if (gvm_dconn_read_tagged(c, ns, first, count, pages, &zeros, tags))
		fail_msg("tagged read: %s", gvm_dconn_error(c));
	for (uint32_t i = 0; i < count; i++) {
		gvm_pattern_fill_page(want, seed, first + i, zero_every);
		assert_memory_equal(pages + (size_t)i * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE);
		fill_page_tags(want_tag, tag_seed, first + i, 1);
		assert_memory_equal(tags + (size_t)i * GVM_PAGE_TAG_BYTES,
				    gvm_page_is_zero(want) ? zero_tag : want_tag, GVM_PAGE_TAG_BYTES);
	}
	return zeros;
}

/* A WRITE with tag_bytes 16 stores each data page's tag beside it: a READ
 * with tag_bytes 16 answers tag_bytes 16 and, after the packed pages, each
 * data page's tag in their order (payload_len data pages × 4112); a READ
 * without answers exactly as before (data pages × 4096, no tags). A full
 * 512-page tagged WRITE (more than 2 MiB) is taken; an untagged WRITE over
 * tagged pages leaves them zero tags. */
static void test_tagged_write_then_tagged_read_returns_each_pages_tag(void **state)
{
	static uint8_t pages[GVM_FRAME_DATA_MAX_BYTES], tags[GVM_FRAME_PAGES_MAX * GVM_PAGE_TAG_BYTES];
	static uint8_t want[GVM_PAGE_SIZE];
	const struct gvm_hdr *h;
	const uint8_t *payload;
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	struct gvm_hdr req;
	uint32_t ns, k;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-sealed", &ns), 0);
	/* 512 data pages with their tags: 2 MiB + 8 KiB of payload. */
	for (uint32_t i = 0; i < GVM_FRAME_PAGES_MAX; i++)
		gvm_pattern_fill_page(pages + (size_t)i * GVM_PAGE_SIZE, 61, i, 0);
	fill_page_tags(tags, 1, 0, GVM_FRAME_PAGES_MAX);
	if (gvm_dconn_write_tagged(c, ns, 0, GVM_FRAME_PAGES_MAX, pages, tags))
		fail_msg("full tagged write: %s", gvm_dconn_error(c));
	assert_int_equal(expect_tagged_pages(c, ns, 0, GVM_FRAME_PAGES_MAX, 61, 0, 1), 0);
	/* 200 pages from 1000, every third zero: no slot, no tag. */
	for (uint32_t i = 0; i < 200; i++)
		gvm_pattern_fill_page(pages + (size_t)i * GVM_PAGE_SIZE, 62, 1000 + i, 3);
	fill_page_tags(tags, 2, 1000, 200);
	assert_int_equal(gvm_dconn_write_tagged(c, ns, 1000, 200, pages, tags), 0);
	assert_int_equal(expect_tagged_pages(c, ns, 1000, 200, 62, 3, 2), 67);
	assert_int_equal(expect_tagged_pages(c, ns, 1033, 41, 62, 3, 2), 14);

	/* The reply's layout, as the bytes come: pages, then their tags. */
	gvm_hdr_init(&req, GVM__OP__OP_READ, 900);
	req.ns = ns;
	req.first_page = 1000;
	req.page_count = 200;
	req.tag_bytes = GVM_PAGE_TAG_BYTES;
	assert_int_equal(gvm_dconn_send(c, &req, NULL), 0);
	assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
	assert_int_equal(h->id, 900);
	assert_int_equal(h->status, 0);
	assert_int_equal(h->tag_bytes, GVM_PAGE_TAG_BYTES);
	assert_int_equal(gvm_hdr_data_pages(h), 133);
	assert_int_equal(h->payload_len, 133 * (GVM_PAGE_SIZE + GVM_PAGE_TAG_BYTES));
	k = 0;
	for (uint32_t i = 0; i < 200; i++) {
		uint8_t want_tag[GVM_PAGE_TAG_BYTES];

		gvm_pattern_fill_page(want, 62, 1000 + i, 3);
		assert_int_equal(gvm_hdr_zero_test(h, i), gvm_page_is_zero(want));
		if (gvm_hdr_zero_test(h, i))
			continue;
		assert_memory_equal(payload + (size_t)k * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE);
		fill_page_tags(want_tag, 2, 1000 + i, 1);
		assert_memory_equal(gvm_frame_tags(h, payload) + (size_t)k * GVM_PAGE_TAG_BYTES,
				    want_tag, GVM_PAGE_TAG_BYTES);
		k++;
	}
	/* The same READ without tags: the plain layout. */
	req.id = 901;
	req.tag_bytes = 0;
	assert_int_equal(gvm_dconn_send(c, &req, NULL), 0);
	assert_int_equal(gvm_dconn_recv(c, &h, &payload), 0);
	assert_int_equal(h->id, 901);
	assert_int_equal(h->tag_bytes, 0);
	assert_int_equal(h->payload_len, 133 * GVM_PAGE_SIZE);
	k = 0;
	for (uint32_t i = 0; i < 200; i++) {
		gvm_pattern_fill_page(want, 62, 1000 + i, 3);
		if (!gvm_hdr_zero_test(h, i))
			assert_memory_equal(payload + (size_t)k++ * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE);
	}
	assert_int_equal(k, 133);

	/* Pages 100..109 written again without tags: zero tags there only. */
	for (uint32_t i = 0; i < 10; i++)
		gvm_pattern_fill_page(pages + (size_t)i * GVM_PAGE_SIZE, 61, 100 + i, 0);
	assert_int_equal(gvm_dconn_write(c, ns, 100, 10, pages), 0);
	assert_int_equal(gvm_dconn_read_tagged(c, ns, 96, 16, pages, NULL, tags), 0);
	for (uint32_t i = 0; i < 16; i++) {
		uint8_t want_tag[GVM_PAGE_TAG_BYTES] = { 0 };

		if (96 + i < 100 || 96 + i >= 110)
			fill_page_tags(want_tag, 1, 96 + i, 1);
		assert_memory_equal(tags + (size_t)i * GVM_PAGE_TAG_BYTES, want_tag,
				    GVM_PAGE_TAG_BYTES);
	}
	m = stats(c, HOST ".vm-sealed");
	assert_int_equal(m->ns_used_pages, GVM_FRAME_PAGES_MAX + 133);
	assert_int_equal(m->bad_frames, 0);
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* A donor with a backing file keeps each page's tag across a restart, as
 * it keeps the page. */
static void test_page_tags_survive_a_restart_from_the_backing_file(void **state)
{
	static uint8_t pages[300 * GVM_PAGE_SIZE], tags[300 * GVM_PAGE_TAG_BYTES];
	char backing[512];
	struct gvmt_proc p;
	struct gvm_dconn *c;
	uint32_t ns, again;

	(void)state;
	gvmt_path(backing, sizeof(backing), "tags.img");
	assert_true(gvmt_memserver_start(&p, key_path,
					 (const char *[]){ "--backing", backing, "--capacity", "16M", NULL }));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-kept", &ns), 0);
	for (uint32_t i = 0; i < 300; i++)
		gvm_pattern_fill_page(pages + (size_t)i * GVM_PAGE_SIZE, 71, 5000 + i, 7);
	fill_page_tags(tags, 3, 5000, 300);
	assert_int_equal(gvm_dconn_write_tagged(c, ns, 5000, 300, pages, tags), 0);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);

	assert_true(gvmt_memserver_restart(&p, key_path, (const char *[]){ "--backing", backing, NULL }));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-kept", &again), 0);
	assert_int_equal(again, ns);
	assert_int_equal(expect_tagged_pages(c, ns, 5000, 300, 71, 7, 3), 300 / 7 + 1);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* A WRITE that says tag_bytes 16 but carries its pages only (what a client
 * sends that forgets the tags), a READ asking for tags of 8 bytes, and a
 * DISCARD with tags are malformed: each closes its connection with a line
 * saying why and counts a bad frame; a client connected before goes on,
 * its tagged pages as they were. */
static void test_tagged_write_without_its_tags_closes_that_connection_only(void **state)
{
	static uint8_t page[GVM_PAGE_SIZE], tag[GVM_PAGE_TAG_BYTES];
	uint8_t frame[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES + GVM_PAGE_SIZE];
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	struct gvm_hdr h;
	uint32_t ns;
	size_t len;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-strict", &ns), 0);
	gvm_pattern_fill_page(page, 81, 7, 0);
	fill_page_tags(tag, 4, 7, 1);
	assert_int_equal(gvm_dconn_write_tagged(c, ns, 7, 1, page, tag), 0);

	gvm_hdr_init(&h, GVM__OP__OP_WRITE, 1);
	h.ns = ns;
	h.first_page = 7;
	h.page_count = 1;
	h.tag_bytes = GVM_PAGE_TAG_BYTES;
	h.payload_len = GVM_PAGE_SIZE; /* the page, not its tag */
	len = encode(&h, frame);
	memset(frame + len, 0xab, GVM_PAGE_SIZE);
	send_bad_after_auth(&p, frame, len + GVM_PAGE_SIZE, false);
	gvm_hdr_init(&h, GVM__OP__OP_READ, 2);
	h.ns = ns;
	h.first_page = 7;
	h.page_count = 1;
	h.tag_bytes = 8;
	len = encode(&h, frame);
	send_bad_after_auth(&p, frame, len, false);
	h.op = GVM__OP__OP_DISCARD;
	h.tag_bytes = GVM_PAGE_TAG_BYTES;
	len = encode(&h, frame);
	send_bad_after_auth(&p, frame, len, false);

	assert_int_equal(expect_tagged_pages(c, ns, 7, 1, 81, 0, 4), 0);
	m = stats(c, NULL);
	assert_int_equal(m->bad_frames, 3);
	assert_int_equal(m->writes, 1);
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(c);
	assert_true(gvmt_proc_alive(&p));
	assert_int_equal(gvmt_file_count(p.log, "closing: bad frame: payload_len does not match the non-zero pages and their tags (op WRITE"), 1);
	assert_int_equal(gvmt_file_count(p.log, "closing: bad frame: tag_bytes is neither 0 nor GVM_PAGE_TAG_BYTES (op READ"), 1);
	assert_int_equal(gvmt_file_count(p.log, "closing: bad frame: tag_bytes outside a READ or a WRITE request (op DISCARD"), 1);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* Every call by id a broker kept from before a restart: each ENOENT, and
 * nothing read, written or listed. */
static void expect_id_unknown(struct gvm_dconn *c, uint32_t ns)
{
	static uint8_t buf[4 * GVM_PAGE_SIZE];
	uint32_t zeros;

	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(gvm_dconn_read(c, ns, 0, 4, buf, &zeros), -ENOENT);
	assert_non_null(strstr(gvm_dconn_error(c), "unknown namespace"));
	assert_int_equal(gvm_dconn_list(c, ns, 0, 64, buf), -ENOENT);
	for (size_t i = 0; i < sizeof(buf); i++)
		if (buf[i] != 0x5a)
			fail_msg("READ or LIST of a dead id %#x wrote byte %zu", ns, i);
	gvm_pattern_fill_page(buf, 999, 0, 0);
	assert_int_equal(gvm_dconn_write(c, ns, 0, 1, buf), -ENOENT);
	assert_int_equal(gvm_dconn_discard(c, ns, 0, 4), -ENOENT);
}

/* An anonymous donor restarted forgets its namespaces; the same names
 * opened again take the same table indices (the first restart hands
 * vm-b the index vm-a had, later ones each name its own), but never the
 * same ids: every id of before gets ENOENT on READ, WRITE, DISCARD and
 * LIST, and the new namespaces' pages are untouched by those attempts.
 * Over 5 restarts all 12 ids differ; a repeat anywhere is a 1 in 25000
 * event (2^19 - 1 tags). */
static void test_anonymous_restart_gives_new_ids_and_old_ids_are_unknown(void **state)
{
	enum { RESTARTS = 5 };
	uint32_t a, b, a2, b2, seen[2 * (RESTARTS + 1)], nseen = 0;
	uint8_t bitmap[64];
	struct gvmt_proc p;
	struct gvm_dconn *c;
	uint64_t bad;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-a", &a), 0);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-b", &b), 0);
	assert_int_equal(NS_INDEX(a), 1);
	assert_int_equal(NS_INDEX(b), 2);
	write_pattern(c, a, 100, 0, 64, 0);
	write_pattern(c, b, 200, 0, 64, 0);
	gvm_dconn_close(c);
	seen[nseen++] = a;
	seen[nseen++] = b;
	for (int r = 1; r <= RESTARTS; r++) {
		assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
		assert_true(gvmt_memserver_restart(&p, key_path, NULL));
		c = connect_ok(&p);
		/* vm-b first: it takes index 1, vm-a's before the first restart. */
		assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-b", &b2), 0);
		assert_int_equal(NS_INDEX(b2), 1);
		write_pattern(c, b2, 200 + (uint64_t)r, 0, 64, 0);
		expect_id_unknown(c, a);
		expect_id_unknown(c, b);
		assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-a", &a2), 0);
		assert_int_equal(NS_INDEX(a2), 2);
		expect_id_unknown(c, a);
		expect_id_unknown(c, b);
		for (uint32_t i = 0; i < nseen; i++)
			if (seen[i] == a2 || seen[i] == b2)
				fail_msg("restart %d: id %#x handed out again", r, seen[i]);
		seen[nseen++] = a2;
		seen[nseen++] = b2;
		assert_int_equal(read_checksum(c, b2, 0, 64, 64, 200 + (uint64_t)r, 0, &bad),
				 pattern_checksum(0, 64, 200 + (uint64_t)r, 0));
		assert_int_equal(bad, 0);
		list_ok(c, a2, 0, 64, bitmap);
		for (int i = 0; i < 8; i++)
			assert_int_equal(bitmap[i], 0); /* a fresh vm-a holds nothing */
		print_message("restart %d: vm-a %#x -> %#x, vm-b %#x -> %#x\n", r, a, a2, b, b2);
		a = a2;
		b = b2;
		gvm_dconn_close(c);
	}
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* With a backing file a namespace keeps its id across a restart: a broker
 * that kept it reads, writes and lists on without opening again, and
 * OPEN_NS gives the same id. A namespace dropped before the restart stays
 * gone: its id is unknown, and its name opened again gets another. */
static void test_file_backing_keeps_namespace_ids_across_restart(void **state)
{
	static uint8_t before[GVM_LIST_PAGES_MAX / 8], after[GVM_LIST_PAGES_MAX / 8];
	const char *args[] = { "--backing", NULL, "--capacity", "16M", NULL };
	char backing[512];
	struct gvmt_proc p;
	struct gvm_dconn *c;
	uint32_t keep, gone, id;
	uint64_t bad;

	(void)state;
	gvmt_path(backing, sizeof(backing), "ids.img");
	args[1] = backing;
	assert_true(gvmt_memserver_start(&p, key_path, args));
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-keep", &keep), 0);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-gone", &gone), 0);
	write_pattern(c, keep, 41, 10, 2000, 3);
	write_pattern(c, gone, 42, 0, 100, 0);
	list_ok(c, keep, 0, 4096, before);
	assert_int_equal(gvm_dconn_drop_ns(c, HOST ".vm-gone"), 0);
	gvm_dconn_close(c);

	for (int r = 0; r < 2; r++) {
		assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
		assert_true(gvmt_memserver_restart(&p, key_path, args));
		c = connect_ok(&p);
		/* The kept id, without OPEN_NS. */
		assert_int_equal(read_checksum(c, keep, 10, 2000, 256, 41, 3, &bad),
				 pattern_checksum(10, 2000, 41, 3));
		assert_int_equal(bad, 0);
		list_ok(c, keep, 0, 4096, after);
		assert_memory_equal(after, before, 4096 / 8);
		assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-keep", &id), 0);
		assert_int_equal(id, keep);
		expect_id_unknown(c, gone);
		gvm_dconn_close(c);
	}
	c = connect_ok(&p);
	assert_int_equal(gvm_dconn_open_ns(c, HOST ".vm-gone", &id), 0);
	assert_int_not_equal(id, gone);
	expect_id_unknown(c, gone);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

/* ---- floods of connections that never authenticate ---- */

#define FLOOD_BATCH 100 /* connects in flight at once: under the listen backlog */

/* Connections that never authenticate, from sources 127.0.x.y: loopback
 * takes any of them as a source, each standing for another machine. */
struct flood {
	struct sockaddr_in dst;
	uint32_t first_src; /* host byte order */
	unsigned sources, per_source;
	int *fds;           /* [sources * per_source], -1: closed by the donor */
	atomic_uint reopened;
	atomic_int stop, error; /* error: errno of a failed connect */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Gives this process as many open files as its hard limit allows; false if
 * that is fewer than want. */
static bool raise_nofile(rlim_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return false;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur >= want;
}

static void addr_of(const char *hostport, struct sockaddr_in *sa)
{
	char host[64];
	int port;

	assert_int_equal(sscanf(hostport, "%63[^:]:%d", host, &port), 2);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, host, &sa->sin_addr), 1);
}

/* A non-blocking connect to f->dst from source address src: the fd, or -1. */
static int flood_connect(const struct flood *f, uint32_t src)
{
	struct sockaddr_in from = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(src) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0 ||
	    (connect(fd, (const struct sockaddr *)&f->dst, sizeof(f->dst)) < 0 &&
	     errno != EINPROGRESS)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Waits until the donor has accepted the connections fds[from, to): each
 * then has the challenge to read, or EOF. At most 2 s. Without it the next
 * batch would overflow the listen backlog and wait out SYN retransmits. */
static void flood_wait_accepted(const struct flood *f, unsigned from, unsigned to)
{
	static struct pollfd pfd[FLOOD_BATCH];
	unsigned n = 0;

	for (unsigned i = from; i < to; i++)
		if (f->fds[i] >= 0)
			pfd[n++] = (struct pollfd){ .fd = f->fds[i], .events = POLLIN };
	for (double until = now_ms() + 2000; n && now_ms() < until;) {
		unsigned left = 0;

		poll(pfd, n, 100);
		for (unsigned i = 0; i < n; i++)
			if (!(pfd[i].revents & (POLLIN | POLLERR | POLLHUP)))
				pfd[left++] = pfd[i];
		n = left;
	}
}

/* Opens every connection, FLOOD_BATCH at a time. */
static void flood_open(struct flood *f)
{
	unsigned total = f->sources * f->per_source;

	for (unsigned from = 0; from < total; from += FLOOD_BATCH) {
		unsigned to = from + FLOOD_BATCH < total ? from + FLOOD_BATCH : total;

		for (unsigned i = from; i < to; i++) {
			f->fds[i] = flood_connect(f, f->first_src + i / f->per_source);
			if (f->fds[i] < 0)
				atomic_store(&f->error, errno);
		}
		flood_wait_accepted(f, from, to);
	}
}

/* Closes the connections the donor closed (EOF or reset; the challenge it
 * sends is read and dropped). Returns how many are still open. */
static unsigned flood_reap(struct flood *f)
{
	unsigned total = f->sources * f->per_source, open = 0;
	uint8_t sink[512];

	for (unsigned i = 0; i < total; i++) {
		ssize_t n;

		if (f->fds[i] < 0)
			continue;
		while ((n = recv(f->fds[i], sink, sizeof(sink), MSG_DONTWAIT)) > 0)
			;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			open++;
			continue;
		}
		close(f->fds[i]);
		f->fds[i] = -1;
	}
	return open;
}

static void flood_close_all(struct flood *f)
{
	for (unsigned i = 0; i < f->sources * f->per_source; i++)
		if (f->fds[i] >= 0)
			close(f->fds[i]);
	free(f->fds);
}

static void flood_init(struct flood *f, const char *dst, const char *first_src,
		       unsigned sources, unsigned per_source)
{
	struct in_addr a;

	memset(f, 0, sizeof(*f));
	addr_of(dst, &f->dst);
	assert_int_equal(inet_pton(AF_INET, first_src, &a), 1);
	f->first_src = ntohl(a.s_addr);
	f->sources = sources;
	f->per_source = per_source;
	f->fds = malloc(sizeof(*f->fds) * sources * per_source);
	assert_non_null(f->fds);
}

/* Writes 256 pages to a namespace of host and reads them back. */
static void real_client_round_trip(struct gvm_dconn *c, const char *ns_name, uint64_t seed)
{
	uint32_t ns;
	uint64_t bad;

	assert_int_equal(gvm_dconn_open_ns(c, ns_name, &ns), 0);
	write_pattern(c, ns, seed, 0, 256, 5);
	assert_int_equal(read_checksum(c, ns, 0, 256, 64, seed, 5, &bad),
			 pattern_checksum(0, 256, seed, 5));
	assert_int_equal(bad, 0);
}

/* 1100 connections from one source that never authenticate: the donor
 * keeps MS_UNAUTH_PER_SOURCE_MAX (16) of them, closes the rest at once,
 * logs that in a few lines, and serves a broker from another address as
 * if nothing happened. */
static void test_flood_from_one_source_keeps_16_unauthenticated_and_serves_others(void **state)
{
	enum { FLOOD = 1100 };
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c;
	struct flood f;
	unsigned open;
	double t0, waited;

	(void)state;
	if (!raise_nofile(FLOOD + 256))
		skip();
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	flood_init(&f, p.addr, "127.0.0.2", 1, FLOOD);
	t0 = now_ms();
	flood_open(&f);
	assert_int_equal(atomic_load(&f.error), 0);
	while ((open = flood_reap(&f)) > MS_UNAUTH_PER_SOURCE_MAX && now_ms() < t0 + 3000)
		usleep(20 * 1000);
	waited = now_ms() - t0;
	print_message("%u of %u connections from 127.0.0.2 still open after %.0f ms\n", open, FLOOD,
		      waited);
	assert_true(waited < MS_AUTH_TIMEOUT_MS - 500); /* the ones kept are not yet timed out */
	assert_int_equal(open, MS_UNAUTH_PER_SOURCE_MAX);

	c = connect_as(&p, "good"); /* from 127.0.0.1 */
	real_client_round_trip(c, "good.vm", 61);
	m = stats(c, NULL);
	assert_int_equal(m->connections, MS_UNAUTH_PER_SOURCE_MAX + 1);
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(c);
	assert_int_equal(flood_reap(&f), MS_UNAUTH_PER_SOURCE_MAX);
	assert_true(gvmt_proc_alive(&p));
	flood_close_all(&f);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
	/* 1092 closes, a handful of lines: the first says why, then counts. */
	assert_true(gvmt_file_count(p.log, "16 unauthenticated connections from 127.0.0.2 already") >= 1);
	assert_true(gvmt_file_count(p.log, "more connections at once: over 16 unauthenticated from one source") >= 1);
	assert_true(gvmt_file_count_lines(p.log, "") < 20);
}

/* Opens the flood, then refills what the donor closes, FLOOD_REFILL_PER_TICK
 * every 10 ms, until told to stop. */
#define FLOOD_REFILL_PER_TICK 20 /* every 10 ms: 2000 connections a second */
static void *flood_main(void *arg)
{
	struct flood *f = arg;
	unsigned total = f->sources * f->per_source;

	flood_open(f);
	while (!atomic_load(&f->stop)) {
		unsigned refilled = 0;

		flood_reap(f);
		for (unsigned i = 0; i < total && refilled < FLOOD_REFILL_PER_TICK; i++) {
			if (f->fds[i] >= 0)
				continue;
			f->fds[i] = flood_connect(f, f->first_src + i / f->per_source);
			if (f->fds[i] < 0)
				atomic_store(&f->error, errno);
			refilled++;
			atomic_fetch_add(&f->reopened, 1);
		}
		usleep(10 * 1000);
	}
	return NULL;
}

/* The flood thread of the test running, stopped by stop_flood even when
 * the test fails half-way. */
static struct flood flood;
static pthread_t flood_thread;
static bool flood_running;

static int stop_flood(void **state)
{
	(void)state;
	if (flood_running) {
		atomic_store(&flood.stop, 1);
		pthread_join(flood_thread, NULL);
		flood_close_all(&flood);
		flood_running = false;
	}
	return 0;
}

/* 300 sources, 8 connections each, that never authenticate and come back
 * when closed: the donor holds at most 256 of them, the oldest making room,
 * so a real client gets in within a few seconds and is served. */
static void test_distributed_flood_holds_256_unauthenticated_and_lets_a_client_in(void **state)
{
	enum { SOURCES = 300, PER_SOURCE = 8 };
	struct flood *f = &flood;
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct gvm_dconn *c = NULL;
	char why[512];
	double t0, in_ms;
	int tries = 0;

	(void)state;
	if (!raise_nofile(SOURCES * PER_SOURCE + 256))
		skip();
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	flood_init(f, p.addr, "127.0.1.1", SOURCES, PER_SOURCE); /* to 127.0.2.44 */
	assert_int_equal(pthread_create(&flood_thread, NULL, flood_main, f), 0);
	flood_running = true;
	/* The client comes while the flood refills what the donor closes. */
	for (t0 = now_ms(); atomic_load(&f->reopened) < 200 && now_ms() < t0 + 10000;)
		usleep(1000);
	assert_true(atomic_load(&f->reopened) >= 200);
	t0 = now_ms();
	while (now_ms() < t0 + 5000) {
		tries++;
		if (gvm_dconn_open(&c, p.addr, &key, "good", why, sizeof(why)) == 0)
			break;
		c = NULL;
		usleep(50 * 1000);
	}
	in_ms = now_ms() - t0;
	print_message("client in after %d tries, %.0f ms, the flood refilling (%u reopened)\n",
		      tries, in_ms, atomic_load(&f->reopened));
	if (!c)
		fail_msg("no connection within 5 s under the flood: %s", why);
	real_client_round_trip(c, "good.vm", 62);
	m = stats(c, NULL);
	print_message("donor connections: %u\n", (unsigned)m->connections);
	assert_true(m->connections <= MS_UNAUTH_MAX + 1);
	assert_true(m->connections >= MS_UNAUTH_MAX / 2); /* the flood is on */
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(c);
	assert_true(gvmt_proc_alive(&p));
	stop_flood(NULL);
	assert_int_equal(atomic_load(&f->error), 0);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
	assert_true(gvmt_file_count(p.log, "the oldest of 256 unauthenticated connections") >= 1);
	assert_true(gvmt_file_count(p.log, "unauthenticated connections, oldest first") >= 1);
	assert_int_equal(gvmt_file_count(p.log, "from one source"), 0);
	assert_true(gvmt_file_count_lines(p.log, "") < 40);
}

/* Opens a connection as host, trying again while the donor answers EBUSY
 * (a close it has not seen yet) for up to 2 s: the connection, or NULL. */
static struct gvm_dconn *connect_when_room(const struct gvmt_proc *p, const char *host)
{
	struct gvm_dconn *c = NULL;
	char why[512];
	int err = -EBUSY;

	for (double until = now_ms() + 2000; err == -EBUSY && now_ms() < until;) {
		err = gvm_dconn_open(&c, p->addr, &key, host, why, sizeof(why));
		if (err == -EBUSY)
			usleep(10 * 1000);
	}
	if (err)
		print_message("connect as %s: %s\n", host, why);
	return err ? NULL : c;
}

/* Asserts that one more connection as host is refused busy, with why
 * containing want; counts it into *refused. */
static void assert_busy(const struct gvmt_proc *p, const char *host, const char *want,
			unsigned *refused)
{
	struct gvm_dconn *c = NULL;
	char why[512];

	assert_int_equal(gvm_dconn_open(&c, p->addr, &key, host, why, sizeof(why)), -EBUSY);
	assert_null(c);
	if (!strstr(why, want))
		fail_msg("refusal of %s says '%s', not '%s'", host, why, want);
	(*refused)++;
}

/* Refusals busy the donor logged: a line each, or counted into a summary
 * line ("refused N more connections busy"). */
static unsigned logged_busy_refusals(const char *log)
{
	FILE *f = fopen(log, "r");
	char line[1024];
	unsigned n = 0;
	const char *q;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, ": closing: host ") && strstr(line, " busy: it holds "))
			n++;
		else if (strstr(line, ": closing: donor busy: "))
			n++;
		else if ((q = strstr(line, "refused ")) && strstr(q, " more connections busy: "))
			n += (unsigned)strtoul(q + strlen("refused "), NULL, 10);
	}
	fclose(f);
	return n;
}

/* --host-conns 4 counts authenticated connections per host id: hosta's
 * fifth is refused busy (EBUSY) with a reason naming the host and the
 * limit, while hostb gets in and every one is served. An orderly close,
 * a reset and a client killed with its connections each make room for
 * exactly as many as left. A burst of refusals is logged rate-limited,
 * every one of them counted. */
static void test_fifth_connection_of_a_host_is_refused_busy_while_another_host_gets_in(void **state)
{
	static const char busy_a[] =
		"host hosta busy: it holds 4 authenticated connections to this donor, the most one host may (--host-conns 4)";
	struct linger reset = { .l_onoff = 1, .l_linger = 0 };
	struct gvm_dconn *a[4], *b, *cc[4];
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	unsigned refused = 0;
	int ready[2], status;
	double t0 = now_ms();
	char byte;
	pid_t child;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, (const char *[]){ "--host-conns", "4", NULL }));
	for (int i = 0; i < 4; i++)
		a[i] = connect_as(&p, "hosta");
	assert_busy(&p, "hosta", busy_a, &refused);
	b = connect_as(&p, "hostb");
	for (int i = 0; i < 4; i++)
		assert_int_equal(gvm_dconn_ping(a[i]), 0);
	real_client_round_trip(b, "hostb.vm", 7);
	m = stats(b, NULL);
	assert_int_equal(m->connections, 5); /* the refused one is gone */
	gvm__memserver_stats__free_unpacked(m, NULL);

	/* An orderly close (FIN) makes room for one, and only one. */
	gvm_dconn_close(a[3]);
	a[3] = connect_when_room(&p, "hosta");
	assert_non_null(a[3]);
	assert_busy(&p, "hosta", busy_a, &refused);
	/* So does a reset (SO_LINGER 0: RST, no FIN). */
	assert_int_equal(setsockopt(gvm_dconn_fd(a[0]), SOL_SOCKET, SO_LINGER, &reset,
				    sizeof(reset)),
			 0);
	gvm_dconn_close(a[0]);
	a[0] = connect_when_room(&p, "hosta");
	assert_non_null(a[0]);
	assert_busy(&p, "hosta", busy_a, &refused);

	/* A client killed holding all four of hostc's: the kernel closes them,
	 * and the donor gives hostc its four again. */
	assert_int_equal(pipe(ready), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct gvm_dconn *mine[4];
		char why[512];

		close(ready[0]);
		for (int i = 0; i < 4; i++)
			CHILD_CHECK(gvm_dconn_open(&mine[i], p.addr, &key, "hostc", why, sizeof(why)) == 0,
				    3, "connect as hostc: %s", why);
		CHILD_CHECK(write(ready[1], "r", 1) == 1, 4, "tell the parent");
		pause();
		_exit(0);
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &byte, 1), 1);
	close(ready[0]);
	assert_busy(&p, "hostc",
		    "host hostc busy: it holds 4 authenticated connections to this donor", &refused);
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status));
	for (int i = 0; i < 4; i++) {
		cc[i] = connect_when_room(&p, "hostc");
		assert_non_null(cc[i]);
	}
	assert_busy(&p, "hostc",
		    "host hostc busy: it holds 4 authenticated connections to this donor", &refused);

	/* A burst: each refusal answered, the log a line or two and a count. */
	for (int i = 0; i < 40; i++)
		assert_busy(&p, "hosta", busy_a, &refused);
	for (int i = 0; i < 4; i++)
		assert_int_equal(gvm_dconn_ping(a[i]), 0);
	m = stats(b, NULL);
	assert_int_equal(m->connections, 9);
	gvm__memserver_stats__free_unpacked(m, NULL);
	for (int i = 0; i < 4; i++) {
		gvm_dconn_close(a[i]);
		gvm_dconn_close(cc[i]);
	}
	gvm_dconn_close(b);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
	print_message("%u refusals, %d of them logged one by one\n", refused,
		      gvmt_file_count(p.log, " busy: it holds "));
	assert_int_equal(logged_busy_refusals(p.log), refused);
	assert_true(gvmt_file_count(p.log, "closing: host hosta busy: it holds 4") >= 1);
	/* A line a second at most, the rest counted. */
	assert_true(gvmt_file_count(p.log, " busy: it holds ") <= (now_ms() - t0) / 1000 + 2);
	assert_true(gvmt_file_count(p.log, " more connections busy: their host held 4") >= 1);
}

/* 1500 authenticated connections from four hosts, each one served: no cap
 * near 1024 is left, and the start line gives the one the open-file limit
 * sets (the test's own, raised to its hard limit, which the donor inherits). */
static void test_over_1024_authenticated_connections_from_several_hosts_are_served(void **state)
{
	enum { CONNS = 1500, HOSTS = 4 };
	static const char *const hosts[HOSTS] = { "rack1-h1", "rack1-h2", "rack2-h1", "rack2-h2" };
	static struct gvm_dconn *c[CONNS];
	uint32_t ns[HOSTS];
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	struct rlimit rl;
	char line[160], name[40];
	uint64_t bad;

	(void)state;
	if (!raise_nofile(CONNS + 256)) {
		getrlimit(RLIMIT_NOFILE, &rl);
		print_message("skipped: the hard open-file limit %llu is below the %u this test needs (ulimit -Hn)\n",
			      (unsigned long long)rl.rlim_max, CONNS + 256);
		skip();
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	for (unsigned i = 0; i < CONNS; i++)
		c[i] = connect_as(&p, hosts[i % HOSTS]);
	m = stats(c[0], NULL);
	assert_int_equal(m->connections, CONNS);
	gvm__memserver_stats__free_unpacked(m, NULL);
	for (unsigned i = 0; i < CONNS; i++)
		if (gvm_dconn_ping(c[i]))
			fail_msg("connection %u (host %s): ping: %s", i, hosts[i % HOSTS],
				 gvm_dconn_error(c[i]));
	/* Pages written on a host's first connection read back on its last. */
	for (unsigned h = 0; h < HOSTS; h++) {
		snprintf(name, sizeof(name), "%s.vm", hosts[h]);
		assert_int_equal(gvm_dconn_open_ns(c[h], name, &ns[h]), 0);
		write_pattern(c[h], ns[h], 900 + h, 0, 64, 0);
	}
	for (unsigned h = 0; h < HOSTS; h++)
		assert_int_equal(read_checksum(c[CONNS - HOSTS + h], ns[h], 0, 64, 16, 900 + h, 0, &bad),
				 pattern_checksum(0, 64, 900 + h, 0));
	assert_int_equal(bad, 0);
	for (unsigned i = 0; i < CONNS; i++)
		gvm_dconn_close(c[i]);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
	snprintf(line, sizeof(line), "serving up to %llu connections (open-file limit %llu",
		 (unsigned long long)(rl.rlim_max - MS_FDS_RESERVED(1u)),
		 (unsigned long long)rl.rlim_max);
	print_message("expected in the log: %s\n", line);
	assert_int_equal(gvmt_file_count(p.log, line), 1);
	assert_int_equal(gvmt_file_count(p.log, "busy"), 0);
}

/* Polls the donor's count of open connections (over c) until it is want:
 * the closes it has not seen yet are in. */
static void wait_connections(struct gvm_dconn *c, unsigned want)
{
	Gvm__MemserverStats *m;
	unsigned now = 0;

	for (double until = now_ms() + 3000; now_ms() < until; usleep(5 * 1000)) {
		m = stats(c, NULL);
		now = (unsigned)m->connections;
		gvm__memserver_stats__free_unpacked(m, NULL);
		if (now == want)
			return;
	}
	fail_msg("the donor counts %u connections, not %u", now, want);
}

/* 200 hosts at --host-conns 3, 600 connections: each host's fourth is
 * refused. Every third host then leaves altogether (its slot in the table
 * is freed, and hosts placed past it move back), and after that every other
 * host closes one: each of those gets exactly one back, and the hosts that
 * left three, no more. The count per host stays exact as hosts come and go,
 * over a table that grew past its first slots. */
static void test_per_host_counts_stay_exact_as_200_hosts_come_and_go(void **state)
{
	enum { HOSTS = 200, PER_HOST = 3, LEAVING = (HOSTS + 2) / 3 };
	static struct gvm_dconn *c[HOSTS][PER_HOST];
	struct gvmt_proc p;
	unsigned refused = 0;
	char host[HOSTS][16], want[HOSTS][120];

	(void)state;
	if (!raise_nofile(HOSTS * PER_HOST + 256))
		skip();
	for (unsigned h = 0; h < HOSTS; h++) {
		snprintf(host[h], sizeof(host[h]), "h%u", h);
		snprintf(want[h], sizeof(want[h]), "host %s busy: it holds 3 authenticated connections",
			 host[h]);
	}
	assert_true(gvmt_memserver_start(&p, key_path, (const char *[]){ "--host-conns", "3", NULL }));
	for (unsigned i = 0; i < PER_HOST; i++)
		for (unsigned h = 0; h < HOSTS; h++)
			c[h][i] = connect_as(&p, host[h]);
	for (unsigned h = 0; h < HOSTS; h++)
		assert_busy(&p, host[h], want[h], &refused);
	/* Hosts h % 3 == 0 leave, from the last down. */
	for (unsigned h = HOSTS; h-- > 0;)
		for (unsigned i = 0; h % 3 == 0 && i < PER_HOST; i++) {
			gvm_dconn_close(c[h][i]);
			c[h][i] = NULL;
		}
	wait_connections(c[1][0], (HOSTS - LEAVING) * PER_HOST);
	/* The others close their middle one. */
	for (unsigned h = 0; h < HOSTS; h++)
		if (h % 3) {
			gvm_dconn_close(c[h][1]);
			c[h][1] = NULL;
		}
	wait_connections(c[1][0], (HOSTS - LEAVING) * (PER_HOST - 1));
	for (unsigned pass = 0; pass < 2; pass++) /* the stayers first */
		for (unsigned h = 0; h < HOSTS; h++) {
			if ((h % 3 == 0) != (pass == 1))
				continue;
			for (unsigned i = 0; i < PER_HOST; i++)
				if (!c[h][i]) {
					c[h][i] = connect_when_room(&p, host[h]);
					if (!c[h][i])
						fail_msg("host %s: no room after its close", host[h]);
				}
			assert_busy(&p, host[h], want[h], &refused);
		}
	wait_connections(c[1][0], HOSTS * PER_HOST);
	for (unsigned h = 0; h < HOSTS; h++)
		for (unsigned i = 0; i < PER_HOST; i++) {
			assert_int_equal(gvm_dconn_ping(c[h][i]), 0);
			gvm_dconn_close(c[h][i]);
		}
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
	assert_int_equal(logged_busy_refusals(p.log), refused);
}

struct racer {
	const char *addr;
	struct gvm_dconn *c[20];
	int err[20];
	char why[512];
};

/* Opens 20 connections as host "racer" one after another, as fast as the
 * donor answers; the results stay in r (no cmocka off the main thread). */
static void *racer_main(void *arg)
{
	struct racer *r = arg;
	char why[512];

	for (int i = 0; i < 20; i++) {
		r->c[i] = NULL;
		r->err[i] = gvm_dconn_open(&r->c[i], r->addr, &key, "racer", why, sizeof(why));
		if (r->err[i] && r->err[i] != -EBUSY)
			snprintf(r->why, sizeof(r->why), "%s", why);
	}
	return NULL;
}

/* One host's connections spread over four donor threads, opened by eight
 * clients at once: --host-conns 50 lets exactly 50 in and refuses the other
 * 110 busy, however the accepts interleave. */
static void test_host_limit_holds_exactly_when_four_threads_take_connections_at_once(void **state)
{
	enum { RACERS = 8, EACH = 20, LIMIT = 50 };
	static struct racer r[RACERS];
	pthread_t t[RACERS];
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	unsigned in = 0, busy = 0;
	struct gvm_dconn *other;

	(void)state;
	if (!raise_nofile(RACERS * EACH + 256))
		skip();
	assert_true(gvmt_memserver_start(&p, key_path,
					 (const char *[]){ "--threads", "4", "--host-conns", "50", NULL }));
	for (int i = 0; i < RACERS; i++) {
		r[i].addr = p.addr;
		r[i].why[0] = 0;
		assert_int_equal(pthread_create(&t[i], NULL, racer_main, &r[i]), 0);
	}
	for (int i = 0; i < RACERS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (int i = 0; i < RACERS; i++) {
		if (r[i].why[0])
			fail_msg("racer %d: %s", i, r[i].why);
		for (int j = 0; j < EACH; j++) {
			in += r[i].err[j] == 0;
			busy += r[i].err[j] == -EBUSY;
		}
	}
	print_message("%u in, %u refused busy\n", in, busy);
	assert_int_equal(in, LIMIT);
	assert_int_equal(busy, RACERS * EACH - LIMIT);
	other = connect_as(&p, "bystander");
	m = stats(other, NULL);
	assert_int_equal(m->connections, LIMIT + 1);
	gvm__memserver_stats__free_unpacked(m, NULL);
	for (int i = 0; i < RACERS; i++)
		for (int j = 0; j < EACH; j++)
			if (r[i].c[j]) {
				assert_int_equal(gvm_dconn_ping(r[i].c[j]), 0);
				gvm_dconn_close(r[i].c[j]);
			}
	/* All closed: the host gets its 50 again. */
	wait_connections(other, 1);
	for (int j = 0; j < EACH; j++) {
		r[0].c[j] = connect_as(&p, "racer");
		gvm_dconn_close(r[0].c[j]);
	}
	gvm_dconn_close(other);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
	assert_int_equal(logged_busy_refusals(p.log), busy);
}

/* A loopback port the kernel just handed out, free again. */
static int free_port_number(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static bool accepts(const char *addr)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	addr_of(addr, &sa);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* One try at gvm-memserver with its open-file limit, soft and hard, at
 * nofile and none of this program's files: 0 once it accepts, its exit
 * status if it exits first. */
static int try_with_nofile(struct gvmt_proc *p, rlim_t nofile, const char *const *argv)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = { nofile, nofile };
		int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		close_range(3, ~0u, 0);
		CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, 126, "setrlimit: %s", strerror(errno));
		execv(argv[0], (char *const *)argv);
		CHILD_CHECK(0, 127, "exec %s: %s", argv[0], strerror(errno));
	}
	p->pid = pid;
	for (double until = now_ms() + 10000; now_ms() < until; usleep(10 * 1000)) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			p->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		if (accepts(p->addr))
			return 0;
	}
	gvmt_proc_stop(p, SIGKILL);
	fail_msg("gvm-memserver on %s: not accepting after 10 s", p->addr);
	return -1;
}

/* gvmt_memserver_start with the open-file limit at nofile: 0 once it
 * accepts, else its exit status (p->log says why). */
static int start_with_nofile(struct gvmt_proc *p, rlim_t nofile, const char *const *extra)
{
	static int serial;
	const char *argv[16];
	char bin[512];
	int argc = 0, err = 1;

	memset(p, 0, sizeof(*p));
	snprintf(p->log, sizeof(p->log), "%s/memserver-nofile-%d.log", gvmt_dir(), ++serial);
	argv[argc++] = gvmt_bin("gvm-memserver", bin, sizeof(bin));
	argv[argc++] = "--listen";
	argv[argc++] = p->addr;
	argv[argc++] = "--key-file";
	argv[argc++] = key_path;
	for (int i = 0; extra && extra[i] && argc < 15; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;
	for (int attempt = 0; attempt < 5; attempt++) { /* the port may be taken meanwhile */
		snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", free_port_number());
		err = try_with_nofile(p, nofile, argv);
		if (!err || !gvmt_file_count(p->log, "Address already in use"))
			break;
	}
	return err;
}

/* The open-file limit, not a constant, sets how many authenticated
 * connections the donor serves: at 600 files and one thread, 600 - 257 -
 * 64 = 279, the next refused busy whatever its host, and one more after a
 * close. The start line says so, and that the limit is low, and how to
 * raise it. At 300 files, too few for even 64, it does not start. */
static void test_open_file_limit_sets_how_many_connections_the_donor_serves(void **state)
{
	enum { NOFILE = 600, SERVES = NOFILE - MS_FDS_RESERVED(1u) };
	static struct gvm_dconn *c[SERVES];
	static const char busy[] =
		"donor busy: 279 authenticated connections open, the most it serves (open-file limit 600)";
	static const char *const hosts[] = { "east", "west", "north" };
	Gvm__MemserverStats *m;
	struct gvmt_proc p;
	unsigned refused = 0;

	(void)state;
	assert_int_equal(SERVES, 279);
	if (!raise_nofile(SERVES + 256))
		skip();
	assert_int_equal(start_with_nofile(&p, NOFILE, NULL), 0);
	for (unsigned i = 0; i < SERVES; i++)
		c[i] = connect_as(&p, hosts[i % 3]);
	assert_busy(&p, "east", busy, &refused);
	assert_busy(&p, "south", busy, &refused); /* a host with none is refused too */
	m = stats(c[0], NULL);
	assert_int_equal(m->connections, SERVES);
	gvm__memserver_stats__free_unpacked(m, NULL);
	gvm_dconn_close(c[1]); /* a "west" one: "south" gets its place */
	c[1] = connect_when_room(&p, "south");
	assert_non_null(c[1]);
	assert_busy(&p, "west", busy, &refused);
	for (unsigned i = 0; i < SERVES; i++)
		assert_int_equal(gvm_dconn_ping(c[i]), 0);
	for (unsigned i = 0; i < SERVES; i++)
		gvm_dconn_close(c[i]);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
	assert_int_equal(gvmt_file_count(p.log, "serving up to 279 connections (open-file limit 600)"), 1);
	assert_int_equal(gvmt_file_count(p.log, "open-file limit 600 is low: one host may hold 4096 connections (--host-conns), all hosts together only 279; raise it with LimitNOFILE="), 1);
	assert_true(gvmt_file_count(p.log, "closing: donor busy: 279 authenticated connections open") >= 1);
	assert_int_equal(logged_busy_refusals(p.log), refused);

	/* Two threads keep 2 * 257 + 64 = 578 files: 600 leaves too few. */
	assert_int_equal(start_with_nofile(&p, NOFILE, (const char *[]){ "--threads", "2", NULL }), 1);
	assert_int_equal(gvmt_file_count(p.log, "open-file limit 600 (the hard limit) is too low: 2 threads keep 578 files"), 1);
	assert_int_equal(gvmt_file_count(p.log, "raise it (LimitNOFILE= in the unit"), 1);
}

/* The authentication deadline runs from accept: a peer that sends one byte
 * of an AUTH answer every 500 ms is closed when it passes, not later. */
static void test_auth_deadline_is_fixed_from_accept_whatever_the_peer_trickles(void **state)
{
	uint8_t frame[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES + 64], sink[512];
	struct gvmt_proc p;
	struct gvm_hdr h;
	struct pollfd pfd;
	double t0, closed_at = 0;
	int fd, len, sent = 0;

	(void)state;
	assert_true(gvmt_memserver_start(&p, key_path, NULL));
	gvm_hdr_init(&h, GVM__OP__OP_AUTH, 0);
	snprintf(h.host_id, sizeof(h.host_id), "trickle");
	h.payload_len = GVM_AUTH_NONCE_BYTES + GVM_AUTH_MAC_BYTES;
	len = gvm_hdr_encode(&h, frame, sizeof(frame));
	assert_true(len > 0);
	memset(frame + len, 0x33, h.payload_len);
	len += (int)h.payload_len;
	t0 = now_ms();
	fd = raw_connect(p.addr);
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	while (!closed_at && now_ms() < t0 + 12000) {
		if (poll(&pfd, 1, 500) > 0) {
			ssize_t n = recv(fd, sink, sizeof(sink), 0); /* the challenge, then EOF */

			if (n <= 0)
				closed_at = now_ms();
			continue;
		}
		assert_true(sent < len); /* the answer is never complete */
		assert_int_equal(send(fd, frame + sent, 1, MSG_NOSIGNAL), 1);
		sent++;
	}
	close(fd);
	print_message("closed %.0f ms after connecting, %d bytes trickled\n", closed_at - t0, sent);
	assert_true(closed_at > 0);
	assert_true(sent >= 9);
	assert_true(closed_at - t0 >= MS_AUTH_TIMEOUT_MS - 100);
	assert_true(closed_at - t0 < MS_AUTH_TIMEOUT_MS + 1000);
	assert_int_equal(gvmt_file_count(p.log, "closing: no authentication within 5000 ms"), 1);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
}

static void test_command_line_errors_are_explained(void **state)
{
	char bin[512], log[600], loose[512], shortkey[512];

	(void)state;
	gvmt_bin("gvm-memserver", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/cli.log", gvmt_dir());
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--help", NULL }), 0);
	assert_true(gvmt_file_count(log, "Usage: gvm-memserver") == 1);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--capacity", "lots", NULL }), 2);
	assert_int_equal(gvmt_file_count(log, "--capacity lots: not a size"), 1);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--threads", "0", NULL }), 2);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--bogus", NULL }), 2);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--host-conns", "0", NULL }), 2);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--host-conns", "4k", NULL }), 2);
	assert_int_equal(gvmt_file_count(log, "--host-conns 4k: want a number from 1 to 1048576"), 1);
	assert_int_equal(gvmt_file_count(log, "--host-conns N       authenticated connections one host id may hold"), 1);
	assert_int_equal(gvmt_file_count(log, "(default 4096, max 1048576)"), 1);

	gvmt_path(loose, sizeof(loose), "loose.key");
	gvmt_make_key(loose, 32, NULL);
	chmod(loose, 0644);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--key-file", loose, NULL }), 1);
	assert_int_equal(gvmt_file_count(log, "lets group or others read it; chmod 600"), 1);
	gvmt_path(shortkey, sizeof(shortkey), "short.key");
	gvmt_make_key(shortkey, 8, NULL);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--key-file", shortkey, NULL }), 1);
	assert_int_equal(gvmt_file_count(log, "8 bytes, need at least 16"), 1);
	assert_int_equal(gvmt_run(log, (const char *[]){ bin, "--key-file", key_path, "--listen",
							 "nonsense:port", NULL }),
			 1);
	assert_int_equal(gvmt_file_count(log, "--listen nonsense:port"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pages_round_trip_by_checksum_across_namespaces),
		cmocka_unit_test(test_unwritten_and_zero_pages_travel_as_bits_only),
		cmocka_unit_test(test_capacity_full_is_a_clear_error_and_loses_nothing),
		cmocka_unit_test(test_file_backing_keeps_pages_across_restart),
		cmocka_unit_test(test_wrong_key_and_unauthenticated_peers_get_nothing),
		cmocka_unit_test(test_malformed_frames_do_not_disturb_a_healthy_client),
		cmocka_unit_test(test_pipelined_requests_are_answered_in_order_by_id),
		cmocka_unit_test(test_peer_that_never_reads_costs_bounded_memory),
		cmocka_unit_test(test_another_hosts_namespace_is_refused_by_name_and_by_every_id),
		cmocka_unit_test(test_one_host_holds_at_most_1024_namespaces_others_still_open),
		cmocka_unit_test(test_list_reports_exactly_the_pages_held_bit_by_bit),
		cmocka_unit_test(test_list_of_another_hosts_namespace_is_eacces_and_of_an_unknown_id_enoent),
		cmocka_unit_test(test_list_past_its_bounds_closes_that_connection_only),
		cmocka_unit_test(test_tagged_write_then_tagged_read_returns_each_pages_tag),
		cmocka_unit_test(test_page_tags_survive_a_restart_from_the_backing_file),
		cmocka_unit_test(test_tagged_write_without_its_tags_closes_that_connection_only),
		cmocka_unit_test(test_anonymous_restart_gives_new_ids_and_old_ids_are_unknown),
		cmocka_unit_test(test_file_backing_keeps_namespace_ids_across_restart),
		cmocka_unit_test(test_flood_from_one_source_keeps_16_unauthenticated_and_serves_others),
		cmocka_unit_test_teardown(test_distributed_flood_holds_256_unauthenticated_and_lets_a_client_in,
					  stop_flood),
		cmocka_unit_test(test_fifth_connection_of_a_host_is_refused_busy_while_another_host_gets_in),
		cmocka_unit_test(test_per_host_counts_stay_exact_as_200_hosts_come_and_go),
		cmocka_unit_test(test_host_limit_holds_exactly_when_four_threads_take_connections_at_once),
		cmocka_unit_test(test_over_1024_authenticated_connections_from_several_hosts_are_served),
		cmocka_unit_test(test_open_file_limit_sets_how_many_connections_the_donor_serves),
		cmocka_unit_test(test_auth_deadline_is_fixed_from_accept_whatever_the_peer_trickles),
		cmocka_unit_test(test_command_line_errors_are_explained),
	};

	srand((unsigned)getpid());
	gvmt_path(key_path, sizeof(key_path), "cluster.key");
	gvmt_make_key(key_path, 32, &key);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("memserver", tests, NULL, NULL);
}
