/*
 * diag: the list of problems found while loading a configuration, each
 * with the place it refers to, printed as "file:line:column: error:
 * message" so that editors and people can jump to it.
 */
#ifndef SCHAKEL_DIAG_H
#define SCHAKEL_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum diag_severity {
	DIAG_ERROR,
	DIAG_WARNING,
};

/* A place in a configuration file.  diags_add copies `file`; `seq` orders
 * files in
 * the order they were loaded.  line and col are 1-based; 0 means the
 * file as a whole. */
struct diag_mark {
	const char *file;
	uint32_t seq;
	uint32_t line;
	uint32_t col;
};

struct diag {
	enum diag_severity severity;
	struct diag_mark mark;
	char *msg;
};

struct diags;

/* Returns an empty list, or NULL when out of memory. */
struct diags *diags_new(void);

/* Frees the list; accepts NULL; sets *dp to NULL. */
void diags_destroy(struct diags **dp);

/* Adds a problem.  After DIAGS_MAX entries further problems are counted
 * but not kept.  Out of memory is remembered and reported by
 * diags_print. */
#define DIAGS_MAX 1000
void
diags_add(struct diags *d, enum diag_severity sev, const struct diag_mark *mark,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Returns the number of problems of severity `sev` added so far. */
size_t diags_count(const struct diags *d, enum diag_severity sev);

/* Returns the number of problems kept, and the i-th in file order. */
size_t diags_len(struct diags *d);
const struct diag *diags_at(struct diags *d, size_t i);

/* Prints every kept problem in file order, one a line. */
void diags_print(struct diags *d, FILE *out);

/* Appends to `out` (size `len`) the closest of `names` to `word` as
 * "; did you mean 'x'?" when one is near enough, else an empty string. */
void diags_suggest(const char *word, const char *const *names, size_t n,
    char *out, size_t len);

#endif
