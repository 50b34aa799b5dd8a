/*
 * libschakel: the client side of schakel.v1 for one party.  It owns the
 * DEALER socket (the only client file that includes zmq.h), the
 * request/reply and delivery loops, retries and reconnects.  Envelopes,
 * receipts and frames are built and checked by the codec (proto/); this
 * file never parses protobuf itself and never logs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "schakel.h"

#include "env.h"
#include "frame.h"
#include "fsdir.h"
#include "keys.h"
#include "merkle.h"
#include "receipt.h"
#include "schakel-config.h"

#define S_DEFAULT_TIMEOUT_MS 10000
#define S_DEFAULT_HEARTBEAT_MS 10000
#define S_DEFAULT_TTL_MS (7ull * 24 * 3600 * 1000)
#define S_MAX_TTL_MS (3660ull * 24 * 3600 * 1000)
#define S_ROUTE_RETRIES 3  /* ROUTE_CHANGED: resolve and build again */
#define S_WAIT_MIN_MS 1000 /* a receive's waits for a Welcome, at least */
#define S_ATTEMPTS 5       /* reconnects (or retryable refusals) per request */
#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS 5000
#define S_BATCH_MAX 1024
#define S_WINDOW 64                /* submissions in flight at once */
#define S_BUNDLE_ALONE (64 * 1024) /* larger frames are sent alone */
#define S_OUT_DELAY_MS 100 /* the longest a frame waits for its bundle */
#define S_PENDING_MAX 256  /* deliveries kept while a send waits */
#define S_CACHE_SLOTS 256
/* A Deliver carries an envelope and a receipt; a little room for framing. */
#define S_FRAME_MAX (ENV_MAX_LEN + RECEIPT_MAX_LEN + 4096)

_Static_assert(SCHAKEL_ID_LEN == ENV_ID_LEN, "id length");
_Static_assert(SCHAKEL_KEY_LEN == KEYS_BYTES, "key length");
_Static_assert(SCHAKEL_NAME_MAX == ENV_MAX_NAME_LEN, "name length");
_Static_assert(SCHAKEL_MAX_RECIPIENTS == ENV_MAX_RECIPIENTS, "recipients");
_Static_assert(SCHAKEL_MAX_ATTRS == ENV_MAX_ATTRS, "attributes");
_Static_assert(SCHAKEL_ERROR_MAX > FRAME_MAX_TEXT_LEN, "error room");

/* The ids of messages handed to the application: a ring of the last
 * SCHAKEL_SEEN_IDS ids with a chained hash index over it, and the file
 * they are also kept in (opts.seen_file), if any. */
struct s_seen {
	uint8_t (*ids)[ENV_ID_LEN];
	int32_t *next;   /* per ring slot: next slot in its bucket, or -1 */
	int32_t *bucket; /* per bucket: first slot, or -1 */
	size_t count;
	size_t pos;
	/* Keyed, because ids are chosen by senders and begin with their
	 * time (UUIDv7): their own bytes would put a minute's ids in one
	 * bucket. */
	uint8_t key[crypto_shorthash_KEYBYTES];
	bool has_file;
	int fd;            /* the file, locked (flock) while the client lives */
	size_t in_file;    /* ids in it, after its header */
	size_t compact_at; /* rewritten when in_file reaches this */
	char path[PATH_MAX];
};

/* The file's first 16 bytes (the size of one id, so records stay
 * aligned); then ids, 16 bytes each, oldest first. */
static const char s_seen_magic[ENV_ID_LEN] = "schakel-seen-v1\n";

struct schakel_client {
	bool stop; /* schakel_receive_stop was called from a handler */
	/* The end of the schakel_receive in progress (CLOCK_MONOTONIC ms;
	 * UINT64_MAX: none): waits for a Welcome and backoffs end there. */
	uint64_t deadline_ms;
	void *ctx;
	void *sock;
	void *mon; /* PAIR socket reading the DEALER's monitor events */
	unsigned mon_seq;
	char endpoint[512];
	char party[ENV_MAX_NAME_LEN + 1];
	char peers[PATH_MAX];
	bool has_peers;
	uint8_t broker_transport[KEYS_BYTES];
	uint8_t broker_sign[KEYS_BYTES];
	struct keys_secret *keys;
	int timeout_ms;

	/* From the Welcome. */
	uint32_t heartbeat_ms;
	uint32_t max_message_bytes;
	uint32_t max_credit;
	bool bundles;    /* the broker reads bundles: frames are sent in them */
	bool no_bundles; /* the broker refused a Hello that asked for them */
	bool in_hello;   /* a Refusal without corr_id answers the Hello */

	/* Frames waiting to go as one message (s_send_out sends them
	 * before anything is waited for), and the bundle being read: its
	 * frames are taken one at a time (docs/protocol.md 10.9). */
	struct frame_bundle out;
	uint64_t out_since_ms;   /* when the first frame waiting went in */
	uint64_t inbox_taken_ms; /* when the last inbox frame was handed */
	struct codec_buf inbox;
	struct frame inbox_f;
	size_t inbox_off;

	uint64_t corr;
	uint64_t last_sent_ms; /* monotonic */
	uint64_t last_heard_ms;
	uint64_t opened_ms; /* when the connection was made */
	uint32_t credit;    /* granted and not yet used, as far as we know */
	int handshake_hint; /* last monitor event that explains a silence */

	struct merkle_cache *cache;
	struct codec_buf pending[S_PENDING_MAX]; /* Deliver/Notice frames */
	size_t pending_head;
	size_t pending_n;
	struct s_seen seen;

	schakel_notice_fn notice_fn;
	void *notice_arg;
	char err[SCHAKEL_ERROR_MAX];
};

/* One envelope being submitted. */
struct s_job {
	struct codec_buf env;
	struct env_header hdr; /* as signed */
	uint8_t header_hash[ENV_HASH_LEN];
	enum { S_TOSEND, S_SENT, S_DONE } state;
	unsigned retries;
	int code;
	struct codec_buf receipt;    /* SignedReceipt bytes, when accepted */
	size_t msg;                  /* index into the caller's messages */
	char why[SCHAKEL_ERROR_MAX]; /* the sentence of a failure */
};

/* Per-message results of a send, and the sentence of the first failure. */
struct s_outcome {
	int *results;
	size_t first;
	char err[SCHAKEL_ERROR_MAX];
};

static uint64_t
s_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
s_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
s_sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Exponential backoff with jitter for the attempt-th retry (1-based),
 * ending at `deadline` (CLOCK_MONOTONIC ms) at the latest. */
static void
s_backoff(unsigned attempt, uint64_t deadline)
{
	uint64_t ms = S_BACKOFF_MIN_MS, now;

	for (unsigned i = 1; i < attempt && ms < S_BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > S_BACKOFF_MAX_MS)
		ms = S_BACKOFF_MAX_MS;
	ms = ms / 2 + randombytes_uniform((uint32_t)(ms / 2) + 1);
	now = s_mono_ms();
	if (deadline != UINT64_MAX)
		ms = now >= deadline      ? 0
		    : ms < deadline - now ? ms
					  : deadline - now;
	s_sleep_ms(ms);
}

/* Copy text into a bounded buffer with every byte outside printable ASCII
 * replaced by '?', so a peer's text never carries control characters. */
static void
s_clean(char *dst, size_t len, const char *src)
{
	size_t i;

	if (len == 0)
		return;
	for (i = 0; i + 1 < len && src[i] != '\0'; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

/* Set the client's sentence (clipped, cleaned) and return `code`. */
static int s_fail(struct schakel_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int
s_fail(struct schakel_client *c, int code, const char *fmt, ...)
{
	char buf[SCHAKEL_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	s_clean(c->err, sizeof c->err, buf);
	return code;
}

static void
s_hex(const uint8_t *b, size_t n, char *out, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n && 2 * i + 2 < len; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * i] = '\0';
}

/* Copy a caller's string into a fixed field.  Returns SCHAKEL_OK, or
 * SCHAKEL_E_TOO_LARGE when it does not fit. */
static int
s_copy(char *dst, size_t len, const char *src)
{
	size_t n = src != NULL ? strlen(src) : 0;

	if (n >= len)
		return SCHAKEL_E_TOO_LARGE;
	if (n > 0)
		memcpy(dst, src, n);
	dst[n] = '\0';
	return SCHAKEL_OK;
}

/* A key file's problem as one sentence, "file:line:col: message" when it
 * is about one line. */
static void
s_keys_msg(const char *path, const struct keys_error *ke, char *out, size_t len)
{
	int n;

	if (ke->line > 0)
		n = snprintf(
		    out, len, "%s:%u:%u: %s", path, ke->line, ke->col, ke->msg);
	else
		n = snprintf(out, len, "%s", ke->msg);
	if (n < 0 || (size_t)n >= len)
		out[len - 1] = '\0'; /* clipped: still one sentence */
}

/* ---- redelivery filter ---- */

static int
s_seen_init(struct s_seen *s)
{
	s->ids = calloc(SCHAKEL_SEEN_IDS, sizeof *s->ids);
	s->next = malloc(SCHAKEL_SEEN_IDS * sizeof *s->next);
	s->bucket = malloc(SCHAKEL_SEEN_IDS * sizeof *s->bucket);
	if (s->ids == NULL || s->next == NULL || s->bucket == NULL)
		return -1;
	for (size_t i = 0; i < SCHAKEL_SEEN_IDS; i++) {
		s->next[i] = -1;
		s->bucket[i] = -1;
	}
	s->count = 0;
	s->pos = 0;
	randombytes_buf(s->key, sizeof s->key);
	return 0;
}

static void
s_seen_free(struct s_seen *s)
{
	if (s->has_file)
		close(s->fd);
	free(s->ids);
	free(s->next);
	free(s->bucket);
	memset(s, 0, sizeof *s);
}

static size_t
s_seen_hash(const struct s_seen *s, const uint8_t id[ENV_ID_LEN])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, id, ENV_ID_LEN, s->key);
	memcpy(&v, h, sizeof v);
	return (size_t)(v % SCHAKEL_SEEN_IDS);
}

static bool
s_seen_has(const struct s_seen *s, const uint8_t id[ENV_ID_LEN])
{
	for (int32_t i = s->bucket[s_seen_hash(s, id)]; i >= 0; i = s->next[i])
		if (memcmp(s->ids[i], id, ENV_ID_LEN) == 0)
			return true;
	return false;
}

static void
s_seen_add(struct s_seen *s, const uint8_t id[ENV_ID_LEN])
{
	size_t slot = s->pos;
	int32_t *p;

	if (s->count == SCHAKEL_SEEN_IDS) {
		/* Evict the oldest id, which lives in this slot. */
		p = &s->bucket[s_seen_hash(s, s->ids[slot])];
		while (*p >= 0 && *p != (int32_t)slot)
			p = &s->next[*p];
		if (*p == (int32_t)slot)
			*p = s->next[slot];
	} else {
		s->count++;
	}
	memcpy(s->ids[slot], id, ENV_ID_LEN);
	p = &s->bucket[s_seen_hash(s, id)];
	s->next[slot] = *p;
	*p = (int32_t)slot;
	s->pos = (slot + 1) % SCHAKEL_SEEN_IDS;
}

/* Writes all of buf at off; 0 or -1 (errno set). */
static int
s_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = EIO;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Whether the `len` bytes a file begins with are what a crash may leave
 * of its header: a part of it, or zeros (delayed allocation). */
static bool
s_seen_head_torn(const char *head, size_t len)
{
	static const char zero[ENV_ID_LEN];

	return (len < ENV_ID_LEN && memcmp(head, s_seen_magic, len) == 0) ||
	    memcmp(head, zero, len) == 0;
}

/* Opens the absolute `path` for the client's exclusive use: created
 * (mode 0600) with its header when it does not exist or a crash cut its
 * header short, else it must begin with the header.  Returns the locked
 * descriptor, or -1 with the sentence. */
static int
s_seen_lock(struct schakel_client *c, const char *path, int flags)
{
	char head[ENV_ID_LEN];
	const char *why = NULL;
	struct stat st, now;
	ssize_t got = 0;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | flags, 0600);

	if (fd < 0)
		why = strerror(errno);
	else if (fstat(fd, &st) != 0)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	else if (flock(fd, LOCK_EX | LOCK_NB) != 0 || stat(path, &now) != 0 ||
	    now.st_ino != st.st_ino || now.st_dev != st.st_dev)
		/* (A file replaced between open and flock is another
		 * client's compaction: in use too.) */
		why = "in use by another client of this party (give each "
		      "its own)";
	else if (st.st_size > 0 && (got = pread(fd, head, sizeof head, 0)) < 0)
		why = strerror(errno);
	else if ((got < (ssize_t)sizeof head ||
		     memcmp(head, s_seen_magic, sizeof head) != 0) &&
	    !s_seen_head_torn(head, (size_t)got))
		why = "not a file of message ids (it does not begin with "
		      "schakel-seen-v1); not touched";
	else if ((got < (ssize_t)sizeof head ||
		     memcmp(head, s_seen_magic, sizeof head) != 0) &&
	    (ftruncate(fd, 0) != 0 ||
		s_pwrite_all(fd, s_seen_magic, sizeof head, 0) != 0 ||
		fdatasync(fd) != 0 || fsdir_sync_parent(path) != 0))
		why = strerror(errno);
	if (why == NULL)
		return fd;
	s_fail(c, SCHAKEL_E_BAD_ARGUMENT, "seen file '%s': %s", path, why);
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Takes the ids kept in opts.seen_file: the last SCHAKEL_SEEN_IDS, in
 * order.  A torn last record (a crash while it was written) is cut off,
 * and a rewrite that a crash interrupted (".new") is removed. */
static int
s_seen_open(struct schakel_client *c, const char *path)
{
	struct s_seen *s = &c->seen;
	uint8_t buf[256][ENV_ID_LEN];
	char tmp[PATH_MAX + 8];
	struct stat st;
	size_t n, first;
	int fd;

	/* Kept absolute: the application may change its folder later. */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || realpath(path, s->path) == NULL) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT, "seen file '%s': %s",
		    path, strerror(e));
	}
	close(fd);
	fd = s_seen_lock(c, s->path, 0);
	if (fd < 0)
		return SCHAKEL_E_BAD_ARGUMENT;
	s->fd = fd;
	s->has_file = true;
	snprintf(tmp, sizeof tmp, "%s.new", s->path);
	(void)unlink(tmp);
	if (fstat(fd, &st) != 0)
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT, "seen file '%s': %s",
		    s->path, strerror(errno));
	if (st.st_size < ENV_ID_LEN) /* s_seen_lock wrote one */
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
		    "seen file '%s': its header is missing", s->path);
	n = (size_t)(st.st_size / ENV_ID_LEN) - 1;
	if (st.st_size % ENV_ID_LEN != 0 &&
	    ftruncate(fd, (off_t)((n + 1) * ENV_ID_LEN)) != 0)
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
		    "seen file '%s': cannot cut off a torn record: %s", s->path,
		    strerror(errno));
	first = n > SCHAKEL_SEEN_IDS ? n - SCHAKEL_SEEN_IDS : 0;
	for (size_t i = first; i < n;) {
		size_t want = n - i < 256 ? n - i : 256;
		ssize_t got = pread(
		    fd, buf, want * ENV_ID_LEN, (off_t)((i + 1) * ENV_ID_LEN));

		if (got != (ssize_t)(want * ENV_ID_LEN))
			return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
			    "seen file '%s': cannot read it: %s", s->path,
			    got < 0 ? strerror(errno) : "short read");
		for (size_t j = 0; j < want; j++)
			s_seen_add(s, buf[j]);
		i += want;
	}
	s->in_file = n;
	s->compact_at = 2 * SCHAKEL_SEEN_IDS;
	return SCHAKEL_OK;
}

/* Rewrites the file with only the ids in memory (it grows to twice
 * that, then this): a new file, synced, renamed over the old one, the
 * folder synced.  A crash leaves either file whole. */
static int
s_seen_compact(struct schakel_client *c)
{
	struct s_seen *s = &c->seen;
	uint8_t buf[256][ENV_ID_LEN];
	char tmp[PATH_MAX + 8];
	size_t start =
	    (s->pos + SCHAKEL_SEEN_IDS - s->count) % SCHAKEL_SEEN_IDS;
	int fd;

	snprintf(tmp, sizeof tmp, "%s.new", s->path);
	(void)unlink(tmp);
	fd = s_seen_lock(c, tmp, O_EXCL);
	if (fd < 0) {
		char why[SCHAKEL_ERROR_MAX];

		memcpy(why, c->err, sizeof why);
		s_fail(c, SCHAKEL_E_INTERNAL,
		    "seen file '%s': cannot rewrite it (it keeps growing): %s",
		    s->path, why);
		return -1;
	}
	for (size_t i = 0; i < s->count;) {
		size_t want = s->count - i < 256 ? s->count - i : 256;

		for (size_t j = 0; j < want; j++)
			memcpy(buf[j],
			    s->ids[(start + i + j) % SCHAKEL_SEEN_IDS],
			    ENV_ID_LEN);
		if (s_pwrite_all(fd, buf, want * ENV_ID_LEN,
			(off_t)((i + 1) * ENV_ID_LEN)) != 0)
			goto fail;
		i += want;
	}
	if (fdatasync(fd) != 0 || rename(tmp, s->path) != 0)
		goto fail;
	(void)fsdir_sync_parent(s->path);
	close(s->fd);
	s->fd = fd;
	s->in_file = s->count;
	return 0;
fail:
	s_fail(c, SCHAKEL_E_INTERNAL, "seen file '%s': cannot rewrite it: %s",
	    s->path, strerror(errno));
	close(fd);
	(void)unlink(tmp);
	return -1;
}

/* Remembers `id` as handed over: in memory and, with a seen file,
 * written and synced there before the caller acknowledges it, so a
 * redelivery whose Ack was lost is recognised after a restart or crash
 * too.  Returns 0, or -1 with the sentence when the file could not be
 * written (the id is then remembered in memory only). */
static int
s_seen_record(struct schakel_client *c, const uint8_t id[ENV_ID_LEN])
{
	struct s_seen *s = &c->seen;

	/* Rewritten before the new id joins, which is then appended like
	 * any other.  When that fails the file just grows, and it is tried
	 * again after as many ids more. */
	if (s->has_file && s->in_file >= s->compact_at)
		s->compact_at = s_seen_compact(c) == 0
		    ? 2 * SCHAKEL_SEEN_IDS
		    : s->in_file + SCHAKEL_SEEN_IDS;
	s_seen_add(s, id);
	if (!s->has_file)
		return 0;
	if (s_pwrite_all(s->fd, id, ENV_ID_LEN,
		(off_t)((s->in_file + 1) * ENV_ID_LEN)) != 0 ||
	    fdatasync(s->fd) != 0) {
		s_fail(c, SCHAKEL_E_INTERNAL,
		    "seen file '%s': cannot record a handed-over message: %s",
		    s->path, strerror(errno));
		return -1;
	}
	s->in_file++;
	return 0;
}

/* ---- pending deliveries (arrived while a send waited) ---- */

static void
s_pending_clear(struct schakel_client *c)
{
	for (size_t i = 0; i < S_PENDING_MAX; i++)
		codec_buf_clear(&c->pending[i]);
	c->pending_head = 0;
	c->pending_n = 0;
}

/* Keep a copy of a Deliver or Notice frame.  When there is no room it is
 * dropped: the broker delivers it again after its ack timeout. */
static void
s_pending_push(struct schakel_client *c, const uint8_t *data, size_t len)
{
	struct codec_buf *b;

	if (c->pending_n == S_PENDING_MAX)
		return;
	b = &c->pending[(c->pending_head + c->pending_n) % S_PENDING_MAX];
	b->data = malloc(len > 0 ? len : 1);
	if (b->data == NULL)
		return;
	memcpy(b->data, data, len);
	b->len = len;
	c->pending_n++;
}

/* Take the oldest kept frame; the caller owns *out. */
static bool
s_pending_pop(struct schakel_client *c, struct codec_buf *out)
{
	if (c->pending_n == 0)
		return false;
	*out = c->pending[c->pending_head];
	memset(&c->pending[c->pending_head], 0, sizeof *out);
	c->pending_head = (c->pending_head + 1) % S_PENDING_MAX;
	c->pending_n--;
	return true;
}

/* ---- the socket ---- */

static void
s_sock_close(struct schakel_client *c)
{
	if (c->sock != NULL) {
		(void)zmq_socket_monitor(c->sock, NULL, 0); /* closing */
		zmq_close(c->sock);
		c->sock = NULL;
	}
	if (c->mon != NULL) {
		zmq_close(c->mon);
		c->mon = NULL;
	}
	s_pending_clear(c);
	c->credit = 0;
	/* What was not sent is sent again, or delivered again, over the
	 * next connection. */
	frame_bundle_reset(&c->out);
	frame_clear(&c->inbox_f);
	codec_buf_clear(&c->inbox);
	c->inbox_off = 0;
	c->bundles = false;
}

/* A fresh DEALER socket with CURVE keys, watched by a monitor so that a
 * refused handshake is reported instead of waited out. */
static int
s_sock_open(struct schakel_client *c)
{
	char mon_ep[64];
	int linger = 0, timeout = c->timeout_ms;
	int64_t maxmsg = S_FRAME_MAX;
	int events = ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
	    ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
	    ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
	    ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED;

	c->handshake_hint = 0;
	c->opened_ms = s_mono_ms();
	c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
	if (c->sock == NULL)
		return s_fail(c, SCHAKEL_E_INTERNAL,
		    "cannot create a socket: %s", zmq_strerror(zmq_errno()));
	if (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, c->broker_transport,
		KEYS_BYTES) != 0 ||
	    zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, c->keys->pub.transport,
		KEYS_BYTES) != 0 ||
	    zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, c->keys->transport_sk,
		KEYS_BYTES) != 0 ||
	    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
	    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &timeout, sizeof timeout) !=
		0 ||
	    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) !=
		0) {
		s_sock_close(c);
		return s_fail(c, SCHAKEL_E_INTERNAL,
		    "cannot set up CurveZMQ (is libzmq built with CURVE?): %s",
		    zmq_strerror(zmq_errno()));
	}
	snprintf(
	    mon_ep, sizeof mon_ep, "inproc://schakel-monitor-%u", ++c->mon_seq);
	if (zmq_socket_monitor(c->sock, mon_ep, events) != 0 ||
	    (c->mon = zmq_socket(c->ctx, ZMQ_PAIR)) == NULL ||
	    zmq_setsockopt(c->mon, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
	    zmq_connect(c->mon, mon_ep) != 0) {
		s_sock_close(c);
		return s_fail(c, SCHAKEL_E_INTERNAL,
		    "cannot monitor the connection: %s",
		    zmq_strerror(zmq_errno()));
	}
	if (zmq_connect(c->sock, c->endpoint) != 0) {
		s_sock_close(c);
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
		    "cannot connect to '%s': %s", c->endpoint,
		    zmq_strerror(zmq_errno()));
	}
	c->last_sent_ms = c->last_heard_ms = s_mono_ms();
	return SCHAKEL_OK;
}

static const char *
s_hint(const struct schakel_client *c)
{
	switch (c->handshake_hint) {
	case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
	case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
		return " (the CurveZMQ handshake failed: check the broker's "
		       "transport key)";
	default:
		return "";
	}
}

/* Read the monitor's events.  Returns SCHAKEL_E_UNKNOWN_PARTY when the
 * broker refused this party's transport key, SCHAKEL_E_UNAVAILABLE when
 * the connection was lost, otherwise SCHAKEL_OK (a failed handshake is
 * remembered as a hint for the sentence). */
static int
s_monitor(struct schakel_client *c)
{
	uint8_t ev[6];
	uint16_t event;
	uint32_t value;
	zmq_msg_t addr;
	int n;

	for (;;) {
		n = zmq_recv(c->mon, ev, sizeof ev, ZMQ_DONTWAIT);
		if (n < 0)
			return SCHAKEL_OK;
		/* The second frame is the endpoint; not needed. */
		zmq_msg_init(&addr);
		(void)zmq_msg_recv(&addr, c->mon, ZMQ_DONTWAIT);
		zmq_msg_close(&addr);
		if (n != (int)sizeof ev)
			continue;
		memcpy(&event, ev, sizeof event);
		memcpy(&value, ev + 2, sizeof value);
		if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
			return s_fail(c, SCHAKEL_E_UNKNOWN_PARTY,
			    "the broker at %s refused the transport key of "
			    "'%s' (status %u): is the party declared with "
			    "this key?",
			    c->endpoint, c->party, (unsigned)value);
		if (event == ZMQ_EVENT_DISCONNECTED)
			/* libzmq would reconnect by itself, but the broker
			 * forgets a connection's session: say Hello again. */
			return s_fail(c, SCHAKEL_E_UNAVAILABLE,
			    "the connection to the broker at %s was lost%s",
			    c->endpoint, s_hint(c));
		if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
			c->handshake_hint = 0;
		else
			c->handshake_hint = event;
	}
}

static int
s_zsend(struct schakel_client *c, const uint8_t *p, size_t len)
{
	if (c->sock == NULL || zmq_send(c->sock, p, len, 0) < 0)
		return s_fail(c, SCHAKEL_E_UNAVAILABLE,
		    "cannot send to the broker at %s: %s", c->endpoint,
		    c->sock == NULL ? "not connected"
				    : zmq_strerror(zmq_errno()));
	c->last_sent_ms = s_mono_ms();
	return SCHAKEL_OK;
}

/* Sends the frames waiting in the bundle.  Returns SCHAKEL_OK or
 * SCHAKEL_E_UNAVAILABLE. */
static int
s_send_out(struct schakel_client *c)
{
	const uint8_t *p;
	size_t n;
	int rc = SCHAKEL_OK;

	if (frame_bundle_finish(&c->out, &p, &n))
		rc = s_zsend(c, p, n);
	frame_bundle_reset(&c->out);
	return rc;
}

/* Encode and send one frame: to a broker that reads bundles, into the
 * bundle that goes before the next wait.  Returns SCHAKEL_OK, a codec
 * code for a frame that does not encode, or SCHAKEL_E_UNAVAILABLE. */
static int
s_send(struct schakel_client *c, const struct frame *f)
{
	struct codec_buf b = {0};
	size_t limit = c->max_message_bytes;
	int rc;

	rc = frame_encode(f, &b);
	if (rc != SCHAKEL_OK)
		return s_fail(c, rc, "cannot encode a %d frame: %s",
		    (int)f->kind, schakel_strerror(rc));
	if (c->bundles && b.len <= S_BUNDLE_ALONE) {
		/* A bundle stays within what the broker takes. */
		if (c->out.count == FRAME_BUNDLE_MAX ||
		    (c->out.count > 0 &&
			frame_bundle_size_with(&c->out, b.len) > limit))
			rc = s_send_out(c);
		if (c->out.count == 0)
			c->out_since_ms = s_mono_ms();
		if (rc == SCHAKEL_OK &&
		    frame_bundle_add_raw(&c->out, b.data, b.len) ==
			SCHAKEL_OK) {
			codec_buf_clear(&b);
			return SCHAKEL_OK;
		}
	}
	/* A large frame (bundling saves nothing there), or no memory for
	 * it: on its own, after what waits. */
	if (rc == SCHAKEL_OK)
		rc = s_send_out(c);
	if (rc == SCHAKEL_OK)
		rc = s_zsend(c, b.data, b.len);
	codec_buf_clear(&b);
	return rc;
}

static int
s_send_ping(struct schakel_client *c)
{
	struct frame f = {0};

	f.corr_id = ++c->corr;
	f.kind = FRAME_PING;
	f.u.ping_ms = s_wall_ms();
	return s_send(c, &f);
}

/* Takes the next frame of the bundle being read into *raw (an owned
 * copy) and *f.  Returns 1 with a frame, 0 with none (one that does not
 * decode is dropped, as in s_pump), -1 when the bundle is finished. */
static int
s_inbox_take(struct schakel_client *c, struct codec_buf *raw, struct frame *f)
{
	struct frame_bytes in;

	if (!frame_bundle_next(&c->inbox_f.u.bundle, &c->inbox_off, &in)) {
		frame_clear(&c->inbox_f);
		codec_buf_clear(&c->inbox);
		c->inbox_off = 0;
		return -1;
	}
	raw->data = malloc(in.len > 0 ? in.len : 1);
	if (raw->data == NULL)
		return 0; /* the broker sends it again */
	memcpy(raw->data, in.data, in.len);
	raw->len = in.len;
	if (frame_decode(raw->data, raw->len, 0, f) != SCHAKEL_OK ||
	    f->kind == FRAME_BUNDLE) {
		frame_clear(f);
		codec_buf_clear(raw);
		if (c->credit > 0) /* see s_pump */
			c->credit--;
		return 0;
	}
	return 1;
}

/*
 * Wait up to wait_ms for one inbound frame, keeping the heartbeat: a
 * Ping is sent when nothing was sent for a heartbeat interval, and a
 * broker Ping is answered here.  The frames of a bundle are returned one
 * per call, and what waits to be sent is sent before any wait.  On
 * return *raw holds an owned copy of the frame and *f its decoded frame
 * (clear both), or raw->data is NULL when nothing came.  Returns
 * SCHAKEL_OK, SCHAKEL_E_UNKNOWN_PARTY (the handshake was refused) or
 * SCHAKEL_E_UNAVAILABLE (broker silent for three heartbeats since
 * `since`, or a socket error).
 */
/* Frames handed over one at a time (those of a bundle, and those set
 * aside while a request waited), the application working on each: what
 * they made us send (acks) goes once it waited S_OUT_DELAY_MS, or at
 * once after a handler that took that long (the next may take longer
 * still), and a Ping when one is due, as if each frame had come alone.
 * Called before the next is taken. */
static int
s_flush_due(struct schakel_client *c, uint64_t now)
{
	if (c->out.count > 0 &&
	    (now - c->out_since_ms >= S_OUT_DELAY_MS ||
		now - c->inbox_taken_ms >= S_OUT_DELAY_MS))
		return s_send_out(c);
	if (now - c->last_sent_ms >= c->heartbeat_ms)
		return s_send_ping(c);
	return SCHAKEL_OK;
}

static int
s_pump(struct schakel_client *c, uint64_t since, int wait_ms,
    struct codec_buf *raw, struct frame *f)
{
	zmq_pollitem_t items[2];
	uint64_t now, silent_from, until, next, end;
	zmq_msg_t msg;
	int rc, n;

	memset(raw, 0, sizeof *raw);
	memset(f, 0, sizeof *f);
	until = s_mono_ms() + (uint64_t)(wait_ms > 0 ? wait_ms : 0);
	for (;;) {
		if (c->inbox.data != NULL) {
			now = s_mono_ms();
			rc = s_flush_due(c, now);
			if (rc != SCHAKEL_OK)
				return rc;
			n = s_inbox_take(c, raw, f);
			if (n == 1) {
				c->last_heard_ms = c->inbox_taken_ms = now;
				goto take;
			}
			continue;
		}
		now = s_mono_ms();
		silent_from =
		    c->last_heard_ms > since ? c->last_heard_ms : since;
		if (now - silent_from >= 3ull * c->heartbeat_ms)
			return s_fail(c, SCHAKEL_E_UNAVAILABLE,
			    "the broker at %s has been silent for %u ms%s",
			    c->endpoint, (unsigned)(now - silent_from),
			    s_hint(c));
		if (now - c->last_sent_ms >= c->heartbeat_ms) {
			rc = s_send_ping(c);
			if (rc != SCHAKEL_OK)
				return rc;
		}
		rc = s_send_out(c);
		if (rc != SCHAKEL_OK)
			return rc;
		items[0] = (zmq_pollitem_t){c->sock, 0, ZMQ_POLLIN, 0};
		items[1] = (zmq_pollitem_t){c->mon, 0, ZMQ_POLLIN, 0};
		next = c->last_sent_ms + c->heartbeat_ms;
		end = until < next ? until : next;
		n = zmq_poll(items, 2, end > now ? (long)(end - now) : 0);
		if (n < 0) {
			if (zmq_errno() == EINTR)
				continue;
			return s_fail(c, SCHAKEL_E_UNAVAILABLE,
			    "waiting for the broker failed: %s",
			    zmq_strerror(zmq_errno()));
		}
		if (items[1].revents & ZMQ_POLLIN) {
			rc = s_monitor(c);
			if (rc != SCHAKEL_OK)
				return rc;
		}
		if (!(items[0].revents & ZMQ_POLLIN)) {
			if (s_mono_ms() >= until)
				return SCHAKEL_OK;
			continue;
		}
		zmq_msg_init(&msg);
		if (zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&msg);
			continue;
		}
		c->last_heard_ms = s_mono_ms();
		raw->len = zmq_msg_size(&msg);
		raw->data = malloc(raw->len > 0 ? raw->len : 1);
		if (raw->data == NULL) {
			zmq_msg_close(&msg);
			raw->len = 0;
			continue; /* the broker sends it again */
		}
		memcpy(raw->data, zmq_msg_data(&msg), raw->len);
		zmq_msg_close(&msg);
		if (frame_is_bundle(raw->data, raw->len) &&
		    frame_decode(raw->data, raw->len, 0, &c->inbox_f) ==
			SCHAKEL_OK) {
			/* Its frames point into raw: kept until read. */
			c->inbox = *raw;
			c->inbox_off = 0;
			memset(raw, 0, sizeof *raw);
			continue;
		}
		if (frame_decode(raw->data, raw->len, 0, f) != SCHAKEL_OK ||
		    f->kind == FRAME_BUNDLE) {
			/* A frame we cannot read is dropped; what it carried
			 * is sent again (deliveries, until the broker's
			 * delivery limit makes it a dead letter) or times
			 * out.  The broker spent a credit on it if it was a
			 * delivery: count it as one, so the credit is granted
			 * again (a credit too many is capped by the broker);
			 * otherwise both sides disagree until none is left. */
			frame_clear(f);
			if (c->credit > 0)
				c->credit--;
			codec_buf_clear(raw);
			continue;
		}
	take:
		if (f->kind == FRAME_PING) {
			struct frame pong = {0};

			pong.corr_id = f->corr_id;
			pong.kind = FRAME_PONG;
			pong.u.ping_ms = f->u.ping_ms;
			frame_clear(f);
			codec_buf_clear(raw);
			rc = s_send(c, &pong);
			if (rc != SCHAKEL_OK)
				return rc;
			continue;
		}
		if (f->kind == FRAME_PONG) {
			frame_clear(f);
			codec_buf_clear(raw);
			continue;
		}
		return SCHAKEL_OK;
	}
}

/* Keep a Deliver or Notice that arrived while waiting for something else;
 * drop anything else (late replies to earlier attempts). */
static void
s_aside(struct schakel_client *c, struct codec_buf *raw, struct frame *f)
{
	if (f->kind == FRAME_DELIVER || f->kind == FRAME_NOTICE) {
		if (c->credit > 0)
			c->credit--;
		s_pending_push(c, raw->data, raw->len);
	}
	frame_clear(f);
	codec_buf_clear(raw);
}

/* Wait until timeout_ms for the reply to a request in [lo, hi).  Returns
 * SCHAKEL_OK with *f holding the reply (clear it), SCHAKEL_E_UNAVAILABLE
 * on timeout or silence, or SCHAKEL_E_UNKNOWN_PARTY. */
static int
s_wait_range(
    struct schakel_client *c, uint64_t lo, uint64_t hi, struct frame *f)
{
	uint64_t start = s_mono_ms(), now,
		 end = start + (uint64_t)c->timeout_ms;
	struct codec_buf raw;
	int rc;

	/* Within a schakel_receive, no later than its end, but a second
	 * at least: a Welcome slower than a caller's short timeouts must
	 * not keep it from ever connecting again. */
	if (c->deadline_ms < end)
		end = c->deadline_ms > start + S_WAIT_MIN_MS ? c->deadline_ms
		    : start + S_WAIT_MIN_MS < end ? start + S_WAIT_MIN_MS
						  : end;
	for (;;) {
		now = s_mono_ms();
		if (now >= end)
			return s_fail(c, SCHAKEL_E_UNAVAILABLE,
			    "no answer from the broker at %s within %llu ms%s",
			    c->endpoint,
			    (unsigned long long)(end > start ? end - start : 0),
			    s_hint(c));
		rc = s_pump(c, start, (int)(end - now), &raw, f);
		if (rc != SCHAKEL_OK)
			return rc;
		if (raw.data == NULL)
			continue;
		if ((f->corr_id >= lo && f->corr_id < hi &&
			f->kind != FRAME_DELIVER && f->kind != FRAME_NOTICE) ||
		    (c->in_hello && f->kind == FRAME_REFUSAL &&
			f->corr_id == 0)) {
			codec_buf_clear(&raw);
			return SCHAKEL_OK;
		}
		s_aside(c, &raw, f);
	}
}

static int
s_wait_reply(struct schakel_client *c, uint64_t corr, struct frame *f)
{
	return s_wait_range(c, corr, corr + 1, f);
}

/* Say Hello on a fresh socket and check the Welcome.  A broker made
 * before bundles refuses a Hello that asks for them as MALFORMED (with no
 * corr_id: it could not read it); then it is said again without. */
static int
s_hello(struct schakel_client *c)
{
	struct frame f = {0}, r = {0};
	uint64_t corr;
	int rc;

	for (;;) {
		corr = ++c->corr;
		memset(&f, 0, sizeof f);
		f.corr_id = corr;
		f.kind = FRAME_HELLO;
		snprintf(f.u.hello.protocol, sizeof f.u.hello.protocol, "%s",
		    FRAME_PROTOCOL);
		snprintf(f.u.hello.party_id, sizeof f.u.hello.party_id, "%s",
		    c->party);
		snprintf(f.u.hello.software, sizeof f.u.hello.software,
		    "libschakel %s", SCHAKEL_VERSION);
		f.u.hello.bundles = !c->no_bundles;
		rc = s_send(c, &f);
		if (rc != SCHAKEL_OK)
			return rc;
		c->in_hello = true;
		rc = s_wait_reply(c, corr, &r);
		c->in_hello = false;
		if (rc != SCHAKEL_OK)
			return rc;
		if (r.kind == FRAME_REFUSAL && r.corr_id == 0 &&
		    r.u.refusal.code == SCHAKEL_E_MALFORMED && !c->no_bundles) {
			c->no_bundles = true;
			frame_clear(&r);
			continue;
		}
		break;
	}
	if (r.kind == FRAME_REFUSAL) {
		char reason[FRAME_MAX_TEXT_LEN + 1];

		s_clean(reason, sizeof reason, r.u.refusal.reason);
		rc = r.u.refusal.code != 0 ? (int)r.u.refusal.code
					   : SCHAKEL_E_PROTOCOL;
		frame_clear(&r);
		return s_fail(c, rc, "the broker refused the Hello of '%s': %s",
		    c->party, reason);
	}
	if (r.kind != FRAME_WELCOME) {
		frame_clear(&r);
		return s_fail(c, SCHAKEL_E_PROTOCOL,
		    "the broker answered Hello with frame %d, not Welcome",
		    (int)r.kind);
	}
	if (strcmp(r.u.welcome.protocol, FRAME_PROTOCOL) != 0) {
		frame_clear(&r);
		return s_fail(c, SCHAKEL_E_PROTOCOL,
		    "the broker speaks another protocol version");
	}
	if (sodium_memcmp(
		r.u.welcome.broker_sign_key, c->broker_sign, KEYS_BYTES) != 0) {
		frame_clear(&r);
		return s_fail(c, SCHAKEL_E_BAD_SIGNATURE,
		    "the broker at %s announces another signing key than the "
		    "pinned one: check the broker keys in the client "
		    "configuration",
		    c->endpoint);
	}
	c->heartbeat_ms = r.u.welcome.heartbeat_ms != 0
	    ? r.u.welcome.heartbeat_ms
	    : S_DEFAULT_HEARTBEAT_MS;
	c->max_message_bytes = r.u.welcome.max_message_bytes;
	c->bundles = r.u.welcome.bundles;
	c->max_credit =
	    r.u.welcome.max_credit != 0 ? r.u.welcome.max_credit : 1;
	c->credit = 0;
	frame_clear(&r);
	return SCHAKEL_OK;
}

/* Errors that another connection attempt cannot cure. */
static bool
s_final(int rc)
{
	return rc != SCHAKEL_E_UNAVAILABLE && rc != SCHAKEL_E_NO_MEMORY &&
	    rc != SCHAKEL_E_RATE_LIMITED;
}

/* Drop the connection (if any), wait `attempt`'s backoff (none for 0),
 * and connect again with Hello.  Returns SCHAKEL_OK or the failure. */
static int
s_reconnect(struct schakel_client *c, unsigned attempt)
{
	int rc;

	s_sock_close(c);
	if (attempt > 0)
		s_backoff(attempt, c->deadline_ms);
	c->heartbeat_ms =
	    c->heartbeat_ms != 0 ? c->heartbeat_ms : S_DEFAULT_HEARTBEAT_MS;
	rc = s_sock_open(c);
	if (rc == SCHAKEL_OK)
		rc = s_hello(c);
	if (rc != SCHAKEL_OK)
		s_sock_close(c);
	return rc;
}

/* Before a request: a connection idle for two heartbeats may have been
 * dropped by the broker (it waits three), so start a fresh one. */
static int
s_ready(struct schakel_client *c)
{
	uint64_t now = s_mono_ms();
	int rc = SCHAKEL_OK;

	if (c->sock == NULL || now - c->last_sent_ms >= 2ull * c->heartbeat_ms)
		rc = s_reconnect(c, 0);
	for (unsigned attempt = 1;
	     rc != SCHAKEL_OK && !s_final(rc) && attempt < S_ATTEMPTS;
	     attempt++)
		rc = s_reconnect(c, attempt);
	return rc;
}

/* ---- resolve ---- */

/* Fill a Resolve from the caller's message, checking sizes. */
static int
s_resolve_frame(
    struct schakel_client *c, const struct schakel_message *m, struct frame *f)
{
	struct frame_resolve *r = &f->u.resolve;

	memset(f, 0, sizeof *f);
	f->kind = FRAME_RESOLVE;
	if (m == NULL || m->type == NULL || m->case_ref == NULL ||
	    m->purpose == NULL || m->type[0] == '\0' ||
	    m->case_ref[0] == '\0' || m->purpose[0] == '\0')
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
		    "a message needs a type, a case reference and a purpose");
	if (m->n_attrs > ENV_MAX_ATTRS || (m->n_attrs > 0 && m->attrs == NULL))
		return s_fail(c, SCHAKEL_E_TOO_LARGE,
		    "a message has at most %d attributes", ENV_MAX_ATTRS);
	if (s_copy(r->type, sizeof r->type, m->type) != SCHAKEL_OK ||
	    s_copy(r->case_ref, sizeof r->case_ref, m->case_ref) !=
		SCHAKEL_OK ||
	    s_copy(r->purpose, sizeof r->purpose, m->purpose) != SCHAKEL_OK)
		return s_fail(c, SCHAKEL_E_TOO_LARGE,
		    "type, case reference and purpose have at most %d "
		    "characters",
		    ENV_MAX_NAME_LEN);
	if (s_copy(r->region, sizeof r->region, m->region) != SCHAKEL_OK)
		return s_fail(c, SCHAKEL_E_TOO_LARGE,
		    "a region has at most %d characters", ENV_MAX_REGION_LEN);
	for (size_t i = 0; i < m->n_attrs; i++) {
		if (m->attrs[i].key == NULL ||
		    s_copy(r->attrs[i].key, sizeof r->attrs[i].key,
			m->attrs[i].key) != SCHAKEL_OK ||
		    s_copy(r->attrs[i].value, sizeof r->attrs[i].value,
			m->attrs[i].value) != SCHAKEL_OK)
			return s_fail(c, SCHAKEL_E_TOO_LARGE,
			    "attribute %zu: a key has 1 to %d characters, a "
			    "value at most %d",
			    i + 1, ENV_MAX_ATTR_KEY_LEN,
			    ENV_MAX_ATTR_VALUE_LEN);
	}
	r->n_attrs = m->n_attrs;
	r->urgent = m->urgent;
	return SCHAKEL_OK;
}

/* Compare the broker's keys for a recipient with peers/<party>.pub, when
 * that file exists. */
static int
s_check_peer(struct schakel_client *c, const struct frame_recipient *r)
{
	char path[PATH_MAX];
	struct keys_public pub;
	struct keys_error kerr;
	struct stat st;
	char msg[SCHAKEL_ERROR_MAX];

	if (!c->has_peers)
		return SCHAKEL_OK;
	if (snprintf(path, sizeof path, "%s/%s.pub", c->peers, r->party_id) >=
	    (int)sizeof path)
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT, "peers path too long");
	if (stat(path, &st) != 0 && errno == ENOENT)
		return SCHAKEL_OK;
	if (keys_public_read(path, KEYS_PARTY, &pub, &kerr) != 0) {
		s_keys_msg(path, &kerr, msg, sizeof msg);
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT, "%s", msg);
	}
	if (sodium_memcmp(pub.box, r->box_key, KEYS_BYTES) != 0 ||
	    sodium_memcmp(pub.sign, r->sign_key, KEYS_BYTES) != 0)
		return s_fail(c, SCHAKEL_E_UNKNOWN_PARTY,
		    "the broker's keys for '%s' differ from %s: nothing was "
		    "sent; ask the administrator which keys are right",
		    r->party_id, path);
	return SCHAKEL_OK;
}

/* Send a request and wait for its reply, reconnecting and sending it again
 * when the broker does not answer.  *reply must be cleared by the caller
 * on SCHAKEL_OK. */
static int
s_request(struct schakel_client *c, struct frame *req, struct frame *reply)
{
	int rc;

	rc = s_ready(c);
	for (unsigned attempt = 1;; attempt++) {
		if (rc == SCHAKEL_OK) {
			req->corr_id = ++c->corr;
			rc = s_send(c, req);
		}
		if (rc == SCHAKEL_OK)
			rc = s_wait_reply(c, req->corr_id, reply);
		if (rc == SCHAKEL_OK && reply->kind == FRAME_REFUSAL &&
		    (reply->u.refusal.code == SCHAKEL_E_PROTOCOL ||
			reply->u.refusal.code == SCHAKEL_E_UNAVAILABLE)) {
			/* The broker lost our session or is stopping. */
			rc = s_fail(c, (int)reply->u.refusal.code,
			    "the broker refused: %s", reply->u.refusal.reason);
			frame_clear(reply);
			if (rc == SCHAKEL_E_PROTOCOL && attempt > 1)
				return rc;
			rc = SCHAKEL_E_UNAVAILABLE;
		}
		/* A Pong may wait in the bundle. */
		if (rc == SCHAKEL_OK && s_send_out(c) != SCHAKEL_OK)
			s_sock_close(c);
		if (rc == SCHAKEL_OK || s_final(rc) || attempt >= S_ATTEMPTS)
			return rc;
		rc = s_reconnect(c, attempt);
	}
}

/* The refusal in `f` as a code with the broker's sentence. */
static int
s_refused(struct schakel_client *c, const struct frame *f, const char *what)
{
	int code = f->u.refusal.code != 0 ? (int)f->u.refusal.code
					  : SCHAKEL_E_PROTOCOL;

	return s_fail(c, code, "%s refused: %s", what, f->u.refusal.reason);
}

/* What a reply to Resolve says: *out holds the recipients, their keys
 * checked against the pinned peers, and SCHAKEL_OK; or why not.  Clears
 * the reply. */
static int
s_resolved(
    struct schakel_client *c, struct frame *rep, struct frame_resolved *out)
{
	int rc = SCHAKEL_OK;

	if (rep->kind == FRAME_REFUSAL) {
		rc = s_refused(c, rep, "resolve");
	} else if (rep->kind != FRAME_RESOLVED) {
		rc = s_fail(c, SCHAKEL_E_PROTOCOL,
		    "the broker answered Resolve with frame %d",
		    (int)rep->kind);
	} else if (rep->u.resolved.n_recipients == 0) {
		rc = s_fail(
		    c, SCHAKEL_E_NO_ROUTE, "the broker resolved no recipient");
	} else {
		*out = rep->u.resolved;
		for (size_t i = 0; i < out->n_recipients && rc == SCHAKEL_OK;
		     i++)
			rc = s_check_peer(c, &out->recipients[i]);
	}
	frame_clear(rep);
	return rc;
}

static int
s_resolve(
    struct schakel_client *c, struct frame *req, struct frame_resolved *out)
{
	struct frame rep = {0};
	int rc;

	rc = s_request(c, req, &rep);
	if (rc != SCHAKEL_OK)
		return rc;
	return s_resolved(c, &rep, out);
}

static void
s_outcome_set(struct schakel_client *c, struct s_outcome *o, size_t m, int rc);

/*
 * Resolves n requests at once: all sent (in one bundle, to a broker that
 * reads them), then the answers taken as they come, so a batch costs one
 * round trip, not one a message.  rcs[i] is SCHAKEL_OK with out[i]
 * filled, or why not (the sentence set in o at once, for msg[i]).  After
 * a lost connection what has no answer yet is asked again, as s_request
 * does.
 */
static void
s_resolve_many(struct schakel_client *c, struct frame *reqs, size_t n,
    struct frame_resolved *out, int *rcs, const size_t *msg,
    struct s_outcome *o)
{
	struct frame rep;
	size_t open = 0;
	uint64_t base = 0;
	int rc;

	for (size_t i = 0; i < n; i++)
		if (rcs[i] == SCHAKEL_E_INTERNAL)
			open++;
	rc = s_ready(c);
	for (unsigned attempt = 1; open > 0; attempt++) {
		if (rc == SCHAKEL_OK) {
			base = c->corr + 1;
			c->corr += n;
			for (size_t i = 0; i < n && rc == SCHAKEL_OK; i++)
				if (rcs[i] == SCHAKEL_E_INTERNAL) {
					reqs[i].corr_id = base + i;
					rc = s_send(c, &reqs[i]);
				}
		}
		while (rc == SCHAKEL_OK && open > 0) {
			size_t i;

			rc = s_wait_range(c, base, base + n, &rep);
			if (rc != SCHAKEL_OK)
				break;
			i = (size_t)(rep.corr_id - base);
			if (rcs[i] != SCHAKEL_E_INTERNAL) {
				frame_clear(&rep);
				continue;
			}
			if (rep.kind == FRAME_REFUSAL &&
			    (rep.u.refusal.code == SCHAKEL_E_PROTOCOL ||
				rep.u.refusal.code == SCHAKEL_E_UNAVAILABLE)) {
				/* The broker lost our session or is
				 * stopping. */
				rc = s_fail(c, (int)rep.u.refusal.code,
				    "the broker refused: %s",
				    rep.u.refusal.reason);
				frame_clear(&rep);
				if (rc != SCHAKEL_E_PROTOCOL || attempt == 1)
					rc = SCHAKEL_E_UNAVAILABLE;
				break;
			}
			rcs[i] = s_resolved(c, &rep, &out[i]);
			if (rcs[i] != SCHAKEL_OK)
				s_outcome_set(c, o, msg[i], rcs[i]);
			open--;
		}
		if (open == 0) {
			/* A Pong may wait in the bundle. */
			if (s_send_out(c) != SCHAKEL_OK)
				s_sock_close(c);
			return;
		}
		if (s_final(rc) || attempt >= S_ATTEMPTS)
			break;
		rc = s_reconnect(c, attempt);
	}
	for (size_t i = 0; i < n; i++)
		if (rcs[i] == SCHAKEL_E_INTERNAL) {
			rcs[i] = rc;
			s_outcome_set(c, o, msg[i], rc);
		}
}

int
schakel_resolve(struct schakel_client *c, const struct schakel_message *m,
    struct schakel_resolved *out)
{
	struct frame_resolved r;
	struct frame req;
	int rc;

	if (c == NULL || out == NULL)
		return SCHAKEL_E_BAD_ARGUMENT;
	c->err[0] = '\0';
	rc = s_resolve_frame(c, m, &req);
	if (rc == SCHAKEL_OK)
		rc = s_resolve(c, &req, &r);
	if (rc != SCHAKEL_OK)
		return rc;
	memset(out, 0, sizeof *out);
	out->n_recipients = r.n_recipients;
	for (size_t i = 0; i < r.n_recipients; i++) {
		memcpy(out->recipients[i].party_id, r.recipients[i].party_id,
		    sizeof out->recipients[i].party_id);
		memcpy(out->recipients[i].box_key, r.recipients[i].box_key,
		    KEYS_BYTES);
		memcpy(out->recipients[i].sign_key, r.recipients[i].sign_key,
		    KEYS_BYTES);
		memcpy(out->recipients[i].agreement_id,
		    r.recipients[i].agreement_id,
		    sizeof out->recipients[i].agreement_id);
	}
	out->config_version = r.config_version;
	out->default_ttl_ms = r.default_ttl_ms;
	return SCHAKEL_OK;
}

/* ---- send ---- */

/* The checks of a message before anything is sent for it; *req is the
 * Resolve it needs. */
static int
s_draft_check(struct schakel_client *c, const struct schakel_message *m,
    struct frame *req)
{
	char consent[ENV_MAX_NAME_LEN + 1];
	int rc;

	rc = s_resolve_frame(c, m, req);
	if (rc != SCHAKEL_OK)
		return rc;
	/* Each message's fields are checked here, with the codec's rules,
	 * so that one that breaks them fails alone: found when its Resolve
	 * could not be encoded, or by env_build, it failed all in its
	 * batch. */
	if (frame_check(req) != SCHAKEL_OK)
		return s_fail(c, SCHAKEL_E_BAD_FIELD,
		    "type '%s', case '%s', purpose '%s', region '%s' or an "
		    "attribute breaks the rules of docs/protocol.md section 3",
		    req->u.resolve.type, req->u.resolve.case_ref,
		    req->u.resolve.purpose, req->u.resolve.region);
	if (m->payload == NULL && m->payload_len > 0)
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT, "payload is NULL");
	if (m->payload_len > ENV_MAX_PAYLOAD_LEN)
		return s_fail(c, SCHAKEL_E_TOO_LARGE,
		    "a payload has at most %u bytes", ENV_MAX_PAYLOAD_LEN);
	if (m->ttl_ms > S_MAX_TTL_MS)
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
		    "a time to live of more than ten years is not plausible");
	if (s_copy(consent, sizeof consent, m->consent_ref) != SCHAKEL_OK)
		return s_fail(c, SCHAKEL_E_TOO_LARGE,
		    "a consent reference has at most %d characters",
		    ENV_MAX_NAME_LEN);
	if (m->consent_ref != NULL && !env_is_ref(m->consent_ref))
		return s_fail(c, SCHAKEL_E_BAD_FIELD,
		    "consent reference '%.64s': letters, digits and . _ - : "
		    "only, the first a letter or digit",
		    m->consent_ref);
	return SCHAKEL_OK;
}

/* The draft of a checked message, with the recipients its Resolve got. */
static void
s_draft_fill(const struct schakel_client *c, const struct schakel_message *m,
    const struct frame *req, const struct frame_resolved *r,
    struct env_draft *d)
{
	const struct frame_resolve *q = &req->u.resolve;
	struct env_header *h = &d->hdr;
	uint64_t ttl;

	memset(d, 0, sizeof *d);
	(void)s_copy(h->consent_ref, sizeof h->consent_ref, m->consent_ref);
	env_new_id(h->id);
	memcpy(h->sender, c->party, sizeof h->sender);
	/* The Resolve frame holds the checked copies. */
	memcpy(h->type, q->type, sizeof h->type);
	memcpy(h->case_ref, q->case_ref, sizeof h->case_ref);
	memcpy(h->purpose, q->purpose, sizeof h->purpose);
	memcpy(h->region, q->region, sizeof h->region);
	memcpy(h->attrs, q->attrs, sizeof h->attrs);
	h->n_attrs = q->n_attrs;
	h->urgent = m->urgent;
	h->notify_delivered = m->notify_delivered;
	ttl = m->ttl_ms != 0         ? m->ttl_ms
	    : r->default_ttl_ms != 0 ? r->default_ttl_ms
				     : S_DEFAULT_TTL_MS;
	if (ttl > S_MAX_TTL_MS)
		ttl = S_MAX_TTL_MS;
	h->created_ms = s_wall_ms();
	h->expires_ms = h->created_ms + ttl;
	d->n_recipients = r->n_recipients;
	for (size_t i = 0; i < r->n_recipients; i++) {
		memcpy(d->recipients[i].party_id, r->recipients[i].party_id,
		    sizeof d->recipients[i].party_id);
		memcpy(d->recipients[i].box_pk, r->recipients[i].box_key,
		    ENV_BOX_PK_LEN);
	}
	d->payload = m->payload;
	d->payload_len = m->payload_len;
}

static void
s_job_clear(struct s_job *j)
{
	codec_buf_clear(&j->env);
	codec_buf_clear(&j->receipt);
}

/* Take over a built envelope for submission. */
static int
s_job_init(struct schakel_client *c, struct s_job *j, const struct env_draft *d,
    struct codec_buf *env)
{
	struct env *e = NULL;
	int rc;

	size_t msg = j->msg;

	s_job_clear(j);
	memset(j, 0, sizeof *j);
	j->msg = msg;
	j->env = *env;
	memset(env, 0, sizeof *env);
	j->hdr = d->hdr;
	rc = env_decode(j->env.data, j->env.len, 0, &e);
	if (rc != SCHAKEL_OK)
		return s_fail(c, rc, "the envelope just built does not decode");
	env_header_hash(e, j->header_hash);
	env_destroy(&e);
	if (c->max_message_bytes != 0 && j->env.len > c->max_message_bytes)
		return s_fail(c, SCHAKEL_E_TOO_LARGE,
		    "the message is %zu bytes; the broker takes at most %u",
		    j->env.len, (unsigned)c->max_message_bytes);
	j->state = S_TOSEND;
	return SCHAKEL_OK;
}

/* Check the broker's receipt for job j: signature with the pinned key,
 * and that it names the envelope we sent, for the recipients we sealed
 * for. */
static int
s_job_receipt(struct schakel_client *c, struct s_job *j, size_t idx,
    struct schakel_receipt *out)
{
	struct receipt r;
	int rc;

	rc = receipt_verify(j->receipt.data, j->receipt.len, c->broker_sign,
	    c->cache, &r, NULL);
	if (rc != SCHAKEL_OK)
		return s_fail(c, rc,
		    "message %zu: the broker's receipt does not verify with "
		    "the pinned broker key: %s",
		    idx, schakel_strerror(rc));
	if (memcmp(r.message_id, j->hdr.id, ENV_ID_LEN) != 0 ||
	    memcmp(r.header_hash, j->header_hash, ENV_HASH_LEN) != 0 ||
	    strcmp(r.sender, c->party) != 0 ||
	    r.n_recipients != j->hdr.n_recipients)
		return s_fail(c, SCHAKEL_E_BAD_FIELD,
		    "message %zu: the broker's receipt names another message",
		    idx);
	for (size_t i = 0; i < r.n_recipients; i++)
		if (strcmp(r.recipients[i], j->hdr.recipients[i]) != 0)
			return s_fail(c, SCHAKEL_E_BAD_FIELD,
			    "message %zu: the receipt's recipients differ "
			    "from those sealed for",
			    idx);
	if (out == NULL)
		return SCHAKEL_OK;
	memset(out, 0, sizeof *out);
	memcpy(out->message_id, r.message_id, ENV_ID_LEN);
	out->accepted_ms = r.accepted_ms;
	out->store_seq = r.store_seq;
	out->n_recipients = r.n_recipients;
	memcpy(out->recipients, r.recipients, sizeof out->recipients);
	memcpy(out->agreement_ids, r.agreement_ids, sizeof out->agreement_ids);
	out->signed_receipt = j->receipt.data;
	out->signed_receipt_len = j->receipt.len;
	memset(&j->receipt, 0, sizeof j->receipt);
	return SCHAKEL_OK;
}

/* Submit the jobs not yet answered, at most S_WINDOW in flight, until
 * each has its answer (Accepted or a refusal, in j->code).  When the
 * broker stays silent the connection is made again and every unanswered
 * envelope is sent again, byte for byte.  Returns SCHAKEL_OK when every
 * job was answered, otherwise why not (the unanswered keep that code). */
static int
s_submit(struct schakel_client *c, struct s_job *jobs, size_t n)
{
	struct codec_buf raw;
	struct frame f;
	uint64_t base, progress;
	size_t open, inflight, next;
	unsigned attempt = 0;
	int rc;

	rc = s_ready(c);
	for (;;) {
		if (rc != SCHAKEL_OK)
			goto retry;
		base = c->corr + 1;
		c->corr += n;
		inflight = 0;
		open = 0;
		for (size_t i = 0; i < n; i++) {
			if (jobs[i].state != S_DONE) {
				jobs[i].state = S_TOSEND;
				open++;
			}
		}
		next = 0;
		progress = s_mono_ms();
		while (open > 0) {
			while (inflight < S_WINDOW && next < n) {
				struct frame sub = {0};

				if (jobs[next].state != S_TOSEND) {
					next++;
					continue;
				}
				sub.corr_id = base + next;
				sub.kind = FRAME_SUBMIT;
				sub.u.submit.data = jobs[next].env.data;
				sub.u.submit.len = jobs[next].env.len;
				rc = s_send(c, &sub);
				if (rc != SCHAKEL_OK)
					goto retry;
				jobs[next].state = S_SENT;
				inflight++;
				next++;
			}
			if (s_mono_ms() - progress >= (uint64_t)c->timeout_ms) {
				rc = s_fail(c, SCHAKEL_E_UNAVAILABLE,
				    "no answer from the broker at %s within "
				    "%d ms%s",
				    c->endpoint, c->timeout_ms, s_hint(c));
				goto retry;
			}
			rc = s_pump(c, progress,
			    c->timeout_ms - (int)(s_mono_ms() - progress), &raw,
			    &f);
			if (rc != SCHAKEL_OK)
				goto retry;
			if (raw.data == NULL)
				continue;
			if ((f.kind != FRAME_ACCEPTED &&
				f.kind != FRAME_REFUSAL) ||
			    f.corr_id < base || f.corr_id >= base + n ||
			    jobs[f.corr_id - base].state != S_SENT) {
				s_aside(c, &raw, &f);
				continue;
			}
			codec_buf_clear(&raw);
			{
				struct s_job *j = &jobs[f.corr_id - base];
				size_t idx = (size_t)(f.corr_id - base);
				int code;

				progress = s_mono_ms();
				inflight--;
				if (f.kind == FRAME_ACCEPTED) {
					j->receipt.data = malloc(
					    f.u.accepted.len ? f.u.accepted.len
							     : 1);
					if (j->receipt.data == NULL) {
						frame_clear(&f);
						rc = s_fail(c,
						    SCHAKEL_E_NO_MEMORY,
						    "out of memory");
						goto retry;
					}
					memcpy(j->receipt.data,
					    f.u.accepted.data,
					    f.u.accepted.len);
					j->receipt.len = f.u.accepted.len;
					j->code = SCHAKEL_OK;
					j->state = S_DONE;
					open--;
					frame_clear(&f);
					continue;
				}
				code = f.u.refusal.code != 0
				    ? (int)f.u.refusal.code
				    : SCHAKEL_E_PROTOCOL;
				if (code == SCHAKEL_E_RATE_LIMITED &&
				    ++j->retries < S_ATTEMPTS) {
					frame_clear(&f);
					s_backoff(j->retries, UINT64_MAX);
					j->state = S_TOSEND;
					if (idx < next)
						next = idx;
					continue;
				}
				if (code == SCHAKEL_E_UNAVAILABLE ||
				    (code == SCHAKEL_E_PROTOCOL &&
					attempt == 0)) {
					rc = s_refused(c, &f, "submit");
					frame_clear(&f);
					rc = SCHAKEL_E_UNAVAILABLE;
					goto retry;
				}
				j->code = s_refused(c, &f, "submit");
				memcpy(j->why, c->err, sizeof j->why);
				j->state = S_DONE;
				open--;
				frame_clear(&f);
			}
		}
		/* A Pong or an Ack may wait in the bundle. */
		rc = s_send_out(c);
		if (rc != SCHAKEL_OK)
			goto retry;
		return SCHAKEL_OK;
	retry:
		if (s_final(rc) || ++attempt >= S_ATTEMPTS) {
			for (size_t i = 0; i < n; i++)
				if (jobs[i].state != S_DONE) {
					jobs[i].code = rc;
					memcpy(jobs[i].why, c->err,
					    sizeof jobs[i].why);
				}
			return rc;
		}
		rc = s_reconnect(c, attempt);
	}
}

void
schakel_receipt_clear(struct schakel_receipt *r)
{
	if (r == NULL)
		return;
	free(r->signed_receipt);
	r->signed_receipt = NULL;
	r->signed_receipt_len = 0;
}

/* Record message m's result; the first failing message's sentence is
 * kept for schakel_client_error. */
static void
s_outcome_set(struct schakel_client *c, struct s_outcome *o, size_t m, int rc)
{
	o->results[m] = rc;
	if (rc != SCHAKEL_OK && m < o->first) {
		o->first = m;
		memcpy(o->err, c->err, sizeof o->err);
	}
}

/* Resolve msgs[idx[0..k)] and build them under one signature into
 * jobs[0..*built); a message that fails here gets its result at once. */
static void
s_build(struct schakel_client *c, const struct schakel_message *msgs,
    const size_t *idx, size_t k, struct env_draft *drafts, struct s_job *jobs,
    size_t *built, struct s_outcome *o)
{
	struct codec_buf *envs;
	struct frame *reqs;
	struct frame_resolved *res;
	size_t ok = 0;
	int rc;

	*built = 0;
	/* A window's Resolves and answers (some 6 KiB each). */
	reqs = calloc(k < S_WINDOW ? k : S_WINDOW, sizeof *reqs);
	res = calloc(k < S_WINDOW ? k : S_WINDOW, sizeof *res);
	if (reqs == NULL || res == NULL) {
		s_fail(c, SCHAKEL_E_NO_MEMORY, "out of memory");
		for (size_t i = 0; i < k; i++)
			s_outcome_set(c, o, idx[i], SCHAKEL_E_NO_MEMORY);
		free(reqs);
		free(res);
		return;
	}
	/* Resolved a window at a time: one round trip each. */
	for (size_t w = 0; w < k; w += S_WINDOW) {
		size_t n = k - w < S_WINDOW ? k - w : S_WINDOW;
		int rcs[S_WINDOW];

		for (size_t i = 0; i < n; i++) {
			rcs[i] = s_draft_check(c, &msgs[idx[w + i]], &reqs[i]);
			if (rcs[i] != SCHAKEL_OK)
				s_outcome_set(c, o, idx[w + i], rcs[i]);
			else
				rcs[i] = SCHAKEL_E_INTERNAL; /* to resolve */
		}
		s_resolve_many(c, reqs, n, res, rcs, &idx[w], o);
		for (size_t i = 0; i < n; i++) {
			if (rcs[i] != SCHAKEL_OK)
				continue;
			s_draft_fill(c, &msgs[idx[w + i]], &reqs[i], &res[i],
			    &drafts[ok]);
			jobs[ok].msg = idx[w + i];
			ok++;
		}
	}
	free(reqs);
	free(res);
	if (ok == 0)
		return;
	envs = calloc(ok, sizeof *envs);
	rc = envs == NULL ? SCHAKEL_E_NO_MEMORY
			  : env_build(drafts, ok, c->keys->sign_sk, envs);
	if (rc != SCHAKEL_OK) {
		s_fail(c, rc, "cannot build the message: %s",
		    schakel_strerror(rc));
		for (size_t i = 0; i < ok; i++)
			s_outcome_set(c, o, jobs[i].msg, rc);
		free(envs);
		return;
	}
	for (size_t i = 0; i < ok; i++) {
		rc = s_job_init(c, &jobs[i], &drafts[i], &envs[i]);
		if (rc != SCHAKEL_OK) {
			s_outcome_set(c, o, jobs[i].msg, rc);
			jobs[i].state = S_DONE;
			jobs[i].code = rc;
		}
		codec_buf_clear(&envs[i]);
	}
	free(envs);
	*built = ok;
}

/* The whole send: build, submit, verify, and for ROUTE_CHANGED build new
 * messages for the new recipients, a bounded number of times. */
static int
s_send_all(struct schakel_client *c, const struct schakel_message *msgs,
    size_t n, struct schakel_receipt *receipts, struct s_outcome *o)
{
	struct env_draft *drafts = calloc(n, sizeof *drafts);
	struct s_job *jobs = calloc(n, sizeof *jobs);
	size_t *idx = calloc(n, sizeof *idx);
	size_t k = n, built, again;
	int rc;

	if (drafts == NULL || jobs == NULL || idx == NULL) {
		free(drafts);
		free(jobs);
		free(idx);
		return s_fail(c, SCHAKEL_E_NO_MEMORY, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		idx[i] = i;
		o->results[i] = SCHAKEL_E_INTERNAL;
	}
	for (unsigned round = 0; k > 0; round++) {
		s_build(c, msgs, idx, k, drafts, jobs, &built, o);
		rc = built > 0 ? s_submit(c, jobs, built) : SCHAKEL_OK;
		again = 0;
		for (size_t i = 0; i < built; i++) {
			struct s_job *j = &jobs[i];

			if (j->state == S_DONE && j->code == SCHAKEL_OK &&
			    j->receipt.data != NULL) {
				rc = s_job_receipt(c, j, j->msg,
				    receipts != NULL ? &receipts[j->msg]
						     : NULL);
				s_outcome_set(c, o, j->msg, rc);
			} else if (j->code == SCHAKEL_E_ROUTE_CHANGED &&
			    round < S_ROUTE_RETRIES) {
				idx[again++] = j->msg;
			} else if (j->state == S_DONE ||
			    j->code != SCHAKEL_OK) {
				if (j->why[0] != '\0')
					memcpy(c->err, j->why, sizeof c->err);
				if (j->code == SCHAKEL_E_ROUTE_CHANGED)
					s_fail(c, j->code,
					    "the routing rules kept changing "
					    "while sending; try again later");
				s_outcome_set(c, o, j->msg, j->code);
			}
			s_job_clear(j);
		}
		k = again;
	}
	for (size_t i = 0; i < n; i++)
		sodium_memzero(&drafts[i], sizeof drafts[i]);
	free(drafts);
	free(jobs);
	free(idx);
	return o->first < n ? o->results[o->first] : SCHAKEL_OK;
}

int
schakel_send_batch(struct schakel_client *c, const struct schakel_message *msgs,
    size_t n, struct schakel_receipt *receipts, int *results)
{
	struct s_outcome o;
	int rc;

	if (c == NULL)
		return SCHAKEL_E_BAD_ARGUMENT;
	c->err[0] = '\0';
	if (msgs == NULL || results == NULL || n == 0 || n > S_BATCH_MAX)
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
		    "a batch has 1 to %d messages", S_BATCH_MAX);
	if (receipts != NULL)
		memset(receipts, 0, n * sizeof *receipts);
	o.results = results;
	o.first = n;
	o.err[0] = '\0';
	rc = s_send_all(c, msgs, n, receipts, &o);
	if (rc != SCHAKEL_OK) {
		char buf[SCHAKEL_ERROR_MAX];

		if (n > 1)
			snprintf(buf, sizeof buf, "message %zu of %zu: %s",
			    o.first + 1, n, o.err);
		else
			snprintf(buf, sizeof buf, "%s", o.err);
		s_clean(c->err, sizeof c->err, buf);
	}
	return rc;
}

int
schakel_send(struct schakel_client *c, const struct schakel_message *m,
    struct schakel_receipt *out)
{
	int result;

	if (m == NULL)
		return c != NULL
		    ? s_fail(c, SCHAKEL_E_BAD_ARGUMENT, "no message")
		    : SCHAKEL_E_BAD_ARGUMENT;
	return schakel_send_batch(c, m, 1, out, &result);
}

/* ---- receive ---- */

static int
s_ack(struct schakel_client *c, uint64_t seq, const uint8_t id[ENV_ID_LEN],
    int code)
{
	struct frame f = {0};

	f.corr_id = ++c->corr;
	f.kind = code == SCHAKEL_OK ? FRAME_ACK : FRAME_NACK;
	f.u.ack.store_seq = seq;
	memcpy(f.u.ack.message_id, id, ENV_ID_LEN);
	f.u.ack.code = (uint32_t)code;
	return s_send(c, &f);
}

/* The sender's pinned signing key from peers/<party>.pub. */
static int
s_sender_key(struct schakel_client *c, const char *party, uint8_t pk[32])
{
	char path[PATH_MAX], msg[SCHAKEL_ERROR_MAX];
	struct keys_public pub;
	struct keys_error kerr;

	if (!c->has_peers)
		return s_fail(c, SCHAKEL_E_UNKNOWN_PARTY,
		    "no peers folder is configured, so the sender '%s' cannot "
		    "be verified",
		    party);
	if (snprintf(path, sizeof path, "%s/%s.pub", c->peers, party) >=
	    (int)sizeof path)
		return s_fail(
		    c, SCHAKEL_E_UNKNOWN_PARTY, "peers path too long");
	if (keys_public_read(path, KEYS_PARTY, &pub, &kerr) != 0) {
		s_keys_msg(path, &kerr, msg, sizeof msg);
		return s_fail(c, SCHAKEL_E_UNKNOWN_PARTY,
		    "the sender '%s' is not pinned: %s", party, msg);
	}
	memcpy(pk, pub.sign, KEYS_BYTES);
	return SCHAKEL_OK;
}

/* Check the broker's receipt that came with a delivery. */
static int
s_check_delivered(struct schakel_client *c, const struct frame_deliver *d,
    const struct env *e, struct receipt *r)
{
	const struct env_header *h = env_header(e);
	uint8_t hh[ENV_HASH_LEN];
	bool named = false;
	int rc;

	rc = receipt_verify(
	    d->receipt.data, d->receipt.len, c->broker_sign, c->cache, r, NULL);
	if (rc != SCHAKEL_OK)
		return s_fail(c, rc,
		    "the broker's receipt for a delivered message does not "
		    "verify: %s",
		    schakel_strerror(rc));
	env_header_hash(e, hh);
	for (size_t i = 0; i < r->n_recipients; i++)
		named = named || strcmp(r->recipients[i], c->party) == 0;
	if (memcmp(r->message_id, h->id, ENV_ID_LEN) != 0 ||
	    memcmp(r->header_hash, hh, ENV_HASH_LEN) != 0 ||
	    strcmp(r->sender, h->sender) != 0 || !named)
		return s_fail(c, SCHAKEL_E_BAD_FIELD,
		    "a delivered message does not match its receipt");
	return SCHAKEL_OK;
}

/* Verify, open and hand over one delivered message, then Ack or Nack
 * it.  Returns SCHAKEL_OK unless the answer could not be sent. */
static int
s_deliver(struct schakel_client *c, const struct frame_deliver *d,
    schakel_delivery_fn fn, void *arg, size_t *handed)
{
	static const uint8_t no_id[ENV_ID_LEN];
	struct schakel_attr attrs[ENV_MAX_ATTRS];
	struct schakel_delivery dv;
	const struct env_header *h;
	struct env *e = NULL;
	struct receipt r;
	uint8_t spk[KEYS_BYTES], *payload = NULL;
	size_t plen = 0;
	char id[2 * ENV_ID_LEN + 1];
	int rc;

	rc = env_decode(d->envelope.data, d->envelope.len, 0, &e);
	if (rc != SCHAKEL_OK) {
		/* Its id unknown: Nacked by its seq, which the broker takes
		 * for a delivery in flight here. */
		s_fail(c, rc, "refused delivered message seq %llu (%s): %s",
		    (unsigned long long)d->store_seq, schakel_errname(rc),
		    schakel_strerror(rc));
		return s_ack(c, d->store_seq, no_id, rc);
	}
	h = env_header(e);
	s_hex(h->id, ENV_ID_LEN, id, sizeof id);
	if (s_seen_has(&c->seen, h->id)) {
		rc = s_ack(c, d->store_seq, h->id, SCHAKEL_OK);
		env_destroy(&e);
		return rc;
	}
	rc = s_check_delivered(c, d, e, &r);
	if (rc == SCHAKEL_OK)
		rc = s_sender_key(c, h->sender, spk);
	if (rc == SCHAKEL_OK) {
		rc = env_open(e, spk, c->party, c->keys->pub.box,
		    c->keys->box_sk, c->cache, &payload, &plen);
		if (rc != SCHAKEL_OK)
			s_fail(c, rc, "%s", schakel_strerror(rc));
	}
	if (rc != SCHAKEL_OK) {
		char why[SCHAKEL_ERROR_MAX];

		memcpy(why, c->err, sizeof why);
		s_fail(c, rc, "refused message %s from '%s' (%s): %s", id,
		    h->sender, schakel_errname(rc), why);
		rc = s_ack(c, d->store_seq, h->id, rc);
		env_destroy(&e);
		return rc;
	}
	memset(&dv, 0, sizeof dv);
	memcpy(dv.message_id, h->id, ENV_ID_LEN);
	dv.sender = h->sender;
	dv.type = h->type;
	dv.case_ref = h->case_ref;
	dv.purpose = h->purpose;
	dv.region = h->region;
	dv.consent_ref = h->consent_ref;
	for (size_t i = 0; i < h->n_attrs; i++) {
		attrs[i].key = h->attrs[i].key;
		attrs[i].value = h->attrs[i].value;
	}
	dv.attrs = attrs;
	dv.n_attrs = h->n_attrs;
	dv.created_ms = h->created_ms;
	dv.expires_ms = h->expires_ms;
	dv.accepted_ms = r.accepted_ms;
	dv.urgent = h->urgent;
	dv.delivery_count = d->delivery_count;
	dv.payload = payload;
	dv.payload_len = plen;
	rc = fn(arg, &dv);
	sodium_memzero(payload, plen);
	free(payload);
	if (rc == 0) {
		/* Acknowledged even when the file could not be written: not
		 * to would have it delivered again for certain. */
		(void)s_seen_record(c, h->id);
		(*handed)++;
		rc = s_ack(c, d->store_seq, h->id, SCHAKEL_OK);
	} else {
		rc = s_ack(c, d->store_seq, h->id, SCHAKEL_E_UNAVAILABLE);
	}
	env_destroy(&e);
	return rc;
}

static int
s_notice(struct schakel_client *c, const struct frame_notice *n)
{
	struct schakel_notice sn;

	/* Signed by the broker like its receipts: a notice that does not
	 * verify is not handed over, and the Nack leaves it with the
	 * broker's dead letters for an administrator. */
	if (frame_notice_verify(n, c->broker_sign) != SCHAKEL_OK) {
		(void)s_fail(c, SCHAKEL_E_BAD_SIGNATURE,
		    "a notice (store sequence %llu) does not carry the "
		    "broker's signature; refused",
		    (unsigned long long)n->store_seq);
		return s_ack(
		    c, n->store_seq, n->message_id, SCHAKEL_E_BAD_SIGNATURE);
	}
	if (c->notice_fn != NULL) {
		memset(&sn, 0, sizeof sn);
		sn.kind = (enum schakel_notice_kind)n->kind;
		memcpy(sn.message_id, n->message_id, ENV_ID_LEN);
		sn.recipient = n->recipient;
		sn.time_ms = n->time_ms;
		sn.code = (int)n->code;
		c->notice_fn(c->notice_arg, &sn);
		/* A handler that stopped the receive could not take it (its
		 * output failed): it comes again later. */
		if (c->stop)
			return s_ack(c, n->store_seq, n->message_id,
			    SCHAKEL_E_UNAVAILABLE);
	}
	return s_ack(c, n->store_seq, n->message_id, SCHAKEL_OK);
}

void
schakel_set_notice_handler(
    struct schakel_client *c, schakel_notice_fn fn, void *arg)
{
	if (c == NULL)
		return;
	c->notice_fn = fn;
	c->notice_arg = arg;
}

/* Grant credit up to what this receive still wants. */
static int
s_credit(struct schakel_client *c, size_t max, size_t handed)
{
	struct frame f = {0};
	uint32_t want = c->max_credit;

	if (max > 0 && max - handed < want)
		want = (uint32_t)(max - handed);
	if (c->credit >= want)
		return SCHAKEL_OK;
	f.corr_id = ++c->corr;
	f.kind = FRAME_CREDIT;
	f.u.credit = want - c->credit;
	c->credit = want;
	return s_send(c, &f);
}

void
schakel_receive_stop(struct schakel_client *c)
{
	if (c != NULL)
		c->stop = true;
}

int
schakel_receive(struct schakel_client *c, size_t max, int timeout_ms,
    schakel_delivery_fn on_message, void *arg, size_t *handed_out)
{
	uint64_t deadline, now;
	size_t handed = 0;
	unsigned fails = 0;
	struct codec_buf raw;
	struct frame f;
	bool kept, late_credit = false, drained = false;
	int rc;

	if (handed_out != NULL)
		*handed_out = 0;
	if (c == NULL)
		return SCHAKEL_E_BAD_ARGUMENT;
	c->err[0] = '\0';
	if (on_message == NULL)
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT, "no message handler");
	now = s_mono_ms();
	deadline = timeout_ms >= 0 ? now + (uint64_t)timeout_ms : UINT64_MAX;
	/* One attempt here; if the broker cannot be reached, the loop
	 * below tries again, with backoff, until the deadline (without
	 * one, for as long as it takes), each wait ending there. */
	c->deadline_ms = deadline;
	if (c->sock == NULL || now - c->last_sent_ms >= 2ull * c->heartbeat_ms)
		rc = s_reconnect(c, 0);
	else
		rc = SCHAKEL_OK;
	if (rc != SCHAKEL_OK && s_final(rc))
		goto out;
	fails = rc != SCHAKEL_OK ? 1 : 0;
	c->stop = false;
	while ((max == 0 || handed < max) && !c->stop) {
		if (c->sock == NULL) {
			/* Keep trying, with backoff, until the deadline (or
			 * forever without one); give up at once only on what
			 * another attempt cannot cure. */
			if (s_mono_ms() >= deadline) {
				rc = SCHAKEL_E_UNAVAILABLE;
				goto out;
			}
			rc = s_reconnect(c, ++fails);
			if (rc != SCHAKEL_OK) {
				if (s_final(rc))
					goto out;
				continue;
			}
		}
		/* Credit as it is used up (a frame that could not be read
		 * used one too), and once more at the deadline; after it
		 * none: what was granted and has come is still handed over
		 * (below), then the receive ends. */
		now = s_mono_ms();
		rc = SCHAKEL_OK;
		if (now < deadline || !late_credit) {
			rc = s_credit(c, max, handed);
			late_credit = now >= deadline;
		}
		if (rc != SCHAKEL_OK) {
			s_sock_close(c);
			continue;
		}
		kept = s_pending_pop(c, &raw);
		if (kept) {
			if (c->sock != NULL &&
			    s_flush_due(c, now) != SCHAKEL_OK)
				s_sock_close(c);
			c->inbox_taken_ms = now;
			if (frame_decode(raw.data, raw.len, 0, &f) !=
			    SCHAKEL_OK) {
				codec_buf_clear(&raw);
				continue;
			}
		} else {
			/* At the deadline, what has come already is taken
			 * (with a timeout of 0 that is all a receive does),
			 * until the connection has nothing more. */
			if (now >= deadline && drained)
				break;
			/* Silence counts from the last frame heard on this
			 * connection, not from this call: a caller that
			 * receives briefly in a loop finds a broker that
			 * stopped answering too. */
			rc = s_pump(c, c->opened_ms,
			    now >= deadline ? 0
				: deadline - now > (uint64_t)INT_MAX
				? INT_MAX
				: (int)(deadline - now),
			    &raw, &f);
			if (rc == SCHAKEL_E_UNKNOWN_PARTY)
				goto out;
			if (rc != SCHAKEL_OK) {
				s_sock_close(c);
				continue;
			}
			if (raw.data == NULL) {
				drained = now >= deadline;
				continue;
			}
			fails = 0;
		}
		rc = SCHAKEL_OK;
		switch (f.kind) {
		case FRAME_DELIVER:
			if (!kept && c->credit > 0)
				c->credit--;
			rc = s_deliver(
			    c, &f.u.deliver, on_message, arg, &handed);
			break;
		case FRAME_NOTICE:
			if (!kept && c->credit > 0)
				c->credit--;
			rc = s_notice(c, &f.u.notice);
			break;
		case FRAME_REFUSAL:
			/* The broker no longer knows this connection. */
			if (f.u.refusal.code == SCHAKEL_E_PROTOCOL ||
			    f.u.refusal.code == SCHAKEL_E_UNAVAILABLE)
				rc = SCHAKEL_E_UNAVAILABLE;
			break;
		default:
			break; /* a late reply to an earlier request */
		}
		frame_clear(&f);
		codec_buf_clear(&raw);
		if (rc != SCHAKEL_OK)
			s_sock_close(c);
	}
	rc = SCHAKEL_OK;
out:
	/* The acknowledgements of what was handed over go now; lost with
	 * the connection, the messages come again and the seen ids filter
	 * them. */
	if (c->sock != NULL && s_send_out(c) != SCHAKEL_OK)
		s_sock_close(c);
	c->deadline_ms = UINT64_MAX;
	if (handed_out != NULL)
		*handed_out = handed;
	return rc;
}

/* ---- the client object ---- */

const char *
schakel_client_error(const struct schakel_client *c)
{
	return c != NULL ? c->err : "";
}

void
schakel_close(struct schakel_client **cp)
{
	struct schakel_client *c;

	if (cp == NULL || *cp == NULL)
		return;
	c = *cp;
	s_sock_close(c);
	frame_bundle_free(&c->out);
	if (c->ctx != NULL)
		zmq_ctx_term(c->ctx);
	keys_secret_destroy(&c->keys);
	merkle_cache_destroy(&c->cache);
	s_seen_free(&c->seen);
	sodium_memzero(c, sizeof *c);
	free(c);
	*cp = NULL;
}

static int
s_connect(struct schakel_client *c, const struct schakel_client_opts *o)
{
	struct keys_error kerr;
	struct stat st;

	if (o->endpoint == NULL || o->party_id == NULL || o->key_file == NULL)
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
		    "endpoint, party id and key file are required");
	if (s_copy(c->endpoint, sizeof c->endpoint, o->endpoint) !=
		SCHAKEL_OK ||
	    s_copy(c->party, sizeof c->party, o->party_id) != SCHAKEL_OK)
		return s_fail(
		    c, SCHAKEL_E_BAD_ARGUMENT, "endpoint or party id too long");
	if (o->peers_dir != NULL) {
		if (s_copy(c->peers, sizeof c->peers, o->peers_dir) !=
		    SCHAKEL_OK)
			return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
			    "peers folder path too long");
		if (stat(c->peers, &st) != 0 || !S_ISDIR(st.st_mode))
			return s_fail(c, SCHAKEL_E_BAD_ARGUMENT,
			    "peers folder '%s' is not a folder", c->peers);
		c->has_peers = true;
	}
	memcpy(c->broker_transport, o->broker_transport_key, KEYS_BYTES);
	memcpy(c->broker_sign, o->broker_sign_key, KEYS_BYTES);
	c->timeout_ms =
	    o->timeout_ms > 0 ? o->timeout_ms : S_DEFAULT_TIMEOUT_MS;
	c->heartbeat_ms = S_DEFAULT_HEARTBEAT_MS;
	c->deadline_ms = UINT64_MAX;
	if (codec_init() != SCHAKEL_OK)
		return s_fail(c, SCHAKEL_E_INTERNAL, "libsodium did not start");
	c->keys = keys_secret_read(o->key_file, KEYS_PARTY, &kerr);
	if (c->keys == NULL) {
		char msg[SCHAKEL_ERROR_MAX];

		s_keys_msg(o->key_file, &kerr, msg, sizeof msg);
		return s_fail(c, SCHAKEL_E_BAD_ARGUMENT, "%s", msg);
	}
	c->cache = merkle_cache_new(S_CACHE_SLOTS);
	if (c->cache == NULL || s_seen_init(&c->seen) != 0)
		return s_fail(c, SCHAKEL_E_NO_MEMORY, "out of memory");
	if (o->seen_file != NULL && o->seen_file[0] != '\0' &&
	    s_seen_open(c, o->seen_file) != SCHAKEL_OK)
		return SCHAKEL_E_BAD_ARGUMENT;
	c->ctx = zmq_ctx_new();
	if (c->ctx == NULL)
		return s_fail(c, SCHAKEL_E_INTERNAL, "cannot start ZeroMQ: %s",
		    zmq_strerror(zmq_errno()));
	return s_reconnect(c, 0);
}

int
schakel_connect(const struct schakel_client_opts *opts,
    struct schakel_client **out, char *err, size_t errlen)
{
	struct schakel_client *c;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || opts == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen,
			    "no options or no place for the "
			    "client");
		return SCHAKEL_E_BAD_ARGUMENT;
	}
	*out = NULL;
	c = calloc(1, sizeof *c);
	if (c == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "out of memory");
		return SCHAKEL_E_NO_MEMORY;
	}
	rc = s_connect(c, opts);
	if (rc != SCHAKEL_OK) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s", c->err);
		schakel_close(&c);
		return rc;
	}
	*out = c;
	return SCHAKEL_OK;
}
