/*
 * group: a group commit's writes, recorded by the broker thread and
 * applied to a store transaction later, by the writer thread (writer.c)
 * or by the broker thread itself (broker_txn).  Writes are packed into
 * blocks that never move; audit records are encoded when recorded and
 * chained when applied (the chain's head is known only then).  A
 * submission carries its "accepted" record, chained only if the store
 * takes it; otherwise the writer encodes its refusal then.
 */
#include "broker.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "schakel_err.h"
#include "text.h"

#define S_BLOCK (128 * 1024)
/* Blocks a group keeps for the next one; more are freed. */
#define S_SPARE_MAX 8

/* The prev of a record encoded before it is chained (group_apply writes
 * the real one). */
static const uint8_t s_unknown[AUDIT_HASH_LEN];

/* What precedes each write in a block. */
struct s_hdr {
	uint32_t kind;
	uint32_t len;
};

static size_t
s_align(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* The pending messages: 5.8 KiB a slot (room for 32 recipients each
 * and a 1 KiB audit record), 11.5 MiB for the BROKER_DRAIN_MAX of a
 * group, of which a large group touches half.  Mapped apart, so that
 * group_trim can give them back when the traffic pauses. */
static void *
s_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

#define S_PEND_BYTES (BROKER_DRAIN_MAX * sizeof(struct pending))

int
group_init(struct group *g, uint8_t *head)
{
	memset(g, 0, sizeof(*g));
	g->pend = s_map(S_PEND_BYTES);
	g->bodies = calloc(BROKER_DRAIN_MAX, sizeof(*g->bodies));
	g->leaves = calloc(BROKER_DRAIN_MAX, sizeof(*g->leaves));
	g->head = head;
	return g->pend != NULL && g->bodies != NULL && g->leaves != NULL ? 0
									 : -1;
}

void
group_trim(struct group *g)
{
	/* Zero pages when touched again, as mapped. */
	if (g->npend == 0 && g->pend != NULL)
		(void)madvise(g->pend, S_PEND_BYTES, MADV_DONTNEED);
}

static void
s_free_blocks(struct group_block *blk)
{
	while (blk != NULL) {
		struct group_block *next = blk->next;
		free(blk->data);
		free(blk);
		blk = next;
	}
}

void
group_free(struct group *g)
{
	for (size_t i = 0; g->pend != NULL && i < g->npend; i++) {
		free((void *)g->pend[i].msg.envelope);
		codec_buf_clear(&g->pend[i].signed_receipt);
		codec_buf_clear(&g->bodies[i]);
		while (g->pend[i].waiters != NULL) {
			struct pending_waiter *w = g->pend[i].waiters;
			g->pend[i].waiters = w->next;
			free(w);
		}
	}
	if (g->pend != NULL)
		munmap(g->pend, S_PEND_BYTES);
	free(g->bodies);
	free(g->leaves);
	idmap_free(&g->pend_ids);
	idmap_free(&g->marks);
	s_free_blocks(g->first);
	s_free_blocks(g->spare);
	memset(g, 0, sizeof(*g));
}

void
group_reset(struct group *g)
{
	size_t kept = 0;
	struct group_block *blk = g->first, *spare = g->spare;

	/* The pending messages are freed by submit_finish_group. */
	g->npend = 0;
	idmap_clear(&g->pend_ids);
	idmap_clear(&g->marks);
	for (struct group_block *s = spare; s != NULL; s = s->next)
		kept++;
	while (blk != NULL) {
		struct group_block *next = blk->next;
		if (kept < S_SPARE_MAX && blk->cap == S_BLOCK) {
			blk->used = 0;
			blk->next = spare;
			spare = blk;
			kept++;
		} else {
			free(blk->data);
			free(blk);
		}
		blk = next;
	}
	g->spare = spare;
	g->first = g->last = NULL;
	g->nops = 0;
	g->nacks = 0;
	memset(&g->applied, 0, sizeof g->applied);
	g->prepared = false;
	g->prep_code = 0;
	g->refuse_puts = false;
	g->failed = 0;
	g->audit_rc = 0;
	g->rc = 0;
}

bool
group_empty(const struct group *g)
{
	return g->nops == 0 && g->npend == 0 && g->failed == 0;
}

/* Room for a write of up to `len` bytes at the end; NULL without
 * memory.  s_done then says how much of it was used. */
static struct s_hdr *
s_room(struct group *g, size_t len)
{
	size_t need = s_align(sizeof(struct s_hdr) + len);
	struct group_block *blk = g->last;

	if (blk == NULL || blk->cap - blk->used < need) {
		if (need <= S_BLOCK && g->spare != NULL) {
			blk = g->spare;
			g->spare = blk->next;
		} else {
			size_t cap = need > S_BLOCK ? need : S_BLOCK;
			blk = calloc(1, sizeof(*blk));
			if (blk != NULL)
				blk->data = malloc(cap);
			if (blk == NULL || blk->data == NULL) {
				free(blk);
				return NULL;
			}
			blk->cap = cap;
		}
		blk->used = 0;
		blk->next = NULL;
		if (g->last != NULL)
			g->last->next = blk;
		else
			g->first = blk;
		g->last = blk;
	}
	return (struct s_hdr *)(void *)(blk->data + blk->used);
}

static void
s_done(struct group *g, struct s_hdr *h, enum group_op_kind kind, size_t len)
{
	h->kind = (uint32_t)kind;
	h->len = (uint32_t)len;
	g->last->used += s_align(sizeof(*h) + len);
	g->nops++;
}

/* The record of a submission the store took. */
static void
s_accepted_event(struct audit_event *ev, const struct pending *p)
{
	audit_event_init(ev, AUDIT_ACCEPTED, p->msg.accepted_ms);
	ev->seq = p->msg.seq;
	group_audit_about(ev, p);
	ev->n_agreements = p->msg.n_recipients;
	for (size_t r = 0; r < p->msg.n_recipients; r++)
		text_copy(ev->agreements[r], sizeof ev->agreements[r],
		    p->msg.agreements[r]);
}

void
group_accepted(struct pending *p)
{
	struct audit_event ev;

	s_accepted_event(&ev, p);
	p->accepted_len =
	    audit_encode_in(&ev, s_unknown, p->accepted, sizeof p->accepted);
}

int
group_put(struct group *g, struct pending *p)
{
	struct s_hdr *h = s_room(g, sizeof p + AUDIT_RECORD_MAX);
	char *rec;
	size_t len;

	if (h == NULL)
		return SCHAKEL_E_NO_MEMORY;
	/* Its "accepted" record, encoded on the broker thread (ahead, by
	 * group_accepted, or here) and chained when the store took it;
	 * one refused by the store gets another record then. */
	rec = (char *)(h + 1) + sizeof p;
	len = p->accepted_len;
	if (len > 0) {
		memcpy(rec, p->accepted, len);
		rec[len] = '\0';
	} else {
		struct audit_event ev;
		s_accepted_event(&ev, p);
		len = audit_encode(&ev, s_unknown, rec);
	}
	if (len == 0)
		return SCHAKEL_E_AUDIT_FAILED;
	memcpy(h + 1, &p, sizeof p);
	s_done(g, h, GROUP_PUT, sizeof p + len);
	return SCHAKEL_OK;
}

int
group_audit(struct group *g, const struct audit_event *ev)
{
	struct s_hdr *h = s_room(g, AUDIT_RECORD_MAX);
	size_t len;

	if (h == NULL)
		return SCHAKEL_E_NO_MEMORY;
	/* Its prev is written when it is applied. */
	len = audit_encode(ev, s_unknown, (char *)(h + 1));
	if (len == 0)
		return SCHAKEL_E_AUDIT_FAILED;
	s_done(g, h, GROUP_AUDIT, len);
	return SCHAKEL_OK;
}

size_t
group_key(uint8_t *out, const char *party, uint64_t seq)
{
	size_t n = strnlen(party, STORE_NAME_MAX);

	memcpy(out, &seq, 8);
	memcpy(out + 8, party, n);
	return 8 + n;
}

/* A mark: bit 0 always set (an entry is never NULL), bit 1 for an
 * acknowledgement, from bit 2 the delivery count the group stores.  The
 * count is the count itself, not what it adds: the broker may read the
 * store before or after the group's commit becomes visible, and the
 * larger of the two is right either way. */
#define S_MARK_ACK ((uintptr_t)2)
#define S_MARK_COUNT ((uintptr_t)4)

static int
s_mark(struct group *g, enum group_op_kind kind, const uint8_t *key, size_t len,
    uint32_t count)
{
	uintptr_t mark;
	void *old;

	mark = (uintptr_t)idmap_del(&g->marks, key, len) | 1;
	if (kind == GROUP_ACK)
		mark |= S_MARK_ACK;
	else if (count > mark / S_MARK_COUNT)
		mark = (mark & (S_MARK_COUNT - 1)) |
		    (uintptr_t)count * S_MARK_COUNT;
	/* The key stays in the block until the group is reset. */
	if (idmap_put(&g->marks, key, len, (void *)mark, &old) != 0)
		return SCHAKEL_E_NO_MEMORY;
	return SCHAKEL_OK;
}

/* Records an op whose data is the key of (party, seq), and its mark. */
static int
s_keyed(struct group *g, enum group_op_kind kind, const char *party,
    uint64_t seq, uint32_t count)
{
	struct s_hdr *h = s_room(g, 8 + STORE_NAME_MAX);
	uint8_t *key;
	size_t len;

	if (h == NULL)
		return SCHAKEL_E_NO_MEMORY;
	key = (uint8_t *)(h + 1);
	len = group_key(key, party, seq);
	if (s_mark(g, kind, key, len, count) != SCHAKEL_OK)
		return SCHAKEL_E_NO_MEMORY;
	s_done(g, h, kind, len);
	return SCHAKEL_OK;
}

int
group_ack(struct group *g, const char *party, uint64_t seq)
{
	int rc = s_keyed(g, GROUP_ACK, party, seq, 0);

	if (rc == SCHAKEL_OK)
		g->nacks++;
	return rc;
}

int
group_ack_msg(struct group *g, const char *party, const struct store_msg *m)
{
	size_t n = m->n_recipients, o,
	       room = 1 + 8 + STORE_NAME_MAX + 16 + 8 + 1;
	struct s_hdr *h;
	uint8_t *d;

	if (n > STORE_MAX_RECIPIENTS)
		return SCHAKEL_E_BAD_ARGUMENT;
	for (size_t i = 0; i < n; i++)
		room += 1 + strnlen(m->recipients[i], STORE_NAME_MAX);
	h = s_room(g, room);
	if (h == NULL)
		return SCHAKEL_E_NO_MEMORY;
	d = (uint8_t *)(h + 1);
	o = group_key(d + 1, party, m->seq);
	d[0] = (uint8_t)o;
	if (s_mark(g, GROUP_ACK, d + 1, o, 0) != SCHAKEL_OK)
		return SCHAKEL_E_NO_MEMORY;
	o++;
	memcpy(d + o, m->id, STORE_ID_LEN);
	o += STORE_ID_LEN;
	memcpy(d + o, &m->expires_ms, 8);
	o += 8;
	d[o++] = (uint8_t)n;
	for (size_t i = 0; i < n; i++) {
		size_t k = strnlen(m->recipients[i], STORE_NAME_MAX);
		d[o++] = (uint8_t)k;
		memcpy(d + o, m->recipients[i], k);
		o += k;
	}
	s_done(g, h, GROUP_ACK_MSG, o);
	g->nacks++;
	return SCHAKEL_OK;
}

/* Reads a GROUP_ACK_MSG's data back: the party and what store_ack_known
 * needs of the message (only those fields of *m are set). */
static void
s_ack_msg_read(
    const uint8_t *d, char party[STORE_NAME_MAX + 1], struct store_msg *m)
{
	size_t klen = d[0], o = 1 + klen;

	memcpy(&m->seq, d + 1, 8);
	memcpy(party, d + 9, klen - 8);
	party[klen - 8] = '\0';
	memcpy(m->id, d + o, STORE_ID_LEN);
	o += STORE_ID_LEN;
	memcpy(&m->expires_ms, d + o, 8);
	o += 8;
	m->n_recipients = d[o++];
	for (size_t i = 0; i < m->n_recipients; i++) {
		size_t k = d[o++];
		memcpy(m->recipients[i], d + o, k);
		m->recipients[i][k] = '\0';
		o += k;
	}
}

int
group_delivered(
    struct group *g, const char *party, uint64_t seq, uint32_t count)
{
	return s_keyed(g, GROUP_DELIVERED, party, seq, count);
}

void
group_marks(const struct group *g, const char *party, uint64_t seq, bool *acked,
    uint32_t *count)
{
	uint8_t key[8 + STORE_NAME_MAX];
	uintptr_t mark;

	if (g->marks.len == 0)
		return;
	mark = (uintptr_t)idmap_get(&g->marks, key, group_key(key, party, seq));
	if ((mark & S_MARK_ACK) != 0)
		*acked = true;
	if (mark / S_MARK_COUNT > *count)
		*count = (uint32_t)(mark / S_MARK_COUNT);
}

bool
group_next(const struct group *g, struct group_pos *pos, struct group_op *op)
{
	const struct s_hdr *h;

	/* pos stays on the last block at its end: a write recorded later
	 * goes on from there (or in a block after it). */
	if (pos->blk == NULL) {
		pos->blk = g->first;
		pos->off = 0;
	}
	while (pos->blk != NULL && pos->off >= pos->blk->used &&
	    pos->blk->next != NULL) {
		pos->blk = pos->blk->next;
		pos->off = 0;
	}
	if (pos->blk == NULL || pos->off >= pos->blk->used)
		return false;
	h = (const struct s_hdr *)(const void *)(pos->blk->data + pos->off);
	op->kind = (enum group_op_kind)h->kind;
	op->data = (const uint8_t *)(h + 1);
	op->len = h->len;
	op->p = NULL;
	if (op->kind == GROUP_PUT)
		memcpy(&op->p, op->data, sizeof op->p);
	pos->off += s_align(sizeof(*h) + h->len);
	return true;
}

void
group_rewind(struct group *g)
{
	memset(&g->applied, 0, sizeof g->applied);
}

bool
group_again(void *arg, int rc)
{
	struct group *g = arg;

	if (rc != STORE_FULL || g->refuse_puts || g->failed != 0)
		return false;
	g->refuse_puts = true;
	group_rewind(g);
	memcpy(g->head, g->head_start, AUDIT_HASH_LEN);
	g->audit_rc = 0;
	return true;
}

/* Chains a record (its prev written here) and appends it. */
static int
s_chain(struct group *g, struct store_txn *t, char *rec, size_t len)
{
	uint8_t next[AUDIT_HASH_LEN];
	uint64_t aseq;
	int rc;

	audit_set_prev(rec, len, g->head);
	audit_hash(rec, len, next);
	rc = store_audit_append(t, (const uint8_t *)rec, len, next, &aseq);
	if (rc != STORE_OK) {
		g->audit_rc = rc;
		return rc;
	}
	memcpy(g->head, next, AUDIT_HASH_LEN);
	return STORE_OK;
}

void
group_audit_about(struct audit_event *ev, const struct pending *p)
{
	ev->has_id = true;
	memcpy(ev->id, p->msg.id, AUDIT_ID_LEN);
	text_copy(ev->from, sizeof ev->from, p->msg.sender);
	text_copy(ev->type, sizeof ev->type, p->msg.type);
	text_copy(ev->case_ref, sizeof ev->case_ref, p->msg.case_ref);
	text_copy(ev->purpose, sizeof ev->purpose, p->purpose);
	ev->n_to = p->msg.n_recipients;
	for (size_t r = 0; r < p->msg.n_recipients; r++)
		text_copy(ev->to[r], sizeof ev->to[r], p->msg.recipients[r]);
}

/* Stores a submission and records what became of it, in the same
 * transaction: its "accepted" record `rec` (group_put), or when the store
 * refuses it for another reason than a full store, a refusal.  Its code
 * goes to p->code; a refusal because the store is full is recorded by
 * the broker thread (submit_finish_group), which sums those while the
 * store stays full. */
static int
s_apply_put(struct group *g, struct store_txn *t, struct pending *p, char *rec,
    size_t len)
{
	struct audit_event ev;
	char refused[AUDIT_RECORD_MAX];
	int src;

	store_take_seq(t, p->msg.seq);
	if (g->refuse_puts) {
		p->code = SCHAKEL_E_STORE_FULL;
		return STORE_OK;
	}
	src = store_put(t, &p->msg, g->dedup_until_ms);
	if (src == STORE_OK)
		return s_chain(g, t, rec, len);
	if (src == STORE_FULL) {
		p->code = SCHAKEL_E_STORE_FULL;
		return STORE_OK; /* the transaction may go on (store.h) */
	}
	p->code = src == STORE_EXISTS ? SCHAKEL_E_DUPLICATE_ID
				      : SCHAKEL_E_UNAVAILABLE;
	audit_event_init(&ev, AUDIT_REFUSED, p->msg.accepted_ms);
	group_audit_about(&ev, p);
	ev.code = (uint32_t)p->code;
	len = audit_encode(&ev, g->head, refused);
	if (len == 0) {
		g->failed = SCHAKEL_E_AUDIT_FAILED;
		return STORE_ERROR;
	}
	return s_chain(g, t, refused, len);
}

int
group_apply(void *arg, struct store_txn *t)
{
	struct group *g = arg;
	struct group_op op;
	int rc = STORE_OK;

	if (g->failed != 0)
		return STORE_ERROR;
	if (g->audit_rc != 0)
		return g->audit_rc;
	if (g->applied.blk == NULL)
		memcpy(g->head_start, g->head, AUDIT_HASH_LEN);
	while (rc == STORE_OK && group_next(g, &g->applied, &op)) {
		struct store_msg known;
		uint64_t seq;
		char party[STORE_NAME_MAX + 1];
		uint32_t count;

		switch (op.kind) {
		case GROUP_PUT:
			rc = s_apply_put(g, t, op.p,
			    (char *)op.data + sizeof op.p,
			    op.len - sizeof op.p);
			break;
		case GROUP_AUDIT:
			rc = s_chain(g, t, (char *)op.data, op.len);
			break;
		case GROUP_ACK_MSG:
			s_ack_msg_read(op.data, party, &known);
			/* As a GROUP_ACK's. */
			(void)store_ack_known(t, party, &known);
			break;
		case GROUP_ACK:
		case GROUP_DELIVERED:
			memcpy(&seq, op.data, 8);
			memcpy(party, op.data + 8, op.len - 8);
			party[op.len - 8] = '\0';
			/* Gone meanwhile (a sweep, an earlier Ack) is
			 * fine; a failure that spoils the transaction
			 * shows at the commit. */
			if (op.kind == GROUP_ACK)
				(void)store_ack(t, party, seq);
			else
				(void)store_delivered(t, party, seq, &count);
			break;
		}
	}
	return rc;
}
