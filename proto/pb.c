/*
 * pb: the one file that includes the protobuf-c generated header.  Every
 * decode first walks the wire format against a limits table (wire.c), then
 * lets protobuf-c unpack with an allocator that has a fixed budget, then
 * copies into plain C structs.  It checks sizes, not meaning.
 */
#include "pb.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "schakel.pb-c.h"
#include "wire.h"

#define S_DEPTH 4

/* ---- limits tables ------------------------------------------------- */

static const struct wire_field s_attr_f[] = {
    {1, WIRE_STR, 1, ENV_MAX_ATTR_KEY_LEN, NULL},
    {2, WIRE_STR, 1, ENV_MAX_ATTR_VALUE_LEN, NULL},
};
static const struct wire_msg s_attr_m = {s_attr_f, 2, 0, 0};

static const struct wire_field s_header_f[] = {
    {1, WIRE_LEN, 1, ENV_ID_LEN, NULL},
    {2, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {3, WIRE_STR, ENV_MAX_RECIPIENTS, ENV_MAX_NAME_LEN, NULL},
    {4, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {5, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {6, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {7, WIRE_U64, 1, 0, NULL},
    {8, WIRE_U64, 1, 0, NULL},
    {9, WIRE_BOOL, 1, 0, NULL},
    {10, WIRE_STR, 1, ENV_MAX_REGION_LEN, NULL},
    {11, WIRE_MSG, ENV_MAX_ATTRS,
	ENV_MAX_ATTR_KEY_LEN + ENV_MAX_ATTR_VALUE_LEN + 6, &s_attr_m},
    {12, WIRE_LEN, 1, ENV_HASH_LEN, NULL},
    {13, WIRE_LEN, 1, ENV_HASH_LEN, NULL},
    {14, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {15, WIRE_BOOL, 1, 0, NULL},
};
static const struct wire_msg s_header_m = {s_header_f, 15, 0, 0};

static const struct wire_field s_bsig_f[] = {
    {1, WIRE_LEN, 1, MERKLE_HASH_LEN, NULL},
    {2, WIRE_U32, 1, 0, NULL},
    {3, WIRE_U32, 1, 0, NULL},
    {4, WIRE_LEN, MERKLE_MAX_PROOF, MERKLE_HASH_LEN, NULL},
    {5, WIRE_LEN, 1, MERKLE_SIG_LEN, NULL},
};
static const struct wire_msg s_bsig_m = {s_bsig_f, 5, 0, 0};
#define S_BSIG_MAX \
	(MERKLE_HASH_LEN * (MERKLE_MAX_PROOF + 1) + MERKLE_SIG_LEN + 64)

static const struct wire_field s_sealed_f[] = {
    {1, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {2, WIRE_LEN, 1, ENV_SEALED_LEN, NULL},
};
static const struct wire_msg s_sealed_m = {s_sealed_f, 2, 0, 0};

static const struct wire_field s_env_f[] = {
    {1, WIRE_LEN, 1, ENV_MAX_HEADER_LEN, NULL},
    {2, WIRE_MSG, 1, S_BSIG_MAX, &s_bsig_m},
    {3, WIRE_MSG, ENV_MAX_RECIPIENTS, ENV_MAX_NAME_LEN + ENV_SEALED_LEN + 6,
	&s_sealed_m},
    {4, WIRE_LEN, 1, ENV_MAX_CIPHERTEXT_LEN, NULL},
};
static const struct wire_msg s_env_m = {s_env_f, 4, 0, 0};

static const struct wire_field s_receipt_f[] = {
    {1, WIRE_LEN, 1, ENV_ID_LEN, NULL},
    {2, WIRE_U64, 1, 0, NULL},
    {3, WIRE_STR, ENV_MAX_RECIPIENTS, ENV_MAX_NAME_LEN, NULL},
    {4, WIRE_STR, ENV_MAX_RECIPIENTS, ENV_MAX_NAME_LEN, NULL},
    {5, WIRE_U64, 1, 0, NULL},
    {6, WIRE_LEN, 1, ENV_HASH_LEN, NULL},
    {7, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
};
static const struct wire_msg s_receipt_m = {s_receipt_f, 7, 0, 0};

static const struct wire_field s_sreceipt_f[] = {
    {1, WIRE_LEN, 1, RECEIPT_MAX_LEN, NULL},
    {2, WIRE_MSG, 1, S_BSIG_MAX, &s_bsig_m},
};
static const struct wire_msg s_sreceipt_m = {s_sreceipt_f, 2, 0, 0};

/* ---- an arena for protobuf-c ------------------------------------------ */

/* protobuf-c allocates as it unpacks.  The wire walk has already bounded
 * every count and length, so what it can allocate is bounded too: copies
 * of the bytes and strings (never more than the input) plus structs and
 * pointer arrays for at most the counts in the limits tables (a few KiB)
 * plus alignment.  One block of len + S_ARENA_SLACK therefore always
 * suffices; unpack gets a bump allocator over it, and the whole block is
 * freed at once.  Running out is a bug, reported as SCHAKEL_E_NO_MEMORY. */
#define S_ARENA_SLACK 32768
#define S_ALIGN 16

struct s_arena {
	uint8_t *base;
	size_t used, cap;
	bool exhausted;
};

static void *
s_arena_alloc(void *ctx, size_t n)
{
	struct s_arena *a = ctx;
	size_t need = (n + S_ALIGN - 1) & ~(size_t)(S_ALIGN - 1);
	void *p;

	if (need < n || need > a->cap - a->used) {
		a->exhausted = true;
		return NULL;
	}
	p = a->base + a->used;
	a->used += need;
	return p;
}

static void
s_arena_free(void *ctx, void *p)
{
	(void)ctx;
	(void)p; /* the block is freed whole */
}

/* Why unpack failed after the wire walk passed: the arena bound was
 * wrong (a bug) or protobuf-c refused something the walk allowed. */
static int
s_unpack_failed(struct s_arena *a)
{
	int rc = a->exhausted ? SCHAKEL_E_NO_MEMORY : SCHAKEL_E_MALFORMED;

	free(a->base);
	a->base = NULL;
	return rc;
}

static int
s_arena_init(struct s_arena *a, ProtobufCAllocator *pa, size_t len)
{
	a->used = 0;
	a->exhausted = false;
	a->cap = len + S_ARENA_SLACK;
	a->base = malloc(a->cap);
	pa->alloc = s_arena_alloc;
	pa->free = s_arena_free;
	pa->allocator_data = a;
	return a->base != NULL ? SCHAKEL_OK : SCHAKEL_E_NO_MEMORY;
}

/* ---- helpers -------------------------------------------------------- */

static int
s_pack(const ProtobufCMessage *m, struct codec_buf *out)
{
	size_t n = protobuf_c_message_get_packed_size(m);

	/* Always allocate at least one byte so an empty message still has
	 * an owned, non-NULL buffer. */
	out->data = malloc(n > 0 ? n : 1);
	if (out->data == NULL)
		return SCHAKEL_E_NO_MEMORY;
	out->len = protobuf_c_message_pack(m, out->data);
	if (out->len != n) {
		free(out->data);
		out->data = NULL;
		out->len = 0;
		return SCHAKEL_E_INTERNAL;
	}
	return SCHAKEL_OK;
}

static ProtobufCBinaryData
s_bin(const uint8_t *p, size_t n)
{
	ProtobufCBinaryData b = {n, (uint8_t *)(uintptr_t)p};

	return b;
}

static char *
s_str(const char *s)
{
	return (char *)(uintptr_t)s;
}

/* Copy a string the wire walk already bounded to `cap - 1` bytes. */
static void
s_copy(char *dst, size_t cap, const char *src)
{
	size_t n = src != NULL ? strlen(src) : 0;

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src != NULL ? src : "", n);
	dst[n] = '\0';
}

/* Copy a bytes field that must be exactly `n` long (0 leaves dst zeroed
 * and is reported as missing). */
static int
s_exact(uint8_t *dst, size_t n, ProtobufCBinaryData b)
{
	if (b.len != n)
		return SCHAKEL_E_BAD_FIELD;
	memcpy(dst, b.data, n);
	return SCHAKEL_OK;
}

/* ---- Header --------------------------------------------------------- */

/* Storage for a Header message that points into a plain header. */
struct s_header_pb {
	Schakel__V1__Header m;
	Schakel__V1__Attribute attrs[ENV_MAX_ATTRS];
	Schakel__V1__Attribute *attrp[ENV_MAX_ATTRS];
	char *rcpt[ENV_MAX_RECIPIENTS];
};

static int
s_header_fill(const struct env_header *h, struct s_header_pb *x)
{
	Schakel__V1__Header *m = &x->m;

	if (h->n_recipients > ENV_MAX_RECIPIENTS || h->n_attrs > ENV_MAX_ATTRS)
		return SCHAKEL_E_TOO_LARGE;
	schakel__v1__header__init(m);
	m->message_id = s_bin(h->id, ENV_ID_LEN);
	m->sender = s_str(h->sender);
	for (size_t i = 0; i < h->n_recipients; i++)
		x->rcpt[i] = s_str(h->recipients[i]);
	m->n_recipients = h->n_recipients;
	m->recipients = x->rcpt;
	m->message_type = s_str(h->type);
	m->case_ref = s_str(h->case_ref);
	m->purpose = s_str(h->purpose);
	m->created_ms = h->created_ms;
	m->expires_ms = h->expires_ms;
	m->urgent = h->urgent;
	m->region = s_str(h->region);
	for (size_t i = 0; i < h->n_attrs; i++) {
		schakel__v1__attribute__init(&x->attrs[i]);
		x->attrs[i].key = s_str(h->attrs[i].key);
		x->attrs[i].value = s_str(h->attrs[i].value);
		x->attrp[i] = &x->attrs[i];
	}
	m->n_attributes = h->n_attrs;
	m->attributes = x->attrp;
	m->ciphertext_hash = s_bin(h->ciphertext_hash, ENV_HASH_LEN);
	m->key_commitment = s_bin(h->key_commitment, ENV_HASH_LEN);
	m->consent_ref = s_str(h->consent_ref);
	m->notify_delivered = h->notify_delivered;
	return SCHAKEL_OK;
}

size_t
pb_header_size(const struct env_header *h)
{
	struct s_header_pb x;

	if (s_header_fill(h, &x) != SCHAKEL_OK)
		return SIZE_MAX;
	return protobuf_c_message_get_packed_size(&x.m.base);
}

int
pb_header_encode(const struct env_header *h, struct codec_buf *out)
{
	struct s_header_pb x;
	int rc = s_header_fill(h, &x);

	if (rc)
		return rc;
	return s_pack(&x.m.base, out);
}

int
pb_header_decode(const uint8_t *buf, size_t len, struct env_header *h)
{
	struct s_arena ar;
	ProtobufCAllocator a;
	Schakel__V1__Header *m;
	int rc;

	if (len > ENV_MAX_HEADER_LEN)
		return SCHAKEL_E_TOO_LARGE;
	rc = wire_check(&s_header_m, buf, len, S_DEPTH);
	if (rc)
		return rc;
	rc = s_arena_init(&ar, &a, len);
	if (rc)
		return rc;
	m = schakel__v1__header__unpack(&a, len, buf);
	if (m == NULL)
		return s_unpack_failed(&ar);
	memset(h, 0, sizeof *h);
	rc = s_exact(h->id, ENV_ID_LEN, m->message_id);
	if (rc == SCHAKEL_OK)
		rc = s_exact(
		    h->ciphertext_hash, ENV_HASH_LEN, m->ciphertext_hash);
	if (rc == SCHAKEL_OK)
		rc =
		    s_exact(h->key_commitment, ENV_HASH_LEN, m->key_commitment);
	s_copy(h->sender, sizeof h->sender, m->sender);
	h->n_recipients = m->n_recipients;
	for (size_t i = 0; i < m->n_recipients && i < ENV_MAX_RECIPIENTS; i++)
		s_copy(h->recipients[i], sizeof h->recipients[i],
		    m->recipients[i]);
	s_copy(h->type, sizeof h->type, m->message_type);
	s_copy(h->case_ref, sizeof h->case_ref, m->case_ref);
	s_copy(h->purpose, sizeof h->purpose, m->purpose);
	h->created_ms = m->created_ms;
	h->expires_ms = m->expires_ms;
	h->urgent = m->urgent;
	s_copy(h->region, sizeof h->region, m->region);
	h->n_attrs = m->n_attributes;
	for (size_t i = 0; i < m->n_attributes && i < ENV_MAX_ATTRS; i++) {
		s_copy(h->attrs[i].key, sizeof h->attrs[i].key,
		    m->attributes[i]->key);
		s_copy(h->attrs[i].value, sizeof h->attrs[i].value,
		    m->attributes[i]->value);
	}
	s_copy(h->consent_ref, sizeof h->consent_ref, m->consent_ref);
	h->notify_delivered = m->notify_delivered;
	free(ar.base);
	return rc;
}

/* ---- BatchSignature ------------------------------------------------- */

static void
s_bsig_to_pb(const struct merkle_sig *s, Schakel__V1__BatchSignature *m,
    ProtobufCBinaryData *proof)
{
	schakel__v1__batch_signature__init(m);
	m->root = s_bin(s->root, MERKLE_HASH_LEN);
	m->leaf_index = s->leaf_index;
	m->leaf_count = s->leaf_count;
	for (size_t i = 0; i < s->proof_len; i++)
		proof[i] = s_bin(s->proof[i], MERKLE_HASH_LEN);
	m->n_proof = s->proof_len;
	m->proof = proof;
	m->signature = s_bin(s->sig, MERKLE_SIG_LEN);
}

/* A wrong-sized proof hash makes the proof wrong, not the message. */
static int
s_bsig_from_pb(const Schakel__V1__BatchSignature *m, struct merkle_sig *s)
{
	int rc;

	memset(s, 0, sizeof *s);
	if (m == NULL)
		return SCHAKEL_E_BAD_FIELD;
	rc = s_exact(s->root, MERKLE_HASH_LEN, m->root);
	if (rc == SCHAKEL_OK)
		rc = s_exact(s->sig, MERKLE_SIG_LEN, m->signature);
	if (rc)
		return rc;
	s->leaf_index = m->leaf_index;
	s->leaf_count = m->leaf_count;
	s->proof_len = m->n_proof;
	for (size_t i = 0; i < m->n_proof && i < MERKLE_MAX_PROOF; i++)
		if (s_exact(s->proof[i], MERKLE_HASH_LEN, m->proof[i]))
			return SCHAKEL_E_BAD_PROOF;
	return SCHAKEL_OK;
}

/* ---- Envelope ------------------------------------------------------- */

/* Storage for an Envelope message that points into the parts. */
struct s_env_pb {
	Schakel__V1__Envelope m;
	Schakel__V1__BatchSignature bs;
	ProtobufCBinaryData proof[MERKLE_MAX_PROOF];
	Schakel__V1__SealedKey keys[ENV_MAX_RECIPIENTS];
	Schakel__V1__SealedKey *keyp[ENV_MAX_RECIPIENTS];
};

static int
s_env_fill(const struct pb_envelope *e, struct s_env_pb *x, bool with_ct)
{
	if (e->n_keys > ENV_MAX_RECIPIENTS ||
	    e->sig.proof_len > MERKLE_MAX_PROOF)
		return SCHAKEL_E_TOO_LARGE;
	schakel__v1__envelope__init(&x->m);
	x->m.header_bytes = s_bin(e->header, e->header_len);
	s_bsig_to_pb(&e->sig, &x->bs, x->proof);
	x->m.signature = &x->bs;
	for (size_t i = 0; i < e->n_keys; i++) {
		schakel__v1__sealed_key__init(&x->keys[i]);
		x->keys[i].recipient = s_str(e->key_recipient[i]);
		x->keys[i].sealed = s_bin(e->key_sealed[i], ENV_SEALED_LEN);
		x->keyp[i] = &x->keys[i];
	}
	x->m.n_keys = e->n_keys;
	x->m.keys = x->keyp;
	if (with_ct)
		x->m.ciphertext = s_bin(e->ciphertext, e->ciphertext_len);
	return SCHAKEL_OK;
}

int
pb_envelope_encode(const struct pb_envelope *e, struct codec_buf *out)
{
	struct s_env_pb x;
	int rc = s_env_fill(e, &x, true);

	if (rc)
		return rc;
	return s_pack(&x.m.base, out);
}

/* Key of field 4 (ciphertext), wire type 2. */
#define S_CT_KEY 0x22

static size_t
s_varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

size_t
pb_envelope_prefix_size(const struct pb_envelope *e)
{
	struct s_env_pb x;

	if (s_env_fill(e, &x, false) != SCHAKEL_OK || e->ciphertext_len == 0)
		return SIZE_MAX;
	return protobuf_c_message_get_packed_size(&x.m.base) + 1 +
	    s_varint_len(e->ciphertext_len);
}

int
pb_envelope_pack_prefix(const struct pb_envelope *e, uint8_t *out, size_t size)
{
	struct s_env_pb x;
	size_t n;
	uint64_t v;

	if (s_env_fill(e, &x, false) != SCHAKEL_OK || e->ciphertext_len == 0)
		return SCHAKEL_E_INTERNAL;
	n = protobuf_c_message_get_packed_size(&x.m.base);
	if (n + 1 + s_varint_len(e->ciphertext_len) != size)
		return SCHAKEL_E_INTERNAL;
	n = protobuf_c_message_pack(&x.m.base, out);
	out[n++] = S_CT_KEY;
	for (v = e->ciphertext_len; v >= 0x80; v >>= 7)
		out[n++] = (uint8_t)(v | 0x80);
	out[n++] = (uint8_t)v;
	return n == size ? SCHAKEL_OK : SCHAKEL_E_INTERNAL;
}

int
pb_envelope_decode(const uint8_t *buf, size_t len, struct pb_envelope *e)
{
	struct s_arena ar;
	ProtobufCAllocator a;
	Schakel__V1__Envelope *m;
	int rc;

	memset(e, 0, sizeof *e);
	rc = wire_check(&s_env_m, buf, len, S_DEPTH);
	if (rc)
		return rc;
	rc = s_arena_init(&ar, &a, len);
	if (rc)
		return rc;
	m = schakel__v1__envelope__unpack(&a, len, buf);
	if (m == NULL)
		return s_unpack_failed(&ar);
	/* Everything unpacked lives in the arena, which e now owns. */
	e->owner = ar.base;
	e->header = m->header_bytes.data;
	e->header_len = m->header_bytes.len;
	e->ciphertext = m->ciphertext.data;
	e->ciphertext_len = m->ciphertext.len;
	e->n_keys = m->n_keys;
	for (size_t i = 0; i < m->n_keys && i < ENV_MAX_RECIPIENTS; i++) {
		s_copy(e->key_recipient[i], sizeof e->key_recipient[i],
		    m->keys[i]->recipient);
		if (m->keys[i]->sealed.len != ENV_SEALED_LEN) {
			rc = SCHAKEL_E_NO_SEALED_KEY;
			continue;
		}
		memcpy(
		    e->key_sealed[i], m->keys[i]->sealed.data, ENV_SEALED_LEN);
	}
	if (rc == SCHAKEL_OK)
		rc = s_bsig_from_pb(m->signature, &e->sig);
	if (rc)
		pb_release(e);
	return rc;
}

void
pb_release(struct pb_envelope *e)
{
	if (e == NULL || e->owner == NULL)
		return;
	free(e->owner);
	e->owner = NULL;
	e->header = e->ciphertext = NULL;
}

/* ---- Receipt -------------------------------------------------------- */

int
pb_receipt_encode(const struct receipt *r, struct codec_buf *out)
{
	Schakel__V1__Receipt m = SCHAKEL__V1__RECEIPT__INIT;
	char *rcpt[ENV_MAX_RECIPIENTS], *agr[ENV_MAX_RECIPIENTS];

	if (r->n_recipients > ENV_MAX_RECIPIENTS)
		return SCHAKEL_E_TOO_LARGE;
	m.message_id = s_bin(r->message_id, ENV_ID_LEN);
	m.accepted_ms = r->accepted_ms;
	for (size_t i = 0; i < r->n_recipients; i++) {
		rcpt[i] = s_str(r->recipients[i]);
		agr[i] = s_str(r->agreement_ids[i]);
	}
	m.n_recipients = m.n_agreement_ids = r->n_recipients;
	m.recipients = rcpt;
	m.agreement_ids = agr;
	m.store_seq = r->store_seq;
	m.header_hash = s_bin(r->header_hash, ENV_HASH_LEN);
	m.sender = s_str(r->sender);
	return s_pack(&m.base, out);
}

int
pb_receipt_decode(const uint8_t *buf, size_t len, struct receipt *r)
{
	struct s_arena ar;
	ProtobufCAllocator a;
	Schakel__V1__Receipt *m;
	int rc;

	if (len > RECEIPT_MAX_LEN)
		return SCHAKEL_E_TOO_LARGE;
	rc = wire_check(&s_receipt_m, buf, len, S_DEPTH);
	if (rc)
		return rc;
	rc = s_arena_init(&ar, &a, len);
	if (rc)
		return rc;
	m = schakel__v1__receipt__unpack(&a, len, buf);
	if (m == NULL)
		return s_unpack_failed(&ar);
	memset(r, 0, sizeof *r);
	rc = s_exact(r->message_id, ENV_ID_LEN, m->message_id);
	if (rc == SCHAKEL_OK)
		rc = s_exact(r->header_hash, ENV_HASH_LEN, m->header_hash);
	if (rc == SCHAKEL_OK && m->n_agreement_ids != m->n_recipients)
		rc = SCHAKEL_E_BAD_FIELD;
	r->accepted_ms = m->accepted_ms;
	r->store_seq = m->store_seq;
	r->n_recipients = m->n_recipients;
	for (size_t i = 0; i < m->n_recipients && i < ENV_MAX_RECIPIENTS; i++)
		s_copy(r->recipients[i], sizeof r->recipients[i],
		    m->recipients[i]);
	for (size_t i = 0; i < m->n_agreement_ids && i < ENV_MAX_RECIPIENTS;
	     i++)
		s_copy(r->agreement_ids[i], sizeof r->agreement_ids[i],
		    m->agreement_ids[i]);
	s_copy(r->sender, sizeof r->sender, m->sender);
	free(ar.base);
	return rc;
}

int
pb_signed_receipt_encode(const uint8_t *receipt, size_t receipt_len,
    const struct merkle_sig *sig, struct codec_buf *out)
{
	Schakel__V1__SignedReceipt m = SCHAKEL__V1__SIGNED_RECEIPT__INIT;
	Schakel__V1__BatchSignature bs;
	ProtobufCBinaryData proof[MERKLE_MAX_PROOF];

	if (sig->proof_len > MERKLE_MAX_PROOF || receipt_len > RECEIPT_MAX_LEN)
		return SCHAKEL_E_TOO_LARGE;
	m.receipt_bytes = s_bin(receipt, receipt_len);
	s_bsig_to_pb(sig, &bs, proof);
	m.signature = &bs;
	return s_pack(&m.base, out);
}

int
pb_signed_receipt_decode(const uint8_t *buf, size_t len,
    uint8_t receipt[RECEIPT_MAX_LEN], size_t *receipt_len,
    struct merkle_sig *sig)
{
	struct s_arena ar;
	ProtobufCAllocator a;
	Schakel__V1__SignedReceipt *m;
	int rc;

	if (len > RECEIPT_MAX_LEN + S_BSIG_MAX + 16)
		return SCHAKEL_E_TOO_LARGE;
	rc = wire_check(&s_sreceipt_m, buf, len, S_DEPTH);
	if (rc)
		return rc;
	rc = s_arena_init(&ar, &a, len);
	if (rc)
		return rc;
	m = schakel__v1__signed_receipt__unpack(&a, len, buf);
	if (m == NULL)
		return s_unpack_failed(&ar);
	if (m->receipt_bytes.len > 0)
		memcpy(receipt, m->receipt_bytes.data, m->receipt_bytes.len);
	*receipt_len = m->receipt_bytes.len;
	rc = s_bsig_from_pb(m->signature, sig);
	free(ar.base);
	return rc;
}
