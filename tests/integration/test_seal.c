/* test_seal.c: guest pages sealed on the donors (broker/seal.h), with real
 * gvm-memservers, a real broker under a budget and unprivileged libgvmmem
 * VMs (vmchild.h) that write more than the budget and read it back. What a
 * donor stores of a sealed VM holds none of its pages in clear (its
 * backing file is scanned for every page the VM wrote), while a broker
 * run with --page-crypto none does leave them there (so the scan can see
 * them); each cipher opens every page it sealed; a VM's key and versions
 * live in a 0600 file of the state directory, as large as its versions,
 * and go when it detaches; a sealed VM reads every page back across a
 * broker stopped and one killed, and keeps its cipher whatever the next
 * broker's --page-crypto says. Donors that lie about sealed pages are
 * test_hostile_donor.c's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster.h"
#include "gvm_proto.h"
#include "pattern.h"
#include "procs.h"
#include "vmchild.h"

#define MIB (1024u * 1024u)
#define VM_MIB 48u     /* three times the budget: two thirds on the donors */
#define BUDGET "16M"
#define VM_PAGES (VM_MIB * MIB / GVM_PAGE_SIZE)
#define SEED_FIRST 1u  /* vmchild.c's seed for its first write */
#define SEAL_HDR_BYTES 4096u

static char key_path[512];
static struct gvmt_vm_user user;
static struct gvmt_cluster cl;

/* ---- scanning a backing file ---- */

static uint64_t page_hash(const uint8_t *p)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < GVM_PAGE_SIZE; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		h = gvm_pattern_mix64(h ^ w);
	}
	return h;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* 4 KiB blocks of the file at path that are one of the non-zero pages
 * vmchild's first write put in a VM of VM_PAGES pages. */
static uint64_t plaintext_pages_in(const char *path)
{
	uint64_t *hashes = malloc(VM_PAGES * sizeof(*hashes)), found = 0;
	static uint8_t page[GVM_PAGE_SIZE];
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_non_null(hashes);
	assert_true(fd >= 0);
	for (size_t p = 0; p < VM_PAGES; p++) {
		if (p % GVMT_VM_ZERO_EVERY == GVMT_VM_ZERO_EVERY - 1)
			continue;
		gvm_pattern_fill_page(page, SEED_FIRST, p, GVMT_VM_ZERO_EVERY);
		hashes[n++] = page_hash(page);
	}
	qsort(hashes, n, sizeof(*hashes), cmp_u64);
	while (read(fd, page, sizeof(page)) == (ssize_t)sizeof(page)) {
		uint64_t h = page_hash(page);

		found += bsearch(&h, hashes, n, sizeof(*hashes), cmp_u64) != NULL;
	}
	close(fd);
	free(hashes);
	return found;
}

/* ---- the state directory ---- */

/* The page-seal files in the state directory of the broker on sock: how
 * many, the last one's stat and path (if last is not NULL), and the
 * folder's mode. */
static unsigned seal_files_at(const char *sock, struct stat *st, mode_t *dir_mode, char *last,
			      size_t n)
{
	char dir[600], pages[700];
	struct dirent *de;
	unsigned count = 0;
	DIR *d;

	gvmt_broker_state_dir(sock, dir, sizeof(dir));
	snprintf(pages, sizeof(pages), "%s/pages", dir);
	if (stat(pages, st) || !(d = opendir(pages)))
		return 0;
	*dir_mode = st->st_mode & 07777;
	while ((de = readdir(d))) {
		char file[1300];

		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", pages, de->d_name);
		assert_int_equal(stat(file, st), 0);
		if (last)
			snprintf(last, n, "%s", file);
		count++;
	}
	closedir(d);
	return count;
}

static unsigned seal_files(const char *sock, struct stat *st, mode_t *dir_mode)
{
	return seal_files_at(sock, st, dir_mode, NULL, 0);
}

static bool log_has(const char *log, const char *text)
{
	return gvmt_file_count(log, text) > 0;
}

/* ---- the tests ---- */

/* A donor with a backing file under a broker with extra arguments; a VM
 * writes three times the budget and reads it back: the count of its pages
 * found in clear in the backing file while it is still attached. */
static uint64_t pages_in_clear(const char *name, const char *const *extra, bool sealed)
{
	struct gvmt_vm vm;
	char backing[512], sock[512];
	const char *args[8] = { "--budget", BUDGET, NULL };
	struct gvmt_proc donor = { 0 }, broker = { 0 };
	uint64_t found;
	struct stat st;
	mode_t dir_mode = 0;

	for (unsigned i = 0; extra && extra[i]; i++)
		args[2 + i] = extra[i];
	snprintf(sock, sizeof(sock), "%s/%s.sock", gvmt_dir(), name);
	snprintf(backing, sizeof(backing), "%s/%s.store", gvmt_dir(), name);
	assert_true(gvmt_memserver_start(&donor, key_path,
					 (const char *[]){ "--backing", backing, "--capacity", "256M",
							   NULL }));
	assert_true(gvmt_broker_start(&broker, key_path, sock,
				      (const char *[]){ donor.addr, NULL }, args));
	gvmt_vm_start(&vm, sock, name, (size_t)VM_MIB * MIB, &user);
	gvmt_vm_write(&vm, 0, VM_PAGES);
	gvmt_vm_verify(&vm, "after three times the budget went through the donor");
	assert_true(gvmt_broker_stat(sock, "writebacks") > 0);
	assert_true(gvmt_broker_stat(sock, "remote_reads") > 0);
	assert_int_equal(gvmt_broker_stat(sock, "integrity_failures"), 0);
	assert_int_equal(gvmt_broker_stat(sock, "sealed_vms"), sealed ? 1 : 0);
	found = plaintext_pages_in(backing);

	/* The VM's key and versions: one 0600 file in a 0700 folder, a
	 * header page and 4 bytes per page of guest memory. */
	if (sealed) {
		assert_int_equal(seal_files(sock, &st, &dir_mode), 1);
		assert_int_equal(dir_mode, 0700);
		assert_int_equal(st.st_mode & 07777, 0600);
		assert_int_equal(st.st_size, SEAL_HDR_BYTES + VM_PAGES * 4);
		printf("sealed VM of %u MiB: state file %lld bytes (%llu KiB per GiB of guest "
		       "memory), %lld bytes on disk\n",
		       VM_MIB, (long long)st.st_size,
		       (unsigned long long)((uint64_t)(st.st_size - SEAL_HDR_BYTES) * 1024 / VM_MIB / 1024),
		       (long long)st.st_blocks * 512);
	} else {
		assert_int_equal(seal_files(sock, &st, &dir_mode), 0);
	}
	gvmt_vm_quit(&vm);
	/* detached: its pages dropped, and its file with them */
	assert_true(gvmt_broker_wait_stat(sock, "vms", 0, 10000));
	assert_int_equal(seal_files(sock, &st, &dir_mode), 0);
	assert_int_equal(gvmt_proc_stop(&broker, SIGTERM), 0);
	assert_int_equal(gvmt_proc_stop(&donor, SIGTERM), 0);
	return found;
}

static void test_a_donor_stores_no_page_of_a_sealed_vm_in_clear(void **state)
{
	uint64_t clear, sealed;

	(void)state;
	/* Without sealing the scan finds the pages the donor holds... */
	clear = pages_in_clear("plain", (const char *[]){ "--page-crypto", "none", NULL }, false);
	printf("--page-crypto none: %llu of the VM's pages in clear in the backing file\n",
	       (unsigned long long)clear);
	assert_true(clear > VM_PAGES / 3);
	/* ... and with it (the default) none. */
	sealed = pages_in_clear("sealed", NULL, true);
	assert_int_equal(sealed, 0);
}

static void test_xchacha20_poly1305_seals_and_opens_every_page(void **state)
{
	(void)state;
	assert_int_equal(pages_in_clear("xchacha",
					(const char *[]){ "--page-crypto", "xchacha20-poly1305",
							  NULL },
					true),
			 0);
}

/* The broker's log says which crypto is in force, and a bad name is a
 * usage error. */
static void test_the_broker_says_which_page_crypto_is_in_force(void **state)
{
	char sock[512];
	struct gvmt_proc broker = { 0 }, donor = { 0 };
	char bin[512], log[600];

	(void)state;
	snprintf(sock, sizeof(sock), "%s/say.sock", gvmt_dir());
	assert_true(gvmt_memserver_start(&donor, key_path, NULL));
	assert_true(gvmt_broker_start(&broker, key_path, sock, (const char *[]){ donor.addr, NULL },
				      NULL));
	assert_true(log_has(broker.log, "page crypto: aes-256-gcm (AES-NI)"));
	assert_int_equal(gvmt_proc_stop(&broker, SIGTERM), 0);
	snprintf(log, sizeof(log), "%s/page-crypto-cli.log", gvmt_dir());
	assert_int_equal(gvmt_run(log, (const char *[]){ gvmt_bin("gvm-broker", bin, sizeof(bin)),
							 "--page-crypto", "rot13", "--donor",
							 donor.addr, NULL }),
			 2);
	assert_true(log_has(log, "want aes-256-gcm, xchacha20-poly1305 or none"));
	assert_int_equal(gvmt_proc_stop(&donor, SIGTERM), 0);
}

/* A sealed VM across a broker stopped (SIGTERM) and one killed (SIGKILL),
 * each time pressed for room again: every page reads back, none fails
 * authentication, and it stays sealed with its own cipher though the next
 * brokers run with --page-crypto none and xchacha20-poly1305. */
static void test_sealed_pages_survive_broker_restarts(void **state)
{
	static const char *const next_args[][4] = {
		{ "--budget", BUDGET, "--page-crypto", "none" },
		{ "--budget", BUDGET, "--page-crypto", "xchacha20-poly1305" },
	};
	const int sigs[] = { SIGTERM, SIGKILL };
	struct gvmt_vm vm;
	struct stat st;
	mode_t dir_mode;

	(void)state;
	gvmt_cluster_start(&cl, "restart", key_path, 2,
			   (const char *[]){ "--budget", BUDGET, "--replicas", "2", NULL });
	gvmt_vm_start(&vm, cl.sock, "sealed-restart", (size_t)VM_MIB * MIB, &user);
	gvmt_vm_write(&vm, 0, VM_PAGES);
	gvmt_vm_verify(&vm, "before the restarts");
	for (unsigned i = 0; i < 2; i++) {
		const char *args[5] = { next_args[i][0], next_args[i][1], next_args[i][2],
					next_args[i][3], NULL };

		assert_int_equal(gvmt_proc_stop(&cl.broker, sigs[i]),
				 sigs[i] == SIGKILL ? 128 + SIGKILL : 0);
		assert_int_equal(seal_files(cl.sock, &st, &dir_mode), 1); /* kept for the next */
		assert_true(gvmt_broker_start(&cl.broker, key_path, cl.sock,
					      (const char *[]){ cl.donor[0].addr, cl.donor[1].addr,
								NULL },
					      args));
		assert_true(gvmt_broker_wait_stat(cl.sock, "vms", 1, 20000));
		assert_int_equal(gvmt_broker_stat(cl.sock, "sealed_vms"), 1);
		gvmt_vm_verify(&vm, i ? "after a broker was killed" : "after a broker stopped");
		/* half of it rewritten and read back: sealed anew, and pressed out */
		gvmt_vm_write(&vm, i * VM_PAGES / 2, VM_PAGES / 2);
		gvmt_vm_verify(&vm, "after a rewrite under the new broker");
		assert_true(gvmt_broker_stat(cl.sock, "remote_reads") > 0);
		assert_int_equal(gvmt_broker_stat(cl.sock, "integrity_failures"), 0);
	}
	assert_true(log_has(cl.broker.log, "its pages stay sealed with aes-256-gcm"));
	gvmt_vm_quit(&vm);
	assert_true(gvmt_broker_wait_stat(cl.sock, "vms", 0, 10000));
	assert_int_equal(seal_files(cl.sock, &st, &dir_mode), 0);
	gvmt_cluster_stop_clean(&cl);
}

/* A VM attached unsealed stays so under a broker that seals. */
static void test_a_vm_attached_unsealed_stays_unsealed_after_a_restart(void **state)
{
	struct gvmt_vm vm;
	struct stat st;
	mode_t dir_mode;

	(void)state;
	gvmt_cluster_start(&cl, "unsealed", key_path, 1,
			   (const char *[]){ "--budget", BUDGET, "--page-crypto", "none", NULL });
	gvmt_vm_start(&vm, cl.sock, "unsealed", (size_t)VM_MIB * MIB, &user);
	gvmt_vm_write(&vm, 0, VM_PAGES);
	assert_int_equal(gvmt_proc_stop(&cl.broker, SIGTERM), 0);
	assert_true(gvmt_broker_start(&cl.broker, key_path, cl.sock,
				      (const char *[]){ cl.donor[0].addr, NULL },
				      (const char *[]){ "--budget", BUDGET, NULL }));
	assert_true(gvmt_broker_wait_stat(cl.sock, "vms", 1, 20000));
	assert_int_equal(gvmt_broker_stat(cl.sock, "sealed_vms"), 0);
	gvmt_vm_verify(&vm, "re-attached unsealed to a sealing broker");
	assert_true(log_has(cl.broker.log, "its pages stay unsealed"));
	assert_int_equal(seal_files(cl.sock, &st, &dir_mode), 0);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop_clean(&cl);
}

/* A page sealed 2^31 - 1 times (its versions used up: one more would
 * repeat a nonce) is never sealed again: once written it stays in memory,
 * and reads right, while the rest of the VM goes on being evicted. The
 * test sets the version words of 64 pages, before the VM writes anything,
 * to one short of the last, in the VM's own file. */
static void test_a_page_whose_versions_are_used_up_stays_in_memory(void **state)
{
	const uint32_t ver_max = 0x7fffffffu;
	const uint64_t tired = 64;
	char path[1300];
	struct gvmt_vm vm;
	uint64_t writebacks;
	struct stat st;
	mode_t dir_mode;
	uint32_t *ver;
	uint8_t *map;
	int fd;

	(void)state;
	gvmt_cluster_start(&cl, "tired", key_path, 1, (const char *[]){ "--budget", BUDGET, NULL });
	gvmt_vm_start(&vm, cl.sock, "tired", (size_t)VM_MIB * MIB, &user);
	assert_true(gvmt_broker_wait_stat(cl.sock, "sealed_vms", 1, 20000)); /* attached */
	assert_int_equal(seal_files_at(cl.sock, &st, &dir_mode, path, sizeof(path)), 1);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	ver = (uint32_t *)(map + SEAL_HDR_BYTES); /* region 0's words */
	for (uint64_t p = 0; p < tired; p++)
		ver[p] = ver_max - 1;
	/* Written and pressed out: sealed for the last time, and read back. */
	gvmt_vm_write(&vm, 0, VM_PAGES);
	gvmt_vm_verify(&vm, "after the last seal");
	for (uint64_t p = 0; p < tired; p++)
		if (p % GVMT_VM_ZERO_EVERY != GVMT_VM_ZERO_EVERY - 1)
			assert_int_equal(ver[p], ver_max);
	/* Written again, they cannot go: the rest is evicted around them. */
	gvmt_vm_write(&vm, 0, tired);
	writebacks = gvmt_broker_stat(cl.sock, "writebacks");
	gvmt_vm_write(&vm, tired, VM_PAGES - tired);
	gvmt_vm_verify(&vm, "with pages whose versions are used up");
	assert_true(gvmt_broker_stat(cl.sock, "writebacks") > writebacks);
	for (uint64_t p = 0; p < tired; p++)
		assert_int_equal(ver[p] & ver_max, p % GVMT_VM_ZERO_EVERY == GVMT_VM_ZERO_EVERY - 1 ?
							   ver_max - 1 : ver_max);
	assert_int_equal(gvmt_broker_stat(cl.sock, "integrity_failures"), 0);
	munmap(map, (size_t)st.st_size);
	close(fd);
	gvmt_vm_quit(&vm);
	gvmt_cluster_stop_clean(&cl);
}

/* With --install continue sealed pages are opened from a buffer into the
 * VM's memfd and mapped there: every page right, none in clear on the
 * donor. */
static void test_sealed_pages_go_in_with_install_continue(void **state)
{
	(void)state;
	assert_int_equal(pages_in_clear("continue", (const char *[]){ "--install", "continue", NULL },
					true),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_donor_stores_no_page_of_a_sealed_vm_in_clear),
		cmocka_unit_test(test_xchacha20_poly1305_seals_and_opens_every_page),
		cmocka_unit_test(test_the_broker_says_which_page_crypto_is_in_force),
		cmocka_unit_test(test_sealed_pages_survive_broker_restarts),
		cmocka_unit_test(test_a_vm_attached_unsealed_stays_unsealed_after_a_restart),
		cmocka_unit_test(test_a_page_whose_versions_are_used_up_stays_in_memory),
		cmocka_unit_test(test_sealed_pages_go_in_with_install_continue),
	};

	gvmt_main_init(key_path, sizeof(key_path), NULL);
	user.have = gvmt_test_user(&user.uid, &user.gid, &user.gvm_gid);
	return cmocka_run_group_tests_name("seal", tests, NULL, NULL);
}
