/*
 * clientconf: the schakel command's client configuration file (YAML): the
 * broker's endpoint and pinned keys, this party's id and key file, the
 * folder of other parties' public keys, and the request timeout.  It
 * reads and checks the file; it never touches the secret key's contents.
 */
#ifndef SCHAKEL_CLIENTCONF_H
#define SCHAKEL_CLIENTCONF_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "schakel.h"

#define CLIENTCONF_ENDPOINT_MAX 256
#define CLIENTCONF_DEFAULT_TIMEOUT_MS 10000

struct clientconf {
	char endpoint[CLIENTCONF_ENDPOINT_MAX + 1];
	uint8_t broker_sign[SCHAKEL_KEY_LEN];
	uint8_t broker_transport[SCHAKEL_KEY_LEN];
	char party[SCHAKEL_NAME_MAX + 1];
	char key_file[PATH_MAX];  /* resolved against the file's folder */
	char peers[PATH_MAX];     /* "" when not configured */
	char seen_file[PATH_MAX]; /* "" when not configured */
	char purpose[SCHAKEL_NAME_MAX + 1]; /* default purpose, "" if none */
	int timeout_ms;
};

/* Reads and checks `path`.  Relative paths in it are taken relative to
 * the folder that holds it.  Returns 0 with *out filled in, or -1 with
 * "file:line:column: message" (or "file: message") in err. */
int clientconf_load(
    const char *path, struct clientconf *out, char *err, size_t errlen);

/* Fills the library's options from a loaded configuration; `opts` borrows
 * the strings of `cc`. */
void
clientconf_opts(const struct clientconf *cc, struct schakel_client_opts *opts);

#endif
