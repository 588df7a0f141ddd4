/* procs.c: starting, stopping and inspecting real gvmmem daemons for the
 * integration tests (procs.h). Ports come from the kernel (bind to port 0,
 * close, hand the number over) and a start that loses the race retries. */
#include "procs.h"


#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "ctlmsg.h"
#include "dclient.h"
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

static bool unix_connects(const char *path);

/* Spawns argv (output to p->log) and waits until ready(p) or it exits:
 * true once ready; an instance that never gets ready is killed. */
static bool start_and_wait(struct gvmt_proc *p, const char *const *argv,
			   bool (*ready)(const struct gvmt_proc *))
{
	int status;

	p->pid = spawn(p->log, argv);
	for (int waited = 0; waited < START_WAIT_MS; waited += 10) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			p->pid = 0;
			return false;
		}
		if (ready(p))
			return true;
		sleep_ms(10);
	}
	gvmt_proc_stop(p, SIGKILL);
	return false;
}

/* p->addr accepts a connection (a wildcard address is reached on
 * loopback). */
static bool addr_ready(const struct gvmt_proc *p)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;
	bool ok;

	if (gvm_parse_hostport(p->addr, GVM_DONOR_DEFAULT_PORT, &ss, &len))
		return false;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok = connect(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return ok;
}

/* A broker is ready once its loop answers: the socket takes connections
 * before it runs, and a SIGTERM then would find no handler yet. */
static bool unix_ready(const struct gvmt_proc *p)
{
	return unix_connects(p->addr) && gvmt_broker_stat(p->addr, "vms") != UINT64_MAX;
}

/* One try at gvm-memserver on p->addr, inside network namespace p->netns
 * if it names one: true once it accepts there. */
static bool memserver_try(struct gvmt_proc *p, const char *key_path, const char *const *extra)
{
	const char *argv[40];
	char bin[512];
	int argc = 0;

	if (p->netns[0]) {
		argv[argc++] = "/usr/sbin/ip";
		argv[argc++] = "netns";
		argv[argc++] = "exec";
		argv[argc++] = p->netns;
	}
	argv[argc++] = gvmt_bin("gvm-memserver", bin, sizeof(bin));
	argv[argc++] = "--listen";
	argv[argc++] = p->addr;
	argv[argc++] = "--key-file";
	argv[argc++] = key_path;
	for (int i = 0; extra && extra[i] && argc < 39; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;
	return start_and_wait(p, argv, addr_ready);
}

bool gvmt_memserver_start(struct gvmt_proc *p, const char *key_path,
			  const char *const *extra)
{
	return gvmt_memserver_start_at(p, "127.0.0.1", 0, key_path, extra);
}

bool gvmt_memserver_start_at(struct gvmt_proc *p, const char *ip, int port,
			     const char *key_path, const char *const *extra)
{
	static int serial;

	memset(p, 0, sizeof(*p));
	snprintf(p->log, sizeof(p->log), "%s/memserver-%d.log", gvmt_dir(), ++serial);
	for (int attempt = 0; attempt < START_TRIES; attempt++) {
		snprintf(p->addr, sizeof(p->addr), "%s:%d", ip, port ? port : free_port());
		if (memserver_try(p, key_path, extra))
			return true;
		if (port || !gvmt_file_count(p->log, "Address already in use"))
			return false;
	}
	return false;
}

bool gvmt_memserver_restart(struct gvmt_proc *p, const char *key_path,
			    const char *const *extra)
{
	return memserver_try(p, key_path, extra);
}

bool gvmt_memserver_start_netns(struct gvmt_proc *p, const char *netns, const char *ip,
				const char *key_path, const char *const *extra)
{
	static int serial;

	memset(p, 0, sizeof(*p));
	snprintf(p->log, sizeof(p->log), "%s/memserver-ns-%d.log", gvmt_dir(), ++serial);
	snprintf(p->netns, sizeof(p->netns), "%s", netns);
	snprintf(p->addr, sizeof(p->addr), "%s:%d", ip, 7000 + serial);
	return memserver_try(p, key_path, extra);
}

static bool unix_connects(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

void gvmt_main_init(char *key_path, size_t n, struct gvm_key *key)
{
	signal(SIGPIPE, SIG_IGN);
	gvmt_path(key_path, n, "cluster.key");
	gvmt_make_key(key_path, 32, key);
	chmod(gvmt_dir(), 0755);
	if (getenv("GVM_TEST_FILTER"))
		cmocka_set_test_filter(getenv("GVM_TEST_FILTER"));
}

void gvmt_broker_state_dir(const char *socket_path, char *out, size_t n)
{
	const char *base = strrchr(socket_path, '/');

	snprintf(out, n, "%s/state-%s", gvmt_dir(), base ? base + 1 : socket_path);
}

bool gvmt_broker_start(struct gvmt_proc *p, const char *key_path, const char *socket_path,
		       const char *const *donors, const char *const *extra)
{
	static int serial;
	const char *argv[48];
	char bin[512], state[600];
	bool own_state = false;
	int argc = 0;

	memset(p, 0, sizeof(*p));
	snprintf(p->addr, sizeof(p->addr), "%s", socket_path);
	snprintf(p->log, sizeof(p->log), "%s/broker-%d.log", gvmt_dir(), ++serial);
	/* Its identity: one state directory per socket, so a restarted broker
	 * is the same host and two brokers are two hosts. */
	gvmt_broker_state_dir(socket_path, state, sizeof(state));
	for (int i = 0; extra && extra[i]; i++)
		own_state |= !strcmp(extra[i], "--state-dir");
	argv[argc++] = gvmt_bin("gvm-broker", bin, sizeof(bin));
	argv[argc++] = "--no-cuse";
	argv[argc++] = "--socket";
	argv[argc++] = socket_path;
	argv[argc++] = "--key-file";
	argv[argc++] = key_path;
	if (!own_state) {
		argv[argc++] = "--state-dir";
		argv[argc++] = state;
	}
	if (getenv("GVMT_BROKER_LOG_LEVEL")) { /* debugging a test */
		argv[argc++] = "--log-level";
		argv[argc++] = getenv("GVMT_BROKER_LOG_LEVEL");
	}
	for (int i = 0; donors[i] && argc < 40; i++) {
		argv[argc++] = "--donor";
		argv[argc++] = donors[i];
	}
	for (int i = 0; extra && extra[i] && argc < 47; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;
	return start_and_wait(p, argv, unix_ready);
}

uint64_t gvmt_broker_stat(const char *socket_path, const char *key)
{
	Gvm__Control *m;
	uint64_t v = UINT64_MAX;

	if (gvm_ctl_stats(socket_path, &m))
		return v;
	for (size_t i = 0; i < m->stats->n_entries; i++)
		if (!strcmp(m->stats->entries[i]->key, key))
			v = m->stats->entries[i]->value;
	gvm__control__free_unpacked(m, NULL);
	return v;
}

bool gvmt_broker_wait_stat(const char *socket_path, const char *key, uint64_t want,
			   int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		if (gvmt_broker_stat(socket_path, key) == want)
			return true;
		sleep_ms(20);
	}
	return false;
}

bool gvmt_test_user(uid_t *uid, gid_t *gid, gid_t *gvm_gid)
{
	return gvmt_test_user_named("gvmtest", uid, gid, gvm_gid);
}

bool gvmt_test_user_named(const char *name, uid_t *uid, gid_t *gid, gid_t *gvm_gid)
{
	struct passwd *pw;
	struct group *gr;
	char cmd[512];

	if (geteuid() != 0)
		return false;
	if (!getgrnam("gvm") && system("groupadd --system gvm") != 0)
		return false;
	snprintf(cmd, sizeof(cmd), "useradd --system --no-create-home --shell /usr/sbin/nologin "
		 "--gid nogroup --groups gvm %s", name);
	if (!getpwnam(name) && system(cmd) != 0)
		return false;
	snprintf(cmd, sizeof(cmd), "id -nG %s | grep -qw gvm || usermod -aG gvm %s", name, name);
	if (system(cmd) != 0)
		return false;
	pw = getpwnam(name);
	gr = getgrnam("gvm");
	if (!pw || !gr)
		return false;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	*gvm_gid = gr->gr_gid;
	return true;
}

void gvmt_become(uid_t uid, gid_t gid, gid_t gvm_gid)
{
	if (setgroups(1, &gvm_gid) || setgid(gid) || setuid(uid)) {
		perror("gvmt_become");
		_exit(90);
	}
	prctl(PR_SET_DUMPABLE, 1);
}

int gvmt_send_hello(int s, uint32_t version, const char *vm_name, const uint8_t *inc,
		    const uint8_t *secret)
{
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__Hello h = GVM__HELLO__INIT;

	h.version = version;
	h.vm_name = (char *)vm_name;
	if (inc) {
		h.reattach = true;
		h.incarnation = (ProtobufCBinaryData){ GVM_INCARNATION_BYTES, (uint8_t *)inc };
		h.secret = (ProtobufCBinaryData){ GVM_INCARNATION_SECRET_BYTES, (uint8_t *)secret };
	}
	m.msg_case = GVM__CONTROL__MSG_HELLO;
	m.hello = &h;
	return gvm_ctl_send(s, &m, NULL, 0);
}

bool gvmt_vm_namespace(const char *broker_log, const char *vm, pid_t pid, char *out, size_t n)
{
	char line[4096], head[256];
	FILE *f = fopen(broker_log, "r");
	bool found = false;

	if (!f)
		return false;
	if (pid > 0)
		snprintf(head, sizeof(head), "vm %s (pid %d uid ", vm, (int)pid);
	else
		snprintf(head, sizeof(head), "vm %s (pid ", vm);
	while (fgets(line, sizeof(line), f)) {
		const char *at = strstr(line, head), *ns, *end;

		if (!at || !strstr(at, "attached") || !(ns = strstr(at, "namespaces ")))
			continue;
		ns += strlen("namespaces ");
		end = strstr(ns, ".*");
		if (!end || (size_t)(end - ns) >= n)
			continue;
		memcpy(out, ns, (size_t)(end - ns));
		out[end - ns] = '\0';
		found = true;
	}
	fclose(f);
	return found;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double gvmt_percentile(double *v, size_t n, double pct)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(size_t)((double)(n - 1) * pct / 100.0)];
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

/* The sum over the file's lines of count(line, needle); 0 if it cannot be
 * read. */
static int file_sum(const char *path, const char *needle,
		    int (*count)(const char *line, const char *needle))
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int sum = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		sum += count(line, needle);
	fclose(f);
	return sum;
}

static int occurrences(const char *line, const char *needle)
{
	int n = 0;

	for (const char *s = line; (s = strstr(s, needle)); s += strlen(needle))
		n++;
	return n;
}

static int starts_with(const char *line, const char *prefix)
{
	return strncmp(line, prefix, strlen(prefix)) == 0;
}

int gvmt_file_count(const char *path, const char *needle)
{
	return file_sum(path, needle, occurrences);
}

int gvmt_file_count_lines(const char *path, const char *prefix)
{
	return file_sum(path, prefix, starts_with);
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

void gvmt_fake_giantvm(const char *root, char *module_dir, size_t n)
{
	const char *const parts[] = { "", "/sys", "/sys/module", "/sys/module/giantvm_kvm" };

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		snprintf(module_dir, n, "%s%s", root, parts[i]);
		mkdir(module_dir, 0755);
	}
}

Gvm__MemserverStats *gvmt_donor_stats(const char *addr, const struct gvm_key *key)
{
	Gvm__MemserverStats *m = NULL;
	struct gvm_dconn *c;
	char why[512];

	if (gvm_dconn_open(&c, addr, key, NULL, why, sizeof(why)))
		return NULL;
	if (gvm_dconn_stats(c, NULL, &m))
		m = NULL;
	gvm_dconn_close(c);
	return m;
}

/* ---- etcd ---- */

static size_t etcd_health_body(char *data, size_t size, size_t nmemb, void *arg)
{
	char *body = arg;
	size_t have = strlen(body), n = size * nmemb;

	if (have + n < 256) {
		memcpy(body + have, data, n);
		body[have + n] = '\0';
	}
	return n;
}

/* etcd answers GET /health with {"health":"true"} once it serves. */
static bool etcd_ready(const struct gvmt_proc *p)
{
	char url[128], body[256] = "";
	CURL *c = curl_easy_init();
	long status = 0;
	bool ok;

	if (!c)
		return false;
	snprintf(url, sizeof(url), "http://%s/health", p->addr);
	ok = !curl_easy_setopt(c, CURLOPT_URL, url) &&
	     !curl_easy_setopt(c, CURLOPT_PROXY, "") &&
	     !curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) &&
	     !curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L) &&
	     !curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, etcd_health_body) &&
	     !curl_easy_setopt(c, CURLOPT_WRITEDATA, (void *)body) && !curl_easy_perform(c) &&
	     !curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) && status == 200 &&
	     strstr(body, "\"health\":\"true\"");
	curl_easy_cleanup(c);
	return ok;
}

static void etcd_remove_data(struct gvmt_etcd *e)
{
	const char *argv[] = { "/bin/rm", "-rf", e->data_dir, NULL };

	if (e->data_dir[0])
		gvmt_run(e->proc.log, argv);
}

/* One try at etcd on e's ports: true once it is healthy. */
static bool etcd_try(struct gvmt_etcd *e)
{
	const char *bin = getenv("GVM_ETCD_BIN") ? getenv("GVM_ETCD_BIN") : "/usr/bin/etcd";
	char peer[80], cluster[96];
	const char *argv[] = { bin, "--name", "gvmt", "--data-dir", e->data_dir,
			       "--listen-client-urls", e->endpoint,
			       "--advertise-client-urls", e->endpoint,
			       "--listen-peer-urls", peer,
			       "--initial-advertise-peer-urls", peer,
			       "--initial-cluster", cluster,
			       "--logger", "zap", "--log-level", "warn", NULL };

	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", e->peer_port);
	snprintf(cluster, sizeof(cluster), "gvmt=%s", peer);
	return start_and_wait(&e->proc, argv, etcd_ready);
}

bool gvmt_etcd_start(struct gvmt_etcd *e)
{
	static int serial;

	memset(e, 0, sizeof(*e));
	serial++;
	snprintf(e->proc.log, sizeof(e->proc.log), "%s/etcd-%d.log", gvmt_dir(), serial);
	snprintf(e->data_dir, sizeof(e->data_dir), "%s/etcd-%d.data", gvmt_dir(), serial);
	for (int attempt = 0; attempt < START_TRIES; attempt++) {
		int port = free_port();

		do
			e->peer_port = free_port();
		while (e->peer_port == port);
		snprintf(e->proc.addr, sizeof(e->proc.addr), "127.0.0.1:%d", port);
		snprintf(e->endpoint, sizeof(e->endpoint), "http://%s", e->proc.addr);
		if (etcd_try(e))
			return true;
		/* A member bootstrapped on other ports would not start on these. */
		etcd_remove_data(e);
		if (!gvmt_file_count(e->proc.log, "address already in use"))
			return false;
	}
	return false;
}

bool gvmt_etcd_restart(struct gvmt_etcd *e)
{
	return etcd_try(e);
}

void gvmt_etcd_remove(struct gvmt_etcd *e)
{
	if (gvmt_proc_alive(&e->proc))
		gvmt_proc_stop(&e->proc, SIGTERM);
	etcd_remove_data(e);
}

/* etcdctl verb -- key [value]: its exit status. */
static int etcdctl(const struct gvmt_etcd *e, const char *verb, const char *key,
		   const char *value)
{
	char endpoints[96];
	const char *argv[] = { "/usr/bin/etcdctl", endpoints, verb, "--", key, value, NULL };

	snprintf(endpoints, sizeof(endpoints), "--endpoints=%s", e->endpoint);
	return gvmt_run(e->proc.log, argv);
}

int gvmt_etcdctl_put(const struct gvmt_etcd *e, const char *key, const char *value)
{
	return etcdctl(e, "put", key, value);
}

bool gvmt_file_wait(const char *path, const char *needle, int count, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		if (gvmt_file_count(path, needle) >= count)
			return true;
		sleep_ms(20);
	}
	return false;
}

int gvmt_gvmctl_donors(const char *socket_path, const char *out_path)
{
	char bin[512];
	int status;
	pid_t pid;

	gvmt_bin("gvmctl", bin, sizeof(bin));
	pid = fork();
	if (pid == 0) {
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0 || dup2(fd, 1) < 0)
			_exit(126);
		execl(bin, bin, "--socket", socket_path, "donors", (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool gvmt_donors_row(const char *listing, const char *addr, struct gvmt_donor_row *row)
{
	FILE *f = fopen(listing, "r");
	char line[512];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long long extents;
		struct gvmt_donor_row r;

		if (sscanf(line, "%127s %15s %u %llu %u", r.addr, r.state, &r.weight, &extents,
			   &r.conns) != 5 || strcmp(r.addr, addr))
			continue;
		r.extents = extents;
		*row = r;
		found = true;
	}
	fclose(f);
	return found;
}

int gvmt_etcdctl_del(const struct gvmt_etcd *e, const char *key)
{
	return etcdctl(e, "del", key, NULL);
}
