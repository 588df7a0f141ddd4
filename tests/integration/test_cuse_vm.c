/* test_cuse_vm.c: /dev/gvmmem for real. This host's kernel has no CUSE, so
 * the test boots Debian's kernel under qemu-system-x86_64 (TCG) with the
 * initramfs of tests/vm/ (busybox, fuse.ko and cuse.ko, the release
 * build's gvm-broker, gvm-memserver and cuse_client). Inside, the broker
 * runs sandboxed with the device; an unprivileged user in group gvm attaches
 * a 64 MiB region through the device under a 16 MiB budget and checks
 * every page, reads the text status and the STATS ioctl; a user outside the
 * group is refused; tokens work once and only for their own process. The
 * same guest loads giantvm-kvm's coherence core as a module (self-test). The
 * guest prints GVM-CUSE markers on its serial console, which every test
 * here reads from the one boot. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "procs.h"


static char serial_log[512];

static bool has(const char *marker)
{
	return gvmt_file_count(serial_log, marker) > 0;
}

static void expect(const char *marker)
{
	if (!has(marker)) {
		char cmd[600];

		fprintf(stderr, "guest console lacks \"%s\"; its GVM lines:\n", marker);
		snprintf(cmd, sizeof(cmd), "grep -a GVM- %s >&2", serial_log);
		if (system(cmd) != 0)
			fprintf(stderr, "(none)\n");
	}
	assert_true(has(marker));
}

static void test_guest_loads_cuse_and_runs_the_sandboxed_broker(void **state)
{
	(void)state;
	expect("GVM-CUSE modules loaded");
	expect("GVM-CUSE userfaultfd present");
	expect("GVM-CUSE device present");
	expect("GVM-CUSE broker sandboxed");
	expect("seccomp allowlist loaded");
	expect("/dev/gvmmem ready");
}

/* Pages written through a region attached via the device come back intact
 * after the 16 MiB budget sent most of them to the donors; the STATS ioctl
 * and read() report the broker's counters. */
static void test_unprivileged_user_attaches_through_device(void **state)
{
	(void)state;
	/* Another user flooding GVMMEM_IOC_HELLO right before: its quota,
	 * and nobody else notices. */
	expect("GVM-CUSE flood OK 8 tokens, then EDQUOT");
	assert_false(has("GVM-CUSE flood FAIL"));
	expect("GVM-CUSE version ioctl=1 protocol=1 page=4096 extent=32");
	expect("GVM-CUSE status OK");
	expect("GVM-CUSE attach OK pages=16384 bad=0");
	assert_false(has("GVM-CUSE attach FAIL"));
}

static void test_user_outside_group_is_refused(void **state)
{
	(void)state;
	expect("GVM-CUSE denied OK open and connect: Permission denied");
	assert_false(has("GVM-CUSE denied FAIL"));
}

static void test_token_once_own_process_and_required(void **state)
{
	(void)state;
	expect("GVM-CUSE token second use: refused: unknown or already used token");
	expect("GVM-CUSE token other pid: refused: token issued to pid");
	expect("GVM-CUSE token no token: refused: this broker serves /dev/gvmmem");
	expect("GVM-CUSE token OK once, own pid only, required");
	assert_false(has("GVM-CUSE token FAIL"));
}

/* giantvm-kvm's coherence core, built as a module against Debian's
 * headers for this kernel, passes its self-test at insmod. */
static void test_giantvm_core_module_selftest_passes(void **state)
{
	(void)state;
	expect("GVM-KMOD loaded");
	expect("GVM-KMOD giantvm-dsm: selftest OK copyset 10240 ids");
	assert_false(has("selftest FAIL"));
}

static void test_device_disappears_when_broker_exits(void **state)
{
	(void)state;
	expect("GVM-CUSE device gone after exit");
	expect("stopped cleanly");
	expect("GVM-CUSE done");
}

static int setup(void **state)
{
	const char *gd = getenv("GVM_GUEST_DIR");
	char kernel[600], initrd[600], qemu_log[600];
	time_t t0 = time(NULL);
	int rc;

	(void)state;
	if (!gd || !*gd)
		gd = "build/guest";
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", gd);
	snprintf(initrd, sizeof(initrd), "%s/cuse-initramfs.cpio.gz", gd);
	if (access(kernel, R_OK) || access(initrd, R_OK)) {
		fprintf(stderr, "no %s or %s: `make guest` in the release tree builds them\n", kernel,
			initrd);
		return -1;
	}
	gvmt_path(serial_log, sizeof(serial_log), "serial.log");
	snprintf(qemu_log, sizeof(qemu_log), "%s", serial_log);
	rc = gvmt_run(qemu_log,
		      (const char *[]){ "/usr/bin/timeout", "-k", "5", "240",
					"qemu-system-x86_64", "-accel", "tcg", "-m", "512M",
					"-nographic", "-no-reboot", "-nodefaults", "-serial",
					"stdio", "-kernel", kernel, "-initrd", initrd, "-append",
					"console=ttyS0 panic=-1 quiet", NULL });
	fprintf(stderr, "guest ran %ld s (exit %d)\n", (long)(time(NULL) - t0), rc);
	return 0; /* each test reads what the guest printed */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guest_loads_cuse_and_runs_the_sandboxed_broker),
		cmocka_unit_test(test_unprivileged_user_attaches_through_device),
		cmocka_unit_test(test_user_outside_group_is_refused),
		cmocka_unit_test(test_token_once_own_process_and_required),
		cmocka_unit_test(test_device_disappears_when_broker_exits),
		cmocka_unit_test(test_giantvm_core_module_selftest_passes),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
