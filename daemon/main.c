/*
 * schakeld: wires the broker's parts together.  It parses the command
 * line, loads the configuration and hands over to the modules; it holds
 * no logic of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "schakel-config.h"

static void
s_usage(FILE *out)
{
	fprintf(out,
	    "usage: schakeld [-n] [-d] -c FILE\n"
	    "  -c FILE  the configuration file\n"
	    "  -n       check the configuration and exit\n"
	    "  -d       log debug messages\n"
	    "  -V       print the version and exit\n");
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	bool check_only = false;
	enum log_level level = LOG_LEVEL_INFO;
	struct diags *d;
	struct conf *conf;
	int ch;

	while ((ch = getopt(argc, argv, "c:dnVh")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'd':
			level = LOG_LEVEL_DEBUG;
			break;
		case 'n':
			check_only = true;
			break;
		case 'V':
			printf("schakeld %s\n", SCHAKEL_VERSION);
			return 0;
		case 'h':
			s_usage(stdout);
			return 0;
		default:
			s_usage(stderr);
			return 2;
		}
	}
	if (path == NULL || optind != argc) {
		s_usage(stderr);
		return 2;
	}
	log_init("schakeld", level, !check_only);
	d = diags_new();
	if (d == NULL)
		fatalx("out of memory");
	conf = conf_load(path, units_today(), d);
	diags_print(d, stderr);
	if (conf == NULL) {
		diags_destroy(&d);
		if (check_only)
			fprintf(stderr, "%s: configuration has errors\n", path);
		else
			log_warnx(
			    "%s: configuration has errors, not starting", path);
		return 1;
	}
	diags_destroy(&d);
	if (check_only) {
		printf("%s: configuration OK\n", path);
		conf_destroy(&conf);
		return 0;
	}
	log_warnx("serving is not implemented yet; configuration %s loaded "
		  "(%zu parties, %zu routes)",
	    path, conf->nparties, conf->nroutes);
	conf_destroy(&conf);
	return 1;
}
