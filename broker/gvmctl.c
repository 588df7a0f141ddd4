/* gvmctl.c: the operator's command-line tool: `stats` asks gvm-broker over
 * its socket (proto/ctlmsg.c); donor-stats and donor-ping talk to a donor
 * (gvm-memserver) through proto/dclient.c. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "ctlmsg.h"
#include "dclient.h"
#include "log.h"
#include "names.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gvmctl [--socket PATH] [--key-file PATH] COMMAND ARGS\n"
		"Operator tool of gvmmem.\n"
		"\n"
		"Commands:\n"
		"  stats                              the broker's counters, 'key: value' a line\n"
		"  donors                             the broker's donors: address, state (up,\n"
		"                                     idle, down, dead, draining, removed),\n"
		"                                     weight, extent copies held, connections\n"
		"  donor-stats HOST:PORT [NAMESPACE]  a donor's counters, one 'key value' a line\n"
		"  donor-ping HOST:PORT               authenticate and round-trip one PING\n"
		"\n"
		"  --socket PATH    the broker's socket (default %s)\n"
		"  --key-file PATH  cluster key, for donor commands (default %s)\n"
		"  -h, --help       this text\n",
		GVM_DEFAULT_SOCKET, GVM_DEFAULT_KEY_FILE);
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

/* Asks the broker for its counters and prints them. */
static int broker_stats(const char *path)
{
	Gvm__Control *m;
	int err = gvm_ctl_stats(path, &m);

	if (err == -ENAMETOOLONG) {
		fprintf(stderr, "gvmctl: --socket %s: path too long\n", path);
		return 2;
	}
	if (err) {
		fprintf(stderr, "gvmctl: broker at %s: %s\n", path, strerror(-err));
		return 1;
	}
	for (size_t i = 0; i < m->stats->n_entries; i++)
		printf("%s: %" PRIu64 "\n", m->stats->entries[i]->key, m->stats->entries[i]->value);
	gvm__control__free_unpacked(m, NULL);
	return 0;
}

/* Asks the broker for its donor table, a page at a time, and prints it. */
static int broker_donors(const char *path)
{
	unsigned first = 0, total = 1;

	printf("%-40s %-9s %7s %10s %5s\n", "ADDRESS", "STATE", "WEIGHT", "EXTENTS", "CONNS");
	while (first < total) {
		Gvm__Control *m;
		int err = gvm_ctl_donors(path, first, &m);

		if (err) {
			fprintf(stderr, "gvmctl: broker at %s: %s\n", path, strerror(-err));
			return 1;
		}
		total = m->donors->total;
		for (size_t i = 0; i < m->donors->n_donors; i++) {
			const Gvm__DonorInfo *d = m->donors->donors[i];

			printf("%-40s %-9s %7u %10" PRIu64 " %5u\n", d->addr, d->state, d->weight,
			       d->extents, d->connections);
		}
		if (!m->donors->n_donors && first < total) { /* the table shrank meanwhile? */
			gvm__control__free_unpacked(m, NULL);
			break;
		}
		first += (unsigned)m->donors->n_donors;
		gvm__control__free_unpacked(m, NULL);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key-file", required_argument, NULL, 'k' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_file = GVM_DEFAULT_KEY_FILE, *socket_path = GVM_DEFAULT_SOCKET;
	const char *cmd, *ns = NULL;
	char host[GVM_HOST_ID_MAX_BYTES + 1];
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
		case 's':
			socket_path = optarg;
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
	if (!strcmp(cmd, "stats")) {
		if (optind != argc) {
			fprintf(stderr, "gvmctl stats: takes no arguments\nTry 'gvmctl --help'.\n");
			return 2;
		}
		return broker_stats(socket_path);
	}
	if (!strcmp(cmd, "donors")) {
		if (optind != argc) {
			fprintf(stderr, "gvmctl donors: takes no arguments\nTry 'gvmctl --help'.\n");
			return 2;
		}
		return broker_donors(socket_path);
	}
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
	/* A donor shows a namespace to its own host only: speak for the host
	 * the name starts with. */
	if (ns && gvm_ns_host(ns, host)) {
		fprintf(stderr, "gvmctl: '%s' is not a namespace name (HOST.INCARNATION.REGION)\n", ns);
		return 2;
	}
	err = gvm_dconn_open(&c, argv[optind], &key, ns ? host : NULL, why, sizeof(why));
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
