/* test_hostile_donor.c: a donor that holds the cluster key and lies. A proxy
 * in this process (struct evil) relays gvm-broker's bytes to a real
 * gvm-memserver and re-sends the donor's frames (proto/frame.h), tampering
 * with READ replies when told. Unprivileged libgvmmem clients check every page
 * against what they pushed: the broker must drop the lying connection, name
 * the donor in its log, ask again, get it right, and keep serving others.
 * Lies in well-formed replies about sealed pages (broker/seal.h: a flipped
 * bit, another page's sealed copy, an older sealed version of the page, a
 * page with data said to be zero)
 * must fail authentication: served from the other copy when there is one,
 * poisoned (SIGBUS in the VM) when there is not, never installed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "gvmmem.h"
#include "pattern.h"
#include "placement.h"
#include "procs.h"
#include "push.h"

#define EXTENT_PAGES GVM_DEFAULT_EXTENT_PAGES
#define SEED 7331u
#define ZERO_EVERY 7u                    /* every 7th page all zero: zero bits too */
#define VM_BYTES (32u << 20)             /* the VM whose pages live on the donors */
#define FRESH_VM_BYTES (16u << 20)       /* the VM that never needs a donor */
#define RANGE_PAGES 256u                 /* one 'r' command reads 1 MiB it has not read */
#define NO_RANGE UINT32_MAX              /* the answer when every range was read */
#define MARK_BYTE 0x5a                   /* what the lies carry: no pattern page is this */
#define GARBAGE_BYTES 64u
#define LINK_BUF_BYTES (64u << 10)
#define POLL_MS 50
#define SEND_TIMEOUT_MS 5000             /* a peer that stops reading fails the send */
#define PUSH_WAIT_MS 90000               /* a child attaches, fills and pushes its VM */
#define ANSWER_WAIT_MS 30000             /* a child reads what it was asked to */
#define STAT_WAIT_MS 10000
#define PERSISTENT_LIES_MIN 3u           /* rejected while a VM waits on them */

/* ---- the evil donor ---- */

enum evil_mode {
	EVIL_PASS,
	EVIL_OVERSIZED,     /* to an extent READ: 256 pages of MARK_BYTE, 8x what it asked */
	EVIL_WRONG_ID,      /* id + 1000, MARK_BYTE pages */
	EVIL_WRONG_NS,      /* ns + 1, MARK_BYTE pages */
	EVIL_WRONG_PAGES,   /* first_page + 32, MARK_BYTE pages */
	EVIL_SHORT_PAYLOAD, /* the true header, half the payload, then hang up */
	EVIL_UNSOLICITED,   /* a well-formed reply nobody asked for, then the true one */
	EVIL_GARBAGE,       /* 64 bytes of 0xff instead of the reply */
	/* Well-formed replies, lies about sealed pages (tags): */
	/* (each told of every data page of the reply it can be) */
	EVIL_FLIP_BIT,      /* one bit of the page flipped */
	EVIL_OTHER_PAGE,    /* the page and its tag: another page's, as sent before */
	EVIL_STALE,         /* the page and its tag: the copy of it sent first, older */
	EVIL_ZERO_PAGE,     /* the page said to be all zero (its bit, no bytes) */
};

/* A sealed page as the donor sent it: its bytes, then its tag. */
#define SEALED_BYTES (GVM_PAGE_SIZE + GVM_PAGE_TAG_BYTES)
#define RECORD_PAGES (VM_BYTES / GVM_PAGE_SIZE)

struct evil;

/* One broker connection and the proxy's connection to the real donor. */
struct evil_link {
	struct evil *ev;
	int bfd, dfd; /* to the broker, to the real donor */
	pthread_t thread;
	atomic_bool done;
	struct evil_link *next;
};

struct evil {
	int lfd;
	char addr[64]; /* "127.0.0.1:PORT": the donor the broker is told of */
	struct sockaddr_in backend;
	pthread_t acceptor;
	atomic_bool stop;
	atomic_bool persistent; /* every READ reply: EVIL_OVERSIZED */
	atomic_int mode;        /* for the next READ reply with data, then EVIL_PASS */
	atomic_uint tampers;    /* lies told */
	atomic_uint accepted;   /* broker connections */
	atomic_uint faults;     /* what the proxy itself failed at: must stay 0 */
	struct evil_link *links; /* the acceptor's until it is joined */
	uint8_t *marker;         /* GVM_FRAME_DATA_MAX_BYTES of MARK_BYTE */
	/* Sealed pages seen in READ replies (one VM's): the first copy of
	 * each page, and the last page sent, for the sealed lies. */
	pthread_mutex_t rec_mu;
	uint8_t *first_copy;     /* RECORD_PAGES x SEALED_BYTES */
	bool *recorded;
	uint8_t last_copy[SEALED_BYTES];
	uint64_t last_page;      /* UINT64_MAX: none yet */
	uint8_t *scratch;        /* a reply being changed: GVM_FRAME_PAYLOAD_MAX_BYTES */
};

static bool send_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* h re-encoded, then len bytes of payload (len may cut it short). */
static bool send_frame(struct evil *ev, int fd, const struct gvm_hdr *h, const uint8_t *payload,
		       size_t len)
{
	uint8_t wire[GVM_FRAME_LEN_BYTES + GVM_FRAME_HDR_MAX_BYTES];
	int n = gvm_hdr_encode(h, wire, sizeof(wire));

	if (n < 0) {
		atomic_fetch_add(&ev->faults, 1);
		return false;
	}
	return send_all(fd, wire, (size_t)n) && (!len || send_all(fd, payload, len));
}

/* The sealed pages of a READ reply (data page k: its bytes at k x 4096,
 * its tag after all of them) go into the record: a page recorded keeps
 * its first copy; the last one is the last page sent. */
static void evil_record(struct evil *ev, const struct gvm_hdr *h, const uint8_t *payload)
{
	uint32_t k = 0, n = gvm_hdr_data_pages(h);
	const uint8_t *tags = gvm_frame_tags(h, payload);

	pthread_mutex_lock(&ev->rec_mu);
	for (uint32_t i = 0; i < h->page_count; i++) {
		uint64_t p = h->first_page + i;

		if (gvm_hdr_zero_test(h, i))
			continue;
		if (p < RECORD_PAGES && !ev->recorded[p]) {
			memcpy(ev->first_copy + p * SEALED_BYTES, payload + (size_t)k * GVM_PAGE_SIZE,
			       GVM_PAGE_SIZE);
			memcpy(ev->first_copy + p * SEALED_BYTES + GVM_PAGE_SIZE,
			       tags + (size_t)k * GVM_PAGE_TAG_BYTES, GVM_PAGE_TAG_BYTES);
			ev->recorded[p] = true;
		}
		if (k == n - 1) {
			memcpy(ev->last_copy, payload + (size_t)k * GVM_PAGE_SIZE, GVM_PAGE_SIZE);
			memcpy(ev->last_copy + GVM_PAGE_SIZE, tags + (size_t)k * GVM_PAGE_TAG_BYTES,
			       GVM_PAGE_TAG_BYTES);
			ev->last_page = p;
		}
		k++;
	}
	pthread_mutex_unlock(&ev->rec_mu);
}

/* Puts the sealed copy src (page bytes, tag) in place of data page k of a
 * reply whose payload was copied to out. */
static void put_sealed(const struct gvm_hdr *h, uint8_t *out, uint32_t k, const uint8_t *src)
{
	memcpy(out + (size_t)k * GVM_PAGE_SIZE, src, GVM_PAGE_SIZE);
	memcpy(out + (size_t)gvm_hdr_data_pages(h) * GVM_PAGE_SIZE + (size_t)k * GVM_PAGE_TAG_BYTES,
	       src + GVM_PAGE_SIZE, GVM_PAGE_TAG_BYTES);
}

/* A READ reply of sealed pages while a sealed lie is armed: told about
 * every data page it can be told about (a page the broker has in memory
 * is not checked, nor installed: one lie among them must reach a page it
 * is missing). Another page's copy needs one sent before; an older one,
 * a copy on record that differs. When no page qualifies, the reply goes
 * on true and the lie stays armed. */
static bool evil_sealed_lie(struct evil_link *l, const struct gvm_hdr *h, const uint8_t *payload,
			    int armed)
{
	struct evil *ev = l->ev;
	uint32_t n = gvm_hdr_data_pages(h), k = 0;
	const uint8_t *tags = gvm_frame_tags(h, payload);
	uint8_t *out = ev->scratch;
	struct gvm_hdr t = *h; /* the header sent */
	bool lie = false;

	memcpy(out, payload, h->payload_len);
	pthread_mutex_lock(&ev->rec_mu);
	for (uint32_t i = 0; i < h->page_count && n; i++) {
		uint64_t p = h->first_page + i;
		const uint8_t *old = p < RECORD_PAGES && ev->recorded[p] ?
					     ev->first_copy + p * SEALED_BYTES : NULL;

		if (gvm_hdr_zero_test(h, i))
			continue;
		if (armed == EVIL_FLIP_BIT) {
			out[(size_t)k * GVM_PAGE_SIZE + 100] ^= 0x10;
			lie = true;
		} else if (armed == EVIL_OTHER_PAGE && ev->last_page != UINT64_MAX &&
			   ev->last_page != p) {
			put_sealed(h, out, k, ev->last_copy);
			lie = true;
		} else if (armed == EVIL_ZERO_PAGE) {
			gvm_hdr_zero_set(&t, i);
			lie = true;
		} else if (armed == EVIL_STALE && old &&
			   (memcmp(old, payload + (size_t)k * GVM_PAGE_SIZE, GVM_PAGE_SIZE) ||
			    memcmp(old + GVM_PAGE_SIZE, tags + (size_t)k * GVM_PAGE_TAG_BYTES,
				   GVM_PAGE_TAG_BYTES))) {
			put_sealed(h, out, k, old); /* sealed anew since the copy on record */
			lie = true;
		}
		k++;
	}
	pthread_mutex_unlock(&ev->rec_mu);
	if (armed == EVIL_ZERO_PAGE)
		t.payload_len = 0; /* every data page said zero: no bytes, no tags */
	if (lie && !atomic_compare_exchange_strong(&ev->mode, &armed, EVIL_PASS))
		lie = false; /* the other link told it */
	evil_record(ev, h, payload);
	if (!lie)
		return send_frame(ev, l->bfd, h, payload, h->payload_len);
	atomic_fetch_add(&ev->tampers, 1);
	return send_frame(ev, l->bfd, &t, out, t.payload_len);
}

/* Sends the donor's frame h on to the broker, or the lie the test armed.
 * False when the link is to close. */
static bool evil_forward(struct evil_link *l, const struct gvm_hdr *h, const uint8_t *payload)
{
	struct evil *ev = l->ev;
	struct gvm_hdr t = *h;
	uint8_t junk[GARBAGE_BYTES];
	int mode = EVIL_PASS, armed = atomic_load(&ev->mode);
	bool ok = true;

	if (h->op == GVM__OP__OP_READ && h->response && !h->status && h->tag_bytes &&
	    armed >= EVIL_FLIP_BIT)
		return evil_sealed_lie(l, h, payload, armed);
	if (h->op == GVM__OP__OP_READ && h->response && !h->status) {
		if (atomic_load(&ev->persistent))
			mode = EVIL_OVERSIZED;
		else if (armed != EVIL_PASS && armed < EVIL_FLIP_BIT && h->payload_len &&
			 /* too many pages for an extent's buffer: what overflowed it */
			 (armed != EVIL_OVERSIZED || h->page_count == EXTENT_PAGES) &&
			 atomic_compare_exchange_strong(&ev->mode, &armed, EVIL_PASS))
			mode = armed;
	}
	if (h->op == GVM__OP__OP_READ && h->response && !h->status && h->tag_bytes)
		evil_record(ev, h, payload);
	switch (mode) {
	case EVIL_PASS:
		return send_frame(ev, l->bfd, h, payload, h->payload_len);
	case EVIL_OVERSIZED:
		t.page_count = GVM_FRAME_PAGES_MAX;
		memset(t.zero_bitmap, 0, sizeof(t.zero_bitmap));
		t.tag_bytes = 0; /* untagged pages: well-formed, of the wrong range */
		t.payload_len = GVM_FRAME_DATA_MAX_BYTES;
		ok = send_frame(ev, l->bfd, &t, ev->marker, t.payload_len);
		break;
	case EVIL_WRONG_ID:
		t.id += 1000;
		ok = send_frame(ev, l->bfd, &t, ev->marker, t.payload_len);
		break;
	case EVIL_WRONG_NS:
		t.ns += 1;
		ok = send_frame(ev, l->bfd, &t, ev->marker, t.payload_len);
		break;
	case EVIL_WRONG_PAGES:
		t.first_page += EXTENT_PAGES;
		ok = send_frame(ev, l->bfd, &t, ev->marker, t.payload_len);
		break;
	case EVIL_SHORT_PAYLOAD:
		(void)send_frame(ev, l->bfd, h, payload, h->payload_len / 2);
		ok = false; /* and hang up */
		break;
	case EVIL_UNSOLICITED:
		t.id += 1ull << 40;
		ok = send_frame(ev, l->bfd, &t, ev->marker, t.payload_len) &&
		     send_frame(ev, l->bfd, h, payload, h->payload_len);
		break;
	case EVIL_GARBAGE:
		memset(junk, 0xff, sizeof(junk));
		ok = send_all(l->bfd, junk, sizeof(junk));
		break;
	default:
		atomic_fetch_add(&ev->faults, 1);
		ok = false;
	}
	atomic_fetch_add(&ev->tampers, 1);
	return ok;
}

/* Bytes from the real donor: complete frames go on to the broker. */
static bool evil_downstream(struct evil_link *l, struct gvm_reader *rd, const uint8_t *buf,
			    size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = gvm_reader_feed(rd, buf + off, len - off);
		bool ok;

		if (n < 0) {
			fprintf(stderr, "evil donor: the real donor sent a bad frame: %s\n",
				rd->why);
			atomic_fetch_add(&l->ev->faults, 1);
			return false;
		}
		off += (size_t)n;
		if (!gvm_reader_ready(rd))
			continue;
		ok = evil_forward(l, &rd->hdr, rd->payload);
		gvm_reader_next(rd);
		if (!ok)
			return false;
	}
	return true;
}

/* One link until either side hangs up or the proxy stops. */
static void *evil_link_run(void *arg)
{
	struct evil_link *l = arg;
	struct gvm_reader rd;
	uint8_t *buf = malloc(LINK_BUF_BYTES);
	bool open = buf != NULL;

	gvm_reader_init(&rd);
	gvm_reader_limit(&rd, GVM_FRAME_PAYLOAD_MAX_BYTES);
	while (open && !atomic_load(&l->ev->stop)) {
		struct pollfd pf[2] = { { l->bfd, POLLIN, 0 }, { l->dfd, POLLIN, 0 } };
		ssize_t n;

		if (poll(pf, 2, POLL_MS) < 0) {
			open = errno == EINTR;
			continue;
		}
		if (pf[0].revents) { /* the broker's requests: unchanged */
			n = read(l->bfd, buf, LINK_BUF_BYTES);
			open = n > 0 && send_all(l->dfd, buf, (size_t)n);
		}
		if (open && pf[1].revents) {
			n = read(l->dfd, buf, LINK_BUF_BYTES);
			open = n > 0 && evil_downstream(l, &rd, buf, (size_t)n);
		}
	}
	close(l->bfd);
	close(l->dfd);
	gvm_reader_free(&rd);
	free(buf);
	atomic_store(&l->done, true);
	return NULL;
}

/* Joins the links that ended (all of them once ev->stop is set). */
static void evil_reap(struct evil *ev, bool all)
{
	struct evil_link **pp = &ev->links;

	while (*pp) {
		struct evil_link *l = *pp;

		if (!all && !atomic_load(&l->done)) {
			pp = &l->next;
			continue;
		}
		pthread_join(l->thread, NULL);
		*pp = l->next;
		free(l);
	}
}

static void link_socket_options(int fd)
{
	struct timeval tv = { SEND_TIMEOUT_MS / 1000, 0 };
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Each broker connection gets its own connection to the real donor. */
static void *evil_accept_run(void *arg)
{
	struct evil *ev = arg;

	while (!atomic_load(&ev->stop)) {
		struct pollfd pf = { ev->lfd, POLLIN, 0 };
		struct evil_link *l;
		int bfd, dfd;

		evil_reap(ev, false);
		if (poll(&pf, 1, POLL_MS) <= 0)
			continue;
		bfd = accept4(ev->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (bfd < 0)
			continue;
		dfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		l = calloc(1, sizeof(*l));
		if (dfd < 0 || !l ||
		    connect(dfd, (struct sockaddr *)&ev->backend, sizeof(ev->backend))) {
			atomic_fetch_add(&ev->faults, 1);
			goto out_close;
		}
		link_socket_options(bfd);
		link_socket_options(dfd);
		l->ev = ev;
		l->bfd = bfd;
		l->dfd = dfd;
		if (pthread_create(&l->thread, NULL, evil_link_run, l)) {
			atomic_fetch_add(&ev->faults, 1);
			goto out_close;
		}
		l->next = ev->links;
		ev->links = l;
		atomic_fetch_add(&ev->accepted, 1);
		continue;
out_close:
		close(bfd);
		if (dfd >= 0)
			close(dfd);
		free(l);
	}
	return NULL;
}

/* Listens on a free loopback port and relays to the donor at backend_addr. */
static bool evil_start(struct evil *ev, const char *backend_addr)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	memset(ev, 0, sizeof(*ev));
	pthread_mutex_init(&ev->rec_mu, NULL);
	ev->last_page = UINT64_MAX;
	ev->first_copy = malloc((size_t)RECORD_PAGES * SEALED_BYTES);
	ev->recorded = calloc(RECORD_PAGES, sizeof(*ev->recorded));
	ev->scratch = malloc(GVM_FRAME_PAYLOAD_MAX_BYTES);
	ev->marker = malloc(GVM_FRAME_DATA_MAX_BYTES);
	ev->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!ev->marker || !ev->first_copy || !ev->recorded || !ev->scratch || ev->lfd < 0 || bind(ev->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(ev->lfd, 64) || getsockname(ev->lfd, (struct sockaddr *)&sa, &len))
		goto out_free;
	memset(ev->marker, MARK_BYTE, GVM_FRAME_DATA_MAX_BYTES);
	snprintf(ev->addr, sizeof(ev->addr), "127.0.0.1:%d", ntohs(sa.sin_port));
	ev->backend.sin_family = AF_INET;
	ev->backend.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ev->backend.sin_port = htons((uint16_t)atoi(strrchr(backend_addr, ':') + 1));
	if (pthread_create(&ev->acceptor, NULL, evil_accept_run, ev) == 0)
		return true;
out_free:
	if (ev->lfd >= 0)
		close(ev->lfd);
	free(ev->marker);
	free(ev->first_copy);
	free(ev->recorded);
	free(ev->scratch);
	return false;
}

static void evil_stop(struct evil *ev)
{
	atomic_store(&ev->stop, true);
	pthread_join(ev->acceptor, NULL);
	evil_reap(ev, true);
	close(ev->lfd);
	free(ev->marker);
	free(ev->first_copy);
	free(ev->recorded);
	free(ev->scratch);
}

/* ---- the clients (forked, unprivileged) ---- */

static char key_path[512], sock_path[512], broker_log[512];
static char good_addr[64], evil_addr[64]; /* donor 0 and 1, as the broker has them */
static uid_t test_uid;
static gid_t test_gid, gvm_gid;
static bool have_user;

struct guest {
	uint8_t *mem;
	size_t size;
	int memfd;
	struct gvm_session *s;
};

/* A forked child must not hold the proxy's sockets open: a link it closes
 * would stay up for the broker. Keeps 0-2 and the two pipe ends. */
static void child_close_others(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;

	if (lo > 3)
		close_range(3, (unsigned)lo - 1, 0);
	if (hi > lo + 1)
		close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
	close_range((unsigned)hi + 1, ~0u, 0);
}

static void child_attach(struct guest *g, const char *vm, size_t size)
{
	struct gvm_region r = { "ram", NULL, size, -1, 0, 0 };
	int err;

	if (have_user) {
		gvmt_become(test_uid, test_gid, gvm_gid);
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* cleared by the credential change */
		CHILD_CHECK(geteuid() != 0, 80, "still root");
	}
	g->size = size;
	g->memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	CHILD_CHECK(g->memfd >= 0 && !ftruncate(g->memfd, (off_t)size), 81, "memfd: %s",
		    strerror(errno));
	g->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
	CHILD_CHECK(g->mem != MAP_FAILED, 82, "mmap: %s", strerror(errno));
	r.host_addr = g->mem;
	r.memfd = g->memfd;
	g->s = gvm_attach(sock_path, vm, &r, 1, &err);
	CHILD_CHECK(g->s, 83, "attach %s: %s", vm, gvm_strerror(err));
}

/* In a child: the pattern its pages hold now, and the pages that raised
 * SIGBUS (poisoned) so far. */
static uint64_t child_seed = SEED;
static uint32_t child_bus;
static sigjmp_buf child_bus_jump;

static void child_on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(child_bus_jump, 1);
}

/* Pages of [from, to) that differ from the pattern of seed; a page that
 * raises SIGBUS counts in child_bus instead. */
static uint32_t child_bad_pages(const struct guest *g, uint64_t seed, uint64_t from, uint64_t to)
{
	struct sigaction sa = { .sa_handler = child_on_sigbus, .sa_flags = SA_NODEFER };
	uint8_t want[GVM_PAGE_SIZE];
	volatile uint32_t bad = 0;

	sigaction(SIGBUS, &sa, NULL);
	for (volatile uint64_t p = from; p < to; p++) {
		if (sigsetjmp(child_bus_jump, 1)) {
			child_bus++;
			continue;
		}
		gvm_pattern_fill_page(want, seed, p, ZERO_EVERY);
		bad += memcmp(g->mem + p * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE) != 0;
	}
	return bad;
}

/* The pages of the extents placement gives to donor (0 good, 1 evil). */
static uint32_t child_bad_pages_on(const struct guest *g, const char *ns, unsigned donor)
{
	const struct gvm_place_donor donors[2] = { { good_addr, 1 }, { evil_addr, 1 } };
	uint32_t bad = 0;

	for (uint64_t e = 0; e < g->size / GVM_PAGE_SIZE / EXTENT_PAGES; e++) {
		unsigned d;

		gvm_place(ns, e, donors, 2, &d, 1);
		if (d == donor)
			bad += child_bad_pages(g, child_seed, e * EXTENT_PAGES, (e + 1) * EXTENT_PAGES);
	}
	return bad;
}

static void child_report(int fd, uint32_t v)
{
	CHILD_CHECK(write(fd, &v, sizeof(v)) == sizeof(v), 84, "report: %s", strerror(errno));
}

/* A VM whose every page is on the donors, then read as the parent says:
 * 'r' the next 1 MiB not read yet, 'g' / 'e' the extents on the good /
 * evil donor, 'v' every page, then detach and exit. Each answer is the
 * count of pages that differ from what it pushed (a page that raised
 * SIGBUS is not one). 'w' writes every page anew (another pattern) and
 * pushes them to the donors again, from where 'r' starts over: answers 0;
 * 'b' answers the pages that raised SIGBUS so far. */
static void pushed_vm_run(const char *vm, int cmd_fd, int rep_fd)
{
	struct guest g;
	char ns[GVM_NS_NAME_MAX_BYTES + 1];
	uint64_t pages = VM_BYTES / GVM_PAGE_SIZE, next = 0;
	uint32_t bad;
	int err;
	char c;

	child_close_others(cmd_fd, rep_fd);
	child_attach(&g, vm, VM_BYTES);
	for (uint64_t p = 0; p < pages; p++)
		gvm_pattern_fill_page(g.mem + p * GVM_PAGE_SIZE, SEED, p, ZERO_EVERY);
	err = gvm_push_to_donors(g.s, g.memfd, 0, PUSH_WAIT_MS - 10000);
	CHILD_CHECK(!err, 85, "pushing %s to the donors: %s", vm, gvm_strerror(err));
	CHILD_CHECK(gvmt_vm_namespace(broker_log, vm, getpid(), ns, sizeof(ns) - 2), 86,
		    "no namespace for %s in %s", vm, broker_log);
	strcat(ns, ".0");
	child_report(rep_fd, 0);
	for (;;) {
		CHILD_CHECK(read(cmd_fd, &c, 1) == 1, 87, "the parent went away");
		switch (c) {
		case 'r':
			bad = next < pages ? child_bad_pages(&g, child_seed, next, next + RANGE_PAGES) :
					     NO_RANGE;
			next += RANGE_PAGES;
			break;
		case 'w':
			child_seed = SEED + 2;
			for (uint64_t p = 0; p < pages; p++)
				gvm_pattern_fill_page(g.mem + p * GVM_PAGE_SIZE, child_seed, p,
						      ZERO_EVERY);
			err = gvm_push_to_donors(g.s, g.memfd, 0, PUSH_WAIT_MS - 10000);
			CHILD_CHECK(!err, 85, "pushing %s again: %s", vm, gvm_strerror(err));
			next = 0;
			bad = 0;
			break;
		case 'b':
			bad = child_bus;
			break;
		case 'g':
		case 'e':
			bad = child_bad_pages_on(&g, ns, c == 'e');
			break;
		case 'v':
			bad = child_bad_pages(&g, child_seed, 0, pages);
			child_report(rep_fd, bad);
			gvm_detach(g.s);
			_exit(bad ? 88 : 0);
		default:
			_exit(89);
		}
		child_report(rep_fd, bad);
	}
}

/* A new VM: its pages are fresh, so writing and reading them back needs
 * no donor. Answers its bad pages, waits for 'v', detaches. */
static void fresh_vm_run(const char *vm, int cmd_fd, int rep_fd)
{
	struct guest g;
	uint64_t pages = FRESH_VM_BYTES / GVM_PAGE_SIZE;
	uint32_t bad;
	char c;

	child_close_others(cmd_fd, rep_fd);
	child_attach(&g, vm, FRESH_VM_BYTES);
	for (uint64_t p = 0; p < pages; p++)
		gvm_pattern_fill_page(g.mem + p * GVM_PAGE_SIZE, SEED + 1, p, ZERO_EVERY);
	bad = child_bad_pages(&g, SEED + 1, 0, pages);
	child_report(rep_fd, bad);
	CHILD_CHECK(read(cmd_fd, &c, 1) == 1 && c == 'v', 87, "the parent went away");
	gvm_detach(g.s);
	_exit(bad ? 88 : 0);
}

/* ---- the parent's side ---- */

struct vm_child {
	pid_t pid;
	int cmd, rep; /* the parent's ends */
};

struct fixture {
	struct gvmt_proc good, backend, broker;
	struct evil ev;
	bool ev_running;
	struct vm_child vm[2];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Lines of the broker's log that name donor addr ("donor ADDR: ") and say text. */
static int log_count(const char *addr, const char *text)
{
	char head[96], line[4096];
	FILE *f = fopen(broker_log, "r");
	int n = 0;

	if (!f)
		return 0;
	snprintf(head, sizeof(head), "donor %s: ", addr);
	while (fgets(line, sizeof(line), f)) {
		const char *at = strstr(line, head);

		n += at && strstr(at, text);
	}
	fclose(f);
	return n;
}

static bool log_wait(const char *addr, const char *text, int want, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; now_ms() < end; sleep_ms(20))
		if (log_count(addr, text) == want)
			return true;
	return log_count(addr, text) == want;
}

/* Polls a broker counter until it reaches at least want. */
static bool stat_wait_at_least(const char *key, uint64_t want, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; now_ms() < end; sleep_ms(20)) {
		uint64_t v = gvmt_broker_stat(sock_path, key);

		if (v != UINT64_MAX && v >= want)
			return true;
	}
	return false;
}

static void broker_must_live(struct fixture *fx)
{
	int status;

	if (fx->broker.pid <= 0 || waitpid(fx->broker.pid, &status, WNOHANG) == 0)
		return;
	fx->broker.pid = 0; /* reaped */
	fail_msg("gvm-broker died (%s %d); AddressSanitizer reports in its log: %d (%s)",
		 WIFSIGNALED(status) ? "signal" : "exit status",
		 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
		 gvmt_file_count(fx->broker.log, "ERROR: AddressSanitizer"), fx->broker.log);
}

static void vm_fork(struct vm_child *c, void (*run)(const char *, int, int), const char *vm)
{
	int cmd[2], rep[2];

	assert_int_equal(pipe2(cmd, O_CLOEXEC), 0);
	assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (c->pid == 0) {
		run(vm, cmd[0], rep[1]);
		_exit(99); /* run() exits itself */
	}
	close(cmd[0]);
	close(rep[1]);
	c->cmd = cmd[1];
	c->rep = rep[0];
}

/* The child's exit status, waiting at most timeout_ms. */
static int vm_wait_exit(struct vm_child *c, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int status;

	while (waitpid(c->pid, &status, WNOHANG) == 0) {
		if (now_ms() >= end)
			fail_msg("child %d did not exit within %d ms", (int)c->pid, timeout_ms);
		sleep_ms(10);
	}
	c->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Sends cmd (none if 0) and returns the child's answer; fails the test if
 * none comes within timeout_ms, the child ends, or the broker dies. */
static uint32_t vm_ask(struct fixture *fx, struct vm_child *c, char cmd, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	struct pollfd pf = { c->rep, POLLIN, 0 };
	uint32_t v;

	if (cmd)
		assert_int_equal(write(c->cmd, &cmd, 1), 1);
	for (;;) {
		int n = poll(&pf, 1, 100);

		if (n > 0)
			break;
		if (n < 0 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		broker_must_live(fx);
		if (now_ms() >= end)
			fail_msg("child %d did not answer '%c' within %d ms", (int)c->pid,
				 cmd ? cmd : '-', timeout_ms);
	}
	if (read(c->rep, &v, sizeof(v)) != sizeof(v))
		fail_msg("child %d ended without answering '%c': status %d", (int)c->pid,
			 cmd ? cmd : '-', vm_wait_exit(c, 1000));
	return v;
}

static int teardown(void **state);

/* The next setup's broker arguments beyond the defaults, or NULL. */
static const char *const *broker_extra;

/* Donor 0 honest, donor 1 the proxy in front of a real donor, a broker. */
static int setup(void **state)
{
	static int serial;
	struct fixture *fx = calloc(1, sizeof(*fx));
	const char *donors[3] = { good_addr, evil_addr, NULL };
	const char *failed = NULL;

	if (!fx)
		return -1;
	*state = fx;
	if (!gvmt_memserver_start(&fx->good, key_path, NULL) ||
	    !gvmt_memserver_start(&fx->backend, key_path, NULL))
		failed = "a gvm-memserver did not start";
	else if (!(fx->ev_running = evil_start(&fx->ev, fx->backend.addr)))
		failed = "the evil donor did not start";
	if (!failed) {
		snprintf(good_addr, sizeof(good_addr), "%s", fx->good.addr);
		snprintf(evil_addr, sizeof(evil_addr), "%s", fx->ev.addr);
		snprintf(sock_path, sizeof(sock_path), "%s/hostile-%d.sock", gvmt_dir(), ++serial);
		if (!gvmt_broker_start(&fx->broker, key_path, sock_path, donors, broker_extra))
			failed = "gvm-broker did not start";
		snprintf(broker_log, sizeof(broker_log), "%s", fx->broker.log);
	}
	if (!failed &&
	    !gvmt_broker_wait_stat(sock_path, "donors", 2, STAT_WAIT_MS))
		failed = "gvm-broker did not list both donors";
	if (failed) {
		print_error("setup: %s (logs in %s)\n", failed, gvmt_dir());
		teardown(state);
		return -1;
	}
	return 0;
}

/* setup, with the broker's arguments extra. */
static int setup_with(void **state, const char *const *extra)
{
	int rc;

	broker_extra = extra;
	rc = setup(state);
	broker_extra = NULL;
	return rc;
}

/* Every extent on both donors. */
static int setup_replicas2(void **state)
{
	return setup_with(state, (const char *const[]){ "--replicas", "2", NULL });
}

/* Each page its own extent: the READ a lie is told in is of one page. */
static int setup_extent1(void **state)
{
	return setup_with(state, (const char *const[]){ "--extent-pages", "1", NULL });
}

/* Also after a failure: no child, daemon or thread outlives the test. */
static int teardown(void **state)
{
	struct fixture *fx = *state;

	for (int i = 0; i < 2; i++) {
		if (fx->vm[i].pid > 0) {
			kill(fx->vm[i].pid, SIGKILL);
			waitpid(fx->vm[i].pid, NULL, 0);
		}
		if (fx->vm[i].cmd > 0)
			close(fx->vm[i].cmd);
		if (fx->vm[i].rep > 0)
			close(fx->vm[i].rep);
	}
	if (fx->broker.pid > 0)
		gvmt_proc_stop(&fx->broker, SIGKILL);
	if (fx->ev_running)
		evil_stop(&fx->ev);
	if (fx->good.pid > 0)
		gvmt_proc_stop(&fx->good, SIGKILL);
	if (fx->backend.pid > 0)
		gvmt_proc_stop(&fx->backend, SIGKILL);
	free(fx);
	return 0;
}

/* The end of a test: nothing went wrong in the proxy or the sanitizers,
 * the honest donor was never blamed, and every daemon stops cleanly. */
static void cluster_stop_clean(struct fixture *fx)
{
	assert_int_equal(atomic_load(&fx->ev.faults), 0);
	assert_int_equal(log_count(good_addr, "closing connection"), 0);
	assert_int_equal(log_count(good_addr, "bad frame: "), 0);
	assert_int_equal(gvmt_file_count(fx->broker.log, "Sanitizer"), 0);
	assert_int_equal(gvmt_file_count(fx->broker.log, "runtime error"), 0);
	assert_int_equal(gvmt_proc_stop(&fx->broker, SIGTERM), 0);
	evil_stop(&fx->ev);
	fx->ev_running = false;
	assert_int_equal(gvmt_proc_stop(&fx->good, SIGTERM), 0);
	assert_int_equal(gvmt_proc_stop(&fx->backend, SIGTERM), 0);
}

struct lie {
	enum evil_mode mode;
	const char *name;
	bool violation; /* a protocol violation: a donor error, a "closing" or "bad frame" line */
	const char *log_says;
};

static const struct lie lies[] = {
	{ EVIL_OVERSIZED, "oversized", true, ": the reply covers other pages than asked (" },
	{ EVIL_WRONG_ID, "wrong id", true, ": a reply out of order (" },
	{ EVIL_WRONG_NS, "wrong namespace", true, ": the reply names another namespace (" },
	{ EVIL_WRONG_PAGES, "wrong pages", true, ": the reply covers other pages than asked (" },
	/* Cut off mid-frame: to the broker a lost connection, not a lie. */
	{ EVIL_SHORT_PAYLOAD, "short payload", false, "(closed by the donor)" },
	{ EVIL_UNSOLICITED, "unsolicited", true, ": a reply out of order (" },
	{ EVIL_GARBAGE, "garbage", true, "bad frame: header length 4294967295" },
};
#define NLIES (sizeof(lies) / sizeof(lies[0]))

/* Arms one lie and has vm read fresh pages, 1 MiB at a time, until the
 * lie was told: every page read is right, the broker counted one donor
 * error (for a violation) and logged one line naming the evil donor. */
static void tell_lie(struct fixture *fx, struct vm_child *vm, const struct lie *lie)
{
	unsigned tampers = atomic_load(&fx->ev.tampers), mib = 0;
	uint64_t want = gvmt_broker_stat(sock_path, "donor_errors") + lie->violation;
	int lines = log_count(evil_addr, lie->log_says);
	uint32_t bad;

	/* Both connections to the evil donor are up (again). */
	assert_true(gvmt_broker_wait_stat(sock_path, "donor_connections", 4, STAT_WAIT_MS));
	atomic_store(&fx->ev.mode, lie->mode);
	do {
		bad = vm_ask(fx, vm, 'r', ANSWER_WAIT_MS);
		if (bad == NO_RANGE)
			fail_msg("%s: no READ reply to lie in, in the whole VM", lie->name);
		if (bad)
			fail_msg("%s: %u pages of a 1 MiB range read wrong", lie->name, bad);
		mib++;
	} while (atomic_load(&fx->ev.tampers) == tampers);
	assert_int_equal(atomic_load(&fx->ev.tampers), tampers + 1);
	if (!gvmt_broker_wait_stat(sock_path, "donor_errors", want, STAT_WAIT_MS))
		fail_msg("%s: donor_errors %llu, want %llu", lie->name,
			 (unsigned long long)gvmt_broker_stat(sock_path, "donor_errors"),
			 (unsigned long long)want);
	if (!log_wait(evil_addr, lie->log_says, lines + 1, STAT_WAIT_MS))
		fail_msg("%s: %d log lines 'donor %s: ...%s', want %d", lie->name,
			 log_count(evil_addr, lie->log_says), evil_addr, lie->log_says, lines + 1);
	broker_must_live(fx);
	assert_int_equal(gvmt_broker_stat(sock_path, "vms"), 1);
	print_message("%-16s told within %u MiB read, all of it right\n", lie->name, mib);
}

static void test_bad_donor_replies_close_its_connection_and_are_answered_again_correctly(
	void **state)
{
	struct fixture *fx = *state;
	struct vm_child *vm = &fx->vm[0];
	unsigned violations = 0;

	vm_fork(vm, pushed_vm_run, "vm-lied-to");
	assert_int_equal(vm_ask(fx, vm, 0, PUSH_WAIT_MS), 0); /* its pages are on the donors */
	assert_int_equal(gvmt_broker_stat(sock_path, "vms"), 1);
	assert_int_equal(gvmt_broker_stat(sock_path, "donor_errors"), 0);
	assert_int_equal(atomic_load(&fx->ev.tampers), 0);
	for (size_t i = 0; i < NLIES; i++) {
		tell_lie(fx, vm, &lies[i]);
		violations += lies[i].violation;
	}
	/* Every page, the lied-about ones included, is what the VM pushed. */
	assert_int_equal(vm_ask(fx, vm, 'v', ANSWER_WAIT_MS), 0);
	assert_int_equal(vm_wait_exit(vm, ANSWER_WAIT_MS), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "donor_errors"), violations);
	assert_int_equal(log_count(evil_addr, "closing connection") +
				 log_count(evil_addr, "bad frame: "),
			 violations);
	/* Each lie cost the broker one connection, and it made a new one. */
	assert_true(gvmt_broker_wait_stat(sock_path, "donor_connections", 4, STAT_WAIT_MS));
	assert_int_equal(atomic_load(&fx->ev.accepted), 2 + NLIES);
	cluster_stop_clean(fx);
}

static void test_a_persistently_bad_donor_stalls_only_its_extents_and_others_are_served(
	void **state)
{
	struct fixture *fx = *state;
	struct vm_child *stalled = &fx->vm[0], *fresh = &fx->vm[1];
	struct pollfd pf;
	uint64_t zero_fills, errors;
	int status;

	vm_fork(stalled, pushed_vm_run, "vm-stalled");
	assert_int_equal(vm_ask(fx, stalled, 0, PUSH_WAIT_MS), 0);
	atomic_store(&fx->ev.persistent, true);
	/* The honest donor's extents all arrive, right, while every READ
	 * reply of the other one is a lie. */
	assert_int_equal(vm_ask(fx, stalled, 'g', ANSWER_WAIT_MS), 0);
	/* The evil donor's extents wait: the broker keeps asking, it keeps lying. */
	assert_int_equal(write(stalled->cmd, "e", 1), 1);
	assert_true(stat_wait_at_least("donor_errors",
				       gvmt_broker_stat(sock_path, "donor_errors") +
					       PERSISTENT_LIES_MIN,
				       STAT_WAIT_MS));
	/* Meanwhile a new VM writes and reads back 16 MiB: zero fills only. */
	zero_fills = gvmt_broker_stat(sock_path, "zero_fills");
	vm_fork(fresh, fresh_vm_run, "vm-fresh");
	assert_int_equal(vm_ask(fx, fresh, 0, ANSWER_WAIT_MS), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "vms"), 2);
	assert_int_equal(gvmt_broker_stat(sock_path, "zero_fills") - zero_fills,
			 FRESH_VM_BYTES / GVM_PAGE_SIZE / EXTENT_PAGES);
	assert_int_equal(write(fresh->cmd, "v", 1), 1);
	assert_int_equal(vm_wait_exit(fresh, ANSWER_WAIT_MS), 0);
	assert_true(gvmt_broker_wait_stat(sock_path, "vms", 1, STAT_WAIT_MS));
	/* The stalled VM is still waiting, on the evil donor's extents only. */
	pf = (struct pollfd){ stalled->rep, POLLIN, 0 };
	assert_int_equal(poll(&pf, 1, 0), 0);
	assert_int_equal(waitpid(stalled->pid, &status, WNOHANG), 0);
	broker_must_live(fx);
	errors = gvmt_broker_stat(sock_path, "donor_errors");
	assert_true(errors >= PERSISTENT_LIES_MIN);
	assert_true(errors <= atomic_load(&fx->ev.tampers));
	assert_true(log_count(evil_addr, "the reply covers other pages than asked") >=
		    (int)PERSISTENT_LIES_MIN);
	/* The donor turns honest: the stalled reads finish, every page right. */
	atomic_store(&fx->ev.persistent, false);
	assert_int_equal(vm_ask(fx, stalled, 0, ANSWER_WAIT_MS), 0);
	assert_int_equal(vm_ask(fx, stalled, 'v', ANSWER_WAIT_MS), 0);
	assert_int_equal(vm_wait_exit(stalled, ANSWER_WAIT_MS), 0);
	/* Each donor error was one lie, logged once with the donor's name. */
	errors = gvmt_broker_stat(sock_path, "donor_errors");
	assert_int_equal(log_count(evil_addr, "closing connection"), errors);
	print_message("%u lies told, %llu seen by the broker, %u connections accepted\n",
		      atomic_load(&fx->ev.tampers), (unsigned long long)errors,
		      atomic_load(&fx->ev.accepted));
	cluster_stop_clean(fx);
}

/* Lies in well-formed replies about sealed pages: no protocol is broken,
 * only authentication fails. */
static const struct lie sealed_lies[] = {
	{ EVIL_FLIP_BIT, "flipped bit", false, "fails authentication" },
	{ EVIL_OTHER_PAGE, "another page", false, "fails authentication" },
	{ EVIL_STALE, "older version", false, "fails authentication" },
	{ EVIL_ZERO_PAGE, "said zero", false, "fails authentication" },
};

/* With two copies of every extent, each sealed lie is caught (a page said
 * to be zero too: the broker knows it has data): the page
 * comes from the honest copy, the lying copy is dropped (and made again),
 * the donor and page are logged, and integrity_failures counts it. */
static void test_sealed_pages_a_donor_alters_are_caught_and_read_from_the_other_copy(
	void **state)
{
	struct fixture *fx = *state;
	struct vm_child *vm = &fx->vm[0];

	vm_fork(vm, pushed_vm_run, "vm-sealed-lies");
	assert_int_equal(vm_ask(fx, vm, 0, PUSH_WAIT_MS), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "sealed_vms"), 1);
	assert_int_equal(gvmt_broker_stat(sock_path, "integrity_failures"), 0);
	tell_lie(fx, vm, &sealed_lies[0]);
	assert_int_equal(gvmt_broker_stat(sock_path, "integrity_failures"), 1);
	tell_lie(fx, vm, &sealed_lies[1]);
	assert_int_equal(gvmt_broker_stat(sock_path, "integrity_failures"), 2);
	/* A second version of every page: the first, on record, is older. */
	assert_int_equal(vm_ask(fx, vm, 'w', PUSH_WAIT_MS), 0);
	tell_lie(fx, vm, &sealed_lies[2]);
	assert_int_equal(gvmt_broker_stat(sock_path, "integrity_failures"), 3);
	tell_lie(fx, vm, &sealed_lies[3]);
	assert_int_equal(gvmt_broker_stat(sock_path, "integrity_failures"), 4);
	assert_int_equal(vm_ask(fx, vm, 'b', ANSWER_WAIT_MS), 0); /* nothing poisoned */
	assert_int_equal(vm_ask(fx, vm, 'v', ANSWER_WAIT_MS), 0);
	assert_int_equal(vm_wait_exit(vm, ANSWER_WAIT_MS), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "integrity_failures"), 4);
	assert_int_equal(gvmt_broker_stat(sock_path, "poisoned_pages"), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "donor_errors"), 0);
	assert_int_equal(log_count(evil_addr, "fails authentication"), 4);
	assert_int_equal(log_count(good_addr, "fails authentication"), 0);
	cluster_stop_clean(fx);
}

/* With one copy, a page whose copy fails authentication is lost: the VM
 * gets SIGBUS there (UFFDIO_POISON), never the donor's bytes, and every
 * other page reads right. */
static void test_a_sealed_page_with_no_good_copy_left_is_poisoned_never_installed(void **state)
{
	struct fixture *fx = *state;
	struct vm_child *vm = &fx->vm[0];
	unsigned tampers = atomic_load(&fx->ev.tampers);
	uint32_t bad;

	vm_fork(vm, pushed_vm_run, "vm-sealed-poison");
	assert_int_equal(vm_ask(fx, vm, 0, PUSH_WAIT_MS), 0);
	assert_true(gvmt_broker_wait_stat(sock_path, "donor_connections", 4, STAT_WAIT_MS));
	atomic_store(&fx->ev.mode, EVIL_FLIP_BIT);
	do {
		bad = vm_ask(fx, vm, 'r', ANSWER_WAIT_MS);
		if (bad == NO_RANGE)
			fail_msg("no READ reply to lie in, in the whole VM");
		assert_int_equal(bad, 0); /* poisoned, or right: never wrong */
	} while (atomic_load(&fx->ev.tampers) == tampers);
	assert_true(gvmt_broker_wait_stat(sock_path, "integrity_failures", 1, STAT_WAIT_MS));
	/* The page of the lie: it raises SIGBUS when touched (an extent of one
	 * page: the lie was its only copy's). */
	while ((bad = vm_ask(fx, vm, 'r', ANSWER_WAIT_MS)) != NO_RANGE)
		assert_int_equal(bad, 0);
	assert_int_equal(vm_ask(fx, vm, 'b', ANSWER_WAIT_MS), 1);
	assert_int_equal(gvmt_broker_stat(sock_path, "poisoned_pages"), 1);
	assert_int_equal(log_count(evil_addr, "it was the last"), 1);
	assert_int_equal(vm_ask(fx, vm, 'v', ANSWER_WAIT_MS), 0); /* all the rest right */
	assert_int_equal(vm_wait_exit(vm, ANSWER_WAIT_MS), 0);
	assert_int_equal(gvmt_broker_stat(sock_path, "integrity_failures"), 1);
	assert_int_equal(gvmt_broker_stat(sock_path, "donor_errors"), 0);
	cluster_stop_clean(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_bad_donor_replies_close_its_connection_and_are_answered_again_correctly,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_a_persistently_bad_donor_stalls_only_its_extents_and_others_are_served,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_sealed_pages_a_donor_alters_are_caught_and_read_from_the_other_copy,
			setup_replicas2, teardown),
		cmocka_unit_test_setup_teardown(
			test_a_sealed_page_with_no_good_copy_left_is_poisoned_never_installed,
			setup_extent1, teardown),
	};

	gvmt_main_init(key_path, sizeof(key_path), NULL);
	have_user = gvmt_test_user(&test_uid, &test_gid, &gvm_gid);
	if (!have_user)
		fprintf(stderr, "test_hostile_donor: not root: clients run as this user\n");
	return cmocka_run_group_tests_name("hostile_donor", tests, NULL, NULL);
}
