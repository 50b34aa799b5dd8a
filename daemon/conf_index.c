/*
 * conf_index: hash tables that make the configuration's look-ups O(1):
 * ids, transport keys, and agreement flows by (sender, recipient, type).
 * Built once at load time; read-only afterwards, so any thread may read.
 */
#include "conf_priv.h"

#include <stdlib.h>
#include <string.h>

/* Flows by packed key: a chain of flow pointers per key. */
struct s_link {
	const struct conf_flow *flow;
	uint32_t next; /* index + 1 into links, 0 ends */
};

struct idmap_u64 {
	uint64_t *keys; /* 0 = empty; stored keys have bit 63 set */
	uint32_t *heads;
	size_t cap;
	struct s_link *links;
	size_t nlinks;
};

static uint64_t
s_key(const struct conf_selector *from, const struct conf_selector *to,
    const struct conf_type *t)
{
	uint64_t f = from->kind == CONF_SEL_PARTY ? from->party->index
						  : from->role->index;
	uint64_t r =
	    to->kind == CONF_SEL_PARTY ? to->party->index : to->role->index;

	return UINT64_C(1) << 63 |
	    (uint64_t)(from->kind == CONF_SEL_ROLE) << 62 |
	    (uint64_t)(to->kind == CONF_SEL_ROLE) << 61 | f << 40 | r << 20 |
	    t->index;
}

static size_t
s_slot(const struct idmap_u64 *m, uint64_t key)
{
	size_t i =
	    (size_t)((key * UINT64_C(0x9E3779B97F4A7C15)) >> 20) & (m->cap - 1);

	while (m->keys[i] != 0 && m->keys[i] != key)
		i = (i + 1) & (m->cap - 1);
	return i;
}

int
conf_index_flows(struct conf *c)
{
	struct idmap_u64 *m;
	size_t total = 0, cap = 64;

	for (size_t a = 0; a < c->nagreements; a++)
		for (size_t f = 0; f < c->agreements[a].nflows; f++)
			total += c->agreements[a].flows[f].ntypes;
	while (cap < total * 2)
		cap *= 2;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -1;
	c->index->flows = m;
	m->cap = cap;
	m->keys = calloc(cap, sizeof(*m->keys));
	m->heads = calloc(cap, sizeof(*m->heads));
	m->links = calloc(total ? total : 1, sizeof(*m->links));
	if (m->keys == NULL || m->heads == NULL || m->links == NULL)
		return -1;
	for (size_t a = 0; a < c->nagreements; a++) {
		const struct conf_agreement *ag = &c->agreements[a];
		for (size_t f = 0; f < ag->nflows; f++) {
			const struct conf_flow *fl = &ag->flows[f];
			for (size_t t = 0; t < fl->ntypes; t++) {
				uint64_t key =
				    s_key(&fl->from, &fl->to, fl->types[t]);
				size_t i = s_slot(m, key);
				m->keys[i] = key;
				m->links[m->nlinks].flow = fl;
				m->links[m->nlinks].next = m->heads[i];
				m->heads[i] = (uint32_t)++m->nlinks;
			}
		}
	}
	return 0;
}

void
conf_index_destroy(struct conf_index **ip)
{
	struct conf_index *x;

	if (ip == NULL || *ip == NULL)
		return;
	x = *ip;
	idmap_free(&x->roles);
	idmap_free(&x->parties);
	idmap_free(&x->transport_keys);
	idmap_free(&x->sign_keys);
	idmap_free(&x->box_keys);
	idmap_free(&x->types);
	idmap_free(&x->stages);
	idmap_free(&x->agreements);
	idmap_free(&x->routes);
	idmap_free(&x->deadlines);
	if (x->flows != NULL) {
		free(x->flows->keys);
		free(x->flows->heads);
		free(x->flows->links);
		free(x->flows);
	}
	free(x);
	*ip = NULL;
}

size_t
conf_flows_for(const struct conf *c, const struct conf_party *sender,
    const struct conf_party *recipient, const struct conf_type *type,
    const struct conf_flow **out, size_t max)
{
	const struct idmap_u64 *m = c->index->flows;
	const struct conf_selector from[2] = {
	    {.kind = CONF_SEL_PARTY, .party = sender},
	    {.kind = CONF_SEL_ROLE, .role = sender->role}};
	const struct conf_selector to[2] = {
	    {.kind = CONF_SEL_PARTY, .party = recipient},
	    {.kind = CONF_SEL_ROLE, .role = recipient->role}};
	size_t n = 0;

	if (m == NULL || m->nlinks == 0)
		return 0;
	for (int i = 0; i < 2; i++) {
		for (int j = 0; j < 2; j++) {
			size_t slot = s_slot(m, s_key(&from[i], &to[j], type));
			for (uint32_t l = m->heads[slot]; l != 0;
			     l = m->links[l - 1].next) {
				const struct conf_flow *f =
				    m->links[l - 1].flow;
				/* A party selector was checked against the
				 * agreement at load; a role needs both
				 * parties bound. */
				if (!conf_agreement_binds(
					f->agreement, sender) ||
				    !conf_agreement_binds(
					f->agreement, recipient))
					continue;
				if (n < max)
					out[n] = f;
				n++;
			}
		}
	}
	return n;
}

static const void *
s_get(const struct idmap *m, const char *id)
{
	return idmap_get(m, id, strlen(id));
}

const struct conf_party *
conf_party_by_id(const struct conf *c, const char *id)
{
	return s_get(&c->index->parties, id);
}

const struct conf_party *
conf_party_by_transport_key(
    const struct conf *c, const uint8_t key[CONF_KEY_BYTES])
{
	return idmap_get(&c->index->transport_keys, key, CONF_KEY_BYTES);
}

const struct conf_role *
conf_role_by_id(const struct conf *c, const char *id)
{
	return s_get(&c->index->roles, id);
}

const struct conf_type *
conf_type_by_id(const struct conf *c, const char *id)
{
	return s_get(&c->index->types, id);
}

const struct conf_stage *
conf_stage_by_id(const struct conf *c, const char *id)
{
	return s_get(&c->index->stages, id);
}

const struct conf_agreement *
conf_agreement_by_id(const struct conf *c, const char *id)
{
	return s_get(&c->index->agreements, id);
}

bool
conf_agreement_active(const struct conf_agreement *a, int32_t day)
{
	return day >= a->valid_from && day <= a->valid_until;
}

bool
conf_agreement_binds(const struct conf_agreement *a, const struct conf_party *p)
{
	size_t lo = 0, hi = a->nparties;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a->parties[mid]->index == p->index)
			return true;
		if (a->parties[mid]->index < p->index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

bool
conf_selector_covers(const struct conf_flow *f, const struct conf_selector *s,
    const struct conf_party *p)
{
	if (s->kind == CONF_SEL_PARTY)
		return s->party == p;
	return p->role == s->role && conf_agreement_binds(f->agreement, p);
}

bool
conf_pattern_matches(
    const struct conf_type_pattern *pattern, const struct conf_type *t)
{
	if (pattern->any)
		return true;
	if (pattern->exact != NULL)
		return pattern->exact == t;
	return strncmp(t->id, pattern->prefix, strlen(pattern->prefix)) == 0;
}

bool
conf_party_in_region(const struct conf_party *p, uint16_t region)
{
	for (size_t i = 0; i < p->nregions; i++)
		if (p->regions[i] == region)
			return true;
	return false;
}

bool
conf_is_holiday(const struct conf *c, int32_t day)
{
	size_t lo = 0, hi = c->nholidays;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->holidays[mid].day == day)
			return true;
		if (c->holidays[mid].day < day)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

int32_t
conf_limit_end(
    const struct conf *c, int32_t day, const struct units_duration *d)
{
	uint32_t left = d->workdays;

	if (left == 0)
		return day + (int32_t)((d->seconds + 86399) / 86400);
	while (left > 0) {
		day++;
		if (units_weekday(day) < 5 && !conf_is_holiday(c, day))
			left--;
	}
	return day;
}
