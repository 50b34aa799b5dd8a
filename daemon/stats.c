/*
 * stats: the broker's counters and histograms, rendered in Prometheus
 * text format for the metrics thread.  Labels are bounded sets (party
 * ids, message types, refusal reasons); a case reference never becomes a
 * label.
 */
#include "broker.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "schakel_err.h"
#include "text.h"

static const double s_bounds[STATS_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 10, 60};

uint64_t
stats_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
stats_observe(struct stats_histogram *h, double seconds)
{
	size_t i = 0;

	while (i < STATS_BUCKETS && seconds > s_bounds[i])
		i++;
	if (i < STATS_BUCKETS)
		h->counts[i]++;
	h->n++;
	h->sum += seconds;
}

/* A counter per message type; the key is a copy the map owns. */
struct s_tcount {
	uint64_t n;
	char id[STORE_NAME_MAX + 1];
};

void
stats_count_type(struct broker *b, const char *type)
{
	struct s_tcount *c =
	    idmap_get(&b->stats.accepted_by_type, type, strlen(type));
	void *old;

	if (c == NULL) {
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			return;
		text_copy(c->id, sizeof c->id, type);
		if (idmap_put(&b->stats.accepted_by_type, c->id, strlen(c->id),
			c, &old) != 0) {
			free(c);
			return;
		}
	}
	c->n++;
}

void
stats_free(struct broker_stats *st)
{
	for (size_t i = 0; i < st->accepted_by_type.cap; i++)
		if (st->accepted_by_type.keys != NULL &&
		    st->accepted_by_type.keys[i] != NULL)
			free(st->accepted_by_type.vals[i]);
	idmap_free(&st->accepted_by_type);
}

static void
s_histogram(struct metrics_text *t, const char *name, const char *help,
    const struct stats_histogram *h)
{
	uint64_t cum = 0;

	metrics_printf(
	    t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t i = 0; i < STATS_BUCKETS; i++) {
		cum += h->counts[i];
		metrics_printf(t, "%s_bucket{le=\"%g\"} %llu\n", name,
		    s_bounds[i], (unsigned long long)cum);
	}
	metrics_printf(t,
	    "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n"
	    "%s_count %llu\n",
	    name, (unsigned long long)h->n, name, h->sum, name,
	    (unsigned long long)h->n);
}

static void
s_counter_codes(struct metrics_text *t, const char *name, const char *help,
    const uint64_t *by_code)
{
	metrics_printf(
	    t, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (int code = 1; code < 64; code++)
		if (by_code[code] != 0)
			metrics_printf(t, "%s{reason=\"%s\"} %llu\n", name,
			    schakel_errname(code),
			    (unsigned long long)by_code[code]);
}

void
stats_publish(struct broker *b)
{
	struct metrics_text t = {0};
	const struct broker_stats *st = &b->stats;
	uint64_t used = b->space_used, size = b->space_size;
	uint64_t limit = b->space_limit, oldest;
	size_t connected = 0;
	bool healthy;

	if (b->metrics == NULL)
		return;
	metrics_printf(&t,
	    "# HELP schakel_up 1 while the broker serves.\n"
	    "# TYPE schakel_up gauge\nschakel_up 1\n"
	    "# HELP schakel_uptime_seconds Seconds since the broker started.\n"
	    "# TYPE schakel_uptime_seconds gauge\n"
	    "schakel_uptime_seconds %llu\n"
	    "# HELP schakel_config_generation Configuration reloads applied.\n"
	    "# TYPE schakel_config_generation gauge\n"
	    "schakel_config_generation %llu\n",
	    (unsigned long long)((b->now_ms - b->started_ms) / 1000),
	    (unsigned long long)b->conf->generation);
	metrics_printf(&t,
	    "# HELP schakel_messages_accepted_total Messages "
	    "accepted, by message type.\n"
	    "# TYPE schakel_messages_accepted_total counter\n");
	for (size_t i = 0; i < st->accepted_by_type.cap; i++) {
		const struct s_tcount *c;
		if (st->accepted_by_type.keys == NULL ||
		    st->accepted_by_type.keys[i] == NULL)
			continue;
		c = st->accepted_by_type.vals[i];
		metrics_printf(&t,
		    "schakel_messages_accepted_total{type=\"%s\"} %llu\n",
		    c->id, (unsigned long long)c->n);
	}
	s_counter_codes(&t, "schakel_messages_refused_total",
	    "Requests refused, by reason.", st->refused);
	s_counter_codes(&t, "schakel_dead_letters_total",
	    "Messages moved to the dead letters, by reason.",
	    st->dead_lettered);
	metrics_printf(&t,
	    "# HELP schakel_deliveries_total Deliveries handed to recipients "
	    "(redeliveries included).\n"
	    "# TYPE schakel_deliveries_total counter\n"
	    "schakel_deliveries_total %llu\n"
	    "# HELP schakel_acknowledged_total Deliveries acknowledged.\n"
	    "# TYPE schakel_acknowledged_total counter\n"
	    "schakel_acknowledged_total %llu\n"
	    "# HELP schakel_delivery_waits_total Times deliveries waited for "
	    "the store to take the acknowledgements before them.\n"
	    "# TYPE schakel_delivery_waits_total counter\n"
	    "schakel_delivery_waits_total %llu\n"
	    "# HELP schakel_store_commits_total Group commits made durable.\n"
	    "# TYPE schakel_store_commits_total counter\n"
	    "schakel_store_commits_total %llu\n"
	    "# HELP schakel_transport_messages_total ZeroMQ messages, by "
	    "direction.\n"
	    "# TYPE schakel_transport_messages_total counter\n"
	    "schakel_transport_messages_total{direction=\"in\"} %llu\n"
	    "schakel_transport_messages_total{direction=\"out\"} %llu\n"
	    "# HELP schakel_frames_total Protocol frames, by direction (more "
	    "than messages: bundles).\n"
	    "# TYPE schakel_frames_total counter\n"
	    "schakel_frames_total{direction=\"in\"} %llu\n"
	    "schakel_frames_total{direction=\"out\"} %llu\n"
	    "# HELP schakel_slow_consumers_total Sessions dropped because "
	    "their clients did not read what the broker sent them.\n"
	    "# TYPE schakel_slow_consumers_total counter\n"
	    "schakel_slow_consumers_total %llu\n"
	    "# HELP schakel_audit_archived_records_total Audit records "
	    "moved from the store to the archive's files.\n"
	    "# TYPE schakel_audit_archived_records_total counter\n"
	    "schakel_audit_archived_records_total %llu\n"
	    "# HELP schakel_reloads_total Configuration reloads, by outcome.\n"
	    "# TYPE schakel_reloads_total counter\n"
	    "schakel_reloads_total{outcome=\"applied\"} %llu\n"
	    "schakel_reloads_total{outcome=\"refused\"} %llu\n",
	    (unsigned long long)st->delivered, (unsigned long long)st->acked,
	    (unsigned long long)st->pump_waits, (unsigned long long)st->commits,
	    (unsigned long long)st->messages_in,
	    (unsigned long long)st->messages_out,
	    (unsigned long long)st->frames_in,
	    (unsigned long long)st->frames_out,
	    (unsigned long long)st->slow_dropped,
	    (unsigned long long)st->audit_archived,
	    (unsigned long long)st->reloads_ok,
	    (unsigned long long)st->reloads_refused);
	s_histogram(&t, "schakel_receipt_latency_seconds",
	    "From a submitted message's arrival to its durable receipt.",
	    &st->receipt);
	s_histogram(&t, "schakel_delivery_latency_seconds",
	    "From acceptance to the recipient's acknowledgement.",
	    &st->delivery);
	s_histogram(&t, "schakel_store_commit_seconds",
	    "How long each group commit took: writing its pages and waiting "
	    "for the disk to flush them (also those that failed; "
	    "schakel_store_commits_total counts the ones made durable).",
	    &st->commit);
	metrics_printf(&t,
	    "# HELP schakel_queue_depth Messages waiting for a "
	    "party (in flight included).\n"
	    "# TYPE schakel_queue_depth gauge\n");
	for (size_t i = 0; i < b->conf->nparties; i++) {
		uint64_t depth = 0;
		const char *id = b->conf->parties[i].id;
		if (store_queue_depth(b->store, id, &depth) == STORE_OK)
			metrics_printf(&t,
			    "schakel_queue_depth{party=\"%s\"} %llu\n", id,
			    (unsigned long long)depth);
	}
	metrics_printf(&t,
	    "# HELP schakel_in_flight Deliveries not yet "
	    "acknowledged, per connected party.\n"
	    "# TYPE schakel_in_flight gauge\n");
	for (size_t i = 0; i < b->conf->nparties; i++) {
		const char *id = b->conf->parties[i].id;
		const struct session *s = broker_session(b, id);
		if (broker_connections(b, id, NULL) == 0)
			continue;
		connected++;
		metrics_printf(&t, "schakel_in_flight{party=\"%s\"} %zu\n", id,
		    s != NULL ? s->ninflight : 0);
	}
	metrics_printf(&t,
	    "# HELP schakel_unsent_bytes What ZeroMQ holds, not yet written "
	    "out, for all of a party's connections (past %d MiB on one, or "
	    "%d MiB on all, its sessions are dropped as slow consumers).\n"
	    "# TYPE schakel_unsent_bytes gauge\n",
	    BROKER_UNSENT_HARD >> 20, BROKER_UNSENT_PARTY >> 20);
	for (size_t i = 0; i < b->conf->nparties; i++) {
		const char *id = b->conf->parties[i].id;
		metrics_printf(&t, "schakel_unsent_bytes{party=\"%s\"} %zu\n",
		    id, broker_party_unsent(b, id));
	}
	oldest =
	    b->conf->broker.archive_dir != NULL ? admin_audit_oldest_ms(b) : 0;
	if (oldest > 0)
		metrics_printf(&t,
		    "# HELP schakel_audit_oldest_record_age_seconds Age of the "
		    "oldest audit record in the store, with an audit archive "
		    "(it stays near after_days plus a day while archiving "
		    "works).\n"
		    "# TYPE schakel_audit_oldest_record_age_seconds gauge\n"
		    "schakel_audit_oldest_record_age_seconds %llu\n",
		    (unsigned long long)((b->now_ms - oldest) / 1000));
	metrics_printf(&t,
	    "# HELP schakel_connected_parties Parties with a session.\n"
	    "# TYPE schakel_connected_parties gauge\n"
	    "schakel_connected_parties %zu\n"
	    "# HELP schakel_store_used_bytes Bytes the store uses.\n"
	    "# TYPE schakel_store_used_bytes gauge\n"
	    "schakel_store_used_bytes %llu\n"
	    "# HELP schakel_store_size_bytes The store's map size.\n"
	    "# TYPE schakel_store_size_bytes gauge\n"
	    "schakel_store_size_bytes %llu\n"
	    "# HELP schakel_store_limit_bytes Bytes in use at which new "
	    "messages are refused (the map size less what is kept back for "
	    "deliveries).\n"
	    "# TYPE schakel_store_limit_bytes gauge\n"
	    "schakel_store_limit_bytes %llu\n"
	    "# HELP schakel_verify_pending Submissions waiting for their "
	    "signature check.\n"
	    "# TYPE schakel_verify_pending gauge\n"
	    "schakel_verify_pending %zu\n"
	    "# HELP schakel_verify_threads Threads that check signatures.\n"
	    "# TYPE schakel_verify_threads gauge\n"
	    "schakel_verify_threads %u\n",
	    connected, (unsigned long long)used, (unsigned long long)size,
	    (unsigned long long)limit, verify_pending(b->verify),
	    verify_threads(b->verify));
	healthy = !b->stopping && !b->store_full;
	metrics_publish(b->metrics, t.buf != NULL ? t.buf : "", t.len, healthy,
	    b->stopping         ? "stopping"
		: b->store_full ? "the store is full: new messages are refused"
				: "");
	metrics_text_free(&t);
}
