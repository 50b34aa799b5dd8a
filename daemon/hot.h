/*
 * hot: the messages accepted last, kept in memory so that their delivery,
 * which usually follows in the same turn, needs no read from the store.
 * A cache only: the store stays the truth, a miss means "read the store",
 * and what it holds is bounded by slots and by bytes.
 */
#ifndef SCHAKEL_HOT_H
#define SCHAKEL_HOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* What a delivery and its acknowledgement read of an accepted message.
 * All of it is fixed at acceptance, so an entry never goes stale; it only
 * makes room (a message acknowledged by all and gone from the store may
 * still be here). */
struct hot_msg {
	uint64_t seq; /* 0: the slot is empty */
	uint64_t expires_ms;
	uint64_t accepted_ms;
	uint8_t id[STORE_ID_LEN];
	bool notify_delivered;
	char sender[STORE_NAME_MAX + 1];
	char type[STORE_NAME_MAX + 1];
	char case_ref[STORE_NAME_MAX + 1];
	const uint8_t *envelope; /* in the cache's own memory */
	size_t envelope_len;
	const uint8_t *receipt;
	size_t receipt_len;
	/* Its recipients, then the agreement of each, n_recipients of each,
	 * every one ended by a NUL (in the cache's own memory). */
	size_t n_recipients;
	const char *names;
	size_t names_len;
};

struct hot;

/* A cache of `slots` entries (slots > 0) that holds at most `max_bytes`
 * of envelopes, receipts and names (one block of that size, allocated at
 * the first put), and no message whose envelope, receipt and names
 * together are larger than `max_one` (max_one <= max_bytes).  Returns an
 * owned cache, or NULL when out of memory. */
struct hot *hot_new(size_t slots, size_t max_bytes, size_t max_one);

/* Frees the cache and everything it holds; accepts NULL; sets *hp to
 * NULL. */
void hot_destroy(struct hot **hp);

/* Keeps a copy of message `m`: its seq, id, sender, type, case_ref,
 * accepted_ms, expires_ms, notify_delivered, recipients and agreements
 * (the names count towards the bytes), and its envelope and receipt
 * (m->envelope_len and m->receipt_len bytes).  The entry replaces the one
 * in m->seq's slot and, where its bytes go, the oldest others; a message
 * over max_one is not kept (but still takes its slot's old entry out).
 * Only committed messages may be put: a slot must never answer for bytes
 * that were not stored (a failed commit's sequence numbers are skipped,
 * never given out again). */
void hot_put(struct hot *h, const struct store_msg *m);

/* The entry of message `seq`, or NULL when it is not kept.  Borrowed:
 * valid until the next hot_put or hot_destroy. */
const struct hot_msg *hot_get(const struct hot *h, uint64_t seq);

/* Envelope, receipt and name bytes held (for tests). */
size_t hot_bytes(const struct hot *h);

/* Fills the metadata of `m` (not the envelope nor the receipt, which
 * stay NULL) from entry `x`, as store_get would. */
void hot_meta(const struct hot_msg *x, struct store_msg *m);

#endif
