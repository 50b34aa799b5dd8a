/* gen_config: writes the synthetic configuration to a folder, for use
 * outside the benchmark: gen_config DIR [PARTIES [FLOWS]]. */
#include <stdio.h>
#include <stdlib.h>

#include "gen.h"
#include "units.h"

int
main(int argc, char **argv)
{
	uint64_t parties = 10000, flows = 100000;
	struct gen_stats st;
	const char *why;

	if (argc < 2 || argc > 4 ||
	    (argc > 2 && units_parse_uint(argv[2], 1000000, &parties, &why)) ||
	    (argc > 3 && units_parse_uint(argv[3], 10000000, &flows, &why))) {
		fprintf(stderr, "usage: gen_config DIR [PARTIES [FLOWS]]\n");
		return 2;
	}
	if (gen_write(argv[1], parties, flows, &st) != 0) {
		perror("gen_config");
		return 1;
	}
	printf("%s: %zu parties, %zu agreements, %zu flows, %zu routes, "
	       "%zu bytes\n",
	    argv[1], st.parties, st.agreements, st.flows, st.routes, st.bytes);
	return 0;
}
