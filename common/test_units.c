/* Unit tests of the strict scalar parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "units.h"

static void
test_duration_units(void **state)
{
	struct units_duration d;
	const char *why;

	assert_int_equal(units_parse_duration("30s", false, &d, &why), 0);
	assert_int_equal(d.seconds, 30);
	assert_int_equal(units_parse_duration("5m", false, &d, &why), 0);
	assert_int_equal(d.seconds, 300);
	assert_int_equal(units_parse_duration("28d", false, &d, &why), 0);
	assert_int_equal(d.seconds, 28 * 86400);
	assert_int_equal(units_parse_duration("8w", false, &d, &why), 0);
	assert_int_equal(d.seconds, 8 * 7 * 86400);
	assert_int_equal(units_parse_duration("3 workdays", true, &d, &why), 0);
	assert_int_equal(d.workdays, 3);
	assert_int_equal(d.seconds, 0);
	assert_int_equal(units_parse_duration("1 workday", true, &d, &why), 0);
	assert_int_equal(d.workdays, 1);
}

static void
test_duration_refused(void **state)
{
	static const char *bad[] = {"", "30", "s", "-5m", "+5m", "05m", "5 m",
	    "5M", "0s", "1.5h", "3 workdays", "3 workday", "1 workdays",
	    "99999999999999999999s", "5mm", " 5m"};
	struct units_duration d;
	const char *why;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		bool wd = i == 11 || i == 12;
		why = NULL;
		assert_int_equal(
		    units_parse_duration(bad[i], wd, &d, &why), -1);
		assert_non_null(why);
	}
	assert_int_equal(
	    units_parse_duration("3 workdays", false, &d, &why), -1);
	assert_string_equal(why, "working days are only allowed in deadlines");
}

static void
test_size(void **state)
{
	uint64_t v;
	const char *why;

	assert_int_equal(units_parse_size("64KiB", &v, &why), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(units_parse_size("1MiB", &v, &why), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(units_parse_size("512B", &v, &why), 0);
	assert_int_equal(v, 512);
	assert_int_equal(units_parse_size("64KB", &v, &why), -1);
	assert_string_equal(why, "use binary units: KiB, MiB or GiB");
	assert_int_equal(units_parse_size("64", &v, &why), -1);
	assert_int_equal(units_parse_size("64 KiB", &v, &why), -1);
	assert_int_equal(units_parse_size("99999999999TiB", &v, &why), -1);
}

static void
test_uint(void **state)
{
	uint64_t v;
	const char *why;

	assert_int_equal(units_parse_uint("0", 10, &v, &why), 0);
	assert_int_equal(v, 0);
	assert_int_equal(units_parse_uint("10", 10, &v, &why), 0);
	assert_int_equal(units_parse_uint("11", 10, &v, &why), -1);
	assert_int_equal(units_parse_uint("010", 100, &v, &why), -1);
	assert_string_equal(why, "a number may not start with 0");
	assert_int_equal(units_parse_uint("-1", 100, &v, &why), -1);
	assert_int_equal(units_parse_uint("1e3", 10000, &v, &why), -1);
}

static void
test_dates(void **state)
{
	int32_t d;
	char out[11];
	const char *why;

	assert_int_equal(units_parse_date("1970-01-01", &d, &why), 0);
	assert_int_equal(d, 0);
	assert_int_equal(units_weekday(d), 3); /* Thursday */
	assert_int_equal(units_parse_date("2024-02-29", &d, &why), 0);
	units_format_date(d, out);
	assert_string_equal(out, "2024-02-29");
	assert_int_equal(units_parse_date("2026-11-29", &d, &why), 0);
	assert_int_equal(units_weekday(d), 6); /* Sunday */
	assert_int_equal(units_parse_date("2025-02-29", &d, &why), -1);
	assert_string_equal(why, "that day does not exist in that month");
	assert_int_equal(units_parse_date("2000-02-29", &d, &why), 0);
	assert_int_equal(units_parse_date("1900-02-28", &d, &why), -1);
	assert_int_equal(units_parse_date("2026-13-01", &d, &why), -1);
	assert_int_equal(units_parse_date("2026-1-01", &d, &why), -1);
	assert_int_equal(units_parse_date("2026-01-01T00:00", &d, &why), -1);
	assert_int_equal(units_parse_date("2026-04-31", &d, &why), -1);
	for (int32_t x = 0; x < 30000; x += 37) {
		int32_t back;
		units_format_date(x, out);
		assert_int_equal(units_parse_date(out, &back, &why), 0);
		assert_int_equal(back, x);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_duration_units),
	    cmocka_unit_test(test_duration_refused),
	    cmocka_unit_test(test_size),
	    cmocka_unit_test(test_uint),
	    cmocka_unit_test(test_dates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
