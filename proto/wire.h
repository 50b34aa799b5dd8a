/*
 * wire: a protobuf wire-format walker that checks a message against a
 * table of allowed fields, counts and lengths *before* protobuf-c unpacks
 * (and allocates for) it.  Internal to the codec.
 */
#ifndef SCHAKEL_WIRE_H
#define SCHAKEL_WIRE_H

#include <stddef.h>
#include <stdint.h>

enum wire_kind {
	WIRE_U64,  /* varint, any value */
	WIRE_U32,  /* varint that fits 32 bits (also enums) */
	WIRE_BOOL, /* varint 0 or 1 */
	WIRE_LEN,  /* bytes of at most max_len */
	WIRE_STR,  /* string of at most max_len printable ASCII characters */
	WIRE_MSG,  /* embedded message checked against `sub` */
};

struct wire_msg;

struct wire_field {
	uint32_t num;
	enum wire_kind kind;
	uint32_t max_count; /* 1 for singular fields */
	uint32_t max_len;   /* WIRE_LEN and WIRE_MSG */
	const struct wire_msg *sub;
};

struct wire_msg {
	const struct wire_field *fields;
	size_t nfields;
	/* Fields of a oneof: at most one of them may appear. */
	uint32_t oneof_min, oneof_max;
};

/* Called for each top-level field once its own checks (and the walk of an
 * embedded message) passed: `v` for varints, `p`/`n` for length-delimited
 * fields (pointing into the walked buffer).  A nonzero return stops the
 * walk and is returned. */
typedef int (*wire_visit_fn)(
    void *ctx, uint32_t num, uint64_t v, const uint8_t *p, size_t n);

/* As wire_check, calling `visit` (when not NULL) for every top-level
 * field. */
int wire_walk(const struct wire_msg *m, const uint8_t *buf, size_t len,
    int depth, wire_visit_fn visit, void *ctx);

/* Walk buf[0..len) as message `m`, nested at most `depth` deep.  Returns
 * SCHAKEL_OK, SCHAKEL_E_MALFORMED (bad varint or tag, wire type that does
 * not match, unknown or repeated singular field, truncated or trailing
 * bytes), SCHAKEL_E_TOO_LARGE (a length or count over its limit) or
 * SCHAKEL_E_BAD_FIELD (a string with a byte outside 0x20..0x7e). */
int
wire_check(const struct wire_msg *m, const uint8_t *buf, size_t len, int depth);

#endif
