/*
 * standalone: runs the fuzz target once over each file named on the
 * command line (or each file in a named directory, not its subdirectories),
 * without libFuzzer, so the target and its seeds are checked in every
 * ordinary build.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
s_run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		perror(path);
		if (f != NULL)
			fclose(f);
		return -1;
	}
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	free(buf);
	return 0;
}

int
main(int argc, char **argv)
{
	int count = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		DIR *d;
		struct dirent *de;

		if (stat(argv[i], &st) != 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (s_run_file(argv[i]) != 0)
				return 1;
			count++;
			continue;
		}
		d = opendir(argv[i]);
		if (d == NULL)
			return 1;
		while ((de = readdir(d)) != NULL) {
			char path[4096];

			if (de->d_name[0] == '.')
				continue;
			if (snprintf(path, sizeof path, "%s/%s", argv[i],
				de->d_name) >= (int)sizeof path)
				continue;
			/* Subdirectories hold the seeds' helper files. */
			if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
				continue;
			if (s_run_file(path) != 0) {
				closedir(d);
				return 1;
			}
			count++;
		}
		closedir(d);
	}
	printf("ran %d inputs\n", count);
	return count > 0 ? 0 : 1;
}
