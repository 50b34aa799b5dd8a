/*
 * units: strict parsing of the scalar formats used in configuration
 * files: durations, sizes, dates, unsigned integers.  A value either
 * parses completely or is refused with a reason; nothing is guessed.
 */
#ifndef SCHAKEL_UNITS_H
#define SCHAKEL_UNITS_H

#include <stdbool.h>
#include <stdint.h>

/* A duration is either a number of seconds or a number of working days
 * (weekdays that are not declared holidays); exactly one is non-zero. */
struct units_duration {
	uint64_t seconds;
	uint32_t workdays;
};

/* Parses "30s", "5m", "12h", "28d", "8w" and, when `allow_workdays`,
 * "3 workdays" / "1 workday".  Returns 0, or -1 with *why set to a
 * static sentence.  Zero durations are refused. */
int units_parse_duration(const char *s, bool allow_workdays,
    struct units_duration *out, const char **why);

/* Parses "512B", "64KiB", "1MiB", "1GiB".  Returns 0 or -1 with *why. */
int units_parse_size(const char *s, uint64_t *out, const char **why);

/* Parses an unsigned decimal integer no larger than `max`, without sign,
 * spaces or leading zeros.  Returns 0 or -1 with *why. */
int
units_parse_uint(const char *s, uint64_t max, uint64_t *out, const char **why);

/* Parses an ISO 8601 calendar date "YYYY-MM-DD" (years 1970-9999) into
 * days since 1970-01-01.  Returns 0 or -1 with *why. */
int units_parse_date(const char *s, int32_t *days, const char **why);

/* Writes "YYYY-MM-DD" for `days` since 1970-01-01 into out[11]. */
void units_format_date(int32_t days, char out[static 11]);

/* Returns the day of the week of `days` since 1970-01-01: 0 = Monday. */
int units_weekday(int32_t days);

/* Returns days since 1970-01-01 for the current UTC date. */
int32_t units_today(void);

#endif
