/*
 * store_lmdb: the LMDB backend of the store, and the only file that
 * includes lmdb.h.  It lays out the records and keeps them consistent
 * inside one write transaction; it must not decide policy (limits,
 * retries, what to refuse) beyond keeping room for acknowledgements.
 */
#include "store_lmdb.h"
#include "store_backend.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "fsdir.h"
#include "idmap.h"

/*
 * Layout (all integers big-endian, so keys sort by number):
 *   msgs      seq -> record (s_rec_size, s_encode)
 *   queue     recipient -> seq . deliveries u32   (DUPSORT, DUPFIXED)
 *   dead      seq . recipient -> code u32 . time u64
 *   dead_exp  keep-until . seq . recipient -> time u64 (of the dead letter)
 *   receipts  seq -> signed receipt
 *   dedup     id -> seq . until u64
 *   dedup_exp until . id -> ""
 *   expiry    expires . seq -> ""  (messages not yet removed)
 *   cases     case reference -> party              (DUPSORT)
 *   audit     audit seq -> record
 *   meta      "layout", "last_seq", "audit_seq", "audit_head",
 *             "audit_anchor" (seq 8, hash 32: the last record archived)
 * A message has no reference count: it is removed when none of its
 * recipients still holds it in a queue or as a dead letter, which is
 * looked up at the time, so a count can never drift.
 */
#define S_LAYOUT 3
#define S_REC_VERSION 1
#define S_QVAL_LEN 12
#define S_DEADVAL_LEN 12
/* A dedup value: seq, until.  The message's signed receipt is kept under
 * its seq for as long as the id, so a resubmission is answered with it
 * even after the message itself was delivered and removed.  Ids are
 * random: small dedup values keep the pages each group dirties there few;
 * receipts are written in seq order, at the end of their table. */
#define S_DEDUPVAL_LEN 16
/* The pages a put may make LMDB copy: it writes five tables out of key
 * order (dedup and dedup_exp by id, expiry by time, cases and case_until
 * by reference), a leaf page each at most, and the queue table by
 * recipient, a leaf of the table and one of the recipient's own
 * sub-tree for each recipient new to the transaction.  The branch pages
 * above are shared by many puts (a recipient's own by those to it: a
 * first put to a deep queue copies a page or two more, which the
 * reserve covers many times over).
 * test_fills_refusing_first and test_fills_many_recipients check the
 * bound with random ids, cases, times and recipients. */
#define S_PUT_COPIES 5
#define S_QUEUE_COPIES 2
#define S_MIN_MAP ((uint64_t)256 * 1024)
#define S_RESERVE_MAX ((uint64_t)256 * 1024 * 1024)
#define S_RESERVE_PAGES 64

struct s_env {
	MDB_env *env;
	MDB_dbi msgs, queue, dead, dead_exp, receipts, dedup, dedup_exp, expiry,
	    cases, case_until, audit, meta;
	uint64_t last_seq;   /* committed */
	uint64_t last_audit; /* committed */
	uint8_t head[STORE_HASH_LEN];
	uint64_t psize;
	uint64_t reserve; /* bytes store_put leaves for acks and dead letters */
	uint64_t layout_found; /* when it is not S_LAYOUT */
	/* A reset read transaction kept for the next reader (atomic; any
	 * thread may take it: the env is MDB_NOTLS).  Renewing it keeps its
	 * reader slot, where beginning one allocates and takes the lock
	 * table's mutex. */
	MDB_txn *spare;
	/* Where store_forget_cases goes on: the last reference it looked
	 * at ("" for the first). */
	char case_pos[STORE_NAME_MAX + 1];
};

struct s_txn {
	struct s_env *e;
	MDB_txn *txn;
	int spoiled; /* STORE_OK, or the code every later call returns */
	char why[160];
	uint64_t last_seq, put_max, last_audit;
	uint8_t head[STORE_HASH_LEN];
	bool audit_changed;
	uint64_t high;    /* the map's high-water mark at begin, bytes */
	uint64_t free_b;  /* free bytes at begin; UINT64_MAX: not counted */
	uint64_t added;   /* what this transaction's puts may take, bytes */
	uint64_t copied;  /* pages its puts may copy out of key order */
	uint64_t qcopied; /* of those, in the queue table */
	/* The recipients queued to in it, as a set of their names' hashes
	 * (0 is a free slot): a recipient's pages are copied once a
	 * transaction. */
	uint64_t *rcpts;
	size_t rcap, rlen;
	uint64_t index_b; /* those tables' bytes; UINT64_MAX: not counted */
};

/* ---- encoding --------------------------------------------------------- */

static void
s_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static void
s_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t
s_get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t
s_get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v = (v << 8) | p[i];
	return v;
}

/*
 * A message record: version u8, flags u8 (bit 0: notify delivered),
 * recipients u8, zero u8, accepted u64, expires u64, id[16], sender,
 * type and case reference as (len u8, bytes), per recipient its id and
 * agreement as (len u8, bytes), envelope (len u32, bytes), receipt
 * (len u32, bytes; empty since layout 2: receipts have their own table).
 * Nothing may follow.
 */
static size_t
s_rec_size(const struct store_msg *m)
{
	size_t n = 4 + 8 + 8 + STORE_ID_LEN;

	n += 3 + strlen(m->sender) + strlen(m->type) + strlen(m->case_ref);
	for (size_t i = 0; i < m->n_recipients; i++)
		n += 2 + strlen(m->recipients[i]) + strlen(m->agreements[i]);
	return n + 4 + m->envelope_len + 4;
}

static uint8_t *
s_put_str(uint8_t *p, const char *str)
{
	size_t len = strlen(str);

	*p++ = (uint8_t)len;
	memcpy(p, str, len);
	return p + len;
}

static uint8_t *
s_put_blob(uint8_t *p, const uint8_t *b, size_t len)
{
	s_be32(p, (uint32_t)len);
	if (len > 0)
		memcpy(p + 4, b, len);
	return p + 4 + len;
}

static void
s_encode(uint8_t *p, const struct store_msg *m)
{
	*p++ = S_REC_VERSION;
	*p++ = m->notify_delivered ? 1 : 0;
	*p++ = (uint8_t)m->n_recipients;
	*p++ = 0;
	s_be64(p, m->accepted_ms);
	s_be64(p + 8, m->expires_ms);
	memcpy(p + 16, m->id, STORE_ID_LEN);
	p += 16 + STORE_ID_LEN;
	p = s_put_str(p, m->sender);
	p = s_put_str(p, m->type);
	p = s_put_str(p, m->case_ref);
	for (size_t i = 0; i < m->n_recipients; i++) {
		p = s_put_str(p, m->recipients[i]);
		p = s_put_str(p, m->agreements[i]);
	}
	p = s_put_blob(p, m->envelope, m->envelope_len);
	s_put_blob(p, NULL, 0);
}

/* A bounded reader: any short read sets bad and yields nothing. */
struct s_rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *
s_take(struct s_rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || n > r->left) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static void
s_take_str(struct s_rd *r, char out[STORE_NAME_MAX + 1])
{
	const uint8_t *lp = s_take(r, 1);
	const uint8_t *p;

	out[0] = '\0';
	if (lp == NULL)
		return;
	if (*lp == 0 || *lp > STORE_NAME_MAX) {
		r->bad = true;
		return;
	}
	p = s_take(r, *lp);
	if (p == NULL)
		return;
	if (memchr(p, '\0', *lp) != NULL) {
		r->bad = true;
		return;
	}
	memcpy(out, p, *lp);
	out[*lp] = '\0';
}

static const uint8_t *
s_take_blob(struct s_rd *r, size_t *len)
{
	const uint8_t *lp = s_take(r, 4);

	*len = 0;
	if (lp == NULL)
		return NULL;
	*len = s_get32(lp);
	return s_take(r, *len);
}

/* Decodes a record into *m; envelope and receipt point into `v`.
 * Returns false when the record is damaged. */
/* Zeroes *m but for the names of its recipients and their agreements
 * (4 KiB for 32), which s_decode writes up to n_recipients (each at
 * least its terminator) and every reader reads only that far: two 4 KiB
 * memsets a message less (an Ack's read on the broker thread, and the
 * writer's). */
static void
s_msg_clear(struct store_msg *m)
{
	size_t from = offsetof(struct store_msg, recipients);
	size_t to =
	    offsetof(struct store_msg, agreements) + sizeof m->agreements;

	memset(m, 0, from);
	memset((char *)m + to, 0, sizeof(*m) - to);
}

static bool
s_decode(const MDB_val *v, uint64_t seq, struct store_msg *m)
{
	struct s_rd r = {v->mv_data, v->mv_size, false};
	const uint8_t *h = s_take(&r, 4 + 16 + STORE_ID_LEN);

	s_msg_clear(m);
	m->seq = seq;
	if (h == NULL || h[0] != S_REC_VERSION || h[1] > 1 || h[2] == 0 ||
	    h[2] > STORE_MAX_RECIPIENTS || h[3] != 0)
		return false;
	m->notify_delivered = h[1] == 1;
	m->n_recipients = h[2];
	m->accepted_ms = s_get64(h + 4);
	m->expires_ms = s_get64(h + 12);
	memcpy(m->id, h + 20, STORE_ID_LEN);
	s_take_str(&r, m->sender);
	s_take_str(&r, m->type);
	s_take_str(&r, m->case_ref);
	for (size_t i = 0; i < m->n_recipients; i++) {
		s_take_str(&r, m->recipients[i]);
		s_take_str(&r, m->agreements[i]);
	}
	m->envelope = s_take_blob(&r, &m->envelope_len);
	m->receipt = s_take_blob(&r, &m->receipt_len);
	return !r.bad && r.left == 0;
}

/* Key of a dead letter: seq . recipient. */
static size_t
s_dead_key(uint8_t out[8 + STORE_NAME_MAX], uint64_t seq, const char *rcpt)
{
	size_t len = strlen(rcpt);

	s_be64(out, seq);
	memcpy(out + 8, rcpt, len);
	return 8 + len;
}

/* ---- failures --------------------------------------------------------- */

static bool
s_is_full(int rc)
{
	return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT;
}

/* An LMDB failure outside a write transaction. */
static int
s_fail(const struct store *s, int rc, const char *what)
{
	if (s_is_full(rc))
		return store_fail(s, STORE_FULL, "the store is full (%s: %s)",
		    what, mdb_strerror(rc));
	return store_fail(
	    s, STORE_ERROR, "store: %s: %s", what, mdb_strerror(rc));
}

/* An LMDB failure while writing: it spoils the transaction. */
static int
s_wfail(struct store_txn *t, int rc, const char *what)
{
	struct s_txn *bt = t->be;
	int code = s_fail(t->s, rc, what);

	bt->spoiled = code;
	snprintf(bt->why, sizeof bt->why, "%s", store_error(t->s));
	return code;
}

/* STORE_OK, or the code of the failure that spoiled the transaction. */
static int
s_check(struct store_txn *t)
{
	struct s_txn *bt = t->be;

	if (bt->spoiled == STORE_OK)
		return STORE_OK;
	return store_fail(t->s, bt->spoiled,
	    "an earlier failure spoiled this store transaction (%s)", bt->why);
}

/* ---- opening ---------------------------------------------------------- */

/* Syncs the store directory, where LMDB may just have created its files,
 * and its parent, where the directory may have been made (at this start
 * or at one that failed before it got here): a crash soon after the
 * first start must not lose a store whose commits were synced. */
static int
s_sync_dirs(struct store *s, const char *dir)
{
	if (fsdir_sync(dir) != 0)
		return store_fail(s, STORE_ERROR,
		    "cannot sync the store directory %s: %s", dir,
		    strerror(errno));
	if (fsdir_sync_parent(dir) != 0)
		return store_fail(s, STORE_ERROR,
		    "cannot sync the folder of the store directory %s: %s", dir,
		    strerror(errno));
	return STORE_OK;
}

static int
s_dir(struct store *s, const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return store_fail(s, STORE_ERROR,
		    "cannot create store directory %s: %s", dir,
		    strerror(errno));
	if (stat(dir, &st) != 0)
		return store_fail(s, STORE_ERROR,
		    "cannot use store directory %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return store_fail(s, STORE_ERROR,
		    "store directory %s is not a directory", dir);
	if (st.st_uid != geteuid())
		return store_fail(s, STORE_ERROR,
		    "store directory %s belongs to another user", dir);
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
		return store_fail(s, STORE_ERROR,
		    "store directory %s may be written by group or others; "
		    "make it mode 0700",
		    dir);
	return STORE_OK;
}

static int
s_meta_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *v)
{
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(txn, dbi, &k, &d);

	*v = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (d.mv_size != 8)
		return MDB_CORRUPTED;
	*v = s_get64(d.mv_data);
	return 0;
}

static int
s_meta_put(
    MDB_txn *txn, MDB_dbi dbi, const char *name, const void *p, size_t len)
{
	MDB_val k = {strlen(name), (void *)name}, d = {len, (void *)p};

	return mdb_put(txn, dbi, &k, &d, 0);
}

static int
s_meta_put64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t v)
{
	uint8_t b[8];

	s_be64(b, v);
	return s_meta_put(txn, dbi, name, b, sizeof b);
}

/* Opens the named databases and reads meta; returns an LMDB code. */
/* Layout 2 -> 3: case_until is new (created empty by s_open_dbs); each
 * case gets `until`. */
static int
s_upgrade_2(struct s_env *e, MDB_txn *txn, uint64_t until)
{
	MDB_cursor *c;
	MDB_val k, d;
	uint8_t v[8];
	int rc = mdb_cursor_open(txn, e->cases, &c);

	if (rc != 0)
		return rc;
	s_be64(v, until);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_NODUP)) {
		MDB_val dv = {sizeof v, v};
		rc = mdb_put(txn, e->case_until, &k, &dv, 0);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND)
		return rc;
	return s_meta_put64(txn, e->meta, "layout", 3);
}

/* LMDB's default order, eight bytes at a time.  Most keys here are
 * big-endian numbers of 8 to 24 bytes, and a lookup compares keys some
 * twenty times: the default's call out to memcmp cost more than the
 * compare (7% of the broker thread's instructions).  The order is the
 * same byte for byte, so a program that opens the store without this
 * function reads and writes it alike. */
int
store_lmdb_cmp(const MDB_val *a, const MDB_val *b)
{
	const uint8_t *p = a->mv_data, *q = b->mv_data;
	size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;

	for (; n >= 8; n -= 8, p += 8, q += 8) {
		uint64_t x, y;
		memcpy(&x, p, 8);
		memcpy(&y, q, 8);
		if (x != y)
			return be64toh(x) < be64toh(y) ? -1 : 1;
	}
	for (; n > 0; n--, p++, q++)
		if (*p != *q)
			return *p < *q ? -1 : 1;
	return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

static int
s_open_dbs(struct s_env *e, MDB_txn *txn, const char **what,
    const struct store_opts *opts)
{
	static const struct {
		const char *name;
		unsigned flags;
		size_t off;
	} dbs[] = {
	    {"msgs", 0, offsetof(struct s_env, msgs)},
	    {"queue", MDB_DUPSORT | MDB_DUPFIXED,
		offsetof(struct s_env, queue)},
	    {"dead", 0, offsetof(struct s_env, dead)},
	    {"dead_exp", 0, offsetof(struct s_env, dead_exp)},
	    {"receipts", 0, offsetof(struct s_env, receipts)},
	    {"dedup", 0, offsetof(struct s_env, dedup)},
	    {"dedup_exp", 0, offsetof(struct s_env, dedup_exp)},
	    {"expiry", 0, offsetof(struct s_env, expiry)},
	    {"cases", MDB_DUPSORT, offsetof(struct s_env, cases)},
	    {"case_until", 0, offsetof(struct s_env, case_until)},
	    {"audit", 0, offsetof(struct s_env, audit)},
	    {"meta", 0, offsetof(struct s_env, meta)},
	};
	uint64_t layout;
	MDB_val k = {10, (void *)"audit_head"}, d;
	int rc;

	for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
		MDB_dbi *dbi = (MDB_dbi *)((char *)e + dbs[i].off);

		*what = dbs[i].name;
		rc = mdb_dbi_open(
		    txn, dbs[i].name, dbs[i].flags | MDB_CREATE, dbi);
		if (rc == 0)
			rc = mdb_set_compare(txn, *dbi, store_lmdb_cmp);
		if (rc == 0 && (dbs[i].flags & MDB_DUPSORT) != 0)
			rc = mdb_set_dupsort(txn, *dbi, store_lmdb_cmp);
		if (rc != 0)
			return rc;
	}
	*what = "meta";
	rc = s_meta_u64(txn, e->meta, "layout", &layout);
	if (rc != 0)
		return rc;
	if (layout == 0) {
		rc = s_meta_put64(txn, e->meta, "layout", S_LAYOUT);
		if (rc != 0)
			return rc;
	} else if (layout == 2 && S_LAYOUT == 3) {
		*what = "upgrading the store from layout 2";
		rc = s_upgrade_2(e, txn, opts->upgrade_case_until_ms);
		if (rc != 0)
			return rc;
		e->layout_found = layout;
	} else if (layout != S_LAYOUT) {
		e->layout_found = layout;
		return MDB_VERSION_MISMATCH;
	}
	rc = s_meta_u64(txn, e->meta, "last_seq", &e->last_seq);
	if (rc == 0)
		rc = s_meta_u64(txn, e->meta, "audit_seq", &e->last_audit);
	if (rc != 0)
		return rc;
	rc = mdb_get(txn, e->meta, &k, &d);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (d.mv_size != STORE_HASH_LEN)
		return MDB_CORRUPTED;
	memcpy(e->head, d.mv_data, STORE_HASH_LEN);
	return 0;
}

static int
s_open(struct store *s, const struct store_opts *opts)
{
	struct s_env *e;
	MDB_txn *txn = NULL;
	MDB_envinfo info;
	MDB_stat st;
	const char *what = "creating the environment";
	int dead, rc;

	if (opts->map_size < S_MIN_MAP)
		return store_fail(s, STORE_ERROR,
		    "the store map size must be at least %llu bytes",
		    (unsigned long long)S_MIN_MAP);
	rc = s_dir(s, opts->dir);
	if (rc != STORE_OK)
		return rc;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return store_fail(
		    s, STORE_ERROR, "out of memory opening the store");
	rc = mdb_env_create(&e->env);
	if (rc != 0) {
		free(e);
		return s_fail(s, rc, what);
	}
	what = "setting up the environment";
	rc = mdb_env_set_maxdbs(e->env, 12);
	if (rc == 0)
		rc = mdb_env_set_mapsize(e->env, (size_t)opts->map_size);
	if (rc == 0) {
		what = opts->dir;
		rc = mdb_env_open(e->env, opts->dir,
		    MDB_NOTLS | (opts->no_sync ? MDB_NOSYNC : 0), 0600);
	}
	if (rc == 0 && !opts->no_sync &&
	    s_sync_dirs(s, opts->dir) != STORE_OK) {
		mdb_env_close(e->env);
		free(e);
		return STORE_ERROR;
	}
	if (rc == 0) {
		what = "clearing stale readers";
		rc = mdb_reader_check(e->env, &dead);
	}
	if (rc == 0) {
		what = "opening the databases";
		rc = mdb_txn_begin(e->env, NULL, 0, &txn);
	}
	if (rc == 0) {
		rc = s_open_dbs(e, txn, &what, opts);
		if (rc == 0) {
			what = "creating the databases";
			rc = mdb_txn_commit(txn);
		} else {
			mdb_txn_abort(txn);
		}
	}
	if (rc == 0) {
		what = "reading the environment";
		rc = mdb_env_info(e->env, &info);
	}
	if (rc == 0)
		rc = mdb_env_stat(e->env, &st);
	if (rc != 0) {
		uint64_t layout_found = e->layout_found;
		mdb_env_close(e->env);
		free(e);
		if (rc == MDB_VERSION_MISMATCH && layout_found != 0)
			return store_fail(s, STORE_ERROR,
			    "the store in %s has layout %llu and this schakeld "
			    "reads layout %d only; nothing was changed: run the "
			    "schakeld that wrote it, or move the folder away to "
			    "start with an empty store",
			    opts->dir, (unsigned long long)layout_found,
			    S_LAYOUT);
		return s_fail(s, rc, what);
	}
	s->upgraded_from = e->layout_found;
	s->last_seq_open = e->last_seq;
	e->psize = st.ms_psize;
	e->reserve = info.me_mapsize / 16;
	if (e->reserve < S_RESERVE_PAGES * e->psize)
		e->reserve = S_RESERVE_PAGES * e->psize;
	if (e->reserve > S_RESERVE_MAX)
		e->reserve = S_RESERVE_MAX;
	if (e->reserve > info.me_mapsize / 2)
		e->reserve = info.me_mapsize / 2;
	s->be = e;
	return STORE_OK;
}

static void
s_close(struct store *s)
{
	struct s_env *e = s->be;

	if (e->spare != NULL)
		mdb_txn_abort(e->spare);
	mdb_env_close(e->env);
	free(e);
	s->be = NULL;
}

/* ---- space ------------------------------------------------------------ */

/* Bytes in pages on the free list; an LMDB code.  With `usable`, only
 * those the next write transaction may use again: not those the last
 * commit freed, as LMDB keeps that commit's predecessor whole until the
 * next one (a crash while it writes its meta page falls back to it). */
static int
s_free_bytes(struct s_env *e, bool usable, uint64_t *out)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, d;
	MDB_envinfo info;
	uint64_t pages = 0;
	int rc;

	*out = 0;
	rc = mdb_env_info(e->env, &info);
	if (rc != 0)
		return rc;
	rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	rc = mdb_cursor_open(txn, 0, &c); /* 0 is LMDB's free-page DB */
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	while ((rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) == 0) {
		size_t n, freed_by = 0;

		if (k.mv_size == sizeof freed_by)
			memcpy(&freed_by, k.mv_data, sizeof freed_by);
		if (d.mv_size < sizeof n ||
		    (usable && freed_by >= info.me_last_txnid))
			continue;
		memcpy(&n, d.mv_data, sizeof n); /* the list's length */
		pages += n;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	if (rc != MDB_NOTFOUND)
		return rc;
	*out = pages * e->psize;
	return 0;
}

/* The map's high-water mark, bytes. */
static int
s_high(struct s_env *e, uint64_t *out)
{
	MDB_envinfo info;
	int rc = mdb_env_info(e->env, &info);

	*out = 0;
	if (rc != 0)
		return rc;
	*out = ((uint64_t)info.me_last_pgno + 1) * e->psize;
	return 0;
}

/* What one put may take: its bytes, and the pages it may copy. */
struct s_cost {
	uint64_t bytes;
	uint64_t pages;  /* in the five index tables */
	uint64_t qpages; /* in the queue table */
};

static uint64_t
s_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* What a transaction's puts, and `c` with them, may take: their own
 * bytes, and the pages they copy where their keys do not come in order
 * (an id, a case, an expiry time, a recipient: a page each, copied
 * whole, the old one free only after the commit).  Those copies cannot
 * be more than the pages their tables had: the five index tables'
 * `index_cap` bytes at most, the queue table's `all_cap` (everything in
 * use; mdb_stat may not count a recipient's sub-tree). */
static uint64_t
s_taking(const struct s_txn *bt, uint64_t index_cap, uint64_t all_cap,
    const struct s_cost *c)
{
	uint64_t ps = bt->e->psize;

	return bt->added + c->bytes +
	    s_min((bt->copied + c->pages) * ps, index_cap) +
	    s_min((bt->qcopied + c->qpages) * ps, all_cap);
}

/* A recipient's name's hash, never 0 (a free slot of the set). */
static uint64_t
s_rcpt_hash(const char *name)
{
	uint64_t h = idmap_hash(name, strlen(name));

	return h != 0 ? h : 1;
}

/* The slot of hash h in the set of recipients, or the free one for it. */
static size_t
s_rcpt_slot(const struct s_txn *bt, uint64_t h)
{
	size_t i = h & (bt->rcap - 1);

	while (bt->rcpts[i] != 0 && bt->rcpts[i] != h)
		i = (i + 1) & (bt->rcap - 1);
	return i;
}

/* How many of m's recipients the transaction has not queued to yet;
 * their hashes go to hs, for s_rcpts_note. */
static uint64_t
s_rcpts_new(const struct s_txn *bt, const struct store_msg *m,
    uint64_t hs[STORE_MAX_RECIPIENTS])
{
	uint64_t n = 0;

	for (size_t i = 0; i < m->n_recipients; i++) {
		hs[i] = s_rcpt_hash(m->recipients[i]);
		n += bt->rcap == 0 || bt->rcpts[s_rcpt_slot(bt, hs[i])] == 0;
	}
	return n;
}

/* Notes the `count` recipients of hashes hs as queued to.  Out of memory, they
 * are not: they count as new again, which errs on the safe side. */
static void
s_rcpts_note(struct s_txn *bt, const uint64_t *hs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		uint64_t h = hs[i];
		size_t j;

		if ((bt->rlen + 1) * 2 > bt->rcap) {
			size_t cap = bt->rcap != 0 ? bt->rcap * 2 : 16;
			uint64_t *old = bt->rcpts, *n = calloc(cap, sizeof *n);
			size_t ocap = bt->rcap;
			if (n == NULL)
				return;
			bt->rcpts = n;
			bt->rcap = cap;
			for (size_t k = 0; k < ocap; k++)
				if (old[k] != 0)
					bt->rcpts[s_rcpt_slot(bt, old[k])] =
					    old[k];
			free(old);
		}
		j = s_rcpt_slot(bt, h);
		if (bt->rcpts[j] == 0) {
			bt->rcpts[j] = h;
			bt->rlen++;
		}
	}
}

/* The bytes in the pages of the five tables a put writes out of key
 * order, as `bt` sees them. */
static int
s_index_bytes(struct s_txn *bt, uint64_t *out)
{
	const MDB_dbi dbis[] = {bt->e->dedup, bt->e->dedup_exp, bt->e->expiry,
	    bt->e->cases, bt->e->case_until};
	uint64_t pages = 0;

	for (size_t i = 0; i < sizeof dbis / sizeof dbis[0]; i++) {
		MDB_stat st;
		int rc = mdb_stat(bt->txn, dbis[i], &st);
		if (rc != 0)
			return rc;
		pages += (uint64_t)st.ms_branch_pages + st.ms_leaf_pages +
		    st.ms_overflow_pages;
	}
	*out = pages * bt->e->psize;
	return 0;
}

/* Whether a put that takes `c` fits below the map size less the
 * reserve.  Free pages are counted only near the limit; the bytes are a
 * generous estimate, the copies an upper bound, so that a transaction
 * the check lets through does not fail for want of room (MDB_MAP_FULL):
 * the refusal comes before, a put at a time.  (A reader still on an
 * older snapshot keeps its pages from the writer meanwhile: that the
 * bound does not know.) */
static int
s_room(struct store_txn *t, const struct s_cost *c, bool from_reserve)
{
	struct s_txn *bt = t->be;
	struct s_env *e = bt->e;
	uint64_t limit, used;
	MDB_envinfo info;
	int rc = mdb_env_info(e->env, &info);

	if (rc != 0)
		return s_fail(t->s, rc, "reading the map size");
	limit = info.me_mapsize - (from_reserve ? e->reserve / 2 : e->reserve);
	if (bt->high + s_taking(bt, bt->high, bt->high, c) <= limit)
		return STORE_OK;
	if (bt->free_b == UINT64_MAX) {
		rc = s_free_bytes(e, true, &bt->free_b);
		if (rc != 0) {
			bt->free_b = UINT64_MAX;
			return s_fail(t->s, rc, "counting free pages");
		}
	}
	if (bt->index_b == UINT64_MAX) {
		rc = s_index_bytes(bt, &bt->index_b);
		if (rc != 0) {
			bt->index_b = UINT64_MAX;
			return s_fail(t->s, rc, "counting index pages");
		}
	}
	used = bt->high > bt->free_b ? bt->high - bt->free_b : 0;
	if (used + s_taking(bt, bt->index_b, used, c) <= limit)
		return STORE_OK;
	return store_fail(t->s, STORE_FULL,
	    "the store is full: %llu of %llu bytes used, %llu kept back for "
	    "deliveries",
	    (unsigned long long)(used +
		s_taking(bt, bt->index_b, used, &(struct s_cost){0})),
	    (unsigned long long)info.me_mapsize,
	    (unsigned long long)e->reserve);
}

/* ---- write transactions ----------------------------------------------- */

static int
s_begin(struct store_txn *t)
{
	struct s_env *e = t->s->be;
	struct s_txn *bt = calloc(1, sizeof(*bt));
	int rc;

	if (bt == NULL)
		return store_fail(t->s, STORE_ERROR,
		    "out of memory starting a store transaction");
	rc = s_high(e, &bt->high);
	if (rc == 0)
		rc = mdb_txn_begin(e->env, NULL, 0, &bt->txn);
	if (rc != 0) {
		free(bt);
		return s_fail(t->s, rc, "starting a write transaction");
	}
	bt->e = e;
	bt->last_seq = e->last_seq;
	bt->put_max = e->last_seq;
	bt->last_audit = e->last_audit;
	memcpy(bt->head, e->head, STORE_HASH_LEN);
	bt->free_b = UINT64_MAX;
	bt->index_b = UINT64_MAX;
	t->be = bt;
	return STORE_OK;
}

static void
s_abort(struct store_txn *t)
{
	struct s_txn *bt = t->be;

	mdb_txn_abort(bt->txn);
	free(bt->rcpts);
	free(bt);
	t->be = NULL;
}

static int
s_commit(struct store_txn *t)
{
	struct s_txn *bt = t->be;
	struct s_env *e = bt->e;
	const char *what = "writing the sequence";
	int rc = s_check(t);

	if (rc != STORE_OK) {
		s_abort(t);
		return rc;
	}
	rc = 0;
	if (bt->last_seq != e->last_seq)
		rc = s_meta_put64(bt->txn, e->meta, "last_seq", bt->last_seq);
	if (rc == 0 && bt->audit_changed) {
		what = "writing the audit head";
		rc =
		    s_meta_put64(bt->txn, e->meta, "audit_seq", bt->last_audit);
		if (rc == 0)
			rc = s_meta_put(bt->txn, e->meta, "audit_head",
			    bt->head, STORE_HASH_LEN);
	}
	if (rc != 0) {
		s_abort(t);
		return s_fail(t->s, rc, what);
	}
	rc = mdb_txn_commit(bt->txn); /* frees the txn, also on failure */
	if (rc == 0) {
		e->last_seq = bt->last_seq;
		e->last_audit = bt->last_audit;
		memcpy(e->head, bt->head, STORE_HASH_LEN);
	}
	free(bt->rcpts);
	free(bt);
	t->be = NULL;
	if (rc != 0)
		return s_fail(t->s, rc, "committing");
	return STORE_OK;
}

static uint64_t
s_next_seq(struct store_txn *t)
{
	struct s_txn *bt = t->be;

	return ++bt->last_seq;
}

static void
s_take_seq(struct store_txn *t, uint64_t seq)
{
	struct s_txn *bt = t->be;

	if (seq > bt->last_seq)
		bt->last_seq = seq;
}

/* Records `party` in the case, unless it is there already: looked up
 * first, because a put that finds it copies the pages on its way (LMDB
 * touches them before it compares), and most messages are about a case
 * whose parties are known. */
static int
s_put_case(struct store_txn *t, MDB_cursor *c, const char *case_ref,
    const char *party, bool known)
{
	MDB_val k = {strlen(case_ref), (void *)case_ref};
	MDB_val d = {strlen(party), (void *)party};
	/* A new case's parties are put at once; a known case's are looked
	 * up first (see above). */
	int rc = known ? mdb_cursor_get(c, &k, &d, MDB_GET_BOTH) : MDB_NOTFOUND;

	if (rc == MDB_NOTFOUND)
		rc = mdb_cursor_put(c, &k, &d, MDB_NODUPDATA);
	if (rc != 0 && rc != MDB_KEYEXIST)
		return s_wfail(t, rc, "storing a case participant");
	return STORE_OK;
}

/* Reads how long a case is kept (case_until holds case reference ->
 * keep-until, big-endian, the latest one asked for) into *until (0: a
 * case not known, or a damaged entry).  STORE_OK or a failure. */
static int
s_case_until(struct store_txn *t, const char *case_ref, uint64_t *until)
{
	struct s_txn *bt = t->be;
	MDB_val k = {strlen(case_ref), (void *)case_ref}, d;
	int rc = mdb_get(bt->txn, bt->e->case_until, &k, &d);

	*until = 0;
	if (rc == 0 && d.mv_size == 8)
		*until = s_get64(d.mv_data);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return s_wfail(t, rc, "reading how long a case is kept");
	return STORE_OK;
}

/* Keeps a case's participants at least until `until_ms`; `cur` is what
 * s_case_until read. */
static int
s_case_keep(
    struct store_txn *t, const char *case_ref, uint64_t until_ms, uint64_t cur)
{
	struct s_txn *bt = t->be;
	MDB_val k = {strlen(case_ref), (void *)case_ref}, d;
	uint8_t v[8];
	int rc;

	if (cur >= until_ms)
		return STORE_OK;
	s_be64(v, until_ms);
	d.mv_size = sizeof v;
	d.mv_data = v;
	rc = mdb_put(bt->txn, bt->e->case_until, &k, &d, 0);
	if (rc != 0)
		return s_wfail(t, rc, "storing how long a case is kept");
	return STORE_OK;
}

/* Removes a case's keep-until and participants: 0 or an LMDB code. */
static int
s_case_drop(struct s_txn *bt, const void *ref, size_t len)
{
	MDB_val k = {len, (void *)ref};
	int rc = mdb_del(bt->txn, bt->e->case_until, &k, NULL);

	if (rc == 0 || rc == MDB_NOTFOUND)
		rc = mdb_del(bt->txn, bt->e->cases, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
s_forget_cases(struct store_txn *t, uint64_t now_ms, size_t look,
    char (*refs)[STORE_NAME_MAX + 1], size_t max, size_t *n)
{
	struct s_txn *bt = t->be;
	struct s_env *e = bt->e;
	MDB_cursor *c;
	MDB_val k = {strlen(e->case_pos), e->case_pos}, d;
	uint8_t bad[511]; /* LMDB's longest key */
	size_t seen = 0, nbad = 0;
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	rc = mdb_cursor_open(bt->txn, e->case_until, &c);
	if (rc != 0)
		return s_wfail(t, rc, "opening the cases");
	rc = k.mv_size > 0 ? mdb_cursor_get(c, &k, &d, MDB_SET_RANGE)
			   : mdb_cursor_get(c, &k, &d, MDB_FIRST);
	/* Past the one it stopped at. */
	if (rc == 0 && k.mv_size == strlen(e->case_pos) &&
	    memcmp(k.mv_data, e->case_pos, k.mv_size) == 0)
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	/* First the due ones (the walk does not write) ... */
	while (rc == 0 && seen < look && *n < max) {
		if (k.mv_size == 0 || k.mv_size > STORE_NAME_MAX) {
			/* No case reference can be this long: a damaged
			 * entry, removed (one a call) rather than stop the
			 * walk here for good. */
			if (nbad == 0 && k.mv_size <= sizeof bad) {
				memcpy(bad, k.mv_data, k.mv_size);
				nbad = k.mv_size;
			}
			seen++;
			rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
			continue;
		}
		memcpy(e->case_pos, k.mv_data, k.mv_size);
		e->case_pos[k.mv_size] = '\0';
		if (d.mv_size != 8 || s_get64(d.mv_data) <= now_ms)
			memcpy(refs[(*n)++], e->case_pos, k.mv_size + 1);
		seen++;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(c);
	/* At the end: the next call starts from the first again. */
	if (rc == MDB_NOTFOUND) {
		e->case_pos[0] = '\0';
		rc = 0;
	}
	if (rc == 0 && nbad > 0)
		rc = s_case_drop(bt, bad, nbad);
	/* ... then their keep-until and participants go. */
	for (size_t i = 0; rc == 0 && i < *n; i++)
		rc = s_case_drop(bt, refs[i], strlen(refs[i]));
	if (rc != 0) {
		*n = 0;
		return s_wfail(t, rc, "forgetting a case");
	}
	return STORE_OK;
}

/* The key of a message in the expiry index: expires . seq. */
static MDB_val
s_expiry_key(uint8_t xk[16], uint64_t at_ms, uint64_t seq)
{
	MDB_val k = {16, xk};

	s_be64(xk, at_ms);
	s_be64(xk + 8, seq);
	return k;
}

/* (Re)indexes message `seq` as due at `at_ms`. */
static int
s_index_expiry(struct store_txn *t, uint64_t at_ms, uint64_t seq)
{
	struct s_txn *bt = t->be;
	uint8_t xk[16];
	MDB_val k = s_expiry_key(xk, at_ms, seq), d = {0, NULL};
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	rc = mdb_put(bt->txn, bt->e->expiry, &k, &d, 0);
	if (rc != 0)
		return s_wfail(t, rc, "indexing a message's expiry");
	return STORE_OK;
}

static int
s_put(struct store_txn *t, const struct store_msg *m, uint64_t until)
{
	struct s_txn *bt = t->be;
	struct s_env *e = bt->e;
	uint8_t sk[8], qv[S_QVAL_LEN];
	uint8_t xk[8 + STORE_ID_LEN];
	size_t size = s_rec_size(m);
	uint64_t hs[STORE_MAX_RECIPIENTS];
	const struct s_cost cost = {
	    .bytes = 2 * (uint64_t)size + 2 * (uint64_t)m->receipt_len +
		128 * (m->n_recipients + 7),
	    .pages = S_PUT_COPIES,
	    .qpages = S_QUEUE_COPIES * s_rcpts_new(bt, m, hs),
	};
	MDB_val k = {sizeof sk, sk}, d, ik = {STORE_ID_LEN, (void *)m->id};
	bool append = m->seq > bt->put_max;
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	if (m->seq <= e->last_seq || m->seq > bt->last_seq)
		return store_fail(t->s, STORE_ERROR,
		    "message sequence %llu was not reserved in this transaction",
		    (unsigned long long)m->seq);
	rc = s_room(t, &cost, m->from_reserve);
	if (rc != STORE_OK)
		return rc;

	/* The id first: a known id is refused before anything is written. */
	s_be64(sk, m->seq);
	d.mv_size = S_DEDUPVAL_LEN;
	d.mv_data = NULL;
	rc = mdb_put(bt->txn, e->dedup, &ik, &d, MDB_NOOVERWRITE | MDB_RESERVE);
	if (rc == MDB_KEYEXIST)
		return store_fail(
		    t->s, STORE_EXISTS, "this message id is stored already");
	if (rc != 0)
		return s_wfail(t, rc, "storing a message id");
	memcpy(d.mv_data, sk, 8);
	s_be64((uint8_t *)d.mv_data + 8, until);

	d.mv_size = size;
	d.mv_data = NULL;
	rc = mdb_put(bt->txn, e->msgs, &k, &d,
	    MDB_RESERVE | (append ? MDB_APPEND : MDB_NOOVERWRITE));
	/* The id is written already: a failure now spoils the whole
	 * transaction rather than leave the id without its message. */
	if (rc != 0)
		return s_wfail(t, rc, "storing a message");
	s_encode(d.mv_data, m);

	memcpy(qv, sk, 8);
	s_be32(qv + 8, 0);
	for (size_t i = 0; i < m->n_recipients; i++) {
		MDB_val qk = {
		    strlen(m->recipients[i]), (void *)m->recipients[i]};
		MDB_val qd = {sizeof qv, qv};

		rc = mdb_put(bt->txn, e->queue, &qk, &qd, MDB_NODUPDATA);
		if (rc != 0)
			return s_wfail(t, rc, "queueing a message");
	}

	d.mv_size = m->receipt_len;
	d.mv_data = (void *)m->receipt;
	rc = mdb_put(bt->txn, e->receipts, &k, &d,
	    append ? MDB_APPEND : MDB_NOOVERWRITE);
	if (rc != 0)
		return s_wfail(t, rc, "storing a receipt");
	s_be64(xk, until);
	memcpy(xk + 8, m->id, STORE_ID_LEN);
	k.mv_size = sizeof xk;
	k.mv_data = xk;
	d.mv_size = 0;
	d.mv_data = NULL;
	rc = mdb_put(bt->txn, e->dedup_exp, &k, &d, 0);
	if (rc != 0)
		return s_wfail(t, rc, "storing a message id's expiry");
	rc = s_index_expiry(t, m->expires_ms, m->seq);
	if (rc != STORE_OK)
		return rc;

	if (m->case_until_ms != 0) {
		MDB_cursor *c;
		uint64_t kept;
		/* Whether the case is known (it has a keep-until exactly
		 * when it has participants): a new case's parties are not
		 * looked up first, two look-ups that could not find them. */
		rc = s_case_until(t, m->case_ref, &kept);
		if (rc != STORE_OK)
			return rc;
		rc = mdb_cursor_open(bt->txn, e->cases, &c);
		if (rc != 0)
			return s_wfail(t, rc, "opening the cases");
		rc = s_put_case(t, c, m->case_ref, m->sender, kept != 0);
		for (size_t i = 0; rc == STORE_OK && i < m->n_recipients; i++)
			rc = s_put_case(
			    t, c, m->case_ref, m->recipients[i], kept != 0);
		mdb_cursor_close(c);
		if (rc == STORE_OK)
			rc =
			    s_case_keep(t, m->case_ref, m->case_until_ms, kept);
		if (rc != STORE_OK)
			return rc;
	}
	if (append)
		bt->put_max = m->seq;
	bt->added += cost.bytes;
	bt->copied += cost.pages;
	bt->qcopied += cost.qpages;
	s_rcpts_note(bt, hs, m->n_recipients);
	return STORE_OK;
}

/* Positions c on `seq` in `rcpt`'s queue; 0, MDB_NOTFOUND or an LMDB
 * code.  *deliveries gets the entry's count. */
static int
s_q_find(MDB_cursor *c, const char *rcpt, uint64_t seq, uint32_t *deliveries)
{
	uint8_t qv[S_QVAL_LEN];
	MDB_val k = {strlen(rcpt), (void *)rcpt}, d = {sizeof qv, qv};
	int rc;

	s_be64(qv, seq);
	s_be32(qv + 8, 0);
	rc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH_RANGE);
	if (rc != 0)
		return rc;
	if (d.mv_size != S_QVAL_LEN || memcmp(d.mv_data, qv, 8) != 0)
		return MDB_NOTFOUND;
	if (deliveries != NULL)
		*deliveries = s_get32((const uint8_t *)d.mv_data + 8);
	return 0;
}

/* Whether `rcpt` holds `seq` in its queue (*held); an LMDB code. */
static int
s_q_has(MDB_txn *txn, MDB_dbi dbi, const char *rcpt, uint64_t seq, bool *held)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, dbi, &c);

	*held = false;
	if (rc != 0)
		return rc;
	rc = s_q_find(c, rcpt, seq, NULL);
	mdb_cursor_close(c);
	if (rc == 0)
		*held = true;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Removes message `m` when no recipient holds it any more (queued or
 * dead); `gone`, when not NULL, is a recipient known to hold it no more
 * (the one that just acknowledged it). */
static int
s_release_msg(struct store_txn *t, const struct store_msg *m, const char *gone)
{
	struct s_txn *bt = t->be;
	struct s_env *e = bt->e;
	uint8_t sk[8], dk[8 + STORE_NAME_MAX], xk16[16];
	MDB_val xkv;
	MDB_val k = {sizeof sk, sk};
	int rc;

	s_be64(sk, m->seq);
	for (size_t i = 0; i < m->n_recipients; i++) {
		bool held;
		MDB_val xk = {s_dead_key(dk, m->seq, m->recipients[i]), dk}, xd;

		if (gone != NULL && strcmp(m->recipients[i], gone) == 0)
			continue;
		rc =
		    s_q_has(bt->txn, e->queue, m->recipients[i], m->seq, &held);
		if (rc != 0)
			return s_wfail(t, rc, "reading a queue");
		if (held)
			return STORE_OK;
		rc = mdb_get(bt->txn, e->dead, &xk, &xd);
		if (rc == 0)
			return STORE_OK;
		if (rc != MDB_NOTFOUND)
			return s_wfail(t, rc, "reading dead letters");
	}
	/* The id's window may have ended while the message was stored: then
	 * nothing answers a resubmission with the receipt any more. */
	{
		MDB_val ik = {STORE_ID_LEN, (void *)m->id}, dd;
		rc = mdb_get(bt->txn, e->dedup, &ik, &dd);
		if (rc == MDB_NOTFOUND ||
		    (rc == 0 &&
			(dd.mv_size < 8 || s_get64(dd.mv_data) != m->seq))) {
			rc = mdb_del(bt->txn, e->receipts, &k, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
		if (rc != 0)
			return s_wfail(t, rc, "removing a receipt");
	}
	rc = mdb_del(bt->txn, e->msgs, &k, NULL);
	/* Gone already: only a damaged store has a queue entry without its
	 * message (store_ack_known does not read it first). */
	if (rc != 0 && rc != MDB_NOTFOUND)
		return s_wfail(t, rc, "removing a message");
	xkv = s_expiry_key(xk16, m->expires_ms, m->seq);
	rc = mdb_del(bt->txn, e->expiry, &xkv, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return s_wfail(t, rc, "removing a message's expiry");
	return STORE_OK;
}

/* Reads message `seq` through the write transaction: 0, MDB_NOTFOUND,
 * MDB_CORRUPTED for a damaged record, or an LMDB code. */
static int
s_wget(struct store_txn *t, uint64_t seq, struct store_msg *m)
{
	struct s_txn *bt = t->be;
	uint8_t sk[8];
	MDB_val k = {sizeof sk, sk}, d;
	int rc;

	s_be64(sk, seq);
	rc = mdb_get(bt->txn, bt->e->msgs, &k, &d);
	if (rc != 0)
		return rc;
	if (!s_decode(&d, seq, m))
		return MDB_CORRUPTED;
	m->envelope = NULL;
	m->receipt = NULL;
	return 0;
}

/* Removes message `seq` when no recipient holds it any more.  A damaged
 * record is left alone: it cannot say who holds it. */
static int
s_release(struct store_txn *t, uint64_t seq)
{
	struct store_msg m;
	int rc = s_wget(t, seq, &m);

	if (rc == MDB_NOTFOUND || rc == MDB_CORRUPTED)
		return STORE_OK;
	if (rc != 0)
		return s_wfail(t, rc, "reading a message");
	return s_release_msg(t, &m, NULL);
}

/* Hands an entry of a time-ordered index to its taker: returns 0 or an
 * LMDB code; counts in *n what it took. */
typedef int (*s_take_fn)(
    struct s_txn *bt, const MDB_val *k, const MDB_val *d, void *out, size_t *n);

/* Takes the entries of a time-ordered index (keys begin with a big-endian
 * time) due at `last_due` or before, from its head: each is handed to
 * `take` and deleted, until *n reaches `max`.  Entries with a key too
 * short for a time are deleted unseen. */
static int
s_take_due(struct store_txn *t, MDB_dbi dbi, uint64_t last_due, size_t max,
    size_t *n, s_take_fn take, void *out, const char *what)
{
	struct s_txn *bt = t->be;
	MDB_cursor *c;
	MDB_val k, d;
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	rc = mdb_cursor_open(bt->txn, dbi, &c);
	if (rc != 0)
		return s_wfail(t, rc, what);
	while (*n < max) {
		rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
		if (rc != 0)
			break;
		if (k.mv_size >= 8 && s_get64(k.mv_data) > last_due)
			break;
		if (k.mv_size >= 8)
			rc = take(bt, &k, &d, out, n);
		if (rc != 0 && rc != MDB_NOTFOUND)
			break;
		rc = mdb_cursor_del(c, 0);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return s_wfail(t, rc, what);
	return STORE_OK;
}

/* expiry: expires . seq */
static int
s_take_expired_one(
    struct s_txn *bt, const MDB_val *k, const MDB_val *d, void *out, size_t *n)
{
	(void)bt;
	(void)d;
	if (k->mv_size == 16)
		((uint64_t *)out)[(*n)++] = s_get64((uint8_t *)k->mv_data + 8);
	return 0;
}

static int
s_take_expired(
    struct store_txn *t, uint64_t now_ms, uint64_t *seqs, size_t max, size_t *n)
{
	return s_take_due(t, ((struct s_txn *)t->be)->e->expiry, now_ms, max, n,
	    s_take_expired_one, seqs, "taking expired messages");
}

/* dead_exp: keep-until . seq . recipient -> time of the dead letter.  An
 * entry of a dead letter that was redelivered (and perhaps dead-lettered
 * again later, with a new time) is dropped without a word. */
static int
s_take_dead_one(
    struct s_txn *bt, const MDB_val *k, const MDB_val *d, void *out, size_t *n)
{
	MDB_val dk = {k->mv_size - 8, (uint8_t *)k->mv_data + 8}, dd;
	struct store_dead *x;
	uint64_t when;
	int rc;

	if (k->mv_size <= 16 || k->mv_size > 16 + STORE_NAME_MAX ||
	    d->mv_size != 8)
		return 0; /* damaged: dropped */
	when = s_get64(d->mv_data);
	rc = mdb_get(bt->txn, bt->e->dead, &dk, &dd);
	if (rc != 0 || dd.mv_size != S_DEADVAL_LEN ||
	    s_get64((uint8_t *)dd.mv_data + 4) != when)
		return rc;
	x = &((struct store_dead *)out)[(*n)++];
	x->seq = s_get64(dk.mv_data);
	memcpy(x->recipient, (uint8_t *)dk.mv_data + 8, dk.mv_size - 8);
	x->recipient[dk.mv_size - 8] = '\0';
	x->code = s_get32(dd.mv_data);
	x->time_ms = when;
	return 0;
}

static int
s_take_dead_due(struct store_txn *t, uint64_t now_ms, struct store_dead *out,
    size_t max, size_t *n)
{
	return s_take_due(t, ((struct s_txn *)t->be)->e->dead_exp, now_ms, max,
	    n, s_take_dead_one, out, "taking dead letters due");
}

/* dedup_exp: until . id.  Only the id whose window this entry records is
 * forgotten (with its receipt, unless the message is still stored: it is
 * delivered with it, and s_release drops it then). */
static int
s_expire_id(
    struct s_txn *bt, const MDB_val *k, const MDB_val *d, void *out, size_t *n)
{
	MDB_val ik = {STORE_ID_LEN, (uint8_t *)k->mv_data + 8}, v, md;
	uint8_t sk[8];
	MDB_val rk = {sizeof sk, sk};
	int rc = 0;

	(void)d;
	(void)out;
	if (k->mv_size == 8 + STORE_ID_LEN)
		rc = mdb_get(bt->txn, bt->e->dedup, &ik, &v);
	if (k->mv_size == 8 + STORE_ID_LEN && rc == 0 &&
	    v.mv_size >= S_DEDUPVAL_LEN &&
	    memcmp((uint8_t *)v.mv_data + 8, k->mv_data, 8) == 0) {
		/* The value points into the page mdb_del changes. */
		memcpy(sk, v.mv_data, 8);
		rc = mdb_del(bt->txn, bt->e->dedup, &ik, NULL);
		if (rc == 0 &&
		    mdb_get(bt->txn, bt->e->msgs, &rk, &md) == MDB_NOTFOUND)
			rc = mdb_del(bt->txn, bt->e->receipts, &rk, NULL);
	}
	(*n)++;
	return rc;
}

static int
s_expire_dedup(
    struct store_txn *t, uint64_t now_ms, size_t max, size_t *removed)
{
	/* A window ending at now_ms has not ended yet. */
	if (now_ms == 0)
		return s_check(t);
	return s_take_due(t, ((struct s_txn *)t->be)->e->dedup_exp, now_ms - 1,
	    max, removed, s_expire_id, NULL, "expiring message ids");
}

/* Opens a cursor on the queue positioned on (rcpt, seq): STORE_OK,
 * STORE_NOT_FOUND (nothing written, cursor closed) or a spoiling code. */
static int
s_q_open(struct store_txn *t, const char *rcpt, uint64_t seq, MDB_cursor **c,
    uint32_t *deliveries)
{
	struct s_txn *bt = t->be;
	int rc = mdb_cursor_open(bt->txn, bt->e->queue, c);

	if (rc != 0)
		return s_wfail(t, rc, "opening a queue");
	rc = s_q_find(*c, rcpt, seq, deliveries);
	if (rc == 0)
		return STORE_OK;
	mdb_cursor_close(*c);
	*c = NULL;
	if (rc == MDB_NOTFOUND)
		return store_fail(t->s, STORE_NOT_FOUND,
		    "message %llu is not queued for %s",
		    (unsigned long long)seq, rcpt);
	return s_wfail(t, rc, "reading a queue");
}

static int
s_delivered(
    struct store_txn *t, const char *rcpt, uint64_t seq, uint32_t *deliveries)
{
	struct s_txn *bt = t->be;
	MDB_cursor *c;
	uint8_t qv[S_QVAL_LEN];
	MDB_val k = {strlen(rcpt), (void *)rcpt}, d = {sizeof qv, qv};
	uint32_t n = 0;
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	rc = s_q_open(t, rcpt, seq, &c, &n);
	if (rc != STORE_OK)
		return rc;
	if (n < UINT32_MAX)
		n++;
	rc = mdb_cursor_del(c, 0);
	mdb_cursor_close(c);
	if (rc != 0)
		return s_wfail(t, rc, "updating a queue");
	s_be64(qv, seq);
	s_be32(qv + 8, n);
	rc = mdb_put(bt->txn, bt->e->queue, &k, &d, MDB_NODUPDATA);
	if (rc != 0)
		return s_wfail(t, rc, "updating a queue");
	*deliveries = n;
	return STORE_OK;
}

static int
s_ack(struct store_txn *t, const char *rcpt, uint64_t seq,
    const uint8_t *want_id, struct store_msg *out,
    const struct store_msg *known)
{
	struct store_msg own, *m = out != NULL ? out : &own;
	MDB_cursor *c;
	int rc = s_check(t), got = 0;

	if (rc != STORE_OK)
		return rc;
	/* The message first: its id is checked before anything changes,
	 * and what is read here decides whether it goes.  A caller that
	 * read it already says what it holds (`known`): its queue entry is
	 * there only while the message is. */
	if (known == NULL)
		got = s_wget(t, seq, m);
	if (got != 0 && got != MDB_NOTFOUND && got != MDB_CORRUPTED)
		return s_wfail(t, got, "reading a message");
	if (want_id != NULL &&
	    (got != 0 || memcmp(m->id, want_id, STORE_ID_LEN) != 0))
		return store_fail(t->s, STORE_NOT_FOUND,
		    "message %llu with that id is not stored",
		    (unsigned long long)seq);
	rc = s_q_open(t, rcpt, seq, &c, NULL);
	if (rc != STORE_OK)
		return rc;
	rc = mdb_cursor_del(c, 0);
	mdb_cursor_close(c);
	if (rc != 0)
		return s_wfail(t, rc, "removing from a queue");
	if (got != 0) {
		/* Gone or damaged: nothing to tell the caller about it. */
		if (out != NULL)
			memset(out, 0, sizeof(*out));
		return STORE_OK;
	}
	return s_release_msg(t, known != NULL ? known : m, rcpt);
}

static int
s_dead_letter(struct store_txn *t, const char *rcpt, uint64_t seq,
    uint32_t code, uint64_t time_ms, uint64_t keep_until_ms)
{
	struct s_txn *bt = t->be;
	MDB_cursor *c;
	uint8_t dk[8 + STORE_NAME_MAX], dv[S_DEADVAL_LEN];
	uint8_t xk[16 + STORE_NAME_MAX], tv[8];
	MDB_val k = {s_dead_key(dk, seq, rcpt), dk}, d = {sizeof dv, dv};
	MDB_val xkv = {8 + k.mv_size, xk}, xdv = {sizeof tv, tv};
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	rc = s_q_open(t, rcpt, seq, &c, NULL);
	if (rc != STORE_OK)
		return rc;
	rc = mdb_cursor_del(c, 0);
	mdb_cursor_close(c);
	if (rc != 0)
		return s_wfail(t, rc, "removing from a queue");
	s_be32(dv, code);
	s_be64(dv + 4, time_ms);
	rc = mdb_put(bt->txn, bt->e->dead, &k, &d, 0);
	if (rc != 0)
		return s_wfail(t, rc, "storing a dead letter");
	s_be64(xk, keep_until_ms);
	memcpy(xk + 8, dk, k.mv_size);
	s_be64(tv, time_ms);
	rc = mdb_put(bt->txn, bt->e->dead_exp, &xkv, &xdv, 0);
	if (rc != 0)
		return s_wfail(t, rc, "storing a dead letter's retention");
	return STORE_OK;
}

/* Finds a dead letter: STORE_OK, STORE_NOT_FOUND or a spoiling code. */
static int
s_dead_find(struct store_txn *t, MDB_val *k, const char *rcpt, uint64_t seq)
{
	struct s_txn *bt = t->be;
	MDB_val d;
	int rc = mdb_get(bt->txn, bt->e->dead, k, &d);

	if (rc == MDB_NOTFOUND)
		return store_fail(t->s, STORE_NOT_FOUND,
		    "message %llu is no dead letter of %s",
		    (unsigned long long)seq, rcpt);
	if (rc != 0)
		return s_wfail(t, rc, "reading dead letters");
	return STORE_OK;
}

static int
s_redeliver(struct store_txn *t, const char *rcpt, uint64_t seq)
{
	struct s_txn *bt = t->be;
	uint8_t dk[8 + STORE_NAME_MAX], qv[S_QVAL_LEN];
	MDB_val k = {s_dead_key(dk, seq, rcpt), dk};
	MDB_val qk = {strlen(rcpt), (void *)rcpt}, qd = {sizeof qv, qv};
	bool held;
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	rc = s_dead_find(t, &k, rcpt, seq);
	if (rc != STORE_OK)
		return rc;
	rc = s_q_has(bt->txn, bt->e->queue, rcpt, seq, &held);
	if (rc != 0)
		return s_wfail(t, rc, "reading a queue");
	rc = mdb_del(bt->txn, bt->e->dead, &k, NULL);
	if (rc != 0)
		return s_wfail(t, rc, "removing a dead letter");
	if (held)
		return STORE_OK;
	s_be64(qv, seq);
	s_be32(qv + 8, 0);
	rc = mdb_put(bt->txn, bt->e->queue, &qk, &qd, MDB_NODUPDATA);
	if (rc != 0)
		return s_wfail(t, rc, "queueing a message");
	/* Its expiry may have been taken already: index it again. */
	{
		struct store_msg m;
		MDB_val mk = {8, qv}, md;
		rc = mdb_get(bt->txn, bt->e->msgs, &mk, &md);
		if (rc == 0 && s_decode(&md, seq, &m))
			return s_index_expiry(t, m.expires_ms, seq);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return s_wfail(t, rc, "reading a message");
	}
	return STORE_OK;
}

static int
s_purge(struct store_txn *t, const char *rcpt, uint64_t seq)
{
	struct s_txn *bt = t->be;
	uint8_t dk[8 + STORE_NAME_MAX];
	MDB_val k = {s_dead_key(dk, seq, rcpt), dk};
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	rc = s_dead_find(t, &k, rcpt, seq);
	if (rc != STORE_OK)
		return rc;
	rc = mdb_del(bt->txn, bt->e->dead, &k, NULL);
	if (rc != 0)
		return s_wfail(t, rc, "removing a dead letter");
	return s_release(t, seq);
}

static int
s_audit_append(struct store_txn *t, const uint8_t *rec, size_t len,
    const uint8_t head[STORE_HASH_LEN], uint64_t *audit_seq)
{
	struct s_txn *bt = t->be;
	uint8_t sk[8];
	MDB_val k = {sizeof sk, sk}, d = {len, (void *)rec};
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	s_be64(sk, bt->last_audit + 1);
	rc = mdb_put(bt->txn, bt->e->audit, &k, &d, MDB_APPEND);
	if (rc != 0)
		return s_wfail(t, rc, "appending an audit record");
	bt->last_audit++;
	memcpy(bt->head, head, STORE_HASH_LEN);
	bt->audit_changed = true;
	*audit_seq = bt->last_audit;
	return STORE_OK;
}

#define S_ANCHOR_LEN (8 + STORE_HASH_LEN)

static int
s_anchor_get(MDB_txn *txn, MDB_dbi meta, uint64_t *seq, uint8_t *hash)
{
	MDB_val k = {12, (void *)"audit_anchor"}, d;
	int rc = mdb_get(txn, meta, &k, &d);

	*seq = 0;
	memset(hash, 0, STORE_HASH_LEN);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc == 0 && d.mv_size != S_ANCHOR_LEN)
		rc = MDB_CORRUPTED;
	if (rc != 0)
		return rc;
	*seq = s_get64(d.mv_data);
	memcpy(hash, (const uint8_t *)d.mv_data + 8, STORE_HASH_LEN);
	return 0;
}

static int
s_audit_prune(
    struct store_txn *t, uint64_t upto, const uint8_t anchor[STORE_HASH_LEN])
{
	struct s_txn *bt = t->be;
	uint8_t was[STORE_HASH_LEN], val[S_ANCHOR_LEN];
	uint64_t from;
	MDB_cursor *c;
	MDB_val k, d;
	int rc = s_check(t);

	if (rc != STORE_OK)
		return rc;
	rc = s_anchor_get(bt->txn, bt->e->meta, &from, was);
	if (rc != 0)
		return s_wfail(t, rc, "reading the audit anchor");
	if (upto <= from)
		return STORE_OK;
	if (upto > bt->last_audit)
		return store_fail(t->s, STORE_ERROR,
		    "store: cannot archive audit record %llu: the last is %llu",
		    (unsigned long long)upto,
		    (unsigned long long)bt->last_audit);
	rc = mdb_cursor_open(bt->txn, bt->e->audit, &c);
	if (rc != 0)
		return s_wfail(t, rc, "removing archived audit records");
	/* The first each time: what a delete leaves the cursor on is
	 * LMDB's business. */
	while ((rc = mdb_cursor_get(c, &k, &d, MDB_FIRST)) == 0) {
		if (k.mv_size != 8) {
			rc = MDB_CORRUPTED;
			break;
		}
		if (s_get64(k.mv_data) > upto)
			break;
		rc = mdb_cursor_del(c, 0);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return s_wfail(t, rc, "removing archived audit records");
	s_be64(val, upto);
	memcpy(val + 8, anchor, STORE_HASH_LEN);
	rc = s_meta_put(bt->txn, bt->e->meta, "audit_anchor", val, sizeof val);
	if (rc != 0)
		return s_wfail(t, rc, "writing the audit anchor");
	return STORE_OK;
}

/* ---- reading ---------------------------------------------------------- */

static int
s_rbegin(struct store *s, MDB_txn **txn)
{
	struct s_env *e = s->be;
	MDB_txn *t = __atomic_exchange_n(&e->spare, NULL, __ATOMIC_ACQUIRE);
	int rc;

	if (t != NULL) {
		rc = mdb_txn_renew(t);
		if (rc == 0) {
			*txn = t;
			return STORE_OK;
		}
		mdb_txn_abort(t);
	}
	rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, txn);
	if (rc != 0)
		return s_fail(s, rc, "starting a read transaction");
	return STORE_OK;
}

/* Ends a read transaction begun by s_rbegin, keeping it for the next. */
static void
s_rend(struct store *s, MDB_txn *txn)
{
	struct s_env *e = s->be;
	MDB_txn *none = NULL;

	mdb_txn_reset(txn);
	if (!__atomic_compare_exchange_n(&e->spare, &none, txn, false,
		__ATOMIC_RELEASE, __ATOMIC_RELAXED))
		mdb_txn_abort(txn);
}

static uint8_t *
s_dup(const uint8_t *p, size_t len)
{
	uint8_t *q = malloc(len > 0 ? len : 1);

	if (q != NULL && len > 0)
		memcpy(q, p, len);
	return q;
}

static int
s_seen(struct store *s, const uint8_t id[STORE_ID_LEN], uint64_t *seq)
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	MDB_val k = {STORE_ID_LEN, (void *)id}, d;
	int rc = s_rbegin(s, &txn);

	if (rc != STORE_OK)
		return rc;
	rc = mdb_get(txn, e->dedup, &k, &d);
	if (rc == 0 && d.mv_size >= S_DEDUPVAL_LEN)
		*seq = s_get64(d.mv_data);
	s_rend(s, txn);
	if (rc == MDB_NOTFOUND)
		return store_fail(s, STORE_NOT_FOUND, "message id not seen");
	if (rc != 0)
		return s_fail(s, rc, "looking up a message id");
	if (d.mv_size < S_DEDUPVAL_LEN)
		return store_fail(s, STORE_ERROR,
		    "a message id record is damaged in the store");
	return STORE_OK;
}

static int
s_receipt(struct store *s, const uint8_t id[STORE_ID_LEN], uint8_t **receipt,
    size_t *len)
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	MDB_val k = {STORE_ID_LEN, (void *)id}, d;
	int rc = s_rbegin(s, &txn);

	*receipt = NULL;
	*len = 0;
	if (rc != STORE_OK)
		return rc;
	rc = mdb_get(txn, e->dedup, &k, &d);
	if (rc == 0 && d.mv_size >= S_DEDUPVAL_LEN) {
		k.mv_size = 8;
		k.mv_data = d.mv_data; /* the seq */
		rc = mdb_get(txn, e->receipts, &k, &d);
	}
	if (rc == 0 && d.mv_size > 0) {
		*len = d.mv_size;
		*receipt = s_dup(d.mv_data, d.mv_size);
	}
	s_rend(s, txn);
	if (rc == MDB_NOTFOUND || (rc == 0 && *len == 0))
		return store_fail(s, STORE_NOT_FOUND,
		    "no receipt kept for this "
		    "message id");
	if (rc != 0)
		return s_fail(s, rc, "looking up a message id");
	if (*receipt == NULL)
		return store_fail(s, STORE_ERROR, "out of memory");
	return STORE_OK;
}

static int
s_get(struct store *s, uint64_t seq, struct store_msg *m, uint8_t **envelope,
    uint8_t **receipt)
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	uint8_t sk[8];
	MDB_val k = {sizeof sk, sk}, d;
	int rc = s_rbegin(s, &txn);

	if (rc != STORE_OK)
		return rc;
	s_be64(sk, seq);
	rc = mdb_get(txn, e->msgs, &k, &d);
	if (rc != 0) {
		s_rend(s, txn);
		if (rc == MDB_NOTFOUND)
			return store_fail(s, STORE_NOT_FOUND,
			    "message %llu is not in the store",
			    (unsigned long long)seq);
		return s_fail(s, rc, "reading a message");
	}
	if (!s_decode(&d, seq, m)) {
		s_rend(s, txn);
		memset(m, 0, sizeof(*m));
		return store_fail(s, STORE_ERROR,
		    "message %llu is damaged in the store",
		    (unsigned long long)seq);
	}
	if (envelope == NULL) {
		/* Metadata only: the pointers would outlive the txn. */
		s_rend(s, txn);
		m->envelope = NULL;
		m->receipt = NULL;
		return STORE_OK;
	}
	rc = mdb_get(txn, e->receipts, &k, &d);
	if (rc != 0) {
		s_rend(s, txn);
		memset(m, 0, sizeof(*m));
		if (rc == MDB_NOTFOUND)
			return store_fail(s, STORE_ERROR,
			    "message %llu has no receipt in the store",
			    (unsigned long long)seq);
		return s_fail(s, rc, "reading a receipt");
	}
	*envelope = s_dup(m->envelope, m->envelope_len);
	m->receipt_len = d.mv_size;
	*receipt = s_dup(d.mv_data, d.mv_size);
	s_rend(s, txn);
	m->envelope = *envelope;
	m->receipt = *receipt;
	if (*envelope == NULL || *receipt == NULL) {
		free(*envelope);
		free(*receipt);
		*envelope = NULL;
		*receipt = NULL;
		memset(m, 0, sizeof(*m));
		return store_fail(s, STORE_ERROR,
		    "out of memory reading message %llu",
		    (unsigned long long)seq);
	}
	return STORE_OK;
}

static int
s_queue(struct store *s, const char *rcpt, uint64_t after,
    struct store_entry *out, size_t max, size_t *n)
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	MDB_cursor *c;
	uint8_t qv[S_QVAL_LEN];
	MDB_val k = {strlen(rcpt), (void *)rcpt}, d = {sizeof qv, qv};
	int rc;

	if (after == UINT64_MAX)
		return STORE_OK;
	rc = s_rbegin(s, &txn);
	if (rc != STORE_OK)
		return rc;
	rc = mdb_cursor_open(txn, e->queue, &c);
	if (rc != 0) {
		s_rend(s, txn);
		return s_fail(s, rc, "opening a queue");
	}
	s_be64(qv, after + 1);
	s_be32(qv + 8, 0);
	rc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH_RANGE);
	while (rc == 0 && *n < max) {
		if (d.mv_size != S_QVAL_LEN) {
			rc = MDB_CORRUPTED;
			break;
		}
		out[*n].seq = s_get64(d.mv_data);
		out[*n].deliveries = s_get32((const uint8_t *)d.mv_data + 8);
		(*n)++;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP);
	}
	mdb_cursor_close(c);
	s_rend(s, txn);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*n = 0;
		return s_fail(s, rc, "reading a queue");
	}
	return STORE_OK;
}

static int
s_queue_depth(struct store *s, const char *rcpt, uint64_t *depth)
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k = {strlen(rcpt), (void *)rcpt}, d;
	size_t count = 0;
	int rc = s_rbegin(s, &txn);

	if (rc != STORE_OK)
		return rc;
	rc = mdb_cursor_open(txn, e->queue, &c);
	if (rc == 0) {
		rc = mdb_cursor_get(c, &k, &d, MDB_SET);
		if (rc == 0)
			rc = mdb_cursor_count(c, &count);
		mdb_cursor_close(c);
	}
	s_rend(s, txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return s_fail(s, rc, "counting a queue");
	*depth = count;
	return STORE_OK;
}

static int
s_participants(struct store *s, const char *case_ref,
    char (*out)[STORE_NAME_MAX + 1], size_t max, size_t *n)
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k = {strlen(case_ref), (void *)case_ref}, d;
	int rc = s_rbegin(s, &txn);

	if (rc != STORE_OK)
		return rc;
	rc = mdb_cursor_open(txn, e->cases, &c);
	if (rc != 0) {
		s_rend(s, txn);
		return s_fail(s, rc, "opening the cases");
	}
	rc = mdb_cursor_get(c, &k, &d, MDB_SET);
	while (rc == 0 && *n < max) {
		if (d.mv_size == 0 || d.mv_size > STORE_NAME_MAX) {
			rc = MDB_CORRUPTED;
			break;
		}
		memcpy(out[*n], d.mv_data, d.mv_size);
		out[*n][d.mv_size] = '\0';
		(*n)++;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP);
	}
	mdb_cursor_close(c);
	s_rend(s, txn);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*n = 0;
		return s_fail(s, rc, "reading a case's participants");
	}
	return STORE_OK;
}

static int
s_dead_letters(struct store *s, const char *rcpt, uint64_t after,
    struct store_dead *out, size_t max, size_t *n)
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	MDB_cursor *c;
	uint8_t sk[8];
	MDB_val k = {sizeof sk, sk}, d;
	size_t rlen = rcpt != NULL ? strlen(rcpt) : 0;
	bool more = false;
	int rc;

	if (after == UINT64_MAX)
		return STORE_OK;
	rc = s_rbegin(s, &txn);
	if (rc != STORE_OK)
		return rc;
	rc = mdb_cursor_open(txn, e->dead, &c);
	if (rc != 0) {
		s_rend(s, txn);
		return s_fail(s, rc, "opening the dead letters");
	}
	s_be64(sk, after + 1);
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	for (; rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		const uint8_t *kp = k.mv_data, *dp = d.mv_data;
		size_t nl = k.mv_size - 8;
		struct store_dead *x;

		if (k.mv_size <= 8 || nl > STORE_NAME_MAX ||
		    d.mv_size != S_DEADVAL_LEN) {
			rc = MDB_CORRUPTED;
			break;
		}
		if (rcpt != NULL &&
		    (nl != rlen || memcmp(kp + 8, rcpt, nl) != 0))
			continue;
		if (*n == max) {
			more = s_get64(kp) == out[max - 1].seq;
			break;
		}
		x = &out[(*n)++];
		x->seq = s_get64(kp);
		memcpy(x->recipient, kp + 8, nl);
		x->recipient[nl] = '\0';
		x->code = s_get32(dp);
		x->time_ms = s_get64(dp + 4);
	}
	mdb_cursor_close(c);
	s_rend(s, txn);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*n = 0;
		return s_fail(s, rc, "reading the dead letters");
	}
	if (more) {
		/* Do not end the page inside one sequence's dead letters. */
		size_t keep = *n;

		while (keep > 0 && out[keep - 1].seq == out[max - 1].seq)
			keep--;
		if (keep > 0)
			*n = keep;
	}
	return STORE_OK;
}

static int
s_audit_each(struct store *s, uint64_t after,
    int (*fn)(void *arg, uint64_t seq, const uint8_t *rec, size_t len),
    void *arg, uint8_t head[STORE_HASH_LEN])
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	MDB_cursor *c;
	uint8_t sk[8];
	MDB_val k = {10, (void *)"audit_head"}, d;
	int rc = s_rbegin(s, &txn);

	if (rc != STORE_OK)
		return rc;
	memset(head, 0, STORE_HASH_LEN);
	rc = mdb_get(txn, e->meta, &k, &d);
	if (rc == 0 && d.mv_size == STORE_HASH_LEN)
		memcpy(head, d.mv_data, STORE_HASH_LEN);
	else if (rc == 0)
		rc = MDB_CORRUPTED;
	else if (rc == MDB_NOTFOUND)
		rc = 0;
	if (rc == 0)
		rc = mdb_cursor_open(txn, e->audit, &c);
	if (rc != 0) {
		s_rend(s, txn);
		return s_fail(s, rc, "reading the audit log");
	}
	if (after == UINT64_MAX) {
		rc = MDB_NOTFOUND;
	} else {
		s_be64(sk, after + 1);
		k.mv_size = sizeof sk;
		k.mv_data = sk;
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	}
	for (; rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 8) {
			rc = MDB_CORRUPTED;
			break;
		}
		if (fn(arg, s_get64(k.mv_data), d.mv_data, d.mv_size) != 0)
			break;
	}
	mdb_cursor_close(c);
	s_rend(s, txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return s_fail(s, rc, "reading the audit log");
	return STORE_OK;
}

static int
s_audit_anchor(struct store *s, uint64_t *seq, uint8_t hash[STORE_HASH_LEN])
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	int rc = s_rbegin(s, &txn);

	if (rc != STORE_OK)
		return rc;
	rc = s_anchor_get(txn, e->meta, seq, hash);
	s_rend(s, txn);
	if (rc != 0)
		return s_fail(s, rc, "reading the audit anchor");
	return STORE_OK;
}

static int
s_usage(struct store *s, uint64_t *used, uint64_t *size, uint64_t *limit)
{
	struct s_env *e = s->be;
	MDB_envinfo info;
	uint64_t high, free_b;
	int rc = mdb_env_info(e->env, &info);

	if (rc == 0)
		/* All of them: those the last commit freed are usable
		 * after the next, and an idle broker makes none. */
		rc = s_free_bytes(e, false, &free_b);
	if (rc != 0)
		return s_fail(s, rc, "reading the store's size");
	high = ((uint64_t)info.me_last_pgno + 1) * e->psize;
	*used = high > free_b ? high - free_b : 0;
	*size = info.me_mapsize;
	*limit = info.me_mapsize - e->reserve; /* as s_room */
	return STORE_OK;
}

/* Whether the head of a time-ordered index is due at now_ms (a key too
 * short for a time is: s_take_due removes it). */
static int
s_head_due(MDB_txn *txn, MDB_dbi dbi, uint64_t now_ms, bool *due)
{
	MDB_cursor *c;
	MDB_val k, d;
	int rc = mdb_cursor_open(txn, dbi, &c);

	*due = false;
	if (rc != 0)
		return rc;
	rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc == 0)
		*due = k.mv_size < 8 || s_get64(k.mv_data) <= now_ms;
	return rc;
}

/* s_forget_cases's walk, reading only: whether one of the next `look`
 * cases is due (or damaged); if none is, its place moves past them. */
static int
s_cases_due(
    struct s_env *e, MDB_txn *txn, uint64_t now_ms, size_t look, bool *due)
{
	MDB_cursor *c;
	MDB_val k = {strlen(e->case_pos), e->case_pos}, d;
	char pos[STORE_NAME_MAX + 1];
	size_t seen = 0;
	int rc = mdb_cursor_open(txn, e->case_until, &c);

	*due = false;
	if (rc != 0)
		return rc;
	memcpy(pos, e->case_pos, sizeof pos);
	rc = k.mv_size > 0 ? mdb_cursor_get(c, &k, &d, MDB_SET_RANGE)
			   : mdb_cursor_get(c, &k, &d, MDB_FIRST);
	if (rc == 0 && k.mv_size == strlen(pos) &&
	    memcmp(k.mv_data, pos, k.mv_size) == 0)
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	while (rc == 0 && seen < look && !*due) {
		if (k.mv_size == 0 || k.mv_size > STORE_NAME_MAX ||
		    d.mv_size != 8 || s_get64(d.mv_data) <= now_ms) {
			*due = true;
			break;
		}
		memcpy(pos, k.mv_data, k.mv_size);
		pos[k.mv_size] = '\0';
		seen++;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND) {
		pos[0] = '\0';
		rc = 0;
	}
	if (rc == 0 && !*due)
		memcpy(e->case_pos, pos, sizeof pos);
	return rc;
}

static int
s_due(struct store *s, uint64_t now_ms, size_t look, unsigned *out)
{
	struct s_env *e = s->be;
	MDB_txn *txn;
	bool due = false;
	int rc = s_rbegin(s, &txn);

	if (rc != STORE_OK)
		return rc;
	rc = s_head_due(txn, e->expiry, now_ms, &due);
	*out |= due ? STORE_DUE_EXPIRED : 0;
	if (rc == 0)
		rc = s_head_due(txn, e->dead_exp, now_ms, &due);
	*out |= due ? STORE_DUE_DEAD : 0;
	if (rc == 0)
		rc = s_head_due(txn, e->dedup_exp, now_ms, &due);
	*out |= due ? STORE_DUE_DEDUP : 0;
	if (rc == 0 && look > 0)
		rc = s_cases_due(e, txn, now_ms, look, &due);
	*out |= due && look > 0 ? STORE_DUE_CASES : 0;
	s_rend(s, txn);
	if (rc != 0)
		return s_fail(s, rc, "looking for what is due");
	return STORE_OK;
}

const struct store_ops store_lmdb_ops = {
    .name = "lmdb",
    .open = s_open,
    .close = s_close,
    .begin = s_begin,
    .commit = s_commit,
    .abort = s_abort,
    .next_seq = s_next_seq,
    .take_seq = s_take_seq,
    .put = s_put,
    .delivered = s_delivered,
    .ack = s_ack,
    .dead_letter = s_dead_letter,
    .redeliver = s_redeliver,
    .purge = s_purge,
    .expire_dedup = s_expire_dedup,
    .take_expired = s_take_expired,
    .expire_later = s_index_expiry,
    .take_dead_due = s_take_dead_due,
    .forget_cases = s_forget_cases,
    .audit_append = s_audit_append,
    .audit_prune = s_audit_prune,
    .seen = s_seen,
    .receipt = s_receipt,
    .get = s_get,
    .queue = s_queue,
    .queue_depth = s_queue_depth,
    .participants = s_participants,
    .dead_letters = s_dead_letters,
    .audit_each = s_audit_each,
    .audit_anchor = s_audit_anchor,
    .usage = s_usage,
    .due = s_due,
};
