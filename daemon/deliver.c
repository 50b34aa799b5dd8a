/*
 * deliver: hands queued messages to connected recipients within the
 * credit they granted, at most one message per (recipient, case) in
 * flight so that each case arrives in order; takes acknowledgements;
 * redelivers after the ack timeout, a retryable Nack or a reconnect; and
 * moves expired or undeliverable messages to the dead letters.
 */
#include "broker.h"

#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "log.h"
#include "schakel_err.h"

#define S_PAGE 256
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

static void
s_remove(struct session *s, struct inflight *x)
{
	*x = s->inflight[--s->ninflight];
}

static bool
s_case_busy(const struct session *s, const char *case_ref)
{
	for (size_t i = 0; i < s->ninflight; i++)
		if (strcmp(s->inflight[i].case_ref, case_ref) == 0)
			return true;
	return false;
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
	(void)b;
	s->ninflight = 0;
	s->credit = 0;
}

/* Records a decision about one message for one recipient. */
static void
s_audit(struct broker *b, enum audit_event_kind kind, const char *recipient,
    const struct store_msg *m, uint32_t code, uint32_t count)
{
	struct audit_event ev = {.kind = kind,
	    .time_ms = b->now_ms,
	    .seq = m->seq,
	    .has_id = true,
	    .n_to = 1,
	    .code = code,
	    .count = count};

	memcpy(ev.id, m->id, AUDIT_ID_LEN);
	snprintf(ev.from, sizeof ev.from, "%s", m->sender);
	snprintf(ev.to[0], sizeof ev.to[0], "%s", recipient);
	snprintf(ev.type, sizeof ev.type, "%s", m->type);
	snprintf(ev.case_ref, sizeof ev.case_ref, "%s", m->case_ref);
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
	n.seq = store_next_seq(t);
	env_new_id(n.id);
	snprintf(n.sender, sizeof n.sender, "%s", m->sender);
	snprintf(n.type, sizeof n.type, "%s", S_NOTICE_TYPE);
	/* Its own "case", so it never waits behind the sender's cases. */
	snprintf(n.case_ref, sizeof n.case_ref, "notice-%llu",
	    (unsigned long long)n.seq);
	n.accepted_ms = b->now_ms;
	n.expires_ms = b->now_ms + b->conf->broker.limits.dedup_window * 1000;
	n.n_recipients = 1;
	snprintf(n.recipients[0], sizeof n.recipients[0], "%s", m->sender);
	snprintf(n.agreements[0], sizeof n.agreements[0], "-");
	f.u.notice.kind = kind;
	memcpy(f.u.notice.message_id, m->id, STORE_ID_LEN);
	snprintf(
	    f.u.notice.recipient, sizeof f.u.notice.recipient, "%s", recipient);
	f.u.notice.time_ms = b->now_ms;
	f.u.notice.code = code;
	f.u.notice.store_seq = n.seq;
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

static void
s_dead(struct broker *b, const char *recipient, const struct store_msg *m,
    uint32_t code)
{
	struct store_txn *t = broker_txn(b);

	if (t == NULL ||
	    store_dead_letter(t, recipient, m->seq, code, b->now_ms) !=
		STORE_OK) {
		log_warnx("store: cannot dead-letter seq=%llu: %s",
		    (unsigned long long)m->seq, store_error(b->store));
		return;
	}
	s_audit(b,
	    code == SCHAKEL_E_EXPIRED ? AUDIT_EXPIRED : AUDIT_DEAD_LETTERED,
	    recipient, m, code, 0);
	b->stats.dead_lettered[code < 64 ? code : 0]++;
	s_notice(b, m, recipient,
	    code == SCHAKEL_E_EXPIRED ? FRAME_NOTICE_NON_DELIVERY
				      : FRAME_NOTICE_DEAD_LETTERED,
	    code);
	log_info("dead-lettered seq=%llu recipient=%s code=%s",
	    (unsigned long long)m->seq, recipient, schakel_errname((int)code));
}

/* Tries to hand one queue entry to the session.  Returns true when it
 * used a credit. */
static bool
s_offer(struct broker *b, struct session *s, const struct store_entry *e)
{
	struct store_msg m;
	uint8_t *envelope = NULL, *receipt = NULL;
	struct frame f = {.kind = FRAME_DELIVER};
	struct store_txn *t;
	uint32_t count = e->deliveries + 1;
	bool used = false;

	if (s_find(s, e->seq) != NULL)
		return false;
	if (store_get(b->store, e->seq, &m, &envelope, &receipt) != STORE_OK)
		return false;
	if (s_case_busy(s, m.case_ref)) {
		s->case_waiting = true;
		goto out;
	}
	if (strcmp(m.type, S_NOTICE_TYPE) == 0) {
		/* A notice no one took in time is simply dropped. */
		t = broker_txn(b);
		if (m.expires_ms <= b->now_ms) {
			if (t != NULL)
				store_ack(t, s->party, e->seq);
			goto out;
		}
		(void)transport_send(b->tp, &s->peer, envelope, m.envelope_len);
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
	t = broker_txn(b);
	if (t == NULL ||
	    store_delivered(t, s->party, e->seq, &count) != STORE_OK)
		goto out;
	f.u.deliver.store_seq = e->seq;
	f.u.deliver.delivery_count = count;
	f.u.deliver.envelope.data = envelope;
	f.u.deliver.envelope.len = m.envelope_len;
	f.u.deliver.receipt.data = receipt;
	f.u.deliver.receipt.len = m.receipt_len;
	broker_send(b, &s->peer, &f);
sent:
	s->last_sent_ms = b->now_ms;
	{
		struct inflight *x = &s->inflight[s->ninflight++];
		x->seq = e->seq;
		x->count = count;
		x->deadline_ms =
		    b->now_ms + b->conf->broker.limits.ack_timeout * 1000;
		memcpy(x->case_ref, m.case_ref, sizeof x->case_ref);
	}
	s->credit--;
	b->stats.delivered++;
	used = true;
out:
	free(envelope);
	free(receipt);
	return used;
}

static void
s_pump(struct broker *b, struct session *s)
{
	struct store_entry page[S_PAGE];
	uint64_t after = s->rescan ? 0 : s->scanned;

	/* Without a rescan, only what was queued after the last look can be
	 * new: the pump does not walk the messages in flight again. */
	s->rescan = false;
	while (s->credit > 0 && s->ninflight < s->capinflight) {
		size_t n = 0;
		if (store_queue(b->store, s->party, after, page, S_PAGE, &n) !=
			STORE_OK ||
		    n == 0)
			break;
		for (size_t i = 0;
		     i < n && s->credit > 0 && s->ninflight < s->capinflight;
		     i++) {
			after = page[i].seq;
			if (after > s->scanned)
				s->scanned = after;
			s_offer(b, s, &page[i]);
		}
		if (n < S_PAGE)
			break;
	}
	s->dirty = false;
}

void
deliver_pump(struct broker *b)
{
	for (size_t i = 0; i < b->sessions.cap; i++) {
		struct session *s;
		if (b->sessions.keys == NULL || b->sessions.keys[i] == NULL)
			continue;
		s = b->sessions.vals[i];
		if (s->dirty && s->credit > 0)
			s_pump(b, s);
	}
}

void
deliver_ack(
    struct broker *b, struct session *s, const struct frame *f, bool nack)
{
	const struct frame_ack *a = &f->u.ack;
	struct inflight *x = s_find(s, a->store_seq);
	struct store_txn *t = broker_txn(b);
	struct store_msg m;

	if (store_get(b->store, a->store_seq, &m, NULL, NULL) != STORE_OK ||
	    memcmp(m.id, a->message_id, STORE_ID_LEN) != 0 || t == NULL)
		return;
	if (x != NULL)
		s_remove(s, x);
	s->dirty = true;
	/* A message behind this one on its case may go now; a Nack'ed one
	 * that is retried comes again from the head of the queue. */
	if (s->case_waiting || (nack && schakel_err_retryable((int)a->code))) {
		s->rescan = true;
		s->case_waiting = false;
	}
	if (!nack) {
		if (store_ack(t, s->party, a->store_seq) == STORE_OK &&
		    strcmp(m.type, S_NOTICE_TYPE) != 0) {
			s_audit(b, AUDIT_ACKNOWLEDGED, s->party, &m, 0, 0);
			b->stats.acked++;
			stats_observe(&b->stats.delivery,
			    (double)(b->now_ms - m.accepted_ms) / 1000.0);
			if (m.notify_delivered)
				s_notice(
				    b, &m, s->party, FRAME_NOTICE_DELIVERED, 0);
		}
	} else if (!schakel_err_retryable((int)a->code)) {
		/* The envelope is bad for this recipient: no retry helps. */
		s_dead(b, s->party, &m,
		    a->code != 0 ? a->code : SCHAKEL_E_DELIVERY_FAILED);
	}
}

void
deliver_timers(struct broker *b)
{
	struct session *drop[64];
	size_t ndrop = 0;
	uint64_t hb = b->conf->broker.limits.heartbeat * 1000;

	for (size_t i = 0; i < b->sessions.cap; i++) {
		struct session *s;
		if (b->sessions.keys == NULL || b->sessions.keys[i] == NULL)
			continue;
		s = b->sessions.vals[i];
		for (size_t k = 0; k < s->ninflight;) {
			if (s->inflight[k].deadline_ms <= b->now_ms) {
				s_remove(s, &s->inflight[k]);
				s->dirty = true;
				s->rescan = true;
			} else {
				k++;
			}
		}
		if (b->now_ms > s->last_seen_ms + 3 * hb) {
			if (ndrop < 64)
				drop[ndrop++] = s;
			continue;
		}
		if (b->now_ms >= s->last_sent_ms + hb) {
			struct frame p = {.kind = FRAME_PING};
			p.u.ping_ms = b->now_ms;
			broker_send(b, &s->peer, &p);
			s->last_sent_ms = b->now_ms;
		}
	}
	for (size_t i = 0; i < ndrop; i++)
		broker_drop(b, drop[i], "no traffic for three heartbeats");
}
