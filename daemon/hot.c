/*
 * hot: a ring of the messages accepted last, indexed by seq % slots; a
 * slot answers only for the seq it holds.  Envelopes and receipts are
 * copied into one ring of bytes, written in order and overwritten oldest
 * first, so the cache holds its bound in memory however the allocator
 * lays out everything else (kept in buffers of their own, long-lived
 * among a million short-lived envelopes, they pinned pages all over the
 * heap).  It never reads or writes the store.
 */
#include "hot.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* An entry in the order it was written: where its bytes are. */
struct s_written {
	uint64_t seq;
	size_t at, len;
};

struct hot {
	struct hot_msg *slot; /* by seq % nslots */
	size_t nslots;
	uint8_t *ring; /* max_bytes, allocated at the first put */
	size_t cap;
	size_t head;             /* where the next entry goes (or at 0) */
	struct s_written *order; /* nslots, oldest at `first` */
	size_t first, count;
	size_t bytes; /* of the entries the slots hold */
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
	h->order = calloc(slots, sizeof(*h->order));
	if (h->slot == NULL || h->order == NULL) {
		hot_destroy(&h);
		return NULL;
	}
	h->nslots = slots;
	h->cap = max_bytes;
	h->max_one = max_one;
	return h;
}

void
hot_destroy(struct hot **hp)
{
	struct hot *h;

	if (hp == NULL || *hp == NULL)
		return;
	h = *hp;
	free(h->slot);
	free(h->order);
	free(h->ring);
	free(h);
	*hp = NULL;
}

/* Empties a slot (its bytes stay in the ring, unused). */
static void
s_drop(struct hot *h, struct hot_msg *x)
{
	if (x->seq == 0)
		return;
	h->bytes -= x->envelope_len + x->receipt_len + x->names_len;
	memset(x, 0, sizeof(*x));
}

static const struct s_written *
s_oldest(const struct hot *h)
{
	return h->count > 0 ? &h->order[h->first] : NULL;
}

/* Forgets the oldest entry written (its slot, unless that holds another
 * seq by now); there must be one. */
static void
s_drop_oldest(struct hot *h)
{
	const struct s_written *w = &h->order[h->first];
	struct hot_msg *x = &h->slot[w->seq % h->nslots];

	if (x->seq == w->seq)
		s_drop(h, x);
	h->first = (h->first + 1) % h->nslots;
	h->count--;
}

void
hot_put(struct hot *h, const struct store_msg *m)
{
	size_t need = m->envelope_len + m->receipt_len, at, names = 0, o;
	struct hot_msg *x = &h->slot[m->seq % h->nslots];
	const struct s_written *w;

	s_drop(h, x);
	if (m->n_recipients > STORE_MAX_RECIPIENTS)
		return;
	for (size_t i = 0; i < m->n_recipients; i++)
		names += strnlen(m->recipients[i], STORE_NAME_MAX) + 1 +
		    strnlen(m->agreements[i], STORE_NAME_MAX) + 1;
	need += names;
	if (m->seq == 0 || need > h->max_one)
		return;
	if (h->ring == NULL && (h->ring = malloc(h->cap)) == NULL)
		return;
	/* Entries lie in the ring in the order they were written, from
	 * the oldest on: those after head are older than those before. */
	at = h->head;
	if (at + need > h->cap) {
		/* To the start: what lies between head and the end goes. */
		while ((w = s_oldest(h)) != NULL && w->at >= at)
			s_drop_oldest(h);
		at = 0;
	}
	while ((w = s_oldest(h)) != NULL && w->at >= at && w->at < at + need)
		s_drop_oldest(h);
	if (h->count == h->nslots)
		s_drop_oldest(h);
	if (m->envelope_len > 0)
		memcpy(h->ring + at, m->envelope, m->envelope_len);
	if (m->receipt_len > 0)
		memcpy(
		    h->ring + at + m->envelope_len, m->receipt, m->receipt_len);
	o = at + m->envelope_len + m->receipt_len;
	x->names = (const char *)h->ring + o;
	for (size_t k = 0; k < 2; k++)
		for (size_t i = 0; i < m->n_recipients; i++) {
			const char *v =
			    k == 0 ? m->recipients[i] : m->agreements[i];
			size_t n = strnlen(v, STORE_NAME_MAX);
			memcpy(h->ring + o, v, n);
			h->ring[o + n] = '\0';
			o += n + 1;
		}
	x->names_len = names;
	x->n_recipients = m->n_recipients;
	x->seq = m->seq;
	x->expires_ms = m->expires_ms;
	x->accepted_ms = m->accepted_ms;
	memcpy(x->id, m->id, STORE_ID_LEN);
	x->notify_delivered = m->notify_delivered;
	text_copy(x->sender, sizeof x->sender, m->sender);
	text_copy(x->type, sizeof x->type, m->type);
	text_copy(x->case_ref, sizeof x->case_ref, m->case_ref);
	x->envelope = h->ring + at;
	x->envelope_len = m->envelope_len;
	x->receipt = h->ring + at + m->envelope_len;
	x->receipt_len = m->receipt_len;
	h->order[(h->first + h->count) % h->nslots] =
	    (struct s_written){m->seq, at, need};
	h->count++;
	h->head = at + need;
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

void
hot_meta(const struct hot_msg *x, struct store_msg *m)
{
	const char *p = x->names;

	m->seq = x->seq;
	memcpy(m->id, x->id, STORE_ID_LEN);
	memcpy(m->sender, x->sender, sizeof m->sender);
	memcpy(m->type, x->type, sizeof m->type);
	memcpy(m->case_ref, x->case_ref, sizeof m->case_ref);
	m->accepted_ms = x->accepted_ms;
	m->expires_ms = x->expires_ms;
	m->notify_delivered = x->notify_delivered;
	m->n_recipients = x->n_recipients;
	for (size_t k = 0; k < 2; k++)
		for (size_t i = 0; i < x->n_recipients; i++) {
			size_t n = strlen(p);
			char *to = k == 0 ? m->recipients[i] : m->agreements[i];
			memcpy(to, p, n + 1);
			p += n + 1;
		}
	m->envelope = NULL;
	m->envelope_len = 0;
	m->receipt = NULL;
	m->receipt_len = 0;
	m->case_until_ms = 0;
	m->from_reserve = false;
}
