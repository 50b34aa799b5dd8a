/* Integration tests of what a client may do to the delivery state with
 * Acks and Nacks from where the protocol lets it send them: on another
 * connection of its party (docs/protocol.md 11.1), or after the ack
 * timeout put the delivery back; frames no well-behaved client sends,
 * around a Hello and in bundles; and connections of a party that never
 * say Hello and never read.  Each test starts its own broker (ack
 * timeout 2 s, four deliveries before a dead letter). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "keys.h"

#include "env.h"
#include "frame.h"
#include "harness.h"
#include "schakel.h"
#include "testutil.h"

static const char *s_schakeld;

static int
s_setup(void **state)
{
	const char *yaml =
	    hx_yaml_limits("    ack_timeout: 2s\n    max_deliveries: 4\n");
	struct hx *h = yaml != NULL ? hx_new(s_schakeld, yaml) : NULL;

	*state = h;
	return h != NULL ? 0 : -1;
}

static int
s_teardown(void **state)
{
	struct hx *h = *state;

	return hx_destroy(&h) == 0 ? 0 : -1;
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

static int
s_raw_credit(void *raw, uint32_t n)
{
	struct frame f = {.kind = FRAME_CREDIT};

	f.u.credit = n;
	return hx_raw_send(raw, &f);
}

static int
s_raw_ackn(void *raw, uint64_t seq, const uint8_t *id, bool nack, int code)
{
	struct frame f = {.kind = nack ? FRAME_NACK : FRAME_ACK};

	f.u.ack.store_seq = seq;
	memcpy(f.u.ack.message_id, id, ENV_ID_LEN);
	f.u.ack.code = nack ? (uint32_t)code : 0;
	return hx_raw_send(raw, &f);
}

static void
s_raw_ping(void *raw)
{
	struct frame f = {.kind = FRAME_PING, .corr_id = 999};

	f.u.ping_ms = 1;
	(void)hx_raw_send(raw, &f);
}

/* Deliveries seen on a raw connection. */
struct s_seen {
	size_t n;
	uint64_t seq[32];
	uint32_t count[32];
	uint64_t at_ms[32]; /* since the start of the watch */
};

/* Watches `raw` for `ms`, noting every Deliver; Pings `keep` (and raw)
 * every 500 ms so that neither session runs out of heartbeats. */
static void
s_watch(void *raw, void *keep, long ms, struct s_seen *seen)
{
	uint64_t t0 = hx_mono_ms(), end = t0 + (uint64_t)ms, ping = 0;

	while (hx_mono_ms() < end) {
		struct frame f;

		if (hx_mono_ms() >= ping) {
			s_raw_ping(raw);
			if (keep != NULL)
				s_raw_ping(keep);
			ping = hx_mono_ms() + 500;
		}
		if (hx_raw_recv(raw, &f, 100) != 0)
			continue;
		if (f.kind == FRAME_DELIVER && seen->n < 32) {
			seen->seq[seen->n] = f.u.deliver.store_seq;
			seen->count[seen->n] = f.u.deliver.delivery_count;
			seen->at_ms[seen->n] = hx_mono_ms() - t0;
			seen->n++;
		}
		frame_clear(&f);
	}
}

static void
s_print(const char *what, const struct s_seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		print_message("%s: Deliver seq=%llu count=%u at +%llu ms\n",
		    what, (unsigned long long)s->seq[i], s->count[i],
		    (unsigned long long)s->at_ms[i]);
}

/* An Ack of team-a's message taken on team-a's second connection (the
 * protocol: "Acks of the party's messages are taken on any of its
 * connections").  The receiving connection still has it in flight: its
 * case stays blocked for the ack timeout, and then the acknowledged
 * message is delivered again (it is still stored for team-b and team-c). */
static void
t_ack_on_other_connection(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m1 = hx_msg(HX_TYPE_ALL, "zaak-rb1", "een");
	struct schakel_message m2 = hx_msg(HX_TYPE_ALL, "zaak-rb1", "twee");
	struct schakel_receipt r1, r2;
	struct s_seen first = {0}, after = {0};
	void *ra, *rb;
	bool r1_again = false, r2_seen = false;
	uint64_t r2_at = 0;

	assert_int_equal(hx_connect(h, HX_SENDER, 5000, &a), SCHAKEL_OK);
	s_send_ok(a, &m1, &r1);
	s_send_ok(a, &m2, &r2);
	ra = hx_raw_connect(h, HX_TEAM_A);
	rb = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(ra);
	assert_non_null(rb);
	assert_int_equal(s_raw_credit(ra, 2), 0);
	s_watch(ra, rb, 700, &first);
	s_print("receiving connection, before the ack", &first);
	/* The Ack goes on the other connection. */
	assert_int_equal(
	    s_raw_ackn(rb, r1.store_seq, r1.message_id, false, 0), 0);
	s_watch(ra, rb, 4500, &after);
	s_print("receiving connection, after the ack elsewhere", &after);
	for (size_t i = 0; i < after.n; i++) {
		if (after.seq[i] == r1.store_seq)
			r1_again = true;
		if (after.seq[i] == r2.store_seq && !r2_seen) {
			r2_seen = true;
			r2_at = after.at_ms[i];
		}
	}
	hx_raw_close(&ra);
	hx_raw_close(&rb);
	schakel_close(&a);
	assert_int_equal(first.n, 1);
	assert_int_equal(first.seq[0], r1.store_seq);
	/* Acknowledged: it must not come again. */
	assert_false(r1_again);
	/* Its case is free: the next message comes at once. */
	assert_true(r2_seen);
	assert_true(r2_at < 1000);
	schakel_receipt_clear(&r1);
	schakel_receipt_clear(&r2);
}

/* The same with a permanent Nack on the other connection: the message
 * is dead-lettered, and then delivered again to the receiving one. */
static void
t_nack_on_other_connection(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m1 = hx_msg(HX_TYPE_ALL, "zaak-rb2", "drie");
	struct schakel_receipt r1;
	struct s_seen first = {0}, after = {0};
	void *ra, *rb;
	bool again = false;

	assert_int_equal(hx_connect(h, HX_SENDER, 5000, &a), SCHAKEL_OK);
	s_send_ok(a, &m1, &r1);
	ra = hx_raw_connect(h, HX_TEAM_A);
	rb = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(ra);
	assert_non_null(rb);
	assert_int_equal(s_raw_credit(ra, 2), 0);
	s_watch(ra, rb, 700, &first);
	assert_int_equal(s_raw_ackn(rb, r1.store_seq, r1.message_id, true,
			     SCHAKEL_E_BAD_SIGNATURE),
	    0);
	s_watch(ra, rb, 4500, &after);
	s_print(
	    "receiving connection, after a permanent nack elsewhere", &after);
	for (size_t i = 0; i < after.n; i++)
		if (after.seq[i] == r1.store_seq)
			again = true;
	hx_raw_close(&ra);
	hx_raw_close(&rb);
	schakel_close(&a);
	assert_int_equal(first.n, 1);
	/* A dead letter is not delivered. */
	assert_false(again);
	schakel_receipt_clear(&r1);
}

/* A recipient whose handler takes longer than the ack timeout, with no
 * credit left meanwhile (credit 1 at a time), acknowledges late: the Ack
 * is taken (the entry is still queued), but the broker had put the
 * delivery back among the session's held entries and hands it out again
 * at the next Credit, acknowledged as it is. */
static int
s_no_message(void *arg, const struct schakel_delivery *d)
{
	(void)d;
	(*(int *)arg)++;
	return 0;
}

static void
s_on_notice(void *arg, const struct schakel_notice *n)
{
	int *delivered = arg;

	if (n->kind == SCHAKEL_NOTICE_DELIVERED)
		(*delivered)++;
}

static void
t_late_ack(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m1 = hx_msg(HX_TYPE_ALL, "zaak-rb3", "laat");
	struct schakel_receipt r1;
	struct s_seen first = {0}, after = {0};
	void *ra;
	bool again = false;
	int delivered = 0, msgs = 0;
	size_t handed = 0;
	uint64_t end;

	m1.notify_delivered = true;
	assert_int_equal(hx_connect(h, HX_SENDER, 5000, &a), SCHAKEL_OK);
	schakel_set_notice_handler(a, s_on_notice, &delivered);
	s_send_ok(a, &m1, &r1);
	ra = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(ra);
	assert_int_equal(s_raw_credit(ra, 1), 0);
	/* The handler works for 3 s (the ack timeout is 2 s). */
	s_watch(ra, NULL, 3000, &first);
	assert_int_equal(
	    s_raw_ackn(ra, r1.store_seq, r1.message_id, false, 0), 0);
	s_watch(ra, NULL, 500, &after);
	assert_int_equal(s_raw_credit(ra, 1), 0);
	s_watch(ra, NULL, 1500, &after);
	s_print("after a late ack and a new credit", &after);
	for (size_t i = 0; i < after.n; i++)
		if (after.seq[i] == r1.store_seq)
			again = true;
	/* The client filters the repeat by id and acknowledges it again. */
	if (again)
		assert_int_equal(
		    s_raw_ackn(ra, r1.store_seq, r1.message_id, false, 0), 0);
	end = hx_mono_ms() + 2000;
	while (hx_mono_ms() < end)
		assert_int_equal(
		    schakel_receive(a, 1, 200, s_no_message, &msgs, &handed),
		    SCHAKEL_OK);
	print_message("the sender got %d DELIVERED notices for one "
		      "recipient\n",
	    delivered);
	hx_raw_close(&ra);
	schakel_close(&a);
	assert_int_equal(first.n, 1);
	assert_int_equal(delivered, 1);
	assert_false(again);
	schakel_receipt_clear(&r1);
}

static void
s_hello_frame(struct frame *f, const char *party, uint64_t corr)
{
	memset(f, 0, sizeof *f);
	f->corr_id = corr;
	f->kind = FRAME_HELLO;
	snprintf(f->u.hello.protocol, sizeof f->u.hello.protocol, "%s",
	    FRAME_PROTOCOL);
	snprintf(f->u.hello.party_id, sizeof f->u.hello.party_id, "%s", party);
	f->u.hello.bundles = true;
}

/* Reads what comes on `raw` for `ms` (bundles opened): the kinds and
 * corr_ids of the replies, Deliver seqs. */
struct s_replies {
	size_t n;
	int kind[512];
	uint64_t corr[512];
	uint32_t code[512];
	uint64_t seq[512];
};

static void
s_take(struct s_replies *r, const uint8_t *p, size_t len)
{
	struct frame f;

	if (frame_decode(p, len, 0, &f) != SCHAKEL_OK)
		return;
	if (f.kind == FRAME_BUNDLE) {
		struct frame_bytes in;
		size_t off = 0;
		while (frame_bundle_next(&f.u.bundle, &off, &in))
			s_take(r, in.data, in.len);
	} else if (r->n < 512) {
		r->kind[r->n] = f.kind;
		r->corr[r->n] = f.corr_id;
		r->code[r->n] = f.kind == FRAME_REFUSAL ? f.u.refusal.code : 0;
		r->seq[r->n] =
		    f.kind == FRAME_DELIVER ? f.u.deliver.store_seq : 0;
		r->n++;
	}
	frame_clear(&f);
}

static void
s_read_for(void *raw, long ms, struct s_replies *r)
{
	uint64_t end = hx_mono_ms() + (uint64_t)ms;

	while (hx_mono_ms() < end) {
		zmq_pollitem_t it = {raw, 0, ZMQ_POLLIN, 0};
		zmq_msg_t m;

		if (zmq_poll(&it, 1, 50) <= 0)
			continue;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, raw, 0) >= 0)
			s_take(r, zmq_msg_data(&m), zmq_msg_size(&m));
		zmq_msg_close(&m);
	}
}

static int
s_send_bundle(void *raw, struct frame_bundle *fb)
{
	const uint8_t *p;
	size_t n;
	int rc;

	assert_true(frame_bundle_finish(fb, &p, &n));
	rc = zmq_send(raw, p, n, 0) == (int)n ? 0 : -1;
	frame_bundle_reset(fb);
	return rc;
}

/* The sender's notices, by kind. */
struct s_notes {
	int delivered, dead;
};

static void
s_count_notice(void *arg, const struct schakel_notice *n)
{
	struct s_notes *ns = arg;

	if (n->kind == SCHAKEL_NOTICE_DELIVERED)
		ns->delivered++;
	else if (n->kind == SCHAKEL_NOTICE_DEAD_LETTERED)
		ns->dead++;
}

/* A permanent Nack and then an Ack of the same delivery in one bundle:
 * the dead letter waits in the broker's transaction until the end of
 * the turn, and the Ack found the message still queued as stored, so
 * the sender heard both DEAD_LETTERED and DELIVERED.  The dead letter
 * now marks the entry taken in the open group, and the Ack is not
 * taken. */
static void
t_nack_then_ack(void **state)
{
	struct hx *h = *state;
	struct schakel_client *a = NULL;
	struct schakel_message m1 = hx_msg(HX_TYPE_ONE, "zaak-rb5", "twee");
	struct schakel_receipt r1;
	struct s_seen first = {0};
	struct frame_bundle fb = {0};
	struct s_notes ns = {0};
	const uint8_t *p;
	size_t n, handed;
	int msgs = 0;
	uint64_t end;
	void *ra;

	m1.notify_delivered = true;
	assert_int_equal(hx_connect(h, HX_SENDER, 5000, &a), SCHAKEL_OK);
	schakel_set_notice_handler(a, s_count_notice, &ns);
	s_send_ok(a, &m1, &r1);
	ra = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(ra);
	assert_int_equal(s_raw_credit(ra, 4), 0);
	s_watch(ra, NULL, 700, &first);
	assert_int_equal(first.n, 1);
	for (int i = 0; i < 2; i++) {
		struct frame f = {.kind = i == 0 ? FRAME_NACK : FRAME_ACK};
		f.u.ack.store_seq = r1.store_seq;
		memcpy(f.u.ack.message_id, r1.message_id, ENV_ID_LEN);
		f.u.ack.code = i == 0 ? SCHAKEL_E_BAD_SIGNATURE : 0;
		assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
	}
	assert_true(frame_bundle_finish(&fb, &p, &n));
	assert_int_equal(zmq_send(ra, p, n, 0), (int)n);
	frame_bundle_free(&fb);
	end = hx_mono_ms() + 2500;
	while (hx_mono_ms() < end)
		assert_int_equal(
		    schakel_receive(a, 1, 200, s_no_message, &msgs, &handed),
		    SCHAKEL_OK);
	print_message("the sender heard DEAD_LETTERED %d, DELIVERED %d\n",
	    ns.dead, ns.delivered);
	hx_raw_close(&ra);
	schakel_close(&a);
	schakel_receipt_clear(&r1);
	assert_int_equal(ns.dead, 1);
	assert_int_equal(ns.delivered, 0);
}

/* Odd but well-formed traffic in bundles: the same envelope three times
 * around a Hello, another with the same id; credit of 0 and UINT32_MAX,
 * acks and nacks of nothing, of the same message 200 times, nack and ack
 * of it together.  The broker answers and stays up (run it under
 * -Dsanitize=true too). */
static void
t_odd_frames(void **state)
{
	struct hx *h = *state;
	uint8_t id[ENV_ID_LEN];
	struct codec_buf e1 = {0}, e2 = {0};
	struct frame_bundle fb = {0};
	struct frame f;
	static struct s_replies rs, rr, rr2;
	void *snd, *rcv;
	uint64_t seq = 0;

	env_new_id(id);
	assert_int_equal(hx_envelope(h, id, "zaak-rb4", "een", &e1), 0);
	assert_int_equal(hx_envelope(h, id, "zaak-rb4", "anders", &e2), 0);
	snd = hx_raw_connect(h, HX_SENDER);
	assert_non_null(snd);
	for (uint64_t c = 1; c <= 6; c++) {
		memset(&f, 0, sizeof f);
		f.corr_id = c;
		f.kind = FRAME_SUBMIT;
		f.u.submit.data = (c == 5 ? &e2 : &e1)->data;
		f.u.submit.len = (c == 5 ? &e2 : &e1)->len;
		if (c == 3)
			s_hello_frame(&f, HX_SENDER, 3);
		assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
	}
	/* A bundle inside the bundle. */
	{
		struct frame_bundle in = {0};
		const uint8_t *p;
		size_t n;
		memset(&f, 0, sizeof f);
		f.kind = FRAME_PING;
		f.corr_id = 77;
		assert_int_equal(frame_bundle_add(&in, &f), SCHAKEL_OK);
		f.corr_id = 78;
		assert_int_equal(frame_bundle_add(&in, &f), SCHAKEL_OK);
		assert_true(frame_bundle_finish(&in, &p, &n));
		assert_int_equal(frame_bundle_add_raw(&fb, p, n), SCHAKEL_OK);
		frame_bundle_free(&in);
	}
	assert_int_equal(s_send_bundle(snd, &fb), 0);
	s_read_for(snd, 1500, &rs);
	for (size_t i = 0; i < rs.n; i++)
		print_message("sender: kind=%d corr=%llu code=%u\n", rs.kind[i],
		    (unsigned long long)rs.corr[i], rs.code[i]);

	rcv = hx_raw_connect(h, HX_TEAM_A);
	assert_non_null(rcv);
	{
		uint64_t seqs[] = {0, 1, 2, UINT64_MAX, 123456789};
		memset(&f, 0, sizeof f);
		f.kind = FRAME_CREDIT;
		f.u.credit = UINT32_MAX;
		assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
		f.u.credit = 0;
		assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
		f.u.credit = UINT32_MAX;
		assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
		for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
			memset(&f, 0, sizeof f);
			f.kind = i % 2 ? FRAME_NACK : FRAME_ACK;
			f.u.ack.store_seq = seqs[i];
			f.u.ack.code = i % 2 ? UINT32_MAX : 0;
			memset(f.u.ack.message_id, (int)i, ENV_ID_LEN);
			assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
		}
	}
	assert_int_equal(s_send_bundle(rcv, &fb), 0);
	s_read_for(rcv, 1500, &rr);
	for (size_t i = 0; i < rr.n; i++) {
		print_message("receiver: kind=%d corr=%llu code=%u seq=%llu\n",
		    rr.kind[i], (unsigned long long)rr.corr[i], rr.code[i],
		    (unsigned long long)rr.seq[i]);
		if (rr.kind[i] == FRAME_DELIVER)
			seq = rr.seq[i];
	}
	assert_true(seq != 0);
	/* The same Ack 200 times, then a retryable and a permanent Nack
	 * and an Ack of it, in one bundle. */
	for (int i = 0; i < 204; i++) {
		memset(&f, 0, sizeof f);
		f.kind = i == 200 || i == 201 ? FRAME_NACK : FRAME_ACK;
		f.u.ack.code = i == 200 ? SCHAKEL_E_UNAVAILABLE
		    : i == 201          ? SCHAKEL_E_BAD_SIGNATURE
					: 0;
		f.u.ack.store_seq = seq;
		memcpy(f.u.ack.message_id, id, ENV_ID_LEN);
		assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
	}
	assert_int_equal(s_send_bundle(rcv, &fb), 0);
	s_read_for(rcv, 1500, &rr2);
	for (size_t i = 0; i < rr2.n; i++)
		print_message(
		    "receiver 2: kind=%d corr=%llu code=%u seq=%llu\n",
		    rr2.kind[i], (unsigned long long)rr2.corr[i], rr2.code[i],
		    (unsigned long long)rr2.seq[i]);
	hx_raw_close(&snd);
	hx_raw_close(&rcv);
	frame_bundle_free(&fb);
	codec_buf_clear(&e1);
	codec_buf_clear(&e2);
	/* Still serving. */
	{
		struct schakel_client *a = NULL;
		struct schakel_message m =
		    hx_msg(HX_TYPE_ONE, "zaak-rb5", "nog");
		struct schakel_receipt r;
		assert_int_equal(
		    hx_connect(h, HX_SENDER, 5000, &a), SCHAKEL_OK);
		s_send_ok(a, &m, &r);
		schakel_receipt_clear(&r);
		schakel_close(&a);
	}
}

#define S_NCONN 100
#define S_BUNDLES 40

/* 100 connections of one declared party that never say Hello and never
 * read send 40 bundles of 256 Pings each: each frame is refused
 * (PROTOCOL: no session), and what the broker keeps of those refusals
 * unread must not grow with the number of connections (ZeroMQ itself
 * keeps up to 8,192 messages a connection, and does not bound how many
 * a party opens). */
static void
t_refusals_many_connections(void **state)
{
	struct hx *h = *state;
	static void *socks[S_NCONN];
	struct frame_bundle fb = {0};
	const uint8_t *msg;
	size_t len;
	long before, after = 0;

	for (int i = 0; i < FRAME_BUNDLE_MAX; i++) {
		struct frame f = {
		    .corr_id = 1 + (uint64_t)i, .kind = FRAME_PING};
		f.u.ping_ms = 1;
		assert_int_equal(frame_bundle_add(&fb, &f), SCHAKEL_OK);
	}
	assert_true(frame_bundle_finish(&fb, &msg, &len));
	print_message("bundle of %d Pings: %zu bytes\n", FRAME_BUNDLE_MAX, len);
	hx_sleep_ms(300);
	before = hx_status_kib(h->pid, "VmRSS:");
	for (int c = 0; c < S_NCONN; c++) {
		socks[c] = hx_raw_open(h, HX_TEAM_B, NULL, 0, 1);
		assert_non_null(socks[c]);
	}
	for (int k = 0; k < S_BUNDLES; k++)
		for (int c = 0; c < S_NCONN; c++)
			(void)zmq_send(socks[c], msg, len, 0);
	for (int i = 0; i < 40; i++) {
		long kib;
		hx_sleep_ms(250);
		kib = hx_status_kib(h->pid, "VmRSS:");
		if (kib > after)
			after = kib;
	}
	print_message("broker RSS: %ld KiB before, %ld KiB after %d "
		      "connections x %d bundles (%ld KiB a connection)\n",
	    before, after, S_NCONN, S_BUNDLES, (after - before) / S_NCONN);
	for (int c = 0; c < S_NCONN; c++) {
		int zero = 0;
		zmq_setsockopt(socks[c], ZMQ_LINGER, &zero, sizeof zero);
		zmq_close(socks[c]);
	}
	frame_bundle_free(&fb);
	/* Refusals to connections without a session are bounded per
	 * party (BROKER_UNSENT_OUTSIDE, some 6 MiB of the broker's memory);
	 * what remains is ZeroMQ's own, some 140 KiB a connection.  It was
	 * 121-136 MiB when every frame was answered. */
	if (HX_RSS_CHECKED)
		assert_true(after - before < 48 * 1024L);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		t_ack_on_other_connection, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_nack_on_other_connection, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_late_ack, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_nack_then_ack, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_odd_frames, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_refusals_many_connections, s_setup, s_teardown),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH-TO-SCHAKELD\n", argv[0]);
		return 2;
	}
	s_schakeld = argv[1];
	if (getenv("CMOCKA_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
