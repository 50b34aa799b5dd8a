/*
 * wire: reads protobuf's wire format just far enough to prove that a
 * message stays inside its limits, so that no decoder allocates for a
 * peer's oversized or malformed input.  It builds nothing itself; a
 * decoder that passes a visitor is handed each checked field.
 */
#include "wire.h"

#include <stdbool.h>
#include <string.h>

#include "schakel_err.h"

#define S_MAX_FIELDS 32

static int
s_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;

	/* Nearly every tag and length fits one byte. */
	if (*p < end && **p < 0x80) {
		*v = *(*p)++;
		return SCHAKEL_OK;
	}

	for (int shift = 0; shift < 64; shift += 7) {
		uint8_t b;

		if (*p >= end)
			return SCHAKEL_E_MALFORMED;
		b = *(*p)++;
		/* The tenth byte may only carry the top bit of a u64. */
		if (shift == 63 && b > 1)
			return SCHAKEL_E_MALFORMED;
		r |= (uint64_t)(b & 0x7f) << shift;
		/* Only minimal encodings: a last byte of zero after others is
		 * padding, which protobuf-c refuses in lengths (found by
		 * fuzzing) and no honest encoder writes. */
		if (b == 0 && shift > 0)
			return SCHAKEL_E_MALFORMED;
		if (!(b & 0x80)) {
			*v = r;
			return SCHAKEL_OK;
		}
	}
	return SCHAKEL_E_MALFORMED;
}

/* True when all n bytes are in 0x20..0x7e.  Eight at a time: a word has
 * a byte below 0x20 when (w - 0x20..20) & ~w & 0x80..80 is nonzero, and
 * one above 0x7e when ((w + 0x01..01) | w) & 0x80..80 is. */
static bool
s_printable(const uint8_t *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, high = ones * 0x80;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, sizeof w);
		if (((w - ones * 0x20) & ~w & high) ||
		    (((w + ones) | w) & high))
			return false;
	}
	for (; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return false;
	return true;
}

static const struct wire_field *
s_find(const struct wire_msg *m, uint64_t num, size_t *idx)
{
	/* Most tables list fields 1..n in order: try the direct slot. */
	if (num >= 1 && num <= m->nfields && m->fields[num - 1].num == num) {
		*idx = (size_t)num - 1;
		return &m->fields[num - 1];
	}
	for (size_t i = 0; i < m->nfields; i++)
		if (m->fields[i].num == num) {
			*idx = i;
			return &m->fields[i];
		}
	return NULL;
}

int
wire_check(const struct wire_msg *m, const uint8_t *buf, size_t len, int depth)
{
	return wire_walk(m, buf, len, depth, NULL, NULL);
}

int
wire_walk(const struct wire_msg *m, const uint8_t *buf, size_t len, int depth,
    wire_visit_fn visit, void *ctx)
{
	const uint8_t *p, *end;
	uint32_t counts[S_MAX_FIELDS] = {0};
	int oneofs = 0;
	int rc;

	if (depth <= 0 || m->nfields > S_MAX_FIELDS)
		return SCHAKEL_E_MALFORMED;
	/* An absent bytes field arrives as (NULL, 0); NULL + 0 is undefined
	 * in C, so an empty message returns before any pointer arithmetic. */
	if (len == 0)
		return SCHAKEL_OK;
	p = buf;
	end = buf + len;
	while (p < end) {
		const struct wire_field *f;
		uint64_t key, v;
		unsigned wt;
		size_t idx;

		rc = s_varint(&p, end, &key);
		if (rc)
			return rc;
		wt = (unsigned)(key & 7);
		f = s_find(m, key >> 3, &idx);
		/* Unknown fields are refused: everything a party signs must be
		 * something the broker and the recipients understand. */
		if (f == NULL)
			return SCHAKEL_E_MALFORMED;
		if (f->num >= m->oneof_min && f->num <= m->oneof_max &&
		    ++oneofs > 1)
			return SCHAKEL_E_MALFORMED;
		if (++counts[idx] > f->max_count)
			return f->max_count == 1 ? SCHAKEL_E_MALFORMED
						 : SCHAKEL_E_TOO_LARGE;
		switch (f->kind) {
		case WIRE_U64:
		case WIRE_U32:
		case WIRE_BOOL:
			if (wt != 0)
				return SCHAKEL_E_MALFORMED;
			rc = s_varint(&p, end, &v);
			if (rc)
				return rc;
			if (f->kind == WIRE_U32 && v > UINT32_MAX)
				return SCHAKEL_E_MALFORMED;
			if (f->kind == WIRE_BOOL && v > 1)
				return SCHAKEL_E_MALFORMED;
			if (visit != NULL) {
				rc = visit(ctx, f->num, v, NULL, 0);
				if (rc)
					return rc;
			}
			break;
		case WIRE_LEN:
		case WIRE_STR:
		case WIRE_MSG:
			if (wt != 2)
				return SCHAKEL_E_MALFORMED;
			rc = s_varint(&p, end, &v);
			if (rc)
				return rc;
			if (v > (uint64_t)(end - p))
				return SCHAKEL_E_MALFORMED;
			if (v > f->max_len)
				return SCHAKEL_E_TOO_LARGE;
			/* Printable ASCII only: no NUL can cut a C string short
			 * of what was signed, no control byte reaches a log. */
			if (f->kind == WIRE_STR && !s_printable(p, (size_t)v))
				return SCHAKEL_E_BAD_FIELD;
			if (f->kind == WIRE_MSG) {
				rc =
				    wire_check(f->sub, p, (size_t)v, depth - 1);
				if (rc)
					return rc;
			}
			if (visit != NULL) {
				rc = visit(ctx, f->num, 0, p, (size_t)v);
				if (rc)
					return rc;
			}
			p += v;
			break;
		}
	}
	return SCHAKEL_OK;
}
