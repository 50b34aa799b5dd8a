/*
 * json: a small reader for the test-vector files, enough for objects,
 * arrays, ASCII strings, unsigned integers, true, false and null.  Test
 * code only: it trusts its input to be one of our committed files.
 */
#ifndef SCHAKEL_TEST_JSON_H
#define SCHAKEL_TEST_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

struct json {
	enum json_type type;
	bool b;
	uint64_t num;
	char *str;
	size_t n;            /* elements of an array or object */
	char **keys;         /* object keys */
	struct json **items; /* array elements or object values */
};

/* Parse a whole file; returns an owned tree or NULL (with a message on
 * stderr). */
struct json *json_load(const char *path);
void json_destroy(struct json **j);

/* Object member by key, or NULL. */
const struct json *json_get(const struct json *obj, const char *key);
/* Member that must exist; aborts the test program otherwise. */
const struct json *json_must(const struct json *obj, const char *key);
const char *json_str(const struct json *obj, const char *key);
uint64_t json_num(const struct json *obj, const char *key);
bool json_bool(const struct json *obj, const char *key);
/* Decode a hex string member into a new buffer (free it); *len is set. */
uint8_t *json_hex(const struct json *obj, const char *key, size_t *len);
/* Decode a hex string member of exactly `len` bytes into out. */
void json_hex_exact(
    const struct json *obj, const char *key, uint8_t *out, size_t len);
/* Same for a bare string node. */
uint8_t *json_hex_node(const struct json *node, size_t *len);

#endif
