/*
 * fuzz_conf: libFuzzer target for the configuration loader.  Each input
 * is written as a YAML file into a private folder that also holds what
 * the committed configurations include or name (tests/config/base.yaml,
 * the broken cases' helper files, the Utrecht example and key files),
 * and is loaded with conf_load.  The loader must refuse a file exactly
 * when it reports an error, and what it accepts must keep the promises
 * of conf.h.  Nothing is ever written into the source tree.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "conf.h"
#include "diag.h"
#include "keys.h"
#include "units.h"

/* The source tree, set by tests/fuzz/meson.build. */
#ifndef FUZZ_CONF_SRCDIR
#error "FUZZ_CONF_SRCDIR must name the source tree"
#endif

/* The day every input is loaded on, as in tests/config/test_config.c. */
#define S_TODAY "2026-06-01"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The private folder is laid out so that the committed configurations
 * load from conf/ as they do in tests/config/broken and valid:
 *   base.yaml            tests/config/base.yaml ("../base.yaml")
 *   keys/broker.key      0600 ("keys/broker.key" from base.yaml, and
 *                        "../keys/broker.key" from valid/)
 *   keys/loose.key       0644, which the loader must refuse
 *   conf/input.yaml      the input
 *   conf/cycle, pub      tests/config/broken's helper folders
 *   conf/roles.yaml, ... agreements/
 *                        the Utrecht example's files, so that its
 *                        schakel.yaml loads as the input
 *   conf/keys/           the example's keys: broker.key and one
 *                        <party>.pub per party, derived from its id */
static char s_dir[PATH_MAX];
static char s_input[PATH_MAX];
static int32_t s_today;
static FILE *s_null;

static void
s_fatal(const char *what, const char *path)
{
	fprintf(stderr, "fuzz_conf: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

static void
s_join(char *out, size_t len, const char *a, const char *b)
{
	int n = snprintf(out, len, "%s/%s", a, b);

	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		s_fatal("path too long:", a);
	}
}

static void
s_mkdir(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		s_fatal("cannot create", path);
}

/* Writes `len` bytes to `path` (replacing it) with mode `mode`. */
static void
s_write(const char *path, const void *data, size_t len, mode_t mode)
{
	const uint8_t *p = data;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	if (fd < 0 || fchmod(fd, mode) != 0)
		s_fatal("cannot write", path);
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			s_fatal("cannot write", path);
		p += n;
		len -= (size_t)n;
	}
	if (close(fd) != 0)
		s_fatal("cannot write", path);
}

/* Copies a committed file of at most 1 MiB. */
static void
s_copy_file(const char *from, const char *to)
{
	static char buf[1 << 20];
	FILE *f = fopen(from, "rb");
	size_t n;

	if (f == NULL)
		s_fatal("cannot read", from);
	n = fread(buf, 1, sizeof buf, f);
	if (ferror(f) || !feof(f))
		s_fatal("cannot read (or larger than 1 MiB)", from);
	fclose(f);
	s_write(to, buf, n, 0644);
}

static bool
s_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Copies the *.yaml and *.pub files of `from` into `to` (with `files`)
 * and, `depth` levels down, its subfolders, except those that hold keys
 * or run-time data in an example. */
static void
s_copy_dir(const char *from, const char *to, int depth, bool files)
{
	static const char *const skip[] = {"keys", "data", "run", "clients"};
	DIR *d = opendir(from);
	struct dirent *de;

	if (d == NULL)
		s_fatal("cannot read", from);
	s_mkdir(to);
	while ((de = readdir(d)) != NULL) {
		char src[PATH_MAX], dst[PATH_MAX];
		struct stat st;
		bool skipped = false;

		if (de->d_name[0] == '.')
			continue;
		s_join(src, sizeof src, from, de->d_name);
		s_join(dst, sizeof dst, to, de->d_name);
		if (stat(src, &st) != 0)
			s_fatal("cannot stat", src);
		if (S_ISREG(st.st_mode) && files &&
		    (s_ends_with(de->d_name, ".yaml") ||
			s_ends_with(de->d_name, ".pub")))
			s_copy_file(src, dst);
		if (!S_ISDIR(st.st_mode) || depth == 0)
			continue;
		for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
			skipped = skipped || strcmp(de->d_name, skip[i]) == 0;
		if (!skipped)
			s_copy_dir(src, dst, depth - 1, true);
	}
	closedir(d);
}

/* Derives 32 bytes from a label and a party id, so that every run uses
 * the same keys. */
static void
s_derive(uint8_t out[32], const char *label, const char *id)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, (const uint8_t *)id, strlen(id));
	crypto_generichash_final(&st, out, 32);
}

/* Writes DIR/ID.pub with keys derived from `id`. */
static void
s_write_pub(const char *dir, const char *id)
{
	uint8_t seed[32], sk[64], sign[32], box[32], transport[32];
	char t[3][KEYS_TEXT_MAX], name[128], path[PATH_MAX], text[512];
	int n;

	s_derive(seed, "fuzz_conf sign", id);
	crypto_sign_seed_keypair(sign, sk, seed);
	s_derive(seed, "fuzz_conf box", id);
	crypto_scalarmult_base(box, seed);
	s_derive(seed, "fuzz_conf transport", id);
	crypto_scalarmult_base(transport, seed);
	keys_encode(KEYS_ED25519, sign, t[0]);
	keys_encode(KEYS_X25519, box, t[1]);
	keys_encode(KEYS_X25519, transport, t[2]);
	n = snprintf(name, sizeof name, "%s.pub", id);
	if (n < 0 || (size_t)n >= sizeof name)
		return;
	s_join(path, sizeof path, dir, name);
	n = snprintf(text, sizeof text,
	    "# fuzz_conf: derived keys of %s\nsign: %s\nbox: %s\n"
	    "transport: %s\n",
	    id, t[0], t[1], t[2]);
	if (n > 0 && (size_t)n < sizeof text)
		s_write(path, text, (size_t)n, 0644);
}

/* Writes a public key file for every "- id: X" line of the example's
 * parties.yaml, the way its dev-keys script finds them. */
static void
s_party_keys(const char *conf, const char *keys)
{
	char path[PATH_MAX], line[512];
	FILE *f;

	s_join(path, sizeof path, conf, "parties.yaml");
	f = fopen(path, "r");
	if (f == NULL)
		s_fatal("cannot read", path);
	while (fgets(line, sizeof line, f) != NULL) {
		char *p = line + strspn(line, " \t");
		size_t n;

		if (strncmp(p, "- id:", 5) != 0)
			continue;
		p += 5;
		p += strspn(p, " \t");
		n = strcspn(p, " \t\r\n#");
		p[n] = '\0';
		if (n > 0 && n <= 64)
			s_write_pub(keys, p);
	}
	fclose(f);
}

static void
s_init(void)
{
	static const char secret[] =
	    "# fuzz_conf: the loader only checks this file's mode\n";
	const char *tmp = getenv("TMPDIR");
	char path[PATH_MAX], conf[PATH_MAX], keys[PATH_MAX];
	const char *why;

	if (sodium_init() < 0 ||
	    units_parse_date(S_TODAY, &s_today, &why) != 0) {
		fprintf(stderr, "fuzz_conf: cannot initialise\n");
		exit(1);
	}
	snprintf(s_dir, sizeof s_dir, "%s/schakel-fuzz-conf-XXXXXX",
	    tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(s_dir) == NULL)
		s_fatal("cannot create", s_dir);
	s_join(path, sizeof path, s_dir, "base.yaml");
	s_copy_file(FUZZ_CONF_SRCDIR "/tests/config/base.yaml", path);
	s_join(keys, sizeof keys, s_dir, "keys");
	s_mkdir(keys);
	s_join(path, sizeof path, keys, "broker.key");
	s_write(path, secret, sizeof secret - 1, 0600);
	s_join(path, sizeof path, keys, "loose.key");
	s_write(path, secret, sizeof secret - 1, 0644);
	s_join(conf, sizeof conf, s_dir, "conf");
	s_copy_dir(FUZZ_CONF_SRCDIR "/tests/config/broken", conf, 1, false);
	s_copy_dir(FUZZ_CONF_SRCDIR "/config/examples/utrecht", conf, 1, true);
	s_join(keys, sizeof keys, conf, "keys");
	s_mkdir(keys);
	s_join(path, sizeof path, keys, "broker.key");
	s_write(path, secret, sizeof secret - 1, 0600);
	s_party_keys(conf, keys);
	s_join(s_input, sizeof s_input, conf, "input.yaml");
	s_null = fopen("/dev/null", "w");
	if (s_null == NULL)
		s_fatal("cannot open", "/dev/null");
}

/* Removes the private folder when the fuzzer exits. */
static int
s_remove(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		char path[PATH_MAX];
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >=
		    (int)sizeof path)
			continue;
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			s_remove(path);
		else
			unlink(path);
	}
	closedir(d);
	return rmdir(dir);
}

static void
s_cleanup(void)
{
	if (s_dir[0] != '\0')
		s_remove(s_dir);
	if (s_null != NULL)
		fclose(s_null);
}

/* ------------------------------------------------------------------ */
/* What a loaded configuration promises                               */

static void
s_fail(const char *what, const char *id)
{
	fprintf(stderr, "fuzz_conf: loaded configuration: %s ('%s')\n", what,
	    id != NULL ? id : "");
	abort();
}

/* A flow must be found again by conf_flows_for for one sender and
 * recipient it allows. */
static void
s_check_flow(const struct conf *c, const struct conf_agreement *ag,
    const struct conf_flow *fl)
{
	const struct conf_party *from = NULL, *to = NULL;
	const struct conf_flow *out[64];

	for (size_t i = 0; i < ag->nparties; i++) {
		if (from == NULL &&
		    conf_selector_covers(fl, &fl->from, ag->parties[i]))
			from = ag->parties[i];
		if (to == NULL &&
		    conf_selector_covers(fl, &fl->to, ag->parties[i]))
			to = ag->parties[i];
	}
	if (from == NULL || to == NULL)
		s_fail("a flow that allows nobody", ag->id);
	for (size_t t = 0; t < fl->ntypes; t++) {
		size_t n = conf_flows_for(
		    c, from, to, fl->types[t], out, sizeof out / sizeof out[0]);
		bool found = false;

		for (size_t i = 0; i < n && i < sizeof out / sizeof out[0]; i++)
			found = found || out[i] == fl;
		if (!found && n <= sizeof out / sizeof out[0])
			s_fail(
			    "a flow that conf_flows_for does not find", ag->id);
	}
}

/* A limit ends after its start, on a working day when it counts them;
 * checked from today and from each holiday, where the counting skips. */
static void
s_check_deadline(const struct conf *c, const struct conf_deadline *dl)
{
	const struct units_duration *lim[2] = {&dl->within, &dl->urgent_within};

	if (dl->nfrom == 0 || dl->nto == 0 ||
	    (dl->within.seconds == 0) == (dl->within.workdays == 0))
		s_fail("a deadline without a start, an end or a limit", dl->id);
	for (size_t h = 0; h <= c->nholidays; h++) {
		int32_t day = h < c->nholidays ? c->holidays[h].day : s_today;
		for (int i = 0; i < 2; i++) {
			int32_t end;
			if (lim[i]->seconds == 0 && lim[i]->workdays == 0)
				continue;
			end = conf_limit_end(c, day, lim[i]);
			if (end <= day ||
			    (lim[i]->workdays != 0 &&
				(units_weekday(end) >= 5 ||
				    conf_is_holiday(c, end))))
				s_fail(
				    "a limit that ends on a day off", dl->id);
		}
	}
}

static void
s_check_conf(const struct conf *c)
{
	const struct conf_broker *b = &c->broker;

	if (c->nfiles == 0 || b->nendpoints == 0 || b->data_dir == NULL ||
	    b->key_file == NULL || b->limits.submit_burst == 0 ||
	    b->limits.dedup_window < 2 * b->limits.clock_skew)
		s_fail("a broker section the checks should have refused", NULL);
	for (size_t i = 0; i < c->nroles; i++)
		if (c->roles[i].index != i ||
		    conf_role_by_id(c, c->roles[i].id) != &c->roles[i])
			s_fail("a role not found by its id", c->roles[i].id);
	for (size_t i = 0; i < c->nstages; i++)
		if (c->stages[i].index != i ||
		    conf_stage_by_id(c, c->stages[i].id) != &c->stages[i])
			s_fail("a stage not found by its id", c->stages[i].id);
	for (size_t i = 0; i < c->nparties; i++) {
		const struct conf_party *p = &c->parties[i];
		if (p->index != i || p->role == NULL ||
		    conf_party_by_id(c, p->id) != p ||
		    conf_party_by_transport_key(c, p->transport_key) != p)
			s_fail("a party not found by its id or key", p->id);
		for (size_t r = 0; r < p->nregions; r++)
			if (!conf_party_in_region(p, p->regions[r]))
				s_fail("a party outside its own region", p->id);
	}
	for (size_t i = 0; i < c->ntypes; i++) {
		const struct conf_type *t = &c->types[i];
		if (t->index != i || conf_type_by_id(c, t->id) != t ||
		    t->max_size > b->limits.max_message_size)
			s_fail("a message type not found by its id, or "
			       "larger than max_message_size",
			    t->id);
	}
	for (size_t i = 0; i < c->nholidays; i++)
		if ((i > 0 && c->holidays[i - 1].day >= c->holidays[i].day) ||
		    !conf_is_holiday(c, c->holidays[i].day))
			s_fail("holidays out of order", c->holidays[i].name);
	for (size_t i = 0; i < c->ndeadlines; i++)
		s_check_deadline(c, &c->deadlines[i]);
	for (size_t i = 0; i < c->nagreements; i++) {
		const struct conf_agreement *ag = &c->agreements[i];
		if (ag->index != i || conf_agreement_by_id(c, ag->id) != ag ||
		    !conf_agreement_active(ag, ag->valid_from) ||
		    !conf_agreement_active(ag, ag->valid_until))
			s_fail("an agreement not found by its id, or never in "
			       "force",
			    ag->id);
		if (ag->nparties < 2 || ag->nflows == 0)
			s_fail("an agreement with fewer than two parties or "
			       "without flows",
			    ag->id);
		for (size_t p = 1; p < ag->nparties; p++)
			if (ag->parties[p - 1]->index >= ag->parties[p]->index)
				s_fail(
				    "agreement parties out of order", ag->id);
		for (size_t f = 0; f < ag->nflows; f++) {
			if (ag->flows[f].agreement != ag ||
			    ag->flows[f].ntypes == 0)
				s_fail("a flow without types", ag->id);
			s_check_flow(c, ag, &ag->flows[f]);
		}
	}
	for (size_t i = 0; i < c->nroutes; i++)
		if (c->routes[i].index != i || c->routes[i].nto == 0)
			s_fail("a route without targets", c->routes[i].id);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool initialised;
	struct diags *d;
	struct conf *c;
	size_t errors;

	if (!initialised) {
		s_init();
		atexit(s_cleanup);
		initialised = true;
	}
	s_write(s_input, data, size, 0644);
	d = diags_new();
	if (d == NULL)
		abort();
	c = conf_load(s_input, s_today, d);
	errors = diags_count(d, DIAG_ERROR);
	/* conf.h: NULL exactly when there was at least one error. */
	if ((c == NULL) != (errors > 0)) {
		fprintf(stderr,
		    "fuzz_conf: conf_load returned %s with %zu errors\n",
		    c == NULL ? "NULL" : "a configuration", errors);
		diags_print(d, stderr);
		abort();
	}
	if (c != NULL)
		s_check_conf(c);
	/* FUZZ_CONF_VERBOSE=1 shows what the loader said about an input. */
	diags_print(d, getenv("FUZZ_CONF_VERBOSE") != NULL ? stderr : s_null);
	conf_destroy(&c);
	diags_destroy(&d);
	return 0;
}
