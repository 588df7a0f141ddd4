/* test_store.c: memserver/store.c against a reference model. Random writes,
 * zero writes, discards, drops, reads and LISTs on several namespaces must
 * always show exactly what the model holds, each page's page tag included;
 * ENOSPC must come exactly when the model says the slots are gone, and
 * change nothing; a backing file must give everything back after a reopen,
 * ids and page tags included, and upgrade a file of format 1 or 2 in place.
 * Namespaces belong to the host their name starts with, and one host holds
 * at most a quarter of the table. An id carries a random tag: one of a
 * dropped namespace, or of another store, is unknown. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "memserver.h"
#include "store.h"

#define NS_COUNT 3
#define UNIVERSE 3000u  /* page indices in use: [0, UNIVERSE) and a far band */
#define FAR_BASE (UINT64_MAX / GVM_PAGE_SIZE - 4 * UNIVERSE)
#define CAP_PAGES 700u
#define HOST "hosta" /* the host every model namespace belongs to */

struct model {
	uint32_t tag[NS_COUNT][2 * UNIVERSE]; /* 0: zero page, else content tag */
	uint32_t ptag[NS_COUNT][2 * UNIVERSE]; /* its page tag's seed; 0: all zero */
	uint64_t used;
};

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint64_t page_index(uint32_t slot)
{
	return slot < UNIVERSE ? slot : FAR_BASE + (slot - UNIVERSE);
}

static void fill(uint8_t *page, uint32_t tag)
{
	for (size_t i = 0; i < GVM_PAGE_SIZE / 4; i++)
		((uint32_t *)page)[i] = tag * 2654435761u + (uint32_t)i;
}

/* The page tag of seed, another for each seed; seed 0 is the all-zero tag. */
static void fill_page_tag(uint8_t *t, uint32_t seed)
{
	for (uint32_t i = 0; i < GVM_PAGE_TAG_BYTES; i++)
		t[i] = seed ? (uint8_t)(seed >> (i % 4 * 8)) ^ (uint8_t)(0x5a + i) : 0;
}

/* READ of count pages at slot: the model's pages, each with its page tag,
 * and no tag written past the last data page's. */
static void check_read(struct ms_store *s, uint32_t ns, const struct model *m,
		       uint32_t ns_idx, uint32_t slot, uint32_t count)
{
	static uint8_t out[GVM_FRAME_DATA_MAX_BYTES], want[GVM_PAGE_SIZE];
	static uint8_t tags[GVM_FRAME_PAGES_MAX * GVM_PAGE_TAG_BYTES];
	uint8_t bitmap[GVM_FRAME_BITMAP_MAX_BYTES], want_tag[GVM_PAGE_TAG_BYTES];
	uint32_t data_pages, k = 0;

	memset(tags, 0xee, sizeof(tags));
	assert_int_equal(ms_store_read(s, HOST, ns, page_index(slot), count, bitmap, out, &data_pages,
				       tags), 0);
	for (uint32_t i = 0; i < count; i++) {
		uint32_t tag = m->tag[ns_idx][slot + i];
		bool zero = bitmap[i / 8] & (1u << (i % 8));

		assert_int_equal(zero, tag == 0);
		if (!tag)
			continue;
		fill(want, tag);
		assert_memory_equal(out + (size_t)k * GVM_PAGE_SIZE, want, GVM_PAGE_SIZE);
		fill_page_tag(want_tag, m->ptag[ns_idx][slot + i]);
		assert_memory_equal(tags + (size_t)k * GVM_PAGE_TAG_BYTES, want_tag,
				    GVM_PAGE_TAG_BYTES);
		k++;
	}
	assert_int_equal(k, data_pages);
	for (size_t i = (size_t)k * GVM_PAGE_TAG_BYTES; i < sizeof(tags); i++)
		if (tags[i] != 0xee)
			fail_msg("tag byte %zu written, past the %u data pages' tags", i, k);
}

/* LIST of count pages at slot: a bit exactly for each page the model
 * holds, none past count. */
static void check_list(struct ms_store *s, uint32_t ns, const struct model *m,
		       uint32_t ns_idx, uint32_t slot, uint32_t count)
{
	static uint8_t bitmap[GVM_LIST_PAGES_MAX / 8];
	uint32_t bytes = gvm_list_bitmap_bytes(count);

	memset(bitmap, 0xa5, bytes);
	assert_int_equal(ms_store_list(s, HOST, ns, page_index(slot), count, bitmap), 0);
	for (uint32_t i = 0; i < count; i++)
		if (gvm_list_test(bitmap, i) != (m->tag[ns_idx][slot + i] != 0))
			fail_msg("LIST bit %u (page %llu) is %d, the model holds %u", i,
				 (unsigned long long)page_index(slot + i), gvm_list_test(bitmap, i),
				 m->tag[ns_idx][slot + i]);
	assert_true(gvm_list_bitmap_valid(bitmap, count));
}

/* One random write of count pages at slot, with page tags (or, one time
 * in four, without: all zero); mirrors it into the model unless the store
 * refused it for capacity, which must match the model. */
static void random_write(struct ms_store *s, uint32_t ns, struct model *m,
			 uint32_t ns_idx, uint32_t slot, uint32_t count)
{
	static uint8_t data[GVM_FRAME_DATA_MAX_BYTES];
	static uint8_t page_tags[GVM_FRAME_PAGES_MAX * GVM_PAGE_TAG_BYTES];
	uint8_t bitmap[GVM_FRAME_BITMAP_MAX_BYTES] = { 0 };
	uint32_t tags[GVM_FRAME_PAGES_MAX], ptags[GVM_FRAME_PAGES_MAX], k = 0;
	uint64_t needed = 0, freed = 0;
	bool tagged = rnd() % 4 != 0;
	int err;

	for (uint32_t i = 0; i < count; i++) {
		tags[i] = rnd() % 4 == 0 ? 0 : (uint32_t)(rnd() | 1);
		ptags[i] = 0;
		if (!tags[i]) {
			bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
			freed += m->tag[ns_idx][slot + i] != 0;
			continue;
		}
		needed += m->tag[ns_idx][slot + i] == 0;
		if (tagged)
			ptags[i] = (uint32_t)(rnd() | 1);
		fill_page_tag(page_tags + (size_t)k * GVM_PAGE_TAG_BYTES, ptags[i]);
		fill(data + (size_t)k++ * GVM_PAGE_SIZE, tags[i]);
	}
	err = ms_store_write(s, HOST, ns, page_index(slot), count, bitmap, data,
			     tagged ? page_tags : NULL);
	if (m->used + needed > CAP_PAGES) {
		assert_int_equal(err, -ENOSPC);
		return;
	}
	assert_int_equal(err, 0);
	for (uint32_t i = 0; i < count; i++) {
		m->tag[ns_idx][slot + i] = tags[i];
		m->ptag[ns_idx][slot + i] = ptags[i];
	}
	m->used = m->used + needed - freed;
}

static void check_all(struct ms_store *s, const uint32_t *ids, const struct model *m)
{
	struct ms_store_info info;

	for (uint32_t n = 0; n < NS_COUNT; n++) {
		for (uint32_t slot = 0; slot < 2 * UNIVERSE; slot += 200)
			check_read(s, ids[n], m, n, slot, 200);
		/* Each band whole (more pages than map cells: the map is
		 * walked), and a short odd range (each page looked up). */
		check_list(s, ids[n], m, n, 0, UNIVERSE);
		check_list(s, ids[n], m, n, UNIVERSE, UNIVERSE);
		check_list(s, ids[n], m, n, 13, 77);
	}
	ms_store_get_info(s, &info);
	assert_int_equal(info.used_pages, m->used);
	assert_int_equal(info.capacity_pages, CAP_PAGES);
}

static void run_model(struct ms_store *s, uint32_t *ids, struct model *m, int ops)
{
	char name[32];

	for (int op = 0; op < ops; op++) {
		uint32_t n = (uint32_t)(rnd() % NS_COUNT);
		uint32_t count = 1 + (uint32_t)(rnd() % 40);
		uint32_t slot = (uint32_t)(rnd() % (2 * UNIVERSE - count));
		uint64_t r = rnd() % 100;

		if (slot < UNIVERSE && slot + count > UNIVERSE)
			slot = UNIVERSE - count;
		if (r < 55) {
			random_write(s, ids[n], m, n, slot, count);
		} else if (r < 70) {
			assert_int_equal(ms_store_discard(s, HOST, ids[n], page_index(slot), count), 0);
			for (uint32_t i = 0; i < count; i++) {
				m->used -= m->tag[n][slot + i] != 0;
				m->tag[n][slot + i] = 0;
			}
		} else if (r < 78) {
			check_list(s, ids[n], m, n, slot, count);
		} else if (r < 79) {
			snprintf(name, sizeof(name), HOST ".vm-%u", n);
			assert_int_equal(ms_store_drop_ns(s, HOST, name, 0), 0);
			for (uint32_t i = 0; i < 2 * UNIVERSE; i++) {
				m->used -= m->tag[n][i] != 0;
				m->tag[n][i] = 0;
			}
			assert_int_equal(ms_store_open_ns(s, HOST, name, &ids[n]), 0);
		} else {
			check_read(s, ids[n], m, n, slot, count);
		}
	}
	check_all(s, ids, m);
}

static void open_namespaces(struct ms_store *s, uint32_t *ids)
{
	char name[32];

	for (uint32_t n = 0; n < NS_COUNT; n++) {
		snprintf(name, sizeof(name), HOST ".vm-%u", n);
		assert_int_equal(ms_store_open_ns(s, HOST, name, &ids[n]), 0);
	}
}

static void test_store_matches_model_under_random_ops(void **state)
{
	struct model *m = calloc(1, sizeof(*m));
	uint32_t ids[NS_COUNT];
	struct ms_store *s;
	char why[256];

	(void)state;
	assert_int_equal(ms_store_open(&s, NULL, CAP_PAGES * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	open_namespaces(s, ids);
	run_model(s, ids, m, 20000);
	assert_int_equal(ms_store_close(s), 0);
	free(m);
}

static void test_store_file_survives_reopen_with_same_pages(void **state)
{
	char path[] = "/tmp/gvm-test-store-XXXXXX", why[256];
	struct model *m = calloc(1, sizeof(*m));
	uint32_t ids[NS_COUNT], again[NS_COUNT];
	struct ms_store *s;
	uint64_t pages;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ms_store_open(&s, path, CAP_PAGES * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	open_namespaces(s, ids);
	run_model(s, ids, m, 6000);
	assert_int_equal(ms_store_drop_ns(s, HOST, HOST ".vm-2", 0), 0);
	for (uint32_t i = 0; i < 2 * UNIVERSE; i++) {
		m->used -= m->tag[2][i] != 0;
		m->tag[2][i] = 0;
	}
	assert_int_equal(ms_store_close(s), 0);

	/* capacity 0 adopts the file's; another capacity is refused */
	assert_int_equal(ms_store_open(&s, path, 2 * CAP_PAGES * GVM_PAGE_SIZE, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "--capacity"));
	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), 0);
	assert_int_equal(ms_store_ns_pages(s, HOST, HOST ".vm-2", &pages), 0);
	assert_int_equal(pages, 0);
	/* The ids of before work without opening again; the dropped one's
	 * does not, and its name opened again gets another id. */
	for (uint32_t n = 0; n < 2; n++) {
		check_read(s, ids[n], m, n, 0, 200);
		check_list(s, ids[n], m, n, 0, UNIVERSE);
	}
	assert_int_equal(ms_store_discard(s, HOST, ids[2], 0, 1), -ENOENT);
	open_namespaces(s, again);
	assert_int_equal(again[0], ids[0]);
	assert_int_equal(again[1], ids[1]);
	assert_int_not_equal(again[2], ids[2]);
	check_all(s, again, m);
	run_model(s, again, m, 3000); /* the rebuilt free list hands out only free slots */
	assert_int_equal(ms_store_close(s), 0);
	unlink(path);
	free(m);
}

/* Every call by id, for an id whose index is right and whose tag is not:
 * each -ENOENT, like an unknown id, and nothing changes. */
static void expect_unknown_id(struct ms_store *s, const char *host, uint32_t id)
{
	static uint8_t out[GVM_FRAME_DATA_MAX_BYTES], page[GVM_PAGE_SIZE];
	uint8_t zero[GVM_FRAME_BITMAP_MAX_BYTES] = { 0 }, bitmap[GVM_FRAME_BITMAP_MAX_BYTES];
	uint32_t data_pages;

	memset(bitmap, 0x5a, sizeof(bitmap));
	assert_int_equal(ms_store_read(s, host, id, 0, 8, bitmap, out, &data_pages, NULL), -ENOENT);
	assert_int_equal(ms_store_write(s, host, id, 0, 1, zero, page, NULL), -ENOENT);
	assert_int_equal(ms_store_discard(s, host, id, 0, 8), -ENOENT);
	assert_int_equal(ms_store_list(s, host, id, 0, 8, bitmap), -ENOENT);
	assert_int_equal(bitmap[0], 0); /* cleared, no bit set */
	assert_int_equal(ms_store_drop_ns(s, host, NULL, id), -ENOENT);
}

/* An id is its index + 1 under a random non-zero tag: the index alone, or
 * another tag, names nothing; a namespace dropped and opened again gets
 * another tag, never the one it had. */
static void test_store_ids_carry_a_random_tag_and_a_wrong_tag_is_unknown(void **state)
{
	static uint8_t page[GVM_PAGE_SIZE], out[GVM_FRAME_DATA_MAX_BYTES];
	uint8_t zero[GVM_FRAME_BITMAP_MAX_BYTES] = { 0 }, bitmap[GVM_FRAME_BITMAP_MAX_BYTES];
	uint32_t a, b, id, prev, data_pages, repeats = 0;
	struct ms_store *s;
	char why[256];

	(void)state;
	assert_int_equal(ms_store_open(&s, NULL, 64 * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".a", &a), 0);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".b", &b), 0);
	assert_int_equal(a & ((1u << MS_NS_INDEX_BITS) - 1), 1);
	assert_int_equal(b & ((1u << MS_NS_INDEX_BITS) - 1), 2);
	assert_int_not_equal(a >> MS_NS_INDEX_BITS, 0);
	assert_int_not_equal(b >> MS_NS_INDEX_BITS, 0);
	fill(page, 7);
	assert_int_equal(ms_store_write(s, HOST, a, 0, 1, zero, page, NULL), 0);
	expect_unknown_id(s, HOST, 1);
	expect_unknown_id(s, HOST, a ^ (1u << MS_NS_INDEX_BITS));
	expect_unknown_id(s, HOST, a ^ (1u << 31));
	expect_unknown_id(s, HOST, (a & ~((1u << MS_NS_INDEX_BITS) - 1)) | 3); /* a's tag, unused index */
	expect_unknown_id(s, HOST, 0);
	expect_unknown_id(s, HOST, MS_NAMESPACES_MAX + 1);
	assert_int_equal(ms_store_read(s, HOST, a, 0, 1, bitmap, out, &data_pages, NULL), 0);
	assert_int_equal(data_pages, 1);
	assert_memory_equal(out, page, GVM_PAGE_SIZE);

	/* Dropped and opened again, 1000 times: the same index, each time
	 * another id; the one before it is unknown. */
	prev = a;
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(ms_store_drop_ns(s, HOST, HOST ".a", 0), 0);
		assert_int_equal(ms_store_open_ns(s, HOST, HOST ".a", &id), 0);
		assert_int_equal(id & ((1u << MS_NS_INDEX_BITS) - 1), 1);
		assert_int_not_equal(id, prev);
		assert_int_not_equal(id >> MS_NS_INDEX_BITS, 0);
		assert_int_equal(ms_store_list(s, HOST, prev, 0, 8, bitmap), -ENOENT);
		repeats += id == a; /* the first id back: 1 in 2^19 - 2 each time */
		prev = id;
	}
	assert_true(repeats <= 1);
	expect_unknown_id(s, HOST, a == prev ? a ^ (1u << MS_NS_INDEX_BITS) : a);
	assert_int_equal(ms_store_list(s, HOST, prev, 0, 8, bitmap), 0);
	assert_int_equal(bitmap[0], 0); /* the new namespace holds nothing */
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".b", &id), 0);
	assert_int_equal(id, b);
	assert_int_equal(ms_store_close(s), 0);
}

/* An anonymous store started again (a donor restarted) hands the same
 * index to the same name, with another tag: the id a broker kept names
 * nothing. 2^19 - 1 tags: over 256 restarts, a repeat is a 1 in 2000
 * event, two are 1 in 10^7. */
static void test_store_an_anonymous_store_started_again_gives_other_ids(void **state)
{
	uint8_t bitmap[GVM_FRAME_BITMAP_MAX_BYTES];
	uint32_t old = 0, id, repeats = 0;
	struct ms_store *s;
	char why[256];

	(void)state;
	for (int i = 0; i < 256; i++) {
		assert_int_equal(ms_store_open(&s, NULL, 16 * GVM_PAGE_SIZE, why, sizeof(why)), 0);
		if (old)
			assert_int_equal(ms_store_list(s, HOST, old, 0, 8, bitmap), -ENOENT);
		assert_int_equal(ms_store_open_ns(s, HOST, HOST ".vm", &id), 0);
		assert_int_equal(id & ((1u << MS_NS_INDEX_BITS) - 1), 1);
		if (id == old)
			repeats++;
		else if (old)
			expect_unknown_id(s, HOST, old);
		old = id;
		assert_int_equal(ms_store_close(s), 0);
	}
	print_message("%u of 255 restarts gave an id back\n", repeats);
	assert_true(repeats <= 1);
}

/* Writes a u32 at off of a file. */
static void poke_u32(const char *path, off_t off, uint32_t v)
{
	int fd = open(path, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &v, sizeof(v), off), sizeof(v));
	close(fd);
}

static uint32_t peek_u32(const char *path, off_t off)
{
	uint32_t v = 0;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &v, sizeof(v), off), sizeof(v));
	close(fd);
	return v;
}

static uint64_t peek_u64(const char *path, off_t off)
{
	uint64_t v = 0;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &v, sizeof(v), off), sizeof(v));
	close(fd);
	return v;
}

static void poke_u64(const char *path, off_t off, uint64_t v)
{
	int fd = open(path, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &v, sizeof(v), off), sizeof(v));
	close(fd);
}

static uint64_t file_bytes(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* store.c's format, as a file holds it: the header (the 8-byte magic, the
 * version, the page size, the slot count, the offsets of the namespace
 * records, slot records and data, the file's size, the clean flag, and in
 * format 3 the page tags' offset), then the namespace records (a 64-byte
 * name, used, tag) from 4096. */
#define FILE_VERSION_OFF 8
#define FILE_SLOTS_OFF 16
#define FILE_DATA_OFF_OFF 40
#define FILE_TOTAL_BYTES_OFF 48
#define FILE_PAGE_TAG_OFF_OFF 64
#define FILE_NSREC_OFF(i) (4096 + (i) * 72)
#define FILE_NSREC_TAG_OFF(i) (FILE_NSREC_OFF(i) + 68)

/* Makes a closed format-3 file what format 2 (or 1: the same layout) wrote:
 * the file ends with the data slots, where the page tags began, and the
 * header says so. Returns the format-3 size it had. */
static uint64_t make_format_2_layout(const char *path, uint32_t version)
{
	uint64_t bytes = file_bytes(path), slots = peek_u64(path, FILE_SLOTS_OFF);
	uint64_t data_end = peek_u64(path, FILE_DATA_OFF_OFF) + slots * GVM_PAGE_SIZE;

	assert_int_equal(peek_u32(path, FILE_VERSION_OFF), 3);
	assert_int_equal(peek_u64(path, FILE_TOTAL_BYTES_OFF), bytes);
	/* The page tags: right after the slots, 16 bytes each, to a page. */
	assert_int_equal(peek_u64(path, FILE_PAGE_TAG_OFF_OFF), data_end);
	assert_int_equal(bytes, (data_end + slots * GVM_PAGE_TAG_BYTES + GVM_PAGE_SIZE - 1) /
					GVM_PAGE_SIZE * GVM_PAGE_SIZE);
	assert_int_equal(truncate(path, (off_t)data_end), 0);
	poke_u64(path, FILE_TOTAL_BYTES_OFF, data_end);
	poke_u64(path, FILE_PAGE_TAG_OFF_OFF, 0);
	poke_u32(path, FILE_VERSION_OFF, version);
	return bytes;
}

/* A file of format 1 (ids without tags, no page tags) opens: its pages are
 * all there, their page tags zero, its namespaces get tagged ids, the
 * untagged ones name nothing, and the file is format 3 from then on. A
 * format this store does not know is refused, saying which. */
static void test_store_upgrades_a_format_1_file_and_refuses_an_unknown_format(void **state)
{
	char path[] = "/tmp/gvm-test-store-XXXXXX", why[256];
	struct model *m = calloc(1, sizeof(*m));
	uint32_t ids[NS_COUNT], again[NS_COUNT];
	struct ms_store *s;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ms_store_open(&s, path, CAP_PAGES * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	open_namespaces(s, ids);
	run_model(s, ids, m, 3000);
	assert_int_equal(ms_store_close(s), 0);
	make_format_2_layout(path, 1);
	memset(m->ptag, 0, sizeof(m->ptag)); /* format 1 kept none */
	for (uint32_t n = 0; n < NS_COUNT; n++) {
		uint32_t idx = (ids[n] & ((1u << MS_NS_INDEX_BITS) - 1)) - 1;

		assert_int_equal(peek_u32(path, FILE_NSREC_TAG_OFF(idx)), ids[n] >> MS_NS_INDEX_BITS);
		poke_u32(path, FILE_NSREC_TAG_OFF(idx), 0); /* format 1 kept 0 there */
	}

	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), 0);
	for (uint32_t n = 0; n < NS_COUNT; n++) /* format 1's ids: index + 1 */
		expect_unknown_id(s, HOST, ids[n] & ((1u << MS_NS_INDEX_BITS) - 1));
	open_namespaces(s, again);
	for (uint32_t n = 0; n < NS_COUNT; n++) {
		assert_int_equal(again[n] & ((1u << MS_NS_INDEX_BITS) - 1),
				 ids[n] & ((1u << MS_NS_INDEX_BITS) - 1));
		assert_int_not_equal(again[n] >> MS_NS_INDEX_BITS, 0);
	}
	check_all(s, again, m);
	assert_int_equal(ms_store_close(s), 0);
	assert_int_equal(peek_u32(path, FILE_VERSION_OFF), 3);
	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), 0);
	open_namespaces(s, ids);
	assert_memory_equal(ids, again, sizeof(ids)); /* upgraded once, kept since */
	assert_int_equal(ms_store_close(s), 0);

	poke_u32(path, FILE_VERSION_OFF, 4);
	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "store format 4, which this gvm-memserver (formats 1 to 3) cannot read"));
	unlink(path);
	free(m);
}

/* Writes count pages at slot of namespace ns_idx (page_index(slot) on):
 * content[i] 0 a zero page, else that page's content tag; with page tags
 * of seeds ptag[i], or, ptag NULL, none (so all zero). Mirrors it into m. */
static void write_pages(struct ms_store *s, uint32_t ns, struct model *m, uint32_t ns_idx,
			uint32_t slot, uint32_t count, const uint32_t *content, const uint32_t *ptag)
{
	static uint8_t data[GVM_FRAME_DATA_MAX_BYTES];
	static uint8_t page_tags[GVM_FRAME_PAGES_MAX * GVM_PAGE_TAG_BYTES];
	uint8_t bitmap[GVM_FRAME_BITMAP_MAX_BYTES] = { 0 };
	uint32_t k = 0;

	for (uint32_t i = 0; i < count; i++) {
		uint32_t *held = &m->tag[ns_idx][slot + i];

		if (!content[i]) {
			bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
			m->used -= *held != 0;
		} else {
			m->used += *held == 0;
			fill(data + (size_t)k * GVM_PAGE_SIZE, content[i]);
			fill_page_tag(page_tags + (size_t)k++ * GVM_PAGE_TAG_BYTES, ptag ? ptag[i] : 0);
		}
		*held = content[i];
		m->ptag[ns_idx][slot + i] = ptag && content[i] ? ptag[i] : 0;
	}
	assert_int_equal(ms_store_write(s, HOST, ns, page_index(slot), count, bitmap, data,
					ptag ? page_tags : NULL),
			 0);
}

/* Each data page's page tag comes back with it, in the order of the
 * packed pages, whatever range is read: distinct tags, zero pages among
 * them (no slot, no tag), a partial overwrite that changes the rewritten
 * pages' tags only (a zero page becoming data and back), a write without
 * tags (zero tags), a discard; a read that asks for no tags still reads. */
static void test_store_each_page_tag_comes_back_with_its_page(void **state)
{
	static uint8_t out[GVM_FRAME_DATA_MAX_BYTES], want[GVM_PAGE_SIZE];
	struct model *m = calloc(1, sizeof(*m));
	uint32_t content[64], ptag[64], ns, data_pages;
	uint8_t bitmap[GVM_FRAME_BITMAP_MAX_BYTES];
	struct ms_store_info info;
	struct ms_store *s;
	char why[256];

	(void)state;
	assert_int_equal(ms_store_open(&s, NULL, 256 * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".tags", &ns), 0);
	for (uint32_t i = 0; i < 64; i++) {
		content[i] = i % 5 == 0 ? 0 : i + 1;
		ptag[i] = 1000 + i;
	}
	write_pages(s, ns, m, 0, 100, 64, content, ptag);
	check_read(s, ns, m, 0, 90, 90);
	for (uint32_t first = 100; first < 164; first += 7)
		check_read(s, ns, m, 0, first, 7);

	/* Pages 120..129 again: 120 (a zero page) becomes data, 125 a zero page. */
	for (uint32_t i = 0; i < 10; i++) {
		content[i] = i == 5 ? 0 : 7000 + i;
		ptag[i] = 5000 + i;
	}
	write_pages(s, ns, m, 0, 120, 10, content, ptag);
	check_read(s, ns, m, 0, 100, 64);
	/* Without tags: those pages' tags are zero, the others' stay. */
	write_pages(s, ns, m, 0, 140, 4, content, NULL);
	check_read(s, ns, m, 0, 100, 64);
	/* Discarded pages are zero pages; one written again has its new tag. */
	assert_int_equal(ms_store_discard(s, HOST, ns, 150, 5), 0);
	for (uint32_t i = 150; i < 155; i++) {
		m->used -= m->tag[0][i] != 0;
		m->tag[0][i] = 0;
	}
	ptag[0] = 9999;
	write_pages(s, ns, m, 0, 152, 1, content, ptag);
	check_read(s, ns, m, 0, 0, 300);
	ms_store_get_info(s, &info);
	assert_int_equal(info.used_pages, m->used);

	assert_int_equal(ms_store_read(s, HOST, ns, 152, 1, bitmap, out, &data_pages, NULL), 0);
	assert_int_equal(data_pages, 1);
	fill(want, content[0]);
	assert_memory_equal(out, want, GVM_PAGE_SIZE);
	assert_int_equal(ms_store_close(s), 0);
	free(m);
}

/* The page tags live in the backing file beside the pages: they come back
 * after a close and a reopen, and a dropped namespace leaves none of its
 * tags in the file. */
static void test_store_page_tags_survive_a_reopen_and_drops_leave_none_in_the_file(void **state)
{
	char path[] = "/tmp/gvm-test-store-XXXXXX", why[256];
	struct model *m = calloc(1, sizeof(*m));
	uint32_t ids[NS_COUNT], again[NS_COUNT];
	uint64_t tag_off, slots, nonzero = 0;
	uint8_t *area;
	struct ms_store *s;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ms_store_open(&s, path, CAP_PAGES * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	open_namespaces(s, ids);
	run_model(s, ids, m, 4000);
	assert_int_equal(ms_store_close(s), 0);

	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), 0);
	open_namespaces(s, again);
	assert_memory_equal(again, ids, sizeof(ids));
	check_all(s, ids, m);
	for (uint32_t n = 0; n < NS_COUNT; n++) {
		char name[32];

		snprintf(name, sizeof(name), HOST ".vm-%u", n);
		assert_int_equal(ms_store_drop_ns(s, HOST, name, 0), 0);
	}
	assert_int_equal(ms_store_close(s), 0);

	/* The tag area, read from the file: every byte zero. */
	tag_off = peek_u64(path, FILE_PAGE_TAG_OFF_OFF);
	slots = peek_u64(path, FILE_SLOTS_OFF);
	assert_int_equal(slots, CAP_PAGES);
	area = malloc(slots * GVM_PAGE_TAG_BYTES);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, area, slots * GVM_PAGE_TAG_BYTES, (off_t)tag_off),
			 (ssize_t)(slots * GVM_PAGE_TAG_BYTES));
	close(fd);
	for (uint64_t i = 0; i < slots * GVM_PAGE_TAG_BYTES; i++)
		nonzero += area[i] != 0;
	assert_int_equal(nonzero, 0);
	free(area);
	unlink(path);
	free(m);
}

/* A file of format 2 (no page tags: it ends with its data slots) is
 * upgraded in place: it grows by the tag area, its pages and ids are as
 * they were, their tags zero, and tags written since survive a reopen. A
 * format-2 file already grown by an upgrade that stopped before its header
 * was rewritten opens too; a format-3 file without its tag area is
 * damaged, and refused. */
static void test_store_upgrades_a_format_2_file_in_place_with_its_pages_intact(void **state)
{
	char path[] = "/tmp/gvm-test-store-XXXXXX", why[256];
	struct model *m = calloc(1, sizeof(*m));
	uint32_t ids[NS_COUNT], again[NS_COUNT];
	uint64_t format_3_bytes, format_2_bytes;
	struct ms_store *s;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ms_store_open(&s, path, CAP_PAGES * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	open_namespaces(s, ids);
	run_model(s, ids, m, 3000);
	assert_int_equal(ms_store_close(s), 0);
	format_3_bytes = make_format_2_layout(path, 2);
	format_2_bytes = file_bytes(path);
	assert_true(format_2_bytes < format_3_bytes);
	memset(m->ptag, 0, sizeof(m->ptag));

	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), 0);
	assert_int_equal(file_bytes(path), format_3_bytes);
	assert_int_equal(peek_u32(path, FILE_VERSION_OFF), 3);
	for (uint32_t n = 0; n < NS_COUNT; n++) /* format 2's ids work as they are */
		check_read(s, ids[n], m, n, 0, 200);
	open_namespaces(s, again);
	assert_memory_equal(again, ids, sizeof(ids));
	check_all(s, ids, m);
	run_model(s, ids, m, 2000); /* tagged writes into the new area */
	assert_int_equal(ms_store_close(s), 0);
	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), 0);
	check_all(s, ids, m);
	assert_int_equal(ms_store_close(s), 0);

	/* Grown, header not yet rewritten: opens, upgraded. */
	make_format_2_layout(path, 2);
	memset(m->ptag, 0, sizeof(m->ptag));
	assert_int_equal(truncate(path, (off_t)format_3_bytes), 0);
	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), 0);
	check_all(s, ids, m);
	assert_int_equal(ms_store_close(s), 0);
	assert_int_equal(peek_u32(path, FILE_VERSION_OFF), 3);

	/* Format 3 cut back to format 2's size: damaged. */
	assert_int_equal(truncate(path, (off_t)format_2_bytes), 0);
	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "not a gvm-memserver store (or damaged)"));
	unlink(path);
	free(m);
}

static void test_store_refuses_a_file_that_is_not_a_store(void **state)
{
	char path[] = "/tmp/gvm-test-store-XXXXXX", why[256];
	struct ms_store *s;
	int fd = mkstemp(path);

	(void)state;
	assert_int_equal(write(fd, "not a store at all", 18), 18);
	close(fd);
	assert_int_equal(ms_store_open(&s, path, 0, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "not a gvm-memserver store"));
	unlink(path);
}

static void test_store_namespace_names_and_table_limit(void **state)
{
	struct ms_store *s;
	uint32_t id, first;
	char why[256], name[32], host[8];

	(void)state;
	assert_int_equal(ms_store_open(&s, NULL, 64 * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	assert_int_equal(ms_store_open_ns(s, HOST, "", &id), -EINVAL);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".has space", &id), -EINVAL);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".0123456789012345678901234567890123456789012345678901234567", &id), -EINVAL);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".vm-a", &first), 0);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".vm-a", &id), 0);
	assert_int_equal(id, first);
	/* Four hosts fill the table: one may hold a quarter of it. */
	for (int i = 1; i < 4096; i++) {
		snprintf(host, sizeof(host), "h%d", i % 4);
		snprintf(name, sizeof(name), "%s.ns-%d", host, i);
		assert_int_equal(ms_store_open_ns(s, host, name, &id), 0);
	}
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".one-too-many", &id), -ENOSPC);
	assert_int_equal(ms_store_drop_ns(s, "h3", "h3.ns-7", 0), 0);
	assert_int_equal(ms_store_drop_ns(s, "h3", "h3.ns-7", 0), -ENOENT);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".one-too-many", &id), 0);
	assert_int_equal(ms_store_close(s), 0);
}

/* A name must say whose it is ("<host>.<rest>"): one that names no host is
 * no namespace name, and every call, by name or by id, refuses a host the
 * namespaces of another, leaving their pages as they were. */
static void test_store_serves_a_namespace_to_its_own_host_only(void **state)
{
	static uint8_t page[GVM_PAGE_SIZE], out[GVM_FRAME_DATA_MAX_BYTES];
	uint8_t zero[GVM_FRAME_BITMAP_MAX_BYTES] = { 0 }, bitmap[GVM_FRAME_BITMAP_MAX_BYTES];
	uint32_t a, id, data_pages;
	struct ms_store *s;
	uint64_t pages;
	char why[256];

	(void)state;
	assert_int_equal(ms_store_open(&s, NULL, 64 * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	assert_int_equal(ms_store_open_ns(s, "hosta", "vm-a", &id), -EINVAL);
	assert_int_equal(ms_store_open_ns(s, "hosta", "hosta.", &id), -EINVAL);
	assert_int_equal(ms_store_open_ns(s, "hosta", "HostA.x", &id), -EINVAL);
	assert_int_equal(ms_store_open_ns(s, "hosta", ".x", &id), -EINVAL);
	assert_int_equal(ms_store_open_ns(s, "hosta", "hosta.x", &a), 0);
	fill(page, 42);
	assert_int_equal(ms_store_write(s, "hosta", a, 7, 1, zero, page, NULL), 0);

	assert_int_equal(ms_store_open_ns(s, "hostb", "hosta.x", &id), -EACCES);
	assert_int_equal(ms_store_open_ns(s, "hostb", "hosta.new", &id), -EACCES);
	assert_int_equal(ms_store_open_ns(s, "host", "hosta.x", &id), -EACCES); /* a prefix is not the host */
	assert_int_equal(ms_store_read(s, "hostb", a, 7, 1, bitmap, out, &data_pages, NULL), -EACCES);
	assert_int_equal(ms_store_write(s, "hostb", a, 7, 1, zero, out, NULL), -EACCES);
	assert_int_equal(ms_store_discard(s, "hostb", a, 0, 8), -EACCES);
	assert_int_equal(ms_store_drop_ns(s, "hostb", NULL, a), -EACCES);
	assert_int_equal(ms_store_drop_ns(s, "hostb", "hosta.x", 0), -EACCES);
	assert_int_equal(ms_store_ns_pages(s, "hostb", "hosta.x", &pages), -EACCES);
	assert_int_equal(ms_store_ns_pages(s, "hostb", "nohost", &pages), -EINVAL);
	assert_int_equal(ms_store_list(s, "hostb", a, 0, 8, bitmap), -EACCES);
	assert_int_equal(ms_store_read(s, "hostb", a + 1, 7, 1, bitmap, out, &data_pages, NULL), -ENOENT);
	assert_int_equal(ms_store_list(s, "hostb", a + 1, 0, 8, bitmap), -ENOENT);

	assert_int_equal(ms_store_ns_pages(s, "hosta", "hosta.x", &pages), 0);
	assert_int_equal(pages, 1);
	assert_int_equal(ms_store_read(s, "hosta", a, 7, 1, bitmap, out, &data_pages, NULL), 0);
	assert_int_equal(data_pages, 1);
	assert_memory_equal(out, page, GVM_PAGE_SIZE);
	assert_int_equal(ms_store_drop_ns(s, "hosta", NULL, a), 0);
	assert_int_equal(ms_store_close(s), 0);
}

/* One host holds at most MS_HOST_NAMESPACES_MAX namespaces: the next new
 * one is -EDQUOT, while its existing ones still open and another host
 * still gets one. */
static void test_store_host_quota_is_a_quarter_of_the_table(void **state)
{
	struct ms_store *s;
	uint32_t id, first = 0;
	char why[256], name[32];

	(void)state;
	assert_int_equal(MS_HOST_NAMESPACES_MAX, 1024);
	assert_int_equal(ms_store_open(&s, NULL, 64 * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	for (int i = 0; i < 1024; i++) {
		snprintf(name, sizeof(name), "hosta.ns-%d", i);
		assert_int_equal(ms_store_open_ns(s, "hosta", name, &id), 0);
		if (i == 0)
			first = id;
	}
	assert_int_equal(ms_store_open_ns(s, "hosta", "hosta.ns-1024", &id), -EDQUOT);
	assert_int_equal(ms_store_open_ns(s, "hosta", "hosta.ns-0", &id), 0);
	assert_int_equal(id, first);
	assert_int_equal(ms_store_open_ns(s, "hostb", "hostb.ns-0", &id), 0);
	assert_int_equal(ms_store_drop_ns(s, "hosta", "hosta.ns-5", 0), 0);
	assert_int_equal(ms_store_open_ns(s, "hosta", "hosta.ns-1024", &id), 0);
	assert_int_equal(ms_store_close(s), 0);
}

static uint64_t self_rss_kib(void)
{
	unsigned long long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%llu %llu", &size, &rss), 2);
	fclose(f);
	return rss * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

/* Dropping a namespace gives its memory back (released in runs of slots,
 * by the store's releaser thread or ms_store_release_now), and leaves
 * another namespace, whose pages sit between its runs, intact; discarding
 * a range does the same for that range. */
static void test_store_drop_returns_memory_and_spares_neighbours(void **state)
{
	enum { PAGES = 16384, RUN = 64 }; /* 64 MiB each, written in alternating runs */
	static uint8_t buf[RUN * GVM_PAGE_SIZE], out[GVM_FRAME_DATA_MAX_BYTES];
	uint8_t zero[GVM_FRAME_BITMAP_MAX_BYTES] = { 0 }, bitmap[GVM_FRAME_BITMAP_MAX_BYTES];
	uint64_t rss_full, rss_dropped, rss_discarded;
	uint32_t a, b, data_pages;
	struct ms_store *s;
	char why[256];

	(void)state;
	assert_int_equal(ms_store_open(&s, NULL, 3ull * PAGES * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".gone", &a), 0);
	assert_int_equal(ms_store_open_ns(s, HOST, HOST ".kept", &b), 0);
	for (uint32_t first = 0; first < PAGES; first += RUN)
		for (uint32_t ns = 0; ns < 2; ns++) {
			for (uint32_t i = 0; i < RUN; i++)
				fill(buf + (size_t)i * GVM_PAGE_SIZE, (first + i) * 2 + ns + 1);
			assert_int_equal(ms_store_write(s, HOST, ns ? b : a, first, RUN, zero, buf, NULL), 0);
		}
	rss_full = self_rss_kib();
	assert_int_equal(ms_store_drop_ns(s, HOST, HOST ".gone", 0), 0);
	for (int t = 0; t < 500; t++) { /* the store's releaser thread at work */
		rss_dropped = self_rss_kib();
		if (rss_dropped + 60 * 1024 < rss_full)
			break;
		usleep(10000);
	}
	print_message("RSS %llu KiB full, %llu KiB after dropping 64 MiB\n",
		      (unsigned long long)rss_full, (unsigned long long)rss_dropped);
	assert_true(rss_dropped + 60 * 1024 < rss_full);
	for (uint32_t first = 0; first < PAGES; first += 256) {
		assert_int_equal(ms_store_read(s, HOST, b, first, 256, bitmap, out, &data_pages, NULL), 0);
		assert_int_equal(data_pages, 256);
		for (uint32_t i = 0; i < 256; i++) {
			fill(buf, (first + i) * 2 + 2);
			assert_memory_equal(out + (size_t)i * GVM_PAGE_SIZE, buf, GVM_PAGE_SIZE);
		}
	}
	ms_store_release_now(s); /* nothing left pending: a no-op */
	assert_int_equal(ms_store_discard(s, HOST, b, 0, PAGES / 2), 0);
	rss_discarded = self_rss_kib();
	assert_true(rss_discarded + 28 * 1024 < rss_dropped);
	assert_int_equal(ms_store_read(s, HOST, b, PAGES / 2 - 256, 256, bitmap, out, &data_pages, NULL), 0);
	assert_int_equal(data_pages, 0);
	assert_int_equal(ms_store_read(s, HOST, b, PAGES / 2, 256, bitmap, out, &data_pages, NULL), 0);
	assert_int_equal(data_pages, 256);
	assert_int_equal(ms_store_close(s), 0);
}

/* A drop returns before its memory is given back: the store stays full
 * capacity for writers at once (they may reuse the dropped slots), a
 * namespace opened again under the same name reads as zero, and the
 * releaser gives the rest back on its own. */
static void test_store_dropped_slots_are_reusable_at_once(void **state)
{
	enum { PAGES = 4096 };
	static uint8_t buf[256 * GVM_PAGE_SIZE], out[GVM_FRAME_DATA_MAX_BYTES];
	uint8_t zero[GVM_FRAME_BITMAP_MAX_BYTES] = { 0 }, bitmap[GVM_FRAME_BITMAP_MAX_BYTES];
	struct ms_store_info info;
	uint32_t a, data_pages;
	struct ms_store *s;
	char why[256];

	(void)state;
	assert_int_equal(ms_store_open(&s, NULL, PAGES * GVM_PAGE_SIZE, why, sizeof(why)), 0);
	for (int cycle = 0; cycle < 3; cycle++) {
		assert_int_equal(ms_store_open_ns(s, HOST, HOST ".vm", &a), 0);
		/* reading before writing: nothing of the last cycle shows */
		assert_int_equal(ms_store_read(s, HOST, a, 0, 256, bitmap, out, &data_pages, NULL), 0);
		assert_int_equal(data_pages, 0);
		for (uint32_t first = 0; first < PAGES; first += 256) {
			for (uint32_t i = 0; i < 256; i++)
				fill(buf + (size_t)i * GVM_PAGE_SIZE, first + i + 1000u * (uint32_t)cycle);
			assert_int_equal(ms_store_write(s, HOST, a, first, 256, zero, buf, NULL), 0);
		}
		ms_store_get_info(s, &info);
		assert_int_equal(info.used_pages, PAGES);
		assert_int_equal(ms_store_write(s, HOST, a, PAGES, 1, zero, buf, NULL), -ENOSPC);
		assert_int_equal(ms_store_read(s, HOST, a, PAGES - 256, 256, bitmap, out, &data_pages, NULL), 0);
		assert_int_equal(data_pages, 256);
		fill(buf, PAGES - 1 + 1000u * (uint32_t)cycle);
		assert_memory_equal(out + 255 * GVM_PAGE_SIZE, buf, GVM_PAGE_SIZE);
		assert_int_equal(ms_store_drop_ns(s, HOST, HOST ".vm", 0), 0);
		ms_store_get_info(s, &info);
		assert_int_equal(info.used_pages, 0);
	}
	assert_int_equal(ms_store_close(s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_matches_model_under_random_ops),
		cmocka_unit_test(test_store_file_survives_reopen_with_same_pages),
		cmocka_unit_test(test_store_ids_carry_a_random_tag_and_a_wrong_tag_is_unknown),
		cmocka_unit_test(test_store_an_anonymous_store_started_again_gives_other_ids),
		cmocka_unit_test(test_store_upgrades_a_format_1_file_and_refuses_an_unknown_format),
		cmocka_unit_test(test_store_each_page_tag_comes_back_with_its_page),
		cmocka_unit_test(test_store_page_tags_survive_a_reopen_and_drops_leave_none_in_the_file),
		cmocka_unit_test(test_store_upgrades_a_format_2_file_in_place_with_its_pages_intact),
		cmocka_unit_test(test_store_refuses_a_file_that_is_not_a_store),
		cmocka_unit_test(test_store_namespace_names_and_table_limit),
		cmocka_unit_test(test_store_serves_a_namespace_to_its_own_host_only),
		cmocka_unit_test(test_store_host_quota_is_a_quarter_of_the_table),
		cmocka_unit_test(test_store_drop_returns_memory_and_spares_neighbours),
		cmocka_unit_test(test_store_dropped_slots_are_reusable_at_once),
	};

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
