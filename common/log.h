/*
 * log: one line per event on stderr, each prefixed with its syslog
 * priority as "<N>" so that journald keeps the level.  Never pass a
 * payload or secret to these functions.
 */
#ifndef SCHAKEL_LOG_H
#define SCHAKEL_LOG_H

#include <stdarg.h>
#include <stdbool.h>

/* Severity levels, numerically equal to syslog priorities. */
enum log_level {
	LOG_LEVEL_ERR = 3,
	LOG_LEVEL_WARNING = 4,
	LOG_LEVEL_NOTICE = 5,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

/* Set the program name and the most verbose level written.  When
 * `prefix` is false the "<N>" prefix is left out (for interactive
 * tools whose stderr is a terminal). */
void log_init(const char *progname, enum log_level max, bool prefix);

/* log_warn appends ": strerror(errno)"; log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Setup failures: log at error level and exit(1).  fatal appends errno. */
void
fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void
fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
