/* Unit tests of key text encoding and key files, on real files in a
 * private temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys.h"

static char s_dir[] = "/tmp/schakel-test-keys-XXXXXX";

static void
s_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", s_dir, name);
}

static void
s_write(const char *name, const char *text, mode_t mode)
{
	char path[256];
	FILE *f;

	s_path(path, sizeof path, name);
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void
test_encode_roundtrip(void **state)
{
	uint8_t pk[32], sk[64], back[32];
	char text[KEYS_TEXT_MAX];
	const char *why;

	crypto_sign_keypair(pk, sk);
	keys_encode(KEYS_ED25519, pk, text);
	assert_int_equal(strlen(text), 8 + 43);
	assert_memory_equal(text, "ed25519:", 8);
	assert_int_equal(keys_decode(text, KEYS_ED25519, back, &why), 0);
	assert_memory_equal(pk, back, 32);
	/* The same bytes under the other type are refused. */
	assert_int_equal(keys_decode(text, KEYS_X25519, back, &why), -1);
	assert_string_equal(why,
	    "wrong key type: this field needs an X25519 "
	    "key, written 'x25519:...'");
	/* One character short. */
	text[strlen(text) - 1] = '\0';
	assert_int_equal(keys_decode(text, KEYS_ED25519, back, &why), -1);
}

static void
test_decode_refuses_bad_keys(void **state)
{
	uint8_t k[32];
	const char *why;

	/* All zeros is a small-order X25519 point. */
	assert_int_equal(
	    keys_decode("x25519:"
			"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		KEYS_X25519, k, &why),
	    -1);
	assert_string_equal(
	    why, "not a usable X25519 public key (small order)");
	assert_int_equal(keys_decode("nokeyhere", KEYS_X25519, k, &why), -1);
	/* Last character with non-zero trailing bits: not canonical. */
	assert_int_equal(
	    keys_decode("x25519:"
			"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
		KEYS_X25519, k, &why),
	    -1);
}

/* Every key the small-order table refuses really is of small order:
 * libsodium's scalar multiplication gives the all-zero result for it. */
static void
test_small_order_table(void **state)
{
	static const char *const refused[] = {
	    "x25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "x25519:AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "x25519:4Ot6fDtBuK4WVuP68Z_EatoJjeucMrH9hmIFFl9JuAA",
	    "x25519:X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc",
	    "x25519:7P_______________________________________38",
	};
	uint8_t k[32], scalar[32], q[32], pk[32], sk[32];
	const char *why;
	int valid = 0;

	memset(scalar, 0x42, sizeof scalar);
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		const char *text = refused[i];
		uint8_t raw[32];
		size_t len;
		/* Decode without the check, then show both verdicts agree. */
		assert_int_equal(
		    sodium_base642bin(raw, 32, text + 7, strlen(text) - 7, NULL,
			&len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
		    0);
		assert_int_equal(crypto_scalarmult(q, scalar, raw), -1);
		assert_int_equal(keys_decode(text, KEYS_X25519, k, &why), -1);
	}
	for (int i = 0; i < 50; i++) {
		char text[KEYS_TEXT_MAX];
		crypto_box_keypair(pk, sk);
		keys_encode(KEYS_X25519, pk, text);
		assert_int_equal(keys_decode(text, KEYS_X25519, k, &why), 0);
	}
	/* Random bytes are a valid Ed25519 point only about half the time:
	 * the check really decompresses. */
	for (int i = 0; i < 64; i++) {
		char text[KEYS_TEXT_MAX];
		randombytes_buf(pk, sizeof pk);
		keys_encode(KEYS_ED25519, pk, text);
		valid += keys_decode(text, KEYS_ED25519, k, &why) == 0;
	}
	assert_in_range(valid, 8, 56);
}

static void
test_generate_and_read(void **state)
{
	struct keys_public pub, pub2;
	struct keys_secret *s;
	struct keys_error err;
	char path[256];
	struct stat st;

	assert_int_equal(
	    keys_generate(s_dir, "gemeente-test", KEYS_PARTY, &pub, &err), 0);
	s_path(path, sizeof path, "gemeente-test.key");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	s = keys_secret_read(path, KEYS_PARTY, &err);
	assert_non_null(s);
	assert_memory_equal(s->pub.sign, pub.sign, 32);
	assert_memory_equal(s->pub.box, pub.box, 32);
	assert_memory_equal(s->pub.transport, pub.transport, 32);
	keys_secret_destroy(&s);
	assert_null(s);
	s_path(path, sizeof path, "gemeente-test.pub");
	assert_int_equal(keys_public_read(path, KEYS_PARTY, &pub2, &err), 0);
	assert_memory_equal(&pub2.sign, pub.sign, 32);
	assert_memory_equal(&pub2.transport, pub.transport, 32);
	/* Never overwritten. */
	assert_int_equal(
	    keys_generate(s_dir, "gemeente-test", KEYS_PARTY, &pub, &err), -1);
	assert_non_null(strstr(err.msg, "already exists"));
}

static void
test_secret_mode_refused(void **state)
{
	struct keys_public pub;
	struct keys_error err;
	char path[256], want[1024];

	assert_int_equal(
	    keys_generate(s_dir, "broker", KEYS_BROKER, &pub, &err), 0);
	s_path(path, sizeof path, "broker.key");
	assert_int_equal(chmod(path, 0640), 0);
	assert_null(keys_secret_read(path, KEYS_BROKER, &err));
	snprintf(want, sizeof want,
	    "secret key file '%s' is accessible by group or others (mode "
	    "0640); refusing to use it. Fix with: chmod 600 '%s'",
	    path, path);
	assert_string_equal(err.msg, want);
	assert_int_equal(keys_secret_check_mode(path, &err), -1);
	assert_int_equal(chmod(path, 0604), 0);
	assert_int_equal(keys_secret_check_mode(path, &err), -1);
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(keys_secret_check_mode(path, &err), 0);
	{
		struct keys_secret *s =
		    keys_secret_read(path, KEYS_BROKER, &err);
		assert_non_null(s);
		assert_memory_equal(s->pub.sign, pub.sign, 32);
		keys_secret_destroy(&s);
	}
}

static void
test_public_file_errors(void **state)
{
	struct keys_public pub;
	struct keys_error err;
	char path[256];

	s_write("dup.pub", "sign: x\nsign: y\n", 0644);
	s_path(path, sizeof path, "dup.pub");
	assert_int_equal(keys_public_read(path, KEYS_PARTY, &pub, &err), -1);
	assert_int_equal(err.line, 2);
	assert_string_equal(err.msg, "'sign' is given twice (first on line 1)");

	s_write("bad.pub",
	    "# comment\n\nsign: x25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
	    0644);
	s_path(path, sizeof path, "bad.pub");
	assert_int_equal(keys_public_read(path, KEYS_PARTY, &pub, &err), -1);
	assert_int_equal(err.line, 3);
	assert_int_equal(err.col, 7);
	assert_string_equal(err.msg,
	    "sign key: wrong key type: this field needs an Ed25519 key, "
	    "written 'ed25519:...'");

	s_write("unknown.pub", "signing: ed25519:x\n", 0644);
	s_path(path, sizeof path, "unknown.pub");
	assert_int_equal(keys_public_read(path, KEYS_PARTY, &pub, &err), -1);
	assert_int_equal(err.line, 1);
}

static int
s_teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_roundtrip),
	    cmocka_unit_test(test_decode_refuses_bad_keys),
	    cmocka_unit_test(test_small_order_table),
	    cmocka_unit_test(test_generate_and_read),
	    cmocka_unit_test(test_secret_mode_refused),
	    cmocka_unit_test(test_public_file_errors),
	};

	if (sodium_init() < 0 || mkdtemp(s_dir) == NULL)
		return 1;
	return cmocka_run_group_tests(tests, NULL, s_teardown);
}
