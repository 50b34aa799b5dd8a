/*
 * schakel: the command a partner's operator uses.  This file parses
 * subcommands and prints; key handling is in common/keys.c and message
 * handling in libschakel.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keys.h"
#include "log.h"
#include "schakel-config.h"

static void
s_usage(FILE *out)
{
	fprintf(out,
	    "usage: schakel keygen --party ID --out DIR\n"
	    "       schakel keygen --broker --out DIR\n"
	    "       schakel --version\n"
	    "\n"
	    "keygen writes DIR/ID.key (secret, mode 0600) and DIR/ID.pub, and\n"
	    "prints the YAML to declare the public keys in the configuration.\n");
}

/* Party ids are lowercase slugs; checked here too so that a bad id never
 * becomes a file name. */
static bool
s_valid_id(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 64 || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
			(s[i] >= '0' && s[i] <= '9') ||
			(s[i] == '-' && s[i + 1] != '-')))
			return false;
	return true;
}

static int
s_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"party", required_argument, NULL, 'p'},
	    {"broker", no_argument, NULL, 'b'},
	    {"out", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *party = NULL, *out = NULL;
	bool broker = false;
	struct keys_public pub;
	struct keys_error err;
	char sign[KEYS_TEXT_MAX], box[KEYS_TEXT_MAX], tr[KEYS_TEXT_MAX];
	struct stat st;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			party = optarg;
			break;
		case 'b':
			broker = true;
			break;
		case 'o':
			out = optarg;
			break;
		case 'h':
			s_usage(stdout);
			return 0;
		default:
			s_usage(stderr);
			return 2;
		}
	}
	if (out == NULL || (party == NULL) == !broker || optind != argc) {
		s_usage(stderr);
		return 2;
	}
	if (party != NULL && !s_valid_id(party)) {
		fprintf(stderr,
		    "schakel: invalid party id '%s': use lowercase letters, "
		    "digits and single hyphens, e.g. gemeente-utrecht\n",
		    party);
		return 2;
	}
	if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "schakel: '%s' is not a folder: %s\n", out,
		    errno ? strerror(errno) : "not a directory");
		return 1;
	}
	if (keys_generate(out, broker ? "broker" : party,
		broker ? KEYS_BROKER : KEYS_PARTY, &pub, &err) != 0) {
		fprintf(stderr, "schakel: %s\n", err.msg);
		return 1;
	}
	printf("# wrote %s/%s.key (secret, mode 0600) and %s/%s.pub\n", out,
	    broker ? "broker" : party, out, broker ? "broker" : party);
	keys_encode(KEYS_ED25519, pub.sign, sign);
	keys_encode(KEYS_X25519, pub.box, box);
	keys_encode(KEYS_X25519, pub.transport, tr);
	if (broker) {
		printf("# broker public keys (give these to every party's "
		       "client configuration):\n"
		       "broker_keys:\n"
		       "  sign: %s\n"
		       "  transport: %s\n",
		    sign, tr);
	} else {
		printf("# add to the party's entry under 'parties:' (or use\n"
		       "# 'keys: %s/%s.pub'):\n"
		       "    keys:\n"
		       "      sign: %s\n"
		       "      box: %s\n"
		       "      transport: %s\n",
		    out, party, sign, box, tr);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	log_init("schakel", LOG_LEVEL_INFO, false);
	if (argc < 2) {
		s_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "keygen") == 0)
		return s_keygen(argc - 1, argv + 1);
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("schakel %s\n", SCHAKEL_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		s_usage(stdout);
		return 0;
	}
	fprintf(stderr, "schakel: unknown command '%s'\n", argv[1]);
	s_usage(stderr);
	return 2;
}
