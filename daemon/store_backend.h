/*
 * store_backend: what a store backend implements (private to the store).
 * store.c checks the arguments every backend would check, then calls
 * the backend through its ops table; a backend sets failures with
 * store_fail so that store_error() works the same for all of them.
 */
#ifndef SCHAKEL_STORE_BACKEND_H
#define SCHAKEL_STORE_BACKEND_H

#include <stdarg.h>
#include <stdbool.h>

#include "store.h"

struct store_ops;

struct store {
	const struct store_ops *ops;
	void *be;               /* the backend's state */
	bool writing;           /* a write transaction is open */
	uint64_t upgraded_from; /* set by the backend's open */
	uint64_t last_seq_open; /* set by the backend's open */
};

struct store_txn {
	struct store *s;
	void *be; /* the backend's transaction */
};

/* Every call receives checked arguments: names are non-empty and at most
 * STORE_NAME_MAX bytes, pointers are not NULL, a message's recipients
 * are distinct.  Return codes are enum store_rc. */
struct store_ops {
	const char *name;
	int (*open)(struct store *s, const struct store_opts *opts);
	void (*close)(struct store *s);
	int (*begin)(struct store_txn *t);
	int (*commit)(struct store_txn *t); /* frees t->be, also on failure */
	void (*abort)(struct store_txn *t); /* frees t->be */
	uint64_t (*next_seq)(struct store_txn *t);
	void (*take_seq)(struct store_txn *t, uint64_t seq);
	int (*put)(struct store_txn *t, const struct store_msg *m,
	    uint64_t dedup_until_ms);
	int (*delivered)(struct store_txn *t, const char *recipient,
	    uint64_t seq, uint32_t *deliveries);
	int (*ack)(struct store_txn *t, const char *recipient, uint64_t seq,
	    const uint8_t *want_id, struct store_msg *out,
	    const struct store_msg *known);
	int (*dead_letter)(struct store_txn *t, const char *recipient,
	    uint64_t seq, uint32_t code, uint64_t time_ms,
	    uint64_t keep_until_ms);
	int (*redeliver)(
	    struct store_txn *t, const char *recipient, uint64_t seq);
	int (*purge)(struct store_txn *t, const char *recipient, uint64_t seq);
	int (*expire_dedup)(
	    struct store_txn *t, uint64_t now_ms, size_t max, size_t *removed);
	int (*take_expired)(struct store_txn *t, uint64_t now_ms,
	    uint64_t *seqs, size_t max, size_t *n);
	int (*expire_later)(struct store_txn *t, uint64_t at_ms, uint64_t seq);
	int (*take_dead_due)(struct store_txn *t, uint64_t now_ms,
	    struct store_dead *out, size_t max, size_t *n);
	int (*forget_cases)(struct store_txn *t, uint64_t now_ms, size_t look,
	    char (*refs)[STORE_NAME_MAX + 1], size_t max, size_t *n);
	int (*audit_append)(struct store_txn *t, const uint8_t *rec, size_t len,
	    const uint8_t head[STORE_HASH_LEN], uint64_t *audit_seq);
	int (*audit_prune)(struct store_txn *t, uint64_t upto,
	    const uint8_t anchor[STORE_HASH_LEN]);
	int (*seen)(
	    struct store *s, const uint8_t id[STORE_ID_LEN], uint64_t *seq);
	int (*receipt)(struct store *s, const uint8_t id[STORE_ID_LEN],
	    uint8_t **receipt, size_t *len);
	int (*get)(struct store *s, uint64_t seq, struct store_msg *m,
	    uint8_t **envelope, uint8_t **receipt);
	int (*queue)(struct store *s, const char *recipient, uint64_t after,
	    struct store_entry *out, size_t max, size_t *n);
	int (*queue_depth)(
	    struct store *s, const char *recipient, uint64_t *depth);
	int (*participants)(struct store *s, const char *case_ref,
	    char (*out)[STORE_NAME_MAX + 1], size_t max, size_t *n);
	int (*dead_letters)(struct store *s, const char *recipient,
	    uint64_t after, struct store_dead *out, size_t max, size_t *n);
	int (*audit_each)(struct store *s, uint64_t after,
	    int (*fn)(void *arg, uint64_t seq, const uint8_t *rec, size_t len),
	    void *arg, uint8_t head[STORE_HASH_LEN]);
	int (*audit_anchor)(
	    struct store *s, uint64_t *seq, uint8_t hash[STORE_HASH_LEN]);
	int (*usage)(
	    struct store *s, uint64_t *used, uint64_t *size, uint64_t *limit);
	int (*due)(
	    struct store *s, uint64_t now_ms, size_t look, unsigned *due);
};

/* The backends. */
extern const struct store_ops store_lmdb_ops;

/* Records `fmt` as the last failure of `s` in this thread and returns
 * rc, so that a backend can write `return store_fail(s, rc, ...)`. */
int store_fail(const struct store *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
