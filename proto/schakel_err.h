/*
 * schakel_err: the one error enum of schakel.  The codec, the broker and
 * the client library all return these codes, and the broker sends them to
 * peers in Refusal.code, so the numbers are part of the protocol and never
 * change (docs/protocol.md lists them; proto/schakel.proto mirrors them).
 */
#ifndef SCHAKEL_ERR_H
#define SCHAKEL_ERR_H

enum schakel_err {
	SCHAKEL_OK = 0,
	/* Codec: the bytes themselves are wrong. */
	SCHAKEL_E_MALFORMED = 1,
	SCHAKEL_E_TOO_LARGE = 2,
	SCHAKEL_E_BAD_FIELD = 3,
	SCHAKEL_E_BAD_SIGNATURE = 4,
	SCHAKEL_E_BAD_PROOF = 5,
	SCHAKEL_E_HASH_MISMATCH = 6,
	SCHAKEL_E_NOT_RECIPIENT = 7,
	SCHAKEL_E_NO_SEALED_KEY = 8,
	SCHAKEL_E_UNSEAL_FAILED = 9,
	SCHAKEL_E_DECRYPT_FAILED = 10,
	SCHAKEL_E_NO_MEMORY = 11,
	SCHAKEL_E_INTERNAL = 12,
	SCHAKEL_E_BAD_ARGUMENT = 13,
	/* Broker: the message is well formed but refused. */
	SCHAKEL_E_UNKNOWN_PARTY = 20,
	SCHAKEL_E_FORGED_SENDER = 21,
	SCHAKEL_E_DUPLICATE_ID = 22,
	SCHAKEL_E_STALE_TIMESTAMP = 23,
	SCHAKEL_E_EXPIRED = 24,
	SCHAKEL_E_BSN_AS_CASE = 25,
	SCHAKEL_E_UNKNOWN_TYPE = 26,
	SCHAKEL_E_NO_ROUTE = 27,
	SCHAKEL_E_NO_AGREEMENT = 28,
	SCHAKEL_E_AGREEMENT_EXPIRED = 29,
	SCHAKEL_E_CONSENT_MISSING = 30,
	SCHAKEL_E_ROUTE_CHANGED = 31,
	SCHAKEL_E_QUEUE_FULL = 32,
	SCHAKEL_E_STORE_FULL = 33,
	SCHAKEL_E_RATE_LIMITED = 34,
	SCHAKEL_E_PROTOCOL = 35,
	SCHAKEL_E_UNAVAILABLE = 36,
	SCHAKEL_E_AUDIT_FAILED = 37,
	SCHAKEL_E_DELIVERY_FAILED = 38,
};

/* A sentence a person can act on, for any value (unknown values get a
 * generic sentence).  The string is static; never NULL. */
const char *schakel_strerror(int err);

/* The code's stable name as in schakel.proto ("BAD_SIGNATURE"), or
 * "UNKNOWN" for a value that is not defined. */
const char *schakel_errname(int err);

/* True when a client may retry the same request later unchanged
 * (QUEUE_FULL, STORE_FULL, RATE_LIMITED, UNAVAILABLE, ...). */
int schakel_err_retryable(int err);

#endif
