/* Unit tests of the store with its LMDB backend: real files in a private
 * temporary folder.  Round trips, queue order and paging, acks, delivery
 * counts, dead letters, dedup, case participants, the audit log, seqs
 * across reopen, aborts, a full map and recovery by acks, readers in
 * other threads, a child killed while committing, and damaged records
 * (injected with raw LMDB). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lmdb.h>

#include "store.h"
#include "store_lmdb.h"
#include "testutil.h"

#define MAP_DEFAULT ((uint64_t)64 * 1024 * 1024)

struct env {
	char dir[128];
	char sub[160]; /* dir/store */
};

static int
s_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	if (e == NULL || tu_mkdtemp(e->dir, sizeof e->dir) != 0)
		return -1;
	snprintf(e->sub, sizeof e->sub, "%s/store", e->dir);
	*state = e;
	return 0;
}

static int
s_teardown(void **state)
{
	struct env *e = *state;
	int rc = tu_rmrf(e->dir);

	free(e);
	return rc;
}

static struct store *
s_open(const struct env *e, uint64_t map, bool no_sync)
{
	struct store_opts o = {
	    .dir = e->sub, .map_size = map, .no_sync = no_sync};
	char err[256];
	struct store *s = store_open(&o, err, sizeof err);

	if (s == NULL)
		fail_msg("store_open: %s", err);
	return s;
}

/* Fills an envelope whose bytes depend on seq, so that any mix-up shows. */
static void
s_fill(uint8_t *buf, size_t len, uint64_t seq)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seq * 31 + i * 7 + (i >> 8));
}

struct msgbuf {
	struct store_msg m;
	uint8_t env[4096];
	uint8_t rcpt[128];
};

/* A message `seq` with id derived from `idn`, to the NULL-terminated
 * recipients. */
static void
s_msg(struct msgbuf *b, uint64_t seq, uint64_t idn, const char *sender,
    const char *case_ref, const char *const *rcpts, size_t env_len)
{
	memset(b, 0, sizeof(*b));
	b->m.seq = seq;
	for (int i = 0; i < 8; i++)
		b->m.id[i] = (uint8_t)(idn >> (8 * i));
	b->m.id[15] = 0xa5;
	snprintf(b->m.sender, sizeof b->m.sender, "%s", sender);
	snprintf(b->m.type, sizeof b->m.type, "shv.melding.v1");
	snprintf(b->m.case_ref, sizeof b->m.case_ref, "%s", case_ref);
	b->m.accepted_ms = 1780000000000ULL + seq;
	b->m.expires_ms = 1790000000000ULL + seq;
	b->m.case_until_ms = 1790000000000ULL + seq;
	b->m.notify_delivered = (seq & 1) != 0;
	for (size_t i = 0; rcpts[i] != NULL; i++) {
		snprintf(b->m.recipients[i], sizeof b->m.recipients[i], "%s",
		    rcpts[i]);
		snprintf(b->m.agreements[i], sizeof b->m.agreements[i],
		    "agreement-%zu", i);
		b->m.n_recipients++;
	}
	assert_true(env_len <= sizeof b->env);
	s_fill(b->env, env_len, seq);
	s_fill(b->rcpt, sizeof b->rcpt, seq + 1000);
	b->m.envelope = b->env;
	b->m.envelope_len = env_len;
	b->m.receipt = b->rcpt;
	b->m.receipt_len = sizeof b->rcpt;
}

/* Puts one message in its own transaction; returns its seq. */
static uint64_t
s_put1(struct store *s, uint64_t idn, const char *case_ref,
    const char *const *rcpts)
{
	struct store_txn *t;
	struct msgbuf b;
	uint64_t seq;

	assert_int_equal(store_begin(s, &t), STORE_OK);
	seq = store_next_seq(t);
	s_msg(&b, seq, idn, "gemeente-u", case_ref, rcpts, 100);
	assert_int_equal(store_put(t, &b.m, 5000), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_null(t);
	return seq;
}

static void
s_expect_msg(struct store *s, const struct msgbuf *want)
{
	struct store_msg m;
	uint8_t *env = NULL, *rc = NULL;

	assert_int_equal(store_get(s, want->m.seq, &m, &env, &rc), STORE_OK);
	assert_int_equal(m.seq, want->m.seq);
	assert_memory_equal(m.id, want->m.id, STORE_ID_LEN);
	assert_string_equal(m.sender, want->m.sender);
	assert_string_equal(m.type, want->m.type);
	assert_string_equal(m.case_ref, want->m.case_ref);
	assert_int_equal(m.accepted_ms, want->m.accepted_ms);
	assert_int_equal(m.expires_ms, want->m.expires_ms);
	assert_int_equal(m.notify_delivered, want->m.notify_delivered);
	assert_int_equal(m.n_recipients, want->m.n_recipients);
	for (size_t i = 0; i < m.n_recipients; i++) {
		assert_string_equal(m.recipients[i], want->m.recipients[i]);
		assert_string_equal(m.agreements[i], want->m.agreements[i]);
	}
	assert_int_equal(m.envelope_len, want->m.envelope_len);
	assert_int_equal(m.receipt_len, want->m.receipt_len);
	assert_ptr_equal(m.envelope, env);
	assert_ptr_equal(m.receipt, rc);
	assert_memory_equal(env, want->m.envelope, m.envelope_len);
	assert_memory_equal(rc, want->m.receipt, m.receipt_len);
	free(env);
	free(rc);
	/* Metadata only: nothing copied, the lengths still right. */
	memset(&m, 0, sizeof m);
	assert_int_equal(store_get(s, want->m.seq, &m, NULL, NULL), STORE_OK);
	assert_null(m.envelope);
	assert_null(m.receipt);
	assert_int_equal(m.envelope_len, want->m.envelope_len);
	assert_int_equal(m.receipt_len, 0);
	assert_string_equal(m.case_ref, want->m.case_ref);
}

static void
test_roundtrip(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const rcpts[] = {
	    "team-west", "kredietbank", "huisarts", NULL};
	struct store_txn *t;
	struct msgbuf b, big;
	struct store_msg m;
	uint8_t *env, *rc;
	uint64_t seq = 0;
	struct stat st;

	assert_int_equal(stat(e->sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	assert_int_equal(store_begin(s, &t), STORE_OK);
	s_msg(&b, store_next_seq(t), 42, "gemeente-u", "case-1", rcpts, 1024);
	assert_int_equal(b.m.seq, 1);
	assert_int_equal(store_put(t, &b.m, 9000), STORE_OK);
	/* A second write transaction is refused, not a deadlock. */
	{
		struct store_txn *t2 = NULL;

		assert_int_equal(store_begin(s, &t2), STORE_ERROR);
		assert_null(t2);
	}
	/* Readers run beside the open write transaction and do not see
	 * its writes. */
	assert_int_equal(store_seen(s, b.m.id, &seq), STORE_NOT_FOUND);
	assert_int_equal(store_get(s, 1, &m, &env, &rc), STORE_NOT_FOUND);
	assert_null(env);
	assert_int_equal(store_commit(&t), STORE_OK);

	s_expect_msg(s, &b);
	assert_int_equal(store_seen(s, b.m.id, &seq), STORE_OK);
	assert_int_equal(seq, 1);

	/* An envelope bigger than a page (LMDB overflow pages), and one
	 * with an empty receipt. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	s_msg(&big, store_next_seq(t), 43, "huisarts", "case-2", rcpts, 4096);
	big.m.receipt_len = 0;
	big.m.receipt = NULL;
	assert_int_equal(store_put(t, &big.m, 9000), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	s_expect_msg(s, &big);

	/* Invalid messages are refused and the transaction goes on. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	s_msg(&b, store_next_seq(t), 44, "gemeente-u", "case-1", rcpts, 10);
	snprintf(b.m.recipients[1], sizeof b.m.recipients[1], "team-west");
	assert_int_equal(store_put(t, &b.m, 9000), STORE_ERROR);
	assert_non_null(strstr(store_error(s), "twice"));
	snprintf(b.m.recipients[1], sizeof b.m.recipients[1], "kredietbank");
	b.m.case_ref[0] = '\0';
	assert_int_equal(store_put(t, &b.m, 9000), STORE_ERROR);
	snprintf(b.m.case_ref, sizeof b.m.case_ref, "case-1");
	b.m.seq = 99; /* not reserved */
	assert_int_equal(store_put(t, &b.m, 9000), STORE_ERROR);
	b.m.seq = 3;
	assert_int_equal(store_put(t, &b.m, 9000), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	s_expect_msg(s, &b);

	store_close(&s);
	assert_null(s);
	store_close(&s); /* NULL is fine */
	store_abort(NULL);
}

static void
test_queue_order_and_paging(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const all[] = {"a", "b", "c", NULL};
	static const char *const ab[] = {"a", "b", NULL};
	static const char *const onlya[] = {"a", NULL};
	struct store_entry page[7];
	uint64_t expect_a = 0, expect_b = 0, depth;
	size_t n, total;
	uint64_t after;

	/* 300 messages in groups of 10: a gets all, b two in three, c one
	 * in three. */
	for (uint64_t g = 0; g < 30; g++) {
		struct store_txn *t;

		assert_int_equal(store_begin(s, &t), STORE_OK);
		for (int i = 0; i < 10; i++) {
			struct msgbuf b;
			uint64_t seq = store_next_seq(t);
			const char *const *r = seq % 3 == 0 ? all
			    : seq % 3 == 1                  ? ab
							    : onlya;

			s_msg(
			    &b, seq, 1000 + seq, "gemeente-u", "case-q", r, 64);
			assert_int_equal(store_put(t, &b.m, 1), STORE_OK);
			expect_a++;
			expect_b += r != onlya;
		}
		assert_int_equal(store_commit(&t), STORE_OK);
	}
	assert_int_equal(store_queue_depth(s, "a", &depth), STORE_OK);
	assert_int_equal(depth, expect_a);
	assert_int_equal(store_queue_depth(s, "b", &depth), STORE_OK);
	assert_int_equal(depth, expect_b);
	assert_int_equal(store_queue_depth(s, "c", &depth), STORE_OK);
	assert_int_equal(depth, 100);
	assert_int_equal(store_queue_depth(s, "nobody", &depth), STORE_OK);
	assert_int_equal(depth, 0);
	/* A prefix of a recipient id is another recipient. */
	assert_int_equal(store_queue(s, "", 0, page, 7, &n), STORE_ERROR);

	/* Page through c: every third seq, in order. */
	after = 0;
	total = 0;
	do {
		assert_int_equal(
		    store_queue(s, "c", after, page, 7, &n), STORE_OK);
		for (size_t i = 0; i < n; i++) {
			assert_true(page[i].seq > after);
			assert_int_equal(page[i].seq % 3, 0);
			assert_int_equal(page[i].deliveries, 0);
			after = page[i].seq;
			total++;
		}
	} while (n == 7);
	assert_int_equal(total, 100);
	assert_int_equal(after, 300);
	/* Page through b. */
	after = 0;
	total = 0;
	do {
		assert_int_equal(
		    store_queue(s, "b", after, page, 7, &n), STORE_OK);
		for (size_t i = 0; i < n; i++) {
			assert_true(page[i].seq > after);
			assert_int_not_equal(page[i].seq % 3, 2);
			after = page[i].seq;
			total++;
		}
	} while (n > 0);
	assert_int_equal(total, expect_b);
	assert_int_equal(store_queue(s, "a", 295, page, 7, &n), STORE_OK);
	assert_int_equal(n, 5);
	assert_int_equal(page[0].seq, 296);
	assert_int_equal(
	    store_queue(s, "a", UINT64_MAX, page, 7, &n), STORE_OK);
	assert_int_equal(n, 0);
	store_close(&s);
}

static void
test_ack(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const rcpts[] = {"x", "y", NULL};
	struct store_txn *t;
	struct store_entry q[4];
	struct store_msg m;
	uint8_t *env, *rc;
	uint64_t seq1 = s_put1(s, 1, "case-a", rcpts);
	uint64_t seq2 = s_put1(s, 2, "case-a", rcpts);
	size_t n;

	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_ack(t, "x", seq1), STORE_OK);
	assert_int_equal(store_ack(t, "x", seq1), STORE_NOT_FOUND);
	assert_int_equal(store_ack(t, "nobody", seq1), STORE_NOT_FOUND);
	assert_int_equal(store_ack(t, "x", 999), STORE_NOT_FOUND);
	assert_int_equal(store_commit(&t), STORE_OK);

	assert_int_equal(store_queue(s, "x", 0, q, 4, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(q[0].seq, seq2);
	assert_int_equal(store_queue(s, "y", 0, q, 4, &n), STORE_OK);
	assert_int_equal(n, 2);
	/* Still held by y. */
	assert_int_equal(store_get(s, seq1, &m, &env, &rc), STORE_OK);
	free(env);
	free(rc);

	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_ack(t, "y", seq1), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_get(s, seq1, &m, &env, &rc), STORE_NOT_FOUND);
	assert_null(env);
	assert_null(rc);
	assert_int_equal(store_get(s, seq2, &m, &env, &rc), STORE_OK);
	free(env);
	free(rc);
	/* The id stays known for its dedup window. */
	{
		struct msgbuf b;
		uint64_t seq;

		s_msg(&b, 0, 1, "gemeente-u", "case-a", rcpts, 1);
		assert_int_equal(store_seen(s, b.m.id, &seq), STORE_OK);
		assert_int_equal(seq, seq1);
	}
	store_close(&s);
}

/* store_ack_id checks the stored id before anything changes and hands
 * back the message's metadata. */
static void
test_ack_id(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const rcpts[] = {"x", "y", NULL};
	struct store_txn *t;
	struct store_entry q[4];
	struct store_msg m;
	struct msgbuf want;
	uint8_t wrong[STORE_ID_LEN] = {0};
	uint64_t seq = s_put1(s, 7, "case-i", rcpts);
	size_t n;

	s_msg(&want, seq, 7, "gemeente-u", "case-i", rcpts, 1);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	/* Another id: refused, the entry stays. */
	assert_int_equal(store_ack_id(t, "x", seq, wrong, &m), STORE_NOT_FOUND);
	assert_int_equal(
	    store_ack_id(t, "x", 999, want.m.id, &m), STORE_NOT_FOUND);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_queue(s, "x", 0, q, 4, &n), STORE_OK);
	assert_int_equal(n, 1);

	assert_int_equal(store_begin(s, &t), STORE_OK);
	memset(&m, 0, sizeof m);
	assert_int_equal(store_ack_id(t, "x", seq, want.m.id, &m), STORE_OK);
	assert_int_equal(m.seq, seq);
	assert_memory_equal(m.id, want.m.id, STORE_ID_LEN);
	assert_string_equal(m.case_ref, "case-i");
	assert_string_equal(m.sender, "gemeente-u");
	assert_int_equal(m.n_recipients, 2);
	assert_null(m.envelope);
	/* Without an id to check (a notice in flight). */
	assert_int_equal(store_ack_id(t, "y", seq, NULL, NULL), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	/* Neither holds it: gone. */
	assert_int_equal(store_queue(s, "x", 0, q, 4, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_get(s, seq, &m, NULL, NULL), STORE_NOT_FOUND);
	store_close(&s);
}

static void
test_delivered_survives_reopen(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, false);
	static const char *const rcpts[] = {"x", "y", NULL};
	struct store_txn *t;
	struct store_entry q[4];
	uint64_t seq = s_put1(s, 1, "case-d", rcpts);
	uint32_t d = 0;
	size_t n;

	for (uint32_t i = 1; i <= 3; i++) {
		assert_int_equal(store_begin(s, &t), STORE_OK);
		assert_int_equal(store_delivered(t, "x", seq, &d), STORE_OK);
		assert_int_equal(d, i);
		assert_int_equal(store_commit(&t), STORE_OK);
	}
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_delivered(t, "z", seq, &d), STORE_NOT_FOUND);
	assert_int_equal(store_commit(&t), STORE_OK);
	store_close(&s);

	s = s_open(e, MAP_DEFAULT, false);
	assert_int_equal(store_queue(s, "x", 0, q, 4, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(q[0].seq, seq);
	assert_int_equal(q[0].deliveries, 3);
	assert_int_equal(store_queue(s, "y", 0, q, 4, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(q[0].deliveries, 0);
	store_close(&s);
}

static void
test_dead_letters(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const rcpts[] = {"x", "y", NULL};
	struct store_txn *t;
	struct store_entry q[4];
	struct store_dead dl[8];
	struct store_msg m;
	uint8_t *env, *rc;
	uint64_t seq1 = s_put1(s, 1, "case-e", rcpts);
	uint64_t seq2 = s_put1(s, 2, "case-e", rcpts);
	uint64_t depth;
	uint32_t d;
	size_t n;

	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_delivered(t, "x", seq1, &d), STORE_OK);
	assert_int_equal(
	    store_dead_letter(t, "x", seq1, 17, 5555, UINT64_MAX), STORE_OK);
	assert_int_equal(store_dead_letter(t, "x", seq1, 17, 5555, UINT64_MAX),
	    STORE_NOT_FOUND);
	assert_int_equal(store_ack(t, "y", seq1), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);

	/* Kept while the dead letter refers to it. */
	assert_int_equal(store_get(s, seq1, &m, &env, &rc), STORE_OK);
	free(env);
	free(rc);
	assert_int_equal(store_queue_depth(s, "x", &depth), STORE_OK);
	assert_int_equal(depth, 1);
	assert_int_equal(store_dead_letters(s, "x", 0, dl, 8, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(dl[0].seq, seq1);
	assert_string_equal(dl[0].recipient, "x");
	assert_int_equal(dl[0].code, 17);
	assert_int_equal(dl[0].time_ms, 5555);
	assert_int_equal(store_dead_letters(s, "y", 0, dl, 8, &n), STORE_OK);
	assert_int_equal(n, 0);

	/* Redeliver: back in the queue, in its place, count 0. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_redeliver(t, "x", seq1), STORE_OK);
	assert_int_equal(store_redeliver(t, "x", seq1), STORE_NOT_FOUND);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_queue(s, "x", 0, q, 4, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(q[0].seq, seq1);
	assert_int_equal(q[0].deliveries, 0);
	assert_int_equal(q[1].seq, seq2);
	assert_int_equal(store_dead_letters(s, NULL, 0, dl, 8, &n), STORE_OK);
	assert_int_equal(n, 0);

	/* Dead again, then purged: the message goes. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(
	    store_dead_letter(t, "x", seq1, 18, 6666, UINT64_MAX), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_purge(t, "y", seq1), STORE_NOT_FOUND);
	assert_int_equal(store_purge(t, "x", seq1), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_get(s, seq1, &m, &env, &rc), STORE_NOT_FOUND);
	assert_int_equal(store_dead_letters(s, NULL, 0, dl, 8, &n), STORE_OK);
	assert_int_equal(n, 0);

	/* Paging over all recipients never splits one seq's dead letters. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(
	    store_dead_letter(t, "x", seq2, 1, 1, UINT64_MAX), STORE_OK);
	assert_int_equal(
	    store_dead_letter(t, "y", seq2, 1, 1, UINT64_MAX), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	{
		static const char *const three[] = {"x", "y", "z", NULL};
		uint64_t seq3 = s_put1(s, 3, "case-e", three);

		assert_int_equal(store_begin(s, &t), STORE_OK);
		for (int i = 0; three[i] != NULL; i++)
			assert_int_equal(store_dead_letter(t, three[i], seq3, 2,
					     2, UINT64_MAX),
			    STORE_OK);
		assert_int_equal(store_commit(&t), STORE_OK);
		assert_int_equal(
		    store_dead_letters(s, NULL, 0, dl, 3, &n), STORE_OK);
		assert_int_equal(n, 2); /* not x@seq3 alone */
		assert_int_equal(dl[1].seq, seq2);
		assert_int_equal(
		    store_dead_letters(s, NULL, seq2, dl, 3, &n), STORE_OK);
		assert_int_equal(n, 3);
		assert_string_equal(dl[2].recipient, "z");
		/* max smaller than one seq's letters: still progress. */
		assert_int_equal(
		    store_dead_letters(s, NULL, seq2, dl, 2, &n), STORE_OK);
		assert_int_equal(n, 2);
		assert_int_equal(
		    store_dead_letters(s, "z", 0, dl, 8, &n), STORE_OK);
		assert_int_equal(n, 1);
		assert_int_equal(dl[0].seq, seq3);
	}
	store_close(&s);
}

static void
test_dedup(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const rcpts[] = {"x", NULL};
	struct store_txn *t;
	struct msgbuf b[5];
	struct store_msg got;
	uint8_t *receipt;
	uint64_t seq;
	size_t removed, rlen;

	/* Ids 0..4 kept until 100, 200, ... 500. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	for (int i = 0; i < 5; i++) {
		s_msg(
		    &b[i], store_next_seq(t), 500 + i, "s", "case-f", rcpts, 8);
		assert_int_equal(
		    store_put(t, &b[i].m, 100 * (i + 1)), STORE_OK);
	}
	/* A duplicate in the same transaction. */
	{
		struct msgbuf d;

		s_msg(&d, store_next_seq(t), 502, "s", "case-f", rcpts, 8);
		assert_int_equal(store_put(t, &d.m, 1000), STORE_EXISTS);
	}
	assert_int_equal(store_commit(&t), STORE_OK);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(store_seen(s, b[i].m.id, &seq), STORE_OK);
		assert_int_equal(seq, b[i].m.seq);
	}
	/* The receipt stays with the id after the message is gone. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_ack(t, "x", b[1].m.seq), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(
	    store_get(s, b[1].m.seq, &got, NULL, NULL), STORE_NOT_FOUND);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(
		    store_receipt(s, b[i].m.id, &receipt, &rlen), STORE_OK);
		assert_int_equal(rlen, b[i].m.receipt_len);
		assert_memory_equal(receipt, b[i].m.receipt, rlen);
		free(receipt);
	}
	/* A duplicate in a later transaction. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	b[0].m.seq = store_next_seq(t);
	assert_int_equal(store_put(t, &b[0].m, 1000), STORE_EXISTS);
	assert_int_equal(store_commit(&t), STORE_OK);
	{
		struct msgbuf u;

		s_msg(&u, 0, 999, "s", "case-f", rcpts, 8);
		assert_int_equal(store_seen(s, u.m.id, &seq), STORE_NOT_FOUND);
	}

	/* Windows ending before 350: ids 0, 1, 2; at most 2 per call. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_expire_dedup(t, 350, 2, &removed), STORE_OK);
	assert_int_equal(removed, 2);
	assert_int_equal(store_expire_dedup(t, 350, 10, &removed), STORE_OK);
	assert_int_equal(removed, 1);
	assert_int_equal(store_expire_dedup(t, 350, 10, &removed), STORE_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(store_commit(&t), STORE_OK);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(store_seen(s, b[i].m.id, &seq),
		    i < 3 ? STORE_NOT_FOUND : STORE_OK);
		receipt = NULL;
		assert_int_equal(store_receipt(s, b[i].m.id, &receipt, &rlen),
		    i < 3 ? STORE_NOT_FOUND : STORE_OK);
		assert_true((receipt == NULL) == (i < 3));
		free(receipt);
	}
	/* The window ends at 400: not expired at 400 itself. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_expire_dedup(t, 400, 10, &removed), STORE_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(store_commit(&t), STORE_OK);
	store_close(&s);
}

/* The expiry index: messages come out oldest expiry first, once, and a
 * message removed before its time is not in it. */
static void
test_expiry_index(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const rcpts[] = {"x", NULL};
	static const uint64_t expires[4] = {300, 200, 400, 100};
	struct store_txn *t;
	struct msgbuf b[4];
	uint64_t seqs[8];
	size_t n;

	assert_int_equal(store_begin(s, &t), STORE_OK);
	for (int i = 0; i < 4; i++) {
		s_msg(
		    &b[i], store_next_seq(t), 700 + i, "s", "case-x", rcpts, 8);
		b[i].m.expires_ms = expires[i];
		assert_int_equal(store_put(t, &b[i].m, 10000), STORE_OK);
	}
	assert_int_equal(store_commit(&t), STORE_OK);
	/* The one expiring at 200 is acknowledged and removed first. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_ack(t, "x", b[1].m.seq), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);

	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_take_expired(t, 99, seqs, 8, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_take_expired(t, 300, seqs, 1, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(seqs[0], b[3].m.seq);
	assert_int_equal(store_take_expired(t, 300, seqs, 8, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(seqs[0], b[0].m.seq);
	assert_int_equal(store_commit(&t), STORE_OK);
	/* Taken once: only the one expiring at 400 is left. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(
	    store_take_expired(t, UINT64_MAX, seqs, 8, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(seqs[0], b[2].m.seq);
	store_abort(&t);
	/* An aborted take leaves the entry. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(
	    store_take_expired(t, UINT64_MAX, seqs, 8, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(store_commit(&t), STORE_OK);
	store_close(&s);
}

/* Dead letters come due when their retention ends, earliest first, once;
 * a redelivered one is not taken, and one dead-lettered again is taken
 * only at its new time. */
static void
test_dead_retention(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const two[] = {"x", "y", NULL};
	struct store_dead due[8];
	struct store_txn *t;
	struct store_dead d[8];
	uint64_t seq;
	size_t n;

	seq = s_put1(s, 800, "case-r", two);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(
	    store_dead_letter(t, "x", seq, 24, 1000, 5000), STORE_OK);
	assert_int_equal(
	    store_dead_letter(t, "y", seq, 38, 1000, 3000), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);

	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_take_dead_due(t, 2999, due, 8, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_take_dead_due(t, 3000, due, 8, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(due[0].seq, seq);
	assert_string_equal(due[0].recipient, "y");
	assert_int_equal(due[0].code, 38);
	assert_int_equal(due[0].time_ms, 1000);
	assert_int_equal(store_purge(t, "y", seq), STORE_OK);
	/* x's is put back, then dead again at 2000, kept until 9000. */
	assert_int_equal(store_redeliver(t, "x", seq), STORE_OK);
	assert_int_equal(
	    store_dead_letter(t, "x", seq, 24, 2000, 9000), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);

	/* At 5000 the old entry of x comes due but is stale: nothing. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_take_dead_due(t, 5000, due, 8, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_dead_letters(s, "x", 0, d, 8, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(d[0].time_ms, 2000);

	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_take_dead_due(t, 9000, due, 8, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(due[0].recipient, "x");
	assert_int_equal(due[0].time_ms, 2000);
	assert_int_equal(store_purge(t, "x", seq), STORE_OK);
	assert_int_equal(
	    store_take_dead_due(t, UINT64_MAX, due, 8, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_commit(&t), STORE_OK);
	/* Nothing refers to the message any more: it is gone. */
	{
		struct store_msg m;
		assert_int_equal(
		    store_get(s, seq, &m, NULL, NULL), STORE_NOT_FOUND);
	}
	store_close(&s);
}

/* A message stored longer than its id is remembered keeps its receipt:
 * it is delivered with it; the receipt goes when the message goes. */
static void
test_receipt_outlives_id(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const rcpts[] = {"x", NULL};
	struct store_txn *t;
	struct store_msg m;
	struct msgbuf b;
	uint8_t *env = NULL, *rc = NULL;
	size_t removed = 0, len = 0;

	assert_int_equal(store_begin(s, &t), STORE_OK);
	s_msg(&b, store_next_seq(t), 900, "s", "case-o", rcpts, 8);
	assert_int_equal(store_put(t, &b.m, 2000), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	/* The id's window ends; the message is still queued. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_expire_dedup(t, 3000, 10, &removed), STORE_OK);
	assert_int_equal(removed, 1);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_receipt(s, b.m.id, &rc, &len), STORE_NOT_FOUND);
	assert_int_equal(store_get(s, b.m.seq, &m, &env, &rc), STORE_OK);
	assert_int_equal(m.receipt_len, b.m.receipt_len);
	assert_memory_equal(rc, b.m.receipt, m.receipt_len);
	free(env);
	free(rc);
	/* Acknowledged: message and receipt are gone. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_ack(t, "x", b.m.seq), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(
	    store_get(s, b.m.seq, &m, NULL, NULL), STORE_NOT_FOUND);
	store_close(&s);
}

/* The store's LMDB environment opened directly, to damage it. */
static MDB_env *
s_raw_env(const struct env *e)
{
	MDB_env *env;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_set_mapsize(env, MAP_DEFAULT), 0);
	assert_int_equal(mdb_env_open(env, e->sub, MDB_NOSYNC, 0600), 0);
	return env;
}

/* Puts one message on `case_ref` whose participants are kept until
 * `until` (0: none recorded, as for a notice). */
static void
s_put_until(struct store *s, uint64_t idn, const char *case_ref,
    const char *const *rcpts, uint64_t until)
{
	struct store_txn *t;
	struct msgbuf b;

	assert_int_equal(store_begin(s, &t), STORE_OK);
	s_msg(&b, store_next_seq(t), idn, "gemeente-u", case_ref, rcpts, 100);
	b.m.case_until_ms = until;
	assert_int_equal(store_put(t, &b.m, 5000), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
}

/* Forgets in one transaction; returns how many, their references in
 * refs. */
static size_t
s_forget(struct store *s, uint64_t now, size_t look,
    char (*refs)[STORE_NAME_MAX + 1], size_t max)
{
	struct store_txn *t;
	size_t n = 99;

	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(
	    store_forget_cases(t, now, look, refs, max, &n), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	return n;
}

static size_t
s_nparticipants(struct store *s, const char *case_ref)
{
	char out[8][STORE_NAME_MAX + 1];
	size_t n = 99;

	assert_int_equal(store_participants(s, case_ref, out, 8, &n), STORE_OK);
	return n;
}

/* A case's participants are kept until the latest keep-until of its
 * messages, then forgotten by a walk that goes round the cases a few at
 * a time; a notice's "case" records none. */
static void
test_forget_cases(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const r[] = {"team-west", NULL};
	char refs[8][STORE_NAME_MAX + 1];

	s_put_until(s, 1, "case-a", r, 1000);
	s_put_until(s, 2, "case-a", r, 3000); /* the later one counts */
	s_put_until(s, 3, "case-b", r, 2000);
	s_put_until(s, 4, "case-c", r, 1000);
	s_put_until(s, 5, "case-d", r, 5000);
	s_put_until(s, 6, "case-a", r, 1500); /* an earlier one does not */
	s_put_until(s, 7, "notice-7", r, 0);
	assert_int_equal(s_nparticipants(s, "case-a"), 2);
	assert_int_equal(s_nparticipants(s, "notice-7"), 0);

	/* Nothing due yet. */
	assert_int_equal(s_forget(s, 999, 100, refs, 8), 0);
	/* At 1000 only case-c. */
	assert_int_equal(s_forget(s, 1000, 100, refs, 8), 1);
	assert_string_equal(refs[0], "case-c");
	assert_int_equal(s_nparticipants(s, "case-c"), 0);
	assert_int_equal(s_nparticipants(s, "case-a"), 2);
	/* At 3000, two at a time: the walk goes on where it stopped and
	 * comes round again from the first. */
	assert_int_equal(s_forget(s, 3000, 2, refs, 8), 2);
	assert_string_equal(refs[0], "case-a");
	assert_string_equal(refs[1], "case-b");
	assert_int_equal(s_forget(s, 3000, 2, refs, 8), 0); /* case-d */
	assert_int_equal(s_forget(s, 3000, 2, refs, 8), 0); /* from the top */
	assert_int_equal(s_nparticipants(s, "case-a"), 0);
	assert_int_equal(s_nparticipants(s, "case-b"), 0);
	assert_int_equal(s_nparticipants(s, "case-d"), 2);
	/* A case that gets a message again is kept again. */
	s_put_until(s, 8, "case-a", r, 9000);
	assert_int_equal(s_forget(s, 8999, 100, refs, 1), 1);
	assert_string_equal(refs[0], "case-d");
	assert_int_equal(s_forget(s, 8999, 100, refs, 1), 0);
	assert_int_equal(s_nparticipants(s, "case-a"), 2);
	/* `max` stops a round early. */
	s_put_until(s, 9, "case-e", r, 100);
	s_put_until(s, 10, "case-f", r, 100);
	assert_int_equal(s_forget(s, 9000, 100, refs, 1), 1);
	assert_int_equal(s_forget(s, 9000, 100, refs, 8), 2);
	assert_int_equal(s_nparticipants(s, "case-a"), 0);
	store_close(&s);
}

/* A read over a struct full of garbage leaves nothing of it outside the
 * names past n_recipients (which store_get does not clear: readers stop
 * at the count). */
static void
test_get_clears(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const r[] = {"team-west", "kredietbank", NULL};
	static struct store_msg m;
	uint64_t seq = s_put1(s, 42, "case-g", r);

	memset(&m, 0xa5, sizeof m);
	assert_int_equal(store_get(s, seq, &m, NULL, NULL), STORE_OK);
	assert_int_equal(m.n_recipients, 2);
	assert_string_equal(m.recipients[1], "kredietbank");
	assert_string_equal(m.agreements[1], "agreement-1");
	/* What a get does not fill is zero, as in a zeroed struct. */
	assert_null(m.envelope);
	assert_null(m.receipt);
	assert_int_equal(m.receipt_len, 0);
	assert_int_equal(m.case_until_ms, 0);
	assert_false(m.from_reserve);
	assert_int_equal(m.seq, seq);
	assert_string_equal(m.sender, "gemeente-u");
	store_close(&s);
}

static unsigned
s_due(struct store *s, uint64_t now, size_t look)
{
	unsigned due = 99;

	assert_int_equal(store_due(s, now, look, &due), STORE_OK);
	return due;
}

/* store_due reads what each sweep would find, and the case walk's place
 * moves past cases it found not due, as store_forget_cases moves it. */
static void
test_due(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const r[] = {"team-west", NULL};
	char refs[8][STORE_NAME_MAX + 1];
	struct store_txn *t;
	struct msgbuf b;

	assert_int_equal(s_due(s, UINT64_MAX, 100), 0);
	/* Expires at 300, its id's window ends at 500, its case at 700. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	s_msg(&b, store_next_seq(t), 1, "gemeente-u", "case-a", r, 100);
	b.m.expires_ms = 300;
	b.m.case_until_ms = 700;
	assert_int_equal(store_put(t, &b.m, 500), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(s_due(s, 299, 100), 0);
	assert_int_equal(s_due(s, 300, 100), STORE_DUE_EXPIRED);
	assert_int_equal(
	    s_due(s, 500, 100), STORE_DUE_EXPIRED | STORE_DUE_DEDUP);
	assert_int_equal(s_due(s, 700, 0), STORE_DUE_EXPIRED | STORE_DUE_DEDUP);
	assert_int_equal(s_due(s, 700, 100),
	    STORE_DUE_EXPIRED | STORE_DUE_DEDUP | STORE_DUE_CASES);
	/* A dead letter kept until 900. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(
	    store_dead_letter(t, "team-west", b.m.seq, 7, 100, 900), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_true((s_due(s, 899, 0) & STORE_DUE_DEAD) == 0);
	assert_true((s_due(s, 900, 0) & STORE_DUE_DEAD) != 0);

	/* Cases b (until 2000) and c (until 100): a look at one case at a
	 * time at 1000 passes case-a and case-b (not due) and stops at
	 * case-c, which store_forget_cases then finds first. */
	s_put_until(s, 2, "case-b", r, 2000);
	s_put_until(s, 3, "case-c", r, 100);
	assert_int_equal(s_due(s, 600, 1) & STORE_DUE_CASES, 0); /* a */
	assert_int_equal(s_due(s, 600, 1) & STORE_DUE_CASES, 0); /* b */
	assert_int_equal(s_due(s, 600, 1) & STORE_DUE_CASES, STORE_DUE_CASES);
	assert_int_equal(s_due(s, 600, 1) & STORE_DUE_CASES, STORE_DUE_CASES);
	assert_int_equal(s_forget(s, 600, 1, refs, 8), 1);
	assert_string_equal(refs[0], "case-c");
	/* Round again from the first: case-a is due at 700. */
	assert_int_equal(s_due(s, 700, 1) & STORE_DUE_CASES, STORE_DUE_CASES);
	store_close(&s);
}

/* A case_until entry no case reference could have (too long: a damaged
 * store) is removed by the walk, which goes on past it. */
static void
test_forget_damaged_case(void **state)
{
	struct env *e = *state;
	static const char *const r[] = {"team-west", NULL};
	char refs[8][STORE_NAME_MAX + 1], key[100];
	struct store *s = s_open(e, MAP_DEFAULT, true);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t v[8] = {0};
	MDB_val k = {sizeof key, key}, d = {sizeof v, v};

	s_put_until(s, 1, "case-b", r, 1000);
	store_close(&s);
	memset(key, 'a', sizeof key); /* sorts before "case-b" */
	env = s_raw_env(e);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "case_until", 0, &dbi), 0);
	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	s = s_open(e, MAP_DEFAULT, true);
	assert_int_equal(s_forget(s, 2000, 100, refs, 8), 1);
	assert_string_equal(refs[0], "case-b");
	store_close(&s);
	/* It is gone. */
	env = s_raw_env(e);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "case_until", 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &k, &d), MDB_NOTFOUND);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

/* A case without a keep-until is taken as new (its parties are put
 * without a look-up first): a party it has already is no failure, and
 * the keep-until is written again.  A known case takes a new party. */
static void
test_case_parties_again(void **state)
{
	struct env *e = *state;
	static const char *const r1[] = {"team-west", NULL};
	static const char *const r2[] = {"team-west", "team-oost", NULL};
	char refs[8][STORE_NAME_MAX + 1];
	struct store *s = s_open(e, MAP_DEFAULT, true);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {6, (void *)"case-b"};

	s_put_until(s, 1, "case-b", r1, 1000);
	store_close(&s);
	env = s_raw_env(e);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "case_until", 0, &dbi), 0);
	assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	s = s_open(e, MAP_DEFAULT, true);
	assert_int_equal(s_nparticipants(s, "case-b"), 2);
	s_put_until(s, 2, "case-b", r1, 2000); /* both parties there */
	assert_int_equal(s_nparticipants(s, "case-b"), 2);
	s_put_until(s, 3, "case-b", r2, 1500); /* known: one more */
	assert_int_equal(s_nparticipants(s, "case-b"), 3);
	/* Kept until 2000 (written again, and not moved back). */
	assert_int_equal(s_forget(s, 1999, 100, refs, 8), 0);
	assert_int_equal(s_forget(s, 2000, 100, refs, 8), 1);
	assert_string_equal(refs[0], "case-b");
	assert_int_equal(s_nparticipants(s, "case-b"), 0);
	store_close(&s);
}

/* A store of layout 2 (no case_until table) is upgraded in place: its
 * cases are kept until the time the caller gives, then forgotten. */
static void
test_upgrade_layout_2(void **state)
{
	struct env *e = *state;
	static const char *const r[] = {"team-west", NULL};
	char refs[8][STORE_NAME_MAX + 1], err[256];
	struct store *s = s_open(e, MAP_DEFAULT, true);
	struct store_opts o = {.dir = e->sub,
	    .map_size = MAP_DEFAULT,
	    .no_sync = true,
	    .upgrade_case_until_ms = 7000};
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi, meta;
	uint8_t two[8] = {0, 0, 0, 0, 0, 0, 0, 2};
	MDB_val k = {6, (void *)"layout"}, d = {sizeof two, two};

	s_put_until(s, 1, "case-u", r, 1000);
	assert_int_equal(store_upgraded_from(s), 0);
	store_close(&s);
	/* What a layout-2 store looks like. */
	env = s_raw_env(e);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "case_until", 0, &dbi), 0);
	assert_int_equal(mdb_drop(txn, dbi, 1), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	assert_int_equal(mdb_put(txn, meta, &k, &d, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	s = store_open(&o, err, sizeof err);
	if (s == NULL)
		fail_msg("store_open: %s", err);
	assert_int_equal(store_upgraded_from(s), 2);
	assert_int_equal(s_nparticipants(s, "case-u"), 2);
	assert_int_equal(s_forget(s, 6999, 100, refs, 8), 0);
	assert_int_equal(s_forget(s, 7000, 100, refs, 8), 1);
	assert_string_equal(refs[0], "case-u");
	store_close(&s);
	/* Upgraded once: the next open finds layout 3. */
	s = s_open(e, MAP_DEFAULT, true);
	assert_int_equal(store_upgraded_from(s), 0);
	store_close(&s);
}

static void
test_participants(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const r1[] = {"team-west", "kredietbank", NULL};
	static const char *const r2[] = {"kredietbank", "huisarts", NULL};
	static const char *const r3[] = {"energie", NULL};
	char out[8][STORE_NAME_MAX + 1];
	size_t n;
	bool seen[4] = {false, false, false, false};
	static const char *const want[] = {
	    "gemeente-u", "team-west", "kredietbank", "huisarts"};

	s_put1(s, 1, "case-p", r1);
	s_put1(s, 2, "case-p", r2);
	s_put1(s, 3, "case-p", r1);
	s_put1(s, 4, "case-other", r3);
	assert_int_equal(store_participants(s, "case-p", out, 8, &n), STORE_OK);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++) {
		size_t j;

		for (j = 0; j < 4; j++)
			if (strcmp(out[i], want[j]) == 0)
				break;
		assert_true(j < 4);
		assert_false(seen[j]);
		seen[j] = true;
	}
	assert_int_equal(store_participants(s, "case-p", out, 2, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(
	    store_participants(s, "case-none", out, 8, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(
	    store_participants(s, "case-other", out, 8, &n), STORE_OK);
	assert_int_equal(n, 2);
	store_close(&s);
}

struct s_audit_seen {
	uint64_t seqs[32];
	size_t n, stop_at;
};

static int
s_audit_cb(void *arg, uint64_t seq, const uint8_t *rec, size_t len)
{
	struct s_audit_seen *a = arg;
	char want[32];

	snprintf(
	    want, sizeof want, "audit record %llu", (unsigned long long)seq);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(rec, want, len);
	a->seqs[a->n++] = seq;
	return a->n == a->stop_at;
}

static void
test_audit(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, false);
	struct store_txn *t;
	struct s_audit_seen a;
	uint8_t head[STORE_HASH_LEN], got[STORE_HASH_LEN];
	uint64_t aseq;

	memset(&a, 0, sizeof a);
	assert_int_equal(store_audit_each(s, 0, s_audit_cb, &a, got), STORE_OK);
	assert_int_equal(a.n, 0);
	memset(head, 0, sizeof head);
	assert_memory_equal(got, head, STORE_HASH_LEN);

	for (int g = 0; g < 2; g++) {
		assert_int_equal(store_begin(s, &t), STORE_OK);
		for (int i = 0; i < 5; i++) {
			char rec[32];
			uint64_t next = (uint64_t)g * 5 + (uint64_t)i + 1;

			snprintf(rec, sizeof rec, "audit record %llu",
			    (unsigned long long)next);
			memset(head, (int)next, sizeof head);
			assert_int_equal(
			    store_audit_append(t, (const uint8_t *)rec,
				strlen(rec), head, &aseq),
			    STORE_OK);
			assert_int_equal(aseq, next);
		}
		assert_int_equal(store_commit(&t), STORE_OK);
	}
	/* An aborted append leaves head and sequence alone. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	memset(got, 0xee, sizeof got);
	assert_int_equal(
	    store_audit_append(t, (const uint8_t *)"junk", 4, got, &aseq),
	    STORE_OK);
	assert_int_equal(aseq, 11);
	store_abort(&t);
	assert_null(t);
	store_close(&s);

	s = s_open(e, MAP_DEFAULT, false);
	memset(&a, 0, sizeof a);
	assert_int_equal(store_audit_each(s, 0, s_audit_cb, &a, got), STORE_OK);
	assert_int_equal(a.n, 10);
	for (size_t i = 0; i < 10; i++)
		assert_int_equal(a.seqs[i], i + 1);
	memset(head, 10, sizeof head);
	assert_memory_equal(got, head, STORE_HASH_LEN);
	/* From a point, and stopping early. */
	memset(&a, 0, sizeof a);
	a.stop_at = 3;
	assert_int_equal(store_audit_each(s, 4, s_audit_cb, &a, got), STORE_OK);
	assert_int_equal(a.n, 3);
	assert_int_equal(a.seqs[0], 5);
	assert_int_equal(a.seqs[2], 7);
	/* The sequence goes on after reopen. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(
	    store_audit_append(
		t, (const uint8_t *)"audit record 11", 15, head, &aseq),
	    STORE_OK);
	assert_int_equal(aseq, 11);
	assert_int_equal(store_commit(&t), STORE_OK);
	store_close(&s);
}

/* Archived records leave the store; the anchor (the last one's seq and
 * hash) stays, survives a reopen and only moves forward; appends go on
 * with the next sequence. */
static void
test_audit_prune(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, false);
	struct store_txn *t;
	struct s_audit_seen a;
	uint8_t head[STORE_HASH_LEN], got[STORE_HASH_LEN], h4[STORE_HASH_LEN],
	    zero[STORE_HASH_LEN] = {0};
	uint64_t aseq, aseq2;

	assert_int_equal(store_audit_anchor(s, &aseq, got), STORE_OK);
	assert_int_equal(aseq, 0);
	assert_memory_equal(got, zero, STORE_HASH_LEN);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	for (uint64_t i = 1; i <= 10; i++) {
		char rec[32];

		snprintf(rec, sizeof rec, "audit record %llu",
		    (unsigned long long)i);
		memset(head, (int)i, sizeof head);
		assert_int_equal(store_audit_append(t, (const uint8_t *)rec,
				     strlen(rec), head, &aseq),
		    STORE_OK);
	}
	assert_int_equal(store_commit(&t), STORE_OK);

	/* Beyond the last record: refused, nothing removed. */
	memset(h4, 4, sizeof h4);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_audit_prune(t, 11, h4), STORE_ERROR);
	store_abort(&t);
	/* An aborted prune removes nothing. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_audit_prune(t, 4, h4), STORE_OK);
	store_abort(&t);
	memset(&a, 0, sizeof a);
	assert_int_equal(store_audit_each(s, 0, s_audit_cb, &a, got), STORE_OK);
	assert_int_equal(a.n, 10);

	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_audit_prune(t, 4, h4), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	store_close(&s);
	s = s_open(e, MAP_DEFAULT, false);
	memset(&a, 0, sizeof a);
	assert_int_equal(store_audit_each(s, 0, s_audit_cb, &a, got), STORE_OK);
	assert_int_equal(a.n, 6);
	assert_int_equal(a.seqs[0], 5);
	assert_int_equal(a.seqs[5], 10);
	memset(head, 10, sizeof head);
	assert_memory_equal(got, head, STORE_HASH_LEN);
	assert_int_equal(store_audit_anchor(s, &aseq, got), STORE_OK);
	assert_int_equal(aseq, 4);
	assert_memory_equal(got, h4, STORE_HASH_LEN);

	/* Not backwards: an older anchor changes nothing. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_audit_prune(t, 2, zero), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_audit_anchor(s, &aseq, got), STORE_OK);
	assert_int_equal(aseq, 4);
	assert_memory_equal(got, h4, STORE_HASH_LEN);

	/* All of them: the log is empty, its sequence goes on. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_audit_prune(t, 10, head), STORE_OK);
	assert_int_equal(
	    store_audit_append(
		t, (const uint8_t *)"audit record 11", 15, head, &aseq2),
	    STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(aseq2, 11);
	memset(&a, 0, sizeof a);
	assert_int_equal(store_audit_each(s, 0, s_audit_cb, &a, got), STORE_OK);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.seqs[0], 11);
	store_close(&s);
}

static void
test_seq_and_abort(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, false);
	static const char *const rcpts[] = {"x", NULL};
	struct store_txn *t;
	struct store_entry q[4];
	struct store_msg m;
	struct msgbuf b;
	uint8_t *env, *rc;
	char out[4][STORE_NAME_MAX + 1];
	uint64_t seq, depth;
	size_t n;

	assert_int_equal(s_put1(s, 1, "case-s", rcpts), 1);
	assert_int_equal(s_put1(s, 2, "case-s", rcpts), 2);

	/* Aborted: nothing of it stays, and its seq is given out again. */
	assert_int_equal(store_begin(s, &t), STORE_OK);
	seq = store_next_seq(t);
	assert_int_equal(seq, 3);
	s_msg(&b, seq, 3, "gemeente-u", "case-aborted", rcpts, 100);
	assert_int_equal(store_put(t, &b.m, 9000), STORE_OK);
	store_abort(&t);
	assert_int_equal(store_get(s, 3, &m, &env, &rc), STORE_NOT_FOUND);
	assert_int_equal(store_seen(s, b.m.id, &seq), STORE_NOT_FOUND);
	assert_int_equal(store_queue(s, "x", 2, q, 4, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_queue_depth(s, "x", &depth), STORE_OK);
	assert_int_equal(depth, 2);
	assert_int_equal(
	    store_participants(s, "case-aborted", out, 4, &n), STORE_OK);
	assert_int_equal(n, 0);
	store_close(&s);

	s = s_open(e, MAP_DEFAULT, false);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_next_seq(t), 3);
	assert_int_equal(store_next_seq(t), 4);
	assert_int_equal(store_commit(&t), STORE_OK); /* reserved, unused */
	store_close(&s);
	s = s_open(e, MAP_DEFAULT, false);
	assert_int_equal(s_put1(s, 5, "case-s", rcpts), 5);
	store_close(&s);
}

/* Fills a small map until STORE_FULL; acks still work, and free room. */
static void
test_full_map(void **state)
{
	struct env *e = *state;
	const uint64_t map = 1024 * 1024;
	struct store *s = s_open(e, map, true);
	static const char *const rcpts[] = {"x", "y", NULL};
	struct store_entry q[64];
	struct store_txn *t;
	struct store_msg m;
	uint8_t *env, *rc;
	uint64_t used, size, limit, stored = 0, idn = 1, depth;
	bool full = false;
	size_t n;
	int r;

	while (!full) {
		assert_int_equal(store_begin(s, &t), STORE_OK);
		for (int i = 0; i < 16; i++) {
			struct msgbuf b;

			s_msg(&b, store_next_seq(t), idn++, "gemeente-u",
			    "case-full", rcpts, 1024);
			r = store_put(t, &b.m, 1);
			if (r == STORE_FULL) {
				full = true;
				assert_non_null(strstr(store_error(s), "full"));
				continue; /* the rest of the group goes on */
			}
			assert_int_equal(r, STORE_OK);
			stored++;
		}
		assert_int_equal(store_commit(&t), STORE_OK);
		assert_true(stored < 2000);
	}
	assert_true(stored > 100);
	assert_int_equal(store_usage(s, &used, &size, &limit), STORE_OK);
	assert_int_equal(size, map);
	/* What is kept back: a sixteenth, but at least 64 pages, and at
	 * most half. */
	{
		uint64_t keep = 64 * (uint64_t)sysconf(_SC_PAGESIZE);
		if (keep < map / 16)
			keep = map / 16;
		if (keep > map / 2)
			keep = map / 2;
		assert_int_equal(limit, map - keep);
	}
	assert_true(used > map / 2);
	assert_true(used <= size);
	assert_int_equal(store_queue_depth(s, "x", &depth), STORE_OK);
	assert_int_equal(depth, stored);

	/* One message per transaction until even that is refused; then a
	 * fresh transaction is refused, too. */
	for (int i = 0; i < 3; i++) {
		int k;

		for (k = 0; k < 100; k++) {
			struct msgbuf b;

			assert_int_equal(store_begin(s, &t), STORE_OK);
			s_msg(&b, store_next_seq(t), idn++, "gemeente-u",
			    "case-full", rcpts, 1024);
			r = store_put(t, &b.m, 1);
			if (r == STORE_FULL) {
				store_abort(&t);
				break;
			}
			assert_int_equal(r, STORE_OK);
			assert_int_equal(store_commit(&t), STORE_OK);
			stored++;
		}
		assert_true(k < 100);
		if (i == 0)
			assert_true(k > 0);
	}
	assert_int_equal(store_usage(s, &used, &size, &limit), STORE_OK);
	assert_true(used <= size);
	assert_int_equal(store_queue_depth(s, "y", &depth), STORE_OK);
	assert_int_equal(depth, stored);

	/* A notice (from_reserve) may use half the room kept back, so the
	 * sender still hears what became of its message; the same message
	 * without it is refused, as the last one above was. */
	for (int i = 0; i < 2; i++) {
		struct msgbuf b;

		assert_int_equal(store_begin(s, &t), STORE_OK);
		s_msg(&b, store_next_seq(t), idn++, "gemeente-u", "notice",
		    rcpts, 1024);
		b.m.case_until_ms = 0;
		b.m.from_reserve = i == 1;
		r = store_put(t, &b.m, 1);
		if (i == 0) {
			assert_int_equal(r, STORE_FULL);
			store_abort(&t);
			continue;
		}
		assert_int_equal(r, STORE_OK);
		assert_int_equal(store_commit(&t), STORE_OK);
		stored++;
	}

	/* Reads, deliveries and dead letters go on. */
	assert_int_equal(store_get(s, 1, &m, &env, &rc), STORE_OK);
	free(env);
	free(rc);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	for (uint64_t seq = 1; seq <= 20; seq++) {
		uint32_t d;

		assert_int_equal(store_delivered(t, "x", seq, &d), STORE_OK);
	}
	assert_int_equal(
	    store_dead_letter(t, "y", 1, 3, 3, UINT64_MAX), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);

	/* Ack everything, one message per transaction at first (each a
	 * fresh write while the map is full), then in pages. */
	for (uint64_t seq = 1; seq <= 10; seq++) {
		assert_int_equal(store_begin(s, &t), STORE_OK);
		assert_int_equal(store_ack(t, "x", seq), STORE_OK);
		if (seq > 1)
			assert_int_equal(store_ack(t, "y", seq), STORE_OK);
		assert_int_equal(store_commit(&t), STORE_OK);
	}
	for (;;) {
		assert_int_equal(store_queue(s, "x", 0, q, 64, &n), STORE_OK);
		if (n == 0)
			break;
		assert_int_equal(store_begin(s, &t), STORE_OK);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(store_ack(t, "x", q[i].seq), STORE_OK);
			assert_int_equal(store_ack(t, "y", q[i].seq), STORE_OK);
		}
		assert_int_equal(store_commit(&t), STORE_OK);
	}
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_purge(t, "y", 1), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_usage(s, &used, &size, &limit), STORE_OK);
	assert_true(used < map / 2);

	/* Room again. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(store_begin(s, &t), STORE_OK);
		for (int j = 0; j < 16; j++) {
			struct msgbuf b;

			s_msg(&b, store_next_seq(t), idn++, "gemeente-u",
			    "case-full", rcpts, 1024);
			assert_int_equal(store_put(t, &b.m, 1), STORE_OK);
		}
		assert_int_equal(store_commit(&t), STORE_OK);
	}
	store_close(&s);
}

/* A write that meets the map's hard limit spoils its transaction:
 * nothing of it is stored and the store stays usable. */
static void
test_spoiled_txn(void **state)
{
	struct env *e = *state;
	const uint64_t map = 512 * 1024;
	struct store *s = s_open(e, map, true);
	static const char *const rcpts[] = {"x", NULL};
	static uint8_t rec[8192];
	uint8_t head[STORE_HASH_LEN] = {0};
	struct store_txn *t;
	struct msgbuf b;
	struct store_msg m;
	uint8_t *env, *rc;
	uint64_t aseq = 0, seq;
	int r = STORE_OK;

	assert_int_equal(s_put1(s, 1, "case-x", rcpts), 1);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	s_msg(&b, store_next_seq(t), 2, "gemeente-u", "case-x", rcpts, 100);
	assert_int_equal(store_put(t, &b.m, 1), STORE_OK);
	/* Audit records are not held back by the reserve (the audit must
	 * be written for every delivery); so they reach the hard limit. */
	for (int i = 0; i < 200 && r == STORE_OK; i++)
		r = store_audit_append(t, rec, sizeof rec, head, &aseq);
	assert_int_equal(r, STORE_FULL);
	assert_int_equal(store_ack(t, "x", 1), STORE_FULL);
	assert_non_null(strstr(store_error(s), "spoiled"));
	assert_int_equal(store_commit(&t), STORE_FULL);
	assert_null(t);

	assert_int_equal(store_get(s, 2, &m, &env, &rc), STORE_NOT_FOUND);
	assert_int_equal(store_seen(s, b.m.id, &seq), STORE_NOT_FOUND);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_next_seq(t), 2);
	assert_int_equal(store_ack(t, "x", 1), STORE_OK);
	assert_int_equal(store_audit_append(t, rec, 10, head, &aseq), STORE_OK);
	assert_int_equal(aseq, 1);
	assert_int_equal(store_commit(&t), STORE_OK);
	store_close(&s);
}

/* A child commits messages one by one, telling the parent each commit,
 * and is killed with SIGKILL; the parent finds every reported message
 * whole and nothing half-written. */
static void
s_crash_child(const struct env *e, int fd, bool exit_early)
{
	struct store_opts o = {.dir = e->sub, .map_size = MAP_DEFAULT};
	static const char *const rcpts[] = {"x", "y", NULL};
	char err[256];
	struct store *s = store_open(&o, err, sizeof err);

	if (s == NULL)
		_exit(2);
	for (uint64_t i = 0;; i++) {
		struct store_txn *t;
		struct msgbuf b;
		uint64_t seq[4];
		int n = (int)(i % 4) + 1;

		if (store_begin(s, &t) != STORE_OK)
			_exit(3);
		for (int k = 0; k < n; k++) {
			uint64_t x = store_next_seq(t);

			s_msg(&b, x, x, "gemeente-u", "case-crash", rcpts,
			    100 + (size_t)(x % 2000));
			if (store_put(t, &b.m, 1) != STORE_OK)
				_exit(4);
			seq[k] = x;
		}
		if (store_commit(&t) != STORE_OK)
			_exit(5);
		if (write(fd, &seq[n - 1], sizeof seq[0]) != sizeof seq[0])
			_exit(6);
		if (exit_early && i == 50)
			_exit(0); /* no close */
	}
}

static void
s_crash_round(const struct env *e, bool exit_early, uint64_t *last_seen)
{
	int fds[2];
	pid_t pid;
	uint64_t reported = 0, got;
	int status;
	size_t reads = 0;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		s_crash_child(e, fds[1], exit_early);
		_exit(7);
	}
	close(fds[1]);
	while (read(fds[0], &got, sizeof got) == sizeof got) {
		reported = got;
		if (!exit_early && ++reads == 40)
			kill(pid, SIGKILL);
	}
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (exit_early)
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	else
		assert_true(WIFSIGNALED(status));
	assert_true(reported > *last_seen);
	*last_seen = reported;
}

static void
test_crash(void **state)
{
	struct env *e = *state;
	static const char *const rcpts[] = {"x", "y", NULL};
	uint64_t reported = 0, depth, seq;
	struct store *s;

	s_crash_round(e, false, &reported);
	s_crash_round(e, true, &reported);
	s_crash_round(e, false, &reported);

	s = s_open(e, MAP_DEFAULT, false);
	/* Every reported message is there and whole; at most one commit
	 * the child finished but could not report is there as well. */
	assert_int_equal(store_queue_depth(s, "x", &depth), STORE_OK);
	assert_true(depth >= reported);
	assert_true(depth <= reported + 4);
	for (seq = 1; seq <= depth; seq++) {
		struct msgbuf b;

		s_msg(&b, seq, seq, "gemeente-u", "case-crash", rcpts,
		    100 + (size_t)(seq % 2000));
		s_expect_msg(s, &b);
	}
	{
		struct store_msg m;
		uint8_t *env, *rc;

		assert_int_equal(
		    store_get(s, depth + 1, &m, &env, &rc), STORE_NOT_FOUND);
	}
	/* The sequence goes on past everything stored. */
	assert_int_equal(s_put1(s, 1u << 30, "case-crash", rcpts), depth + 1);
	store_close(&s);
}

/* Writes raw bytes as message `seq` with LMDB itself (store closed). */
static void
s_inject(const struct env *e, uint64_t seq, const void *p, size_t len,
    void *saved, size_t *saved_len)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t k8[8];
	MDB_val k = {sizeof k8, k8}, d;

	for (int i = 0; i < 8; i++)
		k8[i] = (uint8_t)(seq >> (56 - 8 * i));
	env = s_raw_env(e);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "msgs", 0, &dbi), 0);
	if (saved != NULL) {
		assert_int_equal(mdb_get(txn, dbi, &k, &d), 0);
		assert_true(d.mv_size <= *saved_len);
		memcpy(saved, d.mv_data, d.mv_size);
		*saved_len = d.mv_size;
	}
	if (p != NULL) {
		d.mv_size = len;
		d.mv_data = (void *)p;
		assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void
test_damaged_records(void **state)
{
	struct env *e = *state;
	static const char *const rcpts[] = {"x", "y", NULL};
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static uint8_t good[8192], bad[8192];
	size_t good_len = sizeof good;
	struct store_txn *t;
	struct store_msg m;
	uint8_t *env, *rc;
	uint64_t seq = s_put1(s, 1, "case-z", rcpts);

	store_close(&s);
	s_inject(e, seq, NULL, 0, good, &good_len);
	assert_true(good_len > 100);

	/* Every truncation, and single flipped length bytes. */
	for (size_t cut = 0; cut < good_len; cut += cut < 80 ? 1 : 37) {
		s_inject(e, seq, good, cut, NULL, NULL);
		s = s_open(e, MAP_DEFAULT, true);
		assert_int_equal(store_get(s, seq, &m, &env, &rc), STORE_ERROR);
		assert_null(env);
		assert_null(rc);
		assert_non_null(strstr(store_error(s), "damaged"));
		store_close(&s);
	}
	memcpy(bad, good, good_len);
	bad[good_len] = 0; /* one byte too many */
	s_inject(e, seq, bad, good_len + 1, NULL, NULL);
	s = s_open(e, MAP_DEFAULT, true);
	assert_int_equal(store_get(s, seq, &m, &env, &rc), STORE_ERROR);
	store_close(&s);
	for (size_t i = 0; i < 60; i++) {
		memcpy(bad, good, good_len);
		bad[i] ^= 0xff;
		s_inject(e, seq, bad, good_len, NULL, NULL);
		s = s_open(e, MAP_DEFAULT, true);
		{
			int r = store_get(s, seq, &m, &env, &rc);

			/* Flipping a time or id byte is not detectable, but
			 * it must never crash or read out of bounds. */
			assert_true(r == STORE_OK || r == STORE_ERROR);
			free(env);
			free(rc);
		}
		store_close(&s);
	}
	/* An ack of a damaged message still empties the queue. */
	s_inject(e, seq, good, 10, NULL, NULL);
	s = s_open(e, MAP_DEFAULT, true);
	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_ack(t, "x", seq), STORE_OK);
	assert_int_equal(store_ack(t, "y", seq), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
	store_close(&s);
}

static void
test_open_refusals(void **state)
{
	struct env *e = *state;
	struct store_opts o = {.dir = e->sub, .map_size = MAP_DEFAULT};
	char err[256];
	struct store *s;
	uint64_t used, size, limit;

	o.map_size = 1000;
	assert_null(store_open(&o, err, sizeof err));
	assert_non_null(strstr(err, "map size"));
	o.map_size = MAP_DEFAULT;
	o.backend = "postgresql";
	assert_null(store_open(&o, err, sizeof err));
	assert_non_null(strstr(err, "unknown store backend"));
	o.backend = NULL;

	assert_int_equal(mkdir(e->sub, 0770), 0);
	assert_int_equal(chmod(e->sub, 0770), 0);
	assert_null(store_open(&o, err, sizeof err));
	assert_non_null(strstr(err, "group or others"));
	assert_int_equal(chmod(e->sub, 0700), 0);
	s = store_open(&o, err, sizeof err);
	assert_non_null(s);
	assert_string_equal(store_error(s), "no store error");
	assert_int_equal(store_usage(s, &used, &size, &limit), STORE_OK);
	assert_true(used > 0);
	assert_true(used < 1024 * 1024);
	assert_int_equal(size, MAP_DEFAULT);
	assert_int_equal(limit, MAP_DEFAULT - MAP_DEFAULT / 16);
	store_close(&s);
}

struct s_reader {
	struct store *s;
	atomic_bool *stop;
	atomic_ulong rounds;
	unsigned long failures;
};

/* Reads queues and messages while the main thread writes: every queued
 * message must be readable and whole, and queues strictly ordered. */
static void *
s_reader_main(void *arg)
{
	struct s_reader *r = arg;
	static const char *const rcpts[] = {"x", "y", NULL};

	while (!atomic_load(r->stop)) {
		struct store_entry q[64];
		uint64_t after = 0;
		size_t n;

		do {
			if (store_queue(r->s, "y", after, q, 64, &n) !=
			    STORE_OK)
				r->failures++;
			for (size_t i = 0; i < n; i++) {
				struct store_msg m;
				uint8_t *env, *rc, want[300];

				if (q[i].seq <= after)
					r->failures++;
				after = q[i].seq;
				if (store_get(r->s, q[i].seq, &m, &env, &rc) !=
				    STORE_OK) {
					r->failures++;
					continue;
				}
				s_fill(want, 300, q[i].seq);
				if (m.envelope_len != 300 ||
				    memcmp(env, want, 300) != 0 ||
				    m.n_recipients != 2 ||
				    strcmp(m.recipients[1], rcpts[1]) != 0)
					r->failures++;
				free(env);
				free(rc);
			}
		} while (n == 64);
		atomic_fetch_add(&r->rounds, 1);
	}
	return NULL;
}

static void
test_readers_in_threads(void **state)
{
	struct env *e = *state;
	struct store *s = s_open(e, MAP_DEFAULT, true);
	static const char *const rcpts[] = {"x", "y", NULL};
	atomic_bool stop = false;
	struct s_reader r[2] = {
	    {.s = s, .stop = &stop}, {.s = s, .stop = &stop}};
	pthread_t th[2];
	uint64_t g;

	for (int i = 0; i < 2; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, s_reader_main, &r[i]), 0);
	/* At least 100 commits, and on until each reader has read a few
	 * rounds while commits went on. */
	for (g = 0; g < 100 || atomic_load(&r[0].rounds) < 5 ||
	     atomic_load(&r[1].rounds) < 5;
	     g++) {
		struct store_txn *t;

		assert_true(g < 100000);
		assert_int_equal(store_begin(s, &t), STORE_OK);
		for (int i = 0; i < 8; i++) {
			struct msgbuf b;

			s_msg(&b, store_next_seq(t), 7000 + g * 8 + (uint64_t)i,
			    "gemeente-u", "case-t", rcpts, 300);
			assert_int_equal(store_put(t, &b.m, 1), STORE_OK);
		}
		/* Acks only for x: y keeps every message readable. */
		if (g > 0)
			assert_int_equal(
			    store_ack(t, "x", g * 8 - 3), STORE_OK);
		assert_int_equal(store_commit(&t), STORE_OK);
		if (g >= 100)
			usleep(1000);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(r[i].failures, 0);
	}
	store_close(&s);
}

/* LMDB's own order, as mdb_cmp_memn computes it. */
static int
s_memn(const MDB_val *a, const MDB_val *b)
{
	size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
	int d = n > 0 ? memcmp(a->mv_data, b->mv_data, n) : 0;

	if (d != 0)
		return d;
	return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

static int
s_sign(int v)
{
	return (v > 0) - (v < 0);
}

/* The store's compare function orders every pair of keys as LMDB's
 * default does, so the tables read alike with and without it: keys that
 * share a prefix, differ only past the first eight bytes or in the last
 * bytes, have bytes above 0x7f, or are prefixes of each other. */
static void
test_cmp_order(void **state)
{
	uint8_t a[40], b[40];
	uint32_t seed = 12345;

	(void)state;
	for (int i = 0; i < 200000; i++) {
		size_t la, lb, same;
		MDB_val va, vb;
		for (size_t j = 0; j < sizeof a; j++) {
			seed = seed * 1103515245u + 12345u;
			a[j] = (uint8_t)(seed >> 16);
			seed = seed * 1103515245u + 12345u;
			/* Mostly a few values, so that keys often tie. */
			b[j] = (uint8_t)((seed >> 16) % 4 == 0 ? seed >> 24
							       : 0x80);
			a[j] = (seed >> 20) % 3 == 0 ? a[j] : 0x80;
		}
		seed = seed * 1103515245u + 12345u;
		la = (seed >> 8) % 33;
		lb = (seed >> 16) % 33;
		same = (seed >> 24) % 33; /* a shared prefix */
		memcpy(b, a, same < lb ? same : lb);
		va = (MDB_val){la, a};
		vb = (MDB_val){lb, b};
		assert_int_equal(
		    s_sign(store_lmdb_cmp(&va, &vb)), s_sign(s_memn(&va, &vb)));
		assert_int_equal(
		    s_sign(store_lmdb_cmp(&vb, &va)), s_sign(s_memn(&vb, &va)));
		assert_int_equal(store_lmdb_cmp(&va, &va), 0);
	}
}

/* Each test gets a fresh folder. */
#define T(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_roundtrip),
	    T(test_queue_order_and_paging),
	    T(test_ack),
	    T(test_delivered_survives_reopen),
	    T(test_dead_letters),
	    T(test_dedup),
	    T(test_expiry_index),
	    T(test_dead_retention),
	    T(test_receipt_outlives_id),
	    T(test_participants),
	    T(test_forget_cases),
	    T(test_due),
	    T(test_get_clears),
	    T(test_forget_damaged_case),
	    T(test_case_parties_again),
	    T(test_upgrade_layout_2),
	    T(test_ack_id),
	    T(test_audit),
	    T(test_audit_prune),
	    T(test_seq_and_abort),
	    T(test_full_map),
	    T(test_spoiled_txn),
	    T(test_readers_in_threads),
	    T(test_crash),
	    T(test_damaged_records),
	    T(test_open_refusals),
	    cmocka_unit_test(test_cmp_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
