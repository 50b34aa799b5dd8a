/*
 * broker: the serving broker's state, shared by the files that serve:
 * broker.c (the loop, connections, the group commit), submit.c (resolve
 * and the checks on every submitted message) and deliver.c (credit,
 * delivery, acknowledgements, redelivery, expiry).  main.c only builds
 * it.  Everything runs on one thread and nothing here is locked; only
 * the decoding and signature checks of submitted envelopes run on the
 * threads of verify.c, and the store's writes on the writer's (writer.c):
 * a group in its hands (b->fly, until the broker takes the result back)
 * and the audit head are its alone.
 */
#ifndef SCHAKEL_BROKER_H
#define SCHAKEL_BROKER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "conf.h"
#include "frame.h"
#include "hot.h"
#include "idmap.h"
#include "keys.h"
#include "merkle.h"
#include "metrics.h"
#include "notify.h"
#include "receipt.h"
#include "router.h"
#include "store.h"
#include "transport.h"
#include "verify.h"
#include "writer.h"

#define BROKER_GROUPS 3 /* group commits in hand at once */
#define BROKER_MAX_CREDIT 1024
#define BROKER_MAX_INFLIGHT BROKER_MAX_CREDIT
#define BROKER_DRAIN_MAX 2048 /* inbound frames handled per turn */
#define BROKER_ENV_SPARE 128  /* decoded envelopes kept for reuse */
/* Submissions taken in and not yet through their signature check. */
#define BROKER_VERIFY_QUEUE BROKER_DRAIN_MAX
/* Acknowledgements the open group takes, beyond those that the traffic
 * flowing through brings (one a recipient of each message the last group
 * stored: broker.acks_flowing), before deliveries wait for the writer
 * (deliver_pump): a recipient taking a backlog of a million at once grew
 * the group, and the writer's transaction with it, to 395 MiB of the
 * broker's memory.  The acks of what is in flight still come in (at most
 * BROKER_MAX_INFLIGHT a session): the group's acks stay bounded by these,
 * whatever the backlog. */
#define BROKER_ACKS_MAX (2 * BROKER_DRAIN_MAX)
/* Inbound messages are taken while the verifiers' queue has room for a
 * whole bundle of submissions. */
#define BROKER_ROOM_MIN FRAME_BUNDLE_MAX
/* Room in a pending message for its "accepted" audit record made ahead
 * (some 300 bytes with two recipients; a longer one is made later). */
#define PENDING_ACCEPTED_MAX 1024
/* A frame larger than this goes to a client on its own, not bundled. */
#define BROKER_BUNDLE_ALONE (64 * 1024)
/* What ZeroMQ may hold for one connection, not yet written out (its
 * transport account), in two bounds.  Past the soft one the pump hands
 * the session nothing more until it drains (deliver.c): credit bounds
 * deliveries in messages (1,024 of up to 16 MiB), this keeps what waits
 * in ZeroMQ for a recipient that reads slowly to a few bundles.  Past
 * the hard one the session is dropped as a slow consumer (broker.c
 * s_drop_marked): its client does not read even its replies, which would
 * otherwise queue without end (a client flooding requests without
 * reading took the broker past 1.5 GiB in 15 s).  Deliveries stop at the
 * soft bound and pass it by at most a bundle and one frame, 20.4 MiB;
 * the rest of the hard bound, more than 40 MiB or 100,000 receipts, is
 * for replies a client has not read yet. */
#define BROKER_UNSENT_SOFT (4 * 1024 * 1024)
#define BROKER_UNSENT_HARD (64 * 1024 * 1024)
/* What all the connections of one party may hold together, also what
 * is left of sessions that have ended (a Hello again, a drop): past it,
 * every session of the party is slow.  The hard bound alone let a party
 * open connection after connection, or say Hello again and again on
 * one, flood each session and leave its connection open (ZeroMQ cannot
 * close one peer of a ROUTER), taking the broker's memory 64 MiB at a
 * time.  Half again the hard bound: a party whose one connection floods
 * loses that session, while another that reads (only one receives, and
 * its deliveries stop at the soft bound) and its replies fit beside. */
#define BROKER_UNSENT_PARTY (96 * 1024 * 1024)
/* Refusals unread by a party's connections without a session (no Hello
 * yet, or dropped): a refusal is some 40 bytes, and ZeroMQ keeps some
 * 200 for it, so about 6 MiB of the broker's memory.  Beyond it such
 * frames are not answered: connections that never read cannot grow the
 * broker's memory with their number (which ZeroMQ does not bound). */
#define BROKER_UNSENT_OUTSIDE (1024 * 1024)
_Static_assert(BROKER_UNSENT_HARD - BROKER_UNSENT_SOFT - FRAME_BUNDLE_KEEP -
	    FRAME_MAX_LEN >=
	40 * 1024 * 1024,
    "the hard bound leaves room for replies past the deliveries'");
/* The messages accepted last, kept in memory for their delivery (hot.h):
 * 208 bytes for each of the last BROKER_HOT_SLOTS sequence numbers and a
 * ring of BROKER_HOT_BYTES for copies of their envelopes and receipts,
 * none over BROKER_HOT_ONE: 8.8 MiB; anything else is read from the
 * store.  Deliveries lag acceptance by what recipients have not yet
 * granted credit for: in bench_broker's batch phase about 4,000
 * messages (p50 95 ms at 40,000 msgs/s), and a cache of 2,048 (4 MiB)
 * missed half of them. */
#define BROKER_HOT_SLOTS 4096
#define BROKER_HOT_BYTES (8 * 1024 * 1024)
#define BROKER_HOT_ONE (64 * 1024)

struct broker_opts {
	const char *conf_path;
	const char *endpoint_file; /* written when ready, or NULL */
	bool no_sync;              /* tests of logic only: no fsync */
};

/* A message handed to a recipient and not acknowledged yet. */
struct inflight {
	uint64_t seq;
	uint64_t deadline_ms; /* the ack timeout, or a Nack's backoff */
	uint32_t count;       /* delivery count of this delivery */
	uint64_t tx;          /* its session's tx_ok when it was offered */
	bool notice;          /* a notice: acknowledged without its id */
	char case_ref[STORE_NAME_MAX + 1];
};

/* A case of one session that has a message in flight or entries held
 * back behind it (at most one message per case is in flight). */
struct case_state {
	char ref[STORE_NAME_MAX + 1];
	bool inflight;
	bool ready;          /* on the session's ready list */
	size_t head, n, cap; /* held entries, queue order, from head */
	struct store_entry *held;
};

/* One party's connection, after Hello. */
struct session {
	char party[STORE_NAME_MAX + 1];
	struct transport_peer peer;
	uint32_t credit;
	uint64_t last_seen_ms;
	uint64_t last_sent_ms;
	bool dirty; /* something new may be deliverable */
	/* The pump pages through the queue after `scanned`; everything up
	 * to it was offered, is in flight or is held in `cases` behind its
	 * case's message in flight.  A delivery that fails (timeout, Nack)
	 * goes back to the head of its case's held entries.  `rescan` makes
	 * the pump start from the head of the queue again and forget what
	 * it held (a dead letter put back, memory ran short); up to
	 * `rescan_upto` it then meets entries in flight, and skips them. */
	uint64_t scanned;
	uint64_t rescan_upto;
	bool rescan;
	struct idmap cases;        /* case reference -> struct case_state */
	size_t nheld;              /* entries held, all cases */
	struct case_state **ready; /* cases free again with entries held */
	size_t nready, capready;
	size_t ninflight;
	size_t capinflight;
	struct inflight *inflight; /* grows with the credit granted */
	/* A client that reads bundles gets what a turn sends it as one
	 * message (docs/protocol.md 10.9): frames wait here, and the
	 * session in the broker's outq, until broker_flush_out. */
	bool bundles;
	bool out_queued;
	struct frame_bundle out;
	bool receiving; /* the party's deliveries come here (sessions) */
	/* What ZeroMQ holds unsent of what was sent to it
	 * (BROKER_UNSENT_*), counted on its party's too (borrowed:
	 * broker.party_accts), where it stays after the session has ended
	 * until ZeroMQ has written it out or dropped it. */
	struct transport_account *acct;
	struct transport_account *party_acct;
	/* Its client does not read: nothing more is sent to it, and it is
	 * dropped at the end of the turn (s_drop_marked). */
	bool slow;
	/* Its connection is closed (ZeroMQ knows no such peer any more):
	 * dropped at the end of the turn too, without waiting for its
	 * heartbeats to run out.  What was offered to it after its last
	 * ZeroMQ message that went out (tx_ok counts them) never reached
	 * it, so those deliveries do not count as failed. */
	bool gone;
	uint64_t tx_ok;
};

/* What ZeroMQ holds for all the connections of one party
 * (BROKER_UNSENT_PARTY), kept until the broker ends; and apart, what it
 * holds of the refusals sent to the party's connections that have no
 * session (BROKER_UNSENT_OUTSIDE). */
struct party_account {
	char party[STORE_NAME_MAX + 1];
	struct transport_account *acct;
	struct transport_account *outside;
};

/* Connections a party may have at once; a Hello beyond them ends the one
 * heard from longest ago (a client that restarts in a loop leaves
 * sessions behind until their heartbeats run out). */
#define BROKER_PARTY_SESSIONS 16

/* The same envelope submitted again while its first submission waits
 * for its group (a client that resent it at once): answered with it. */
struct pending_waiter {
	struct pending_waiter *next;
	struct transport_peer peer;
	uint64_t corr_id;
};

/* An accepted submission waiting for the group commit. */
struct pending {
	struct transport_peer peer;
	uint64_t corr_id;
	int code;             /* SCHAKEL_OK, or why it failed in the group */
	uint64_t arrived_us;  /* monotonic, for the receipt latency */
	struct store_msg msg; /* msg.envelope is an owned copy */
	uint8_t header_hash[ENV_HASH_LEN];
	struct codec_buf signed_receipt;
	char purpose[STORE_NAME_MAX + 1];
	struct pending_waiter *waiters;
	/* Its "accepted" audit record, encoded as it joined the group
	 * (group_accepted; the chain's prev left blank), when it fitted
	 * here; 0: group_put encodes it. */
	size_t accepted_len;
	char accepted[PENDING_ACCEPTED_MAX];
};

/* A block of a group's recorded writes; never moved, so keys into it
 * (the group's marks) stay valid until the group is reset. */
struct group_block {
	struct group_block *next;
	size_t used, cap;
	uint8_t *data;
};

/* Where group_next is (start with {0}). */
struct group_pos {
	struct group_block *blk;
	size_t off;
};

enum group_op_kind {
	GROUP_PUT,       /* a submission (struct pending *, then its
			  * "accepted" audit record) */
	GROUP_AUDIT,     /* an audit record, chained when applied */
	GROUP_ACK,       /* store_ack of (seq, party) */
	GROUP_DELIVERED, /* store_delivered of (seq, party) */
	GROUP_ACK_MSG,   /* store_ack_known of (seq, party), what it needs of
			  * the message recorded with it */
};

/* One recorded write, as group_next hands it out.  For GROUP_ACK and
 * GROUP_DELIVERED `data` is the key: the sequence number (8 bytes, host
 * order) and the party id, `len` bytes in all (group_key).  For
 * GROUP_ACK_MSG: the key's length (1 byte), the key, the message id (16),
 * expires_ms (8, host order), the number of recipients (1) and each
 * recipient (its length, 1 byte, and its id). */
struct group_op {
	enum group_op_kind kind;
	const uint8_t *data;
	size_t len;
	struct pending *p; /* GROUP_PUT */
};

/* A group commit: what the broker thread decided over one or more
 * turns, recorded as writes and stored in one transaction.  The writer
 * thread stores it while the broker decides the next group; when the
 * broker needs a transaction's answers (sweeps, dead letters, admin
 * commands), it waits for the writer and stores the open group in a
 * transaction of its own (broker_txn). */
struct group {
	struct pending *pend; /* BROKER_DRAIN_MAX slots, never moved */
	/* pend[i]'s receipt encoded, and its Merkle leaf, made as it is
	 * accepted (receipt_body); side by side for receipt_sign. */
	struct codec_buf *bodies;
	uint8_t (*leaves)[MERKLE_HASH_LEN];
	size_t npend;
	struct idmap pend_ids; /* message id -> pending */
	/* (seq, party) -> what the group recorded about that queue entry
	 * (group_marks): until it is stored, the pump goes by this. */
	struct idmap marks;
	struct group_block *first, *last, *spare;
	size_t nops;
	size_t nacks;             /* acknowledgements among the ops */
	struct group_pos applied; /* how far group_apply got */
	bool prepared;            /* receipts signed, messages recorded */
	int prep_code;            /* SCHAKEL_E_* for all its messages, or 0 */
	int failed;   /* SCHAKEL_E_*: a record could not be encoded */
	int audit_rc; /* STORE_* of an audit record the store refused */
	int rc;       /* STORE_* of its commit */
	uint64_t dedup_until_ms;
	uint8_t *head; /* the audit chain head it continues */
	/* *head when group_apply began (group_again goes back to it). */
	uint8_t head_start[AUDIT_HASH_LEN];
	/* Applied again without its new messages (group_again): each is
	 * refused with STORE_FULL, the rest is kept. */
	bool refuse_puts;
};

/* Refusals logged for one party in the current minute. */
#define BROKER_REFUSALS_LOGGED 10
struct refusal_window {
	char party[STORE_NAME_MAX + 1];
	uint64_t start_ms;
	uint32_t logged;
	uint32_t suppressed;
	int last_code;
	/* Refusals not yet in the audit log: those of the rate limits, and
	 * all while the store is full, are summed and written as one record
	 * a minute (broker_audit). */
	uint32_t unrecorded;
	uint64_t unrecorded_ms; /* when the first of them was refused */
	int unrecorded_code;    /* the last one's code */
};

/* A token bucket (a party's submit rate limit, its Hellos). */
struct rate {
	double tokens;
	uint64_t at_ms;
};

/* Takes a token from `r`, which fills at `per_s` a second up to `burst`
 * (full at first use).  False when there is none. */
bool
broker_rate_take(struct rate *r, double per_s, double burst, uint64_t now_ms);

/* Hellos a party may send, a second and at once: each makes a session
 * and writes two audit records (connected, and disconnected for the one
 * it replaces), which a client saying Hello in a loop must not turn into
 * a full store.  Reconnects with backoff, and a script that runs
 * `schakel send` once a message, stay far below. */
#define BROKER_HELLO_RATE 10
#define BROKER_HELLO_BURST 50

/* What the broker keeps per declared party, by conf party index. */
struct party_state {
	struct rate rate;
	struct rate hellos;
	/* Its queue depth as the open group counts it: what the store held
	 * at the group's first message to it, plus what the group adds.
	 * Valid while depth_group is the broker's depth_group (the store's
	 * queues change only when a group commits). */
	uint64_t depth_group;
	uint64_t depth;
	/* Messages for it in each group not yet committed (by group
	 * index): added to what the store holds when depth is read. */
	uint64_t adds[BROKER_GROUPS];
	/* The last warning that it is a slow consumer, and the drops as
	 * one since, not warned of (a client that says Hello again and
	 * again is dropped again and again). */
	uint64_t slow_warned_ms;
	uint64_t slow_again;
};

/* A latency histogram with fixed buckets (seconds). */
#define STATS_BUCKETS 12
struct stats_histogram {
	uint64_t counts[STATS_BUCKETS]; /* per bucket, not cumulative */
	uint64_t n;
	double sum;
};

/* Counters for the metrics; labels are bounded: message types and
 * refusal reasons, never case references. */
struct broker_stats {
	uint64_t accepted;
	struct idmap accepted_by_type; /* type id -> uint64_t counter */
	uint64_t refused[64];          /* by schakel_err code */
	uint64_t delivered;
	uint64_t acked;
	uint64_t pump_waits; /* times deliveries waited (BROKER_ACKS_MAX) */
	uint64_t dead_lettered[64]; /* by schakel_err code */
	uint64_t commits;
	/* ZeroMQ messages and the frames they carried (more frames than
	 * messages: bundles), both ways. */
	uint64_t messages_in, frames_in, messages_out, frames_out;
	uint64_t slow_dropped;   /* sessions dropped as slow consumers */
	uint64_t audit_archived; /* audit records moved to the archive */
	uint64_t reloads_ok;
	uint64_t reloads_refused;
	struct stats_histogram receipt;  /* submit arrived -> Accepted sent */
	struct stats_histogram delivery; /* accepted -> acknowledged */
	struct stats_histogram commit;   /* store_commit: write and flush */
};

struct broker {
	struct broker_opts opts;
	struct conf *conf;
	struct router *router;
	struct store *store;
	struct transport *tp;
	struct keys_secret *keys;
	struct merkle_cache *cache;
	struct verify_pool *verify; /* submissions waiting for their check */
	/* Envelopes decoded and done with, kept for the next submissions
	 * (submit.c): a bundle's worth and more. */
	struct env *env_spare[BROKER_ENV_SPARE];
	size_t nenv_spare;
	/* A party may have several connections (a sending service and a
	 * receiving one, say), each a session in `peers`; one of them
	 * receives: the last to grant credit, in `sessions`. */
	struct idmap sessions; /* party id -> its receiving session */
	struct idmap peers;    /* routing id -> struct session * */
	struct session **outq; /* sessions with frames in their bundle */
	size_t nout, capout;
	struct idmap party_accts; /* party id -> struct party_account * */
	bool slow_due;            /* a session is marked slow */
	/* max_message_size at start: the socket takes no larger messages
	 * (plus 64 KiB) until a restart, whatever a reload says. */
	size_t max_message_start;
	/* A transaction of the broker thread's own (the writer is idle
	 * then), or NULL. */
	struct store_txn *txn;
	struct writer *writer;
	struct admin *admin; /* the audit walk of schakelctl in progress */
	/* The open group, the writer's, and one the writer is done with
	 * while the broker answers for it (s_flush hands the writer the
	 * next before that). */
	struct group groups[BROKER_GROUPS];
	struct group *open; /* recording */
	struct group *fly;  /* the writer's, or done and not finished */
	bool fly_done;      /* the writer is done with fly */
	uint64_t seq_last;  /* the last message sequence number given */
	uint64_t in_unit;   /* counts inbound messages (a bundle is one) */
	struct hot *hot;    /* accepted messages, for their delivery */
	struct party_state *parties; /* by conf party index */
	uint64_t depth_group;        /* see party_state; 1, 2, ... */
	/* The audit chain's head, including the groups applied so far
	 * (written by whichever thread applies one), and as last
	 * committed. */
	uint8_t audit_head[AUDIT_HASH_LEN];
	uint8_t audit_durable[AUDIT_HASH_LEN];
	uint64_t now_ms;
	uint64_t started_ms;
	bool stopping;
	bool store_full;   /* the last group met a full store */
	bool trim_due;     /* a large group ended: malloc_trim when idle */
	bool pump_waiting; /* deliveries wait for the writer (deliver_pump) */
	bool pump_more;    /* a walk stopped at its bound: no idle wait */
	/* The recipients of the last stored group's messages: the acks
	 * that flowing traffic brings (BROKER_ACKS_MAX). */
	size_t acks_flowing;
	/* The store's bytes in use, map size and the bytes in use at which
	 * new messages are refused (store_usage), read once a second; the
	 * fill level last warned of (80, 90 or 95 percent of that limit; 0
	 * below), and whether refusals for a full store were warned of. */
	uint64_t space_used, space_size, space_limit;
	unsigned space_level;
	bool space_full_warned;
	struct idmap refusal_log; /* party id -> struct refusal_window */
	/* Unknown transport keys not yet logged, and the last one. */
	struct transport_refused refused;
	uint64_t refused_logged_ms;
	struct broker_stats stats;
	struct metrics *metrics; /* NULL when metrics are off */
	uint64_t metrics_at_ms;
	uint64_t dedup_at_ms;   /* last expiry of message ids */
	uint64_t expire_at_ms;  /* last look for expired messages */
	uint64_t txn_warned_ms; /* last warning that no txn could begin */
	uint64_t txn_failed;    /* failures since */
	bool txn_broken;        /* the last store_begin failed */
};

/* broker.c */
struct broker *broker_new(const struct broker_opts *opts);
/* Hands a party's deliveries to a standby when it has no receiving
 * session (a promotion that failed); call it with the timers. */
void broker_standby_timers(struct broker *b);
void broker_destroy(struct broker **bp);
/* Serves until *stop becomes non-zero; reloads the configuration each
 * time *reload becomes non-zero (and clears it).  Returns 0 after a clean
 * stop. */
int broker_run(struct broker *b, volatile sig_atomic_t *stop,
    volatile sig_atomic_t *reload);
/* Loads the configuration file again and swaps it in between two
 * messages when it is valid; keeps the running one when it is not.
 * Problems go to `d` (and the log).  Returns 0 when swapped. */
int broker_reload(struct broker *b, struct diags *d);
/* Commits the open group now (admin changes before their answer).
 * Returns STORE_OK, or the store code when the changes were not kept. */
int broker_flush(struct broker *b);
/* A transaction of the broker thread's own, for writes whose answers it
 * needs: waits for the writer thread's group, begins one if needed and
 * applies what the open group recorded so far.  Returns it or NULL. */
struct store_txn *broker_txn(struct broker *b);
/* Drops that transaction (a sweep that found nothing): what the open
 * group recorded is applied again in the next one. */
void broker_txn_drop(struct broker *b);
/* The next message sequence number. */
uint64_t broker_next_seq(struct broker *b);
/* Appends an audit record to the open group. */
void broker_audit(struct broker *b, const struct audit_event *ev);
/* Fills the fields of an audit record about message `m` for one of its
 * recipients: seq, id, sender, that recipient and the agreement it got
 * the message under, type and case.  Kind, time, code and count are the
 * caller's. */
void broker_audit_about(
    struct audit_event *ev, const struct store_msg *m, const char *recipient);
/* Sends what the sessions' bundles hold (the end of a turn, or before
 * the broker waits for the disk). */
void broker_flush_out(struct broker *b);
/* The largest message a client may send, or be sent: the configured
 * max_message_size, never above the one the socket was made with. */
size_t broker_max_message(const struct broker *b);
/* The most a frame (an envelope and the frame around it) may take when
 * decoded, under the configuration now. */
size_t broker_frame_limit(const struct broker *b);
/* Sends an encoded frame to a peer, as broker_send does. */
void broker_send_raw(struct broker *b, const struct transport_peer *peer,
    const uint8_t *p, size_t n);
/* Sends `s` a Ping (a heartbeat; a closed connection is found so when
 * it goes out) and notes when. */
void broker_ping(struct broker *b, struct session *s);
/* Encodes and sends a frame to a peer (to a session that reads bundles,
 * at broker_flush_out); failures are counted, not fatal. */
void broker_send(
    struct broker *b, const struct transport_peer *peer, const struct frame *f);
/* Sends a Refusal (and audits refusals of messages). */
void broker_refuse(struct broker *b, const struct transport_peer *peer,
    uint64_t corr_id, int code, const uint8_t *message_id);
/* The party's receiving session, or NULL. */
struct session *broker_session(struct broker *b, const char *party);
/* What ZeroMQ holds for all the connections of `party` (0 when it never
 * had one). */
size_t broker_party_unsent(const struct broker *b, const char *party);
/* How many sessions `party` has, and when the latest of them was heard
 * from (*last_seen_ms, may be NULL; 0 when none). */
size_t broker_connections(
    const struct broker *b, const char *party, uint64_t *last_seen_ms);
/* How many parties have a session. */
size_t broker_parties_connected(const struct broker *b);
/* Logs a refusal of a request from `party`: the first few a minute one
 * line each, the rest as one summary line per party and minute. */
void broker_log_refusal(struct broker *b, const char *party, int code);
/* Ends a session; its deliveries wait in the store for the next one. */
void broker_drop(struct broker *b, struct session *s, const char *why);

/* stats.c */
uint64_t stats_now_us(void);
void stats_observe(struct stats_histogram *h, double seconds);
void stats_count_type(struct broker *b, const char *type);
/* Renders every metric and hands it to the HTTP thread. */
void stats_publish(struct broker *b);
void stats_free(struct broker_stats *st);

/* submit.c */
void submit_resolve(
    struct broker *b, const struct transport_msg *m, const struct frame *f);
/* Checks what can be checked before the signature and hands the
 * envelope to the verifier threads.  Takes the frame's copy of the
 * envelope (f->owner) when it has one. */
void submit_envelope(
    struct broker *b, const struct transport_msg *m, struct frame *f);
/* Finishes the checks of verified envelopes, oldest first, until the
 * group is full or the oldest is still being verified. */
void submit_collect(struct broker *b);
/* Waits for the envelopes being verified and drops them unanswered. */
void submit_drop_waiting(struct broker *b);
/* Signs the group's receipts and records its messages (once); sets
 * g->prep_code when its messages cannot go. */
void submit_prepare_group(struct broker *b, struct group *g);
/* After the commit: answers each pending submission (Accepted, or a
 * refusal with `code`) and frees them. */
void submit_finish_group(struct broker *b, struct group *g, int code);
/* Case participants for the router. */
size_t submit_participants(void *arg, const char *case_ref,
    const struct conf_role *role, const struct conf_party **out, size_t max);

/* broker.c: when the writer is done with its group, answers for it and
 * hands it the open one now, not at the end of the turn.  Called
 * between two frames or submissions. */
void broker_writer_check(struct broker *b);

/* group.c */
int group_init(struct group *g, uint8_t *head);
void group_free(struct group *g);
/* Empties a finished group for reuse (its blocks are kept). */
void group_reset(struct group *g);
/* Gives the memory of an empty group's pending messages back. */
void group_trim(struct group *g);
bool group_empty(const struct group *g);
/* Records writes, in order; 0, or a SCHAKEL_E_* code (nothing recorded). */
int group_put(struct group *g, struct pending *p);
/* Encodes p's "accepted" record into p->accepted ahead of group_put (on
 * the broker thread as p joins the group, not when the writer waits for
 * the group); p must be complete but for its receipt.  Leaves
 * p->accepted_len 0 when the record does not fit there. */
void group_accepted(struct pending *p);
int group_audit(struct group *g, const struct audit_event *ev);
int group_ack(struct group *g, const char *party, uint64_t seq);
/* group_ack of m->seq, with what the writer needs of message `m` (read
 * by the caller) so that it does not read it again. */
int
group_ack_msg(struct group *g, const char *party, const struct store_msg *m);
/* The store's delivery count of (seq, party) becomes `count`. */
int group_delivered(
    struct group *g, const char *party, uint64_t seq, uint32_t count);
/* What g recorded about queue entry (seq, party): sets *acked when it
 * acknowledged it; raises *count to the delivery count it stores. */
void group_marks(const struct group *g, const char *party, uint64_t seq,
    bool *acked, uint32_t *count);
/* Fills what an audit record about submission p says of it: id, sender,
 * recipients, type, case and purpose. */
void group_audit_about(struct audit_event *ev, const struct pending *p);
/* The key of (seq, party) in out (8 + STORE_NAME_MAX bytes); its length. */
size_t group_key(uint8_t *out, const char *party, uint64_t seq);
/* The next recorded write after pos; false at the end. */
bool
group_next(const struct group *g, struct group_pos *pos, struct group_op *op);
/* Applies what was recorded since the last call to t, chaining audit
 * records from *g->head: a writer_apply_fn (arg is the group).  Returns
 * STORE_OK, or the code that spoils the transaction. */
int group_apply(void *arg, struct store_txn *t);
/* Has group_apply start from the first write again (its transaction
 * was dropped). */
void group_rewind(struct group *g);
/* A writer_again_fn: when the group's transaction failed because the
 * store is full (the map or the disk), has it applied again with every
 * new message refused (STORE_FULL), so that what it recorded besides
 * (acknowledgements, delivery counts, audit records) is still stored.
 * The store's room check counts a message's size, not the pages its
 * keys make LMDB copy, and cannot know the disk. */
bool group_again(void *arg, int rc);

/* deliver.c */
void deliver_credit(struct broker *b, struct session *s, uint32_t n);
void deliver_ack(
    struct broker *b, struct session *s, const struct frame *f, bool nack);
/* Hands out what each session's credit allows. */
void deliver_pump(struct broker *b);
/* Ack timeouts and idle connections. */
void deliver_timers(struct broker *b);
/* Dead-letters messages whose time is up for every recipient that still
 * has them queued (connected or not) and tells their senders; a bounded
 * number per call. */
void deliver_expire(struct broker *b);
/* Removes dead letters whose agreement's retention ended (and records
 * it); a bounded number per call. */
void deliver_retention(struct broker *b);
/* Forgets the participants of cases whose agreements' retention ended
 * (and records it); a bounded number of cases looked at per call. */
void deliver_forget_cases(struct broker *b);
/* Marks sessions of these recipients as having new work. */
void deliver_notify(struct broker *b, const struct store_msg *m);
/* Forgets a session's deliveries (they stay queued in the store). */
void deliver_forget(struct broker *b, struct session *s);
/* Has the pump read `s`'s queue from its head again (an entry came back
 * before what it read already, e.g. a dead letter redelivered). */
void deliver_rescan(struct session *s);
/* Frees what the session's deliveries keep in memory. */
void deliver_free(struct session *s);

#endif
