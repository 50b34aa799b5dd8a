/*
 * test_config: the configuration checker, driven by files.  Each broken
 * file under tests/config/broken/ names the exact diagnostics it must
 * produce in "# expect: " lines at its top; each file under
 * tests/config/valid/ must load without any.  Tests work in a private
 * copy of the folder (they may run in parallel) and never write into the
 * source tree.  No secret key is ever committed: they are generated here.
 *
 * usage: test_config SRCDIR broken FILE...
 *        test_config SRCDIR valid FILE...
 *        test_config SRCDIR base
 *        test_config SRCDIR utrecht EXAMPLE_DIR SCHAKEL_EXE
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "diag.h"
#include "keys.h"
#include "units.h"

/* The day every test runs on, so that results never depend on the clock. */
#define S_TODAY "2026-06-01"
#define S_MAX_LINES 256

static const char *s_srcdir;
static const char *const *s_files;
static int s_nfiles;
static const char *s_example;
static const char *s_schakel;

struct s_env {
	char dir[PATH_MAX]; /* the private temp folder */
	int oldcwd;         /* an fd of the folder we started in */
};

/* A list of lines, owned. */
struct s_lines {
	char *v[S_MAX_LINES];
	int n;
};

static void
s_lines_free(struct s_lines *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

static void
s_lines_add(struct s_lines *l, const char *s, size_t len)
{
	assert_true(l->n < S_MAX_LINES);
	l->v[l->n] = strndup(s, len);
	assert_non_null(l->v[l->n]);
	l->n++;
}

static int32_t
s_today(void)
{
	int32_t day;
	const char *why;

	assert_int_equal(units_parse_date(S_TODAY, &day, &why), 0);
	return day;
}

static void
s_path(char *out, size_t len, const char *a, const char *b)
{
	int n = snprintf(out, len, "%s/%s", a, b);

	assert_true(n > 0 && (size_t)n < len);
}

/* ------------------------------------------------------------------ */
/* Copying and removing folders                                       */

static const char *s_copy_from, *s_copy_to;

/* Top-level folders of an example that hold keys or run-time data and
 * must never be copied. */
static bool
s_skipped(const char *rel)
{
	static const char *const skip[] = {"keys", "data", "run"};

	for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++) {
		size_t n = strlen(skip[i]);
		if (strncmp(rel, skip[i], n) == 0 &&
		    (rel[n] == '\0' || rel[n] == '/'))
			return true;
	}
	return false;
}

static int
s_copy_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	const char *rel = path + strlen(s_copy_from);
	char dst[PATH_MAX], buf[8192];
	int in, out;
	ssize_t n;

	(void)ftw;
	while (*rel == '/')
		rel++;
	if (*rel == '\0')
		return 0;
	if (s_skipped(rel))
		return 0;
	s_path(dst, sizeof dst, s_copy_to, rel);
	if (flag == FTW_D)
		return mkdir(dst, 0755) == 0 || errno == EEXIST ? 0 : -1;
	if (flag != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	/* Never copy something that looks like a secret key. */
	if (strlen(rel) > 4 && strcmp(rel + strlen(rel) - 4, ".key") == 0)
		return 0;
	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	out = open(
	    dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st->st_mode & 0755);
	if (out < 0) {
		close(in);
		return -1;
	}
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	close(in);
	close(out);
	return n < 0 ? -1 : 0;
}

/* Copies folder `from` into the existing folder `to`, leaving out keys/,
 * data/, run/ and *.key files. */
static void
s_copy_tree(const char *from, const char *to)
{
	s_copy_from = from;
	s_copy_to = to;
	if (nftw(from, s_copy_one, 16, 0) != 0)
		fail_msg("cannot copy %s to %s: %s", from, to, strerror(errno));
}

static int
s_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
s_remove_tree(const char *dir)
{
	if (nftw(dir, s_remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 &&
	    errno != ENOENT)
		fail_msg("cannot remove %s: %s", dir, strerror(errno));
}

/* Generates DIR/keys/NAME.key and .pub, creating DIR/keys (0700). */
static void
s_keygen(const char *dir, const char *name)
{
	char keys[PATH_MAX];
	struct keys_public pub;
	struct keys_error err;

	s_path(keys, sizeof keys, dir, "keys");
	if (mkdir(keys, 0700) != 0 && errno != EEXIST)
		fail_msg("mkdir %s: %s", keys, strerror(errno));
	if (keys_generate(keys, name, KEYS_BROKER, &pub, &err) != 0)
		fail_msg("keys_generate %s: %s", name, err.msg);
}

/* Makes a private temp folder and moves into it. */
static int
s_setup(void **state)
{
	struct s_env *e = calloc(1, sizeof(*e));
	const char *tmp = getenv("TMPDIR");

	assert_non_null(e);
	snprintf(e->dir, sizeof e->dir, "%s/schakel-test-config-XXXXXX",
	    tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	assert_non_null(mkdtemp(e->dir));
	e->oldcwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(e->oldcwd >= 0);
	*state = e;
	return 0;
}

/* The folder tests/config with keys/broker.key, and keys/loose.key with
 * a mode that every reader must refuse. */
static int
s_setup_config(void **state)
{
	struct s_env *e;
	char loose[PATH_MAX];

	s_setup(state);
	e = *state;
	s_copy_tree(s_srcdir, e->dir);
	s_keygen(e->dir, "broker");
	s_keygen(e->dir, "loose");
	s_path(loose, sizeof loose, e->dir, "keys/loose.key");
	assert_int_equal(chmod(loose, 0644), 0);
	assert_int_equal(chdir(e->dir), 0);
	return 0;
}

static int
s_teardown(void **state)
{
	struct s_env *e = *state;

	assert_int_equal(fchdir(e->oldcwd), 0);
	close(e->oldcwd);
	s_remove_tree(e->dir);
	free(e);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Loading and comparing                                              */

/* Loads `path` and renders every diagnostic as diags_print does. */
static struct conf *
s_load(const char *path, struct s_lines *got)
{
	struct diags *d = diags_new();
	struct conf *c;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	assert_non_null(d);
	c = conf_load(path, s_today(), d);
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	diags_print(d, f);
	assert_int_equal(fclose(f), 0);
	for (char *p = buf; *p != '\0';) {
		char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		s_lines_add(got, p, n);
		p += n + (nl != NULL);
	}
	free(buf);
	diags_destroy(&d);
	return c;
}

/* Reads the "# expect: " lines of a file. */
static void
s_expected(const char *path, struct s_lines *want)
{
	static const char tag[] = "# expect: ";
	char line[2048];
	FILE *f = fopen(path, "r");

	if (f == NULL)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof line, f) != NULL) {
		size_t n = strlen(line);
		if (strncmp(line, tag, sizeof tag - 1) != 0)
			continue;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			n--;
		s_lines_add(want, line + sizeof tag - 1, n - (sizeof tag - 1));
	}
	fclose(f);
}

/* Fails with both lists when they differ in any line, count or order. */
static void
s_compare(
    const char *what, const struct s_lines *want, const struct s_lines *got)
{
	bool same = want->n == got->n;

	for (int i = 0; same && i < want->n; i++)
		same = strcmp(want->v[i], got->v[i]) == 0;
	if (same)
		return;
	print_error("%s: diagnostics differ\n", what);
	for (int i = 0; i < want->n || i < got->n; i++) {
		const char *w = i < want->n ? want->v[i] : "(nothing)";
		const char *g = i < got->n ? got->v[i] : "(nothing)";
		print_error("%s line %d\n  expected: %s\n  got:      %s\n",
		    i < want->n && i < got->n && strcmp(w, g) == 0 ? "  "
								   : "!!",
		    i + 1, w, g);
	}
	fail();
}

static void
test_broken(void **state)
{
	(void)state;
	for (int i = 0; i < s_nfiles; i++) {
		struct s_lines want = {0}, got = {0};
		bool errors = false;
		struct conf *c;

		s_expected(s_files[i], &want);
		if (want.n == 0)
			fail_msg("%s has no '# expect: ' line", s_files[i]);
		for (int j = 0; j < want.n; j++)
			errors =
			    errors || strstr(want.v[j], ": error: ") != NULL;
		c = s_load(s_files[i], &got);
		s_compare(s_files[i], &want, &got);
		if (errors && c != NULL)
			fail_msg("%s: loaded despite errors", s_files[i]);
		if (!errors && c == NULL)
			fail_msg("%s: has only warnings but did not load",
			    s_files[i]);
		conf_destroy(&c);
		assert_null(c);
		s_lines_free(&want);
		s_lines_free(&got);
	}
}

static void
s_no_diags(const char *what, const struct s_lines *got)
{
	struct s_lines none = {0};

	s_compare(what, &none, got);
}

/* Files on the edge of a rule, which must load without a word: they keep
 * a check from refusing more than it should. */
static void
test_valid(void **state)
{
	(void)state;
	for (int i = 0; i < s_nfiles; i++) {
		struct s_lines got = {0};
		struct conf *c = s_load(s_files[i], &got);

		s_no_diags(s_files[i], &got);
		if (c == NULL)
			fail_msg("%s: did not load", s_files[i]);
		conf_destroy(&c);
		s_lines_free(&got);
	}
}

/* ------------------------------------------------------------------ */
/* The base configuration, and its look-ups                            */

static size_t
s_flows(const struct conf *c, const char *from, const char *to,
    const char *type, const struct conf_flow **out, size_t max)
{
	const struct conf_party *s = conf_party_by_id(c, from);
	const struct conf_party *r = conf_party_by_id(c, to);
	const struct conf_type *t = conf_type_by_id(c, type);

	assert_non_null(s);
	assert_non_null(r);
	assert_non_null(t);
	return conf_flows_for(c, s, r, t, out, max);
}

static void
test_base_valid(void **state)
{
	struct s_lines got = {0};
	const struct conf_party *p;
	const struct conf_type *t;
	const struct conf_flow *fl[4];
	uint8_t key[KEYS_BYTES];
	const char *why;
	struct conf *c;

	(void)state;
	c = s_load("base.yaml", &got);
	s_no_diags("base.yaml", &got);
	assert_non_null(c);
	assert_int_equal(c->nparties, 5);
	assert_int_equal(c->nroles, 4);
	assert_int_equal(c->ntypes, 4);
	assert_int_equal(c->nagreements, 3);
	assert_int_equal(c->nroutes, 4);

	/* Party by id. */
	p = conf_party_by_id(c, "gemeente-a");
	assert_non_null(p);
	assert_string_equal(p->id, "gemeente-a");
	assert_string_equal(p->name, "Gemeente A");
	assert_ptr_equal(p->role, conf_role_by_id(c, "municipality"));
	assert_int_equal(p->nregions, 1);
	assert_int_equal(p->regions[0], 344);
	assert_true(conf_party_in_region(p, 344));
	assert_false(conf_party_in_region(p, 307));
	assert_null(conf_party_by_id(c, "gemeente-q"));
	assert_null(conf_party_by_id(c, ""));

	/* Party by transport key, and no party by another of its keys. */
	assert_int_equal(keys_decode("x25519:v8zNviDDNXl8QvBQC16SEwxt8lVeNZ8-"
				     "ZQHWYjPZH3I",
			     KEYS_X25519, key, &why),
	    0);
	assert_ptr_equal(conf_party_by_transport_key(c, key), p);
	assert_memory_equal(p->transport_key, key, KEYS_BYTES);
	assert_int_equal(keys_decode("x25519:mq8fXgNOGNBnn7Ly6lBsPcJoGHMIYFJS"
				     "MKLHk0ECOjk",
			     KEYS_X25519, key, &why),
	    0);
	assert_memory_equal(p->box_key, key, KEYS_BYTES);
	assert_null(conf_party_by_transport_key(c, key));

	/* Type by id, with its defaults and stages. */
	t = conf_type_by_id(c, "shv.vroegsignaal.v1");
	assert_non_null(t);
	assert_int_equal(t->max_size, 16 * 1024);
	assert_int_equal(t->ttl, 14 * 86400);
	assert_ptr_equal(t->opens, conf_stage_by_id(c, "early_warning"));
	t = conf_type_by_id(c, "shv.melding.v1");
	assert_non_null(t);
	assert_int_equal(t->max_size, c->broker.limits.max_message_size);
	assert_ptr_equal(t->opens, conf_stage_by_id(c, "registration"));
	assert_int_equal(t->ncloses, 1);
	assert_string_equal(t->closes[0]->id, "early_warning");
	assert_null(conf_type_by_id(c, "shv.melding.v2"));
	assert_non_null(conf_agreement_by_id(c, "schuldhulp-a"));
	assert_null(conf_agreement_by_id(c, "gemeente-a"));

	/* Deadlines and holidays. */
	assert_int_equal(c->ndeadlines, 1);
	assert_int_equal(c->deadlines[0].within.seconds, 28 * 86400);
	assert_int_equal(c->deadlines[0].urgent_within.workdays, 3);
	assert_int_equal(c->nholidays, 2);
	assert_string_equal(c->holidays[1].name, "Tweede Kerstdag");

	/* Flows by (sender, recipient, type): party flows, one way only. */
	assert_int_equal(
	    s_flows(c, "gemeente-a", "kredietbank-a", "shv.melding.v1", fl, 4),
	    1);
	assert_string_equal(fl[0]->agreement->id, "schuldhulp-a");
	assert_int_equal(
	    s_flows(c, "kredietbank-a", "gemeente-a", "shv.melding.v1", fl, 4),
	    0);
	assert_int_equal(s_flows(c, "kredietbank-a", "gemeente-a",
			     "shv.hulpvraag.vastgesteld.v1", fl, 4),
	    1);
	assert_int_equal(s_flows(c, "gemeente-a", "kredietbank-a",
			     "shv.vroegsignaal.v1", fl, 4),
	    0);
	/* Role flows bind only the agreement's parties: gemeente-z is a
	 * municipality too, but no agreement binds it. */
	assert_int_equal(
	    s_flows(c, "energie-a", "gemeente-a", "shv.vroegsignaal.v1", fl, 4),
	    1);
	assert_string_equal(fl[0]->agreement->id, "vroegsignalering");
	assert_int_equal(
	    s_flows(c, "energie-a", "gemeente-z", "shv.vroegsignaal.v1", fl, 4),
	    0);
	assert_int_equal(s_flows(c, "huisarts-a", "gemeente-a",
			     "shv.verwijzing.huisarts.v1", fl, 4),
	    1);
	assert_true(fl[0]->agreement->consent_required);
	assert_int_equal(s_flows(c, "huisarts-a", "gemeente-z",
			     "shv.verwijzing.huisarts.v1", fl, 4),
	    0);

	conf_destroy(&c);
	assert_null(c);
}

/* ------------------------------------------------------------------ */
/* The Utrecht example                                                */

/* Runs DIR/dev-keys with SCHAKEL set; fails unless it exits 0. */
static void
s_dev_keys(const char *dir)
{
	char script[PATH_MAX];
	int status;
	pid_t pid;

	s_path(script, sizeof script, dir, "dev-keys");
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		setenv("SCHAKEL", s_schakel, 1);
		execl(script, script, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s failed (status %d)", script, status);
}

static void
test_example_utrecht(void **state)
{
	static const char *const roles[] = {"municipality", "debt_counselling",
	    "court", "gp", "creditor", "administrator"};
	struct s_env *e = *state;
	struct s_lines got = {0};
	char dir[PATH_MAX], keys[PATH_MAX];
	struct conf *c, *bad;
	size_t urgent = 0;

	s_path(dir, sizeof dir, e->dir, "utrecht");
	assert_int_equal(mkdir(dir, 0755), 0);
	s_copy_tree(s_example, dir);
	s_dev_keys(dir);
	assert_int_equal(chdir(e->dir), 0);

	c = s_load("utrecht/schakel.yaml", &got);
	s_no_diags("utrecht/schakel.yaml", &got);
	assert_non_null(c);
	assert_true(c->nparties >= 8);
	assert_true(c->ntypes >= 20);
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
		if (conf_role_by_id(c, roles[i]) == NULL)
			fail_msg("the example has no role '%s'", roles[i]);
	for (size_t i = 0; i < c->ndeadlines; i++)
		if (c->deadlines[i].urgent_within.workdays == 3 &&
		    c->deadlines[i].within.seconds == 28 * 86400)
			urgent++;
	assert_true(urgent >= 1);

	/* Without the keys folder: one error per missing key file. */
	s_path(keys, sizeof keys, dir, "keys");
	s_remove_tree(keys);
	bad = s_load("utrecht/schakel.yaml", &got);
	assert_null(bad);
	assert_int_equal(got.n, 13);
	assert_int_equal(got.n, c->nparties + 1);
	for (size_t i = 0; i <= c->nparties; i++) {
		char name[128];
		int found = 0;
		if (i < c->nparties)
			snprintf(name, sizeof name, "'utrecht/keys/%s.pub'",
			    c->parties[i].id);
		else
			snprintf(
			    name, sizeof name, "'utrecht/keys/broker.key'");
		for (int j = 0; j < got.n; j++)
			if (strstr(got.v[j], name) != NULL &&
			    strstr(got.v[j], ": error: ") != NULL)
				found++;
		if (found != 1)
			fail_msg("%d errors name %s, expected 1", found, name);
	}
	s_lines_free(&got);
	conf_destroy(&c);
}

/* Whether one of the diagnostics has `text`. */
static bool
s_has(const struct s_lines *got, const char *text)
{
	for (int i = 0; i < got->n; i++)
		if (strstr(got->v[i], text) != NULL)
			return true;
	return false;
}

/* A FIFO named where a file is read (the configuration itself, an
 * include, a party's public key file) is refused with an error, not
 * waited on: a reload of such a configuration would hang the broker
 * until someone wrote into the pipe. */
static void
test_not_regular(void **state)
{
	struct s_lines got = {0};
	struct conf *c;
	FILE *f;

	(void)state;
	assert_int_equal(mkfifo("broken/pipe.yaml", 0600), 0);
	c = s_load("broken/pipe.yaml", &got);
	assert_null(c);
	if (!s_has(&got, "broken/pipe.yaml: error: not a regular file"))
		fail_msg("no error for the FIFO as configuration");
	s_lines_free(&got);

	assert_int_equal(mkfifo("broken/pub/pipe.pub", 0600), 0);
	f = fopen("broken/pipe-key.yaml", "w");
	assert_non_null(f);
	fputs("include: ../base.yaml\n"
	      "parties:\n"
	      "  - id: gemeente-b\n"
	      "    name: Gemeente B\n"
	      "    role: municipality\n"
	      "    keys: pub/pipe.pub\n",
	    f);
	assert_int_equal(fclose(f), 0);
	c = s_load("broken/pipe-key.yaml", &got);
	assert_null(c);
	if (!s_has(&got,
		"public key file 'broken/pub/pipe.pub' is not a "
		"regular file"))
		fail_msg("no error for the FIFO as public key file");
	s_lines_free(&got);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest broken[] = {
	    cmocka_unit_test_setup_teardown(
		test_broken, s_setup_config, s_teardown),
	};
	const struct CMUnitTest valid[] = {
	    cmocka_unit_test_setup_teardown(
		test_valid, s_setup_config, s_teardown),
	};
	const struct CMUnitTest base[] = {
	    cmocka_unit_test_setup_teardown(
		test_base_valid, s_setup_config, s_teardown),
	    cmocka_unit_test_setup_teardown(
		test_not_regular, s_setup_config, s_teardown),
	};
	const struct CMUnitTest utrecht[] = {
	    cmocka_unit_test_setup_teardown(
		test_example_utrecht, s_setup, s_teardown),
	};

	if (argc >= 4 && strcmp(argv[2], "broken") == 0) {
		s_srcdir = argv[1];
		s_files = (const char *const *)argv + 3;
		s_nfiles = argc - 3;
		return cmocka_run_group_tests(broken, NULL, NULL);
	}
	if (argc >= 4 && strcmp(argv[2], "valid") == 0) {
		s_srcdir = argv[1];
		s_files = (const char *const *)argv + 3;
		s_nfiles = argc - 3;
		return cmocka_run_group_tests(valid, NULL, NULL);
	}
	if (argc == 3 && strcmp(argv[2], "base") == 0) {
		s_srcdir = argv[1];
		return cmocka_run_group_tests(base, NULL, NULL);
	}
	if (argc == 5 && strcmp(argv[2], "utrecht") == 0) {
		s_srcdir = argv[1];
		s_example = argv[3];
		s_schakel = argv[4];
		return cmocka_run_group_tests(utrecht, NULL, NULL);
	}
	fprintf(stderr,
	    "usage: %s SRCDIR broken FILE...\n"
	    "       %s SRCDIR valid FILE...\n"
	    "       %s SRCDIR base\n"
	    "       %s SRCDIR utrecht EXAMPLE_DIR SCHAKEL_EXE\n",
	    argv[0], argv[0], argv[0], argv[0]);
	return 2;
}
