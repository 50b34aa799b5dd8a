/*
 * harness: runs the real schakeld for an integration test.  It makes a
 * private folder with an ecosystem, keys for every party and the broker,
 * starts schakeld on a loopback port chosen by the kernel, and connects
 * clients with libschakel (or raw frames, for what a well-behaved client
 * would never send).  Teardown stops the broker with SIGTERM and removes
 * the folder.
 */
#ifndef SCHAKEL_HARNESS_H
#define SCHAKEL_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"
#include "schakel.h"

/* The parties of the test ecosystem (hx_yaml): one municipality that
 * sends, three debt-counselling teams in its region. */
#define HX_SENDER "gemeente"
#define HX_TEAM_A "team-a"
#define HX_TEAM_B "team-b"
#define HX_TEAM_C "team-c"
#define HX_PURPOSE "schuldhulp"
#define HX_TYPE_ONE "shv.melding.v1" /* routed to team-a */
#define HX_TYPE_ALL "shv.overleg.v1" /* routed to every team in GM0344 */

struct keys_secret;
struct env_header;

struct hx {
	void *zctx; /* for raw connections */
	char dir[256];
	char conf[320];
	char endpoint[256];
	const char *schakeld;
	const char *yaml; /* borrowed; static in the tests */
	pid_t pid;
	/* Extra environment for schakeld, "NAME=VALUE" each, NULL at the
	 * end (borrowed; see hx_new_env), or NULL. */
	const char *const *env;
	/* The metrics server's port when the configuration turns metrics
	 * on (read from the -E file), else 0. */
	unsigned metrics_port;
	/* When not 0: the largest file schakeld may write (RLIMIT_FSIZE, with
	 * SIGXFSZ ignored), from the next hx_start: the store's file cannot
	 * grow past it, so its commits fail as on a full disk. */
	unsigned long long max_file_bytes;
};

/* Makes the folder, writes the ecosystem (the standard one when `yaml` is
 * NULL), generates keys and starts schakeld.  Returns an owned harness or
 * NULL (with the reason on stderr). */
struct hx *hx_new(const char *schakeld, const char *yaml);

/* hx_new with extra environment variables for schakeld (e.g.
 * NOTIFY_SOCKET); `env` is borrowed for the harness's life.  When it sets
 * WATCHDOG_USEC, WATCHDOG_PID is set to the daemon's own pid, as systemd
 * does. */
struct hx *
hx_new_env(const char *schakeld, const char *yaml, const char *const *env);

/* The standard ecosystem's configuration text (static), for tests that
 * need a variant of it. */
const char *hx_yaml(void);
/* The standard ecosystem with `limits` (lines of broker.limits, each
 * indented four spaces) added; static, so valid until the next call. */
const char *hx_yaml_limits(const char *limits);

/* A figure in kB of /proc/PID/status, by its field ("VmRSS:",
 * "RssAnon:", ...); -1 when it cannot be read. */
long hx_status_kib(pid_t pid, const char *field);

/* Under AddressSanitizer (built with -Dsanitize=true, the daemon as the
 * tests) the broker's memory says little: freed memory waits in the
 * sanitizer's quarantine (256 MiB) and shadow memory comes on top.
 * Bounds on it are checked in the plain build; there they are printed
 * only. */
#if defined(__SANITIZE_ADDRESS__)
#define HX_RSS_CHECKED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HX_RSS_CHECKED 0
#endif
#endif
#ifndef HX_RSS_CHECKED
#define HX_RSS_CHECKED 1
#endif

/* Stops the broker (SIGTERM, then waits), removes the folder, frees;
 * accepts NULL and sets *hp to NULL.  Returns the broker's exit status
 * (0 on a clean stop), or -1. */
int hx_destroy(struct hx **hp);

/* Starts schakeld again on the same folder (after hx_stop), on the port
 * it had before. */
int hx_start(struct hx *h);
/* Stops it with `sig` and waits; returns the exit status or -1. */
int hx_stop(struct hx *h, int sig);

/* Connects `party` with libschakel (its key file, the folder's keys as
 * peers, the broker's .pub pinned).  Returns SCHAKEL_OK or the code. */
int hx_connect(struct hx *h, const char *party, int timeout_ms,
    struct schakel_client **out);

/* A raw connection: a CurveZMQ DEALER for `party` that has said Hello and
 * received Welcome.  Returns the socket or NULL. */
void *hx_raw_connect(struct hx *h, const char *party);
/* A raw connection for `party` that has said nothing yet, with the
 * ZeroMQ routing id `id` (idlen bytes) when idlen > 0, and with
 * ZMQ_RCVHWM `rcvhwm` (how many messages its I/O thread takes in ahead
 * of the test) when rcvhwm > 0.  NULL on failure. */
void *hx_raw_open(
    struct hx *h, const char *party, const void *id, size_t idlen, int rcvhwm);
void hx_raw_close(void **sock);
/* Sends one frame and waits for nothing; 0 or -1. */
int hx_raw_send(void *sock, const struct frame *f);
/* Receives the next frame within timeout_ms into *f (frame_clear it):
 * 0, or -1 when none came or it did not decode. */
int hx_raw_recv(void *sock, struct frame *f, int timeout_ms);
/* Sends `req` and waits up to timeout_ms for a reply with its corr_id
 * (answering Pings).  Returns 0 with *reply filled in (frame_clear it),
 * or -1. */
int hx_raw_request(
    void *sock, struct frame *req, struct frame *reply, int timeout_ms);

/* Clocks and sleeping for tests: monotonic and wall-clock milliseconds. */
uint64_t hx_mono_ms(void);
uint64_t hx_wall_ms(void);
void hx_sleep_ms(long ms);

/* A message of the standard ecosystem: `type`, `case_ref`, purpose
 * HX_PURPOSE, region GM0344, `payload` as text (borrowed). */
struct schakel_message
hx_msg(const char *type, const char *case_ref, const char *payload);

/* The number n of a test's payload "PREFIX n" (text, n from 0 to
 * INT_MAX); -1 when the payload is not one. */
long hx_payload_num(const struct schakel_delivery *d, const char *prefix);

/* Fills a header for a hand-built envelope: a new id, `sender`, `type`,
 * `case_ref`, purpose HX_PURPOSE, region GM0344, created now, expiring
 * in an hour (the rest as it was). */
void hx_header(struct env_header *h, const char *sender, const char *type,
    const char *case_ref);

/* An envelope from HX_SENDER to the recipient the rules give for
 * HX_TYPE_ONE, built here (not by libschakel) so that a test can send
 * it raw or alter it, into *env (codec_buf_clear it); with message id
 * `id`, or a new one when id is NULL.  Returns 0 or -1. */
int hx_envelope(struct hx *h, const uint8_t *id, const char *case_ref,
    const char *payload, struct codec_buf *env);

/* Reads DIR/keys/NAME.key (a party) into a secret; caller destroys. */
struct keys_secret *hx_secret(struct hx *h, const char *party);

/* Like hx_start, but the broker's stderr (its log) is appended to the
 * file `log` (a path; pick one inside h->dir so teardown removes it).
 * Returns what hx_start returns. */
int hx_start_logged(struct hx *h, const char *log);

/* Runs `schakelctl -s DIR/run/control.sock ARGS...` (args ends with
 * NULL; at most 12) and puts its stdout, clipped and NUL-terminated, into
 * out (outlen > 0).  Returns schakelctl's exit status, or -1. */
int hx_schakelctl(struct hx *h, const char *schakelctl, char *out,
    size_t outlen, const char *const *args);

#endif
