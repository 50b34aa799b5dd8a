/*
 * store: everything the broker keeps across restarts, behind one
 * interface so that a second backend (PostgreSQL, for several broker
 * nodes) can be added without touching routing or delivery.  The default
 * backend is LMDB (store_lmdb.c): one data directory, crash-safe.
 *
 * What is kept:
 *   messages     by store sequence: the envelope exactly as submitted, its
 *                signed receipt, and routing metadata (never a payload in
 *                clear: the broker cannot read one)
 *   queues       per recipient, in acceptance order: the messages it has
 *                not acknowledged yet, each with its delivery count
 *   dedup        message id -> sequence, for the dedup window
 *   dead letters per recipient: messages that expired or failed too often
 *   participants case reference -> parties that sent or were routed a
 *                message on that case, until the retention of its
 *                agreements has passed since its last message
 *   audit        the hash-chained audit records, in order
 *   meta         the last sequence numbers, the audit chain head and the
 *                anchor of its archived part
 *
 * Writes happen in a transaction; store_commit makes them durable (fsync)
 * before it returns, so a caller answers a client only after that.  Many
 * messages share one transaction: that is the group commit.  One writer at
 * a time (the broker's writer thread, or its main thread while the writer
 * is idle: a transaction is used only by the thread that began it);
 * readers may run at any time, from any
 * thread, also while the writer's transaction is open (they do not see
 * its uncommitted writes).
 *
 * A write call that refuses without changing anything (STORE_NOT_FOUND,
 * STORE_EXISTS, and STORE_FULL from store_put's space check) leaves the
 * transaction usable: the caller refuses that one request and goes on.
 * STORE_ERROR, or STORE_FULL met while writing, spoils the transaction:
 * later calls return the same code and store_commit stores nothing and
 * returns it, so every request in the group is refused.
 */
#ifndef SCHAKEL_STORE_H
#define SCHAKEL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ID_LEN 16
#define STORE_HASH_LEN 32
#define STORE_NAME_MAX 64 /* party ids, types, case references */
#define STORE_MAX_RECIPIENTS 32

/* Results of store calls.  STORE_FULL: the map or the disk is full; the
 * caller refuses new submissions with SCHAKEL_E_STORE_FULL and keeps
 * delivering.  STORE_NOT_FOUND: no such record.  STORE_ERROR: anything
 * else (the message in store_error() says what). */
enum store_rc {
	STORE_OK = 0,
	STORE_NOT_FOUND = 1,
	STORE_FULL = 2,
	STORE_ERROR = 3,
	STORE_EXISTS = 4, /* store_put: the message id is already stored */
};

struct store_opts {
	const char *backend; /* "lmdb" (also when NULL) */
	const char *dir;     /* created (mode 0700) when missing; refused
	                      * when group or others may write to it */
	uint64_t map_size;   /* bytes; the most the store may grow to */
	bool no_sync;        /* tests only: skip fsync (never in production) */
	/* Upgrading a store of layout 2 (which did not record how long a
	 * case is kept): its cases are kept until this time (unix ms). */
	uint64_t upgrade_case_until_ms;
};

/* One accepted message, as stored.  For store_put the pointers are
 * borrowed for the call; store_get points them at owned copies. */
struct store_msg {
	uint64_t seq;
	uint8_t id[STORE_ID_LEN];
	char sender[STORE_NAME_MAX + 1];
	char type[STORE_NAME_MAX + 1];
	char case_ref[STORE_NAME_MAX + 1];
	uint64_t accepted_ms;
	uint64_t expires_ms;
	bool notify_delivered;
	size_t n_recipients;
	char recipients[STORE_MAX_RECIPIENTS][STORE_NAME_MAX + 1];
	char agreements[STORE_MAX_RECIPIENTS][STORE_NAME_MAX + 1];
	const uint8_t *envelope;
	size_t envelope_len;
	const uint8_t *receipt;
	size_t receipt_len;
	/* For store_put: keep the case's participants at least until then
	 * (they go with store_forget_cases); 0 records none (notices). */
	uint64_t case_until_ms;
	/* For store_put: it may take half of the room kept back for
	 * acknowledgements and dead letters (a notice about one). */
	bool from_reserve;
};

/* One entry of a recipient's queue. */
struct store_entry {
	uint64_t seq;
	uint32_t deliveries; /* how often it was handed out so far */
};

/* One dead letter (metadata only). */
struct store_dead {
	uint64_t seq;
	char recipient[STORE_NAME_MAX + 1];
	uint32_t code; /* SCHAKEL_E_* why it died */
	uint64_t time_ms;
};

struct store;
struct store_txn;

/* Opens (creating if needed) the store in opts->dir.  Returns an owned
 * store, or NULL with a sentence in err. */
struct store *
store_open(const struct store_opts *opts, char *err, size_t errlen);

/* Closes; accepts NULL; sets *sp to NULL.  No transaction may be open. */
void store_close(struct store **sp);

/* The sentence of the last failure of a call on `s` made by the calling
 * thread (for logs; never contains payload).  Valid until that thread's
 * next failing store call. */
const char *store_error(const struct store *s);

/* ---- writing: one transaction at a time ---- */

int store_begin(struct store *s, struct store_txn **out);

/* Makes everything in the transaction durable, then frees it.  On
 * STORE_FULL or STORE_ERROR nothing of it was stored. */
int store_commit(struct store_txn **tp);

/* Drops the transaction; accepts NULL; sets *tp to NULL. */
void store_abort(struct store_txn **tp);

/* The next message sequence number (1, 2, ...), reserved in this
 * transaction.  Numbers are persisted by store_commit; an aborted or
 * failed transaction gives its numbers out again. */
uint64_t store_next_seq(struct store_txn *t);

/* Reserves every sequence number up to `seq` in this transaction, for a
 * caller that numbers messages itself (the broker records a group's
 * messages before the transaction that stores them begins).  Numbers it
 * never stores are skipped, not given out again. */
void store_take_seq(struct store_txn *t, uint64_t seq);

/* The highest message sequence number stored when the store was opened
 * (where a caller that numbers messages itself starts). */
uint64_t store_last_seq_open(const struct store *s);

/* Stores a message under m->seq (reserved with store_next_seq in this
 * transaction): the message, an entry at the tail of each recipient's
 * queue, the dedup id (kept until `dedup_until_ms`), and, unless
 * m->case_until_ms is 0, the sender and recipients as participants of the
 * case, kept at least until m->case_until_ms.  STORE_EXISTS when the id is
 * stored already (also earlier in this transaction); STORE_FULL when the
 * store has no room left for new messages (room is kept back so that
 * acknowledgements and dead-lettering go on working); STORE_ERROR for an
 * invalid message (empty or over-long names, a recipient twice).  On
 * these three nothing of the message was written. */
int store_put(
    struct store_txn *t, const struct store_msg *m, uint64_t dedup_until_ms);

/* Records that `recipient` was handed message `seq` once more; the new
 * count is written to *deliveries.  (The broker records a first delivery
 * only when it fails, so a count can be one short after a crash.) */
int store_delivered(struct store_txn *t, const char *recipient, uint64_t seq,
    uint32_t *deliveries);

/* Removes `seq` from `recipient`'s queue (an acknowledgement).  When no
 * recipient holds the message any more, the message itself is removed.
 * STORE_NOT_FOUND when it was not queued for that recipient. */
int store_ack(struct store_txn *t, const char *recipient, uint64_t seq);

/* store_ack, only when the stored message has the id `want_id` (unless
 * NULL: then any); STORE_NOT_FOUND, with nothing changed, when it has
 * another or is not stored.  Its metadata (no envelope, no receipt) goes
 * to *out when `out` is not NULL (zeroed if the record was gone or
 * damaged). */
int store_ack_id(struct store_txn *t, const char *recipient, uint64_t seq,
    const uint8_t want_id[STORE_ID_LEN], struct store_msg *out);

/* store_ack of m->seq for a caller that read the message already: its
 * seq, id, expires_ms and recipients (which never change once stored)
 * are taken from `m` instead of being read again. */
int store_ack_known(
    struct store_txn *t, const char *recipient, const struct store_msg *m);

/* Moves `seq` from `recipient`'s queue to its dead letters with `code`
 * at `time_ms`, to be kept until `keep_until_ms` (see
 * store_take_dead_due).  The message is kept while a dead letter refers
 * to it.  STORE_NOT_FOUND when it is not queued for that recipient. */
int store_dead_letter(struct store_txn *t, const char *recipient, uint64_t seq,
    uint32_t code, uint64_t time_ms, uint64_t keep_until_ms);

/* Puts a dead letter back in the recipient's queue with a delivery count
 * of 0 (schakelctl deadletters redeliver).  Queues are ordered by
 * sequence, so it goes back in its place and the order per case holds;
 * a delivery loop paging with `after` sees it when it starts from the
 * head again. */
int store_redeliver(struct store_txn *t, const char *recipient, uint64_t seq);

/* Removes a dead letter for good (schakelctl deadletters purge), and the
 * message when nothing refers to it any more. */
int store_purge(struct store_txn *t, const char *recipient, uint64_t seq);

/* Forgets dedup ids whose window ended before `now_ms`; at most `max` in
 * one call; *removed tells how many. */
int store_expire_dedup(
    struct store_txn *t, uint64_t now_ms, size_t max, size_t *removed);

/* Takes (and forgets) up to `max` messages whose expiry time is at or
 * before `now_ms`, oldest expiry first, into seqs[]; *n tells how many.
 * Only messages still stored are indexed: store_ack and store_purge drop
 * a message's entry when they remove the message.  The caller decides
 * what becomes of each (its queue entries stay as they are). */
int store_take_expired(struct store_txn *t, uint64_t now_ms, uint64_t *seqs,
    size_t max, size_t *n);

/* Has store_take_expired hand out message `seq` (again) at `at_ms`: for
 * a message that was in flight when it was taken. */
int store_expire_later(struct store_txn *t, uint64_t at_ms, uint64_t seq);

/* Takes (and forgets) up to `max` dead letters whose keep_until_ms is at
 * or before `now_ms`, earliest first, into out[]; *n tells how many.  A
 * dead letter redelivered since is not among them (nor, when it was
 * dead-lettered again, before its new time).  The caller removes them
 * (store_purge). */
int store_take_dead_due(struct store_txn *t, uint64_t now_ms,
    struct store_dead *out, size_t max, size_t *n);

/* Forgets the participants of cases whose keep-until time (the latest
 * case_until_ms of their messages) is at or before `now_ms`: looks at up
 * to `look` cases, from where the last call stopped (round and round the
 * cases in reference order, so no index is kept per message), and stops
 * early after `max`.  Their references go to refs[]; *n tells how many. */
int store_forget_cases(struct store_txn *t, uint64_t now_ms, size_t look,
    char (*refs)[STORE_NAME_MAX + 1], size_t max, size_t *n);

/* Appends an audit record (already serialized, with its chain hash in it)
 * under the next audit sequence, and makes `head` the chain head. */
int store_audit_append(struct store_txn *t, const uint8_t *rec, size_t len,
    const uint8_t head[STORE_HASH_LEN], uint64_t *audit_seq);

/* Removes the audit records up to sequence `upto`, which the caller has
 * archived, and keeps `anchor`, the hash of record `upto`: the first
 * record left names it as its prev (store_audit_anchor).  An `upto` at
 * or below the anchor kept already changes nothing. */
int store_audit_prune(
    struct store_txn *t, uint64_t upto, const uint8_t anchor[STORE_HASH_LEN]);

/* The layout the store was upgraded from when it was opened; 0 when it
 * was not upgraded. */
uint64_t store_upgraded_from(const struct store *s);

/* ---- reading: each call reads a consistent snapshot ---- */

/* Looks up a message id: STORE_OK with *seq, or STORE_NOT_FOUND. */
int store_seen(struct store *s, const uint8_t id[STORE_ID_LEN], uint64_t *seq);

/* The signed receipt of an accepted message id, kept with the id for the
 * dedup window (after the message itself may be gone).  Returns STORE_OK
 * with an owned copy in *receipt (free() it) and its length in *len, or
 * STORE_NOT_FOUND. */
int store_receipt(struct store *s, const uint8_t id[STORE_ID_LEN],
    uint8_t **receipt, size_t *len);

/* Reads message `seq` into *m.  Its envelope and receipt are returned as
 * owned copies in *envelope and *receipt (free() them); m->envelope and
 * m->receipt point at those copies.  With envelope and receipt both NULL
 * only the metadata is read: m->envelope and m->receipt are NULL,
 * envelope_len is set, receipt_len is 0 (the receipt is kept apart and
 * not looked up), and nothing is copied (acks and listings use this). */
int store_get(struct store *s, uint64_t seq, struct store_msg *m,
    uint8_t **envelope, uint8_t **receipt);

/* Fills up to `max` queue entries of `recipient` with sequence > `after`,
 * in order; *n says how many.  The delivery loop pages through a queue
 * with this. */
int store_queue(struct store *s, const char *recipient, uint64_t after,
    struct store_entry *out, size_t max, size_t *n);

/* The number of messages queued for `recipient`. */
int store_queue_depth(struct store *s, const char *recipient, uint64_t *depth);

/* Fills up to `max` party ids (each STORE_NAME_MAX + 1 bytes) that take
 * part in case `case_ref`; *n says how many. */
int store_participants(struct store *s, const char *case_ref,
    char (*out)[STORE_NAME_MAX + 1], size_t max, size_t *n);

/* Fills up to `max` dead letters of `recipient` (all recipients when
 * NULL) with sequence > `after`, in sequence order; *n says how many.
 * With NULL a page never ends inside the dead letters of one sequence
 * (unless max is smaller than their number), so paging with the last
 * sequence as `after` skips nothing. */
int store_dead_letters(struct store *s, const char *recipient, uint64_t after,
    struct store_dead *out, size_t max, size_t *n);

/* Calls fn for each audit record with sequence > `after`, in order,
 * until fn returns non-zero; *head gets the stored chain head. */
int store_audit_each(struct store *s, uint64_t after,
    int (*fn)(void *arg, uint64_t seq, const uint8_t *rec, size_t len),
    void *arg, uint8_t head[STORE_HASH_LEN]);

/* The last audit record removed by store_audit_prune and its hash; 0
 * and zeros while none was. */
int store_audit_anchor(
    struct store *s, uint64_t *seq, uint8_t hash[STORE_HASH_LEN]);

/* What the sweeps would find now, read without writing, so that a
 * sweep with nothing to do needs no write transaction: flags of
 * STORE_DUE_EXPIRED (store_take_expired would take a message),
 * STORE_DUE_DEAD (store_take_dead_due a dead letter), STORE_DUE_DEDUP
 * (store_expire_dedup an id) and STORE_DUE_CASES (store_forget_cases a
 * case among the next `look` it walks; when none is, the walk's place
 * moves on past them, as store_forget_cases would have moved it: call
 * this from the thread that calls store_forget_cases). */
#define STORE_DUE_EXPIRED 1u
#define STORE_DUE_DEAD 2u
#define STORE_DUE_DEDUP 4u
#define STORE_DUE_CASES 8u
int store_due(struct store *s, uint64_t now_ms, size_t look, unsigned *due);

/* Bytes used (the pages in use: the file's high-water mark less the free
 * pages), the map size, and the bytes in use at which new messages are
 * refused with STORE_FULL (the size less what is kept back for
 * deliveries), for status, metrics and the broker's warnings. */
int
store_usage(struct store *s, uint64_t *used, uint64_t *size, uint64_t *limit);

#endif
