/*
 * testutil: temporary folders, files and keys for tests.  Kept small and
 * free of test-framework calls so that any test program can link it.
 */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys.h"

int
tu_mkdtemp(char *out, size_t len)
{
	const char *base = getenv("TMPDIR");
	int n = snprintf(out, len, "%s/schakel-test-XXXXXX",
	    base != NULL && base[0] != '\0' ? base : "/tmp");

	if (n < 0 || (size_t)n >= len)
		return -1;
	return mkdtemp(out) != NULL ? 0 : -1;
}

static int
s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int
tu_rmrf(const char *dir)
{
	return nftw(dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

int
tu_write(const char *dir, const char *name, const char *text)
{
	char path[4096];
	char *slash;
	FILE *f;

	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return -1;
	slash = strrchr(path, '/');
	if (slash != NULL && slash > path + strlen(dir)) {
		*slash = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return -1;
		*slash = '/';
	}
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	if (fputs(text, f) < 0) {
		fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

int
tu_keys(const char *dir, const char *const *parties)
{
	char keydir[4096];
	struct keys_public pub;
	struct keys_error err;

	snprintf(keydir, sizeof keydir, "%s/keys", dir);
	if (mkdir(keydir, 0700) != 0 && errno != EEXIST)
		return -1;
	if (keys_generate(keydir, "broker", KEYS_BROKER, &pub, &err) != 0)
		return -1;
	for (size_t i = 0; parties != NULL && parties[i] != NULL; i++)
		if (keys_generate(keydir, parties[i], KEYS_PARTY, &pub, &err) !=
		    0)
			return -1;
	return 0;
}
