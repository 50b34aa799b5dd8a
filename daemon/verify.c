/*
 * verify: a ring of signature-check jobs and the worker threads that
 * work through it.  The broker's thread fills slots at `tail` and takes
 * them back at `head`; workers claim runs of slots at `claim` under the
 * lock, verify them without it, and mark each one done.
 */
#include "verify.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "merkle.h"
#include "schakel_err.h"

/* A worker takes at most this many jobs at once (consecutive jobs often
 * share a batch signature, which its cache then checks once), and then
 * the rest of the last one's unit, up to S_UNIT_MAX jobs in all. */
#define S_CHUNK_MAX 64
#define S_UNIT_MAX 256
#define S_CACHE_SLOTS 1024

struct s_slot {
	struct env *env;    /* decoded by the worker from buf */
	const uint8_t *buf; /* borrowed */
	size_t len, max_len;
	bool undecoded; /* buf did not decode: env is empty */
	void *arg;
	uint64_t unit;
	uint8_t pk[MERKLE_PK_LEN];
	uint8_t header_hash[ENV_HASH_LEN]; /* when env is not NULL */
	int rc;
	int done; /* atomic: set by the worker when rc is written */
};

struct verify_pool {
	pthread_mutex_t mu;
	pthread_cond_t work;
	pthread_cond_t up; /* a worker started */
	unsigned started; /* under mu: workers waiting for work at least once */
	size_t cap;
	struct s_slot *slots;
	/* Monotonic counters; a slot is counter % cap. */
	uint64_t head;  /* broker thread: next to pop */
	uint64_t tail;  /* written by the broker thread under mu */
	uint64_t claim; /* under mu: next for a worker */
	bool stop;      /* under mu */
	unsigned nthreads;
	uint64_t sig_checks; /* atomic: signatures the workers checked */
	pthread_t *threads;
	int wake_fd;
	struct merkle_cache *inline_cache; /* with no workers */
};

/* Verifies one job; counts in *checks (atomic) a signature it checked
 * rather than found in `cache`. */
static void
s_check(struct s_slot *s, struct merkle_cache *cache, uint64_t *checks)
{
	uint64_t hits, before = 0, after = 1;

	s->rc = env_decode_into(s->env, s->buf, s->len, s->max_len);
	if (s->rc != SCHAKEL_OK) {
		s->undecoded = true;
		__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
		return;
	}
	if (cache != NULL)
		merkle_cache_stats(cache, &hits, &before);
	s->rc = env_verify(s->env, s->pk, cache);
	if (cache != NULL)
		merkle_cache_stats(cache, &hits, &after);
	if (after != before)
		__atomic_fetch_add(checks, 1, __ATOMIC_RELAXED);
	/* The receipt's header hash, also off the broker's thread; also
	 * when the signature did not verify with this key, because the
	 * broker checks again with the sender's key of now after a
	 * reload. */
	env_header_hash(s->env, s->header_hash);
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
}

static void *
s_worker(void *arg)
{
	struct verify_pool *p = arg;
	struct merkle_cache *cache = merkle_cache_new(S_CACHE_SLOTS);

	/* Named, so that top -H and /proc show where the CPU goes. */
	pthread_setname_np(pthread_self(), "schakeld-verify");
	/* Counted as started once waiting: from the lock to the wait, no
	 * push can come between (see verify_pool_new). */
	pthread_mutex_lock(&p->mu);
	p->started++;
	pthread_cond_signal(&p->up);
	for (;;) {
		uint64_t first, n, avail;

		while (!p->stop && p->claim == p->tail)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->stop && p->claim == p->tail) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		/* A fair share of what waits, so that every worker has some. */
		avail = p->tail - p->claim;
		n = (avail + p->nthreads - 1) / p->nthreads;
		if (n > S_CHUNK_MAX)
			n = S_CHUNK_MAX;
		/* A unit (a bundle: in batches, 64 envelopes under one
		 * signature) split between workers had its signature checked
		 * by each: 2.8 checks a batch of 64, 2 us a message. */
		while (n < avail && n < S_UNIT_MAX &&
		    p->slots[(p->claim + n) % p->cap].unit ==
			p->slots[(p->claim + n - 1) % p->cap].unit)
			n++;
		first = p->claim;
		p->claim += n;
		if (p->claim != p->tail)
			pthread_cond_signal(&p->work);
		pthread_mutex_unlock(&p->mu);
		for (uint64_t i = first; i < first + n; i++)
			s_check(&p->slots[i % p->cap], cache, &p->sig_checks);
		{
			uint64_t one = 1;
			/* Only fails when the counter would overflow, and
			 * then it is readable anyway. */
			(void)!write(p->wake_fd, &one, sizeof one);
		}
		pthread_mutex_lock(&p->mu);
	}
	merkle_cache_destroy(&cache);
	return NULL;
}

struct verify_pool *
verify_pool_new(unsigned nthreads, size_t capacity)
{
	struct verify_pool *p;
	sigset_t all, old;

	if (capacity == 0 || nthreads > VERIFY_MAX_THREADS)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->wake_fd = -1;
	p->cap = capacity;
	p->slots = calloc(capacity, sizeof(*p->slots));
	p->threads = calloc(nthreads > 0 ? nthreads : 1, sizeof(*p->threads));
	if (p->slots == NULL || p->threads == NULL ||
	    pthread_mutex_init(&p->mu, NULL) != 0) {
		free(p->slots);
		free(p->threads);
		free(p);
		return NULL;
	}
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->up, NULL);
	if (nthreads == 0) {
		p->inline_cache = merkle_cache_new(S_CACHE_SLOTS);
		if (p->inline_cache == NULL) {
			verify_pool_destroy(&p);
			return NULL;
		}
		return p;
	}
	p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->wake_fd < 0) {
		verify_pool_destroy(&p);
		return NULL;
	}
	/* Signals are for the broker's thread (its poll is what they must
	 * interrupt): the workers start with all of them blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 0; i < nthreads; i++) {
		if (pthread_create(&p->threads[i], NULL, s_worker, p) != 0)
			break;
		p->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (p->nthreads < nthreads) {
		verify_pool_destroy(&p);
		return NULL;
	}
	/* Ready when every worker waits: the first pushes are then shared
	 * as verify_start and the units say, not taken by a worker that
	 * was still starting. */
	pthread_mutex_lock(&p->mu);
	while (p->started < p->nthreads)
		pthread_cond_wait(&p->up, &p->mu);
	pthread_mutex_unlock(&p->mu);
	return p;
}

void
verify_pool_destroy(struct verify_pool **pp)
{
	struct verify_pool *p;

	if (pp == NULL || *pp == NULL)
		return;
	p = *pp;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	for (uint64_t i = p->head; i < p->tail; i++)
		env_destroy(&p->slots[i % p->cap].env);
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	merkle_cache_destroy(&p->inline_cache);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->up);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p->slots);
	free(p);
	*pp = NULL;
}

int
verify_push(struct verify_pool *p, struct env *into, const uint8_t *buf,
    size_t len, size_t max_len, const uint8_t sender_pk[MERKLE_PK_LEN],
    uint64_t unit, void *arg)
{
	struct s_slot *s;

	if (into == NULL || buf == NULL || verify_room(p) == 0)
		return -1;
	s = &p->slots[p->tail % p->cap];
	s->env = into;
	s->buf = buf;
	s->len = len;
	s->max_len = max_len;
	s->undecoded = false;
	s->arg = arg;
	s->unit = unit;
	memcpy(s->pk, sender_pk, MERKLE_PK_LEN);
	s->rc = SCHAKEL_E_UNAVAILABLE;
	__atomic_store_n(&s->done, 0, __ATOMIC_RELAXED);
	if (p->nthreads == 0) {
		s_check(s, p->inline_cache, &p->sig_checks);
		p->tail++;
		return 0;
	}
	pthread_mutex_lock(&p->mu);
	p->tail++;
	/* Waking a worker is a system call: wake one when a chunk's worth
	 * waits; verify_start wakes them for the rest. */
	if (p->tail - p->claim >= S_CHUNK_MAX)
		pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

void
verify_start(struct verify_pool *p)
{
	if (p->nthreads == 0)
		return;
	pthread_mutex_lock(&p->mu);
	if (p->claim != p->tail)
		pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
}

size_t
verify_room(const struct verify_pool *p)
{
	return p->cap - (size_t)(p->tail - p->head);
}

size_t
verify_pending(const struct verify_pool *p)
{
	return (size_t)(p->tail - p->head);
}

uint64_t
verify_signature_checks(const struct verify_pool *p)
{
	return __atomic_load_n(&p->sig_checks, __ATOMIC_RELAXED);
}

unsigned
verify_threads(const struct verify_pool *p)
{
	return p->nthreads;
}

bool
verify_ready(const struct verify_pool *p)
{
	return p->head != p->tail &&
	    __atomic_load_n(&p->slots[p->head % p->cap].done, __ATOMIC_ACQUIRE);
}

bool
verify_pop(struct verify_pool *p, struct env **e, void **arg, int *rc,
    uint8_t header_hash[ENV_HASH_LEN])
{
	struct s_slot *s;

	if (!verify_ready(p))
		return false;
	s = &p->slots[p->head % p->cap];
	/* An envelope that did not decode is freed here, on the thread
	 * that made it. */
	if (s->undecoded)
		env_destroy(&s->env);
	*e = s->env;
	*arg = s->arg;
	*rc = s->rc;
	if (header_hash != NULL && s->env != NULL)
		memcpy(header_hash, s->header_hash, ENV_HASH_LEN);
	s->env = NULL;
	s->buf = NULL;
	s->arg = NULL;
	p->head++;
	return true;
}

int
verify_wake_fd(const struct verify_pool *p)
{
	return p->wake_fd;
}

void
verify_clear_wake(struct verify_pool *p)
{
	uint64_t v;

	if (p->wake_fd >= 0)
		(void)!read(p->wake_fd, &v, sizeof v);
}

void
verify_wait(struct verify_pool *p)
{
	verify_start(p);
	while (p->head != p->tail && !verify_ready(p)) {
		struct pollfd pfd = {.fd = p->wake_fd, .events = POLLIN};
		/* The timeout only guards against a wake already taken. */
		(void)poll(&pfd, 1, 10);
		verify_clear_wake(p);
	}
}
