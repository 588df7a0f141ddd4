/* main.c: gvm-broker, the per-host daemon: parses the command line, loads
 * the cluster key, sets up the donor pool (pool.c) and the donor table
 * (donors.c: SIGHUP and etcd change it), opens the client socket
 * (control.c) and /dev/gvmmem (device.c, cuse-dev/), loads the seccomp allowlist
 * (sandbox.c), tells systemd it is ready (notify.c) and serves every
 * attached VM's faults (fault.c) on one libuv loop until SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include "broker.h"
#include "control.h"
#include "cuse_dev.h"
#include "etcd.h"
#include "journal.h"
#include "seal.h"
#include "log.h"
#include "names.h"
#include "notify.h"
#include "pool.h"
#include "prefetch.h"
#include "replica.h"
#include "sandbox.h"

#define HUGE_POOL_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gvm-broker --donor HOST:PORT[,WEIGHT]... [OPTIONS]\n"
		"Per-host daemon of gvmmem: serves the page faults of every attached VM\n"
		"from a shared pool of connections to the donors (gvm-memserver).\n"
		"\n"
		"  --socket PATH          client socket (default %s; mode 0660,\n"
		"                         group gvm when it exists)\n"
		"  --donor HOST:PORT[,W]  a donor, weight W (default 1, its share of new\n"
		"                         placements); repeat for each donor\n"
		"  --donors-file PATH     donors, one 'HOST:PORT [WEIGHT]' a line (# comments);\n"
		"                         SIGHUP reads it again: new donors take new pages,\n"
		"                         weights change new placements only, a donor no\n"
		"                         longer listed is drained (its pages copied to the\n"
		"                         others, then dropped there)\n"
		"  --etcd ENDPOINTS       also take the donors registered in etcd\n"
		"                         (http://IP:PORT[,...]; gvm-memserver --etcd), watched;\n"
		"                         a change is applied as SIGHUP applies the file. While\n"
		"                         etcd is unreachable the donors stay as they are\n"
		"  --etcd-prefix PREFIX   where donors register (default %s)\n"
		"  --idle-timeout SECONDS a donor connection unused this long closes (default\n"
		"                         %u; a donor holding pages keeps one)\n"
		"  --donor-ports LIST     the ports donors may use (PORT or FIRST-LAST,\n"
		"                         comma-separated): the sandbox allows connections to\n"
		"                         these, the donors' at start and %s only\n"
		"  --key-file PATH        cluster key (default %s)\n"
		"  --state-dir DIR        this host's identity: its host id and host key,\n"
		"                         made on first start (default %s, mode 0700)\n"
		"  --host-id ID           the host id the donors know this host by (1..16 of\n"
		"                         a-z 0-9 -; default: the one in --state-dir). Every\n"
		"                         namespace of this host's VMs starts with it: keep it\n"
		"                         stable and unique in the cluster\n"
		"  --pool-conns N         connections per donor, shared by all VMs (default %u)\n"
		"  --extent-pages N       pages fetched per fault (default %u, max %u)\n"
		"  --prefetch-cache SIZE  host-wide prefetch cache (default 64M)\n"
		"  --budget SIZE          resident guest memory allowed on this host; above\n"
		"                         95%% of it pages move to the donors down to 85%%\n"
		"                         (default: no budget, nothing is evicted)\n"
		"  --replicas N           copies of each extent, on N donors (default %u, at\n"
		"                         most %u; fewer donors: one copy on each); 2\n"
		"                         recommended: with 1, a donor's death loses its pages\n"
		"                         (the VM gets a memory error on them)\n"
		"  --dead-after SECONDS   a donor unreachable or not answering this long is\n"
		"                         dead: its copies are made again elsewhere (default %u)\n"
		"  --rereplicate-rate SIZE  bytes a second copying extents short of replicas\n"
		"                         (default 64M)\n"
		"  --uid-vms N            VMs one user may have attached (default %u)\n"
		"  --uid-regions N        regions (donor namespaces) one user may have\n"
		"                         attached (default %u); a user also has at most\n"
		"                         uid-vms + %u connections\n"
		"  --device-name NAME     the CUSE device, /dev/NAME (default %s); while it\n"
		"                         exists, attaching needs its one-time token\n"
		"  --install copy|continue|auto  how fetched pages reach a VM: copy (default)\n"
		"                         copies them in with UFFDIO_COPY; continue receives\n"
		"                         them straight into the VM's memory and maps them\n"
		"                         with UFFDIO_CONTINUE (minor faults: shmem, Linux\n"
		"                         6.4+); auto is continue where the kernel allows.\n"
		"                         Measured here, continue costs more CPU per GiB\n"
		"                         (bench/NOTES.md)\n"
		"  --page-crypto aes-256-gcm|xchacha20-poly1305|none  how pages are sealed\n"
		"                         on the donors: encrypted and authenticated under a\n"
		"                         key of each VM that never leaves this host\n"
		"                         (default: aes-256-gcm where the CPU has AES-NI,\n"
		"                         else xchacha20-poly1305); none sends them in clear.\n"
		"                         A VM keeps the choice it attached with\n"
		"  --no-cuse              no device: serve the socket only\n"
		"  --no-sandbox           do not load the seccomp allowlist (debugging)\n"
		"  --print-seccomp        print the seccomp filter and exit\n"
		"  --log-level LEVEL      error, warn, info (default) or debug\n"
		"  -h, --help             this text\n"
		"\n"
		"SIGHUP: read --donors-file again (systemctl reload gvm-broker).\n"
		"SIGTERM or SIGINT: let every VM go, keeping its pages on the donors (its\n"
		"faults wait and libgvmmem re-attaches to the next broker), close the pool,\n"
		"exit 0; another one meanwhile is ignored. A VM's pages are dropped when\n"
		"its process exits or it detaches. Under systemd (Type=notify) it sends\n"
		"READY=1 and WATCHDOG=1 itself.\n",
		GVM_DEFAULT_SOCKET, GVM_ETCD_DEFAULT_PREFIX, BK_DEFAULT_IDLE_MS / 1000,
		GVM_DONOR_DEFAULT_PORT,
		GVM_DEFAULT_KEY_FILE, BK_DEFAULT_STATE_DIR, BK_DEFAULT_POOL_CONNS,
		GVM_DEFAULT_EXTENT_PAGES, GVM_FRAME_PAGES_MAX, BK_DEFAULT_REPLICAS, BK_REPLICAS_MAX,
		BK_DEFAULT_DEAD_AFTER_MS / 1000, BK_DEFAULT_UID_VMS,
		BK_DEFAULT_UID_REGIONS, BK_UID_SPARE_CONNS, BK_DEFAULT_DEVICE_NAME);
}

static int usage_error(const char *fmt, const char *arg)
{
	return gvm_usage_error("gvm-broker", fmt, arg);
}

/* Seconds (a decimal like 2.5) from 0.1 to 3600 into *ms: 0, or -EINVAL. */
static int parse_seconds(const char *s, unsigned *ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.1 && v <= 3600))
		return -EINVAL;
	*ms = (unsigned)(v * 1000 + 0.5);
	return 0;
}

/* A whole number from 1 to max into *out: 0, or -EINVAL. */
static int parse_count(const char *s, unsigned max, unsigned *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end || v < 1 || v > (long)max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* --donor-ports "P[-Q][,...]": into a malloc'd list. 0, -EINVAL or -ENOMEM. */
static int parse_ports(const char *s, uint16_t **out, unsigned *n)
{
	*n = 0;
	free(*out);
	*out = NULL;
	while (*s) {
		char *end;
		long lo = strtol(s, &end, 10), hi = lo;
		uint16_t *v;

		if (end == s)
			return -EINVAL;
		if (*end == '-')
			hi = strtol(end + 1, &end, 10);
		if (lo < 1 || hi > 65535 || hi < lo || *n + (unsigned)(hi - lo + 1) > 4096 ||
		    (*end && *end != ','))
			return -EINVAL;
		v = realloc(*out, (*n + (size_t)(hi - lo + 1)) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		*out = v;
		for (long p = lo; p <= hi; p++)
			v[(*n)++] = (uint16_t)p;
		s = *end ? end + 1 : end;
	}
	return *n ? 0 : -EINVAL;
}

/* The ports the sandbox lets it connect to: --donor-ports, the donors' at
 * start, the default donor port (donors added later) and etcd's. */
static unsigned allowed_ports(const struct bk_broker *b, const uint16_t *extra, unsigned nextra,
			      uint16_t **out)
{
	uint16_t *ports = malloc((b->ndonors + nextra + 2 + 16) * sizeof(*ports));
	unsigned n = 0;

	if (!ports)
		return 0;
	for (unsigned i = 0; i < nextra; i++)
		ports[n++] = extra[i];
	ports[n++] = (uint16_t)atoi(GVM_DONOR_DEFAULT_PORT);
	for (unsigned i = 0; i < b->ndonors; i++) {
		bool seen = false;

		for (unsigned k = 0; k < n; k++)
			seen |= ports[k] == b->donors[i].port;
		if (!seen)
			ports[n++] = b->donors[i].port;
	}
	/* etcd endpoints: http://IP:PORT[,...] */
	for (const char *e = b->cfg.etcd; e && *e && n < b->ndonors + nextra + 18;) {
		const char *end = strchr(e, ','), *colon;
		size_t len = end ? (size_t)(end - e) : strlen(e);

		colon = memrchr(e, ':', len);
		if (colon && colon[1] >= '0' && colon[1] <= '9')
			ports[n++] = (uint16_t)atoi(colon + 1);
		e += len + (end ? 1 : 0);
	}
	*out = ports;
	return n;
}

/* The directory of --donors-file ("/etc/gvm/", or "." for a bare name). */
static void donors_dir(const struct bk_config *cfg, char *dir, size_t n)
{
	const char *slash = cfg->donors_file ? strrchr(cfg->donors_file, '/') : NULL;

	snprintf(dir, n, "%.*s", slash ? (int)(slash - cfg->donors_file) + 1 : 1,
		 slash ? cfg->donors_file : ".");
}

/* Every donor given at start: --donors-file, then --donor. */
static int initial_donors(struct bk_broker *b, char *why, size_t n)
{
	struct bk_config *cfg = &b->cfg;
	struct bk_donor_cfg *list = NULL;
	unsigned count = 0;
	int err = 0;

	if (cfg->donors_file) {
		err = bk_donors_read_file(cfg->donors_file, -1, &list, &count, why, n);
		if (err)
			return err;
	}
	for (unsigned i = 0; i < cfg->ndonors && !err; i++) {
		char spec[160];

		snprintf(spec, sizeof(spec), "%s,%u", cfg->donors[i].addr, cfg->donors[i].weight);
		err = bk_donors_parse(&list, &count, spec);
		if (err)
			snprintf(why, n, "--donor %s: %s", cfg->donors[i].addr,
				 err == -EEXIST ? "also in --donors-file" : strerror(-err));
	}
	if (!err && count)
		err = bk_donors_apply(b, list, count, cfg->donors_file ? cfg->donors_file :
						     "the command line", why, n);
	free(list);
	return err;
}

/* Each VM holds a uffd, its memfds and a socket, and each donor in use up
 * to --pool-conns connections: the open-file limit was raised to its hard
 * limit; say so when even that may be too low. */
static void check_fd_limit(const struct bk_broker *b)
{
	static uint64_t said;
	uint64_t want = (uint64_t)b->active_donors * b->cfg.pool_conns + BK_FDS_SPARE;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= want || said >= want)
		return;
	said = want;
	gvm_warn("open-file limit %llu: %u donors x %u connections may need %llu; connections "
		 "open only to donors in use, but raise LimitNOFILE= (or ulimit -n) to be safe",
		 (unsigned long long)rl.rlim_cur, b->active_donors, b->cfg.pool_conns,
		 (unsigned long long)want);
}

static void on_pool_started(uv_work_t *w, int status)
{
	(void)status;
	free(w);
}

static void no_work(uv_work_t *w)
{
	(void)w;
}

/* libuv starts its thread pool (attach checks run there) at the first
 * work queued: before the seccomp filter, which allows no new threads,
 * and after Landlock and the capability drop, which threads inherit.
 * 0, or -errno with why: under the filter no attach could be checked. */
static int start_thread_pool(uv_loop_t *loop, char *why, size_t n)
{
	uv_work_t *w = malloc(sizeof(*w));
	int err;

	if (!w) {
		snprintf(why, n, "out of memory starting the thread pool");
		return -ENOMEM;
	}
	err = uv_queue_work(loop, w, no_work, on_pool_started);
	if (err) {
		free(w);
		snprintf(why, n, "cannot start the thread pool: %s", uv_strerror(err));
	}
	return err;
}

static struct bk_broker broker;
static uv_signal_t sigterm, sigint, sighup;

static void on_sighup(uv_signal_t *sig, int signum)
{
	(void)sig;
	(void)signum;
	if (!broker.stopping) {
		bk_donors_reload(&broker);
		check_fd_limit(&broker);
	}
}

static void on_signal(uv_signal_t *sig, int signum)
{
	(void)sig;
	if (broker.stopping)
		return; /* a second one (systemd's stop racing a kill, a double Ctrl-C) */
	gvm_info("%s: shutting down; the VMs' pages stay on the donors", strsignal(signum));
	broker.stopping = true;
	bk_notify("STOPPING=1");
	bk_notify_watchdog_stop();
	bk_device_stop(&broker);
	bk_control_stop(&broker);
	bk_fault_drop_deferred(&broker);
	bk_followup_stop(&broker);
	bk_orphans_stop(&broker);
	bk_fill_stop(&broker);
	bk_replica_stop(&broker);
	bk_donors_stop(&broker);
	bk_pool_close(broker.pool);
	uv_close((uv_handle_t *)&sighup, NULL);
	/* The handles stay, out of the loop's count: closing them would put
	 * back the default action, and a second signal in that instant would
	 * end the shutdown half-way (test_broker saw it under load). Later ones
	 * come here and are ignored; SIGKILL is for stopping at once. */
	uv_unref((uv_handle_t *)&sigterm);
	uv_unref((uv_handle_t *)&sigint);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "donor", required_argument, NULL, 'd' },
		{ "donors-file", required_argument, NULL, 'D' },
		{ "etcd", required_argument, NULL, 'E' },
		{ "etcd-prefix", required_argument, NULL, 'F' },
		{ "idle-timeout", required_argument, NULL, 'I' },
		{ "donor-ports", required_argument, NULL, 'O' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "state-dir", required_argument, NULL, 'T' },
		{ "host-id", required_argument, NULL, 'H' },
		{ "uid-vms", required_argument, NULL, 'V' },
		{ "uid-regions", required_argument, NULL, 'R' },
		{ "pool-conns", required_argument, NULL, 'p' },
		{ "extent-pages", required_argument, NULL, 'e' },
		{ "prefetch-cache", required_argument, NULL, 'c' },
		{ "budget", required_argument, NULL, 'b' },
		{ "replicas", required_argument, NULL, 'r' },
		{ "dead-after", required_argument, NULL, 'X' },
		{ "rereplicate-rate", required_argument, NULL, 'Y' },
		{ "no-cuse", no_argument, NULL, 'n' },
		{ "install", required_argument, NULL, 'i' },
		{ "page-crypto", required_argument, NULL, 'C' },
		{ "device-name", required_argument, NULL, 'N' },
		{ "no-sandbox", no_argument, NULL, 'S' },
		{ "print-seccomp", no_argument, NULL, 'P' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bk_config *cfg = &broker.cfg;
	enum gvm_log_level level = GVM_LOG_INFO;
	const char *device_name = BK_DEFAULT_DEVICE_NAME;
	bool sandbox = true;
	uint16_t *donor_ports = NULL;
	unsigned ndonor_ports = 0;
	char why[512];
	int opt, err;

	cfg->socket_path = GVM_DEFAULT_SOCKET;
	cfg->key_file = GVM_DEFAULT_KEY_FILE;
	cfg->state_dir = BK_DEFAULT_STATE_DIR;
	cfg->uid_vms = BK_DEFAULT_UID_VMS;
	cfg->uid_regions = BK_DEFAULT_UID_REGIONS;
	cfg->pool_conns = BK_DEFAULT_POOL_CONNS;
	cfg->extent_pages = GVM_DEFAULT_EXTENT_PAGES;
	cfg->prefetch_bytes = BK_DEFAULT_PREFETCH_BYTES;
	cfg->replicas = BK_DEFAULT_REPLICAS;
	cfg->dead_after_ms = BK_DEFAULT_DEAD_AFTER_MS;
	cfg->rereplicate_bytes = BK_DEFAULT_REREPLICATE_BYTES;
	cfg->idle_ms = BK_DEFAULT_IDLE_MS;
	cfg->etcd_prefix = GVM_ETCD_DEFAULT_PREFIX;
	broker.donors_dirfd = -1;
	broker.seal_dirfd = -1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			cfg->socket_path = optarg;
			break;
		case 'd':
			if (bk_donors_parse(&cfg->donors, &cfg->ndonors, optarg))
				return usage_error("--donor %s: want HOST:PORT[,WEIGHT], each donor once",
						   optarg);
			break;
		case 'D': {
			struct bk_donor_cfg *list;
			unsigned n;

			if (cfg->donors_file)
				return usage_error("--donors-file %s: give it once", optarg);
			if (bk_donors_read_file(optarg, -1, &list, &n, why, sizeof(why))) {
				fprintf(stderr, "gvm-broker: %s\n", why);
				return 2;
			}
			free(list); /* read again once the log is set up */
			cfg->donors_file = optarg;
			break;
		}
		case 'E':
			cfg->etcd = optarg;
			break;
		case 'F':
			if (!*optarg || strlen(optarg) > 200)
				return usage_error("--etcd-prefix %s: want 1..200 characters", optarg);
			cfg->etcd_prefix = optarg;
			break;
		case 'O':
			err = parse_ports(optarg, &donor_ports, &ndonor_ports);
			if (err == -ENOMEM) {
				fprintf(stderr, "gvm-broker: --donor-ports %s: out of memory\n", optarg);
				return 1;
			}
			if (err)
				return usage_error("--donor-ports %s: want PORT or FIRST-LAST, comma-"
						   "separated, at most 4096 ports", optarg);
			break;
		case 'I':
			if (parse_seconds(optarg, &cfg->idle_ms) || cfg->idle_ms < 1000)
				return usage_error("--idle-timeout %s: want seconds, 1..3600", optarg);
			break;
		case 'k':
			cfg->key_file = optarg;
			break;
		case 'T':
			cfg->state_dir = optarg;
			break;
		case 'H':
			if (gvm_host_id_invalid(optarg))
				return usage_error("--host-id %s: want 1..16 of a-z 0-9 -", optarg);
			cfg->host_id = optarg;
			break;
		case 'V':
			if (parse_count(optarg, 100000, &cfg->uid_vms))
				return usage_error("--uid-vms %s: want 1..100000", optarg);
			break;
		case 'R':
			if (parse_count(optarg, 1000000, &cfg->uid_regions))
				return usage_error("--uid-regions %s: want 1..1000000", optarg);
			break;
		case 'p':
			if (parse_count(optarg, BK_POOL_CONNS_MAX, &cfg->pool_conns))
				return usage_error("--pool-conns %s: want 1..16", optarg);
			break;
		case 'e':
			if (parse_count(optarg, GVM_FRAME_PAGES_MAX, &cfg->extent_pages))
				return usage_error("--extent-pages %s: want 1..512", optarg);
			break;
		case 'c':
			if (gvm_parse_size(optarg, &cfg->prefetch_bytes))
				return usage_error("--prefetch-cache %s: not a size like 64M", optarg);
			break;
		case 'b':
			if (gvm_parse_size(optarg, &cfg->budget_bytes))
				return usage_error("--budget %s: not a size like 4G", optarg);
			break;
		case 'r':
			if (parse_count(optarg, BK_REPLICAS_MAX, &cfg->replicas))
				return usage_error("--replicas %s: want 1..4", optarg);
			break;
		case 'X':
			if (parse_seconds(optarg, &cfg->dead_after_ms))
				return usage_error("--dead-after %s: want seconds, 0.1..3600", optarg);
			break;
		case 'Y':
			if (gvm_parse_size(optarg, &cfg->rereplicate_bytes) ||
			    cfg->rereplicate_bytes < GVM_PAGE_SIZE)
				return usage_error("--rereplicate-rate %s: not a size like 64M", optarg);
			break;
		case 'n':
			cfg->no_cuse = true;
			break;
		case 'N':
			if (!*optarg || strlen(optarg) > 32 || strchr(optarg, '/') ||
			    strspn(optarg, "abcdefghijklmnopqrstuvwxyz0123456789_-.") != strlen(optarg))
				return usage_error("--device-name %s: want 1..32 of [a-z0-9_-.]", optarg);
			device_name = optarg;
			break;
		case 'S':
			sandbox = false;
			break;
		case 'P':
			err = bk_sandbox_print(STDOUT_FILENO);
			if (err)
				fprintf(stderr, "gvm-broker: cannot build the seccomp filter: %s\n",
					strerror(-err));
			return err ? 1 : 0;
		case 'i':
			if (!strcmp(optarg, "auto"))
				cfg->install = BK_INSTALL_AUTO;
			else if (!strcmp(optarg, "copy"))
				cfg->install = BK_INSTALL_COPY;
			else if (!strcmp(optarg, "continue"))
				cfg->install = BK_INSTALL_CONTINUE;
			else
				return usage_error("--install %s: want auto, copy or continue", optarg);
			break;
		case 'C':
			if (bk_seal_parse(optarg, &cfg->page_crypto))
				return usage_error("--page-crypto %s: want aes-256-gcm, "
						   "xchacha20-poly1305 or none", optarg);
			break;
		case 'L':
			if (gvm_log_parse_level(optarg, &level))
				return usage_error("--log-level %s: want error, warn, info or debug",
						   optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'gvm-broker --help'.\n");
			return 2;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!cfg->ndonors && !cfg->donors_file && !cfg->etcd)
		return usage_error("%s", "no donors: give --donor HOST:PORT, --donors-file or --etcd");
	gvm_log_init("gvm-broker", level);
	signal(SIGPIPE, SIG_IGN);

	/* Each VM holds a uffd, its memfds and a socket: as many descriptors
	 * as the hard limit allows. */
	gvm_raise_fd_limit(UINT64_MAX, NULL, NULL);
	err = gvm_key_load(cfg->key_file, &broker.key, why, sizeof(why));
	if (!err)
		err = bk_identity_load(&broker.id, cfg->state_dir, cfg->host_id, why, sizeof(why));
	if (err) {
		gvm_err("%s", why);
		return 1;
	}
	gvm_info("host id %s (namespaces of this host's VMs start with it)", broker.id.host_id);
	/* One open file for every client: it only makes uffds for the caller. */
	broker.uffd_dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (broker.uffd_dev < 0)
		gvm_warn("cannot open /dev/userfaultfd (%s): clients must create their uffd themselves, which needs privileges",
			 strerror(errno));
	/* Read when a huge page cannot be installed (region.c). */
	broker.huge_free_fd = open(HUGE_POOL_DIR "/free_hugepages", O_RDONLY | O_CLOEXEC);
	broker.huge_resv_fd = open(HUGE_POOL_DIR "/resv_hugepages", O_RDONLY | O_CLOEXEC);
	broker.loop = uv_default_loop();
	bk_evict_setup(&broker);
	/* as large as the largest extent: --extent-pages, or a huge page */
	broker.zero_extent = calloc(cfg->extent_pages > GVM_HUGE_PAGE_PAGES ? cfg->extent_pages :
				    GVM_HUGE_PAGE_PAGES, GVM_PAGE_SIZE);
	if (!broker.zero_extent) {
		gvm_err("out of memory for a zero extent");
		return 1;
	}
	err = bk_cache_create(&broker.cache, cfg->prefetch_bytes, cfg->extent_pages);
	if (err) {
		gvm_err("prefetch cache: %s", strerror(-err));
		return 1;
	}
	err = bk_pool_create(&broker.pool, broker.loop, &broker.key, broker.id.host_id,
			     cfg->pool_conns, cfg->idle_ms);
	if (err) {
		gvm_err("donor pool: %s", err == -EIO ? "libsodium failed to initialise" :
							strerror(-err));
		return 1;
	}
	err = bk_replica_setup(&broker);
	if (err) {
		gvm_err("replica tracking: %s", strerror(-err));
		return 1;
	}
	err = bk_seal_setup(&broker, why, sizeof(why));
	if (err) {
		gvm_err("page crypto: %s", why);
		return 1;
	}
	err = bk_journal_open(&broker, cfg->state_dir);
	if (err)
		gvm_warn("%s/%s: %s: pages are received into buffers and copied in (as with "
			 "--install copy)", cfg->state_dir, BK_JOURNAL_FILE, strerror(-err));
	err = bk_followup_start(&broker);
	if (err) {
		gvm_err("the loop's follow-up handle: %s", uv_strerror(err));
		return 1;
	}
	err = initial_donors(&broker, why, sizeof(why));
	if (err) {
		gvm_err("%s", why);
		return 1;
	}
	if (!broker.active_donors)
		gvm_info("no donor yet: waiting for etcd %s to list some", cfg->etcd);
	check_fd_limit(&broker);
	if (cfg->donors_file) {
		char dir[PATH_MAX];

		donors_dir(cfg, dir, sizeof(dir));
		broker.donors_dirfd = strcmp(dir, "/") ? open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC) :
							   -1;
		if (!strcmp(dir, "/"))
			gvm_warn("--donors-file %s: in /, which the sandbox will not open for reading: "
				 "SIGHUP cannot read it again (put it in /etc/gvm)", cfg->donors_file);
		else if (broker.donors_dirfd < 0)
			gvm_warn("--donors-file: cannot open its directory %s (%s): SIGHUP cannot read "
				 "it again", dir, strerror(errno));
	}
	/* Before the socket is there: whoever sees it may send SIGHUP. */
	uv_signal_init(broker.loop, &sighup);
	uv_signal_start(&sighup, on_sighup, SIGHUP);
	err = bk_control_start(&broker, why, sizeof(why));
	if (err) {
		gvm_err("%s", why);
		return 1;
	}
	if (!cfg->no_cuse) {
		err = bk_device_start(&broker, device_name, why, sizeof(why));
		if (err == -ENODEV)
			gvm_info("no CUSE in this kernel (%s; modprobe cuse): no /dev/%s, serving the "
				 "socket only",
				 why, device_name);
		else if (err)
			gvm_warn("/dev/%s: %s: serving the socket only", device_name, why);
	}
	bk_notify_open();
	if (sandbox) {
		uint16_t *ports = NULL;
		unsigned nports = allowed_ports(&broker, donor_ports, ndonor_ports, &ports);
		char what[1024], dir[PATH_MAX];

		donors_dir(cfg, dir, sizeof(dir));
		if (nports) {
			err = bk_sandbox_confine(ports, nports, broker.donors_dirfd, dir,
						 bk_seal_dirfd(&broker), what, sizeof(what), why,
						 sizeof(why));
		} else {
			snprintf(why, sizeof(why), "out of memory for the sandbox's port list");
			err = -ENOMEM;
		}
		free(ports);
		if (!err)
			err = start_thread_pool(broker.loop, why, sizeof(why));
		if (!err && cfg->etcd)
			err = bk_donors_etcd_start(&broker, why, sizeof(why));
		if (!err)
			err = bk_sandbox_load(why, sizeof(why));
		if (err) {
			gvm_err("%s (--no-sandbox runs without it)", why);
			return 1;
		}
		gvm_info("sandbox: %s", what);
		gvm_info("seccomp allowlist loaded (gvm-broker --print-seccomp shows it)");
	} else {
		if (start_thread_pool(broker.loop, why, sizeof(why)))
			gvm_warn("%s: it starts at the first attach", why);
		gvm_warn("--no-sandbox: running with every privilege and without the seccomp allowlist");
		if (cfg->etcd && bk_donors_etcd_start(&broker, why, sizeof(why))) {
			gvm_err("%s", why);
			return 1;
		}
	}
	gvm_info("%u donor%s, up to %u connections each (opened when used, closed after %u s "
		 "idle), %u replica%s, extents of %u pages, prefetch cache %llu MiB, budget %s",
		 broker.active_donors, broker.active_donors == 1 ? "" : "s", cfg->pool_conns,
		 cfg->idle_ms / 1000, cfg->replicas,
		 cfg->replicas == 1 ? "" : "s", cfg->extent_pages,
		 (unsigned long long)(cfg->prefetch_bytes >> 20),
		 cfg->budget_bytes ? "set" : "none (nothing is evicted)");
	if (cfg->budget_bytes)
		gvm_info("budget %llu MiB: evict above %llu MiB down to %llu MiB",
			 (unsigned long long)(cfg->budget_bytes >> 20),
			 (unsigned long long)(broker.high_pages * GVM_PAGE_SIZE >> 20),
			 (unsigned long long)(broker.low_pages * GVM_PAGE_SIZE >> 20));
	uv_signal_init(broker.loop, &sigterm);
	uv_signal_init(broker.loop, &sigint);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_start(&sigint, on_signal, SIGINT);
	bk_notify("READY=1");
	bk_notify_watchdog_start(broker.loop);
	uv_run(broker.loop, UV_RUN_DEFAULT);
	bk_donors_free(&broker);
	bk_pool_free(broker.pool);
	bk_cache_free(broker.cache);
	bk_journal_close(&broker);
	bk_seal_close(&broker);
	free(broker.zero_extent);
	uv_loop_close(broker.loop);
	explicit_bzero(&broker.key, sizeof(broker.key));
	bk_identity_wipe(&broker.id);
	if (broker.uffd_dev >= 0)
		close(broker.uffd_dev);
	gvm_info("stopped cleanly");
	return 0;
}
