/*
 * archive: the audit log's older part, moved out of the store into files
 * (broker.audit_archive).  A file is audit-<sequence of its first record,
 * 20 digits>.log in the archive folder and holds records exactly as the
 * store held them, one a line, so the chain goes on from file to file
 * and into the store, whose anchor is the last archived record's hash.
 */
#ifndef SCHAKEL_ARCHIVE_H
#define SCHAKEL_ARCHIVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* What a round wrote. */
struct archive_round {
	uint64_t first, last; /* audit sequences; n == 0: nothing written */
	size_t n;
	uint8_t last_hash[STORE_HASH_LEN]; /* for store_audit_prune */
	bool more;            /* stopped at `max`: more records are due */
	uint64_t undecodable; /* stopped at this record: it does not decode */
	char file[4200];      /* the file written */
	char err[512];        /* why it failed */
};

/* Writes the store's records after its anchor whose time is before
 * cutoff_ms or after now_ms (up to `max`, stopping at the first that is
 * neither, or does not decode) to a new file in `dir` (created if
 * needed), flushed to disk before it returns.  Returns 0 (r->n == 0
 * when none was due) or -1 with r->err.  Ends early, writing nothing,
 * when *cancel becomes true. */
int archive_write(struct store *s, const char *dir, uint64_t cutoff_ms,
    uint64_t now_ms, size_t max, const atomic_bool *cancel,
    struct archive_round *r);

/* The file whose first record is `first`, as "DIR/audit-...log" in out. */
const char *
archive_name(const char *dir, uint64_t first, char *out, size_t len);

/* The archived records as found. */
struct archive_span {
	uint64_t first, last; /* sequences; first == 0: none */
	uint64_t records;
	size_t files;
};

typedef int (*archive_each_fn)(
    void *arg, uint64_t seq, const uint8_t *rec, size_t len);

/* Calls fn for each archived record in `dir`, in sequence order, until fn
 * returns non-zero; *span says what was read.  A folder that does not
 * exist holds none.  Returns 0, or -1 with a sentence in err (a file
 * that cannot be read, one cut short, or a gap between two files). */
int archive_each(const char *dir, archive_each_fn fn, void *arg,
    struct archive_span *span, char *err, size_t errlen);

#endif
