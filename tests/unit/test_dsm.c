/* test_dsm.c: the giantvm-kvm coherence core (giantvm-kvm/core/). The sparse
 * copyset against a reference bitmap through its inline, array and bitmap
 * forms at 10240 ids; the simulator at 16, 1024 and 10240 nodes with the
 * Ivy invariants checked after every step, several seeds; a deliberately
 * skipped invalidation caught; and the invalidations a write really sends
 * to its sharers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dsm_sim.h"

static int collect(void *arg, dsm_node_t id)
{
	uint8_t *seen = arg;

	seen[id]++;
	return 0;
}

static void test_copyset_matches_a_bitmap_at_10240_ids(void **state)
{
	static uint8_t model[DSM_NODES_MAX], seen[DSM_NODES_MAX];
	struct dsm_copyset cs;
	uint64_t rng = 12345;
	unsigned count = 0, kinds_seen = 0;

	(void)state;
	dsm_copyset_init(&cs, DSM_NODES_MAX);
	for (int round = 0; round < 60000; round++) {
		dsm_node_t id;
		bool add;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		/* Grow through every form, then shrink, then grow again. */
		add = (round / 20000) % 2 == 0 ? rng % 8 != 0 : rng % 8 == 0;
		id = (dsm_node_t)(rng >> 20) % DSM_NODES_MAX;
		if (add) {
			assert_int_equal(dsm_copyset_add(&cs, id), 0);
			count += !model[id];
			model[id] = 1;
		} else {
			dsm_copyset_del(&cs, id);
			count -= model[id];
			model[id] = 0;
		}
		kinds_seen |= 1u << cs.kind;
		assert_int_equal(cs.count, count);
		assert_int_equal(dsm_copyset_has(&cs, id), model[id]);
	}
	assert_int_equal(kinds_seen, 7); /* inline, array and bitmap */
	memset(seen, 0, sizeof(seen));
	dsm_copyset_for_each(&cs, collect, seen);
	assert_memory_equal(seen, model, sizeof(model));
	assert_int_equal(dsm_copyset_add(&cs, DSM_NODES_MAX), -EINVAL);
	dsm_copyset_free(&cs);
	assert_int_equal(cs.count, 0);

	/* A few ids stay inline: no heap at all. */
	for (dsm_node_t id = 10000; id < 10000 + DSM_COPYSET_INLINE; id++)
		assert_int_equal(dsm_copyset_add(&cs, id), 0);
	assert_int_equal(cs.kind, DSM_CS_INLINE);
	assert_int_equal(dsm_copyset_heap_bytes(&cs), 0);
	dsm_copyset_free(&cs);
}

static void run_ok(struct dsm_sim_cfg cfg)
{
	struct dsm_sim_result res;
	int err = dsm_sim_run(&cfg, &res);

	if (err)
		fprintf(stderr, "nodes %u seed %llu: %s\n", cfg.nodes, (unsigned long long)cfg.seed,
			res.why);
	assert_int_equal(err, 0);
	assert_int_equal(res.violation, 0);
	assert_true(res.faults > cfg.steps / 20);
	assert_true(res.writes > 0 && res.reads > 0);
	assert_true(res.checks >= res.steps);
}

static void test_invariants_hold_at_16_nodes_over_seeds(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 8; seed++)
		run_ok((struct dsm_sim_cfg){ .nodes = 16, .pages = 32, .steps = 40000, .seed = seed,
					     .write_pct = 35, .max_txns = 24 });
}

static void test_invariants_hold_at_1024_nodes(void **state)
{
	(void)state;
	run_ok((struct dsm_sim_cfg){ .nodes = 1024, .pages = 64, .steps = 30000, .seed = 7,
				     .write_pct = 30, .max_txns = 32, .burst_readers = 300 });
}

static void test_invariants_hold_at_10240_nodes(void **state)
{
	struct dsm_sim_cfg cfg = { .nodes = DSM_NODES_MAX, .pages = 16, .steps = 6000,
				   .seed = 3, .write_pct = 30, .max_txns = 32,
				   .active_nodes = 512, .burst_readers = 1500 };
	struct dsm_sim_result res;

	(void)state;
	assert_int_equal(dsm_sim_run(&cfg, &res), 0);
	assert_true(res.max_fanout > 500); /* a write really invalidated a crowd */
}

/* The simulator catches a writer that skips one sharer. */
static void test_a_skipped_invalidation_is_caught(void **state)
{
	struct dsm_sim_cfg cfg = { .nodes = 16, .pages = 8, .steps = 40000, .seed = 1,
				   .write_pct = 40, .max_txns = 8,
				   .bugs = DSM_BUG_SKIP_ONE_INVALIDATION };
	struct dsm_sim_result res;

	(void)state;
	assert_int_equal(dsm_sim_run(&cfg, &res), -EDOM);
	assert_int_equal(res.violation, 1);
	assert_non_null(strstr(res.why, "page "));
	fprintf(stderr, "caught: %s\n", res.why);
}

/* One write after K readers: one invalidation and one ack per copy. */
static void test_fanout_sends_one_invalidation_per_copy(void **state)
{
	const uint32_t ks[] = { 64, 1024 };

	(void)state;
	for (unsigned i = 0; i < 2; i++) {
		struct dsm_fanout f;

		assert_int_equal(dsm_sim_fanout(2048, ks[i], 20000, 1000, &f), 0);
		/* The K readers and node 0, which kept a copy when it handed the
		 * page to the first reader, less the last reader (the owner):
		 * K copies in all. */
		assert_int_equal(f.messages, 2 * ks[i]);
		assert_true(f.parallel_ns * 10 < f.serial_ns);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copyset_matches_a_bitmap_at_10240_ids),
		cmocka_unit_test(test_invariants_hold_at_16_nodes_over_seeds),
		cmocka_unit_test(test_invariants_hold_at_1024_nodes),
		cmocka_unit_test(test_invariants_hold_at_10240_nodes),
		cmocka_unit_test(test_a_skipped_invalidation_is_caught),
		cmocka_unit_test(test_fanout_sends_one_invalidation_per_copy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
