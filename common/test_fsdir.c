/* Unit tests of fsdir: which folder is synced for a path, and failures
 * reported with errno. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsdir.h"

static void
test_sync_parent(void **state)
{
	char dir[] = "/tmp/schakel-fsdir-XXXXXX", sub[64], path[96];
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof sub, "%s/sub", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(path, sizeof path, "%s/file", sub);

	assert_int_equal(fsdir_sync(dir), 0);
	assert_int_equal(fsdir_sync_parent(path), 0); /* sub */
	assert_int_equal(fsdir_sync_parent(sub), 0);  /* dir */
	snprintf(path, sizeof path, "%s/sub//", dir);
	assert_int_equal(fsdir_sync_parent(path), 0);   /* dir, not sub */
	assert_int_equal(fsdir_sync_parent("/tmp"), 0); /* the root */
	assert_int_equal(fsdir_sync_parent("file"), 0); /* "." */

	/* A folder that is not there, and a file that is no folder. */
	snprintf(path, sizeof path, "%s/gone/file", dir);
	errno = 0;
	assert_int_equal(fsdir_sync_parent(path), -1);
	assert_int_equal(errno, ENOENT);
	snprintf(path, sizeof path, "%s/plain", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fclose(f), 0);
	errno = 0;
	assert_int_equal(fsdir_sync(path), -1);
	assert_int_equal(errno, ENOTDIR);
	snprintf(path, sizeof path, "%s/plain/x", dir);
	assert_int_equal(fsdir_sync_parent(path), -1);

	snprintf(path, sizeof path, "%s/plain", dir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(sub), 0);
	assert_int_equal(rmdir(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sync_parent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
