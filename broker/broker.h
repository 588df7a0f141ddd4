/* broker.h: gvm-broker's defaults, limits and the state every part shares:
 * the broker (main.c), attaching and detaching VMs (attach.c), their
 * regions' page state and memory (region.c, the only writer of it), the
 * userfaultfd ioctls (uffd.c), the fault service (fault.c), eviction
 * (evict.c), the work run once per loop turn (followup.c), READs landing
 * in guest memory (journal.c), the donor table (donors.c), the donor pool
 * (pool.c), locations and replicas (replica.c), the prefetch cache
 * (prefetch.c), counters (stats.c) and /dev/gvmmem (device.c). Calls go
 * one way: followup -> attach -> fault -> evict; each of them and replica
 * -> region -> uffd; nothing calls back up the chain. */
#ifndef BK_BROKER_H
#define BK_BROKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "config.h"
#include "gvm_proto.h"
#include "identity.h"

#define BK_DEFAULT_POOL_CONNS 2u
#define BK_POOL_CONNS_MAX 16u
/* Donors: no fixed number. A location names a donor by a 16-bit index,
 * so one broker knows at most this many addresses over its life (a
 * re-added address keeps its index). */
#define BK_DONORS_LIMIT 0xfffeu
#define BK_DEFAULT_IDLE_MS 60000u     /* a connection unused this long closes */
#define BK_FDS_SPARE 256u             /* open files beyond donor connections */
/* Clients: connections over all users; root and the broker's own user may
 * pass it (gvmctl still answers when others filled the table). */
#define BK_CLIENTS_MAX 1024u
/* Per user (uid): what one tenant may hold, so no tenant can starve the
 * others. Connections: one per VM plus these spare ones (gvmctl, attaches
 * on their way). */
#define BK_DEFAULT_UID_VMS 64u
/* One donor namespace each; a donor holds 1024 of one host (memserver.h). */
#define BK_DEFAULT_UID_REGIONS 128u
#define BK_UID_SPARE_CONNS 8u
#define BK_HELLO_TIMEOUT_MS 5000u    /* from connecting to Hello */
#define BK_ATTACH_TIMEOUT_MS 10000u  /* from Hello to Attach */
#define BK_MAPS_MAX_BYTES (64u << 20) /* of a client's /proc/PID/maps read to check it */
#define BK_REFUSAL_LOG_MS 1000u      /* refusals a peer causes: a line per user this often */
#define BK_FAULT_BATCH_MAX 64u       /* uffd messages read at once */
#define BK_DEFAULT_PREFETCH_BYTES (64ull << 20)
#define BK_PREFETCH_WINDOW_MAX_EXTENTS 16u
#define BK_CONN_INFLIGHT_MAX 64u     /* requests in flight on one connection */
#define BK_CONN_PREFETCH_INFLIGHT_MAX 8u /* of which prefetches */
#define BK_RECONNECT_MIN_MS 100u
#define BK_RECONNECT_MAX_MS 5000u
#define BK_DONOR_STALL_MS 5000u      /* no answer for this long: reconnect */
#define BK_CONNECT_TIMEOUT_MS 2000u  /* a connect not done by then is tried again */
#define BK_COPY_EAGAIN_RETRIES 3u
#define BK_UNPROTECT_RETRY_MS 1u     /* a write protection refused lifting (EAGAIN): again */
#define BK_HUGE_RETRY_MS 100u        /* no free huge page to install: the fault again */
#define BK_FILL_WAIT_MS 10u          /* a pinned VM's donors have not said what they hold */
#define BK_EVICT_BATCH_PAGES 256u    /* pages one eviction pass frees at most (1 MiB) */
#define BK_EVICT_INFLIGHT_MAX_PAGES 2048u /* dirty pages being written back at once */
#define BK_EVICT_HIGH_PCT 95u        /* start evicting above this share of the budget */
#define BK_EVICT_LOW_PCT 85u         /* ... down to this share */
#define BK_EVICT_SCAN_MAX_PAGES 65536u /* clock steps per pass */
#define BK_WRITEBACK_RETRY_MS 1000u  /* after a refused write-back, leave the region alone */
#define BK_WRITEBACK_REPLACE_MS 10u  /* ... unless it was a first copy: placed elsewhere */
#define BK_WRITEBACK_NO_DONOR_MS 100u /* no donor reachable: try again this soon */
/* Replicas (replica.c): an extent's copies live on up to this many donors. */
#define BK_REPLICAS_MAX 4u
#define BK_NO_DONOR 0xffffu          /* a free slot of an extent's location */
#define BK_DEFAULT_REPLICAS 1u
#define BK_DEFAULT_DEAD_AFTER_MS 10000u /* unreachable this long: dead, its copies lost */
#define BK_DEFAULT_REREPLICATE_BYTES (64ull << 20) /* re-replication, per second */
#define BK_REREPLICATE_INFLIGHT_MAX 8u /* extent copies on their way at once */
#define BK_HEDGE_MIN_US 2000u        /* a read is hedged after at least this long */
#define BK_RETRY_MIN_MS 10u          /* a failed read is asked again after this, doubling */
#define BK_RETRY_MAX_MS 1000u

struct bk_pool;
struct bk_cache;
struct bk_client;

/* A donor as the donors list or etcd gives it. */
struct bk_donor_cfg {
	char addr[128];
	unsigned weight; /* relative capacity: its share of new placements */
};

/* Every donor address the broker has known (donors.c), by index: the
 * index is what locations hold, so an entry stays for the broker's life
 * and a re-added address gets its old index back. */
enum bk_donor_state {
	BK_DONOR_ACTIVE,   /* listed: takes new copies */
	BK_DONOR_DRAINING, /* no longer listed: its copies move elsewhere */
	BK_DONOR_REMOVED,  /* drained: holds nothing of ours, no connections */
};

struct bk_donor_info {
	char addr[128];
	unsigned weight;
	uint64_t hash;   /* gvm_place_addr_hash(addr): computed once */
	enum bk_donor_state state;
	uint16_t port;
	uint64_t extents; /* extent copies it holds for attached VMs */
};

/* How pages reach a VM (--install). */
enum bk_install {
	BK_INSTALL_COPY,     /* UFFDIO_COPY from the broker's buffers (the default) */
	BK_INSTALL_CONTINUE, /* received into the memfd, mapped with UFFDIO_CONTINUE */
	BK_INSTALL_AUTO,     /* continue where the kernel and the memfd allow, else copy */
};

/* How pages are sealed on the donors (--page-crypto, seal.h). */
enum bk_page_crypto {
	BK_CRYPTO_DEFAULT,  /* AES-256-GCM where the CPU has AES-NI, else XChaCha20-Poly1305 */
	BK_CRYPTO_NONE,
	BK_CRYPTO_AES256GCM,
	BK_CRYPTO_XCHACHA20,
};

struct bk_config {
	const char *socket_path;
	const char *state_dir;   /* identity.h: host id and host key */
	const char *host_id;     /* --host-id, or NULL: the state directory's */
	unsigned uid_vms, uid_regions; /* per-user limits */
	struct bk_donor_cfg *donors; /* --donor: listed whatever the file or etcd say */
	unsigned ndonors;
	const char *donors_file;     /* re-read on SIGHUP */
	const char *etcd;            /* --etcd ENDPOINTS, or NULL */
	const char *etcd_prefix;
	unsigned idle_ms;            /* --idle-timeout */
	const char *key_file;
	unsigned pool_conns;
	unsigned extent_pages;
	uint64_t budget_bytes;
	uint64_t prefetch_bytes;
	unsigned replicas;         /* copies of each extent (--replicas) */
	unsigned dead_after_ms;    /* --dead-after */
	uint64_t rereplicate_bytes; /* per second (--rereplicate-rate) */
	bool no_cuse;
	enum bk_install install;   /* --install */
	enum bk_page_crypto page_crypto; /* --page-crypto (settled by bk_seal_setup) */
};

/* A region's LIST on one donor (rg->list_state), while its map is made
 * (replica.c). */
enum bk_list_state {
	BK_LIST_NONE,    /* not asked yet, or asked again later */
	BK_LIST_ASKING,  /* a LIST on its way */
	BK_LIST_DONE,    /* answered; or the donor is dead, removed or new */
};

/* Per extent of a region. */
enum bk_extent_state {
	BK_EXT_NONE,        /* nothing local, nothing asked */
	BK_EXT_FETCHING,    /* a demand READ is on its way */
	BK_EXT_PREFETCHING, /* a prefetch READ is on its way */
	BK_EXT_CACHED,      /* a prefetch arrived: its pages wait in the prefetch cache
			     * (--install copy) or in the memfd, all mapped but the
			     * first missing one, the tripwire (--install continue) */
	BK_EXT_PAGES,       /* single pages of it are on their way, not the extent */
	BK_EXT_LOCAL,       /* installed */
};

struct bk_region {
	struct bk_vm *vm;
	unsigned index;
	char name[GVM_REGION_NAME_MAX_BYTES + 1]; /* a label, for logs */
	char ns[GVM_NS_NAME_MAX_BYTES + 1]; /* "<host>.<incarnation>.<index>" on the donors */
	uint64_t host_addr, size, npages, nextents, memfd_offset, guest_phys;
	/* Pages per extent: --extent-pages, or for a hugetlb memfd (huge) its
	 * 2 MiB page, which then is the unit of every install, write
	 * protection, write-back and punch. */
	unsigned extent_pages;
	bool huge;
	int memfd;
	uint8_t *map;        /* the broker's mapping of the memfd (--install continue), or NULL */
	/* Page and extent state: written by region.c only (region.h). */
	uint8_t *ext_state;  /* enum bk_extent_state per extent */
	uint64_t *resident;  /* page bitmap: installed by us */
	uint64_t *dirty;     /* page bitmap: written since installed */
	/* Where each extent lives (replica.c): BK_REPLICAS_MAX donor indices
	 * per extent, BK_NO_DONOR in free slots. No donor: never written (a
	 * zero fill), unless it is lost. */
	uint16_t *loc;
	uint64_t *lost;      /* page bitmap: its only copies were lost: it is poisoned */
	uint32_t *ext_ver;   /* per extent: bumped by every write-back and discard */
	/* Per page, when the VM's pages are sealed (seal.h), else NULL: its
	 * version word, in the VM's file in the state directory. */
	uint32_t *ver;
	/* A re-attached region learns its locations from the donors (LIST);
	 * until every donor answered or died, an extent with no known copy
	 * waits rather than reading as zero. */
	bool map_ready;
	uint64_t nlisted;    /* donors that answered LIST, or are dead or removed */
	uint64_t ns_hash;    /* gvm_place_ns_hash(ns), for placement */
	uint64_t rr_cursor;  /* re-replication's next extent to look at */
	unsigned retry_ms;   /* a failed read's faults are asked again after this */
	/* Per donor, b->donors_cap entries (grown with the donor table): */
	uint32_t *ns_id;     /* 0 until opened */
	uint32_t *ns_was;    /* the id our copies there live under; 0: none */
	uint8_t *list_state; /* enum bk_list_state: the map's LIST on that donor */
	uint64_t last_extent; /* fault.c's, as are streak, retry_ms and fetching */
	unsigned streak;     /* consecutive sequential extents */
	/* eviction: ref is region.c's, the rest evict.c's */
	uint64_t *ref;       /* page bitmap: used since the clock last passed */
	uint64_t *evicting;  /* page bitmap: write-back in flight */
	uint64_t *wp_held;   /* page bitmap: a writer waits on it until the write-back ends */
	uint64_t *fetching;  /* page bitmap: a one-page READ is on its way */
	uint8_t *wb_inflight; /* per extent: write-backs in flight */
	uint64_t clock;      /* the clock hand, a page index */
	uint64_t resident_count; /* pages installed and not evicted */
	uint64_t quiet_until_ms; /* no eviction here before (after a refused write) */
};

struct bk_vm {
	struct bk_broker *b;
	struct bk_vm *next;
	uint64_t session;
	uint8_t incarnation[GVM_INCARNATION_BYTES]; /* its pages' identity on the donors */
	char name[GVM_VM_NAME_MAX_BYTES + 1]; /* a label, for logs */
	pid_t pid;
	uid_t uid;
	int uffd;
	uv_poll_t poll;
	bool polling, detached;
	bool minor;     /* registered for minor faults: pages go in with UFFDIO_CONTINUE */
	int failed;     /* -errno: its uffd failed; detached at the end of the loop turn */
	int pidfd;      /* its process, to drop its pages only once that exits; -1 */
	bool can_poison; /* its uffd takes UFFDIO_POISON */
	/* Its RAM is pinned for device DMA (Attach.pinned: VFIO): all of it is
	 * brought in at attach (filled, from fill_region/fill_extent on) and
	 * it is never evicted, discarded or write-protected. */
	bool pinned;
	size_t fill_region;
	uint64_t fill_extent;
	unsigned refs; /* pool requests and handles still pointing here */
	uint64_t limit_pages; /* per-VM budget from Attach; 0: the host's only */
	struct bk_seal *seal; /* its key and versions (seal.c), or NULL: pages go unsealed */
	size_t nregions;
	struct bk_region *regions;
};

/* A VM whose connection ended while its process lives (attach.c): its
 * namespaces stay on the donors until the process exits (its pidfd
 * polls readable) or it attaches again. */
struct bk_orphan {
	struct bk_orphan *next;
	struct bk_broker *b;
	uint8_t incarnation[GVM_INCARNATION_BYTES];
	char vm_name[GVM_VM_NAME_MAX_BYTES + 1];
	uid_t uid;
	pid_t pid;
	int pidfd;
	uv_poll_t poll;
	size_t nregions;
	char (*ns)[GVM_NS_NAME_MAX_BYTES + 1];
	uint16_t *donors;  /* where its namespaces were opened: dropped there */
	size_t ndonors;
};

struct bk_broker {
	uv_loop_t *loop;
	struct bk_config cfg;
	struct gvm_key key;
	struct bk_identity id;
	int uffd_dev; /* /dev/userfaultfd, opened once, handed to every client; -1 if none */
	/* The host's 2 MiB huge page pool: free and reserved pages (sysfs,
	 * opened before the sandbox; -1 if none). */
	int huge_free_fd, huge_resv_fd;
	struct bk_pool *pool;
	struct bk_cache *cache;
	struct bk_vm *vms;
	uint8_t *zero_extent; /* extent_pages zero pages */
	uint64_t budget_pages, high_pages, low_pages; /* 0: no eviction */
	uint64_t resident_pages;  /* installed by us, host-wide */
	uint64_t reserved_pages;  /* demand fetches on their way */
	uint64_t evicting_pages;  /* dirty pages being written back */
	struct bk_deferred *deferred, **deferred_tail; /* faults waiting for room */
	uint64_t next_session;
	struct bk_control *control;
	struct bk_cuse *cuse;  /* /dev/gvmmem, NULL when the kernel has no CUSE */
	bool require_token;    /* set while /dev/gvmmem exists: Hello needs its token */
	bool stopping;         /* SIGTERM: VMs are let go, their pages kept */
	struct bk_orphan *orphans; /* VMs whose connection ended while their process lives */
	struct bk_replica *replica; /* replica.c */
	/* The donor table (donors.c): entries never move in meaning; the
	 * array may be reallocated when it grows (keep indices, not pointers). */
	struct bk_donor_info *donors;
	unsigned ndonors, donors_cap;
	unsigned active_donors;
	int donors_dirfd;      /* --donors-file's directory, for SIGHUP; -1 */
	struct bk_etcd *etcd;  /* --etcd: the watch (donors.c), or NULL */
	struct bk_journal *journal; /* READs received into VMs' memory (journal.c) */
	int seal_dirfd;        /* STATE_DIR/pages (seal.c), or -1 */
	uv_idle_t fill;        /* turns the loop while pinned VMs are being filled */
	uv_timer_t fill_wait;  /* ... or waits a little while they cannot be */
	bool filling;
	uv_check_t followup;   /* followup.c */
	bool followup_on;
};

/* donors.c: the donor table. bk_donors_apply makes the table match a new
 * donors list (the start, SIGHUP's re-read of --donors-file, an etcd
 * change): new addresses are added (or taken back), weights change for
 * new placements, and donors no longer listed start draining. Returns 0,
 * or -errno with *why. */
int bk_donors_apply(struct bk_broker *b, const struct bk_donor_cfg *list, unsigned n,
		    const char *source, char *why, size_t wn);
/* Re-reads --donors-file and applies it (SIGHUP). */
void bk_donors_reload(struct bk_broker *b);
/* Starts watching etcd (--etcd), before the sandbox. */
int bk_donors_etcd_start(struct bk_broker *b, char *why, size_t n);
void bk_donors_stop(struct bk_broker *b);
/* After the loop ended: the etcd client's thread and the index. */
void bk_donors_free(struct bk_broker *b);
/* Parses a donors file into a list (malloc'd; free it): 0 or -errno with
 * *why naming the file and line. */
int bk_donors_read_file(const char *path, int dirfd, struct bk_donor_cfg **list, unsigned *n,
			char *why, size_t wn);
/* "HOST:PORT[,WEIGHT]" or "HOST:PORT WEIGHT" appended to a list. */
int bk_donors_parse(struct bk_donor_cfg **list, unsigned *n, const char *spec);
/* Extent copies on draining donors (gvmctl stats draining_extents). */
uint64_t bk_donors_draining_extents(const struct bk_broker *b);
/* A drained donor: every copy moved. Drops this host's namespaces there and
 * closes its connections. */
void bk_donor_drained(struct bk_broker *b, unsigned d);
const char *bk_donor_state_name(const struct bk_broker *b, unsigned d);

/* A request's donors asked already (failover, hedging). */
struct bk_tried {
	uint16_t d[BK_REPLICAS_MAX];
	unsigned n;
};
static inline bool bk_tried_has(const struct bk_tried *t, unsigned d)
{
	for (unsigned i = 0; t && i < t->n; i++)
		if (t->d[i] == d)
			return true;
	return false;
}
static inline void bk_tried_add(struct bk_tried *t, unsigned d)
{
	if (bk_tried_has(t, d))
		return;
	if (t->n == BK_REPLICAS_MAX) { /* the oldest goes: it may be asked again */
		for (unsigned i = 1; i < t->n; i++)
			t->d[i - 1] = t->d[i];
		t->n--;
	}
	t->d[t->n++] = (uint16_t)d;
}

/* attach.c: an Attach in three steps. bk_attach_prepare checks what the
 * message and its descriptors say (on the loop, cheap) and takes the
 * descriptors; bk_attach_check_maps reads the client's /proc/PID/maps (any
 * thread: the work is as large as the client's address space); then
 * bk_vm_attach registers the uffd and starts serving. */
struct bk_attach;
int bk_attach_prepare(struct bk_attach **out, const void *attach_msg, int *fds, int nfds,
		      char *why, size_t n);
void bk_attach_check_maps(struct bk_attach *at);
/* The result of bk_attach_check_maps: 0, or -errno with a reason. */
int bk_attach_result(const struct bk_attach *at, const char **why);
size_t bk_attach_regions(const struct bk_attach *at);
void bk_attach_free(struct bk_attach *at);
/* incarnation: the one a re-attach proved, or NULL for a new one. */
/* pidfd: the client process's (taken over), or -1. */
int bk_vm_attach(struct bk_broker *b, struct bk_attach *at, pid_t pid,
		 int pidfd, uid_t uid, const char *vm_name, const uint8_t *incarnation,
		 struct bk_vm **out, char *why, size_t n);
/* What becomes of a detached VM's pages on the donors. */
enum bk_detach_how {
	BK_DETACH_DROP,  /* the process exited, or detached on purpose: dropped */
	BK_DETACH_AUTO,  /* the connection ended: dropped once the process has exited */
};
void bk_vm_detach(struct bk_vm *vm, const char *reason, enum bk_detach_how how);
/* At shutdown: stop watching for the exits of detached VMs' processes. */
void bk_orphans_stop(struct bk_broker *b);
/* At shutdown: no more filling of pinned VMs. */
void bk_fill_stop(struct bk_broker *b);
/* Pages of the attached pinned VMs: held against the budget. */
uint64_t bk_pinned_pages(const struct bk_broker *b);
/* Drops namespace ns on donor d (DROP_NS, not waited for; a donor down
 * keeps it). */
void bk_drop_namespace(struct bk_broker *b, unsigned d, const char *ns);
/* The attached VM of that incarnation, or NULL. */
struct bk_vm *bk_vm_find(struct bk_broker *b, const uint8_t incarnation[GVM_INCARNATION_BYTES]);

/* device.c: /dev/NAME (cuse-dev/) with the broker as its host. 0, -ENODEV
 * when the kernel has no CUSE, another -errno; why says so. While it
 * exists, a Hello on the control socket needs a device token. */
int bk_device_start(struct bk_broker *b, const char *name, char *why, size_t n);
/* Removes the device (at shutdown). */
void bk_device_stop(struct bk_broker *b);

/* The donor table grew from old_cap to cap: rg's per-donor arrays too
 * (region.c). */
int bk_region_grow_donors(struct bk_region *rg, unsigned old_cap, unsigned cap);

/* evict.c */
void bk_evict_setup(struct bk_broker *b);
/* Once per loop turn (followup.c): evicts ahead when over the high mark. */
void bk_evict_check(struct bk_broker *b);
/* True when a new fault must wait for evictions to free room. */
bool bk_evict_must_wait(struct bk_broker *b, uint64_t pages);
/* A page being evicted (written back, or punched): a fault on it waits
 * for the end, which wakes it. */
bool bk_evict_busy(const struct bk_region *rg, uint64_t page);
/* A WP fault on a page being written back: the writer waits for the end. */
bool bk_evict_hold_writer(struct bk_region *rg, uint64_t page);
/* The VM dropped pages (MADV_DONTNEED/REMOVE): forget them here and on the
 * donors. */
void bk_evict_removed(struct bk_region *rg, uint64_t first, uint64_t count);
void bk_evict_page_gone(struct bk_region *rg, uint64_t page);
/* The VM dropped [first, first+count), and they were installed again as
 * zeros (a hugetlb region, whose holes only a fault shows): the donors'
 * copies go. */
void bk_evict_discarded(struct bk_region *rg, uint64_t first, uint64_t count);

/* fault.c */
/* Once per loop turn (followup.c): the faults that waited for room. */
void bk_fault_redispatch(struct bk_broker *b);
void bk_fault_drop_deferred(struct bk_broker *b);
/* The donor table grew to cap: per-donor read latencies too. */
int bk_fault_lat_grow(struct bk_broker *b, unsigned cap);
int bk_fault_start(struct bk_vm *vm);
/* Brings extent e of rg in as a fault on it would (a pinned VM's fill):
 * false when it must be asked again later (the donors have not said what
 * they hold yet). */
bool bk_fault_fill(struct bk_region *rg, uint64_t e);
void bk_fault_stop(struct bk_vm *vm);

/* followup.c: the work that follows events, once per loop turn. */
int bk_followup_start(struct bk_broker *b);
void bk_followup_stop(struct bk_broker *b);

/* Pages of vm's regions, all of them. */
static inline uint64_t bk_vm_pages(const struct bk_vm *vm)
{
	uint64_t n = 0;

	for (size_t i = 0; i < vm->nregions; i++)
		n += vm->regions[i].npages;
	return n;
}

/* Pages of vm's regions installed by us and not evicted. */
static inline uint64_t bk_vm_resident(const struct bk_vm *vm)
{
	uint64_t n = 0;

	for (size_t i = 0; i < vm->nregions; i++)
		n += vm->regions[i].resident_count;
	return n;
}

static inline uint64_t bk_extent_pages(const struct bk_region *rg)
{
	return rg->extent_pages;
}

/* Pages that move together: a huge page, or one page. */
static inline uint64_t bk_unit_pages(const struct bk_region *rg)
{
	return rg->huge ? GVM_HUGE_PAGE_PAGES : 1;
}

/* The first page of page's unit. */
static inline uint64_t bk_unit_first(const struct bk_region *rg, uint64_t page)
{
	return page - page % bk_unit_pages(rg);
}

/* Pages in extent e of rg (the last extent may be short). */
static inline uint64_t bk_extent_count(const struct bk_region *rg, uint64_t e)
{
	uint64_t first = e * bk_extent_pages(rg);

	return rg->npages - first < bk_extent_pages(rg) ? rg->npages - first : bk_extent_pages(rg);
}

static inline bool bk_bit_test(const uint64_t *map, uint64_t i)
{
	return map[i / 64] & (1ull << (i % 64));
}
static inline void bk_bit_set(uint64_t *map, uint64_t i)
{
	map[i / 64] |= 1ull << (i % 64);
}
static inline void bk_bit_clear(uint64_t *map, uint64_t i)
{
	map[i / 64] &= ~(1ull << (i % 64));
}

#endif
