/*
 * slowsync: a test fixture, preloaded into schakeld (LD_PRELOAD) by
 * tests that need the store's commits to take long or to fail: fdatasync
 * and fsync wait SLOWSYNC_MS milliseconds (from the environment) before
 * they do their work, as on a slow disk (only while the file
 * SLOWSYNC_WHILE names exists, when it is set), and while the file
 * SLOWSYNC_FAIL names exists they fail with EIO instead, as a failing
 * disk does (with ENOSPC, as a full one does, when SLOWSYNC_ERRNO is
 * "ENOSPC").  The daemon has no hook for this; like the file size limit
 * of t_disk_full, the slowness and the failure come from outside.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void
s_wait(void)
{
	const char *v = getenv("SLOWSYNC_MS"), *f = getenv("SLOWSYNC_WHILE");
	long ms = v != NULL ? strtol(v, NULL, 10) : 0;
	int saved = errno;
	struct timespec ts;

	if (ms <= 0)
		return;
	if (f != NULL && f[0] != '\0' && access(f, F_OK) != 0) {
		errno = saved;
		return;
	}
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Whether the sync should fail (errno set then). */
static int
s_failing(void)
{
	const char *f = getenv("SLOWSYNC_FAIL");
	int saved = errno;

	if (f == NULL || f[0] == '\0' || access(f, F_OK) != 0) {
		errno = saved;
		return 0;
	}
	f = getenv("SLOWSYNC_ERRNO");
	errno = f != NULL && strcmp(f, "ENOSPC") == 0 ? ENOSPC : EIO;
	return 1;
}

int
fdatasync(int fd)
{
	int (*real)(int);

	/* POSIX's way to take a function from dlsym. */
	*(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
	s_wait();
	if (s_failing())
		return -1;
	return real != NULL ? real(fd) : -1;
}

int
fsync(int fd)
{
	int (*real)(int);

	*(void **)&real = dlsym(RTLD_NEXT, "fsync");
	s_wait();
	if (s_failing())
		return -1;
	return real != NULL ? real(fd) : -1;
}
