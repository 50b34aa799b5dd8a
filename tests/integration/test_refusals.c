/* Integration tests of every refusal class of a submit (docs/protocol.md
 * 10.4) through the real schakeld: each asserts its exact code and that
 * nothing was stored or delivered for it (the recipient gets only a valid
 * message sent afterwards, or nothing).  What a well-behaved client never
 * sends goes over raw CurveZMQ connections with hand-built envelopes.
 * t_check_order shows which code wins when a message fails several
 * checks.  Each test starts its own broker in its own folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "env.h"
#include "frame.h"
#include "harness.h"
#include "keys.h"
#include "schakel.h"
#include "testutil.h"

static const char *s_schakeld, *s_schakelctl;

#define S_BSN "111222333" /* nine digits passing the eleven-test */

/* The ecosystem of the refusal tests: the standard parties, and one
 * message type per way a flow can be refused. */
#define S_BROKER(limits) \
	"broker:\n" \
	"  endpoints: [tcp://127.0.0.1:*]\n" \
	"  data_dir: data\n" \
	"  key_file: keys/broker.key\n" \
	"  metrics: off\n" \
	"  admin_socket: run/control.sock\n" \
	"  limits:\n" \
	"    heartbeat: 2s\n" limits "roles:\n" \
	"  - {id: municipality, description: Gemeente}\n" \
	"  - {id: debt_counselling, description: Schuldhulp}\n" \
	"  - {id: creditor, description: Schuldeiser}\n"

#define S_PARTIES(gemeente_limits, team_a_limits) \
	"parties:\n" \
	"  - {id: gemeente, name: Gemeente, role: municipality," \
	" regions: [GM0344], keys: keys/gemeente.pub" gemeente_limits "}\n" \
	"  - {id: team-a, name: Team A, role: debt_counselling," \
	" regions: [GM0344], keys: keys/team-a.pub" team_a_limits "}\n" \
	"  - {id: team-b, name: Team B, role: debt_counselling," \
	" regions: [GM0344], keys: keys/team-b.pub}\n" \
	"  - {id: team-c, name: Team C, role: debt_counselling," \
	" regions: [GM0344], keys: keys/team-c.pub}\n" \
	"  - {id: outsider, name: Outsider, role: creditor," \
	" keys: keys/outsider.pub}\n"

#define S_RULES \
	"message_types:\n" \
	"  - {id: shv.melding.v1, description: Request for help}\n" \
	"  - {id: shv.klein.v1, description: Small note, max_size: 1KiB}\n" \
	"  - {id: shv.los.v1, description: Without a route}\n" \
	"  - {id: shv.vordering.v1, description: Claim}\n" \
	"  - {id: shv.oud.v1, description: Old flow}\n" \
	"  - {id: shv.toestemming.v1, description: Needs consent}\n" \
	"agreements:\n" \
	"  - id: schuldhulp\n" \
	"    parties: [gemeente, team-a]\n" \
	"    purpose: schuldhulp\n" \
	"    legal_basis: Wgs art. 8\n" \
	"    valid_from: 2026-01-01\n" \
	"    retention_days: 90\n" \
	"    flows:\n" \
	"      - {from: {party: gemeente}, to: {party: team-a}," \
	" types: [shv.melding.v1, shv.klein.v1, shv.los.v1]}\n" \
	"  - id: oud\n" \
	"    parties: [gemeente, team-b]\n" \
	"    purpose: schuldhulp\n" \
	"    legal_basis: Wgs art. 8\n" \
	"    valid_from: 2024-01-01\n" \
	"    valid_until: 2025-12-31\n" \
	"    retention_days: 90\n" \
	"    flows:\n" \
	"      - {from: {party: gemeente}, to: {party: team-b}," \
	" types: [shv.oud.v1]}\n" \
	"  - id: toestemming\n" \
	"    parties: [gemeente, team-c]\n" \
	"    purpose: schuldhulp\n" \
	"    legal_basis: AVG art. 6 lid 1 sub a\n" \
	"    valid_from: 2026-01-01\n" \
	"    retention_days: 90\n" \
	"    consent_required: true\n" \
	"    flows:\n" \
	"      - {from: {party: gemeente}, to: {party: team-c}," \
	" types: [shv.toestemming.v1]}\n" \
	"  - id: incasso\n" \
	"    parties: [gemeente, outsider]\n" \
	"    purpose: incasso\n" \
	"    legal_basis: Rv art. 475\n" \
	"    valid_from: 2026-01-01\n" \
	"    retention_days: 90\n" \
	"    flows:\n" \
	"      - {from: {party: gemeente}, to: {party: outsider}," \
	" types: [shv.vordering.v1]}\n" \
	"routes:\n" \
	"  - id: melding\n" \
	"    match: {type: shv.melding.v1, sender: gemeente}\n" \
	"    to: [{party: team-a}]\n" \
	"  - id: klein\n" \
	"    match: {type: shv.klein.v1, sender: gemeente}\n" \
	"    to: [{party: team-a}]\n" \
	"  - id: vordering\n" \
	"    match: {type: shv.vordering.v1, sender: gemeente}\n" \
	"    to: [{party: outsider}]\n" \
	"  - id: oud\n" \
	"    match: {type: shv.oud.v1, sender: gemeente}\n" \
	"    to: [{party: team-b}]\n" \
	"  - id: toestemming\n" \
	"    match: {type: shv.toestemming.v1, sender: gemeente}\n" \
	"    to: [{party: team-c}]\n"

static const char s_yaml_rules[] = S_BROKER("") S_PARTIES("", "") S_RULES;
/* gemeente may submit one message a second, two at once. */
static const char s_yaml_rate[] = S_BROKER("")
    S_PARTIES(", limits: {submit_rate: 1, submit_burst: 2}", "") S_RULES;
/* team-a's queue holds three messages. */
static const char s_yaml_queue[] =
    S_BROKER("") S_PARTIES("", ", limits: {max_queue_depth: 3}") S_RULES;
/* The smallest store the broker accepts. */
static const char s_yaml_store[] =
    S_BROKER("    map_size: 16MiB\n") S_PARTIES("", "") S_RULES;

#define S_MAX_GOT 64

/* What a receiving handler saw. */
struct s_got {
	size_t n;
	struct {
		uint8_t id[SCHAKEL_ID_LEN];
		char case_ref[SCHAKEL_NAME_MAX + 1];
		char consent_ref[SCHAKEL_NAME_MAX + 1];
		char payload[64]; /* the first bytes */
		size_t payload_len;
	} m[S_MAX_GOT];
};

static int
s_on_message(void *arg, const struct schakel_delivery *d)
{
	struct s_got *g = arg;
	size_t n = d->payload_len;

	if (g->n >= S_MAX_GOT)
		return -1;
	memcpy(g->m[g->n].id, d->message_id, SCHAKEL_ID_LEN);
	snprintf(
	    g->m[g->n].case_ref, sizeof g->m[0].case_ref, "%s", d->case_ref);
	snprintf(g->m[g->n].consent_ref, sizeof g->m[0].consent_ref, "%s",
	    d->consent_ref);
	if (n >= sizeof g->m[0].payload)
		n = sizeof g->m[0].payload - 1;
	memcpy(g->m[g->n].payload, d->payload, n);
	g->m[g->n].payload[n] = '\0';
	g->m[g->n].payload_len = d->payload_len;
	g->n++;
	return 0;
}

static int
s_setup_yaml(void **state, const char *yaml)
{
	struct hx *h = hx_new(s_schakeld, yaml);

	*state = h;
	return h != NULL ? 0 : -1;
}

static int
s_setup(void **state)
{
	return s_setup_yaml(state, s_yaml_rules);
}

static int
s_setup_rate(void **state)
{
	return s_setup_yaml(state, s_yaml_rate);
}

static int
s_setup_queue(void **state)
{
	return s_setup_yaml(state, s_yaml_queue);
}

static int
s_setup_store(void **state)
{
	return s_setup_yaml(state, s_yaml_store);
}

static int
s_teardown(void **state)
{
	struct hx *h = *state;

	/* A clean SIGTERM stop exits 0. */
	return hx_destroy(&h) == 0 ? 0 : -1;
}

static struct schakel_client *
s_connect(struct hx *h, const char *party)
{
	struct schakel_client *c = NULL;

	assert_int_equal(hx_connect(h, party, 5000, &c), SCHAKEL_OK);
	return c;
}

/* Sends one message with libschakel as `party`; returns the code. */
static int
s_send(struct hx *h, const char *party, const struct schakel_message *m,
    struct schakel_receipt *r)
{
	struct schakel_client *c = s_connect(h, party);
	int rc = schakel_send(c, m, r);

	schakel_close(&c);
	return rc;
}

/* A valid message from gemeente, sent with libschakel. */
static void
s_send_ok(
    struct hx *h, const struct schakel_message *m, struct schakel_receipt *r)
{
	struct schakel_client *c = s_connect(h, HX_SENDER);
	int rc = schakel_send(c, m, r);

	if (rc != SCHAKEL_OK)
		fail_msg("send: %s: %s", schakel_errname(rc),
		    schakel_client_error(c));
	schakel_close(&c);
}

/* Receives as `party` until `n` messages were handed over (or 10 s),
 * then checks for 500 ms that nothing more comes.  Fills *g. */
static void
s_expect(struct hx *h, const char *party, size_t n, struct s_got *g)
{
	struct schakel_client *c = s_connect(h, party);
	struct s_got *more = calloc(1, sizeof *more);
	size_t handed = 0;

	assert_non_null(more);
	memset(g, 0, sizeof *g);
	if (n > 0) {
		assert_int_equal(
		    schakel_receive(c, n, 10000, s_on_message, g, &handed),
		    SCHAKEL_OK);
		assert_int_equal(handed, n);
	}
	assert_int_equal(
	    schakel_receive(c, 0, 500, s_on_message, more, &handed),
	    SCHAKEL_OK);
	if (handed != 0)
		fail_msg("%s got %zu unexpected message(s), the first on %s",
		    party, handed, more->m[0].case_ref);
	schakel_close(&c);
	free(more);
}

/* A draft from `sender` for `type` on `case_ref`, sealed for the
 * recipients (NULL-terminated), created now, expiring in an hour. */
static struct env_draft *
s_draft(struct hx *h, const char *sender, const char *type,
    const char *case_ref, const char *const *rcpts, const char *payload)
{
	struct env_draft *d = calloc(1, sizeof *d);

	assert_non_null(d);
	hx_header(&d->hdr, sender, type, case_ref);
	for (size_t i = 0; rcpts[i] != NULL; i++) {
		struct keys_secret *k = hx_secret(h, rcpts[i]);

		assert_non_null(k);
		snprintf(d->recipients[i].party_id,
		    sizeof d->recipients[i].party_id, "%s", rcpts[i]);
		memcpy(d->recipients[i].box_pk, k->pub.box, ENV_BOX_PK_LEN);
		keys_secret_destroy(&k);
		d->n_recipients++;
	}
	d->payload = (const uint8_t *)payload;
	d->payload_len = strlen(payload);
	return d;
}

/* Seals and signs `d` with `signer`'s secret key into *env. */
static void
s_build(struct hx *h, struct env_draft *d, const char *signer,
    struct codec_buf *env)
{
	struct keys_secret *sk = hx_secret(h, signer);

	assert_non_null(sk);
	memset(env, 0, sizeof *env);
	assert_int_equal(env_build(d, 1, sk->sign_sk, env), SCHAKEL_OK);
	keys_secret_destroy(&sk);
}

/* Submits envelope bytes over a raw connection.  Returns SCHAKEL_OK with
 * the receipt bytes in *receipt (may be NULL; codec_buf_clear it), or the
 * refusal code, whose message id must be the envelope's. */
static int
s_submit(void *raw, const struct codec_buf *env, const uint8_t *id,
    struct codec_buf *receipt)
{
	static uint64_t corr = 100;
	struct frame sub = {0}, rep = {0};
	int rc;

	sub.corr_id = ++corr;
	sub.kind = FRAME_SUBMIT;
	sub.u.submit.data = env->data;
	sub.u.submit.len = env->len;
	assert_int_equal(hx_raw_request(raw, &sub, &rep, 10000), 0);
	if (rep.kind == FRAME_ACCEPTED) {
		if (receipt != NULL) {
			receipt->len = rep.u.accepted.len;
			receipt->data = malloc(receipt->len + 1);
			assert_non_null(receipt->data);
			memcpy(
			    receipt->data, rep.u.accepted.data, receipt->len);
		}
		frame_clear(&rep);
		return SCHAKEL_OK;
	}
	assert_int_equal(rep.kind, FRAME_REFUSAL);
	rc = (int)rep.u.refusal.code;
	assert_int_not_equal(rc, SCHAKEL_OK);
	if (id != NULL && rep.u.refusal.has_message_id)
		assert_memory_equal(rep.u.refusal.message_id, id, ENV_ID_LEN);
	frame_clear(&rep);
	return rc;
}

/* Builds `d`, signed by `signer`, and submits it over a fresh raw
 * connection of `conn`.  Returns what s_submit returns; frees d. */
static int
s_raw_submit(
    struct hx *h, const char *conn, const char *signer, struct env_draft *d)
{
	struct codec_buf env;
	void *raw = hx_raw_connect(h, conn);
	int rc;

	assert_non_null(raw);
	s_build(h, d, signer, &env);
	rc = s_submit(raw, &env, d->hdr.id, NULL);
	codec_buf_clear(&env);
	hx_raw_close(&raw);
	free(d);
	return rc;
}

static void
s_assert_code(int got, int want)
{
	if (got != want)
		fail_msg("expected %s, got %s", schakel_errname(want),
		    schakel_errname(got));
}

/* The audit log's records about `case_ref` (schakelctl audit export)
 * include a refusal with `code`. */
static void
s_audited(struct hx *h, const char *case_ref, int code)
{
	const char *args[] = {
	    "audit", "export", "--case", case_ref, "--json", NULL};
	char out[16384], want[64];

	assert_int_equal(
	    hx_schakelctl(h, s_schakelctl, out, sizeof out, args), 0);
	snprintf(want, sizeof want, "\"code\":\"%s\"", schakel_errname(code));
	if (strstr(out, "\"event\":\"refused\"") == NULL ||
	    strstr(out, want) == NULL)
		fail_msg("no audit record of the refusal %s on %s:\n%s",
		    schakel_errname(code), case_ref, out);
}

/* Whether the JSON audit export by `by` (--case or --party) `what`
 * holds `needle`. */
static bool
s_has_audit(struct hx *h, const char *by, const char *what, const char *needle)
{
	const char *args[] = {"audit", "export", by, what, "--json", NULL};
	/* A party's whole log (a few hundred records at most here): what
	 * does not fit is cut off, without an error. */
	static char out[256 * 1024];

	assert_int_equal(
	    hx_schakelctl(h, s_schakelctl, out, sizeof out, args), 0);
	return strstr(out, needle) != NULL;
}

/* The marker: a valid message on `case_ref` that team-a must get, and
 * nothing else. */
static void
s_marker_only(struct hx *h, const char *case_ref)
{
	struct schakel_message m = hx_msg(HX_TYPE_ONE, case_ref, "marker");
	struct s_got *g = calloc(1, sizeof *g);

	assert_non_null(g);
	s_send_ok(h, &m, NULL);
	s_expect(h, HX_TEAM_A, 1, g);
	assert_string_equal(g->m[0].case_ref, case_ref);
	assert_string_equal(g->m[0].payload, "marker");
	free(g);
}

static const char *const s_to_a[] = {HX_TEAM_A, NULL};

/* Unknown transport key: refused at the CurveZMQ handshake, the library
 * says so at once, the broker logs it; a declared party still gets in. */
static void
t_unknown_transport_key(void **state)
{
	struct hx *h = *state;
	struct schakel_client *c = NULL;
	struct keys_public pub;
	struct keys_error ke;
	char keys[300], log[320];

	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	snprintf(keys, sizeof keys, "%s/keys", h->dir);
	assert_int_equal(
	    keys_generate(keys, "stranger", KEYS_PARTY, &pub, &ke), 0);
	assert_int_equal(
	    hx_connect(h, "stranger", 5000, &c), SCHAKEL_E_UNKNOWN_PARTY);
	assert_null(c);
	s_marker_only(h, "zaak-0100");
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	{
		FILE *f = fopen(log, "r");
		char line[512];
		char want[KEYS_TEXT_MAX];
		int logged = 0;

		keys_encode(KEYS_X25519, pub.transport, want);
		assert_non_null(f);
		/* Naming the key offered, so the operator can tell which
		 * client it is. */
		while (fgets(line, sizeof line, f) != NULL)
			if (strstr(line, "unknown transport keys") != NULL &&
			    strstr(line, want) != NULL &&
			    strstr(line, "127.0.0.1") != NULL)
				logged++;
		fclose(f);
		/* One line a minute: a second only when ZeroMQ's own
		 * reconnect tried again, which the stop then logs. */
		assert_true(logged >= 1 && logged <= 2);
	}
}

/* An envelope that team-a signed, submitted over gemeente's connection. */
static void
t_forged_sender(void **state)
{
	struct hx *h = *state;
	struct env_draft *d =
	    s_draft(h, HX_TEAM_A, HX_TYPE_ONE, "zaak-0101", s_to_a, "vals");

	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_TEAM_A, d), SCHAKEL_E_FORGED_SENDER);
	s_marker_only(h, "zaak-0102");
}

/* Sender gemeente, but signed with team-a's key. */
static void
t_bad_signature(void **state)
{
	struct hx *h = *state;
	struct env_draft *d =
	    s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0103", s_to_a, "vals");

	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_TEAM_A, d), SCHAKEL_E_BAD_SIGNATURE);
	s_marker_only(h, "zaak-0104");
}

/* The same message id with another header is refused; the same bytes
 * again get the original receipt; team-a gets the message once. */
static void
t_duplicate_id(void **state)
{
	struct hx *h = *state;
	struct env_draft *d1 =
	    s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0105", s_to_a, "een");
	struct env_draft *d2 =
	    s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0106", s_to_a, "twee");
	struct codec_buf e1, e2, r1, r2;
	struct s_got *g = calloc(1, sizeof *g);
	void *raw = hx_raw_connect(h, HX_SENDER);

	assert_non_null(g);
	assert_non_null(raw);
	memcpy(d2->hdr.id, d1->hdr.id, ENV_ID_LEN);
	s_build(h, d1, HX_SENDER, &e1);
	s_build(h, d2, HX_SENDER, &e2);
	s_assert_code(s_submit(raw, &e1, d1->hdr.id, &r1), SCHAKEL_OK);
	s_assert_code(
	    s_submit(raw, &e2, d2->hdr.id, NULL), SCHAKEL_E_DUPLICATE_ID);
	/* A lost answer: the client sends the same bytes again. */
	s_assert_code(s_submit(raw, &e1, d1->hdr.id, &r2), SCHAKEL_OK);
	assert_int_equal(r1.len, r2.len);
	assert_memory_equal(r1.data, r2.data, r1.len);
	hx_raw_close(&raw);
	s_audited(h, "zaak-0106", SCHAKEL_E_DUPLICATE_ID);

	s_expect(h, HX_TEAM_A, 1, g);
	assert_memory_equal(g->m[0].id, d1->hdr.id, ENV_ID_LEN);
	assert_string_equal(g->m[0].case_ref, "zaak-0105");
	assert_string_equal(g->m[0].payload, "een");
	codec_buf_clear(&e1);
	codec_buf_clear(&e2);
	codec_buf_clear(&r1);
	codec_buf_clear(&r2);
	free(d1);
	free(d2);
	free(g);
}

/* docs/protocol.md 11.6: the same bytes again after the recipient took
 * and acknowledged the message still get the original receipt (the
 * sender's answer was lost, e.g. in a broker crash).  The store keeps the
 * receipt with the message id for the dedup window. */
static void
t_resubmit_after_ack(void **state)
{
	struct hx *h = *state;
	struct env_draft *d =
	    s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0129", s_to_a, "een");
	struct codec_buf e, r1, r2;
	struct s_got *g = calloc(1, sizeof *g);
	void *raw = hx_raw_connect(h, HX_SENDER);
	int rc;

	assert_non_null(g);
	assert_non_null(raw);
	s_build(h, d, HX_SENDER, &e);
	s_assert_code(s_submit(raw, &e, d->hdr.id, &r1), SCHAKEL_OK);
	s_expect(h, HX_TEAM_A, 1, g);
	rc = s_submit(raw, &e, d->hdr.id, &r2);
	hx_raw_close(&raw);
	codec_buf_clear(&e);
	free(d);
	free(g);
	s_assert_code(rc, SCHAKEL_OK);
	assert_int_equal(r1.len, r2.len);
	assert_memory_equal(r1.data, r2.data, r1.len);
	codec_buf_clear(&r1);
	codec_buf_clear(&r2);
}

/* docs/protocol.md 11.6: the same bytes sent again at once, before the
 * first is stored (it waits for its group commit), get the same receipt
 * (not DUPLICATE_ID), and the message is stored and delivered once.  The
 * first answer is not read here; a third send, after both, gives the
 * receipt to compare with. */
static void
t_resubmit_while_stored(void **state)
{
	struct hx *h = *state;
	struct env_draft *d = s_draft(
	    h, HX_SENDER, HX_TYPE_ONE, "zaak-0191", s_to_a, "twee keer");
	struct codec_buf e, r2 = {0}, r3 = {0};
	struct frame sub = {.corr_id = 9001, .kind = FRAME_SUBMIT};
	struct s_got *g = calloc(1, sizeof *g);
	void *raw = hx_raw_connect(h, HX_SENDER);
	int sent, rc2, rc3;

	assert_non_null(g);
	assert_non_null(raw);
	s_build(h, d, HX_SENDER, &e);
	sub.u.submit.data = e.data;
	sub.u.submit.len = e.len;
	sent = hx_raw_send(raw, &sub);
	rc2 = s_submit(raw, &e, d->hdr.id, &r2);
	rc3 = s_submit(raw, &e, d->hdr.id, &r3);
	hx_raw_close(&raw);
	codec_buf_clear(&e);
	free(d);
	assert_int_equal(sent, 0);
	s_assert_code(rc2, SCHAKEL_OK);
	s_assert_code(rc3, SCHAKEL_OK);
	assert_int_equal(r2.len, r3.len);
	assert_memory_equal(r2.data, r3.data, r2.len);
	codec_buf_clear(&r2);
	codec_buf_clear(&r3);
	s_expect(h, HX_TEAM_A, 1, g);
	assert_string_equal(g->m[0].case_ref, "zaak-0191");
	free(g);
}

/* Created ten minutes ago, or ten minutes ahead: outside the five-minute
 * window either way. */
static void
t_stale_timestamp(void **state)
{
	struct hx *h = *state;
	struct env_draft *d =
	    s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0107", s_to_a, "oud");

	d->hdr.created_ms -= 10 * 60 * 1000;
	s_assert_code(s_raw_submit(h, HX_SENDER, HX_SENDER, d),
	    SCHAKEL_E_STALE_TIMESTAMP);
	d = s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0107", s_to_a, "later");
	d->hdr.created_ms += 10 * 60 * 1000;
	d->hdr.expires_ms += 10 * 60 * 1000;
	s_assert_code(s_raw_submit(h, HX_SENDER, HX_SENDER, d),
	    SCHAKEL_E_STALE_TIMESTAMP);
	s_audited(h, "zaak-0107", SCHAKEL_E_STALE_TIMESTAMP);
	s_marker_only(h, "zaak-0108");
}

/* A BSN as case reference is refused at resolve and at submit, and it
 * is in no log line and in no stored byte (audit log included). */
static void
t_bsn_as_case(void **state)
{
	struct hx *h = *state;
	struct schakel_message m = hx_msg(HX_TYPE_ONE, S_BSN, "bsn");
	struct schakel_resolved res;
	struct schakel_client *c;
	struct env_draft *d;
	const char *args[] = {
	    "audit", "export", "--case", S_BSN, "--json", NULL};
	char log[320], data[320], path[700], out[4096];
	DIR *dir;
	struct dirent *de;
	size_t files = 0;

	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);

	c = s_connect(h, HX_SENDER);
	s_assert_code(schakel_resolve(c, &m, &res), SCHAKEL_E_BSN_AS_CASE);
	s_assert_code(schakel_send(c, &m, NULL), SCHAKEL_E_BSN_AS_CASE);
	schakel_close(&c);
	d = s_draft(h, HX_SENDER, HX_TYPE_ONE, S_BSN, s_to_a, "bsn");
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_SENDER, d), SCHAKEL_E_BSN_AS_CASE);
	s_marker_only(h, "zaak-0109");

	assert_int_equal(
	    hx_schakelctl(h, s_schakelctl, out, sizeof out, args), 0);
	assert_null(strstr(out, S_BSN));
	assert_non_null(strstr(out, "[]"));
	assert_int_equal(hx_stop(h, SIGTERM), 0);

	/* The log was captured (the refusals are in it) ... */
	assert_true(tu_file_has(log, "code=BSN_AS_CASE"));
	/* ... and the BSN is in neither the log nor the store. */
	assert_false(tu_file_has(log, S_BSN));
	snprintf(data, sizeof data, "%s/data", h->dir);
	dir = opendir(data);
	assert_non_null(dir);
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", data, de->d_name);
		if (tu_file_has(path, S_BSN))
			fail_msg("the BSN is stored in %s", path);
		files++;
	}
	closedir(dir);
	assert_true(files > 0);
	assert_int_equal(hx_start(h), 0);
}

/* Repeated refusals from one party: the first ten a minute are logged a
 * line each, the rest are counted into one summary line. */
static void
t_refusals_summarised(void **state)
{
	struct hx *h = *state;
	char log[320];
	void *sock;

	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	sock = hx_raw_connect(h, HX_SENDER);
	assert_non_null(sock);
	for (int i = 0; i < 15; i++) {
		struct frame req = {
		    .corr_id = 100 + (uint64_t)i, .kind = FRAME_SUBMIT};
		struct frame reply;
		req.u.submit.data = (const uint8_t *)"not an envelope";
		req.u.submit.len = 15;
		assert_int_equal(hx_raw_request(sock, &req, &reply, 5000), 0);
		assert_int_equal(reply.kind, FRAME_REFUSAL);
		assert_string_equal(
		    schakel_errname((int)reply.u.refusal.code), "MALFORMED");
		frame_clear(&reply);
	}
	hx_raw_close(&sock);
	/* The summary is written when the minute ends or at the stop. */
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(
	    tu_lines_with(log, "refused party=" HX_SENDER " code=MALFORMED"),
	    10);
	assert_true(tu_file_has(log,
	    "refused party=" HX_SENDER " suppressed=5 last_code=MALFORMED"));
	assert_int_equal(hx_start(h), 0);
}

/* A header that names the sender in front of a body that does not
 * decode (the ciphertext one byte short): the broker reads only the
 * sender before a verifier thread decodes the rest, and the refusal is
 * the decoder's code, without a message id, and is audited. */
static void
t_body_not_decoded(void **state)
{
	struct hx *h = *state;
	struct env_draft *d =
	    s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0140", s_to_a, "kapot");
	struct frame req = {.corr_id = 7, .kind = FRAME_SUBMIT}, reply;
	char who[ENV_MAX_NAME_LEN + 1], want[64];
	struct codec_buf env;
	struct env *x = NULL;
	void *raw = hx_raw_connect(h, HX_SENDER);
	int code;

	assert_non_null(raw);
	s_build(h, d, HX_SENDER, &env);
	/* The premise: the sender can be read, the rest does not decode. */
	assert_int_equal(
	    env_peek_sender(env.data, env.len - 1, 0, who), SCHAKEL_OK);
	assert_string_equal(who, HX_SENDER);
	code = env_decode(env.data, env.len - 1, 0, &x);
	assert_int_not_equal(code, SCHAKEL_OK);
	req.u.submit.data = env.data;
	req.u.submit.len = env.len - 1;
	assert_int_equal(hx_raw_request(raw, &req, &reply, 5000), 0);
	assert_int_equal(reply.kind, FRAME_REFUSAL);
	s_assert_code((int)reply.u.refusal.code, code);
	assert_false(reply.u.refusal.has_message_id);
	frame_clear(&reply);
	hx_raw_close(&raw);
	codec_buf_clear(&env);
	free(d);
	snprintf(want, sizeof want, "\"code\":\"%s\"", schakel_errname(code));
	assert_true(s_has_audit(h, "--party", HX_SENDER, want));
}

static void
t_unknown_type(void **state)
{
	struct hx *h = *state;
	struct schakel_message m =
	    hx_msg("shv.onbekend.v1", "zaak-0110", "wat is dit");
	struct env_draft *d = s_draft(
	    h, HX_SENDER, "shv.onbekend.v1", "zaak-0110", s_to_a, "wat");

	s_assert_code(s_send(h, HX_SENDER, &m, NULL), SCHAKEL_E_UNKNOWN_TYPE);
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_SENDER, d), SCHAKEL_E_UNKNOWN_TYPE);
	s_audited(h, "zaak-0110", SCHAKEL_E_UNKNOWN_TYPE);
	/* The refusal names whom the message was sealed for. */
	{
		const char *args[] = {
		    "audit", "export", "--case", "zaak-0110", "--json", NULL};
		char out[16384];

		assert_int_equal(
		    hx_schakelctl(h, s_schakelctl, out, sizeof out, args), 0);
		assert_non_null(strstr(out, "\"to\":[\"team-a\"]"));
	}
	s_marker_only(h, "zaak-0111");
}

/* shv.klein.v1 carries at most 1 KiB: 1025 bytes are refused, 1024 are
 * delivered (and nothing else). */
static void
t_too_large(void **state)
{
	struct hx *h = *state;
	char *big = malloc(1026);
	struct schakel_message m;
	struct s_got *g = calloc(1, sizeof *g);

	assert_non_null(big);
	assert_non_null(g);
	memset(big, 'x', 1025);
	big[1025] = '\0';
	m = hx_msg("shv.klein.v1", "zaak-0112", big);
	s_assert_code(s_send(h, HX_SENDER, &m, NULL), SCHAKEL_E_TOO_LARGE);
	s_audited(h, "zaak-0112", SCHAKEL_E_TOO_LARGE);
	big[1024] = '\0';
	m = hx_msg("shv.klein.v1", "zaak-0113", big);
	s_send_ok(h, &m, NULL);
	s_expect(h, HX_TEAM_A, 1, g);
	assert_string_equal(g->m[0].case_ref, "zaak-0113");
	assert_int_equal(g->m[0].payload_len, 1024);
	free(big);
	free(g);
}

/* A known type that no route takes. */
static void
t_no_route(void **state)
{
	struct hx *h = *state;
	struct schakel_message m = hx_msg("shv.los.v1", "zaak-0114", "los");
	struct env_draft *d =
	    s_draft(h, HX_SENDER, "shv.los.v1", "zaak-0114", s_to_a, "los");

	s_assert_code(s_send(h, HX_SENDER, &m, NULL), SCHAKEL_E_NO_ROUTE);
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_SENDER, d), SCHAKEL_E_NO_ROUTE);
	s_audited(h, "zaak-0114", SCHAKEL_E_NO_ROUTE);
	s_marker_only(h, "zaak-0115");
}

/* A route to the outsider, but the only agreement for that flow has
 * another purpose (incasso, not schuldhulp). */
static void
t_no_agreement(void **state)
{
	static const char *const to[] = {"outsider", NULL};
	struct hx *h = *state;
	struct schakel_message m =
	    hx_msg("shv.vordering.v1", "zaak-0116", "vordering");
	struct env_draft *d = s_draft(
	    h, HX_SENDER, "shv.vordering.v1", "zaak-0116", to, "vordering");
	struct s_got *g = calloc(1, sizeof *g);

	assert_non_null(g);
	s_assert_code(s_send(h, HX_SENDER, &m, NULL), SCHAKEL_E_NO_AGREEMENT);
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_SENDER, d), SCHAKEL_E_NO_AGREEMENT);
	s_audited(h, "zaak-0116", SCHAKEL_E_NO_AGREEMENT);
	s_expect(h, "outsider", 0, g);
	free(g);
}

/* The only agreement for gemeente -> team-b ended on 2025-12-31. */
static void
t_agreement_expired(void **state)
{
	static const char *const to[] = {HX_TEAM_B, NULL};
	struct hx *h = *state;
	struct schakel_message m = hx_msg("shv.oud.v1", "zaak-0117", "oud");
	struct env_draft *d =
	    s_draft(h, HX_SENDER, "shv.oud.v1", "zaak-0117", to, "oud");
	struct s_got *g = calloc(1, sizeof *g);

	assert_non_null(g);
	s_assert_code(
	    s_send(h, HX_SENDER, &m, NULL), SCHAKEL_E_AGREEMENT_EXPIRED);
	s_assert_code(s_raw_submit(h, HX_SENDER, HX_SENDER, d),
	    SCHAKEL_E_AGREEMENT_EXPIRED);
	s_audited(h, "zaak-0117", SCHAKEL_E_AGREEMENT_EXPIRED);
	s_expect(h, HX_TEAM_B, 0, g);
	free(g);
}

/* The agreement requires consent: refused without a consent reference,
 * accepted and delivered with one. */
static void
t_consent_missing(void **state)
{
	struct hx *h = *state;
	struct schakel_message m =
	    hx_msg("shv.toestemming.v1", "zaak-0118", "zonder");
	struct s_got *g = calloc(1, sizeof *g);

	assert_non_null(g);
	s_assert_code(
	    s_send(h, HX_SENDER, &m, NULL), SCHAKEL_E_CONSENT_MISSING);
	s_audited(h, "zaak-0118", SCHAKEL_E_CONSENT_MISSING);
	m = hx_msg("shv.toestemming.v1", "zaak-0119", "met");
	m.consent_ref = "toestemming-2026-0042";
	s_send_ok(h, &m, NULL);
	s_expect(h, HX_TEAM_C, 1, g);
	assert_string_equal(g->m[0].case_ref, "zaak-0119");
	assert_string_equal(g->m[0].consent_ref, "toestemming-2026-0042");
	assert_string_equal(g->m[0].payload, "met");
	free(g);
}

/* Sealed for team-b while the route gives team-a (and for both). */
static void
t_route_changed(void **state)
{
	static const char *const to_b[] = {HX_TEAM_B, NULL};
	static const char *const to_ab[] = {HX_TEAM_A, HX_TEAM_B, NULL};
	struct hx *h = *state;
	struct env_draft *d =
	    s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0120", to_b, "b");
	struct s_got *g = calloc(1, sizeof *g);

	assert_non_null(g);
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_SENDER, d), SCHAKEL_E_ROUTE_CHANGED);
	d = s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0120", to_ab, "ab");
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_SENDER, d), SCHAKEL_E_ROUTE_CHANGED);
	s_audited(h, "zaak-0120", SCHAKEL_E_ROUTE_CHANGED);
	s_marker_only(h, "zaak-0121");
	s_expect(h, HX_TEAM_B, 0, g);
	free(g);
}

/* Created a minute ago, expired a second ago. */
static void
t_expired(void **state)
{
	struct hx *h = *state;
	struct env_draft *d =
	    s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0122", s_to_a, "te laat");

	d->hdr.created_ms -= 60 * 1000;
	d->hdr.expires_ms = hx_wall_ms() - 1000;
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_SENDER, d), SCHAKEL_E_EXPIRED);
	s_audited(h, "zaak-0122", SCHAKEL_E_EXPIRED);
	s_marker_only(h, "zaak-0123");
}

/* A message that fails several checks is refused with the code of the
 * first in the order of docs/protocol.md 10.4: signature, sender, clock
 * skew, expiry, BSN, type. */
static void
t_check_order(void **state)
{
	struct hx *h = *state;
	struct env_draft *d;

	/* Signed with another key and ten minutes old. */
	d = s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0130", s_to_a, "a");
	d->hdr.created_ms -= 10 * 60 * 1000;
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_TEAM_A, d), SCHAKEL_E_BAD_SIGNATURE);
	/* From team-a over gemeente's connection, and ten minutes old. */
	d = s_draft(h, HX_TEAM_A, HX_TYPE_ONE, "zaak-0130", s_to_a, "b");
	d->hdr.created_ms -= 10 * 60 * 1000;
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_TEAM_A, d), SCHAKEL_E_FORGED_SENDER);
	/* Ten minutes old, and about a BSN. */
	d = s_draft(h, HX_SENDER, HX_TYPE_ONE, S_BSN, s_to_a, "c");
	d->hdr.created_ms -= 10 * 60 * 1000;
	s_assert_code(s_raw_submit(h, HX_SENDER, HX_SENDER, d),
	    SCHAKEL_E_STALE_TIMESTAMP);
	/* Expired, and about a BSN. */
	d = s_draft(h, HX_SENDER, HX_TYPE_ONE, S_BSN, s_to_a, "d");
	d->hdr.created_ms -= 60 * 1000;
	d->hdr.expires_ms = hx_wall_ms() - 1000;
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_SENDER, d), SCHAKEL_E_EXPIRED);
	/* About a BSN, and of an unknown type. */
	d = s_draft(h, HX_SENDER, "shv.onbekend.v1", S_BSN, s_to_a, "e");
	s_assert_code(
	    s_raw_submit(h, HX_SENDER, HX_SENDER, d), SCHAKEL_E_BSN_AS_CASE);
	s_marker_only(h, "zaak-0131");
}

/* submit_rate 1, submit_burst 2: the third immediate submit is refused;
 * a second later one is accepted again.  The refusal is audited summed. */
static void
t_rate_limited(void **state)
{
	struct hx *h = *state;
	void *raw = hx_raw_connect(h, HX_SENDER);
	struct codec_buf env[4];
	struct env_draft *d[4];
	struct s_got *g = calloc(1, sizeof *g);
	static const int want[4] = {
	    SCHAKEL_OK, SCHAKEL_OK, SCHAKEL_E_RATE_LIMITED, SCHAKEL_OK};

	assert_non_null(raw);
	assert_non_null(g);
	for (int i = 0; i < 4; i++) {
		char text[16];

		snprintf(text, sizeof text, "snel %d", i);
		d[i] = s_draft(
		    h, HX_SENDER, HX_TYPE_ONE, "zaak-0124", s_to_a, text);
		s_build(h, d[i], HX_SENDER, &env[i]);
	}
	for (int i = 0; i < 4; i++) {
		if (i == 3)
			hx_sleep_ms(1100);
		s_assert_code(
		    s_submit(raw, &env[i], d[i]->hdr.id, NULL), want[i]);
	}
	hx_raw_close(&raw);
	s_expect(h, HX_TEAM_A, 3, g);
	assert_string_equal(g->m[0].payload, "snel 0");
	assert_string_equal(g->m[1].payload, "snel 1");
	assert_string_equal(g->m[2].payload, "snel 3");
	/* The refusal is summed into one record a minute (written at the
	 * stop at the latest), with its count. */
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start(h), 0);
	assert_true(s_has_audit(
	    h, "--party", HX_SENDER, "\"code\":\"RATE_LIMITED\",\"count\":1}"));
	for (int i = 0; i < 4; i++) {
		codec_buf_clear(&env[i]);
		free(d[i]);
	}
	free(g);
}

/* A connection whose routing id the client chose (ZMQ_ROUTING_ID) is
 * answered PROTOCOL, with corr_id 0, and gets no session: the broker
 * finds sessions by routing id, and a chosen one could be taken by
 * another party's connection once the first is gone. */
static void
t_chosen_routing_id(void **state)
{
	struct hx *h = *state;
	void *raw = hx_raw_open(h, HX_TEAM_A, "team-a-1", 8, 0);
	struct frame hello = {.corr_id = 7, .kind = FRAME_HELLO};
	struct frame reply = {0};
	struct zmq_pollitem_t item = {.events = ZMQ_POLLIN};
	uint8_t buf[4096];
	int n = -1, rc = -1;

	assert_non_null(raw);
	snprintf(hello.u.hello.protocol, sizeof hello.u.hello.protocol, "%s",
	    FRAME_PROTOCOL);
	snprintf(hello.u.hello.party_id, sizeof hello.u.hello.party_id, "%s",
	    HX_TEAM_A);
	/* Checked once the socket is closed (an open one would keep the
	 * harness from ending). */
	item.socket = raw;
	if (hx_raw_send(raw, &hello) == 0 && zmq_poll(&item, 1, 5000) == 1)
		n = zmq_recv(raw, buf, sizeof buf, 0);
	hx_raw_close(&raw);
	assert_true(n > 0);
	rc = frame_decode(buf, (size_t)n, sizeof buf, &reply);
	assert_int_equal(rc, SCHAKEL_OK);
	assert_int_equal(reply.kind, FRAME_REFUSAL);
	assert_int_equal(reply.corr_id, 0);
	assert_string_equal(
	    schakel_errname((int)reply.u.refusal.code), "PROTOCOL");
	frame_clear(&reply);
	/* The party connects as ever without a chosen id. */
	s_marker_only(h, "zaak-0141");
}

/* A party may have BROKER_PARTY_SESSIONS (16) connections at once: a
 * seventeenth Hello ends the session heard from longest ago, whose
 * client is then refused PROTOCOL; the newest ones keep theirs. */
static void
t_many_connections(void **state)
{
	struct hx *h = *state;
	void *raw[17] = {0};
	struct frame ping = {.corr_id = 9, .kind = FRAME_PING}, reply;
	int got[17]; /* reply kinds, checked once the sockets are closed */
	int code = 0;
	char log[320];

	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	for (int i = 0; i < 17; i++) {
		raw[i] = hx_raw_connect(h, HX_TEAM_A);
		hx_sleep_ms(5); /* each heard from later than the one before */
	}
	/* The open sockets would keep the harness from ending: replies are
	 * collected first, checked after. */
	for (int i = 0; i < 17; i++) {
		got[i] = -1;
		if (raw[i] == NULL ||
		    hx_raw_request(raw[i], &ping, &reply, 5000) != 0)
			continue;
		got[i] = (int)reply.kind;
		if (i == 0 && reply.kind == FRAME_REFUSAL)
			code = (int)reply.u.refusal.code;
		frame_clear(&reply);
	}
	for (int i = 0; i < 17; i++)
		hx_raw_close(&raw[i]);
	assert_int_equal(got[0], FRAME_REFUSAL);
	assert_string_equal(schakel_errname(code), "PROTOCOL");
	for (int i = 1; i < 17; i++)
		assert_int_equal(got[i], FRAME_PONG);
	assert_int_equal(
	    tu_lines_with(log, "too many connections of the party"), 1);
}

/* Hellos sent on one connection in a loop, t_hello_flood. */
#define S_HELLOS 120

/* A client that says Hello in a loop (each one a session, and audit
 * records for it and the one it replaces) is refused RATE_LIMITED beyond
 * BROKER_HELLO_BURST at once and BROKER_HELLO_RATE a second; the
 * refusals are one audit record with their count, not a record each;
 * the party connects normally again a second later. */
static void
t_hello_flood(void **state)
{
	struct hx *h = *state;
	void *raw = hx_raw_connect(h, HX_SENDER);
	size_t welcomed = 0, refused = 0, other = 0;
	uint64_t t0 = hx_mono_ms(), ms;
	char want[64];

	assert_non_null(raw);
	for (int i = 0; i < S_HELLOS; i++) {
		struct frame hello = {
		    .corr_id = 1000 + (uint64_t)i, .kind = FRAME_HELLO};
		struct frame reply;
		snprintf(hello.u.hello.protocol, sizeof hello.u.hello.protocol,
		    "%s", FRAME_PROTOCOL);
		snprintf(hello.u.hello.party_id, sizeof hello.u.hello.party_id,
		    "%s", HX_SENDER);
		snprintf(hello.u.hello.software, sizeof hello.u.hello.software,
		    "test_refusals");
		/* Counted, and checked once the socket is closed (an open
		 * one would keep the harness from ending). */
		if (hx_raw_request(raw, &hello, &reply, 5000) != 0) {
			other++;
			break;
		}
		if (reply.kind == FRAME_WELCOME)
			welcomed++;
		else if (reply.kind == FRAME_REFUSAL &&
		    reply.u.refusal.code == SCHAKEL_E_RATE_LIMITED)
			refused++;
		else
			other++;
		frame_clear(&reply);
	}
	ms = hx_mono_ms() - t0;
	hx_raw_close(&raw);
	assert_int_equal(other, 0);
	print_message("%zu welcomed, %zu refused in %llu ms\n", welcomed,
	    refused, (unsigned long long)ms);
	/* The connection's own Hello took one of the 50. */
	assert_true(welcomed <= 49 + 10 * ms / 1000 + 1);
	assert_true(refused > 0);
	hx_sleep_ms(1000);
	s_marker_only(h, "zaak-0140");
	/* The summary is written when the minute ends or at the stop. */
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start(h), 0);
	snprintf(want, sizeof want, "\"code\":\"RATE_LIMITED\",\"count\":%zu}",
	    refused);
	assert_true(s_has_audit(h, "--party", HX_SENDER, want));
}

/* team-a's queue holds three: while it is offline the fourth message is
 * refused; once it has taken the three, gemeente may send again. */
static void
t_queue_full(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = s_connect(h, HX_SENDER);
	struct schakel_receipt r[3];
	struct s_got *g = calloc(1, sizeof *g);
	char text[4][16];
	int rc;

	assert_non_null(g);
	for (int i = 0; i < 4; i++) {
		struct schakel_message m;

		snprintf(text[i], sizeof text[i], "vol %d", i);
		m = hx_msg(HX_TYPE_ONE, "zaak-0125", text[i]);
		rc = schakel_send(a, &m, i < 3 ? &r[i] : NULL);
		s_assert_code(rc, i < 3 ? SCHAKEL_OK : SCHAKEL_E_QUEUE_FULL);
	}
	s_audited(h, "zaak-0125", SCHAKEL_E_QUEUE_FULL);
	s_expect(h, HX_TEAM_A, 3, g);
	for (int i = 0; i < 3; i++) {
		assert_memory_equal(g->m[i].id, r[i].message_id, ENV_ID_LEN);
		assert_string_equal(g->m[i].payload, text[i]);
		schakel_receipt_clear(&r[i]);
	}
	{
		struct schakel_message m =
		    hx_msg(HX_TYPE_ONE, "zaak-0126", "weer ruimte");

		rc = schakel_send(a, &m, NULL);
		s_assert_code(rc, SCHAKEL_OK);
	}
	schakel_close(&a);
	s_expect(h, HX_TEAM_A, 1, g);
	assert_string_equal(g->m[0].payload, "weer ruimte");
	free(g);
}

/* Five in one batch for team-a, whose queue holds three: the broker
 * counts what a group already took for a queue, so three are accepted
 * and two refused, however the batch falls into groups. */
static void
t_queue_full_batch(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = s_connect(h, HX_SENDER);
	struct schakel_message batch[5];
	struct schakel_receipt rs[5];
	struct s_got *g = calloc(1, sizeof *g);
	char refs[5][16];
	int results[5], rc;
	size_t ok = 0, full = 0;

	assert_non_null(g);
	for (int i = 0; i < 5; i++) {
		snprintf(refs[i], sizeof refs[i], "zaak-013%d", i);
		batch[i] = hx_msg(HX_TYPE_ONE, refs[i], "bundel");
	}
	rc = schakel_send_batch(a, batch, 5, rs, results);
	s_assert_code(rc, SCHAKEL_E_QUEUE_FULL);
	for (int i = 0; i < 5; i++) {
		if (results[i] == SCHAKEL_OK) {
			ok++;
			schakel_receipt_clear(&rs[i]);
		} else {
			s_assert_code(results[i], SCHAKEL_E_QUEUE_FULL);
			full++;
		}
	}
	assert_int_equal(ok, 3);
	assert_int_equal(full, 2);
	schakel_close(&a);
	s_expect(h, HX_TEAM_A, 3, g);
	free(g);
}

/* Sends messages of `size` bytes (payload, starting "PREFIX NNN") on
 * `case_ref` until one is refused or `max` were accepted; their ids go
 * to ids[], how many to *stored.  Returns the refusal's code, or
 * SCHAKEL_OK. */
static int
s_fill(struct schakel_client *a, const char *case_ref, const char *prefix,
    uint8_t *payload, size_t size, uint8_t (*ids)[SCHAKEL_ID_LEN], size_t max,
    size_t *stored)
{
	int rc = SCHAKEL_OK;

	*stored = 0;
	while (*stored < max) {
		struct schakel_message m = hx_msg(HX_TYPE_ONE, case_ref, "");
		struct schakel_receipt r;

		snprintf((char *)payload, 16, "%s %03zu", prefix, *stored);
		m.payload = payload;
		m.payload_len = size;
		rc = schakel_send(a, &m, &r);
		if (rc != SCHAKEL_OK)
			break;
		memcpy(ids[(*stored)++], r.message_id, SCHAKEL_ID_LEN);
		schakel_receipt_clear(&r);
	}
	return rc;
}

/* Whether the broker's log `path` gets a line with `needle` within 5 s
 * (the broker looks at its store's usage once a second). */
static bool
s_file_gets(const char *path, const char *needle)
{
	uint64_t until = hx_mono_ms() + 5000;

	while (!tu_file_has(path, needle) && hx_mono_ms() < until)
		hx_sleep_ms(100);
	return tu_file_has(path, needle);
}

/* A 16 MiB store: large messages are accepted until the store is full,
 * then refused with STORE_FULL (the broker's log warned as it filled);
 * the recipient still gets every stored one, and its acks make room for
 * new messages (the log says the store is below the warning levels
 * again). */
static void
t_store_full(void **state)
{
	enum { S_SIZE = 768 * 1024, S_MAX = 40 };
	struct hx *h = *state;
	struct schakel_client *a;
	uint8_t *payload = malloc(S_SIZE);
	struct s_got *g = calloc(1, sizeof *g);
	uint8_t ids[S_MAX][SCHAKEL_ID_LEN];
	size_t stored = 0;
	char log[320];
	int rc;

	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	a = s_connect(h, HX_SENDER);
	assert_non_null(payload);
	assert_non_null(g);
	for (size_t i = 0; i < S_SIZE; i++)
		payload[i] = (uint8_t)(i * 131 + 7);
	rc = s_fill(
	    a, "zaak-0127", "groot", payload, S_SIZE, ids, S_MAX, &stored);
	s_assert_code(rc, SCHAKEL_E_STORE_FULL);
	assert_true(stored >= 5);
	/* Refusals while the store is full are summed, not recorded one
	 * by one (that would eat the room kept back for acks). */
	assert_false(
	    s_has_audit(h, "--case", "zaak-0127", "\"event\":\"refused\""));
	print_message(
	    "store full after %zu messages of %d KiB\n", stored, S_SIZE / 1024);
	/* As it filled, warnings that say what to do, a level at a time
	 * (80, 90, 95%: at most three however long it stays there), and
	 * one that it refuses new messages (768 KiB ones are refused near
	 * 90%: a message must leave room for its copies). */
	assert_true(s_file_gets(log,
	    "before new messages are refused with "
	    "STORE_FULL); raise "
	    "broker.limits.map_size"));
	assert_true(s_file_gets(log,
	    "store: full: new messages are refused "
	    "with STORE_FULL"));
	hx_sleep_ms(2500); /* two more looks: no more warnings */
	assert_true(tu_lines_with(log, "% full (") <= 3);
	assert_int_equal(tu_lines_with(log, "store: full:"), 1);
	assert_false(tu_file_has(log, "below the warning levels again"));

	/* Everything stored is delivered, in order, and acknowledged. */
	{
		struct schakel_client *b = s_connect(h, HX_TEAM_A);
		size_t handed = 0, total = 0;

		while (total < stored) {
			memset(g, 0, sizeof *g);
			assert_int_equal(schakel_receive(b, stored - total,
					     10000, s_on_message, g, &handed),
			    SCHAKEL_OK);
			assert_true(handed > 0);
			for (size_t i = 0; i < g->n; i++) {
				char want[32];

				snprintf(want, sizeof want, "groot %03zu",
				    total + i);
				assert_string_equal(g->m[i].payload, want);
				assert_int_equal(g->m[i].payload_len, S_SIZE);
				assert_memory_equal(
				    g->m[i].id, ids[total + i], SCHAKEL_ID_LEN);
			}
			total += g->n;
		}
		schakel_close(&b);
	}
	/* The acks freed the space: a new message is accepted.  (The acks
	 * of the last receive may still be on their way.) */
	for (int tries = 0;; tries++) {
		struct schakel_message m = hx_msg(HX_TYPE_ONE, "zaak-0128", "");

		snprintf((char *)payload, 16, "daarna");
		m.payload = payload;
		m.payload_len = S_SIZE;
		rc = schakel_send(a, &m, NULL);
		if (rc != SCHAKEL_E_STORE_FULL || tries == 20)
			break;
		hx_sleep_ms(100);
	}
	s_assert_code(rc, SCHAKEL_OK);
	schakel_close(&a);
	s_expect(h, HX_TEAM_A, 1, g);
	assert_string_equal(g->m[0].payload, "daarna");
	assert_true(s_file_gets(log, "below the warning levels again"));
	/* With room again, the summed refusals are written (the broker
	 * looks once a second): one record for gemeente, with the count. */
	{
		uint64_t until = hx_mono_ms() + 5000;
		char want[128];
		bool found = false;

		/* (How many: the first refusal, and whatever libschakel and
		 * the loop above tried again while it was full.) */
		snprintf(want, sizeof want,
		    "\"from\":\"gemeente\",\"to\":[],\"type\":\"\",\"case\":"
		    "\"\",\"purpose\":\"\",\"agreements\":[],\"code\":"
		    "\"STORE_FULL\",\"count\":");
		while (!found && hx_mono_ms() < until) {
			found = s_has_audit(h, "--party", HX_SENDER, want);
			if (!found)
				hx_sleep_ms(200);
		}
		assert_true(found);
	}
	free(payload);
	free(g);
}

/* The next frame from a raw connection (Pings skipped), within 10 s. */
static void
s_raw_next(void *raw, struct frame *f)
{
	uint64_t until = hx_mono_ms() + 10000;

	while (hx_mono_ms() < until) {
		zmq_pollitem_t it = {raw, 0, ZMQ_POLLIN, 0};
		zmq_msg_t m;
		int rc;

		if (zmq_poll(&it, 1, 100) <= 0)
			continue;
		zmq_msg_init(&m);
		assert_true(zmq_msg_recv(&m, raw, 0) >= 0);
		rc = frame_decode(zmq_msg_data(&m), zmq_msg_size(&m), 0, f);
		zmq_msg_close(&m);
		assert_int_equal(rc, SCHAKEL_OK);
		/* This connection did not ask for bundles. */
		assert_int_not_equal(f->kind, FRAME_BUNDLE);
		if (f->kind != FRAME_PING)
			return;
		frame_clear(f);
	}
	fail_msg("no frame from the broker within 10 s");
}

/* The next frame must be of `kind` and answer `corr`; returns its
 * refusal code (0 for other kinds). */
static uint32_t
s_raw_expect(void *raw, enum frame_kind kind, uint64_t corr)
{
	struct frame f;
	uint32_t code;

	s_raw_next(raw, &f);
	assert_int_equal(f.kind, kind);
	assert_int_equal(f.corr_id, corr);
	code = kind == FRAME_REFUSAL ? f.u.refusal.code : 0;
	frame_clear(&f);
	return code;
}

/* docs/protocol.md 10.9: a bundle's frames are taken in order, as if
 * each had come on its own; a bundle inside it is refused (MALFORMED)
 * and the rest still handled; a client that did not ask for bundles
 * gets its answers one to a message. */
static void
t_bundle(void **state)
{
	struct hx *h = *state;
	struct env_draft *d =
	    s_draft(h, HX_SENDER, HX_TYPE_ONE, "zaak-0190", s_to_a, "bundel");
	struct frame_bundle fb = {0}, inner = {0};
	struct frame f = {0};
	struct codec_buf e;
	struct s_got *g = calloc(1, sizeof *g);
	void *raw = hx_raw_connect(h, HX_SENDER);
	const uint8_t *msg;
	size_t len;

	assert_non_null(g);
	assert_non_null(raw);
	s_build(h, d, HX_SENDER, &e);
	f.kind = FRAME_PING;
	f.corr_id = 11;
	f.u.ping_ms = 11;
	assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
	f.kind = FRAME_SUBMIT;
	f.corr_id = 12;
	f.u.submit.data = e.data;
	f.u.submit.len = e.len;
	assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
	/* A bundle of two Pings, inside. */
	f.kind = FRAME_PING;
	f.corr_id = 99;
	assert_int_equal(frame_bundle_add(&inner, &f), SCHAKEL_OK);
	assert_int_equal(frame_bundle_add(&inner, &f), SCHAKEL_OK);
	assert_true(frame_bundle_finish(&inner, &msg, &len));
	assert_int_equal(frame_bundle_add_raw(&fb, msg, len), SCHAKEL_OK);
	f.corr_id = 13;
	f.u.ping_ms = 13;
	assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
	assert_true(frame_bundle_finish(&fb, &msg, &len));
	assert_int_equal(zmq_send(raw, msg, len, 0), (int)len);

	/* Answered as they come: the Pong, the refusal of the bundle
	 * inside, the second Pong; the receipt once the group is
	 * durable. */
	s_raw_expect(raw, FRAME_PONG, 11);
	assert_int_equal(
	    s_raw_expect(raw, FRAME_REFUSAL, 0), SCHAKEL_E_MALFORMED);
	s_raw_expect(raw, FRAME_PONG, 13);
	s_raw_expect(raw, FRAME_ACCEPTED, 12);
	/* The Welcome says bundles only to a client that asked (one made
	 * before them would refuse the field). */
	for (int ask = 0; ask < 2; ask++) {
		struct frame hello = {
		    .corr_id = 20 + (uint64_t)ask, .kind = FRAME_HELLO};

		snprintf(hello.u.hello.protocol, sizeof hello.u.hello.protocol,
		    "%s", FRAME_PROTOCOL);
		snprintf(hello.u.hello.party_id, sizeof hello.u.hello.party_id,
		    "%s", HX_SENDER);
		hello.u.hello.bundles = ask == 1;
		assert_int_equal(hx_raw_request(raw, &hello, &f, 10000), 0);
		assert_int_equal(f.kind, FRAME_WELCOME);
		assert_int_equal(f.u.welcome.bundles, ask == 1);
		frame_clear(&f);
	}
	hx_raw_close(&raw);

	s_expect(h, HX_TEAM_A, 1, g);
	assert_memory_equal(g->m[0].id, d->hdr.id, ENV_ID_LEN);
	assert_string_equal(g->m[0].payload, "bundel");
	frame_bundle_free(&fb);
	frame_bundle_free(&inner);
	codec_buf_clear(&e);
	free(d);
	free(g);
}

/* The disk gives out under the store: its file may not grow past a
 * limit (RLIMIT_FSIZE), so a group commit fails while writing its pages,
 * as on a full disk.  The message of that group is refused, never
 * delivered (also not from the broker's memory of the messages it
 * accepted last), every message the client holds a receipt for is
 * delivered once, the audit chain verifies, and the broker keeps
 * serving and stops cleanly. */
static void
t_disk_full(void **state)
{
	enum { S_SIZE = 16 * 1024, S_MAX = 60 };
	struct hx *h = *state;
	const char *verify[] = {"audit", "verify", NULL};
	struct schakel_client *a;
	struct s_got *g = calloc(1, sizeof *g);
	uint8_t *payload = malloc(S_SIZE);
	uint8_t ids[S_MAX][SCHAKEL_ID_LEN];
	char path[400], out[4096];
	struct stat st;
	size_t stored = 0;
	int rc;

	assert_non_null(g);
	assert_non_null(payload);
	memset(payload, 'x', S_SIZE);
	snprintf(path, sizeof path, "%s/data/data.mdb", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(stat(path, &st), 0);
	h->max_file_bytes = (unsigned long long)st.st_size + 256 * 1024;
	assert_int_equal(hx_start(h), 0);
	a = s_connect(h, HX_SENDER);
	rc =
	    s_fill(a, "zaak-0150", "vol", payload, S_SIZE, ids, S_MAX, &stored);
	/* The page writes fail (a short write, which LMDB reports as EIO,
	 * or EFBIG): not a full store (that is ENOSPC or the map) but a
	 * store that cannot write, UNAVAILABLE, after libschakel's
	 * retries. */
	s_assert_code(rc, SCHAKEL_E_UNAVAILABLE);
	assert_true(stored >= 3);
	print_message("the store's file was full after %zu messages\n", stored);
	schakel_close(&a);

	/* Exactly what was accepted comes out, in order, once. */
	s_expect(h, HX_TEAM_A, stored, g);
	for (size_t i = 0; i < stored; i++) {
		char want[32];

		snprintf(want, sizeof want, "vol %03zu", i);
		assert_string_equal(g->m[i].payload, want);
		assert_memory_equal(g->m[i].id, ids[i], SCHAKEL_ID_LEN);
	}
	assert_int_equal(
	    hx_schakelctl(h, s_schakelctl, out, sizeof out, verify), 0);
	h->max_file_bytes = 0;
	free(payload);
	free(g);
}

int
main(int argc, char **argv)
{
#define S_T(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown)
	const struct CMUnitTest tests[] = {
	    S_T(t_unknown_transport_key),
	    S_T(t_forged_sender),
	    S_T(t_bad_signature),
	    S_T(t_duplicate_id),
	    S_T(t_resubmit_after_ack),
	    S_T(t_resubmit_while_stored),
	    S_T(t_stale_timestamp),
	    S_T(t_bsn_as_case),
	    S_T(t_refusals_summarised),
	    S_T(t_body_not_decoded),
	    S_T(t_unknown_type),
	    S_T(t_too_large),
	    S_T(t_no_route),
	    S_T(t_no_agreement),
	    S_T(t_agreement_expired),
	    S_T(t_consent_missing),
	    S_T(t_route_changed),
	    S_T(t_expired),
	    S_T(t_check_order),
	    S_T(t_bundle),
	    cmocka_unit_test_setup_teardown(
		t_rate_limited, s_setup_rate, s_teardown),
	    S_T(t_hello_flood),
	    S_T(t_chosen_routing_id),
	    S_T(t_many_connections),
	    cmocka_unit_test_setup_teardown(
		t_queue_full, s_setup_queue, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_queue_full_batch, s_setup_queue, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_store_full, s_setup_store, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_disk_full, s_setup_store, s_teardown),
	};
#undef S_T

	if (argc != 3) {
		fprintf(stderr, "usage: %s SCHAKELD SCHAKELCTL\n", argv[0]);
		return 2;
	}
	s_schakeld = argv[1];
	s_schakelctl = argv[2];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
