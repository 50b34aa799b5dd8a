/*
 * libschakel: the C client of the schakel broker (protocol schakel.v1,
 * docs/protocol.md).  It resolves recipients, seals and signs messages,
 * submits them and verifies the broker's receipts; it receives, verifies,
 * opens and acknowledges messages for one party.
 *
 * Threads: a client object is used by one thread at a time (one client per
 * thread is the simple rule); different clients may be used from different
 * threads at once.  The library keeps no global state of its own.
 *
 * Errors: every function returning int returns an enum schakel_err value
 * (schakel_err.h, installed beside this header): 0 is success.
 * schakel_client_error() gives the sentence of the last failure.
 */
#ifndef SCHAKEL_H
#define SCHAKEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "schakel_err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SCHAKEL_KEY_LEN 32
#define SCHAKEL_ID_LEN 16
#define SCHAKEL_NAME_MAX 64   /* party ids, types, case refs, purposes */
#define SCHAKEL_REGION_MAX 16 /* CBS code, e.g. GM0344 */
#define SCHAKEL_MAX_RECIPIENTS 32
#define SCHAKEL_MAX_ATTRS 16
#define SCHAKEL_ATTR_KEY_MAX 32
#define SCHAKEL_ATTR_VALUE_MAX 128
#define SCHAKEL_ERROR_MAX 512  /* longest sentence, with its NUL */
#define SCHAKEL_SEEN_IDS 65536 /* message ids remembered by receive */

/* How to reach the broker and who this client is.  Everything is borrowed
 * during schakel_connect only (copied or read then). */
struct schakel_client_opts {
	const char *endpoint; /* e.g. "tcp://broker.example:7450" */
	/* The broker's keys, pinned from the client's own configuration: the
	 * CurveZMQ server key and the Ed25519 key that signs receipts. */
	uint8_t broker_transport_key[SCHAKEL_KEY_LEN];
	uint8_t broker_sign_key[SCHAKEL_KEY_LEN];
	const char *party_id; /* this party, e.g. "gemeente-utrecht" */
	const char *key_file; /* its secret key file (mode 0600 or stricter) */
	/* Folder of <party>.pub files: the pinned public keys of the other
	 * parties.  Receiving needs the sender's file (an unknown sender is
	 * refused); sending cross-checks the broker's box keys against it
	 * when a file exists.  NULL: no pinned peers (sending only). */
	const char *peers_dir;
	int timeout_ms; /* per request before resending; 0: 10000 */
	/* A file in which receive keeps the ids of the messages it handed
	 * to the application (the last SCHAKEL_SEEN_IDS; created with mode
	 * 0600), so that a message delivered again because its Ack was lost
	 * is recognised after a restart or a crash too, not only by this
	 * client.  Each id is written and synced before its Ack (one
	 * fdatasync a message); when that fails (a full disk) the message
	 * is acknowledged all the same, since not to would have it
	 * delivered again for certain, and schakel_client_error says so
	 * after schakel_receive.  One client at a time: a second client
	 * with the same file is refused.  NULL or "": in memory only. */
	const char *seen_file;
};

/* A connected client. */
struct schakel_client;

/* One routing attribute (keys strictly ascending, as in the header). */
struct schakel_attr {
	const char *key;
	const char *value;
};

/* A message to send.  Everything is borrowed for the duration of the call.
 * Optional strings may be NULL or "". */
struct schakel_message {
	const char *type;        /* e.g. "shv.melding.v1" */
	const char *case_ref;    /* the chain's pseudonym, never a BSN */
	const char *purpose;     /* the purpose the agreement covers */
	const char *region;      /* optional */
	const char *consent_ref; /* optional; required by some agreements */
	const struct schakel_attr *attrs;
	size_t n_attrs;
	bool urgent;
	bool notify_delivered; /* ask for a delivered notice per recipient */
	uint64_t ttl_ms;       /* 0: the type's default from the broker */
	const uint8_t *payload;
	size_t payload_len;
};

/* One recipient as the broker's rules give it. */
struct schakel_recipient {
	char party_id[SCHAKEL_NAME_MAX + 1];
	uint8_t
	    box_key[SCHAKEL_KEY_LEN]; /* X25519, content keys sealed to it */
	uint8_t sign_key[SCHAKEL_KEY_LEN]; /* Ed25519 */
	char agreement_id[SCHAKEL_NAME_MAX + 1];
};

struct schakel_resolved {
	size_t n_recipients; /* ascending by party id */
	struct schakel_recipient recipients[SCHAKEL_MAX_RECIPIENTS];
	uint64_t config_version;
	uint64_t default_ttl_ms;
};

/* The broker's verified receipt for one accepted message.  `signed_receipt`
 * holds the SignedReceipt bytes exactly as received (the proof to keep); it
 * is owned by the receipt: release it with schakel_receipt_clear. */
struct schakel_receipt {
	uint8_t message_id[SCHAKEL_ID_LEN];
	uint64_t accepted_ms;
	uint64_t store_seq;
	size_t n_recipients;
	char recipients[SCHAKEL_MAX_RECIPIENTS][SCHAKEL_NAME_MAX + 1];
	char agreement_ids[SCHAKEL_MAX_RECIPIENTS][SCHAKEL_NAME_MAX + 1];
	uint8_t *signed_receipt;
	size_t signed_receipt_len;
};

/* A received, verified and decrypted message, handed to the handler.
 * Everything is borrowed and valid only during the handler call. */
struct schakel_delivery {
	uint8_t message_id[SCHAKEL_ID_LEN];
	const char *sender;
	const char *type;
	const char *case_ref;
	const char *purpose;
	const char *region;      /* "" when absent */
	const char *consent_ref; /* "" when absent */
	const struct schakel_attr *attrs;
	size_t n_attrs;
	uint64_t created_ms;
	uint64_t expires_ms;
	uint64_t accepted_ms; /* from the broker's verified receipt */
	bool urgent;
	uint32_t delivery_count; /* 1 on the first delivery */
	const uint8_t *payload;
	size_t payload_len;
};

enum schakel_notice_kind {
	SCHAKEL_NOTICE_DELIVERED = 1, /* a recipient acknowledged it */
	SCHAKEL_NOTICE_NON_DELIVERY =
	    2, /* expired or refused before delivery */
	SCHAKEL_NOTICE_DEAD_LETTERED = 3, /* delivered too often, or refused */
};

/* What became of a message this party sent.  Borrowed during the call. */
struct schakel_notice {
	enum schakel_notice_kind kind;
	uint8_t message_id[SCHAKEL_ID_LEN];
	const char *recipient;
	uint64_t time_ms;
	int code; /* enum schakel_err: why, for non-delivery and dead letters */
};

/* Called for each new message.  Return 0 when the application has taken
 * responsibility for it (the library then acknowledges it); any other
 * value has it delivered again later.  Handlers must not call functions
 * on the same client (use another client to send from a handler), but
 * for schakel_receive_stop. */
typedef int (*schakel_delivery_fn)(void *arg, const struct schakel_delivery *d);
typedef void (*schakel_notice_fn)(void *arg, const struct schakel_notice *n);

/* Connects to the broker (CurveZMQ with the pinned server key), says Hello
 * and checks the Welcome (protocol, and the broker's signing key against
 * the pinned one).  On success *out is an owned client.  On failure *out
 * is NULL and err (errlen bytes, may be NULL) holds the sentence.  Returns
 * SCHAKEL_OK; SCHAKEL_E_BAD_ARGUMENT (options, key file);
 * SCHAKEL_E_UNKNOWN_PARTY (the broker does not admit this party's
 * transport key, or refuses the Hello); SCHAKEL_E_BAD_SIGNATURE (the
 * broker's signing key is not the pinned one); SCHAKEL_E_UNAVAILABLE (no
 * answer in time); SCHAKEL_E_NO_MEMORY; or the broker's refusal code. */
int schakel_connect(const struct schakel_client_opts *opts,
    struct schakel_client **out, char *err, size_t errlen);

/* Closes the connection, wipes the secret keys and frees; accepts NULL
 * and sets *cp to NULL.  Messages received but not yet acknowledged are
 * delivered again by the broker. */
void schakel_close(struct schakel_client **cp);

/* The sentence of the last failure on this client (printable ASCII,
 * clipped to SCHAKEL_ERROR_MAX - 1 characters; "" when none).  Valid until
 * the next call on the client. */
const char *schakel_client_error(const struct schakel_client *c);

/* Asks the broker which recipients the rules give for `m` (its payload is
 * not looked at).  Returns SCHAKEL_OK with *out filled in, or the
 * refusal (SCHAKEL_E_NO_ROUTE, SCHAKEL_E_NO_AGREEMENT,
 * SCHAKEL_E_CONSENT_MISSING, ...). */
int schakel_resolve(struct schakel_client *c, const struct schakel_message *m,
    struct schakel_resolved *out);

/* Sends one message: resolve, seal for exactly those recipients, sign,
 * submit, and verify the receipt against the pinned broker key.  When the
 * rules changed in between (ROUTE_CHANGED) it resolves again and builds a
 * new message, at most three times.  When the broker does not answer, it
 * reconnects and submits the same bytes again (idempotent by message id).
 * On success *out (may be NULL) holds the receipt; release it with
 * schakel_receipt_clear.  Returns SCHAKEL_OK or the refusal code. */
int schakel_send(struct schakel_client *c, const struct schakel_message *m,
    struct schakel_receipt *out);

/* Sends n messages (1 to 1024) under one batch signature, each submitted
 * on its own and pipelined; the recipients of up to 64 messages are asked
 * for at once, and requests go to the broker in bundles (several in one
 * ZeroMQ message) when it reads them.  results[i] is the code for msgs[i]
 * and, when it is SCHAKEL_OK, receipts[i] (receipts may be NULL) its
 * receipt.
 * Returns SCHAKEL_OK when every message was accepted, otherwise the first
 * failing message's code (the sentence names its index). */
int
schakel_send_batch(struct schakel_client *c, const struct schakel_message *msgs,
    size_t n, struct schakel_receipt *receipts, int *results);

/* Releases the receipt's signed bytes; accepts NULL. */
void schakel_receipt_clear(struct schakel_receipt *r);

/* Receives until `max` messages (0: no limit) have been handed to
 * `on_message` or `timeout_ms` has passed (negative: no limit).  Each
 * message's sender signature (key from peers_dir), the receipt (pinned
 * broker key) and that this party was named are checked before it is
 * opened; a message that fails is refused with its code and never handed
 * over.  A message already handed over (the last SCHAKEL_SEEN_IDS ids,
 * kept in opts.seen_file when given, else in memory) is acknowledged
 * without calling the handler again.
 * Notices go to the notice handler (schakel_set_notice_handler), if any,
 * and are acknowledged.  Acknowledgements are sent together: before the
 * next handler call when the last one took 100 ms or more, else within
 * about 100 ms, and before schakel_receive returns; one not sent (the
 * process ended first) means the message comes again, which the seen ids
 * filter.  *handed (may be NULL) is set to the number of messages
 * handed over.  A lost connection is made again, with backoff,
 * until the timeout (without one: for as long as it takes; a broker that
 * cannot be reached at the start is waited for the same way), a wait
 * for the broker's answer to Hello taking a second at least.  Returns
 * SCHAKEL_OK (also on timeout); SCHAKEL_E_UNAVAILABLE when the connection
 * was lost and not made again before the timeout; SCHAKEL_E_UNKNOWN_PARTY
 * or SCHAKEL_E_BAD_SIGNATURE when the broker no longer admits this party
 * or no longer has the pinned key. */
int schakel_receive(struct schakel_client *c, size_t max, int timeout_ms,
    schakel_delivery_fn on_message, void *arg, size_t *handed);

/* Called from a message or notice handler: schakel_receive returns
 * after this handler call (SCHAKEL_OK, the acknowledgements sent), and
 * takes no further message.  For a handler that cannot go on (its
 * output failed, its database went away): each message handed to it
 * after that would be refused and come again, its delivery count spent,
 * until dead-lettered.  A notice whose handler calls it is not
 * acknowledged: it comes again later.  A later schakel_receive starts
 * afresh. */
void schakel_receive_stop(struct schakel_client *c);

/* Sets the function called for notices during schakel_receive (NULL:
 * notices are acknowledged and dropped). */
void schakel_set_notice_handler(
    struct schakel_client *c, schakel_notice_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif
