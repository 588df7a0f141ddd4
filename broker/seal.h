/* seal.h: guest pages leave the broker only sealed (seal.c; the format is
 * in docs/protocol.md, the threat model in docs/security.md). Every page a
 * write-back sends is encrypted and authenticated with an AEAD under a key
 * of the VM's incarnation that never leaves the broker; the associated
 * data binds it to its namespace, page index and version, the count of its
 * seals, so a donor that flips a bit, hands back another page or an older
 * version of this one is caught when the page is opened. Key and versions
 * live in a file per incarnation in the state directory. evict.c seals
 * (off the loop); fault.c and replica.c open and check. */
#ifndef BK_SEAL_H
#define BK_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "frame.h"

#define BK_SEAL_DIR "pages"        /* STATE_DIR/pages/<incarnation, hex>: 0700 */
#define BK_SEAL_KEY_BYTES 32u
/* A page's version word: the count of its seals (0: never sealed: it
 * reads as zero), and a flag: its contents are zero now, whatever a donor
 * holds (written back as a zero page, or removed by the VM). */
#define BK_SEAL_VER_ZERO 0x80000000u
#define BK_SEAL_VER_MAX 0x7fffffffu /* seals of one page per incarnation */

/* The frame a page travels in: its contents and, sealed, its tag. */
#define BK_SEALED_PAGE_BYTES (GVM_PAGE_SIZE + GVM_PAGE_TAG_BYTES)

/* --page-crypto NAME: 0 with *out set, or -EINVAL. */
int bk_seal_parse(const char *name, enum bk_page_crypto *out);
const char *bk_seal_name(enum bk_page_crypto c);

/* Starts libsodium, settles the default (AES-256-GCM where the CPU has
 * AES-NI, else XChaCha20-Poly1305), refuses AES-256-GCM asked for on a CPU
 * without it, and opens STATE_DIR/pages (made 0700 if missing) for the
 * incarnations' files. Logs what is in force. 0, or -errno with why. */
int bk_seal_setup(struct bk_broker *b, char *why, size_t n);
/* The directory's descriptor (-1 without sealing), for the sandbox. */
int bk_seal_dirfd(const struct bk_broker *b);
void bk_seal_close(struct bk_broker *b);

/* A VM attaches: a new incarnation gets a file with a fresh random key
 * (when --page-crypto is not none); a re-attached one opens its file, and
 * keeps the cipher it was attached with (no file: it was never sealed, and
 * stays so). Sets vm->seal and every region's ver. 0, or -errno with why. */
int bk_seal_attach(struct bk_vm *vm, bool reattach, char *why, size_t n);
/* The VM's pages are dropped for good: its file goes. */
void bk_seal_forget(struct bk_broker *b, const uint8_t incarnation[GVM_INCARNATION_BYTES]);
/* Unmaps the VM's file and wipes its key (the file stays). */
void bk_seal_free(struct bk_vm *vm);

static inline bool bk_sealed(const struct bk_region *rg)
{
	return rg->ver != NULL;
}
/* Bytes a frame of count pages may carry for rg. */
static inline size_t bk_frame_bytes(const struct bk_region *rg, uint64_t count)
{
	return (size_t)count * (bk_sealed(rg) ? BK_SEALED_PAGE_BYTES : GVM_PAGE_SIZE);
}

/* A sealed region's page's version word (any thread: eviction's seal
 * runs on the thread pool). */
static inline uint32_t bk_seal_ver(const struct bk_region *rg, uint64_t page)
{
	return __atomic_load_n(&rg->ver[page], __ATOMIC_RELAXED);
}

/* Whether page has been sealed BK_SEAL_VER_MAX times: it cannot be
 * sealed again, so it stays resident once written (evict.c skips it). */
static inline bool bk_seal_exhausted(const struct bk_region *rg, uint64_t page)
{
	return bk_sealed(rg) && (bk_seal_ver(rg, page) & BK_SEAL_VER_MAX) == BK_SEAL_VER_MAX;
}

/* A write-back starts (on the loop): the run's pages are data again until
 * the sealing finds them zero. */
void bk_seal_writeback_begin(struct bk_region *rg, uint64_t first, uint64_t count);
/* Off the loop: h is a WRITE of h->page_count pages from h->first_page
 * whose zero bits are set and data pages packed in data, with room for
 * their tags after them. Seals each data page in place under its next
 * version, appends the tags, marks the zero pages zero. 0, or -EOVERFLOW
 * when a page has used up its versions (nothing changed then). */
int bk_seal_pages(struct bk_region *rg, struct gvm_hdr *h, uint8_t *data);
/* Pages the VM removed: zero from now on, whatever a donor holds. */
void bk_seal_zeroed(struct bk_region *rg, uint64_t first, uint64_t count);

/* Pages of a reply that need not open, bit i for page first + i: in
 * memory or lost when it came, so nothing installs them from it while
 * they stay so. The version of one in memory may be ahead of every
 * donor's (a write-back refused, or cut short by a crash, counted it).
 * Taken on the loop, which owns those bits. */
#define BK_SEAL_SKIP_WORDS (GVM_FRAME_PAGES_MAX / 64u)
void bk_seal_skip_map(const struct bk_region *rg, uint64_t first, uint32_t count,
		      uint64_t skip[BK_SEAL_SKIP_WORDS]);

/* A READ reply h of a sealed region (tags after the data pages in
 * payload): every page checked and opened, expanded to h->page_count full
 * pages in out (which may be payload itself). A page never sealed, or
 * zero now, comes out zero whatever the donor sent. A page of skip that
 * fails comes out zero, with its bit set in unopened (if not NULL): the
 * caller must not install it, nor keep the pages for later. Any thread.
 * 0, or -EBADMSG with *bad the first other page that failed (a flipped
 * bit, another page's or an older version's data, a zero bit for a page
 * that has data): out is then garbage. */
int bk_seal_open(const struct bk_region *rg, const struct gvm_hdr *h, const uint8_t *payload,
		 uint8_t *out, const uint64_t skip[BK_SEAL_SKIP_WORDS],
		 uint64_t unopened[BK_SEAL_SKIP_WORDS], uint64_t *bad);

#endif
