/*
 * slowsync: a test fixture, preloaded into schakeld (LD_PRELOAD) by
 * tests that need the store's commits to take long: fdatasync and fsync
 * wait SLOWSYNC_MS milliseconds (from the environment) before they do
 * their work, as on a slow disk.  The daemon has no hook for this; like
 * the file size limit of t_disk_full, the slowness comes from outside.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void
s_wait(void)
{
	const char *v = getenv("SLOWSYNC_MS");
	long ms = v != NULL ? strtol(v, NULL, 10) : 0;
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
}

int
fdatasync(int fd)
{
	int (*real)(int);

	/* POSIX's way to take a function from dlsym. */
	*(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
	s_wait();
	return real != NULL ? real(fd) : -1;
}

int
fsync(int fd)
{
	int (*real)(int);

	*(void **)&real = dlsym(RTLD_NEXT, "fsync");
	s_wait();
	return real != NULL ? real(fd) : -1;
}
