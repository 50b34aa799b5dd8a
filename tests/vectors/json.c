/*
 * json: recursive-descent reader for the committed test vectors.  Not a
 * general JSON library: no floats, no \u escapes beyond ASCII; malformed
 * input aborts the test with a message.
 */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct s_in {
	const char *p, *end;
};

static void
s_die(const char *what)
{
	fprintf(stderr, "json: %s\n", what);
	abort();
}

static void *
s_xalloc(size_t n)
{
	void *p = calloc(1, n > 0 ? n : 1);

	if (p == NULL)
		s_die("out of memory");
	return p;
}

static void
s_ws(struct s_in *in)
{
	while (in->p < in->end &&
	    (*in->p == ' ' || *in->p == '\n' || *in->p == '\t' ||
		*in->p == '\r'))
		in->p++;
}

static char *
s_string(struct s_in *in)
{
	size_t cap = 16, n = 0;
	char *s = s_xalloc(cap);

	if (in->p >= in->end || *in->p != '"')
		s_die("expected a string");
	in->p++;
	while (in->p < in->end && *in->p != '"') {
		char c = *in->p++;

		if (c == '\\') {
			if (in->p >= in->end)
				s_die("bad escape");
			c = *in->p++;
			if (c == 'n')
				c = '\n';
			else if (c == 't')
				c = '\t';
			else if (c == 'u') {
				unsigned v = 0;

				for (int i = 0; i < 4; i++) {
					char h = in->p < in->end ? *in->p++ : 0;

					v = v * 16 +
					    (unsigned)(h >= 'a' ? h - 'a' + 10
						    : h >= 'A'  ? h - 'A' + 10
								: h - '0');
				}
				if (v > 0x7f)
					s_die("non-ASCII \\u escape");
				c = (char)v;
			}
		}
		if (n + 2 > cap) {
			char *t;

			cap *= 2;
			t = realloc(s, cap);
			if (t == NULL)
				s_die("out of memory");
			s = t;
		}
		s[n++] = c;
	}
	if (in->p >= in->end)
		s_die("unterminated string");
	in->p++;
	s[n] = '\0';
	return s;
}

static struct json *s_value(struct s_in *in, int depth);

static void
s_push(struct json *j, char *key, struct json *v)
{
	j->items = realloc(j->items, (j->n + 1) * sizeof *j->items);
	j->keys = realloc(j->keys, (j->n + 1) * sizeof *j->keys);
	if (j->items == NULL || j->keys == NULL)
		s_die("out of memory");
	j->items[j->n] = v;
	j->keys[j->n] = key;
	j->n++;
}

static struct json *
s_value(struct s_in *in, int depth)
{
	struct json *j = s_xalloc(sizeof *j);

	if (depth > 32)
		s_die("nested too deeply");
	s_ws(in);
	if (in->p >= in->end)
		s_die("unexpected end");
	if (*in->p == '{' || *in->p == '[') {
		char close = *in->p == '{' ? '}' : ']';

		j->type = close == '}' ? JSON_OBJ : JSON_ARR;
		in->p++;
		s_ws(in);
		if (in->p < in->end && *in->p == close) {
			in->p++;
			return j;
		}
		for (;;) {
			char *key = NULL;

			s_ws(in);
			if (j->type == JSON_OBJ) {
				key = s_string(in);
				s_ws(in);
				if (in->p >= in->end || *in->p++ != ':')
					s_die("expected ':'");
			}
			s_push(j, key, s_value(in, depth + 1));
			s_ws(in);
			if (in->p < in->end && *in->p == ',') {
				in->p++;
				continue;
			}
			if (in->p < in->end && *in->p == close) {
				in->p++;
				return j;
			}
			s_die("expected ',' or a closing bracket");
		}
	}
	if (*in->p == '"') {
		j->type = JSON_STR;
		j->str = s_string(in);
	} else if (*in->p >= '0' && *in->p <= '9') {
		j->type = JSON_NUM;
		while (in->p < in->end && *in->p >= '0' && *in->p <= '9')
			j->num = j->num * 10 + (uint64_t)(*in->p++ - '0');
	} else if (in->end - in->p >= 4 && memcmp(in->p, "true", 4) == 0) {
		j->type = JSON_BOOL;
		j->b = true;
		in->p += 4;
	} else if (in->end - in->p >= 5 && memcmp(in->p, "false", 5) == 0) {
		j->type = JSON_BOOL;
		in->p += 5;
	} else if (in->end - in->p >= 4 && memcmp(in->p, "null", 4) == 0) {
		j->type = JSON_NULL;
		in->p += 4;
	} else {
		s_die("unexpected character");
	}
	return j;
}

struct json *
json_load(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct s_in in;
	struct json *j;
	char *buf;
	long n;

	if (f == NULL) {
		perror(path);
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return NULL;
	}
	buf = s_xalloc((size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	in.p = buf;
	in.end = buf + n;
	j = s_value(&in, 0);
	s_ws(&in);
	if (in.p != in.end)
		s_die("trailing data");
	free(buf);
	return j;
}

void
json_destroy(struct json **j)
{
	if (j == NULL || *j == NULL)
		return;
	for (size_t i = 0; i < (*j)->n; i++) {
		json_destroy(&(*j)->items[i]);
		free((*j)->keys[i]);
	}
	free((*j)->items);
	free((*j)->keys);
	free((*j)->str);
	free(*j);
	*j = NULL;
}

const struct json *
json_get(const struct json *obj, const char *key)
{
	if (obj == NULL || obj->type != JSON_OBJ)
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (strcmp(obj->keys[i], key) == 0)
			return obj->items[i];
	return NULL;
}

const struct json *
json_must(const struct json *obj, const char *key)
{
	const struct json *v = json_get(obj, key);

	if (v == NULL) {
		fprintf(stderr, "json: missing member \"%s\"\n", key);
		abort();
	}
	return v;
}

const char *
json_str(const struct json *obj, const char *key)
{
	const struct json *v = json_must(obj, key);

	if (v->type != JSON_STR)
		s_die("expected a string member");
	return v->str;
}

uint64_t
json_num(const struct json *obj, const char *key)
{
	const struct json *v = json_must(obj, key);

	if (v->type != JSON_NUM)
		s_die("expected a number member");
	return v->num;
}

bool
json_bool(const struct json *obj, const char *key)
{
	const struct json *v = json_must(obj, key);

	if (v->type != JSON_BOOL)
		s_die("expected a boolean member");
	return v->b;
}

static int
s_nib(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	s_die("bad hex digit");
	return 0;
}

uint8_t *
json_hex_node(const struct json *node, size_t *len)
{
	size_t n;
	uint8_t *out;

	if (node->type != JSON_STR)
		s_die("expected a hex string");
	n = strlen(node->str);
	if (n % 2 != 0)
		s_die("odd hex length");
	out = s_xalloc(n / 2);
	for (size_t i = 0; i < n / 2; i++)
		out[i] = (uint8_t)(s_nib(node->str[2 * i]) * 16 +
		    s_nib(node->str[2 * i + 1]));
	*len = n / 2;
	return out;
}

uint8_t *
json_hex(const struct json *obj, const char *key, size_t *len)
{
	return json_hex_node(json_must(obj, key), len);
}

void
json_hex_exact(
    const struct json *obj, const char *key, uint8_t *out, size_t len)
{
	size_t n;
	uint8_t *p = json_hex(obj, key, &n);

	if (n != len) {
		fprintf(stderr, "json: \"%s\" is %zu bytes, want %zu\n", key, n,
		    len);
		abort();
	}
	memcpy(out, p, n);
	free(p);
}
