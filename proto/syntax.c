/*
 * syntax: character classes of schakel.v1 text fields.  Pure functions;
 * the limits on length come from the caller's buffer sizes.
 */
#include "syntax.h"

#include <string.h>

static bool
s_lower_or_digit(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool
s_alnum(char c)
{
	return s_lower_or_digit(c) || (c >= 'A' && c <= 'Z');
}

bool
syntax_is_name(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n == 0 || n >= cap || !s_lower_or_digit(s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!s_lower_or_digit(s[i]) && s[i] != '.' && s[i] != '_' &&
		    s[i] != '-')
			return false;
	return true;
}

bool
syntax_is_ref(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n >= cap || (n > 0 && !s_alnum(s[0])))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!s_alnum(s[i]) && s[i] != '.' && s[i] != '_' &&
		    s[i] != '-' && s[i] != ':')
			return false;
	return true;
}

bool
syntax_is_region(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') ||
			(s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

bool
syntax_is_printable(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}
