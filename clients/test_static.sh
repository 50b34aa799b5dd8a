#!/bin/sh
# test_static.sh LIBSCHAKEL.A INCLUDE-DIR INCLUDE-DIR CC...: the installed
# static library exports the public API only, and links into a program
# that has functions of its own named like the library's internals
# (fatal, log_info, keys_generate, env_build), which then run, not the
# library's.
set -eu
lib=$1
inc1=$2
inc2=$3
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
	echo "test_static.sh: $*" >&2
	exit 1
}

others=$(nm -g --defined-only "$lib" | awk 'NF == 3 && $3 !~ /^schakel_/ {print $3}')
[ -z "$others" ] || fail "libschakel.a exports more than schakel_*: $others"
nm -g --defined-only "$lib" | grep -q ' T schakel_connect$' ||
	fail "libschakel.a does not export schakel_connect"

cat >"$tmp/app.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "schakel.h"
#include "schakel_err.h"

/* The application's own functions, named like libschakel's internals. */
static int mine;
void fatal(const char *fmt, ...) { (void)fmt; mine++; }
void log_info(const char *fmt, ...) { (void)fmt; mine++; }
int keys_generate(void) { return ++mine; }
int env_build(void) { return ++mine; }

int
main(void)
{
	struct schakel_client_opts o;
	struct schakel_client *c = NULL;
	char err[256];
	int rc;

	memset(&o, 0, sizeof o);
	fatal("x");
	log_info("x");
	rc = schakel_connect(&o, &c, err, sizeof err);
	if (rc != SCHAKEL_E_BAD_ARGUMENT || c != NULL || err[0] == '\0' ||
	    keys_generate() != 3 || env_build() != 4 ||
	    strcmp(schakel_errname(rc), "BAD_ARGUMENT") != 0) {
		fprintf(stderr, "rc %d (%s) err '%s' mine %d\n", rc,
		    schakel_errname(rc), err, mine);
		return 1;
	}
	puts("ok");
	return 0;
}
C
"$@" -I"$inc1" -I"$inc2" -o "$tmp/app" "$tmp/app.c" "$lib" \
	$(pkg-config --libs libzmq libsodium libprotobuf-c) ||
	fail "a program with its own fatal/log_info/keys_generate/env_build does not link with libschakel.a"
out=$("$tmp/app") || fail "the program linked with libschakel.a failed"
[ "$out" = ok ] || fail "the program printed '$out'"
echo "test_static.sh: ok"
