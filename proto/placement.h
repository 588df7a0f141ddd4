/* placement.h: which donors hold an extent: weighted rendezvous hashing of
 * (namespace, extent) over the donors' addresses. Adding a donor moves only
 * the extents it wins. Used by the broker (broker/fault.c) and by anything
 * that must find an extent's donor (tests, tools). */
#ifndef GVM_PLACEMENT_H
#define GVM_PLACEMENT_H

#include <stdint.h>

struct gvm_place_donor {
	const char *addr; /* "host:port" exactly as configured */
	unsigned weight;  /* relative capacity, >= 1 */
};

/* Writes the best r donor indices (r <= n) for (ns, extent) into out. */
void gvm_place(const char *ns, uint64_t extent, const struct gvm_place_donor *donors,
	       unsigned n, unsigned *out, unsigned r);

#endif
