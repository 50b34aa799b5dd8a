/*
 * bench_codec: envelopes built, verified and opened per second, for 1 KiB
 * and 64 KiB payloads, 1 and 3 recipients, alone and in batches of 64,
 * beside the raw libsodium primitives measured in the same run.  Each
 * codec figure is paired with its "floor": the same libsodium calls the
 * operation cannot avoid, executed on preallocated buffers in windows
 * interleaved with the codec's, so both see the same machine.  Not a
 * timed test.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "env.h"
#include "merkle.h"

#define S_BATCH 64

static double s_budget = 0.15; /* seconds per measurement window */

static double
s_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- primitives ------------------------------------------------------- */

struct s_prim {
	double aead_enc[2], aead_dec[2], hash_ct[2]; /* [0] 1 KiB, [1] 64 KiB */
	double hash_small, hash_keyed, seal, seal_open, sign, verify;
};

static const size_t s_sizes[2] = {1024, 65536};

/* Seconds per call of `body`: the best of three windows of s_budget
 * seconds each, so that a burst of other work on the machine does not
 * count against the code measured. */
#define S_TIME(result, body) \
	do { \
		double best_ = 1e30; \
		for (int w_ = 0; w_ < 3; w_++) { \
			double t0_ = s_now(), t_; \
			unsigned long n_ = 0; \
			do { \
				for (int k_ = 0; k_ < 8; k_++) { \
					body; \
				} \
				n_ += 8; \
				t_ = s_now() - t0_; \
			} while (t_ < s_budget); \
			if (t_ / (double)n_ < best_) \
				best_ = t_ / (double)n_; \
		} \
		(result) = best_; \
	} while (0)

/* Alternate windows of `a` and `b` (five each) and keep each one's best
 * seconds per call: noise from other work on a shared machine then hits
 * both sides alike instead of skewing their ratio. */
#define S_TIME_PAIR(ra, a, rb, b) \
	do { \
		double best_a_ = 1e30, best_b_ = 1e30; \
		for (int w_ = 0; w_ < 5; w_++) { \
			double t0_, t_; \
			unsigned long n_; \
			for (n_ = 0, t0_ = s_now();;) { \
				a; \
				n_++; \
				t_ = s_now() - t0_; \
				if (t_ >= s_budget / 2) \
					break; \
			} \
			if (t_ / (double)n_ < best_a_) \
				best_a_ = t_ / (double)n_; \
			for (n_ = 0, t0_ = s_now();;) { \
				b; \
				n_++; \
				t_ = s_now() - t0_; \
				if (t_ >= s_budget / 2) \
					break; \
			} \
			if (t_ / (double)n_ < best_b_) \
				best_b_ = t_ / (double)n_; \
		} \
		(ra) = best_a_; \
		(rb) = best_b_; \
	} while (0)

static void
s_primitives(struct s_prim *p)
{
	static uint8_t buf[65536 + 64], out[65536 + 64], hdr[320];
	uint8_t key[32], nonce[24], h[32], sealed[80], ck[32];
	uint8_t spk[32], ssk[64], bpk[32], bsk[32], sig[64], msg[53];
	volatile int sink = 0;

	randombytes_buf(buf, sizeof buf);
	randombytes_buf(hdr, sizeof hdr);
	randombytes_buf(key, sizeof key);
	randombytes_buf(nonce, sizeof nonce);
	randombytes_buf(msg, sizeof msg);
	crypto_sign_keypair(spk, ssk);
	crypto_box_keypair(bpk, bsk);
	for (int s = 0; s < 2; s++) {
		size_t n = s_sizes[s];

		S_TIME(p->aead_enc[s],
		    crypto_aead_xchacha20poly1305_ietf_encrypt(
			out, NULL, buf, n, hdr, 100, NULL, nonce, key));
		crypto_aead_xchacha20poly1305_ietf_encrypt(
		    out, NULL, buf, n, hdr, 100, NULL, nonce, key);
		S_TIME(p->aead_dec[s],
		    sink += crypto_aead_xchacha20poly1305_ietf_decrypt(
			buf, NULL, NULL, out, n + 16, hdr, 100, nonce, key));
		S_TIME(p->hash_ct[s],
		    crypto_generichash(h, 32, out, n + 40, NULL, 0));
	}
	S_TIME(p->hash_small, crypto_generichash(h, 32, hdr, 300, NULL, 0));
	S_TIME(
	    p->hash_keyed, crypto_generichash(h, 32, hdr, 22, key, sizeof key));
	S_TIME(p->seal, crypto_box_seal(sealed, key, 32, bpk));
	S_TIME(p->seal_open,
	    sink += crypto_box_seal_open(ck, sealed, sizeof sealed, bpk, bsk));
	S_TIME(p->sign, crypto_sign_detached(sig, NULL, msg, sizeof msg, ssk));
	S_TIME(p->verify,
	    sink += crypto_sign_verify_detached(sig, msg, sizeof msg, spk));
	(void)sink;
}

static void
s_print_prims(const struct s_prim *p)
{
	printf("libsodium %s primitives on this machine (calls/s):\n",
	    sodium_version_string());
	printf("  %-44s %12.0f\n", "Ed25519 sign (53-byte batch message)",
	    1 / p->sign);
	printf("  %-44s %12.0f\n", "Ed25519 verify", 1 / p->verify);
	printf(
	    "  %-44s %12.0f\n", "crypto_box_seal (32-byte key)", 1 / p->seal);
	printf("  %-44s %12.0f\n", "crypto_box_seal_open", 1 / p->seal_open);
	printf("  %-44s %12.0f\n", "BLAKE2b-256, 300 bytes (header leaf)",
	    1 / p->hash_small);
	for (int s = 0; s < 2; s++) {
		char label[64];

		snprintf(label, sizeof label,
		    "XChaCha20-Poly1305 encrypt %zu KiB", s_sizes[s] / 1024);
		printf("  %-44s %12.0f\n", label, 1 / p->aead_enc[s]);
		snprintf(label, sizeof label,
		    "XChaCha20-Poly1305 decrypt %zu KiB", s_sizes[s] / 1024);
		printf("  %-44s %12.0f\n", label, 1 / p->aead_dec[s]);
		snprintf(label, sizeof label,
		    "BLAKE2b-256 of %zu KiB ciphertext", s_sizes[s] / 1024);
		printf("  %-44s %12.0f\n", label, 1 / p->hash_ct[s]);
	}
}

/* ---- codec ------------------------------------------------------------ */

static uint8_t s_sender_pk[32], s_sender_sk[64];
static struct env_recipient s_to[3];
static uint8_t s_box_sk[3][32];
static uint8_t s_payload[65536];

static void
s_drafts(struct env_draft *d, size_t n, size_t plen, size_t nto)
{
	for (size_t i = 0; i < n; i++) {
		memset(&d[i], 0, sizeof d[i]);
		env_new_id(d[i].hdr.id);
		snprintf(d[i].hdr.sender, sizeof d[i].hdr.sender, "gm0344");
		snprintf(
		    d[i].hdr.type, sizeof d[i].hdr.type, "shv.vroegsignaal.v1");
		snprintf(d[i].hdr.case_ref, sizeof d[i].hdr.case_ref,
		    "case:2026:%06zu", i);
		snprintf(d[i].hdr.purpose, sizeof d[i].hdr.purpose,
		    "wgs.early-warning");
		snprintf(d[i].hdr.region, sizeof d[i].hdr.region, "GM0344");
		d[i].hdr.created_ms = 1767258000000ull;
		d[i].hdr.expires_ms = d[i].hdr.created_ms + 86400000ull;
		d[i].n_recipients = nto;
		memcpy(d[i].recipients, s_to, nto * sizeof s_to[0]);
		d[i].payload = s_payload;
		d[i].payload_len = plen;
	}
}

struct s_result {
	double build, verify, open;    /* seconds per message */
	double fbuild, fverify, fopen; /* the floor, same unit */
};

/* The libsodium calls of one operation on `batch` messages, on hot,
 * preallocated buffers: what any implementation of the protocol pays. */
struct s_floor {
	uint8_t ck[32], nonce[24], h[32], sealed[3][80], sig[64], msg[53];
	uint8_t hdr[300], pk[32], sk[64];
	uint8_t *pt, *ct;
};

static struct s_floor s_fl;

static void
s_floor_build(size_t batch, size_t plen, size_t nto)
{
	for (size_t i = 0; i < batch; i++) {
		crypto_aead_xchacha20poly1305_ietf_encrypt(s_fl.ct + 24, NULL,
		    s_fl.pt, plen, s_fl.hdr, 100, NULL, s_fl.nonce, s_fl.ck);
		crypto_generichash(s_fl.h, 32, s_fl.ct, plen + 40, NULL, 0);
		crypto_generichash(s_fl.h, 32, s_fl.hdr, 22, s_fl.ck, 32);
		for (size_t k = 0; k < nto; k++)
			crypto_box_seal(
			    s_fl.sealed[k], s_fl.ck, 32, s_to[k].box_pk);
		crypto_generichash(
		    s_fl.h, 32, s_fl.hdr, sizeof s_fl.hdr, NULL, 0);
	}
	for (size_t i = 1; i < batch; i++)
		crypto_generichash(s_fl.h, 32, s_fl.hdr, 65, NULL, 0);
	crypto_sign_detached(
	    s_fl.sig, NULL, s_fl.msg, sizeof s_fl.msg, s_fl.sk);
}

static int
s_floor_verify(size_t batch, size_t plen, size_t proof)
{
	int bad = crypto_sign_verify_detached(
	    s_fl.sig, s_fl.msg, sizeof s_fl.msg, s_fl.pk);

	for (size_t i = 0; i < batch; i++) {
		crypto_generichash(
		    s_fl.h, 32, s_fl.hdr, sizeof s_fl.hdr, NULL, 0);
		for (size_t k = 0; k < proof; k++)
			crypto_generichash(s_fl.h, 32, s_fl.hdr, 65, NULL, 0);
		crypto_generichash(s_fl.h, 32, s_fl.ct, plen + 40, NULL, 0);
	}
	return bad;
}

static int
s_floor_open(size_t batch, size_t plen, size_t proof, size_t nto)
{
	int bad = s_floor_verify(batch, plen, proof);

	for (size_t i = 0; i < batch; i++) {
		bad |= crypto_box_seal_open(s_fl.ck, s_fl.sealed[nto - 1], 80,
		    s_to[nto - 1].box_pk, s_box_sk[nto - 1]);
		crypto_generichash(s_fl.h, 32, s_fl.hdr, 22, s_fl.ck, 32);
		bad |= crypto_aead_xchacha20poly1305_ietf_decrypt(s_fl.pt, NULL,
		    NULL, s_fl.ct + 24, plen + 16, s_fl.hdr, 100, s_fl.nonce,
		    s_fl.ck);
	}
	return bad;
}

static void
s_floor_init(void)
{
	s_fl.pt = malloc(65536 + 64);
	s_fl.ct = malloc(65536 + 64);
	if (s_fl.pt == NULL || s_fl.ct == NULL)
		abort();
	randombytes_buf(s_fl.pt, 65536);
	randombytes_buf(s_fl.hdr, sizeof s_fl.hdr);
	randombytes_buf(s_fl.msg, sizeof s_fl.msg);
	crypto_aead_xchacha20poly1305_ietf_keygen(s_fl.ck);
	randombytes_buf(s_fl.nonce, sizeof s_fl.nonce);
	crypto_sign_keypair(s_fl.pk, s_fl.sk);
	crypto_sign_detached(
	    s_fl.sig, NULL, s_fl.msg, sizeof s_fl.msg, s_fl.sk);
	for (size_t k = 0; k < 3; k++)
		crypto_box_seal(s_fl.sealed[k], s_fl.ck, 32, s_to[k].box_pk);
}

static void
s_measure(int s, size_t nto, size_t batch, struct s_result *r)
{
	static struct env_draft d[S_BATCH];
	static struct codec_buf out[S_BATCH];
	size_t plen = s_sizes[s];
	size_t proof = 0;
	volatile int sink = 0;
	double t, f;

	for (size_t b = batch; b > 1; b = (b + 1) / 2)
		proof++;
	/* Prepare the payloads for the floor's decryptions. */
	crypto_aead_xchacha20poly1305_ietf_encrypt(s_fl.ct + 24, NULL, s_fl.pt,
	    plen, s_fl.hdr, 100, NULL, s_fl.nonce, s_fl.ck);

	/* build: the drafts are the caller's and are set up once; env_build
	 * only reads them (and rewrites the fields it owns). */
	s_drafts(d, batch, plen, nto);
	S_TIME_PAIR(
	    t,
	    {
		    if (env_build(d, batch, s_sender_sk, out) != SCHAKEL_OK)
			    abort();
		    for (size_t i = 0; i < batch; i++)
			    codec_buf_clear(&out[i]);
	    },
	    f, s_floor_build(batch, plen, nto));
	r->build = t / (double)batch;
	r->fbuild = f / (double)batch;

	if (env_build(d, batch, s_sender_sk, out) != SCHAKEL_OK)
		abort();
	/* verify: what the broker does per message, decode included.  A
	 * batch shares one cache, fresh per pass, so the root is checked
	 * once per 64 messages. */
	S_TIME_PAIR(
	    t,
	    {
		    struct merkle_cache *c =
			batch > 1 ? merkle_cache_new(256) : NULL;

		    for (size_t i = 0; i < batch; i++) {
			    struct env *e;

			    if (env_decode(out[i].data, out[i].len, 0, &e) !=
				    0 ||
				env_verify(e, s_sender_pk, c) != 0)
				    abort();
			    env_destroy(&e);
		    }
		    merkle_cache_destroy(&c);
	    },
	    f, sink += s_floor_verify(batch, plen, proof));
	r->verify = t / (double)batch;
	r->fverify = f / (double)batch;
	/* open: the last recipient, as its client library would. */
	S_TIME_PAIR(
	    t,
	    {
		    struct merkle_cache *c =
			batch > 1 ? merkle_cache_new(256) : NULL;

		    for (size_t i = 0; i < batch; i++) {
			    struct env *e;
			    uint8_t *pt;
			    size_t ptlen;

			    if (env_decode(out[i].data, out[i].len, 0, &e) !=
				    0 ||
				env_open(e, s_sender_pk, s_to[nto - 1].party_id,
				    s_to[nto - 1].box_pk, s_box_sk[nto - 1], c,
				    &pt, &ptlen) != 0)
				    abort();
			    free(pt);
			    env_destroy(&e);
		    }
		    merkle_cache_destroy(&c);
	    },
	    f, sink += s_floor_open(batch, plen, proof, nto));
	r->open = t / (double)batch;
	r->fopen = f / (double)batch;
	for (size_t i = 0; i < batch; i++)
		codec_buf_clear(&out[i]);
	(void)sink;
}

int
main(int argc, char **argv)
{
	static const char *names[3] = {"kredietbank-utrecht",
	    "rechtbank-midden-nederland", "huisarts-de-vries"};
	struct s_prim p;
	double worst = -1e9;

	if (argc > 1 && strcmp(argv[1], "--quick") == 0)
		s_budget = 0.02;
	if (codec_init() != SCHAKEL_OK)
		return 1;
	crypto_sign_keypair(s_sender_pk, s_sender_sk);
	for (int i = 0; i < 3; i++) {
		snprintf(
		    s_to[i].party_id, sizeof s_to[i].party_id, "%s", names[i]);
		crypto_box_keypair(s_to[i].box_pk, s_box_sk[i]);
	}
	randombytes_buf(s_payload, sizeof s_payload);
	s_primitives(&p);
	s_floor_init();
	s_print_prims(&p);
	printf("\nenvelope codec (messages/s; floor = the libsodium calls it "
	       "cannot avoid, timed in interleaved windows; over = cost above "
	       "the floor):\n");
	printf("  %-7s %-5s %-5s | %9s %9s %6s | %9s %9s %6s | %9s %9s %6s\n",
	    "payload", "rcpts", "batch", "build", "floor", "over", "verify",
	    "floor", "over", "open", "floor", "over");
	for (int s = 0; s < 2; s++) {
		for (size_t nto = 1; nto <= 3; nto += 2) {
			for (size_t batch = 1; batch <= S_BATCH;
			     batch *= S_BATCH) {
				struct s_result r;
				double ob, ov, oo;

				s_measure(s, nto, batch, &r);
				ob = 100 * (r.build / r.fbuild - 1);
				ov = 100 * (r.verify / r.fverify - 1);
				oo = 100 * (r.open / r.fopen - 1);
				if (ob > worst)
					worst = ob;
				if (ov > worst)
					worst = ov;
				if (oo > worst)
					worst = oo;
				printf(
				    "  %4zuKiB %5zu %5zu | %9.0f %9.0f %5.1f%% | "
				    "%9.0f %9.0f %5.1f%% | %9.0f %9.0f %5.1f%%\n",
				    s_sizes[s] / 1024, nto, batch, 1 / r.build,
				    1 / r.fbuild, ob, 1 / r.verify,
				    1 / r.fverify, ov, 1 / r.open, 1 / r.fopen,
				    oo);
				fflush(stdout);
			}
		}
	}
	printf("\nworst_overhead_pct=%.1f ed25519_sign_per_s=%.0f "
	       "ed25519_verify_per_s=%.0f\n",
	    worst, 1 / p.sign, 1 / p.verify);
	return 0;
}
