/*
 * writer: a thread that writes the store for the broker, one group at a
 * time.  LMDB's write transactions are serial and bound to the thread
 * that began them, and a commit writes its pages and waits for the disk
 * before it returns: on the broker's own thread that was a quarter of
 * its time under load, and the writes themselves a third of the rest.
 * The broker records a group's writes and hands them over here; this
 * thread begins a transaction, has the group applied (a function the
 * broker gives), commits, and makes its fd readable.  Meanwhile the
 * broker decides the next group.
 *
 * One job at a time: writer_start only when no job is in hand (none
 * started, or its result taken); writer_take gives the result back (and
 * makes the writer idle again).
 * Between writer_start and writer_take the job's function and its
 * argument belong to this thread; the caller touches neither.
 */
#ifndef SCHAKEL_WRITER_H
#define SCHAKEL_WRITER_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

#define WRITER_ERR_MAX 256

struct writer;

/* Writes the group into t; returns STORE_OK to have it committed, or a
 * store code to have it dropped (that code is the job's result). */
typedef int (*writer_apply_fn)(void *arg, struct store_txn *t);

/* Called when the job's transaction failed with `rc` (dropped): true to
 * have the job run again, once, in a new transaction (the function has
 * made the job ready for that). */
typedef bool (*writer_again_fn)(void *arg, int rc);

/* The outcome of a job. */
struct writer_result {
	int rc;          /* STORE_OK when committed */
	double commit_s; /* how long store_commit took (-1 when none) */
	bool began;      /* false: no transaction could begin */
	char err[WRITER_ERR_MAX]; /* store_error() of the failure, or "" */
};

/* Starts the thread.  Returns NULL with a sentence in err. */
struct writer *writer_new(struct store *s, char *err, size_t errlen);

/* Waits for the job in hand (if any), stops the thread; accepts NULL;
 * sets *wp to NULL. */
void writer_destroy(struct writer **wp);

/* Readable while a finished job waits for writer_take. */
int writer_fd(const struct writer *w);

/* Whether a job is in hand (started, its result not yet taken). */
bool writer_busy(const struct writer *w);

/* Whether the job in hand is finished, its result waiting for
 * writer_take: a look without the lock, cheap enough to take between
 * any two things the caller does (writer_fd says the same by poll). */
bool writer_finished(const struct writer *w);

/* Hands a job over (the writer must not be busy); `again` may be NULL. */
void writer_start(
    struct writer *w, writer_apply_fn fn, writer_again_fn again, void *arg);

/* Takes back the finished job's result into *out: true when there was
 * one.  With `wait`, waits for a job in hand to finish. */
bool writer_take(struct writer *w, bool wait, struct writer_result *out);

#endif
