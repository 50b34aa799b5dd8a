/* Integration tests of operating schakeld (issue 5, "Must show"): the
 * sd_notify sequence seen on a NOTIFY_SOCKET the test binds itself, a
 * reload under load (valid and broken), the Prometheus metrics against
 * the traffic the test sent, and every schakelctl command in both output
 * formats.  Each test starts its own broker in its own folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "audit.h"
#include "harness.h"
#include "schakel.h"
#include "store.h"
#include "testutil.h"

static const char *s_schakeld, *s_schakelctl;

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

/* `text` with the first `from` replaced by `to`; owned. */
static char *
s_replace(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);
	size_t len = strlen(text) - strlen(from) + strlen(to) + 1;
	char *out;

	assert_non_null(at);
	out = malloc(len);
	assert_non_null(out);
	snprintf(out, len, "%.*s%s%s", (int)(at - text), text, to,
	    at + strlen(from));
	return out;
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

/* What a receiving handler saw: message ids and case references. */
struct s_got {
	size_t n, cap;
	uint8_t (*id)[SCHAKEL_ID_LEN];
	char (*case_ref)[SCHAKEL_NAME_MAX + 1];
};

static int
s_on_message(void *arg, const struct schakel_delivery *d)
{
	struct s_got *g = arg;

	if (g->n == g->cap)
		return -1;
	memcpy(g->id[g->n], d->message_id, SCHAKEL_ID_LEN);
	snprintf(g->case_ref[g->n], sizeof g->case_ref[0], "%s", d->case_ref);
	g->n++;
	return 0;
}

static void
s_got_init(struct s_got *g, size_t cap)
{
	g->n = 0;
	g->cap = cap;
	g->id = calloc(cap, sizeof *g->id);
	g->case_ref = calloc(cap, sizeof *g->case_ref);
	assert_non_null(g->id);
	assert_non_null(g->case_ref);
}

static void
s_got_free(struct s_got *g)
{
	free(g->id);
	free(g->case_ref);
	memset(g, 0, sizeof *g);
}

/* Connects `party`, receives for `ms` (at most `max`), closes. */
static size_t
s_receive(struct hx *h, const char *party, size_t max, int ms, struct s_got *g)
{
	struct schakel_client *c = NULL;
	size_t handed = 0;

	assert_int_equal(hx_connect(h, party, 5000, &c), SCHAKEL_OK);
	assert_int_equal(
	    schakel_receive(c, max, ms, s_on_message, g, &handed), SCHAKEL_OK);
	schakel_close(&c);
	return handed;
}

/* ------------------------------------------------------------------ */
/* schakelctl                                                          */

#define S_OUT_MAX (256 * 1024)

struct s_ctl {
	int status; /* exit status, or -1 when it did not exit */
	char out[S_OUT_MAX];
	char err[16384];
};

static void
s_slurp(const char *path, char *buf, size_t max)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	buf[0] = '\0';
	if (f == NULL)
		return;
	n = fread(buf, 1, max - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
}

/* Runs schakelctl -s SOCKET ARGS... with its output in files of `dir`;
 * as `nobody` when `drop`.  Fills in *o and returns o->status. */
static int
s_ctl_run(const char *dir, const char *sock, bool drop, struct s_ctl *o,
    const char *const *args)
{
	char outp[512], errp[512];
	const char *argv[32];
	size_t n = 0;
	pid_t pid;
	int st;

	snprintf(outp, sizeof outp, "%s/ctl.out", dir);
	snprintf(errp, sizeof errp, "%s/ctl.err", dir);
	argv[n++] = s_schakelctl;
	argv[n++] = "-s";
	argv[n++] = sock;
	for (size_t i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0666);

		if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
			_exit(125);
		if (drop &&
		    (setgroups(0, NULL) != 0 || setgid(65534) != 0 ||
			setuid(65534) != 0))
			_exit(126);
		execv(s_schakelctl, (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	o->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	s_slurp(outp, o->out, sizeof o->out);
	s_slurp(errp, o->err, sizeof o->err);
	return o->status;
}

static int
s_ctl_v(struct hx *h, struct s_ctl *o, const char *const *args)
{
	char sock[512];

	snprintf(sock, sizeof sock, "%s/run/control.sock", h->dir);
	return s_ctl_run(h->dir, sock, false, o, args);
}

#define S_CTL(h, o, ...) s_ctl_v(h, o, (const char *const[]){__VA_ARGS__, NULL})

/* Runs a command that must succeed; shows its stderr when not. */
#define S_CTL_OK(h, o, ...) \
	do { \
		if (S_CTL(h, o, __VA_ARGS__) != 0) \
			fail_msg("schakelctl failed (%d): %s", (o)->status, \
			    (o)->err); \
	} while (0)

/* ------------------------------------------------------------------ */
/* a tiny JSON checker: well-formed, one value, nothing after it        */

static const char *s_json_value(const char *p, int depth);

static const char *
s_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
		p++;
	return p;
}

static const char *
s_json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p != '"') {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (strchr("0123456789abcdefABCDEF",
						p[i]) == NULL ||
					    p[i] == '\0')
						return NULL;
				p += 4;
			} else if (strchr("\"\\/bfnrt", *p) == NULL ||
			    *p == '\0') {
				return NULL;
			}
		}
		p++;
	}
	return p + 1;
}

static const char *
s_json_number(const char *p)
{
	char *end;

	if (*p != '-' && (*p < '0' || *p > '9'))
		return NULL;
	(void)strtod(p, &end);
	return end > p ? end : NULL;
}

static const char *
s_json_value(const char *p, int depth)
{
	if (depth > 32)
		return NULL;
	p = s_ws(p);
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		bool object = *p == '{';

		p = s_ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (object) {
				p = s_json_string(s_ws(p));
				if (p == NULL)
					return NULL;
				p = s_ws(p);
				if (*p++ != ':')
					return NULL;
			}
			p = s_json_value(p, depth + 1);
			if (p == NULL)
				return NULL;
			p = s_ws(p);
			if (*p == close)
				return p + 1;
			if (*p++ != ',')
				return NULL;
		}
	}
	if (*p == '"')
		return s_json_string(p);
	if (strncmp(p, "true", 4) == 0)
		return p + 4;
	if (strncmp(p, "false", 5) == 0)
		return p + 5;
	if (strncmp(p, "null", 4) == 0)
		return p + 4;
	return s_json_number(p);
}

static void
s_assert_json(const char *text, char first)
{
	const char *end = s_json_value(text, 0);

	if (end == NULL || *s_ws(end) != '\0' || *s_ws(text) != first)
		fail_msg("not one JSON %s: %s",
		    first == '{' ? "object" : "array", text);
}

/* The number after "key": inside the JSON object that contains `anchor`
 * (e.g. "\"party\":\"team-a\""); -1 when absent. */
static long long
s_json_num(const char *json, const char *anchor, const char *key)
{
	const char *at = anchor != NULL ? strstr(json, anchor) : json;
	const char *start, *end, *k;
	char pat[96];

	if (at == NULL)
		return -1;
	start = at;
	while (start > json && *start != '{')
		start--;
	end = strchr(at, '}');
	snprintf(pat, sizeof pat, "\"%s\":", key);
	k = strstr(start, pat);
	if (k == NULL || (end != NULL && k > end))
		return -1;
	return strtoll(k + strlen(pat), NULL, 10);
}

static size_t
s_count(const char *text, const char *what)
{
	size_t n = 0;

	for (const char *p = strstr(text, what); p != NULL;
	     p = strstr(p + 1, what))
		n++;
	return n;
}

/* ------------------------------------------------------------------ */
/* (1) sd_notify                                                       */

#define S_NOTES_MAX 512

struct s_notify {
	int fd;
	size_t n;
	char note[S_NOTES_MAX][48]; /* READY=1, WATCHDOG=1, STATUS=..., ... */
};

/* Reads datagrams until `want` shows up at or after *pos, or the
 * deadline passes.  Returns its index, or -1. */
static long
s_notify_wait(struct s_notify *nt, const char *want, size_t from, int ms)
{
	uint64_t until = hx_mono_ms() + (uint64_t)ms;

	for (;;) {
		char buf[4096];
		struct pollfd p = {.fd = nt->fd, .events = POLLIN};
		ssize_t len;
		char *save = NULL;

		for (size_t i = from; i < nt->n; i++)
			if (strcmp(nt->note[i], want) == 0)
				return (long)i;
		if (hx_mono_ms() >= until)
			return -1;
		if (poll(&p, 1, (int)(until - hx_mono_ms())) <= 0)
			continue;
		len = recv(nt->fd, buf, sizeof buf - 1, 0);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		for (char *line = strtok_r(buf, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save))
			if (nt->n < S_NOTES_MAX)
				snprintf(nt->note[nt->n++], sizeof nt->note[0],
				    "%s", line);
	}
}

/* Start, reload and stop: READY=1, WATCHDOG=1, RELOADING=1, READY=1,
 * STOPPING=1 in that order, on a socket the test binds itself. */
static void
t_notify(void **state)
{
	struct s_notify *nt = calloc(1, sizeof *nt);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char dir[256], env_sock[400];
	const char *env[] = {env_sock, "WATCHDOG_USEC=200000", NULL};
	long ready, wd, reloading, ready2, stopping;
	struct hx *h;

	(void)state;
	assert_non_null(nt);
	assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
	assert_true(strlen(dir) + 8 < sizeof sun.sun_path);
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s/notify", dir);
	snprintf(env_sock, sizeof env_sock, "NOTIFY_SOCKET=%s", sun.sun_path);
	nt->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(nt->fd >= 0);
	assert_int_equal(bind(nt->fd, (struct sockaddr *)&sun, sizeof sun), 0);

	h = hx_new_env(s_schakeld, NULL, env);
	assert_non_null(h);
	ready = s_notify_wait(nt, "READY=1", 0, 10000);
	assert_true(ready >= 0);
	/* Fed from the loop: every 100 ms for a 200 ms watchdog. */
	wd = s_notify_wait(nt, "WATCHDOG=1", (size_t)ready + 1, 10000);
	assert_true(wd > ready);
	assert_int_equal(kill(h->pid, SIGHUP), 0);
	reloading = s_notify_wait(nt, "RELOADING=1", (size_t)wd + 1, 10000);
	assert_true(reloading > wd);
	ready2 = s_notify_wait(nt, "READY=1", (size_t)reloading + 1, 10000);
	assert_true(ready2 > reloading);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	stopping = s_notify_wait(nt, "STOPPING=1", (size_t)ready2 + 1, 10000);
	assert_true(stopping > ready2);
	/* STATUS= lines come with the states, for systemctl status. */
	assert_true(s_notify_wait(nt, "STATUS=serving", 0, 0) >= 0);
	/* Nothing out of order: no second READY=1 before the reload, no
	 * STOPPING=1 before the stop. */
	for (long i = 0; i < (long)nt->n; i++) {
		if (strcmp(nt->note[i], "READY=1") == 0)
			assert_true(i == ready || i == ready2);
		if (strcmp(nt->note[i], "STOPPING=1") == 0)
			assert_int_equal(i, stopping);
		if (strcmp(nt->note[i], "RELOADING=1") == 0)
			assert_int_equal(i, reloading);
	}

	assert_int_equal(hx_destroy(&h), 0);
	close(nt->fd);
	free(nt);
	tu_rmrf(dir);
}

/* ------------------------------------------------------------------ */
/* (2) reload under load                                               */

#define S_LOAD_MAX 2000

struct s_load {
	struct schakel_client *c;
	atomic_int sent;  /* sends finished */
	atomic_bool stop; /* set by the test: finish after the current send */
	int code[S_LOAD_MAX];
	size_t nrecip[S_LOAD_MAX];
	char to[S_LOAD_MAX][SCHAKEL_NAME_MAX + 1];
	uint8_t id[S_LOAD_MAX][SCHAKEL_ID_LEN];
};

static void *
s_sender(void *arg)
{
	struct s_load *l = arg;

	for (int i = 0; i < S_LOAD_MAX && !atomic_load(&l->stop); i++) {
		char ref[32], text[32];
		struct schakel_message m;
		struct schakel_receipt r;

		snprintf(ref, sizeof ref, "zaak-last-%d", i % 7);
		snprintf(text, sizeof text, "bericht %d", i);
		m = hx_msg(HX_TYPE_ONE, ref, text);
		l->code[i] = schakel_send(l->c, &m, &r);
		if (l->code[i] == SCHAKEL_OK) {
			l->nrecip[i] = r.n_recipients;
			snprintf(l->to[i], sizeof l->to[0], "%s",
			    r.n_recipients > 0 ? r.recipients[0] : "");
			memcpy(l->id[i], r.message_id, SCHAKEL_ID_LEN);
			schakel_receipt_clear(&r);
		}
		atomic_store(&l->sent, i + 1);
	}
	return NULL;
}

static int
s_wait_sent(struct s_load *l, int n)
{
	uint64_t until = hx_mono_ms() + 60000;

	while (atomic_load(&l->sent) < n) {
		if (hx_mono_ms() > until)
			return -1;
		hx_sleep_ms(5);
	}
	return atomic_load(&l->sent);
}

/* How many requests the broker refused so far (status --json). */
static long long
s_refused(struct hx *h, struct s_ctl *o)
{
	S_CTL_OK(h, o, "--json", "status");
	s_assert_json(o->out, '{');
	return s_json_num(o->out, NULL, "refused");
}

static void
t_reload_under_load(void **state)
{
	struct hx *h = *state;
	struct s_load *l = calloc(1, sizeof *l);
	struct s_ctl *o = calloc(1, sizeof *o);
	char *moved, *broken;
	const char *bad_route = "  - id: kapot\n"
				"    match: {type: shv.overleg.v1, sender: "
				"gemeente}\n"
				"    to: [{party: team-z}]\n";
	char want[64];
	int a_end, b_start, c_start, total, switched = -1;
	unsigned bad_line = 1;
	size_t na = 0, nb = 0, len;
	long long refused_after_valid, refused_after_broken;
	struct s_got ga, gb;
	pthread_t th;

	assert_non_null(l);
	assert_non_null(o);
	/* Only the route differs from the running file. */
	moved = s_replace(hx_yaml(), "    to: [{party: team-a}]\n",
	    "    to: [{party: team-b}]\n");
	len = strlen(moved) + strlen(bad_route) + 1;
	broken = malloc(len);
	assert_non_null(broken);
	snprintf(broken, len, "%s%s", moved, bad_route);
	for (const char *p = moved; *p; p++)
		bad_line += *p == '\n';
	bad_line += 2; /* the "to:" line of the route appended */

	assert_int_equal(hx_connect(h, HX_SENDER, 10000, &l->c), SCHAKEL_OK);
	assert_int_equal(pthread_create(&th, NULL, s_sender, l), 0);

	/* (a) a valid file with a changed route, mid-stream. */
	a_end = s_wait_sent(l, 50);
	assert_true(a_end >= 50);
	assert_int_equal(tu_write(h->dir, "schakel.yaml", moved), 0);
	S_CTL_OK(h, o, "reload");
	assert_non_null(strstr(o->out, "generation 1"));
	b_start = atomic_load(&l->sent);
	refused_after_valid = s_refused(h, o);

	/* (b) a broken file: refused, errors as file:line:column, the
	 * running configuration stays. */
	assert_true(s_wait_sent(l, b_start + 30) > b_start);
	assert_int_equal(tu_write(h->dir, "schakel.yaml", broken), 0);
	assert_int_equal(S_CTL(h, o, "reload"), 1);
	assert_non_null(strstr(o->err, "has errors, not reloading"));
	snprintf(want, sizeof want, "schakel.yaml:%u:", bad_line);
	if (strstr(o->err, want) == NULL || strstr(o->err, ": error: ") == NULL)
		fail_msg("expected an error at %s in: %s", want, o->err);
	{
		/* file:line:column, the column a number too. */
		const char *p = strstr(o->err, want) + strlen(want);
		unsigned col = 0;
		assert_int_equal(sscanf(p, "%u:", &col), 1);
		assert_true(col > 0);
	}
	c_start = atomic_load(&l->sent);
	assert_true(s_wait_sent(l, c_start + 30) > c_start);
	atomic_store(&l->stop, true);
	assert_int_equal(pthread_join(th, NULL), 0);
	schakel_close(&l->c);
	total = atomic_load(&l->sent);
	/* The load ran through both reloads. */
	assert_true(total > c_start + 1);
	assert_true(c_start > b_start);

	/* Every send got a verified receipt; one recipient each. */
	for (int i = 0; i < total; i++) {
		if (l->code[i] != SCHAKEL_OK)
			fail_msg("send %d: %s", i, schakel_errname(l->code[i]));
		assert_int_equal(l->nrecip[i], 1);
		if (strcmp(l->to[i], HX_TEAM_B) == 0 && switched < 0)
			switched = i;
		/* Once the new route holds, it keeps holding: also after
		 * the broken file. */
		if (switched >= 0)
			assert_string_equal(l->to[i], HX_TEAM_B);
		else
			assert_string_equal(l->to[i], HX_TEAM_A);
		if (strcmp(l->to[i], HX_TEAM_A) == 0)
			na++;
		else
			nb++;
	}
	/* Sent before the reload began: old route; begun after it
	 * returned: new route.  One send may straddle the swap. */
	assert_true(switched >= a_end && switched <= b_start + 1);
	/* At most that one send was refused (ROUTE_CHANGED, which the
	 * library answered by resolving again); the broken file made no
	 * difference at all. */
	refused_after_broken = s_refused(h, o);
	assert_true(refused_after_valid >= 0 && refused_after_valid <= 1);
	assert_int_equal(refused_after_broken, refused_after_valid);
	S_CTL_OK(h, o, "status");
	assert_non_null(strstr(o->out, "(generation 1)"));

	/* The recipients get everything, each message once. */
	s_got_init(&ga, na + 8);
	s_got_init(&gb, nb + 8);
	assert_int_equal(s_receive(h, HX_TEAM_A, na, 60000, &ga), na);
	assert_int_equal(s_receive(h, HX_TEAM_B, nb, 60000, &gb), nb);
	assert_int_equal(s_receive(h, HX_TEAM_A, 0, 300, &ga), 0);
	assert_int_equal(s_receive(h, HX_TEAM_B, 0, 300, &gb), 0);
	for (int i = 0; i < total; i++) {
		struct s_got *g = strcmp(l->to[i], HX_TEAM_A) == 0 ? &ga : &gb;
		size_t hits = 0;
		for (size_t k = 0; k < g->n; k++)
			hits += memcmp(g->id[k], l->id[i], SCHAKEL_ID_LEN) == 0;
		if (hits != 1)
			fail_msg("message %d reached %s %zu times", i, l->to[i],
			    hits);
	}
	print_message("reload under load: %d messages, %zu by the old route, "
		      "%zu by the new; %lld refused and resent\n",
	    total, na, nb, refused_after_valid);
	s_got_free(&ga);
	s_got_free(&gb);
	free(moved);
	free(broken);
	free(o);
	free(l);
}

/* ------------------------------------------------------------------ */
/* (3) metrics                                                         */

/* Whether `decl` occurs in `text` before `line`. */
static bool
s_declared(const char *text, const char *line, const char *decl)
{
	const char *at = strstr(text, decl);

	return at != NULL && at < line;
}

/* Checks the exposition format: every sample line is "series value",
 * and every family has a # TYPE line before its samples. */
static void
s_check_exposition(const char *text)
{
	const char *line = text;

	while (*line != '\0') {
		const char *eol = strchr(line, '\n');
		char series[256], family[128], type[160];
		const char *sp;
		char *end;
		size_t flen;

		if (eol == NULL)
			fail_msg("the last line has no newline");
		if (line[0] == '#' || line == eol) {
			line = eol + 1;
			continue;
		}
		sp = memchr(line, ' ', (size_t)(eol - line));
		assert_non_null(sp);
		assert_true((size_t)(sp - line) < sizeof series);
		memcpy(series, line, (size_t)(sp - line));
		series[sp - line] = '\0';
		(void)strtod(sp + 1, &end);
		if (end == sp + 1 || end != eol)
			fail_msg("not a sample: %.*s", (int)(eol - line), line);
		flen = strcspn(series, "{");
		assert_true(flen < sizeof family);
		memcpy(family, series, flen);
		family[flen] = '\0';
		assert_int_equal(strncmp(family, "schakel_", 8), 0);
		snprintf(type, sizeof type, "# TYPE %s ", family);
		if (!s_declared(text, line, type)) {
			/* A histogram's series carry suffixes. */
			static const char *const suf[] = {
			    "_bucket", "_sum", "_count"};
			bool ok = false;
			for (size_t i = 0; i < 3 && !ok; i++) {
				size_t sl = strlen(suf[i]);
				if (flen <= sl ||
				    strcmp(family + flen - sl, suf[i]) != 0)
					continue;
				snprintf(type, sizeof type,
				    "# TYPE %.*s histogram\n", (int)(flen - sl),
				    family);
				ok = s_declared(text, line, type);
			}
			if (!ok)
				fail_msg("no # TYPE line before %s", series);
		}
		line = eol + 1;
	}
}

struct s_expect {
	const char *series;
	double value;
};

/* Scrapes until every expectation holds (the broker renders once a
 * second) or 10 s pass. */
static void
s_scrape_until(struct hx *h, char *text, const struct s_expect *e, size_t n)
{
	uint64_t until = hx_mono_ms() + 10000;
	size_t bad = 0;

	for (;;) {
		assert_int_equal(
		    tu_http_get(h->metrics_port, "/metrics", text, TU_HTTP_MAX),
		    200);
		for (bad = 0; bad < n; bad++)
			if (tu_metric(text, e[bad].series) != e[bad].value)
				break;
		if (bad == n)
			break;
		if (hx_mono_ms() > until)
			fail_msg("%s is %g, not %g", e[bad].series,
			    tu_metric(text, e[bad].series), e[bad].value);
		hx_sleep_ms(100);
	}
	s_check_exposition(text);
}

/* The histogram's buckets rise, and +Inf equals the count. */
static void
s_check_histogram(const char *text, const char *name, double count)
{
	static const char *const le[] = {"0.0005", "0.001", "0.0025", "0.005",
	    "0.01", "0.025", "0.05", "0.1", "0.25", "1", "10", "60", "+Inf"};
	char series[160];
	double last = 0;

	for (size_t i = 0; i < sizeof le / sizeof le[0]; i++) {
		double v;
		snprintf(
		    series, sizeof series, "%s_bucket{le=\"%s\"}", name, le[i]);
		v = tu_metric(text, series);
		assert_true(v >= last);
		last = v;
	}
	assert_true(last == count);
	snprintf(series, sizeof series, "%s_count", name);
	assert_true(tu_metric(text, series) == count);
	snprintf(series, sizeof series, "%s_sum", name);
	assert_true(tu_metric(text, series) >= 0);
}

static void
t_metrics(void **state)
{
	char *metrics =
	    s_replace(hx_yaml(), "metrics: off", "metrics: 127.0.0.1:0");
	/* Three signature checkers, whatever the machine has. */
	char *yaml = s_replace(
	    metrics, "heartbeat: 2s", "heartbeat: 2s\n    verify_threads: 3");
	char *text = malloc(TU_HTTP_MAX);
	struct schakel_client *a = NULL;
	struct schakel_message m;
	struct s_got g;
	struct hx *h;
	const struct s_expect sent[] = {
	    {"schakel_up", 1},
	    {"schakel_messages_accepted_total{type=\"shv.melding.v1\"}", 3},
	    {"schakel_messages_accepted_total{type=\"shv.overleg.v1\"}", 2},
	    {"schakel_messages_refused_total{reason=\"UNKNOWN_TYPE\"}", 1},
	    {"schakel_messages_refused_total{reason=\"NO_ROUTE\"}", 1},
	    {"schakel_queue_depth{party=\"team-a\"}", 5},
	    {"schakel_queue_depth{party=\"team-b\"}", 2},
	    {"schakel_queue_depth{party=\"team-c\"}", 2},
	    {"schakel_queue_depth{party=\"gemeente\"}", 0},
	    {"schakel_receipt_latency_seconds_count", 5},
	    {"schakel_acknowledged_total", 0},
	    {"schakel_deliveries_total", 0},
	    {"schakel_connected_parties", 1},
	    {"schakel_in_flight{party=\"gemeente\"}", 0},
	    {"schakel_unsent_bytes{party=\"gemeente\"}", 0},
	    {"schakel_slow_consumers_total", 0},
	    {"schakel_verify_pending", 0},
	    {"schakel_verify_threads", 3},
	};
	const struct s_expect acked[] = {
	    {"schakel_acknowledged_total", 5},
	    {"schakel_deliveries_total", 5},
	    {"schakel_delivery_latency_seconds_count", 5},
	    {"schakel_queue_depth{party=\"team-a\"}", 0},
	    {"schakel_queue_depth{party=\"team-b\"}", 2},
	    {"schakel_messages_accepted_total{type=\"shv.melding.v1\"}", 3},
	    {"schakel_connected_parties", 1},
	};

	(void)state;
	assert_non_null(text);
	h = hx_new(s_schakeld, yaml);
	assert_non_null(h);
	assert_true(h->metrics_port > 0);
	assert_int_equal(
	    tu_http_get(h->metrics_port, "/healthz", text, TU_HTTP_MAX), 200);
	assert_string_equal(text, "ok\n");
	assert_int_equal(
	    tu_http_get(h->metrics_port, "/nergens", text, TU_HTTP_MAX), 404);

	assert_int_equal(hx_connect(h, HX_SENDER, 5000, &a), SCHAKEL_OK);
	for (int i = 0; i < 3; i++) {
		m = hx_msg(HX_TYPE_ONE, "zaak-m1", "melding");
		s_send_ok(a, &m, NULL);
	}
	for (int i = 0; i < 2; i++) {
		m = hx_msg(HX_TYPE_ALL, "zaak-m2", "overleg");
		s_send_ok(a, &m, NULL);
	}
	/* Two refusals: a type nobody declared, and a region without a
	 * debt-counselling team. */
	m = hx_msg("shv.onbekend.v1", "zaak-m3", "?");
	assert_int_equal(schakel_send(a, &m, NULL), SCHAKEL_E_UNKNOWN_TYPE);
	m = hx_msg(HX_TYPE_ALL, "zaak-m3", "?");
	m.region = "GM0363";
	assert_int_equal(schakel_send(a, &m, NULL), SCHAKEL_E_NO_ROUTE);
	s_scrape_until(h, text, sent, sizeof sent / sizeof sent[0]);
	s_check_histogram(text, "schakel_receipt_latency_seconds", 5);
	s_check_histogram(text, "schakel_delivery_latency_seconds", 0);
	/* Each of the five waited for its own receipt: five commits at
	 * least, every one timed. */
	assert_true(tu_metric(text, "schakel_store_commits_total") >= 5);
	s_check_histogram(text, "schakel_store_commit_seconds",
	    tu_metric(text, "schakel_store_commits_total"));
	assert_true(tu_metric(text, "schakel_store_commit_seconds_sum") > 0);
	assert_true(tu_metric(text, "schakel_store_used_bytes") > 0);
	assert_true(tu_metric(text, "schakel_store_size_bytes") >=
	    tu_metric(text, "schakel_store_used_bytes"));
	/* New messages are refused before the map is full: a sixteenth
	 * of it is kept back for deliveries. */
	assert_true(tu_metric(text, "schakel_store_limit_bytes") >
	    tu_metric(text, "schakel_store_used_bytes"));
	assert_true(tu_metric(text, "schakel_store_limit_bytes") ==
	    tu_metric(text, "schakel_store_size_bytes") * 15 / 16);
	/* Labels are bounded: no case reference anywhere. */
	assert_null(strstr(text, "zaak-"));

	/* team-a comes online and takes its five. */
	s_got_init(&g, 16);
	assert_int_equal(s_receive(h, HX_TEAM_A, 5, 10000, &g), 5);
	s_got_free(&g);
	s_scrape_until(h, text, acked, sizeof acked / sizeof acked[0]);
	s_check_histogram(text, "schakel_delivery_latency_seconds", 5);
	s_check_histogram(text, "schakel_receipt_latency_seconds", 5);

	/* Group commit: 64 messages sent at once (one batch, pipelined)
	 * share commits, where a commit (and fsync) each would make 64. */
	{
		static struct schakel_message batch[64];
		static int results[64];
		const struct s_expect all[] = {
		    {"schakel_messages_accepted_total{type=\"shv.melding.v1\"}",
			3 + 64},
		};
		double c0 = tu_metric(text, "schakel_store_commits_total");
		double m0 = tu_metric(
		    text, "schakel_transport_messages_total{direction=\"in\"}");
		double f0 =
		    tu_metric(text, "schakel_frames_total{direction=\"in\"}");
		double mo, fo;

		for (int i = 0; i < 64; i++)
			batch[i] = hx_msg(HX_TYPE_ONE, "zaak-m4", "samen");
		assert_int_equal(
		    schakel_send_batch(a, batch, 64, NULL, results),
		    SCHAKEL_OK);
		s_scrape_until(h, text, all, 1);
		assert_true(c0 > 0);
		assert_true(
		    tu_metric(text, "schakel_store_commits_total") - c0 < 64);
		/* Bundles: the 64 Resolves and the 64 submissions came in a
		 * few ZeroMQ messages, and the broker answered in fewer
		 * messages than frames. */
		m0 = tu_metric(text,
			 "schakel_transport_messages_total{direction=\"in\"}") -
		    m0;
		f0 = tu_metric(text, "schakel_frames_total{direction=\"in\"}") -
		    f0;
		assert_true(f0 >= 128);
		assert_true(m0 <= 8);
		mo = tu_metric(text,
		    "schakel_transport_messages_total{direction=\"out\"}");
		fo = tu_metric(text, "schakel_frames_total{direction=\"out\"}");
		assert_true(mo < fo);
	}

	schakel_close(&a);
	/* A stopping broker says so before it goes (or is gone). */
	assert_int_equal(hx_destroy(&h), 0);
	free(text);
	free(yaml);
	free(metrics);
}

/* ------------------------------------------------------------------ */
/* (4) every schakelctl command, in both formats                       */

/* Lets the message of `seq` (accepted at `accepted_ms`, with a short
 * life) expire and connects team-a, so that the broker dead-letters it
 * (EXPIRED) at delivery time.  What team-a gets meanwhile goes to *g. */
static void
s_expire(struct hx *h, uint64_t accepted_ms, struct s_got *g)
{
	while (hx_wall_ms() < accepted_ms + 600)
		hx_sleep_ms(50);
	(void)s_receive(h, HX_TEAM_A, 0, 700, g);
}

/* Sends one message to offline team-a with a 300 ms life.  Returns its
 * store sequence; *accepted_ms its acceptance time. */
static uint64_t
s_send_short(
    struct schakel_client *a, const char *case_ref, uint64_t *accepted_ms)
{
	struct schakel_message m = hx_msg(HX_TYPE_ONE, case_ref, "te laat");
	struct schakel_receipt r;

	m.ttl_ms = 300;
	s_send_ok(a, &m, &r);
	*accepted_ms = r.accepted_ms;
	schakel_receipt_clear(&r);
	return r.store_seq;
}

/* Sends one and lets it expire; team-a has nothing else waiting. */
static uint64_t
s_expire_one(struct hx *h, struct schakel_client *a, const char *case_ref)
{
	struct s_got g;
	uint64_t at, seq = s_send_short(a, case_ref, &at);

	s_got_init(&g, 4);
	s_expire(h, at, &g);
	assert_int_equal(g.n, 0);
	s_got_free(&g);
	return seq;
}

/* A dead letter made again by connecting team-a after a redeliver. */
static void
s_expire_again(struct hx *h)
{
	struct s_got g;

	s_got_init(&g, 4);
	s_expire(h, 0, &g);
	assert_int_equal(g.n, 0);
	s_got_free(&g);
}

/* Waits until team-a's dead letters are exactly `n`. */
static void
s_wait_dead(struct hx *h, struct s_ctl *o, long long n)
{
	uint64_t until = hx_mono_ms() + 10000;

	for (;;) {
		S_CTL_OK(h, o, "--json", "parties");
		if (s_json_num(
			o->out, "\"party\":\"team-a\"", "dead_letters") == n)
			return;
		if (hx_mono_ms() > until)
			fail_msg("team-a does not have %lld dead letters: %s",
			    n, o->out);
		hx_sleep_ms(50);
	}
}

/* Waits until the audit export of `case_ref` holds `n` of `event`. */
static void
s_wait_events(struct hx *h, struct s_ctl *o, const char *case_ref,
    const char *event, size_t n)
{
	uint64_t until = hx_mono_ms() + 10000;

	for (;;) {
		S_CTL_OK(h, o, "audit", "export", "--case", case_ref);
		if (s_count(o->out, event) == n)
			return;
		if (hx_mono_ms() > until)
			fail_msg("not %zu of%s for %s: %s", n, event, case_ref,
			    o->out);
		hx_sleep_ms(50);
	}
}

static void
t_schakelctl(void **state)
{
	struct hx *h = *state;
	struct s_ctl *o = calloc(1, sizeof *o);
	struct schakel_client *a = NULL;
	struct schakel_message m;
	struct s_got g;
	char seqs[32], line[256], sock[512];
	uint64_t seq, seq2, t0;
	long long records;
	size_t lines;

	assert_non_null(o);
	snprintf(sock, sizeof sock, "%s/run/control.sock", h->dir);
	assert_int_equal(hx_connect(h, HX_SENDER, 5000, &a), SCHAKEL_OK);
	m = hx_msg(HX_TYPE_ALL, "zaak-anders", "overleg");
	s_send_ok(a, &m, NULL);

	/* status */
	S_CTL_OK(h, o, "status");
	assert_non_null(strstr(o->out, "version "));
	assert_non_null(strstr(o->out, "(generation 0)"));
	assert_non_null(strstr(o->out, "5 declared, 1 connected"));
	assert_non_null(strstr(o->out, "1 accepted, 0 refused"));
	assert_non_null(strstr(o->out,
	    "audit log    kept in the store "
	    "(broker.audit_archive is not "
	    "configured)\n"));
	S_CTL_OK(h, o, "status", "--json");
	s_assert_json(o->out, '{');
	assert_non_null(strstr(o->out, "\"version\":\""));
	assert_int_equal(s_json_num(o->out, NULL, "generation"), 0);
	assert_int_equal(s_json_num(o->out, NULL, "parties"), 5);
	assert_int_equal(s_json_num(o->out, NULL, "connected"), 1);
	assert_int_equal(s_json_num(o->out, NULL, "accepted"), 1);
	assert_int_equal(s_json_num(o->out, NULL, "audit_archived_up_to"), 0);
	assert_non_null(strstr(o->out, "\"audit_archive\":null}"));
	assert_true(s_json_num(o->out, NULL, "store_used_bytes") > 0);
	assert_true(s_json_num(o->out, NULL, "store_limit_bytes") >
	    s_json_num(o->out, NULL, "store_used_bytes"));
	assert_true(s_json_num(o->out, NULL, "store_limit_bytes") <
	    s_json_num(o->out, NULL, "store_size_bytes"));
	assert_non_null(strstr(o->out, "\"store_full\":false"));

	/* parties: all five, gemeente connected */
	S_CTL_OK(h, o, "parties");
	assert_int_equal(strncmp(o->out, "PARTY ", 6), 0);
	assert_int_equal(s_count(o->out, "\n"), 6);
	{
		char p[64], role[64], conn[16];
		const char *row = strstr(o->out, "\ngemeente ");
		assert_non_null(row);
		assert_int_equal(
		    sscanf(row + 1, "%63s %63s %15s", p, role, conn), 3);
		assert_string_equal(role, "municipality");
		assert_string_equal(conn, "yes");
	}
	S_CTL_OK(h, o, "--json", "parties");
	s_assert_json(o->out, '[');
	assert_int_equal(s_count(o->out, "\"party\":"), 5);
	assert_non_null(strstr(o->out,
	    "{\"party\":\"gemeente\",\"role\":\"municipality\","
	    "\"connected\":true"));
	assert_int_equal(
	    s_json_num(o->out, "\"party\":\"team-b\"", "queued"), 1);
	assert_int_equal(
	    s_json_num(o->out, "\"party\":\"gemeente\"", "queued"), 0);

	/* queues: only the three teams have something waiting */
	S_CTL_OK(h, o, "queues");
	assert_int_equal(s_count(o->out, "\n"), 4);
	assert_null(strstr(o->out, "gemeente"));
	{
		char p[64], role[64], conn[16], seen[32];
		unsigned long long q;
		const char *row = strstr(o->out, "\nteam-c ");
		assert_non_null(row);
		assert_int_equal(sscanf(row + 1, "%63s %63s %15s %31s %llu", p,
				     role, conn, seen, &q),
		    5);
		assert_string_equal(conn, "no");
		assert_int_equal(q, 1);
	}
	S_CTL_OK(h, o, "queues", "--json");
	s_assert_json(o->out, '[');
	assert_int_equal(s_count(o->out, "\"party\":"), 3);
	assert_int_equal(
	    s_json_num(o->out, "\"party\":\"team-a\"", "queued"), 1);

	/* deadletters: none yet */
	S_CTL_OK(h, o, "deadletters", "list");
	assert_non_null(strstr(o->out, "(no dead letters)"));
	S_CTL_OK(h, o, "deadletters", "list", "--json");
	assert_string_equal(o->out, "[]\n");

	/* A message expires while team-a is offline: dead-lettered when
	 * team-a connects (and team-a gets zaak-anders meanwhile). */
	{
		uint64_t at;
		seq = s_send_short(a, "zaak-inzage", &at);
		s_got_init(&g, 4);
		s_expire(h, at, &g);
		assert_int_equal(g.n, 1);
		assert_string_equal(g.case_ref[0], "zaak-anders");
		s_got_free(&g);
	}
	s_wait_dead(h, o, 1);
	snprintf(seqs, sizeof seqs, "%llu", (unsigned long long)seq);

	S_CTL_OK(h, o, "deadletters", "list");
	snprintf(line, sizeof line, "\n%-8s %-32s %-22s ", seqs, HX_TEAM_A,
	    "EXPIRED");
	assert_non_null(strstr(o->out, line));
	assert_non_null(strstr(o->out, HX_TYPE_ONE));
	S_CTL_OK(h, o, "--json", "deadletters", "list", HX_TEAM_A);
	s_assert_json(o->out, '[');
	assert_int_equal(s_count(o->out, "\"seq\":"), 1);
	assert_int_equal(s_json_num(o->out, NULL, "seq"), (long long)seq);
	assert_non_null(
	    strstr(o->out, "\"recipient\":\"team-a\",\"reason\":\"EXPIRED\""));
	assert_non_null(strstr(
	    o->out, "\"type\":\"shv.melding.v1\",\"from\":\"gemeente\""));
	S_CTL_OK(h, o, "deadletters", "list", HX_TEAM_B);
	assert_non_null(strstr(o->out, "(no dead letters)"));
	S_CTL_OK(h, o, "deadletters", "list", HX_TEAM_B, "--json");
	assert_string_equal(o->out, "[]\n");

	/* show: metadata, never the payload */
	S_CTL_OK(h, o, "deadletters", "show", seqs);
	assert_non_null(strstr(o->out, "case         zaak-inzage\n"));
	assert_non_null(strstr(o->out, "type         shv.melding.v1\n"));
	assert_non_null(strstr(o->out, "from         gemeente\n"));
	assert_non_null(strstr(o->out, "team-a (schuldhulp)"));
	assert_null(strstr(o->out, "te laat"));
	S_CTL_OK(h, o, "--json", "deadletters", "show", seqs);
	s_assert_json(o->out, '{');
	assert_int_equal(s_json_num(o->out, NULL, "seq"), (long long)seq);
	assert_non_null(strstr(o->out, "\"case\":\"zaak-inzage\""));
	assert_non_null(strstr(o->out, "\"recipients\":[\"team-a\"]"));
	assert_null(strstr(o->out, "te laat"));
	assert_int_equal(S_CTL(h, o, "deadletters", "show", "999999"), 1);
	assert_non_null(strstr(o->err, "no message with sequence 999999"));
	assert_int_equal(S_CTL(h, o, "deadletters", "show", "zeven"), 1);

	/* redeliver: queued again (it expires again when team-a takes
	 * it, which makes the next dead letter) */
	S_CTL_OK(h, o, "deadletters", "redeliver", HX_TEAM_A, seqs);
	snprintf(line, sizeof line, "queued again: seq %s for team-a\n", seqs);
	assert_string_equal(o->out, line);
	/* team-a's session of a moment ago may still be open (the broker
	 * notices a client gone after three missed heartbeats), so the
	 * message may be offered, and expire, at once. */
	s_expire_again(h);
	s_wait_events(h, o, "zaak-inzage", " ev=expired", 2);
	s_wait_dead(h, o, 1);
	S_CTL_OK(h, o, "deadletters", "redeliver", HX_TEAM_A, seqs, "--json");
	s_assert_json(o->out, '{');
	assert_non_null(strstr(o->out, "\"redelivered\":true"));
	assert_int_equal(s_json_num(o->out, NULL, "seq"), (long long)seq);
	s_expire_again(h);
	s_wait_events(h, o, "zaak-inzage", " ev=expired", 3);
	s_wait_dead(h, o, 1);
	assert_int_equal(
	    S_CTL(h, o, "deadletters", "redeliver", "niemand", seqs), 1);
	assert_non_null(strstr(o->err, "unknown party 'niemand'"));
	assert_int_equal(
	    S_CTL(h, o, "deadletters", "redeliver", HX_TEAM_B, seqs), 1);
	assert_non_null(strstr(o->err, "has no dead letter"));

	/* purge, in both formats */
	S_CTL_OK(h, o, "deadletters", "purge", HX_TEAM_A, seqs);
	snprintf(line, sizeof line, "purged: seq %s for team-a\n", seqs);
	assert_string_equal(o->out, line);
	S_CTL_OK(h, o, "deadletters", "list");
	assert_non_null(strstr(o->out, "(no dead letters)"));
	assert_int_equal(
	    S_CTL(h, o, "deadletters", "purge", HX_TEAM_A, seqs), 1);
	seq2 = s_expire_one(h, a, "zaak-inzage");
	s_wait_dead(h, o, 1);
	snprintf(seqs, sizeof seqs, "%llu", (unsigned long long)seq2);
	S_CTL_OK(h, o, "--json", "deadletters", "purge", HX_TEAM_A, seqs);
	s_assert_json(o->out, '{');
	assert_non_null(strstr(o->out, "\"purged\":true,\"party\":\"team-a\""));
	S_CTL_OK(h, o, "--json", "deadletters", "list");
	assert_string_equal(o->out, "[]\n");

	/* audit verify */
	S_CTL_OK(h, o, "audit", "verify");
	assert_int_equal(strncmp(o->out, "audit chain verified: ", 22), 0);
	S_CTL_OK(h, o, "audit", "verify", "--json");
	s_assert_json(o->out, '{');
	assert_non_null(strstr(o->out, "\"verified\":true"));
	records = s_json_num(o->out, NULL, "records");
	assert_true(records > 10);

	/* audit export --case: that case's events only */
	S_CTL_OK(h, o, "audit", "export", "--case", "zaak-inzage");
	lines = s_count(o->out, "\n");
	assert_int_equal(s_count(o->out, " case=zaak-inzage"), lines);
	assert_null(strstr(o->out, "zaak-anders"));
	assert_int_equal(s_count(o->out, " ev=accepted"), 2);
	assert_int_equal(s_count(o->out, " ev=expired"), 4);
	/* Each names the agreement team-a got the message under. */
	assert_int_equal(s_count(o->out, " agr=schuldhulp code="), 4);
	assert_int_equal(s_count(o->out, " ev=redelivered"), 2);
	assert_int_equal(s_count(o->out, " ev=purged"), 2);
	/* The first message's record holds every field issue 4 asks of
	 * one (its id as 32 hex digits), in the order of docs/audit.md. */
	{
		static const char rest[] =
		    " from=gemeente to=team-a type=shv.melding.v1 "
		    "case=zaak-inzage purpose=schuldhulp agr=schuldhulp\n";
		char want[96];
		const char *at;

		snprintf(want, sizeof want,
		    " ev=accepted seq=%llu id=", (unsigned long long)seq);
		at = strstr(o->out, want);
		assert_non_null(at);
		at += strlen(want);
		for (int i = 0; i < 32; i++)
			assert_non_null(strchr("0123456789abcdef", at[i]));
		assert_int_equal(strncmp(at + 32, rest, strlen(rest)), 0);
	}
	S_CTL_OK(h, o, "--json", "audit", "export", "--case", "zaak-inzage");
	s_assert_json(o->out, '[');
	assert_int_equal(s_count(o->out, "\"case\":\"zaak-inzage\""), lines);
	assert_int_equal(s_count(o->out, "\"case\":"), lines);
	assert_int_equal(s_count(o->out, "\"event\":\"expired\""), 4);
	assert_null(strstr(o->out, "zaak-anders"));
	assert_null(strstr(o->out, "te laat"));
	S_CTL_OK(h, o, "audit", "export", "--case", "zaak-onbekend");
	assert_non_null(strstr(o->out, "(no audit records about this case)"));
	S_CTL_OK(h, o, "audit", "export", "--case", "zaak-onbekend", "--json");
	assert_string_equal(o->out, "[]\n");

	/* reload, both formats; a new generation each time */
	S_CTL_OK(h, o, "reload");
	assert_non_null(strstr(o->out, ": generation 1, 5 parties, 2 routes"));
	S_CTL_OK(h, o, "--json", "reload");
	s_assert_json(o->out, '{');
	assert_non_null(strstr(o->out, "\"reloaded\":true"));
	assert_int_equal(s_json_num(o->out, NULL, "generation"), 2);
	assert_int_equal(s_json_num(o->out, NULL, "routes"), 2);
	S_CTL_OK(h, o, "status", "--json");
	assert_int_equal(s_json_num(o->out, NULL, "generation"), 2);

	/* a command the daemon does not know */
	assert_int_equal(S_CTL(h, o, "opruimen"), 1);
	assert_non_null(strstr(o->err, "unknown command"));
	S_CTL_OK(h, o, "audit", "verify", "--json");
	assert_true(s_json_num(o->out, NULL, "records") > records);

	/* A caller without permission gets a clear error.  Root passes
	 * file modes, so as root the command runs as nobody instead. */
	assert_int_equal(chmod(sock, 0), 0);
	if (geteuid() != 0) {
		assert_int_equal(S_CTL(h, o, "status"), 1);
	} else {
		print_message("running as root, which file modes do not "
			      "stop: schakelctl runs as nobody (65534) for "
			      "the permission case\n");
		s_ctl_run(h->dir, sock, true, o,
		    (const char *const[]){"status", NULL});
		if (o->status == 126 || o->status == 127)
			fail_msg(
			    "cannot run schakelctl as nobody (%d)", o->status);
		assert_int_equal(o->status, 1);
	}
	assert_non_null(strstr(o->err, "Permission denied"));
	assert_non_null(strstr(o->err, "schakel user or a member"));
	assert_int_equal(chmod(sock, 0660), 0);
	S_CTL_OK(h, o, "status");

	/* No daemon: the socket is gone after a clean stop. */
	schakel_close(&a);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	assert_int_equal(S_CTL(h, o, "status"), 1);
	assert_non_null(strstr(o->err, "cannot reach schakeld"));
	assert_non_null(strstr(o->err, "No such file or directory"));
	/* A socket left behind by a killed daemon: said at once, not
	 * after the 30 s answer timeout. */
	assert_int_equal(hx_start(h), 0);
	hx_stop(h, SIGKILL);
	assert_int_equal(access(sock, F_OK), 0);
	t0 = hx_mono_ms();
	assert_int_equal(S_CTL(h, o, "status"), 1);
	assert_true(hx_mono_ms() - t0 < 5000);
	assert_non_null(strstr(o->err, "schakeld is not running"));
	assert_non_null(strstr(o->err, "Connection refused"));
	free(o);
}

/* ------------------------------------------------------------------ */
/* audit walks                                                          */

/* Records added to the log before the walk: a few months of a chain's
 * traffic, enough that walking them takes the broker far longer than the
 * test needs meanwhile (about a microsecond a record). */
#define S_GROWN 1200000

static int
s_head_of(void *arg, uint64_t seq, const uint8_t *rec, size_t len)
{
	(void)arg;
	(void)seq;
	(void)rec;
	(void)len;
	return 0;
}

/* Appends `n` records to the audit log in the stopped broker's store,
 * chained on from its head. */
static void
s_grow_audit(struct hx *h, long n, uint64_t age_ms)
{
	char dir[320], err[256], rec[AUDIT_RECORD_MAX];
	struct store_opts o = {.dir = dir, .map_size = 1ULL << 30};
	uint8_t head[STORE_HASH_LEN];
	struct audit_event ev;
	struct store *st;

	snprintf(dir, sizeof dir, "%s/data", h->dir);
	o.no_sync = true;
	st = store_open(&o, err, sizeof err);
	if (st == NULL)
		fail_msg("store_open: %s", err);
	assert_int_equal(
	    store_audit_each(st, UINT64_MAX, s_head_of, NULL, head), STORE_OK);
	for (long done = 0; done < n;) {
		struct store_txn *t = NULL;

		assert_int_equal(store_begin(st, &t), STORE_OK);
		for (int i = 0; i < 10000 && done < n; i++, done++) {
			uint64_t aseq;
			size_t len;

			audit_event_init(&ev,
			    done % 2 ? AUDIT_ACKNOWLEDGED : AUDIT_ACCEPTED,
			    hx_wall_ms() - age_ms);
			ev.seq = (uint64_t)done + 1;
			ev.has_id = true;
			memset(ev.id, (int)done, sizeof ev.id);
			snprintf(ev.from, sizeof ev.from, "%s", HX_SENDER);
			ev.n_to = 1;
			snprintf(ev.to[0], sizeof ev.to[0], "%s", HX_TEAM_A);
			snprintf(ev.type, sizeof ev.type, "%s", HX_TYPE_ONE);
			snprintf(ev.case_ref, sizeof ev.case_ref, "zaak-%06ld",
			    done / 8);
			snprintf(
			    ev.purpose, sizeof ev.purpose, "%s", HX_PURPOSE);
			len = audit_encode(&ev, head, rec);
			assert_true(len > 0);
			audit_hash(rec, len, head);
			assert_int_equal(
			    store_audit_append(
				t, (const uint8_t *)rec, len, head, &aseq),
			    STORE_OK);
		}
		assert_int_equal(store_commit(&t), STORE_OK);
	}
	store_close(&st);
}

/* While the broker walks a long audit log for `schakelctl audit verify`,
 * it answers other commands and routes messages; a second walk waits its
 * turn; the walk's answer counts every record. */
static void
t_audit_walk(void **state)
{
	struct hx *h = *state;
	struct s_ctl *o = calloc(1, sizeof *o);
	struct schakel_client *a = NULL, *b = NULL;
	struct schakel_message m =
	    hx_msg(HX_TYPE_ONE, "zaak-tijdens", "tijdens de controle");
	size_t handed = 0;
	struct s_got g = {0};
	char ep[400], reply[512] = "", exact_reply[4096] = "";
	void *ctx, *req;
	zmq_pollitem_t pi;
	int early, rc, busy_status;
	uint64_t t0, meanwhile_ms;
	bool busy_said;

	assert_non_null(o);
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	s_grow_audit(h, S_GROWN, 86400000);
	assert_int_equal(hx_start(h), 0);
	assert_int_equal(hx_connect(h, HX_SENDER, 5000, &a), SCHAKEL_OK);
	assert_int_equal(hx_connect(h, HX_TEAM_A, 5000, &b), SCHAKEL_OK);
	s_got_init(&g, 4);

	/* Asked as schakelctl asks, without waiting for the answer; with
	 * request ids (ZMQ_REQ_CORRELATE), which the answer must carry. */
	snprintf(ep, sizeof ep, "ipc://%s/run/control.sock", h->dir);
	ctx = zmq_ctx_new();
	assert_non_null(ctx);
	req = zmq_socket(ctx, ZMQ_REQ);
	assert_non_null(req);
	assert_int_equal(
	    zmq_setsockopt(req, ZMQ_REQ_CORRELATE, &(int){1}, sizeof(int)), 0);
	assert_int_equal(zmq_connect(req, ep), 0);
	assert_int_equal(zmq_send(req, "audit\0verify", 12, 0), 12);
	t0 = hx_mono_ms();

	S_CTL_OK(h, o, "status");
	s_send_ok(a, &m, NULL);
	assert_int_equal(
	    schakel_receive(b, 1, 10000, s_on_message, &g, &handed),
	    SCHAKEL_OK);
	assert_int_equal(handed, 1);
	busy_status = S_CTL(h, o, "audit", "export", "--case", "zaak-tijdens");
	busy_said = strstr(o->err,
			"another audit verify or export is "
			"running") != NULL;
	meanwhile_ms = hx_mono_ms() - t0;
	pi = (zmq_pollitem_t){.socket = req, .events = ZMQ_POLLIN};
	early = zmq_poll(&pi, 1, 0);
	rc = zmq_poll(&pi, 1, 300000);
	if (rc == 1)
		rc = zmq_recv(req, reply, sizeof reply - 1, 0);
	if (rc >= 0)
		reply[rc < (int)sizeof reply ? rc : 0] = '\0';
	print_message("status, a message routed and a refused second walk "
		      "in %llu ms; the walk of %d records answered after %llu "
		      "ms\n",
	    (unsigned long long)meanwhile_ms, S_GROWN,
	    (unsigned long long)(hx_mono_ms() - t0));
	/* A walk's words are its own: a request whose last word ends with
	 * the frame (no NUL) after a longer one is read as sent. */
	for (int i = 0; i < 2 && rc > 0; i++) {
		static const char longer[] = "audit\0export\0--case\0"
					     "zaak-tijdensZZZZ";
		static const char exact[] = "audit\0export\0--case\0"
					    "zaak-tijdens";
		const char *q = i == 0 ? longer : exact;
		size_t ql = i == 0 ? sizeof longer - 1 : sizeof exact - 1;

		if (zmq_send(req, q, ql, 0) != (int)ql ||
		    zmq_poll(&pi, 1, 300000) != 1)
			rc = -1;
		else
			rc = zmq_recv(
			    req, exact_reply, sizeof exact_reply - 1, 0);
		if (rc >= 0)
			exact_reply[rc < (int)sizeof exact_reply ? rc : 0] =
			    '\0';
	}
	zmq_close(req);
	zmq_ctx_term(ctx);
	assert_non_null(strstr(exact_reply, " case=zaak-tijdens "));

	/* Everything meanwhile was answered before the walk's answer. */
	assert_int_equal(early, 0);
	assert_int_equal(busy_status, 1);
	assert_true(busy_said);
	assert_true(rc > 0);
	assert_int_equal(strncmp(reply, "ok\naudit chain verified: ", 25), 0);
	assert_true(strtoll(reply + 25, NULL, 10) > S_GROWN);
	/* The message routed during the walk is in the log. */
	S_CTL_OK(h, o, "audit", "export", "--case", "zaak-tijdens");
	assert_int_equal(s_count(o->out, " ev=accepted "), 1);

	/* Exports by period: the grown records are from yesterday. */
	{
		time_t now = (time_t)(hx_wall_ms() / 1000);
		struct tm tm;
		char today[16];

		gmtime_r(&now, &tm);
		strftime(today, sizeof today, "%Y-%m-%d", &tm);
		S_CTL_OK(h, o, "audit", "export", "--party", HX_TEAM_A,
		    "--since", today);
		assert_int_equal(s_count(o->out, " case=zaak-tijdens "), 2);
		assert_null(strstr(o->out, "zaak-0"));
		S_CTL_OK(h, o, "audit", "export", "--case", "zaak-000001",
		    "--since", "1970-01-01", "--until", today);
		assert_int_equal(s_count(o->out, " case=zaak-000001 "), 8);
		S_CTL_OK(h, o, "audit", "export", "--case", "zaak-000001",
		    "--until", "1970-01-02");
		assert_string_equal(o->out,
		    "(no audit records about this "
		    "case in that period)\n");
	}
	assert_int_equal(
	    S_CTL(h, o, "audit", "export", "--case", "x", "--party", HX_TEAM_A),
	    1);
	assert_non_null(strstr(o->err,
	    "audit export takes --case REF or "
	    "--party PARTY"));
	assert_int_equal(S_CTL(h, o, "audit", "export", "--case", "x",
			     "--since", "2026-02-30"),
	    1);
	assert_non_null(strstr(o->err, "--since '2026-02-30': "));
	assert_int_equal(S_CTL(h, o, "audit", "export", "--case", "x",
			     "--since", "2026-12-02", "--until", "2026-12-01"),
	    1);
	assert_non_null(strstr(o->err, "the first not after the second"));
	/* A party in every record: more than the answer may hold. */
	assert_int_equal(
	    S_CTL(h, o, "audit", "export", "--party", HX_TEAM_A), 1);
	assert_non_null(strstr(o->err,
	    "the export is larger than 32 MiB; "
	    "ask for a shorter period"));
	schakel_close(&a);
	schakel_close(&b);
	s_got_free(&g);
	free(o);
}

/* A broker told to stop during a walk ends it, says so to the one who
 * asked, and stops cleanly without finishing it. */
static void
t_audit_walk_stop(void **state)
{
	struct hx *h = *state;
	char ep[400], reply[512] = "";
	void *ctx, *req;
	zmq_pollitem_t pi;
	int rc, stopped;
	uint64_t t0, stop_ms;

	assert_int_equal(hx_stop(h, SIGTERM), 0);
	s_grow_audit(h, S_GROWN, 86400000);
	assert_int_equal(hx_start(h), 0);
	snprintf(ep, sizeof ep, "ipc://%s/run/control.sock", h->dir);
	ctx = zmq_ctx_new();
	assert_non_null(ctx);
	req = zmq_socket(ctx, ZMQ_REQ);
	assert_non_null(req);
	assert_int_equal(zmq_connect(req, ep), 0);
	assert_int_equal(zmq_send(req, "audit\0verify", 12, 0), 12);
	/* Time for the broker to take it and start walking. */
	hx_sleep_ms(100);
	t0 = hx_mono_ms();
	stopped = hx_stop(h, SIGTERM);
	stop_ms = hx_mono_ms() - t0;
	pi = (zmq_pollitem_t){.socket = req, .events = ZMQ_POLLIN};
	rc = zmq_poll(&pi, 1, 5000);
	if (rc == 1)
		rc = zmq_recv(req, reply, sizeof reply - 1, 0);
	if (rc >= 0)
		reply[rc < (int)sizeof reply ? rc : 0] = '\0';
	print_message("stopped in %llu ms during a walk of %d records\n",
	    (unsigned long long)stop_ms, S_GROWN);
	zmq_close(req);
	zmq_ctx_term(ctx);
	assert_int_equal(stopped, 0);
	/* The walk of t_audit_walk took over a second here. */
	assert_true(stop_ms < 500);
	assert_true(rc > 0);
	assert_non_null(strstr(reply,
	    "error: the broker is stopping; the "
	    "walk of the audit log was not finished"));
}

/* ------------------------------------------------------------------ */
/* the audit archive                                                    */

#define S_OLD 250000
#define S_DAY_MS 86400000ULL

/* Counts the lines of a file; -1 when it cannot be read. */
static long
s_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	long n = 0;
	int c;

	if (f == NULL)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Records older than after_days leave the store for files, a round of
 * at most 100,000 at a time; verify walks files and store as one chain,
 * export finds archived records, and a changed or missing file is
 * found. */
static void
t_audit_archive(void **state)
{
	struct hx *h = *state;
	struct s_ctl *o = calloc(1, sizeof *o);
	char *text = malloc(TU_HTTP_MAX);
	char path[512], path2[512], mid[512];
	struct stat st;
	long long archived = 0;
	int was;
	uint64_t until;
	FILE *f;

	assert_non_null(o);
	/* A store whose oldest records are 40 days old. */
	assert_int_equal(hx_stop(h, SIGTERM), 0);
	snprintf(path, sizeof path, "%s/data", h->dir);
	assert_int_equal(tu_rmrf(path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	s_grow_audit(h, S_OLD, 40 * S_DAY_MS);
	assert_int_equal(hx_start(h), 0);

	until = hx_mono_ms() + 60000;
	while (archived < S_OLD && hx_mono_ms() < until) {
		hx_sleep_ms(200);
		/* Refused while a round runs. */
		if (S_CTL(h, o, "--json", "audit", "verify") == 0)
			archived = s_json_num(o->out, NULL, "archived");
		else
			assert_non_null(strstr(o->err,
			    "the broker is "
			    "archiving old audit "
			    "records"));
	}
	/* Every old record, in three rounds; the broker's own (recent)
	 * stay in the store; one chain. */
	assert_int_equal(archived, S_OLD);
	assert_int_equal(s_json_num(o->out, NULL, "archive_files"), 3);
	assert_int_equal(s_json_num(o->out, NULL, "from"), 1);
	assert_int_equal(s_json_num(o->out, NULL, "records"), S_OLD);
	snprintf(path, sizeof path, "%s/archive/audit-00000000000000000001.log",
	    h->dir);
	assert_int_equal(s_lines(path), 100000);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	snprintf(path2, sizeof path2,
	    "%s/archive/audit-00000000000000200001.log", h->dir);
	assert_int_equal(s_lines(path2), S_OLD - 200000);
	/* The chain goes on in the store: a session's records, recent. */
	{
		struct schakel_client *a = NULL;

		assert_int_equal(
		    hx_connect(h, HX_SENDER, 5000, &a), SCHAKEL_OK);
		schakel_close(&a);
	}
	until = hx_mono_ms() + 10000;
	do {
		hx_sleep_ms(50);
		S_CTL_OK(h, o, "audit", "verify");
	} while (
	    strstr(o->out, " 2 in the store") == NULL && hx_mono_ms() < until);
	assert_non_null(strstr(o->out,
	    "audit chain verified: 250002 records from record 1 (250000 in "
	    "3 archive files, 2 in the store)"));
	/* For an alert when archiving stalls: the oldest record left in
	 * the store is the session's, seconds old (it was 40 days). */
	assert_non_null(text);
	{
		struct s_expect e[] = {
		    {"schakel_audit_archived_records_total", S_OLD}};
		s_scrape_until(h, text, e, 1);
	}
	{
		double age =
		    tu_metric(text, "schakel_audit_oldest_record_age_seconds");
		assert_true(age >= 0 && age < 600);
	}

	S_CTL_OK(h, o, "status");
	assert_non_null(strstr(o->out,
	    "audit log    records older than 30 days "
	    "archived to "));
	assert_non_null(
	    strstr(o->out, "/archive; up to record 250000 so far\n"));
	S_CTL_OK(h, o, "--json", "status");
	s_assert_json(o->out, '{');
	assert_int_equal(
	    s_json_num(o->out, NULL, "audit_archived_up_to"), S_OLD);

	/* A case of 40 days ago, from the archive. */
	S_CTL_OK(h, o, "audit", "export", "--case", "zaak-000001");
	assert_int_equal(s_count(o->out, " case=zaak-000001 "), 8);
	assert_int_equal(s_count(o->out, "\n"), 8);

	/* A record changed in the archive breaks the chain there. */
	f = fopen(path, "r+");
	assert_non_null(f);
	assert_int_equal(fseek(f, 100, SEEK_SET), 0);
	was = fgetc(f);
	assert_int_equal(fseek(f, 100, SEEK_SET), 0);
	assert_int_not_equal(fputc(was == 'X' ? 'Y' : 'X', f), EOF);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(S_CTL(h, o, "audit", "verify"), 1);
	{
		const char *at = strstr(o->err,
		    "the audit chain is broken at "
		    "record ");
		assert_non_null(at);
		/* The record changed (byte 100, of the first) or the one
		 * after it, whose prev no longer matches. */
		assert_true(strtoll(at + 36, NULL, 10) <= 2);
		assert_non_null(strstr(at, ", in the archive"));
	}
	f = fopen(path, "r+");
	assert_non_null(f);
	assert_int_equal(fseek(f, 100, SEEK_SET), 0);
	assert_int_not_equal(fputc(was, f), EOF);
	assert_int_equal(fclose(f), 0);
	S_CTL_OK(h, o, "audit", "verify");

	/* A file in the middle missing: a gap. */
	snprintf(mid, sizeof mid, "%s/archive/audit-00000000000000100001.log",
	    h->dir);
	snprintf(path2, sizeof path2, "%s/archive/elsewhere", h->dir);
	assert_int_equal(rename(mid, path2), 0);
	assert_int_equal(S_CTL(h, o, "audit", "verify"), 1);
	assert_non_null(strstr(o->err,
	    "holds records from 200001 on, but "
	    "the file before it ends at 100000"));
	assert_int_equal(rename(path2, mid), 0);
	/* The oldest file removed (its retention ended): checked from the
	 * next one. */
	assert_int_equal(unlink(path), 0);
	S_CTL_OK(h, o, "--json", "audit", "verify");
	assert_int_equal(s_json_num(o->out, NULL, "from"), 100001);
	assert_int_equal(s_json_num(o->out, NULL, "archived"), S_OLD - 100000);
	/* The newest missing: the store's records do not go on from it. */
	snprintf(path2, sizeof path2,
	    "%s/archive/audit-00000000000000200001.log", h->dir);
	assert_int_equal(unlink(path2), 0);
	assert_int_equal(S_CTL(h, o, "audit", "verify"), 1);
	assert_non_null(strstr(o->err,
	    "ends at record 200000, but the "
	    "store's records go on after 250000: "
	    "archive files are missing"));
	/* None left: verify checks from the anchor, an export refuses to
	 * be incomplete. */
	assert_int_equal(unlink(mid), 0);
	S_CTL_OK(h, o, "--json", "audit", "verify");
	assert_int_equal(s_json_num(o->out, NULL, "from"), S_OLD + 1);
	assert_int_equal(s_json_num(o->out, NULL, "archived"), 0);
	assert_int_equal(
	    S_CTL(h, o, "audit", "export", "--case", "zaak-000001"), 1);
	assert_non_null(strstr(o->err,
	    "records 1 to 250000 of the audit log "
	    "were archived, but no archive file is "
	    "in "));

	free(text);
	free(o);
}

/* The standard ecosystem with an audit archive (records older than 30
 * days, to DIR/archive) and metrics on a free port. */
static int
s_setup_archive(void **state)
{
	static char *yaml;
	struct hx *h;

	if (yaml == NULL) {
		char *with = s_replace(hx_yaml(), "  data_dir: data\n",
		    "  data_dir: data\n  audit_archive:\n    dir: archive\n"
		    "    after_days: 30\n");
		yaml = s_replace(with, "metrics: off", "metrics: 127.0.0.1:0");
		free(with);
	}
	h = hx_new(s_schakeld, yaml);
	*state = h;
	return h != NULL ? 0 : -1;
}

static int
s_setup(void **state)
{
	struct hx *h = hx_new(s_schakeld, NULL);

	*state = h;
	return h != NULL ? 0 : -1;
}

static int
s_teardown(void **state)
{
	struct hx *h = *state;

	return hx_destroy(&h) == 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_notify),
	    cmocka_unit_test_setup_teardown(
		t_reload_under_load, s_setup, s_teardown),
	    cmocka_unit_test(t_metrics),
	    cmocka_unit_test_setup_teardown(t_schakelctl, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_audit_walk, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_audit_walk_stop, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(
		t_audit_archive, s_setup_archive, s_teardown),
	};

	if (argc != 3) {
		fprintf(stderr,
		    "usage: %s PATH-TO-SCHAKELD PATH-TO-SCHAKELCTL\n", argv[0]);
		return 2;
	}
	s_schakeld = argv[1];
	s_schakelctl = argv[2];
	/* CMOCKA_TEST_FILTER=t_audit_walk runs one. */
	if (getenv("CMOCKA_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
