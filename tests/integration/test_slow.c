/* Integration tests of clients that do not read what the broker sends
 * them (docs/protocol.md 10.10), through the real schakeld.  A client
 * that floods requests and never reads the answers costs the broker
 * bounded memory and itself its session, while other parties go on
 * sending and receiving; a recipient that reads slowly is held back, not
 * dropped, and gets every message once, in order per case.  Each test
 * starts its own broker with its log in a file; the broker's memory is
 * read from /proc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "env.h"
#include "frame.h"
#include "harness.h"
#include "schakel.h"
#include "testutil.h"

static const char *s_schakeld, *s_schakelctl;

/* What the broker logs when it drops a slow consumer. */
#define S_SLOW_LINE "not reading what the broker sends"
/* The party that floods, with a flow of its own to the three teams
 * (s_yaml): each Resolve it sends (some 60 bytes) is answered with the
 * three recipients and their keys, some 400 bytes. */
#define S_FLOODER "outsider"
#define S_FLOOD_TYPE "shv.vordering.v1"
/* How much a flood sends: bundles whose replies come to some 1 GiB
 * (100 KiB a bundle), 2 to 4 s here; a slower machine takes longer, not
 * less memory (at most S_FLOOD_MAX_MS).  The broker's resident memory
 * may not pass S_RSS_MAX_KIB meanwhile: at rest it is some 12 MiB, and
 * what one client leaves unread is bounded at 64 MiB
 * (BROKER_UNSENT_HARD); unbounded, the reviewer's flood took it to
 * 1.5 GiB in 15 s. */
#define S_FLOOD_BUNDLES 10000
#define S_FLOOD_MAX_MS 30000
#define S_RSS_MAX_KIB (200 * 1024L)
#define S_PLAIN_MAX_KIB (32 * 1024L)

/* `text` with the first `from` replaced by `to`; owned. */
static char *
s_replace(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);
	size_t len = strlen(text) - strlen(from) + strlen(to) + 1;
	char *out = at != NULL ? malloc(len) : NULL;

	if (out != NULL)
		snprintf(out, len, "%.*s%s%s", (int)(at - text), text, to,
		    at + strlen(from));
	return out;
}

/* The standard ecosystem, and a flow from the outsider (a creditor) to
 * the three teams; made once, kept for the harness. */
static char *s_yaml;

static const char *
s_ecosystem(void)
{
	char *a, *b;

	if (s_yaml != NULL)
		return s_yaml;
	a = s_replace(hx_yaml(), "message_types:\n",
	    "message_types:\n"
	    "  - {id: " S_FLOOD_TYPE ", description: Claim}\n");
	b = a != NULL
	    ? s_replace(a, "routes:\n",
		  "  - id: incasso\n"
		  "    parties: [outsider, team-a, team-b, team-c]\n"
		  "    purpose: incasso\n"
		  "    legal_basis: Rv art. 475\n"
		  "    valid_from: 2026-01-01\n"
		  "    retention_days: 90\n"
		  "    flows:\n"
		  "      - {from: {party: outsider},"
		  " to: {role: debt_counselling},"
		  " types: [" S_FLOOD_TYPE "]}\n"
		  "routes:\n"
		  "  - id: vordering\n"
		  "    match: {type: " S_FLOOD_TYPE ", sender: outsider}\n"
		  "    to: [{party: team-a}, {party: team-b},"
		  " {party: team-c}]\n")
	    : NULL;
	free(a);
	s_yaml = b;
	return s_yaml;
}

static int
s_setup(void **state)
{
	const char *yaml = s_ecosystem();
	struct hx *h = yaml != NULL ? hx_new(s_schakeld, yaml) : NULL;
	char log[320];

	*state = h;
	if (h == NULL)
		return -1;
	snprintf(log, sizeof log, "%s/schakeld.log", h->dir);
	if (hx_stop(h, SIGTERM) != 0 || hx_start_logged(h, log) != 0)
		return -1;
	return 0;
}

static int
s_teardown(void **state)
{
	struct hx *h = *state;

	return hx_destroy(&h) == 0 ? 0 : -1;
}

static void
s_log_path(const struct hx *h, char *out, size_t len)
{
	snprintf(out, len, "%s/schakeld.log", h->dir);
}

/* A field of /proc/PID/status in KiB ("VmRSS:", the resident memory;
 * "RssAnon:", that part of it not mapped from files such as the
 * store's), or -1. */
static long
s_rss_kib(pid_t pid)
{
	return hx_status_kib(pid, "VmRSS:");
}

/* Says Hello on a raw socket and waits for the Welcome. */
static void
s_hello(void *sock, const char *party, bool bundles)
{
	struct frame hello = {.corr_id = 1, .kind = FRAME_HELLO}, w;

	snprintf(hello.u.hello.protocol, sizeof hello.u.hello.protocol, "%s",
	    FRAME_PROTOCOL);
	snprintf(
	    hello.u.hello.party_id, sizeof hello.u.hello.party_id, "%s", party);
	snprintf(
	    hello.u.hello.software, sizeof hello.u.hello.software, "test_slow");
	hello.u.hello.bundles = bundles;
	assert_int_equal(hx_raw_request(sock, &hello, &w, 5000), 0);
	assert_int_equal(w.kind, FRAME_WELCOME);
	assert_int_equal(w.u.welcome.bundles, bundles);
	frame_clear(&w);
}

enum s_flood_kind {
	S_KIND_BUNDLES,     /* Hello{bundles}, then bundles of Resolves */
	S_KIND_HELLO_AGAIN, /* the same, each bundle opening with a Hello */
	S_KIND_PLAIN,       /* Hello without bundles: a reply a message */
	S_KIND_CONNECTIONS, /* S_BUNDLES on S_CONNS connections at once */
};

/* The connections of S_KIND_CONNECTIONS: each may hold 64 MiB, four
 * 256 MiB; the party's together may hold 96 MiB.  The broker's memory
 * may be higher for them: ZeroMQ takes in 1,000 messages a connection
 * ahead of the broker (16 MiB of these bundles), four times over. */
#define S_CONNS 4
#define S_RSS_MAX_CONNS_KIB (256 * 1024L)

struct s_flood {
	struct hx *h;
	void *socks[S_CONNS];
	size_t nsocks;
	const uint8_t *msg; /* the bundle, sent again and again */
	size_t len;
	uint64_t sent; /* bundles */
	long peak_kib; /* the broker's largest VmRSS seen */
	atomic_bool done;
};

/* The flooder's thread: sends the bundle S_FLOOD_BUNDLES times without
 * ever reading, and looks at the broker's memory every 10 ms
 * meanwhile. */
static void *
s_flood_run(void *arg)
{
	struct s_flood *f = arg;
	uint64_t end = hx_mono_ms() + S_FLOOD_MAX_MS, look = 0, now;

	while (f->sent < S_FLOOD_BUNDLES && (now = hx_mono_ms()) < end) {
		if (now >= look) {
			long kib = s_rss_kib(f->h->pid);
			if (kib > f->peak_kib)
				f->peak_kib = kib;
			look = now + 10;
		}
		if (zmq_send(f->socks[f->sent % f->nsocks], f->msg, f->len,
			ZMQ_DONTWAIT) == (int)f->len)
			f->sent++;
		else
			hx_sleep_ms(1);
	}
	atomic_store(&f->done, true);
	return NULL;
}

/* What the handler of s_round saw. */
struct s_one {
	size_t n;
	uint8_t id[SCHAKEL_ID_LEN];
};

static int
s_on_one(void *arg, const struct schakel_delivery *d)
{
	struct s_one *o = arg;

	o->n++;
	memcpy(o->id, d->message_id, SCHAKEL_ID_LEN);
	return 0;
}

/* One message from the sender to team-a, received and acknowledged;
 * returns how long that took in ms. */
static uint64_t
s_round(struct schakel_client *snd, struct schakel_client *rcv, int n)
{
	char text[32];
	struct schakel_message m;
	struct schakel_receipt r;
	struct s_one got = {0};
	uint64_t t0 = hx_mono_ms();
	size_t handed = 0;
	int rc;

	snprintf(text, sizeof text, "tijdens %d", n);
	m = hx_msg(HX_TYPE_ONE, "zaak-0600", text);
	rc = schakel_send(snd, &m, &r);
	if (rc != SCHAKEL_OK)
		fail_msg("send %d: %s: %s", n, schakel_errname(rc),
		    schakel_client_error(snd));
	assert_int_equal(
	    schakel_receive(rcv, 1, 5000, s_on_one, &got, &handed), SCHAKEL_OK);
	assert_int_equal(handed, 1);
	assert_memory_equal(got.id, r.message_id, SCHAKEL_ID_LEN);
	schakel_receipt_clear(&r);
	return hx_mono_ms() - t0;
}

/* Builds the flood's bundle: 256 Resolves (the first a Hello when
 * `hello`). */
static void
s_flood_bundle(struct frame_bundle *fb, bool hello)
{
	for (uint64_t i = 0; i < FRAME_BUNDLE_MAX; i++) {
		struct frame f = {.corr_id = 100 + i, .kind = FRAME_RESOLVE};

		if (i == 0 && hello) {
			f.kind = FRAME_HELLO;
			snprintf(f.u.hello.protocol, sizeof f.u.hello.protocol,
			    "%s", FRAME_PROTOCOL);
			snprintf(f.u.hello.party_id, sizeof f.u.hello.party_id,
			    "%s", S_FLOODER);
			f.u.hello.bundles = true;
		} else {
			snprintf(f.u.resolve.type, sizeof f.u.resolve.type,
			    "%s", S_FLOOD_TYPE);
			snprintf(f.u.resolve.case_ref,
			    sizeof f.u.resolve.case_ref, "zaak-0601");
			snprintf(f.u.resolve.purpose,
			    sizeof f.u.resolve.purpose, "incasso");
		}
		assert_int_equal(frame_bundle_add(fb, &f), SCHAKEL_OK);
	}
}

/* A client floods the broker with bundles of requests and never reads
 * what comes back, S_FLOOD_BUNDLES times, while the sender and team-a trade
 * messages through the broker as they can.  The broker's memory stays
 * under S_RSS_MAX_KIB, the flooder's session is dropped with the line
 * an operator acts on and a `disconnected` record, and the others get
 * through, during the flood and after it. */
static void
s_flood(struct hx *h, enum s_flood_kind kind)
{
	static const char *const audit[] = {
	    "audit", "export", "--party", S_FLOODER, "--json", NULL};
	struct s_flood f = {.h = h};
	struct frame_bundle fb = {0};
	struct schakel_client *snd = NULL, *rcv = NULL;
	uint64_t t0, worst = 0, took;
	pthread_t th;
	char log[320], out[16384];
	long rest_kib = s_rss_kib(h->pid);
	int rounds = 0;

	s_log_path(h, log, sizeof log);
	assert_int_equal(hx_connect(h, HX_SENDER, 5000, &snd), SCHAKEL_OK);
	assert_int_equal(hx_connect(h, HX_TEAM_A, 5000, &rcv), SCHAKEL_OK);
	(void)s_round(snd, rcv, rounds++);
	/* The flooder's ZeroMQ takes in 4 messages ahead of it, not 1,000
	 * (256 MiB of bundles), so the broker meets the client's not
	 * reading within the flood. */
	f.nsocks = kind == S_KIND_CONNECTIONS ? S_CONNS : 1;
	for (size_t i = 0; i < f.nsocks; i++) {
		f.socks[i] = hx_raw_open(h, S_FLOODER, NULL, 0, 4);
		assert_non_null(f.socks[i]);
		s_hello(f.socks[i], S_FLOODER, kind != S_KIND_PLAIN);
	}
	s_flood_bundle(&fb, kind == S_KIND_HELLO_AGAIN);
	assert_true(frame_bundle_finish(&fb, &f.msg, &f.len));
	/* The premise: what the flooder asks is answered, not refused. */
	{
		struct frame req = {.corr_id = 2, .kind = FRAME_RESOLVE}, rep;

		snprintf(req.u.resolve.type, sizeof req.u.resolve.type, "%s",
		    S_FLOOD_TYPE);
		snprintf(req.u.resolve.case_ref, sizeof req.u.resolve.case_ref,
		    "zaak-0601");
		snprintf(req.u.resolve.purpose, sizeof req.u.resolve.purpose,
		    "incasso");
		assert_int_equal(
		    hx_raw_request(f.socks[0], &req, &rep, 5000), 0);
		assert_int_equal(rep.kind, FRAME_RESOLVED);
		assert_int_equal(rep.u.resolved.n_recipients, 3);
		frame_clear(&rep);
	}

	t0 = hx_mono_ms();
	assert_int_equal(pthread_create(&th, NULL, s_flood_run, &f), 0);
	while (!atomic_load(&f.done)) {
		took = s_round(snd, rcv, rounds++);
		worst = took > worst ? took : worst;
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	took = s_round(snd, rcv, rounds++);
	worst = took > worst ? took : worst;
	print_message("%llu bundles of %d frames in %llu ms; the broker's "
		      "RSS %ld KiB before, %ld KiB at most; %d messages "
		      "through meanwhile, the slowest in %llu ms\n",
	    (unsigned long long)f.sent, FRAME_BUNDLE_MAX,
	    (unsigned long long)(hx_mono_ms() - t0), rest_kib, f.peak_kib,
	    rounds, (unsigned long long)worst);

	assert_int_equal(f.sent, S_FLOOD_BUNDLES);
	assert_true(f.peak_kib > 0);
	assert_true(!HX_RSS_CHECKED ||
	    f.peak_kib < (kind == S_KIND_CONNECTIONS ? S_RSS_MAX_CONNS_KIB
						     : S_RSS_MAX_KIB));
	/* Without bundles each reply is a message, and the messages one
	 * connection may have waiting (TRANSPORT_SNDHWM) bound it first:
	 * with the broker's own inbound queue, some 15 MiB over its memory
	 * at rest (a queue of 100,000 messages took 49 MiB). */
	if (kind == S_KIND_PLAIN)
		assert_true(
		    !HX_RSS_CHECKED || f.peak_kib - rest_kib < S_PLAIN_MAX_KIB);
	assert_true(rounds >= 3);
	assert_true(tu_file_has(log, "slow consumer: party=" S_FLOODER));
	assert_true(tu_file_has(log, S_SLOW_LINE));
	assert_true(tu_lines_with(log,
			"disconnected party=" S_FLOODER
			" reason=slow consumer") >= (int)f.nsocks);
	assert_int_equal(
	    hx_schakelctl(h, s_schakelctl, out, sizeof out, audit), 0);
	assert_non_null(strstr(out, "\"event\":\"disconnected\""));
	/* Warned of once a minute, however often it says Hello again. */
	assert_int_equal(tu_lines_with(log, S_SLOW_LINE), 1);
	/* Nobody else was taken for one. */
	assert_false(tu_file_has(log, "slow consumer: party=" HX_SENDER));
	assert_false(tu_file_has(log, "slow consumer: party=" HX_TEAM_A));
	assert_false(tu_file_has(log, "disconnected party=" HX_SENDER));
	assert_false(tu_file_has(log, "disconnected party=" HX_TEAM_A));

	for (size_t i = 0; i < f.nsocks; i++)
		hx_raw_close(&f.socks[i]);
	schakel_close(&snd);
	schakel_close(&rcv);
	frame_bundle_free(&fb);
}

static void
t_flood_bundles(void **state)
{
	s_flood(*state, S_KIND_BUNDLES);
}

/* A Hello in every bundle (the first 50 make sessions, then 10 a
 * second; the rest are refused RATE_LIMITED): each session replaces the
 * one before it on the same connection, whose replies ZeroMQ still
 * holds.  What sessions leave behind counts for their party, so the
 * ones that follow are dropped all the same. */
static void
t_flood_hello_again(void **state)
{
	s_flood(*state, S_KIND_HELLO_AGAIN);
}

/* Several connections of the flooder at once, each left open once its
 * session is dropped (the broker cannot close one): what they hold
 * together is bounded for the party, not only for each. */
static void
t_flood_connections(void **state)
{
	s_flood(*state, S_KIND_CONNECTIONS);
}

/* Without bundles every reply is a ZeroMQ message of its own: the
 * connection's queue fills (8,192 messages) before its bytes reach the
 * bound, and that drops the session too. */
static void
t_flood_plain(void **state)
{
	s_flood(*state, S_KIND_PLAIN);
}

/* The slow reader: more than credit's worth of messages larger than
 * 64 MiB / 1,024, so that the deliveries a full credit allows (96 MiB)
 * are more than the bound on what a client may leave unread.  At least
 * as many cases as credit, so that all of it can be in flight at once
 * (one message a case). */
#define S_SLOW_N 1200
#define S_SLOW_CASES 1024
#define S_SLOW_SIZE (96 * 1024)

/* What the slow reader has had, by message index. */
struct s_read {
	uint8_t (*ids)[SCHAKEL_ID_LEN]; /* by index, as sent */
	bool seen[S_SLOW_N];
	long last[S_SLOW_CASES]; /* per case, the last index had; -1 */
	size_t got;
};

/* Takes one Deliver: the message is one sent, had once, after those
 * before it on its case; acknowledged, and its credit granted again. */
static void
s_take_deliver(void *sock, struct s_read *r, const struct frame *f)
{
	const struct frame_deliver *d = &f->u.deliver;
	struct frame ack = {.kind = FRAME_ACK}, credit = {.kind = FRAME_CREDIT};
	struct env *e = NULL;
	long i;

	assert_int_equal(d->delivery_count, 1);
	assert_int_equal(
	    env_decode(d->envelope.data, d->envelope.len, 0, &e), SCHAKEL_OK);
	for (i = 0; i < S_SLOW_N; i++)
		if (memcmp(r->ids[i], env_header(e)->id, SCHAKEL_ID_LEN) == 0)
			break;
	assert_true(i < S_SLOW_N);
	assert_false(r->seen[i]);
	assert_true(r->last[i % S_SLOW_CASES] < i);
	r->seen[i] = true;
	r->last[i % S_SLOW_CASES] = i;
	r->got++;
	ack.u.ack.store_seq = d->store_seq;
	memcpy(ack.u.ack.message_id, env_header(e)->id, ENV_ID_LEN);
	env_destroy(&e);
	credit.u.credit = 1;
	assert_int_equal(hx_raw_send(sock, &ack), 0);
	assert_int_equal(hx_raw_send(sock, &credit), 0);
}

/* Takes one frame sent to the reader. */
static void
s_take_frame(void *sock, struct s_read *r, const uint8_t *p, size_t len)
{
	struct frame f;

	assert_int_equal(frame_decode(p, len, 0, &f), SCHAKEL_OK);
	if (f.kind == FRAME_DELIVER) {
		s_take_deliver(sock, r, &f);
	} else if (f.kind == FRAME_PING) {
		struct frame pong = {.kind = FRAME_PONG};
		pong.u.ping_ms = f.u.ping_ms;
		assert_int_equal(hx_raw_send(sock, &pong), 0);
	} else if (f.kind == FRAME_BUNDLE) {
		struct frame_bytes in;
		size_t off = 0;
		while (frame_bundle_next(&f.u.bundle, &off, &in))
			s_take_frame(sock, r, in.data, in.len);
	} else {
		fail_msg("the reader got a frame of kind %d", (int)f.kind);
	}
	frame_clear(&f);
}

/* A recipient that grants all the credit it may and then does not read
 * for two seconds, then reads one message a millisecond: the broker
 * holds its deliveries back while ZeroMQ holds 4 MiB for it, never
 * drops it, and it gets every message once (delivery count 1), in
 * order per case.  Without the hold-back, a credit's worth of these
 * messages (96 MiB) would wait in ZeroMQ and the reader would be taken
 * for a slow consumer. */
static void
t_slow_reader(void **state)
{
	struct hx *h = *state;
	struct schakel_client *snd = NULL;
	struct schakel_message *m = calloc(S_SLOW_N, sizeof *m);
	struct schakel_receipt *rs = calloc(S_SLOW_N, sizeof *rs);
	int *results = calloc(S_SLOW_N, sizeof *results);
	char(*cases)[32] = calloc(S_SLOW_CASES, sizeof *cases);
	uint8_t *payload = malloc(S_SLOW_SIZE);
	struct s_read *r = calloc(1, sizeof *r);
	struct frame credit = {.kind = FRAME_CREDIT};
	uint64_t t0, until;
	long peak_kib = 0, peak_anon = 0;
	char log[320];
	void *sock;

	assert_non_null(m);
	assert_non_null(rs);
	assert_non_null(results);
	assert_non_null(cases);
	assert_non_null(payload);
	assert_non_null(r);
	r->ids = calloc(S_SLOW_N, SCHAKEL_ID_LEN);
	assert_non_null(r->ids);
	s_log_path(h, log, sizeof log);
	memset(payload, 'x', S_SLOW_SIZE);
	for (size_t c = 0; c < S_SLOW_CASES; c++) {
		snprintf(cases[c], sizeof cases[c], "zaak-traag-%04zu", c);
		r->last[c] = -1;
	}
	for (size_t i = 0; i < S_SLOW_N; i++) {
		m[i] = hx_msg(HX_TYPE_ONE, cases[i % S_SLOW_CASES], "");
		m[i].payload = payload;
		m[i].payload_len = S_SLOW_SIZE;
	}
	t0 = hx_mono_ms();
	assert_int_equal(hx_connect(h, HX_SENDER, 20000, &snd), SCHAKEL_OK);
	for (size_t i = 0; i < S_SLOW_N; i += 1024) {
		size_t n = S_SLOW_N - i < 1024 ? S_SLOW_N - i : 1024;
		int rc = schakel_send_batch(snd, m + i, n, rs + i, results + i);
		if (rc != SCHAKEL_OK)
			fail_msg("send_batch: %s: %s", schakel_errname(rc),
			    schakel_client_error(snd));
	}
	for (size_t i = 0; i < S_SLOW_N; i++) {
		memcpy(r->ids[i], rs[i].message_id, SCHAKEL_ID_LEN);
		schakel_receipt_clear(&rs[i]);
	}
	schakel_close(&snd);
	print_message("sent %d messages of %d KiB in %llu ms\n", S_SLOW_N,
	    S_SLOW_SIZE / 1024, (unsigned long long)(hx_mono_ms() - t0));

	/* Its ZeroMQ takes in one message ahead of it. */
	sock = hx_raw_open(h, HX_TEAM_A, NULL, 0, 1);
	assert_non_null(sock);
	s_hello(sock, HX_TEAM_A, true);
	credit.u.credit = 1024;
	assert_int_equal(hx_raw_send(sock, &credit), 0);
	until = hx_mono_ms() + 2000;
	while (hx_mono_ms() < until) {
		long kib = s_rss_kib(h->pid);
		long anon = hx_status_kib(h->pid, "RssAnon:");
		peak_kib = kib > peak_kib ? kib : peak_kib;
		peak_anon = anon > peak_anon ? anon : peak_anon;
		hx_sleep_ms(20);
	}

	t0 = hx_mono_ms();
	until = t0 + 60000;
	while (r->got < S_SLOW_N && hx_mono_ms() < until) {
		zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
		zmq_msg_t msg;

		if (zmq_poll(&it, 1, 1000) <= 0)
			continue;
		zmq_msg_init(&msg);
		assert_true(zmq_msg_recv(&msg, sock, 0) >= 0);
		s_take_frame(sock, r, zmq_msg_data(&msg), zmq_msg_size(&msg));
		zmq_msg_close(&msg);
		hx_sleep_ms(1);
	}
	print_message("read %zu of %d messages in %llu ms after a pause of 2 "
		      "s; the broker's RSS at most %ld KiB in the pause, %ld "
		      "KiB of it not the store's\n",
	    r->got, S_SLOW_N, (unsigned long long)(hx_mono_ms() - t0), peak_kib,
	    peak_anon);
	assert_int_equal(r->got, S_SLOW_N);
	assert_false(tu_file_has(log, S_SLOW_LINE));
	assert_false(tu_file_has(log, "disconnected party=" HX_TEAM_A));
	hx_raw_close(&sock);
	free(r->ids);
	free(r);
	free(payload);
	free(cases);
	free(results);
	free(rs);
	free(m);
}

int
main(int argc, char **argv)
{
#define S_T(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown)
	const struct CMUnitTest tests[] = {
	    S_T(t_flood_bundles),
	    S_T(t_flood_hello_again),
	    S_T(t_flood_plain),
	    S_T(t_flood_connections),
	    S_T(t_slow_reader),
	};
	int rc;
#undef S_T

	if (argc != 3) {
		fprintf(stderr, "usage: %s SCHAKELD SCHAKELCTL\n", argv[0]);
		return 2;
	}
	s_schakeld = argv[1];
	s_schakelctl = argv[2];
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(s_yaml);
	return rc;
}
