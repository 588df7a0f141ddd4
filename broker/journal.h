/* journal.h: READs being received straight into guest memory
 * (journal.c). A broker killed while a payload is on its way leaves part
 * of it in a page of the VM's memfd that no one mapped yet; the next broker
 * must not take that page for the VM's data. Each such READ holds a slot of
 * a small file in the state directory while it is received; the next
 * broker punches the slots' pages when the VM attaches again (the donors
 * hold them: they are read again). */
#ifndef BK_JOURNAL_H
#define BK_JOURNAL_H

#include <stdint.h>

#include "broker.h"

#define BK_JOURNAL_SLOTS 1024u
#define BK_JOURNAL_FILE "receiving"

/* Maps STATE_DIR/receiving (made if missing) and takes what an earlier
 * broker left in it. 0 or -errno (the broker then receives into buffers). */
int bk_journal_open(struct bk_broker *b, const char *state_dir);
/* A slot for a READ of count pages from first of rg, or -1 when none is
 * free (the READ then goes into a buffer). */
int bk_journal_begin(struct bk_broker *b, const struct bk_region *rg, uint64_t first,
		     uint32_t count);
/* The READ's pages are whole (or punched): the slot is free again. */
void bk_journal_end(struct bk_broker *b, int slot);
/* A VM attached again: the pages an earlier broker was receiving into its
 * region when it stopped are punched out of the memfd. */
void bk_journal_reattached(struct bk_broker *b, struct bk_region *rg);
void bk_journal_close(struct bk_broker *b);

#endif
