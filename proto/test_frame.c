/*
 * test_frame: unit tests of the broker command codec: every command
 * round-trips, and frames with no body, two bodies, bad fields or
 * oversized contents are refused with their codes.
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
#include "receipt.h"

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
	s_roundtrip(&f, &g);
	assert_memory_equal(
	    g.u.welcome.broker_sign_key, f.u.welcome.broker_sign_key, 32);
	assert_int_equal(g.u.welcome.max_credit, 1000);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_kind),
	    cmocka_unit_test(test_accepted_receipt),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_notice_signature),
	};

	return cmocka_run_group_tests(tests, s_setup, NULL);
}
