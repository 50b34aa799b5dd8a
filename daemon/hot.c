/*
 * hot: a ring of the messages accepted last, indexed by seq % slots; a
 * slot answers only for the seq it holds.  It never reads or writes the
 * store and never grows beyond the bounds it was made with.
 */
#include "hot.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

struct hot {
	struct hot_msg *slot; /* by seq % nslots */
	size_t nslots;
	size_t bytes; /* envelopes and receipts held */
	size_t max_bytes;
	size_t max_one;
};

struct hot *
hot_new(size_t slots, size_t max_bytes, size_t max_one)
{
	struct hot *h;

	assert(slots > 0 && max_one <= max_bytes);
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->slot = calloc(slots, sizeof(*h->slot));
	if (h->slot == NULL) {
		free(h);
		return NULL;
	}
	h->nslots = slots;
	h->max_bytes = max_bytes;
	h->max_one = max_one;
	return h;
}

/* Empties a slot. */
static void
s_drop(struct hot *h, struct hot_msg *x)
{
	if (x->seq == 0)
		return;
	h->bytes -= x->envelope_len + x->receipt_len;
	free(x->envelope);
	free(x->receipt);
	memset(x, 0, sizeof(*x));
}

void
hot_destroy(struct hot **hp)
{
	struct hot *h;

	if (hp == NULL || *hp == NULL)
		return;
	h = *hp;
	for (size_t i = 0; i < h->nslots; i++)
		s_drop(h, &h->slot[i]);
	free(h->slot);
	free(h);
	*hp = NULL;
}

void
hot_put(struct hot *h, const struct store_msg *m, uint8_t **envelope,
    uint8_t **receipt)
{
	size_t i = m->seq % h->nslots;
	size_t need = m->envelope_len + m->receipt_len;
	struct hot_msg *x = &h->slot[i];

	s_drop(h, x);
	if (m->seq == 0 || need > h->max_one) {
		free(*envelope);
		free(*receipt);
		*envelope = *receipt = NULL;
		return;
	}
	/* Sequence numbers only grow, so the slots after this one hold the
	 * oldest entries: those make room first. */
	for (size_t k = 1; h->bytes + need > h->max_bytes && k < h->nslots; k++)
		s_drop(h, &h->slot[(i + k) % h->nslots]);
	x->seq = m->seq;
	x->expires_ms = m->expires_ms;
	text_copy(x->type, sizeof x->type, m->type);
	text_copy(x->case_ref, sizeof x->case_ref, m->case_ref);
	x->envelope = *envelope;
	x->envelope_len = m->envelope_len;
	x->receipt = *receipt;
	x->receipt_len = m->receipt_len;
	*envelope = *receipt = NULL;
	h->bytes += need;
}

const struct hot_msg *
hot_get(const struct hot *h, uint64_t seq)
{
	const struct hot_msg *x = &h->slot[seq % h->nslots];

	return seq != 0 && x->seq == seq ? x : NULL;
}

size_t
hot_bytes(const struct hot *h)
{
	return h->bytes;
}
