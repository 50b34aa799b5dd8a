/*
 * conf_check: the checks that need the whole configuration: routes that
 * can never deliver, routes that can never match, agreement flows that no
 * route produces, agreements that have expired.  It only reads the conf
 * and reports; it never changes it.
 */
#include "conf_priv.h"

#include <stdlib.h>
#include <string.h>

/* True when party `p` passes a route's sender criteria. */
static bool
s_route_sender(const struct conf_route *r, const struct conf_party *p)
{
	bool ok = r->nsenders == 0;

	for (size_t i = 0; !ok && i < r->nsenders; i++)
		ok = r->senders[i] == p;
	if (!ok)
		return false;
	if (r->nsender_roles == 0)
		return true;
	for (size_t i = 0; i < r->nsender_roles; i++)
		if (r->sender_roles[i] == p->role)
			return true;
	return false;
}

/* True when some sender allowed by flow selector `from` passes the
 * route's sender criteria. */
static bool
s_route_sender_flow(const struct conf_route *r, const struct conf_flow *f)
{
	const struct conf_selector *from = &f->from;

	if (from->kind == CONF_SEL_PARTY)
		return s_route_sender(r, from->party);
	if (r->nsenders > 0) {
		for (size_t i = 0; i < r->nsenders; i++)
			if (conf_selector_covers(f, from, r->senders[i]) &&
			    s_route_sender(r, r->senders[i]))
				return true;
		return false;
	}
	if (r->nsender_roles == 0)
		return true;
	for (size_t i = 0; i < r->nsender_roles; i++)
		if (r->sender_roles[i] == from->role)
			return true;
	return false;
}

/* True when the route matches message type `t`. */
static bool
s_route_type(const struct conf_route *r, const struct conf_type *t)
{
	if (r->ntypes == 0)
		return true;
	for (size_t i = 0; i < r->ntypes; i++)
		if (conf_pattern_matches(&r->types[i], t))
			return true;
	return false;
}

/* True when a route target can name a party that flow selector `to`
 * covers. */
static bool
s_target_meets(const struct conf_target *t, const struct conf_flow *f)
{
	const struct conf_selector *to = &f->to;

	switch (t->kind) {
	case CONF_TARGET_PARTY:
		return conf_selector_covers(f, to, t->party);
	case CONF_TARGET_ONE_OF:
		for (size_t i = 0; i < t->nmembers; i++)
			if (conf_selector_covers(f, to, t->members[i]))
				return true;
		return false;
	default:
		if (to->kind == CONF_SEL_PARTY)
			return to->party->role == t->role;
		return to->role == t->role;
	}
}

/* Flows grouped by (recipient role, message type), and routes by the
 * message types they match, so that the cross-checks look only at what
 * can meet instead of every pair: a national configuration has 100,000
 * flows and hundreds of routes. */
struct s_buckets {
	size_t ntypes;
	/* flows: bucket (role * ntypes + type) is flow[start[b]..start[b+1]) */
	size_t *start;
	const struct conf_flow **flow;
	/* routes: routes matching type t are route[rstart[t]..rstart[t+1]) */
	size_t *rstart;
	const struct conf_route **route;
};

static const struct conf_role *
s_to_role(const struct conf_flow *f)
{
	return f->to.kind == CONF_SEL_PARTY ? f->to.party->role : f->to.role;
}

static int
s_buckets_build(const struct conf *c, struct s_buckets *b)
{
	size_t nb = c->nroles * c->ntypes, total = 0, n = 0, *fill;

	memset(b, 0, sizeof(*b));
	b->ntypes = c->ntypes;
	b->start = calloc(nb + 1, sizeof(*b->start));
	b->rstart = calloc(c->ntypes + 1, sizeof(*b->rstart));
	fill = calloc(nb + 1, sizeof(*fill));
	if (b->start == NULL || b->rstart == NULL || fill == NULL)
		goto fail;
	for (size_t a = 0; a < c->nagreements; a++)
		for (size_t f = 0; f < c->agreements[a].nflows; f++) {
			const struct conf_flow *fl = &c->agreements[a].flows[f];
			for (size_t t = 0; t < fl->ntypes; t++) {
				b->start[s_to_role(fl)->index * c->ntypes +
				    fl->types[t]->index + 1]++;
				total++;
			}
		}
	for (size_t i = 0; i < nb; i++)
		b->start[i + 1] += b->start[i];
	b->flow = calloc(total ? total : 1, sizeof(*b->flow));
	if (b->flow == NULL)
		goto fail;
	for (size_t a = 0; a < c->nagreements; a++)
		for (size_t f = 0; f < c->agreements[a].nflows; f++) {
			const struct conf_flow *fl = &c->agreements[a].flows[f];
			for (size_t t = 0; t < fl->ntypes; t++) {
				size_t k = s_to_role(fl)->index * c->ntypes +
				    fl->types[t]->index;
				b->flow[b->start[k] + fill[k]++] = fl;
			}
		}
	for (size_t t = 0; t < c->ntypes; t++)
		for (size_t r = 0; r < c->nroutes; r++)
			n += s_route_type(&c->routes[r], &c->types[t]);
	b->route = calloc(n ? n : 1, sizeof(*b->route));
	if (b->route == NULL)
		goto fail;
	n = 0;
	for (size_t t = 0; t < c->ntypes; t++) {
		b->rstart[t] = n;
		for (size_t r = 0; r < c->nroutes; r++)
			if (s_route_type(&c->routes[r], &c->types[t]))
				b->route[n++] = &c->routes[r];
	}
	b->rstart[c->ntypes] = n;
	free(fill);
	return 0;
fail:
	free(fill);
	return -1;
}

static void
s_buckets_free(struct s_buckets *b)
{
	free(b->start);
	free(b->flow);
	free(b->rstart);
	free(b->route);
}

/* True when some flow to a party of `role` lets route `r` deliver
 * through target `t`. */
static bool
s_role_allows(const struct conf *c, const struct s_buckets *b,
    const struct conf_route *r, const struct conf_target *t,
    const struct conf_role *role)
{
	for (size_t ty = 0; ty < c->ntypes; ty++) {
		size_t k = role->index * b->ntypes + ty;
		if (!s_route_type(r, &c->types[ty]))
			continue;
		for (size_t i = b->start[k]; i < b->start[k + 1]; i++)
			if (s_target_meets(t, b->flow[i]) &&
			    s_route_sender_flow(r, b->flow[i]))
				return true;
	}
	return false;
}

/* A route target no agreement allows can never deliver anything. */
static void
s_check_targets(const struct conf *c, const struct s_buckets *b,
    const struct conf_route *r, const struct conf_target *ts, size_t nt,
    struct diags *d)
{
	for (size_t i = 0; i < nt; i++) {
		const struct conf_target *t = &ts[i];
		bool allowed = false;

		switch (t->kind) {
		case CONF_TARGET_PARTY:
			allowed = s_role_allows(c, b, r, t, t->party->role);
			break;
		case CONF_TARGET_ONE_OF:
			for (size_t m = 0; !allowed && m < t->nmembers; m++)
				allowed = s_role_allows(
				    c, b, r, t, t->members[m]->role);
			break;
		default:
			allowed = s_role_allows(c, b, r, t, t->role);
			break;
		}
		if (allowed)
			continue;
		switch (t->kind) {
		case CONF_TARGET_PARTY:
			diags_add(d, DIAG_ERROR, &t->mark,
			    "route '%s' sends to party '%s', but no agreement "
			    "allows that for any sender and message type the "
			    "route matches; it can never deliver",
			    r->id, t->party->id);
			break;
		case CONF_TARGET_ONE_OF:
			diags_add(d, DIAG_ERROR, &t->mark,
			    "route '%s' sends to one of its listed parties, but "
			    "no agreement allows that for any sender and message "
			    "type the route matches; it can never deliver",
			    r->id);
			break;
		default:
			diags_add(d, DIAG_ERROR, &t->mark,
			    "route '%s' sends to parties with role '%s', but no "
			    "agreement allows that for any sender and message "
			    "type the route matches; it can never deliver",
			    r->id, t->role->id);
			break;
		}
	}
}

/* True when every type that `b` matches is matched by `a`. */
static bool
s_types_cover(const struct conf_route *a, const struct conf_route *b)
{
	if (a->ntypes == 0)
		return true;
	if (b->ntypes == 0)
		return false;
	for (size_t j = 0; j < b->ntypes; j++) {
		const struct conf_type_pattern *pb = &b->types[j];
		bool covered = false;
		for (size_t i = 0; !covered && i < a->ntypes; i++) {
			const struct conf_type_pattern *pa = &a->types[i];
			if (pa->any)
				covered = true;
			else if (pb->any)
				covered = false;
			else if (pa->exact != NULL)
				covered = pb->exact == pa->exact;
			else if (pb->exact != NULL)
				covered = conf_pattern_matches(pa, pb->exact);
			else
				covered = strncmp(pb->prefix, pa->prefix,
					      strlen(pa->prefix)) == 0;
		}
		if (!covered)
			return false;
	}
	return true;
}

/* True when every sender that `b` accepts is accepted by `a`. */
static bool
s_senders_cover(const struct conf *c, const struct conf_route *a,
    const struct conf_route *b)
{
	if (a->nsenders == 0 && a->nsender_roles == 0)
		return true;
	if (b->nsenders > 0) {
		for (size_t i = 0; i < b->nsenders; i++)
			if (s_route_sender(b, b->senders[i]) &&
			    !s_route_sender(a, b->senders[i]))
				return false;
		return true;
	}
	if (b->nsender_roles == 0)
		return false;
	if (a->nsenders == 0) {
		/* Both by role: b's roles must be among a's. */
		for (size_t j = 0; j < b->nsender_roles; j++) {
			bool found = false;
			for (size_t i = 0; i < a->nsender_roles; i++)
				found = found ||
				    a->sender_roles[i] == b->sender_roles[j];
			if (!found)
				return false;
		}
		return true;
	}
	/* a lists parties, b names roles: every party of b's roles must be
	 * listed in a. */
	for (size_t p = 0; p < c->nparties; p++)
		if (s_route_sender(b, &c->parties[p]) &&
		    !s_route_sender(a, &c->parties[p]))
			return false;
	return true;
}

static bool
s_regions_cover(const struct conf_route *a, const struct conf_route *b)
{
	if (a->nregions == 0)
		return true;
	if (b->nregions == 0)
		return false;
	for (size_t j = 0; j < b->nregions; j++) {
		bool found = false;
		for (size_t i = 0; i < a->nregions; i++)
			found = found || a->regions[i] == b->regions[j];
		if (!found)
			return false;
	}
	return true;
}

static void
s_check_shadowed(const struct conf *c, struct diags *d)
{
	for (size_t j = 1; j < c->nroutes; j++) {
		const struct conf_route *b = &c->routes[j];
		for (size_t i = 0; i < j; i++) {
			const struct conf_route *a = &c->routes[i];
			if ((a->urgent == -1 || a->urgent == b->urgent) &&
			    s_regions_cover(a, b) && s_types_cover(a, b) &&
			    s_senders_cover(c, a, b)) {
				diags_add(d, DIAG_ERROR, &b->mark,
				    "route '%s' can never match: every message "
				    "it matches is matched first by route '%s' "
				    "(%s:%u:%u); move it above that route or "
				    "remove it",
				    b->id, a->id, a->mark.file, a->mark.line,
				    a->mark.col);
				break;
			}
		}
	}
}

/* Warns about agreement flows that no route carries: the agreement
 * allows them, but nothing will ever be delivered under them. */
static void
s_check_flows(const struct conf *c, const struct s_buckets *b, struct diags *d)
{
	for (size_t a = 0; a < c->nagreements; a++) {
		const struct conf_agreement *ag = &c->agreements[a];
		for (size_t f = 0; f < ag->nflows; f++) {
			const struct conf_flow *fl = &ag->flows[f];
			for (size_t t = 0; t < fl->ntypes; t++) {
				size_t ty = fl->types[t]->index;
				bool used = false;
				for (size_t i = b->rstart[ty];
				     !used && i < b->rstart[ty + 1]; i++) {
					const struct conf_route *ro =
					    b->route[i];
					if (!s_route_sender_flow(ro, fl))
						continue;
					for (size_t k = 0; !used &&
					     k < ro->nto + ro->nfallback;
					     k++)
						used =
						    s_target_meets(k < ro->nto
							    ? &ro->to[k]
							    : &ro->fallback[k -
								  ro->nto],
							fl);
				}
				if (!used)
					diags_add(d, DIAG_WARNING, &fl->mark,
					    "no route carries '%s' along this "
					    "flow of agreement '%s'; nothing "
					    "will be delivered under it",
					    fl->types[t]->id, ag->id);
			}
		}
	}
}

static void
s_check_expired(const struct conf *c, int32_t today, struct diags *d)
{
	char date[11];

	for (size_t a = 0; a < c->nagreements; a++) {
		const struct conf_agreement *ag = &c->agreements[a];
		if (ag->valid_until >= today)
			continue;
		units_format_date(ag->valid_until, date);
		diags_add(d, DIAG_WARNING, &ag->mark,
		    "agreement '%s' expired on %s; messages under it are "
		    "refused",
		    ag->id, date);
	}
}

void
conf_check(const struct conf *c, int32_t today, struct diags *d)
{
	struct s_buckets b;

	if (s_buckets_build(c, &b) != 0) {
		struct diag_mark top = {.file = c->path};
		diags_add(d, DIAG_ERROR, &top,
		    "out of memory while checking the configuration");
		s_buckets_free(&b);
		return;
	}
	for (size_t r = 0; r < c->nroutes; r++) {
		const struct conf_route *ro = &c->routes[r];
		s_check_targets(c, &b, ro, ro->to, ro->nto, d);
		s_check_targets(c, &b, ro, ro->fallback, ro->nfallback, d);
	}
	s_check_shadowed(c, d);
	s_check_flows(c, &b, d);
	s_check_expired(c, today, d);
	s_buckets_free(&b);
}
