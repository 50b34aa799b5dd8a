/* Crash test (suite fault): while gemeente sends S_N messages to team-a
 * and team-a receives them, the broker is killed with SIGKILL at random
 * moments (seeded; the seed is printed, SCHAKEL_CRASH_SEED repeats a run)
 * and started again; then the same with SIGTERM, each of which must end
 * in a clean exit.  Afterwards every message the sender holds a
 * verified receipt for has reached team-a's application, none twice and
 * in order per case, and the audit chain verifies (schakelctl audit
 * verify).  libschakel itself resends the same envelope after a lost
 * answer; a message that still fails without a receipt may or may not
 * have been stored, and is sent again as a new message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "schakel.h"

#define S_N 300         /* messages sent */
#define S_DEADLINE_S 90 /* for the whole run, well under the timeout */
#define S_CASES 3       /* cases the messages are spread over */
#define S_MAX_GOT (2 * S_N)

static const char *s_schakeld, *s_schakelctl;

struct s_run {
	struct schakel_client *sender, *receiver;
	/* Sender: what it holds a receipt for.  `sent` counts messages
	 * finished; written by the sender thread only. */
	atomic_size_t sent;
	atomic_bool sender_done;
	int sender_error; /* a non-retryable code, or 0 */
	uint8_t receipt_id[S_N][SCHAKEL_ID_LEN];
	bool have[S_N];      /* a receipt for message i */
	unsigned resends;    /* sends that failed and were made again */
	unsigned duplicates; /* sends answered DUPLICATE_ID after a resend */

	/* Receiver: what the application was handed, in order. */
	pthread_mutex_t lock;
	size_t ngot;
	uint8_t got_id[S_MAX_GOT][SCHAKEL_ID_LEN];
	int got_index[S_MAX_GOT]; /* the number in the payload */
	char got_case[S_MAX_GOT][16];
	atomic_bool stop;
	int receiver_error;

	struct hx *h;
	bool sending, receiving; /* the threads run */
	pthread_t ts, tr;
};

/* Sends S_N messages; one that fails for want of a broker is sent again
 * (libschakel builds a new envelope, so it is a new message). */
static void *
s_sender(void *arg)
{
	struct s_run *r = arg;
	uint64_t until = hx_mono_ms() + S_DEADLINE_S * 1000;

	for (size_t i = 0; i < S_N; i++) {
		char text[32], zaak[16];
		struct schakel_message m;
		struct schakel_receipt rc_out;
		int rc;

		snprintf(zaak, sizeof zaak, "zaak-%zu", i % S_CASES);
		snprintf(text, sizeof text, "crash %zu", i);
		m = hx_msg(HX_TYPE_ONE, zaak, text);
		for (;;) {
			rc = schakel_send(r->sender, &m, &rc_out);
			if (rc == SCHAKEL_OK)
				break;
			/* A resend after a lost answer gets the original
			 * receipt (protocol 11.6), never DUPLICATE_ID:
			 * that is counted, and fails the test below. */
			if (rc == SCHAKEL_E_DUPLICATE_ID) {
				r->duplicates++;
				break;
			}
			if ((rc != SCHAKEL_E_UNAVAILABLE &&
				!schakel_err_retryable(rc)) ||
			    hx_mono_ms() > until || atomic_load(&r->stop)) {
				fprintf(stderr, "sender: message %zu: %s: %s\n",
				    i, schakel_errname(rc),
				    schakel_client_error(r->sender));
				r->sender_error = rc;
				atomic_store(&r->sender_done, true);
				return NULL;
			}
			r->resends++;
			hx_sleep_ms(50);
		}
		if (rc == SCHAKEL_OK) {
			r->have[i] = true;
			memcpy(r->receipt_id[i], rc_out.message_id,
			    SCHAKEL_ID_LEN);
			schakel_receipt_clear(&rc_out);
		}
		atomic_store(&r->sent, i + 1);
	}
	atomic_store(&r->sender_done, true);
	return NULL;
}

static int
s_on_message(void *arg, const struct schakel_delivery *d)
{
	struct s_run *r = arg;
	long k = hx_payload_num(d, "crash");

	if (k < 0)
		return -1;
	pthread_mutex_lock(&r->lock);
	if (r->ngot == S_MAX_GOT) {
		pthread_mutex_unlock(&r->lock);
		return -1;
	}
	memcpy(r->got_id[r->ngot], d->message_id, SCHAKEL_ID_LEN);
	r->got_index[r->ngot] = (int)k;
	snprintf(
	    r->got_case[r->ngot], sizeof r->got_case[0], "%s", d->case_ref);
	r->ngot++;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* Receives until told to stop; a lost broker is the library's business
 * (it reconnects within each call, with backoff). */
static void *
s_receiver(void *arg)
{
	struct s_run *r = arg;

	while (!atomic_load(&r->stop)) {
		int rc =
		    schakel_receive(r->receiver, 0, 300, s_on_message, r, NULL);

		if (rc != SCHAKEL_OK && rc != SCHAKEL_E_UNAVAILABLE) {
			fprintf(stderr, "receiver: %s: %s\n",
			    schakel_errname(rc),
			    schakel_client_error(r->receiver));
			r->receiver_error = rc;
			return NULL;
		}
	}
	return NULL;
}

/* Whether every id the sender holds a receipt for was handed over. */
static bool
s_all_received(struct s_run *r, size_t *missing)
{
	size_t sent = atomic_load(&r->sent), miss = 0;

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < sent; i++) {
		bool found = !r->have[i];

		for (size_t j = 0; j < r->ngot && !found; j++)
			found = memcmp(r->receipt_id[i], r->got_id[j],
				    SCHAKEL_ID_LEN) == 0;
		miss += !found;
	}
	pthread_mutex_unlock(&r->lock);
	*missing = miss;
	return miss == 0;
}

/* Stops the broker with `sig` (SIGTERM must end in a clean exit, 0),
 * and starts it again after a moment in which clients notice and
 * retry. */
static void
s_stop_and_restart(struct hx *h, int sig, unsigned *seed)
{
	int status = hx_stop(h, sig);

	if (sig == SIGTERM)
		assert_int_equal(status, 0);
	hx_sleep_ms((long)(rand_r(seed) % 200));
	assert_int_equal(hx_start(h), 0);
}

static int
s_cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* The standard ecosystem with a 1 s heartbeat: a dead broker is noticed
 * within 3 s. */
static int
s_setup(void **state)
{
	static char yaml[8192];
	const char *std = hx_yaml(), *hb = strstr(std, "heartbeat: 2s");
	struct s_run *r = calloc(1, sizeof *r);

	if (r == NULL || hb == NULL)
		return -1;
	snprintf(yaml, sizeof yaml, "%.*sheartbeat: 1s%s", (int)(hb - std), std,
	    hb + strlen("heartbeat: 2s"));
	pthread_mutex_init(&r->lock, NULL);
	r->h = hx_new(s_schakeld, yaml);
	if (r->h == NULL) {
		pthread_mutex_destroy(&r->lock);
		free(r);
		return -1;
	}
	*state = r;
	return 0;
}

/* Also after a failed assertion: stops the threads, the clients and the
 * broker, and removes the folder. */
static int
s_teardown(void **state)
{
	struct s_run *r = *state;
	int rc = 0;

	atomic_store(&r->stop, true);
	if (r->sending)
		pthread_join(r->ts, NULL);
	if (r->receiving)
		pthread_join(r->tr, NULL);
	schakel_close(&r->sender);
	schakel_close(&r->receiver);
	if (r->h != NULL && hx_destroy(&r->h) != 0)
		rc = -1;
	pthread_mutex_destroy(&r->lock);
	free(r);
	return rc;
}

/* The run: stops with `sig` at random moments while sending, and once
 * while receiving; then everything with a receipt must have arrived. */
static void
s_faults(void **state, int sig)
{
	const char *seed_env = getenv("SCHAKEL_CRASH_SEED");
	const unsigned first_seed = seed_env != NULL
	    ? (unsigned)strtoul(seed_env, NULL, 10)
	    : 20261129u;
	unsigned seed = first_seed;
	struct s_run *r = *state;
	struct hx *h = r->h;
	size_t kills, at[10], missing = 0;
	uint64_t until = hx_mono_ms() + S_DEADLINE_S * 1000;
	char out[4096];
	const char *verify[] = {"audit", "verify", NULL};

	kills = 5 + rand_r(&seed) % 6;
	printf("crash: seed %u (SCHAKEL_CRASH_SEED), %zu stops with %s, %d "
	       "messages\n",
	    first_seed, kills, sig == SIGKILL ? "SIGKILL" : "SIGTERM", S_N);
	/* All but the last kill while sending, at random points of its
	 * progress; the last while the receiver drains. */
	for (size_t k = 0; k + 1 < kills; k++)
		at[k] = 5 + (size_t)rand_r(&seed) % (S_N - 10);
	qsort(at, kills - 1, sizeof at[0], s_cmp_size);

	assert_int_equal(
	    hx_connect(h, HX_SENDER, 1000, &r->sender), SCHAKEL_OK);
	assert_int_equal(
	    hx_connect(h, HX_TEAM_A, 1000, &r->receiver), SCHAKEL_OK);
	assert_int_equal(pthread_create(&r->tr, NULL, s_receiver, r), 0);
	r->receiving = true;
	assert_int_equal(pthread_create(&r->ts, NULL, s_sender, r), 0);
	r->sending = true;

	for (size_t k = 0; k + 1 < kills; k++) {
		while (atomic_load(&r->sent) < at[k] &&
		    !atomic_load(&r->sender_done) && hx_mono_ms() < until)
			hx_sleep_ms(1);
		/* Somewhere inside a send: before, during or after the
		 * commit. */
		hx_sleep_ms((long)(rand_r(&seed) % 15));
		printf("crash: stop %zu after %zu sends\n", k + 1,
		    atomic_load(&r->sent));
		s_stop_and_restart(h, sig, &seed);
	}
	assert_int_equal(pthread_join(r->ts, NULL), 0);
	r->sending = false;
	assert_int_equal(r->sender_error, 0);
	assert_int_equal(atomic_load(&r->sent), S_N);
	hx_sleep_ms((long)(rand_r(&seed) % 100));
	printf("crash: stop %zu while receiving\n", kills);
	s_stop_and_restart(h, sig, &seed);

	while (!s_all_received(r, &missing) && hx_mono_ms() < until &&
	    r->receiver_error == 0)
		hx_sleep_ms(50);
	/* A little longer: a message delivered twice would show now. */
	hx_sleep_ms(1500);
	atomic_store(&r->stop, true);
	assert_int_equal(pthread_join(r->tr, NULL), 0);
	r->receiving = false;
	assert_int_equal(r->receiver_error, 0);
	printf("crash: %zu sent, %zu handed to the application, %u sends "
	       "made again, %u answered DUPLICATE_ID after a lost answer, "
	       "%zu with a receipt missing\n",
	    atomic_load(&r->sent), r->ngot, r->resends, r->duplicates, missing);
	assert_int_equal(missing, 0);
	/* The store keeps every receipt for the dedup window. */
	assert_int_equal(r->duplicates, 0);

	/* None twice to the application, in order per case, and every
	 * message number at least once. */
	{
		int last[S_CASES] = {-1, -1, -1};
		static bool seen[S_N];

		memset(seen, 0, sizeof seen);
		for (size_t i = 0; i < r->ngot; i++)
			if (r->got_index[i] >= 0 && r->got_index[i] < S_N)
				seen[r->got_index[i]] = true;
		for (int k = 0; k < S_N; k++)
			if (!seen[k])
				fail_msg("message %d never reached the "
					 "application",
				    k);

		for (size_t i = 0; i < r->ngot; i++) {
			int k = r->got_index[i];
			char zaak[16];

			for (size_t j = 0; j < i; j++)
				if (memcmp(r->got_id[i], r->got_id[j],
					SCHAKEL_ID_LEN) == 0)
					fail_msg("message %d handed over "
						 "twice",
					    k);
			assert_true(k >= 0 && k < S_N);
			snprintf(zaak, sizeof zaak, "zaak-%d", k % S_CASES);
			assert_string_equal(r->got_case[i], zaak);
			/* A message sent again (no receipt for the first
			 * try) may repeat its number, never go back. */
			assert_true(k >= last[k % S_CASES]);
			last[k % S_CASES] = k;
		}
	}

	if (hx_schakelctl(h, s_schakelctl, out, sizeof out, verify) != 0) {
		char run[300];
		DIR *d;
		struct dirent *de;

		/* Seen once under heavy parallel load: the admin socket was
		 * gone.  Say what the folder holds. */
		snprintf(run, sizeof run, "%s/run", h->dir);
		d = opendir(run);
		fprintf(stderr, "crash: %s holds:", run);
		while (d != NULL && (de = readdir(d)) != NULL)
			fprintf(stderr, " %s", de->d_name);
		fprintf(stderr, "\n");
		if (d != NULL)
			closedir(d);
		fail_msg("schakelctl audit verify failed: %s", out);
	}
	printf("crash: %s", out);
	assert_non_null(strstr(out, "audit chain verified"));
}

static void
t_crash(void **state)
{
	s_faults(state, SIGKILL);
}

/* SIGTERM at the same moments: each stop ends with exit status 0 (the
 * commit in progress finished, the envelopes taken in answered), and
 * the same holds afterwards. */
static void
t_stop(void **state)
{
	s_faults(state, SIGTERM);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(t_crash, s_setup, s_teardown),
	    cmocka_unit_test_setup_teardown(t_stop, s_setup, s_teardown),
	};

	if (argc != 3) {
		fprintf(stderr, "usage: %s SCHAKELD SCHAKELCTL\n", argv[0]);
		return 2;
	}
	s_schakeld = argv[1];
	s_schakelctl = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
