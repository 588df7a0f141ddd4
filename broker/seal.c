/* seal.c: sealing guest pages for the donors (seal.h). A VM incarnation's
 * file, STATE_DIR/pages/<incarnation in hex> (0600), holds its cipher, its
 * random key and a version word per page of each region; it is mapped
 * shared, so a version counted is in the page cache before the page goes
 * out, whatever kills the broker, and a restarted broker opens every page
 * the donors hold. The nonce is made of the region, the page and its
 * version, so it is never used twice under a key; the associated data is
 * the namespace name, the page index and the version. Called by attach.c
 * (the file), evict.c (sealing, on libuv's thread pool), fault.c and
 * replica.c (opening, on the loop). */
#include "seal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define SEAL_MAGIC "GVMSEAL1"
#define SEAL_FORMAT 1u
#define SEAL_HDR_BYTES 4096u
#define SEAL_NONCE_BYTES 24u /* XChaCha20's; AES-256-GCM uses the first 12 */
#define SEAL_AD_MAX_BYTES (GVM_NS_NAME_MAX_BYTES + 12u)

/* The file's first page. */
struct seal_hdr {
	char magic[8];
	uint32_t format;
	uint32_t cipher; /* enum bk_page_crypto */
	uint8_t key[BK_SEAL_KEY_BYTES];
	uint8_t incarnation[GVM_INCARNATION_BYTES];
	uint32_t nregions;
	uint64_t npages[GVM_CTL_REGIONS_MAX];
	uint64_t off[GVM_CTL_REGIONS_MAX]; /* where each region's versions start */
};
_Static_assert(sizeof(struct seal_hdr) <= SEAL_HDR_BYTES, "the header fits its page");

struct bk_seal {
	enum bk_page_crypto cipher;
	struct seal_hdr *hdr; /* the mapped file */
	size_t map_bytes;
	uint8_t key[BK_SEAL_KEY_BYTES];
	crypto_aead_aes256gcm_state *aes; /* expanded once: AES-256-GCM only */
};

int bk_seal_parse(const char *name, enum bk_page_crypto *out)
{
	static const struct {
		const char *name;
		enum bk_page_crypto c;
	} names[] = {
		{ "aes-256-gcm", BK_CRYPTO_AES256GCM },
		{ "xchacha20-poly1305", BK_CRYPTO_XCHACHA20 },
		{ "none", BK_CRYPTO_NONE },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(name, names[i].name)) {
			*out = names[i].c;
			return 0;
		}
	return -EINVAL;
}

const char *bk_seal_name(enum bk_page_crypto c)
{
	switch (c) {
	case BK_CRYPTO_AES256GCM:
		return "aes-256-gcm";
	case BK_CRYPTO_XCHACHA20:
		return "xchacha20-poly1305";
	case BK_CRYPTO_NONE:
		return "none";
	default:
		return "default";
	}
}

int bk_seal_setup(struct bk_broker *b, char *why, size_t n)
{
	enum bk_page_crypto *c = &b->cfg.page_crypto;
	bool aesni;
	char path[4096];

	b->seal_dirfd = -1;
	if (sodium_init() < 0) {
		snprintf(why, n, "libsodium failed to initialise");
		return -EIO;
	}
	aesni = crypto_aead_aes256gcm_is_available();
	if (*c == BK_CRYPTO_DEFAULT)
		*c = aesni ? BK_CRYPTO_AES256GCM : BK_CRYPTO_XCHACHA20;
	if (*c == BK_CRYPTO_AES256GCM && !aesni) {
		snprintf(why, n, "--page-crypto aes-256-gcm needs a CPU with AES-NI and PCLMUL, "
			 "which this one lacks; use xchacha20-poly1305");
		return -ENOTSUP;
	}
	snprintf(path, sizeof(path), "%s/%s", b->cfg.state_dir, BK_SEAL_DIR);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(why, n, "cannot make %s: %s", path, strerror(errno));
		return -errno;
	}
	b->seal_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (b->seal_dirfd < 0) {
		snprintf(why, n, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	if (*c == BK_CRYPTO_NONE)
		gvm_warn("page crypto: none (--page-crypto none): new VMs' pages go to the donors "
			 "in clear, and a donor's changes to them go unseen");
	else
		gvm_info("page crypto: %s%s: every page a new VM writes back is sealed under a key "
			 "of its own (kept in %s)", bk_seal_name(*c),
			 *c == BK_CRYPTO_AES256GCM ? " (AES-NI)" :
			 aesni ? "" : " (this CPU has no AES-NI)", path);
	return 0;
}

int bk_seal_dirfd(const struct bk_broker *b)
{
	return b->seal_dirfd;
}

void bk_seal_close(struct bk_broker *b)
{
	if (b->seal_dirfd >= 0)
		close(b->seal_dirfd);
	b->seal_dirfd = -1;
}

static void file_name(char out[2 * GVM_INCARNATION_BYTES + 1],
		      const uint8_t incarnation[GVM_INCARNATION_BYTES])
{
	sodium_bin2hex(out, 2 * GVM_INCARNATION_BYTES + 1, incarnation, GVM_INCARNATION_BYTES);
}

static uint64_t page_round(uint64_t bytes)
{
	return (bytes + GVM_PAGE_SIZE - 1) & ~(uint64_t)(GVM_PAGE_SIZE - 1);
}

/* The file's size for vm's regions, with their offsets in h. */
static uint64_t layout(const struct bk_vm *vm, struct seal_hdr *h)
{
	uint64_t off = SEAL_HDR_BYTES;

	h->nregions = (uint32_t)vm->nregions;
	for (size_t i = 0; i < vm->nregions; i++) {
		h->npages[i] = vm->regions[i].npages;
		h->off[i] = off;
		off += page_round(vm->regions[i].npages * sizeof(uint32_t));
	}
	return off;
}

/* Opens (reattach) or makes the VM's file, mapped into s. */
static int map_file(struct bk_vm *vm, struct bk_seal *s, bool reattach, char *why, size_t n)
{
	struct bk_broker *b = vm->b;
	char name[2 * GVM_INCARNATION_BYTES + 1];
	struct seal_hdr want = { 0 };
	uint64_t bytes = layout(vm, &want);
	struct stat st;
	int fd, err;

	file_name(name, vm->incarnation);
	if (reattach)
		fd = openat(b->seal_dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	else
		fd = openat(b->seal_dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			    0600);
	if (fd < 0) {
		err = -errno;
		if (err != -ENOENT || !reattach)
			snprintf(why, n, "cannot %s its page-crypto state %s/%s: %s",
				 reattach ? "open" : "make", BK_SEAL_DIR, name, strerror(-err));
		return err;
	}
	if (fstat(fd, &st) < 0 || (!reattach && ftruncate(fd, (off_t)bytes) < 0)) {
		err = -errno;
		snprintf(why, n, "its page-crypto state %s/%s: %s", BK_SEAL_DIR, name, strerror(-err));
		goto out;
	}
	if (reattach && (uint64_t)st.st_size != bytes) {
		err = -EINVAL;
		snprintf(why, n, "its page-crypto state %s/%s is %lld bytes, not the %llu its regions "
			 "need: they are not the ones it was attached with", BK_SEAL_DIR, name,
			 (long long)st.st_size, (unsigned long long)bytes);
		goto out;
	}
	s->hdr = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s->hdr == MAP_FAILED) {
		s->hdr = NULL;
		err = -errno;
		snprintf(why, n, "cannot map its page-crypto state: %s", strerror(-err));
		goto out;
	}
	s->map_bytes = bytes;
	err = 0;
	if (!reattach) {
		memcpy(want.magic, SEAL_MAGIC, sizeof(want.magic));
		want.format = SEAL_FORMAT;
		want.cipher = (uint32_t)b->cfg.page_crypto;
		randombytes_buf(want.key, sizeof(want.key));
		memcpy(want.incarnation, vm->incarnation, GVM_INCARNATION_BYTES);
		memcpy(s->hdr, &want, sizeof(want));
		sodium_memzero(&want, sizeof(want));
	} else if (memcmp(s->hdr->magic, SEAL_MAGIC, sizeof(want.magic)) ||
		   s->hdr->format != SEAL_FORMAT ||
		   memcmp(s->hdr->incarnation, vm->incarnation, GVM_INCARNATION_BYTES) ||
		   (s->hdr->cipher != BK_CRYPTO_AES256GCM && s->hdr->cipher != BK_CRYPTO_XCHACHA20) ||
		   s->hdr->nregions != want.nregions ||
		   memcmp(s->hdr->npages, want.npages, sizeof(want.npages)) ||
		   memcmp(s->hdr->off, want.off, sizeof(want.off))) {
		err = -EINVAL;
		snprintf(why, n, "its page-crypto state %s/%s is damaged or of other regions",
			 BK_SEAL_DIR, name);
	}
out:
	close(fd);
	if (err && s->hdr) {
		munmap(s->hdr, bytes);
		s->hdr = NULL;
	}
	if (err && !reattach)
		unlinkat(b->seal_dirfd, name, 0);
	return err;
}

int bk_seal_attach(struct bk_vm *vm, bool reattach, char *why, size_t n)
{
	struct bk_broker *b = vm->b;
	struct bk_seal *s;
	int err;

	if (b->seal_dirfd < 0 || (!reattach && b->cfg.page_crypto == BK_CRYPTO_NONE))
		return 0;
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(why, n, "out of memory");
		return -ENOMEM;
	}
	err = map_file(vm, s, reattach, why, n);
	if (err == -ENOENT && reattach) {
		gvm_warn("vm %s: re-attached with no page-crypto state: it was attached unsealed "
			 "(--page-crypto none), and its pages stay unsealed", vm->name);
		free(s);
		return 0;
	}
	if (err) {
		free(s);
		return err;
	}
	s->cipher = (enum bk_page_crypto)s->hdr->cipher;
	memcpy(s->key, s->hdr->key, sizeof(s->key));
	if (s->cipher == BK_CRYPTO_AES256GCM) {
		if (!crypto_aead_aes256gcm_is_available()) {
			snprintf(why, n, "its pages are sealed with AES-256-GCM, which this CPU "
				 "cannot open (no AES-NI)");
			err = -ENOTSUP;
		} else if (!(s->aes = aligned_alloc(64, sizeof(*s->aes)))) {
			snprintf(why, n, "out of memory");
			err = -ENOMEM;
		} else {
			crypto_aead_aes256gcm_beforenm(s->aes, s->key);
		}
	}
	if (err) {
		munmap(s->hdr, s->map_bytes);
		sodium_memzero(s->key, sizeof(s->key));
		free(s);
		return err;
	}
	vm->seal = s;
	for (size_t i = 0; i < vm->nregions; i++)
		vm->regions[i].ver = (uint32_t *)((uint8_t *)s->hdr + s->hdr->off[i]);
	if (reattach && s->cipher != b->cfg.page_crypto)
		gvm_info("vm %s: its pages stay sealed with %s, as when it attached", vm->name,
			 bk_seal_name(s->cipher));
	return 0;
}

void bk_seal_forget(struct bk_broker *b, const uint8_t incarnation[GVM_INCARNATION_BYTES])
{
	char name[2 * GVM_INCARNATION_BYTES + 1];

	if (b->seal_dirfd < 0)
		return;
	file_name(name, incarnation);
	if (unlinkat(b->seal_dirfd, name, 0) < 0 && errno != ENOENT)
		gvm_warn("cannot remove page-crypto state %s/%s: %s", BK_SEAL_DIR, name,
			 strerror(errno));
}

void bk_seal_free(struct bk_vm *vm)
{
	struct bk_seal *s = vm->seal;

	if (!s)
		return;
	for (size_t i = 0; i < vm->nregions; i++)
		vm->regions[i].ver = NULL;
	munmap(s->hdr, s->map_bytes);
	sodium_memzero(s->key, sizeof(s->key));
	if (s->aes) {
		sodium_memzero(s->aes, sizeof(*s->aes));
		free(s->aes);
	}
	free(s);
	vm->seal = NULL;
}

/* ---- the versions ---- */

void bk_seal_writeback_begin(struct bk_region *rg, uint64_t first, uint64_t count)
{
	if (!bk_sealed(rg))
		return;
	for (uint64_t p = first; p < first + count; p++)
		__atomic_fetch_and(&rg->ver[p], ~BK_SEAL_VER_ZERO, __ATOMIC_RELAXED);
}

void bk_seal_zeroed(struct bk_region *rg, uint64_t first, uint64_t count)
{
	if (!bk_sealed(rg))
		return;
	for (uint64_t p = first; p < first + count; p++)
		__atomic_fetch_or(&rg->ver[p], BK_SEAL_VER_ZERO, __ATOMIC_RELAXED);
}

/* ---- sealing and opening ---- */

/* The nonce: region (16 bits), page (48 bits), version (32 bits), little
 * endian, then zeros; the associated data: the namespace name, the page
 * (64 bits) and the version (32 bits). Returns the AD's length. */
static size_t nonce_ad(const struct bk_region *rg, uint64_t page, uint32_t ver,
		       uint8_t nonce[SEAL_NONCE_BYTES], uint8_t ad[SEAL_AD_MAX_BYTES])
{
	size_t len = strlen(rg->ns);

	memset(nonce, 0, SEAL_NONCE_BYTES);
	nonce[0] = (uint8_t)rg->index;
	nonce[1] = (uint8_t)(rg->index >> 8);
	for (int i = 0; i < 6; i++)
		nonce[2 + i] = (uint8_t)(page >> (8 * i));
	for (int i = 0; i < 4; i++)
		nonce[8 + i] = (uint8_t)(ver >> (8 * i));
	memcpy(ad, rg->ns, len);
	for (int i = 0; i < 8; i++)
		ad[len + i] = (uint8_t)(page >> (8 * i));
	for (int i = 0; i < 4; i++)
		ad[len + 8 + i] = (uint8_t)(ver >> (8 * i));
	return len + 12;
}

static void seal_page(const struct bk_seal *s, const struct bk_region *rg, uint64_t page,
		      uint32_t ver, uint8_t *data, uint8_t *tag)
{
	uint8_t nonce[SEAL_NONCE_BYTES], ad[SEAL_AD_MAX_BYTES];
	size_t adlen = nonce_ad(rg, page, ver, nonce, ad);

	if (s->cipher == BK_CRYPTO_AES256GCM)
		crypto_aead_aes256gcm_encrypt_detached_afternm(data, tag, NULL, data, GVM_PAGE_SIZE,
							       ad, adlen, NULL, nonce, s->aes);
	else
		crypto_aead_xchacha20poly1305_ietf_encrypt_detached(data, tag, NULL, data,
								    GVM_PAGE_SIZE, ad, adlen, NULL,
								    nonce, s->key);
}

static int open_page(const struct bk_seal *s, const struct bk_region *rg, uint64_t page,
		     uint32_t ver, const uint8_t *in, const uint8_t *tag, uint8_t *out)
{
	uint8_t nonce[SEAL_NONCE_BYTES], ad[SEAL_AD_MAX_BYTES];
	size_t adlen = nonce_ad(rg, page, ver, nonce, ad);

	if (s->cipher == BK_CRYPTO_AES256GCM)
		return crypto_aead_aes256gcm_decrypt_detached_afternm(out, NULL, in, GVM_PAGE_SIZE,
								      tag, ad, adlen, nonce, s->aes);
	return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(out, NULL, in, GVM_PAGE_SIZE,
								   tag, ad, adlen, nonce, s->key);
}

int bk_seal_pages(struct bk_region *rg, struct gvm_hdr *h, uint8_t *data)
{
	const struct bk_seal *s = rg->vm->seal;
	uint32_t ndata = gvm_hdr_data_pages(h), k = 0;
	uint8_t *tags = data + (size_t)ndata * GVM_PAGE_SIZE;

	for (uint32_t i = 0; i < h->page_count; i++)
		if (!gvm_hdr_zero_test(h, i) && bk_seal_exhausted(rg, h->first_page + i))
			return -EOVERFLOW;
	for (uint32_t i = 0; i < h->page_count; i++) {
		uint64_t p = h->first_page + i;
		uint32_t old = bk_seal_ver(rg, p), next;

		if (gvm_hdr_zero_test(h, i)) {
			__atomic_fetch_or(&rg->ver[p], BK_SEAL_VER_ZERO, __ATOMIC_RELAXED);
			continue;
		}
		/* The count goes up; a zero flag set meanwhile (the VM removed
		 * the page after it was read) stays. */
		do
			next = ((old & BK_SEAL_VER_MAX) + 1) | (old & BK_SEAL_VER_ZERO);
		while (!__atomic_compare_exchange_n(&rg->ver[p], &old, next, false, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED));
		seal_page(s, rg, p, next & BK_SEAL_VER_MAX, data + (size_t)k * GVM_PAGE_SIZE,
			  tags + (size_t)k * GVM_PAGE_TAG_BYTES);
		k++;
	}
	h->tag_bytes = GVM_PAGE_TAG_BYTES;
	h->payload_len = ndata * BK_SEALED_PAGE_BYTES;
	return 0;
}

void bk_seal_skip_map(const struct bk_region *rg, uint64_t first, uint32_t count,
		      uint64_t skip[BK_SEAL_SKIP_WORDS])
{
	memset(skip, 0, BK_SEAL_SKIP_WORDS * sizeof(skip[0]));
	for (uint32_t i = 0; i < count && i < GVM_FRAME_PAGES_MAX; i++)
		if (bk_bit_test(rg->resident, first + i) || bk_bit_test(rg->lost, first + i))
			bk_bit_set(skip, i);
}

int bk_seal_open(const struct bk_region *rg, const struct gvm_hdr *h, const uint8_t *payload,
		 uint8_t *out, const uint64_t skip[BK_SEAL_SKIP_WORDS],
		 uint64_t unopened[BK_SEAL_SKIP_WORDS], uint64_t *bad)
{
	const struct bk_seal *s = rg->vm->seal;
	uint32_t n = h->page_count < GVM_FRAME_PAGES_MAX ? h->page_count : GVM_FRAME_PAGES_MAX;
	uint32_t k = gvm_hdr_data_pages(h);
	uint8_t tags[GVM_FRAME_PAGES_MAX * GVM_PAGE_TAG_BYTES];

	if (unopened)
		memset(unopened, 0, BK_SEAL_SKIP_WORDS * sizeof(unopened[0]));
	if (h->tag_bytes != GVM_PAGE_TAG_BYTES) {
		*bad = h->first_page;
		return -EBADMSG;
	}
	/* out may be payload: the tags go aside first, and the pages are
	 * done last first (a data page only ever moves up, as in
	 * gvm_frame_unpack_pages). */
	memcpy(tags, gvm_frame_tags(h, payload), (size_t)k * GVM_PAGE_TAG_BYTES);
	for (uint32_t i = n; i-- > 0;) {
		uint64_t p = h->first_page + i;
		uint32_t v = bk_seal_ver(rg, p);
		uint8_t *to = out + (size_t)i * GVM_PAGE_SIZE;
		bool zero_now = !v || (v & BK_SEAL_VER_ZERO), ok = true;

		if (gvm_hdr_zero_test(h, i)) {
			ok = zero_now; /* a donor's zero for a page with data is a lie */
			memset(to, 0, GVM_PAGE_SIZE);
		} else if (k--, zero_now) {
			memset(to, 0, GVM_PAGE_SIZE); /* old data of a page zero now */
		} else if (open_page(s, rg, p, v, payload + (size_t)k * GVM_PAGE_SIZE,
				     tags + (size_t)k * GVM_PAGE_TAG_BYTES, to)) {
			ok = false;
			memset(to, 0, GVM_PAGE_SIZE);
		}
		if (ok)
			continue;
		if (!skip || !bk_bit_test(skip, i)) {
			*bad = p;
			return -EBADMSG;
		}
		if (unopened)
			bk_bit_set(unopened, i);
	}
	return 0;
}
