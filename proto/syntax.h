/*
 * syntax: the character rules of schakel.v1 text fields (docs/protocol.md
 * §3), shared by the envelope and frame codecs.  Internal to the codec.
 */
#ifndef SCHAKEL_SYNTAX_H
#define SCHAKEL_SYNTAX_H

#include <stdbool.h>
#include <stddef.h>

/* Each takes the field's buffer capacity and is false for a string that
 * fills it without a terminator. */

/* 1+ of a-z 0-9 . _ -, first a letter or digit: party ids, types,
 * purposes, attribute keys, agreement ids. */
bool syntax_is_name(const char *s, size_t cap);
/* 0+ of A-Z a-z 0-9 . _ - :, first a letter or digit: case and consent
 * references. */
bool syntax_is_ref(const char *s, size_t cap);
/* 0+ of A-Z 0-9: CBS region codes. */
bool syntax_is_region(const char *s, size_t cap);
/* 0+ bytes of 0x20..0x7e. */
bool syntax_is_printable(const char *s, size_t cap);

#endif
