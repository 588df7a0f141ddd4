// SPDX-License-Identifier: GPL-2.0
/* selftest.c: giantvm_dsm_selftest.ko, the coherence core (../core/) built
 * in the kernel, run once at load: the copyset through all its forms at
 * 10240 ids, then a small simulation of the Ivy protocol with its
 * invariants checked after every step. It prints
 *   giantvm-dsm: selftest OK ...    or    giantvm-dsm: selftest FAIL ...
 * and stays loaded either way (rmmod removes it). */
#include <linux/module.h>

#include "dsm_sim.h"

static int copyset_selftest(void)
{
	struct dsm_copyset cs;
	unsigned long bit;
	unsigned int n = 0;
	int err = 0;
	u32 i;

	dsm_copyset_init(&cs, DSM_NODES_MAX);
	for (i = 0; i < DSM_NODES_MAX && !err; i += 3)
		err = dsm_copyset_add(&cs, (dsm_node_t)i);
	if (err || cs.kind != DSM_CS_BITMAP || cs.count != (DSM_NODES_MAX + 2) / 3)
		goto fail;
	for (bit = 0; bit < DSM_NODES_MAX; bit++)
		if (dsm_copyset_has(&cs, (dsm_node_t)bit) != (bit % 3 == 0))
			goto fail;
	for (i = 0; i < DSM_NODES_MAX; i += 6)
		dsm_copyset_del(&cs, (dsm_node_t)i);
	for (i = 0; i < DSM_NODES_MAX; i++)
		n += dsm_copyset_has(&cs, (dsm_node_t)i);
	if (n != cs.count)
		goto fail;
	dsm_copyset_free(&cs);
	return 0;
fail:
	dsm_copyset_free(&cs);
	return -EINVAL;
}

static int __init giantvm_dsm_selftest_init(void)
{
	struct dsm_sim_cfg cfg = {
		.nodes = 64, .pages = 16, .steps = 20000, .seed = 42,
		.write_pct = 30, .max_txns = 16, .burst_readers = 40,
	};
	struct dsm_sim_result *res;
	int err;

	if (copyset_selftest()) {
		pr_err("giantvm-dsm: selftest FAIL copyset at %u ids\n", DSM_NODES_MAX);
		return 0;
	}
	res = kvzalloc(sizeof(*res), GFP_KERNEL);
	if (!res)
		return -ENOMEM;
	err = dsm_sim_run(&cfg, res);
	if (err)
		pr_err("giantvm-dsm: selftest FAIL simulation: %s (error %d)\n", res->why, err);
	else
		pr_info("giantvm-dsm: selftest OK copyset %u ids; %u nodes %llu steps %llu messages, invariants held, struct dsm_page %zu bytes\n",
			DSM_NODES_MAX, cfg.nodes, res->steps, res->messages,
			sizeof(struct dsm_page));
	kvfree(res);
	return 0;
}

static void __exit giantvm_dsm_selftest_exit(void)
{
}

module_init(giantvm_dsm_selftest_init);
module_exit(giantvm_dsm_selftest_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gvmmem giantvm-kvm coherence core self-test");
