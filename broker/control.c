/* control.c: the broker's client socket (control.h). The socket is mode
 * 0660, group gvm when that group exists; SO_PEERCRED and SO_PEERGROUPS
 * name each peer, and only root, the broker's own user and members of
 * group gvm get past accept. Every user is a tenant with its own limits
 * (connections, VMs, regions), a Hello deadline and an Attach deadline, so
 * no tenant can crowd out the others; an Attach's maps check runs on the
 * thread pool, one at a time per tenant, so no client can stall the fault
 * service. A client that sends garbage, the wrong descriptors or vanishes
 * mid-way gets a ControlError (when it is still there to read it) and is
 * dropped; everyone else keeps being served. attach.c takes the VM in. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "log.h"
#include "pool.h"
#include "region.h"
#include "names.h"
#include "stats.h"
#include "token.h"

#define CTL_GROUP "gvm"
#ifndef SO_PEERPIDFD
#define BK_SO_PEERPIDFD 77 /* Linux 6.5; glibc 2.36 lacks the name */
#else
#define BK_SO_PEERPIDFD SO_PEERPIDFD
#endif

enum client_state { CL_HELLO, CL_ATTACH, CL_CHECKING, CL_ATTACHED };

/* What one user holds at the broker. */
struct bk_tenant {
	struct bk_tenant *next;
	uid_t uid;
	unsigned conns, vms, regions;
	bool checking; /* an Attach of this user is being checked off the loop */
	struct bk_client *waiting, **waiting_tail; /* Attaches queued behind it */
};

/* An Attach's maps check on the thread pool. */
struct attach_work {
	uv_work_t work;
	struct bk_client *c;
	struct bk_attach *at;
};

struct bk_client {
	struct bk_control *ctl;
	struct bk_client *next;
	struct bk_client *next_waiting;
	struct bk_tenant *tenant;
	int fd;
	uv_poll_t poll;
	uv_timer_t deadline;
	int open_handles;
	bool closed;
	struct ucred cred;
	enum client_state state;
	char vm_name[GVM_VM_NAME_MAX_BYTES + 1];
	bool reattach;
	bool detaching;         /* it sent Detach: its VM's pages go */
	uint8_t incarnation[GVM_INCARNATION_BYTES]; /* valid with reattach */
	struct bk_attach *at;   /* an Attach waiting for its check, or being checked */
	struct attach_work *work;
	size_t vm_regions;      /* its VM's regions; once an Attach is taken (>= 1), it and
				 * they count in the tenant's VMs and regions */
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
	struct bk_tenant *tenants;
	unsigned works;   /* maps checks on the thread pool */
	/* Refusals in the log: a line a second, the rest counted, whoever
	 * loops on connect. */
	struct gvm_log_limit refusals;
	bool poll_closed; /* freed once its handle and the last work are done */
};

static void attach_start(struct bk_client *c);
static void control_free(struct bk_control *ctl);
static void control_closed(uv_handle_t *h);

static struct bk_tenant *tenant_get(struct bk_control *ctl, uid_t uid)
{
	struct bk_tenant *t;

	for (t = ctl->tenants; t; t = t->next)
		if (t->uid == uid)
			return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->uid = uid;
	t->waiting_tail = &t->waiting;
	t->next = ctl->tenants;
	ctl->tenants = t;
	return t;
}

/* A tenant that holds nothing is forgotten. */
static void tenant_put(struct bk_control *ctl, struct bk_tenant *t)
{
	struct bk_tenant **pp;

	if (t->conns || t->checking)
		return;
	for (pp = &ctl->tenants; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			free(t);
			return;
		}
	}
}

static unsigned tenant_conns_max(const struct bk_control *ctl)
{
	return ctl->b->cfg.uid_vms + BK_UID_SPARE_CONNS;
}

/* Removes c from its tenant's queue of Attaches waiting for a check. */
static void tenant_unqueue(struct bk_tenant *t, struct bk_client *c)
{
	struct bk_client **pp;

	for (pp = &t->waiting; *pp; pp = &(*pp)->next_waiting) {
		if (*pp == c) {
			*pp = c->next_waiting;
			if (!*pp)
				t->waiting_tail = pp;
			return;
		}
	}
}

static void client_handle_closed(uv_handle_t *h)
{
	struct bk_client *c = h->data;

	if (--c->open_handles)
		return;
	close(c->fd);
	free(c);
}

/* The end of a client: its VM is detached, its tenant gives back what it
 * held. A client whose Attach is on the thread pool is finished when the
 * check returns (on_checked). */
static void client_close(struct bk_client *c, const char *reason)
{
	struct bk_control *ctl = c->ctl;
	struct bk_tenant *t = c->tenant;
	struct bk_client **pp;

	if (c->closed)
		return;
	c->closed = true;
	for (pp = &ctl->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	ctl->nclients--;
	if (c->vm) {
		bk_vm_detach(c->vm, reason, c->detaching ? BK_DETACH_DROP : BK_DETACH_AUTO);
		bk_vm_put(c->vm);
		c->vm = NULL;
	} else {
		gvm_debug("client pid %d: closed (%s)", (int)c->cred.pid, reason);
	}
	if (c->vm_regions) {
		t->vms--;
		t->regions -= (unsigned)c->vm_regions;
	}
	if (c->state == CL_CHECKING && !c->work)
		tenant_unqueue(t, c);
	if (!c->work) {
		bk_attach_free(c->at);
		c->at = NULL;
	}
	t->conns--;
	tenant_put(ctl, t);
	uv_poll_stop(&c->poll);
	uv_timer_stop(&c->deadline);
	uv_close((uv_handle_t *)&c->poll, client_handle_closed);
	uv_close((uv_handle_t *)&c->deadline, client_handle_closed);
}

static void send_error(int fd, int err, const char *why)
{
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__ControlError e = GVM__CONTROL_ERROR__INIT;

	e.status = err < 0 ? -err : err;
	e.error = (char *)why;
	m.msg_case = GVM__CONTROL__MSG_ERROR;
	m.error = &e;
	gvm_ctl_send(fd, &m, NULL, 0);
}

/* Refuses a client's request: one log line, an error back, and the client
 * is dropped. */
static void client_refuse(struct bk_client *c, int err, const char *why)
{
	bk_stats.attach_errors++;
	gvm_log_limited(&c->ctl->refusals, GVM_LOG_WARN, "client pid %d uid %d%s%s: refused: %s",
			(int)c->cred.pid, (int)c->cred.uid, c->vm_name[0] ? " vm " : "", c->vm_name,
			why);
	send_error(c->fd, err, why);
	client_close(c, "refused");
}

static void on_deadline(uv_timer_t *t)
{
	struct bk_client *c = t->data;
	char why[64];

	snprintf(why, sizeof(why), "no %s within %u ms", c->state == CL_HELLO ? "Hello" : "Attach",
		 c->state == CL_HELLO ? BK_HELLO_TIMEOUT_MS : BK_ATTACH_TIMEOUT_MS);
	client_refuse(c, -ETIMEDOUT, why);
}

/* The peer's supplementary groups, from the kernel (SO_PEERGROUPS): what
 * the process holds, not what the user database says. */
static bool peer_in_group(int fd, gid_t group)
{
	gid_t small[64], *groups = small;
	socklen_t len = sizeof(small);
	bool found = false;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
		if (errno != ERANGE || !(groups = malloc(len)) ||
		    getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
			if (groups != small)
				free(groups);
			return false;
		}
	}
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		found |= groups[i] == group;
	if (groups != small)
		free(groups);
	return found;
}

static bool peer_allowed(const struct bk_control *ctl, int fd, const struct ucred *cr)
{
	if (cr->uid == 0 || cr->uid == getuid() || !ctl->have_group)
		return true;
	return cr->gid == ctl->group || peer_in_group(fd, ctl->group);
}

static void handle_hello(struct bk_client *c, const Gvm__Hello *h)
{
	struct bk_broker *b = c->ctl->b;
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__Welcome w = GVM__WELCOME__INIT;
	const char *bad;
	char why[160];
	int err;

	if (h->version != GVM_CTL_VERSION) {
		client_refuse(c, -EPROTO, "protocol version mismatch");
		return;
	}
	bad = gvm_label_invalid(h->vm_name, GVM_VM_NAME_MAX_BYTES);
	if (bad) {
		snprintf(why, sizeof(why), "the VM name %s", bad);
		client_refuse(c, -EINVAL, why);
		return;
	}
	snprintf(c->vm_name, sizeof(c->vm_name), "%s", h->vm_name);
	if (h->token.len) {
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
	if (h->reattach) {
		/* Only the uid that attached it can show the secret. */
		if (!bk_identity_check(&b->id, c->cred.uid, h->incarnation.data, h->incarnation.len,
				       h->secret.data, h->secret.len)) {
			client_refuse(c, -EACCES, "re-attach refused: not an incarnation this user "
						  "attached on this host");
			return;
		}
		memcpy(c->incarnation, h->incarnation.data, GVM_INCARNATION_BYTES);
	}
	c->reattach = h->reattach;
	w.session = b->next_session + 1;
	w.page_size = GVM_PAGE_SIZE;
	w.extent_pages = b->cfg.extent_pages;
	w.client_makes_uffd = b->uffd_dev < 0;
	m.msg_case = GVM__CONTROL__MSG_WELCOME;
	m.welcome = &w;
	err = gvm_ctl_send(c->fd, &m, b->uffd_dev >= 0 ? &b->uffd_dev : NULL,
			   b->uffd_dev >= 0 ? 1 : 0);
	if (err) {
		client_close(c, "gone during the handshake");
		return;
	}
	c->state = CL_ATTACH;
	uv_timer_start(&c->deadline, on_deadline, BK_ATTACH_TIMEOUT_MS, 0);
}

static void handle_attach(struct bk_client *c, const Gvm__Attach *a, int *fds, int nfds)
{
	struct bk_tenant *t = c->tenant;
	const struct bk_config *cfg = &c->ctl->b->cfg;
	char why[320];
	int err;

	if (t->vms >= cfg->uid_vms || t->regions + a->n_regions > cfg->uid_regions) {
		gvm_ctl_close_fds(fds, nfds);
		snprintf(why, sizeof(why), "uid %d is at its limit: %u VMs and %u regions attached "
			 "(at most %u and %u; gvm-broker --uid-vms, --uid-regions)",
			 (int)c->cred.uid, t->vms, t->regions, cfg->uid_vms, cfg->uid_regions);
		client_refuse(c, -EDQUOT, why);
		return;
	}
	err = bk_attach_prepare(&c->at, a, fds, nfds, why, sizeof(why));
	if (err) {
		gvm_ctl_close_fds(fds, nfds);
		client_refuse(c, err, why);
		return;
	}
	/* Counted now, so the queue cannot take a tenant past its limit. */
	c->vm_regions = bk_attach_regions(c->at);
	t->vms++;
	t->regions += (unsigned)c->vm_regions;
	c->state = CL_CHECKING;
	uv_timer_stop(&c->deadline);
	if (t->checking) {
		c->next_waiting = NULL;
		*t->waiting_tail = c;
		t->waiting_tail = &c->next_waiting;
		return;
	}
	attach_start(c);
}

static void check_work(uv_work_t *w)
{
	bk_attach_check_maps(((struct attach_work *)w)->at);
}

/* The client process, as a pidfd: the one that connected (SO_PEERPIDFD,
 * Linux 6.5), else by its pid; -1 if neither works. */
static int client_pidfd(const struct bk_client *c)
{
	int fd = -1;
	socklen_t len = sizeof(fd);

	if (!getsockopt(c->fd, SOL_SOCKET, BK_SO_PEERPIDFD, &fd, &len) && fd >= 0)
		return fd;
	fd = (int)syscall(SYS_pidfd_open, c->cred.pid, 0);
	if (fd < 0)
		gvm_warn("client pid %d: no pidfd (%s): its pages are kept when it goes",
			 (int)c->cred.pid, strerror(errno));
	return fd;
}

/* Registers the checked Attach and answers Attached. */
static void attach_finish(struct bk_client *c)
{
	struct bk_broker *b = c->ctl->b;
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__Attached ok = GVM__ATTACHED__INIT;
	uint8_t secret[GVM_INCARNATION_SECRET_BYTES];
	const char *reason;
	struct bk_vm *vm;
	uint64_t bytes = 0;
	char why[256], ns[GVM_NS_NAME_MAX_BYTES + 1];
	int err = bk_attach_result(c->at, &reason);

	if (!err)
		err = bk_vm_attach(b, c->at, c->cred.pid, client_pidfd(c), c->cred.uid,
				   c->vm_name, c->reattach ? c->incarnation : NULL, &vm, why,
				   sizeof(why));
	else
		snprintf(why, sizeof(why), "%s", reason);
	bk_attach_free(c->at);
	c->at = NULL;
	if (err) {
		client_refuse(c, err, why);
		return;
	}
	vm->refs++; /* the client's pointer */
	c->vm = vm;
	c->state = CL_ATTACHED;
	bk_identity_secret(&b->id, c->cred.uid, vm->incarnation, secret);
	ok.session = vm->session;
	ok.regions = (uint32_t)vm->nregions;
	ok.incarnation = (ProtobufCBinaryData){ GVM_INCARNATION_BYTES, vm->incarnation };
	ok.secret = (ProtobufCBinaryData){ sizeof(secret), secret };
	m.msg_case = GVM__CONTROL__MSG_ATTACHED;
	m.attached = &ok;
	for (size_t i = 0; i < vm->nregions; i++)
		bytes += vm->regions[i].size;
	snprintf(ns, sizeof(ns), "%s", vm->regions[0].ns);
	ns[strlen(ns) - strlen(strrchr(ns, '.'))] = '\0';
	gvm_info("vm %s (pid %d uid %d): attached%s, %zu region%s, %llu MiB, namespaces %s.*",
		 vm->name, (int)vm->pid, (int)vm->uid, c->reattach ? " again" : "", vm->nregions,
		 vm->nregions == 1 ? "" : "s", (unsigned long long)(bytes >> 20), ns);
	err = gvm_ctl_send(c->fd, &m, NULL, 0);
	sodium_memzero(secret, sizeof(secret));
	if (err)
		client_close(c, "gone before Attached");
}

static void on_checked(uv_work_t *w, int status)
{
	struct attach_work *aw = (struct attach_work *)w;
	struct bk_client *c = aw->c, *next;
	struct bk_tenant *t = c->tenant;
	struct bk_control *ctl = c->ctl;

	(void)status;
	c->work = NULL;
	free(aw);
	ctl->works--;
	/* t->checking holds the tenant until the next check starts: finishing
	 * this one may close its client, and with it the tenant's last one. */
	if (c->closed) {
		bk_attach_free(c->at);
		c->at = NULL;
	} else {
		attach_finish(c);
	}
	if (!--c->open_handles) { /* the work's hold; c is gone after this */
		close(c->fd);
		free(c);
	}
	t->checking = false;
	next = t->waiting;
	if (next) {
		t->waiting = next->next_waiting;
		if (!t->waiting)
			t->waiting_tail = &t->waiting;
		attach_start(next);
	} else {
		tenant_put(ctl, t);
	}
	if (ctl->poll_closed && !ctl->works)
		control_free(ctl);
}

/* Sends c's Attach to the thread pool for its maps check. */
static void attach_start(struct bk_client *c)
{
	struct attach_work *aw = calloc(1, sizeof(*aw));
	int err;

	if (!aw) {
		client_refuse(c, -ENOMEM, "out of memory");
		return;
	}
	aw->c = c;
	aw->at = c->at;
	c->work = aw;
	c->tenant->checking = true;
	c->ctl->works++;
	c->open_handles++; /* the work's hold on c, given back in on_checked */
	err = uv_queue_work(c->ctl->b->loop, &aw->work, check_work, on_checked);
	if (err) {
		c->work = NULL;
		c->tenant->checking = false;
		c->ctl->works--;
		c->open_handles--;
		free(aw);
		client_refuse(c, err, "cannot queue the maps check");
	}
}

static void handle_set_limit(struct bk_client *c, const Gvm__SetLimit *sl)
{
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__LimitSet ok = GVM__LIMIT_SET__INIT;
	if (c->vm->pinned && sl->vm_limit_bytes &&
	    sl->vm_limit_bytes / GVM_PAGE_SIZE < bk_vm_pages(c->vm)) {
		send_error(c->fd, ENOSPC, "a pinned VM is all resident: a limit below its RAM "
					  "cannot be kept");
		return;
	}
	c->vm->limit_pages = sl->vm_limit_bytes / GVM_PAGE_SIZE;
	gvm_debug("vm %s (session %llu): its own limit is now %llu KiB%s", c->vm->name,
		  (unsigned long long)c->vm->session, (unsigned long long)(sl->vm_limit_bytes >> 10),
		  sl->vm_limit_bytes ? "" : " (none)");
	ok.vm_limit_bytes = sl->vm_limit_bytes;
	m.msg_case = GVM__CONTROL__MSG_LIMIT_SET;
	m.limit_set = &ok;
	gvm_ctl_send(c->fd, &m, NULL, 0);
	/* a lower limit is enforced by followup.c's eviction check, this turn */
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

/* gvmctl donors: one page of the donor table. */
static void handle_donors(struct bk_client *c, const Gvm__DonorsRequest *req)
{
	const struct bk_broker *b = c->ctl->b;
	Gvm__Control m = GVM__CONTROL__INIT;
	Gvm__Donors r = GVM__DONORS__INIT;
	Gvm__DonorInfo info[GVM_CTL_DONORS_PAGE], *ptr[GVM_CTL_DONORS_PAGE];
	unsigned first = req->first < b->ndonors ? req->first : b->ndonors;

	r.total = b->ndonors;
	r.first = first;
	for (unsigned d = first; d < b->ndonors && r.n_donors < GVM_CTL_DONORS_PAGE; d++) {
		Gvm__DonorInfo *i = &info[r.n_donors];

		gvm__donor_info__init(i);
		i->addr = (char *)b->donors[d].addr;
		i->state = (char *)bk_donor_state_name(b, d);
		i->weight = b->donors[d].weight;
		i->extents = b->donors[d].extents;
		i->connections = bk_pool_donor_connections(b->pool, d);
		ptr[r.n_donors++] = i;
	}
	r.donors = ptr;
	m.msg_case = GVM__CONTROL__MSG_DONORS;
	m.donors = &r;
	gvm_ctl_send(c->fd, &m, NULL, 0);
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
	if (m->msg_case != GVM__CONTROL__MSG_ATTACH)
		gvm_ctl_close_fds(fds, nfds);
	switch (m->msg_case) {
	case GVM__CONTROL__MSG_HELLO:
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
	case GVM__CONTROL__MSG_SET_LIMIT:
		if (c->state != CL_ATTACHED || !c->vm || c->vm->detached)
			client_refuse(c, -EPROTO, "SetLimit before Attached");
		else
			handle_set_limit(c, m->set_limit);
		break;
	case GVM__CONTROL__MSG_STATS_REQUEST:
		handle_stats(c);
		break;
	case GVM__CONTROL__MSG_DONORS_REQUEST:
		handle_donors(c, m->donors_request);
		break;
	case GVM__CONTROL__MSG_DETACH:
		c->detaching = true;
		client_close(c, "detached on purpose");
		break;
	default:
		client_refuse(c, -EPROTO, "unexpected message");
		break;
	}
	gvm__control__free_unpacked(m, NULL);
}

/* Turns a connection away before it holds anything: why goes to it as a
 * ControlError (its Hello then reads it), and into the log. What it sent
 * already is read first: closing a unix socket with unread data resets
 * the peer, which would then lose the reason. */
static void turn_away(struct bk_control *ctl, int fd, const struct ucred *cr, int err,
		      const char *why)
{
	char drain[256];

	bk_stats.attach_errors++;
	gvm_log_limited(&ctl->refusals, GVM_LOG_WARN, "client pid %d uid %d: refused: %s",
			(int)cr->pid, (int)cr->uid, why);
	send_error(fd, err, why);
	while (recv(fd, drain, sizeof(drain), MSG_DONTWAIT) > 0)
		;
	close(fd);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
	struct bk_control *ctl = h->data;
	struct ucred cr = { 0 };
	socklen_t len = sizeof(cr);
	struct bk_tenant *t;
	struct bk_client *c;
	char why[160];
	int fd, err;

	(void)events;
	if (status < 0)
		return;
	fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	/* Who it is, from the kernel; without that, nobody. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || len != sizeof(cr)) {
		gvm_warn("refusing a client: SO_PEERCRED: %s", strerror(errno));
		close(fd);
		return;
	}
	if (!peer_allowed(ctl, fd, &cr)) {
		turn_away(ctl, fd, &cr, -EPERM, "user may not attach VMs (not in group " CTL_GROUP ")");
		return;
	}
	if (ctl->nclients >= BK_CLIENTS_MAX && cr.uid != 0 && cr.uid != getuid()) {
		snprintf(why, sizeof(why), "the broker has %u clients, its most", BK_CLIENTS_MAX);
		turn_away(ctl, fd, &cr, -EAGAIN, why);
		return;
	}
	t = tenant_get(ctl, cr.uid);
	if (!t) {
		turn_away(ctl, fd, &cr, -ENOMEM, "out of memory");
		return;
	}
	if (t->conns >= tenant_conns_max(ctl)) {
		snprintf(why, sizeof(why), "uid %d is at its limit of %u connections", (int)cr.uid,
			 tenant_conns_max(ctl));
		turn_away(ctl, fd, &cr, -EDQUOT, why);
		tenant_put(ctl, t);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		turn_away(ctl, fd, &cr, -ENOMEM, "out of memory");
		tenant_put(ctl, t);
		return;
	}
	/* The poll handle first: when it cannot be made there is nothing to
	 * close yet (the timer's init cannot fail). */
	err = uv_poll_init(ctl->b->loop, &c->poll, fd);
	if (err) {
		free(c);
		snprintf(why, sizeof(why), "the broker cannot watch the connection: %s",
			 uv_strerror(err));
		turn_away(ctl, fd, &cr, err, why);
		tenant_put(ctl, t);
		return;
	}
	uv_timer_init(ctl->b->loop, &c->deadline);
	c->ctl = ctl;
	c->fd = fd;
	c->cred = cr;
	c->tenant = t;
	t->conns++;
	c->poll.data = c->deadline.data = c;
	c->open_handles = 2;
	c->next = ctl->clients;
	ctl->clients = c;
	ctl->nclients++;
	/* From here the client is whole: client_close undoes it all, its
	 * handles closed before c is freed. */
	err = uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, on_client);
	if (err) {
		client_refuse(c, err, "the broker cannot watch the connection");
		return;
	}
	uv_timer_start(&c->deadline, on_deadline, BK_HELLO_TIMEOUT_MS, 0);
	gvm_debug("client pid %d uid %d: connected", (int)cr.pid, (int)cr.uid);
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
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = b->cfg.socket_path;
	struct bk_control *ctl;
	char dir[108], *slash;
	bool bound = false;
	struct group *gr;
	int err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(why, n, "--socket %s: path too long", path);
		return -ENAMETOOLONG;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl) {
		snprintf(why, n, "--socket %s: out of memory", path);
		return -ENOMEM;
	}
	ctl->fd = -1;
	ctl->b = b;
	ctl->refusals = (struct gvm_log_limit)GVM_LOG_LIMIT_INIT(BK_REFUSAL_LOG_MS);
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}
	err = claim_path(path, why, n);
	if (err)
		goto fail;
	gr = getgrnam(CTL_GROUP);
	ctl->have_group = gr != NULL;
	ctl->group = gr ? gr->gr_gid : 0;
	strcpy(sa.sun_path, path);
	ctl->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->fd < 0 || bind(ctl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		snprintf(why, n, "--socket %s: %s", path, strerror(errno));
		goto fail;
	}
	bound = true;
	if (chmod(path, 0660) < 0 || (ctl->have_group && chown(path, (uid_t)-1, ctl->group) < 0) ||
	    listen(ctl->fd, 64) < 0) {
		err = -errno;
		snprintf(why, n, "--socket %s: %s", path, strerror(errno));
		goto fail;
	}
	err = uv_poll_init(b->loop, &ctl->poll, ctl->fd);
	if (err) {
		snprintf(why, n, "--socket %s: cannot watch it: %s", path, uv_strerror(err));
		goto fail;
	}
	ctl->poll.data = ctl;
	err = uv_poll_start(&ctl->poll, UV_READABLE, on_accept);
	if (err) {
		snprintf(why, n, "--socket %s: cannot watch it: %s", path, uv_strerror(err));
		unlink(path);
		uv_close((uv_handle_t *)&ctl->poll, control_closed); /* frees ctl */
		return err;
	}
	b->control = ctl;
	gvm_info("serving VMs on %s (mode 0660%s); per user at most %u VMs, %u regions, %u "
		 "connections",
		 path, ctl->have_group ? ", group " CTL_GROUP : "; no group " CTL_GROUP ", root only",
		 b->cfg.uid_vms, b->cfg.uid_regions, tenant_conns_max(ctl));
	return 0;
fail:
	if (bound)
		unlink(path); /* nobody could connect to it yet */
	if (ctl->fd >= 0)
		close(ctl->fd);
	free(ctl);
	return err;
}

static void control_free(struct bk_control *ctl)
{
	close(ctl->fd);
	while (ctl->tenants) {
		struct bk_tenant *t = ctl->tenants;

		ctl->tenants = t->next;
		free(t);
	}
	free(ctl);
}

static void control_closed(uv_handle_t *h)
{
	struct bk_control *ctl = h->data;

	ctl->poll_closed = true;
	if (!ctl->works)
		control_free(ctl);
}

/* The socket file stays (the sandbox allows no unlink); the next broker
 * replaces it, and a client finds nobody answering meanwhile. */
void bk_control_stop(struct bk_broker *b)
{
	struct bk_control *ctl = b->control;

	if (!ctl)
		return;
	while (ctl->clients)
		client_close(ctl->clients, "the broker is stopping");
	uv_poll_stop(&ctl->poll);
	uv_close((uv_handle_t *)&ctl->poll, control_closed);
	b->control = NULL;
}
