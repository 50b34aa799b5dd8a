/*
 * test_codec: unit tests of the envelope codec: Merkle shape and proofs,
 * build/verify/open round trips, receipts, and the refusals each kind of
 * damage must produce.  Byte-exact vectors live in tests/vectors/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "env.h"
#include "merkle.h"
#include "receipt.h"
#include "wire.h"

struct s_party {
	const char *id;
	uint8_t sign_pk[32], sign_sk[64];
	uint8_t box_pk[32], box_sk[32];
};

static struct s_party s_alice = {.id = "gm0344"};
static struct s_party s_bob = {.id = "kredietbank-utrecht"};
static struct s_party s_carol = {.id = "rechtbank-mn"};
static struct s_party s_mallory = {.id = "mallory"};

static void
s_keys(struct s_party *p, uint8_t tag)
{
	uint8_t seed[32];

	memset(seed, tag, sizeof seed);
	crypto_sign_seed_keypair(p->sign_pk, p->sign_sk, seed);
	crypto_box_seed_keypair(p->box_pk, p->box_sk, seed);
}

static int
s_setup(void **state)
{
	(void)state;
	if (codec_init() != SCHAKEL_OK)
		return -1;
	s_keys(&s_alice, 1);
	s_keys(&s_bob, 2);
	s_keys(&s_carol, 3);
	s_keys(&s_mallory, 4);
	return 0;
}

static void
s_draft(struct env_draft *d, const uint8_t *payload, size_t len,
    struct s_party **to, size_t nto)
{
	memset(d, 0, sizeof *d);
	env_new_id(d->hdr.id);
	snprintf(d->hdr.sender, sizeof d->hdr.sender, "%s", s_alice.id);
	snprintf(d->hdr.type, sizeof d->hdr.type, "shv.melding.v1");
	snprintf(d->hdr.case_ref, sizeof d->hdr.case_ref, "case:7f3a9c");
	snprintf(d->hdr.purpose, sizeof d->hdr.purpose, "wgs.intake");
	snprintf(d->hdr.region, sizeof d->hdr.region, "GM0344");
	d->hdr.created_ms = 1767225600000ull;
	d->hdr.expires_ms = d->hdr.created_ms + 86400000ull;
	d->hdr.n_attrs = 1;
	snprintf(d->hdr.attrs[0].key, sizeof d->hdr.attrs[0].key, "stage");
	snprintf(d->hdr.attrs[0].value, sizeof d->hdr.attrs[0].value,
	    "registration");
	d->n_recipients = nto;
	for (size_t i = 0; i < nto; i++) {
		snprintf(d->recipients[i].party_id,
		    sizeof d->recipients[i].party_id, "%s", to[i]->id);
		memcpy(d->recipients[i].box_pk, to[i]->box_pk, 32);
	}
	d->payload = payload;
	d->payload_len = len;
}

/* RFC 6962 MTH, written recursively, as the reference for the level-wise
 * tree in merkle.c. */
static void
s_mth(const uint8_t (*l)[32], size_t n, uint8_t out[32])
{
	size_t k = 1;
	uint8_t a[32], b[32];

	if (n == 1) {
		memcpy(out, l[0], 32);
		return;
	}
	while (k * 2 < n)
		k *= 2;
	s_mth(l, k, a);
	s_mth(l + k, n - k, b);
	merkle_node_hash(a, b, out);
}

static void
test_merkle_shape(void **state)
{
	uint8_t(*leaves)[32] = calloc(300, 32);

	(void)state;
	for (size_t i = 0; i < 300; i++)
		merkle_leaf_hash((const uint8_t *)&i, sizeof i, leaves[i]);
	for (size_t n = 1; n <= 300; n++) {
		struct merkle_tree *t =
		    merkle_tree_new((const uint8_t(*)[32])leaves, n);
		uint8_t ref[32];

		assert_non_null(t);
		s_mth((const uint8_t(*)[32])leaves, n, ref);
		assert_memory_equal(merkle_tree_root(t), ref, 32);
		for (uint32_t i = 0; i < n; i++) {
			struct merkle_sig s;

			assert_int_equal(merkle_tree_proof(t, i, &s), 0);
			assert_int_equal(
			    s.proof_len, merkle_proof_len(i, (uint32_t)n));
			assert_int_equal(merkle_proof_check(leaves[i], &s), 0);
			/* Another leaf with this proof must fail. */
			assert_int_equal(
			    merkle_proof_check(leaves[(i + 1) % 300], &s),
			    SCHAKEL_E_BAD_PROOF);
			if (n > 1) {
				s.leaf_index = (i + 1) % (uint32_t)n;
				assert_int_not_equal(
				    merkle_proof_check(leaves[i], &s), 0);
			}
		}
		merkle_tree_destroy(&t);
		assert_null(t);
	}
	free(leaves);
}

static void
test_merkle_cache(void **state)
{
	struct merkle_cache *c = merkle_cache_new(8);
	struct merkle_sig s;
	uint8_t leaf[32];
	uint64_t hits, misses;
	struct merkle_tree *t;

	(void)state;
	merkle_leaf_hash((const uint8_t *)"x", 1, leaf);
	t = merkle_tree_new((const uint8_t(*)[32])leaf, 1);
	merkle_tree_proof(t, 0, &s);
	assert_int_equal(
	    merkle_sign(MERKLE_DOMAIN_BATCH, s_alice.sign_sk, &s), 0);
	assert_int_equal(
	    merkle_sig_check(MERKLE_DOMAIN_BATCH, s_alice.sign_pk, &s, c), 0);
	assert_int_equal(
	    merkle_sig_check(MERKLE_DOMAIN_BATCH, s_alice.sign_pk, &s, c), 0);
	merkle_cache_stats(c, &hits, &misses);
	assert_int_equal(hits, 1);
	assert_int_equal(misses, 1);
	/* Another key, another domain, a flipped signature: no cache hit. */
	assert_int_equal(
	    merkle_sig_check(MERKLE_DOMAIN_BATCH, s_bob.sign_pk, &s, c),
	    SCHAKEL_E_BAD_SIGNATURE);
	assert_int_equal(
	    merkle_sig_check(MERKLE_DOMAIN_RECEIPT, s_alice.sign_pk, &s, c),
	    SCHAKEL_E_BAD_SIGNATURE);
	s.sig[5] ^= 1;
	assert_int_equal(
	    merkle_sig_check(MERKLE_DOMAIN_BATCH, s_alice.sign_pk, &s, c),
	    SCHAKEL_E_BAD_SIGNATURE);
	merkle_tree_destroy(&t);
	merkle_cache_destroy(&c);
	assert_null(c);
	merkle_cache_destroy(&c);
}

static void
s_roundtrip(size_t nmsg, size_t plen, size_t nto)
{
	struct s_party *to[3] = {&s_carol, &s_bob, &s_alice};
	struct env_draft *d = calloc(nmsg, sizeof *d);
	struct codec_buf *out = calloc(nmsg, sizeof *out);
	struct merkle_cache *cache = merkle_cache_new(64);
	uint8_t *payload = malloc(plen + 1);

	randombytes_buf(payload, plen);
	for (size_t i = 0; i < nmsg; i++)
		s_draft(&d[i], payload, plen, to, nto);
	assert_int_equal(env_build(d, nmsg, s_alice.sign_sk, out), 0);
	for (size_t i = 0; i < nmsg; i++) {
		struct env *e;
		uint8_t *p;
		size_t n;

		assert_int_equal(env_decode(out[i].data, out[i].len, 0, &e), 0);
		assert_memory_equal(env_header(e)->id, d[i].hdr.id, 16);
		assert_int_equal(env_header(e)->n_recipients, nto);
		assert_int_equal(env_payload_len(e), plen);
		assert_int_equal(env_verify(e, s_alice.sign_pk, cache), 0);
		for (size_t k = 0; k < nto; k++) {
			assert_int_equal(
			    env_open(e, s_alice.sign_pk, to[k]->id,
				to[k]->box_pk, to[k]->box_sk, cache, &p, &n),
			    0);
			assert_int_equal(n, plen);
			if (plen > 0)
				assert_memory_equal(p, payload, plen);
			free(p);
		}
		assert_int_equal(
		    env_open(e, s_alice.sign_pk, s_mallory.id, s_mallory.box_pk,
			s_mallory.box_sk, cache, &p, &n),
		    SCHAKEL_E_NOT_RECIPIENT);
		assert_int_equal(env_verify(e, s_bob.sign_pk, NULL),
		    SCHAKEL_E_BAD_SIGNATURE);
		env_destroy(&e);
		assert_null(e);
		codec_buf_clear(&out[i]);
	}
	merkle_cache_destroy(&cache);
	free(payload);
	free(out);
	free(d);
}

static void
test_roundtrip(void **state)
{
	(void)state;
	s_roundtrip(1, 0, 1);
	s_roundtrip(1, 1024, 3);
	s_roundtrip(3, 100, 2);
	s_roundtrip(64, 1024, 1);
	s_roundtrip(2, 65536, 3);
}

/* Build one envelope to Bob, to damage in the tests below. */
static struct codec_buf
s_one(void)
{
	struct s_party *to[1] = {&s_bob};
	struct env_draft d;
	struct codec_buf b = {0};

	s_draft(&d, (const uint8_t *)"hallo", 5, to, 1);
	assert_int_equal(env_build(&d, 1, s_alice.sign_sk, &b), 0);
	return b;
}

static int
s_verify_buf(const uint8_t *p, size_t n)
{
	struct env *e;
	int rc = env_decode(p, n, 0, &e);

	if (rc == SCHAKEL_OK)
		rc = env_verify(e, s_alice.sign_pk, NULL);
	env_destroy(&e);
	return rc;
}

static void
test_truncated_and_trailing(void **state)
{
	struct codec_buf b = s_one();
	uint8_t *big = malloc(b.len + 1);

	(void)state;
	for (size_t n = 0; n < b.len; n++)
		assert_int_not_equal(s_verify_buf(b.data, n), SCHAKEL_OK);
	memcpy(big, b.data, b.len);
	big[b.len] = 0;
	assert_int_equal(s_verify_buf(big, b.len + 1), SCHAKEL_E_MALFORMED);
	assert_int_equal(s_verify_buf(b.data, b.len), SCHAKEL_OK);
	{
		struct env *e;

		assert_int_equal(env_decode(b.data, b.len, b.len - 1, &e),
		    SCHAKEL_E_TOO_LARGE);
		assert_null(e);
	}
	free(big);
	codec_buf_clear(&b);
}

static void
test_every_bitflip_refused(void **state)
{
	struct codec_buf b = s_one();

	(void)state;
	/* Any single flipped bit anywhere must be refused by decode, verify
	 * or open; never accepted, never a crash. */
	for (size_t i = 0; i < b.len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			struct env *e = NULL;
			uint8_t *p = NULL;
			size_t n;
			int rc;

			b.data[i] ^= (uint8_t)(1u << bit);
			rc = env_decode(b.data, b.len, 0, &e);
			if (rc == SCHAKEL_OK)
				rc = env_open(e, s_alice.sign_pk, s_bob.id,
				    s_bob.box_pk, s_bob.box_sk, NULL, &p, &n);
			assert_int_not_equal(rc, SCHAKEL_OK);
			assert_null(p);
			env_destroy(&e);
			b.data[i] ^= (uint8_t)(1u << bit);
		}
	}
	codec_buf_clear(&b);
}

/* Found by fuzzing: an envelope without header_bytes made the wire walk
 * compute NULL + 0 (undefined behaviour; caught under -Dsanitize=true). */
static void
test_missing_fields(void **state)
{
	/* Only field 4 (ciphertext), 40 zero bytes. */
	uint8_t only_ct[42] = {0x22, 40};
	struct env *e = NULL;

	(void)state;
	assert_int_equal(
	    env_decode(only_ct, sizeof only_ct, 0, &e), SCHAKEL_E_BAD_FIELD);
	assert_null(e);
	assert_int_equal(env_decode(NULL, 0, 0, &e), SCHAKEL_E_BAD_FIELD);
	assert_int_equal(env_decode(NULL, 1, 0, &e), SCHAKEL_E_BAD_ARGUMENT);
}

static void
test_bad_drafts(void **state)
{
	struct s_party *to[2] = {&s_bob, &s_bob};
	struct env_draft d;
	struct codec_buf b = {0};

	(void)state;
	s_draft(&d, NULL, 0, to, 2);
	assert_int_equal(env_build(&d, 1, s_alice.sign_sk, &b),
	    SCHAKEL_E_BAD_FIELD); /* duplicate recipient */
	s_draft(&d, NULL, 0, to, 1);
	snprintf(d.hdr.case_ref, sizeof d.hdr.case_ref, "case 1");
	assert_int_equal(
	    env_build(&d, 1, s_alice.sign_sk, &b), SCHAKEL_E_BAD_FIELD);
	s_draft(&d, NULL, 0, to, 1);
	d.hdr.expires_ms = d.hdr.created_ms;
	assert_int_equal(
	    env_build(&d, 1, s_alice.sign_sk, &b), SCHAKEL_E_BAD_FIELD);
	s_draft(&d, NULL, 0, to, 1);
	snprintf(d.hdr.sender, sizeof d.hdr.sender, "GM0344");
	assert_int_equal(
	    env_build(&d, 1, s_alice.sign_sk, &b), SCHAKEL_E_BAD_FIELD);
	s_draft(&d, NULL, 0, to, 0);
	assert_int_equal(
	    env_build(&d, 1, s_alice.sign_sk, &b), SCHAKEL_E_BAD_FIELD);
	s_draft(&d, NULL, 0, to, 1);
	d.hdr.n_attrs = 2;
	snprintf(d.hdr.attrs[1].key, sizeof d.hdr.attrs[1].key, "a");
	assert_int_equal(env_build(&d, 1, s_alice.sign_sk, &b),
	    SCHAKEL_E_BAD_FIELD); /* keys not ascending */
	assert_null(b.data);
	assert_int_equal(
	    env_build(&d, 0, s_alice.sign_sk, &b), SCHAKEL_E_BAD_ARGUMENT);
}

static void
test_receipts(void **state)
{
	struct receipt r[5], got;
	struct codec_buf out[5];
	struct merkle_sig sig;
	struct merkle_cache *c = merkle_cache_new(16);

	(void)state;
	memset(r, 0, sizeof r);
	for (size_t i = 0; i < 5; i++) {
		randombytes_buf(r[i].message_id, 16);
		randombytes_buf(r[i].header_hash, 32);
		r[i].accepted_ms = 1767225600123ull + i;
		r[i].store_seq = 1000 + i;
		r[i].n_recipients = 2;
		snprintf(r[i].recipients[0], 65, "kredietbank-utrecht");
		snprintf(r[i].recipients[1], 65, "rechtbank-mn");
		snprintf(r[i].agreement_ids[0], 65, "ovk-2026-001");
		snprintf(r[i].agreement_ids[1], 65, "ovk-2026-007");
		snprintf(r[i].sender, 65, "gm0344");
	}
	assert_int_equal(receipt_build(r, 5, s_carol.sign_sk, out), 0);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(receipt_verify(out[i].data, out[i].len,
				     s_carol.sign_pk, c, &got, &sig),
		    0);
		assert_memory_equal(got.message_id, r[i].message_id, 16);
		assert_int_equal(got.store_seq, r[i].store_seq);
		assert_int_equal(sig.leaf_index, i);
		assert_int_equal(sig.leaf_count, 5);
		assert_int_equal(receipt_verify(out[i].data, out[i].len,
				     s_alice.sign_pk, NULL, &got, NULL),
		    SCHAKEL_E_BAD_SIGNATURE);
		out[i].data[out[i].len - 70] ^= 1;
		assert_int_not_equal(receipt_verify(out[i].data, out[i].len,
					 s_carol.sign_pk, NULL, &got, NULL),
		    0);
		codec_buf_clear(&out[i]);
	}
	merkle_cache_destroy(&c);
}

/* The eight-bytes-at-a-time printable check against a byte-by-byte one,
 * for every byte value at every position of strings of 1 to 20 bytes. */
static void
test_wire_printable(void **state)
{
	static const struct wire_field f[] = {{1, WIRE_STR, 1, 64, NULL}};
	static const struct wire_msg m = {f, 1, 0, 0};
	uint8_t buf[2 + 20];

	(void)state;
	for (size_t n = 1; n <= 20; n++) {
		buf[0] = 0x0a;
		buf[1] = (uint8_t)n;
		for (size_t pos = 0; pos < n; pos++) {
			for (int b = 0; b < 256; b++) {
				int want = b >= 0x20 && b <= 0x7e
				    ? SCHAKEL_OK
				    : SCHAKEL_E_BAD_FIELD;

				memset(buf + 2, 'a', n);
				buf[2 + pos] = (uint8_t)b;
				assert_int_equal(
				    wire_check(&m, buf, 2 + n, 2), want);
			}
		}
	}
}

static void
test_bsn(void **state)
{
	(void)state;
	assert_true(env_is_bsn("111222333"));
	assert_true(env_is_bsn("123456782"));
	assert_false(env_is_bsn("123456789"));
	assert_false(env_is_bsn("12345678"));
	assert_false(env_is_bsn("case:7f3a9c"));
}

static void
test_errors(void **state)
{
	(void)state;
	assert_string_equal(
	    schakel_errname(SCHAKEL_E_ROUTE_CHANGED), "ROUTE_CHANGED");
	assert_string_equal(schakel_errname(19), "UNKNOWN");
	assert_string_equal(schakel_errname(-1), "UNKNOWN");
	assert_true(schakel_err_retryable(SCHAKEL_E_QUEUE_FULL));
	assert_false(schakel_err_retryable(SCHAKEL_E_BAD_SIGNATURE));
	for (int i = 0; i <= SCHAKEL_E_DELIVERY_FAILED; i++)
		assert_non_null(schakel_strerror(i));
}

/* Ids are UUIDv7: version 7, variant 10, now in milliseconds up front,
 * and random in the rest (1,000 ids, no two alike). */
static void
test_new_id(void **state)
{
	static uint8_t ids[1000][ENV_ID_LEN];
	struct timespec ts;
	uint64_t before, after, prev = 0;

	(void)state;
	clock_gettime(CLOCK_REALTIME, &ts);
	before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (size_t i = 0; i < 1000; i++)
		env_new_id(ids[i]);
	clock_gettime(CLOCK_REALTIME, &ts);
	after = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (size_t i = 0; i < 1000; i++) {
		uint64_t ms = 0;
		for (int k = 0; k < 6; k++)
			ms = ms << 8 | ids[i][k];
		assert_true(ms >= before && ms <= after);
		assert_true(ms >= prev);
		prev = ms;
		assert_int_equal(ids[i][6] >> 4, 7);
		assert_int_equal(ids[i][8] >> 6, 2);
		for (size_t j = 0; j < i; j++)
			assert_memory_not_equal(ids[i], ids[j], ENV_ID_LEN);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_id),
	    cmocka_unit_test(test_merkle_shape),
	    cmocka_unit_test(test_merkle_cache),
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_truncated_and_trailing),
	    cmocka_unit_test(test_every_bitflip_refused),
	    cmocka_unit_test(test_missing_fields),
	    cmocka_unit_test(test_bad_drafts),
	    cmocka_unit_test(test_receipts),
	    cmocka_unit_test(test_wire_printable),
	    cmocka_unit_test(test_bsn),
	    cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, s_setup, NULL);
}
