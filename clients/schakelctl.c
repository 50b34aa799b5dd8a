/*
 * schakelctl: the administrator's command.  `check` loads a configuration
 * exactly as schakeld does and reports every problem, or a one-screen
 * summary when there is none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"
#include "schakel-config.h"

static void
s_usage(FILE *out)
{
	fprintf(out,
	    "usage: schakelctl check FILE\n"
	    "       schakelctl --version\n");
}

static void
s_summary(const struct conf *c, int32_t today)
{
	size_t active = 0, expired = 0, future = 0, targets = 0;

	printf("%s: configuration OK (%zu file%s)\n", c->path, c->nfiles,
	    c->nfiles == 1 ? "" : "s");
	printf("  broker      %s",
	    c->broker.nendpoints ? c->broker.endpoints[0] : "-");
	for (size_t i = 1; i < c->broker.nendpoints; i++)
		printf(", %s", c->broker.endpoints[i]);
	printf("; data in %s\n", c->broker.data_dir);
	printf("  parties     %zu\n", c->nparties);
	for (size_t r = 0; r < c->nroles; r++) {
		size_t n = 0;
		for (size_t p = 0; p < c->nparties; p++)
			n += c->parties[p].role == &c->roles[r];
		printf("    %-18s %zu\n", c->roles[r].id, n);
	}
	printf("  message types %zu, stages %zu, deadlines %zu, holidays %zu\n",
	    c->ntypes, c->nstages, c->ndeadlines, c->nholidays);
	for (size_t a = 0; a < c->nagreements; a++) {
		const struct conf_agreement *ag = &c->agreements[a];
		if (conf_agreement_active(ag, today))
			active++;
		else if (ag->valid_until < today)
			expired++;
		else
			future++;
	}
	printf("  agreements  %zu: %zu active, %zu expired, %zu not yet valid; "
	       "%zu flows\n",
	    c->nagreements, active, expired, future, c->nflows);
	for (size_t r = 0; r < c->nroutes; r++)
		targets += c->routes[r].nto + c->routes[r].nfallback;
	printf("  routes      %zu, with %zu targets\n", c->nroutes, targets);
}

static int
s_check(int argc, char **argv)
{
	struct diags *d;
	struct conf *c;
	int32_t today = units_today();
	size_t warnings;

	if (argc != 2) {
		s_usage(stderr);
		return 2;
	}
	d = diags_new();
	if (d == NULL)
		fatalx("out of memory");
	c = conf_load(argv[1], today, d);
	diags_print(d, stderr);
	warnings = diags_count(d, DIAG_WARNING);
	if (c == NULL) {
		fprintf(stderr, "%s: %zu error%s, %zu warning%s\n", argv[1],
		    diags_count(d, DIAG_ERROR),
		    diags_count(d, DIAG_ERROR) == 1 ? "" : "s", warnings,
		    warnings == 1 ? "" : "s");
		diags_destroy(&d);
		return 1;
	}
	diags_destroy(&d);
	s_summary(c, today);
	if (warnings > 0)
		printf("  %zu warning%s (see above)\n", warnings,
		    warnings == 1 ? "" : "s");
	conf_destroy(&c);
	return 0;
}

int
main(int argc, char **argv)
{
	log_init("schakelctl", LOG_LEVEL_INFO, false);
	if (argc < 2) {
		s_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "check") == 0)
		return s_check(argc - 1, argv + 1);
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("schakelctl %s\n", SCHAKEL_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		s_usage(stdout);
		return 0;
	}
	fprintf(stderr, "schakelctl: unknown command '%s'\n", argv[1]);
	s_usage(stderr);
	return 2;
}
