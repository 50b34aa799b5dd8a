/*
 * broker: the serving loop.  Each turn it waits for traffic and handles
 * up to BROKER_DRAIN_MAX inbound frames; what they decide is recorded in
 * the open group.  At the end of a turn the open group goes to the store's
 * writer thread when that is idle (else it grows until then: the group
 * commit), which stores it in ONE transaction, with fsync; only when
 * that is done does the broker answer the group's submitters and hand
 * out its messages.  It must never answer Accepted before the commit is
 * durable.  When the writer is done and the open group waits, that goes
 * to the writer first and the done one is answered after: the writer
 * does not wait for the answers (so three groups may be in hand).
 */
#include "broker.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "keys.h"
#include "log.h"
#include "schakel_err.h"
#include "text.h"

static uint64_t
s_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Writes the summary of a window's suppressed refusals. */
static void
s_refusal_summary(struct refusal_window *w)
{
	if (w->suppressed > 0)
		log_info("refused party=%s suppressed=%u last_code=%s "
			 "(more refusals than %d a minute; counted, not logged "
			 "each)",
		    w->party, w->suppressed, schakel_errname(w->last_code),
		    BROKER_REFUSALS_LOGGED);
}

/* ZAP: a CURVE key is admitted when it is a declared party's transport
 * key in the configuration in force. */
static bool
s_admit(void *arg, const uint8_t key[TRANSPORT_KEY_LEN], char *party_id)
{
	struct broker *b = arg;
	const struct conf_party *p = conf_party_by_transport_key(b->conf, key);

	if (p == NULL)
		return false;
	memcpy(party_id, p->id, strlen(p->id) + 1);
	return true;
}

/* Writes the bound endpoints, one a line, for tests and scripts; then,
 * when metrics are on, "metrics=http://ADDRESS:PORT" with the port the
 * metrics server got (the configuration may say port 0). */
static int
s_write_endpoints(struct broker *b)
{
	char tmp[4096], ep[256];
	FILE *f;

	if (b->opts.endpoint_file == NULL)
		return 0;
	if (snprintf(tmp, sizeof tmp, "%s.tmp", b->opts.endpoint_file) >=
	    (int)sizeof tmp)
		return -1;
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	for (size_t i = 0; transport_endpoint(b->tp, i, ep, sizeof ep) == 0;
	     i++)
		fprintf(f, "%s\n", ep);
	if (b->metrics != NULL) {
		const char *addr = b->conf->broker.metrics;
		const char *colon = strrchr(addr, ':');
		fprintf(f, "metrics=http://%.*s:%u\n", (int)(colon - addr),
		    addr, metrics_port(b->metrics));
	}
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, b->opts.endpoint_file);
}

/* Signature checkers: as configured, else one per processor (at most 8;
 * the broker's thread and the I/O thread need some too). */
static unsigned
s_verify_threads(const struct conf *c)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (c->broker.limits.verify_threads > 0)
		return (unsigned)c->broker.limits.verify_threads;
	return n < 1 ? 1 : n > 8 ? 8 : (unsigned)n;
}

static int
s_head(void *arg, uint64_t seq, const uint8_t *rec, size_t len)
{
	(void)arg;
	(void)seq;
	(void)rec;
	(void)len;
	return 1;
}

/* The fill levels warned of, in percent of what the store may use before
 * new messages are refused; a level is left again only some way below
 * it, so that a store hovering there does not warn over and over. */
static const unsigned s_space_levels[] = {80, 90, 95};
#define S_SPACE_NLEVELS (sizeof s_space_levels / sizeof *s_space_levels)
#define S_SPACE_SLACK 5

/* The highest level at or below `pct`, 0 when none. */
static unsigned
s_space_level(unsigned pct)
{
	unsigned level = 0;

	for (size_t i = 0; i < S_SPACE_NLEVELS; i++)
		if (pct >= s_space_levels[i])
			level = s_space_levels[i];
	return level;
}

/* Reads the store's usage (for the metrics too) and warns when it
 * reaches another level on its way to STORE_FULL, and when it refuses
 * new messages: the audit log and the message ids the store keeps for
 * their window grow with the traffic (docs/configuration.md, "Sizing
 * map_size"), and the operator should hear of it before.  A message is
 * refused as soon as it does not leave room for its copies, so a store
 * of large messages is full below 100%. */
static void
s_check_space(struct broker *b)
{
	unsigned pct, level;

	if (store_usage(b->store, &b->space_used, &b->space_size,
		&b->space_limit) != STORE_OK ||
	    b->space_limit == 0)
		return;
	pct = b->space_used >= b->space_limit
	    ? 100
	    : (unsigned)(b->space_used * 100 / b->space_limit);
	level = s_space_level(pct);
	if (level > b->space_level) {
		log_warnx("store: %u%% full (%llu of the %llu bytes it may use "
			  "before new messages are refused with STORE_FULL); "
			  "raise broker.limits.map_size and restart "
			  "(docs/configuration.md, \"Sizing map_size\")",
		    pct, (unsigned long long)b->space_used,
		    (unsigned long long)b->space_limit);
		b->space_level = level;
	} else if (b->space_level > 0 && pct + S_SPACE_SLACK < b->space_level) {
		b->space_level = s_space_level(pct + S_SPACE_SLACK);
		if (b->space_level == 0)
			log_notice("store: %u%% full, below the warning levels "
				   "again",
			    pct);
	}
	if (b->store_full && !b->space_full_warned) {
		log_warnx("store: full: new messages are refused with "
			  "STORE_FULL (%u%% of what it may use is in use; a "
			  "message must leave room for the pages it copies, "
			  "and pages freed by the last commit are used again "
			  "only after the next); raise broker.limits.map_size "
			  "and restart",
		    pct);
		b->space_full_warned = true;
	} else if (!b->store_full && pct + S_SPACE_SLACK < s_space_levels[0]) {
		b->space_full_warned = false;
	}
}

/* The longest retention of the configuration's agreements, and at least
 * the dedup window. */
static uint64_t
s_longest_retention_ms(const struct conf *c)
{
	uint64_t ms = c->broker.limits.dedup_window * 1000;

	for (size_t i = 0; i < c->nagreements; i++)
		if ((uint64_t)c->agreements[i].retention_days * 86400000 > ms)
			ms = (uint64_t)c->agreements[i].retention_days *
			    86400000;
	return ms;
}

struct broker *
broker_new(const struct broker_opts *opts)
{
	struct broker *b = calloc(1, sizeof(*b));
	struct diags *d = diags_new();
	struct keys_error kerr;
	struct store_opts so = {0};
	struct transport_opts to = {0};
	char err[512];

	if (b == NULL || d == NULL)
		fatalx("out of memory");
	/* Bursts free and allocate the same memory again: keep freed memory
	 * (up to this much) instead of returning it after every free;
	 * broker_run gives it back when the traffic pauses. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	/* Setting the trim threshold fixes the mmap threshold too: keep
	 * envelopes (up to max_message_size) on the heap as well. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	b->opts = *opts;
	b->now_ms = b->started_ms = s_now_ms();
	b->conf =
	    conf_load(opts->conf_path, (int32_t)(b->now_ms / 86400000), d);
	diags_print(d, stderr);
	diags_destroy(&d);
	if (b->conf == NULL)
		fatalx("%s: configuration has errors, not starting",
		    opts->conf_path);
	b->keys =
	    keys_secret_read(b->conf->broker.key_file, KEYS_BROKER, &kerr);
	if (b->keys == NULL)
		fatalx("%s", kerr.msg);
	b->router = router_new(b->conf);
	b->cache = merkle_cache_new(4096);
	b->parties = calloc(b->conf->nparties + 1, sizeof(*b->parties));
	b->depth_group = 1;
	for (size_t i = 0; i < BROKER_GROUPS; i++)
		if (group_init(&b->groups[i], b->audit_head) != 0)
			fatalx("out of memory");
	b->open = &b->groups[0];
	b->hot = hot_new(BROKER_HOT_SLOTS, BROKER_HOT_BYTES, BROKER_HOT_ONE);
	b->verify =
	    verify_pool_new(s_verify_threads(b->conf), BROKER_VERIFY_QUEUE);
	if (b->router == NULL || b->cache == NULL || b->parties == NULL ||
	    b->hot == NULL || b->verify == NULL)
		fatalx("out of memory");
	so.dir = b->conf->broker.data_dir;
	so.map_size = b->conf->broker.limits.map_size;
	so.no_sync = opts->no_sync;
	so.upgrade_case_until_ms = s_now_ms() + s_longest_retention_ms(b->conf);
	b->store = store_open(&so, err, sizeof err);
	if (b->store == NULL)
		fatalx("store: %s", err);
	if (store_upgraded_from(b->store) != 0)
		log_notice("store: %s upgraded from layout %llu; its cases are "
			   "kept for the longest retention_days from now",
		    so.dir, (unsigned long long)store_upgraded_from(b->store));
	if (store_audit_each(
		b->store, UINT64_MAX, s_head, NULL, b->audit_head) != STORE_OK)
		fatalx("store: cannot read the audit chain: %s",
		    store_error(b->store));
	memcpy(b->audit_durable, b->audit_head, AUDIT_HASH_LEN);
	b->seq_last = store_last_seq_open(b->store);
	b->writer = writer_new(b->store, err, sizeof err);
	if (b->writer == NULL)
		fatalx("store: %s", err);
	b->admin = admin_new(b->store, err, sizeof err);
	if (b->admin == NULL)
		fatalx("%s", err);
	to.endpoints = b->conf->broker.endpoints;
	to.nendpoints = b->conf->broker.nendpoints;
	to.server_secret = b->keys->transport_sk;
	to.admit = s_admit;
	to.admit_arg = b;
	/* An envelope plus the frame around it. */
	to.max_message = broker_frame_limit(b);
	b->max_message_start = b->conf->broker.limits.max_message_size;
	to.admin_path = b->conf->broker.admin_socket;
	b->tp = transport_new(&to, err, sizeof err);
	if (b->tp == NULL)
		fatalx("%s", err);
	transport_watch_fd(b->tp, verify_wake_fd(b->verify));
	transport_watch_fd(b->tp, writer_fd(b->writer));
	transport_watch_fd(b->tp, admin_fd(b->admin));
	for (size_t i = 0; transport_endpoint(b->tp, i, err, sizeof err) == 0;
	     i++)
		log_info("listening endpoint=%s", err);
	if (b->conf->broker.metrics != NULL) {
		b->metrics =
		    metrics_new(b->conf->broker.metrics, err, sizeof err);
		if (b->metrics == NULL)
			fatalx("%s", err);
		log_info("metrics address=%s port=%u", b->conf->broker.metrics,
		    metrics_port(b->metrics));
	}
	s_check_space(b);
	if (b->metrics != NULL)
		stats_publish(b);
	/* Last: the file tells tests that everything is listening. */
	if (s_write_endpoints(b) != 0)
		fatal("cannot write %s", opts->endpoint_file);
	log_notice("ready parties=%zu routes=%zu agreements=%zu data=%s",
	    b->conf->nparties, b->conf->nroutes, b->conf->nagreements,
	    b->conf->broker.data_dir);
	notify_ready("serving");
	return b;
}

static void
s_free_session(struct session *s)
{
	transport_account_release(&s->acct);
	frame_bundle_free(&s->out);
	deliver_free(s);
	free(s->inflight);
	free(s);
}

void
broker_destroy(struct broker **bp)
{
	struct broker *b;

	if (bp == NULL || *bp == NULL)
		return;
	b = *bp;
	submit_drop_waiting(b);
	verify_pool_destroy(&b->verify);
	while (b->nenv_spare > 0)
		env_destroy(&b->env_spare[--b->nenv_spare]);
	admin_destroy(&b->admin);
	/* A group still in the writer's hands is finished unanswered. */
	writer_destroy(&b->writer);
	store_abort(&b->txn);
	for (size_t i = 0; i < BROKER_GROUPS; i++)
		group_free(&b->groups[i]);
	hot_destroy(&b->hot);
	for (size_t i = 0; i < b->peers.cap; i++)
		if (b->peers.keys != NULL && b->peers.keys[i] != NULL)
			s_free_session(b->peers.vals[i]);
	idmap_free(&b->sessions);
	idmap_free(&b->peers);
	for (size_t i = 0; i < b->party_accts.cap; i++)
		if (b->party_accts.keys != NULL &&
		    b->party_accts.keys[i] != NULL) {
			struct party_account *pa = b->party_accts.vals[i];
			transport_account_release(&pa->acct);
			transport_account_release(&pa->outside);
			free(pa);
		}
	idmap_free(&b->party_accts);
	free(b->outq);
	for (size_t i = 0; i < b->refusal_log.cap; i++)
		if (b->refusal_log.keys != NULL &&
		    b->refusal_log.keys[i] != NULL) {
			s_refusal_summary(b->refusal_log.vals[i]);
			free(b->refusal_log.vals[i]);
		}
	idmap_free(&b->refusal_log);
	metrics_destroy(&b->metrics);
	stats_free(&b->stats);
	transport_destroy(&b->tp);
	store_close(&b->store);
	router_destroy(&b->router);
	merkle_cache_destroy(&b->cache);
	keys_secret_destroy(&b->keys);
	conf_destroy(&b->conf);
	free(b->parties);
	free(b);
	*bp = NULL;
}

/* No transaction could begin: warned about once a minute (the timers
 * try every second). */
static void
s_begin_failed(struct broker *b, const char *why)
{
	b->txn_broken = true;
	b->txn_failed++;
	if (b->now_ms >= b->txn_warned_ms + 60000) {
		log_warnx("store: cannot begin a transaction (%llu times since "
			  "the last warning): %s",
		    (unsigned long long)b->txn_failed, why);
		b->txn_warned_ms = b->now_ms;
		b->txn_failed = 0;
	}
}

/* A group was stored, or not (`rc`): the audit chain's head moves on or
 * goes back; its answers wait for s_finish. */
static void
s_settled(struct broker *b, struct group *g, const struct writer_result *r)
{
	g->rc = r->rc;
	if (!r->began) {
		s_begin_failed(b, r->err);
	} else {
		b->txn_broken = false;
		if (r->commit_s >= 0)
			stats_observe(&b->stats.commit, r->commit_s);
	}
	if (r->rc == STORE_OK) {
		memcpy(b->audit_durable, b->audit_head, AUDIT_HASH_LEN);
		b->stats.commits++;
		return;
	}
	/* The group's audit records were not kept. */
	memcpy(b->audit_head, b->audit_durable, AUDIT_HASH_LEN);
	if (g->failed != 0)
		log_warnx("what this group decided is undone: %s",
		    schakel_errname(g->failed));
	else if (g->audit_rc != 0)
		log_warnx("audit: a record could not be written; what this "
			  "group decided is undone: %s",
		    r->err);
	else if (r->began)
		log_warnx("store: commit failed: %s", r->err);
}

/* Takes the writer's result when it is done (waiting for it with
 * `wait`).  True when no group is in its hands any more. */
static bool
s_take_writer(struct broker *b, bool wait)
{
	struct writer_result r;

	if (b->fly == NULL || b->fly_done)
		return true;
	if (!writer_take(b->writer, wait, &r))
		return false;
	s_settled(b, b->fly, &r);
	b->fly_done = true;
	return true;
}

/* Has every session read its queue again (after a commit that did not
 * happen). */
static void
s_rescan_all(struct broker *b)
{
	for (size_t i = 0; i < b->sessions.cap; i++) {
		struct session *s;
		if (b->sessions.keys == NULL || b->sessions.keys[i] == NULL)
			continue;
		s = b->sessions.vals[i];
		deliver_rescan(s);
		s->dirty = true;
	}
}

/* Answers those who waited for a stored group (or one that failed), and
 * forgets what the broker kept about it meanwhile. */
static void
s_finish(struct broker *b, struct group *g)
{
	size_t gi = (size_t)(g - b->groups);
	int code = g->prep_code;

	if (g->rc != STORE_OK) {
		/* Nor its acknowledgements: what was taken off the
		 * sessions' lists is in the queues again; read them again
		 * so it is delivered again. */
		s_rescan_all(b);
		if (g->failed != 0)
			code = g->failed;
		else if (g->rc == STORE_FULL || g->audit_rc == STORE_FULL)
			code = SCHAKEL_E_STORE_FULL;
		else if (g->audit_rc != 0)
			code = SCHAKEL_E_AUDIT_FAILED;
		else
			code = SCHAKEL_E_UNAVAILABLE;
		/* The next group takes no new message: what the full store
		 * undid with this one (acknowledgements, delivery counts,
		 * dead letters) is recorded again there and must not fail
		 * again for the same new messages.  The writer applies a
		 * group of its own again without them (group_again); a
		 * group stored in the broker's own transaction cannot be,
		 * as that holds writes made outside the group too. */
		if (code == SCHAKEL_E_STORE_FULL) {
			b->store_full = true;
			b->open->refuse_puts = true;
		}
	}
	/* A large group leaves LMDB's dirty pages, and the copies it pushed
	 * out of the hot cache, freed but held by the allocator: given back
	 * when the traffic pauses (not after every group, which would make
	 * the next one fault its pages in again). */
	if (g->npend >= 256)
		b->trim_due = true;
	/* Counted again by submit_finish_group (BROKER_ACKS_MAX). */
	b->acks_flowing = 0;
	if (g->npend > 0)
		submit_finish_group(b, g, code);
	for (size_t i = 0; i < b->conf->nparties; i++)
		b->parties[i].adds[gi] = 0;
	/* Queue depths are read again. */
	b->depth_group++;
	group_reset(g);
	if (g == b->fly) {
		b->fly = NULL;
		b->fly_done = false;
	}
}

/* Answers for the writer's group when it is done. */
static void
s_finish_fly(struct broker *b)
{
	if (b->fly != NULL && b->fly_done)
		s_finish(b, b->fly);
}

/* Closes the open group (the writer must be idle; `done`, a group it
 * finished that is not answered yet, or NULL): the next records go to
 * another one.  Returns the closed one. */
static struct group *
s_close_open(struct broker *b, const struct group *done)
{
	struct group *g = b->open;

	for (size_t i = 0; i < BROKER_GROUPS; i++)
		if (&b->groups[i] != g && &b->groups[i] != done &&
		    &b->groups[i] != b->fly) {
			b->open = &b->groups[i];
			break;
		}
	/* Three groups, at most two of them taken. */
	assert(b->open != g);
	return g;
}

/* Hands the open group to the writer (which must be idle; `done` as
 * for s_close_open). */
static void
s_hand_over(struct broker *b, const struct group *done)
{
	struct group *g = s_close_open(b, done);

	submit_prepare_group(b, g);
	b->fly = g;
	b->fly_done = false;
	writer_start(b->writer, group_apply, group_again, g);
}

struct store_txn *
broker_txn(struct broker *b)
{
	if (b->txn == NULL) {
		/* One writer at a time: the writer thread's group first. */
		s_take_writer(b, true);
		if (store_begin(b->store, &b->txn) != STORE_OK) {
			s_begin_failed(b, store_error(b->store));
			b->txn = NULL;
			return NULL;
		}
		b->txn_broken = false;
	}
	/* What the open group recorded so far comes first.  A failure
	 * spoils the transaction, or (a record that could not be made)
	 * leaves the group failed: s_commit_direct applies it again and
	 * does not commit then. */
	(void)group_apply(b->open, b->txn);
	return b->txn;
}

void
broker_txn_drop(struct broker *b)
{
	store_abort(&b->txn);
	group_rewind(b->open);
	memcpy(b->audit_head, b->audit_durable, AUDIT_HASH_LEN);
	b->open->audit_rc = 0;
}

uint64_t
broker_next_seq(struct broker *b)
{
	return ++b->seq_last;
}

static struct refusal_window *
s_refusal_window(struct broker *b, const char *party);

/* Records an audit record in the open group.  One that cannot be
 * recorded fails the group: nothing is decided unlogged. */
static void
s_audit_write(struct broker *b, const struct audit_event *ev)
{
	int rc = group_audit(b->open, ev);

	if (rc != SCHAKEL_OK) {
		log_warnx(
		    "audit: cannot record event=%s", audit_kind_name(ev->kind));
		b->open->failed = SCHAKEL_E_AUDIT_FAILED;
	}
}

bool
broker_rate_take(struct rate *r, double per_s, double burst, uint64_t now_ms)
{
	if (r->at_ms == 0) {
		r->tokens = burst;
		r->at_ms = now_ms;
	}
	if (now_ms > r->at_ms) {
		r->tokens += (double)(now_ms - r->at_ms) / 1000.0 * per_s;
		r->at_ms = now_ms;
	}
	if (r->tokens > burst)
		r->tokens = burst;
	if (r->tokens < 1.0)
		return false;
	r->tokens -= 1.0;
	return true;
}

/* Whether a refusal is summed rather than recorded on its own: one of a
 * rate limit (a record each would let a client over its rate fill the
 * store as fast as it can send), and every refusal while the store is
 * full (it keeps room back for acknowledgements and dead letters, which
 * a client retrying at its full rate would eat). */
static bool
s_summed(const struct broker *b, const struct audit_event *ev)
{
	return ev->kind == AUDIT_REFUSED &&
	    (b->store_full || ev->code == SCHAKEL_E_RATE_LIMITED);
}

void
broker_audit(struct broker *b, const struct audit_event *ev)
{
	struct refusal_window *w;

	/* Summed per party, written once a minute (s_audit_summaries). */
	if (s_summed(b, ev) && (w = s_refusal_window(b, ev->from)) != NULL) {
		if (w->unrecorded++ == 0)
			w->unrecorded_ms = b->now_ms;
		w->unrecorded_code = (int)ev->code;
		return;
	}
	s_audit_write(b, ev);
}

/* The summed refusals of each party as one record (event refused, the
 * last refusal's code, count): those a minute old, or all when `all`;
 * those of a full store as soon as it is no longer full. */
static void
s_audit_summaries(struct broker *b, bool all)
{
	for (size_t i = 0; i < b->refusal_log.cap; i++) {
		struct refusal_window *w;
		struct audit_event ev = {
		    .kind = AUDIT_REFUSED, .time_ms = b->now_ms};

		if (b->refusal_log.keys == NULL ||
		    b->refusal_log.keys[i] == NULL)
			continue;
		w = b->refusal_log.vals[i];
		if (w->unrecorded == 0 ||
		    (!all &&
			(b->store_full ||
			    w->unrecorded_code == SCHAKEL_E_RATE_LIMITED) &&
			b->now_ms < w->unrecorded_ms + 60000))
			continue;
		text_copy(ev.from, sizeof ev.from, w->party);
		ev.code = (uint32_t)w->unrecorded_code;
		ev.count = w->unrecorded;
		s_audit_write(b, &ev);
		w->unrecorded = 0;
	}
}

void
broker_audit_about(
    struct audit_event *ev, const struct store_msg *m, const char *recipient)
{
	ev->seq = m->seq;
	ev->has_id = true;
	memcpy(ev->id, m->id, AUDIT_ID_LEN);
	text_copy(ev->from, sizeof ev->from, m->sender);
	text_copy(ev->type, sizeof ev->type, m->type);
	text_copy(ev->case_ref, sizeof ev->case_ref, m->case_ref);
	ev->n_to = 1;
	text_copy(ev->to[0], sizeof ev->to[0], recipient);
	ev->n_agreements = 0;
	for (size_t i = 0; i < m->n_recipients; i++)
		if (strcmp(m->recipients[i], recipient) == 0) {
			text_copy(ev->agreements[0], sizeof ev->agreements[0],
			    m->agreements[i]);
			ev->n_agreements = 1;
			break;
		}
}

/* Marks a session whose client does not read what it is sent: nothing
 * more goes to it, and it is dropped at the end of the turn
 * (s_drop_marked), not at once: the pump and the timers hold it while
 * they send. */
static void
s_mark_slow(struct broker *b, struct session *s)
{
	s->slow = true;
	b->slow_due = true;
}

/* Whether more waits unsent than a session may have: its connection
 * over BROKER_UNSENT_HARD, or its party's connections together over
 * BROKER_UNSENT_PARTY. */
static bool
s_over(const struct session *s)
{
	return transport_account_unsent(s->acct) > BROKER_UNSENT_HARD ||
	    transport_account_unsent(s->party_acct) > BROKER_UNSENT_PARTY;
}

/* Sends one ZeroMQ message to `peer`, counted on the account of its
 * session `s` (NULL: it has none).  A session is slow when more waits
 * than it may have (s_over), before the message (a session of a party
 * whose other connections, or sessions ended on them, hold too much) or
 * after it, or when ZeroMQ's queue for it is full (SNDHWM).  Returns
 * true when the message was queued. */
static bool
s_transmit(struct broker *b, const struct transport_peer *peer,
    struct session *s, const uint8_t *p, size_t n)
{
	enum transport_sent rc;

	if (s != NULL && !s->slow && s_over(s))
		s_mark_slow(b, s);
	if (s != NULL && s->slow)
		return false;
	rc = transport_send(b->tp, peer, p, n, s != NULL ? s->acct : NULL);
	if (s != NULL && (rc == TRANSPORT_FULL || s_over(s)))
		s_mark_slow(b, s);
	if (s != NULL && rc == TRANSPORT_GONE) {
		s->gone = true;
		b->slow_due = true;
	}
	if (s != NULL && rc == TRANSPORT_QUEUED)
		s->tx_ok++;
	return rc == TRANSPORT_QUEUED;
}

/* Sends the session's bundle now; it stays in the outq, if there.  A
 * slow session's is dropped. */
static void
s_send_out(struct broker *b, struct session *s)
{
	const uint8_t *p;
	size_t n;

	if (!s->slow && frame_bundle_finish(&s->out, &p, &n) &&
	    s_transmit(b, &s->peer, s, p, n)) {
		b->stats.messages_out++;
		b->stats.frames_out += s->out.count;
	}
	frame_bundle_reset(&s->out);
}

void
broker_flush_out(struct broker *b)
{
	for (size_t i = 0; i < b->nout; i++) {
		s_send_out(b, b->outq[i]);
		b->outq[i]->out_queued = false;
	}
	b->nout = 0;
}

/* Takes the session off the outq, its bundle sent (it is going away). */
static void
s_unqueue_out(struct broker *b, struct session *s)
{
	if (!s->out_queued)
		return;
	s_send_out(b, s);
	for (size_t i = 0; i < b->nout; i++)
		if (b->outq[i] == s) {
			b->outq[i] = b->outq[--b->nout];
			break;
		}
	s->out_queued = false;
}

size_t
broker_frame_limit(const struct broker *b)
{
	return b->conf->broker.limits.max_message_size + 65536;
}

size_t
broker_max_message(const struct broker *b)
{
	size_t now = b->conf->broker.limits.max_message_size;

	return now < b->max_message_start ? now : b->max_message_start;
}

/* Makes room in the session's bundle for a frame of n bytes: queues the
 * session for the end of the turn, and sends what the bundle holds first
 * when the frame would take it past its limit.  Returns false when the
 * frame must be sent on its own, after what the bundle holds: a large
 * frame (bundling saves nothing there, and would keep a buffer of its
 * size), or no memory to queue the session. */
static bool
s_bundle_room(struct broker *b, struct session *s, size_t n)
{
	/* What a peer must take in one message, and no more than the
	 * memory a bundle keeps: a turn's deliveries for a recipient (in
	 * batch traffic 800 and more, 1.5 MiB) go as several bundles rather
	 * than one that grows by doubling (copying all it holds each time)
	 * and is freed again after each turn. */
	size_t limit = broker_max_message(b);

	if (limit > FRAME_BUNDLE_KEEP - FRAME_BUNDLE_HEAD)
		limit = FRAME_BUNDLE_KEEP - FRAME_BUNDLE_HEAD;
	if (n > BROKER_BUNDLE_ALONE) {
		s_send_out(b, s);
		return false;
	}
	if (!s->out_queued) {
		if (b->nout == b->capout) {
			size_t cap = b->capout > 0 ? 2 * b->capout : 16;
			struct session **q = realloc(b->outq, cap * sizeof(*q));
			if (q == NULL)
				return false;
			b->outq = q;
			b->capout = cap;
		}
		b->outq[b->nout++] = s;
		s->out_queued = true;
	}
	if (s->out.count == FRAME_BUNDLE_MAX ||
	    (s->out.count > 0 && frame_bundle_size_with(&s->out, n) > limit))
		s_send_out(b, s);
	return true;
}

/* Sends one frame as a ZeroMQ message of its own to `peer`, whose
 * session is `s` (or NULL). */
static void
s_send_alone(struct broker *b, const struct transport_peer *peer,
    struct session *s, const uint8_t *p, size_t n)
{
	if (s_transmit(b, peer, s, p, n)) {
		b->stats.messages_out++;
		b->stats.frames_out++;
	}
}

void
broker_send_raw(struct broker *b, const struct transport_peer *peer,
    const uint8_t *p, size_t n)
{
	struct session *s = idmap_get(&b->peers, peer->id, peer->len);

	if (s != NULL && (s->slow || s->gone))
		return; /* it goes at the end of the turn */
	if (s != NULL && s->bundles && s_bundle_room(b, s, n)) {
		if (frame_bundle_add_raw(&s->out, p, n) == SCHAKEL_OK)
			return;
		s_send_out(b, s); /* what came before goes first */
	}
	s_send_alone(b, peer, s, p, n);
}

void
broker_ping(struct broker *b, struct session *s)
{
	struct frame p = {.kind = FRAME_PING};

	p.u.ping_ms = b->now_ms;
	broker_send(b, &s->peer, &p);
	s->last_sent_ms = b->now_ms;
}

void
broker_send(
    struct broker *b, const struct transport_peer *peer, const struct frame *f)
{
	struct session *s = idmap_get(&b->peers, peer->id, peer->len);
	struct codec_buf buf = {0};
	size_t n;
	int rc;

	if (s != NULL && (s->slow || s->gone))
		return; /* it goes at the end of the turn */
	/* A per-message frame is encoded straight into the bundle: no
	 * buffer of its own, no copy (a Deliver carries the whole
	 * envelope). */
	if (s != NULL && s->bundles &&
	    (n = frame_encoded_size(f)) != SIZE_MAX && s_bundle_room(b, s, n)) {
		if (frame_bundle_add_sized(&s->out, f, n) == SCHAKEL_OK)
			return;
		s_send_out(b, s); /* what came before goes first */
	}
	rc = frame_encode(f, &buf);
	if (rc != SCHAKEL_OK) {
		log_warnx("cannot encode a frame kind=%d: %s", (int)f->kind,
		    schakel_errname(rc));
		return;
	}
	if (s != NULL && s->bundles)
		broker_send_raw(b, peer, buf.data, buf.len);
	else
		s_send_alone(b, peer, s, buf.data, buf.len);
	codec_buf_clear(&buf);
}

void
broker_refuse(struct broker *b, const struct transport_peer *peer,
    uint64_t corr_id, int code, const uint8_t *message_id)
{
	struct frame f;

	frame_refusal(&f, corr_id, code, message_id);
	broker_send(b, peer, &f);
	if (code >= 0 && code < 64)
		b->stats.refused[code]++;
}

/* The party's refusal window, made when it has none; NULL when memory
 * ran out. */
static struct refusal_window *
s_refusal_window(struct broker *b, const char *party)
{
	struct refusal_window *w =
	    idmap_get(&b->refusal_log, party, strlen(party));
	void *old;

	if (w != NULL)
		return w;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	text_copy(w->party, sizeof w->party, party);
	if (idmap_put(&b->refusal_log, w->party, strlen(w->party), w, &old) !=
	    0) {
		free(w);
		return NULL;
	}
	w->start_ms = b->now_ms;
	return w;
}

void
broker_log_refusal(struct broker *b, const char *party, int code)
{
	struct refusal_window *w = s_refusal_window(b, party);

	if (w == NULL)
		return;
	if (b->now_ms >= w->start_ms + 60000) {
		s_refusal_summary(w);
		w->start_ms = b->now_ms;
		w->logged = w->suppressed = 0;
	}
	w->last_code = code;
	if (w->logged < BROKER_REFUSALS_LOGGED) {
		w->logged++;
		log_info(
		    "refused party=%s code=%s", party, schakel_errname(code));
	} else {
		w->suppressed++;
	}
}

struct session *
broker_session(struct broker *b, const char *party)
{
	return idmap_get(&b->sessions, party, strlen(party));
}

/* The accounts of `party`, made at its first connection; NULL when out
 * of memory. */
static struct party_account *
s_party_accounts(struct broker *b, const char *party)
{
	struct party_account *pa =
	    idmap_get(&b->party_accts, party, strlen(party));
	void *old;

	if (pa != NULL)
		return pa;
	pa = calloc(1, sizeof(*pa));
	if (pa == NULL)
		return NULL;
	text_copy(pa->party, sizeof pa->party, party);
	pa->acct = transport_account_new(NULL);
	pa->outside = transport_account_new(NULL);
	if (pa->acct == NULL || pa->outside == NULL ||
	    idmap_put(
		&b->party_accts, pa->party, strlen(pa->party), pa, &old) != 0) {
		transport_account_release(&pa->acct);
		transport_account_release(&pa->outside);
		free(pa);
		return NULL;
	}
	return pa;
}

/* The account of all the connections of `party` (sessions). */
static struct transport_account *
s_party_account(struct broker *b, const char *party)
{
	struct party_account *pa = s_party_accounts(b, party);

	return pa != NULL ? pa->acct : NULL;
}

/* Refuses what message `m` brought.  To a connection without a session
 * (no Hello yet, or dropped) the refusal is counted on its party's
 * account of such refusals, and not sent once that holds its most
 * (BROKER_UNSENT_OUTSIDE). */
static void
s_refuse_from(
    struct broker *b, const struct transport_msg *m, uint64_t corr_id, int code)
{
	struct party_account *pa;
	struct codec_buf buf = {0};
	struct frame f;

	if (idmap_get(&b->peers, m->peer.id, m->peer.len) != NULL) {
		broker_refuse(b, &m->peer, corr_id, code, NULL);
		return;
	}
	if (code >= 0 && code < 64)
		b->stats.refused[code]++;
	pa = s_party_accounts(b, m->party);
	if (pa == NULL ||
	    transport_account_unsent(pa->outside) > BROKER_UNSENT_OUTSIDE)
		return;
	frame_refusal(&f, corr_id, code, NULL);
	if (frame_encode(&f, &buf) == SCHAKEL_OK)
		(void)transport_send(
		    b->tp, &m->peer, buf.data, buf.len, pa->outside);
	codec_buf_clear(&buf);
}

size_t
broker_party_unsent(const struct broker *b, const char *party)
{
	const struct party_account *pa =
	    idmap_get(&b->party_accts, party, strlen(party));

	return pa != NULL ? transport_account_unsent(pa->acct) : 0;
}

/* Ends a session: its deliveries go back to waiting in the store. */
static void s_receive_on(struct broker *b, struct session *s);

/* Whether `s` stands by: it granted credit while another session of
 * its party received, and can still take over. */
static bool
s_is_standby(const struct session *s)
{
	return !s->receiving && s->credit > 0 && !s->slow && !s->gone;
}

/* The standby of `party` that was heard from last. */
static struct session *
s_standby(const struct broker *b, const char *party)
{
	struct session *best = NULL;

	for (size_t i = 0; i < b->peers.cap; i++) {
		struct session *s;
		if (b->peers.keys == NULL || b->peers.keys[i] == NULL)
			continue;
		s = b->peers.vals[i];
		if (!s_is_standby(s) || strcmp(s->party, party) != 0)
			continue;
		if (best == NULL || s->last_seen_ms > best->last_seen_ms)
			best = s;
	}
	return best;
}

/* Hands `party`'s deliveries to its standby, if it has one. */
static void
s_promote(struct broker *b, const char *party)
{
	struct session *s = s_standby(b, party);

	if (s != NULL) {
		log_info(
		    "party=%s receives on its standby connection now", party);
		s_receive_on(b, s);
		s->dirty = true;
	}
}

static void
s_drop_session(struct broker *b, struct session *s, const char *why)
{
	struct audit_event ev = {
	    .kind = AUDIT_DISCONNECTED, .time_ms = b->now_ms};

	log_info("disconnected party=%s reason=%s", s->party, why);
	s_unqueue_out(b, s);
	text_copy(ev.from, sizeof ev.from, s->party);
	broker_audit(b, &ev);
	deliver_forget(b, s);
	idmap_del(&b->peers, s->peer.id, s->peer.len);
	if (s->receiving)
		idmap_del(&b->sessions, s->party, strlen(s->party));
	s_free_session(s);
	/* Its party's standby, if any, receives now. */
	if (!b->stopping && broker_session(b, ev.from) == NULL)
		s_promote(b, ev.from);
}

/* The sessions of `party`: how many, the one heard from longest ago
 * (*oldest, may be NULL) and when the latest was (*last_seen_ms). */
static size_t
s_sessions_of(const struct broker *b, const char *party,
    struct session **oldest, uint64_t *last_seen_ms)
{
	struct session *old = NULL;
	uint64_t last = 0;
	size_t n = 0;

	for (size_t i = 0; i < b->peers.cap; i++) {
		struct session *s;
		if (b->peers.keys == NULL || b->peers.keys[i] == NULL)
			continue;
		s = b->peers.vals[i];
		if (strcmp(s->party, party) != 0)
			continue;
		n++;
		if (s->last_seen_ms > last)
			last = s->last_seen_ms;
		if (old == NULL || s->last_seen_ms < old->last_seen_ms)
			old = s;
	}
	if (oldest != NULL)
		*oldest = old;
	if (last_seen_ms != NULL)
		*last_seen_ms = last;
	return n;
}

size_t
broker_connections(
    const struct broker *b, const char *party, uint64_t *last_seen_ms)
{
	return s_sessions_of(b, party, NULL, last_seen_ms);
}

size_t
broker_parties_connected(const struct broker *b)
{
	bool *seen = calloc(b->conf->nparties + 1, sizeof(*seen));
	size_t n = 0;

	if (seen == NULL)
		return b->sessions.len; /* those receiving, at least */
	for (size_t i = 0; i < b->peers.cap; i++) {
		const struct conf_party *p;
		if (b->peers.keys == NULL || b->peers.keys[i] == NULL)
			continue;
		p = conf_party_by_id(
		    b->conf, ((const struct session *)b->peers.vals[i])->party);
		if (p != NULL && !seen[p->index]) {
			seen[p->index] = true;
			n++;
		}
	}
	free(seen);
	return n;
}

/* Makes room for one more session of `party`: ends the one heard from
 * longest ago when it has BROKER_PARTY_SESSIONS. */
static void
s_party_room(struct broker *b, const char *party)
{
	struct session *oldest = NULL;

	if (s_sessions_of(b, party, &oldest, NULL) >= BROKER_PARTY_SESSIONS)
		s_drop_session(b, oldest, "too many connections of the party");
}

/* `s` receives for its party from now on (it has no receiving session:
 * s_credit, s_promote).  Its queue is read from the start: what a
 * session before it had in flight or held back is found again. */
static void
s_receive_on(struct broker *b, struct session *s)
{
	void *old;

	if (s->receiving)
		return;
	if (idmap_put(&b->sessions, s->party, strlen(s->party), s, &old) != 0)
		return; /* no memory: broker_standby_timers tries again */
	s->receiving = true;
	deliver_rescan(s);
}

/* Credit from `s`.  It receives when its party has no receiving
 * session; otherwise it is a standby, its credit kept, and the one
 * receiving is sent a Ping: a connection closed (a process stopped or
 * restarted) is found so at the end of this turn, and the standby
 * receives then (s_drop_session), as it does when the receiving session
 * misses its heartbeats or is dropped as a slow consumer.  One process
 * receives for a party at a time, the others wait (RabbitMQ's single
 * active consumer): two that took the deliveries from each other with
 * every Credit had them delivered twice and counted towards the dead
 * letters. */
static void
s_credit(struct broker *b, struct session *s, uint32_t n)
{
	struct session *cur;

	if (n > 0 && !s->receiving) {
		cur = broker_session(b, s->party);
		if (cur == NULL) {
			s_receive_on(b, s);
		} else {
			broker_ping(b, cur);
		}
	}
	if (n > 0 || s->receiving)
		deliver_credit(b, s, n);
}

void
broker_standby_timers(struct broker *b)
{
	/* A standby of a party that receives nowhere (a promotion that
	 * found no memory for the map, say) takes over. */
	for (size_t i = 0; i < b->peers.cap; i++) {
		struct session *s;
		if (b->peers.keys == NULL || b->peers.keys[i] == NULL)
			continue;
		s = b->peers.vals[i];
		if (s_is_standby(s) && broker_session(b, s->party) == NULL) {
			s_promote(b, s->party);
			return; /* once a call: it changed b->sessions */
		}
	}
}

/* Warns that a session is dropped as a slow consumer: once a minute a
 * party, with the drops since (each is logged as a disconnection). */
static void
s_warn_slow(struct broker *b, const struct session *s)
{
	const struct conf_party *p = conf_party_by_id(b->conf, s->party);
	struct party_state *ps = p != NULL ? &b->parties[p->index] : NULL;
	double mib =
	    (double)transport_account_unsent(s->acct) / (1024.0 * 1024.0);
	double all =
	    (double)transport_account_unsent(s->party_acct) / (1024.0 * 1024.0);
	char again[96] = "";

	if (ps != NULL && ps->slow_warned_ms > 0 &&
	    b->now_ms < ps->slow_warned_ms + 60000) {
		ps->slow_again++;
		return;
	}
	if (ps != NULL && ps->slow_again > 0)
		snprintf(again, sizeof again,
		    "; dropped so %llu more times since the last warning",
		    (unsigned long long)ps->slow_again);
	log_warnx("slow consumer: party=%s unsent=%.1fMiB (%.1fMiB on all its "
		  "connections): not reading what the broker sends (at most "
		  "%d MiB or %d messages may wait for a connection, %d MiB "
		  "for a party); session dropped, its deliveries in flight "
		  "go back to its queue%s",
	    s->party, mib, all, BROKER_UNSENT_HARD >> 20, TRANSPORT_SNDHWM,
	    BROKER_UNSENT_PARTY >> 20, again);
	if (ps != NULL) {
		ps->slow_warned_ms = b->now_ms;
		ps->slow_again = 0;
	}
}

/* Drops the sessions marked slow or gone (s_transmit), a bounded number
 * a call (the rest at the next), a slow one with a line an operator can
 * act on.  Called at the end of a turn, when nothing holds a session. */
static void
s_drop_marked(struct broker *b)
{
	struct session *drop[64];
	size_t ndrop = 0;

	if (!b->slow_due)
		return;
	b->slow_due = false;
	for (size_t i = 0; i < b->peers.cap; i++) {
		struct session *s;
		if (b->peers.keys == NULL || b->peers.keys[i] == NULL)
			continue;
		s = b->peers.vals[i];
		if (!s->slow && !s->gone)
			continue;
		if (ndrop == 64) {
			b->slow_due = true;
			break;
		}
		drop[ndrop++] = s;
	}
	for (size_t i = 0; i < ndrop; i++) {
		if (!drop[i]->slow) {
			s_drop_session(b, drop[i], "connection closed");
			continue;
		}
		s_warn_slow(b, drop[i]);
		b->stats.slow_dropped++;
		s_drop_session(b, drop[i], "slow consumer");
	}
}

static void
s_hello(struct broker *b, const struct transport_msg *m, const struct frame *f)
{
	const struct frame_hello *h = &f->u.hello;
	const struct conf_party *party;
	struct session *s, *old;
	struct frame w = {.corr_id = f->corr_id, .kind = FRAME_WELCOME};
	struct audit_event ev = {.kind = AUDIT_CONNECTED, .time_ms = b->now_ms};
	void *dup;

	if (strcmp(h->protocol, FRAME_PROTOCOL) != 0) {
		s_refuse_from(b, m, f->corr_id, SCHAKEL_E_PROTOCOL);
		return;
	}
	if (strcmp(h->party_id, m->party) != 0) {
		s_refuse_from(b, m, f->corr_id,
		    conf_party_by_id(b->conf, h->party_id) != NULL
			? SCHAKEL_E_FORGED_SENDER
			: SCHAKEL_E_UNKNOWN_PARTY);
		return;
	}
	/* Gone from the configuration since the connection was made. */
	party = conf_party_by_id(b->conf, m->party);
	if (party == NULL) {
		s_refuse_from(b, m, f->corr_id, SCHAKEL_E_UNKNOWN_PARTY);
		return;
	}
	if (!broker_rate_take(&b->parties[party->index].hellos,
		BROKER_HELLO_RATE, BROKER_HELLO_BURST, b->now_ms)) {
		struct audit_event no = {.kind = AUDIT_REFUSED,
		    .time_ms = b->now_ms,
		    .code = SCHAKEL_E_RATE_LIMITED};
		s_refuse_from(b, m, f->corr_id, SCHAKEL_E_RATE_LIMITED);
		text_copy(no.from, sizeof no.from, m->party);
		broker_audit(b, &no); /* summed */
		broker_log_refusal(b, m->party, SCHAKEL_E_RATE_LIMITED);
		return;
	}
	/* A party may have several sessions; a Hello on a connection that
	 * has one starts it afresh. */
	old = idmap_get(&b->peers, m->peer.id, m->peer.len);
	if (old != NULL)
		s_drop_session(b, old, "hello again");
	s_party_room(b, m->party);
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		s_refuse_from(b, m, f->corr_id, SCHAKEL_E_NO_MEMORY);
		return;
	}
	text_copy(s->party, sizeof s->party, m->party);
	s->peer = m->peer;
	s->bundles = h->bundles;
	s->last_seen_ms = s->last_sent_ms = b->now_ms;
	s->party_acct = s_party_account(b, s->party);
	if (s->party_acct != NULL)
		s->acct = transport_account_new(s->party_acct);
	if (s->acct == NULL ||
	    idmap_put(&b->peers, s->peer.id, s->peer.len, s, &dup) != 0) {
		s_free_session(s);
		s_refuse_from(b, m, f->corr_id, SCHAKEL_E_NO_MEMORY);
		return;
	}
	log_info("connected party=%s software=%s", s->party, h->software);
	text_copy(ev.from, sizeof ev.from, s->party);
	broker_audit(b, &ev);
	text_copy(
	    w.u.welcome.protocol, sizeof w.u.welcome.protocol, FRAME_PROTOCOL);
	snprintf(
	    w.u.welcome.broker_id, sizeof w.u.welcome.broker_id, "schakel");
	memcpy(w.u.welcome.broker_sign_key, b->keys->pub.sign, FRAME_KEY_LEN);
	w.u.welcome.server_time_ms = b->now_ms;
	w.u.welcome.heartbeat_ms =
	    (uint32_t)(b->conf->broker.limits.heartbeat * 1000);
	w.u.welcome.max_message_bytes = (uint32_t)broker_max_message(b);
	w.u.welcome.max_credit = BROKER_MAX_CREDIT;
	/* Only to a client that asked: one made before bundles would refuse
	 * a field it does not know. */
	w.u.welcome.bundles = h->bundles;
	broker_send(b, &s->peer, &w);
}

/* Handles one inbound frame, data[0..len): a message, or one frame of a
 * bundle, which must not be a bundle again (s_dispatch opens bundles). */
static void
s_handle(struct broker *b, const struct transport_msg *m, const uint8_t *data,
    size_t len)
{
	struct frame f;
	struct session *s;
	int rc;

	rc = frame_decode(data, len, broker_frame_limit(b), &f);
	if (rc == SCHAKEL_OK && f.kind == FRAME_BUNDLE) {
		frame_clear(&f);
		rc = SCHAKEL_E_MALFORMED;
	}
	if (rc != SCHAKEL_OK) {
		broker_log_refusal(b, m->party, rc);
		s_refuse_from(b, m, 0, rc);
		return;
	}
	if (f.kind == FRAME_HELLO) {
		s_hello(b, m, &f);
		frame_clear(&f);
		return;
	}
	s = idmap_get(&b->peers, m->peer.id, m->peer.len);
	if (s == NULL || strcmp(s->party, m->party) != 0) {
		s_refuse_from(b, m, f.corr_id, SCHAKEL_E_PROTOCOL);
		frame_clear(&f);
		return;
	}
	s->last_seen_ms = b->now_ms;
	switch (f.kind) {
	case FRAME_RESOLVE:
		submit_resolve(b, m, &f);
		break;
	case FRAME_SUBMIT:
		submit_envelope(b, m, &f);
		break;
	case FRAME_CREDIT:
		s_credit(b, s, f.u.credit);
		break;
	case FRAME_ACK:
	case FRAME_NACK:
		deliver_ack(b, s, &f, f.kind == FRAME_NACK);
		break;
	case FRAME_PING: {
		struct frame p = {.corr_id = f.corr_id, .kind = FRAME_PONG};
		p.u.ping_ms = f.u.ping_ms;
		broker_send(b, &m->peer, &p);
		break;
	}
	case FRAME_PONG:
		break;
	default:
		broker_refuse(b, &m->peer, f.corr_id, SCHAKEL_E_PROTOCOL, NULL);
		break;
	}
	frame_clear(&f);
}

/* Handles one inbound message: a frame, or each frame of a bundle in
 * turn.  Returns the number of frames. */
static int
s_dispatch(struct broker *b, const struct transport_msg *m)
{
	struct frame f;
	struct frame_bytes in;
	size_t off = 0;
	int n = 0;

	b->in_unit++;
	if (!transport_peer_generated(&m->peer)) {
		/* Told once a message (a reply: no session is ever made). */
		broker_log_refusal(b, m->party, SCHAKEL_E_PROTOCOL);
		s_refuse_from(b, m, 0, SCHAKEL_E_PROTOCOL);
		b->stats.messages_in++;
		return 1;
	}
	/* A bundle's frames are read in place, from the message. */
	if (!frame_is_bundle(m->data, m->len) ||
	    frame_decode(m->data, m->len, broker_frame_limit(b), &f) !=
		SCHAKEL_OK) {
		s_handle(b, m, m->data, m->len);
		b->stats.messages_in++;
		b->stats.frames_in++;
		return 1;
	}
	while (frame_bundle_next(&f.u.bundle, &off, &in)) {
		s_handle(b, m, in.data, in.len);
		n++;
	}
	b->stats.messages_in++;
	b->stats.frames_in += (uint64_t)n;
	frame_clear(&f);
	return n;
}

/* Stores the open group in the broker thread's own transaction (the
 * writer is idle: broker_txn waited for it) and answers for it. */
static int
s_commit_direct(struct broker *b)
{
	struct group *g = b->open;
	struct writer_result r = {.began = true, .commit_s = -1};

	s_finish_fly(b);
	submit_prepare_group(b, g);
	r.rc = group_apply(g, b->txn);
	if (r.rc == STORE_OK) {
		uint64_t t0 = stats_now_us();
		r.rc = store_commit(&b->txn);
		r.commit_s = (double)(stats_now_us() - t0) / 1e6;
	} else {
		store_abort(&b->txn);
	}
	if (r.rc != STORE_OK)
		text_copy(r.err, sizeof r.err, store_error(b->store));
	s_settled(b, g, &r);
	/* Its answers may record refusals: in the next group. */
	s_finish(b, s_close_open(b, NULL));
	return r.rc;
}

/* The end of a turn: what it answered goes out; a group the writer
 * finished is answered; the open group goes to the writer when it is
 * idle (else it grows until then: the group commit).  A transaction of
 * the broker thread's own is committed here.  Returns STORE_OK, or why
 * that transaction's changes were not kept. */
static int
s_flush(struct broker *b)
{
	broker_flush_out(b);
	s_take_writer(b, false);
	if (b->txn == NULL && b->fly != NULL && b->fly_done &&
	    !group_empty(b->open)) {
		/* The writer goes on with the open group first; its last
		 * one is answered meanwhile. */
		struct group *done = b->fly;
		b->fly = NULL;
		b->fly_done = false;
		s_hand_over(b, done);
		s_finish(b, done);
		return STORE_OK;
	}
	s_finish_fly(b);
	if (b->txn != NULL)
		return s_commit_direct(b);
	if (b->fly == NULL && !group_empty(b->open))
		s_hand_over(b, NULL);
	return STORE_OK;
}

void
broker_writer_check(struct broker *b)
{
	/* The writer waits for the broker to notice that it is done, and a
	 * turn's work (inbound frames, verified submissions) takes
	 * milliseconds: 1.8 ms a group in bench_broker's batch phase. */
	if (b->txn == NULL && b->fly != NULL && !b->fly_done &&
	    writer_finished(b->writer))
		(void)s_flush(b);
}

/* Stores everything decided so far before it returns (admin commands,
 * a reload, the stop).  Returns STORE_OK, or why it was not kept. */
static int
s_flush_sync(struct broker *b)
{
	broker_flush_out(b);
	s_take_writer(b, true);
	s_finish_fly(b);
	if (b->txn == NULL && group_empty(b->open))
		return STORE_OK;
	if (broker_txn(b) == NULL) {
		/* Failed as a group (broker_txn warned and marked the store
		 * broken); nothing of it was applied. */
		b->open->rc = STORE_ERROR;
		s_finish(b, s_close_open(b, NULL));
		return STORE_ERROR;
	}
	return s_commit_direct(b);
}

/* Warns about changed settings that only a restart applies. */
static void
s_startup_only(
    const struct broker *b, const struct conf *old, const struct conf *new)
{
	const struct conf_broker *o = &old->broker, *n = &new->broker;
	bool eps = o->nendpoints != n->nendpoints;

	for (size_t i = 0; !eps && i < o->nendpoints; i++)
		eps = strcmp(o->endpoints[i], n->endpoints[i]) != 0;
	if (eps)
		log_warnx("reload: broker.endpoints changed; the new endpoints "
			  "take effect at the next restart");
	if (strcmp(o->data_dir, n->data_dir) != 0)
		log_warnx("reload: broker.data_dir changed; it takes effect at "
			  "the next restart");
	if (strcmp(o->key_file, n->key_file) != 0)
		log_warnx("reload: broker.key_file changed; it takes effect at "
			  "the next restart");
	if (o->limits.map_size != n->limits.map_size)
		log_warnx("reload: broker.limits.map_size changed; it takes "
			  "effect at the next restart");
	if (n->limits.max_message_size > b->max_message_start &&
	    n->limits.max_message_size != o->limits.max_message_size)
		log_warnx("reload: broker.limits.max_message_size grew; "
			  "messages above %zu bytes are taken after the next "
			  "restart",
		    b->max_message_start);
	if (o->archive_dir != NULL &&
	    (n->archive_dir == NULL || strcmp(o->archive_dir, n->archive_dir)))
		log_warnx("reload: broker.audit_archive.dir changed or was "
			  "removed; audit verify and export read archived "
			  "records only from the folder configured now, so "
			  "move the files from %s there",
		    o->archive_dir);
	if (o->limits.verify_threads != n->limits.verify_threads)
		log_warnx("reload: broker.limits.verify_threads changed; it "
			  "takes effect at the next restart");
}

int
broker_flush(struct broker *b)
{
	return s_flush_sync(b);
}

int
broker_reload(struct broker *b, struct diags *d)
{
	struct conf *c;
	struct router *r;
	struct party_state *parties;
	struct session *drop[256];
	size_t ndrop = 0;
	struct audit_event ev = {
	    .kind = AUDIT_CONFIG_LOADED, .time_ms = b->now_ms};

	notify_reloading();
	c = conf_load(b->opts.conf_path, (int32_t)(b->now_ms / 86400000), d);
	for (size_t i = 0; i < diags_len(d); i++) {
		const struct diag *x = diags_at(d, i);
		if (x->severity == DIAG_ERROR)
			log_warnx("reload: %s:%u:%u: %s", x->mark.file,
			    x->mark.line, x->mark.col, x->msg);
		else
			log_notice("reload: %s:%u:%u: warning: %s",
			    x->mark.file, x->mark.line, x->mark.col, x->msg);
	}
	if (c == NULL) {
		log_warnx("reload: %s has errors, not reloading; the running "
			  "configuration stays",
		    b->opts.conf_path);
		b->stats.reloads_refused++;
		notify_ready("serving; the last reload was refused");
		return -1;
	}
	r = router_new(c);
	parties = calloc(c->nparties + 1, sizeof(*parties));
	if (r == NULL || parties == NULL) {
		router_destroy(&r);
		free(parties);
		conf_destroy(&c);
		log_warnx("reload: out of memory, not reloading");
		notify_ready("serving; the last reload failed");
		return -1;
	}
	s_startup_only(b, b->conf, c);
	c->generation = b->conf->generation + 1;
	/* Parties that are gone lose their connections; their queues stay.
	 * Collected, then dropped (a drop moves the map's entries), 256 at
	 * a time until none is left. */
	do {
		ndrop = 0;
		for (size_t i = 0; i < b->peers.cap && ndrop < 256; i++) {
			struct session *s;
			if (b->peers.keys == NULL || b->peers.keys[i] == NULL)
				continue;
			s = b->peers.vals[i];
			if (conf_party_by_id(c, s->party) == NULL)
				drop[ndrop++] = s;
		}
		for (size_t i = 0; i < ndrop; i++)
			broker_drop(
			    b, drop[i], "removed from the configuration");
	} while (ndrop == 256);
	router_destroy(&b->router);
	conf_destroy(&b->conf);
	free(b->parties);
	b->conf = c;
	b->router = r;
	b->parties = parties;
	snprintf(ev.purpose, sizeof ev.purpose, "generation-%llu",
	    (unsigned long long)c->generation);
	broker_audit(b, &ev);
	b->stats.reloads_ok++;
	log_notice("reloaded generation=%llu parties=%zu routes=%zu "
		   "agreements=%zu",
	    (unsigned long long)c->generation, c->nparties, c->nroutes,
	    c->nagreements);
	notify_ready("serving");
	return 0;
}

/* Forgets message ids whose dedup window has ended (and the receipts
 * kept with them), a bounded number per call so a turn stays short. */
static void
s_expire_dedup(struct broker *b)
{
	struct store_txn *t;
	size_t removed = 0;
	unsigned due = 0;

	/* Read first: no write transaction (and no wait for the writer
	 * thread) when none is due. */
	if (b->txn == NULL &&
	    store_due(b->store, b->now_ms, 0, &due) == STORE_OK &&
	    (due & STORE_DUE_DEDUP) == 0)
		return;
	t = broker_txn(b);
	if (t == NULL)
		return;
	if (store_expire_dedup(t, b->now_ms, 10000, &removed) != STORE_OK)
		log_warnx("store: cannot expire message ids: %s",
		    store_error(b->store));
	else if (removed > 0)
		log_debug("expired message ids count=%zu", removed);
	s_flush(b);
}

/* On the way out: what is in flight comes again after the restart, with
 * its delivery count kept. */
static void
s_end_sessions(struct broker *b)
{
	for (size_t i = 0; i < b->sessions.cap; i++)
		if (b->sessions.keys != NULL && b->sessions.keys[i] != NULL)
			deliver_forget(b, b->sessions.vals[i]);
	s_audit_summaries(b, true);
	s_flush_sync(b);
}

/* Adds the connections ZAP refused since the last look. */
static void
s_take_refused(struct broker *b)
{
	struct transport_refused r;

	transport_take_refused(b->tp, &r);
	if (r.count == 0)
		return;
	r.count += b->refused.count;
	b->refused = r;
}

/* One line for the refused connections not yet logged (the caller keeps
 * it to one a minute, not one a try), naming the last one's address and
 * key so an operator can find the client or the party whose key is
 * missing from the configuration. */
static void
s_log_refused(struct broker *b)
{
	const struct transport_refused *r = &b->refused;
	char key[KEYS_TEXT_MAX] = "none";

	if (r->count == 0)
		return;
	if (r->has_key)
		keys_encode(KEYS_X25519, r->key, key);
	log_warnx("refused %llu connection attempts with unknown transport "
		  "keys; the last from %s offered key %s, which no party in "
		  "the configuration declares",
	    (unsigned long long)r->count,
	    r->addr[0] != '\0' ? r->addr : "an unknown address", key);
	b->refused.count = 0;
	b->refused_logged_ms = b->now_ms;
}

int
broker_run(struct broker *b, volatile sig_atomic_t *stop,
    volatile sig_atomic_t *reload)
{
	uint64_t next_timers = 0;

	while (!*stop) {
		struct transport_msg m;
		int n = 0, rc;
		long timeout;

		/* The open group is full while the writer stores the one
		 * before: nothing can be taken in until it is done. */
		if (b->open->npend == BROKER_DRAIN_MAX && b->fly != NULL) {
			s_take_writer(b, true);
			s_flush(b);
		}
		/* Verified envelopes the last turn had no room for: no
		 * waiting.  With the verifiers' queue full, wait for them
		 * rather than for traffic that cannot be taken in yet. */
		if (verify_room(b->verify) < BROKER_ROOM_MIN &&
		    !verify_ready(b->verify))
			verify_wait(b->verify);
		timeout = verify_ready(b->verify) || b->pump_more ? 0 : 100;
		rc = transport_poll(b->tp, timeout);
		if (rc < 0 && errno != EINTR) {
			log_warn("transport: poll failed");
			s_end_sessions(b);
			broker_flush_out(b);
			return 1;
		}
		verify_clear_wake(b->verify);
		if (rc == 0 && timeout > 0 && b->trim_due) {
			malloc_trim(0);
			for (size_t i = 0; i < BROKER_GROUPS; i++)
				if (&b->groups[i] != b->fly)
					group_trim(&b->groups[i]);
			b->trim_due = false;
		}
		b->now_ms = s_now_ms();
		notify_watchdog(b->now_ms);
		if (*reload) {
			struct diags *d = diags_new();
			*reload = 0;
			/* Between two messages: the group so far is
			 * committed under the configuration it was checked
			 * with. */
			s_flush_sync(b);
			if (d != NULL)
				broker_reload(b, d);
			diags_destroy(&d);
		}
		/* New envelopes go to the verifiers; those verified
		 * meanwhile join this turn's group. */
		while (n < BROKER_DRAIN_MAX &&
		    verify_room(b->verify) >= BROKER_ROOM_MIN &&
		    transport_recv(b->tp, &m) == 1) {
			n += s_dispatch(b, &m);
			broker_writer_check(b);
		}
		verify_start(b->verify);
		submit_collect(b);
		{
			char req[ADMIN_REQ_MAX];
			struct transport_client c;
			size_t len;
			admin_poll(b);
			if (transport_admin_recv(
				b->tp, &c, req, sizeof req, &len) == 1) {
				/* Between two messages: first commit what the
				 * turn decided. */
				s_flush_sync(b);
				admin_handle(b, &c, req, len);
			}
		}
		s_flush(b);
		if (b->now_ms >= next_timers) {
			deliver_timers(b);
			broker_standby_timers(b);
			next_timers = b->now_ms + 100;
			/* A dead letter of the timers (a nack's, say) is
			 * committed before the pump reads the queues again;
			 * the counts of deliveries that timed out are in the
			 * open group, which the pump reads too. */
			if (b->txn != NULL)
				s_flush(b);
			s_take_refused(b);
			if (b->now_ms >= b->refused_logged_ms + 60000)
				s_log_refused(b);
		}
		deliver_pump(b);
		/* Redeliveries' counts and dead letters of the pump. */
		if (b->txn != NULL)
			s_flush(b);
		if (b->now_ms >= b->metrics_at_ms + 1000) {
			s_check_space(b);
			stats_publish(b);
			b->metrics_at_ms = b->now_ms;
		}
		if (b->now_ms >= b->expire_at_ms + 1000) {
			deliver_expire(b);
			deliver_retention(b);
			admin_archive_tick(b);
			s_audit_summaries(b, false);
			b->expire_at_ms = b->now_ms;
			if (b->txn != NULL)
				s_flush(b);
			/* In a transaction of its own: a failure there
			 * must not undo the expiry and retention above. */
			deliver_forget_cases(b);
			if (b->txn != NULL)
				s_flush(b);
		}
		if (b->now_ms >= b->dedup_at_ms + 10000) {
			s_expire_dedup(b);
			b->dedup_at_ms = b->now_ms;
		}
		broker_flush_out(b);
		s_drop_marked(b);
	}
	s_take_refused(b);
	s_log_refused(b);
	admin_stop(b);
	log_notice("stopping: finishing the commit in progress");
	b->stopping = true;
	stats_publish(b);
	notify_stopping();
	/* Envelopes already taken in are checked and answered. */
	while (verify_pending(b->verify) > 0) {
		verify_wait(b->verify);
		submit_collect(b);
		s_flush_sync(b);
	}
	s_end_sessions(b);
	/* Answering the last groups may record more (refusals of a full
	 * store, summed): stored too, a few rounds at most. */
	for (int i = 0; i < 4 && !group_empty(b->open); i++)
		s_flush_sync(b);
	broker_flush_out(b);
	return 0;
}

void
broker_drop(struct broker *b, struct session *s, const char *why)
{
	s_drop_session(b, s, why);
}
