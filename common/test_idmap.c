/* Unit tests of idmap: inserts, duplicates, growth, and deletion keeping
 * every other key reachable (backward shift). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idmap.h"

#define S_N 5000

static void
test_put_get_del(void **state)
{
	static char keys[S_N][16];
	static int vals[S_N];
	struct idmap m = {0};
	void *old = NULL;

	for (int i = 0; i < S_N; i++) {
		int n = snprintf(keys[i], sizeof keys[i], "party-%d", i);
		vals[i] = i;
		assert_int_equal(
		    idmap_put(&m, keys[i], (size_t)n, &vals[i], &old), 0);
	}
	assert_int_equal(m.len, S_N);
	assert_int_equal(idmap_put(&m, keys[7], 7, &vals[0], &old), 1);
	assert_ptr_equal(old, &vals[7]);
	/* Delete every third key, in a scattered order. */
	/* 1667 multiples of 3 below 5000; 7919 is coprime to 1667, so
	 * this visits each once. */
	for (int j = 0; j < (S_N + 2) / 3; j++) {
		int k = 3 * ((j * 7919) % ((S_N + 2) / 3));
		assert_ptr_equal(
		    idmap_del(&m, keys[k], strlen(keys[k])), &vals[k]);
	}
	for (int i = 0; i < S_N; i++) {
		void *v = idmap_get(&m, keys[i], strlen(keys[i]));
		if (i % 3 == 0)
			assert_null(v);
		else
			assert_ptr_equal(v, &vals[i]);
	}
	assert_null(idmap_del(&m, "nobody", 6));
	assert_int_equal(m.len, S_N - (S_N + 2) / 3);
	idmap_free(&m);
	assert_null(idmap_get(&m, keys[1], strlen(keys[1])));
}

/* Keys that differ little (message ids of one millisecond, party names
 * with a number) spread over the slots: in a table of 8,192, no slot is
 * the home of more than 8 of 5,000 such keys; and every byte counts. */
static void
test_hash_spreads(void **state)
{
	static uint8_t load[8192];
	uint8_t id[16] = {0x01, 0x93, 0x5e, 0x2a, 0x10, 0x00, 0x70};
	char name[32];

	(void)state;
	for (int kind = 0; kind < 2; kind++) {
		memset(load, 0, sizeof load);
		for (uint32_t i = 0; i < 5000; i++) {
			uint64_t h;
			if (kind == 0) {
				memcpy(id + 12, &i, 4);
				h = idmap_hash(id, sizeof id);
			} else {
				int n = snprintf(name, sizeof name,
				    "schuldhulp-regio-%u", i);
				h = idmap_hash(name, (size_t)n);
			}
			assert_true(++load[h & 8191] <= 8);
		}
	}
	/* Each byte of a 24-byte key changes the low 13 bits. */
	for (size_t i = 0; i < 24; i++) {
		uint8_t k[24] = {0};
		uint64_t a = idmap_hash(k, sizeof k);
		k[i] = 1;
		assert_int_not_equal(a & 8191, idmap_hash(k, sizeof k) & 8191);
		/* And the length. */
		assert_int_not_equal(idmap_hash(k, i), idmap_hash(k, i + 1));
	}
}

/* Random puts, gets and deletes on a pool of keys (prefixes of one
 * another among them, so lengths matter), against a plain array: after
 * each step the map holds exactly what the array says, through growth,
 * wrap-around probe runs and backward shifts. */
#define S_POOL 300
static void
test_random_against_array(void **state)
{
	static char keys[S_POOL][24];
	static size_t lens[S_POOL];
	static int vals[S_POOL];
	bool in[S_POOL] = {false};
	struct idmap m = {0};
	uint64_t rng = 0x2545f4914f6cdd1dULL;
	size_t count = 0;

	(void)state;
	for (int i = 0; i < S_POOL; i++) {
		/* "k", "k1", "k12", ... and numbered keys. */
		lens[i] = i < 12
		    ? (size_t)snprintf(
			  keys[i], sizeof keys[i], "k%.*s", i, "123456789012")
		    : (size_t)snprintf(keys[i], sizeof keys[i], "key-%d", i);
		vals[i] = i;
	}
	for (int step = 0; step < 200000; step++) {
		int k, op;
		void *old = NULL;
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		k = (int)(rng % S_POOL);
		op = (int)((rng >> 32) % 3);
		if (op == 0) {
			int rc =
			    idmap_put(&m, keys[k], lens[k], &vals[k], &old);
			assert_int_equal(rc, in[k] ? 1 : 0);
			if (rc == 1)
				assert_ptr_equal(old, &vals[k]);
			else
				count++;
			in[k] = true;
		} else if (op == 1) {
			void *v = idmap_del(&m, keys[k], lens[k]);
			assert_ptr_equal(v, in[k] ? &vals[k] : NULL);
			if (in[k])
				count--;
			in[k] = false;
		}
		assert_int_equal(m.len, count);
		if (step % 997 == 0 || op == 1)
			for (int i = 0; i < S_POOL; i++)
				assert_ptr_equal(
				    idmap_get(&m, keys[i], lens[i]),
				    in[i] ? &vals[i] : NULL);
	}
	idmap_free(&m);
}

/* A cleared map finds nothing and takes keys again; it keeps a table at
 * least a quarter full (the next group fills it without growing through
 * every size) and gives a sparser one back. */
static void
test_clear(void **state)
{
	static char keys[1000][16];
	static int vals[1000];
	struct idmap m = {0};
	void *old = NULL;
	size_t cap;

	(void)state;
	idmap_clear(&m); /* empty: nothing to do */
	assert_int_equal(m.cap, 0);
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(keys[i], sizeof keys[i], "id-%d", i);
		vals[i] = i;
		assert_int_equal(
		    idmap_put(&m, keys[i], (size_t)n, &vals[i], &old), 0);
	}
	cap = m.cap;
	assert_true(m.len * 4 >= cap);
	idmap_clear(&m);
	assert_int_equal(m.len, 0);
	assert_int_equal(m.cap, cap);
	for (int i = 0; i < 1000; i++)
		assert_null(idmap_get(&m, keys[i], strlen(keys[i])));
	for (int i = 0; i < 600; i++)
		assert_int_equal(
		    idmap_put(&m, keys[i], strlen(keys[i]), &vals[i], &old), 0);
	assert_int_equal(m.cap, cap); /* no growing */
	for (int i = 0; i < 1000; i++)
		assert_ptr_equal(idmap_get(&m, keys[i], strlen(keys[i])),
		    i < 600 ? &vals[i] : NULL);
	/* 600 of 2048: kept; then 10 of it: given back. */
	idmap_clear(&m);
	assert_int_equal(m.cap, cap);
	for (int i = 0; i < 10; i++)
		assert_int_equal(
		    idmap_put(&m, keys[i], strlen(keys[i]), &vals[i], &old), 0);
	idmap_clear(&m);
	assert_int_equal(m.cap, 0);
	assert_null(m.keys);
	idmap_free(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_get_del),
	    cmocka_unit_test(test_hash_spreads),
	    cmocka_unit_test(test_clear),
	    cmocka_unit_test(test_random_against_array),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
