/*
 * fsdir: syncing folders after a name in them changed (a new file, a
 * rename, a new folder), for the store, the audit archive and
 * libschakel's seen-ids file alike.
 */
#include "fsdir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

int
fsdir_sync(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc, saved;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	saved = errno;
	(void)close(fd);
	errno = saved;
	return rc;
}

int
fsdir_sync_parent(const char *path)
{
	char parent[PATH_MAX];
	size_t len = strlen(path);
	char *slash;

	if (len >= sizeof parent) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(parent, path, len + 1);
	/* "a/b/" names b: its trailing slashes are not the parent's. */
	while (len > 1 && parent[len - 1] == '/')
		parent[--len] = '\0';
	slash = strrchr(parent, '/');
	if (slash == NULL)
		return fsdir_sync(".");
	if (slash == parent)
		slash[1] = '\0'; /* "/x": the root */
	else
		*slash = '\0';
	return fsdir_sync(parent);
}
