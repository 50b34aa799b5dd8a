/*
 * units: the one place where configuration scalars become numbers.  It
 * refuses anything ambiguous (signs, spaces, leading zeros, unknown
 * units, overflow) rather than guessing what the administrator meant.
 */
#include "units.h"

#include <string.h>
#include <time.h>

/* Reads leading digits into *out; returns the number of digits read, or
 * 0 when there are none, a leading zero, or overflow past `max`. */
static size_t
s_digits(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (i == 1 && s[0] == '0')
			return 0;
		if (v > (max - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	*out = v;
	return i;
}

int
units_parse_uint(const char *s, uint64_t max, uint64_t *out, const char **why)
{
	size_t n;

	if (s[0] == '\0' || s[0] < '0' || s[0] > '9') {
		*why = "expected an unsigned whole number";
		return -1;
	}
	n = s_digits(s, max, out);
	if (n == 0) {
		*why = s[0] == '0' && s[1] != '\0'
		    ? "a number may not start with 0"
		    : "the number is too large";
		return -1;
	}
	if (s[n] != '\0') {
		*why = "expected an unsigned whole number";
		return -1;
	}
	return 0;
}

int
units_parse_duration(const char *s, bool allow_workdays,
    struct units_duration *out, const char **why)
{
	static const struct {
		const char *unit;
		uint64_t factor;
	} units[] = {
	    {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}, {"w", 604800}};
	const uint64_t max = UINT64_C(100) * 365 * 86400;
	uint64_t v;
	size_t n;

	memset(out, 0, sizeof(*out));
	n = s_digits(s, max, &v);
	if (n == 0) {
		*why = allow_workdays
		    ? "expected a duration such as 30s, 5m, 12h, 28d, 8w or "
		      "3 workdays"
		    : "expected a duration such as 30s, 5m, 12h, 28d or 8w";
		return -1;
	}
	if (v == 0) {
		*why = "a duration must be longer than zero";
		return -1;
	}
	if (strcmp(s + n, " workdays") == 0 || strcmp(s + n, " workday") == 0) {
		if (!allow_workdays) {
			*why = "working days are only allowed in deadlines";
			return -1;
		}
		if ((v == 1) != (strcmp(s + n, " workday") == 0)) {
			*why = v == 1 ? "write '1 workday'"
				      : "write the plural, e.g. '3 workdays'";
			return -1;
		}
		if (v > 5 * 366) {
			*why = "at most 1830 workdays";
			return -1;
		}
		out->workdays = (uint32_t)v;
		return 0;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s + n, units[i].unit) == 0) {
			if (v > max / units[i].factor) {
				*why = "the duration is longer than 100 years";
				return -1;
			}
			out->seconds = v * units[i].factor;
			return 0;
		}
	}
	*why = allow_workdays ? "unknown unit: use s, m, h, d, w or workdays"
			      : "unknown unit: use s, m, h, d or w";
	return -1;
}

int
units_parse_size(const char *s, uint64_t *out, const char **why)
{
	static const struct {
		const char *unit;
		uint64_t factor;
	} units[] = {{"B", 1}, {"KiB", UINT64_C(1) << 10},
	    {"MiB", UINT64_C(1) << 20}, {"GiB", UINT64_C(1) << 30},
	    {"TiB", UINT64_C(1) << 40}};
	const uint64_t max = UINT64_C(1) << 50;
	uint64_t v;
	size_t n;

	n = s_digits(s, max, &v);
	if (n == 0) {
		*why = "expected a size such as 512B, 64KiB, 1MiB or 1GiB";
		return -1;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s + n, units[i].unit) == 0) {
			if (v > max / units[i].factor) {
				*why = "the size is too large";
				return -1;
			}
			*out = v * units[i].factor;
			return 0;
		}
	}
	if (strcmp(s + n, "KB") == 0 || strcmp(s + n, "MB") == 0 ||
	    strcmp(s + n, "GB") == 0 || strcmp(s + n, "kB") == 0) {
		*why = "use binary units: KiB, MiB or GiB";
		return -1;
	}
	*why = "unknown unit: use B, KiB, MiB or GiB";
	return -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int32_t
s_days_from_civil(int y, unsigned m, unsigned d)
{
	int era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int32_t)(era * 146097 + (int)doe - 719468);
}

static bool
s_is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int
units_parse_date(const char *s, int32_t *days, const char **why)
{
	static const unsigned mdays[] = {
	    31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y = 0;
	unsigned m = 0, d = 0, maxd;

	*why = "expected a date as YYYY-MM-DD, e.g. 2026-01-31";
	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (int i = 0; i < 10; i++) {
		if (i == 4 || i == 7)
			continue;
		if (s[i] < '0' || s[i] > '9')
			return -1;
	}
	for (int i = 0; i < 4; i++)
		y = y * 10 + (s[i] - '0');
	m = (unsigned)(s[5] - '0') * 10 + (unsigned)(s[6] - '0');
	d = (unsigned)(s[8] - '0') * 10 + (unsigned)(s[9] - '0');
	if (y < 1970) {
		*why = "dates before 1970 are not supported";
		return -1;
	}
	if (m < 1 || m > 12) {
		*why = "the month must be 01 to 12";
		return -1;
	}
	maxd = mdays[m - 1] + (m == 2 && s_is_leap(y));
	if (d < 1 || d > maxd) {
		*why = "that day does not exist in that month";
		return -1;
	}
	*days = s_days_from_civil(y, m, d);
	return 0;
}

void
units_format_date(int32_t days, char out[static 11])
{
	/* Hinnant's civil_from_days. */
	int z = days + 719468;
	int era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int y = (int)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;

	y += m <= 2;
	if (y < 0 || y > 9999) {
		memcpy(out, "0000-00-00", 11);
		return;
	}
	out[0] = (char)('0' + y / 1000);
	out[1] = (char)('0' + y / 100 % 10);
	out[2] = (char)('0' + y / 10 % 10);
	out[3] = (char)('0' + y % 10);
	out[4] = '-';
	out[5] = (char)('0' + m / 10);
	out[6] = (char)('0' + m % 10);
	out[7] = '-';
	out[8] = (char)('0' + d / 10);
	out[9] = (char)('0' + d % 10);
	out[10] = '\0';
}

int
units_weekday(int32_t days)
{
	/* 1970-01-01 was a Thursday (3 when Monday is 0). */
	int w = (int)((days % 7 + 7) % 7);
	return (w + 3) % 7;
}

int32_t
units_today(void)
{
	return (int32_t)(time(NULL) / 86400);
}
