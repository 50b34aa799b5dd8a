/*
 * bench_conf: how long schakeld takes to load and check a national-size
 * configuration (10,000 parties, 100,000 flows by default).  Prints the
 * figures and the conditions; it asserts nothing about speed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "gen.h"

static double
s_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
s_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	uint64_t parties = 10000, flows = 100000, runs = 5;
	char dir[] = "/tmp/schakel-bench-conf-XXXXXX", path[64], cmd[96];
	struct gen_stats st;
	double t[16];
	struct rusage ru;
	const char *why;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	if ((argc > 1 && units_parse_uint(argv[1], 1000000, &parties, &why)) ||
	    (argc > 2 && units_parse_uint(argv[2], 10000000, &flows, &why)) ||
	    (argc > 3 &&
		(units_parse_uint(argv[3], 16, &runs, &why) || runs == 0))) {
		fprintf(stderr, "usage: bench_conf [PARTIES [FLOWS [RUNS]]]\n");
		return 2;
	}
	if (mkdtemp(dir) == NULL || gen_write(dir, parties, flows, &st) != 0) {
		perror("bench_conf: generating");
		return 1;
	}
	snprintf(path, sizeof path, "%s/schakel.yaml", dir);
	for (uint64_t i = 0; i < runs; i++) {
		struct diags *d = diags_new();
		double t0 = s_now();
		struct conf *c = conf_load(path, units_today(), d);
		t[i] = s_now() - t0;
		if (c == NULL || diags_len(d) != 0) {
			diags_print(d, stderr);
			fprintf(stderr,
			    "bench_conf: the generated configuration "
			    "does not load clean\n");
			return 1;
		}
		conf_destroy(&c);
		diags_destroy(&d);
	}
	getrusage(RUSAGE_SELF, &ru);
	qsort(t, runs, sizeof(t[0]), s_cmp);
	printf("configuration: %zu parties, %zu agreements, %zu flows, %zu "
	       "routes, %zu message types, %.1f MiB of YAML in 4 files\n",
	    st.parties, st.agreements, st.flows, st.routes, st.types,
	    (double)st.bytes / (1 << 20));
	printf("machine: %ld cores online; %llu runs, load + full check each\n",
	    cores, (unsigned long long)runs);
	printf("load time: min %.3f s, median %.3f s, max %.3f s; peak RSS "
	       "%.0f MiB\n",
	    t[0], t[runs / 2], t[runs - 1], (double)ru.ru_maxrss / 1024);
	printf("conf_load_s=%.3f parties=%zu flows=%zu\n", t[runs / 2],
	    st.parties, st.flows);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : 1;
}
