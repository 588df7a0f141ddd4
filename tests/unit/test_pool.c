/* test_pool.c: the broker's donor pool (broker/pool.c) against a donor
 * played by the test on a local socket, on the test's own libuv loop: a
 * request retargeted to another buffer (bk_pool_retarget) gets the rest of
 * its reply there, whether it was queued, sent, or half received, and its
 * old buffer is never written again.
 *
 * pool.c is included whole: its object needs the broker's counters
 * (stats.c, which pulls in the whole broker), so this file gives it the
 * two it uses instead. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define BK_STATS_H /* stats.h needs the CUSE device's header: these stand in */
struct bk_stats {
	uint64_t donor_errors, alloc_failures;
};
struct bk_stats bk_stats;
void bk_stats_nomem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bk_stats_nomem(const char *fmt, ...)
{
	(void)fmt;
	bk_stats.alloc_failures++;
}

#include "../../broker/pool.c"

#define TEST_HOST "testhost"
#define TEST_PAGES 4u
#define TEST_BYTES (TEST_PAGES * GVM_PAGE_SIZE)
#define TEST_WAIT_MS 5000

/* The donor's end of one connection. */
struct donor {
	int listener, fd;
	struct sockaddr_storage ss;
	struct gvm_key key;
	struct gvm_reader rd;
};

struct read_req {
	struct bk_req req; /* first: the pool hands back &req */
	int status;        /* 1 until answered */
	const uint8_t *payload;
	uint32_t payload_len;
};

static uv_loop_t loop;
static struct bk_pool *pool;
static struct donor dn;
static uint8_t payload[TEST_BYTES];

static uint64_t ms_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Runs the pool's loop a little. */
static void turn(void)
{
	uv_run(&loop, UV_RUN_NOWAIT);
	poll(NULL, 0, 1);
}

static void on_read_reply(struct bk_req *req, int status, const struct gvm_hdr *h,
			  const uint8_t *p)
{
	struct read_req *r = (struct read_req *)req;

	r->status = status;
	r->payload = p;
	r->payload_len = h ? h->payload_len : 0;
}

static struct read_req *read_req_new(uint8_t *rx_buf)
{
	struct read_req *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->status = 1;
	r->req.donor = 0;
	r->req.flags = BK_REQ_DEMAND;
	r->req.cb = on_read_reply;
	r->req.rx_buf = rx_buf;
	r->req.rx_cap = TEST_BYTES;
	gvm_hdr_init(&r->req.hdr, GVM__OP__OP_READ, 0);
	r->req.hdr.ns = 1;
	r->req.hdr.first_page = 8;
	r->req.hdr.page_count = TEST_PAGES;
	return r;
}

static void donor_send(const struct gvm_hdr *h, const uint8_t *p, size_t payload_bytes)
{
	uint8_t wire[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
	int len = gvm_hdr_encode(h, wire, sizeof(wire));

	assert_true(len > 0);
	assert_int_equal(send(dn.fd, wire, (size_t)len, MSG_NOSIGNAL), len);
	if (payload_bytes)
		assert_int_equal(send(dn.fd, p, payload_bytes, MSG_NOSIGNAL), (ssize_t)payload_bytes);
}

/* The next frame the pool sends, the loop turning meanwhile. */
static const struct gvm_hdr *donor_recv(void)
{
	uint64_t until = ms_now() + TEST_WAIT_MS;

	gvm_reader_next(&dn.rd);
	while (!gvm_reader_ready(&dn.rd)) {
		uint8_t buf[512];
		ssize_t n = recv(dn.fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_PEEK);

		if (n > 0) {
			n = gvm_reader_feed(&dn.rd, buf, (size_t)n);
			assert_true(n > 0);
			assert_int_equal(recv(dn.fd, buf, (size_t)n, MSG_DONTWAIT), n);
			continue;
		}
		assert_true(ms_now() < until);
		turn();
	}
	return &dn.rd.hdr;
}

/* Accepts the pool's connection and authenticates it. */
static void donor_accept(void)
{
	uint8_t donor_nonce[GVM_AUTH_NONCE_BYTES], mac[GVM_AUTH_MAC_BYTES];
	uint64_t until = ms_now() + TEST_WAIT_MS;
	const struct gvm_hdr *h;
	struct gvm_hdr a;

	while ((dn.fd = accept4(dn.listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0) {
		assert_true(ms_now() < until);
		turn();
	}
	gvm_auth_nonce(donor_nonce);
	gvm_hdr_init(&a, GVM__OP__OP_AUTH, 0);
	a.payload_len = GVM_AUTH_NONCE_BYTES;
	donor_send(&a, donor_nonce, sizeof(donor_nonce));
	h = donor_recv();
	assert_int_equal(h->op, GVM__OP__OP_AUTH);
	assert_string_equal(h->host_id, TEST_HOST);
	assert_int_equal(h->payload_len, GVM_AUTH_NONCE_BYTES + GVM_AUTH_MAC_BYTES);
	gvm_auth_client_mac(&dn.key, donor_nonce, dn.rd.payload, TEST_HOST, mac);
	assert_memory_equal(mac, dn.rd.payload + GVM_AUTH_NONCE_BYTES, sizeof(mac));
	gvm_auth_donor_mac(&dn.key, donor_nonce, dn.rd.payload, TEST_HOST, mac);
	gvm_hdr_init(&a, GVM__OP__OP_AUTH, h->id);
	a.response = true;
	a.payload_len = GVM_AUTH_MAC_BYTES;
	donor_send(&a, mac, sizeof(mac));
}

/* The READ the pool sends for r: its reply header, ready to send. */
static void donor_expect_read(struct gvm_hdr *reply)
{
	const struct gvm_hdr *h = donor_recv();

	assert_int_equal(h->op, GVM__OP__OP_READ);
	assert_false(h->response);
	gvm_hdr_init(reply, GVM__OP__OP_READ, h->id);
	reply->response = true;
	reply->ns = h->ns;
	reply->first_page = h->first_page;
	reply->page_count = h->page_count;
	reply->payload_len = TEST_BYTES;
}

static void wait_answered(const struct read_req *r)
{
	uint64_t until = ms_now() + TEST_WAIT_MS;

	while (r->status == 1) {
		assert_true(ms_now() < until);
		turn();
	}
}

static int setup(void **state)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&dn.ss;
	socklen_t len = sizeof(dn.ss);

	(void)state;
	memset(&dn, 0, sizeof(dn));
	dn.fd = -1;
	dn.key.len = 32;
	memset(dn.key.bytes, 0x42, dn.key.len);
	gvm_reader_init(&dn.rd);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	dn.listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(dn.listener >= 0);
	assert_int_equal(bind(dn.listener, (struct sockaddr *)sin, sizeof(*sin)), 0);
	assert_int_equal(listen(dn.listener, 4), 0);
	assert_int_equal(getsockname(dn.listener, (struct sockaddr *)&dn.ss, &len), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(bk_pool_create(&pool, &loop, &dn.key, TEST_HOST, 1, 60000), 0);
	assert_int_equal(bk_pool_add(pool, "the test's donor", &dn.ss), 0);
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + 1 + i / GVM_PAGE_SIZE);
	return 0;
}

/* Every handle closed before the pool and the loop go. */
static int teardown(void **state)
{
	(void)state;
	bk_pool_close(pool);
	for (int i = 0; i < 10; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	bk_pool_free(pool);
	assert_int_equal(uv_loop_close(&loop), 0);
	if (dn.fd >= 0)
		close(dn.fd);
	close(dn.listener);
	gvm_reader_free(&dn.rd);
	return 0;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* A READ retargeted to another buffer while queued (no connection yet),
 * or once sent, before its reply's header came: the whole payload arrives
 * in the new buffer, and nothing in the old one. */
static void retarget_whole(bool sent)
{
	uint8_t *old = malloc(TEST_BYTES), *moved = malloc(TEST_BYTES);
	struct read_req *r = read_req_new(old);
	struct gvm_hdr reply;

	assert_non_null(old);
	assert_non_null(moved);
	memset(old, 0xa5, TEST_BYTES);
	bk_pool_submit(pool, &r->req);
	if (!sent) {
		bk_pool_retarget(pool, &r->req, moved, TEST_BYTES);
		assert_ptr_equal(r->req.rx_buf, moved);
		assert_int_equal(r->req.rx_cap, TEST_BYTES);
	}
	donor_accept();
	donor_expect_read(&reply);
	if (sent)
		bk_pool_retarget(pool, &r->req, moved, TEST_BYTES);
	donor_send(&reply, payload, TEST_BYTES);
	wait_answered(r);
	assert_int_equal(r->status, 0);
	assert_ptr_equal(r->payload, moved);
	assert_memory_equal(moved, payload, TEST_BYTES);
	assert_true(all_bytes(old, TEST_BYTES, 0xa5));
	free(old);
	free(moved);
	free(r);
}

static void test_retarget_queued_request_gets_whole_reply_in_new_buffer(void **state)
{
	(void)state;
	retarget_whole(false);
}

static void test_retarget_sent_request_gets_whole_reply_in_new_buffer(void **state)
{
	(void)state;
	retarget_whole(true);
}

/* Retargeted with part of its payload received into the old buffer: the
 * rest lands in the new one at the same offsets, and nothing more in the
 * old one. */
static void test_retarget_half_received_reply_puts_rest_in_new_buffer_only(void **state)
{
	const size_t first = GVM_PAGE_SIZE + 1000;
	uint8_t *old = malloc(TEST_BYTES), *moved = malloc(TEST_BYTES);
	struct read_req *r = read_req_new(old);
	uint64_t until = ms_now() + TEST_WAIT_MS;
	struct gvm_hdr reply;

	(void)state;
	assert_non_null(old);
	assert_non_null(moved);
	memset(old, 0, TEST_BYTES);
	memset(moved, 0, TEST_BYTES);
	bk_pool_submit(pool, &r->req);
	donor_accept();
	donor_expect_read(&reply);
	donor_send(&reply, payload, first);
	while (memcmp(old, payload, first)) { /* the pool read it into old */
		assert_true(ms_now() < until);
		turn();
	}
	assert_int_equal(r->status, 1);
	bk_pool_retarget(pool, &r->req, moved, TEST_BYTES);
	assert_ptr_equal(r->req.rx_buf, moved);
	memset(old, 0xa5, TEST_BYTES);
	assert_int_equal(send(dn.fd, payload + first, TEST_BYTES - first, MSG_NOSIGNAL),
			 (ssize_t)(TEST_BYTES - first));
	wait_answered(r);
	assert_int_equal(r->status, 0);
	assert_ptr_equal(r->payload, moved);
	assert_int_equal(r->payload_len, TEST_BYTES);
	assert_memory_equal(moved + first, payload + first, TEST_BYTES - first);
	assert_true(all_bytes(old, TEST_BYTES, 0xa5));
	assert_int_equal(bk_stats.alloc_failures, 0);
	free(old);
	free(moved);
	free(r);
}

/* Retargeted to no buffer while half received: the rest goes to the
 * connection's own buffer; the old one is left alone. */
static void test_retarget_half_received_reply_to_null_leaves_old_buffer_alone(void **state)
{
	const size_t first = 3000;
	uint8_t *old = malloc(TEST_BYTES);
	struct read_req *r = read_req_new(old);
	uint64_t until = ms_now() + TEST_WAIT_MS;
	struct gvm_hdr reply;

	(void)state;
	assert_non_null(old);
	memset(old, 0, TEST_BYTES);
	bk_pool_submit(pool, &r->req);
	donor_accept();
	donor_expect_read(&reply);
	donor_send(&reply, payload, first);
	while (memcmp(old, payload, first)) {
		assert_true(ms_now() < until);
		turn();
	}
	bk_pool_retarget(pool, &r->req, NULL, 0);
	assert_null(r->req.rx_buf);
	memset(old, 0xa5, TEST_BYTES);
	assert_int_equal(send(dn.fd, payload + first, TEST_BYTES - first, MSG_NOSIGNAL),
			 (ssize_t)(TEST_BYTES - first));
	wait_answered(r);
	assert_int_equal(r->status, 0);
	assert_non_null(r->payload);
	assert_ptr_not_equal(r->payload, old);
	assert_true(all_bytes(old, TEST_BYTES, 0xa5));
	free(old);
	free(r);
}

/* Closed while a connection is being made: the connect is cancelled as
 * the handle closes, and that must not close it a second time (libuv
 * aborts). The request never sent is freed with the pool. */
static void test_close_while_connecting_closes_each_handle_once(void **state)
{
	struct read_req *r = read_req_new(malloc(TEST_BYTES));

	(void)state;
	assert_non_null(r->req.rx_buf);
	bk_pool_submit(pool, &r->req); /* its connection starts: no reply can come */
	assert_int_equal(r->status, 1);
	/* teardown closes the pool in this state */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_retarget_queued_request_gets_whole_reply_in_new_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_retarget_sent_request_gets_whole_reply_in_new_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_retarget_half_received_reply_puts_rest_in_new_buffer_only, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_retarget_half_received_reply_to_null_leaves_old_buffer_alone, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_close_while_connecting_closes_each_handle_once,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
