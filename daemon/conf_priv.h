/*
 * conf_priv: what conf.c, conf_index.c and conf_check.c share while a
 * configuration is loaded.  Not for use outside the conf module.
 */
#ifndef SCHAKEL_CONF_PRIV_H
#define SCHAKEL_CONF_PRIV_H

#include "arena.h"
#include "idmap.h"
#include "conf.h"

/* Parties and message types are numbered in 20 bits in the flow index. */
#define CONF_MAX_ITEMS ((1u << 20) - 1)

struct idmap_u64;

/* The look-up tables behind conf.h's look-up functions. */
struct conf_index {
	struct idmap roles, parties, transport_keys, sign_keys, box_keys;
	struct idmap types, stages, agreements, routes, deadlines;
	/* Flows by (from selector, to selector, type). */
	struct idmap_u64 *flows;
};

/* Builds the flow index once every agreement is parsed.  Returns 0 or -1
 * when out of memory. */
int conf_index_flows(struct conf *c);

/* Frees the index; accepts NULL. */
void conf_index_destroy(struct conf_index **ip);

/* Cross-checks between sections, after parsing: routes against
 * agreements, shadowed routes, flows no route produces, expiry. */
void conf_check(const struct conf *c, int32_t today, struct diags *d);

#endif
