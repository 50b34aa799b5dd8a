/*
 * codec: library set-up and the owned buffer type shared by the encoders.
 * Nothing here knows the wire format.
 */
#include "codec.h"

#include <stdlib.h>

#include <sodium.h>

int
codec_init(void)
{
	return sodium_init() < 0 ? SCHAKEL_E_INTERNAL : SCHAKEL_OK;
}

void
codec_buf_clear(struct codec_buf *b)
{
	if (b == NULL)
		return;
	/* Encoded messages are public by design (ciphertext, signed headers,
	 * receipts), so they are freed without wiping; secrets never live in
	 * a codec_buf. */
	free(b->data);
	b->data = NULL;
	b->len = 0;
}
