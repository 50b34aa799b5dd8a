/*
 * store: the backend-neutral face of the store.  It picks the backend,
 * checks every argument once (names, sizes, recipients) so that no
 * backend has to, dispatches through the ops table, and keeps the last
 * failure's sentence.  It must not know how any backend lays out data.
 */
#include "store_backend.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most a stored envelope or receipt may hold; the configured message
 * limits are far below it, this only keeps the lengths in 32 bits. */
#define S_BLOB_MAX ((size_t)1 << 30)

static const struct store_ops *const s_backends[] = {
    &store_lmdb_ops,
};

/* The last failure, per thread, and the store it belongs to. */
static _Thread_local const struct store *s_err_store;
static _Thread_local char s_err[256];

int
store_fail(const struct store *s, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(s_err, sizeof s_err, fmt, ap) < 0)
		s_err[0] = '\0';
	va_end(ap);
	s_err_store = s;
	return rc;
}

const char *
store_error(const struct store *s)
{
	if (s == NULL || s != s_err_store || s_err[0] == '\0')
		return "no store error";
	return s_err;
}

/* A party id, type or case reference: 1 to STORE_NAME_MAX bytes. */
static bool
s_name_ok(const char *name)
{
	size_t len;

	if (name == NULL)
		return false;
	len = strnlen(name, STORE_NAME_MAX + 1);
	return len > 0 && len <= STORE_NAME_MAX;
}

static bool
s_blob_ok(const uint8_t *p, size_t len)
{
	return (p != NULL || len == 0) && len <= S_BLOB_MAX;
}

/* Checks what store_put is given; returns STORE_OK or STORE_ERROR with
 * the reason set. */
static int
s_check_msg(const struct store *s, const struct store_msg *m)
{
	if (m->seq == 0)
		return store_fail(
		    s, STORE_ERROR, "message sequence 0 is not valid");
	if (!s_name_ok(m->sender) || !s_name_ok(m->type) ||
	    !s_name_ok(m->case_ref))
		return store_fail(s, STORE_ERROR,
		    "message %llu has an empty or over-long sender, type or "
		    "case reference",
		    (unsigned long long)m->seq);
	if (m->n_recipients == 0 || m->n_recipients > STORE_MAX_RECIPIENTS)
		return store_fail(s, STORE_ERROR,
		    "message %llu has %zu recipients; 1 to %d are allowed",
		    (unsigned long long)m->seq, m->n_recipients,
		    STORE_MAX_RECIPIENTS);
	for (size_t i = 0; i < m->n_recipients; i++) {
		if (!s_name_ok(m->recipients[i]) ||
		    !s_name_ok(m->agreements[i]))
			return store_fail(s, STORE_ERROR,
			    "message %llu has an empty or over-long recipient "
			    "or agreement",
			    (unsigned long long)m->seq);
		for (size_t j = 0; j < i; j++)
			if (strcmp(m->recipients[i], m->recipients[j]) == 0)
				return store_fail(s, STORE_ERROR,
				    "message %llu names recipient %s twice",
				    (unsigned long long)m->seq,
				    m->recipients[i]);
	}
	if (!s_blob_ok(m->envelope, m->envelope_len) ||
	    !s_blob_ok(m->receipt, m->receipt_len))
		return store_fail(s, STORE_ERROR,
		    "message %llu has a missing or over-long envelope or "
		    "receipt",
		    (unsigned long long)m->seq);
	return STORE_OK;
}

static int
s_bad_name(const struct store *s, const char *what)
{
	return store_fail(s, STORE_ERROR,
	    "the %s is empty or longer than %d bytes", what, STORE_NAME_MAX);
}

struct store *
store_open(const struct store_opts *opts, char *err, size_t errlen)
{
	const struct store_ops *ops = NULL;
	struct store *s;
	const char *name;

	if (errlen > 0)
		err[0] = '\0';
	if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0') {
		snprintf(err, errlen, "no store directory was given");
		return NULL;
	}
	name = opts->backend != NULL ? opts->backend : "lmdb";
	for (size_t i = 0; i < sizeof s_backends / sizeof s_backends[0]; i++)
		if (strcmp(s_backends[i]->name, name) == 0)
			ops = s_backends[i];
	if (ops == NULL) {
		snprintf(err, errlen, "unknown store backend \"%.32s\"", name);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory opening the store");
		return NULL;
	}
	s->ops = ops;
	if (ops->open(s, opts) != STORE_OK) {
		snprintf(err, errlen, "%s", store_error(s));
		s_err_store = NULL;
		free(s);
		return NULL;
	}
	return s;
}

void
store_close(struct store **sp)
{
	struct store *s;

	if (sp == NULL || *sp == NULL)
		return;
	s = *sp;
	assert(!s->writing);
	s->ops->close(s);
	if (s_err_store == s)
		s_err_store = NULL;
	free(s);
	*sp = NULL;
}

int
store_begin(struct store *s, struct store_txn **out)
{
	struct store_txn *t;
	int rc;

	*out = NULL;
	if (s->writing)
		return store_fail(
		    s, STORE_ERROR, "a store transaction is already open");
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return store_fail(s, STORE_ERROR,
		    "out of memory starting a store transaction");
	t->s = s;
	rc = s->ops->begin(t);
	if (rc != STORE_OK) {
		free(t);
		return rc;
	}
	s->writing = true;
	*out = t;
	return STORE_OK;
}

int
store_commit(struct store_txn **tp)
{
	struct store_txn *t = *tp;
	int rc;

	assert(t != NULL);
	*tp = NULL;
	rc = t->s->ops->commit(t);
	t->s->writing = false;
	free(t);
	return rc;
}

void
store_abort(struct store_txn **tp)
{
	struct store_txn *t;

	if (tp == NULL || *tp == NULL)
		return;
	t = *tp;
	*tp = NULL;
	t->s->ops->abort(t);
	t->s->writing = false;
	free(t);
}

uint64_t
store_next_seq(struct store_txn *t)
{
	return t->s->ops->next_seq(t);
}

void
store_take_seq(struct store_txn *t, uint64_t seq)
{
	t->s->ops->take_seq(t, seq);
}

uint64_t
store_last_seq_open(const struct store *s)
{
	return s->last_seq_open;
}

int
store_put(
    struct store_txn *t, const struct store_msg *m, uint64_t dedup_until_ms)
{
	int rc = s_check_msg(t->s, m);

	if (rc != STORE_OK)
		return rc;
	return t->s->ops->put(t, m, dedup_until_ms);
}

int
store_delivered(struct store_txn *t, const char *recipient, uint64_t seq,
    uint32_t *deliveries)
{
	if (!s_name_ok(recipient))
		return s_bad_name(t->s, "recipient");
	return t->s->ops->delivered(t, recipient, seq, deliveries);
}

int
store_ack(struct store_txn *t, const char *recipient, uint64_t seq)
{
	return store_ack_id(t, recipient, seq, NULL, NULL);
}

int
store_ack_id(struct store_txn *t, const char *recipient, uint64_t seq,
    const uint8_t want_id[STORE_ID_LEN], struct store_msg *out)
{
	if (!s_name_ok(recipient))
		return s_bad_name(t->s, "recipient");
	return t->s->ops->ack(t, recipient, seq, want_id, out, NULL);
}

int
store_ack_known(
    struct store_txn *t, const char *recipient, const struct store_msg *m)
{
	if (!s_name_ok(recipient))
		return s_bad_name(t->s, "recipient");
	if (m->n_recipients > STORE_MAX_RECIPIENTS)
		return store_fail(t->s, STORE_ERROR, "too many recipients");
	return t->s->ops->ack(t, recipient, m->seq, NULL, NULL, m);
}

int
store_dead_letter(struct store_txn *t, const char *recipient, uint64_t seq,
    uint32_t code, uint64_t time_ms, uint64_t keep_until_ms)
{
	if (!s_name_ok(recipient))
		return s_bad_name(t->s, "recipient");
	return t->s->ops->dead_letter(
	    t, recipient, seq, code, time_ms, keep_until_ms);
}

int
store_redeliver(struct store_txn *t, const char *recipient, uint64_t seq)
{
	if (!s_name_ok(recipient))
		return s_bad_name(t->s, "recipient");
	return t->s->ops->redeliver(t, recipient, seq);
}

int
store_purge(struct store_txn *t, const char *recipient, uint64_t seq)
{
	if (!s_name_ok(recipient))
		return s_bad_name(t->s, "recipient");
	return t->s->ops->purge(t, recipient, seq);
}

int
store_expire_dedup(
    struct store_txn *t, uint64_t now_ms, size_t max, size_t *removed)
{
	*removed = 0;
	return t->s->ops->expire_dedup(t, now_ms, max, removed);
}

int
store_take_expired(
    struct store_txn *t, uint64_t now_ms, uint64_t *seqs, size_t max, size_t *n)
{
	*n = 0;
	return t->s->ops->take_expired(t, now_ms, seqs, max, n);
}

int
store_expire_later(struct store_txn *t, uint64_t at_ms, uint64_t seq)
{
	return t->s->ops->expire_later(t, at_ms, seq);
}

int
store_take_dead_due(struct store_txn *t, uint64_t now_ms,
    struct store_dead *out, size_t max, size_t *n)
{
	*n = 0;
	return t->s->ops->take_dead_due(t, now_ms, out, max, n);
}

uint64_t
store_upgraded_from(const struct store *s)
{
	return s->upgraded_from;
}

int
store_forget_cases(struct store_txn *t, uint64_t now_ms, size_t look,
    char (*refs)[STORE_NAME_MAX + 1], size_t max, size_t *n)
{
	*n = 0;
	return t->s->ops->forget_cases(t, now_ms, look, refs, max, n);
}

int
store_audit_append(struct store_txn *t, const uint8_t *rec, size_t len,
    const uint8_t head[STORE_HASH_LEN], uint64_t *audit_seq)
{
	if (!s_blob_ok(rec, len) || len == 0)
		return store_fail(t->s, STORE_ERROR,
		    "an audit record must hold 1 byte to 1 GiB");
	return t->s->ops->audit_append(t, rec, len, head, audit_seq);
}

int
store_audit_prune(
    struct store_txn *t, uint64_t upto, const uint8_t anchor[STORE_HASH_LEN])
{
	return t->s->ops->audit_prune(t, upto, anchor);
}

int
store_seen(struct store *s, const uint8_t id[STORE_ID_LEN], uint64_t *seq)
{
	return s->ops->seen(s, id, seq);
}

int
store_receipt(struct store *s, const uint8_t id[STORE_ID_LEN],
    uint8_t **receipt, size_t *len)
{
	return s->ops->receipt(s, id, receipt, len);
}

int
store_get(struct store *s, uint64_t seq, struct store_msg *m,
    uint8_t **envelope, uint8_t **receipt)
{
	if ((envelope == NULL) != (receipt == NULL))
		return store_fail(s, STORE_ERROR,
		    "store_get: ask for both copies or for none");
	if (envelope != NULL) {
		*envelope = NULL;
		*receipt = NULL;
	}
	return s->ops->get(s, seq, m, envelope, receipt);
}

int
store_queue(struct store *s, const char *recipient, uint64_t after,
    struct store_entry *out, size_t max, size_t *n)
{
	*n = 0;
	if (!s_name_ok(recipient))
		return s_bad_name(s, "recipient");
	if (max == 0)
		return STORE_OK;
	return s->ops->queue(s, recipient, after, out, max, n);
}

int
store_queue_depth(struct store *s, const char *recipient, uint64_t *depth)
{
	*depth = 0;
	if (!s_name_ok(recipient))
		return s_bad_name(s, "recipient");
	return s->ops->queue_depth(s, recipient, depth);
}

int
store_participants(struct store *s, const char *case_ref,
    char (*out)[STORE_NAME_MAX + 1], size_t max, size_t *n)
{
	*n = 0;
	if (!s_name_ok(case_ref))
		return s_bad_name(s, "case reference");
	if (max == 0)
		return STORE_OK;
	return s->ops->participants(s, case_ref, out, max, n);
}

int
store_dead_letters(struct store *s, const char *recipient, uint64_t after,
    struct store_dead *out, size_t max, size_t *n)
{
	*n = 0;
	if (recipient != NULL && !s_name_ok(recipient))
		return s_bad_name(s, "recipient");
	if (max == 0)
		return STORE_OK;
	return s->ops->dead_letters(s, recipient, after, out, max, n);
}

int
store_audit_each(struct store *s, uint64_t after,
    int (*fn)(void *arg, uint64_t seq, const uint8_t *rec, size_t len),
    void *arg, uint8_t head[STORE_HASH_LEN])
{
	return s->ops->audit_each(s, after, fn, arg, head);
}

int
store_audit_anchor(struct store *s, uint64_t *seq, uint8_t hash[STORE_HASH_LEN])
{
	return s->ops->audit_anchor(s, seq, hash);
}

int
store_due(struct store *s, uint64_t now_ms, size_t look, unsigned *due)
{
	*due = 0;
	return s->ops->due(s, now_ms, look, due);
}

int
store_usage(struct store *s, uint64_t *used, uint64_t *size, uint64_t *limit)
{
	*used = 0;
	*size = 0;
	*limit = 0;
	return s->ops->usage(s, used, size, limit);
}
