/* Unit tests of libschakel against a scripted fake broker (a CurveZMQ
 * ROUTER in a thread): a tampered delivery is refused by the library's
 * open path and never handed over, a redelivery is acknowledged without
 * the handler, an unpinned sender is refused; a send whose answer is lost
 * is submitted again byte for byte after a reconnect; ROUTE_CHANGED builds
 * a new message; a Welcome with another signing key is refused; a
 * notice not signed by the broker is refused and not handed over; a
 * frame the client cannot read still has its credit granted again; a
 * seen file keeps a redelivery from the handler across a restart; a
 * broker receipt not signed with the pinned key, or signed for another
 * message id or header, fails the send (BAD_SIGNATURE, BAD_FIELD) and
 * has a delivery refused with a Nack of that code, never handed over;
 * and env_open refuses tampered envelopes directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "env.h"
#include "frame.h"
#include "keys.h"
#include "receipt.h"
#include "schakel.h"
#include "testutil.h"

static const char *const s_parties[] = {"gemeente", "team-a", "team-b", NULL};

/* How the fake broker makes a receipt: as the broker does, or forged. */
enum s_forgery {
	S_GENUINE,
	S_SIGNED_BY_SENDER, /* signed with gemeente's key, not the broker's */
	S_OTHER_ID,         /* signed by the broker, for another message id */
	S_OTHER_HASH,       /* signed by the broker, for another header */
};

/* The fake broker and what its script found wrong. */
struct fb {
	void *ctx;
	void *sock;
	char endpoint[128];
	char dir[256];
	struct keys_secret *broker;
	struct keys_secret *sender; /* gemeente */
	struct keys_public team_a;
	pthread_t thread;
	void (*script)(struct fb *);
	char why[512]; /* first failure, "" when the script went as planned */
	/* script state */
	uint8_t peer[256];
	size_t peer_len;
	uint64_t seq;
	bool wrong_box_key; /* Resolved names another box key for team-a */
	uint64_t credits;   /* credit granted by the client so far */
	/* One message delivered again and again (t_receive_seen_file). */
	struct codec_buf kept, kept_r, fresh, fresh_r;
	uint32_t kept_count;
	/* The receipt forged for t_send_receipt_* and t_receive_receipt_*,
	 * and the code a refused delivery must be answered with. */
	enum s_forgery forgery;
	int forged_code;
	bool hello_bundles; /* the last Hello asked for bundles */
};

static uint64_t
s_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
s_fb_fail(struct fb *b, const char *what)
{
	if (b->why[0] == '\0')
		snprintf(b->why, sizeof b->why, "%s", what);
}

static void
s_fb_send(struct fb *b, const struct frame *f)
{
	struct codec_buf buf = {0};

	if (frame_encode(f, &buf) != SCHAKEL_OK) {
		s_fb_fail(b, "fake broker cannot encode");
		return;
	}
	zmq_send(b->sock, b->peer, b->peer_len, ZMQ_SNDMORE);
	zmq_send(b->sock, buf.data, buf.len, 0);
	codec_buf_clear(&buf);
}

/* Receive the next frame that is not a Ping (answered) or Credit; the
 * raw bytes of a Submit are copied to *raw when raw is not NULL.
 * Returns 0, or -1 after timeout_ms. */
static int
s_fb_recv(struct fb *b, struct frame *f, int timeout_ms, struct codec_buf *raw)
{
	uint64_t until = s_now_ms() + (uint64_t)timeout_ms;

	while (s_now_ms() < until) {
		zmq_pollitem_t it = {b->sock, 0, ZMQ_POLLIN, 0};
		zmq_msg_t id, m;

		if (zmq_poll(&it, 1, 50) <= 0)
			continue;
		zmq_msg_init(&id);
		zmq_msg_init(&m);
		zmq_msg_recv(&id, b->sock, 0);
		zmq_msg_recv(&m, b->sock, 0);
		b->peer_len = zmq_msg_size(&id);
		memcpy(b->peer, zmq_msg_data(&id), b->peer_len);
		if (frame_decode(zmq_msg_data(&m), zmq_msg_size(&m), 0, f) !=
		    SCHAKEL_OK) {
			s_fb_fail(
			    b, "fake broker got a frame it cannot decode");
			zmq_msg_close(&id);
			zmq_msg_close(&m);
			return -1;
		}
		if (raw != NULL && f->kind == FRAME_SUBMIT) {
			raw->len = f->u.submit.len;
			raw->data = malloc(raw->len);
			memcpy(raw->data, f->u.submit.data, raw->len);
		}
		zmq_msg_close(&id);
		zmq_msg_close(&m);
		if (f->kind == FRAME_PING) {
			struct frame p = {0};

			p.corr_id = f->corr_id;
			p.kind = FRAME_PONG;
			p.u.ping_ms = f->u.ping_ms;
			s_fb_send(b, &p);
			frame_clear(f);
			continue;
		}
		if (f->kind == FRAME_CREDIT) {
			b->credits += f->u.credit;
			frame_clear(f);
			continue;
		}
		return 0;
	}
	return -1;
}

/* Expect a frame of `kind`; on success the caller clears *f. */
static int
s_fb_expect(struct fb *b, enum frame_kind kind, struct frame *f,
    struct codec_buf *raw, const char *what)
{
	if (s_fb_recv(b, f, 5000, raw) != 0) {
		s_fb_fail(b, what);
		return -1;
	}
	if (f->kind != kind) {
		char msg[128];

		snprintf(
		    msg, sizeof msg, "%s: got frame %d", what, (int)f->kind);
		frame_clear(f);
		s_fb_fail(b, msg);
		return -1;
	}
	return 0;
}

static void
s_fb_welcome(struct fb *b, const uint8_t *sign_key)
{
	struct frame f, w = {0};

	if (s_fb_expect(b, FRAME_HELLO, &f, NULL, "expected Hello") != 0)
		return;
	if (strcmp(f.u.hello.party_id, "team-a") != 0 &&
	    strcmp(f.u.hello.party_id, "gemeente") != 0)
		s_fb_fail(b, "Hello names an unexpected party");
	b->hello_bundles = f.u.hello.bundles;
	w.corr_id = f.corr_id;
	frame_clear(&f);
	w.kind = FRAME_WELCOME;
	snprintf(w.u.welcome.protocol, sizeof w.u.welcome.protocol, "%s",
	    FRAME_PROTOCOL);
	snprintf(w.u.welcome.broker_id, sizeof w.u.welcome.broker_id, "fake");
	memcpy(w.u.welcome.broker_sign_key,
	    sign_key != NULL ? sign_key : b->broker->pub.sign, 32);
	w.u.welcome.server_time_ms = s_now_ms();
	w.u.welcome.heartbeat_ms = 1000;
	w.u.welcome.max_message_bytes = 1 << 20;
	w.u.welcome.max_credit = 8;
	s_fb_send(b, &w);
}

/* A signed envelope from `sender` to team-a and the broker's receipt. */
static void
s_fb_message(struct fb *b, const struct keys_secret *sender,
    const char *sender_id, const char *text, struct codec_buf *env,
    struct codec_buf *rcpt)
{
	struct env_draft *d = calloc(1, sizeof *d);
	struct env *e = NULL;
	struct receipt r;

	assert_non_null(d);
	env_new_id(d->hdr.id);
	snprintf(d->hdr.sender, sizeof d->hdr.sender, "%s", sender_id);
	snprintf(d->hdr.type, sizeof d->hdr.type, "shv.melding.v1");
	snprintf(d->hdr.case_ref, sizeof d->hdr.case_ref, "zaak-1");
	snprintf(d->hdr.purpose, sizeof d->hdr.purpose, "schuldhulp");
	d->hdr.created_ms = s_now_ms();
	d->hdr.expires_ms = d->hdr.created_ms + 60000;
	d->n_recipients = 1;
	snprintf(d->recipients[0].party_id, sizeof d->recipients[0].party_id,
	    "team-a");
	memcpy(d->recipients[0].box_pk, b->team_a.box, 32);
	d->payload = (const uint8_t *)text;
	d->payload_len = strlen(text);
	assert_int_equal(env_build(d, 1, sender->sign_sk, env), SCHAKEL_OK);
	assert_int_equal(env_decode(env->data, env->len, 0, &e), SCHAKEL_OK);
	memset(&r, 0, sizeof r);
	memcpy(r.message_id, d->hdr.id, ENV_ID_LEN);
	r.accepted_ms = s_now_ms();
	r.n_recipients = 1;
	snprintf(r.recipients[0], sizeof r.recipients[0], "team-a");
	snprintf(r.agreement_ids[0], sizeof r.agreement_ids[0], "schuldhulp");
	r.store_seq = ++b->seq;
	env_header_hash(e, r.header_hash);
	snprintf(r.sender, sizeof r.sender, "%s", sender_id);
	assert_int_equal(
	    receipt_build(&r, 1, b->broker->sign_sk, rcpt), SCHAKEL_OK);
	env_destroy(&e);
	free(d);
}

/* The broker's receipt for `env`, signed by the broker and naming the
 * envelope unless `how` says otherwise.  Returns 0, or -1 with the
 * failure noted. */
static int
s_fb_receipt(struct fb *b, const struct codec_buf *env, enum s_forgery how,
    struct codec_buf *out)
{
	struct env *e = NULL;
	const struct env_header *h;
	struct receipt r;

	if (env_decode(env->data, env->len, 0, &e) != SCHAKEL_OK) {
		s_fb_fail(b, "the envelope does not decode");
		return -1;
	}
	h = env_header(e);
	memset(&r, 0, sizeof r);
	memcpy(r.message_id, h->id, ENV_ID_LEN);
	r.accepted_ms = s_now_ms();
	r.n_recipients = h->n_recipients;
	for (size_t i = 0; i < h->n_recipients; i++) {
		memcpy(
		    r.recipients[i], h->recipients[i], sizeof r.recipients[i]);
		snprintf(r.agreement_ids[i], sizeof r.agreement_ids[i],
		    "schuldhulp");
	}
	r.store_seq = ++b->seq;
	env_header_hash(e, r.header_hash);
	memcpy(r.sender, h->sender, sizeof r.sender);
	env_destroy(&e);
	/* One bit off is enough: the signature still holds, only the
	 * comparison with what was sent or delivered can notice. */
	if (how == S_OTHER_ID)
		r.message_id[0] ^= 0x01;
	if (how == S_OTHER_HASH)
		r.header_hash[0] ^= 0x01;
	if (receipt_build(&r, 1,
		how == S_SIGNED_BY_SENDER ? b->sender->sign_sk
					  : b->broker->sign_sk,
		out) != SCHAKEL_OK) {
		s_fb_fail(b, "cannot build a receipt");
		return -1;
	}
	return 0;
}

static void
s_fb_deliver(struct fb *b, uint64_t seq, uint32_t count,
    const struct codec_buf *env, const struct codec_buf *rcpt)
{
	struct frame f = {0};

	f.kind = FRAME_DELIVER;
	f.u.deliver.store_seq = seq;
	f.u.deliver.delivery_count = count;
	f.u.deliver.envelope.data = env->data;
	f.u.deliver.envelope.len = env->len;
	f.u.deliver.receipt.data = rcpt->data;
	f.u.deliver.receipt.len = rcpt->len;
	s_fb_send(b, &f);
}

/* Expect an Ack (code 0) or a Nack with `code` for `seq`. */
static void
s_fb_answer(struct fb *b, uint64_t seq, int code, const char *what)
{
	struct frame f;

	if (s_fb_expect(
		b, code == 0 ? FRAME_ACK : FRAME_NACK, &f, NULL, what) != 0)
		return;
	if (f.u.ack.store_seq != seq || (int)f.u.ack.code != code) {
		char msg[160];

		snprintf(msg, sizeof msg, "%s: seq %llu code %u", what,
		    (unsigned long long)f.u.ack.store_seq,
		    (unsigned)f.u.ack.code);
		s_fb_fail(b, msg);
	}
	frame_clear(&f);
}

static void *
s_fb_main(void *arg)
{
	struct fb *b = arg;

	b->script(b);
	return NULL;
}

static int
s_setup(void **state)
{
	static struct fb b;
	struct keys_error ke;
	char path[512];
	int one = 1, linger = 0;
	size_t len;

	memset(&b, 0, sizeof b);
	if (codec_init() != SCHAKEL_OK ||
	    tu_mkdtemp(b.dir, sizeof b.dir) != 0 ||
	    tu_keys(b.dir, s_parties) != 0)
		return -1;
	snprintf(path, sizeof path, "%s/keys/broker.key", b.dir);
	b.broker = keys_secret_read(path, KEYS_BROKER, &ke);
	snprintf(path, sizeof path, "%s/keys/gemeente.key", b.dir);
	b.sender = keys_secret_read(path, KEYS_PARTY, &ke);
	snprintf(path, sizeof path, "%s/keys/team-a.pub", b.dir);
	if (b.broker == NULL || b.sender == NULL ||
	    keys_public_read(path, KEYS_PARTY, &b.team_a, &ke) != 0)
		return -1;
	/* team-b is not pinned: its .pub leaves the peers folder. */
	snprintf(path, sizeof path, "%s/keys/team-b.pub", b.dir);
	if (remove(path) != 0)
		return -1;
	b.ctx = zmq_ctx_new();
	b.sock = zmq_socket(b.ctx, ZMQ_ROUTER);
	len = sizeof b.endpoint;
	if (b.sock == NULL ||
	    zmq_setsockopt(b.sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
	    zmq_setsockopt(
		b.sock, ZMQ_CURVE_SECRETKEY, b.broker->transport_sk, 32) != 0 ||
	    zmq_setsockopt(b.sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
	    zmq_bind(b.sock, "tcp://127.0.0.1:*") != 0 ||
	    zmq_getsockopt(b.sock, ZMQ_LAST_ENDPOINT, b.endpoint, &len) != 0)
		return -1;
	*state = &b;
	return 0;
}

static int
s_teardown(void **state)
{
	struct fb *b = *state;

	zmq_close(b->sock);
	zmq_ctx_term(b->ctx);
	keys_secret_destroy(&b->broker);
	keys_secret_destroy(&b->sender);
	return tu_rmrf(b->dir);
}

static void
s_start(struct fb *b, void (*script)(struct fb *))
{
	b->why[0] = '\0';
	b->script = script;
	assert_int_equal(pthread_create(&b->thread, NULL, s_fb_main, b), 0);
}

static void
s_join(struct fb *b)
{
	assert_int_equal(pthread_join(b->thread, NULL), 0);
	if (b->why[0] != '\0')
		fail_msg("fake broker: %s", b->why);
}

static int
s_connect_seen(struct fb *b, const char *party, int timeout_ms,
    const char *seen_file, struct schakel_client **c, char *err, size_t errlen)
{
	struct schakel_client_opts o = {0};
	char key[512], peers[512];

	snprintf(key, sizeof key, "%s/keys/%s.key", b->dir, party);
	snprintf(peers, sizeof peers, "%s/keys", b->dir);
	o.endpoint = b->endpoint;
	memcpy(o.broker_transport_key, b->broker->pub.transport, 32);
	memcpy(o.broker_sign_key, b->broker->pub.sign, 32);
	o.party_id = party;
	o.key_file = key;
	o.peers_dir = peers;
	o.timeout_ms = timeout_ms;
	o.seen_file = seen_file;
	return schakel_connect(&o, c, err, errlen);
}

static int
s_connect(struct fb *b, const char *party, int timeout_ms,
    struct schakel_client **c, char *err, size_t errlen)
{
	return s_connect_seen(b, party, timeout_ms, NULL, c, err, errlen);
}

/* ---- receiving ---- */

static void
s_script_receive(struct fb *b)
{
	struct codec_buf good = {0}, good_r = {0}, bad = {0}, bad_r = {0};
	struct codec_buf stranger = {0}, stranger_r = {0};
	struct keys_secret *tb;
	struct keys_error ke;
	char path[512];

	snprintf(path, sizeof path, "%s/keys/team-b.key", b->dir);
	tb = keys_secret_read(path, KEYS_PARTY, &ke);
	if (tb == NULL) {
		s_fb_fail(b, "cannot read team-b's key");
		return;
	}
	s_fb_welcome(b, NULL);
	s_fb_message(
	    b, b->sender, "gemeente", "onderweg gewijzigd", &bad, &bad_r);
	/* Flip a ciphertext byte after signing: the receipt still names
	 * the header, so only the library's open path can catch it. */
	bad.data[bad.len - 1] ^= 0x01;
	s_fb_deliver(b, 1, 1, &bad, &bad_r);
	s_fb_answer(b, 1, SCHAKEL_E_HASH_MISMATCH, "tampered: expected Nack");
	s_fb_message(b, b->sender, "gemeente", "hallo", &good, &good_r);
	s_fb_deliver(b, 2, 1, &good, &good_r);
	s_fb_answer(b, 2, 0, "good: expected Ack");
	s_fb_deliver(b, 3, 2, &good, &good_r);
	s_fb_answer(b, 3, 0, "redelivery: expected Ack");
	s_fb_message(b, tb, "team-b", "van onbekende", &stranger, &stranger_r);
	s_fb_deliver(b, 4, 1, &stranger, &stranger_r);
	s_fb_answer(
	    b, 4, SCHAKEL_E_UNKNOWN_PARTY, "unpinned sender: expected Nack");
	codec_buf_clear(&good);
	codec_buf_clear(&good_r);
	codec_buf_clear(&bad);
	codec_buf_clear(&bad_r);
	codec_buf_clear(&stranger);
	codec_buf_clear(&stranger_r);
	keys_secret_destroy(&tb);
}

struct s_seen {
	int n;
	char text[64];
	char sender[65];
};

static int
s_on_message(void *arg, const struct schakel_delivery *d)
{
	struct s_seen *s = arg;

	s->n++;
	snprintf(s->text, sizeof s->text, "%.*s", (int)d->payload_len,
	    (const char *)d->payload);
	snprintf(s->sender, sizeof s->sender, "%s", d->sender);
	return 0;
}

static void
t_receive_refuses_and_filters(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL;
	struct s_seen seen = {0};
	char err[SCHAKEL_ERROR_MAX];
	size_t handed = 99;

	s_start(b, s_script_receive);
	assert_int_equal(
	    s_connect(b, "team-a", 2000, &c, err, sizeof err), SCHAKEL_OK);
	assert_int_equal(
	    schakel_receive(c, 0, 1500, s_on_message, &seen, &handed),
	    SCHAKEL_OK);
	s_join(b);
	assert_int_equal(handed, 1);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.text, "hallo");
	assert_string_equal(seen.sender, "gemeente");
	/* The last refusal is reported as a sentence. */
	assert_non_null(strstr(schakel_client_error(c), "UNKNOWN_PARTY"));
	schakel_close(&c);
	assert_null(c);
}

/* ---- receiving with a forged receipt ---- */

/* Delivers one message with a receipt forged as b->forgery says, which
 * must be refused with b->forged_code, then the same envelope with the
 * broker's own receipt, which must be handed over: only the receipt
 * differs, and a refusal is not remembered as seen. */
static void
s_script_forged_deliver(struct fb *b)
{
	struct codec_buf env = {0}, good = {0}, forged = {0};

	s_fb_welcome(b, NULL);
	s_fb_message(b, b->sender, "gemeente", "echt", &env, &good);
	if (s_fb_receipt(b, &env, b->forgery, &forged) == 0) {
		s_fb_deliver(b, 1, 1, &env, &forged);
		s_fb_answer(
		    b, 1, b->forged_code, "forged receipt: expected Nack");
	}
	/* Once something went wrong the client may already be gone. */
	if (b->why[0] == '\0') {
		s_fb_deliver(b, 2, 2, &env, &good);
		s_fb_answer(b, 2, 0, "the broker's receipt: expected Ack");
	}
	codec_buf_clear(&env);
	codec_buf_clear(&good);
	codec_buf_clear(&forged);
}

/* team-a receives while the fake broker runs s_script_forged_deliver
 * with `how`: the forged one must be refused with `code`, in a sentence
 * that says `words`, and never reach the handler. */
static void
s_receive_forged(struct fb *b, enum s_forgery how, int code, const char *words)
{
	struct schakel_client *c = NULL;
	struct s_seen seen = {0};
	char err[SCHAKEL_ERROR_MAX];
	size_t handed = 99;

	b->forgery = how;
	b->forged_code = code;
	s_start(b, s_script_forged_deliver);
	assert_int_equal(
	    s_connect(b, "team-a", 2000, &c, err, sizeof err), SCHAKEL_OK);
	assert_int_equal(
	    schakel_receive(c, 1, 2000, s_on_message, &seen, &handed),
	    SCHAKEL_OK);
	s_join(b);
	b->forgery = S_GENUINE;
	assert_int_equal(handed, 1);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.text, "echt");
	if (strstr(schakel_client_error(c), words) == NULL ||
	    strstr(schakel_client_error(c), schakel_errname(code)) == NULL)
		fail_msg("client error: %s", schakel_client_error(c));
	schakel_close(&c);
}

/* A delivery whose receipt is not signed with the pinned broker key is
 * refused with a Nack and not handed over. */
static void
t_receive_receipt_wrong_key(void **state)
{
	s_receive_forged(*state, S_SIGNED_BY_SENDER, SCHAKEL_E_BAD_SIGNATURE,
	    "receipt for a delivered message does not verify");
}

/* A delivery whose receipt the broker signed for another message id or
 * another header is refused with a Nack and not handed over. */
static void
t_receive_receipt_other_message(void **state)
{
	s_receive_forged(*state, S_OTHER_ID, SCHAKEL_E_BAD_FIELD,
	    "does not match its receipt");
	s_receive_forged(*state, S_OTHER_HASH, SCHAKEL_E_BAD_FIELD,
	    "does not match its receipt");
}

/* ---- the seen file ---- */

static void
s_script_kept_hello(struct fb *b)
{
	s_fb_welcome(b, NULL);
}

static void
s_script_kept(struct fb *b)
{
	s_fb_welcome(b, NULL);
	s_fb_deliver(b, 7, b->kept_count, &b->kept, &b->kept_r);
	s_fb_answer(b, 7, 0, "kept message: expected Ack");
}

/* Receives for `ms` with a new team-a client (seen file `seen`, or
 * none), while the fake broker delivers the kept message once more. */
static void
s_receive_kept(struct fb *b, const char *seen_file, int ms, struct s_seen *seen,
    size_t *handed)
{
	struct schakel_client *c = NULL;
	char err[SCHAKEL_ERROR_MAX];

	b->kept_count++;
	s_start(b, s_script_kept);
	assert_int_equal(
	    s_connect_seen(b, "team-a", 2000, seen_file, &c, err, sizeof err),
	    SCHAKEL_OK);
	assert_int_equal(
	    schakel_receive(c, 0, ms, s_on_message, seen, handed), SCHAKEL_OK);
	s_join(b);
	schakel_close(&c);
}

static long
s_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* With a seen file, a message delivered again after the client was
 * restarted (its Ack lost) is acknowledged without the handler; without
 * one it is handed over again.  A torn last record is cut off; a file
 * that is not one of ours, or one in use, is refused and left alone. */
static void
t_receive_seen_file(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL, *c2 = NULL;
	struct s_seen seen = {0};
	char file[300], other[300], err[SCHAKEL_ERROR_MAX];
	size_t handed = 99;
	FILE *f;

	snprintf(file, sizeof file, "%s/team-a.seen", b->dir);
	snprintf(other, sizeof other, "%s/notes.txt", b->dir);
	s_fb_message(b, b->sender, "gemeente", "eenmaal", &b->kept, &b->kept_r);
	b->kept_count = 0;
	s_receive_kept(b, file, 1500, &seen, &handed);
	assert_int_equal(seen.n, 1);
	assert_int_equal(handed, 1);
	assert_string_equal(seen.text, "eenmaal");
	assert_int_equal(s_file_size(file), 32); /* header and one id */

	f = fopen(file, "ab");
	assert_non_null(f);
	fputs("torn", f);
	fclose(f);
	s_receive_kept(b, file, 1500, &seen, &handed);
	assert_int_equal(seen.n, 1);
	assert_int_equal(handed, 0);
	assert_int_equal(s_file_size(file), 32);

	/* The control: a client without the file hands it over again. */
	s_receive_kept(b, NULL, 1500, &seen, &handed);
	assert_int_equal(seen.n, 2);
	assert_int_equal(handed, 1);

	f = fopen(other, "w");
	assert_non_null(f);
	fputs("boodschappen\n", f);
	fclose(f);
	assert_int_equal(
	    s_connect_seen(b, "team-a", 500, other, &c, err, sizeof err),
	    SCHAKEL_E_BAD_ARGUMENT);
	assert_null(c);
	assert_non_null(strstr(err, "not a file of message ids"));
	assert_int_equal(s_file_size(other), 13);

	/* One client at a time: the fake broker welcomes the first. */
	s_start(b, s_script_kept_hello);
	assert_int_equal(
	    s_connect_seen(b, "team-a", 2000, file, &c, err, sizeof err),
	    SCHAKEL_OK);
	s_join(b);
	assert_int_equal(
	    s_connect_seen(b, "team-a", 500, file, &c2, err, sizeof err),
	    SCHAKEL_E_BAD_ARGUMENT);
	assert_non_null(strstr(err, "in use by another client"));
	schakel_close(&c);

	/* A header a crash left as zeros (the whole 16 bytes, as delayed
	 * allocation can) is written again. */
	f = fopen(other, "wb");
	assert_non_null(f);
	for (int i = 0; i < 16; i++)
		assert_int_equal(fputc(0, f), 0);
	fclose(f);
	s_start(b, s_script_kept_hello);
	assert_int_equal(
	    s_connect_seen(b, "team-a", 2000, other, &c, err, sizeof err),
	    SCHAKEL_OK);
	s_join(b);
	schakel_close(&c);
	assert_int_equal(s_file_size(other), 16);
	codec_buf_clear(&b->kept);
	codec_buf_clear(&b->kept_r);
}

static void
s_script_kept_and_new(struct fb *b)
{
	s_fb_welcome(b, NULL);
	s_fb_deliver(b, 7, b->kept_count, &b->kept, &b->kept_r);
	s_fb_answer(b, 7, 0, "kept message: expected Ack");
	s_fb_deliver(b, 8, 1, &b->fresh, &b->fresh_r);
	s_fb_answer(b, 8, 0, "new message: expected Ack");
}

/* Writes a seen file of twice what is kept: random ids, the last one
 * `last`.  *oldest_kept gets the first id a rewrite keeps. */
static void
s_seen_fill(const char *path, const uint8_t last[ENV_ID_LEN],
    uint8_t oldest_kept[ENV_ID_LEN])
{
	uint8_t id[ENV_ID_LEN];
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	fputs("schakel-seen-v1\n", f);
	for (size_t i = 0; i < 2 * SCHAKEL_SEEN_IDS - 1; i++) {
		randombytes_buf(id, sizeof id);
		if (i == SCHAKEL_SEEN_IDS)
			memcpy(oldest_kept, id, sizeof id);
		assert_int_equal(fwrite(id, sizeof id, 1, f), 1);
	}
	assert_int_equal(fwrite(last, ENV_ID_LEN, 1, f), 1);
	fclose(f);
}

/* Record `i` of a seen file. */
static void
s_seen_at(const char *path, size_t i, uint8_t out[ENV_ID_LEN])
{
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	assert_int_equal(fseek(f, (long)((i + 1) * ENV_ID_LEN), SEEK_SET), 0);
	assert_int_equal(fread(out, ENV_ID_LEN, 1, f), 1);
	fclose(f);
}

/* Has team-a receive the kept message again and a new one, with the seen
 * file `file` filled to twice what is kept.  The kept one must not be
 * handed over, the new one must. */
static void
s_seen_full(struct fb *b, const char *file, uint8_t kept_id[ENV_ID_LEN],
    uint8_t new_id[ENV_ID_LEN], uint8_t oldest_kept[ENV_ID_LEN],
    char *err_after, size_t errlen)
{
	struct schakel_client *c = NULL;
	struct s_seen seen = {0};
	struct env *e = NULL;
	char err[SCHAKEL_ERROR_MAX];
	size_t handed = 99;

	s_fb_message(b, b->sender, "gemeente", "oud", &b->kept, &b->kept_r);
	s_fb_message(b, b->sender, "gemeente", "nieuw", &b->fresh, &b->fresh_r);
	assert_int_equal(
	    env_decode(b->kept.data, b->kept.len, 0, &e), SCHAKEL_OK);
	memcpy(kept_id, env_header(e)->id, ENV_ID_LEN);
	env_destroy(&e);
	assert_int_equal(
	    env_decode(b->fresh.data, b->fresh.len, 0, &e), SCHAKEL_OK);
	memcpy(new_id, env_header(e)->id, ENV_ID_LEN);
	env_destroy(&e);
	s_seen_fill(file, kept_id, oldest_kept);

	b->kept_count = 2;
	s_start(b, s_script_kept_and_new);
	assert_int_equal(
	    s_connect_seen(b, "team-a", 2000, file, &c, err, sizeof err),
	    SCHAKEL_OK);
	assert_int_equal(
	    schakel_receive(c, 0, 1500, s_on_message, &seen, &handed),
	    SCHAKEL_OK);
	s_join(b);
	snprintf(err_after, errlen, "%s", schakel_client_error(c));
	schakel_close(&c);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.text, "nieuw");
	/* And after a restart, still known. */
	s_receive_kept(b, file, 1500, &seen, &handed);
	assert_int_equal(seen.n, 1);
	codec_buf_clear(&b->kept);
	codec_buf_clear(&b->kept_r);
	codec_buf_clear(&b->fresh);
	codec_buf_clear(&b->fresh_r);
}

/* A seen file that has grown to twice what is kept is rewritten with the
 * newest ids, oldest first, when the next one is recorded. */
static void
t_receive_seen_file_compacts(void **state)
{
	struct fb *b = *state;
	uint8_t kept[ENV_ID_LEN], fresh[ENV_ID_LEN], oldest[ENV_ID_LEN];
	uint8_t at[ENV_ID_LEN];
	char file[300], err[SCHAKEL_ERROR_MAX];

	snprintf(file, sizeof file, "%s/compact.seen", b->dir);
	s_seen_full(b, file, kept, fresh, oldest, err, sizeof err);
	/* Header, the 65,536 kept, the new one. */
	assert_int_equal(
	    s_file_size(file), (long)(SCHAKEL_SEEN_IDS + 2) * ENV_ID_LEN);
	s_seen_at(file, 0, at);
	assert_memory_equal(at, oldest, ENV_ID_LEN);
	s_seen_at(file, SCHAKEL_SEEN_IDS - 1, at);
	assert_memory_equal(at, kept, ENV_ID_LEN);
	s_seen_at(file, SCHAKEL_SEEN_IDS, at);
	assert_memory_equal(at, fresh, ENV_ID_LEN);
}

/* When the rewrite cannot be made (here: the ".new" name is too long),
 * the file keeps growing and keeps every id. */
static void
t_receive_seen_file_rewrite_fails(void **state)
{
	struct fb *b = *state;
	uint8_t kept[ENV_ID_LEN], fresh[ENV_ID_LEN], oldest[ENV_ID_LEN];
	uint8_t at[ENV_ID_LEN];
	char name[253], file[600], err[SCHAKEL_ERROR_MAX];

	memset(name, 's', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	snprintf(file, sizeof file, "%s/%s", b->dir, name);
	s_seen_full(b, file, kept, fresh, oldest, err, sizeof err);
	if (strstr(err, "cannot rewrite") == NULL)
		fail_msg("client error: %s", err);
	assert_int_equal(
	    s_file_size(file), (long)(2 * SCHAKEL_SEEN_IDS + 2) * ENV_ID_LEN);
	s_seen_at(file, 2 * SCHAKEL_SEEN_IDS, at);
	assert_memory_equal(at, fresh, ENV_ID_LEN);
	assert_int_equal(remove(file), 0);
}

/* ---- sending ---- */

/* The message the sending tests send (to team-a by the fake broker's
 * rules). */
static struct schakel_message
s_message(void)
{
	struct schakel_message m = {0};

	m.type = "shv.melding.v1";
	m.case_ref = "zaak-1";
	m.purpose = "schuldhulp";
	m.payload = (const uint8_t *)"x";
	m.payload_len = 1;
	return m;
}

static void
s_resolved(struct fb *b)
{
	struct frame f, r = {0};

	if (s_fb_expect(b, FRAME_RESOLVE, &f, NULL, "expected Resolve") != 0)
		return;
	r.corr_id = f.corr_id;
	frame_clear(&f);
	r.kind = FRAME_RESOLVED;
	r.u.resolved.n_recipients = 1;
	snprintf(r.u.resolved.recipients[0].party_id,
	    sizeof r.u.resolved.recipients[0].party_id, "team-a");
	memcpy(r.u.resolved.recipients[0].box_key, b->team_a.box, 32);
	if (b->wrong_box_key)
		r.u.resolved.recipients[0].box_key[0] ^= 0x40;
	memcpy(r.u.resolved.recipients[0].sign_key, b->team_a.sign, 32);
	snprintf(r.u.resolved.recipients[0].agreement_id,
	    sizeof r.u.resolved.recipients[0].agreement_id, "schuldhulp");
	r.u.resolved.default_ttl_ms = 3600 * 1000;
	s_fb_send(b, &r);
}

/* Answers Submit `corr` with Accepted and a receipt made `how`. */
static void
s_accept(struct fb *b, uint64_t corr, const struct codec_buf *env,
    enum s_forgery how)
{
	struct frame a = {0};
	struct env *e = NULL;
	struct codec_buf rc = {0};

	if (env_decode(env->data, env->len, 0, &e) != SCHAKEL_OK ||
	    env_verify(e, b->sender->pub.sign, NULL) != SCHAKEL_OK) {
		s_fb_fail(b, "the submitted envelope does not verify");
		env_destroy(&e);
		return;
	}
	env_destroy(&e);
	if (s_fb_receipt(b, env, how, &rc) != 0)
		return;
	a.corr_id = corr;
	a.kind = FRAME_ACCEPTED;
	a.u.accepted.data = rc.data;
	a.u.accepted.len = rc.len;
	s_fb_send(b, &a);
	codec_buf_clear(&rc);
}

/* The first Submit goes unanswered; the client reconnects (Hello again)
 * and must send the very same bytes. */
static void
s_script_lost_answer(struct fb *b)
{
	struct frame f;
	struct codec_buf first = {0}, second = {0};

	s_fb_welcome(b, NULL);
	s_resolved(b);
	if (s_fb_expect(b, FRAME_SUBMIT, &f, &first, "expected Submit") != 0)
		return;
	frame_clear(&f);
	s_fb_welcome(b, NULL); /* the client reconnects after its timeout */
	if (s_fb_expect(b, FRAME_SUBMIT, &f, &second, "expected a resend") !=
	    0) {
		codec_buf_clear(&first);
		return;
	}
	if (first.len != second.len ||
	    memcmp(first.data, second.data, first.len) != 0)
		s_fb_fail(b, "the resent envelope differs from the first");
	s_accept(b, f.corr_id, &second, S_GENUINE);
	frame_clear(&f);
	codec_buf_clear(&first);
	codec_buf_clear(&second);
}

static void
t_send_resends_same_bytes(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL;
	struct schakel_message m;
	struct schakel_receipt r;
	char err[SCHAKEL_ERROR_MAX];
	int rc;

	s_start(b, s_script_lost_answer);
	assert_int_equal(
	    s_connect(b, "gemeente", 400, &c, err, sizeof err), SCHAKEL_OK);
	m = s_message();
	rc = schakel_send(c, &m, &r);
	s_join(b);
	if (rc != SCHAKEL_OK)
		fail_msg("send: %s: %s", schakel_errname(rc),
		    schakel_client_error(c));
	assert_int_equal(r.n_recipients, 1);
	assert_string_equal(r.recipients[0], "team-a");
	schakel_receipt_clear(&r);
	assert_null(r.signed_receipt);
	schakel_close(&c);
}

/* ROUTE_CHANGED: the client resolves again and builds a new message. */
static void
s_script_route_changed(struct fb *b)
{
	struct frame f, no = {0};
	struct codec_buf first = {0}, second = {0};
	struct env *e1 = NULL, *e2 = NULL;

	s_fb_welcome(b, NULL);
	s_resolved(b);
	if (s_fb_expect(b, FRAME_SUBMIT, &f, &first, "expected Submit") != 0)
		return;
	frame_refusal(&no, f.corr_id, SCHAKEL_E_ROUTE_CHANGED, NULL);
	frame_clear(&f);
	s_fb_send(b, &no);
	s_resolved(b);
	if (s_fb_expect(
		b, FRAME_SUBMIT, &f, &second, "expected a new Submit") != 0) {
		codec_buf_clear(&first);
		return;
	}
	if (env_decode(first.data, first.len, 0, &e1) != SCHAKEL_OK ||
	    env_decode(second.data, second.len, 0, &e2) != SCHAKEL_OK ||
	    memcmp(env_header(e1)->id, env_header(e2)->id, ENV_ID_LEN) == 0)
		s_fb_fail(b, "after ROUTE_CHANGED the message id must be new");
	s_accept(b, f.corr_id, &second, S_GENUINE);
	env_destroy(&e1);
	env_destroy(&e2);
	frame_clear(&f);
	codec_buf_clear(&first);
	codec_buf_clear(&second);
}

/* gemeente sends one message, which must succeed, while the fake
 * broker plays `script`. */
static void
s_send_scripted(struct fb *b, void (*script)(struct fb *))
{
	struct schakel_client *c = NULL;
	struct schakel_message m;
	char err[SCHAKEL_ERROR_MAX];
	int rc;

	s_start(b, script);
	assert_int_equal(
	    s_connect(b, "gemeente", 2000, &c, err, sizeof err), SCHAKEL_OK);
	m = s_message();
	rc = schakel_send(c, &m, NULL);
	s_join(b);
	if (rc != SCHAKEL_OK)
		fail_msg("send: %s: %s", schakel_errname(rc),
		    schakel_client_error(c));
	schakel_close(&c);
}

static void
t_send_route_changed(void **state)
{
	s_send_scripted(*state, s_script_route_changed);
}

/* A broker made before bundles: it cannot read a Hello that asks for
 * them (MALFORMED, no corr_id), and says nothing of bundles in its
 * Welcome; the client says Hello again without, and sends frames one to
 * a message (a bundle would reach this script as a frame of kind 24). */
static void
s_script_old_broker(struct fb *b)
{
	struct frame f, no = {0};
	struct codec_buf env = {0};

	if (s_fb_expect(b, FRAME_HELLO, &f, NULL, "expected Hello") != 0)
		return;
	if (!f.u.hello.bundles)
		s_fb_fail(b, "the first Hello does not ask for bundles");
	frame_clear(&f);
	frame_refusal(&no, 0, SCHAKEL_E_MALFORMED, NULL);
	s_fb_send(b, &no);
	s_fb_welcome(b, NULL);
	if (b->hello_bundles)
		s_fb_fail(b, "the second Hello asks for bundles again");
	s_resolved(b);
	if (s_fb_expect(b, FRAME_SUBMIT, &f, &env, "expected Submit") != 0)
		return;
	s_accept(b, f.corr_id, &env, S_GENUINE);
	frame_clear(&f);
	codec_buf_clear(&env);
}

static void
t_connect_old_broker(void **state)
{
	uint64_t t0 = s_now_ms();

	s_send_scripted(*state, s_script_old_broker);
	/* At once, not after a timeout. */
	assert_true(s_now_ms() - t0 < 2000);
}

/* The broker names a box key for team-a that differs from the pinned
 * keys/team-a.pub: nothing is sealed or submitted. */
static void
s_script_wrong_box_key(struct fb *b)
{
	struct frame f;

	s_fb_welcome(b, NULL);
	s_resolved(b);
	if (s_fb_recv(b, &f, 500, NULL) == 0) {
		frame_clear(&f);
		s_fb_fail(b, "the client submitted despite the key mismatch");
	}
}

static void
t_send_box_key_mismatch(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL;
	struct schakel_message m;
	char err[SCHAKEL_ERROR_MAX];

	b->wrong_box_key = true;
	s_start(b, s_script_wrong_box_key);
	assert_int_equal(
	    s_connect(b, "gemeente", 2000, &c, err, sizeof err), SCHAKEL_OK);
	m = s_message();
	assert_int_equal(schakel_send(c, &m, NULL), SCHAKEL_E_UNKNOWN_PARTY);
	assert_non_null(strstr(schakel_client_error(c), "team-a.pub"));
	s_join(b);
	b->wrong_box_key = false;
	schakel_close(&c);
}

/* Answers the Submit, and any resend of it, with Accepted and a receipt
 * forged as b->forgery says. */
static void
s_script_forged_accept(struct fb *b)
{
	struct codec_buf env = {0};
	struct frame f;

	s_fb_welcome(b, NULL);
	s_resolved(b);
	if (s_fb_expect(b, FRAME_SUBMIT, &f, &env, "expected Submit") != 0)
		return;
	do {
		if (f.kind != FRAME_SUBMIT) {
			s_fb_fail(b,
			    "after the forged receipt only a resend "
			    "was expected");
			frame_clear(&f);
			break;
		}
		s_accept(b, f.corr_id, &env, b->forgery);
		frame_clear(&f);
		codec_buf_clear(&env);
	} while (s_fb_recv(b, &f, 300, &env) == 0);
	codec_buf_clear(&env);
}

/* gemeente sends one message and the fake broker accepts it with a
 * receipt forged `how`: the send must fail with `code`, in a sentence
 * that says `words`, and hand back no receipt. */
static void
s_send_forged(struct fb *b, enum s_forgery how, int code, const char *words)
{
	struct schakel_client *c = NULL;
	struct schakel_message m;
	struct schakel_receipt r;
	char err[SCHAKEL_ERROR_MAX];
	int rc;

	b->forgery = how;
	s_start(b, s_script_forged_accept);
	assert_int_equal(
	    s_connect(b, "gemeente", 2000, &c, err, sizeof err), SCHAKEL_OK);
	m = s_message();
	/* Filled with junk: what the library leaves in it must be empty. */
	memset(&r, 0x55, sizeof r);
	rc = schakel_send(c, &m, &r);
	s_join(b);
	b->forgery = S_GENUINE;
	if (rc != code)
		fail_msg("send: %s, expected %s: %s", schakel_errname(rc),
		    schakel_errname(code), schakel_client_error(c));
	if (strstr(schakel_client_error(c), words) == NULL)
		fail_msg("client error: %s", schakel_client_error(c));
	assert_null(r.signed_receipt);
	assert_int_equal(r.signed_receipt_len, 0);
	assert_int_equal(r.n_recipients, 0);
	schakel_close(&c);
}

/* A receipt not signed with the pinned broker key (here: the sender's
 * own key, which it could forge) is no proof that the broker took the
 * message: the send fails. */
static void
t_send_receipt_wrong_key(void **state)
{
	s_send_forged(*state, S_SIGNED_BY_SENDER, SCHAKEL_E_BAD_SIGNATURE,
	    "receipt does not verify with the pinned broker key");
}

/* A receipt the broker did sign, but for another message id or another
 * header, proves nothing about the message sent: the send fails. */
static void
t_send_receipt_other_message(void **state)
{
	s_send_forged(
	    *state, S_OTHER_ID, SCHAKEL_E_BAD_FIELD, "names another message");
	s_send_forged(
	    *state, S_OTHER_HASH, SCHAKEL_E_BAD_FIELD, "names another message");
}

/* ---- connecting ---- */

static void
s_script_wrong_key(struct fb *b)
{
	uint8_t other[32];

	randombytes_buf(other, sizeof other);
	s_fb_welcome(b, other);
}

static void
t_connect_wrong_sign_key(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL;
	char err[SCHAKEL_ERROR_MAX];

	s_start(b, s_script_wrong_key);
	assert_int_equal(s_connect(b, "team-a", 2000, &c, err, sizeof err),
	    SCHAKEL_E_BAD_SIGNATURE);
	s_join(b);
	assert_null(c);
	assert_non_null(strstr(err, "pinned"));
}

static void
t_connect_nobody_there(void **state)
{
	struct fb *b = *state;
	struct schakel_client_opts o = {0};
	struct schakel_client *c = NULL;
	char key[512], err[SCHAKEL_ERROR_MAX];

	snprintf(key, sizeof key, "%s/keys/team-a.key", b->dir);
	o.endpoint = "tcp://127.0.0.1:1";
	memcpy(o.broker_transport_key, b->broker->pub.transport, 32);
	memcpy(o.broker_sign_key, b->broker->pub.sign, 32);
	o.party_id = "team-a";
	o.key_file = key;
	o.timeout_ms = 300;
	assert_int_equal(
	    schakel_connect(&o, &c, err, sizeof err), SCHAKEL_E_UNAVAILABLE);
	assert_null(c);
	assert_non_null(strstr(err, "no answer"));
	/* A key file that is not there is the caller's mistake. */
	o.key_file = "/nonexistent.key";
	assert_int_equal(
	    schakel_connect(&o, &c, err, sizeof err), SCHAKEL_E_BAD_ARGUMENT);
	assert_non_null(strstr(err, "/nonexistent.key"));
	assert_int_equal(
	    schakel_connect(NULL, &c, err, sizeof err), SCHAKEL_E_BAD_ARGUMENT);
	schakel_close(NULL);
	schakel_close(&c);
}

/* ---- the codec's open path, directly ---- */

static void
t_env_open_tampered(void **state)
{
	struct fb *b = *state;
	struct codec_buf env = {0}, rc = {0};
	struct keys_secret *ta;
	struct keys_error ke;
	struct env *e = NULL;
	uint8_t *payload = NULL;
	size_t plen;
	char path[512];

	snprintf(path, sizeof path, "%s/keys/team-a.key", b->dir);
	ta = keys_secret_read(path, KEYS_PARTY, &ke);
	assert_non_null(ta);
	s_fb_message(b, b->sender, "gemeente", "vertrouwelijk", &env, &rc);

	/* Intact: opens. */
	assert_int_equal(env_decode(env.data, env.len, 0, &e), SCHAKEL_OK);
	assert_int_equal(env_open(e, b->sender->pub.sign, "team-a", ta->pub.box,
			     ta->box_sk, NULL, &payload, &plen),
	    SCHAKEL_OK);
	assert_memory_equal(payload, "vertrouwelijk", plen);
	free(payload);
	/* Another sender's key, or a reader not named: refused. */
	assert_int_equal(env_open(e, ta->pub.sign, "team-a", ta->pub.box,
			     ta->box_sk, NULL, &payload, &plen),
	    SCHAKEL_E_BAD_SIGNATURE);
	assert_int_equal(env_open(e, b->sender->pub.sign, "team-b", ta->pub.box,
			     ta->box_sk, NULL, &payload, &plen),
	    SCHAKEL_E_NOT_RECIPIENT);
	env_destroy(&e);

	/* A flipped ciphertext byte. */
	env.data[env.len - 1] ^= 0x01;
	assert_int_equal(env_decode(env.data, env.len, 0, &e), SCHAKEL_OK);
	assert_int_equal(env_open(e, b->sender->pub.sign, "team-a", ta->pub.box,
			     ta->box_sk, NULL, &payload, &plen),
	    SCHAKEL_E_HASH_MISMATCH);
	env_destroy(&e);
	codec_buf_clear(&env);
	codec_buf_clear(&rc);
	keys_secret_destroy(&ta);
}

/* ---- a frame the client cannot read ---- */

/* Waits until the client granted `total` credit in all. */
static int
s_fb_wait_credit(struct fb *b, uint64_t total, const char *what)
{
	uint64_t until = s_now_ms() + 3000;
	struct frame f;

	while (b->credits < total && s_now_ms() < until)
		if (s_fb_recv(b, &f, 100, NULL) == 0)
			frame_clear(&f);
	if (b->credits >= total)
		return 0;
	s_fb_fail(b, what);
	return -1;
}

/* The broker spends a credit on every delivery, also on one the client
 * cannot decode: the client must grant that credit again, or broker and
 * client disagree on it until the client has none left. */
static void
s_script_unreadable(struct fb *b)
{
	static const uint8_t junk[] = {0xba, 0x01, 0x05, 0xff, 0xff, 0xff};

	uint64_t base;
	struct frame f;

	s_fb_welcome(b, NULL);
	if (s_fb_wait_credit(b, 1, "expected Credit") != 0)
		return;
	/* Whatever else the client grants at first (and what an earlier
	 * test's client left on the socket) comes before the junk. */
	while (s_fb_recv(b, &f, 300, NULL) == 0)
		frame_clear(&f);
	base = b->credits;
	zmq_send(b->sock, b->peer, b->peer_len, ZMQ_SNDMORE);
	zmq_send(b->sock, junk, sizeof junk, 0);
	(void)s_fb_wait_credit(
	    b, base + 1, "no credit granted again after an unreadable frame");
}

static void
t_receive_unreadable_frame(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL;
	struct s_seen seen = {0};
	char err[SCHAKEL_ERROR_MAX];
	size_t handed = 99;

	b->credits = 0;
	s_start(b, s_script_unreadable);
	assert_int_equal(
	    s_connect(b, "team-a", 2000, &c, err, sizeof err), SCHAKEL_OK);
	assert_int_equal(
	    schakel_receive(c, 1, 1500, s_on_message, &seen, &handed),
	    SCHAKEL_OK);
	s_join(b);
	assert_int_equal(handed, 0);
	schakel_close(&c);
}

/* ---- notices ---- */

static void
s_fb_notice(struct fb *b, uint64_t seq, const uint8_t *sk)
{
	struct frame f = {0};

	f.kind = FRAME_NOTICE;
	f.u.notice.kind = FRAME_NOTICE_DELIVERED;
	memset(f.u.notice.message_id, 0x33, ENV_ID_LEN);
	snprintf(f.u.notice.recipient, sizeof f.u.notice.recipient, "team-a");
	f.u.notice.time_ms = s_now_ms();
	f.u.notice.store_seq = seq;
	frame_notice_sign(&f.u.notice, sk);
	s_fb_send(b, &f);
}

/* A notice signed by the broker is handed over and acknowledged; one
 * signed by another key is refused with a Nack and not handed over. */
static void
s_script_notices(struct fb *b)
{
	uint8_t pk[32], sk[64];

	crypto_sign_keypair(pk, sk);
	s_fb_welcome(b, NULL);
	s_fb_notice(b, 10, b->broker->sign_sk);
	s_fb_answer(b, 10, 0, "signed notice: expected Ack");
	s_fb_notice(b, 11, sk);
	s_fb_answer(
	    b, 11, SCHAKEL_E_BAD_SIGNATURE, "forged notice: expected Nack");
}

struct s_notices_seen {
	int n;
	char recipient[65];
	enum schakel_notice_kind kind;
};

static void
s_on_notice(void *arg, const struct schakel_notice *n)
{
	struct s_notices_seen *s = arg;

	s->n++;
	s->kind = n->kind;
	snprintf(s->recipient, sizeof s->recipient, "%s", n->recipient);
}

static void
t_receive_notices(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL;
	struct s_notices_seen ns = {0};
	struct s_seen seen = {0};
	char err[SCHAKEL_ERROR_MAX];
	size_t handed = 99;

	s_start(b, s_script_notices);
	assert_int_equal(
	    s_connect(b, "gemeente", 2000, &c, err, sizeof err), SCHAKEL_OK);
	schakel_set_notice_handler(c, s_on_notice, &ns);
	assert_int_equal(
	    schakel_receive(c, 0, 1500, s_on_message, &seen, &handed),
	    SCHAKEL_OK);
	s_join(b);
	assert_int_equal(seen.n, 0);
	assert_int_equal(ns.n, 1);
	assert_int_equal(ns.kind, SCHAKEL_NOTICE_DELIVERED);
	assert_string_equal(ns.recipient, "team-a");
	assert_non_null(strstr(schakel_client_error(c), "signature"));
	schakel_close(&c);
}

/* ---- receive: stop from a notice handler, short receives ---- */

static uint64_t
s_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A notice, then a delivery right behind it; the notice's handler calls
 * schakel_receive_stop because it cannot go on.  What the client answers
 * to the notice is recorded; then a second receive takes the delivery. */
static int s_notice_answer = -1;

static void
s_script_stop_notice(struct fb *b)
{
	struct codec_buf m = {0}, r = {0};
	struct frame f;

	s_fb_welcome(b, NULL);
	s_fb_message(b, b->sender, "gemeente", "na de notice", &m, &r);
	s_fb_notice(b, 10, b->broker->sign_sk);
	s_fb_deliver(b, 2, 1, &m, &r);
	if (s_fb_recv(b, &f, 5000, NULL) == 0) {
		s_notice_answer = f.kind == FRAME_ACK ? 0
		    : f.kind == FRAME_NACK            ? (int)f.u.ack.code
						      : -2;
		frame_clear(&f);
	}
	s_fb_answer(b, 2, 0, "delivery after stop: expected Ack");
	codec_buf_clear(&m);
	codec_buf_clear(&r);
}

struct s_stopper {
	struct schakel_client *c;
	int notices;
};

static void
s_notice_stop(void *arg, const struct schakel_notice *n)
{
	struct s_stopper *s = arg;

	(void)n;
	s->notices++;
	schakel_receive_stop(s->c); /* e.g. its output failed */
}

static void
t_stop_in_notice(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL;
	struct s_stopper st = {0};
	struct s_seen seen = {0};
	char err[SCHAKEL_ERROR_MAX];
	size_t handed = 99;
	uint64_t t0, el;

	s_start(b, s_script_stop_notice);
	assert_int_equal(
	    s_connect(b, "team-a", 2000, &c, err, sizeof err), SCHAKEL_OK);
	st.c = c;
	schakel_set_notice_handler(c, s_notice_stop, &st);
	t0 = s_mono();
	assert_int_equal(
	    schakel_receive(c, 0, 4000, s_on_message, &seen, &handed),
	    SCHAKEL_OK);
	el = s_mono() - t0;
	print_message("stop in a notice handler: receive returned after %llu "
		      "ms, handed %zu, notices %d\n",
	    (unsigned long long)el, handed, st.notices);
	assert_true(el < 2000);
	assert_int_equal(handed, 0);
	assert_int_equal(st.notices, 1);
	/* A later receive starts afresh and takes the delivery. */
	assert_int_equal(
	    schakel_receive(c, 1, 3000, s_on_message, &seen, &handed),
	    SCHAKEL_OK);
	assert_int_equal(handed, 1);
	s_join(b);
	schakel_close(&c);
	/* Not acknowledged: a retryable Nack, so it comes again (it was
	 * acknowledged, and lost, before). */
	assert_int_equal(s_notice_answer, SCHAKEL_E_UNAVAILABLE);
}

/* A broker that says Welcome and then nothing (frozen, or its host
 * gone with the connection half-open): heartbeat 1 s, so silence is to be
 * found after 3 s.  Receives of 200 ms each, for 6 s. */
static int s_hellos;

static void
s_script_silent(struct fb *b)
{
	struct frame f;
	uint64_t until;

	s_fb_welcome(b, NULL);
	s_hellos = 0;
	/* Not a word for 6 s; then count the Hellos that came meanwhile
	 * (a reconnect says Hello again on a new connection). */
	until = s_now_ms() + 6500;
	while (s_now_ms() < until) {
		zmq_pollitem_t it = {b->sock, 0, ZMQ_POLLIN, 0};
		zmq_msg_t id, m;

		if (zmq_poll(&it, 1, 50) <= 0)
			continue;
		zmq_msg_init(&id);
		zmq_msg_init(&m);
		zmq_msg_recv(&id, b->sock, 0);
		zmq_msg_recv(&m, b->sock, 0);
		if (frame_decode(zmq_msg_data(&m), zmq_msg_size(&m), 0, &f) ==
		    SCHAKEL_OK) {
			if (f.kind == FRAME_HELLO)
				s_hellos++;
			frame_clear(&f);
		}
		zmq_msg_close(&id);
		zmq_msg_close(&m);
	}
}

static void
t_silent_broker_short_receives(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL;
	struct s_seen seen = {0};
	char err[SCHAKEL_ERROR_MAX];
	size_t handed;
	uint64_t t0;
	int calls = 0, not_ok = 0;

	s_start(b, s_script_silent);
	assert_int_equal(
	    s_connect(b, "team-a", 2000, &c, err, sizeof err), SCHAKEL_OK);
	t0 = s_mono();
	while (s_mono() - t0 < 6000) {
		int rc =
		    schakel_receive(c, 0, 200, s_on_message, &seen, &handed);

		calls++;
		if (rc != SCHAKEL_OK || schakel_client_error(c)[0] != '\0')
			not_ok++;
	}
	s_join(b);
	print_message("silent broker, %d receives of 200 ms over 6 s: %d "
		      "found anything wrong, %d new Hello(s)\n",
	    calls, not_ok, s_hellos);
	schakel_close(&c);
	/* Expected: silence found after 3 heartbeats, a new connection. */
	assert_true(not_ok > 0 || s_hellos > 0);
}

/* receive(timeout 0) as a poll: a delivery waiting on the connection. */
static void
s_script_poll(struct fb *b)
{
	struct codec_buf m = {0}, r = {0};

	s_fb_welcome(b, NULL);
	s_fb_message(b, b->sender, "gemeente", "wacht", &m, &r);
	s_fb_deliver(b, 1, 1, &m, &r);
	/* Whatever comes (Credit, Ack, a new Hello) for 3 s. */
	{
		struct frame f;

		while (s_fb_recv(b, &f, 3000, NULL) == 0)
			frame_clear(&f);
	}
	codec_buf_clear(&m);
	codec_buf_clear(&r);
}

static void
t_poll_timeout_zero(void **state)
{
	struct fb *b = *state;
	struct schakel_client *c = NULL;
	struct s_seen seen = {0};
	char err[SCHAKEL_ERROR_MAX];
	size_t handed, total = 0;

	s_start(b, s_script_poll);
	assert_int_equal(
	    s_connect(b, "team-a", 2000, &c, err, sizeof err), SCHAKEL_OK);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(
		    schakel_receive(c, 0, 0, s_on_message, &seen, &handed),
		    SCHAKEL_OK);
		total += handed;
		usleep(100 * 1000);
	}
	print_message(
	    "20 receives with timeout 0 over 2 s: %zu handed\n", total);
	s_join(b);
	schakel_close(&c);
	assert_int_equal(total, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_env_open_tampered),
	    cmocka_unit_test(t_receive_refuses_and_filters),
	    cmocka_unit_test(t_receive_notices),
	    cmocka_unit_test(t_receive_receipt_wrong_key),
	    cmocka_unit_test(t_receive_receipt_other_message),
	    cmocka_unit_test(t_receive_seen_file),
	    cmocka_unit_test(t_receive_seen_file_compacts),
	    cmocka_unit_test(t_receive_seen_file_rewrite_fails),
	    cmocka_unit_test(t_receive_unreadable_frame),
	    cmocka_unit_test(t_send_resends_same_bytes),
	    cmocka_unit_test(t_send_route_changed),
	    cmocka_unit_test(t_send_box_key_mismatch),
	    cmocka_unit_test(t_send_receipt_wrong_key),
	    cmocka_unit_test(t_send_receipt_other_message),
	    cmocka_unit_test(t_connect_wrong_sign_key),
	    cmocka_unit_test(t_connect_nobody_there),
	    cmocka_unit_test(t_connect_old_broker),
	    cmocka_unit_test(t_stop_in_notice),
	    cmocka_unit_test(t_silent_broker_short_receives),
	    cmocka_unit_test(t_poll_timeout_zero),
	};

	if (getenv("CMOCKA_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
	return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
