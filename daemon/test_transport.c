/* Unit tests of the transport: a real CURVE handshake on loopback, ZAP
 * admitting only declared keys and tagging the party, and replies
 * routed back to the right peer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "transport.h"

struct s_keys {
	uint8_t server_pk[32], server_sk[32];
	uint8_t a_pk[32], a_sk[32];
	uint8_t b_pk[32], b_sk[32];
	uint8_t x_pk[32], x_sk[32]; /* not declared */
};

static struct s_keys s_k;

static bool
s_admit(void *arg, const uint8_t key[TRANSPORT_KEY_LEN], char *party_id)
{
	const struct s_keys *k = arg;

	if (memcmp(key, k->a_pk, 32) == 0) {
		memcpy(party_id, "gemeente-a", 11);
		return true;
	}
	if (memcmp(key, k->b_pk, 32) == 0) {
		memcpy(party_id, "kredietbank-b", 14);
		return true;
	}
	return false;
}

/* A CURVE DEALER connected to `endpoint`; rcvhwm > 0 sets how many
 * messages its I/O thread takes in ahead of the test. */
static void *
s_client_hwm(void *ctx, const char *endpoint, const uint8_t *pk,
    const uint8_t *sk, int rcvhwm)
{
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	int linger = 0;

	assert_non_null(s);
	assert_int_equal(
	    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, s_k.server_pk, 32), 0);
	assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pk, 32), 0);
	assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sk, 32), 0);
	assert_int_equal(
	    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger), 0);
	if (rcvhwm > 0)
		assert_int_equal(
		    zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm), 0);
	assert_int_equal(zmq_connect(s, endpoint), 0);
	return s;
}

static void *
s_client(void *ctx, const char *endpoint, const uint8_t *pk, const uint8_t *sk)
{
	return s_client_hwm(ctx, endpoint, pk, sk, 0);
}

static struct transport *
s_transport(char *endpoint, size_t len)
{
	const char *eps[] = {"tcp://127.0.0.1:*"};
	struct transport_opts o = {
	    .endpoints = eps,
	    .nendpoints = 1,
	    .server_secret = s_k.server_sk,
	    .admit = s_admit,
	    .admit_arg = &s_k,
	    .max_message = 1 << 20,
	};
	char err[256];
	struct transport *t = transport_new(&o, err, sizeof err);

	assert_non_null(t);
	assert_int_equal(transport_endpoint(t, 0, endpoint, len), 0);
	assert_non_null(strstr(endpoint, "tcp://127.0.0.1:"));
	return t;
}

/* Polls until a message arrives or about two seconds pass. */
static int
s_wait(struct transport *t, struct transport_msg *m)
{
	for (int i = 0; i < 40; i++) {
		if (transport_poll(t, 50) == 1 && transport_recv(t, m) == 1)
			return 1;
	}
	return 0;
}

static void
test_declared_parties_tagged(void **state)
{
	char ep[256], buf[64];
	struct transport *t = s_transport(ep, sizeof ep);
	void *ctx = zmq_ctx_new();
	void *a = s_client(ctx, ep, s_k.a_pk, s_k.a_sk);
	void *b = s_client(ctx, ep, s_k.b_pk, s_k.b_sk);
	struct transport_refused r;
	struct transport_msg m;
	struct transport_peer pa, pb;

	assert_int_equal(zmq_send(a, "from a", 6, 0), 6);
	assert_int_equal(s_wait(t, &m), 1);
	assert_string_equal(m.party, "gemeente-a");
	assert_int_equal(m.len, 6);
	assert_memory_equal(m.data, "from a", 6);
	pa = m.peer;
	assert_int_equal(zmq_send(b, "from b", 6, 0), 6);
	assert_int_equal(s_wait(t, &m), 1);
	assert_string_equal(m.party, "kredietbank-b");
	pb = m.peer;
	/* Replies reach the right peer. */
	assert_int_equal(
	    transport_send(t, &pb, (const uint8_t *)"to b", 4, NULL),
	    TRANSPORT_QUEUED);
	assert_int_equal(
	    transport_send(t, &pa, (const uint8_t *)"to a", 4, NULL),
	    TRANSPORT_QUEUED);
	assert_int_equal(zmq_recv(a, buf, sizeof buf, 0), 4);
	assert_memory_equal(buf, "to a", 4);
	assert_int_equal(zmq_recv(b, buf, sizeof buf, 0), 4);
	assert_memory_equal(buf, "to b", 4);
	transport_take_refused(t, &r);
	assert_int_equal(r.count, 0);
	zmq_close(a);
	zmq_close(b);
	zmq_ctx_term(ctx);
	transport_destroy(&t);
	assert_null(t);
}

static void
test_unknown_key_refused(void **state)
{
	char ep[256];
	struct transport *t = s_transport(ep, sizeof ep);
	void *ctx = zmq_ctx_new();
	void *x = s_client(ctx, ep, s_k.x_pk, s_k.x_sk);
	struct transport_refused r;
	struct transport_msg m;

	zmq_send(x, "let me in", 9, ZMQ_DONTWAIT);
	assert_int_equal(s_wait(t, &m), 0);
	/* The last refused one's key and address are kept for the log. */
	transport_take_refused(t, &r);
	assert_true(r.count >= 1);
	assert_true(r.has_key);
	assert_memory_equal(r.key, s_k.x_pk, TRANSPORT_KEY_LEN);
	assert_string_equal(r.addr, "127.0.0.1");
	transport_take_refused(t, &r);
	assert_int_equal(r.count, 0);
	zmq_close(x);
	zmq_ctx_term(ctx);
	transport_destroy(&t);
}

static void
test_gone_peer_is_not_an_error(void **state)
{
	char ep[256];
	struct transport *t = s_transport(ep, sizeof ep);
	struct transport_peer nobody = {.id = {0, 1, 2, 3}, .len = 4};

	assert_int_equal(
	    transport_send(t, &nobody, (const uint8_t *)"lost", 4, NULL),
	    TRANSPORT_GONE);
	transport_destroy(&t);
}

/* Waits up to two seconds for the account's unsent bytes to come down
 * to at most `want`; returns what they are then. */
static size_t
s_unsent_until(const struct transport_account *acct, size_t want)
{
	size_t n = transport_account_unsent(acct);

	for (int i = 0; i < 200 && n > want; i++) {
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
		n = transport_account_unsent(acct);
	}
	return n;
}

/* An account counts what ZeroMQ holds for a peer that does not read,
 * says when the peer's queue is full (the broker drops such a session),
 * and counts it all down once the peer has read it.  Released while
 * messages still hold it, it lives until the last of them is dropped
 * with the connection (the sanitizer build checks that nothing is
 * touched after it is freed, or leaked). */
static void
test_account_counts_unsent(void **state)
{
	static uint8_t msg[4096], buf[4096];
	char ep[256];
	struct transport *t = s_transport(ep, sizeof ep);
	struct transport_account *party = transport_account_new(NULL);
	struct transport_account *acct = transport_account_new(party);
	struct transport_account *other = transport_account_new(party);
	void *ctx = zmq_ctx_new();
	void *a = s_client_hwm(ctx, ep, s_k.a_pk, s_k.a_sk, 1);
	enum transport_sent rc = TRANSPORT_QUEUED;
	struct transport_msg m;
	struct transport_peer pa;
	size_t sent = 0, unsent;

	assert_non_null(party);
	assert_non_null(acct);
	assert_non_null(other);
	assert_int_equal(transport_account_unsent(acct), 0);
	assert_int_equal(zmq_send(a, "hi", 2, 0), 2);
	assert_int_equal(s_wait(t, &m), 1);
	pa = m.peer;
	while (sent < 4 * TRANSPORT_SNDHWM) {
		rc = transport_send(t, &pa, msg, sizeof msg, acct);
		if (rc != TRANSPORT_QUEUED)
			break;
		sent++;
	}
	assert_int_equal(rc, TRANSPORT_FULL);
	assert_true(sent >= TRANSPORT_SNDHWM);
	/* The queue is full of them: at least half its messages' bytes,
	 * counted on the parent too. */
	assert_true(transport_account_unsent(acct) >=
	    TRANSPORT_SNDHWM / 2 * sizeof msg);
	/* Read in this order: what the I/O thread writes out meanwhile only
	 * lowers the second. */
	unsent = transport_account_unsent(party);
	assert_true(unsent >= transport_account_unsent(acct));
	assert_true(unsent > 0);
	assert_int_equal(transport_account_unsent(other), 0);
	for (size_t i = 0; i < sent; i++)
		assert_int_equal(zmq_recv(a, buf, sizeof buf, 0), sizeof buf);
	assert_int_equal(s_unsent_until(acct, 0), 0);
	assert_int_equal(s_unsent_until(party, 0), 0);

	/* 8 MiB, more than the kernel's buffers take: some stays queued. */
	for (size_t i = 0; i < 2048; i++)
		assert_int_equal(transport_send(t, &pa, msg, sizeof msg, acct),
		    TRANSPORT_QUEUED);
	assert_true(transport_account_unsent(acct) > 0);
	/* Each of the two children counts on the parent (this one's
	 * message waits behind those). */
	assert_int_equal(
	    transport_send(t, &pa, msg, sizeof msg, other), TRANSPORT_QUEUED);
	unsent = transport_account_unsent(party);
	assert_true(unsent >=
	    transport_account_unsent(acct) + transport_account_unsent(other));
	assert_true(transport_account_unsent(other) > 0);
	/* The owner lets go of all three while messages hold two. */
	transport_account_release(&acct);
	assert_null(acct);
	transport_account_release(&acct); /* NULL is fine */
	transport_account_release(&other);
	transport_account_release(&party);
	zmq_close(a);
	zmq_ctx_term(ctx);
	transport_destroy(&t);
}

static void
test_bind_failure_message(void **state)
{
	const char *eps[] = {"tcp://256.1.1.1:1"};
	struct transport_opts o = {.endpoints = eps,
	    .nendpoints = 1,
	    .server_secret = s_k.server_sk,
	    .admit = s_admit,
	    .admit_arg = &s_k,
	    .max_message = 1024};
	char err[256];

	assert_null(transport_new(&o, err, sizeof err));
	assert_non_null(strstr(err, "cannot bind tcp://256.1.1.1:1"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_declared_parties_tagged),
	    cmocka_unit_test(test_unknown_key_refused),
	    cmocka_unit_test(test_gone_peer_is_not_an_error),
	    cmocka_unit_test(test_account_counts_unsent),
	    cmocka_unit_test(test_bind_failure_message),
	};

	if (sodium_init() < 0)
		return 1;
	crypto_box_keypair(s_k.server_pk, s_k.server_sk);
	crypto_box_keypair(s_k.a_pk, s_k.a_sk);
	crypto_box_keypair(s_k.b_pk, s_k.b_sk);
	crypto_box_keypair(s_k.x_pk, s_k.x_sk);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
