/*
 * merkle: batch signatures.  One Ed25519 signature covers the root of a
 * Merkle tree (BLAKE2b-256, RFC 6962 shape) of many items; each item
 * carries its own inclusion proof.  Senders sign envelopes this way, the
 * broker signs receipt groups.  docs/protocol.md has the byte-exact rules.
 */
#ifndef SCHAKEL_MERKLE_H
#define SCHAKEL_MERKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define MERKLE_HASH_LEN 32
#define MERKLE_SIG_LEN 64
#define MERKLE_PK_LEN 32
#define MERKLE_SK_LEN 64
#define MERKLE_MAX_LEAVES 65536
#define MERKLE_MAX_PROOF 16 /* log2(MERKLE_MAX_LEAVES) */

/* What a signature is for; part of the signed message, so a signature
 * for one purpose can never be replayed as the other. */
enum merkle_domain {
	MERKLE_DOMAIN_BATCH,   /* "schakel.v1 batch": a sender's envelopes */
	MERKLE_DOMAIN_RECEIPT, /* "schakel.v1 receipt": a broker's receipts */
};

/* The batch signature and one item's inclusion proof, as carried in
 * schakel.v1.BatchSignature. */
struct merkle_sig {
	uint8_t root[MERKLE_HASH_LEN];
	uint32_t leaf_index;
	uint32_t leaf_count;
	size_t proof_len;
	uint8_t proof[MERKLE_MAX_PROOF][MERKLE_HASH_LEN];
	uint8_t sig[MERKLE_SIG_LEN];
};

/* leaf = BLAKE2b-256(0x00 || data) */
void
merkle_leaf_hash(const uint8_t *data, size_t len, uint8_t out[MERKLE_HASH_LEN]);

/* inner = BLAKE2b-256(0x01 || left || right) */
void merkle_node_hash(const uint8_t left[MERKLE_HASH_LEN],
    const uint8_t right[MERKLE_HASH_LEN], uint8_t out[MERKLE_HASH_LEN]);

/* Number of proof hashes for leaf `index` of a tree of `count` leaves, or
 * (size_t)-1 when index >= count or count is 0 or too large. */
size_t merkle_proof_len(uint32_t index, uint32_t count);

/* A whole tree, kept so that every leaf's proof can be read out. */
struct merkle_tree;

/* Build the tree over `count` leaf hashes (copied).  Returns an owned
 * tree, or NULL when count is 0, above MERKLE_MAX_LEAVES, or memory ran
 * out. */
struct merkle_tree *
merkle_tree_new(const uint8_t (*leaves)[MERKLE_HASH_LEN], size_t count);
void merkle_tree_destroy(struct merkle_tree **t);
const uint8_t *merkle_tree_root(const struct merkle_tree *t);

/* Fill s->root, leaf_index, leaf_count, proof_len and proof for leaf
 * `index` (the signature is left as it is).  Returns SCHAKEL_OK or
 * SCHAKEL_E_BAD_ARGUMENT. */
int merkle_tree_proof(
    const struct merkle_tree *t, uint32_t index, struct merkle_sig *s);

/* Recompute the root from `leaf` and the proof in `s` (RFC 9162 2.1.3.2)
 * and compare it with s->root.  Returns SCHAKEL_OK or SCHAKEL_E_BAD_PROOF
 * (wrong proof length, index out of range, or another root). */
int merkle_proof_check(
    const uint8_t leaf[MERKLE_HASH_LEN], const struct merkle_sig *s);

/* The exact bytes that are signed: label || 0x00 || u32be(leaf_count) ||
 * root, where label is "schakel.v1 batch" or "schakel.v1 receipt".
 * Writes at most MERKLE_SIGMSG_MAX bytes; returns the length. */
#define MERKLE_SIGMSG_MAX 64
size_t merkle_sig_message(enum merkle_domain d, uint32_t leaf_count,
    const uint8_t root[MERKLE_HASH_LEN], uint8_t out[MERKLE_SIGMSG_MAX]);

/* Sign s->root and s->leaf_count into s->sig with an Ed25519 secret key
 * (libsodium's 64-byte form).  Returns SCHAKEL_OK or SCHAKEL_E_INTERNAL. */
int merkle_sign(enum merkle_domain d, const uint8_t sk[MERKLE_SK_LEN],
    struct merkle_sig *s);

/* A bounded cache of (key, domain, count, root, signature) tuples whose
 * signature verified, so a batch root is checked once.  Not thread-safe:
 * use one per thread.  Slots are direct-mapped; a collision only evicts. */
struct merkle_cache;

/* Returns an owned cache with `slots` entries (rounded up to a power of
 * two, at least 1), or NULL when memory ran out. */
struct merkle_cache *merkle_cache_new(size_t slots);
void merkle_cache_destroy(struct merkle_cache **c);
/* Hits and misses since creation, for metrics and the benchmark. */
void merkle_cache_stats(
    const struct merkle_cache *c, uint64_t *hits, uint64_t *misses);

/* merkle_proof_check, the same verdict, with the path of the last leaf
 * proven into the same root kept in `cache` (when not NULL): the levels
 * a leaf shares with it are compared, not hashed again. */
int merkle_proof_check_cached(const uint8_t leaf[MERKLE_HASH_LEN],
    const struct merkle_sig *s, struct merkle_cache *cache);

/* Check s->sig over s->root and s->leaf_count with public key `pk`,
 * consulting and filling `cache` when it is not NULL.  Does not look at
 * the proof.  Returns SCHAKEL_OK or SCHAKEL_E_BAD_SIGNATURE. */
int merkle_sig_check(enum merkle_domain d, const uint8_t pk[MERKLE_PK_LEN],
    const struct merkle_sig *s, struct merkle_cache *cache);

#endif
