/* donors.c: the donor table (broker.h). Every address the broker has been
 * given keeps its index for the broker's life, because extent locations
 * (replica.c) hold indices. A new donors list (at start, on SIGHUP from
 * --donors-file, or from etcd) is applied as a difference:
 * - a new address is added: it takes new placements in proportion to its
 *   weight and holds nothing yet;
 * - a changed weight changes new placements only: written extents stay
 *   where their location says;
 * - an address no longer listed is drained: re-replication (replica.c)
 *   copies each of its extents to a listed donor and then lets the
 *   draining copy go; once it holds nothing, this host's namespaces there
 *   are dropped and it is removed (its connections close when idle);
 * - a draining or removed address listed again is active again.
 * An empty list is refused: it would leave nowhere to put pages. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "etcd.h"
#include "log.h"
#include "placement.h"
#include "pool.h"
#include "replica.h"
#include "sandbox.h"
#include "stats.h"

struct bk_etcd {
	struct gvm_etcd *client;
	uv_async_t async;
	pthread_mutex_t lock;
	/* The newest set the watch delivered, not applied yet. */
	struct bk_donor_cfg *set;
	unsigned nset;
	int status;  /* of the newest delivery; 0: set is valid */
	unsigned lost; /* donors of the newest set, not copied for want of memory */
	bool reachable;
	bool applied; /* a set from etcd is in force */
};

/* Address -> index, open addressing over a power-of-two table. */
static uint32_t *slots;
static unsigned nslots;

static unsigned slot_of(uint64_t hash)
{
	return (unsigned)(hash ^ (hash >> 29)) & (nslots - 1);
}

static int index_find(const struct bk_broker *b, const char *addr, uint64_t hash)
{
	for (unsigned i = nslots ? slot_of(hash) : 0; nslots && slots[i] != UINT32_MAX;
	     i = (i + 1) & (nslots - 1))
		if (b->donors[slots[i]].hash == hash && !strcmp(b->donors[slots[i]].addr, addr))
			return (int)slots[i];
	return -1;
}

static void index_insert(uint64_t hash, unsigned d)
{
	unsigned i = slot_of(hash);

	while (slots[i] != UINT32_MAX)
		i = (i + 1) & (nslots - 1);
	slots[i] = d;
}

static int index_rebuild(const struct bk_broker *b, unsigned n)
{
	uint32_t *s = malloc(n * sizeof(*s));

	if (!s)
		return -ENOMEM;
	free(slots);
	slots = s;
	nslots = n;
	memset(slots, 0xff, n * sizeof(*s));
	for (unsigned d = 0; d < b->ndonors; d++)
		index_insert(b->donors[d].hash, d);
	return 0;
}

/* Room for one more donor: the table and every per-donor array grow. */
static int grow(struct bk_broker *b)
{
	unsigned cap = b->donors_cap ? b->donors_cap * 2 : 64;
	struct bk_donor_info *n;
	int err;

	if (b->ndonors < b->donors_cap)
		return 0;
	if (b->donors_cap >= BK_DONORS_LIMIT)
		return -ENOSPC;
	if (cap > BK_DONORS_LIMIT)
		cap = BK_DONORS_LIMIT;
	n = realloc(b->donors, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	b->donors = n;
	err = bk_replica_grow(b, cap);
	if (!err)
		err = bk_fault_lat_grow(b, cap);
	for (struct bk_vm *vm = b->vms; vm && !err; vm = vm->next)
		for (size_t i = 0; i < vm->nregions && !err; i++)
			err = bk_region_grow_donors(&vm->regions[i], b->donors_cap, cap);
	if (err)
		return err; /* what grew stays grown; the cap does not move */
	b->donors_cap = cap;
	return 0;
}

static int add(struct bk_broker *b, const struct bk_donor_cfg *c, char *why, size_t wn)
{
	struct bk_donor_info *d;
	struct sockaddr_storage ss;
	socklen_t len;
	uint16_t port;
	int err, idx;

	if (gvm_parse_hostport(c->addr, GVM_DONOR_DEFAULT_PORT, &ss, &len)) {
		snprintf(why, wn, "donor %s: cannot resolve it (after start only addresses, not "
			 "names, can be added: the sandbox allows no name lookups)", c->addr);
		return -EINVAL;
	}
	port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
						((struct sockaddr_in *)&ss)->sin_port);
	if (!bk_sandbox_port_allowed(port)) {
		snprintf(why, wn, "donor %s: port %u is not one the sandbox allows (--donor-ports, "
			 "the donors' at start and %s); restart gvm-broker with it in "
			 "--donor-ports", c->addr, port, GVM_DONOR_DEFAULT_PORT);
		return -EACCES;
	}
	if ((b->ndonors + 1) * 2 > nslots && index_rebuild(b, nslots ? nslots * 2 : 128))
		goto nomem;
	err = grow(b);
	if (err == -ENOSPC) {
		snprintf(why, wn, "donor %s: this broker has known %u donor addresses, its most; "
			 "restart it to start the count again", c->addr, BK_DONORS_LIMIT);
		return err;
	}
	if (err)
		goto nomem;
	idx = bk_pool_add(b->pool, c->addr, &ss);
	if (idx < 0)
		goto nomem;
	d = &b->donors[idx];
	memset(d, 0, sizeof(*d));
	snprintf(d->addr, sizeof(d->addr), "%s", c->addr);
	d->weight = c->weight;
	d->hash = gvm_place_addr_hash(d->addr);
	d->port = port;
	d->state = BK_DONOR_ACTIVE;
	b->ndonors++;
	index_insert(d->hash, (unsigned)idx);
	bk_replica_donor_added(b, (unsigned)idx);
	return 0;
nomem: /* what grew stays grown (the next add uses it); nothing else changed */
	bk_stats.alloc_failures++; /* the caller logs why */
	snprintf(why, wn, "donor %s: out of memory", c->addr);
	return -ENOMEM;
}

int bk_donors_apply(struct bk_broker *b, const struct bk_donor_cfg *list, unsigned n,
		    const char *source, char *why, size_t wn)
{
	unsigned added = 0, back = 0, reweighed = 0, drained = 0, refused = 0, active = 0;
	bool starting = !b->active_donors; /* no line per donor for the first list */
	uint8_t *listed; /* per donor: 1 listed, 2 drained by this list */

	if (!n) {
		snprintf(why, wn, "%s lists no donor; keeping the %u there are (an empty list would "
			 "leave nowhere to put pages)", source, b->active_donors);
		return -EINVAL;
	}
	listed = calloc(b->ndonors + n, 1);
	if (!listed) {
		bk_stats.alloc_failures++; /* the caller logs why */
		snprintf(why, wn, "%s: out of memory", source);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		int d = index_find(b, list[i].addr, gvm_place_addr_hash(list[i].addr));
		char err_why[256];

		if (d < 0) {
			if (add(b, &list[i], err_why, sizeof(err_why))) {
				gvm_err("%s: %s", source, err_why);
				refused++;
				continue;
			}
			d = (int)b->ndonors - 1;
			added++;
			if (!starting)
				gvm_info("donor %s: added, weight %u", list[i].addr, list[i].weight);
		} else if (b->donors[d].state != BK_DONOR_ACTIVE) {
			gvm_info("donor %s: listed again, weight %u: takes new copies%s", list[i].addr,
				 list[i].weight, b->donors[d].state == BK_DONOR_DRAINING ?
				 "; its drain stops" : "");
			if (b->donors[d].state == BK_DONOR_REMOVED)
				bk_replica_donor_added(b, (unsigned)d);
			b->donors[d].state = BK_DONOR_ACTIVE;
			b->donors[d].weight = list[i].weight;
			back++;
		} else if (b->donors[d].weight != list[i].weight) {
			gvm_info("donor %s: weight %u -> %u (new placements only)", list[i].addr,
				 b->donors[d].weight, list[i].weight);
			b->donors[d].weight = list[i].weight;
			reweighed++;
		}
		listed[d] = 1;
	}
	for (unsigned d = 0; d < b->ndonors; d++) {
		if (listed[d]) {
			active++;
			continue;
		}
		if (b->donors[d].state != BK_DONOR_ACTIVE)
			continue;
		b->donors[d].state = BK_DONOR_DRAINING;
		listed[d] = 2;
		drained++;
		gvm_info("donor %s: no longer listed: draining its %llu extent cop%s to the others",
			 b->donors[d].addr, (unsigned long long)b->donors[d].extents,
			 b->donors[d].extents == 1 ? "y" : "ies");
	}
	if (!active) { /* every listed one was refused: undo the drains */
		for (unsigned d = 0; d < b->ndonors; d++)
			if (listed[d] == 2)
				b->donors[d].state = BK_DONOR_ACTIVE;
		free(listed);
		snprintf(why, wn, "%s: no listed donor could be used; keeping the ones there are",
			 source);
		return -EINVAL;
	}
	free(listed);
	b->active_donors = active;
	if (drained)
		bk_replica_wake(b);
	if (b->cfg.replicas > active)
		gvm_warn("--replicas %u, but %u donor%s listed: %u cop%s of new extents",
			 b->cfg.replicas, active, active == 1 ? "" : "s", active,
			 active == 1 ? "y" : "ies");
	gvm_info("donors from %s: %u listed (%u new, %u back, %u reweighed, %u draining now%s)",
		 source, active, added, back, reweighed, drained,
		 refused ? ", some refused: see above" : "");
	return 0;
}

/* ---- the donors file ---- */

/* Parses spec and appends it to list, unless dup_check finds its address
 * there already (-EEXIST); the caller checks long lists itself. */
static int parse_append(struct bk_donor_cfg **list, unsigned *n, const char *spec, bool dup_check)
{
	struct bk_donor_cfg d, *v;
	struct sockaddr_storage ss;
	socklen_t len;
	char *sep;
	long w = 1;

	snprintf(d.addr, sizeof(d.addr), "%s", spec);
	sep = strpbrk(d.addr, ", \t");
	if (sep) {
		char *end;

		*sep = '\0';
		w = strtol(sep + 1 + strspn(sep + 1, " \t"), &end, 10);
		if (*end || w < 1 || w > 1000000)
			return -EINVAL;
	}
	if (gvm_parse_hostport(d.addr, GVM_DONOR_DEFAULT_PORT, &ss, &len))
		return -EINVAL;
	d.weight = (unsigned)w;
	for (unsigned i = 0; dup_check && i < *n; i++)
		if (!strcmp((*list)[i].addr, d.addr))
			return -EEXIST;
	if (*n >= BK_DONORS_LIMIT)
		return -ENOSPC;
	if (!(*n & (*n - 1)) || !*n) { /* powers of two: double */
		v = realloc(*list, (*n ? *n * 2 : 16) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		*list = v;
	}
	(*list)[(*n)++] = d;
	return 0;
}

int bk_donors_parse(struct bk_donor_cfg **list, unsigned *n, const char *spec)
{
	return parse_append(list, n, spec, true);
}

static const struct bk_donor_cfg *sort_list;

static int by_addr(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
	int c = strcmp(sort_list[x].addr, sort_list[y].addr);

	return c ? c : (x > y) - (x < y);
}

/* The index of an entry that repeats an earlier one's address, or -1 (or
 * -2 out of memory). Sorting: thousands of donors take no quadratic time. */
static long repeated(const struct bk_donor_cfg *list, unsigned n)
{
	unsigned *idx = malloc((n ? n : 1) * sizeof(*idx));
	long found = -1;

	if (!idx)
		return -2;
	for (unsigned i = 0; i < n; i++)
		idx[i] = i;
	sort_list = list;
	qsort(idx, n, sizeof(*idx), by_addr);
	for (unsigned i = 1; i < n; i++)
		if (!strcmp(list[idx[i]].addr, list[idx[i - 1]].addr) &&
		    (found < 0 || idx[i] < (unsigned)found))
			found = idx[i];
	free(idx);
	return found;
}

int bk_donors_read_file(const char *path, int dirfd, struct bk_donor_cfg **list, unsigned *n,
			char *why, size_t wn)
{
	const char *base = strrchr(path, '/');
	char line[256];
	unsigned *lines = NULL; /* each entry's line, for a repeat */
	int fd, lineno = 0, err = 0;
	long dup;
	FILE *f;

	*list = NULL;
	*n = 0;
	fd = dirfd >= 0 ? openat(dirfd, base ? base + 1 : path, O_RDONLY | O_CLOEXEC) :
			  open(path, O_RDONLY | O_CLOEXEC);
	f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		snprintf(why, wn, "--donors-file %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while (!err && fgets(line, sizeof(line), f)) {
		char *s = line + strspn(line, " \t");

		lineno++;
		s[strcspn(s, "#\r\n")] = '\0';
		for (char *e = s + strlen(s); e > s && (e[-1] == ' ' || e[-1] == '\t');)
			*--e = '\0';
		if (!*s)
			continue;
		err = parse_append(list, n, s, false);
		if (!err && !((*n - 1) & (*n - 2))) { /* the list's capacity rule */
			unsigned *l = realloc(lines, (*n > 16 ? *n * 2 : 32) * sizeof(*l));

			if (!l)
				err = -ENOMEM;
			else
				lines = l;
		}
		if (!err)
			lines[*n - 1] = (unsigned)lineno;
		else
			snprintf(why, wn, "%s:%d: '%s' %s", path, lineno, s,
				 err == -ENOSPC ? "is one donor too many" :
				 err == -ENOMEM ? "does not fit in memory" :
						  "is not 'HOST:PORT [WEIGHT]'");
	}
	fclose(f);
	if (!err && (dup = repeated(*list, *n)) != -1) {
		err = dup == -2 ? -ENOMEM : -EEXIST;
		if (dup == -2)
			snprintf(why, wn, "%s: out of memory", path);
		else
			snprintf(why, wn, "%s:%u: '%s' repeats a donor", path, lines[dup],
				 (*list)[dup].addr);
	}
	free(lines);
	if (err) {
		free(*list);
		*list = NULL;
		*n = 0;
	}
	return err;
}

/* The --donor ones are listed whatever the file or etcd say: appended to
 * list (those it does not name). 0 or -ENOMEM. */
static int with_command_line(const struct bk_broker *b, struct bk_donor_cfg **list, unsigned *n)
{
	for (unsigned i = 0; i < b->cfg.ndonors; i++) {
		char spec[160];
		int err;

		snprintf(spec, sizeof(spec), "%s,%u", b->cfg.donors[i].addr, b->cfg.donors[i].weight);
		err = bk_donors_parse(list, n, spec);
		if (err && err != -EEXIST)
			return err;
	}
	return 0;
}

void bk_donors_reload(struct bk_broker *b)
{
	struct bk_donor_cfg *list;
	unsigned n;
	char why[512];

	if (!b->cfg.donors_file) {
		gvm_info("SIGHUP: no --donors-file to read again");
		return;
	}
	if (b->etcd && b->etcd->reachable && b->etcd->applied) {
		gvm_info("SIGHUP: the donors come from etcd while it is reachable; %s is the "
			 "fallback, not read now", b->cfg.donors_file);
		return;
	}
	if (b->donors_dirfd < 0) {
		gvm_err("SIGHUP: cannot read %s again (its directory could not be opened at "
			"start); the donors stay as they were", b->cfg.donors_file);
		return;
	}
	if (bk_donors_read_file(b->cfg.donors_file, b->donors_dirfd, &list, &n, why, sizeof(why))) {
		gvm_err("SIGHUP: %s; the donors stay as they were", why);
		return;
	}
	if (with_command_line(b, &list, &n))
		bk_stats_nomem("SIGHUP: %s with the --donor ones; the donors stay as they were",
			       b->cfg.donors_file);
	else if (bk_donors_apply(b, list, n, b->cfg.donors_file, why, sizeof(why)))
		gvm_err("SIGHUP: %s; the donors stay as they were", why);
	free(list);
}

/* ---- draining ---- */

uint64_t bk_donors_draining_extents(const struct bk_broker *b)
{
	uint64_t n = 0;

	for (unsigned d = 0; d < b->ndonors; d++)
		if (b->donors[d].state == BK_DONOR_DRAINING)
			n += b->donors[d].extents;
	return n;
}

void bk_donor_drained(struct bk_broker *b, unsigned d)
{
	unsigned dropped = 0;

	for (struct bk_vm *vm = b->vms; vm; vm = vm->next)
		for (size_t i = 0; i < vm->nregions && !vm->detached; i++) {
			struct bk_region *rg = &vm->regions[i];

			if (!rg->ns_id[d] && !rg->ns_was[d])
				continue;
			rg->ns_id[d] = 0;
			rg->ns_was[d] = 0;
			bk_drop_namespace(b, d, rg->ns);
			dropped++;
		}
	bk_replica_forget_donor(b, d);
	b->donors[d].state = BK_DONOR_REMOVED;
	gvm_info("donor %s: drained (every extent copied elsewhere); %u namespace%s of this host "
		 "dropped there; removed", b->donors[d].addr, dropped, dropped == 1 ? "" : "s");
}

const char *bk_donor_state_name(const struct bk_broker *b, unsigned d)
{
	if (b->donors[d].state == BK_DONOR_REMOVED)
		return "removed";
	if (b->donors[d].state == BK_DONOR_DRAINING)
		return "draining";
	if (bk_donor_dead(b, d))
		return "dead";
	if (bk_pool_donor_connections(b->pool, d))
		return "up";
	return bk_pool_donor_up(b->pool, d) ? "idle" : "down";
}

/* ---- etcd ---- */


/* On the watch's thread: keep the newest set for the loop. */
static void on_etcd_set(void *ctx, int status, const struct gvm_etcd_donor *donors, unsigned n)
{
	struct bk_etcd *e = ctx;
	struct bk_donor_cfg *set = NULL;

	if (!status && n) {
		unsigned cap = 16;

		while (cap < n) /* bk_donors_parse may append: its capacity rule */
			cap *= 2;
		set = malloc(cap * sizeof(*set)); /* NULL: lost, said on the loop */
		for (unsigned i = 0; set && i < n; i++) {
			snprintf(set[i].addr, sizeof(set[i].addr), "%s", donors[i].addr);
			set[i].weight = donors[i].weight;
		}
	}
	pthread_mutex_lock(&e->lock);
	free(e->set);
	e->set = set;
	e->nset = status || !set ? 0 : n;
	e->lost = !status && n && !set ? n : 0;
	e->status = status;
	pthread_mutex_unlock(&e->lock);
	uv_async_send(&e->async);
}

static void on_etcd_async(uv_async_t *a)
{
	struct bk_broker *b = a->data;
	struct bk_etcd *e = b->etcd;
	struct bk_donor_cfg *set;
	unsigned n, lost;
	char why[512];
	int status;

	pthread_mutex_lock(&e->lock);
	set = e->set;
	n = e->nset;
	lost = e->lost;
	status = e->status;
	e->set = NULL;
	e->lost = 0;
	pthread_mutex_unlock(&e->lock);
	if (b->stopping) {
		free(set);
		return;
	}
	if (!status && (lost || (n && with_command_line(b, &set, &n)))) {
		bk_stats_nomem("etcd %s: a set of %u donors; the donors stay as they are until etcd "
			       "changes again", b->cfg.etcd, lost ? lost : n);
		free(set);
		return;
	}
	if (status) {
		if (e->reachable)
			gvm_warn("etcd %s: unreachable (%s); the donors stay as they are",
				 b->cfg.etcd, strerror(-status));
		e->reachable = false;
	} else {
		if (!e->reachable)
			gvm_info("etcd %s: %u donor%s registered", b->cfg.etcd, n, n == 1 ? "" : "s");
		e->reachable = true;
		if (bk_donors_apply(b, set, n, "etcd", why, sizeof(why)))
			gvm_warn("%s", why);
		else
			e->applied = true;
	}
	free(set);
}

static void etcd_free(struct bk_etcd *e)
{
	gvm_etcd_destroy(e->client);
	free(e->set);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/* A start that failed once its async handle was made: freed once closed. */
static void on_etcd_closed(uv_handle_t *h)
{
	etcd_free(h->data);
}

int bk_donors_etcd_start(struct bk_broker *b, char *why, size_t n)
{
	struct bk_etcd *e = calloc(1, sizeof(*e));
	int err;

	if (!e) {
		snprintf(why, n, "etcd %s: out of memory", b->cfg.etcd);
		return -ENOMEM;
	}
	pthread_mutex_init(&e->lock, NULL);
	e->reachable = true; /* the first outage is logged */
	err = gvm_etcd_create(&e->client, b->cfg.etcd, b->cfg.etcd_prefix, why, n);
	if (err)
		goto fail;
	err = uv_async_init(b->loop, &e->async, on_etcd_async);
	if (err) {
		snprintf(why, n, "etcd %s: %s", b->cfg.etcd, uv_strerror(err));
		goto fail;
	}
	e->async.data = b;
	b->etcd = e; /* on_etcd_async finds it there */
	/* The watch's thread sends to the async handle: it starts last. */
	err = gvm_etcd_watch(e->client, on_etcd_set, e);
	if (err) {
		snprintf(why, n, "etcd %s: cannot start watching: %s", b->cfg.etcd, strerror(-err));
		b->etcd = NULL;
		e->async.data = e;
		uv_close((uv_handle_t *)&e->async, on_etcd_closed);
		return err;
	}
	return 0;
fail:
	etcd_free(e);
	return err;
}

void bk_donors_stop(struct bk_broker *b)
{
	if (!b->etcd)
		return;
	uv_close((uv_handle_t *)&b->etcd->async, NULL);
}

void bk_donors_free(struct bk_broker *b)
{
	if (b->etcd) {
		etcd_free(b->etcd);
		b->etcd = NULL;
	}
	free(slots);
	slots = NULL;
	nslots = 0;
}
