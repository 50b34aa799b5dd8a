/* Unit tests of the audit archive's files (archive.c) against a real
 * LMDB store: what a round writes, that a round whose records were not
 * removed from the store (a crash between the two) is written again
 * under the same name, and what reading the files finds wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "audit.h"
#include "store.h"
#include "testutil.h"

#define S_T0 1700000000000ULL /* the records' times start here */

struct env {
	char dir[256], data[300], arch[300];
	struct store *s;
};

static int
setup(void **state)
{
	struct env *e = calloc(1, sizeof *e);
	struct store_opts o = {.map_size = 64u << 20, .no_sync = true};
	char err[256];

	if (e == NULL || tu_mkdtemp(e->dir, sizeof e->dir) != 0)
		return -1;
	snprintf(e->data, sizeof e->data, "%s/data", e->dir);
	snprintf(e->arch, sizeof e->arch, "%s/archive", e->dir);
	if (mkdir(e->data, 0700) != 0)
		return -1;
	o.dir = e->data;
	e->s = store_open(&o, err, sizeof err);
	if (e->s == NULL)
		return -1;
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;
	int rc;

	store_close(&e->s);
	rc = tu_rmrf(e->dir);
	free(e);
	return rc;
}

/* Appends records 1..n, record i at time S_T0 + i seconds, but record
 * `ahead` ten years later (0: none). */
static void
s_fill_ahead(struct store *s, int n, int ahead)
{
	uint8_t head[STORE_HASH_LEN] = {0};
	char rec[AUDIT_RECORD_MAX];
	struct audit_event ev;
	struct store_txn *t = NULL;

	assert_int_equal(store_begin(s, &t), STORE_OK);
	for (int i = 1; i <= n; i++) {
		uint64_t aseq;
		size_t len;

		audit_event_init(&ev, AUDIT_CONNECTED,
		    S_T0 + (uint64_t)i * 1000 +
			(i == ahead ? 3650 * 86400000ULL : 0));
		snprintf(ev.from, sizeof ev.from, "partij-%d", i);
		len = audit_encode(&ev, head, rec);
		audit_hash(rec, len, head);
		assert_int_equal(store_audit_append(
				     t, (const uint8_t *)rec, len, head, &aseq),
		    STORE_OK);
	}
	assert_int_equal(store_commit(&t), STORE_OK);
}

static void
s_fill(struct store *s, int n)
{
	s_fill_ahead(s, n, 0);
}

struct s_seen {
	uint64_t seqs[64];
	size_t n;
	struct audit_verifier v;
};

static int
s_each(void *arg, uint64_t seq, const uint8_t *rec, size_t len)
{
	struct s_seen *x = arg;

	x->seqs[x->n++] = seq;
	return audit_verify_next(&x->v, (const char *)rec, len) != 0;
}

static void
s_prune(struct store *s, const struct archive_round *r)
{
	struct store_txn *t = NULL;

	assert_int_equal(store_begin(s, &t), STORE_OK);
	assert_int_equal(store_audit_prune(t, r->last, r->last_hash), STORE_OK);
	assert_int_equal(store_commit(&t), STORE_OK);
}

static void
test_rounds(void **state)
{
	struct env *e = *state;
	struct archive_round r, again;
	struct archive_span span;
	struct s_seen seen = {0};
	atomic_bool no = false;
	char err[512], name[512];
	struct stat st;

	s_fill(e->s, 12);
	/* Records 1..10 are before the cutoff; at most 6 a round. */
	assert_int_equal(archive_write(e->s, e->arch, S_T0 + 10500,
			     S_T0 + 100000, 6, &no, &r),
	    0);
	assert_int_equal(r.n, 6);
	assert_int_equal(r.first, 1);
	assert_int_equal(r.last, 6);
	assert_true(r.more);
	assert_string_equal(
	    r.file, archive_name(e->arch, 1, name, sizeof name));
	assert_int_equal(stat(r.file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	/* Not removed from the store (a crash): the same file again. */
	assert_int_equal(archive_write(e->s, e->arch, S_T0 + 10500,
			     S_T0 + 100000, 6, &no, &again),
	    0);
	assert_int_equal(again.n, 6);
	assert_string_equal(again.file, r.file);
	assert_memory_equal(again.last_hash, r.last_hash, STORE_HASH_LEN);
	s_prune(e->s, &r);
	/* The rest before the cutoff, then nothing. */
	assert_int_equal(archive_write(e->s, e->arch, S_T0 + 10500,
			     S_T0 + 100000, 6, &no, &r),
	    0);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.first, 7);
	assert_false(r.more);
	s_prune(e->s, &r);
	assert_int_equal(archive_write(e->s, e->arch, S_T0 + 10500,
			     S_T0 + 100000, 6, &no, &r),
	    0);
	assert_int_equal(r.n, 0);

	/* Read back: ten records, one chain, no temporary file left. */
	assert_int_equal(
	    archive_each(e->arch, s_each, &seen, &span, err, sizeof err), 0);
	assert_int_equal(seen.n, 10);
	for (size_t i = 0; i < 10; i++)
		assert_int_equal(seen.seqs[i], i + 1);
	assert_int_equal(seen.v.first_bad, 0);
	assert_int_equal(span.first, 1);
	assert_int_equal(span.last, 10);
	assert_int_equal(span.files, 2);
	snprintf(name, sizeof name, "%s/.audit-7.tmp", e->arch);
	assert_int_not_equal(access(name, F_OK), 0);
}

static void
test_bad_files(void **state)
{
	struct env *e = *state;
	struct archive_round r;
	struct archive_span span;
	struct s_seen seen = {0};
	atomic_bool no = false;
	char err[512] = "", name[512];
	FILE *f;

	/* No folder: nothing archived, not an error. */
	assert_int_equal(
	    archive_each(e->arch, s_each, &seen, &span, err, sizeof err), 0);
	assert_int_equal(span.files, 0);
	/* A file cut short (no end of line after its last record). */
	s_fill(e->s, 3);
	assert_int_equal(archive_write(e->s, e->arch, S_T0 + 60000,
			     S_T0 + 100000, 10, &no, &r),
	    0);
	assert_int_equal(r.n, 3);
	assert_int_equal(truncate(r.file, 100), 0);
	assert_int_equal(
	    archive_each(e->arch, s_each, &seen, &span, err, sizeof err), -1);
	assert_non_null(strstr(err, "the last record is cut short"));
	/* A leftover temporary file is written over; files whose names
	 * are not an archive's are left alone. */
	snprintf(name, sizeof name, "%s/.audit-1.tmp", e->arch);
	f = fopen(name, "w");
	assert_non_null(f);
	fputs("half a record", f);
	fclose(f);
	tu_write(e->arch, "audit-notes.txt", "kept\n");
	assert_int_equal(archive_write(e->s, e->arch, S_T0 + 60000,
			     S_T0 + 100000, 10, &no, &r),
	    0);
	assert_int_equal(r.n, 3);
	memset(&seen, 0, sizeof seen);
	assert_int_equal(
	    archive_each(e->arch, s_each, &seen, &span, err, sizeof err), 0);
	assert_int_equal(seen.n, 3);
	assert_int_equal(seen.v.first_bad, 0);
	/* Cancelled: nothing written. */
	no = true;
	unlink(r.file);
	assert_int_equal(archive_write(e->s, e->arch, S_T0 + 60000,
			     S_T0 + 100000, 10, &no, &r),
	    -1);
	assert_int_equal(r.n, 0);
	assert_int_not_equal(access(name, F_OK), 0);
	assert_int_not_equal(access(r.file[0] ? r.file : name, F_OK), 0);
}

/* A record dated ten years ahead (a clock that was wrong for a while)
 * goes with its neighbours instead of holding up every round. */
static void
test_ahead(void **state)
{
	struct env *e = *state;
	struct archive_round r;
	atomic_bool no = false;

	s_fill_ahead(e->s, 12, 3);
	assert_int_equal(archive_write(e->s, e->arch, S_T0 + 10500,
			     S_T0 + 20000, 100, &no, &r),
	    0);
	assert_int_equal(r.n, 10);
	assert_int_equal(r.last, 10);
	assert_false(r.more);
	assert_int_equal(r.undecodable, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rounds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ahead, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
