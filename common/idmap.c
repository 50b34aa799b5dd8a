/*
 * idmap: linear probing with backward-shift deletion, grown at 3/4 load.
 * It allocates only its tables; keys and values belong to the caller.
 */
#include "idmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Eight bytes at a time, each word mixed in with a multiply, and the
 * result finished as MurmurHash3's fmix64 does, so that the low bits (the
 * slot) depend on every byte.  FNV-1a a byte at a time was half of the
 * lookups' cost (a message looks up some fourteen keys on the broker
 * thread: ids, party names, case references). */
static inline uint64_t
s_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = UINT64_C(0x9e3779b97f4a7c15), w, n = len;

	for (; len >= 8; len -= 8, p += 8) {
		memcpy(&w, p, 8);
		h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
		h ^= h >> 32;
	}
	/* The tail a byte at a time: a memcpy of a variable length is a
	 * call. */
	w = 0;
	for (size_t i = 0; i < len; i++)
		w |= (uint64_t)p[i] << (8 * i);
	h = ((h ^ w) * UINT64_C(0xc4ceb9fe1a85ec53)) ^ n;
	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	return h;
}

uint64_t
idmap_hash(const void *key, size_t len)
{
	return s_hash(key, len);
}

/* The slot of the key with hash h, or the free slot where it would go. */
static inline size_t
s_find(const struct idmap *m, uint64_t h, const void *key, size_t len)
{
	size_t i;

	for (i = h & (m->cap - 1); m->keys[i] != NULL;
	     i = (i + 1) & (m->cap - 1))
		if (m->hashes[i] == h && m->lens[i] == len &&
		    memcmp(m->keys[i], key, len) == 0)
			break;
	return i;
}

static inline void
s_set(struct idmap *m, size_t i, const void *key, uint64_t h, uint32_t len,
    void *val)
{
	m->keys[i] = key;
	m->hashes[i] = h;
	m->lens[i] = len;
	m->vals[i] = val;
}

static int
s_grow(struct idmap *m)
{
	struct idmap n = {.cap = m->cap ? m->cap * 2 : 64};

	n.keys = calloc(n.cap, sizeof(*n.keys));
	n.hashes = calloc(n.cap, sizeof(*n.hashes));
	n.lens = calloc(n.cap, sizeof(*n.lens));
	n.vals = calloc(n.cap, sizeof(*n.vals));
	if (n.keys == NULL || n.hashes == NULL || n.lens == NULL ||
	    n.vals == NULL) {
		idmap_free(&n);
		return -1;
	}
	/* Keys are all different: each goes to the first free slot. */
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;
		if (m->keys[i] == NULL)
			continue;
		for (j = m->hashes[i] & (n.cap - 1); n.keys[j] != NULL;
		     j = (j + 1) & (n.cap - 1))
			;
		s_set(&n, j, m->keys[i], m->hashes[i], m->lens[i], m->vals[i]);
	}
	n.len = m->len;
	idmap_free(m);
	*m = n;
	return 0;
}

int
idmap_put(struct idmap *m, const void *key, size_t len, void *val, void **old)
{
	uint64_t h;
	size_t i;

	if (len > UINT32_MAX)
		return -1;
	if ((m->len + 1) * 4 > m->cap * 3 && s_grow(m) != 0)
		return -1;
	h = s_hash(key, len);
	i = s_find(m, h, key, len);
	if (m->keys[i] != NULL) {
		*old = m->vals[i];
		return 1;
	}
	s_set(m, i, key, h, (uint32_t)len, val);
	m->len++;
	return 0;
}

void *
idmap_get(const struct idmap *m, const void *key, size_t len)
{
	size_t i;

	if (m->cap == 0)
		return NULL;
	i = s_find(m, s_hash(key, len), key, len);
	return m->keys[i] != NULL ? m->vals[i] : NULL;
}

void
idmap_free(struct idmap *m)
{
	free(m->keys);
	free(m->hashes);
	free(m->lens);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

void
idmap_clear(struct idmap *m)
{
	if (m->cap == 0 || m->len * 4 < m->cap) {
		idmap_free(m);
		return;
	}
	/* A slot is free when its key is NULL; the rest is written with
	 * it. */
	memset(m->keys, 0, m->cap * sizeof(*m->keys));
	m->len = 0;
}

void *
idmap_del(struct idmap *m, const void *key, size_t len)
{
	size_t i, j;
	void *val;

	if (m->cap == 0)
		return NULL;
	i = s_find(m, s_hash(key, len), key, len);
	if (m->keys[i] == NULL)
		return NULL;
	val = m->vals[i];
	/* Shift later entries of the same probe run back into the hole. */
	for (j = (i + 1) & (m->cap - 1); m->keys[j] != NULL;
	     j = (j + 1) & (m->cap - 1)) {
		size_t home = m->hashes[j] & (m->cap - 1);
		/* Move j to i when its home is not in (i, j]. */
		if ((j > i && (home <= i || home > j)) ||
		    (j < i && (home <= i && home > j))) {
			s_set(m, i, m->keys[j], m->hashes[j], m->lens[j],
			    m->vals[j]);
			i = j;
		}
	}
	s_set(m, i, NULL, 0, 0, NULL);
	m->len--;
	return val;
}
