/*
 * audit: the records of the tamper-evident audit log.  Every decision
 * (accepted, refused with its reason, delivered, expired, dead-lettered,
 * ...) becomes one record; each record holds the hash of the one before,
 * so changing or removing a record breaks the chain.  A record names the
 * event, the time, the parties, the message type, the case reference,
 * the purpose, the agreements and the outcome (NEN 7513 in spirit), and
 * never any content.
 *
 * A record is one line of text, so that an export is readable as it is:
 *   v1 prev=<64 hex> t=<unix ms> ev=<event> seq=<n> id=<32 hex>
 *   from=<party> to=<party>,<party> type=<type> case=<ref>
 *   purpose=<text> agr=<id>,<id> code=<n>
 * Fields that do not apply are left out; values are percent-encoded
 * outside [A-Za-z0-9._:-].  The chain head is BLAKE2b-256 of the last
 * record's bytes; `prev` of the first record is all zeros.
 */
#ifndef SCHAKEL_AUDIT_H
#define SCHAKEL_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_HASH_LEN 32
#define AUDIT_ID_LEN 16
#define AUDIT_NAME_MAX 64
#define AUDIT_MAX_PARTIES 32
#define AUDIT_RECORD_MAX 8192

enum audit_event_kind {
	AUDIT_ACCEPTED = 1,
	AUDIT_REFUSED,
	AUDIT_DELIVERED,     /* handed to a recipient (count in `count`) */
	AUDIT_ACKNOWLEDGED,  /* the recipient took it */
	AUDIT_EXPIRED,       /* not delivered before it expired */
	AUDIT_DEAD_LETTERED, /* too many deliveries */
	AUDIT_REDELIVERED,   /* an administrator put a dead letter back */
	AUDIT_PURGED,        /* an administrator removed a dead letter */
	AUDIT_CONNECTED,
	AUDIT_DISCONNECTED,
	AUDIT_CONFIG_LOADED,
	AUDIT_RETENTION_ENDED, /* a dead letter removed: retention ended */
	AUDIT_CASE_FORGOTTEN,  /* a case's participants removed: the same */
};

struct audit_event {
	enum audit_event_kind kind;
	uint64_t time_ms;
	uint64_t seq; /* store sequence; 0 when none */
	bool has_id;
	uint8_t id[AUDIT_ID_LEN];
	char from[AUDIT_NAME_MAX + 1];
	size_t n_to;
	char to[AUDIT_MAX_PARTIES][AUDIT_NAME_MAX + 1];
	char type[AUDIT_NAME_MAX + 1];
	char case_ref[AUDIT_NAME_MAX + 1];
	char purpose[AUDIT_NAME_MAX + 1];
	size_t n_agreements;
	char agreements[AUDIT_MAX_PARTIES][AUDIT_NAME_MAX + 1];
	uint32_t code;  /* SCHAKEL_E_* for refusals and failures */
	uint32_t count; /* delivery count */
};

/* Starts an event of `kind` at `time_ms`, everything else empty, without
 * zeroing the names in `to` and `agreements` (4 KiB, read only up to
 * n_to and n_agreements): for the events of every message. */
void audit_event_init(
    struct audit_event *ev, enum audit_event_kind kind, uint64_t time_ms);

/* The event's name as written in records ("accepted", ...). */
const char *audit_kind_name(enum audit_event_kind kind);

/* Writes the record for `ev` after the record whose hash is `prev` into
 * out (AUDIT_RECORD_MAX bytes).  Returns its length, or 0 when a field
 * is too long for a record. */
size_t audit_encode(const struct audit_event *ev,
    const uint8_t prev[AUDIT_HASH_LEN], char *out);
/* audit_encode into `max` bytes (AUDIT_RECORD_MAX when more): 0 also
 * when the record and its NUL do not fit. */
size_t audit_encode_in(const struct audit_event *ev,
    const uint8_t prev[AUDIT_HASH_LEN], char *out, size_t max);

/* Writes `prev` into a record that audit_encode wrote (with any prev):
 * a record can be encoded before the record it follows is known, and
 * chained later (the broker encodes, its writer thread chains). */
void audit_set_prev(char *rec, size_t len, const uint8_t prev[AUDIT_HASH_LEN]);

/* The chain hash of a record: BLAKE2b-256 of its bytes. */
void audit_hash(const char *rec, size_t len, uint8_t out[AUDIT_HASH_LEN]);

/* Parses a record.  Returns 0 with *ev and prev filled in, or -1 when it
 * is not a well-formed record. */
int audit_decode(const char *rec, size_t len, struct audit_event *ev,
    uint8_t prev[AUDIT_HASH_LEN]);

/* Walks a chain one record at a time.  Start with a zeroed struct. */
struct audit_verifier {
	uint8_t head[AUDIT_HASH_LEN];
	uint64_t records;
	uint64_t first_bad; /* 1-based index of the first broken record */
};

/* Feeds the next record; returns 0 while the chain holds, -1 from the
 * first record that does not decode or whose prev is not the hash of the
 * record before it. */
int audit_verify_next(struct audit_verifier *v, const char *rec, size_t len);

#endif
