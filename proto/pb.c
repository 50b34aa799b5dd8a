/*
 * pb: the wire format of schakel.v1, and the one file that includes the
 * protobuf-c generated header.  Every decode first walks the input against
 * a limits table (wire.c): envelopes, headers and the per-message frames
 * are decoded by that walk itself, receipts and the other frames are then
 * unpacked by protobuf-c into a bounded arena.  Encoding uses protobuf-c,
 * except for the per-message frames and the receipts, which are written by
 * hand exactly as protobuf-c writes them.  It checks sizes, not meaning.
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
    /* Attributes are walked with s_attr_m by the header's visitor. */
    {11, WIRE_LEN, ENV_MAX_ATTRS,
	ENV_MAX_ATTR_KEY_LEN + ENV_MAX_ATTR_VALUE_LEN + 6, NULL},
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
    {2, WIRE_LEN, 1, S_BSIG_MAX, NULL},
    {3, WIRE_LEN, ENV_MAX_RECIPIENTS, ENV_MAX_NAME_LEN + ENV_SEALED_LEN + 6,
	NULL},
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

/* The header is decoded by the wire walk too: its visitor copies each
 * field into the fixed-size struct (the walk has bounded every string to
 * fit), so no allocation happens at all. */
struct s_hdr_ctx {
	struct env_header *h;
	bool have_id, have_hash, have_kc;
};

static void
s_put(char *dst, size_t cap, const uint8_t *p, size_t n)
{
	if (n >= cap)
		n = cap -
		    1; /* cannot happen: the limits tables fit the arrays */
	memcpy(dst, p, n);
	dst[n] = '\0';
}

static int
s_attr_visit(void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n)
{
	struct env_attr *a = ctx;

	(void)v;
	if (num == 1)
		s_put(a->key, sizeof a->key, p, n);
	else if (num == 2)
		s_put(a->value, sizeof a->value, p, n);
	return SCHAKEL_OK;
}

static int
s_hdr_visit(void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n)
{
	struct s_hdr_ctx *c = ctx;
	struct env_header *h = c->h;

	switch (num) {
	case 1:
		c->have_id = n == ENV_ID_LEN;
		if (c->have_id)
			memcpy(h->id, p, ENV_ID_LEN);
		break;
	case 2:
		s_put(h->sender, sizeof h->sender, p, n);
		break;
	case 3: /* at most ENV_MAX_RECIPIENTS, by the walk */
		s_put(h->recipients[h->n_recipients], sizeof h->recipients[0],
		    p, n);
		h->n_recipients++;
		break;
	case 4:
		s_put(h->type, sizeof h->type, p, n);
		break;
	case 5:
		s_put(h->case_ref, sizeof h->case_ref, p, n);
		break;
	case 6:
		s_put(h->purpose, sizeof h->purpose, p, n);
		break;
	case 7:
		h->created_ms = v;
		break;
	case 8:
		h->expires_ms = v;
		break;
	case 9:
		h->urgent = v != 0;
		break;
	case 10:
		s_put(h->region, sizeof h->region, p, n);
		break;
	case 11: { /* at most ENV_MAX_ATTRS, by the walk */
		struct env_attr *a = &h->attrs[h->n_attrs];
		int rc;

		a->key[0] = a->value[0] = '\0';
		rc = wire_walk(&s_attr_m, p, n, S_DEPTH - 1, s_attr_visit, a);
		if (rc)
			return rc;
		h->n_attrs++;
		break;
	}
	case 12:
		c->have_hash = n == ENV_HASH_LEN;
		if (c->have_hash)
			memcpy(h->ciphertext_hash, p, ENV_HASH_LEN);
		break;
	case 13:
		c->have_kc = n == ENV_HASH_LEN;
		if (c->have_kc)
			memcpy(h->key_commitment, p, ENV_HASH_LEN);
		break;
	case 14:
		s_put(h->consent_ref, sizeof h->consent_ref, p, n);
		break;
	case 15:
		h->notify_delivered = v != 0;
		break;
	}
	return SCHAKEL_OK;
}

int
pb_header_decode(const uint8_t *buf, size_t len, struct env_header *h)
{
	struct s_hdr_ctx c = {h, false, false, false};
	int rc;

	if (len > ENV_MAX_HEADER_LEN)
		return SCHAKEL_E_TOO_LARGE;
	/* Only scalars, counts and first bytes need clearing: arrays are read
	 * only up to their counts. */
	h->n_recipients = h->n_attrs = 0;
	h->created_ms = h->expires_ms = 0;
	h->urgent = h->notify_delivered = false;
	h->sender[0] = h->type[0] = h->case_ref[0] = h->purpose[0] = '\0';
	h->region[0] = h->consent_ref[0] = '\0';
	rc = wire_walk(&s_header_m, buf, len, S_DEPTH, s_hdr_visit, &c);
	if (rc)
		return rc;
	if (!c.have_id || !c.have_hash || !c.have_kc)
		return SCHAKEL_E_BAD_FIELD;
	return SCHAKEL_OK;
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

/* Envelope decoding is zero-copy: the wire walk has every field's span
 * at hand, so header_bytes and the ciphertext (the large fields) are
 * pointed to in the caller's buffer rather than copied by protobuf-c, and
 * the few small fields are copied into fixed-size arrays.  Problems with
 * a field's value are remembered, not returned at once, so that a broken
 * wire format is always reported first (MALFORMED, TOO_LARGE). */
struct s_bsig_ctx {
	struct merkle_sig *s;
	bool have_root, have_sig, bad_proof;
};

static int
s_bsig_visit(void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n)
{
	struct s_bsig_ctx *c = ctx;
	struct merkle_sig *s = c->s;

	switch (num) {
	case 1:
		c->have_root = n == MERKLE_HASH_LEN;
		if (c->have_root)
			memcpy(s->root, p, MERKLE_HASH_LEN);
		break;
	case 2:
		s->leaf_index = (uint32_t)v;
		break;
	case 3:
		s->leaf_count = (uint32_t)v;
		break;
	case 4:
		/* The walk allows at most MERKLE_MAX_PROOF entries. */
		if (n != MERKLE_HASH_LEN)
			c->bad_proof = true;
		else if (s->proof_len < MERKLE_MAX_PROOF)
			memcpy(s->proof[s->proof_len], p, MERKLE_HASH_LEN);
		s->proof_len++;
		break;
	case 5:
		c->have_sig = n == MERKLE_SIG_LEN;
		if (c->have_sig)
			memcpy(s->sig, p, MERKLE_SIG_LEN);
		break;
	}
	return SCHAKEL_OK;
}

struct s_key_ctx {
	char *recipient;
	size_t cap;
	uint8_t *sealed;
	bool ok;
};

static int
s_key_visit(void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n)
{
	struct s_key_ctx *c = ctx;

	(void)v;
	if (num == 1 && n < c->cap) {
		memcpy(c->recipient, p, n);
		c->recipient[n] = '\0';
	} else if (num == 2) {
		c->ok = n == ENV_SEALED_LEN;
		if (c->ok)
			memcpy(c->sealed, p, ENV_SEALED_LEN);
	}
	return SCHAKEL_OK;
}

struct s_env_ctx {
	struct pb_envelope *e;
	bool have_sig;
	int key_rc, sig_rc;
};

static int
s_env_visit(void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n)
{
	struct s_env_ctx *c = ctx;
	struct pb_envelope *e = c->e;

	(void)v;
	switch (num) {
	case 1:
		e->header = p;
		e->header_len = n;
		break;
	case 2: {
		struct s_bsig_ctx b = {&e->sig, false, false, false};

		int rc =
		    wire_walk(&s_bsig_m, p, n, S_DEPTH - 1, s_bsig_visit, &b);

		if (rc)
			return rc;
		c->have_sig = true;
		c->sig_rc = !b.have_root || !b.have_sig ? SCHAKEL_E_BAD_FIELD
		    : b.bad_proof                       ? SCHAKEL_E_BAD_PROOF
							: SCHAKEL_OK;
		break;
	}
	case 3: {
		/* The walk allows at most ENV_MAX_RECIPIENTS keys. */
		struct s_key_ctx k = {e->key_recipient[e->n_keys],
		    sizeof e->key_recipient[0], e->key_sealed[e->n_keys],
		    false};

		int rc;

		e->key_recipient[e->n_keys][0] = '\0';
		rc = wire_walk(&s_sealed_m, p, n, S_DEPTH - 1, s_key_visit, &k);
		if (rc)
			return rc;
		if (!k.ok && c->key_rc == SCHAKEL_OK)
			c->key_rc = SCHAKEL_E_NO_SEALED_KEY;
		e->n_keys++;
		break;
	}
	case 4:
		e->ciphertext = p;
		e->ciphertext_len = n;
		break;
	}
	return SCHAKEL_OK;
}

int
pb_envelope_decode(const uint8_t *buf, size_t len, struct pb_envelope *e)
{
	struct s_env_ctx c = {e, false, SCHAKEL_OK, SCHAKEL_OK};
	int rc;

	/* Only what the visitors count or may not set needs clearing; the
	 * arrays are read only up to their counts. */
	e->header = e->ciphertext = NULL;
	e->header_len = e->ciphertext_len = e->n_keys = 0;
	e->sig.leaf_index = e->sig.leaf_count = 0;
	e->sig.proof_len = 0;
	rc = wire_walk(&s_env_m, buf, len, S_DEPTH, s_env_visit, &c);
	if (rc == SCHAKEL_OK)
		rc = c.key_rc;
	if (rc == SCHAKEL_OK)
		rc = c.have_sig ? c.sig_rc : SCHAKEL_E_BAD_FIELD;
	if (rc)
		memset(e, 0, sizeof *e);
	return rc;
}

/* Stops a walk once the field it looks for was seen. */
#define S_PEEK_FOUND (-1)

struct s_peek {
	uint32_t num;
	const uint8_t *p;
	size_t n;
};

static int
s_peek_visit(void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n)
{
	struct s_peek *k = ctx;

	(void)v;
	if (num != k->num)
		return SCHAKEL_OK;
	k->p = p;
	k->n = n;
	return S_PEEK_FOUND;
}

int
pb_peek_sender(const uint8_t *buf, size_t len, char *out, size_t outlen)
{
	struct s_peek env = {1, NULL, 0}, hdr = {2, NULL, 0};
	int rc;

	if (outlen == 0)
		return SCHAKEL_E_BAD_ARGUMENT;
	out[0] = '\0';
	rc = wire_walk(&s_env_m, buf, len, S_DEPTH, s_peek_visit, &env);
	if (rc != S_PEEK_FOUND)
		return rc != SCHAKEL_OK ? rc : SCHAKEL_E_BAD_FIELD;
	/* The envelope's table bounds the header (ENV_MAX_HEADER_LEN). */
	rc = wire_walk(&s_header_m, env.p, env.n, S_DEPTH, s_peek_visit, &hdr);
	if (rc != S_PEEK_FOUND)
		return rc != SCHAKEL_OK ? rc : SCHAKEL_E_BAD_FIELD;
	if (hdr.n == 0 || hdr.n >= outlen)
		return SCHAKEL_E_BAD_FIELD;
	memcpy(out, hdr.p, hdr.n);
	out[hdr.n] = '\0';
	return SCHAKEL_OK;
}

void
pb_release(struct pb_envelope *e)
{
	if (e == NULL)
		return;
	e->header = e->ciphertext = NULL;
	e->header_len = e->ciphertext_len = 0;
}

/* ---- Receipt -------------------------------------------------------- */

int
pb_receipt_encode_pbc(const struct receipt *r, struct codec_buf *out)
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
pb_signed_receipt_encode_pbc(const uint8_t *receipt, size_t receipt_len,
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

/* ---- Frame ------------------------------------------------------------- */

#define S_SRECEIPT_MAX RECEIPT_SIGNED_MAX_LEN
_Static_assert(S_SRECEIPT_MAX == RECEIPT_MAX_LEN + S_BSIG_MAX + 16,
    "a signed receipt's limit is written in two places");

static const struct wire_field s_hello_f[] = {
    {1, WIRE_STR, 1, FRAME_MAX_PROTOCOL_LEN, NULL},
    {2, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {3, WIRE_STR, 1, FRAME_MAX_TEXT_LEN, NULL},
    {4, WIRE_BOOL, 1, 0, NULL},
};
static const struct wire_msg s_hello_m = {s_hello_f, 4, 0, 0};

static const struct wire_field s_welcome_f[] = {
    {1, WIRE_STR, 1, FRAME_MAX_PROTOCOL_LEN, NULL},
    {2, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {3, WIRE_LEN, 1, FRAME_KEY_LEN, NULL},
    {4, WIRE_U64, 1, 0, NULL},
    {5, WIRE_U32, 1, 0, NULL},
    {6, WIRE_U32, 1, 0, NULL},
    {7, WIRE_U32, 1, 0, NULL},
    {8, WIRE_BOOL, 1, 0, NULL},
};
static const struct wire_msg s_welcome_m = {s_welcome_f, 8, 0, 0};

static const struct wire_field s_resolve_f[] = {
    {1, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {2, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {3, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {4, WIRE_STR, 1, ENV_MAX_REGION_LEN, NULL},
    {5, WIRE_MSG, ENV_MAX_ATTRS,
	ENV_MAX_ATTR_KEY_LEN + ENV_MAX_ATTR_VALUE_LEN + 6, &s_attr_m},
    {6, WIRE_BOOL, 1, 0, NULL},
};
static const struct wire_msg s_resolve_m = {s_resolve_f, 6, 0, 0};

static const struct wire_field s_recipient_f[] = {
    {1, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {2, WIRE_LEN, 1, FRAME_KEY_LEN, NULL},
    {3, WIRE_LEN, 1, FRAME_KEY_LEN, NULL},
    {4, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
};
static const struct wire_msg s_recipient_m = {s_recipient_f, 4, 0, 0};

static const struct wire_field s_resolved_f[] = {
    {1, WIRE_MSG, ENV_MAX_RECIPIENTS, 256, &s_recipient_m},
    {2, WIRE_U64, 1, 0, NULL},
    {3, WIRE_U64, 1, 0, NULL},
};
static const struct wire_msg s_resolved_m = {s_resolved_f, 3, 0, 0};

static const struct wire_field s_submit_f[] = {
    {1, WIRE_LEN, 1, ENV_MAX_LEN, NULL},
};
static const struct wire_msg s_submit_m = {s_submit_f, 1, 0, 0};

static const struct wire_field s_accepted_f[] = {
    {1, WIRE_LEN, 1, S_SRECEIPT_MAX, NULL},
};
static const struct wire_msg s_accepted_m = {s_accepted_f, 1, 0, 0};

static const struct wire_field s_refusal_f[] = {
    {1, WIRE_U32, 1, 0, NULL},
    {2, WIRE_STR, 1, FRAME_MAX_TEXT_LEN, NULL},
    {3, WIRE_LEN, 1, ENV_ID_LEN, NULL},
};
static const struct wire_msg s_refusal_m = {s_refusal_f, 3, 0, 0};

static const struct wire_field s_credit_f[] = {
    {1, WIRE_U32, 1, 0, NULL},
};
static const struct wire_msg s_credit_m = {s_credit_f, 1, 0, 0};

static const struct wire_field s_deliver_f[] = {
    {1, WIRE_U64, 1, 0, NULL},
    {2, WIRE_U32, 1, 0, NULL},
    {3, WIRE_LEN, 1, ENV_MAX_LEN, NULL},
    {4, WIRE_LEN, 1, S_SRECEIPT_MAX, NULL},
};
static const struct wire_msg s_deliver_m = {s_deliver_f, 4, 0, 0};

static const struct wire_field s_ack_f[] = {
    {1, WIRE_U64, 1, 0, NULL}, {2, WIRE_LEN, 1, ENV_ID_LEN, NULL},
    {3, WIRE_U32, 1, 0, NULL}, /* Nack only */
};
static const struct wire_msg s_ack_m = {s_ack_f, 2, 0, 0};
static const struct wire_msg s_nack_m = {s_ack_f, 3, 0, 0};

static const struct wire_field s_ping_f[] = {
    {1, WIRE_U64, 1, 0, NULL},
};
static const struct wire_msg s_ping_m = {s_ping_f, 1, 0, 0};

static const struct wire_field s_notice_f[] = {
    {1, WIRE_U32, 1, 0, NULL},
    {2, WIRE_LEN, 1, ENV_ID_LEN, NULL},
    {3, WIRE_STR, 1, ENV_MAX_NAME_LEN, NULL},
    {4, WIRE_U64, 1, 0, NULL},
    {5, WIRE_U32, 1, 0, NULL},
    {6, WIRE_U64, 1, 0, NULL},
    {7, WIRE_LEN, 1, FRAME_SIG_LEN, NULL},
};
static const struct wire_msg s_notice_m = {s_notice_f, 7, 0, 0};

#define S_BIG (ENV_MAX_LEN + 64)
/* A bundle's frames: each at most the largest frame (a Deliver), the
 * whole at most what frame_decode takes at all. */
#define S_BUNDLE_MAX_LEN (ENV_MAX_LEN + 32768)
static const struct wire_field s_bundle_f[] = {
    {1, WIRE_LEN, FRAME_BUNDLE_MAX, S_BIG + S_SRECEIPT_MAX + 64, NULL},
};
static const struct wire_msg s_bundle_m = {s_bundle_f, 1, 0, 0};

static const struct wire_field s_frame_f[] = {
    {1, WIRE_U64, 1, 0, NULL},
    {10, WIRE_MSG, 1, 512, &s_hello_m},
    {11, WIRE_MSG, 1, 256, &s_welcome_m},
    {12, WIRE_MSG, 1, 4096, &s_resolve_m},
    {13, WIRE_MSG, 1, 16384, &s_resolved_m},
    {14, WIRE_MSG, 1, S_BIG, &s_submit_m},
    {15, WIRE_MSG, 1, S_SRECEIPT_MAX + 16, &s_accepted_m},
    {16, WIRE_MSG, 1, 512, &s_refusal_m},
    {17, WIRE_MSG, 1, 16, &s_credit_m},
    {18, WIRE_MSG, 1, S_BIG + S_SRECEIPT_MAX, &s_deliver_m},
    {19, WIRE_MSG, 1, 64, &s_ack_m},
    {20, WIRE_MSG, 1, 64, &s_nack_m},
    {21, WIRE_MSG, 1, 16, &s_ping_m},
    {22, WIRE_MSG, 1, 16, &s_ping_m},
    {23, WIRE_MSG, 1, 256, &s_notice_m},
    {24, WIRE_MSG, 1, S_BUNDLE_MAX_LEN, &s_bundle_m},
};
static const struct wire_msg s_frame_m = {s_frame_f, 16, 10, 24};

/* Storage for every body a Frame can carry, pointing into a struct frame. */
struct s_frame_pb {
	Schakel__V1__Frame m;
	union {
		Schakel__V1__Hello hello;
		Schakel__V1__Welcome welcome;
		Schakel__V1__Resolve resolve;
		Schakel__V1__Resolved resolved;
		Schakel__V1__Submit submit;
		Schakel__V1__Accepted accepted;
		Schakel__V1__Refusal refusal;
		Schakel__V1__Credit credit;
		Schakel__V1__Deliver deliver;
		Schakel__V1__Ack ack;
		Schakel__V1__Nack nack;
		Schakel__V1__Ping ping;
		Schakel__V1__Pong pong;
		Schakel__V1__Notice notice;
	} b;
	Schakel__V1__Attribute attrs[ENV_MAX_ATTRS];
	Schakel__V1__Attribute *attrp[ENV_MAX_ATTRS];
	Schakel__V1__Recipient rcpt[ENV_MAX_RECIPIENTS];
	Schakel__V1__Recipient *rcptp[ENV_MAX_RECIPIENTS];
};

static void
s_frame_resolve_to_pb(const struct frame_resolve *r, struct s_frame_pb *x)
{
	Schakel__V1__Resolve *m = &x->b.resolve;

	schakel__v1__resolve__init(m);
	m->message_type = s_str(r->type);
	m->case_ref = s_str(r->case_ref);
	m->purpose = s_str(r->purpose);
	m->region = s_str(r->region);
	for (size_t i = 0; i < r->n_attrs; i++) {
		schakel__v1__attribute__init(&x->attrs[i]);
		x->attrs[i].key = s_str(r->attrs[i].key);
		x->attrs[i].value = s_str(r->attrs[i].value);
		x->attrp[i] = &x->attrs[i];
	}
	m->n_attributes = r->n_attrs;
	m->attributes = x->attrp;
	m->urgent = r->urgent;
	x->m.resolve = m;
}

static void
s_frame_resolved_to_pb(const struct frame_resolved *r, struct s_frame_pb *x)
{
	Schakel__V1__Resolved *m = &x->b.resolved;

	schakel__v1__resolved__init(m);
	for (size_t i = 0; i < r->n_recipients; i++) {
		const struct frame_recipient *fr = &r->recipients[i];

		schakel__v1__recipient__init(&x->rcpt[i]);
		x->rcpt[i].party_id = s_str(fr->party_id);
		x->rcpt[i].box_key = s_bin(fr->box_key, FRAME_KEY_LEN);
		x->rcpt[i].sign_key = s_bin(fr->sign_key, FRAME_KEY_LEN);
		x->rcpt[i].agreement_id = s_str(fr->agreement_id);
		x->rcptp[i] = &x->rcpt[i];
	}
	m->n_recipients = r->n_recipients;
	m->recipients = x->rcptp;
	m->config_version = r->config_version;
	m->default_ttl_ms = r->default_ttl_ms;
	x->m.resolved = m;
}

int
pb_frame_encode_pbc(const struct frame *f, struct codec_buf *out)
{
	struct s_frame_pb *x = calloc(1, sizeof *x);
	int rc;

	if (x == NULL)
		return SCHAKEL_E_NO_MEMORY;
	schakel__v1__frame__init(&x->m);
	x->m.corr_id = f->corr_id;
	x->m.body_case = (Schakel__V1__Frame__BodyCase)f->kind;
	switch (f->kind) {
	case FRAME_HELLO:
		schakel__v1__hello__init(&x->b.hello);
		x->b.hello.protocol = s_str(f->u.hello.protocol);
		x->b.hello.party_id = s_str(f->u.hello.party_id);
		x->b.hello.software = s_str(f->u.hello.software);
		x->b.hello.bundles = f->u.hello.bundles;
		x->m.hello = &x->b.hello;
		break;
	case FRAME_WELCOME:
		schakel__v1__welcome__init(&x->b.welcome);
		x->b.welcome.protocol = s_str(f->u.welcome.protocol);
		x->b.welcome.broker_id = s_str(f->u.welcome.broker_id);
		x->b.welcome.broker_sign_key =
		    s_bin(f->u.welcome.broker_sign_key, FRAME_KEY_LEN);
		x->b.welcome.server_time_ms = f->u.welcome.server_time_ms;
		x->b.welcome.heartbeat_ms = f->u.welcome.heartbeat_ms;
		x->b.welcome.max_message_bytes = f->u.welcome.max_message_bytes;
		x->b.welcome.max_credit = f->u.welcome.max_credit;
		x->b.welcome.bundles = f->u.welcome.bundles;
		x->m.welcome = &x->b.welcome;
		break;
	case FRAME_RESOLVE:
		s_frame_resolve_to_pb(&f->u.resolve, x);
		break;
	case FRAME_RESOLVED:
		s_frame_resolved_to_pb(&f->u.resolved, x);
		break;
	case FRAME_SUBMIT:
		schakel__v1__submit__init(&x->b.submit);
		x->b.submit.envelope = s_bin(f->u.submit.data, f->u.submit.len);
		x->m.submit = &x->b.submit;
		break;
	case FRAME_ACCEPTED:
		schakel__v1__accepted__init(&x->b.accepted);
		x->b.accepted.receipt =
		    s_bin(f->u.accepted.data, f->u.accepted.len);
		x->m.accepted = &x->b.accepted;
		break;
	case FRAME_REFUSAL:
		schakel__v1__refusal__init(&x->b.refusal);
		x->b.refusal.code = f->u.refusal.code;
		x->b.refusal.reason = s_str(f->u.refusal.reason);
		if (f->u.refusal.has_message_id)
			x->b.refusal.message_id =
			    s_bin(f->u.refusal.message_id, ENV_ID_LEN);
		x->m.refusal = &x->b.refusal;
		break;
	case FRAME_CREDIT:
		schakel__v1__credit__init(&x->b.credit);
		x->b.credit.messages = f->u.credit;
		x->m.credit = &x->b.credit;
		break;
	case FRAME_DELIVER:
		schakel__v1__deliver__init(&x->b.deliver);
		x->b.deliver.store_seq = f->u.deliver.store_seq;
		x->b.deliver.delivery_count = f->u.deliver.delivery_count;
		x->b.deliver.envelope = s_bin(
		    f->u.deliver.envelope.data, f->u.deliver.envelope.len);
		x->b.deliver.receipt =
		    s_bin(f->u.deliver.receipt.data, f->u.deliver.receipt.len);
		x->m.deliver = &x->b.deliver;
		break;
	case FRAME_ACK:
		schakel__v1__ack__init(&x->b.ack);
		x->b.ack.store_seq = f->u.ack.store_seq;
		x->b.ack.message_id = s_bin(f->u.ack.message_id, ENV_ID_LEN);
		x->m.ack = &x->b.ack;
		break;
	case FRAME_NACK:
		schakel__v1__nack__init(&x->b.nack);
		x->b.nack.store_seq = f->u.ack.store_seq;
		x->b.nack.message_id = s_bin(f->u.ack.message_id, ENV_ID_LEN);
		x->b.nack.code = f->u.ack.code;
		x->m.nack = &x->b.nack;
		break;
	case FRAME_PING:
		schakel__v1__ping__init(&x->b.ping);
		x->b.ping.time_ms = f->u.ping_ms;
		x->m.ping = &x->b.ping;
		break;
	case FRAME_PONG:
		schakel__v1__pong__init(&x->b.pong);
		x->b.pong.time_ms = f->u.ping_ms;
		x->m.pong = &x->b.pong;
		break;
	case FRAME_NOTICE:
		schakel__v1__notice__init(&x->b.notice);
		x->b.notice.kind = (Schakel__V1__NoticeKind)f->u.notice.kind;
		x->b.notice.message_id =
		    s_bin(f->u.notice.message_id, ENV_ID_LEN);
		x->b.notice.recipient = s_str(f->u.notice.recipient);
		x->b.notice.time_ms = f->u.notice.time_ms;
		x->b.notice.code = f->u.notice.code;
		x->b.notice.store_seq = f->u.notice.store_seq;
		x->b.notice.signature =
		    s_bin(f->u.notice.signature, FRAME_SIG_LEN);
		x->m.notice = &x->b.notice;
		break;
	default:
		free(x);
		return SCHAKEL_E_BAD_ARGUMENT;
	}
	rc = s_pack(&x->m.base, out);
	free(x);
	return rc;
}

/* Copy a string, or report that it did not fit (the wire walk bounds
 * them, so this is a second fence, not the limit itself). */
static int
s_fit(char *dst, size_t cap, const char *src)
{
	if (src != NULL && strlen(src) >= cap)
		return SCHAKEL_E_TOO_LARGE;
	s_copy(dst, cap, src);
	return SCHAKEL_OK;
}

static int
s_frame_from_pb(const Schakel__V1__Frame *m, struct frame *f)
{
	int rc = SCHAKEL_OK;

	f->corr_id = m->corr_id;
	f->kind = (enum frame_kind)m->body_case;
	switch (m->body_case) {
	case SCHAKEL__V1__FRAME__BODY_HELLO:
		rc = s_fit(f->u.hello.protocol, sizeof f->u.hello.protocol,
		    m->hello->protocol);
		if (rc == SCHAKEL_OK)
			rc = s_fit(f->u.hello.party_id,
			    sizeof f->u.hello.party_id, m->hello->party_id);
		if (rc == SCHAKEL_OK)
			rc = s_fit(f->u.hello.software,
			    sizeof f->u.hello.software, m->hello->software);
		f->u.hello.bundles = m->hello->bundles != 0;
		return rc;
	case SCHAKEL__V1__FRAME__BODY_WELCOME:
		rc = s_fit(f->u.welcome.protocol, sizeof f->u.welcome.protocol,
		    m->welcome->protocol);
		if (rc == SCHAKEL_OK)
			rc = s_fit(f->u.welcome.broker_id,
			    sizeof f->u.welcome.broker_id,
			    m->welcome->broker_id);
		if (rc == SCHAKEL_OK)
			rc = s_exact(f->u.welcome.broker_sign_key,
			    FRAME_KEY_LEN, m->welcome->broker_sign_key);
		f->u.welcome.server_time_ms = m->welcome->server_time_ms;
		f->u.welcome.heartbeat_ms = m->welcome->heartbeat_ms;
		f->u.welcome.max_message_bytes = m->welcome->max_message_bytes;
		f->u.welcome.max_credit = m->welcome->max_credit;
		f->u.welcome.bundles = m->welcome->bundles != 0;
		return rc;
	case SCHAKEL__V1__FRAME__BODY_RESOLVE: {
		const Schakel__V1__Resolve *r = m->resolve;
		struct frame_resolve *o = &f->u.resolve;

		rc = s_fit(o->type, sizeof o->type, r->message_type);
		if (rc == SCHAKEL_OK)
			rc =
			    s_fit(o->case_ref, sizeof o->case_ref, r->case_ref);
		if (rc == SCHAKEL_OK)
			rc = s_fit(o->purpose, sizeof o->purpose, r->purpose);
		if (rc == SCHAKEL_OK)
			rc = s_fit(o->region, sizeof o->region, r->region);
		o->n_attrs = r->n_attributes;
		for (size_t i = 0; rc == SCHAKEL_OK && i < r->n_attributes &&
		     i < ENV_MAX_ATTRS;
		     i++) {
			rc = s_fit(o->attrs[i].key, sizeof o->attrs[i].key,
			    r->attributes[i]->key);
			if (rc == SCHAKEL_OK)
				rc = s_fit(o->attrs[i].value,
				    sizeof o->attrs[i].value,
				    r->attributes[i]->value);
		}
		o->urgent = r->urgent;
		return rc;
	}
	case SCHAKEL__V1__FRAME__BODY_RESOLVED: {
		const Schakel__V1__Resolved *r = m->resolved;
		struct frame_resolved *o = &f->u.resolved;

		o->n_recipients = r->n_recipients;
		for (size_t i = 0; rc == SCHAKEL_OK && i < r->n_recipients &&
		     i < ENV_MAX_RECIPIENTS;
		     i++) {
			const Schakel__V1__Recipient *p = r->recipients[i];

			rc = s_fit(o->recipients[i].party_id,
			    sizeof o->recipients[i].party_id, p->party_id);
			if (rc == SCHAKEL_OK)
				rc = s_fit(o->recipients[i].agreement_id,
				    sizeof o->recipients[i].agreement_id,
				    p->agreement_id);
			if (rc == SCHAKEL_OK)
				rc = s_exact(o->recipients[i].box_key,
				    FRAME_KEY_LEN, p->box_key);
			if (rc == SCHAKEL_OK)
				rc = s_exact(o->recipients[i].sign_key,
				    FRAME_KEY_LEN, p->sign_key);
		}
		o->config_version = r->config_version;
		o->default_ttl_ms = r->default_ttl_ms;
		return rc;
	}
	case SCHAKEL__V1__FRAME__BODY_SUBMIT:
		f->u.submit.data = m->submit->envelope.data;
		f->u.submit.len = m->submit->envelope.len;
		return SCHAKEL_OK;
	case SCHAKEL__V1__FRAME__BODY_ACCEPTED:
		f->u.accepted.data = m->accepted->receipt.data;
		f->u.accepted.len = m->accepted->receipt.len;
		return SCHAKEL_OK;
	case SCHAKEL__V1__FRAME__BODY_REFUSAL:
		f->u.refusal.code = m->refusal->code;
		rc = s_fit(f->u.refusal.reason, sizeof f->u.refusal.reason,
		    m->refusal->reason);
		f->u.refusal.has_message_id = m->refusal->message_id.len > 0;
		if (rc == SCHAKEL_OK && f->u.refusal.has_message_id)
			rc = s_exact(f->u.refusal.message_id, ENV_ID_LEN,
			    m->refusal->message_id);
		return rc;
	case SCHAKEL__V1__FRAME__BODY_CREDIT:
		f->u.credit = m->credit->messages;
		return SCHAKEL_OK;
	case SCHAKEL__V1__FRAME__BODY_DELIVER:
		f->u.deliver.store_seq = m->deliver->store_seq;
		f->u.deliver.delivery_count = m->deliver->delivery_count;
		f->u.deliver.envelope.data = m->deliver->envelope.data;
		f->u.deliver.envelope.len = m->deliver->envelope.len;
		f->u.deliver.receipt.data = m->deliver->receipt.data;
		f->u.deliver.receipt.len = m->deliver->receipt.len;
		return SCHAKEL_OK;
	case SCHAKEL__V1__FRAME__BODY_ACK:
		f->u.ack.store_seq = m->ack->store_seq;
		f->u.ack.code = 0;
		return s_exact(
		    f->u.ack.message_id, ENV_ID_LEN, m->ack->message_id);
	case SCHAKEL__V1__FRAME__BODY_NACK:
		f->u.ack.store_seq = m->nack->store_seq;
		f->u.ack.code = m->nack->code;
		return s_exact(
		    f->u.ack.message_id, ENV_ID_LEN, m->nack->message_id);
	case SCHAKEL__V1__FRAME__BODY_PING:
		f->u.ping_ms = m->ping->time_ms;
		return SCHAKEL_OK;
	case SCHAKEL__V1__FRAME__BODY_PONG:
		f->u.ping_ms = m->pong->time_ms;
		return SCHAKEL_OK;
	case SCHAKEL__V1__FRAME__BODY_NOTICE:
		f->u.notice.kind = (enum frame_notice_kind)m->notice->kind;
		f->u.notice.time_ms = m->notice->time_ms;
		f->u.notice.code = m->notice->code;
		f->u.notice.store_seq = m->notice->store_seq;
		rc = s_fit(f->u.notice.recipient, sizeof f->u.notice.recipient,
		    m->notice->recipient);
		if (rc == SCHAKEL_OK)
			rc = s_exact(f->u.notice.message_id, ENV_ID_LEN,
			    m->notice->message_id);
		if (rc == SCHAKEL_OK)
			rc = s_exact(f->u.notice.signature, FRAME_SIG_LEN,
			    m->notice->signature);
		return rc;
	default:
		/* A frame must carry exactly one body. */
		return SCHAKEL_E_MALFORMED;
	}
}

/* Unpack a frame that already passed the limits walk; *f is zeroed and
 * stays zeroed on failure. */
static int
s_frame_unpack(const uint8_t *buf, size_t len, struct frame *f)
{
	struct s_arena ar;
	ProtobufCAllocator a;
	Schakel__V1__Frame *m;
	int rc;

	rc = s_arena_init(&ar, &a, len);
	if (rc)
		return rc;
	m = schakel__v1__frame__unpack(&a, len, buf);
	if (m == NULL)
		return s_unpack_failed(&ar);
	rc = s_frame_from_pb(m, f);
	if (rc) {
		free(ar.base);
		memset(f, 0, sizeof *f);
		return rc;
	}
	f->owner = ar.base;
	return SCHAKEL_OK;
}

static bool
s_bundle_body(const uint8_t *buf, size_t len, struct frame *f, int *rc);

int
pb_frame_decode_pbc(const uint8_t *buf, size_t len, struct frame *f)
{
	int rc;

	memset(f, 0, sizeof *f);
	rc = wire_check(&s_frame_m, buf, len, S_DEPTH);
	if (rc)
		return rc;
	/* A bundle is not unpacked: its frames stay bytes (see
	 * pb_frame_decode). */
	if (s_bundle_body(buf, len, f, &rc))
		return rc;
	return s_frame_unpack(buf, len, f);
}

/* ---- the per-message frames, by hand -------------------------------- */

/* Submit, Accepted, Deliver, Ack, Nack, Credit, Ping, Pong and Refusal go
 * by for every message, so they skip protobuf-c's descriptor-driven code.
 * The output is byte for byte protobuf-c's (test_frame compares them):
 * fields in number order, a field equal to zero or empty left out
 * (proto3), corr_id too, but the body always written, even empty, because
 * the oneof case is set.  Decoding takes the fields from wire_walk, after
 * the same limits walk as every frame; it needs no merging (the last of a
 * repeated field, or two bodies merged) because that walk refuses a field
 * or a body that appears twice.  Empty byte fields stay NULL, as
 * protobuf-c leaves them. */

/* A body's fields by number (1..4): varints in v, bytes and strings as
 * p[0..n). */
#define S_HOT_NUMS 5

/* No frame holds a field this large (frame.c caps them far lower); the
 * bound keeps the size sums below from overflowing. */
#define S_HOT_MAX_BYTES UINT32_MAX

struct s_hot_vals {
	uint64_t v[S_HOT_NUMS];
	const uint8_t *p[S_HOT_NUMS];
	size_t n[S_HOT_NUMS];
};

/* The body's limits table for a per-message kind, NULL for the others. */
static const struct wire_msg *
s_hot_m(uint32_t kind)
{
	switch (kind) {
	case FRAME_SUBMIT:
		return &s_submit_m;
	case FRAME_ACCEPTED:
		return &s_accepted_m;
	case FRAME_REFUSAL:
		return &s_refusal_m;
	case FRAME_CREDIT:
		return &s_credit_m;
	case FRAME_DELIVER:
		return &s_deliver_m;
	case FRAME_ACK:
		return &s_ack_m;
	case FRAME_NACK:
		return &s_nack_m;
	case FRAME_PING:
	case FRAME_PONG:
		return &s_ping_m;
	default:
		return NULL;
	}
}

static bool
s_is_varint(enum wire_kind k)
{
	return k == WIRE_U64 || k == WIRE_U32 || k == WIRE_BOOL;
}

static size_t
s_varint_put(uint8_t *o, uint64_t v)
{
	size_t n = 0;

	for (; v >= 0x80; v >>= 7)
		o[n++] = (uint8_t)(v | 0x80);
	o[n++] = (uint8_t)v;
	return n;
}

static void
s_hot_from_frame(const struct frame *f, struct s_hot_vals *x)
{
	memset(x, 0, sizeof *x);
	switch (f->kind) {
	case FRAME_SUBMIT:
		x->p[1] = f->u.submit.data;
		x->n[1] = f->u.submit.len;
		break;
	case FRAME_ACCEPTED:
		x->p[1] = f->u.accepted.data;
		x->n[1] = f->u.accepted.len;
		break;
	case FRAME_REFUSAL:
		x->v[1] = f->u.refusal.code;
		x->p[2] = (const uint8_t *)f->u.refusal.reason;
		x->n[2] =
		    strnlen(f->u.refusal.reason, sizeof f->u.refusal.reason);
		if (f->u.refusal.has_message_id) {
			x->p[3] = f->u.refusal.message_id;
			x->n[3] = ENV_ID_LEN;
		}
		break;
	case FRAME_CREDIT:
		x->v[1] = f->u.credit;
		break;
	case FRAME_DELIVER:
		x->v[1] = f->u.deliver.store_seq;
		x->v[2] = f->u.deliver.delivery_count;
		x->p[3] = f->u.deliver.envelope.data;
		x->n[3] = f->u.deliver.envelope.len;
		x->p[4] = f->u.deliver.receipt.data;
		x->n[4] = f->u.deliver.receipt.len;
		break;
	case FRAME_ACK:
	case FRAME_NACK: /* an Ack's table has no field 3 */
		x->v[1] = f->u.ack.store_seq;
		x->p[2] = f->u.ack.message_id;
		x->n[2] = ENV_ID_LEN;
		x->v[3] = f->u.ack.code;
		break;
	case FRAME_PING:
	case FRAME_PONG:
		x->v[1] = f->u.ping_ms;
		break;
	default:
		break;
	}
}

/* The body's encoded size, or SIZE_MAX when a field is too large. */
static size_t
s_hot_size(const struct wire_msg *m, const struct s_hot_vals *x)
{
	size_t n = 0;

	for (size_t i = 0; i < m->nfields; i++) {
		const struct wire_field *fl = &m->fields[i];
		uint64_t key = (uint64_t)fl->num << 3;

		if (s_is_varint(fl->kind)) {
			if (x->v[fl->num] != 0)
				n += s_varint_len(key) +
				    s_varint_len(x->v[fl->num]);
		} else if (x->n[fl->num] > S_HOT_MAX_BYTES) {
			return SIZE_MAX;
		} else if (x->n[fl->num] > 0) {
			n += s_varint_len(key | 2) +
			    s_varint_len(x->n[fl->num]) + x->n[fl->num];
		}
	}
	return n;
}

static size_t
s_hot_write(const struct wire_msg *m, const struct s_hot_vals *x, uint8_t *o)
{
	size_t k = 0;

	for (size_t i = 0; i < m->nfields; i++) {
		const struct wire_field *fl = &m->fields[i];
		uint64_t key = (uint64_t)fl->num << 3;

		if (s_is_varint(fl->kind)) {
			if (x->v[fl->num] == 0)
				continue;
			k += s_varint_put(o + k, key);
			k += s_varint_put(o + k, x->v[fl->num]);
		} else if (x->n[fl->num] > 0) {
			k += s_varint_put(o + k, key | 2);
			k += s_varint_put(o + k, x->n[fl->num]);
			memcpy(o + k, x->p[fl->num], x->n[fl->num]);
			k += x->n[fl->num];
		}
	}
	return k;
}

/* The encoded size of a per-message frame whose body table is `m`, with
 * its values in *x and its body's size in *body; SIZE_MAX when a field is
 * too large. */
static size_t
s_hot_total(const struct frame *f, const struct wire_msg *m,
    struct s_hot_vals *x, size_t *body)
{
	uint64_t key = (uint64_t)f->kind << 3 | 2;
	size_t total;

	s_hot_from_frame(f, x);
	*body = s_hot_size(m, x);
	if (*body == SIZE_MAX)
		return SIZE_MAX;
	total = s_varint_len(key) + s_varint_len(*body) + *body;
	if (f->corr_id != 0)
		total += 1 + s_varint_len(f->corr_id);
	return total;
}

/* Writes the frame s_hot_total measured into o; returns the bytes
 * written. */
static size_t
s_hot_put(const struct frame *f, const struct wire_msg *m,
    const struct s_hot_vals *x, size_t body, uint8_t *o)
{
	size_t k = 0;

	if (f->corr_id != 0) {
		o[k++] = 1 << 3; /* corr_id, a varint */
		k += s_varint_put(o + k, f->corr_id);
	}
	k += s_varint_put(o + k, (uint64_t)f->kind << 3 | 2);
	k += s_varint_put(o + k, body);
	return k + s_hot_write(m, x, o + k);
}

/* Encode a per-message frame whose body table is `m` into one exactly
 * sized allocation. */
static int
s_frame_encode_hot(
    const struct frame *f, const struct wire_msg *m, struct codec_buf *out)
{
	struct s_hot_vals x;
	size_t body, total = s_hot_total(f, m, &x, &body);

	if (total == SIZE_MAX)
		return SCHAKEL_E_TOO_LARGE;
	out->data = malloc(total);
	if (out->data == NULL)
		return SCHAKEL_E_NO_MEMORY;
	if (s_hot_put(f, m, &x, body, out->data) != total) {
		free(out->data);
		out->data = NULL;
		return SCHAKEL_E_INTERNAL;
	}
	out->len = total;
	return SCHAKEL_OK;
}

size_t
pb_frame_hot_size(const struct frame *f)
{
	const struct wire_msg *m = s_hot_m(f->kind);
	struct s_hot_vals x;
	size_t body;

	return m != NULL ? s_hot_total(f, m, &x, &body) : SIZE_MAX;
}

int
pb_frame_hot_write(const struct frame *f, uint8_t *out, size_t size)
{
	const struct wire_msg *m = s_hot_m(f->kind);
	struct s_hot_vals x;
	size_t body;

	if (m == NULL || s_hot_total(f, m, &x, &body) != size)
		return SCHAKEL_E_INTERNAL;
	return s_hot_put(f, m, &x, body, out) == size ? SCHAKEL_OK
						      : SCHAKEL_E_INTERNAL;
}

size_t
pb_bundle_head(size_t body_len, uint64_t corr_id, uint8_t *out)
{
	uint8_t tmp[32];
	size_t k = 0;

	if (out == NULL)
		out = tmp;
	if (corr_id != 0) {
		out[k++] = 1 << 3;
		k += s_varint_put(out + k, corr_id);
	}
	k += s_varint_put(out + k, (uint64_t)FRAME_BUNDLE << 3 | 2);
	k += s_varint_put(out + k, body_len);
	return k;
}

size_t
pb_bytes_field(uint32_t num, size_t len, uint8_t *out)
{
	uint8_t tmp[16];
	size_t k;

	if (out == NULL)
		out = tmp;
	k = s_varint_put(out, (uint64_t)num << 3 | 2);
	return k + s_varint_put(out + k, len);
}

int
pb_bundle_encode(const struct frame *f, struct codec_buf *out)
{
	size_t head = pb_bundle_head(f->u.bundle.len, f->corr_id, NULL);

	out->data = malloc(head + f->u.bundle.len);
	if (out->data == NULL)
		return SCHAKEL_E_NO_MEMORY;
	pb_bundle_head(f->u.bundle.len, f->corr_id, out->data);
	if (f->u.bundle.len > 0)
		memcpy(out->data + head, f->u.bundle.data, f->u.bundle.len);
	out->len = head + f->u.bundle.len;
	return SCHAKEL_OK;
}

int
pb_frame_encode(const struct frame *f, struct codec_buf *out)
{
	const struct wire_msg *m = s_hot_m(f->kind);

	if (m != NULL)
		return s_frame_encode_hot(f, m, out);
	if (f->kind == FRAME_BUNDLE)
		return pb_bundle_encode(f, out);
	return pb_frame_encode_pbc(f, out);
}

/* What the limits walk of a Frame saw: corr_id and the body's span. */
struct s_frame_ctx {
	uint64_t corr_id;
	uint32_t kind;
	const uint8_t *body;
	size_t body_len;
};

static int
s_frame_visit(void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n);

/* A bundle's Frame is its body's key and length, then the body: nothing
 * else, not even a corr_id of 0 (docs/protocol.md 10.9).  Fills *f, the
 * Bundle's bytes borrowed from buf. */
static int
s_bundle_fill(const uint8_t *buf, size_t len, const struct s_frame_ctx *c,
    struct frame *f)
{
	if (c->corr_id != 0 || c->body + c->body_len != buf + len ||
	    pb_bundle_head(c->body_len, 0, NULL) != len - c->body_len)
		return SCHAKEL_E_MALFORMED;
	f->kind = FRAME_BUNDLE;
	f->u.bundle.data = c->body;
	f->u.bundle.len = c->body_len;
	return SCHAKEL_OK;
}

/* For a frame that passed the limits walk: when it is a bundle, fills *f
 * (or refuses it) into *rc and returns true. */
static bool
s_bundle_body(const uint8_t *buf, size_t len, struct frame *f, int *rc)
{
	struct s_frame_ctx c = {0, FRAME_NONE, NULL, 0};

	if (wire_walk(&s_frame_m, buf, len, S_DEPTH, s_frame_visit, &c) !=
		SCHAKEL_OK ||
	    c.kind != FRAME_BUNDLE)
		return false;
	*rc = s_bundle_fill(buf, len, &c, f);
	return true;
}

static int
s_frame_visit(void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n)
{
	struct s_frame_ctx *c = ctx;

	if (num == 1) {
		c->corr_id = v;
	} else { /* a body: the walk lets at most one through */
		c->kind = num;
		c->body = p;
		c->body_len = n;
	}
	return SCHAKEL_OK;
}

static int
s_hot_visit(void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n)
{
	struct s_hot_vals *x = ctx;

	if (num < S_HOT_NUMS) { /* always: the tables stop at 4 */
		x->v[num] = v;
		x->p[num] = p;
		x->n[num] = n;
	}
	return SCHAKEL_OK;
}

/* Copy up to two byte fields into one block that becomes f->owner.  An
 * empty field stays (NULL, 0), as protobuf-c leaves it; with nothing to
 * copy the owner stays NULL. */
static int
s_own(struct frame *f, struct frame_bytes *a, const uint8_t *ap, size_t an,
    struct frame_bytes *b, const uint8_t *bp, size_t bn)
{
	uint8_t *blk;

	if (an + bn == 0)
		return SCHAKEL_OK;
	blk = malloc(an + bn);
	if (blk == NULL)
		return SCHAKEL_E_NO_MEMORY;
	if (an > 0) {
		memcpy(blk, ap, an);
		a->data = blk;
		a->len = an;
	}
	if (bn > 0) {
		memcpy(blk + an, bp, bn);
		b->data = blk + an;
		b->len = bn;
	}
	f->owner = blk;
	return SCHAKEL_OK;
}

/* s_exact for a field the walk handed over. */
static int
s_exact_span(uint8_t *dst, size_t want, const uint8_t *p, size_t n)
{
	if (n != want)
		return SCHAKEL_E_BAD_FIELD;
	memcpy(dst, p, want);
	return SCHAKEL_OK;
}

/* Fill the body of a zeroed per-message frame whose kind is set, as
 * s_frame_from_pb would. */
static int
s_hot_to_frame(const struct s_hot_vals *x, struct frame *f)
{
	switch (f->kind) {
	case FRAME_SUBMIT:
		return s_own(f, &f->u.submit, x->p[1], x->n[1], NULL, NULL, 0);
	case FRAME_ACCEPTED:
		return s_own(
		    f, &f->u.accepted, x->p[1], x->n[1], NULL, NULL, 0);
	case FRAME_REFUSAL:
		f->u.refusal.code = (uint32_t)x->v[1];
		if (x->n[2] > 0) /* at most FRAME_MAX_TEXT_LEN, by the walk */
			s_put(f->u.refusal.reason, sizeof f->u.refusal.reason,
			    x->p[2], x->n[2]);
		f->u.refusal.has_message_id = x->n[3] > 0;
		if (!f->u.refusal.has_message_id)
			return SCHAKEL_OK;
		return s_exact_span(
		    f->u.refusal.message_id, ENV_ID_LEN, x->p[3], x->n[3]);
	case FRAME_CREDIT:
		f->u.credit = (uint32_t)x->v[1];
		return SCHAKEL_OK;
	case FRAME_DELIVER:
		f->u.deliver.store_seq = x->v[1];
		f->u.deliver.delivery_count = (uint32_t)x->v[2];
		return s_own(f, &f->u.deliver.envelope, x->p[3], x->n[3],
		    &f->u.deliver.receipt, x->p[4], x->n[4]);
	case FRAME_ACK:
	case FRAME_NACK: /* an Ack's walk never sets field 3 */
		f->u.ack.store_seq = x->v[1];
		f->u.ack.code = (uint32_t)x->v[3];
		return s_exact_span(
		    f->u.ack.message_id, ENV_ID_LEN, x->p[2], x->n[2]);
	case FRAME_PING:
	case FRAME_PONG:
		f->u.ping_ms = x->v[1];
		return SCHAKEL_OK;
	default:
		return SCHAKEL_E_INTERNAL;
	}
}

int
pb_frame_decode(const uint8_t *buf, size_t len, struct frame *f)
{
	struct s_frame_ctx c = {0, FRAME_NONE, NULL, 0};
	struct s_hot_vals x;
	const struct wire_msg *m;
	int rc;

	memset(f, 0, sizeof *f);
	/* The limits fence (wire_check) for every kind, noting on the way
	 * where the body is. */
	rc = wire_walk(&s_frame_m, buf, len, S_DEPTH, s_frame_visit, &c);
	if (rc)
		return rc;
	if (c.kind == FRAME_NONE) /* a frame must carry exactly one body */
		return SCHAKEL_E_MALFORMED;
	if (c.kind == FRAME_BUNDLE)
		/* Its frames were walked as bytes; the caller decodes each,
		 * from the input itself (a bundle can be large). */
		return s_bundle_fill(buf, len, &c, f);
	m = s_hot_m(c.kind);
	if (m == NULL)
		return s_frame_unpack(buf, len, f);
	/* The fence walked this body already, with this table; walking it
	 * again only collects the fields. */
	memset(&x, 0, sizeof x);
	rc = wire_walk(m, c.body, c.body_len, S_DEPTH - 1, s_hot_visit, &x);
	f->corr_id = c.corr_id;
	f->kind = (enum frame_kind)c.kind;
	if (rc == SCHAKEL_OK)
		rc = s_hot_to_frame(&x, f);
	if (rc) {
		free(f->owner);
		memset(f, 0, sizeof *f);
	}
	return rc;
}

/* ---- receipts, by hand ---------------------------------------------- */

/* The broker writes a Receipt and a SignedReceipt for every message it
 * accepts, so these skip protobuf-c too, byte for byte as it writes them
 * (test_codec compares them): fields in number order, a zero scalar or an
 * empty string or bytes field left out (proto3), but every element of a
 * repeated field written, even an empty one, and the BatchSignature always
 * written, because it is set.  Strings are measured with strlen, as
 * protobuf-c measures them; receipt.c has checked that each one ends
 * within its array. */

/* The key of field `num` (all below 16, so one byte) with wire type 0
 * (varint) or 2 (length-delimited). */
#define S_KEY_VARINT(num) ((uint8_t)((num) << 3))
#define S_KEY_LEN(num) ((uint8_t)((num) << 3 | 2))

/* Size of a length-delimited field of n bytes. */
static size_t
s_len_size(size_t n)
{
	return 1 + s_varint_len(n) + n;
}

/* Size of a varint field: nothing when v is zero. */
static size_t
s_u64_size(uint64_t v)
{
	return v != 0 ? 1 + s_varint_len(v) : 0;
}

static size_t
s_len_write(uint8_t *o, uint8_t key, const void *p, size_t n)
{
	size_t k = 0;

	o[k++] = key;
	k += s_varint_put(o + k, n);
	if (n > 0)
		memcpy(o + k, p, n);
	return k + n;
}

static size_t
s_u64_write(uint8_t *o, uint8_t key, uint64_t v)
{
	if (v == 0)
		return 0;
	o[0] = key;
	return 1 + s_varint_put(o + 1, v);
}

/* Hand over the `k` bytes written to out->data, which were to be
 * `total`. */
static int
s_written(struct codec_buf *out, size_t k, size_t total)
{
	if (k != total) {
		free(out->data);
		out->data = NULL;
		out->len = 0;
		return SCHAKEL_E_INTERNAL;
	}
	out->len = k;
	return SCHAKEL_OK;
}

int
pb_receipt_encode(const struct receipt *r, struct codec_buf *out)
{
	size_t rlen[ENV_MAX_RECIPIENTS], alen[ENV_MAX_RECIPIENTS];
	size_t n = r->n_recipients, slen, total, k = 0;
	uint8_t *o;

	if (n > ENV_MAX_RECIPIENTS)
		return SCHAKEL_E_TOO_LARGE;
	slen = strlen(r->sender);
	total = s_len_size(ENV_ID_LEN) + s_u64_size(r->accepted_ms) +
	    s_u64_size(r->store_seq) + s_len_size(ENV_HASH_LEN) +
	    (slen > 0 ? s_len_size(slen) : 0);
	for (size_t i = 0; i < n; i++) {
		rlen[i] = strlen(r->recipients[i]);
		alen[i] = strlen(r->agreement_ids[i]);
		total += s_len_size(rlen[i]) + s_len_size(alen[i]);
	}
	o = out->data = malloc(total);
	if (o == NULL)
		return SCHAKEL_E_NO_MEMORY;
	k += s_len_write(o + k, S_KEY_LEN(1), r->message_id, ENV_ID_LEN);
	k += s_u64_write(o + k, S_KEY_VARINT(2), r->accepted_ms);
	for (size_t i = 0; i < n; i++)
		k +=
		    s_len_write(o + k, S_KEY_LEN(3), r->recipients[i], rlen[i]);
	for (size_t i = 0; i < n; i++)
		k += s_len_write(
		    o + k, S_KEY_LEN(4), r->agreement_ids[i], alen[i]);
	k += s_u64_write(o + k, S_KEY_VARINT(5), r->store_seq);
	k += s_len_write(o + k, S_KEY_LEN(6), r->header_hash, ENV_HASH_LEN);
	if (slen > 0)
		k += s_len_write(o + k, S_KEY_LEN(7), r->sender, slen);
	return s_written(out, k, total);
}

int
pb_signed_receipt_encode(const uint8_t *receipt, size_t receipt_len,
    const struct merkle_sig *sig, struct codec_buf *out)
{
	size_t body, total, k = 0;
	uint8_t *o;

	if (sig->proof_len > MERKLE_MAX_PROOF || receipt_len > RECEIPT_MAX_LEN)
		return SCHAKEL_E_TOO_LARGE;
	body = s_len_size(MERKLE_HASH_LEN) + s_u64_size(sig->leaf_index) +
	    s_u64_size(sig->leaf_count) +
	    sig->proof_len * s_len_size(MERKLE_HASH_LEN) +
	    s_len_size(MERKLE_SIG_LEN);
	total =
	    (receipt_len > 0 ? s_len_size(receipt_len) : 0) + s_len_size(body);
	o = out->data = malloc(total);
	if (o == NULL)
		return SCHAKEL_E_NO_MEMORY;
	if (receipt_len > 0)
		k += s_len_write(o + k, S_KEY_LEN(1), receipt, receipt_len);
	o[k++] = S_KEY_LEN(2);
	k += s_varint_put(o + k, body);
	k += s_len_write(o + k, S_KEY_LEN(1), sig->root, MERKLE_HASH_LEN);
	k += s_u64_write(o + k, S_KEY_VARINT(2), sig->leaf_index);
	k += s_u64_write(o + k, S_KEY_VARINT(3), sig->leaf_count);
	for (size_t i = 0; i < sig->proof_len; i++)
		k += s_len_write(
		    o + k, S_KEY_LEN(4), sig->proof[i], MERKLE_HASH_LEN);
	k += s_len_write(o + k, S_KEY_LEN(5), sig->sig, MERKLE_SIG_LEN);
	return s_written(out, k, total);
}
