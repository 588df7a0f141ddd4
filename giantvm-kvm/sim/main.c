/* main.c: gvm-dsm-sim, the user-space driver of the coherence core's
 * simulator (core/dsm_sim.c): random workloads on N nodes with the Ivy
 * invariants checked after every step, the invalidation fan-out cost, and
 * the per-page metadata against the seeds' bitmap design. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsm_sim.h"
#include "seed_layout.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gvm-dsm-sim [run|fanout|metadata] [OPTIONS]\n"
		"Simulates the giantvm-kvm coherence core on N nodes in one process.\n"
		"\n"
		"  run (default)      random reads and writes, invariants after every step\n"
		"    --nodes N          nodes (2..%u, default 64)\n"
		"    --pages P          pages (default 64)\n"
		"    --steps S          faults started + messages delivered (default 200000)\n"
		"    --seed X           random seed (default 1): same seed, same run\n"
		"    --write-pct W      share of writes (default 30)\n"
		"    --active A         nodes that fault (default: all)\n"
		"    --max-txns T       transactions in flight (default 32)\n"
		"    --burst R          now and then R nodes read one page, then one writes\n"
		"    --inject BUG       skip-invalidation: the writer skips one sharer\n"
		"  fanout             one write to a page K nodes share, for K in 64 1024 10238\n"
		"    --latency-us L     one-way latency of the model (default 20)\n"
		"    --msg-us M         CPU per message of the model (default 1)\n"
		"  metadata           per-page state per node: ours vs the seeds' bitmap\n"
		"Exit status: 0 when every invariant held, 1 on a violation, 2 on bad usage.\n",
		DSM_NODES_MAX);
}

static int run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "nodes", 1, NULL, 'n' },   { "pages", 1, NULL, 'p' },    { "steps", 1, NULL, 's' },
		{ "seed", 1, NULL, 'x' },    { "write-pct", 1, NULL, 'w' }, { "active", 1, NULL, 'a' },
		{ "max-txns", 1, NULL, 't' }, { "burst", 1, NULL, 'b' },    { "inject", 1, NULL, 'i' },
		{ "help", 0, NULL, 'h' },    { NULL, 0, NULL, 0 },
	};
	struct dsm_sim_cfg cfg = { .nodes = 64, .pages = 64, .steps = 200000, .seed = 1,
				   .write_pct = 30, .max_txns = 32 };
	struct dsm_sim_result res;
	int opt, err;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		unsigned long long v = optarg ? strtoull(optarg, NULL, 10) : 0;

		switch (opt) {
		case 'n':
			if (v < 2 || v > DSM_NODES_MAX) {
				fprintf(stderr, "gvm-dsm-sim: --nodes %s: want 2..%u\n", optarg,
					DSM_NODES_MAX);
				return 2;
			}
			cfg.nodes = (u16)v;
			break;
		case 'p': cfg.pages = v ? v : 1; break;
		case 's': cfg.steps = v; break;
		case 'x': cfg.seed = v; break;
		case 'w': cfg.write_pct = v > 100 ? 100 : (u32)v; break;
		case 'a': cfg.active_nodes = (u32)v; break;
		case 't': cfg.max_txns = v ? (u32)v : 1; break;
		case 'b': cfg.burst_readers = (u32)v; break;
		case 'i':
			if (strcmp(optarg, "skip-invalidation")) {
				fprintf(stderr, "gvm-dsm-sim: --inject %s: only skip-invalidation\n",
					optarg);
				return 2;
			}
			cfg.bugs |= DSM_BUG_SKIP_ONE_INVALIDATION;
			break;
		case 'h': usage(stdout); return 0;
		default: fprintf(stderr, "Try 'gvm-dsm-sim --help'.\n"); return 2;
		}
	}
	err = dsm_sim_run(&cfg, &res);
	printf("nodes %u pages %" PRIu64 " seed %" PRIu64 ": %" PRIu64 " steps, %" PRIu64
	       " faults (%" PRIu64 " writes), %" PRIu64 " messages, %" PRIu64
	       " page checks, largest fan-out %" PRIu64 "\n",
	       cfg.nodes, cfg.pages, cfg.seed, res.steps, res.faults, res.writes, res.messages,
	       res.checks, res.max_fanout);
	printf("metadata: %" PRIu64 " bytes of page state + %" PRIu64 " of copysets (%.1f per page per node)\n",
	       res.page_bytes, res.copyset_bytes,
	       (double)(res.page_bytes + res.copyset_bytes) / ((double)cfg.nodes * cfg.pages));
	if (err == -EDOM) {
		printf("VIOLATION: %s\n", res.why);
		return 1;
	}
	if (err) {
		fprintf(stderr, "gvm-dsm-sim: %s\n", strerror(-err));
		return 1;
	}
	printf("invariants held after every step\n");
	return 0;
}

static int fanout(int argc, char **argv)
{
	static const struct option opts[] = { { "latency-us", 1, NULL, 'l' },
					      { "msg-us", 1, NULL, 'm' },
					      { NULL, 0, NULL, 0 } };
	unsigned long long lat = 20, msg = 1;
	const u32 sharers[] = { 64, 1024, DSM_NODES_MAX - 2 };
	int opt;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'l')
			lat = strtoull(optarg, NULL, 10);
		else if (opt == 'm')
			msg = strtoull(optarg, NULL, 10);
		else
			return 2;
	}
	printf("%-8s %-10s %-14s %-14s %s\n", "sharers", "messages", "serial_us", "parallel_us",
	       "speedup");
	for (unsigned i = 0; i < 3; i++) {
		struct dsm_fanout f;
		int err = dsm_sim_fanout(DSM_NODES_MAX, sharers[i], lat * 1000, msg * 1000, &f);

		if (err) {
			fprintf(stderr, "gvm-dsm-sim: fanout %u: %s\n", sharers[i],
				err == -EDOM ? "invariant violated" : strerror(-err));
			return 1;
		}
		printf("%-8u %-10" PRIu64 " %-14.1f %-14.1f %.1fx\n", f.sharers, f.messages,
		       f.serial_ns / 1000.0, f.parallel_ns / 1000.0,
		       (double)f.serial_ns / (double)f.parallel_ns);
		printf("fanout_%u_serial_us %.1f us\nfanout_%u_parallel_us %.1f us\n", f.sharers,
		       f.serial_ns / 1000.0, f.sharers, f.parallel_ns / 1000.0);
	}
	return 0;
}

static int metadata(void)
{
	const unsigned counts[] = { 16, 1024, DSM_NODES_MAX };
	const double pages_16g = 16.0 * 1024 * 1024 * 1024 / 4096;

	printf("per page, per node (bytes); 16 GiB guest = %.0f pages\n", pages_16g);
	printf("%-7s %-22s %-24s %-20s %s\n", "nodes", "giantvm (16 ids)", "seeds (bitmap)",
	       "ours (non-owner)", "ours (owner, all share)");
	for (unsigned i = 0; i < 3; i++) {
		unsigned n = counts[i];
		/* The seeds' bitmap is sized by DSM_MAX_INSTANCES, not by n. */
		size_t seeds = sizeof(struct seed_page_info_seeds10240);
		size_t ours = sizeof(struct dsm_page);
		size_t bitmap = ((n + 63) / 64) * 8, array = (size_t)n * 2;
		size_t owner_all = ours + sizeof(struct dsm_copyset) + (array < bitmap ? array : bitmap);

		printf("%-7u %-22zu %-24zu %-20zu %zu\n", n, sizeof(struct seed_page_info_giantvm16),
		       seeds, ours, owner_all);
		printf("metadata_%u_seeds_bytes_per_page %zu B\nmetadata_%u_ours_bytes_per_page %zu B\n",
		       n, seeds, n, ours);
		printf("metadata_%u_seeds_16g_guest_mib %.0f MiB\nmetadata_%u_ours_16g_guest_mib %.0f MiB\n",
		       n, seeds * pages_16g / 1048576, n, ours * pages_16g / 1048576);
	}
	printf("seeds' dsm_response on the stack: %zu bytes\n",
	       sizeof(struct seed_dsm_response_seeds10240));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "fanout"))
		return fanout(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "metadata"))
		return metadata();
	if (argc > 1 && !strcmp(argv[1], "run"))
		return run(argc - 1, argv + 1);
	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	return run(argc, argv);
}
