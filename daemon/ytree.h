/*
 * ytree: a YAML file as a tree of scalars, sequences and mappings, each
 * node with its file, line and column.  Anchors, aliases, tags, several
 * documents and duplicate keys are refused, so that what the
 * administrator reads is exactly what the broker loads.
 */
#ifndef SCHAKEL_YTREE_H
#define SCHAKEL_YTREE_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "diag.h"

enum ynode_kind {
	YNODE_SCALAR,
	YNODE_SEQ,
	YNODE_MAP,
};

struct ynode;

struct ypair {
	const struct ynode *key; /* always a scalar */
	const struct ynode *value;
};

struct ynode {
	enum ynode_kind kind;
	struct diag_mark mark;
	/* YNODE_SCALAR: NUL-terminated text; `plain` when unquoted (only
	 * plain scalars can be numbers, booleans or null). */
	const char *str;
	size_t len;
	bool plain;
	/* YNODE_SEQ: items; YNODE_MAP: pairs in file order. */
	size_t n;
	const struct ynode **items;
	const struct ypair *pairs;
};

/* Limits that keep a hostile or broken file from exhausting memory. */
#define YTREE_MAX_FILE (64u * 1024 * 1024)
#define YTREE_MAX_DEPTH 32
#define YTREE_MAX_SCALAR (64u * 1024)

/* Loads `path` into nodes allocated from `arena`.  `mark_file` (borrowed,
 * must outlive the arena) and `seq` are copied into every node's mark.
 * Returns the root node; NULL for an empty file (*ok true) or on error
 * (*ok false, problems added to `d`). */
const struct ynode *ytree_load(struct arena *arena, const char *path,
    const char *mark_file, uint32_t seq, struct diags *d, bool *ok);

/* Returns true when a scalar is YAML's null (~, null, or empty plain). */
bool ytree_is_null(const struct ynode *n);

/* Returns a short name of a node's kind for messages: "a text",
 * "a list", "a mapping". */
const char *ytree_kind_name(const struct ynode *n);

#endif
