/*
 * submit: resolve, and the checks on every submitted message in the order
 * the protocol gives (docs/protocol.md 10.4), up to the point where an
 * accepted message joins the group commit.  It never reads a payload and
 * never logs a case reference that could be a BSN.
 */
#include "broker.h"

#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "log.h"
#include "schakel_err.h"
#include "text.h"

#define S_DAY_MS ((uint64_t)86400000)

/* A message's recipients fit an audit record's. */
_Static_assert(AUDIT_MAX_PARTIES >= ENV_MAX_RECIPIENTS, "audit to");
_Static_assert(AUDIT_NAME_MAX >= ENV_MAX_NAME_LEN, "audit names");
/* s_verified zeroes a pending slot up to its audit record. */
_Static_assert(offsetof(struct pending, accepted_len) >
	offsetof(struct pending, msg) + sizeof(struct store_msg),
    "the audit record follows the names");

static int32_t
s_today(const struct broker *b)
{
	return (int32_t)(b->now_ms / S_DAY_MS);
}

/* "GM0344" -> 344; "" -> 0; anything else -> -1. */
static int
s_region(const char *s)
{
	int v = 0;

	if (s[0] == '\0')
		return 0;
	if (strlen(s) != 6 || s[0] != 'G' || s[1] != 'M')
		return -1;
	for (int i = 2; i < 6; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v > 0 ? v : -1;
}

size_t
submit_participants(void *arg, const char *case_ref,
    const struct conf_role *role, const struct conf_party **out, size_t max)
{
	struct broker *b = arg;
	char ids[ROUTER_MAX][STORE_NAME_MAX + 1];
	size_t n = 0, k = 0;

	if (store_participants(b->store, case_ref, ids, ROUTER_MAX, &n) !=
	    STORE_OK)
		return 0;
	for (size_t i = 0; i < n && k < max; i++) {
		const struct conf_party *p = conf_party_by_id(b->conf, ids[i]);
		if (p != NULL && p->role == role)
			out[k++] = p;
	}
	return k;
}

/* Routes a message and finds the agreement for each routed recipient.
 * Returns SCHAKEL_OK with *res and agreements[] filled in, or the refusal
 * code. */
static int
s_route(struct broker *b, const struct conf_party *sender,
    const struct conf_type *type, const char *region, bool urgent,
    const char *case_ref, const char *purpose, bool has_consent,
    struct router_result *res,
    const struct conf_agreement *agreements[ROUTER_MAX])
{
	struct router_query q = {.sender = sender,
	    .type = type,
	    .urgent = urgent,
	    .case_ref = case_ref};
	int reg = s_region(region), rc;

	if (reg < 0)
		return SCHAKEL_E_BAD_FIELD;
	q.region = (uint16_t)reg;
	rc = router_match(b->router, &q, submit_participants, b, res);
	if (rc < 0)
		return SCHAKEL_E_TOO_LARGE;
	if (rc == 0)
		return SCHAKEL_E_NO_ROUTE;
	for (size_t i = 0; i < res->n; i++) {
		rc = router_agreement(b->conf, sender, res->slot[i].party, type,
		    purpose, has_consent, s_today(b), &agreements[i]);
		if (rc != SCHAKEL_OK)
			return rc;
	}
	return SCHAKEL_OK;
}

void
submit_resolve(
    struct broker *b, const struct transport_msg *m, const struct frame *f)
{
	const struct frame_resolve *r = &f->u.resolve;
	const struct conf_party *sender = conf_party_by_id(b->conf, m->party);
	const struct conf_type *type;
	const struct conf_agreement *ag[ROUTER_MAX];
	struct router_result res;
	struct frame out = {.corr_id = f->corr_id, .kind = FRAME_RESOLVED};
	int rc;

	if (sender == NULL) {
		broker_refuse(
		    b, &m->peer, f->corr_id, SCHAKEL_E_UNKNOWN_PARTY, NULL);
		return;
	}
	if (env_is_bsn(r->case_ref)) {
		broker_refuse(
		    b, &m->peer, f->corr_id, SCHAKEL_E_BSN_AS_CASE, NULL);
		return;
	}
	type = conf_type_by_id(b->conf, r->type);
	if (type == NULL) {
		broker_refuse(
		    b, &m->peer, f->corr_id, SCHAKEL_E_UNKNOWN_TYPE, NULL);
		return;
	}
	/* A resolve cannot carry consent; the submit is checked for it. */
	rc = s_route(b, sender, type, r->region, r->urgent, r->case_ref,
	    r->purpose, true, &res, ag);
	if (rc != SCHAKEL_OK) {
		broker_refuse(b, &m->peer, f->corr_id, rc, NULL);
		return;
	}
	out.u.resolved.n_recipients = res.n;
	for (size_t i = 0; i < res.n; i++) {
		struct frame_recipient *fr = &out.u.resolved.recipients[i];
		const struct conf_party *p = res.slot[i].party;
		text_copy(fr->party_id, sizeof fr->party_id, p->id);
		memcpy(fr->box_key, p->box_key, FRAME_KEY_LEN);
		memcpy(fr->sign_key, p->sign_key, FRAME_KEY_LEN);
		text_copy(fr->agreement_id, sizeof fr->agreement_id, ag[i]->id);
	}
	out.u.resolved.config_version = b->conf->generation;
	out.u.resolved.default_ttl_ms = type->ttl * 1000;
	broker_send(b, &m->peer, &out);
}

/* Refuses a submitted message and records the refusal.  Only what was
 * verified is recorded; a case reference only when it is no BSN. */
static void
s_refuse(struct broker *b, const struct transport_msg *m, uint64_t corr_id,
    int code, const struct env_header *h, bool verified)
{
	struct audit_event ev = {.kind = AUDIT_REFUSED,
	    .time_ms = b->now_ms,
	    .code = (uint32_t)code};

	broker_refuse(b, &m->peer, corr_id, code, h != NULL ? h->id : NULL);
	text_copy(ev.from, sizeof ev.from, m->party);
	if (h != NULL) {
		ev.has_id = true;
		memcpy(ev.id, h->id, AUDIT_ID_LEN);
	}
	if (h != NULL && verified) {
		text_copy(ev.type, sizeof ev.type, h->type);
		text_copy(ev.purpose, sizeof ev.purpose, h->purpose);
		/* Whom the sender sealed it for (signed, so known), but
		 * never a name that could be a BSN: routing has not yet
		 * shown these are parties. */
		for (size_t i = 0; i < h->n_recipients; i++)
			if (!env_is_bsn(h->recipients[i]))
				text_copy(ev.to[ev.n_to++], sizeof ev.to[0],
				    h->recipients[i]);
		if (code != SCHAKEL_E_BSN_AS_CASE && !env_is_bsn(h->case_ref))
			text_copy(ev.case_ref, sizeof ev.case_ref, h->case_ref);
	}
	broker_audit(b, &ev);
	broker_log_refusal(b, m->party, code);
}

/* A token bucket per party: submit_rate a second, submit_burst deep. */
static bool
s_rate_ok(struct broker *b, const struct conf_party *p)
{
	return broker_rate_take(&b->parties[p->index].rate,
	    (double)p->submit_rate, (double)p->submit_burst, b->now_ms);
}

/* A resubmission of an accepted message: answer with its receipt when the
 * header is the same, else it is a duplicate id.  The receipt is kept
 * with the id for the dedup window, so this holds after delivery too. */
static void
s_resubmitted(struct broker *b, const struct transport_msg *m, uint64_t corr_id,
    const struct env *e)
{
	const struct env_header *h = env_header(e);
	uint8_t *receipt = NULL, hash[ENV_HASH_LEN];
	size_t len = 0;
	struct receipt r;
	struct frame out = {.corr_id = corr_id, .kind = FRAME_ACCEPTED};

	env_header_hash(e, hash);
	if (store_receipt(b->store, h->id, &receipt, &len) != STORE_OK ||
	    receipt_verify(receipt, len, b->keys->pub.sign, b->cache, &r,
		NULL) != SCHAKEL_OK ||
	    memcmp(r.header_hash, hash, ENV_HASH_LEN) != 0) {
		s_refuse(b, m, corr_id, SCHAKEL_E_DUPLICATE_ID, h, true);
	} else {
		out.u.accepted.data = receipt;
		out.u.accepted.len = len;
		broker_send(b, &m->peer, &out);
	}
	free(receipt);
}

/* A submission whose id waits for its group's commit already: the same
 * header (the client sent the same envelope again at once, docs/protocol.md
 * 11.6) is answered with it; another is DUPLICATE_ID.  Returns -1 when
 * no submission with this id waits, else SCHAKEL_OK (it will be
 * answered) or the refusal's code. */
static int
s_resubmitted_early(struct broker *b, const struct transport_msg *m,
    uint64_t corr_id, const uint8_t id[ENV_ID_LEN],
    const uint8_t header_hash[ENV_HASH_LEN])
{
	struct group *g = b->open;
	struct pending *p = idmap_get(&g->pend_ids, id, ENV_ID_LEN);
	struct pending_waiter *w;

	if (p == NULL && b->fly != NULL) {
		g = b->fly;
		p = idmap_get(&g->pend_ids, id, ENV_ID_LEN);
	}
	if (p == NULL)
		return -1;
	if (memcmp(p->header_hash, header_hash, ENV_HASH_LEN) != 0)
		return SCHAKEL_E_DUPLICATE_ID;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return SCHAKEL_E_NO_MEMORY;
	w->peer = m->peer;
	w->corr_id = corr_id;
	w->next = p->waiters;
	p->waiters = w;
	return SCHAKEL_OK;
}

static uint64_t
s_absdiff(uint64_t a, uint64_t b)
{
	return a > b ? a - b : b - a;
}

/* The queue-depth check counts what the groups not yet stored add: the
 * store's depth is read once a group for each recipient (a read
 * transaction and a count: 2% of the broker thread when it was read for
 * every message), then counted up as the group takes messages.  An
 * acknowledgement not yet stored still counts: that can refuse early,
 * never too late. */
static bool
s_queue_ok(struct broker *b, const struct conf_party *p)
{
	struct party_state *ps = &b->parties[p->index];

	if (ps->depth_group != b->depth_group) {
		if (store_queue_depth(b->store, p->id, &ps->depth) != STORE_OK)
			return false;
		/* And what the groups not yet stored add. */
		for (size_t gi = 0; gi < BROKER_GROUPS; gi++)
			ps->depth += ps->adds[gi];
		ps->depth_group = b->depth_group;
	}
	return ps->depth < p->max_queue_depth;
}

/* Counts a message for each of its recipients in this group (each was
 * checked with s_queue_ok just before). */
static void
s_queue_add(struct broker *b, const struct conf_party *const *rcpt, size_t n)
{
	size_t gi = (size_t)(b->open - b->groups);

	for (size_t i = 0; i < n; i++) {
		struct party_state *ps = &b->parties[rcpt[i]->index];
		ps->adds[gi]++;
		if (ps->depth_group == b->depth_group)
			ps->depth++;
	}
}

/* Zeroes the first `upto` bytes of *x but for two arrays of names side
 * by side, from `first` to `last` (4 KiB for 32 recipients and their
 * agreements, of a pending slot of 5.8 KiB), which every reader reads
 * only up to the slot's count of recipients, and s_verified fills that
 * far: 8 KiB of memset a message less on the broker thread.  `upto` is
 * past `last` (asserted below for the pending slot). */
#define S_ZERO_AROUND(x, first, last, upto) \
	do { \
		size_t s_a = offsetof(__typeof__(*(x)), first); \
		size_t s_b = \
		    offsetof(__typeof__(*(x)), last) + sizeof((x)->last); \
		memset((x), 0, s_a); \
		memset((char *)(x) + s_b, 0, (upto)-s_b); \
	} while (0)

/* A submission between its arrival and the end of its signature check:
 * the frame's envelope bytes (owned; they become the stored copy) and
 * where the answer goes. */
struct s_job {
	struct transport_msg m; /* m.data is `buf` */
	uint64_t corr_id;
	uint8_t *buf;
	uint8_t pk[CONF_KEY_BYTES]; /* the key it is being checked with */
};

/* An envelope to decode into: a spare one when there is. */
static struct env *
s_env_get(struct broker *b)
{
	if (b->nenv_spare > 0)
		return b->env_spare[--b->nenv_spare];
	return env_new();
}

/* Done with *ep: kept as a spare, or freed when there are enough. */
static void
s_env_put(struct broker *b, struct env **ep)
{
	if (*ep == NULL)
		return;
	if (b->nenv_spare == BROKER_ENV_SPARE) {
		env_destroy(ep);
		return;
	}
	env_reuse(*ep);
	b->env_spare[b->nenv_spare++] = *ep;
	*ep = NULL;
}

static void
s_job_free(struct s_job **jp)
{
	if (*jp == NULL)
		return;
	free((*jp)->buf);
	free(*jp);
	*jp = NULL;
}

/* The checks before the signature: the rate and the sender's key.  Then
 * the envelope waits for a verifier thread, which decodes it (bounded)
 * and checks its signature; the rest of the checks run in s_verified, in
 * the order the envelopes came.  Only the sender is read here (decoding
 * was 7% of this thread's time, and the verifiers have room): when
 * that cannot be read, or names no party, the envelope is decoded here
 * after all, for the refusal's exact code and message id. */
void
submit_envelope(
    struct broker *b, const struct transport_msg *m, struct frame *f)
{
	const struct conf_party *self = conf_party_by_id(b->conf, m->party);
	const struct conf_party *sender;
	size_t max = broker_frame_limit(b);
	char who[ENV_MAX_NAME_LEN + 1];
	struct s_job *job;
	struct env *e = NULL;
	int rc;

	if (self == NULL || !s_rate_ok(b, self)) {
		s_refuse(b, m, f->corr_id,
		    self == NULL ? SCHAKEL_E_UNKNOWN_PARTY
				 : SCHAKEL_E_RATE_LIMITED,
		    NULL, false);
		return;
	}
	job = calloc(1, sizeof(*job));
	if (job != NULL && f->owner != NULL && f->owner == f->u.submit.data) {
		/* The decoder's copy of the envelope becomes the job's (and
		 * then the stored one): no second copy. */
		job->buf = f->owner;
		f->owner = NULL;
	} else if (job != NULL) {
		job->buf = malloc(f->u.submit.len + 1);
		if (job->buf != NULL)
			memcpy(job->buf, f->u.submit.data, f->u.submit.len);
	}
	if (job == NULL || job->buf == NULL) {
		s_job_free(&job);
		s_refuse(b, m, f->corr_id, SCHAKEL_E_NO_MEMORY, NULL, false);
		return;
	}
	job->m = *m;
	job->m.data = job->buf;
	job->m.len = f->u.submit.len;
	job->corr_id = f->corr_id;
	rc = env_peek_sender(job->buf, job->m.len, max, who);
	sender = rc == SCHAKEL_OK ? conf_party_by_id(b->conf, who) : NULL;
	if (sender != NULL) {
		memcpy(job->pk, sender->sign_key, CONF_KEY_BYTES);
		e = s_env_get(b);
		if (e != NULL &&
		    verify_push(b->verify, e, job->buf, job->m.len, max,
			job->pk, b->in_unit, job) == 0)
			return;
		s_env_put(b, &e);
	}
	rc = env_decode(job->buf, job->m.len, max, &e);
	if (rc == SCHAKEL_OK)
		rc = sender == NULL ? SCHAKEL_E_UNKNOWN_PARTY
				    : SCHAKEL_E_UNAVAILABLE;
	s_refuse(b, m, f->corr_id, rc, e != NULL ? env_header(e) : NULL, false);
	env_destroy(&e);
	s_job_free(&job);
}

/* The checks after the signature, in the order of docs/protocol.md 10.4,
 * for an envelope whose signature check `vrc` came back. */
static void
s_verified(struct broker *b, struct s_job *job, struct env *e, int vrc,
    const uint8_t header_hash[ENV_HASH_LEN])
{
	const struct transport_msg *m = &job->m;
	const struct conf_limits *lim = &b->conf->broker.limits;
	const struct conf_party *self = conf_party_by_id(b->conf, m->party);
	const struct conf_party *sender, *rcpt[ROUTER_MAX];
	const struct conf_agreement *ag[ROUTER_MAX];
	const struct conf_type *type;
	const struct env_header *h;
	const char *ids[ENV_MAX_RECIPIENTS];
	struct router_result res;
	struct group *g = b->open;
	struct pending *p;
	struct receipt r;
	uint64_t seq;
	void *old;
	int rc = vrc;

	if (e == NULL) {
		/* It did not decode (vrc says why): as if refused before
		 * the signature check. */
		s_refuse(b, m, job->corr_id, vrc, NULL, false);
		goto out;
	}
	h = env_header(e);
	/* A reload while the envelope waited may have removed the sender
	 * or changed its key: check again under the configuration now. */
	sender = conf_party_by_id(b->conf, h->sender);
	if (self == NULL || sender == NULL) {
		s_refuse(b, m, job->corr_id, SCHAKEL_E_UNKNOWN_PARTY, h, false);
		goto out;
	}
	if (memcmp(job->pk, sender->sign_key, CONF_KEY_BYTES) != 0)
		rc = env_verify(e, sender->sign_key, b->cache);
	if (rc != SCHAKEL_OK) {
		s_refuse(b, m, job->corr_id, rc, h, false);
		goto out;
	}
	if (sender != self) {
		s_refuse(b, m, job->corr_id, SCHAKEL_E_FORGED_SENDER, h, false);
		goto out;
	}
	if (s_absdiff(h->created_ms, b->now_ms) > lim->clock_skew * 1000) {
		s_refuse(
		    b, m, job->corr_id, SCHAKEL_E_STALE_TIMESTAMP, h, true);
		goto out;
	}
	rc = s_resubmitted_early(b, m, job->corr_id, h->id, header_hash);
	if (rc != -1) {
		if (rc != SCHAKEL_OK)
			s_refuse(b, m, job->corr_id, rc, h, true);
		goto out;
	}
	if (store_seen(b->store, h->id, &seq) == STORE_OK) {
		s_resubmitted(b, m, job->corr_id, e);
		goto out;
	}
	if (h->expires_ms <= b->now_ms) {
		s_refuse(b, m, job->corr_id, SCHAKEL_E_EXPIRED, h, true);
		goto out;
	}
	if (env_is_bsn(h->case_ref)) {
		s_refuse(b, m, job->corr_id, SCHAKEL_E_BSN_AS_CASE, h, true);
		goto out;
	}
	type = conf_type_by_id(b->conf, h->type);
	if (type == NULL) {
		s_refuse(b, m, job->corr_id, SCHAKEL_E_UNKNOWN_TYPE, h, true);
		goto out;
	}
	if (env_payload_len(e) > type->max_size) {
		s_refuse(b, m, job->corr_id, SCHAKEL_E_TOO_LARGE, h, true);
		goto out;
	}
	rc = s_route(b, sender, type, h->region, h->urgent, h->case_ref,
	    h->purpose, h->consent_ref[0] != '\0', &res, ag);
	if (rc != SCHAKEL_OK) {
		s_refuse(b, m, job->corr_id, rc, h, true);
		goto out;
	}
	for (size_t i = 0; i < h->n_recipients; i++)
		ids[i] = h->recipients[i];
	if (!router_accepts(&res, ids, h->n_recipients)) {
		s_refuse(b, m, job->corr_id, SCHAKEL_E_ROUTE_CHANGED, h, true);
		goto out;
	}
	/* The recipients sealed for: a group member the client chose needs
	 * its own agreement. */
	for (size_t i = 0; i < h->n_recipients; i++) {
		rcpt[i] = conf_party_by_id(b->conf, h->recipients[i]);
		rc = router_agreement(b->conf, sender, rcpt[i], type,
		    h->purpose, h->consent_ref[0] != '\0', s_today(b), &ag[i]);
		if (rc == SCHAKEL_OK && !s_queue_ok(b, rcpt[i]))
			rc = SCHAKEL_E_QUEUE_FULL;
		if (rc != SCHAKEL_OK) {
			s_refuse(b, m, job->corr_id, rc, h, true);
			goto out;
		}
	}
	if (g->npend == BROKER_DRAIN_MAX) {
		s_refuse(b, m, job->corr_id, SCHAKEL_E_UNAVAILABLE, h, true);
		goto out;
	}
	seq = broker_next_seq(b);
	p = &g->pend[g->npend];
	/* The "accepted" record at its end is written by group_accepted. */
	S_ZERO_AROUND(p, msg.recipients, msg.agreements,
	    offsetof(struct pending, accepted_len));
	p->peer = m->peer;
	p->corr_id = job->corr_id;
	p->arrived_us = m->arrived_us;
	p->msg.seq = seq;
	memcpy(p->msg.id, h->id, STORE_ID_LEN);
	text_copy(p->msg.sender, sizeof p->msg.sender, h->sender);
	text_copy(p->msg.type, sizeof p->msg.type, h->type);
	text_copy(p->msg.case_ref, sizeof p->msg.case_ref, h->case_ref);
	text_copy(p->purpose, sizeof p->purpose, h->purpose);
	p->msg.accepted_ms = b->now_ms;
	p->msg.expires_ms = h->expires_ms;
	p->msg.notify_delivered = h->notify_delivered;
	p->msg.n_recipients = h->n_recipients;
	/* The stored copy is the job's buffer (the decoded envelope
	 * points into it too, until env_destroy at the end). */
	p->msg.envelope_len = m->len;
	memcpy(p->header_hash, header_hash, ENV_HASH_LEN);
	S_ZERO_AROUND(&r, recipients, agreement_ids, sizeof r);
	memcpy(r.message_id, h->id, ENV_ID_LEN);
	r.accepted_ms = b->now_ms;
	r.n_recipients = h->n_recipients;
	r.store_seq = seq;
	memcpy(r.header_hash, header_hash, ENV_HASH_LEN);
	text_copy(r.sender, sizeof r.sender, h->sender);
	/* The case's participants are kept as long as the longest
	 * retention of the agreements it was routed under, from its last
	 * message, to the end of that (UTC) day: the store rewrites a
	 * case's keep-until only when it moves, so at most once a day. */
	p->msg.case_until_ms = b->now_ms;
	for (size_t i = 0; i < h->n_recipients; i++) {
		uint64_t until =
		    b->now_ms + (uint64_t)ag[i]->retention_days * S_DAY_MS;
		if (until > p->msg.case_until_ms)
			p->msg.case_until_ms = until;
		text_copy(p->msg.recipients[i], sizeof p->msg.recipients[i],
		    h->recipients[i]);
		text_copy(p->msg.agreements[i], sizeof p->msg.agreements[i],
		    ag[i]->id);
		text_copy(
		    r.recipients[i], sizeof r.recipients[i], h->recipients[i]);
		text_copy(
		    r.agreement_ids[i], sizeof r.agreement_ids[i], ag[i]->id);
	}
	p->msg.case_until_ms =
	    (p->msg.case_until_ms + S_DAY_MS - 1) / S_DAY_MS * S_DAY_MS;
	/* Its receipt and its "accepted" record are encoded now, not
	 * while the writer waits for the group (only the signing is). */
	group_accepted(p);
	rc = receipt_body(&r, &g->bodies[g->npend], g->leaves[g->npend]);
	if (rc != SCHAKEL_OK) {
		s_refuse(b, m, job->corr_id, rc, h, true);
		goto out;
	}
	if (idmap_put(&g->pend_ids, p->msg.id, STORE_ID_LEN, p, &old) != 0) {
		codec_buf_clear(&g->bodies[g->npend]);
		s_refuse(b, m, job->corr_id, SCHAKEL_E_NO_MEMORY, h, true);
		goto out;
	}
	p->msg.envelope = job->buf;
	job->buf = NULL;
	g->npend++;
	s_queue_add(b, rcpt, h->n_recipients);
out:
	s_env_put(b, &e);
	s_job_free(&job);
}

void
submit_collect(struct broker *b)
{
	struct env *e;
	void *arg;
	uint8_t hash[ENV_HASH_LEN];
	int rc;

	while (b->open->npend < BROKER_DRAIN_MAX &&
	    verify_pop(b->verify, &e, &arg, &rc, hash)) {
		s_verified(b, arg, e, rc, hash);
		broker_writer_check(b);
	}
}

void
submit_drop_waiting(struct broker *b)
{
	struct env *e;
	void *arg;
	int rc;

	while (verify_pending(b->verify) > 0) {
		struct s_job *job;
		verify_wait(b->verify);
		if (!verify_pop(b->verify, &e, &arg, &rc, NULL))
			continue;
		job = arg;
		s_env_put(b, &e);
		s_job_free(&job);
	}
}

void
submit_prepare_group(struct broker *b, struct group *g)
{
	struct codec_buf *bufs;
	int rc = SCHAKEL_OK, prc;

	if (g->prepared || g->npend == 0)
		return;
	g->prepared = true;
	g->dedup_until_ms =
	    b->now_ms + b->conf->broker.limits.dedup_window * 1000;
	bufs = calloc(g->npend, sizeof(*bufs));
	if (bufs == NULL) {
		g->prep_code = SCHAKEL_E_NO_MEMORY;
		return;
	}
	/* One broker signature for the whole group. */
	rc = receipt_sign(g->bodies,
	    (const uint8_t(*)[MERKLE_HASH_LEN])g->leaves, g->npend,
	    b->keys->sign_sk, bufs);
	for (size_t i = 0; i < g->npend; i++)
		codec_buf_clear(&g->bodies[i]);
	if (rc != SCHAKEL_OK)
		log_warnx("cannot sign receipts: %s", schakel_errname(rc));
	/* The messages are stored, and what became of each recorded, when
	 * the group is applied (group.c). */
	for (size_t i = 0; rc == SCHAKEL_OK && i < g->npend; i++) {
		struct pending *p = &g->pend[i];
		p->signed_receipt = bufs[i];
		bufs[i].data = NULL;
		p->msg.receipt = p->signed_receipt.data;
		p->msg.receipt_len = p->signed_receipt.len;
		prc = group_put(g, p);
		if (prc != SCHAKEL_OK)
			g->failed = prc; /* all or none */
	}
	if (rc != SCHAKEL_OK)
		g->prep_code = rc;
	for (size_t i = 0; i < g->npend; i++)
		codec_buf_clear(&bufs[i]);
	free(bufs);
}

/* Sends p's signed receipt to one who submitted its envelope. */
static void
s_send_accepted(struct broker *b, const struct transport_peer *peer,
    uint64_t corr_id, const struct pending *p)
{
	struct frame out = {.corr_id = corr_id, .kind = FRAME_ACCEPTED};

	out.u.accepted.data = p->signed_receipt.data;
	out.u.accepted.len = p->signed_receipt.len;
	broker_send(b, peer, &out);
}

/* Gives those who sent p's envelope again meanwhile the same answer. */
static void
s_answer_waiters(struct broker *b, struct pending *p, int rc)
{
	while (p->waiters != NULL) {
		struct pending_waiter *w = p->waiters;
		p->waiters = w->next;
		if (rc == SCHAKEL_OK)
			s_send_accepted(b, &w->peer, w->corr_id, p);
		else
			broker_refuse(b, &w->peer, w->corr_id, rc, p->msg.id);
		free(w);
	}
}

/* Records the refusal of a submission the store did not take. */
static void
s_audit_put_refused(struct broker *b, const struct pending *p)
{
	struct audit_event ev = {.kind = AUDIT_REFUSED,
	    .time_ms = b->now_ms,
	    .code = (uint32_t)p->code};

	group_audit_about(&ev, p);
	broker_audit(b, &ev);
}

void
submit_finish_group(struct broker *b, struct group *g, int code)
{
	for (size_t i = 0; i < g->npend; i++) {
		struct pending *p = &g->pend[i];
		int rc = code != SCHAKEL_OK ? code : p->code;

		s_answer_waiters(b, p, rc);
		if (rc == SCHAKEL_OK) {
			s_send_accepted(b, &p->peer, p->corr_id, p);
			b->stats.accepted++;
			stats_count_type(b, p->msg.type);
			stats_observe(&b->stats.receipt,
			    (double)(stats_now_us() - p->arrived_us) / 1e6);
			b->store_full = false;
			/* What flowing traffic brings back in acks: one a
			 * recipient (BROKER_ACKS_MAX). */
			b->acks_flowing += p->msg.n_recipients;
			deliver_notify(b, &p->msg);
			/* Committed: its delivery, usually later in this
			 * turn, takes a copy of envelope and receipt from
			 * memory. */
			hot_put(b->hot, &p->msg);
		} else {
			if (rc == SCHAKEL_E_STORE_FULL)
				b->store_full = true;
			/* Refused by a full store: recorded like every
			 * other refusal then, summed (group.c recorded the
			 * store's other refusals in the group). */
			if (code == SCHAKEL_OK && rc == SCHAKEL_E_STORE_FULL)
				s_audit_put_refused(b, p);
			broker_refuse(b, &p->peer, p->corr_id, rc, p->msg.id);
			broker_log_refusal(b, p->msg.sender, rc);
		}
		free((void *)p->msg.envelope);
		codec_buf_clear(&p->signed_receipt);
		codec_buf_clear(&g->bodies[i]);
	}
	/* Their ids go with group_reset, which follows. */
	g->npend = 0;
}
