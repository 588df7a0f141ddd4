/* main.c: gvm-memserver, the donor daemon: parses the command line, loads
 * the cluster key, opens the page store (store.c) and serves it (server.c)
 * until SIGTERM, then flushes a backing file. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "etcd.h"
#include "log.h"
#include "memserver.h"
#include "server.h"
#include "store.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gvm-memserver [OPTIONS]\n"
		"Donor daemon of gvmmem: stores guest pages for many VMs (one namespace\n"
		"each) and serves them to gvm-broker over TCP after an HMAC handshake on\n"
		"the shared cluster key.\n"
		"\n"
		"  --listen ADDR:PORT   where to listen (default %s; [::1]:PORT for IPv6)\n"
		"  --capacity SIZE      pages to hold, e.g. 512M, 4G (default 1G, or the\n"
		"                       backing file's size)\n"
		"  --key-file PATH      cluster key, >= %u raw bytes, mode 0600 (default %s)\n"
		"                       make one: head -c 32 /dev/urandom > KEY; chmod 600 KEY\n"
		"  --backing anon|FILE  anon: memory, lost on exit (default); FILE: pages\n"
		"                       kept in FILE and found again after a restart\n"
		"  --threads N          event loops sharing the port (default 1, max %u)\n"
		"  --host-conns N       authenticated connections one host id may hold\n"
		"                       (default %u, max %u)\n"
		"  --log-level LEVEL    error, warn, info (default) or debug\n"
		"  -h, --help           this text\n"
		"\n"
		"A peer authenticates for a host id and may use that host's namespaces\n"
		"(HOST.NAME) only, at most %u of them. Connections are limited so:\n"
		"  - not yet authenticated (it must within %u ms of connecting): at most\n"
		"    %u per source address (IPv6: per /64) and thread, the next closed at\n"
		"    once, and %u per thread, the oldest closed for a new one, so a flood\n"
		"    cannot lock brokers out;\n"
		"  - authenticated: at most --host-conns per host id (a broker holds\n"
		"    --pool-conns for each donor address it is given), the next refused\n"
		"    busy (EBUSY);\n"
		"  - in all: the soft open-file limit is raised to the hard one, and what\n"
		"    is left past %u files a thread and %u spares is how many peers may be\n"
		"    authenticated at once (logged at start); raise it with LimitNOFILE=\n"
		"    in the unit.\n"
		"\n"
		"SIGTERM or SIGINT: close every connection, flush the backing file, exit 0;\n"
		"another one meanwhile is ignored.\n",
		MS_DEFAULT_LISTEN, GVM_KEY_MIN_BYTES, GVM_DEFAULT_KEY_FILE, MS_THREADS_MAX,
		MS_HOST_CONNS_DEFAULT, MS_HOST_CONNS_MAX, MS_HOST_NAMESPACES_MAX,
		MS_AUTH_TIMEOUT_MS, MS_UNAUTH_PER_SOURCE_MAX, MS_UNAUTH_MAX,
		MS_UNAUTH_MAX + 1, MS_FDS_SPARE);
}

static void usage_etcd(FILE *f)
{
	fprintf(f,
		"\n"
		"Membership in etcd (optional; brokers may also list donors themselves):\n"
		"  --etcd ENDPOINTS     register this donor in etcd: http://IP:PORT, several\n"
		"                       separated by commas, IP addresses only\n"
		"  --advertise IP:PORT  the address brokers reach this donor at (default the\n"
		"                       --listen address; needed when that is 0.0.0.0 or [::])\n"
		"  --weight N           relative capacity brokers give it (default %u, max %u)\n"
		"  --etcd-ttl SECONDS   lease: its key goes that long after the donor does\n"
		"                       (default %u, %u to %u)\n"
		"  --etcd-prefix PREFIX keys are PREFIX + address (default %s)\n",
		GVM_ETCD_DEFAULT_WEIGHT, GVM_ETCD_WEIGHT_MAX, GVM_ETCD_DEFAULT_TTL_S,
		GVM_ETCD_TTL_MIN_S, GVM_ETCD_TTL_MAX_S, GVM_ETCD_DEFAULT_PREFIX);
}

static int usage_error(const char *fmt, const char *arg)
{
	return gvm_usage_error("gvm-memserver", fmt, arg);
}

/* --etcd and its companions (proto/etcd.h). */
struct etcd_opts {
	const char *endpoints, *advertise, *prefix;
	unsigned weight, ttl_s;
	bool companions; /* any of them given */
	struct gvm_etcd_donor self;
};

/* A number in min..max for option name: 0 and *v, or a usage error's status. */
static int etcd_number(const char *name, const char *arg, unsigned min, unsigned max, unsigned *v)
{
	char msg[128], *end;
	unsigned long x;

	errno = 0;
	x = strtoul(arg, &end, 10);
	if (errno || *end || !isdigit((unsigned char)arg[0]) || x < min || x > max) {
		snprintf(msg, sizeof(msg), "%s %.32s: want a number from %u to %u", name, arg, min,
			 max);
		return usage_error("%s", msg);
	}
	*v = (unsigned)x;
	return 0;
}

static int etcd_option(int opt, const char *arg, struct etcd_opts *o)
{
	o->companions |= opt != 'E';
	switch (opt) {
	case 'E':
		o->endpoints = arg;
		return 0;
	case 'A':
		o->advertise = arg;
		return 0;
	case 'P':
		o->prefix = arg;
		return 0;
	case 'W':
		return etcd_number("--weight", arg, 1, GVM_ETCD_WEIGHT_MAX, &o->weight);
	default:
		return etcd_number("--etcd-ttl", arg, GVM_ETCD_TTL_MIN_S, GVM_ETCD_TTL_MAX_S,
				   &o->ttl_s);
	}
}

/* Once every option is parsed: the address to advertise and the handle (no
 * network yet). 0, or a usage error's status. */
static int etcd_prepare(struct etcd_opts *o, const char *listen, struct gvm_etcd **out)
{
	struct sockaddr_storage ss;
	char why[512];
	socklen_t len;

	if (!o->endpoints)
		return o->companions ? usage_error("%s", "--advertise, --weight, --etcd-ttl and "
						   "--etcd-prefix need --etcd") : 0;
	if (o->advertise) {
		snprintf(o->self.addr, sizeof(o->self.addr), "%s", o->advertise);
	} else {
		if (gvm_parse_hostport(listen, GVM_DONOR_DEFAULT_PORT, &ss, &len))
			return usage_error("--listen %s: not an address", listen);
		if ((ss.ss_family == AF_INET &&
		     ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
		    (ss.ss_family == AF_INET6 &&
		     IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr)))
			return usage_error("--etcd: --listen %s is a wildcard address: say with "
					   "--advertise IP:PORT where brokers reach this donor",
					   listen);
		gvm_format_addr((struct sockaddr *)&ss, o->self.addr, sizeof(o->self.addr));
	}
	o->self.weight = o->weight;
	if (strlen(o->advertise ? o->advertise : "") >= sizeof(o->self.addr) ||
	    gvm_etcd_check_donor(&o->self, why, sizeof(why)))
		return usage_error("--advertise %s: want IP:PORT or [IPV6]:PORT",
				   o->advertise ? o->advertise : o->self.addr);
	if (gvm_etcd_create(out, o->endpoints, o->prefix, why, sizeof(why)))
		return usage_error("%s", why);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "backing", required_argument, NULL, 'b' },
		{ "etcd", required_argument, NULL, 'E' },
		{ "advertise", required_argument, NULL, 'A' },
		{ "weight", required_argument, NULL, 'W' },
		{ "etcd-ttl", required_argument, NULL, 'T' },
		{ "etcd-prefix", required_argument, NULL, 'P' },
		{ "threads", required_argument, NULL, 't' },
		{ "host-conns", required_argument, NULL, 'H' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ms_config cfg = { .listen = MS_DEFAULT_LISTEN,
				 .key_file = GVM_DEFAULT_KEY_FILE,
				 .threads = 1 };
	struct etcd_opts eo = { .prefix = GVM_ETCD_DEFAULT_PREFIX,
				.weight = GVM_ETCD_DEFAULT_WEIGHT,
				.ttl_s = GVM_ETCD_DEFAULT_TTL_S };
	enum gvm_log_level level = GVM_LOG_INFO;
	struct gvm_etcd *etcd = NULL;
	struct ms_store_info info;
	struct ms_store *store;
	struct gvm_key key;
	char why[512], *end;
	long threads, host_conns;
	int opt, err, cerr;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			cfg.listen = optarg;
			break;
		case 'c':
			if (gvm_parse_size(optarg, &cfg.capacity_bytes) || !cfg.capacity_bytes)
				return usage_error("--capacity %s: not a size like 512M or 4G", optarg);
			break;
		case 'k':
			cfg.key_file = optarg;
			break;
		case 'b':
			cfg.backing = strcmp(optarg, "anon") == 0 ? NULL : optarg;
			break;
		case 'E':
		case 'A':
		case 'W':
		case 'T':
		case 'P':
			err = etcd_option(opt, optarg, &eo);
			if (err)
				return err;
			break;
		case 't':
			threads = strtol(optarg, &end, 10);
			if (*end || threads < 1 || threads > (long)MS_THREADS_MAX)
				return usage_error("--threads %s: want a number from 1 to 64", optarg);
			cfg.threads = (unsigned)threads;
			break;
		case 'H':
			host_conns = strtol(optarg, &end, 10);
			if (*end || host_conns < 1 || host_conns > (long)MS_HOST_CONNS_MAX)
				return usage_error("--host-conns %s: want a number from 1 to 1048576",
						   optarg);
			cfg.host_conns = (unsigned)host_conns;
			break;
		case 'L':
			if (gvm_log_parse_level(optarg, &level))
				return usage_error("--log-level %s: want error, warn, info or debug",
						   optarg);
			break;
		case 'h':
			usage(stdout);
			usage_etcd(stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'gvm-memserver --help'.\n");
			return 2;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	err = etcd_prepare(&eo, cfg.listen, &etcd);
	if (err)
		return err;
	gvm_log_init("gvm-memserver", level);
	signal(SIGPIPE, SIG_IGN);
	/* Stop signals go to the main thread only (ms_server_run unblocks
	 * them there): every thread started from here on keeps them blocked. */
	ms_block_stop_signals(true);

	err = gvm_key_load(cfg.key_file, &key, why, sizeof(why));
	if (err) {
		gvm_err("%s", why);
		gvm_etcd_destroy(etcd);
		return 1;
	}
	err = ms_store_open(&store, cfg.backing, cfg.capacity_bytes, why, sizeof(why));
	if (err) {
		gvm_err("%s", why);
		gvm_etcd_destroy(etcd);
		explicit_bzero(&key, sizeof(key));
		return 1;
	}
	ms_store_get_info(store, &info);
	gvm_info("store: %llu MiB capacity, %llu MiB in use, %u namespace%s, backing %s",
		 (unsigned long long)(info.capacity_pages * 4096 >> 20),
		 (unsigned long long)(info.used_pages * 4096 >> 20), info.namespaces,
		 info.namespaces == 1 ? "" : "s", cfg.backing ? cfg.backing : "anon");
	if (etcd) {
		eo.self.capacity_bytes = info.capacity_pages * GVM_PAGE_SIZE;
		err = gvm_etcd_register(etcd, &eo.self, eo.ttl_s);
		if (err) {
			gvm_err("etcd: cannot start registering: %s", strerror(-err));
			gvm_etcd_destroy(etcd);
			explicit_bzero(&key, sizeof(key));
			ms_store_close(store);
			return 1;
		}
	}
	err = ms_server_run(&cfg, store, &key);
	/* The lease stays: a donor back within its TTL keeps its place. */
	gvm_etcd_destroy(etcd);
	explicit_bzero(&key, sizeof(key));
	cerr = ms_store_close(store);
	if (cerr) {
		gvm_err("backing file %s: flush failed: %s", cfg.backing, strerror(-cerr));
		return 1;
	}
	if (!err)
		gvm_info("stopped cleanly");
	return err ? 1 : 0;
}
