/* store.c: the donor's page store (store.h). One layout for anonymous memory
 * and for a backing file: a header, a namespace table, a slot table saying
 * which (namespace, page) each 4 KiB data slot holds, the slots, then each
 * slot's page tag (16 opaque bytes the broker keeps beside a page). Each
 * namespace indexes its pages with an open-addressing hash map; a restart
 * from a file rebuilds the maps from the slot table. A namespace belongs to
 * the host its name starts with (names.h): every call checks that under
 * the store's lock, so server.c cannot serve one host another's pages. Its
 * id carries a random tag beside its table index (memserver.h), so an id
 * outlives neither the namespace nor an anonymous store. */
#include "store.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "memserver.h"
#include "names.h"

#define STORE_MAGIC "GVMSTOR1"
/* 2: a namespace record keeps its id's tag. 3: a page tag per slot, in an
 * area after the slots. A file of format 1 or 2 is upgraded in place when
 * opened: it grows by the page tag area (its pages' tags read as zero), and
 * a format-1 file's namespaces get id tags, so new ids. */
#define STORE_VERSION 3u

struct store_hdr {
	char magic[8];
	uint32_t version;
	uint32_t page_size;
	uint64_t slots;
	uint64_t ns_off, slot_off, data_off, total_bytes;
	uint32_t clean; /* 1 after a clean shutdown */
	/* Format 3: GVM_PAGE_TAG_BYTES per slot, where formats 1 and 2 ended
	 * (their files hold 0 here: the header page was zero past clean). */
	uint64_t page_tag_off;
};
_Static_assert(offsetof(struct store_hdr, clean) == 56 &&
		       offsetof(struct store_hdr, page_tag_off) == 64,
	       "formats 1 and 2 keep their header fields where they were");

struct store_ns_rec {
	char name[GVM_NS_NAME_MAX_BYTES + 1];
	uint32_t used;
	/* The high bits of its id (1 .. 2^MS_NS_TAG_BITS - 1). Kept when the
	 * namespace is dropped, so the next one at this index differs. */
	uint32_t tag;
};

struct store_slot_rec {
	uint32_t ns; /* 0: free; else namespace table index + 1 */
	uint32_t pad;
	uint64_t page;
};

/* page -> slot, linear probing; key 0 marks an empty cell (keys are page+1). */
struct pmap {
	uint64_t *keys;
	uint32_t *vals;
	uint32_t cap, len;
};

struct ms_store {
	pthread_rwlock_t lock;
	uint8_t *base;
	size_t map_bytes;
	int fd; /* -1: anonymous */
	struct store_hdr *hdr;
	struct store_ns_rec *nsrec; /* [MS_NAMESPACES_MAX], see ns_id() */
	struct store_slot_rec *slot;
	uint8_t *data;
	uint8_t *page_tags; /* GVM_PAGE_TAG_BYTES per slot */
	/* A backing file of an older format this open upgrades: its format,
	 * header and size as found (0: none), to undo it if the open fails. */
	uint32_t upgraded_from;
	struct store_hdr found_hdr;
	uint64_t found_bytes;
	struct pmap maps[MS_NAMESPACES_MAX];
	uint32_t *free_slots; /* stack of released slots */
	uint32_t nfree;
	/* Slots of dropped namespaces whose memory the releaser thread has yet
	 * to give back: a stack, lowest on top; writes may take them first. */
	uint32_t *pend_slots;
	uint32_t npend;
	uint32_t nreleasing; /* taken by the releaser, not yet free */
	pthread_t releaser;
	bool releaser_running;
	pthread_mutex_t rel_mu;
	pthread_cond_t rel_cv;
	bool rel_wanted, rel_stop;
	uint32_t next_fresh; /* slots at or above were never used */
	uint64_t used;
};

static uint64_t pmap_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return k;
}

static bool pmap_find(const struct pmap *m, uint64_t page, uint32_t *idx)
{
	uint64_t key = page + 1;

	if (!m->cap)
		return false;
	for (uint32_t i = pmap_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			*idx = i;
			return true;
		}
		if (!m->keys[i])
			return false;
	}
}

static int pmap_grow(struct pmap *m)
{
	struct pmap n = { .cap = m->cap ? m->cap * 2 : 64 };

	n.keys = calloc(n.cap, sizeof(*n.keys));
	n.vals = malloc(n.cap * sizeof(*n.vals));
	if (!n.keys || !n.vals) {
		free(n.keys);
		free(n.vals);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < m->cap; i++) {
		uint32_t j;

		if (!m->keys[i])
			continue;
		for (j = pmap_hash(m->keys[i]) & (n.cap - 1); n.keys[j];
		     j = (j + 1) & (n.cap - 1))
			;
		n.keys[j] = m->keys[i];
		n.vals[j] = m->vals[i];
	}
	n.len = m->len;
	free(m->keys);
	free(m->vals);
	*m = n;
	return 0;
}

/* Inserts a page known to be absent. */
static int pmap_insert(struct pmap *m, uint64_t page, uint32_t slot)
{
	uint64_t key = page + 1;
	uint32_t i;

	if ((uint64_t)(m->len + 1) * 10 > (uint64_t)m->cap * 7) {
		int err = pmap_grow(m);
		if (err)
			return err;
	}
	for (i = pmap_hash(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
		;
	m->keys[i] = key;
	m->vals[i] = slot;
	m->len++;
	return 0;
}

/* Backward-shift deletion keeps every probe chain unbroken. */
static void pmap_remove_at(struct pmap *m, uint32_t i)
{
	uint32_t mask = m->cap - 1, j = i;

	for (;;) {
		uint32_t home;

		j = (j + 1) & mask;
		if (!m->keys[j])
			break;
		home = pmap_hash(m->keys[j]) & mask;
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		m->keys[i] = m->keys[j];
		m->vals[i] = m->vals[j];
		i = j;
	}
	m->keys[i] = 0;
	m->len--;
}

static void pmap_free(struct pmap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static uint8_t *slot_data(struct ms_store *s, uint32_t slot)
{
	return s->data + (size_t)slot * GVM_PAGE_SIZE;
}

static uint8_t *slot_page_tag(struct ms_store *s, uint32_t slot)
{
	return s->page_tags + (size_t)slot * GVM_PAGE_TAG_BYTES;
}

static uint64_t slots_available(const struct ms_store *s)
{
	return s->nfree + s->npend + (s->hdr->slots - s->next_fresh);
}

static uint32_t slot_take(struct ms_store *s)
{
	if (s->nfree)
		return s->free_slots[--s->nfree];
	if (s->next_fresh < s->hdr->slots)
		return s->next_fresh++;
	return s->pend_slots[--s->npend]; /* its memory is reused, not released */
}

static int cmp_slot_desc(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x < y) - (x > y);
}

/* Returns the memory of n slots, sorted highest first, to the host, so a
 * donor's RSS follows its data: one madvise (or hole punch) per run of
 * adjacent slots (a namespace written in order sits in long runs). Their
 * page tags are zeroed, so no dropped page leaves its tag behind either. */
static void release_memory(struct ms_store *s, const uint32_t *slots, size_t n)
{
	for (size_t i = 0, j; i < n; i = j) {
		uint8_t *p;
		size_t len;

		for (j = i + 1; j < n && slots[j] == slots[j - 1] - 1; j++)
			;
		p = slot_data(s, slots[j - 1]);
		len = (j - i) * GVM_PAGE_SIZE;
		if (s->fd >= 0)
			fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  (off_t)(p - s->base), (off_t)len);
		else
			madvise(p, len, MADV_DONTNEED);
		memset(slot_page_tag(s, slots[j - 1]), 0, (j - i) * GVM_PAGE_TAG_BYTES);
	}
}

/* Frees n slots now, memory and all. Sorts slots; the lowest freed slot is
 * handed out first again. */
static void slots_release(struct ms_store *s, uint32_t *slots, size_t n)
{
	if (!n)
		return;
	qsort(slots, n, sizeof(*slots), cmp_slot_desc);
	release_memory(s, slots, n);
	for (size_t i = 0; i < n; i++) {
		s->slot[slots[i]].ns = 0;
		s->free_slots[s->nfree++] = slots[i];
	}
	s->used -= n;
}

static void slot_release(struct ms_store *s, uint32_t slot)
{
	slots_release(s, &slot, 1);
}

/* One step of the releaser: takes up to RELEASE_CHUNK pending slots, gives
 * their memory back outside the lock (no one else can reach them), then
 * frees them. False when nothing was pending. */
#define RELEASE_CHUNK 256u /* 1 MiB: the write lock is held only to take and give back */
static bool release_some(struct ms_store *s)
{
	uint32_t chunk[RELEASE_CHUNK];
	size_t n = 0;

	pthread_rwlock_wrlock(&s->lock);
	while (n < RELEASE_CHUNK && s->npend)
		chunk[n++] = s->pend_slots[--s->npend];
	__atomic_store_n(&s->nreleasing, s->nreleasing + (uint32_t)n, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&s->lock);
	if (!n)
		return false;
	qsort(chunk, n, sizeof(*chunk), cmp_slot_desc);
	release_memory(s, chunk, n);
	pthread_rwlock_wrlock(&s->lock);
	for (size_t i = 0; i < n; i++)
		s->free_slots[s->nfree++] = chunk[i];
	__atomic_store_n(&s->nreleasing, s->nreleasing - (uint32_t)n, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&s->lock);
	return true;
}

static void *releaser_main(void *arg)
{
	struct ms_store *s = arg;

	pthread_mutex_lock(&s->rel_mu);
	while (!s->rel_stop) {
		if (!s->rel_wanted) {
			pthread_cond_wait(&s->rel_cv, &s->rel_mu);
			continue;
		}
		s->rel_wanted = false;
		pthread_mutex_unlock(&s->rel_mu);
		while (release_some(s))
			;
		pthread_mutex_lock(&s->rel_mu);
	}
	pthread_mutex_unlock(&s->rel_mu);
	return NULL;
}

void ms_store_release_now(struct ms_store *s)
{
	while (release_some(s))
		;
}

#define NS_INDEX_MASK ((1u << MS_NS_INDEX_BITS) - 1u)

/* The id of the namespace at table index idx. */
static uint32_t ns_id(const struct ms_store *s, uint32_t idx)
{
	return s->nsrec[idx].tag << MS_NS_INDEX_BITS | (idx + 1u);
}

/* A tag for a namespace created where one with tag old was: random, never
 * 0 and never old. */
static uint32_t tag_draw(uint32_t old)
{
	uint32_t tag;

	do
		tag = 1u + randombytes_uniform((1u << MS_NS_TAG_BITS) - 1u);
	while (tag == old);
	return tag;
}

/* 0 and *idx if id is a namespace of host; -ENOENT if id names none (an
 * index past the table or unused, or a tag of another namespace: one
 * dropped, or one of before a restart), -EACCES if another host's. */
static int ns_check(const struct ms_store *s, const char *host, uint32_t id,
		    uint32_t *idx)
{
	uint32_t low = id & NS_INDEX_MASK;
	const struct store_ns_rec *rec;

	if (low == 0 || low > MS_NAMESPACES_MAX)
		return -ENOENT;
	rec = &s->nsrec[low - 1];
	if (!rec->used || rec->tag != id >> MS_NS_INDEX_BITS)
		return -ENOENT;
	*idx = low - 1;
	return gvm_ns_owned_by(rec->name, host) ? 0 : -EACCES;
}

/* 0 if name is a namespace name host may use: "<host>.<rest>", printable,
 * at most GVM_NS_NAME_MAX_BYTES. -EINVAL if it is no namespace name (it
 * names no host), -EACCES if it is another host's. */
static int name_check(const char *host, const char *name)
{
	char owner[GVM_HOST_ID_MAX_BYTES + 1];
	size_t len = strlen(name);

	if (len == 0 || len > GVM_NS_NAME_MAX_BYTES || gvm_ns_host(name, owner))
		return -EINVAL;
	if (!name[strlen(owner) + 1])
		return -EINVAL; /* "<host>." and nothing after */
	for (const char *p = name; *p; p++)
		if (!isgraph((unsigned char)*p))
			return -EINVAL;
	return strcmp(owner, host) ? -EACCES : 0;
}

static uint64_t page_round_up(uint64_t n)
{
	return (n + GVM_PAGE_SIZE - 1) & ~(uint64_t)(GVM_PAGE_SIZE - 1);
}

/* Where everything lies in a store of slots slots, format 3. Formats 1 and
 * 2 are the same up to the end of the data slots, where they ended: at
 * page_tag_off. */
struct store_geometry {
	uint64_t ns_off, slot_off, data_off, page_tag_off, total_bytes;
};

static void store_geometry(uint64_t slots, struct store_geometry *g)
{
	g->ns_off = 4096;
	g->slot_off = g->ns_off + MS_NAMESPACES_MAX * sizeof(struct store_ns_rec);
	g->data_off = page_round_up(g->slot_off + slots * sizeof(struct store_slot_rec));
	g->page_tag_off = g->data_off + slots * GVM_PAGE_SIZE;
	g->total_bytes = page_round_up(g->page_tag_off + slots * GVM_PAGE_TAG_BYTES);
}

static void store_layout(struct ms_store *s, uint64_t slots)
{
	struct store_geometry g;

	store_geometry(slots, &g);
	s->map_bytes = g.total_bytes;
	s->hdr->slots = slots;
	s->hdr->ns_off = g.ns_off;
	s->hdr->slot_off = g.slot_off;
	s->hdr->data_off = g.data_off;
	s->hdr->page_tag_off = g.page_tag_off;
	s->hdr->total_bytes = g.total_bytes;
}

static void store_bind(struct ms_store *s)
{
	s->hdr = (struct store_hdr *)s->base;
	s->nsrec = (struct store_ns_rec *)(s->base + s->hdr->ns_off);
	s->slot = (struct store_slot_rec *)(s->base + s->hdr->slot_off);
	s->data = s->base + s->hdr->data_off;
	s->page_tags = s->base + s->hdr->page_tag_off;
}

static size_t layout_bytes(uint64_t slots)
{
	struct store_geometry g;

	store_geometry(slots, &g);
	return g.total_bytes;
}

/* A file header h (magic, page size and slot count checked) of a format
 * this store reads, st_size bytes long: its offsets are where this store
 * puts them. A file of format 1 or 2 ends with its data slots; it may also
 * be already grown by an upgrade that stopped before it rewrote the header
 * (store_map_file grows the file first). */
static bool store_sizes_sound(const struct store_hdr *h, uint64_t st_size)
{
	struct store_geometry g;

	store_geometry(h->slots, &g);
	if (h->ns_off != g.ns_off || h->slot_off != g.slot_off || h->data_off != g.data_off)
		return false;
	if (h->version >= 3)
		return h->page_tag_off == g.page_tag_off && h->total_bytes == g.total_bytes &&
		       st_size == h->total_bytes;
	return h->page_tag_off == 0 && h->total_bytes == g.page_tag_off &&
	       (st_size == h->total_bytes || st_size == g.total_bytes);
}

/* Rebuilds the namespace maps and the free list from a file's slot table;
 * gives a namespace without a tag (format 1) one, and says in one line what
 * an upgrade (store_map_file) did. */
static int store_recover(struct ms_store *s)
{
	uint32_t orphans = 0, tagged = 0;

	for (uint64_t i = 0; i < s->hdr->slots; i++) {
		struct store_slot_rec *r = &s->slot[i];
		int err;

		if (!r->ns)
			continue;
		if (r->ns > MS_NAMESPACES_MAX || !s->nsrec[r->ns - 1].used ||
		    r->page > UINT64_MAX / GVM_PAGE_SIZE) {
			r->ns = 0; /* a record of a dropped namespace */
			continue;
		}
		err = pmap_insert(&s->maps[r->ns - 1], r->page, (uint32_t)i);
		if (err)
			return err;
		s->used++;
		s->next_fresh = (uint32_t)i + 1;
	}
	for (uint32_t i = 0; i < s->next_fresh; i++)
		if (!s->slot[i].ns)
			s->free_slots[s->nfree++] = i;
	for (uint32_t i = 0; i < MS_NAMESPACES_MAX; i++) {
		struct store_ns_rec *rec = &s->nsrec[i];
		char owner[GVM_HOST_ID_MAX_BYTES + 1];

		if (rec->tag >> MS_NS_TAG_BITS)
			rec->tag = 0; /* damaged: no id can carry it */
		if (rec->used && !rec->tag) {
			rec->tag = tag_draw(0);
			tagged++;
		}
		if (rec->used && gvm_ns_host(rec->name, owner))
			orphans++;
	}
	if (s->upgraded_from == 1) {
		gvm_info("backing file: store format 1 upgraded to %u: its %u namespace%s got new ids (with a random tag); a client opens them again by name; its %llu page%s have a page tag area now, all tags zero",
			 STORE_VERSION, tagged, tagged == 1 ? "" : "s",
			 (unsigned long long)s->used, s->used == 1 ? "" : "s");
	} else if (s->upgraded_from) {
		gvm_info("backing file: store format %u upgraded to %u: its %llu page%s keep their data and ids, and have a page tag area now, all tags zero",
			 s->upgraded_from, STORE_VERSION, (unsigned long long)s->used,
			 s->used == 1 ? "" : "s");
	} else if (tagged) {
		gvm_warn("backing file: %u namespace%s had no id tag (damaged?): given new ids",
			 tagged, tagged == 1 ? "" : "s");
	}
	if (orphans)
		gvm_warn("backing file: %u namespace%s name%s no host (written before protocol 2); no peer can reach %s",
			 orphans, orphans == 1 ? "" : "s", orphans == 1 ? "s" : "",
			 orphans == 1 ? "it" : "them");
	return 0;
}

/* Opens and maps a backing file; *fresh says it was empty (and is now
 * sized and formatted: a failure after this undoes that). */
static int store_map_file(struct ms_store *s, const char *path,
			  uint64_t capacity_bytes, bool *fresh_out, char *why, size_t n)
{
	struct store_hdr h;
	struct stat st;
	uint64_t slots;
	bool fresh;
	int err;

	s->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->fd < 0 || fstat(s->fd, &st) < 0) {
		err = -errno;
		snprintf(why, n, "backing file %s: %s", path, strerror(errno));
		return err;
	}
	fresh = st.st_size == 0;
	*fresh_out = fresh;
	if (!fresh) {
		bool got = pread(s->fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h);

		if (got && !memcmp(h.magic, STORE_MAGIC, 8) &&
		    (h.version == 0 || h.version > STORE_VERSION)) {
			snprintf(why, n, "backing file %s: store format %u, which this gvm-memserver (formats 1 to %u) cannot read; use the gvm-memserver that wrote it, or move the file away to start empty",
				 path, h.version, STORE_VERSION);
			return -EINVAL;
		}
		/* Formats 1 and 2 are format 3 without the page tag area. */
		if (!got || memcmp(h.magic, STORE_MAGIC, 8) ||
		    h.page_size != GVM_PAGE_SIZE || h.slots == 0 ||
		    h.slots > MS_STORE_SLOTS_MAX ||
		    !store_sizes_sound(&h, (uint64_t)st.st_size)) {
			snprintf(why, n, "backing file %s: not a gvm-memserver store (or damaged); move it away to start empty",
				 path);
			return -EINVAL;
		}
		if (capacity_bytes && capacity_bytes / GVM_PAGE_SIZE != h.slots) {
			snprintf(why, n, "backing file %s holds %llu MiB; pass --capacity %lluM or use a new file",
				 path, (unsigned long long)(h.slots * GVM_PAGE_SIZE >> 20),
				 (unsigned long long)(h.slots * GVM_PAGE_SIZE >> 20));
			return -EINVAL;
		}
		slots = h.slots;
	} else {
		slots = (capacity_bytes ? capacity_bytes : MS_DEFAULT_CAPACITY_BYTES) /
			GVM_PAGE_SIZE;
	}
	s->map_bytes = layout_bytes(slots);
	if (!fresh && h.version < STORE_VERSION) {
		/* Upgraded here: recorded first, so a failed open undoes it. */
		s->upgraded_from = h.version;
		s->found_hdr = h;
		s->found_bytes = (uint64_t)st.st_size;
	}
	if ((fresh || s->upgraded_from) && (uint64_t)st.st_size != s->map_bytes &&
	    ftruncate(s->fd, (off_t)s->map_bytes) < 0) {
		err = -errno;
		snprintf(why, n, "backing file %s: cannot %s to %llu bytes: %s", path,
			 fresh ? "size" : "grow by the page tag area (store format 3)",
			 (unsigned long long)s->map_bytes, strerror(errno));
		return err;
	}
	s->base = mmap(NULL, s->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		err = -errno;
		snprintf(why, n, "backing file %s: mmap: %s", path, strerror(errno));
		return err;
	}
	if (fresh) {
		s->hdr = (struct store_hdr *)s->base;
		memcpy(s->hdr->magic, STORE_MAGIC, 8);
		s->hdr->version = STORE_VERSION;
		s->hdr->page_size = GVM_PAGE_SIZE;
		store_layout(s, slots);
	} else if (s->upgraded_from) {
		/* The grown area reads as zero: every page's tag is zero. */
		s->hdr = (struct store_hdr *)s->base;
		store_layout(s, slots);
		s->hdr->version = STORE_VERSION;
	}
	if (!fresh && !((struct store_hdr *)s->base)->clean) {
		gvm_warn("backing file %s was not closed cleanly; pages written just before the stop may be stale",
			 path);
	}
	store_bind(s);
	return 0;
}

static void store_free(struct ms_store *s);

int ms_store_open(struct ms_store **out, const char *backing,
		  uint64_t capacity_bytes, char *why, size_t n)
{
	struct ms_store *s;
	bool fresh = false;
	uint64_t slots;
	int err;

	if (capacity_bytes && (capacity_bytes < GVM_PAGE_SIZE ||
			       capacity_bytes / GVM_PAGE_SIZE > MS_STORE_SLOTS_MAX)) {
		snprintf(why, n, "capacity must be between 4K and 16T");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(why, n, "out of memory");
		return -ENOMEM;
	}
	pthread_rwlock_init(&s->lock, NULL);
	pthread_mutex_init(&s->rel_mu, NULL);
	pthread_cond_init(&s->rel_cv, NULL);
	s->fd = -1;
	if (sodium_init() < 0) {
		snprintf(why, n, "libsodium failed to initialise");
		err = -EIO;
		goto fail;
	}
	if (backing) {
		err = store_map_file(s, backing, capacity_bytes, &fresh, why, n);
		if (err)
			goto fail;
	} else {
		slots = (capacity_bytes ? capacity_bytes : MS_DEFAULT_CAPACITY_BYTES) /
			GVM_PAGE_SIZE;
		s->map_bytes = layout_bytes(slots);
		s->base = mmap(NULL, s->map_bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (s->base == MAP_FAILED) {
			s->base = NULL;
			err = -errno;
			snprintf(why, n, "cannot reserve %llu bytes: %s",
				 (unsigned long long)s->map_bytes, strerror(errno));
			goto fail;
		}
		s->hdr = (struct store_hdr *)s->base;
		store_layout(s, slots);
		store_bind(s);
	}
	s->free_slots = malloc(s->hdr->slots * sizeof(*s->free_slots));
	s->pend_slots = malloc(s->hdr->slots * sizeof(*s->pend_slots));
	if (!s->free_slots || !s->pend_slots) {
		snprintf(why, n, "out of memory for %llu slots",
			 (unsigned long long)s->hdr->slots);
		err = -ENOMEM;
		goto fail;
	}
	if (backing) {
		err = store_recover(s);
		if (err) {
			snprintf(why, n, "out of memory rebuilding the page index");
			goto fail;
		}
	}
	err = -pthread_create(&s->releaser, NULL, releaser_main, s);
	if (err) {
		snprintf(why, n, "cannot start the thread that gives dropped pages' memory back: %s",
			 strerror(-err));
		goto fail;
	}
	s->releaser_running = true;
	if (backing)
		s->hdr->clean = 0; /* until ms_store_close has flushed it */
	*out = s;
	return 0;
fail:
	/* A backing file is left as it was found: its clean flag untouched
	 * (ms_store_close would mark it clean), emptied again if this open
	 * sized it, its header and size put back if this open upgraded it
	 * (store_recover's changes to an old file are sound in any format). */
	if (s->base && s->upgraded_from)
		*s->hdr = s->found_hdr;
	if (s->base)
		munmap(s->base, s->map_bytes);
	s->base = NULL;
	if (fresh && ftruncate(s->fd, 0) < 0)
		gvm_warn("backing file %s: left at %llu bytes: %s", backing,
			 (unsigned long long)s->map_bytes, strerror(errno));
	if (s->upgraded_from && ftruncate(s->fd, (off_t)s->found_bytes) < 0)
		gvm_warn("backing file %s: left at %llu bytes, format %u: %s", backing,
			 (unsigned long long)s->map_bytes, s->upgraded_from, strerror(errno));
	store_free(s);
	return err;
}

int ms_store_close(struct ms_store *s)
{
	int err = 0;

	if (!s)
		return 0;
	if (s->releaser_running) {
		pthread_mutex_lock(&s->rel_mu);
		s->rel_stop = true;
		pthread_cond_signal(&s->rel_cv);
		pthread_mutex_unlock(&s->rel_mu);
		pthread_join(s->releaser, NULL);
	}
	ms_store_release_now(s); /* a backing file keeps no dropped data */
	if (s->fd >= 0) {
		s->hdr->clean = 1;
		if (msync(s->base, s->map_bytes, MS_SYNC) < 0 || fsync(s->fd) < 0)
			err = -errno;
	}
	store_free(s);
	return err;
}

/* The memory, mapping and file of s, and s: what ms_store_open made. */
static void store_free(struct ms_store *s)
{
	if (s->base)
		munmap(s->base, s->map_bytes);
	if (s->fd >= 0)
		close(s->fd);
	for (uint32_t i = 0; i < MS_NAMESPACES_MAX; i++)
		pmap_free(&s->maps[i]);
	free(s->free_slots);
	free(s->pend_slots);
	pthread_cond_destroy(&s->rel_cv);
	pthread_mutex_destroy(&s->rel_mu);
	pthread_rwlock_destroy(&s->lock);
	free(s);
}

/* The id of the namespace called name, or 0 (no id) if there is none. */
static uint32_t ns_lookup(struct ms_store *s, const char *name)
{
	for (uint32_t i = 0; i < MS_NAMESPACES_MAX; i++)
		if (s->nsrec[i].used && strcmp(s->nsrec[i].name, name) == 0)
			return ns_id(s, i);
	return 0;
}

int ms_store_open_ns(struct ms_store *s, const char *host, const char *name,
		     uint32_t *id)
{
	uint32_t held = 0, free_idx = MS_NAMESPACES_MAX;
	int err = name_check(host, name);

	if (err)
		return err;
	pthread_rwlock_wrlock(&s->lock);
	for (uint32_t i = 0; i < MS_NAMESPACES_MAX; i++) {
		if (!s->nsrec[i].used) {
			if (free_idx == MS_NAMESPACES_MAX)
				free_idx = i;
			continue;
		}
		if (strcmp(s->nsrec[i].name, name) == 0) {
			*id = ns_id(s, i);
			goto out;
		}
		held += gvm_ns_owned_by(s->nsrec[i].name, host);
	}
	if (held >= MS_HOST_NAMESPACES_MAX) {
		err = -EDQUOT;
		goto out;
	}
	if (free_idx == MS_NAMESPACES_MAX) {
		err = -ENOSPC;
		goto out;
	}
	memset(s->nsrec[free_idx].name, 0, sizeof(s->nsrec[free_idx].name));
	strcpy(s->nsrec[free_idx].name, name);
	s->nsrec[free_idx].tag = tag_draw(s->nsrec[free_idx].tag);
	s->nsrec[free_idx].used = 1;
	*id = ns_id(s, free_idx);
out:
	pthread_rwlock_unlock(&s->lock);
	return err;
}

int ms_store_drop_ns(struct ms_store *s, const char *host, const char *name,
		     uint32_t id)
{
	uint32_t *slots, n = 0, idx;
	struct pmap *m;
	int err;

	if (name) {
		err = name_check(host, name);
		if (err)
			return err;
	}
	pthread_rwlock_wrlock(&s->lock);
	if (name)
		id = ns_lookup(s, name);
	err = ns_check(s, host, id, &idx);
	if (err) {
		pthread_rwlock_unlock(&s->lock);
		return err;
	}
	/* The slots go to the releaser, lowest on top: giving a GiB back to
	 * the kernel takes about half a second, which must not stall every
	 * other client of this store. Until then, writes may reuse them. */
	m = &s->maps[idx];
	slots = s->pend_slots + s->npend;
	for (uint32_t i = 0; i < m->cap; i++) {
		if (!m->keys[i])
			continue;
		s->slot[m->vals[i]].ns = 0;
		slots[n++] = m->vals[i];
	}
	qsort(slots, n, sizeof(*slots), cmp_slot_desc);
	s->npend += n;
	s->used -= n;
	pmap_free(m);
	memset(s->nsrec[idx].name, 0, sizeof(s->nsrec[idx].name));
	s->nsrec[idx].used = 0; /* the tag stays: see tag_draw */
	pthread_rwlock_unlock(&s->lock);
	if (n && s->releaser_running) {
		pthread_mutex_lock(&s->rel_mu);
		s->rel_wanted = true;
		pthread_cond_signal(&s->rel_cv);
		pthread_mutex_unlock(&s->rel_mu);
	} else if (n) {
		ms_store_release_now(s);
	}
	return 0;
}

int ms_store_read(struct ms_store *s, const char *host, uint32_t ns,
		  uint64_t first, uint32_t count, uint8_t *zero_bitmap,
		  uint8_t *out, uint32_t *data_pages, uint8_t *tags_out)
{
	uint32_t copied = 0, idx, cell;
	struct pmap *m;
	int err;

	memset(zero_bitmap, 0, (count + 7) / 8);
	pthread_rwlock_rdlock(&s->lock);
	err = ns_check(s, host, ns, &idx);
	if (err) {
		pthread_rwlock_unlock(&s->lock);
		return err;
	}
	m = &s->maps[idx];
	for (uint32_t i = 0; i < count; i++) {
		if (pmap_find(m, first + i, &cell)) {
			memcpy(out + (size_t)copied * GVM_PAGE_SIZE,
			       slot_data(s, m->vals[cell]), GVM_PAGE_SIZE);
			if (tags_out)
				memcpy(tags_out + (size_t)copied * GVM_PAGE_TAG_BYTES,
				       slot_page_tag(s, m->vals[cell]), GVM_PAGE_TAG_BYTES);
			copied++;
		} else {
			zero_bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
		}
	}
	pthread_rwlock_unlock(&s->lock);
	*data_pages = copied;
	return 0;
}

/* ns_idx: the namespace's table index. */
static void store_forget(struct ms_store *s, uint32_t ns_idx, uint64_t page)
{
	struct pmap *m = &s->maps[ns_idx];
	uint32_t cell;

	if (!pmap_find(m, page, &cell))
		return;
	slot_release(s, m->vals[cell]);
	pmap_remove_at(m, cell);
}

/* store_forget of count pages, their memory released in runs. */
static void forget_range(struct ms_store *s, uint32_t ns_idx, uint64_t first, uint64_t count)
{
	struct pmap *m = &s->maps[ns_idx];
	uint32_t slots[GVM_FRAME_PAGES_MAX], cell;
	size_t n = 0;

	for (uint64_t i = 0; i < count; i++) {
		if (!pmap_find(m, first + i, &cell))
			continue;
		slots[n++] = m->vals[cell];
		pmap_remove_at(m, cell);
		if (n == GVM_FRAME_PAGES_MAX) {
			slots_release(s, slots, n);
			n = 0;
		}
	}
	slots_release(s, slots, n);
}

int ms_store_write(struct ms_store *s, const char *host, uint32_t ns,
		   uint64_t first, uint32_t count, const uint8_t *zero_bitmap,
		   const uint8_t *data, const uint8_t *tags)
{
	uint64_t needed;
	struct pmap *m;
	uint32_t idx, cell;
	int err = 0;

again:
	needed = 0;
	pthread_rwlock_wrlock(&s->lock);
	err = ns_check(s, host, ns, &idx);
	if (err)
		goto out;
	m = &s->maps[idx];
	for (uint32_t i = 0; i < count; i++)
		if (!(zero_bitmap[i / 8] & (1u << (i % 8))) && !pmap_find(m, first + i, &cell))
			needed++;
	if (needed > slots_available(s)) {
		if (s->nreleasing && needed <= slots_available(s) + s->nreleasing) {
			/* The slots we lack are in the releaser's hands for a moment. */
			pthread_rwlock_unlock(&s->lock);
			while (__atomic_load_n(&s->nreleasing, __ATOMIC_RELAXED))
				usleep(100);
			goto again;
		}
		err = -ENOSPC;
		goto out;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint64_t page = first + i;
		uint32_t slot;

		if (zero_bitmap[i / 8] & (1u << (i % 8))) {
			store_forget(s, idx, page);
			continue;
		}
		if (pmap_find(m, page, &cell)) {
			slot = m->vals[cell];
		} else {
			slot = slot_take(s);
			err = pmap_insert(m, page, slot);
			if (err) {
				s->free_slots[s->nfree++] = slot;
				goto out;
			}
			s->used++;
		}
		memcpy(slot_data(s, slot), data, GVM_PAGE_SIZE);
		data += GVM_PAGE_SIZE;
		if (tags) {
			memcpy(slot_page_tag(s, slot), tags, GVM_PAGE_TAG_BYTES);
			tags += GVM_PAGE_TAG_BYTES;
		} else {
			memset(slot_page_tag(s, slot), 0, GVM_PAGE_TAG_BYTES);
		}
		s->slot[slot].page = page;
		s->slot[slot].ns = idx + 1;
	}
out:
	pthread_rwlock_unlock(&s->lock);
	return err;
}

int ms_store_discard(struct ms_store *s, const char *host, uint32_t ns,
		     uint64_t first, uint32_t count)
{
	uint32_t idx;
	int err;

	pthread_rwlock_wrlock(&s->lock);
	err = ns_check(s, host, ns, &idx);
	if (!err)
		forget_range(s, idx, first, count);
	pthread_rwlock_unlock(&s->lock);
	return err;
}

int ms_store_list(struct ms_store *s, const char *host, uint32_t ns,
		  uint64_t first, uint32_t count, uint8_t *bitmap)
{
	const struct pmap *m;
	uint32_t idx, cell;
	int err;

	memset(bitmap, 0, gvm_list_bitmap_bytes(count));
	pthread_rwlock_rdlock(&s->lock);
	err = ns_check(s, host, ns, &idx);
	if (err)
		goto out;
	m = &s->maps[idx];
	if (m->cap < count) {
		/* Fewer cells than pages asked about: walk the cells. */
		for (uint32_t i = 0; i < m->cap; i++) {
			uint64_t page = m->keys[i] - 1;

			if (!m->keys[i] || page < first || page - first >= count)
				continue;
			bitmap[(page - first) / 8] |= (uint8_t)(1u << ((page - first) % 8));
		}
	} else {
		for (uint32_t i = 0; i < count; i++)
			if (pmap_find(m, first + i, &cell))
				bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
	}
out:
	pthread_rwlock_unlock(&s->lock);
	return err;
}

void ms_store_get_info(struct ms_store *s, struct ms_store_info *info)
{
	pthread_rwlock_rdlock(&s->lock);
	info->capacity_pages = s->hdr->slots;
	info->used_pages = s->used;
	info->namespaces = 0;
	for (uint32_t i = 0; i < MS_NAMESPACES_MAX; i++)
		info->namespaces += s->nsrec[i].used ? 1 : 0;
	pthread_rwlock_unlock(&s->lock);
}

int ms_store_ns_pages(struct ms_store *s, const char *host, const char *name,
		      uint64_t *pages)
{
	int err = name_check(host, name);
	uint32_t idx;

	*pages = 0;
	if (err)
		return err;
	pthread_rwlock_rdlock(&s->lock);
	if (ns_check(s, host, ns_lookup(s, name), &idx) == 0)
		*pages = s->maps[idx].len;
	pthread_rwlock_unlock(&s->lock);
	return 0;
}
