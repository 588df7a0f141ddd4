/* seed_bench.c: gvm-seed-bench, the seed design's fault path reproduced in
 * C to measure it beside gvmmem (bench/run.sh): the seeds' dsm_backend.c
 * worker loop, 8 threads reading one userfaultfd, each with its own TCP
 * connection to the memory server, a fixed 32-page prefetch from the
 * faulting page and one UFFDIO_COPY per page, against the seeds'
 * memory_server.py. Two fixes, or nothing could be measured:
 *   - receive: the server answers each of the 32 pages with a 1-byte tag,
 *     0xAA alone for a zero page, 0xBB then 4096 bytes for data (the seed
 *     client read 32 raw pages, which desynchronises at the first zero);
 *   - request: the page's offset in the region, not its virtual address
 *     (the server uses the number as a file offset, so a virtual address
 *     reads past any file and only ever gets zero pages).
 * The uffd is blocking (the seed's O_NONBLOCK read loop spins 8 threads
 * on 2 cores; blocking favours the seed). Reports sequential first-touch
 * MB/s and random 4 KiB first-touch p50/p99, like gvm-fault-bench. */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SEED_PAGE 4096u
#define SEED_PREFETCH 32u /* the seeds' PREFETCH */
#define SEED_WORKERS 8u	  /* the seeds' worker threads */

static int uffd;
static uint8_t *region;
static size_t region_size;
static struct sockaddr_in server;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int recv_all(int s, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = recv(s, (char *)buf + got, len - got, 0);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

/* The seeds' dsm_worker, with the two fixes above. */
static void *worker(void *arg)
{
	static const uint8_t zero[SEED_PAGE];
	uint8_t *buf = malloc(SEED_PAGE * SEED_PREFETCH);
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1, big = 2 << 20;

	(void)arg;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (!buf || connect(s, (struct sockaddr *)&server, sizeof(server)) < 0) {
		perror("gvm-seed-bench: connect");
		exit(1);
	}
	for (;;) {
		struct uffd_msg msg;
		uint64_t base, req;

		if (read(uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		base = msg.arg.pagefault.address & ~(uint64_t)(SEED_PAGE - 1);
		req = htobe64(base - (uint64_t)(uintptr_t)region);
		if (send(s, &req, sizeof(req), 0) != sizeof(req))
			continue;
		for (unsigned k = 0; k < SEED_PREFETCH; k++) {
			uint8_t tag;

			if (recv_all(s, &tag, 1))
				exit(1);
			if (tag == 0xBB) {
				if (recv_all(s, buf + k * SEED_PAGE, SEED_PAGE))
					exit(1);
			} else {
				memcpy(buf + k * SEED_PAGE, zero, SEED_PAGE);
			}
		}
		for (unsigned k = 0; k < SEED_PREFETCH; k++) {
			struct uffdio_copy c = {
				.dst = base + k * SEED_PAGE,
				.src = (uint64_t)(uintptr_t)(buf + k * SEED_PAGE),
				.len = SEED_PAGE,
			};

			if (c.dst + SEED_PAGE > (uint64_t)(uintptr_t)region + region_size)
				break; /* the seed copies past the block's end; not here */
			ioctl(uffd, UFFDIO_COPY, &c);
		}
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* A fresh registered region each pass. */
static void region_new(void)
{
	struct uffdio_register r;

	if (region)
		munmap(region, region_size);
	region = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		      0);
	r = (struct uffdio_register){ .range = { (uint64_t)(uintptr_t)region, region_size },
				      .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (region == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &r) < 0) {
		perror("gvm-seed-bench: region");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "server", 1, NULL, 's' }, { "size", 1, NULL, 'z' },
					      { "samples", 1, NULL, 'n' }, { "help", 0, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	unsigned samples = 1000, port;
	struct uffdio_api api = { .api = UFFD_API };
	char host[64] = "127.0.0.1";
	size_t pages;
	double t0, *lat, sum = 0;
	uint64_t rng = 88172645463325252ull;
	int opt;

	region_size = 256u << 20;
	port = 9999;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (sscanf(optarg, "%63[^:]:%u", host, &port) != 2) {
				fprintf(stderr, "gvm-seed-bench: --server HOST:PORT\n");
				return 2;
			}
			break;
		case 'z': region_size = (size_t)strtoull(optarg, NULL, 10) << 20; break;
		case 'n': samples = (unsigned)strtoul(optarg, NULL, 10); break;
		default:
			printf("Usage: gvm-seed-bench --server HOST:PORT [--size MIB] [--samples N]\n"
			       "The seeds' fault loop (8 threads, 32-page prefetch) against the seeds'\n"
			       "memory_server.py serving a file at least --size MiB long.\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	server.sin_family = AF_INET;
	server.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, host, &server.sin_addr);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0) {
		perror("gvm-seed-bench: userfaultfd (run as root)");
		return 1;
	}
	region_new();
	for (unsigned i = 0; i < SEED_WORKERS; i++) {
		pthread_t t;

		pthread_create(&t, NULL, worker, NULL);
	}
	pages = region_size / SEED_PAGE;
	t0 = now_us();
	for (size_t i = 0; i < pages; i++)
		sum += region[i * SEED_PAGE + 7];
	t0 = now_us() - t0;
	printf("seed sequential first touch: %.1f MB/s (%zu MiB)\n",
	       (double)region_size / t0, region_size >> 20);
	region_new();
	lat = calloc(samples, sizeof(*lat));
	for (unsigned i = 0; i < samples; i++) {
		size_t page;
		double t;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		page = (size_t)(rng % pages);
		t = now_us();
		sum += region[page * SEED_PAGE + 11];
		lat[i] = now_us() - t;
	}
	qsort(lat, samples, sizeof(*lat), cmp_double);
	printf("seed random first touch: p50 %.1f us, p99 %.1f us (%u samples)\n",
	       lat[samples / 2], lat[samples * 99 / 100], samples);
	printf("key seed_seq_mbps %.1f\nkey seed_rand_p50_us %.1f\nkey seed_rand_p99_us %.1f\n",
	       (double)region_size / t0, lat[samples / 2], lat[samples * 99 / 100]);
	if (sum == -1)
		printf("\n");
	return 0;
}
