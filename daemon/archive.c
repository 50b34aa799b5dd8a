/*
 * archive: the audit log's older part, in files.  A round writes the
 * oldest records of the store (from its anchor on, older than a cutoff)
 * to one file, audit-<first record's sequence, 20 digits>.log, a record
 * a line, exactly as stored; the caller then removes them from the
 * store with store_audit_prune.  The file is written under a temporary
 * name, flushed and renamed, and the folder flushed, before the store
 * lets go of a record: a crash in between leaves the records in both,
 * and the next round writes the same file again (same first record,
 * same name).  Reading walks the files in sequence order.
 */
#include "archive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "fsdir.h"
#include "text.h"

#define S_PREFIX "audit-"
#define S_SUFFIX ".log"
#define S_DIGITS 20

struct s_round {
	struct archive_round *r;
	uint64_t cutoff_ms, now_ms;
	size_t max;
	FILE *f;
	const atomic_bool *cancel;
	bool write_failed;
};

static int
s_take(void *arg, uint64_t seq, const uint8_t *rec, size_t len)
{
	struct s_round *w = arg;
	struct audit_event ev;
	uint8_t prev[AUDIT_HASH_LEN];

	if (w->r->n == w->max) {
		w->r->more = true;
		return 1;
	}
	if (atomic_load_explicit(w->cancel, memory_order_relaxed))
		return 1;
	/* A record that does not decode is kept: verify will name it. */
	if (audit_decode((const char *)rec, len, &ev, prev) != 0) {
		w->r->undecodable = seq;
		return 1;
	}
	/* Records are in the order they were written, their times as the
	 * clock said then: one dated ahead of now (a clock that was wrong
	 * for a while) goes with its neighbours instead of holding up
	 * every round until its time comes. */
	if (ev.time_ms >= w->cutoff_ms && ev.time_ms <= w->now_ms)
		return 1;
	if (w->r->n == 0)
		w->r->first = seq;
	if (fwrite(rec, 1, len, w->f) != len || fputc('\n', w->f) == EOF) {
		w->write_failed = true;
		return 1;
	}
	w->r->last = seq;
	w->r->n++;
	audit_hash((const char *)rec, len, w->r->last_hash);
	return 0;
}

const char *
archive_name(const char *dir, uint64_t first, char *out, size_t len)
{
	snprintf(out, len, "%s/" S_PREFIX "%0*llu" S_SUFFIX, dir, S_DIGITS,
	    (unsigned long long)first);
	return out;
}

int
archive_write(struct store *s, const char *dir, uint64_t cutoff_ms,
    uint64_t now_ms, size_t max, const atomic_bool *cancel,
    struct archive_round *r)
{
	struct s_round w = {.r = r,
	    .cutoff_ms = cutoff_ms,
	    .now_ms = now_ms,
	    .max = max,
	    .cancel = cancel};
	char tmp[4200];
	uint8_t head[STORE_HASH_LEN];
	uint64_t anchor;
	int fd, rc;

	memset(r, 0, sizeof *r);
	if (store_audit_anchor(s, &anchor, head) != STORE_OK) {
		snprintf(r->err, sizeof r->err, "%s", store_error(s));
		return -1;
	}
	if (mkdir(dir, 0750) == 0) {
		/* A new folder is kept only once its parent is flushed. */
		if (fsdir_sync_parent(dir) != 0) {
			snprintf(r->err, sizeof r->err,
			    "cannot flush the folder of %.400s: %s", dir,
			    strerror(errno));
			return -1;
		}
	} else if (errno != EEXIST) {
		snprintf(r->err, sizeof r->err, "cannot create %.400s: %s", dir,
		    strerror(errno));
		return -1;
	}
	snprintf(tmp, sizeof tmp, "%s/.%s%llu.tmp", dir, S_PREFIX,
	    (unsigned long long)anchor + 1);
	/* A temporary file left by a round that did not finish is
	 * written again. */
	fd = open(
	    tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0 || (w.f = fdopen(fd, "w")) == NULL) {
		snprintf(r->err, sizeof r->err, "cannot write %.400s: %s", tmp,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	rc = store_audit_each(s, anchor, s_take, &w, head);
	if (rc != STORE_OK)
		snprintf(r->err, sizeof r->err, "%s", store_error(s));
	else if (atomic_load(cancel))
		snprintf(r->err, sizeof r->err, "the broker is stopping");
	if (rc == STORE_OK && !atomic_load(cancel) &&
	    (w.write_failed || fflush(w.f) != 0 || fsync(fileno(w.f)) != 0)) {
		snprintf(r->err, sizeof r->err, "cannot write %.400s: %s", tmp,
		    strerror(errno));
		rc = -1;
	}
	if (fclose(w.f) != 0 && r->err[0] == '\0') {
		snprintf(r->err, sizeof r->err, "cannot write %.400s: %s", tmp,
		    strerror(errno));
		rc = -1;
	}
	if (r->err[0] != '\0' || r->n == 0) {
		(void)unlink(tmp);
		r->n = 0;
		return r->err[0] != '\0' ? -1 : 0;
	}
	(void)archive_name(dir, r->first, r->file, sizeof r->file);
	if (rename(tmp, r->file) != 0) {
		snprintf(r->err, sizeof r->err, "cannot write %.400s: %s",
		    r->file, strerror(errno));
		(void)unlink(tmp);
		r->n = 0;
		return -1;
	}
	if (fsdir_sync(dir) != 0) {
		snprintf(r->err, sizeof r->err,
		    "cannot flush the folder %.400s: %s", dir, strerror(errno));
		r->n = 0;
		return -1;
	}
	return 0;
}

/* The sequence in an archive file's name, or 0 when it is not one. */
static uint64_t
s_seq_of(const char *name)
{
	size_t pl = strlen(S_PREFIX), sl = strlen(S_SUFFIX);
	uint64_t v = 0;

	if (strlen(name) != pl + S_DIGITS + sl ||
	    strncmp(name, S_PREFIX, pl) != 0 ||
	    strcmp(name + pl + S_DIGITS, S_SUFFIX) != 0)
		return 0;
	for (size_t i = pl; i < pl + S_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9' || v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	return v;
}

static int
s_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Reads one file's records, a line each; returns how many, or -1. */
static int64_t
s_each_line(const char *path, uint64_t seq, archive_each_fn fn, void *arg,
    bool *stopped, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int64_t n = 0;

	if (f == NULL) {
		snprintf(
		    err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	while (!*stopped && (len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] != '\n') {
			snprintf(err, errlen,
			    "%s: the last record is cut short (no end of line)",
			    path);
			n = -1;
			break;
		}
		/* A record fn stops at is not counted as read. */
		if (fn(arg, seq + (uint64_t)n, (const uint8_t *)line,
			(size_t)len - 1) != 0)
			*stopped = true;
		else
			n++;
	}
	if (n >= 0 && ferror(f)) {
		snprintf(
		    err, errlen, "cannot read %s: %s", path, strerror(errno));
		n = -1;
	}
	free(line);
	fclose(f);
	return n;
}

int
archive_each(const char *dir, archive_each_fn fn, void *arg,
    struct archive_span *span, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t *seqs = NULL;
	size_t n = 0, cap = 0;
	bool stopped = false;
	int rc = 0;

	memset(span, 0, sizeof *span);
	if (d == NULL) {
		if (errno == ENOENT)
			return 0; /* nothing archived yet */
		snprintf(
		    err, errlen, "cannot read %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		uint64_t seq = s_seq_of(e->d_name);
		if (seq == 0)
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 64;
			uint64_t *ns = realloc(seqs, nc * sizeof *ns);
			if (ns == NULL) {
				snprintf(err, errlen, "out of memory");
				rc = -1;
				break;
			}
			seqs = ns;
			cap = nc;
		}
		seqs[n++] = seq;
	}
	closedir(d);
	if (rc == 0 && n > 0)
		qsort(seqs, n, sizeof *seqs, s_cmp_u64);
	for (size_t i = 0; rc == 0 && i < n && !stopped; i++) {
		char path[4200];
		int64_t got;

		if (span->files > 0 && seqs[i] != span->last + 1) {
			snprintf(err, errlen,
			    "%s holds records from %llu on, but the file "
			    "before it ends at %llu: a file is missing or "
			    "was changed",
			    archive_name(dir, seqs[i], path, sizeof path),
			    (unsigned long long)seqs[i],
			    (unsigned long long)span->last);
			rc = -1;
			break;
		}
		(void)archive_name(dir, seqs[i], path, sizeof path);
		got =
		    s_each_line(path, seqs[i], fn, arg, &stopped, err, errlen);
		if (got < 0) {
			rc = -1;
			break;
		}
		if (got == 0)
			continue;
		if (span->files == 0)
			span->first = seqs[i];
		span->files++;
		span->records += (uint64_t)got;
		span->last = seqs[i] + (uint64_t)got - 1;
	}
	free(seqs);
	return rc;
}
