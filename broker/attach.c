/* attach.c: taking a VM in and letting it go. An Attach brings a uffd and
 * one memfd per region; nothing the client claims is believed beyond what
 * its descriptors and /proc/PID/maps prove: the uffd must be a userfaultfd,
 * each memfd a memfd large enough, each region page-aligned, disjoint, and
 * mapped shared from that memfd at that offset in the caller's memory. Then
 * the broker itself does UFFDIO_API and UFFDIO_REGISTER(MISSING|WP) on the
 * client's uffd and starts serving faults (fault.c). Detaching drops the
 * VM's namespaces on the donors. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "broker.h"
#include "gvm.pb-c.h"
#include "log.h"
#include "pool.h"
#include "prefetch.h"
#include "stats.h"

#define UFFD_FEATURES \
	(UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_EVENT_REMOVE)

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

static bool name_ok(const char *name, size_t max)
{
	size_t len = strlen(name);

	if (!len || len > max)
		return false;
	for (const char *p = name; *p; p++)
		if (*p <= ' ' || *p > '~' || *p == '/')
			return false;
	return true;
}

/* Every page of [addr, addr+size) must be a shared mapping of the memfd
 * (dev, ino) at memfd_offset + (page - addr) in process pid. */
static int check_mapping(pid_t pid, uint64_t addr, uint64_t size, uint64_t off,
			 const struct stat *st, char *why, size_t n)
{
	char path[64], line[512];
	uint64_t covered = addr;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return refuse(why, n, -EPERM, "cannot read the maps of pid %d", (int)pid);
	while (covered < addr + size && fgets(line, sizeof(line), f)) {
		unsigned long long start, end, moff, ino;
		unsigned maj, min;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms, &moff,
			   &maj, &min, &ino) != 7)
			continue;
		if (end <= covered || start > covered)
			continue;
		if (perms[3] != 's' || ino != st->st_ino || makedev(maj, min) != st->st_dev ||
		    moff + (covered - start) != off + (covered - addr))
			break;
		covered = end;
	}
	fclose(f);
	if (covered < addr + size)
		return refuse(why, n, -EINVAL,
			      "region at 0x%" PRIx64 " is not a shared mapping of its memfd at offset %" PRIu64
			      " (use memory-backend-memfd,share=on)", addr, off);
	return 0;
}

static int check_regions(const Gvm__Attach *a, const int *fds, int nfds, pid_t pid,
			 struct stat *st, char *why, size_t n)
{
	char link[256];

	if (a->n_regions == 0 || a->n_regions > GVM_CTL_REGIONS_MAX)
		return refuse(why, n, -EINVAL, "%zu regions (1..%u allowed)", a->n_regions,
			      GVM_CTL_REGIONS_MAX);
	if (nfds != 1 + (int)a->n_regions)
		return refuse(why, n, -EINVAL, "expected %zu descriptors (uffd + one memfd per region), got %d",
			      1 + a->n_regions, nfds);
	if (fd_link(fds[0], link, sizeof(link)) || strcmp(link, "anon_inode:[userfaultfd]"))
		return refuse(why, n, -EINVAL, "first descriptor is not a userfaultfd (%s)", link);
	for (size_t i = 0; i < a->n_regions; i++) {
		const Gvm__Region *r = a->regions[i];
		int fd = fds[1 + i];

		if (!name_ok(r->name, GVM_REGION_NAME_MAX_BYTES))
			return refuse(why, n, -EINVAL, "region %zu: bad name", i);
		if (fd_link(fd, link, sizeof(link)) || strncmp(link, "/memfd:", 7) ||
		    fstat(fd, &st[i]) || !S_ISREG(st[i].st_mode))
			return refuse(why, n, -EINVAL, "region %s: descriptor is not a memfd (%s)",
				      r->name, link);
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
		int err = check_mapping(pid, r->host_addr, r->size, r->memfd_offset, &st[i], why, n);
		if (err)
			return err;
	}
	return 0;
}

static int uffd_setup(int uffd, const Gvm__Attach *a, bool reattach, char *why, size_t n)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURES };

	if (!reattach && ioctl(uffd, UFFDIO_API, &api) < 0)
		return refuse(why, n, -errno, "UFFDIO_API: %s (is the uffd fresh?)", strerror(errno));
	for (size_t i = 0; i < a->n_regions; i++) {
		struct uffdio_register reg = {
			.range = { a->regions[i]->host_addr, a->regions[i]->size },
			.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
		};

		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
			return refuse(why, n, -errno, "UFFDIO_REGISTER of %s: %s", a->regions[i]->name,
				      strerror(errno));
		if (!(reg.ioctls & (1ull << _UFFDIO_COPY)) ||
		    !(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT)))
			return refuse(why, n, -EOPNOTSUPP, "this kernel cannot COPY/WRITEPROTECT region %s",
				      a->regions[i]->name);
		if (reattach) { /* threads that faulted while no broker read the uffd */
			struct uffdio_range r = { a->regions[i]->host_addr, a->regions[i]->size };

			ioctl(uffd, UFFDIO_WAKE, &r);
		}
	}
	return 0;
}

struct fresh_check {
	struct bk_req req;
	struct bk_region *rg;
};

/* A region whose namespace holds nothing on any donor reads as zeros until
 * written: its faults need no network trip. One STATS per donor decides;
 * until every donor has said "empty", faults go to the donors. */
static void on_fresh_stats(struct bk_req *req, int status, const struct gvm_hdr *h,
			   const uint8_t *payload)
{
	struct fresh_check *fc = (struct fresh_check *)req;
	struct bk_region *rg = fc->rg;
	Gvm__MemserverStats *m = NULL;
	bool empty = false;

	if (!status && !h->status) {
		m = gvm__memserver_stats__unpack(NULL, h->payload_len, payload);
		empty = m && m->ns_used_pages == 0;
		if (m)
			gvm__memserver_stats__free_unpacked(m, NULL);
	}
	if (!empty)
		rg->fresh_seen_data = true; /* not empty, or unknown */
	if (--rg->fresh_pending == 0)
		rg->fresh = !rg->fresh_seen_data;
	bk_vm_put(rg->vm);
	free(fc);
}

static void check_fresh(struct bk_region *rg)
{
	struct bk_broker *b = rg->vm->b;

	rg->fresh = false;
	rg->fresh_pending = b->cfg.ndonors;
	for (unsigned d = 0; d < b->cfg.ndonors; d++) {
		struct fresh_check *fc = calloc(1, sizeof(*fc));

		if (!fc) {
			rg->fresh_seen_data = true;
			rg->fresh_pending--;
			continue;
		}
		fc->rg = rg;
		fc->req.donor = d;
		fc->req.flags = BK_REQ_DEMAND | BK_REQ_FAIL_IF_DOWN;
		fc->req.cb = on_fresh_stats;
		gvm_hdr_init(&fc->req.hdr, GVM__OP__OP_STATS, 0);
		strcpy(fc->req.hdr.ns_name, rg->ns);
		rg->vm->refs++;
		bk_pool_submit(b->pool, &fc->req);
	}
}

struct bk_vm *bk_vm_find(struct bk_broker *b, const char *name)
{
	for (struct bk_vm *vm = b->vms; vm; vm = vm->next)
		if (!vm->detached && !strcmp(vm->name, name))
			return vm;
	return NULL;
}

static void vm_free(struct bk_vm *vm)
{
	for (size_t i = 0; i < vm->nregions; i++) {
		struct bk_region *rg = &vm->regions[i];

		if (rg->memfd >= 0)
			close(rg->memfd);
		free(rg->ext_state);
		free(rg->resident);
		free(rg->dirty);
		free(rg->ref);
		free(rg->evicting);
		free(rg->wp_held);
		free(rg->fetching);
		free(rg->on_donor);
		free(rg->wb_inflight);
	}
	if (vm->uffd >= 0)
		close(vm->uffd);
	free(vm->regions);
	free(vm);
}

void bk_vm_put(struct bk_vm *vm)
{
	struct bk_vm **pp;

	if (--vm->refs)
		return;
	for (pp = &vm->b->vms; *pp; pp = &(*pp)->next) {
		if (*pp == vm) {
			*pp = vm->next;
			break;
		}
	}
	vm_free(vm);
}

int bk_vm_attach(struct bk_broker *b, struct bk_client *client, pid_t pid, uid_t uid,
		 const char *vm_name, bool reattach, const void *attach_msg, int *fds, int nfds,
		 struct bk_vm **out, char *why, size_t n)
{
	const Gvm__Attach *a = attach_msg;
	struct stat st[GVM_CTL_REGIONS_MAX];
	struct bk_vm *vm;
	int err;

	err = check_regions(a, fds, nfds, pid, st, why, n);
	if (err)
		return err;
	if (bk_vm_find(b, vm_name))
		return refuse(why, n, -EEXIST, "a VM named %s is already attached", vm_name);
	err = uffd_setup(fds[0], a, reattach, why, n);
	if (err)
		return err;
	vm = calloc(1, sizeof(*vm));
	if (!vm || !(vm->regions = calloc(a->n_regions, sizeof(*vm->regions)))) {
		free(vm);
		return refuse(why, n, -ENOMEM, "out of memory");
	}
	vm->b = b;
	vm->refs = 1; /* the attachment itself */
	vm->session = ++b->next_session;
	snprintf(vm->name, sizeof(vm->name), "%s", vm_name);
	vm->pid = pid;
	vm->uid = uid;
	vm->client = client;
	vm->uffd = fds[0];
	vm->limit_pages = a->vm_limit_bytes / GVM_PAGE_SIZE;
	vm->nregions = a->n_regions;
	for (size_t i = 0; i < a->n_regions; i++)
		vm->regions[i].memfd = -1;
	for (size_t i = 0; i < a->n_regions; i++) {
		struct bk_region *rg = &vm->regions[i];
		const Gvm__Region *r = a->regions[i];

		rg->vm = vm;
		rg->index = (unsigned)i;
		snprintf(rg->name, sizeof(rg->name), "%s", r->name);
		snprintf(rg->ns, sizeof(rg->ns), "%s.%s", vm_name, r->name);
		rg->host_addr = r->host_addr;
		rg->size = r->size;
		rg->guest_phys = r->guest_phys;
		rg->memfd_offset = r->memfd_offset;
		rg->memfd = fds[1 + i];
		rg->npages = r->size / GVM_PAGE_SIZE;
		rg->nextents = (rg->npages + b->cfg.extent_pages - 1) / b->cfg.extent_pages;
		rg->last_extent = UINT64_MAX - 1;
		rg->ext_state = calloc(rg->nextents, 1);
		rg->resident = calloc((rg->npages + 63) / 64, 8);
		rg->dirty = calloc((rg->npages + 63) / 64, 8);
		rg->ref = calloc((rg->npages + 63) / 64, 8);
		rg->evicting = calloc((rg->npages + 63) / 64, 8);
		rg->wp_held = calloc((rg->npages + 63) / 64, 8);
		rg->fetching = calloc((rg->npages + 63) / 64, 8);
		rg->on_donor = calloc((rg->nextents + 63) / 64, 8);
		rg->wb_inflight = calloc(rg->nextents, 1);
		if (!rg->ext_state || !rg->resident || !rg->dirty || !rg->ref || !rg->evicting ||
		    !rg->wp_held || !rg->fetching || !rg->on_donor || !rg->wb_inflight) {
			vm->uffd = -1; /* the caller still owns the descriptors */
			for (size_t k = 0; k < a->n_regions; k++)
				vm->regions[k].memfd = -1;
			vm_free(vm);
			return refuse(why, n, -ENOMEM, "out of memory for region %s", r->name);
		}
	}
	err = bk_fault_start(vm);
	if (err) {
		vm->uffd = -1;
		for (size_t k = 0; k < a->n_regions; k++)
			vm->regions[k].memfd = -1;
		vm_free(vm);
		return refuse(why, n, err, "cannot poll the uffd: %s", uv_strerror(err));
	}
	vm->next = b->vms;
	b->vms = vm;
	for (size_t i = 0; i < vm->nregions; i++)
		check_fresh(&vm->regions[i]);
	bk_stats.attaches++;
	*out = vm;
	return 0;
}

static void on_dropped(struct bk_req *req, int status, const struct gvm_hdr *h,
		       const uint8_t *payload)
{
	(void)payload;
	if (!status && h->status && h->status != ENOENT)
		gvm_warn("DROP_NS %s: %s", req->hdr.ns_name, h->error);
	free(req);
}

/* The VM is gone: stop serving it, forget its pages everywhere. */
void bk_vm_detach(struct bk_vm *vm, const char *reason)
{
	struct bk_broker *b = vm->b;

	if (vm->detached)
		return;
	vm->detached = true;
	bk_fault_stop(vm);
	b->resident_pages -= bk_vm_resident(vm);
	for (size_t i = 0; i < vm->nregions; i++) {
		struct bk_region *rg = &vm->regions[i];

		bk_cache_drop_region(b->cache, rg);
		for (unsigned d = 0; d < b->cfg.ndonors; d++) {
			struct bk_req *req = calloc(1, sizeof(*req));

			if (!req)
				continue;
			req->donor = d;
			req->flags = BK_REQ_FAIL_IF_DOWN;
			req->cb = on_dropped;
			gvm_hdr_init(&req->hdr, GVM__OP__OP_DROP_NS, 0);
			strcpy(req->hdr.ns_name, rg->ns);
			bk_pool_submit(b->pool, req);
		}
	}
	gvm_info("vm %s (pid %d): detached: %s", vm->name, (int)vm->pid, reason);
	vm->client = NULL;
	bk_vm_put(vm);
}
