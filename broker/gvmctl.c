/* gvmctl.c: the operator's command-line tool. For now it speaks to donors
 * (gvm-memserver) through proto/dclient.c: stats and ping; the broker's
 * `gvmctl stats` joins when the broker exists. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "dclient.h"
#include "log.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gvmctl [--key-file PATH] COMMAND ARGS\n"
		"Operator tool of gvmmem.\n"
		"\n"
		"Commands:\n"
		"  donor-stats HOST:PORT [NAMESPACE]  a donor's counters, one 'key value' a line\n"
		"  donor-ping HOST:PORT               authenticate and round-trip one PING\n"
		"\n"
		"  --key-file PATH  cluster key (default %s)\n"
		"  -h, --help       this text\n",
		GVM_DEFAULT_KEY_FILE);
}

static void print_stats(const Gvm__MemserverStats *m, const char *ns)
{
	printf("capacity_pages %" PRIu64 "\n", m->capacity_pages);
	printf("used_pages %" PRIu64 "\n", m->used_pages);
	printf("namespaces %u\n", m->namespaces);
	printf("connections %u\n", m->connections);
	printf("threads %u\n", m->threads);
	printf("reads %" PRIu64 "\n", m->reads);
	printf("writes %" PRIu64 "\n", m->writes);
	printf("pages_read %" PRIu64 "\n", m->pages_read);
	printf("pages_written %" PRIu64 "\n", m->pages_written);
	printf("zero_pages_read %" PRIu64 "\n", m->zero_pages_read);
	printf("bytes_in %" PRIu64 "\n", m->bytes_in);
	printf("bytes_out %" PRIu64 "\n", m->bytes_out);
	printf("auth_failures %" PRIu64 "\n", m->auth_failures);
	printf("bad_frames %" PRIu64 "\n", m->bad_frames);
	printf("enospc %" PRIu64 "\n", m->enospc);
	if (ns)
		printf("ns_used_pages %" PRIu64 "\n", m->ns_used_pages);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key-file", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_file = GVM_DEFAULT_KEY_FILE, *cmd, *ns = NULL;
	Gvm__MemserverStats *m;
	struct gvm_dconn *c;
	struct gvm_key key;
	char why[512];
	int opt, err;

	while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (opt) {
		case 'k':
			key_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'gvmctl --help'.\n");
			return 2;
		}
	}
	gvm_log_init("gvmctl", GVM_LOG_WARN);
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (strcmp(cmd, "donor-stats") && strcmp(cmd, "donor-ping")) {
		fprintf(stderr, "gvmctl: unknown command '%s'\nTry 'gvmctl --help'.\n", cmd);
		return 2;
	}
	if (optind >= argc || argc - optind > 2 ||
	    (strcmp(cmd, "donor-ping") == 0 && argc - optind != 1)) {
		fprintf(stderr, "gvmctl %s: wrong arguments\nTry 'gvmctl --help'.\n", cmd);
		return 2;
	}
	if (argc - optind == 2)
		ns = argv[optind + 1];
	err = gvm_key_load(key_file, &key, why, sizeof(why));
	if (err) {
		fprintf(stderr, "gvmctl: %s\n", why);
		return 1;
	}
	err = gvm_dconn_open(&c, argv[optind], &key, why, sizeof(why));
	if (err) {
		fprintf(stderr, "gvmctl: %s\n", why);
		return 1;
	}
	if (strcmp(cmd, "donor-ping") == 0) {
		err = gvm_dconn_ping(c);
		if (!err)
			printf("donor %s: ok\n", argv[optind]);
	} else {
		err = gvm_dconn_stats(c, ns, &m);
		if (!err) {
			print_stats(m, ns);
			gvm__memserver_stats__free_unpacked(m, NULL);
		}
	}
	if (err)
		fprintf(stderr, "gvmctl: %s\n", gvm_dconn_error(c));
	gvm_dconn_close(c);
	return err ? 1 : 0;
}
