/*
 * testutil: what several test programs need: a private temporary folder
 * that is removed afterwards, files written into it, development keys
 * generated into it, files (the broker's log) searched, and the broker's
 * metrics read over HTTP.  Tests
 * never write into the source tree.
 */
#ifndef SCHAKEL_TESTUTIL_H
#define SCHAKEL_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Creates a fresh private folder and writes its path into out (at least
 * 64 bytes).  Returns 0 or -1. */
int tu_mkdtemp(char *out, size_t len);

/* Removes a folder and everything in it.  Returns 0 or -1. */
int tu_rmrf(const char *dir);

/* Writes `text` to DIR/NAME (creating DIR/NAME's folder if needed).
 * Returns 0 or -1. */
int tu_write(const char *dir, const char *name, const char *text);

/* Generates keys for each party id in the NULL-terminated `parties` and
 * for the broker into DIR/keys (mode 0700).  Returns 0 or -1. */
int tu_keys(const char *dir, const char *const *parties);

/* Whether the file at `path` holds the bytes of `needle` (read whole;
 * binary files too).  False when it cannot be read. */
bool tu_file_has(const char *path, const char *needle);

/* How many lines of the file `path` have `needle`, or -1 when it cannot
 * be read. */
int tu_lines_with(const char *path, const char *needle);

/* The most tu_http_get reads (headers and body). */
#define TU_HTTP_MAX (512 * 1024)

/* GETs `path` from 127.0.0.1:port (5 s at most).  Returns the HTTP
 * status with the body in `body` (max bytes), or -1. */
int tu_http_get(unsigned port, const char *path, char *body, size_t max);

/* The value of one series ("name" or "name{label=\"v\"}") in a metrics
 * text, or -1. */
double tu_metric(const char *text, const char *series);

/* The metrics port from the "metrics=http://A:PORT" line of an endpoint
 * file (schakeld -E), read from the current position; 0 when none. */
unsigned tu_metrics_port(FILE *f);

#endif
