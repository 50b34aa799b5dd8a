/*
 * transport: the only daemon file that includes zmq.h.  It binds the
 * ROUTER socket as a CURVE server, answers ZAP requests on the broker's
 * own thread (so admission reads the configuration in force), moves
 * frames in and out, and counts what ZeroMQ has not yet written out of
 * what was sent on an account.  It knows nothing of what the frames mean.
 */
#include "transport.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "text.h"

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_MAX_ENDPOINTS 16

struct transport_account {
	atomic_size_t unsent;
	atomic_uint refs; /* the owner's, a child's, one per message queued */
	struct transport_account *parent; /* counts this one's too, or NULL */
};

/* A message counted on an account, as handed to libzmq: the account and
 * the length sit in front of the bytes, for s_written to count down. */
struct s_counted {
	struct transport_account *acct;
	size_t len;
	uint8_t data[];
};

struct transport {
	void *ctx;
	void *router;
	void *zap;
	void *admin; /* ROUTER on ipc://admin_path, or NULL */
	transport_admit_fn admit;
	void *admit_arg;
	zmq_msg_t in; /* the last message received, kept until the next */
	bool in_live;
	struct transport_refused refused;
	int watch_fd[TRANSPORT_WATCH_MAX]; /* more fds that end a wait */
	int nwatch;
	size_t nendpoints;
	char endpoints[S_MAX_ENDPOINTS][256];
	char admin_path[4096];
};

static void
s_err(char *err, size_t len, const char *what, const char *detail)
{
	snprintf(err, len, "%s: %s", what, detail);
}

/* Binds the administration socket: a unix socket that only the owner
 * and the group may use (mode 0660). */
static int
s_admin_bind(struct transport *t, const char *path, char *err, size_t errlen)
{
	char ep[4096];
	/* Enough for the last answers to leave as the broker stops. */
	int linger = 200;

	if (snprintf(ep, sizeof ep, "ipc://%s", path) >= (int)sizeof ep) {
		snprintf(err, errlen, "admin socket path too long");
		return -1;
	}
	/* The folder may be new (a development run; systemd creates
	 * RuntimeDirectory itself). */
	{
		char dir[4096];
		char *slash;
		text_copy(dir, sizeof dir, path);
		slash = strrchr(dir, '/');
		if (slash != NULL && slash != dir) {
			*slash = '\0';
			if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
				snprintf(err, errlen,
				    "cannot create the admin socket's folder %s: "
				    "%s",
				    dir, strerror(errno));
				return -1;
			}
		}
	}
	/* A socket left by a broker that did not stop cleanly. */
	(void)unlink(path);
	t->admin = zmq_socket(t->ctx, ZMQ_ROUTER);
	if (t->admin == NULL ||
	    zmq_setsockopt(t->admin, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
	    zmq_bind(t->admin, ep) != 0) {
		snprintf(err, errlen, "cannot bind the admin socket %s: %s",
		    path, zmq_strerror(zmq_errno()));
		return -1;
	}
	if (chmod(path, 0660) != 0) {
		snprintf(err, errlen, "cannot set the mode of %s: %s", path,
		    strerror(errno));
		return -1;
	}
	text_copy(t->admin_path, sizeof t->admin_path, path);
	return 0;
}

struct transport *
transport_new(const struct transport_opts *opts, char *err, size_t errlen)
{
	struct transport *t = calloc(1, sizeof(*t));
	/* ZeroMQ's outbound queue per peer, in messages.  What a session's
	 * client leaves unread the broker bounds in bytes (its account;
	 * broker.c drops it past BROKER_UNSENT_HARD); this bounds what a
	 * peer without a session piles up in refusals (some 100 bytes each:
	 * under 1 MiB a connection; 100,000 let one connection hold 10 MiB
	 * of them, and bundles of 256 KiB far more).  A session that does
	 * not read bundles gets each frame as a message of its own and
	 * still has room for its 1,024 deliveries in flight
	 * (BROKER_MAX_INFLIGHT) and 7,000 replies it has not read yet; one
	 * that fills it is dropped as a slow consumer. */
	int one = 1, zero = 0, linger = 200, sndhwm = TRANSPORT_SNDHWM;
	int64_t maxmsg = (int64_t)opts->max_message;

	if (t == NULL) {
		s_err(err, errlen, "transport", "out of memory");
		return NULL;
	}
	if (opts->nendpoints == 0 || opts->nendpoints > S_MAX_ENDPOINTS) {
		s_err(err, errlen, "transport", "between 1 and 16 endpoints");
		free(t);
		return NULL;
	}
	t->admit = opts->admit;
	t->admit_arg = opts->admit_arg;
	t->ctx = zmq_ctx_new();
	if (t->ctx == NULL)
		goto fail;
	/* The ZAP handler must be bound before any CURVE socket binds. */
	t->zap = zmq_socket(t->ctx, ZMQ_REP);
	if (t->zap == NULL || zmq_bind(t->zap, S_ZAP_ENDPOINT) != 0)
		goto fail;
	t->router = zmq_socket(t->ctx, ZMQ_ROUTER);
	if (t->router == NULL)
		goto fail;
	if (zmq_setsockopt(t->router, ZMQ_CURVE_SERVER, &one, sizeof one) !=
		0 ||
	    zmq_setsockopt(t->router, ZMQ_CURVE_SECRETKEY, opts->server_secret,
		TRANSPORT_KEY_LEN) != 0 ||
	    zmq_setsockopt(t->router, ZMQ_ZAP_DOMAIN, "schakel", 7) != 0 ||
	    zmq_setsockopt(t->router, ZMQ_LINGER, &linger, sizeof linger) !=
		0 ||
	    zmq_setsockopt(t->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one) !=
		0 ||
	    zmq_setsockopt(t->router, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm) !=
		0 ||
	    zmq_setsockopt(t->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) !=
		0 ||
	    zmq_setsockopt(t->zap, ZMQ_LINGER, &zero, sizeof zero) != 0)
		goto fail;
	if (opts->admin_path != NULL &&
	    s_admin_bind(t, opts->admin_path, err, errlen) != 0) {
		transport_destroy(&t);
		return NULL;
	}
	for (size_t i = 0; i < opts->nendpoints; i++) {
		size_t len = sizeof t->endpoints[0];
		if (zmq_bind(t->router, opts->endpoints[i]) != 0) {
			snprintf(err, errlen, "cannot bind %s: %s",
			    opts->endpoints[i], zmq_strerror(zmq_errno()));
			transport_destroy(&t);
			return NULL;
		}
		if (zmq_getsockopt(t->router, ZMQ_LAST_ENDPOINT,
			t->endpoints[i], &len) != 0)
			goto fail;
		t->nendpoints++;
	}
	return t;
fail:
	s_err(err, errlen, "cannot set up ZeroMQ", zmq_strerror(zmq_errno()));
	transport_destroy(&t);
	return NULL;
}

void
transport_destroy(struct transport **tp)
{
	struct transport *t;

	if (tp == NULL || *tp == NULL)
		return;
	t = *tp;
	if (t->in_live)
		zmq_msg_close(&t->in);
	if (t->router != NULL)
		zmq_close(t->router);
	if (t->admin != NULL) {
		zmq_close(t->admin);
		if (t->admin_path[0] != '\0')
			(void)unlink(t->admin_path);
	}
	if (t->zap != NULL)
		zmq_close(t->zap);
	if (t->ctx != NULL)
		zmq_ctx_term(t->ctx);
	free(t);
	*tp = NULL;
}

int
transport_endpoint(const struct transport *t, size_t i, char *out, size_t len)
{
	if (i >= t->nendpoints)
		return -1;
	return snprintf(out, len, "%s", t->endpoints[i]) < (int)len ? 0 : -1;
}

/* Receives all parts of one ZAP request into parts (at most 8). */
static int
s_zap_recv(void *zap, zmq_msg_t *parts, int *n)
{
	int more = 1;

	*n = 0;
	while (more) {
		size_t sz = sizeof more;
		if (*n == 8) {
			/* Drain anything beyond; a ZAP request has 7 parts. */
			zmq_msg_t junk;
			zmq_msg_init(&junk);
			zmq_msg_recv(&junk, zap, 0);
			zmq_msg_close(&junk);
		} else {
			zmq_msg_init(&parts[*n]);
			if (zmq_msg_recv(&parts[*n], zap, 0) < 0) {
				zmq_msg_close(&parts[*n]);
				return -1;
			}
			(*n)++;
		}
		if (zmq_getsockopt(zap, ZMQ_RCVMORE, &more, &sz) != 0)
			return -1;
	}
	return 0;
}

static void
s_send_str(void *s, const char *str, size_t len, int more)
{
	zmq_send(s, str, len, more ? ZMQ_SNDMORE : 0);
}

/* Answers one ZAP request: 200 with the party id as User-Id for a
 * declared transport key, 400 for anything else. */
static void
s_zap(struct transport *t)
{
	zmq_msg_t p[8];
	int n = 0;
	char party[TRANSPORT_PARTY_MAX + 1] = "";
	bool ok = false;

	if (s_zap_recv(t->zap, p, &n) != 0) {
		for (int i = 0; i < n; i++)
			zmq_msg_close(&p[i]);
		return;
	}
	/* version, request id, domain, address, identity, mechanism,
	 * credentials (the client's 32-byte public key). */
	if (n == 7 && zmq_msg_size(&p[5]) == 5 &&
	    memcmp(zmq_msg_data(&p[5]), "CURVE", 5) == 0 &&
	    zmq_msg_size(&p[6]) == TRANSPORT_KEY_LEN)
		ok = t->admit(t->admit_arg, zmq_msg_data(&p[6]), party);
	if (!ok) {
		struct transport_refused *r = &t->refused;
		size_t alen = n >= 4 ? zmq_msg_size(&p[3]) : 0;

		r->count++;
		if (alen > TRANSPORT_ADDR_MAX)
			alen = TRANSPORT_ADDR_MAX;
		if (alen > 0)
			memcpy(r->addr, zmq_msg_data(&p[3]), alen);
		r->addr[alen] = '\0';
		r->has_key = n == 7 && zmq_msg_size(&p[6]) == TRANSPORT_KEY_LEN;
		if (r->has_key)
			memcpy(r->key, zmq_msg_data(&p[6]), TRANSPORT_KEY_LEN);
	}
	s_send_str(t->zap, "1.0", 3, 1);
	if (n >= 2)
		zmq_send(t->zap, zmq_msg_data(&p[1]), zmq_msg_size(&p[1]),
		    ZMQ_SNDMORE);
	else
		s_send_str(t->zap, "", 0, 1);
	s_send_str(t->zap, ok ? "200" : "400", 3, 1);
	s_send_str(t->zap, ok ? "OK" : "unknown transport key", ok ? 2 : 21, 1);
	s_send_str(t->zap, party, ok ? strlen(party) : 0, 1);
	s_send_str(t->zap, "", 0, 0);
	for (int i = 0; i < n; i++)
		zmq_msg_close(&p[i]);
}

int
transport_poll(struct transport *t, long timeout_ms)
{
	zmq_pollitem_t items[3 + TRANSPORT_WATCH_MAX] = {
	    {.socket = t->router, .events = ZMQ_POLLIN},
	    {.socket = t->zap, .events = ZMQ_POLLIN},
	};
	int n = 2;

	if (t->admin != NULL)
		items[n++] =
		    (zmq_pollitem_t){.socket = t->admin, .events = ZMQ_POLLIN};
	for (int i = 0; i < t->nwatch; i++)
		items[n++] = (zmq_pollitem_t){
		    .fd = t->watch_fd[i], .events = ZMQ_POLLIN};
	for (;;) {
		bool ready = false;
		int rc = zmq_poll(items, n, timeout_ms);
		if (rc < 0)
			return -1;
		for (int i = 0; i < n; i++)
			if (i != 1 && (items[i].revents & ZMQ_POLLIN))
				ready = true;
		if (items[1].revents & ZMQ_POLLIN) {
			s_zap(t);
			/* Answering ZAP does not use up the wait for data. */
			if (!ready) {
				timeout_ms = 0;
				continue;
			}
		}
		return ready ? 1 : 0;
	}
}

void
transport_watch_fd(struct transport *t, int fd)
{
	if (fd >= 0 && t->nwatch < TRANSPORT_WATCH_MAX)
		t->watch_fd[t->nwatch++] = fd;
}

bool
transport_peer_generated(const struct transport_peer *p)
{
	return p->len == 5 && p->id[0] == 0;
}

int
transport_recv(struct transport *t, struct transport_msg *m)
{
	zmq_msg_t id;
	int more = 0;
	size_t sz = sizeof more;
	const char *uid;

	for (;;) {
		if (t->in_live) {
			zmq_msg_close(&t->in);
			t->in_live = false;
		}
		zmq_msg_init(&id);
		if (zmq_msg_recv(&id, t->router, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&id);
			return 0;
		}
		if (zmq_msg_size(&id) > TRANSPORT_PEER_MAX) {
			zmq_msg_close(&id);
			continue;
		}
		m->peer.len = zmq_msg_size(&id);
		memcpy(m->peer.id, zmq_msg_data(&id), m->peer.len);
		zmq_msg_close(&id);
		zmq_msg_init(&t->in);
		t->in_live = true;
		if (zmq_msg_recv(&t->in, t->router, ZMQ_DONTWAIT) < 0)
			continue;
		/* One frame per message; anything more is dropped whole. */
		if (zmq_getsockopt(t->router, ZMQ_RCVMORE, &more, &sz) == 0 &&
		    more) {
			while (more) {
				zmq_msg_t junk;
				zmq_msg_init(&junk);
				zmq_msg_recv(&junk, t->router, 0);
				zmq_msg_close(&junk);
				sz = sizeof more;
				if (zmq_getsockopt(t->router, ZMQ_RCVMORE,
					&more, &sz) != 0)
					break;
			}
			continue;
		}
		uid = zmq_msg_gets(&t->in, "User-Id");
		if (uid == NULL || strlen(uid) > TRANSPORT_PARTY_MAX)
			continue;
		memcpy(m->party, uid, strlen(uid) + 1);
		m->data = zmq_msg_data(&t->in);
		m->len = zmq_msg_size(&t->in);
		{
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			m->arrived_us = (uint64_t)ts.tv_sec * 1000000 +
			    (uint64_t)ts.tv_nsec / 1000;
		}
		return 1;
	}
}

struct transport_account *
transport_account_new(struct transport_account *parent)
{
	struct transport_account *a = malloc(sizeof(*a));

	if (a == NULL)
		return NULL;
	atomic_init(&a->unsent, 0);
	atomic_init(&a->refs, 1);
	a->parent = parent;
	if (parent != NULL)
		atomic_fetch_add_explicit(
		    &parent->refs, 1, memory_order_relaxed);
	return a;
}

static void
s_account_unref(struct transport_account *a)
{
	struct transport_account *parent;

	/* The last reference frees, on whichever thread drops it. */
	if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1)
		return;
	parent = a->parent;
	free(a);
	if (parent != NULL)
		s_account_unref(parent);
}

/* Counts n bytes up (`up`) or down on `a` and its parent. */
static void
s_account_count(struct transport_account *a, size_t n, bool up)
{
	for (; a != NULL; a = a->parent)
		if (up)
			atomic_fetch_add_explicit(
			    &a->unsent, n, memory_order_relaxed);
		else
			atomic_fetch_sub_explicit(
			    &a->unsent, n, memory_order_relaxed);
}

void
transport_account_release(struct transport_account **ap)
{
	if (ap == NULL || *ap == NULL)
		return;
	s_account_unref(*ap);
	*ap = NULL;
}

size_t
transport_account_unsent(const struct transport_account *a)
{
	return atomic_load_explicit(&a->unsent, memory_order_relaxed);
}

/* libzmq's free function of a counted message, called once: on its I/O
 * thread when the message was written to the connection or dropped
 * with it, or on the broker's thread when the send failed.  It touches
 * only the account, which its reference keeps alive. */
static void
s_written(void *data, void *hint)
{
	struct s_counted *c = hint;

	(void)data;
	s_account_count(c->acct, c->len, false);
	s_account_unref(c->acct);
	free(c);
}

/* Makes `msg` a copy of data[0..len) counted on `acct`.  Returns 0, or
 * -1 when out of memory. */
static int
s_counted_msg(zmq_msg_t *msg, const uint8_t *data, size_t len,
    struct transport_account *acct)
{
	struct s_counted *c = malloc(sizeof(*c) + len);

	if (c == NULL)
		return -1;
	c->acct = acct;
	c->len = len;
	memcpy(c->data, data, len);
	atomic_fetch_add_explicit(&acct->refs, 1, memory_order_relaxed);
	s_account_count(acct, len, true);
	if (zmq_msg_init_data(msg, c->data, len, s_written, c) != 0) {
		s_written(c->data, c);
		return -1;
	}
	return 0;
}

/* Why a send failed: ROUTER_MANDATORY says EAGAIN when the peer's queue
 * is at SNDHWM, EHOSTUNREACH when there is no such peer. */
static enum transport_sent
s_unsent_why(int err)
{
	return err == EAGAIN      ? TRANSPORT_FULL
	    : err == EHOSTUNREACH ? TRANSPORT_GONE
				  : TRANSPORT_FAILED;
}

enum transport_sent
transport_send(struct transport *t, const struct transport_peer *peer,
    const uint8_t *data, size_t len, struct transport_account *acct)
{
	zmq_msg_t msg;
	int err;

	if (acct != NULL && s_counted_msg(&msg, data, len, acct) != 0)
		return TRANSPORT_FAILED;
	if (zmq_send(t->router, peer->id, peer->len,
		ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
		err = zmq_errno();
		if (acct != NULL)
			zmq_msg_close(&msg);
		return s_unsent_why(err);
	}
	/* Uncounted: zmq_send copies, and keeps a small message in the
	 * zmq_msg_t itself. */
	if (acct == NULL)
		return zmq_send(t->router, data, len, ZMQ_DONTWAIT) < 0
		    ? s_unsent_why(zmq_errno())
		    : TRANSPORT_QUEUED;
	if (zmq_msg_send(&msg, t->router, ZMQ_DONTWAIT) < 0) {
		err = zmq_errno();
		zmq_msg_close(&msg);
		return s_unsent_why(err);
	}
	return TRANSPORT_QUEUED;
}

int
transport_admin_recv(struct transport *t, struct transport_client *c, char *buf,
    size_t max, size_t *len)
{
	zmq_msg_t part[4];
	int n = 0, more = 1, body = -1;
	size_t sz;

	if (t->admin == NULL)
		return 0;
	/* A REQ socket's request: the routing id the ROUTER adds, the
	 * REQ's own request id with ZMQ_REQ_CORRELATE, an empty delimiter,
	 * then the request (one frame; more are ignored, as a REP did). */
	for (; more; n++) {
		zmq_msg_t junk, *m = n < 4 ? &part[n] : &junk;
		zmq_msg_init(m);
		if (zmq_msg_recv(m, t->admin, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
			zmq_msg_close(m);
			break;
		}
		sz = sizeof more;
		if (zmq_getsockopt(t->admin, ZMQ_RCVMORE, &more, &sz) != 0)
			more = 0;
		if (m == &junk)
			zmq_msg_close(m);
		else if (body < 0 && n > 0 && n < 3 && zmq_msg_size(m) == 0)
			body = n + 1;
	}
	if (n > 4)
		n = 4;
	c->nenv = body - 1;
	if (body > 0 && body < n) {
		for (int i = 0; i < c->nenv; i++) {
			size_t l = zmq_msg_size(&part[i]);
			if (l > sizeof c->env[i])
				body = -1;
			else
				memcpy(c->env[i], zmq_msg_data(&part[i]),
				    c->envlen[i] = l);
		}
	}
	if (body > 0 && body < n) {
		size_t l = zmq_msg_size(&part[body]);
		if (l > max - 1)
			l = max - 1; /* truncated: the command will not parse */
		memcpy(buf, zmq_msg_data(&part[body]), l);
		buf[l] = '\0';
		*len = l;
	} else if (n > 0) {
		log_warnx("admin: ignored a request without the envelope of a "
			  "REQ socket (%d frames)",
		    n);
	}
	for (int i = 0; i < n; i++)
		zmq_msg_close(&part[i]);
	return body > 0 && body < n ? 1 : n > 0 ? 2 : 0;
}

void
transport_admin_reply(struct transport *t, const struct transport_client *c,
    const char *head, const char *text, size_t len)
{
	size_t hl = strlen(head);
	zmq_msg_t m;

	if (t->admin == NULL)
		return;
	/* A client gone meanwhile (schakelctl timed out) is not an error:
	 * the ROUTER drops what it cannot route. */
	for (int i = 0; i < c->nenv; i++)
		if (zmq_send(t->admin, c->env[i], c->envlen[i],
			ZMQ_SNDMORE | ZMQ_DONTWAIT) != (int)c->envlen[i])
			return;
	if (zmq_send(t->admin, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) != 0)
		return;
	/* One copy, head and text together. */
	if (zmq_msg_init_size(&m, hl + len) != 0) {
		(void)zmq_send(
		    t->admin, "error: out of memory\n", 21, ZMQ_DONTWAIT);
		return;
	}
	memcpy(zmq_msg_data(&m), head, hl);
	if (len > 0)
		memcpy((char *)zmq_msg_data(&m) + hl, text, len);
	if (zmq_msg_send(&m, t->admin, ZMQ_DONTWAIT) < 0)
		zmq_msg_close(&m);
}

void
transport_take_refused(struct transport *t, struct transport_refused *out)
{
	*out = t->refused;
	t->refused.count = 0;
}
