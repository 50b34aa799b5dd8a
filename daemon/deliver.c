/*
 * deliver: hands queued messages to connected recipients within the
 * credit they granted, at most one message per (recipient, case) in
 * flight so that each case arrives in order; takes acknowledgements;
 * redelivers after the ack timeout, a retryable Nack's backoff or a
 * reconnect; and moves expired or undeliverable messages to the dead
 * letters.  It hands a session nothing while ZeroMQ still holds much for
 * it (s_backed_up).
 */
#include "broker.h"

#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "log.h"
#include "schakel_err.h"
#include "text.h"

#define S_PAGE 256
/* Entries a session may hold back behind their cases' messages in
 * flight (16 bytes each: 1 to 2 MiB a session at most); beyond it the pump
 * stops reading ahead until cases free up.  Large, so that one long case
 * (a creditor's batch about one citizen) does not keep the recipient's
 * other cases waiting behind it. */
#define S_HELD_MAX (64 * BROKER_MAX_INFLIGHT)
/* Entries the pump looks at for one session in one turn.  What it cannot
 * hand out costs as well: an entry held back is read for its case, an
 * expired one is dead-lettered (a notice and an audit record in the
 * broker's transaction).  A queue of many such entries is walked over
 * several turns, the session staying dirty, rather than in one turn (and
 * one transaction) as long as the queue. */
#define S_WALK_MAX (4 * S_PAGE)
/* Notices to senders travel through the sender's queue like messages,
 * under this type, with the encoded Notice frame as their "envelope". */
#define S_NOTICE_TYPE "schakel.notice"

static struct inflight *
s_find(struct session *s, uint64_t seq)
{
	for (size_t i = 0; i < s->ninflight; i++)
		if (s->inflight[i].seq == seq)
			return &s->inflight[i];
	return NULL;
}

static struct case_state *
s_case(struct session *s, const char *ref)
{
	return idmap_get(&s->cases, ref, strlen(ref));
}

static struct case_state *
s_case_add(struct session *s, const char *ref)
{
	struct case_state *cs = s_case(s, ref);
	void *old;

	if (cs != NULL)
		return cs;
	cs = calloc(1, sizeof(*cs));
	if (cs == NULL)
		return NULL;
	text_copy(cs->ref, sizeof cs->ref, ref);
	if (idmap_put(&s->cases, cs->ref, strlen(cs->ref), cs, &old) != 0) {
		free(cs);
		return NULL;
	}
	return cs;
}

void
deliver_rescan(struct session *s)
{
	if (!s->rescan && s->scanned > s->rescan_upto)
		s->rescan_upto = s->scanned;
	s->rescan = true;
}

/* Forgets a case with nothing in flight or held. */
static void
s_case_gc(struct session *s, struct case_state *cs)
{
	if (cs->inflight || cs->n > 0 || cs->ready)
		return;
	idmap_del(&s->cases, cs->ref, strlen(cs->ref));
	free(cs->held);
	free(cs);
}

/* Doubles the room for a case's held entries; false when memory ran
 * out. */
static bool
s_held_grow(struct case_state *cs)
{
	size_t cap = cs->cap > 0 ? 2 * cs->cap : 4;
	struct store_entry *h = realloc(cs->held, cap * sizeof(*h));

	if (h == NULL)
		return false;
	cs->held = h;
	cs->cap = cap;
	return true;
}

/* Holds an entry back behind its case's message in flight.  False when
 * the session holds all it may (or memory ran out). */
static bool
s_hold(struct session *s, struct case_state *cs, const struct store_entry *e)
{
	if (s->nheld >= S_HELD_MAX)
		return false;
	if (cs->head + cs->n == cs->cap) {
		/* Moved down only when at least half is free at the head, so
		 * each entry is moved a bounded number of times. */
		if (cs->head > 0 && cs->head >= cs->n) {
			memmove(cs->held, cs->held + cs->head,
			    cs->n * sizeof(*cs->held));
			cs->head = 0;
		} else if (!s_held_grow(cs)) {
			return false;
		}
	}
	cs->held[cs->head + cs->n++] = *e;
	s->nheld++;
	return true;
}

/* Puts a delivery that failed back in front of its case's held entries
 * (it goes again before them).  False when memory ran out. */
static bool
s_hold_front(
    struct session *s, struct case_state *cs, const struct store_entry *e)
{
	if (cs->head == 0) {
		if (cs->n == cs->cap && !s_held_grow(cs))
			return false;
		memmove(cs->held + 1, cs->held, cs->n * sizeof(*cs->held));
		cs->head = 1;
	}
	cs->held[--cs->head] = *e;
	cs->n++;
	s->nheld++;
	return true;
}

/* A case's message is no longer in flight: what it held may go. */
static void
s_case_free_up(struct session *s, const char *ref)
{
	struct case_state *cs = s_case(s, ref);

	if (cs == NULL)
		return;
	cs->inflight = false;
	if (cs->n > 0 && !cs->ready) {
		if (s->nready == s->capready) {
			size_t cap = s->capready > 0 ? 2 * s->capready : 16;
			struct case_state **r =
			    realloc(s->ready, cap * sizeof(*r));
			if (r == NULL) {
				deliver_rescan(s); /* find them again */
				return;
			}
			s->ready = r;
			s->capready = cap;
		}
		s->ready[s->nready++] = cs;
		cs->ready = true;
	}
	s_case_gc(s, cs);
	s->dirty = true;
}

/* Writes the count of a first delivery that failed (timed out, Nack'ed,
 * its session gone), which s_offer did not write, so that the next one
 * counts on from it. */
static void
s_count_failed(struct broker *b, struct session *s, const struct inflight *x)
{
	if (x->count == 1)
		(void)group_delivered(b->open, s->party, x->seq, 1);
}

/* What the groups not yet answered recorded about a queue entry:
 * whether one acknowledged it (the pump passes over it then), and the
 * delivery count they store (*count raised to it).  The writer's group
 * counts until it is finished, also once committed: a page of the queue
 * read before its commit became visible may still be in use, and
 * passing over an entry that is gone, or taking the larger of two
 * counts, is right either way. */
static bool
s_marks(
    const struct broker *b, const char *party, uint64_t seq, uint32_t *count)
{
	bool acked = false;
	uint32_t n = 0;

	group_marks(b->open, party, seq, &acked, &n);
	if (b->fly != NULL)
		group_marks(b->fly, party, seq, &acked, &n);
	if (count != NULL && n > *count)
		*count = n;
	return acked;
}

static void
s_remove(struct session *s, struct inflight *x)
{
	s_case_free_up(s, x->case_ref);
	*x = s->inflight[--s->ninflight];
}

/* A delivery failed (ack timeout, a retryable Nack's backoff over): its
 * count is kept and it goes again first of its case. */
static void
s_retry(struct broker *b, struct session *s, struct inflight *x)
{
	struct case_state *cs = s_case(s, x->case_ref);
	struct store_entry e = {.seq = x->seq, .deliveries = x->count};

	s_count_failed(b, s, x);
	if (cs == NULL || !s_hold_front(s, cs, &e))
		deliver_rescan(s);
	s_remove(s, x);
	s->dirty = true;
}

/* Lets go of every held entry (a rescan finds them again). */
static void
s_unhold_all(struct session *s)
{
	struct case_state **gone = NULL;
	size_t ngone = 0;

	if (s->cases.len > 0)
		gone = calloc(s->cases.len, sizeof(*gone));
	for (size_t i = 0; i < s->cases.cap; i++) {
		struct case_state *cs;
		if (s->cases.keys == NULL || s->cases.keys[i] == NULL)
			continue;
		cs = s->cases.vals[i];
		cs->head = cs->n = 0;
		cs->ready = false;
		if (!cs->inflight && gone != NULL)
			gone[ngone++] = cs;
	}
	/* Not while walking the map: a delete moves its entries. */
	for (size_t i = 0; i < ngone; i++)
		s_case_gc(s, gone[i]);
	free(gone);
	s->nheld = 0;
	s->nready = 0;
}

void
deliver_free(struct session *s)
{
	for (size_t i = 0; i < s->cases.cap; i++) {
		struct case_state *cs;
		if (s->cases.keys == NULL || s->cases.keys[i] == NULL)
			continue;
		cs = s->cases.vals[i];
		free(cs->held);
		free(cs);
	}
	idmap_free(&s->cases);
	free(s->ready);
	s->ready = NULL;
	s->nready = s->capready = s->nheld = 0;
}

void
deliver_credit(struct broker *b, struct session *s, uint32_t n)
{
	uint64_t want = (uint64_t)s->credit + n;
	size_t need;

	if (want > BROKER_MAX_CREDIT)
		want = BROKER_MAX_CREDIT;
	s->credit = (uint32_t)want;
	need = s->ninflight + s->credit;
	if (need > BROKER_MAX_INFLIGHT)
		need = BROKER_MAX_INFLIGHT;
	if (need > s->capinflight) {
		struct inflight *x = realloc(s->inflight, need * sizeof(*x));
		if (x == NULL) {
			s->credit = (uint32_t)(s->capinflight - s->ninflight);
			return;
		}
		s->inflight = x;
		s->capinflight = need;
	}
	s->dirty = true;
	(void)b;
}

void
deliver_notify(struct broker *b, const struct store_msg *m)
{
	for (size_t i = 0; i < m->n_recipients; i++) {
		struct session *s = broker_session(b, m->recipients[i]);
		if (s != NULL)
			s->dirty = true;
	}
}

void
deliver_forget(struct broker *b, struct session *s)
{
	for (size_t i = 0; i < s->ninflight; i++)
		if (!s->gone || s->inflight[i].tx != s->tx_ok)
			s_count_failed(b, s, &s->inflight[i]);
	s->ninflight = 0;
	s->credit = 0;
}

/* Records a decision about one message for one recipient. */
static void
s_audit(struct broker *b, enum audit_event_kind kind, const char *recipient,
    const struct store_msg *m, uint32_t code, uint32_t count)
{
	struct audit_event ev;

	audit_event_init(&ev, kind, b->now_ms);
	ev.code = code;
	ev.count = count;
	broker_audit_about(&ev, m, recipient);
	broker_audit(b, &ev);
}

/* Queues a Notice for the sender of `m` about `recipient`. */
static void
s_notice(struct broker *b, const struct store_msg *m, const char *recipient,
    enum frame_notice_kind kind, uint32_t code)
{
	struct store_txn *t = broker_txn(b);
	struct frame f = {.kind = FRAME_NOTICE};
	struct codec_buf buf = {0};
	struct store_msg n = {0};
	int rc;

	if (t == NULL || strcmp(m->type, S_NOTICE_TYPE) == 0)
		return; /* no notices about notices */
	n.seq = broker_next_seq(b);
	store_take_seq(t, n.seq);
	env_new_id(n.id);
	text_copy(n.sender, sizeof n.sender, m->sender);
	text_copy(n.type, sizeof n.type, S_NOTICE_TYPE);
	/* Its own "case", so it never waits behind the sender's cases. */
	snprintf(n.case_ref, sizeof n.case_ref, "notice-%llu",
	    (unsigned long long)n.seq);
	n.accepted_ms = b->now_ms;
	n.expires_ms = b->now_ms + b->conf->broker.limits.dedup_window * 1000;
	n.n_recipients = 1;
	/* A full store still tells the sender what became of its message,
	 * like it still records the dead letter. */
	n.from_reserve = true;
	text_copy(n.recipients[0], sizeof n.recipients[0], m->sender);
	snprintf(n.agreements[0], sizeof n.agreements[0], "-");
	f.u.notice.kind = kind;
	memcpy(f.u.notice.message_id, m->id, STORE_ID_LEN);
	text_copy(f.u.notice.recipient, sizeof f.u.notice.recipient, recipient);
	f.u.notice.time_ms = b->now_ms;
	f.u.notice.code = code;
	f.u.notice.store_seq = n.seq;
	frame_notice_sign(&f.u.notice, b->keys->sign_sk);
	rc = frame_encode(&f, &buf);
	if (rc != SCHAKEL_OK) {
		log_warnx("cannot encode a notice: %s", schakel_errname(rc));
		return;
	}
	n.envelope = buf.data;
	n.envelope_len = buf.len;
	if (store_put(t, &n, n.expires_ms) != STORE_OK)
		log_warnx("store: cannot queue a notice for %s: %s", m->sender,
		    store_error(b->store));
	else
		deliver_notify(b, &n);
	codec_buf_clear(&buf);
}

/* Until when a dead letter of `m` for `recipient` is kept: the retention
 * of the agreement that let the recipient have it; the dedup window
 * when that agreement is gone from the configuration. */
static uint64_t
s_keep_until(
    const struct broker *b, const struct store_msg *m, const char *recipient)
{
	const struct conf_agreement *ag = NULL;
	uint64_t days_ms;

	for (size_t i = 0; i < m->n_recipients && ag == NULL; i++)
		if (strcmp(m->recipients[i], recipient) == 0)
			ag = conf_agreement_by_id(b->conf, m->agreements[i]);
	days_ms = ag != NULL ? (uint64_t)ag->retention_days * 86400000
			     : b->conf->broker.limits.dedup_window * 1000;
	return b->now_ms + days_ms;
}

/* Moves `m` from the recipient's queue to its dead letters, records it
 * and tells the sender: as expired (NOTICE_NON_DELIVERY) when `expired`,
 * else as dead-lettered with `code`.  A message no longer queued for the
 * recipient is left alone. */
static void
s_dead_as(struct broker *b, const char *recipient, const struct store_msg *m,
    uint32_t code, bool expired)
{
	struct store_txn *t = broker_txn(b);
	uint64_t until = s_keep_until(b, m, recipient);
	int rc = t != NULL
	    ? store_dead_letter(t, recipient, m->seq, code, b->now_ms, until)
	    : STORE_ERROR;

	if (rc == STORE_NOT_FOUND)
		return;
	if (rc != STORE_OK) {
		log_warnx("store: cannot dead-letter seq=%llu: %s",
		    (unsigned long long)m->seq, store_error(b->store));
		return;
	}
	/* Marked in the open group as taken off the queue, so that an Ack
	 * of it later in this turn (s_marks) is not taken too: the broker's
	 * transaction is not committed yet, and the queue as stored still
	 * has it.  Applied after the dead letter, the mark's removal finds
	 * nothing to remove. */
	(void)group_ack(b->open, recipient, m->seq);
	s_audit(b, expired ? AUDIT_EXPIRED : AUDIT_DEAD_LETTERED, recipient, m,
	    code, 0);
	b->stats.dead_lettered[code < 64 ? code : 0]++;
	s_notice(b, m, recipient,
	    expired ? FRAME_NOTICE_NON_DELIVERY : FRAME_NOTICE_DEAD_LETTERED,
	    code);
	log_info("dead-lettered seq=%llu recipient=%s code=%s",
	    (unsigned long long)m->seq, recipient, schakel_errname((int)code));
}

/* s_dead_as for the broker's own decisions: EXPIRED is an expiry. */
static void
s_dead(struct broker *b, const char *recipient, const struct store_msg *m,
    uint32_t code)
{
	s_dead_as(b, recipient, m, code, code == SCHAKEL_E_EXPIRED);
}

/* How long a message Nack'ed with a retryable code waits before it goes
 * again: a second after a first delivery, doubling with each, at most
 * the ack timeout (with the defaults 1, 2, 4, ... 60 s: some four
 * minutes before the tenth delivery).  Sent again at once, a recipient
 * whose own database is down for a moment would have its
 * max_deliveries used up, and the message dead-lettered, within
 * milliseconds. */
static uint64_t
s_backoff_ms(const struct broker *b, uint32_t count)
{
	uint64_t cap = b->conf->broker.limits.ack_timeout * 1000, ms = 1000;

	for (uint32_t i = 1; i < count && ms < cap; i++)
		ms *= 2;
	return ms < cap ? ms : cap;
}

/* Whether `seq` is in the stored queue of `party`. */
static bool
s_queued(struct broker *b, const char *party, uint64_t seq)
{
	struct store_entry e;
	size_t n = 0;

	return seq > 0 &&
	    store_queue(b->store, party, seq - 1, &e, 1, &n) == STORE_OK &&
	    n == 1 && e.seq == seq;
}

/* Reads the message of entry `e` into *m (all its metadata), with
 * m->envelope and m->receipt pointing at copies the caller frees
 * (*envelope, *receipt) or into the hot cache.  The cache is asked only
 * for an entry just read from the queue, whose message is certainly
 * stored; the message of a held entry may have gone since.  Returns
 * false when the message is not stored. */
static bool
s_read(struct broker *b, const struct store_entry *e, bool from_held,
    struct store_msg *m, uint8_t **envelope, uint8_t **receipt)
{
	const struct hot_msg *h = from_held ? NULL : hot_get(b->hot, e->seq);

	if (h != NULL) {
		hot_meta(h, m);
		m->envelope = h->envelope;
		m->envelope_len = h->envelope_len;
		m->receipt = h->receipt;
		m->receipt_len = h->receipt_len;
		return true;
	}
	return store_get(b->store, e->seq, m, envelope, receipt) == STORE_OK;
}

enum s_offered {
	S_USED,    /* handed out: a credit used */
	S_PASSED,  /* not handed out, nothing to keep (gone, dead, dropped) */
	S_HELD,    /* held back behind its case */
	S_NO_ROOM, /* could not be held back: stop reading ahead */
};

/* Tries to hand one queue entry to the session.  An entry `from_held`
 * is the oldest held by its case, which has nothing in flight. */
static enum s_offered
s_offer(struct broker *b, struct session *s, const struct store_entry *e,
    bool from_held)
{
	struct store_msg m;
	uint8_t *envelope = NULL, *receipt = NULL;
	struct frame f = {.kind = FRAME_DELIVER};
	struct case_state *cs;
	uint32_t stored = e->deliveries, count;
	enum s_offered used = S_PASSED;
	/* Sent alone, a delivery that goes out counts one more at once;
	 * in a bundle, when the bundle goes (s_transmit). */
	uint64_t tx = s->tx_ok;

	/* Only a rescan reads entries in flight. */
	if (!from_held && e->seq <= s->rescan_upto && s_find(s, e->seq) != NULL)
		return S_PASSED;
	/* An entry read from the store counts the deliveries not stored
	 * yet too; one held back has its count from its last delivery. */
	if (s_marks(b, s->party, e->seq, from_held ? NULL : &stored))
		return S_PASSED;
	/* A held entry may have been acknowledged or dead-lettered since it
	 * was read, and that stored: on another connection of the party, or
	 * by a late Ack after the ack timeout put it back here.  Its message
	 * is still there while other recipients hold it. */
	if (from_held && !s_queued(b, s->party, e->seq))
		return S_PASSED;
	count = stored + 1;
	if (!s_read(b, e, from_held, &m, &envelope, &receipt))
		return S_PASSED;
	cs = s_case(s, m.case_ref);
	if (!from_held && cs != NULL && (cs->inflight || cs->n > 0)) {
		used = s_hold(s, cs, e) ? S_HELD : S_NO_ROOM;
		goto out;
	}
	/* Its state records the message in flight (made before it goes). */
	cs = s_case_add(s, m.case_ref);
	if (cs == NULL) {
		used = S_NO_ROOM;
		goto out;
	}
	if (strcmp(m.type, S_NOTICE_TYPE) == 0) {
		/* A notice no one took in time is simply dropped. */
		if (m.expires_ms <= b->now_ms) {
			(void)group_ack(b->open, s->party, e->seq);
			goto out;
		}
		broker_send_raw(b, &s->peer, m.envelope, m.envelope_len);
		goto sent;
	}
	if (m.expires_ms <= b->now_ms) {
		s_dead(b, s->party, &m, SCHAKEL_E_EXPIRED);
		goto out;
	}
	if (count > b->conf->broker.limits.max_deliveries) {
		s_dead(b, s->party, &m, SCHAKEL_E_DELIVERY_FAILED);
		goto out;
	}
	/* A first delivery is not written: most are acknowledged, and the
	 * pump then has nothing to commit.  The count is written when the
	 * delivery fails (s_count_failed), so none goes out while the store
	 * cannot take a write; a redelivery's is written before it goes. */
	if (count == 1 && b->txn_broken) {
		used = S_NO_ROOM;
		goto out;
	}
	if (count > 1 &&
	    group_delivered(b->open, s->party, e->seq, count) != SCHAKEL_OK)
		goto out;
	f.u.deliver.store_seq = e->seq;
	f.u.deliver.delivery_count = count;
	f.u.deliver.envelope.data = m.envelope;
	f.u.deliver.envelope.len = m.envelope_len;
	f.u.deliver.receipt.data = m.receipt;
	f.u.deliver.receipt.len = m.receipt_len;
	broker_send(b, &s->peer, &f);
sent:
	s->last_sent_ms = b->now_ms;
	{
		struct inflight *x = &s->inflight[s->ninflight++];
		x->seq = e->seq;
		x->count = count;
		x->tx = tx;
		x->notice = strcmp(m.type, S_NOTICE_TYPE) == 0;
		x->deadline_ms =
		    b->now_ms + b->conf->broker.limits.ack_timeout * 1000;
		memcpy(x->case_ref, m.case_ref, sizeof x->case_ref);
	}
	cs->inflight = true;
	s->credit--;
	b->stats.delivered++;
	used = S_USED;
out:
	if (cs != NULL && used != S_USED)
		s_case_gc(s, cs);
	free(envelope);
	free(receipt);
	return used;
}

/* Whether ZeroMQ holds more than BROKER_UNSENT_SOFT for the session's
 * connection (or its client reads nothing: it is being dropped).  Its
 * deliveries wait then, however much credit it granted: a recipient
 * that reads slowly takes them from ZeroMQ's queue at its own pace, and
 * what waits there stays a few bundles, not a credit's worth of the
 * largest messages. */
static bool
s_backed_up(const struct session *s)
{
	return s->slow || s->gone ||
	    (s->acct != NULL &&
		transport_account_unsent(s->acct) > BROKER_UNSENT_SOFT);
}

static bool
s_can_send(const struct session *s)
{
	return s->credit > 0 && s->ninflight < s->capinflight &&
	    !s_backed_up(s);
}

/* Hands out what cases that freed up held, oldest first per case, each
 * entry looked at taken from *walk (S_WALK_MAX). */
static void
s_pump_ready(struct broker *b, struct session *s, size_t *walk)
{
	size_t i = 0;

	while (i < s->nready && s_can_send(s) && *walk > 0) {
		struct case_state *cs = s->ready[i];
		while (
		    cs->n > 0 && !cs->inflight && s_can_send(s) && *walk > 0) {
			struct store_entry e = cs->held[cs->head];
			cs->head++;
			cs->n--;
			s->nheld--;
			(*walk)--;
			if (s_offer(b, s, &e, true) == S_NO_ROOM) {
				cs->head--;
				cs->n++;
				s->nheld++;
				break;
			}
		}
		if (cs->n > 0 && !cs->inflight)
			break; /* no credit or walk left: it stays first */
		cs->ready = false;
		i++;
		s_case_gc(s, cs);
	}
	if (i > 0) {
		memmove(s->ready, s->ready + i,
		    (s->nready - i) * sizeof(*s->ready));
		s->nready -= i;
	}
}

static void
s_pump(struct broker *b, struct session *s)
{
	struct store_entry page[S_PAGE];
	size_t walk = S_WALK_MAX;
	bool stop = false;

	/* Without a rescan, only what was queued after the last look can be
	 * new: the pump walks neither the messages in flight nor those held
	 * again. */
	if (s->rescan) {
		s_unhold_all(s);
		if (s->scanned > s->rescan_upto)
			s->rescan_upto = s->scanned;
		s->scanned = 0;
		s->rescan = false;
	}
	s_pump_ready(b, s, &walk);
	while (!stop && s_can_send(s) && walk > 0) {
		size_t n = 0, want = walk < S_PAGE ? walk : S_PAGE;
		if (store_queue(b->store, s->party, s->scanned, page, want,
			&n) != STORE_OK ||
		    n == 0)
			break;
		for (size_t i = 0; i < n && s_can_send(s); i++) {
			walk--;
			if (s_offer(b, s, &page[i], false) == S_NO_ROOM) {
				stop = true; /* met again when cases free up */
				break;
			}
			s->scanned = page[i].seq;
		}
		if (n < want)
			break;
	}
	/* At its bound, the walk goes on in the next turn, without an idle
	 * wait before it. */
	if (walk == 0 && !stop && s_can_send(s)) {
		b->pump_more = true;
		return;
	}
	/* Held back by what ZeroMQ holds for it: it stays dirty, and
	 * deliver_pump goes on once that is written out (a later turn;
	 * the broker waits at most 100 ms for traffic). */
	if (s_backed_up(s))
		return;
	s->dirty = false;
}

void
deliver_pump(struct broker *b)
{
	/* Acknowledgements go with the open group: while it holds
	 * BROKER_ACKS_MAX more of them than flowing traffic brings (the
	 * writer still busy with the group before), nothing more goes out,
	 * else a recipient taking a backlog grows the group, and the
	 * writer's transaction, with it.  The sessions stay dirty: the pump
	 * goes on after the hand-over. */
	b->pump_more = false;
	if (b->open->nacks >= BROKER_ACKS_MAX + b->acks_flowing) {
		if (!b->pump_waiting)
			b->stats.pump_waits++;
		b->pump_waiting = true;
		return;
	}
	b->pump_waiting = false;
	for (size_t i = 0; i < b->sessions.cap; i++) {
		struct session *s;
		if (b->sessions.keys == NULL || b->sessions.keys[i] == NULL)
			continue;
		s = b->sessions.vals[i];
		if (s->dirty && s->credit > 0 && !s_backed_up(s))
			s_pump(b, s);
	}
}

/* `seq` was acknowledged or dead-lettered on a connection of `party`
 * where it was not in flight: the party's receiving session, where it
 * may be, lets go of it, so that its case goes on at once instead of
 * after the ack timeout (and then sending it again). */
static void
s_let_go(struct broker *b, const char *party, uint64_t seq)
{
	struct session *r = broker_session(b, party);
	struct inflight *y = r != NULL ? s_find(r, seq) : NULL;

	if (y != NULL)
		s_remove(r, y);
}

/* An Ack: checked against the stored message (its metadata is what the
 * audit record and a delivered notice need), then recorded; the queue
 * entry goes when the group is stored. */
static void
s_ack(struct broker *b, struct session *s, const struct frame_ack *a,
    struct inflight *x)
{
	struct store_msg m;
	const struct hot_msg *h;
	bool notice = x != NULL && x->notice, known;

	if (s_marks(b, s->party, a->store_seq, NULL)) {
		/* Acknowledged before, not stored yet. */
		if (x != NULL)
			s_remove(s, x);
		return;
	}
	/* Most Acks come while the message is in the hot cache (all of
	 * them in the benchmark's batches): its metadata is there, and a
	 * store read was 3,100 instructions.  One found there may be gone
	 * from the store by now; it is then in flight here or queued for
	 * this recipient, or the Ack is dropped below, as for a message
	 * not found. */
	h = hot_get(b->hot, a->store_seq);
	if (h != NULL)
		hot_meta(h, &m);
	known = h != NULL ||
	    store_get(b->store, a->store_seq, &m, NULL, NULL) == STORE_OK;
	/* A message is acknowledged by its id; a notice (stored under an id
	 * of its own, and acknowledged with the id of the message it is
	 * about) only by a session it was handed to.  One not in flight
	 * here must be queued for this recipient. */
	if (!notice &&
	    (!known || memcmp(m.id, a->message_id, STORE_ID_LEN) != 0))
		return;
	if (x == NULL && !s_queued(b, s->party, a->store_seq))
		return;
	/* What was read here goes with it: the writer does not read it
	 * again (2,100 instructions a message). */
	if ((known ? group_ack_msg(b->open, s->party, &m)
		   : group_ack(b->open, s->party, a->store_seq)) != SCHAKEL_OK)
		return;
	if (x != NULL)
		s_remove(s, x);
	else
		s_let_go(b, s->party, a->store_seq);
	s->dirty = true;
	if (!known || strcmp(m.type, S_NOTICE_TYPE) == 0)
		return;
	s_audit(b, AUDIT_ACKNOWLEDGED, s->party, &m, 0, 0);
	b->stats.acked++;
	stats_observe(
	    &b->stats.delivery, (double)(b->now_ms - m.accepted_ms) / 1000.0);
	if (m.notify_delivered)
		s_notice(b, &m, s->party, FRAME_NOTICE_DELIVERED, 0);
}

void
deliver_ack(
    struct broker *b, struct session *s, const struct frame *f, bool nack)
{
	const struct frame_ack *a = &f->u.ack;
	struct inflight *x = s_find(s, a->store_seq);
	struct store_msg m;

	if (!nack) {
		s_ack(b, s, a, x);
		return;
	}
	if (s_marks(b, s->party, a->store_seq, NULL)) {
		/* Acknowledged or dead-lettered before, not stored yet. */
		if (x != NULL)
			s_remove(s, x);
		return;
	}
	if (store_get(b->store, a->store_seq, &m, NULL, NULL) != STORE_OK)
		return;
	/* A Nack is checked like an Ack (s_ack), but one of a delivery in
	 * flight here is taken by its seq alone: a recipient that cannot
	 * decode the envelope does not know its id. */
	if (x == NULL &&
	    (strcmp(m.type, S_NOTICE_TYPE) == 0 ||
		memcmp(m.id, a->message_id, STORE_ID_LEN) != 0))
		return;
	/* Not for this party (its sender knows seq and id from the
	 * receipt), or no longer queued for it: nothing to do, and no
	 * transaction of the broker's own (which waits for the writer) nor
	 * a walk of the queue for it. */
	if (x == NULL && !s_queued(b, s->party, a->store_seq))
		return;
	s->dirty = true;
	if (schakel_err_retryable((int)a->code)) {
		/* It stays in flight, its case waiting, until the timers
		 * send it again (s_retry) after the backoff. */
		if (x != NULL)
			x->deadline_ms = b->now_ms + s_backoff_ms(b, x->count);
		else /* not in flight here: found again from the head */
			deliver_rescan(s);
		return;
	}
	/* The envelope is bad for this recipient: no retry helps.  Dead-
	 * lettered with the recipient's code, never as an expiry (that is
	 * the broker's to decide). */
	if (x != NULL)
		s_remove(s, x);
	else
		s_let_go(b, s->party, a->store_seq);
	s_dead_as(b, s->party, &m,
	    a->code != 0 ? a->code : SCHAKEL_E_DELIVERY_FAILED, false);
}

/* Rounds of a sweep per call: at most this many times the batch. */
#define S_SWEEP_ROUNDS 16

/* Dead-letters (or, for notices, drops) the expired messages in seqs[]
 * for every recipient that has them queued.  One still in flight at a
 * recipient is looked at again after the ack timeout: if its Ack does
 * not come and the recipient stays away, it must still expire. */
static void
s_expire_batch(
    struct broker *b, struct store_txn *t, const uint64_t *seqs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct store_msg m;
		bool again = false;
		if (store_get(b->store, seqs[i], &m, NULL, NULL) != STORE_OK)
			continue; /* removed meanwhile */
		for (size_t r = 0; r < m.n_recipients; r++) {
			struct session *s = broker_session(b, m.recipients[r]);
			if (s != NULL && s_find(s, m.seq) != NULL)
				again = true;
			else if (strcmp(m.type, S_NOTICE_TYPE) == 0)
				(void)store_ack(t, m.recipients[r], m.seq);
			else
				s_dead(
				    b, m.recipients[r], &m, SCHAKEL_E_EXPIRED);
		}
		if (again &&
		    store_expire_later(t,
			b->now_ms + b->conf->broker.limits.ack_timeout * 1000,
			m.seq) != STORE_OK)
			log_warnx("store: cannot index seq=%llu again: %s",
			    (unsigned long long)m.seq, store_error(b->store));
	}
}

/* One round of a sweep: takes a batch of due entries into the open
 * transaction and acts on each; *n tells how many it took. */
typedef int (*s_round_fn)(struct broker *b, struct store_txn *t, size_t *n);

#define S_SWEEP_BATCH 256

/* How many cases one round looks at, and forgets at most. */
#define S_CASES_LOOK (4 * S_SWEEP_BATCH)

/* Runs rounds until one takes less than a full batch (at most
 * S_SWEEP_ROUNDS).  Whether anything is due (`flag`, store_due) is read
 * first: a sweep with nothing to do takes no write transaction, which
 * would wait for the writer thread's group and stall the pipeline once
 * a second; a look that finds nothing commits nothing. */
static void
s_sweep(struct broker *b, unsigned flag, s_round_fn round, const char *what)
{
	bool opened = b->txn == NULL;
	unsigned due = 0;
	struct store_txn *t;
	size_t n = S_SWEEP_BATCH, total = 0;

	if (opened &&
	    store_due(b->store, b->now_ms,
		flag == STORE_DUE_CASES ? S_CASES_LOOK : 0, &due) == STORE_OK &&
	    (due & flag) == 0)
		return;
	t = broker_txn(b);

	for (int i = 0; t != NULL && n == S_SWEEP_BATCH && i < S_SWEEP_ROUNDS;
	     i++) {
		if (round(b, t, &n) != STORE_OK) {
			log_warnx("store: cannot read %s: %s", what,
			    store_error(b->store));
			return;
		}
		total += n;
	}
	/* Nothing due: no commit (and no fsync) for an empty look. */
	if (t != NULL && total == 0 && opened)
		broker_txn_drop(b);
}

static int
s_expire_round(struct broker *b, struct store_txn *t, size_t *n)
{
	uint64_t seqs[S_SWEEP_BATCH];
	int rc = store_take_expired(t, b->now_ms, seqs, S_SWEEP_BATCH, n);

	if (rc == STORE_OK)
		s_expire_batch(b, t, seqs, *n);
	return rc;
}

void
deliver_expire(struct broker *b)
{
	s_sweep(b, STORE_DUE_EXPIRED, s_expire_round, "the expiry index");
}

static int
s_retention_round(struct broker *b, struct store_txn *t, size_t *n)
{
	struct store_dead due[S_SWEEP_BATCH];
	int rc = store_take_dead_due(t, b->now_ms, due, S_SWEEP_BATCH, n);

	for (size_t i = 0; rc == STORE_OK && i < *n; i++) {
		struct store_msg m;
		bool known =
		    store_get(b->store, due[i].seq, &m, NULL, NULL) == STORE_OK;
		if (store_purge(t, due[i].recipient, due[i].seq) != STORE_OK)
			continue;
		if (known)
			s_audit(b, AUDIT_RETENTION_ENDED, due[i].recipient, &m,
			    due[i].code, 0);
		log_info("removed dead letter seq=%llu recipient=%s "
			 "(its agreement's retention ended)",
		    (unsigned long long)due[i].seq, due[i].recipient);
	}
	return rc;
}

static int
s_cases_round(struct broker *b, struct store_txn *t, size_t *n)
{
	static char refs[S_SWEEP_BATCH][STORE_NAME_MAX + 1];
	int rc = store_forget_cases(
	    t, b->now_ms, S_CASES_LOOK, refs, S_SWEEP_BATCH, n);

	for (size_t i = 0; rc == STORE_OK && i < *n; i++) {
		struct audit_event ev = {
		    .kind = AUDIT_CASE_FORGOTTEN, .time_ms = b->now_ms};
		text_copy(ev.case_ref, sizeof ev.case_ref, refs[i]);
		broker_audit(b, &ev);
	}
	if (rc == STORE_OK && *n > 0)
		log_info("forgot the participants of %zu cases (the "
			 "retention of their agreements ended)",
		    *n);
	return rc;
}

void
deliver_retention(struct broker *b)
{
	s_sweep(b, STORE_DUE_DEAD, s_retention_round,
	    "the dead letters' retention");
}

void
deliver_forget_cases(struct broker *b)
{
	s_sweep(b, STORE_DUE_CASES, s_cases_round, "the cases' retention");
}

void
deliver_timers(struct broker *b)
{
	struct session *drop[64];
	size_t ndrop = 0;
	uint64_t hb = b->conf->broker.limits.heartbeat * 1000;

	for (size_t i = 0; i < b->peers.cap; i++) {
		struct session *s;
		if (b->peers.keys == NULL || b->peers.keys[i] == NULL)
			continue;
		s = b->peers.vals[i];
		for (size_t k = 0; k < s->ninflight;) {
			if (s->inflight[k].deadline_ms <= b->now_ms) {
				s_retry(b, s, &s->inflight[k]);
			} else {
				k++;
			}
		}
		if (b->now_ms > s->last_seen_ms + 3 * hb) {
			if (ndrop < 64)
				drop[ndrop++] = s;
			continue;
		}
		if (b->now_ms >= s->last_sent_ms + hb)
			broker_ping(b, s);
	}
	for (size_t i = 0; i < ndrop; i++)
		broker_drop(b, drop[i], "no traffic for three heartbeats");
}
