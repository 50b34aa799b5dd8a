/*
 * transport: the broker's ZeroMQ side.  A ROUTER socket bound with the
 * broker's CURVE server key, and a ZAP handler that admits only the
 * transport keys of declared parties and tags each connection with the
 * party's id.  The rest of the daemon sees peers and byte frames, never
 * libzmq.
 */
#ifndef SCHAKEL_TRANSPORT_H
#define SCHAKEL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRANSPORT_KEY_LEN 32
#define TRANSPORT_PEER_MAX 256 /* a ZeroMQ routing id */
#define TRANSPORT_PARTY_MAX 64
#define TRANSPORT_ADDR_MAX 63 /* a peer address as ZAP gives it */
/* The messages ZeroMQ queues for one peer at most (transport_new says
 * why so many, and no more). */
#define TRANSPORT_SNDHWM 8192

/* Decides whether a CURVE client key belongs to a declared party; on
 * success writes the party id (at most TRANSPORT_PARTY_MAX bytes and a
 * NUL) into party_id and returns true.  Called from transport_poll on the
 * broker's thread, so it may read the current configuration. */
typedef bool (*transport_admit_fn)(
    void *arg, const uint8_t key[TRANSPORT_KEY_LEN], char *party_id);

struct transport_opts {
	const char *const *endpoints; /* tcp://... or ipc://... */
	size_t nendpoints;
	const uint8_t *server_secret; /* CURVE server secret key, 32 bytes */
	transport_admit_fn admit;
	void *admit_arg;
	size_t max_message; /* larger inbound messages are dropped by libzmq */
	const char *admin_path; /* unix socket for schakelctl, or NULL */
};

/* A peer: the ROUTER routing id of one connection. */
struct transport_peer {
	uint8_t id[TRANSPORT_PEER_MAX];
	size_t len;
};

/* Whether the routing id is one libzmq made for the connection (a zero
 * byte and a 32-bit counter that starts at a random value), not one the
 * client chose with ZMQ_ROUTING_ID.  Sessions are found by routing id,
 * and a chosen one can be taken by another connection, of another
 * party, as soon as the first is gone: the broker would send that
 * connection what it still sends the session (deliveries, whose
 * headers it can read) until the heartbeats run out. */
bool transport_peer_generated(const struct transport_peer *p);

/* One inbound message.  `data` is owned by the transport and valid until
 * the next transport_recv or transport_destroy. */
struct transport_msg {
	struct transport_peer peer;
	char party[TRANSPORT_PARTY_MAX + 1]; /* as tagged by ZAP */
	const uint8_t *data;
	size_t len;
	uint64_t arrived_us; /* CLOCK_MONOTONIC when it was taken */
};

struct transport;

/* Binds every endpoint.  Returns an owned transport or NULL with a
 * sentence in err. */
struct transport *
transport_new(const struct transport_opts *opts, char *err, size_t errlen);

/* Closes the sockets (unsent messages are dropped after a short linger);
 * accepts NULL; sets *tp to NULL. */
void transport_destroy(struct transport **tp);

/* The endpoint the i-th bind really got (a "*" port resolved), written
 * into out.  Returns 0 or -1. */
int
transport_endpoint(const struct transport *t, size_t i, char *out, size_t len);

/* Waits up to timeout_ms (-1: forever) for inbound traffic, answering
 * ZAP requests on the way.  Returns 1 when a message, an admin request
 * or a watched fd is ready, 0 on timeout, -1 on error (EINTR included: the
 * caller checks its signal flags and calls again). */
int transport_poll(struct transport *t, long timeout_ms);

/* Makes transport_poll also end its wait (and return 1) when `fd`
 * becomes readable (up to TRANSPORT_WATCH_MAX fds; -1 is ignored).  The
 * caller clears the fd. */
#define TRANSPORT_WATCH_MAX 3
void transport_watch_fd(struct transport *t, int fd);

/* Who sent an administration request: the frames before its empty
 * delimiter (the routing id of its REQ socket, and the REQ's request id
 * with ZMQ_REQ_CORRELATE), where its answer goes. */
struct transport_client {
	uint8_t env[2][255];
	size_t envlen[2];
	int nenv;
};

/* Takes one administration request without waiting: returns 1 with its
 * sender in *c and the request's bytes in buf (at most max - 1, then a
 * NUL) and their number in *len; 2 when a malformed one was thrown away
 * (logged), 0 when there is none.  Several may be in progress; each is
 * answered once, with transport_admin_reply, in any order. */
int transport_admin_recv(struct transport *t, struct transport_client *c,
    char *buf, size_t max, size_t *len);
/* Answers `c` with `head` (a C string) and text[0..len) in one frame. */
void
transport_admin_reply(struct transport *t, const struct transport_client *c,
    const char *head, const char *text, size_t len);

/* Takes one inbound message without waiting.  Returns 1 with *m filled
 * in, 0 when there is none. */
int transport_recv(struct transport *t, struct transport_msg *m);

/* What ZeroMQ still holds, not yet written to the connection, of the
 * messages sent on one account: counted up as transport_send hands them
 * over, down as libzmq's I/O thread has written each out or dropped it
 * (the connection closed).  The broker keeps one per connection with a
 * session, to notice a client that does not read, under one per party
 * (a parent, which counts what all its children count).  Each message
 * in ZeroMQ's hands holds a reference, as does the owner, and a child
 * holds one on its parent, so an account outlives the session while its
 * messages are still queued. */
struct transport_account;

/* A new account with nothing unsent, owned by the caller, whose
 * messages are counted on `parent` too (NULL: none; a parent must have
 * none of its own); NULL when out of memory. */
struct transport_account *
transport_account_new(struct transport_account *parent);
/* Gives up the owner's reference (queued messages keep theirs); accepts
 * NULL; sets *ap to NULL. */
void transport_account_release(struct transport_account **ap);
/* The bytes sent on `a` that ZeroMQ has not written out yet; read from
 * the broker's thread while the I/O thread counts down. */
size_t transport_account_unsent(const struct transport_account *a);

/* What transport_send did with a message. */
enum transport_sent {
	TRANSPORT_QUEUED = 0,
	TRANSPORT_GONE =
	    -1, /* no such peer (any more): its connection closed */
	TRANSPORT_FULL = -2,   /* its queue holds all ZeroMQ allows (SNDHWM) */
	TRANSPORT_FAILED = -3, /* anything else (no memory, say) */
};

/* Sends one message to a peer, a copy of data[0..len), counted on
 * `acct` (may be NULL: not counted) until ZeroMQ has written it out.  A
 * peer that is gone or cannot take more is not an error for the broker:
 * the message is dropped (the caller keeps whatever it would have
 * delivered) and the result says why. */
enum transport_sent
transport_send(struct transport *t, const struct transport_peer *peer,
    const uint8_t *data, size_t len, struct transport_account *acct);

/* Connections refused by ZAP since the last call, for the rate-limited
 * line in the log and for metrics, and the last of them: its address and
 * the transport key it offered (public: it is what an operator compares
 * with the parties' declared keys). */
struct transport_refused {
	uint64_t count;
	bool has_key;
	uint8_t key[TRANSPORT_KEY_LEN];
	char addr[TRANSPORT_ADDR_MAX + 1]; /* "" when ZAP gave none */
};
void transport_take_refused(struct transport *t, struct transport_refused *out);

#endif
