/*
 * arena: a list of large blocks carved up front to back.  It exists so
 * that a configuration with 100,000 small objects costs a few hundred
 * mallocs and one free.  It must never hand out unaligned memory.
 */
#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define S_BLOCK_SIZE (256 * 1024)

struct s_block {
	struct s_block *next;
	size_t used;
	size_t size;
	alignas(max_align_t) unsigned char data[];
};

struct arena {
	struct s_block *head;
	size_t footprint;
};

struct arena *
arena_new(void)
{
	return calloc(1, sizeof(struct arena));
}

void
arena_destroy(struct arena **ap)
{
	struct s_block *b, *next;

	if (ap == NULL || *ap == NULL)
		return;
	for (b = (*ap)->head; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	free(*ap);
	*ap = NULL;
}

void *
arena_alloc(struct arena *a, size_t size)
{
	const size_t align = alignof(max_align_t);
	struct s_block *b = a->head;
	size_t need, bsize;
	void *p;

	if (size > SIZE_MAX - align)
		return NULL;
	need = (size + align - 1) & ~(align - 1);
	if (need == 0)
		need = align;
	if (b == NULL || b->size - b->used < need) {
		bsize = need > S_BLOCK_SIZE / 4 ? need : S_BLOCK_SIZE;
		b = malloc(sizeof(*b) + bsize);
		if (b == NULL)
			return NULL;
		b->used = 0;
		b->size = bsize;
		if (a->head != NULL && need > S_BLOCK_SIZE / 4) {
			/* A large one-off: keep the current block in front
			 * so its free space is still used. */
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
		a->footprint += sizeof(*b) + bsize;
	}
	p = b->data + b->used;
	b->used += need;
	memset(p, 0, size);
	return p;
}

void *
arena_calloc(struct arena *a, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	return arena_alloc(a, n * size);
}

char *
arena_strndup(struct arena *a, const char *s, size_t len)
{
	char *p;

	if (len == SIZE_MAX)
		return NULL;
	p = arena_alloc(a, len + 1);
	if (p == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
arena_strdup(struct arena *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

size_t
arena_footprint(const struct arena *a)
{
	return a->footprint;
}
