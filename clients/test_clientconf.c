/* Unit tests of the client configuration file: a valid file with a broker
 * .pub file and one with inline keys, relative paths, the default timeout,
 * and one test per error class with its exact file:line:column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "clientconf.h"
#include "keys.h"
#include "testutil.h"

static const char *const s_parties[] = {"gemeente-u", "kredietbank", NULL};

struct s_fx {
	char dir[256];
	char path[512];
	char err[1024];
	struct clientconf cc;
};

static int
s_setup(void **state)
{
	static struct s_fx fx;

	memset(&fx, 0, sizeof fx);
	if (tu_mkdtemp(fx.dir, sizeof fx.dir) != 0 ||
	    tu_keys(fx.dir, s_parties) != 0)
		return -1;
	snprintf(fx.path, sizeof fx.path, "%s/client.yaml", fx.dir);
	*state = &fx;
	return 0;
}

static int
s_teardown(void **state)
{
	struct s_fx *fx = *state;

	return tu_rmrf(fx->dir);
}

/* Write text as the client configuration and load it. */
static int
s_load(struct s_fx *fx, const char *text)
{
	assert_int_equal(tu_write(fx->dir, "client.yaml", text), 0);
	fx->err[0] = '\0';
	return clientconf_load(fx->path, &fx->cc, fx->err, sizeof fx->err);
}

/* Expect a refusal whose message is "PATH:LOCATION" + rest. */
static void
s_expect(struct s_fx *fx, const char *text, const char *where_and_msg)
{
	char want[1024];

	assert_int_equal(s_load(fx, text), -1);
	snprintf(want, sizeof want, "%s:%s", fx->path, where_and_msg);
	if (strncmp(fx->err, want, strlen(want)) != 0)
		fail_msg("got  '%s'\nwant '%s...'", fx->err, want);
}

static void
t_valid_pub_file(void **state)
{
	struct s_fx *fx = *state;
	struct keys_public pub;
	struct keys_error ke;
	struct schakel_client_opts o;
	char want[600];

	assert_int_equal(s_load(fx,
			     "# a client\n"
			     "broker:\n"
			     "  endpoint: tcp://127.0.0.1:7450\n"
			     "  keys: keys/broker.pub\n"
			     "party: gemeente-u\n"
			     "key_file: keys/gemeente-u.key\n"
			     "peers: keys/\n"
			     "seen_file: state/gemeente-u.seen\n"
			     "timeout: 3s\n"),
	    0);
	assert_string_equal(fx->cc.endpoint, "tcp://127.0.0.1:7450");
	assert_string_equal(fx->cc.party, "gemeente-u");
	snprintf(want, sizeof want, "%s/keys/gemeente-u.key", fx->dir);
	assert_string_equal(fx->cc.key_file, want);
	snprintf(want, sizeof want, "%s/keys/", fx->dir);
	assert_string_equal(fx->cc.peers, want);
	assert_int_equal(fx->cc.timeout_ms, 3000);
	assert_string_equal(fx->cc.purpose, "");
	snprintf(want, sizeof want, "%s/keys/broker.pub", fx->dir);
	assert_int_equal(keys_public_read(want, KEYS_BROKER, &pub, &ke), 0);
	assert_memory_equal(fx->cc.broker_sign, pub.sign, 32);
	assert_memory_equal(fx->cc.broker_transport, pub.transport, 32);
	clientconf_opts(&fx->cc, &o);
	assert_string_equal(o.endpoint, fx->cc.endpoint);
	assert_ptr_equal(o.peers_dir, fx->cc.peers);
	snprintf(want, sizeof want, "%s/state/gemeente-u.seen", fx->dir);
	assert_string_equal(o.seen_file, want);
	assert_memory_equal(o.broker_sign_key, pub.sign, 32);
}

static void
t_valid_inline_keys(void **state)
{
	struct s_fx *fx = *state;
	struct keys_public pub;
	struct keys_error ke;
	char path[600], sign[KEYS_TEXT_MAX], tr[KEYS_TEXT_MAX], yaml[1024];
	struct schakel_client_opts o;

	snprintf(path, sizeof path, "%s/keys/broker.pub", fx->dir);
	assert_int_equal(keys_public_read(path, KEYS_BROKER, &pub, &ke), 0);
	keys_encode(KEYS_ED25519, pub.sign, sign);
	keys_encode(KEYS_X25519, pub.transport, tr);
	snprintf(yaml, sizeof yaml,
	    "broker: {endpoint: 'ipc:///tmp/x', sign: %s, transport: %s}\n"
	    "party: kredietbank\n"
	    "key_file: %s/keys/kredietbank.key\n"
	    "purpose: schuldhulpverlening\n",
	    sign, tr, fx->dir);
	assert_int_equal(s_load(fx, yaml), 0);
	assert_memory_equal(fx->cc.broker_sign, pub.sign, 32);
	assert_memory_equal(fx->cc.broker_transport, pub.transport, 32);
	assert_int_equal(fx->cc.timeout_ms, CLIENTCONF_DEFAULT_TIMEOUT_MS);
	assert_string_equal(fx->cc.purpose, "schuldhulpverlening");
	assert_string_equal(fx->cc.peers, "");
	clientconf_opts(&fx->cc, &o);
	assert_null(o.peers_dir);
	assert_null(o.seen_file);
}

#define S_BROKER \
	"broker:\n" \
	"  endpoint: tcp://127.0.0.1:7450\n" \
	"  keys: keys/broker.pub\n"

static void
t_errors(void **state)
{
	struct s_fx *fx = *state;

	s_expect(fx,
	    S_BROKER "party: gemeente-u\n"
		     "key_file: keys/gemeente-u.key\n"
		     "colour: blue\n",
	    "6:1: unknown key 'colour'");
	s_expect(fx,
	    S_BROKER "  port: 7450\n"
		     "party: gemeente-u\n"
		     "key_file: keys/gemeente-u.key\n",
	    "4:3: unknown key 'broker.port'");
	s_expect(fx,
	    S_BROKER "party: gemeente-u\n"
		     "party: kredietbank\n"
		     "key_file: keys/gemeente-u.key\n",
	    "5:1: 'party' is given twice");
	s_expect(fx, "party: gemeente-u\nkey_file: keys/gemeente-u.key\n",
	    "1:1: 'broker' is missing");
	s_expect(fx, S_BROKER "key_file: keys/gemeente-u.key\n",
	    "1:1: 'party' is missing");
	s_expect(
	    fx, S_BROKER "party: gemeente-u\n", "1:1: 'key_file' is missing");
	s_expect(fx,
	    "broker:\n  endpoint: http://x\n  keys: keys/broker.pub\n"
	    "party: gemeente-u\nkey_file: keys/gemeente-u.key\n",
	    "2:13: broker.endpoint must start with tcp:// or ipc://");
	s_expect(fx,
	    "broker:\n  keys: keys/broker.pub\n"
	    "party: gemeente-u\nkey_file: keys/gemeente-u.key\n",
	    "2:3: broker: 'endpoint' is missing");
	s_expect(fx,
	    "broker:\n  endpoint: tcp://h:1\n  keys: keys/broker.pub\n"
	    "  sign: ed25519:x\n"
	    "party: gemeente-u\nkey_file: keys/gemeente-u.key\n",
	    "3:9: give either broker.keys");
	s_expect(fx,
	    "broker:\n  endpoint: tcp://h:1\n  sign: ed25519:abc\n"
	    "  transport: x25519:abc\n"
	    "party: gemeente-u\nkey_file: keys/gemeente-u.key\n",
	    "3:9: broker.sign: ");
	s_expect(fx,
	    "broker:\n  endpoint: tcp://h:1\n"
	    "party: gemeente-u\nkey_file: keys/gemeente-u.key\n",
	    "2:3: broker: the broker's public keys are missing");
	s_expect(fx,
	    "broker:\n  endpoint: tcp://h:1\n  keys: keys/nothere.pub\n"
	    "party: gemeente-u\nkey_file: keys/gemeente-u.key\n",
	    "3:9: cannot open public key file");
	s_expect(fx,
	    S_BROKER "party: Gemeente U\n"
		     "key_file: keys/gemeente-u.key\n",
	    "4:8: party 'Gemeente U': use lowercase");
	s_expect(fx,
	    S_BROKER "party: [a, b]\n"
		     "key_file: keys/gemeente-u.key\n",
	    "4:8: party must be a single value");
	s_expect(fx,
	    S_BROKER "party: gemeente-u\n"
		     "key_file: keys/gemeente-u.key\n"
		     "timeout: 10 parsecs\n",
	    "6:10: timeout: ");
	s_expect(fx,
	    S_BROKER "party: gemeente-u\n"
		     "key_file: keys/gemeente-u.key\n"
		     "peers: keys/gemeente-u.pub\n",
	    "6:8: peers: ");
	s_expect(fx,
	    S_BROKER "party: gemeente-u\n"
		     "key_file: keys/absent.key\n",
	    "5:11: ");
	s_expect(fx,
	    S_BROKER "party: gemeente-u\n"
		     "key_file: keys/gemeente-u.key\n"
		     "---\n"
		     "party: x\n",
	    "7:1: only one YAML document is allowed");
	s_expect(fx, "broker: {endpoint: tcp://h:1\n", "2:1: ");
	s_expect(fx, "- a\n- b\n", "1:1: the configuration must be a mapping");
	s_expect(fx,
	    S_BROKER "party: \"gemeente\\0u\"\n"
		     "key_file: keys/gemeente-u.key\n",
	    "4:8: party contains a NUL byte");
}

static void
t_empty_and_missing(void **state)
{
	struct s_fx *fx = *state;
	char want[600];

	assert_int_equal(s_load(fx, "# nothing\n"), -1);
	snprintf(want, sizeof want, "%s: the file is empty", fx->path);
	assert_string_equal(fx->err, want);
	assert_int_equal(clientconf_load("/nonexistent/client.yaml", &fx->cc,
			     fx->err, sizeof fx->err),
	    -1);
	assert_string_equal(fx->err,
	    "/nonexistent/client.yaml: cannot open: No such file or "
	    "directory");
}

/* A key file that others may read is refused where it is named. */
static void
t_key_mode(void **state)
{
	struct s_fx *fx = *state;
	char key[600];

	snprintf(key, sizeof key, "%s/keys/gemeente-u.key", fx->dir);
	assert_int_equal(chmod(key, 0644), 0);
	s_expect(fx,
	    S_BROKER "party: gemeente-u\n"
		     "key_file: keys/gemeente-u.key\n",
	    "5:11: ");
	assert_non_null(strstr(fx->err, "gemeente-u.key"));
	assert_int_equal(chmod(key, 0600), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_valid_pub_file),
	    cmocka_unit_test(t_valid_inline_keys),
	    cmocka_unit_test(t_errors),
	    cmocka_unit_test(t_empty_and_missing),
	    cmocka_unit_test(t_key_mode),
	};

	return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
