/* procs.c: starting, stopping and inspecting real gvmmem daemons for the
 * integration tests (procs.h). Ports come from the kernel (bind to port 0,
 * close, hand the number over) and a start that loses the race retries. */
#include "procs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

#define START_TRIES 5
#define START_WAIT_MS 10000

static char test_dir[256];

const char *gvmt_dir(void)
{
	if (!test_dir[0]) {
		const char *tmp = getenv("TMPDIR");

		snprintf(test_dir, sizeof(test_dir), "%s/gvmt-XXXXXX", tmp ? tmp : "/tmp");
		if (!mkdtemp(test_dir)) {
			perror("mkdtemp");
			abort();
		}
	}
	return test_dir;
}

void gvmt_path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", gvmt_dir(), name);
}

const char *gvmt_bin(const char *name, char *buf, size_t n)
{
	const char *dir = getenv("GVM_BIN_DIR");

	snprintf(buf, n, "%s/%s", dir ? dir : "build/bin", name);
	return buf;
}

void gvmt_make_key(const char *path, size_t len, struct gvm_key *key)
{
	uint8_t bytes[256];
	char why[256];
	int fd;

	for (size_t i = 0; i < len && i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)rand();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, bytes, len) != (ssize_t)len) {
		perror(path);
		abort();
	}
	close(fd);
	if (key && gvm_key_load(path, key, why, sizeof(why))) {
		fprintf(stderr, "%s\n", why);
		abort();
	}
}

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(fd, (struct sockaddr *)&sa, &len);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static bool can_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

	close(fd);
	return ok;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static pid_t spawn(const char *log, const char *const *argv)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		/* A test that fails half-way leaves no daemon behind. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

bool gvmt_memserver_start(struct gvmt_proc *p, const char *key_path,
			  const char *const *extra)
{
	static int serial;
	char bin[512];

	memset(p, 0, sizeof(*p));
	gvmt_bin("gvm-memserver", bin, sizeof(bin));
	snprintf(p->log, sizeof(p->log), "%s/memserver-%d.log", gvmt_dir(), ++serial);
	for (int attempt = 0; attempt < START_TRIES; attempt++) {
		const char *argv[32] = { bin, "--listen", p->addr, "--key-file", key_path };
		int argc = 5, port = free_port(), status;

		snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", port);
		for (int i = 0; extra && extra[i] && argc < 31; i++)
			argv[argc++] = extra[i];
		p->pid = spawn(p->log, argv);
		for (int waited = 0; waited < START_WAIT_MS; waited += 10) {
			if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
				p->pid = 0;
				break;
			}
			if (can_connect(port))
				return true;
			sleep_ms(10);
		}
		if (p->pid) { /* alive but never accepted */
			gvmt_proc_stop(p, SIGKILL);
			return false;
		}
		if (!gvmt_file_count(p->log, "Address already in use"))
			return false;
	}
	return false;
}

int gvmt_run(const char *log, const char *const *argv)
{
	pid_t pid = spawn(log, argv);
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int gvmt_proc_stop(struct gvmt_proc *p, int sig)
{
	int status;

	if (p->pid <= 0)
		return -1;
	kill(p->pid, sig);
	if (waitpid(p->pid, &status, 0) != p->pid)
		return -1;
	p->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool gvmt_proc_alive(const struct gvmt_proc *p)
{
	int status;

	return p->pid > 0 && waitpid(p->pid, &status, WNOHANG) == 0;
}

int gvmt_file_count(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int count = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		for (char *s = line; (s = strstr(s, needle)); s += strlen(needle))
			count++;
	fclose(f);
	return count;
}

uint64_t gvmt_proc_rss_kib(const struct gvmt_proc *p)
{
	char path[64], line[256];
	unsigned long long kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* FNV-1a over 64-bit words: enough to tell page contents apart. */
uint64_t gvmt_checksum(const uint8_t *data, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, data + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
	}
	return h;
}
