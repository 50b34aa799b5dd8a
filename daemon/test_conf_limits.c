/* Unit tests of deadline arithmetic: calendar limits and working days
 * that skip weekends and declared holidays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "conf.h"

static int32_t
s_day(const char *iso)
{
	const char *why;
	int32_t d = 0;

	assert_int_equal(units_parse_date(iso, &d, &why), 0);
	return d;
}

static void
s_expect(
    const struct conf *c, const char *from, const char *limit, const char *want)
{
	struct units_duration d;
	const char *why;
	char got[11];

	assert_int_equal(units_parse_duration(limit, true, &d, &why), 0);
	units_format_date(conf_limit_end(c, s_day(from), &d), got);
	assert_string_equal(got, want);
}

static void
test_workdays_skip_weekends(void **state)
{
	struct conf c = {0};

	/* Friday + 3 working days = Wednesday. */
	s_expect(&c, "2026-11-27", "3 workdays", "2026-12-02");
	/* Saturday + 1 working day = Monday. */
	s_expect(&c, "2026-11-28", "1 workday", "2026-11-30");
	/* Monday + 5 working days = next Monday. */
	s_expect(&c, "2026-11-30", "5 workdays", "2026-12-07");
}

static void
test_workdays_skip_holidays(void **state)
{
	struct conf_holiday h[3] = {0};
	struct conf c = {0};

	h[0].day = s_day("2026-12-25"); /* Friday */
	h[1].day = s_day("2026-12-26"); /* Saturday: no effect */
	h[2].day = s_day("2027-01-01"); /* Friday */
	c.holidays = h;
	c.nholidays = 3;
	assert_true(conf_is_holiday(&c, s_day("2026-12-26")));
	assert_false(conf_is_holiday(&c, s_day("2026-12-27")));
	/* Wednesday 23 Dec + 3 working days: Thu 24, (Fri 25 holiday),
	 * Mon 28, Tue 29. */
	s_expect(&c, "2026-12-23", "3 workdays", "2026-12-29");
	/* Across both Christmas and New Year: Thu 24 + 6 working days:
	 * 28, 29, 30, 31, (1 Jan holiday), 4, 5. */
	s_expect(&c, "2026-12-24", "6 workdays", "2027-01-05");
}

static void
test_calendar_limits(void **state)
{
	struct conf c = {0};

	/* The Wgs four weeks from a request for help. */
	s_expect(&c, "2026-11-29", "4w", "2026-12-27");
	s_expect(&c, "2026-11-29", "28d", "2026-12-27");
	/* Eight weeks to a decision, across a leap day. */
	s_expect(&c, "2028-02-01", "8w", "2028-03-28");
	/* Part of a day rounds up to the next day. */
	s_expect(&c, "2026-11-29", "12h", "2026-11-30");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_workdays_skip_weekends),
	    cmocka_unit_test(test_workdays_skip_holidays),
	    cmocka_unit_test(test_calendar_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
