/*
 * verify: decodes submitted envelopes and checks their sender signatures
 * on worker threads, so the broker's thread routes, commits and delivers
 * while the next messages are being verified.  Jobs come back in the order they
 * went in, so per-connection (and per-case) order is kept.
 *
 * Threads: every function is called by the broker's thread only; the
 * workers touch nothing but the jobs they were given and their own
 * signature caches.
 */
#ifndef SCHAKEL_VERIFY_H
#define SCHAKEL_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "env.h"

#define VERIFY_MAX_THREADS 64

struct verify_pool;

/* Starts `nthreads` workers (0: every job is verified at once, on the
 * caller's thread, inside verify_push) with room for `capacity` jobs.
 * Returns NULL when out of memory or threads. */
struct verify_pool *verify_pool_new(unsigned nthreads, size_t capacity);

/* Waits for the jobs being verified, drops every job not taken back
 * (their envelopes are destroyed, their `arg` and the buffers lent with
 * verify_push are not touched: those stay the caller's and must stay
 * valid until this returns, as the workers decode every job that
 * waits), stops the workers; accepts NULL and sets *pp to NULL. */
void verify_pool_destroy(struct verify_pool **pp);

/* Queues the encoded envelope buf[0..len): a worker decodes it
 * (env_decode with `max_len`) into `into` and checks it against
 * `sender_pk`.  `into` comes from env_new, made by the caller so that the
 * workers allocate nothing (memory a worker allocates lives in its own
 * malloc arena, and the broker thread frees it); the pool owns it until
 * verify_pop hands it back with `arg`, decoded, or frees it when it did
 * not decode.  buf is borrowed until then.  Jobs pushed one after the
 * other with the same `unit` (the envelopes of one inbound bundle, which
 * often share a batch signature) go to one worker together, up to 256.
 * Returns 0, or -1 when the pool is full (see verify_room) or `into` or
 * buf is NULL.  The check may wait for verify_start. */
int verify_push(struct verify_pool *p, struct env *into, const uint8_t *buf,
    size_t len, size_t max_len, const uint8_t sender_pk[MERKLE_PK_LEN],
    uint64_t unit, void *arg);

/* Makes sure the workers work on what was pushed: verify_push wakes them
 * only once a run of jobs has gathered.  Call after a round of pushes. */
void verify_start(struct verify_pool *p);

/* Jobs that may still be pushed. */
size_t verify_room(const struct verify_pool *p);

/* Jobs pushed and not popped yet. */
size_t verify_pending(const struct verify_pool *p);

/* Worker threads (0: checks run inside verify_push). */
unsigned verify_threads(const struct verify_pool *p);

/* Signatures checked so far (a batch signature its worker had checked
 * already is not checked again). */
uint64_t verify_signature_checks(const struct verify_pool *p);

/* Takes back the oldest job when it has been verified: returns true with
 * its envelope (NULL when it did not decode), `arg` and env_verify's or
 * env_decode's result, and, when the envelope is not NULL and
 * `header_hash` is not NULL, env_header_hash's (computed by the worker,
 * whatever the signature check said: a caller that checks again with
 * another key needs it too); false when there is no job or the oldest
 * one is not done yet (later ones wait behind it). */
bool verify_pop(struct verify_pool *p, struct env **e, void **arg, int *rc,
    uint8_t header_hash[ENV_HASH_LEN]);

/* True when verify_pop would return a job now. */
bool verify_ready(const struct verify_pool *p);

/* A file descriptor that becomes readable when a worker finished jobs
 * (-1 with no workers); poll it, then call verify_clear_wake. */
int verify_wake_fd(const struct verify_pool *p);
void verify_clear_wake(struct verify_pool *p);

/* Blocks until the oldest job is verified (returns at once when there is
 * none). */
void verify_wait(struct verify_pool *p);

#endif
