/* dsm_copyset.c: the owner's sparse copyset (dsm_core.h). Up to
 * DSM_COPYSET_INLINE ids live in the struct; more go to a sorted u16
 * array grown by doubling; once the array would be larger than a bitmap of
 * the cluster, a bitmap. A 10240-node cluster pays 1280 bytes only for
 * pages that really have more than 640 sharers, and only at their owner. */
#include "dsm_core.h"

void dsm_copyset_init(struct dsm_copyset *cs, u16 nodes)
{
	memset(cs, 0, sizeof(*cs));
	cs->kind = DSM_CS_INLINE;
	cs->nodes = nodes;
}

static dsm_node_t *cs_ids(struct dsm_copyset *cs)
{
	return cs->kind == DSM_CS_INLINE ? cs->ids : cs->array;
}

static size_t bitmap_bytes(u16 nodes)
{
	return BITS_TO_LONGS(nodes) * sizeof(unsigned long);
}

/* Index of the first id >= id in the sorted ids. */
static unsigned cs_lower(const dsm_node_t *ids, unsigned n, dsm_node_t id)
{
	unsigned lo = 0, hi = n;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int cs_to_bitmap(struct dsm_copyset *cs)
{
	unsigned long *map = kvzalloc(bitmap_bytes(cs->nodes), GFP_KERNEL);
	dsm_node_t *ids = cs_ids(cs);

	if (!map)
		return -ENOMEM;
	for (unsigned i = 0; i < cs->count; i++)
		__set_bit(ids[i], map);
	if (cs->kind == DSM_CS_ARRAY)
		kvfree(cs->array);
	cs->bitmap = map;
	cs->kind = DSM_CS_BITMAP;
	cs->cap = 0;
	return 0;
}

static int cs_grow(struct dsm_copyset *cs)
{
	unsigned cap = cs->kind == DSM_CS_INLINE ? 2 * DSM_COPYSET_INLINE : 2u * cs->cap;
	dsm_node_t *array;

	if ((size_t)cap * sizeof(dsm_node_t) >= bitmap_bytes(cs->nodes))
		return cs_to_bitmap(cs);
	array = kvmalloc_array(cap, sizeof(dsm_node_t), GFP_KERNEL);
	if (!array)
		return -ENOMEM;
	memcpy(array, cs_ids(cs), cs->count * sizeof(dsm_node_t));
	if (cs->kind == DSM_CS_ARRAY)
		kvfree(cs->array);
	cs->array = array;
	cs->cap = (u16)cap;
	cs->kind = DSM_CS_ARRAY;
	return 0;
}

int dsm_copyset_add(struct dsm_copyset *cs, dsm_node_t id)
{
	unsigned cap, at;
	dsm_node_t *ids;
	int err;

	if (id >= cs->nodes)
		return -EINVAL;
	if (cs->kind == DSM_CS_BITMAP) {
		if (!test_bit(id, cs->bitmap)) {
			__set_bit(id, cs->bitmap);
			cs->count++;
		}
		return 0;
	}
	ids = cs_ids(cs);
	at = cs_lower(ids, cs->count, id);
	if (at < cs->count && ids[at] == id)
		return 0;
	cap = cs->kind == DSM_CS_INLINE ? DSM_COPYSET_INLINE : cs->cap;
	if (cs->count == cap) {
		err = cs_grow(cs);
		if (err)
			return err;
		if (cs->kind == DSM_CS_BITMAP)
			return dsm_copyset_add(cs, id);
		ids = cs_ids(cs);
	}
	memmove(ids + at + 1, ids + at, (cs->count - at) * sizeof(dsm_node_t));
	ids[at] = id;
	cs->count++;
	return 0;
}

void dsm_copyset_del(struct dsm_copyset *cs, dsm_node_t id)
{
	dsm_node_t *ids;
	unsigned at;

	if (id >= cs->nodes)
		return;
	if (cs->kind == DSM_CS_BITMAP) {
		if (test_bit(id, cs->bitmap)) {
			__clear_bit(id, cs->bitmap);
			cs->count--;
		}
		return;
	}
	ids = cs_ids(cs);
	at = cs_lower(ids, cs->count, id);
	if (at == cs->count || ids[at] != id)
		return;
	memmove(ids + at, ids + at + 1, (cs->count - at - 1) * sizeof(dsm_node_t));
	cs->count--;
}

bool dsm_copyset_has(const struct dsm_copyset *cs, dsm_node_t id)
{
	const dsm_node_t *ids;
	unsigned at;

	if (id >= cs->nodes)
		return false;
	if (cs->kind == DSM_CS_BITMAP)
		return test_bit(id, cs->bitmap);
	ids = cs->kind == DSM_CS_INLINE ? cs->ids : cs->array;
	at = cs_lower(ids, cs->count, id);
	return at < cs->count && ids[at] == id;
}

int dsm_copyset_for_each(const struct dsm_copyset *cs, int (*fn)(void *arg, dsm_node_t id),
			 void *arg)
{
	unsigned long bit;
	int err;

	if (cs->kind == DSM_CS_BITMAP) {
		for_each_set_bit(bit, cs->bitmap, cs->nodes) {
			err = fn(arg, (dsm_node_t)bit);
			if (err)
				return err;
		}
		return 0;
	}
	for (unsigned i = 0; i < cs->count; i++) {
		err = fn(arg, cs->kind == DSM_CS_INLINE ? cs->ids[i] : cs->array[i]);
		if (err)
			return err;
	}
	return 0;
}

static int put_id(void *arg, dsm_node_t id)
{
	dsm_node_t **out = arg;

	*(*out)++ = id;
	return 0;
}

void dsm_copyset_to_array(const struct dsm_copyset *cs, dsm_node_t *out)
{
	dsm_copyset_for_each(cs, put_id, &out);
}

void dsm_copyset_free(struct dsm_copyset *cs)
{
	if (cs->kind == DSM_CS_ARRAY)
		kvfree(cs->array);
	else if (cs->kind == DSM_CS_BITMAP)
		kvfree(cs->bitmap);
	dsm_copyset_init(cs, cs->nodes);
}

size_t dsm_copyset_heap_bytes(const struct dsm_copyset *cs)
{
	if (cs->kind == DSM_CS_ARRAY)
		return (size_t)cs->cap * sizeof(dsm_node_t);
	if (cs->kind == DSM_CS_BITMAP)
		return bitmap_bytes(cs->nodes);
	return 0;
}
