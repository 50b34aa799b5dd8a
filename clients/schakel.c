/*
 * schakel: the command a partner's operator uses.  This file parses
 * subcommands and prints; key handling is in common/keys.c and message
 * handling in libschakel.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "clientconf.h"
#include "keys.h"
#include "log.h"
#include "schakel-config.h"
#include "schakel.h"
#include "units.h"

static void
s_usage(FILE *out)
{
	fprintf(out,
	    "usage: schakel keygen --party ID --out DIR\n"
	    "       schakel keygen --broker --out DIR\n"
	    "       schakel send [-c CONF] --type T --case C [--purpose P]\n"
	    "                    [--region GM0344] [--urgent] [--consent REF]\n"
	    "                    [--attr k=v]... [--ttl DURATION] [--notify]\n"
	    "                    [--receipt FILE] --payload FILE|-\n"
	    "       schakel receive [-c CONF] [--count N] [--timeout SECS] "
	    "[--json]\n"
	    "       schakel resolve [-c CONF] --type T --case C [--purpose P]\n"
	    "                    [--region GM0344] [--urgent] [--attr k=v]...\n"
	    "       schakel --version\n"
	    "\n"
	    "keygen writes DIR/ID.key (secret, mode 0600) and DIR/ID.pub, and\n"
	    "prints the YAML to declare the public keys in the configuration.\n"
	    "send, receive and resolve read the client configuration CONF\n"
	    "(default schakel-client.yaml).  Exit status: 0 done, 1 refused or\n"
	    "failed, 2 usage.\n");
}

/* Party ids are lowercase slugs; checked here too so that a bad id never
 * becomes a file name. */
static bool
s_valid_id(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 64 || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
			(s[i] >= '0' && s[i] <= '9') ||
			(s[i] == '-' && s[i + 1] != '-')))
			return false;
	return true;
}

static int
s_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"party", required_argument, NULL, 'p'},
	    {"broker", no_argument, NULL, 'b'},
	    {"out", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *party = NULL, *out = NULL;
	bool broker = false;
	struct keys_public pub;
	struct keys_error err;
	char sign[KEYS_TEXT_MAX], box[KEYS_TEXT_MAX], tr[KEYS_TEXT_MAX];
	struct stat st;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			party = optarg;
			break;
		case 'b':
			broker = true;
			break;
		case 'o':
			out = optarg;
			break;
		case 'h':
			s_usage(stdout);
			return 0;
		default:
			s_usage(stderr);
			return 2;
		}
	}
	if (out == NULL || (party == NULL) == !broker || optind != argc) {
		s_usage(stderr);
		return 2;
	}
	if (party != NULL && !s_valid_id(party)) {
		fprintf(stderr,
		    "schakel: invalid party id '%s': use lowercase letters, "
		    "digits and single hyphens, e.g. gemeente-utrecht\n",
		    party);
		return 2;
	}
	if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "schakel: '%s' is not a folder: %s\n", out,
		    errno ? strerror(errno) : "not a directory");
		return 1;
	}
	if (keys_generate(out, broker ? "broker" : party,
		broker ? KEYS_BROKER : KEYS_PARTY, &pub, &err) != 0) {
		fprintf(stderr, "schakel: %s\n", err.msg);
		return 1;
	}
	printf("# wrote %s/%s.key (secret, mode 0600) and %s/%s.pub\n", out,
	    broker ? "broker" : party, out, broker ? "broker" : party);
	keys_encode(KEYS_ED25519, pub.sign, sign);
	keys_encode(KEYS_X25519, pub.box, box);
	keys_encode(KEYS_X25519, pub.transport, tr);
	if (broker) {
		printf("# broker public keys (give these to every party's "
		       "client configuration):\n"
		       "broker_keys:\n"
		       "  sign: %s\n"
		       "  transport: %s\n",
		    sign, tr);
	} else {
		printf("# add to the party's entry under 'parties:' (or use\n"
		       "# 'keys: %s/%s.pub'):\n"
		       "    keys:\n"
		       "      sign: %s\n"
		       "      box: %s\n"
		       "      transport: %s\n",
		    out, party, sign, box, tr);
	}
	return 0;
}

/* ---- send, resolve, receive ---- */

#define S_DEFAULT_CONF "schakel-client.yaml"

/* Print a failure as "schakel: CODE_NAME: sentence" and return exit 1. */
static int
s_refused(int rc, const char *sentence)
{
	fprintf(stderr, "schakel: %s: %s\n", schakel_errname(rc),
	    sentence != NULL && sentence[0] != '\0' ? sentence
						    : schakel_strerror(rc));
	return 1;
}

static void
s_hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Load the client configuration and connect.  Returns 0 or the exit
 * status. */
static int
s_open(const char *conf, struct clientconf *cc, struct schakel_client **c)
{
	struct schakel_client_opts opts;
	char err[SCHAKEL_ERROR_MAX + 64];
	int rc;

	if (clientconf_load(conf, cc, err, sizeof err) != 0) {
		fprintf(stderr, "schakel: %s\n", err);
		return 1;
	}
	clientconf_opts(cc, &opts);
	rc = schakel_connect(&opts, c, err, sizeof err);
	if (rc != SCHAKEL_OK)
		return s_refused(rc, err);
	return 0;
}

/* Read all of FILE (or stdin for "-"), at most max bytes. */
static int
s_read_payload(const char *path, size_t max, uint8_t **out, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = 65536, n = 0, r;
	uint8_t *buf, *nb;

	if (f == NULL) {
		fprintf(stderr, "schakel: cannot open '%s': %s\n", path,
		    strerror(errno));
		return -1;
	}
	buf = malloc(cap);
	while (buf != NULL) {
		if (n == cap) {
			if (cap > max) {
				fprintf(stderr,
				    "schakel: '%s' is larger than %zu bytes\n",
				    path, max);
				free(buf);
				buf = NULL;
				break;
			}
			nb = realloc(buf, cap * 2);
			if (nb == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	if (buf != NULL && (ferror(f) || n > max)) {
		fprintf(stderr, "schakel: cannot read '%s'%s\n", path,
		    n > max ? ": too large" : "");
		free(buf);
		buf = NULL;
	}
	if (f != stdin)
		fclose(f);
	if (buf == NULL)
		return -1;
	*out = buf;
	*len = n;
	return 0;
}

static int
s_attr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct schakel_attr *)a)->key,
	    ((const struct schakel_attr *)b)->key);
}

/* Split "k=v" arguments in place and sort them by key. */
static int
s_attrs(char **args, size_t n, struct schakel_attr *out)
{
	for (size_t i = 0; i < n; i++) {
		char *eq = strchr(args[i], '=');

		if (eq == NULL || eq == args[i]) {
			fprintf(stderr,
			    "schakel: --attr wants key=value, not '%s'\n",
			    args[i]);
			return -1;
		}
		*eq = '\0';
		out[i].key = args[i];
		out[i].value = eq + 1;
	}
	qsort(out, n, sizeof *out, s_attr_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(out[i - 1].key, out[i].key) == 0) {
			fprintf(stderr, "schakel: --attr %s is given twice\n",
			    out[i].key);
			return -1;
		}
	}
	return 0;
}

/* Write a receipt's signed bytes to a new file. */
static int
s_save_receipt(const char *path, const struct schakel_receipt *r)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL ||
	    fwrite(r->signed_receipt, 1, r->signed_receipt_len, f) !=
		r->signed_receipt_len) {
		fprintf(stderr, "schakel: cannot write '%s': %s\n", path,
		    strerror(errno));
		if (f != NULL)
			fclose(f);
		return -1;
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "schakel: cannot write '%s': %s\n", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static void
s_print_receipt(const struct schakel_receipt *r)
{
	char id[2 * SCHAKEL_ID_LEN + 1];

	s_hex(r->message_id, SCHAKEL_ID_LEN, id);
	printf("accepted %s store_seq=%" PRIu64 " accepted_ms=%" PRIu64, id,
	    r->store_seq, r->accepted_ms);
	for (size_t i = 0; i < r->n_recipients; i++)
		printf("%s%s (%s)", i == 0 ? " to " : ", ", r->recipients[i],
		    r->agreement_ids[i]);
	printf("\n");
}

/* send and resolve share their options. */
static int
s_send(int argc, char **argv, bool resolve_only)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"type", required_argument, NULL, 't'},
	    {"case", required_argument, NULL, 'C'},
	    {"purpose", required_argument, NULL, 'p'},
	    {"region", required_argument, NULL, 'r'},
	    {"urgent", no_argument, NULL, 'u'},
	    {"consent", required_argument, NULL, 'k'},
	    {"attr", required_argument, NULL, 'a'},
	    {"ttl", required_argument, NULL, 'T'},
	    {"notify", no_argument, NULL, 'n'},
	    {"receipt", required_argument, NULL, 'R'},
	    {"payload", required_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *conf = S_DEFAULT_CONF, *payload_path = NULL;
	const char *receipt_path = NULL, *why;
	char *attr_args[SCHAKEL_MAX_ATTRS];
	struct schakel_attr attrs[SCHAKEL_MAX_ATTRS];
	struct schakel_message m;
	struct schakel_client *c = NULL;
	struct schakel_receipt receipt;
	struct schakel_resolved res;
	struct units_duration ttl;
	struct clientconf cc;
	uint8_t *payload = NULL;
	size_t n_attrs = 0, payload_len = 0;
	int ch, rc, status;

	memset(&m, 0, sizeof m);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			conf = optarg;
			break;
		case 't':
			m.type = optarg;
			break;
		case 'C':
			m.case_ref = optarg;
			break;
		case 'p':
			m.purpose = optarg;
			break;
		case 'r':
			m.region = optarg;
			break;
		case 'u':
			m.urgent = true;
			break;
		case 'k':
			m.consent_ref = optarg;
			break;
		case 'a':
			if (n_attrs == SCHAKEL_MAX_ATTRS) {
				fprintf(stderr,
				    "schakel: at most %d attributes\n",
				    SCHAKEL_MAX_ATTRS);
				return 2;
			}
			attr_args[n_attrs++] = optarg;
			break;
		case 'T':
			if (units_parse_duration(optarg, false, &ttl, &why) !=
			    0) {
				fprintf(stderr, "schakel: --ttl %s: %s\n",
				    optarg, why);
				return 2;
			}
			m.ttl_ms = ttl.seconds * 1000;
			break;
		case 'n':
			m.notify_delivered = true;
			break;
		case 'R':
			receipt_path = optarg;
			break;
		case 'P':
			payload_path = optarg;
			break;
		case 'h':
			s_usage(stdout);
			return 0;
		default:
			s_usage(stderr);
			return 2;
		}
	}
	if (m.type == NULL || m.case_ref == NULL || optind != argc ||
	    (!resolve_only && payload_path == NULL) ||
	    (resolve_only && (payload_path != NULL || receipt_path != NULL))) {
		s_usage(stderr);
		return 2;
	}
	if (s_attrs(attr_args, n_attrs, attrs) != 0)
		return 2;
	m.attrs = attrs;
	m.n_attrs = n_attrs;
	status = s_open(conf, &cc, &c);
	if (status != 0)
		return status;
	if (m.purpose == NULL && cc.purpose[0] != '\0')
		m.purpose = cc.purpose;
	if (m.purpose == NULL) {
		fprintf(stderr,
		    "schakel: give --purpose, or 'purpose:' in "
		    "%s\n",
		    conf);
		schakel_close(&c);
		return 2;
	}
	if (resolve_only) {
		rc = schakel_resolve(c, &m, &res);
		if (rc != SCHAKEL_OK) {
			status = s_refused(rc, schakel_client_error(c));
		} else {
			for (size_t i = 0; i < res.n_recipients; i++)
				printf("%s %s\n", res.recipients[i].party_id,
				    res.recipients[i].agreement_id);
		}
		schakel_close(&c);
		return status;
	}
	if (s_read_payload(
		payload_path, (size_t)16 << 20, &payload, &payload_len) != 0) {
		schakel_close(&c);
		return 1;
	}
	m.payload = payload;
	m.payload_len = payload_len;
	rc = schakel_send(c, &m, &receipt);
	if (rc != SCHAKEL_OK) {
		status = s_refused(rc, schakel_client_error(c));
	} else {
		s_print_receipt(&receipt);
		if (receipt_path != NULL &&
		    s_save_receipt(receipt_path, &receipt) != 0)
			status = 1;
		schakel_receipt_clear(&receipt);
	}
	free(payload);
	schakel_close(&c);
	return status;
}

struct s_recv {
	bool json;
	bool failed; /* stdout could not take a message */
	struct schakel_client *c;
};

static void
s_json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		putchar(*s);
	}
	putchar('"');
}

/* Output failed (a full disk, a closed pipe): the message is refused,
 * and no more are taken, each of which would be refused in turn and
 * come again with its delivery count spent. */
static void
s_stop(struct s_recv *r)
{
	r->failed = true;
	schakel_receive_stop(r->c);
}

static int
s_on_message(void *arg, const struct schakel_delivery *d)
{
	struct s_recv *r = arg;
	char id[2 * SCHAKEL_ID_LEN + 1];
	size_t b64len = sodium_base64_encoded_len(
	    d->payload_len, sodium_base64_VARIANT_ORIGINAL);
	char *b64;

	s_hex(d->message_id, SCHAKEL_ID_LEN, id);
	if (!r->json) {
		fprintf(stderr,
		    "schakel: message %s from %s: %s on case %s (%zu bytes)\n",
		    id, d->sender, d->type, d->case_ref, d->payload_len);
		if (fwrite(d->payload, 1, d->payload_len, stdout) !=
			d->payload_len ||
		    fflush(stdout) != 0) {
			s_stop(r);
			return -1;
		}
		return 0;
	}
	b64 = malloc(b64len);
	if (b64 == NULL)
		return -1;
	sodium_bin2base64(b64, b64len, d->payload, d->payload_len,
	    sodium_base64_VARIANT_ORIGINAL);
	printf("{\"id\":\"%s\",\"sender\":", id);
	s_json_str(d->sender);
	printf(",\"type\":");
	s_json_str(d->type);
	printf(",\"case\":");
	s_json_str(d->case_ref);
	printf(",\"purpose\":");
	s_json_str(d->purpose);
	printf(",\"region\":");
	s_json_str(d->region);
	printf(",\"consent\":");
	s_json_str(d->consent_ref);
	printf(",\"attributes\":{");
	for (size_t i = 0; i < d->n_attrs; i++) {
		if (i > 0)
			putchar(',');
		s_json_str(d->attrs[i].key);
		putchar(':');
		s_json_str(d->attrs[i].value);
	}
	printf("},\"created_ms\":%" PRIu64 ",\"expires_ms\":%" PRIu64
	       ",\"accepted_ms\":%" PRIu64
	       ",\"urgent\":%s,\"delivery_count\":%u,\"payload\":\"%s\"}\n",
	    d->created_ms, d->expires_ms, d->accepted_ms,
	    d->urgent ? "true" : "false", (unsigned)d->delivery_count, b64);
	free(b64);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		s_stop(r);
		return -1;
	}
	return 0;
}

static void
s_on_notice(void *arg, const struct schakel_notice *n)
{
	static const char *const kinds[] = {
	    "unspecified", "delivered", "non_delivery", "dead_lettered"};
	struct s_recv *r = arg;
	const char *kind = (unsigned)n->kind < 4 ? kinds[n->kind] : "unknown";
	char id[2 * SCHAKEL_ID_LEN + 1];

	s_hex(n->message_id, SCHAKEL_ID_LEN, id);
	if (r->json) {
		printf("{\"notice\":\"%s\",\"id\":\"%s\",\"recipient\":", kind,
		    id);
		s_json_str(n->recipient);
		printf(",\"code\":\"%s\",\"time_ms\":%" PRIu64 "}\n",
		    schakel_errname(n->code), n->time_ms);
		if (fflush(stdout) != 0 || ferror(stdout))
			s_stop(r);
	} else {
		fprintf(stderr, "schakel: notice %s for %s to %s: %s\n", kind,
		    id, n->recipient, schakel_errname(n->code));
	}
}

static int
s_receive(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"count", required_argument, NULL, 'n'},
	    {"timeout", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *conf = S_DEFAULT_CONF, *why;
	struct s_recv r = {false, false, NULL};
	struct schakel_client *c = NULL;
	struct clientconf cc;
	uint64_t count = 0, secs = 0;
	bool has_timeout = false;
	size_t handed = 0;
	int ch, rc, status;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			conf = optarg;
			break;
		case 'n':
			if (units_parse_uint(optarg, 1000000, &count, &why) !=
			    0) {
				fprintf(stderr, "schakel: --count %s: %s\n",
				    optarg, why);
				return 2;
			}
			break;
		case 't':
			if (units_parse_uint(optarg, 86400, &secs, &why) != 0) {
				fprintf(stderr, "schakel: --timeout %s: %s\n",
				    optarg, why);
				return 2;
			}
			has_timeout = true;
			break;
		case 'j':
			r.json = true;
			break;
		case 'h':
			s_usage(stdout);
			return 0;
		default:
			s_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		s_usage(stderr);
		return 2;
	}
	status = s_open(conf, &cc, &c);
	if (status != 0)
		return status;
	r.c = c;
	schakel_set_notice_handler(c, s_on_notice, &r);
	rc = schakel_receive(c, (size_t)count,
	    has_timeout ? (int)secs * 1000 : -1, s_on_message, &r, &handed);
	if (rc != SCHAKEL_OK)
		status = s_refused(rc, schakel_client_error(c));
	else if (r.failed)
		status = 1;
	else if (schakel_client_error(c)[0] != '\0')
		fprintf(
		    stderr, "schakel: warning: %s\n", schakel_client_error(c));
	if (count > 0 && handed < count && rc == SCHAKEL_OK)
		fprintf(stderr,
		    "schakel: received %zu of %" PRIu64
		    " messages before the timeout\n",
		    handed, count);
	schakel_close(&c);
	return status;
}

int
main(int argc, char **argv)
{
	log_init("schakel", LOG_LEVEL_INFO, false);
	if (argc < 2) {
		s_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "keygen") == 0)
		return s_keygen(argc - 1, argv + 1);
	if (strcmp(argv[1], "send") == 0 || strcmp(argv[1], "resolve") == 0)
		return s_send(argc - 1, argv + 1, argv[1][0] == 'r');
	if (strcmp(argv[1], "receive") == 0)
		return s_receive(argc - 1, argv + 1);
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("schakel %s\n", SCHAKEL_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		s_usage(stdout);
		return 0;
	}
	fprintf(stderr, "schakel: unknown command '%s'\n", argv[1]);
	s_usage(stderr);
	return 2;
}
