/* Unit tests of routing: first match, the four target kinds, fallback,
 * regions, the sender never its own recipient, agreement checks, and
 * what a client may seal for.  A real configuration is written to a
 * temporary folder and loaded with conf_load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "router.h"
#include "schakel_err.h"
#include "testutil.h"

static const char *const s_parties[] = {"gemeente-u", "gemeente-a", "team-west",
    "team-oost", "kredietbank", "huisarts", "energie", NULL};

static const char s_yaml[] =
    "broker:\n"
    "  endpoints: [tcp://127.0.0.1:7450]\n"
    "  data_dir: data\n"
    "  key_file: keys/broker.key\n"
    "roles:\n"
    "  - {id: municipality, description: Gemeente}\n"
    "  - {id: debt_counselling, description: Schuldhulp}\n"
    "  - {id: gp, description: Huisarts}\n"
    "  - {id: creditor, description: Schuldeiser}\n"
    "parties:\n"
    "  - {id: gemeente-u, name: U, role: municipality, regions: [GM0344],"
    " keys: keys/gemeente-u.pub}\n"
    "  - {id: gemeente-a, name: A, role: municipality, regions: [GM0307],"
    " keys: keys/gemeente-a.pub}\n"
    "  - {id: team-west, name: W, role: debt_counselling, regions: [GM0344],"
    " keys: keys/team-west.pub}\n"
    "  - {id: team-oost, name: O, role: debt_counselling, regions: [GM0344],"
    " keys: keys/team-oost.pub}\n"
    "  - {id: kredietbank, name: K, role: debt_counselling,"
    " regions: [GM0344, GM0307], keys: keys/kredietbank.pub}\n"
    "  - {id: huisarts, name: H, role: gp, regions: [GM0344],"
    " keys: keys/huisarts.pub}\n"
    "  - {id: energie, name: E, role: creditor, keys: keys/energie.pub}\n"
    "message_types:\n"
    "  - {id: shv.vroegsignaal.v1, description: signal}\n"
    "  - {id: shv.melding.v1, description: request}\n"
    "  - {id: shv.verwijzing.huisarts.v1, description: referral}\n"
    "  - {id: shv.hulpvraag.vastgesteld.v1, description: first talk}\n"
    "agreements:\n"
    "  - id: signalen\n"
    "    parties: [energie, gemeente-u, gemeente-a]\n"
    "    purpose: vroegsignalering\n"
    "    legal_basis: Wgs art. 8a\n"
    "    valid_from: 2026-01-01\n"
    "    retention_days: 90\n"
    "    flows:\n"
    "      - {from: {role: creditor}, to: {role: municipality},"
    " types: [shv.vroegsignaal.v1]}\n"
    "  - id: oud\n"
    "    parties: [gemeente-a, kredietbank]\n"
    "    purpose: schuldhulp\n"
    "    legal_basis: Wgs art. 8\n"
    "    valid_from: 2025-01-01\n"
    "    valid_until: 2025-12-31\n"
    "    retention_days: 90\n"
    "    flows:\n"
    "      - {from: {party: gemeente-a}, to: {party: kredietbank},"
    " types: [shv.melding.v1]}\n"
    "  - id: schuldhulp\n"
    "    parties: [gemeente-u, team-west, team-oost, kredietbank]\n"
    "    purpose: schuldhulp\n"
    "    legal_basis: Wgs art. 8\n"
    "    valid_from: 2026-01-01\n"
    "    retention_days: 90\n"
    "    flows:\n"
    "      - {from: {party: gemeente-u}, to: {role: debt_counselling},"
    " types: [shv.melding.v1]}\n"
    "      - {from: {role: debt_counselling}, to: {party: gemeente-u},"
    " types: [shv.hulpvraag.vastgesteld.v1]}\n"
    "  - id: huisarts\n"
    "    parties: [huisarts, gemeente-u]\n"
    "    purpose: verwijzing\n"
    "    legal_basis: Wgs art. 8, with consent\n"
    "    valid_from: 2026-01-01\n"
    "    retention_days: 90\n"
    "    consent_required: true\n"
    "    flows:\n"
    "      - {from: {party: huisarts}, to: {party: gemeente-u},"
    " types: [shv.verwijzing.huisarts.v1]}\n"
    "routes:\n"
    "  - id: signaal\n"
    "    match: {type: shv.vroegsignaal.v1, sender_role: creditor}\n"
    "    to: [{role_in_region: municipality}]\n"
    "  - id: melding-a\n"
    "    match: {type: shv.melding.v1, sender: gemeente-a}\n"
    "    to: [{party: kredietbank}]\n"
    "  - id: melding-u\n"
    "    match: {type: shv.melding.v1, sender: gemeente-u}\n"
    "    to: [{one_of: [team-west, team-oost]}, {party: kredietbank}]\n"
    "  - id: terug\n"
    "    match: {type: shv.hulpvraag.vastgesteld.v1}\n"
    "    to: [{case_participants: municipality}]\n"
    "    fallback: [{party: gemeente-u}]\n"
    "  - id: verwijzing\n"
    "    match: {type: shv.verwijzing.huisarts.v1}\n"
    "    to: [{party: gemeente-u}]\n";

struct s_env {
	char dir[128];
	struct conf *c;
	struct router *r;
};

static int
s_setup(void **state)
{
	static struct s_env e;
	char path[256];
	struct diags *d = diags_new();
	const char *why;
	int32_t today;

	if (tu_mkdtemp(e.dir, sizeof e.dir) != 0 ||
	    tu_write(e.dir, "schakel.yaml", s_yaml) != 0 ||
	    tu_keys(e.dir, s_parties) != 0 ||
	    units_parse_date("2026-06-01", &today, &why) != 0)
		return -1;
	snprintf(path, sizeof path, "%s/schakel.yaml", e.dir);
	e.c = conf_load(path, today, d);
	if (e.c == NULL)
		diags_print(d, stderr);
	diags_destroy(&d);
	if (e.c == NULL)
		return -1;
	e.r = router_new(e.c);
	*state = &e;
	return e.r == NULL ? -1 : 0;
}

static int
s_teardown(void **state)
{
	struct s_env *e = *state;

	router_destroy(&e->r);
	conf_destroy(&e->c);
	return tu_rmrf(e->dir);
}

static struct router_query
s_query(const struct s_env *e, const char *sender, const char *type,
    uint16_t region)
{
	struct router_query q = {
	    .sender = conf_party_by_id(e->c, sender),
	    .type = conf_type_by_id(e->c, type),
	    .region = region,
	    .case_ref = "case-1",
	};
	assert_non_null(q.sender);
	assert_non_null(q.type);
	return q;
}

/* Case participants as a store would give them: gemeente-a only. */
static size_t
s_participants(void *arg, const char *case_ref, const struct conf_role *role,
    const struct conf_party **out, size_t max)
{
	const struct s_env *e = arg;
	const struct conf_party *p = conf_party_by_id(e->c, "gemeente-a");

	if (strcmp(case_ref, "case-1") == 0 && role == p->role && max > 0) {
		out[0] = p;
		return 1;
	}
	return 0;
}

static void
test_role_in_region(void **state)
{
	struct s_env *e = *state;
	struct router_query q =
	    s_query(e, "energie", "shv.vroegsignaal.v1", 307);
	struct router_result res;

	assert_int_equal(router_match(e->r, &q, NULL, NULL, &res), 1);
	assert_string_equal(res.route->id, "signaal");
	assert_int_equal(res.n, 1);
	assert_string_equal(res.slot[0].party->id, "gemeente-a");
	q.region = 344;
	assert_int_equal(router_match(e->r, &q, NULL, NULL, &res), 1);
	assert_string_equal(res.slot[0].party->id, "gemeente-u");
	/* The creditor has no region and the message names none: nobody,
	 * and the route has no fallback, so this is "no route". */
	q.region = 0;
	assert_int_equal(router_match(e->r, &q, NULL, NULL, &res), 0);
	/* A region no municipality covers. */
	q.region = 1;
	assert_int_equal(router_match(e->r, &q, NULL, NULL, &res), 0);
}

static void
test_one_of_round_robin_and_fixed(void **state)
{
	struct s_env *e = *state;
	struct router_query q = s_query(e, "gemeente-u", "shv.melding.v1", 344);
	struct router_result a, b;

	assert_int_equal(router_match(e->r, &q, NULL, NULL, &a), 1);
	assert_int_equal(router_match(e->r, &q, NULL, NULL, &b), 1);
	assert_string_equal(a.route->id, "melding-u");
	assert_int_equal(a.n, 2);
	/* Sorted by id: kredietbank first, then the group's member. */
	assert_string_equal(a.slot[0].party->id, "kredietbank");
	assert_null(a.slot[0].group);
	assert_non_null(a.slot[1].group);
	/* Round robin: the two calls picked different members. */
	assert_string_not_equal(a.slot[1].party->id, b.slot[1].party->id);
	{
		const char *ok1[] = {"kredietbank", "team-oost"};
		const char *ok2[] = {"team-west", "kredietbank"};
		const char *bad1[] = {"kredietbank"};
		const char *bad2[] = {"kredietbank", "team-oost", "team-west"};
		const char *bad3[] = {"kredietbank", "huisarts"};
		assert_true(router_accepts(&a, ok1, 2));
		assert_true(router_accepts(&a, ok2, 2));
		assert_false(router_accepts(&a, bad1, 1));
		assert_false(router_accepts(&a, bad2, 3));
		assert_false(router_accepts(&a, bad3, 2));
	}
}

static void
test_first_match_by_sender(void **state)
{
	struct s_env *e = *state;
	struct router_query q = s_query(e, "gemeente-a", "shv.melding.v1", 307);
	struct router_result res;

	assert_int_equal(router_match(e->r, &q, NULL, NULL, &res), 1);
	assert_string_equal(res.route->id, "melding-a");
	assert_int_equal(res.n, 1);
	assert_string_equal(res.slot[0].party->id, "kredietbank");
	/* No route for a GP's request for help. */
	q = s_query(e, "huisarts", "shv.melding.v1", 344);
	assert_int_equal(router_match(e->r, &q, NULL, NULL, &res), 0);
}

static void
test_case_participants_and_fallback(void **state)
{
	struct s_env *e = *state;
	struct router_query q =
	    s_query(e, "team-west", "shv.hulpvraag.vastgesteld.v1", 344);
	struct router_result res;

	assert_int_equal(router_match(e->r, &q, s_participants, e, &res), 1);
	assert_string_equal(res.slot[0].party->id, "gemeente-a");
	/* Another case has no municipality yet: the fallback. */
	q.case_ref = "case-2";
	assert_int_equal(router_match(e->r, &q, s_participants, e, &res), 1);
	assert_int_equal(res.n, 1);
	assert_string_equal(res.slot[0].party->id, "gemeente-u");
}

static void
test_sender_never_recipient(void **state)
{
	struct s_env *e = *state;
	/* gemeente-u's own region signal goes to municipalities of
	 * GM0344: only itself, which is left out, so nobody. */
	struct router_query q =
	    s_query(e, "gemeente-u", "shv.vroegsignaal.v1", 344);
	struct router_result res;

	/* gemeente-u is no creditor: route 'signaal' does not match. */
	assert_int_equal(router_match(e->r, &q, NULL, NULL, &res), 0);
}

static void
test_agreements(void **state)
{
	struct s_env *e = *state;
	const struct conf_agreement *a;
	const struct conf_type *melding =
	    conf_type_by_id(e->c, "shv.melding.v1");
	const struct conf_type *verw =
	    conf_type_by_id(e->c, "shv.verwijzing.huisarts.v1");
	const struct conf_party *gu = conf_party_by_id(e->c, "gemeente-u");
	const struct conf_party *ga = conf_party_by_id(e->c, "gemeente-a");
	const struct conf_party *kb = conf_party_by_id(e->c, "kredietbank");
	const struct conf_party *tw = conf_party_by_id(e->c, "team-west");
	const struct conf_party *ha = conf_party_by_id(e->c, "huisarts");
	const char *why;
	int32_t day;

	assert_int_equal(units_parse_date("2026-06-01", &day, &why), 0);
	assert_int_equal(router_agreement(e->c, gu, tw, melding, "schuldhulp",
			     false, day, &a),
	    SCHAKEL_OK);
	assert_string_equal(a->id, "schuldhulp");
	/* Wrong purpose. */
	assert_int_equal(router_agreement(e->c, gu, tw, melding, "marketing",
			     false, day, &a),
	    SCHAKEL_E_NO_AGREEMENT);
	assert_null(a);
	/* Only an expired agreement covers gemeente-a -> kredietbank. */
	assert_int_equal(router_agreement(e->c, ga, kb, melding, "schuldhulp",
			     false, day, &a),
	    SCHAKEL_E_AGREEMENT_EXPIRED);
	/* Consent required. */
	assert_int_equal(
	    router_agreement(e->c, ha, gu, verw, "verwijzing", false, day, &a),
	    SCHAKEL_E_CONSENT_MISSING);
	assert_int_equal(
	    router_agreement(e->c, ha, gu, verw, "verwijzing", true, day, &a),
	    SCHAKEL_OK);
	/* No flow at all in that direction. */
	assert_int_equal(router_agreement(e->c, tw, gu, melding, "schuldhulp",
			     false, day, &a),
	    SCHAKEL_E_NO_AGREEMENT);
	/* Before the agreement's first day. */
	assert_int_equal(units_parse_date("2025-12-31", &day, &why), 0);
	assert_int_equal(router_agreement(e->c, gu, tw, melding, "schuldhulp",
			     false, day, &a),
	    SCHAKEL_E_AGREEMENT_EXPIRED);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_role_in_region),
	    cmocka_unit_test(test_one_of_round_robin_and_fixed),
	    cmocka_unit_test(test_first_match_by_sender),
	    cmocka_unit_test(test_case_participants_and_fallback),
	    cmocka_unit_test(test_sender_never_recipient),
	    cmocka_unit_test(test_agreements),
	};
	return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
