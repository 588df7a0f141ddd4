/* journal.c: the slots of READs being received into guest memory
 * (journal.h). The file is a fixed array mapped shared, so a slot taken is
 * in the page cache before the READ goes out, and stays there whatever
 * kills the broker; region.c's punch cleans up after the slots an earlier
 * broker left. Called by fault.c (a READ's start and end) and attach.c (a
 * re-attach). */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "region.h"

struct journal_slot {
	uint8_t incarnation[GVM_INCARNATION_BYTES];
	uint32_t region;
	uint32_t count;
	uint64_t first;
	uint64_t used; /* written last when taken, first when freed */
};

struct bk_journal {
	struct journal_slot *slots;  /* the file, mapped */
	/* Slots an earlier broker left: taken until their VM attaches again
	 * (a broker that stops before then leaves them to the next one). */
	uint16_t left[BK_JOURNAL_SLOTS];
	unsigned nleft;
	uint16_t free[BK_JOURNAL_SLOTS];
	unsigned nfree;
};

#define JOURNAL_BYTES (BK_JOURNAL_SLOTS * sizeof(struct journal_slot))

int bk_journal_open(struct bk_broker *b, const char *state_dir)
{
	char path[PATH_MAX];
	struct bk_journal *j = calloc(1, sizeof(*j));
	int fd = -1, err;

	if (!j)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s", state_dir, BK_JOURNAL_FILE);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)JOURNAL_BYTES) < 0) {
		err = -errno;
		goto out_free;
	}
	j->slots = mmap(NULL, JOURNAL_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (j->slots == MAP_FAILED) {
		err = -errno;
		goto out_free;
	}
	close(fd);
	for (unsigned i = BK_JOURNAL_SLOTS; i-- > 0;) {
		if (j->slots[i].used)
			j->left[j->nleft++] = (uint16_t)i;
		else
			j->free[j->nfree++] = (uint16_t)i;
	}
	if (j->nleft)
		gvm_info("%u READs were being received into VMs' memory when the last broker "
			 "stopped: those pages are dropped when their VMs attach again", j->nleft);
	b->journal = j;
	return 0;

out_free:
	if (fd >= 0)
		close(fd);
	free(j);
	return err;
}

int bk_journal_begin(struct bk_broker *b, const struct bk_region *rg, uint64_t first,
		     uint32_t count)
{
	struct bk_journal *j = b->journal;
	struct journal_slot *s;
	unsigned i;

	if (!j || !j->nfree)
		return -1;
	i = j->free[--j->nfree];
	s = &j->slots[i];
	memcpy(s->incarnation, rg->vm->incarnation, sizeof(s->incarnation));
	s->region = rg->index;
	s->first = first;
	s->count = count;
	__atomic_store_n(&s->used, 1, __ATOMIC_RELEASE);
	return (int)i;
}

void bk_journal_end(struct bk_broker *b, int slot)
{
	struct bk_journal *j = b->journal;

	if (!j || slot < 0)
		return;
	__atomic_store_n(&j->slots[slot].used, 0, __ATOMIC_RELEASE);
	j->free[j->nfree++] = (uint16_t)slot;
}

void bk_journal_reattached(struct bk_broker *b, struct bk_region *rg)
{
	struct bk_journal *j = b->journal;

	for (unsigned i = 0; j && i < j->nleft;) {
		struct journal_slot *s = &j->slots[j->left[i]];

		if (memcmp(s->incarnation, rg->vm->incarnation, sizeof(s->incarnation)) ||
		    s->region != rg->index) {
			i++;
			continue;
		}
		int err = s->first < rg->npages && s->count <= rg->npages - s->first ?
				  bk_region_punch(rg, s->first, s->count) : 0;

		if (err)
			gvm_warn("vm %s: cannot drop pages %llu+%u of %s, which a stopped broker was "
				 "receiving: %s", rg->vm->name, (unsigned long long)s->first, s->count,
				 rg->name, strerror(-err));
		bk_journal_end(b, j->left[i]);
		j->left[i] = j->left[--j->nleft];
	}
}

void bk_journal_close(struct bk_broker *b)
{
	struct bk_journal *j = b->journal;

	if (!j)
		return;
	munmap(j->slots, JOURNAL_BYTES);
	free(j);
	b->journal = NULL;
}
