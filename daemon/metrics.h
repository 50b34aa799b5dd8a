/*
 * metrics: Prometheus text exposition and a health check over HTTP
 * (libmicrohttpd, its own thread).  The broker's thread renders the text
 * once a second and hands a copy over; the HTTP thread only serves the
 * latest copy, so it never touches the broker's state.
 *
 *   GET /metrics  schakel_* metrics (text/plain; version=0.0.4)
 *   GET /healthz  200 "ok" while serving, 503 with a reason otherwise
 */
#ifndef SCHAKEL_METRICS_H
#define SCHAKEL_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct metrics;

/* Listens on "ADDRESS:PORT" (port 0: any free port).  Returns an owned
 * server, or NULL with a sentence in err. */
struct metrics *metrics_new(const char *addr, char *err, size_t errlen);

/* Stops the server; accepts NULL; sets *mp to NULL. */
void metrics_destroy(struct metrics **mp);

/* The port the server listens on. */
unsigned metrics_port(const struct metrics *m);

/* Replaces what /metrics serves with a copy of text[0..len), and what
 * /healthz says: healthy, or 503 with `reason`. */
void metrics_publish(struct metrics *m, const char *text, size_t len,
    bool healthy, const char *reason);

/* A growable text buffer for rendering. */
struct metrics_text {
	char *buf;
	size_t len;
	size_t cap;
	bool oom;
};

void metrics_printf(struct metrics_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void metrics_text_free(struct metrics_text *t);

#endif
