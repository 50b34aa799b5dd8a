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
};

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
};

struct frame_welcome {
	char protocol[FRAME_MAX_PROTOCOL_LEN + 1];
	char broker_id[ENV_MAX_NAME_LEN + 1];
	uint8_t broker_sign_key[FRAME_KEY_LEN];
	uint64_t server_time_ms;
	uint32_t heartbeat_ms;
	uint32_t max_message_bytes;
	uint32_t max_credit;
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
