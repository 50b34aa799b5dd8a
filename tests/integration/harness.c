/*
 * harness: the real schakeld on loopback for integration tests.  Starts
 * and stops the daemon, waits for its endpoint file, and connects
 * clients.  It must never reach into the daemon's internals: everything
 * goes over the wire, as a partner's system would.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "env.h"
#include "keys.h"
#include "testutil.h"

static const char *const s_parties[] = {
    HX_SENDER, HX_TEAM_A, HX_TEAM_B, HX_TEAM_C, "outsider", NULL};

/* The standard ecosystem.  Everything the tests rely on is here. */
static const char s_yaml[] =
    "broker:\n"
    "  endpoints: [tcp://127.0.0.1:*]\n"
    "  data_dir: data\n"
    "  key_file: keys/broker.key\n"
    "  metrics: off\n"
    "  admin_socket: run/control.sock\n"
    "  limits:\n"
    "    heartbeat: 2s\n"
    "roles:\n"
    "  - {id: municipality, description: Gemeente}\n"
    "  - {id: debt_counselling, description: Schuldhulp}\n"
    "  - {id: creditor, description: Schuldeiser}\n"
    "parties:\n"
    "  - {id: gemeente, name: Gemeente, role: municipality,"
    " regions: [GM0344], keys: keys/gemeente.pub}\n"
    "  - {id: team-a, name: Team A, role: debt_counselling,"
    " regions: [GM0344], keys: keys/team-a.pub}\n"
    "  - {id: team-b, name: Team B, role: debt_counselling,"
    " regions: [GM0344], keys: keys/team-b.pub}\n"
    "  - {id: team-c, name: Team C, role: debt_counselling,"
    " regions: [GM0344], keys: keys/team-c.pub}\n"
    "  - {id: outsider, name: Outsider, role: creditor,"
    " keys: keys/outsider.pub}\n"
    "message_types:\n"
    "  - {id: shv.melding.v1, description: Request for help}\n"
    "  - {id: shv.overleg.v1, description: Case consultation}\n"
    "agreements:\n"
    "  - id: schuldhulp\n"
    "    parties: [gemeente, team-a, team-b, team-c]\n"
    "    purpose: schuldhulp\n"
    "    legal_basis: Wgs art. 8\n"
    "    valid_from: 2026-01-01\n"
    "    retention_days: 90\n"
    "    flows:\n"
    "      - {from: {party: gemeente}, to: {role: debt_counselling},"
    " types: [shv.melding.v1, shv.overleg.v1]}\n"
    "routes:\n"
    "  - id: melding\n"
    "    match: {type: shv.melding.v1, sender: gemeente}\n"
    "    to: [{party: team-a}]\n"
    "  - id: overleg\n"
    "    match: {type: shv.overleg.v1, sender: gemeente}\n"
    "    to: [{role_in_region: debt_counselling}]\n";

uint64_t
hx_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
hx_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
hx_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

struct schakel_message
hx_msg(const char *type, const char *case_ref, const char *payload)
{
	struct schakel_message m = {0};

	m.type = type;
	m.case_ref = case_ref;
	m.purpose = HX_PURPOSE;
	m.region = "GM0344";
	m.payload = (const uint8_t *)payload;
	m.payload_len = strlen(payload);
	return m;
}

long
hx_payload_num(const struct schakel_delivery *d, const char *prefix)
{
	char text[64], *end;
	size_t n = strlen(prefix);
	long v;

	if (d->payload_len >= sizeof text || d->payload_len <= n + 1)
		return -1;
	memcpy(text, d->payload, d->payload_len);
	text[d->payload_len] = '\0';
	if (memcmp(text, prefix, n) != 0 || text[n] != ' ' ||
	    text[n + 1] < '0' || text[n + 1] > '9')
		return -1;
	errno = 0;
	v = strtol(text + n + 1, &end, 10);
	return errno == 0 && *end == '\0' && v <= INT_MAX ? v : -1;
}

static void
s_nap(void)
{
	struct timespec ts = {0, 20 * 1000000};

	nanosleep(&ts, NULL);
}

/* Waits until the broker has written its endpoint file (it does so,
 * atomically, when it is ready to serve) and reads the first line, and
 * the metrics port when there is one. */
static int
s_wait_ready(struct hx *h, const char *file)
{
	uint64_t until = hx_mono_ms() + 15000;
	int status;

	while (hx_mono_ms() < until) {
		FILE *f = fopen(file, "r");

		if (f != NULL) {
			char line[256];
			bool ok = fgets(line, sizeof line, f) != NULL;

			if (ok && strchr(line, '\n') != NULL) {
				line[strcspn(line, "\n")] = '\0';
				snprintf(h->endpoint, sizeof h->endpoint, "%s",
				    line);
				h->metrics_port = tu_metrics_port(f);
				fclose(f);
				return 0;
			}
			fclose(f);
		}
		if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
			fprintf(stderr,
			    "harness: schakeld exited (status %d) "
			    "before it was ready\n",
			    status);
			h->pid = -1;
			return -1;
		}
		s_nap();
	}
	fprintf(stderr, "harness: schakeld was not ready within 15 s\n");
	return -1;
}

/* After the first start the configuration names the port the kernel
 * chose, so that clients find a restarted broker where they left it. */
static int
s_pin_endpoint(struct hx *h)
{
	const char *any = "tcp://127.0.0.1:*";
	const char *at = strstr(h->yaml, any);
	size_t len = strlen(h->yaml) + strlen(h->endpoint) + 1;
	char *text;
	int rc;

	if (at == NULL)
		return 0;
	text = malloc(len);
	if (text == NULL)
		return -1;
	snprintf(text, len, "%.*s%s%s", (int)(at - h->yaml), h->yaml,
	    h->endpoint, at + strlen(any));
	rc = tu_write(h->dir, "schakel.yaml", text);
	free(text);
	return rc;
}

int
hx_start(struct hx *h)
{
	char file[320];

	if (h->endpoint[0] != '\0' && s_pin_endpoint(h) != 0)
		return -1;

	snprintf(file, sizeof file, "%s/endpoints", h->dir);
	if (unlink(file) != 0 && errno != ENOENT)
		return -1;
	h->pid = fork();
	if (h->pid < 0)
		return -1;
	if (h->pid == 0) {
		/* A test that fails an assertion skips its hx_destroy: the
		 * broker must not outlive it (and hold the test runner's
		 * pipes open until its timeout). */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
			_exit(127);
		for (size_t i = 0; h->env != NULL && h->env[i] != NULL; i++)
			putenv((char *)h->env[i]);
		if (h->max_file_bytes > 0) {
			struct rlimit rl = {(rlim_t)h->max_file_bytes,
			    (rlim_t)h->max_file_bytes};
			if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR ||
			    setrlimit(RLIMIT_FSIZE, &rl) != 0)
				_exit(127);
		}
		if (getenv("WATCHDOG_USEC") != NULL) {
			char pid[32];

			snprintf(pid, sizeof pid, "%ld", (long)getpid());
			setenv("WATCHDOG_PID", pid, 1);
		}
		execl(h->schakeld, h->schakeld, "-c", h->conf, "-E", file,
		    (char *)NULL);
		fprintf(stderr, "harness: cannot run %s: %s\n", h->schakeld,
		    strerror(errno));
		_exit(127);
	}
	return s_wait_ready(h, file);
}

int
hx_stop(struct hx *h, int sig)
{
	uint64_t until;
	int status;

	if (h->pid <= 0)
		return -1;
	kill(h->pid, sig);
	until = hx_mono_ms() + 15000;
	while (waitpid(h->pid, &status, WNOHANG) == 0) {
		if (hx_mono_ms() > until) {
			fprintf(stderr,
			    "harness: schakeld did not stop; "
			    "killing it\n");
			kill(h->pid, SIGKILL);
			waitpid(h->pid, &status, 0);
			h->pid = -1;
			return -1;
		}
		s_nap();
	}
	h->pid = -1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return -1;
}

const char *
hx_yaml(void)
{
	return s_yaml;
}

long
hx_status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, field, n) == 0) {
			kib = strtol(line + n, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

const char *
hx_yaml_limits(const char *limits)
{
	static char yaml[sizeof s_yaml + 1024];
	const char *hb = strstr(s_yaml, "heartbeat: 2s\n");

	snprintf(yaml, sizeof yaml, "%.*s%s%s",
	    (int)(hb + strlen("heartbeat: 2s\n") - s_yaml), s_yaml, limits,
	    hb + strlen("heartbeat: 2s\n"));
	return yaml;
}

struct hx *
hx_new(const char *schakeld, const char *yaml)
{
	return hx_new_env(schakeld, yaml, NULL);
}

struct hx *
hx_new_env(const char *schakeld, const char *yaml, const char *const *env)
{
	struct hx *h = calloc(1, sizeof *h);
	char run[300];

	if (h == NULL)
		return NULL;
	h->pid = -1;
	h->schakeld = schakeld;
	h->env = env;
	h->yaml = yaml != NULL ? yaml : s_yaml;
	if (tu_mkdtemp(h->dir, sizeof h->dir) != 0) {
		free(h);
		return NULL;
	}
	snprintf(h->conf, sizeof h->conf, "%s/schakel.yaml", h->dir);
	snprintf(run, sizeof run, "%s/run", h->dir);
	h->zctx = zmq_ctx_new();
	if (h->zctx == NULL || mkdir(run, 0700) != 0 ||
	    tu_keys(h->dir, s_parties) != 0 ||
	    tu_write(h->dir, "schakel.yaml", h->yaml) != 0 ||
	    hx_start(h) != 0) {
		fprintf(stderr, "harness: cannot set up %s\n", h->dir);
		hx_destroy(&h);
		return NULL;
	}
	return h;
}

/* The raw sockets open now: a test that fails between hx_raw_connect and
 * hx_raw_close leaves one open, and zmq_ctx_term would wait for it until
 * meson's timeout (3 minutes a suite) instead of the failure showing at
 * once.  hx_destroy closes what is left.  Tests run one at a time in a
 * process. */
#define S_RAW_MAX 16
static struct {
	void *ctx, *sock;
} s_raw[S_RAW_MAX];

static void
s_raw_forget(void *sock)
{
	for (size_t i = 0; i < S_RAW_MAX; i++)
		if (s_raw[i].sock == sock)
			s_raw[i].sock = s_raw[i].ctx = NULL;
}

int
hx_destroy(struct hx **hp)
{
	struct hx *h;
	int rc = 0;

	if (hp == NULL || *hp == NULL)
		return -1;
	h = *hp;
	if (h->pid > 0)
		rc = hx_stop(h, SIGTERM);
	for (size_t i = 0; i < S_RAW_MAX; i++)
		if (s_raw[i].ctx == h->zctx && h->zctx != NULL)
			hx_raw_close(&s_raw[i].sock);
	if (h->zctx != NULL)
		zmq_ctx_term(h->zctx);
	tu_rmrf(h->dir);
	free(h);
	*hp = NULL;
	return rc;
}

int
hx_connect(struct hx *h, const char *party, int timeout_ms,
    struct schakel_client **out)
{
	struct schakel_client_opts o = {0};
	struct keys_public pub;
	struct keys_error ke;
	char path[512], key[512], peers[512], err[SCHAKEL_ERROR_MAX];
	int rc;

	snprintf(path, sizeof path, "%s/keys/broker.pub", h->dir);
	if (keys_public_read(path, KEYS_BROKER, &pub, &ke) != 0)
		return SCHAKEL_E_INTERNAL;
	snprintf(key, sizeof key, "%s/keys/%s.key", h->dir, party);
	snprintf(peers, sizeof peers, "%s/keys", h->dir);
	o.endpoint = h->endpoint;
	memcpy(o.broker_transport_key, pub.transport, 32);
	memcpy(o.broker_sign_key, pub.sign, 32);
	o.party_id = party;
	o.key_file = key;
	o.peers_dir = peers;
	o.timeout_ms = timeout_ms;
	rc = schakel_connect(&o, out, err, sizeof err);
	if (rc != SCHAKEL_OK)
		fprintf(stderr, "harness: connect %s: %s: %s\n", party,
		    schakel_errname(rc), err);
	return rc;
}

struct keys_secret *
hx_secret(struct hx *h, const char *party)
{
	char path[512];
	struct keys_error ke;

	snprintf(path, sizeof path, "%s/keys/%s.key", h->dir, party);
	return keys_secret_read(path, KEYS_PARTY, &ke);
}

void
hx_header(struct env_header *h, const char *sender, const char *type,
    const char *case_ref)
{
	env_new_id(h->id);
	snprintf(h->sender, sizeof h->sender, "%s", sender);
	snprintf(h->type, sizeof h->type, "%s", type);
	snprintf(h->case_ref, sizeof h->case_ref, "%s", case_ref);
	snprintf(h->purpose, sizeof h->purpose, "%s", HX_PURPOSE);
	snprintf(h->region, sizeof h->region, "GM0344");
	h->created_ms = hx_wall_ms();
	h->expires_ms = h->created_ms + 3600 * 1000;
}

int
hx_envelope(struct hx *h, const uint8_t *id, const char *case_ref,
    const char *payload, struct codec_buf *env)
{
	struct schakel_client *a = NULL;
	struct schakel_message m = hx_msg(HX_TYPE_ONE, case_ref, payload);
	struct schakel_resolved res;
	struct keys_secret *sk = hx_secret(h, HX_SENDER);
	struct env_draft *d = calloc(1, sizeof *d);
	int rc = -1;

	memset(env, 0, sizeof *env);
	if (sk == NULL || d == NULL ||
	    hx_connect(h, HX_SENDER, 5000, &a) != SCHAKEL_OK ||
	    schakel_resolve(a, &m, &res) != SCHAKEL_OK || res.n_recipients != 1)
		goto out;
	hx_header(&d->hdr, HX_SENDER, HX_TYPE_ONE, case_ref);
	if (id != NULL)
		memcpy(d->hdr.id, id, ENV_ID_LEN);
	d->n_recipients = 1;
	snprintf(d->recipients[0].party_id, sizeof d->recipients[0].party_id,
	    "%s", res.recipients[0].party_id);
	memcpy(
	    d->recipients[0].box_pk, res.recipients[0].box_key, ENV_BOX_PK_LEN);
	d->payload = (const uint8_t *)payload;
	d->payload_len = strlen(payload);
	rc = env_build(d, 1, sk->sign_sk, env) == SCHAKEL_OK ? 0 : -1;
out:
	schakel_close(&a);
	keys_secret_destroy(&sk);
	free(d);
	return rc;
}

void
hx_raw_close(void **sock)
{
	if (sock != NULL && *sock != NULL) {
		void *s = *sock;
		s_raw_forget(s);
		zmq_close(s);
		*sock = NULL;
	}
}

int
hx_raw_send(void *sock, const struct frame *f)
{
	struct codec_buf b = {0};
	int rc = -1;

	if (frame_encode(f, &b) == SCHAKEL_OK &&
	    zmq_send(sock, b.data, b.len, 0) == (int)b.len)
		rc = 0;
	codec_buf_clear(&b);
	return rc;
}

int
hx_raw_recv(void *sock, struct frame *f, int timeout_ms)
{
	uint64_t until = hx_mono_ms() + (uint64_t)timeout_ms, now;
	zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
	zmq_msg_t m;
	int rc = 0;

	/* Interrupted or not: on until the time is up. */
	while (rc <= 0 && (now = hx_mono_ms()) < until)
		rc = zmq_poll(&it, 1, (long)(until - now));
	if (rc <= 0)
		return -1;
	zmq_msg_init(&m);
	rc = zmq_msg_recv(&m, sock, 0) >= 0 &&
		frame_decode(zmq_msg_data(&m), zmq_msg_size(&m), 0, f) ==
		    SCHAKEL_OK
	    ? 0
	    : -1;
	zmq_msg_close(&m);
	return rc;
}

int
hx_raw_request(
    void *sock, struct frame *req, struct frame *reply, int timeout_ms)
{
	uint64_t until = hx_mono_ms() + (uint64_t)timeout_ms;
	uint64_t now;

	if (hx_raw_send(sock, req) != 0)
		return -1;
	while ((now = hx_mono_ms()) < until) {
		if (hx_raw_recv(sock, reply, (int)(until - now)) != 0)
			return -1;
		if (reply->corr_id == req->corr_id && reply->kind != FRAME_PING)
			return 0;
		frame_clear(reply);
	}
	return -1;
}

void *
hx_raw_open(
    struct hx *h, const char *party, const void *id, size_t idlen, int rcvhwm)
{
	struct keys_public bpub;
	struct keys_secret *sec;
	struct keys_error ke;
	char path[512];
	int linger = 0;
	void *s;

	snprintf(path, sizeof path, "%s/keys/broker.pub", h->dir);
	if (keys_public_read(path, KEYS_BROKER, &bpub, &ke) != 0)
		return NULL;
	sec = hx_secret(h, party);
	if (sec == NULL)
		return NULL;
	s = zmq_socket(h->zctx, ZMQ_DEALER);
	if (s == NULL ||
	    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, bpub.transport, 32) != 0 ||
	    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, sec->pub.transport, 32) !=
		0 ||
	    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec->transport_sk, 32) !=
		0 ||
	    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
	    (idlen > 0 && zmq_setsockopt(s, ZMQ_ROUTING_ID, id, idlen) != 0) ||
	    (rcvhwm > 0 &&
		zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm) != 0) ||
	    zmq_connect(s, h->endpoint) != 0) {
		keys_secret_destroy(&sec);
		hx_raw_close(&s);
		return NULL;
	}
	keys_secret_destroy(&sec);
	for (size_t i = 0; i < S_RAW_MAX; i++)
		if (s_raw[i].sock == NULL) {
			s_raw[i].ctx = h->zctx;
			s_raw[i].sock = s;
			break;
		}
	return s;
}

void *
hx_raw_connect(struct hx *h, const char *party)
{
	struct frame hello = {0}, w = {0};
	void *s = hx_raw_open(h, party, NULL, 0, 0);

	if (s == NULL)
		return NULL;
	hello.corr_id = 1;
	hello.kind = FRAME_HELLO;
	snprintf(hello.u.hello.protocol, sizeof hello.u.hello.protocol, "%s",
	    FRAME_PROTOCOL);
	snprintf(
	    hello.u.hello.party_id, sizeof hello.u.hello.party_id, "%s", party);
	snprintf(hello.u.hello.software, sizeof hello.u.hello.software,
	    "schakel integration harness");
	if (hx_raw_request(s, &hello, &w, 5000) != 0 ||
	    w.kind != FRAME_WELCOME) {
		frame_clear(&w);
		hx_raw_close(&s);
		return NULL;
	}
	frame_clear(&w);
	return s;
}

/* The child inherits stderr at fork: point the test's own stderr at the
 * file for the moment of the fork, then put it back. */
int
hx_start_logged(struct hx *h, const char *log)
{
	int fd, saved, rc;

	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	if (saved < 0) {
		close(fd);
		return -1;
	}
	fflush(stderr);
	if (dup2(fd, STDERR_FILENO) < 0) {
		close(fd);
		close(saved);
		return -1;
	}
	close(fd);
	rc = hx_start(h);
	fflush(stderr);
	if (dup2(saved, STDERR_FILENO) < 0)
		rc = -1;
	close(saved);
	return rc;
}

int
hx_schakelctl(struct hx *h, const char *schakelctl, char *out, size_t outlen,
    const char *const *args)
{
	const char *argv[16];
	char sock[320];
	size_t n = 0, got = 0;
	int fds[2], status;
	pid_t pid;

	snprintf(sock, sizeof sock, "%s/run/control.sock", h->dir);
	argv[n++] = schakelctl;
	argv[n++] = "-s";
	argv[n++] = sock;
	for (size_t i = 0; args[i] != NULL; i++) {
		if (n + 2 > sizeof argv / sizeof argv[0])
			return -1;
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	if (outlen == 0 || pipe(fds) != 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execv(schakelctl, (char *const *)argv);
		fprintf(stderr, "harness: cannot run %s: %s\n", schakelctl,
		    strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		char buf[4096];
		ssize_t r = read(fds[0], buf, sizeof buf);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r && got + 1 < outlen; i++)
			out[got++] = buf[i];
	}
	out[got] = '\0';
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}
