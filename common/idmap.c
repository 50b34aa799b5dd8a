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

static int
s_grow(struct idmap *m)
{
	struct idmap n = {.cap = m->cap ? m->cap * 2 : 64};

	n.keys = calloc(n.cap, sizeof(*n.keys));
	n.lens = calloc(n.cap, sizeof(*n.lens));
	n.vals = calloc(n.cap, sizeof(*n.vals));
	if (n.keys == NULL || n.lens == NULL || n.vals == NULL) {
		idmap_free(&n);
		return -1;
	}
	for (size_t i = 0; i < m->cap; i++) {
		void *old;
		if (m->keys[i] != NULL)
			idmap_put(&n, m->keys[i], m->lens[i], m->vals[i], &old);
	}
	idmap_free(m);
	*m = n;
	return 0;
}

int
idmap_put(struct idmap *m, const void *key, size_t len, void *val, void **old)
{
	size_t i;

	if ((m->len + 1) * 4 > m->cap * 3 && s_grow(m) != 0)
		return -1;
	for (i = s_hash(key, len) & (m->cap - 1); m->keys[i] != NULL;
	     i = (i + 1) & (m->cap - 1)) {
		if (m->lens[i] == len && memcmp(m->keys[i], key, len) == 0) {
			*old = m->vals[i];
			return 1;
		}
	}
	m->keys[i] = key;
	m->lens[i] = len;
	m->vals[i] = val;
	m->len++;
	return 0;
}

void *
idmap_get(const struct idmap *m, const void *key, size_t len)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = s_hash(key, len) & (m->cap - 1); m->keys[i] != NULL;
	     i = (i + 1) & (m->cap - 1))
		if (m->lens[i] == len && memcmp(m->keys[i], key, len) == 0)
			return m->vals[i];
	return NULL;
}

void
idmap_free(struct idmap *m)
{
	free(m->keys);
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
	/* A slot is free when its key is NULL; lens and vals are written
	 * with it. */
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
	for (i = s_hash(key, len) & (m->cap - 1); m->keys[i] != NULL;
	     i = (i + 1) & (m->cap - 1))
		if (m->lens[i] == len && memcmp(m->keys[i], key, len) == 0)
			break;
	if (m->keys[i] == NULL)
		return NULL;
	val = m->vals[i];
	/* Shift later entries of the same probe run back into the hole. */
	for (j = (i + 1) & (m->cap - 1); m->keys[j] != NULL;
	     j = (j + 1) & (m->cap - 1)) {
		size_t home = s_hash(m->keys[j], m->lens[j]) & (m->cap - 1);
		/* Move j to i when its home is not in (i, j]. */
		if ((j > i && (home <= i || home > j)) ||
		    (j < i && (home <= i && home > j))) {
			m->keys[i] = m->keys[j];
			m->lens[i] = m->lens[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = NULL;
	m->lens[i] = 0;
	m->vals[i] = NULL;
	m->len--;
	return val;
}
