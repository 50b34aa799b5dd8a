/*
 * frame: checks the meaning of broker commands and replies (field syntax,
 * exact key lengths, sort order) around pb.c's encoding.  It decides
 * nothing about whether a command is allowed now; that is the broker's and
 * the client library's business.
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pb.h"
#include "syntax.h"

static int
s_check_attrs(const struct env_attr *a, size_t n)
{
	if (n > ENV_MAX_ATTRS)
		return SCHAKEL_E_TOO_LARGE;
	for (size_t i = 0; i < n; i++) {
		if (!syntax_is_name(a[i].key, sizeof a[i].key) ||
		    !syntax_is_printable(a[i].value, sizeof a[i].value))
			return SCHAKEL_E_BAD_FIELD;
		if (i > 0 && strcmp(a[i - 1].key, a[i].key) >= 0)
			return SCHAKEL_E_BAD_FIELD;
	}
	return SCHAKEL_OK;
}

/* The rules both directions share; lengths beyond the buffers cannot
 * occur in a decoded frame and are refused when encoding. */
static int s_check(const struct frame *f);

int
frame_check(const struct frame *f)
{
	return f != NULL ? s_check(f) : SCHAKEL_E_BAD_ARGUMENT;
}

static int
s_check(const struct frame *f)
{
	switch (f->kind) {
	case FRAME_HELLO: {
		const struct frame_hello *h = &f->u.hello;

		if (h->protocol[0] == '\0' ||
		    !syntax_is_printable(h->protocol, sizeof h->protocol) ||
		    !syntax_is_name(h->party_id, sizeof h->party_id) ||
		    !syntax_is_printable(h->software, sizeof h->software))
			return SCHAKEL_E_BAD_FIELD;
		return SCHAKEL_OK;
	}
	case FRAME_WELCOME: {
		const struct frame_welcome *w = &f->u.welcome;

		if (w->protocol[0] == '\0' ||
		    !syntax_is_printable(w->protocol, sizeof w->protocol) ||
		    !syntax_is_name(w->broker_id, sizeof w->broker_id))
			return SCHAKEL_E_BAD_FIELD;
		return SCHAKEL_OK;
	}
	case FRAME_RESOLVE: {
		const struct frame_resolve *r = &f->u.resolve;

		if (!syntax_is_name(r->type, sizeof r->type) ||
		    !syntax_is_ref(r->case_ref, sizeof r->case_ref) ||
		    r->case_ref[0] == '\0' ||
		    !syntax_is_name(r->purpose, sizeof r->purpose) ||
		    !syntax_is_region(r->region, sizeof r->region))
			return SCHAKEL_E_BAD_FIELD;
		return s_check_attrs(r->attrs, r->n_attrs);
	}
	case FRAME_RESOLVED: {
		const struct frame_resolved *r = &f->u.resolved;

		if (r->n_recipients > ENV_MAX_RECIPIENTS)
			return SCHAKEL_E_TOO_LARGE;
		for (size_t i = 0; i < r->n_recipients; i++) {
			const struct frame_recipient *p = &r->recipients[i];

			if (!syntax_is_name(p->party_id, sizeof p->party_id) ||
			    !syntax_is_name(
				p->agreement_id, sizeof p->agreement_id))
				return SCHAKEL_E_BAD_FIELD;
			if (i > 0 &&
			    strcmp(r->recipients[i - 1].party_id,
				p->party_id) >= 0)
				return SCHAKEL_E_BAD_FIELD;
		}
		return SCHAKEL_OK;
	}
	case FRAME_SUBMIT:
	case FRAME_ACCEPTED:
		if (f->u.submit.len == 0 || f->u.submit.data == NULL)
			return SCHAKEL_E_BAD_FIELD;
		/* The same limits as the decoder's (pb.c). */
		if (f->u.submit.len > (f->kind == FRAME_SUBMIT
					      ? ENV_MAX_LEN
					      : RECEIPT_SIGNED_MAX_LEN))
			return SCHAKEL_E_TOO_LARGE;
		return SCHAKEL_OK;
	case FRAME_REFUSAL:
		if (!syntax_is_printable(
			f->u.refusal.reason, sizeof f->u.refusal.reason))
			return SCHAKEL_E_BAD_FIELD;
		return SCHAKEL_OK;
	case FRAME_DELIVER:
		if (f->u.deliver.envelope.len == 0 ||
		    f->u.deliver.envelope.data == NULL ||
		    (f->u.deliver.receipt.len > 0 &&
			f->u.deliver.receipt.data == NULL))
			return SCHAKEL_E_BAD_FIELD;
		if (f->u.deliver.envelope.len > ENV_MAX_LEN ||
		    f->u.deliver.receipt.len > RECEIPT_SIGNED_MAX_LEN)
			return SCHAKEL_E_TOO_LARGE;
		return SCHAKEL_OK;
	case FRAME_NOTICE:
		if (f->u.notice.kind < FRAME_NOTICE_DELIVERED ||
		    f->u.notice.kind > FRAME_NOTICE_DEAD_LETTERED ||
		    !syntax_is_name(
			f->u.notice.recipient, sizeof f->u.notice.recipient))
			return SCHAKEL_E_BAD_FIELD;
		return SCHAKEL_OK;
	case FRAME_BUNDLE:
		/* An empty bundle, or one with a corr_id (it is no request,
		 * its frames carry theirs). */
		if (f->u.bundle.len == 0 || f->u.bundle.data == NULL ||
		    f->corr_id != 0)
			return SCHAKEL_E_MALFORMED;
		return SCHAKEL_OK;
	case FRAME_CREDIT:
	case FRAME_ACK:
	case FRAME_NACK:
	case FRAME_PING:
	case FRAME_PONG:
		return SCHAKEL_OK;
	case FRAME_NONE:
		break;
	}
	return SCHAKEL_E_BAD_ARGUMENT;
}

int
frame_encode(const struct frame *f, struct codec_buf *out)
{
	int rc;

	if (f == NULL || out == NULL)
		return SCHAKEL_E_BAD_ARGUMENT;
	out->data = NULL;
	out->len = 0;
	rc = s_check(f);
	if (rc)
		return rc;
	return pb_frame_encode(f, out);
}

int
frame_decode(const uint8_t *buf, size_t len, size_t max_len, struct frame *f)
{
	int rc;

	/* pb_frame_decode clears *f (a struct of several KiB) itself; only
	 * the refusals before it do so here, so a decode clears it once. */
	if (max_len == 0 || max_len > FRAME_MAX_LEN)
		max_len = FRAME_MAX_LEN;
	if (len > max_len || (buf == NULL && len > 0)) {
		memset(f, 0, sizeof *f);
		return len > max_len ? SCHAKEL_E_TOO_LARGE
				     : SCHAKEL_E_BAD_ARGUMENT;
	}
	rc = pb_frame_decode(buf, len, f);
	if (rc)
		return rc;
	rc = s_check(f);
	if (rc == SCHAKEL_E_BAD_ARGUMENT)
		rc = SCHAKEL_E_MALFORMED;
	if (rc)
		frame_clear(f);
	return rc;
}

void
frame_clear(struct frame *f)
{
	if (f == NULL)
		return;
	free(f->owner);
	memset(f, 0, sizeof *f);
}

void
frame_refusal(
    struct frame *f, uint64_t corr_id, int code, const uint8_t *message_id)
{
	const char *reason = schakel_strerror(code);
	size_t n = strlen(reason);

	memset(f, 0, sizeof *f);
	f->corr_id = corr_id;
	f->kind = FRAME_REFUSAL;
	f->u.refusal.code = (uint32_t)code;
	if (n >= sizeof f->u.refusal.reason)
		n = sizeof f->u.refusal.reason - 1;
	memcpy(f->u.refusal.reason, reason, n);
	if (message_id != NULL) {
		f->u.refusal.has_message_id = true;
		memcpy(f->u.refusal.message_id, message_id, ENV_ID_LEN);
	}
}

/* ---- notice signatures ----------------------------------------------- */

#define S_NOTICE_DOMAIN "schakel-notice-v1"
#define S_NOTICE_MAX \
	(sizeof S_NOTICE_DOMAIN + 1 + ENV_ID_LEN + 1 + ENV_MAX_NAME_LEN + 8 + \
	    4 + 8)

/* ---- bundles ---------------------------------------------------------- */

size_t
frame_bundle_size_with(const struct frame_bundle *b, size_t len)
{
	size_t body =
	    b->len > FRAME_BUNDLE_HEAD ? b->len - FRAME_BUNDLE_HEAD : 0;

	body += pb_bytes_field(1, len, NULL) + len;
	return pb_bundle_head(body, 0, NULL) + body;
}

/* Room for one more frame of `len` bytes, its field key written: where
 * the frame's bytes go (*at), or the code of frame_bundle_add_raw.
 * s_add counts the frame once its bytes are there. */
static int
s_reserve(struct frame_bundle *b, size_t len, uint8_t **at)
{
	uint8_t key[16];
	size_t klen = pb_bytes_field(1, len, key), need;

	if (b->count >= FRAME_BUNDLE_MAX)
		return SCHAKEL_E_TOO_LARGE;
	if (b->len < FRAME_BUNDLE_HEAD)
		b->len = FRAME_BUNDLE_HEAD;
	if (len > FRAME_MAX_LEN)
		return SCHAKEL_E_TOO_LARGE;
	need = b->len + klen + len;
	if (need > b->cap) {
		size_t cap = b->cap > 0 ? b->cap : 16384;
		uint8_t *d;

		while (cap < need)
			cap *= 2;
		d = realloc(b->data, cap);
		if (d == NULL)
			return SCHAKEL_E_NO_MEMORY;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, key, klen);
	*at = b->data + b->len + klen;
	return SCHAKEL_OK;
}

static void
s_add(struct frame_bundle *b, const uint8_t *at, size_t len)
{
	if (b->count == 0) {
		b->first = (size_t)(at - b->data);
		b->first_len = len;
	}
	b->len = (size_t)(at - b->data) + len;
	b->count++;
}

int
frame_bundle_add_raw(struct frame_bundle *b, const uint8_t *p, size_t len)
{
	uint8_t *at;
	int rc = s_reserve(b, len, &at);

	if (rc != SCHAKEL_OK)
		return rc;
	if (len > 0)
		memcpy(at, p, len);
	s_add(b, at, len);
	return SCHAKEL_OK;
}

size_t
frame_encoded_size(const struct frame *f)
{
	return f != NULL && s_check(f) == SCHAKEL_OK ? pb_frame_hot_size(f)
						     : SIZE_MAX;
}

int
frame_bundle_add_sized(struct frame_bundle *b, const struct frame *f, size_t n)
{
	uint8_t *at;
	int rc = s_reserve(b, n, &at);

	if (rc == SCHAKEL_OK)
		rc = pb_frame_hot_write(f, at, n);
	if (rc == SCHAKEL_OK)
		s_add(b, at, n);
	return rc;
}

int
frame_bundle_add(struct frame_bundle *b, const struct frame *f)
{
	struct codec_buf buf = {0};
	size_t n;
	int rc;

	if (f->kind == FRAME_BUNDLE)
		return SCHAKEL_E_BAD_ARGUMENT;
	/* The per-message kinds are written straight into the bundle. */
	n = frame_encoded_size(f);
	if (n != SIZE_MAX)
		return frame_bundle_add_sized(b, f, n);
	rc = frame_encode(f, &buf);
	if (rc == SCHAKEL_OK)
		rc = frame_bundle_add_raw(b, buf.data, buf.len);
	codec_buf_clear(&buf);
	return rc;
}

bool
frame_bundle_finish(struct frame_bundle *b, const uint8_t **out, size_t *len)
{
	size_t body, head;

	if (b->count == 0)
		return false;
	if (b->count == 1) {
		*out = b->data + b->first;
		*len = b->first_len;
		return true;
	}
	body = b->len - FRAME_BUNDLE_HEAD;
	head = pb_bundle_head(body, 0, NULL); /* at most 1 + 2 + 10 */
	pb_bundle_head(body, 0, b->data + FRAME_BUNDLE_HEAD - head);
	*out = b->data + FRAME_BUNDLE_HEAD - head;
	*len = head + body;
	return true;
}

void
frame_bundle_reset(struct frame_bundle *b)
{
	/* Memory for the next one, but not a large frame's worth. */
	if (b->cap > FRAME_BUNDLE_KEEP) {
		free(b->data);
		b->data = NULL;
		b->cap = 0;
	}
	b->len = FRAME_BUNDLE_HEAD;
	b->count = 0;
	b->first = b->first_len = 0;
}

void
frame_bundle_free(struct frame_bundle *b)
{
	if (b == NULL)
		return;
	free(b->data);
	memset(b, 0, sizeof *b);
}

bool
frame_is_bundle(const uint8_t *p, size_t len)
{
	/* Field 24, length-delimited: the key's varint is 0xc2 0x01. */
	return len >= 2 &&
	    p[0] == (uint8_t)(0x80 | (FRAME_BUNDLE << 3 & 0x7f) | 2) &&
	    p[1] == (uint8_t)(FRAME_BUNDLE << 3 >> 7);
}

bool
frame_bundle_next(
    const struct frame_bytes *bundle, size_t *off, struct frame_bytes *inner)
{
	const uint8_t *p = bundle->data;
	size_t i = *off, n = 0;
	uint64_t len = 0;

	/* The decoder's walk let only field 1, as bytes, through; a
	 * bundle built otherwise ends at the first thing that is not. */
	if (i >= bundle->len || p[i] != (1 << 3 | 2))
		return false;
	for (i++;; n += 7) {
		uint8_t c;

		if (i >= bundle->len || n > 63)
			return false;
		c = p[i++];
		len |= (uint64_t)(c & 0x7f) << n;
		if ((c & 0x80) == 0)
			break;
	}
	if (len > bundle->len - i)
		return false;
	inner->data = p + i;
	inner->len = (size_t)len;
	*off = i + (size_t)len;
	return true;
}

static void
s_put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* The bytes a notice's signature covers; returns their number. */
static size_t
s_notice_bytes(const struct frame_notice *n, uint8_t out[S_NOTICE_MAX])
{
	size_t rl = strnlen(n->recipient, ENV_MAX_NAME_LEN);
	size_t k = sizeof S_NOTICE_DOMAIN; /* with its NUL */

	memcpy(out, S_NOTICE_DOMAIN, k);
	out[k++] = (uint8_t)n->kind;
	memcpy(out + k, n->message_id, ENV_ID_LEN);
	k += ENV_ID_LEN;
	out[k++] = (uint8_t)rl;
	memcpy(out + k, n->recipient, rl);
	k += rl;
	s_put_be(out + k, n->time_ms, 8);
	s_put_be(out + k + 8, n->code, 4);
	s_put_be(out + k + 12, n->store_seq, 8);
	return k + 20;
}

void
frame_notice_sign(struct frame_notice *n, const uint8_t sk[64])
{
	uint8_t m[S_NOTICE_MAX];
	size_t len = s_notice_bytes(n, m);

	crypto_sign_detached(n->signature, NULL, m, len, sk);
}

int
frame_notice_verify(
    const struct frame_notice *n, const uint8_t pk[FRAME_KEY_LEN])
{
	uint8_t m[S_NOTICE_MAX];
	size_t len = s_notice_bytes(n, m);

	return crypto_sign_verify_detached(n->signature, m, len, pk) == 0
	    ? SCHAKEL_OK
	    : SCHAKEL_E_BAD_SIGNATURE;
}
