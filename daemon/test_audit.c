/* Unit tests of audit records: round trip of every field, escaping of
 * peer-supplied text, and the hash chain catching a changed, removed or
 * reordered record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"

static void
s_event(struct audit_event *ev, enum audit_event_kind kind, uint64_t t)
{
	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->time_ms = t;
	ev->seq = t / 10;
	ev->has_id = true;
	memset(ev->id, 0xab, sizeof ev->id);
	snprintf(ev->from, sizeof(ev->from), "%s", "gemeente-utrecht");
	ev->n_to = 2;
	snprintf(ev->to[0], sizeof(ev->to[0]), "%s", "buurtteam-west");
	snprintf(ev->to[1], sizeof(ev->to[1]), "%s", "kredietbank-midden");
	snprintf(ev->type, sizeof(ev->type), "%s", "shv.melding.v1");
	snprintf(ev->case_ref, sizeof(ev->case_ref), "%s", "zaak 2026/0042=x");
	snprintf(ev->purpose, sizeof(ev->purpose), "%s", "wgs.intake");
	ev->n_agreements = 2;
	snprintf(ev->agreements[0], sizeof(ev->agreements[0]), "%s",
	    "schuldhulp-utrecht-2026");
	snprintf(ev->agreements[1], sizeof(ev->agreements[1]), "%s",
	    "schuldhulp-utrecht-2026");
}

/* audit_event_init over garbage gives the record a zeroed event gives:
 * nothing it leaves alone is read. */
static void
test_event_init(void **state)
{
	static struct audit_event a, z;
	static const uint8_t prev[AUDIT_HASH_LEN];
	char ra[AUDIT_RECORD_MAX], rz[AUDIT_RECORD_MAX];
	size_t la, lz;

	(void)state;
	memset(&a, 0xa5, sizeof a);
	audit_event_init(&a, AUDIT_ACKNOWLEDGED, 1234);
	memset(&z, 0, sizeof z);
	z.kind = AUDIT_ACKNOWLEDGED;
	z.time_ms = 1234;
	la = audit_encode(&a, prev, ra);
	lz = audit_encode(&z, prev, rz);
	assert_true(lz > 0);
	assert_int_equal(la, lz);
	assert_memory_equal(ra, rz, lz);
	/* With one recipient and agreement, as broker_audit_about fills. */
	a.n_to = z.n_to = 1;
	snprintf(a.to[0], sizeof a.to[0], "%s", "buurtteam-west");
	snprintf(z.to[0], sizeof z.to[0], "%s", "buurtteam-west");
	a.n_agreements = z.n_agreements = 1;
	snprintf(a.agreements[0], sizeof a.agreements[0], "%s", "agr-1");
	snprintf(z.agreements[0], sizeof z.agreements[0], "%s", "agr-1");
	la = audit_encode(&a, prev, ra);
	lz = audit_encode(&z, prev, rz);
	assert_int_equal(la, lz);
	assert_memory_equal(ra, rz, lz);
}

static void
test_round_trip(void **state)
{
	struct audit_event ev, back;
	uint8_t prev[AUDIT_HASH_LEN], got[AUDIT_HASH_LEN];
	char rec[AUDIT_RECORD_MAX];
	size_t len;

	s_event(&ev, AUDIT_ACCEPTED, 1764400000123);
	ev.code = 0;
	ev.count = 3;
	memset(prev, 7, sizeof prev);
	len = audit_encode(&ev, prev, rec);
	assert_true(len > 0);
	assert_int_equal(strlen(rec), len);
	/* One line, readable, escaped. */
	assert_null(strchr(rec, '\n'));
	assert_non_null(strstr(rec, " ev=accepted "));
	assert_non_null(strstr(rec, " case=zaak%202026%2F0042%3Dx"));
	assert_int_equal(audit_decode(rec, len, &back, got), 0);
	assert_memory_equal(got, prev, sizeof prev);
	assert_int_equal(back.kind, AUDIT_ACCEPTED);
	assert_int_equal(back.time_ms, ev.time_ms);
	assert_int_equal(back.seq, ev.seq);
	assert_true(back.has_id);
	assert_memory_equal(back.id, ev.id, sizeof ev.id);
	assert_string_equal(back.from, ev.from);
	assert_int_equal(back.n_to, 2);
	assert_string_equal(back.to[1], "kredietbank-midden");
	assert_string_equal(back.type, ev.type);
	assert_string_equal(back.case_ref, ev.case_ref);
	assert_string_equal(back.purpose, ev.purpose);
	assert_int_equal(back.n_agreements, 2);
	assert_int_equal(back.count, 3);
}

/* audit_encode_in: the same record when it fits with its NUL, nothing
 * when one byte short, and never longer than AUDIT_RECORD_MAX. */
static void
test_encode_in(void **state)
{
	struct audit_event ev;
	uint8_t prev[AUDIT_HASH_LEN];
	char rec[AUDIT_RECORD_MAX], in[AUDIT_RECORD_MAX + 64];
	size_t len;

	(void)state;
	s_event(&ev, AUDIT_ACCEPTED, 1764400000123);
	memset(prev, 3, sizeof prev);
	len = audit_encode(&ev, prev, rec);
	assert_true(len > 0);
	memset(in, 'x', sizeof in);
	assert_int_equal(audit_encode_in(&ev, prev, in, len + 1), len);
	assert_memory_equal(in, rec, len + 1);
	assert_int_equal(audit_encode_in(&ev, prev, in, len), 0);
	assert_int_equal(audit_encode_in(&ev, prev, in, sizeof in), len);
	/* A record too long for AUDIT_RECORD_MAX stays refused with more
	 * room: 32 recipients and agreements of 64 characters, each
	 * escaped threefold. */
	ev.n_to = ev.n_agreements = AUDIT_MAX_PARTIES;
	for (size_t i = 0; i < ev.n_to; i++) {
		memset(ev.to[i], ' ', AUDIT_NAME_MAX);
		memset(ev.agreements[i], ' ', AUDIT_NAME_MAX);
		ev.to[i][AUDIT_NAME_MAX] = ev.agreements[i][AUDIT_NAME_MAX] =
		    '\0';
	}
	assert_int_equal(audit_encode(&ev, prev, rec), 0);
	assert_int_equal(audit_encode_in(&ev, prev, in, sizeof in), 0);
}

static void
test_refusal_has_code_and_no_payload_field(void **state)
{
	struct audit_event ev, back;
	uint8_t prev[AUDIT_HASH_LEN] = {0}, got[AUDIT_HASH_LEN];
	char rec[AUDIT_RECORD_MAX];
	size_t len;

	s_event(&ev, AUDIT_REFUSED, 5);
	ev.code = 25;
	ev.n_to = 0;
	ev.n_agreements = 0;
	len = audit_encode(&ev, prev, rec);
	assert_non_null(strstr(rec, " code=25"));
	assert_null(strstr(rec, " to="));
	assert_int_equal(audit_decode(rec, len, &back, got), 0);
	assert_int_equal(back.code, 25);
	/* Unknown fields, bad escapes and junk are refused. */
	assert_int_equal(
	    audit_decode("v1 prev=00 t=1 ev=accepted", 26, &back, got), -1);
	{
		char bad[AUDIT_RECORD_MAX];
		memcpy(bad, rec, len);
		memcpy(bad + len, " payload=x", 10);
		assert_int_equal(audit_decode(bad, len + 10, &back, got), -1);
		memcpy(bad, rec, len);
		memcpy(bad + len, " from=a%2", 9);
		assert_int_equal(audit_decode(bad, len + 9, &back, got), -1);
	}
}

static void
test_chain(void **state)
{
	char recs[5][AUDIT_RECORD_MAX];
	size_t lens[5];
	uint8_t head[AUDIT_HASH_LEN] = {0};
	struct audit_verifier v;

	for (int i = 0; i < 5; i++) {
		struct audit_event ev;
		s_event(&ev, AUDIT_DELIVERED, 1000 + (uint64_t)i);
		lens[i] = audit_encode(&ev, head, recs[i]);
		assert_true(lens[i] > 0);
		audit_hash(recs[i], lens[i], head);
	}
	memset(&v, 0, sizeof v);
	for (int i = 0; i < 5; i++)
		assert_int_equal(audit_verify_next(&v, recs[i], lens[i]), 0);
	assert_memory_equal(v.head, head, sizeof head);
	assert_int_equal(v.records, 5);

	/* A changed record: the NEXT record's prev no longer matches. */
	memset(&v, 0, sizeof v);
	recs[2][lens[2] - 1] ^= 1;
	assert_int_equal(audit_verify_next(&v, recs[0], lens[0]), 0);
	assert_int_equal(audit_verify_next(&v, recs[1], lens[1]), 0);
	audit_verify_next(&v, recs[2], lens[2]);
	assert_int_equal(audit_verify_next(&v, recs[3], lens[3]), -1);
	assert_int_equal(v.first_bad, 4);
	recs[2][lens[2] - 1] ^= 1;

	/* A removed record. */
	memset(&v, 0, sizeof v);
	assert_int_equal(audit_verify_next(&v, recs[0], lens[0]), 0);
	assert_int_equal(audit_verify_next(&v, recs[2], lens[2]), -1);
	assert_int_equal(v.first_bad, 2);

	/* Reordered. */
	memset(&v, 0, sizeof v);
	assert_int_equal(audit_verify_next(&v, recs[1], lens[1]), -1);
	assert_int_equal(v.first_bad, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_event_init),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_encode_in),
	    cmocka_unit_test(test_refusal_has_code_and_no_payload_field),
	    cmocka_unit_test(test_chain),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
