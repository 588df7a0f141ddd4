/* main.c: gvm-memserver, the donor daemon: parses the command line, loads
 * the cluster key, opens the page store (store.c) and serves it (server.c)
 * until SIGTERM, then flushes a backing file. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
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
		"  --log-level LEVEL    error, warn, info (default) or debug\n"
		"  -h, --help           this text\n"
		"\n"
		"A peer authenticates for a host id and may use that host's namespaces\n"
		"(HOST.NAME) only, at most %u of them. Until it authenticates (within\n"
		"%u ms of connecting) it is one of at most %u such peers per thread, the\n"
		"oldest closed for a new one, and %u per source address (IPv6: per /64);\n"
		"at most %u peers are authenticated at once.\n"
		"\n"
		"SIGTERM or SIGINT: close every connection, flush the backing file, exit 0;\n"
		"another one meanwhile is ignored.\n",
		MS_DEFAULT_LISTEN, GVM_KEY_MIN_BYTES, GVM_DEFAULT_KEY_FILE, MS_THREADS_MAX,
		MS_HOST_NAMESPACES_MAX, MS_AUTH_TIMEOUT_MS, MS_UNAUTH_MAX,
		MS_UNAUTH_PER_SOURCE_MAX, MS_CONNS_MAX);
}

static int usage_error(const char *fmt, const char *arg)
{
	return gvm_usage_error("gvm-memserver", fmt, arg);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "backing", required_argument, NULL, 'b' },
		{ "threads", required_argument, NULL, 't' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ms_config cfg = { .listen = MS_DEFAULT_LISTEN,
				 .key_file = GVM_DEFAULT_KEY_FILE,
				 .threads = 1 };
	enum gvm_log_level level = GVM_LOG_INFO;
	struct ms_store_info info;
	struct ms_store *store;
	struct gvm_key key;
	char why[512], *end;
	long threads;
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
		case 't':
			threads = strtol(optarg, &end, 10);
			if (*end || threads < 1 || threads > (long)MS_THREADS_MAX)
				return usage_error("--threads %s: want a number from 1 to 64", optarg);
			cfg.threads = (unsigned)threads;
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
			fprintf(stderr, "Try 'gvm-memserver --help'.\n");
			return 2;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	gvm_log_init("gvm-memserver", level);
	signal(SIGPIPE, SIG_IGN);
	/* Stop signals go to the main thread only (ms_server_run unblocks
	 * them there): every thread started from here on keeps them blocked. */
	ms_block_stop_signals(true);

	err = gvm_key_load(cfg.key_file, &key, why, sizeof(why));
	if (err) {
		gvm_err("%s", why);
		return 1;
	}
	err = ms_store_open(&store, cfg.backing, cfg.capacity_bytes, why, sizeof(why));
	if (err) {
		gvm_err("%s", why);
		return 1;
	}
	ms_store_get_info(store, &info);
	gvm_info("store: %llu MiB capacity, %llu MiB in use, %u namespace%s, backing %s",
		 (unsigned long long)(info.capacity_pages * 4096 >> 20),
		 (unsigned long long)(info.used_pages * 4096 >> 20), info.namespaces,
		 info.namespaces == 1 ? "" : "s", cfg.backing ? cfg.backing : "anon");
	err = ms_server_run(&cfg, store, &key);
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
