/*
 * receipt: the broker's signed proof that it accepted a message.  The
 * broker signs each commit group once (a Merkle root over its receipts);
 * each receipt carries its own proof and verifies alone.
 */
#ifndef SCHAKEL_RECEIPT_H
#define SCHAKEL_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "env.h"
#include "merkle.h"

#define RECEIPT_MAX_LEN 16384
/* The longest SignedReceipt (receipt, Merkle root, proof, signature, with
 * their tags and lengths): what Accepted and Deliver frames may carry. */
#define RECEIPT_SIGNED_MAX_LEN \
	(RECEIPT_MAX_LEN + MERKLE_HASH_LEN * (MERKLE_MAX_PROOF + 1) + \
	    MERKLE_SIG_LEN + 80)

/* schakel.v1.Receipt as plain C. */
struct receipt {
	uint8_t message_id[ENV_ID_LEN];
	uint64_t accepted_ms;
	size_t n_recipients;
	char recipients[ENV_MAX_RECIPIENTS][ENV_MAX_NAME_LEN + 1];
	/* agreement_ids[i] is the agreement that let recipients[i] get it */
	char agreement_ids[ENV_MAX_RECIPIENTS][ENV_MAX_NAME_LEN + 1];
	uint64_t store_seq;
	uint8_t header_hash[ENV_HASH_LEN];
	char sender[ENV_MAX_NAME_LEN + 1];
};

/* Sign `n` receipts (one commit group) with the broker's Ed25519 secret
 * key.  Recipients must already be in ascending order.  On success out[i]
 * holds the owned SignedReceipt for r[i].  Returns SCHAKEL_OK,
 * SCHAKEL_E_BAD_FIELD, SCHAKEL_E_BAD_ARGUMENT or SCHAKEL_E_NO_MEMORY. */
int receipt_build(const struct receipt *r, size_t n,
    const uint8_t broker_sk[MERKLE_SK_LEN], struct codec_buf *out);

/* receipt_build in two steps, for a signer that learns a group's receipts
 * one at a time (the broker, as it accepts messages): receipt_body checks
 * and encodes one receipt into *body (owned) and gives its Merkle leaf;
 * receipt_sign then signs the n of a group at once, bodies[i] with
 * leaves[i], out[i] as receipt_build's.  Both return as receipt_build
 * does (receipt_body also SCHAKEL_E_TOO_LARGE). */
int receipt_body(const struct receipt *r, struct codec_buf *body,
    uint8_t leaf[MERKLE_HASH_LEN]);
int receipt_sign(const struct codec_buf *bodies,
    const uint8_t (*leaves)[MERKLE_HASH_LEN], size_t n,
    const uint8_t broker_sk[MERKLE_SK_LEN], struct codec_buf *out);

/* Decode a SignedReceipt and check it against the broker's public key;
 * `cache` may be NULL.  On success *out holds the receipt and, when sig is
 * not NULL, *sig its batch signature.  Returns SCHAKEL_OK,
 * SCHAKEL_E_TOO_LARGE, SCHAKEL_E_MALFORMED, SCHAKEL_E_BAD_FIELD,
 * SCHAKEL_E_BAD_PROOF, SCHAKEL_E_BAD_SIGNATURE, SCHAKEL_E_NO_MEMORY. */
int receipt_verify(const uint8_t *buf, size_t len,
    const uint8_t broker_pk[MERKLE_PK_LEN], struct merkle_cache *cache,
    struct receipt *out, struct merkle_sig *sig);

#endif
