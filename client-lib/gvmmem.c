/* gvmmem.c: libgvmmem (gvmmem.h). Mode detection, and the attach handshake
 * of DESIGN.md with gvm-broker (broker/control.c) over its SOCK_SEQPACKET
 * socket: Hello -> Welcome + /dev/userfaultfd fd -> our uffd -> Attach +
 * uffd + memfds -> Attached. When the endpoint is the broker's device
 * (/dev/gvmmem, cuse-dev/), GVMMEM_IOC_HELLO on it first gives the socket
 * path and a one-time token for the Hello. Attached names the VM's
 * incarnation and a secret; a monitor thread watches the connection and
 * re-attaches the same uffd and incarnation to a restarted broker with
 * them (only this uid can). gvm_set_limit asks through the monitor, which
 * reads every answer on the connection. */
#include "gvmmem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "ctlmsg.h"
#include "gvmmem_ioctl.h"
#include "log.h"
#include "names.h"

#define GVM__CUSE_DEVICE "/dev/gvmmem"
/* GiantVM's kvm.ko (GiantVM/Linux-DSM) answers KVM_CHECK_EXTENSION for this
 * (its KVM_CAP_X86_DSM); upstream x86 kernels answer 0 (upstream uses the
 * number for a PowerPC-only capability). */
#define GVM__KVM_CAP_X86_DSM 133
#define GVM__REATTACH_MIN_MS 50
#define GVM__REATTACH_MAX_MS 2000
#define GVM__REQUEST_TIMEOUT_MS 10000 /* gvm_set_limit's wait for the broker */

struct gvm_session {
	char endpoint[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char vm_name[GVM_VM_NAME_MAX_BYTES + 1];
	struct gvm_region *regions;
	char (*names)[GVM_REGION_NAME_MAX_BYTES + 1];
	size_t nregions;
	int sock;
	int uffd;   /* our own copy: while it is open, faults wait, never read zeros */
	int stopfd; /* eventfd that ends the monitor */
	uint64_t limit_bytes; /* $GVM_VM_LIMIT: this VM's own budget, 0 for none */
	bool pinned;          /* GVM_ATTACH_PINNED: its RAM is pinned for DMA */
	uint64_t session;
	pthread_t monitor;
	uint8_t token[GVMMEM_TOKEN_BYTES]; /* from the device, for the next Hello */
	bool have_token;
	/* From Attached: who this VM is at the broker, and the proof. */
	uint8_t incarnation[GVM_INCARNATION_BYTES];
	uint8_t secret[GVM_INCARNATION_SECRET_BYTES];
	/* A request of the caller's (gvm_set_limit) the monitor answers. */
	pthread_mutex_t lock;
	pthread_cond_t answered;
	bool waiting;
	int answer;
};

const char *gvm_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case -ENOENT: return "no broker socket at the endpoint (is gvm-broker running?)";
	case -ECONNREFUSED: return "the broker is not accepting connections";
	case -EACCES: return "permission denied (is the user in group gvm?)";
	case -EPERM: return "the broker refused this process";
	case -EPROTO: return "the broker speaks another protocol version";
	case -EBADMSG: return "malformed message from the broker";
	case -EINVAL: return "invalid name or region (names: letters, digits and . _ - + : @, at "
			     "most 63 bytes; regions: alignment, size, overlap, or not a shared "
			     "memfd mapping)";
	case -EDQUOT: return "this user is at one of its limits at the broker (VMs, regions, "
			     "connections or unused attach tokens); the broker's log says which";
	case -EBUSY: return "this VM incarnation is attached already";
	case -ETIMEDOUT: return "the broker did not answer in time";
	case -ECONNRESET: return "the broker closed the connection";
	case -ENOTTY: return "the endpoint is a device, but not gvm-broker's /dev/gvmmem";
	case -ENOSPC: return "a pinned VM (VFIO passthrough or GVM_PINNED=1) keeps all its RAM on "
			     "this host, and the broker's budget has no room for it beside the "
			     "pinned VMs already there (or its own --vm-limit is smaller than its "
			     "RAM): give it less memory, raise gvm-broker --budget, or run it "
			     "unpinned (without VFIO); the broker's log gives the numbers";
	default: return strerror(-err);
	}
}

static const char *endpoint_default(void)
{
	const char *env = getenv("GVM_ENDPOINT");
	struct stat st;

	if (env && *env)
		return env;
	if (stat(GVM__CUSE_DEVICE, &st) == 0 && S_ISCHR(st.st_mode))
		return GVM__CUSE_DEVICE;
	return GVM_DEFAULT_SOCKET;
}

static bool gvm__is_device(const char *endpoint)
{
	struct stat st;

	return stat(endpoint, &st) == 0 && S_ISCHR(st.st_mode);
}

/* GVMMEM_IOC_HELLO (hello may be NULL: only GVMMEM_IOC_VERSION, to see the
 * broker is there) on the device: 0 or -errno. */
static int gvm__device_hello(const char *device, struct gvmmem_hello *hello)
{
	struct gvmmem_version v;
	int fd = open(device, O_RDWR | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (ioctl(fd, GVMMEM_IOC_VERSION, &v) < 0)
		err = errno == EINVAL ? -ENOTTY : -errno;
	else if (v.protocol_version != GVM_CTL_VERSION)
		err = -EPROTO;
	else if (hello && ioctl(fd, GVMMEM_IOC_HELLO, hello) < 0)
		err = -errno;
	close(fd);
	if (!err && hello)
		hello->socket_path[sizeof(hello->socket_path) - 1] = '\0';
	return err;
}

/* A connected SOCK_SEQPACKET socket to the broker, or -errno. Through the
 * device when endpoint is one: then s (if not NULL) gets the token. */
static int gvm__connect(const char *endpoint, struct gvm_session *sess)
{
	struct gvmmem_hello hello;
	int err;

	if (gvm__is_device(endpoint)) {
		err = gvm__device_hello(endpoint, &hello);
		if (err)
			return err;
		if (sess) {
			memcpy(sess->token, hello.token, sizeof(sess->token));
			sess->have_token = true;
		}
		explicit_bzero(hello.token, sizeof(hello.token));
		endpoint = hello.socket_path;
	}
	return gvm_ctl_connect(endpoint);
}

static bool gvm__exists(const char *root, const char *path)
{
	char full[512];

	snprintf(full, sizeof(full), "%s%s", root, path);
	return access(full, F_OK) == 0;
}

enum gvm_mode gvm_detect_mode(void)
{
	const char *force = getenv("GVM_MODE"), *root = getenv("GVM_SYSROOT");
	const char *endpoint = endpoint_default();
	char kvm_path[512];
	bool giantvm_kvm = false;
	const char *accel;
	int s;

	if (!root)
		root = "";
	snprintf(kvm_path, sizeof(kvm_path), "%s/dev/kvm", root);
	s = open(kvm_path, O_RDWR | O_CLOEXEC); /* a node may exist without a module */
	accel = s >= 0 ? "KVM" : "TCG (no usable /dev/kvm)";
	if (s >= 0) {
		giantvm_kvm = ioctl(s, KVM_CHECK_EXTENSION, GVM__KVM_CAP_X86_DSM) > 0;
		close(s);
	}
	if (force && *force) {
		if (!strcmp(force, "none") || !strcmp(force, "local")) {
			gvm_info("gvmmem: GVM_MODE=%s: guest RAM stays local; %s", force, accel);
			return GVM_MODE_NONE;
		}
		if (!strcmp(force, "memory-only") || !strcmp(force, "memory")) {
			gvm_info("gvmmem: GVM_MODE=%s: memory-only mode; %s", force, accel);
			return GVM_MODE_MEMORY_ONLY;
		}
		if (!strcmp(force, "full-share") || !strcmp(force, "full")) {
			gvm_info("gvmmem: GVM_MODE=%s: full-share mode; %s", force, accel);
			return GVM_MODE_FULL_SHARE;
		}
		gvm_warn("gvmmem: GVM_MODE=%s is not none, memory-only or full-share; ignored",
			 force);
	}
	if (giantvm_kvm || gvm__exists(root, "/sys/module/giantvm_kvm") ||
	    gvm__exists(root, "/dev/giantvm")) {
		gvm_info("gvmmem: GiantVM kernel found: full-share mode, the kernel shares memory; %s",
			 accel);
		return GVM_MODE_FULL_SHARE;
	}
	s = gvm__is_device(endpoint) ? gvm__device_hello(endpoint, NULL) : gvm__connect(endpoint, NULL);
	if (s >= 0) {
		if (!gvm__is_device(endpoint))
			close(s);
		gvm_info("gvmmem: broker at %s: memory-only mode; %s", endpoint, accel);
		return GVM_MODE_MEMORY_ONLY;
	}
	gvm_info("gvmmem: no GiantVM kernel and no broker at %s (%s): guest RAM stays local; %s",
		 endpoint, strerror(-s), accel);
	return GVM_MODE_NONE;
}

/* Waits for the broker's answer; a ControlError becomes -status. */
static int gvm__expect(struct gvm_session *s, Gvm__Control__MsgCase want,
		       Gvm__Control **m, int *fds, int *nfds, int maxfds)
{
	int err = gvm_ctl_recv(s->sock, m, fds, nfds, maxfds);

	if (err)
		return err;
	if ((*m)->msg_case == GVM__CONTROL__MSG_ERROR) {
		err = (*m)->error->status > 0 ? -(*m)->error->status : -EPROTO;
		gvm_warn("gvmmem: broker refused %s: %s", s->vm_name, (*m)->error->error);
	} else if ((*m)->msg_case != want) {
		err = -EBADMSG;
	}
	if (err) {
		gvm_ctl_close_fds(fds, *nfds);
		*nfds = 0;
		gvm__control__free_unpacked(*m, NULL);
		*m = NULL;
	}
	return err;
}

/* Hello/Welcome/Attach/Attached on s->sock. With reattach the uffd exists
 * already and is only handed over again. */
static int gvm__handshake(struct gvm_session *s, bool reattach)
{
	Gvm__Control msg = GVM__CONTROL__INIT, *in = NULL;
	Gvm__Hello hello = GVM__HELLO__INIT;
	Gvm__Attach attach = GVM__ATTACH__INIT;
	Gvm__Region *rp[GVM_CTL_REGIONS_MAX], rv[GVM_CTL_REGIONS_MAX];
	int fds[GVM_CTL_FDS_MAX], nfds = 0, devfd = -1, maps, err;
	bool client_makes_uffd;

	hello.version = GVM_CTL_VERSION;
	hello.vm_name = s->vm_name;
	hello.reattach = reattach;
	if (reattach) {
		hello.incarnation = (ProtobufCBinaryData){ sizeof(s->incarnation), s->incarnation };
		hello.secret = (ProtobufCBinaryData){ sizeof(s->secret), s->secret };
	}
	if (s->have_token) {
		hello.token.data = s->token;
		hello.token.len = sizeof(s->token);
	}
	msg.msg_case = GVM__CONTROL__MSG_HELLO;
	msg.hello = &hello;
	err = gvm_ctl_send(s->sock, &msg, NULL, 0);
	explicit_bzero(s->token, sizeof(s->token)); /* one use */
	s->have_token = false;
	if (!err)
		err = gvm__expect(s, GVM__CONTROL__MSG_WELCOME, &in, fds, &nfds, 1);
	if (err)
		return err;
	s->session = in->welcome->session;
	client_makes_uffd = in->welcome->client_makes_uffd;
	gvm__control__free_unpacked(in, NULL);
	if (!client_makes_uffd) {
		if (nfds != 1)
			return -EBADMSG;
		devfd = fds[0];
	}
	if (!reattach) {
		if (client_makes_uffd)
			s->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		else
			s->uffd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		if (s->uffd < 0) {
			err = -errno;
			gvm_warn("gvmmem: cannot create a userfaultfd: %s", strerror(errno));
		}
	}
	if (devfd >= 0)
		close(devfd);
	if (err)
		return err;

	for (size_t i = 0; i < s->nregions; i++) {
		gvm__region__init(&rv[i]);
		rv[i].name = s->names[i];
		rv[i].host_addr = (uint64_t)(uintptr_t)s->regions[i].host_addr;
		rv[i].size = s->regions[i].size;
		rv[i].guest_phys = s->regions[i].guest_phys;
		rv[i].memfd_offset = s->regions[i].memfd_offset;
		rp[i] = &rv[i];
		fds[1 + i] = s->regions[i].memfd;
	}
	/* What the kernel says our memory is, for the broker to check the
	 * regions against (it reads it; we need no privilege to open it). */
	maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (maps < 0) {
		err = -errno;
		gvm_warn("gvmmem: cannot open /proc/self/maps: %s", strerror(errno));
		return err;
	}
	fds[0] = s->uffd;
	fds[1 + s->nregions] = maps;
	attach.n_regions = s->nregions;
	attach.vm_limit_bytes = s->limit_bytes;
	attach.pinned = s->pinned;
	attach.regions = rp;
	msg = (Gvm__Control)GVM__CONTROL__INIT;
	msg.msg_case = GVM__CONTROL__MSG_ATTACH;
	msg.attach = &attach;
	err = gvm_ctl_send(s->sock, &msg, fds, 2 + (int)s->nregions);
	close(maps);
	if (!err)
		err = gvm__expect(s, GVM__CONTROL__MSG_ATTACHED, &in, fds, &nfds, 0);
	if (err)
		return err;
	if (!reattach) {
		if (in->attached->incarnation.len != sizeof(s->incarnation) ||
		    in->attached->secret.len != sizeof(s->secret)) {
			gvm__control__free_unpacked(in, NULL);
			return -EBADMSG;
		}
		memcpy(s->incarnation, in->attached->incarnation.data, sizeof(s->incarnation));
		memcpy(s->secret, in->attached->secret.data, sizeof(s->secret));
	}
	gvm__control__free_unpacked(in, NULL);
	return 0;
}

/* Hands the answer to the caller waiting in gvm_set_limit, if one is. */
static void gvm__answer(struct gvm_session *s, int err)
{
	pthread_mutex_lock(&s->lock);
	if (s->waiting) {
		s->waiting = false;
		s->answer = err;
		pthread_cond_signal(&s->answered);
	}
	pthread_mutex_unlock(&s->lock);
}

/* Watches the broker connection; when it drops, reconnects with backoff
 * and re-attaches. Faults on the regions simply wait meanwhile: our uffd
 * copy keeps them registered. */
static void *gvm__monitor(void *arg)
{
	struct gvm_session *s = arg;
	long backoff = GVM__REATTACH_MIN_MS;

	for (;;) {
		struct pollfd p[2] = { { s->sock, POLLIN | POLLRDHUP, 0 },
				       { s->stopfd, POLLIN, 0 } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return NULL;
		if (p[1].revents)
			return NULL;
		if (!(p[0].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLIN)))
			continue;
		if (p[0].revents & POLLIN && !(p[0].revents & (POLLHUP | POLLRDHUP))) {
			Gvm__Control *m;
			int fds[1], nfds, err = gvm_ctl_recv(s->sock, &m, fds, &nfds, 1);

			if (!err) { /* an answer to a request of the caller's */
				gvm_ctl_close_fds(fds, nfds);
				gvm__answer(s, m->msg_case == GVM__CONTROL__MSG_ERROR ?
							-(m->error->status > 0 ? m->error->status : EPROTO) :
							0);
				gvm__control__free_unpacked(m, NULL);
				continue;
			}
		}
		gvm_warn("gvmmem: %s: lost the broker at %s; faults wait while re-attaching",
			 s->vm_name, s->endpoint);
		pthread_mutex_lock(&s->lock);
		close(s->sock);
		s->sock = -1;
		pthread_mutex_unlock(&s->lock);
		gvm__answer(s, -ECONNRESET);
		for (;;) {
			struct pollfd stop = { s->stopfd, POLLIN, 0 };
			int fd, err;

			if (poll(&stop, 1, (int)backoff) > 0)
				return NULL;
			backoff = backoff * 2 > GVM__REATTACH_MAX_MS ? GVM__REATTACH_MAX_MS :
								      backoff * 2;
			fd = gvm__connect(s->endpoint, s);
			if (fd < 0)
				continue;
			pthread_mutex_lock(&s->lock);
			s->sock = fd;
			err = gvm__handshake(s, true);
			if (err)
				s->sock = -1;
			pthread_mutex_unlock(&s->lock);
			if (!err)
				break;
			gvm_warn("gvmmem: %s: re-attach failed: %s", s->vm_name, gvm_strerror(err));
			close(fd);
		}
		gvm_info("gvmmem: %s: re-attached to the broker", s->vm_name);
		backoff = GVM__REATTACH_MIN_MS;
	}
}

static void gvm__free(struct gvm_session *s)
{
	if (s->sock >= 0)
		close(s->sock);
	if (s->uffd >= 0)
		close(s->uffd);
	if (s->stopfd >= 0)
		close(s->stopfd);
	free(s->regions);
	free(s->names);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->answered);
	explicit_bzero(s->secret, sizeof(s->secret));
	free(s);
}

struct gvm_session *gvm_attach(const char *endpoint, const char *vm_name,
			       const struct gvm_region *regions, size_t nregions,
			       int *err)
{
	return gvm_attach_flags(endpoint, vm_name, regions, nregions,
				gvm_env_flag("GVM_PINNED") ? GVM_ATTACH_PINNED : 0, err);
}

struct gvm_session *gvm_attach_flags(const char *endpoint, const char *vm_name,
				     const struct gvm_region *regions, size_t nregions,
				     unsigned flags, int *err)
{
	struct gvm_session *s;
	const char *bad;
	int e;

	*err = -EINVAL;
	if (flags & ~GVM_ATTACH_PINNED) {
		gvm_warn("gvmmem: unknown attach flags 0x%x", flags & ~GVM_ATTACH_PINNED);
		return NULL;
	}
	bad = gvm_label_invalid(vm_name, GVM_VM_NAME_MAX_BYTES);
	if (bad) {
		gvm_warn("gvmmem: the VM name %s", bad);
		return NULL;
	}
	if (!regions || !nregions || nregions > GVM_CTL_REGIONS_MAX) {
		gvm_warn("gvmmem: %s: %zu regions (1..%u allowed)", vm_name, regions ? nregions : 0,
			 GVM_CTL_REGIONS_MAX);
		return NULL;
	}
	for (size_t i = 0; i < nregions; i++) {
		bad = gvm_label_invalid(regions[i].name, GVM_REGION_NAME_MAX_BYTES);
		if (bad) {
			gvm_warn("gvmmem: %s: the name of region %zu %s", vm_name, i, bad);
			return NULL;
		}
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->answered, NULL);
	s->sock = s->uffd = s->stopfd = -1;
	s->regions = calloc(nregions, sizeof(*s->regions));
	s->names = calloc(nregions, sizeof(*s->names));
	s->stopfd = eventfd(0, EFD_CLOEXEC);
	if (!s->regions || !s->names || s->stopfd < 0) {
		gvm__free(s);
		*err = -ENOMEM;
		return NULL;
	}
	snprintf(s->endpoint, sizeof(s->endpoint), "%s", endpoint ? endpoint : endpoint_default());
	if (getenv("GVM_VM_LIMIT") && gvm_parse_size(getenv("GVM_VM_LIMIT"), &s->limit_bytes))
		gvm_warn("gvmmem: GVM_VM_LIMIT=%s is not a size like 512M; ignored",
			 getenv("GVM_VM_LIMIT"));
	strcpy(s->vm_name, vm_name);
	s->pinned = flags & GVM_ATTACH_PINNED;
	s->nregions = nregions;
	for (size_t i = 0; i < nregions; i++) {
		s->regions[i] = regions[i];
		strcpy(s->names[i], regions[i].name);
		s->regions[i].name = s->names[i];
	}
	s->sock = gvm__connect(s->endpoint, s);
	if (s->sock < 0) {
		e = s->sock;
		s->sock = -1;
		gvm_warn("gvmmem: %s: cannot reach the broker at %s: %s", vm_name, s->endpoint,
			 gvm_strerror(e));
		goto fail;
	}
	e = gvm__handshake(s, false);
	if (e)
		goto fail;
	e = pthread_create(&s->monitor, NULL, gvm__monitor, s);
	if (e) {
		e = -e;
		goto fail;
	}
	*err = 0;
	return s;
fail:
	gvm__free(s);
	*err = e;
	return NULL;
}

void gvm_detach(struct gvm_session *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	if (write(s->stopfd, &one, sizeof(one)) != sizeof(one))
		gvm_warn("gvmmem: %s: cannot stop the monitor: %s", s->vm_name, strerror(errno));
	pthread_join(s->monitor, NULL);
	/* On purpose: the broker drops the VM's pages. (A connection that just
	 * ends, as when the process dies, keeps them until the process is
	 * gone.) */
	if (s->sock >= 0) {
		Gvm__Control m = GVM__CONTROL__INIT;
		Gvm__Detach d = GVM__DETACH__INIT;

		m.msg_case = GVM__CONTROL__MSG_DETACH;
		m.detach = &d;
		gvm_ctl_send(s->sock, &m, NULL, 0);
	}
	gvm__free(s);
}

int gvm_set_limit(struct gvm_session *s, uint64_t bytes)
{
	Gvm__Control msg = GVM__CONTROL__INIT;
	Gvm__SetLimit sl = GVM__SET_LIMIT__INIT;
	struct timespec deadline;
	int err = 0;

	if (!s)
		return -EINVAL;
	sl.vm_limit_bytes = bytes;
	msg.msg_case = GVM__CONTROL__MSG_SET_LIMIT;
	msg.set_limit = &sl;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += GVM__REQUEST_TIMEOUT_MS / 1000;
	pthread_mutex_lock(&s->lock);
	s->limit_bytes = bytes; /* a re-attach carries it from now on */
	while (s->waiting && !err) /* another thread's request first */
		err = pthread_cond_timedwait(&s->answered, &s->lock, &deadline);
	if (!err && s->sock < 0)
		err = -EAGAIN; /* re-attaching: the new limit goes with the Attach */
	if (!err) {
		s->waiting = true;
		err = gvm_ctl_send(s->sock, &msg, NULL, 0);
		while (!err && s->waiting)
			err = pthread_cond_timedwait(&s->answered, &s->lock, &deadline);
		if (err == ETIMEDOUT || err > 0)
			err = -ETIMEDOUT;
		if (!err)
			err = s->answer;
		s->waiting = false;
	} else if (err > 0) {
		err = -ETIMEDOUT;
	}
	pthread_mutex_unlock(&s->lock);
	return err == -EAGAIN ? 0 : err;
}
