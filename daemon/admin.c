/*
 * admin: the commands of schakelctl, run on the broker's thread between
 * two turns of the loop, so they see and change state consistently.
 * Writes (redeliver, purge, reload) go through the same group commit as
 * everything else and are audited.  The audit walks (verify, export)
 * read the whole log, which grows with the traffic: they run on a thread
 * of their own, one at a time, while the broker goes on routing and
 * answering the other commands.
 */
#include "admin.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "broker.h"
#include "log.h"
#include "schakel-config.h"
#include "schakel_err.h"
#include "text.h"

#include <sys/eventfd.h>
#include <unistd.h>

#define S_MAX_ARGS 16
/* The records an audit walk reads in one read transaction: a long one
 * would keep the writer from reusing the pages freed meanwhile. */
#define S_WALK_CHUNK 65536
/* The longest export answer: it is built in memory (the broker's and
 * schakelctl's) before it is sent, so the broker holds up to three times
 * as much while it answers (the buffer's growth, ZeroMQ's copy). */
#define S_EXPORT_MAX ((size_t)32 << 20)
#define S_DAY_MS 86400000ULL
/* The most records an archive round moves (a file of some 30 MB; the
 * broker thread removes them from the store in one transaction). */
#define S_ARCHIVE_MAX 100000

struct s_req {
	const char *argv[S_MAX_ARGS];
	int argc;
	bool json;
	struct metrics_text out;
	bool failed;
};

/* The audit walk in progress, if any. */
struct admin {
	struct store *store;
	int fd; /* readable when the walk is done */
	bool running;
	pthread_t thread;
	atomic_bool cancel; /* the broker stops: end the walk */
	atomic_bool done;
	/* The folder of the audit archive ("" when none), as of the walk's
	 * start (a reload may change the configuration meanwhile). */
	char archive_dir[4096];
	/* A walk for schakelctl: who asked, and what. */
	struct transport_client client;
	char req[ADMIN_REQ_MAX];
	struct s_req r;
	/* Or an archive round of the broker's own. */
	bool archiving;
	uint64_t cutoff_ms, started_ms;
	struct archive_round round;
	uint64_t archive_next_ms; /* when to look for records due again */
	uint64_t archive_warned_ms;
};

static void s_fail(struct s_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
s_fail(struct s_req *r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	metrics_text_free(&r->out);
	metrics_printf(&r->out, "error: %s\n", msg);
	r->failed = true;
}

/* Writes a JSON string with escapes. */
static void
s_jstr(struct metrics_text *t, const char *s)
{
	metrics_printf(t, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			metrics_printf(t, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			metrics_printf(t, "\\u%04x", *p);
		else
			metrics_printf(t, "%c", *p);
	}
	metrics_printf(t, "\"");
}

static void
s_hex(char *out, const uint8_t *in, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static bool
s_uint(const char *s, uint64_t *out)
{
	const char *why;

	return units_parse_uint(s, UINT64_MAX, out, &why) == 0;
}

static void
s_status(struct broker *b, struct s_req *r)
{
	uint64_t used = 0, size = 0, limit = 0, refused = 0, archived = 0;
	size_t connected = broker_parties_connected(b);
	const char *adir = b->conf->broker.archive_dir;
	uint8_t ahash[STORE_HASH_LEN];
	char audit[4400];

	store_usage(b->store, &used, &size, &limit);
	(void)store_audit_anchor(b->store, &archived, ahash);
	if (adir != NULL)
		snprintf(audit, sizeof audit,
		    "records older than %u days archived to %s; up to record "
		    "%llu so far",
		    (unsigned)b->conf->broker.archive_after_days, adir,
		    (unsigned long long)archived);
	else if (archived > 0)
		snprintf(audit, sizeof audit,
		    "kept in the store; up to record %llu archived before "
		    "(broker.audit_archive is not configured now)",
		    (unsigned long long)archived);
	else
		snprintf(audit, sizeof audit,
		    "kept in the store (broker.audit_archive is not "
		    "configured)");
	for (int i = 0; i < 64; i++)
		refused += b->stats.refused[i];
	if (r->json) {
		metrics_printf(&r->out, "{\"version\":");
		s_jstr(&r->out, SCHAKEL_VERSION);
		metrics_printf(&r->out, ",\"uptime_s\":%llu,\"config\":",
		    (unsigned long long)((b->now_ms - b->started_ms) / 1000));
		s_jstr(&r->out, b->opts.conf_path);
		metrics_printf(&r->out,
		    ",\"generation\":%llu,\"parties\":%zu,\"connected\":%zu,"
		    "\"store_used_bytes\":%llu,\"store_size_bytes\":%llu,"
		    "\"store_limit_bytes\":%llu,\"accepted\":%llu,"
		    "\"refused\":%llu,\"store_full\":%s,"
		    "\"audit_archived_up_to\":%llu,\"audit_archive\":",
		    (unsigned long long)b->conf->generation, b->conf->nparties,
		    connected, (unsigned long long)used,
		    (unsigned long long)size, (unsigned long long)limit,
		    (unsigned long long)b->stats.accepted,
		    (unsigned long long)refused,
		    b->store_full ? "true" : "false",
		    (unsigned long long)archived);
		if (adir != NULL)
			s_jstr(&r->out, adir);
		else
			metrics_printf(&r->out, "null");
		metrics_printf(&r->out, "}\n");
		return;
	}
	metrics_printf(&r->out,
	    "version      %s\n"
	    "uptime       %llu s\n"
	    "config       %s (generation %llu)\n"
	    "parties      %zu declared, %zu connected\n"
	    "store        %llu of %llu bytes used, new messages refused "
	    "above %llu%s\n"
	    "messages     %llu accepted, %llu refused since start\n"
	    "audit log    %s\n",
	    SCHAKEL_VERSION,
	    (unsigned long long)((b->now_ms - b->started_ms) / 1000),
	    b->opts.conf_path, (unsigned long long)b->conf->generation,
	    b->conf->nparties, connected, (unsigned long long)used,
	    (unsigned long long)size, (unsigned long long)limit,
	    b->store_full ? " (full)" : "",
	    (unsigned long long)b->stats.accepted, (unsigned long long)refused,
	    audit);
}

/* One line of `parties`/`queues`; returns false when skipped. */
static bool
s_party_row(struct broker *b, struct s_req *r, const struct conf_party *p,
    bool only_waiting, bool *first)
{
	const struct session *s = broker_session(b, p->id);
	uint64_t depth = 0, seen_ms = 0;
	size_t ndead = 0, conns = broker_connections(b, p->id, &seen_ms);
	struct store_dead dead[64];

	store_queue_depth(b->store, p->id, &depth);
	store_dead_letters(b->store, p->id, 0, dead, 64, &ndead);
	if (only_waiting && depth == 0 && ndead == 0)
		return false;
	if (r->json) {
		metrics_printf(&r->out, "%s{\"party\":", *first ? "" : ",");
		s_jstr(&r->out, p->id);
		metrics_printf(&r->out, ",\"role\":");
		s_jstr(&r->out, p->role->id);
		metrics_printf(&r->out,
		    ",\"connected\":%s,\"connections\":%zu,\"last_seen_s\":%"
		    "lld,\"queued\":%llu,\"in_flight\":%zu,\"dead_letters\":%"
		    "zu}",
		    conns > 0 ? "true" : "false", conns,
		    conns > 0 ? (long long)((b->now_ms - seen_ms) / 1000)
			      : -1LL,
		    (unsigned long long)depth, s != NULL ? s->ninflight : 0,
		    ndead);
	} else {
		char seen[32], conn[32];
		if (conns > 0) {
			snprintf(seen, sizeof seen, "%llus ago",
			    (unsigned long long)((b->now_ms - seen_ms) / 1000));
			if (conns > 1)
				snprintf(conn, sizeof conn, "yes (%zu)", conns);
			else
				snprintf(conn, sizeof conn, "yes");
		} else {
			snprintf(seen, sizeof seen, "-");
			snprintf(conn, sizeof conn, "no");
		}
		metrics_printf(&r->out,
		    "%-32s %-18s %-9s %-10s %8llu %9zu %6zu%s\n", p->id,
		    p->role->id, conn, seen, (unsigned long long)depth,
		    s != NULL ? s->ninflight : 0, ndead,
		    ndead == 64 ? "+" : "");
	}
	*first = false;
	return true;
}

static void
s_parties(struct broker *b, struct s_req *r, bool only_waiting)
{
	bool first = true;

	if (r->json)
		metrics_printf(&r->out, "[");
	else
		metrics_printf(&r->out, "%-32s %-18s %-9s %-10s %8s %9s %6s\n",
		    "PARTY", "ROLE", "CONNECTED", "LAST SEEN", "QUEUED",
		    "IN FLIGHT", "DEAD");
	for (size_t i = 0; i < b->conf->nparties; i++)
		s_party_row(b, r, &b->conf->parties[i], only_waiting, &first);
	if (r->json)
		metrics_printf(&r->out, "]\n");
	else if (first && only_waiting)
		metrics_printf(&r->out, "(no party has messages waiting)\n");
}

static void
s_deadletters_list(struct broker *b, struct s_req *r, const char *party)
{
	struct store_dead d[256];
	uint64_t after = 0;
	bool first = true;

	if (r->json)
		metrics_printf(&r->out, "[");
	else
		metrics_printf(&r->out, "%-8s %-32s %-22s %-20s %-28s %s\n",
		    "SEQ", "RECIPIENT", "REASON", "WHEN (unix ms)", "TYPE",
		    "FROM");
	for (;;) {
		size_t n = 0;
		if (store_dead_letters(b->store, party, after, d, 256, &n) !=
			STORE_OK ||
		    n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			struct store_msg m;
			bool have = store_get(b->store, d[i].seq, &m, NULL,
					NULL) == STORE_OK;
			after = d[i].seq;
			if (r->json) {
				metrics_printf(&r->out,
				    "%s{\"seq\":%llu,\"recipient\":",
				    first ? "" : ",",
				    (unsigned long long)d[i].seq);
				s_jstr(&r->out, d[i].recipient);
				metrics_printf(&r->out,
				    ",\"reason\":\"%s\","
				    "\"time_ms\":%llu,\"type\":",
				    schakel_errname((int)d[i].code),
				    (unsigned long long)d[i].time_ms);
				s_jstr(&r->out, have ? m.type : "");
				metrics_printf(&r->out, ",\"from\":");
				s_jstr(&r->out, have ? m.sender : "");
				metrics_printf(&r->out, "}");
			} else {
				metrics_printf(&r->out,
				    "%-8llu %-32s %-22s %-20llu %-28s %s\n",
				    (unsigned long long)d[i].seq,
				    d[i].recipient,
				    schakel_errname((int)d[i].code),
				    (unsigned long long)d[i].time_ms,
				    have ? m.type : "?", have ? m.sender : "?");
			}
			first = false;
		}
		if (n < 256)
			break;
	}
	if (r->json)
		metrics_printf(&r->out, "]\n");
	else if (first)
		metrics_printf(&r->out, "(no dead letters)\n");
}

static void
s_deadletter_show(struct broker *b, struct s_req *r, uint64_t seq)
{
	struct store_msg m;
	char id[2 * STORE_ID_LEN + 1];

	if (store_get(b->store, seq, &m, NULL, NULL) != STORE_OK) {
		s_fail(r, "no message with sequence %llu is stored",
		    (unsigned long long)seq);
		return;
	}
	s_hex(id, m.id, STORE_ID_LEN);
	if (r->json) {
		metrics_printf(&r->out, "{\"seq\":%llu,\"id\":\"%s\",\"from\":",
		    (unsigned long long)seq, id);
		s_jstr(&r->out, m.sender);
		metrics_printf(&r->out, ",\"type\":");
		s_jstr(&r->out, m.type);
		metrics_printf(&r->out, ",\"case\":");
		s_jstr(&r->out, m.case_ref);
		metrics_printf(&r->out,
		    ",\"accepted_ms\":%llu,\"expires_ms\":%llu,\"bytes\":%zu,"
		    "\"recipients\":[",
		    (unsigned long long)m.accepted_ms,
		    (unsigned long long)m.expires_ms, m.envelope_len);
		for (size_t i = 0; i < m.n_recipients; i++) {
			metrics_printf(&r->out, "%s", i ? "," : "");
			s_jstr(&r->out, m.recipients[i]);
		}
		metrics_printf(&r->out, "]}\n");
		return;
	}
	metrics_printf(&r->out,
	    "seq          %llu\nid           %s\nfrom         %s\n"
	    "type         %s\ncase         %s\naccepted     %llu (unix ms)\n"
	    "expires      %llu (unix ms)\nenvelope     %zu bytes (encrypted; "
	    "never shown)\nrecipients  ",
	    (unsigned long long)seq, id, m.sender, m.type, m.case_ref,
	    (unsigned long long)m.accepted_ms, (unsigned long long)m.expires_ms,
	    m.envelope_len);
	for (size_t i = 0; i < m.n_recipients; i++)
		metrics_printf(
		    &r->out, " %s (%s)", m.recipients[i], m.agreements[i]);
	metrics_printf(&r->out, "\n");
}

/* redeliver or purge one dead letter. */
static void
s_deadletter_change(struct broker *b, struct s_req *r, bool redeliver,
    const char *party, uint64_t seq)
{
	struct store_txn *t = broker_txn(b);
	struct audit_event ev = {
	    .kind = redeliver ? AUDIT_REDELIVERED : AUDIT_PURGED,
	    .time_ms = b->now_ms,
	    .seq = seq,
	    .n_to = 1};
	struct store_msg m;
	int rc;

	if (t == NULL) {
		s_fail(r, "the store cannot take a change now: %s",
		    store_error(b->store));
		return;
	}
	if (store_get(b->store, seq, &m, NULL, NULL) == STORE_OK)
		broker_audit_about(&ev, &m, party);
	rc = redeliver ? store_redeliver(t, party, seq)
		       : store_purge(t, party, seq);
	if (rc == STORE_NOT_FOUND) {
		s_fail(r, "%s has no dead letter with sequence %llu", party,
		    (unsigned long long)seq);
		return;
	}
	if (rc != STORE_OK) {
		s_fail(r, "%s", store_error(b->store));
		return;
	}
	text_copy(ev.to[0], sizeof ev.to[0], party);
	broker_audit(b, &ev);
	{
		struct session *s = broker_session(b, party);
		if (s != NULL) {
			s->dirty = true;
			deliver_rescan(s); /* back in its place by sequence */
		}
	}
	if (r->json) {
		metrics_printf(&r->out, "{\"%s\":true,\"party\":",
		    redeliver ? "redelivered" : "purged");
		s_jstr(&r->out, party);
		metrics_printf(
		    &r->out, ",\"seq\":%llu}\n", (unsigned long long)seq);
		return;
	}
	metrics_printf(&r->out, "%s seq %llu for %s\n",
	    redeliver ? "queued again:" : "purged:", (unsigned long long)seq,
	    party);
}

struct s_walk {
	struct audit_verifier v;
	struct s_req *r;
	const char *case_ref;        /* export: the case asked for, or */
	const char *party;           /* the party asked for (NULL: by case) */
	uint64_t since_ms, until_ms; /* export: records in [since, until) */
	size_t shown;
	/* Each record, until it returns non-zero. */
	int (*one)(struct s_walk *w, const uint8_t *rec, size_t len);
	const atomic_bool *cancel;
	uint64_t after; /* the sequence of the last record read */
	size_t in_chunk;
	bool stopped; /* `one` said so, or the walk was cancelled */
	struct store *store;
	const char *archive_dir; /* NULL when there is no archive */
	uint64_t anchor;         /* the last record archived, or 0 */
	uint8_t anchor_hash[STORE_HASH_LEN];
	uint64_t first;    /* the first record walked */
	uint64_t archived; /* records walked in the archive's files */
	size_t files;
	bool need_all; /* export: archived records must be read too */
};

static int
s_walk_rec(void *arg, uint64_t seq, const uint8_t *rec, size_t len)
{
	struct s_walk *w = arg;

	w->after = seq;
	if (atomic_load_explicit(w->cancel, memory_order_relaxed) ||
	    w->one(w, rec, len) != 0) {
		w->stopped = true;
		return 1;
	}
	return ++w->in_chunk == S_WALK_CHUNK;
}

/* A record of an archive file, up to the store's anchor (a round that
 * wrote its file but did not get to remove its records from the store
 * leaves them in both). */
static int
s_walk_file_rec(void *arg, uint64_t seq, const uint8_t *rec, size_t len)
{
	struct s_walk *w = arg;
	struct audit_event ev;

	if (seq > w->anchor)
		return 1;
	if (w->first == 0) {
		w->first = seq;
		/* Older files removed (their retention is the operator's):
		 * the chain is checked from the oldest one left. */
		if (seq > 1 &&
		    audit_decode((const char *)rec, len, &ev, w->v.head) != 0)
			memset(w->v.head, 0, sizeof w->v.head);
	}
	w->after = seq;
	w->archived++;
	if (atomic_load_explicit(w->cancel, memory_order_relaxed) ||
	    w->one(w, rec, len) != 0) {
		w->stopped = true;
		return 1;
	}
	return 0;
}

/* Walks the whole log: the archive's files, then the store from its
 * anchor on, S_WALK_CHUNK records a read transaction, to the end of the
 * last; `head` is the chain head the store kept as of then.  Records
 * appended meanwhile are walked too. */
static int
s_walk_all(struct s_walk *w, uint8_t head[STORE_HASH_LEN])
{
	struct store *s = w->store;
	struct archive_span span;
	char err[512];

	if (store_audit_anchor(s, &w->anchor, w->anchor_hash) != STORE_OK) {
		s_fail(w->r, "cannot read the audit log: %s", store_error(s));
		return -1;
	}
	if (w->anchor > 0 && w->archive_dir != NULL) {
		if (archive_each(w->archive_dir, s_walk_file_rec, w, &span, err,
			sizeof err) != 0) {
			s_fail(w->r, "the audit archive: %s", err);
			return -1;
		}
		w->files = span.files;
		if (!w->stopped && w->first != 0 && w->after != w->anchor) {
			s_fail(w->r,
			    "the audit archive in %s ends at record %llu, "
			    "but the store's records go on after %llu: "
			    "archive files are missing",
			    w->archive_dir, (unsigned long long)w->after,
			    (unsigned long long)w->anchor);
			return -1;
		}
	}
	if (w->first == 0 && w->anchor > 0 && w->need_all) {
		s_fail(w->r,
		    "records 1 to %llu of the audit log were archived, but "
		    "%s%s%s: an export without them would be incomplete",
		    (unsigned long long)w->anchor,
		    w->archive_dir != NULL ? "no archive file is in "
					   : "broker.audit_archive is not "
					     "configured",
		    w->archive_dir != NULL ? w->archive_dir : "",
		    w->archive_dir != NULL ? " (moved, or removed?)" : "");
		return -1;
	}
	if (w->first == 0 && w->anchor > 0) {
		/* Archived where this broker does not look (no archive
		 * configured now): checked from the anchor on. */
		memcpy(w->v.head, w->anchor_hash, STORE_HASH_LEN);
		w->first = w->anchor + 1;
	}
	w->after = w->anchor;
	while (!w->stopped) {
		w->in_chunk = 0;
		if (store_audit_each(s, w->after, s_walk_rec, w, head) !=
		    STORE_OK) {
			s_fail(w->r, "cannot read the audit log: %s",
			    store_error(s));
			return -1;
		}
		if (w->in_chunk < S_WALK_CHUNK)
			break;
	}
	if (w->first == 0)
		w->first = 1;
	if (atomic_load(w->cancel)) {
		s_fail(w->r,
		    "the broker is stopping; the walk of the audit "
		    "log was not finished, run it again when the "
		    "broker is back");
		return -1;
	}
	return 0;
}

static int
s_verify_one(struct s_walk *w, const uint8_t *rec, size_t len)
{
	return audit_verify_next(&w->v, (const char *)rec, len) != 0;
}

static void
s_audit_verify(struct s_walk *w)
{
	struct s_req *r = w->r;
	uint8_t head[STORE_HASH_LEN];
	char hex[2 * STORE_HASH_LEN + 1];
	bool ok;

	w->one = s_verify_one;
	if (s_walk_all(w, head) != 0)
		return;
	ok =
	    w->v.first_bad == 0 && memcmp(w->v.head, head, STORE_HASH_LEN) == 0;
	s_hex(hex, w->v.head, STORE_HASH_LEN);
	if (!ok) {
		if (w->v.first_bad != 0)
			s_fail(r, "the audit chain is broken at record %llu%s",
			    (unsigned long long)(w->first + w->v.first_bad - 1),
			    w->v.first_bad <= w->archived ? ", in the archive"
							  : "");
		else
			s_fail(r,
			    "the audit chain's stored head does not match "
			    "its last record");
		return;
	}
	if (r->json)
		metrics_printf(&r->out,
		    "{\"verified\":true,\"records\":%llu,\"from\":%llu,"
		    "\"archived\":%llu,\"archive_files\":%zu,\"head\":\"%s\"}"
		    "\n",
		    (unsigned long long)w->v.records,
		    (unsigned long long)w->first,
		    (unsigned long long)w->archived, w->files, hex);
	else
		metrics_printf(&r->out,
		    "audit chain verified: %llu records from record %llu "
		    "(%llu in %zu archive files, %llu in the store), head "
		    "%s\n",
		    (unsigned long long)w->v.records,
		    (unsigned long long)w->first,
		    (unsigned long long)w->archived, w->files,
		    (unsigned long long)(w->v.records - w->archived), hex);
}

/* Whether a record is about the case asked for, or (with --party)
 * made by or for the party asked for. */
static bool
s_export_match(const struct s_walk *w, const struct audit_event *ev)
{
	if (w->party == NULL)
		return strcmp(ev->case_ref, w->case_ref) == 0;
	if (strcmp(ev->from, w->party) == 0)
		return true;
	for (size_t i = 0; i < ev->n_to; i++)
		if (strcmp(ev->to[i], w->party) == 0)
			return true;
	return false;
}

static int
s_export_one(struct s_walk *w, const uint8_t *rec, size_t len)
{
	struct audit_event ev;
	uint8_t prev[AUDIT_HASH_LEN];

	if (audit_decode((const char *)rec, len, &ev, prev) != 0 ||
	    ev.time_ms < w->since_ms || ev.time_ms >= w->until_ms ||
	    !s_export_match(w, &ev))
		return 0;
	if (w->r->out.len > S_EXPORT_MAX) {
		s_fail(w->r,
		    "the export is larger than %zu MiB; ask for a shorter "
		    "period with --since and --until",
		    S_EXPORT_MAX >> 20);
		return 1;
	}
	if (w->r->json) {
		char id[2 * AUDIT_ID_LEN + 1] = "";
		if (ev.has_id)
			s_hex(id, ev.id, AUDIT_ID_LEN);
		metrics_printf(&w->r->out,
		    "%s{\"time_ms\":%llu,\"event\":\"%s\",\"id\":\"%s\","
		    "\"from\":",
		    w->shown ? "," : "", (unsigned long long)ev.time_ms,
		    audit_kind_name(ev.kind), id);
		s_jstr(&w->r->out, ev.from);
		metrics_printf(&w->r->out, ",\"to\":[");
		for (size_t i = 0; i < ev.n_to; i++) {
			metrics_printf(&w->r->out, "%s", i ? "," : "");
			s_jstr(&w->r->out, ev.to[i]);
		}
		metrics_printf(&w->r->out, "],\"type\":");
		s_jstr(&w->r->out, ev.type);
		metrics_printf(&w->r->out, ",\"case\":");
		s_jstr(&w->r->out, ev.case_ref);
		metrics_printf(&w->r->out, ",\"purpose\":");
		s_jstr(&w->r->out, ev.purpose);
		metrics_printf(&w->r->out, ",\"agreements\":[");
		for (size_t i = 0; i < ev.n_agreements; i++) {
			metrics_printf(&w->r->out, "%s", i ? "," : "");
			s_jstr(&w->r->out, ev.agreements[i]);
		}
		metrics_printf(&w->r->out, "],\"code\":\"%s\",\"count\":%u}",
		    ev.code ? schakel_errname((int)ev.code) : "OK",
		    (unsigned)ev.count);
	} else {
		metrics_printf(
		    &w->r->out, "%.*s\n", (int)len, (const char *)rec);
	}
	w->shown++;
	return 0;
}

static void
s_audit_export(struct s_walk *w)
{
	struct s_req *r = w->r;
	uint8_t head[STORE_HASH_LEN];

	w->one = s_export_one;
	w->need_all = true;
	if (r->json)
		metrics_printf(&r->out, "[");
	if (s_walk_all(w, head) != 0 || r->failed)
		return;
	if (r->json)
		metrics_printf(&r->out, "]\n");
	else if (w->shown == 0)
		metrics_printf(&r->out, "(no audit records about this %s%s)\n",
		    w->party != NULL ? "party" : "case",
		    w->since_ms > 0 || w->until_ms < UINT64_MAX
			? " in that period"
			: "");
}

/* Reads the words of `audit export` into w: --case REF or --party
 * PARTY, and --since DATE and --until DATE (days, UTC, both included).
 * Returns false, with the request failed, when they are wrong. */
static bool
s_export_args(struct s_req *r, struct s_walk *w)
{
	bool ok = r->argc % 2 == 0;

	w->since_ms = 0;
	w->until_ms = UINT64_MAX;
	for (int i = 2; ok && i + 1 < r->argc; i += 2) {
		const char *opt = r->argv[i], *val = r->argv[i + 1], *why;
		bool named = w->case_ref != NULL || w->party != NULL;
		int32_t days;

		if (strcmp(opt, "--case") == 0 && !named) {
			w->case_ref = val;
		} else if (strcmp(opt, "--party") == 0 && !named) {
			w->party = val;
		} else if (strcmp(opt, "--since") == 0 ||
		    strcmp(opt, "--until") == 0) {
			if (units_parse_date(val, &days, &why) != 0) {
				s_fail(r, "%s '%s': %s", opt, val, why);
				return false;
			}
			if (opt[2] == 's')
				w->since_ms = (uint64_t)days * S_DAY_MS;
			else
				w->until_ms = ((uint64_t)days + 1) * S_DAY_MS;
		} else {
			ok = false;
		}
	}
	if (ok && (w->case_ref != NULL || w->party != NULL) &&
	    w->since_ms < w->until_ms)
		return true;
	s_fail(r,
	    "audit export takes --case REF or --party PARTY, and "
	    "may take --since YYYY-MM-DD and --until YYYY-MM-DD (UTC, "
	    "both days included, the first not after the second)");
	return false;
}

/* Whether the request is an audit walk (verify or export; wrong words
 * of an export fail the request); runs it when `a` is not NULL. */
static bool
s_walk_cmd(struct admin *a, struct s_req *r)
{
	const char *cmd = r->argc > 0 ? r->argv[0] : "";
	const char *sub = r->argc > 1 ? r->argv[1] : "";
	struct s_walk w = {.r = r};

	if (strcmp(cmd, "audit") != 0)
		return false;
	if (a != NULL) {
		w.store = a->store;
		w.cancel = &a->cancel;
		w.archive_dir = a->archive_dir[0] ? a->archive_dir : NULL;
	}
	if (strcmp(sub, "verify") == 0 && r->argc == 2) {
		if (a != NULL)
			s_audit_verify(&w);
		return true;
	}
	if (strcmp(sub, "export") != 0)
		return false;
	if (s_export_args(r, &w) && a != NULL)
		s_audit_export(&w);
	return true;
}

static void
s_reload(struct broker *b, struct s_req *r)
{
	struct diags *d = diags_new();

	if (d == NULL) {
		s_fail(r, "out of memory");
		return;
	}
	if (broker_reload(b, d) != 0) {
		metrics_text_free(&r->out);
		metrics_printf(&r->out,
		    "error: %s has errors, not reloading; the running "
		    "configuration stays\n",
		    b->opts.conf_path);
		for (size_t i = 0; i < diags_len(d); i++) {
			const struct diag *x = diags_at(d, i);
			metrics_printf(&r->out, "%s:%u:%u: %s: %s\n",
			    x->mark.file, x->mark.line, x->mark.col,
			    x->severity == DIAG_ERROR ? "error" : "warning",
			    x->msg);
		}
		r->failed = true;
	} else if (r->json) {
		metrics_printf(&r->out, "{\"reloaded\":true,\"config\":");
		s_jstr(&r->out, b->opts.conf_path);
		metrics_printf(&r->out,
		    ",\"generation\":%llu,\"parties\":%zu,\"routes\":%zu}\n",
		    (unsigned long long)b->conf->generation, b->conf->nparties,
		    b->conf->nroutes);
	} else {
		metrics_printf(&r->out,
		    "reloaded %s: generation %llu, %zu parties, %zu routes\n",
		    b->opts.conf_path, (unsigned long long)b->conf->generation,
		    b->conf->nparties, b->conf->nroutes);
	}
	diags_destroy(&d);
}

static void
s_run(struct broker *b, struct s_req *r)
{
	const char *cmd = r->argc > 0 ? r->argv[0] : "";
	const char *sub = r->argc > 1 ? r->argv[1] : "";
	uint64_t seq;

	if (strcmp(cmd, "status") == 0 && r->argc == 1) {
		s_status(b, r);
	} else if (strcmp(cmd, "parties") == 0 && r->argc == 1) {
		s_parties(b, r, false);
	} else if (strcmp(cmd, "queues") == 0 && r->argc == 1) {
		s_parties(b, r, true);
	} else if (strcmp(cmd, "deadletters") == 0 &&
	    strcmp(sub, "list") == 0 && r->argc <= 3) {
		s_deadletters_list(b, r, r->argc == 3 ? r->argv[2] : NULL);
	} else if (strcmp(cmd, "deadletters") == 0 &&
	    strcmp(sub, "show") == 0 && r->argc == 3) {
		if (!s_uint(r->argv[2], &seq))
			s_fail(r, "'%s' is not a sequence number", r->argv[2]);
		else
			s_deadletter_show(b, r, seq);
	} else if (strcmp(cmd, "deadletters") == 0 &&
	    (strcmp(sub, "redeliver") == 0 || strcmp(sub, "purge") == 0) &&
	    r->argc == 4) {
		if (!s_uint(r->argv[3], &seq))
			s_fail(r, "'%s' is not a sequence number", r->argv[3]);
		else if (conf_party_by_id(b->conf, r->argv[2]) == NULL)
			s_fail(r, "unknown party '%s'", r->argv[2]);
		else
			s_deadletter_change(b, r, strcmp(sub, "redeliver") == 0,
			    r->argv[2], seq);
	} else if (strcmp(cmd, "reload") == 0 && r->argc == 1) {
		s_reload(b, r);
	} else {
		s_fail(r, "unknown command; see schakelctl --help");
	}
}

/* Splits a request into words (separated by NUL; "--json" anywhere
 * selects JSON).  Returns false when there are too many. */
static bool
s_parse(struct s_req *r, const char *req, size_t len)
{
	size_t pos = 0;

	while (pos < len && r->argc < S_MAX_ARGS) {
		const char *w = req + pos;
		size_t wl = strnlen(w, len - pos);
		if (strcmp(w, "--json") == 0)
			r->json = true;
		else
			r->argv[r->argc++] = w;
		pos += wl + 1;
	}
	return pos >= len;
}

/* Sends the answer to a request, logs it and frees its text. */
static void
s_answer(struct broker *b, const struct transport_client *c, struct s_req *r)
{
	static const char oom[] =
	    "error: the broker ran out of memory for the answer\n";

	if (r->out.oom) {
		metrics_text_free(&r->out);
		r->failed = true;
		transport_admin_reply(b->tp, c, "", oom, sizeof oom - 1);
	} else {
		/* s_fail put "error: " in front of the sentence itself. */
		transport_admin_reply(b->tp, c, r->failed ? "" : "ok\n",
		    r->out.buf != NULL ? r->out.buf : "", r->out.len);
	}
	log_info("admin command=%s outcome=%s", r->argc > 0 ? r->argv[0] : "?",
	    r->failed ? "error" : "ok");
	metrics_text_free(&r->out);
}

static void *
s_walk_main(void *arg)
{
	struct admin *a = arg;
	uint64_t one = 1;

	if (a->archiving)
		(void)archive_write(a->store, a->archive_dir, a->cutoff_ms,
		    a->started_ms, S_ARCHIVE_MAX, &a->cancel, &a->round);
	else
		(void)s_walk_cmd(a, &a->r);
	atomic_store(&a->done, true);
	(void)!write(a->fd, &one, sizeof one);
	return NULL;
}

/* Starts the walk or round set up in `a` on its thread; returns 0, or
 * -1 when no thread could be started. */
static int
s_thread_start(struct broker *b, struct admin *a)
{
	sigset_t all, old;
	int rc;

	text_copy(a->archive_dir, sizeof a->archive_dir,
	    b->conf->broker.archive_dir != NULL ? b->conf->broker.archive_dir
						: "");
	atomic_store(&a->cancel, false);
	atomic_store(&a->done, false);
	/* Signals are the main thread's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&a->thread, NULL, s_walk_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return -1;
	a->running = true;
	return 0;
}

/* Starts an audit walk on its thread; answers at once when it cannot. */
static void
s_walk_start(struct broker *b, const struct transport_client *c,
    const char *req, size_t len)
{
	struct admin *a = b->admin;

	if (a->running) {
		struct s_req r = {0};
		(void)s_parse(&r, req, len);
		s_fail(&r, "%s; run this one when it is done",
		    a->archiving ? "the broker is archiving old audit records"
				 : "another audit verify or export is "
				   "running");
		s_answer(b, c, &r);
		return;
	}
	memcpy(a->req, req, len);
	a->req[len] = '\0'; /* as in `req`: the last word ends there */
	memset(&a->r, 0, sizeof a->r);
	(void)s_parse(&a->r, a->req, len);
	a->client = *c;
	a->archiving = false;
	if (s_thread_start(b, a) != 0) {
		s_fail(&a->r,
		    "cannot start a thread for the walk of the "
		    "audit log");
		s_answer(b, c, &a->r);
	}
}

/* The store's oldest audit record (after its anchor). */
struct s_oldest {
	bool found, decoded;
	uint64_t time_ms;
};

static int
s_oldest(void *arg, uint64_t seq, const uint8_t *rec, size_t len)
{
	struct s_oldest *o = arg;
	struct audit_event ev;
	uint8_t prev[AUDIT_HASH_LEN];

	(void)seq;
	o->found = true;
	if (audit_decode((const char *)rec, len, &ev, prev) == 0) {
		o->decoded = true;
		o->time_ms = ev.time_ms;
	}
	return 1;
}

/* Reads the store's oldest audit record into *o; -1 when it cannot. */
static int
s_oldest_read(struct broker *b, struct s_oldest *o)
{
	uint8_t hash[STORE_HASH_LEN];
	uint64_t anchor;

	memset(o, 0, sizeof *o);
	if (store_audit_anchor(b->store, &anchor, hash) != STORE_OK ||
	    store_audit_each(b->store, anchor, s_oldest, o, hash) != STORE_OK)
		return -1;
	return 0;
}

uint64_t
admin_audit_oldest_ms(struct broker *b)
{
	struct s_oldest o;

	if (s_oldest_read(b, &o) != 0 || !o.decoded || o.time_ms > b->now_ms)
		return 0;
	return o.time_ms;
}

void
admin_archive_tick(struct broker *b)
{
	struct admin *a = b->admin;
	uint32_t days = b->conf->broker.archive_after_days;
	struct s_oldest o;
	uint64_t cutoff;

	if (a == NULL || a->running || b->conf->broker.archive_dir == NULL ||
	    b->now_ms < a->archive_next_ms ||
	    b->now_ms < (uint64_t)days * S_DAY_MS)
		return;
	a->archive_next_ms = b->now_ms + 60000;
	cutoff = b->now_ms - (uint64_t)days * S_DAY_MS;
	if (s_oldest_read(b, &o) != 0)
		return;
	/* A round a day (when the oldest record is a day past the
	 * cutoff), a file a day's records; more at once only to catch
	 * up (a round stopped at S_ARCHIVE_MAX).  Also when the oldest
	 * does not decode (the round says which) or is dated ahead of now
	 * (archive_write takes it along). */
	if (!a->round.more &&
	    (!o.found ||
		(o.decoded && o.time_ms + S_DAY_MS > cutoff &&
		    o.time_ms <= b->now_ms)))
		return;
	a->archiving = true;
	a->cutoff_ms = cutoff;
	a->started_ms = b->now_ms;
	if (s_thread_start(b, a) != 0)
		log_warnx("audit archive: cannot start a thread; trying again "
			  "in a minute");
}

/* Removes what a round wrote from the store (on the broker's thread:
 * the store's transactions are its and the writer's). */
static void
s_archive_done(struct broker *b, struct admin *a)
{
	struct archive_round *r = &a->round;
	struct store_txn *t;
	int rc = STORE_ERROR;

	if (atomic_load(&a->cancel))
		return; /* stopping: the next start goes on */
	if (r->err[0] != '\0') {
		r->more = false;
		if (b->now_ms >= a->archive_warned_ms + 3600000) {
			log_warnx("audit archive: %s; the records stay in the "
				  "store, trying again every minute",
			    r->err);
			a->archive_warned_ms = b->now_ms;
		}
		return;
	}
	if (r->n == 0 && r->undecodable != 0) {
		r->more = false;
		if (b->now_ms >= a->archive_warned_ms + 3600000) {
			log_warnx("audit archive: audit record %llu does not "
				  "decode, so archiving stops before it; run "
				  "schakelctl audit verify",
			    (unsigned long long)r->undecodable);
			a->archive_warned_ms = b->now_ms;
		}
		return;
	}
	if (r->n == 0)
		return;
	/* A reload meanwhile moved or ended the archive: the records stay
	 * in the store (the file is one the broker does not read now). */
	if (b->conf->broker.archive_dir == NULL ||
	    strcmp(b->conf->broker.archive_dir, a->archive_dir) != 0) {
		r->more = false;
		return;
	}
	/* Alone in its transaction: a failure must not undo the
	 * decisions of a group. */
	if (broker_flush(b) == STORE_OK && (t = broker_txn(b)) != NULL) {
		rc = store_audit_prune(t, r->last, r->last_hash);
		if (rc == STORE_OK)
			rc = broker_flush(b);
		else
			broker_txn_drop(b);
	}
	if (rc != STORE_OK) {
		r->more = false;
		log_warnx("audit archive: %s holds records %llu to %llu, but "
			  "they could not be removed from the store (%s); the "
			  "file is written again in a minute",
		    r->file, (unsigned long long)r->first,
		    (unsigned long long)r->last, store_error(b->store));
		return;
	}
	log_notice("audit archive: %zu records (%llu to %llu) moved to %s",
	    r->n, (unsigned long long)r->first, (unsigned long long)r->last,
	    r->file);
	b->stats.audit_archived += r->n;
	if (r->more)
		a->archive_next_ms = 0;
}

struct admin *
admin_new(struct store *s, char *err, size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		text_copy(err, errlen, "out of memory");
		return NULL;
	}
	a->store = s;
	a->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->fd < 0) {
		text_copy(err, errlen,
		    "cannot make an eventfd for the audit "
		    "walks");
		free(a);
		return NULL;
	}
	return a;
}

int
admin_fd(const struct admin *a)
{
	return a->fd;
}

/* Joins the walk's or round's thread and finishes for it: answers the
 * walk, removes the round's records from the store. */
static void
s_walk_end(struct broker *b, struct admin *a)
{
	uint64_t v;

	/* After the join: the thread has written the eventfd by then, so
	 * the read clears it (a wake left set would end every wait). */
	pthread_join(a->thread, NULL);
	(void)!read(a->fd, &v, sizeof v);
	a->running = false;
	if (a->archiving)
		s_archive_done(b, a);
	else
		s_answer(b, &a->client, &a->r);
}

void
admin_poll(struct broker *b)
{
	struct admin *a = b->admin;

	if (a == NULL || !a->running || !atomic_load(&a->done))
		return;
	s_walk_end(b, a);
	/* A round due waits for no one: walks asked for one after another
	 * would otherwise hold the thread whenever the tick looks. */
	if (!b->stopping)
		admin_archive_tick(b);
}

void
admin_stop(struct broker *b)
{
	struct admin *a = b->admin;

	if (a == NULL || !a->running)
		return;
	atomic_store(&a->cancel, true);
	s_walk_end(b, a);
}

void
admin_destroy(struct admin **ap)
{
	struct admin *a = *ap;

	if (a == NULL)
		return;
	if (a->running) {
		atomic_store(&a->cancel, true);
		pthread_join(a->thread, NULL);
		metrics_text_free(&a->r.out);
	}
	close(a->fd);
	free(a);
	*ap = NULL;
}

void
admin_handle(struct broker *b, const struct transport_client *c,
    const char *req, size_t len)
{
	struct s_req r = {0};

	if (!s_parse(&r, req, len)) {
		s_fail(&r, "too many words in the command");
	} else if (s_walk_cmd(NULL, &r)) {
		if (!r.failed) {
			s_walk_start(b, c, req, len);
			return;
		}
	} else {
		s_run(b, &r);
		/* Admin changes are durable before the answer, or undone
		 * and the answer says so. */
		if (b->txn != NULL && broker_flush(b) != STORE_OK)
			s_fail(&r,
			    "the change could not be stored, so it was not "
			    "made: %s",
			    store_error(b->store));
	}
	s_answer(b, c, &r);
}
