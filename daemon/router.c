/*
 * router: evaluates routes for one message.  First match wins; a route
 * whose targets find nobody uses its fallback; no match is a refusal,
 * never a silent drop.  The per-message path does no allocation and no
 * scan of all parties: parties by (role, region) are indexed up front.
 */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "idmap.h"
#include "schakel_err.h"

/* The key of the (role, region) index: role index then CBS code. */
struct s_rkey {
	uint16_t role;
	uint16_t region;
};

/* The parties of one (role, region): members[start .. start + len). */
struct s_range {
	uint32_t start;
	uint32_t len;
	struct s_rkey key;
};

struct router {
	const struct conf *c;
	struct idmap regions; /* s_rkey -> s_range */
	struct s_range *ranges;
	const struct conf_party **members;
	/* Round-robin position of target t of route i (to, then fallback):
	 * rr_pos[rr_base[i] + t]. */
	size_t *rr_base;
	uint32_t *rr_pos;
};

struct router *
router_new(const struct conf *c)
{
	struct router *r = calloc(1, sizeof(*r));
	size_t nkeys = 0, total = 0, ntargets = 0;
	uint32_t at = 0;

	if (r == NULL)
		return NULL;
	r->c = c;
	/* Count (role, region) pairs, then lay the parties out by pair. */
	for (size_t p = 0; p < c->nparties; p++)
		total += c->parties[p].nregions;
	r->ranges = calloc(total ? total : 1, sizeof(*r->ranges));
	r->members = calloc(total ? total : 1, sizeof(*r->members));
	r->rr_base = calloc(c->nroutes ? c->nroutes : 1, sizeof(*r->rr_base));
	if (r->ranges == NULL || r->members == NULL || r->rr_base == NULL)
		goto fail;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t p = 0; p < c->nparties; p++) {
			const struct conf_party *pa = &c->parties[p];
			for (size_t i = 0; i < pa->nregions; i++) {
				struct s_rkey k = {
				    (uint16_t)pa->role->index, pa->regions[i]};
				struct s_range *rg =
				    idmap_get(&r->regions, &k, sizeof k);
				void *old;
				if (pass == 1) {
					r->members[rg->start + rg->len++] = pa;
					continue;
				}
				if (rg == NULL) {
					rg = &r->ranges[nkeys++];
					rg->key = k;
					if (idmap_put(&r->regions, &rg->key,
						sizeof k, rg, &old) < 0)
						goto fail;
				}
				rg->len++;
			}
		}
		if (pass == 1)
			break;
		for (size_t i = 0; i < nkeys; i++) {
			r->ranges[i].start = at;
			at += r->ranges[i].len;
			r->ranges[i].len = 0;
		}
	}
	for (size_t i = 0; i < c->nroutes; i++) {
		r->rr_base[i] = ntargets;
		ntargets += c->routes[i].nto + c->routes[i].nfallback;
	}
	r->rr_pos = calloc(ntargets ? ntargets : 1, sizeof(*r->rr_pos));
	if (r->rr_pos == NULL)
		goto fail;
	return r;
fail:
	router_destroy(&r);
	return NULL;
}

void
router_destroy(struct router **rp)
{
	struct router *r;

	if (rp == NULL || *rp == NULL)
		return;
	r = *rp;
	idmap_free(&r->regions);
	free(r->ranges);
	free(r->members);
	free(r->rr_base);
	free(r->rr_pos);
	free(r);
	*rp = NULL;
}

static bool
s_has(
    const struct conf_party *const *list, size_t n, const struct conf_party *p)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == p)
			return true;
	return false;
}

static bool
s_route_matches(const struct conf_route *ro, const struct router_query *q)
{
	bool ok;

	if (ro->urgent >= 0 && ro->urgent != (int)q->urgent)
		return false;
	if (ro->nsenders > 0 && !s_has(ro->senders, ro->nsenders, q->sender))
		return false;
	if (ro->nsender_roles > 0) {
		ok = false;
		for (size_t i = 0; !ok && i < ro->nsender_roles; i++)
			ok = ro->sender_roles[i] == q->sender->role;
		if (!ok)
			return false;
	}
	if (ro->nregions > 0) {
		ok = false;
		for (size_t i = 0; !ok && i < ro->nregions; i++)
			ok = ro->regions[i] == q->region;
		if (!ok)
			return false;
	}
	if (ro->ntypes > 0) {
		ok = false;
		for (size_t i = 0; !ok && i < ro->ntypes; i++)
			ok = conf_pattern_matches(&ro->types[i], q->type);
		if (!ok)
			return false;
	}
	return true;
}

/* Adds a recipient unless it is the sender or already there.  Returns -1
 * when the result is full. */
static int
s_add(struct router_result *out, const struct router_query *q,
    const struct conf_party *p, const struct conf_target *group)
{
	if (p == q->sender)
		return 0;
	for (size_t i = 0; i < out->n; i++) {
		if (out->slot[i].party == p) {
			/* A fixed recipient wins over a group choice. */
			if (group == NULL)
				out->slot[i].group = NULL;
			return 0;
		}
	}
	if (out->n == ROUTER_MAX)
		return -1;
	out->slot[out->n].party = p;
	out->slot[out->n].group = group;
	out->n++;
	return 0;
}

static int
s_region_parties(struct router *r, const struct router_query *q,
    const struct conf_role *role, uint16_t region, struct router_result *out)
{
	struct s_rkey k = {(uint16_t)role->index, region};
	const struct s_range *rg = idmap_get(&r->regions, &k, sizeof k);

	if (rg == NULL)
		return 0;
	for (uint32_t i = 0; i < rg->len; i++)
		if (s_add(out, q, r->members[rg->start + i], NULL) != 0)
			return -1;
	return 0;
}

/* Resolves the `to` targets of route `ro` (or its fallback targets). */
static int
s_resolve(struct router *r, const struct router_query *q,
    const struct conf_route *ro, bool fallback,
    router_participants_fn participants, void *arg, struct router_result *out)
{
	const struct conf_target *ts = fallback ? ro->fallback : ro->to;
	size_t nt = fallback ? ro->nfallback : ro->nto;
	size_t base = r->rr_base[ro->index] + (fallback ? ro->nto : 0);

	for (size_t i = 0; i < nt; i++) {
		const struct conf_target *t = &ts[i];
		const struct conf_party *found[ROUTER_MAX];
		size_t n;

		switch (t->kind) {
		case CONF_TARGET_PARTY:
			if (s_add(out, q, t->party, NULL) != 0)
				return -1;
			break;
		case CONF_TARGET_ROLE_IN_REGION:
			if (q->region != 0) {
				if (s_region_parties(
					r, q, t->role, q->region, out) != 0)
					return -1;
				break;
			}
			for (size_t g = 0; g < q->sender->nregions; g++)
				if (s_region_parties(r, q, t->role,
					q->sender->regions[g], out) != 0)
					return -1;
			break;
		case CONF_TARGET_CASE_PARTICIPANTS:
			if (participants == NULL || q->case_ref == NULL)
				break;
			n = participants(
			    arg, q->case_ref, t->role, found, ROUTER_MAX);
			if (n > ROUTER_MAX)
				return -1;
			for (size_t k = 0; k < n; k++)
				if (s_add(out, q, found[k], NULL) != 0)
					return -1;
			break;
		case CONF_TARGET_ONE_OF: {
			uint32_t *pos = &r->rr_pos[base + i];
			const struct conf_party *pick = NULL;
			/* Skip the sender if it is a member itself. */
			for (size_t k = 0; k < t->nmembers && pick == NULL;
			     k++) {
				const struct conf_party *m =
				    t->members[(*pos + k) % t->nmembers];
				if (m != q->sender)
					pick = m;
			}
			*pos = (*pos + 1) % (uint32_t)t->nmembers;
			if (pick != NULL && s_add(out, q, pick, t) != 0)
				return -1;
			break;
		}
		}
	}
	return 0;
}

static int
s_slot_cmp(const void *a, const void *b)
{
	const struct router_slot *x = a, *y = b;

	return strcmp(x->party->id, y->party->id);
}

int
router_match(struct router *r, const struct router_query *q,
    router_participants_fn participants, void *arg, struct router_result *out)
{
	const struct conf *c = r->c;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < c->nroutes; i++) {
		const struct conf_route *ro = &c->routes[i];
		if (!s_route_matches(ro, q))
			continue;
		out->route = ro;
		if (s_resolve(r, q, ro, false, participants, arg, out) != 0)
			return -1;
		if (out->n == 0 &&
		    s_resolve(r, q, ro, true, participants, arg, out) != 0)
			return -1;
		if (out->n == 0)
			return 0;
		qsort(out->slot, out->n, sizeof(out->slot[0]), s_slot_cmp);
		return 1;
	}
	return 0;
}

int
router_agreement(const struct conf *c, const struct conf_party *sender,
    const struct conf_party *recipient, const struct conf_type *type,
    const char *purpose, bool has_consent, int32_t day,
    const struct conf_agreement **agreement)
{
	const struct conf_flow *flows[16];
	size_t n = conf_flows_for(c, sender, recipient, type, flows, 16);
	bool purpose_ok = false, active = false;

	*agreement = NULL;
	if (n > 16)
		n = 16;
	for (size_t i = 0; i < n; i++) {
		const struct conf_agreement *a = flows[i]->agreement;
		if (strcmp(a->purpose, purpose) != 0)
			continue;
		purpose_ok = true;
		if (!conf_agreement_active(a, day))
			continue;
		active = true;
		if (a->consent_required && !has_consent)
			continue;
		*agreement = a;
		return SCHAKEL_OK;
	}
	if (!purpose_ok)
		return SCHAKEL_E_NO_AGREEMENT;
	return active ? SCHAKEL_E_CONSENT_MISSING : SCHAKEL_E_AGREEMENT_EXPIRED;
}

bool
router_accepts(
    const struct router_result *res, const char *const *ids, size_t n)
{
	const struct conf_target *groups_seen[ROUTER_MAX];
	size_t ngroups = 0, fixed = 0, groups = 0;

	/* Count what the result asks for. */
	for (size_t s = 0; s < res->n; s++) {
		if (res->slot[s].group == NULL) {
			fixed++;
			continue;
		}
		bool dup = false;
		for (size_t g = 0; g < groups; g++)
			dup = dup || groups_seen[g] == res->slot[s].group;
		if (!dup)
			groups_seen[groups++] = res->slot[s].group;
	}
	if (n != fixed + groups)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool ok = false;
		for (size_t s = 0; !ok && s < res->n; s++)
			ok = res->slot[s].group == NULL &&
			    strcmp(res->slot[s].party->id, ids[i]) == 0;
		if (ok) {
			fixed--;
			continue;
		}
		/* A member of a group not yet used. */
		for (size_t g = 0; !ok && g < groups; g++) {
			const struct conf_target *t = groups_seen[g];
			if (t == NULL)
				continue;
			for (size_t m = 0; !ok && m < t->nmembers; m++)
				if (strcmp(t->members[m]->id, ids[i]) == 0) {
					ok = true;
					groups_seen[g] = NULL;
					ngroups++;
				}
		}
		if (!ok)
			return false;
	}
	return fixed == 0 && ngroups == groups;
}
