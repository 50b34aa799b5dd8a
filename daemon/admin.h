/*
 * admin: answers schakelctl over the administration socket.  A request
 * is the command's words separated by NUL bytes; the reply's first line
 * is "ok" or "error: <sentence>", and the rest is a table for people or,
 * with --json, one JSON document.  Only metadata is ever shown, never a
 * payload.
 */
#ifndef SCHAKEL_ADMIN_H
#define SCHAKEL_ADMIN_H

#include <stddef.h>
#include <stdint.h>

struct broker;
struct store;
struct transport_client;

/* The longest request (its words and their NULs). */
#define ADMIN_REQ_MAX 4096

/* The administration side's state: the audit walk in progress.  Returns
 * it, or NULL with a sentence in err. */
struct admin *admin_new(struct store *s, char *err, size_t errlen);

/* Ends a walk still running (its client gets no answer); accepts NULL;
 * sets *ap to NULL. */
void admin_destroy(struct admin **ap);

/* Readable when an audit walk is done (the broker's poll watches it). */
int admin_fd(const struct admin *a);

/* Handles one request of `len` bytes from `c`: answers it, or starts an
 * audit walk that admin_poll answers when it is done. */
void admin_handle(struct broker *b, const struct transport_client *c,
    const char *req, size_t len);

/* Starts a round of archiving old audit records (broker.audit_archive)
 * when one is due and no walk runs; call it now and then (it looks at
 * the store at most once a minute). */
void admin_archive_tick(struct broker *b);

/* The time of the store's oldest audit record; 0 when there is none
 * (or it cannot be read, or is dated ahead of now). */
uint64_t admin_audit_oldest_ms(struct broker *b);

/* Answers the audit walk that finished, if one did, or finishes the
 * archive round that did (removing its records from the store). */
void admin_poll(struct broker *b);

/* Cancels the audit walk in progress, if any, and answers that it was
 * not finished (the broker is stopping). */
void admin_stop(struct broker *b);

#endif
