/*
 * notify: the only file that talks to systemd.  The watchdog is fed from
 * the event loop itself, so a loop that is stuck gets the daemon
 * restarted.
 */
#include "notify.h"

#include <stdio.h>

#include "schakel-config.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

static uint64_t s_interval_ms;
static uint64_t s_last_ms;

void
notify_init(void)
{
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) > 0)
		s_interval_ms = usec / 1000;
}

static void
s_send(const char *state, const char *status)
{
	if (status != NULL)
		sd_notifyf(0, "%s\nSTATUS=%s", state, status);
	else
		sd_notify(0, state);
}

void
notify_ready(const char *status)
{
	s_send("READY=1", status);
}

void
notify_reloading(void)
{
	s_send("RELOADING=1", "reloading the configuration");
}

void
notify_stopping(void)
{
	s_send("STOPPING=1", "stopping: finishing the commit in progress");
}

void
notify_status(const char *status)
{
	sd_notifyf(0, "STATUS=%s", status);
}

void
notify_watchdog(uint64_t now_ms)
{
	if (s_interval_ms == 0 || now_ms < s_last_ms + s_interval_ms / 2)
		return;
	sd_notify(0, "WATCHDOG=1");
	s_last_ms = now_ms;
}

#else

void
notify_init(void)
{
}

void
notify_ready(const char *status)
{
	(void)status;
}

void
notify_reloading(void)
{
}

void
notify_stopping(void)
{
}

void
notify_status(const char *status)
{
	(void)status;
}

void
notify_watchdog(uint64_t now_ms)
{
	(void)now_ms;
}

#endif
