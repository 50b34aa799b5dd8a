/*
 * Unit tests of the cache of messages accepted last: what was put comes
 * back intact (also everything kept after the ring's bytes went round),
 * a slot answers only for its own seq, the byte bounds hold and make
 * room oldest first, and nothing leaks (run under ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hot.h"

/* Puts message `seq` with an envelope of `elen` bytes and a receipt of
 * `rlen`, both filled with bytes derived from seq. */
static void
s_put(struct hot *h, uint64_t seq, size_t elen, size_t rlen)
{
	static struct store_msg m; /* large: not on the stack */
	uint8_t *env = malloc(elen > 0 ? elen : 1);
	uint8_t *rcpt = malloc(rlen > 0 ? rlen : 1);

	assert_non_null(env);
	assert_non_null(rcpt);
	memset(env, (int)(seq & 0xff), elen);
	memset(rcpt, (int)((seq + 1) & 0xff), rlen);
	memset(&m, 0, sizeof m);
	m.seq = seq;
	m.expires_ms = 1000 + seq;
	snprintf(m.type, sizeof m.type, "type.%llu", (unsigned long long)seq);
	snprintf(m.case_ref, sizeof m.case_ref, "case-%llu",
	    (unsigned long long)seq);
	m.envelope = env;
	m.envelope_len = elen;
	m.receipt = rcpt;
	m.receipt_len = rlen;
	hot_put(h, &m);
	/* Copied: the caller's buffers stay the caller's. */
	free(env);
	free(rcpt);
}

/* Checks that message `seq` is kept, as s_put made it. */
static void
s_check(const struct hot *h, uint64_t seq, size_t elen, size_t rlen)
{
	const struct hot_msg *x = hot_get(h, seq);
	char want[STORE_NAME_MAX + 1];

	assert_non_null(x);
	assert_int_equal(x->seq, seq);
	assert_int_equal(x->expires_ms, 1000 + seq);
	snprintf(want, sizeof want, "type.%llu", (unsigned long long)seq);
	assert_string_equal(x->type, want);
	snprintf(want, sizeof want, "case-%llu", (unsigned long long)seq);
	assert_string_equal(x->case_ref, want);
	assert_int_equal(x->envelope_len, elen);
	assert_int_equal(x->receipt_len, rlen);
	for (size_t i = 0; i < elen; i++)
		assert_int_equal(x->envelope[i], seq & 0xff);
	for (size_t i = 0; i < rlen; i++)
		assert_int_equal(x->receipt[i], (seq + 1) & 0xff);
}

static void
test_put_get(void **state)
{
	struct hot *h = hot_new(8, 4096, 1024);

	(void)state;
	assert_non_null(h);
	s_put(h, 1, 100, 20);
	s_put(h, 2, 0, 30);
	s_check(h, 1, 100, 20);
	s_check(h, 2, 0, 30);
	assert_int_equal(hot_bytes(h), 150);
	hot_destroy(&h);
	assert_null(h);
	hot_destroy(&h);
	hot_destroy(NULL);
}

static void
test_miss(void **state)
{
	struct hot *h = hot_new(8, 4096, 1024);

	(void)state;
	/* Nothing put; an empty slot never answers, not even for seq 0. */
	assert_null(hot_get(h, 0));
	assert_null(hot_get(h, 3));
	s_put(h, 3, 10, 10);
	/* The same slot, another seq. */
	assert_null(hot_get(h, 11));
	assert_null(hot_get(h, 4));
	s_check(h, 3, 10, 10);
	/* Seq 0 is no message: nothing is kept. */
	s_put(h, 0, 10, 10);
	assert_null(hot_get(h, 0));
	assert_int_equal(hot_bytes(h), 20);
	hot_destroy(&h);
}

static void
test_replacement(void **state)
{
	struct hot *h = hot_new(8, 4096, 1024);

	(void)state;
	s_put(h, 5, 100, 10);
	s_put(h, 13, 200, 20); /* 13 % 8 == 5 */
	assert_null(hot_get(h, 5));
	s_check(h, 13, 200, 20);
	assert_int_equal(hot_bytes(h), 220);
	/* A full ring of later messages leaves none of the earlier ones. */
	for (uint64_t seq = 14; seq < 22; seq++)
		s_put(h, seq, 10, 10);
	assert_null(hot_get(h, 13));
	for (uint64_t seq = 14; seq < 22; seq++)
		s_check(h, seq, 10, 10);
	assert_int_equal(hot_bytes(h), 8 * 20);
	hot_destroy(&h);
}

static void
test_too_large(void **state)
{
	struct hot *h = hot_new(8, 4096, 1024);

	(void)state;
	s_put(h, 1, 1000, 24); /* exactly max_one */
	s_check(h, 1, 1000, 24);
	s_put(h, 2, 1000, 25); /* one over: freed, not kept */
	assert_null(hot_get(h, 2));
	assert_int_equal(hot_bytes(h), 1024);
	/* A large message still takes its slot's old entry out. */
	s_put(h, 9, 2000, 0);
	assert_null(hot_get(h, 1));
	assert_int_equal(hot_bytes(h), 0);
	hot_destroy(&h);
}

static void
test_byte_cap(void **state)
{
	struct hot *h = hot_new(16, 3000, 1000);

	(void)state;
	s_put(h, 1, 900, 100);
	s_put(h, 2, 900, 100);
	s_put(h, 3, 900, 100);
	assert_int_equal(hot_bytes(h), 3000);
	/* Room for 4 is made by taking out the oldest, 1. */
	s_put(h, 4, 400, 100);
	assert_null(hot_get(h, 1));
	s_check(h, 2, 900, 100);
	s_check(h, 3, 900, 100);
	s_check(h, 4, 400, 100);
	assert_int_equal(hot_bytes(h), 2500);
	/* 5 fits without taking anything out. */
	s_put(h, 5, 400, 100);
	assert_int_equal(hot_bytes(h), 3000);
	s_check(h, 2, 900, 100);
	/* 6 needs one out: 2, the oldest. */
	s_put(h, 6, 900, 100);
	assert_null(hot_get(h, 2));
	s_check(h, 3, 900, 100);
	s_put(h, 7, 900, 100); /* 3 out */
	assert_null(hot_get(h, 3));
	/* 8 needs two out: 4 and 5, the oldest, 500 bytes each. */
	s_put(h, 8, 900, 100);
	assert_null(hot_get(h, 4));
	assert_null(hot_get(h, 5));
	s_check(h, 6, 900, 100);
	s_check(h, 7, 900, 100);
	s_check(h, 8, 900, 100);
	assert_int_equal(hot_bytes(h), 3000);
	/* Across the end of the ring, and never over the cap; whatever is
	 * still kept is intact (no entry written over another's bytes). */
	for (uint64_t seq = 9; seq < 400; seq++) {
		size_t kept = 0;
		s_put(h, seq, 100 + (seq * 37) % 800, seq % 100);
		assert_true(hot_bytes(h) <= 3000);
		for (uint64_t old = 6; old < 9; old++)
			if (hot_get(h, old) != NULL) {
				s_check(h, old, 900, 100);
				kept += 1000;
			}
		for (uint64_t old = 9; old <= seq; old++) {
			if (hot_get(h, old) == NULL)
				continue;
			s_check(h, old, 100 + (old * 37) % 800, old % 100);
			kept += 100 + (old * 37) % 800 + old % 100;
		}
		assert_int_equal(kept, hot_bytes(h));
		/* The newest always, and some older ones: the ring is not
		 * emptied more than its bytes need. */
		assert_non_null(hot_get(h, seq));
		assert_true(kept > 1500 || seq < 12);
	}
	hot_destroy(&h);
}

/* The metadata an Ack needs comes back as it was put, recipients and
 * their agreements too (their bytes count, towards max_one as well); a
 * field hot_meta does not fill is not left as it was. */
static void
test_meta(void **state)
{
	static struct store_msg m, got;
	struct hot *h = hot_new(8, 4096, 400);
	const struct hot_msg *x;
	uint8_t env[100], rcpt[50];
	static const char *const who[] = {
	    "team-west", "kredietbank", "huisarts"};
	static const char *const agr[] = {"agr-1", "agr-22", "agr-333"};

	(void)state;
	assert_non_null(h);
	memset(env, 7, sizeof env);
	memset(rcpt, 8, sizeof rcpt);
	m.seq = 42;
	for (size_t i = 0; i < STORE_ID_LEN; i++)
		m.id[i] = (uint8_t)(i * 13);
	snprintf(m.sender, sizeof m.sender, "gemeente-utrecht");
	snprintf(m.type, sizeof m.type, "shv.melding.v1");
	snprintf(m.case_ref, sizeof m.case_ref, "zaak-42");
	m.accepted_ms = 1790000000123ULL;
	m.expires_ms = 1790000999000ULL;
	m.notify_delivered = true;
	m.n_recipients = 3;
	for (size_t i = 0; i < 3; i++) {
		snprintf(m.recipients[i], sizeof m.recipients[i], "%s", who[i]);
		snprintf(m.agreements[i], sizeof m.agreements[i], "%s", agr[i]);
	}
	m.envelope = env;
	m.envelope_len = sizeof env;
	m.receipt = rcpt;
	m.receipt_len = sizeof rcpt;
	hot_put(h, &m);
	x = hot_get(h, 42);
	assert_non_null(x);
	/* 9+1 + 11+1 + 8+1 + 5+1 + 6+1 + 7+1 name bytes. */
	assert_int_equal(hot_bytes(h), 100 + 50 + 52);
	memset(&got, 0x5a, sizeof got);
	hot_meta(x, &got);
	assert_int_equal(got.seq, 42);
	assert_memory_equal(got.id, m.id, STORE_ID_LEN);
	assert_string_equal(got.sender, m.sender);
	assert_string_equal(got.type, m.type);
	assert_string_equal(got.case_ref, m.case_ref);
	assert_int_equal(got.accepted_ms, m.accepted_ms);
	assert_int_equal(got.expires_ms, m.expires_ms);
	assert_true(got.notify_delivered);
	assert_int_equal(got.n_recipients, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(got.recipients[i], who[i]);
		assert_string_equal(got.agreements[i], agr[i]);
	}
	assert_null(got.envelope);
	assert_null(got.receipt);
	assert_int_equal(got.envelope_len, 0);
	assert_int_equal(got.case_until_ms, 0);
	assert_false(got.from_reserve);
	/* 150 bytes of envelope and receipt fit max_one (400); with 32
	 * recipients' names of 40 bytes they do not: not kept. */
	m.seq = 43;
	m.n_recipients = STORE_MAX_RECIPIENTS;
	for (size_t i = 0; i < STORE_MAX_RECIPIENTS; i++)
		memset(m.recipients[i], 'r', 40);
	hot_put(h, &m);
	assert_null(hot_get(h, 43));
	assert_int_equal(hot_bytes(h), 100 + 50 + 52);
	hot_destroy(&h);
}

/* Entries of 10 bytes fill a ring of 100 exactly; one of 11 goes to its
 * start and must take out the two it overlaps, by one byte the second. */
static void
test_ring_boundary(void **state)
{
	struct hot *h = hot_new(32, 100, 100);

	(void)state;
	for (uint64_t seq = 1; seq <= 10; seq++)
		s_put(h, seq, 6, 4);
	assert_int_equal(hot_bytes(h), 100);
	s_put(h, 11, 7, 4);
	assert_null(hot_get(h, 1));
	assert_null(hot_get(h, 2));
	for (uint64_t seq = 3; seq <= 10; seq++)
		s_check(h, seq, 6, 4);
	s_check(h, 11, 7, 4);
	assert_int_equal(hot_bytes(h), 91);
	hot_destroy(&h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_get),
	    cmocka_unit_test(test_miss),
	    cmocka_unit_test(test_replacement),
	    cmocka_unit_test(test_too_large),
	    cmocka_unit_test(test_byte_cap),
	    cmocka_unit_test(test_ring_boundary),
	    cmocka_unit_test(test_meta),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
