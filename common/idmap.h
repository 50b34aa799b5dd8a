/*
 * idmap: an open-addressing hash map from byte strings to pointers, for
 * look-ups by id or key.  Keys are borrowed: they must outlive the map.
 * Not for keys an attacker chooses in bulk (an unseeded hash).
 */
#ifndef SCHAKEL_IDMAP_H
#define SCHAKEL_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap {
	const void **keys; /* NULL: a free slot */
	/* Each slot's key hash and length: a probe compares keys only when
	 * both match, and a key is never hashed again (growing,
	 * deleting). */
	uint64_t *hashes;
	uint32_t *lens;
	void **vals;
	size_t cap;
	size_t len;
};

/* Inserts key -> val (len below 4 GiB).  Returns 0, 1 when the key was
 * present (*old is set and nothing changes), or -1 when out of memory. */
int
idmap_put(struct idmap *m, const void *key, size_t len, void *val, void **old);

/* Returns the value of key, or NULL. */
void *idmap_get(const struct idmap *m, const void *key, size_t len);

/* Removes key; returns its value, or NULL when it was not there. */
void *idmap_del(struct idmap *m, const void *key, size_t len);

/* Frees the map's tables (not keys or values); the map is empty after. */
void idmap_free(struct idmap *m);

/* Empties the map.  Its table is kept when it was at least a quarter
 * full (a map filled to about the same size again, a group's, does not
 * grow through every size on the way), else freed as by idmap_free. */
void idmap_clear(struct idmap *m);

/* The hash a key's slot is taken from (its low bits), for tests. */
uint64_t idmap_hash(const void *key, size_t len);

#endif
