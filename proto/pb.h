/*
 * pb: turns plain C structs into schakel.v1 wire bytes and back, checking
 * every length and count before anything is allocated.  The only bridge to
 * the protobuf-c generated code.  Internal to the codec.
 */
#ifndef SCHAKEL_PB_H
#define SCHAKEL_PB_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "env.h"
#include "frame.h"
#include "merkle.h"
#include "receipt.h"

/* An Envelope's parts.  After pb_envelope_decode, header and ciphertext
 * point into the decoded buffer, which must outlive them. */
struct pb_envelope {
	const uint8_t *header;
	size_t header_len;
	struct merkle_sig sig;
	size_t n_keys;
	char key_recipient[ENV_MAX_RECIPIENTS][ENV_MAX_NAME_LEN + 1];
	uint8_t key_sealed[ENV_MAX_RECIPIENTS][ENV_SEALED_LEN];
	const uint8_t *ciphertext;
	size_t ciphertext_len;
};

/* Header: plain struct <-> bytes.  Encoding assumes a valid header;
 * decoding checks the wire format and lengths, not the field syntax (env.c
 * does that).  Decoding copies everything into *h and allocates nothing. */
int pb_header_encode(const struct env_header *h, struct codec_buf *out);
int pb_header_decode(const uint8_t *buf, size_t len, struct env_header *h);

/* Encoded size of a header; it does not depend on the hash values, so
 * it is known before the payload is encrypted. */
size_t pb_header_size(const struct env_header *h);

/* The sender field of the header inside an encoded Envelope, copied into
 * out (outlen bytes, NUL-terminated), walking only as far as it must:
 * the fields before the header, then the header's fields before its
 * sender.  Whatever it walks is checked as pb_envelope_decode checks it;
 * what follows is not looked at, so SCHAKEL_OK does not mean the envelope
 * decodes.  Returns SCHAKEL_OK, a code of wire_walk, or
 * SCHAKEL_E_BAD_FIELD when there is no header or no sender. */
int pb_peek_sender(const uint8_t *buf, size_t len, char *out, size_t outlen);

/* Envelope: the parts <-> bytes. */
int pb_envelope_encode(const struct pb_envelope *e, struct codec_buf *out);

/* The ciphertext is the envelope's last field, so an envelope is
 * prefix || ciphertext.  These let env_build encrypt straight into the
 * final buffer: the prefix size needs only lengths, counts and the
 * proof's shape (e->header and e->ciphertext may still be NULL), and the
 * prefix is written once everything is known.  pack returns SCHAKEL_OK or
 * SCHAKEL_E_INTERNAL when `size` is not the size the prefix has. */
size_t pb_envelope_prefix_size(const struct pb_envelope *e);
int
pb_envelope_pack_prefix(const struct pb_envelope *e, uint8_t *out, size_t size);
int pb_envelope_decode(const uint8_t *buf, size_t len, struct pb_envelope *e);
/* Forget the pointers into the decoded buffer; NULL-safe. */
void pb_release(struct pb_envelope *e);

/* Receipt: plain struct <-> bytes.  Encoding writes the bytes by hand,
 * without protobuf-c, into an owned out->data; its strings must end within
 * their arrays.  Returns SCHAKEL_OK, SCHAKEL_E_TOO_LARGE (more than
 * ENV_MAX_RECIPIENTS recipients) or SCHAKEL_E_NO_MEMORY. */
int pb_receipt_encode(const struct receipt *r, struct codec_buf *out);
int pb_receipt_decode(const uint8_t *buf, size_t len, struct receipt *r);
/* SignedReceipt: receipt bytes and signature <-> bytes.  Encoding is by
 * hand too and returns SCHAKEL_OK, SCHAKEL_E_TOO_LARGE (a proof longer
 * than MERKLE_MAX_PROOF or receipt bytes over RECEIPT_MAX_LEN) or
 * SCHAKEL_E_NO_MEMORY.  On decode the receipt bytes are copied to
 * receipt[0..*receipt_len), which has room for RECEIPT_MAX_LEN bytes. */
int pb_signed_receipt_encode(const uint8_t *receipt, size_t receipt_len,
    const struct merkle_sig *sig, struct codec_buf *out);
int pb_signed_receipt_decode(const uint8_t *buf, size_t len,
    uint8_t receipt[RECEIPT_MAX_LEN], size_t *receipt_len,
    struct merkle_sig *sig);

/* The same two encoders through protobuf-c.  These exist only so that
 * tests can check that both give the same bytes and results; nothing else
 * should call them. */
int pb_receipt_encode_pbc(const struct receipt *r, struct codec_buf *out);
int pb_signed_receipt_encode_pbc(const uint8_t *receipt, size_t receipt_len,
    const struct merkle_sig *sig, struct codec_buf *out);

/* Frame: plain struct <-> bytes.  Decoding clears *f first, checks the
 * wire format and lengths and sets f->owner to the memory the byte fields
 * point into (free it with free(); it may be NULL when there is nothing to
 * own); on failure *f is left zeroed.  frame.c checks the fields' syntax.
 * The per-message kinds (Submit, Accepted, Refusal, Credit, Deliver, Ack,
 * Nack, Ping, Pong) are encoded and decoded without protobuf-c. */
int pb_frame_encode(const struct frame *f, struct codec_buf *out);

/* For the per-message kinds pb_frame_encode writes by hand: the encoded
 * size of f (SIZE_MAX for another kind, or a field too large), and f
 * encoded into out[0..size), exactly as pb_frame_encode encodes it
 * (SCHAKEL_E_INTERNAL when size is not the size it has). */
size_t pb_frame_hot_size(const struct frame *f);
int pb_frame_hot_write(const struct frame *f, uint8_t *out, size_t size);

/* A Bundle frame (f->u.bundle holds the Bundle message's bytes). */
int pb_bundle_encode(const struct frame *f, struct codec_buf *out);

/* Writes the start of a Frame whose body is a Bundle of body_len bytes
 * (corr_id, then the body's key and length) into out (at most 32 bytes;
 * NULL only counts) and returns its length. */
size_t pb_bundle_head(size_t body_len, uint64_t corr_id, uint8_t *out);

/* Writes the key and length of a bytes field (at most 16 bytes; NULL
 * only counts); returns their length. */
size_t pb_bytes_field(uint32_t num, size_t len, uint8_t *out);
int pb_frame_decode(const uint8_t *buf, size_t len, struct frame *f);

/* The same through protobuf-c for every kind.  These exist for tests,
 * which check that both paths give the same bytes, results and frames;
 * nothing else should call them. */
int pb_frame_encode_pbc(const struct frame *f, struct codec_buf *out);
int pb_frame_decode_pbc(const uint8_t *buf, size_t len, struct frame *f);

#endif
