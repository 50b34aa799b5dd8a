/* Integration tests of the message flow through the real schakeld with
 * the real libschakel: A -> broker -> B, fan-out to three recipients (one
 * message and a batch under one signature), a recipient that was offline
 * during twenty sends, a tampered ciphertext refused by the broker and
 * one changed in the broker's store refused by the recipient's library, the
 * notices a sender receives (expired in a queue, also while in flight;
 * delivered), one long case beside a short one, and the delivery count
 * across a Nack, a reconnect, an ack timeout, missed heartbeats and a
 * restart; commits that fail while a batch is in flight; a backlog taken
 * while commits are slow; a queue of thousands of expired messages in
 * front of ones on time.
 * Each test starts its own broker in its own folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "env.h"
#include "frame.h"
#include "harness.h"
#include "keys.h"
#include "schakel.h"
#include "testutil.h"

static const char *s_schakeld;
static const char *s_slowsync; /* slowsync.c, for s_setup_slow_sync */

#define S_MAX_GOT 64

/* What a receiving handler saw. */
struct s_got {
	size_t n;
	unsigned refuse_once; /* refuse the message at this index once */
	bool refused;
	struct {
		uint8_t id[SCHAKEL_ID_LEN];
		char sender[SCHAKEL_NAME_MAX + 1];
		char type[SCHAKEL_NAME_MAX + 1];
		char case_ref[SCHAKEL_NAME_MAX + 1];
		char purpose[SCHAKEL_NAME_MAX + 1];
		char payload[256];
		uint32_t count;
	} m[S_MAX_GOT];
};

static int
s_on_message(void *arg, const struct schakel_delivery *d)
{
	struct s_got *g = arg;

	if (g->n >= S_MAX_GOT || d->payload_len >= sizeof g->m[0].payload)
		return -1;
	if (!g->refused && g->refuse_once > 0 && g->n == g->refuse_once) {
		g->refused = true;
		return -1; /* not taken: delivered again */
	}
	memcpy(g->m[g->n].id, d->message_id, SCHAKEL_ID_LEN);
	snprintf(g->m[g->n].sender, sizeof g->m[0].sender, "%s", d->sender);
	snprintf(g->m[g->n].type, sizeof g->m[0].type, "%s", d->type);
	snprintf(
	    g->m[g->n].case_ref, sizeof g->m[0].case_ref, "%s", d->case_ref);
	snprintf(g->m[g->n].purpose, sizeof g->m[0].purpose, "%s", d->purpose);
	memcpy(g->m[g->n].payload, d->payload, d->payload_len);
	g->m[g->n].payload[d->payload_len] = '\0';
	g->m[g->n].count = d->delivery_count;
	g->n++;
	return 0;
}

static int
s_setup(void **state)
{
	struct hx *h = hx_new(s_schakeld, NULL);

	*state = h;
	return h != NULL ? 0 : -1;
}

/* The environment that preloads slowsync.c into the broker (under
 * AddressSanitizer it may come before its runtime), with `what` and
 * `more` (its SLOWSYNC_ settings; `more` may be NULL) added; static. */
static const char *const *
s_slowsync_env(const char *what, const char *more)
{
	static char preload[512], asan[512];
	static const char *env[5];
	const char *old = getenv("ASAN_OPTIONS");

	snprintf(preload, sizeof preload, "LD_PRELOAD=%s", s_slowsync);
	snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
	    old != NULL ? old : "", old != NULL && old[0] != '\0' ? ":" : "");
	env[0] = preload;
	env[1] = asan;
	env[2] = what;
	env[3] = more;
	env[4] = NULL;
	return env;
}

/* Every fdatasync of the broker takes 300 ms more. */
static int
s_setup_slow_sync(void **state)
{
	struct hx *h = hx_new_env(
	    s_schakeld, NULL, s_slowsync_env("SLOWSYNC_MS=300", NULL));

	*state = h;
	return h != NULL ? 0 : -1;
}

static int
s_teardown(void **state)
{
	struct hx *h = *state;

	/* A clean SIGTERM stop exits 0. */
	return hx_destroy(&h) == 0 ? 0 : -1;
}

static void
s_connect(struct hx *h, const char *party, struct schakel_client **c)
{
	assert_int_equal(hx_connect(h, party, 5000, c), SCHAKEL_OK);
}

static void
s_send_ok(struct schakel_client *c, const struct schakel_message *m,
    struct schakel_receipt *r)
{
	int rc = schakel_send(c, m, r);

	if (rc != SCHAKEL_OK)
		fail_msg("send: %s: %s", schakel_errname(rc),
		    schakel_client_error(c));
}

/* (a) A -> broker -> B: receipt verified, payload and header intact. */
static void
t_a_to_b(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL;
	struct schakel_message m =
	    hx_msg(HX_TYPE_ONE, "zaak-0001", "aanmelding: huur achterstand");
	struct schakel_resolved res;
	struct schakel_receipt r;
	struct s_got *g = calloc(1, sizeof *g);
	size_t handed = 0;

	assert_non_null(g);
	s_connect(h, HX_SENDER, &a);
	s_connect(h, HX_TEAM_A, &b);
	assert_int_equal(schakel_resolve(a, &m, &res), SCHAKEL_OK);
	assert_int_equal(res.n_recipients, 1);
	assert_string_equal(res.recipients[0].party_id, HX_TEAM_A);
	assert_string_equal(res.recipients[0].agreement_id, "schuldhulp");

	s_send_ok(a, &m, &r);
	assert_int_equal(r.n_recipients, 1);
	assert_string_equal(r.recipients[0], HX_TEAM_A);
	assert_string_equal(r.agreement_ids[0], "schuldhulp");
	assert_true(r.store_seq > 0);
	assert_true(r.signed_receipt_len > 0);

	assert_int_equal(
	    schakel_receive(b, 1, 10000, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 1);
	assert_int_equal(g->n, 1);
	assert_memory_equal(g->m[0].id, r.message_id, SCHAKEL_ID_LEN);
	assert_string_equal(g->m[0].sender, HX_SENDER);
	assert_string_equal(g->m[0].type, HX_TYPE_ONE);
	assert_string_equal(g->m[0].case_ref, "zaak-0001");
	assert_string_equal(g->m[0].purpose, HX_PURPOSE);
	assert_string_equal(g->m[0].payload, "aanmelding: huur achterstand");
	assert_int_equal(g->m[0].count, 1);

	/* Acknowledged: nothing more comes. */
	memset(g, 0, sizeof *g);
	assert_int_equal(
	    schakel_receive(b, 1, 500, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);

	schakel_receipt_clear(&r);
	schakel_close(&a);
	schakel_close(&b);
	free(g);
}

/* (b) fan-out: one message to three recipients, then a batch of five
 * under one signature, each to all three. */
static void
t_fan_out(void **state)
{
	static const char *const teams[] = {HX_TEAM_A, HX_TEAM_B, HX_TEAM_C};
	struct hx *h = *state;
	struct schakel_client *a = NULL, *t[3] = {NULL};
	struct schakel_message m =
	    hx_msg(HX_TYPE_ALL, "zaak-0002", "overleg dinsdag 10:00");
	struct schakel_message batch[5];
	struct schakel_receipt r, rs[5];
	char texts[5][32];
	int results[5];
	struct s_got *g = calloc(1, sizeof *g);
	size_t handed;

	assert_non_null(g);
	s_connect(h, HX_SENDER, &a);
	s_send_ok(a, &m, &r);
	assert_int_equal(r.n_recipients, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(r.recipients[i], teams[i]);

	for (size_t i = 0; i < 5; i++) {
		snprintf(texts[i], sizeof texts[i], "batch bericht %zu", i);
		batch[i] = hx_msg(HX_TYPE_ALL, "zaak-0003", texts[i]);
	}
	assert_int_equal(
	    schakel_send_batch(a, batch, 5, rs, results), SCHAKEL_OK);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(results[i], SCHAKEL_OK);
		assert_int_equal(rs[i].n_recipients, 3);
	}

	for (size_t k = 0; k < 3; k++) {
		s_connect(h, teams[k], &t[k]);
		memset(g, 0, sizeof *g);
		assert_int_equal(
		    schakel_receive(t[k], 6, 15000, s_on_message, g, &handed),
		    SCHAKEL_OK);
		assert_int_equal(handed, 6);
		/* zaak-0002 first (accepted first), then the batch in order
		 * on its own case. */
		for (size_t i = 0, j = 0; i < g->n; i++) {
			assert_string_equal(g->m[i].sender, HX_SENDER);
			if (strcmp(g->m[i].case_ref, "zaak-0002") == 0) {
				assert_memory_equal(
				    g->m[i].id, r.message_id, SCHAKEL_ID_LEN);
				assert_string_equal(
				    g->m[i].payload, "overleg dinsdag 10:00");
				continue;
			}
			assert_string_equal(g->m[i].case_ref, "zaak-0003");
			assert_memory_equal(
			    g->m[i].id, rs[j].message_id, SCHAKEL_ID_LEN);
			assert_string_equal(g->m[i].payload, texts[j]);
			j++;
		}
		schakel_close(&t[k]);
	}
	schakel_receipt_clear(&r);
	for (size_t i = 0; i < 5; i++)
		schakel_receipt_clear(&rs[i]);
	schakel_close(&a);
	free(g);
}

/* A receive while the broker is down returns at its timeout (a second
 * after it at most, the least a wait for a Welcome takes), not after
 * the client's request timeout and five attempts with backoff (3 and
 * 16 s here before). */
static void
t_receive_broker_down(void **state)
{
	struct hx *h = *state;
	struct schakel_client *t = NULL;
	struct s_got *g = calloc(1, sizeof *g);
	size_t handed = 9;
	uint64_t t0, el1, el2;
	int rc1, rc2;

	assert_non_null(g);
	assert_int_equal(hx_connect(h, HX_TEAM_A, 3000, &t), SCHAKEL_OK);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	t0 = hx_mono_ms();
	rc1 = schakel_receive(t, 0, 500, s_on_message, g, &handed);
	el1 = hx_mono_ms() - t0;
	t0 = hx_mono_ms();
	rc2 = schakel_receive(t, 0, 500, s_on_message, g, &handed);
	el2 = hx_mono_ms() - t0;
	print_message("receive(500 ms), broker down: %s after %llu ms, %s "
		      "after %llu ms\n",
	    schakel_errname(rc1), (unsigned long long)el1, schakel_errname(rc2),
	    (unsigned long long)el2);
	schakel_close(&t);
	assert_int_equal(hx_start(h), 0);
	assert_int_equal(rc1, SCHAKEL_E_UNAVAILABLE);
	assert_int_equal(rc2, SCHAKEL_E_UNAVAILABLE);
	assert_int_equal(handed, 0);
	assert_true(el1 < 1500);
	assert_true(el2 < 1500);
	free(g);
}

/* A receive without a timeout, on a thread of its own. */
struct s_waiting {
	struct schakel_client *t;
	struct s_got *g;
	size_t handed;
	int rc;
};

static void *
s_receive_forever(void *arg)
{
	struct s_waiting *w = arg;

	w->rc = schakel_receive(w->t, 1, -1, s_on_message, w->g, &w->handed);
	return NULL;
}

/* Without a timeout a receive waits for the broker for as long as it
 * takes (schakel.h), also when it cannot reach it at the start: down
 * for 8 s, then a message comes (it gave up with UNAVAILABLE after
 * five attempts, some 6.5 s, before).  The broker is started again by this thread:
 * the harness has it end with the thread that started it. */
static void
t_receive_waits_for_broker(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m = hx_msg(HX_TYPE_ONE, "zaak-0901", "later");
	struct schakel_receipt r;
	struct s_waiting w = {.g = calloc(1, sizeof *w.g)};
	pthread_t th;

	assert_non_null(w.g);
	assert_int_equal(hx_connect(h, HX_TEAM_A, 1000, &w.t), SCHAKEL_OK);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	/* The connection is found gone. */
	(void)schakel_receive(w.t, 0, 200, s_on_message, w.g, &w.handed);
	assert_int_equal(pthread_create(&th, NULL, s_receive_forever, &w), 0);
	/* Longer than five attempts with their backoff take. */
	hx_sleep_ms(8000);
	assert_int_equal(hx_start(h), 0);
	s_connect(h, HX_SENDER, &a);
	s_send_ok(a, &m, &r);
	schakel_receipt_clear(&r);
	schakel_close(&a);
	assert_int_equal(pthread_join(th, NULL), 0);
	schakel_close(&w.t);
	if (w.rc != SCHAKEL_OK)
		fail_msg("receive: %s", schakel_errname(w.rc));
	assert_int_equal(w.handed, 1);
	assert_string_equal(w.g->m[0].payload, "later");
	free(w.g);
}

/* A batch's Resolves go out together (one round trip); each message
 * still gets its own answer: those the rules or the codec refuse are
 * refused with their own code and sentence, the rest are sent. */
static void
t_batch_mixed(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *t = NULL;
	struct schakel_message batch[7];
	struct schakel_receipt rs[7];
	int results[7];
	struct s_got *g = calloc(1, sizeof *g);
	size_t handed;

	assert_non_null(g);
	s_connect(h, HX_SENDER, &a);
	batch[0] = hx_msg(HX_TYPE_ALL, "zaak-0401", "een");
	batch[1] = hx_msg("shv.onbekend.v1", "zaak-0402", "twee");
	batch[2] = hx_msg(HX_TYPE_ALL, "zaak-0403", "drie");
	batch[3] = hx_msg(HX_TYPE_ALL, "zaak-0404", "vier");
	batch[3].region = "GM0363"; /* no team there */
	batch[4] = hx_msg(HX_TYPE_ALL, "zaak-0405", "vijf");
	/* Fields the codec refuses fail alone too (they failed every
	 * message of the batch, found only when encoding). */
	batch[5] = hx_msg(HX_TYPE_ALL, "zaak-0406", "zes");
	batch[5].consent_ref = "toestemming 7"; /* a space */
	batch[6] = hx_msg("Shv.Overleg.v1", "zaak-0407", "zeven");
	assert_int_equal(schakel_send_batch(a, batch, 7, rs, results),
	    SCHAKEL_E_UNKNOWN_TYPE);
	assert_non_null(strstr(schakel_client_error(a), "resolve refused"));
	assert_int_equal(results[0], SCHAKEL_OK);
	assert_int_equal(results[1], SCHAKEL_E_UNKNOWN_TYPE);
	assert_int_equal(results[2], SCHAKEL_OK);
	assert_int_equal(results[3], SCHAKEL_E_NO_ROUTE);
	assert_int_equal(results[4], SCHAKEL_OK);
	assert_int_equal(results[5], SCHAKEL_E_BAD_FIELD);
	assert_int_equal(results[6], SCHAKEL_E_BAD_FIELD);

	s_connect(h, HX_TEAM_A, &t);
	assert_int_equal(
	    schakel_receive(t, 3, 15000, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 3);
	for (size_t i = 0; i < 3; i++) {
		static const size_t ok[] = {0, 2, 4};
		size_t j;

		for (j = 0; j < 3; j++)
			if (memcmp(g->m[i].id, rs[ok[j]].message_id,
				SCHAKEL_ID_LEN) == 0)
				break;
		assert_true(j < 3);
		assert_string_equal(g->m[i].case_ref, batch[ok[j]].case_ref);
		assert_string_equal(
		    g->m[i].payload, (const char *)batch[ok[j]].payload);
	}
	/* Nothing else came. */
	memset(g, 0, sizeof *g);
	assert_int_equal(
	    schakel_receive(t, 1, 500, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);
	for (size_t i = 0; i < 5; i += 2)
		schakel_receipt_clear(&rs[i]);
	schakel_close(&t);
	schakel_close(&a);
	free(g);
}

/* (c) team-a is offline during twenty sends on two cases; when it comes
 * back it gets all of them, in order per case, each once at the
 * application, although it refuses one once (a retryable Nack). */
static void
t_offline_recipient(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL;
	struct s_got *g = calloc(1, sizeof *g);
	char text[64];
	int last[2] = {-1, -1};
	size_t handed;

	assert_non_null(g);
	s_connect(h, HX_SENDER, &a);
	for (int i = 0; i < 20; i++) {
		const char *zaak = i % 2 == 0 ? "zaak-even" : "zaak-oneven";
		struct schakel_message m;

		snprintf(text, sizeof text, "%s %d", zaak, i);
		m = hx_msg(HX_TYPE_ONE, zaak, text);
		s_send_ok(a, &m, NULL);
	}
	schakel_close(&a);

	s_connect(h, HX_TEAM_A, &b);
	g->refuse_once = 7;
	assert_int_equal(
	    schakel_receive(b, 20, 30000, s_on_message, g, &handed),
	    SCHAKEL_OK);
	assert_int_equal(handed, 20);
	assert_int_equal(g->n, 20);
	assert_true(g->refused);
	for (size_t i = 0; i < g->n; i++) {
		char zaak[32];
		int k, which;

		assert_int_equal(
		    sscanf(g->m[i].payload, "%31s %d", zaak, &k), 2);
		assert_string_equal(zaak, g->m[i].case_ref);
		which = strcmp(zaak, "zaak-even") == 0 ? 0 : 1;
		assert_int_equal(k % 2, which);
		/* In order per case, and never the same one twice. */
		assert_true(k > last[which]);
		last[which] = k;
		for (size_t j = 0; j < i; j++)
			assert_memory_not_equal(
			    g->m[j].id, g->m[i].id, SCHAKEL_ID_LEN);
	}
	assert_int_equal(last[0], 18);
	assert_int_equal(last[1], 19);
	/* Nothing is left. */
	memset(g, 0, sizeof *g);
	assert_int_equal(
	    schakel_receive(b, 1, 500, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);
	schakel_close(&b);
	free(g);
}

/* Submits `env` on the raw connection `raw`: 0 when it was accepted,
 * else the refusal's code. */
static int
s_submit_on(void *raw, const struct codec_buf *env)
{
	struct frame sub = {0}, rep = {0};
	int code;

	sub.corr_id = 7;
	sub.kind = FRAME_SUBMIT;
	sub.u.submit.data = env->data;
	sub.u.submit.len = env->len;
	assert_int_equal(hx_raw_request(raw, &sub, &rep, 5000), 0);
	assert_true(rep.kind == FRAME_ACCEPTED || rep.kind == FRAME_REFUSAL);
	code = rep.kind == FRAME_REFUSAL ? (int)rep.u.refusal.code : 0;
	frame_clear(&rep);
	return code;
}

/* Submits `env` on a new raw connection of the sender, as s_submit_on. */
static int
s_submit_raw(struct hx *h, const struct codec_buf *env)
{
	void *raw = hx_raw_connect(h, HX_SENDER);
	int code;

	assert_non_null(raw);
	code = s_submit_on(raw, env);
	hx_raw_close(&raw);
	return code;
}

/* (d) a ciphertext flipped after signing is refused by the broker with
 * HASH_MISMATCH, and nothing reaches the recipient. */
static void
t_tampered_ciphertext(void **state)
{
	struct hx *h = *state;
	struct schakel_client *b = NULL;
	struct codec_buf env = {0};
	struct s_got *g = calloc(1, sizeof *g);
	size_t handed;

	assert_non_null(g);
	assert_int_equal(hx_envelope(h, NULL, "zaak-0004", "geheim", &env), 0);
	/* The ciphertext is the envelope's last field: its last byte is
	 * part of the AEAD tag. */
	env.data[env.len - 1] ^= 0x01;
	assert_int_equal(s_submit_raw(h, &env), SCHAKEL_E_HASH_MISMATCH);

	s_connect(h, HX_TEAM_A, &b);
	assert_int_equal(
	    schakel_receive(b, 1, 500, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);
	schakel_close(&b);
	codec_buf_clear(&env);
	free(g);
}

/* (e) the broker is killed and started again between two sends: the
 * client reconnects by itself, and the recipient gets both messages
 * (the first was durable when its receipt came). */
static void
t_broker_restart(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL;
	struct schakel_message m1 = hx_msg(HX_TYPE_ONE, "zaak-0005", "voor");
	struct schakel_message m2 = hx_msg(HX_TYPE_ONE, "zaak-0005", "na");
	struct s_got *g = calloc(1, sizeof *g);
	size_t handed;

	assert_non_null(g);
	s_connect(h, HX_SENDER, &a);
	s_send_ok(a, &m1, NULL);
	hx_stop(h, SIGKILL);
	assert_int_equal(hx_start(h), 0);
	s_send_ok(a, &m2, NULL);
	schakel_close(&a);

	s_connect(h, HX_TEAM_A, &b);
	assert_int_equal(
	    schakel_receive(b, 2, 10000, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 2);
	assert_string_equal(g->m[0].payload, "voor");
	assert_string_equal(g->m[1].payload, "na");
	schakel_close(&b);
	free(g);
}

/* (f) a party whose transport key the broker does not know is refused
 * at the CurveZMQ handshake, and the library says so at once. */
static void
t_unknown_transport_key(void **state)
{
	struct hx *h = *state;
	struct schakel_client *c = NULL;
	struct keys_public pub;
	struct keys_error ke;
	char keys[300];

	snprintf(keys, sizeof keys, "%s/keys", h->dir);
	assert_int_equal(
	    keys_generate(keys, "stranger", KEYS_PARTY, &pub, &ke), 0);
	assert_int_equal(
	    hx_connect(h, "stranger", 5000, &c), SCHAKEL_E_UNKNOWN_PARTY);
	assert_null(c);
}

/* What a notice handler saw. */
struct s_notices {
	size_t n;
	struct {
		enum schakel_notice_kind kind;
		uint8_t id[SCHAKEL_ID_LEN];
		char recipient[SCHAKEL_NAME_MAX + 1];
		int code;
	} v[8];
};

static void
s_on_notice(void *arg, const struct schakel_notice *n)
{
	struct s_notices *ns = arg;

	if (ns->n >= 8)
		return;
	ns->v[ns->n].kind = n->kind;
	memcpy(ns->v[ns->n].id, n->message_id, SCHAKEL_ID_LEN);
	snprintf(ns->v[ns->n].recipient, sizeof ns->v[0].recipient, "%s",
	    n->recipient);
	ns->v[ns->n].code = n->code;
	ns->n++;
}

/* Receives on the sender's client until `want` notices came (at most
 * `ms` milliseconds). */
static void
s_wait_notices(
    struct schakel_client *c, struct s_notices *ns, size_t want, long ms)
{
	struct s_got *g = calloc(1, sizeof *g);
	uint64_t end = hx_mono_ms() + (uint64_t)ms;
	size_t handed = 0;

	assert_non_null(g);
	while (ns->n < want && hx_mono_ms() < end)
		assert_int_equal(
		    schakel_receive(c, 1, 200, s_on_message, g, &handed),
		    SCHAKEL_OK);
	assert_int_equal(g->n, 0); /* notices only, no messages */
	free(g);
}

/* Changes byte `off` of the one copy of `env` in the broker's store
 * (stopped) by xor with `flip`: what someone with the broker's disk, or
 * a bad sector, could do. */
static void
s_tamper_store(
    struct hx *h, const struct codec_buf *env, size_t off, uint8_t flip)
{
	char path[512];
	struct stat st;
	uint8_t *buf, *at, *more;
	FILE *f;

	snprintf(path, sizeof path, "%s/data/data.mdb", h->dir);
	assert_int_equal(stat(path, &st), 0);
	buf = malloc((size_t)st.st_size);
	assert_non_null(buf);
	f = fopen(path, "r+b");
	assert_non_null(f);
	assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), st.st_size);
	at = memmem(buf, (size_t)st.st_size, env->data, env->len);
	assert_non_null(at);
	more = memmem(at + 1, (size_t)st.st_size - (size_t)(at + 1 - buf),
	    env->data, env->len);
	assert_null(more);
	at[off] ^= flip;
	assert_int_equal(fseek(f, (long)(at - buf) + (long)off, SEEK_SET), 0);
	assert_int_equal(fputc(at[off], f), at[off]);
	assert_int_equal(fclose(f), 0);
	free(buf);
}

/* (d') A ciphertext changed in the broker's store after it was accepted
 * is refused by the recipient's library: never handed over, Nacked with
 * HASH_MISMATCH, so the broker dead-letters it and tells the sender. */
static void
s_tampered(struct hx *h, bool undecodable, int code)
{
	struct schakel_client *a = NULL, *b = NULL;
	struct codec_buf env = {0};
	struct s_notices ns = {0};
	struct s_got *g = calloc(1, sizeof *g);
	size_t handed = 99;

	assert_non_null(g);
	assert_int_equal(
	    hx_envelope(h, NULL, "zaak-0014", "onderweg veranderd", &env), 0);
	assert_int_equal(s_submit_raw(h, &env), 0);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	if (undecodable) /* field 1 as a start-group tag: MALFORMED */
		s_tamper_store(h, &env, 0, 0x01);
	else /* the ciphertext's last byte: HASH_MISMATCH */
		s_tamper_store(h, &env, env.len - 1, 0x01);
	assert_int_equal(hx_start(h), 0);

	s_connect(h, HX_TEAM_A, &b);
	assert_int_equal(
	    schakel_receive(b, 1, 1500, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);
	assert_int_equal(g->n, 0);
	assert_non_null(strstr(schakel_client_error(b), schakel_errname(code)));
	schakel_close(&b);

	s_connect(h, HX_SENDER, &a);
	schakel_set_notice_handler(a, s_on_notice, &ns);
	s_wait_notices(a, &ns, 1, 5000);
	assert_int_equal(ns.n, 1);
	assert_int_equal(ns.v[0].kind, SCHAKEL_NOTICE_DEAD_LETTERED);
	assert_int_equal(ns.v[0].code, code);
	assert_string_equal(ns.v[0].recipient, HX_TEAM_A);
	schakel_close(&a);
	codec_buf_clear(&env);
	free(g);
}

static void
t_tampered_at_rest(void **state)
{
	s_tampered(*state, false, SCHAKEL_E_HASH_MISMATCH);
}

/* The same for an envelope that no longer decodes: the library cannot
 * read its id, and Nacks the delivery by its seq, which the broker
 * takes for a delivery in flight at that session; dead-lettered at once
 * (it was ignored, and the message came back until its tenth delivery,
 * some ten minutes, its case waiting behind it). */
static void
t_undecodable_at_rest(void **state)
{
	s_tampered(*state, true, SCHAKEL_E_MALFORMED);
}

/* What a handler of t_kept_acks sees: the first call works 300 ms, the
 * second counts the DELIVERED notices the sender has by then. */
struct s_kept {
	size_t n;
	struct schakel_client *sender;
	struct s_notices ns;
};

static int
s_kept_message(void *arg, const struct schakel_delivery *d)
{
	struct s_kept *k = arg;

	(void)d;
	if (++k->n == 1)
		hx_sleep_ms(300);
	else if (k->n == 2)
		s_wait_notices(k->sender, &k->ns, 1, 1500);
	return 0;
}

/* Deliveries that came while the recipient waited for an answer to a
 * request are set aside and handed over by its next receive, one at a
 * time: the Ack of one whose handler took 100 ms or more goes before
 * the next handler call (schakel.h), as for deliveries read from the
 * connection; the sender's DELIVERED notice for the first shows it
 * during the second call.  (They waited for the end of the receive.) */
static void
t_kept_acks(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *t = NULL;
	struct schakel_message m;
	struct schakel_resolved res;
	struct s_got *g = calloc(1, sizeof *g);
	struct s_kept k = {0};
	size_t handed;

	assert_non_null(g);
	s_connect(h, HX_SENDER, &a);
	s_connect(h, HX_TEAM_A, &t);
	/* team-a grants credit and goes to do something else. */
	assert_int_equal(
	    schakel_receive(t, 0, 100, s_on_message, g, &handed), SCHAKEL_OK);
	for (int i = 0; i < 3; i++) {
		char ref[16], text[16];

		snprintf(ref, sizeof ref, "zaak-091%d", i);
		snprintf(text, sizeof text, "apart %d", i);
		m = hx_msg(HX_TYPE_ONE, ref, text);
		m.notify_delivered = true;
		s_send_ok(a, &m, NULL);
	}
	hx_sleep_ms(500);
	/* A request (its answer does not matter): the deliveries that
	 * came meanwhile are set aside. */
	m = hx_msg(HX_TYPE_ONE, "zaak-0919", "x");
	(void)schakel_resolve(t, &m, &res);
	schakel_set_notice_handler(a, s_on_notice, &k.ns);
	k.sender = a;
	assert_int_equal(
	    schakel_receive(t, 3, 5000, s_kept_message, &k, &handed),
	    SCHAKEL_OK);
	assert_int_equal(handed, 3);
	assert_int_equal(k.ns.n, 1);
	assert_int_equal(k.ns.v[0].kind, SCHAKEL_NOTICE_DELIVERED);
	schakel_close(&t);
	schakel_close(&a);
	free(g);
}

/* (g) Notices to the sender: a message for a recipient that never
 * connects expires in its queue and the sender hears so (NON_DELIVERY,
 * EXPIRED) without the recipient coming back; a message sent with
 * notify_delivered brings a DELIVERED notice once it is acknowledged. */
static void
t_notices(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL;
	struct schakel_message late =
	    hx_msg(HX_TYPE_ONE, "zaak-0005", "te laat");
	struct schakel_message ok = hx_msg(HX_TYPE_ONE, "zaak-0006", "op tijd");
	struct schakel_receipt r_late, r_ok;
	struct s_notices ns = {0};
	struct s_got *g = calloc(1, sizeof *g);
	size_t handed = 0;

	assert_non_null(g);
	s_connect(h, HX_SENDER, &a);
	schakel_set_notice_handler(a, s_on_notice, &ns);
	late.ttl_ms = 300;
	s_send_ok(a, &late, &r_late);
	/* The broker looks for expired messages every second. */
	s_wait_notices(a, &ns, 1, 5000);
	assert_int_equal(ns.n, 1);
	assert_int_equal(ns.v[0].kind, SCHAKEL_NOTICE_NON_DELIVERY);
	assert_int_equal(ns.v[0].code, SCHAKEL_E_EXPIRED);
	assert_string_equal(ns.v[0].recipient, HX_TEAM_A);
	assert_memory_equal(ns.v[0].id, r_late.message_id, SCHAKEL_ID_LEN);

	ok.notify_delivered = true;
	s_send_ok(a, &ok, &r_ok);
	s_connect(h, HX_TEAM_A, &b);
	assert_int_equal(
	    schakel_receive(b, 1, 10000, s_on_message, g, &handed), SCHAKEL_OK);
	/* Only the message on time: the expired one is a dead letter. */
	assert_int_equal(g->n, 1);
	assert_string_equal(g->m[0].payload, "op tijd");
	s_wait_notices(a, &ns, 2, 5000);
	assert_int_equal(ns.n, 2);
	assert_int_equal(ns.v[1].kind, SCHAKEL_NOTICE_DELIVERED);
	assert_string_equal(ns.v[1].recipient, HX_TEAM_A);
	assert_memory_equal(ns.v[1].id, r_ok.message_id, SCHAKEL_ID_LEN);
	/* And nothing else comes. */
	assert_int_equal(
	    schakel_receive(b, 1, 500, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);
	schakel_receipt_clear(&r_late);
	schakel_receipt_clear(&r_ok);
	schakel_close(&a);
	schakel_close(&b);
	free(g);
}

static int
s_setup_limits(void **state, const char *limits)
{
	const char *yaml = hx_yaml_limits(limits);
	struct hx *h = yaml != NULL ? hx_new(s_schakeld, yaml) : NULL;

	*state = h;
	return h != NULL ? 0 : -1;
}

/* Without the submit rate limit (a thousand a second): for t_long_case,
 * which sends 4,305 at once. */
static int
s_setup_no_rate(void **state)
{
	return s_setup_limits(
	    state, "    submit_rate: 1000000\n    submit_burst: 1000000\n");
}

/* The broker's syncs take 50 ms and fail while s_fail_file exists
 * (slowsync.c): submissions come in while a failing commit waits.  No
 * submit rate limit.  The file's folder is the test's own. */
static char s_fail_dir[128], s_fail_file[160];

/* Makes the (empty) file `path`: slowsync.c's switch. */
static void
s_touch(const char *path)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fclose(f), 0);
}

/* A broker with `yaml` and slowsync.c's `setting` (SLOWSYNC_MS=, how long
 * its syncs take, or SLOWSYNC_ERRNO=, how they fail), and `var`
 * (SLOWSYNC_FAIL or SLOWSYNC_WHILE) naming the file `file` (len bytes):
 * `name` in the folder s_fail_dir, made here and removed by
 * s_teardown_failing_sync. */
static int
s_setup_sync_file(void **state, const char *yaml, const char *setting,
    const char *var, const char *name, char *file, size_t len)
{
	static char what[256];

	*state = NULL;
	if (yaml == NULL || tu_mkdtemp(s_fail_dir, sizeof s_fail_dir) != 0)
		return -1;
	snprintf(file, len, "%s/%s", s_fail_dir, name);
	snprintf(what, sizeof what, "%s=%s", var, file);
	*state = hx_new_env(s_schakeld, yaml, s_slowsync_env(setting, what));
	if (*state == NULL) {
		/* No teardown follows a failed setup. */
		(void)tu_rmrf(s_fail_dir);
		return -1;
	}
	return 0;
}

static int
s_setup_failing_sync(void **state)
{
	return s_setup_sync_file(state,
	    hx_yaml_limits(
		"    submit_rate: 1000000\n    submit_burst: 1000000\n"),
	    "SLOWSYNC_MS=50", "SLOWSYNC_FAIL", "fail", s_fail_file,
	    sizeof s_fail_file);
}

/* Syncs fail at once with ENOSPC, as on a full disk, while s_fail_file
 * exists. */
static int
s_setup_full_sync(void **state)
{
	return s_setup_sync_file(state, hx_yaml(), "SLOWSYNC_ERRNO=ENOSPC",
	    "SLOWSYNC_FAIL", "fail", s_fail_file, sizeof s_fail_file);
}

static int
s_teardown_failing_sync(void **state)
{
	int rc = s_teardown(state);

	return tu_rmrf(s_fail_dir) == 0 ? rc : -1;
}

/* A 2 s ack timeout and at most four deliveries. */
static int
s_setup_ack_timeout(void **state)
{
	return s_setup_limits(
	    state, "    ack_timeout: 2s\n    max_deliveries: 4\n");
}

/* (h) A message that expires while in flight at a recipient that then
 * goes quiet (no Ack, no credit, its connection closed) still expires:
 * the broker looks at it again after the ack timeout, and the sender
 * hears NON_DELIVERY. */
static void
t_expire_in_flight(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m = hx_msg(HX_TYPE_ONE, "zaak-0007", "kwijt");
	struct schakel_receipt r;
	struct s_notices ns = {0};
	struct frame credit = {.kind = FRAME_CREDIT}, got;
	void *raw;

	s_connect(h, HX_SENDER, &a);
	schakel_set_notice_handler(a, s_on_notice, &ns);
	raw = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(raw);
	m.ttl_ms = 500;
	s_send_ok(a, &m, &r);
	/* One credit: it is handed out, never acknowledged. */
	credit.u.credit = 1;
	assert_int_equal(hx_raw_request(raw, &credit, &got, 5000), 0);
	assert_int_equal(got.kind, FRAME_DELIVER);
	assert_int_equal(got.u.deliver.store_seq, r.store_seq);
	frame_clear(&got);
	hx_raw_close(&raw);
	s_wait_notices(a, &ns, 1, 6000);
	assert_int_equal(ns.n, 1);
	/* Acknowledged once and for all: not again after the ack timeout. */
	s_wait_notices(a, &ns, 2, 3000);
	schakel_close(&a);
	assert_int_equal(ns.n, 1);
	assert_int_equal(ns.v[0].kind, SCHAKEL_NOTICE_NON_DELIVERY);
	assert_int_equal(ns.v[0].code, SCHAKEL_E_EXPIRED);
	assert_memory_equal(ns.v[0].id, r.message_id, SCHAKEL_ID_LEN);
	schakel_receipt_clear(&r);
}

/* Grants one credit on a raw connection and returns the next Deliver's
 * count for `seq` (0 when none came within `ms`). */
static uint32_t
s_raw_deliver(void *raw, uint64_t seq, int ms)
{
	struct frame credit = {.kind = FRAME_CREDIT}, got;
	uint32_t count = 0;

	credit.u.credit = 1;
	if (hx_raw_request(raw, &credit, &got, ms) != 0)
		return 0;
	if (got.kind == FRAME_DELIVER && got.u.deliver.store_seq == seq)
		count = got.u.deliver.delivery_count;
	frame_clear(&got);
	return count;
}

/* Nacks `r`'s message on a raw connection with `code`. */
static int
s_raw_nack(void *raw, const struct schakel_receipt *r, int code)
{
	struct frame nack = {.kind = FRAME_NACK};

	nack.u.ack.store_seq = r->store_seq;
	memcpy(nack.u.ack.message_id, r->message_id, SCHAKEL_ID_LEN);
	nack.u.ack.code = (uint32_t)code;
	return hx_raw_send(raw, &nack);
}

/* (j) The delivery count goes up by one for each failed delivery, of each
 * kind: a retryable Nack, a lost connection, an ack timeout; after the
 * fourth (max_deliveries: 4) the message is dead-lettered and the sender
 * told.  (The broker writes a first delivery's count only when it fails:
 * without that, the count would stay 1 and the message would come back
 * for ever.) */
static void
t_delivery_counts(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m = hx_msg(HX_TYPE_ONE, "zaak-0008", "telt");
	struct schakel_receipt r;
	struct s_notices ns = {0};
	uint32_t got[6] = {0};
	void *raw;

	s_connect(h, HX_SENDER, &a);
	schakel_set_notice_handler(a, s_on_notice, &ns);
	s_send_ok(a, &m, &r);
	/* Counts are collected first and checked once the raw connections
	 * are closed (an open socket would keep the harness from ending). */
	raw = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(raw);
	got[0] = s_raw_deliver(raw, r.store_seq, 5000);
	/* A retryable Nack. */
	got[5] = s_raw_nack(raw, &r, SCHAKEL_E_UNAVAILABLE) == 0;
	got[1] = s_raw_deliver(raw, r.store_seq, 5000);
	/* The connection is replaced while it is in flight. */
	hx_raw_close(&raw);
	raw = hx_raw_connect(h, HX_TEAM_A);
	if (raw != NULL) {
		got[2] = s_raw_deliver(raw, r.store_seq, 5000);
		/* No Ack within the 2 s ack timeout. */
		got[3] = s_raw_deliver(raw, r.store_seq, 6000);
		/* The fourth times out too: dead-lettered, not handed out
		 * again. */
		got[4] = s_raw_deliver(raw, r.store_seq, 4000);
		hx_raw_close(&raw);
	}
	s_wait_notices(a, &ns, 1, 6000);
	schakel_close(&a);
	assert_int_equal(got[5], 1);
	assert_int_equal(got[0], 1);
	assert_int_equal(got[1], 2);
	assert_int_equal(got[2], 3);
	assert_int_equal(got[3], 4);
	assert_int_equal(got[4], 0);
	assert_int_equal(ns.n, 1);
	assert_int_equal(ns.v[0].kind, SCHAKEL_NOTICE_DEAD_LETTERED);
	assert_int_equal(ns.v[0].code, SCHAKEL_E_DELIVERY_FAILED);
	assert_memory_equal(ns.v[0].id, r.message_id, SCHAKEL_ID_LEN);
	schakel_receipt_clear(&r);
}

/* What t_nack_backoff's handler saw: the time and count of each
 * delivery, refused until `until` (monotonic ms). */
struct s_tries {
	uint64_t until;
	size_t n;
	uint64_t at[8];
	uint32_t count[8];
};

static int
s_on_try(void *arg, const struct schakel_delivery *d)
{
	struct s_tries *t = arg;
	uint64_t now = hx_mono_ms();

	if (t->n < 8) {
		t->at[t->n] = now;
		t->count[t->n] = d->delivery_count;
		t->n++;
	}
	return now < t->until ? -1 : 0; /* -1: "not now", a retryable Nack */
}

/* (j2) A recipient whose handler says "not now" (its own database down
 * for a moment: libschakel Nacks with UNAVAILABLE) gets the message
 * again after a backoff, 1 s and then 2 s here (at most the 2 s ack
 * timeout), not at once: with max_deliveries 4 a handler that fails for
 * 2.5 s still gets it, on the third delivery, and the sender hears of no
 * dead letter. */
static void
t_nack_backoff(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL;
	struct schakel_message m = hx_msg(HX_TYPE_ONE, "zaak-0013", "later");
	struct schakel_receipt r;
	struct s_notices ns = {0};
	struct s_tries t = {0};
	size_t handed = 0;
	uint64_t end;

	s_connect(h, HX_SENDER, &a);
	schakel_set_notice_handler(a, s_on_notice, &ns);
	s_send_ok(a, &m, &r);
	s_connect(h, HX_TEAM_A, &b);
	t.until = hx_mono_ms() + 2500;
	end = hx_mono_ms() + 10000;
	while (handed == 0 && hx_mono_ms() < end)
		assert_int_equal(
		    schakel_receive(b, 1, 1000, s_on_try, &t, &handed),
		    SCHAKEL_OK);
	assert_int_equal(handed, 1);
	assert_int_equal(t.n, 3);
	for (size_t i = 0; i < t.n; i++)
		assert_int_equal(t.count[i], i + 1);
	/* Some slack below 1 s and 2 s for the broker's 100 ms timers. */
	assert_true(t.at[1] - t.at[0] >= 900);
	assert_true(t.at[2] - t.at[1] >= 1900);
	s_wait_notices(a, &ns, 1, 1000);
	assert_int_equal(ns.n, 0);
	schakel_receipt_clear(&r);
	schakel_close(&a);
	schakel_close(&b);
}

/* (j3) A Nack with a permanent code dead-letters the message with the
 * recipient's code, as a dead letter: a recipient cannot make it an
 * expiry (NOTICE_NON_DELIVERY, audited as expired), which only the broker
 * decides. */
static void
t_nack_permanent(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m = hx_msg(HX_TYPE_ONE, "zaak-0014", "nooit");
	struct schakel_receipt r;
	struct s_notices ns = {0};
	uint32_t first = 0, again = 1;
	int sent = -1;
	void *raw;

	s_connect(h, HX_SENDER, &a);
	schakel_set_notice_handler(a, s_on_notice, &ns);
	s_send_ok(a, &m, &r);
	raw = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(raw);
	first = s_raw_deliver(raw, r.store_seq, 5000);
	sent = s_raw_nack(raw, &r, SCHAKEL_E_EXPIRED);
	/* Not delivered again (the ack timeout is 2 s). */
	again = s_raw_deliver(raw, r.store_seq, 3000);
	hx_raw_close(&raw);
	s_wait_notices(a, &ns, 1, 5000);
	schakel_close(&a);
	assert_int_equal(first, 1);
	assert_int_equal(sent, 0);
	assert_int_equal(again, 0);
	assert_int_equal(ns.n, 1);
	assert_int_equal(ns.v[0].kind, SCHAKEL_NOTICE_DEAD_LETTERED);
	assert_int_equal(ns.v[0].code, SCHAKEL_E_EXPIRED);
	assert_memory_equal(ns.v[0].id, r.message_id, SCHAKEL_ID_LEN);
	schakel_receipt_clear(&r);
}

/* Grants Credit{0} on a raw connection of `party`, which then closes
 * (its session ends when the broker next sends it something). */
static void
s_raw_credit_zero(struct hx *h, const char *party)
{
	struct frame credit = {.kind = FRAME_CREDIT};
	void *raw = hx_raw_connect(h, party);

	assert_non_null(raw);
	credit.u.credit = 0;
	assert_int_equal(hx_raw_send(raw, &credit), 0);
	hx_sleep_ms(200); /* sent before the socket goes */
	hx_raw_close(&raw);
}

/* (j4) A party with two connections at once (a sending service and a
 * receiving one, each with the party's keys): a second Hello does not
 * end the first session, so the receiving one keeps receiving, each
 * message once and on its first delivery (a third that grants no
 * credit changes nothing).  When the receiving one closes, the second,
 * which granted credit meanwhile, receives from there on: one
 * connection of a party receives at a time. */
static void
t_two_connections(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL, *c = NULL;
	struct s_got *g = calloc(1, sizeof *g), *g2 = calloc(1, sizeof *g2);
	char log[320], text[4][16];
	size_t handed = 0;

	assert_non_null(g);
	assert_non_null(g2);
	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	s_connect(h, HX_SENDER, &a);
	s_connect(h, HX_TEAM_A, &b);
	for (int i = 0; i < 4; i++) {
		struct schakel_message m;
		snprintf(text[i], sizeof text[i], "twee %d", i);
		m = hx_msg(HX_TYPE_ONE, "zaak-0018", text[i]);
		s_send_ok(a, &m, NULL);
		if (i == 0) {
			/* b receives; then team-a's second connection. */
			assert_int_equal(schakel_receive(b, 1, 5000,
					     s_on_message, g, &handed),
			    SCHAKEL_OK);
			assert_int_equal(handed, 1);
			s_connect(h, HX_TEAM_A, &c);
			/* Credit{0} on a third takes nothing over. */
			s_raw_credit_zero(h, HX_TEAM_A);
		}
	}
	while (g->n < 4) {
		assert_int_equal(schakel_receive(b, 4 - g->n, 5000,
				     s_on_message, g, &handed),
		    SCHAKEL_OK);
		assert_true(handed > 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_string_equal(g->m[i].payload, text[i]);
		assert_int_equal(g->m[i].count, 1);
	}
	assert_true(tu_file_has(log, "connected party=" HX_TEAM_A));
	assert_false(tu_file_has(log, "disconnected party=" HX_TEAM_A));
	/* The second connection takes over receiving once the first is
	 * closed: found at once, not after its heartbeats. */
	{
		struct schakel_message m =
		    hx_msg(HX_TYPE_ONE, "zaak-0018", "naar c");
		uint64_t t0;

		/* b has credit left when it closes, so the next message is
		 * handed to it: after its connection is gone (200 ms). */
		assert_int_equal(
		    schakel_receive(b, 10, 100, s_on_message, g, &handed),
		    SCHAKEL_OK);
		assert_int_equal(handed, 0);
		schakel_close(&b);
		hx_sleep_ms(200);
		t0 = hx_mono_ms();
		s_send_ok(a, &m, NULL);
		assert_int_equal(
		    schakel_receive(c, 1, 5000, s_on_message, g2, &handed),
		    SCHAKEL_OK);
		assert_int_equal(handed, 1);
		assert_string_equal(g2->m[0].payload, "naar c");
		/* Handed to b, if at all, when its connection was already
		 * closed: that is no delivery. */
		assert_int_equal(g2->m[0].count, 1);
		/* Found at the next send (the Ping of a heartbeat, 2 s, if
		 * not the delivery), not after three heartbeats. */
		assert_true(hx_mono_ms() - t0 < 3000);
	}
	assert_true(tu_file_has(
	    log, "disconnected party=" HX_TEAM_A " reason=connection closed"));
	schakel_close(&a);
	schakel_close(&c);
	free(g);
	free(g2);
}

/* (j5) Two processes that receive for one party (a standby for high
 * availability): the first to grant credit receives; the other's credit
 * waits while the first is there, and it takes over when the first is
 * dropped (here: alive but silent for three heartbeats, 6 s). */
static void
t_standby(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL, *c = NULL;
	struct s_got *gb = calloc(1, sizeof *gb), *gc = calloc(1, sizeof *gc);
	struct schakel_message m1 = hx_msg(HX_TYPE_ONE, "zaak-0019", "een"),
			       m2 = hx_msg(HX_TYPE_ONE, "zaak-0020", "twee");
	char log[320];
	size_t handed = 0, early = 0;
	uint64_t t_b;

	assert_non_null(gb);
	assert_non_null(gc);
	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	s_connect(h, HX_SENDER, &a);
	s_connect(h, HX_TEAM_A, &b);
	s_connect(h, HX_TEAM_A, &c);
	/* b grants credit first, then c. */
	assert_int_equal(
	    schakel_receive(b, 1, 100, s_on_message, gb, &handed), SCHAKEL_OK);
	assert_int_equal(
	    schakel_receive(c, 1, 100, s_on_message, gc, &early), SCHAKEL_OK);
	s_send_ok(a, &m1, NULL);
	assert_int_equal(
	    schakel_receive(b, 1, 5000, s_on_message, gb, &handed), SCHAKEL_OK);
	t_b = hx_mono_ms();
	/* b is silent from here on (no call into the library); c waits. */
	s_send_ok(a, &m2, NULL);
	assert_int_equal(
	    schakel_receive(c, 1, 10000, s_on_message, gc, &handed),
	    SCHAKEL_OK);
	assert_int_equal(early, 0);
	assert_int_equal(gb->n, 1);
	assert_string_equal(gb->m[0].payload, "een");
	assert_int_equal(gc->n, 1);
	assert_string_equal(gc->m[0].payload, "twee");
	assert_int_equal(gc->m[0].count, 1);
	assert_true(hx_mono_ms() - t_b >= 5000);
	assert_true(tu_file_has(log,
	    "disconnected party=" HX_TEAM_A
	    " reason=no traffic for three heartbeats"));
	assert_int_equal(
	    tu_lines_with(log,
		"party=" HX_TEAM_A " receives on its standby connection now"),
	    1);
	schakel_close(&a);
	schakel_close(&b);
	schakel_close(&c);
	free(gb);
	free(gc);
}

/* Acknowledges `r`'s message on a raw connection. */
static int
s_raw_ack(void *raw, const struct schakel_receipt *r)
{
	struct frame ack = {.kind = FRAME_ACK};

	ack.u.ack.store_seq = r->store_seq;
	memcpy(ack.u.ack.message_id, r->message_id, SCHAKEL_ID_LEN);
	return hx_raw_send(raw, &ack);
}

/* (k) A first delivery that fails is counted, whichever way it fails:
 * the ack timeout, the connection replaced, the broker stopped (SIGTERM)
 * and started again.  Each time the next delivery has count 2.  (The
 * broker writes a first delivery's count only when it fails.) */
static void
t_first_delivery_fails(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m[3] = {
	    hx_msg(HX_TYPE_ONE, "zaak-0010", "timeout"),
	    hx_msg(HX_TYPE_ONE, "zaak-0011", "replaced"),
	    hx_msg(HX_TYPE_ONE, "zaak-0012", "stopped")};
	struct schakel_receipt r[3];
	uint32_t got[6] = {0};
	int acked = 0, restarted;
	void *raw;

	/* One message at a time: credit would hand out the next one. */
	s_connect(h, HX_SENDER, &a);
	s_send_ok(a, &m[0], &r[0]);
	/* Counts are checked once the raw connections are closed. */
	raw = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(raw);
	got[0] = s_raw_deliver(raw, r[0].store_seq, 5000);
	got[1] = s_raw_deliver(raw, r[0].store_seq, 6000); /* timed out */
	acked += s_raw_ack(raw, &r[0]) == 0;
	s_send_ok(a, &m[1], &r[1]);
	got[2] = s_raw_deliver(raw, r[1].store_seq, 5000);
	hx_raw_close(&raw);
	raw = hx_raw_connect(h, HX_TEAM_A); /* replaces the session */
	if (raw != NULL) {
		got[3] = s_raw_deliver(raw, r[1].store_seq, 5000);
		acked += s_raw_ack(raw, &r[1]) == 0;
		s_send_ok(a, &m[2], &r[2]);
		got[4] = s_raw_deliver(raw, r[2].store_seq, 5000);
		hx_raw_close(&raw);
	}
	schakel_close(&a);
	hx_stop(h, SIGTERM);
	restarted = hx_start(h);
	raw = restarted == 0 ? hx_raw_connect(h, HX_TEAM_A) : NULL;
	if (raw != NULL) {
		got[5] = s_raw_deliver(raw, r[2].store_seq, 5000);
		acked += s_raw_ack(raw, &r[2]) == 0;
		hx_raw_close(&raw);
	}
	assert_int_equal(restarted, 0);
	assert_int_equal(acked, 3);
	assert_int_equal(got[0], 1);
	assert_int_equal(got[1], 2);
	assert_int_equal(got[2], 1);
	assert_int_equal(got[3], 2);
	assert_int_equal(got[4], 1);
	assert_int_equal(got[5], 2);
	for (int i = 0; i < 3; i++)
		schakel_receipt_clear(&r[i]);
}

/* (l) A recipient that goes silent with a message in flight (its
 * connection open, but no Pong, no Ack) is dropped after three
 * heartbeats (2 s each here; the ack timeout is 60 s), and the message
 * comes again with count 2 on its next connection, which is opened only
 * after the drop so that it is not what ends the first. */
static void
t_heartbeats_missed(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m = hx_msg(HX_TYPE_ONE, "zaak-0015", "stil");
	struct schakel_receipt r;
	char log[320];
	uint32_t first, again = 0;
	bool dropped = false;
	int acked = -1;
	void *raw, *raw2;

	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	s_connect(h, HX_SENDER, &a);
	s_send_ok(a, &m, &r);
	schakel_close(&a);
	raw = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(raw);
	first = s_raw_deliver(raw, r.store_seq, 5000);
	/* Nothing read or sent on it from here on. */
	for (int i = 0; i < 120 && !dropped; i++) {
		hx_sleep_ms(100);
		dropped = tu_file_has(log, "no traffic for three heartbeats");
	}
	raw2 = hx_raw_connect(h, HX_TEAM_A);
	if (raw2 != NULL) {
		again = s_raw_deliver(raw2, r.store_seq, 5000);
		acked = s_raw_ack(raw2, &r);
		hx_raw_close(&raw2);
	}
	hx_raw_close(&raw);
	assert_int_equal(first, 1);
	assert_true(dropped);
	assert_int_equal(again, 2);
	assert_int_equal(acked, 0);
	schakel_receipt_clear(&r);
}

/* (m) An Ack is stored by the writer thread while the broker goes on.
 * Here its commit takes 300 ms (s_setup_slow_sync), and meanwhile the
 * recipient comes back: the pump reads its queue, which still holds the
 * acknowledged message, behind one that expired; dead-lettering that
 * one waits for the writer, whose commit then takes the acknowledged
 * entry out of the store, but not out of the page the pump holds.  It
 * must not be delivered again (the second reader of the writer thread
 * found that it was, before 7b2c7e9). */
static void
t_ack_in_slow_commit(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message y = hx_msg(HX_TYPE_ONE, "zaak-0016", "verloopt");
	struct schakel_message x =
	    hx_msg(HX_TYPE_ONE, "zaak-0017", "bevestigd");
	struct schakel_receipt ry, rx;
	uint32_t got_y = 0, got_x = 0, again = 99;
	int acked = -1;
	void *raw, *raw2;

	s_connect(h, HX_SENDER, &a);
	y.ttl_ms = 3000;
	s_send_ok(a, &y, &ry);
	s_send_ok(a, &x, &rx);
	schakel_close(&a);
	raw = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(raw);
	got_y = s_raw_deliver(raw, ry.store_seq, 5000);
	got_x = s_raw_deliver(raw, rx.store_seq, 5000);
	/* y expires while in flight; then x is acknowledged and the
	 * recipient comes back at once, within the Ack's slow commit. */
	hx_sleep_ms(3200);
	acked = s_raw_ack(raw, &rx);
	raw2 = hx_raw_connect(h, HX_TEAM_A); /* replaces the session */
	if (raw2 != NULL) {
		again = s_raw_deliver(raw2, rx.store_seq, 2000);
		hx_raw_close(&raw2);
	}
	hx_raw_close(&raw);
	assert_int_equal(got_y, 1);
	assert_int_equal(got_x, 1);
	assert_int_equal(acked, 0);
	assert_int_equal(again, 0);
	schakel_receipt_clear(&ry);
	schakel_receipt_clear(&rx);
}

/* t_commit_fails's batch: more than a group, so that the broker takes in
 * more while the writer's commit fails. */
#define S_FAILING 300

static int
s_on_count(void *arg, const struct schakel_delivery *d)
{
	unsigned *seen = arg;
	long k = hx_payload_num(d, "stap");

	if (k < 0 || k >= S_FAILING)
		return -1;
	seen[k]++;
	return 0;
}

/* (m) The disk fails every sync (EIO) while a batch is in flight: each
 * group's commit fails and the broker refuses its messages with
 * UNAVAILABLE (the writer going on with the next group meanwhile; the
 * library resubmits them, five times, then gives up with that code),
 * nothing of them is stored or delivered, and the broker goes on.  Once
 * the disk is back the batch goes through and every message arrives
 * once. */
static void
t_commit_fails(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL;
	static struct schakel_message m[S_FAILING];
	static char text[S_FAILING][32], zaak[S_FAILING][32];
	static int results[S_FAILING];
	static unsigned seen[S_FAILING];
	size_t handed = 0, refused = 0;
	char log[320];

	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	memset(seen, 0, sizeof seen);
	for (size_t i = 0; i < S_FAILING; i++) {
		snprintf(text[i], sizeof text[i], "stap %zu", i);
		snprintf(zaak[i], sizeof zaak[i], "zaak-f%zu", i % 7);
		m[i] = hx_msg(HX_TYPE_ONE, zaak[i], text[i]);
	}
	s_connect(h, HX_SENDER, &a);
	s_touch(s_fail_file);
	assert_int_not_equal(
	    schakel_send_batch(a, m, S_FAILING, NULL, results), SCHAKEL_OK);
	for (size_t i = 0; i < S_FAILING; i++)
		if (results[i] != SCHAKEL_OK) {
			assert_int_equal(results[i], SCHAKEL_E_UNAVAILABLE);
			refused++;
		}
	assert_int_equal(refused, S_FAILING);
	/* The broker said so itself (not only the library, giving up). */
	assert_true(tu_file_has(log, "store: commit failed"));
	assert_true(tu_file_has(log, "code=UNAVAILABLE"));

	/* The disk is back: the same batch (new envelopes) goes through. */
	assert_int_equal(unlink(s_fail_file), 0);
	assert_int_equal(
	    schakel_send_batch(a, m, S_FAILING, NULL, results), SCHAKEL_OK);
	s_connect(h, HX_TEAM_A, &b);
	assert_int_equal(
	    schakel_receive(b, S_FAILING, 20000, s_on_count, seen, &handed),
	    SCHAKEL_OK);
	assert_int_equal(handed, S_FAILING);
	for (size_t i = 0; i < S_FAILING; i++)
		assert_int_equal(seen[i], 1);
	/* Nothing of the refused ones was kept. */
	assert_int_equal(
	    schakel_receive(b, 1, 1000, s_on_count, seen, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);
	schakel_close(&a);
	schakel_close(&b);
}

/* Grants `n` credit on a raw connection and collects the Deliver seqs
 * that come within `ms` (at most 8) into seqs; returns how many. */
static size_t
s_raw_take(void *raw, uint32_t n, int ms, uint64_t seqs[8])
{
	struct frame credit = {.kind = FRAME_CREDIT}, got;
	size_t k = 0;
	uint64_t end = hx_mono_ms() + (uint64_t)ms, now;

	credit.u.credit = n;
	assert_int_equal(hx_raw_send(raw, &credit), 0);
	while (k < 8 && (now = hx_mono_ms()) < end) {
		if (hx_raw_recv(raw, &got, (int)(end - now)) != 0)
			continue;
		if (got.kind == FRAME_DELIVER)
			seqs[k++] = got.u.deliver.store_seq;
		frame_clear(&got);
	}
	return k;
}

/* (m2) A turn the broker stores in its own transaction (an Ack whose
 * message asked for a DELIVERED notice) meets a full disk (its sync
 * fails with ENOSPC): what it decided is undone, and the group after it
 * takes no new message (STORE_FULL, though the disk has room again), so
 * that what was undone is stored first and a full store cannot fail the
 * same way turn after turn.  The group after that takes messages again;
 * the recipient gets the first message again (its Ack was undone), and
 * the sender hears DELIVERED once, for the Ack that was stored. */
static void
t_full_after_direct(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m1 = hx_msg(HX_TYPE_ONE, "zaak-0041", "eerst");
	struct schakel_receipt r1;
	struct s_notices ns = {0};
	struct codec_buf e2 = {0}, e3 = {0};
	uint64_t seqs[8], end;
	char log[320];
	void *ra, *rs;
	bool failed = false;

	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	m1.notify_delivered = true;
	s_connect(h, HX_SENDER, &a);
	schakel_set_notice_handler(a, s_on_notice, &ns);
	s_send_ok(a, &m1, &r1);
	ra = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(ra);
	/* Connected and built now: a connection's Hello (hx_envelope's
	 * too) records its session in the open group, which would then be
	 * the group without messages. */
	rs = hx_raw_connect(h, HX_SENDER);
	assert_non_null(rs);
	assert_int_equal(hx_envelope(h, NULL, "zaak-0042", "tweede", &e2), 0);
	assert_int_equal(hx_envelope(h, NULL, "zaak-0043", "derde", &e3), 0);
	assert_int_equal(s_raw_take(ra, 1, 1000, seqs), 1);
	assert_int_equal(seqs[0], r1.store_seq);

	s_touch(s_fail_file);
	assert_int_equal(s_raw_ack(ra, &r1), 0);
	end = hx_mono_ms() + 5000;
	while (!(failed = tu_file_has(log, "store: commit failed")) &&
	    hx_mono_ms() < end)
		hx_sleep_ms(20);
	assert_true(failed);
	assert_int_equal(unlink(s_fail_file), 0);

	assert_int_equal(s_submit_on(rs, &e2), SCHAKEL_E_STORE_FULL);
	assert_int_equal(s_submit_on(rs, &e3), 0);

	/* The first message again (its Ack was undone), then the third. */
	assert_int_equal(s_raw_take(ra, 4, 1500, seqs), 2);
	assert_int_equal(seqs[0], r1.store_seq);
	assert_true(seqs[1] > r1.store_seq);
	assert_int_equal(s_raw_ack(ra, &r1), 0);
	s_wait_notices(a, &ns, 1, 5000);
	s_wait_notices(a, &ns, 2, 1000);
	assert_int_equal(ns.n, 1);
	assert_int_equal(ns.v[0].kind, SCHAKEL_NOTICE_DELIVERED);
	assert_memory_equal(ns.v[0].id, r1.message_id, SCHAKEL_ID_LEN);
	hx_raw_close(&ra);
	hx_raw_close(&rs);
	schakel_close(&a);
	schakel_receipt_clear(&r1);
	codec_buf_clear(&e2);
	codec_buf_clear(&e3);
}

/* (m3) The store directory is synced at every start (LMDB may just have
 * created its files there): when that fails (slowsync.c fails every
 * sync while s_fail_file exists), the broker does not start, and says
 * why; once the disk is back it starts. */
static void
t_store_dir_synced(void **state)
{
	struct hx *h = *state;
	char log[320];

	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	s_touch(s_fail_file);
	assert_int_not_equal(hx_start_logged(h, log), 0);
	assert_true(tu_file_has(log, "cannot sync the store directory"));
	assert_int_equal(unlink(s_fail_file), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
}

/* The long case of t_long_case: more than 4,096 messages, the number of
 * entries a session once held back at most (the short case's messages
 * then waited behind a hundred of the long one's). */
#define S_LONG 4300

/* What arrived in a long run: the case (0 long, 1 short) and number of
 * each message, in arrival order. */
struct s_run {
	size_t n;
	int which[S_LONG + 5];
	int k[S_LONG + 5];
};

static int
s_on_run(void *arg, const struct schakel_delivery *d)
{
	struct s_run *r = arg;
	char zaak[32], text[64];
	int k;

	if (r->n >= S_LONG + 5 || d->payload_len >= sizeof text)
		return -1;
	memcpy(text, d->payload, d->payload_len);
	text[d->payload_len] = '\0';
	if (sscanf(text, "%31s %d", zaak, &k) != 2)
		return -1;
	r->which[r->n] = strcmp(zaak, "zaak-lang") == 0 ? 0 : 1;
	r->k[r->n] = k;
	r->n++;
	return 0;
}

/* (i) One long case (4,300 messages queued behind one in flight), then a
 * short case: everything arrives once, in order per case, and the short
 * case's five come among the first fifty: they do not wait behind the
 * long case. */
static void
t_long_case(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL;
	static struct schakel_message m[100];
	static char text[100][32];
	static int results[100];
	struct s_run *r = calloc(1, sizeof *r);
	int last[2] = {-1, -1};
	size_t handed = 0, last_pos[2] = {0, 0};

	assert_non_null(r);
	s_connect(h, HX_SENDER, &a);
	for (int batch = 0; batch < S_LONG / 100; batch++) {
		for (int i = 0; i < 100; i++) {
			snprintf(text[i], sizeof text[i], "zaak-lang %d",
			    batch * 100 + i);
			m[i] = hx_msg(HX_TYPE_ONE, "zaak-lang", text[i]);
		}
		assert_int_equal(
		    schakel_send_batch(a, m, 100, NULL, results), SCHAKEL_OK);
		for (int i = 0; i < 100; i++)
			assert_int_equal(results[i], SCHAKEL_OK);
	}
	for (int i = 0; i < 5; i++) {
		snprintf(text[i], sizeof text[i], "zaak-kort %d", i);
		m[i] = hx_msg(HX_TYPE_ONE, "zaak-kort", text[i]);
	}
	assert_int_equal(
	    schakel_send_batch(a, m, 5, NULL, results), SCHAKEL_OK);
	for (int i = 0; i < 5; i++)
		assert_int_equal(results[i], SCHAKEL_OK);
	schakel_close(&a);

	s_connect(h, HX_TEAM_A, &b);
	while (r->n < S_LONG + 5) {
		size_t before = r->n;
		assert_int_equal(schakel_receive(b, S_LONG + 5 - r->n, 10000,
				     s_on_run, r, &handed),
		    SCHAKEL_OK);
		if (r->n == before)
			fail_msg("stalled after %zu messages", r->n);
	}
	for (size_t i = 0; i < r->n; i++) {
		int w = r->which[i];
		/* In order per case, none twice, none missing. */
		assert_int_equal(r->k[i], last[w] + 1);
		last[w] = r->k[i];
		last_pos[w] = i;
	}
	assert_int_equal(last[0], S_LONG - 1);
	assert_int_equal(last[1], 4);
	assert_true(last_pos[1] < 50);
	assert_int_equal(
	    schakel_receive(b, 1, 500, s_on_run, r, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);
	schakel_close(&b);
	free(r);
}

#define S_SLOW_N 150
struct s_slow {
	size_t n, again;
	uint8_t ids[S_SLOW_N][SCHAKEL_ID_LEN];
};

/* A handler that takes 50 ms a message. */
static int
s_on_slow(void *arg, const struct schakel_delivery *d)
{
	struct s_slow *x = arg;

	hx_sleep_ms(50);
	if (d->delivery_count > 1)
		x->again++;
	if (x->n < S_SLOW_N)
		memcpy(x->ids[x->n], d->message_id, SCHAKEL_ID_LEN);
	x->n++;
	return 0;
}

/* A slow application working through one bundle of deliveries (150 at
 * 50 ms: longer than three 2 s heartbeats) keeps its connection: the
 * acks go out while it works, and nothing comes twice. */
static void
t_slow_handler(void **state)
{
	static struct schakel_message batch[S_SLOW_N];
	static char cases[S_SLOW_N][32];
	static int results[S_SLOW_N];
	struct hx *h = *state;
	struct schakel_client *a = NULL, *t = NULL;
	struct s_slow *x = calloc(1, sizeof *x);
	char log[320];
	size_t handed = 0;

	assert_non_null(x);
	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(hx_start_logged(h, log), 0);
	s_connect(h, HX_SENDER, &a);
	for (size_t i = 0; i < S_SLOW_N; i++) {
		snprintf(cases[i], sizeof cases[i], "zaak-05%03zu", i);
		batch[i] = hx_msg(HX_TYPE_ONE, cases[i], "langzaam");
	}
	assert_int_equal(
	    schakel_send_batch(a, batch, S_SLOW_N, NULL, results), SCHAKEL_OK);
	schakel_close(&a);

	s_connect(h, HX_TEAM_A, &t);
	assert_int_equal(
	    schakel_receive(t, S_SLOW_N, 30000, s_on_slow, x, &handed),
	    SCHAKEL_OK);
	assert_int_equal(handed, S_SLOW_N);
	assert_int_equal(x->n, S_SLOW_N);
	assert_int_equal(x->again, 0);
	for (size_t i = 1; i < S_SLOW_N; i++)
		for (size_t j = 0; j < i; j++)
			assert_memory_not_equal(
			    x->ids[i], x->ids[j], SCHAKEL_ID_LEN);
	/* Nothing more, and the broker never gave up on the connection. */
	assert_int_equal(
	    schakel_receive(t, 1, 500, s_on_slow, x, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);
	assert_true(tu_file_has(log, "ready parties="));
	assert_false(tu_file_has(
	    log, "party=team-a reason=no traffic for three heartbeats"));
	schakel_close(&t);
	free(x);
}

/* More than the 4,096 acknowledgements the broker's open group takes
 * before its deliveries wait for the writer (BROKER_ACKS_MAX), over 512
 * cases. */
#define S_BACKLOG 6144
#define S_BACKLOG_CASES 512

/* Each backlog message seen once, and in order within its case. */
struct s_backlog {
	unsigned seen[S_BACKLOG];
	long last[S_BACKLOG_CASES];
	bool disorder;
};

static int
s_on_backlog(void *arg, const struct schakel_delivery *d)
{
	struct s_backlog *x = arg;
	long k = hx_payload_num(d, "achter");

	if (k < 0 || k >= S_BACKLOG)
		return -1;
	if (k <= x->last[k % S_BACKLOG_CASES])
		x->disorder = true;
	x->last[k % S_BACKLOG_CASES] = k;
	x->seen[k]++;
	return 0;
}

/* The broker's syncs take 1.5 s while s_slow_file exists
 * (s_setup_sync_file); no submit rate limit; metrics on a port of its
 * choosing. */
static char s_slow_file[160];

/* The standard ecosystem without the submit rate limit, with metrics on
 * a port of the broker's choosing; static, NULL when the standard one
 * changed shape. */
static const char *
s_metrics_yaml(void)
{
	static char yaml[8192];
	const char *lim = hx_yaml_limits(
	    "    submit_rate: 1000000\n    submit_burst: 1000000\n");
	const char *off = lim != NULL ? strstr(lim, "metrics: off") : NULL;

	if (off == NULL)
		return NULL;
	snprintf(yaml, sizeof yaml, "%.*smetrics: 127.0.0.1:0%s",
	    (int)(off - lim), lim, off + strlen("metrics: off"));
	return yaml;
}

static int
s_setup_slow_while(void **state)
{
	return s_setup_sync_file(state, s_metrics_yaml(), "SLOWSYNC_MS=1500",
	    "SLOWSYNC_WHILE", "slow", s_slow_file, sizeof s_slow_file);
}

/* (n) A recipient comes back to a backlog larger than the
 * acknowledgements one group commit takes, while each commit waits
 * 1.5 s for the disk: the broker stops handing out messages while its
 * open group is full of acknowledgements (its memory would grow with the
 * backlog otherwise: 395 MiB for a million), and goes on once the
 * writer took them.  Every message arrives once, in order per case. */
static void
t_backlog_waits(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL;
	static struct schakel_message m[1024];
	static char text[1024][32], zaak[1024][32];
	static int results[1024];
	struct s_backlog *x = calloc(1, sizeof *x);
	char *metrics = malloc(TU_HTTP_MAX);
	size_t handed = 0, total = 0;

	assert_non_null(x);
	assert_non_null(metrics);
	for (size_t c = 0; c < S_BACKLOG_CASES; c++)
		x->last[c] = -1;
	s_connect(h, HX_SENDER, &a);
	for (size_t done = 0; done < S_BACKLOG; done += 1024) {
		for (size_t i = 0; i < 1024; i++) {
			snprintf(
			    text[i], sizeof text[i], "achter %zu", done + i);
			snprintf(zaak[i], sizeof zaak[i], "zaak-b%zu",
			    (done + i) % S_BACKLOG_CASES);
			m[i] = hx_msg(HX_TYPE_ONE, zaak[i], text[i]);
		}
		assert_int_equal(
		    schakel_send_batch(a, m, 1024, NULL, results), SCHAKEL_OK);
	}
	schakel_close(&a);
	/* From now on each commit waits 1.5 s. */
	s_touch(s_slow_file);
	s_connect(h, HX_TEAM_A, &b);
	while (total < S_BACKLOG) {
		assert_int_equal(schakel_receive(b, S_BACKLOG - total, 30000,
				     s_on_backlog, x, &handed),
		    SCHAKEL_OK);
		assert_true(handed > 0);
		total += handed;
	}
	for (size_t i = 0; i < S_BACKLOG; i++)
		assert_int_equal(x->seen[i], 1);
	assert_false(x->disorder);
	/* The deliveries did wait (the metrics are rendered once a
	 * second). */
	hx_sleep_ms(1500);
	assert_int_equal(
	    tu_http_get(h->metrics_port, "/metrics", metrics, TU_HTTP_MAX),
	    200);
	print_message("deliveries waited %.0f times\n",
	    tu_metric(metrics, "schakel_delivery_waits_total"));
	assert_true(tu_metric(metrics, "schakel_delivery_waits_total") >= 1);
	assert_true(
	    tu_metric(metrics, "schakel_acknowledged_total") >= S_BACKLOG);
	schakel_close(&b);
	free(metrics);
	free(x);
}

/* t_expired_walk: messages that expire in the recipient's queue, over
 * a few cases, before one on time in each. */
#define S_EXPIRED 8192
#define S_EXPIRED_CASES 8
#define S_EXPIRED_TTL 4000

static int
s_setup_metrics(void **state)
{
	const char *yaml = s_metrics_yaml();

	*state = yaml != NULL ? hx_new(s_schakeld, yaml) : NULL;
	return *state != NULL ? 0 : -1;
}

/* (o) A recipient comes back to a queue of thousands of messages that
 * expired while it was away, more than the broker's once-a-second look
 * for expired messages takes at once, with a message on time behind
 * them in each case.  The pump meets the expired ones first: it
 * dead-letters them a bounded number a turn (a queue of them must not
 * become one turn's work and one transaction), and goes on in the next
 * turns until it reaches the messages on time.  Each expired message is
 * dead-lettered once, the ones on time arrive, nothing else does. */
static void
t_expired_walk(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL, *b = NULL;
	static struct schakel_message m[1024];
	static char zaak[S_EXPIRED_CASES][32], text[S_EXPIRED_CASES][32];
	static int results[1024];
	struct s_got *g = calloc(1, sizeof *g);
	char *metrics = malloc(TU_HTTP_MAX);
	size_t handed = 0;
	uint64_t sent, until;
	double dead = 0, depth = -1;

	assert_non_null(g);
	assert_non_null(metrics);
	for (size_t c = 0; c < S_EXPIRED_CASES; c++)
		snprintf(zaak[c], sizeof zaak[c], "zaak-v%zu", c);
	s_connect(h, HX_SENDER, &a);
	for (size_t done = 0; done < S_EXPIRED; done += 1024) {
		for (size_t i = 0; i < 1024; i++) {
			m[i] = hx_msg(HX_TYPE_ONE,
			    zaak[(done + i) % S_EXPIRED_CASES], "verlopen");
			m[i].ttl_ms = S_EXPIRED_TTL;
		}
		assert_int_equal(
		    schakel_send_batch(a, m, 1024, NULL, results), SCHAKEL_OK);
	}
	sent = hx_mono_ms();
	for (size_t c = 0; c < S_EXPIRED_CASES; c++) {
		snprintf(text[c], sizeof text[c], "op tijd %zu", c);
		m[c] = hx_msg(HX_TYPE_ONE, zaak[c], text[c]);
	}
	assert_int_equal(
	    schakel_send_batch(a, m, S_EXPIRED_CASES, NULL, results),
	    SCHAKEL_OK);
	schakel_close(&a);
	/* Every message of the first batches has expired, and the broker
	 * looked for expired ones at most once since the first did. */
	until = sent + S_EXPIRED_TTL + 200;
	while (hx_mono_ms() < until)
		hx_sleep_ms((long)(until - hx_mono_ms()));
	s_connect(h, HX_TEAM_A, &b);
	while (g->n < S_EXPIRED_CASES) {
		assert_int_equal(schakel_receive(b, S_EXPIRED_CASES - g->n,
				     10000, s_on_message, g, &handed),
		    SCHAKEL_OK);
		assert_true(handed > 0);
	}
	for (size_t i = 0; i < g->n; i++)
		assert_memory_equal(g->m[i].payload, "op tijd ", 8);
	/* And nothing else comes. */
	assert_int_equal(
	    schakel_receive(b, 1, 500, s_on_message, g, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 0);
	/* Each expired message a dead letter, once, and the queue empty
	 * (the metrics are rendered once a second; the dead letters are
	 * counted when decided, the queue read as committed). */
	for (int i = 0; i < 50 && (dead < S_EXPIRED || depth != 0); i++) {
		hx_sleep_ms(200);
		assert_int_equal(tu_http_get(h->metrics_port, "/metrics",
				     metrics, TU_HTTP_MAX),
		    200);
		dead = tu_metric(
		    metrics, "schakel_dead_letters_total{reason=\"EXPIRED\"}");
		depth = tu_metric(
		    metrics, "schakel_queue_depth{party=\"" HX_TEAM_A "\"}");
	}
	assert_true(dead == S_EXPIRED);
	assert_true(depth == 0);
	schakel_close(&b);
	free(metrics);
	free(g);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(t_a_to_b, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_fan_out, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_batch_mixed, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_slow_handler, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_offline_recipient, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_tampered_ciphertext, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_tampered_at_rest, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_undecodable_at_rest, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_kept_acks, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_full_after_direct,
		s_setup_full_sync, s_teardown_failing_sync),
	    cmocka_unit_test_setup_teardown(t_store_dir_synced,
		s_setup_failing_sync, s_teardown_failing_sync),
	    cmocka_unit_test_setup_teardown(
		t_receive_broker_down, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_receive_waits_for_broker, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_broker_restart, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_unknown_transport_key, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_notices, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_long_case, s_setup_no_rate, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_expire_in_flight, s_setup_ack_timeout, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_delivery_counts, s_setup_ack_timeout, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_two_connections, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_standby, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_nack_backoff, s_setup_ack_timeout, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_nack_permanent, s_setup_ack_timeout, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_first_delivery_fails, s_setup_ack_timeout, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_heartbeats_missed, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_ack_in_slow_commit, s_setup_slow_sync, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_commit_fails, s_setup_failing_sync, s_teardown_failing_sync),
	    cmocka_unit_test_setup_teardown(
		t_backlog_waits, s_setup_slow_while, s_teardown_failing_sync),
	    cmocka_unit_test_setup_teardown(
		t_expired_walk, s_setup_metrics, s_teardown),
	};

	if (argc != 3) {
		fprintf(stderr, "usage: %s PATH-TO-SCHAKELD PATH-TO-SLOWSYNC\n",
		    argv[0]);
		return 2;
	}
	s_schakeld = argv[1];
	s_slowsync = argv[2];
	/* CMOCKA_TEST_FILTER=t_notices runs one. */
	if (getenv("CMOCKA_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
