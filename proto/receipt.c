/*
 * receipt: the broker's signed receipts, one batch signature per commit
 * group.  It only encodes, signs and checks; deciding what was accepted
 * is the broker's business.
 */
#include "receipt.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pb.h"

/* A receipt names recipients in ascending order, with an agreement for
 * each, all in the syntax of party ids. */
static int
s_check(const struct receipt *r)
{
	if (r->n_recipients == 0 || r->n_recipients > ENV_MAX_RECIPIENTS)
		return SCHAKEL_E_BAD_FIELD;
	if (strnlen(r->sender, sizeof r->sender) == 0 ||
	    strnlen(r->sender, sizeof r->sender) >= sizeof r->sender)
		return SCHAKEL_E_BAD_FIELD;
	for (size_t i = 0; i < r->n_recipients; i++) {
		size_t a = strnlen(r->recipients[i], sizeof r->recipients[i]);
		size_t b =
		    strnlen(r->agreement_ids[i], sizeof r->agreement_ids[i]);

		if (a == 0 || a >= sizeof r->recipients[i] || b == 0 ||
		    b >= sizeof r->agreement_ids[i])
			return SCHAKEL_E_BAD_FIELD;
		if (i > 0 &&
		    strcmp(r->recipients[i - 1], r->recipients[i]) >= 0)
			return SCHAKEL_E_BAD_FIELD;
	}
	return SCHAKEL_OK;
}

int
receipt_body(const struct receipt *r, struct codec_buf *body,
    uint8_t leaf[MERKLE_HASH_LEN])
{
	int rc;

	if (r == NULL || body == NULL)
		return SCHAKEL_E_BAD_ARGUMENT;
	memset(body, 0, sizeof(*body));
	rc = s_check(r);
	if (rc == SCHAKEL_OK)
		rc = pb_receipt_encode(r, body);
	if (rc == SCHAKEL_OK && body->len > RECEIPT_MAX_LEN)
		rc = SCHAKEL_E_TOO_LARGE;
	if (rc == SCHAKEL_OK)
		merkle_leaf_hash(body->data, body->len, leaf);
	else
		codec_buf_clear(body);
	return rc;
}

int
receipt_sign(const struct codec_buf *bodies,
    const uint8_t (*leaves)[MERKLE_HASH_LEN], size_t n,
    const uint8_t broker_sk[MERKLE_SK_LEN], struct codec_buf *out)
{
	struct merkle_tree *tree;
	struct merkle_sig sig;
	size_t done = 0;
	int rc;

	if (bodies == NULL || leaves == NULL || out == NULL || n == 0 ||
	    n > MERKLE_MAX_LEAVES)
		return SCHAKEL_E_BAD_ARGUMENT;
	tree = merkle_tree_new(leaves, n);
	if (tree == NULL)
		return SCHAKEL_E_NO_MEMORY;
	merkle_tree_proof(tree, 0, &sig);
	rc = merkle_sign(MERKLE_DOMAIN_RECEIPT, broker_sk, &sig);
	for (; done < n && rc == SCHAKEL_OK; done++) {
		merkle_tree_proof(tree, (uint32_t)done, &sig);
		rc = pb_signed_receipt_encode(
		    bodies[done].data, bodies[done].len, &sig, &out[done]);
	}
	if (rc)
		while (done > 0)
			codec_buf_clear(&out[--done]);
	merkle_tree_destroy(&tree);
	return rc;
}

int
receipt_build(const struct receipt *r, size_t n,
    const uint8_t broker_sk[MERKLE_SK_LEN], struct codec_buf *out)
{
	struct codec_buf *bodies;
	uint8_t(*leaves)[MERKLE_HASH_LEN];
	int rc = SCHAKEL_OK;

	if (r == NULL || out == NULL || n == 0 || n > MERKLE_MAX_LEAVES)
		return SCHAKEL_E_BAD_ARGUMENT;
	bodies = calloc(n, sizeof *bodies);
	leaves = calloc(n, sizeof *leaves);
	if (bodies == NULL || leaves == NULL)
		rc = SCHAKEL_E_NO_MEMORY;
	for (size_t i = 0; i < n && rc == SCHAKEL_OK; i++)
		rc = receipt_body(&r[i], &bodies[i], leaves[i]);
	if (rc == SCHAKEL_OK)
		rc = receipt_sign(bodies,
		    (const uint8_t(*)[MERKLE_HASH_LEN])leaves, n, broker_sk,
		    out);
	for (size_t i = 0; bodies != NULL && i < n; i++)
		codec_buf_clear(&bodies[i]);
	free(bodies);
	free(leaves);
	return rc;
}

int
receipt_verify(const uint8_t *buf, size_t len,
    const uint8_t broker_pk[MERKLE_PK_LEN], struct merkle_cache *cache,
    struct receipt *out, struct merkle_sig *sig)
{
	uint8_t body[RECEIPT_MAX_LEN], leaf[MERKLE_HASH_LEN];
	struct merkle_sig s;
	size_t body_len = 0;
	int rc;

	if (buf == NULL && len > 0)
		return SCHAKEL_E_BAD_ARGUMENT;
	rc = pb_signed_receipt_decode(buf, len, body, &body_len, &s);
	if (rc == SCHAKEL_OK)
		rc = pb_receipt_decode(body, body_len, out);
	if (rc == SCHAKEL_OK)
		rc = s_check(out);
	if (rc)
		return rc;
	merkle_leaf_hash(body, body_len, leaf);
	rc = merkle_proof_check_cached(leaf, &s, cache);
	if (rc == SCHAKEL_OK)
		rc = merkle_sig_check(
		    MERKLE_DOMAIN_RECEIPT, broker_pk, &s, cache);
	if (rc == SCHAKEL_OK && sig != NULL)
		*sig = s;
	return rc;
}
