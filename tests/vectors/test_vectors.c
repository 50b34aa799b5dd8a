/*
 * test_vectors: reproduces tests/vectors/vectors.json with the codec, byte
 * for byte, and checks that every negative vector yields its code.  With
 * --corpus DIR it instead writes every envelope and receipt in the file
 * to DIR, to seed the fuzzer from the committed vectors.
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

#include "env.h"
#include "json.h"
#include "merkle.h"
#include "receipt.h"

static const char *s_path;
static struct json *s_root;

struct s_party {
	const char *id;
	uint8_t sign_pk[32], sign_sk[64], box_pk[32], box_sk[32];
};

static struct s_party s_parties[16];
static size_t s_nparties;

static const struct s_party *
s_party(const char *id)
{
	for (size_t i = 0; i < s_nparties; i++)
		if (strcmp(s_parties[i].id, id) == 0)
			return &s_parties[i];
	fail_msg("unknown party %s", id);
	return NULL;
}

static void
s_copy_str(char *dst, size_t cap, const char *src)
{
	assert_true(strlen(src) < cap);
	memcpy(dst, src, strlen(src) + 1);
}

static void
s_expect_hex(
    const struct json *obj, const char *key, const uint8_t *p, size_t n)
{
	size_t len;
	uint8_t *want = json_hex(obj, key, &len);

	if (len != n || memcmp(want, p, n) != 0)
		fail_msg("\"%s\" differs from the committed vector", key);
	free(want);
}

static int
s_setup(void **state)
{
	const struct json *ps;

	(void)state;
	if (codec_init() != SCHAKEL_OK)
		return -1;
	s_root = json_load(s_path);
	if (s_root == NULL)
		return -1;
	ps = json_must(s_root, "parties");
	for (size_t i = 0; i < ps->n && i < 16; i++) {
		struct s_party *p = &s_parties[s_nparties++];
		uint8_t seed[32];

		p->id = json_str(ps->items[i], "id");
		json_hex_exact(ps->items[i], "sign_seed", seed, 32);
		crypto_sign_seed_keypair(p->sign_pk, p->sign_sk, seed);
		json_hex_exact(ps->items[i], "box_sk", p->box_sk, 32);
		crypto_scalarmult_base(p->box_pk, p->box_sk);
	}
	return 0;
}

static int
s_teardown(void **state)
{
	(void)state;
	json_destroy(&s_root);
	return 0;
}

static void
test_parties(void **state)
{
	const struct json *ps = json_must(s_root, "parties");

	(void)state;
	assert_int_equal(ps->n, s_nparties);
	for (size_t i = 0; i < ps->n; i++) {
		s_expect_hex(ps->items[i], "sign_pk", s_parties[i].sign_pk, 32);
		s_expect_hex(ps->items[i], "box_pk", s_parties[i].box_pk, 32);
	}
}

/* Fill a draft from a message's "input" object. */
static void
s_draft(const struct json *in, struct env_draft *d, struct env_fixed *fx,
    uint8_t **payload)
{
	const struct json *h = json_must(in, "header");
	const struct json *rc = json_must(h, "recipients");
	const struct json *at = json_must(h, "attributes");
	const struct json *eph = json_must(in, "eph_seeds");

	memset(d, 0, sizeof *d);
	memset(fx, 0, sizeof *fx);
	json_hex_exact(h, "message_id", d->hdr.id, 16);
	s_copy_str(d->hdr.sender, sizeof d->hdr.sender, json_str(h, "sender"));
	s_copy_str(
	    d->hdr.type, sizeof d->hdr.type, json_str(h, "message_type"));
	s_copy_str(
	    d->hdr.case_ref, sizeof d->hdr.case_ref, json_str(h, "case_ref"));
	s_copy_str(
	    d->hdr.purpose, sizeof d->hdr.purpose, json_str(h, "purpose"));
	s_copy_str(d->hdr.region, sizeof d->hdr.region, json_str(h, "region"));
	s_copy_str(d->hdr.consent_ref, sizeof d->hdr.consent_ref,
	    json_str(h, "consent_ref"));
	d->hdr.created_ms = json_num(h, "created_ms");
	d->hdr.expires_ms = json_num(h, "expires_ms");
	d->hdr.urgent = json_bool(h, "urgent");
	d->hdr.notify_delivered = json_bool(h, "notify_delivered");
	assert_true(at->n <= ENV_MAX_ATTRS);
	for (size_t i = 0; i < at->n; i++) {
		s_copy_str(d->hdr.attrs[i].key, sizeof d->hdr.attrs[i].key,
		    json_str(at->items[i], "key"));
		s_copy_str(d->hdr.attrs[i].value, sizeof d->hdr.attrs[i].value,
		    json_str(at->items[i], "value"));
	}
	d->hdr.n_attrs = at->n;
	/* Recipients in reverse, to show that build sorts them. */
	assert_true(rc->n <= ENV_MAX_RECIPIENTS && rc->n == eph->n);
	for (size_t i = 0; i < rc->n; i++) {
		const char *id = rc->items[rc->n - 1 - i]->str;
		size_t len;
		uint8_t *seed = json_hex_node(eph->items[i], &len);

		assert_int_equal(len, 32);
		memcpy(fx->eph_seed[i], seed, 32);
		free(seed);
		s_copy_str(d->recipients[i].party_id,
		    sizeof d->recipients[i].party_id, id);
		memcpy(d->recipients[i].box_pk, s_party(id)->box_pk, 32);
	}
	d->n_recipients = rc->n;
	json_hex_exact(in, "content_key", fx->content_key, 32);
	json_hex_exact(in, "nonce", fx->nonce, 24);
	*payload = json_hex(in, "payload", &d->payload_len);
	d->payload = *payload;
	d->fixed = fx;
}

/* Check one message's intermediate values with raw libsodium, as a
 * client in another language would. */
static void
s_check_parts(const struct json *in, const struct json *ex,
    const struct env_draft *d, const uint8_t *payload)
{
	size_t adlen, ctlen, n;
	uint8_t *ad = json_hex(ex, "associated_data", &adlen);
	uint8_t *ct = json_hex(ex, "ciphertext", &ctlen);
	uint8_t *pt = malloc(ctlen + 1), h[32], ck[32];
	const struct json *keys = json_must(ex, "sealed_keys");
	unsigned long long ptlen;

	assert_int_equal(
	    crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &ptlen, NULL,
		ct + 24, ctlen - 24, ad, adlen, ct, d->fixed->content_key),
	    0);
	assert_int_equal(ptlen, d->payload_len);
	if (ptlen > 0)
		assert_memory_equal(pt, payload, ptlen);
	crypto_generichash(h, 32, ct, ctlen, NULL, 0);
	s_expect_hex(ex, "ciphertext_hash", h, 32);
	crypto_generichash(h, 32, (const uint8_t *)"schakel.v1 content key", 22,
	    d->fixed->content_key, 32);
	s_expect_hex(ex, "key_commitment", h, 32);
	for (size_t k = 0; k < keys->n; k++) {
		const struct s_party *p =
		    s_party(json_str(keys->items[k], "recipient"));
		uint8_t *sealed = json_hex(keys->items[k], "sealed", &n);
		uint8_t epk[32], esk[32];

		assert_int_equal(n, ENV_SEALED_LEN);
		assert_int_equal(
		    crypto_box_seal_open(ck, sealed, n, p->box_pk, p->box_sk),
		    0);
		assert_memory_equal(ck, d->fixed->content_key, 32);
		crypto_box_seed_keypair(epk, esk, d->fixed->eph_seed[k]);
		s_expect_hex(keys->items[k], "eph_pk", epk, 32);
		free(sealed);
	}
	(void)in;
	free(pt);
	free(ad);
	free(ct);
}

static void
test_batches(void **state)
{
	const struct json *bs = json_must(s_root, "batches");
	struct merkle_cache *cache = merkle_cache_new(64);

	(void)state;
	assert_true(bs->n >= 4);
	for (size_t b = 0; b < bs->n; b++) {
		const struct json *batch = bs->items[b];
		const struct json *ms = json_must(batch, "messages");
		const struct s_party *signer =
		    s_party(json_str(batch, "signer"));
		struct env_draft *d = calloc(ms->n, sizeof *d);
		struct env_fixed *fx = calloc(ms->n, sizeof *fx);
		struct codec_buf *out = calloc(ms->n, sizeof *out);
		uint8_t **payloads = calloc(ms->n, sizeof *payloads);
		uint8_t sigmsg[MERKLE_SIGMSG_MAX];
		size_t siglen;

		for (size_t i = 0; i < ms->n; i++)
			s_draft(json_must(ms->items[i], "input"), &d[i], &fx[i],
			    &payloads[i]);
		assert_int_equal(env_build(d, ms->n, signer->sign_sk, out), 0);
		for (size_t i = 0; i < ms->n; i++) {
			const struct json *ex =
			    json_must(ms->items[i], "expect");
			const struct merkle_sig *sig;
			const struct json *proof = json_must(ex, "proof");
			const uint8_t *hb;
			struct env *e;
			size_t hlen;

			s_expect_hex(ex, "envelope", out[i].data, out[i].len);
			s_check_parts(json_must(ms->items[i], "input"), ex,
			    &d[i], payloads[i]);
			assert_int_equal(
			    env_decode(out[i].data, out[i].len, 0, &e), 0);
			hb = env_header_bytes(e, &hlen);
			s_expect_hex(ex, "header_bytes", hb, hlen);
			sig = env_sig(e);
			assert_int_equal(
			    sig->leaf_index, json_num(ex, "leaf_index"));
			assert_int_equal(sig->proof_len, proof->n);
			for (size_t k = 0; k < proof->n; k++) {
				size_t n;
				uint8_t *p = json_hex_node(proof->items[k], &n);

				assert_int_equal(n, 32);
				assert_memory_equal(p, sig->proof[k], 32);
				free(p);
			}
			s_expect_hex(batch, "root", sig->root, 32);
			s_expect_hex(batch, "signature", sig->sig, 64);
			assert_int_equal(
			    sig->leaf_count, json_num(batch, "leaf_count"));
			assert_int_equal(
			    env_verify(e, signer->sign_pk, cache), 0);
			for (size_t k = 0; k < env_header(e)->n_recipients;
			     k++) {
				const struct s_party *p =
				    s_party(env_header(e)->recipients[k]);
				uint8_t *pt;
				size_t ptlen;

				assert_int_equal(
				    env_open(e, signer->sign_pk, p->id,
					p->box_pk, p->box_sk, cache, &pt,
					&ptlen),
				    0);
				assert_int_equal(ptlen, d[i].payload_len);
				if (ptlen > 0)
					assert_memory_equal(
					    pt, payloads[i], ptlen);
				free(pt);
			}
			env_destroy(&e);
			codec_buf_clear(&out[i]);
			free(payloads[i]);
		}
		/* The signed message and signature, checked with libsodium
		 * alone. */
		{
			uint8_t root[32], sig[64];

			json_hex_exact(batch, "root", root, 32);
			json_hex_exact(batch, "signature", sig, 64);
			siglen = merkle_sig_message(MERKLE_DOMAIN_BATCH,
			    (uint32_t)json_num(batch, "leaf_count"), root,
			    sigmsg);
			s_expect_hex(batch, "signed_message", sigmsg, siglen);
			assert_int_equal(crypto_sign_verify_detached(sig,
					     sigmsg, siglen, signer->sign_pk),
			    0);
		}
		free(payloads);
		free(out);
		free(fx);
		free(d);
	}
	merkle_cache_destroy(&cache);
}

static void
test_receipts(void **state)
{
	const struct json *gs = json_must(s_root, "receipt_groups");

	(void)state;
	assert_true(gs->n >= 1);
	for (size_t g = 0; g < gs->n; g++) {
		const struct json *grp = gs->items[g];
		const struct json *rs = json_must(grp, "receipts");
		const struct s_party *signer = s_party(json_str(grp, "signer"));
		struct receipt *r = calloc(rs->n, sizeof *r);
		struct codec_buf *out = calloc(rs->n, sizeof *out);

		for (size_t i = 0; i < rs->n; i++) {
			const struct json *in =
			    json_must(rs->items[i], "input");
			const struct json *rc = json_must(in, "recipients");
			const struct json *ag = json_must(in, "agreement_ids");

			json_hex_exact(in, "message_id", r[i].message_id, 16);
			json_hex_exact(in, "header_hash", r[i].header_hash, 32);
			r[i].accepted_ms = json_num(in, "accepted_ms");
			r[i].store_seq = json_num(in, "store_seq");
			s_copy_str(r[i].sender, sizeof r[i].sender,
			    json_str(in, "sender"));
			assert_true(
			    rc->n == ag->n && rc->n <= ENV_MAX_RECIPIENTS);
			for (size_t k = 0; k < rc->n; k++) {
				s_copy_str(
				    r[i].recipients[k], 65, rc->items[k]->str);
				s_copy_str(r[i].agreement_ids[k], 65,
				    ag->items[k]->str);
			}
			r[i].n_recipients = rc->n;
		}
		assert_int_equal(
		    receipt_build(r, rs->n, signer->sign_sk, out), 0);
		for (size_t i = 0; i < rs->n; i++) {
			const struct json *ex =
			    json_must(rs->items[i], "expect");
			struct receipt got;
			struct merkle_sig sig;

			s_expect_hex(
			    ex, "signed_receipt", out[i].data, out[i].len);
			assert_int_equal(receipt_verify(out[i].data, out[i].len,
					     signer->sign_pk, NULL, &got, &sig),
			    0);
			assert_memory_equal(
			    got.message_id, r[i].message_id, 16);
			assert_int_equal(got.store_seq, r[i].store_seq);
			s_expect_hex(grp, "root", sig.root, 32);
			s_expect_hex(grp, "signature", sig.sig, 64);
			codec_buf_clear(&out[i]);
		}
		free(out);
		free(r);
	}
}

/* decode -> verify -> open, returning the first failure. */
static int
s_run_negative(const struct json *v)
{
	const struct s_party *signer = s_party(json_str(v, "signer"));
	const char *reader = json_str(v, "reader");
	size_t len;
	uint8_t *in = json_hex(v, "input", &len);
	int rc;

	if (strcmp(json_str(v, "kind"), "receipt") == 0) {
		struct receipt r;

		rc = receipt_verify(in, len, signer->sign_pk, NULL, &r, NULL);
	} else {
		struct env *e = NULL;

		rc = env_decode(in, len, (size_t)json_num(v, "max_len"), &e);
		if (rc == SCHAKEL_OK)
			rc = env_verify(e, signer->sign_pk, NULL);
		if (rc == SCHAKEL_OK && reader[0] != '\0') {
			const struct s_party *p = s_party(reader);
			uint8_t *pt = NULL;
			size_t ptlen;

			rc = env_open(e, signer->sign_pk, p->id, p->box_pk,
			    p->box_sk, NULL, &pt, &ptlen);
			assert_true(rc != SCHAKEL_OK || pt != NULL);
			free(pt);
		}
		env_destroy(&e);
	}
	free(in);
	return rc;
}

static void
test_negative(void **state)
{
	const struct json *ns = json_must(s_root, "negative");
	int failures = 0;

	(void)state;
	assert_true(ns->n >= 10);
	for (size_t i = 0; i < ns->n; i++) {
		const struct json *v = ns->items[i];
		int want = (int)json_num(v, "expect_code");
		int got = s_run_negative(v);

		assert_string_equal(
		    schakel_errname(want), json_str(v, "expect"));
		if (got != want) {
			print_error("%s: got %s, want %s\n",
			    json_str(v, "name"), schakel_errname(got),
			    schakel_errname(want));
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

static int
s_write(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	FILE *f;

	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return -1;
	f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n) {
		perror(path);
		if (f != NULL)
			fclose(f);
		return -1;
	}
	return fclose(f);
}

/* Seeds for the fuzzer (tests/fuzz/fuzz_envelope.c tries every input
 * both as an envelope and as a receipt): each committed input as is. */
static int
s_corpus(const char *dir)
{
	const struct json *bs = json_must(s_root, "batches");
	const struct json *gs = json_must(s_root, "receipt_groups");
	const struct json *ns = json_must(s_root, "negative");
	char name[128];
	int n = 0;

	for (size_t b = 0; b < bs->n; b++) {
		const struct json *ms = json_must(bs->items[b], "messages");

		for (size_t i = 0; i < ms->n; i++) {
			size_t len;
			uint8_t *p = json_hex(json_must(ms->items[i], "expect"),
			    "envelope", &len);

			snprintf(name, sizeof name, "%s-%zu",
			    json_str(bs->items[b], "name"), i);
			if (s_write(dir, name, p, len) != 0)
				return 1;
			free(p);
			n++;
		}
	}
	for (size_t g = 0; g < gs->n; g++) {
		const struct json *rs = json_must(gs->items[g], "receipts");

		for (size_t i = 0; i < rs->n; i++) {
			size_t len;
			uint8_t *p = json_hex(json_must(rs->items[i], "expect"),
			    "signed_receipt", &len);

			snprintf(name, sizeof name, "%s-%zu",
			    json_str(gs->items[g], "name"), i);
			if (s_write(dir, name, p, len) != 0)
				return 1;
			free(p);
			n++;
		}
	}
	for (size_t i = 0; i < ns->n; i++) {
		size_t len;
		uint8_t *p = json_hex(ns->items[i], "input", &len);

		snprintf(name, sizeof name, "neg-%s",
		    json_str(ns->items[i], "name"));
		if (s_write(dir, name, p, len) != 0)
			return 1;
		free(p);
		n++;
	}
	fprintf(stderr, "wrote %d seed files to %s\n", n, dir);
	return 0;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parties),
	    cmocka_unit_test(test_batches),
	    cmocka_unit_test(test_receipts),
	    cmocka_unit_test(test_negative),
	};

	if (argc == 4 && strcmp(argv[2], "--corpus") == 0) {
		int rc;

		s_path = argv[1];
		if (s_setup(NULL) != 0)
			return 1;
		rc = s_corpus(argv[3]);
		s_teardown(NULL);
		return rc;
	}
	if (argc != 2) {
		fprintf(stderr,
		    "usage: test_vectors VECTORS.json [--corpus DIR]\n");
		return 2;
	}
	s_path = argv[1];
	return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
