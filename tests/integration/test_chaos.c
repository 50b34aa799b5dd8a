/*
 * test_chaos: what broken or hostile clients send does not stop the
 * broker serving the others, nor lose what it accepted.  Six raw
 * connections of four declared parties send thousands of frames chosen
 * by a seeded generator (valid and mutated envelopes, resubmissions,
 * acknowledgements of deliveries they did, did not and could not get,
 * credit of every size, frames only the broker sends, bundles, bundles in
 * bundles, several ZeroMQ parts, random bytes, reconnections under a
 * routing id another connection holds; a party removed by a reload and
 * put back by another), while a well-behaved sender
 * (libschakel) sends a message every few dozen frames and must get each
 * receipt, and a well-behaved recipient must get each message exactly
 * once.  At the end the audit chain verifies and SIGTERM stops the broker
 * cleanly.  The sanitizer build runs this too.
 *
 * SCHAKEL_CHAOS_SEED and SCHAKEL_CHAOS_STEPS choose another run (the
 * default is fixed); the seed is printed, and a failure names it.  What
 * the broker answers depends on timing, so a seed gives the same frames
 * only up to the deliveries acknowledged from the pool.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "env.h"
#include "frame.h"
#include "harness.h"
#include "keys.h"
#include "schakel.h"

static const char *s_schakeld, *s_schakelctl;

/* The standard ecosystem, but `outsider` is a municipality too, whose
 * messages go to team-b and team-c only: nothing of what the raw
 * connections get accepted reaches team-a, the well-behaved recipient. */
#define S_YAML(team_c, team_c_id, team_c_to) \
	"broker:\n" \
	"  endpoints: [tcp://127.0.0.1:*]\n" \
	"  data_dir: data\n" \
	"  key_file: keys/broker.key\n" \
	"  metrics: off\n" \
	"  admin_socket: run/control.sock\n" \
	"  limits:\n" \
	"    heartbeat: 2s\n" \
	"roles:\n" \
	"  - {id: municipality, description: Gemeente}\n" \
	"  - {id: debt_counselling, description: Schuldhulp}\n" \
	"parties:\n" \
	"  - {id: gemeente, name: Gemeente, role: municipality," \
	" regions: [GM0344], keys: keys/gemeente.pub}\n" \
	"  - {id: outsider, name: Outsider, role: municipality," \
	" regions: [GM0344], keys: keys/outsider.pub}\n" \
	"  - {id: team-a, name: Team A, role: debt_counselling," \
	" regions: [GM0344], keys: keys/team-a.pub}\n" \
	"  - {id: team-b, name: Team B, role: debt_counselling," \
	" regions: [GM0344], keys: keys/team-b.pub}\n" team_c \
	"message_types:\n" \
	"  - {id: shv.melding.v1, description: Request for help}\n" \
	"  - {id: shv.overleg.v1, description: Case consultation}\n" \
	"agreements:\n" \
	"  - id: schuldhulp\n" \
	"    parties: [gemeente, outsider, team-a, team-b" team_c_id "]\n" \
	"    purpose: schuldhulp\n" \
	"    legal_basis: Wgs art. 8\n" \
	"    valid_from: 2026-01-01\n" \
	"    retention_days: 90\n" \
	"    flows:\n" \
	"      - {from: {party: gemeente}, to: {party: team-a}," \
	" types: [shv.melding.v1]}\n" \
	"      - {from: {party: outsider}, to: {role: debt_counselling}," \
	" types: [shv.overleg.v1]}\n" \
	"routes:\n" \
	"  - id: melding\n" \
	"    match: {type: shv.melding.v1, sender: gemeente}\n" \
	"    to: [{party: team-a}]\n" \
	"  - id: overleg\n" \
	"    match: {type: shv.overleg.v1, sender: outsider}\n" \
	"    to: [{party: team-b}" team_c_to "]\n"

static const char s_yaml[] =
    S_YAML("  - {id: team-c, name: Team C, role: debt_counselling,"
	   " regions: [GM0344], keys: keys/team-c.pub}\n",
	", team-c", ", {party: team-c}");
/* Reloaded a third of the way through, and s_yaml again at two thirds:
 * team-c gone while its connections are open and messages for it are
 * queued and in flight. */
static const char s_yaml_no_c[] = S_YAML("", "", "");

#define S_CONNS 6
#define S_ENVS 48  /* valid envelopes of outsider's, to team-b and team-c */
#define S_DELS 256 /* deliveries the raw connections got */
#define S_EVERY 40 /* frames between two well-behaved sends */
#define S_MAX_SENT 1000

static const char *const s_conn_party[S_CONNS] = {
    "outsider", "outsider", "team-b", "team-b", "team-c", "team-c"};
static const char *const s_names[] = {"outsider", "team-a", "team-b",
    "gemeente", "team-c", "nobody", "", "TEAM-B", "team-b\n"};

struct s_del {
	uint64_t seq;
	uint8_t id[ENV_ID_LEN];
};

struct s_chaos {
	struct hx *h;
	uint64_t rng;
	void *sock[S_CONNS];
	struct codec_buf env[S_ENVS];
	struct s_del del[S_DELS];
	size_t ndel, deliveries, fresh;
	struct keys_secret *outsider, *team_b;
	uint8_t box_b[ENV_BOX_PK_LEN], box_c[ENV_BOX_PK_LEN];
	uint64_t corr;
};

/* splitmix64 */
static uint64_t
s_rand(struct s_chaos *x)
{
	uint64_t z = (x->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static size_t
s_pick(struct s_chaos *x, size_t n)
{
	return (size_t)(s_rand(x) % n);
}

static void
s_fill(struct s_chaos *x, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)s_rand(x);
}

static void
s_name(struct s_chaos *x, char *out, size_t len)
{
	snprintf(out, len, "%s",
	    s_names[s_pick(x, sizeof s_names / sizeof s_names[0])]);
}

/* A draft of outsider's to team-b and team-c on case `n`. */
static void
s_draft(struct s_chaos *x, struct env_draft *d, size_t n, const char *type,
    const char *payload)
{
	char ref[16];

	memset(d, 0, sizeof *d);
	snprintf(ref, sizeof ref, "CHAOS-%zu", n % 7);
	hx_header(&d->hdr, "outsider", type, ref);
	snprintf(d->recipients[0].party_id, sizeof d->recipients[0].party_id,
	    "team-b");
	memcpy(d->recipients[0].box_pk, x->box_b, ENV_BOX_PK_LEN);
	snprintf(d->recipients[1].party_id, sizeof d->recipients[1].party_id,
	    "team-c");
	memcpy(d->recipients[1].box_pk, x->box_c, ENV_BOX_PK_LEN);
	d->n_recipients = 2;
	d->payload = (const uint8_t *)payload;
	d->payload_len = strlen(payload);
}

/* The pool of envelopes: most valid (some in batches under one
 * signature), some of a type without a route for outsider, some signed
 * with team-b's key. */
static void
s_envelopes(struct s_chaos *x)
{
	struct env_draft *d = calloc(8, sizeof *d);

	assert_non_null(d);
	for (size_t i = 0; i < S_ENVS;) {
		size_t n = i % 3 == 0 && i + 8 <= S_ENVS ? 8 : 1;
		const char *type =
		    i % 11 == 5 ? "shv.melding.v1" : "shv.overleg.v1";
		const struct keys_secret *k =
		    i % 13 == 7 ? x->team_b : x->outsider;

		for (size_t j = 0; j < n; j++)
			s_draft(x, &d[j], i + j, type, "chaos from outsider");
		assert_int_equal(
		    env_build(d, n, k->sign_sk, &x->env[i]), SCHAKEL_OK);
		i += n;
	}
	free(d);
}

/* A new valid envelope in place of *e. */
static void
s_fresh(struct s_chaos *x, struct codec_buf *e)
{
	struct env_draft d;

	s_draft(x, &d, s_pick(x, 100), "shv.overleg.v1", "chaos, fresh");
	codec_buf_clear(e);
	assert_int_equal(env_build(&d, 1, x->outsider->sign_sk, e), SCHAKEL_OK);
	x->fresh++;
}

/* A delivery from the pool, or one made up. */
static void
s_ack_of(struct s_chaos *x, struct frame_ack *a)
{
	size_t r = s_pick(x, 4);

	if (x->ndel > 0 && r < 3) {
		const struct s_del *d = &x->del[s_pick(x, x->ndel)];
		a->store_seq = d->seq;
		memcpy(a->message_id, d->id, ENV_ID_LEN);
		if (r == 2) /* the right seq, another id, or the other way */
			a->message_id[s_pick(x, ENV_ID_LEN)] ^= 0x40;
		if (r == 2 && s_pick(x, 2) == 0)
			a->store_seq += 1 + s_pick(x, 3);
	} else {
		a->store_seq = s_pick(x, 2) == 0 ? s_rand(x) : s_pick(x, 500);
		s_fill(x, a->message_id, ENV_ID_LEN);
	}
	a->code = s_pick(x, 3) == 0 ? (uint32_t)s_rand(x) : 0;
}

static const uint32_t s_credits[] = {
    0, 1, 2, 7, 64, 1000, 65535, 65536, UINT32_MAX, UINT32_MAX - 1};

/* A frame that encodes: any kind, the fields chosen at random.  `raw`
 * (at least 512 bytes) holds what byte fields point to. */
static void
s_frame(struct s_chaos *x, struct frame *f, uint8_t *raw)
{
	size_t n;

	memset(f, 0, sizeof *f);
	f->corr_id = s_pick(x, 4) == 0 ? 0 : ++x->corr;
	switch (s_pick(x, 16)) {
	case 0:
		f->kind = FRAME_HELLO;
		snprintf(f->u.hello.protocol, sizeof f->u.hello.protocol, "%s",
		    s_pick(x, 4) == 0 ? "schakel.v0" : FRAME_PROTOCOL);
		s_name(x, f->u.hello.party_id, sizeof f->u.hello.party_id);
		snprintf(
		    f->u.hello.software, sizeof f->u.hello.software, "chaos");
		f->u.hello.bundles = s_pick(x, 2) == 0;
		break;
	case 1:
	case 2:
		f->kind = FRAME_CREDIT;
		f->u.credit = s_pick(x, 5) == 0
		    ? (uint32_t)s_rand(x)
		    : s_credits[s_pick(
			  x, sizeof s_credits / sizeof s_credits[0])];
		break;
	case 3:
	case 4:
	case 5:
		f->kind = FRAME_ACK;
		s_ack_of(x, &f->u.ack);
		break;
	case 6:
		f->kind = FRAME_NACK;
		s_ack_of(x, &f->u.ack);
		break;
	case 7:
		f->kind = s_pick(x, 2) == 0 ? FRAME_PING : FRAME_PONG;
		f->u.ping_ms = s_rand(x);
		break;
	case 8:
		f->kind = FRAME_RESOLVE;
		snprintf(f->u.resolve.type, sizeof f->u.resolve.type, "%s",
		    s_pick(x, 2) == 0 ? "shv.overleg.v1" : "shv.melding.v1");
		snprintf(f->u.resolve.case_ref, sizeof f->u.resolve.case_ref,
		    "%s", s_pick(x, 5) == 0 ? "111222333" : "CHAOS-R");
		snprintf(f->u.resolve.purpose, sizeof f->u.resolve.purpose,
		    "%s", s_pick(x, 3) == 0 ? "incasso" : HX_PURPOSE);
		snprintf(f->u.resolve.region, sizeof f->u.resolve.region, "%s",
		    s_pick(x, 3) == 0 ? "GM0599" : "GM0344");
		f->u.resolve.n_attrs = s_pick(x, 3);
		for (size_t i = 0; i < f->u.resolve.n_attrs; i++) {
			snprintf(f->u.resolve.attrs[i].key,
			    sizeof f->u.resolve.attrs[i].key, "k%zu",
			    s_pick(x, 3));
			snprintf(f->u.resolve.attrs[i].value,
			    sizeof f->u.resolve.attrs[i].value, "v");
		}
		f->u.resolve.urgent = s_pick(x, 2) == 0;
		break;
	case 9:
	case 10:
	case 11: {
		/* An envelope of the pool, whole or with bytes changed; a
		 * third of the time a new one in its place first. */
		struct codec_buf *e = &x->env[s_pick(x, S_ENVS)];
		if (s_pick(x, 3) == 0)
			s_fresh(x, e);
		f->kind = FRAME_SUBMIT;
		f->u.submit.data = e->data;
		f->u.submit.len = e->len;
		if (s_pick(x, 4) == 0 && e->len <= 4096) {
			uint8_t *copy = raw + 512;
			memcpy(copy, e->data, e->len);
			for (size_t i = 1 + s_pick(x, 4); i > 0; i--)
				copy[s_pick(x, e->len)] ^=
				    (uint8_t)(1u << s_pick(x, 8));
			f->u.submit.data = copy;
			if (s_pick(x, 3) == 0)
				f->u.submit.len = s_pick(x, e->len);
		}
		break;
	}
	case 12:
		f->kind = FRAME_SUBMIT;
		n = s_pick(x, 512);
		s_fill(x, raw, n);
		f->u.submit.data = raw;
		f->u.submit.len = n;
		break;
	case 13:
		/* What only the broker sends. */
		switch (s_pick(x, 4)) {
		case 0:
			f->kind = FRAME_WELCOME;
			snprintf(f->u.welcome.protocol,
			    sizeof f->u.welcome.protocol, FRAME_PROTOCOL);
			break;
		case 1:
			f->kind = FRAME_ACCEPTED;
			n = s_pick(x, 256);
			s_fill(x, raw, n);
			f->u.accepted.data = raw;
			f->u.accepted.len = n;
			break;
		case 2:
			f->kind = FRAME_REFUSAL;
			f->u.refusal.code = (uint32_t)s_pick(x, 64);
			snprintf(f->u.refusal.reason,
			    sizeof f->u.refusal.reason, "no");
			break;
		default:
			f->kind = FRAME_NOTICE;
			f->u.notice.kind = FRAME_NOTICE_DELIVERED;
			s_name(x, f->u.notice.recipient,
			    sizeof f->u.notice.recipient);
			break;
		}
		break;
	default:
		f->kind = FRAME_DELIVER;
		f->u.deliver.store_seq = s_pick(x, 100);
		n = s_pick(x, 256);
		s_fill(x, raw, n);
		f->u.deliver.envelope.data = raw;
		f->u.deliver.envelope.len = n;
		break;
	}
}

/* One ZeroMQ message for a raw connection: a frame, a frame with bytes
 * changed or cut short, random bytes, or a bundle of these (a bundle in
 * it now and then). */
static void
s_message(struct s_chaos *x, struct codec_buf *out, int depth)
{
	uint8_t *raw = malloc(512 + 8192);
	struct frame f;
	size_t r = s_pick(x, 20);

	assert_non_null(raw);
	memset(out, 0, sizeof *out);
	if (r < 3 && depth < 2) {
		struct frame_bundle b = {0};
		const uint8_t *p;
		size_t len, n = s_pick(x, 24);

		for (size_t i = 0; i < n; i++) {
			struct codec_buf one;
			s_message(x, &one, depth + 1);
			(void)frame_bundle_add_raw(&b, one.data, one.len);
			codec_buf_clear(&one);
		}
		if (frame_bundle_finish(&b, &p, &len)) {
			out->data = malloc(len + 1);
			assert_non_null(out->data);
			memcpy(out->data, p, len);
			out->len = len;
		}
		frame_bundle_free(&b);
	} else if (r == 3) {
		size_t n = s_pick(x, 300);
		out->data = malloc(n + 1);
		assert_non_null(out->data);
		s_fill(x, out->data, n);
		out->len = n;
	} else {
		s_frame(x, &f, raw);
		if (frame_encode(&f, out) != SCHAKEL_OK) {
			codec_buf_clear(out);
		} else if (r < 6 && out->len > 0) {
			for (size_t i = 1 + s_pick(x, 3); i > 0; i--)
				out->data[s_pick(x, out->len)] ^=
				    (uint8_t)s_rand(x);
			if (r == 5)
				out->len = s_pick(x, out->len);
		}
	}
	free(raw);
}

/* Sends one frame without waiting: a connection the broker refused
 * (its party removed) takes nothing. */
static void
s_send_frame(void *sock, const struct frame *f)
{
	struct codec_buf b = {0};

	if (frame_encode(f, &b) == SCHAKEL_OK)
		(void)zmq_send(sock, b.data, b.len, ZMQ_DONTWAIT);
	codec_buf_clear(&b);
}

/* Reads what a raw connection was sent: keeps its deliveries for the
 * acknowledgements, answers a Ping now and then. */
static void
s_take(struct s_chaos *x, const uint8_t *p, size_t len, void *sock)
{
	struct frame f;

	if (frame_decode(p, len, 0, &f) != SCHAKEL_OK)
		return;
	if (f.kind == FRAME_BUNDLE) {
		struct frame_bytes inner;
		size_t off = 0;
		while (frame_bundle_next(&f.u.bundle, &off, &inner))
			s_take(x, inner.data, inner.len, sock);
	} else if (f.kind == FRAME_DELIVER) {
		struct env *e = NULL;
		struct s_del *d =
		    &x->del[x->ndel < S_DELS ? x->ndel++ : s_pick(x, S_DELS)];
		x->deliveries++;
		d->seq = f.u.deliver.store_seq;
		memset(d->id, 0, ENV_ID_LEN);
		if (env_decode(f.u.deliver.envelope.data,
			f.u.deliver.envelope.len, 0, &e) == SCHAKEL_OK)
			memcpy(d->id, env_header(e)->id, ENV_ID_LEN);
		env_destroy(&e);
	} else if (f.kind == FRAME_PING && s_pick(x, 3) != 0) {
		struct frame pong = {.corr_id = f.corr_id, .kind = FRAME_PONG};
		pong.u.ping_ms = f.u.ping_ms;
		s_send_frame(sock, &pong);
	}
	frame_clear(&f);
}

static void
s_drain(struct s_chaos *x)
{
	for (size_t i = 0; i < S_CONNS; i++) {
		zmq_msg_t m;

		if (x->sock[i] == NULL)
			continue;
		zmq_msg_init(&m);
		while (zmq_msg_recv(&m, x->sock[i], ZMQ_DONTWAIT) >= 0) {
			s_take(
			    x, zmq_msg_data(&m), zmq_msg_size(&m), x->sock[i]);
			zmq_msg_close(&m);
			zmq_msg_init(&m);
		}
		zmq_msg_close(&m);
	}
}

/* Connection i anew, sometimes under the routing id of another
 * connection; mostly it says Hello at once. */
static void
s_reopen(struct s_chaos *x, size_t i)
{
	uint8_t id[5] = {'c', 'h', 'a', 'o', (uint8_t)s_pick(x, 3)};

	hx_raw_close(&x->sock[i]);
	x->sock[i] = hx_raw_open(
	    x->h, s_conn_party[i], id, s_pick(x, 3) == 0 ? sizeof id : 0, 0);
	assert_non_null(x->sock[i]);
	if (s_pick(x, 3) != 0) {
		struct frame hello = {.corr_id = 1, .kind = FRAME_HELLO};
		snprintf(hello.u.hello.protocol, sizeof hello.u.hello.protocol,
		    "%s", FRAME_PROTOCOL);
		snprintf(hello.u.hello.party_id, sizeof hello.u.hello.party_id,
		    "%s", s_conn_party[i]);
		hello.u.hello.bundles = s_pick(x, 2) == 0;
		s_send_frame(x->sock[i], &hello);
	}
}

/* One step of a raw connection. */
static void
s_step(struct s_chaos *x)
{
	size_t i = s_pick(x, S_CONNS), r = s_pick(x, 100);
	struct codec_buf m;

	if (r < 2) {
		s_reopen(x, i);
		return;
	}
	s_message(x, &m, 0);
	if (r < 6) {
		/* The frame in two ZeroMQ parts, or an empty second. */
		size_t cut = m.len > 0 ? s_pick(x, m.len) : 0;
		(void)zmq_send(
		    x->sock[i], m.data, cut, ZMQ_SNDMORE | ZMQ_DONTWAIT);
		(void)zmq_send(
		    x->sock[i], m.data + cut, m.len - cut, ZMQ_DONTWAIT);
	} else {
		(void)zmq_send(x->sock[i], m.data, m.len, ZMQ_DONTWAIT);
	}
	codec_buf_clear(&m);
}

/* Hands every message team-a gets to `seen` by its number. */
static int
s_on_team_a(void *arg, const struct schakel_delivery *d)
{
	unsigned *seen = arg;
	long n = hx_payload_num(d, "chaos");

	if (n < 0 || n >= S_MAX_SENT)
		fail_msg("team-a got a message that was not sent to it");
	seen[n]++;
	return 0;
}

/* Writes `yaml` as the broker's configuration and reloads it. */
static void
s_reload(struct s_chaos *x, const char *yaml, uint64_t seed)
{
	const char *args[] = {"reload", NULL};
	char out[4096];
	FILE *f = fopen(x->h->conf, "w");

	assert_non_null(f);
	assert_int_equal(fputs(yaml, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	if (hx_schakelctl(x->h, s_schakelctl, out, sizeof out, args) != 0)
		fail_msg(
		    "seed %llu: reload: %s", (unsigned long long)seed, out);
}

static uint64_t
s_env_u64(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? strtoull(v, NULL, 10) : dflt;
}

static void
t_chaos(void **state)
{
	struct s_chaos *x = calloc(1, sizeof *x);
	struct schakel_client *good = NULL, *team_a = NULL;
	struct keys_secret *k;
	unsigned *seen = calloc(S_MAX_SENT, sizeof *seen);
	uint64_t seed = s_env_u64("SCHAKEL_CHAOS_SEED", 20261130);
	uint64_t steps = s_env_u64("SCHAKEL_CHAOS_STEPS", 20000);
	size_t sent = 0, handed = 0, got = 0;
	char out[4096];
	const char *verify[] = {"audit", "verify", NULL};

	assert_non_null(x);
	assert_non_null(seen);
	x->h = *state;
	x->rng = seed;
	fprintf(stderr, "chaos: seed %llu, %llu steps\n",
	    (unsigned long long)seed, (unsigned long long)steps);
	x->outsider = hx_secret(x->h, "outsider");
	x->team_b = hx_secret(x->h, "team-b");
	assert_non_null(x->outsider);
	assert_non_null(x->team_b);
	memcpy(x->box_b, x->team_b->pub.box, ENV_BOX_PK_LEN);
	k = hx_secret(x->h, "team-c");
	assert_non_null(k);
	memcpy(x->box_c, k->pub.box, ENV_BOX_PK_LEN);
	keys_secret_destroy(&k);
	s_envelopes(x);
	for (size_t i = 0; i < S_CONNS; i++) {
		x->sock[i] = hx_raw_connect(x->h, s_conn_party[i]);
		assert_non_null(x->sock[i]);
	}
	assert_int_equal(hx_connect(x->h, HX_SENDER, 5000, &good), SCHAKEL_OK);
	assert_int_equal(
	    hx_connect(x->h, HX_TEAM_A, 5000, &team_a), SCHAKEL_OK);

	for (uint64_t s = 0; s < steps; s++) {
		if (s == steps / 3)
			s_reload(x, s_yaml_no_c, seed);
		else if (s == 2 * steps / 3)
			s_reload(x, s_yaml, seed);
		s_step(x);
		s_drain(x);
		if (s % S_EVERY == S_EVERY - 1 && sent < S_MAX_SENT) {
			char payload[32], case_ref[32];
			struct schakel_message m;
			struct schakel_receipt r;
			int rc;

			snprintf(payload, sizeof payload, "chaos %zu", sent);
			snprintf(
			    case_ref, sizeof case_ref, "CHAOS-A-%zu", sent % 5);
			m = hx_msg(HX_TYPE_ONE, case_ref, payload);
			rc = schakel_send(good, &m, &r);
			if (rc != SCHAKEL_OK)
				fail_msg("seed %llu, step %llu: the "
					 "well-behaved send failed: %s: %s",
				    (unsigned long long)seed,
				    (unsigned long long)s, schakel_errname(rc),
				    schakel_client_error(good));
			schakel_receipt_clear(&r);
			sent++;
			/* Some of them on the way, the rest at the end. */
			assert_int_equal(schakel_receive(team_a, 0, 0,
					     s_on_team_a, seen, &handed),
			    SCHAKEL_OK);
			got += handed;
		}
	}
	assert_int_equal(kill(x->h->pid, 0), 0);
	while (got < sent) {
		size_t before = got;
		assert_int_equal(schakel_receive(team_a, sent - got, 10000,
				     s_on_team_a, seen, &handed),
		    SCHAKEL_OK);
		got += handed;
		if (got == before)
			break;
	}
	for (size_t i = 0; i < sent; i++)
		if (seen[i] != 1)
			fail_msg("seed %llu: message %zu handed to team-a %u "
				 "times",
			    (unsigned long long)seed, i, seen[i]);
	assert_int_equal(got, sent);
	fprintf(stderr,
	    "chaos: %llu steps, %zu well-behaved messages each received "
	    "once; %zu new envelopes submitted by raw connections, %zu "
	    "deliveries to them\n",
	    (unsigned long long)steps, sent, x->fresh, x->deliveries);
	/* Raw connections got outsider's messages: the valid ones were
	 * accepted and routed. */
	assert_true(x->deliveries > 0);

	schakel_close(&good);
	schakel_close(&team_a);
	for (size_t i = 0; i < S_CONNS; i++)
		hx_raw_close(&x->sock[i]);
	if (hx_schakelctl(x->h, s_schakelctl, out, sizeof out, verify) != 0)
		fail_msg("seed %llu: audit verify: %s",
		    (unsigned long long)seed, out);
	for (size_t i = 0; i < S_ENVS; i++)
		codec_buf_clear(&x->env[i]);
	keys_secret_destroy(&x->outsider);
	keys_secret_destroy(&x->team_b);
	free(seen);
	free(x);
}

static int
s_setup(void **state)
{
	struct hx *h = hx_new(s_schakeld, s_yaml);

	*state = h;
	return h != NULL ? 0 : -1;
}

static int
s_teardown(void **state)
{
	struct hx *h = *state;

	/* The broker that went through it all stops cleanly on SIGTERM. */
	return hx_destroy(&h) == 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(t_chaos, s_setup, s_teardown),
	};

	if (argc < 3) {
		fprintf(stderr, "usage: test_chaos SCHAKELD SCHAKELCTL\n");
		return 2;
	}
	s_schakeld = argv[1];
	s_schakelctl = argv[2];
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
