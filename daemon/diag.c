/*
 * diag: collects configuration problems and prints them sorted by place.
 * It never stops at the first problem: the administrator sees them all.
 */
#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct diags {
	struct diag *items;
	size_t len;
	size_t cap;
	size_t counts[2];
	bool sorted;
	bool oom;
};

struct diags *
diags_new(void)
{
	return calloc(1, sizeof(struct diags));
}

void
diags_destroy(struct diags **dp)
{
	if (dp == NULL || *dp == NULL)
		return;
	for (size_t i = 0; i < (*dp)->len; i++) {
		free((*dp)->items[i].msg);
		free((char *)(*dp)->items[i].mark.file);
	}
	free((*dp)->items);
	free(*dp);
	*dp = NULL;
}

void
diags_add(struct diags *d, enum diag_severity sev, const struct diag_mark *mark,
    const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	struct diag *x;

	d->counts[sev]++;
	if (d->len == DIAGS_MAX)
		return;
	if (d->len == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct diag *n = realloc(d->items, cap * sizeof(*n));
		if (n == NULL) {
			d->oom = true;
			return;
		}
		d->items = n;
		d->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	x = &d->items[d->len];
	x->msg = strdup(buf);
	x->mark = *mark;
	/* Copied: the file name may live in a configuration that is freed
	 * because of these very problems. */
	x->mark.file = strdup(mark->file != NULL ? mark->file : "?");
	if (x->msg == NULL || x->mark.file == NULL) {
		free(x->msg);
		free((char *)x->mark.file);
		d->oom = true;
		return;
	}
	x->severity = sev;
	d->len++;
	d->sorted = false;
}

size_t
diags_count(const struct diags *d, enum diag_severity sev)
{
	return d->counts[sev];
}

/* Orders by file, line, column. */
static int
s_cmp(const struct diag *x, const struct diag *y)
{
	if (x->mark.seq != y->mark.seq)
		return x->mark.seq < y->mark.seq ? -1 : 1;
	if (x->mark.line != y->mark.line)
		return x->mark.line < y->mark.line ? -1 : 1;
	if (x->mark.col != y->mark.col)
		return x->mark.col < y->mark.col ? -1 : 1;
	return 0;
}

/* A stable insertion sort: problems at one place keep the order they
 * were found in.  At most DIAGS_MAX entries, so quadratic is fine. */
static void
s_sort(struct diags *d)
{
	if (d->sorted)
		return;
	for (size_t i = 1; i < d->len; i++) {
		struct diag key = d->items[i];
		size_t j = i;
		while (j > 0 && s_cmp(&d->items[j - 1], &key) > 0) {
			d->items[j] = d->items[j - 1];
			j--;
		}
		d->items[j] = key;
	}
	d->sorted = true;
}

size_t
diags_len(struct diags *d)
{
	return d->len;
}

const struct diag *
diags_at(struct diags *d, size_t i)
{
	s_sort(d);
	return i < d->len ? &d->items[i] : NULL;
}

void
diags_print(struct diags *d, FILE *out)
{
	size_t total = d->counts[0] + d->counts[1];

	s_sort(d);
	for (size_t i = 0; i < d->len; i++) {
		const struct diag *x = &d->items[i];
		const char *sev =
		    x->severity == DIAG_ERROR ? "error" : "warning";
		if (x->mark.line == 0)
			fprintf(out, "%s: %s: %s\n", x->mark.file, sev, x->msg);
		else
			fprintf(out, "%s:%u:%u: %s: %s\n", x->mark.file,
			    x->mark.line, x->mark.col, sev, x->msg);
	}
	if (total > d->len)
		fprintf(out, "... and %zu more problems not shown\n",
		    total - d->len);
	if (d->oom)
		fprintf(out, "(out of memory: some problems were not kept)\n");
}

/* Levenshtein distance, bounded: returns a value > limit early. */
static size_t
s_distance(const char *a, const char *b, size_t limit)
{
	size_t la = strlen(a), lb = strlen(b), row[65], prev, tmp;

	if (la > 64 || lb > 64)
		return limit + 1;
	if ((la > lb ? la - lb : lb - la) > limit)
		return limit + 1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t best = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			tmp = row[j];
			row[j] = best;
			prev = tmp;
		}
	}
	return row[lb];
}

void
diags_suggest(
    const char *word, const char *const *names, size_t n, char *out, size_t len)
{
	size_t wlen = strlen(word), limit = wlen < 4 ? 1 : wlen < 9 ? 2 : 3;
	size_t best = limit + 1;
	const char *pick = NULL;

	for (size_t i = 0; i < n; i++) {
		size_t dist = s_distance(word, names[i], limit);
		if (dist < best) {
			best = dist;
			pick = names[i];
		}
	}
	if (pick != NULL)
		snprintf(out, len, "; did you mean '%s'?", pick);
	else if (len > 0)
		out[0] = '\0';
}
