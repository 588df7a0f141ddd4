/* placement.h: which donors take an extent's first copies: weighted
 * rendezvous hashing of (namespace, extent) over the donors' addresses.
 * Adding a donor changes only the placements it wins. The broker places an
 * extent once, when it is first written back, and remembers where
 * (broker/replica.c): placement never decides where written data is read.
 *
 * Scores come from three hashes: the namespace's and each address's are
 * computed once (gvm_place_ns_hash, gvm_place_addr_hash), the key per
 * extent (gvm_place_key), so scoring a donor costs a mix and a log. */
#ifndef GVM_PLACEMENT_H
#define GVM_PLACEMENT_H

#include <stdint.h>

struct gvm_place_donor {
	const char *addr; /* "host:port" exactly as configured */
	unsigned weight;  /* relative capacity, >= 1 */
};

uint64_t gvm_place_addr_hash(const char *addr);
uint64_t gvm_place_ns_hash(const char *ns);
uint64_t gvm_place_key(uint64_t ns_hash, uint64_t extent);
/* A donor's score for a key: the highest scores hold the extent. */
double gvm_place_score(uint64_t key, uint64_t addr_hash, unsigned weight);

/* Writes the best r donor indices (r <= n, at most 64) for (ns, extent)
 * into out, hashing every string again: for tools and tests, and the
 * benchmark's "before" (bench/placement_bench.c). */
void gvm_place(const char *ns, uint64_t extent, const struct gvm_place_donor *donors,
	       unsigned n, unsigned *out, unsigned r);

#endif
