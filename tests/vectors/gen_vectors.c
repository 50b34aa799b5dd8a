/*
 * gen_vectors: writes tests/vectors/vectors.json from fixed keys, ids,
 * content keys, nonces and ephemeral seeds.  The committed JSON, not this
 * program, is the reference: regenerate only when the protocol changes on
 * purpose, and say so in the commit.  Negative vectors are crafted here
 * with a raw protobuf writer so each carries exactly one defect.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "env.h"
#include "merkle.h"
#include "pb.h"
#include "receipt.h"

/* ---- parties ---------------------------------------------------------- */

struct s_party {
	const char *id;
	const char *role;
	uint8_t sign_seed[32], sign_pk[32], sign_sk[64];
	uint8_t box_sk[32], box_pk[32];
};

static struct s_party s_parties[] = {
    {.id = "gm0344", .role = "municipality"},
    {.id = "kredietbank-utrecht", .role = "debt_counselling"},
    {.id = "rechtbank-midden-nederland", .role = "court"},
    {.id = "huisarts-de-vries", .role = "gp"},
    {.id = "schakel-broker", .role = "broker"},
    {.id = "mallory", .role = "not declared"},
};
#define S_NPARTIES (sizeof s_parties / sizeof s_parties[0])
#define GM (&s_parties[0])
#define KB (&s_parties[1])
#define RB (&s_parties[2])
#define HA (&s_parties[3])
#define BROKER (&s_parties[4])
#define MALLORY (&s_parties[5])

/* Deterministic bytes: BLAKE2b(label || a || b), up to 64 bytes. */
static void
s_det(uint8_t *out, size_t len, const char *label, unsigned a, unsigned b)
{
	crypto_generichash_state st;
	uint8_t ab[8] = {(uint8_t)(a >> 24), (uint8_t)(a >> 16),
	    (uint8_t)(a >> 8), (uint8_t)a, (uint8_t)(b >> 24),
	    (uint8_t)(b >> 16), (uint8_t)(b >> 8), (uint8_t)b};

	crypto_generichash_init(&st, NULL, 0, len);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, ab, sizeof ab);
	crypto_generichash_final(&st, out, len);
}

static void
s_party_keys(void)
{
	for (unsigned i = 0; i < S_NPARTIES; i++) {
		struct s_party *p = &s_parties[i];

		s_det(p->sign_seed, 32, "schakel test sign seed", i, 0);
		crypto_sign_seed_keypair(p->sign_pk, p->sign_sk, p->sign_seed);
		s_det(p->box_sk, 32, "schakel test box sk", i, 0);
		crypto_scalarmult_base(p->box_pk, p->box_sk);
	}
}

static struct s_party *
s_party(const char *id)
{
	for (size_t i = 0; i < S_NPARTIES; i++)
		if (strcmp(s_parties[i].id, id) == 0)
			return &s_parties[i];
	abort();
}

/* ---- a JSON writer ------------------------------------------------------ */

static FILE *s_out;
static int s_depth;
static bool s_first[32];

static void
s_sep(const char *key)
{
	if (s_depth > 0 && !s_first[s_depth])
		fputc(',', s_out);
	s_first[s_depth] = false;
	fprintf(s_out, "\n%*s", 2 * s_depth, "");
	if (key != NULL)
		fprintf(s_out, "\"%s\": ", key);
}

static void
s_open(const char *key, char c)
{
	s_sep(key);
	fputc(c, s_out);
	s_first[++s_depth] = true;
}

static void
s_close(char c)
{
	bool empty = s_first[s_depth];

	s_depth--;
	if (!empty)
		fprintf(s_out, "\n%*s", 2 * s_depth, "");
	fputc(c, s_out);
}

static void
s_jstr(const char *key, const char *v)
{
	s_sep(key);
	fputc('"', s_out);
	for (const char *p = v; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(s_out, "\\%c", *p);
		else if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			fprintf(s_out, "\\u%04x", (unsigned char)*p);
		else
			fputc(*p, s_out);
	}
	fputc('"', s_out);
}

static void
s_jhex(const char *key, const uint8_t *p, size_t n)
{
	s_sep(key);
	fputc('"', s_out);
	for (size_t i = 0; i < n; i++)
		fprintf(s_out, "%02x", p[i]);
	fputc('"', s_out);
}

static void
s_jnum(const char *key, unsigned long long v)
{
	s_sep(key);
	fprintf(s_out, "%llu", v);
}

static void
s_jbool(const char *key, bool v)
{
	s_sep(key);
	fputs(v ? "true" : "false", s_out);
}

/* ---- positive vectors ------------------------------------------------- */

struct s_spec {
	const char *type, *case_ref, *purpose, *region, *consent;
	bool urgent, notify;
	const char *to[3];
	const char *attr_key[2], *attr_value[2];
	const char *text;   /* payload text, or NULL */
	size_t payload_len; /* deterministic bytes when text is NULL */
};

static const struct s_spec s_batch1[] = {
    {"shv.melding.v1", "case:2026:000417", "wgs.intake", "GM0344", NULL, false,
	false, {"kredietbank-utrecht"}, {"channel"}, {"loket"},
	"{\"hulpvraag\":\"huurachterstand\",\"bedrag_eur\":1840}", 0},
};

static const struct s_spec s_batch2[] = {
    {"shv.melding.v1", "case:2026:000418", "wgs.crisis", "GM0344", NULL, true,
	true,
	{"rechtbank-midden-nederland", "kredietbank-utrecht",
	    "huisarts-de-vries"},
	{"stage", "threat"}, {"crisis", "eviction"},
	"{\"dreiging\":\"ontruiming\",\"datum\":\"2026-01-05\"}", 0},
    {"shv.verwijzing.terugkoppeling.v1", "case:2026:000419", "wgs.referral",
	"GM0344", "consent:2026:88121", false, false, {"huisarts-de-vries"},
	{NULL}, {NULL}, "{\"status\":\"eerste_gesprek_gepland\"}", 0},
};

static const struct s_spec s_batch3[] = {
    {"shv.saldoverzoek.v1", "case:2026:000420", "wgs.settlement", "GM0344",
	NULL, false, false, {"kredietbank-utrecht"}, {NULL}, {NULL}, NULL, 0},
    {"shv.saldoverzoek.v1", "case:2026:000421", "wgs.settlement", "GM0344",
	NULL, false, false, {"kredietbank-utrecht"}, {NULL}, {NULL}, NULL, 1},
    {"shv.beschikking.v1", "case:2026:000422", "wgs.decision", "GM0344", NULL,
	false, true, {"kredietbank-utrecht", "rechtbank-midden-nederland"},
	{NULL}, {NULL}, NULL, 300},
};

static const struct s_spec s_batch8[] = {
    {"shv.vroegsignaal.v1", "case:2026:001001", "wgs.early-warning", "GM0344",
	NULL, false, false, {"kredietbank-utrecht"}, {"creditor"}, {"energie"},
	NULL, 64},
    {"shv.vroegsignaal.v1", "case:2026:001002", "wgs.early-warning", "GM0344",
	NULL, false, false, {"kredietbank-utrecht"}, {"creditor"}, {"water"},
	NULL, 65},
    {"shv.vroegsignaal.v1", "case:2026:001003", "wgs.early-warning", "GM0344",
	NULL, false, false, {"kredietbank-utrecht"}, {"creditor"}, {"woning"},
	NULL, 200},
    {"shv.vroegsignaal.v1", "case:2026:001004", "wgs.early-warning", "GM0344",
	NULL, true, false, {"kredietbank-utrecht"}, {"creditor"},
	{"zorgverzekeraar"}, NULL, 17},
    {"shv.vroegsignaal.v1", "case:2026:001005", "wgs.early-warning", "GM0344",
	NULL, false, false, {"kredietbank-utrecht"}, {NULL}, {NULL}, NULL, 0},
    {"shv.vroegsignaal.v1", "case:2026:001006", "wgs.early-warning", "GM0344",
	NULL, false, false, {"kredietbank-utrecht"}, {NULL}, {NULL}, NULL,
	1024},
    {"shv.kennisgeving.v1", "case:2026:001007", "wgs.notice", "GM0344", NULL,
	false, false, {"kredietbank-utrecht", "rechtbank-midden-nederland"},
	{NULL}, {NULL}, NULL, 33},
    {"shv.eindelevering.v1", "case:2026:001008", "wgs.early-warning", "GM0344",
	NULL, true, true, {"kredietbank-utrecht"}, {NULL}, {NULL}, NULL, 100},
};

struct s_msg {
	struct env_draft d;
	struct env_fixed fixed;
	uint8_t payload[2048];
	struct codec_buf env;
};

static void
s_fill(struct s_msg *m, const struct s_spec *sp, unsigned batch, unsigned i)
{
	struct env_header *h = &m->d.hdr;

	memset(m, 0, sizeof *m);
	s_det(h->id, ENV_ID_LEN, "schakel test message id", batch, i);
	snprintf(h->sender, sizeof h->sender, "%s", GM->id);
	snprintf(h->type, sizeof h->type, "%s", sp->type);
	snprintf(h->case_ref, sizeof h->case_ref, "%s", sp->case_ref);
	snprintf(h->purpose, sizeof h->purpose, "%s", sp->purpose);
	snprintf(h->region, sizeof h->region, "%s", sp->region);
	if (sp->consent != NULL)
		snprintf(
		    h->consent_ref, sizeof h->consent_ref, "%s", sp->consent);
	h->urgent = sp->urgent;
	h->notify_delivered = sp->notify;
	h->created_ms = 1767258000000ull + batch * 1000u + i;
	h->expires_ms = h->created_ms + 14ull * 86400000ull;
	for (size_t k = 0; k < 2 && sp->attr_key[k] != NULL; k++) {
		snprintf(h->attrs[k].key, sizeof h->attrs[k].key, "%s",
		    sp->attr_key[k]);
		snprintf(h->attrs[k].value, sizeof h->attrs[k].value, "%s",
		    sp->attr_value[k]);
		h->n_attrs = k + 1;
	}
	for (size_t k = 0; k < 3 && sp->to[k] != NULL; k++) {
		struct s_party *p = s_party(sp->to[k]);

		snprintf(m->d.recipients[k].party_id,
		    sizeof m->d.recipients[k].party_id, "%s", p->id);
		memcpy(m->d.recipients[k].box_pk, p->box_pk, 32);
		m->d.n_recipients = k + 1;
	}
	if (sp->text != NULL) {
		m->d.payload_len = strlen(sp->text);
		memcpy(m->payload, sp->text, m->d.payload_len);
	} else {
		m->d.payload_len = sp->payload_len;
		for (size_t k = 0; k < sp->payload_len; k += 64)
			s_det(m->payload + k,
			    sp->payload_len - k < 64 ? sp->payload_len - k : 64,
			    "schakel test payload", batch * 100 + i,
			    (unsigned)k);
	}
	m->d.payload = m->payload;
	s_det(m->fixed.content_key, 32, "schakel test content key", batch, i);
	s_det(m->fixed.nonce, 24, "schakel test nonce", batch, i);
	for (unsigned k = 0; k < ENV_MAX_RECIPIENTS; k++)
		s_det(m->fixed.eph_seed[k], 32, "schakel test eph seed",
		    batch * 100 + i, k);
	m->d.fixed = &m->fixed;
}

/* Write AD exactly as docs/protocol.md defines it, independently of
 * env.c, so the vector shows it and a mismatch shows up in review. */
static size_t
s_ad(const struct env_header *h, uint8_t *ad)
{
	size_t n = 0;
	const char *strs[3] = {h->sender, h->type, h->case_ref};

	memcpy(ad, "schakel.v1 payload", 18);
	n = 18;
	ad[n++] = 0;
	memcpy(ad + n, h->id, 16);
	n += 16;
	for (int i = 0; i < 3; i++) {
		ad[n++] = (uint8_t)strlen(strs[i]);
		memcpy(ad + n, strs[i], strlen(strs[i]));
		n += strlen(strs[i]);
	}
	ad[n++] = (uint8_t)h->n_recipients;
	for (size_t i = 0; i < h->n_recipients; i++) {
		ad[n++] = (uint8_t)strlen(h->recipients[i]);
		memcpy(ad + n, h->recipients[i], strlen(h->recipients[i]));
		n += strlen(h->recipients[i]);
	}
	return n;
}

static void
s_write_header(const struct env_header *h, bool with_hashes)
{
	s_open("header", '{');
	s_jhex("message_id", h->id, 16);
	s_jstr("sender", h->sender);
	s_open("recipients", '[');
	for (size_t i = 0; i < h->n_recipients; i++)
		s_jstr(NULL, h->recipients[i]);
	s_close(']');
	s_jstr("message_type", h->type);
	s_jstr("case_ref", h->case_ref);
	s_jstr("purpose", h->purpose);
	s_jnum("created_ms", h->created_ms);
	s_jnum("expires_ms", h->expires_ms);
	s_jbool("urgent", h->urgent);
	s_jstr("region", h->region);
	s_open("attributes", '[');
	for (size_t i = 0; i < h->n_attrs; i++) {
		s_open(NULL, '{');
		s_jstr("key", h->attrs[i].key);
		s_jstr("value", h->attrs[i].value);
		s_close('}');
	}
	s_close(']');
	s_jstr("consent_ref", h->consent_ref);
	s_jbool("notify_delivered", h->notify_delivered);
	if (with_hashes) {
		s_jhex("ciphertext_hash", h->ciphertext_hash, 32);
		s_jhex("key_commitment", h->key_commitment, 32);
	}
	s_close('}');
}

static void
s_batch(const char *name, const struct s_spec *specs, unsigned n,
    unsigned batch, struct s_msg *msgs)
{
	struct codec_buf out[8];
	struct pb_envelope pe;
	uint8_t sigmsg[MERKLE_SIGMSG_MAX];
	size_t sigmsg_len;

	for (unsigned i = 0; i < n; i++)
		s_fill(&msgs[i], &specs[i], batch, i);
	{
		struct env_draft d[8];

		for (unsigned i = 0; i < n; i++)
			d[i] = msgs[i].d;
		if (env_build(d, n, GM->sign_sk, out) != SCHAKEL_OK)
			abort();
		for (unsigned i = 0; i < n; i++) {
			msgs[i].d.hdr = d[i].hdr;
			msgs[i].env = out[i];
		}
	}
	s_open(NULL, '{');
	s_jstr("name", name);
	s_jstr("signer", GM->id);
	s_open("messages", '[');
	for (unsigned i = 0; i < n; i++) {
		struct s_msg *m = &msgs[i];
		uint8_t ad[4096], leaf[32];

		if (pb_envelope_decode(m->env.data, m->env.len, &pe) != 0)
			abort();
		s_open(NULL, '{');
		s_open("input", '{');
		s_write_header(&m->d.hdr, false);
		s_jhex("payload", m->payload, m->d.payload_len);
		s_jhex("content_key", m->fixed.content_key, 32);
		s_jhex("nonce", m->fixed.nonce, 24);
		s_open("eph_seeds", '[');
		for (size_t k = 0; k < m->d.hdr.n_recipients; k++)
			s_jhex(NULL, m->fixed.eph_seed[k], 32);
		s_close(']');
		s_close('}');
		s_open("expect", '{');
		s_jhex("associated_data", ad, s_ad(&m->d.hdr, ad));
		s_jhex("ciphertext", pe.ciphertext, pe.ciphertext_len);
		s_jhex("ciphertext_hash", m->d.hdr.ciphertext_hash, 32);
		s_jhex("key_commitment", m->d.hdr.key_commitment, 32);
		s_open("sealed_keys", '[');
		for (size_t k = 0; k < pe.n_keys; k++) {
			s_open(NULL, '{');
			s_jstr("recipient", pe.key_recipient[k]);
			s_jhex("eph_pk", pe.key_sealed[k], 32);
			s_jhex("sealed", pe.key_sealed[k], ENV_SEALED_LEN);
			s_close('}');
		}
		s_close(']');
		s_jhex("header_bytes", pe.header, pe.header_len);
		merkle_leaf_hash(pe.header, pe.header_len, leaf);
		s_jhex("leaf_hash", leaf, 32);
		s_jnum("leaf_index", pe.sig.leaf_index);
		s_open("proof", '[');
		for (size_t k = 0; k < pe.sig.proof_len; k++)
			s_jhex(NULL, pe.sig.proof[k], 32);
		s_close(']');
		s_jhex("envelope", m->env.data, m->env.len);
		s_close('}');
		s_close('}');
		if (i + 1 < n)
			pb_release(&pe);
	}
	s_close(']');
	s_jnum("leaf_count", pe.sig.leaf_count);
	s_jhex("root", pe.sig.root, 32);
	sigmsg_len = merkle_sig_message(
	    MERKLE_DOMAIN_BATCH, pe.sig.leaf_count, pe.sig.root, sigmsg);
	s_jhex("signed_message", sigmsg, sigmsg_len);
	s_jhex("signature", pe.sig.sig, 64);
	s_close('}');
	pb_release(&pe);
}

/* ---- receipts --------------------------------------------------------- */

static void
s_receipts(const char *name, unsigned n, unsigned group, struct codec_buf *out)
{
	struct receipt r[3];
	uint8_t sigmsg[MERKLE_SIGMSG_MAX];
	struct merkle_sig sig;
	struct receipt got;

	memset(r, 0, sizeof r);
	for (unsigned i = 0; i < n; i++) {
		s_det(r[i].message_id, 16, "schakel test message id", 3, i);
		s_det(
		    r[i].header_hash, 32, "schakel test header hash", group, i);
		r[i].accepted_ms = 1767258003500ull + group * 10 + i;
		r[i].store_seq = 40000 + group * 100 + i;
		snprintf(r[i].sender, sizeof r[i].sender, "%s", GM->id);
		r[i].n_recipients = i == 2 ? 2 : 1;
		snprintf(r[i].recipients[0], 65, "kredietbank-utrecht");
		snprintf(
		    r[i].agreement_ids[0], 65, "ovk-utrecht-kredietbank-2026");
		if (i == 2) {
			snprintf(r[i].recipients[1], 65,
			    "rechtbank-midden-nederland");
			snprintf(
			    r[i].agreement_ids[1], 65, "ovk-wsnp-rbmn-2026");
		}
	}
	if (receipt_build(r, n, BROKER->sign_sk, out) != SCHAKEL_OK)
		abort();
	s_open(NULL, '{');
	s_jstr("name", name);
	s_jstr("signer", BROKER->id);
	s_open("receipts", '[');
	for (unsigned i = 0; i < n; i++) {
		uint8_t body[RECEIPT_MAX_LEN], leaf[32];
		size_t blen;

		if (pb_signed_receipt_decode(
			out[i].data, out[i].len, body, &blen, &sig) != 0 ||
		    receipt_verify(out[i].data, out[i].len, BROKER->sign_pk,
			NULL, &got, NULL) != 0)
			abort();
		s_open(NULL, '{');
		s_open("input", '{');
		s_jhex("message_id", r[i].message_id, 16);
		s_jnum("accepted_ms", r[i].accepted_ms);
		s_open("recipients", '[');
		for (size_t k = 0; k < r[i].n_recipients; k++)
			s_jstr(NULL, r[i].recipients[k]);
		s_close(']');
		s_open("agreement_ids", '[');
		for (size_t k = 0; k < r[i].n_recipients; k++)
			s_jstr(NULL, r[i].agreement_ids[k]);
		s_close(']');
		s_jnum("store_seq", r[i].store_seq);
		s_jhex("header_hash", r[i].header_hash, 32);
		s_jstr("sender", r[i].sender);
		s_close('}');
		s_open("expect", '{');
		s_jhex("receipt_bytes", body, blen);
		merkle_leaf_hash(body, blen, leaf);
		s_jhex("leaf_hash", leaf, 32);
		s_jnum("leaf_index", sig.leaf_index);
		s_open("proof", '[');
		for (size_t k = 0; k < sig.proof_len; k++)
			s_jhex(NULL, sig.proof[k], 32);
		s_close(']');
		s_jhex("signed_receipt", out[i].data, out[i].len);
		s_close('}');
		s_close('}');
	}
	s_close(']');
	s_jnum("leaf_count", sig.leaf_count);
	s_jhex("root", sig.root, 32);
	s_jhex("signed_message", sigmsg,
	    merkle_sig_message(
		MERKLE_DOMAIN_RECEIPT, sig.leaf_count, sig.root, sigmsg));
	s_jhex("signature", sig.sig, 64);
	s_close('}');
}

/* ---- negative vectors ------------------------------------------------- */

/* A raw protobuf writer, so that a vector can carry what the codec's own
 * encoder would never produce. */
struct s_raw {
	uint8_t p[8192];
	size_t n;
};

static void
s_varint(struct s_raw *r, uint64_t v)
{
	do {
		uint8_t b = v & 0x7f;

		v >>= 7;
		r->p[r->n++] = b | (v ? 0x80 : 0);
	} while (v);
}

static void
s_field(struct s_raw *r, unsigned num, const void *p, size_t n)
{
	s_varint(r, (uint64_t)num << 3 | 2);
	s_varint(r, n);
	memcpy(r->p + r->n, p, n);
	r->n += n;
}

static void
s_field_varint(struct s_raw *r, unsigned num, uint64_t v)
{
	s_varint(r, (uint64_t)num << 3);
	s_varint(r, v);
}

/* Options for a crafted single-message envelope. */
struct s_craft {
	const uint8_t *header;
	size_t header_len;
	const uint8_t *ct;
	size_t ct_len;
	size_t n_keys;
	const char *key_recipient[4];
	const uint8_t *key_sealed[4];
	size_t sealed_len;
	size_t extra_proof; /* bogus proof hashes to add */
	const uint8_t *sk;
	enum merkle_domain domain;
};

static struct codec_buf
s_craft(const struct s_craft *c)
{
	struct s_raw sig = {0}, key, *env = calloc(1, sizeof *env);
	struct merkle_sig s;
	uint8_t leaf[32], junk[32];
	struct codec_buf b;

	merkle_leaf_hash(c->header, c->header_len, leaf);
	memset(&s, 0, sizeof s);
	memcpy(s.root, leaf, 32);
	s.leaf_count = 1;
	if (merkle_sign(c->domain, c->sk, &s) != 0)
		abort();
	s_field(&sig, 1, s.root, 32);
	s_field_varint(&sig, 3, 1);
	memset(junk, 0xaa, sizeof junk);
	for (size_t i = 0; i < c->extra_proof; i++)
		s_field(&sig, 4, junk, 32);
	s_field(&sig, 5, s.sig, 64);
	s_field(env, 1, c->header, c->header_len);
	s_field(env, 2, sig.p, sig.n);
	for (size_t i = 0; i < c->n_keys; i++) {
		key.n = 0;
		s_field(
		    &key, 1, c->key_recipient[i], strlen(c->key_recipient[i]));
		s_field(&key, 2, c->key_sealed[i],
		    c->sealed_len ? c->sealed_len : ENV_SEALED_LEN);
		s_field(env, 3, key.p, key.n);
	}
	s_field(env, 4, c->ct, c->ct_len);
	b.len = env->n;
	b.data = malloc(b.len);
	memcpy(b.data, env->p, b.len);
	free(env);
	return b;
}

static bool s_neg_first = true;

static void
s_neg(const char *name, const char *why, const char *kind, const uint8_t *p,
    size_t n, const char *sender, const char *reader, size_t max_len,
    int expect)
{
	(void)s_neg_first;
	s_open(NULL, '{');
	s_jstr("name", name);
	s_jstr("description", why);
	s_jstr("kind", kind);
	s_jhex("input", p, n);
	s_jstr("signer", sender);
	s_jstr("reader", reader != NULL ? reader : "");
	s_jnum("max_len", max_len);
	s_jstr("expect", schakel_errname(expect));
	s_jnum("expect_code", (unsigned long long)expect);
	s_close('}');
}

/* Re-encode a positive envelope after `edit` changed its parts. */
static struct codec_buf
s_reencode(const struct pb_envelope *pe)
{
	struct codec_buf b = {0};

	if (pb_envelope_encode(pe, &b) != 0)
		abort();
	return b;
}

/* A header for crafted vectors: message 0 of batch 1 with its hashes. */
static struct codec_buf
s_header(const struct env_header *h, const struct s_raw *extra)
{
	struct codec_buf b = {0};
	uint8_t *p;

	if (pb_header_encode(h, &b) != 0)
		abort();
	if (extra == NULL)
		return b;
	p = realloc(b.data, b.len + extra->n);
	memcpy(p + b.len, extra->p, extra->n);
	b.data = p;
	b.len += extra->n;
	return b;
}

/* Remove every occurrence of top-level field `num` from an encoded
 * message (all our fields are varint or length-delimited). */
static void
s_strip(struct codec_buf *b, unsigned num)
{
	size_t r = 0, w = 0;

	while (r < b->len) {
		size_t start = r;
		uint64_t key = 0, v = 0;
		int shift = 0;

		do
			key |= (uint64_t)(b->data[r] & 0x7f) << (7 * shift++);
		while (b->data[r++] & 0x80);
		shift = 0;
		do
			v |= (uint64_t)(b->data[r] & 0x7f) << (7 * shift++);
		while (b->data[r++] & 0x80);
		if ((key & 7) == 2)
			r += v;
		if ((key >> 3) != num) {
			memmove(b->data + w, b->data + start, r - start);
			w += r - start;
		}
	}
	b->len = w;
}

static void
s_negatives(struct s_msg *b1, struct s_msg *b2, struct s_msg *b3,
    struct codec_buf *receipts)
{
	struct pb_envelope pe, pe1;
	struct codec_buf x, hb;
	struct s_raw extra;
	struct env_header h;
	uint8_t hdr[ENV_MAX_HEADER_LEN], *big;
	const struct s_msg *m1 = &b1[0];
	struct s_craft c;

	/* Proofs. */
	pb_envelope_decode(b3[0].env.data, b3[0].env.len, &pe);
	pb_envelope_decode(b3[1].env.data, b3[1].env.len, &pe1);
	memcpy(pe.sig.proof, pe1.sig.proof, sizeof pe.sig.proof);
	x = s_reencode(&pe);
	s_neg("proof-for-another-leaf",
	    "message 0 of batch-3 carrying the proof of leaf 1", "envelope",
	    x.data, x.len, GM->id, NULL, 0, SCHAKEL_E_BAD_PROOF);
	codec_buf_clear(&x);
	pe.sig = pe1.sig;
	x = s_reencode(&pe);
	s_neg("proof-and-index-of-another-leaf",
	    "message 0 of batch-3 carrying leaf 1's index and proof",
	    "envelope", x.data, x.len, GM->id, NULL, 0, SCHAKEL_E_BAD_PROOF);
	codec_buf_clear(&x);
	pb_release(&pe);
	pb_release(&pe1);

	pb_envelope_decode(b3[0].env.data, b3[0].env.len, &pe);
	pe.sig.proof_len--;
	x = s_reencode(&pe);
	s_neg("proof-too-short",
	    "batch-3 message 0 with one proof hash left out", "envelope",
	    x.data, x.len, GM->id, NULL, 0, SCHAKEL_E_BAD_PROOF);
	codec_buf_clear(&x);
	pe.sig.proof_len += 2;
	memcpy(pe.sig.proof[2], pe.sig.root, 32);
	x = s_reencode(&pe);
	s_neg("proof-too-long", "batch-3 message 0 with an extra proof hash",
	    "envelope", x.data, x.len, GM->id, NULL, 0, SCHAKEL_E_BAD_PROOF);
	codec_buf_clear(&x);
	pe.sig.proof_len--;
	pe.sig.leaf_count = 4;
	x = s_reencode(&pe);
	s_neg("leaf-count-altered",
	    "batch-3 message 0 claiming 4 leaves: the proof still reaches the "
	    "root, but the count is signed",
	    "envelope", x.data, x.len, GM->id, NULL, 0,
	    SCHAKEL_E_BAD_SIGNATURE);
	codec_buf_clear(&x);
	pe.sig.leaf_count = 3;
	pe.sig.leaf_index = 3;
	x = s_reencode(&pe);
	s_neg("leaf-index-out-of-range", "leaf index 3 in a tree of 3",
	    "envelope", x.data, x.len, GM->id, NULL, 0, SCHAKEL_E_BAD_PROOF);
	codec_buf_clear(&x);
	pe.sig.leaf_index = 0;

	/* Signatures. */
	merkle_sign(MERKLE_DOMAIN_BATCH, MALLORY->sign_sk, &pe.sig);
	x = s_reencode(&pe);
	s_neg("root-signed-by-another-key",
	    "batch-3's root signed by mallory, verified with gm0344's key",
	    "envelope", x.data, x.len, GM->id, NULL, 0,
	    SCHAKEL_E_BAD_SIGNATURE);
	codec_buf_clear(&x);
	merkle_sign(MERKLE_DOMAIN_RECEIPT, GM->sign_sk, &pe.sig);
	x = s_reencode(&pe);
	s_neg("signature-in-receipt-domain",
	    "batch-3's root signed by gm0344 with the receipt label",
	    "envelope", x.data, x.len, GM->id, NULL, 0,
	    SCHAKEL_E_BAD_SIGNATURE);
	codec_buf_clear(&x);
	pe.sig.sig[0] ^= 0x01;
	x = s_reencode(&pe);
	s_neg("signature-bit-flipped", "one bit of the signature flipped",
	    "envelope", x.data, x.len, GM->id, NULL, 0,
	    SCHAKEL_E_BAD_SIGNATURE);
	codec_buf_clear(&x);
	pb_release(&pe);

	{
		struct s_msg *m = calloc(1, sizeof *m);
		struct env_draft d;

		s_fill(m, &s_batch1[0], 1, 0);
		d = m->d;
		if (env_build(&d, 1, MALLORY->sign_sk, &x) != 0)
			abort();
		s_neg("signature-by-another-key",
		    "batch-1's message (sender gm0344) signed by mallory's key",
		    "envelope", x.data, x.len, GM->id, NULL, 0,
		    SCHAKEL_E_BAD_SIGNATURE);
		codec_buf_clear(&x);
		free(m);
	}

	/* Tampering. */
	pb_envelope_decode(m1->env.data, m1->env.len, &pe);
	memcpy(hdr, pe.header, pe.header_len);
	{
		uint8_t *at = memmem(hdr, pe.header_len, "000417", 6);

		at[5] = '8'; /* case:2026:000417 -> case:2026:000418 */
	}
	pe.header = hdr;
	x = s_reencode(&pe);
	s_neg("tampered-header",
	    "batch-1's header with its case reference changed by one digit",
	    "envelope", x.data, x.len, GM->id, NULL, 0, SCHAKEL_E_BAD_PROOF);
	codec_buf_clear(&x);
	pb_release(&pe);

	pb_envelope_decode(m1->env.data, m1->env.len, &pe);
	big = malloc(pe.ciphertext_len);
	memcpy(big, pe.ciphertext, pe.ciphertext_len);
	big[30] ^= 0x20;
	pe.ciphertext = big;
	x = s_reencode(&pe);
	s_neg("tampered-ciphertext",
	    "batch-1's ciphertext with one bit flipped", "envelope", x.data,
	    x.len, GM->id, KB->id, 0, SCHAKEL_E_HASH_MISMATCH);
	codec_buf_clear(&x);
	free(big);
	pb_release(&pe);

	/* Readers and keys. */
	s_neg("reader-not-named", "batch-1's message opened by the court",
	    "envelope", m1->env.data, m1->env.len, GM->id, RB->id, 0,
	    SCHAKEL_E_NOT_RECIPIENT);
	s_neg("reader-not-declared", "batch-1's message opened by mallory",
	    "envelope", m1->env.data, m1->env.len, GM->id, MALLORY->id, 0,
	    SCHAKEL_E_NOT_RECIPIENT);
	{
		struct s_msg *m = calloc(1, sizeof *m);
		struct env_draft d;

		/* The sender sealed kredietbank's slot to the court's key. */
		s_fill(m, &s_batch1[0], 1, 0);
		memcpy(m->d.recipients[0].box_pk, RB->box_pk, 32);
		d = m->d;
		if (env_build(&d, 1, GM->sign_sk, &x) != 0)
			abort();
		s_neg("sealed-key-for-wrong-recipient",
		    "kredietbank-utrecht's sealed key was sealed to the court's "
		    "X25519 key",
		    "envelope", x.data, x.len, GM->id, KB->id, 0,
		    SCHAKEL_E_UNSEAL_FAILED);
		codec_buf_clear(&x);
		free(m);
	}
	pb_envelope_decode(b2[0].env.data, b2[0].env.len, &pe);
	{
		uint8_t tmp[ENV_SEALED_LEN];

		memcpy(tmp, pe.key_sealed[0], sizeof tmp);
		memcpy(pe.key_sealed[0], pe.key_sealed[1], sizeof tmp);
		memcpy(pe.key_sealed[1], tmp, sizeof tmp);
	}
	x = s_reencode(&pe);
	s_neg("sealed-keys-swapped",
	    "batch-2 message 0 with the first two sealed keys exchanged",
	    "envelope", x.data, x.len, GM->id, "huisarts-de-vries", 0,
	    SCHAKEL_E_UNSEAL_FAILED);
	codec_buf_clear(&x);
	pe.n_keys = 2;
	x = s_reencode(&pe);
	s_neg("sealed-key-missing",
	    "batch-2 message 0 (three recipients) with only two sealed keys",
	    "envelope", x.data, x.len, GM->id, NULL, 0,
	    SCHAKEL_E_NO_SEALED_KEY);
	codec_buf_clear(&x);
	pe.n_keys = 3;
	snprintf(pe.key_recipient[2], sizeof pe.key_recipient[2], "mallory");
	x = s_reencode(&pe);
	s_neg("sealed-key-relabelled",
	    "batch-2 message 0 with its last sealed key labelled for mallory",
	    "envelope", x.data, x.len, GM->id, NULL, 0,
	    SCHAKEL_E_NO_SEALED_KEY);
	codec_buf_clear(&x);
	pb_release(&pe);

	/* A sender that commits to another key, or encrypts under another
	 * associated data: the broker accepts it, the recipient must not. */
	pb_envelope_decode(m1->env.data, m1->env.len, &pe);
	h = m1->d.hdr;
	h.key_commitment[0] ^= 1;
	hb = s_header(&h, NULL);
	memset(&c, 0, sizeof c);
	c.header = hb.data;
	c.header_len = hb.len;
	c.ct = pe.ciphertext;
	c.ct_len = pe.ciphertext_len;
	c.n_keys = 1;
	c.key_recipient[0] = KB->id;
	c.key_sealed[0] = pe.key_sealed[0];
	c.sk = GM->sign_sk;
	c.domain = MERKLE_DOMAIN_BATCH;
	x = s_craft(&c);
	s_neg("key-commitment-mismatch",
	    "header commits to another content key than the one sealed",
	    "envelope", x.data, x.len, GM->id, KB->id, 0,
	    SCHAKEL_E_DECRYPT_FAILED);
	codec_buf_clear(&x);
	codec_buf_clear(&hb);
	{
		/* Encrypt under the AD of another case, then sign honestly. */
		uint8_t ad[4096], ct[4096];
		struct env_header h2 = m1->d.hdr;
		size_t adlen;

		snprintf(h2.case_ref, sizeof h2.case_ref, "case:2026:999999");
		adlen = s_ad(&h2, ad);
		memcpy(ct, m1->fixed.nonce, 24);
		crypto_aead_xchacha20poly1305_ietf_encrypt(ct + 24, NULL,
		    m1->payload, m1->d.payload_len, ad, adlen, NULL,
		    m1->fixed.nonce, m1->fixed.content_key);
		h = m1->d.hdr;
		crypto_generichash(h.ciphertext_hash, 32, ct,
		    24 + m1->d.payload_len + 16, NULL, 0);
		hb = s_header(&h, NULL);
		c.header = hb.data;
		c.header_len = hb.len;
		c.ct = ct;
		c.ct_len = 24 + m1->d.payload_len + 16;
		x = s_craft(&c);
		s_neg("associated-data-mismatch",
		    "payload encrypted with another case reference in its "
		    "associated data",
		    "envelope", x.data, x.len, GM->id, KB->id, 0,
		    SCHAKEL_E_DECRYPT_FAILED);
		codec_buf_clear(&x);
		codec_buf_clear(&hb);
	}

	/* Truncation and trailing bytes. */
	s_neg("truncated-by-one", "batch-1's envelope without its last byte",
	    "envelope", m1->env.data, m1->env.len - 1, GM->id, NULL, 0,
	    SCHAKEL_E_MALFORMED);
	s_neg("truncated-in-header", "batch-1's envelope cut after 40 bytes",
	    "envelope", m1->env.data, 40, GM->id, NULL, 0, SCHAKEL_E_MALFORMED);
	big = malloc(m1->env.len + 1);
	memcpy(big, m1->env.data, m1->env.len);
	big[m1->env.len] = 0x00;
	s_neg("trailing-byte", "batch-1's envelope followed by one zero byte",
	    "envelope", big, m1->env.len + 1, GM->id, NULL, 0,
	    SCHAKEL_E_MALFORMED);
	big[m1->env.len] = 0x22; /* tag of field 4 with no length */
	s_neg("trailing-tag", "batch-1's envelope followed by a bare tag",
	    "envelope", big, m1->env.len + 1, GM->id, NULL, 0,
	    SCHAKEL_E_MALFORMED);
	free(big);
	{
		/* Found by fuzzing: header_bytes' length as a non-minimal
		 * varint (one 0x80 continuation and a padding 0x00 byte). */
		size_t hl = 0, k = 1;
		int sh = 0;
		uint8_t *o = malloc(m1->env.len + 1);

		while (m1->env.data[k] & 0x80)
			hl |= (size_t)(m1->env.data[k++] & 0x7f) << (7 * sh++);
		hl |= (size_t)m1->env.data[k++] << (7 * sh);
		(void)hl;
		memcpy(o, m1->env.data, k);
		o[k - 1] |= 0x80;
		o[k] = 0x00;
		memcpy(o + k + 1, m1->env.data + k, m1->env.len - k);
		s_neg("overlong-varint",
		    "batch-1's envelope with header_bytes' length padded to a "
		    "non-minimal varint",
		    "envelope", o, m1->env.len + 1, GM->id, NULL, 0,
		    SCHAKEL_E_MALFORMED);
		free(o);
	}
	s_neg("empty", "zero bytes", "envelope", (const uint8_t *)"", 0, GM->id,
	    NULL, 0, SCHAKEL_E_BAD_FIELD);
	s_neg("over-configured-limit",
	    "batch-1's envelope against a limit one byte smaller", "envelope",
	    m1->env.data, m1->env.len, GM->id, NULL, m1->env.len - 1,
	    SCHAKEL_E_TOO_LARGE);

	/* Oversized and invalid header fields, each otherwise valid and
	 * properly signed. */
	c.ct = m1->env.data; /* content is irrelevant: decode refuses first */
	c.ct_len = 64;
#define S_HDR_CASE(nm, why, strip, mutate, extra_ptr, code) \
	do { \
		h = m1->d.hdr; \
		mutate; \
		hb = s_header(&h, NULL); \
		s_strip(&hb, strip); \
		const struct s_raw *e_ = (extra_ptr); \
		if (e_ != NULL) { \
			hb.data = realloc(hb.data, hb.len + e_->n); \
			memcpy(hb.data + hb.len, e_->p, e_->n); \
			hb.len += e_->n; \
		} \
		c.header = hb.data; \
		c.header_len = hb.len; \
		x = s_craft(&c); \
		s_neg(nm, why, "envelope", x.data, x.len, GM->id, NULL, 0, \
		    code); \
		codec_buf_clear(&x); \
		codec_buf_clear(&hb); \
	} while (0)

	extra.n = 0;
	memset(hdr, 'a', 65);
	s_field(&extra, 5, hdr, 65);
	S_HDR_CASE("oversized-case-ref", "a 65-character case reference", 5,
	    (void)0, &extra, SCHAKEL_E_TOO_LARGE);
	extra.n = 0;
	for (int i = 0; i < 33; i++) {
		char id[16];

		snprintf(id, sizeof id, "party-%02d", i);
		s_field(&extra, 3, id, strlen(id));
	}
	S_HDR_CASE("too-many-recipients", "33 recipients", 3, (void)0, &extra,
	    SCHAKEL_E_TOO_LARGE);
	extra.n = 0;
	memset(hdr, 0x11, 33);
	s_field(&extra, 12, hdr, 33);
	S_HDR_CASE("oversized-hash", "a 33-byte ciphertext hash", 12, (void)0,
	    &extra, SCHAKEL_E_TOO_LARGE);
	extra.n = 0;
	for (int i = 0; i < 17; i++) {
		struct s_raw a = {0};
		char k[8];

		snprintf(k, sizeof k, "k%02d", i);
		s_field(&a, 1, k, strlen(k));
		s_field(&extra, 11, a.p, a.n);
	}
	S_HDR_CASE("too-many-attributes", "17 routing attributes", 11, (void)0,
	    &extra, SCHAKEL_E_TOO_LARGE);
	extra.n = 0;
	s_field_varint(&extra, 99, 1);
	S_HDR_CASE("unknown-header-field", "a header with field 99", 0, (void)0,
	    &extra, SCHAKEL_E_MALFORMED);
	extra.n = 0;
	s_field(&extra, 4, "shv.melding.v2", 14);
	S_HDR_CASE("repeated-singular-field",
	    "a header with message_type twice", 0, (void)0, &extra,
	    SCHAKEL_E_MALFORMED);
	extra.n = 0;
	s_field_varint(&extra, 9, 2);
	S_HDR_CASE("bool-not-0-or-1", "urgent = 2", 9, (void)0, &extra,
	    SCHAKEL_E_MALFORMED);
	S_HDR_CASE("recipients-not-ascending",
	    "recipients out of bytewise order", 0,
	    (h.n_recipients = 2,
		snprintf(h.recipients[0], 65, "rechtbank-midden-nederland"),
		snprintf(h.recipients[1], 65, "kredietbank-utrecht")),
	    NULL, SCHAKEL_E_BAD_FIELD);
	S_HDR_CASE("case-ref-is-not-a-token", "a case reference with a space",
	    0, snprintf(h.case_ref, 65, "case 417"), NULL, SCHAKEL_E_BAD_FIELD);
	S_HDR_CASE("control-character", "a purpose containing a newline", 0,
	    snprintf(h.purpose, 65, "wgs.intake\nx"), NULL,
	    SCHAKEL_E_BAD_FIELD);
	S_HDR_CASE("expires-before-created", "expires_ms equal to created_ms",
	    0, h.expires_ms = h.created_ms, NULL, SCHAKEL_E_BAD_FIELD);
	extra.n = 0;
	s_field(&extra, 1, "0123456789abcde", 15);
	S_HDR_CASE("short-message-id", "a 15-byte message id", 1, (void)0,
	    &extra, SCHAKEL_E_BAD_FIELD);
	extra.n = 0;
	s_field(&extra, 1, "0123456789abcdef0", 17);
	S_HDR_CASE("long-message-id", "a 17-byte message id", 1, (void)0,
	    &extra, SCHAKEL_E_TOO_LARGE);
#undef S_HDR_CASE
	/* Envelope-level oversize. */
	hb = s_header(&m1->d.hdr, NULL);
	c.header = hb.data;
	c.header_len = hb.len;
	c.extra_proof = 17;
	x = s_craft(&c);
	s_neg("oversized-proof", "17 proof hashes (at most 16 are possible)",
	    "envelope", x.data, x.len, GM->id, NULL, 0, SCHAKEL_E_TOO_LARGE);
	codec_buf_clear(&x);
	c.extra_proof = 0;
	{
		uint8_t sealed[81] = {0};

		c.key_sealed[0] = sealed;
		c.sealed_len = 81;
		x = s_craft(&c);
		s_neg("oversized-sealed-key", "an 81-byte sealed key",
		    "envelope", x.data, x.len, GM->id, NULL, 0,
		    SCHAKEL_E_TOO_LARGE);
		codec_buf_clear(&x);
		c.sealed_len = 79;
		x = s_craft(&c);
		s_neg("short-sealed-key", "a 79-byte sealed key", "envelope",
		    x.data, x.len, GM->id, NULL, 0, SCHAKEL_E_NO_SEALED_KEY);
		codec_buf_clear(&x);
		c.sealed_len = 0;
		c.key_sealed[0] = pe.key_sealed[0];
	}
	c.ct_len = 39;
	x = s_craft(&c);
	s_neg("ciphertext-too-short", "39 bytes: less than nonce and tag",
	    "envelope", x.data, x.len, GM->id, NULL, 0, SCHAKEL_E_BAD_FIELD);
	codec_buf_clear(&x);
	codec_buf_clear(&hb);
	pb_release(&pe);

	/* Receipts. */
	{
		struct codec_buf *r = &receipts[1];
		uint8_t *t = malloc(r->len);

		memcpy(t, r->data, r->len);
		/* Byte 10 lies in the receipt body's message id. */
		t[10] ^= 0x01;
		s_neg("receipt-tampered",
		    "receipt 1 of receipts-3 with its message id changed",
		    "receipt", t, r->len, BROKER->id, NULL, 0,
		    SCHAKEL_E_BAD_PROOF);
		free(t);
		s_neg("receipt-wrong-broker-key",
		    "receipt 1 of receipts-3 checked with gm0344's key",
		    "receipt", r->data, r->len, GM->id, NULL, 0,
		    SCHAKEL_E_BAD_SIGNATURE);
		s_neg("receipt-truncated", "receipt 1 without its last byte",
		    "receipt", r->data, r->len - 1, BROKER->id, NULL, 0,
		    SCHAKEL_E_MALFORMED);
	}
	{
		/* A receipt-shaped envelope signature: batch label, broker key. */
		struct receipt rr;
		struct codec_buf body = {0}, out = {0};
		struct merkle_sig s;
		uint8_t leaf[32];

		memset(&rr, 0, sizeof rr);
		if (receipt_verify(receipts[0].data, receipts[0].len,
			BROKER->sign_pk, NULL, &rr, NULL) != 0 ||
		    pb_receipt_encode(&rr, &body) != 0)
			abort();
		merkle_leaf_hash(body.data, body.len, leaf);
		memset(&s, 0, sizeof s);
		memcpy(s.root, leaf, 32);
		s.leaf_count = 1;
		merkle_sign(MERKLE_DOMAIN_BATCH, BROKER->sign_sk, &s);
		pb_signed_receipt_encode(body.data, body.len, &s, &out);
		s_neg("receipt-in-batch-domain",
		    "a receipt signed by the broker with the batch label",
		    "receipt", out.data, out.len, BROKER->id, NULL, 0,
		    SCHAKEL_E_BAD_SIGNATURE);
		codec_buf_clear(&out);
		codec_buf_clear(&body);
	}
}

int
main(int argc, char **argv)
{
	static struct s_msg b1[1], b2[2], b3[3], b8[8];
	struct codec_buf r1[1], r3[3];

	if (codec_init() != SCHAKEL_OK)
		return 1;
	s_out = stdout;
	if (argc > 1 && (s_out = fopen(argv[1], "w")) == NULL) {
		perror(argv[1]);
		return 1;
	}
	s_party_keys();
	s_open(NULL, '{');
	s_jstr("protocol", "schakel.v1");
	s_jstr("about",
	    "Test vectors for docs/protocol.md. Hex is lowercase; times are "
	    "unix milliseconds. Positive vectors: build each batch from "
	    "'input' with the given content key, nonce and ephemeral seeds "
	    "(one per recipient, in ascending party-id order) and compare "
	    "every 'expect' field byte for byte. Negative vectors: decode, "
	    "verify with the signer's sign_pk and, when 'reader' is set, open "
	    "as that party; the first failure must be 'expect'.");
	s_open("parties", '[');
	for (size_t i = 0; i < S_NPARTIES; i++) {
		struct s_party *p = &s_parties[i];

		s_open(NULL, '{');
		s_jstr("id", p->id);
		s_jstr("role", p->role);
		s_jhex("sign_seed", p->sign_seed, 32);
		s_jhex("sign_pk", p->sign_pk, 32);
		s_jhex("box_sk", p->box_sk, 32);
		s_jhex("box_pk", p->box_pk, 32);
		s_close('}');
	}
	s_close(']');
	s_open("batches", '[');
	s_batch("batch-1", s_batch1, 1, 1, b1);
	s_batch("batch-2", s_batch2, 2, 2, b2);
	s_batch("batch-3", s_batch3, 3, 3, b3);
	s_batch("batch-8", s_batch8, 8, 8, b8);
	s_close(']');
	s_open("receipt_groups", '[');
	s_receipts("receipts-1", 1, 1, r1);
	s_receipts("receipts-3", 3, 3, r3);
	s_close(']');
	s_open("negative", '[');
	s_negatives(b1, b2, b3, r3);
	s_close(']');
	s_close('}');
	fputc('\n', s_out);
	codec_buf_clear(&r1[0]);
	for (int i = 0; i < 3; i++)
		codec_buf_clear(&r3[i]);
	codec_buf_clear(&b1[0].env);
	for (int i = 0; i < 2; i++)
		codec_buf_clear(&b2[i].env);
	for (int i = 0; i < 3; i++)
		codec_buf_clear(&b3[i].env);
	for (int i = 0; i < 8; i++)
		codec_buf_clear(&b8[i].env);
	if (s_out != stdout)
		fclose(s_out);
	return 0;
}
