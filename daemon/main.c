/*
 * schakeld: wires the broker's parts together.  It parses the command
 * line, loads the configuration and hands over to the modules; it holds
 * no logic of its own.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "conf.h"
#include "log.h"
#include "schakel-config.h"

static volatile sig_atomic_t s_stop, s_reload;

static void
s_on_signal(int sig)
{
	if (sig == SIGHUP)
		s_reload = 1;
	else
		s_stop = 1;
}

static void
s_usage(FILE *out)
{
	fprintf(out,
	    "usage: schakeld [-n] [-d] [-E FILE] -c FILE\n"
	    "  -c FILE  the configuration file\n"
	    "  -n       check the configuration and exit\n"
	    "  -d       log debug messages\n"
	    "  -E FILE  when ready, write the bound endpoints to FILE, one a\n"
	    "           line, then metrics=http://ADDRESS:PORT if metrics are on\n"
	    "  -V       print the version and exit\n");
}

/* Checks the configuration the way the daemon loads it; prints every
 * problem.  Returns the exit status. */
static int
s_check(const char *path)
{
	struct diags *d = diags_new();
	struct conf *conf;

	if (d == NULL)
		fatalx("out of memory");
	conf = conf_load(path, units_today(), d);
	diags_print(d, stderr);
	diags_destroy(&d);
	if (conf == NULL) {
		fprintf(stderr, "%s: configuration has errors\n", path);
		return 1;
	}
	printf("%s: configuration OK\n", path);
	conf_destroy(&conf);
	return 0;
}

int
main(int argc, char **argv)
{
	struct broker_opts opts = {0};
	bool check_only = false;
	enum log_level level = LOG_LEVEL_INFO;
	struct sigaction sa;
	struct broker *b;
	int ch, rc;

	while ((ch = getopt(argc, argv, "c:dnE:Vh")) != -1) {
		switch (ch) {
		case 'c':
			opts.conf_path = optarg;
			break;
		case 'd':
			level = LOG_LEVEL_DEBUG;
			break;
		case 'n':
			check_only = true;
			break;
		case 'E':
			opts.endpoint_file = optarg;
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
	if (opts.conf_path == NULL || optind != argc) {
		s_usage(stderr);
		return 2;
	}
	if (check_only) {
		log_init("schakeld", level, false);
		return s_check(opts.conf_path);
	}
	log_init("schakeld", level, true);
	if (codec_init() != SCHAKEL_OK)
		fatalx("libsodium could not be initialised");
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = s_on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) != 0 ||
	    sigaction(SIGINT, &sa, NULL) != 0 ||
	    sigaction(SIGHUP, &sa, NULL) != 0)
		fatal("sigaction");
	signal(SIGPIPE, SIG_IGN);
	notify_init();
	b = broker_new(&opts);
	rc = broker_run(b, &s_stop, &s_reload);
	broker_destroy(&b);
	log_notice("stopped");
	return rc;
}
