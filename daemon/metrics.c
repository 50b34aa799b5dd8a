/*
 * metrics: the only file that includes microhttpd.h.  The HTTP thread
 * reads a text the broker's thread published, under one mutex; it never
 * reads broker state, so no counter needs to be atomic.
 */
#include "metrics.h"
#include "text.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics {
	struct MHD_Daemon *mhd;
	pthread_mutex_t lock;
	char *text;
	size_t len;
	bool healthy;
	char reason[128];
	unsigned port;
};

static enum MHD_Result
s_reply(struct MHD_Connection *c, unsigned status, const char *type,
    const char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result
s_handle(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_len, void **state)
{
	struct metrics *m = cls;
	enum MHD_Result rc;

	(void)version;
	(void)upload;
	(void)state;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return s_reply(c, 405, "text/plain", "GET only\n", 9);
	if (*upload_len != 0)
		return s_reply(c, 400, "text/plain", "no body\n", 8);
	pthread_mutex_lock(&m->lock);
	if (strcmp(url, "/metrics") == 0) {
		rc = s_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8",
		    m->text != NULL ? m->text : "", m->len);
	} else if (strcmp(url, "/healthz") == 0) {
		char body[160];
		int n = snprintf(
		    body, sizeof body, "%s\n", m->healthy ? "ok" : m->reason);
		rc = s_reply(
		    c, m->healthy ? 200 : 503, "text/plain", body, (size_t)n);
	} else {
		rc = s_reply(c, 404, "text/plain",
		    "not found: try /metrics or /healthz\n", 36);
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

struct metrics *
metrics_new(const char *addr, char *err, size_t errlen)
{
	struct metrics *m = calloc(1, sizeof(*m));
	struct sockaddr_in sin = {.sin_family = AF_INET};
	const char *colon = strrchr(addr, ':');
	char host[64];
	unsigned long port;
	char *end;
	const union MHD_DaemonInfo *info;

	if (m == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (colon == NULL || (size_t)(colon - addr) >= sizeof host) {
		snprintf(err, errlen,
		    "metrics address '%s' is not ADDRESS:PORT", addr);
		free(m);
		return NULL;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port > 65535 ||
	    inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
		snprintf(err, errlen,
		    "metrics address '%s' is not an IPv4 ADDRESS:PORT", addr);
		free(m);
		return NULL;
	}
	sin.sin_port = htons((uint16_t)port);
	pthread_mutex_init(&m->lock, NULL);
	snprintf(m->reason, sizeof m->reason, "starting");
	m->mhd = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
	    s_handle, m, MHD_OPTION_SOCK_ADDR, &sin,
	    MHD_OPTION_CONNECTION_LIMIT, 32u, MHD_OPTION_CONNECTION_TIMEOUT,
	    10u, MHD_OPTION_END);
	if (m->mhd == NULL) {
		snprintf(err, errlen, "cannot listen for metrics on %s", addr);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return NULL;
	}
	info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
	m->port = info != NULL ? info->port : (unsigned)port;
	return m;
}

void
metrics_destroy(struct metrics **mp)
{
	struct metrics *m;

	if (mp == NULL || *mp == NULL)
		return;
	m = *mp;
	MHD_stop_daemon(m->mhd);
	pthread_mutex_destroy(&m->lock);
	free(m->text);
	free(m);
	*mp = NULL;
}

unsigned
metrics_port(const struct metrics *m)
{
	return m->port;
}

void
metrics_publish(struct metrics *m, const char *text, size_t len, bool healthy,
    const char *reason)
{
	char *copy = malloc(len + 1);

	if (copy != NULL) {
		memcpy(copy, text, len);
		copy[len] = '\0';
	}
	pthread_mutex_lock(&m->lock);
	if (copy != NULL) {
		free(m->text);
		m->text = copy;
		m->len = len;
	}
	m->healthy = healthy;
	text_copy(m->reason, sizeof m->reason, reason != NULL ? reason : "");
	pthread_mutex_unlock(&m->lock);
}

void
metrics_printf(struct metrics_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->oom)
		return;
	for (;;) {
		size_t room = t->cap - t->len;
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = true;
			return;
		}
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t cap = t->cap ? t->cap * 2 : 65536;
			char *nb;
			while (cap - t->len <= (size_t)n)
				cap *= 2;
			nb = realloc(t->buf, cap);
			if (nb == NULL) {
				t->oom = true;
				return;
			}
			t->buf = nb;
			t->cap = cap;
		}
	}
}

void
metrics_text_free(struct metrics_text *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}
