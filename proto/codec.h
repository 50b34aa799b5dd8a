/*
 * codec: what every part of the envelope codec shares: the library's
 * initialisation and the owned byte buffer its encoders return.  Include
 * this (or env.h, receipt.h, merkle.h, which include it); never include
 * protobuf-c headers outside proto/pb.c.
 */
#ifndef SCHAKEL_CODEC_H
#define SCHAKEL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "schakel_err.h"

/* An encoded message (never secret) owned by the caller; free it with
 * codec_buf_clear. */
struct codec_buf {
	uint8_t *data;
	size_t len;
};

/* Initialise libsodium; call once before any other codec function.
 * Returns SCHAKEL_OK or SCHAKEL_E_INTERNAL.  After it, every codec
 * function may be called from any thread; only a struct merkle_cache must
 * not be shared between threads without a lock. */
int codec_init(void);

/* Free the buffer's data and zero the struct; NULL-safe.  Encoded
 * messages are public, so they are not wiped. */
void codec_buf_clear(struct codec_buf *b);

#endif
