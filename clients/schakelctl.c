/*
 * schakelctl: the administrator's command.  `check` loads a configuration
 * exactly as schakeld does and reports every problem, or a one-screen
 * summary when there is none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "conf.h"
#include "log.h"
#include "schakel-config.h"

#define S_DEFAULT_SOCKET "/run/schakel/control.sock"

static void
s_usage(FILE *out)
{
	fprintf(out,
	    "usage: schakelctl check FILE\n"
	    "       schakelctl [-s SOCKET | -c FILE] [--json] COMMAND\n"
	    "       schakelctl --version\n"
	    "commands: status, parties, queues,\n"
	    "  deadletters list [PARTY], deadletters show SEQ,\n"
	    "  deadletters redeliver PARTY SEQ, deadletters purge PARTY SEQ,\n"
	    "  audit verify, audit export --case REF | --party PARTY\n"
	    "    [--since YYYY-MM-DD] [--until YYYY-MM-DD], reload\n");
}

static void
s_summary(const struct conf *c, int32_t today)
{
	size_t active = 0, expired = 0, future = 0, targets = 0;

	printf("%s: configuration OK (%zu file%s)\n", c->path, c->nfiles,
	    c->nfiles == 1 ? "" : "s");
	printf("  broker      %s",
	    c->broker.nendpoints ? c->broker.endpoints[0] : "-");
	for (size_t i = 1; i < c->broker.nendpoints; i++)
		printf(", %s", c->broker.endpoints[i]);
	printf("; data in %s\n", c->broker.data_dir);
	printf("  parties     %zu\n", c->nparties);
	for (size_t r = 0; r < c->nroles; r++) {
		size_t n = 0;
		for (size_t p = 0; p < c->nparties; p++)
			n += c->parties[p].role == &c->roles[r];
		printf("    %-18s %zu\n", c->roles[r].id, n);
	}
	printf("  message types %zu, stages %zu, deadlines %zu, holidays %zu\n",
	    c->ntypes, c->nstages, c->ndeadlines, c->nholidays);
	for (size_t a = 0; a < c->nagreements; a++) {
		const struct conf_agreement *ag = &c->agreements[a];
		if (conf_agreement_active(ag, today))
			active++;
		else if (ag->valid_until < today)
			expired++;
		else
			future++;
	}
	printf("  agreements  %zu: %zu active, %zu expired, %zu not yet valid; "
	       "%zu flows\n",
	    c->nagreements, active, expired, future, c->nflows);
	for (size_t r = 0; r < c->nroutes; r++)
		targets += c->routes[r].nto + c->routes[r].nfallback;
	printf("  routes      %zu, with %zu targets\n", c->nroutes, targets);
}

static int
s_check(int argc, char **argv)
{
	struct diags *d;
	struct conf *c;
	int32_t today = units_today();
	size_t warnings;

	if (argc != 2) {
		s_usage(stderr);
		return 2;
	}
	d = diags_new();
	if (d == NULL)
		fatalx("out of memory");
	c = conf_load(argv[1], today, d);
	diags_print(d, stderr);
	warnings = diags_count(d, DIAG_WARNING);
	if (c == NULL) {
		fprintf(stderr, "%s: %zu error%s, %zu warning%s\n", argv[1],
		    diags_count(d, DIAG_ERROR),
		    diags_count(d, DIAG_ERROR) == 1 ? "" : "s", warnings,
		    warnings == 1 ? "" : "s");
		diags_destroy(&d);
		return 1;
	}
	diags_destroy(&d);
	s_summary(c, today);
	if (warnings > 0)
		printf("  %zu warning%s (see above)\n", warnings,
		    warnings == 1 ? "" : "s");
	conf_destroy(&c);
	return 0;
}

/* Finds the admin socket: -s, then -c's configuration, then the
 * environment, then the default. */
static int
s_socket_path(const char *sock, const char *conf_path, char *out, size_t len)
{
	const char *env = getenv("SCHAKEL_SOCKET");

	if (sock != NULL)
		return snprintf(out, len, "%s", sock) < (int)len ? 0 : -1;
	if (conf_path != NULL) {
		struct diags *d = diags_new();
		struct conf *c =
		    d != NULL ? conf_load(conf_path, units_today(), d) : NULL;
		if (c == NULL) {
			if (d != NULL)
				diags_print(d, stderr);
			fprintf(stderr,
			    "schakelctl: %s has errors; use -s SOCKET\n",
			    conf_path);
			diags_destroy(&d);
			return -1;
		}
		snprintf(out, len, "%s", c->broker.admin_socket);
		conf_destroy(&c);
		diags_destroy(&d);
		return 0;
	}
	snprintf(
	    out, len, "%s", env != NULL && env[0] ? env : S_DEFAULT_SOCKET);
	return 0;
}

/* Connects to the socket once without ZeroMQ, which would wait for a
 * broker that is not there: a refused connection means the socket was
 * left behind by a broker that no longer runs.  Returns 0, or -1 after
 * saying why. */
static int
s_probe(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, rc;

	if (strlen(path) >= sizeof sun.sun_path)
		return 0; /* ZeroMQ says what is wrong with it */
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	rc = connect(fd, (struct sockaddr *)&sun, sizeof sun);
	if (rc != 0 && (errno == EACCES || errno == EPERM)) {
		fprintf(stderr,
		    "schakelctl: %s: %s; run as the schakel user or a member of "
		    "its group\n",
		    path, strerror(errno));
	} else if (rc != 0) {
		fprintf(stderr,
		    "schakelctl: cannot reach schakeld: %s: %s (schakeld is "
		    "not running, or this is not its admin socket)\n",
		    path, strerror(errno));
	}
	close(fd);
	return rc == 0 ? 0 : -1;
}

/* Sends one command and prints the answer.  Returns the exit status. */
static int
s_remote(const char *path, int argc, char **argv, bool json)
{
	char req[4096], ep[4200];
	size_t len = 0;
	struct stat st;
	void *ctx, *sock;
	zmq_msg_t reply;
	/* An audit walk reads the whole log (on a thread of the broker's,
	 * which goes on serving meanwhile): about a microsecond a record
	 * from memory, more from disk. */
	bool walk = argc > 0 && strcmp(argv[0], "audit") == 0;
	int timeout = walk ? 600000 : 30000, linger = 0, rc = 1;
	const char *data;
	size_t dlen;

	if (stat(path, &st) != 0 && errno != EACCES) {
		fprintf(stderr,
		    "schakelctl: cannot reach schakeld: %s: %s (is schakeld "
		    "running? is this its admin socket?)\n",
		    path, strerror(errno));
		return 1;
	}
	if (access(path, R_OK | W_OK) != 0) {
		fprintf(stderr,
		    "schakelctl: %s: %s; run as the schakel user or a member of "
		    "its group\n",
		    path, strerror(errno));
		return 1;
	}
	if (s_probe(path) != 0)
		return 1;
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]) + 1;
		if (len + n + 7 > sizeof req) {
			fprintf(
			    stderr, "schakelctl: the command is too long\n");
			return 2;
		}
		memcpy(req + len, argv[i], n);
		len += n;
	}
	if (json) {
		memcpy(req + len, "--json", 7);
		len += 7;
	}
	snprintf(ep, sizeof ep, "ipc://%s", path);
	ctx = zmq_ctx_new();
	sock = ctx != NULL ? zmq_socket(ctx, ZMQ_REQ) : NULL;
	if (sock == NULL ||
	    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
	    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
	    zmq_connect(sock, ep) != 0 || zmq_send(sock, req, len, 0) < 0) {
		fprintf(stderr,
		    "schakelctl: cannot talk to schakeld at %s: %s\n", path,
		    zmq_strerror(zmq_errno()));
		goto out;
	}
	zmq_msg_init(&reply);
	if (zmq_msg_recv(&reply, sock, 0) < 0) {
		fprintf(stderr,
		    "schakelctl: schakeld at %s did not answer within %d s\n",
		    path, timeout / 1000);
		zmq_msg_close(&reply);
		goto out;
	}
	data = zmq_msg_data(&reply);
	dlen = zmq_msg_size(&reply);
	if (dlen >= 3 && memcmp(data, "ok\n", 3) == 0) {
		fwrite(data + 3, 1, dlen - 3, stdout);
		rc = 0;
	} else {
		fprintf(stderr, "schakelctl: ");
		fwrite(data, 1, dlen, stderr);
	}
	zmq_msg_close(&reply);
out:
	if (sock != NULL)
		zmq_close(sock);
	if (ctx != NULL)
		zmq_ctx_term(ctx);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *sock = NULL, *conf_path = NULL;
	char path[4096];
	bool json = false;
	int i = 1;

	log_init("schakelctl", LOG_LEVEL_INFO, false);
	if (argc < 2) {
		s_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "check") == 0)
		return s_check(argc - 1, argv + 1);
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("schakelctl %s\n", SCHAKEL_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		s_usage(stdout);
		return 0;
	}
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
			sock = argv[++i];
		else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			conf_path = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else {
			s_usage(stderr);
			return 2;
		}
	}
	if (i == argc) {
		s_usage(stderr);
		return 2;
	}
	for (int k = i; k < argc; k++)
		if (strcmp(argv[k], "--json") == 0) {
			json = true;
			memmove(&argv[k], &argv[k + 1],
			    (size_t)(argc - k - 1) * sizeof(argv[0]));
			argc--;
			k--;
		}
	if (s_socket_path(sock, conf_path, path, sizeof path) != 0)
		return 1;
	return s_remote(path, argc - i, argv + i, json);
}
