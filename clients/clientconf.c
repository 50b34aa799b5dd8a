/*
 * clientconf: parses the client configuration file with libyaml's
 * document API and checks every value strictly: unknown or repeated keys,
 * wrong types and bad values are refused with file:line:column.  It does
 * not read secret keys (only checks the key file's mode).
 */
#include "clientconf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "keys.h"
#include "units.h"

struct s_ctx {
	const char *path;
	char dir[PATH_MAX]; /* the file's folder, "" for the current one */
	yaml_document_t *doc;
	char *err;
	size_t errlen;
};

static int s_fail(struct s_ctx *x, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int
s_fail(struct s_ctx *x, const yaml_node_t *at, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (at != NULL)
		snprintf(x->err, x->errlen, "%s:%zu:%zu: %s", x->path,
		    at->start_mark.line + 1, at->start_mark.column + 1, msg);
	else
		snprintf(x->err, x->errlen, "%s: %s", x->path, msg);
	return -1;
}

/* The scalar's text, or NULL after an error when the node is not a
 * non-empty scalar without NUL bytes. */
static const char *
s_scalar(struct s_ctx *x, const yaml_node_t *n, const char *what)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE) {
		s_fail(x, n, "%s must be a single value", what);
		return NULL;
	}
	s = (const char *)n->data.scalar.value;
	if (n->data.scalar.length == 0) {
		s_fail(x, n, "%s must not be empty", what);
		return NULL;
	}
	if (strlen(s) != n->data.scalar.length) {
		s_fail(x, n, "%s contains a NUL byte", what);
		return NULL;
	}
	return s;
}

/* Copy text into a fixed buffer or fail at `n`. */
static int
s_text(struct s_ctx *x, const yaml_node_t *n, const char *what, char *dst,
    size_t len)
{
	const char *s = s_scalar(x, n, what);

	if (s == NULL)
		return -1;
	if (strlen(s) >= len)
		return s_fail(
		    x, n, "%s is longer than %zu characters", what, len - 1);
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

/* A relative path is relative to the configuration file's folder. */
static int
s_path(struct s_ctx *x, const yaml_node_t *n, const char *what, char *dst,
    size_t len)
{
	const char *s = s_scalar(x, n, what);
	int w;

	if (s == NULL)
		return -1;
	if (s[0] == '/' || x->dir[0] == '\0')
		w = snprintf(dst, len, "%s", s);
	else
		w = snprintf(dst, len, "%s/%s", x->dir, s);
	if (w < 0 || (size_t)w >= len)
		return s_fail(x, n, "%s: the path is too long", what);
	return 0;
}

/* Party ids, purposes: 1 to 64 of a-z 0-9 . _ -, the first a letter or
 * digit (the protocol's name syntax). */
static int
s_name(struct s_ctx *x, const yaml_node_t *n, const char *what, char *dst,
    size_t len)
{
	if (s_text(x, n, what, dst, len) != 0)
		return -1;
	for (size_t i = 0; dst[i] != '\0'; i++) {
		char ch = dst[i];
		bool alnum =
		    (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');

		if (!alnum && (i == 0 || (ch != '.' && ch != '_' && ch != '-')))
			return s_fail(x, n,
			    "%s '%s': use lowercase letters, digits, '.', '_' "
			    "and '-', starting with a letter or digit",
			    what, dst);
	}
	return 0;
}

static int
s_key(struct s_ctx *x, const yaml_node_t *n, const char *what,
    enum keys_alg alg, uint8_t out[KEYS_BYTES])
{
	const char *s = s_scalar(x, n, what), *why;

	if (s == NULL)
		return -1;
	if (keys_decode(s, alg, out, &why) != 0)
		return s_fail(x, n, "%s: %s", what, why);
	return 0;
}

/* Read a key file's problem as "file:line:col: message". */
static int
s_keys_fail(struct s_ctx *x, const yaml_node_t *n, const char *file,
    const struct keys_error *ke)
{
	if (ke->line > 0)
		return s_fail(
		    x, n, "%s:%u:%u: %s", file, ke->line, ke->col, ke->msg);
	return s_fail(x, n, "%s", ke->msg);
}

/* Iterate a mapping's pairs, refusing repeated keys. */
typedef int (*s_pair_fn)(struct s_ctx *x, const char *key, const yaml_node_t *k,
    const yaml_node_t *v, void *arg);

static int
s_mapping(struct s_ctx *x, const yaml_node_t *map, const char *what,
    s_pair_fn fn, void *arg)
{
	yaml_node_pair_t *p, *q;

	if (map->type != YAML_MAPPING_NODE)
		return s_fail(
		    x, map, "%s must be a mapping of 'key: value'", what);
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
		const char *key;

		if (k == NULL || v == NULL)
			return s_fail(x, map, "broken YAML document");
		key = s_scalar(x, k, "a key");
		if (key == NULL)
			return -1;
		for (q = map->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *k2 =
			    yaml_document_get_node(x->doc, q->key);

			if (k2 != NULL && k2->type == YAML_SCALAR_NODE &&
			    strcmp((const char *)k2->data.scalar.value, key) ==
				0)
				return s_fail(x, k, "'%s' is given twice", key);
		}
		if (fn(x, key, k, v, arg) != 0)
			return -1;
	}
	return 0;
}

struct s_broker {
	struct clientconf *cc;
	const yaml_node_t *endpoint, *keys, *sign, *transport;
};

static int
s_broker_pair(struct s_ctx *x, const char *key, const yaml_node_t *k,
    const yaml_node_t *v, void *arg)
{
	struct s_broker *b = arg;

	if (strcmp(key, "endpoint") == 0)
		b->endpoint = v;
	else if (strcmp(key, "keys") == 0)
		b->keys = v;
	else if (strcmp(key, "sign") == 0)
		b->sign = v;
	else if (strcmp(key, "transport") == 0)
		b->transport = v;
	else
		return s_fail(x, k,
		    "unknown key 'broker.%s' (expected endpoint, keys, or "
		    "sign and transport)",
		    key);
	return 0;
}

static int
s_broker(struct s_ctx *x, const yaml_node_t *n, struct clientconf *cc)
{
	struct s_broker b = {cc, NULL, NULL, NULL, NULL};
	char file[PATH_MAX];
	struct keys_public pub;
	struct keys_error ke;

	if (s_mapping(x, n, "broker", s_broker_pair, &b) != 0)
		return -1;
	if (b.endpoint == NULL)
		return s_fail(x, n, "broker: 'endpoint' is missing");
	if (s_text(x, b.endpoint, "broker.endpoint", cc->endpoint,
		sizeof cc->endpoint) != 0)
		return -1;
	if (strncmp(cc->endpoint, "tcp://", 6) != 0 &&
	    strncmp(cc->endpoint, "ipc://", 6) != 0)
		return s_fail(x, b.endpoint,
		    "broker.endpoint must start with tcp:// or ipc://");
	if (b.keys != NULL && (b.sign != NULL || b.transport != NULL))
		return s_fail(x, b.keys,
		    "give either broker.keys (a .pub file) or broker.sign "
		    "and broker.transport, not both");
	if (b.keys != NULL) {
		if (s_path(x, b.keys, "broker.keys", file, sizeof file) != 0)
			return -1;
		if (keys_public_read(file, KEYS_BROKER, &pub, &ke) != 0)
			return s_keys_fail(x, b.keys, file, &ke);
		memcpy(cc->broker_sign, pub.sign, KEYS_BYTES);
		memcpy(cc->broker_transport, pub.transport, KEYS_BYTES);
		return 0;
	}
	if (b.sign == NULL || b.transport == NULL)
		return s_fail(x, n,
		    "broker: the broker's public keys are missing (give "
		    "'keys: broker.pub', or 'sign:' and 'transport:')");
	if (s_key(x, b.sign, "broker.sign", KEYS_ED25519, cc->broker_sign) !=
		0 ||
	    s_key(x, b.transport, "broker.transport", KEYS_X25519,
		cc->broker_transport) != 0)
		return -1;
	return 0;
}

struct s_top {
	struct clientconf *cc;
	const yaml_node_t *broker, *party, *key_file;
};

static int
s_top_pair(struct s_ctx *x, const char *key, const yaml_node_t *k,
    const yaml_node_t *v, void *arg)
{
	struct s_top *t = arg;
	struct clientconf *cc = t->cc;
	struct units_duration d;
	struct stat st;
	const char *s, *why;

	if (strcmp(key, "broker") == 0) {
		t->broker = v;
		return s_broker(x, v, cc);
	}
	if (strcmp(key, "party") == 0) {
		t->party = v;
		return s_name(x, v, "party", cc->party, sizeof cc->party);
	}
	if (strcmp(key, "key_file") == 0) {
		struct keys_error ke;

		t->key_file = v;
		if (s_path(x, v, "key_file", cc->key_file,
			sizeof cc->key_file) != 0)
			return -1;
		if (keys_secret_check_mode(cc->key_file, &ke) != 0)
			return s_fail(x, v, "%s", ke.msg);
		return 0;
	}
	if (strcmp(key, "peers") == 0) {
		if (s_path(x, v, "peers", cc->peers, sizeof cc->peers) != 0)
			return -1;
		if (stat(cc->peers, &st) != 0 || !S_ISDIR(st.st_mode))
			return s_fail(
			    x, v, "peers: '%s' is not a folder", cc->peers);
		return 0;
	}
	if (strcmp(key, "seen_file") == 0)
		return s_path(
		    x, v, "seen_file", cc->seen_file, sizeof cc->seen_file);
	if (strcmp(key, "purpose") == 0)
		return s_name(x, v, "purpose", cc->purpose, sizeof cc->purpose);
	if (strcmp(key, "timeout") == 0) {
		s = s_scalar(x, v, "timeout");
		if (s == NULL)
			return -1;
		if (units_parse_duration(s, false, &d, &why) != 0)
			return s_fail(x, v, "timeout: %s", why);
		if (d.seconds > 3600)
			return s_fail(x, v, "timeout: at most 1h");
		cc->timeout_ms = (int)d.seconds * 1000;
		return 0;
	}
	return s_fail(x, k,
	    "unknown key '%s' (expected broker, party, key_file, peers, "
	    "seen_file, timeout or purpose)",
	    key);
}

static int
s_document(struct s_ctx *x, struct clientconf *cc)
{
	yaml_node_t *root = yaml_document_get_root_node(x->doc);
	struct s_top t = {cc, NULL, NULL, NULL};

	if (root == NULL)
		return s_fail(x, NULL, "the file is empty");
	if (s_mapping(x, root, "the configuration", s_top_pair, &t) != 0)
		return -1;
	if (t.broker == NULL)
		return s_fail(x, root, "'broker' is missing");
	if (t.party == NULL)
		return s_fail(x, root, "'party' is missing");
	if (t.key_file == NULL)
		return s_fail(x, root, "'key_file' is missing");
	return 0;
}

int
clientconf_load(
    const char *path, struct clientconf *out, char *err, size_t errlen)
{
	struct s_ctx x = {path, "", NULL, err, errlen};
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	const char *slash;
	FILE *f;
	int rc;

	memset(out, 0, sizeof *out);
	out->timeout_ms = CLIENTCONF_DEFAULT_TIMEOUT_MS;
	slash = strrchr(path, '/');
	if (slash != NULL) {
		size_t n = (size_t)(slash - path);

		if (n >= sizeof x.dir)
			return s_fail(&x, NULL, "the path is too long");
		memcpy(x.dir, path, n);
		x.dir[n] = '\0';
		if (n == 0)
			snprintf(x.dir, sizeof x.dir, "/");
	}
	f = fopen(path, "r");
	if (f == NULL)
		return s_fail(&x, NULL, "cannot open: %s", strerror(errno));
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		return s_fail(&x, NULL, "out of memory");
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "%s:%zu:%zu: %s", path,
		    parser.problem_mark.line + 1,
		    parser.problem_mark.column + 1,
		    parser.problem != NULL ? parser.problem : "invalid YAML");
		yaml_parser_delete(&parser);
		fclose(f);
		return -1;
	}
	x.doc = &doc;
	rc = s_document(&x, out);
	if (rc == 0) {
		if (!yaml_parser_load(&parser, &extra)) {
			rc =
			    s_fail(&x, NULL, "invalid YAML after the document");
		} else {
			if (yaml_document_get_root_node(&extra) != NULL)
				rc = s_fail(&x,
				    yaml_document_get_root_node(&extra),
				    "only one YAML document is allowed");
			yaml_document_delete(&extra);
		}
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

void
clientconf_opts(const struct clientconf *cc, struct schakel_client_opts *opts)
{
	memset(opts, 0, sizeof *opts);
	opts->endpoint = cc->endpoint;
	memcpy(
	    opts->broker_transport_key, cc->broker_transport, SCHAKEL_KEY_LEN);
	memcpy(opts->broker_sign_key, cc->broker_sign, SCHAKEL_KEY_LEN);
	opts->party_id = cc->party;
	opts->key_file = cc->key_file;
	opts->peers_dir = cc->peers[0] != '\0' ? cc->peers : NULL;
	opts->timeout_ms = cc->timeout_ms;
	opts->seen_file = cc->seen_file[0] != '\0' ? cc->seen_file : NULL;
}
