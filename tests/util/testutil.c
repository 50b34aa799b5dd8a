/*
 * testutil: temporary folders, files, keys and metrics for tests.  Kept
 * small and free of test-framework calls so that any test program can
 * link it.
 */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
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

/* GET `path` from 127.0.0.1:port.  Returns the HTTP status (body in
 * `body`), or -1. */
bool
tu_file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 0, len = 0, r;
	char *buf = NULL, *more;
	bool found = false, failed = false;

	if (f == NULL)
		return false;
	do {
		if (len == cap) {
			cap = cap > 0 ? 2 * cap : (size_t)1 << 16;
			more = realloc(buf, cap);
			if (more == NULL) {
				failed = true;
				break;
			}
			buf = more;
		}
		r = fread(buf + len, 1, cap - len, f);
		len += r;
	} while (r > 0);
	failed = failed || ferror(f);
	fclose(f);
	if (!failed)
		found = memmem(buf, len, needle, strlen(needle)) != NULL;
	free(buf);
	return found;
}

int
tu_lines_with(const char *path, const char *needle)
{
	char line[1024];
	int n = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(f);
	return n;
}

int
tu_http_get(unsigned port, const char *path, char *body, size_t max)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct timeval tv = {5, 0};
	char req[256], *buf = malloc(TU_HTTP_MAX);
	size_t len = 0;
	int fd, status = -1;
	const char *sep;

	if (buf == NULL)
		return -1;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
	    connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0)
		goto out;
	snprintf(req, sizeof req,
	    "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
	    path);
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
		goto out;
	for (;;) {
		ssize_t n = recv(fd, buf + len, TU_HTTP_MAX - 1 - len, 0);
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == TU_HTTP_MAX - 1)
			goto out;
	}
	buf[len] = '\0';
	sep = strstr(buf, "\r\n\r\n");
	if (sep == NULL || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
		status = -1;
		goto out;
	}
	snprintf(body, max, "%s", sep + 4);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return status;
}

double
tu_metric(const char *text, const char *series)
{
	size_t sl = strlen(series);

	for (const char *p = text; p != NULL && *p;) {
		if (strncmp(p, series, sl) == 0 && p[sl] == ' ')
			return strtod(p + sl + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

unsigned
tu_metrics_port(FILE *f)
{
	char line[256];

	while (fgets(line, sizeof line, f) != NULL) {
		const char *colon = strrchr(line, ':');
		char *end;
		unsigned long port;

		if (strncmp(line, "metrics=http://", 15) != 0 || colon == NULL)
			continue;
		port = strtoul(colon + 1, &end, 10);
		if ((*end == '\n' || *end == '\0') && port > 0 && port < 65536)
			return (unsigned)port;
	}
	return 0;
}
