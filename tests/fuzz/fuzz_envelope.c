/*
 * fuzz_envelope: libFuzzer target for everything the codec reads from a
 * peer.  Each input is tried as an envelope (decode, verify, open as every
 * named recipient whose keys we hold), as a signed receipt, and as a broker
 * frame (decode, re-encode, decode again).  The keys are the test-vector
 * parties', so seeds from tests/vectors verify and open, and mutations
 * start deep inside the codec.  An input that starts with 0xff instead
 * describes a message to build: whatever env_build accepts must decode,
 * verify and open to the same header and payload.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "env.h"
#include "frame.h"
#include "merkle.h"
#include "receipt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct s_party {
	const char *id;
	uint8_t sign_pk[32], sign_sk[64], box_pk[32], box_sk[32];
};

/* Same ids and derivation as tests/vectors/gen_vectors.c. */
static struct s_party s_parties[] = {
    {.id = "gm0344"},
    {.id = "kredietbank-utrecht"},
    {.id = "rechtbank-midden-nederland"},
    {.id = "huisarts-de-vries"},
    {.id = "schakel-broker"},
    {.id = "mallory"},
};
#define S_NPARTIES (sizeof s_parties / sizeof s_parties[0])

static struct merkle_cache *s_cache;

static void
s_det(uint8_t *out, size_t len, const char *label, unsigned a)
{
	crypto_generichash_state st;
	uint8_t ab[8] = {(uint8_t)(a >> 24), (uint8_t)(a >> 16),
	    (uint8_t)(a >> 8), (uint8_t)a, 0, 0, 0, 0};

	crypto_generichash_init(&st, NULL, 0, len);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, ab, sizeof ab);
	crypto_generichash_final(&st, out, len);
}

static void
s_init(void)
{
	uint8_t seed[32];

	if (codec_init() != SCHAKEL_OK)
		abort();
	for (unsigned i = 0; i < S_NPARTIES; i++) {
		s_det(seed, 32, "schakel test sign seed", i);
		crypto_sign_seed_keypair(
		    s_parties[i].sign_pk, s_parties[i].sign_sk, seed);
		s_det(s_parties[i].box_sk, 32, "schakel test box sk", i);
		crypto_scalarmult_base(
		    s_parties[i].box_pk, s_parties[i].box_sk);
	}
	/* Small, so that evictions are exercised too. */
	s_cache = merkle_cache_new(4);
	if (s_cache == NULL)
		abort();
}

static const struct s_party *
s_find(const char *id)
{
	for (size_t i = 0; i < S_NPARTIES; i++)
		if (strcmp(s_parties[i].id, id) == 0)
			return &s_parties[i];
	return NULL;
}

static void
s_envelope(const uint8_t *data, size_t size)
{
	const struct env_header *h;
	const struct s_party *sender;
	struct env *e = NULL;
	uint8_t hash[ENV_HASH_LEN];
	char peeked[ENV_MAX_NAME_LEN + 1];
	size_t hlen;
	int rc, prc;

	/* The broker picks the key by this sender before decoding. */
	prc = env_peek_sender(data, size, 0, peeked);
	rc = env_decode(data, size, 0, &e);
	/* The decode arena is sized from the limits tables; running out of
	 * it would mean the bound in proto/pb.c is wrong. */
	if (rc == SCHAKEL_E_NO_MEMORY)
		abort();
	if (rc != SCHAKEL_OK) {
		if (e != NULL)
			abort(); /* a failed decode must not hand out an object */
		return;
	}
	h = env_header(e);
	/* What decodes names the sender the peek found. */
	if (prc != SCHAKEL_OK || strcmp(peeked, h->sender) != 0)
		abort();
	(void)env_header_bytes(e, &hlen);
	if (hlen > ENV_MAX_HEADER_LEN || h->n_recipients == 0 ||
	    h->n_recipients > ENV_MAX_RECIPIENTS || h->n_attrs > ENV_MAX_ATTRS)
		abort();
	env_header_hash(e, hash);
	(void)env_is_bsn(h->case_ref);
	sender = s_find(h->sender);
	if (sender == NULL)
		sender = &s_parties[0];
	if (env_verify(e, sender->sign_pk, s_cache) == SCHAKEL_OK) {
		for (size_t i = 0; i < h->n_recipients; i++) {
			const struct s_party *r = s_find(h->recipients[i]);
			uint8_t *pt = NULL;
			size_t ptlen = 0;

			if (r == NULL)
				continue;
			rc = env_open(e, sender->sign_pk, r->id, r->box_pk,
			    r->box_sk, s_cache, &pt, &ptlen);
			if ((rc == SCHAKEL_OK) != (pt != NULL) ||
			    (rc == SCHAKEL_OK && ptlen != env_payload_len(e)))
				abort();
			free(pt);
		}
	}
	/* Without the cache as well, so a cache bug cannot hide a result
	 * that a fresh verifier would give differently. */
	if (env_verify(e, sender->sign_pk, NULL) !=
	    env_verify(e, sender->sign_pk, s_cache))
		abort();
	env_destroy(&e);
}

static void
s_receipt(const uint8_t *data, size_t size)
{
	struct receipt r;
	struct merkle_sig sig;

	if (receipt_verify(data, size, s_parties[4].sign_pk, s_cache, &r,
		&sig) == SCHAKEL_E_NO_MEMORY)
		abort();
}

/* A frame that decodes must encode again, to one that decodes the same.
 * A bundle's frames are tried too, one level deep, as the broker and
 * libschakel open them (a bundle in a bundle is refused there). */
static void
s_frame(const uint8_t *data, size_t size, bool open)
{
	struct frame f, g;
	struct codec_buf b = {0};
	int rc = frame_decode(data, size, 0, &f);

	if (rc == SCHAKEL_E_NO_MEMORY)
		abort();
	if (rc != SCHAKEL_OK) {
		if (f.owner != NULL)
			abort();
		return;
	}
	if (frame_encode(&f, &b) != SCHAKEL_OK ||
	    frame_decode(b.data, b.len, 0, &g) != SCHAKEL_OK ||
	    g.kind != f.kind || g.corr_id != f.corr_id)
		abort();
	if (f.kind == FRAME_SUBMIT)
		s_envelope(f.u.submit.data, f.u.submit.len);
	if (f.kind == FRAME_BUNDLE && open) {
		/* The frames lie inside the bundle, one after another, and
		 * end where it does (the decoder's walk let nothing else
		 * through). */
		struct frame_bytes x;
		size_t off = 0, prev = 0;

		while (frame_bundle_next(&f.u.bundle, &off, &x)) {
			if (x.data < f.u.bundle.data + prev ||
			    x.data + x.len != f.u.bundle.data + off ||
			    off > f.u.bundle.len)
				abort();
			prev = off;
			s_frame(x.data, x.len, false);
		}
		if (off != f.u.bundle.len)
			abort();
	}
	frame_clear(&g);
	frame_clear(&f);
	codec_buf_clear(&b);
}

/* Reads the round-trip description; runs out into zeros. */
struct s_in {
	const uint8_t *p;
	size_t n;
};

static uint8_t
s_byte(struct s_in *in)
{
	uint8_t b = 0;

	if (in->n > 0) {
		b = *in->p++;
		in->n--;
	}
	return b;
}

/* A string of up to 70 bytes (so limits are crossed), mostly from a
 * valid alphabet so that builds get through, sometimes any byte. */
static void
s_string(struct s_in *in, char *dst, size_t cap)
{
	static const char abc[] = "abcz09.-_:GMA ";
	size_t len = s_byte(in) % 71;
	bool raw = len > 0 && s_byte(in) == 0xff;

	if (len >= cap)
		len = cap - 1;
	for (size_t i = 0; i < len; i++) {
		uint8_t b = s_byte(in);

		dst[i] = raw ? (char)(b ? b : 1) : abc[b % (sizeof abc - 1)];
	}
	dst[len] = '\0';
}

static void
s_roundtrip(const uint8_t *data, size_t size)
{
	static struct env_draft d;
	static struct env_fixed fx;
	static uint8_t payload[512];
	const struct s_party *to[ENV_MAX_RECIPIENTS];
	struct s_in in = {data, size};
	struct codec_buf out = {0};
	struct env *e = NULL;
	int rc;

	memset(&d, 0, sizeof d);
	memset(&fx, 0, sizeof fx);
	for (size_t i = 0; i < ENV_ID_LEN; i++)
		d.hdr.id[i] = s_byte(&in);
	s_string(&in, d.hdr.sender, sizeof d.hdr.sender);
	s_string(&in, d.hdr.type, sizeof d.hdr.type);
	s_string(&in, d.hdr.case_ref, sizeof d.hdr.case_ref);
	s_string(&in, d.hdr.purpose, sizeof d.hdr.purpose);
	s_string(&in, d.hdr.region, sizeof d.hdr.region);
	s_string(&in, d.hdr.consent_ref, sizeof d.hdr.consent_ref);
	d.hdr.created_ms = s_byte(&in);
	d.hdr.expires_ms = d.hdr.created_ms + s_byte(&in);
	d.hdr.urgent = s_byte(&in) & 1;
	d.hdr.notify_delivered = s_byte(&in) & 1;
	d.hdr.n_attrs = s_byte(&in) % 4;
	for (size_t i = 0; i < d.hdr.n_attrs; i++) {
		s_string(&in, d.hdr.attrs[i].key, sizeof d.hdr.attrs[i].key);
		s_string(
		    &in, d.hdr.attrs[i].value, sizeof d.hdr.attrs[i].value);
	}
	d.n_recipients = s_byte(&in) % 5;
	for (size_t i = 0; i < d.n_recipients; i++) {
		to[i] = &s_parties[s_byte(&in) % S_NPARTIES];
		s_string(&in, d.recipients[i].party_id,
		    sizeof d.recipients[i].party_id);
		memcpy(d.recipients[i].box_pk, to[i]->box_pk, 32);
	}
	d.payload_len = s_byte(&in) * 2u;
	for (size_t i = 0; i < d.payload_len; i++)
		payload[i] = s_byte(&in);
	d.payload = payload;
	d.fixed = &fx;
	rc = env_build(&d, 1, s_parties[0].sign_sk, &out);
	if (rc != SCHAKEL_OK) {
		if (out.data != NULL ||
		    (rc != SCHAKEL_E_BAD_FIELD && rc != SCHAKEL_E_TOO_LARGE))
			abort();
		return;
	}
	/* What the builder accepted, the decoder must accept unchanged. */
	if (env_decode(out.data, out.len, 0, &e) != SCHAKEL_OK ||
	    memcmp(env_header(e)->id, d.hdr.id, ENV_ID_LEN) != 0 ||
	    strcmp(env_header(e)->case_ref, d.hdr.case_ref) != 0 ||
	    strcmp(env_header(e)->consent_ref, d.hdr.consent_ref) != 0 ||
	    env_header(e)->n_recipients != d.n_recipients ||
	    env_header(e)->n_attrs != d.hdr.n_attrs ||
	    env_verify(e, s_parties[0].sign_pk, NULL) != SCHAKEL_OK)
		abort();
	for (size_t i = 0; i < d.n_recipients; i++) {
		const char *id = d.recipients[i].party_id;
		const struct s_party *p = to[i];
		uint8_t *pt = NULL;
		size_t ptlen = 0;

		if (env_open(e, s_parties[0].sign_pk, id, p->box_pk, p->box_sk,
			NULL, &pt, &ptlen) != SCHAKEL_OK ||
		    ptlen != d.payload_len ||
		    (ptlen > 0 && memcmp(pt, payload, ptlen) != 0))
			abort();
		free(pt);
	}
	env_destroy(&e);
	codec_buf_clear(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int initialised;

	if (!initialised) {
		s_init();
		initialised = 1;
	}
	if (size > 0 && data[0] == 0xff) {
		s_roundtrip(data + 1, size - 1);
		return 0;
	}
	s_envelope(data, size);
	s_receipt(data, size);
	s_frame(data, size, true);
	return 0;
}
