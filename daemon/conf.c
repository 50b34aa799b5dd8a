/*
 * conf: loads a configuration file and its includes, checks every value
 * against the schema (docs/configuration.md) and builds the immutable
 * struct conf.  It reports every problem it finds, not only the first,
 * and never returns a half-valid configuration.
 */
#include "conf_priv.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keys.h"
#include "ytree.h"

enum s_section {
	S_ROLES,
	S_PARTIES,
	S_STAGES,
	S_TYPES,
	S_DEADLINES,
	S_HOLIDAYS,
	S_AGREEMENTS,
	S_ROUTES,
	S_NSECTIONS
};

static const char *const s_section_keys[S_NSECTIONS] = {"roles", "parties",
    "stages", "message_types", "deadlines", "holidays", "agreements", "routes"};

static const char *const s_top_keys[] = {"include", "broker", "roles",
    "parties", "message_types", "stages", "deadlines", "holidays", "agreements",
    "routes"};

#define S_NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define S_MAX_INCLUDES 256

/* One entry of a list section, with the folder of its file (relative
 * paths in it are resolved against that folder). */
struct s_item {
	const struct ynode *node;
	const char *dir;
};

struct s_vec {
	struct s_item *v;
	size_t len;
	size_t cap;
};

struct s_ctx {
	struct conf *c;
	struct arena *a;    /* the conf's arena: what it keeps */
	struct arena *tree; /* YAML trees, freed after loading */
	struct diags *d;
	int32_t today;
	struct s_vec sec[S_NSECTIONS];
	const struct ynode *broker;
	const char *broker_dir;
	struct idmap files; /* real path -> mark of its include */
	const char *chain[S_MAX_INCLUDES]; /* files being included, by name */
	const char *chain_real[S_MAX_INCLUDES];
	int chain_len;
	uint32_t nfiles;
	/* A file could not be read or parsed: what is missing from it would
	 * only show up as misleading follow-on problems elsewhere. */
	bool incomplete;
	struct diag_mark top;
};

static void s_err(struct s_ctx *x, const struct diag_mark *m, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

static void
s_err(struct s_ctx *x, const struct diag_mark *m, const char *fmt, ...)
{
	char buf[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	diags_add(x->d, DIAG_ERROR, m, "%s", buf);
}

static void
s_oom(struct s_ctx *x)
{
	s_err(x, &x->top, "out of memory while loading the configuration");
}

/* Formats "file:line:col" of a mark for "first declared at" notes. */
static const char *
s_where(const struct diag_mark *m, char *buf, size_t len)
{
	snprintf(buf, len, "%s:%u:%u", m->file, m->line, m->col);
	return buf;
}

static int
s_vec_push(struct s_vec *v, const struct ynode *n, const char *dir)
{
	if (v->len == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		struct s_item *nv = realloc(v->v, cap * sizeof(*nv));
		if (nv == NULL)
			return -1;
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->len].node = n;
	v->v[v->len].dir = dir;
	v->len++;
	return 0;
}

/* Joins `rel` to `dir` unless it is absolute. */
static char *
s_resolve(struct s_ctx *x, const char *dir, const char *rel)
{
	size_t dl = strlen(dir), rl = strlen(rel);
	char *p;

	if (rel[0] == '/' || dl == 0 || strcmp(dir, ".") == 0)
		return arena_strdup(x->a, rel);
	p = arena_alloc(x->a, dl + rl + 2);
	if (p == NULL)
		return NULL;
	memcpy(p, dir, dl);
	p[dl] = '/';
	memcpy(p + dl + 1, rel, rl + 1);
	return p;
}

static char *
s_dirname(struct s_ctx *x, const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return arena_strdup(x->a, ".");
	if (slash == path)
		return arena_strdup(x->a, "/");
	return arena_strndup(x->a, path, (size_t)(slash - path));
}

/* ------------------------------------------------------------------ */
/* Reading typed values from nodes                                    */

/* Checks that `n` is a mapping whose keys are all among `names`, and sets
 * out[i] to the value of names[i] (NULL when absent or null).  Unknown
 * keys are reported with the nearest known key.  Returns false when `n`
 * is not a mapping. */
static bool
s_fields(struct s_ctx *x, const struct ynode *n, const char *what,
    const char *const *names, size_t count, const struct ynode **out)
{
	char hint[96];

	for (size_t i = 0; i < count; i++)
		out[i] = NULL;
	if (n == NULL || n->kind != YNODE_MAP) {
		s_err(x, &n->mark,
		    "%s must be a mapping of keys to values, "
		    "found %s",
		    what, ytree_kind_name(n));
		return false;
	}
	for (size_t p = 0; p < n->n; p++) {
		const struct ynode *k = n->pairs[p].key;
		size_t i;
		for (i = 0; i < count; i++)
			if (strcmp(k->str, names[i]) == 0)
				break;
		if (i == count) {
			diags_suggest(k->str, names, count, hint, sizeof hint);
			s_err(x, &k->mark, "unknown key '%s' in %s%s", k->str,
			    what, hint);
			continue;
		}
		if (!ytree_is_null(n->pairs[p].value))
			out[i] = n->pairs[p].value;
	}
	return true;
}

/* Reports a missing required key.  Returns false when it is missing. */
static bool
s_need(struct s_ctx *x, const struct ynode *map, const struct ynode *v,
    const char *key, const char *what)
{
	if (v != NULL)
		return true;
	s_err(x, &map->mark, "%s has no '%s'", what, key);
	return false;
}

/* Reports a required list of message types that is empty ('[]'), which
 * would otherwise be read as no types at all.  `key` is the list's key
 * in `what`.  Returns false when it is empty. */
static bool
s_some_types(
    struct s_ctx *x, const struct ynode *v, const char *key, const char *what)
{
	if (v->kind != YNODE_SEQ || v->n > 0)
		return true;
	s_err(x, &v->mark,
	    "'%s' of %s is an empty list; name at least one message type", key,
	    what);
	return false;
}

/* Returns the text of a scalar, or NULL after reporting what is wrong. */
static const char *
s_scalar(struct s_ctx *x, const struct ynode *n, const char *what)
{
	if (n->kind != YNODE_SCALAR) {
		s_err(x, &n->mark, "%s must be a single value, found %s", what,
		    ytree_kind_name(n));
		return NULL;
	}
	return n->str;
}

/* Returns a copy of free text kept in the conf; refuses control
 * characters so that it can be logged and printed safely. */
static const char *
s_text(struct s_ctx *x, const struct ynode *n, const char *what)
{
	const char *s = s_scalar(x, n, what);
	char *copy;

	if (s == NULL)
		return NULL;
	for (const char *p = s; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 && *p != '\t') {
			s_err(x, &n->mark, "%s contains a control character",
			    what);
			return NULL;
		}
	}
	if (s[0] == '\0') {
		s_err(x, &n->mark, "%s must not be empty", what);
		return NULL;
	}
	copy = arena_strdup(x->a, s);
	if (copy == NULL)
		s_oom(x);
	return copy;
}

static bool
s_bool(struct s_ctx *x, const struct ynode *n, const char *what, bool dflt)
{
	if (n == NULL)
		return dflt;
	if (n->kind == YNODE_SCALAR && n->plain) {
		if (strcmp(n->str, "true") == 0)
			return true;
		if (strcmp(n->str, "false") == 0)
			return false;
	}
	if (n->kind == YNODE_SCALAR)
		s_err(x, &n->mark, "%s must be true or false, found '%s'", what,
		    n->str);
	else
		s_err(x, &n->mark, "%s must be true or false, found %s", what,
		    ytree_kind_name(n));
	return dflt;
}

static bool
s_is_slug(const char *s, size_t max)
{
	size_t len = strlen(s);

	if (len == 0 || len > max || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		bool ok = (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') ||
		    (s[i] == '-' && s[i + 1] != '-');
		if (!ok)
			return false;
	}
	return true;
}

static bool
s_is_word(const char *s, size_t len)
{
	if (len == 0 || s[0] < 'a' || s[0] > 'z')
		return false;
	for (size_t i = 1; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
			(s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static bool
s_is_type_id(const char *s)
{
	const char *last = strrchr(s, '.'), *seg = s;
	size_t len = strlen(s);

	if (len > 64 || last == NULL || last[1] != 'v' || last[2] < '1' ||
	    last[2] > '9')
		return false;
	for (const char *p = last + 3; *p != '\0'; p++)
		if (*p < '0' || *p > '9')
			return false;
	while (seg < last) {
		const char *dot = strchr(seg, '.');
		if (!s_is_word(seg, (size_t)(dot - seg)))
			return false;
		seg = dot + 1;
	}
	return true;
}

enum s_idkind {
	S_ID_SLUG, /* parties, agreements, routes, deadlines */
	S_ID_WORD, /* roles, stages */
	S_ID_TYPE, /* message types */
};

/* Reads and validates an id; returns an arena copy or NULL. */
static const char *
s_id(struct s_ctx *x, const struct ynode *n, enum s_idkind kind,
    const char *what)
{
	const char *s = s_scalar(x, n, what);
	bool ok;

	if (s == NULL)
		return NULL;
	switch (kind) {
	case S_ID_SLUG:
		ok = s_is_slug(s, 64);
		break;
	case S_ID_WORD:
		ok = strlen(s) <= 32 && s_is_word(s, strlen(s));
		break;
	default:
		ok = s_is_type_id(s);
		break;
	}
	if (!ok) {
		static const char *const rules[] = {
		    "lowercase letters, digits and single hyphens, at most 64 "
		    "characters, e.g. 'gemeente-utrecht'",
		    "a lowercase letter, then lowercase letters, digits or "
		    "'_', at most 32 characters, e.g. 'debt_counselling'",
		    "dotted lowercase words ending in a version, at most 64 "
		    "characters, e.g. 'shv.melding.v1'"};
		s_err(x, &n->mark, "invalid %s '%s': use %s", what, s,
		    rules[kind]);
		return NULL;
	}
	s = arena_strdup(x->a, s);
	if (s == NULL)
		s_oom(x);
	return s;
}

/* Registers `item` under `id` in `map`; reports a duplicate at `mark`,
 * naming where the first was declared (found at `mark_off` in the first
 * item).  Returns true when the id is new. */
static bool
s_register(struct s_ctx *x, struct idmap *map, const char *id, void *item,
    size_t mark_off, const struct diag_mark *mark, const char *what)
{
	void *old = NULL;
	char where[512];
	int rc = idmap_put(map, id, strlen(id), item, &old);

	if (rc < 0) {
		s_oom(x);
		return false;
	}
	if (rc == 1) {
		const struct diag_mark *first =
		    (const struct diag_mark *)(const void *)((const char *)old +
			mark_off);
		s_err(x, mark, "%s '%s' is declared twice (first at %s)", what,
		    id, s_where(first, where, sizeof where));
		return false;
	}
	return true;
}

/* The number of items of a value that may be one scalar or a list. */
static size_t
s_count(const struct ynode *n)
{
	if (n == NULL)
		return 0;
	return n->kind == YNODE_SEQ ? n->n : 1;
}

static const struct ynode *
s_nth(const struct ynode *n, size_t i)
{
	return n->kind == YNODE_SEQ ? n->items[i] : n;
}

/* Collects the names of a map's keys for "did you mean" hints. */
static void
s_suggest_from(const struct idmap *m, const char *word, char *hint, size_t len)
{
	const char **names;
	size_t n = 0;

	hint[0] = '\0';
	if (m->len == 0)
		return;
	names = malloc(m->len * sizeof(*names));
	if (names == NULL)
		return;
	for (size_t i = 0; i < m->cap; i++)
		if (m->keys[i] != NULL)
			names[n++] = m->keys[i];
	diags_suggest(word, names, n, hint, len);
	free(names);
}

/* Resolves a reference to a declared id; reports an unknown one. */
static void *
s_ref(struct s_ctx *x, const struct idmap *map, const struct ynode *n,
    const char *what)
{
	const char *s = s_scalar(x, n, what);
	char hint[96];
	void *v;

	if (s == NULL)
		return NULL;
	v = idmap_get(map, s, strlen(s));
	if (v == NULL) {
		s_suggest_from(map, s, hint, sizeof hint);
		s_err(x, &n->mark, "unknown %s '%s'%s", what, s, hint);
	}
	return v;
}

static bool
s_region(struct s_ctx *x, const struct ynode *n, uint16_t *out)
{
	const char *s = s_scalar(x, n, "a region");
	unsigned v = 0;

	if (s == NULL)
		return false;
	if (strlen(s) == 6 && s[0] == 'G' && s[1] == 'M') {
		bool digits = true;
		for (int i = 2; i < 6; i++) {
			digits = digits && s[i] >= '0' && s[i] <= '9';
			v = v * 10 + (unsigned)(s[i] - '0');
		}
		if (digits && v > 0) {
			*out = (uint16_t)v;
			return true;
		}
	}
	s_err(x, &n->mark,
	    "invalid region code '%s': use a CBS municipality code, 'GM' "
	    "followed by 4 digits, e.g. GM0344",
	    s);
	return false;
}

/* Reads a list of regions; returns an arena array. */
static const uint16_t *
s_regions(struct s_ctx *x, const struct ynode *n, size_t *count)
{
	size_t total = s_count(n), k = 0;
	uint16_t *r;

	*count = 0;
	if (total == 0)
		return NULL;
	r = arena_calloc(x->a, total, sizeof(*r));
	if (r == NULL) {
		s_oom(x);
		return NULL;
	}
	for (size_t i = 0; i < total; i++) {
		uint16_t v;
		bool dup = false;
		if (!s_region(x, s_nth(n, i), &v))
			continue;
		for (size_t j = 0; j < k; j++)
			dup = dup || r[j] == v;
		if (dup) {
			s_err(x, &s_nth(n, i)->mark,
			    "region '%s' is listed "
			    "twice",
			    s_nth(n, i)->str);
			continue;
		}
		r[k++] = v;
	}
	*count = k;
	return r;
}

static bool
s_duration(struct s_ctx *x, const struct ynode *n, bool workdays,
    const char *what, struct units_duration *out)
{
	const char *s = s_scalar(x, n, what), *why;

	if (s == NULL)
		return false;
	if (units_parse_duration(s, workdays, out, &why) != 0) {
		s_err(x, &n->mark, "invalid %s '%s': %s", what, s, why);
		return false;
	}
	return true;
}

static bool
s_date(struct s_ctx *x, const struct ynode *n, const char *what, int32_t *out)
{
	const char *s = s_scalar(x, n, what), *why;

	if (s == NULL)
		return false;
	if (units_parse_date(s, out, &why) != 0) {
		s_err(x, &n->mark, "invalid %s '%s': %s", what, s, why);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Includes                                                           */

static void
s_load_file(struct s_ctx *x, const char *path, const struct diag_mark *from);

static int
s_name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Loads every *.yaml file of a folder, sorted by name. */
static void
s_load_dir(struct s_ctx *x, const char *dir, const struct diag_mark *from)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	bool oom = false;

	if (dp == NULL) {
		s_err(x, from, "cannot read folder '%s': %s", dir,
		    strerror(errno));
		x->incomplete = true;
		return;
	}
	while ((de = readdir(dp)) != NULL) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len < 6 ||
		    strcmp(de->d_name + len - 5, ".yaml") != 0)
			continue;
		if (n == cap) {
			char **nn;
			cap = cap ? cap * 2 : 16;
			nn = realloc(names, cap * sizeof(*nn));
			if (nn == NULL) {
				oom = true;
				break;
			}
			names = nn;
		}
		names[n] = s_resolve(x, dir, de->d_name);
		if (names[n] == NULL) {
			oom = true;
			break;
		}
		n++;
	}
	closedir(dp);
	/* Said, and none of the folder loaded: a folder read in part would
	 * be a configuration without some of its files. */
	if (oom) {
		s_oom(x);
		free(names);
		return;
	}
	if (n > 0)
		qsort(names, n, sizeof(*names), s_name_cmp);
	if (n == 0)
		s_err(x, from, "folder '%s' holds no *.yaml file", dir);
	for (size_t i = 0; i < n; i++)
		s_load_file(x, names[i], from);
	free(names);
}

static void
s_includes(struct s_ctx *x, const struct ynode *inc, const char *dir)
{
	size_t n = s_count(inc);

	for (size_t i = 0; i < n; i++) {
		const struct ynode *e = s_nth(inc, i);
		const char *rel = s_scalar(x, e, "an include");
		struct stat st;
		char *path;

		if (rel == NULL)
			continue;
		if (rel[0] == '\0') {
			s_err(x, &e->mark,
			    "an include must name a file or folder");
			continue;
		}
		path = s_resolve(x, dir, rel);
		if (path == NULL) {
			s_oom(x);
			return;
		}
		if (stat(path, &st) != 0) {
			s_err(x, &e->mark, "cannot include '%s': %s", path,
			    strerror(errno));
			x->incomplete = true;
			continue;
		}
		if (S_ISDIR(st.st_mode))
			s_load_dir(x, path, &e->mark);
		else
			s_load_file(x, path, &e->mark);
	}
}

/* Reports an include cycle as the chain of file names. */
static void
s_cycle(
    struct s_ctx *x, int start, const char *path, const struct diag_mark *from)
{
	char msg[700];
	size_t off = 0;

	for (int i = start; i < x->chain_len && off < sizeof msg; i++) {
		int n = snprintf(
		    msg + off, sizeof msg - off, "'%s' includes ", x->chain[i]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	if (off < sizeof msg)
		snprintf(msg + off, sizeof msg - off, "'%s'", path);
	s_err(x, from, "include cycle: %s", msg);
}

static void
s_load_file(struct s_ctx *x, const char *path, const struct diag_mark *from)
{
	char real[PATH_MAX], where[512];
	const struct ynode *root, *inc = NULL;
	struct diag_mark *first;
	const char *dir, *name, *rcopy;
	bool ok;
	uint32_t seq;
	int rc;

	if (realpath(path, real) == NULL) {
		s_err(x, from, "cannot open '%s': %s", path, strerror(errno));
		x->incomplete = true;
		return;
	}
	for (int i = 0; i < x->chain_len; i++) {
		if (strcmp(x->chain_real[i], real) == 0) {
			s_cycle(x, i, path, from);
			return;
		}
	}
	first = idmap_get(&x->files, real, strlen(real));
	if (first != NULL) {
		s_err(x, from,
		    "'%s' is already included (at %s); include each "
		    "file once",
		    path, s_where(first, where, sizeof where));
		return;
	}
	if (x->chain_len == S_MAX_INCLUDES) {
		s_err(x, from, "includes are nested more than %d deep",
		    S_MAX_INCLUDES);
		return;
	}
	rcopy = arena_strdup(x->a, real);
	name = arena_strdup(x->a, path);
	first = arena_alloc(x->a, sizeof(*first));
	if (rcopy == NULL || name == NULL || first == NULL) {
		s_oom(x);
		return;
	}
	*first = *from;
	rc = idmap_put(&x->files, rcopy, strlen(rcopy), first, (void **)&first);
	if (rc < 0) {
		s_oom(x);
		return;
	}
	seq = x->nfiles++;
	root = ytree_load(x->tree, path, name, seq, x->d, &ok);
	if (!ok)
		x->incomplete = true;
	if (!ok || root == NULL)
		return;
	if (root->kind != YNODE_MAP) {
		x->incomplete = true;
		s_err(x, &root->mark,
		    "a configuration file is a mapping of sections (broker, "
		    "parties, ...), found %s",
		    ytree_kind_name(root));
		return;
	}
	dir = s_dirname(x, path);
	if (dir == NULL) {
		s_oom(x);
		return;
	}
	for (size_t p = 0; p < root->n; p++) {
		const struct ynode *k = root->pairs[p].key;
		const struct ynode *v = root->pairs[p].value;
		char hint[96];
		size_t s;

		if (strcmp(k->str, "include") == 0) {
			inc = ytree_is_null(v) ? NULL : v;
			continue;
		}
		if (strcmp(k->str, "broker") == 0) {
			if (x->broker != NULL) {
				s_err(x, &k->mark,
				    "'broker' is declared twice "
				    "(first at %s)",
				    s_where(
					&x->broker->mark, where, sizeof where));
				continue;
			}
			x->broker = v;
			x->broker_dir = dir;
			continue;
		}
		for (s = 0; s < S_NSECTIONS; s++)
			if (strcmp(k->str, s_section_keys[s]) == 0)
				break;
		if (s == S_NSECTIONS) {
			diags_suggest(k->str, s_top_keys, S_NELEM(s_top_keys),
			    hint, sizeof hint);
			s_err(x, &k->mark, "unknown section '%s'%s", k->str,
			    hint);
			continue;
		}
		if (ytree_is_null(v))
			continue;
		if (v->kind != YNODE_SEQ) {
			s_err(x, &v->mark, "'%s' must be a list, found %s",
			    k->str, ytree_kind_name(v));
			continue;
		}
		for (size_t i = 0; i < v->n; i++)
			if (s_vec_push(&x->sec[s], v->items[i], dir) != 0) {
				s_oom(x);
				return;
			}
	}
	if (inc != NULL) {
		x->chain[x->chain_len] = name;
		x->chain_real[x->chain_len] = rcopy;
		x->chain_len++;
		s_includes(x, inc, dir);
		x->chain_len--;
	}
}

/* ------------------------------------------------------------------ */
/* broker                                                             */

enum s_limit_kind {
	S_LIM_SIZE,
	S_LIM_UINT,
	S_LIM_DURATION,
};

static const struct {
	const char *name;
	enum s_limit_kind kind;
	size_t offset;
	uint64_t min;
	uint64_t max;
	uint64_t dflt;
	bool party; /* may be overridden per party */
} s_limits[] = {
    {"max_message_size", S_LIM_SIZE,
	offsetof(struct conf_limits, max_message_size), 1024, 64u << 20,
	1u << 20, false},
    {"max_queue_depth", S_LIM_UINT,
	offsetof(struct conf_limits, max_queue_depth), 1, 100000000, 100000,
	true},
    {"submit_rate", S_LIM_UINT, offsetof(struct conf_limits, submit_rate), 1,
	10000000, 1000, true},
    {"submit_burst", S_LIM_UINT, offsetof(struct conf_limits, submit_burst), 1,
	100000000, 0, true},
    {"clock_skew", S_LIM_DURATION, offsetof(struct conf_limits, clock_skew), 1,
	86400, 300, false},
    {"ack_timeout", S_LIM_DURATION, offsetof(struct conf_limits, ack_timeout),
	1, 86400, 60, false},
    {"heartbeat", S_LIM_DURATION, offsetof(struct conf_limits, heartbeat), 1,
	3600, 10, false},
    {"max_deliveries", S_LIM_UINT, offsetof(struct conf_limits, max_deliveries),
	1, 1000, 10, false},
    {"map_size", S_LIM_SIZE, offsetof(struct conf_limits, map_size), 16u << 20,
	UINT64_C(1) << 42, UINT64_C(1) << 30, false},
    {"dedup_window", S_LIM_DURATION, offsetof(struct conf_limits, dedup_window),
	60, UINT64_C(3660) * 86400, 30 * 86400, false},
    /* 0, the default, is not a value one can write: one per processor. */
    {"verify_threads", S_LIM_UINT, offsetof(struct conf_limits, verify_threads),
	1, 64, 0, false},
};

/* Writes a duration of whole seconds as the largest unit that divides it
 * exactly, the way a person would write it in the file: "30d", "5m". */
static void
s_duration_text(uint64_t seconds, char *out, size_t len)
{
	static const struct {
		uint64_t seconds;
		char unit;
	} u[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}};
	size_t i;

	for (i = 0; i < S_NELEM(u); i++)
		if (seconds % u[i].seconds == 0)
			break;
	if (i == S_NELEM(u))
		snprintf(out, len, "%llus", (unsigned long long)seconds);
	else
		snprintf(out, len, "%llu%c",
		    (unsigned long long)(seconds / u[i].seconds), u[i].unit);
}

/* The broker refuses a message whose creation time is more than
 * clock_skew from its clock, and remembers message ids for dedup_window
 * from acceptance.  A message can be accepted as early as clock_skew
 * before its creation time (the sender's clock ahead) and its timestamp
 * is still accepted until clock_skew after it: 2 x clock_skew from the
 * first acceptance.  A shorter window lets a replay arrive after its id
 * was forgotten while its timestamp is still accepted, and be delivered
 * twice.  `dedup` is the dedup_window node, NULL when defaulted (the
 * problem is then reported at `limits`); the texts are what the file
 * says, NULL for defaults. */
static void
s_check_dedup_window(struct s_ctx *x, const struct ynode *limits,
    const struct ynode *dedup, const struct conf_limits *l,
    const char *dedup_text, const char *skew_text)
{
	char dbuf[32], sbuf[32];

	if (l->dedup_window >= 2 * l->clock_skew)
		return;
	if (dedup_text == NULL) {
		s_duration_text(l->dedup_window, dbuf, sizeof dbuf);
		dedup_text = dbuf;
	}
	if (skew_text == NULL) {
		s_duration_text(l->clock_skew, sbuf, sizeof sbuf);
		skew_text = sbuf;
	}
	s_err(x, dedup != NULL ? &dedup->mark : &limits->mark,
	    "broker.limits.dedup_window (%s) is shorter than twice "
	    "broker.limits.clock_skew (%s): a message could be accepted "
	    "twice; make dedup_window at least twice clock_skew",
	    dedup_text, skew_text);
}

/* Reads a `limits` mapping into `out` (which holds the defaults).  With
 * `party`, only the per-party keys are allowed. */
static void
s_parse_limits(struct s_ctx *x, const struct ynode *n, bool party,
    struct conf_limits *out, const char *what)
{
	const char *names[S_NELEM(s_limits)];
	const struct ynode *v[S_NELEM(s_limits)];
	size_t count = 0, map[S_NELEM(s_limits)];
	/* By s_limits index: the node and its text when it was read
	 * without error. */
	const struct ynode *node[S_NELEM(s_limits)] = {0};
	const char *text[S_NELEM(s_limits)] = {0};
	bool failed[S_NELEM(s_limits)] = {0};
	size_t dedup = 0, skew = 0;

	for (size_t i = 0; i < S_NELEM(s_limits); i++) {
		if (party && !s_limits[i].party)
			continue;
		map[count] = i;
		names[count++] = s_limits[i].name;
	}
	if (!s_fields(x, n, what, names, count, v))
		return;
	for (size_t j = 0; j < count; j++) {
		size_t i = map[j];
		uint64_t val = 0;
		const char *s, *why = NULL;
		struct units_duration d;
		char lim[32];

		if (v[j] == NULL)
			continue;
		node[i] = v[j];
		failed[i] = true; /* until the value is stored below */
		s = s_scalar(x, v[j], s_limits[i].name);
		if (s == NULL)
			continue;
		switch (s_limits[i].kind) {
		case S_LIM_SIZE:
			if (units_parse_size(s, &val, &why) != 0)
				break;
			break;
		case S_LIM_UINT:
			if (units_parse_uint(s, UINT64_MAX, &val, &why) != 0)
				break;
			break;
		case S_LIM_DURATION:
			if (units_parse_duration(s, false, &d, &why) != 0)
				break;
			val = d.seconds;
			break;
		}
		if (why != NULL) {
			s_err(x, &v[j]->mark, "invalid %s '%s': %s",
			    s_limits[i].name, s, why);
			continue;
		}
		if (val < s_limits[i].min || val > s_limits[i].max) {
			snprintf(lim, sizeof lim, "%llu",
			    (unsigned long long)(val < s_limits[i].min
				    ? s_limits[i].min
				    : s_limits[i].max));
			s_err(x, &v[j]->mark,
			    "%s '%s' is %s than allowed (%s %s%s)",
			    s_limits[i].name, s,
			    val < s_limits[i].min ? "smaller" : "larger",
			    val < s_limits[i].min ? "at least" : "at most", lim,
			    s_limits[i].kind == S_LIM_SIZE ? " bytes"
				: s_limits[i].kind == S_LIM_DURATION
				? " seconds"
				: "");
			continue;
		}
		*(uint64_t *)(void *)((char *)out + s_limits[i].offset) = val;
		failed[i] = false;
		text[i] = s;
	}
	if (party)
		return;
	for (size_t i = 0; i < S_NELEM(s_limits); i++) {
		if (strcmp(s_limits[i].name, "dedup_window") == 0)
			dedup = i;
		else if (strcmp(s_limits[i].name, "clock_skew") == 0)
			skew = i;
	}
	/* A value already refused would only add a misleading second
	 * error. */
	if (!failed[dedup] && !failed[skew])
		s_check_dedup_window(
		    x, n, node[dedup], out, text[dedup], text[skew]);
}

static bool
s_endpoint_ok(const char *s)
{
	const char *colon;

	if (strncmp(s, "ipc://", 6) == 0)
		return s[6] != '\0';
	if (strncmp(s, "tcp://", 6) != 0)
		return false;
	colon = strrchr(s + 6, ':');
	if (colon == NULL || colon == s + 6)
		return false;
	if (strcmp(colon + 1, "*") == 0)
		return true;
	{
		uint64_t port;
		const char *why;
		return units_parse_uint(colon + 1, 65535, &port, &why) == 0 &&
		    port > 0;
	}
}

/* A number of days from 1 to 36600 (a hundred years) into *out;
 * reported when it is not one. */
static void
s_days(struct s_ctx *x, const struct ynode *n, const char *key, uint32_t *out)
{
	const char *s = s_scalar(x, n, key), *why;
	uint64_t days;

	if (s == NULL)
		return;
	if (units_parse_uint(s, 36600, &days, &why) != 0 || days == 0)
		s_err(x, &n->mark,
		    "invalid %s '%s': a whole number of days from 1 to 36600",
		    key, s);
	else
		*out = (uint32_t)days;
}

/* broker.audit_archive: {dir, after_days}. */
static void
s_parse_archive(struct s_ctx *x, const struct ynode *n, struct conf_broker *b)
{
	static const char *const names[] = {"dir", "after_days"};
	const char *what = "the broker's audit_archive", *s;
	const struct ynode *v[S_NELEM(names)];

	if (!s_fields(x, n, what, names, S_NELEM(names), v))
		return;
	if (s_need(x, n, v[0], "dir", what)) {
		s = s_text(x, v[0], "audit_archive dir");
		if (s != NULL)
			b->archive_dir = s_resolve(x, x->broker_dir, s);
	}
	if (s_need(x, n, v[1], "after_days", what))
		s_days(x, v[1], "after_days", &b->archive_after_days);
}

static void
s_parse_broker(struct s_ctx *x)
{
	static const char *const names[] = {"endpoints", "data_dir", "key_file",
	    "admin_socket", "metrics", "limits", "audit_archive"};
	const struct ynode *v[S_NELEM(names)], *n = x->broker;
	struct conf_broker *b = &x->c->broker;
	struct keys_error kerr;
	const char *s;

	for (size_t i = 0; i < S_NELEM(s_limits); i++)
		*(uint64_t *)(void *)((char *)&b->limits + s_limits[i].offset) =
		    s_limits[i].dflt;
	if (n == NULL) {
		s_err(x, &x->top,
		    "there is no 'broker' section; it says where "
		    "the broker listens and keeps its data");
		return;
	}
	b->mark = n->mark;
	if (!s_fields(x, n, "the broker section", names, S_NELEM(names), v))
		return;
	if (s_need(x, n, v[0], "endpoints", "the broker section")) {
		size_t count = s_count(v[0]), k = 0;
		const char **eps = arena_calloc(x->a, count, sizeof(*eps));
		if (eps == NULL) {
			s_oom(x);
			return;
		}
		for (size_t i = 0; i < count; i++) {
			const struct ynode *e = s_nth(v[0], i);
			s = s_scalar(x, e, "an endpoint");
			if (s == NULL)
				continue;
			if (!s_endpoint_ok(s)) {
				s_err(x, &e->mark,
				    "invalid endpoint '%s': use tcp://ADDRESS:PORT "
				    "or ipc://PATH",
				    s);
				continue;
			}
			eps[k++] = arena_strdup(x->a, s);
		}
		if (count == 0)
			s_err(x, &v[0]->mark,
			    "the broker needs at least one "
			    "endpoint");
		b->endpoints = eps;
		b->nendpoints = k;
	}
	if (s_need(x, n, v[1], "data_dir", "the broker section")) {
		s = s_text(x, v[1], "data_dir");
		if (s != NULL)
			b->data_dir = s_resolve(x, x->broker_dir, s);
	}
	if (s_need(x, n, v[2], "key_file", "the broker section")) {
		s = s_text(x, v[2], "key_file");
		if (s != NULL) {
			b->key_file = s_resolve(x, x->broker_dir, s);
			errno = 0; /* ENOENT below must come from this check */
			if (b->key_file != NULL &&
			    keys_secret_check_mode(b->key_file, &kerr) != 0)
				s_err(x, &v[2]->mark, "%s%s", kerr.msg,
				    errno == ENOENT
					? " (create it with: schakel keygen "
					  "--broker --out DIR)"
					: "");
		}
	}
	s = v[3] != NULL ? s_text(x, v[3], "admin_socket")
			 : "/run/schakel/control.sock";
	if (s != NULL)
		b->admin_socket = s_resolve(x, x->broker_dir, s);
	s = v[4] != NULL ? s_text(x, v[4], "metrics") : "127.0.0.1:9464";
	if (s != NULL && strcmp(s, "off") != 0) {
		const char *colon = strrchr(s, ':');
		uint64_t port;
		const char *why;
		/* Port 0 takes any free port (tests); schakeld -E tells
		 * which. */
		if (colon == NULL || colon == s ||
		    units_parse_uint(colon + 1, 65535, &port, &why) != 0)
			s_err(x, &v[4]->mark,
			    "invalid metrics address '%s': use ADDRESS:PORT, "
			    "e.g. 127.0.0.1:9464, or 'off'",
			    s);
		b->metrics = arena_strdup(x->a, s);
	}
	if (v[5] != NULL)
		s_parse_limits(
		    x, v[5], false, &b->limits, "the broker's limits");
	if (b->limits.submit_burst == 0)
		b->limits.submit_burst = 2 * b->limits.submit_rate;
	if (v[6] != NULL)
		s_parse_archive(x, v[6], b);
}

/* Allocates the array of a list section's items; NULL (reported) when
 * out of memory. */
static void *
s_section_array(struct s_ctx *x, enum s_section sec, size_t elem)
{
	const struct s_vec *vec = &x->sec[sec];
	void *arr = arena_calloc(x->a, vec->len ? vec->len : 1, elem);

	if (arr == NULL)
		s_oom(x);
	return arr;
}

/* Starts one list item that has an id: checks its keys against `names`
 * (values into v) and reads its id.  `a_noun` is "a party", `noun`
 * "party".  Returns the id and writes "party 'ID'" into what, or NULL
 * when the item cannot be used (already reported). */
static const char *
s_item(struct s_ctx *x, const struct ynode *n, const char *a_noun,
    const char *noun, enum s_idkind kind, const char *const *names,
    size_t count, const struct ynode **v, char *what, size_t whatlen)
{
	char idwhat[64];
	const char *id;

	if (!s_fields(x, n, a_noun, names, count, v) ||
	    !s_need(x, n, v[0], "id", a_noun))
		return NULL;
	snprintf(idwhat, sizeof idwhat, "%s id", noun);
	id = s_id(x, v[0], kind, idwhat);
	if (id != NULL)
		snprintf(what, whatlen, "%s '%s'", noun, id);
	return id;
}

/* ------------------------------------------------------------------ */
/* roles, stages                                                      */

/* Roles and stages have the same shape: an id and a description. */
static void *
s_parse_named(struct s_ctx *x, enum s_section sec, struct idmap *map,
    size_t elem, const char *a_noun, const char *noun, size_t *count)
{
	static const char *const names[] = {"id", "description"};
	const struct s_vec *vec = &x->sec[sec];
	char *arr = s_section_array(x, sec, elem);
	size_t k = 0;

	if (arr == NULL)
		return NULL;
	for (size_t i = 0; i < vec->len; i++) {
		const struct ynode *n = vec->v[i].node, *v[2];
		/* struct conf_role and struct conf_stage share a layout. */
		struct conf_role *r =
		    (struct conf_role *)(void *)(arr + k * elem);
		char what[128];

		r->id = s_item(x, n, a_noun, noun, S_ID_WORD, names, 2, v, what,
		    sizeof what);
		if (r->id == NULL)
			continue;
		if (s_need(x, n, v[1], "description", what))
			r->description = s_text(x, v[1], "a description");
		r->mark = n->mark;
		r->index = (uint32_t)k;
		if (!s_register(x, map, r->id, r,
			offsetof(struct conf_role, mark), &v[0]->mark, noun))
			continue;
		k++;
	}
	*count = k;
	return arr;
}

/* ------------------------------------------------------------------ */
/* parties                                                            */

/* Reads a party's keys, inline or from a public key file, and sets
 * marks[sign, box, transport] to where each key is written. */
static void
s_party_keys(struct s_ctx *x, struct conf_party *p, const struct ynode *n,
    const char *dir, const struct diag_mark *marks[3])
{
	static const char *const names[] = {"sign", "box", "transport"};
	const struct ynode *v[3];
	uint8_t *dst[3] = {p->sign_key, p->box_key, p->transport_key};
	struct keys_public pub;
	struct keys_error err;
	const char *why;

	for (int i = 0; i < 3; i++)
		marks[i] = &n->mark;
	if (n->kind == YNODE_SCALAR) {
		const char *path = s_resolve(x, dir, n->str);
		if (path == NULL) {
			s_oom(x);
			return;
		}
		if (keys_public_read(path, KEYS_PARTY, &pub, &err) != 0) {
			if (err.line == 0) {
				s_err(x, &n->mark,
				    "%s (create it with: schakel keygen "
				    "--party %s --out DIR)",
				    err.msg, p->id);
			} else {
				struct diag_mark m = {.file = path,
				    .seq = n->mark.seq,
				    .line = err.line,
				    .col = err.col};
				s_err(x, &m, "%s", err.msg);
			}
			return;
		}
		memcpy(p->sign_key, pub.sign, CONF_KEY_BYTES);
		memcpy(p->box_key, pub.box, CONF_KEY_BYTES);
		memcpy(p->transport_key, pub.transport, CONF_KEY_BYTES);
		return;
	}
	if (!s_fields(x, n, "a party's keys", names, 3, v))
		return;
	for (int i = 0; i < 3; i++) {
		const char *s;
		if (!s_need(x, n, v[i], names[i], "a party's keys"))
			continue;
		marks[i] = &v[i]->mark;
		s = s_scalar(x, v[i], names[i]);
		if (s != NULL &&
		    keys_decode(s, i == 0 ? KEYS_ED25519 : KEYS_X25519, dst[i],
			&why) != 0)
			s_err(x, &v[i]->mark, "invalid %s key: %s", names[i],
			    why);
	}
}

/* Refuses a public key that another party already uses. */
static void
s_unique_key(struct s_ctx *x, struct idmap *map, const struct conf_party *p,
    const uint8_t *key, const char *which, const struct diag_mark *mark)
{
	static const uint8_t zero[CONF_KEY_BYTES];
	const struct conf_party *other;
	void *old = NULL;
	char where[512];
	int rc;

	if (memcmp(key, zero, CONF_KEY_BYTES) == 0)
		return; /* not read: already reported */
	rc = idmap_put(map, key, CONF_KEY_BYTES, (void *)p, &old);
	if (rc < 0) {
		s_oom(x);
		return;
	}
	if (rc == 0)
		return;
	other = old;
	s_err(x, mark,
	    "party '%s' has the same %s key as party '%s' (%s); every party "
	    "needs keys of its own",
	    p->id, which, other->id,
	    s_where(&other->mark, where, sizeof where));
}

static void
s_parse_parties(struct s_ctx *x)
{
	static const char *const names[] = {
	    "id", "name", "role", "regions", "keys", "limits"};
	const struct s_vec *vec = &x->sec[S_PARTIES];
	struct conf_index *ix = x->c->index;
	struct conf_party *arr;
	size_t k = 0;

	if (vec->len > CONF_MAX_ITEMS) {
		s_err(x, &x->top, "more than %u parties", CONF_MAX_ITEMS);
		return;
	}
	arr = s_section_array(x, S_PARTIES, sizeof(*arr));
	if (arr == NULL)
		return;
	for (size_t i = 0; i < vec->len; i++) {
		const struct ynode *n = vec->v[i].node, *v[S_NELEM(names)];
		struct conf_party *p = &arr[k];
		struct conf_limits lim = x->c->broker.limits;
		const struct diag_mark *kmarks[3] = {
		    &n->mark, &n->mark, &n->mark};
		char what[128];

		lim.submit_burst = 0;
		p->id = s_item(x, n, "a party", "party", S_ID_SLUG, names,
		    S_NELEM(names), v, what, sizeof what);
		if (p->id == NULL)
			continue;
		p->mark = n->mark;
		p->index = (uint32_t)k;
		if (s_need(x, n, v[1], "name", what))
			p->name = s_text(x, v[1], "a name");
		if (s_need(x, n, v[2], "role", what))
			p->role = s_ref(x, &ix->roles, v[2], "role");
		p->regions = s_regions(x, v[3], &p->nregions);
		if (s_need(x, n, v[4], "keys", what))
			s_party_keys(x, p, v[4], vec->v[i].dir, kmarks);
		if (v[5] != NULL)
			s_parse_limits(x, v[5], true, &lim, "a party's limits");
		p->max_queue_depth = lim.max_queue_depth;
		p->submit_rate = lim.submit_rate;
		/* A party's own rate without a burst gets twice its rate. */
		p->submit_burst = lim.submit_burst != 0 ? lim.submit_burst
		    : lim.submit_rate != x->c->broker.limits.submit_rate
		    ? 2 * lim.submit_rate
		    : x->c->broker.limits.submit_burst;
		if (!s_register(x, &ix->parties, p->id, p,
			offsetof(struct conf_party, mark), &v[0]->mark,
			"party"))
			continue;
		s_unique_key(x, &ix->transport_keys, p, p->transport_key,
		    "transport", kmarks[2]);
		s_unique_key(
		    x, &ix->sign_keys, p, p->sign_key, "sign", kmarks[0]);
		s_unique_key(x, &ix->box_keys, p, p->box_key, "box", kmarks[1]);
		k++;
	}
	x->c->parties = arr;
	x->c->nparties = k;
}

/* ------------------------------------------------------------------ */
/* message types                                                      */

static void
s_parse_types(struct s_ctx *x)
{
	static const char *const names[] = {"id", "description", "max_size",
	    "ttl", "opens", "closes", "special_categories"};
	const struct s_vec *vec = &x->sec[S_TYPES];
	struct conf_index *ix = x->c->index;
	struct conf_type *arr;
	size_t k = 0;

	if (vec->len > CONF_MAX_ITEMS) {
		s_err(x, &x->top, "more than %u message types", CONF_MAX_ITEMS);
		return;
	}
	arr = s_section_array(x, S_TYPES, sizeof(*arr));
	if (arr == NULL)
		return;
	for (size_t i = 0; i < vec->len; i++) {
		const struct ynode *n = vec->v[i].node, *v[S_NELEM(names)];
		struct conf_type *t = &arr[k];
		struct units_duration ttl = {.seconds = 14 * 86400};
		char what[128];

		t->id = s_item(x, n, "a message type", "message type",
		    S_ID_TYPE, names, S_NELEM(names), v, what, sizeof what);
		if (t->id == NULL)
			continue;
		t->mark = n->mark;
		t->index = (uint32_t)k;
		if (s_need(x, n, v[1], "description", what))
			t->description = s_text(x, v[1], "a description");
		t->max_size = x->c->broker.limits.max_message_size;
		if (v[2] != NULL) {
			const char *s = s_scalar(x, v[2], "max_size"), *why;
			if (s != NULL &&
			    units_parse_size(s, &t->max_size, &why) != 0)
				s_err(x, &v[2]->mark,
				    "invalid max_size '%s': %s", s, why);
			else if (s != NULL &&
			    t->max_size > x->c->broker.limits.max_message_size)
				s_err(x, &v[2]->mark,
				    "max_size %s is larger than the broker's "
				    "max_message_size (%llu bytes)",
				    s,
				    (unsigned long long)
					x->c->broker.limits.max_message_size);
		}
		if (v[3] != NULL)
			s_duration(x, v[3], false, "ttl", &ttl);
		t->ttl = ttl.seconds;
		if (v[4] != NULL)
			t->opens = s_ref(x, &ix->stages, v[4], "stage");
		if (v[5] != NULL) {
			size_t nc = s_count(v[5]), kc = 0;
			const struct conf_stage **cl =
			    arena_calloc(x->a, nc, sizeof(*cl));
			if (cl == NULL) {
				s_oom(x);
				return;
			}
			for (size_t c = 0; c < nc; c++) {
				const struct conf_stage *st = s_ref(
				    x, &ix->stages, s_nth(v[5], c), "stage");
				if (st != NULL)
					cl[kc++] = st;
			}
			t->closes = cl;
			t->ncloses = kc;
		}
		t->special_categories =
		    s_bool(x, v[6], "special_categories", false);
		if (!s_register(x, &ix->types, t->id, t,
			offsetof(struct conf_type, mark), &v[0]->mark,
			"message type"))
			continue;
		k++;
	}
	x->c->types = arr;
	x->c->ntypes = k;
}

/* Resolves one reference, or a list of them, to declared items, and
 * refuses an item listed twice.  Every item type (party, role, message
 * type) starts with its `const char *id`.  Returns an arena array. */
static const void **
s_ref_list(struct s_ctx *x, const struct idmap *map, const struct ynode *n,
    const char *what, size_t *count)
{
	size_t total = s_count(n), k = 0;
	const void **arr;

	*count = 0;
	arr = arena_calloc(x->a, total ? total : 1, sizeof(*arr));
	if (arr == NULL) {
		s_oom(x);
		return NULL;
	}
	for (size_t i = 0; i < total; i++) {
		const void *item = s_ref(x, map, s_nth(n, i), what);
		bool dup = false;
		if (item == NULL)
			continue;
		for (size_t j = 0; j < k; j++)
			dup = dup || arr[j] == item;
		if (dup) {
			s_err(x, &s_nth(n, i)->mark, "%s '%s' is listed twice",
			    what, *(const char *const *)item);
			continue;
		}
		arr[k++] = item;
	}
	*count = k;
	return arr;
}

static const struct conf_type *const *
s_type_list(struct s_ctx *x, const struct ynode *n, size_t *count)
{
	return (const struct conf_type *const *)(const void *)s_ref_list(
	    x, &x->c->index->types, n, "message type", count);
}

static const struct conf_party **
s_party_list(struct s_ctx *x, const struct ynode *n, size_t *count)
{
	return (const struct conf_party **)(void *)s_ref_list(
	    x, &x->c->index->parties, n, "party", count);
}

/* ------------------------------------------------------------------ */
/* holidays and deadlines                                             */

static int
s_holiday_cmp(const void *a, const void *b)
{
	const struct conf_holiday *x = a, *y = b;

	return (x->day > y->day) - (x->day < y->day);
}

static void
s_parse_holidays(struct s_ctx *x)
{
	static const char *const names[] = {"date", "name"};
	const struct s_vec *vec = &x->sec[S_HOLIDAYS];
	struct conf_holiday *arr;
	size_t k = 0;

	arr = s_section_array(x, S_HOLIDAYS, sizeof(*arr));
	if (arr == NULL)
		return;
	for (size_t i = 0; i < vec->len; i++) {
		const struct ynode *n = vec->v[i].node, *date = n, *v[2];
		struct conf_holiday *h = &arr[k];

		if (n->kind == YNODE_MAP) {
			if (!s_fields(x, n, "a holiday", names, 2, v) ||
			    !s_need(x, n, v[0], "date", "a holiday"))
				continue;
			date = v[0];
			if (v[1] != NULL)
				h->name = s_text(x, v[1], "a holiday's name");
		}
		if (!s_date(x, date, "holiday date", &h->day))
			continue;
		h->mark = date->mark;
		k++;
	}
	qsort(arr, k, sizeof(*arr), s_holiday_cmp);
	for (size_t i = 1; i < k; i++) {
		if (arr[i].day == arr[i - 1].day) {
			char where[512], date[11];
			units_format_date(arr[i].day, date);
			s_err(x, &arr[i].mark,
			    "holiday %s is listed twice "
			    "(also at %s)",
			    date,
			    s_where(&arr[i - 1].mark, where, sizeof where));
		}
	}
	x->c->holidays = arr;
	x->c->nholidays = k;
}

/* Compares durations where one may be in working days: a working day
 * lasts at least a calendar day, so "N workdays" >= N days. */
static bool
s_shorter(const struct units_duration *a, const struct units_duration *b)
{
	if (a->workdays != 0 && b->workdays != 0)
		return a->workdays < b->workdays;
	if (a->workdays == 0 && b->workdays == 0)
		return a->seconds < b->seconds;
	if (a->workdays != 0)
		return (uint64_t)a->workdays * 86400 < b->seconds;
	return a->seconds <= (uint64_t)b->workdays * 86400;
}

static void
s_parse_deadlines(struct s_ctx *x)
{
	static const char *const names[] = {"id", "description", "from", "to",
	    "within", "urgent_within", "source"};
	const struct s_vec *vec = &x->sec[S_DEADLINES];
	struct conf_deadline *arr;
	size_t k = 0;

	arr = s_section_array(x, S_DEADLINES, sizeof(*arr));
	if (arr == NULL)
		return;
	for (size_t i = 0; i < vec->len; i++) {
		const struct ynode *n = vec->v[i].node, *v[S_NELEM(names)];
		struct conf_deadline *dl = &arr[k];
		char what[128];

		dl->id = s_item(x, n, "a deadline", "deadline", S_ID_SLUG,
		    names, S_NELEM(names), v, what, sizeof what);
		if (dl->id == NULL)
			continue;
		dl->mark = n->mark;
		if (v[1] != NULL)
			dl->description = s_text(x, v[1], "a description");
		if (s_need(x, n, v[2], "from", what) &&
		    s_some_types(x, v[2], "from", what))
			dl->from = s_type_list(x, v[2], &dl->nfrom);
		if (s_need(x, n, v[3], "to", what) &&
		    s_some_types(x, v[3], "to", what))
			dl->to = s_type_list(x, v[3], &dl->nto);
		if (s_need(x, n, v[4], "within", what))
			s_duration(x, v[4], true, "within", &dl->within);
		if (v[5] != NULL &&
		    s_duration(
			x, v[5], true, "urgent_within", &dl->urgent_within) &&
		    (dl->within.seconds || dl->within.workdays) &&
		    !s_shorter(&dl->urgent_within, &dl->within))
			s_err(x, &v[5]->mark,
			    "urgent_within '%s' must be shorter "
			    "than within '%s'",
			    v[5]->str, v[4]->str);
		if (v[6] != NULL)
			dl->source = s_text(x, v[6], "a source");
		for (size_t a = 0; a < dl->nfrom; a++)
			for (size_t b = 0; b < dl->nto; b++)
				if (dl->from[a] == dl->to[b])
					s_err(x, &v[3]->mark,
					    "message type '%s' is both the start "
					    "and the end of %s",
					    dl->to[b]->id, what);
		if (!s_register(x, &x->c->index->deadlines, dl->id, dl,
			offsetof(struct conf_deadline, mark), &v[0]->mark,
			"deadline"))
			continue;
		k++;
	}
	x->c->deadlines = arr;
	x->c->ndeadlines = k;
}

/* ------------------------------------------------------------------ */
/* agreements                                                         */

static int
s_party_cmp(const void *a, const void *b)
{
	const struct conf_party *x = *(const struct conf_party *const *)a;
	const struct conf_party *y = *(const struct conf_party *const *)b;

	return (x->index > y->index) - (x->index < y->index);
}

/* Reads a flow's `from` or `to`: exactly one of party or role. */
static bool
s_selector(struct s_ctx *x, const struct ynode *n, const char *side,
    const struct conf_agreement *ag, struct conf_selector *out)
{
	static const char *const names[] = {"party", "role"};
	const struct ynode *v[2];
	char what[64];

	snprintf(what, sizeof what, "a flow's '%s'", side);
	if (!s_fields(x, n, what, names, 2, v))
		return false;
	if ((v[0] == NULL) == (v[1] == NULL)) {
		s_err(x, &n->mark, "%s needs exactly one of 'party' or 'role'",
		    what);
		return false;
	}
	if (v[0] != NULL) {
		out->kind = CONF_SEL_PARTY;
		out->party = s_ref(x, &x->c->index->parties, v[0], "party");
		if (out->party == NULL)
			return false;
		if (!conf_agreement_binds(ag, out->party)) {
			s_err(x, &v[0]->mark,
			    "party '%s' is not bound by agreement '%s'; add it "
			    "to the agreement's parties",
			    out->party->id, ag->id);
			return false;
		}
		return true;
	}
	out->kind = CONF_SEL_ROLE;
	out->role = s_ref(x, &x->c->index->roles, v[1], "role");
	if (out->role == NULL)
		return false;
	for (size_t i = 0; i < ag->nparties; i++)
		if (ag->parties[i]->role == out->role)
			return true;
	s_err(x, &v[1]->mark,
	    "no party bound by agreement '%s' has role '%s', so this flow "
	    "can never apply",
	    ag->id, out->role->id);
	return false;
}

static void
s_parse_flows(struct s_ctx *x, struct conf_agreement *ag, const struct ynode *n)
{
	static const char *const names[] = {"from", "to", "types"};
	struct conf_flow *arr;
	size_t total, k = 0;

	if (n->kind != YNODE_SEQ || n->n == 0) {
		s_err(
		    x, &n->mark, "'flows' must be a list of at least one flow");
		return;
	}
	total = n->n;
	arr = arena_calloc(x->a, total, sizeof(*arr));
	if (arr == NULL) {
		s_oom(x);
		return;
	}
	for (size_t i = 0; i < total; i++) {
		const struct ynode *f = n->items[i], *v[3];
		struct conf_flow *fl = &arr[k];
		bool ok = true;

		if (!s_fields(x, f, "a flow", names, 3, v))
			continue;
		fl->mark = f->mark;
		fl->agreement = ag;
		ok = s_need(x, f, v[0], "from", "a flow") &&
		    s_selector(x, v[0], "from", ag, &fl->from);
		ok = s_need(x, f, v[1], "to", "a flow") &&
		    s_selector(x, v[1], "to", ag, &fl->to) && ok;
		if (s_need(x, f, v[2], "types", "a flow") &&
		    s_some_types(x, v[2], "types", "a flow"))
			fl->types = s_type_list(x, v[2], &fl->ntypes);
		if (ok && fl->ntypes > 0)
			k++;
	}
	ag->flows = arr;
	ag->nflows = k;
}

static void
s_parse_agreements(struct s_ctx *x)
{
	static const char *const names[] = {"id", "description", "parties",
	    "purpose", "legal_basis", "valid_from", "valid_until",
	    "retention_days", "consent_required", "flows"};
	const struct s_vec *vec = &x->sec[S_AGREEMENTS];
	struct conf_index *ix = x->c->index;
	struct conf_agreement *arr;
	size_t k = 0;

	arr = s_section_array(x, S_AGREEMENTS, sizeof(*arr));
	if (arr == NULL)
		return;
	for (size_t i = 0; i < vec->len; i++) {
		const struct ynode *n = vec->v[i].node, *v[S_NELEM(names)];
		struct conf_agreement *ag = &arr[k];
		char what[128];

		ag->id = s_item(x, n, "an agreement", "agreement", S_ID_SLUG,
		    names, S_NELEM(names), v, what, sizeof what);
		if (ag->id == NULL)
			continue;
		ag->mark = n->mark;
		ag->index = (uint32_t)k;
		ag->valid_until = CONF_NO_END;
		if (v[1] != NULL)
			ag->description = s_text(x, v[1], "a description");
		if (s_need(x, n, v[2], "parties", what)) {
			size_t np = s_count(v[2]), kp = 0;
			const struct conf_party **ps =
			    s_party_list(x, v[2], &kp);
			if (ps == NULL)
				return;
			if (np < 2)
				s_err(x, &v[2]->mark,
				    "an agreement binds at least two parties");
			qsort(ps, kp, sizeof(*ps), s_party_cmp);
			ag->parties = ps;
			ag->nparties = kp;
		}
		if (s_need(x, n, v[3], "purpose", what))
			ag->purpose = s_text(x, v[3], "a purpose");
		if (s_need(x, n, v[4], "legal_basis", what))
			ag->legal_basis = s_text(x, v[4], "a legal basis");
		if (s_need(x, n, v[5], "valid_from", what))
			s_date(x, v[5], "valid_from date", &ag->valid_from);
		if (v[6] != NULL &&
		    s_date(x, v[6], "valid_until date", &ag->valid_until) &&
		    v[5] != NULL && ag->valid_until < ag->valid_from)
			s_err(x, &v[6]->mark,
			    "valid_until %s is before valid_from %s", v[6]->str,
			    v[5]->str);
		if (s_need(x, n, v[7], "retention_days", what))
			s_days(x, v[7], "retention_days", &ag->retention_days);
		ag->consent_required =
		    s_bool(x, v[8], "consent_required", false);
		if (!s_register(x, &ix->agreements, ag->id, ag,
			offsetof(struct conf_agreement, mark), &v[0]->mark,
			"agreement"))
			continue;
		if (s_need(x, n, v[9], "flows", what))
			s_parse_flows(x, ag, v[9]);
		x->c->nflows += ag->nflows;
		k++;
	}
	x->c->agreements = arr;
	x->c->nagreements = k;
}

/* ------------------------------------------------------------------ */
/* routes                                                             */

static bool
s_pattern(struct s_ctx *x, const struct ynode *n, struct conf_type_pattern *p)
{
	const char *s = s_scalar(x, n, "a message type pattern");
	size_t len;
	char hint[96];

	if (s == NULL)
		return false;
	p->text = arena_strdup(x->a, s);
	len = strlen(s);
	if (strcmp(s, "*") == 0) {
		p->any = true;
		return true;
	}
	if (len > 2 && strcmp(s + len - 2, ".*") == 0) {
		p->prefix = arena_strndup(x->a, s, len - 1);
		for (size_t i = 0; i < x->c->ntypes; i++)
			if (conf_pattern_matches(p, &x->c->types[i]))
				return true;
		s_err(x, &n->mark,
		    "pattern '%s' matches no declared message type", s);
		return false;
	}
	if (strchr(s, '*') != NULL) {
		s_err(x, &n->mark,
		    "invalid pattern '%s': '*' may only stand alone or end a "
		    "prefix, as in 'shv.wsnp.*'",
		    s);
		return false;
	}
	p->exact = idmap_get(&x->c->index->types, s, len);
	if (p->exact == NULL) {
		s_suggest_from(&x->c->index->types, s, hint, sizeof hint);
		s_err(x, &n->mark, "unknown message type '%s'%s", s, hint);
		return false;
	}
	return true;
}

static bool
s_target(struct s_ctx *x, const struct ynode *n, struct conf_target *t)
{
	static const char *const names[] = {
	    "party", "role_in_region", "case_participants", "one_of"};
	const struct ynode *v[4];
	int which = -1;

	if (!s_fields(x, n, "a route target", names, 4, v))
		return false;
	for (int i = 0; i < 4; i++) {
		if (v[i] == NULL)
			continue;
		if (which >= 0) {
			s_err(x, &n->mark,
			    "a route target is exactly one of 'party', "
			    "'role_in_region', 'case_participants' or 'one_of'");
			return false;
		}
		which = i;
	}
	if (which < 0) {
		s_err(x, &n->mark,
		    "a route target needs one of 'party', 'role_in_region', "
		    "'case_participants' or 'one_of'");
		return false;
	}
	t->mark = n->mark;
	switch (which) {
	case 0:
		t->kind = CONF_TARGET_PARTY;
		t->party = s_ref(x, &x->c->index->parties, v[0], "party");
		return t->party != NULL;
	case 1:
	case 2:
		t->kind = which == 1 ? CONF_TARGET_ROLE_IN_REGION
				     : CONF_TARGET_CASE_PARTICIPANTS;
		t->role = s_ref(x, &x->c->index->roles, v[which], "role");
		return t->role != NULL;
	default:
		t->kind = CONF_TARGET_ONE_OF;
		if (v[3]->kind != YNODE_SEQ || v[3]->n < 2) {
			s_err(x, &v[3]->mark,
			    "'one_of' needs a list of at least two parties");
			return false;
		}
		t->members = s_party_list(x, v[3], &t->nmembers);
		return t->nmembers == v[3]->n;
	}
}

static const struct conf_target *
s_targets(
    struct s_ctx *x, const struct ynode *n, const char *key, size_t *count)
{
	struct conf_target *arr;
	size_t k = 0;

	*count = 0;
	if (n->kind != YNODE_SEQ || n->n == 0) {
		s_err(x, &n->mark, "'%s' must be a list of at least one target",
		    key);
		return NULL;
	}
	arr = arena_calloc(x->a, n->n, sizeof(*arr));
	if (arr == NULL) {
		s_oom(x);
		return NULL;
	}
	for (size_t i = 0; i < n->n; i++)
		if (s_target(x, n->items[i], &arr[k]))
			k++;
	*count = k;
	return arr;
}

static void
s_route_match(struct s_ctx *x, struct conf_route *r, const struct ynode *n)
{
	static const char *const names[] = {
	    "type", "sender", "sender_role", "region", "urgent"};
	const struct ynode *v[S_NELEM(names)];

	if (!s_fields(x, n, "a route's match", names, S_NELEM(names), v))
		return;
	/* An empty list would match any, as if the key were left out:
	 * likely not what was meant (matching none, say). */
	for (size_t i = 0; i < 4; i++) {
		if (v[i] != NULL && v[i]->kind == YNODE_SEQ && v[i]->n == 0) {
			s_err(x, &v[i]->mark,
			    "'%s' of a route's match is an empty list, which "
			    "would match any; leave the key out to match "
			    "any, or name at least one",
			    names[i]);
			v[i] = NULL;
		}
	}
	if (v[0] != NULL) {
		size_t total = s_count(v[0]), k = 0;
		struct conf_type_pattern *p =
		    arena_calloc(x->a, total, sizeof(*p));
		if (p == NULL) {
			s_oom(x);
			return;
		}
		for (size_t i = 0; i < total; i++)
			if (s_pattern(x, s_nth(v[0], i), &p[k]))
				k++;
		r->types = p;
		r->ntypes = k;
	}
	if (v[1] != NULL)
		r->senders = s_party_list(x, v[1], &r->nsenders);
	if (v[2] != NULL)
		r->sender_roles =
		    (const struct conf_role *const *)(const void *)s_ref_list(x,
			&x->c->index->roles, v[2], "role", &r->nsender_roles);
	if (v[3] != NULL)
		r->regions = s_regions(x, v[3], &r->nregions);
	if (v[4] != NULL)
		r->urgent = s_bool(x, v[4], "urgent", false) ? 1 : 0;
}

static void
s_parse_routes(struct s_ctx *x)
{
	static const char *const names[] = {
	    "id", "description", "match", "to", "fallback"};
	const struct s_vec *vec = &x->sec[S_ROUTES];
	struct conf_route *arr;
	size_t k = 0;

	arr = s_section_array(x, S_ROUTES, sizeof(*arr));
	if (arr == NULL)
		return;
	for (size_t i = 0; i < vec->len; i++) {
		const struct ynode *n = vec->v[i].node, *v[S_NELEM(names)];
		struct conf_route *r = &arr[k];
		char what[128];

		r->id = s_item(x, n, "a route", "route", S_ID_SLUG, names,
		    S_NELEM(names), v, what, sizeof what);
		if (r->id == NULL)
			continue;
		r->mark = n->mark;
		r->index = (uint32_t)k;
		r->urgent = -1;
		if (v[1] != NULL)
			r->description = s_text(x, v[1], "a description");
		if (v[2] != NULL)
			s_route_match(x, r, v[2]);
		if (s_need(x, n, v[3], "to", what))
			r->to = s_targets(x, v[3], "to", &r->nto);
		if (v[4] != NULL)
			r->fallback =
			    s_targets(x, v[4], "fallback", &r->nfallback);
		if (!s_register(x, &x->c->index->routes, r->id, r,
			offsetof(struct conf_route, mark), &v[0]->mark,
			"route"))
			continue;
		k++;
	}
	x->c->routes = arr;
	x->c->nroutes = k;
}

/* ------------------------------------------------------------------ */

struct conf *
conf_load(const char *path, int32_t today, struct diags *d)
{
	struct s_ctx x = {.d = d, .today = today};
	struct conf *c = calloc(1, sizeof(*c));
	size_t nerr = diags_count(d, DIAG_ERROR);
	size_t count;

	x.top.file = path;
	x.a = arena_new();
	x.tree = arena_new();
	if (c != NULL) {
		c->arena = x.a;
		c->index = calloc(1, sizeof(*c->index));
	}
	if (c == NULL || x.a == NULL || x.tree == NULL || c->index == NULL) {
		s_oom(&x);
		goto fail;
	}
	c->path = arena_strdup(x.a, path);
	x.c = c;
	s_load_file(&x, path, &x.top);
	c->nfiles = x.nfiles;
	if (x.nfiles == 0 || x.incomplete)
		goto fail; /* reported; checking the rest would mislead */
	s_parse_broker(&x);
	c->roles = s_parse_named(&x, S_ROLES, &c->index->roles,
	    sizeof(struct conf_role), "a role", "role", &count);
	c->nroles = count;
	c->stages = s_parse_named(&x, S_STAGES, &c->index->stages,
	    sizeof(struct conf_stage), "a stage", "stage", &count);
	c->nstages = count;
	s_parse_parties(&x);
	s_parse_types(&x);
	s_parse_holidays(&x);
	s_parse_deadlines(&x);
	s_parse_agreements(&x);
	s_parse_routes(&x);
	/* Cross-checks assume every reference resolved. */
	if (diags_count(d, DIAG_ERROR) == nerr) {
		if (conf_index_flows(c) != 0)
			s_oom(&x);
		else
			conf_check(c, today, d);
	}
	if (diags_count(d, DIAG_ERROR) != nerr)
		goto fail;
	for (int s = 0; s < S_NSECTIONS; s++)
		free(x.sec[s].v);
	idmap_free(&x.files);
	arena_destroy(&x.tree);
	return c;
fail:
	for (int s = 0; s < S_NSECTIONS; s++)
		free(x.sec[s].v);
	idmap_free(&x.files);
	arena_destroy(&x.tree);
	if (c != NULL)
		conf_destroy(&c); /* frees x.a with it */
	else
		arena_destroy(&x.a);
	return NULL;
}

void
conf_destroy(struct conf **cp)
{
	if (cp == NULL || *cp == NULL)
		return;
	conf_index_destroy(&(*cp)->index);
	arena_destroy(&(*cp)->arena);
	free(*cp);
	*cp = NULL;
}
