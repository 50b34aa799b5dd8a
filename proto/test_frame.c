/*
 * test_frame: unit tests of the broker command codec: every command
 * round-trips, and frames with no body, two bodies, bad fields or
 * oversized contents are refused with their codes.  The per-message kinds,
 * which pb.c codes by hand, are held to the protobuf-c path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "frame.h"
#include "pb.h"
#include "receipt.h"
#include "schakel.pb-c.h"
#include "test_rand.h"

static int
s_setup(void **state)
{
	(void)state;
	return codec_init() == SCHAKEL_OK ? 0 : -1;
}

/* Encode, decode, and return the decoded frame (clear it after use). */
static void
s_roundtrip(const struct frame *in, struct frame *out)
{
	struct codec_buf b = {0};

	assert_int_equal(frame_encode(in, &b), SCHAKEL_OK);
	assert_int_equal(frame_decode(b.data, b.len, 0, out), SCHAKEL_OK);
	assert_int_equal(out->kind, in->kind);
	assert_int_equal(out->corr_id, in->corr_id);
	codec_buf_clear(&b);
}

static void
test_every_kind(void **state)
{
	struct frame f, g;
	uint8_t env[100], id[16];

	(void)state;
	memset(env, 0x5a, sizeof env);
	memset(id, 0x11, sizeof id);

	memset(&f, 0, sizeof f);
	f.corr_id = 1;
	f.kind = FRAME_HELLO;
	snprintf(f.u.hello.protocol, sizeof f.u.hello.protocol, FRAME_PROTOCOL);
	snprintf(f.u.hello.party_id, sizeof f.u.hello.party_id, "gm0344");
	snprintf(f.u.hello.software, sizeof f.u.hello.software, "test/1.0");
	s_roundtrip(&f, &g);
	assert_string_equal(g.u.hello.party_id, "gm0344");
	assert_string_equal(g.u.hello.protocol, "schakel.v1");
	assert_false(g.u.hello.bundles);
	frame_clear(&g);
	f.u.hello.bundles = true;
	s_roundtrip(&f, &g);
	assert_true(g.u.hello.bundles);
	frame_clear(&g);

	memset(&f, 0, sizeof f);
	f.corr_id = 1;
	f.kind = FRAME_WELCOME;
	snprintf(
	    f.u.welcome.protocol, sizeof f.u.welcome.protocol, "schakel.v1");
	snprintf(f.u.welcome.broker_id, sizeof f.u.welcome.broker_id, "broker");
	memset(f.u.welcome.broker_sign_key, 7, 32);
	f.u.welcome.server_time_ms = 1767258000000ull;
	f.u.welcome.heartbeat_ms = 5000;
	f.u.welcome.max_message_bytes = 1 << 20;
	f.u.welcome.max_credit = 1000;
	f.u.welcome.bundles = true;
	s_roundtrip(&f, &g);
	assert_memory_equal(
	    g.u.welcome.broker_sign_key, f.u.welcome.broker_sign_key, 32);
	assert_int_equal(g.u.welcome.max_credit, 1000);
	assert_true(g.u.welcome.bundles);
	frame_clear(&g);

	memset(&f, 0, sizeof f);
	f.corr_id = 2;
	f.kind = FRAME_RESOLVE;
	snprintf(f.u.resolve.type, 65, "shv.melding.v1");
	snprintf(f.u.resolve.case_ref, 65, "case:1");
	snprintf(f.u.resolve.purpose, 65, "wgs.intake");
	snprintf(f.u.resolve.region, 17, "GM0344");
	f.u.resolve.n_attrs = 1;
	snprintf(f.u.resolve.attrs[0].key, 33, "stage");
	snprintf(f.u.resolve.attrs[0].value, 129, "crisis");
	f.u.resolve.urgent = true;
	s_roundtrip(&f, &g);
	assert_string_equal(g.u.resolve.attrs[0].value, "crisis");
	assert_true(g.u.resolve.urgent);
	frame_clear(&g);

	memset(&f, 0, sizeof f);
	f.corr_id = 2;
	f.kind = FRAME_RESOLVED;
	f.u.resolved.n_recipients = 2;
	snprintf(f.u.resolved.recipients[0].party_id, 65, "a-party");
	snprintf(f.u.resolved.recipients[0].agreement_id, 65, "ovk-1");
	snprintf(f.u.resolved.recipients[1].party_id, 65, "b-party");
	snprintf(f.u.resolved.recipients[1].agreement_id, 65, "ovk-2");
	memset(f.u.resolved.recipients[1].box_key, 3, 32);
	f.u.resolved.config_version = 42;
	s_roundtrip(&f, &g);
	assert_int_equal(g.u.resolved.n_recipients, 2);
	assert_memory_equal(g.u.resolved.recipients[1].box_key,
	    f.u.resolved.recipients[1].box_key, 32);
	assert_int_equal(g.u.resolved.config_version, 42);
	frame_clear(&g);

	memset(&f, 0, sizeof f);
	f.corr_id = 3;
	f.kind = FRAME_SUBMIT;
	f.u.submit.data = env;
	f.u.submit.len = sizeof env;
	s_roundtrip(&f, &g);
	assert_int_equal(g.u.submit.len, sizeof env);
	assert_memory_equal(g.u.submit.data, env, sizeof env);
	frame_clear(&g);

	frame_refusal(&f, 3, SCHAKEL_E_ROUTE_CHANGED, id);
	s_roundtrip(&f, &g);
	assert_int_equal(g.u.refusal.code, SCHAKEL_E_ROUTE_CHANGED);
	assert_true(g.u.refusal.has_message_id);
	assert_string_equal(
	    g.u.refusal.reason, schakel_strerror(SCHAKEL_E_ROUTE_CHANGED));
	frame_clear(&g);

	memset(&f, 0, sizeof f);
	f.kind = FRAME_CREDIT;
	f.u.credit = 64;
	s_roundtrip(&f, &g);
	assert_int_equal(g.u.credit, 64);
	frame_clear(&g);

	memset(&f, 0, sizeof f);
	f.kind = FRAME_DELIVER;
	f.u.deliver.store_seq = 9;
	f.u.deliver.delivery_count = 2;
	f.u.deliver.envelope.data = env;
	f.u.deliver.envelope.len = sizeof env;
	f.u.deliver.receipt.data = env;
	f.u.deliver.receipt.len = 10;
	s_roundtrip(&f, &g);
	assert_int_equal(g.u.deliver.delivery_count, 2);
	assert_int_equal(g.u.deliver.receipt.len, 10);
	frame_clear(&g);

	memset(&f, 0, sizeof f);
	f.kind = FRAME_NACK;
	f.u.ack.store_seq = 9;
	memcpy(f.u.ack.message_id, id, 16);
	f.u.ack.code = SCHAKEL_E_DECRYPT_FAILED;
	s_roundtrip(&f, &g);
	assert_int_equal(g.u.ack.code, SCHAKEL_E_DECRYPT_FAILED);
	frame_clear(&g);
	f.kind = FRAME_ACK;
	s_roundtrip(&f, &g);
	assert_int_equal(g.u.ack.code, 0);
	assert_memory_equal(g.u.ack.message_id, id, 16);
	frame_clear(&g);

	memset(&f, 0, sizeof f);
	f.kind = FRAME_PING;
	s_roundtrip(&f, &g); /* an empty body is still a body */
	frame_clear(&g);
	f.kind = FRAME_PONG;
	f.u.ping_ms = 77;
	s_roundtrip(&f, &g);
	assert_int_equal(g.u.ping_ms, 77);
	frame_clear(&g);

	memset(&f, 0, sizeof f);
	f.kind = FRAME_NOTICE;
	f.u.notice.kind = FRAME_NOTICE_NON_DELIVERY;
	memcpy(f.u.notice.message_id, id, 16);
	snprintf(f.u.notice.recipient, 65, "rechtbank-mn");
	f.u.notice.code = SCHAKEL_E_EXPIRED;
	s_roundtrip(&f, &g);
	assert_int_equal(g.u.notice.kind, FRAME_NOTICE_NON_DELIVERY);
	assert_int_equal(g.u.notice.code, SCHAKEL_E_EXPIRED);
	frame_clear(&g);
	frame_clear(&g);
}

static void
test_accepted_receipt(void **state)
{
	uint8_t pk[32], sk[64];
	struct receipt r, got;
	struct codec_buf sr = {0}, b = {0};
	struct frame f, g;

	(void)state;
	crypto_sign_keypair(pk, sk);
	memset(&r, 0, sizeof r);
	randombytes_buf(r.message_id, 16);
	r.n_recipients = 1;
	snprintf(r.recipients[0], 65, "kredietbank-utrecht");
	snprintf(r.agreement_ids[0], 65, "ovk-1");
	snprintf(r.sender, 65, "gm0344");
	assert_int_equal(receipt_build(&r, 1, sk, &sr), 0);
	memset(&f, 0, sizeof f);
	f.kind = FRAME_ACCEPTED;
	f.corr_id = 5;
	f.u.accepted.data = sr.data;
	f.u.accepted.len = sr.len;
	assert_int_equal(frame_encode(&f, &b), 0);
	assert_int_equal(frame_decode(b.data, b.len, 0, &g), 0);
	assert_int_equal(receipt_verify(g.u.accepted.data, g.u.accepted.len, pk,
			     NULL, &got, NULL),
	    0);
	assert_memory_equal(got.message_id, r.message_id, 16);
	frame_clear(&g);
	codec_buf_clear(&b);
	codec_buf_clear(&sr);
}

static void
test_refused(void **state)
{
	/* corr_id only: no body */
	const uint8_t no_body[] = {0x08, 0x01};
	/* a Ping (field 21) and a Pong (field 22): two bodies */
	const uint8_t two[] = {0xaa, 0x01, 0x00, 0xb2, 0x01, 0x00};
	/* field 99 */
	const uint8_t unknown[] = {0x98, 0x06, 0x01};
	/* Ack with a 15-byte id */
	uint8_t short_id[] = {0x9a, 0x01, 0x11, 0x12, 0x0f, 1, 2, 3, 4, 5, 6, 7,
	    8, 9, 10, 11, 12, 13, 14, 15};
	struct frame f, g;
	struct codec_buf b = {0};

	(void)state;
	assert_int_equal(
	    frame_decode(no_body, sizeof no_body, 0, &g), SCHAKEL_E_MALFORMED);
	assert_null(g.owner);
	assert_int_equal(
	    frame_decode(two, sizeof two, 0, &g), SCHAKEL_E_MALFORMED);
	assert_int_equal(
	    frame_decode(unknown, sizeof unknown, 0, &g), SCHAKEL_E_MALFORMED);
	assert_int_equal(frame_decode(short_id, sizeof short_id, 0, &g),
	    SCHAKEL_E_BAD_FIELD);
	assert_null(g.owner);
	assert_int_equal(
	    frame_decode(two, sizeof two, 3, &g), SCHAKEL_E_TOO_LARGE);

	memset(&f, 0, sizeof f);
	f.kind = FRAME_HELLO;
	snprintf(f.u.hello.protocol, 17, "schakel.v1");
	snprintf(f.u.hello.party_id, 65, "GM0344"); /* not a name */
	assert_int_equal(frame_encode(&f, &b), SCHAKEL_E_BAD_FIELD);
	assert_null(b.data);

	memset(&f, 0, sizeof f);
	f.kind = FRAME_RESOLVED;
	f.u.resolved.n_recipients = 2;
	snprintf(f.u.resolved.recipients[0].party_id, 65, "b");
	snprintf(f.u.resolved.recipients[0].agreement_id, 65, "x");
	snprintf(f.u.resolved.recipients[1].party_id, 65, "a");
	snprintf(f.u.resolved.recipients[1].agreement_id, 65, "x");
	assert_int_equal(frame_encode(&f, &b), SCHAKEL_E_BAD_FIELD);

	memset(&f, 0, sizeof f);
	f.kind = FRAME_SUBMIT;
	assert_int_equal(frame_encode(&f, &b), SCHAKEL_E_BAD_FIELD);
	/* Nor is it written into a bundle. */
	assert_int_equal(frame_encoded_size(&f), SIZE_MAX);
	{
		struct frame_bundle fb = {0};
		const uint8_t *msg;
		size_t len;

		assert_int_equal(
		    frame_bundle_add(&fb, &f), SCHAKEL_E_BAD_FIELD);
		assert_false(frame_bundle_finish(&fb, &msg, &len));
		frame_bundle_free(&fb);
	}
	f.kind = FRAME_NONE;
	assert_int_equal(frame_encode(&f, &b), SCHAKEL_E_BAD_ARGUMENT);

	/* Truncating a valid frame anywhere is refused, never accepted. */
	memset(&f, 0, sizeof f);
	f.kind = FRAME_HELLO;
	f.corr_id = 300;
	snprintf(f.u.hello.protocol, 17, "schakel.v1");
	snprintf(f.u.hello.party_id, 65, "gm0344");
	assert_int_equal(frame_encode(&f, &b), 0);
	for (size_t n = 0; n < b.len; n++) {
		assert_int_not_equal(
		    frame_decode(b.data, n, 0, &g), SCHAKEL_OK);
		assert_null(g.owner);
	}
	codec_buf_clear(&b);
}

/* A notice's signature covers every field: it verifies with the
 * broker's key and fails when any field or the key differs; a Notice
 * without a 64-byte signature does not decode. */
static void
test_notice_signature(void **state)
{
	uint8_t pk[32], sk[64], pk2[32], sk2[64];
	struct frame f = {0}, g;
	struct frame_notice n;
	struct codec_buf buf = {0};

	(void)state;
	crypto_sign_keypair(pk, sk);
	crypto_sign_keypair(pk2, sk2);
	f.kind = FRAME_NOTICE;
	f.u.notice.kind = FRAME_NOTICE_DELIVERED;
	memset(f.u.notice.message_id, 0x42, 16);
	snprintf(f.u.notice.recipient, 65, "team-a");
	f.u.notice.time_ms = 1780000000000ull;
	f.u.notice.code = 0;
	f.u.notice.store_seq = 77;
	frame_notice_sign(&f.u.notice, sk);
	assert_int_equal(frame_notice_verify(&f.u.notice, pk), SCHAKEL_OK);
	assert_int_equal(
	    frame_notice_verify(&f.u.notice, pk2), SCHAKEL_E_BAD_SIGNATURE);
	/* Through the wire and back it still verifies. */
	s_roundtrip(&f, &g);
	assert_int_equal(frame_notice_verify(&g.u.notice, pk), SCHAKEL_OK);
	frame_clear(&g);
	for (int field = 0; field < 6; field++) {
		n = f.u.notice;
		switch (field) {
		case 0:
			n.kind = FRAME_NOTICE_NON_DELIVERY;
			break;
		case 1:
			n.message_id[15] ^= 1;
			break;
		case 2:
			n.recipient[5] = 'b';
			break;
		case 3:
			n.time_ms++;
			break;
		case 4:
			n.code = SCHAKEL_E_EXPIRED;
			break;
		default:
			n.store_seq++;
			break;
		}
		assert_int_equal(
		    frame_notice_verify(&n, pk), SCHAKEL_E_BAD_SIGNATURE);
	}
	/* The signature is required on the wire: encode the notice, cut
	 * the signature field (the last 66 bytes: tag, length, 64 bytes)
	 * and fix the two enclosing lengths. */
	assert_int_equal(frame_encode(&f, &buf), SCHAKEL_OK);
	assert_true(buf.len > 66 + 2);
	assert_int_equal(buf.data[buf.len - 66], (7 << 3) | 2);
	assert_int_equal(buf.data[buf.len - 65], 64);
	{
		/* Frame = tag 23 (2 bytes: 0xba 0x01), len (1 byte), Notice;
		 * corr_id 0 is left out. */
		size_t body = buf.len - 3 - 66;
		assert_int_equal(buf.data[0], 0xba);
		assert_int_equal(buf.data[1], 0x01);
		buf.data[2] = (uint8_t)body;
		assert_int_equal(frame_decode(buf.data, buf.len - 66, 0, &g),
		    SCHAKEL_E_BAD_FIELD);
	}
	codec_buf_clear(&buf);
}

/* ---- the per-message kinds against protobuf-c -------------------------- */

/* pb.c encodes and decodes the per-message kinds by hand; these tests hold
 * that path to the protobuf-c one (pb_frame_encode_pbc, _decode_pbc): the
 * same bytes for random frames, and the same result and frame for random
 * and mutated input.  The generator is seeded, so a failure repeats. */

#define S_SEED 0x5c4a4b454cull
#define S_RANDOM_PER_KIND 2000
#define S_MUTATED_PER_KIND 6000
#define S_MUT_MAX 512
#define S_POOL_LEN (ENV_MAX_LEN + 2 * RECEIPT_MAX_LEN)

static const enum frame_kind s_hot_kinds[] = {FRAME_SUBMIT, FRAME_ACCEPTED,
    FRAME_REFUSAL, FRAME_CREDIT, FRAME_DELIVER, FRAME_ACK, FRAME_NACK,
    FRAME_PING, FRAME_PONG};
#define S_N_HOT (sizeof s_hot_kinds / sizeof s_hot_kinds[0])

/* A length worth trying, at most `max`. */
static size_t
s_rand_len(size_t max)
{
	static const size_t edges[] = {0, 1, 127, 128, 16383, 16384};
	size_t n;

	if (trand_below(4) == 0)
		n = edges[trand_below(sizeof edges / sizeof edges[0])];
	else
		n = (size_t)trand_below(3000);
	return n < max ? n : max;
}

/* Bytes of length n from the pool; an empty field is sometimes NULL. */
static void
s_rand_bytes(struct frame_bytes *b, const uint8_t *pool, size_t n)
{
	b->len = n;
	b->data = n == 0 && trand_below(2)
	    ? NULL
	    : pool + trand_below(S_POOL_LEN - n + 1);
}

static void
s_rand_text(char *s, size_t cap, size_t max)
{
	size_t n = (size_t)trand_below(max + 1);

	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++)
		/* Now and then a byte the decoder refuses (never NUL). */
		s[i] = (char)(trand_below(64) == 0 ? 1 + trand_below(255)
						   : 0x20 + trand_below(0x5f));
	s[n] = '\0';
}

/* A random frame of `kind`; `size` 0 and 1 ask for the largest byte
 * fields frame_encode allows (0) and the largest the decoder takes (1),
 * S_MUT_MAX for small ones, anything else for the usual mix. */
static void
s_rand_frame(
    enum frame_kind kind, size_t size, const uint8_t *pool, struct frame *f)
{
	size_t env = size == 0 || size == 1 ? ENV_MAX_LEN
	    : size == S_MUT_MAX             ? (size_t)trand_below(40)
					    : s_rand_len(ENV_MAX_LEN);
	size_t rcpt = size == 0 ? RECEIPT_MAX_LEN + 1024
	    : size == 1         ? RECEIPT_MAX_LEN
	    : size == S_MUT_MAX ? (size_t)trand_below(40)
				: s_rand_len(RECEIPT_MAX_LEN + 1024);

	memset(f, 0, sizeof *f);
	f->kind = kind;
	f->corr_id = trand_below(2) ? 0 : trand_u64();
	switch (kind) {
	case FRAME_SUBMIT:
		s_rand_bytes(&f->u.submit, pool, env);
		break;
	case FRAME_ACCEPTED:
		s_rand_bytes(&f->u.accepted, pool, env);
		break;
	case FRAME_REFUSAL:
		f->u.refusal.code = trand_u32();
		s_rand_text(f->u.refusal.reason, sizeof f->u.refusal.reason,
		    size == S_MUT_MAX ? 40 : FRAME_MAX_TEXT_LEN);
		f->u.refusal.has_message_id = trand_below(2);
		if (f->u.refusal.has_message_id)
			memcpy(f->u.refusal.message_id,
			    pool + trand_below(S_POOL_LEN - ENV_ID_LEN),
			    ENV_ID_LEN);
		break;
	case FRAME_CREDIT:
		f->u.credit = trand_u32();
		break;
	case FRAME_DELIVER:
		f->u.deliver.store_seq = trand_u64();
		f->u.deliver.delivery_count = trand_u32();
		s_rand_bytes(&f->u.deliver.envelope, pool, env);
		s_rand_bytes(&f->u.deliver.receipt, pool, rcpt);
		break;
	case FRAME_ACK:
	case FRAME_NACK:
		f->u.ack.store_seq = trand_u64();
		memcpy(f->u.ack.message_id,
		    pool + trand_below(S_POOL_LEN - ENV_ID_LEN), ENV_ID_LEN);
		/* An Ack carries no code; one set here must not show. */
		f->u.ack.code = trand_u32();
		break;
	case FRAME_PING:
	case FRAME_PONG:
		f->u.ping_ms = trand_u64();
		break;
	default:
		fail();
	}
}

static uint8_t *
s_pool_new(void)
{
	uint8_t *pool = malloc(S_POOL_LEN);

	assert_non_null(pool);
	for (size_t i = 0; i + 8 <= S_POOL_LEN; i += 8) {
		uint64_t r = trand_next();

		memcpy(pool + i, &r, 8);
	}
	return pool;
}

static void
s_dump(const char *what, enum frame_kind kind, size_t i, const uint8_t *buf,
    size_t len)
{
	print_error(
	    "%s: kind %d case %zu, %zu bytes:", what, (int)kind, i, len);
	for (size_t k = 0; k < len && k < 256; k++)
		print_error(" %02x", buf[k]);
	print_error("\n");
}

/* Move a decoded byte field's contents out of the comparison: equal
 * lengths, equal NULL-ness, equal bytes; then both pointers cleared. */
static void
s_same_bytes(struct frame_bytes *a, struct frame_bytes *b)
{
	assert_int_equal(a->len, b->len);
	assert_int_equal(a->data == NULL, b->data == NULL);
	if (a->len > 0)
		assert_memory_equal(a->data, b->data, a->len);
	a->data = b->data = NULL;
}

/* The two decodes agree: both refused and left *f zeroed, or both gave
 * the same frame (apart from where the bytes live). */
static void
s_same_decode(int rc_a, const struct frame *a, int rc_b, const struct frame *b)
{
	static const struct frame zero;
	struct frame x = *a, y = *b;
	bool held;

	assert_int_equal(rc_a, rc_b);
	if (rc_a != SCHAKEL_OK) {
		assert_memory_equal(a, &zero, sizeof zero);
		assert_memory_equal(b, &zero, sizeof zero);
		return;
	}
	assert_int_equal(x.kind, y.kind);
	/* The hand decoder (a) owns memory exactly when there are bytes to
	 * hold; protobuf-c's arena is always there. */
	switch (x.kind) {
	case FRAME_SUBMIT:
	case FRAME_ACCEPTED:
		held = a->u.submit.len > 0;
		break;
	case FRAME_DELIVER:
		held = a->u.deliver.envelope.len + a->u.deliver.receipt.len > 0;
		break;
	default:
		held = a->owner != NULL; /* not a hand-decoded kind */
		break;
	}
	assert_int_equal(a->owner != NULL, held);
	switch (x.kind) {
	case FRAME_SUBMIT:
		s_same_bytes(&x.u.submit, &y.u.submit);
		break;
	case FRAME_ACCEPTED:
		s_same_bytes(&x.u.accepted, &y.u.accepted);
		break;
	case FRAME_DELIVER:
		s_same_bytes(&x.u.deliver.envelope, &y.u.deliver.envelope);
		s_same_bytes(&x.u.deliver.receipt, &y.u.deliver.receipt);
		break;
	default:
		break;
	}
	x.owner = y.owner = NULL;
	assert_memory_equal(&x, &y, sizeof x);
}

/* Decode buf both ways and compare; returns the result. */
static int
s_decode_both(enum frame_kind kind, size_t i, const uint8_t *buf, size_t len)
{
	struct frame a, b;
	int rc_a, rc_b;

	memset(&a, 0xa5, sizeof a);
	memset(&b, 0x5a, sizeof b);
	rc_a = pb_frame_decode(buf, len, &a);
	rc_b = pb_frame_decode_pbc(buf, len, &b);
	if (rc_a != rc_b) {
		s_dump("decoders differ", kind, i, buf, len);
		fail_msg("hand %d, protobuf-c %d", rc_a, rc_b);
	}
	s_same_decode(rc_a, &a, rc_b, &b);
	frame_clear(&a);
	frame_clear(&b);
	return rc_a;
}

/* Random frames of every per-message kind, byte fields from empty to the
 * largest: both encoders write the same bytes, and both decoders read
 * them back the same, also once the input is gone. */
static void
test_hot_same_as_pbc(void **state)
{
	uint8_t *pool;

	(void)state;
	trand_seed(S_SEED);
	pool = s_pool_new();
	for (size_t k = 0; k < S_N_HOT; k++) {
		for (size_t i = 0; i < S_RANDOM_PER_KIND; i++) {
			struct codec_buf a = {0}, b = {0};
			struct frame f, da, db;
			int rc_a, rc_b;

			s_rand_frame(s_hot_kinds[k], i, pool, &f);
			rc_a = pb_frame_encode(&f, &a);
			rc_b = pb_frame_encode_pbc(&f, &b);
			assert_int_equal(rc_a, SCHAKEL_OK);
			assert_int_equal(rc_b, SCHAKEL_OK);
			if (a.len != b.len || memcmp(a.data, b.data, a.len)) {
				s_dump("hand", f.kind, i, a.data, a.len);
				s_dump("protobuf-c", f.kind, i, b.data, b.len);
				fail();
			}
			/* The decoded frame must not point into the input. */
			rc_a = pb_frame_decode(a.data, a.len, &da);
			codec_buf_clear(&a);
			rc_b = pb_frame_decode_pbc(b.data, b.len, &db);
			codec_buf_clear(&b);
			s_same_decode(rc_a, &da, rc_b, &db);
			if (rc_a == SCHAKEL_OK && f.kind == FRAME_DELIVER)
				assert_int_equal(da.u.deliver.store_seq,
				    f.u.deliver.store_seq);
			frame_clear(&da);
			frame_clear(&db);
		}
	}
	free(pool);
}

/* ---- a small protobuf writer for mutated frames ---- */

struct s_wbuf {
	uint8_t d[S_MUT_MAX];
	size_t n;
};

static void
s_w_byte(struct s_wbuf *w, uint8_t b)
{
	if (w->n < sizeof w->d)
		w->d[w->n++] = b;
}

static void
s_w_varint(struct s_wbuf *w, uint64_t v)
{
	/* Now and then a padded (non-minimal) varint. */
	bool pad = trand_below(32) == 0;

	for (; v >= 0x80; v >>= 7)
		s_w_byte(w, (uint8_t)(v | 0x80));
	if (pad) {
		s_w_byte(w, (uint8_t)(v | 0x80));
		s_w_byte(w, 0);
	} else {
		s_w_byte(w, (uint8_t)v);
	}
}

static void
s_w_raw(struct s_wbuf *w, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s_w_byte(w, p[i]);
}

/* Each body's field types by number: v a varint, w a 32-bit varint, b
 * bytes, i a 16-byte id, s a string. */
static const char *
s_schema(enum frame_kind kind)
{
	switch (kind) {
	case FRAME_SUBMIT:
	case FRAME_ACCEPTED:
		return "b";
	case FRAME_REFUSAL:
		return "wsi";
	case FRAME_CREDIT:
		return "w";
	case FRAME_DELIVER:
		return "vwbb";
	case FRAME_ACK:
		return "vi";
	case FRAME_NACK:
		return "viw";
	default:
		return "v"; /* Ping, Pong */
	}
}

static void
s_w_field(struct s_wbuf *w, uint32_t num, char type, const uint8_t *pool)
{
	uint32_t wt = type == 'v' || type == 'w' ? 0 : 2;
	size_t n;

	if (trand_below(24) == 0)
		wt = (uint32_t)trand_below(8); /* often the wrong one */
	s_w_varint(w, (uint64_t)num << 3 | wt);
	switch (wt) {
	case 0:
		s_w_varint(w,
		    type == 'w' && trand_below(16) ? trand_u32() : trand_u64());
		break;
	case 1:
		s_w_raw(w, pool + trand_below(1024), 8);
		break;
	case 2:
		n = type == 'i' && trand_below(4) ? ENV_ID_LEN
						  : trand_below(41);
		s_w_varint(w, n);
		if (type == 's') {
			char text[41];

			s_rand_text(text, sizeof text, n);
			/* The length above stays; a short text is cut off. */
			s_w_raw(w, (const uint8_t *)text, strlen(text));
			for (size_t k = strlen(text); k < n; k++)
				s_w_byte(w, 'x');
		} else {
			s_w_raw(w, pool + trand_below(1024), n);
		}
		break;
	case 5:
		s_w_raw(w, pool + trand_below(1024), 4);
		break;
	default:
		break;
	}
}

/* A body of `kind`: each field there or not, some duplicated, unknown
 * ones added, the order shuffled. */
static void
s_w_body(struct s_wbuf *w, enum frame_kind kind, const uint8_t *pool)
{
	const char *sc = s_schema(kind);
	uint32_t nf = (uint32_t)strlen(sc), order[12];
	size_t n = 0;

	for (uint32_t num = 1; num <= nf; num++)
		if (trand_below(4) != 0)
			order[n++] = num;
	if (n > 0 && trand_below(8) == 0) {
		order[n] = order[trand_below(n)];
		n++;
	}
	if (trand_below(8) == 0)
		order[n++] = nf + 1 + (uint32_t)trand_below(6);
	if (trand_below(4) == 0)
		for (size_t i = n; i > 1; i--) {
			size_t j = (size_t)trand_below(i);
			uint32_t t = order[i - 1];

			order[i - 1] = order[j];
			order[j] = t;
		}
	for (size_t i = 0; i < n; i++)
		s_w_field(w, order[i],
		    order[i] <= nf ? sc[order[i] - 1] : "vbs"[trand_below(3)],
		    pool);
}

/* The body number to write for `kind`: mostly its own, now and then
 * another per-message kind, any body or no body at all. */
static uint32_t
s_w_kind(enum frame_kind kind)
{
	switch (trand_below(24)) {
	case 0:
		return s_hot_kinds[trand_below(S_N_HOT)];
	case 1:
		return 10 + (uint32_t)trand_below(14);
	case 2:
		return 2 + (uint32_t)trand_below(30);
	default:
		return (uint32_t)kind;
	}
}

static void
s_w_frame(struct s_wbuf *w, enum frame_kind kind, const uint8_t *pool)
{
	struct s_wbuf body = {{0}, 0};
	uint64_t corr = trand_below(2) ? 0 : trand_u64();
	int corr_at = (int)trand_below(3); /* none, before, after the body */
	size_t len;

	s_w_body(&body, kind, pool);
	if (corr_at == 1) {
		s_w_varint(w, 1 << 3);
		s_w_varint(w, corr);
	}
	s_w_varint(w, (uint64_t)s_w_kind(kind) << 3 | 2);
	len = body.n;
	if (trand_below(24) == 0)
		len = trand_below(2) && len > 0 ? len - 1 : len + 1;
	s_w_varint(w, len);
	s_w_raw(w, body.d, body.n);
	if (corr_at == 2 || trand_below(24) == 0) {
		s_w_varint(w, 1 << 3);
		s_w_varint(w, corr);
	}
	if (trand_below(16) == 0) { /* a second body */
		struct s_wbuf b2 = {{0}, 0};
		enum frame_kind k2 = s_hot_kinds[trand_below(S_N_HOT)];

		s_w_body(&b2, k2, pool);
		s_w_varint(w, (uint64_t)k2 << 3 | 2);
		s_w_varint(w, b2.n);
		s_w_raw(w, b2.d, b2.n);
	}
	if (trand_below(24) == 0) /* an unknown top-level field */
		s_w_field(w, 2 + (uint32_t)trand_below(8),
		    "vbs"[trand_below(3)], pool);
}

/* Flip, overwrite, cut, insert or drop bytes. */
static void
s_mutate_bytes(struct s_wbuf *w)
{
	int rounds = 1 + (int)trand_below(3);

	for (int r = 0; r < rounds && w->n > 0; r++) {
		size_t at = (size_t)trand_below(w->n);

		switch (trand_below(5)) {
		case 0:
			w->d[at] ^= (uint8_t)(1u << trand_below(8));
			break;
		case 1:
			w->d[at] = (uint8_t)trand_next();
			break;
		case 2:
			w->n = at;
			break;
		case 3:
			if (w->n < sizeof w->d) {
				memmove(w->d + at + 1, w->d + at, w->n - at);
				w->d[at] = (uint8_t)trand_next();
				w->n++;
			}
			break;
		default:
			memmove(w->d + at, w->d + at + 1, w->n - at - 1);
			w->n--;
			break;
		}
	}
}

/* Mutated input for every per-message kind: frames built field by field
 * (fields left out, duplicated, unknown, reordered, of the wrong wire
 * type, padded varints, wrong lengths, two bodies, a second corr_id) and
 * encoder output with bytes flipped, overwritten, cut, inserted and
 * dropped.  Both decoders must give the same result and frame.  Enough
 * of each must decode, and enough be refused, for the test to mean
 * something. */
static void
test_hot_mutations_same_as_pbc(void **state)
{
	uint8_t *pool;

	(void)state;
	trand_seed(S_SEED + 1);
	pool = s_pool_new();
	for (size_t k = 0; k < S_N_HOT; k++) {
		size_t ok = 0;

		for (size_t i = 0; i < S_MUTATED_PER_KIND; i++) {
			struct s_wbuf w = {{0}, 0};

			if (i % 2 == 0) {
				s_w_frame(&w, s_hot_kinds[k], pool);
				if (trand_below(4) == 0)
					s_mutate_bytes(&w);
			} else {
				struct codec_buf b = {0};
				struct frame f;

				s_rand_frame(
				    s_hot_kinds[k], S_MUT_MAX, pool, &f);
				assert_int_equal(
				    pb_frame_encode_pbc(&f, &b), 0);
				assert_true(b.len <= sizeof w.d);
				s_w_raw(&w, b.data, b.len);
				codec_buf_clear(&b);
				s_mutate_bytes(&w);
			}
			if (s_decode_both(s_hot_kinds[k], i, w.d, w.n) ==
			    SCHAKEL_OK)
				ok++;
		}
		print_message("kind %d: %zu of %d mutated inputs decode\n",
		    (int)s_hot_kinds[k], ok, S_MUTATED_PER_KIND);
		assert_true(ok >= S_MUTATED_PER_KIND / 10);
		assert_true(ok <= S_MUTATED_PER_KIND - S_MUTATED_PER_KIND / 10);
	}
	free(pool);
}

/* The cases protobuf-c's proto3 rules decide, written out: corr_id 0
 * and zero fields are left out, an empty body is still written. */
static void
test_hot_known_bytes(void **state)
{
	static const uint8_t env[1] = {0x42};
	static const struct {
		enum frame_kind kind;
		uint64_t corr_id;
		uint64_t value; /* the body's first varint, when it has one */
		size_t env_len;
		uint8_t want[16];
		size_t want_len;
		int frame_rc; /* what frame_decode says of it */
	} cases[] = {
	    {FRAME_PING, 0, 0, 0, {0xaa, 0x01, 0x00}, 3, SCHAKEL_OK},
	    {FRAME_PONG, 0, 1, 0, {0xb2, 0x01, 0x02, 0x08, 0x01}, 5,
		SCHAKEL_OK},
	    {FRAME_ACCEPTED, 0, 0, 0, {0x7a, 0x00}, 2, SCHAKEL_E_BAD_FIELD},
	    {FRAME_SUBMIT, 300, 0, 1,
		{0x08, 0xac, 0x02, 0x72, 0x03, 0x0a, 0x01, 0x42}, 8,
		SCHAKEL_OK},
	    {FRAME_CREDIT, 1, 0, 0, {0x08, 0x01, 0x8a, 0x01, 0x00}, 5,
		SCHAKEL_OK},
	    {FRAME_REFUSAL, 0, 0, 0, {0x82, 0x01, 0x00}, 3, SCHAKEL_OK},
	    {FRAME_DELIVER, 0, 0, 0, {0x92, 0x01, 0x00}, 3,
		SCHAKEL_E_BAD_FIELD},
	};
	uint8_t id[ENV_ID_LEN];

	(void)state;
	memset(id, 0x11, sizeof id);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct codec_buf a = {0}, b = {0};
		struct frame f, g;

		memset(&f, 0, sizeof f);
		f.kind = cases[i].kind;
		f.corr_id = cases[i].corr_id;
		f.u.ping_ms = cases[i].value;
		if (cases[i].kind == FRAME_SUBMIT) {
			f.u.submit.data = env;
			f.u.submit.len = cases[i].env_len;
		}
		assert_int_equal(pb_frame_encode(&f, &a), SCHAKEL_OK);
		assert_int_equal(pb_frame_encode_pbc(&f, &b), SCHAKEL_OK);
		assert_int_equal(a.len, cases[i].want_len);
		assert_memory_equal(a.data, cases[i].want, a.len);
		assert_int_equal(b.len, cases[i].want_len);
		assert_memory_equal(b.data, cases[i].want, b.len);
		s_decode_both(f.kind, i, a.data, a.len);
		memset(&g, 0xff, sizeof g);
		assert_int_equal(
		    frame_decode(a.data, a.len, 0, &g), cases[i].frame_rc);
		frame_clear(&g);
		codec_buf_clear(&a);
		codec_buf_clear(&b);
	}

	/* An Ack always carries its 16-byte id, even all zeros. */
	{
		struct codec_buf a = {0};
		struct frame f;
		static const uint8_t want[] = {0x9a, 0x01, 0x12, 0x12, 0x10, 0,
		    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

		memset(&f, 0, sizeof f);
		f.kind = FRAME_ACK;
		f.u.ack.code = 5; /* not in an Ack */
		assert_int_equal(pb_frame_encode(&f, &a), SCHAKEL_OK);
		assert_int_equal(a.len, sizeof want);
		assert_memory_equal(a.data, want, sizeof want);
		codec_buf_clear(&a);
	}
}

/* Decoding `data` (at most `max` bytes; 0: no limit) into a frame full of
 * junk is refused with `code` and leaves the frame zeroed. */
static void
s_refused_clears(const uint8_t *data, size_t len, size_t max, int code)
{
	static const struct frame zero;
	struct frame g;

	memset(&g, 0xff, sizeof g);
	assert_int_equal(frame_decode(data, len, max, &g), code);
	assert_memory_equal(&g, &zero, sizeof g);
}

/* A refused decode leaves the frame zeroed, whatever it held before,
 * including the refusals frame_decode makes before pb.c sees the bytes. */
static void
test_refused_decode_clears(void **state)
{
	static const uint8_t ping[] = {0xaa, 0x01, 0x00};
	/* Ack with a 15-byte id */
	static const uint8_t short_id[] = {0x9a, 0x01, 0x11, 0x12, 0x0f, 1, 2,
	    3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
	/* Deliver with an envelope, then cut one byte short */
	static const uint8_t cut[] = {0x92, 0x01, 0x04, 0x1a, 0x02, 0x01};
	struct frame g;

	(void)state;
	s_refused_clears(ping, sizeof ping, 2, SCHAKEL_E_TOO_LARGE);
	s_refused_clears(NULL, 3, 0, SCHAKEL_E_BAD_ARGUMENT);
	s_refused_clears(short_id, sizeof short_id, 0, SCHAKEL_E_BAD_FIELD);
	s_refused_clears(cut, sizeof cut, 0, SCHAKEL_E_MALFORMED);
	/* An empty input is a frame without a body. */
	s_refused_clears(NULL, 0, 0, SCHAKEL_E_MALFORMED);
	assert_int_equal(frame_decode(ping, sizeof ping, 0, &g), SCHAKEL_OK);
	assert_int_equal(g.kind, FRAME_PING);
	assert_null(g.owner);
	frame_clear(&g);
}

/* What frame_encode lets through in an Accepted or a Deliver, frame_decode
 * takes: a signed receipt of RECEIPT_SIGNED_MAX_LEN bytes goes both ways,
 * one byte more is refused by the encoder already. */
static void
test_receipt_limits(void **state)
{
	static uint8_t receipt[RECEIPT_SIGNED_MAX_LEN + 1], env[64];
	struct frame f, g;
	struct codec_buf b = {0};

	(void)state;
	memset(receipt, 0x5a, sizeof receipt);
	memset(env, 0x11, sizeof env);
	for (int kind = 0; kind < 2; kind++) {
		for (size_t extra = 0; extra < 2; extra++) {
			size_t len = RECEIPT_SIGNED_MAX_LEN + extra;
			memset(&f, 0, sizeof f);
			if (kind == 0) {
				f.kind = FRAME_ACCEPTED;
				f.u.accepted.data = receipt;
				f.u.accepted.len = len;
			} else {
				f.kind = FRAME_DELIVER;
				f.u.deliver.store_seq = 7;
				f.u.deliver.envelope.data = env;
				f.u.deliver.envelope.len = sizeof env;
				f.u.deliver.receipt.data = receipt;
				f.u.deliver.receipt.len = len;
			}
			if (extra > 0) {
				assert_int_equal(
				    frame_encode(&f, &b), SCHAKEL_E_TOO_LARGE);
				continue;
			}
			assert_int_equal(frame_encode(&f, &b), SCHAKEL_OK);
			assert_int_equal(
			    frame_decode(b.data, b.len, 0, &g), SCHAKEL_OK);
			assert_int_equal(g.kind, f.kind);
			assert_int_equal(kind == 0 ? g.u.accepted.len
						   : g.u.deliver.receipt.len,
			    len);
			frame_clear(&g);
			codec_buf_clear(&b);
		}
	}
}

/* ---- bundles ----------------------------------------------------------- */

/* The i-th frame of the bundles below: kinds in turn, sizes varying. */
static void
s_bundle_member(size_t i, const uint8_t *pool, struct frame *f)
{
	memset(f, 0, sizeof *f);
	f->corr_id = i + 1;
	switch (i % 8) {
	case 4:
		f->kind = FRAME_ACCEPTED;
		f->u.accepted.data = pool + 3;
		f->u.accepted.len = 300 + i;
		return;
	case 5:
		frame_refusal(f, i + 1, SCHAKEL_E_QUEUE_FULL, pool);
		return;
	case 6:
		f->kind = FRAME_CREDIT;
		f->u.credit = (uint32_t)i;
		return;
	case 7: /* not a per-message kind: encoded, then copied in */
		f->kind = FRAME_HELLO;
		snprintf(f->u.hello.protocol, sizeof f->u.hello.protocol,
		    FRAME_PROTOCOL);
		snprintf(
		    f->u.hello.party_id, sizeof f->u.hello.party_id, "gm0344");
		return;
	}
	switch (i % 4) {
	case 0:
		f->kind = FRAME_SUBMIT;
		f->u.submit.data = pool;
		f->u.submit.len = 1 + (i * 37) % 3000;
		break;
	case 1:
		f->kind = FRAME_ACK;
		f->u.ack.store_seq = 1000 + i;
		memset(f->u.ack.message_id, (int)i, ENV_ID_LEN);
		break;
	case 2:
		f->kind = FRAME_DELIVER;
		f->u.deliver.store_seq = i;
		f->u.deliver.delivery_count = 1;
		f->u.deliver.envelope.data = pool;
		f->u.deliver.envelope.len = 200 + i;
		f->u.deliver.receipt.data = pool + 7;
		f->u.deliver.receipt.len = 100;
		break;
	default:
		f->kind = FRAME_PING;
		f->u.ping_ms = i;
		break;
	}
}

/* Frames in a bundle come out as they went in, in order; the finished
 * message is the size announced, and byte for byte what protobuf-c makes
 * of a Frame with a Bundle of the same frames. */
static void
test_bundle_roundtrip(void **state)
{
	static const size_t counts[] = {2, 3, 64, FRAME_BUNDLE_MAX};
	uint8_t *pool = malloc(4096);

	(void)state;
	assert_non_null(pool);
	for (size_t i = 0; i < 4096; i++)
		pool[i] = (uint8_t)(i * 7);
	for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
		struct frame_bundle fb = {0};
		struct codec_buf *enc = calloc(counts[c], sizeof *enc);
		ProtobufCBinaryData *bins = calloc(counts[c], sizeof *bins);
		Schakel__V1__Bundle pbb = SCHAKEL__V1__BUNDLE__INIT;
		Schakel__V1__Frame pbf = SCHAKEL__V1__FRAME__INIT;
		struct frame f, g, in;
		struct frame_bytes x;
		const uint8_t *msg;
		size_t len, want = 0, off = 0, n = 0;
		uint8_t *packed;

		assert_non_null(enc);
		assert_non_null(bins);
		for (size_t i = 0; i < counts[c]; i++) {
			s_bundle_member(i, pool, &f);
			assert_int_equal(frame_encode(&f, &enc[i]), SCHAKEL_OK);
			/* The per-message kinds are written in place, in
			 * the size frame_encode gives them. */
			assert_int_equal(frame_encoded_size(&f),
			    f.kind == FRAME_HELLO ? SIZE_MAX : enc[i].len);
			want = frame_bundle_size_with(&fb, enc[i].len);
			assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
			bins[i].data = enc[i].data;
			bins[i].len = enc[i].len;
		}
		assert_true(frame_bundle_finish(&fb, &msg, &len));
		assert_int_equal(len, want);
		assert_true(frame_is_bundle(msg, len));
		assert_int_equal(frame_decode(msg, len, 0, &g), SCHAKEL_OK);
		assert_int_equal(g.kind, FRAME_BUNDLE);
		assert_int_equal(g.corr_id, 0);
		while (frame_bundle_next(&g.u.bundle, &off, &x)) {
			assert_true(n < counts[c]);
			assert_int_equal(x.len, enc[n].len);
			assert_memory_equal(x.data, enc[n].data, x.len);
			assert_int_equal(
			    frame_decode(x.data, x.len, 0, &in), SCHAKEL_OK);
			s_bundle_member(n, pool, &f);
			assert_int_equal(in.kind, f.kind);
			assert_int_equal(in.corr_id, f.corr_id);
			frame_clear(&in);
			n++;
		}
		assert_int_equal(n, counts[c]);
		assert_int_equal(off, g.u.bundle.len);
		frame_clear(&g);

		pbb.n_frames = counts[c];
		pbb.frames = bins;
		pbf.body_case = SCHAKEL__V1__FRAME__BODY_BUNDLE;
		pbf.bundle = &pbb;
		assert_int_equal(
		    schakel__v1__frame__get_packed_size(&pbf), len);
		packed = malloc(len);
		assert_non_null(packed);
		schakel__v1__frame__pack(&pbf, packed);
		assert_memory_equal(packed, msg, len);
		free(packed);

		/* Emptied, it is reused. */
		frame_bundle_reset(&fb);
		assert_false(frame_bundle_finish(&fb, &msg, &len));
		for (size_t i = 0; i < counts[c]; i++)
			codec_buf_clear(&enc[i]);
		free(enc);
		free(bins);
		frame_bundle_free(&fb);
	}
	free(pool);
}

/* A bundle of one is the frame itself; no bundle holds more than
 * FRAME_BUNDLE_MAX frames, or a bundle. */
static void
test_bundle_limits(void **state)
{
	struct frame_bundle fb = {0};
	struct frame f = {.kind = FRAME_PING}, g;
	const uint8_t *msg;
	size_t len;

	(void)state;
	f.u.ping_ms = 42;
	assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
	assert_true(frame_bundle_finish(&fb, &msg, &len));
	assert_false(frame_is_bundle(msg, len));
	assert_int_equal(frame_decode(msg, len, 0, &g), SCHAKEL_OK);
	assert_int_equal(g.kind, FRAME_PING);
	assert_int_equal(g.u.ping_ms, 42);
	frame_clear(&g);

	for (size_t i = 1; i < FRAME_BUNDLE_MAX; i++)
		assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
	assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_E_TOO_LARGE);
	assert_true(frame_bundle_finish(&fb, &msg, &len));
	assert_int_equal(frame_decode(msg, len, 0, &g), SCHAKEL_OK);
	assert_int_equal(g.kind, FRAME_BUNDLE);
	frame_clear(&g);

	g.kind = FRAME_BUNDLE;
	g.corr_id = 0;
	g.u.bundle.data = msg;
	g.u.bundle.len = len;
	assert_int_equal(frame_bundle_add(&fb, &g), SCHAKEL_E_BAD_ARGUMENT);
	frame_bundle_free(&fb);
}

/* Bundles built by hand: too many frames, none, a corr_id, a field that
 * is not a frame, are refused; a bundle inside a bundle decodes (the
 * reader refuses it: it must not be opened again). */
static void
test_bundle_refused(void **state)
{
	uint8_t *buf = malloc(8 * (FRAME_BUNDLE_MAX + 2) + 64);
	static const uint8_t ping[] = {0xaa, 0x01, 0x00}; /* Ping {} */
	size_t k, body;
	struct frame g;

	(void)state;
	assert_non_null(buf);
	/* FRAME_BUNDLE_MAX + 1 Pings. */
	body = (FRAME_BUNDLE_MAX + 1) * (2 + sizeof ping);
	k = pb_bundle_head(body, 0, buf);
	for (size_t i = 0; i <= FRAME_BUNDLE_MAX; i++) {
		buf[k++] = 0x0a;
		buf[k++] = sizeof ping;
		memcpy(buf + k, ping, sizeof ping);
		k += sizeof ping;
	}
	assert_int_equal(frame_decode(buf, k, 0, &g), SCHAKEL_E_TOO_LARGE);
	/* One fewer decodes. */
	k = pb_bundle_head(body - 2 - sizeof ping, 0, buf);
	for (size_t i = 0; i < FRAME_BUNDLE_MAX; i++) {
		buf[k++] = 0x0a;
		buf[k++] = sizeof ping;
		memcpy(buf + k, ping, sizeof ping);
		k += sizeof ping;
	}
	assert_int_equal(frame_decode(buf, k, 0, &g), SCHAKEL_OK);
	frame_clear(&g);
	/* Empty. */
	k = pb_bundle_head(0, 0, buf);
	assert_int_equal(frame_decode(buf, k, 0, &g), SCHAKEL_E_MALFORMED);
	/* With a corr_id. */
	k = pb_bundle_head(2 + sizeof ping, 7, buf);
	buf[k++] = 0x0a;
	buf[k++] = sizeof ping;
	memcpy(buf + k, ping, sizeof ping);
	k += sizeof ping;
	assert_int_equal(frame_decode(buf, k, 0, &g), SCHAKEL_E_MALFORMED);
	assert_false(frame_is_bundle(buf, k));
	/* A corr_id of 0 written out, before or after the bundle: its
	 * Frame holds the bundle and nothing else. */
	buf[0] = 0x08;
	buf[1] = 0x00;
	k = 2 + pb_bundle_head(2 + sizeof ping, 0, buf + 2);
	buf[k++] = 0x0a;
	buf[k++] = sizeof ping;
	memcpy(buf + k, ping, sizeof ping);
	k += sizeof ping;
	assert_int_equal(frame_decode(buf, k, 0, &g), SCHAKEL_E_MALFORMED);
	assert_int_equal(
	    frame_decode(buf + 2, k - 2, 0, &g), SCHAKEL_OK); /* without */
	frame_clear(&g);
	memmove(buf, buf + 2, k - 2);
	buf[k - 2] = 0x08;
	buf[k - 1] = 0x00;
	assert_int_equal(frame_decode(buf, k, 0, &g), SCHAKEL_E_MALFORMED);
	/* A varint where the frames are. */
	k = pb_bundle_head(2, 0, buf);
	buf[k++] = 0x08;
	buf[k++] = 0x01;
	assert_int_equal(frame_decode(buf, k, 0, &g), SCHAKEL_E_MALFORMED);
	/* A bundle in a bundle: decodes; its frame is a bundle again. */
	{
		uint8_t in[16];
		size_t n = pb_bundle_head(2 + sizeof ping, 0, in), off = 0;
		struct frame_bytes x;
		struct frame h;

		in[n++] = 0x0a;
		in[n++] = sizeof ping;
		memcpy(in + n, ping, sizeof ping);
		n += sizeof ping;
		k = pb_bundle_head(2 + n, 0, buf);
		buf[k++] = 0x0a;
		buf[k++] = (uint8_t)n;
		memcpy(buf + k, in, n);
		k += n;
		assert_int_equal(frame_decode(buf, k, 0, &g), SCHAKEL_OK);
		assert_true(frame_bundle_next(&g.u.bundle, &off, &x));
		assert_int_equal(
		    frame_decode(x.data, x.len, 0, &h), SCHAKEL_OK);
		assert_int_equal(h.kind, FRAME_BUNDLE);
		frame_clear(&h);
		assert_false(frame_bundle_next(&g.u.bundle, &off, &x));
		frame_clear(&g);
	}
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_kind),
	    cmocka_unit_test(test_accepted_receipt),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_notice_signature),
	    cmocka_unit_test(test_hot_known_bytes),
	    cmocka_unit_test(test_refused_decode_clears),
	    cmocka_unit_test(test_hot_same_as_pbc),
	    cmocka_unit_test(test_hot_mutations_same_as_pbc),
	    cmocka_unit_test(test_receipt_limits),
	    cmocka_unit_test(test_bundle_roundtrip),
	    cmocka_unit_test(test_bundle_limits),
	    cmocka_unit_test(test_bundle_refused),
	};

	return cmocka_run_group_tests(tests, s_setup, NULL);
}
