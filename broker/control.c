/* control.c: the broker's client socket (control.h). The socket is mode
 * 0660, group gvm when that group exists; SO_PEERCRED names each peer and
 * only root, the broker's own user and members of group gvm may attach. A
 * client that sends garbage, the wrong descriptors or vanishes mid-way gets
 * a ControlError (when it is still there to read it) and is dropped;
 * everyone else keeps being served. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "log.h"
#include "stats.h"
#include "token.h"

#define CTL_GROUP "gvm"
#define CTL_USERFAULTFD_DEV "/dev/userfaultfd"

enum client_state { CL_HELLO, CL_ATTACH, CL_ATTACHED };

struct bk_client {
	struct bk_control *ctl;
	struct bk_client *next;
	int fd;
	uv_poll_t poll;
	struct ucred cred;
	enum client_state state;
	char vm_name[GVM_VM_NAME_MAX_BYTES + 1];
	bool reattach;
	struct bk_vm *vm;
};

struct bk_control {
	struct bk_broker *b;
	int fd;
	uv_poll_t poll;
	char path[108];
	gid_t group;
	bool have_group;
	struct bk_client *clients;
	unsigned nclients;
};

static void client_closed(uv_handle_t *h)
{
	struct bk_client *c = h->data;

	close(c->fd);
	free(c);
}

static void client_close(struct bk_client *c, const char *reason)
{
	struct bk_control *ctl = c->ctl;
	struct bk_client **pp;

	for (pp = &ctl->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	ctl->nclients--;
	if (c->vm) {
		bk_vm_detach(c->vm, reason);
		bk_vm_put(c->vm);
		c->vm = NULL;
	} else {
		gvm_debug("client pid %d: closed (%s)", (int)c->cred.pid, reason);
	}
	uv_poll_stop(&c->poll);
	uv_close((uv_handle_t *)&c->poll, client_closed);
}

static void send_error(struct bk_client *c, int err, const char *why)
{
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__ControlError e = GVM__CONTROL_ERROR__INIT;

	e.status = err < 0 ? -err : err;
	e.error = (char *)why;
	m.msg_case = GVM__CONTROL__MSG_ERROR;
	m.error = &e;
	gvm_ctl_send(c->fd, &m, NULL, 0);
}

/* Refuses a client's request: one log line, an error back, and the client
 * is dropped. */
static void client_refuse(struct bk_client *c, int err, const char *why)
{
	bk_stats.attach_errors++;
	gvm_warn("client pid %d uid %d%s%s: refused: %s", (int)c->cred.pid, (int)c->cred.uid,
		 c->vm_name[0] ? " vm " : "", c->vm_name, why);
	send_error(c, err, why);
	client_close(c, "refused");
}

static bool peer_allowed(const struct bk_control *ctl, const struct ucred *cr)
{
	gid_t groups[256];
	int ngroups = 256;
	struct passwd *pw;

	if (cr->uid == 0 || cr->uid == getuid() || !ctl->have_group)
		return true;
	if (cr->gid == ctl->group)
		return true;
	pw = getpwuid(cr->uid);
	if (!pw || getgrouplist(pw->pw_name, pw->pw_gid, groups, &ngroups) < 0)
		return false;
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == ctl->group)
			return true;
	return false;
}

static void handle_hello(struct bk_client *c, const Gvm__Hello *h)
{
	struct bk_broker *b = c->ctl->b;
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__Welcome w = GVM__WELCOME__INIT;
	int devfd, err;

	if (h->version != GVM_PROTO_VERSION) {
		client_refuse(c, -EPROTO, "protocol version mismatch");
		return;
	}
	if (!h->vm_name || !*h->vm_name || strlen(h->vm_name) > GVM_VM_NAME_MAX_BYTES) {
		client_refuse(c, -EINVAL, "VM name missing or longer than 31 bytes");
		return;
	}
	snprintf(c->vm_name, sizeof(c->vm_name), "%s", h->vm_name);
	if (!peer_allowed(c->ctl, &c->cred)) {
		client_refuse(c, -EPERM, "user may not attach VMs (not in group " CTL_GROUP ")");
		return;
	}
	if (h->token.len) {
		char why[160];

		if (bk_token_redeem(h->token.data, h->token.len, c->cred.pid, c->cred.uid, why,
				    sizeof(why))) {
			client_refuse(c, -EACCES, why);
			return;
		}
	} else if (b->require_token) {
		client_refuse(c, -EACCES,
			      "this broker serves /dev/gvmmem: attach through it (a Hello needs "
			      "the token of GVMMEM_IOC_HELLO)");
		return;
	}
	c->reattach = h->reattach;
	devfd = open(CTL_USERFAULTFD_DEV, O_RDWR | O_CLOEXEC);
	w.session = b->next_session + 1;
	w.page_size = GVM_PAGE_SIZE;
	w.extent_pages = b->cfg.extent_pages;
	w.client_makes_uffd = devfd < 0;
	m.msg_case = GVM__CONTROL__MSG_WELCOME;
	m.welcome = &w;
	err = gvm_ctl_send(c->fd, &m, devfd >= 0 ? &devfd : NULL, devfd >= 0 ? 1 : 0);
	if (devfd >= 0)
		close(devfd);
	if (err) {
		client_close(c, "gone during the handshake");
		return;
	}
	c->state = CL_ATTACH;
}

static void handle_attach(struct bk_client *c, const Gvm__Attach *a, int *fds, int nfds)
{
	struct bk_broker *b = c->ctl->b;
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__Attached ok = GVM__ATTACHED__INIT;
	struct bk_vm *vm;
	uint64_t bytes = 0;
	char why[256];
	int err;

	err = bk_vm_attach(b, c, c->cred.pid, c->cred.uid, c->vm_name, c->reattach, a, fds, nfds,
			   &vm, why, sizeof(why));
	if (err) {
		gvm_ctl_close_fds(fds, nfds);
		client_refuse(c, err, why);
		return;
	}
	vm->refs++; /* the client's pointer */
	c->vm = vm;
	c->state = CL_ATTACHED;
	ok.session = vm->session;
	ok.regions = (uint32_t)vm->nregions;
	m.msg_case = GVM__CONTROL__MSG_ATTACHED;
	m.attached = &ok;
	for (size_t i = 0; i < vm->nregions; i++)
		bytes += vm->regions[i].size;
	gvm_info("vm %s (pid %d uid %d): attached%s, %zu region%s, %llu MiB", vm->name,
		 (int)vm->pid, (int)vm->uid, c->reattach ? " again" : "", vm->nregions,
		 vm->nregions == 1 ? "" : "s", (unsigned long long)(bytes >> 20));
	if (gvm_ctl_send(c->fd, &m, NULL, 0))
		client_close(c, "gone before Attached");
}

static void handle_stats(struct bk_client *c)
{
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__Stats s;

	bk_stats_fill(c->ctl->b, &s);
	m.msg_case = GVM__CONTROL__MSG_STATS;
	m.stats = &s;
	gvm_ctl_send(c->fd, &m, NULL, 0);
	bk_stats_free(&s);
}

static void on_client(uv_poll_t *h, int status, int events)
{
	struct bk_client *c = h->data;
	int fds[GVM_CTL_FDS_MAX], nfds = 0, err;
	Gvm__Control *m;

	if (status < 0 || (events & UV_DISCONNECT && !(events & UV_READABLE))) {
		client_close(c, "the client closed its connection");
		return;
	}
	err = gvm_ctl_recv(c->fd, &m, fds, &nfds, GVM_CTL_FDS_MAX);
	if (err == -EAGAIN)
		return;
	if (err == -ECONNRESET) {
		client_close(c, "the client closed its connection");
		return;
	}
	if (err) {
		client_refuse(c, err, err == -EMSGSIZE ? "message or descriptors too large" :
						       "malformed message");
		return;
	}
	switch (m->msg_case) {
	case GVM__CONTROL__MSG_HELLO:
		gvm_ctl_close_fds(fds, nfds);
		if (c->state != CL_HELLO)
			client_refuse(c, -EPROTO, "Hello twice");
		else
			handle_hello(c, m->hello);
		break;
	case GVM__CONTROL__MSG_ATTACH:
		if (c->state != CL_ATTACH) {
			gvm_ctl_close_fds(fds, nfds);
			client_refuse(c, -EPROTO, c->state == CL_HELLO ? "Attach before Hello" :
									 "Attach twice");
		} else {
			handle_attach(c, m->attach, fds, nfds);
		}
		break;
	case GVM__CONTROL__MSG_STATS_REQUEST:
		gvm_ctl_close_fds(fds, nfds);
		handle_stats(c);
		break;
	default:
		gvm_ctl_close_fds(fds, nfds);
		client_refuse(c, -EPROTO, "unexpected message");
		break;
	}
	gvm__control__free_unpacked(m, NULL);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
	struct bk_control *ctl = h->data;
	struct bk_client *c;
	socklen_t len = sizeof(struct ucred);
	int fd;

	(void)events;
	if (status < 0)
		return;
	fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (ctl->nclients >= BK_CLIENTS_MAX) {
		gvm_warn("refusing a client: already %u connected", BK_CLIENTS_MAX);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len);
	uv_poll_init(ctl->b->loop, &c->poll, fd);
	c->poll.data = c;
	uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, on_client);
	c->next = ctl->clients;
	ctl->clients = c;
	ctl->nclients++;
	gvm_debug("client pid %d uid %d: connected", (int)c->cred.pid, (int)c->cred.uid);
}

/* A socket file left by a broker that died is replaced; a live one is not. */
static int claim_path(const char *path, char *why, size_t n)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int s;

	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(why, n, "%s exists and is not a socket", path);
		return -EEXIST;
	}
	strcpy(sa.sun_path, path);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(s);
		snprintf(why, n, "another broker is serving %s", path);
		return -EADDRINUSE;
	}
	if (s >= 0)
		close(s);
	unlink(path);
	return 0;
}

int bk_control_start(struct bk_broker *b, char *why, size_t n)
{
	struct bk_control *ctl = calloc(1, sizeof(*ctl));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = b->cfg.socket_path;
	char dir[108], *slash;
	struct group *gr;
	int err;

	if (!ctl)
		return -ENOMEM;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(why, n, "--socket %s: path too long", path);
		free(ctl);
		return -ENAMETOOLONG;
	}
	ctl->b = b;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}
	err = claim_path(path, why, n);
	if (err) {
		free(ctl);
		return err;
	}
	gr = getgrnam(CTL_GROUP);
	ctl->have_group = gr != NULL;
	ctl->group = gr ? gr->gr_gid : 0;
	strcpy(sa.sun_path, path);
	ctl->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->fd < 0 || bind(ctl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0660) < 0 || (ctl->have_group && chown(path, (uid_t)-1, ctl->group) < 0) ||
	    listen(ctl->fd, 64) < 0) {
		err = -errno;
		snprintf(why, n, "--socket %s: %s", path, strerror(errno));
		if (ctl->fd >= 0)
			close(ctl->fd);
		free(ctl);
		return err;
	}
	uv_poll_init(b->loop, &ctl->poll, ctl->fd);
	ctl->poll.data = ctl;
	uv_poll_start(&ctl->poll, UV_READABLE, on_accept);
	b->control = ctl;
	gvm_info("serving VMs on %s (mode 0660%s)", path,
		 ctl->have_group ? ", group " CTL_GROUP : "; no group " CTL_GROUP ", root only");
	return 0;
}

static void control_closed(uv_handle_t *h)
{
	struct bk_control *ctl = h->data;

	close(ctl->fd);
	free(ctl);
}

void bk_control_stop(struct bk_broker *b)
{
	struct bk_control *ctl = b->control;

	if (!ctl)
		return;
	while (ctl->clients)
		client_close(ctl->clients, "the broker is stopping");
	unlink(ctl->path);
	uv_poll_stop(&ctl->poll);
	uv_close((uv_handle_t *)&ctl->poll, control_closed);
	b->control = NULL;
}
