/*
 * ytree: turns libyaml's event stream into a tree with positions.  It
 * knows nothing of schakel's schema; it only refuses YAML features that
 * would make a configuration mean something other than it shows.
 */
#include "ytree.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* A growable list of nodes or pairs while a collection is open. */
struct s_frame {
	struct ynode *node;
	void **items;
	size_t len;
	size_t cap;
	bool expect_value; /* MAP: the next node is a value */
	const struct ynode *key;
};

struct s_loader {
	struct arena *arena;
	struct diags *d;
	const char *file;
	uint32_t seq;
	struct s_frame stack[YTREE_MAX_DEPTH + 1];
	int depth;
	const struct ynode *root;
	int docs;
	bool failed;
};

static struct diag_mark
s_mark(const struct s_loader *l, const yaml_mark_t *m)
{
	struct diag_mark mk = {.file = l->file,
	    .seq = l->seq,
	    .line = (uint32_t)m->line + 1,
	    .col = (uint32_t)m->column + 1};
	return mk;
}

/* Appends a pointer to the open frame; the frame's list lives in
 * malloc'd memory until the collection closes. */
static int
s_push_item(struct s_loader *l, struct s_frame *f, void *item)
{
	if (f->len == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		void **n = realloc(f->items, cap * sizeof(*n));
		if (n == NULL)
			return -1;
		f->items = n;
		f->cap = cap;
	}
	f->items[f->len++] = item;
	return 0;
}

/* Attaches a finished node to its parent (or makes it the root). */
static int
s_attach(struct s_loader *l, const struct ynode *n)
{
	struct s_frame *f;

	if (l->depth == 0) {
		l->root = n;
		return 0;
	}
	f = &l->stack[l->depth - 1];
	if (f->node->kind == YNODE_SEQ)
		return s_push_item(l, f, (void *)n);
	if (!f->expect_value) {
		if (n->kind != YNODE_SCALAR) {
			diags_add(l->d, DIAG_ERROR, &n->mark,
			    "a mapping key must be plain text");
			return -1;
		}
		for (size_t i = 0; i < f->len; i += 2) {
			const struct ynode *k = f->items[i];
			if (k->len == n->len &&
			    memcmp(k->str, n->str, n->len) == 0) {
				diags_add(l->d, DIAG_ERROR, &n->mark,
				    "key '%s' appears twice in this mapping "
				    "(first at line %u)",
				    n->str, k->mark.line);
				return -1;
			}
		}
		f->expect_value = true;
		return s_push_item(l, f, (void *)n);
	}
	f->expect_value = false;
	return s_push_item(l, f, (void *)n);
}

static int
s_open(struct s_loader *l, enum ynode_kind kind, const yaml_mark_t *m)
{
	struct ynode *n;

	if (l->depth == YTREE_MAX_DEPTH) {
		struct diag_mark mk = s_mark(l, m);
		diags_add(l->d, DIAG_ERROR, &mk,
		    "nested more than %d levels deep", YTREE_MAX_DEPTH);
		return -1;
	}
	n = arena_alloc(l->arena, sizeof(*n));
	if (n == NULL)
		return -1;
	n->kind = kind;
	n->mark = s_mark(l, m);
	memset(&l->stack[l->depth], 0, sizeof(l->stack[0]));
	l->stack[l->depth].node = n;
	l->depth++;
	return 0;
}

static int
s_close(struct s_loader *l)
{
	struct s_frame *f = &l->stack[--l->depth];
	struct ynode *n = f->node;
	int rc = 0;

	if (n->kind == YNODE_SEQ) {
		n->n = f->len;
		n->items = arena_calloc(
		    l->arena, f->len ? f->len : 1, sizeof(*n->items));
		if (n->items == NULL)
			rc = -1;
		else if (f->len > 0) /* an empty list has no f->items */
			memcpy(n->items, f->items, f->len * sizeof(void *));
	} else {
		struct ypair *p = arena_calloc(
		    l->arena, f->len / 2 ? f->len / 2 : 1, sizeof(*p));
		n->n = f->len / 2;
		if (p == NULL)
			rc = -1;
		for (size_t i = 0; p != NULL && i < n->n; i++) {
			p[i].key = f->items[2 * i];
			p[i].value = f->items[2 * i + 1];
		}
		n->pairs = p;
	}
	free(f->items);
	f->items = NULL;
	if (rc != 0)
		return rc;
	return s_attach(l, n);
}

static int
s_scalar(struct s_loader *l, const yaml_event_t *ev)
{
	struct ynode *n;
	struct diag_mark mk = s_mark(l, &ev->start_mark);

	if (ev->data.scalar.length > YTREE_MAX_SCALAR) {
		diags_add(l->d, DIAG_ERROR, &mk, "text longer than %u bytes",
		    YTREE_MAX_SCALAR);
		return -1;
	}
	if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length)) {
		diags_add(l->d, DIAG_ERROR, &mk, "text contains a NUL byte");
		return -1;
	}
	n = arena_alloc(l->arena, sizeof(*n));
	if (n == NULL)
		return -1;
	n->kind = YNODE_SCALAR;
	n->mark = mk;
	n->str = arena_strndup(l->arena, (const char *)ev->data.scalar.value,
	    ev->data.scalar.length);
	if (n->str == NULL)
		return -1;
	n->len = ev->data.scalar.length;
	n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	return s_attach(l, n);
}

/* Refuses anchors and tags on a node event. */
static int
s_plain_node(struct s_loader *l, const yaml_event_t *ev,
    const yaml_char_t *anchor, const yaml_char_t *tag, int implicit)
{
	struct diag_mark mk = s_mark(l, &ev->start_mark);

	if (anchor != NULL) {
		diags_add(l->d, DIAG_ERROR, &mk,
		    "anchors (&%s) are not supported; write the value out",
		    (const char *)anchor);
		return -1;
	}
	if (tag != NULL && !implicit) {
		diags_add(l->d, DIAG_ERROR, &mk,
		    "tags (%s) are not supported; remove the tag",
		    (const char *)tag);
		return -1;
	}
	return 0;
}

static int
s_event(struct s_loader *l, const yaml_event_t *ev)
{
	struct diag_mark mk = s_mark(l, &ev->start_mark);

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++l->docs > 1) {
			diags_add(l->d, DIAG_ERROR, &mk,
			    "a configuration file holds one YAML document; "
			    "remove the second '---'");
			return -1;
		}
		return 0;
	case YAML_ALIAS_EVENT:
		diags_add(l->d, DIAG_ERROR, &mk,
		    "aliases (*%s) are not supported; write the value out",
		    (const char *)ev->data.alias.anchor);
		return -1;
	case YAML_SCALAR_EVENT:
		if (s_plain_node(l, ev, ev->data.scalar.anchor,
			ev->data.scalar.tag,
			ev->data.scalar.plain_implicit ||
			    ev->data.scalar.quoted_implicit) != 0)
			return -1;
		return s_scalar(l, ev);
	case YAML_SEQUENCE_START_EVENT:
		if (s_plain_node(l, ev, ev->data.sequence_start.anchor,
			ev->data.sequence_start.tag,
			ev->data.sequence_start.implicit) != 0)
			return -1;
		return s_open(l, YNODE_SEQ, &ev->start_mark);
	case YAML_MAPPING_START_EVENT:
		if (s_plain_node(l, ev, ev->data.mapping_start.anchor,
			ev->data.mapping_start.tag,
			ev->data.mapping_start.implicit) != 0)
			return -1;
		return s_open(l, YNODE_MAP, &ev->start_mark);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return s_close(l);
	default:
		return 0;
	}
}

/* Reads the whole file, bounded by YTREE_MAX_FILE. */
static unsigned char *
s_slurp(const char *path, size_t *len, const char *mark_file, uint32_t seq,
    struct diags *d)
{
	struct diag_mark mk = {.file = mark_file, .seq = seq};
	/* Not blocking: a FIFO or a device named by mistake must be
	 * refused, not waited on (a reload would hang the broker). */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	unsigned char *buf = NULL;
	size_t cap = 0, n;
	struct stat st;
	FILE *f;

	*len = 0;
	if (fd < 0) {
		diags_add(
		    d, DIAG_ERROR, &mk, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		diags_add(d, DIAG_ERROR, &mk,
		    "not a regular file; name a YAML file here");
		close(fd);
		return NULL;
	}
	f = fdopen(fd, "rb");
	if (f == NULL) {
		diags_add(
		    d, DIAG_ERROR, &mk, "cannot open: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	for (;;) {
		if (*len == cap) {
			unsigned char *nb;
			if (cap >= YTREE_MAX_FILE) {
				diags_add(d, DIAG_ERROR, &mk,
				    "file is larger than %u MiB",
				    YTREE_MAX_FILE >> 20);
				goto fail;
			}
			cap = cap ? cap * 2 : 65536;
			nb = realloc(buf, cap + 1);
			if (nb == NULL) {
				diags_add(d, DIAG_ERROR, &mk, "out of memory");
				goto fail;
			}
			buf = nb;
		}
		n = fread(buf + *len, 1, cap - *len, f);
		*len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		diags_add(
		    d, DIAG_ERROR, &mk, "cannot read: %s", strerror(errno));
		goto fail;
	}
	fclose(f);
	return buf;
fail:
	fclose(f);
	free(buf);
	return NULL;
}

const struct ynode *
ytree_load(struct arena *arena, const char *path, const char *mark_file,
    uint32_t seq, struct diags *d, bool *ok)
{
	struct s_loader l = {
	    .arena = arena, .d = d, .file = mark_file, .seq = seq};
	yaml_parser_t parser;
	yaml_event_t ev;
	unsigned char *buf;
	size_t len;
	bool done = false;

	*ok = false;
	buf = s_slurp(path, &len, mark_file, seq, d);
	if (buf == NULL)
		return NULL;
	if (!yaml_parser_initialize(&parser)) {
		free(buf);
		return NULL;
	}
	yaml_parser_set_input_string(&parser, buf, len);
	while (!done && !l.failed) {
		if (!yaml_parser_parse(&parser, &ev)) {
			struct diag_mark mk = s_mark(&l, &parser.problem_mark);
			const char *problem =
			    parser.problem ? parser.problem : "unknown problem";
			unsigned long from = parser.context_mark.line + 1;
			if (parser.context != NULL)
				diags_add(d, DIAG_ERROR, &mk,
				    "YAML syntax error: %s %s that starts at "
				    "line %lu; check the indentation and "
				    "punctuation",
				    problem, parser.context, from);
			else
				diags_add(d, DIAG_ERROR, &mk,
				    "YAML syntax error: %s", problem);
			l.failed = true;
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		if (s_event(&l, &ev) != 0)
			l.failed = true;
		yaml_event_delete(&ev);
	}
	while (l.depth > 0)
		free(l.stack[--l.depth].items);
	yaml_parser_delete(&parser);
	free(buf);
	if (l.failed)
		return NULL;
	*ok = true;
	if (l.root != NULL && ytree_is_null(l.root))
		return NULL;
	return l.root;
}

bool
ytree_is_null(const struct ynode *n)
{
	if (n == NULL)
		return true;
	if (n->kind != YNODE_SCALAR || !n->plain)
		return false;
	return n->len == 0 || strcmp(n->str, "~") == 0 ||
	    strcmp(n->str, "null") == 0 || strcmp(n->str, "Null") == 0 ||
	    strcmp(n->str, "NULL") == 0;
}

const char *
ytree_kind_name(const struct ynode *n)
{
	if (ytree_is_null(n))
		return "nothing";
	switch (n->kind) {
	case YNODE_SCALAR:
		return "a single value";
	case YNODE_SEQ:
		return "a list";
	case YNODE_MAP:
		return "a mapping";
	}
	return "?";
}
