/*
 * env: the signed, end-to-end encrypted envelope.  build seals and signs
 * one message or a batch under one signature; verify lets the broker check
 * bounds, signature, proof and ciphertext hash without any box key; open
 * lets a named recipient verify and decrypt.  docs/protocol.md gives the
 * byte-exact construction.
 */
#ifndef SCHAKEL_ENV_H
#define SCHAKEL_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "merkle.h"

#define ENV_ID_LEN 16
#define ENV_HASH_LEN 32
#define ENV_BOX_PK_LEN 32
#define ENV_BOX_SK_LEN 32
#define ENV_CONTENT_KEY_LEN 32
#define ENV_NONCE_LEN 24
#define ENV_TAG_LEN 16
#define ENV_SEALED_LEN 80 /* 32 ephemeral pk + 16 MAC + 32 content key */

/* Hard ceilings of the codec; the broker's configured limits may be lower
 * (env_decode's max_len). */
#define ENV_MAX_RECIPIENTS 32
#define ENV_MAX_NAME_LEN 64 /* party ids, type, case ref, purpose, consent */
#define ENV_MAX_REGION_LEN 16
#define ENV_MAX_ATTRS 16
#define ENV_MAX_ATTR_KEY_LEN 32
#define ENV_MAX_ATTR_VALUE_LEN 128
#define ENV_MAX_HEADER_LEN 8192
#define ENV_MAX_PAYLOAD_LEN (16u * 1024 * 1024)
#define ENV_MAX_CIPHERTEXT_LEN \
	(ENV_MAX_PAYLOAD_LEN + ENV_NONCE_LEN + ENV_TAG_LEN)
#define ENV_MAX_LEN (ENV_MAX_CIPHERTEXT_LEN + 65536)

struct env_attr {
	char key[ENV_MAX_ATTR_KEY_LEN + 1];
	char value[ENV_MAX_ATTR_VALUE_LEN + 1];
};

/* schakel.v1.Header as plain C.  Strings are NUL-terminated and empty
 * when absent. */
struct env_header {
	uint8_t id[ENV_ID_LEN];
	char sender[ENV_MAX_NAME_LEN + 1];
	size_t n_recipients;
	char recipients[ENV_MAX_RECIPIENTS][ENV_MAX_NAME_LEN + 1];
	char type[ENV_MAX_NAME_LEN + 1];
	char case_ref[ENV_MAX_NAME_LEN + 1];
	char purpose[ENV_MAX_NAME_LEN + 1];
	uint64_t created_ms;
	uint64_t expires_ms;
	bool urgent;
	char region[ENV_MAX_REGION_LEN + 1];
	size_t n_attrs;
	struct env_attr attrs[ENV_MAX_ATTRS];
	uint8_t ciphertext_hash[ENV_HASH_LEN];
	uint8_t key_commitment[ENV_HASH_LEN];
	char consent_ref[ENV_MAX_NAME_LEN + 1];
	bool notify_delivered;
};

struct env_recipient {
	char party_id[ENV_MAX_NAME_LEN + 1];
	uint8_t box_pk[ENV_BOX_PK_LEN];
};

/* Randomness fixed by a test: the content key, the AEAD nonce and, per
 * recipient in ascending party-id order, the 32-byte seed of the sealed
 * box's ephemeral key (crypto_box_seed_keypair).  Production code passes
 * NULL and gets fresh randomness. */
struct env_fixed {
	uint8_t content_key[ENV_CONTENT_KEY_LEN];
	uint8_t nonce[ENV_NONCE_LEN];
	uint8_t eph_seed[ENV_MAX_RECIPIENTS][32];
};

/* One message to build.  The caller fills hdr (except recipients,
 * ciphertext_hash and key_commitment, which env_build sets), the
 * recipients with their box keys in any order, and the payload (borrowed).
 * Use env_new_id for hdr.id. */
struct env_draft {
	struct env_header hdr;
	size_t n_recipients;
	struct env_recipient recipients[ENV_MAX_RECIPIENTS];
	const uint8_t *payload;
	size_t payload_len;
	const struct env_fixed *fixed; /* NULL outside tests */
};

/* Fills id with a fresh UUIDv7: the time in milliseconds (big-endian,
 * bytes 0-5), version and variant bits, and 74 random bits. */
void env_new_id(uint8_t id[ENV_ID_LEN]);

/* Seal and sign `n` drafts (1..MERKLE_MAX_LEAVES) under one batch
 * signature by `sender_sk` (Ed25519, 64 bytes).  On success out[0..n)
 * hold owned envelopes (free each with codec_buf_clear) and each draft's
 * hdr holds the header as signed.  On failure nothing is allocated.
 * Returns SCHAKEL_OK, SCHAKEL_E_BAD_FIELD / SCHAKEL_E_TOO_LARGE for an
 * invalid draft, SCHAKEL_E_BAD_ARGUMENT, SCHAKEL_E_NO_MEMORY. */
int env_build(struct env_draft *drafts, size_t n,
    const uint8_t sender_sk[MERKLE_SK_LEN], struct codec_buf *out);

/* A decoded envelope: syntax and bounds checked, nothing verified. */
struct env;

/* Decode buf[0..len), refusing anything over max_len bytes (0 means
 * ENV_MAX_LEN) before allocating.  The header is parsed and its fields
 * checked.  On success *out is an owned envelope that *borrows* buf: the
 * header bytes and ciphertext are not copied, so buf must stay valid and
 * unchanged until env_destroy.  Returns SCHAKEL_OK,
 * SCHAKEL_E_TOO_LARGE, SCHAKEL_E_MALFORMED, SCHAKEL_E_BAD_FIELD,
 * SCHAKEL_E_NO_SEALED_KEY, SCHAKEL_E_NO_MEMORY. */
int
env_decode(const uint8_t *buf, size_t len, size_t max_len, struct env **out);
void env_destroy(struct env **e);

/* An envelope to decode into later, with env_decode_into: so that it is
 * allocated (and freed) by one thread and filled by another (the broker
 * thread makes it, a verifier thread decodes).  Nothing of it may be read
 * before env_decode_into succeeded; env_destroy takes it at any time.
 * NULL when out of memory. */
struct env *env_new(void);

/* Makes `e` (from env_new, decoded into or not) again as env_new returns
 * it, for the next envelope: a thread that decodes many can keep a few
 * instead of a malloc and a free of some 10 KiB each. */
void env_reuse(struct env *e);

/* env_decode into `e` (from env_new; what it held before is forgotten).
 * On failure `e` holds no envelope (env_destroy still frees it). */
int
env_decode_into(struct env *e, const uint8_t *buf, size_t len, size_t max_len);

/* The sender named in an encoded envelope's header, without decoding the
 * rest (the broker picks the sender's key with it, and leaves the decode
 * to its verifier threads): SCHAKEL_OK with the party id in `sender`,
 * or a code of env_decode.  SCHAKEL_OK does not mean that env_decode
 * will accept the envelope; when env_decode does, it finds this sender. */
int env_peek_sender(const uint8_t *buf, size_t len, size_t max_len,
    char sender[ENV_MAX_NAME_LEN + 1]);

/* Borrowed views, valid while the envelope lives. */
const struct env_header *env_header(const struct env *e);
const uint8_t *env_header_bytes(const struct env *e, size_t *len);
const struct merkle_sig *env_sig(const struct env *e);
/* BLAKE2b-256(header_bytes): what receipts name the message by. */
void env_header_hash(const struct env *e, uint8_t out[ENV_HASH_LEN]);
/* Length of the plaintext payload. */
size_t env_payload_len(const struct env *e);

/* Broker-side check, without any box key: the proof leads from this
 * header to the root, the root is signed by `sender_pk`, and the
 * ciphertext matches the header's hash.  `cache` may be NULL.  Returns
 * SCHAKEL_OK, SCHAKEL_E_BAD_PROOF, SCHAKEL_E_BAD_SIGNATURE or
 * SCHAKEL_E_HASH_MISMATCH. */
int env_verify(const struct env *e, const uint8_t sender_pk[MERKLE_PK_LEN],
    struct merkle_cache *cache);

/* Recipient side: env_verify, then check that `reader` is a named
 * recipient, unseal its content key with its box key pair and decrypt.
 * On success *payload is owned by the caller (free it) and holds
 * *payload_len bytes (an empty payload gives a non-NULL pointer).
 * Returns SCHAKEL_OK, an env_verify code, SCHAKEL_E_NOT_RECIPIENT,
 * SCHAKEL_E_UNSEAL_FAILED, SCHAKEL_E_DECRYPT_FAILED, SCHAKEL_E_NO_MEMORY. */
int env_open(const struct env *e, const uint8_t sender_pk[MERKLE_PK_LEN],
    const char *reader, const uint8_t reader_pk[ENV_BOX_PK_LEN],
    const uint8_t reader_sk[ENV_BOX_SK_LEN], struct merkle_cache *cache,
    uint8_t **payload, size_t *payload_len);

/* True when s is nine digits passing the BSN eleven-test, which a case
 * reference must never be. */
bool env_is_bsn(const char *s);

/* True when s (NUL-terminated) is a valid case or consent reference:
 * at most ENV_MAX_NAME_LEN of A-Z a-z 0-9 . _ - :, the first a letter or
 * digit (docs/protocol.md section 3); "" is one. */
bool env_is_ref(const char *s);

#endif
