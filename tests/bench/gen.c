/*
 * gen: a synthetic national ecosystem.  Parties are spread over regions
 * (one municipality each); every region has one agreement whose flows are
 * party to party, and routes per region and per message type, so that the
 * result checks clean: no shadowed route, no route without agreement, no
 * flow without a route.  Keys are derived from the party's index, so the
 * output is the same on every run.
 */
#include "gen.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keys.h"

/* Roles in the order of the region's party list. */
enum { R_MUN, R_DC, R_CRED, R_GP, R_NROLES };
static const char *const s_roles[R_NROLES] = {
    "municipality", "debt_counselling", "creditor", "gp"};

/* Party mix per region: 1 municipality, 4 debt counsellors, 17 creditors,
 * 6 GPs (28 parties); 10,000 parties make 357 regions. */
static const int s_mix[R_NROLES] = {1, 4, 17, 6};
#define S_PER_REGION 28

/* Flow kinds: (from role, to role, type). */
static const struct {
	int from;
	int to;
	const char *type;
} s_kinds[] = {
    {R_CRED, R_MUN, "shv.vroegsignaal.v1"},
    {R_MUN, R_DC, "shv.melding.v1"},
    {R_DC, R_MUN, "shv.hulpvraag.vastgesteld.v1"},
    {R_GP, R_MUN, "shv.verwijzing.huisarts.v1"},
    {R_MUN, R_GP, "shv.verwijzing.terugkoppeling.v1"},
    {R_DC, R_CRED, "shv.kennisgeving.v1"},
    {R_DC, R_CRED, "shv.saldoverzoek.v1"},
    {R_CRED, R_DC, "shv.saldoverzoek.antwoord.v1"},
    {R_CRED, R_DC, "shv.betalingsregeling.v1"},
    {R_DC, R_CRED, "shv.betaalvoorstel.v1"},
};
#define S_NKINDS (sizeof(s_kinds) / sizeof(s_kinds[0]))

static FILE *
s_open(const char *dir, const char *name)
{
	char path[4096];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return fopen(path, "w");
}

static void
s_party_id(char *out, size_t len, size_t region, int role, int k)
{
	snprintf(out, len, "%s-r%zu-%d",
	    role == R_MUN        ? "gemeente"
		: role == R_DC   ? "schuldhulp"
		: role == R_CRED ? "schuldeiser"
				 : "huisarts",
	    region, k);
}

int
gen_write(const char *dir, size_t parties, size_t flows, struct gen_stats *st)
{
	size_t regions = (parties + S_PER_REGION - 1) / S_PER_REGION;
	size_t per_region_flows, made = 0;
	struct keys_public pub;
	struct keys_error kerr;
	char keydir[4096], id[64], id2[64];
	FILE *f;

	memset(st, 0, sizeof(*st));
	if (sodium_init() < 0 || regions == 0 || regions > 9999)
		return -1;
	per_region_flows = (flows + regions - 1) / regions;
	snprintf(keydir, sizeof keydir, "%s/keys", dir);
	if (mkdir(keydir, 0700) != 0 && errno != EEXIST)
		return -1;
	if (keys_generate(keydir, "broker", KEYS_BROKER, &pub, &kerr) != 0) {
		errno = EIO;
		return -1;
	}

	f = s_open(dir, "schakel.yaml");
	if (f == NULL)
		return -1;
	fprintf(f,
	    "broker:\n  endpoints: [tcp://127.0.0.1:7450]\n"
	    "  data_dir: data\n  key_file: keys/broker.key\n"
	    "include: [parties.yaml, agreements.yaml, routes.yaml]\n"
	    "roles:\n");
	for (int r = 0; r < R_NROLES; r++)
		fprintf(f, "  - {id: %s, description: role %s}\n", s_roles[r],
		    s_roles[r]);
	fprintf(f, "message_types:\n");
	for (size_t k = 0; k < S_NKINDS; k++)
		fprintf(f,
		    "  - id: %s\n    description: type %zu\n    "
		    "max_size: 64KiB\n    ttl: 14d\n",
		    s_kinds[k].type, k);
	st->types = S_NKINDS;
	fclose(f);

	f = s_open(dir, "parties.yaml");
	if (f == NULL)
		return -1;
	fprintf(f, "parties:\n");
	for (size_t g = 0; g < regions; g++) {
		for (int r = 0; r < R_NROLES; r++) {
			for (int k = 0; k < s_mix[r]; k++) {
				uint8_t seed[32] = {0}, sk[64], pk[32], x[32];
				char t1[KEYS_TEXT_MAX], t2[KEYS_TEXT_MAX],
				    t3[KEYS_TEXT_MAX];
				size_t n = st->parties++;
				/* X25519 clamps the low bits of byte 0. */
				memcpy(seed + 8, &n, sizeof n);
				crypto_sign_seed_keypair(pk, sk, seed);
				keys_encode(KEYS_ED25519, pk, t1);
				seed[31] = 1;
				crypto_scalarmult_base(x, seed);
				keys_encode(KEYS_X25519, x, t2);
				seed[31] = 2;
				crypto_scalarmult_base(x, seed);
				keys_encode(KEYS_X25519, x, t3);
				s_party_id(id, sizeof id, g, r, k);
				fprintf(f,
				    "  - id: %s\n    name: Party %zu\n"
				    "    role: %s\n    regions: [GM%04zu]\n"
				    "    keys:\n      sign: %s\n      box: %s\n"
				    "      transport: %s\n",
				    id, n, s_roles[r], g + 1, t1, t2, t3);
			}
		}
	}
	fclose(f);

	/* One agreement per region; flows party to party, cycling over
	 * the kinds and the pairs of parties until the region has its
	 * share. */
	f = s_open(dir, "agreements.yaml");
	if (f == NULL)
		return -1;
	fprintf(f, "agreements:\n");
	for (size_t g = 0; g < regions && made < flows; g++) {
		size_t want = per_region_flows, done = 0;
		fprintf(f, "  - id: regio-%zu\n    parties: [", g + 1);
		for (int r = 0, first = 1; r < R_NROLES; r++)
			for (int k = 0; k < s_mix[r]; k++, first = 0) {
				s_party_id(id, sizeof id, g, r, k);
				fprintf(f, "%s%s", first ? "" : ", ", id);
			}
		fprintf(f,
		    "]\n    purpose: schuldhulpverlening\n"
		    "    legal_basis: Wgs art. 8\n"
		    "    valid_from: 2026-01-01\n"
		    "    retention_days: 365\n    flows:\n");
		st->agreements++;
		for (size_t round = 0; done < want && made < flows; round++) {
			size_t before = done;
			for (size_t k = 0;
			     k < S_NKINDS && done < want && made < flows; k++) {
				int fr = s_kinds[k].from, to = s_kinds[k].to;
				size_t pairs =
				    (size_t)s_mix[fr] * (size_t)s_mix[to];
				if (round >= pairs)
					continue;
				s_party_id(id, sizeof id, g, fr,
				    (int)(round % (size_t)s_mix[fr]));
				s_party_id(id2, sizeof id2, g, to,
				    (int)(round / (size_t)s_mix[fr]));
				fprintf(f,
				    "      - from: {party: %s}\n"
				    "        to: {party: %s}\n"
				    "        types: [%s]\n",
				    id, id2, s_kinds[k].type);
				done++;
				made++;
			}
			if (done == before)
				break; /* every pair of every kind used */
		}
	}
	st->flows = made;
	fclose(f);

	/* Routes: per region, the municipality's messages to one of its
	 * counsellors; then general routes by sender role and type. */
	f = s_open(dir, "routes.yaml");
	if (f == NULL)
		return -1;
	fprintf(f, "routes:\n");
	for (size_t g = 0; g < regions; g++) {
		s_party_id(id, sizeof id, g, R_MUN, 0);
		fprintf(f,
		    "  - id: melding-regio-%zu\n    match: {type: "
		    "shv.melding.v1, sender: %s}\n    to:\n"
		    "      - one_of: [",
		    g + 1, id);
		for (int k = 0; k < s_mix[R_DC]; k++) {
			s_party_id(id2, sizeof id2, g, R_DC, k);
			fprintf(f, "%s%s", k ? ", " : "", id2);
		}
		fprintf(f, "]\n");
		st->routes++;
	}
	for (size_t k = 0; k < S_NKINDS; k++) {
		if (strcmp(s_kinds[k].type, "shv.melding.v1") == 0)
			continue;
		fprintf(f,
		    "  - id: route-%zu\n    match: {type: %s, sender_role: "
		    "%s}\n    to:\n      - case_participants: %s\n"
		    "    fallback:\n      - role_in_region: %s\n",
		    k, s_kinds[k].type, s_roles[s_kinds[k].from],
		    s_roles[s_kinds[k].to], s_roles[s_kinds[k].to]);
		st->routes++;
	}
	fclose(f);
	{
		const char *names[] = {"schakel.yaml", "parties.yaml",
		    "agreements.yaml", "routes.yaml"};
		for (size_t i = 0; i < 4; i++) {
			struct stat sb;
			char path[4096];
			snprintf(path, sizeof path, "%s/%s", dir, names[i]);
			if (stat(path, &sb) == 0)
				st->bytes += (size_t)sb.st_size;
		}
	}
	return 0;
}
