/*
 * keys: the text encoding of public keys, and the only code that reads
 * or writes secret key files.  Secrets live in sodium_malloc'd memory and
 * are wiped before they are freed.
 *
 * Text encoding: an algorithm prefix, a colon, and the 32 key bytes in
 * base64url without padding (RFC 4648 section 5, 43 characters):
 *   ed25519:<43 chars>   an Ed25519 public signature key
 *   x25519:<43 chars>    an X25519 public key (sealing or CurveZMQ)
 * Secret keys use "ed25519-secret:" (the 32-byte seed) and
 * "x25519-secret:".  Key files hold "name: value" lines and # comments:
 * sign, box and transport for a party; sign and transport for the broker.
 */
#ifndef SCHAKEL_KEYS_H
#define SCHAKEL_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYS_BYTES 32
/* Longest text form, with its NUL: "ed25519-secret:" + 43 + 1. */
#define KEYS_TEXT_MAX 64

enum keys_alg {
	KEYS_ED25519,
	KEYS_X25519,
};

/* Which keys a key file holds. */
enum keys_owner {
	KEYS_PARTY,  /* sign, box, transport */
	KEYS_BROKER, /* sign, transport: the broker never opens payloads */
};

struct keys_public {
	uint8_t sign[KEYS_BYTES];
	uint8_t box[KEYS_BYTES];
	uint8_t transport[KEYS_BYTES];
	bool has_box;
};

/* Secret keys with their public halves.  Allocate only through
 * keys_secret_read or keys_generate; free with keys_secret_destroy. */
struct keys_secret {
	uint8_t sign_sk[64]; /* libsodium's seed || public key form */
	uint8_t box_sk[KEYS_BYTES];
	uint8_t transport_sk[KEYS_BYTES];
	struct keys_public pub;
};

/* Where and why reading a key file failed; line and col are 1-based,
 * 0 when the problem is the file as a whole. */
struct keys_error {
	unsigned line;
	unsigned col;
	char msg[256];
};

/* Writes the text form of a public key into out (KEYS_TEXT_MAX bytes). */
void keys_encode(enum keys_alg alg, const uint8_t key[KEYS_BYTES],
    char out[static KEYS_TEXT_MAX]);

/* Decodes the text form of a public key of algorithm `alg` and checks
 * that it is a usable key.  Returns 0, or -1 with *why set to a static
 * sentence. */
int keys_decode(const char *text, enum keys_alg alg, uint8_t key[KEYS_BYTES],
    const char **why);

/* Reads a public key file.  Returns 0, or -1 with *err filled in. */
int keys_public_read(const char *path, enum keys_owner owner,
    struct keys_public *out, struct keys_error *err);

/* Checks, without reading it, that a secret key file exists, is a regular
 * file and is not readable by group or others.  Returns 0 or -1 with
 * err->msg naming the file and the fix. */
int keys_secret_check_mode(const char *path, struct keys_error *err);

/* Reads a secret key file after the same mode check.  Returns an owned
 * keys_secret or NULL with *err filled in. */
struct keys_secret *keys_secret_read(
    const char *path, enum keys_owner owner, struct keys_error *err);

/* Wipes and frees; accepts NULL; sets *sp to NULL. */
void keys_secret_destroy(struct keys_secret **sp);

/* Generates fresh keys for `name` (a party id, or "broker") and writes
 * DIR/NAME.key (mode 0600, refused if it exists) and DIR/NAME.pub (0644).
 * Returns 0 with *pub filled in, or -1 with err->msg set. */
int keys_generate(const char *dir, const char *name, enum keys_owner owner,
    struct keys_public *pub, struct keys_error *err);

#endif
