/*
 * keys: the one file that touches secret keys.  It encodes and decodes
 * key text, generates key pairs and reads key files, refusing secret key
 * files that group or others can read.  It never logs a key.
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_B64_LEN 43    /* base64url, no padding, of 32 bytes */
#define S_FILE_MAX 4096 /* a key file is a few lines */
#define S_NAMES 3

static const char *const s_names[S_NAMES] = {"sign", "box", "transport"};

static void s_err(struct keys_error *err, unsigned line, unsigned col,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
s_err(struct keys_error *err, unsigned line, unsigned col, const char *fmt, ...)
{
	va_list ap;

	err->line = line;
	err->col = col;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
}

static const char *
s_prefix(enum keys_alg alg, bool secret)
{
	if (alg == KEYS_ED25519)
		return secret ? "ed25519-secret:" : "ed25519:";
	return secret ? "x25519-secret:" : "x25519:";
}

static void
s_encode(const char *prefix, const uint8_t key[KEYS_BYTES],
    char out[static KEYS_TEXT_MAX])
{
	size_t plen = strlen(prefix);

	memcpy(out, prefix, plen);
	sodium_bin2base64(out + plen, KEYS_TEXT_MAX - plen, key, KEYS_BYTES,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void
keys_encode(enum keys_alg alg, const uint8_t key[KEYS_BYTES],
    char out[static KEYS_TEXT_MAX])
{
	s_encode(s_prefix(alg, false), key, out);
}

/* Decodes `len` bytes of prefix+base64 text into 32 bytes, requiring the
 * canonical encoding so that one key has exactly one spelling. */
static int
s_decode(const char *text, size_t len, const char *prefix,
    uint8_t key[KEYS_BYTES], const char **why)
{
	size_t plen = strlen(prefix), binlen = 0;
	char again[KEYS_TEXT_MAX];
	const char *colon = memchr(text, ':', len);

	if (colon == NULL) {
		*why = "a key starts with its type, e.g. 'ed25519:' or "
		       "'x25519:'";
		return -1;
	}
	if ((size_t)(colon + 1 - text) != plen ||
	    memcmp(text, prefix, plen) != 0) {
		*why = strcmp(prefix, "ed25519:") == 0
		    ? "wrong key type: this field needs an Ed25519 key, "
		      "written 'ed25519:...'"
		    : strcmp(prefix, "x25519:") == 0
		    ? "wrong key type: this field needs an X25519 key, "
		      "written 'x25519:...'"
		    : "wrong key type for this field";
		return -1;
	}
	for (size_t i = plen; i < len; i++) {
		char ch = text[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			(ch >= '0' && ch <= '9') || ch == '-' || ch == '_')) {
			*why = "the key may only use the base64url characters "
			       "A-Z, a-z, 0-9, '-' and '_'";
			return -1;
		}
	}
	if (len - plen != S_B64_LEN ||
	    sodium_base642bin(key, KEYS_BYTES, text + plen, len - plen, NULL,
		&binlen, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    binlen != KEYS_BYTES) {
		*why =
		    "the key must be 43 characters of base64url (no padding) "
		    "after the type";
		return -1;
	}
	s_encode(prefix, key, again);
	if (strlen(again) != len || memcmp(again, text, len) != 0) {
		*why = "the key is not in canonical base64url form";
		return -1;
	}
	return 0;
}

/* X25519 public keys of small order (with the top bit cleared, which
 * X25519 ignores): 0, 1, the two points of order 8, and p-1, p, p+1.
 * A shared secret with any of them is predictable. */
static const uint8_t s_small_order[][KEYS_BYTES] = {
    {0},
    {1},
    {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa,
	0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd,
	0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
    {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55,
	0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86,
	0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
};

/* Checks that a decoded public key is one a peer could really hold.
 * This runs for every key of every party at each load, so it avoids
 * scalar multiplications: a table look-up for X25519, point
 * decompression (through a point addition) for Ed25519.  libsodium
 * refuses small-order Ed25519 keys again when it verifies. */
static int
s_check_public(
    enum keys_alg alg, const uint8_t key[KEYS_BYTES], const char **why)
{
	uint8_t k[KEYS_BYTES], sum[KEYS_BYTES];

	if (alg == KEYS_ED25519) {
		if (crypto_core_ed25519_add(sum, key, key) != 0) {
			*why = "not a valid Ed25519 public key";
			return -1;
		}
		return 0;
	}
	memcpy(k, key, sizeof k);
	k[KEYS_BYTES - 1] &= 0x7f;
	for (size_t i = 0; i < sizeof s_small_order / sizeof s_small_order[0];
	     i++) {
		if (memcmp(k, s_small_order[i], KEYS_BYTES) == 0) {
			*why = "not a usable X25519 public key (small order)";
			return -1;
		}
	}
	return 0;
}

int
keys_decode(const char *text, enum keys_alg alg, uint8_t key[KEYS_BYTES],
    const char **why)
{
	if (s_decode(text, strlen(text), s_prefix(alg, false), key, why) != 0)
		return -1;
	return s_check_public(alg, key, why);
}

/* One "name: value" line of a key file. */
struct s_field {
	const char *value;
	size_t len;
	unsigned line;
	unsigned col;
};

/* Splits a key file into its fields.  Only the names in s_names are
 * allowed, each at most once.  Returns 0 or -1 with *err. */
static int
s_split(const char *buf, size_t len, struct s_field fields[S_NAMES],
    struct keys_error *err)
{
	size_t pos = 0;
	unsigned line = 0;

	memset(fields, 0, sizeof(struct s_field) * S_NAMES);
	while (pos < len) {
		const char *l = buf + pos, *nl = memchr(l, '\n', len - pos);
		size_t llen = nl != NULL ? (size_t)(nl - l) : len - pos;
		size_t i = 0, nlen, vstart;
		int which = -1;

		pos += llen + (nl != NULL);
		line++;
		if (llen > 0 && l[llen - 1] == '\r')
			llen--;
		while (i < llen && (l[i] == ' ' || l[i] == '\t'))
			i++;
		if (i == llen || l[i] == '#')
			continue;
		nlen = 0;
		while (i + nlen < llen && l[i + nlen] != ':')
			nlen++;
		for (int n = 0; n < S_NAMES; n++)
			if (strlen(s_names[n]) == nlen &&
			    memcmp(l + i, s_names[n], nlen) == 0)
				which = n;
		if (which < 0 || i + nlen == llen) {
			s_err(err, line, (unsigned)i + 1,
			    "expected 'sign:', 'box:' or 'transport:' followed "
			    "by a key");
			return -1;
		}
		if (fields[which].value != NULL) {
			s_err(err, line, (unsigned)i + 1,
			    "'%s' is given twice (first on line %u)",
			    s_names[which], fields[which].line);
			return -1;
		}
		vstart = i + nlen + 1;
		while (vstart < llen && (l[vstart] == ' ' || l[vstart] == '\t'))
			vstart++;
		while (llen > vstart &&
		    (l[llen - 1] == ' ' || l[llen - 1] == '\t'))
			llen--;
		fields[which].value = l + vstart;
		fields[which].len = llen - vstart;
		fields[which].line = line;
		fields[which].col = (unsigned)vstart + 1;
	}
	return 0;
}

/* Reads a whole small file into buf; returns its length or -1. */
static ssize_t
s_read_fd(
    int fd, char *buf, size_t max, const char *path, struct keys_error *err)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = read(fd, buf + len, max - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			s_err(err, 0, 0, "cannot read '%s': %s", path,
			    strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == max) {
			s_err(err, 0, 0,
			    "'%s' is larger than %d bytes; it is not a key file",
			    path, S_FILE_MAX - 1);
			return -1;
		}
	}
	return (ssize_t)len;
}

static bool
s_wanted(enum keys_owner owner, int n)
{
	return !(owner == KEYS_BROKER && n == 1);
}

static const enum keys_alg s_algs[S_NAMES] = {
    KEYS_ED25519, KEYS_X25519, KEYS_X25519};

/* Checks that a key file holds exactly the fields its owner needs. */
static int
s_check_fields(const struct s_field fields[S_NAMES], enum keys_owner owner,
    struct keys_error *err)
{
	for (int n = 0; n < S_NAMES; n++) {
		if (s_wanted(owner, n) && fields[n].value == NULL) {
			s_err(err, 0, 0, "the key file has no '%s:' line",
			    s_names[n]);
			return -1;
		}
		if (!s_wanted(owner, n) && fields[n].value != NULL) {
			s_err(err, fields[n].line, 1,
			    "a broker key file has no '%s' key: the broker "
			    "never opens payloads",
			    s_names[n]);
			return -1;
		}
	}
	return 0;
}

int
keys_public_read(const char *path, enum keys_owner owner,
    struct keys_public *out, struct keys_error *err)
{
	char buf[S_FILE_MAX];
	struct s_field f[S_NAMES];
	uint8_t *dst[S_NAMES] = {out->sign, out->box, out->transport};
	const char *why;
	struct stat st;
	ssize_t len;
	int fd;

	memset(out, 0, sizeof(*out));
	/* Not blocking, and only a regular file: a FIFO or a device named
	 * by mistake is refused rather than waited on. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		s_err(err, 0, 0, "cannot open public key file '%s': %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		s_err(err, 0, 0, "public key file '%s' is not a regular file",
		    path);
		close(fd);
		return -1;
	}
	len = s_read_fd(fd, buf, sizeof buf, path, err);
	close(fd);
	if (len < 0)
		return -1;
	if (s_split(buf, (size_t)len, f, err) != 0)
		return -1;
	for (int n = 0; n < S_NAMES; n++) {
		if (f[n].value == NULL || !s_wanted(owner, n))
			continue;
		if (s_decode(f[n].value, f[n].len, s_prefix(s_algs[n], false),
			dst[n], &why) != 0 ||
		    s_check_public(s_algs[n], dst[n], &why) != 0) {
			s_err(err, f[n].line, f[n].col, "%s key: %s",
			    s_names[n], why);
			return -1;
		}
	}
	if (s_check_fields(f, owner, err) != 0)
		return -1;
	out->has_box = owner == KEYS_PARTY;
	return 0;
}

/* Checks an open secret key file's type and mode. */
static int
s_check_stat(const struct stat *st, const char *path, struct keys_error *err)
{
	if (!S_ISREG(st->st_mode)) {
		s_err(err, 0, 0, "secret key file '%s' is not a regular file",
		    path);
		return -1;
	}
	if ((st->st_mode & 077) != 0) {
		s_err(err, 0, 0,
		    "secret key file '%s' is accessible by group or others "
		    "(mode %04o); refusing to use it. Fix with: chmod 600 '%s'",
		    path, (unsigned)(st->st_mode & 07777), path);
		return -1;
	}
	return 0;
}

int
keys_secret_check_mode(const char *path, struct keys_error *err)
{
	struct stat st;

	memset(err, 0, sizeof(*err));
	if (stat(path, &st) != 0) {
		s_err(err, 0, 0, "cannot open secret key file '%s': %s", path,
		    strerror(errno));
		return -1;
	}
	return s_check_stat(&st, path, err);
}

void
keys_secret_destroy(struct keys_secret **sp)
{
	if (sp == NULL || *sp == NULL)
		return;
	sodium_free(*sp); /* sodium_free wipes before it frees */
	*sp = NULL;
}

/* Derives every public half from the secret halves. */
static void
s_derive(struct keys_secret *s, const uint8_t seed[KEYS_BYTES],
    enum keys_owner owner)
{
	crypto_sign_seed_keypair(s->pub.sign, s->sign_sk, seed);
	if (owner == KEYS_PARTY)
		crypto_scalarmult_base(s->pub.box, s->box_sk);
	crypto_scalarmult_base(s->pub.transport, s->transport_sk);
	s->pub.has_box = owner == KEYS_PARTY;
}

struct keys_secret *
keys_secret_read(
    const char *path, enum keys_owner owner, struct keys_error *err)
{
	struct {
		char buf[S_FILE_MAX];
		uint8_t seed[KEYS_BYTES];
	} *tmp = NULL;
	struct keys_secret *s = NULL;
	struct s_field f[S_NAMES];
	struct stat st;
	const char *why;
	ssize_t len;
	int fd;

	memset(err, 0, sizeof(*err));
	if (sodium_init() < 0) {
		s_err(err, 0, 0, "libsodium could not be initialised");
		return NULL;
	}
	/* Not blocking: s_check_stat refuses what is not a regular file. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		s_err(err, 0, 0, "cannot open secret key file '%s': %s", path,
		    errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || s_check_stat(&st, path, err) != 0) {
		if (err->msg[0] == '\0')
			s_err(err, 0, 0, "cannot stat '%s': %s", path,
			    strerror(errno));
		close(fd);
		return NULL;
	}
	tmp = sodium_malloc(sizeof(*tmp));
	s = sodium_malloc(sizeof(*s));
	if (tmp == NULL || s == NULL) {
		s_err(err, 0, 0, "out of memory reading '%s'", path);
		goto fail;
	}
	memset(s, 0, sizeof(*s));
	len = s_read_fd(fd, tmp->buf, sizeof tmp->buf, path, err);
	if (len < 0 || s_split(tmp->buf, (size_t)len, f, err) != 0)
		goto fail;
	{
		uint8_t *dst[S_NAMES] = {tmp->seed, s->box_sk, s->transport_sk};
		for (int n = 0; n < S_NAMES; n++) {
			if (f[n].value == NULL || !s_wanted(owner, n))
				continue;
			if (s_decode(f[n].value, f[n].len,
				s_prefix(s_algs[n], true), dst[n], &why) != 0) {
				s_err(err, f[n].line, f[n].col, "%s key: %s",
				    s_names[n], why);
				goto fail;
			}
		}
	}
	if (s_check_fields(f, owner, err) != 0)
		goto fail;
	s_derive(s, tmp->seed, owner);
	sodium_free(tmp);
	close(fd);
	return s;
fail:
	if (tmp != NULL)
		sodium_free(tmp);
	keys_secret_destroy(&s);
	close(fd);
	return NULL;
}

/* Writes `len` bytes to a new file `path` with `mode`; refuses to
 * overwrite.  Returns 0 or -1 with *err. */
static int
s_write_new(const char *path, mode_t mode, const char *data, size_t len,
    struct keys_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	size_t off = 0;

	if (fd < 0) {
		s_err(err, 0, 0, "cannot create '%s': %s", path,
		    errno == EEXIST ? "it already exists; keys are never "
				      "overwritten"
				    : strerror(errno));
		return -1;
	}
	/* The umask may have been looser than wanted, never stricter. */
	if (fchmod(fd, mode) != 0)
		goto fail;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		off += (size_t)n;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	s_err(err, 0, 0, "cannot write '%s': %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(path);
	return -1;
}

/* Formats a key file's text from the given keys. */
static int
s_format(char *out, size_t outlen, const char *name, enum keys_owner owner,
    bool secret, const uint8_t *const keys[S_NAMES])
{
	char text[KEYS_TEXT_MAX];
	size_t off;
	int n;

	n = snprintf(out, outlen,
	    secret ? "# schakel secret keys of %s. Keep this file private "
		     "(mode 0600); never copy it off this machine.\n"
		   : "# schakel public keys of %s.\n",
	    name);
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	off = (size_t)n;
	for (int k = 0; k < S_NAMES; k++) {
		if (!s_wanted(owner, k))
			continue;
		s_encode(s_prefix(s_algs[k], secret), keys[k], text);
		n = snprintf(
		    out + off, outlen - off, "%s: %s\n", s_names[k], text);
		if (n < 0 || (size_t)n >= outlen - off)
			return -1;
		off += (size_t)n;
	}
	sodium_memzero(text, sizeof text);
	return (int)off;
}

int
keys_generate(const char *dir, const char *name, enum keys_owner owner,
    struct keys_public *pub, struct keys_error *err)
{
	struct {
		uint8_t seed[KEYS_BYTES];
		char text[1024];
		struct keys_secret s;
	} * t;
	char path_sk[4096], path_pk[4096], text_pk[1024];
	int n, rc = -1;

	memset(err, 0, sizeof(*err));
	if (sodium_init() < 0) {
		s_err(err, 0, 0, "libsodium could not be initialised");
		return -1;
	}
	n = snprintf(path_sk, sizeof path_sk, "%s/%s.key", dir, name);
	if (n < 0 || (size_t)n >= sizeof path_sk ||
	    snprintf(path_pk, sizeof path_pk, "%s/%s.pub", dir, name) >=
		(int)sizeof path_pk) {
		s_err(err, 0, 0, "the output path is too long");
		return -1;
	}
	t = sodium_malloc(sizeof(*t));
	if (t == NULL) {
		s_err(err, 0, 0, "out of memory");
		return -1;
	}
	memset(t, 0, sizeof(*t));
	randombytes_buf(t->seed, sizeof t->seed);
	randombytes_buf(t->s.box_sk, sizeof t->s.box_sk);
	randombytes_buf(t->s.transport_sk, sizeof t->s.transport_sk);
	s_derive(&t->s, t->seed, owner);
	{
		const uint8_t *sk[S_NAMES] = {
		    t->seed, t->s.box_sk, t->s.transport_sk};
		const uint8_t *pk[S_NAMES] = {
		    t->s.pub.sign, t->s.pub.box, t->s.pub.transport};
		int sl =
		    s_format(t->text, sizeof t->text, name, owner, true, sk);
		int pl =
		    s_format(text_pk, sizeof text_pk, name, owner, false, pk);
		if (sl < 0 || pl < 0) {
			s_err(err, 0, 0, "the name is too long");
			goto out;
		}
		if (s_write_new(path_sk, 0600, t->text, (size_t)sl, err) != 0)
			goto out;
		if (s_write_new(path_pk, 0644, text_pk, (size_t)pl, err) != 0) {
			unlink(path_sk);
			goto out;
		}
	}
	*pub = t->s.pub;
	rc = 0;
out:
	sodium_free(t);
	return rc;
}
