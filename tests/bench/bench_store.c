/*
 * bench_store: 1 KiB messages (two recipients each) put into the LMDB
 * store in group commits of 1, 16, 64 and 256, with fsync, on whatever
 * disk holds TMPDIR (or /tmp).  Prints msgs/s, commits/s and the p50/p99
 * commit latency per group size, and the conditions.  Not a timed test.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <time.h>

#include "store.h"
#include "testutil.h"

#define S_ENV_LEN 1024
#define S_MAP ((uint64_t)2 * 1024 * 1024 * 1024)

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

	return x < y ? -1 : x > y;
}

/* Runs one group size for about `budget` seconds in a fresh store. */
static int
s_run(const char *base, size_t group, bool sync, double budget,
    size_t max_commits)
{
	static uint8_t envelope[S_ENV_LEN], receipt[200];
	char dir[256], err[256];
	struct store_opts o = {.dir = dir, .map_size = S_MAP, .no_sync = !sync};
	struct store *s;
	struct store_msg m;
	double *lat, t0, elapsed;
	size_t commits = 0;
	uint64_t msgs = 0;

	if (snprintf(dir, sizeof dir, "%s/g%zu%s", base, group,
		sync ? "" : "-nosync") >= (int)sizeof dir)
		return -1;
	lat = calloc(max_commits, sizeof(*lat));
	s = store_open(&o, err, sizeof err);
	if (lat == NULL || s == NULL) {
		fprintf(
		    stderr, "bench_store: %s\n", s == NULL ? err : "no memory");
		free(lat);
		return -1;
	}
	memset(&m, 0, sizeof m);
	snprintf(m.sender, sizeof m.sender, "gemeente-utrecht");
	snprintf(m.type, sizeof m.type, "shv.aanmelding.v1");
	m.n_recipients = 2;
	snprintf(m.recipients[0], sizeof m.recipients[0], "team-west");
	snprintf(m.recipients[1], sizeof m.recipients[1], "kredietbank");
	snprintf(m.agreements[0], sizeof m.agreements[0], "schuldhulp-u");
	snprintf(m.agreements[1], sizeof m.agreements[1], "schuldhulp-u");
	for (size_t i = 0; i < sizeof envelope; i++)
		envelope[i] = (uint8_t)(i * 131);
	m.envelope = envelope;
	m.envelope_len = sizeof envelope;
	m.receipt = receipt;
	m.receipt_len = sizeof receipt;

	t0 = s_now();
	do {
		struct store_txn *t;
		double c0 = s_now();

		if (store_begin(s, &t) != STORE_OK)
			goto fail;
		for (size_t i = 0; i < group; i++) {
			m.seq = store_next_seq(t);
			memcpy(m.id, &m.seq, sizeof m.seq);
			snprintf(m.case_ref, sizeof m.case_ref, "zaak-%llu",
			    (unsigned long long)(m.seq % 5000));
			m.accepted_ms = m.seq;
			m.case_until_ms = m.seq + 86400000;
			if (store_put(t, &m, m.seq + 86400000) != STORE_OK) {
				store_abort(&t);
				goto fail;
			}
		}
		if (store_commit(&t) != STORE_OK)
			goto fail;
		lat[commits++] = s_now() - c0;
		msgs += group;
		elapsed = s_now() - t0;
	} while (elapsed < budget && commits < max_commits);

	qsort(lat, commits, sizeof(*lat), s_cmp);
	printf("%4zu%s %10.0f %10.0f %9.3f %9.3f %8zu\n", group,
	    sync ? " " : "*", (double)msgs / elapsed, (double)commits / elapsed,
	    lat[commits / 2] * 1e3, lat[commits * 99 / 100] * 1e3, commits);
	free(lat);
	store_close(&s);
	return 0;
fail:
	fprintf(stderr, "bench_store: %s\n", store_error(s));
	free(lat);
	store_close(&s);
	return -1;
}

int
main(int argc, char **argv)
{
	static const size_t groups[] = {1, 16, 64, 256};
	double budget = 2.0;
	char base[128];
	struct statfs fs;
	int rc = 0;

	if (argc > 1 && strcmp(argv[1], "--quick") == 0)
		budget = 0.3;
	if (tu_mkdtemp(base, sizeof base) != 0) {
		perror("bench_store: temporary folder");
		return 1;
	}
	printf("# store: LMDB, fsync on every commit, 1 KiB envelope + 200 B "
	       "receipt, 2 recipients, one writer\n");
	if (statfs(base, &fs) == 0)
		printf("# disk: %s (filesystem type 0x%lx%s), %.1f s per row\n",
		    base, (unsigned long)fs.f_type,
		    fs.f_type == 0x01021994 ? " tmpfs: fsync is free" : "",
		    budget);
	printf("%5s %10s %10s %9s %9s %8s\n", "group", "msgs/s", "commits/s",
	    "p50_ms", "p99_ms", "commits");
	for (size_t i = 0; i < sizeof groups / sizeof groups[0] && rc == 0; i++)
		rc = s_run(base, groups[i], true, budget, 1000000);
	/* The same without fsync: what the store costs in CPU alone. */
	if (rc == 0)
		rc = s_run(base, 256, false, budget, 1000000);
	if (rc == 0)
		printf("(* without fsync, for the CPU cost alone; never "
		       "used in production)\n");
	if (tu_rmrf(base) != 0)
		perror("bench_store: removing the temporary folder");
	return rc == 0 ? 0 : 1;
}
