/*
 * schakel_err: names and sentences for the error codes.  The table is the
 * only place a code's wording lives; it must never depend on peer input,
 * so a refusal can always be logged and sent back safely.
 */
#include "schakel_err.h"

#include <stddef.h>

struct s_errinfo {
	const char *name;
	const char *text;
	int retryable;
};

static const struct s_errinfo s_errs[] = {
    [SCHAKEL_OK] = {"OK", "success", 0},
    [SCHAKEL_E_MALFORMED] = {"MALFORMED",
	"the message is not valid schakel.v1 protobuf (truncated, trailing bytes, unknown or repeated field); fix the encoder",
	0},
    [SCHAKEL_E_TOO_LARGE] = {"TOO_LARGE",
	"the message or one of its fields exceeds its size limit; send a smaller payload or fewer recipients",
	0},
    [SCHAKEL_E_BAD_FIELD] = {"BAD_FIELD",
	"a header field is missing, has the wrong length or characters, or is out of order; fix the sender",
	0},
    [SCHAKEL_E_BAD_SIGNATURE] = {"BAD_SIGNATURE",
	"the Ed25519 signature does not verify with the signer's declared key; check the signing key file and the declared public key",
	0},
    [SCHAKEL_E_BAD_PROOF] = {"BAD_PROOF",
	"the Merkle inclusion proof does not lead to the signed root; the envelope was altered or built wrongly",
	0},
    [SCHAKEL_E_HASH_MISMATCH] = {"HASH_MISMATCH",
	"the ciphertext does not match the hash in the signed header; the payload was altered in transit",
	0},
    [SCHAKEL_E_NOT_RECIPIENT] = {"NOT_RECIPIENT",
	"this party is not a named recipient of the message and must not read it",
	0},
    [SCHAKEL_E_NO_SEALED_KEY] = {"NO_SEALED_KEY",
	"the envelope's sealed keys do not match its recipients one for one; the sender must seal the content key to every recipient",
	0},
    [SCHAKEL_E_UNSEAL_FAILED] = {"UNSEAL_FAILED",
	"the content key was not sealed to this party's X25519 key; check that the sender used the declared key",
	0},
    [SCHAKEL_E_DECRYPT_FAILED] = {"DECRYPT_FAILED",
	"the payload does not decrypt under the sealed content key; the message is corrupt and must not be used",
	0},
    [SCHAKEL_E_NO_MEMORY] = {"NO_MEMORY",
	"out of memory while handling this message; retry later", 1},
    [SCHAKEL_E_INTERNAL] = {"INTERNAL",
	"an internal error occurred; report it with the log lines around it",
	0},
    [SCHAKEL_E_BAD_ARGUMENT] = {"BAD_ARGUMENT",
	"the caller passed an invalid argument to the codec; this is a bug in the calling program",
	0},
    [SCHAKEL_E_UNKNOWN_PARTY] = {"UNKNOWN_PARTY",
	"the party is not declared in the broker's configuration; ask the administrator to add it",
	0},
    [SCHAKEL_E_FORGED_SENDER] = {"FORGED_SENDER",
	"the signed sender differs from the party this connection authenticated as; sign with your own party id",
	0},
    [SCHAKEL_E_DUPLICATE_ID] = {"DUPLICATE_ID",
	"a message with this id was already accepted; if it was yours, treat it as delivered, otherwise use fresh random ids",
	0},
    [SCHAKEL_E_STALE_TIMESTAMP] = {"STALE_TIMESTAMP",
	"the created time is outside the allowed clock skew; synchronise the clock (NTP) and build the message again",
	0},
    [SCHAKEL_E_EXPIRED] = {"EXPIRED",
	"the message expired before it could be accepted or delivered; send a new message if it is still needed",
	0},
    [SCHAKEL_E_BSN_AS_CASE] = {"BSN_AS_CASE",
	"the case reference is a BSN; use the chain's pseudonymous case reference instead",
	0},
    [SCHAKEL_E_UNKNOWN_TYPE] = {"UNKNOWN_TYPE",
	"the message type is not declared in the broker's configuration; check its name and version",
	0},
    [SCHAKEL_E_NO_ROUTE] = {"NO_ROUTE",
	"no route gives a recipient for this sender, type and case; ask the administrator for a route",
	0},
    [SCHAKEL_E_NO_AGREEMENT] = {"NO_AGREEMENT",
	"no agreement allows this sender to send this type for this purpose to a recipient; ask the administrator",
	0},
    [SCHAKEL_E_AGREEMENT_EXPIRED] = {"AGREEMENT_EXPIRED",
	"the agreement that covered this flow is not valid today; the parties must renew it",
	0},
    [SCHAKEL_E_CONSENT_MISSING] = {"CONSENT_MISSING",
	"the agreement requires the citizen's consent and the header carries no consent reference; record consent first",
	0},
    [SCHAKEL_E_ROUTE_CHANGED] = {"ROUTE_CHANGED",
	"the routing rules changed since the recipients were resolved; resolve again, seal for the new recipients and resubmit",
	1},
    [SCHAKEL_E_QUEUE_FULL] = {"QUEUE_FULL",
	"a recipient's queue is full; retry later with the same message id", 1},
    [SCHAKEL_E_STORE_FULL] = {"STORE_FULL",
	"the broker's store is full; retry later with the same message id and alert the administrator",
	1},
    [SCHAKEL_E_RATE_LIMITED] = {"RATE_LIMITED",
	"too many submissions from this party; slow down and retry with the same message id",
	1},
    [SCHAKEL_E_PROTOCOL] = {"PROTOCOL",
	"the command was unexpected here (no Hello yet, wrong protocol version, or a reply sent as a request); fix the client",
	0},
    [SCHAKEL_E_UNAVAILABLE] = {"UNAVAILABLE",
	"the broker is shutting down or not ready; reconnect and retry with the same message id",
	1},
    [SCHAKEL_E_AUDIT_FAILED] = {"AUDIT_FAILED",
	"the broker could not write its audit record, so it refused the message; retry later and alert the administrator",
	1},
    [SCHAKEL_E_DELIVERY_FAILED] = {"DELIVERY_FAILED",
	"the message was delivered too often without an acknowledgement and was dead-lettered; the recipient must fix its handling",
	0},
};

static const struct s_errinfo *
s_info(int err)
{
	if (err < 0 || (size_t)err >= sizeof s_errs / sizeof s_errs[0])
		return NULL;
	if (s_errs[err].name == NULL)
		return NULL;
	return &s_errs[err];
}

const char *
schakel_strerror(int err)
{
	const struct s_errinfo *i = s_info(err);

	return i != NULL ? i->text : "unknown error code; upgrade the client";
}

const char *
schakel_errname(int err)
{
	const struct s_errinfo *i = s_info(err);

	return i != NULL ? i->name : "UNKNOWN";
}

int
schakel_err_retryable(int err)
{
	const struct s_errinfo *i = s_info(err);

	return i != NULL && i->retryable;
}
