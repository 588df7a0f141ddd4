/* test_memserver.c: real gvm-memserver processes on loopback, driven through
 * proto/dclient.c and raw sockets: page round trips by checksum across
 * namespaces, zero pages, capacity exhaustion, restart from a backing file,
 * authentication, malformed and abandoned frames beside a healthy client,
 * pipelining, a peer that never reads, and the command line. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dclient.h"
#include "frame.h"
#include "pattern.h"
#include "procs.h"

static char key_path[512];
static struct gvm_key key;

static struct gvm_dconn *connect_ok(const struct gvmt_proc *p)
{
	struct gvm_dconn *c = NULL;
	char why[512];
	int err = gvm_dconn_open(&c, p->addr, &key, NULL, why, sizeof(why));

	if (err)
		fail_msg("connect %s: %s", p->addr, why);
	return c;
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
	assert_int_equal(gvm_dconn_open_ns(c, "vm-a", &a), 0);
	assert_int_equal(gvm_dconn_open_ns(c, "vm-b", &b), 0);
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
	m = stats(c, "vm-a");
	assert_int_equal(m->ns_used_pages, 2000 - 2000 / 8); /* zero pages take no slot */
	assert_int_equal(m->used_pages, 2000 - 2000 / 8 + 2000);
	assert_int_equal(m->namespaces, 2);
	gvm__memserver_stats__free_unpacked(m, NULL);
	/* Dropping one namespace leaves the other whole. */
	assert_int_equal(gvm_dconn_drop_ns(c, "vm-a"), 0);
	assert_int_equal(gvm_dconn_drop_ns(c, "vm-a"), -ENOENT);
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
	assert_int_equal(gvm_dconn_open_ns(c, "vm-z", &ns), 0);
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
	m = stats(c, "vm-z");
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
	assert_int_equal(gvm_dconn_open_ns(c, "vm-full", &ns), 0);
	assert_int_equal(gvm_dconn_open_ns(c, "vm-other", &other), 0);
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
	assert_int_equal(gvm_dconn_open_ns(c, "vm-keep", &a), 0);
	assert_int_equal(gvm_dconn_open_ns(c, "vm-gone", &b), 0);
	write_pattern(c, a, 31, 100, 3000, 5);
	write_pattern(c, b, 32, 0, 500, 0);
	assert_int_equal(gvm_dconn_drop_ns(c, "vm-gone"), 0);
	gvm_dconn_close(c);
	assert_int_equal(gvmt_proc_stop(&p, SIGTERM), 0);
	assert_int_equal(gvmt_file_count(p.log, "stopped cleanly"), 1);

	/* Restart without --capacity: the file's capacity, the same pages. */
	assert_true(gvmt_memserver_start(&p, key_path, (const char *[]){ "--backing", backing, NULL }));
	c = connect_ok(&p);
	m = stats(c, "vm-keep");
	assert_int_equal(m->capacity_pages, 32 * 256);
	assert_int_equal(m->namespaces, 1);
	assert_int_equal(m->ns_used_pages, 3000 - 3000 / 5);
	gvm__memserver_stats__free_unpacked(m, NULL);
	assert_int_equal(gvm_dconn_open_ns(c, "vm-keep", &a), 0);
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

	/* A WRITE header announcing 1 MiB before AUTH: cut off at the header,
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
	assert_int_equal(gvmt_file_count(p.log, "payload_len 1048576 over this connection's limit 64"), 1);
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

	if (gvm_dconn_open(&c, hc->p->addr, &key, NULL, why, sizeof(why)) ||
	    gvm_dconn_open_ns(c, "vm-healthy", &ns)) {
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
	assert_int_equal(gvm_dconn_open_ns(c, "vm-pipe", &ns), 0);
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
	assert_int_equal(gvm_dconn_open_ns(c, "vm-slow", &ns), 0);
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
		cmocka_unit_test(test_command_line_errors_are_explained),
	};

	srand((unsigned)getpid());
	gvmt_path(key_path, sizeof(key_path), "cluster.key");
	gvmt_make_key(key_path, 32, &key);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("memserver", tests, NULL, NULL);
}
