/*
 * audit: encodes, decodes and chains audit records.  It writes nothing
 * itself (the store does, in the same transaction as the decision it
 * records) and it never sees a payload: there is no field for one.
 */
#include "audit.h"

#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_names[] = {
    [AUDIT_ACCEPTED] = "accepted",
    [AUDIT_REFUSED] = "refused",
    [AUDIT_DELIVERED] = "delivered",
    [AUDIT_ACKNOWLEDGED] = "acknowledged",
    [AUDIT_EXPIRED] = "expired",
    [AUDIT_DEAD_LETTERED] = "dead-lettered",
    [AUDIT_REDELIVERED] = "redelivered",
    [AUDIT_PURGED] = "purged",
    [AUDIT_CONNECTED] = "connected",
    [AUDIT_DISCONNECTED] = "disconnected",
    [AUDIT_CONFIG_LOADED] = "config-loaded",
    [AUDIT_RETENTION_ENDED] = "retention-ended",
    [AUDIT_CASE_FORGOTTEN] = "case-forgotten",
};

#define S_NKINDS (sizeof s_names / sizeof s_names[0])
/* Where a record's prev hash starts, after "v1 prev=". */
#define S_PREV_OFF 8

const char *
audit_kind_name(enum audit_event_kind kind)
{
	if ((size_t)kind >= S_NKINDS || s_names[kind] == NULL)
		return "unknown";
	return s_names[kind];
}

/* A bounded writer: once it overflows, every later write is ignored and
 * `ok` stays false. */
struct s_out {
	char *buf;
	size_t len, max;
	bool ok;
};

static void
s_raw(struct s_out *o, const char *s, size_t n)
{
	if (!o->ok || o->len + n >= o->max) {
		o->ok = false;
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static bool
s_plain(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
	    c == '-';
}

/* Writes a value percent-encoded; runs of plain characters in one copy. */
static void
s_value(struct s_out *o, const char *v)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)v;

	while (*p != '\0') {
		const unsigned char *run = p;
		while (*p != '\0' && s_plain(*p))
			p++;
		if (p > run)
			s_raw(o, (const char *)run, (size_t)(p - run));
		if (*p != '\0') {
			char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			s_raw(o, esc, 3);
			p++;
		}
	}
}

static void
s_field(struct s_out *o, const char *name, const char *v)
{
	if (v[0] == '\0')
		return;
	s_raw(o, " ", 1);
	s_raw(o, name, strlen(name));
	s_raw(o, "=", 1);
	s_value(o, v);
}

static void
s_list(struct s_out *o, const char *name, const char (*v)[AUDIT_NAME_MAX + 1],
    size_t n)
{
	if (n == 0)
		return;
	s_raw(o, " ", 1);
	s_raw(o, name, strlen(name));
	s_raw(o, "=", 1);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			s_raw(o, ",", 1);
		s_value(o, v[i]);
	}
}

/* Writes " name=decimal". */
static void
s_num(struct s_out *o, const char *name, uint64_t v)
{
	char buf[20]; /* UINT64_MAX has 20 digits */
	size_t n = sizeof buf;

	do {
		buf[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	s_raw(o, " ", 1);
	s_raw(o, name, strlen(name));
	s_raw(o, "=", 1);
	s_raw(o, buf + n, sizeof buf - n);
}

/* Writes bytes as lower-case hex (public values: hashes and ids, so no
 * need for sodium_bin2hex's constant time). */
static void
s_put_hex(struct s_out *o, const uint8_t *b, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char buf[2 * AUDIT_HASH_LEN];

	for (size_t i = 0; i < n && i < AUDIT_HASH_LEN; i++) {
		buf[2 * i] = hex[b[i] >> 4];
		buf[2 * i + 1] = hex[b[i] & 15];
	}
	s_raw(o, buf, 2 * (n < AUDIT_HASH_LEN ? n : AUDIT_HASH_LEN));
}

size_t
audit_encode(
    const struct audit_event *ev, const uint8_t prev[AUDIT_HASH_LEN], char *out)
{
	return audit_encode_in(ev, prev, out, AUDIT_RECORD_MAX);
}

size_t
audit_encode_in(const struct audit_event *ev,
    const uint8_t prev[AUDIT_HASH_LEN], char *out, size_t max)
{
	struct s_out o = {.buf = out,
	    .max = max < AUDIT_RECORD_MAX ? max : AUDIT_RECORD_MAX,
	    .ok = true};
	const char *name = audit_kind_name(ev->kind);

	if (ev->n_to > AUDIT_MAX_PARTIES ||
	    ev->n_agreements > AUDIT_MAX_PARTIES)
		return 0;
	s_raw(&o, "v1 prev=", S_PREV_OFF);
	s_put_hex(&o, prev, AUDIT_HASH_LEN);
	s_num(&o, "t", ev->time_ms);
	s_raw(&o, " ev=", 4);
	s_raw(&o, name, strlen(name));
	if (ev->seq != 0)
		s_num(&o, "seq", ev->seq);
	if (ev->has_id) {
		s_raw(&o, " id=", 4);
		s_put_hex(&o, ev->id, AUDIT_ID_LEN);
	}
	s_field(&o, "from", ev->from);
	s_list(&o, "to", ev->to, ev->n_to);
	s_field(&o, "type", ev->type);
	s_field(&o, "case", ev->case_ref);
	s_field(&o, "purpose", ev->purpose);
	s_list(&o, "agr", ev->agreements, ev->n_agreements);
	if (ev->code != 0)
		s_num(&o, "code", ev->code);
	if (ev->count != 0)
		s_num(&o, "count", ev->count);
	if (!o.ok)
		return 0;
	out[o.len] = '\0';
	return o.len;
}

void
audit_event_init(
    struct audit_event *ev, enum audit_event_kind kind, uint64_t time_ms)
{
	size_t to = offsetof(struct audit_event, to);
	size_t mid = offsetof(struct audit_event, type);
	size_t agr = offsetof(struct audit_event, agreements);
	size_t end = agr + sizeof ev->agreements;

	memset(ev, 0, to);
	memset((char *)ev + mid, 0, agr - mid);
	memset((char *)ev + end, 0, sizeof(*ev) - end);
	ev->kind = kind;
	ev->time_ms = time_ms;
}

void
audit_set_prev(char *rec, size_t len, const uint8_t prev[AUDIT_HASH_LEN])
{
	struct s_out o = {
	    .buf = rec + S_PREV_OFF, .max = AUDIT_RECORD_MAX, .ok = true};

	if (len < S_PREV_OFF + 2 * AUDIT_HASH_LEN)
		return;
	s_put_hex(&o, prev, AUDIT_HASH_LEN);
}

void
audit_hash(const char *rec, size_t len, uint8_t out[AUDIT_HASH_LEN])
{
	crypto_generichash(
	    out, AUDIT_HASH_LEN, (const unsigned char *)rec, len, NULL, 0);
}

static int
s_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes one percent-encoded value of `len` bytes into out (max+1). */
static int
s_unescape(const char *v, size_t len, char *out, size_t max)
{
	size_t k = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned c = (unsigned char)v[i];
		if (c == '%') {
			int hi, lo;
			if (i + 2 >= len)
				return -1;
			hi = s_nibble(v[i + 1]);
			lo = s_nibble(v[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned)(hi << 4 | lo);
			i += 2;
		} else if (!s_plain((unsigned char)c)) {
			return -1;
		}
		if (k == max || c == 0)
			return -1;
		out[k++] = (char)c;
	}
	out[k] = '\0';
	return 0;
}

static int
s_uint(const char *v, size_t len, uint64_t *out)
{
	uint64_t x = 0;

	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

static int
s_hex(const char *v, size_t len, uint8_t *out, size_t n)
{
	size_t got = 0;

	if (len != 2 * n)
		return -1;
	return sodium_hex2bin(out, n, v, len, NULL, &got, NULL) == 0 && got == n
	    ? 0
	    : -1;
}

/* Splits a comma list into out[]. */
static int
s_split(const char *v, size_t len, char (*out)[AUDIT_NAME_MAX + 1], size_t *n)
{
	size_t start = 0;

	*n = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && v[i] != ',')
			continue;
		if (*n == AUDIT_MAX_PARTIES ||
		    s_unescape(v + start, i - start, out[*n], AUDIT_NAME_MAX) !=
			0)
			return -1;
		(*n)++;
		start = i + 1;
	}
	return 0;
}

int
audit_decode(const char *rec, size_t len, struct audit_event *ev,
    uint8_t prev[AUDIT_HASH_LEN])
{
	size_t pos = 0;
	bool have_prev = false, have_t = false, have_ev = false;

	memset(ev, 0, sizeof(*ev));
	if (len < 3 || len >= AUDIT_RECORD_MAX || memcmp(rec, "v1 ", 3) != 0)
		return -1;
	pos = 3;
	while (pos < len) {
		const char *f = rec + pos, *sp = memchr(f, ' ', len - pos);
		size_t flen = sp != NULL ? (size_t)(sp - f) : len - pos;
		const char *eq = memchr(f, '=', flen);
		size_t nlen, vlen;
		const char *v;
		uint64_t num = 0;
		int rc = 0;

		pos += flen + 1;
		if (eq == NULL)
			return -1;
		nlen = (size_t)(eq - f);
		v = eq + 1;
		vlen = flen - nlen - 1;
#define S_IS(name) (nlen == sizeof(name) - 1 && memcmp(f, name, nlen) == 0)
		if (S_IS("prev")) {
			rc = s_hex(v, vlen, prev, AUDIT_HASH_LEN);
			have_prev = true;
		} else if (S_IS("t")) {
			rc = s_uint(v, vlen, &ev->time_ms);
			have_t = true;
		} else if (S_IS("ev")) {
			rc = -1;
			for (size_t k = 1; k < S_NKINDS; k++)
				if (s_names[k] != NULL &&
				    strlen(s_names[k]) == vlen &&
				    memcmp(s_names[k], v, vlen) == 0) {
					ev->kind = (enum audit_event_kind)k;
					rc = 0;
				}
			have_ev = true;
		} else if (S_IS("seq")) {
			rc = s_uint(v, vlen, &ev->seq);
		} else if (S_IS("id")) {
			rc = s_hex(v, vlen, ev->id, AUDIT_ID_LEN);
			ev->has_id = true;
		} else if (S_IS("from")) {
			rc = s_unescape(v, vlen, ev->from, AUDIT_NAME_MAX);
		} else if (S_IS("to")) {
			rc = s_split(v, vlen, ev->to, &ev->n_to);
		} else if (S_IS("type")) {
			rc = s_unescape(v, vlen, ev->type, AUDIT_NAME_MAX);
		} else if (S_IS("case")) {
			rc = s_unescape(v, vlen, ev->case_ref, AUDIT_NAME_MAX);
		} else if (S_IS("purpose")) {
			rc = s_unescape(v, vlen, ev->purpose, AUDIT_NAME_MAX);
		} else if (S_IS("agr")) {
			rc =
			    s_split(v, vlen, ev->agreements, &ev->n_agreements);
		} else if (S_IS("code") || S_IS("count")) {
			rc = s_uint(v, vlen, &num);
			if (rc == 0 && num > UINT32_MAX)
				rc = -1;
			if (S_IS("code"))
				ev->code = (uint32_t)num;
			else
				ev->count = (uint32_t)num;
		} else {
			rc = -1;
		}
#undef S_IS
		if (rc != 0)
			return -1;
	}
	return have_prev && have_t && have_ev ? 0 : -1;
}

int
audit_verify_next(struct audit_verifier *v, const char *rec, size_t len)
{
	struct audit_event ev;
	uint8_t prev[AUDIT_HASH_LEN];

	if (v->first_bad != 0)
		return -1;
	v->records++;
	if (audit_decode(rec, len, &ev, prev) != 0 ||
	    sodium_memcmp(prev, v->head, AUDIT_HASH_LEN) != 0) {
		v->first_bad = v->records;
		return -1;
	}
	audit_hash(rec, len, v->head);
	return 0;
}
