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

struct broker;

/* Handles one request of `len` bytes and sends the reply. */
void admin_handle(struct broker *b, const char *req, size_t len);

#endif
