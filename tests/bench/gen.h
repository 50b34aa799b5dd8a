/*
 * gen: writes a large, valid, deterministic ecosystem configuration for
 * the configuration-load benchmark.
 */
#ifndef SCHAKEL_BENCH_GEN_H
#define SCHAKEL_BENCH_GEN_H

#include <stddef.h>

struct gen_stats {
	size_t parties;
	size_t flows;
	size_t agreements;
	size_t routes;
	size_t types;
	size_t bytes;
};

/* Writes DIR/schakel.yaml and the files it includes, with about
 * `parties` parties and exactly `flows` agreement flows, and a broker key
 * in DIR/keys.  Returns 0 or -1 (errno set). */
int
gen_write(const char *dir, size_t parties, size_t flows, struct gen_stats *st);

#endif
