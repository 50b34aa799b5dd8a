/*
 * Tests for the verifier pool: results come back in the order jobs went
 * in, whatever thread checked them; forged and altered envelopes are
 * refused; a full pool says so; the wake fd fires; destroying a pool with
 * jobs in it loses nothing it should free (run under ASan).
 */
#include <poll.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "env.h"
#include "schakel_err.h"
#include "verify.h"

#define S_N 300

struct s_fixture {
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	uint8_t other_pk[crypto_sign_PUBLICKEYBYTES];
	struct codec_buf bufs[S_N];
	int expect[S_N];
};

/* Draft `i` for the case "zaak-i", to one recipient with box key box_pk. */
static void
s_draft(struct env_draft *d, size_t i, const uint8_t box_pk[32])
{
	static uint8_t payload[100];

	memset(d, 0, sizeof(*d));
	env_new_id(d->hdr.id);
	snprintf(d->hdr.sender, sizeof d->hdr.sender, "%s", "gemeente-utrecht");
	snprintf(d->hdr.type, sizeof d->hdr.type, "%s", "shv.melding.v1");
	snprintf(d->hdr.case_ref, sizeof d->hdr.case_ref, "zaak-%zu", i);
	snprintf(d->hdr.purpose, sizeof d->hdr.purpose, "%s", "schuldhulp");
	d->hdr.created_ms = 1;
	d->hdr.expires_ms = 2;
	d->n_recipients = 1;
	snprintf(d->recipients[0].party_id, sizeof d->recipients[0].party_id,
	    "%s", "team");
	memcpy(d->recipients[0].box_pk, box_pk, 32);
	d->payload = payload;
	d->payload_len = sizeof payload;
}

/* S_N envelopes: batches of 1, 2, 3, ... under one signature; every
 * seventh is to be checked with the wrong key, every eleventh has a
 * flipped ciphertext byte. */
static int
s_setup(void **state)
{
	struct s_fixture *fx = calloc(1, sizeof(*fx));
	uint8_t box_pk[32], box_sk[32], osk[64];
	struct env_draft d[32];
	size_t done = 0, batch = 1;

	assert_non_null(fx);
	assert_int_equal(sodium_init() >= 0, 1);
	crypto_sign_keypair(fx->pk, fx->sk);
	crypto_sign_keypair(fx->other_pk, osk);
	crypto_box_keypair(box_pk, box_sk);
	while (done < S_N) {
		size_t n = S_N - done < batch ? S_N - done : batch;
		for (size_t i = 0; i < n; i++)
			s_draft(&d[i], done + i, box_pk);
		assert_int_equal(
		    env_build(d, n, fx->sk, &fx->bufs[done]), SCHAKEL_OK);
		done += n;
		batch = batch % 31 + 1;
	}
	for (size_t i = 0; i < S_N; i++) {
		fx->expect[i] = SCHAKEL_OK;
		if (i % 7 == 3)
			fx->expect[i] = SCHAKEL_E_BAD_SIGNATURE;
		else if (i % 11 == 5) {
			/* The last byte is ciphertext (the AEAD tag). */
			fx->bufs[i].data[fx->bufs[i].len - 1] ^= 1;
			fx->expect[i] = SCHAKEL_E_HASH_MISMATCH;
		}
	}
	*state = fx;
	return 0;
}

static int
s_teardown(void **state)
{
	struct s_fixture *fx = *state;

	for (size_t i = 0; i < S_N; i++)
		codec_buf_clear(&fx->bufs[i]);
	free(fx);
	return 0;
}

static const uint8_t *
s_key(struct s_fixture *fx, size_t i)
{
	return i % 7 == 3 ? fx->other_pk : fx->pk;
}

/* What job i hands the pool: every thirteenth envelope cut in half, so
 * that it does not decode (it comes back without an envelope, with
 * env_decode's code). */
static size_t
s_len(const struct s_fixture *fx, size_t i)
{
	return i % 13 == 6 ? fx->bufs[i].len / 2 : fx->bufs[i].len;
}

static int
s_push(struct verify_pool *p, struct s_fixture *fx, size_t i, void *arg)
{
	return verify_push(p, env_new(), fx->bufs[i].data, s_len(fx, i), 0,
	    s_key(fx, i), i / 5, arg);
}

/* Pushes everything through a pool of `threads` with room for `cap`,
 * popping as it goes; checks order and each result. */
static void
s_run(struct s_fixture *fx, unsigned threads, size_t cap)
{
	struct verify_pool *p = verify_pool_new(threads, cap);
	size_t pushed = 0, popped = 0, full = 0;

	assert_non_null(p);
	assert_int_equal(verify_wake_fd(p) >= 0, threads > 0);
	while (popped < S_N) {
		struct env *e;
		void *arg;
		uint8_t hash[ENV_HASH_LEN], want[ENV_HASH_LEN];
		int rc;

		while (pushed < S_N && verify_room(p) > 0) {
			assert_int_equal(s_push(p, fx, pushed,
					     (void *)(uintptr_t)(pushed + 1)),
			    0);
			pushed++;
		}
		if (pushed < S_N) {
			/* Full: a push is refused and takes nothing. */
			struct env *x = env_new();
			assert_int_equal(
			    verify_push(p, x, fx->bufs[0].data, fx->bufs[0].len,
				0, fx->pk, 0, NULL),
			    -1);
			env_destroy(&x);
			full++;
		}
		assert_int_equal(verify_pending(p), pushed - popped);
		verify_start(p);
		verify_wait(p);
		assert_true(verify_ready(p));
		while (verify_pop(p, &e, &arg, &rc, hash)) {
			size_t len = s_len(fx, popped);
			assert_int_equal((uintptr_t)arg, popped + 1);
			if (len < fx->bufs[popped].len) {
				struct env *x = NULL;
				assert_null(e);
				assert_int_not_equal(rc, SCHAKEL_OK);
				assert_int_equal(rc,
				    env_decode(
					fx->bufs[popped].data, len, 0, &x));
				popped++;
				continue;
			}
			assert_int_equal(rc, fx->expect[popped]);
			/* Every one that decoded comes with its header
			 * hash, also one whose signature did not verify
			 * (the broker checks again after a reload, and its
			 * receipt must name this message, not the last). */
			env_header_hash(e, want);
			assert_memory_equal(hash, want, ENV_HASH_LEN);
			memset(hash, 0, sizeof hash);
			/* The envelope handed back is the one pushed. */
			assert_memory_equal(
			    env_header(e)->case_ref, "zaak-", 5);
			assert_int_equal(
			    strtol(env_header(e)->case_ref + 5, NULL, 10),
			    (int)popped);
			env_destroy(&e);
			popped++;
		}
		verify_clear_wake(p);
	}
	assert_int_equal(verify_pending(p), 0);
	assert_false(verify_ready(p));
	if (cap < S_N)
		assert_true(full > 0);
	verify_pool_destroy(&p);
	assert_null(p);
}

static void
test_inline(void **state)
{
	s_run(*state, 0, 16);
}

static void
test_one_thread(void **state)
{
	s_run(*state, 1, 8);
}

static void
test_four_threads(void **state)
{
	s_run(*state, 4, 64);
	s_run(*state, 4, 1);
	s_run(*state, 4, 1024);
}

/* The wake fd becomes readable once jobs are done, and is clear again
 * after verify_clear_wake. */
static void
test_wake_fd(void **state)
{
	struct s_fixture *fx = *state;
	struct verify_pool *p = verify_pool_new(2, 8);
	struct pollfd pfd;
	struct env *e;
	void *arg;
	int rc;

	assert_non_null(p);
	pfd = (struct pollfd){.fd = verify_wake_fd(p), .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 0), 0);
	assert_int_equal(s_push(p, fx, 0, NULL), 0);
	verify_start(p);
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	verify_wait(p);
	assert_true(verify_pop(p, &e, &arg, &rc, NULL));
	assert_int_equal(rc, SCHAKEL_OK);
	env_destroy(&e);
	verify_clear_wake(p);
	assert_int_equal(poll(&pfd, 1, 0), 0);
	verify_pool_destroy(&p);
}

/* The envelopes of one inbound bundle (a unit) go to one worker: three
 * batches of 21 under one signature each, pushed as three units, have
 * three signatures checked, not four or more.  Split in fair shares
 * alone (32 and 31), the second batch went to both workers and its
 * signature was checked twice (when the second worker woke in time: in
 * about half the rounds, hence eight).  63 jobs: no push wakes a worker
 * before verify_start. */
static void
test_units_together(void **state)
{
	enum { S_UNIT = 21, S_UNITS = 3 };
	struct s_fixture *fx = *state;
	uint8_t box_pk[32], box_sk[32];
	struct env_draft d[S_UNIT];
	struct codec_buf bufs[S_UNIT * S_UNITS];

	crypto_box_keypair(box_pk, box_sk);
	for (size_t u = 0; u < S_UNITS; u++) {
		for (size_t i = 0; i < S_UNIT; i++)
			s_draft(&d[i], u * S_UNIT + i, box_pk);
		assert_int_equal(
		    env_build(d, S_UNIT, fx->sk, &bufs[u * S_UNIT]),
		    SCHAKEL_OK);
	}
	for (int round = 0; round < 8; round++) {
		struct verify_pool *p = verify_pool_new(2, 64);
		size_t popped = 0;

		assert_non_null(p);
		for (size_t i = 0; i < S_UNIT * S_UNITS; i++)
			assert_int_equal(
			    verify_push(p, env_new(), bufs[i].data, bufs[i].len,
				0, fx->pk, i / S_UNIT, NULL),
			    0);
		assert_int_equal(verify_signature_checks(p), 0);
		verify_start(p);
		while (popped < S_UNIT * S_UNITS) {
			struct env *e;
			void *arg;
			int rc;

			verify_wait(p);
			while (verify_pop(p, &e, &arg, &rc, NULL)) {
				assert_int_equal(rc, SCHAKEL_OK);
				env_destroy(&e);
				popped++;
			}
			verify_clear_wake(p);
		}
		assert_int_equal(verify_signature_checks(p), S_UNITS);
		verify_pool_destroy(&p);
	}
	for (size_t i = 0; i < S_UNIT * S_UNITS; i++)
		codec_buf_clear(&bufs[i]);
}

/* A pool destroyed with jobs waiting and in progress frees their
 * envelopes, decoded or not, and leaves the lent buffers alone (the
 * fixture frees them); also with no workers, where each is decoded at
 * once.  ASan reports a leak or a double free otherwise. */
static void
test_destroy_busy(void **state)
{
	struct s_fixture *fx = *state;
	struct verify_pool *p;

	for (unsigned threads = 0; threads <= 2; threads += 2) {
		p = verify_pool_new(threads, S_N);
		assert_non_null(p);
		/* Nothing to decode into: refused, nothing taken. */
		assert_int_equal(verify_push(p, NULL, fx->bufs[0].data,
				     fx->bufs[0].len, 0, fx->pk, 0, NULL),
		    -1);
		for (size_t i = 0; i < S_N; i++)
			assert_int_equal(s_push(p, fx, i, NULL), 0);
		assert_int_equal(verify_room(p), 0);
		verify_pool_destroy(&p);
		assert_null(p);
	}
	verify_pool_destroy(&p);
	assert_null(verify_pool_new(1, 0));
	assert_null(verify_pool_new(VERIFY_MAX_THREADS + 1, 8));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_inline),
	    cmocka_unit_test(test_one_thread),
	    cmocka_unit_test(test_four_threads),
	    cmocka_unit_test(test_wake_fd),
	    cmocka_unit_test(test_units_together),
	    cmocka_unit_test(test_destroy_busy),
	};

	return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
