/*
 * log: formats one line per event and writes it to stderr with a syslog
 * priority prefix.  It must not allocate (it is used on the out-of-memory
 * path) and never sees payloads or secrets.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_progname = "schakel";
static enum log_level s_max = LOG_LEVEL_INFO;
static bool s_prefix = true;

void
log_init(const char *progname, enum log_level max, bool prefix)
{
	if (progname != NULL)
		s_progname = progname;
	s_max = max;
	s_prefix = prefix;
}

/* Write one line; control characters in the formatted text are replaced
 * so that peer-supplied text can never forge a second log line. */
static void s_vlog(enum log_level level, int errnum, const char *fmt,
    va_list ap) __attribute__((format(printf, 3, 0)));

static void
s_vlog(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char line[1024], pfx[8] = "";
	int n;

	if (level > s_max)
		return;
	n = vsnprintf(line, sizeof line, fmt, ap);
	if (n < 0)
		return;
	for (char *p = line; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (s_prefix)
		snprintf(pfx, sizeof pfx, "<%d>", (int)level);
	/* One call, so the line is one write that another thread's line
	 * cannot split (glibc buffers an unbuffered stream's call). */
	fprintf(stderr, "%s%s: %s%s%s\n", pfx, s_progname, line,
	    errnum != 0 ? ": " : "", errnum != 0 ? strerror(errnum) : "");
}

#define S_DEFINE_LOG(name, level, with_errno) \
	void name(const char *fmt, ...) \
	{ \
		int saved = errno; \
		va_list ap; \
		va_start(ap, fmt); \
		s_vlog(level, with_errno ? saved : 0, fmt, ap); \
		va_end(ap); \
		errno = saved; \
	}

S_DEFINE_LOG(log_warn, LOG_LEVEL_WARNING, 1)
S_DEFINE_LOG(log_warnx, LOG_LEVEL_WARNING, 0)
S_DEFINE_LOG(log_notice, LOG_LEVEL_NOTICE, 0)
S_DEFINE_LOG(log_info, LOG_LEVEL_INFO, 0)
S_DEFINE_LOG(log_debug, LOG_LEVEL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	s_vlog(LOG_LEVEL_ERR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	s_vlog(LOG_LEVEL_ERR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
