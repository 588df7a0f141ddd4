/* placement.c: weighted rendezvous (highest random weight) hashing: every
 * donor scores each (namespace, extent) as weight / -ln(u), u a uniform
 * hash in (0,1); the highest scores hold it (placement.h). */
#include "placement.h"

#include <math.h>

static uint64_t place_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t place_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 0x100000001b3ULL;
	return h;
}

uint64_t gvm_place_addr_hash(const char *addr)
{
	return place_str(addr);
}

uint64_t gvm_place_ns_hash(const char *ns)
{
	return place_str(ns);
}

uint64_t gvm_place_key(uint64_t ns_hash, uint64_t extent)
{
	return place_mix(ns_hash ^ place_mix(extent));
}

double gvm_place_score(uint64_t key, uint64_t addr_hash, unsigned weight)
{
	uint64_t h = place_mix(key ^ addr_hash);
	double u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);

	return (weight ? weight : 1) / -log(u);
}

void gvm_place(const char *ns, uint64_t extent, const struct gvm_place_donor *donors,
	       unsigned n, unsigned *out, unsigned r)
{
	double best[64];
	uint64_t key = gvm_place_key(place_str(ns), extent);

	if (r > n)
		r = n;
	if (r > 64)
		r = 64;
	for (unsigned k = 0; k < r; k++)
		best[k] = -1;
	for (unsigned i = 0; i < n; i++) {
		double score = gvm_place_score(key, place_str(donors[i].addr), donors[i].weight);
		unsigned k = r;

		/* insertion into the sorted top r */
		while (k > 0 && score > best[k - 1]) {
			if (k < r) {
				best[k] = best[k - 1];
				out[k] = out[k - 1];
			}
			k--;
		}
		if (k < r) {
			best[k] = score;
			out[k] = i;
		}
	}
}
