/*
 * text: bounded copies of C strings into fixed arrays, for the hot paths
 * where snprintf(dst, size, "%s", src) parsed its format for every name
 * of every message.
 */
#ifndef SCHAKEL_TEXT_H
#define SCHAKEL_TEXT_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Copies `src` into `dst` of `size` bytes (size > 0), always terminated.
 * Returns false when `src` did not fit and was cut short. */
static inline bool
text_copy(char *dst, size_t size, const char *src)
{
	assert(size > 0 && src != NULL);
	if (memccpy(dst, src, '\0', size) != NULL)
		return true;
	dst[size - 1] = '\0';
	return false;
}

#endif
