/* attach.c: taking a VM in and letting it go. An Attach brings a uffd,
 * one memfd per region and the client's /proc/self/maps; nothing the
 * client claims is believed beyond what those descriptors prove: the uffd
 * must be a userfaultfd, each memfd a memfd large enough, each region
 * page-aligned and disjoint, and (read off the loop, since a client picks
 * how large its maps are) each region mapped shared from its memfd at its
 * offset. Then the broker itself does UFFDIO_API and
 * UFFDIO_REGISTER(MISSING|WP, and MINOR for --install continue) on the
 * client's uffd (uffd.c), sets up the regions (region.c) and starts
 * serving faults (fault.c). A VM's pages live in namespaces derived from this
 * host's id and the VM's incarnation (identity.h), never from its names.
 * Those namespaces are dropped on the donors only when the VM's process
 * has exited (its pidfd says so) or it detached on purpose: a broker that
 * stops, or a connection that ends under a live process, keeps them, and
 * a re-attach (to this broker or a restarted one) finds its pages there.
 * A re-attached VM's state is rebuilt: the pages in its memfd are resident
 * (counted against the budget at once, dirty, write-protected again), and
 * the donors say which extents they hold (replica.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "broker.h"
#include "gvm.pb-c.h"
#include "journal.h"
#include "log.h"
#include "names.h"
#include "placement.h"
#include "pool.h"
#include "prefetch.h"
#include "region.h"
#include "replica.h"
#include "seal.h"
#include "stats.h"
#include "uffd.h"
#include "uffd_compat.h"

#define UFFD_FEATURES \
	(UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_EVENT_REMOVE)
#define MAPS_READ_BYTES (64u * 1024u)

struct attach_region {
	char name[GVM_REGION_NAME_MAX_BYTES + 1];
	uint64_t host_addr, size, guest_phys, memfd_offset;
	dev_t dev;
	ino_t ino;
	bool huge; /* a hugetlbfs memfd of 2 MiB pages */
};

struct bk_attach {
	size_t nregions;
	struct attach_region regions[GVM_CTL_REGIONS_MAX];
	uint64_t vm_limit_bytes;
	bool pinned;
	int uffd, maps;
	int memfds[GVM_CTL_REGIONS_MAX];
	int err; /* of the maps check */
	char why[256];
};

static int refuse(char *why, size_t n, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int refuse(char *why, size_t n, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return err;
}

static int fd_link(int fd, char *buf, size_t n)
{
	char path[64];
	ssize_t len;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	len = readlink(path, buf, n - 1);
	if (len < 0)
		return -errno;
	buf[len] = '\0';
	return 0;
}

/* The last descriptor must be a maps file of procfs: what the kernel says
 * the client's memory is. Which process's it is, only the client says;
 * a client that lies can only make its own VM fail, since every page the
 * broker installs or drops is in that client's uffd and memfds. */
static int check_maps_fd(int fd, char *why, size_t n)
{
	char link[256];
	struct statfs fs;
	size_t len;

	if (fstatfs(fd, &fs) < 0 || fs.f_type != PROC_SUPER_MAGIC || fd_link(fd, link, sizeof(link)))
		return refuse(why, n, -EINVAL, "last descriptor is not /proc/self/maps");
	len = strlen(link);
	if (len < 5 || strcmp(link + len - 5, "/maps"))
		return refuse(why, n, -EINVAL, "last descriptor is %s, not /proc/self/maps", link);
	return 0;
}

/* A hugetlb memfd's pages move whole: only 2 MiB ones, and the region
 * aligned to them. *huge says whether fd is one. */
static int check_huge(const Gvm__Region *r, int fd, bool *huge, char *why, size_t n)
{
	struct statfs fs;

	if (fstatfs(fd, &fs))
		return refuse(why, n, -EINVAL, "region %s: fstatfs of its memfd: %s", r->name,
			      strerror(errno));
	*huge = fs.f_type == HUGETLBFS_MAGIC;
	if (!*huge)
		return 0;
	if (fs.f_bsize != GVM_HUGE_PAGE_SIZE)
		return refuse(why, n, -EINVAL, "region %s: huge pages of %ld KiB; only 2 MiB ones "
			      "are served (hugetlbsize=2M)", r->name, (long)(fs.f_bsize >> 10));
	if ((r->host_addr | r->size | r->memfd_offset) % GVM_HUGE_PAGE_SIZE)
		return refuse(why, n, -EINVAL, "region %s: a memfd of 2 MiB pages needs its address, "
			      "size and offset aligned to 2 MiB", r->name);
	return 0;
}

static int check_regions(const Gvm__Attach *a, const int *fds, int nfds, struct stat *st,
			 bool *huge, char *why, size_t n)
{
	char link[256];
	int err;

	if (a->n_regions == 0 || a->n_regions > GVM_CTL_REGIONS_MAX)
		return refuse(why, n, -EINVAL, "%zu regions (1..%u allowed)", a->n_regions,
			      GVM_CTL_REGIONS_MAX);
	if (nfds != 2 + (int)a->n_regions)
		return refuse(why, n, -EINVAL, "expected %zu descriptors (uffd, one memfd per region, "
			      "/proc/self/maps), got %d", 2 + a->n_regions, nfds);
	if (fd_link(fds[0], link, sizeof(link)) || strcmp(link, "anon_inode:[userfaultfd]"))
		return refuse(why, n, -EINVAL, "first descriptor is not a userfaultfd (%s)", link);
	for (size_t i = 0; i < a->n_regions; i++) {
		const Gvm__Region *r = a->regions[i];
		const char *bad = gvm_label_invalid(r->name, GVM_REGION_NAME_MAX_BYTES);
		int fd = fds[1 + i];

		if (bad)
			return refuse(why, n, -EINVAL, "region %zu: its name %s", i, bad);
		if (fd_link(fd, link, sizeof(link)) || strncmp(link, "/memfd:", 7) ||
		    fstat(fd, &st[i]) || !S_ISREG(st[i].st_mode))
			return refuse(why, n, -EINVAL, "region %s: descriptor is not a memfd",
				      r->name);
		if (!r->size || (r->host_addr | r->size | r->memfd_offset | r->guest_phys) %
					GVM_PAGE_SIZE)
			return refuse(why, n, -EINVAL, "region %s: address, size and offsets must be page-aligned and size > 0",
				      r->name);
		if (r->memfd_offset > (uint64_t)st[i].st_size ||
		    r->size > (uint64_t)st[i].st_size - r->memfd_offset)
			return refuse(why, n, -EINVAL, "region %s: %" PRIu64 " bytes at offset %" PRIu64
				      " exceed its memfd (%lld bytes)", r->name, r->size,
				      r->memfd_offset, (long long)st[i].st_size);
		if (r->host_addr + r->size < r->host_addr || r->guest_phys + r->size < r->guest_phys)
			return refuse(why, n, -EINVAL, "region %s: range wraps", r->name);
		if ((err = check_huge(r, fd, &huge[i], why, n)))
			return err;
		for (size_t k = 0; k < i; k++) {
			const Gvm__Region *o = a->regions[k];

			if (r->host_addr < o->host_addr + o->size && o->host_addr < r->host_addr + r->size)
				return refuse(why, n, -EINVAL, "regions %s and %s overlap in memory",
					      o->name, r->name);
			if (r->guest_phys < o->guest_phys + o->size &&
			    o->guest_phys < r->guest_phys + r->size)
				return refuse(why, n, -EINVAL, "regions %s and %s overlap in guest-physical space",
					      o->name, r->name);
			if (!strcmp(r->name, o->name))
				return refuse(why, n, -EINVAL, "two regions named %s", r->name);
		}
	}
	return check_maps_fd(fds[nfds - 1], why, n);
}

int bk_attach_prepare(struct bk_attach **out, const void *attach_msg, int *fds, int nfds,
		      char *why, size_t n)
{
	const Gvm__Attach *a = attach_msg;
	struct stat st[GVM_CTL_REGIONS_MAX];
	bool huge[GVM_CTL_REGIONS_MAX];
	struct bk_attach *at;
	int err = check_regions(a, fds, nfds, st, huge, why, n);

	if (err)
		return err;
	at = calloc(1, sizeof(*at));
	if (!at)
		return refuse(why, n, -ENOMEM, "out of memory");
	at->nregions = a->n_regions;
	at->vm_limit_bytes = a->vm_limit_bytes;
	at->pinned = a->pinned;
	at->uffd = fds[0];
	at->maps = fds[nfds - 1];
	for (size_t i = 0; i < a->n_regions; i++) {
		struct attach_region *r = &at->regions[i];

		snprintf(r->name, sizeof(r->name), "%s", a->regions[i]->name);
		r->host_addr = a->regions[i]->host_addr;
		r->size = a->regions[i]->size;
		r->guest_phys = a->regions[i]->guest_phys;
		r->memfd_offset = a->regions[i]->memfd_offset;
		r->dev = st[i].st_dev;
		r->ino = st[i].st_ino;
		r->huge = huge[i];
		at->memfds[i] = fds[1 + i];
	}
	*out = at;
	return 0;
}

/* One pass over the maps (sorted by address): each region's pages must be
 * covered, in order, by shared mappings of its memfd at the matching
 * offset. covered[i] is how far region i is covered so far. */
static void maps_line(struct bk_attach *at, const char *line, uint64_t *covered)
{
	unsigned long long start, end, moff, ino;
	unsigned maj, min;
	char perms[8];

	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms, &moff, &maj, &min,
		   &ino) != 7)
		return;
	for (size_t i = 0; i < at->nregions; i++) {
		const struct attach_region *r = &at->regions[i];

		if (covered[i] >= r->host_addr + r->size || end <= covered[i] || start > covered[i])
			continue;
		if (perms[3] != 's' || ino != r->ino || makedev(maj, min) != r->dev ||
		    moff + (covered[i] - start) != r->memfd_offset + (covered[i] - r->host_addr))
			continue; /* not the memfd: the region stays uncovered from here */
		covered[i] = end;
	}
}

void bk_attach_check_maps(struct bk_attach *at)
{
	uint64_t covered[GVM_CTL_REGIONS_MAX], total = 0;
	char *buf = malloc(MAPS_READ_BYTES + 1);
	size_t have = 0;

	at->err = 0;
	for (size_t i = 0; i < at->nregions; i++)
		covered[i] = at->regions[i].host_addr;
	if (!buf || lseek(at->maps, 0, SEEK_SET) < 0) {
		at->err = refuse(at->why, sizeof(at->why), buf ? -errno : -ENOMEM,
				 "cannot read the client's maps: %s", buf ? strerror(errno) : "out of memory");
		free(buf);
		return;
	}
	for (;;) {
		ssize_t got = read(at->maps, buf + have, MAPS_READ_BYTES - have);
		char *line = buf, *nl;

		if (got <= 0)
			break;
		total += (uint64_t)got;
		have += (size_t)got;
		buf[have] = '\0';
		while ((nl = strchr(line, '\n'))) {
			*nl = '\0';
			maps_line(at, line, covered);
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == MAPS_READ_BYTES || total > BK_MAPS_MAX_BYTES)
			break; /* a line longer than the buffer, or maps too large: uncovered */
	}
	free(buf);
	for (size_t i = 0; i < at->nregions; i++) {
		const struct attach_region *r = &at->regions[i];

		if (covered[i] < r->host_addr + r->size) {
			at->err = refuse(at->why, sizeof(at->why), -EINVAL,
					 "region %s at 0x%" PRIx64 " is not a shared mapping of its memfd at "
					 "offset %" PRIu64 " (use memory-backend-memfd,share=on)%s",
					 r->name, r->host_addr, r->memfd_offset,
					 total > BK_MAPS_MAX_BYTES ? "; or its maps are too large to read" : "");
			return;
		}
	}
}

int bk_attach_result(const struct bk_attach *at, const char **why)
{
	*why = at->why;
	return at->err;
}

size_t bk_attach_regions(const struct bk_attach *at)
{
	return at->nregions;
}

/* Closes the descriptors the attach still holds, and frees it. */
void bk_attach_free(struct bk_attach *at)
{
	if (!at)
		return;
	if (at->uffd >= 0)
		close(at->uffd);
	if (at->maps >= 0)
		close(at->maps);
	for (size_t i = 0; i < at->nregions; i++)
		if (at->memfds[i] >= 0)
			close(at->memfds[i]);
	free(at);
}

/* UFFDIO_API and UFFDIO_REGISTER of the regions (MISSING|WP, and MINOR
 * when pages are to go in with UFFDIO_CONTINUE: *minor says whether they
 * do). *can_poison says whether UFFDIO_POISON works on all of them (Linux
 * 6.6 on). A re-attached uffd keeps the API it had, and its registration
 * is only widened (a registration cannot lose a mode). */
static int uffd_setup(struct bk_broker *b, const struct bk_attach *at, bool reattach,
		      bool *can_poison, bool *minor, char *why, size_t n)
{
	/* A pinned VM's pages are all installed at attach: none is ever
	 * received into its memory while it runs. */
	bool want_minor = b->cfg.install != BK_INSTALL_COPY && !at->pinned;
	uint64_t got = 0, ioctls;
	int err;

	*can_poison = true;
	*minor = false;
	for (size_t i = 0; i < at->nregions; i++)
		want_minor &= !at->regions[i].huge; /* huge pages go in with UFFDIO_COPY */
	if (!reattach) {
		err = bk_uffd_api(at->uffd, UFFD_FEATURES,
				  UFFD_FEATURE_POISON | (want_minor ? UFFD_FEATURE_MINOR_SHMEM : 0),
				  &got);
		if (err)
			return refuse(why, n, err, "UFFDIO_API: %s (is the uffd fresh?)",
				      strerror(-err));
		*minor = want_minor && (got & UFFD_FEATURE_MINOR_SHMEM);
	} else {
		*minor = want_minor; /* the API was the earlier broker's: try */
	}
	for (size_t i = 0; i < at->nregions; i++) {
		const struct attach_region *r = &at->regions[i];
		uint64_t mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;

		err = *minor ? bk_uffd_register(at->uffd, r->host_addr, r->size,
						mode | UFFDIO_REGISTER_MODE_MINOR, &ioctls) : -EINVAL;
		if (err) {
			if (*minor && i > 0)
				return refuse(why, n, err, "UFFDIO_REGISTER(MINOR) of %s: %s", r->name,
					      strerror(-err));
			*minor = false; /* the first region decides for all */
			err = bk_uffd_register(at->uffd, r->host_addr, r->size, mode, &ioctls);
		}
		if (err)
			return refuse(why, n, err, "UFFDIO_REGISTER of %s: %s", r->name,
				      strerror(-err));
		if (!(ioctls & (1ull << _UFFDIO_COPY)) || !(ioctls & (1ull << _UFFDIO_WRITEPROTECT)))
			return refuse(why, n, -EOPNOTSUPP, "this kernel cannot COPY/WRITEPROTECT region %s",
				      r->name);
		if (*minor && !(ioctls & (1ull << _UFFDIO_CONTINUE)))
			return refuse(why, n, -EOPNOTSUPP, "this kernel cannot CONTINUE region %s",
				      r->name);
		if (!(ioctls & (1ull << _UFFDIO_POISON)))
			*can_poison = false;
		if (reattach) /* threads that faulted while no broker read the uffd */
			bk_uffd_wake(at->uffd, r->host_addr, r->size);
	}
	if (b->cfg.install == BK_INSTALL_CONTINUE && !*minor && want_minor)
		return refuse(why, n, -EOPNOTSUPP, "--install continue: this kernel or this memory "
			      "cannot take minor faults (UFFD_FEATURE_MINOR_SHMEM)");
	return 0;
}

struct bk_vm *bk_vm_find(struct bk_broker *b, const uint8_t incarnation[GVM_INCARNATION_BYTES])
{
	for (struct bk_vm *vm = b->vms; vm; vm = vm->next)
		if (!vm->detached && !memcmp(vm->incarnation, incarnation, GVM_INCARNATION_BYTES))
			return vm;
	return NULL;
}

static void orphan_take(struct bk_broker *b, const uint8_t *incarnation);

/* Hands the descriptors over from the attach to the VM (bk_vm_free
 * closes them from then on). */
static void take_fds(struct bk_vm *vm, struct bk_attach *at)
{
	vm->uffd = at->uffd;
	at->uffd = -1;
	for (size_t i = 0; i < at->nregions; i++) {
		vm->regions[i].memfd = at->memfds[i];
		at->memfds[i] = -1;
	}
}

/* A pinned VM is all resident for as long as it is attached: it must fit
 * the budget beside the pinned VMs there already (unpinned ones make
 * room), and its own limit, if it has one. */
static int check_pinned(const struct bk_broker *b, const struct bk_attach *at, char *why,
			size_t n)
{
	uint64_t pages = 0, pinned = bk_pinned_pages(b);

	for (size_t i = 0; i < at->nregions; i++)
		pages += at->regions[i].size / GVM_PAGE_SIZE;
	if (at->vm_limit_bytes && at->vm_limit_bytes / GVM_PAGE_SIZE < pages)
		return refuse(why, n, -ENOSPC, "pinned VM of %llu MiB: its own limit of %llu MiB "
			      "cannot hold it (a pinned VM is all resident)",
			      (unsigned long long)(pages * GVM_PAGE_SIZE >> 20),
			      (unsigned long long)(at->vm_limit_bytes >> 20));
	if (b->budget_pages && pinned + pages > b->budget_pages)
		return refuse(why, n, -ENOSPC, "pinned VM of %llu MiB does not fit: the budget is "
			      "%llu MiB and pinned VMs hold %llu MiB of it already (give it less "
			      "RAM, raise --budget, or run it unpinned)",
			      (unsigned long long)(pages * GVM_PAGE_SIZE >> 20),
			      (unsigned long long)(b->cfg.budget_bytes >> 20),
			      (unsigned long long)(pinned * GVM_PAGE_SIZE >> 20));
	return 0;
}

static void fill_start(struct bk_broker *b);

uint64_t bk_pinned_pages(const struct bk_broker *b)
{
	uint64_t n = 0;

	for (const struct bk_vm *vm = b->vms; vm; vm = vm->next)
		if (vm->pinned && !vm->detached)
			n += bk_vm_pages(vm);
	return n;
}

int bk_vm_attach(struct bk_broker *b, struct bk_attach *at, pid_t pid,
		 int pidfd, uid_t uid, const char *vm_name, const uint8_t *incarnation,
		 struct bk_vm **out, char *why, size_t n)
{
	struct bk_vm *vm = NULL;
	bool can_poison, minor;
	int err;

	if (incarnation && bk_vm_find(b, incarnation)) {
		err = refuse(why, n, -EBUSY, "that incarnation is attached already");
		goto out_pidfd;
	}
	if (at->pinned && (err = check_pinned(b, at, why, n)))
		goto out_pidfd;
	err = uffd_setup(b, at, incarnation != NULL, &can_poison, &minor, why, n);
	if (err)
		goto out_pidfd;
	vm = calloc(1, sizeof(*vm));
	if (!vm || !(vm->regions = calloc(at->nregions, sizeof(*vm->regions)))) {
		err = refuse(why, n, -ENOMEM, "out of memory");
		goto out_vm;
	}
	vm->pidfd = pidfd;
	pidfd = -1;
	vm->can_poison = can_poison;
	vm->minor = minor;
	vm->pinned = at->pinned;
	vm->b = b;
	vm->refs = 1; /* the attachment itself */
	vm->session = ++b->next_session;
	if (incarnation)
		memcpy(vm->incarnation, incarnation, GVM_INCARNATION_BYTES);
	else
		bk_identity_new(vm->incarnation);
	snprintf(vm->name, sizeof(vm->name), "%s", vm_name);
	vm->pid = pid;
	vm->uid = uid;
	vm->uffd = -1;
	vm->limit_pages = at->vm_limit_bytes / GVM_PAGE_SIZE;
	vm->nregions = at->nregions;
	for (size_t i = 0; i < at->nregions; i++)
		vm->regions[i].memfd = -1;
	for (size_t i = 0; i < at->nregions; i++) {
		const struct attach_region *r = &at->regions[i];

		if (bk_region_init(&vm->regions[i], vm, (unsigned)i, r->name, r->host_addr, r->size,
				   r->guest_phys, r->memfd_offset, r->huge)) {
			/* the attach still owns the descriptors */
			err = refuse(why, n, -ENOMEM, "out of memory for region %s", r->name);
			goto out_vm;
		}
	}
	take_fds(vm, at);
	err = bk_seal_attach(vm, incarnation != NULL, why, n);
	if (err)
		goto out_vm;
	for (size_t i = 0; vm->minor && i < vm->nregions; i++) {
		err = bk_region_map(&vm->regions[i]);
		if (err) {
			gvm_warn("vm %s: cannot map region %s (%s): its pages go in with UFFDIO_COPY",
				 vm->name, vm->regions[i].name, strerror(-err));
			for (size_t k = 0; k < i; k++) {
				munmap(vm->regions[k].map, vm->regions[k].size);
				vm->regions[k].map = NULL;
			}
			break;
		}
	}
	gvm_info("vm %s: pages go in with %s", vm_name,
		 vm->pinned ? "UFFDIO_COPY, all of them now: its RAM is pinned for device DMA, "
			      "resident and never evicted" :
		 vm->nregions && vm->regions[0].map ?
			 "UFFDIO_CONTINUE, received straight into its memory" :
			 vm->minor ? "UFFDIO_COPY (minor faults are served with UFFDIO_CONTINUE)" :
				     "UFFDIO_COPY");
	err = bk_fault_start(vm);
	if (err) {
		if (!incarnation)
			bk_seal_forget(b, vm->incarnation);
		bk_vm_put(vm); /* freed once its poll handle has closed */
		return refuse(why, n, err, "cannot poll the uffd: %s", uv_strerror(err));
	}
	vm->next = b->vms;
	b->vms = vm;
	/* A new incarnation has nothing on any donor: its pages read as zero
	 * until written, with no network trip. A re-attached one takes over
	 * what its memfd holds and asks the donors what they hold. */
	if (incarnation)
		orphan_take(b, incarnation);
	for (size_t i = 0; i < vm->nregions; i++) {
		if (incarnation) {
			bk_journal_reattached(b, &vm->regions[i]);
			bk_region_adopt_memfd(&vm->regions[i]);
			bk_replica_map(&vm->regions[i]);
		} else {
			vm->regions[i].map_ready = true;
		}
	}
	if (vm->pinned)
		fill_start(b);
	bk_stats.attaches++;
	*out = vm;
	return 0;

out_vm:
	if (vm && vm->regions)
		bk_vm_free(vm);
	else
		free(vm);
out_pidfd:
	if (pidfd >= 0)
		close(pidfd);
	return err;
}

static void on_dropped(struct bk_req *req, int status, const struct gvm_hdr *h,
		       const uint8_t *payload)
{
	(void)payload;
	if (!status && h->status && h->status != ENOENT)
		gvm_warn("DROP_NS %s: %s", req->hdr.ns_name, h->error);
	free(req);
}

void bk_drop_namespace(struct bk_broker *b, unsigned d, const char *ns)
{
	struct bk_req *req = calloc(1, sizeof(*req));

	if (!req) {
		bk_stats_nomem("donor %s: a DROP_NS of %s (its pages stay there)",
			       bk_pool_donor_addr(b->pool, d), ns);
		return;
	}
	req->donor = d;
	req->flags = BK_REQ_FAIL_IF_DOWN;
	req->cb = on_dropped;
	gvm_hdr_init(&req->hdr, GVM__OP__OP_DROP_NS, 0);
	strcpy(req->hdr.ns_name, ns);
	bk_pool_submit(b->pool, req);
}

/* Whether the process behind pidfd has exited. */
static bool process_exited(int pidfd)
{
	struct pollfd p = { pidfd, POLLIN, 0 };

	return pidfd >= 0 && poll(&p, 1, 0) == 1;
}

static void orphan_closed(uv_handle_t *h)
{
	struct bk_orphan *o = h->data;

	close(o->pidfd);
	free(o->ns);
	free(o->donors);
	free(o);
}

/* Unlinks o and frees it; its namespaces are dropped first if drop. */
static void orphan_end(struct bk_orphan *o, bool drop, const char *why)
{
	struct bk_orphan **pp;

	for (pp = &o->b->orphans; *pp; pp = &(*pp)->next)
		if (*pp == o) {
			*pp = o->next;
			break;
		}
	if (drop) {
		for (size_t i = 0; i < o->nregions; i++)
			for (size_t k = 0; k < o->ndonors; k++)
				bk_drop_namespace(o->b, o->donors[k], o->ns[i]);
		bk_seal_forget(o->b, o->incarnation);
		gvm_info("vm %s (pid %d): %s; its pages are dropped", o->vm_name, (int)o->pid, why);
	}
	uv_close((uv_handle_t *)&o->poll, orphan_closed);
}

static void on_orphan_exit(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	orphan_end(h->data, true, "its process exited");
}

/* Whether any of vm's namespaces was opened on donor d. */
static bool vm_on_donor(const struct bk_vm *vm, unsigned d)
{
	for (size_t i = 0; i < vm->nregions; i++)
		if (vm->regions[i].ns_id[d] || vm->regions[i].ns_was[d])
			return true;
	return false;
}

/* A VM whose connection ended under a live process: its namespaces are
 * kept until the process exits or attaches again. A user keeps at most
 * --uid-vms of these; past that, the oldest one's pages are dropped. */
static void orphan_add(struct bk_vm *vm)
{
	struct bk_broker *b = vm->b;
	struct bk_orphan *o = calloc(1, sizeof(*o)), *oldest = NULL, **tail;
	unsigned mine = 0;

	if (!o || !(o->ns = calloc(vm->nregions, sizeof(*o->ns))) ||
	    (b->ndonors && !(o->donors = malloc(b->ndonors * sizeof(*o->donors)))) ||
	    uv_poll_init(b->loop, &o->poll, vm->pidfd)) {
		if (o) {
			free(o->ns);
			free(o->donors);
		}
		free(o);
		gvm_err("vm %s (pid %d): cannot watch its process; its pages stay on the donors",
			vm->name, (int)vm->pid);
		return;
	}
	for (tail = &b->orphans; *tail; tail = &(*tail)->next)
		if ((*tail)->uid == vm->uid && mine++ == 0)
			oldest = *tail;
	o->b = b;
	memcpy(o->incarnation, vm->incarnation, sizeof(o->incarnation));
	snprintf(o->vm_name, sizeof(o->vm_name), "%s", vm->name);
	o->uid = vm->uid;
	o->pid = vm->pid;
	o->pidfd = vm->pidfd;
	vm->pidfd = -1;
	o->nregions = vm->nregions;
	for (size_t i = 0; i < vm->nregions; i++)
		strcpy(o->ns[i], vm->regions[i].ns);
	for (unsigned d = 0; d < b->ndonors; d++) /* where it has namespaces */
		if (vm_on_donor(vm, d))
			o->donors[o->ndonors++] = (uint16_t)d;
	o->poll.data = o;
	if (uv_poll_start(&o->poll, UV_READABLE, on_orphan_exit))
		gvm_err("vm %s (pid %d): cannot watch its process; its pages stay on the donors "
			"until it attaches again", o->vm_name, (int)o->pid);
	*tail = o; /* oldest first */
	if (oldest && mine >= b->cfg.uid_vms)
		orphan_end(oldest, true, "too many VMs of its user wait to re-attach");
}

/* A re-attach of a VM that waited as an orphan: the new VM watches. */
static void orphan_take(struct bk_broker *b, const uint8_t *incarnation)
{
	for (struct bk_orphan *o = b->orphans; o; o = o->next)
		if (!memcmp(o->incarnation, incarnation, GVM_INCARNATION_BYTES)) {
			orphan_end(o, false, NULL);
			return;
		}
}

void bk_orphans_stop(struct bk_broker *b)
{
	while (b->orphans)
		orphan_end(b->orphans, false, NULL);
}

/* The VM is gone from this broker: stop serving it. Its pages on the donors
 * go too if its process exited or it detached on purpose; they stay while a
 * live process may attach again, and when the broker itself stops. */
void bk_vm_detach(struct bk_vm *vm, const char *reason, enum bk_detach_how how)
{
	struct bk_broker *b = vm->b;
	bool drop = how == BK_DETACH_DROP || process_exited(vm->pidfd);

	if (vm->detached)
		return;
	vm->detached = true;
	bk_fault_stop(vm);
	b->resident_pages -= bk_vm_resident(vm);
	for (size_t i = 0; i < vm->nregions; i++)
		bk_cache_drop_region(b->cache, &vm->regions[i]);
	if (b->stopping) {
		gvm_info("vm %s (pid %d): let go (%s); its pages stay on the donors for the next broker",
			 vm->name, (int)vm->pid, reason);
	} else if (drop) {
		for (size_t i = 0; i < vm->nregions; i++)
			for (unsigned d = 0; d < b->ndonors; d++)
				if (vm->regions[i].ns_id[d] || vm->regions[i].ns_was[d])
					bk_drop_namespace(b, d, vm->regions[i].ns);
		bk_seal_forget(b, vm->incarnation);
		gvm_info("vm %s (pid %d): detached: %s", vm->name, (int)vm->pid, reason);
	} else {
		gvm_info("vm %s (pid %d): detached: %s; its pages stay on the donors while its "
			 "process lives", vm->name, (int)vm->pid, reason);
		orphan_add(vm);
	}
	for (size_t i = 0; i < vm->nregions; i++)
		bk_loc_forget(&vm->regions[i]); /* its copies no longer count */
	bk_vm_put(vm);
}

/* ---- pinned VMs: all their RAM in, at attach ----
 * Device DMA (VFIO's type1 IOMMU, io_uring fixed buffers) pins every page
 * of a pinned VM's RAM for as long as it runs, so each page is brought in
 * now, a few extents per loop turn so that faults of other VMs are served
 * meanwhile: zeros for a new VM, its donors' copies for a re-attached one
 * (bk_fault_fill). An idle handle keeps the loop turning until all are in;
 * while none can go on (their donors have not all said what they hold),
 * a timer asks again a little later instead. */

#define FILL_EXTENTS_PER_TURN 64u

/* Fills a few more extents of vm: false once it is all in. */
static bool fill_vm(struct bk_vm *vm, unsigned *budget)
{
	while (vm->fill_region < vm->nregions) {
		struct bk_region *rg = &vm->regions[vm->fill_region];

		for (; vm->fill_extent < rg->nextents; vm->fill_extent++) {
			if (!*budget)
				return true;
			if (!bk_fault_fill(rg, vm->fill_extent))
				return true; /* its donors have not said what they hold yet */
			--*budget;
		}
		vm->fill_region++;
		vm->fill_extent = 0;
	}
	gvm_info("vm %s: all its pinned RAM is in memory (%llu MiB resident)", vm->name,
		 (unsigned long long)(bk_vm_resident(vm) * GVM_PAGE_SIZE >> 20));
	return false;
}

static void on_fill(uv_idle_t *h);

static void on_fill_wait(uv_timer_t *t)
{
	struct bk_broker *b = t->data;

	uv_idle_start(&b->fill, on_fill);
}

static void on_fill(uv_idle_t *h)
{
	struct bk_broker *b = h->data;
	unsigned budget = FILL_EXTENTS_PER_TURN;
	bool more = false;

	for (struct bk_vm *vm = b->vms; vm; vm = vm->next)
		if (vm->pinned && !vm->detached && !vm->failed && vm->fill_region < vm->nregions)
			more |= fill_vm(vm, &budget);
	if (!more) {
		bk_fill_stop(b);
	} else if (budget == FILL_EXTENTS_PER_TURN) { /* none could go on */
		uv_idle_stop(&b->fill);
		uv_timer_start(&b->fill_wait, on_fill_wait, BK_FILL_WAIT_MS, 0);
	}
}

static void fill_start(struct bk_broker *b)
{
	if (b->filling)
		return;
	if (!b->fill.loop) {
		uv_idle_init(b->loop, &b->fill);
		b->fill.data = b;
		uv_timer_init(b->loop, &b->fill_wait);
		b->fill_wait.data = b;
	}
	b->filling = true;
	uv_idle_start(&b->fill, on_fill);
}

void bk_fill_stop(struct bk_broker *b)
{
	if (b->filling) {
		b->filling = false;
		uv_idle_stop(&b->fill);
		uv_timer_stop(&b->fill_wait);
	}
	if (b->stopping && b->fill.loop && !uv_is_closing((uv_handle_t *)&b->fill)) {
		uv_close((uv_handle_t *)&b->fill, NULL);
		uv_close((uv_handle_t *)&b->fill_wait, NULL);
	}
}
