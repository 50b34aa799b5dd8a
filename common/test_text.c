/*
 * test_text: text_copy fits, cuts and terminates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "text.h"

static void
t_fits(void **state)
{
	char buf[8];

	(void)state;
	memset(buf, 'x', sizeof buf);
	assert_true(text_copy(buf, sizeof buf, "abc"));
	assert_string_equal(buf, "abc");
	/* Seven characters and the terminator fill it exactly. */
	assert_true(text_copy(buf, sizeof buf, "1234567"));
	assert_string_equal(buf, "1234567");
	assert_true(text_copy(buf, sizeof buf, ""));
	assert_string_equal(buf, "");
}

static void
t_cut(void **state)
{
	char buf[8];

	(void)state;
	assert_false(text_copy(buf, sizeof buf, "12345678"));
	assert_string_equal(buf, "1234567");
	assert_false(text_copy(buf, 1, "a"));
	assert_string_equal(buf, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_fits),
	    cmocka_unit_test(t_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
