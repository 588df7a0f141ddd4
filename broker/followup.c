/* followup.c: the work that follows events, run once per loop turn (a
 * uv_check_t: after every callback of the turn). A VM whose uffd failed is
 * detached (attach.c), the faults that waited for room are served
 * (fault.c), and eviction runs while resident pages are over the high mark
 * (evict.c). The modules only note what happened (a failed VM, a
 * finished write-back, pages installed); none calls another's follow-up,
 * so fault service, eviction and attach never re-enter each other. */
#include <errno.h>
#include <string.h>

#include "broker.h"

static void detach_failed(struct bk_broker *b)
{
	struct bk_vm *vm, *next;

	for (vm = b->vms; vm; vm = next) {
		next = vm->next; /* the detach may free vm, never the next one */
		if (vm->failed && !vm->detached)
			bk_vm_detach(vm, vm->failed == -ESRCH ? "the process exited" :
				     strerror(-vm->failed),
				     vm->failed == -ESRCH ? BK_DETACH_DROP : BK_DETACH_AUTO);
	}
}

static void on_check(uv_check_t *h)
{
	struct bk_broker *b = h->data;

	detach_failed(b);
	bk_fault_redispatch(b);
	bk_evict_check(b);
}

int bk_followup_start(struct bk_broker *b)
{
	int err = uv_check_init(b->loop, &b->followup);

	if (err)
		return err;
	b->followup.data = b;
	uv_unref((uv_handle_t *)&b->followup); /* never keeps the loop alive */
	b->followup_on = true;
	return uv_check_start(&b->followup, on_check);
}

void bk_followup_stop(struct bk_broker *b)
{
	if (!b->followup_on)
		return;
	b->followup_on = false;
	uv_check_stop(&b->followup);
	uv_close((uv_handle_t *)&b->followup, NULL);
}
