/*
 * writer: the store's writer thread (see writer.h).  A mutex and a
 * condition hand a job over and back; an eventfd wakes the broker's poll
 * when one is done.
 */
#include "writer.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "text.h"

struct writer {
	struct store *store;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int fd;
	/* Under mu. */
	bool quit;
	bool busy; /* handed over, not taken back */
	bool done; /* finished; `res` holds the outcome (atomic stores) */
	writer_apply_fn fn;
	writer_again_fn again;
	void *arg;
	struct writer_result res;
};

static double
s_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs one job: a transaction, the group, the commit. */
static void
s_run(struct writer *w, writer_apply_fn fn, writer_again_fn again, void *arg,
    struct writer_result *res)
{
	struct store_txn *t = NULL;
	int rc;

	memset(res, 0, sizeof(*res));
	res->commit_s = -1;
	for (int attempt = 0;; attempt++) {
		res->began = false; /* of this attempt */
		rc = store_begin(w->store, &t);
		if (rc != STORE_OK)
			break;
		res->began = true;
		rc = fn(arg, t);
		if (rc == STORE_OK) {
			double t0 = s_now_s();
			rc = store_commit(&t);
			res->commit_s = s_now_s() - t0;
		} else {
			store_abort(&t);
		}
		if (rc == STORE_OK || attempt > 0 || again == NULL ||
		    !again(arg, rc))
			break;
	}
	res->rc = rc;
	if (rc != STORE_OK)
		text_copy(res->err, sizeof res->err, store_error(w->store));
}

static void *
s_main(void *arg)
{
	struct writer *w = arg;

	pthread_setname_np(pthread_self(), "schakeld-write");
	pthread_mutex_lock(&w->mu);
	for (;;) {
		writer_apply_fn fn;
		writer_again_fn again;
		void *job;
		struct writer_result res;
		uint64_t one = 1;

		while (!w->quit && !(w->busy && !w->done))
			pthread_cond_wait(&w->cv, &w->mu);
		if (!(w->busy && !w->done))
			break; /* quit, with nothing in hand */
		fn = w->fn;
		again = w->again;
		job = w->arg;
		pthread_mutex_unlock(&w->mu);
		s_run(w, fn, again, job, &res);
		pthread_mutex_lock(&w->mu);
		w->res = res;
		__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&w->cv);
		(void)!write(w->fd, &one, sizeof one);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

struct writer *
writer_new(struct store *s, char *err, size_t errlen)
{
	struct writer *w = calloc(1, sizeof(*w));
	sigset_t all, old;
	int rc;

	if (w == NULL) {
		text_copy(err, errlen, "out of memory");
		return NULL;
	}
	w->store = s;
	w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->fd < 0) {
		text_copy(err, errlen, "cannot make an eventfd for the writer");
		free(w);
		return NULL;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	/* Signals are the main thread's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&w->thread, NULL, s_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		text_copy(err, errlen, "cannot start the writer thread");
		close(w->fd);
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return NULL;
	}
	return w;
}

void
writer_destroy(struct writer **wp)
{
	struct writer *w = *wp;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->quit = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	close(w->fd);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
	*wp = NULL;
}

int
writer_fd(const struct writer *w)
{
	return w->fd;
}

bool
writer_busy(const struct writer *w)
{
	/* Only the caller's thread changes `busy`. */
	return w->busy;
}

bool
writer_finished(const struct writer *w)
{
	/* `done` is written under the lock, atomically for this look. */
	return w->busy && __atomic_load_n(&w->done, __ATOMIC_ACQUIRE);
}

void
writer_start(
    struct writer *w, writer_apply_fn fn, writer_again_fn again, void *arg)
{
	pthread_mutex_lock(&w->mu);
	w->fn = fn;
	w->again = again;
	w->arg = arg;
	__atomic_store_n(&w->done, false, __ATOMIC_RELAXED);
	w->busy = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

bool
writer_take(struct writer *w, bool wait, struct writer_result *out)
{
	bool got = false;
	uint64_t v;

	pthread_mutex_lock(&w->mu);
	while (wait && w->busy && !w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	if (w->busy && w->done) {
		*out = w->res;
		w->busy = false;
		__atomic_store_n(&w->done, false, __ATOMIC_RELAXED);
		got = true;
		(void)!read(w->fd, &v, sizeof v);
	}
	pthread_mutex_unlock(&w->mu);
	return got;
}
