/*
 * env: seals, signs, verifies and opens envelopes.  The broker calls only
 * env_decode and env_verify, which never need a box key; env_open is the
 * recipient's.  Content keys and ephemeral secrets live on the stack of
 * one call and are wiped before it returns.
 */
#include "env.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "pb.h"
#include "syntax.h"

#define S_AD_LABEL "schakel.v1 payload"
#define S_KC_LABEL "schakel.v1 content key"
#define S_AD_MAX \
	(sizeof S_AD_LABEL + ENV_ID_LEN + \
	    (3 + ENV_MAX_RECIPIENTS) * (1 + ENV_MAX_NAME_LEN) + 1)

struct env {
	struct pb_envelope pb;
	struct env_header hdr;
};

/* ---- field syntax ------------------------------------------------------- */

/* Everything but the two hashes, which only env_build can fill. */
static int
s_header_check(const struct env_header *h)
{
	if (h->n_recipients == 0 || h->n_recipients > ENV_MAX_RECIPIENTS ||
	    h->n_attrs > ENV_MAX_ATTRS)
		return SCHAKEL_E_BAD_FIELD;
	if (!syntax_is_name(h->sender, sizeof h->sender) ||
	    !syntax_is_name(h->type, sizeof h->type) ||
	    !syntax_is_name(h->purpose, sizeof h->purpose) ||
	    !syntax_is_ref(h->case_ref, sizeof h->case_ref) ||
	    h->case_ref[0] == '\0' ||
	    !syntax_is_ref(h->consent_ref, sizeof h->consent_ref) ||
	    !syntax_is_region(h->region, sizeof h->region))
		return SCHAKEL_E_BAD_FIELD;
	/* Strictly ascending lists make the header, and the AEAD's
	 * associated data, one exact byte string for one set. */
	for (size_t i = 0; i < h->n_recipients; i++) {
		if (!syntax_is_name(h->recipients[i], sizeof h->recipients[i]))
			return SCHAKEL_E_BAD_FIELD;
		if (i > 0 &&
		    strcmp(h->recipients[i - 1], h->recipients[i]) >= 0)
			return SCHAKEL_E_BAD_FIELD;
	}
	for (size_t i = 0; i < h->n_attrs; i++) {
		if (!syntax_is_name(h->attrs[i].key, sizeof h->attrs[i].key) ||
		    !syntax_is_printable(
			h->attrs[i].value, sizeof h->attrs[i].value))
			return SCHAKEL_E_BAD_FIELD;
		if (i > 0 && strcmp(h->attrs[i - 1].key, h->attrs[i].key) >= 0)
			return SCHAKEL_E_BAD_FIELD;
	}
	if (h->created_ms == 0 || h->expires_ms <= h->created_ms)
		return SCHAKEL_E_BAD_FIELD;
	return SCHAKEL_OK;
}

bool
env_is_ref(const char *s)
{
	return s != NULL &&
	    strnlen(s, ENV_MAX_NAME_LEN + 1) <= ENV_MAX_NAME_LEN &&
	    syntax_is_ref(s, ENV_MAX_NAME_LEN + 1);
}

bool
env_is_bsn(const char *s)
{
	int sum = 0;

	if (strlen(s) != 9)
		return false;
	for (int i = 0; i < 9; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		sum += (s[i] - '0') * (i < 8 ? 9 - i : -1);
	}
	return sum % 11 == 0;
}

/* ---- crypto helpers -------------------------------------------------- */

static size_t
s_put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	p[0] = (uint8_t)n;
	memcpy(p + 1, s, n);
	return n + 1;
}

/* AD = "schakel.v1 payload" 0x00 || id || str(sender) || str(type) ||
 * str(case_ref) || u8(n) || str(recipient)..., str(s) = u8(len) || s.
 * All of it exists before the ciphertext does. */
static size_t
s_ad(const struct env_header *h, uint8_t ad[S_AD_MAX])
{
	size_t n = sizeof S_AD_LABEL; /* the label and its NUL */

	memcpy(ad, S_AD_LABEL, n);
	memcpy(ad + n, h->id, ENV_ID_LEN);
	n += ENV_ID_LEN;
	n += s_put_str(ad + n, h->sender);
	n += s_put_str(ad + n, h->type);
	n += s_put_str(ad + n, h->case_ref);
	ad[n++] = (uint8_t)h->n_recipients;
	for (size_t i = 0; i < h->n_recipients; i++)
		n += s_put_str(ad + n, h->recipients[i]);
	return n;
}

/* BLAKE2b-256 keyed with the content key over a fixed label: recipients
 * who open the same envelope provably hold the same key, so one
 * ciphertext cannot decrypt to different payloads for different readers. */
static void
s_key_commitment(
    const uint8_t ck[ENV_CONTENT_KEY_LEN], uint8_t out[ENV_HASH_LEN])
{
	crypto_generichash(out, ENV_HASH_LEN, (const uint8_t *)S_KC_LABEL,
	    sizeof S_KC_LABEL - 1, ck, ENV_CONTENT_KEY_LEN);
}

/* libsodium's sealed box, with the ephemeral key pair derived from `seed`
 * when a test fixes it: epk || crypto_box_easy(ck, BLAKE2b-192(epk || rpk),
 * rpk, esk).  crypto_box_seal_open opens both forms. */
static int
s_seal(uint8_t out[ENV_SEALED_LEN], const uint8_t ck[ENV_CONTENT_KEY_LEN],
    const uint8_t rpk[ENV_BOX_PK_LEN], const uint8_t *seed)
{
	uint8_t epk[crypto_box_PUBLICKEYBYTES], esk[crypto_box_SECRETKEYBYTES];
	uint8_t nonce[crypto_box_NONCEBYTES];
	crypto_generichash_state st;
	int rc;

	if (seed == NULL)
		return crypto_box_seal(out, ck, ENV_CONTENT_KEY_LEN, rpk) == 0
		    ? SCHAKEL_OK
		    : SCHAKEL_E_BAD_FIELD;
	crypto_box_seed_keypair(epk, esk, seed);
	crypto_generichash_init(&st, NULL, 0, sizeof nonce);
	crypto_generichash_update(&st, epk, sizeof epk);
	crypto_generichash_update(&st, rpk, ENV_BOX_PK_LEN);
	crypto_generichash_final(&st, nonce, sizeof nonce);
	memcpy(out, epk, sizeof epk);
	rc = crypto_box_easy(
	    out + sizeof epk, ck, ENV_CONTENT_KEY_LEN, nonce, rpk, esk);
	sodium_memzero(esk, sizeof esk);
	return rc == 0 ? SCHAKEL_OK : SCHAKEL_E_BAD_FIELD;
}

/* ---- build ------------------------------------------------------------ */

/* What env_build keeps per message between sealing and signing.  The
 * ciphertext is written straight into the final envelope buffer, at
 * offset `prefix`: a batch of large payloads is then allocated and
 * written once, not twice. */
struct s_item {
	struct codec_buf header;
	size_t prefix;
	uint8_t (*sealed)[ENV_SEALED_LEN];
};

void
env_new_id(uint8_t id[ENV_ID_LEN])
{
	struct timespec ts;
	uint64_t ms;

	/* A UUIDv7 (RFC 9562): the time in milliseconds, big-endian, then
	 * 74 random bits.  Ids made one after another sort one after
	 * another, so the broker's id index grows at its end. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	randombytes_buf(id, ENV_ID_LEN);
	for (int i = 0; i < 6; i++)
		id[i] = (uint8_t)(ms >> (8 * (5 - i)));
	id[6] = (uint8_t)(0x70 | (id[6] & 0x0f));
	id[8] = (uint8_t)(0x80 | (id[8] & 0x3f));
}

/* Put the draft's recipients in ascending order into its header. */
static int
s_sort_recipients(struct env_draft *d, size_t order[ENV_MAX_RECIPIENTS])
{
	if (d->n_recipients == 0 || d->n_recipients > ENV_MAX_RECIPIENTS)
		return SCHAKEL_E_BAD_FIELD;
	for (size_t i = 0; i < d->n_recipients; i++) {
		size_t j = i;

		if (strnlen(d->recipients[i].party_id,
			sizeof d->recipients[i].party_id) >=
		    ENV_MAX_NAME_LEN + 1)
			return SCHAKEL_E_TOO_LARGE;
		while (j > 0 &&
		    strcmp(d->recipients[order[j - 1]].party_id,
			d->recipients[i].party_id) > 0) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	d->hdr.n_recipients = d->n_recipients;
	for (size_t i = 0; i < d->n_recipients; i++)
		memcpy(d->hdr.recipients[i], d->recipients[order[i]].party_id,
		    sizeof d->hdr.recipients[i]);
	return SCHAKEL_OK;
}

/* Lay out, encrypt and seal draft `index` of `count` into *out; the
 * prefix before the ciphertext is written later by s_finish. */
static int
s_seal_one(struct env_draft *d, uint32_t index, uint32_t count,
    struct pb_envelope *pe, struct s_item *it, struct codec_buf *out)
{
	uint8_t ck[ENV_CONTENT_KEY_LEN], ad[S_AD_MAX];
	size_t order[ENV_MAX_RECIPIENTS], adlen, ctlen;
	uint8_t *ct;
	int rc;

	if (d->payload_len > ENV_MAX_PAYLOAD_LEN)
		return SCHAKEL_E_TOO_LARGE;
	if (d->payload == NULL && d->payload_len > 0)
		return SCHAKEL_E_BAD_ARGUMENT;
	rc = s_sort_recipients(d, order);
	if (rc)
		return rc;
	rc = s_header_check(&d->hdr);
	if (rc)
		return rc;
	/* Only lengths and the proof's shape decide the prefix's size. */
	ctlen = ENV_NONCE_LEN + d->payload_len + ENV_TAG_LEN;
	memset(pe, 0, sizeof *pe);
	pe->header_len = pb_header_size(&d->hdr);
	pe->sig.leaf_index = index;
	pe->sig.leaf_count = count;
	pe->sig.proof_len = merkle_proof_len(index, count);
	pe->n_keys = d->n_recipients;
	memcpy(pe->key_recipient, d->hdr.recipients,
	    d->n_recipients * sizeof pe->key_recipient[0]);
	pe->ciphertext_len = ctlen;
	it->prefix = pb_envelope_prefix_size(pe);
	if (pe->header_len == SIZE_MAX || it->prefix == SIZE_MAX)
		return SCHAKEL_E_INTERNAL;
	out->len = it->prefix + ctlen;
	out->data = malloc(out->len);
	it->sealed = malloc(d->n_recipients * sizeof *it->sealed);
	if (out->data == NULL || it->sealed == NULL)
		return SCHAKEL_E_NO_MEMORY;
	ct = out->data + it->prefix;
	if (d->fixed != NULL) {
		memcpy(ck, d->fixed->content_key, sizeof ck);
		memcpy(ct, d->fixed->nonce, ENV_NONCE_LEN);
	} else {
		crypto_aead_xchacha20poly1305_ietf_keygen(ck);
		randombytes_buf(ct, ENV_NONCE_LEN);
	}
	adlen = s_ad(&d->hdr, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt(ct + ENV_NONCE_LEN, NULL,
	    d->payload, d->payload_len, ad, adlen, NULL, ct, ck);
	crypto_generichash(
	    d->hdr.ciphertext_hash, ENV_HASH_LEN, ct, ctlen, NULL, 0);
	s_key_commitment(ck, d->hdr.key_commitment);
	for (size_t i = 0; i < d->n_recipients && rc == SCHAKEL_OK; i++)
		rc = s_seal(it->sealed[i], ck, d->recipients[order[i]].box_pk,
		    d->fixed != NULL ? d->fixed->eph_seed[i] : NULL);
	sodium_memzero(ck, sizeof ck);
	if (rc)
		return rc;
	rc = pb_header_encode(&d->hdr, &it->header);
	if (rc == SCHAKEL_OK && it->header.len != pe->header_len)
		rc = SCHAKEL_E_INTERNAL;
	return rc;
}

/* Write the envelope's prefix (header, signature, proof, sealed keys and
 * the ciphertext field's key and length) in front of its ciphertext. */
static int
s_finish(const struct env_draft *d, const struct s_item *it,
    const struct merkle_tree *tree, uint32_t index, struct pb_envelope *pe,
    struct codec_buf *out)
{
	merkle_tree_proof(tree, index, &pe->sig);
	pe->header = it->header.data;
	pe->header_len = it->header.len;
	pe->n_keys = d->hdr.n_recipients;
	for (size_t k = 0; k < pe->n_keys; k++) {
		memcpy(pe->key_recipient[k], d->hdr.recipients[k],
		    sizeof pe->key_recipient[k]);
		memcpy(pe->key_sealed[k], it->sealed[k], ENV_SEALED_LEN);
	}
	pe->ciphertext = out->data + it->prefix;
	pe->ciphertext_len = out->len - it->prefix;
	return pb_envelope_pack_prefix(pe, out->data, it->prefix);
}

int
env_build(struct env_draft *drafts, size_t n,
    const uint8_t sender_sk[MERKLE_SK_LEN], struct codec_buf *out)
{
	struct pb_envelope *pe = NULL;
	struct merkle_tree *tree = NULL;
	uint8_t(*leaves)[MERKLE_HASH_LEN] = NULL;
	struct s_item *items;
	int rc = SCHAKEL_OK;

	if (drafts == NULL || out == NULL || n == 0 || n > MERKLE_MAX_LEAVES)
		return SCHAKEL_E_BAD_ARGUMENT;
	memset(out, 0, n * sizeof *out);
	items = calloc(n, sizeof *items);
	leaves = calloc(n, sizeof *leaves);
	pe = calloc(1, sizeof *pe);
	if (items == NULL || leaves == NULL || pe == NULL)
		rc = SCHAKEL_E_NO_MEMORY;
	for (size_t i = 0; i < n && rc == SCHAKEL_OK; i++) {
		rc = s_seal_one(&drafts[i], (uint32_t)i, (uint32_t)n, pe,
		    &items[i], &out[i]);
		if (rc == SCHAKEL_OK)
			merkle_leaf_hash(items[i].header.data,
			    items[i].header.len, leaves[i]);
	}
	if (rc == SCHAKEL_OK) {
		tree = merkle_tree_new(
		    (const uint8_t(*)[MERKLE_HASH_LEN])leaves, n);
		if (tree == NULL)
			rc = SCHAKEL_E_NO_MEMORY;
	}
	if (rc == SCHAKEL_OK) {
		merkle_tree_proof(tree, 0, &pe->sig);
		rc = merkle_sign(MERKLE_DOMAIN_BATCH, sender_sk, &pe->sig);
	}
	for (size_t i = 0; i < n && rc == SCHAKEL_OK; i++)
		rc = s_finish(
		    &drafts[i], &items[i], tree, (uint32_t)i, pe, &out[i]);
	for (size_t i = 0; items != NULL && i < n; i++) {
		codec_buf_clear(&items[i].header);
		free(items[i].sealed);
		if (rc)
			codec_buf_clear(&out[i]);
	}
	merkle_tree_destroy(&tree);
	free(items);
	free(leaves);
	free(pe);
	return rc;
}

/* ---- decode, verify, open -------------------------------------------- */

/* The checks before any byte of an encoded envelope is read: its length
 * against max_len (0: the codec's ceiling), and a buffer for it. */
static int
s_input(const uint8_t *buf, size_t len, size_t max_len)
{
	if (max_len == 0 || max_len > ENV_MAX_LEN)
		max_len = ENV_MAX_LEN;
	if (len > max_len)
		return SCHAKEL_E_TOO_LARGE;
	if (buf == NULL && len > 0)
		return SCHAKEL_E_BAD_ARGUMENT;
	return SCHAKEL_OK;
}

void
env_reuse(struct env *e)
{
	pb_release(&e->pb);
	e->hdr.n_recipients = e->hdr.n_attrs = 0;
}

struct env *
env_new(void)
{
	/* Not zeroed: 10 KiB a message on the broker thread, mostly arrays
	 * that the decoders fill and read only up to their counts (they
	 * clear what they count).  Safe to destroy as it is. */
	struct env *e = malloc(sizeof(*e));

	if (e != NULL)
		env_reuse(e);
	return e;
}

int
env_decode(const uint8_t *buf, size_t len, size_t max_len, struct env **out)
{
	struct env *e;
	int rc;

	*out = NULL;
	rc = s_input(buf, len, max_len);
	if (rc)
		return rc;
	e = env_new();
	if (e == NULL)
		return SCHAKEL_E_NO_MEMORY;
	rc = env_decode_into(e, buf, len, max_len);
	if (rc) {
		env_destroy(&e);
		return rc;
	}
	*out = e;
	return SCHAKEL_OK;
}

int
env_decode_into(struct env *e, const uint8_t *buf, size_t len, size_t max_len)
{
	int rc = s_input(buf, len, max_len);

	if (rc) {
		pb_release(&e->pb);
		return rc;
	}
	/* Both decoders below zero what they fill. */
	rc = pb_envelope_decode(buf, len, &e->pb);
	if (rc == SCHAKEL_OK)
		rc = pb_header_decode(e->pb.header, e->pb.header_len, &e->hdr);
	if (rc == SCHAKEL_OK)
		rc = s_header_check(&e->hdr);
	if (rc == SCHAKEL_OK &&
	    e->pb.ciphertext_len < ENV_NONCE_LEN + ENV_TAG_LEN)
		rc = SCHAKEL_E_BAD_FIELD;
	/* One sealed key per recipient, in the header's order: the broker can
	 * check this much without reading anything. */
	if (rc == SCHAKEL_OK && e->pb.n_keys != e->hdr.n_recipients)
		rc = SCHAKEL_E_NO_SEALED_KEY;
	for (size_t i = 0; rc == SCHAKEL_OK && i < e->pb.n_keys; i++)
		if (strcmp(e->pb.key_recipient[i], e->hdr.recipients[i]) != 0)
			rc = SCHAKEL_E_NO_SEALED_KEY;
	if (rc)
		pb_release(&e->pb);
	return rc;
}

int
env_peek_sender(const uint8_t *buf, size_t len, size_t max_len,
    char sender[ENV_MAX_NAME_LEN + 1])
{
	int rc = s_input(buf, len, max_len);

	sender[0] = '\0';
	if (rc)
		return rc;
	return pb_peek_sender(buf, len, sender, ENV_MAX_NAME_LEN + 1);
}

void
env_destroy(struct env **e)
{
	if (e == NULL || *e == NULL)
		return;
	pb_release(&(*e)->pb);
	free(*e);
	*e = NULL;
}

const struct env_header *
env_header(const struct env *e)
{
	return &e->hdr;
}

const uint8_t *
env_header_bytes(const struct env *e, size_t *len)
{
	*len = e->pb.header_len;
	return e->pb.header;
}

const struct merkle_sig *
env_sig(const struct env *e)
{
	return &e->pb.sig;
}

void
env_header_hash(const struct env *e, uint8_t out[ENV_HASH_LEN])
{
	crypto_generichash(
	    out, ENV_HASH_LEN, e->pb.header, e->pb.header_len, NULL, 0);
}

size_t
env_payload_len(const struct env *e)
{
	return e->pb.ciphertext_len - ENV_NONCE_LEN - ENV_TAG_LEN;
}

int
env_verify(const struct env *e, const uint8_t sender_pk[MERKLE_PK_LEN],
    struct merkle_cache *cache)
{
	uint8_t leaf[MERKLE_HASH_LEN], h[ENV_HASH_LEN];
	int rc;

	merkle_leaf_hash(e->pb.header, e->pb.header_len, leaf);
	rc = merkle_proof_check_cached(leaf, &e->pb.sig, cache);
	if (rc)
		return rc;
	rc =
	    merkle_sig_check(MERKLE_DOMAIN_BATCH, sender_pk, &e->pb.sig, cache);
	if (rc)
		return rc;
	crypto_generichash(
	    h, sizeof h, e->pb.ciphertext, e->pb.ciphertext_len, NULL, 0);
	/* Public values: no need for a constant-time comparison. */
	if (memcmp(h, e->hdr.ciphertext_hash, sizeof h) != 0)
		return SCHAKEL_E_HASH_MISMATCH;
	return SCHAKEL_OK;
}

int
env_open(const struct env *e, const uint8_t sender_pk[MERKLE_PK_LEN],
    const char *reader, const uint8_t reader_pk[ENV_BOX_PK_LEN],
    const uint8_t reader_sk[ENV_BOX_SK_LEN], struct merkle_cache *cache,
    uint8_t **payload, size_t *payload_len)
{
	uint8_t ck[ENV_CONTENT_KEY_LEN], kc[ENV_HASH_LEN], ad[S_AD_MAX];
	size_t idx = SIZE_MAX, adlen, plen;
	uint8_t *p;
	int rc;

	*payload = NULL;
	*payload_len = 0;
	rc = env_verify(e, sender_pk, cache);
	if (rc)
		return rc;
	for (size_t i = 0; i < e->hdr.n_recipients; i++)
		if (strcmp(e->hdr.recipients[i], reader) == 0)
			idx = i;
	if (idx == SIZE_MAX)
		return SCHAKEL_E_NOT_RECIPIENT;
	if (crypto_box_seal_open(ck, e->pb.key_sealed[idx], ENV_SEALED_LEN,
		reader_pk, reader_sk) != 0)
		return SCHAKEL_E_UNSEAL_FAILED;
	s_key_commitment(ck, kc);
	if (memcmp(kc, e->hdr.key_commitment, sizeof kc) != 0) {
		sodium_memzero(ck, sizeof ck);
		return SCHAKEL_E_DECRYPT_FAILED;
	}
	plen = env_payload_len(e);
	p = malloc(plen > 0 ? plen : 1);
	if (p == NULL) {
		sodium_memzero(ck, sizeof ck);
		return SCHAKEL_E_NO_MEMORY;
	}
	adlen = s_ad(&e->hdr, ad);
	rc = crypto_aead_xchacha20poly1305_ietf_decrypt(p, NULL, NULL,
	    e->pb.ciphertext + ENV_NONCE_LEN,
	    e->pb.ciphertext_len - ENV_NONCE_LEN, ad, adlen, e->pb.ciphertext,
	    ck);
	sodium_memzero(ck, sizeof ck);
	if (rc != 0) {
		free(p);
		return SCHAKEL_E_DECRYPT_FAILED;
	}
	*payload = p;
	*payload_len = plen;
	return SCHAKEL_OK;
}
