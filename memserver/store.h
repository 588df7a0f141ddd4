/* store.h: the donor's page store: namespaces (one per VM) of 4 KiB pages in
 * a fixed number of slots, each page with a page tag (GVM_PAGE_TAG_BYTES
 * the store keeps opaquely beside it), in anonymous memory or a backing file
 * whose pages and tags survive a restart. Thread-safe; server.c calls it
 * from every loop. */
#ifndef MS_STORE_H
#define MS_STORE_H

#include <stddef.h>
#include <stdint.h>

struct ms_store;

struct ms_store_info {
	uint64_t capacity_pages;
	uint64_t used_pages;
	uint32_t namespaces;
};

/* backing NULL: anonymous memory. capacity_bytes 0: the file's capacity or
 * MS_DEFAULT_CAPACITY_BYTES. On failure *why says what and how to fix it.
 * Capacity counts page data only (a slot per 4 KiB); the store's memory or
 * file is larger by its metadata: 32 bytes per slot (its record and its
 * page tag), the namespace table and a 4 KiB header. A backing file of an
 * older store format is upgraded in place (store.c). */
int ms_store_open(struct ms_store **out, const char *backing,
		  uint64_t capacity_bytes, char *why, size_t n);
/* Flushes a backing file to disk and frees everything. */
int ms_store_close(struct ms_store *s);

/* Namespaces belong to hosts: a name is "<host id>.<rest>" (names.h), and
 * every call below that takes a name or an id also takes the host the
 * caller speaks for. A name that names no host is -EINVAL; a namespace of
 * another host is -EACCES, checked under the lock the call works under, so
 * an id dropped and handed out again meanwhile is never served to the
 * wrong host. An unknown id is -ENOENT: one that never named a namespace,
 * or named one since dropped, or one of before an anonymous store's
 * restart (an id's random tag, memserver.h, no longer matches). */

/* Name -> id (never 0), created on first open. The id stays while the
 * namespace lives, across reopens of a backing file too; a namespace
 * created again gets another. -EDQUOT when host already holds
 * MS_HOST_NAMESPACES_MAX namespaces, -ENOSPC when MS_NAMESPACES_MAX are in
 * use (an existing namespace opens either way). */
int ms_store_open_ns(struct ms_store *s, const char *host, const char *name,
		     uint32_t *id);
/* Forgets a namespace (by name, or by id when name is NULL): -ENOENT. Its
 * memory goes back to the host in the background (a thread of the store),
 * so a large drop does not hold up other clients. */
int ms_store_drop_ns(struct ms_store *s, const char *host, const char *name,
		     uint32_t id);
/* Gives back now the memory of dropped namespaces still pending. */
void ms_store_release_now(struct ms_store *s);

/* Copies the stored pages of [first, first+count) into out, packed; sets the
 * zero bit of every page never written. *data_pages: pages copied. tags_out
 * NULL, or room for count page tags: the tag of each page copied, in the
 * same order (the i-th tag the i-th page's). */
int ms_store_read(struct ms_store *s, const char *host, uint32_t ns,
		  uint64_t first, uint32_t count, uint8_t *zero_bitmap,
		  uint8_t *out, uint32_t *data_pages, uint8_t *tags_out);
/* Stores count pages: packed non-zero pages in data, zero bits for the
 * rest (a zero page keeps no slot, so no tag). tags: NULL, and each page
 * stored gets an all-zero tag; or one tag per page in data, in its order.
 * All or nothing: -ENOSPC changes no page. */
int ms_store_write(struct ms_store *s, const char *host, uint32_t ns,
		   uint64_t first, uint32_t count, const uint8_t *zero_bitmap,
		   const uint8_t *data, const uint8_t *tags);
int ms_store_discard(struct ms_store *s, const char *host, uint32_t ns,
		     uint64_t first, uint32_t count);
/* Sets bit i of bitmap (LSB first, ceil(count / 8) bytes, cleared first)
 * when page first + i holds data: written as data and not since written as
 * a zero page, discarded or dropped. Costs the lesser of count and the
 * namespace's map size. */
int ms_store_list(struct ms_store *s, const char *host, uint32_t ns,
		  uint64_t first, uint32_t count, uint8_t *bitmap);

void ms_store_get_info(struct ms_store *s, struct ms_store_info *info);
/* Pages held for a namespace name into *pages (0 if unknown): 0, -EINVAL or
 * -EACCES. */
int ms_store_ns_pages(struct ms_store *s, const char *host, const char *name,
		      uint64_t *pages);

#endif
