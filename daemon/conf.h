/*
 * conf: the loaded configuration of a schakel ecosystem.
 *
 * conf_load() reads a YAML file and everything it includes, validates
 * all of it and returns ONE immutable structure.  Nothing in it changes
 * after loading: a reload builds a new conf and swaps the pointer, and
 * the old one is freed only when nothing uses it any more.  Every
 * pointer inside (parties, roles, types, ...) is borrowed from the conf
 * and valid until conf_destroy().
 *
 * Look-ups, all O(1) on average:
 *   conf_party_by_id, conf_party_by_transport_key, conf_role_by_id,
 *   conf_type_by_id, conf_stage_by_id, conf_agreement_by_id,
 *   conf_flows_for (the agreement flows that allow sender -> recipient
 *   for a message type).
 * Arrays (parties, types, ...) keep the order of the files; `index` in
 * each element is its position in that array.
 */
#ifndef SCHAKEL_CONF_H
#define SCHAKEL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "units.h"

#define CONF_KEY_BYTES 32
/* No agreement end date. */
#define CONF_NO_END INT32_MAX

struct conf_limits {
	uint64_t max_message_size; /* bytes */
	uint64_t max_queue_depth;  /* messages per recipient */
	uint64_t submit_rate;      /* messages per second per party */
	uint64_t submit_burst;
	uint64_t clock_skew;  /* seconds */
	uint64_t ack_timeout; /* seconds */
	uint64_t heartbeat;   /* seconds */
	uint64_t max_deliveries;
	uint64_t map_size;       /* bytes */
	uint64_t dedup_window;   /* seconds */
	uint64_t verify_threads; /* 0: one per processor, at most 8 */
};

struct conf_broker {
	const char *const *endpoints;
	size_t nendpoints;
	const char *data_dir;     /* resolved against the config file */
	const char *key_file;     /* resolved */
	const char *admin_socket; /* resolved */
	const char *metrics;      /* "host:port", or NULL when off */
	/* Audit records older than archive_after_days leave the store for
	 * files in archive_dir (resolved); NULL: they stay. */
	const char *archive_dir;
	uint32_t archive_after_days;
	struct conf_limits limits;
	struct diag_mark mark;
};

struct conf_role {
	const char *id;
	const char *description;
	uint32_t index;
	struct diag_mark mark;
};

struct conf_stage {
	const char *id;
	const char *description;
	uint32_t index;
	struct diag_mark mark;
};

struct conf_party {
	const char *id;
	const char *name;
	const struct conf_role *role;
	const uint16_t *regions; /* CBS codes without "GM": GM0344 -> 344 */
	size_t nregions;
	uint8_t sign_key[CONF_KEY_BYTES];      /* Ed25519 */
	uint8_t box_key[CONF_KEY_BYTES];       /* X25519, payload sealing */
	uint8_t transport_key[CONF_KEY_BYTES]; /* X25519, CurveZMQ client */
	uint64_t max_queue_depth; /* the party's limit or the broker's */
	uint64_t submit_rate;
	uint64_t submit_burst;
	uint32_t index;
	struct diag_mark mark;
};

struct conf_type {
	const char *id;
	const char *description;
	uint64_t max_size;                      /* bytes of ciphertext */
	uint64_t ttl;                           /* seconds */
	const struct conf_stage *opens;         /* or NULL */
	const struct conf_stage *const *closes; /* ncloses entries */
	size_t ncloses;
	bool special_categories;
	uint32_t index;
	struct diag_mark mark;
};

struct conf_deadline {
	const char *id;
	const char *description;
	const struct conf_type *const *from;
	size_t nfrom;
	const struct conf_type *const *to;
	size_t nto;
	struct units_duration within;
	struct units_duration urgent_within; /* both zero when not given */
	const char *source;
	struct diag_mark mark;
};

struct conf_holiday {
	int32_t day; /* days since 1970-01-01 */
	const char *name;
	struct diag_mark mark;
};

enum conf_selector_kind {
	CONF_SEL_PARTY,
	CONF_SEL_ROLE,
};

/* One side of a flow: one party, or the agreement's parties of a role. */
struct conf_selector {
	enum conf_selector_kind kind;
	const struct conf_party *party;
	const struct conf_role *role;
};

struct conf_agreement;

struct conf_flow {
	struct conf_selector from;
	struct conf_selector to;
	const struct conf_type *const *types;
	size_t ntypes;
	const struct conf_agreement *agreement;
	struct diag_mark mark;
};

struct conf_agreement {
	const char *id;
	const char *description;
	const struct conf_party *const *parties; /* sorted by index */
	size_t nparties;
	const char *purpose;
	const char *legal_basis;
	int32_t valid_from;  /* days since 1970-01-01 */
	int32_t valid_until; /* inclusive, or CONF_NO_END */
	uint32_t retention_days;
	bool consent_required;
	const struct conf_flow *flows;
	size_t nflows;
	uint32_t index;
	struct diag_mark mark;
};

enum conf_target_kind {
	CONF_TARGET_PARTY,             /* party */
	CONF_TARGET_ROLE_IN_REGION,    /* role */
	CONF_TARGET_CASE_PARTICIPANTS, /* role */
	CONF_TARGET_ONE_OF,            /* members, round robin */
};

struct conf_target {
	enum conf_target_kind kind;
	const struct conf_party *party;
	const struct conf_role *role;
	const struct conf_party *const *members;
	size_t nmembers;
	struct diag_mark mark;
};

/* A message type pattern in a route: an exact type, a prefix ("shv.wsnp."
 * from "shv.wsnp.*") or anything ("*"). */
struct conf_type_pattern {
	const char *text;   /* as written */
	const char *prefix; /* for a prefix pattern, without the '*' */
	const struct conf_type *exact;
	bool any;
};

struct conf_route {
	const char *id;
	const char *description;
	/* Match criteria; an empty list matches anything. */
	const struct conf_type_pattern *types;
	size_t ntypes;
	const struct conf_party *const *senders;
	size_t nsenders;
	const struct conf_role *const *sender_roles;
	size_t nsender_roles;
	const uint16_t *regions;
	size_t nregions;
	int urgent; /* -1 any, 0 not urgent, 1 urgent */
	const struct conf_target *to;
	size_t nto;
	const struct conf_target *fallback;
	size_t nfallback;
	uint32_t index;
	struct diag_mark mark;
};

struct conf_index;

struct conf {
	const char *path; /* the top file as given */
	uint64_t generation;
	struct conf_broker broker;
	const struct conf_role *roles;
	size_t nroles;
	const struct conf_party *parties;
	size_t nparties;
	const struct conf_stage *stages;
	size_t nstages;
	const struct conf_type *types;
	size_t ntypes;
	const struct conf_deadline *deadlines;
	size_t ndeadlines;
	const struct conf_holiday *holidays; /* sorted by day */
	size_t nholidays;
	const struct conf_agreement *agreements;
	size_t nagreements;
	const struct conf_route *routes;
	size_t nroutes;
	size_t nflows; /* all agreements' flows */
	size_t nfiles; /* files read, the top one included */
	struct conf_index *index;
	struct arena *arena;
};

/* Loads, includes and validates `path`.  `today` (days since 1970-01-01)
 * decides which agreements have expired.  Every problem goes to `d`.
 * Returns an owned conf, or NULL when there was at least one error.
 * Warnings do not stop loading. */
struct conf *conf_load(const char *path, int32_t today, struct diags *d);

/* Frees; accepts NULL; sets *cp to NULL. */
void conf_destroy(struct conf **cp);

const struct conf_party *conf_party_by_id(const struct conf *c, const char *id);
const struct conf_party *conf_party_by_transport_key(
    const struct conf *c, const uint8_t key[CONF_KEY_BYTES]);
const struct conf_role *conf_role_by_id(const struct conf *c, const char *id);
const struct conf_type *conf_type_by_id(const struct conf *c, const char *id);
const struct conf_stage *conf_stage_by_id(const struct conf *c, const char *id);
const struct conf_agreement *
conf_agreement_by_id(const struct conf *c, const char *id);

/* Fills `out` with up to `max` flows whose agreement binds both parties
 * and which allow `sender` to send `type` to `recipient`, whatever the
 * agreements' dates.  Returns the number of such flows (which may exceed
 * `max`; only `max` are written). */
size_t conf_flows_for(const struct conf *c, const struct conf_party *sender,
    const struct conf_party *recipient, const struct conf_type *type,
    const struct conf_flow **out, size_t max);

/* Returns true when agreement `a` is in force on `day`. */
bool conf_agreement_active(const struct conf_agreement *a, int32_t day);

/* Returns true when agreement `a` binds party `p`. */
bool conf_agreement_binds(
    const struct conf_agreement *a, const struct conf_party *p);

/* Returns true when a flow selector covers party `p` (for a role: `p`
 * has the role and is bound by the flow's agreement). */
bool conf_selector_covers(const struct conf_flow *f,
    const struct conf_selector *s, const struct conf_party *p);

/* Returns true when `pattern` matches message type `t`. */
bool conf_pattern_matches(
    const struct conf_type_pattern *pattern, const struct conf_type *t);

/* Returns the day (since 1970-01-01) on which a limit of `d` that starts
 * on `day` ends: `d.seconds` later in calendar time, or after `d.workdays`
 * working days (Monday to Friday, skipping the configuration's holidays);
 * the start day itself never counts.  Only `holidays` and `nholidays` of
 * `c` are used. */
int32_t conf_limit_end(
    const struct conf *c, int32_t day, const struct units_duration *d);

/* Returns true when `day` is a declared holiday. */
bool conf_is_holiday(const struct conf *c, int32_t day);

/* Returns true when `p` has region code `region` (GM0344 -> 344). */
bool conf_party_in_region(const struct conf_party *p, uint16_t region);

#endif
