/*
 * fsdir: making a folder's entries durable.  A file created or renamed
 * is on the disk only once its folder is synced as well (fsync of the
 * file covers its data, not its name).
 */
#ifndef SCHAKEL_FSDIR_H
#define SCHAKEL_FSDIR_H

/* Syncs the folder `dir` itself: 0, or -1 with errno set. */
int fsdir_sync(const char *dir);

/* Syncs the folder that holds `path` (a file or a folder; "." when it has
 * no slash): 0, or -1 with errno set. */
int fsdir_sync_parent(const char *path);

#endif
