/*
 * testutil: what several test programs need: a private temporary folder
 * that is removed afterwards, files written into it, and development keys
 * generated into it.  Tests never write into the source tree.
 */
#ifndef SCHAKEL_TESTUTIL_H
#define SCHAKEL_TESTUTIL_H

#include <stddef.h>

/* Creates a fresh private folder and writes its path into out (at least
 * 64 bytes).  Returns 0 or -1. */
int tu_mkdtemp(char *out, size_t len);

/* Removes a folder and everything in it.  Returns 0 or -1. */
int tu_rmrf(const char *dir);

/* Writes `text` to DIR/NAME (creating DIR/NAME's folder if needed).
 * Returns 0 or -1. */
int tu_write(const char *dir, const char *name, const char *text);

/* Generates keys for each party id in the NULL-terminated `parties` and
 * for the broker into DIR/keys (mode 0700).  Returns 0 or -1. */
int tu_keys(const char *dir, const char *const *parties);

#endif
