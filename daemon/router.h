/*
 * router: turns (sender, type, region, urgency, case) into recipients by
 * the configuration's routes, first match wins, and checks that an
 * agreement in force covers each recipient.  It never reads a payload and
 * keeps no state but the round-robin positions of one_of targets.
 */
#ifndef SCHAKEL_ROUTER_H
#define SCHAKEL_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

/* The most recipients one message can have (the codec's limit). */
#define ROUTER_MAX 32

/* What routing may look at: metadata only. */
struct router_query {
	const struct conf_party *sender;
	const struct conf_type *type;
	uint16_t region; /* GM0344 -> 344; 0 when the message names none */
	bool urgent;
	const char *case_ref;
};

/* Fills `out` with up to `max` parties of `role` that take part in case
 * `case_ref`; returns how many.  Supplied by the store. */
typedef size_t (*router_participants_fn)(void *arg, const char *case_ref,
    const struct conf_role *role, const struct conf_party **out, size_t max);

/* One recipient of a routing decision.  A fixed recipient has group ==
 * NULL; a one_of target has the member chosen by round robin in `party`
 * and the target in `group`, and any member of it is acceptable. */
struct router_slot {
	const struct conf_party *party;
	const struct conf_target *group;
};

struct router_result {
	const struct conf_route *route;
	size_t n;
	struct router_slot slot[ROUTER_MAX]; /* sorted by party id */
};

struct router;

/* Builds the routing tables for `c` (borrowed; it must outlive the
 * router).  Returns an owned router or NULL when out of memory. */
struct router *router_new(const struct conf *c);

/* Frees; accepts NULL; sets *rp to NULL. */
void router_destroy(struct router **rp);

/* Finds the first route that matches `q` and resolves its targets
 * (falling back to the route's fallback targets when they give nobody).
 * The sender is never its own recipient.  Returns 1 with *out filled in,
 * 0 when no route matches or the matching route finds nobody, -1 when the
 * targets give more than ROUTER_MAX recipients. */
int router_match(struct router *r, const struct router_query *q,
    router_participants_fn participants, void *arg, struct router_result *out);

/* Finds the agreement that allows `sender` to send `type` to `recipient`
 * for `purpose` on `day`.  `has_consent` tells whether the message
 * carries a consent reference.  Returns SCHAKEL_OK (0) with *agreement
 * set, or the refusal code: SCHAKEL_E_NO_AGREEMENT,
 * SCHAKEL_E_AGREEMENT_EXPIRED or SCHAKEL_E_CONSENT_MISSING. */
int router_agreement(const struct conf *c, const struct conf_party *sender,
    const struct conf_party *recipient, const struct conf_type *type,
    const char *purpose, bool has_consent, int32_t day,
    const struct conf_agreement **agreement);

/* True when `ids` (n party ids, as a client sealed for them) is what
 * `res` allows: every fixed recipient, and for each one_of target exactly
 * one of its members, and nothing else. */
bool router_accepts(
    const struct router_result *res, const char *const *ids, size_t n);

#endif
