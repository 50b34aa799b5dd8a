/*
 * arena: bump allocation for structures that are built once and freed
 * whole (a loaded configuration, a parsed YAML tree).  Allocation failure
 * returns NULL; nothing in an arena is freed on its own.
 */
#ifndef SCHAKEL_ARENA_H
#define SCHAKEL_ARENA_H

#include <stddef.h>

struct arena;

/* Returns a new empty arena or NULL when out of memory. */
struct arena *arena_new(void);

/* Frees every allocation in the arena, then the arena; sets *ap to NULL.
 * Accepts NULL and a pointer to NULL. */
void arena_destroy(struct arena **ap);

/* Returns `size` zeroed bytes aligned for any type, or NULL. */
void *arena_alloc(struct arena *a, size_t size);

/* Returns `n` zeroed elements of `size` bytes, or NULL on overflow or
 * when out of memory. */
void *arena_calloc(struct arena *a, size_t n, size_t size);

/* Returns a NUL-terminated copy of the first `len` bytes of `s`. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

/* Returns a NUL-terminated copy of `s`. */
char *arena_strdup(struct arena *a, const char *s);

/* Returns the bytes allocated from the system so far. */
size_t arena_footprint(const struct arena *a);

#endif
