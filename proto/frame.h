/*
 * frame: the broker commands and replies (schakel.v1.Frame) as plain C,
 * one Frame per ZeroMQ message.  The daemon and libschakel encode and
 * decode them here and never see protobuf-c.  docs/protocol.md §10 says
 * what each one means and when it may be sent.
 */
#ifndef SCHAKEL_FRAME_H
#define SCHAKEL_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "env.h"

#define FRAME_PROTOCOL "schakel.v1"
#define FRAME_MAX_PROTOCOL_LEN 16
#define FRAME_MAX_TEXT_LEN 256 /* Hello.software, Refusal.reason */
#define FRAME_KEY_LEN 32
#define FRAME_SIG_LEN 64
/* The codec's ceiling for one encoded frame (a Deliver: the largest
 * envelope, its receipt and the fields around them). */
#define FRAME_MAX_LEN (ENV_MAX_LEN + 32768)

/* The body's field number in schakel.v1.Frame. */
enum frame_kind {
	FRAME_NONE = 0,
	FRAME_HELLO = 10,
	FRAME_WELCOME = 11,
	FRAME_RESOLVE = 12,
	FRAME_RESOLVED = 13,
	FRAME_SUBMIT = 14,
	FRAME_ACCEPTED = 15,
	FRAME_REFUSAL = 16,
	FRAME_CREDIT = 17,
	FRAME_DELIVER = 18,
	FRAME_ACK = 19,
	FRAME_NACK = 20,
	FRAME_PING = 21,
	FRAME_PONG = 22,
	FRAME_NOTICE = 23,
	FRAME_BUNDLE = 24,
};

/* A Bundle carries 1 to FRAME_BUNDLE_MAX frames (docs/protocol.md 10.9). */
#define FRAME_BUNDLE_MAX 256

enum frame_notice_kind {
	FRAME_NOTICE_UNSPECIFIED = 0,
	FRAME_NOTICE_DELIVERED = 1,
	FRAME_NOTICE_NON_DELIVERY = 2,
	FRAME_NOTICE_DEAD_LETTERED = 3,
};

struct frame_hello {
	char protocol[FRAME_MAX_PROTOCOL_LEN + 1];
	char party_id[ENV_MAX_NAME_LEN + 1];
	char software[FRAME_MAX_TEXT_LEN + 1];
	bool bundles; /* the client reads Bundle frames */
};

struct frame_welcome {
	char protocol[FRAME_MAX_PROTOCOL_LEN + 1];
	char broker_id[ENV_MAX_NAME_LEN + 1];
	uint8_t broker_sign_key[FRAME_KEY_LEN];
	uint64_t server_time_ms;
	uint32_t heartbeat_ms;
	uint32_t max_message_bytes;
	uint32_t max_credit;
	bool bundles; /* the broker reads Bundle frames */
};

struct frame_resolve {
	char type[ENV_MAX_NAME_LEN + 1];
	char case_ref[ENV_MAX_NAME_LEN + 1];
	char purpose[ENV_MAX_NAME_LEN + 1];
	char region[ENV_MAX_REGION_LEN + 1];
	size_t n_attrs;
	struct env_attr attrs[ENV_MAX_ATTRS];
	bool urgent;
};

struct frame_recipient {
	char party_id[ENV_MAX_NAME_LEN + 1];
	uint8_t box_key[FRAME_KEY_LEN];
	uint8_t sign_key[FRAME_KEY_LEN];
	char agreement_id[ENV_MAX_NAME_LEN + 1];
};

struct frame_resolved {
	size_t n_recipients;
	struct frame_recipient recipients[ENV_MAX_RECIPIENTS];
	uint64_t config_version;
	uint64_t default_ttl_ms;
};

/* Borrowed bytes: on encode the caller's, on decode the frame's own. */
struct frame_bytes {
	const uint8_t *data;
	size_t len;
};

struct frame_refusal {
	uint32_t code; /* enum schakel_err */
	char reason[FRAME_MAX_TEXT_LEN + 1];
	bool has_message_id;
	uint8_t message_id[ENV_ID_LEN];
};

struct frame_deliver {
	uint64_t store_seq;
	uint32_t delivery_count;
	struct frame_bytes envelope; /* a serialized Envelope */
	struct frame_bytes receipt;  /* a serialized SignedReceipt */
};

/* Ack and Nack (code is 0 in an Ack). */
struct frame_ack {
	uint64_t store_seq;
	uint8_t message_id[ENV_ID_LEN];
	uint32_t code;
};

struct frame_notice {
	enum frame_notice_kind kind;
	uint8_t message_id[ENV_ID_LEN];
	char recipient[ENV_MAX_NAME_LEN + 1];
	uint64_t time_ms;
	uint32_t code;
	uint64_t store_seq;
	uint8_t signature[FRAME_SIG_LEN]; /* see frame_notice_sign */
};

struct frame {
	uint64_t corr_id;
	enum frame_kind kind;
	union {
		struct frame_hello hello;
		struct frame_welcome welcome;
		struct frame_resolve resolve;
		struct frame_resolved resolved;
		struct frame_bytes submit;   /* a serialized Envelope */
		struct frame_bytes accepted; /* a serialized SignedReceipt */
		struct frame_refusal refusal;
		uint32_t credit;
		struct frame_deliver deliver;
		struct frame_ack ack; /* FRAME_ACK and FRAME_NACK */
		uint64_t ping_ms;     /* FRAME_PING and FRAME_PONG */
		struct frame_notice notice;
		/* The Bundle message's bytes: on decode borrowed from the
		 * caller's input (not copied), so valid as long as it is;
		 * read them with frame_bundle_next. */
		struct frame_bytes bundle;
	} u;
	void *owner; /* set by frame_decode; released by frame_clear */
};

/* Encode `f` into an owned buffer.  Fields are checked as the decoder
 * would check them.  Returns SCHAKEL_OK, SCHAKEL_E_BAD_FIELD,
 * SCHAKEL_E_TOO_LARGE, SCHAKEL_E_BAD_ARGUMENT or SCHAKEL_E_NO_MEMORY. */
int frame_encode(const struct frame *f, struct codec_buf *out);

/* Decode buf[0..len), refusing more than max_len bytes (0 means the codec
 * ceiling) before allocating.  On success *f holds the frame; byte fields
 * point into memory the frame owns until frame_clear(f).  On failure
 * nothing is held.  Returns SCHAKEL_OK, SCHAKEL_E_TOO_LARGE,
 * SCHAKEL_E_MALFORMED (including no body or two bodies),
 * SCHAKEL_E_BAD_FIELD or SCHAKEL_E_NO_MEMORY. */
int
frame_decode(const uint8_t *buf, size_t len, size_t max_len, struct frame *f);

/* Release what frame_decode allocated; safe on a zeroed or cleared frame. */
void frame_clear(struct frame *f);

/*
 * Bundles: several frames sent as one ZeroMQ message, so that CurveZMQ
 * and libzmq's per-message work is done once for all of them.  Frames
 * are added encoded; frame_bundle_finish gives the bytes to send: a
 * Frame whose body is the Bundle, or the frame itself when there is only
 * one (a bundle of one would be bytes for nothing).
 */
struct frame_bundle {
	uint8_t *data; /* FRAME_BUNDLE_HEAD bytes kept free for the head */
	size_t len;    /* bytes used, the head room included */
	size_t cap;
	size_t count; /* frames added */
	size_t first; /* the first frame's offset and length */
	size_t first_len;
};
#define FRAME_BUNDLE_HEAD 16
#define FRAME_BUNDLE_KEEP (256 * 1024) /* memory kept across bundles */

/* The size of the finished message once a frame of `len` bytes is added
 * (to compare with the peer's limit before adding it). */
size_t frame_bundle_size_with(const struct frame_bundle *b, size_t len);

/* Adds an encoded frame (not itself a bundle).  Returns SCHAKEL_OK,
 * SCHAKEL_E_TOO_LARGE (FRAME_BUNDLE_MAX frames already) or
 * SCHAKEL_E_NO_MEMORY. */
int frame_bundle_add_raw(struct frame_bundle *b, const uint8_t *p, size_t len);

/* The checks of frame_encode (the fields' syntax and bounds) without
 * encoding: SCHAKEL_OK or SCHAKEL_E_BAD_FIELD. */
int frame_check(const struct frame *f);

/* The size frame_encode would give `f` when it is one of the per-message
 * kinds (Submit, Accepted, Deliver, Ack, Nack, Credit, Ping, Pong,
 * Refusal) and passes frame_encode's checks; SIZE_MAX otherwise. */
size_t frame_encoded_size(const struct frame *f);

/* Encodes `f` and adds it (a per-message kind is encoded in place, with
 * no copy): the codes of frame_encode and of frame_bundle_add_raw;
 * SCHAKEL_E_BAD_ARGUMENT for a bundle.  Nothing is added on failure. */
int frame_bundle_add(struct frame_bundle *b, const struct frame *f);

/* frame_bundle_add for a frame whose frame_encoded_size `n` the caller
 * has (not SIZE_MAX): it is not checked again. */
int
frame_bundle_add_sized(struct frame_bundle *b, const struct frame *f, size_t n);

/* The message to send: valid until the bundle is changed.  Returns
 * false when nothing was added. */
bool
frame_bundle_finish(struct frame_bundle *b, const uint8_t **out, size_t *len);

/* Empties the bundle, keeping up to FRAME_BUNDLE_KEEP bytes of memory
 * for the next one. */
void frame_bundle_reset(struct frame_bundle *b);

/* Frees the bundle's memory; safe on a zeroed or freed bundle. */
void frame_bundle_free(struct frame_bundle *b);

/* Whether a message looks like a bundle (its first field is the Bundle
 * body), to decode it as one; frame_decode has the last word. */
bool frame_is_bundle(const uint8_t *p, size_t len);

/* The next frame of a decoded bundle (f->u.bundle), from *off (start at
 * 0): returns true with its bytes in *inner, false at the end.  Decode
 * each with frame_decode; one that is itself a bundle is MALFORMED. */
bool frame_bundle_next(
    const struct frame_bytes *bundle, size_t *off, struct frame_bytes *inner);

/* Signs a notice with the broker's Ed25519 secret key: the signature
 * covers "schakel-notice-v1" and a NUL, then kind (1 byte), message_id
 * (16), the recipient's length (1) and bytes, time_ms (8), code (4) and
 * store_seq (8), integers big-endian (docs/protocol.md 10.7). */
void frame_notice_sign(struct frame_notice *n, const uint8_t sk[64]);

/* Checks a notice's signature against the broker's signing key:
 * SCHAKEL_OK or SCHAKEL_E_BAD_SIGNATURE. */
int frame_notice_verify(
    const struct frame_notice *n, const uint8_t pk[FRAME_KEY_LEN]);

/* Fill a Refusal frame for `code` with the code's standard sentence. */
void frame_refusal(
    struct frame *f, uint64_t corr_id, int code, const uint8_t *message_id);

#endif
