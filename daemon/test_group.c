/*
 * Unit tests of a group commit's recorded writes (group.c) and of the
 * store's writer thread (writer.c), on a real LMDB store in a private
 * temporary folder: audit records chained from the group's head when
 * applied, a submission stored under the number it was given, one the
 * store refuses answered and left out of the log, the walk over blocks
 * in recorded order, incremental and repeated (rewound) application,
 * what a group says about queue entries before it is stored, a failed
 * group storing nothing, and the writer's handing over and back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "broker.h"
#include "schakel_err.h"
#include "store.h"
#include "testutil.h"
#include "writer.h"

#define S_MAP ((uint64_t)64 * 1024 * 1024)
#define S_T0 1780000000000ULL /* time of audit event 0 */
#define S_NPEND 4
#define S_ENV_LEN 300
#define S_RCPT_LEN 64
#define S_MANY 1500 /* audit events over more than 3 blocks */
#define S_ACCEPTED_MAX 4
#define S_DESTROYS 20 /* writers destroyed with a job in hand */

/* A job for the writer: appends one audit record (event n, chained from
 * head) and returns `ret`; with `hold` it first waits for `go`. */
struct s_job {
	sem_t go;
	bool hold;
	int ret;
	uint64_t n;
	uint8_t head[AUDIT_HASH_LEN];
	int calls;
	int append_rc;
};

struct s_env {
	char dir[128];
	char sub[160]; /* dir/store */
	struct store *s;
	struct group g;
	uint8_t head[AUDIT_HASH_LEN];    /* the chain head the group moves */
	uint8_t durable[AUDIT_HASH_LEN]; /* as last committed */
	/* What a test leaves open when it fails, for the teardown. */
	struct store_txn *t;
	struct writer *w;
	struct s_job job; /* test_writer's */
	struct pending p[S_NPEND];
	uint8_t env[S_NPEND][S_ENV_LEN];
	uint8_t rcpt[S_NPEND][S_RCPT_LEN];
};

static const char *const s_two[] = {"team-west", "kredietbank", NULL};

static int
s_setup(void **state)
{
	struct s_env *e = calloc(1, sizeof(*e));
	struct store_opts o = {.map_size = S_MAP, .no_sync = true};
	char err[256];

	if (e == NULL || tu_mkdtemp(e->dir, sizeof e->dir) != 0) {
		free(e);
		return -1;
	}
	snprintf(e->sub, sizeof e->sub, "%s/store", e->dir);
	if (sem_init(&e->job.go, 0, 0) != 0) {
		(void)tu_rmrf(e->dir);
		free(e);
		return -1;
	}
	o.dir = e->sub;
	e->s = store_open(&o, err, sizeof err);
	if (e->s == NULL) {
		print_error("store_open: %s\n", err);
		(void)sem_destroy(&e->job.go);
		(void)tu_rmrf(e->dir);
		free(e);
		return -1;
	}
	if (group_init(&e->g, e->head) != 0) {
		group_free(&e->g);
		store_close(&e->s);
		(void)sem_destroy(&e->job.go);
		(void)tu_rmrf(e->dir);
		free(e);
		return -1;
	}
	*state = e;
	return 0;
}

static int
s_teardown(void **state)
{
	struct s_env *e = *state;
	int rc;

	/* A job held in test_writer is let go. */
	if (e->w != NULL)
		(void)sem_post(&e->job.go);
	writer_destroy(&e->w);
	store_abort(&e->t);
	group_free(&e->g);
	store_close(&e->s);
	(void)sem_destroy(&e->job.go);
	rc = tu_rmrf(e->dir);
	free(e);
	return rc;
}

/* Fills pending slot i: message `seq` with an id from `idn`, from
 * gemeente-utrecht to the NULL-terminated recipients, its envelope and
 * receipt bytes derived from seq. */
static struct pending *
s_pending(struct s_env *e, size_t i, uint64_t seq, uint64_t idn,
    const char *const *rcpts)
{
	struct pending *p = &e->p[i];

	memset(p, 0, sizeof(*p));
	p->msg.seq = seq;
	for (int k = 0; k < 8; k++)
		p->msg.id[k] = (uint8_t)(idn >> (8 * k));
	p->msg.id[15] = 0x5a;
	snprintf(p->msg.sender, sizeof p->msg.sender, "%s", "gemeente-utrecht");
	snprintf(p->msg.type, sizeof p->msg.type, "%s", "shv.melding.v1");
	snprintf(p->msg.case_ref, sizeof p->msg.case_ref, "zaak-%llu",
	    (unsigned long long)idn);
	snprintf(p->purpose, sizeof p->purpose, "%s", "schuldhulp");
	for (size_t r = 0; rcpts[r] != NULL; r++) {
		snprintf(p->msg.recipients[r], sizeof p->msg.recipients[r],
		    "%s", rcpts[r]);
		snprintf(p->msg.agreements[r], sizeof p->msg.agreements[r],
		    "agreement-%zu", r);
		p->msg.n_recipients++;
	}
	for (size_t k = 0; k < S_ENV_LEN; k++)
		e->env[i][k] = (uint8_t)(seq * 31 + k * 7);
	for (size_t k = 0; k < S_RCPT_LEN; k++)
		e->rcpt[i][k] = (uint8_t)(seq * 13 + k * 3 + 1);
	p->msg.envelope = e->env[i];
	p->msg.envelope_len = S_ENV_LEN;
	p->msg.receipt = e->rcpt[i];
	p->msg.receipt_len = S_RCPT_LEN;
	p->msg.accepted_ms = S_T0 + 100000 + seq;
	p->msg.expires_ms = S_T0 + 900000 + seq;
	p->msg.case_until_ms = S_T0 + 999000 + seq;
	p->code = SCHAKEL_OK;
	return p;
}

/* Records audit event n: a delivery of seq n at time S_T0 + n, with
 * the fields a real one has (some 370 bytes encoded). */
static void
s_audit(struct group *g, uint64_t n)
{
	static struct audit_event ev; /* large: not on the stack */
	static const char *const to[] = {
	    "team-west", "kredietbank", "huisarts"};

	memset(&ev, 0, sizeof ev);
	ev.kind = AUDIT_DELIVERED;
	ev.time_ms = S_T0 + n;
	ev.seq = n;
	ev.has_id = true;
	memcpy(ev.id, &n, sizeof n);
	snprintf(ev.from, sizeof ev.from, "%s", "gemeente-utrecht");
	snprintf(ev.type, sizeof ev.type, "%s", "shv.melding.v1");
	snprintf(ev.case_ref, sizeof ev.case_ref, "zaak-%llu",
	    (unsigned long long)n);
	snprintf(ev.purpose, sizeof ev.purpose, "%s", "schuldhulp");
	ev.n_to = 3;
	ev.n_agreements = 3;
	for (size_t i = 0; i < 3; i++) {
		snprintf(ev.to[i], sizeof ev.to[i], "%s", to[i]);
		snprintf(ev.agreements[i], sizeof ev.agreements[i],
		    "schuldhulp-utrecht-%zu", i);
	}
	ev.count = (uint32_t)(n % 7);
	assert_int_equal(group_audit(g, &ev), SCHAKEL_OK);
}

/* Applies the group in a transaction of its own and commits it. */
static void
s_commit(struct s_env *e)
{
	assert_int_equal(store_begin(e->s, &e->t), STORE_OK);
	assert_int_equal(group_apply(&e->g, e->t), STORE_OK);
	assert_int_equal(store_commit(&e->t), STORE_OK);
	memcpy(e->durable, e->head, AUDIT_HASH_LEN);
}

/* What one record of the stored log was. */
struct s_rec {
	enum audit_event_kind kind;
	uint64_t time_ms;
	uint64_t seq;
};

/* The stored log, read with store_audit_each and checked as a chain from
 * the first record on. */
struct s_log {
	struct audit_verifier v;
	size_t n;
	struct s_rec rec[S_MANY + 16];
	uint64_t last_aseq;
	bool aseq_gap;     /* audit sequences not 1, 2, 3, ... */
	bool undecodable;  /* a record audit_decode refused */
	size_t n_accepted; /* ACCEPTED records; the first few kept whole */
	struct audit_event accepted[S_ACCEPTED_MAX];
	uint8_t stored_head[AUDIT_HASH_LEN];
};

static int
s_log_one(void *arg, uint64_t aseq, const uint8_t *rec, size_t len)
{
	struct s_log *l = arg;
	static struct audit_event ev;
	uint8_t prev[AUDIT_HASH_LEN];

	if (aseq != l->last_aseq + 1)
		l->aseq_gap = true;
	l->last_aseq = aseq;
	(void)audit_verify_next(&l->v, (const char *)rec, len);
	if (audit_decode((const char *)rec, len, &ev, prev) != 0) {
		l->undecodable = true;
		return 0;
	}
	if (l->n < sizeof l->rec / sizeof l->rec[0]) {
		l->rec[l->n].kind = ev.kind;
		l->rec[l->n].time_ms = ev.time_ms;
		l->rec[l->n].seq = ev.seq;
	}
	l->n++;
	if (ev.kind == AUDIT_ACCEPTED) {
		if (l->n_accepted < S_ACCEPTED_MAX)
			l->accepted[l->n_accepted] = ev;
		l->n_accepted++;
	}
	return 0;
}

/* Reads the whole log into *l; checks that it is one unbroken chain
 * from zeros and that the stored head is its last record's hash.
 * Returns the number of records. */
static size_t
s_read_log(struct s_env *e, struct s_log *l)
{
	memset(l, 0, sizeof(*l));
	assert_int_equal(
	    store_audit_each(e->s, 0, s_log_one, l, l->stored_head), STORE_OK);
	assert_false(l->undecodable);
	assert_false(l->aseq_gap);
	assert_int_equal(l->v.first_bad, 0);
	assert_int_equal(l->v.records, l->n);
	assert_memory_equal(l->stored_head, l->v.head, AUDIT_HASH_LEN);
	return l->n;
}

/* Record i of the log was audit event n (s_audit). */
static void
s_expect_event(const struct s_log *l, size_t i, uint64_t n)
{
	assert_true(i < l->n);
	assert_int_equal(l->rec[i].kind, AUDIT_DELIVERED);
	assert_int_equal(l->rec[i].time_ms, S_T0 + n);
	assert_int_equal(l->rec[i].seq, n);
}

/* Record i of the log accepted p's message. */
static void
s_expect_accepted(const struct s_log *l, size_t i, const struct pending *p)
{
	assert_true(i < l->n);
	assert_int_equal(l->rec[i].kind, AUDIT_ACCEPTED);
	assert_int_equal(l->rec[i].seq, p->msg.seq);
	assert_int_equal(l->rec[i].time_ms, p->msg.accepted_ms);
}

/* Message p->msg is stored as it was given, under its own seq. */
static void
s_expect_stored(struct s_env *e, const struct pending *p)
{
	static struct store_msg m;
	uint8_t *env = NULL, *rcpt = NULL;
	uint64_t seq = 0;

	memset(&m, 0, sizeof m);
	assert_int_equal(
	    store_get(e->s, p->msg.seq, &m, &env, &rcpt), STORE_OK);
	assert_int_equal(m.seq, p->msg.seq);
	assert_memory_equal(m.id, p->msg.id, STORE_ID_LEN);
	assert_string_equal(m.sender, p->msg.sender);
	assert_string_equal(m.type, p->msg.type);
	assert_string_equal(m.case_ref, p->msg.case_ref);
	assert_int_equal(m.accepted_ms, p->msg.accepted_ms);
	assert_int_equal(m.expires_ms, p->msg.expires_ms);
	assert_int_equal(m.n_recipients, p->msg.n_recipients);
	for (size_t r = 0; r < m.n_recipients; r++)
		assert_string_equal(m.recipients[r], p->msg.recipients[r]);
	assert_int_equal(m.envelope_len, p->msg.envelope_len);
	assert_int_equal(m.receipt_len, p->msg.receipt_len);
	assert_memory_equal(env, p->msg.envelope, p->msg.envelope_len);
	assert_memory_equal(rcpt, p->msg.receipt, p->msg.receipt_len);
	free(env);
	free(rcpt);
	assert_int_equal(store_seen(e->s, p->msg.id, &seq), STORE_OK);
	assert_int_equal(seq, p->msg.seq);
}

static void
s_expect_absent(struct s_env *e, uint64_t seq)
{
	static struct store_msg m;

	assert_int_equal(store_get(e->s, seq, &m, NULL, NULL), STORE_NOT_FOUND);
}

/* The queue of `party` holds exactly the n seqs in want[] (in order);
 * their delivery counts go to counts[] unless NULL. */
static void
s_expect_queue(struct s_env *e, const char *party, const uint64_t *want,
    size_t n, uint32_t *counts)
{
	struct store_entry q[16];
	size_t got = 99;

	assert_int_equal(store_queue(e->s, party, 0, q, 16, &got), STORE_OK);
	assert_int_equal(got, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(q[i].seq, want[i]);
		if (counts != NULL)
			counts[i] = q[i].deliveries;
	}
}

static void
s_zero_head(uint8_t *h)
{
	memset(h, 0, AUDIT_HASH_LEN);
}

static bool
s_is_zero(const uint8_t *h)
{
	static const uint8_t zero[AUDIT_HASH_LEN];

	return memcmp(h, zero, AUDIT_HASH_LEN) == 0;
}

/* 1. Audit records and a submission, applied: one chain from the head
 * the group was given, in recorded order, the accepted record made at
 * its place with the message's fields; the message stored under the
 * seq it was given although no transaction handed that number out; a
 * second group (through the writer thread) continues the chain. */
static void
test_chain(void **state)
{
	struct s_env *e = *state;
	static struct s_log l;
	struct pending *p0, *p1;
	struct writer_result r;
	const uint64_t q1[] = {7}, q2[] = {7, 9};
	char err[256];

	s_zero_head(e->head);
	assert_true(group_empty(&e->g));
	for (uint64_t n = 0; n < 3; n++)
		s_audit(&e->g, n);
	p0 = s_pending(e, 0, 7, 1001, s_two);
	assert_int_equal(group_put(&e->g, p0), SCHAKEL_OK);
	s_audit(&e->g, 3);
	s_audit(&e->g, 4);
	assert_int_equal(e->g.nops, 6);
	assert_false(group_empty(&e->g));

	assert_int_equal(store_begin(e->s, &e->t), STORE_OK);
	assert_int_equal(group_apply(&e->g, e->t), STORE_OK);
	assert_false(s_is_zero(e->head));
	assert_int_equal(store_commit(&e->t), STORE_OK);
	assert_int_equal(p0->code, SCHAKEL_OK);

	assert_int_equal(s_read_log(e, &l), 6);
	assert_memory_equal(l.stored_head, e->head, AUDIT_HASH_LEN);
	s_expect_event(&l, 0, 0);
	s_expect_event(&l, 1, 1);
	s_expect_event(&l, 2, 2);
	s_expect_accepted(&l, 3, p0);
	s_expect_event(&l, 4, 3);
	s_expect_event(&l, 5, 4);
	/* The accepted record says who, what, to whom, under what. */
	assert_int_equal(l.n_accepted, 1);
	assert_true(l.accepted[0].has_id);
	assert_memory_equal(l.accepted[0].id, p0->msg.id, AUDIT_ID_LEN);
	assert_string_equal(l.accepted[0].from, "gemeente-utrecht");
	assert_string_equal(l.accepted[0].type, "shv.melding.v1");
	assert_string_equal(l.accepted[0].case_ref, "zaak-1001");
	assert_string_equal(l.accepted[0].purpose, "schuldhulp");
	assert_int_equal(l.accepted[0].n_to, 2);
	assert_string_equal(l.accepted[0].to[0], "team-west");
	assert_string_equal(l.accepted[0].to[1], "kredietbank");
	assert_int_equal(l.accepted[0].n_agreements, 2);
	assert_string_equal(l.accepted[0].agreements[1], "agreement-1");

	/* Stored under 7: numbers 1..7 were taken by the group's
	 * transaction, so the next one handed out is 8. */
	s_expect_stored(e, p0);
	s_expect_queue(e, "team-west", q1, 1, NULL);
	s_expect_queue(e, "kredietbank", q1, 1, NULL);
	assert_int_equal(store_begin(e->s, &e->t), STORE_OK);
	assert_int_equal(store_next_seq(e->t), 8);
	store_abort(&e->t);

	/* The next group goes on from the head the first one left, here
	 * through the writer thread; seq 8 is skipped. */
	group_reset(&e->g);
	assert_true(group_empty(&e->g));
	s_audit(&e->g, 5);
	p1 = s_pending(e, 1, 9, 1002, s_two);
	assert_int_equal(group_put(&e->g, p1), SCHAKEL_OK);
	s_audit(&e->g, 6);
	e->w = writer_new(e->s, err, sizeof err);
	assert_non_null(e->w);
	writer_start(e->w, group_apply, NULL, &e->g);
	assert_true(writer_take(e->w, true, &r));
	writer_destroy(&e->w);
	assert_int_equal(r.rc, STORE_OK);
	assert_true(r.began);
	assert_true(r.commit_s >= 0);
	assert_int_equal(p1->code, SCHAKEL_OK);

	assert_int_equal(s_read_log(e, &l), 9);
	assert_memory_equal(l.stored_head, e->head, AUDIT_HASH_LEN);
	s_expect_accepted(&l, 3, p0);
	s_expect_event(&l, 6, 5);
	s_expect_accepted(&l, 7, p1);
	s_expect_event(&l, 8, 6);
	s_expect_stored(e, p1);
	s_expect_absent(e, 8);
	s_expect_queue(e, "team-west", q2, 2, NULL);
}

/* 1b. A group continues whatever head it is given (a store whose chain
 * began elsewhere): its first record's prev is that head. */
static void
test_chain_from_head(void **state)
{
	struct s_env *e = *state;
	static struct s_log l;
	uint8_t start[AUDIT_HASH_LEN];

	for (size_t i = 0; i < AUDIT_HASH_LEN; i++)
		start[i] = (uint8_t)(0xc0 + i);
	memcpy(e->head, start, AUDIT_HASH_LEN);
	s_audit(&e->g, 0);
	assert_int_equal(
	    group_put(&e->g, s_pending(e, 0, 1, 2001, s_two)), SCHAKEL_OK);
	s_audit(&e->g, 1);
	s_commit(e);

	memset(&l, 0, sizeof l);
	memcpy(l.v.head, start, AUDIT_HASH_LEN);
	assert_int_equal(
	    store_audit_each(e->s, 0, s_log_one, &l, l.stored_head), STORE_OK);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.v.first_bad, 0);
	assert_memory_equal(l.v.head, e->head, AUDIT_HASH_LEN);
	assert_memory_equal(l.stored_head, e->head, AUDIT_HASH_LEN);
}

/* 2. A submission the store refuses (its id is stored already, or was
 * earlier in the same group) gets SCHAKEL_E_DUPLICATE_ID, a refused
 * record in its place (not an accepted one) and no message; the rest of
 * the group is stored. */
static void
test_refused_put(void **state)
{
	struct s_env *e = *state;
	static struct s_log l;
	struct pending *p0, *dup, *p2, *dup2;
	const uint64_t q[] = {1, 3};
	uint64_t seq = 0;

	s_zero_head(e->head);
	p0 = s_pending(e, 0, 1, 3001, s_two);
	assert_int_equal(group_put(&e->g, p0), SCHAKEL_OK);
	s_commit(e);
	assert_int_equal(p0->code, SCHAKEL_OK);
	group_reset(&e->g);

	s_audit(&e->g, 10);
	dup = s_pending(e, 1, 2, 3001, s_two); /* p0's id */
	assert_int_equal(group_put(&e->g, dup), SCHAKEL_OK);
	p2 = s_pending(e, 2, 3, 3002, s_two);
	assert_int_equal(group_put(&e->g, p2), SCHAKEL_OK);
	dup2 = s_pending(e, 3, 4, 3002, s_two); /* p2's, in this group */
	assert_int_equal(group_put(&e->g, dup2), SCHAKEL_OK);
	s_audit(&e->g, 11);
	s_commit(e);

	assert_int_equal(dup->code, SCHAKEL_E_DUPLICATE_ID);
	assert_int_equal(p2->code, SCHAKEL_OK);
	assert_int_equal(dup2->code, SCHAKEL_E_DUPLICATE_ID);
	assert_int_equal(s_read_log(e, &l), 6);
	assert_memory_equal(l.stored_head, e->head, AUDIT_HASH_LEN);
	s_expect_accepted(&l, 0, p0);
	s_expect_event(&l, 1, 10);
	assert_int_equal(l.rec[2].kind, AUDIT_REFUSED);
	assert_int_equal(l.rec[2].seq, 0);
	s_expect_accepted(&l, 3, p2);
	assert_int_equal(l.rec[4].kind, AUDIT_REFUSED);
	s_expect_event(&l, 5, 11);
	assert_int_equal(l.n_accepted, 2);
	s_expect_stored(e, p0);
	s_expect_stored(e, p2);
	s_expect_absent(e, 2);
	s_expect_absent(e, 4);
	assert_int_equal(store_seen(e->s, dup->msg.id, &seq), STORE_OK);
	assert_int_equal(seq, 1);
	s_expect_queue(e, "team-west", q, 2, NULL);
	s_expect_queue(e, "kredietbank", q, 2, NULL);
}

/* Checks that op is audit event n (s_audit). */
static void
s_expect_op_event(const struct group_op *op, uint64_t n)
{
	static struct audit_event ev;
	uint8_t prev[AUDIT_HASH_LEN];

	assert_int_equal(op->kind, GROUP_AUDIT);
	assert_null(op->p);
	assert_int_equal(
	    audit_decode((const char *)op->data, op->len, &ev, prev), 0);
	assert_int_equal(ev.time_ms, S_T0 + n);
	assert_int_equal(ev.seq, n);
}

static size_t
s_blocks(const struct group *g)
{
	size_t n = 0;

	for (const struct group_block *b = g->first; b != NULL; b = b->next)
		n++;
	return n;
}

/* 3a. group_next hands out every write once, in recorded order, across
 * blocks; at the end it stays put and goes on with what is recorded
 * later. */
static void
test_next_order(void **state)
{
	struct s_env *e = *state;
	struct group_pos pos = {0};
	struct group_op op;
	const struct group_block *seen = NULL;
	struct pending *p = s_pending(e, 0, 42, 4001, s_two);
	size_t blocks = 0, nops = 0;
	uint64_t n = 0;
	bool put_seen = false;

	for (uint64_t i = 0; i < S_MANY; i++) {
		s_audit(&e->g, i);
		if (i % 50 == 49)
			assert_int_equal(
			    group_delivered(&e->g, "team-west", i, 1),
			    SCHAKEL_OK);
		if (i == 700)
			assert_int_equal(group_put(&e->g, p), SCHAKEL_OK);
	}
	assert_int_equal(e->g.nops, S_MANY + S_MANY / 50 + 1);
	assert_true(s_blocks(&e->g) > 3);

	while (group_next(&e->g, &pos, &op)) {
		if (pos.blk != seen) {
			seen = pos.blk;
			blocks++;
		}
		nops++;
		if (op.kind == GROUP_PUT) {
			assert_false(put_seen);
			assert_int_equal(n, 701);
			assert_ptr_equal(op.p, p);
			put_seen = true;
			continue;
		}
		if (op.kind == GROUP_DELIVERED) {
			uint8_t key[8 + STORE_NAME_MAX];
			size_t len = group_key(key, "team-west", n - 1);
			assert_int_equal(n % 50, 0);
			assert_null(op.p);
			assert_int_equal(op.len, len);
			assert_memory_equal(op.data, key, len);
			continue;
		}
		s_expect_op_event(&op, n);
		n++;
	}
	assert_int_equal(n, S_MANY);
	assert_true(put_seen);
	assert_int_equal(nops, e->g.nops);
	assert_int_equal(blocks, s_blocks(&e->g));
	/* At the end it stays at the end... */
	assert_false(group_next(&e->g, &pos, &op));
	/* ... and hands out what comes later, once. */
	s_audit(&e->g, S_MANY);
	assert_true(group_next(&e->g, &pos, &op));
	s_expect_op_event(&op, S_MANY);
	assert_false(group_next(&e->g, &pos, &op));
	/* A fresh walk starts at the first write. */
	memset(&pos, 0, sizeof pos);
	assert_true(group_next(&e->g, &pos, &op));
	s_expect_op_event(&op, 0);
}

/* 3b. group_apply into one transaction, again and again while the group
 * grows (after every write for the first thousand, so that it meets the
 * end of a full block, then after a large batch): each write is applied
 * once, in order, chained.  The blocks come from the spare list of a
 * group that was reset. */
static void
test_apply_incremental(void **state)
{
	struct s_env *e = *state;
	static struct s_log l;

	/* Blocks to reuse. */
	for (uint64_t i = 0; i < S_MANY; i++)
		s_audit(&e->g, 1000000 + i);
	group_reset(&e->g);
	assert_true(group_empty(&e->g));

	s_zero_head(e->head);
	assert_int_equal(store_begin(e->s, &e->t), STORE_OK);
	assert_int_equal(group_apply(&e->g, e->t), STORE_OK); /* nothing yet */
	for (uint64_t i = 0; i < 1000; i++) {
		s_audit(&e->g, i);
		assert_int_equal(group_apply(&e->g, e->t), STORE_OK);
	}
	/* Those met the end of a block (and went on in the next) twice. */
	assert_true(s_blocks(&e->g) >= 3);
	for (uint64_t i = 1000; i < S_MANY; i++)
		s_audit(&e->g, i);
	assert_int_equal(group_apply(&e->g, e->t), STORE_OK);
	assert_int_equal(group_apply(&e->g, e->t), STORE_OK); /* nothing new */
	assert_true(s_blocks(&e->g) > 3);
	assert_int_equal(store_commit(&e->t), STORE_OK);

	assert_int_equal(s_read_log(e, &l), S_MANY);
	for (uint64_t i = 0; i < S_MANY; i++)
		s_expect_event(&l, (size_t)i, i);
	assert_memory_equal(l.stored_head, e->head, AUDIT_HASH_LEN);
}

/* 4. A transaction dropped after the group was applied to it: rewound
 * (and the head put back to the durable one, as broker_txn_drop does),
 * the group goes whole into the next one, once. */
static void
test_rewind(void **state)
{
	struct s_env *e = *state;
	static struct s_log l;
	struct pending *p;
	const uint64_t q[] = {1};

	s_zero_head(e->head);
	s_audit(&e->g, 0);
	s_commit(e);
	assert_false(s_is_zero(e->durable));
	group_reset(&e->g);

	s_audit(&e->g, 1);
	s_audit(&e->g, 2);
	p = s_pending(e, 0, 1, 5001, s_two);
	assert_int_equal(group_put(&e->g, p), SCHAKEL_OK);
	s_audit(&e->g, 3);
	assert_int_equal(store_begin(e->s, &e->t), STORE_OK);
	assert_int_equal(group_apply(&e->g, e->t), STORE_OK);
	assert_memory_not_equal(e->head, e->durable, AUDIT_HASH_LEN);
	store_abort(&e->t);
	assert_int_equal(s_read_log(e, &l), 1);
	s_expect_absent(e, 1);

	/* broker_txn_drop */
	group_rewind(&e->g);
	memcpy(e->head, e->durable, AUDIT_HASH_LEN);
	e->g.audit_rc = 0;

	assert_int_equal(store_begin(e->s, &e->t), STORE_OK);
	assert_int_equal(group_apply(&e->g, e->t), STORE_OK);
	assert_int_equal(store_commit(&e->t), STORE_OK);
	assert_int_equal(p->code, SCHAKEL_OK);
	assert_int_equal(s_read_log(e, &l), 5);
	assert_memory_equal(l.stored_head, e->head, AUDIT_HASH_LEN);
	s_expect_event(&l, 0, 0);
	s_expect_event(&l, 1, 1);
	s_expect_event(&l, 2, 2);
	s_expect_accepted(&l, 3, p);
	s_expect_event(&l, 4, 3);
	s_expect_stored(e, p);
	s_expect_queue(e, "team-west", q, 1, NULL);

	/* Applied: nothing of it goes into a later transaction again. */
	assert_int_equal(store_begin(e->s, &e->t), STORE_OK);
	assert_int_equal(group_apply(&e->g, e->t), STORE_OK);
	assert_int_equal(store_commit(&e->t), STORE_OK);
	assert_int_equal(s_read_log(e, &l), 5);
}

static void
s_expect_marks(const struct group *g, const char *party, uint64_t seq,
    bool acked, uint32_t counted)
{
	bool a = false;
	uint32_t c = 0;

	group_marks(g, party, seq, &a, &c);
	assert_int_equal(a, acked);
	assert_int_equal(c, counted);
}

/* 5. What a group says about queue entries before it is stored, by
 * (seq, party) exactly; nothing after a reset; applied, its
 * acknowledgements take entries out of stored queues and its deliveries
 * are counted there. */
static void
test_marks(void **state)
{
	struct s_env *e = *state;
	uint8_t key[8 + STORE_NAME_MAX];
	char longid[STORE_NAME_MAX + 8];
	uint64_t seq = 0;
	uint32_t counts[2];
	bool acked = true;
	uint32_t counted = 10;
	const uint64_t q[] = {1, 2}, q2[] = {2};

	/* The key: seq in host order, then the party id, no terminator,
	 * at most STORE_NAME_MAX bytes of it. */
	assert_int_equal(group_key(key, "team-west", 5), 8 + 9);
	memcpy(&seq, key, 8);
	assert_int_equal(seq, 5);
	assert_memory_equal(key + 8, "team-west", 9);
	memset(longid, 'x', sizeof longid - 1);
	longid[sizeof longid - 1] = '\0';
	assert_int_equal(group_key(key, longid, 5), 8 + STORE_NAME_MAX);

	/* Nothing recorded: nothing said, nothing changed. */
	group_marks(&e->g, "team-west", 5, &acked, &counted);
	assert_true(acked);
	assert_int_equal(counted, 10);

	assert_int_equal(group_delivered(&e->g, "team-west", 5, 1), SCHAKEL_OK);
	assert_int_equal(group_ack(&e->g, "team-west", 5), SCHAKEL_OK);
	assert_int_equal(group_delivered(&e->g, "team-west", 5, 2), SCHAKEL_OK);
	assert_int_equal(
	    group_delivered(&e->g, "kredietbank", 5, 1), SCHAKEL_OK);
	assert_int_equal(group_ack(&e->g, "huisarts", 6), SCHAKEL_OK);
	assert_int_equal(e->g.nops, 5);
	assert_false(group_empty(&e->g));
	s_expect_marks(&e->g, "team-west", 5, true, 2);
	s_expect_marks(&e->g, "kredietbank", 5, false, 1);
	s_expect_marks(&e->g, "huisarts", 6, true, 0);
	/* Other entries: not a word. */
	s_expect_marks(&e->g, "team-west", 6, false, 0);
	s_expect_marks(&e->g, "team-west", 4, false, 0);
	s_expect_marks(&e->g, "team-wes", 5, false, 0);
	s_expect_marks(&e->g, "team-west2", 5, false, 0);
	s_expect_marks(&e->g, "huisarts", 5, false, 0);
	s_expect_marks(&e->g, "", 5, false, 0);
	/* The count raises what the caller has, never lowers it. */
	acked = false;
	counted = 1;
	group_marks(&e->g, "team-west", 5, &acked, &counted);
	assert_true(acked);
	assert_int_equal(counted, 2);
	counted = 3;
	group_marks(&e->g, "team-west", 5, &acked, &counted);
	assert_int_equal(counted, 3);
	/* A lower count recorded later does not lower the mark. */
	assert_int_equal(
	    group_delivered(&e->g, "kredietbank", 5, 4), SCHAKEL_OK);
	assert_int_equal(
	    group_delivered(&e->g, "kredietbank", 5, 2), SCHAKEL_OK);
	s_expect_marks(&e->g, "kredietbank", 5, false, 4);

	group_reset(&e->g);
	assert_true(group_empty(&e->g));
	s_expect_marks(&e->g, "team-west", 5, false, 0);
	s_expect_marks(&e->g, "kredietbank", 5, false, 0);
	s_expect_marks(&e->g, "huisarts", 6, false, 0);

	/* Two messages stored, then a group that acknowledges and counts
	 * deliveries of them. */
	s_zero_head(e->head);
	assert_int_equal(
	    group_put(&e->g, s_pending(e, 0, 1, 6001, s_two)), SCHAKEL_OK);
	assert_int_equal(
	    group_put(&e->g, s_pending(e, 1, 2, 6002, s_two)), SCHAKEL_OK);
	s_commit(e);
	s_expect_queue(e, "team-west", q, 2, NULL);
	group_reset(&e->g);

	assert_int_equal(group_delivered(&e->g, "team-west", 1, 1), SCHAKEL_OK);
	assert_int_equal(group_ack(&e->g, "team-west", 1), SCHAKEL_OK);
	assert_int_equal(
	    group_delivered(&e->g, "kredietbank", 2, 1), SCHAKEL_OK);
	assert_int_equal(
	    group_delivered(&e->g, "kredietbank", 2, 2), SCHAKEL_OK);
	/* Gone already, or never queued: no harm to the group. */
	assert_int_equal(group_ack(&e->g, "team-west", 99), SCHAKEL_OK);
	assert_int_equal(group_delivered(&e->g, "huisarts", 1, 1), SCHAKEL_OK);
	s_expect_marks(&e->g, "team-west", 1, true, 1);
	s_expect_marks(&e->g, "kredietbank", 2, false, 2);
	/* Not stored before the group is. */
	s_expect_queue(e, "team-west", q, 2, NULL);
	s_commit(e);
	s_expect_queue(e, "team-west", q2, 1, NULL);
	s_expect_queue(e, "kredietbank", q, 2, counts);
	assert_int_equal(counts[0], 0);
	assert_int_equal(counts[1], 2);
}

/* An acknowledgement recorded with the message it is about (as the broker
 * read it) marks the entry acknowledged and is stored as group_ack's: the
 * message stays while another recipient holds it and goes with the last
 * one; an entry gone already, or never queued, does the group no harm. */
static void
test_ack_msg(void **state)
{
	struct s_env *e = *state;
	static struct store_msg m1, m2;
	const uint64_t one[] = {1}, none[] = {0};
	struct pending *p1, *p2;

	s_zero_head(e->head);
	p1 = s_pending(e, 0, 1, 7001, s_two);
	p2 = s_pending(e, 1, 2, 7002, s_two);
	assert_int_equal(group_put(&e->g, p1), SCHAKEL_OK);
	assert_int_equal(group_put(&e->g, p2), SCHAKEL_OK);
	s_commit(e);
	group_reset(&e->g);
	assert_int_equal(store_get(e->s, 1, &m1, NULL, NULL), STORE_OK);
	assert_int_equal(store_get(e->s, 2, &m2, NULL, NULL), STORE_OK);

	/* Seq 2 by both recipients, seq 1 by one; an entry never queued. */
	assert_int_equal(group_ack_msg(&e->g, "team-west", &m2), SCHAKEL_OK);
	assert_int_equal(group_ack_msg(&e->g, "kredietbank", &m2), SCHAKEL_OK);
	assert_int_equal(group_ack_msg(&e->g, "team-west", &m1), SCHAKEL_OK);
	assert_int_equal(group_ack_msg(&e->g, "huisarts", &m1), SCHAKEL_OK);
	/* Counted, for the pump's limit (BROKER_ACKS_MAX); puts are not. */
	assert_int_equal(e->g.nacks, 4);
	s_expect_marks(&e->g, "team-west", 2, true, 0);
	s_expect_marks(&e->g, "kredietbank", 2, true, 0);
	s_expect_marks(&e->g, "kredietbank", 1, false, 0);
	s_commit(e);
	s_expect_absent(e, 2);
	s_expect_stored(e, p1);
	s_expect_queue(e, "team-west", none, 0, NULL);
	s_expect_queue(e, "kredietbank", one, 1, NULL);
	group_reset(&e->g);

	assert_int_equal(e->g.nacks, 0);
	assert_int_equal(group_ack(&e->g, "team-west", 99), SCHAKEL_OK);
	assert_int_equal(e->g.nacks, 1);
	group_reset(&e->g);

	/* Again (gone meanwhile), then the last recipient of seq 1. */
	assert_int_equal(group_ack_msg(&e->g, "team-west", &m2), SCHAKEL_OK);
	assert_int_equal(group_ack_msg(&e->g, "kredietbank", &m1), SCHAKEL_OK);
	s_commit(e);
	s_expect_absent(e, 1);
	s_expect_queue(e, "kredietbank", none, 0, NULL);
}

/* An "accepted" record made ahead (group_accepted) is the one stored;
 * one too long for the pending slot is made by group_put, as is one of
 * a pending message never given to group_accepted. */
static void
test_accepted_ahead(void **state)
{
	struct s_env *e = *state;
	static struct s_log l;
	static char names[AUDIT_MAX_PARTIES][STORE_NAME_MAX + 1];
	const char *many[AUDIT_MAX_PARTIES + 1] = {NULL};
	struct pending *p1, *p2, *p3;

	for (size_t i = 0; i < AUDIT_MAX_PARTIES; i++) {
		memset(names[i], 'a' + (int)(i % 26), STORE_NAME_MAX);
		names[i][0] = (char)('A' + i);
		many[i] = names[i];
	}
	s_zero_head(e->head);
	p1 = s_pending(e, 0, 1, 8001, s_two);
	group_accepted(p1);
	assert_true(p1->accepted_len > 0);
	assert_true(p1->accepted_len < PENDING_ACCEPTED_MAX);
	/* What it says was fixed when it was made. */
	snprintf(p1->purpose, sizeof p1->purpose, "%s", "changed-later");
	p2 = s_pending(e, 1, 2, 8002, many);
	group_accepted(p2);
	assert_int_equal(p2->accepted_len, 0);
	p3 = s_pending(e, 2, 3, 8003, s_two);
	assert_int_equal(group_put(&e->g, p1), SCHAKEL_OK);
	assert_int_equal(group_put(&e->g, p2), SCHAKEL_OK);
	assert_int_equal(group_put(&e->g, p3), SCHAKEL_OK);
	s_commit(e);

	assert_int_equal(s_read_log(e, &l), 3);
	assert_int_equal(l.n_accepted, 3);
	for (size_t i = 0; i < 3; i++)
		s_expect_accepted(&l, i, &e->p[i]);
	assert_string_equal(l.accepted[0].purpose, "schuldhulp");
	assert_int_equal(l.accepted[0].n_to, 2);
	assert_string_equal(l.accepted[0].to[1], "kredietbank");
	assert_string_equal(l.accepted[0].agreements[1], "agreement-1");
	assert_memory_equal(l.accepted[0].id, p1->msg.id, AUDIT_ID_LEN);
	assert_int_equal(l.accepted[1].n_to, AUDIT_MAX_PARTIES);
	assert_string_equal(l.accepted[1].to[31], names[31]);
	assert_string_equal(l.accepted[1].agreements[31], "agreement-31");
	assert_string_equal(l.accepted[2].purpose, "schuldhulp");
	assert_string_equal(l.accepted[2].case_ref, "zaak-8003");
	s_expect_stored(e, p1);
	s_expect_stored(e, p2);
	s_expect_stored(e, p3);
}

/* 6. A group whose record could not be made (g->failed), or whose audit
 * record the store refused (g->audit_rc), stores nothing, not even
 * through the writer; once clear it is applied from its start. */
static void
test_failed(void **state)
{
	struct s_env *e = *state;
	static struct s_log l;
	struct writer_result r;
	struct pending *p;
	char err[256];
	uint64_t seq = 0;

	s_zero_head(e->head);
	s_audit(&e->g, 0);
	p = s_pending(e, 0, 1, 7001, s_two);
	assert_int_equal(group_put(&e->g, p), SCHAKEL_OK);
	s_audit(&e->g, 1);
	e->g.failed = SCHAKEL_E_AUDIT_FAILED;

	assert_int_equal(store_begin(e->s, &e->t), STORE_OK);
	assert_int_not_equal(group_apply(&e->g, e->t), STORE_OK);
	assert_true(s_is_zero(e->head));
	store_abort(&e->t);

	e->w = writer_new(e->s, err, sizeof err);
	assert_non_null(e->w);
	writer_start(e->w, group_apply, NULL, &e->g);
	memset(&r, 0, sizeof r);
	assert_true(writer_take(e->w, true, &r));
	assert_true(r.began);
	assert_int_not_equal(r.rc, STORE_OK);
	assert_true(r.commit_s < 0);
	assert_true(s_is_zero(e->head));
	assert_int_equal(s_read_log(e, &l), 0);
	s_expect_absent(e, 1);
	assert_int_equal(store_seen(e->s, p->msg.id, &seq), STORE_NOT_FOUND);

	/* The store refused an audit record: its code, nothing written. */
	e->g.failed = 0;
	e->g.audit_rc = STORE_FULL;
	writer_start(e->w, group_apply, NULL, &e->g);
	assert_true(writer_take(e->w, true, &r));
	assert_true(r.began);
	assert_int_equal(r.rc, STORE_FULL);
	assert_true(r.commit_s < 0);
	assert_int_equal(s_read_log(e, &l), 0);
	s_expect_absent(e, 1);

	/* Cleared: the group is applied from its first write. */
	e->g.audit_rc = 0;
	writer_start(e->w, group_apply, NULL, &e->g);
	assert_true(writer_take(e->w, true, &r));
	writer_destroy(&e->w);
	assert_int_equal(r.rc, STORE_OK);
	assert_int_equal(s_read_log(e, &l), 3);
	s_expect_event(&l, 0, 0);
	s_expect_accepted(&l, 1, p);
	s_expect_event(&l, 2, 1);
	s_expect_stored(e, p);
	/* A failed group is not empty, even with nothing recorded. */
	group_reset(&e->g);
	assert_true(group_empty(&e->g));
	e->g.failed = SCHAKEL_E_AUDIT_FAILED;
	assert_false(group_empty(&e->g));
}

static int
s_job_fn(void *arg, struct store_txn *t)
{
	struct s_job *j = arg;
	struct audit_event ev;
	char rec[AUDIT_RECORD_MAX];
	uint8_t next[AUDIT_HASH_LEN];
	uint64_t aseq;
	size_t len;

	j->calls++;
	if (j->hold)
		(void)sem_wait(&j->go);
	memset(&ev, 0, sizeof ev);
	ev.kind = AUDIT_DELIVERED;
	ev.time_ms = S_T0 + j->n;
	ev.seq = j->n;
	len = audit_encode(&ev, j->head, rec);
	audit_hash(rec, len, next);
	j->append_rc =
	    store_audit_append(t, (const uint8_t *)rec, len, next, &aseq);
	if (j->append_rc == STORE_OK && j->ret == STORE_OK)
		memcpy(j->head, next, AUDIT_HASH_LEN);
	return j->append_rc != STORE_OK ? j->append_rc : j->ret;
}

static int
s_readable(int fd, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int n = poll(&pfd, 1, timeout_ms);

	assert_true(n >= 0);
	return n > 0 && (pfd.revents & POLLIN) != 0;
}

/* 7. The writer: idle, nothing to take; a job handed over is run in a
 * transaction of its own, committed, and its result taken back (the fd
 * readable until then); a job that fails is dropped; a transaction that
 * cannot begin is reported as such; destroying the writer finishes the
 * job in hand. */
static void
test_writer(void **state)
{
	struct s_env *e = *state;
	static struct s_log l;
	struct s_job *j = &e->job;
	struct writer_result r;
	char err[256];

	e->w = writer_new(e->s, err, sizeof err);
	assert_non_null(e->w);
	assert_true(writer_fd(e->w) >= 0);
	assert_false(writer_busy(e->w));
	assert_false(writer_finished(e->w));
	assert_false(writer_take(e->w, false, &r));
	assert_false(writer_take(e->w, true, &r)); /* idle: no waiting */
	assert_false(s_readable(writer_fd(e->w), 0));

	/* A job held in its function: busy, nothing to take yet. */
	j->hold = true;
	j->ret = STORE_OK;
	j->n = 1;
	writer_start(e->w, s_job_fn, NULL, j);
	assert_true(writer_busy(e->w));
	assert_false(writer_take(e->w, false, &r));
	assert_false(s_readable(writer_fd(e->w), 50));
	assert_false(writer_finished(e->w));
	assert_int_equal(sem_post(&j->go), 0);
	assert_true(s_readable(writer_fd(e->w), 10000));
	/* Finished says so without the lock, as the fd does. */
	assert_true(writer_finished(e->w));
	memset(&r, 0x55, sizeof r);
	assert_true(writer_take(e->w, false, &r));
	assert_false(writer_finished(e->w));
	assert_false(s_readable(writer_fd(e->w), 0));
	assert_false(writer_busy(e->w));
	assert_false(writer_take(e->w, false, &r));
	assert_int_equal(j->calls, 1);
	assert_int_equal(j->append_rc, STORE_OK);
	assert_int_equal(r.rc, STORE_OK);
	assert_true(r.began);
	assert_true(r.commit_s >= 0);
	assert_string_equal(r.err, "");
	assert_int_equal(s_read_log(e, &l), 1);
	assert_memory_equal(l.stored_head, j->head, AUDIT_HASH_LEN);

	/* A job that fails: taken with waiting, dropped. */
	j->hold = false;
	j->ret = STORE_ERROR;
	j->n = 2;
	writer_start(e->w, s_job_fn, NULL, j);
	assert_true(writer_take(e->w, true, &r));
	assert_false(s_readable(writer_fd(e->w), 0));
	assert_false(writer_busy(e->w));
	assert_int_equal(j->calls, 2);
	assert_int_equal(j->append_rc, STORE_OK);
	assert_true(r.began);
	assert_int_equal(r.rc, STORE_ERROR);
	assert_true(r.commit_s < 0);
	assert_int_equal(s_read_log(e, &l), 1);
	assert_memory_equal(l.stored_head, j->head, AUDIT_HASH_LEN);

	/* No transaction can begin (this thread has one open): the job's
	 * function is not called. */
	assert_int_equal(store_begin(e->s, &e->t), STORE_OK);
	j->ret = STORE_OK;
	j->n = 3;
	writer_start(e->w, s_job_fn, NULL, j);
	assert_true(writer_take(e->w, true, &r));
	store_abort(&e->t);
	assert_int_equal(j->calls, 2);
	assert_false(r.began);
	assert_int_not_equal(r.rc, STORE_OK);
	assert_true(r.commit_s < 0);
	assert_true(strlen(r.err) > 0);
	assert_false(s_readable(writer_fd(e->w), 0));

	/* Destroyed with a job in hand that was not taken: it is done,
	 * whether or not the thread had picked it up before it was told to
	 * stop (which is up to the scheduler: so, many times). */
	writer_destroy(&e->w);
	for (uint64_t n = 4; n < 4 + S_DESTROYS; n++) {
		e->w = writer_new(e->s, err, sizeof err);
		assert_non_null(e->w);
		j->n = n;
		writer_start(e->w, s_job_fn, NULL, j);
		writer_destroy(&e->w);
		assert_null(e->w);
		assert_int_equal(j->calls, 3 + (int)(n - 4));
	}
	writer_destroy(&e->w);
	assert_int_equal(s_read_log(e, &l), 1 + S_DESTROYS);
	for (size_t i = 1; i <= S_DESTROYS; i++)
		assert_int_equal(l.rec[i].time_ms, S_T0 + 3 + i);
	assert_memory_equal(l.stored_head, j->head, AUDIT_HASH_LEN);
}

/* A store that fills (here the map): the room check counts, besides a
 * message's bytes, the pages its keys out of order (id, case, expiry,
 * recipient) may make LMDB copy, so the new messages of a group are
 * refused with STORE_FULL one at a time before the group could fail
 * with MDB_MAP_FULL, and the acknowledgements and audit records recorded
 * with them are stored, the audit chain unbroken.  Rounds of 2,048
 * messages with random ids, cases and expiry times (the most pages a
 * put can copy), audit records and acks, as the broker's groups: no
 * round may fail, nor need to be applied again without its messages
 * (group_again, the writer's fallback). */
#define S_FULL_ROUNDS 40
#define S_FULL_MAP ((uint64_t)16 * 1024 * 1024)
#define S_FULL_GROUP 2048

/* The rounds of a fill: each message to `nrcpt` recipients, one name
 * ("team-west", whose 64 oldest are acknowledged each round) when
 * `names` is 0, else spread over that many names (no acks).  How many
 * rounds refused messages and how many were applied again go to
 * *refused and *retried. */
static void
s_fill(
    struct s_env *e, size_t nrcpt, unsigned names, int *refused, int *retried)
{
	struct store_opts o = {.map_size = S_FULL_MAP, .no_sync = true};
	struct pending *p = calloc(S_FULL_GROUP, sizeof(*p));
	static uint8_t env[S_ENV_LEN], rcpt[S_RCPT_LEN];
	static struct s_log l;
	uint64_t seq = 0, acked = 0, rng = 88172645463325252ULL, ev = 0;
	char err[256], sub[200];

	assert_non_null(p);
	*refused = *retried = 0;
	/* A store of its own, small. */
	snprintf(sub, sizeof sub, "%s/full", e->dir);
	o.dir = sub;
	store_close(&e->s);
	e->s = store_open(&o, err, sizeof err);
	assert_non_null(e->s);
	e->w = writer_new(e->s, err, sizeof err);
	assert_non_null(e->w);
	s_zero_head(e->head);
	for (int rounds = 0; rounds < S_FULL_ROUNDS; rounds++) {
		struct writer_result r;
		int admitted = 0, full = 0, nacks = 0;

		for (int i = 0; i < S_FULL_GROUP; i++) {
			struct store_msg *m = &p[i].msg;
			uint64_t r1, r2;
			memset(&p[i], 0, sizeof p[i]);
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			r1 = rng;
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			r2 = rng;
			m->seq = ++seq;
			memcpy(m->id, &r1, 8);
			memcpy(m->id + 8, &r2, 8);
			snprintf(
			    m->sender, sizeof m->sender, "gemeente-utrecht");
			snprintf(m->type, sizeof m->type, "shv.melding.v1");
			snprintf(m->case_ref, sizeof m->case_ref,
			    "zaak-%016llx", (unsigned long long)r2);
			snprintf(
			    p[i].purpose, sizeof p[i].purpose, "schuldhulp");
			m->n_recipients = nrcpt;
			for (size_t j = 0; j < nrcpt; j++) {
				if (names == 0)
					snprintf(m->recipients[j],
					    sizeof m->recipients[j],
					    "team-west");
				else
					snprintf(m->recipients[j],
					    sizeof m->recipients[j],
					    "team-%04llx",
					    (unsigned long long)((r1 +
								     7919 * j) %
						names));
				snprintf(m->agreements[j],
				    sizeof m->agreements[j], "agreement-0");
			}
			m->envelope = env;
			m->envelope_len = sizeof env;
			m->receipt = rcpt;
			m->receipt_len = sizeof rcpt;
			m->accepted_ms = S_T0;
			m->expires_ms = S_T0 + r1 % 1000000000ULL;
			m->case_until_ms = S_T0 + 10000000000ULL;
			/* Audit records between the messages: applied
			 * again, the chain must go on from where the group
			 * began. */
			if (i % 256 == 0)
				s_audit(&e->g, ev++);
			assert_int_equal(group_put(&e->g, &p[i]), SCHAKEL_OK);
		}
		/* Acks of the oldest still queued. */
		for (; names == 0 && nacks < 64; nacks++) {
			struct store_entry q;
			size_t n = 0;
			assert_int_equal(
			    store_queue(e->s, "team-west", acked, &q, 1, &n),
			    STORE_OK);
			if (n == 0)
				break;
			acked = q.seq;
			assert_int_equal(
			    group_ack(&e->g, "team-west", q.seq), SCHAKEL_OK);
		}
		writer_start(e->w, group_apply, group_again, &e->g);
		assert_true(writer_take(e->w, true, &r));
		if (r.rc != STORE_OK)
			fail_msg("round %d failed: %s", rounds, r.err);
		for (int i = 0; i < S_FULL_GROUP; i++) {
			if (p[i].code == SCHAKEL_OK)
				admitted++;
			else if (p[i].code == SCHAKEL_E_STORE_FULL)
				full++;
			else
				fail_msg(
				    "round %d: code %d", rounds, p[i].code);
		}
		assert_int_equal(admitted + full, S_FULL_GROUP);
		if (e->g.refuse_puts)
			(*retried)++;
		if (full > 0)
			(*refused)++;
		group_reset(&e->g);
		/* The stored chain verifies from its start, up to the head
		 * the group left. */
		(void)s_read_log(e, &l);
		assert_false(l.undecodable);
		assert_memory_equal(l.stored_head, e->head, AUDIT_HASH_LEN);
		/* Every ack of the round is stored. */
		if (nacks > 0) {
			struct store_entry q;
			size_t n = 0;
			assert_int_equal(
			    store_queue(e->s, "team-west", 0, &q, 1, &n),
			    STORE_OK);
			assert_true(n == 0 || q.seq > acked);
		}
	}
	print_message("%d rounds, %d of them with messages refused, %d "
		      "applied again without their messages\n",
	    S_FULL_ROUNDS, *refused, *retried);
	writer_destroy(&e->w);
	free(p);
}

/* One recipient, acknowledging.  Counting bytes only, 35 of the 40
 * rounds were applied again; one page a put, 27; five, but counting as
 * free the pages the last commit freed (LMDB keeps them one commit
 * more), 18. */
static void
test_fills_refusing_first(void **state)
{
	int refused, retried;

	s_fill(*state, 1, 0, &refused, &retried);
	assert_true(refused >= S_FULL_ROUNDS - 4);
	assert_int_equal(retried, 0);
}

/* Eight recipients a message out of 60,000 names: the queue table, keyed
 * by recipient, is written out of key order too (a second reader's
 * case; not counting it, 8 rounds were applied again). */
static void
test_fills_many_recipients(void **state)
{
	int refused, retried;

	s_fill(*state, 8, 60000, &refused, &retried);
	assert_true(refused >= S_FULL_ROUNDS - 4);
	assert_int_equal(retried, 0);
}

/* The writer's retry after the commit failed (as store_commit does on
 * ENOSPC; simulated: the group applied whole, then STORE_FULL): the
 * second attempt stores the ack and the audit records, refuses the
 * message, and the chain goes on from the first group's head. */
static int s_fail_calls;

static int
s_apply_fail_once(void *arg, struct store_txn *t)
{
	int rc = group_apply(arg, t);

	if (rc == STORE_OK && s_fail_calls++ == 0)
		return STORE_FULL;
	return rc;
}

static void
test_again_after_commit(void **state)
{
	struct s_env *e = *state;
	static struct s_log l;
	struct writer_result r;
	struct store_entry qe;
	char err[256];
	struct pending *p0, *p1;
	size_t n0, n = 9;

	s_zero_head(e->head);
	/* A first group, stored: the chain has something before. */
	s_audit(&e->g, 0);
	p0 = s_pending(e, 0, 1, 5001, s_two);
	assert_int_equal(group_put(&e->g, p0), SCHAKEL_OK);
	s_commit(e);
	group_reset(&e->g);
	n0 = s_read_log(e, &l);
	assert_int_equal(n0, 2);
	/* The second: audit, put, ack, audit; its commit fails once. */
	s_audit(&e->g, 1);
	p1 = s_pending(e, 1, 2, 5002, s_two);
	assert_int_equal(group_put(&e->g, p1), SCHAKEL_OK);
	assert_int_equal(group_ack(&e->g, "team-west", 1), SCHAKEL_OK);
	s_audit(&e->g, 2);
	e->w = writer_new(e->s, err, sizeof err);
	assert_non_null(e->w);
	s_fail_calls = 0;
	writer_start(e->w, s_apply_fail_once, group_again, &e->g);
	assert_true(writer_take(e->w, true, &r));
	writer_destroy(&e->w);
	assert_int_equal(r.rc, STORE_OK);
	assert_int_equal(s_fail_calls, 2);
	assert_int_equal(p1->code, SCHAKEL_E_STORE_FULL);
	s_expect_absent(e, 2);
	assert_int_equal(
	    store_queue(e->s, "team-west", 0, &qe, 1, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(s_read_log(e, &l), n0 + 2);
	assert_memory_equal(l.stored_head, e->head, AUDIT_HASH_LEN);
	s_expect_event(&l, 2, 1);
	s_expect_event(&l, 3, 2);
	group_reset(&e->g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_chain, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		test_chain_from_head, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		test_refused_put, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		test_next_order, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		test_apply_incremental, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(test_rewind, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(test_marks, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(test_ack_msg, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		test_accepted_ahead, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(test_failed, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(test_writer, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		test_fills_refusing_first, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		test_fills_many_recipients, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		test_again_after_commit, s_setup, s_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
