/* Unit tests of idmap: inserts, duplicates, growth, and deletion keeping
 * every other key reachable (backward shift). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_get_del),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
